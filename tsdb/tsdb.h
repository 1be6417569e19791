/*
 * tsdb.h — augur's embedded time-series store (public API).
 *
 * A store is a directory holding an LMDB environment (sealed, compressed
 * blocks, the series index, metadata) and a write-ahead log (wal/) that makes
 * every acknowledged append durable before it is sealed into LMDB.
 *
 *   tsdb_open()      open or create a store directory
 *   tsdb_append()    append a batch of series x samples; per-sample outcome
 *   tsdb_select()    series ids matching label matchers over a time range
 *   tsdb_iter_*()    samples of one series over [mint, maxt], in time order
 *   tsdb_flush()     seal the in-memory head into LMDB, truncate the WAL
 *   tsdb_stats()     series, samples, bytes on disk, memory
 *
 * Threading: a tsdb_t may be used from any number of threads at once.
 * Appenders share WAL fsyncs (group commit). Readers (tsdb_reader_t) hold a
 * short LMDB read transaction and never block appenders. A tsdb_reader_t
 * itself belongs to one thread at a time.
 *
 * Determinism: the store never reads a clock. Time enters only through
 * arguments and the now_ms callback of tsdb_options_t.
 *
 * Errors: functions return 0 on success, a negative TSDB_E* code on failure
 * (tsdb_strerror() names it). Normal outcomes that are not failures (a
 * duplicate sample, end of iteration) are reported separately.
 */
#ifndef AUGUR_TSDB_H
#define AUGUR_TSDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* On-disk format version written by this code. A store with a newer version
 * is refused with TSDB_EVERSION. */
#define TSDB_FORMAT_VERSION 1

/* ---- errors ------------------------------------------------------------ */

#define TSDB_ERRNO_MAP(X)                                                              \
    X(OK, 0, "success")                                                                \
    X(EINVAL, -1, "invalid argument")                                                  \
    X(ENOMEM, -2, "out of memory")                                                     \
    X(EIO, -3, "I/O error")                                                            \
    X(EFULL, -4, "store is full: map size cap reached (raise it, or free space)")      \
    X(ENOSPC, -5, "no space left on device")                                           \
    X(EVERSION, -6, "store was written by a newer, unsupported format version")        \
    X(ECORRUPT, -7, "corrupted data (checksum or structure mismatch)")                 \
    X(ELOCKED, -8, "store directory is in use by another process")                     \
    X(ECLOSED, -9, "store is closing or failed; no further writes accepted")          \
    X(ELIMIT, -10, "limit exceeded")                                                   \
    X(EREGEX, -11, "invalid regular expression")                                       \
    X(ENOTFOUND, -12, "not found")                                                     \
    X(ELMDB, -13, "LMDB error")

typedef enum {
#define TSDB_ERR_ENUM_(name, code, msg) TSDB_##name = code,
    TSDB_ERRNO_MAP(TSDB_ERR_ENUM_)
#undef TSDB_ERR_ENUM_
} tsdb_err_t;

/* Static message for an error code; never NULL. */
const char *tsdb_strerror(int err);

/* Detail of the last error in this thread (e.g. the LMDB or errno text and
 * the file involved); "" when none. Valid until the next tsdb call in the
 * same thread. */
const char *tsdb_last_error_detail(void);

/* ---- basic types ------------------------------------------------------- */

/* A byte string that need not be NUL-terminated. */
typedef struct {
    const char *ptr;
    uint32_t len;
} tsdb_str_t;

typedef struct {
    tsdb_str_t name;
    tsdb_str_t value;
} tsdb_label_t;

typedef struct {
    int64_t t; /* milliseconds since the Unix epoch */
    double v;  /* stored and returned bit-exactly (NaN payloads included) */
} tsdb_sample_t;

/* The Prometheus staleness marker. */
#define TSDB_STALE_NAN_BITS UINT64_C(0x7ff0000000000002)

typedef uint64_t tsdb_sid_t; /* series id, > 0, never reused in a store */

/* ---- options ----------------------------------------------------------- */

typedef enum {
    /* tsdb_append() returns only after the WAL record is fsync'd
     * (fdatasync). Concurrent appenders share one fsync. */
    TSDB_SYNC_ALWAYS = 0,
    /* The WAL is written on every append but fsync'd only every
     * sync_interval_ms. Survives kill -9 (the data is in the OS page cache);
     * a power loss or kernel crash loses up to sync_interval_ms of
     * acknowledged samples. Never corrupts the store. */
    TSDB_SYNC_PERIODIC = 1,
    /* No WAL at all: appends go only to the memory head, and samples are
     * durable once a flush has sealed them (the head limit or memory cap,
     * tsdb_flush, tsdb_close). A crash loses every sample not sealed yet,
     * so this is for bulk loads that are simply run again after a crash
     * (augur import: samples already sealed come back as duplicates). A WAL
     * left by an earlier open is still replayed, and the first flush
     * retires it. Writes the store's bytes once instead of twice. */
    TSDB_SYNC_NONE = 2,
} tsdb_sync_mode_t;

