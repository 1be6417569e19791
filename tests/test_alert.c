/*
 * test_alert.c — rule evaluation with a fake clock over a real store, and
 * the Alertmanager sender against an in-test HTTP receiver.
 *
 *   state_machine   inactive -> pending -> firing -> resolved at the exact
 *                   evaluation times; labels are the stable identity
 *                   (templated rule labels included), the score only in
 *                   annotations; resend every resend delay with endsAt =
 *                   now + 4 x max(interval, resend delay); resolved alerts
 *                   sent with their endsAt for 15 minutes, then forgotten;
 *                   ALERTS/ALERTS_FOR_STATE in the store (stale markers when
 *                   a state ends); recording rules written
 *   keep_firing     keep_firing_for holds a firing alert after its series
 *                   vanishes
 *   restore         a restart in the middle: firing alerts fire again at
 *                   once with their old startsAt (no re-fire storm), a
 *                   pending one keeps its pending time (grace period)
 *   api_json        /api/v1/rules and /api/v1/alerts bodies
 *   notifier        batches POSTed to /api/v2/alerts, retry after a 500,
 *                   bounded queue dropping the oldest, metrics
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "alert/alert.h"
#include "query/promql.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

#define MIN 60000LL
#define T0 1700000000000LL

static const char rules_yml[] =
    "groups:\n"
    "  - name: g\n"
    "    interval: 1m\n"
    "    rules:\n"
    "      - alert: DiskRisk\n"
    "        expr: augur_failure_probability{kind=\"disk\"} >= 0.8\n"
    "        for: 5m\n"
    "        labels:\n"
    "          severity: warning\n"
    "          team: \"{{ $labels.kind }}-team\"\n"
    "        annotations:\n"
    "          risk: '{{ printf \"%.2f\" $value }}'\n"
    "          summary: \"{{ $labels.device }} on {{ $labels.instance }} ({{ humanizePercentage "
    "$value }})\"\n"
    "      - alert: Flappy\n"
    "        expr: flappy > 0\n"
    "        keep_firing_for: 3m\n"
    "      - record: fleet:risk:max\n"
    "        expr: max(augur_failure_probability)\n"
    "        labels: {source: augur}\n";

typedef struct {
    char dir[512];
    tsdb_t *db;
    alert_engine_t *e;
    alert_outbox_t ob;
} fx_t;

static void open_store(fx_t *f)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.ooo_window_ms = 30LL * 86400000;
    assert_int_equal(tsdb_open(f->dir, &o, &f->db), 0);
}

static void open_engine(fx_t *f)
{
    alert_engine_config_t c;
    alert_engine_config_init(&c);
    c.external_url = "http://augur.example:9201/";
    assert_int_equal(alert_engine_create(f->db, &c, &f->e), 0);
    alert_ruleset_t rs = {0};
    tbuf_t errs = {0};
    size_t nerrs = 0;
    int rc = alert_rules_load_buffer(&rs, "t.yml", rules_yml, sizeof rules_yml - 1, &errs, &nerrs);
    if (rc) fprintf(stderr, "%.*s", (int)errs.len, (char *)errs.p);
    assert_int_equal(rc, 0);
    tbuf_free(&errs);
    assert_int_equal(alert_engine_set_rules(f->e, &rs), 0);
    alert_ruleset_free(&rs);
}

static void fx_start(fx_t *f)
{
    memset(f, 0, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    open_store(f);
    open_engine(f);
}

static void fx_stop(fx_t *f)
{
    alert_outbox_free(&f->ob);
    alert_engine_destroy(f->e);
    tsdb_close(f->db);
    tu_rmrf(f->dir);
}

static void put(fx_t *f, const char *name, const char *dev, double v, int64_t t)
{
    tsdb_label_t l[5] = {{{"__name__", 8}, {name, (uint32_t)strlen(name)}},
                         {{"kind", 4}, {"disk", 4}},
                         {{"instance", 8}, {"n1:9100", 7}},
                         {{"device", 6}, {dev, (uint32_t)strlen(dev)}},
                         {{"serial", 6}, {"S123", 4}}};
    tsdb_sample_t s = {t, v};
    tsdb_series_in_t in = {l, 5, &s, 1};
    assert_int_equal(tsdb_append(f->db, &in, 1, NULL, NULL), 0);
}

static int eval(fx_t *f, int64_t t)
{
    alert_outbox_clear(&f->ob);
    assert_true(alert_engine_eval(f->e, t, &f->ob) >= 0);
    return (int)f->ob.n;
}

static double q1(fx_t *f, const char *q, int64_t t, size_t *nseries)
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
    if (nseries) *nseries = res->nseries;
    promql_result_free(res);
    tsdb_reader_close(r);
    promql_expr_free(e);
    return v;
}

static void ts(int64_t ms, char *b)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    sprintf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void test_state_machine(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f);
    int64_t t = T0;
    put(&f, "augur_failure_probability", "sda", 0.5, t);
    assert_int_equal(eval(&f, t), 0);
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_PENDING), 0);
    int64_t t1 = t + MIN;
    put(&f, "augur_failure_probability", "sda", 0.9, t1);
    assert_int_equal(eval(&f, t1), 0);
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_PENDING), 1);
    size_t ns;
    assert_true(q1(&f, "ALERTS{alertname=\"DiskRisk\",alertstate=\"pending\"}", t1, &ns) == 1);
    assert_true(q1(&f, "ALERTS_FOR_STATE{alertname=\"DiskRisk\"}", t1, NULL) == (double)t1 / 1000);
    for (int m = 2; m <= 5; m++) {
        put(&f, "augur_failure_probability", "sda", 0.9, t + m * MIN);
        assert_int_equal(eval(&f, t + m * MIN), 0);
    }
    /* 5 min after activeAt: firing, sent. */
    int64_t t6 = t + 6 * MIN;
    put(&f, "augur_failure_probability", "sda", 0.9, t6);
    assert_int_equal(eval(&f, t6), 1);
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_FIRING), 1);
    char s1[40], s2[40], want[1024];
    ts(t6, s1);
    ts(t6 + 4 * MIN, s2);
    snprintf(
        want, sizeof want,
        "{\"labels\":{\"alertname\":\"DiskRisk\",\"device\":\"sda\",\"instance\":\"n1:9100\","
        "\"kind\":\"disk\",\"serial\":\"S123\",\"severity\":\"warning\",\"team\":\"disk-team\"},"
        "\"annotations\":{\"risk\":\"0.90\",\"summary\":\"sda on n1:9100 (90%%)\"},"
        "\"startsAt\":\"%s\",\"endsAt\":\"%s\",\"generatorURL\":\"http://augur.example:9201/"
        "graph?g0.expr=augur_failure_probability%%7Bkind%%3D%%22disk%%22%%7D%%20%%3E%%3D%%200.8"
        "&g0.tab=1\"}",
        s1, s2);
    assert_string_equal(f.ob.v[0], want);
    assert_true(q1(&f, "ALERTS{alertname=\"DiskRisk\",alertstate=\"firing\"}", t6, NULL) == 1);
    q1(&f, "ALERTS{alertname=\"DiskRisk\",alertstate=\"pending\"}", t6, &ns);
    assert_int_equal(ns, 0); /* stale marker ended the pending series */
    /* Not resent one interval later (resend delay 1 m is not yet passed)... */
    put(&f, "augur_failure_probability", "sda", 0.95, t + 7 * MIN);
    assert_int_equal(eval(&f, t + 7 * MIN), 0);
    /* ...but the next: same labels, new score in the annotations. */
    put(&f, "augur_failure_probability", "sda", 0.97, t + 8 * MIN);
    assert_int_equal(eval(&f, t + 8 * MIN), 1);
    assert_non_null(strstr(f.ob.v[0], "\"risk\":\"0.97\""));
    assert_non_null(strstr(f.ob.v[0], s1)); /* startsAt unchanged */
    /* Score falls: resolved, sent with endsAt = resolution time. */
    int64_t t9 = t + 9 * MIN;
    put(&f, "augur_failure_probability", "sda", 0.1, t9);
    assert_int_equal(eval(&f, t9), 1);
    ts(t9, s2);
    char ends[80];
    snprintf(ends, sizeof ends, "\"endsAt\":\"%s\"", s2);
    assert_non_null(strstr(f.ob.v[0], ends));
    q1(&f, "ALERTS{alertname=\"DiskRisk\"}", t9, &ns);
    assert_int_equal(ns, 0);
    /* Resolved alerts are resent for 15 minutes, then forgotten. */
    int sends = 0;
    for (int m = 10; m <= 30; m++) {
        put(&f, "augur_failure_probability", "sda", 0.1, t + m * MIN);
        int n = eval(&f, t + m * MIN);
        if (n) assert_non_null(strstr(f.ob.v[0], ends));
        sends += n;
        if (m > 25) assert_int_equal(n, 0);
    }
    assert_int_equal(sends, 7); /* minutes 11, 13, ..., 23 */
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_INACTIVE), 0);
    /* The recording rule wrote its series. */
    assert_true(q1(&f, "fleet:risk:max{source=\"augur\"}", t + 30 * MIN, NULL) == 0.1);
    fx_stop(&f);
}

