/*
 * index.c — the series index of tsdb/ in LMDB (contract: index.h).
 *
 * On-disk layout (four named databases in the store's environment)
 * ----------------------------------------------------------------
 *
 *   db         key                       value
 *   ---------  ------------------------  -------------------------------------
 *   "pairs"    name 0x00 value           u32 BE pair id
 *              0x00 "next"  (reserved)   u32 BE next pair id to allocate
 *   "pairids"  u32 BE pair id            name 0x00 value
 *   "series"   u32 BE series id          record (below)
 *   "postings" u32 BE pair id            dup values: u32 BE series id
 *                                        (MDB_DUPSORT|MDB_DUPFIXED)
 *
 *   series record:
 *     varint   zigzag(mint)
 *     varint   maxt - mint                    (unsigned, maxt >= mint)
 *     varint   n                              number of labels, >= 1
 *     n varint pair id                        in label-name byte order
 *
 * Label names and values are non-empty byte strings without 0x00, so
 * "name\0value" sorts by name first, the values of one name are the key
 * range ["name\0", "name\1"), and the reserved key (empty name) sorts
 * before every real pair. Pair ids are allocated 1, 2, 3, ... and never
 * reused; a pair whose postings become empty is deleted from "pairs" and
 * "pairids". Postings are u32 BE so that LMDB's byte order is numeric order
 * and a postings list reads back sorted.
 *
 * Worked example: series 7 = {__name__="up", job="node"}, mint=1000,
 * maxt=1600, on an empty index:
 *   pairs    "__name__\0up" -> 00 00 00 01,  "job\0node" -> 00 00 00 02,
 *            "\0next" -> 00 00 00 03
 *   pairids  00 00 00 01 -> "__name__\0up",  00 00 00 02 -> "job\0node"
 *   series   00 00 00 07 -> d0 0f  d8 04  02  01 02
 *            (zigzag(1000) = 2000 = d0 0f; 600 = d8 04; n = 2; ids 1, 2)
 *   postings 00 00 00 01 -> {00 00 00 07},  00 00 00 02 -> {00 00 00 07}
 *
 * Size: a series costs its record (~4-byte key + ~15-25 bytes + LMDB's
 * 8-byte node header and 2-byte slot) plus 4 bytes per label in postings.
 * New series ids and new pair ids are usually the largest so far, so
 * inserts use MDB_APPEND / MDB_APPENDDUP (pages filled completely instead
 * of half-split), falling back to a normal put when out of order.
 *
 * Selection (idx_select): every matcher is reduced to a set of pair ids of
 * its label name and a sign. With b(v) the matcher's base predicate
 * (equality for =/!=, the regex for =~/!~) the set is S = { v : b(v) != b("") }
 * over the name's stored values, and the matcher is positive (a series must
 * hold a pair in S) when the matcher rejects "" (= a missing label),
 * negative (a series must hold no pair of S) when it accepts "". So
 * `a="x"` is +{x}, `a!="x"` is -{x}, `a=""` is -{all a}, `a!=""` is +{all a},
 * `a=~"x|"` is -{values other than x}, `a=~".*"` is -{} (no-op).
 * Positive sets are intersected smallest first (by postings count); then
 * every further matcher whose postings are few compared with the current
 * candidates is applied by reading its postings (intersect / subtract), and
 * the rest are checked on each remaining candidate's series record, so a
 * large postings list is never read to filter a small candidate set.
 * Without positive matchers the candidates are all series.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tsdb/index.h"
#include "tsdb/tsdb_int.h"

/* Longest "name\0value" key (LMDB's default MDB_MAXKEYSIZE). */
#define IDX_KEY_MAX 511
/* A record check costs about this many postings read in bulk. */
#define IDX_RECORD_COST 16

static const uint8_t idx_next_key[5] = {0, 'n', 'e', 'x', 't'};

/* ---- small helpers ------------------------------------------------------ */

typedef struct {
    uint32_t *v;
    size_t n, cap;
} u32vec_t;

static int u32vec_reserve(u32vec_t *a, size_t extra)
{
    if (a->cap - a->n >= extra) return 0;
    if (extra > SIZE_MAX / 8 - a->n) return TSDB_ENOMEM;
    size_t nc = a->cap ? a->cap : 16;
    while (nc < a->n + extra) nc *= 2;
    uint32_t *nv = realloc(a->v, nc * sizeof *nv);
    if (!nv) return TSDB_ENOMEM;
    a->v = nv;
    a->cap = nc;
    return 0;
}

static int u32vec_push(u32vec_t *a, uint32_t x)
{
    if (a->n == a->cap && u32vec_reserve(a, 1)) return TSDB_ENOMEM;
    a->v[a->n++] = x;
    return 0;
}

