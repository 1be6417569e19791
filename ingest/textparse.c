/*
 * textparse.c — Prometheus text exposition (0.0.4) / OpenMetrics text parser.
 *
 * Shape: the body is cut into lines with memchr(); each line is parsed
 * between its start and its end pointer (never past it), so a malformed
 * line cannot disturb the next one and recovery is "go to the next line".
 *
 * Line grammar (ws = space or tab, accepted between any two tokens):
 *
 *   line     = ws* ( "" | comment | sample )
 *   comment  = "#" ws+ ( "HELP" ws+ mname (ws+ text)?
 *                      | "TYPE" ws+ mname ws+ type
 *                      | "UNIT" ws+ mname (ws+ unit)?
 *                      | "EOF"                            OpenMetrics only
 *                      | anything )  |  "#" anything
 *   sample   = mname ws* ( "{" labels "}" )? ws* value ( ws+ ts )? exemplar? ws*
 *   labels   = ws* ( lname ws* "=" ws* '"' escaped '"' ws* ( "," ws* )? )*
 *   exemplar = ws* "#" ws* "{" anything                     OpenMetrics only
 *
 * Worked example: the line
 *
 *   up{job="node", instance="a\"b"} 1 1700000000000
 *
 * gives labels __name__="up", instance="a\"b" (unescaped into the string
 * arena: 3 bytes a " b), job="node" (pointing into the body), sorted by
 * name, and one sample {t = 1700000000000, v = 1.0}.
 *
 * Arenas: output arrays (series, samples, labels, metadata, errors) are
 * grow-only arrays indexed while parsing; series[i].labels/.samples are
 * only turned into pointers once the body is done (the arrays may move
 * while they grow). Unescaped strings and error messages go to a chained
 * block arena whose blocks never move.
 */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/textparse.h"

#define TP_NORMAL_NAN_BITS UINT64_C(0x7ff8000000000001) /* Prometheus value.NormalNaN */
#define TP_HARD_MAX_BODY ((size_t)UINT32_MAX - 1)
#define TP_HARD_MAX_LABELS 65536u
#define TP_SBLOCK_MIN ((size_t)64 * 1024)

#define TP_OK 0
#define TP_BAD 1 /* the line was rejected (an error was recorded) */
#define TP_EOF 2 /* OpenMetrics "# EOF" line */

typedef struct sblock {
    struct sblock *next;
    size_t cap, used;
    char data[];
} sblock_t;

typedef struct {
    tsdb_str_t name, value;
    uint32_t col; /* column of the name: where a duplicate is reported */
} plabel_t;

struct textparse {
    tsdb_series_in_t *series; /* .labels NULL while parsing, fixed up at the end */
    tsdb_sample_t *samples;
    uint32_t *series_line;
    size_t nseries, cap_series, cap_samples, cap_lines;
    tsdb_label_t *labels;
    size_t nlabels, cap_labels;
    textparse_meta_t *meta;
    size_t nmeta, cap_meta;
    uint32_t *mhash; /* open addressing: meta index + 1, 0 = empty */
    size_t mhash_cap;
    size_t mlast; /* meta entry found or added last */
    textparse_error_t *errors;
    size_t nerrors, cap_errors;
    plabel_t *scratch; /* labels of the current line */
    size_t cap_scratch;
    tsdb_label_t *extras; /* sorted copy of the extra labels */
    size_t nextras, cap_extras;
    sblock_t *sb_head, *sb_cur;
    locale_t cloc; /* "C" for strtod_l: the process locale must not matter */

    /* per parse */
    textparse_options_t o;
    const char *body;
    uint64_t nrejected, nexemplars, ncreated;
    uint32_t lineno;
    int eof_seen;
};

typedef struct {
    const char *ls, *le; /* line start, end (excluding "\r\n") */
} line_t;

/* ---- small helpers ------------------------------------------------------ */

const char *textparse_strerror(int err)
{
    switch (err) {
#define TEXTPARSE_ERR_STR_(name, code, msg)                                                        \
    case code:                                                                                     \
        return msg;
        TEXTPARSE_ERRNO_MAP(TEXTPARSE_ERR_STR_)
#undef TEXTPARSE_ERR_STR_
    }
    return "unknown error";
}

static const char *const type_names[] = {
    "",        "counter", "gauge",    "histogram",      "summary",
    "untyped", "info",    "stateset", "gaugehistogram", "unknown",
};

const char *textparse_type_name(textparse_type_t t)
{
    if ((unsigned)t >= sizeof type_names / sizeof type_names[0]) return "";
    return type_names[t];
}

static inline int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static inline int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int is_mstart(char c)
{
    return is_alpha_(c) || c == ':';
}

static inline int is_mchar(char c)
{
    return is_alpha_(c) || is_digit(c) || c == ':';
}

static inline int is_lchar(char c)
{
    return is_alpha_(c) || is_digit(c);
}

static inline const char *skip_ws(const char *s, const char *e)
{
    while (s < e && is_ws(*s))
        s++;
    return s;
}

static int valid_mname(const char *s, size_t n)
{
    if (n == 0 || !is_mstart(s[0])) return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_mchar(s[i])) return 0;
    return 1;
}

static int valid_lname(const char *s, size_t n)
{
    if (n == 0 || !is_alpha_(s[0])) return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_lchar(s[i])) return 0;
    return 1;
}

