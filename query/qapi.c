/*
 * qapi.c — the Prometheus HTTP query API (JSON) over promql_eval() and the
 * store's index: query, query_range, series, labels, label/<n>/values,
 * metadata, status/buildinfo, status/tsdb, export.
 *
 * Envelope as Prometheus writes it:
 *   {"status":"success","data":...}
 *   {"status":"error","errorType":"bad_data","error":"..."}   (400, 422, 503, 500)
 * Values are strings formatted like Go's strconv.FormatFloat(v, 'f', -1, 64)
 * ("NaN", "+Inf", "-Inf"); timestamps are float seconds with up to three
 * decimals.
 */
#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/promql_int.h"
#include "query/qcache.h"
#include "query/query_api.h"

#define QAPI_MIN_TIME (INT64_MIN / 4)
#define QAPI_MAX_TIME (INT64_MAX / 4)

typedef struct {
    tbuf_t *b;
    int oom;
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if (!w->oom && tbuf_put(w->b, s, n)) w->oom = 1;
}

static void jw_s(jw_t *w, const char *s)
{
    jw_raw(w, s, strlen(s));
}

static void jw_str(jw_t *w, const char *s)
{
    if (!w->oom && tbuf_json_str(w->b, s)) w->oom = 1;
}

static void jw_fmt(jw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jw_fmt(jw_t *w, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    jw_raw(w, buf, (size_t)n);
}

static void jw_time(jw_t *w, int64_t t)
{
    char buf[64];
    jw_raw(w, buf, pq_fmt_time(buf, t));
}

static void jw_val(jw_t *w, double v)
{
    char buf[400];
    size_t n = pq_fmt_float(buf, v);
    jw_raw(w, "\"", 1);
    jw_raw(w, buf, n);
    jw_raw(w, "\"", 1);
}

/* Formatted timestamps of recent points: the points of a range query's
 * series share one step grid, so each time is formatted once. */
typedef struct {
    int64_t t[256];
    uint8_t len[256];
    char s[256][32];
} jw_tcache_t;

/* `[t,"v"]` for every point, comma-separated, written straight into the
 * buffer (one reservation check per point). */
static void jw_points(jw_t *w, const pq_point_t *p, size_t n, jw_tcache_t *tc)
{
    for (size_t j = 0; j < n && !w->oom; j++) {
        if (tbuf_reserve(w->b, 32 + 400 + 8)) {
            w->oom = 1;
            return;
        }
        char *o = (char *)w->b->p + w->b->len, *o0 = o;
        if (j) *o++ = ',';
        *o++ = '[';
        int64_t t = p[j].t;
        size_t h = (size_t)((uint64_t)t * 0x9e3779b97f4a7c15ULL >> 56);
        if (!tc->len[h] || tc->t[h] != t) {
            tc->t[h] = t;
            tc->len[h] = (uint8_t)pq_fmt_time(tc->s[h], t);
        }
        memcpy(o, tc->s[h], 32);
        o += tc->len[h];
        *o++ = ',';
        *o++ = '"';
        o += pq_fmt_float(o, p[j].v);
        *o++ = '"';
        *o++ = ']';
        w->b->len += (size_t)(o - o0);
    }
}

static void jw_labels(jw_t *w, const pq_label_t *l, size_t n)
{
    jw_raw(w, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) jw_raw(w, ",", 1);
        jw_str(w, l[i].name);
        jw_raw(w, ":", 1);
        jw_str(w, l[i].value);
    }
    jw_raw(w, "}", 1);
}

static int reply_error(tbuf_t *out, int *status, int code, const char *type, const char *msg)
{
    jw_t w = {out, 0};
    out->len = 0;
    *status = code;
    jw_s(&w, "{\"status\":\"error\",\"errorType\":");
    jw_str(&w, type);
    jw_s(&w, ",\"error\":");
    jw_str(&w, msg);
    jw_s(&w, "}");
    return w.oom ? PQ_ENOMEM : 0;
}

