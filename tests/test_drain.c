/*
 * test_drain.c — the drain controller driven by a fake clock over a real
 * store: risk series are written with tsdb_append, drain_tick() runs at
 * chosen times, and the cordon/drain/uncordon commands are a shell script
 * that records each invocation. Each scenario checks exactly which nodes
 * were acted on and when:
 *
 *   thresholds_for_hysteresis  `for`, hysteresis, cooldown, no action on
 *                              missing data
 *   spacing_budgets            min spacing, max per hour, max cordoned, order
 *                              by risk
 *   domain_budget              one node per rack
 *   circuit_breaker            trips on a flagged wave, stops everything,
 *                              raises augur_drain_breaker_tripped, reset
 *   manual_approval            waits, approve, cancel
 *   restart_mid_way            state and budgets survive drain_close/open
 *                              (and a store reopen)
 *   failure_event_outcomes     uncordon on failure event, TP/FP, precision
 *   dry_run_default            default policy runs nothing, audit says so
 *   blocks                     opt-out, firing alerts, maintenance windows,
 *                              unsafe node names, pause
 *   argv_exec                  template splitting without a shell, exit
 *                              status, output, timeout
 *   policy_file                YAML policy keys and errors with line:col
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "alert/alert.h"
#include "alert/drain.h"
#include "query/promql.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

#define MIN 60000LL
#define T0 1700000000000LL /* 2023-11-14 22:13:20 UTC, a Tuesday */

typedef struct {
    char dir[512];
    char store[600];
    char calls[600];
    tsdb_t *db;
    drain_t *d;
    drain_policy_t pol;
    int64_t t;
    int nn;
    double risk[32];
    const char *rack[32];
} fx_t;

static void write_risk(fx_t *f, int64_t t)
{
    for (int i = 0; i < f->nn; i++) {
        if (isnan(f->risk[i])) continue;
        char inst[32];
        snprintf(inst, sizeof inst, "n%d:9100", i + 1);
        tsdb_label_t l[6] = {
            {{"__name__", 8}, {"augur_failure_probability", 25}},      {{"kind", 4}, {"disk", 4}},
            {{"instance", 8}, {inst, (uint32_t)strlen(inst)}},         {{"device", 6}, {"sda", 3}},
            {{"rack", 4}, {f->rack[i], (uint32_t)strlen(f->rack[i])}},
        };
        tsdb_sample_t s = {t, f->risk[i]};
        tsdb_series_in_t in = {l, 5, &s, 1};
        assert_int_equal(tsdb_append(f->db, &in, 1, NULL, NULL), 0);
    }
}

static void fx_policy(fx_t *f)
{
    assert_int_equal(drain_policy_init(&f->pol), 0);
    drain_policy_t *p = &f->pol;
    p->dry_run = 0;
    p->manual_approval = 0;
    char cmd[800];
    free(p->cordon_cmd);
    free(p->drain_cmd);
    free(p->uncordon_cmd);
    snprintf(cmd, sizeof cmd, "%s/rec.sh cordon {{node}}", f->dir);
    p->cordon_cmd = strdup(cmd);
    snprintf(cmd, sizeof cmd, "%s/rec.sh drain {{node}} --timeout={{timeout}}", f->dir);
    p->drain_cmd = strdup(cmd);
    snprintf(cmd, sizeof cmd, "%s/rec.sh uncordon {{node}}", f->dir);
    p->uncordon_cmd = strdup(cmd);
    p->kinds[DRAIN_KIND_DISK].drain_threshold = 0.9;
    p->kinds[DRAIN_KIND_DISK].for_ms = 10 * MIN;
    p->kinds[DRAIN_KIND_DISK].undrain_threshold = 0.5;
    p->kinds[DRAIN_KIND_DISK].undrain_for_ms = 30 * MIN;
    p->max_cordoned = 10;
    p->max_cordoned_percent = 100;
    p->max_per_domain = 10;
    p->min_spacing_ms = 0;
    p->max_per_hour = 100;
    p->cooldown_ms = 60 * MIN;
    p->breaker_percent = 50;
    p->breaker_min_flagged = 10;
}

