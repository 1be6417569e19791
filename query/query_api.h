/*
 * query_api.h — the Prometheus HTTP query API (JSON), independent of the
 * HTTP server: the server passes the path and a parameter accessor, and
 * gets back the status code and the JSON body.
 *
 * Paths handled (relative to /api/v1/): query, query_range, series, labels,
 * label/<name>/values, metadata, status/buildinfo, status/tsdb, export.
 */
#ifndef AUGUR_QUERY_API_H
#define AUGUR_QUERY_API_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

/* Returns the idx-th value (0-based) of request parameter `name` (query
 * string or form body; repeated parameters such as match[] have several), or
 * NULL when there is no such value. The string stays valid for the call. */
typedef const char *(*qapi_param_fn)(void *ctx, const char *name, size_t idx);

/* Range-query result cache (query/qcache.c), shared by the requests of a
 * server. Thread-safe. Never serves a stale answer: see tsdb_watch(). */
typedef struct qapi_cache qapi_cache_t;

/* A cache of at most max_bytes (> 0); NULL on allocation failure. */
qapi_cache_t *qapi_cache_new(size_t max_bytes);
void qapi_cache_free(qapi_cache_t *c); /* accepts NULL */

typedef struct {
    uint64_t hits;          /* every step of the request came from the cache */
    uint64_t partial_hits;  /* a prefix came from the cache, the rest was computed */
    uint64_t misses;        /* computed in full (then cached) */
    uint64_t invalidations; /* entries dropped because the store changed under them */
    uint64_t evictions;     /* entries dropped for space (LRU) */
    uint64_t entries, bytes, max_bytes;
} qapi_cache_stats_t;

void qapi_cache_stats(qapi_cache_t *c, qapi_cache_stats_t *st);
/* The counters in Prometheus' text format (augur_query_cache_*). */
int qapi_cache_metrics(qapi_cache_t *c, tbuf_t *out);

typedef struct {
    int64_t timeout_ms;         /* 0 = 2 min */
    uint64_t max_samples;       /* samples loaded per query; 0 = 50 M */
    uint64_t max_series;        /* series per response; 0 = unlimited */
    int64_t lookback_ms;        /* 0 = 5 min */
    qapi_cache_t *cache;        /* range-query result cache; NULL = none */
    size_t cache_bytes;         /* the API server creates `cache` of this size; 0 = no cache */
    int64_t cache_offset_ms;    /* steps newer than now minus this are not cached; 0 = 5 min */
} qapi_limits_t;

/* Does this library handle `path` (relative to /api/v1/)? */
int qapi_handles(const char *path);

/* Handle one request. `now_ms` is the server's clock (default query time).
 * Writes the JSON body to out (cleared first) and the HTTP status to
 * *status (200, 400 bad_data, 422 execution, 503 timeout, 500 internal).
 * Returns 0, or a negative code only for allocation failure. */
int qapi_handle(tsdb_t *db, const char *path, qapi_param_fn get, void *ctx, int64_t now_ms,
                const qapi_limits_t *lim, tbuf_t *out, int *status);

#endif