static void test_keep_firing(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f);
    int64_t t = T0;
    put(&f, "flappy", "x", 1, t);
    assert_int_equal(eval(&f, t), 1); /* no `for`: fires at once */
    /* The series goes stale (no samples; lookback 5 m): write a marker. */
    put(&f, "flappy", "x", f64_from_bits(TSDB_STALE_NAN_BITS), t + MIN);
    for (int m = 1; m <= 3; m++) {
        eval(&f, t + m * MIN);
        assert_int_equal(alert_engine_count(f.e, "Flappy", ALERT_STATE_FIRING), 1);
    }
    eval(&f, t + 4 * MIN); /* 3 m after it vanished at minute 1 */
    assert_int_equal(alert_engine_count(f.e, "Flappy", ALERT_STATE_FIRING), 0);
    assert_int_equal(alert_engine_count(f.e, "Flappy", ALERT_STATE_INACTIVE), 1);
    fx_stop(&f);
}

static void test_restore(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f);
    int64_t t = T0;
    for (int m = 0; m <= 7; m++) {
        put(&f, "augur_failure_probability", "sda", 0.9, t + m * MIN);
        if (m >= 5) put(&f, "augur_failure_probability", "sdb", 0.9, t + m * MIN);
        eval(&f, t + m * MIN);
    }
    /* sda fired at minute 5 (active at 0); sdb pending since minute 5. */
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_FIRING), 1);
    char s_fired[40];
    ts(t + 5 * MIN, s_fired);
    /* Restart: engine and store closed, down for 2 minutes. */
    alert_engine_destroy(f.e);
    f.e = NULL;
    tsdb_close(f.db);
    open_store(&f);
    open_engine(&f);
    int64_t up = t + 9 * MIN;
    for (int m = 8; m <= 9; m++) {
        put(&f, "augur_failure_probability", "sda", 0.9, t + m * MIN);
        put(&f, "augur_failure_probability", "sdb", 0.9, t + m * MIN);
    }
    assert_int_equal(alert_engine_restore(f.e, up), 0);
    assert_int_equal(eval(&f, up), 1); /* sda again, firing at once */
    assert_non_null(strstr(f.ob.v[0], "\"device\":\"sda\""));
    assert_non_null(strstr(f.ob.v[0], s_fired)); /* same startsAt: no new alert */
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_FIRING), 1);
    /* sdb: 2 m pending before the outage, 3 m left < 10 m grace: fires 10 m
     * after the restart (active = up + 10m - 5m). */
    for (int m = 10; m <= 18; m++) {
        put(&f, "augur_failure_probability", "sda", 0.9, t + m * MIN);
        put(&f, "augur_failure_probability", "sdb", 0.9, t + m * MIN);
        eval(&f, t + m * MIN);
        assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_PENDING), 1);
    }
    put(&f, "augur_failure_probability", "sda", 0.9, t + 19 * MIN);
    put(&f, "augur_failure_probability", "sdb", 0.9, t + 19 * MIN);
    eval(&f, t + 19 * MIN);
    assert_int_equal(alert_engine_count(f.e, "DiskRisk", ALERT_STATE_FIRING), 2);
    fx_stop(&f);
}

