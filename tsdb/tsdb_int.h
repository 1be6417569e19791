/* tsdb_int.h — internals shared by the files of tsdb/. Not for other libraries. */
#ifndef AUGUR_TSDB_INT_H
#define AUGUR_TSDB_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tsdb/codec.h"
#include "tsdb/headpack.h"
#include "tsdb/index.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

/* Set the per-thread error detail returned by tsdb_last_error_detail(). */
void tsdb_set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tsdb_clear_detail(void);

/* ---- layout constants (part of the on-disk format, stored in meta) ------ */

#define TSDB_PART_MS (2LL * 3600 * 1000) /* time partition of sealed blocks */
#define TSDB_GROUP_SIDS 128u             /* series ids per block group (sid / 128 = group) */
#define TSDB_MAX_SID 0xfffffff0u

/* ---- labels (labels.c) --------------------------------------------------- */

/* Validate labels[0..n) and write them sorted by name into out[0..n).
 * Returns 0, or TSDB_EINVAL with detail (empty/duplicate name, missing
 * __name__, empty value, NUL byte, too many). */
int labels_canonical(const tsdb_label_t *in, size_t n, tsdb_label_t *out);
/* Serialize sorted labels: varint n, then (varint len, bytes) for name, value. */
int labels_serialize(const tsdb_label_t *l, size_t n, tbuf_t *out);
/* Parse a serialization; labels point into p. Returns 0 or TSDB_ECORRUPT. */
int labels_parse(const uint8_t *p, size_t len, idx_labels_t *out);
/* 128-bit fingerprint of a sorted label set. */
void labels_hash(const tsdb_label_t *l, size_t n, uint64_t h[2]);

/* ---- WAL (wal.c) ---------------------------------------------------------- */

typedef struct {
    char *dir;          /* <store>/wal */
    int fd;             /* current segment, -1 if none */
    uint64_t seq;       /* current segment number */
    uint64_t seg_size;  /* preallocated size of the current segment */
    uint64_t seg_used;  /* bytes assigned in the current segment (written + pending) */
    uint64_t seg_written; /* write offset in the current segment */
    uint64_t replay_seq;  /* wal_replay(): the segment being replayed */
    uint64_t seg_target; /* default segment size */
    uint64_t bytes_written;
} wal_t;

int wal_open(wal_t *w, const char *storedir, uint64_t seg_target);
void wal_close(wal_t *w);
/* Start segment seq+1 with at least `need` bytes preallocated. TSDB_ENOSPC
 * if the space cannot be reserved (the old segment stays current). */
int wal_rotate(wal_t *w, uint64_t need);
/* Append bytes to the current segment at its write offset (no sync). */
int wal_write(wal_t *w, const uint8_t *p, size_t len);
int wal_sync(wal_t *w);
/* Delete segments with seq <= upto. */
void wal_remove_upto(wal_t *w, uint64_t upto);
/* Frame a record payload: [u32 len][u32 checksum][payload] appended to out. */
int wal_frame(tbuf_t *out, const uint8_t *payload, size_t len);
/* Frame in place: the caller reserved 8 header bytes at out->p + start and
 * wrote the payload after them, up to out->len. */
void wal_frame_finish(tbuf_t *out, size_t start);
/* Replay: call fn for each intact record of every segment with seq > after,
 * in order. Stops a segment at its first torn/zero record. */
typedef int (*wal_record_fn)(void *ctx, const uint8_t *p, size_t len);
/* Called before the first segment replayed (done 0) and after each one, with
 * the number of segments to replay; nonzero stops the replay with that. */
typedef int (*wal_seg_fn)(void *ctx, size_t done, size_t total);
/* Feed every record of the segments after `after` to fn, oldest first; seg
 * may be NULL. *max_seq: the highest segment number seen; *nbad: segments
 * other than the newest that end in a bad record (damage, not a torn tail). */
int wal_replay(wal_t *w, uint64_t after, wal_record_fn fn, wal_seg_fn seg, void *ctx,
               uint64_t *max_seq, uint64_t *nbad);

