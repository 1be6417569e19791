/*
 * textparse.h — Prometheus text exposition format (0.0.4) and OpenMetrics
 * text (1.0) parser.
 *
 * Backs POST /api/v1/import/prometheus (a /metrics page pushed with curl)
 * and the importers. One call parses a whole body (ptr, len) into an array
 * of tsdb_series_in_t, one per sample line, ready for tsdb_append(), plus
 * the metric family metadata (# TYPE, # HELP, # UNIT) and a list of
 * rejected lines with line, column and what was expected.
 *
 *   textparse_options_init()   defaults for the options below
 *   textparse_create()         a reusable parser (one per thread/connection)
 *   textparse_parse()          parse one body
 *   textparse_meta_find()      metadata of one family in the last result
 *   textparse_dialect_detect() dialect from a Content-Type header value
 *   textparse_extra_label_parse() split "name=value" (?extra_label=)
 *   textparse_destroy()
 *
 * Accepted syntax (docs/text-import.md has the full rules and the
 * differences from Prometheus' own parser):
 *
 *   # HELP http_requests_total Requests served.\nSecond line, a \\ backslash
 *   # TYPE http_requests_total counter
 *   http_requests_total{method="post",code="200",} 1027 1395066363000
 *   http_requests_total{method="post",code="400"}    3 1395066363000
 *   temperature_celsius 21.5
 *   rpc_duration_seconds{quantile="0.99"} NaN
 *
 * - Blank lines and "# anything" comments are skipped. Spaces and tabs are
 *   accepted around every token; a trailing comma in a label set too; a
 *   "\r" before "\n" is ignored. The last line needs no "\n".
 * - Values: what Go's strconv.ParseFloat accepts minus hex floats and
 *   '_' (as Prometheus): decimal with optional exponent, [+-]Inf,
 *   [+-]Infinity and NaN (case-insensitive). Every NaN becomes the normal
 *   NaN 0x7ff8000000000001, never the staleness marker.
 * - Timestamps: 0.0.4: integer milliseconds (int64). OpenMetrics: seconds
 *   as a decimal (exponent allowed) converted exactly to milliseconds,
 *   sub-millisecond digits truncated toward zero. A line without one gets
 *   textparse_options_t.default_ts_ms.
 * - OpenMetrics adds "# UNIT", the types info, stateset, gaugehistogram and
 *   unknown, "\"" in HELP escapes, exemplars (" # {...} v [ts]", skipped and
 *   counted) and the "# EOF" terminator (required; nothing may follow).
 *
 * Output series: labels sorted by name (bytewise), __name__ included as a
 * label, extra labels merged in (they override a label of the same name;
 * an extra label with an empty value removes that label), labels with an
 * empty value dropped (as Prometheus treats them), one sample each.
 *
 * Errors: with the default (lenient) mode a malformed line is rejected,
 * recorded ("line 12, col 34: expected '=' after label name (found ':')")
 * and the parse goes on with the next line; the valid lines are kept. With
 * TEXTPARSE_F_STRICT the first malformed line fails the whole body, as
 * Prometheus fails a scrape.
 *
 * Memory: the parser owns grow-only arenas; after a few bodies have sized
 * them a parse allocates nothing. Strings are not copied unless they had to
 * be unescaped: label names, metric names and most values point into the
 * caller's body.
 *
 * Threading: a parser belongs to one thread at a time; parsers share
 * nothing.
 */
#ifndef AUGUR_INGEST_TEXTPARSE_H
#define AUGUR_INGEST_TEXTPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors (body level) ------------------------------------------------ */

#define TEXTPARSE_ERRNO_MAP(X)                                                                     \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(ETOOLARGE, -3, "body larger than the configured limit")                                      \
    X(ELIMIT, -4, "more sample lines than the configured limit")                                   \
    X(ESYNTAX, -5, "malformed line (strict mode)")