static void fx_open_drain(fx_t *f)
{
    char err[300] = "";
    int rc = drain_open(f->db, f->store, &f->pol, &f->d, err, sizeof err);
    if (rc) fprintf(stderr, "drain_open: %s %s\n", drain_strerror(rc), err);
    assert_int_equal(rc, 0);
}

static void fx_start(fx_t *f, int nn)
{
    memset(f, 0, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    snprintf(f->store, sizeof f->store, "%s/store", f->dir);
    snprintf(f->calls, sizeof f->calls, "%s/calls.log", f->dir);
    char p[700];
    snprintf(p, sizeof p, "%s/rec.sh", f->dir);
    FILE *s = fopen(p, "w");
    assert_non_null(s);
    /* Records "<fake time in minutes> <args>"; exits 3 for a node named fail*. */
    fprintf(s,
            "#!/bin/sh\necho \"$*\" >> '%s'\ncase \"$2\" in fail*) echo boom; exit 3;; esac\n"
            "echo ok\n",
            f->calls);
    fclose(s);
    chmod(p, 0755);
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.ooo_window_ms = 30LL * 86400000;
    o.sync_mode = TSDB_SYNC_PERIODIC; /* speed: the test never crashes the store */
    assert_int_equal(tsdb_open(f->store, &o, &f->db), 0);
    f->nn = nn;
    for (int i = 0; i < nn; i++) {
        f->risk[i] = 0.1;
        f->rack[i] = i % 2 ? "r2" : "r1";
    }
    f->t = T0;
    fx_policy(f);
}

static void fx_stop(fx_t *f)
{
    drain_close(f->d);
    drain_policy_free(&f->pol);
    tsdb_close(f->db);
    tu_rmrf(f->dir);
}

/* Advance minute by minute: write risks, tick. */
static void step(fx_t *f, int minutes)
{
    for (int i = 0; i < minutes; i++) {
        f->t += MIN;
        write_risk(f, f->t);
        assert_int_equal(drain_tick(f->d, f->t), 0);
    }
}

/* The recorded calls since the last call of this function. */
static char *calls(fx_t *f)
{
    static char buf[8192];
    buf[0] = 0;
    FILE *c = fopen(f->calls, "r");
    if (!c) return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, c);
    buf[n] = 0;
    fclose(c);
    unlink(f->calls);
    return buf;
}

static int audit_has(fx_t *f, const char *needle)
{
    char p[700];
    snprintf(p, sizeof p, "%s/drain-audit.jsonl", f->store);
    FILE *a = fopen(p, "r");
    if (!a) return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, a))
        found = strstr(line, needle) != NULL;
    fclose(a);
    return found;
}

static double query1(fx_t *f, const char *q, int64_t t)
{
    pq_expr_t *e;
    char err[200];
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(f->db, &r), 0);
    pq_opts_t o;
    memset(&o, 0, sizeof o);
    o.start_ms = o.end_ms = t;
    pq_result_t *res;
    assert_int_equal(promql_eval(r, e, &o, &res, err, sizeof err), 0);
    double v = res->nseries && res->series[0].npoints ? res->series[0].points[0].v : NAN;
    promql_result_free(res);
    tsdb_reader_close(r);
    promql_expr_free(e);
    return v;
}

static void test_thresholds_for_hysteresis(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    fx_open_drain(&f);
    step(&f, 2);
    assert_string_equal(calls(&f), "");
    f.risk[0] = 0.95; /* n1 */
    step(&f, 10);     /* above since minute 3: `for` is 10 minutes */
    assert_string_equal(calls(&f), "");
    assert_string_equal(drain_node_state(f.d, "n1"), "flagged");
    step(&f, 1); /* minute 13: 10 min above */
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\n");
    assert_string_equal(drain_node_state(f.d, "n1:9100"), "drained");
    /* Between the thresholds: stays drained; never drained twice. */
    f.risk[0] = 0.7;
    step(&f, 60);
    assert_string_equal(calls(&f), "");
    /* Missing data (telemetry gap) never undrains. */
    f.risk[0] = NAN;
    step(&f, 40);
    assert_string_equal(calls(&f), "");
    /* Below the lower threshold for 30 min: uncordon. */
    f.risk[0] = 0.3;
    step(&f, 30);
    assert_string_equal(calls(&f), "");
    step(&f, 1);
    assert_string_equal(calls(&f), "uncordon n1\n");
    assert_string_equal(drain_node_state(f.d, "n1"), "ok");
    /* Cooldown (60 min): high again, blocked until it ends. */
    f.risk[0] = 0.99;
    step(&f, 30);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"cooldown\""));
    step(&f, 31);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\n");
    /* A brief spike shorter than `for` does nothing. */
    f.risk[2] = 0.95;
    step(&f, 5);
    f.risk[2] = 0.2;
    step(&f, 20);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"action\":\"unflag\""));
    fx_stop(&f);
}