/* WAL replay progress, see tsdb_options_t.replay_progress. */
#define TSDB_HAVE_REPLAY_PROGRESS 1
typedef struct tsdb_replay_progress {
    uint64_t segments;      /* WAL segments to replay */
    uint64_t segments_done; /* replayed so far */
    uint64_t samples;       /* samples added to the head so far */
    uint64_t skipped;       /* samples skipped as already sealed (import mode checkpoint) */
    uint64_t dropped;       /* done: samples found in sealed blocks after the replay */
    uint64_t damaged;       /* done: older segments that ended in a bad record */
    double elapsed_s;       /* since the replay started */
    int done;
} tsdb_replay_progress_t;

/* A ready-made tsdb_options_t.replay_progress for command-line tools: one
 * line on stderr per call, "<ctx>: replaying the WAL: ..." and "<ctx>: WAL
 * replayed: ..." at the end; ctx is the prefix (a const char *, NULL =
 * "augur"). */
void tsdb_replay_progress_stderr(void *ctx, const tsdb_replay_progress_t *p);

typedef struct {
    int64_t retention_ms;       /* 0 = keep forever; else data older than now - retention dropped */
    uint64_t map_size_cap;      /* max LMDB map size in bytes; 0 = 1 TiB */
    uint64_t map_size_initial;  /* first map size; 0 = 64 MiB; grows by doubling up to the cap */
    tsdb_sync_mode_t sync_mode; /* default TSDB_SYNC_ALWAYS */
    int64_t sync_interval_ms;   /* TSDB_SYNC_PERIODIC: max time between fsyncs; 0 = 1000 */
    int64_t ooo_window_ms;      /* out-of-order window; 0 = 1 h; < 0 = no out-of-order */
    uint64_t head_max_samples;  /* flush when the head holds more; 0 = 4 M */
    /* Soft cap on the heap the store holds (series, their labels, tables,
     * head), 0 = none. What is left of it after the per-series memory is the
     * head's budget: a flush starts when the head's arrays take a third of
     * it (at least 16 MiB), appends wait for the flush at twice that, and in
     * tsdb_seal_closed_only mode a flush keeps at most half of it of open
     * partitions in the head and seals the rest in pieces. Bounds a bulk
     * import's memory at the price of partitions written in pieces. */
    uint64_t memory_max_bytes;
    /* Keep each series' head packed while its samples arrive in time order
     * (tsdb/headpack.h: 1-5 bytes a sample instead of 16; an out-of-order
     * sample unpacks it until the next flush). Pays where heads are long —
     * a bulk import holding a 32-day partition of millions of series (4x
     * less head memory, partitions not sealed in pieces under the memory
     * cap) — and costs ~6 % of the ingest CPU where they are short (remote
     * write, 2 h partitions). 0 = plain arrays. */
    int pack_heads;
    int64_t flush_interval_ms;  /* background flush period; 0 = 5 min; < 0 = no background thread */
    uint64_t wal_segment_bytes; /* WAL segment size (preallocated); 0 = 64 MiB */
    int64_t partition_ms;       /* time span of a sealed block for series groups created by this
                                   process; 0 = 2 h (right for 15 s-1 min scrapes). Daily data
                                   (imports of Backblaze CSV) wants ~32 d. A group keeps the
                                   span it was created with. */
    int read_only;              /* open without writing anything (no WAL replay into LMDB) */
    /* Clock for retention and the background thread; NULL = CLOCK_REALTIME.
     * Only the background maintenance uses it. */
    int64_t (*now_ms)(void *ctx);
    void *now_ctx;
    /* WAL replay progress (tsdb_open after a crash can replay a large WAL):
     * called from tsdb_open before the first segment, after a segment when
     * replay_progress_ms have passed since the last call (0: after every
     * segment), and once with done = 1 at the end. NULL = none. The callback
     * must not call into the store. */
    void (*replay_progress)(void *ctx, const tsdb_replay_progress_t *p);
    void *replay_progress_ctx;
    int64_t replay_progress_ms;
} tsdb_options_t;

/* Fill *o with the defaults above. */
void tsdb_options_init(tsdb_options_t *o);

typedef struct tsdb tsdb_t;