static void u32vec_free(u32vec_t *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* LSD radix sort, 3 passes of 11 bits; tmp holds n values. */
static void u32_radix_sort(uint32_t *v, uint32_t *tmp, size_t n)
{
    uint32_t *src = v, *dst = tmp;
    for (int shift = 0; shift < 33; shift += 11) {
        size_t cnt[2048] = {0};
        for (size_t i = 0; i < n; i++) cnt[(src[i] >> shift) & 2047]++;
        size_t sum = 0;
        for (size_t b = 0; b < 2048; b++) {
            size_t c = cnt[b];
            cnt[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) dst[cnt[(src[i] >> shift) & 2047]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    memcpy(v, src, n * sizeof *v); /* odd number of passes: result is in tmp */
}

/* Sort + unique. Concatenated postings are often already sorted (ids of
 * consecutive pairs were allocated together), so check first. */
static void u32vec_sort_unique(u32vec_t *a)
{
    if (a->n < 2) return;
    size_t i = 1;
    while (i < a->n && a->v[i - 1] <= a->v[i]) i++;
    if (i < a->n) {
        uint32_t *tmp = a->n >= 1024 ? malloc(a->n * sizeof *tmp) : NULL;
        if (tmp) {
            u32_radix_sort(a->v, tmp, a->n);
            free(tmp);
        } else {
            qsort(a->v, a->n, sizeof *a->v, u32_cmp);
        }
    }
    size_t w = 1;
    for (size_t j = 1; j < a->n; j++)
        if (a->v[j] != a->v[w - 1]) a->v[w++] = a->v[j];
    a->n = w;
}

/* First index i in v[lo..n) with v[i] >= x (n if none). */
static size_t u32_lower_bound(const uint32_t *v, size_t lo, size_t n, uint32_t x)
{
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int u32_contains(const uint32_t *v, size_t n, uint32_t x)
{
    size_t i = u32_lower_bound(v, 0, n, x);
    return i < n && v[i] == x;
}

/* Byte-order comparison of two strings given with lengths. */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return (al > bl) - (al < bl);
}

static int idx_lmdb_err(int rc, const char *what)
{
    tsdb_set_detail("index: %s: %s", what, mdb_strerror(rc));
    switch (rc) {
    case MDB_MAP_FULL:
        return TSDB_EFULL;
    case ENOMEM:
        return TSDB_ENOMEM;
    case EIO:
        return TSDB_EIO;
    case ENOSPC:
        return TSDB_ENOSPC;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return TSDB_ECORRUPT;
    default:
        return TSDB_ELMDB;
    }
}

static int idx_corrupt(const char *what, uint32_t id)
{
    tsdb_set_detail("index: %s %u is malformed", what, id);
    return TSDB_ECORRUPT;
}

static size_t idx_key_max(MDB_txn *txn)
{
    int m = mdb_env_get_maxkeysize(mdb_txn_env(txn));
    return m > 0 && m < IDX_KEY_MAX ? (size_t)m : IDX_KEY_MAX;
}

/* kb must hold IDX_KEY_MAX bytes; the caller checked the length. */
static void pair_key(uint8_t *kb, const char *name, size_t nl, const char *val, size_t vl,
                     MDB_val *k)
{
    memcpy(kb, name, nl);
    kb[nl] = 0;
    if (vl) memcpy(kb + nl + 1, val, vl);
    k->mv_size = nl + 1 + vl;
    k->mv_data = kb;
}

/* 1 and *id when the pair exists, 0 when not, < 0 on error. */
static int pair_lookup(MDB_txn *txn, const idx_dbis_t *d, MDB_val *k, uint32_t *id)
{
    MDB_val v;
    int rc = mdb_get(txn, d->pairs, k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return idx_lmdb_err(rc, "pairs get");
    if (v.mv_size != 4) {
        tsdb_set_detail("index: pair id of a label pair is malformed");
        return TSDB_ECORRUPT;
    }
    *id = be32_get(v.mv_data);
    return 1;
}

/* Resolve a pair id to "name\0value": name [*np, *np + *nl), value after. */
static int pair_text(MDB_txn *txn, const idx_dbis_t *d, uint32_t id, const char **np,
                     size_t *nl, const char **vp, size_t *vl)
{
    uint8_t kb[4];
    be32_put(kb, id);
    MDB_val k = {4, kb}, v;
    int rc = mdb_get(txn, d->pairids, &k, &v);
    if (rc == MDB_NOTFOUND) {
        tsdb_set_detail("index: pair id %u is referenced but not defined", id);
        return TSDB_ECORRUPT;
    }
    if (rc) return idx_lmdb_err(rc, "pairids get");
    const char *p = v.mv_data;
    const char *z = v.mv_size ? memchr(p, 0, v.mv_size) : NULL;
    if (!z || z == p || (size_t)(z - p) + 1 == v.mv_size ||
        memchr(z + 1, 0, v.mv_size - (size_t)(z - p) - 1))
        return idx_corrupt("pair", id);
    *np = p;
    *nl = (size_t)(z - p);
    *vp = z + 1;
    *vl = v.mv_size - *nl - 1;
    return 0;
}

/* ---- series records ---------------------------------------------------- */

/* Encode into out (room for 30 + 5 * n bytes); returns the length. */
static size_t srec_encode(uint8_t *out, int64_t mint, int64_t maxt, const uint32_t *ids,
                          size_t n)
{
    size_t o = varint_put_raw(out, zigzag_enc(mint));
    o += varint_put_raw(out + o, (uint64_t)maxt - (uint64_t)mint);
    o += varint_put_raw(out + o, n);
    for (size_t i = 0; i < n; i++) o += varint_put_raw(out + o, ids[i]);
    return o;
}

/* Decode a record; ids (may be NULL) is cleared and receives the pair ids. */
static int srec_decode(const MDB_val *v, uint32_t sid, int64_t *mint, int64_t *maxt,
                       u32vec_t *ids)
{
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    uint64_t zz, range, n;
    if (varint_get(&p, end, &zz) || varint_get(&p, end, &range) || varint_get(&p, end, &n))
        return idx_corrupt("series", sid);
    int64_t lo = zigzag_dec(zz);
    if (range > (uint64_t)INT64_MAX - (uint64_t)lo) return idx_corrupt("series", sid);
    if (n == 0 || n > (uint64_t)(end - p)) return idx_corrupt("series", sid);
    if (mint) *mint = lo;
    if (maxt) *maxt = (int64_t)((uint64_t)lo + range);
    if (!ids) return 0;
    ids->n = 0;
    if (u32vec_reserve(ids, (size_t)n)) return TSDB_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id;
        if (varint_get(&p, end, &id) || id == 0 || id > UINT32_MAX)
            return idx_corrupt("series", sid);
        ids->v[ids->n++] = (uint32_t)id;
    }
    if (p != end) return idx_corrupt("series", sid);
    return 0;
}

/* 1 and *v when the series exists, 0 when not, < 0 on error. */
static int srec_get(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, MDB_val *v)
{
    uint8_t kb[4];
    be32_put(kb, sid);
    MDB_val k = {4, kb};
    int rc = mdb_get(txn, d->series, &k, v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return idx_lmdb_err(rc, "series get");
    return 1;
}

static int srec_put(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, int64_t mint, int64_t maxt,
                    const uint32_t *ids, size_t n, int is_new)
{
    uint8_t stackbuf[256];
    uint8_t *rec = stackbuf;
    size_t need = 30 + 5 * n;
    if (need > sizeof stackbuf && !(rec = malloc(need))) return TSDB_ENOMEM;
    uint8_t kb[4];
    be32_put(kb, sid);
    size_t len = srec_encode(rec, mint, maxt, ids, n);
    MDB_val k = {4, kb}, v = {len, rec};
    int rc = mdb_put(txn, d->series, &k, &v, is_new ? MDB_APPEND : 0);
    if (rc == MDB_KEYEXIST) { /* not the largest id: a normal insert */
        k = (MDB_val){4, kb};
        v = (MDB_val){len, rec};
        rc = mdb_put(txn, d->series, &k, &v, MDB_NOOVERWRITE);
    }
    if (rec != stackbuf) free(rec);
    return rc ? idx_lmdb_err(rc, "series put") : 0;
}

/* ---- open, put, widen, delete ------------------------------------------ */

int idx_open(MDB_txn *txn, idx_dbis_t *d)
{
    if (!txn || !d) return TSDB_EINVAL;
    const char *names[4] = {"pairs", "pairids", "series", "postings"};
    MDB_dbi *dst[4] = {&d->pairs, &d->pairids, &d->series, &d->postings};
    for (size_t i = 0; i < 4; i++) {
        unsigned flags = i == 3 ? MDB_DUPSORT | MDB_DUPFIXED : 0;
        int rc = mdb_dbi_open(txn, names[i], flags | MDB_CREATE, dst[i]);
        if (rc == EACCES) /* read-only transaction: open without creating */
            rc = mdb_dbi_open(txn, names[i], flags, dst[i]);
        if (rc == MDB_NOTFOUND) {
            tsdb_set_detail("index: database \"%s\" does not exist", names[i]);
            return TSDB_ENOTFOUND;
        }
        if (rc) return idx_lmdb_err(rc, "open database");
    }
    return 0;
}

static int labels_validate(MDB_txn *txn, const tsdb_label_t *labels, size_t n)
{
    size_t kmax = idx_key_max(txn);
    if (n == 0 || !labels) {
        tsdb_set_detail("index: a series needs at least one label");
        return TSDB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const tsdb_label_t *l = &labels[i];
        if (!l->name.len || !l->value.len || !l->name.ptr || !l->value.ptr) {
            tsdb_set_detail("index: label %zu has an empty name or value", i);
            return TSDB_EINVAL;
        }
        if (memchr(l->name.ptr, 0, l->name.len) || memchr(l->value.ptr, 0, l->value.len)) {
            tsdb_set_detail("index: label %zu contains a NUL byte", i);
            return TSDB_EINVAL;
        }
        if ((size_t)l->name.len + 1 + l->value.len > kmax) {
            tsdb_set_detail("index: label %zu: name and value longer than %zu bytes", i,
                            kmax - 1);
            return TSDB_ELIMIT;
        }
        if (i && bytes_cmp(labels[i - 1].name.ptr, labels[i - 1].name.len, l->name.ptr,
                           l->name.len) >= 0) {
            tsdb_set_detail("index: labels not sorted by name, or a name repeats");
            return TSDB_EINVAL;
        }
    }
    return 0;
}

static int postings_put(MDB_txn *txn, const idx_dbis_t *d, uint32_t pid, uint32_t sid)
{
    uint8_t kb[4], vb[4];
    be32_put(kb, pid);
    be32_put(vb, sid);
    MDB_val k = {4, kb}, v = {4, vb};
    int rc = mdb_put(txn, d->postings, &k, &v, MDB_APPENDDUP);
    if (rc == MDB_KEYEXIST) { /* not the largest id of the list */
        k.mv_data = kb;
        v.mv_data = vb;
        k.mv_size = v.mv_size = 4;
        rc = mdb_put(txn, d->postings, &k, &v, 0);
    }
    return rc ? idx_lmdb_err(rc, "postings put") : 0;
}

/* Allocate a pair id for key k (known to be absent). *next is 0 until the
 * counter was read. */
static int pair_create(MDB_txn *txn, const idx_dbis_t *d, MDB_val *k, uint32_t *next,
                       uint32_t *id)
{
    int rc;
    if (*next == 0) {
        MDB_val nk = {sizeof idx_next_key, (void *)idx_next_key}, nv;
        rc = mdb_get(txn, d->pairs, &nk, &nv);
        if (rc == MDB_NOTFOUND)
            *next = 1;
        else if (rc)
            return idx_lmdb_err(rc, "pairs get");
        else if (nv.mv_size != 4 || (*next = be32_get(nv.mv_data)) == 0)
            return idx_corrupt("pair id counter", 0);
    }
    if (*next == UINT32_MAX) {
        tsdb_set_detail("index: label pair ids exhausted");
        return TSDB_ELIMIT;
    }
    *id = (*next)++;
    uint8_t ib[4];
    be32_put(ib, *id);
    MDB_val iv = {4, ib}, text = *k;
    rc = mdb_put(txn, d->pairs, k, &iv, MDB_NOOVERWRITE);
    if (rc) return idx_lmdb_err(rc, "pairs put");
    MDB_val ik = {4, ib};
    rc = mdb_put(txn, d->pairids, &ik, &text, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        ik.mv_data = ib;
        ik.mv_size = 4;
        rc = mdb_put(txn, d->pairids, &ik, &text, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) return idx_corrupt("pair id counter", *id);
    }
    return rc ? idx_lmdb_err(rc, "pairids put") : 0;
}

static int next_store(MDB_txn *txn, const idx_dbis_t *d, uint32_t next)
{
    uint8_t nb[4];
    be32_put(nb, next);
    MDB_val nk = {sizeof idx_next_key, (void *)idx_next_key}, nv = {4, nb};
    int rc = mdb_put(txn, d->pairs, &nk, &nv, 0);
    return rc ? idx_lmdb_err(rc, "pairs put") : 0;
}

static int series_widen_rec(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, const MDB_val *v,
                            int64_t mint, int64_t maxt)
{
    int64_t lo, hi;
    u32vec_t ids = {0};
    int rc = srec_decode(v, sid, &lo, &hi, &ids);
    if (!rc && (mint < lo || maxt > hi))
        rc = srec_put(txn, d, sid, mint < lo ? mint : lo, maxt > hi ? maxt : hi, ids.v, ids.n,
                      0);
    u32vec_free(&ids);
    return rc;
}

/* ---- pair id cache ------------------------------------------------------- */

struct idx_pair_cache {
    struct pc_ent {
        uint64_t h;
        char *key; /* "name\0value" */
        uint32_t len, id;
    } *t;
    size_t cap, n;
    /* postings not written yet: pair id << 32 | series id, in the order the
     * series were put (ascending ids) */
    uint64_t *post, *tmp;
    size_t npost, postcap, tmpcap;
};

#define PC_MAX ((size_t)1 << 22) /* entries; beyond, lookups go to LMDB */

idx_pair_cache_t *idx_pair_cache_new(void)
{
    idx_pair_cache_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cap = 1024;
    c->t = calloc(c->cap, sizeof *c->t);
    if (!c->t) {
        free(c);
        return NULL;
    }
    return c;
}

void idx_pair_cache_free(idx_pair_cache_t *c)
{
    if (!c) return;
    free(c->post);
    free(c->tmp);
    for (size_t i = 0; i < c->cap; i++)
        free(c->t[i].key);
    free(c->t);
    free(c);
}

static uint64_t pc_hash(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static struct pc_ent *pc_slot(idx_pair_cache_t *c, const MDB_val *k, uint64_t h)
{
    size_t mask = c->cap - 1, i = h & mask;
    for (;;) {
        struct pc_ent *e = &c->t[i];
        if (!e->key || (e->h == h && e->len == k->mv_size && !memcmp(e->key, k->mv_data, e->len)))
            return e;
        i = (i + 1) & mask;
    }
}

static void pc_add(idx_pair_cache_t *c, const MDB_val *k, uint64_t h, uint32_t id)
{
    if (c->n >= PC_MAX) return;
    if ((c->n + 1) * 2 > c->cap) {
        size_t nc = c->cap * 2;
        struct pc_ent *nt = calloc(nc, sizeof *nt), *old = c->t;
        if (!nt) return; /* a cache: just stop adding */
        size_t oc = c->cap;
        c->t = nt;
        c->cap = nc;
        for (size_t i = 0; i < oc; i++)
            if (old[i].key) {
                size_t j = old[i].h & (nc - 1);
                while (nt[j].key)
                    j = (j + 1) & (nc - 1);
                nt[j] = old[i];
            }
        free(old);
    }
    struct pc_ent *e = pc_slot(c, k, h);
    if (e->key) return;
    e->key = malloc(k->mv_size);
    if (!e->key) return;
    memcpy(e->key, k->mv_data, k->mv_size);
    e->len = (uint32_t)k->mv_size;
    e->h = h;
    e->id = id;
    c->n++;
}

static int post_add(idx_pair_cache_t *c, uint32_t pid, uint32_t sid)
{
    if (c->npost == c->postcap) {
        size_t nc = c->postcap ? c->postcap * 2 : 65536;
        uint64_t *np = realloc(c->post, nc * sizeof *np);
        if (!np) return -1;
        c->post = np;
        c->postcap = nc;
    }
    c->post[c->npost++] = (uint64_t)pid << 32 | sid;
    return 0;
}

int idx_pair_cache_write_postings(MDB_txn *txn, const idx_dbis_t *d, idx_pair_cache_t *c)
{
    if (!c || !c->npost) return 0;
    size_t n = c->npost;
    c->npost = 0;
    /* stable LSD radix sort on the pair id (11 bits a pass): the series ids
     * of one pair stay ascending */
    uint32_t maxp = 0;
    for (size_t i = 0; i < n; i++)
        if ((uint32_t)(c->post[i] >> 32) > maxp) maxp = (uint32_t)(c->post[i] >> 32);
    if (c->tmpcap < n) {
        uint64_t *nt = realloc(c->tmp, c->postcap * sizeof *nt);
        if (!nt) return TSDB_ENOMEM;
        c->tmp = nt;
        c->tmpcap = c->postcap;
    }
    uint64_t *a = c->post, *b = c->tmp;
    for (unsigned shift = 32; shift < 64 && (shift == 32 || (maxp >> (shift - 32)) != 0);
         shift += 11) {
        size_t cnt[2048 + 1];
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < n; i++)
            cnt[((a[i] >> shift) & 2047) + 1]++;
        for (size_t k = 1; k <= 2048; k++)
            cnt[k] += cnt[k - 1];
        for (size_t i = 0; i < n; i++)
            b[cnt[(a[i] >> shift) & 2047]++] = a[i];
        uint64_t *t = a;
        a = b;
        b = t;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, d->postings, &cur);
    if (rc) return idx_lmdb_err(rc, "postings cursor");
    uint8_t *vals = NULL;
    size_t vcap = 0;
    for (size_t i = 0; i < n && !rc;) {
        uint32_t pid = (uint32_t)(a[i] >> 32);
        size_t j = i;
        while (j < n && (uint32_t)(a[j] >> 32) == pid)
            j++;
        size_t cnt = j - i;
        if (cnt * 4 > vcap) {
            size_t nc = cnt * 4 > 2 * vcap ? cnt * 4 : 2 * vcap;
            uint8_t *nv = realloc(vals, nc);
            if (!nv) {
                rc = TSDB_ENOMEM;
                break;
            }
            vals = nv;
            vcap = nc;
        }
        for (size_t k = 0; k < cnt; k++)
            be32_put(vals + 4 * k, (uint32_t)a[i + k]);
        uint8_t kb[4];
        be32_put(kb, pid);
        MDB_val k = {4, kb}, dv[2] = {{4, vals}, {cnt, NULL}};
        int r = cnt > 1 ? mdb_cursor_put(cur, &k, dv, MDB_MULTIPLE | MDB_APPENDDUP)
                        : mdb_cursor_put(cur, &k, dv, MDB_APPENDDUP);
        if (r == 0 && cnt > 1 && dv[1].mv_size != cnt) r = MDB_KEYEXIST; /* partly: redo */
        if (r == MDB_KEYEXIST) { /* not all above the list's largest id: one by one */
            r = 0;
            for (size_t q = 0; q < cnt && !r; q++) {
                int pr = postings_put(txn, d, pid, (uint32_t)a[i + q]);
                if (pr) {
                    mdb_cursor_close(cur);
                    free(vals);
                    return pr;
                }
            }
        }
        if (r) rc = idx_lmdb_err(r, "postings put");
        i = j;
    }
    mdb_cursor_close(cur);
    free(vals);
    return rc;
}

int idx_series_put(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, const tsdb_label_t *labels,
                   size_t n, int64_t mint, int64_t maxt)
{
    return idx_series_put_cached(txn, d, sid, labels, n, mint, maxt, NULL);
}

int idx_series_put_cached(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid,
                          const tsdb_label_t *labels, size_t n, int64_t mint, int64_t maxt,
                          idx_pair_cache_t *cache)
{
    if (!txn || !d || sid == 0 || maxt < mint) {
        tsdb_set_detail("index: series put: bad id or range");
        return TSDB_EINVAL;
    }
    int rc = labels_validate(txn, labels, n);
    if (rc) return rc;

    MDB_val rec;
    int found = srec_get(txn, d, sid, &rec);
    if (found < 0) return found;

    uint32_t ids_stack[32];
    uint32_t *ids = ids_stack;
    if (n > sizeof ids_stack / sizeof ids_stack[0] && !(ids = malloc(n * sizeof *ids)))
        return TSDB_ENOMEM;
    uint8_t kb[IDX_KEY_MAX];
    MDB_val k;

    if (found) {
        /* Re-put: the labels must be the ones stored. */
        u32vec_t old = {0};
        rc = srec_decode(&rec, sid, NULL, NULL, &old);
        int same = !rc && old.n == n;
        for (size_t i = 0; !rc && same && i < n; i++) {
            uint32_t id;
            pair_key(kb, labels[i].name.ptr, labels[i].name.len, labels[i].value.ptr,
                     labels[i].value.len, &k);
            int r = pair_lookup(txn, d, &k, &id);
            if (r < 0)
                rc = r;
            else
                same = r == 1 && id == old.v[i];
        }
        u32vec_free(&old);
        if (!rc && !same) {
            tsdb_set_detail("index: series %u exists with different labels", sid);
            rc = TSDB_EINVAL;
        }
        if (!rc) rc = series_widen_rec(txn, d, sid, &rec, mint, maxt); /* reads kept rec valid */
        goto out;
    }

    uint32_t next = 0;
    for (size_t i = 0; i < n; i++) {
        pair_key(kb, labels[i].name.ptr, labels[i].name.len, labels[i].value.ptr,
                 labels[i].value.len, &k);
        uint64_t h = 0;
        if (cache) {
            h = pc_hash(k.mv_data, k.mv_size);
            struct pc_ent *e = pc_slot(cache, &k, h);
            if (e->key) {
                ids[i] = e->id;
                continue;
            }
        }
        int r = pair_lookup(txn, d, &k, &ids[i]);
        if (r < 0) {
            rc = r;
            goto out;
        }
        if (r == 0) {
            pair_key(kb, labels[i].name.ptr, labels[i].name.len, labels[i].value.ptr,
                     labels[i].value.len, &k); /* mdb_get may have changed k */
            if ((rc = pair_create(txn, d, &k, &next, &ids[i]))) goto out;
        }
        if (cache) {
            pair_key(kb, labels[i].name.ptr, labels[i].name.len, labels[i].value.ptr,
                     labels[i].value.len, &k);
            pc_add(cache, &k, h, ids[i]);
        }
    }
    if (next && (rc = next_store(txn, d, next))) goto out;
    if ((rc = srec_put(txn, d, sid, mint, maxt, ids, n, 1))) goto out;
    for (size_t i = 0; i < n; i++) {
        if (cache && !post_add(cache, ids[i], sid)) continue; /* written in bulk */
        if ((rc = postings_put(txn, d, ids[i], sid))) goto out;
    }
out:
    if (ids != ids_stack) free(ids);
    return rc;
}

int idx_series_widen_cur(MDB_cursor *c, uint32_t sid, int64_t mint, int64_t maxt)
{
    if (!c || maxt < mint) return TSDB_EINVAL;
    /* Every flush widens every series it seals: only the range at the head
     * of the record changes, so the record is rewritten through a cursor
     * (in place when its size stays the same: no second search, no decode
     * of the pair ids). A cursor kept across calls in ascending sid order
     * finds the next record on the leaf page it is on, without a search
     * from the root (a flush widens millions). */
    int rc;
    uint8_t kb[4];
    be32_put(kb, sid);
    MDB_val k = {4, kb}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
    if (rc) {
        if (rc == MDB_NOTFOUND) {
            tsdb_set_detail("index: series %u not found", sid);
            return TSDB_ENOTFOUND;
        }
        return idx_lmdb_err(rc, "series get");
    }
    int64_t lo, hi;
    rc = srec_decode(&v, sid, &lo, &hi, NULL);
    if (rc || (mint >= lo && maxt <= hi)) return rc;
    const uint8_t *p = v.mv_data, *end = p + v.mv_size;
    uint64_t zz, range, n, id;
    varint_get(&p, end, &zz); /* checked by srec_decode */
    varint_get(&p, end, &range);
    const uint8_t *q = p; /* the pair ids are kept as they are, but checked */
    int bad = varint_get(&q, end, &n) != 0;
    for (uint64_t i = 0; !bad && i < n; i++)
        bad = varint_get(&q, end, &id) || id == 0 || id > UINT32_MAX;
    if (bad || q != end) return idx_corrupt("series", sid);
    size_t tail = (size_t)(end - p);
    uint8_t stackbuf[256];
    uint8_t *rec = tail + 20 <= sizeof stackbuf ? stackbuf : malloc(tail + 20);
    if (!rec) return TSDB_ENOMEM;
    int64_t nlo = mint < lo ? mint : lo, nhi = maxt > hi ? maxt : hi;
    size_t len = varint_put_raw(rec, zigzag_enc(nlo));
    len += varint_put_raw(rec + len, (uint64_t)nhi - (uint64_t)nlo);
    memcpy(rec + len, p, tail);
    len += tail;
    MDB_val nv = {len, rec};
    k = (MDB_val){4, kb}; /* not the page's copy: a size change moves the node */
    rc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT);
    if (rec != stackbuf) free(rec);
    return rc ? idx_lmdb_err(rc, "series put") : 0;
}

int idx_series_widen(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, int64_t mint, int64_t maxt)
{
    if (!txn || !d || maxt < mint) return TSDB_EINVAL;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, d->series, &c);
    if (rc) return idx_lmdb_err(rc, "series cursor");
    rc = idx_series_widen_cur(c, sid, mint, maxt);
    mdb_cursor_close(c);
    return rc;
}

int idx_series_delete(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid)
{
    if (!txn || !d) return TSDB_EINVAL;
    MDB_val rec;
    int rc = srec_get(txn, d, sid, &rec);
    if (rc < 0) return rc;
    if (rc == 0) {
        tsdb_set_detail("index: series %u not found", sid);
        return TSDB_ENOTFOUND;
    }
    u32vec_t ids = {0};
    if ((rc = srec_decode(&rec, sid, NULL, NULL, &ids))) goto out;
    uint8_t sb[4];
    be32_put(sb, sid);
    for (size_t i = 0; i < ids.n; i++) {
        uint8_t pb[4];
        be32_put(pb, ids.v[i]);
        MDB_val k = {4, pb}, v = {4, sb};
        rc = mdb_del(txn, d->postings, &k, &v);
        if (rc && rc != MDB_NOTFOUND) {
            rc = idx_lmdb_err(rc, "postings del");
            goto out;
        }
        k.mv_data = pb;
        k.mv_size = 4;
        rc = mdb_get(txn, d->postings, &k, &v);
        if (rc == 0) continue;
        if (rc != MDB_NOTFOUND) {
            rc = idx_lmdb_err(rc, "postings get");
            goto out;
        }
        /* Last series of this pair: drop the pair from the dictionary. */
        k.mv_data = pb;
        k.mv_size = 4;
        rc = mdb_get(txn, d->pairids, &k, &v);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) {
            rc = idx_lmdb_err(rc, "pairids get");
            goto out;
        }
        /* v points into the map; mdb_del of "pairs" may move pages, so copy. */
        uint8_t tb[IDX_KEY_MAX];
        if (v.mv_size > sizeof tb) {
            rc = idx_corrupt("pair", ids.v[i]);
            goto out;
        }
        memcpy(tb, v.mv_data, v.mv_size);
        MDB_val tk = {v.mv_size, tb};
        rc = mdb_del(txn, d->pairs, &tk, NULL);
        if (rc && rc != MDB_NOTFOUND) {
            rc = idx_lmdb_err(rc, "pairs del");
            goto out;
        }
        rc = mdb_del(txn, d->pairids, &k, NULL);
        if (rc && rc != MDB_NOTFOUND) {
            rc = idx_lmdb_err(rc, "pairids del");
            goto out;
        }
    }
    MDB_val sk = {4, sb};
    rc = mdb_del(txn, d->series, &sk, NULL);
    rc = rc ? idx_lmdb_err(rc, "series del") : 0;
out:
    u32vec_free(&ids);
    return rc;
}

/* ---- reading series ---------------------------------------------------- */

static int labels_reserve(idx_labels_t *l, size_t n)
{
    if (l->cap >= n) return 0;
    size_t nc = l->cap ? l->cap : 8;
    while (nc < n) nc *= 2;
    tsdb_label_t *nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return TSDB_ENOMEM;
    l->v = nv;
    l->cap = nc;
    return 0;
}

/* Materialise the labels of a decoded record: strings "name\0value\0" into
 * buf, then labels point into it (pointers are set once buf stops growing). */
static int labels_fill(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, const u32vec_t *ids,
                       idx_labels_t *labels, tbuf_t *buf)
{
    labels->n = 0;
    buf->len = 0;
    if (labels_reserve(labels, ids->n)) return TSDB_ENOMEM;
    for (size_t i = 0; i < ids->n; i++) {
        const char *np, *vp;
        size_t nl, vl;
        int rc = pair_text(txn, d, ids->v[i], &np, &nl, &vp, &vl);
        if (rc) return rc;
        labels->v[i].name.len = (uint32_t)nl;
        labels->v[i].value.len = (uint32_t)vl;
        if (tbuf_reserve(buf, nl + vl + 2)) return TSDB_ENOMEM;
        memcpy(buf->p + buf->len, np, nl + 1); /* name and its NUL */
        memcpy(buf->p + buf->len + nl + 1, vp, vl);
        buf->p[buf->len + nl + 1 + vl] = 0;
        buf->len += nl + vl + 2;
    }
    size_t off = 0;
    for (size_t i = 0; i < ids->n; i++) {
        tsdb_label_t *l = &labels->v[i];
        l->name.ptr = (const char *)buf->p + off;
        l->value.ptr = l->name.ptr + l->name.len + 1;
        off += (size_t)l->name.len + l->value.len + 2;
        if (i && bytes_cmp(l[-1].name.ptr, l[-1].name.len, l->name.ptr, l->name.len) >= 0)
            return idx_corrupt("series (label order)", sid);
    }
    labels->n = ids->n;
    return 0;
}

int idx_series_get(MDB_txn *txn, const idx_dbis_t *d, uint32_t sid, idx_labels_t *labels,
                   tbuf_t *buf, int64_t *mint, int64_t *maxt)
{
    if (!txn || !d || !labels || !buf) return TSDB_EINVAL;
    labels->n = 0;
    buf->len = 0;
    MDB_val rec;
    int rc = srec_get(txn, d, sid, &rec);
    if (rc < 0) return rc;
    if (rc == 0) {
        tsdb_set_detail("index: series %u not found", sid);
        return TSDB_ENOTFOUND;
    }
    u32vec_t ids = {0};
    int64_t lo, hi;
    rc = srec_decode(&rec, sid, &lo, &hi, &ids);
    if (!rc) rc = labels_fill(txn, d, sid, &ids, labels, buf);
    u32vec_free(&ids);
    if (rc) {
        labels->n = 0;
        return rc;
    }
    if (mint) *mint = lo;
    if (maxt) *maxt = hi;
    return 0;
}

int idx_series_foreach(MDB_txn *txn, const idx_dbis_t *d, idx_series_fn fn, void *ctx)
{
    if (!txn || !d || !fn) return TSDB_EINVAL;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, d->series, &c);
    if (rc) return idx_lmdb_err(rc, "cursor open");
    u32vec_t ids = {0};
    idx_labels_t labels = {0};
    tbuf_t buf = {0};
    MDB_val k, v;
    int op = MDB_FIRST, fnrc = 0;
    while ((rc = mdb_cursor_get(c, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        if (k.mv_size != 4) {
            rc = idx_corrupt("series key of length", (uint32_t)k.mv_size);
            break;
        }
        uint32_t sid = be32_get(k.mv_data);
        int64_t lo, hi;
        if ((rc = srec_decode(&v, sid, &lo, &hi, &ids))) break;
        if ((rc = labels_fill(txn, d, sid, &ids, &labels, &buf))) break;
        if ((fnrc = fn(ctx, sid, labels.v, labels.n, lo, hi))) break;
    }
    if (fnrc)
        rc = fnrc;
    else if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = idx_lmdb_err(rc, "series scan");
    mdb_cursor_close(c);
    u32vec_free(&ids);
    free(labels.v);
    tbuf_free(&buf);
    return rc;
}

/* ---- matchers ----------------------------------------------------------- */

typedef struct {
    tsdb_match_type_t type;
    char *name;              /* copied, NUL-terminated */
    size_t name_len;
    char *value;             /* copied, NUL-terminated (the pattern for RE/NRE) */
    size_t value_len;
    pcre2_code *re;          /* RE/NRE only */
    pcre2_match_data *md;    /* RE/NRE only: reused per match (one thread at a time) */
    int base_empty;          /* base predicate b("") (equality or regex) */
    int accepts_empty;       /* the matcher accepts "" (missing label) */
    size_t nalt;             /* > 0: pattern is the literal alternation alt[0..nalt) */
    tsdb_str_t *alt;         /* literal alternatives, pointing into value */
    size_t prefix_len;       /* every regex match begins with value[0..prefix_len) */
} idx_matcher_t;

struct idx_matchers {
    size_t n;
    idx_matcher_t m[];
};

static int is_meta(unsigned char c)
{
    return strchr("\\^$.|?*+()[]{}", c) != NULL && c != 0;
}

/* Literal alternation: no metacharacter other than '|'. */
static int matcher_literals(idx_matcher_t *m)
{
    for (size_t i = 0; i < m->value_len; i++)
        if (m->value[i] != '|' && is_meta((unsigned char)m->value[i])) return 0;
    size_t nalt = 1;
    for (size_t i = 0; i < m->value_len; i++) nalt += m->value[i] == '|';
    m->alt = calloc(nalt, sizeof *m->alt);
    if (!m->alt) return TSDB_ENOMEM;
    const char *p = m->value, *end = m->value + m->value_len;
    for (;;) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        const char *e = bar ? bar : end;
        m->alt[m->nalt].ptr = p;
        m->alt[m->nalt].len = (uint32_t)(e - p);
        m->nalt++;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Is there an alternation outside all groups? Answers 1 when unsure
 * (quoting, comments, option groups, verbs, POSIX classes). */
static int has_top_level_bar(const char *p, size_t n)
{
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 < n && p[i + 1] == 'Q') return 1;
            i++;
        } else if (c == '[') {
            i++;
            if (i < n && p[i] == '^') i++;
            if (i < n && p[i] == ']') i++;
            for (; i < n && p[i] != ']'; i++) {
                if (p[i] == '[') return 1;
                if (p[i] == '\\') i++;
            }
        } else if (c == '(') {
            if (i + 1 < n && (p[i + 1] == '*' || (p[i + 1] == '?' && (i + 2 >= n || p[i + 2] != ':'))))
                return 1;
            depth++;
        } else if (c == ')') {
            if (--depth < 0) return 1;
        } else if (c == '|' && depth == 0) {
            return 1;
        }
    }
    return depth != 0;
}

/* Literal ASCII prefix that every match must start with. */
static size_t matcher_prefix(const idx_matcher_t *m)
{
    if (has_top_level_bar(m->value, m->value_len)) return 0;
    size_t i = 0;
    while (i < m->value_len && !is_meta((unsigned char)m->value[i]) &&
           (unsigned char)m->value[i] < 0x80)
        i++;
    if (i < m->value_len && i > 0 && strchr("?*{", m->value[i])) i--; /* optional char */
    return i;
}

/* Base predicate: equality (EQ/NE) or full-match regex (RE/NRE).
 * Returns 1, 0, or a negative error. */
static int matcher_base(const idx_matcher_t *m, const char *v, size_t len)
{
    if (m->type == TSDB_MATCH_EQ || m->type == TSDB_MATCH_NE)
        return len == m->value_len && (len == 0 || memcmp(v, m->value, len) == 0);
    if (m->nalt) {
        for (size_t i = 0; i < m->nalt; i++)
            if (m->alt[i].len == len && (len == 0 || memcmp(m->alt[i].ptr, v, len) == 0))
                return 1;
        return 0;
    }
    int rc = pcre2_match(m->re, (PCRE2_SPTR)(len ? v : ""), len, 0, 0, m->md, NULL);
    if (rc >= 0) return 1;
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc == PCRE2_ERROR_NOMEMORY) return TSDB_ENOMEM;
    PCRE2_UCHAR msg[128];
    pcre2_get_error_message(rc, msg, sizeof msg);
    tsdb_set_detail("index: regex \"%s\" failed on a value: %s", m->value, (const char *)msg);
    return TSDB_EREGEX;
}