static void test_spacing_budgets(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.min_spacing_ms = 15 * MIN;
    f.pol.max_per_hour = 3;
    f.pol.max_cordoned = 3;
    f.pol.kinds[0].for_ms = 0;
    fx_open_drain(&f);
    step(&f, 1);
    f.risk[3] = 0.91;
    f.risk[4] = 0.97;
    f.risk[5] = 0.93;
    f.risk[6] = 0.95;
    step(&f, 1); /* highest risk first: n5 */
    assert_string_equal(calls(&f), "cordon n5\ndrain n5 --timeout=10m\n");
    step(&f, 14);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"min_spacing\""));
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n7\ndrain n7 --timeout=10m\n");
    step(&f, 15);
    assert_string_equal(calls(&f), "cordon n6\ndrain n6 --timeout=10m\n");
    step(&f, 60); /* n4 blocked by max_cordoned = 3 */
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"max_cordoned\""));
    assert_string_equal(drain_node_state(f.d, "n4"), "flagged");
    fx_stop(&f);

    /* max_per_hour without spacing; percent of the fleet. */
    fx_start(&f, 20);
    f.pol.max_per_hour = 2;
    f.pol.max_cordoned_percent = 15; /* 3 of 20 */
    f.pol.kinds[0].for_ms = 0;
    fx_open_drain(&f);
    for (int i = 0; i < 5; i++)
        f.risk[i] = 0.95 - i * 0.001;
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\ncordon n2\ndrain n2 "
                                   "--timeout=10m\n");
    step(&f, 59);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"max_per_hour\""));
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n3\ndrain n3 --timeout=10m\n");
    step(&f, 120);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "(max_cordoned 10, 15% of 20)"));
    fx_stop(&f);
}

static void test_domain_budget(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.max_per_domain = 1;
    f.pol.kinds[0].for_ms = 0;
    fx_open_drain(&f);
    f.risk[0] = 0.99; /* n1 r1 */
    f.risk[2] = 0.98; /* n3 r1 */
    f.risk[1] = 0.92; /* n2 r2 */
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\ncordon n2\ndrain n2 "
                                   "--timeout=10m\n");
    assert_string_equal(drain_node_state(f.d, "n3"), "flagged");
    assert_true(audit_has(&f, "1 nodes cordoned in rack=r1, limit 1"));
    fx_stop(&f);
}

static void test_circuit_breaker(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.breaker_percent = 10; /* > 2 of 20 */
    f.pol.breaker_min_flagged = 3;
    f.pol.kinds[0].for_ms = 5 * MIN;
    fx_open_drain(&f);
    step(&f, 1);
    f.risk[0] = f.risk[1] = 0.95;
    step(&f, 1);
    assert_false(drain_breaker_tripped(f.d));
    f.risk[7] = 0.97; /* third within the hour: a glitch, not a hardware wave */
    step(&f, 1);
    assert_true(drain_breaker_tripped(f.d));
    assert_true(audit_has(&f, "\"event\":\"breaker\""));
    step(&f, 60);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"circuit_breaker\""));
    assert_true(query1(&f, "augur_drain_breaker_tripped", f.t) == 1);
    /* Stays tripped though the scores fall; only an admin resets it. */
    f.risk[1] = f.risk[7] = 0.1;
    step(&f, 120);
    assert_true(drain_breaker_tripped(f.d));
    assert_int_equal(drain_breaker_reset(f.d, "test", f.t), 0);
    step(&f, 1);
    assert_false(drain_breaker_tripped(f.d));
    assert_true(query1(&f, "augur_drain_breaker_tripped", f.t) == 0);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\n");
    fx_stop(&f);
}

