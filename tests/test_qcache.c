/* test_qcache.c — the range-query result cache (query/qcache.c) over a real
 * store: every answer through the cache must be byte-identical to the same
 * request evaluated without it, after new appends, after a backfill inside
 * the cached range, after delete_series and retention; hits, partial hits
 * and invalidations are counted; a small cache evicts. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "query/query_api.h"
#include "testutil.h"

#define T0 1700000000000LL
#define NOW (T0 + 86400000LL) /* the server clock: a day after the data */

typedef struct {
    const char *kv[16];
} params_t;

static const char *get_param(void *ctx, const char *name, size_t idx)
{
    params_t *p = ctx;
    for (size_t i = 0; p->kv[i]; i += 2) {
        if (strcmp(p->kv[i], name)) continue;
        if (idx == 0) return p->kv[i + 1];
        idx--;
    }
    return NULL;
}

typedef struct {
    char dir[256];
    tsdb_t *db;
    qapi_cache_t *cache;
    tbuf_t a, b;
} fx_t;

static void append(tsdb_t *db, const char *node, const char *mode, int64_t t, double v)
{
    tsdb_label_t l[4] = {{{"__name__", 8}, {"cpu_seconds_total", 17}},
                         {{"instance", 8}, {node, (uint32_t)strlen(node)}},
                         {{"job", 3}, {"node", 4}},
                         {{"mode", 4}, {mode, (uint32_t)strlen(mode)}}};
    tsdb_sample_t s = {t, v};
    tsdb_series_in_t in = {l, 4, &s, 1};
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append(db, &in, 1, NULL, &res), 0);
    assert_int_equal(res.stored, 1);
}

static const char *nodes[] = {"n1", "n2", "n3"};
static const char *modes[] = {"user", "system", "idle"};

/* 3 nodes x 3 modes, 15 s apart over [T0, T0 + minutes) */
static void load(tsdb_t *db, int64_t from_min, int64_t to_min)
{
    for (int64_t t = T0 + from_min * 60000; t < T0 + to_min * 60000; t += 15000)
        for (int n = 0; n < 3; n++)
            for (int m = 0; m < 3; m++) {
                double v = (double)(t - T0) / 1000 * (n + 1) * (m + 1) / 7.0;
                if (n == 1 && m == 0 && t >= T0 + 40 * 60000) v -= 5000; /* a counter reset */
                append(db, nodes[n], modes[m], t, v);
            }
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.ooo_window_ms = 86400000LL * 30;
    o.retention_ms = 86400000LL * 365; /* applied only when a test calls tsdb_retention_apply */
    assert_int_equal(tsdb_open(f->dir, &o, &f->db), 0);
    load(f->db, 0, 60);
    f->cache = qapi_cache_new(8 << 20);
    assert_non_null(f->cache);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    qapi_cache_free(f->cache);
    tsdb_close(f->db);
    tu_rmrf(f->dir);
    tbuf_free(&f->a);
    tbuf_free(&f->b);
    free(f);
    return 0;
}

static const char *queries[] = {
    "sum by (instance) (rate(cpu_seconds_total{mode!=\"idle\"}[5m]))",
    "topk(2, rate(cpu_seconds_total[5m]))",
    "cpu_seconds_total{instance=\"n2\"}",
    "avg(irate(cpu_seconds_total[2m])) + 1",
    "cpu_seconds_total offset -2m",
    "sum(cpu_seconds_total @ end())",
    "max_over_time(rate(cpu_seconds_total{mode=\"user\"}[2m])[10m:1m])",
    "count(cpu_seconds_total)",
};

/* One range query through the cache (a) and without it (b); the bodies must
 * be the same bytes. Returns the status. */
