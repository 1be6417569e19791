/*
 * promql_eval.c — PromQL evaluator: loading selector data from the store,
 * per-step evaluation of selectors, subqueries, operators and aggregations.
 *
 * Strategy: before evaluating, every selector's data is loaded once for the
 * whole query window (what all steps need: [start - offset - range or
 * lookback, end - offset]), into the query's arena. Each step then evaluates
 * the tree at one timestamp with binary searches into that data; values of a
 * step live in a scratch arena that is reset after the step.
 *
 * Failures (limits, timeouts, execution errors, allocation failure) unwind
 * with longjmp to promql_eval(); every resource is in the two arenas or in
 * the ctx's to_free list, so nothing leaks.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/promql_int.h"

/* ---- context helpers ----------------------------------------------------- */

_Noreturn void pq_fail(pq_ctx_t *c, int code, const char *fmt, ...)
{
    if (c->errbuf && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errbuf, c->errlen, fmt, ap);
        va_end(ap);
    }
    c->err = code;
    longjmp(c->jb, 1);
}

void *pq_talloc(pq_ctx_t *c, size_t n)
{
    void *p = pq_arena_alloc(&c->tmp, n);
    if (!p) pq_fail(c, PQ_ENOMEM, "out of memory");
    return p;
}

void *pq_palloc(pq_ctx_t *c, size_t n)
{
    void *p = pq_arena_alloc(&c->perm, n);
    if (!p) pq_fail(c, PQ_ENOMEM, "out of memory");
    return p;
}

const pq_labels_t *pq_cintern(pq_ctx_t *c, const pq_label_t *l, size_t n, int copy)
{
    const pq_labels_t *r = pq_intern(&c->intern, l, n, copy);
    if (!r) pq_fail(c, PQ_ENOMEM, "out of memory");
    return r;
}

const pq_labels_t *pq_drop_name(pq_ctx_t *c, const pq_labels_t *m)
{
    if (m->noname) return m->noname;
    const pq_labels_t *r = m;
    if (pq_labels_get(m, "__name__")) {
        pq_label_t tmp[256];
        pq_label_t *l = m->n <= 256 ? tmp : pq_talloc(c, m->n * sizeof *l);
        size_t k = 0;
        for (uint32_t i = 0; i < m->n; i++)
            if (strcmp(m->l[i].name, "__name__")) l[k++] = m->l[i];
        r = pq_cintern(c, l, k, 0);
    }
    ((pq_labels_t *)m)->noname = r; /* interned sets live in the query's arena */
    return r;
}

/* Memo of (key, label set) -> label set for the query, e.g. the grouping
 * signature of a series under one aggregation node. */
static size_t memo_slot(const pq_ctx_t *c, const void *k1, const void *k2)
{
    uint64_t h = ((uint64_t)(uintptr_t)k1 * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)(uintptr_t)k2 * 0xc2b2ae3d27d4eb4fULL);
    return (size_t)(h ^ (h >> 31)) & (c->memo_cap - 1);
}

static const pq_labels_t *memo_get(pq_ctx_t *c, const void *k1, const void *k2)
{
    if (!c->memo_cap) return NULL;
    for (size_t j = memo_slot(c, k1, k2); c->memo[j].k1; j = (j + 1) & (c->memo_cap - 1))
        if (c->memo[j].k1 == k1 && c->memo[j].k2 == k2) return c->memo[j].v;
    return NULL;
}

static void memo_put(pq_ctx_t *c, const void *k1, const void *k2, const void *v)
{
    if ((c->memo_n + 1) * 2 > c->memo_cap) {
        size_t nc = c->memo_cap ? c->memo_cap * 2 : 1024;
        struct pq_memo *old = c->memo;
        size_t oc = c->memo_cap;
        c->memo = calloc(nc, sizeof *c->memo);
        if (!c->memo) {
            c->memo = old;
            pq_fail(c, PQ_ENOMEM, "out of memory");
        }
        c->memo_cap = nc;
        for (size_t i = 0; i < oc; i++) {
            if (!old[i].k1) continue;
            size_t j = memo_slot(c, old[i].k1, old[i].k2);
            while (c->memo[j].k1) j = (j + 1) & (nc - 1);
            c->memo[j] = old[i];
        }
        free(old);
    }
    size_t j = memo_slot(c, k1, k2);
    while (c->memo[j].k1) j = (j + 1) & (c->memo_cap - 1);
    c->memo[j] = (struct pq_memo){k1, k2, v};
    c->memo_n++;
}

const pq_labels_t *pq_labels_set(pq_ctx_t *c, const pq_labels_t *m, const char *name,
                                 const char *value)
{
    pq_label_t *l = pq_talloc(c, (m->n + 1) * sizeof *l);
    size_t k = 0;
    int done = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        int cmp = strcmp(m->l[i].name, name);
        if (!done && cmp >= 0) {
            if (*value) {
                l[k].name = name;
                l[k].value = value;
                k++;
            }
            done = 1;
            if (cmp == 0) continue;
        }
        l[k++] = m->l[i];
    }
    if (!done && *value) {
        l[k].name = name;
        l[k].value = value;
        k++;
    }
    return pq_cintern(c, l, k, 1);
}

void pq_defer(pq_ctx_t *c, void (*fn)(void *), void *p)
{
    if (c->ndefer == c->capdefer) {
        size_t nc = c->capdefer ? c->capdefer * 2 : 8;
        struct pq_defer *nd = realloc(c->defer, nc * sizeof *nd);
        if (!nd) {
            fn(p);
            pq_fail(c, PQ_ENOMEM, "out of memory");
        }
        c->defer = nd;
        c->capdefer = nc;
    }
    c->defer[c->ndefer].fn = fn;
    c->defer[c->ndefer++].p = p;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void pq_check_deadline(pq_ctx_t *c)
{
    if ((++c->tick & 255) != 0) return;
    if (mono_ns() > c->deadline_ns)
        pq_fail(c, PQ_ETIMEOUT, "query timed out in expression evaluation");
}

void pq_count_samples(pq_ctx_t *c, uint64_t n)
{
    c->samples_loaded += n;
    if (c->samples_loaded > c->max_samples)
        pq_fail(c, PQ_ESAMPLES, "query processing would load too many samples into memory in query execution");
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    if (b > 0 && a < INT64_MIN + b) return INT64_MIN;
    if (b < 0 && a > INT64_MAX + b) return INT64_MAX;
    return a - b;
}

int64_t pq_sel_eval_time(pq_ctx_t *c, pq_at_kind_t at, int64_t at_ms, int64_t ts)
{
    switch (at) {
    case PQ_AT_TIME: return at_ms;
    case PQ_AT_START: return c->start;
    case PQ_AT_END: return c->end;
    default: return ts;
    }
}

/* Hash map from interned label set to a small index (insertion ordered). */
typedef struct {
    const pq_labels_t **keys;
    size_t *vals;
    size_t cap, n;
    pq_arena_t *arena;
} lmap_t;

static void lmap_init_in(pq_ctx_t *c, pq_arena_t *a, lmap_t *m, size_t hint)
{
    size_t cap = 16;
    while (cap < hint * 2) cap *= 2;
    m->arena = a;
    m->keys = pq_arena_alloc(a, cap * sizeof *m->keys);
    m->vals = pq_arena_alloc(a, cap * sizeof *m->vals);
    if (!m->keys || !m->vals) pq_fail(c, PQ_ENOMEM, "out of memory");
    memset(m->keys, 0, cap * sizeof *m->keys);
    m->cap = cap;
    m->n = 0;
}

static void lmap_init(pq_ctx_t *c, lmap_t *m, size_t hint)
{
    lmap_init_in(c, &c->tmp, m, hint);
}

/* Returns the slot's value pointer; *found tells whether it existed. */
static size_t *lmap_get(pq_ctx_t *c, lmap_t *m, const pq_labels_t *k, int *found)
{
    if ((m->n + 1) * 2 > m->cap) {
        lmap_t nm;
        lmap_init_in(c, m->arena, &nm, m->cap);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t j = m->keys[i]->hash & (nm.cap - 1);
            while (nm.keys[j]) j = (j + 1) & (nm.cap - 1);
            nm.keys[j] = m->keys[i];
            nm.vals[j] = m->vals[i];
        }
        nm.n = m->n;
        *m = nm;
    }
    size_t j = k->hash & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == k) {
            *found = 1;
            return &m->vals[j];
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = k;
    m->n++;
    *found = 0;
    return &m->vals[j];
}

