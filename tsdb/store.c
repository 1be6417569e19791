/*
 * store.c — open/close, append with group commit, the in-memory head, and
 * flushing the head into sealed LMDB blocks.
 *
 * Write path:
 *   tsdb_append()  validates and fingerprints labels (outside the lock), then
 *                  under db->mu classifies every sample (stored / duplicate /
 *                  conflict / too old), appends stored ones to the per-series
 *                  head arrays and one WAL record to db->wal_pending, and
 *                  waits until a leader has written + fdatasync'd that record
 *                  (group commit: one fsync covers every append queued
 *                  behind the one in progress).
 *   flush          freezes the head (under the lock), encodes it into blocks
 *                  keyed (group, partition, seq), commits one LMDB write txn
 *                  recording the WAL checkpoint, then deletes old segments.
 *
 * LMDB databases: "meta", "blocks", plus the index's (index.h).
 *   meta   "format"   u32 LE format version
 *          "next_sid" u32 LE,  "block_seq" u32 LE,  "wal_ckpt" u64 LE,
 *          "samples"  u64 LE (sealed samples),  "part_ms" i64 LE
 *          "wal_hold_seq" u64 LE, "wal_hold_t" i64 LE: in WAL segments up to
 *          wal_hold_seq (kept for samples the head still holds, see
 *          tsdb_seal_closed_only), samples before wal_hold_t are sealed.
 *          Optional: older stores lack them, older code ignores them.
 *   blocks key: u32 BE group (= sid / 64) | u64 BE partition start (sign
 *          flipped so negative times sort first) | u32 BE seq
 *          value: a block (codec.h), the chunks of up to 64 series.
 *
 * WAL record payload (wal.c frames it):
 *   0x01 varint sid | varint len | serialized labels (labels.c)   new series
 *   0x02 varint sid | varint n | n x (zigzag varint dt | 8-byte LE value bits)
 *        dt is the difference to the previous timestamp (first: to 0).
 *   0x03 zigzag varint dsid | varint n | n x (zigzag varint dt | value)
 *        (tsdb_append_sids) as 0x02, but dsid is the difference to the sid
 *        of the record's previous 0x03 entry and dt to its last timestamp
 *        (first: to 0), and value is varint(zigzag(i) << 1) for an integer
 *        i, |i| <= 2^53, whose double has the value's bits, else 0x01 and the
 *        8 LE bits. A row of a daily file (one sample per series, the same
 *        time, ids in a run, small integers) takes ~6 bytes per sample
 *        instead of ~19.
 *
 * The LMDB map is set to the configured cap at open: on 64-bit Linux this
 * reserves address space only, the file grows with use, and LMDB's
 * mdb_env_set_mapsize() could not be called later while readers hold
 * transactions. See docs/storage-format.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsdb/headpack.h"
#include "tsdb/tsdb_int.h"

#define REC_SERIES 0x01
#define REC_SAMPLES 0x02
#define REC_SAMPLES_D 0x03

/* A value of a 0x03 entry (see above); p has room for 10 bytes. */
static inline size_t wal_val_put(uint8_t *p, double v)
{
    if (v >= -9007199254740992.0 && v <= 9007199254740992.0) {
        int64_t i = (int64_t)v;
        if ((double)i == v && (i != 0 || f64_bits(v) == 0)) /* not -0.0 */
            return varint_put_raw(p, zigzag_enc(i) << 1);
    }
    p[0] = 0x01;
    le64_put(p + 1, f64_bits(v));
    return 9;
}

static int wal_val_get(const uint8_t **pp, const uint8_t *end, double *v)
{
    uint64_t x;
    if (varint_get(pp, end, &x)) return -1;
    if (!(x & 1)) {
        int64_t i = zigzag_dec(x >> 1);
        if (i > (INT64_C(1) << 53) || i < -(INT64_C(1) << 53)) return -1;
        *v = (double)i;
        return 0;
    }
    if (x != 1 || end - *pp < 8) return -1;
    *v = f64_from_bits(le64_get(*pp));
    *pp += 8;
    return 0;
}

/* ---- small helpers --------------------------------------------------------- */

int db_lmdb_err(int rc, const char *what)
{
    if (rc == 0) return 0;
    if (rc == MDB_MAP_FULL) {
        tsdb_set_detail("%s: LMDB map full (size cap reached)", what);
        return TSDB_EFULL;
    }
    if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG) {
        tsdb_set_detail("%s: %s", what, strerror(rc));
        return TSDB_ENOSPC;
    }
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
        tsdb_set_detail("%s: %s", what, mdb_strerror(rc));
        return TSDB_ECORRUPT;
    }
    tsdb_set_detail("%s: %s", what, mdb_strerror(rc));
    return rc == EIO ? TSDB_EIO : TSDB_ELMDB;
}

int64_t db_part_of(int64_t t, int64_t pm)
{
    if (t < INT64_MIN + pm) return INT64_MIN; /* the first, partial partition */
    int64_t q = t / pm;
    if (t % pm < 0) q--;
    return q * pm;
}

int64_t db_part_end(int64_t part, int64_t pm)
{
    if (part == INT64_MIN) return db_part_of(INT64_MIN + pm, pm);
    return part > INT64_MAX - pm ? INT64_MAX : part + pm;
}

int64_t db_group_pm_locked(const tsdb_t *db, uint32_t g)
{
    if (g < db->nginfo && db->ginfo[g].pm) return db->ginfo[g].pm;
    return TSDB_PART_MS;
}

int64_t db_group_pm(tsdb_t *db, uint32_t g)
{
    pthread_mutex_lock(&db->mu);
    int64_t pm = db_group_pm_locked(db, g);
    pthread_mutex_unlock(&db->mu);
    return pm;
}

/* Make sure ginfo covers group g; a group first seen in this process gets
 * the configured partition length. Caller holds mu (or is opening). */
static int ginfo_touch(tsdb_t *db, uint32_t g)
{
    if (g >= db->nginfo) {
        uint32_t ncap = db->nginfo ? db->nginfo : 64;
        while (ncap <= g) ncap *= 2;
        struct group_info *nv = realloc(db->ginfo, ncap * sizeof *nv);
        if (!nv) return TSDB_ENOMEM;
        memset(nv + db->nginfo, 0, (ncap - db->nginfo) * sizeof *nv);
        for (uint32_t i = db->nginfo; i < ncap; i++) nv[i].tmax = INT64_MIN;
        db->ginfo = nv;
        db->nginfo = ncap;
    }
    if (!db->ginfo[g].pm) db->ginfo[g].pm = db->opt.partition_ms;
    return 0;
}

void db_block_key(uint8_t k[16], uint32_t group, int64_t part, uint32_t seq)
{
    be32_put(k, group);
    be64_put(k + 4, (uint64_t)part ^ UINT64_C(0x8000000000000000));
    be32_put(k + 12, seq);
}

void db_block_key_parse(const uint8_t k[16], uint32_t *group, int64_t *part, uint32_t *seq)
{
    *group = be32_get(k);
    *part = (int64_t)(be64_get(k + 4) ^ UINT64_C(0x8000000000000000));
    *seq = be32_get(k + 12);
}

int db_block_put(tsdb_t *db, MDB_txn *txn, uint32_t group, int64_t part, uint32_t seq,
                 const uint8_t *p, size_t len)
{
    if (len > UINT32_MAX) return TSDB_ELIMIT;
    uint32_t bid = db->next_bid++;
    uint32_t nfrag = (uint32_t)((len + db->frag_max - 1) / db->frag_max);
    if (nfrag > 0xffff) return TSDB_ELIMIT;
    for (uint32_t i = 0; i < nfrag; i++) {
        uint8_t fk[6];
        be32_put(fk, bid);
        fk[4] = (uint8_t)(i >> 8);
        fk[5] = (uint8_t)i;
        size_t off = (size_t)i * db->frag_max;
        size_t n = len - off < db->frag_max ? len - off : db->frag_max;
        MDB_val key = {6, fk}, val = {n, (void *)(p + off)};
        int rc = mdb_put(txn, db->bdata, &key, &val, MDB_APPEND);
        if (rc == MDB_KEYEXIST) rc = mdb_put(txn, db->bdata, &key, &val, 0);
        if (rc) return db_lmdb_err(rc, "write block fragment");
    }
    uint8_t k[16], ref[10];
    db_block_key(k, group, part, seq);
    le32_put(ref, bid);
    le32_put(ref + 4, (uint32_t)len);
    ref[8] = (uint8_t)nfrag;
    ref[9] = (uint8_t)(nfrag >> 8);
    MDB_val key = {16, k}, val = {10, ref};
    int rc = mdb_put(txn, db->blocks, &key, &val, 0);
    if (rc) return db_lmdb_err(rc, "write block index");
    uint8_t b[8];
    le64_put(b, db->next_bid);
    MDB_val mk = {3, (void *)"bid"}, mv = {8, b};
    return db_lmdb_err(mdb_put(txn, db->meta, &mk, &mv, 0), "write meta");
}

int db_block_read(tsdb_t *db, MDB_txn *txn, const MDB_val *ref, tbuf_t *buf, const uint8_t **p,
                  size_t *len)
{
    if (ref->mv_size != 10) return TSDB_ECORRUPT;
    const uint8_t *r = ref->mv_data;
    uint32_t bid = le32_get(r), total = le32_get(r + 4);
    uint32_t nfrag = (uint32_t)r[8] | ((uint32_t)r[9] << 8);
    if (nfrag == 0) return TSDB_ECORRUPT;
    buf->len = 0;
    for (uint32_t i = 0; i < nfrag; i++) {
        uint8_t fk[6];
        be32_put(fk, bid);
        fk[4] = (uint8_t)(i >> 8);
        fk[5] = (uint8_t)i;
        MDB_val key = {6, fk}, val;
        int rc = mdb_get(txn, db->bdata, &key, &val);
        if (rc == MDB_NOTFOUND) return TSDB_ECORRUPT;
        if (rc) return db_lmdb_err(rc, "read block fragment");
        if (nfrag == 1) {
            if (val.mv_size != total) return TSDB_ECORRUPT;
            *p = val.mv_data;
            *len = val.mv_size;
            return 0;
        }
        if (buf->len + val.mv_size > total) return TSDB_ECORRUPT;
        if (tbuf_put(buf, val.mv_data, val.mv_size)) return TSDB_ENOMEM;
    }
    if (buf->len != total) return TSDB_ECORRUPT;
    *p = buf->p;
    *len = buf->len;
    return 0;
}

int db_block_del(tsdb_t *db, MDB_txn *txn, const uint8_t *k)
{
    MDB_val key = {16, (void *)k}, ref;
    int rc = mdb_get(txn, db->blocks, &key, &ref);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return db_lmdb_err(rc, "read block index");
    uint32_t bid = 0, nfrag = 0;
    if (ref.mv_size == 10) {
        const uint8_t *r = ref.mv_data;
        bid = le32_get(r);
        nfrag = (uint32_t)r[8] | ((uint32_t)r[9] << 8);
    }
    for (uint32_t i = 0; i < nfrag; i++) {
        uint8_t fk[6];
        be32_put(fk, bid);
        fk[4] = (uint8_t)(i >> 8);
        fk[5] = (uint8_t)i;
        MDB_val fkey = {6, fk};
        rc = mdb_del(txn, db->bdata, &fkey, NULL);
        if (rc && rc != MDB_NOTFOUND) return db_lmdb_err(rc, "delete block fragment");
    }
    rc = mdb_del(txn, db->blocks, &key, NULL);
    return rc && rc != MDB_NOTFOUND ? db_lmdb_err(rc, "delete block index") : 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t default_now_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tsdb_options_init(tsdb_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->sync_mode = TSDB_SYNC_ALWAYS;
}

static void options_fill(tsdb_options_t *o)
{
    if (!o->map_size_cap) o->map_size_cap = UINT64_C(1) << 40;
    if (!o->map_size_initial) o->map_size_initial = UINT64_C(64) << 20;
    if (!o->sync_interval_ms) o->sync_interval_ms = 1000;
    if (!o->ooo_window_ms) o->ooo_window_ms = 3600 * 1000;
    if (o->ooo_window_ms < 0) o->ooo_window_ms = 0;
    if (!o->head_max_samples) o->head_max_samples = 1u << 20;
    if (!o->flush_interval_ms) o->flush_interval_ms = 5 * 60 * 1000;
    if (!o->wal_segment_bytes) o->wal_segment_bytes = UINT64_C(64) << 20;
    if (!o->now_ms) o->now_ms = default_now_ms;
    if (o->partition_ms <= 0) o->partition_ms = TSDB_PART_MS;
}

/* ---- series table ---------------------------------------------------------- */

/* The table keeps each series' h[0] beside its pointer: probing compares
 * fingerprints without touching the series (one cache miss per probe saved;
 * with a million series a lookup is otherwise several misses). */
static struct db_tslot *table_slot(tsdb_t *db, const uint64_t h[2])
{
    size_t mask = db->table_cap - 1, i = h[0] & mask;
    for (;;) {
        struct db_tslot *sl = &db->table[i];
        if (!sl->s || (sl->h0 == h[0] && sl->s->h[1] == h[1])) return sl;
        i = (i + 1) & mask;
    }
}

static void table_set(tsdb_t *db, series_t *s)
{
    struct db_tslot *sl = table_slot(db, s->h);
    sl->h0 = s->h[0];
    sl->s = s;
}

static int table_grow(tsdb_t *db)
{
    size_t ncap = db->table_cap ? db->table_cap * 2 : 1024;
    struct db_tslot *old = db->table;
    size_t ocap = db->table_cap;
    db->table = calloc(ncap, sizeof *db->table);
    if (!db->table) {
        db->table = old;
        return TSDB_ENOMEM;
    }
    db->table_cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].s) table_set(db, old[i].s);
    free(old);
    return 0;
}

void db_table_remove(tsdb_t *db, series_t *s)
{
    size_t mask = db->table_cap - 1, i = s->h[0] & mask;
    while (db->table[i].s != s) i = (i + 1) & mask;
    db->table[i].s = NULL;
    db->table[i].h0 = 0;
    /* re-insert the rest of the cluster (linear probing deletion) */
    for (size_t j = (i + 1) & mask; db->table[j].s; j = (j + 1) & mask) {
        series_t *x = db->table[j].s;
        db->table[j].s = NULL;
        db->table[j].h0 = 0;
        table_set(db, x);
    }
    db->table_n--;
}

/* ---- metric-major series ids ---------------------------------------------------
 *
 * A block holds the series of one group (sid / 128). Series of the same
 * metric name compress far better together (the same metric across nodes
 * has similar values: measured 0.36 vs 0.59 bytes/sample on the node_exporter
 * fleet, bench/bench_codec), so ids are handed out per metric name: each name
 * fills its own groups, sid = group * 128 + slot. Ids are never reused. */

struct name_group {
    char *name;
    uint32_t len;
    uint32_t group; /* the group this name is filling */
    uint32_t used;  /* slots handed out in it */
    uint64_t h;
};

static uint64_t name_hash(const char *p, uint32_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

static struct name_group *ng_slot(tsdb_t *db, const char *name, uint32_t len, uint64_t h)
{
    size_t mask = db->ng_cap - 1, i = h & mask;
    while (db->ngroups[i].name &&
           !(db->ngroups[i].h == h && db->ngroups[i].len == len &&
             !memcmp(db->ngroups[i].name, name, len)))
        i = (i + 1) & mask;
    return &db->ngroups[i];
}

/* The entry of metric `name`, created empty (used = TSDB_GROUP_SIDS, i.e. no
 * open group) if new. NULL on allocation failure. */
static struct name_group *ng_get(tsdb_t *db, const char *name, uint32_t len)
{
    if ((db->ng_n + 1) * 2 > db->ng_cap) {
        size_t ncap = db->ng_cap ? db->ng_cap * 2 : 256;
        struct name_group *nv = calloc(ncap, sizeof *nv), *old = db->ngroups;
        if (!nv) return NULL;
        size_t ocap = db->ng_cap;
        db->ngroups = nv;
        db->ng_cap = ncap;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].name) *ng_slot(db, old[i].name, old[i].len, old[i].h) = old[i];
        free(old);
    }
    uint64_t h = name_hash(name, len);
    struct name_group *e = ng_slot(db, name, len, h);
    if (!e->name) {
        e->name = malloc(len + 1);
        if (!e->name) return NULL;
        memcpy(e->name, name, len);
        e->name[len] = 0;
        e->len = len;
        e->h = h;
        e->used = TSDB_GROUP_SIDS;
        db->ng_n++;
    }
    return e;
}

/* The __name__ value of sorted labels (validated: always present). */
static tsdb_str_t labels_name(const tsdb_label_t *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].name.len == 8 && !memcmp(l[i].name.ptr, "__name__", 8)) return l[i].value;
    tsdb_str_t none = {"", 0};
    return none;
}

/* Note that sid (of a series named name) exists: keeps the name's open group
 * and the group counter consistent on reload and replay. */
static int ng_note(tsdb_t *db, tsdb_str_t name, uint32_t sid)
{
    struct name_group *e = ng_get(db, name.ptr, name.len);
    if (!e) return TSDB_ENOMEM;
    uint32_t g = sid / TSDB_GROUP_SIDS, slot = sid % TSDB_GROUP_SIDS;
    if (e->used == TSDB_GROUP_SIDS || g > e->group) { /* a later group of this name */
        e->group = g;
        e->used = slot + 1;
    } else if (g == e->group && slot + 1 > e->used) {
        e->used = slot + 1;
    }
    if (g + 1 > db->next_group) db->next_group = g + 1;
    return 0;
}

/* A new sid for a series named name. */
static int sid_alloc(tsdb_t *db, tsdb_str_t name, uint32_t *sid)
{
    struct name_group *e = ng_get(db, name.ptr, name.len);
    if (!e) return TSDB_ENOMEM;
    if (e->used >= TSDB_GROUP_SIDS) {
        if (db->next_group >= TSDB_MAX_SID / TSDB_GROUP_SIDS) return TSDB_ELIMIT;
        e->group = db->next_group++;
        e->used = 0;
    }
    *sid = e->group * TSDB_GROUP_SIDS + e->used++;
    return 0;
}

_Static_assert(offsetof(series_t, pk_last_v) + sizeof(uint64_t) <= 64,
               "the fields an append touches fit in one cache line");
_Static_assert(sizeof(series_t) == 128, "two cache lines a series");

/* A zeroed series struct, 64-byte aligned (its hot fields in one line), from
 * the current slab. Caller holds mu. */
