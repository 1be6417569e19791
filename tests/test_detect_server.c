/* test_detect_server.c — anomaly detection inside a spawned `$AUGUR_BIN
 * serve`: samples pushed by text import are scored; augur_anomaly_score and
 * augur_node_anomaly_rate are queryable by PromQL; /api/v1/anomalies lists
 * the spiking series (and not the quiet one, nor an unselected metric);
 * /metrics counts; the state survives a SIGTERM restart (detect.state) so the
 * detector does not warm up again; bad parameters answer 400. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "testhttp.h"
#include "testutil.h"

typedef struct {
    int status;
    char *body;
} reply_t;

static int http_do(unsigned port, const char *method, const char *path, const char *body,
                   reply_t *r)
{
    th_reply_t t;
    th_request(port, method, path, NULL, body, 20, &t);
    r->status = t.status;
    r->body = t.body;
    return r->status;
}

typedef struct {
    pid_t pid;
    unsigned port;
    char log[300];
} srv_t;

static pid_t live_pid; /* killed by the teardown if a test fails midway */

static void srv_start(srv_t *s, const char *dir)
{
    const char *bin = getenv("AUGUR_BIN");
    snprintf(s->log, sizeof s->log, "%s.log", dir);
    unlink(s->log);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1); /* never ctest's pipe: a leaked server must not hold it open */
        dup2(fd, 2);
        char sp[400];
        snprintf(sp, sizeof sp, "--storage.path=%s", dir);
        execl(bin, bin, "serve", "--web.listen-address=127.0.0.1:0", sp, "--storage.retention=0",
              "--detect.persist-interval=1s", (char *)NULL);
        _exit(127);
    }
    live_pid = s->pid;
    s->port = 0;
    for (int i = 0; i < 400 && !s->port; i++) {
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
        FILE *f = fopen(s->log, "r");
        if (!f) continue;
        char line[1024];
        int ready = 0;
        unsigned port = 0;
        while (fgets(line, sizeof line, f)) {
            char *q = strstr(line, " port=");
            if (q && strstr(line, "msg=listening")) port = (unsigned)atoi(q + 6);
            if (strstr(line, "msg=\"anomaly detection on\"")) ready = 1;
        }
        fclose(f);
        if (ready) s->port = port;
    }
    assert_true(s->port > 0);
}