static int str_cmp(tsdb_str_t a, tsdb_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return (a.len > b.len) - (a.len < b.len);
}

static int str_eq(tsdb_str_t a, const char *s, size_t n)
{
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

static int ci_eq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return 0;
    }
    return 1;
}

/* First byte of [s, e) that is NUL or breaks UTF-8 (Go's utf8.Valid rules:
 * no overlongs, no surrogates, nothing above U+10FFFF), or NULL. */
static const char *utf8_bad(const char *s, const char *e)
{
    const unsigned char *p = (const unsigned char *)s, *end = (const unsigned char *)e;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c == 0) return (const char *)p;
            p++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return (const char *)p;
        }
        if ((size_t)(end - p) <= n) return (const char *)p;
        if (p[1] < lo || p[1] > hi) return (const char *)p;
        for (size_t i = 2; i <= n; i++)
            if (p[i] < 0x80 || p[i] > 0xbf) return (const char *)p;
        p += n + 1;
    }
    return NULL;
}

static int grow(void **pp, size_t *cap, size_t need, size_t elsz)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elsz) return -1;
        nc *= 2;
    }
    void *np = realloc(*pp, nc * elsz);
    if (!np) return -1;
    *pp = np;
    *cap = nc;
    return 0;
}

#define GROW(p, arr, capf, need) grow((void **)&(p)->arr, &(p)->capf, (need), sizeof *(p)->arr)

/* n bytes from the block arena (never moves). NULL on allocation failure. */
static char *sarena_alloc(textparse_t *p, size_t n)
{
    sblock_t *b = p->sb_cur, *last = NULL;
    while (b && b->cap - b->used < n) {
        last = b;
        b = b->next;
    }
    if (!b) {
        size_t cap = n > TP_SBLOCK_MIN ? n : TP_SBLOCK_MIN;
        if (cap > SIZE_MAX - sizeof(sblock_t)) return NULL;
        b = malloc(sizeof(sblock_t) + cap);
        if (!b) return NULL;
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
        /* last is the tail: the walk above started at sb_cur, which is NULL
         * only while there are no blocks at all. */
        if (last)
            last->next = b;
        else
            p->sb_head = b;
    }
    p->sb_cur = b;
    char *r = b->data + b->used;
    b->used += n;
    return r;
}

/* ---- errors ------------------------------------------------------------- */

/* Printable, quote-free excerpt of [s, s+n) for messages. */
static void excerpt(char *dst, size_t cap, const char *s, size_t n)
{
    size_t max = cap - 4, j = 0;
    for (size_t i = 0; i < n && j < max; i++) {
        char c = s[i];
        dst[j++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
    }
    if (n > max) {
        memcpy(dst + j, "...", 3);
        j += 3;
    }
    dst[j] = 0;
}

/* Record a rejected line. `found` (may be NULL) is where the parser stopped:
 * the byte there is described after the message. Returns TP_BAD or
 * TEXTPARSE_ENOMEM. */
__attribute__((format(printf, 6, 7))) static int tp_error_at(textparse_t *p, uint32_t line,
                                                             uint32_t col, const char *found,
                                                             const char *le, const char *fmt, ...)
{
    p->nrejected++;
    if (p->nerrors >= p->o.max_errors) return TP_BAD;
    char msg[512];
    int n = snprintf(msg, sizeof msg, "line %u, col %u: ", line, col);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
    if (found) {
        if (found >= le) {
            n += snprintf(msg + n, sizeof msg - (size_t)n, " (found end of line)");
        } else {
            unsigned char c = (unsigned char)*found;
            if (c >= 0x20 && c < 0x7f)
                n += snprintf(msg + n, sizeof msg - (size_t)n, " (found '%c')", c);
            else
                n += snprintf(msg + n, sizeof msg - (size_t)n, " (found byte 0x%02x)", c);
        }
        if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
    }
    if (GROW(p, errors, cap_errors, p->nerrors + 1)) return TEXTPARSE_ENOMEM;
    char *m = sarena_alloc(p, (size_t)n + 1);
    if (!m) return TEXTPARSE_ENOMEM;
    memcpy(m, msg, (size_t)n + 1);
    p->errors[p->nerrors++] = (textparse_error_t){line, col, m};
    return TP_BAD;
}

#define COL(L, at) ((uint32_t)((at) - (L)->ls) + 1)
/* Error at `at` in line L, describing the byte found there. */
#define ERR_FOUND(p, L, at, ...)                                                                   \
    tp_error_at((p), (p)->lineno, COL(L, at), (at), (L)->le, __VA_ARGS__)
/* Error at `at` in line L. */
#define ERR(p, L, at, ...) tp_error_at((p), (p)->lineno, COL(L, at), NULL, NULL, __VA_ARGS__)

/* ---- numbers ------------------------------------------------------------ */

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Decimal float syntax: [+-]? digits* ('.' digits*)? ([eE][+-]?digits+)?
 * with at least one mantissa digit, or [+-]?(inf|infinity), or nan.
 * Returns 1 = number, 2 = +-inf (*neg set), 3 = nan, 0 = invalid. Fills the
 * digit spans for the callers' fast paths. */
typedef struct {
    int neg;
    size_t i0, i1, f0, f1; /* integer and fraction digit spans */
    int64_t exp;           /* explicit exponent, clamped to +-1e6 */
} numsyn_t;

static int num_syntax(const char *s, size_t n, numsyn_t *ns)
{
    size_t i = 0;
    ns->neg = 0;
    ns->exp = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        ns->neg = s[i] == '-';
        i++;
    }
    if (i < n && (s[i] == 'i' || s[i] == 'I' || s[i] == 'n' || s[i] == 'N')) {
        if (ci_eq(s + i, n - i, "inf") || ci_eq(s + i, n - i, "infinity")) return 2;
        if (i == 0 && ci_eq(s, n, "nan")) return 3;
        return 0;
    }
    ns->i0 = i;
    while (i < n && is_digit(s[i]))
        i++;
    ns->i1 = i;
    ns->f0 = ns->f1 = i;
    if (i < n && s[i] == '.') {
        i++;
        ns->f0 = i;
        while (i < n && is_digit(s[i]))
            i++;
        ns->f1 = i;
    }
    if (ns->i1 == ns->i0 && ns->f1 == ns->f0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            eneg = s[i] == '-';
            i++;
        }
        if (i >= n || !is_digit(s[i])) return 0;
        int64_t e = 0;
        while (i < n && is_digit(s[i])) {
            if (e < 1000000) e = e * 10 + (s[i] - '0');
            i++;
        }
        ns->exp = eneg ? -e : e;
    }
    return i == n ? 1 : 0;
}

