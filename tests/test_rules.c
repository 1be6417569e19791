/*
 * test_rules.c — rule files and templates.
 *
 *   defaults        rules/augur-defaults.yml (compiled in) loads cleanly,
 *                   names the alerts, and its expressions give the
 *                   hand-computed values over written series (promql_eval)
 *   good_file       every field read; recording rules
 *   bad_file        one "file:line:col: why" per problem, as promtool
 *   templates       the Go-template subset: values, functions, pipelines,
 *                   trim markers, comments; refusals with a column
 *   format          Go's float formatting, durations
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "alert/alert.h"
#include "alert/alert_int.h"
#include "query/promql.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

static const char *src_dir(void)
{
    const char *s = getenv("AUGUR_SRC");
    return s && *s ? s : "..";
}

static const alert_rule_def_t *find_rule(const alert_ruleset_t *rs, const char *name)
{
    for (size_t g = 0; g < rs->ngroups; g++)
        for (size_t r = 0; r < rs->groups[g].nrules; r++) {
            const alert_rule_def_t *d = &rs->groups[g].rules[r];
            if ((d->alert && !strcmp(d->alert, name)) || (d->record && !strcmp(d->record, name)))
                return d;
        }
    return NULL;
}

static void put(tsdb_t *db, const tsdb_label_t *l, uint32_t nl, int64_t t, double v)
{
    tsdb_sample_t s = {t, v};
    tsdb_series_in_t in = {l, nl, &s, 1};
    assert_int_equal(tsdb_append(db, &in, 1, NULL, NULL), 0);
}

/* Values of expression e at t, sorted by their first non-name label. */
static size_t eval_expr(tsdb_t *db, const pq_expr_t *e, int64_t t, double *v, size_t cap)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    pq_opts_t o;
    memset(&o, 0, sizeof o);
    o.start_ms = o.end_ms = t;
    pq_result_t *res;
    char err[200];
    assert_int_equal(promql_eval(r, e, &o, &res, err, sizeof err), 0);
    size_t n = res->nseries < cap ? res->nseries : cap;
    for (size_t i = 0; i < n; i++)
        v[i] = res->series[i].points[0].v;
    promql_result_free(res);
    tsdb_reader_close(r);
    return n;
}