static series_t *series_new(tsdb_t *db)
{
    if (!db->nslabs || db->slab_used == SERIES_SLAB) {
        if (db->nslabs == db->slabs_cap) {
            size_t nc = db->slabs_cap ? db->slabs_cap * 2 : 16;
            void **nv = realloc(db->slabs, nc * sizeof *nv);
            if (!nv) return NULL;
            db->slabs = nv;
            db->slabs_cap = nc;
        }
        void *slab = aligned_alloc(64, SERIES_SLAB_BYTES);
        if (!slab) return NULL;
        db->slabs[db->nslabs++] = slab;
        db->slab_used = 0;
    }
    series_t *s = (series_t *)db->slabs[db->nslabs - 1] + db->slab_used++;
    memset(s, 0, sizeof *s);
    return s;
}

/* Register a series with a known sid (creation or reload). Caller holds mu. */
static int series_add(tsdb_t *db, uint32_t sid, const uint64_t h[2], series_t **out)
{
    if (sid >= TSDB_MAX_SID || sid == 0) return TSDB_ELIMIT;
    if ((db->table_n + 1) * 4 >= db->table_cap * 3) {
        int rc = table_grow(db);
        if (rc) return rc;
    }
    uint32_t g = sid / TSDB_GROUP_SIDS;
    if (g >= db->npages) {
        uint32_t ncap = db->npages ? db->npages : 64;
        while (ncap <= g) ncap *= 2;
        series_t ***nv = realloc(db->pages, ncap * sizeof *nv);
        if (!nv) return TSDB_ENOMEM;
        memset(nv + db->npages, 0, (ncap - db->npages) * sizeof *nv);
        db->pages = nv;
        db->npages = ncap;
    }
    if (!db->pages[g]) {
        db->pages[g] = calloc(TSDB_GROUP_SIDS, sizeof(series_t *));
        if (!db->pages[g]) return TSDB_ENOMEM;
    }
    if (ginfo_touch(db, g)) return TSDB_ENOMEM;
    series_t *s = series_new(db);
    if (!s) return TSDB_ENOMEM;
    s->sid = sid;
    s->h[0] = h[0];
    s->h[1] = h[1];
    s->sorted = 1;
    s->maxt = s->sealed_maxt = INT64_MIN;
    s->mint = s->sealed_mint = INT64_MAX;
    table_set(db, s);
    db->table_n++;
    db->pages[g][sid % TSDB_GROUP_SIDS] = s;
    db->nseries++;
    if (sid >= db->next_sid) db->next_sid = sid + 1;
    if (g + 1 > db->next_group) db->next_group = g + 1;
    *out = s;
    return 0;
}

/* Remember a series that is not in the LMDB index yet. */
static int fresh_push(tsdb_t *db, series_t *s)
{
    if (db->nfresh == db->fresh_cap) {
        size_t nc = db->fresh_cap ? db->fresh_cap * 2 : 1024;
        series_t **nv = realloc(db->fresh, nc * sizeof *nv);
        if (!nv) return TSDB_ENOMEM;
        db->fresh = nv;
        db->fresh_cap = nc;
    }
    db->fresh[db->nfresh++] = s;
    return 0;
}

static void series_free(series_t *s)
{
    if (!s) return;
    free(s->head);
    free(s->frozen);
    free(s->labels); /* the struct is in a slab */
}

/* ---- head ------------------------------------------------------------------ */

/* Flush threshold: the configured head size, or 16 samples per live series
 * when that is more. With many series a fixed global threshold would seal a
 * couple of samples per series at a time (poorly compressed chunks that all
 * have to be merged again); 16 samples keep the head under ~300 bytes per
 * series. Caller holds mu. */
static uint64_t head_limit(const tsdb_t *db)
{
    uint64_t per = 16 * db->nseries;
    return per > db->opt.head_max_samples ? per : db->opt.head_max_samples;
}

/* Head samples added since the last flush (what the head limit counts: the
 * samples a flush kept in tsdb_seal_closed_only mode are not). Caller holds
 * mu. */
static uint64_t head_new(const tsdb_t *db)
{
    return db->head_samples > db->head_kept ? db->head_samples - db->head_kept : 0;
}

/* The heap the store holds besides the head: series structs, label copies,
 * tables, WAL buffers. Caller holds mu. */
static uint64_t mem_fixed_locked(const tsdb_t *db)
{
    uint64_t m = sizeof *db + (uint64_t)db->npages * sizeof(series_t **) +
                 db->fresh_cap * sizeof(series_t *) + db->ng_cap * sizeof(struct name_group *) * 4 +
                 db->table_cap * sizeof *db->table + db->active_cap * sizeof(series_t *) +
                 db->wal_pending.cap + db->wal_spare.cap;
    m += db->nslabs * SERIES_SLAB_BYTES;
    m += db->mem_labels_bytes + db->mem_labels_n * 16; /* 16: malloc's header and rounding */
    m += db->flush_keep_bytes;
    return m;
}

/* The head's share of opt.memory_max_bytes (what the rest leaves, at least
 * 48 MiB), 0 = no cap. A flush starts when the head has grown by a third
 * of it since the last flush; appends wait at two thirds (the frozen arrays
 * of the flush under way take up to the third left); a seal_closed_only
 * flush keeps at most a third. Caller holds mu. */
#define HEAD_BUDGET_MIN ((uint64_t)48 << 20)
static uint64_t head_budget(const tsdb_t *db)
{
    if (!db->opt.memory_max_bytes) return 0;
    uint64_t fixed = mem_fixed_locked(db);
    uint64_t b = db->opt.memory_max_bytes > fixed ? db->opt.memory_max_bytes - fixed : 0;
    return b > HEAD_BUDGET_MIN ? b : HEAD_BUDGET_MIN;
}

/* The head needs a flush: over its sample limit or its memory budget. What
 * a tsdb_seal_closed_only flush kept (at most a third of the budget) does
 * not count: it would only be kept again. */
static int head_full(const tsdb_t *db)
{
    if (head_new(db) >= head_limit(db)) return 1;
    uint64_t b = head_budget(db);
    uint64_t nb = db->mem_head_bytes > db->head_kept_bytes ? db->mem_head_bytes - db->head_kept_bytes : 0;
    return b && head_new(db) && nb >= b / 3;
}

/* Heap bytes of s's head. */
static inline uint64_t head_bytes(const series_t *s)
{
    return s->packed ? (uint64_t)s->cap : (uint64_t)s->cap * sizeof(tsdb_sample_t);
}

/* About where the next sample of s's head goes (for prefetching): the end
 * of a packed head is not known without reading its header, but a small
 * one's header and tail share a line or two. */
static inline const void *head_tail(const series_t *s)
{
    if (s->packed) return s->pk + s->pk_len;
    return s->head + (s->n < s->cap ? s->n : 0);
}

/* Turn a packed head into a plain array (room: for half as many again,
 * else exactly the samples). Caller holds mu. */
static int head_unpack(tsdb_t *db, series_t *s, int room)
{
    if (!s->packed) return 0;
    uint32_t ncap = room ? (s->n + s->n / 2 > 8 ? s->n + s->n / 2 : 8) : (s->n ? s->n : 1);
    tsdb_sample_t *a = malloc((size_t)ncap * sizeof *a);
    if (!a) return TSDB_ENOMEM;
    head_pk_store(s);
    if (headpack_decode(s->pk, s->n, a)) abort(); /* our own bytes */
    db->mem_head_bytes -= s->cap;
    free(s->pk);
    s->head = a;
    s->cap = ncap;
    s->packed = 0;
    s->sorted = 1;
    db->mem_head_bytes += (uint64_t)ncap * sizeof *a;
    return 0;
}

/* Pack a plain head whose timestamps strictly increase (sorted, no
 * duplicates: classify lets none in); room for a few more entries. Keeps
 * it plain if the memory is not there. Caller holds mu. */
static void head_repack(tsdb_t *db, series_t *s)
{
    /* a packed head ends at maxt (series_t keeps its last entry's state
     * but not its time): not when newer samples were sealed before these */
    if (s->packed || !s->n || !s->sorted || s->head[s->n - 1].t != s->maxt) return;
    uint32_t bound = HEADPACK_HDR + HEADPACK_MAX_ENTRY * s->n;
    uint8_t *pk = malloc(bound);
    if (!pk) return;
    headpack_init(pk);
    for (uint32_t i = 0; i < s->n; i++) headpack_put(pk, i == 0, s->head[i].t, s->head[i].v);
    uint32_t len = headpack_len(pk), ncap = len + len / 4 + 2 * HEADPACK_MAX_ENTRY;
    if (ncap < bound) {
        uint8_t *np = realloc(pk, ncap);
        if (np) pk = np;
        else ncap = bound;
    } else {
        ncap = bound;
    }
    db->mem_head_bytes -= head_bytes(s);
    free(s->head);
    s->pk = pk;
    s->cap = ncap;
    s->packed = 1;
    head_pk_load(s);
    db->mem_head_bytes += ncap;
}

static long find_t(const tsdb_sample_t *v, size_t n, int sorted, int64_t t);

/* Index of the head sample at t, or -1; *bits its value's bits. Caller
 * holds mu. */
static long head_find(series_t *s, int64_t t, uint64_t *bits)
{
    if (s->packed) {
        head_pk_store(s);
        return headpack_find(s->pk, s->n, t, bits);
    }
    long i = find_t(s->head, s->n, s->sorted, t);
    if (i >= 0) *bits = f64_bits(s->head[i].v);
    return i;
}

/* Index of the frozen sample at t, or -1; *bits its value's bits. */
static long frozen_find(const series_t *s, int64_t t, uint64_t *bits)
{
    if (!s->nfrozen) return -1;
    if (s->frozen_packed) return headpack_find(s->fpk, s->nfrozen, t, bits);
    long i = find_t(s->frozen, s->nfrozen, 1, t);
    if (i >= 0) *bits = f64_bits(s->frozen[i].v);
    return i;
}

/* The frozen samples' first and last time (nfrozen >= 1). */
static int64_t frozen_mint(const series_t *s)
{
    return s->frozen_packed ? headpack_first_t(s->fpk) : s->frozen[0].t;
}

static int64_t frozen_maxt(const series_t *s)
{
    return s->frozen_packed ? headpack_last_t(s->fpk) : s->frozen[s->nfrozen - 1].t;
}

/* tsdb_debug_head_packing: -1 follow opt.pack_heads, 0 never, 1 always. */
static int head_pack_force = -1;

void tsdb_debug_head_packing(int mode)
{
    head_pack_force = mode;
}

static inline int head_pack_on(const tsdb_t *db)
{
    return head_pack_force < 0 ? db->opt.pack_heads : head_pack_force;
}

static int head_push(tsdb_t *db, series_t *s, int64_t t, double v)
{
    if (!s->in_active && db->nactive == db->active_cap) {
        /* room in the active list first: nothing to undo after the push */
        size_t nc = db->active_cap ? db->active_cap * 2 : 1024;
        series_t **na = realloc(db->active, nc * sizeof *na);
        if (!na) return TSDB_ENOMEM;
        db->active = na;
        db->active_cap = nc;
    }
    if (s->n == 0 && !s->head && t > s->maxt && head_pack_on(db)) {
        /* a new head starts packed: room for two entries of any size, and
         * for as many samples as the last head had at a byte each (steady
         * data: a constant at a fixed interval is 1 byte; x1.5 growth).
         * Not for a sample older than one already accepted (sealed since):
         * a packed head ends at maxt, which series_t relies on */
        uint32_t ncap = HEADPACK_HDR + 2 * HEADPACK_MAX_ENTRY + s->hint;
        uint8_t *pk = malloc(ncap);
        if (!pk) return TSDB_ENOMEM;
        headpack_init(pk);
        s->pk = pk;
        s->pk_len = HEADPACK_HDR;
        s->pk_last_sz = 0;
        s->pk_last_dt = 0;
        s->pk_last_v = 0;
        s->cap = ncap;
        s->packed = 1;
        s->sorted = 1;
        db->mem_head_bytes += ncap;
    }
    if (s->packed) {
        if (s->n && t <= s->maxt) { /* maxt: the time of the last entry */
            /* out of order: a plain array from now until the next flush */
            int rc = head_unpack(db, s, 1);
            if (rc) return rc;
        } else {
            uint32_t len = s->pk_len;
            if (len + HEADPACK_MAX_ENTRY > s->cap) {
                uint32_t ncap = s->cap + s->cap / 2;
                if (ncap < len + 2 * HEADPACK_MAX_ENTRY) ncap = len + 2 * HEADPACK_MAX_ENTRY;
                uint8_t *np = realloc(s->pk, ncap);
                if (!np) return TSDB_ENOMEM;
                db->mem_head_bytes += ncap - s->cap;
                s->pk = np;
                s->cap = ncap;
            }
            /* the header's state is kept in s (see series_t) */
            headpack_hdr_t h = {s->n ? s->maxt : 0, s->n ? s->pk_last_dt : 0,
                                s->n ? s->pk_last_v : 0, len, 0};
            s->pk_last_sz = (uint8_t)headpack_put_h(s->pk, &h, s->n == 0, t, v);
            s->pk_len = h.len;
            s->pk_last_dt = h.last_dt;
            s->pk_last_v = h.last_v;
            s->n++;
            goto added;
        }
    }
    if (s->n == s->cap) {
        /* x1.5: less slack; a new head starts as big as the last one was */
        uint32_t ncap = s->cap ? s->cap + s->cap / 2 : s->hint > 8 ? s->hint : 8;
        tsdb_sample_t *nh = realloc(s->head, ncap * sizeof *nh);
        if (!nh) return TSDB_ENOMEM;
        db->mem_head_bytes += (ncap - s->cap) * sizeof *nh;
        s->head = nh;
        s->cap = ncap;
    }
    /* past the newest time (appends in time order): the head stays sorted
     * without reading its last sample (a cache miss with many series) */
    if (s->n && t <= s->maxt && t < s->head[s->n - 1].t) s->sorted = 0;
    s->head[s->n].t = t;
    s->head[s->n].v = v;
    s->n++;
added:
    if (!s->in_active) {
        db->active[db->nactive++] = s;
        s->in_active = 1;
    }
    db->head_samples++;
    if (t > s->maxt) s->maxt = t;
    if (t < s->mint) s->mint = t;
    if (t > db->max_time) db->max_time = t;
    return 0;
}

static int cmp_sample(const void *a, const void *b)
{
    const tsdb_sample_t *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

static long find_t(const tsdb_sample_t *v, size_t n, int sorted, int64_t t)
{
    if (sorted) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (v[mid].t < t) lo = mid + 1;
            else hi = mid;
        }
        return lo < n && v[lo].t == t ? (long)lo : -1;
    }
    for (size_t i = n; i-- > 0;)
        if (v[i].t == t) return (long)i;
    return -1;
}

/* Decode series i of br into *tmp, grown as needed (*cap). 0, TSDB_ENOMEM,
 * or TSDB_ECORRUPT (the caller skips the series: readers report it). */
static int block_decode_grow(const block_reader_t *br, uint32_t i, tsdb_sample_t **tmp,
                             size_t *cap, size_t *n)
{
    size_t cnt = br->counts[i];
    if (cnt > *cap) {
        tsdb_sample_t *nt = realloc(*tmp, cnt * sizeof *nt);
        if (!nt) return TSDB_ENOMEM;
        *tmp = nt;
        *cap = cnt;
    }
    return block_decode_series(br, i, *tmp, cnt, n) ? TSDB_ECORRUPT : 0;
}

/* sealed_lookup: samples re-sent into sealed partitions (a re-run import,
 * a retrying sender far behind) are looked up in their blocks. Decoding a
 * block of 128 series for each sample made a re-run ~100x slower than the
 * import, so the decoded (group, partition)s are kept: a day file touches
 * each group's partition for 128 drives in a row. Valid while db->gen is
 * unchanged (flushes, deletes and vacuums bump it; a flush's samples are
 * found in s->frozen until it completes; merges keep the samples). */
#define SEAL_CACHE_N 128
struct seal_cache {
    int valid;
    uint32_t g;
    int64_t part;
    uint64_t gen, used;
    size_t n, cap;
    struct seal_ent {
        uint32_t slot; /* sid % TSDB_GROUP_SIDS */
        uint32_t seq;  /* block order: the first block's sample wins */
        int64_t t;
        uint64_t bits;
    } *e;
};

static int cmp_seal_ent(const void *a, const void *b)
{
    const struct seal_ent *x = a, *y = b;
    if (x->slot != y->slot) return x->slot < y->slot ? -1 : 1;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static void seal_cache_free(tsdb_t *db)
{
    if (!db->scache) return;
    for (int i = 0; i < SEAL_CACHE_N; i++) free(db->scache[i].e);
    free(db->scache);
    db->scache = NULL;
}

/* Decode every block of (g, part) into c. */
static int seal_cache_fill(tsdb_t *db, struct seal_cache *c, uint32_t g, int64_t part)
{
    c->valid = 0;
    c->n = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc) return db_lmdb_err(rc, "read txn");
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, db->blocks, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return db_lmdb_err(rc, "cursor");
    }
    uint8_t k[16];
    db_block_key(k, g, part, 0);
    MDB_val key = {16, k}, val;
    block_reader_t br = {0};
    tbuf_t fb = {0};
    tsdb_sample_t *tmp = NULL;
    size_t tmp_cap = 0;
    int op = MDB_SET_RANGE, r;
    rc = 0;
    while (!rc && (r = mdb_cursor_get(cur, &key, &val, op)) == 0) {
        op = MDB_NEXT;
        uint32_t kg, seq;
        int64_t kp;
        if (key.mv_size != 16) break;
        db_block_key_parse(key.mv_data, &kg, &kp, &seq);
        if (kg != g || kp != part) break;
        const uint8_t *bp;
        size_t bl;
        if (db_block_read(db, txn, &val, &fb, &bp, &bl)) continue;
        if (block_open(&br, bp, bl)) continue; /* corrupt: reported by readers */
        for (uint32_t i = 0; i < br.nseries && !rc; i++) {
            size_t got;
            int drc = block_decode_grow(&br, i, &tmp, &tmp_cap, &got);
            if (drc == TSDB_ENOMEM) rc = drc;
            if (drc) continue;
            if (c->n + got > c->cap) {
                size_t nc = c->cap ? c->cap * 2 : 4096;
                while (nc < c->n + got) nc *= 2;
                struct seal_ent *ne = realloc(c->e, nc * sizeof *ne);
                if (!ne) {
                    rc = TSDB_ENOMEM;
                    break;
                }
                c->e = ne;
                c->cap = nc;
            }
            for (size_t j = 0; j < got; j++) {
                struct seal_ent *x = &c->e[c->n++];
                x->slot = br.sids[i] % TSDB_GROUP_SIDS;
                x->seq = seq;
                x->t = tmp[j].t;
                x->bits = f64_bits(tmp[j].v);
            }
        }
    }
    free(tmp);
    tbuf_free(&fb);
    block_reader_free(&br);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc) return rc;
    /* one block (the usual case once merged) comes out in order already */
    size_t i = 1;
    while (i < c->n && cmp_seal_ent(&c->e[i - 1], &c->e[i]) <= 0) i++;
    if (i < c->n) qsort(c->e, c->n, sizeof *c->e, cmp_seal_ent);
    c->g = g;
    c->part = part;
    c->gen = db->gen;
    c->valid = 1;
    return 0;
}