#define TP_VINVALID 1 /* not a number */
#define TP_VRANGE 2   /* a number out of range */

/* Parse a sample value. 0 = ok, TP_VINVALID, TP_VRANGE, TEXTPARSE_ENOMEM. */
static int parse_value(textparse_t *p, const char *s, size_t n, double *out)
{
    numsyn_t ns;
    int k = num_syntax(s, n, &ns);
    if (k == 0) return TP_VINVALID;
    if (k == 2) {
        *out = ns.neg ? -HUGE_VAL : HUGE_VAL;
        return 0;
    }
    if (k == 3) {
        uint64_t bits = TP_NORMAL_NAN_BITS;
        memcpy(out, &bits, sizeof bits);
        return 0;
    }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    /* Exact fast path (Clinger): mantissa < 2^53 and |exp10| <= 22 means
     * one correctly rounded multiply or divide gives the right double. */
    {
        uint64_t m = 0;
        int nd = 0, ok = 1;
        int64_t e = ns.exp;
        for (size_t i = ns.i0; i < ns.i1; i++) {
            if (m == 0 && s[i] == '0') continue;
            if (nd >= 19) {
                ok = 0;
                break;
            }
            m = m * 10 + (uint64_t)(s[i] - '0');
            nd++;
        }
        for (size_t i = ns.f0; ok && i < ns.f1; i++) {
            e--;
            if (m == 0 && s[i] == '0') continue;
            if (nd >= 19) {
                ok = 0;
                break;
            }
            m = m * 10 + (uint64_t)(s[i] - '0');
            nd++;
        }
        if (ok && m == 0) {
            *out = ns.neg ? -0.0 : 0.0;
            return 0;
        }
        if (ok && m <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
            double v = (double)m;
            v = e >= 0 ? v * pow10_exact[e] : v / pow10_exact[-e];
            *out = ns.neg ? -v : v;
            return 0;
        }
    }
#endif
    char stackbuf[128], *buf = stackbuf;
    if (n >= sizeof stackbuf) {
        buf = sarena_alloc(p, n + 1);
        if (!buf) return TEXTPARSE_ENOMEM;
    }
    memcpy(buf, s, n);
    buf[n] = 0;
    char *endp;
    errno = 0;
    double v = strtod_l(buf, &endp, p->cloc);
    if (endp != buf + n) return TP_VINVALID;
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)) return TP_VRANGE;
    *out = v;
    return 0;
}

/* 0.0.4 timestamp: -?[0-9]+ milliseconds. 0, TP_VINVALID, TP_VRANGE. */
static int parse_ts_ms(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n) return TP_VINVALID;
    uint64_t m = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!is_digit(s[i])) return TP_VINVALID;
        unsigned d = (unsigned)(s[i] - '0');
        if (m > (lim - d) / 10) return TP_VRANGE;
        m = m * 10 + d;
    }
    *out = neg ? (m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    return 0;
}

/* OpenMetrics timestamp: decimal seconds -> milliseconds, exactly, digits
 * below the millisecond truncated toward zero. 0, TP_VINVALID, TP_VRANGE. */