/* ---- the store ------------------------------------------------------------ */

/* What an append touches is in the first 64 bytes (one cache line: series
 * come from 64-byte aligned slabs, see series_add), the rest after it. With a
 * million series every append misses on its series; one line instead of
 * two or three per sample. */
typedef struct series {
    /* hot: appends */
    _Alignas(64) uint32_t sid;
    uint32_t n, cap;      /* head samples; capacity (samples, or bytes when packed) */
    uint8_t hint;         /* head capacity to start with: the size of the last head (<= 64) */
    uint8_t frozen_packed; /* the frozen samples are a packed head (fpk) */
    uint8_t packed;       /* head is a headpack.h buffer (pk), else a plain array */
    uint8_t pk_last_sz;   /* packed: bytes of the last entry (0: none, or not known) */
    uint8_t sorted;       /* head is sorted by t (always when packed) */
    uint8_t persisted;    /* present in the LMDB index */
    uint8_t deleted;
    uint8_t in_active;    /* listed in db->active */
    uint32_t pk_len;      /* packed: bytes in use */
    union {
        tsdb_sample_t *head; /* !packed */
        uint8_t *pk;         /* packed: samples appended in time order, 1-17 bytes each */
    };
    int64_t maxt;         /* newest timestamp ever accepted, INT64_MIN if none */
    int64_t mint;         /* oldest timestamp stored (approximate after retention) */
    /* packed: the state of the last entry, kept here and not in the buffer's
     * header, so that an append touches this line and the buffer's end only
     * (head_pk_store writes the header before anything reads the buffer).
     * Its time is maxt: a packed head is only started, or repacked, when its
     * last sample is the newest the series has accepted. */
    int64_t pk_last_dt;
    uint64_t pk_last_v;
    /* cold: flushes, lookups, out-of-order samples, series not indexed yet */
    uint8_t *labels;      /* serialized labels while not persisted, else NULL */
    uint64_t logged_gen;  /* not persisted: db->wal_gen when its labels were last logged
                             (0 = not in the WAL: created by tsdb_series_id) */
    uint32_t nfrozen;     /* samples being sealed by a flush */
    uint32_t labels_len;
    union {
        tsdb_sample_t *frozen; /* !frozen_packed */
        uint8_t *fpk;          /* frozen_packed: the packed head the flush took over */
    };
    int64_t sealed_mint, sealed_maxt; /* range in LMDB; sealed_maxt = INT64_MIN if none */
    uint64_t h[2];        /* label fingerprint */
} series_t;

/* Series per slab (4096 x 128 bytes = 512 KiB) and its size. */
#define SERIES_SLAB 4096
#define SERIES_SLAB_BYTES ((size_t)SERIES_SLAB * sizeof(series_t))

struct tsdb {
    char *dir;
    tsdb_options_t opt;
    int lockfd;
    MDB_env *env;
    MDB_dbi meta, blocks, bdata, groups; /* groups: u32 BE group -> i64 LE partition ms */ /* blocks: index (group, part, seq) -> block ref; bdata: fragments */
    uint32_t frag_max;           /* fragment payload size: two fit in one LMDB page */
    uint32_t next_bid;           /* next block id (monotonic: fragments are appended) */
    idx_dbis_t idx;
    uint64_t map_size;

