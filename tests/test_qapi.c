/* test_qapi.c — the Prometheus HTTP query API (query/qapi.c) end to end over
 * a real store: envelopes, value formatting, status codes, the endpoints
 * Grafana and the shared benchmark use. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "query/promql.h"
#include "query/query_api.h"
#include "testutil.h"

typedef struct {
    const char *kv[32]; /* name, value, name, value, ..., NULL */
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
    tbuf_t out;
} fx_t;

static void add_series(tsdb_t *db, const char *const *kv, const tsdb_sample_t *s, size_t n)
{
    tsdb_label_t l[16];
    size_t nl = 0;
    for (size_t i = 0; kv[i]; i += 2, nl++) {
        l[nl].name = (tsdb_str_t){kv[i], (uint32_t)strlen(kv[i])};
        l[nl].value = (tsdb_str_t){kv[i + 1], (uint32_t)strlen(kv[i + 1])};
    }
    tsdb_series_in_t in = {l, (uint32_t)nl, s, (uint32_t)n};
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append(db, &in, 1, NULL, &res), 0);
    assert_int_equal(res.stored, n);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    assert_int_equal(tsdb_open(f->dir, &o, &f->db), 0);
    /* up{job="node",instance="a"}: 1 every 15 s from t=0 to 300 s */
    tsdb_sample_t s[21];
    for (int i = 0; i <= 20; i++) s[i] = (tsdb_sample_t){i * 15000, 1};
    add_series(f->db, (const char *[]){"__name__", "up", "job", "node", "instance", "a", NULL}, s, 21);
    for (int i = 0; i <= 20; i++) s[i] = (tsdb_sample_t){i * 15000, i < 10 ? 0 : 1};
    add_series(f->db, (const char *[]){"__name__", "up", "job", "node", "instance", "b", NULL}, s, 21);
    /* a counter with exact values, a NaN, +Inf */
    tsdb_sample_t c[] = {{0, 0.1}, {15000, 1e6}, {30000, 1.5e-7}, {45000, NAN}, {60000, INFINITY},
                         {75000, -2.5}, {90000, 123456789.125}};
    add_series(f->db, (const char *[]){"__name__", "odd", "job", "x", NULL}, c, 7);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    tsdb_close(f->db);
    tu_rmrf(f->dir);
    tbuf_free(&f->out);
    free(f);
    return 0;
}

static const char *call(fx_t *f, const char *path, params_t *p, int *status)
{
    assert_int_equal(qapi_handle(f->db, path, get_param, p, 300000, NULL, &f->out, status), 0);
    assert_int_equal(tbuf_put(&f->out, "", 1), 0);
    return (const char *)f->out.p;
}

static void expect(fx_t *f, const char *path, params_t p, int want_status, const char *want)
{
    int st = 0;
    const char *got = call(f, path, &p, &st);
    if (st != want_status || strcmp(got, want)) {
        fprintf(stderr, "path %s\n got  %d %s\n want %d %s\n", path, st, got, want_status, want);
        fail();
    }
}

static void expect_has(fx_t *f, const char *path, params_t p, int want_status, const char *needle)
{
    int st = 0;
    const char *got = call(f, path, &p, &st);
    if (st != want_status || !strstr(got, needle)) {
        fprintf(stderr, "path %s\n got  %d %s\n want %d ...%s...\n", path, st, got, want_status, needle);
        fail();
    }
}