static int matcher_accepts(const idx_matcher_t *m, const char *v, size_t len)
{
    int b = matcher_base(m, v, len);
    if (b < 0) return b;
    return (m->type == TSDB_MATCH_NE || m->type == TSDB_MATCH_NRE) ? !b : b;
}

void idx_matchers_free(idx_matchers_t *mc)
{
    if (!mc) return;
    for (size_t i = 0; i < mc->n; i++) {
        idx_matcher_t *m = &mc->m[i];
        free(m->name);
        free(m->value);
        free(m->alt);
        pcre2_match_data_free(m->md);
        pcre2_code_free(m->re);
    }
    free(mc);
}

static char *dup_bytes(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = 0;
    }
    return p;
}

static int matcher_compile(const tsdb_matcher_t *in, idx_matcher_t *m)
{
    if (!in->name || !in->value || !in->name[0] || (unsigned)in->type > TSDB_MATCH_NRE) {
        tsdb_set_detail("index: matcher needs a type, a non-empty name and a value");
        return TSDB_EINVAL;
    }
    m->type = in->type;
    m->name_len = strlen(in->name);
    m->value_len = strlen(in->value);
    if (!(m->name = dup_bytes(in->name, m->name_len))) return TSDB_ENOMEM;
    if (!(m->value = dup_bytes(in->value, m->value_len))) return TSDB_ENOMEM;
    if (m->type == TSDB_MATCH_RE || m->type == TSDB_MATCH_NRE) {
        int err;
        PCRE2_SIZE off;
        /* Anchored at both ends by options rather than by wrapping the
         * pattern, so a pattern like "a)|(b" stays an error. */
        uint32_t opts = PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
        m->re = pcre2_compile((PCRE2_SPTR)m->value, m->value_len, opts, &err, &off, NULL);
        if (!m->re) {
            if (err == PCRE2_ERROR_HEAP_FAILED) return TSDB_ENOMEM;
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(err, msg, sizeof msg);
            tsdb_set_detail("invalid regex \"%s\" at offset %zu: %s", m->value, (size_t)off,
                            (const char *)msg);
            return TSDB_EREGEX;
        }
        (void)pcre2_jit_compile(m->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
        if (!(m->md = pcre2_match_data_create(1, NULL))) return TSDB_ENOMEM;
        int rc = matcher_literals(m);
        if (rc) return rc;
        m->prefix_len = matcher_prefix(m);
    }
    int b = matcher_base(m, "", 0);
    if (b < 0) return b;
    m->base_empty = b;
    m->accepts_empty = (m->type == TSDB_MATCH_NE || m->type == TSDB_MATCH_NRE) ? !b : b;
    return 0;
}

int idx_matchers_compile(const tsdb_matcher_t *m, size_t nm, idx_matchers_t **out)
{
    if (!out || (nm && !m)) return TSDB_EINVAL;
    *out = NULL;
    if (nm > (SIZE_MAX - sizeof(idx_matchers_t)) / sizeof(idx_matcher_t)) return TSDB_EINVAL;
    idx_matchers_t *mc = calloc(1, sizeof *mc + nm * sizeof(idx_matcher_t));
    if (!mc) return TSDB_ENOMEM;
    mc->n = nm;
    for (size_t i = 0; i < nm; i++) {
        int rc = matcher_compile(&m[i], &mc->m[i]);
        if (rc) {
            idx_matchers_free(mc);
            return rc;
        }
    }
    *out = mc;
    return 0;
}

int idx_matchers_all_match_empty(const idx_matchers_t *mc)
{
    if (!mc) return 1;
    for (size_t i = 0; i < mc->n; i++)
        if (!mc->m[i].accepts_empty) return 0;
    return 1;
}

int idx_labels_match(const idx_matchers_t *mc, const tsdb_label_t *labels, size_t n)
{
    if (!mc) return 1;
    for (size_t i = 0; i < mc->n; i++) {
        const idx_matcher_t *m = &mc->m[i];
        /* binary search by name in the sorted labels */
        size_t lo = 0, hi = n;
        const tsdb_label_t *hit = NULL;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = bytes_cmp(labels[mid].name.ptr, labels[mid].name.len, m->name, m->name_len);
            if (c == 0) {
                hit = &labels[mid];
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        int r = hit ? matcher_accepts(m, hit->value.ptr, hit->value.len)
                    : m->accepts_empty;
        if (r <= 0) return r;
    }
    return 1;
}

/* ---- postings reading -------------------------------------------------- */

/* Number of series in the postings of pair `pid` (0 if none). */
static int postings_count(MDB_cursor *c, uint32_t pid, size_t *count)
{
    uint8_t kb[4];
    be32_put(kb, pid);
    MDB_val k = {4, kb}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET);
    *count = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return idx_lmdb_err(rc, "postings get");
    rc = mdb_cursor_count(c, count);
    return rc ? idx_lmdb_err(rc, "postings count") : 0;
}

/* Append the postings of pair pid (ascending) to out. */
static int postings_read(MDB_cursor *c, uint32_t pid, u32vec_t *out)
{
    uint8_t kb[4];
    be32_put(kb, pid);
    MDB_val k = {4, kb}, v;
    size_t count;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return idx_lmdb_err(rc, "postings get");
    if ((rc = mdb_cursor_count(c, &count))) return idx_lmdb_err(rc, "postings count");
    if (u32vec_reserve(out, count)) return TSDB_ENOMEM;
    if (count == 1) { /* MDB_GET_MULTIPLE returns nothing for a lone value */
        if (v.mv_size != 4) return idx_corrupt("postings of pair", pid);
        out->v[out->n++] = be32_get(v.mv_data);
        return 0;
    }
    size_t got = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_GET_MULTIPLE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_MULTIPLE)) {
        if (v.mv_size % 4 || v.mv_size / 4 > count - got) return idx_corrupt("postings of pair", pid);
        const uint8_t *p = v.mv_data;
        for (size_t i = 0; i < v.mv_size / 4; i++) out->v[out->n++] = be32_get(p + 4 * i);
        got += v.mv_size / 4;
    }
    if (rc != MDB_NOTFOUND) return idx_lmdb_err(rc, "postings read");
    if (got != count) return idx_corrupt("postings of pair", pid);
    return 0;
}