static void test_defaults(void **state)
{
    (void)state;
    alert_ruleset_t rs = {0};
    tbuf_t errs = {0};
    size_t nerrs = 0;
    int rc = alert_rules_load_buffer(&rs, "augur-defaults.yml", alert_default_rules,
                                     alert_default_rules_len, &errs, &nerrs);
    if (rc) fprintf(stderr, "%.*s", (int)errs.len, (char *)errs.p);
    assert_int_equal(rc, 0);
    const char *names[] = {
        "DiskFailurePredicted",   "GPUFailurePredicted", "NodeAnomalous",
        "DiskReallocatedSectors", "DiskPendingSectors",  "GPUDoubleBitECCErrors",
        "GPURowRemapFailure",     "GPUXidError",         "DrainCircuitBreakerTripped"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_non_null(find_rule(&rs, names[i]));
    /* The shipped file and the compiled-in copy are the same bytes. */
    char p[4096];
    snprintf(p, sizeof p, "%s/rules/augur-defaults.yml", src_dir());
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *buf = malloc(alert_default_rules_len + 2);
    size_t n = fread(buf, 1, alert_default_rules_len + 1, f);
    fclose(f);
    assert_int_equal(n, alert_default_rules_len);
    assert_memory_equal(buf, alert_default_rules, n);
    free(buf);

    /* Expressions over written series, against values computed by hand. */
    char dir[512];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    tsdb_t *db;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    int64_t t = 1700000000000LL;
    tsdb_label_t smart5[5] = {{{"__name__", 8}, {"smartctl_device_attribute", 25}},
                              {{"attribute_id", 12}, {"5", 1}},
                              {{"attribute_value_type", 20}, {"raw", 3}},
                              {{"device", 6}, {"sda", 3}},
                              {{"instance", 8}, {"n1", 2}}};
    tsdb_label_t smart5v[5] = {{{"__name__", 8}, {"smartctl_device_attribute", 25}},
                               {{"attribute_id", 12}, {"5", 1}},
                               {{"attribute_value_type", 20}, {"value", 5}},
                               {{"device", 6}, {"sda", 3}},
                               {{"instance", 8}, {"n1", 2}}};
    put(db, smart5, 5, t, 8);
    put(db, smart5v, 5, t, 100); /* normalised value: must not match */
    tsdb_label_t dbe[3] = {{{"__name__", 8}, {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 29}},
                           {{"gpu", 3}, {"0", 1}},
                           {{"instance", 8}, {"n1", 2}}};
    /* Counter 2 -> 2 -> 5 over 10 min: increase over [15m] extrapolated. */
    put(db, dbe, 3, t - 10 * 60000, 2);
    put(db, dbe, 3, t - 5 * 60000, 2);
    put(db, dbe, 3, t, 5);
    tsdb_label_t xid[3] = {{{"__name__", 8}, {"DCGM_FI_DEV_XID_ERRORS", 22}},
                           {{"gpu", 3}, {"0", 1}},
                           {{"instance", 8}, {"n1", 2}}};
    tsdb_label_t xid2[3] = {{{"__name__", 8}, {"DCGM_FI_DEV_XID_ERRORS", 22}},
                            {{"gpu", 3}, {"1", 1}},
                            {{"instance", 8}, {"n1", 2}}};
    put(db, xid, 3, t, 79);  /* fallen off the bus: alert */
    put(db, xid2, 3, t, 13); /* graphics engine exception: no alert */
    tsdb_label_t prob[4] = {{{"__name__", 8}, {"augur_failure_probability", 25}},
                            {{"instance", 8}, {"n1", 2}},
                            {{"kind", 4}, {"disk", 4}},
                            {{"serial", 6}, {"S1", 2}}};
    put(db, prob, 4, t, 0.85);
    double v[8];
    assert_int_equal(eval_expr(db, find_rule(&rs, "DiskReallocatedSectors")->pq, t, v, 8), 1);
    assert_true(v[0] == 8);
    assert_int_equal(eval_expr(db, find_rule(&rs, "DiskPendingSectors")->pq, t, v, 8), 0);
    assert_int_equal(eval_expr(db, find_rule(&rs, "GPUDoubleBitECCErrors")->pq, t, v, 8), 1);
    /* increase by hand (Prometheus' extrapolation): 3 over 600 s of
     * samples; the gap to the window start (300 s) is under 1.1 x the
     * average interval (330 s), and the counter would not reach zero
     * before it (600 x 2/3 = 400 s), so extrapolate to the whole 900 s:
     * 3 x 900 / 600 = 4.5. */
    assert_true(fabs(v[0] - 4.5) < 1e-9);
    assert_int_equal(eval_expr(db, find_rule(&rs, "GPUXidError")->pq, t, v, 8), 1);
    assert_true(v[0] == 79);
    assert_int_equal(eval_expr(db, find_rule(&rs, "DiskFailurePredicted")->pq, t, v, 8), 1);
    assert_true(v[0] == 0.85);
    assert_int_equal(eval_expr(db, find_rule(&rs, "GPUFailurePredicted")->pq, t, v, 8), 0);
    tsdb_close(db);
    tu_rmrf(dir);
    tbuf_free(&errs);
    alert_ruleset_free(&rs);
}

static void test_good_file(void **state)
{
    (void)state;
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/data/rules/good.yml", src_dir());
    alert_ruleset_t rs = {0};
    tbuf_t errs = {0};
    size_t nerrs = 0;
    assert_int_equal(alert_rules_load_file(&rs, p, &errs, &nerrs), 0);
    assert_int_equal(nerrs, 0);
    assert_int_equal(rs.ngroups, 2);
    assert_string_equal(rs.groups[0].name, "disks");
    assert_int_equal(rs.groups[0].interval_ms, 30000);
    assert_int_equal(alert_ruleset_rule_count(&rs), 2);
    const alert_rule_def_t *r = &rs.groups[0].rules[0];
    assert_string_equal(r->alert, "DiskRiskHigh");
    assert_int_equal(r->for_ms, 600000);
    assert_int_equal(r->keep_firing_for_ms, 300000);
    assert_int_equal(r->line, 6);
    assert_string_equal(alert_kv_get(r->labels, r->nlabels, "severity"), "page");
    assert_string_equal(rs.groups[0].rules[1].record, "instance:risk:max");
    tbuf_free(&errs);
    alert_ruleset_free(&rs);
}

static void test_bad_file(void **state)
{
    (void)state;
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/data/rules/bad.yml", src_dir());
    alert_ruleset_t rs = {0};
    tbuf_t errs = {0};
    size_t nerrs = 0;
    assert_int_equal(alert_rules_load_file(&rs, p, &errs, &nerrs), ALERT_ERULES);
    assert_int_equal(rs.ngroups, 0);
    tbuf_put(&errs, "", 1);
    const char *e = (const char *)errs.p;
    const char *want[] = {
        "bad.yml:5:15: group \"broken\", rule 1, \"BadExpr\": could not parse expression: ",
        "bad.yml:8:14: group \"broken\", rule 2, \"BadFor\": for: not a valid duration string: "
        "\"5 minutes\"",
        "bad.yml:9:17: group \"broken\", rule 3, \"bad name\": invalid recording rule name: bad "
        "name",
        "bad.yml:11:14: group \"broken\", rule 3, \"bad name\": invalid field 'for' in recording "
        "rule",
        "bad.yml:15:20: group \"broken\", rule 4, \"BadTemplate\": annotation \"summary\": "
        "template: col 4: 'if' is not in the template subset",
        "bad.yml:17:11: group \"broken\", rule 4, \"BadTemplate\": invalid label name: __name__",
        "bad.yml:20:9: group \"broken\", rule 5, \"Unknown\": field severity not found",
        "bad.yml:21:9: group \"broken\", rule 6: one of 'record' or 'alert' must be set",
        "bad.yml:22:5: groupname: \"broken\" is repeated in the same file",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(e, want[i])) fprintf(stderr, "missing: %s\ngot:\n%s", want[i], e);
        assert_non_null(strstr(e, want[i]));
    }
    tbuf_free(&errs);
    nerrs = 0;
    snprintf(p, sizeof p, "%s/tests/data/rules/syntax.yml", src_dir());
    assert_int_equal(alert_rules_load_file(&rs, p, &errs, &nerrs), ALERT_ERULES);
    assert_int_equal(nerrs, 1);
    tbuf_put(&errs, "", 1);
    assert_non_null(strstr((char *)errs.p, "syntax.yml:4:1: "));
    tbuf_free(&errs);
    assert_int_equal(alert_rules_load_file(&rs, "/nonexistent.yml", NULL, NULL), ALERT_EIO);
    /* Empty file: valid, no groups. */
    assert_int_equal(alert_rules_load_buffer(&rs, "e.yml", "", 0, NULL, NULL), 0);
    assert_int_equal(rs.ngroups, 0);
}