/* ---- loading --------------------------------------------------------------- */

static void free_sbuf(void *p)
{
    tbuf_free(p);
    free(p);
}

/* Series ids of a selector over [mint, maxt], copied into the arena. */
static tsdb_sid_t *select_ids(pq_ctx_t *c, const pq_node_t *n, int64_t mint, int64_t maxt, size_t *ns)
{
    size_t nm = n->u.sel.nm;
    tsdb_matcher_t *m = pq_palloc(c, (nm ? nm : 1) * sizeof *m);
    for (size_t i = 0; i < nm; i++) {
        m[i].type = n->u.sel.m[i].type;
        m[i].name = n->u.sel.m[i].name;
        m[i].value = n->u.sel.m[i].value;
    }
    tsdb_sids_t sids = {0};
    int rc = tsdb_select(c->reader, m, nm, mint, maxt, &sids);
    if (rc) {
        tsdb_sids_free(&sids);
        if (rc == TSDB_ENOMEM) pq_fail(c, PQ_ENOMEM, "out of memory");
        if (rc == TSDB_EREGEX || rc == TSDB_EINVAL)
            pq_fail(c, PQ_EEXEC, "invalid selector: %s", tsdb_last_error_detail());
        pq_fail(c, PQ_ESTORE, "store: %s (%s)", tsdb_strerror(rc), tsdb_last_error_detail());
    }
    /* copy the ids into the arena so that a failure below cannot leak them */
    *ns = sids.n;
    tsdb_sid_t *ids = pq_arena_alloc(&c->perm, (sids.n ? sids.n : 1) * sizeof *ids);
    if (!ids) {
        tsdb_sids_free(&sids);
        pq_fail(c, PQ_ENOMEM, "out of memory");
    }
    if (sids.n) memcpy(ids, sids.ids, sids.n * sizeof *ids);
    tsdb_sids_free(&sids);
    return ids;
}

/* Labels of one series, interned; NULL for a deleted series. */
static const pq_labels_t *load_labels(pq_ctx_t *c, tsdb_sid_t sid)
{
    pq_check_deadline(c);
    const tsdb_label_t *tl;
    size_t ntl;
    int rc = tsdb_series_labels(c->reader, sid, &tl, &ntl);
    if (rc == TSDB_ENOTFOUND) return NULL;
    if (rc) pq_fail(c, PQ_ESTORE, "store: %s", tsdb_strerror(rc));
    pq_label_t tmp[64];
    pq_label_t *pl = ntl <= 64 ? tmp : pq_palloc(c, ntl * sizeof *pl);
    for (size_t j = 0; j < ntl; j++) {
        char *nm_ = pq_arena_strndup(&c->perm, tl[j].name.ptr, tl[j].name.len);
        char *vl = pq_arena_strndup(&c->perm, tl[j].value.ptr, tl[j].value.len);
        if (!nm_ || !vl) pq_fail(c, PQ_ENOMEM, "out of memory");
        pl[j].name = nm_;
        pl[j].value = vl;
    }
    return pq_cintern(c, pl, ntl, 0);
}

typedef struct {
    const pq_labels_t *m;
    tsdb_sid_t sid;
    size_t pos; /* after select_sorted: the position in label order of the i-th series by id */
} lsid_t;

static int cmp_lsid(const void *a, const void *b)
{
    return pq_labels_cmp(((const lsid_t *)a)->m, ((const lsid_t *)b)->m);
}

/* The selected series with their labels, in Prometheus' order (sorted by
 * label set): the order of a selector's vector, which decides ties in
 * topk/bottomk, the order of groups, and the order of float additions.
 * Samples should still be read in id order (v[v[i].pos].sid for i = 0, 1,
 * ...): series of one block have neighbouring ids, so the reader's block
 * cache is hit instead of decompressing a block once per series. */
static lsid_t *select_sorted(pq_ctx_t *c, const pq_node_t *n, int64_t mint, int64_t maxt, size_t *ns)
{
    size_t nids;
    tsdb_sid_t *ids = select_ids(c, n, mint, maxt, &nids);
    lsid_t *v = pq_palloc(c, (nids ? nids : 1) * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < nids; i++) {
        const pq_labels_t *m = load_labels(c, ids[i]);
        if (m) {
            v[k] = (lsid_t){m, ids[i], k};
            k++;
        }
    }
    if (k > 1) qsort(v, k, sizeof *v, cmp_lsid);
    size_t *inv = pq_palloc(c, (k ? k : 1) * sizeof *inv);
    for (size_t p = 0; p < k; p++) inv[v[p].pos] = p;
    for (size_t i = 0; i < k; i++) v[i].pos = inv[i];
    *ns = k;
    return v;
}

/* Samples of one series over [mint, maxt] in c->sbuf (reused from series
 * to series), counted against max_samples. Returns the count. */
static size_t load_samples(pq_ctx_t *c, tsdb_sid_t sid, int64_t mint, int64_t maxt, tsdb_sample_t **out)
{
    pq_check_deadline(c);
    int rc;
    if (!c->sbuf) {
        tbuf_t *b = calloc(1, sizeof *b);
        if (!b) pq_fail(c, PQ_ENOMEM, "out of memory");
        pq_defer(c, free_sbuf, b);
        c->sbuf = b;
    }
    tbuf_t *buf = c->sbuf;
    buf->len = 0;
    tsdb_iter_t *it = NULL;
    rc = tsdb_iter_open(c->reader, sid, mint, maxt, &it);
    if (rc) pq_fail(c, rc == TSDB_ENOMEM ? PQ_ENOMEM : PQ_ESTORE, "store: %s", tsdb_strerror(rc));
    const tsdb_sample_t *s;
    size_t sn;
    int fail = 0;
    for (;;) {
        rc = tsdb_iter_next(it, &s, &sn);
        if (rc == 0) break;
        if (rc == TSDB_ECORRUPT) continue;
        if (rc < 0) {
            fail = rc;
            break;
        }
        if (tbuf_put(buf, s, sn * sizeof *s)) {
            fail = TSDB_ENOMEM;
            break;
        }
    }
    tsdb_iter_close(it);
    if (fail) pq_fail(c, fail == TSDB_ENOMEM ? PQ_ENOMEM : PQ_ESTORE, "store: %s", tsdb_strerror(fail));
    size_t cnt = buf->len / sizeof(tsdb_sample_t);
    pq_count_samples(c, cnt);
    *out = (tsdb_sample_t *)buf->p;
    return cnt;
}

static void load_selector(pq_ctx_t *c, pq_node_t *n, int64_t mint, int64_t maxt)
{
    pq_loaded_t *d = pq_palloc(c, sizeof *d);
    memset(d, 0, sizeof *d);
    n->u.sel.data = d;
    if (mint > maxt) return;
    size_t ns;
    lsid_t *ids = select_sorted(c, n, mint, maxt, &ns);
    d->labels = pq_palloc(c, (ns ? ns : 1) * sizeof *d->labels);
    d->samples = pq_palloc(c, (ns ? ns : 1) * sizeof *d->samples);
    d->nsamples = pq_palloc(c, (ns ? ns : 1) * sizeof *d->nsamples);
    d->has_stale = pq_palloc(c, ns ? ns : 1);
    for (size_t i = 0; i < ns; i++) {
        size_t p = ids[i].pos;
        tsdb_sample_t *s;
        size_t cnt = load_samples(c, ids[p].sid, mint, maxt, &s);
        d->labels[p] = ids[p].m;
        d->nsamples[p] = cnt;
        if (!cnt) continue;
        tsdb_sample_t *arr = pq_palloc(c, cnt * sizeof *arr);
        memcpy(arr, s, cnt * sizeof *arr);
        int stale = 0;
        for (size_t j = 0; j < cnt; j++)
            if (pq_is_stale(arr[j].v)) stale = 1;
        d->samples[p] = arr;
        d->has_stale[p] = (uint8_t)stale;
    }
    size_t k = 0; /* drop series without samples, keeping the order */
    for (size_t p = 0; p < ns; p++) {
        if (!d->nsamples[p]) continue;
        d->labels[k] = d->labels[p];
        d->samples[k] = d->samples[p];
        d->nsamples[k] = d->nsamples[p];
        d->has_stale[k] = d->has_stale[p];
        k++;
    }
    d->n = k;
}

