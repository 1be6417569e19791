/*
 * index.h — (private to tsdb/) the series index in LMDB.
 *
 * LMDB databases (named, in the store's environment):
 *   "pairs"    key "name\0value"          -> u32 BE pair id        (label pair dictionary)
 *   "pairids"  key u32 BE pair id          -> "name\0value"
 *   "series"   key u32 BE series id        -> zigzag-varint mint, varint (maxt - mint),
 *                                             varint n, n x varint pair id (in label-name order)
 *   "postings" key u32 BE pair id          -> dup values u32 BE series id  (MDB_DUPSORT|MDB_DUPFIXED)
 * A matcher costs in proportion to the postings and label values it
 * touches, never to the number of series. Label names are the distinct
 * "name" prefixes of "pairs"; the values of a name are a prefix range scan.
 *
 * All functions take a caller's transaction; they neither begin nor commit.
 * Returns: 0, or a negative TSDB_E* code (TSDB_ELMDB for an unexpected LMDB
 * error, TSDB_ECORRUPT for undecodable records).
 */
#ifndef AUGUR_TSDB_INDEX_H
#define AUGUR_TSDB_INDEX_H

#include <lmdb.h>
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

typedef struct {
    MDB_dbi pairs, pairids, series, postings;
} idx_dbis_t;

/* Open (creating in a write txn) the index databases. */
int idx_open(MDB_txn *txn, idx_dbis_t *d);

/* Insert series `sid` with labels[0..n) (sorted by name, validated) and its
 * time range. Allocates pair ids as needed (next id kept in "pairs" under the
 * reserved key "\0next"). Idempotent if the series already exists with the
 * same labels (then only the range is widened). */
int idx_series_put(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, const tsdb_label_t *labels,
                   size_t n, int64_t mint, int64_t maxt);

/* A cache of label pair -> pair id for many idx_series_put_cached() calls in
 * one writer (a flush persisting a million series looks up the same few
 * pairs again and again). Valid only while nothing deletes pairs: one flush,
 * under the store's flush lock; pairs of an aborted txn must not be used
 * afterwards (drop the cache with the txn). */
typedef struct idx_pair_cache idx_pair_cache_t;
idx_pair_cache_t *idx_pair_cache_new(void); /* NULL on allocation failure */
void idx_pair_cache_free(idx_pair_cache_t *c); /* accepts NULL */
/* idx_series_put() with pair ids looked up in (and added to) c (may be
 * NULL), and the series' postings collected in c instead of written: call
 * idx_pair_cache_write_postings() in the same txn before it commits (put
 * series in ascending id order: each pair's list is then appended to a page
 * of ids per call). */
int idx_series_put_cached(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid,
                          const tsdb_label_t *labels, size_t n, int64_t mint, int64_t maxt,
                          idx_pair_cache_t *c);
int idx_pair_cache_write_postings(MDB_txn *txn, const idx_dbis_t *d, idx_pair_cache_t *c);

/* Widen the stored time range of an existing series to include [mint, maxt].
 * TSDB_ENOTFOUND if the series does not exist. */
int idx_series_widen(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, int64_t mint, int64_t maxt);
/* The same through c, a cursor on d->series the caller keeps open (calls in
 * ascending sid order stay on the leaf page they are on). */
int idx_series_widen_cur(MDB_cursor *c, uint32_t sid, int64_t mint, int64_t maxt);

/* Labels (sorted by name) and range of a series. The label strings are
 * copied into `buf` (cleared first) and `labels` (cleared first) points into
 * it; both stay valid until buf is changed. TSDB_ENOTFOUND if absent. */
typedef struct {
    tsdb_label_t *v;
    size_t n, cap;
} idx_labels_t;
int idx_series_get(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, idx_labels_t *labels,
                   tbuf_t *buf, int64_t *mint, int64_t *maxt);

/* Remove a series from "series" and from every postings list. */
int idx_series_delete(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid);

/* Call fn for every series (ascending id) with its labels and range; stops
 * and returns fn's value if non-zero. */
typedef int (*idx_series_fn)(void *ctx, uint32_t sid, const tsdb_label_t *labels, size_t n,
                             int64_t mint, int64_t maxt);
int idx_series_foreach(MDB_txn *txn, const idx_dbis_t *d, idx_series_fn fn, void *ctx);

/* Compiled matchers (PCRE2 with JIT; regexes fully anchored as in
 * Prometheus: "^(?:re)$"). */
typedef struct idx_matchers idx_matchers_t;
/* Errors: TSDB_EREGEX (with detail via tsdb_last_error_detail), TSDB_EINVAL. */
int idx_matchers_compile(const tsdb_matcher_t *m, size_t nm, idx_matchers_t **out);
void idx_matchers_free(idx_matchers_t *mc); /* accepts NULL */
/* 1 if every matcher matches the empty string (a selector that would select
 * everything: Prometheus refuses it). */
int idx_matchers_all_match_empty(const idx_matchers_t *mc);

/* Does a label set (sorted by name) satisfy all matchers? (A matcher whose
 * label is missing is tested against "".) Used for head-only series. */
int idx_labels_match(const idx_matchers_t *mc, const tsdb_label_t *labels, size_t n);

/* Series ids in LMDB matching all matchers, sorted ascending, appended to
 * out (cleared first). Uses postings only: intersections for =, =~ (union of
 * the matching values' postings), subtraction for != and !~. */
int idx_select(MDB_txn *txn, const idx_dbis_t *d, const idx_matchers_t *mc, tsdb_sids_t *out);

/* Label names (all, or of the given sorted sid set) / values of a name. Results
 * are appended unique and sorted to out (caller clears). */
int idx_label_names(MDB_txn *txn, const idx_dbis_t *d, const tsdb_sids_t *restrict_to,
                    tsdb_strings_t *out);
int idx_label_values(MDB_txn *txn, const idx_dbis_t *d, const char *name,
                     const tsdb_sids_t *restrict_to, tsdb_strings_t *out);

/* Values of label `name` (or, name == NULL, label names) with at least one
 * series that fn accepts. fn gets postings a batch at a time (ascending) and
 * returns 1 when it accepts one of them (the scan of that value stops), 0 for
 * none, or a negative error that ends the call. Results are appended sorted
 * and unique to out. The reserved "\0next" key sorts before every name. */
typedef int (*idx_sids_any_fn)(void *ctx, const uint32_t *sids, size_t n);
int idx_label_values_any(MDB_txn *txn, const idx_dbis_t *d, const char *name, idx_sids_any_fn fn,
                         void *ctx, tsdb_strings_t *out);

/* Helpers on the public list types (defined in index.c). */
int sids_push(tsdb_sids_t *s, tsdb_sid_t id);
int strings_push(tsdb_strings_t *s, const char *p, size_t len);
/* Sort + unique. */
void strings_sort_unique(tsdb_strings_t *s);

#endif /* AUGUR_TSDB_INDEX_H */
