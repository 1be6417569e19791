/*
 * metrics.h — augur's own metrics, exposed on GET /metrics in the
 * Prometheus text format (0.0.4).
 *
 * Counters and histograms are fixed arrays of atomics: recording never
 * allocates or locks. The handler and reason sets are closed enums, so the
 * exposition's cardinality is bounded.
 */
#ifndef AUGUR_API_METRICS_H
#define AUGUR_API_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

/* Route families, the `handler` label. */
#define API_HANDLER_MAP(X)                                                                         \
    X(HEALTHY, "healthy")                                                                          \
    X(READY, "ready")                                                                              \
    X(METRICS, "metrics")                                                                          \
    X(WRITE, "write")                                                                              \
    X(IMPORT, "import_prometheus")                                                                 \
    X(QUERY, "query")                                                                              \
    X(QUERY_RANGE, "query_range")                                                                  \
    X(SERIES, "series")                                                                            \
    X(LABELS, "labels")                                                                            \
    X(LABEL_VALUES, "label_values")                                                                \
    X(METADATA, "metadata")                                                                        \
    X(STATUS, "status")                                                                            \
    X(EXPORT, "export")                                                                            \
    X(API_OTHER, "api_other")                                                                      \
    X(DELETE_SERIES, "admin_delete_series")                                                        \
    X(SNAPSHOT, "admin_snapshot")                                                                  \
    X(FLUSH, "force_flush")                                                                        \
    X(NOT_FOUND, "not_found")

typedef enum {
#define API_H_ENUM_(id, name) API_H_##id,
    API_HANDLER_MAP(API_H_ENUM_)
#undef API_H_ENUM_
        API_H_COUNT
} api_handler_t;

const char *api_handler_name(api_handler_t h);

/* Why samples were refused, the `reason` label of
 * augur_samples_rejected_total. The first nine follow rw_reason_t. */
#define API_REJECT_MAP(X)                                                                          \
    X(NONE, "none")                                                                                \
    X(NO_NAME, "missing_metric_name")                                                              \
    X(BAD_METRIC_NAME, "invalid_metric_name")                                                      \
    X(EMPTY_LABEL_NAME, "empty_label_name")                                                        \
    X(BAD_LABEL_NAME, "invalid_label_name")                                                        \
    X(DUP_LABEL_NAME, "duplicate_label_name")                                                      \
    X(BAD_UTF8, "invalid_utf8")                                                                    \
    X(TOO_MANY_LABELS, "too_many_labels")                                                          \
    X(NAME_TOO_LONG, "label_name_too_long")                                                        \
    X(VALUE_TOO_LONG, "label_value_too_long")                                                      \
    X(CONFLICT, "duplicate_timestamp")                                                             \
    X(TOO_OLD, "out_of_order")                                                                     \
    X(INVALID, "invalid_sample")                                                                   \
    X(FUTURE, "too_far_in_future")                                                                 \
    X(PARSE_ERROR, "parse_error")

typedef enum {
#define API_REJ_ENUM_(id, name) API_REJ_##id,
    API_REJECT_MAP(API_REJ_ENUM_)
#undef API_REJ_ENUM_
        API_REJ_COUNT
} api_reject_t;

/* Status codes counted individually; anything else counts as "other". */
#define API_CODES 15
#define API_DUR_BUCKETS 15

typedef struct {
    _Atomic uint64_t requests[API_H_COUNT][API_CODES + 1];
    _Atomic uint64_t dur_bucket[API_H_COUNT][API_DUR_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t dur_sum_ns[API_H_COUNT];
    _Atomic uint64_t samples_ingested;  /* stored */
    _Atomic uint64_t samples_duplicate; /* identical retries, not stored again */
    _Atomic uint64_t samples_rejected[API_REJ_COUNT];
    _Atomic uint64_t series_created;
    _Atomic uint64_t rw_requests[3];     /* by protocol: [1] 1.0, [2] 2.0 */
    _Atomic uint64_t histograms_dropped; /* native histogram samples: not stored */
    _Atomic uint64_t exemplars_dropped;
    _Atomic uint64_t metadata_received; /* RW metadata entries + text # TYPE/HELP families */
    _Atomic uint64_t bodies_too_large;  /* 413 answers */
    _Atomic uint64_t overloaded;        /* 503 answers for the in-flight budget */
    _Atomic uint64_t append_errors;     /* tsdb_append failures */
    _Atomic int64_t inflight_requests;  /* requests accepted, response not yet sent */
    _Atomic int64_t inflight_bytes;     /* request bodies buffered */
    _Atomic int64_t connections;        /* open connections */
    double start_time_s;                /* process start, Unix seconds */
    const char *version;                /* static build version string */
} api_metrics_t;

void api_metrics_init(api_metrics_t *m, double start_time_s, const char *version);

/* Record one finished request. */
void api_metrics_request(api_metrics_t *m, api_handler_t h, unsigned code, uint64_t dur_ns);

/* Render every metric in the text format into out (appended). `db` may be
 * NULL (store not open yet): the storage metrics are then left out.
 * `ready` is the readiness state. Returns 0 or -1 on allocation failure. */
int api_metrics_render(const api_metrics_t *m, tsdb_t *db, int ready, int64_t inflight_budget,
                       tbuf_t *out);

#endif