static void test_manual_approval(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.manual_approval = 1;
    f.pol.kinds[0].for_ms = 0;
    fx_open_drain(&f);
    f.risk[0] = 0.95;
    f.risk[1] = 0.96;
    step(&f, 5);
    assert_string_equal(calls(&f), "");
    assert_string_equal(drain_node_state(f.d, "n1"), "awaiting_approval");
    assert_int_equal(drain_approve(f.d, "nosuch", "test", f.t), DRAIN_ENOTFOUND);
    assert_int_equal(drain_uncordon(f.d, "n1", "test", f.t), DRAIN_ESTATE);
    assert_int_equal(drain_approve(f.d, "n1", "test", f.t), 0);
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\n");
    assert_int_equal(drain_cancel(f.d, "n2", "test", f.t), 0);
    step(&f, 30);
    assert_string_equal(drain_node_state(f.d, "n2"), "ok"); /* cancelled while above */
    assert_int_equal(drain_approve(f.d, "n2", "test", f.t), DRAIN_ESTATE);
    /* Admin uncordon of n1. */
    assert_int_equal(drain_uncordon(f.d, "n1", "test", f.t), 0);
    step(&f, 1);
    assert_string_equal(calls(&f), "uncordon n1\n");
    assert_true(audit_has(&f, "\"event\":\"admin\""));
    tbuf_t b = {0};
    assert_int_equal(drain_json(f.d, f.t, &b), 0);
    tbuf_put(&b, "", 1);
    assert_non_null(strstr((char *)b.p, "\"manual_approval\":true"));
    assert_non_null(strstr((char *)b.p, "\"node\":\"n1\""));
    tbuf_free(&b);
    fx_stop(&f);
}

static void test_restart_mid_way(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.min_spacing_ms = 30 * MIN;
    f.pol.kinds[0].for_ms = 10 * MIN;
    fx_open_drain(&f);
    f.risk[0] = 0.95;
    f.risk[1] = 0.94;
    step(&f, 11);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\n");
    /* Restart controller and store ("augur restart"). */
    drain_close(f.d);
    f.d = NULL;
    tsdb_close(f.db);
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.ooo_window_ms = 30LL * 86400000;
    o.sync_mode = TSDB_SYNC_PERIODIC; /* speed: the test never crashes the store */
    assert_int_equal(tsdb_open(f.store, &o, &f.db), 0);
    fx_open_drain(&f);
    assert_string_equal(drain_node_state(f.d, "n1"), "drained");
    /* Spacing counted from before the restart; n1 not drained again. */
    step(&f, 29);
    assert_string_equal(calls(&f), "");
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n2\ndrain n2 --timeout=10m\n");
    /* Hysteresis timer survives a restart too. */
    f.risk[0] = 0.2;
    step(&f, 20);
    drain_close(f.d);
    fx_open_drain(&f);
    step(&f, 10); /* below since the first of these 30 steps: 29 min */
    assert_string_equal(calls(&f), "");
    step(&f, 1); /* 30 min, counted across the restart */
    assert_string_equal(calls(&f), "uncordon n1\n");
    fx_stop(&f);
}

static void failure_event(fx_t *f, const char *inst, int64_t t)
{
    tsdb_label_t l[4] = {{{"__name__", 8}, {"augur_failure_event", 19}},
                         {{"kind", 4}, {"disk", 4}},
                         {{"instance", 8}, {inst, (uint32_t)strlen(inst)}},
                         {{"device", 6}, {"sda", 3}}};
    tsdb_sample_t s = {t, 1};
    tsdb_series_in_t in = {l, 4, &s, 1};
    assert_int_equal(tsdb_append(f->db, &in, 1, NULL, NULL), 0);
}