static int parse_ts_om(const char *s, size_t n, int64_t *out)
{
    numsyn_t ns;
    if (num_syntax(s, n, &ns) != 1) return TP_VINVALID;
    size_t i0 = ns.i0, i1 = ns.i1, f0 = ns.f0, f1 = ns.f1;
    while (i0 < i1 && s[i0] == '0')
        i0++;
    int64_t point = (int64_t)(i1 - i0) + ns.exp; /* digits before the point */
    if (i0 == i1)
        while (f0 < f1 && s[f0] == '0') {
            f0++;
            point--;
        }
    if (i0 == i1 && f0 == f1) {
        *out = 0;
        return 0;
    }
    int64_t k = point + 3; /* digits of the millisecond integer; the first is non-zero */
    if (k <= 0) {
        *out = 0;
        return 0;
    }
    if (k > 19) return TP_VRANGE;
    uint64_t m = 0;
    size_t ni = i1 - i0, nf = f1 - f0;
    for (int64_t j = 0; j < k; j++) {
        unsigned d = 0;
        if ((size_t)j < ni)
            d = (unsigned)(s[i0 + (size_t)j] - '0');
        else if ((size_t)j - ni < nf)
            d = (unsigned)(s[f0 + ((size_t)j - ni)] - '0');
        m = m * 10 + d;
    }
    uint64_t lim = ns.neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (m > lim) return TP_VRANGE;
    *out = ns.neg ? (m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    return 0;
}

/* ---- strings ------------------------------------------------------------ */

/* Unescape [s, e): \\ -> \, \n -> newline, and \" -> " when `quote`; any
 * other backslash sequence stays as written (as Prometheus keeps it). The
 * result points into the body when nothing needed unescaping. */
static int unescape(textparse_t *p, const char *s, const char *e, int quote, tsdb_str_t *out)
{
    const char *bs = memchr(s, '\\', (size_t)(e - s));
    if (!bs) {
        *out = (tsdb_str_t){s, (uint32_t)(e - s)};
        return 0;
    }
    char *d = sarena_alloc(p, (size_t)(e - s));
    if (!d) return TEXTPARSE_ENOMEM;
    size_t j = (size_t)(bs - s);
    memcpy(d, s, j);
    for (const char *c = bs; c < e; c++) {
        if (*c == '\\' && c + 1 < e) {
            char x = c[1];
            if (x == '\\' || x == 'n' || (quote && x == '"')) {
                d[j++] = x == 'n' ? '\n' : x;
                c++;
                continue;
            }
        }
        d[j++] = *c;
    }
    *out = (tsdb_str_t){d, (uint32_t)j};
    return 0;
}

/* ---- metadata ----------------------------------------------------------- */

static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static const textparse_meta_t *meta_lookup(const textparse_t *p, const char *name, size_t n,
                                           size_t *slot)
{
    if (!p->mhash_cap) return NULL;
    size_t mask = p->mhash_cap - 1, i = hash_str(name, n) & mask;
    while (p->mhash[i]) {
        const textparse_meta_t *m = &p->meta[p->mhash[i] - 1];
        if (str_eq(m->name, name, n)) return m;
        i = (i + 1) & mask;
    }
    if (slot) *slot = i;
    return NULL;
}

static int meta_rehash(textparse_t *p, size_t ncap)
{
    uint32_t *h = calloc(ncap, sizeof *h);
    if (!h) return TEXTPARSE_ENOMEM;
    for (size_t k = 0; k < p->nmeta; k++) {
        size_t i = hash_str(p->meta[k].name.ptr, p->meta[k].name.len) & (ncap - 1);
        while (h[i])
            i = (i + 1) & (ncap - 1);
        h[i] = (uint32_t)k + 1;
    }
    free(p->mhash);
    p->mhash = h;
    p->mhash_cap = ncap;
    return 0;
}

static int meta_get(textparse_t *p, const char *name, size_t n, textparse_meta_t **out)
{
    /* HELP and TYPE of one family come in pairs: try the last one first. */
    if (p->nmeta && str_eq(p->meta[p->mlast].name, name, n)) {
        *out = &p->meta[p->mlast];
        return 0;
    }
    if ((p->nmeta + 1) * 2 > p->mhash_cap) {
        size_t ncap = p->mhash_cap ? p->mhash_cap * 2 : 64;
        if (meta_rehash(p, ncap)) return TEXTPARSE_ENOMEM;
    }
    size_t slot = 0;
    const textparse_meta_t *m = meta_lookup(p, name, n, &slot);
    if (m) {
        p->mlast = (size_t)(m - p->meta);
        *out = &p->meta[p->mlast];
        return 0;
    }
    if (GROW(p, meta, cap_meta, p->nmeta + 1)) return TEXTPARSE_ENOMEM;
    textparse_meta_t *nm = &p->meta[p->nmeta];
    *nm = (textparse_meta_t){.name = {name, (uint32_t)n}, .line = p->lineno};
    p->mlast = p->nmeta;
    p->mhash[slot] = (uint32_t)++p->nmeta;
    *out = nm;
    return 0;
}

const textparse_meta_t *textparse_meta_find(const textparse_t *p, const char *name, size_t len)
{
    if (!p || (!name && len)) return NULL;
    return meta_lookup(p, name ? name : "", len, NULL);
}

/* ---- comment lines ------------------------------------------------------ */

enum { KW_HELP, KW_TYPE, KW_UNIT };

/* s points after '#'. */
static int parse_comment(textparse_t *p, const line_t *L, const char *s)
{
    const char *le = L->le;
    const char *t = skip_ws(s, le);
    if (t == s) return TP_OK; /* "#..." without a blank: a plain comment */
    int om = p->o.dialect == TEXTPARSE_OPENMETRICS;
    size_t rest = (size_t)(le - t);
    if (om && rest >= 3 && !memcmp(t, "EOF", 3) && skip_ws(t + 3, le) == le) {
        p->eof_seen = 1;
        return TP_EOF;
    }
    if (rest < 5 || !is_ws(t[4])) return TP_OK;
    int kw;
    const char *kwname;
    if (!memcmp(t, "HELP", 4)) {
        kw = KW_HELP;
        kwname = "HELP";
    } else if (!memcmp(t, "TYPE", 4)) {
        kw = KW_TYPE;
        kwname = "TYPE";
    } else if (!memcmp(t, "UNIT", 4)) {
        kw = KW_UNIT;
        kwname = "UNIT";
    } else {
        return TP_OK;
    }
    /* 0.0.4 has no # UNIT: Prometheus reads it as a comment, so a malformed
     * one is a comment here too, and a well-formed one is kept. */
    int lax = kw == KW_UNIT && !om;
    const char *name = skip_ws(t + 4, le);
    const char *ne = name;
    while (ne < le && is_mchar(*ne))
        ne++;
    if (name == le || !is_mstart(*name))
        return lax ? TP_OK : ERR_FOUND(p, L, name, "expected metric name after %s", kwname);
    if (ne < le && !is_ws(*ne))
        return lax ? TP_OK : ERR_FOUND(p, L, ne, "invalid character in metric name");
    size_t nlen = (size_t)(ne - name);
    const char *a = skip_ws(ne, le), *b = le;
    textparse_meta_t *m;
    int rc;
    if (kw == KW_HELP) {
        const char *bad = utf8_bad(a, le);
        if (bad)
            return ERR(p, L, bad, *bad ? "invalid UTF-8 in help text" : "NUL byte in help text");
        tsdb_str_t help;
        if ((rc = unescape(p, a, le, om, &help))) return rc;
        if ((rc = meta_get(p, name, nlen, &m))) return rc;
        m->help = help;
        return TP_OK;
    }
    while (b > a && is_ws(b[-1]))
        b--;
    if (kw == KW_TYPE) {
        if (a == b) return ERR_FOUND(p, L, a, "expected metric type after metric name");
        textparse_type_t ty = TEXTPARSE_TYPE_NONE;
        for (unsigned i = 1; i < sizeof type_names / sizeof type_names[0]; i++)
            if (strlen(type_names[i]) == (size_t)(b - a) &&
                !memcmp(a, type_names[i], (size_t)(b - a)))
                ty = (textparse_type_t)i;
        if (ty == TEXTPARSE_TYPE_NONE) {
            char ex[48];
            excerpt(ex, sizeof ex, a, (size_t)(b - a));
            return ERR(p, L, a, "invalid metric type \"%s\"", ex);
        }
        if ((rc = meta_get(p, name, nlen, &m))) return rc;
        m->type = ty;
        return TP_OK;
    }
    /* UNIT: empty, or a suffix "_<unit>" of the family name. */
    size_t ulen = (size_t)(b - a);
    for (const char *c = a; c < b; c++)
        if (!is_mchar(*c)) return lax ? TP_OK : ERR_FOUND(p, L, c, "invalid character in unit");
    if (ulen &&
        (nlen < ulen + 2 || memcmp(ne - ulen, a, ulen) || ne[-(ptrdiff_t)ulen - 1] != '_')) {
        if (lax) return TP_OK;
        char ex1[48], ex2[48];
        excerpt(ex1, sizeof ex1, a, ulen);
        excerpt(ex2, sizeof ex2, name, nlen);
        return ERR(p, L, a, "unit \"%s\" is not a suffix of metric name \"%s\"", ex1, ex2);
    }
    if ((rc = meta_get(p, name, nlen, &m))) return rc;
    m->unit = (tsdb_str_t){a, (uint32_t)ulen};
    return TP_OK;
}

/* ---- sample lines ------------------------------------------------------- */

static int plabel_cmp(const void *a, const void *b)
{
    return str_cmp(((const plabel_t *)a)->name, ((const plabel_t *)b)->name);
}

static void plabels_sort(plabel_t *v, size_t n)
{
    if (n > 16) {
        qsort(v, n, sizeof *v, plabel_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        plabel_t x = v[i];
        size_t j = i;
        while (j > 0 && str_cmp(v[j - 1].name, x.name) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* Label set after '{'. On TP_OK *sp points after '}' and *nsp counts the
 * labels in p->scratch. */
static int parse_labels(textparse_t *p, const line_t *L, const char *s, const char **sp,
                        size_t *nsp)
{
    const char *le = L->le;
    size_t ns = *nsp;
    int rc;
    for (;;) {
        s = skip_ws(s, le);
        if (s < le && *s == '}') {
            s++;
            break;
        }
        if (s == le || !is_alpha_(*s)) return ERR_FOUND(p, L, s, "expected label name or '}'");
        const char *ln = s;
        while (s < le && is_lchar(*s))
            s++;
        size_t lnlen = (size_t)(s - ln);
        if (lnlen > p->o.max_label_name_len)
            return ERR(p, L, ln, "label name too long (%zu bytes, limit %u)", lnlen,
                       p->o.max_label_name_len);
        s = skip_ws(s, le);
        if (s == le || *s != '=') return ERR_FOUND(p, L, s, "expected '=' after label name");
        s = skip_ws(s + 1, le);
        if (s == le || *s != '"') return ERR_FOUND(p, L, s, "expected '\"' to start label value");
        const char *q = s++, *vs = s;
        int esc = 0;
        while (s < le && *s != '"') {
            if (*s == '\\') {
                esc = 1;
                if (le - s < 2) {
                    s = le;
                    break;
                }
                s += 2;
            } else {
                s++;
            }
        }
        if (s >= le) return ERR(p, L, q, "unterminated label value");
        const char *ve = s++;
        const char *bad = utf8_bad(vs, ve);
        if (bad)
            return ERR(p, L, bad,
                       *bad ? "invalid UTF-8 in label value" : "NUL byte in label value");
        tsdb_str_t val;
        if (!esc)
            val = (tsdb_str_t){vs, (uint32_t)(ve - vs)};
        else if ((rc = unescape(p, vs, ve, 1, &val)))
            return rc;
        if (val.len > p->o.max_label_value_len)
            return ERR(p, L, vs, "label value too long (%u bytes, limit %u)", val.len,
                       p->o.max_label_value_len);
        if (ns >= p->o.max_labels_per_series)
            return ERR(p, L, ln, "too many labels (limit %u)", p->o.max_labels_per_series);
        p->scratch[ns++] = (plabel_t){{ln, (uint32_t)lnlen}, val, COL(L, ln)};
        s = skip_ws(s, le);
        if (s < le && *s == ',') {
            s++;
            continue;
        }
        if (s < le && *s == '}') {
            s++;
            break;
        }
        return ERR_FOUND(p, L, s, "expected ',' or '}' after label value");
    }
    *sp = s;
    *nsp = ns;
    return TP_OK;
}

static int parse_sample(textparse_t *p, const line_t *L, const char *s)
{
    const char *le = L->le;
    const textparse_options_t *o = &p->o;
    int om = o->dialect == TEXTPARSE_OPENMETRICS;
    const char *name = s;
    while (s < le && is_mchar(*s))
        s++;
    if (s < le && !is_ws(*s) && *s != '{')
        return ERR_FOUND(p, L, s, "invalid character in metric name");
    size_t nlen = (size_t)(s - name);
    if (nlen > o->max_label_value_len)
        return ERR(p, L, name, "metric name too long (%zu bytes, limit %u)", nlen,
                   o->max_label_value_len);
    size_t ns = 0;
    p->scratch[ns++] = (plabel_t){{"__name__", 8}, {name, (uint32_t)nlen}, COL(L, name)};
    int rc;
    s = skip_ws(s, le);
    int braces = 0;
    if (s < le && *s == '{') {
        braces = 1;
        if ((rc = parse_labels(p, L, s + 1, &s, &ns))) return rc;
        s = skip_ws(s, le);
    }
    if (s == le)
        return ERR_FOUND(p, L, s,
                         braces ? "expected value after '}'" : "expected value after metric name");
    const char *vs = s;
    while (s < le && !is_ws(*s))
        s++;
    double v = 0;
    rc = parse_value(p, vs, (size_t)(s - vs), &v);
    if (rc < 0) return rc;
    if (rc) {
        char ex[48];
        excerpt(ex, sizeof ex, vs, (size_t)(s - vs));
        return ERR(p, L, vs,
                   rc == TP_VINVALID ? "invalid sample value \"%s\""
                                     : "sample value out of range \"%s\"",
                   ex);
    }
    int64_t ts = o->default_ts_ms;
    int exemplar = 0;
    s = skip_ws(s, le);
    if (s < le && !(om && *s == '#')) {
        const char *ts0 = s;
        while (s < le && !is_ws(*s))
            s++;
        int64_t t;
        rc = om ? parse_ts_om(ts0, (size_t)(s - ts0), &t) : parse_ts_ms(ts0, (size_t)(s - ts0), &t);
        if (rc) {
            char ex[48];
            excerpt(ex, sizeof ex, ts0, (size_t)(s - ts0));
            return ERR(p, L, ts0,
                       rc == TP_VINVALID ? "invalid timestamp \"%s\""
                                         : "timestamp out of range \"%s\"",
                       ex);
        }
        if (!(o->flags & TEXTPARSE_F_IGNORE_TIMESTAMPS)) ts = t;
        s = skip_ws(s, le);
        if (s < le && !(om && *s == '#'))
            return ERR_FOUND(p, L, s, "expected end of line after timestamp");
    }
    if (s < le) { /* OpenMetrics exemplar: " # {labels} value [ts]", skipped */
        s = skip_ws(s + 1, le);
        if (s == le || *s != '{') return ERR_FOUND(p, L, s, "expected '{' to start exemplar");
        exemplar = 1;
    }

    plabels_sort(p->scratch, ns);
    for (size_t i = 1; i < ns; i++) {
        if (str_cmp(p->scratch[i - 1].name, p->scratch[i].name) == 0) {
            const plabel_t *d = &p->scratch[i];
            uint32_t col = d->col > p->scratch[i - 1].col ? d->col : p->scratch[i - 1].col;
            char ex[48];
            excerpt(ex, sizeof ex, d->name.ptr, d->name.len);
            return tp_error_at(p, p->lineno, col, NULL, NULL, "duplicate label name \"%s\"", ex);
        }
    }

    if ((o->flags & TEXTPARSE_F_DROP_CREATED) && nlen > 8 &&
        !memcmp(name + nlen - 8, "_created", 8)) {
        const textparse_meta_t *m = meta_lookup(p, name, nlen - 8, NULL);
        if (m && (m->type == TEXTPARSE_TYPE_COUNTER || m->type == TEXTPARSE_TYPE_HISTOGRAM ||
                  m->type == TEXTPARSE_TYPE_SUMMARY || m->type == TEXTPARSE_TYPE_GAUGEHISTOGRAM)) {
            p->ncreated++;
            p->nexemplars += (uint64_t)exemplar;
            return TP_OK;
        }
    }

    if (p->nseries >= o->max_samples) return TEXTPARSE_ELIMIT;
    if (GROW(p, series, cap_series, p->nseries + 1) ||
        GROW(p, samples, cap_samples, p->nseries + 1) ||
        GROW(p, series_line, cap_lines, p->nseries + 1) ||
        GROW(p, labels, cap_labels, p->nlabels + ns + p->nextras))
        return TEXTPARSE_ENOMEM;
    /* Merge the sorted line labels with the sorted extra labels. */
    tsdb_label_t *dst = p->labels + p->nlabels;
    size_t i = 0, j = 0, k = 0;
    while (i < ns || j < p->nextras) {
        int c = i == ns ? 1 : j == p->nextras ? -1 : str_cmp(p->scratch[i].name, p->extras[j].name);
        tsdb_label_t l;
        if (c < 0) {
            l = (tsdb_label_t){p->scratch[i].name, p->scratch[i].value};
            i++;
        } else {
            l = p->extras[j++];
            if (c == 0) i++;
        }
        if (l.value.len) dst[k++] = l;
    }
    if (k > o->max_labels_per_series)
        return tp_error_at(p, p->lineno, 1, NULL, NULL,
                           "too many labels with the extra labels (%zu, limit %u)", k,
                           o->max_labels_per_series);
    size_t n = p->nseries++;
    p->series[n] = (tsdb_series_in_t){NULL, (uint32_t)k, NULL, 1};
    p->samples[n] = (tsdb_sample_t){ts, v};
    p->series_line[n] = p->lineno;
    p->nlabels += k;
    p->nexemplars += (uint64_t)exemplar;
    return TP_OK;
}

static int parse_line(textparse_t *p, const char *s, const char *le)
{
    line_t L = {s, le};
    s = skip_ws(s, le);
    if (s == le) return TP_OK;
    if (*s == '#') return parse_comment(p, &L, s + 1);
    if (is_mstart(*s)) return parse_sample(p, &L, s);
    return ERR_FOUND(p, &L, s, "expected metric name or '#' at start of line");
}

/* ---- public ------------------------------------------------------------- */

void textparse_options_init(textparse_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->dialect = TEXTPARSE_PROM;
    o->max_body_bytes = (size_t)32 << 20;
    o->max_samples = 1000000;
    o->max_line_bytes = 1u << 20;
    o->max_labels_per_series = 64;
    o->max_label_name_len = 256;
    o->max_label_value_len = 4096;
    o->max_errors = 100;
}

textparse_dialect_t textparse_dialect_detect(const char *ct, size_t len)
{
    static const char om[] = "application/openmetrics-text";
    size_t n = sizeof om - 1;
    if (!ct) return TEXTPARSE_PROM;
    while (len && is_ws(*ct)) {
        ct++;
        len--;
    }
    if (len < n || !ci_eq(ct, n, om)) return TEXTPARSE_PROM;
    if (len == n || ct[n] == ';' || is_ws(ct[n])) return TEXTPARSE_OPENMETRICS;
    return TEXTPARSE_PROM;
}

int textparse_extra_label_parse(const char *s, size_t len, tsdb_label_t *out)
{
    if (!s || !out || len > UINT32_MAX) return TEXTPARSE_EINVAL;
    const char *eq = memchr(s, '=', len);
    if (!eq || !valid_lname(s, (size_t)(eq - s))) return TEXTPARSE_EINVAL;
    out->name = (tsdb_str_t){s, (uint32_t)(eq - s)};
    out->value = (tsdb_str_t){eq + 1, (uint32_t)(len - (size_t)(eq - s) - 1)};
    return 0;
}

int textparse_create(textparse_t **out)
{
    if (!out) return TEXTPARSE_EINVAL;
    *out = NULL;
    textparse_t *p = calloc(1, sizeof *p);
    if (!p) return TEXTPARSE_ENOMEM;
    p->cloc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!p->cloc) {
        free(p);
        return TEXTPARSE_ENOMEM;
    }
    *out = p;
    return 0;
}

void textparse_destroy(textparse_t *p)
{
    if (!p) return;
    free(p->series);
    free(p->samples);
    free(p->series_line);
    free(p->labels);
    free(p->meta);
    free(p->mhash);
    free(p->errors);
    free(p->scratch);
    free(p->extras);
    for (sblock_t *b = p->sb_head, *nb; b; b = nb) {
        nb = b->next;
        free(b);
    }
    freelocale(p->cloc);
    free(p);
}

static int tl_cmp(const void *a, const void *b)
{
    return str_cmp(((const tsdb_label_t *)a)->name, ((const tsdb_label_t *)b)->name);
}

static int extras_prepare(textparse_t *p)
{
    const textparse_options_t *o = &p->o;
    size_t n = o->nextra_labels;
    p->nextras = 0;
    if (!n) return 0;
    if (!o->extra_labels || n > TP_HARD_MAX_LABELS) return TEXTPARSE_EINVAL;
    if (GROW(p, extras, cap_extras, n)) return TEXTPARSE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        tsdb_label_t l = o->extra_labels[i];
        if ((l.name.len && !l.name.ptr) || (l.value.len && !l.value.ptr)) return TEXTPARSE_EINVAL;
        if (!valid_lname(l.name.ptr, l.name.len) || l.name.len > o->max_label_name_len ||
            l.value.len > o->max_label_value_len)
            return TEXTPARSE_EINVAL;
        if (l.value.len && utf8_bad(l.value.ptr, l.value.ptr + l.value.len))
            return TEXTPARSE_EINVAL;
        if (str_eq(l.name, "__name__", 8) && !valid_mname(l.value.ptr, l.value.len))
            return TEXTPARSE_EINVAL;
        p->extras[i] = l;
    }
    qsort(p->extras, n, sizeof *p->extras, tl_cmp);
    for (size_t i = 1; i < n; i++)
        if (str_cmp(p->extras[i - 1].name, p->extras[i].name) == 0) return TEXTPARSE_EINVAL;
    p->nextras = n;
    return 0;
}

static void meta_clear(textparse_t *p)
{
    p->nmeta = 0;
    p->mlast = 0;
    if (p->mhash_cap) memset(p->mhash, 0, p->mhash_cap * sizeof *p->mhash);
}

static void tp_reset(textparse_t *p)
{
    p->nseries = p->nlabels = p->nerrors = 0;
    p->nrejected = p->nexemplars = p->ncreated = 0;
    p->lineno = 0;
    p->eof_seen = 0;
    p->nextras = 0;
    meta_clear(p);
    for (sblock_t *b = p->sb_head; b; b = b->next)
        b->used = 0;
    p->sb_cur = p->sb_head;
}

int textparse_parse(textparse_t *p, const char *body, size_t len, const textparse_options_t *opts,
                    textparse_result_t *out)
{
    if (!out) return TEXTPARSE_EINVAL;
    memset(out, 0, sizeof *out);
    if (!p || (!body && len)) return TEXTPARSE_EINVAL;
    if (!body) body = "";
    tp_reset(p);
    textparse_options_t d;
    textparse_options_init(&d);
    p->o = opts ? *opts : d;
    textparse_options_t *o = &p->o;
    if (o->dialect != TEXTPARSE_PROM && o->dialect != TEXTPARSE_OPENMETRICS)
        return TEXTPARSE_EINVAL;
    if (!o->max_body_bytes) o->max_body_bytes = d.max_body_bytes;
    if (!o->max_samples) o->max_samples = d.max_samples;
    if (!o->max_line_bytes) o->max_line_bytes = d.max_line_bytes;
    if (!o->max_labels_per_series) o->max_labels_per_series = d.max_labels_per_series;
    if (!o->max_label_name_len) o->max_label_name_len = d.max_label_name_len;
    if (!o->max_label_value_len) o->max_label_value_len = d.max_label_value_len;
    if (!o->max_errors) o->max_errors = d.max_errors;
    if (o->max_body_bytes > TP_HARD_MAX_BODY) o->max_body_bytes = TP_HARD_MAX_BODY;
    if (o->max_labels_per_series > TP_HARD_MAX_LABELS)
        o->max_labels_per_series = TP_HARD_MAX_LABELS;
    if (len > o->max_body_bytes) return TEXTPARSE_ETOOLARGE;
    int rc = extras_prepare(p);
    if (rc) return rc;
    if (GROW(p, scratch, cap_scratch, (size_t)o->max_labels_per_series + 1))
        return TEXTPARSE_ENOMEM;
    p->body = body;

    int strict = (o->flags & TEXTPARSE_F_STRICT) != 0;
    const char *s = body, *end = body + len;
    while (s < end) {
        p->lineno++;
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end, *next = nl ? nl + 1 : end;
        if ((size_t)(le - s) > o->max_line_bytes) {
            rc = tp_error_at(p, p->lineno, 1, NULL, NULL, "line too long (%zu bytes, limit %u)",
                             (size_t)(le - s), o->max_line_bytes);
        } else {
            if (le > s && le[-1] == '\r') le--;
            rc = parse_line(p, s, le);
        }
        if (rc < 0) goto fail;
        if (rc == TP_BAD && strict) goto fail_syntax;
        s = next;
        if (rc == TP_EOF) {
            if (s < end) {
                rc = tp_error_at(p, p->lineno + 1, 1, NULL, NULL, "unexpected data after # EOF");
                if (rc < 0) goto fail;
                if (strict) goto fail_syntax;
            }
            break;
        }
    }
    if (o->dialect == TEXTPARSE_OPENMETRICS && !p->eof_seen) {
        rc = tp_error_at(p, p->lineno + 1, 1, NULL, NULL,
                         "missing # EOF at end of OpenMetrics data");
        if (rc < 0) goto fail;
        if (strict) goto fail_syntax;
    }

    size_t off = 0;
    for (size_t i = 0; i < p->nseries; i++) {
        p->series[i].labels = p->labels + off;
        p->series[i].samples = p->samples + i;
        off += p->series[i].nlabels;
    }
    out->series = p->series;
    out->nseries = p->nseries;
    out->series_line = p->series_line;
    out->meta = p->meta;
    out->nmeta = p->nmeta;
    out->errors = p->errors;
    out->nerrors = p->nerrors;
    out->nrejected = p->nrejected;
    out->nlines = p->lineno;
    out->nexemplars = p->nexemplars;
    out->ncreated_dropped = p->ncreated;
    out->eof_seen = p->eof_seen;
    return 0;

fail_syntax:
    p->nseries = 0;
    meta_clear(p);
    out->errors = p->errors;
    out->nerrors = p->nerrors;
    out->nrejected = p->nrejected;
    out->nlines = p->lineno;
    return TEXTPARSE_ESYNTAX;
fail:
    p->nseries = p->nerrors = 0;
    meta_clear(p);
    return rc;
}