/* Sorted union of the postings of pairs[0..n). */
static int postings_union(MDB_cursor *c, const u32vec_t *pairs, u32vec_t *out)
{
    out->n = 0;
    for (size_t i = 0; i < pairs->n; i++) {
        int rc = postings_read(c, pairs->v[i], out);
        if (rc) return rc;
    }
    if (pairs->n > 1) u32vec_sort_unique(out);
    return 0;
}

/* ---- selection ----------------------------------------------------------- */

typedef struct {
    const idx_matcher_t *m;
    int neg;        /* series holding a pair of `pairs` are removed, not kept */
    u32vec_t pairs; /* sorted pair ids */
    uint64_t total; /* postings in all of them */
} mplan_t;

/* Collect into p->pairs the pair ids of name whose value v has
 * b(v) != b(""), with their postings counts. */
static int plan_resolve(MDB_txn *txn, const idx_dbis_t *d, MDB_cursor *pc, mplan_t *p)
{
    const idx_matcher_t *m = p->m;
    size_t kmax = idx_key_max(txn);
    uint8_t kb[IDX_KEY_MAX];
    MDB_val k, v;
    int rc = 0;
    p->neg = m->accepts_empty;

    const tsdb_str_t *lits = NULL;
    size_t nlits = 0;
    tsdb_str_t one;
    if (!m->base_empty) { /* S = { v : b(v) }: literal lookups when b is a literal set */
        if (m->type == TSDB_MATCH_EQ || m->type == TSDB_MATCH_NE) {
            one.ptr = m->value;
            one.len = (uint32_t)m->value_len;
            lits = &one;
            nlits = 1;
        } else if (m->nalt) {
            lits = m->alt;
            nlits = m->nalt;
        }
    }
    if (lits) {
        for (size_t i = 0; i < nlits; i++) {
            if (m->name_len + 1 + lits[i].len > kmax) continue; /* cannot be stored */
            uint32_t id;
            pair_key(kb, m->name, m->name_len, lits[i].ptr, lits[i].len, &k);
            int r = pair_lookup(txn, d, &k, &id);
            if (r < 0) return r;
            if (r && (rc = u32vec_push(&p->pairs, id))) return rc;
        }
    } else {
        /* Range scan over the values of the name (from the literal prefix). */
        size_t pl = m->base_empty ? 0 : m->prefix_len;
        if (m->name_len + 1 + pl > kmax) return 0;
        pair_key(kb, m->name, m->name_len, m->value, pl, &k);
        size_t plen = k.mv_size;
        MDB_cursor *c;
        if ((rc = mdb_cursor_open(txn, d->pairs, &c))) return idx_lmdb_err(rc, "cursor open");
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size < plen || memcmp(k.mv_data, kb, plen) != 0) break;
            if (v.mv_size != 4) {
                rc = idx_corrupt("pair id of name", 0);
                break;
            }
            const char *val = (const char *)k.mv_data + m->name_len + 1;
            int b = matcher_base(m, val, k.mv_size - m->name_len - 1);
            if (b < 0) {
                rc = b;
                break;
            }
            if (b != m->base_empty && (rc = u32vec_push(&p->pairs, be32_get(v.mv_data))))
                break;
        }
        mdb_cursor_close(c);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        else if (rc > 0)
            rc = idx_lmdb_err(rc, "pairs scan");
        if (rc) return rc;
    }
    u32vec_sort_unique(&p->pairs);
    /* postings counts; drop pairs without postings */
    size_t w = 0;
    p->total = 0;
    for (size_t i = 0; i < p->pairs.n; i++) {
        size_t cnt;
        if ((rc = postings_count(pc, p->pairs.v[i], &cnt))) return rc;
        if (cnt) {
            p->pairs.v[w++] = p->pairs.v[i];
            p->total += cnt;
        }
    }
    p->pairs.n = w;
    return 0;
}