/* Look t up in sealed blocks. 1 found (*bits set), 0 not found, <0 error.
 * Caller holds mu. */
static int sealed_lookup(tsdb_t *db, series_t *s, int64_t t, uint64_t *bits)
{
    if (!db->scache) {
        db->scache = calloc(SEAL_CACHE_N, sizeof *db->scache);
        if (!db->scache) return TSDB_ENOMEM;
    }
    uint32_t g = s->sid / TSDB_GROUP_SIDS;
    int64_t part = db_part_of(t, db_group_pm_locked(db, g));
    struct seal_cache *c = NULL, *lru = &db->scache[0];
    for (int i = 0; i < SEAL_CACHE_N; i++) {
        struct seal_cache *x = &db->scache[i];
        if (x->valid && x->gen == db->gen && x->g == g && x->part == part) {
            c = x;
            break;
        }
        if (!x->valid || x->gen != db->gen) x->used = 0; /* stale: first to go */
        if (x->used < lru->used) lru = x;
    }
    if (!c) {
        /* at most ~64 MB of decoded samples (a server's 2 h partitions of
         * 15 s scrapes are ~1.5 MB a group): drop the oldest arrays */
        for (;;) {
            size_t bytes = 0;
            struct seal_cache *old = NULL;
            for (int i = 0; i < SEAL_CACHE_N; i++) {
                struct seal_cache *x = &db->scache[i];
                bytes += x->cap * sizeof *x->e;
                if (x->e && x != lru && (!old || x->used < old->used)) old = x;
            }
            if (bytes <= ((size_t)64 << 20) || !old) break;
            free(old->e);
            old->e = NULL;
            old->n = old->cap = 0;
            old->valid = 0;
        }
        int rc = seal_cache_fill(db, lru, g, part);
        if (rc) return rc;
        c = lru;
    }
    c->used = ++db->scache_clock;
    struct seal_ent key = {s->sid % TSDB_GROUP_SIDS, 0, t, 0};
    size_t lo = 0, hi = c->n;
    while (lo < hi) { /* first entry >= (slot, t, seq 0) */
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_seal_ent(&c->e[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < c->n && c->e[lo].slot == key.slot && c->e[lo].t == t) {
        *bits = c->e[lo].bits;
        return 1;
    }
    return 0;
}

/* Classify one sample for series s. Caller holds mu. */
static int classify(tsdb_t *db, series_t *s, int64_t t, double v)
{
    uint64_t vb = f64_bits(v);
    if (s->maxt == INT64_MIN || t > s->maxt) return TSDB_OUT_STORED;
    uint64_t hb;
    long i = head_find(s, t, &hb);
    if (i >= 0) return hb == vb ? TSDB_OUT_DUPLICATE : TSDB_OUT_CONFLICT;
    i = frozen_find(s, t, &hb);
    if (i >= 0) return hb == vb ? TSDB_OUT_DUPLICATE : TSDB_OUT_CONFLICT;
    if (s->sealed_maxt != INT64_MIN && t >= s->sealed_mint && t <= s->sealed_maxt) {
        uint64_t bits = 0;
        int r = sealed_lookup(db, s, t, &bits);
        if (r > 0) return bits == vb ? TSDB_OUT_DUPLICATE : TSDB_OUT_CONFLICT;
    }
    if (t < s->maxt - db->opt.ooo_window_ms) return TSDB_OUT_TOO_OLD;
    return TSDB_OUT_STORED;
}

/* ---- WAL group commit --------------------------------------------------------- */

/* Become the leader: write (and in SYNC_ALWAYS mode fsync) everything pending.
 * Caller holds mu and !db->syncing; returns with mu held. */
static void wal_lead(tsdb_t *db, int force_sync)
{
    db->syncing = 1;
    tbuf_t t = db->wal_pending;
    db->wal_pending = db->wal_spare;
    db->wal_spare = t;
    uint64_t upto = db->lsn_assigned;
    int do_sync = force_sync || db->opt.sync_mode == TSDB_SYNC_ALWAYS;
    pthread_mutex_unlock(&db->mu);
    int rc = 0;
    if (db->wal_spare.len) rc = wal_write(&db->wal, db->wal_spare.p, db->wal_spare.len);
    uint64_t dt = 0;
    if (!rc && do_sync) {
        uint64_t t0 = mono_ns();
        rc = wal_sync(&db->wal);
        dt = mono_ns() - t0;
    }
    pthread_mutex_lock(&db->mu);
    db->wal_spare.len = 0;
    db->syncing = 0;
    if (do_sync) {
        db->fsyncs++;
        db->fsync_ns += dt;
    }
    if (rc) {
        if (!db->failed) {
            db->failed = rc;
            snprintf(db->failed_detail, sizeof db->failed_detail, "%s", tsdb_last_error_detail());
        }
    } else if (upto > db->lsn_durable) {
        db->lsn_durable = upto;
    }
    pthread_cond_broadcast(&db->cv);
}

/* Write and fsync everything pending (waits for a running leader). */
static int wal_drain_locked(tsdb_t *db)
{
    if (db->wal.fd < 0) return db->failed;
    /* Others may queue records while the leader writes: loop until nothing
     * is pending and nobody is writing (we hold mu when the loop ends). */
    int first = 1;
    while (!db->failed && (db->syncing || db->wal_pending.len || first)) {
        if (db->syncing) {
            pthread_cond_wait(&db->cv, &db->mu);
            continue;
        }
        wal_lead(db, 1);
        first = 0;
    }
    return db->failed;
}

/* Make sure the current segment can take `need` more bytes. */
static int wal_ensure_locked(tsdb_t *db, uint64_t need)
{
    if (db->wal.fd >= 0 && db->wal.seg_used + need <= db->wal.seg_size) return 0;
    if (db->wal.fd >= 0) {
        int rc = wal_drain_locked(db);
        if (rc) return rc;
    }
    return wal_rotate(&db->wal, need);
}

/* ---- append ------------------------------------------------------------------- */

typedef struct {
    tsdb_label_t *labels; /* canonical labels of all series, concatenated */
    size_t labels_cap;
    uint64_t (*hash)[2];
    int *status;
    series_t **sp;        /* series found in the prefetch pass (NULL: new) */
    size_t series_cap;
    tbuf_t ser;
} append_scratch_t;

/* Per-thread scratch for tsdb_append, freed when the thread exits. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    append_scratch_t *sc = p;
    free(sc->labels);
    free(sc->hash);
    free(sc->status);
    free(sc->sp);
    tbuf_free(&sc->ser);
    free(sc);
}

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

static append_scratch_t *scratch_get(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    append_scratch_t *sc = pthread_getspecific(scratch_key);
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (sc && pthread_setspecific(scratch_key, sc)) {
            free(sc);
            sc = NULL;
        }
    }
    return sc;
}

/* Free the calling thread's append scratch now (the main thread never
 * "exits" for the key destructor). */
void tsdb_thread_cleanup(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    append_scratch_t *sc = pthread_getspecific(scratch_key);
    if (sc) {
        pthread_setspecific(scratch_key, NULL);
        scratch_free(sc);
    }
}

static int scratch_reserve(append_scratch_t *sc, size_t nseries, size_t nlabels)
{
    if (nlabels > sc->labels_cap) {
        tsdb_label_t *nl = realloc(sc->labels, nlabels * sizeof *nl);
        if (!nl) return TSDB_ENOMEM;
        sc->labels = nl;
        sc->labels_cap = nlabels;
    }
    if (nseries > sc->series_cap) {
        void *nh = realloc(sc->hash, nseries * sizeof *sc->hash);
        if (!nh) return TSDB_ENOMEM;
        sc->hash = nh;
        int *ns = realloc(sc->status, nseries * sizeof *ns);
        if (!ns) return TSDB_ENOMEM;
        sc->status = ns;
        series_t **nsp = realloc(sc->sp, nseries * sizeof *nsp);
        if (!nsp) return TSDB_ENOMEM;
        sc->sp = nsp;
        sc->series_cap = nseries;
    }
    return 0;
}

static int rec_put_series(tbuf_t *rec, const series_t *s)
{
    if (tbuf_reserve(rec, 21 + s->labels_len)) return TSDB_ENOMEM;
    rec->p[rec->len++] = REC_SERIES;
    rec->len += varint_put_raw(rec->p + rec->len, s->sid);
    rec->len += varint_put_raw(rec->p + rec->len, s->labels_len);
    memcpy(rec->p + rec->len, s->labels, s->labels_len);
    rec->len += s->labels_len;
    return 0;
}

/* WAL bytes of a series record. */
static uint64_t series_rec_bytes(const series_t *s)
{
    return 21 + (uint64_t)s->labels_len;
}

/* A fresh (not persisted) series' labels must be in the WAL before samples
 * that use it: log them into rec unless this WAL generation has them. */
static int series_log_locked(tsdb_t *db, series_t *s, tbuf_t *rec)
{
    if (s->persisted || !s->labels || s->logged_gen == db->wal_gen) return 0;
    int rc = rec_put_series(rec, s);
    if (rc) return rc;
    s->logged_gen = db->wal_gen;
    uint64_t b = series_rec_bytes(s);
    db->unlogged_bytes = db->unlogged_bytes > b ? db->unlogged_bytes - b : 0;
    return 0;
}

/* Create the series with canonical labels cl (fingerprint h) and log it into
 * rec (the WAL record being built); rec NULL: not logged yet (see
 * series_log_locked). Caller holds mu. */
static int series_create_locked(tsdb_t *db, const tsdb_label_t *cl, uint32_t nl,
                                const uint64_t h[2], tbuf_t *ser, tbuf_t *rec, series_t **out)
{
    ser->len = 0;
    if (labels_serialize(cl, nl, ser)) return TSDB_ENOMEM;
    uint32_t nsid;
    series_t *s;
    int rc = sid_alloc(db, labels_name(cl, nl), &nsid);
    if (!rc) rc = series_add(db, nsid, h, &s);
    if (!rc) rc = fresh_push(db, s);
    if (rc) return rc;
    s->labels = malloc(ser->len);
    if (!s->labels) return TSDB_ENOMEM;
    memcpy(s->labels, ser->p, ser->len);
    s->labels_len = (uint32_t)ser->len;
    db->mem_labels_bytes += ser->len;
    db->mem_labels_n++;
    if (rec) {
        if ((rc = rec_put_series(rec, s))) return rc;
        s->logged_gen = db->wal_gen;
    } else {
        db->unlogged_bytes += series_rec_bytes(s);
    }
    *out = s;
    return 0;
}

/* Checks every write does first, with mu held: a failed or closing store,
 * and back-pressure while the head is over twice its limit. */
static int append_admit_locked(tsdb_t *db)
{
    int rc = 0;
    if (db->failed) {
        rc = db->failed;
        tsdb_set_detail("store refuses writes after an earlier failure: %s", db->failed_detail);
    } else if (db->closing) rc = TSDB_ECLOSED;
    while (!rc && (head_new(db) >= 2 * head_limit(db) ||
                   (head_new(db) && db->opt.memory_max_bytes &&
                    db->mem_head_bytes >= head_budget(db) / 3 * 2))) {
        if (db->last_flush_err) {
            rc = db->last_flush_err;
            break;
        }
        db->bg_wake = 1;
        pthread_cond_broadcast(&db->cv);
        if (!db->bg_running) break; /* no background thread: grow past the soft limit */
        pthread_cond_wait(&db->cv, &db->mu);
        if (db->failed) rc = db->failed;
        else if (db->closing) rc = TSDB_ECLOSED;
    }
    return rc;
}

/* Finish an append whose record is rec_start.. in wal_pending (rc: the
 * building's outcome): frame it, then wait until it is durable as the sync
 * mode promises. Called with mu held; returns with mu released. */
static int append_commit_unlock(tsdb_t *db, size_t rec_start, int rc)
{
    tbuf_t *rec = &db->wal_pending;
    if (db->opt.sync_mode == TSDB_SYNC_NONE) {
        /* no WAL: the record is not kept; nothing to wait for */
        rec->len = rec_start;
        if (rc && !db->failed) db->failed = rc;
        if (!rc && !db->bg_wake && head_full(db)) {
            db->bg_wake = 1;
            pthread_cond_broadcast(&db->cv);
        }
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    if (!rc && rec->len > rec_start + 8) {
        wal_frame_finish(rec, rec_start);
        db->wal.seg_used += rec->len - rec_start;
    } else {
        rec->len = rec_start; /* nothing stored: no record */
    }
    if (rc) {
        /* Only allocation failures get here, after part of the batch went to
         * the head without a WAL record: refuse further writes rather than
         * acknowledge anything not logged. */
        if (!db->failed) db->failed = rc;
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    uint64_t my = ++db->lsn_assigned;
    while (db->lsn_durable < my && !db->failed) {
        if (!db->syncing) wal_lead(db, 0);
        else pthread_cond_wait(&db->cv, &db->mu);
    }
    rc = db->lsn_durable >= my ? 0 : db->failed;
    if (rc) tsdb_set_detail("%s", db->failed_detail);
    if (!rc && !db->bg_wake && head_full(db)) {
        db->bg_wake = 1;
        pthread_cond_broadcast(&db->cv);
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

int tsdb_series_id(tsdb_t *db, const tsdb_label_t *labels, uint32_t nlabels, tsdb_sid_t *sid,
                   int *created)
{
    if (created) *created = 0;
    if (!db || !sid || (nlabels && !labels)) return TSDB_EINVAL;
    if (db->opt.read_only) return TSDB_EINVAL;
    append_scratch_t *sc = scratch_get();
    if (!sc) return TSDB_ENOMEM;
    if (scratch_reserve(sc, 1, nlabels)) return TSDB_ENOMEM;
    int rc = labels_canonical(labels, nlabels, sc->labels);
    if (rc) return rc;
    uint64_t h[2];
    labels_hash(sc->labels, nlabels, h);
    pthread_mutex_lock(&db->mu);
    series_t *s = table_slot(db, h)->s;
    if (s) {
        *sid = s->sid;
        pthread_mutex_unlock(&db->mu);
        return 0;
    }
    rc = db->failed ? db->failed : db->closing ? TSDB_ECLOSED : 0;
    /* Not logged now: its first sample logs it (series_log_locked), and an
     * id that no sample uses is lost in a crash with nothing else. */
    if (!rc) rc = series_create_locked(db, sc->labels, nlabels, h, &sc->ser, NULL, &s);
    if (!rc) {
        *sid = s->sid;
        if (created) *created = 1;
    } else if (!db->failed && rc != TSDB_ECLOSED) {
        db->failed = rc; /* as tsdb_append: a half-made series refuses further writes */
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* WAL bytes of the labels that appending in[0..n) may log: those of its
 * series not logged in this WAL generation. (Reserving room for every
 * unlogged series instead made each append of an import that keeps a million
 * fresh series in the head start a new ~80 MB segment.) Caller holds mu. */
static uint64_t batch_unlogged_bytes(const tsdb_t *db, const tsdb_sid_sample_t *in, size_t n)
{
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && in[i].sid == in[i - 1].sid) continue;
        const series_t *s = in[i].sid < TSDB_MAX_SID ? db_sid_get(db, in[i].sid) : NULL;
        if (s && !s->persisted && s->labels && s->logged_gen != db->wal_gen)
            b += series_rec_bytes(s);
    }
    return b;
}

int tsdb_append_sids(tsdb_t *db, const tsdb_sid_sample_t *in, size_t n, uint8_t *outcomes,
                     tsdb_append_result_t *res)
{
    tsdb_append_result_t r = {0};
    if (!db || (n && !in)) return TSDB_EINVAL;
    if (db->opt.read_only) return TSDB_EINVAL;
    pthread_mutex_lock(&db->mu);
    int rc = append_admit_locked(db);
    const int log = db->opt.sync_mode != TSDB_SYNC_NONE; /* else no WAL record */
    /* per sample at most: kind, dsid (5), count (5), dt (10), value (9);
     * plus the labels of this batch's series not logged yet */
    if (!rc && log)
        rc = wal_ensure_locked(db, 64 + (uint64_t)n * 30 +
                                       (db->unlogged_bytes ? batch_unlogged_bytes(db, in, n) : 0));
    tbuf_t *rec = &db->wal_pending;
    size_t rec_start = rec->len;
    if (!rc && tbuf_reserve(rec, 8)) rc = TSDB_ENOMEM;
    if (rc) {
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    rec->len += 8;
    int changed = 0; /* a sample at or before the watched time was stored */
    const int64_t watch_t = db->watch_t;
    uint32_t prev_sid = 0; /* the record's previous 0x03 entry */
    int64_t prev = 0;      /* and its last timestamp */
    for (size_t i = 0; i < n && i < 32; i++) {
        series_t *s = db_sid_get(db, in[i].sid);
        if (s) __builtin_prefetch(s, 1);
    }
    for (size_t i = 0; i < n;) {
        /* a run of samples of one series: one WAL entry */
        size_t j = i + 1;
        while (j < n && in[j].sid == in[i].sid) j++;
        /* memory latency bound with a million series: fetch the page slot
         * 48 ahead, the series 32 ahead (its slot is in by then), and the
         * head slot of the one 16 ahead (its series is in) */
        if (j + 47 < n) {
            uint64_t g = in[j + 47].sid / TSDB_GROUP_SIDS;
            if (g < db->npages && db->pages[g])
                __builtin_prefetch(&db->pages[g][in[j + 47].sid % TSDB_GROUP_SIDS], 0);
        }
        if (j + 31 < n) {
            series_t *ps = db_sid_get(db, in[j + 31].sid);
            if (ps) __builtin_prefetch(ps, 1);
        }
        if (j + 15 < n) {
            series_t *ps = db_sid_get(db, in[j + 15].sid);
            if (ps && ps->head) __builtin_prefetch(head_tail(ps), 1); /* its header is not read */
        }
        series_t *s = in[i].sid < TSDB_MAX_SID ? db_sid_get(db, in[i].sid) : NULL;
        if (!s || s->deleted) {
            for (size_t k = i; k < j; k++)
                if (outcomes) outcomes[k] = TSDB_OUT_INVALID;
            r.invalid += j - i;
            i = j;
            continue;
        }
        if (!log) {
            for (size_t k = i; k < j; k++) {
                int oc = classify(db, s, in[k].t, in[k].v);
                if (oc == TSDB_OUT_STORED) {
                    if ((rc = head_push(db, s, in[k].t, in[k].v))) break;
                    r.stored++;
                    if (in[k].t <= watch_t) changed = 1;
                } else if (oc == TSDB_OUT_DUPLICATE) r.duplicate++;
                else if (oc == TSDB_OUT_CONFLICT) r.conflict++;
                else r.too_old++;
                if (outcomes) outcomes[k] = (uint8_t)oc;
            }
            if (rc) break;
            i = j;
            continue;
        }
        if ((rc = series_log_locked(db, s, rec))) break;
        if ((rc = tbuf_reserve(rec, 11 + (j - i) * 19) ? TSDB_ENOMEM : 0)) break;
        size_t hdr = rec->len;
        rec->p[rec->len++] = REC_SAMPLES_D;
        rec->len += varint_put_raw(rec->p + rec->len,
                                   zigzag_enc((int64_t)s->sid - (int64_t)prev_sid));
        /* the count is patched in below: one byte for a short run (a row
         * of a daily file is one sample per series), else five */
        size_t cnt_at = rec->len;
        int cnt_w = j - i < 128 ? 1 : 5;
        rec->len += (size_t)cnt_w;
        uint32_t stored = 0;
        for (size_t k = i; k < j; k++) {
            int64_t t = in[k].t;
            double v = in[k].v;
            int oc = classify(db, s, t, v);
            if (oc == TSDB_OUT_STORED) {
                if ((rc = head_push(db, s, t, v))) break;
                rec->len += varint_put_raw(rec->p + rec->len,
                                           zigzag_enc((int64_t)((uint64_t)t - (uint64_t)prev)));
                rec->len += wal_val_put(rec->p + rec->len, v);
                prev = t;
                stored++;
                r.stored++;
                if (t <= watch_t) changed = 1;
            } else if (oc == TSDB_OUT_DUPLICATE) r.duplicate++;
            else if (oc == TSDB_OUT_CONFLICT) r.conflict++;
            else r.too_old++;
            if (outcomes) outcomes[k] = (uint8_t)oc;
        }
        if (rc) break;
        if (stored == 0) {
            rec->len = hdr; /* nothing stored: prev unchanged */
        } else {
            prev_sid = s->sid;
            uint8_t *cp = rec->p + cnt_at;
            uint32_t c = stored;
            for (int b = 0; b < cnt_w - 1; b++) {
                cp[b] = (uint8_t)(c | 0x80);
                c >>= 7;
            }
            cp[cnt_w - 1] = (uint8_t)c;
        }
        i = j;
    }
    if (changed) atomic_fetch_add(&db->change_gen, 1); /* under mu, with the samples in the head */
    rc = append_commit_unlock(db, rec_start, rc);
    if (!rc && res) *res = r;
    return rc;
}

int tsdb_append(tsdb_t *db, const tsdb_series_in_t *series, size_t nseries, uint8_t *outcomes,
                tsdb_append_result_t *res)
{
    tsdb_append_result_t r = {0};
    if (!db || (nseries && !series)) return TSDB_EINVAL;
    if (db->opt.read_only) return TSDB_EINVAL;
    append_scratch_t *sc = scratch_get();
    if (!sc) return TSDB_ENOMEM;
    size_t nl = 0, ns_total = 0;
    uint64_t bound = 64;
    for (size_t i = 0; i < nseries; i++) {
        nl += series[i].nlabels;
        ns_total += series[i].nsamples;
        bound += 32 + (uint64_t)series[i].nsamples * 19;
        for (uint32_t j = 0; j < series[i].nlabels; j++)
            bound += 20 + (uint64_t)series[i].labels[j].name.len + series[i].labels[j].value.len;
    }
    if (scratch_reserve(sc, nseries, nl)) return TSDB_ENOMEM;

    /* Canonicalize and fingerprint outside the lock. */
    size_t off = 0;
    for (size_t i = 0; i < nseries; i++) {
        sc->status[i] = labels_canonical(series[i].labels, series[i].nlabels, sc->labels + off);
        if (!sc->status[i]) labels_hash(sc->labels + off, series[i].nlabels, sc->hash[i]);
        off += series[i].nlabels;
    }

    pthread_mutex_lock(&db->mu);
    int rc = append_admit_locked(db);
    if (!rc && db->opt.sync_mode != TSDB_SYNC_NONE) rc = wal_ensure_locked(db, bound);
    if (rc) {
        pthread_mutex_unlock(&db->mu);
        return rc;
    }

    /* Look the series up first and prefetch what the main pass touches:
     * with thousands of series per batch the series structs and their head
     * arrays are cache misses, and this lets them overlap. */
    for (size_t i = 0; i < nseries; i++) {
        series_t *s = sc->status[i] ? NULL : table_slot(db, sc->hash[i])->s;
        sc->sp[i] = s;
        if (s) __builtin_prefetch(s, 1);
    }
    for (size_t i = 0; i < nseries; i++)
        if (sc->sp[i] && sc->sp[i]->head) __builtin_prefetch(head_tail(sc->sp[i]), 1);

    /* The WAL record is built in place in the pending buffer. */
    tbuf_t *rec = &db->wal_pending;
    size_t rec_start = rec->len;
    if (tbuf_reserve(rec, 8)) {
        pthread_mutex_unlock(&db->mu);
        return TSDB_ENOMEM;
    }
    rec->len += 8;
    size_t oi = 0;
    int changed = 0; /* a sample at or before the watched time was stored */
    off = 0;
    for (size_t i = 0; i < nseries && !rc; i++) {
        const tsdb_series_in_t *in = &series[i];
        const tsdb_label_t *cl = sc->labels + off;
        off += in->nlabels;
        if (sc->status[i]) {
            for (uint32_t j = 0; j < in->nsamples; j++) {
                if (outcomes) outcomes[oi] = TSDB_OUT_INVALID;
                oi++;
            }
            r.invalid += in->nsamples;
            continue;
        }
        series_t *s = sc->sp[i] ? sc->sp[i] : table_slot(db, sc->hash[i])->s;
        if (!s) {
            if (in->nsamples == 0) continue;
            if ((rc = series_create_locked(db, cl, in->nlabels, sc->hash[i], &sc->ser, rec, &s)))
                break;
            r.series_created++;
        } else if ((rc = series_log_locked(db, s, rec))) {
            break;
        }
        size_t hdr = rec->len;
        if (tbuf_reserve(rec, 21 + (size_t)in->nsamples * 18)) {
            rc = TSDB_ENOMEM;
            break;
        }
        rec->p[rec->len++] = REC_SAMPLES;
        rec->len += varint_put_raw(rec->p + rec->len, s->sid);
        size_t cnt_at = rec->len;
        rec->len += 5; /* count, patched below as a fixed 5-byte varint */
        uint32_t stored = 0;
        int64_t prev = 0;
        const int64_t watch_t = db->watch_t;
        for (uint32_t j = 0; j < in->nsamples; j++, oi++) {
            int64_t t = in->samples[j].t;
            double v = in->samples[j].v;
            int oc = classify(db, s, t, v);
            if (oc == TSDB_OUT_STORED) {
                if ((rc = head_push(db, s, t, v))) break;
                if (t <= watch_t) changed = 1;
                rec->len += varint_put_raw(rec->p + rec->len, zigzag_enc((int64_t)((uint64_t)t - (uint64_t)prev)));
                le64_put(rec->p + rec->len, f64_bits(v));
                rec->len += 8;
                prev = t;
                stored++;
                r.stored++;
            } else if (oc == TSDB_OUT_DUPLICATE) r.duplicate++;
            else if (oc == TSDB_OUT_CONFLICT) r.conflict++;
            else r.too_old++;
            if (outcomes) outcomes[oi] = (uint8_t)oc;
        }
        if (stored == 0) {
            rec->len = hdr;
        } else {
            uint8_t *cp = rec->p + cnt_at;
            uint32_t c = stored;
            for (int k = 0; k < 4; k++) {
                cp[k] = (uint8_t)(c | 0x80);
                c >>= 7;
            }
            cp[4] = (uint8_t)c;
        }
    }
    if (changed) atomic_fetch_add(&db->change_gen, 1); /* under mu, with the samples in the head */
    rc = append_commit_unlock(db, rec_start, rc);
    (void)ns_total;
    if (!rc && res) *res = r;
    return rc;
}

/* ---- WAL replay ---------------------------------------------------------------- */

/* Replay decodes the samples of a run of records into a buffer first, then
 * adds them to the head: decoding streams through the segment, and adding
 * touches a series struct and its head array per sample, which with many
 * series are cache misses; knowing the next samples lets those overlap
 * (prefetch), as tsdb_append_sids does.
 *
 * Duplicates: a logged sample may already be sealed (a flush that was cut
 * short committed some of its blocks, or segments kept behind the
 * checkpoint by tsdb_seal_closed_only). It was looked up in LMDB per sample
 * before (a block decompressed per sample: 88 CPU-s for 16 M samples); now a
 * sample inside the series' sealed time range goes to the head like any
 * other, the series is marked, and after the last segment replay_dedup_sealed
 * removes from the marked heads what the sealed blocks hold, decompressing
 * each block once. The outcome is that of the per-sample lookup: a sample is
 * dropped iff the head or a sealed block already has its timestamp. */

#define REPLAY_ENT 4096
#define REPLAY_SMP 65536

typedef struct {
    series_t *s;
    uint32_t off, n; /* samples rs->smp[off .. off + n) */
} replay_ent_t;

typedef struct {
    tsdb_t *db;
    replay_ent_t *ent;
    size_t nent;
    tsdb_sample_t *smp;
    size_t nsmp, smp_cap;
    uint64_t *chk; /* series ids to check against sealed blocks (bitmap) */
    size_t chk_words;
    uint64_t replayed, skipped_sealed, nseg;
    uint64_t t_start_ns, last_report_ns;
    uint32_t max_block_seq; /* highest block seq met by replay_dedup_sealed */
    uint64_t uncounted;     /* samples dropped as sealed in blocks of a flush that died
                               before its last transaction (which counts them) */
} replay_t;

static uint32_t first_at_or_after(const tsdb_sample_t *v, uint32_t n, int64_t t);

/* Add the buffered samples to the head. Caller holds mu. */
static int replay_apply(replay_t *rs)
{
    tsdb_t *db = rs->db;
    replay_ent_t *e = rs->ent;
    size_t ne = rs->nent;
    for (size_t i = 0; i < ne && i < 16; i++) __builtin_prefetch(e[i].s, 1);
    for (size_t i = 0; i < ne; i++) {
        if (i + 16 < ne) __builtin_prefetch(e[i + 16].s, 1);
        if (i + 8 < ne && e[i + 8].s->head) __builtin_prefetch(head_tail(e[i + 8].s), 1);
        series_t *s = e[i].s;
        const tsdb_sample_t *v = rs->smp + e[i].off;
        for (uint32_t k = 0; k < e[i].n; k++) {
            int64_t t = v[k].t;
            if (s->maxt != INT64_MIN && t <= s->maxt) {
                /* in the head already: a duplicate (or a conflict, which
                 * was refused when it was logged after it) */
                uint64_t hb;
                if (head_find(s, t, &hb) >= 0) continue;
                if (s->sealed_maxt != INT64_MIN && t >= s->sealed_mint && t <= s->sealed_maxt &&
                    s->sid < rs->chk_words * 64)
                    rs->chk[s->sid / 64] |= UINT64_C(1) << (s->sid % 64);
            }
            int rc = head_push(db, s, t, v[k].v);
            if (rc) return rc;
            rs->replayed++;
        }
    }
    rs->nent = 0;
    rs->nsmp = 0;
    return 0;
}

static int replay_record(void *ctx, const uint8_t *p, size_t len)
{
    replay_t *rs = ctx;
    tsdb_t *db = rs->db;
    const uint8_t *end = p + len;
    uint64_t prev_sid = 0; /* 0x03 entries: the previous one's sid, last time */
    int64_t prev_t = 0;
    while (p < end) {
        uint8_t kind = *p++;
        uint64_t sid, n;
        if (varint_get(&p, end, &sid) || varint_get(&p, end, &n)) return TSDB_ECORRUPT;
        if (kind == REC_SAMPLES_D) sid = prev_sid + (uint64_t)zigzag_dec(sid);
        if (sid == 0 || sid >= TSDB_MAX_SID) return TSDB_ECORRUPT;
        if (kind == REC_SERIES) {
            if (n > (uint64_t)(end - p)) return TSDB_ECORRUPT;
            idx_labels_t l = {0};
            int rc = labels_parse(p, n, &l);
            if (!rc && !db_sid_get(db, sid)) {
                uint64_t h[2];
                labels_hash(l.v, l.n, h);
                if (!table_slot(db, h)->s) {
                    series_t *s;
                    rc = series_add(db, (uint32_t)sid, h, &s);
                    if (!rc) rc = ng_note(db, labels_name(l.v, l.n), (uint32_t)sid);
                    if (!rc) rc = fresh_push(db, s);
                    if (!rc) {
                        s->labels = malloc(n);
                        if (!s->labels) rc = TSDB_ENOMEM;
                        else {
                            memcpy(s->labels, p, n);
                            s->labels_len = (uint32_t)n;
                            db->mem_labels_bytes += n;
                            db->mem_labels_n++;
                        }
                    }
                }
            }
            free(l.v);
            if (rc) return rc;
            p += n;
        } else if (kind == REC_SAMPLES || kind == REC_SAMPLES_D) {
            /* a sample takes at least 9 bytes (REC_SAMPLES: dt, 8-byte value)
             * or 2 (REC_SAMPLES_D: dt, varint value) */
            if (n > (uint64_t)(end - p) / (kind == REC_SAMPLES ? 9 : 2)) return TSDB_ECORRUPT;
            series_t *s = db_sid_get(db, sid);
            if (rs->nent == REPLAY_ENT || rs->nsmp + n > rs->smp_cap) {
                int rc = replay_apply(rs);
                if (rc) return rc;
                if (n > rs->smp_cap) {
                    tsdb_sample_t *nv = realloc(rs->smp, n * sizeof *nv);
                    if (!nv) return TSDB_ENOMEM;
                    rs->smp = nv;
                    rs->smp_cap = n;
                }
            }
            /* sealed by a tsdb_seal_closed_only flush that kept this
             * segment for later samples */
            int64_t skip_before = db->wal.replay_seq <= db->hold_seq ? db->hold_t : INT64_MIN;
            tsdb_sample_t *out = rs->smp + rs->nsmp;
            uint32_t m = 0;
            int64_t prev = kind == REC_SAMPLES ? 0 : prev_t;
            for (uint64_t i = 0; i < n; i++) {
                uint64_t zz;
                double v;
                if (varint_get(&p, end, &zz)) return TSDB_ECORRUPT;
                int64_t t = (int64_t)((uint64_t)prev + (uint64_t)zigzag_dec(zz));
                if (kind == REC_SAMPLES) {
                    if (end - p < 8) return TSDB_ECORRUPT;
                    v = f64_from_bits(le64_get(p));
                    p += 8;
                } else if (wal_val_get(&p, end, &v)) {
                    return TSDB_ECORRUPT;
                }
                prev = t;
                if (t < skip_before) {
                    rs->skipped_sealed++;
                    continue;
                }
                out[m].t = t;
                out[m].v = v;
                m++;
            }
            if (kind == REC_SAMPLES_D) {
                prev_sid = sid;
                prev_t = prev;
            }
            if (!s || m == 0) continue; /* series deleted after this record */
            rs->ent[rs->nent].s = s;
            rs->ent[rs->nent].off = (uint32_t)rs->nsmp;
            rs->ent[rs->nent].n = m;
            rs->nent++;
            rs->nsmp += m;
        } else {
            return TSDB_ECORRUPT;
        }
    }
    return 0;
}

static void replay_report(replay_t *rs, size_t done, size_t total, int fin, uint64_t dropped,
                          uint64_t damaged)
{
    const tsdb_options_t *o = &rs->db->opt;
    uint64_t now = mono_ns();
    if (!fin && done && done < total && o->replay_progress_ms > 0 &&
        now - rs->last_report_ns < (uint64_t)o->replay_progress_ms * 1000000)
        return;
    rs->last_report_ns = now;
    tsdb_replay_progress_t p = {0};
    p.segments = total;
    p.segments_done = done;
    p.samples = rs->replayed;
    p.skipped = rs->skipped_sealed;
    p.dropped = dropped;
    p.damaged = damaged;
    p.elapsed_s = (double)(now - rs->t_start_ns) / 1e9;
    p.done = fin;
    o->replay_progress(o->replay_progress_ctx, &p);
}

/* wal_replay's segment hook: add what is buffered, report progress. */
static int replay_segment_done(void *ctx, size_t done, size_t total)
{
    replay_t *rs = ctx;
    int rc = replay_apply(rs);
    if (rc) return rc;
    rs->nseg = total;
    /* the last segment is reported by the final call (done = 1) */
    if (rs->db->opt.replay_progress && done < total) replay_report(rs, done, total, 0, 0, 0);
    return 0;
}

/* Remove from the head of each series marked in rs->chk the samples whose
 * timestamps a sealed block of the series holds (see above). Caller holds
 * mu; *dropped receives the count. */
static int replay_dedup_sealed(tsdb_t *db, replay_t *rs, uint64_t *dropped)
{
    *dropped = 0;
    size_t nmark = 0;
    for (size_t w = 0; w < rs->chk_words; w++) nmark += (size_t)__builtin_popcountll(rs->chk[w]);
    if (!nmark) return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc) return db_lmdb_err(rc, "read txn");
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, db->blocks, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return db_lmdb_err(rc, "cursor");
    }
    series_t *grp[TSDB_GROUP_SIDS];
    int64_t *parts = NULL;
    size_t nparts = 0, parts_cap = 0;
    block_reader_t br = {0};
    tbuf_t fb = {0};
    tsdb_sample_t *tmp = NULL;
    size_t tmp_cap = 0;
    size_t w = 0;
    while (w < rs->chk_words && !rc) {
        /* the marked series of one group (a group spans two bitmap words) */
        if (!rs->chk[w]) {
            w++;
            continue;
        }
        uint32_t g = (uint32_t)(w * 64 / TSDB_GROUP_SIDS);
        size_t ng = 0;
        for (; w < rs->chk_words && w * 64 / TSDB_GROUP_SIDS == g; w++)
            for (uint64_t b = rs->chk[w]; b; b &= b - 1) {
                series_t *s = db_sid_get(db, w * 64 + (size_t)__builtin_ctzll(b));
                if (!s || !s->n) continue;
                if ((rc = head_unpack(db, s, 0))) break; /* samples are removed in place */
                if (!s->sorted && s->n > 1) qsort(s->head, s->n, sizeof *s->head, cmp_sample);
                s->sorted = 1;
                grp[ng++] = s;
            }
        if (!ng) continue;
        /* the partitions their candidate samples fall in */
        int64_t pm = db_group_pm_locked(db, g);
        nparts = 0;
        for (size_t i = 0; i < ng && !rc; i++) {
            series_t *s = grp[i];
            uint32_t k = first_at_or_after(s->head, s->n, s->sealed_mint);
            while (k < s->n && s->head[k].t <= s->sealed_maxt) {
                int64_t part = db_part_of(s->head[k].t, pm);
                if (nparts == parts_cap) {
                    size_t nc = parts_cap ? parts_cap * 2 : 16;
                    int64_t *np = realloc(parts, nc * sizeof *np);
                    if (!np) {
                        rc = TSDB_ENOMEM;
                        break;
                    }
                    parts = np;
                    parts_cap = nc;
                }
                parts[nparts++] = part;
                k = first_at_or_after(s->head, s->n, db_part_end(part, pm));
                if (db_part_end(part, pm) == INT64_MAX) break;
            }
        }
        for (size_t i = 1; i < nparts; i++) { /* few: insertion sort */
            int64_t x = parts[i];
            size_t j = i;
            while (j && parts[j - 1] > x) {
                parts[j] = parts[j - 1];
                j--;
            }
            parts[j] = x;
        }
        for (size_t pi = 0; pi < nparts && !rc; pi++) {
            if (pi && parts[pi] == parts[pi - 1]) continue;
            int64_t part = parts[pi], pend = db_part_end(part, pm);
            uint8_t k[16];
            db_block_key(k, g, part, 0);
            MDB_val key = {16, k}, val;
            int op = MDB_SET_RANGE;
            while (mdb_cursor_get(cur, &key, &val, op) == 0) {
                op = MDB_NEXT;
                uint32_t kg, seq;
                int64_t kp;
                if (key.mv_size != 16) break;
                db_block_key_parse(key.mv_data, &kg, &kp, &seq);
                if (kg != g || kp != part) break;
                if (seq > rs->max_block_seq) rs->max_block_seq = seq;
                const uint8_t *bp;
                size_t bl;
                if (db_block_read(db, txn, &val, &fb, &bp, &bl)) continue;
                if (block_open(&br, bp, bl)) continue; /* corrupt: reported by readers */
                for (size_t i = 0; i < ng; i++) {
                    series_t *s = grp[i];
                    long bi = block_find(&br, s->sid);
                    if (bi < 0) continue;
                    size_t nd;
                    int drc = block_decode_grow(&br, (uint32_t)bi, &tmp, &tmp_cap, &nd);
                    if (drc == TSDB_ENOMEM) {
                        rc = drc;
                        break;
                    }
                    if (drc) continue;
                    /* both sorted: drop head samples of [part, pend) found in tmp */
                    uint32_t a = first_at_or_after(s->head, s->n, part);
                    uint32_t b = pend == INT64_MAX ? s->n : first_at_or_after(s->head, s->n, pend);
                    uint32_t o = a;
                    size_t j = 0;
                    for (uint32_t h = a; h < b; h++) {
                        int64_t t = s->head[h].t;
                        while (j < nd && tmp[j].t < t) j++;
                        if (j < nd && tmp[j].t == t) continue;
                        s->head[o++] = s->head[h];
                    }
                    if (o < b) {
                        memmove(s->head + o, s->head + b, (s->n - b) * sizeof *s->head);
                        s->n -= b - o;
                        db->head_samples -= b - o;
                        *dropped += b - o;
                        if (seq > db->next_block_seq) rs->uncounted += b - o;
                    }
                }
            }
        }
    }
    free(parts);
    free(tmp);
    tbuf_free(&fb);
    block_reader_free(&br);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- open / close ------------------------------------------------------------- */

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t *v, int *found)
{
    MDB_val key = {strlen(k), (void *)k}, val;
    int rc = mdb_get(txn, dbi, &key, &val);
    if (rc == MDB_NOTFOUND) {
        *found = 0;
        return 0;
    }
    if (rc) return db_lmdb_err(rc, "read meta");
    if (val.mv_size != 8) {
        tsdb_set_detail("meta key %s has size %zu", k, val.mv_size);
        return TSDB_ECORRUPT;
    }
    *v = le64_get(val.mv_data);
    *found = 1;
    return 0;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t v)
{
    uint8_t b[8];
    le64_put(b, v);
    MDB_val key = {strlen(k), (void *)k}, val = {8, b};
    return db_lmdb_err(mdb_put(txn, dbi, &key, &val, 0), "write meta");
}

int db_txn_begin_write(tsdb_t *db, MDB_txn **txn)
{
    return db_lmdb_err(mdb_txn_begin(db->env, NULL, 0, txn), "begin write txn");
}

typedef struct {
    tsdb_t *db;
    int rc;
} load_ctx_t;

static int load_series(void *ctx, uint32_t sid, const tsdb_label_t *labels, size_t n,
                       int64_t mint, int64_t maxt)
{
    load_ctx_t *lc = ctx;
    uint64_t h[2];
    labels_hash(labels, n, h);
    series_t *s;
    uint32_t g = sid / TSDB_GROUP_SIDS;
    int known = g < lc->db->nginfo && lc->db->ginfo[g].pm;
    int rc = series_add(lc->db, sid, h, &s);
    if (!rc) rc = ng_note(lc->db, labels_name(labels, n), sid);
    if (rc) return rc;
    if (!known) lc->db->ginfo[g].pm = TSDB_PART_MS; /* written before per-group lengths */
    if (maxt > lc->db->ginfo[g].tmax) lc->db->ginfo[g].tmax = maxt;
    s->persisted = 1;
    s->sealed_mint = s->mint = mint;
    s->sealed_maxt = s->maxt = maxt;
    if (maxt > lc->db->max_time) lc->db->max_time = maxt;
    return 0;
}

static void *bg_main(void *arg);

int tsdb_open(const char *dir, const tsdb_options_t *opts, tsdb_t **out)
{
    if (!dir || !out) return TSDB_EINVAL;
    tsdb_clear_detail();
    *out = NULL;
    tsdb_t *db = calloc(1, sizeof *db);
    if (!db) return TSDB_ENOMEM;
    if (opts) db->opt = *opts;
    else tsdb_options_init(&db->opt);
    db->watch_t = INT64_MIN;
    options_fill(&db->opt);
    db->lockfd = -1;
    db->max_time = INT64_MIN;
    db->wal_gen = 1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->flush_mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    db->wal.fd = -1;
    int rc = 0;
    MDB_txn *txn = NULL;
    db->dir = strdup(dir);
    if (!db->dir) {
        rc = TSDB_ENOMEM;
        goto fail;
    }
    if (!db->opt.read_only && mkdir(dir, 0755) && errno != EEXIST) {
        tsdb_set_detail("mkdir %s: %s", dir, strerror(errno));
        rc = TSDB_EIO;
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/augur.lock", dir);
    if (!db->opt.read_only) {
        db->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (db->lockfd < 0) {
            tsdb_set_detail("open %s: %s", path, strerror(errno));
            rc = TSDB_EIO;
            goto fail;
        }
        if (flock(db->lockfd, LOCK_EX | LOCK_NB)) {
            tsdb_set_detail("%s is locked by another process", dir);
            rc = TSDB_ELOCKED;
            goto fail;
        }
    }
    if ((rc = table_grow(db))) goto fail;
    if ((rc = db_lmdb_err(mdb_env_create(&db->env), "mdb_env_create"))) goto fail;
    mdb_env_set_maxdbs(db->env, 16);
    mdb_env_set_maxreaders(db->env, 1024);
    db->map_size = db->opt.map_size_cap;
    if ((rc = db_lmdb_err(mdb_env_set_mapsize(db->env, db->map_size), "set map size"))) goto fail;
    rc = mdb_env_open(db->env, dir, MDB_NOTLS | (db->opt.read_only ? MDB_RDONLY : 0), 0644);
    if (rc) {
        rc = db_lmdb_err(rc, "open LMDB environment");
        goto fail;
    }
    if ((rc = db_lmdb_err(mdb_txn_begin(db->env, NULL, db->opt.read_only ? MDB_RDONLY : 0, &txn),
                          "begin txn")))
        goto fail;
    unsigned cflag = db->opt.read_only ? 0 : MDB_CREATE;
    if ((rc = db_lmdb_err(mdb_dbi_open(txn, "meta", cflag, &db->meta), "open meta db"))) goto fail;
    if ((rc = db_lmdb_err(mdb_dbi_open(txn, "blocks", cflag, &db->blocks), "open blocks db")))
        goto fail;
    if ((rc = db_lmdb_err(mdb_dbi_open(txn, "bdata", cflag, &db->bdata), "open bdata db")))
        goto fail;
    if ((rc = db_lmdb_err(mdb_dbi_open(txn, "groups", cflag, &db->groups), "open groups db")))
        goto fail;
    if ((rc = idx_open(txn, &db->idx))) goto fail;
    if (db->opt.partition_ms < 60000 || db->opt.partition_ms > INT64_C(400) * 86400000) {
        tsdb_set_detail("partition length %lld ms out of range (1 min .. 400 d)",
                        (long long)db->opt.partition_ms);
        rc = TSDB_EINVAL;
        goto fail;
    }
    {
        /* partition length of every group that has blocks */
        MDB_cursor *gc;
        if ((rc = db_lmdb_err(mdb_cursor_open(txn, db->groups, &gc), "cursor"))) goto fail;
        MDB_val gk, gv;
        int gop = MDB_FIRST;
        while (mdb_cursor_get(gc, &gk, &gv, gop) == 0) {
            gop = MDB_NEXT;
            if (gk.mv_size != 4 || gv.mv_size != 8) continue;
            uint32_t g = be32_get(gk.mv_data);
            int64_t pm = (int64_t)le64_get(gv.mv_data);
            if (pm < 60000) continue;
            if (ginfo_touch(db, g)) {
                mdb_cursor_close(gc);
                rc = TSDB_ENOMEM;
                goto fail;
            }
            db->ginfo[g].pm = pm;
            db->ginfo[g].persisted = 1;
        }
        mdb_cursor_close(gc);
    }
    {
        MDB_stat est;
        mdb_env_stat(db->env, &est);
        /* two fragments (node header 8 + key 6 + index 2 each) per page of
         * payload psize - 16: never an overflow page */
        db->frag_max = (est.ms_psize - 16) / 2 - 16 - 8;
    }
    uint64_t v = 0;
    int found = 0;
    if ((rc = meta_get_u64(txn, db->meta, "format", &v, &found))) goto fail;
    if (found && v > TSDB_FORMAT_VERSION) {
        tsdb_set_detail("%s was written with format version %" PRIu64
                        "; this augur reads up to %d. Use a newer augur.",
                        dir, v, TSDB_FORMAT_VERSION);
        rc = TSDB_EVERSION;
        goto fail;
    }
    if (!found && !db->opt.read_only) {
        if ((rc = meta_put_u64(txn, db->meta, "format", TSDB_FORMAT_VERSION))) goto fail;
        if ((rc = meta_put_u64(txn, db->meta, "part_ms", TSDB_PART_MS))) goto fail;
        if ((rc = meta_put_u64(txn, db->meta, "group_sids", TSDB_GROUP_SIDS))) goto fail;
    } else if (found) {
        uint64_t pm = 0, gs = 0;
        int f1, f2;
        if ((rc = meta_get_u64(txn, db->meta, "part_ms", &pm, &f1))) goto fail;
        if ((rc = meta_get_u64(txn, db->meta, "group_sids", &gs, &f2))) goto fail;
        if (!f1 || !f2 || pm != TSDB_PART_MS || gs != TSDB_GROUP_SIDS) {
            tsdb_set_detail("%s: unsupported layout (partition %" PRIu64 " ms, group %" PRIu64 ")",
                            dir, pm, gs);
            rc = TSDB_EVERSION;
            goto fail;
        }
    }
    uint64_t next_sid = 1, bseq = 0, ckpt = 0, samples = 0;
    if ((rc = meta_get_u64(txn, db->meta, "next_sid", &next_sid, &found))) goto fail;
    if (!found) next_sid = 1;
    if ((rc = meta_get_u64(txn, db->meta, "block_seq", &bseq, &found))) goto fail;
    if ((rc = meta_get_u64(txn, db->meta, "wal_ckpt", &ckpt, &found))) goto fail;
    if ((rc = meta_get_u64(txn, db->meta, "samples", &samples, &found))) goto fail;
    {
        uint64_t hs = 0, ht = 0;
        int f1 = 0, f2 = 0;
        if ((rc = meta_get_u64(txn, db->meta, "wal_hold_seq", &hs, &f1))) goto fail;
        if ((rc = meta_get_u64(txn, db->meta, "wal_hold_t", &ht, &f2))) goto fail;
        db->hold_seq = f1 && f2 ? hs : 0;
        db->hold_t = f1 && f2 ? (int64_t)ht : INT64_MIN;
        db->ckpt_done = db->freeze_ckpt = ckpt;
        db->freeze_maxt = INT64_MAX; /* the first flush that keeps samples holds ckpt */
    }
    db->next_block_seq = (uint32_t)bseq;
    {
        uint64_t bid = 0;
        int fb = 0;
        if ((rc = meta_get_u64(txn, db->meta, "bid", &bid, &fb))) goto fail;
        db->next_bid = (uint32_t)bid;
    }
    db->sealed_samples = samples;
    load_ctx_t lc = {db, 0};
    if ((rc = idx_series_foreach(txn, &db->idx, load_series, &lc))) goto fail;
    if (next_sid > db->next_sid) db->next_sid = (uint32_t)next_sid;
    {
        uint32_t ng = (db->next_sid + TSDB_GROUP_SIDS - 1) / TSDB_GROUP_SIDS;
        if (ng > db->next_group) db->next_group = ng; /* never reuse a deleted series' group */
    }
    /* commit even when read-only: an aborted txn would close the dbi handles */
    if ((rc = db_lmdb_err(mdb_txn_commit(txn), "commit"))) {
        txn = NULL;
        goto fail;
    }
    txn = NULL;

    if ((rc = wal_open(&db->wal, dir, db->opt.wal_segment_bytes))) goto fail;
    uint64_t maxseq = ckpt, nbad = 0;
    {
        replay_t rs = {0};
        rs.db = db;
        rs.chk_words = ((size_t)db->next_sid + 63) / 64;
        rs.ent = malloc(REPLAY_ENT * sizeof *rs.ent);
        rs.smp = malloc(REPLAY_SMP * sizeof *rs.smp);
        rs.smp_cap = REPLAY_SMP;
        rs.chk = calloc(rs.chk_words + 1, sizeof *rs.chk);
        uint64_t dropped = 0;
        if (!rs.ent || !rs.smp || !rs.chk) rc = TSDB_ENOMEM;
        pthread_mutex_lock(&db->mu);
        rs.t_start_ns = rs.last_report_ns = mono_ns();
        if (!rc)
            rc = wal_replay(&db->wal, ckpt, replay_record, replay_segment_done, &rs, &maxseq,
                            &nbad);
        if (!rc) rc = replay_apply(&rs);
        if (!rc) rc = replay_dedup_sealed(db, &rs, &dropped);
        /* A flush killed after some of its commits left blocks under a seq
         * that meta "block_seq" (written in its last transaction) does not
         * cover. The next flush must not reuse it: its block for the same
         * (group, partition) would replace that block's index entry, and the
         * samples dropped above as sealed in it would be lost. Those blocks
         * are among the ones checked above: their samples are in the WAL. */
        if (rs.max_block_seq > db->next_block_seq) db->next_block_seq = rs.max_block_seq;
        db->sealed_samples += rs.uncounted; /* else missing from the store's count */
        if (!rc && rs.nseg && db->opt.replay_progress)
            replay_report(&rs, rs.nseg, rs.nseg, 1, dropped, nbad);
        pthread_mutex_unlock(&db->mu);
        free(rs.ent);
        free(rs.smp);
        free(rs.chk);
        if (rc) goto fail;
    }
    db->wal.seq = maxseq; /* the next segment gets a fresh number */
    if (!db->opt.read_only && db->head_samples) {
        pthread_mutex_lock(&db->flush_mu);
        rc = db_flush_locked(db, 0);
        pthread_mutex_unlock(&db->flush_mu);
        if (rc) goto fail;
    }
    if (!db->opt.read_only && db->opt.flush_interval_ms > 0) {
        if (pthread_create(&db->bg, NULL, bg_main, db)) {
            rc = TSDB_ENOMEM;
            goto fail;
        }
        db->bg_running = 1;
    }
    *out = db;
    return 0;
fail:
    if (txn) mdb_txn_abort(txn);
    {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", tsdb_last_error_detail());
        tsdb_close(db);
        tsdb_set_detail("%s", detail);
    }
    return rc;
}

int tsdb_close(tsdb_t *db)
{
    if (!db) return 0;
    int rc = 0;
    pthread_mutex_lock(&db->mu);
    db->closing = 1;
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
    if (db->bg_running) {
        pthread_join(db->bg, NULL);
        db->bg_running = 0;
    }
    if (db->env && !db->opt.read_only && !db->failed && (db->head_samples || db->wal.fd >= 0)) {
        pthread_mutex_lock(&db->flush_mu);
        rc = db_flush_locked(db, 0);
        pthread_mutex_unlock(&db->flush_mu);
    }
    seal_cache_free(db);
    if (db->env) mdb_env_close(db->env);
    wal_close(&db->wal);
    for (uint32_t g = 0; g < db->npages; g++) {
        if (!db->pages[g]) continue;
        for (uint32_t i = 0; i < TSDB_GROUP_SIDS; i++) series_free(db->pages[g][i]);
        free(db->pages[g]);
    }
    free(db->pages);
    for (size_t i = 0; i < db->nslabs; i++) free(db->slabs[i]);
    free(db->slabs);
    free(db->fresh);
    free(db->ginfo);
    for (size_t i = 0; i < db->ng_cap; i++) free(db->ngroups[i].name);
    free(db->ngroups);
    free(db->table);
    free(db->active);
    free(db->fz_keep);
    free(db->pos_keep);
    tbuf_free(&db->wal_pending);
    tbuf_free(&db->wal_spare);
    if (db->lockfd >= 0) close(db->lockfd);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->flush_mu);
    pthread_cond_destroy(&db->cv);
    free(db->dir);
    free(db);
    return rc;
}

/* ---- flush ---------------------------------------------------------------------- */

typedef struct frozen {
    series_t *s;
    union {
        tsdb_sample_t *v;  /* !packed: frozen samples, sorted */
        const uint8_t *pk; /* a packed head taken over whole (write_group decodes it) */
    };
    int64_t mint, maxt;
    uint32_t sid;      /* s->sid (sorting without touching s) */
    uint32_t n;
    uint8_t packed;    /* pk, not v */
    uint8_t persisted; /* s->persisted when the entry was made */
    uint8_t kept;      /* split: s stays in the active list with the rest */
} frozen_t; /* 48 bytes: a flush of 17.8 M series has as many */

/* The flush's entry for s, from what s has frozen (nfrozen >= 1). */
static void frozen_entry(frozen_t *f, series_t *s)
{
    f->s = s;
    f->sid = s->sid;
    f->packed = s->frozen_packed;
    if (f->packed) f->pk = s->fpk;
    else f->v = s->frozen;
    f->n = s->nfrozen;
    f->mint = frozen_mint(s);
    f->maxt = frozen_maxt(s);
    f->persisted = s->persisted;
    f->kept = s->in_active; /* the freeze has taken the others off the list */
}

static int cmp_frozen(const void *a, const void *b)
{
    const frozen_t *x = a, *y = b;
    return (x->sid > y->sid) - (x->sid < y->sid);
}

static int sorted_by_sid(const frozen_t *fz, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (fz[i].sid < fz[i - 1].sid) return 0;
    return 1;
}

/* Sort fz[0..n), nearly sorted: the entries that break the ascending run
 * are moved out, sorted and merged back, O(n + m log m) for m moved. Returns
 * 0 if more than n/16 would move or memory is short; fz is then still a
 * permutation of what it was. */
static int sort_nearly_sorted(frozen_t *fz, size_t n)
{
    /* At a descent either the last entry kept is too big (a series created
     * late, amid older ones) or this one is too small: one of them moves out.
     * Anything less regular than that falls back to the full sort. */
    size_t cap = n / 16 + 16;
    frozen_t *side = malloc(cap * sizeof *side);
    if (!side) return 0;
    size_t k = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && fz[i].sid < fz[k - 1].sid) {
            if (m == cap) {
                /* not nearly sorted after all: put them back (k + m == i,
                 * so they fill the gap) for the caller's full sort */
                memcpy(fz + k, side, m * sizeof *side);
                free(side);
                return 0;
            }
            if (k == 1 || fz[i].sid >= fz[k - 2].sid) {
                /* the last one kept is the odd one out (too big) */
                side[m++] = fz[k - 1];
                fz[k - 1] = fz[i];
            } else {
                side[m++] = fz[i]; /* this one is (too small) */
            }
        } else {
            fz[k++] = fz[i];
        }
    }
    qsort(side, m, sizeof *side, cmp_frozen);
    /* merge from the back: fz[0..k) and side[0..m) into fz[0..n) */
    size_t a = k, b = m, o = n;
    while (b) {
        if (a && fz[a - 1].sid > side[b - 1].sid) fz[--o] = fz[--a];
        else fz[--o] = side[--b];
    }
    free(side);
    return 1;
}

/* Sort fz[0..n) by sid; 1 if they were not in order. With many series, a
 * bitmap over the ids in use is walked in order instead of a comparison sort
 * (a flush of a million series spent ~0.3 s in qsort). Caller holds mu
 * (db_sid_get). */
static int sort_frozen_locked(tsdb_t *db, frozen_t *fz, size_t n)
{
    if (n < 2) return 0;
    /* The active list is usually in id order already (an import appends
     * every series of a day in the order they were created), or nearly:
     * check before sorting. The bitmap walk below re-reads every series and
     * its head and, at 17.8 M series, copies and faults in 1.3 GB. */
    if (sorted_by_sid(fz, n)) return 0;
    if (sort_nearly_sorted(fz, n)) return 1;
    size_t words = ((size_t)db->next_sid + 63) / 64;
    uint64_t *bits = n >= 4096 && words <= 64 * n ? calloc(words, sizeof *bits) : NULL;
    if (!bits) {
        qsort(fz, n, sizeof *fz, cmp_frozen);
        return 1;
    }
    frozen_t *tmp = malloc(n * sizeof *tmp);
    if (!tmp) {
        free(bits);
        qsort(fz, n, sizeof *fz, cmp_frozen);
        return 1;
    }
    memcpy(tmp, fz, n * sizeof *tmp);
    for (size_t i = 0; i < n; i++)
        bits[tmp[i].sid / 64] |= UINT64_C(1) << (tmp[i].sid % 64);
    /* fz entries are a function of their series: rebuild them in id order */
    size_t k = 0;
    for (size_t w = 0; w < words; w++)
        for (uint64_t b = bits[w]; b; b &= b - 1) {
            uint32_t sid = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(b));
            frozen_entry(&fz[k++], db_sid_get(db, sid));
        }
    free(tmp);
    free(bits);
    return 1;
}

/* Encode one group's frozen series (fz[0..n), same group, ascending sid) into
 * one block per partition under seq. */
static int write_group(tsdb_t *db, MDB_txn *txn, frozen_t *fz, size_t n, uint32_t seq,
                       tbuf_t *out, tbuf_t *scratch, block_series_t **bs, size_t *bscap,
                       uint32_t *pos, tsdb_sample_t **dec, size_t *deccap)
{
    /* packed heads taken over whole: decoded here, a group at a time, so a
     * flush never holds them all at 16 bytes a sample */
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        if (fz[i].packed) need += fz[i].n;
    if (need > *deccap) {
        tsdb_sample_t *nd = realloc(*dec, need * sizeof *nd);
        if (!nd) return TSDB_ENOMEM;
        *dec = nd;
        *deccap = need;
    }
    need = 0;
    for (size_t i = 0; i < n; i++)
        if (fz[i].packed) {
            tsdb_sample_t *v = *dec + need;
            if (headpack_decode(fz[i].pk, fz[i].n, v)) return TSDB_ECORRUPT; /* never */
            fz[i].v = v; /* the entry is done with pk */
            fz[i].packed = 0;
            need += fz[i].n;
        }
    uint32_t g = fz[0].sid / TSDB_GROUP_SIDS;
    int64_t pm;
    int persist_pm;
    pthread_mutex_lock(&db->mu);
    pm = db_group_pm_locked(db, g);
    persist_pm = g < db->nginfo && !db->ginfo[g].persisted;
    pthread_mutex_unlock(&db->mu);
    if (persist_pm) {
        uint8_t gk[4], gv[8];
        be32_put(gk, g);
        le64_put(gv, (uint64_t)pm);
        MDB_val k = {4, gk}, v = {8, gv};
        int rc = mdb_put(txn, db->groups, &k, &v, 0);
        if (rc) return db_lmdb_err(rc, "write group");
    }
    for (size_t i = 0; i < n; i++) pos[i] = 0;
    if (*bscap < n) {
        block_series_t *nb = realloc(*bs, n * sizeof *nb);
        if (!nb) return TSDB_ENOMEM;
        *bs = nb;
        *bscap = n;
    }
    for (;;) {
        /* smallest partition still pending among the series */
        int64_t part = INT64_MAX;
        for (size_t i = 0; i < n; i++)
            if (pos[i] < fz[i].n) {
                int64_t p = db_part_of(fz[i].v[pos[i]].t, pm);
                if (p < part) part = p;
            }
        if (part == INT64_MAX) break;
        int64_t pend = db_part_end(part, pm);
        size_t nb = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t a = pos[i], b = a;
            while (b < fz[i].n && (fz[i].v[b].t < pend || pend == INT64_MAX) && fz[i].v[b].t >= part) b++;
            if (b > a) {
                (*bs)[nb].sid = fz[i].sid;
                (*bs)[nb].samples = fz[i].v + a;
                (*bs)[nb].n = b - a;
                nb++;
                pos[i] = b;
            }
        }
        int rc = block_encode(*bs, nb, 3, out, scratch);
        if (rc) return rc;
        rc = db_block_put(db, txn, g, part, seq, out->p, out->len);
        if (rc) return rc;
    }
    return 0;
}

static int rewrite_all_multi(tsdb_t *db, int closed_only);

/* Index of the first sample at or after t in sorted v[0..n). */
static uint32_t first_at_or_after(const tsdb_sample_t *v, uint32_t n, int64_t t)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid].t < t) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void tsdb_seal_closed_only(tsdb_t *db, int on)
{
    if (!db) return;
    pthread_mutex_lock(&db->mu);
    db->hold_open = on != 0;
    pthread_mutex_unlock(&db->mu);
}

