/*
 * promql_int.h — internals shared by the PromQL lexer, parser, evaluator,
 * functions and the HTTP API: arenas, interned label sets, the AST.
 */
#ifndef AUGUR_PROMQL_INT_H
#define AUGUR_PROMQL_INT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>

#include "query/promql.h"
#include "tsdb/tsdb_util.h"

/* ---- arena ------------------------------------------------------------- */

typedef struct pq_chunk {
    struct pq_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} pq_chunk_t;

typedef struct {
    pq_chunk_t *head;
    size_t total; /* bytes handed out, for limits */
} pq_arena_t;

typedef struct {
    pq_chunk_t *head;
    size_t used;
} pq_arena_mark_t;

void *pq_arena_alloc(pq_arena_t *a, size_t n); /* 16-byte aligned, NULL on OOM */
char *pq_arena_strndup(pq_arena_t *a, const char *s, size_t n);
void pq_arena_free(pq_arena_t *a);
pq_arena_mark_t pq_arena_mark(const pq_arena_t *a);
void pq_arena_reset(pq_arena_t *a, pq_arena_mark_t m);

/* ---- label sets (interned: one pointer per distinct set) --------------- */

typedef struct pq_labels {
    uint32_t n;
    uint64_t hash;
    const struct pq_labels *noname; /* cache: this set without __name__ */
    pq_label_t l[]; /* sorted by name; strings live in the intern arena */
} pq_labels_t;

typedef struct {
    pq_arena_t *arena;
    const pq_labels_t **slots;
    size_t cap, n;
} pq_intern_t;

/* Intern the (sorted, unique-name) labels; strings are copied unless
 * they already live in the arena (copy == 0). NULL on OOM. */
const pq_labels_t *pq_intern(pq_intern_t *in, const pq_label_t *l, size_t n, int copy);
void pq_intern_free(pq_intern_t *in);
const char *pq_labels_get(const pq_labels_t *ls, const char *name); /* NULL if absent */
int pq_labels_cmp(const pq_labels_t *a, const pq_labels_t *b);      /* Prometheus' order */
uint64_t pq_hash_bytes(uint64_t h, const void *p, size_t n);

/* ---- AST --------------------------------------------------------------- */

typedef enum {
    PQ_N_NUM,
    PQ_N_STR,
    PQ_N_VSEL,
    PQ_N_MSEL,
    PQ_N_SUBQ,
    PQ_N_CALL,
    PQ_N_AGG,
    PQ_N_BIN,
    PQ_N_NEG,
    PQ_N_PAREN,
} pq_nkind_t;

typedef enum {
    /* binary operators, in token order of the lexer */
    PQ_OP_ADD,
    PQ_OP_SUB,
    PQ_OP_MUL,
    PQ_OP_DIV,
    PQ_OP_MOD,
    PQ_OP_POW,
    PQ_OP_ATAN2,
    PQ_OP_EQ,
    PQ_OP_NE,
    PQ_OP_GT,
    PQ_OP_LT,
    PQ_OP_GE,
    PQ_OP_LE,
    PQ_OP_AND,
    PQ_OP_OR,
    PQ_OP_UNLESS,
} pq_binop_t;

typedef enum {
    PQ_AGG_SUM,
    PQ_AGG_AVG,
    PQ_AGG_MIN,
    PQ_AGG_MAX,
    PQ_AGG_COUNT,
    PQ_AGG_STDDEV,
    PQ_AGG_STDVAR,
    PQ_AGG_TOPK,
    PQ_AGG_BOTTOMK,
    PQ_AGG_QUANTILE,
    PQ_AGG_COUNT_VALUES,
    PQ_AGG_GROUP,
} pq_aggop_t;

typedef enum { PQ_CARD_ONE_ONE, PQ_CARD_MANY_ONE, PQ_CARD_ONE_MANY, PQ_CARD_MANY_MANY } pq_card_t;

typedef enum { PQ_AT_NONE, PQ_AT_TIME, PQ_AT_START, PQ_AT_END } pq_at_kind_t;

typedef struct pq_node pq_node_t;
typedef struct pq_loaded pq_loaded_t;

typedef struct pq_func {
    const char *name;
    int nargs_min, nargs_max; /* nargs_max < 0: variadic */
    pq_type_t arg_types[6];   /* the last one repeats for variadic functions */
    pq_type_t ret;
    int id;
} pq_func_t;

typedef struct {
    tsdb_match_type_t type;
    char *name, *value;
} pq_matcher_t;

