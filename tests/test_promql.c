/* test_promql.c — PromQL parser and evaluator: precedence and associativity,
 * error positions and messages, limits (timeout, samples), and a random
 * token-soup test (seeded; AUGUR_TEST_SEED replays) that the parser never
 * crashes, never reads past the end, and types what it accepts. */
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
#include "testutil.h"

typedef struct {
    char dir[256];
    tsdb_t *db;
    tsdb_reader_t *r;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    assert_int_equal(tsdb_open(f->dir, &o, &f->db), 0);
    tsdb_label_t l[2] = {{{"__name__", 8}, {"m", 1}}, {{"k", 1}, {"v", 1}}};
    tsdb_sample_t s[100];
    for (int i = 0; i < 100; i++) s[i] = (tsdb_sample_t){i * 1000, i};
    tsdb_series_in_t in = {l, 2, s, 100};
    assert_int_equal(tsdb_append(f->db, &in, 1, NULL, NULL), 0);
    assert_int_equal(tsdb_reader_open(f->db, &f->r), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    tsdb_reader_close(f->r);
    tsdb_close(f->db);
    tu_rmrf(f->dir);
    free(f);
    return 0;
}

static double scalar_of(fx_t *f, const char *q)
{
    char err[256];
    pq_expr_t *e = NULL;
    int rc = promql_parse(q, strlen(q), &e, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", q, err);
    assert_int_equal(rc, 0);
    pq_opts_t o = {.start_ms = 50000, .end_ms = 50000};
    pq_result_t *res = NULL;
    rc = promql_eval(f->r, e, &o, &res, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", q, err);
    assert_int_equal(rc, 0);
    double v = NAN;
    if (res->nseries && res->series[0].npoints) v = res->series[0].points[0].v;
    promql_result_free(res);
    promql_expr_free(e);
    return v;
}

static void test_precedence(void **state)
{
    fx_t *f = *state;
    assert_true(scalar_of(f, "-2^2") == -4);
    assert_true(scalar_of(f, "2^3^2") == 512);
    assert_true(scalar_of(f, "1 - 2 - 3") == -4);
    assert_true(scalar_of(f, "8 / 2 / 2") == 2);
    assert_true(scalar_of(f, "2 + 3 * 4") == 14);
    assert_true(scalar_of(f, "-1 * 2 + 3") == 1);
    assert_true(scalar_of(f, "1 + 2 == bool 3") == 1);
    assert_true(scalar_of(f, "7 % 4 ^ 1") == 3);
    assert_true(scalar_of(f, "0x10 + 010 + 1e1 + .5") == 16 + 8 + 10 + 0.5);
    assert_true(isinf(scalar_of(f, "+Inf")) && isnan(scalar_of(f, "nan")));
    assert_true(scalar_of(f, "scalar(m)") == 50);
    assert_true(scalar_of(f, "scalar(m offset 10s)") == 40);
    assert_true(scalar_of(f, "scalar(m @ 20)") == 20);
    assert_true(scalar_of(f, "scalar(sum_over_time(m[3s]))") == 47 + 48 + 49 + 50);
    assert_true(scalar_of(f, "scalar(count_over_time(m[10s:2s]))") == 6);
    assert_true(scalar_of(f, "scalar(rate(m[10s]))") == 1);
    /* lookback: the last sample is at 99 s; 5 min later it is gone */
    assert_true(scalar_of(f, "scalar(m @ 399)") == 99);
    assert_true(isnan(scalar_of(f, "scalar(m @ 399.001)")));
}

static void expect_parse_error(const char *q, const char *want)
{
    char err[512];
    pq_expr_t *e = NULL;
    int rc = promql_parse(q, strlen(q), &e, err, sizeof err);
    if (rc != PQ_EPARSE || !strstr(err, want)) {
        fprintf(stderr, "query %s\n got %d %s\n want ...%s...\n", q, rc, rc ? err : "ok", want);
        fail();
    }
    assert_null(e);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("", "1:1: parse error: no expression found in input");
    expect_parse_error("sum(", "1:5: parse error: unexpected end of input");
    expect_parse_error("foo{a=\"b\"", "1:10: parse error: unexpected end of input in label matching, expected \",\" or \"}\"");
    expect_parse_error("rate(foo)", "expected type range vector in call to function \"rate\", got instant vector");
    expect_parse_error("abs(foo, 1)", "expected 1 argument(s) in call to \"abs\", got 2");
    expect_parse_error("nosuch(foo)", "unknown function with name \"nosuch\"");
    expect_parse_error("foo[5m] + 1", "binary expression must contain only scalar and instant vector types");
    expect_parse_error("1 > 2", "comparisons between scalars must use BOOL modifier");
    expect_parse_error("foo and 1", "set operator \"and\" not allowed in binary scalar expression");
    expect_parse_error("{}", "vector selector must contain at least one non-empty matcher");
    expect_parse_error("{a=~\".*\"}", "vector selector must contain at least one non-empty matcher");
    expect_parse_error("foo{a=~\"(\"}", "error parsing regexp");
    expect_parse_error("foo offset 5m [5m]", "no offset modifiers allowed before range");
    expect_parse_error("(foo)[5m]", "ranges only allowed for vector selectors");
    expect_parse_error("foo[5m][5m:1m]", "subquery is only allowed on instant vector");
    expect_parse_error("foo\n  + @", "2:5: parse error: unexpected \"@\"");
    expect_parse_error("\"abc", "unterminated quoted string");
    expect_parse_error("foo{a=\"\\q\"}", "unknown escape sequence");
    expect_parse_error("foo{__name__=\"bar\"}", "metric name must not be set twice");
    expect_parse_error("1 + bool 2", "bool modifier can only be used on comparison operators");
    expect_parse_error("foo + on(a) group_left(a) bar", "must not occur in ON and GROUP clause at once");
    expect_parse_error("5m", "unexpected duration");
    expect_parse_error("foo @ 1 @ 2", "may not be set multiple times");
    expect_parse_error("sum(foo) by (a) by (b)", "unexpected identifier \"by\"");
}

static void test_limits(void **state)
{
    fx_t *f = *state;
    char err[256];
    pq_expr_t *e = NULL;
    const char *q = "sum_over_time(vector(1)[1000d:1s])";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    pq_opts_t o = {.start_ms = 0, .end_ms = 0, .timeout_ms = 50, .max_samples = UINT64_MAX};
    pq_result_t *res = NULL;
    assert_int_equal(promql_eval(f->r, e, &o, &res, err, sizeof err), PQ_ETIMEOUT);
    assert_null(res);
    promql_expr_free(e);
    q = "count_over_time(m[1h])";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    pq_opts_t o2 = {.start_ms = 100000, .end_ms = 100000, .max_samples = 99};
    assert_int_equal(promql_eval(f->r, e, &o2, &res, err, sizeof err), PQ_ESAMPLES);
    o2.max_samples = 100;
    assert_int_equal(promql_eval(f->r, e, &o2, &res, err, sizeof err), 0);
    assert_int_equal(res->nseries, 1);
    assert_true(res->series[0].points[0].v == 100);
    promql_result_free(res);
    promql_expr_free(e);
}

/* Random soups of PromQL tokens: parse must return 0 or PQ_EPARSE, and an
 * accepted expression must evaluate without crashing. The buffer is exactly
 * the query's length (no NUL) so ASan catches reads past the end. */
static void test_random_soup(void **state)
{
    fx_t *f = *state;
    static const char *tok[] = {
        "m", "foo", "{", "}", "(", ")", "[", "]", "5m", "1s", ":", ",", "=", "!=", "=~", "!~", "\"v\"",
        "'x'", "k", "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<=", "and", "or", "unless", "by",
        "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "@", "1", "0.5",
        "sum", "rate", "topk", "count_values", "label_replace", "histogram_quantile", "abs", "start()",
        "vector", "time()", "Inf", "NaN", "absent", "quantile_over_time", "#c\n", " ", "1e3", "0x1f"};
    trng_t r;
    trng_seed(&r, tu_seed("promql_soup", 12345));
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char buf[512];
        size_t n = 0;
        int nt = 1 + (int)trng_below(&r, 12);
        for (int i = 0; i < nt; i++) {
            const char *t = tok[trng_below(&r, sizeof tok / sizeof tok[0])];
            size_t l = strlen(t);
            if (n + l + 1 >= sizeof buf) break;
            memcpy(buf + n, t, l);
            n += l;
            if (trng_below(&r, 2)) buf[n++] = ' ';
        }
        char *q = malloc(n ? n : 1);
        memcpy(q, buf, n);
        char err[256];
        pq_expr_t *e = NULL;
        int rc = promql_parse(q, n, &e, err, sizeof err);
        assert_true(rc == 0 || rc == PQ_EPARSE);
        if (rc == 0) {
            accepted++;
            pq_type_t t = promql_expr_type(e);
            assert_true(t >= PQ_T_SCALAR && t <= PQ_T_STRING);
            pq_opts_t o = {.start_ms = 60000, .end_ms = 60000, .timeout_ms = 2000};
            pq_result_t *res = NULL;
            int erc = promql_eval(f->r, e, &o, &res, err, sizeof err);
            assert_true(erc == 0 || erc == PQ_EEXEC);
            promql_result_free(res);
        }
        promql_expr_free(e);
        free(q);
    }
    fprintf(stderr, "random soup: %d of 20000 accepted\n", accepted);
    assert_true(accepted > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_soup, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