static int bad_param(tbuf_t *out, int *status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad_param(tbuf_t *out, int *status, const char *param, const char *fmt, ...)
{
    char msg[1024];
    char detail[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "invalid parameter \"%s\": %s", param, detail);
    return reply_error(out, status, 400, "bad_data", msg);
}

/* Map an engine error onto the HTTP status and errorType. */
static int reply_pq_error(tbuf_t *out, int *status, int rc, const char *msg)
{
    switch (rc) {
    case PQ_EPARSE: {
        char m[1100];
        snprintf(m, sizeof m, "invalid parameter \"query\": %s", msg);
        return reply_error(out, status, 400, "bad_data", m);
    }
    case PQ_ETIMEOUT: return reply_error(out, status, 503, "timeout", msg && *msg ? msg : "query timed out");
    case PQ_EEXEC:
    case PQ_ESAMPLES:
    case PQ_ESERIES: return reply_error(out, status, 422, "execution", msg && *msg ? msg : promql_strerror(rc));
    case PQ_ENOMEM: return PQ_ENOMEM;
    case PQ_EINVAL: return reply_error(out, status, 400, "bad_data", msg && *msg ? msg : "invalid argument");
    default: return reply_error(out, status, 500, "internal", msg && *msg ? msg : promql_strerror(rc));
    }
}

int qapi_handles(const char *path)
{
    if (!path) return 0;
    if (!strncmp(path, "/api/v1/", 8)) path += 8;
    while (*path == '/') path++;
    static const char *exact[] = {"query", "query_range", "series", "labels", "metadata",
                                  "status/buildinfo", "status/tsdb", "export"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(path, exact[i])) return 1;
    size_t n = strlen(path);
    return n > 13 && !strncmp(path, "label/", 6) && !strcmp(path + n - 7, "/values");
}

/* ---- parameters ------------------------------------------------------------ */

static int param_time(qapi_param_fn get, void *ctx, const char *name, int64_t def, int64_t *out,
                      tbuf_t *o, int *status, int *replied)
{
    const char *s = get(ctx, name, 0);
    if (!s || !*s) {
        *out = def;
        return 0;
    }
    if (pq_parse_time(s, out)) {
        *replied = 1;
        return bad_param(o, status, name, "cannot parse \"%s\" to a valid timestamp", s);
    }
    return 0;
}

static int64_t eff_timeout(qapi_param_fn get, void *ctx, const qapi_limits_t *lim)
{
    int64_t t = lim && lim->timeout_ms > 0 ? lim->timeout_ms : 120000;
    const char *s = get(ctx, "timeout", 0);
    int64_t p;
    if (s && *s && !pq_parse_duration_param(s, &p) && p > 0 && p < t) t = p;
    return t;
}

/* ---- query / query_range ---------------------------------------------------------- */

static void write_result(jw_t *w, const pq_result_t *res, int64_t t)
{
    jw_tcache_t tc;
    jw_s(w, "{\"status\":\"success\",\"data\":{\"resultType\":\"");
    jw_s(w, promql_type_name(res->type));
    jw_s(w, "\",\"result\":");
    switch (res->type) {
    case PQ_T_SCALAR:
    case PQ_T_STRING: {
        /* encoding/json of float64(t)/1000 in Prometheus: "1.5", not "1.500" */
        char tb[400];
        jw_raw(w, "[", 1);
        jw_raw(w, tb, pq_fmt_float(tb, (double)t / 1000));
        jw_raw(w, ",", 1);
        if (res->type == PQ_T_STRING) jw_str(w, res->str ? res->str : "");
        else jw_val(w, res->nseries && res->series[0].npoints ? res->series[0].points[0].v : NAN);
        jw_raw(w, "]", 1);
        break;
    }
    case PQ_T_VECTOR:
        jw_raw(w, "[", 1);
        for (size_t i = 0; i < res->nseries; i++) {
            const pq_series_t *s = &res->series[i];
            if (i) jw_raw(w, ",", 1);
            jw_s(w, "{\"metric\":");
            jw_labels(w, s->labels, s->nlabels);
            jw_s(w, ",\"value\":[");
            jw_time(w, s->npoints ? s->points[0].t : t);
            jw_raw(w, ",", 1);
            jw_val(w, s->npoints ? s->points[0].v : NAN);
            jw_s(w, "]}");
            if (w->oom) return;
        }
        jw_raw(w, "]", 1);
        break;
    case PQ_T_MATRIX:
        memset(tc.len, 0, sizeof tc.len);
        jw_raw(w, "[", 1);
        for (size_t i = 0; i < res->nseries; i++) {
            const pq_series_t *s = &res->series[i];
            if (i) jw_raw(w, ",", 1);
            jw_s(w, "{\"metric\":");
            jw_labels(w, s->labels, s->nlabels);
            jw_s(w, ",\"values\":[");
            jw_points(w, s->points, s->npoints, &tc);
            jw_s(w, "]}");
            if (w->oom) return;
        }
        jw_raw(w, "]", 1);
        break;
    default: jw_s(w, "[]");
    }
    jw_s(w, "}}");
}

static int cmp_view(const void *a, const void *b)
{
    const qc_view_t *x = a, *y = b;
    return qc_labels_cmp(x->labels, x->nlabels, y->labels, y->nlabels);
}

/* A range query through the result cache: the cached steps of the answer
 * (those at most now - cache_offset_ms, computed under the store's current
 * change generation), the rest computed, both merged by label set; then the
 * cacheable steps are stored back. Returns 1 when the cache cannot help
 * (nothing old enough to cache): the caller evaluates as usual. */
static int query_range_cached(tsdb_t *db, const pq_expr_t *e, const char *q, int64_t la, const pq_opts_t *o,
                              const qapi_limits_t *lim, int64_t now_ms, tbuf_t *out, int *status)
{
    qapi_cache_t *cache = lim->cache;
    int64_t off = lim->cache_offset_ms > 0 ? lim->cache_offset_ms : 300000;
    int64_t newest, last;
    /* with times and step within +-INT64_MAX / 4 none of the arithmetic
     * below overflows (extreme ranges are simply not cached) */
    if (o->step_ms > INT64_MAX / 4 || o->start_ms < INT64_MIN / 4 || o->end_ms > INT64_MAX / 4) return 1;
    if (__builtin_sub_overflow(now_ms, off, &newest) || newest < o->start_ms) return 1;
    last = o->end_ms < newest ? o->end_ms : newest;
    last = o->start_ms + (last - o->start_ms) / o->step_ms * o->step_ms; /* the last cacheable step */
    int64_t watch;
    if (__builtin_add_overflow(last, la, &watch)) return 1;
    uint64_t gen;
    /* before reading anything: from here on, a change at or before `watch`
     * moves the generation on */
    tsdb_watch(db, watch, &gen);
    qc_key_t k = {q, o->step_ms, ((o->start_ms % o->step_ms) + o->step_ms) % o->step_ms,
                  lim->lookback_ms > 0 ? lim->lookback_ms : 300000};
    pq_arena_t a = {0};
    qc_view_t *cv = NULL;
    size_t ncv = 0;
    int64_t have = qc_lookup(cache, &k, gen, o->start_ms, o->end_ms, &a, &cv, &ncv);
    int got = have >= o->start_ms;
    pq_result_t *res = NULL;
    char err[1024];
    int rc = 0;
    if (o->end_ms - have >= o->step_ms) { /* steps after the cached ones */
        pq_opts_t to = *o;
        to.start_ms = got ? have + o->step_ms : o->start_ms;
        tsdb_reader_t *r = NULL;
        rc = tsdb_reader_open(db, &r);
        if (rc) {
            pq_arena_free(&a);
            if (rc == TSDB_ENOMEM) return PQ_ENOMEM;
            return reply_error(out, status, 500, "internal", tsdb_strerror(rc));
        }
        rc = promql_eval(r, e, &to, &res, err, sizeof err);
        tsdb_reader_close(r);
        if (rc) {
            qc_count(cache, 0, got);
            pq_arena_free(&a);
            return reply_pq_error(out, status, rc, err);
        }
    }
    qc_count(cache, !res, got && res);
    /* merge: both lists sorted by labels (a one-step tail is an instant
     * evaluation, which keeps evaluation order: sort it) */
    size_t nt = res ? res->nseries : 0;
    qc_view_t *tv = pq_arena_alloc(&a, (nt ? nt : 1) * sizeof *tv);
    qc_view_t *mv = pq_arena_alloc(&a, (ncv + nt ? ncv + nt : 1) * sizeof *mv);
    if (!tv || !mv) {
        promql_result_free(res);
        pq_arena_free(&a);
        return PQ_ENOMEM;
    }
    for (size_t i = 0; i < nt; i++) {
        const pq_series_t *s = &res->series[i];
        tv[i] = (qc_view_t){s->labels, s->nlabels, {NULL, s->points}, {0, s->npoints}};
    }
    if (res && res->type != PQ_T_MATRIX && nt > 1) qsort(tv, nt, sizeof *tv, cmp_view);
    size_t nm = 0, i = 0, j = 0;
    while (i < ncv || j < nt) {
        int c = i >= ncv ? 1 : j >= nt ? -1 : cmp_view(&cv[i], &tv[j]);
        if (c < 0) mv[nm++] = cv[i++];
        else if (c > 0) mv[nm++] = tv[j++];
        else {
            mv[nm] = cv[i++];
            mv[nm].p[1] = tv[j].p[1];
            mv[nm++].n[1] = tv[j++].n[1];
        }
    }
    if (lim->max_series && nm > lim->max_series) {
        promql_result_free(res);
        pq_arena_free(&a);
        snprintf(err, sizeof err, "query returned more than %" PRIu64 " series", lim->max_series);
        return reply_pq_error(out, status, PQ_ESERIES, err);
    }
    if (res && last > have) qc_insert(cache, &k, gen, o->start_ms, last, mv, nm);
    jw_t w = {out, 0};
    out->len = 0;
    jw_tcache_t tc;
    memset(tc.len, 0, sizeof tc.len);
    jw_s(&w, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
    for (size_t x = 0; x < nm && !w.oom; x++) {
        if (x) jw_raw(&w, ",", 1);
        jw_s(&w, "{\"metric\":");
        jw_labels(&w, mv[x].labels, mv[x].nlabels);
        jw_s(&w, ",\"values\":[");
        jw_points(&w, mv[x].p[0], mv[x].n[0], &tc);
        if (mv[x].n[0] && mv[x].n[1]) jw_raw(&w, ",", 1);
        jw_points(&w, mv[x].p[1], mv[x].n[1], &tc);
        jw_s(&w, "]}");
    }
    jw_s(&w, "]}}");
    promql_result_free(res);
    pq_arena_free(&a);
    if (w.oom) return PQ_ENOMEM;
    *status = 200;
    return 0;
}

static int handle_query(tsdb_t *db, int range, qapi_param_fn get, void *ctx, int64_t now_ms,
                        const qapi_limits_t *lim, tbuf_t *out, int *status)
{
    int replied = 0, rc;
    const char *q = get(ctx, "query", 0);
    if (!q) q = "";
    pq_opts_t o = {0};
    if (range) {
        const char *ps[2] = {"start", "end"};
        int64_t *dst[2] = {&o.start_ms, &o.end_ms};
        for (int i = 0; i < 2; i++) {
            const char *s = get(ctx, ps[i], 0);
            if (!s || !*s) return bad_param(out, status, ps[i], "cannot parse \"%s\" to a valid timestamp", "");
            rc = param_time(get, ctx, ps[i], 0, dst[i], out, status, &replied);
            if (replied || rc) return rc;
        }
        if (o.end_ms < o.start_ms)
            return bad_param(out, status, "end", "%send timestamp must not be before start time", "");
        const char *st = get(ctx, "step", 0);
        if (!st || pq_parse_duration_param(st, &o.step_ms))
            return bad_param(out, status, "step", "cannot parse \"%s\" to a valid duration", st ? st : "");
        if (o.step_ms <= 0)
            return bad_param(out, status, "step", "%szero or negative query resolution step widths are not accepted. Try a positive integer", "");
        if ((o.end_ms - o.start_ms) / o.step_ms > 11000)
            return reply_error(out, status, 400, "bad_data",
                               "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
    } else {
        rc = param_time(get, ctx, "time", now_ms, &o.start_ms, out, status, &replied);
        if (replied || rc) return rc;
        o.end_ms = o.start_ms;
    }
    o.lookback_ms = lim ? lim->lookback_ms : 0;
    o.max_samples = lim ? lim->max_samples : 0;
    o.max_series = lim ? lim->max_series : 0;
    o.timeout_ms = eff_timeout(get, ctx, lim);
    char err[1024];
    pq_expr_t *e = NULL;
    rc = promql_parse(q, strlen(q), &e, err, sizeof err);
    if (rc) return reply_pq_error(out, status, rc, err);
    pq_type_t et = promql_expr_type(e);
    if (range && et != PQ_T_SCALAR && et != PQ_T_VECTOR) {
        promql_expr_free(e);
        snprintf(err, sizeof err,
                 "invalid expression type \"%s\" for range query, must be Scalar or instant Vector",
                 et == PQ_T_MATRIX ? "range vector" : "string");
        return reply_error(out, status, 400, "bad_data", err);
    }
    if (range && o.end_ms > o.start_ms && lim && lim->cache) {
        int64_t la = qc_lookahead(e);
        if (la >= 0) {
            rc = query_range_cached(db, e, q, la, &o, lim, now_ms, out, status);
            if (rc != 1) {
                promql_expr_free(e);
                return rc;
            }
        }
    }
    tsdb_reader_t *r = NULL;
    rc = tsdb_reader_open(db, &r);
    if (rc) {
        promql_expr_free(e);
        if (rc == TSDB_ENOMEM) return PQ_ENOMEM;
        return reply_error(out, status, 500, "internal", tsdb_strerror(rc));
    }
    pq_result_t *res = NULL;
    rc = promql_eval(r, e, &o, &res, err, sizeof err);
    tsdb_reader_close(r);
    promql_expr_free(e);
    if (rc) return reply_pq_error(out, status, rc, err);
    jw_t w = {out, 0};
    out->len = 0;
    write_result(&w, res, o.start_ms);
    promql_result_free(res);
    if (w.oom) return PQ_ENOMEM;
    *status = 200;
    return 0;
}

/* ---- match[] selectors --------------------------------------------------------------- */

typedef struct {
    pq_expr_t **e;
    size_t n;
} sels_t;

static void sels_free(sels_t *s)
{
    for (size_t i = 0; i < s->n; i++) promql_expr_free(s->e[i]);
    free(s->e);
    s->e = NULL;
    s->n = 0;
}

/* Parse every match[]; returns 0, or replies 400 and sets *replied. */
static int parse_matches(qapi_param_fn get, void *ctx, sels_t *s, tbuf_t *out, int *status,
                         int *replied)
{
    size_t n = 0;
    while (get(ctx, "match[]", n)) n++;
    s->e = calloc(n ? n : 1, sizeof *s->e);
    if (!s->e) return PQ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *m = get(ctx, "match[]", i);
        char err[1024];
        int rc = promql_parse(m, strlen(m), &s->e[s->n], err, sizeof err);
        if (rc == PQ_ENOMEM) return rc;
        if (rc) {
            *replied = 1;
            return bad_param(out, status, "match[]", "%s", err);
        }
        s->n++;
        if (s->e[i]->root->kind != PQ_N_VSEL) {
            *replied = 1;
            return bad_param(out, status, "match[]", "1:1: parse error: expected a vector selector, got \"%s\"", m);
        }
    }
    return 0;
}

static tsdb_matcher_t *sel_matchers(const pq_expr_t *e, size_t *nm)
{
    const pq_node_t *n = e->root;
    tsdb_matcher_t *m = calloc(n->u.sel.nm ? n->u.sel.nm : 1, sizeof *m);
    if (!m) return NULL;
    for (size_t i = 0; i < n->u.sel.nm; i++) {
        m[i].type = n->u.sel.m[i].type;
        m[i].name = n->u.sel.m[i].name;
        m[i].value = n->u.sel.m[i].value;
    }
    *nm = n->u.sel.nm;
    return m;
}

static int store_error(tbuf_t *out, int *status, int rc)
{
    if (rc == TSDB_ENOMEM) return PQ_ENOMEM;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", tsdb_strerror(rc), tsdb_last_error_detail());
    if (rc == TSDB_EREGEX || rc == TSDB_EINVAL) return reply_error(out, status, 400, "bad_data", msg);
    return reply_error(out, status, 500, "internal", msg);
}

/* Union of the series ids matching any selector over [mint, maxt]. */
static int select_union(tsdb_reader_t *r, const sels_t *s, int64_t mint, int64_t maxt, tsdb_sids_t *out)
{
    for (size_t i = 0; i < s->n; i++) {
        size_t nm;
        tsdb_matcher_t *m = sel_matchers(s->e[i], &nm);
        if (!m) return TSDB_ENOMEM;
        tsdb_sids_t part = {0};
        int rc = tsdb_select(r, m, nm, mint, maxt, &part);
        free(m);
        if (rc) {
            tsdb_sids_free(&part);
            return rc;
        }
        /* merge two sorted lists */
        size_t nn = out->n + part.n;
        tsdb_sid_t *mg = malloc((nn ? nn : 1) * sizeof *mg);
        if (!mg) {
            tsdb_sids_free(&part);
            return TSDB_ENOMEM;
        }
        size_t a = 0, b = 0, k = 0;
        while (a < out->n || b < part.n) {
            tsdb_sid_t x;
            if (b >= part.n || (a < out->n && out->ids[a] < part.ids[b])) x = out->ids[a++];
            else if (a >= out->n || part.ids[b] < out->ids[a]) x = part.ids[b++];
            else {
                x = out->ids[a++];
                b++;
            }
            mg[k++] = x;
        }
        tsdb_sids_free(&part);
        free(out->ids);
        out->ids = mg;
        out->n = k;
        out->cap = nn;
    }
    return 0;
}

static size_t param_limit(qapi_param_fn get, void *ctx)
{
    const char *s = get(ctx, "limit", 0);
    if (!s || !*s) return 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    return (*end || v <= 0) ? 0 : (size_t)v;
}

typedef struct {
    tbuf_t *bufs; /* one serialized label set per series, for sorting */
    size_t n;
} lsets_t;

static int cmp_tbuf(const void *a, const void *b)
{
    const tbuf_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int handle_series(tsdb_t *db, qapi_param_fn get, void *ctx, tbuf_t *out, int *status)
{
    int replied = 0, rc;
    sels_t s = {0};
    int64_t mint, maxt;
    if (!get(ctx, "match[]", 0)) return reply_error(out, status, 400, "bad_data", "no match[] parameter provided");
    rc = param_time(get, ctx, "start", QAPI_MIN_TIME, &mint, out, status, &replied);
    if (!replied && !rc) rc = param_time(get, ctx, "end", QAPI_MAX_TIME, &maxt, out, status, &replied);
    if (!replied && !rc) rc = parse_matches(get, ctx, &s, out, status, &replied);
    if (replied || rc) {
        sels_free(&s);
        return rc;
    }
    tsdb_reader_t *r = NULL;
    tsdb_sids_t ids = {0};
    rc = tsdb_reader_open(db, &r);
    if (!rc) rc = select_union(r, &s, mint, maxt, &ids);
    sels_free(&s);
    if (rc) {
        tsdb_sids_free(&ids);
        tsdb_reader_close(r);
        return store_error(out, status, rc);
    }
    /* serialize each label set as name\0value\0...\1 so that memcmp sorts
     * like Prometheus' label comparison, then write them out */
    tbuf_t *bufs = calloc(ids.n ? ids.n : 1, sizeof *bufs);
    size_t nb = 0;
    int oom = !bufs;
    for (size_t i = 0; !oom && i < ids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(r, ids.ids[i], &l, &nl)) continue;
        tbuf_t *b = &bufs[nb++];
        for (size_t j = 0; j < nl && !oom; j++) {
            if (tbuf_put(b, l[j].name.ptr, l[j].name.len) || tbuf_put(b, "\0", 1) ||
                tbuf_put(b, l[j].value.ptr, l[j].value.len) || tbuf_put(b, "\0", 1))
                oom = 1;
        }
    }
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    if (!oom && nb > 1) qsort(bufs, nb, sizeof *bufs, cmp_tbuf);
    size_t lim = param_limit(get, ctx);
    jw_t w = {out, oom};
    out->len = 0;
    jw_s(&w, "{\"status\":\"success\",\"data\":[");
    for (size_t i = 0; i < nb && !w.oom && (!lim || i < lim); i++) {
        if (i) jw_raw(&w, ",", 1);
        jw_raw(&w, "{", 1);
        const char *p = (const char *)bufs[i].p, *e = p + bufs[i].len;
        int first = 1;
        while (p < e) {
            const char *name = p;
            p += strlen(p) + 1;
            const char *val = p;
            p += strlen(p) + 1;
            if (!first) jw_raw(&w, ",", 1);
            first = 0;
            jw_str(&w, name);
            jw_raw(&w, ":", 1);
            jw_str(&w, val);
        }
        jw_raw(&w, "}", 1);
    }
    jw_s(&w, "]}");
    for (size_t i = 0; bufs && i < nb; i++) tbuf_free(&bufs[i]);
    free(bufs);
    if (w.oom) return PQ_ENOMEM;
    *status = 200;
    return 0;
}

/* ---- labels and label values --------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_strings(tbuf_t *out, int *status, char **v, size_t n, size_t lim)
{
    jw_t w = {out, 0};
    out->len = 0;
    jw_s(&w, "{\"status\":\"success\",\"data\":[");
    size_t k = 0;
    for (size_t i = 0; i < n && !w.oom; i++) {
        if (i && !strcmp(v[i], v[i - 1])) continue;
        if (lim && k >= lim) break;
        if (k++) jw_raw(&w, ",", 1);
        jw_str(&w, v[i]);
    }
    jw_s(&w, "]}");
    if (w.oom) return PQ_ENOMEM;
    *status = 200;
    return 0;
}

static int valid_label_name(const char *s)
{
    if (!*s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* name == NULL: label names; else values of label `name`. */
static int handle_labels(tsdb_t *db, const char *name, qapi_param_fn get, void *ctx, tbuf_t *out,
                         int *status)
{
    int replied = 0, rc;
    int64_t mint, maxt;
    sels_t s = {0};
    rc = param_time(get, ctx, "start", QAPI_MIN_TIME, &mint, out, status, &replied);
    if (!replied && !rc) rc = param_time(get, ctx, "end", QAPI_MAX_TIME, &maxt, out, status, &replied);
    if (!replied && !rc) rc = parse_matches(get, ctx, &s, out, status, &replied);
    if (replied || rc) {
        sels_free(&s);
        return rc;
    }
    tsdb_reader_t *r = NULL;
    rc = tsdb_reader_open(db, &r);
    if (rc) {
        sels_free(&s);
        return store_error(out, status, rc);
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    int oom = 0;
    int bounded = get(ctx, "start", 0) || get(ctx, "end", 0);
    if (s.n == 0) {
        /* without match[]: from the index directly; with a time range, a
         * value counts once one series of its postings is in range */
        tsdb_strings_t st = {0};
        if (bounded && mint > maxt) rc = 0;
        else if (bounded) rc = name ? tsdb_label_values_range(r, name, mint, maxt, &st)
                                    : tsdb_label_names_range(r, mint, maxt, &st);
        else rc = name ? tsdb_label_values(r, name, NULL, 0, &st) : tsdb_label_names(r, NULL, 0, &st);
        if (!rc) {
            size_t lim = param_limit(get, ctx);
            rc = write_strings(out, status, st.v, st.n, lim);
            tsdb_strings_free(&st);
            tsdb_reader_close(r);
            sels_free(&s);
            return rc;
        }
        tsdb_strings_free(&st);
    } else {
        tsdb_sids_t ids = {0};
        rc = select_union(r, &s, mint, maxt, &ids);
        for (size_t i = 0; !rc && !oom && i < ids.n; i++) {
            const tsdb_label_t *l;
            size_t nl;
            if (tsdb_series_labels(r, ids.ids[i], &l, &nl)) continue;
            for (size_t j = 0; j < nl; j++) {
                const tsdb_str_t *x = NULL;
                if (!name) x = &l[j].name;
                else if (l[j].name.len == strlen(name) && !memcmp(l[j].name.ptr, name, l[j].name.len))
                    x = &l[j].value;
                if (!x) continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    char **nv = realloc(v, nc * sizeof *nv);
                    if (!nv) {
                        oom = 1;
                        break;
                    }
                    v = nv;
                    cap = nc;
                }
                v[n] = malloc(x->len + 1);
                if (!v[n]) {
                    oom = 1;
                    break;
                }
                memcpy(v[n], x->ptr, x->len);
                v[n][x->len] = 0;
                n++;
            }
        }
        tsdb_sids_free(&ids);
    }
    sels_free(&s);
    tsdb_reader_close(r);
    if (!oom && !rc) {
        if (n > 1) qsort(v, n, sizeof *v, cmp_str);
        rc = write_strings(out, status, v, n, param_limit(get, ctx));
    } else if (oom) {
        rc = PQ_ENOMEM;
    } else {
        rc = store_error(out, status, rc);
    }
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
    return rc;
}

/* ---- export ------------------------------------------------------------------------- */

/* JSON lines: {"metric":{...},"values":[...],"timestamps":[...]} per series.
 * Values are JSON numbers in shortest round-trip form; NaN and infinities
 * (not representable in JSON) are written as the strings "NaN", "+Inf",
 * "-Inf"; staleness markers are left out unless stale=1, which writes them
 * as the string "StaleNaN". */
static int handle_export(tsdb_t *db, qapi_param_fn get, void *ctx, tbuf_t *out, int *status)
{
    int replied = 0, rc;
    sels_t s = {0};
    int64_t mint, maxt;
    if (!get(ctx, "match[]", 0)) return reply_error(out, status, 400, "bad_data", "no match[] parameter provided");
    rc = param_time(get, ctx, "start", QAPI_MIN_TIME, &mint, out, status, &replied);
    if (!replied && !rc) rc = param_time(get, ctx, "end", QAPI_MAX_TIME, &maxt, out, status, &replied);
    if (!replied && !rc) rc = parse_matches(get, ctx, &s, out, status, &replied);
    if (replied || rc) {
        sels_free(&s);
        return rc;
    }
    const char *st = get(ctx, "stale", 0);
    int keep_stale = st && (!strcmp(st, "1") || !strcmp(st, "true"));
    tsdb_reader_t *r = NULL;
    tsdb_sids_t ids = {0};
    rc = tsdb_reader_open(db, &r);
    if (!rc) rc = select_union(r, &s, mint, maxt, &ids);
    sels_free(&s);
    if (rc) {
        tsdb_sids_free(&ids);
        tsdb_reader_close(r);
        return store_error(out, status, rc);
    }
    jw_t w = {out, 0};
    out->len = 0;
    tbuf_t ts = {0};
    for (size_t i = 0; i < ids.n && !w.oom && !rc; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(r, ids.ids[i], &l, &nl)) continue;
        jw_s(&w, "{\"metric\":{");
        for (size_t j = 0; j < nl; j++) {
            char *nm = strndup(l[j].name.ptr, l[j].name.len);
            char *vl = strndup(l[j].value.ptr, l[j].value.len);
            if (!nm || !vl) w.oom = 1;
            else {
                if (j) jw_raw(&w, ",", 1);
                jw_str(&w, nm);
                jw_raw(&w, ":", 1);
                jw_str(&w, vl);
            }
            free(nm);
            free(vl);
        }
        jw_s(&w, "},\"values\":[");
        ts.len = 0;
        tsdb_iter_t *it = NULL;
        rc = tsdb_iter_open(r, ids.ids[i], mint, maxt, &it);
        const tsdb_sample_t *sm;
        size_t sn;
        int first = 1;
        while (!rc && !w.oom) {
            int k = tsdb_iter_next(it, &sm, &sn);
            if (k == 0) break;
            if (k == TSDB_ECORRUPT) continue;
            if (k < 0) {
                rc = k;
                break;
            }
            for (size_t j = 0; j < sn; j++) {
                double v = sm[j].v;
                if (pq_is_stale(v) && !keep_stale) continue;
                if (!first) {
                    jw_raw(&w, ",", 1);
                    if (tbuf_put(&ts, ",", 1)) w.oom = 1;
                }
                first = 0;
                char buf[400];
                if (pq_is_stale(v)) {
                    jw_s(&w, "\"StaleNaN\"");
                } else if (isnan(v) || isinf(v)) {
                    jw_val(&w, v);
                } else {
                    size_t n = pq_fmt_float(buf, v);
                    jw_raw(&w, buf, n);
                }
                int tn = snprintf(buf, sizeof buf, "%" PRId64, sm[j].t);
                if (tbuf_put(&ts, buf, (size_t)tn)) w.oom = 1;
            }
        }
        tsdb_iter_close(it);
        jw_s(&w, "],\"timestamps\":[");
        jw_raw(&w, (const char *)ts.p, ts.len);
        jw_s(&w, "]}\n");
    }
    tbuf_free(&ts);
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    if (w.oom) return PQ_ENOMEM;
    if (rc) return store_error(out, status, rc);
    *status = 200;
    return 0;
}

/* ---- status ------------------------------------------------------------------------------ */

static int handle_buildinfo(tbuf_t *out, int *status)
{
    jw_t w = {out, 0};
    out->len = 0;
    /* Grafana reads "version" to pick its feature set; augur implements the
     * query API of Prometheus 2.42, so it reports that version. */
    jw_s(&w, "{\"status\":\"success\",\"data\":{\"version\":\"2.42.0\",\"revision\":\"augur-0.1.0\","
             "\"branch\":\"augur\",\"buildUser\":\"augur\",\"buildDate\":\"\",\"goVersion\":\"none (C11)\"}}");
    if (w.oom) return PQ_ENOMEM;
    *status = 200;
    return 0;
}

/* Small string -> counter map for status/tsdb. */
typedef struct {
    char **k;
    uint64_t *v;
    size_t cap, n;
} cmap_t;

static int cmap_add(cmap_t *m, const char *k, size_t kl, uint64_t inc)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 256;
        char **nk = calloc(nc, sizeof *nk);
        uint64_t *nv = calloc(nc, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->k[i]) continue;
            size_t j = pq_hash_bytes(0xcbf29ce484222325ULL, m->k[i], strlen(m->k[i])) & (nc - 1);
            while (nk[j]) j = (j + 1) & (nc - 1);
            nk[j] = m->k[i];
            nv[j] = m->v[i];
        }
        free(m->k);
        free(m->v);
        m->k = nk;
        m->v = nv;
        m->cap = nc;
    }
    size_t j = pq_hash_bytes(0xcbf29ce484222325ULL, k, kl) & (m->cap - 1);
    while (m->k[j]) {
        if (strlen(m->k[j]) == kl && !memcmp(m->k[j], k, kl)) {
            m->v[j] += inc;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (!(m->k[j] = strndup(k, kl))) return -1;
    m->v[j] = inc;
    m->n++;
    return 0;
}

static void cmap_free(cmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->k[i]);
    free(m->k);
    free(m->v);
}