struct pq_node {
    pq_nkind_t kind;
    pq_type_t type;
    uint32_t pos; /* byte offset in the query text */
    union {
        double num;  /* NUM */
        char *str;   /* STR */
        struct {     /* VSEL, MSEL (MSEL: range_ms > 0) */
            pq_matcher_t *m;
            size_t nm;
            char *name;
            int64_t range_ms;
            int64_t offset_ms;
            pq_at_kind_t at;
            int64_t at_ms;
            pq_loaded_t *data; /* filled by the evaluator */
        } sel;
        struct { /* SUBQ */
            pq_node_t *expr;
            int64_t range_ms, step_ms, offset_ms;
            pq_at_kind_t at;
            int64_t at_ms;
        } subq;
        struct { /* CALL */
            const pq_func_t *fn;
            pq_node_t **args;
            size_t nargs;
            struct pq_sweep *sweep; /* filled by the evaluator: values on the step grid */
        } call;
        struct { /* AGG */
            pq_aggop_t op;
            pq_node_t *expr, *param;
            char **grouping;
            size_t ngrouping;
            int without;
            uint32_t *gid;  /* filled by the evaluator: group of each series of a swept input */
            size_t ngid;    /* number of distinct groups */
        } agg;
        struct { /* BIN */
            pq_binop_t op;
            pq_node_t *lhs, *rhs;
            int ret_bool;
            pq_card_t card;
            int matching; /* on() / ignoring() given */
            int on;
            char **mlabels; /* on/ignoring labels */
            size_t nmlabels;
            char **include; /* group_left/right labels */
            size_t ninclude;
        } bin;
        struct { /* NEG, PAREN */
            pq_node_t *expr;
        } un;
    } u;
};

struct pq_expr {
    pq_arena_t arena; /* every node and string of the tree */
    pq_node_t *root;
};

/* Function table (promql_func.c). */
const pq_func_t *pq_func_lookup(const char *name, size_t len);

enum {
    PQ_F_ABS = 1, PQ_F_ABSENT, PQ_F_ABSENT_OVER_TIME, PQ_F_CEIL, PQ_F_CHANGES, PQ_F_CLAMP,
    PQ_F_CLAMP_MAX, PQ_F_CLAMP_MIN, PQ_F_DAY_OF_MONTH, PQ_F_DAY_OF_WEEK, PQ_F_DAY_OF_YEAR,
    PQ_F_DAYS_IN_MONTH, PQ_F_DELTA, PQ_F_DERIV, PQ_F_EXP, PQ_F_FLOOR, PQ_F_HISTOGRAM_QUANTILE,
    PQ_F_HOLT_WINTERS, PQ_F_HOUR, PQ_F_IDELTA, PQ_F_INCREASE, PQ_F_IRATE, PQ_F_LABEL_REPLACE,
    PQ_F_LABEL_JOIN, PQ_F_LN, PQ_F_LOG10, PQ_F_LOG2, PQ_F_MINUTE, PQ_F_MONTH, PQ_F_PREDICT_LINEAR,
    PQ_F_RATE, PQ_F_RESETS, PQ_F_ROUND, PQ_F_SCALAR, PQ_F_SGN, PQ_F_SORT, PQ_F_SORT_DESC,
    PQ_F_SQRT, PQ_F_TIME, PQ_F_TIMESTAMP, PQ_F_VECTOR, PQ_F_YEAR, PQ_F_AVG_OVER_TIME,
    PQ_F_MIN_OVER_TIME, PQ_F_MAX_OVER_TIME, PQ_F_SUM_OVER_TIME, PQ_F_COUNT_OVER_TIME,
    PQ_F_QUANTILE_OVER_TIME, PQ_F_STDDEV_OVER_TIME, PQ_F_STDVAR_OVER_TIME, PQ_F_LAST_OVER_TIME,
    PQ_F_PRESENT_OVER_TIME, PQ_F_ACOS, PQ_F_ACOSH, PQ_F_ASIN, PQ_F_ASINH, PQ_F_ATAN,
    PQ_F_ATANH, PQ_F_COS, PQ_F_COSH, PQ_F_SIN, PQ_F_SINH, PQ_F_TAN, PQ_F_TANH, PQ_F_DEG,
    PQ_F_RAD, PQ_F_PI,
};

/* ---- evaluation values --------------------------------------------------- */

typedef struct {
    const pq_labels_t *m;
    double v;
    int64_t t; /* sample time (for timestamp()); the eval time otherwise */
} pq_sample_t;

typedef struct {
    pq_sample_t *s;
    size_t n;
} pq_vector_t;

typedef struct {
    const pq_labels_t *m;
    const tsdb_sample_t *s;
    size_t n;
} pq_mseries_t;

typedef struct {
    pq_mseries_t *s;
    size_t n;
} pq_matrix_t;

typedef struct {
    pq_type_t type;
    double scalar;
    const char *str;
    pq_vector_t vec;
    pq_matrix_t mat;
} pq_value_t;

/* Data of one selector, loaded once per query. */
struct pq_loaded {
    size_t n;
    const pq_labels_t **labels;
    tsdb_sample_t **samples; /* time order, stale markers kept */
    size_t *nsamples;
    uint8_t *has_stale;
};

/* A range function over a selector, evaluated for every step of the
 * top-level grid while the selector's series are streamed one by one (the
 * samples are not kept): values and presence, step-major. */
typedef struct pq_sweep {
    size_t n;                   /* series (columns) */
    size_t nsteps;              /* rows: c->start + i * c->step */
    const pq_labels_t **labels; /* output labels of each series */
    double *vals;               /* [i * n + j] */
    uint8_t *present;           /* [i * n + j] */
    int maybe_dup;              /* two series share output labels: check each step */
} pq_sweep_t;