static void test_api_json(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f);
    put(&f, "augur_failure_probability", "sda", 0.9, T0);
    eval(&f, T0);
    tbuf_t b = {0};
    assert_int_equal(alert_engine_rules_json(f.e, &b), 0);
    tbuf_put(&b, "", 1);
    assert_non_null(strstr((char *)b.p, "\"name\":\"DiskRisk\""));
    assert_non_null(strstr((char *)b.p, "\"type\":\"recording\""));
    assert_non_null(strstr((char *)b.p, "\"state\":\"pending\""));
    assert_non_null(strstr((char *)b.p, "\"duration\":300"));
    assert_non_null(strstr((char *)b.p, "\"health\":\"ok\""));
    b.len = 0;
    assert_int_equal(alert_engine_alerts_json(f.e, &b), 0);
    tbuf_put(&b, "", 1);
    assert_non_null(strstr((char *)b.p, "\"state\":\"pending\",\"activeAt\""));
    assert_non_null(strstr((char *)b.p, "\"value\":\"0.9\""));
    tbuf_free(&b);
    fx_stop(&f);
}

/* ---- a tiny Alertmanager stand-in ------------------------------------------- */

typedef struct {
    int lfd;
    unsigned port;
    pthread_t th;
    pthread_mutex_t mu;
    int fail_next; /* answer 500 to this many requests */
    int requests;
    tbuf_t bodies; /* every body, '\n'-separated */
    int stop;
} rcv_t;