/* Sweep a range function over a selector for every top-level step: each
 * series is loaded, evaluated at all steps and dropped before the next, so
 * memory is one series' samples plus the values. */
static void load_sweep(pq_ctx_t *c, pq_node_t *call, pq_node_t *sel, int64_t mint, int64_t maxt)
{
    int id = call->u.call.fn->id;
    pq_sweep_t *sw = pq_palloc(c, sizeof *sw);
    memset(sw, 0, sizeof *sw);
    sw->nsteps = c->nsteps;
    call->u.call.sweep = sw;
    /* the selector itself keeps no data */
    pq_loaded_t *d = pq_palloc(c, sizeof *d);
    memset(d, 0, sizeof *d);
    sel->u.sel.data = d;
    if (mint > maxt) return;
    size_t ns;
    lsid_t *ids = select_sorted(c, sel, mint, maxt, &ns);
    size_t cells = ns * sw->nsteps;
    if (ns && cells / ns != sw->nsteps) pq_fail(c, PQ_ENOMEM, "out of memory");
    sw->labels = pq_palloc(c, (ns ? ns : 1) * sizeof *sw->labels);
    sw->vals = pq_palloc(c, (cells ? cells : 1) * sizeof *sw->vals);
    sw->present = pq_palloc(c, cells ? cells : 1);
    memset(sw->present, 0, cells);
    sw->n = ns;
    for (size_t j = 0; j < ns; j++) sw->labels[j] = NULL; /* NULL: no value at any step */
    for (size_t i = 0; i < ns; i++) {
        size_t p = ids[i].pos;
        tsdb_sample_t *s;
        size_t cnt = load_samples(c, ids[p].sid, mint, maxt, &s);
        size_t w = 0; /* staleness markers never enter a range vector */
        for (size_t j = 0; j < cnt; j++)
            if (!pq_is_stale(s[j].v)) s[w++] = s[j];
        if (!w) continue; /* column p stays absent (present was zeroed) */
        pq_sweep_series(c, id, s, w, c->start - sel->u.sel.offset_ms, c->step, sw->nsteps,
                        sel->u.sel.range_ms, sw->vals + p, sw->present + p, ns);
        sw->labels[p] = id == PQ_F_LAST_OVER_TIME ? ids[p].m : pq_drop_name(c, ids[p].m);
    }
    size_t k = ns;
    /* series that share output labels: the per-step duplicate check applies */
    if (k > 1) {
        pq_arena_mark_t mk = pq_arena_mark(&c->tmp);
        lmap_t m;
        lmap_init(c, &m, k);
        for (size_t j = 0; j < k && !sw->maybe_dup; j++) {
            int found;
            if (!sw->labels[j]) continue;
            lmap_get(c, &m, sw->labels[j], &found);
            if (found) sw->maybe_dup = 1;
        }
        pq_arena_reset(&c->tmp, mk);
    }
}

static pq_node_t *unparen(pq_node_t *n)
{
    while (n->kind == PQ_N_PAREN) n = n->u.un.expr;
    return n;
}

/* The vector of a swept call at top-level time ts; idx (if not NULL)
 * receives each sample's series column. */
pq_value_t pq_sweep_vector(pq_ctx_t *c, pq_node_t *n, int64_t ts, const uint32_t **idx)
{
    const pq_sweep_t *sw = n->u.call.sweep;
    pq_value_t r = {.type = PQ_T_VECTOR};
    size_t i = c->nsteps > 1 ? (size_t)((ts - c->start) / c->step) : 0;
    if (i >= sw->nsteps || c->start + (int64_t)i * c->step != ts)
        pq_fail(c, PQ_EEXEC, "internal error: swept function evaluated off its step grid");
    r.vec.s = pq_talloc(c, (sw->n ? sw->n : 1) * sizeof *r.vec.s);
    uint32_t *ix = idx ? pq_talloc(c, (sw->n ? sw->n : 1) * sizeof *ix) : NULL;
    const uint8_t *pr = sw->present + i * sw->n;
    const double *vv = sw->vals + i * sw->n;
    for (size_t j = 0; j < sw->n; j++) {
        if (!pr[j]) continue;
        if (ix) ix[r.vec.n] = (uint32_t)j;
        r.vec.s[r.vec.n++] = (pq_sample_t){sw->labels[j], vv[j], ts};
    }
    if (sw->maybe_dup) pq_vec_check_dups(c, &r.vec);
    if (idx) *idx = ix;
    return r;
}

static const pq_labels_t *signature_memo(pq_ctx_t *c, const void *node, const pq_labels_t *m, int on,
                                         char **names, size_t nn);

/* Can this call be swept on the top-level grid? A sweepable function of a
 * plain range selector (no @), with no overflow in its time arithmetic. */
static pq_node_t *sweep_selector(pq_ctx_t *c, pq_node_t *n)
{
    if (n->kind != PQ_N_CALL || n->u.call.nargs != 1 || !pq_sweepable(n->u.call.fn->id)) return NULL;
    pq_node_t *a = unparen(n->u.call.args[0]);
    if (a->kind != PQ_N_MSEL || a->u.sel.at != PQ_AT_NONE) return NULL;
    int64_t x;
    if (__builtin_sub_overflow(c->start, a->u.sel.offset_ms, &x) ||
        __builtin_sub_overflow(x, a->u.sel.range_ms, &x) ||
        __builtin_sub_overflow(c->end, a->u.sel.offset_ms, &x))
        return NULL;
    return a;
}

/* Walk the tree with the interval [s, e] of evaluation times each node will
 * see, and load every selector for the window it needs. `grid`: the node is
 * evaluated exactly at the top-level steps (not inside a subquery), so a
 * range function over a selector can be swept (load_sweep). */
static void preload(pq_ctx_t *c, pq_node_t *n, int64_t s, int64_t e, int grid)
{
    switch (n->kind) {
    case PQ_N_VSEL:
    case PQ_N_MSEL: {
        if (n->u.sel.at != PQ_AT_NONE) s = e = pq_sel_eval_time(c, n->u.sel.at, n->u.sel.at_ms, s);
        int64_t back = n->kind == PQ_N_VSEL ? c->lookback : n->u.sel.range_ms;
        int64_t maxt = sat_sub(e, n->u.sel.offset_ms);
        int64_t mint = sat_sub(sat_sub(s, n->u.sel.offset_ms), back);
        load_selector(c, n, mint, maxt);
        break;
    }
    case PQ_N_SUBQ:
        if (n->u.subq.at != PQ_AT_NONE) s = e = pq_sel_eval_time(c, n->u.subq.at, n->u.subq.at_ms, s);
        preload(c, n->u.subq.expr, sat_sub(sat_sub(s, n->u.subq.offset_ms), n->u.subq.range_ms),
                sat_sub(e, n->u.subq.offset_ms), 0);
        break;
    case PQ_N_CALL: {
        n->u.call.sweep = NULL;
        pq_node_t *sel = grid ? sweep_selector(c, n) : NULL;
        if (sel) {
            int64_t maxt = e - sel->u.sel.offset_ms;
            int64_t mint = s - sel->u.sel.offset_ms - sel->u.sel.range_ms;
            load_sweep(c, n, sel, mint, maxt);
            break;
        }
        for (size_t i = 0; i < n->u.call.nargs; i++) preload(c, n->u.call.args[i], s, e, grid);
        break;
    }
    case PQ_N_AGG: {
        n->u.agg.gid = NULL;
        n->u.agg.ngid = 0;
        preload(c, n->u.agg.expr, s, e, grid);
        if (n->u.agg.param) preload(c, n->u.agg.param, s, e, grid);
        pq_node_t *ch = unparen(n->u.agg.expr);
        if (ch->kind == PQ_N_CALL && ch->u.call.sweep && n->u.agg.op != PQ_AGG_COUNT_VALUES) {
            /* group of each swept series, once for the query */
            const pq_sweep_t *sw = ch->u.call.sweep;
            uint32_t *gid = pq_palloc(c, (sw->n ? sw->n : 1) * sizeof *gid);
            pq_arena_mark_t mk = pq_arena_mark(&c->tmp);
            lmap_t m;
            lmap_init(c, &m, sw->n);
            size_t ng = 0;
            for (size_t j = 0; j < sw->n; j++) {
                if (!sw->labels[j]) { /* never present */
                    gid[j] = 0;
                    continue;
                }
                const pq_labels_t *key = signature_memo(c, n, sw->labels[j], !n->u.agg.without,
                                                        n->u.agg.grouping, n->u.agg.ngrouping);
                int found;
                size_t *slot = lmap_get(c, &m, key, &found);
                if (!found) *slot = ng++;
                gid[j] = (uint32_t)*slot;
            }
            pq_arena_reset(&c->tmp, mk);
            n->u.agg.gid = gid;
            n->u.agg.ngid = ng;
        }
        break;
    }
    case PQ_N_BIN:
        preload(c, n->u.bin.lhs, s, e, grid);
        preload(c, n->u.bin.rhs, s, e, grid);
        break;
    case PQ_N_NEG:
    case PQ_N_PAREN: preload(c, n->u.un.expr, s, e, grid); break;
    default: break;
    }
}