typedef enum {
#define TEXTPARSE_ERR_ENUM_(name, code, msg) TEXTPARSE_##name = code,
    TEXTPARSE_ERRNO_MAP(TEXTPARSE_ERR_ENUM_)
#undef TEXTPARSE_ERR_ENUM_
} textparse_err_t;

/* Static message for a TEXTPARSE_E* code; never NULL. */
const char *textparse_strerror(int err);

/* ---- dialects, types ---------------------------------------------------- */

typedef enum {
    TEXTPARSE_PROM = 0,        /* text/plain; version=0.0.4 */
    TEXTPARSE_OPENMETRICS = 1, /* application/openmetrics-text; version=1.0.0 */
} textparse_dialect_t;

/* Dialect for a Content-Type header value (ptr, len; NULL/0 allowed):
 * TEXTPARSE_OPENMETRICS for "application/openmetrics-text" (any
 * parameters, case-insensitive), TEXTPARSE_PROM for anything else. */
textparse_dialect_t textparse_dialect_detect(const char *content_type, size_t len);

typedef enum {
    TEXTPARSE_TYPE_NONE = 0, /* no # TYPE line for the family */
    TEXTPARSE_TYPE_COUNTER = 1,
    TEXTPARSE_TYPE_GAUGE = 2,
    TEXTPARSE_TYPE_HISTOGRAM = 3,
    TEXTPARSE_TYPE_SUMMARY = 4,
    TEXTPARSE_TYPE_UNTYPED = 5,        /* 0.0.4 */
    TEXTPARSE_TYPE_INFO = 6,           /* OpenMetrics */
    TEXTPARSE_TYPE_STATESET = 7,       /* OpenMetrics */
    TEXTPARSE_TYPE_GAUGEHISTOGRAM = 8, /* OpenMetrics */
    TEXTPARSE_TYPE_UNKNOWN = 9,        /* OpenMetrics */
} textparse_type_t;

/* The type's name as written in # TYPE lines ("" for NONE); never NULL. */
const char *textparse_type_name(textparse_type_t t);

/* ---- options ------------------------------------------------------------ */

enum {
    /* Fail the whole body (TEXTPARSE_ESYNTAX) at the first malformed line
     * instead of skipping it. */
    TEXTPARSE_F_STRICT = 1u << 0,
    /* Drop "<family>_created" samples of counter, histogram, summary and
     * gaugehistogram families (OpenMetrics creation times). Default: kept
     * as ordinary samples, as Prometheus 2.x stores them. */
    TEXTPARSE_F_DROP_CREATED = 1u << 1,
    /* Use default_ts_ms for every sample, ignoring (but still validating)
     * the timestamps in the body (Prometheus' honor_timestamps: false). */
    TEXTPARSE_F_IGNORE_TIMESTAMPS = 1u << 2,
};

typedef struct {
    textparse_dialect_t dialect; /* default TEXTPARSE_PROM */
    uint32_t flags;              /* TEXTPARSE_F_*; default 0 (lenient) */
    int64_t default_ts_ms;       /* timestamp of samples without one; default 0 */
    /* Labels added to every series (override a label of the same name; an
     * empty value removes that label). Borrowed for the parse and for the
     * life of its result. Names must be valid label names and distinct;
     * a __name__ value must be a valid metric name. Need not be sorted. */
    const tsdb_label_t *extra_labels;
    uint32_t nextra_labels;
    size_t max_body_bytes;   /* default 32 MiB; above: TEXTPARSE_ETOOLARGE; hard cap 4 GiB - 1 */
    uint32_t max_samples;    /* sample lines kept; above: TEXTPARSE_ELIMIT; default 1,000,000 */
    uint32_t max_line_bytes; /* longer lines rejected; default 1 MiB */
    uint32_t max_labels_per_series; /* including __name__ and extra labels; default 64 */
    uint32_t max_label_name_len;    /* bytes; default 256 */
    uint32_t max_label_value_len;   /* bytes after unescaping, metric names too; default 4096 */
    uint32_t max_errors;            /* error messages kept (all are counted); default 100 */
} textparse_options_t;