static void *rcv_thread(void *arg)
{
    rcv_t *r = arg;
    for (;;) {
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) break;
        if (r->stop) {
            close(fd);
            break;
        }
        tbuf_t in = {0};
        char buf[8192];
        size_t need = SIZE_MAX;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            tbuf_put(&in, buf, (size_t)n);
            tbuf_put(&in, "", 1);
            in.len--;
            char *he = strstr((char *)in.p, "\r\n\r\n");
            if (he && need == SIZE_MAX) {
                char *cl = strcasestr((char *)in.p, "Content-Length:");
                need = (size_t)(he + 4 - (char *)in.p) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
            }
            if (in.len >= need) break;
        }
        pthread_mutex_lock(&r->mu);
        r->requests++;
        int fail = r->fail_next > 0;
        if (fail) r->fail_next--;
        char *he = in.len ? strstr((char *)in.p, "\r\n\r\n") : NULL;
        if (he && !fail && strstr((char *)in.p, "POST /api/v2/alerts ")) {
            tbuf_put(&r->bodies, he + 4, in.len - (size_t)(he + 4 - (char *)in.p));
            tbuf_put(&r->bodies, "\n", 1);
        }
        pthread_mutex_unlock(&r->mu);
        const char *ans = fail
                              ? "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                                "Connection: close\r\n\r\nfail"
                              : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send(fd, ans, strlen(ans), MSG_NOSIGNAL);
        close(fd);
        tbuf_free(&in);
    }
    return NULL;
}

static void rcv_start(rcv_t *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->lfd, 16), 0);
    socklen_t sl = sizeof a;
    getsockname(r->lfd, (struct sockaddr *)&a, &sl);
    r->port = ntohs(a.sin_port);
    pthread_create(&r->th, NULL, rcv_thread, r);
}

static void rcv_stop(rcv_t *r)
{
    r->stop = 1;
    shutdown(r->lfd, SHUT_RDWR);
    close(r->lfd);
    pthread_join(r->th, NULL);
    tbuf_free(&r->bodies);
    pthread_mutex_destroy(&r->mu);
}

static void test_notifier(void **state)
{
    (void)state;
    rcv_t r;
    rcv_start(&r);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", r.port);
    const char *urls[] = {url};
    alert_notifier_config_t c;
    alert_notifier_config_init(&c);
    c.urls = urls;
    c.nurls = 1;
    c.max_batch = 2;
    c.backoff_ms = 10;
    alert_notifier_t *n;
    assert_int_equal(alert_notifier_start(&c, &n), 0);
    r.fail_next = 1; /* the first POST fails: retried */
    alert_outbox_t ob = {0};
    char *items[] = {"{\"labels\":{\"alertname\":\"A\"}}", "{\"labels\":{\"alertname\":\"B\"}}",
                     "{\"labels\":{\"alertname\":\"C\"}}"};
    ob.v = items;
    ob.n = 3;
    alert_notifier_send(n, &ob);
    assert_int_equal(alert_notifier_wait_idle(n, 10000), 0);
    alert_notifier_stats_t st;
    alert_notifier_stats(n, &st);
    assert_int_equal(st.sent, 3);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.dropped, 0);
    pthread_mutex_lock(&r.mu);
    tbuf_put(&r.bodies, "", 1);
    assert_string_equal((char *)r.bodies.p,
                        "[{\"labels\":{\"alertname\":\"A\"}},{\"labels\":{\"alertname\":\"B\"}}]\n"
                        "[{\"labels\":{\"alertname\":\"C\"}}]\n");
    pthread_mutex_unlock(&r.mu);
    tbuf_t m = {0};
    assert_int_equal(alert_notifier_metrics_render(n, &m), 0);
    tbuf_put(&m, "", 1);
    char want[200];
    snprintf(
        want, sizeof want,
        "augur_notifications_sent_total{alertmanager=\"http://127.0.0.1:%u/api/v2/alerts\"} 3\n",
        r.port);
    assert_non_null(strstr((char *)m.p, want));
    assert_non_null(strstr((char *)m.p, "augur_notifications_queue_length{"));
    tbuf_free(&m);
    alert_notifier_stop(n, 1000);
    unsigned dead = r.port;
    rcv_stop(&r);

    /* Unreachable Alertmanager, queue of 3: the oldest two of five are
     * dropped at once, the rest after the failed attempt. */
    snprintf(url, sizeof url, "http://127.0.0.1:%u", dead);
    c.queue_capacity = 3;
    c.max_attempts = 1;
    c.max_batch = 64;
    assert_int_equal(alert_notifier_start(&c, &n), 0);
    char *five[] = {"{}", "{}", "{}", "{}", "{}"};
    ob.v = five;
    ob.n = 5;
    alert_notifier_send(n, &ob);
    assert_int_equal(alert_notifier_wait_idle(n, 10000), 0);
    alert_notifier_stats(n, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.dropped, 5);
    assert_true(st.errors >= 1);
    alert_notifier_stop(n, 1000);
    const char *bad[] = {"ftp://x"};
    c.urls = bad;
    assert_int_equal(alert_notifier_start(&c, &n), ALERT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_machine), cmocka_unit_test(test_keep_firing),
        cmocka_unit_test(test_restore),       cmocka_unit_test(test_api_json),
        cmocka_unit_test(test_notifier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