/* ---- selectors ------------------------------------------------------------ */

/* Index of the first sample with t > x (upper bound). */
static size_t upper_bound(const tsdb_sample_t *s, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].t <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static size_t lower_bound(const tsdb_sample_t *s, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].t < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void pq_loaded_slice(pq_ctx_t *c, const pq_loaded_t *d, size_t i, int64_t mint, int64_t maxt,
                     const tsdb_sample_t **s, size_t *n)
{
    const tsdb_sample_t *a = d->samples[i];
    size_t lo = lower_bound(a, d->nsamples[i], mint);
    size_t hi = upper_bound(a, d->nsamples[i], maxt);
    if (hi <= lo) {
        *s = NULL;
        *n = 0;
        return;
    }
    if (!d->has_stale[i]) {
        *s = a + lo;
        *n = hi - lo;
        return;
    }
    tsdb_sample_t *o = pq_talloc(c, (hi - lo) * sizeof *o);
    size_t k = 0;
    for (size_t j = lo; j < hi; j++)
        if (!pq_is_stale(a[j].v)) o[k++] = a[j];
    *s = o;
    *n = k;
}

static pq_value_t eval_vsel(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_value_t r = {.type = PQ_T_VECTOR};
    const pq_loaded_t *d = n->u.sel.data;
    int64_t t = sat_sub(pq_sel_eval_time(c, n->u.sel.at, n->u.sel.at_ms, ts), n->u.sel.offset_ms);
    r.vec.s = pq_talloc(c, (d->n ? d->n : 1) * sizeof *r.vec.s);
    for (size_t i = 0; i < d->n; i++) {
        size_t j = upper_bound(d->samples[i], d->nsamples[i], t);
        if (!j) continue;
        const tsdb_sample_t *sp = &d->samples[i][j - 1];
        if (sp->t < sat_sub(t, c->lookback) || pq_is_stale(sp->v)) continue;
        r.vec.s[r.vec.n++] = (pq_sample_t){d->labels[i], sp->v, sp->t};
    }
    return r;
}

static pq_value_t eval_msel(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_value_t r = {.type = PQ_T_MATRIX};
    const pq_loaded_t *d = n->u.sel.data;
    int64_t t = sat_sub(pq_sel_eval_time(c, n->u.sel.at, n->u.sel.at_ms, ts), n->u.sel.offset_ms);
    int64_t mint = sat_sub(t, n->u.sel.range_ms);
    r.mat.s = pq_talloc(c, (d->n ? d->n : 1) * sizeof *r.mat.s);
    for (size_t i = 0; i < d->n; i++) {
        const tsdb_sample_t *s;
        size_t cnt;
        pq_loaded_slice(c, d, i, mint, t, &s, &cnt);
        if (!cnt) continue;
        r.mat.s[r.mat.n++] = (pq_mseries_t){d->labels[i], s, cnt};
    }
    return r;
}

static pq_value_t eval_subq(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_value_t r = {.type = PQ_T_MATRIX};
    int64_t t = sat_sub(pq_sel_eval_time(c, n->u.subq.at, n->u.subq.at_ms, ts), n->u.subq.offset_ms);
    int64_t step = n->u.subq.step_ms ? n->u.subq.step_ms : 60000;
    int64_t from = sat_sub(t, n->u.subq.range_ms);
    int64_t s0 = step * (from / step); /* Go's truncating division, as Prometheus */
    if (s0 < from) s0 += step;
    /* collect (series index, t, v) then group */
    lmap_t map;
    lmap_init(c, &map, 16);
    size_t ns = 0, cap = 16;
    pq_mseries_t *out = pq_talloc(c, cap * sizeof *out);
    size_t *caps = pq_talloc(c, cap * sizeof *caps);
    for (int64_t st = s0; st <= t; st += step) {
        pq_check_deadline(c);
        pq_value_t v = pq_eval_node(c, n->u.subq.expr, st);
        size_t nv = v.type == PQ_T_SCALAR ? 1 : v.vec.n;
        for (size_t i = 0; i < nv; i++) {
            const pq_labels_t *m = v.type == PQ_T_SCALAR ? c->empty : v.vec.s[i].m;
            double val = v.type == PQ_T_SCALAR ? v.scalar : v.vec.s[i].v;
            int found;
            size_t *slot = lmap_get(c, &map, m, &found);
            if (!found) {
                if (ns == cap) {
                    pq_mseries_t *no = pq_talloc(c, cap * 2 * sizeof *no);
                    size_t *nc = pq_talloc(c, cap * 2 * sizeof *nc);
                    memcpy(no, out, ns * sizeof *no);
                    memcpy(nc, caps, ns * sizeof *nc);
                    out = no;
                    caps = nc;
                    cap *= 2;
                }
                *slot = ns;
                out[ns] = (pq_mseries_t){m, NULL, 0};
                caps[ns] = 0;
                ns++;
            }
            pq_mseries_t *sr = &out[*slot];
            if (sr->n == caps[*slot]) {
                size_t nc = caps[*slot] ? caps[*slot] * 2 : 8;
                tsdb_sample_t *na = pq_talloc(c, nc * sizeof *na);
                if (sr->n) memcpy(na, sr->s, sr->n * sizeof *na);
                sr->s = na;
                caps[*slot] = nc;
            }
            ((tsdb_sample_t *)sr->s)[sr->n++] = (tsdb_sample_t){st, val};
            pq_count_samples(c, 1);
        }
        if (step <= 0 || st > INT64_MAX - step) break;
    }
    r.mat.s = out;
    r.mat.n = ns;
    return r;
}

/* ---- binary operators ------------------------------------------------------- */

static double go_mod(double a, double b)
{
    return fmod(a, b);
}

/* Returns the value; *keep says whether a comparison held. */
static double binop_apply(pq_binop_t op, double l, double r, int *keep)
{
    *keep = 1;
    switch (op) {
    case PQ_OP_ADD: return l + r;
    case PQ_OP_SUB: return l - r;
    case PQ_OP_MUL: return l * r;
    case PQ_OP_DIV: return l / r;
    case PQ_OP_MOD: return go_mod(l, r);
    case PQ_OP_POW: return pow(l, r);
    case PQ_OP_ATAN2: return atan2(l, r);
    case PQ_OP_EQ: *keep = l == r; return l;
    case PQ_OP_NE: *keep = l != r; return l;
    case PQ_OP_GT: *keep = l > r; return l;
    case PQ_OP_LT: *keep = l < r; return l;
    case PQ_OP_GE: *keep = l >= r; return l;
    case PQ_OP_LE: *keep = l <= r; return l;
    default: return NAN;
    }
}

static int op_is_cmp(pq_binop_t op)
{
    return op >= PQ_OP_EQ && op <= PQ_OP_LE;
}