/* Fill *o with the defaults above. A zero limit passed to textparse_parse()
 * also means its default. */
void textparse_options_init(textparse_options_t *o);

/* ---- parser ------------------------------------------------------------- */

typedef struct textparse textparse_t;

/* Create a parser. Allocates no arenas yet. Errors: TEXTPARSE_EINVAL (out
 * NULL), TEXTPARSE_ENOMEM. */
int textparse_create(textparse_t **out);

/* Free the parser and its arenas. Accepts NULL. */
void textparse_destroy(textparse_t *p);

/* Metadata of one metric family: the union of its # HELP, # TYPE and
 * # UNIT lines (a later line of the same kind replaces an earlier one). */
typedef struct {
    tsdb_str_t name;       /* family name as written in the metadata lines */
    textparse_type_t type; /* TEXTPARSE_TYPE_NONE when no # TYPE line */
    tsdb_str_t help;       /* unescaped; ptr NULL when no # HELP line */
    tsdb_str_t unit;       /* ptr NULL when no # UNIT line */
    uint32_t line;         /* first metadata line naming the family */
} textparse_meta_t;

/* One rejected line. */
typedef struct {
    uint32_t line;   /* 1-based line number */
    uint32_t col;    /* 1-based byte column in the line */
    const char *msg; /* NUL-terminated: "line L, col C: what was expected (found ...)" */
} textparse_error_t;

/* A parsed body. Every pointer is borrowed from the parser, the body and
 * the extra labels, and is valid until the next textparse_parse() on the
 * same parser or its destroy, and while the body and extra labels live. */
typedef struct {
    const tsdb_series_in_t *series; /* one per kept sample line, in body order;
                                     * nsamples == 1 each */
    size_t nseries;
    const uint32_t *series_line;  /* body line of each series[i] */
    const textparse_meta_t *meta; /* one per family, in order of first mention */
    size_t nmeta;
    const textparse_error_t *errors; /* first max_errors rejected lines, in order */
    size_t nerrors;
    uint64_t nrejected;        /* all rejected lines (>= nerrors) */
    uint64_t nlines;           /* lines read (up to and including # EOF) */
    uint64_t nexemplars;       /* OpenMetrics exemplars skipped */
    uint64_t ncreated_dropped; /* samples dropped by TEXTPARSE_F_DROP_CREATED */
    int eof_seen;              /* OpenMetrics: "# EOF" was read */
} textparse_result_t;

/* Parse body (ptr, len; need not be NUL-terminated). `opts` NULL = the
 * defaults. Returns 0 (some lines may have been rejected: see
 * out->nrejected and out->errors) or:
 *   TEXTPARSE_EINVAL    p, out or body NULL (body may be NULL if len is 0),
 *                       or invalid extra labels or dialect
 *   TEXTPARSE_ETOOLARGE len above max_body_bytes (HTTP 413)
 *   TEXTPARSE_ELIMIT    more sample lines than max_samples (HTTP 413)
 *   TEXTPARSE_ESYNTAX   TEXTPARSE_F_STRICT and a line was malformed:
 *                       out->errors holds that one error, nothing else is set
 *   TEXTPARSE_ENOMEM
 * On any error out->series and out->meta are empty. */
int textparse_parse(textparse_t *p, const char *body, size_t len, const textparse_options_t *opts,
                    textparse_result_t *out);

/* The metadata of family `name` in the last result, or NULL. */
const textparse_meta_t *textparse_meta_find(const textparse_t *p, const char *name, size_t len);

/* Split "name=value" (an ?extra_label= argument) at the first '=' into
 * *out (pointing into s). Returns 0, or TEXTPARSE_EINVAL when there is no
 * '=' or the name is not a valid label name. The value may be empty. */
int textparse_extra_label_parse(const char *s, size_t len, tsdb_label_t *out);

#ifdef __cplusplus
}
#endif
#endif /* AUGUR_INGEST_TEXTPARSE_H */