    pthread_mutex_t mu;          /* protects everything below */
    pthread_cond_t cv;           /* WAL durability, flush completion */
    series_t ***pages;           /* pages[sid / 128][sid % 128] -> series (NULL: unknown/deleted) */
    uint32_t npages;
    uint32_t next_sid;           /* max sid + 1 */
    series_t **fresh;            /* series not yet in the LMDB index, in creation order */
    size_t nfresh, fresh_cap;
    struct name_group *ngroups;  /* metric name -> its group being filled (open addressing) */
    size_t ng_cap, ng_n;
    uint32_t next_group;
    struct group_info {
        int64_t pm;          /* partition length of this group's blocks, 0 = unknown yet */
        uint8_t persisted;   /* pm written to "groups" */
        int64_t tmax;        /* newest sealed sample of the group (for closing partitions) */
    } *ginfo;                /* indexed by group, parallel to pages */
    uint32_t nginfo;
    uint64_t nseries;            /* live series */
    int64_t max_time;            /* newest timestamp accepted in any series */
    struct db_tslot {
        uint64_t h0;             /* s->h[0] */
        series_t *s;
    } *table;                    /* open addressing on h[0] */
    size_t table_cap, table_n;
    series_t **active;           /* series with head samples */
    size_t nactive, active_cap;
    uint64_t head_samples, frozen_samples;
    uint64_t head_kept;          /* head samples a flush kept (tsdb_seal_closed_only) */
    uint64_t head_kept_bytes;    /* and their bytes then */
    int hold_open;               /* tsdb_seal_closed_only() */
    uint64_t ckpt_done;          /* the WAL checkpoint of the last committed flush */
    uint64_t freeze_ckpt;        /* the last flush's WAL segment when it froze the head */
    int64_t freeze_maxt;         /* and max_time then */
    uint64_t hold_seq;           /* replay: in segments <= hold_seq, samples before */
    int64_t hold_t;              /* hold_t are sealed (see db_flush_locked) */
    uint64_t sealed_samples;
    uint64_t gen;                /* bumped when a flush commits */
    int64_t watch_t;             /* tsdb_watch(): appends at or before it bump change_gen */
    _Atomic uint64_t change_gen; /* tsdb_generation() */
    int failed;                  /* sticky write error */
    char failed_detail[256];     /* its detail, repeated to every caller */
    int closing;
    int last_flush_err;

    /* WAL */
    wal_t wal;
    tbuf_t wal_pending;          /* framed records not yet written */
    tbuf_t wal_spare;
    uint64_t lsn_assigned, lsn_durable;
    uint64_t wal_gen;            /* bumped by every flush: the segments before it go away */
    uint64_t unlogged_bytes;     /* WAL bytes the labels of unlogged fresh series would take */
    int syncing;
    uint64_t fsyncs, fsync_ns;
    int64_t last_sync_ms;

    /* flush */
    pthread_mutex_t flush_mu;
    /* under flush_mu: a flush's entry array and write_group positions, kept
     * for the next flush while tsdb_seal_closed_only is on (an import: at
     * 17.8 M series they are 1.3 GB and 71 MB, which the kernel otherwise
     * zeroes again at every flush) */
    struct frozen *fz_keep;
    size_t fz_keep_cap;
    uint32_t *pos_keep;
    size_t pos_keep_cap;
    uint64_t flush_keep_bytes;   /* their size, under mu (counted as the store's memory) */
    uint32_t next_block_seq;
    uint64_t flushes;
    uint64_t corrupt_blocks;
    int flushing;
    uint32_t nreaders;           /* open LMDB read txns outside mu (readers, stats, check) */
    uint64_t vacuums;

    /* background maintenance */
    pthread_t bg;
    int bg_running;
    int bg_wake;
    uint64_t mem_head_bytes;
    uint64_t mem_labels_bytes;   /* s->labels of fresh series (bytes, count) */
    uint64_t mem_labels_n;
    struct seal_cache *scache;   /* sealed_lookup's decoded (group, partition)s, under mu */
    uint64_t scache_clock;
    /* series structs: slabs of SERIES_SLAB, freed at close (series are
     * never freed before: a deleted one stays marked) */
    void **slabs;
    size_t nslabs, slabs_cap;
    size_t slab_used;            /* series handed out from the last slab */
};

/* The series with id sid, or NULL. Caller holds mu. */
/* A packed head's header written from the state its series keeps (appends
 * leave the header as it was): before anything but an append reads s->pk.
 * Caller holds mu. */
static inline void head_pk_store(series_t *s)
{
    headpack_hdr_t h;
    h.last_t = s->n ? s->maxt : 0;
    h.last_dt = s->n ? s->pk_last_dt : 0;
    h.last_v = s->n ? s->pk_last_v : 0;
    h.len = s->pk_len;
    h.last_off = s->n && s->pk_last_sz ? s->pk_len - s->pk_last_sz : 0;
    memcpy(s->pk, &h, sizeof h);
}