/* An array of n items of size sz for one flush: the one kept in *keep if
 * it is big enough; else, while partitions are held open (hold:
 * db->hold_open), a bigger one kept in its place, or a fresh one. Give it
 * back with flush_buf_done, which drops the kept one once hold is off.
 * Caller holds flush_mu. */
static void *flush_buf(int hold, void **keep, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap) return *keep;
    free(*keep);
    *keep = NULL;
    *cap = 0;
    if (!hold) return malloc(n * sz);
    size_t c = n + n / 4;
    *keep = malloc(c * sz);
    *cap = *keep ? c : 0;
    return *keep;
}

static void flush_buf_done(int hold, void **keep, size_t *cap, void *p)
{
    if (p != *keep) {
        free(p);
    } else if (!hold) {
        free(*keep);
        *keep = NULL;
        *cap = 0;
    }
}

int db_flush_locked(tsdb_t *db, int compact_all)
{
    pthread_mutex_lock(&db->mu);
    if (db->failed) {
        int f = db->failed;
        pthread_mutex_unlock(&db->mu);
        return f;
    }
    /* Everything logged so far becomes durable, then a new segment starts:
     * the checkpoint covers the old ones. */
    int rc = 0;
    uint64_t ckpt = db->wal.seq;
    if (db->wal.fd >= 0) {
        rc = wal_drain_locked(db);
        if (rc) {
            pthread_mutex_unlock(&db->mu);
            return rc;
        }
        close(db->wal.fd); /* the next append starts a new segment */
        db->wal.fd = -1;
        db->wal.seg_used = db->wal.seg_size = 0;
    }
    /* The segments up to ckpt go away once this flush commits: fresh series
     * it does not persist are logged again with their next samples. */
    db->wal_gen++;
    size_t nf = db->nactive;
    size_t nfresh = db->nfresh;
    const int keep_bufs = db->hold_open;
    frozen_t *fz = flush_buf(keep_bufs, (void **)&db->fz_keep, &db->fz_keep_cap, nf + 1,
                             sizeof *fz);
    frozen_t *nw = nfresh ? malloc(nfresh * sizeof *nw) : NULL; /* new series */
    if (!fz || (nfresh && !nw)) {
        flush_buf_done(keep_bufs, (void **)&db->fz_keep, &db->fz_keep_cap, fz);
        free(nw);
        pthread_mutex_unlock(&db->mu);
        return TSDB_ENOMEM;
    }
    size_t nz = 0;
    /* tsdb_seal_closed_only: samples of each group's open partition (the one
     * holding the newest time) stay in the head; once twice the head limit
     * is kept, the other series are sealed whole */
    int hold = db->hold_open && !db->closing && db->max_time != INT64_MIN;
    const uint64_t hold_cap = 2 * head_limit(db);
    /* and with a memory cap, once the arrays kept take a third of the head's
     * budget: the rest is sealed in pieces, as without this mode. (Kept
     * third + frozen third + the third appended while the flush runs, after
     * which appends wait: the head stays inside its budget.) */
    const uint64_t hold_bytes = db->opt.memory_max_bytes ? head_budget(db) / 3 : UINT64_MAX;
    uint64_t kept_bytes = 0;
    size_t nact = 0;            /* series that keep head samples */
    uint64_t kept = 0;          /* their samples */
    int64_t cutmin = INT64_MAX; /* the earliest partition start kept */
    int unpack_err = 0;
    for (size_t a = 0; a < db->nactive; a++) {
        /* memory latency bound at millions of series (appends wait for mu):
         * fetch the series 16 ahead, and the head of the one 8 ahead */
        if (a + 16 < db->nactive) __builtin_prefetch(db->active[a + 16], 1);
        if (a + 8 < db->nactive && db->active[a + 8]->head)
            __builtin_prefetch(db->active[a + 8]->head, 1);
        series_t *s = db->active[a];
        if (s->n == 0 || s->deleted) { /* emptied by a delete */
            db->mem_head_bytes -= head_bytes(s);
            free(s->head);
            s->head = NULL;
            s->n = s->cap = 0;
            s->packed = 0;
            s->in_active = 0;
            continue;
        }
        int64_t cut = 0;
        if (hold && kept < hold_cap && kept_bytes < hold_bytes) {
            cut = db_part_of(db->max_time, db_group_pm_locked(db, s->sid / TSDB_GROUP_SIDS));
            if (s->packed && headpack_first_t(s->pk) >= cut) {
                /* all in the open partition: stays as it is */
                db->active[nact++] = s;
                kept += s->n;
                kept_bytes += head_bytes(s);
                if (cut < cutmin) cutmin = cut;
                continue;
            }
        }
        int split = hold && kept < hold_cap && kept_bytes < hold_bytes;
        if (s->packed && (!split || s->maxt < cut)) {
            /* sealed whole: the flush takes the packed head over as it is */
            head_pk_store(s);
            size_t i = nz++;
            s->fpk = s->pk;
            s->frozen_packed = 1;
            s->nfrozen = s->n;
            s->hint = (uint8_t)(s->n < 64 ? s->n : 64);
            if (hold && kept_bytes >= hold_bytes) s->hint = 0;
            db->mem_head_bytes -= head_bytes(s);
            s->pk = NULL;
            s->packed = 0;
            s->n = s->cap = 0;
            s->pk_len = 0;
            s->in_active = 0;
            frozen_entry(&fz[i], s);
            continue;
        }
        if (s->packed) {
            /* split packed: the part before the cut is copied out and
             * sealed packed (no 16-byte copy of every series that crosses
             * into a new partition); the rest stays at the front of the
             * head's own buffer, which has the room the next partition will
             * want (a new buffer for every series' head would come from
             * fresh pages of this thread's heap at every boundary) */
            uint8_t *lo;
            uint32_t nlo;
            head_pk_store(s);
            if (!headpack_split(s->pk, s->n, s->cap, cut, &lo, &nlo)) {
                head_pk_load(s);
                s->n -= nlo;
                uint32_t lo_len = headpack_len(lo);
                uint32_t want = s->pk_len + lo_len + 2 * HEADPACK_MAX_ENTRY;
                if (s->cap > 2 * want) {
                    /* a head that once took a backfill does not keep its
                     * size for ever: room for a partition like the last */
                    uint8_t *np = realloc(s->pk, want);
                    if (np) {
                        db->mem_head_bytes -= s->cap - want;
                        s->pk = np;
                        s->cap = want;
                    }
                }
                db->active[nact++] = s;
                kept += s->n;
                kept_bytes += head_bytes(s);
                if (cut < cutmin) cutmin = cut;
                size_t i = nz++;
                s->fpk = lo;
                s->frozen_packed = 1;
                s->nfrozen = nlo;
                frozen_entry(&fz[i], s);
                continue;
            }
            /* one side empty (all before the cut: sealed whole below), or
             * no memory: the plain way */
        }
        /* splitting works on plain arrays */
        if (s->packed && head_unpack(db, s, 0)) {
            /* no memory to unpack: it stays in the head, and the flush
             * reports the shortage once it has sealed the others */
            db->active[nact++] = s;
            kept += s->n;
            kept_bytes += head_bytes(s);
            cutmin = INT64_MIN; /* its samples keep the WAL checkpoint where it was */
            unpack_err = TSDB_ENOMEM;
            continue;
        }
        if (!s->sorted && s->n > 1) qsort(s->head, s->n, sizeof *s->head, cmp_sample);
        s->sorted = 1;
        if (split) {
            uint32_t k = first_at_or_after(s->head, s->n, cut);
            tsdb_sample_t *fv = k && k < s->n ? malloc(k * sizeof *fv) : NULL;
            if (k == 0 || fv) {
                /* head[0..k) is sealed now, head[k..n) stays */
                if (fv) {
                    memcpy(fv, s->head, k * sizeof *fv);
                    memmove(s->head, s->head + k, (s->n - k) * sizeof *s->head);
                    s->n -= k;
                }
                if (head_pack_on(db)) head_repack(db, s); /* sorted, each t once */
                db->active[nact++] = s;
                kept += s->n;
                kept_bytes += head_bytes(s);
                if (cut < cutmin) cutmin = cut;
                if (!fv) continue;
                size_t i = nz++;
                s->frozen = fv;
                s->frozen_packed = 0;
                s->nfrozen = k;
                frozen_entry(&fz[i], s);
                continue;
            }
            /* k == n, or no memory for the split: seal it all */
        }
        size_t i = nz++;
        s->frozen = s->head;
        s->frozen_packed = 0;
        s->nfrozen = s->n;
        /* the next head starts this big (capped: a backfill's big head must
         * not make every later one big) */
        s->hint = (uint8_t)(s->n < 64 ? s->n : 64);
        /* sealed whole because the memory cap left no room to keep it: its
         * next head starts small, not as big as this one */
        if (hold && kept_bytes >= hold_bytes) s->hint = 0;
        db->mem_head_bytes -= head_bytes(s);
        s->head = NULL;
        s->n = s->cap = 0;
        s->in_active = 0;
        frozen_entry(&fz[i], s);
    }
    nf = nz;
    if (sort_frozen_locked(db, fz, nf)) {
        /* The active list was out of id order (a row of a daily file
         * interleaves the id ranges of its metrics). If every series it
         * keeps was split, the sorted entries give them in id order: the
         * next flush finds its list sorted and skips the sort. */
        size_t nk = 0;
        for (size_t i = 0; i < nf; i++) nk += fz[i].kept;
        if (nk == nact) {
            nk = 0;
            for (size_t i = 0; i < nf; i++)
                if (fz[i].kept) db->active[nk++] = fz[i].s;
        }
    }
    db->nactive = nact;
    uint64_t nfrozen_samples = db->head_samples - kept;
    db->frozen_samples = nfrozen_samples;
    db->head_samples = kept;
    db->head_kept = kept;
    db->head_kept_bytes = kept_bytes;
    /* new series: labels to persist */
    size_t nnew = 0;
    for (size_t f = 0; f < nfresh; f++) {
        series_t *s = db->fresh[f];
        if (s->deleted || !s->labels) continue;
        /* Kept whole in the head (tsdb_seal_closed_only): indexed now all the
         * same, its range for now that of its head samples, so its label copy
         * (~180 bytes) goes instead of staying for the rest of the partition.
         * A replay finds it by id; without a WAL (an import) a crash leaves
         * an index entry whose samples the re-run brings. */
        int kept_whole = !s->nfrozen && s->n && s->in_active && s->maxt != INT64_MIN;
        if (!s->nfrozen && !kept_whole) { /* no sample (tsdb_series_id): stays fresh */
            /* its labels must be logged again unless they already count as
             * unlogged (not logged since an earlier flush or its creation):
             * counting them at every flush inflated the WAL room each append
             * reserves until every append started a new segment that big */
            if (s->logged_gen + 1 == db->wal_gen) db->unlogged_bytes += series_rec_bytes(s);
            continue;
        }
        memset(&nw[nnew], 0, sizeof nw[nnew]);
        nw[nnew].s = s;
        nw[nnew].sid = s->sid;
        nw[nnew].mint = s->nfrozen ? frozen_mint(s) : s->mint;
        nw[nnew].maxt = s->nfrozen ? frozen_maxt(s) : s->maxt;
        nnew++;
    }
    uint32_t seq = ++db->next_block_seq;
    uint32_t next_sid = db->next_sid;
    /* The WAL checkpoint this flush may commit. Kept samples stay in the
     * segments that logged them: if every kept sample is past the newest time
     * at the previous flush's freeze, it was logged after it (segments
     * > freeze_ckpt); else hold the last checkpoint. Samples of the segments
     * so kept that this flush seals are skipped by a replay (hold_t). */
    uint64_t commit_ckpt = ckpt;
    if (kept) commit_ckpt = cutmin > db->freeze_maxt ? db->freeze_ckpt : db->ckpt_done;
    db->freeze_ckpt = ckpt;
    db->freeze_maxt = db->max_time;
    db->flushing = 1;
    pthread_mutex_unlock(&db->mu);
    /* New series in id order: their records append to "series", and each
     * postings list grows at its end. */
    if (nnew > 1 && !sorted_by_sid(nw, nnew) && !sort_nearly_sorted(nw, nnew))
        qsort(nw, nnew, sizeof *nw, cmp_frozen); /* in creation order, so rarely */
    idx_pair_cache_t *pcache = nnew > 1 ? idx_pair_cache_new() : NULL;

    MDB_txn *txn = NULL;
    tbuf_t out = {0}, scratch = {0};
    block_series_t *bs = NULL;
    size_t bscap = 0;
    uint32_t *pos = flush_buf(keep_bufs, (void **)&db->pos_keep, &db->pos_keep_cap, nf + 1,
                             sizeof *pos);
    tsdb_sample_t *dec = NULL; /* write_group's decoded packed heads */
    size_t deccap = 0;
    idx_labels_t il = {0};
    if (!pos && !rc) rc = TSDB_ENOMEM;
    if (!rc) rc = db_txn_begin_write(db, &txn);
    /* A flush of many new series or groups commits along the way: LMDB's cost
     * per dirty page grows with the transaction. Everything before the last
     * commit is idempotent (series puts) or deduplicated (a block written
     * again by a retried flush is merged away), and the WAL checkpoint is only
     * in the last transaction, so a crash in between replays the WAL and loses
     * nothing. Each commit copies the paths to every page it touched (the
     * postings' last leaves, the trees' right edges): steps of 65,536 units
     * made a 100,000-drive import write 6.2 GB for a 0.6 GB store, steps of
     * 524,288 units 3.1 GB (a few thousand dirty pages a step, far below
     * LMDB's limit of 131,071). */
    size_t work = 0;
    MDB_cursor *wc = NULL; /* idx_series_widen_cur's, in txn */
#define FLUSH_STEP(units)                                                                      \
    do {                                                                                       \
        work += (units);                                                                       \
        if (!rc && work >= 524288) {                                                           \
            if (wc) mdb_cursor_close(wc);                                                      \
            wc = NULL;                                                                         \
            rc = idx_pair_cache_write_postings(txn, &db->idx, pcache);                         \
            if (!rc) {                                                                         \
                rc = db_lmdb_err(mdb_txn_commit(txn), "commit flush step");                    \
                txn = NULL;                                                                    \
                if (!rc) rc = db_txn_begin_write(db, &txn);                                    \
            }                                                                                  \
            work = 0;                                                                          \
        }                                                                                      \
    } while (0)
    for (size_t i = 0; i < nnew && !rc; i++) {
        rc = labels_parse(nw[i].s->labels, nw[i].s->labels_len, &il); /* only we free them */
        if (!rc)
            rc = idx_series_put_cached(txn, &db->idx, nw[i].s->sid, il.v, il.n, nw[i].mint,
                                       nw[i].maxt, pcache);
        FLUSH_STEP(1 + il.n);
    }
    if (!rc) rc = idx_pair_cache_write_postings(txn, &db->idx, pcache);
    for (size_t i = 0; i < nf && !rc;) {
        uint32_t g = fz[i].sid / TSDB_GROUP_SIDS;
        size_t j = i;
        while (j < nf && fz[j].sid / TSDB_GROUP_SIDS == g) j++;
        rc = write_group(db, txn, fz + i, j - i, seq, &out, &scratch, &bs, &bscap, pos, &dec,
                         &deccap);
        for (size_t k = i; k < j && !rc; k++) {
            if (!fz[k].persisted) continue;
            if (!wc) rc = db_lmdb_err(mdb_cursor_open(txn, db->idx.series, &wc), "series cursor");
            if (!rc) rc = idx_series_widen_cur(wc, fz[k].sid, fz[k].mint, fz[k].maxt);
        }
        FLUSH_STEP(4 * (j - i) + out.len / 512);
        i = j;
    }
#undef FLUSH_STEP
    if (wc) mdb_cursor_close(wc);
    if (!rc) rc = meta_put_u64(txn, db->meta, "next_sid", next_sid);
    if (!rc) rc = meta_put_u64(txn, db->meta, "block_seq", seq);
    if (!rc) rc = meta_put_u64(txn, db->meta, "wal_ckpt", commit_ckpt);
    if (!rc) rc = meta_put_u64(txn, db->meta, "wal_hold_seq", ckpt);
    if (!rc)
        rc = meta_put_u64(txn, db->meta, "wal_hold_t", (uint64_t)(kept ? cutmin : INT64_MIN));
    if (!rc) rc = meta_put_u64(txn, db->meta, "samples", db->sealed_samples + nfrozen_samples);
    if (!rc) {
        rc = db_lmdb_err(mdb_txn_commit(txn), "commit flush");
        txn = NULL;
    }
    if (txn) mdb_txn_abort(txn);
    idx_pair_cache_free(pcache);
    free(il.v);
    free(bs);
    flush_buf_done(keep_bufs, (void **)&db->pos_keep, &db->pos_keep_cap, pos);
    free(dec);
    tbuf_free(&out);
    tbuf_free(&scratch);

    pthread_mutex_lock(&db->mu);
    if (rc) {
        /* Give the samples back to the head; they are still in the WAL. */
        for (size_t i = 0; i < nf; i++) {
            series_t *s = fz[i].s;
            headpack_rd_t rd = {0};
            if (s->frozen_packed) headpack_rd_init(&rd, s->fpk);
            for (uint32_t k = 0; k < s->nfrozen; k++) {
                int64_t t;
                double v;
                if (s->frozen_packed) {
                    uint64_t vb;
                    if (headpack_next(&rd, &t, &vb)) break; /* never: our own bytes */
                    memcpy(&v, &vb, 8);
                } else {
                    t = s->frozen[k].t;
                    v = s->frozen[k].v;
                }
                uint64_t hb;
                if (head_find(s, t, &hb) >= 0) continue;
                if (head_push(db, s, t, v)) break;
            }
            free(s->frozen);
            s->frozen = NULL;
            s->frozen_packed = 0;
            s->nfrozen = 0;
        }
        db->next_block_seq--;
        db->last_flush_err = rc;
    } else {
        for (size_t i = 0; i < nf; i++) {
            /* appends wait: fetch ahead what free() reads (its chunk header) */
            if (i + 16 < nf) __builtin_prefetch(&fz[i + 16].s->frozen, 0);
            if (i + 8 < nf && fz[i + 8].s->frozen)
                __builtin_prefetch((const char *)fz[i + 8].s->frozen - 16, 1);
            series_t *s = fz[i].s;
            uint32_t g = s->sid / TSDB_GROUP_SIDS;
            if (g < db->nginfo) {
                db->ginfo[g].persisted = 1;
                if (fz[i].maxt > db->ginfo[g].tmax) db->ginfo[g].tmax = fz[i].maxt;
            }
            if (fz[i].mint < s->sealed_mint) s->sealed_mint = fz[i].mint;
            if (fz[i].maxt > s->sealed_maxt) s->sealed_maxt = fz[i].maxt;
            free(s->frozen);
            s->frozen = NULL;
            s->frozen_packed = 0;
            s->nfrozen = 0;
        }
        for (size_t i = 0; i < nnew; i++) {
            series_t *s = nw[i].s;
            s->persisted = 1;
            db->mem_labels_bytes -= s->labels_len;
            db->mem_labels_n--;
            free(s->labels);
            s->labels = NULL;
            s->labels_len = 0;
        }
        /* the series persisted were among the first nfresh; the others of
         * those without samples, and all later ones, stay fresh */
        size_t keep = 0;
        for (size_t f = 0; f < db->nfresh; f++) {
            series_t *s = db->fresh[f];
            if (f < nfresh && (s->persisted || s->deleted || !s->labels)) continue;
            db->fresh[keep++] = s;
        }
        db->nfresh = keep;
        db->sealed_samples += nfrozen_samples;
        db->ckpt_done = commit_ckpt;
        db->gen++;
        db->flushes++;
        db->last_flush_err = 0;
    }
    db->frozen_samples = 0;
    db->flushing = 0;
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
    flush_buf_done(keep_bufs, (void **)&db->fz_keep, &db->fz_keep_cap, fz);
    free(nw);
    pthread_mutex_lock(&db->mu);
    db->flush_keep_bytes = db->fz_keep_cap * sizeof *fz + db->pos_keep_cap * sizeof *pos;
    pthread_mutex_unlock(&db->mu);
    if (rc) return rc;
    wal_remove_upto(&db->wal, commit_ckpt);
    rc = rewrite_all_multi(db, !compact_all);
    if (!rc && unpack_err) tsdb_set_detail("flush: no memory to unpack a head; it stays in memory");
    return rc ? rc : unpack_err;
}