static void test_failure_event_outcomes(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.kinds[0].for_ms = 0;
    f.pol.horizon_ms = 24 * 60 * MIN;
    fx_open_drain(&f);
    f.risk[0] = 0.95;
    f.risk[1] = 0.95;
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n1\ndrain n1 --timeout=10m\ncordon n2\ndrain n2 "
                                   "--timeout=10m\n");
    step(&f, 60);
    failure_event(&f, "n1", f.t + 30000); /* the disk failed: replaced */
    step(&f, 1);
    assert_string_equal(calls(&f), "uncordon n1\n");
    drain_outcomes_t o;
    drain_outcomes(f.d, &o);
    assert_int_equal(o.true_positive, 1);
    assert_int_equal(o.pending, 1);
    /* n2: no failure within the horizon -> false positive. */
    step(&f, 24 * 60);
    drain_outcomes(f.d, &o);
    assert_int_equal(o.false_positive, 1);
    assert_true(fabs(o.precision - 0.5) < 1e-12);
    assert_true(query1(&f, "augur_drain_precision", f.t) == 0.5);
    tbuf_t b = {0};
    assert_int_equal(drain_metrics_render(f.d, &b), 0);
    tbuf_put(&b, "", 1);
    assert_non_null(strstr((char *)b.p, "augur_drain_precision 0.5\n"));
    assert_non_null(strstr((char *)b.p, "augur_drain_outcomes{outcome=\"true_positive\"} 1\n"));
    tbuf_free(&b);
    fx_stop(&f);
}

static void test_dry_run_default(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    char *c = f.pol.cordon_cmd, *dc = f.pol.drain_cmd, *u = f.pol.uncordon_cmd;
    f.pol.cordon_cmd = f.pol.drain_cmd = f.pol.uncordon_cmd = NULL;
    drain_policy_free(&f.pol);
    assert_int_equal(drain_policy_init(&f.pol), 0);
    assert_true(f.pol.dry_run && f.pol.manual_approval);
    free(f.pol.cordon_cmd);
    f.pol.cordon_cmd = c;
    free(f.pol.drain_cmd);
    f.pol.drain_cmd = dc;
    free(f.pol.uncordon_cmd);
    f.pol.uncordon_cmd = u;
    f.pol.manual_approval = 0;
    fx_open_drain(&f);
    f.risk[0] = 0.95;
    step(&f, 31);
    assert_string_equal(calls(&f), ""); /* nothing executed */
    assert_string_equal(drain_node_state(f.d, "n1"), "drained");
    assert_true(audit_has(&f, "dry run: not executed"));
    assert_true(audit_has(&f, "\"argv\":["));
    fx_stop(&f);
}