/* The state in s from its packed head's header, after something other than
 * an append wrote the buffer (a split, a repack). Caller holds mu. */
static inline void head_pk_load(series_t *s)
{
    headpack_hdr_t h;
    memcpy(&h, s->pk, sizeof h);
    s->pk_len = h.len;
    s->pk_last_dt = h.last_dt;
    s->pk_last_v = h.last_v;
    s->pk_last_sz = h.last_off && h.len - h.last_off <= HEADPACK_MAX_ENTRY ? (uint8_t)(h.len - h.last_off) : 0;
}

static inline series_t *db_sid_get(const tsdb_t *db, uint64_t sid)
{
    uint64_t g = sid / TSDB_GROUP_SIDS;
    if (g >= db->npages || !db->pages[g]) return NULL;
    return db->pages[g][sid % TSDB_GROUP_SIDS];
}

struct tsdb_reader {
    tsdb_t *db;
    MDB_txn *txn;
    uint64_t gen;
    idx_labels_t labels;
    tbuf_t labels_buf;
    /* recently decoded blocks (LRU), reused by iterators: a query reads the
     * series of a group one after the other, each across several partitions */
    struct reader_cache {
        uint8_t key[16];
        int valid;
        uint64_t used;
        block_reader_t br;
    } cache[8];
    uint64_t cache_clock;
    tbuf_t frag;          /* fragments of a multi-fragment block, concatenated */
};

/* Sealed blocks are stored as fragments of at most frag_max bytes in "bdata"
 * (key: u32 BE block id | u16 BE fragment number), appended in id order so
 * that LMDB fills pages completely and never needs contiguous overflow runs,
 * and indexed in "blocks" (key: db_block_key) -> u32 LE block id | u32 LE
 * length | u16 LE fragments. Callers hold flush_mu for writes. */
int db_block_put(tsdb_t *db, MDB_txn *txn, uint32_t group, int64_t part, uint32_t seq,
                 const uint8_t *p, size_t len);
/* The bytes of the block whose index value is ref: zero-copy when it is one
 * fragment (valid for the txn), else concatenated into buf. TSDB_ECORRUPT if
 * a fragment is missing or the sizes disagree. */
int db_block_read(tsdb_t *db, MDB_txn *txn, const MDB_val *ref, tbuf_t *buf, const uint8_t **p,
                  size_t *len);
/* Delete the block with index key k (16 bytes). */
int db_block_del(tsdb_t *db, MDB_txn *txn, const uint8_t *k);

/* store.c internals used by maint.c */
int db_txn_begin_write(tsdb_t *db, MDB_txn **txn);
int db_lmdb_err(int rc, const char *what);
/* Pages in LMDB's free list, as seen by txn. */
uint64_t db_free_pages(MDB_txn *txn);
void db_block_key(uint8_t k[16], uint32_t group, int64_t part, uint32_t seq);
void db_block_key_parse(const uint8_t k[16], uint32_t *group, int64_t *part, uint32_t *seq);
int64_t db_part_of(int64_t t, int64_t pm);
/* Start of the partition after `part` (saturates at INT64_MAX). */
int64_t db_part_end(int64_t part, int64_t pm);
/* Partition length of group g (ms). Takes mu. */
int64_t db_group_pm(tsdb_t *db, uint32_t g);
/* The same with mu held. */
int64_t db_group_pm_locked(const tsdb_t *db, uint32_t g);
int db_flush_locked(tsdb_t *db, int compact_all);
/* Count an LMDB read txn that lives outside mu (the vacuum waits for none). */
void db_reader_enter(tsdb_t *db);
void db_reader_leave(tsdb_t *db);
/* Remove s from the fingerprint table. Caller holds mu. */
void db_table_remove(tsdb_t *db, series_t *s);
/* Rewrite every sealed block, dropping deleted series; *removed counts the
 * samples dropped. Caller holds flush_mu. */
int db_rewrite_everything(tsdb_t *db, uint64_t *removed);

#endif