static int both(fx_t *f, const char *q, int64_t start_s, int64_t end_s, int64_t step_s)
{
    char s[32], e[32], st[32];
    snprintf(s, sizeof s, "%lld", (long long)start_s);
    snprintf(e, sizeof e, "%lld", (long long)end_s);
    snprintf(st, sizeof st, "%lld", (long long)step_s);
    params_t p = {{"query", q, "start", s, "end", e, "step", st, NULL}};
    qapi_limits_t with = {0}, without = {0};
    with.cache = f->cache;
    int sa = 0, sb = 0;
    assert_int_equal(qapi_handle(f->db, "query_range", get_param, &p, NOW, &with, &f->a, &sa), 0);
    assert_int_equal(qapi_handle(f->db, "query_range", get_param, &p, NOW, &without, &f->b, &sb),
                     0);
    assert_int_equal(sa, sb);
    if (f->a.len != f->b.len || memcmp(f->a.p, f->b.p, f->a.len)) {
        fprintf(stderr, "query %s [%s, %s] step %s\ncached:   %.*s\nuncached: %.*s\n", q, s, e, st,
                (int)(f->a.len > 600 ? 600 : f->a.len), (char *)f->a.p,
                (int)(f->b.len > 600 ? 600 : f->b.len), (char *)f->b.p);
        fail_msg("cached answer differs from the uncached one");
    }
    return sa;
}

static void all_queries(fx_t *f, int64_t start_s, int64_t end_s, int64_t step_s)
{
    for (size_t i = 0; i < sizeof queries / sizeof *queries; i++)
        assert_int_equal(both(f, queries[i], start_s, end_s, step_s), 200);
}

static qapi_cache_stats_t stats(fx_t *f)
{
    qapi_cache_stats_t st;
    qapi_cache_stats(f->cache, &st);
    return st;
}

#define S0 (T0 / 1000)

static void test_hit_equals_uncached(void **state)
{
    fx_t *f = *state;
    all_queries(f, S0 + 300, S0 + 3585, 15);
    qapi_cache_stats_t a = stats(f);
    /* @ end() and negative offsets are not cacheable for every step... */
    assert_true(a.misses >= 5);
    assert_int_equal(a.hits, 0);
    all_queries(f, S0 + 300, S0 + 3585, 15);
    qapi_cache_stats_t b = stats(f);
    assert_int_equal(b.hits - a.hits, a.misses);
    assert_int_equal(b.misses, a.misses);
    assert_true(b.entries > 0 && b.bytes > 0);
    /* a later start on the same grid is served from the same entries */
    all_queries(f, S0 + 600, S0 + 3585, 15);
    assert_int_equal(stats(f).hits - b.hits, a.misses);
    /* another phase of the step is another key */
    all_queries(f, S0 + 307, S0 + 3585, 15);
    assert_int_equal(stats(f).misses, 2 * a.misses);
}

static void test_new_appends_partial(void **state)
{
    fx_t *f = *state;
    all_queries(f, S0 + 300, S0 + 3585, 15);
    load(f->db, 62, 70); /* after every cached step (+ 2m lookahead): nothing invalidated */
    qapi_cache_stats_t a = stats(f);
    all_queries(f, S0 + 300, S0 + 4185, 15);
    qapi_cache_stats_t b = stats(f);
    assert_int_equal(b.invalidations, a.invalidations);
    assert_int_equal(b.partial_hits - a.partial_hits, a.misses);
    all_queries(f, S0 + 300, S0 + 4185, 15);
    assert_int_equal(stats(f).hits - b.hits, a.misses);
}

static void test_backfill_invalidates(void **state)
{
    fx_t *f = *state;
    all_queries(f, S0 + 300, S0 + 3585, 15);
    qapi_cache_stats_t a = stats(f);
    /* a new series backfilled into the middle of the cached range, and an
     * out-of-order sample of an existing series */
    for (int64_t t = T0 + 20 * 60000; t < T0 + 30 * 60000; t += 15000)
        append(f->db, "n9", "user", t, (double)(t - T0) / 100);
    append(f->db, "n1", "user", T0 + 30 * 60000 + 7000, 1e9);
    all_queries(f, S0 + 300, S0 + 3585, 15);
    qapi_cache_stats_t b = stats(f);
    assert_true(b.invalidations > a.invalidations);
    assert_int_equal(b.hits, a.hits);
}