/* Open (creating if needed) the store in directory `dir`. Replays the WAL:
 * on return every sample acknowledged before a crash is readable.
 * Errors: TSDB_EINVAL, TSDB_ENOMEM, TSDB_EIO, TSDB_EVERSION (newer format),
 * TSDB_ECORRUPT (metadata unreadable), TSDB_ELOCKED, TSDB_ELMDB. */
int tsdb_open(const char *dir, const tsdb_options_t *opts, tsdb_t **out);

/* Flush the head, stop the background thread, close. Accepts NULL.
 * Returns the flush result (data stays safe in the WAL if it failed). */
int tsdb_close(tsdb_t *db);

/* ---- append ------------------------------------------------------------ */

typedef enum {
    TSDB_OUT_STORED = 0,     /* new sample, stored */
    TSDB_OUT_DUPLICATE = 1,  /* identical (t, value bits) already stored: a retry, not stored again */
    TSDB_OUT_CONFLICT = 2,   /* a different value is already stored at t: rejected */
    TSDB_OUT_TOO_OLD = 3,    /* older than the series' newest sample minus the out-of-order window */
    TSDB_OUT_INVALID = 4,    /* invalid series (labels) or timestamp: rejected */
} tsdb_outcome_t;

/* One series of an append batch. Labels need not be sorted; they must have
 * distinct, non-empty names, non-empty values, and include __name__.
 * Samples need not be sorted. */
typedef struct {
    const tsdb_label_t *labels;
    uint32_t nlabels;
    const tsdb_sample_t *samples;
    uint32_t nsamples;
} tsdb_series_in_t;

typedef struct {
    uint64_t stored, duplicate, conflict, too_old, invalid;
    uint64_t series_created;
} tsdb_append_result_t;

/* Append a batch. `outcomes`, if not NULL, receives one tsdb_outcome_t per
 * sample in batch order (series by series). `res`, if not NULL, receives the
 * counts. On return 0, every STORED sample is durable as the sync mode
 * promises. A failure returns a negative code and stores nothing of the batch:
 * TSDB_EINVAL, TSDB_ENOMEM, TSDB_ENOSPC (WAL could not grow), TSDB_EFULL (head
 * over its limit and the map cap prevents sealing), TSDB_EIO (fsync failed:
 * the store refuses further writes), TSDB_ECLOSED. */
int tsdb_append(tsdb_t *db, const tsdb_series_in_t *series, size_t nseries, uint8_t *outcomes,
                tsdb_append_result_t *res);

/* ---- append by series id (bulk imports) ----------------------------------
 *
 * An importer that names the same series over and over (one sample per row
 * and series) can resolve each series once and then append (id, t, v)
 * triples: no label handling per sample. Ids are valid for the life of the
 * tsdb_t; a deleted series' samples come back TSDB_OUT_INVALID. Durability
 * and outcomes are exactly tsdb_append()'s. An id that no durable sample
 * ever used (resolved, never appended to) may name another series after a
 * reopen; the id of a series with stored samples is never reused. */

/* The id of the series named by labels (rules as tsdb_series_in_t), created
 * with no samples if it does not exist (*created = 1). A new series is not
 * written anywhere yet: its labels go into the WAL with the first sample
 * appended to it (tsdb_append_sids or tsdb_append), and it is stored only
 * once it has a sample. Errors: TSDB_EINVAL (invalid labels: the
 * detail says why), TSDB_ENOMEM, TSDB_ELIMIT, TSDB_ECLOSED, or an earlier
 * write failure. */
int tsdb_series_id(tsdb_t *db, const tsdb_label_t *labels, uint32_t nlabels, tsdb_sid_t *sid,
                   int *created);

typedef struct {
    tsdb_sid_t sid;
    int64_t t;
    double v;
} tsdb_sid_sample_t;

/* Append samples by series id, as tsdb_append() (outcomes: one per sample,
 * in order). Consecutive samples of one id are logged together. */
int tsdb_append_sids(tsdb_t *db, const tsdb_sid_sample_t *samples, size_t n, uint8_t *outcomes,
                     tsdb_append_result_t *res);

/* tsdb_append keeps a per-thread scratch buffer; it is freed when the thread
 * exits. Call this to free it earlier (e.g. from main before exit). */
void tsdb_thread_cleanup(void);

/* ---- read -------------------------------------------------------------- */

typedef enum {
    TSDB_MATCH_EQ = 0,  /* name="value" */
    TSDB_MATCH_NE = 1,  /* name!="value" */
    TSDB_MATCH_RE = 2,  /* name=~"regex" (fully anchored) */
    TSDB_MATCH_NRE = 3, /* name!~"regex" (fully anchored) */
} tsdb_match_type_t;

