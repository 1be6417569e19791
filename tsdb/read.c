/*
 * read.c — readers, series selection, label queries and sample iterators.
 *
 * Consistency: a reader holds one LMDB read transaction (a snapshot of the
 * sealed data and index) and the flush generation it corresponds to. Head
 * samples are copied under db->mu; if a flush has committed since the
 * reader's snapshot, the transaction is renewed first (under the same lock),
 * so a sample is never missed while moving from the head to LMDB. A sample
 * seen in both places (a flush committed between the renew and the head
 * copy) is merged away by timestamp: a series never holds two samples with
 * the same timestamp.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsdb/headpack.h"
#include "tsdb/tsdb_int.h"

int tsdb_reader_open(tsdb_t *db, tsdb_reader_t **out)
{
    if (!db || !out) return TSDB_EINVAL;
    tsdb_reader_t *r = calloc(1, sizeof *r);
    if (!r) return TSDB_ENOMEM;
    r->db = db;
    pthread_mutex_lock(&db->mu);
    r->gen = db->gen;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &r->txn);
    if (!rc) db->nreaders++;
    pthread_mutex_unlock(&db->mu);
    if (rc) {
        free(r);
        return db_lmdb_err(rc, "begin read txn");
    }
    *out = r;
    return 0;
}

void tsdb_reader_close(tsdb_reader_t *r)
{
    if (!r) return;
    if (r->txn) {
        mdb_txn_abort(r->txn);
        db_reader_leave(r->db);
    }
    free(r->labels.v);
    tbuf_free(&r->labels_buf);
    for (size_t i = 0; i < sizeof r->cache / sizeof *r->cache; i++) block_reader_free(&r->cache[i].br);
    tbuf_free(&r->frag);
    free(r);
}

/* Caller holds db->mu. */
static int reader_sync_locked(tsdb_reader_t *r)
{
    if (r->gen == r->db->gen) return 0;
    mdb_txn_reset(r->txn);
    int rc = mdb_txn_renew(r->txn);
    if (rc) return db_lmdb_err(rc, "renew read txn");
    r->gen = r->db->gen;
    for (size_t i = 0; i < sizeof r->cache / sizeof *r->cache; i++) r->cache[i].valid = 0;
    return 0;
}

int tsdb_reader_refresh(tsdb_reader_t *r)
{
    if (!r) return TSDB_EINVAL;
    pthread_mutex_lock(&r->db->mu);
    r->gen = (uint64_t)-1;
    int rc = reader_sync_locked(r);
    pthread_mutex_unlock(&r->db->mu);
    return rc;
}

/* ---- select ----------------------------------------------------------------- */

static int cmp_sid(const void *a, const void *b)
{
    tsdb_sid_t x = *(const tsdb_sid_t *)a, y = *(const tsdb_sid_t *)b;
    return (x > y) - (x < y);
}

int tsdb_select(tsdb_reader_t *r, const tsdb_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                tsdb_sids_t *out)
{
    if (!r || !out || (nm && !m)) return TSDB_EINVAL;
    out->n = 0;
    idx_matchers_t *mc = NULL;
    int rc = idx_matchers_compile(m, nm, &mc);
    if (rc) return rc;
    if (nm == 0 || idx_matchers_all_match_empty(mc)) {
        idx_matchers_free(mc);
        tsdb_set_detail("a selector needs at least one matcher that does not match the empty "
                        "string");
        return TSDB_EINVAL;
    }
    tsdb_t *db = r->db;
    pthread_mutex_lock(&db->mu);
    rc = reader_sync_locked(r);
    pthread_mutex_unlock(&db->mu);
    if (!rc) rc = idx_select(r->txn, &db->idx, mc, out);
    idx_labels_t il = {0};
    pthread_mutex_lock(&db->mu);
    /* series not yet in the index: match their labels directly */
    for (size_t f = 0; !rc && f < db->nfresh; f++) {
        series_t *s = db->fresh[f];
        if (s->deleted || !s->labels) continue;
        if (labels_parse(s->labels, s->labels_len, &il)) continue;
        if (idx_labels_match(mc, il.v, il.n) == 1 && sids_push(out, s->sid)) rc = TSDB_ENOMEM;
    }
    /* time range and deletions, from the in-memory ranges */
    size_t w = 0;
    for (size_t i = 0; !rc && i < out->n; i++) {
        tsdb_sid_t sid = out->ids[i];
        series_t *s = db_sid_get(db, sid);
        if (!s || s->deleted) continue;
        if (s->maxt == INT64_MIN || s->mint > maxt || s->maxt < mint) continue;
        out->ids[w++] = sid;
    }
    if (!rc) out->n = w;
    pthread_mutex_unlock(&db->mu);
    free(il.v);
    idx_matchers_free(mc);
    if (rc) return rc;
    if (out->n > 1) qsort(out->ids, out->n, sizeof *out->ids, cmp_sid);
    w = 0;
    for (size_t i = 0; i < out->n; i++)
        if (!w || out->ids[w - 1] != out->ids[i]) out->ids[w++] = out->ids[i];
    out->n = w;
    return 0;
}