static void test_delete_retention_invalidate(void **state)
{
    fx_t *f = *state;
    all_queries(f, S0 + 300, S0 + 3585, 15);
    tsdb_matcher_t m = {TSDB_MATCH_EQ, "instance", "n2"};
    uint64_t nd = 0;
    assert_int_equal(tsdb_delete_series(f->db, &m, 1, &nd), 0);
    assert_int_equal(nd, 3);
    all_queries(f, S0 + 300, S0 + 3585, 15);
    qapi_cache_stats_t a = stats(f);
    assert_true(a.invalidations > 0);
    assert_int_equal(a.hits, 0);
    uint64_t g = tsdb_generation(f->db);
    /* in-order appends after the watched time do not move the generation */
    load(f->db, 62, 63);
    assert_int_equal(tsdb_generation(f->db), g);
    /* a backfill at or before it does */
    append(f->db, "n7", "idle", T0 + 1000, 1);
    assert_true(tsdb_generation(f->db) > g);
    /* retention dropping the sealed data */
    all_queries(f, S0 + 300, S0 + 3585, 15);
    assert_int_equal(tsdb_flush(f->db), 0);
    all_queries(f, S0 + 300, S0 + 3585, 15);
    assert_int_equal(both(f, queries[0], S0 + 300, S0 + 3585, 15), 200);
    char *before = strndup((char *)f->a.p, f->a.len);
    g = tsdb_generation(f->db);
    assert_int_equal(tsdb_retention_apply(f->db, T0 + 86400000LL * 366), 0);
    assert_true(tsdb_generation(f->db) > g);
    all_queries(f, S0 + 300, S0 + 3585, 15);
    assert_int_equal(both(f, queries[0], S0 + 300, S0 + 3585, 15), 200);
    assert_true(strlen(before) != f->a.len ||
                memcmp(before, f->a.p, f->a.len)); /* data was dropped */
    free(before);
}

static void test_recent_steps_not_cached(void **state)
{
    fx_t *f = *state;
    /* the clock is just after the data: the last 5 min are recomputed every
     * time, the older part comes from the cache */
    char s[32], e[32];
    snprintf(s, sizeof s, "%lld", (long long)S0 + 300);
    snprintf(e, sizeof e, "%lld", (long long)S0 + 3585);
    params_t p = {{"query", queries[0], "start", s, "end", e, "step", "15", NULL}};
    qapi_limits_t with = {0}, without = {0};
    with.cache = f->cache;
    int sa, sb;
    int64_t now = T0 + 3600000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qapi_handle(f->db, "query_range", get_param, &p, now, &with, &f->a, &sa),
                         0);
        if (i == 1) load(f->db, 60, 61); /* not in the cached steps: no invalidation */
    }
    assert_int_equal(qapi_handle(f->db, "query_range", get_param, &p, now, &without, &f->b, &sb),
                     0);
    assert_int_equal(sa, 200);
    assert_int_equal(f->a.len, f->b.len);
    assert_memory_equal(f->a.p, f->b.p, f->a.len);
    qapi_cache_stats_t st = stats(f);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.partial_hits, 2);
    assert_int_equal(st.invalidations, 0);
    /* the clock before the whole range: nothing cacheable, not counted */
    assert_int_equal(qapi_handle(f->db, "query_range", get_param, &p, T0, &with, &f->a, &sa), 0);
    assert_int_equal(stats(f).misses, 1);
}

static void test_small_cache_evicts(void **state)
{
    fx_t *f = *state;
    qapi_cache_free(f->cache);
    f->cache = qapi_cache_new(24 << 10);
    for (int r = 0; r < 2; r++)
        for (int64_t st = 15; st <= 120; st += 15)
            all_queries(f, S0 + 300, S0 + 3585, st);
    qapi_cache_stats_t a = stats(f);
    assert_true(a.evictions > 0);
    assert_true(a.bytes <= 24 << 10);
    tbuf_t m = {0};
    assert_int_equal(qapi_cache_metrics(f->cache, &m), 0);
    assert_non_null(strstr((char *)m.p, "augur_query_cache_requests_total{result=\"hit\"}"));
    assert_non_null(strstr((char *)m.p, "augur_query_cache_evictions_total"));
    tbuf_free(&m);
}

static void test_errors_not_cached(void **state)
{
    fx_t *f = *state;
    /* many-to-many matching: 422 every time, and nothing kept */
    assert_int_equal(
        both(f, "cpu_seconds_total / on() group_left cpu_seconds_total", S0 + 300, S0 + 3585, 15),
        422);
    assert_int_equal(
        both(f, "cpu_seconds_total / on() group_left cpu_seconds_total", S0 + 300, S0 + 3585, 15),
        422);
    assert_int_equal(stats(f).entries, 0);
    assert_int_equal(stats(f).misses, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hit_equals_uncached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_appends_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backfill_invalidates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_retention_invalidate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent_steps_not_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_cache_evicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_not_cached, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