static void srv_stop(srv_t *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    live_pid = 0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static uint64_t rs = 7;
static double gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rs = rs * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        u[i] = ((rs >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* Push n samples 15 s apart ending at end_ms for: node_load1 on n1 and n2
 * (+spike1, +spike2 on the last sample), and an
 * unselected metric. 50 rows per request. */
static void push(unsigned port, int64_t end_ms, int n, double spike1, double spike2)
{
    tbuf_t b = {0};
    for (int i = 0; i < n; i++) {
        int64_t t = end_ms - (int64_t)(n - 1 - i) * 15000;
        char line[512];
        int l = snprintf(line, sizeof line,
                         "node_load1{instance=\"n1\",job=\"node\"} %.6f %lld\n"
                         "node_load1{instance=\"n2\",job=\"node\"} %.6f %lld\n"
                         "other_metric{instance=\"n1\"} %.6f %lld\n",
                         2.0 + 0.1 * gauss() + (i == n - 1 ? spike1 : 0.0), (long long)t,
                         2.0 + 0.1 * gauss() + (i == n - 1 ? spike2 : 0.0), (long long)t, 50.0 * (i == n - 1), (long long)t);
        tbuf_put(&b, line, (size_t)l);
        if ((i + 1) % 50 == 0 || i == n - 1) {
            tbuf_put(&b, "", 1);
            reply_t r;
            assert_int_equal(http_do(port, "POST", "/api/v1/import/prometheus", (char *)b.p, &r),
                             204);
            free(r.body);
            b.len = 0;
        }
    }
    tbuf_free(&b);
}

/* GET until the body contains want (the worker is asynchronous). */
static char *get_until(unsigned port, const char *path, const char *want)
{
    for (int i = 0; i < 200; i++) {
        reply_t r;
        http_do(port, "GET", path, NULL, &r);
        if (r.status == 200 && strstr(r.body, want)) return r.body;
        free(r.body);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("GET %s never contained %s", path, want);
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_serve_detection(void **state)
{
    (void)state;
    if (!getenv("AUGUR_BIN")) skip();
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    srv_t s;
    srv_start(&s, dir);
    int64_t end = now_ms() / 1000 * 1000 - 60000;
    push(s.port, end, 400, 5.0, 0.0);

    /* The score series, through PromQL. */
    char *b = get_until(s.port,
                        "/api/v1/query?query=augur_anomaly_score%7Bmetric%3D%22node_load1%22%2C"
                        "instance%3D%22n1%22%7D",
                        "\"augur_anomaly_score\"");
    char *v = strstr(b, "\"value\":[");
    assert_non_null(v);
    v = strchr(v, ',');
    assert_non_null(v);
    double score = strtod(v + 2, NULL);
    fprintf(stderr, "score of the spike: %.3f\n", score);
    assert_true(score >= 0.4 && score < 1.0);
    free(b);
    /* Counted per sample; the unselected metric has no score series. */
    b = get_until(s.port, "/api/v1/query?query=count(augur_anomaly_score)", "\"result\":[{");
    assert_non_null(strstr(b, "\"2\""));
    free(b);
    /* Scores are written on change, and at least every 4 minutes: 2 series x
     * 200 samples over 50 minutes give between 2 x 12 and 400 score samples. */
    b = get_until(s.port,
                  "/api/v1/query?query=sum(count_over_time(augur_anomaly_score%5B2h%5D))",
                  "\"result\":[{");
    {
        const char *cv = strstr(b, "\"value\":[");
        assert_non_null(cv);
        cv = strchr(cv, '"');
        cv = cv ? strchr(cv + 1, '"') : NULL; /* skip the timestamp, find the value */
        assert_non_null(cv);
        cv = strchr(cv + 1, '"');
        assert_non_null(cv);
        double cnt = strtod(cv + 1, NULL);
        fprintf(stderr, "score samples written: %.0f of 400 scored\n", cnt);
        assert_true(cnt >= 24 && cnt <= 400);
    }
    free(b);
    /* The listing: n1 first, n2 quiet not listed. */
    b = get_until(s.port, "/api/v1/anomalies?since=0", "\"instance\":\"n1\"");
    assert_null(strstr(b, "\"instance\":\"n2\""));
    assert_null(strstr(b, "other_metric"));
    assert_non_null(strstr(b, "\"__name__\":\"node_load1\""));
    free(b);
    b = get_until(s.port, "/api/v1/anomalies?since=0&min_score=0.99", "\"data\":[]");
    free(b);
    /* Per-node rate series. */
    b = get_until(s.port, "/api/v1/query?query=augur_node_anomaly_rate", "\"instance\":\"n2\"");
    assert_non_null(strstr(b, "\"instance\":\"n1\""));
    free(b);
    b = get_until(s.port, "/metrics", "augur_detect_samples_total 800");
    assert_non_null(strstr(b, "augur_detect_series 2"));
    assert_non_null(strstr(b, "augur_detect_dropped_total 0"));
    free(b);
    reply_t r;
    assert_int_equal(http_do(s.port, "GET", "/api/v1/anomalies?min_score=abc", NULL, &r), 400);
    free(r.body);
    assert_int_equal(http_do(s.port, "POST", "/api/v1/anomalies", NULL, &r), 405);
    free(r.body);
    srv_stop(&s);

    /* Restart: states come back (no warm-up), and so does the alarm. */
    char path[400];
    snprintf(path, sizeof path, "%s/detect.state", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    srv_start(&s, dir);
    b = get_until(s.port, "/metrics", "augur_detect_series 2");
    free(b);
    b = get_until(s.port, "/api/v1/anomalies?since=0", "\"instance\":\"n1\"");
    free(b);
    /* A spike on n2 right after the restart is scored at once: a fresh
     * detector would still be warming up (score 0) for 150 samples. */
    push(s.port, end + 20 * 15000, 20, 0.0, 5.0);
    b = get_until(s.port, "/metrics", "augur_detect_samples_total 40");
    free(b);
    char q[512];
    snprintf(q, sizeof q,
             "/api/v1/query?query=augur_anomaly_score%%7Binstance%%3D%%22n2%%22%%7D&time=%.3f",
             (double)(end + 20 * 15000) / 1000.0);
    b = get_until(s.port, q, "\"augur_anomaly_score\"");
    v = strchr(strstr(b, "\"value\":["), ',');
    score = strtod(v + 2, NULL);
    fprintf(stderr, "score of the spike after the restart: %.3f\n", score);
    assert_true(score >= 0.4);
    free(b);
    srv_stop(&s);
    tu_rmrf(dir);
    unlink(s.log);
}

static int teardown(void **state)
{
    (void)state;
    if (live_pid > 0) {
        kill(live_pid, SIGKILL);
        waitpid(live_pid, NULL, 0);
        live_pid = 0;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_serve_detection, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