void db_reader_enter(tsdb_t *db)
{
    pthread_mutex_lock(&db->mu);
    db->nreaders++;
    pthread_mutex_unlock(&db->mu);
}

void db_reader_leave(tsdb_t *db)
{
    pthread_mutex_lock(&db->mu);
    db->nreaders--;
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

static int env_open_dbis(tsdb_t *db)
{
    MDB_txn *txn;
    int rc = db_lmdb_err(mdb_txn_begin(db->env, NULL, 0, &txn), "begin txn");
    if (rc) return rc;
    rc = db_lmdb_err(mdb_dbi_open(txn, "meta", 0, &db->meta), "open meta db");
    if (!rc) rc = db_lmdb_err(mdb_dbi_open(txn, "blocks", 0, &db->blocks), "open blocks db");
    if (!rc) rc = db_lmdb_err(mdb_dbi_open(txn, "bdata", 0, &db->bdata), "open bdata db");
    if (!rc) rc = db_lmdb_err(mdb_dbi_open(txn, "groups", 0, &db->groups), "open groups db");
    if (!rc) rc = idx_open(txn, &db->idx);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return db_lmdb_err(mdb_txn_commit(txn), "commit");
}

/* Pages in use by every database (the rest of the file is free pages). */
uint64_t db_free_pages(MDB_txn *txn)
{
    /* Each record of LMDB's free database (dbi 0) is an ID list of the pages
     * one transaction freed: a count, then that many page numbers. */
    MDB_cursor *c;
    uint64_t free_pages = 0;
    if (mdb_cursor_open(txn, 0, &c)) return 0;
    MDB_val k, v;
    int op = MDB_FIRST;
    while (mdb_cursor_get(c, &k, &v, op) == 0) {
        op = MDB_NEXT;
        size_t cnt;
        if (v.mv_size < sizeof cnt) continue;
        memcpy(&cnt, v.mv_data, sizeof cnt);
        if (cnt < v.mv_size / sizeof cnt) free_pages += cnt;
    }
    mdb_cursor_close(c);
    return free_pages;
}

/* Copy every entry of `from` into the empty `to`, in key order with
 * MDB_APPEND(DUP) so that every leaf page is full. Sorted-duplicate lists of
 * fixed-size items (the postings) go a page of items per call
 * (MDB_GET_MULTIPLE / MDB_MULTIPLE): a million series have ten million
 * postings, and one put per item made this the longest step of a vacuum. */
static int copy_dbi(MDB_txn *txn, MDB_dbi from, MDB_dbi to, unsigned flags)
{
    MDB_cursor *c, *w = NULL;
    int rc = mdb_cursor_open(txn, from, &c);
    if (rc) return rc;
    int fixed = (flags & (MDB_DUPSORT | MDB_DUPFIXED)) == (MDB_DUPSORT | MDB_DUPFIXED);
    if (fixed && (rc = mdb_cursor_open(txn, to, &w))) {
        mdb_cursor_close(c);
        return rc;
    }
    MDB_val k, v;
    int op = MDB_FIRST;
    while ((rc = mdb_cursor_get(c, &k, &v, op)) == 0) {
        size_t cnt = 1;
        if (fixed && (rc = mdb_cursor_count(c, &cnt))) break;
        if (!fixed || cnt == 1) {
            op = MDB_NEXT;
            unsigned pf = (flags & MDB_DUPSORT) ? MDB_APPENDDUP : MDB_APPEND;
            rc = mdb_put(txn, to, &k, &v, pf);
            if (rc == MDB_KEYEXIST) rc = mdb_put(txn, to, &k, &v, 0);
            if (rc) break;
            continue;
        }
        /* cnt > 1 duplicates of size v.mv_size: page by page */
        op = MDB_NEXT_NODUP;
        size_t isz = v.mv_size;
        MDB_val key = k, chunk;
        int mop = MDB_GET_MULTIPLE, first = 1;
        while ((rc = mdb_cursor_get(c, &key, &chunk, mop)) == 0) {
            mop = MDB_NEXT_MULTIPLE;
            MDB_val dv[2];
            dv[0].mv_size = isz;
            dv[0].mv_data = chunk.mv_data;
            dv[1].mv_size = chunk.mv_size / isz;
            dv[1].mv_data = NULL;
            size_t want = dv[1].mv_size;
            rc = mdb_cursor_put(w, &k, dv, MDB_MULTIPLE | (first ? MDB_APPEND : MDB_APPENDDUP));
            if (rc == MDB_KEYEXIST) {
                dv[0].mv_size = isz;
                dv[0].mv_data = chunk.mv_data;
                dv[1].mv_size = want;
                rc = mdb_cursor_put(w, &k, dv, MDB_MULTIPLE);
            }
            if (!rc && dv[1].mv_size != want) rc = MDB_CORRUPTED;
            if (rc) break;
            first = 0;
        }
        if (rc == MDB_NOTFOUND) rc = 0;
        if (rc) break;
    }
    if (w) mdb_cursor_close(w);
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static uint64_t dbi_pages(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    if (mdb_stat(txn, dbi, &st)) return 0;
    return st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
}

/* Rewrite one database densely (copy_dbi) through a scratch database and
 * back. B-trees built by inserts in the middle keep pages about half full;
 * one that was built in order (the series records of an import) is left as
 * it is when the copy is not at least 5 % smaller. */
static int repack_dbi(MDB_txn *txn, MDB_dbi dbi)
{
    unsigned flags = 0;
    int rc = mdb_dbi_flags(txn, dbi, &flags);
    if (rc) return db_lmdb_err(rc, "dbi flags");
    flags &= MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERKEY | MDB_REVERSEKEY | MDB_INTEGERDUP;
    MDB_dbi tmp;
    rc = mdb_dbi_open(txn, "repack.tmp", flags | MDB_CREATE, &tmp);
    if (rc) return db_lmdb_err(rc, "open scratch db");
    rc = copy_dbi(txn, dbi, tmp, flags);
    /* (the pages of sorted-duplicate subtrees are not in the main tree's
     * count: those databases are always copied back) */
    int keep = !rc && !(flags & MDB_DUPSORT) && dbi_pages(txn, tmp) * 20 > dbi_pages(txn, dbi) * 19;
    if (!rc && !keep) {
        rc = mdb_drop(txn, dbi, 0); /* empty it, keep the handle */
        if (!rc) rc = copy_dbi(txn, tmp, dbi, flags);
    }
    int drc = mdb_drop(txn, tmp, 1);
    if (!rc) rc = drc;
    return db_lmdb_err(rc, "repack");
}

/* light: only the small trees written out of key order (blocks, pairs,
 * pairids), not series and postings (appended in key order by an import,
 * and the postings' copy is the costly one). */
static int repack_all(tsdb_t *db, int light)
{
    MDB_txn *txn;
    int rc = db_txn_begin_write(db, &txn);
    if (rc) return rc;
    MDB_dbi dbis[] = {db->blocks, db->idx.pairs, db->idx.pairids, db->idx.series,
                      db->idx.postings};
    size_t n = light ? 3 : sizeof dbis / sizeof *dbis;
    for (size_t i = 0; i < n && !rc; i++) rc = repack_dbi(txn, dbis[i]);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return db_lmdb_err(mdb_txn_commit(txn), "commit repack");
}

/* After a full compaction the LMDB file keeps the pages the merges freed:
 * LMDB reuses them for later writes but never shrinks the file. When more
 * than a fifth of a non-trivial file is free and no read transaction is
 * open, rewrite it with LMDB's compacting copy and swap it in atomically
 * (rename), the index trees repacked first. A store without a WAL (an
 * import, written once) gets a lighter one: the small trees repacked
 * (repack_all light), then the copy if over a hundredth of the file is
 * free: the copy costs ~0.4 CPU-s a GB, while the repack of the postings
 * (appended in order, already dense) cost ~15 % of an import for under
 * 1 %. Appends wait on mu meanwhile. Caller holds flush_mu. */
static int db_vacuum_locked(tsdb_t *db)
{
    MDB_envinfo info;
    MDB_txn *txn;
    if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) return 0;
    /* the pages in LMDB's free list, counted: the page counts of the trees
     * leave out the sorted-duplicate subtrees (the postings), which made a
     * dense file look a quarter free, and every import ended with a
     * vacuum that gained ~1 % for 15 % of its CPU */
    uint64_t freep = db_free_pages(txn);
    mdb_env_info(db->env, &info);
    mdb_txn_abort(txn);
    uint64_t filep = (uint64_t)info.me_last_pgno + 1;
    int full = freep * 5 > filep;
    int light = !full && db->opt.sync_mode == TSDB_SYNC_NONE;
    if (filep < 512 || (!full && !light)) return 0;
    pthread_mutex_lock(&db->mu);
    if (db->nreaders || db->failed) {
        pthread_mutex_unlock(&db->mu);
        return 0;
    }
    if (light) {
        /* the repack's freed pages count as free for the copy's test */
        if (repack_all(db, 1) || mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) {
            pthread_mutex_unlock(&db->mu);
            return 0;
        }
        freep = db_free_pages(txn);
        mdb_env_info(db->env, &info);
        mdb_txn_abort(txn);
        filep = (uint64_t)info.me_last_pgno + 1;
        if (freep * 100 <= filep) {
            pthread_mutex_unlock(&db->mu);
            return 0;
        }
    }
    /* the index trees were built by inserts in the middle: pack them too
     * (their freed pages vanish in the copy below) */
    if (full && repack_all(db, 0)) {
        pthread_mutex_unlock(&db->mu);
        return 0;
    }
    char tmp[3800], src[4096], dst[4096];
    if (strlen(db->dir) > 3700) {
        pthread_mutex_unlock(&db->mu);
        return 0;
    }
    snprintf(tmp, sizeof tmp, "%s/vacuum.tmp", db->dir);
    snprintf(src, sizeof src, "%s/data.mdb", tmp);
    snprintf(dst, sizeof dst, "%s/data.mdb", db->dir);
    unlink(src);
    rmdir(tmp);
    int rc = 0;
    if (mkdir(tmp, 0755)) rc = TSDB_EIO;
    if (!rc) rc = db_lmdb_err(mdb_env_copy2(db->env, tmp, MDB_CP_COMPACT), "vacuum copy");
    if (!rc) {
        int fd = open(src, O_RDONLY);
        if (fd < 0 || fsync(fd)) rc = TSDB_EIO;
        if (fd >= 0) close(fd);
    }
    if (rc) {
        unlink(src);
        rmdir(tmp);
        pthread_mutex_unlock(&db->mu);
        return rc == TSDB_ENOSPC || rc == TSDB_EIO ? 0 : rc; /* no room to vacuum: not an error */
    }
    mdb_env_close(db->env);
    db->env = NULL;
    if (rename(src, dst)) rc = TSDB_EIO;
    rmdir(tmp);
    int dfd = open(db->dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    /* reopen (the old file if the rename failed) */
    int orc = db_lmdb_err(mdb_env_create(&db->env), "mdb_env_create");
    if (!orc) {
        mdb_env_set_maxdbs(db->env, 16);
        mdb_env_set_maxreaders(db->env, 1024);
        mdb_env_set_mapsize(db->env, db->map_size);
        orc = db_lmdb_err(mdb_env_open(db->env, db->dir, MDB_NOTLS, 0644), "reopen LMDB");
    }
    if (!orc) orc = env_open_dbis(db);
    if (orc) {
        db->failed = orc; /* nothing is lost (WAL + file), but stop writing */
        rc = orc;
    } else {
        db->vacuums++;
        db->gen++;
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

int tsdb_flush(tsdb_t *db)
{
    if (!db) return TSDB_EINVAL;
    if (db->opt.read_only) return 0;
    pthread_mutex_lock(&db->flush_mu);
    int rc = db_flush_locked(db, 1);
    if (!rc) rc = db_vacuum_locked(db);
    pthread_mutex_unlock(&db->flush_mu);
    return rc;
}

/* ---- compaction: merge the blocks of one (group, partition) ---------------------- */

typedef struct {
    uint32_t sid;
    tsdb_sample_t *v;
    uint32_t n, cap;
} merge_series_t;

static int is_live(tsdb_t *db, uint32_t sid)
{
    pthread_mutex_lock(&db->mu);
    series_t *s = db_sid_get(db, sid);
    int live = s && !s->deleted;
    pthread_mutex_unlock(&db->mu);
    return live;
}

static int cmp_merge(const void *a, const void *b)
{
    const merge_series_t *x = a, *y = b;
    return (x->sid > y->sid) - (x->sid < y->sid);
}

/* Merge the blocks whose keys are keys[0..nk) (same group and partition)
 * into one new block; dead series are dropped. */
static int merge_blocks(tsdb_t *db, MDB_txn *txn, uint8_t (*keys)[16], size_t nk,
                        uint64_t *removed)
{
    merge_series_t *ms = NULL;
    size_t nms = 0, mcap = 0;
    /* the series of one group have distinct sid % TSDB_GROUP_SIDS: their
     * entry by slot (index + 1, 0 = none) instead of a search per series */
    uint32_t at[TSDB_GROUP_SIDS];
    memset(at, 0, sizeof at);
    block_reader_t br = {0};
    tbuf_t fb = {0};
    int rc = 0;
    for (size_t b = 0; b < nk && !rc; b++) {
        MDB_val key = {16, keys[b]}, val;
        rc = mdb_get(txn, db->blocks, &key, &val);
        if (rc) {
            rc = db_lmdb_err(rc, "read block");
            break;
        }
        const uint8_t *bp;
        size_t bl;
        if (db_block_read(db, txn, &val, &fb, &bp, &bl) || block_open(&br, bp, bl)) {
            /* keep a corrupt block as it is: never destroy evidence */
            rc = TSDB_ECORRUPT;
            break;
        }
        for (uint32_t i = 0; i < br.nseries && !rc; i++) {
            uint32_t sid = br.sids[i];
            merge_series_t *m = NULL;
            uint32_t slot = sid % TSDB_GROUP_SIDS;
            if (at[slot] && ms[at[slot] - 1].sid == sid) {
                m = &ms[at[slot] - 1];
            } else {
                for (size_t k = 0; k < nms; k++) /* (not one group: corrupt, but keep it) */
                    if (ms[k].sid == sid) {
                        m = &ms[k];
                        break;
                    }
            }
            if (!m) {
                if (nms == mcap) {
                    mcap = mcap ? mcap * 2 : 64;
                    merge_series_t *nm = realloc(ms, mcap * sizeof *nm);
                    if (!nm) {
                        rc = TSDB_ENOMEM;
                        break;
                    }
                    ms = nm;
                }
                m = &ms[nms++];
                memset(m, 0, sizeof *m);
                m->sid = sid;
                if (!at[slot]) at[slot] = (uint32_t)nms;
            }
            uint32_t cnt = br.counts[i];
            if (m->n + cnt > m->cap) {
                uint32_t nc = m->n + cnt;
                tsdb_sample_t *nv = realloc(m->v, nc * sizeof *nv);
                if (!nv) {
                    rc = TSDB_ENOMEM;
                    break;
                }
                m->v = nv;
                m->cap = nc;
            }
            size_t got;
            rc = block_decode_series(&br, i, m->v + m->n, cnt, &got);
            m->n += (uint32_t)got;
        }
    }
    block_reader_free(&br);
    tbuf_free(&fb);
    uint32_t g = 0, seq;
    int64_t part = 0;
    db_block_key_parse(keys[0], &g, &part, &seq);
    if (!rc) {
        if (nms > 1) qsort(ms, nms, sizeof *ms, cmp_merge);
        block_series_t *bs = calloc(nms + 1, sizeof *bs);
        size_t nb = 0;
        if (!bs) rc = TSDB_ENOMEM;
        for (size_t i = 0; i < nms && !rc; i++) {
            if (!is_live(db, ms[i].sid)) {
                *removed += ms[i].n;
                continue;
            }
            /* blocks of later flushes usually hold later samples: sort only
             * when the concatenation is out of order */
            int sorted = 1;
            for (uint32_t k = 1; k < ms[i].n && sorted; k++)
                sorted = ms[i].v[k - 1].t <= ms[i].v[k].t;
            if (!sorted) qsort(ms[i].v, ms[i].n, sizeof *ms[i].v, cmp_sample);
            uint32_t w = 0;
            for (uint32_t k = 0; k < ms[i].n; k++) /* drop exact duplicates */
                if (!w || ms[i].v[w - 1].t != ms[i].v[k].t) ms[i].v[w++] = ms[i].v[k];
            *removed += ms[i].n - w;
            ms[i].n = w;
            bs[nb].sid = ms[i].sid;
            bs[nb].samples = ms[i].v;
            bs[nb].n = w;
            nb++;
        }
        for (size_t b = 0; b < nk && !rc; b++) rc = db_block_del(db, txn, keys[b]);
        if (!rc && nb) {
            tbuf_t out = {0}, scratch = {0};
            rc = block_encode(bs, nb, 3, &out, &scratch);
            if (!rc) {
                pthread_mutex_lock(&db->mu);
                uint32_t nseq = ++db->next_block_seq;
                pthread_mutex_unlock(&db->mu);
                rc = db_block_put(db, txn, g, part, nseq, out.p, out.len);
                if (!rc) rc = meta_put_u64(txn, db->meta, "block_seq", nseq);
            }
            tbuf_free(&out);
            tbuf_free(&scratch);
        }
        free(bs);
    }
    for (size_t i = 0; i < nms; i++) free(ms[i].v);
    free(ms);
    return rc;
}

/* Rewrite every (group, partition) that has several blocks (or, with force,
 * every block of `only_group`/all), in small transactions so freed pages are
 * reused. closed_only: skip partitions that may still receive samples. */
static int rewrite_scan(tsdb_t *db, int closed_only, int force, int64_t part_lt,
                        uint64_t *removed_total)
{
    /* closed_only: a partition is closed once it ends before its group's
     * newest sealed sample minus the out-of-order window. Per group, not per
     * store: series written at the current time (augur's own metrics) must
     * not make a backfill's partitions look closed and get merged at every
     * flush. */
    uint8_t start[16];
    memset(start, 0, sizeof start);
    uint8_t (*run)[16] = NULL;
    size_t runcap = 0;
    int rc = 0, done = 0;
    /* Up to 64 merges per transaction: few commits (each costs two fsyncs),
     * and the pages one transaction frees are reused by the next. */
    while (!done && !rc) {
        MDB_txn *txn;
        rc = db_txn_begin_write(db, &txn);
        if (rc) break;
        MDB_cursor *cur = NULL;
        MDB_val key, val;
        size_t nrun = 0;
        int merges = 0, reposition = 1;
        uint64_t removed = 0;
        while (merges < 64) {
            int r;
            if (reposition) {
                if (cur) mdb_cursor_close(cur);
                cur = NULL;
                r = mdb_cursor_open(txn, db->blocks, &cur);
                if (r) {
                    rc = db_lmdb_err(r, "cursor");
                    break;
                }
                key.mv_size = 16;
                key.mv_data = start;
                r = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
                reposition = 0;
            } else {
                r = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
            }
            int end = r == MDB_NOTFOUND;
            if (r && !end) {
                rc = db_lmdb_err(r, "scan blocks");
                break;
            }
            uint32_t g = 0, sq;
            int64_t p = 0;
            if (!end) db_block_key_parse(key.mv_data, &g, &p, &sq);
            if (nrun) {
                uint32_t rg, rs;
                int64_t rp;
                db_block_key_parse(run[0], &rg, &rp, &rs);
                if (end || g != rg || p != rp) {
                    int closed = 1;
                    if (closed_only) {
                        pthread_mutex_lock(&db->mu);
                        int64_t rpm = db_group_pm_locked(db, rg);
                        int64_t tmax = rg < db->nginfo ? db->ginfo[rg].tmax : INT64_MIN;
                        pthread_mutex_unlock(&db->mu);
                        closed = tmax != INT64_MIN && tmax - db->opt.ooo_window_ms > rp &&
                                 db_part_end(rp, rpm) <= tmax - db->opt.ooo_window_ms;
                    }
                    if ((nrun > 1 || force) && closed && rp < part_lt) {
                        mdb_cursor_close(cur);
                        cur = NULL;
                        /* merge_blocks reads everything before it writes: a corrupt
                         * block leaves the (group, partition) untouched */
                        int m = merge_blocks(db, txn, run, nrun, &removed);
                        if (m == TSDB_ECORRUPT) {
                            pthread_mutex_lock(&db->mu);
                            db->corrupt_blocks++;
                            pthread_mutex_unlock(&db->mu);
                        } else if (m) {
                            rc = m;
                            break;
                        } else {
                            merges++;
                        }
                        db_block_key(start, rg, rp, UINT32_MAX); /* after every block of it */
                        nrun = 0;
                        reposition = 1;
                        continue;
                    }
                    nrun = 0;
                }
            }
            if (end) {
                done = 1;
                break;
            }
            if (nrun == runcap) {
                runcap = runcap ? runcap * 2 : 8;
                void *nr = realloc(run, runcap * 16);
                if (!nr) {
                    rc = TSDB_ENOMEM;
                    break;
                }
                run = nr;
            }
            memcpy(run[nrun++], key.mv_data, 16);
        }
        if (cur) mdb_cursor_close(cur);
        if (rc || !merges) {
            mdb_txn_abort(txn);
            continue;
        }
        uint64_t ss = 0;
        if (removed) {
            pthread_mutex_lock(&db->mu);
            ss = db->sealed_samples - (removed < db->sealed_samples ? removed : db->sealed_samples);
            pthread_mutex_unlock(&db->mu);
            rc = meta_put_u64(txn, db->meta, "samples", ss);
        }
        if (!rc) rc = db_lmdb_err(mdb_txn_commit(txn), "commit compaction");
        else mdb_txn_abort(txn);
        if (!rc && removed) {
            pthread_mutex_lock(&db->mu);
            db->sealed_samples = ss;
            pthread_mutex_unlock(&db->mu);
            if (removed_total) *removed_total += removed;
        }
    }
    free(run);
    return rc;
}

static int rewrite_all_multi(tsdb_t *db, int closed_only)
{
    return rewrite_scan(db, closed_only, 0, INT64_MAX, NULL);
}

int db_rewrite_everything(tsdb_t *db, uint64_t *removed)
{
    return rewrite_scan(db, 0, 1, INT64_MAX, removed);
}

/* ---- background maintenance ------------------------------------------------------ */

static void *bg_main(void *arg)
{
    tsdb_t *db = arg;
    int64_t last_flush = db->opt.now_ms(db->opt.now_ctx);
    int64_t last_ret = last_flush;
    pthread_mutex_lock(&db->mu);
    while (!db->closing) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait_ms = db->opt.flush_interval_ms;
        if (db->opt.sync_mode == TSDB_SYNC_PERIODIC && db->opt.sync_interval_ms < wait_ms)
            wait_ms = db->opt.sync_interval_ms;
        if (wait_ms > 1000) wait_ms = 1000;
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (wait_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (!db->bg_wake) pthread_cond_timedwait(&db->cv, &db->mu, &ts);
        if (db->closing) break;
        int64_t now = db->opt.now_ms(db->opt.now_ctx);
        if (db->opt.sync_mode == TSDB_SYNC_PERIODIC && !db->syncing && db->wal.fd >= 0 &&
            !db->failed && now - db->last_sync_ms >= db->opt.sync_interval_ms) {
            wal_lead(db, 1);
            db->last_sync_ms = now;
        }
        int want = db->bg_wake || head_full(db) ||
                   (head_new(db) && now - last_flush >= db->opt.flush_interval_ms);
        db->bg_wake = 0;
        if (want && !db->failed) {
            pthread_mutex_unlock(&db->mu);
            pthread_mutex_lock(&db->flush_mu);
            db_flush_locked(db, 0);
            pthread_mutex_unlock(&db->flush_mu);
            pthread_mutex_lock(&db->mu);
            last_flush = now;
        }
        if (db->opt.retention_ms > 0 && now - last_ret >= 60000) {
            pthread_mutex_unlock(&db->mu);
            tsdb_retention_apply(db, now);
            pthread_mutex_lock(&db->mu);
            last_ret = now;
        }
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* ---- change watch ------------------------------------------------------------ */

void tsdb_watch(tsdb_t *db, int64_t t, uint64_t *gen)
{
    pthread_mutex_lock(&db->mu);
    if (t > db->watch_t) db->watch_t = t;
    *gen = atomic_load(&db->change_gen);
    pthread_mutex_unlock(&db->mu);
}

uint64_t tsdb_generation(tsdb_t *db)
{
    return atomic_load(&db->change_gen);
}

void tsdb_memory(tsdb_t *db, tsdb_memory_t *m)
{
    memset(m, 0, sizeof *m);
    if (!db) return;
    pthread_mutex_lock(&db->mu);
    m->series = db->nseries;
    m->series_structs = db->nslabs * SERIES_SLAB_BYTES;
    m->labels = db->mem_labels_bytes + db->mem_labels_n * 16;
    m->unpersisted = db->mem_labels_n;
    m->wal_buffers = db->wal_pending.cap + db->wal_spare.cap;
    m->tables = mem_fixed_locked(db) - m->series_structs - m->labels - m->wal_buffers;
    m->head = db->mem_head_bytes;
    m->head_samples = db->head_samples;
    m->frozen = db->frozen_samples * sizeof(tsdb_sample_t);
    m->total = m->series_structs + m->labels + m->tables + m->wal_buffers + m->head + m->frozen;
    m->head_budget = head_budget(db);
    pthread_mutex_unlock(&db->mu);
}