/* Arithmetic drops __name__ (2.42: not atan2, and not comparisons). */
static int op_drops_name(pq_binop_t op)
{
    return op <= PQ_OP_POW;
}

void pq_vec_check_dups(pq_ctx_t *c, const pq_vector_t *v)
{
    if (v->n < 2) return;
    lmap_t m;
    pq_arena_mark_t mk = pq_arena_mark(&c->tmp);
    lmap_init(c, &m, v->n);
    for (size_t i = 0; i < v->n; i++) {
        int found;
        lmap_get(c, &m, v->s[i].m, &found);
        if (found) pq_fail(c, PQ_EEXEC, "vector cannot contain metrics with the same labelset");
    }
    pq_arena_reset(&c->tmp, mk);
}

/* Matching signature of a sample's labels: the on() labels, or all but the
 * ignoring() labels and __name__. */
static const pq_labels_t *signature(pq_ctx_t *c, const pq_labels_t *m, int on, char **names,
                                    size_t nn)
{
    pq_label_t tmp[128];
    pq_label_t *l = m->n <= 128 ? tmp : pq_talloc(c, m->n * sizeof *l);
    size_t k = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        int listed = 0;
        for (size_t j = 0; j < nn; j++)
            if (!strcmp(m->l[i].name, names[j])) listed = 1;
        if (on ? listed : (!listed && strcmp(m->l[i].name, "__name__")))
            l[k++] = m->l[i];
    }
    return pq_cintern(c, l, k, 0);
}

static const pq_labels_t *signature_memo(pq_ctx_t *c, const void *node, const pq_labels_t *m, int on,
                                         char **names, size_t nn)
{
    const pq_labels_t *r = memo_get(c, node, m);
    if (r) return r;
    r = signature(c, m, on, names, nn);
    memo_put(c, node, m, r);
    return r;
}

static pq_value_t eval_setop(pq_ctx_t *c, pq_node_t *n, pq_vector_t L, pq_vector_t R, int64_t ts)
{
    pq_value_t r = {.type = PQ_T_VECTOR};
    int on = n->u.bin.on;
    char **ml = n->u.bin.mlabels;
    size_t nml = n->u.bin.nmlabels;
    lmap_t m;
    lmap_init(c, &m, L.n + R.n);
    r.vec.s = pq_talloc(c, (L.n + R.n + 1) * sizeof *r.vec.s);
    int found;
    switch (n->u.bin.op) {
    case PQ_OP_AND:
    case PQ_OP_UNLESS:
        for (size_t i = 0; i < R.n; i++) lmap_get(c, &m, signature_memo(c, n, R.s[i].m, on, ml, nml), &found);
        for (size_t i = 0; i < L.n; i++) {
            const pq_labels_t *sig = signature_memo(c, n, L.s[i].m, on, ml, nml);
            size_t j = sig->hash & (m.cap - 1);
            found = 0;
            while (m.keys[j]) {
                if (m.keys[j] == sig) {
                    found = 1;
                    break;
                }
                j = (j + 1) & (m.cap - 1);
            }
            if (found == (n->u.bin.op == PQ_OP_AND)) {
                r.vec.s[r.vec.n] = L.s[i];
                r.vec.s[r.vec.n++].t = ts;
            }
        }
        break;
    default: /* OR */
        for (size_t i = 0; i < L.n; i++) {
            lmap_get(c, &m, signature_memo(c, n, L.s[i].m, on, ml, nml), &found);
            r.vec.s[r.vec.n] = L.s[i];
            r.vec.s[r.vec.n++].t = ts;
        }
        for (size_t i = 0; i < R.n; i++) {
            const pq_labels_t *sig = signature_memo(c, n, R.s[i].m, on, ml, nml);
            size_t j = sig->hash & (m.cap - 1);
            found = 0;
            while (m.keys[j]) {
                if (m.keys[j] == sig) {
                    found = 1;
                    break;
                }
                j = (j + 1) & (m.cap - 1);
            }
            if (!found) {
                r.vec.s[r.vec.n] = R.s[i];
                r.vec.s[r.vec.n++].t = ts;
            }
        }
    }
    return r;
}

static void fmt_labels(const pq_labels_t *m, char *buf, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "{");
    for (uint32_t i = 0; i < m->n && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s=\"%s\"", i ? ", " : "", m->l[i].name, m->l[i].value);
    if (o < n) snprintf(buf + o, n - o, "}");
}

static const pq_labels_t *result_metric(pq_ctx_t *c, pq_node_t *n, const pq_labels_t *lm,
                                        const pq_labels_t *rm)
{
    pq_binop_t op = n->u.bin.op;
    const pq_labels_t *m = lm;
    if (op_drops_name(op) || n->u.bin.ret_bool) m = pq_drop_name(c, m);
    if (n->u.bin.card == PQ_CARD_ONE_ONE && n->u.bin.matching) {
        if (n->u.bin.on) {
            m = signature(c, m, 1, n->u.bin.mlabels, n->u.bin.nmlabels);
        } else {
            pq_label_t tmp[128];
            pq_label_t *l = m->n <= 128 ? tmp : pq_talloc(c, m->n * sizeof *l);
            size_t k = 0;
            for (uint32_t i = 0; i < m->n; i++) {
                int listed = 0;
                for (size_t j = 0; j < n->u.bin.nmlabels; j++)
                    if (!strcmp(m->l[i].name, n->u.bin.mlabels[j])) listed = 1;
                if (!listed) l[k++] = m->l[i];
            }
            m = pq_cintern(c, l, k, 0);
        }
    }
    for (size_t i = 0; i < n->u.bin.ninclude; i++) {
        const char *v = pq_labels_get(rm, n->u.bin.include[i]);
        m = pq_labels_set(c, m, n->u.bin.include[i], v ? v : "");
    }
    return m;
}

