/*
 * import_batch.h — what the importers (backblaze.h, smartctl.h, nvsmi.h,
 * failures.h) share: a batch of series being built, the sink a batch goes
 * to (the store, or remote write to a server), and time parsing.
 *
 * A batch owns copies of everything it holds: label strings go into an
 * arena of fixed blocks (never moved), so the parsers may reuse their line
 * buffers at once. ingest_batch_flush() hands the batch to the sink as one
 * tsdb_series_in_t array and empties it (keeping its memory).
 */
#ifndef AUGUR_INGEST_IMPORT_BATCH_H
#define AUGUR_INGEST_IMPORT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where batches go. append() returns 0, or a negative error (its own code
 * space, e.g. a TSDB_E* code); the importer stops and returns it. res gets
 * the per-sample counts (stored, duplicate, ...). */
typedef struct {
    int (*append)(void *ctx, const tsdb_series_in_t *series, size_t n, tsdb_append_result_t *res);
    void *ctx;
} ingest_sink_t;

/* Optional operations of a sink (a store has them): resolve a series to an
 * id once, then append by id (tsdb_series_id, tsdb_append_sids). ctx is the
 * sink's. An importer that sees the same series on every row (Backblaze)
 * uses them when given. */
typedef struct {
    int (*series_id)(void *ctx, const tsdb_label_t *labels, uint32_t n, tsdb_sid_t *sid,
                     int *created);
    int (*append_sids)(void *ctx, const tsdb_sid_sample_t *s, size_t n, tsdb_append_result_t *res);
} ingest_sid_ops_t;

/* Totals of everything a sink has accepted, summed by ingest_batch_flush(). */
typedef struct {
    uint64_t samples;                    /* samples handed to the sink */
    uint64_t stored;                     /* new samples stored */
    uint64_t duplicate;                  /* identical samples already present (a re-import) */
    uint64_t conflict, too_old, invalid; /* refused by the store */
    uint64_t series_created;
    uint64_t batches;
} ingest_totals_t;

typedef struct ingest_block ingest_block_t;

typedef struct {
    tsdb_label_t *labels; /* all label arrays, back to back */
    size_t nlabels, labels_cap;
    struct ingest_ser_ {
        uint32_t lab, nlab; /* range in labels */
        tsdb_sample_t s;
    } * ser;
    size_t nser, ser_cap;
    tsdb_series_in_t *out; /* built at flush */
    size_t out_cap;
    ingest_block_t *blocks, *cur; /* string arena */
    int oom;                      /* an allocation failed: the next flush reports ENOMEM */
} ingest_batch_t;

void ingest_batch_init(ingest_batch_t *b);
void ingest_batch_free(ingest_batch_t *b); /* accepts NULL */

/* A stable copy of (p, n) that lives until the next flush; NULL on
 * allocation failure (also remembered: the next flush fails). */
const char *ingest_batch_str(ingest_batch_t *b, const char *p, size_t n);

/* Add one sample of the series named by labels (copied; their strings must
 * live until the flush: static, or from ingest_batch_str()). Returns 0 or
 * -1 on allocation failure. */
int ingest_batch_add(ingest_batch_t *b, const tsdb_label_t *labels, uint32_t nlabels, int64_t t_ms,
                     double v);

/* Samples held. */
static inline size_t ingest_batch_samples(const ingest_batch_t *b)
{
    return b->nser;
}

/* Send everything held to the sink (one call; nothing when empty), add its
 * outcome counts to *tot, and empty the batch. Returns 0, TSDB_ENOMEM after
 * an earlier allocation failure (nothing sent), or the sink's error. */
int ingest_batch_flush(ingest_batch_t *b, const ingest_sink_t *sink, ingest_totals_t *tot);

/* ---- offline import into a store -------------------------------------------- */

/* How `augur import --store` opens a store: periodic WAL sync (the import
 * fsyncs at the end, in tsdb_close), a 400-day out-of-order window (history
 * arrives in any file order), and for daily data (INGEST_FMT_DAILY:
 * Backblaze) 32-day partitions for the groups it creates, sealed once each
 * (tsdb_seal_closed_only: turn it off before the final tsdb_flush). */
enum { INGEST_FMT_DEFAULT = 0, INGEST_FMT_DAILY = 1 };
/* memory_max: the store's heap cap (tsdb_options_t.memory_max_bytes), 0 =
 * none; see ingest_default_memory_limit(). */
int ingest_store_open(const char *dir, int fmt, uint64_t memory_max, tsdb_t **out);
/* What `augur import` caps the store's heap at by default: half the
 * physical memory (0 if it cannot be read). */
uint64_t ingest_default_memory_limit(void);
/* Parse a byte count: digits with an optional K, M, G or T suffix (powers of
 * 1024, case-insensitive, an optional trailing B or iB). -1 if malformed or
 * out of range. */
int ingest_parse_bytes(const char *s, uint64_t *out);

/* A sink that appends into db with tsdb_append(), and the id operations
 * for it (tsdb_series_id, tsdb_append_sids). */
void ingest_store_sink(tsdb_t *db, ingest_sink_t *sink);
extern const ingest_sid_ops_t ingest_store_sid_ops;

/* ---- time ---------------------------------------------------------------- */

/* "YYYY-MM-DD" → ms at 00:00 UTC. 0 or -1 (syntax, out of range). */
int ingest_date_parse(const char *s, size_t len, int64_t *ms);

/* A point in time: RFC 3339 ("2024-03-01T12:00:00Z", "…T12:00:00.5+02:00",
 * a space instead of T accepted), a date alone (00:00 UTC), or Unix seconds
 * (integer or decimal, e.g. "1709294400" or "1709294400.25"). 0 or -1. */
int ingest_time_parse(const char *s, size_t len, int64_t *ms);

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int64_t ingest_days_from_civil(int64_t y, unsigned m, unsigned d);

/* ms → "2024-03-01T12:00:00Z" (".123" when ms is not whole seconds).
 * buf needs 32 bytes. */
void ingest_time_format(int64_t ms, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