typedef struct {
    tsdb_match_type_t type;
    const char *name;  /* NUL-terminated */
    const char *value; /* NUL-terminated; a PCRE2 pattern for RE/NRE */
} tsdb_matcher_t;

/* A read snapshot. Holds one LMDB read transaction; never blocks appends.
 * Long-lived readers pin old pages: close or tsdb_reader_refresh() them. */
typedef struct tsdb_reader tsdb_reader_t;

int tsdb_reader_open(tsdb_t *db, tsdb_reader_t **out);
void tsdb_reader_close(tsdb_reader_t *r); /* accepts NULL */
/* Move the snapshot forward to now. */
int tsdb_reader_refresh(tsdb_reader_t *r);

/* A growable list of series ids, sorted ascending, owned by the caller. */
typedef struct {
    tsdb_sid_t *ids;
    size_t n, cap;
} tsdb_sids_t;
void tsdb_sids_free(tsdb_sids_t *s);

/* Series matching all matchers that have at least one sample in
 * [mint, maxt] (use INT64_MIN/INT64_MAX for all time). As in Prometheus, a
 * matcher that matches the empty string also matches series without the
 * label. At least one matcher must not match the empty string (else
 * TSDB_EINVAL). Errors: TSDB_EINVAL, TSDB_EREGEX, TSDB_ENOMEM, TSDB_ELMDB. */
int tsdb_select(tsdb_reader_t *r, const tsdb_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                tsdb_sids_t *out);

/* Labels of a series, sorted by name. The strings are valid until the next
 * call on this reader or its close. Returns TSDB_ENOTFOUND for an unknown
 * or deleted id. */
int tsdb_series_labels(tsdb_reader_t *r, tsdb_sid_t sid, const tsdb_label_t **labels, size_t *n);

/* A list of strings owned by the caller (label names or values), sorted,
 * unique, each NUL-terminated. */
typedef struct {
    char **v;
    size_t n, cap;
} tsdb_strings_t;
void tsdb_strings_free(tsdb_strings_t *s);

/* All label names (nm == 0), or those of series matching the matchers. */
int tsdb_label_names(tsdb_reader_t *r, const tsdb_matcher_t *m, size_t nm, tsdb_strings_t *out);
/* All values of label `name` (nm == 0), or over series matching matchers. */
int tsdb_label_values(tsdb_reader_t *r, const char *name, const tsdb_matcher_t *m, size_t nm,
                      tsdb_strings_t *out);

/* Label names / values of `name` over the series with at least one sample
 * in [mint, maxt] (by the series' stored time ranges, as tsdb_select), the
 * same as collecting the labels of every series tsdb_select would return for
 * that range, but without visiting each series: a value is kept as soon as
 * one series of its postings is in range. Appended to out (sorted, unique).
 * Errors: TSDB_EINVAL (mint > maxt), TSDB_ENOMEM, TSDB_ELMDB, TSDB_ECORRUPT. */
int tsdb_label_names_range(tsdb_reader_t *r, int64_t mint, int64_t maxt, tsdb_strings_t *out);
int tsdb_label_values_range(tsdb_reader_t *r, const char *name, int64_t mint, int64_t maxt,
                            tsdb_strings_t *out);

/* Sample iterator over one series and [mint, maxt], in time order. */
typedef struct tsdb_iter tsdb_iter_t;

int tsdb_iter_open(tsdb_reader_t *r, tsdb_sid_t sid, int64_t mint, int64_t maxt, tsdb_iter_t **out);
/* Next run of samples: *samples points to *n >= 1 samples, valid until the
 * next call. Returns 1 when a run was produced, 0 at the end, or a negative
 * error. TSDB_ECORRUPT means one sealed block failed its checksum: the run is
 * skipped, and calling again continues with the rest of the series. */
int tsdb_iter_next(tsdb_iter_t *it, const tsdb_sample_t **samples, size_t *n);
void tsdb_iter_close(tsdb_iter_t *it); /* accepts NULL */

/* ---- change watch (result caches) --------------------------------------- */

/* For caches of answers computed from the store (the query API's range
 * result cache). A cache that is about to compute an answer from the samples
 * at or before time t calls tsdb_watch(db, t, &gen) before it reads: from
 * then on (the watched time only grows), every append that stores a sample
 * at or before the highest watched time, every tsdb_delete_series() that
 * deletes something and every retention pass that drops data increments the
 * store's change generation. The answer stays current for as long as
 * tsdb_generation() returns the gen that tsdb_watch() gave. Appends after
 * the watched time (the usual in-order ingestion) change nothing. */