int tsdb_series_labels(tsdb_reader_t *r, tsdb_sid_t sid, const tsdb_label_t **labels, size_t *n)
{
    if (!r || !labels || !n) return TSDB_EINVAL;
    tsdb_t *db = r->db;
    pthread_mutex_lock(&db->mu);
    int rc = reader_sync_locked(r);
    series_t *s = db_sid_get(db, sid);
    if (!rc && (!s || s->deleted)) rc = TSDB_ENOTFOUND;
    int in_mem = 0;
    if (!rc && s->labels) {
        r->labels_buf.len = 0;
        if (tbuf_put(&r->labels_buf, s->labels, s->labels_len)) rc = TSDB_ENOMEM;
        in_mem = 1;
    }
    pthread_mutex_unlock(&db->mu);
    if (rc) return rc;
    if (in_mem) {
        rc = labels_parse(r->labels_buf.p, r->labels_buf.len, &r->labels);
    } else {
        int64_t a, b;
        rc = idx_series_get(r->txn, &db->idx, (uint32_t)sid, &r->labels, &r->labels_buf, &a, &b);
    }
    if (rc) return rc;
    *labels = r->labels.v;
    *n = r->labels.n;
    return 0;
}

/* Sids of series matching, without time filter, or NULL restrict when nm==0. */
static int restrict_set(tsdb_reader_t *r, const tsdb_matcher_t *m, size_t nm, tsdb_sids_t *set)
{
    return tsdb_select(r, m, nm, INT64_MIN, INT64_MAX, set);
}

/* Add the labels of head-only series (optionally restricted) through fn. */
static int add_head_labels(tsdb_reader_t *r, const tsdb_sids_t *restrict_to, const char *name,
                           tsdb_strings_t *out)
{
    tsdb_t *db = r->db;
    idx_labels_t il = {0};
    int rc = 0;
    pthread_mutex_lock(&db->mu);
    for (size_t f = 0; !rc && f < db->nfresh; f++) {
        series_t *s = db->fresh[f];
        if (s->deleted || !s->labels) continue;
        if (restrict_to) {
            tsdb_sid_t key = s->sid;
            if (!bsearch(&key, restrict_to->ids, restrict_to->n, sizeof key, cmp_sid)) continue;
        }
        if (labels_parse(s->labels, s->labels_len, &il)) continue;
        for (size_t i = 0; i < il.n && !rc; i++) {
            if (!name) {
                if (strings_push(out, il.v[i].name.ptr, il.v[i].name.len)) rc = TSDB_ENOMEM;
            } else if (il.v[i].name.len == strlen(name) &&
                       !memcmp(il.v[i].name.ptr, name, il.v[i].name.len)) {
                if (strings_push(out, il.v[i].value.ptr, il.v[i].value.len)) rc = TSDB_ENOMEM;
            }
        }
    }
    pthread_mutex_unlock(&db->mu);
    free(il.v);
    return rc;
}

int tsdb_label_names(tsdb_reader_t *r, const tsdb_matcher_t *m, size_t nm, tsdb_strings_t *out)
{
    if (!r || !out) return TSDB_EINVAL;
    tsdb_sids_t set = {0};
    int rc = 0;
    if (nm) rc = restrict_set(r, m, nm, &set);
    if (!rc) {
        pthread_mutex_lock(&r->db->mu);
        rc = reader_sync_locked(r);
        pthread_mutex_unlock(&r->db->mu);
    }
    if (!rc) rc = idx_label_names(r->txn, &r->db->idx, nm ? &set : NULL, out);
    if (!rc) rc = add_head_labels(r, nm ? &set : NULL, NULL, out);
    if (!rc) strings_sort_unique(out);
    tsdb_sids_free(&set);
    return rc;
}

