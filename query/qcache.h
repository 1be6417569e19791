/*
 * qcache.h — range-query result cache (internal to query/; the public
 * handle and counters are in query_api.h).
 *
 * An entry holds the answer of one range query (text, step, step phase,
 * lookback) at the steps [s0, e0] of its grid, with the store's change
 * generation it was computed under (tsdb_watch()). A later request with
 * the same key and a start in [s0, e0] takes the cached points and computes
 * only the steps after e0; an entry whose generation is not the store's
 * current one is dropped at lookup. Bounded by bytes (LRU eviction).
 */
#ifndef AUGUR_QCACHE_H
#define AUGUR_QCACHE_H

#include "query/promql_int.h"
#include "query/query_api.h"

typedef struct {
    const char *query;
    int64_t step, phase, lookback;
} qc_key_t;

/* One series of an answer: labels and up to two runs of points (cached,
 * then computed), in time order. */
typedef struct {
    const pq_label_t *labels;
    size_t nlabels;
    const pq_point_t *p[2];
    size_t n[2];
} qc_view_t;

/* How far past its evaluation time a step of `e` may read samples (negative
 * offsets, summed along subqueries), or -1 when the answer at a step depends
 * on the query's range or an absolute time (@): not cacheable. */
int64_t qc_lookahead(const pq_expr_t *e);

/* Copies the cached points of key in [start, min(end, e0)] into `a` as
 * views (sorted by labels, series without points there left out). Returns
 * the time of the last step taken, or start - step when nothing was (miss).
 * An entry computed under another generation than `gen` is dropped. NULL
 * out of memory (the views are then empty and the result a miss). */
int64_t qc_lookup(qapi_cache_t *c, const qc_key_t *k, uint64_t gen, int64_t start, int64_t end,
                  pq_arena_t *a, qc_view_t **views, size_t *nviews);

/* Count a request as hit (all steps cached), partial or miss. */
void qc_count(qapi_cache_t *c, int hit, int partial);

/* Store the points of `v` in [s0, e0] under key (replacing its entry),
 * computed under `gen`. Answers larger than a quarter of the cache are not
 * kept. */
void qc_insert(qapi_cache_t *c, const qc_key_t *k, uint64_t gen, int64_t s0, int64_t e0,
               const qc_view_t *v, size_t nv);

/* Prometheus' order of label sets (as pq_labels_cmp). */
int qc_labels_cmp(const pq_label_t *a, size_t na, const pq_label_t *b, size_t nb);

#endif