static void test_blocks(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 20);
    f.pol.kinds[0].for_ms = 0;
    f.pol.opt_out = calloc(1, sizeof(char *));
    f.pol.opt_out[0] = strdup("n1");
    f.pol.nopt_out = 1;
    f.pol.block_alerts = calloc(1, sizeof(char *));
    f.pol.block_alerts[0] = strdup("ClusterUpgradeInProgress");
    f.pol.nblock_alerts = 1;
    fx_open_drain(&f);
    f.risk[0] = 0.99;
    step(&f, 2);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"opt_out\""));
    /* A blocking alert firing. */
    for (int i = 0; i < 3; i++) {
        tsdb_label_t l[3] = {{{"__name__", 8}, {"ALERTS", 6}},
                             {{"alertname", 9}, {"ClusterUpgradeInProgress", 24}},
                             {{"alertstate", 10}, {"firing", 6}}};
        tsdb_sample_t s = {f.t + (i + 1) * MIN, 1};
        tsdb_series_in_t in = {l, 3, &s, 1};
        assert_int_equal(tsdb_append(f.db, &in, 1, NULL, NULL), 0);
    }
    f.risk[2] = 0.99;
    step(&f, 3);
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "alert ClusterUpgradeInProgress is firing"));
    /* Pause. */
    assert_int_equal(drain_pause(f.d, 1, "test", f.t), 0);
    step(&f, 10); /* ALERTS series is stale after the 5 min lookback */
    assert_string_equal(calls(&f), "");
    assert_true(audit_has(&f, "\"rule\":\"paused\""));
    assert_int_equal(drain_pause(f.d, 0, "test", f.t), 0);
    step(&f, 1);
    assert_string_equal(calls(&f), "cordon n3\ndrain n3 --timeout=10m\n");
    drain_close(f.d);
    f.d = NULL;

    /* Maintenance window: Tuesday 23:00-01:00 UTC only. T0 is Tue 22:13. */
    drain_policy_free(&f.pol);
    fx_policy(&f);
    f.pol.kinds[0].for_ms = 0;
    f.pol.windows = calloc(1, sizeof *f.pol.windows);
    f.pol.windows[0] = (drain_window_t){1u << 2, 23 * 60, 60};
    f.pol.nwindows = 1;
    char sub[700];
    snprintf(sub, sizeof sub, "%s/w", f.store);
    char err[200];
    assert_int_equal(drain_open(f.db, sub, &f.pol, &f.d, err, sizeof err), 0);
    f.t = T0 + 3 * 60 * MIN; /* Wed 01:13: outside (the window ended at 01:00) */
    f.risk[0] = 0.1;
    f.risk[2] = 0.1;
    f.risk[4] = 0.99;
    step(&f, 1);
    assert_string_equal(calls(&f), "");
    f.t = T0 + 7 * 86400000LL + 45 * MIN; /* next Tue 22:58: one step is 22:59 */
    step(&f, 1);
    assert_string_equal(calls(&f), "");
    step(&f, 1); /* 23:00 */
    assert_string_equal(calls(&f), "cordon n5\ndrain n5 --timeout=10m\n");
    drain_close(f.d);
    f.d = NULL;

    /* Unsafe node names are never passed to a command. */
    drain_policy_free(&f.pol);
    fx_policy(&f);
    f.pol.kinds[0].for_ms = 0;
    snprintf(sub, sizeof sub, "%s/x", f.store);
    assert_int_equal(drain_open(f.db, sub, &f.pol, &f.d, err, sizeof err), 0);
    tsdb_label_t l[3] = {{{"__name__", 8}, {"augur_failure_probability", 25}},
                         {{"kind", 4}, {"disk", 4}},
                         {{"instance", 8}, {"--all", 5}}};
    tsdb_sample_t s = {f.t + MIN, 0.99};
    tsdb_series_in_t in = {l, 3, &s, 1};
    assert_int_equal(tsdb_append(f.db, &in, 1, NULL, NULL), 0);
    f.risk[4] = 0.1;
    step(&f, 1);
    assert_string_equal(calls(&f), "");
    snprintf(sub, sizeof sub, "%s/x", f.store);
    fx_stop(&f);
}

static void test_argv_exec(void **state)
{
    (void)state;
    char **argv;
    assert_int_equal(drain_argv_build("kubectl drain {{node}} --timeout={{ timeout }} 'a b'",
                                      "n1; rm -rf / $(x)", "disk", "10m", &argv),
                     0);
    assert_string_equal(argv[0], "kubectl");
    assert_string_equal(argv[1], "drain");
    assert_string_equal(argv[2], "n1; rm -rf / $(x)"); /* one word, never a shell */
    assert_string_equal(argv[3], "--timeout=10m");
    assert_string_equal(argv[4], "a b");
    assert_null(argv[5]);
    free(argv);
    assert_int_equal(drain_argv_build("x {{nope}}", "n", "k", "t", &argv), DRAIN_EINVAL);
    assert_int_equal(drain_argv_build("x 'open", "n", "k", "t", &argv), DRAIN_EINVAL);
    assert_int_equal(drain_argv_build("   ", "n", "k", "t", &argv), DRAIN_EINVAL);
    char out[256];
    char *a1[] = {"sh", "-c", "echo hi; echo err >&2; exit 7", NULL};
    assert_int_equal(drain_exec(a1, 5000, out, sizeof out), 7);
    assert_non_null(strstr(out, "hi"));
    assert_non_null(strstr(out, "err"));
    char *a2[] = {"sleep", "5", NULL};
    assert_int_equal(drain_exec(a2, 200, out, sizeof out), 128 + 9);
    char *a3[] = {"/nonexistent/augur-cmd", NULL};
    assert_int_equal(drain_exec(a3, 5000, out, sizeof out), 127);
}