static void test_instant_vector(void **state)
{
    fx_t *f = *state;
    expect(f, "query", (params_t){{"query", "up", "time", "300", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
           "{\"metric\":{\"__name__\":\"up\",\"instance\":\"a\",\"job\":\"node\"},\"value\":[300,\"1\"]},"
           "{\"metric\":{\"__name__\":\"up\",\"instance\":\"b\",\"job\":\"node\"},\"value\":[300,\"1\"]}]}}");
    /* default time is now_ms; fractional seconds as Prometheus prints them */
    expect(f, "query", (params_t){{"query", "sum(up)", "time", "100.5", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
           "{\"metric\":{},\"value\":[100.500,\"1\"]}]}}");
    expect(f, "query", (params_t){{"query", "sum by (job) (up)", "time", "2024-01-01T00:00:00Z", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}");
}

static void test_scalar_string(void **state)
{
    fx_t *f = *state;
    expect(f, "query", (params_t){{"query", "1+1", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[300,\"2\"]}}");
    expect(f, "query", (params_t){{"query", "\"hi\"", "time", "1", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"string\",\"result\":[1,\"hi\"]}}");
    expect(f, "query", (params_t){{"query", "1/0", "time", "1", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"+Inf\"]}}");
    expect(f, "query", (params_t){{"query", "-1/0", "time", "1", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"-Inf\"]}}");
    expect(f, "query", (params_t){{"query", "0/0", "time", "1", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"NaN\"]}}");
}

static void test_matrix_raw(void **state)
{
    fx_t *f = *state;
    /* raw samples of a range selector, values formatted like Go's 'f', -1 */
    expect(f, "query", (params_t){{"query", "odd[2m]", "time", "90", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":["
           "{\"metric\":{\"__name__\":\"odd\",\"job\":\"x\"},\"values\":[[0,\"0.1\"],[15,\"1000000\"],"
           "[30,\"0.00000015\"],[45,\"NaN\"],[60,\"+Inf\"],[75,\"-2.5\"],[90,\"123456789.125\"]]}]}}");
    expect(f, "query", (params_t){{"query", "count_over_time(up{instance=\"b\"}[1m])", "time", "300", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
           "{\"metric\":{\"instance\":\"b\",\"job\":\"node\"},\"value\":[300,\"5\"]}]}}");
    expect(f, "query", (params_t){{"query", "sum(count_over_time({job=\"node\"}[5m]))", "time", "300", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
           "{\"metric\":{},\"value\":[300,\"42\"]}]}}");
}

static void test_range_query(void **state)
{
    fx_t *f = *state;
    expect(f, "query_range", (params_t){{"query", "up{instance=\"b\"}", "start", "120", "end", "165", "step", "15s", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":["
           "{\"metric\":{\"__name__\":\"up\",\"instance\":\"b\",\"job\":\"node\"},\"values\":"
           "[[120,\"0\"],[135,\"0\"],[150,\"1\"],[165,\"1\"]]}]}}");
    expect_has(f, "query_range", (params_t){{"query", "up", "start", "10", "end", "5", "step", "1", NULL}}, 400,
               "end timestamp must not be before start time");
    expect_has(f, "query_range", (params_t){{"query", "up", "start", "0", "end", "100000", "step", "1", NULL}}, 400,
               "exceeded maximum resolution of 11,000 points");
    expect_has(f, "query_range", (params_t){{"query", "up[5m]", "start", "0", "end", "10", "step", "1", NULL}}, 400,
               "invalid expression type \\\"range vector\\\" for range query");
}

static void test_errors(void **state)
{
    fx_t *f = *state;
    expect_has(f, "query", (params_t){{"query", "sum(", NULL}}, 400,
               "\"errorType\":\"bad_data\",\"error\":\"invalid parameter \\\"query\\\": 1:5: parse error:");
    expect_has(f, "query", (params_t){{"query", "up", "time", "yesterday", NULL}}, 400,
               "invalid parameter \\\"time\\\": cannot parse \\\"yesterday\\\" to a valid timestamp");
    /* duplicate label sets after dropping __name__: 422 like Prometheus */
    expect_has(f, "query", (params_t){{"query", "count_over_time({__name__=~\"up|odd\"}[5m]) * 0 + label_replace(vector(1), \"a\", \"b\", \"\", \"\")", NULL}}, 200,
               "success");
    expect_has(f, "query", (params_t){{"query", "abs({job=~\"node|x\"}) + on() group_left vector(1)", "time", "90", NULL}}, 200,
               "success");
    expect_has(f, "query", (params_t){{"query", "up + on() up", "time", "90", NULL}}, 422,
               "\"errorType\":\"execution\"");
    qapi_limits_t lim = {.max_samples = 5};
    params_t p = {{"query", "count_over_time(up[5m])", "time", "300", NULL}};
    int st;
    assert_int_equal(qapi_handle(f->db, "query", get_param, &p, 0, &lim, &f->out, &st), 0);
    assert_int_equal(st, 422);
}

static void test_series_labels(void **state)
{
    fx_t *f = *state;
    expect(f, "series", (params_t){{"match[]", "up", "match[]", "{job=\"x\"}", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[{\"__name__\":\"odd\",\"job\":\"x\"},"
           "{\"__name__\":\"up\",\"instance\":\"a\",\"job\":\"node\"},"
           "{\"__name__\":\"up\",\"instance\":\"b\",\"job\":\"node\"}]}");
    expect_has(f, "series", (params_t){{NULL}}, 400, "no match[] parameter provided");
    expect(f, "labels", (params_t){{NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"__name__\",\"instance\",\"job\"]}");
    expect(f, "labels", (params_t){{"match[]", "odd", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"__name__\",\"job\"]}");
    expect(f, "label/job/values", (params_t){{NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"node\",\"x\"]}");
    expect(f, "label/instance/values", (params_t){{"match[]", "up{instance=\"a\"}", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"a\"]}");
    expect(f, "label/__name__/values", (params_t){{"limit", "1", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"odd\"]}");
    expect(f, "metadata", (params_t){{NULL}}, 200, "{\"status\":\"success\",\"data\":{}}");
    expect_has(f, "status/buildinfo", (params_t){{NULL}}, 200, "\"version\":\"2.42.0\"");
    expect_has(f, "status/tsdb", (params_t){{NULL}}, 200,
               "\"seriesCountByMetricName\":[{\"name\":\"up\",\"value\":2},{\"name\":\"odd\",\"value\":1}]");
    assert_true(qapi_handles("query") && qapi_handles("label/job/values") && qapi_handles("status/tsdb"));
    assert_false(qapi_handles("write") || qapi_handles("label//values"));
}

static void test_export(void **state)
{
    fx_t *f = *state;
    expect(f, "export", (params_t){{"match[]", "odd", "end", "60", NULL}}, 200,
           "{\"metric\":{\"__name__\":\"odd\",\"job\":\"x\"},\"values\":[0.1,1000000,0.00000015,\"NaN\",\"+Inf\"],"
           "\"timestamps\":[0,15000,30000,45000,60000]}\n");
}

/* What Grafana's Prometheus data source sends, in order, and the shapes it
 * parses: "Save & test" (query=1+1 then buildinfo), a dashboard panel
 * (query_range with step, aligned start/end), template variables (label
 * values with match[], series), metadata for the query editor. */
static void test_grafana(void **state)
{
    fx_t *f = *state;
    expect_has(f, "query", (params_t){{"query", "1+1", "time", "300", NULL}}, 200,
               "\"resultType\":\"scalar\",\"result\":[300,\"2\"]");
    expect_has(f, "status/buildinfo", (params_t){{NULL}}, 200, "{\"status\":\"success\",\"data\":{\"version\":");
    expect(f, "query_range",
           (params_t){{"query", "sum by (job) (rate(up[1m]))", "start", "240", "end", "300", "step", "30", NULL}}, 200,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":["
           "{\"metric\":{\"job\":\"node\"},\"values\":[[240,\"0\"],[270,\"0\"],[300,\"0\"]]}]}}");
    /* RFC 3339 times as Grafana sometimes sends them */
    expect_has(f, "query_range",
               (params_t){{"query", "up", "start", "1970-01-01T00:04:00Z", "end", "1970-01-01T00:05:00.000Z", "step", "60", NULL}},
               200, "[[240,\"1\"],[300,\"1\"]]");
    expect(f, "label/instance/values",
           (params_t){{"match[]", "up{job=\"node\"}", "start", "0", "end", "300", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"a\",\"b\"]}");
    expect(f, "labels", (params_t){{"start", "0", "end", "300", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[\"__name__\",\"instance\",\"job\"]}");
    expect(f, "series", (params_t){{"match[]", "{__name__=\"up\",instance=\"a\"}", "start", "0", "end", "300", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[{\"__name__\":\"up\",\"instance\":\"a\",\"job\":\"node\"}]}");
    expect(f, "metadata", (params_t){{"limit", "1000", NULL}}, 200, "{\"status\":\"success\",\"data\":{}}");
    /* the series of a time range outside the data: empty list, not an error */
    expect(f, "series", (params_t){{"match[]", "up", "start", "100000", "end", "200000", NULL}}, 200,
           "{\"status\":\"success\",\"data\":[]}");
    expect_has(f, "label/instance/values", (params_t){{"match[]", "up{", NULL}}, 400, "\"errorType\":\"bad_data\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_instant_vector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scalar_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matrix_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_series_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grafana, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