typedef struct {
    const char *k;
    uint64_t v;
} kv_t;

static int cmp_kv(const void *a, const void *b)
{
    const kv_t *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return strcmp(x->k, y->k);
}

static void write_top(jw_t *w, const char *field, const cmap_t *m, size_t lim)
{
    kv_t *kv = malloc((m->n ? m->n : 1) * sizeof *kv);
    if (!kv) {
        w->oom = 1;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->k[i]) kv[n++] = (kv_t){m->k[i], m->v[i]};
    qsort(kv, n, sizeof *kv, cmp_kv);
    jw_fmt(w, ",\"%s\":[", field);
    for (size_t i = 0; i < n && i < lim; i++) {
        if (i) jw_raw(w, ",", 1);
        jw_s(w, "{\"name\":");
        jw_str(w, kv[i].k);
        jw_fmt(w, ",\"value\":%" PRIu64 "}", kv[i].v);
    }
    jw_raw(w, "]", 1);
    free(kv);
}

static int handle_tsdb_status(tsdb_t *db, qapi_param_fn get, void *ctx, tbuf_t *out, int *status)
{
    size_t lim = param_limit(get, ctx);
    if (!lim) lim = 10;
    tsdb_stats_t st;
    int rc = tsdb_stats(db, &st);
    if (rc) return store_error(out, status, rc);
    tsdb_reader_t *r = NULL;
    rc = tsdb_reader_open(db, &r);
    if (rc) return store_error(out, status, rc);
    tsdb_matcher_t all = {TSDB_MATCH_RE, "__name__", ".+"};
    tsdb_sids_t ids = {0};
    rc = tsdb_select(r, &all, 1, INT64_MIN, INT64_MAX, &ids);
    cmap_t by_name = {0}, pairs = {0}, names_vals = {0}, mem = {0};
    int oom = 0;
    char *buf = NULL;
    size_t bcap = 0;
    for (size_t i = 0; !rc && !oom && i < ids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(r, ids.ids[i], &l, &nl)) continue;
        for (size_t j = 0; j < nl && !oom; j++) {
            size_t need = l[j].name.len + l[j].value.len + 2;
            if (need > bcap) {
                char *nb = realloc(buf, need * 2);
                if (!nb) {
                    oom = 1;
                    break;
                }
                buf = nb;
                bcap = need * 2;
            }
            if (l[j].name.len == 8 && !memcmp(l[j].name.ptr, "__name__", 8))
                oom |= cmap_add(&by_name, l[j].value.ptr, l[j].value.len, 1);
            memcpy(buf, l[j].name.ptr, l[j].name.len);
            buf[l[j].name.len] = '=';
            memcpy(buf + l[j].name.len + 1, l[j].value.ptr, l[j].value.len);
            size_t pl = l[j].name.len + 1 + l[j].value.len;
            size_t before = pairs.n;
            oom |= cmap_add(&pairs, buf, pl, 1);
            if (pairs.n != before) {
                /* a new distinct pair: one more value for this name, its bytes */
                oom |= cmap_add(&names_vals, l[j].name.ptr, l[j].name.len, 1);
                oom |= cmap_add(&mem, l[j].name.ptr, l[j].name.len, l[j].value.len);
            }
        }
    }
    free(buf);
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    jw_t w = {out, oom};
    if (!rc && !oom) {
        out->len = 0;
        jw_fmt(&w, "{\"status\":\"success\",\"data\":{\"headStats\":{\"numSeries\":%" PRIu64
                   ",\"numLabelPairs\":%zu,\"chunkCount\":%" PRIu64 ",\"minTime\":0,\"maxTime\":0}",
               st.series, pairs.n, st.blocks);
        write_top(&w, "seriesCountByMetricName", &by_name, lim);
        write_top(&w, "labelValueCountByLabelName", &names_vals, lim);
        write_top(&w, "memoryInBytesByLabelName", &mem, lim);
        write_top(&w, "seriesCountByLabelValuePair", &pairs, lim);
        jw_s(&w, "}}");
    }
    cmap_free(&by_name);
    cmap_free(&pairs);
    cmap_free(&names_vals);
    cmap_free(&mem);
    if (w.oom) return PQ_ENOMEM;
    if (rc) return store_error(out, status, rc);
    *status = 200;
    return 0;
}