typedef struct pq_ctx {
    tsdb_reader_t *reader;
    pq_arena_t perm;  /* interned labels, loaded samples */
    pq_arena_t tmp;   /* values of one top-level step */
    pq_intern_t intern;
    const pq_labels_t *empty;
    int64_t start, end, step, lookback;
    uint64_t max_samples, samples_loaded, samples_live;
    int64_t deadline_ns;
    unsigned tick;
    jmp_buf jb;
    int err;
    char *errbuf;
    size_t errlen;
    struct pq_memo { const void *k1; const void *k2; const void *v; } *memo; /* (node, labels) -> labels */
    size_t memo_cap, memo_n;
    struct pq_defer { void (*fn)(void *); void *p; } *defer; /* released at the end */
    size_t ndefer, capdefer;
    size_t nsteps; /* top-level evaluation steps */
    tbuf_t *sbuf;  /* samples of the series being streamed (reused) */
} pq_ctx_t;

/* Run fn(p) when the evaluation ends (success or failure). */
void pq_defer(pq_ctx_t *c, void (*fn)(void *), void *p);

/* Abort evaluation: longjmp back to promql_eval with `code`. */
_Noreturn void pq_fail(pq_ctx_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *pq_talloc(pq_ctx_t *c, size_t n); /* tmp arena, fails the query on OOM */
void *pq_palloc(pq_ctx_t *c, size_t n); /* perm arena */
const pq_labels_t *pq_cintern(pq_ctx_t *c, const pq_label_t *l, size_t n, int copy);
const pq_labels_t *pq_drop_name(pq_ctx_t *c, const pq_labels_t *m);
const pq_labels_t *pq_labels_set(pq_ctx_t *c, const pq_labels_t *m, const char *name,
                                 const char *value); /* value "" removes */
void pq_check_deadline(pq_ctx_t *c);
void pq_count_samples(pq_ctx_t *c, uint64_t n);

pq_value_t pq_eval_node(pq_ctx_t *c, pq_node_t *n, int64_t ts);
pq_value_t pq_eval_call(pq_ctx_t *c, pq_node_t *n, int64_t ts);
/* Range slice of loaded data (stale markers removed), [mint, maxt]. */
void pq_loaded_slice(pq_ctx_t *c, const pq_loaded_t *d, size_t i, int64_t mint, int64_t maxt,
                     const tsdb_sample_t **s, size_t *n);
double pq_quantile(double q, double *v, size_t n); /* sorts v */
/* The vector of a swept call (n->u.call.sweep) at top-level time ts; idx,
 * if not NULL, receives each sample's series column. */
pq_value_t pq_sweep_vector(pq_ctx_t *c, pq_node_t *n, int64_t ts, const uint32_t **idx);
/* Can function `id` be swept (a range function with no parameter)? */
int pq_sweepable(int id);
/* Values of range function `id` over the windows [t - range, t] for
 * t = t0 + i * step, i < nsteps, of one series' samples s[0..n) (time order,
 * no stale markers): vals[i * stride], present[i * stride]. */
void pq_sweep_series(pq_ctx_t *c, int id, const tsdb_sample_t *s, size_t n, int64_t t0, int64_t step,
                     size_t nsteps, int64_t range, double *vals, uint8_t *present, size_t stride);
void pq_vec_check_dups(pq_ctx_t *c, const pq_vector_t *v);
int64_t pq_sel_eval_time(pq_ctx_t *c, pq_at_kind_t at, int64_t at_ms, int64_t ts);

static inline int pq_is_stale(double v)
{
    return f64_bits(v) == TSDB_STALE_NAN_BITS;
}

/* ---- formatting (promql_fmt.c) ----------------------------------------- */

/* Go's strconv.FormatFloat(v, 'f', -1, 64) with Prometheus' "NaN", "+Inf",
 * "-Inf". buf needs >= 400 bytes. Returns the length. */
size_t pq_fmt_float(char *buf, double v);
/* Shortest digits that parse back to v (finite, > 0), closest to v among
 * the shortest: digits (NUL-terminated, no trailing zeros, <= 17) and
 * *exp10 with v = 0.d1d2... * 10^exp10. Returns the digit count. */
int pq_shortest_digits(double v, char *digits, int *exp10);
/* Prometheus' JSON timestamp of vector and matrix points: seconds and, if
 * any, three decimals ("1.500"). Scalar and string results print
 * float64(t)/1000 instead ("1.5"): pq_fmt_float((double)t / 1000). */
size_t pq_fmt_time(char *buf, int64_t t_ms);
/* Parse a time: float seconds or RFC 3339. Returns 0 or -1. */
int pq_parse_time(const char *s, int64_t *out_ms);
/* Parse a duration: "5m", "1h30m", or float seconds. Returns 0 or -1. */
int pq_parse_duration_param(const char *s, int64_t *out_ms);
/* PromQL duration at [p, end): "1h30m". Returns bytes consumed or 0. */
size_t pq_parse_duration(const char *p, const char *end, int64_t *out_ms);
int tbuf_puts(tbuf_t *b, const char *s);
int tbuf_json_str(tbuf_t *b, const char *s); /* quoted and escaped */

#endif
