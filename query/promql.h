/*
 * promql.h — PromQL parser and evaluator over a tsdb reader.
 *
 *   promql_parse()     text -> expression tree (precise error: position, what was expected)
 *   promql_eval()      instant (start == end) or range evaluation -> result
 *   promql_result_*()  walk and free a result
 *
 * Semantics follow Prometheus 2.42 (the reference the differential test
 * runs against): closed range windows [t - range, t], a lookback window
 * [t - lookback, t] for instant selectors, staleness markers end a series,
 * @ and offset, subqueries aligned to multiples of their step. Divergences
 * are listed in docs/promql-differences.md.
 *
 * Errors: functions return 0 or a negative PQ_E* code; promql_strerror()
 * names it and the message buffer of the call holds the detail.
 */
#ifndef AUGUR_PROMQL_H
#define AUGUR_PROMQL_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"

#define PQ_ERRNO_MAP(X)                                                   \
    X(OK, 0, "success")                                                   \
    X(EPARSE, -1, "parse error")                                          \
    X(EEXEC, -2, "execution error")                                       \
    X(ETIMEOUT, -3, "query timed out")                                    \
    X(ESAMPLES, -4, "query would load too many samples into memory")      \
    X(ENOMEM, -5, "out of memory")                                        \
    X(ESTORE, -6, "store error")                                          \
    X(EINVAL, -7, "invalid argument")                                     \
    X(ESERIES, -8, "too many series in the response")

typedef enum {
#define PQ_ERR_ENUM_(name, code, msg) PQ_##name = code,
    PQ_ERRNO_MAP(PQ_ERR_ENUM_)
#undef PQ_ERR_ENUM_
} pq_err_t;

const char *promql_strerror(int err);

typedef enum {
    PQ_T_NONE = 0,
    PQ_T_SCALAR = 1,
    PQ_T_VECTOR = 2,
    PQ_T_MATRIX = 3,
    PQ_T_STRING = 4,
} pq_type_t;

/* "scalar", "vector", "matrix", "string" (the API's resultType names). */
const char *promql_type_name(pq_type_t t);

typedef struct pq_expr pq_expr_t;

/* Parse `len` bytes of PromQL. On error returns PQ_EPARSE (or PQ_ENOMEM) and
 * writes "LINE:COL: parse error: ..." into err (NUL-terminated, truncated to
 * errlen). Never reads past q + len. */
int promql_parse(const char *q, size_t len, pq_expr_t **out, char *err, size_t errlen);
void promql_expr_free(pq_expr_t *e); /* accepts NULL */
pq_type_t promql_expr_type(const pq_expr_t *e);

typedef struct {
    int64_t start_ms, end_ms; /* equal for an instant query */
    int64_t step_ms;          /* range query step (> 0 when start < end) */
    int64_t lookback_ms;      /* 0 = 5 min */
    uint64_t max_samples;     /* 0 = 50 M */
    int64_t timeout_ms;       /* 0 = 2 min; measured with CLOCK_MONOTONIC */
    uint64_t max_series;      /* 0 = unlimited */
} pq_opts_t;

typedef struct {
    const char *name, *value; /* NUL-terminated, valid while the result lives */
} pq_label_t;

typedef struct {
    int64_t t;
    double v;
} pq_point_t;

typedef struct {
    const pq_label_t *labels; /* sorted by name */
    size_t nlabels;
    const pq_point_t *points; /* time order */
    size_t npoints;
} pq_series_t;

typedef struct {
    pq_type_t type;      /* of the evaluated expression (MATRIX for a range query) */
    pq_series_t *series; /* VECTOR: one point each; MATRIX: many; SCALAR/STRING: one unlabelled */
    size_t nseries;
    const char *str;     /* STRING value */
    uint64_t samples;    /* samples loaded from the store */
    void *priv_;
} pq_result_t;

/* Evaluate `e` over the store. An instant query (start == end) keeps the
 * expression's type; a range query returns a MATRIX (and needs a scalar or
 * vector expression). Errors: PQ_EEXEC (message in err), PQ_ETIMEOUT,
 * PQ_ESAMPLES, PQ_ENOMEM, PQ_ESTORE, PQ_EINVAL. */
int promql_eval(tsdb_reader_t *r, const pq_expr_t *e, const pq_opts_t *o, pq_result_t **out,
                char *err, size_t errlen);
void promql_result_free(pq_result_t *res); /* accepts NULL */

#endif