static char *expand(const char *t, const alert_tmpl_data_t *d, int *rc)
{
    static char out[512];
    tbuf_t b = {0};
    char err[200] = "";
    *rc = alert_template_expand(t, strlen(t), d, &b, err, sizeof err);
    if (*rc)
        snprintf(out, sizeof out, "ERR %s", err);
    else
        snprintf(out, sizeof out, "%.*s", (int)b.len, b.len ? (char *)b.p : "");
    tbuf_free(&b);
    return out;
}

static void test_templates(void **state)
{
    (void)state;
    alert_kv_t l[] = {{"device", "sda"}, {"instance", "node-1:9100"}};
    alert_kv_t ext[] = {{"cluster", "east"}};
    alert_tmpl_data_t d = {l, 2, 0.9321, ext, 1};
    static const struct {
        const char *t, *want;
        double v;
    } c[] = {
        {"{{ $labels.device }} on {{ $labels.instance }}", "sda on node-1:9100", 0.9321},
        {"{{ .Labels.device }}={{ .Value }}", "sda=0.9321", 0.9321},
        {"{{ $value }}", "1e+21", 1e21},
        {"{{ $value }}", "123456", 123456},
        {"{{ $value }}", "1e-05", 0.00001},
        {"{{ humanize $value }}", "1.235M", 1234567},
        {"{{ humanize $value }}", "12.35m", 0.012345},
        {"{{ $value | humanize1024 }}", "1ki", 1024},
        {"{{ humanizePercentage $value }}", "93.21%", 0.9321},
        {"{{ humanizeDuration $value }}", "1d 1h 1m 1s", 90061},
        {"{{ humanizeDuration $value }}", "250ms", 0.25},
        {"{{ humanizeTimestamp $value }}", "2023-11-14 22:13:20 +0000 UTC", 1700000000},
        {"{{ printf \"%.2f\" $value }}", "0.93", 0.9321},
        {"{{ printf \"%s/%d\" $labels.device 7 }}", "sda/7", 0},
        {"{{ $value | printf \"%.1f\" }}", "0.9", 0.9321},
        {"{{ $labels.missing }}|", "|", 0},
        {"{{ $externalLabels.cluster }}", "east", 0},
        {"{{ index $labels \"device\" | toUpper }}", "SDA", 0},
        {"{{ title \"hello world\" }}", "Hello World", 0},
        {"a  {{- $labels.device -}}  b", "asdab", 0},
        {"x{{/* comment */}}y", "xy", 0},
        {"{{ $labels }}", "map[device:sda instance:node-1:9100]", 0},
        {"no actions", "no actions", 0},
        {"{{ range $labels }}{{ end }}",
         "ERR col 4: 'range' is not in the template subset (no control structures)", 0},
        {"{{ query \"up\" }}", "ERR col 4: function query is not in the template subset", 0},
        {"{{ $foo }}",
         "ERR col 4: unknown variable or field $foo (the subset knows $labels, $value, "
         "$externalLabels, .Labels, .Value)",
         0},
        {"{{ $value ", "ERR col 1: unclosed action", 0},
        {"{{ humanize \"abc\" }}", "ERR col 4: cannot convert \"abc\" to a number", 0},
        {"{{ (1) }}", "ERR col 4: parentheses are not in the template subset", 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        d.value = c[i].v;
        int rc;
        char *got = expand(c[i].t, &d, &rc);
        if (strcmp(got, c[i].want)) fprintf(stderr, "case %zu: '%s' -> '%s'\n", i, c[i].t, got);
        assert_string_equal(got, c[i].want);
    }
    /* Syntax-only check (d == NULL) catches the same refusals. */
    tbuf_t b = {0};
    assert_int_equal(alert_template_expand("{{ if 1 }}", 10, NULL, NULL, NULL, 0), ALERT_EINVAL);
    assert_int_equal(alert_template_expand("{{ humanize $value }}", 21, NULL, &b, NULL, 0), 0);
    tbuf_free(&b);
}

static void test_format(void **state)
{
    (void)state;
    char b[64];
    static const struct {
        double v;
        const char *s;
    } f[] = {{0.1, "0.1"},       {1, "1"},
             {-2.5, "-2.5"},     {1e20, "100000000000000000000"},
             {1e21, "1e+21"},    {1.5e-7, "1.5e-07"},
             {0.0001, "0.0001"}, {1.0 / 3, "0.3333333333333333"},
             {NAN, "NaN"},       {INFINITY, "+Inf"}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        alert_format_float(f[i].v, b, sizeof b);
        assert_string_equal(b, f[i].s);
    }
    int64_t ms;
    assert_int_equal(alert_duration_parse("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(alert_duration_parse("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(alert_duration_parse("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(alert_duration_parse("30m1h", &ms), -1);
    assert_int_equal(alert_duration_parse("5 m", &ms), -1);
    assert_int_equal(alert_duration_parse("", &ms), -1);
    alert_duration_format(5400000, b, sizeof b);
    assert_string_equal(b, "1h30m");
    alert_duration_format(600000, b, sizeof b);
    assert_string_equal(b, "10m");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_file), cmocka_unit_test(test_templates),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
