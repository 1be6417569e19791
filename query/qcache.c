/*
 * qcache.c — range-query result cache: entries keyed by (query text, step,
 * step phase, lookback), each the answer's points at the steps [s0, e0] of
 * its grid and the store generation they were computed under. One malloc'd
 * block per entry; a hash table of chains plus an LRU list; a mutex. See
 * qcache.h and docs/promql.md ("Result cache").
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/qcache.h"

typedef struct {
    pq_label_t *labels;
    size_t nlabels;
    pq_point_t *points;
    size_t npoints;
} qc_series_t;

typedef struct qc_entry {
    struct qc_entry *hnext;       /* hash chain */
    struct qc_entry *prev, *next; /* LRU: head = most recently used */
    uint64_t hash;
    char *query;
    int64_t step, phase, lookback;
    int64_t s0, e0;
    uint64_t gen;
    size_t bytes;
    qc_series_t *series;
    size_t nseries;
} qc_entry_t;

struct qapi_cache {
    pthread_mutex_t mu;
    qc_entry_t **buckets;
    size_t nbuckets; /* power of two */
    qc_entry_t *lru_head, *lru_tail;
    size_t bytes, max_bytes, entries;
    uint64_t hits, partial, misses, invalidations, evictions;
};

qapi_cache_t *qapi_cache_new(size_t max_bytes)
{
    if (!max_bytes) return NULL;
    qapi_cache_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->nbuckets = 1024;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void qapi_cache_free(qapi_cache_t *c)
{
    if (!c) return;
    for (qc_entry_t *e = c->lru_head, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void qapi_cache_stats(qapi_cache_t *c, qapi_cache_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    st->hits = c->hits;
    st->partial_hits = c->partial;
    st->misses = c->misses;
    st->invalidations = c->invalidations;
    st->evictions = c->evictions;
    st->entries = c->entries;
    st->bytes = c->bytes;
    st->max_bytes = c->max_bytes;
    pthread_mutex_unlock(&c->mu);
}

int qapi_cache_metrics(qapi_cache_t *c, tbuf_t *out)
{
    qapi_cache_stats_t st;
    qapi_cache_stats(c, &st);
    char b[2048];
    int n =
        snprintf(b, sizeof b,
                 "# HELP augur_query_cache_requests_total Range queries by what the result cache "
                 "held for them.\n"
                 "# TYPE augur_query_cache_requests_total counter\n"
                 "augur_query_cache_requests_total{result=\"hit\"} %" PRIu64 "\n"
                 "augur_query_cache_requests_total{result=\"partial\"} %" PRIu64 "\n"
                 "augur_query_cache_requests_total{result=\"miss\"} %" PRIu64 "\n"
                 "# HELP augur_query_cache_invalidations_total Cached answers dropped because the "
                 "store changed under them.\n"
                 "# TYPE augur_query_cache_invalidations_total counter\n"
                 "augur_query_cache_invalidations_total %" PRIu64 "\n"
                 "# HELP augur_query_cache_evictions_total Cached answers dropped for space.\n"
                 "# TYPE augur_query_cache_evictions_total counter\n"
                 "augur_query_cache_evictions_total %" PRIu64 "\n"
                 "# HELP augur_query_cache_entries Answers in the range-query result cache.\n"
                 "# TYPE augur_query_cache_entries gauge\n"
                 "augur_query_cache_entries %" PRIu64 "\n"
                 "# HELP augur_query_cache_bytes Bytes held by the range-query result cache.\n"
                 "# TYPE augur_query_cache_bytes gauge\n"
                 "augur_query_cache_bytes %" PRIu64 "\n"
                 "# HELP augur_query_cache_max_bytes Size limit of the range-query result cache.\n"
                 "# TYPE augur_query_cache_max_bytes gauge\n"
                 "augur_query_cache_max_bytes %" PRIu64 "\n",
                 st.hits, st.partial_hits, st.misses, st.invalidations, st.evictions, st.entries,
                 st.bytes, st.max_bytes);
    if (n < 0 || (size_t)n >= sizeof b) return -1;
    return tbuf_put(out, b, (size_t)n);
}

/* ---- keys ------------------------------------------------------------------------ */

static uint64_t key_hash(const qc_key_t *k)
{
    uint64_t h = pq_hash_bytes(0xcbf29ce484222325ULL, k->query, strlen(k->query));
    int64_t x[3] = {k->step, k->phase, k->lookback};
    return pq_hash_bytes(h, x, sizeof x);
}

static int key_eq(const qc_entry_t *e, uint64_t h, const qc_key_t *k)
{
    return e->hash == h && e->step == k->step && e->phase == k->phase &&
           e->lookback == k->lookback && !strcmp(e->query, k->query);
}

static qc_entry_t **find_slot(qapi_cache_t *c, uint64_t h, const qc_key_t *k)
{
    qc_entry_t **pp = &c->buckets[h & (c->nbuckets - 1)];
    while (*pp && !key_eq(*pp, h, k))
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(qapi_cache_t *c, qc_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(qapi_cache_t *c, qc_entry_t *e)
{
    e->prev = NULL;
    e->next = c->lru_head;
    if (c->lru_head) c->lru_head->prev = e;
    c->lru_head = e;
    if (!c->lru_tail) c->lru_tail = e;
}

/* Unlink *pp (from the chain, the LRU) and free it. */
static void remove_at(qapi_cache_t *c, qc_entry_t **pp)
{
    qc_entry_t *e = *pp;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= e->bytes;
    c->entries--;
    free(e);
}

static void remove_entry(qapi_cache_t *c, qc_entry_t *e)
{
    qc_entry_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    remove_at(c, pp);
}

/* ---- lookup ------------------------------------------------------------------------ */

int qc_labels_cmp(const pq_label_t *a, size_t na, const pq_label_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a[i].name, b[i].name);
        if (c) return c;
        c = strcmp(a[i].value, b[i].value);
        if (c) return c;
    }
    return (na > nb) - (na < nb);
}

/* First point with t >= x. */
static size_t first_at(const pq_point_t *p, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid].t < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void qc_count(qapi_cache_t *c, int hit, int partial)
{
    pthread_mutex_lock(&c->mu);
    if (hit)
        c->hits++;
    else if (partial)
        c->partial++;
    else
        c->misses++;
    pthread_mutex_unlock(&c->mu);
}

int64_t qc_lookup(qapi_cache_t *c, const qc_key_t *k, uint64_t gen, int64_t start, int64_t end,
                  pq_arena_t *a, qc_view_t **views, size_t *nviews)
{
    *views = NULL;
    *nviews = 0;
    int64_t none = start - k->step;
    uint64_t h = key_hash(k);
    pthread_mutex_lock(&c->mu);
    qc_entry_t **pp = find_slot(c, h, k);
    qc_entry_t *e = *pp;
    if (!e) goto miss;
    if (e->gen != gen) { /* the store changed: the whole entry is suspect */
        remove_at(c, pp);
        c->invalidations++;
        goto miss;
    }
    if (start < e->s0 || start > e->e0) goto miss;
    int64_t upto = end < e->e0 ? end : e->e0;
    qc_view_t *v = pq_arena_alloc(a, (e->nseries ? e->nseries : 1) * sizeof *v);
    if (!v) goto miss;
    size_t nv = 0;
    for (size_t i = 0; i < e->nseries; i++) {
        const qc_series_t *s = &e->series[i];
        size_t lo = first_at(s->points, s->npoints, start);
        size_t hi = first_at(s->points, s->npoints, upto + 1);
        if (hi <= lo) continue;
        pq_point_t *p = pq_arena_alloc(a, (hi - lo) * sizeof *p);
        pq_label_t *l = pq_arena_alloc(a, (s->nlabels ? s->nlabels : 1) * sizeof *l);
        if (!p || !l) goto miss;
        memcpy(p, s->points + lo, (hi - lo) * sizeof *p);
        for (size_t j = 0; j < s->nlabels; j++) {
            l[j].name = pq_arena_strndup(a, s->labels[j].name, strlen(s->labels[j].name));
            l[j].value = pq_arena_strndup(a, s->labels[j].value, strlen(s->labels[j].value));
            if (!l[j].name || !l[j].value) goto miss;
        }
        v[nv++] = (qc_view_t){l, s->nlabels, {p, NULL}, {hi - lo, 0}};
    }
    lru_unlink(c, e);
    lru_push_front(c, e);
    pthread_mutex_unlock(&c->mu);
    *views = v;
    *nviews = nv;
    return upto;
miss:
    pthread_mutex_unlock(&c->mu);
    return none;
}

/* ---- insert ------------------------------------------------------------------------ */

#define QC_ALIGN(x) (((x) + 15) & ~(size_t)15)

void qc_insert(qapi_cache_t *c, const qc_key_t *k, uint64_t gen, int64_t s0, int64_t e0,
               const qc_view_t *v, size_t nv)
{
    if (e0 < s0) return;
    /* size the block: entry, query text, series, labels, strings, points */
    size_t qlen = strlen(k->query);
    size_t bytes =
        QC_ALIGN(sizeof(qc_entry_t)) + QC_ALIGN(qlen + 1) + QC_ALIGN(nv * sizeof(qc_series_t));
    size_t *lo = malloc((nv ? nv : 1) * 2 * sizeof *lo);
    if (!lo) return;
    size_t ns = 0;
    for (size_t i = 0; i < nv; i++) {
        size_t cnt = 0;
        for (int r = 0; r < 2; r++) {
            size_t a = first_at(v[i].p[r], v[i].n[r], s0),
                   b = first_at(v[i].p[r], v[i].n[r], e0 + 1);
            lo[2 * i + (size_t)r] = a;
            cnt += b > a ? b - a : 0;
        }
        if (!cnt) continue;
        ns++;
        bytes += QC_ALIGN(cnt * sizeof(pq_point_t)) + QC_ALIGN(v[i].nlabels * sizeof(pq_label_t));
        size_t sb = 0;
        for (size_t j = 0; j < v[i].nlabels; j++)
            sb += strlen(v[i].labels[j].name) + strlen(v[i].labels[j].value) + 2;
        bytes += QC_ALIGN(sb);
    }
    if (bytes > c->max_bytes / 4) {
        free(lo);
        return;
    }
    unsigned char *blk = malloc(bytes);
    if (!blk) {
        free(lo);
        return;
    }
    unsigned char *p = blk;
    qc_entry_t *e = (qc_entry_t *)(void *)p;
    p += QC_ALIGN(sizeof *e);
    memset(e, 0, sizeof *e);
    e->query = (char *)p;
    memcpy(e->query, k->query, qlen + 1);
    p += QC_ALIGN(qlen + 1);
    e->series = (qc_series_t *)(void *)p;
    p += QC_ALIGN(nv * sizeof(qc_series_t));
    size_t si = 0;
    for (size_t i = 0; i < nv; i++) {
        size_t cnt = 0, a[2], b[2];
        for (int r = 0; r < 2; r++) {
            a[r] = lo[2 * i + (size_t)r];
            b[r] = first_at(v[i].p[r], v[i].n[r], e0 + 1);
            if (b[r] < a[r]) b[r] = a[r];
            cnt += b[r] - a[r];
        }
        if (!cnt) continue;
        qc_series_t *s = &e->series[si++];
        s->points = (pq_point_t *)(void *)p;
        p += QC_ALIGN(cnt * sizeof(pq_point_t));
        s->npoints = 0;
        for (int r = 0; r < 2; r++) {
            if (b[r] > a[r])
                memcpy(s->points + s->npoints, v[i].p[r] + a[r],
                       (b[r] - a[r]) * sizeof(pq_point_t));
            s->npoints += b[r] - a[r];
        }
        s->labels = (pq_label_t *)(void *)p;
        s->nlabels = v[i].nlabels;
        p += QC_ALIGN(v[i].nlabels * sizeof(pq_label_t));
        for (size_t j = 0; j < v[i].nlabels; j++) {
            size_t ln = strlen(v[i].labels[j].name) + 1, lv = strlen(v[i].labels[j].value) + 1;
            memcpy(p, v[i].labels[j].name, ln);
            s->labels[j].name = (const char *)p;
            p += ln;
            memcpy(p, v[i].labels[j].value, lv);
            s->labels[j].value = (const char *)p;
            p += lv;
        }
        p = blk + QC_ALIGN((size_t)(p - blk)); /* the next series' points */
    }
    free(lo);
    e->nseries = si;
    e->hash = key_hash(k);
    e->step = k->step;
    e->phase = k->phase;
    e->lookback = k->lookback;
    e->s0 = s0;
    e->e0 = e0;
    e->gen = gen;
    e->bytes = bytes;
    pthread_mutex_lock(&c->mu);
    qc_entry_t **pp = find_slot(c, e->hash, k);
    if (*pp) remove_at(c, pp);
    while (c->lru_tail && c->bytes + bytes > c->max_bytes) {
        remove_entry(c, c->lru_tail);
        c->evictions++;
    }
    e->hnext = c->buckets[e->hash & (c->nbuckets - 1)];
    c->buckets[e->hash & (c->nbuckets - 1)] = e;
    lru_push_front(c, e);
    c->bytes += bytes;
    c->entries++;
    pthread_mutex_unlock(&c->mu);
}

/* ---- cacheability -------------------------------------------------------------------- */

static int64_t lookahead(const pq_node_t *n)
{
    int64_t a = -1, b;
    switch (n->kind) {
    case PQ_N_VSEL:
    case PQ_N_MSEL:
        if (n->u.sel.at != PQ_AT_NONE || n->u.sel.offset_ms == INT64_MIN) return -1;
        return n->u.sel.offset_ms < 0 ? -n->u.sel.offset_ms : 0;
    case PQ_N_SUBQ:
        if (n->u.subq.at != PQ_AT_NONE) return -1;
        a = lookahead(n->u.subq.expr);
        if (a < 0) return -1;
        if (__builtin_sub_overflow(a, n->u.subq.offset_ms, &a)) return -1;
        return a > 0 ? a : 0;
    case PQ_N_CALL:
        a = 0;
        for (size_t i = 0; i < n->u.call.nargs; i++) {
            b = lookahead(n->u.call.args[i]);
            if (b < 0) return -1;
            if (b > a) a = b;
        }
        return a;
    case PQ_N_AGG:
        a = lookahead(n->u.agg.expr);
        if (a >= 0 && n->u.agg.param) {
            b = lookahead(n->u.agg.param);
            a = b < 0 ? -1 : (b > a ? b : a);
        }
        return a;
    case PQ_N_BIN:
        a = lookahead(n->u.bin.lhs);
        b = lookahead(n->u.bin.rhs);
        return a < 0 || b < 0 ? -1 : (a > b ? a : b);
    case PQ_N_NEG:
    case PQ_N_PAREN:
        return lookahead(n->u.un.expr);
    default:
        return 0;
    }
}

int64_t qc_lookahead(const pq_expr_t *e)
{
    return e && e->root ? lookahead(e->root) : -1;
}