static pq_value_t eval_vecvec(pq_ctx_t *c, pq_node_t *n, pq_vector_t L, pq_vector_t R, int64_t ts)
{
    pq_value_t r = {.type = PQ_T_VECTOR};
    int on = n->u.bin.on;
    char **ml = n->u.bin.mlabels;
    size_t nml = n->u.bin.nmlabels;
    pq_card_t card = n->u.bin.card;
    int swapped = card == PQ_CARD_ONE_MANY;
    if (swapped) {
        pq_vector_t t = L;
        L = R;
        R = t;
    }
    lmap_t rsig;
    lmap_init(c, &rsig, R.n);
    for (size_t i = 0; i < R.n; i++) {
        int found;
        size_t *slot = lmap_get(c, &rsig, signature_memo(c, n, R.s[i].m, on, ml, nml), &found);
        if (found) {
            char a[256], b[256], g[256];
            fmt_labels(R.s[*slot].m, a, sizeof a);
            fmt_labels(R.s[i].m, b, sizeof b);
            fmt_labels(signature_memo(c, n, R.s[i].m, on, ml, nml), g, sizeof g);
            pq_fail(c, PQ_EEXEC,
                    "found duplicate series for the match group %s on the %s hand-side of the operation: [%s, %s];many-to-many matching not allowed: matching labels must be unique on one side",
                    g, swapped ? "left" : "right", a, b);
        }
        *slot = i;
    }
    lmap_t matched; /* signature -> index into the list of result label sets seen */
    lmap_init(c, &matched, L.n);
    lmap_t outsig; /* (for many-to-one) result metric -> present */
    lmap_init(c, &outsig, L.n);
    r.vec.s = pq_talloc(c, (L.n ? L.n : 1) * sizeof *r.vec.s);
    for (size_t i = 0; i < L.n; i++) {
        const pq_labels_t *sig = signature_memo(c, n, L.s[i].m, on, ml, nml);
        size_t j = sig->hash & (rsig.cap - 1);
        int found = 0;
        while (rsig.keys[j]) {
            if (rsig.keys[j] == sig) {
                found = 1;
                break;
            }
            j = (j + 1) & (rsig.cap - 1);
        }
        if (!found) continue;
        const pq_sample_t *rs = &R.s[rsig.vals[j]];
        double vl = L.s[i].v, vr = rs->v;
        if (swapped) {
            double t = vl;
            vl = vr;
            vr = t;
        }
        int keep;
        double val = binop_apply(n->u.bin.op, vl, vr, &keep);
        if (n->u.bin.ret_bool) {
            val = keep ? 1 : 0;
        } else if (!keep) {
            continue;
        }
        const pq_labels_t *metric = result_metric(c, n, L.s[i].m, rs->m);
        int ex;
        lmap_get(c, &matched, sig, &ex);
        if (card == PQ_CARD_ONE_ONE) {
            if (ex)
                pq_fail(c, PQ_EEXEC, "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
        } else {
            int dup;
            lmap_get(c, &outsig, metric, &dup);
            if (dup) pq_fail(c, PQ_EEXEC, "multiple matches for labels: grouping labels must ensure unique matches");
        }
        r.vec.s[r.vec.n++] = (pq_sample_t){metric, val, ts};
    }
    return r;
}

static pq_value_t eval_bin(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_value_t L = pq_eval_node(c, n->u.bin.lhs, ts);
    pq_value_t R = pq_eval_node(c, n->u.bin.rhs, ts);
    pq_binop_t op = n->u.bin.op;
    int keep;
    if (L.type == PQ_T_SCALAR && R.type == PQ_T_SCALAR) {
        pq_value_t r = {.type = PQ_T_SCALAR};
        double v = binop_apply(op, L.scalar, R.scalar, &keep);
        if (op_is_cmp(op)) v = keep ? 1 : 0;
        r.scalar = v;
        return r;
    }
    if (L.type == PQ_T_VECTOR && R.type == PQ_T_VECTOR) {
        pq_value_t r = op >= PQ_OP_AND ? eval_setop(c, n, L.vec, R.vec, ts)
                                        : eval_vecvec(c, n, L.vec, R.vec, ts);
        pq_vec_check_dups(c, &r.vec);
        return r;
    }
    /* vector op scalar, or scalar op vector */
    int swap = L.type == PQ_T_SCALAR;
    pq_vector_t vec = swap ? R.vec : L.vec;
    double sc = swap ? L.scalar : R.scalar;
    pq_value_t r = {.type = PQ_T_VECTOR};
    r.vec.s = pq_talloc(c, (vec.n ? vec.n : 1) * sizeof *r.vec.s);
    for (size_t i = 0; i < vec.n; i++) {
        double l = vec.s[i].v, rr = sc;
        if (swap) {
            l = sc;
            rr = vec.s[i].v;
        }
        double v = binop_apply(op, l, rr, &keep);
        if (op_is_cmp(op) && swap) v = rr;
        if (n->u.bin.ret_bool) {
            v = keep ? 1 : 0;
            keep = 1;
        }
        if (!keep) continue;
        const pq_labels_t *m = vec.s[i].m;
        if (op_drops_name(op) || n->u.bin.ret_bool) m = pq_drop_name(c, m);
        r.vec.s[r.vec.n++] = (pq_sample_t){m, v, ts};
    }
    pq_vec_check_dups(c, &r.vec);
    return r;
}

/* ---- aggregations ------------------------------------------------------------ */

typedef struct {
    const pq_labels_t *m;
    double value, mean;
    double count;
    pq_sample_t *heap; /* topk/bottomk/quantile */
    size_t hn, hcap;
} group_t;

/* Go's container/heap over `less`, so that ties pick the same series as
 * Prometheus. */
static int heap_less(const pq_sample_t *a, const pq_sample_t *b, int reverse)
{
    if (isnan(a->v) && !isnan(b->v)) return 1;
    return reverse ? a->v > b->v : a->v < b->v;
}

static void heap_up(pq_sample_t *h, size_t j, int rev)
{
    while (j > 0) {
        size_t i = (j - 1) / 2;
        if (!heap_less(&h[j], &h[i], rev)) break;
        pq_sample_t t = h[i];
        h[i] = h[j];
        h[j] = t;
        j = i;
    }
}

static void heap_down(pq_sample_t *h, size_t i, size_t n, int rev)
{
    for (;;) {
        size_t j1 = 2 * i + 1;
        if (j1 >= n) break;
        size_t j = j1;
        if (j1 + 1 < n && heap_less(&h[j1 + 1], &h[j1], rev)) j = j1 + 1;
        if (!heap_less(&h[j], &h[i], rev)) break;
        pq_sample_t t = h[i];
        h[i] = h[j];
        h[j] = t;
        i = j;
    }
}

static void group_push(pq_ctx_t *c, group_t *g, pq_sample_t s)
{
    if (g->hn == g->hcap) {
        size_t nc = g->hcap ? g->hcap * 2 : 4;
        pq_sample_t *nh = pq_talloc(c, nc * sizeof *nh);
        if (g->hn) memcpy(nh, g->heap, g->hn * sizeof *nh);
        g->heap = nh;
        g->hcap = nc;
    }
    g->heap[g->hn++] = s;
}

static int cmp_double_nan_first(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x)) return isnan(y) ? 0 : -1;
    if (isnan(y)) return 1;
    return (x > y) - (x < y);
}

double pq_quantile(double q, double *v, size_t n)
{
    if (n == 0) return NAN;
    if (q < 0) return -INFINITY;
    if (q > 1) return INFINITY;
    if (isnan(q)) return NAN;
    qsort(v, n, sizeof *v, cmp_double_nan_first);
    double fn = (double)n;
    double rank = q * (fn - 1);
    double lo = fmax(0, floor(rank));
    double hi = fmin(fn - 1, lo + 1);
    double w = rank - floor(rank);
    return v[(size_t)lo] * (1 - w) + v[(size_t)hi] * w;
}