static int all_series(MDB_txn *txn, const idx_dbis_t *d, u32vec_t *out)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, d->series, &c);
    if (rc) return idx_lmdb_err(rc, "cursor open");
    MDB_stat st;
    if (!mdb_stat(txn, d->series, &st) && u32vec_reserve(out, st.ms_entries)) {
        mdb_cursor_close(c);
        return TSDB_ENOMEM;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 4) {
            rc = idx_corrupt("series key of length", (uint32_t)k.mv_size);
            break;
        }
        if ((rc = u32vec_push(out, be32_get(k.mv_data)))) break;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) return 0;
    return rc > 0 ? idx_lmdb_err(rc, "series scan") : rc;
}

/* cand = cand ∩ u (keep) or cand \ u (!keep); both sorted. */
static void merge_apply(u32vec_t *cand, const u32vec_t *u, int keep)
{
    size_t w = 0, j = 0;
    for (size_t i = 0; i < cand->n; i++) {
        uint32_t x = cand->v[i];
        while (j < u->n && u->v[j] < x) j++;
        int in = j < u->n && u->v[j] == x;
        if (in == keep) cand->v[w++] = x;
    }
    cand->n = w;
}

static int plan_cmp(const void *a, const void *b)
{
    const mplan_t *x = a, *y = b;
    if (x->total != y->total) return x->total < y->total ? -1 : 1;
    return (x->neg > y->neg) - (x->neg < y->neg);
}