/* ---- entry --------------------------------------------------------------------------------- */

int qapi_handle(tsdb_t *db, const char *path, qapi_param_fn get, void *ctx, int64_t now_ms,
                const qapi_limits_t *lim, tbuf_t *out, int *status)
{
    out->len = 0;
    *status = 500;
    if (!path) return reply_error(out, status, 404, "bad_data", "no path");
    if (!strncmp(path, "/api/v1/", 8)) path += 8;
    while (*path == '/') path++;
    if (!strcmp(path, "query")) return handle_query(db, 0, get, ctx, now_ms, lim, out, status);
    if (!strcmp(path, "query_range")) return handle_query(db, 1, get, ctx, now_ms, lim, out, status);
    if (!strcmp(path, "series")) return handle_series(db, get, ctx, out, status);
    if (!strcmp(path, "labels")) return handle_labels(db, NULL, get, ctx, out, status);
    if (!strcmp(path, "export")) return handle_export(db, get, ctx, out, status);
    if (!strcmp(path, "status/buildinfo")) return handle_buildinfo(out, status);
    if (!strcmp(path, "status/tsdb")) return handle_tsdb_status(db, get, ctx, out, status);
    if (!strcmp(path, "metadata")) {
        /* augur keeps no metric metadata (TYPE/HELP) yet: an empty map */
        jw_t w = {out, 0};
        jw_s(&w, "{\"status\":\"success\",\"data\":{}}");
        if (w.oom) return PQ_ENOMEM;
        *status = 200;
        return 0;
    }
    size_t n = strlen(path);
    if (n > 13 && !strncmp(path, "label/", 6) && !strcmp(path + n - 7, "/values")) {
        char name[256];
        size_t nl = n - 13;
        if (nl >= sizeof name) return reply_error(out, status, 400, "bad_data", "invalid label name");
        memcpy(name, path + 6, nl);
        name[nl] = 0;
        if (!valid_label_name(name)) {
            char msg[320];
            snprintf(msg, sizeof msg, "invalid label name: \"%s\"", name);
            return reply_error(out, status, 400, "bad_data", msg);
        }
        return handle_labels(db, name, get, ctx, out, status);
    }
    return reply_error(out, status, 404, "bad_data", "unknown API endpoint");
}