static int valid_label_name(const char *s)
{
    if (!*s || !(((*s | 32) >= 'a' && (*s | 32) <= 'z') || *s == '_')) return 0;
    for (; *s; s++)
        if (!(((*s | 32) >= 'a' && (*s | 32) <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

static pq_value_t eval_agg(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_aggop_t op = n->u.agg.op;
    /* over a swept call, each series' group is known (n->u.agg.gid): no
     * signature or hash lookups per sample */
    const uint32_t *gid = n->u.agg.gid, *sidx = NULL;
    /* direct: read the swept values of this step in place (column order,
     * the order the vector would have), without building the vector */
    const pq_sweep_t *dsw = NULL;
    const uint8_t *dpr = NULL;
    const double *dvv = NULL;
    pq_value_t in = {.type = PQ_T_VECTOR};
    if (gid && !unparen(n->u.agg.expr)->u.call.sweep->maybe_dup) {
        dsw = unparen(n->u.agg.expr)->u.call.sweep;
        size_t si = c->nsteps > 1 ? (size_t)((ts - c->start) / c->step) : 0;
        if (si >= dsw->nsteps || c->start + (int64_t)si * c->step != ts)
            pq_fail(c, PQ_EEXEC, "internal error: swept function evaluated off its step grid");
        dpr = dsw->present + si * dsw->n;
        dvv = dsw->vals + si * dsw->n;
        in.vec.n = dsw->n;
    } else {
        in = gid ? pq_sweep_vector(c, unparen(n->u.agg.expr), ts, &sidx) : pq_eval_node(c, n->u.agg.expr, ts);
    }
    pq_vector_t v = in.vec;
    double param = 0;
    const char *vlabel = NULL;
    if (n->u.agg.param) {
        pq_value_t p = pq_eval_node(c, n->u.agg.param, ts);
        if (op == PQ_AGG_COUNT_VALUES) {
            vlabel = p.str;
            if (!valid_label_name(vlabel)) pq_fail(c, PQ_EEXEC, "invalid label name \"%s\"", vlabel);
        } else {
            param = p.scalar;
        }
    }
    pq_value_t r = {.type = PQ_T_VECTOR};
    int64_t k = 0;
    if (op == PQ_AGG_TOPK || op == PQ_AGG_BOTTOMK) {
        if (param >= 9.2e18 || param <= -9.2e18) pq_fail(c, PQ_EEXEC, "Scalar value %g overflows int64", param);
        k = isnan(param) ? 0 : (int64_t)param;
        if (k < 1) {
            r.vec.s = NULL;
            return r;
        }
    }
    char **gl = n->u.agg.grouping;
    size_t ngl = n->u.agg.ngrouping;
    if (vlabel && !n->u.agg.without) {
        char **ng = pq_talloc(c, (ngl + 1) * sizeof *ng);
        if (ngl) memcpy(ng, gl, ngl * sizeof *ng);
        ng[ngl++] = (char *)vlabel;
        gl = ng;
    }
    lmap_t map;
    size_t *gslot = NULL;
    if (gid) {
        gslot = pq_talloc(c, (n->u.agg.ngid ? n->u.agg.ngid : 1) * sizeof *gslot);
        memset(gslot, 0xff, n->u.agg.ngid * sizeof *gslot);
    } else {
        lmap_init(c, &map, v.n);
    }
    group_t *groups = pq_talloc(c, (v.n ? v.n : 1) * sizeof *groups);
    size_t ng = 0;
    for (size_t i = 0; i < v.n; i++) {
        const pq_labels_t *metric, *orig;
        double sv;
        if (dsw) {
            if (!dpr[i]) continue;
            orig = metric = dsw->labels[i];
            sv = dvv[i];
        } else {
            pq_check_deadline(c);
            orig = metric = v.s[i].m;
            sv = v.s[i].v;
        }
        if (vlabel) {
            char buf[400];
            pq_fmt_float(buf, sv);
            metric = pq_labels_set(c, metric, vlabel, buf);
        }
        const pq_labels_t *key = NULL;
        int found;
        size_t *slot;
        if (gid) {
            slot = &gslot[gid[dsw ? i : sidx[i]]];
            found = *slot != SIZE_MAX;
            if (!found) key = signature_memo(c, n, metric, !n->u.agg.without, gl, ngl);
        } else {
            key = signature_memo(c, n, metric, !n->u.agg.without, gl, ngl);
            slot = lmap_get(c, &map, key, &found);
        }
        if (!found) {
            *slot = ng;
            group_t *g = &groups[ng++];
            memset(g, 0, sizeof *g);
            g->m = key;
            g->value = sv;
            g->mean = sv;
            g->count = 1;
            if (op == PQ_AGG_STDDEV || op == PQ_AGG_STDVAR) g->value = 0;
            if (op == PQ_AGG_GROUP) g->value = 1;
            if (op == PQ_AGG_TOPK || op == PQ_AGG_BOTTOMK || op == PQ_AGG_QUANTILE)
                group_push(c, g, (pq_sample_t){orig, sv, ts});
            continue;
        }
        group_t *g = &groups[*slot];
        switch (op) {
        case PQ_AGG_SUM: g->value += sv; break;
        case PQ_AGG_AVG:
            g->count++;
            if (isinf(g->mean)) {
                if (isinf(sv) && (g->mean > 0) == (sv > 0)) break;
                if (!isinf(sv) && !isnan(sv)) break;
            }
            g->mean += sv / g->count - g->mean / g->count;
            break;
        case PQ_AGG_GROUP: break;
        case PQ_AGG_MAX:
            if (g->value < sv || isnan(g->value)) g->value = sv;
            break;
        case PQ_AGG_MIN:
            if (g->value > sv || isnan(g->value)) g->value = sv;
            break;
        case PQ_AGG_COUNT:
        case PQ_AGG_COUNT_VALUES: g->count++; break;
        case PQ_AGG_STDDEV:
        case PQ_AGG_STDVAR: {
            g->count++;
            double delta = sv - g->mean;
            g->mean += delta / g->count;
            g->value += delta * (sv - g->mean);
            break;
        }
        case PQ_AGG_TOPK:
        case PQ_AGG_BOTTOMK: {
            int rev = op == PQ_AGG_BOTTOMK;
            int better = rev ? g->heap[0].v > sv : g->heap[0].v < sv;
            if ((int64_t)g->hn < k || better || isnan(g->heap[0].v)) {
                pq_sample_t s = {orig, sv, ts};
                if ((int64_t)g->hn == k) {
                    if (k == 1) {
                        g->heap[0] = s;
                        break;
                    }
                    /* pop */
                    size_t last = g->hn - 1;
                    pq_sample_t t = g->heap[0];
                    g->heap[0] = g->heap[last];
                    g->heap[last] = t;
                    heap_down(g->heap, 0, last, rev);
                    g->hn--;
                }
                group_push(c, g, s);
                heap_up(g->heap, g->hn - 1, rev);
            }
            break;
        }
        case PQ_AGG_QUANTILE: group_push(c, g, (pq_sample_t){orig, sv, ts}); break;
        }
    }
    size_t cap = ng;
    if (op == PQ_AGG_TOPK || op == PQ_AGG_BOTTOMK) cap = v.n;
    r.vec.s = pq_talloc(c, (cap ? cap : 1) * sizeof *r.vec.s);
    for (size_t gi = 0; gi < ng; gi++) {
        group_t *g = &groups[gi];
        double val = g->value;
        switch (op) {
        case PQ_AGG_AVG: val = g->mean; break;
        case PQ_AGG_COUNT:
        case PQ_AGG_COUNT_VALUES: val = g->count; break;
        case PQ_AGG_STDVAR: val = g->value / g->count; break;
        case PQ_AGG_STDDEV: val = sqrt(g->value / g->count); break;
        case PQ_AGG_TOPK:
        case PQ_AGG_BOTTOMK: {
            int rev = op == PQ_AGG_BOTTOMK;
            /* output best first: repeatedly pop the worst into the tail */
            size_t hn = g->hn;
            for (size_t e = hn; e > 1; e--) {
                pq_sample_t t = g->heap[0];
                g->heap[0] = g->heap[e - 1];
                g->heap[e - 1] = t;
                heap_down(g->heap, 0, e - 1, rev);
            }
            for (size_t j = 0; j < hn; j++) {
                pq_sample_t s = g->heap[j];
                s.t = ts;
                r.vec.s[r.vec.n++] = s;
            }
            continue;
        }
        case PQ_AGG_QUANTILE: {
            double *vals = pq_talloc(c, (g->hn ? g->hn : 1) * sizeof *vals);
            for (size_t j = 0; j < g->hn; j++) vals[j] = g->heap[j].v;
            val = pq_quantile(param, vals, g->hn);
            break;
        }
        default: break;
        }
        r.vec.s[r.vec.n++] = (pq_sample_t){g->m, val, ts};
    }
    return r;
}

/* ---- dispatch ------------------------------------------------------------------ */

pq_value_t pq_eval_node(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_check_deadline(c);
    pq_value_t r = {.type = PQ_T_NONE};
    switch (n->kind) {
    case PQ_N_NUM:
        r.type = PQ_T_SCALAR;
        r.scalar = n->u.num;
        return r;
    case PQ_N_STR:
        r.type = PQ_T_STRING;
        r.str = n->u.str;
        return r;
    case PQ_N_VSEL: return eval_vsel(c, n, ts);
    case PQ_N_MSEL: return eval_msel(c, n, ts);
    case PQ_N_SUBQ: return eval_subq(c, n, ts);
    case PQ_N_CALL: return pq_eval_call(c, n, ts);
    case PQ_N_AGG: return eval_agg(c, n, ts);
    case PQ_N_BIN: return eval_bin(c, n, ts);
    case PQ_N_PAREN: return pq_eval_node(c, n->u.un.expr, ts);
    case PQ_N_NEG: {
        r = pq_eval_node(c, n->u.un.expr, ts);
        if (r.type == PQ_T_SCALAR) {
            r.scalar = -r.scalar;
            return r;
        }
        pq_sample_t *o = pq_talloc(c, (r.vec.n ? r.vec.n : 1) * sizeof *o);
        for (size_t i = 0; i < r.vec.n; i++)
            o[i] = (pq_sample_t){pq_drop_name(c, r.vec.s[i].m), -r.vec.s[i].v, ts};
        r.vec.s = o;
        pq_vec_check_dups(c, &r.vec);
        return r;
    }
    }
    return r;
}

/* ---- driver ----------------------------------------------------------------------- */

typedef struct {
    const pq_labels_t *m;
    pq_point_t *p;
    size_t n, cap;
} outser_t;

typedef struct {
    pq_result_t res;
    pq_arena_t arena;
    outser_t *os; /* output accumulation (freed when evaluation ends) */
    size_t nos, oscap;
} result_priv_t;

static int cmp_series(const void *a, const void *b)
{
    const outser_t *x = a, *y = b;
    return pq_labels_cmp(x->m, y->m);
}

static void out_add(pq_ctx_t *c, lmap_t *map, outser_t **os, size_t *nos, size_t *cap,
                    const pq_labels_t *m, int64_t t, double v)
{
    int found;
    /* the map lives in perm so it survives the per-step reset */
    size_t *slot = lmap_get(c, map, m, &found);
    if (!found) {
        if (*nos == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            outser_t *n = realloc(*os, nc * sizeof *n);
            if (!n) pq_fail(c, PQ_ENOMEM, "out of memory");
            *os = n;
            *cap = nc;
        }
        *slot = *nos;
        (*os)[*nos] = (outser_t){m, NULL, 0, 0};
        (*nos)++;
    }
    outser_t *s = &(*os)[*slot];
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 4;
        pq_point_t *np = realloc(s->p, nc * sizeof *np);
        if (!np) pq_fail(c, PQ_ENOMEM, "out of memory");
        s->p = np;
        s->cap = nc;
    }
    s->p[s->n++] = (pq_point_t){t, v};
}

void promql_result_free(pq_result_t *res)
{
    if (!res) return;
    result_priv_t *rp = res->priv_;
    pq_arena_free(&rp->arena);
    free(rp);
}

static int build_result(pq_ctx_t *c, result_priv_t *rp, outser_t *os, size_t nos, int sorted)
{
    pq_result_t *res = &rp->res;
    if (sorted && nos > 1) qsort(os, nos, sizeof *os, cmp_series);
    res->series = pq_arena_alloc(&rp->arena, (nos ? nos : 1) * sizeof *res->series);
    if (!res->series) return PQ_ENOMEM;
    for (size_t i = 0; i < nos; i++) {
        pq_series_t *s = &res->series[i];
        const pq_labels_t *m = os[i].m;
        pq_label_t *l = pq_arena_alloc(&rp->arena, (m->n ? m->n : 1) * sizeof *l);
        pq_point_t *p = pq_arena_alloc(&rp->arena, (os[i].n ? os[i].n : 1) * sizeof *p);
        if (!l || !p) return PQ_ENOMEM;
        for (uint32_t j = 0; j < m->n; j++) {
            l[j].name = pq_arena_strndup(&rp->arena, m->l[j].name, strlen(m->l[j].name));
            l[j].value = pq_arena_strndup(&rp->arena, m->l[j].value, strlen(m->l[j].value));
            if (!l[j].name || !l[j].value) return PQ_ENOMEM;
        }
        if (os[i].n) memcpy(p, os[i].p, os[i].n * sizeof *p);
        s->labels = l;
        s->nlabels = m->n;
        s->points = p;
        s->npoints = os[i].n;
    }
    res->nseries = nos;
    (void)c;
    return 0;
}

/* The evaluation proper; pq_fail() longjmps out of it to eval_guarded().
 * Kept in its own frame so that no local is live across the setjmp. */
static int eval_body(pq_ctx_t *c, result_priv_t *rp, pq_node_t *root, const pq_opts_t *o, int range,
                     pq_type_t rt)
{
    c->empty = pq_cintern(c, NULL, 0, 0);
    c->nsteps = range ? (size_t)((c->end - c->start) / c->step) + 1 : 1;
    preload(c, root, c->start, c->end, 1);
    lmap_t map;
    lmap_init_in(c, &c->perm, &map, 64); /* survives the per-step reset */
    rp->res.type = range ? PQ_T_MATRIX : rt;
    for (int64_t ts = c->start; ts <= c->end;) {
        pq_arena_mark_t mk = pq_arena_mark(&c->tmp);
        pq_value_t v = pq_eval_node(c, root, ts);
        switch (v.type) {
        case PQ_T_SCALAR: out_add(c, &map, &rp->os, &rp->nos, &rp->oscap, c->empty, ts, v.scalar); break;
        case PQ_T_VECTOR:
            for (size_t i = 0; i < v.vec.n; i++)
                out_add(c, &map, &rp->os, &rp->nos, &rp->oscap, v.vec.s[i].m, ts, v.vec.s[i].v);
            break;
        case PQ_T_MATRIX:
            for (size_t i = 0; i < v.mat.n; i++)
                for (size_t j = 0; j < v.mat.s[i].n; j++)
                    out_add(c, &map, &rp->os, &rp->nos, &rp->oscap, v.mat.s[i].m, v.mat.s[i].s[j].t,
                            v.mat.s[i].s[j].v);
            break;
        case PQ_T_STRING: {
            rp->res.str = pq_arena_strndup(&rp->arena, v.str, strlen(v.str));
            if (!rp->res.str) pq_fail(c, PQ_ENOMEM, "out of memory");
            out_add(c, &map, &rp->os, &rp->nos, &rp->oscap, c->empty, ts, 0);
            break;
        }
        default: break;
        }
        pq_arena_reset(&c->tmp, mk);
        if (o->max_series && rp->nos > o->max_series)
            pq_fail(c, PQ_ESERIES, "query returned more than %" PRIu64 " series", o->max_series);
        if (!range || ts > INT64_MAX - c->step) break;
        ts += c->step;
    }
    /* range queries are sorted by labels (as Prometheus); instant vectors
     * keep evaluation order (sort() and topk() depend on it) */
    return build_result(c, rp, rp->os, rp->nos, range || rt == PQ_T_MATRIX);
}

static int eval_guarded(pq_ctx_t *c, result_priv_t *rp, pq_node_t *root, const pq_opts_t *o, int range,
                        pq_type_t rt)
{
    if (setjmp(c->jb)) return c->err;
    return eval_body(c, rp, root, o, range, rt);
}

int promql_eval(tsdb_reader_t *r, const pq_expr_t *e, const pq_opts_t *o, pq_result_t **out,
                char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = 0;
    if (!r || !e || !e->root || !o || o->end_ms < o->start_ms ||
        (o->end_ms > o->start_ms && o->step_ms <= 0))
        return PQ_EINVAL;
    int range = o->end_ms > o->start_ms;
    pq_type_t rt = e->root->type;
    if (range && rt != PQ_T_SCALAR && rt != PQ_T_VECTOR) {
        if (err && errlen)
            snprintf(err, errlen, "invalid expression type \"%s\" for range query, must be Scalar or instant Vector",
                     rt == PQ_T_MATRIX ? "range vector" : "string");
        return PQ_EEXEC;
    }
    result_priv_t *rp = calloc(1, sizeof *rp);
    pq_ctx_t *c = calloc(1, sizeof *c);
    if (!rp || !c) {
        free(rp);
        free(c);
        return PQ_ENOMEM;
    }
    c->reader = r;
    c->intern.arena = &c->perm;
    c->start = o->start_ms;
    c->end = o->end_ms;
    c->step = o->step_ms;
    c->lookback = o->lookback_ms > 0 ? o->lookback_ms : 300000;
    c->max_samples = o->max_samples ? o->max_samples : 50000000;
    c->deadline_ns = mono_ns() + (o->timeout_ms > 0 ? o->timeout_ms : 120000) * 1000000;
    c->errbuf = err;
    c->errlen = errlen;
    /* the AST is const for callers; selectors keep per-evaluation data in it,
     * so one expression must not be evaluated by two threads at once */
    int rc = eval_guarded(c, rp, e->root, o, range, rt);
    rp->res.samples = c->samples_loaded;
    for (size_t i = 0; i < rp->nos; i++) free(rp->os[i].p);
    free(rp->os);
    rp->os = NULL;
    for (size_t i = 0; i < c->ndefer; i++) c->defer[i].fn(c->defer[i].p);
    free(c->defer);
    free(c->memo);
    pq_intern_free(&c->intern);
    pq_arena_free(&c->perm);
    pq_arena_free(&c->tmp);
    free(c);
    if (rc) {
        pq_arena_free(&rp->arena);
        free(rp);
        return rc;
    }
    rp->res.priv_ = rp;
    *out = &rp->res;
    return 0;
}