int idx_select(MDB_txn *txn, const idx_dbis_t *d, const idx_matchers_t *mc, tsdb_sids_t *out)
{
    if (!txn || !d || !mc || !out) return TSDB_EINVAL;
    out->n = 0;
    mplan_t *plans = calloc(mc->n ? mc->n : 1, sizeof *plans);
    if (!plans) return TSDB_ENOMEM;
    u32vec_t cand = {0}, tmp = {0}, ids = {0};
    MDB_cursor *pc = NULL;
    int rc = mdb_cursor_open(txn, d->postings, &pc);
    if (rc) {
        free(plans);
        return idx_lmdb_err(rc, "cursor open");
    }
    size_t np = 0, first = SIZE_MAX;
    for (size_t i = 0; i < mc->n; i++) {
        plans[i].m = &mc->m[i];
        if ((rc = plan_resolve(txn, d, pc, &plans[i]))) goto out;
    }
    qsort(plans, mc->n, sizeof *plans, plan_cmp);
    /* A positive set with no postings: nothing matches. */
    for (size_t i = 0; i < mc->n; i++) {
        if (!plans[i].neg && first == SIZE_MAX) first = i;
        if (!plans[i].neg && plans[i].total == 0) goto out;
    }
    np = mc->n;
    if (first != SIZE_MAX)
        rc = postings_union(pc, &plans[first].pairs, &cand);
    else
        rc = all_series(txn, d, &cand);
    if (rc) goto out;

    /* Cheap matchers by their postings, in ascending size. */
    size_t i = 0;
    for (; i < np && cand.n; i++) {
        mplan_t *p = &plans[i];
        if (i == first || (p->neg && p->pairs.n == 0)) continue;
        if (p->total > (uint64_t)cand.n * IDX_RECORD_COST) break;
        if ((rc = postings_union(pc, &p->pairs, &tmp))) goto out;
        merge_apply(&cand, &tmp, !p->neg);
    }
    /* The rest: on each candidate's series record. */
    size_t rest = i;
    int any = 0;
    for (size_t j = rest; j < np; j++)
        any |= j != first && !(plans[j].neg && plans[j].pairs.n == 0);
    if (any && cand.n) {
        size_t w = 0;
        for (size_t c = 0; c < cand.n; c++) {
            MDB_val rec;
            int r = srec_get(txn, d, cand.v[c], &rec);
            if (r < 0) {
                rc = r;
                goto out;
            }
            if (r == 0) {
                tsdb_set_detail("index: postings name series %u, which does not exist",
                                cand.v[c]);
                rc = TSDB_ECORRUPT;
                goto out;
            }
            if ((rc = srec_decode(&rec, cand.v[c], NULL, NULL, &ids))) goto out;
            int keep = 1;
            for (size_t j = rest; keep && j < np; j++) {
                if (j == first) continue;
                int has = 0;
                for (size_t t = 0; !has && t < ids.n; t++)
                    has = u32_contains(plans[j].pairs.v, plans[j].pairs.n, ids.v[t]);
                keep = has != plans[j].neg;
            }
            if (keep) cand.v[w++] = cand.v[c];
        }
        cand.n = w;
    }
    if (cand.n && (out->cap < cand.n)) {
        tsdb_sid_t *nv = realloc(out->ids, cand.n * sizeof *nv);
        if (!nv) {
            rc = TSDB_ENOMEM;
            goto out;
        }
        out->ids = nv;
        out->cap = cand.n;
    }
    for (size_t c = 0; c < cand.n; c++) out->ids[c] = cand.v[c];
    out->n = cand.n;
out:
    if (rc) out->n = 0;
    mdb_cursor_close(pc);
    for (size_t j = 0; j < mc->n; j++) u32vec_free(&plans[j].pairs);
    free(plans);
    u32vec_free(&cand);
    u32vec_free(&tmp);
    u32vec_free(&ids);
    return rc;
}