int tsdb_label_values(tsdb_reader_t *r, const char *name, const tsdb_matcher_t *m, size_t nm,
                      tsdb_strings_t *out)
{
    if (!r || !out || !name) return TSDB_EINVAL;
    tsdb_sids_t set = {0};
    int rc = 0;
    if (nm) rc = restrict_set(r, m, nm, &set);
    if (!rc) {
        pthread_mutex_lock(&r->db->mu);
        rc = reader_sync_locked(r);
        pthread_mutex_unlock(&r->db->mu);
    }
    if (!rc) rc = idx_label_values(r->txn, &r->db->idx, name, nm ? &set : NULL, out);
    if (!rc) rc = add_head_labels(r, nm ? &set : NULL, name, out);
    if (!rc) strings_sort_unique(out);
    tsdb_sids_free(&set);
    return rc;
}

/* ---- label names and values over a time range ----------------------------------- */

typedef struct {
    tsdb_t *db;
    int64_t mint, maxt;
} live_ctx_t;

static int series_live(const series_t *s, int64_t mint, int64_t maxt)
{
    return s && !s->deleted && s->maxt != INT64_MIN && s->mint <= maxt && s->maxt >= mint;
}

/* Postings batch callback: does one of the series have samples in range?
 * The lock is taken per batch (at most a few hundred lookups), so appenders
 * never wait for a whole index scan. */
static int live_any(void *ctx, const uint32_t *sids, size_t n)
{
    live_ctx_t *lc = ctx;
    int hit = 0;
    pthread_mutex_lock(&lc->db->mu);
    for (size_t i = 0; i < n && !hit; i++) hit = series_live(db_sid_get(lc->db, sids[i]), lc->mint, lc->maxt);
    pthread_mutex_unlock(&lc->db->mu);
    return hit;
}

/* Label names (name == NULL) or values of `name` of the head-only series
 * with samples in [mint, maxt]. */
static int add_head_labels_range(tsdb_reader_t *r, const char *name, int64_t mint, int64_t maxt,
                                 tsdb_strings_t *out)
{
    tsdb_t *db = r->db;
    idx_labels_t il = {0};
    int rc = 0;
    size_t nl = name ? strlen(name) : 0;
    pthread_mutex_lock(&db->mu);
    for (size_t f = 0; !rc && f < db->nfresh; f++) {
        series_t *s = db->fresh[f];
        if (!s->labels || !series_live(s, mint, maxt)) continue;
        if (labels_parse(s->labels, s->labels_len, &il)) continue;
        for (size_t i = 0; i < il.n && !rc; i++) {
            if (!name) {
                if (strings_push(out, il.v[i].name.ptr, il.v[i].name.len)) rc = TSDB_ENOMEM;
            } else if (il.v[i].name.len == nl && !memcmp(il.v[i].name.ptr, name, nl)) {
                if (strings_push(out, il.v[i].value.ptr, il.v[i].value.len)) rc = TSDB_ENOMEM;
            }
        }
    }
    pthread_mutex_unlock(&db->mu);
    free(il.v);
    return rc;
}

static int labels_range(tsdb_reader_t *r, const char *name, int64_t mint, int64_t maxt,
                        tsdb_strings_t *out)
{
    if (!r || !out || mint > maxt) return TSDB_EINVAL;
    pthread_mutex_lock(&r->db->mu);
    int rc = reader_sync_locked(r);
    pthread_mutex_unlock(&r->db->mu);
    live_ctx_t lc = {r->db, mint, maxt};
    if (!rc) rc = idx_label_values_any(r->txn, &r->db->idx, name, live_any, &lc, out);
    if (!rc) rc = add_head_labels_range(r, name, mint, maxt, out);
    if (!rc) strings_sort_unique(out);
    return rc;
}

int tsdb_label_names_range(tsdb_reader_t *r, int64_t mint, int64_t maxt, tsdb_strings_t *out)
{
    return labels_range(r, NULL, mint, maxt, out);
}

int tsdb_label_values_range(tsdb_reader_t *r, const char *name, int64_t mint, int64_t maxt,
                            tsdb_strings_t *out)
{
    if (!name) return TSDB_EINVAL;
    return labels_range(r, name, mint, maxt, out);
}

/* ---- iterator ----------------------------------------------------------------- */

struct tsdb_iter {
    tsdb_reader_t *r;
    uint32_t sid, group;
    int64_t mint, maxt;
    tsdb_sample_t *head; /* head + frozen samples in range, sorted, unique */
    size_t nhead, headpos;
    int64_t next_part;   /* next partition to look at in LMDB */
    int64_t pm;          /* partition length of the series' group */
    int blocks_done;
    tsdb_sample_t *out;
    size_t nout, outcap;
};