void tsdb_watch(tsdb_t *db, int64_t t, uint64_t *gen);
uint64_t tsdb_generation(tsdb_t *db);

/* ---- maintenance ------------------------------------------------------- */

/* Seal everything in the head into LMDB (compressed), merge the blocks of
 * each time partition into one, sync, and truncate the WAL. While
 * tsdb_seal_closed_only() is on, the open partitions stay in the head (see
 * there); tsdb_close() always seals everything. */
int tsdb_flush(tsdb_t *db);

/* Bulk-import mode (on != 0): a flush seals only finished time partitions.
 * Each series group's samples at or after the start of the partition that
 * holds the store's newest timestamp stay in the head, so that partition is
 * written once when it is finished instead of in pieces merged later. The
 * WAL segments that logged the samples kept are kept too (the checkpoint
 * stays behind them): a crash loses nothing acknowledged, and the replay
 * skips what those segments hold that was sealed. Once twice the head limit
 * is kept, the other series are sealed whole; the head limit counts only
 * samples added since the last flush. Off (the default) restores the normal
 * behaviour from the next flush on. */
void tsdb_seal_closed_only(tsdb_t *db, int on);

/* Drop whole partitions whose data ends before now_ms - retention. */
int tsdb_retention_apply(tsdb_t *db, int64_t now_ms);

/* Delete every series matching the matchers (all their samples). *ndeleted
 * receives the count. */
int tsdb_delete_series(tsdb_t *db, const tsdb_matcher_t *m, size_t nm, uint64_t *ndeleted);

/* Consistent online backup into an empty or new directory `dest`: flushes,
 * then copies the LMDB environment with compaction. The copy opens as a
 * store of its own. */
int tsdb_backup(tsdb_t *db, const char *dest);

/* Verify every sealed block's checksum and structure and the index;
 * *nbad receives the number of bad blocks. Returns 0 if the walk completed. */
int tsdb_check(tsdb_t *db, uint64_t *nbad);

typedef struct {
    uint64_t series;          /* series in the index */
    uint64_t active_series;   /* series with samples in the head */
    uint64_t samples;         /* samples stored (sealed + head) */
    uint64_t head_samples;    /* samples in the head (not yet sealed) */
    uint64_t blocks;          /* sealed blocks */
    uint64_t bytes_on_disk;   /* whole directory: LMDB file + WAL */
    uint64_t lmdb_bytes;      /* LMDB file size */
    uint64_t lmdb_used_bytes; /* pages in use (the file less LMDB's free list) */
    uint64_t vacuums;         /* compacting rewrites of the file since open */
    uint64_t wal_bytes;       /* WAL bytes written (not preallocated size) */
    uint64_t map_size;        /* current LMDB map size */
    uint64_t memory_bytes;    /* heap held by the store (head, series map, buffers) */
    double bytes_per_sample;  /* bytes_on_disk / samples */
    uint64_t wal_fsyncs;      /* fsyncs done so far */
    uint64_t wal_fsync_ns;    /* total time in fsync (needs a clock: measured with CLOCK_MONOTONIC) */
    uint64_t flushes;
    uint64_t corrupt_blocks;  /* blocks found corrupt while reading */
} tsdb_stats_t;

int tsdb_stats(tsdb_t *db, tsdb_stats_t *st);

/* Where the store's heap goes (estimates from its own counters, no LMDB
 * access: cheap enough to call after every batch). */
typedef struct {
    uint64_t series;         /* live series */
    uint64_t series_structs; /* slabs of series structs */
    uint64_t labels;         /* label copies of series not yet in the LMDB index */
    uint64_t unpersisted;    /* series holding such a copy */
    uint64_t tables;         /* fingerprint table, sid pages, active/fresh lists */
    uint64_t head;           /* head arrays (capacity) */
    uint64_t head_samples;   /* samples in them */
    uint64_t frozen;         /* arrays being sealed by a flush */
    uint64_t wal_buffers;
    uint64_t total;          /* all of the above */
    uint64_t head_budget;    /* the head's share of memory_max_bytes, 0 = no cap */
} tsdb_memory_t;

void tsdb_memory(tsdb_t *db, tsdb_memory_t *m);

/* For benchmarks comparing in one binary: -1 (default) heads are packed as
 * tsdb_options_t.pack_heads says, 0 never, 1 always. Process-wide. */
void tsdb_debug_head_packing(int mode);

#ifdef __cplusplus
}
#endif
#endif /* AUGUR_TSDB_H */