/* ---- label names and values -------------------------------------------- */

/* Index of the first id in s[lo..n) that is >= x (s sorted ascending). */
static size_t sids_lower_bound(const tsdb_sids_t *s, size_t lo, uint32_t x)
{
    size_t hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Pair ids of the series restrict_to (missing ids are skipped: they may be
 * head-only series), sorted unique. */
static int sids_pairs(MDB_txn *txn, const idx_dbis_t *d, const tsdb_sids_t *s, u32vec_t *out)
{
    u32vec_t ids = {0};
    int rc = 0;
    size_t compact_at = 4096;
    for (size_t i = 0; i < s->n && s->ids[i] <= UINT32_MAX; i++) {
        uint32_t sid = (uint32_t)s->ids[i];
        MDB_val rec;
        int r = srec_get(txn, d, sid, &rec);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == 0) continue;
        if ((rc = srec_decode(&rec, sid, NULL, NULL, &ids))) break;
        if ((rc = u32vec_reserve(out, ids.n))) break;
        memcpy(out->v + out->n, ids.v, ids.n * sizeof *ids.v);
        out->n += ids.n;
        if (out->n > compact_at) { /* bound the memory */
            u32vec_sort_unique(out);
            compact_at = 2 * out->n + 4096;
        }
    }
    u32vec_free(&ids);
    if (!rc) u32vec_sort_unique(out);
    return rc;
}

int idx_label_names(MDB_txn *txn, const idx_dbis_t *d, const tsdb_sids_t *restrict_to,
                    tsdb_strings_t *out)
{
    if (!txn || !d || !out) return TSDB_EINVAL;
    int rc;
    if (restrict_to) {
        u32vec_t pairs = {0};
        rc = sids_pairs(txn, d, restrict_to, &pairs);
        /* Pairs of one name are not adjacent by id; push and unique. */
        const char *lastn = NULL;
        size_t lastl = 0;
        for (size_t i = 0; !rc && i < pairs.n; i++) {
            const char *np, *vp;
            size_t nl, vl;
            if ((rc = pair_text(txn, d, pairs.v[i], &np, &nl, &vp, &vl))) break;
            if (lastn && nl == lastl && memcmp(np, lastn, nl) == 0) continue;
            lastn = np;
            lastl = nl;
            rc = strings_push(out, np, nl);
        }
        u32vec_free(&pairs);
        if (!rc) strings_sort_unique(out);
        return rc;
    }
    /* Distinct names: jump from "name\0..." to "name\1". */
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, d->pairs, &c))) return idx_lmdb_err(rc, "cursor open");
    uint8_t kb[IDX_KEY_MAX + 1] = {1};
    MDB_val k = {1, kb}, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)) {
        const char *z = memchr(k.mv_data, 0, k.mv_size);
        size_t nl = z ? (size_t)(z - (const char *)k.mv_data) : 0;
        if (nl == 0 || nl >= IDX_KEY_MAX) {
            rc = idx_corrupt("pair key of length", (uint32_t)k.mv_size);
            break;
        }
        if ((rc = strings_push(out, k.mv_data, nl))) break;
        memcpy(kb, k.mv_data, nl);
        kb[nl] = 1;
        k.mv_data = kb;
        k.mv_size = nl + 1;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = idx_lmdb_err(rc, "pairs scan");
    if (!rc) strings_sort_unique(out);
    return rc;
}

/* Does the postings list of pid share a series with s? Leapfrog search:
 * alternately seek each side to the other's current id. */
static int postings_meets(MDB_cursor *pc, uint32_t pid, const tsdb_sids_t *s)
{
    size_t i = 0;
    while (i < s->n && s->ids[i] <= UINT32_MAX) {
        uint32_t x = (uint32_t)s->ids[i];
        uint8_t kb[4], vb[4];
        be32_put(kb, pid);
        be32_put(vb, x);
        MDB_val k = {4, kb}, v = {4, vb};
        int rc = mdb_cursor_get(pc, &k, &v, MDB_GET_BOTH_RANGE);
        if (rc == MDB_NOTFOUND) return 0;
        if (rc) return idx_lmdb_err(rc, "postings seek");
        if (v.mv_size != 4) return idx_corrupt("postings of pair", pid);
        uint32_t y = be32_get(v.mv_data);
        if (y == x) return 1;
        i = sids_lower_bound(s, i + 1, y);
    }
    return 0;
}