static int cmp_sample_t(const void *a, const void *b)
{
    const tsdb_sample_t *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

static int out_reserve(tsdb_iter_t *it, size_t extra)
{
    if (it->nout + extra <= it->outcap) return 0;
    size_t nc = it->outcap ? it->outcap : 256;
    while (nc < it->nout + extra) nc *= 2;
    tsdb_sample_t *nv = realloc(it->out, nc * sizeof *nv);
    if (!nv) return TSDB_ENOMEM;
    it->out = nv;
    it->outcap = nc;
    return 0;
}

int tsdb_iter_open(tsdb_reader_t *r, tsdb_sid_t sid, int64_t mint, int64_t maxt, tsdb_iter_t **out)
{
    if (!r || !out || mint > maxt) return TSDB_EINVAL;
    tsdb_t *db = r->db;
    tsdb_iter_t *it = calloc(1, sizeof *it);
    if (!it) return TSDB_ENOMEM;
    it->r = r;
    it->sid = (uint32_t)sid;
    it->group = (uint32_t)(sid / TSDB_GROUP_SIDS);
    it->mint = mint;
    it->maxt = maxt;
    pthread_mutex_lock(&db->mu);
    it->pm = db_group_pm_locked(db, it->group);
    it->next_part = db_part_of(mint, it->pm);
    int rc = reader_sync_locked(r);
    series_t *s = db_sid_get(db, sid);
    if (!rc && (!s || s->deleted)) rc = TSDB_ENOTFOUND;
    if (!rc) {
        size_t n = (size_t)s->n + s->nfrozen;
        if (n) {
            it->head = malloc(n * sizeof *it->head);
            if (!it->head) rc = TSDB_ENOMEM;
        }
        if (!rc && s->frozen_packed) {
            tsdb_sample_t *d = it->head + it->nhead;
            if (headpack_decode(s->fpk, s->nfrozen, d)) rc = TSDB_ECORRUPT; /* never: our own bytes */
            for (uint32_t i = 0; !rc && i < s->nfrozen; i++)
                if (d[i].t >= mint && d[i].t <= maxt) it->head[it->nhead++] = d[i];
        } else {
            for (uint32_t i = 0; !rc && i < s->nfrozen; i++)
                if (s->frozen[i].t >= mint && s->frozen[i].t <= maxt) it->head[it->nhead++] = s->frozen[i];
        }
        if (!rc && s->packed) {
            /* decoded after the frozen samples, then filtered in place */
            tsdb_sample_t *d = it->head + it->nhead;
            head_pk_store(s); /* appends leave the header behind */
            if (headpack_decode(s->pk, s->n, d)) rc = TSDB_ECORRUPT; /* never: our own bytes */
            for (uint32_t i = 0; !rc && i < s->n; i++)
                if (d[i].t >= mint && d[i].t <= maxt) it->head[it->nhead++] = d[i];
        } else {
            for (uint32_t i = 0; !rc && i < s->n; i++)
                if (s->head[i].t >= mint && s->head[i].t <= maxt) it->head[it->nhead++] = s->head[i];
        }
        if (!rc && (s->sealed_maxt == INT64_MIN || s->sealed_maxt < mint || s->sealed_mint > maxt))
            it->blocks_done = 1;
    }
    pthread_mutex_unlock(&db->mu);
    if (rc) {
        tsdb_iter_close(it);
        return rc;
    }
    if (it->nhead > 1) qsort(it->head, it->nhead, sizeof *it->head, cmp_sample_t);
    size_t w = 0;
    for (size_t i = 0; i < it->nhead; i++)
        if (!w || it->head[w - 1].t != it->head[i].t) it->head[w++] = it->head[i];
    it->nhead = w;
    *out = it;
    return 0;
}

/* Append sid's samples of block `val` (key k) to it->out. */
static int add_block(tsdb_iter_t *it, const uint8_t *k, const MDB_val *val)
{
    tsdb_reader_t *r = it->r;
    const size_t nc = sizeof r->cache / sizeof *r->cache;
    struct reader_cache *c = NULL, *lru = &r->cache[0];
    for (size_t i = 0; i < nc && !c; i++) {
        if (r->cache[i].valid && !memcmp(r->cache[i].key, k, 16)) c = &r->cache[i];
        else if (!r->cache[i].valid || r->cache[i].used < lru->used) lru = &r->cache[i];
    }
    if (!c) {
        c = lru;
        c->valid = 0;
        const uint8_t *bp;
        size_t bl;
        int rc = db_block_read(r->db, r->txn, val, &r->frag, &bp, &bl);
        if (!rc) rc = block_open(&c->br, bp, bl);
        if (rc) return rc;
        memcpy(c->key, k, 16);
        c->valid = 1;
    }
    c->used = ++r->cache_clock;
    long i = block_find(&c->br, it->sid);
    if (i < 0) return 0;
    size_t cnt = c->br.counts[i], got;
    if (out_reserve(it, cnt)) return TSDB_ENOMEM;
    int rc = block_decode_series(&c->br, (uint32_t)i, it->out + it->nout, cnt, &got);
    if (rc) {
        c->valid = 0;
        return rc;
    }
    it->nout += got;
    return 0;
}

int tsdb_iter_next(tsdb_iter_t *it, const tsdb_sample_t **samples, size_t *n)
{
    if (!it || !samples || !n) return TSDB_EINVAL;
    tsdb_t *db = it->r->db;
    for (;;) {
        it->nout = 0;
        int64_t part = INT64_MAX;
        int corrupt = 0;
        if (!it->blocks_done) {
            MDB_cursor *cur;
            int rc = mdb_cursor_open(it->r->txn, db->blocks, &cur);
            if (rc) return db_lmdb_err(rc, "cursor");
            uint8_t k[16];
            db_block_key(k, it->group, it->next_part, 0);
            MDB_val key = {16, k}, val;
            int op = MDB_SET_RANGE;
            while ((rc = mdb_cursor_get(cur, &key, &val, op)) == 0) {
                op = MDB_NEXT;
                uint32_t g, seq;
                int64_t p;
                if (key.mv_size != 16) break;
                db_block_key_parse(key.mv_data, &g, &p, &seq);
                if (g != it->group || p > it->maxt) break;
                if (part == INT64_MAX) part = p;
                if (p != part) break;
                int r = add_block(it, key.mv_data, &val);
                if (r == TSDB_ECORRUPT) corrupt = 1;
                else if (r) {
                    mdb_cursor_close(cur);
                    return r;
                }
            }
            mdb_cursor_close(cur);
            if (rc && rc != MDB_NOTFOUND) return db_lmdb_err(rc, "read blocks");
            if (part == INT64_MAX) it->blocks_done = 1;
            else if (db_part_end(part, it->pm) == INT64_MAX) it->blocks_done = 1;
            else it->next_part = db_part_end(part, it->pm);
            if (corrupt) {
                pthread_mutex_lock(&db->mu);
                db->corrupt_blocks++;
                pthread_mutex_unlock(&db->mu);
                tsdb_set_detail("series %u: a block of partition %lld failed its checksum", it->sid,
                                (long long)part);
                /* drop head samples of the skipped partition too: keep order */
                while (it->headpos < it->nhead && it->head[it->headpos].t < it->next_part)
                    it->headpos++;
                return TSDB_ECORRUPT;
            }
        }
        int64_t upto = it->blocks_done ? INT64_MAX : it->next_part;
        size_t before = it->nout;
        size_t hs = it->headpos;
        while (it->headpos < it->nhead && it->head[it->headpos].t < upto) it->headpos++;
        size_t nh = it->headpos - hs;
        if (nh) {
            if (out_reserve(it, nh)) return TSDB_ENOMEM;
            memcpy(it->out + it->nout, it->head + hs, nh * sizeof *it->out);
            it->nout += nh;
        }
        /* sort (several blocks, or head samples in a sealed partition) and dedup */
        int sorted = 1;
        for (size_t i = 1; i < it->nout && sorted; i++)
            if (it->out[i - 1].t >= it->out[i].t) sorted = 0;
        if (!sorted) {
            if (it->nout > 1) qsort(it->out, it->nout, sizeof *it->out, cmp_sample_t);
            size_t w = 0;
            for (size_t i = 0; i < it->nout; i++)
                if (!w || it->out[w - 1].t != it->out[i].t) it->out[w++] = it->out[i];
            it->nout = w;
        }
        (void)before;
        /* clip to [mint, maxt] */
        size_t a = 0, b = it->nout;
        while (a < b && it->out[a].t < it->mint) a++;
        while (b > a && it->out[b - 1].t > it->maxt) b--;
        if (b > a) {
            *samples = it->out + a;
            *n = b - a;
            return 1;
        }
        if (it->blocks_done && it->headpos >= it->nhead) return 0;
    }
}

void tsdb_iter_close(tsdb_iter_t *it)
{
    if (!it) return;
    free(it->head);
    free(it->out);
    free(it);
}