static void test_policy_file(void **state)
{
    (void)state;
    drain_policy_t p;
    assert_int_equal(drain_policy_init(&p), 0);
    static const char y[] = "dry_run: false\n"
                            "manual_approval: false\n"
                            "failure_domain_labels: [rack]\n"
                            "commands:\n"
                            "  cordon: \"kubectl cordon {{node}}\"\n"
                            "  timeout: 5m\n"
                            "kinds:\n"
                            "  gpu: {drain_threshold: 0.7, for: 1h, undrain_threshold: 0.2, "
                            "undrain_for: 12h}\n"
                            "  node_anomaly: {enabled: true}\n"
                            "limits: {max_cordoned: 4, max_cordoned_percent: 2.5, "
                            "max_per_domain: 2, min_spacing: 10m, max_per_hour: 6, cooldown: 2d}\n"
                            "circuit_breaker: {max_flagged_percent: 20, min_flagged: 5, window: "
                            "30m}\n"
                            "block_when_firing: [A, B]\n"
                            "maintenance_windows:\n"
                            "  - {days: [sat, sun], start: \"02:00\", end: \"06:00\"}\n"
                            "opt_out: [db1]\n"
                            "outcome_horizon: 14d\n";
    char err[300] = "";
    assert_int_equal(drain_policy_parse(&p, y, sizeof y - 1, err, sizeof err), 0);
    assert_false(p.dry_run);
    assert_int_equal(p.ndomain_labels, 1);
    assert_int_equal(p.command_timeout_ms, 5 * MIN);
    assert_true(p.kinds[DRAIN_KIND_GPU].drain_threshold == 0.7);
    assert_int_equal(p.kinds[DRAIN_KIND_GPU].undrain_for_ms, 12 * 60 * MIN);
    assert_true(p.kinds[DRAIN_KIND_NODE_ANOMALY].enabled);
    assert_int_equal(p.max_cordoned, 4);
    assert_int_equal(p.cooldown_ms, 2 * 86400000LL);
    assert_int_equal(p.breaker_min_flagged, 5);
    assert_int_equal(p.nblock_alerts, 2);
    assert_int_equal(p.nwindows, 1);
    assert_int_equal(p.windows[0].days, 0x41);
    assert_int_equal(p.horizon_ms, 14 * 86400000LL);
    drain_policy_free(&p);
    static const struct {
        const char *y, *want;
    } bad[] = {
        {"dry_run: maybe\n", "1:10: dry_run: want true or false"},
        {"limits:\n  max_cordoned: -1\n", "2:17: max_cordoned: want an integer"},
        {"kinds:\n  disk: {query: \"sum(\"}\n", "2:17: disk.query:"},
        {"kinds:\n  disk: {drain_threshold: 0.5, undrain_threshold: 0.6}\n",
         "undrain_threshold must not be above"},
        {"bogus: 1\n", "1:1: unknown key 'bogus'"},
        {"commands: {drain: \"kubectl drain {{nodes}}\"}\n", "not a valid command template"},
        {"maintenance_windows: [{start: \"25:00\", end: \"01:00\"}]\n", "start: want HH:MM"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(drain_policy_init(&p), 0);
        err[0] = 0;
        assert_int_equal(drain_policy_parse(&p, bad[i].y, strlen(bad[i].y), err, sizeof err),
                         DRAIN_ECONFIG);
        if (!strstr(err, bad[i].want)) fprintf(stderr, "case %zu: got '%s'\n", i, err);
        assert_non_null(strstr(err, bad[i].want));
        drain_policy_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds_for_hysteresis),
        cmocka_unit_test(test_spacing_budgets),
        cmocka_unit_test(test_domain_budget),
        cmocka_unit_test(test_circuit_breaker),
        cmocka_unit_test(test_manual_approval),
        cmocka_unit_test(test_restart_mid_way),
        cmocka_unit_test(test_failure_event_outcomes),
        cmocka_unit_test(test_dry_run_default),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_argv_exec),
        cmocka_unit_test(test_policy_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