typedef struct {
    uint32_t id;
    size_t str; /* index into the values list */
    int hit;
} vpair_t;

static int vpair_cmp(const void *a, const void *b)
{
    const vpair_t *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

int idx_label_values(MDB_txn *txn, const idx_dbis_t *d, const char *name,
                     const tsdb_sids_t *restrict_to, tsdb_strings_t *out)
{
    if (!txn || !d || !name || !out) return TSDB_EINVAL;
    size_t nl = strlen(name);
    if (nl == 0 || nl + 1 > idx_key_max(txn)) return 0;
    uint8_t kb[IDX_KEY_MAX];
    MDB_val k, v;
    pair_key(kb, name, nl, "", 0, &k);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, d->pairs, &c);
    if (rc) return idx_lmdb_err(rc, "cursor open");
    tsdb_strings_t vals = {0};
    vpair_t *vp = NULL;
    size_t nvp = 0, cvp = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= nl + 1 || memcmp(k.mv_data, kb, nl + 1) != 0) break;
        const char *val = (const char *)k.mv_data + nl + 1;
        size_t vl = k.mv_size - nl - 1;
        if (!restrict_to) {
            if ((rc = strings_push(out, val, vl))) break;
            continue;
        }
        if (v.mv_size != 4) {
            rc = idx_corrupt("pair id of name", 0);
            break;
        }
        if (nvp == cvp) {
            size_t nc = cvp ? 2 * cvp : 64;
            vpair_t *nv = realloc(vp, nc * sizeof *nv);
            if (!nv) {
                rc = TSDB_ENOMEM;
                break;
            }
            vp = nv;
            cvp = nc;
        }
        vp[nvp].id = be32_get(v.mv_data);
        vp[nvp].str = vals.n;
        vp[nvp].hit = 0;
        nvp++;
        if ((rc = strings_push(&vals, val, vl))) break;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = idx_lmdb_err(rc, "pairs scan");
    if (rc || !restrict_to || nvp == 0) goto out;

    if (restrict_to->n <= 4 * nvp) {
        /* Few series: read their records. */
        u32vec_t pairs = {0};
        qsort(vp, nvp, sizeof *vp, vpair_cmp);
        rc = sids_pairs(txn, d, restrict_to, &pairs);
        for (size_t i = 0; !rc && i < pairs.n; i++) {
            vpair_t key = {pairs.v[i], 0, 0};
            vpair_t *h = bsearch(&key, vp, nvp, sizeof *vp, vpair_cmp);
            if (h) h->hit = 1;
        }
        u32vec_free(&pairs);
    } else {
        /* Few values: test each value's postings against the set. */
        MDB_cursor *pc;
        if ((rc = mdb_cursor_open(txn, d->postings, &pc))) {
            rc = idx_lmdb_err(rc, "cursor open");
            goto out;
        }
        for (size_t i = 0; i < nvp; i++) {
            int r = postings_meets(pc, vp[i].id, restrict_to);
            if (r < 0) {
                rc = r;
                break;
            }
            vp[i].hit = r;
        }
        mdb_cursor_close(pc);
    }
    for (size_t i = 0; !rc && i < nvp; i++)
        if (vp[i].hit) rc = strings_push(out, vals.v[vp[i].str], strlen(vals.v[vp[i].str]));
out:
    tsdb_strings_free(&vals);
    free(vp);
    if (!rc) strings_sort_unique(out);
    return rc;
}

/* Does fn accept some series of pair pid's postings? Reads the postings a
 * page at a time (MDB_GET_MULTIPLE) and stops at the first page fn accepts. */
static int postings_any(MDB_cursor *c, uint32_t pid, idx_sids_any_fn fn, void *ctx)
{
    uint8_t kb[4];
    be32_put(kb, pid);
    MDB_val k = {4, kb}, v;
    size_t count;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return idx_lmdb_err(rc, "postings get");
    if ((rc = mdb_cursor_count(c, &count))) return idx_lmdb_err(rc, "postings count");
    uint32_t buf[512];
    if (count == 1) {
        if (v.mv_size != 4) return idx_corrupt("postings of pair", pid);
        buf[0] = be32_get(v.mv_data);
        return fn(ctx, buf, 1);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_GET_MULTIPLE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_MULTIPLE)) {
        if (v.mv_size % 4) return idx_corrupt("postings of pair", pid);
        const uint8_t *p = v.mv_data;
        size_t n = v.mv_size / 4;
        for (size_t off = 0; off < n;) {
            size_t m = n - off < 512 ? n - off : 512;
            for (size_t i = 0; i < m; i++) buf[i] = be32_get(p + 4 * (off + i));
            int r = fn(ctx, buf, m);
            if (r) return r;
            off += m;
        }
    }
    if (rc != MDB_NOTFOUND) return idx_lmdb_err(rc, "postings read");
    return 0;
}

int idx_label_values_any(MDB_txn *txn, const idx_dbis_t *d, const char *name, idx_sids_any_fn fn,
                         void *ctx, tsdb_strings_t *out)
{
    if (!txn || !d || !fn || !out) return TSDB_EINVAL;
    size_t nl = name ? strlen(name) : 0;
    if (name && (nl == 0 || nl + 1 > idx_key_max(txn))) return 0;
    uint8_t kb[IDX_KEY_MAX + 1] = {1};
    MDB_val k = {1, kb}, v;
    if (name) pair_key(kb, name, nl, "", 0, &k);
    MDB_cursor *c, *pc;
    int rc = mdb_cursor_open(txn, d->pairs, &c);
    if (rc) return idx_lmdb_err(rc, "cursor open");
    if ((rc = mdb_cursor_open(txn, d->postings, &pc))) {
        mdb_cursor_close(c);
        return idx_lmdb_err(rc, "cursor open");
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;) {
        const char *z = memchr(k.mv_data, 0, k.mv_size);
        size_t kl = z ? (size_t)(z - (const char *)k.mv_data) : 0;
        if (name && (kl != nl || memcmp(k.mv_data, name, nl) != 0)) break;
        if (kl == 0 || kl >= IDX_KEY_MAX) {
            rc = idx_corrupt("pair key of length", (uint32_t)k.mv_size);
            break;
        }
        if (v.mv_size != 4) {
            rc = idx_corrupt("pair id of name", 0);
            break;
        }
        int hit = postings_any(pc, be32_get(v.mv_data), fn, ctx);
        if (hit < 0) {
            rc = hit;
            break;
        }
        if (hit && name) {
            rc = strings_push(out, (const char *)k.mv_data + nl + 1, k.mv_size - nl - 1);
            if (rc) break;
        }
        if (hit && !name) {
            /* one live value is enough for a name: jump to the next name */
            if ((rc = strings_push(out, k.mv_data, kl))) break;
            memcpy(kb, k.mv_data, kl);
            kb[kl] = 1;
            k.mv_data = kb;
            k.mv_size = kl + 1;
            rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
            continue;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(pc);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = idx_lmdb_err(rc, "pairs scan");
    if (!rc) strings_sort_unique(out);
    return rc;
}

/* ---- list helpers ------------------------------------------------------- */

int sids_push(tsdb_sids_t *s, tsdb_sid_t id)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        if (nc > SIZE_MAX / sizeof *s->ids) return TSDB_ENOMEM;
        tsdb_sid_t *nv = realloc(s->ids, nc * sizeof *nv);
        if (!nv) return TSDB_ENOMEM;
        s->ids = nv;
        s->cap = nc;
    }
    s->ids[s->n++] = id;
    return 0;
}

int strings_push(tsdb_strings_t *s, const char *p, size_t len)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 16;
        if (nc > SIZE_MAX / sizeof *s->v) return TSDB_ENOMEM;
        char **nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return TSDB_ENOMEM;
        s->v = nv;
        s->cap = nc;
    }
    char *c = dup_bytes(p, len);
    if (!c) return TSDB_ENOMEM;
    s->v[s->n++] = c;
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void strings_sort_unique(tsdb_strings_t *s)
{
    if (s->n < 2) return;
    qsort(s->v, s->n, sizeof *s->v, str_cmp);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->v[i], s->v[w - 1]) == 0)
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
}

void tsdb_sids_free(tsdb_sids_t *s)
{
    if (!s) return;
    free(s->ids);
    s->ids = NULL;
    s->n = s->cap = 0;
}

void tsdb_strings_free(tsdb_strings_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
