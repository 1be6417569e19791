/*
 * test_failures.c — failure events: POST/GET /api/v1/failures through the
 * real HTTP server (in-process, loopback, free port), roles (401 without
 * credentials, read role may list but not record), malformed bodies (400,
 * nothing stored), durability across a store reopen, `augur label`, and
 * `augur import --url` into a spawned `augur serve`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "api/auth.h"
#include "api/server.h"
#include "ingest/failures.h"
#include "testhttp.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

typedef struct {
    int status;
    char *body;
} resp_t;

static int http(unsigned port, const char *method, const char *path, const char *hdrs,
                const char *body, resp_t *r)
{
    th_reply_t t;
    th_request(port, method, path, hdrs, body, 20, &t);
    r->status = t.status;
    r->body = t.body;
    return r->status;
}

typedef struct {
    char dir[256];
    tsdb_t *db;
    api_server_t *srv;
    api_auth_t *auth;
    unsigned port;
} fx_t;

static void fx_start(fx_t *f, const char *auth_text)
{
    memset(f, 0, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    assert_int_equal(tsdb_open(f->dir, &o, &f->db), 0);
    if (auth_text) {
        char err[200];
        assert_int_equal(api_auth_parse(auth_text, strlen(auth_text), &f->auth, err, sizeof err),
                         0);
    }
    api_config_t c;
    api_config_init(&c);
    c.listen_address = "127.0.0.1:0";
    c.storage_path = f->dir;
    c.auth = f->auth;
    c.threads = 2;
    c.version = "test";
    assert_int_equal(api_server_start(&c, &f->srv), 0);
    f->port = api_server_port(f->srv);
    api_server_set_store(f->srv, f->db);
}

static void fx_stop(fx_t *f, int keep)
{
    assert_int_equal(api_server_shutdown(f->srv, 5000), 0);
    api_server_destroy(f->srv);
    assert_int_equal(tsdb_close(f->db), 0);
    api_auth_destroy(f->auth);
    if (!keep) tu_rmrf(f->dir);
}

static void test_post_get(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL);
    resp_t r;
    const char *one = "{\"kind\":\"disk\",\"instance\":\"node1\",\"device\":\"sda\",\"serial\":"
                      "\"S1\",\"time\":\"2024-03-01T12:00:00Z\",\"reason\":\"pending sectors\"}";
    assert_int_equal(http(f.port, "POST", "/api/v1/failures", NULL, one, &r), 200);
    assert_non_null(strstr(r.body, "\"stored\":1"));
    free(r.body);
    /* The same event again: idempotent. */
    assert_int_equal(http(f.port, "POST", "/api/v1/failures", NULL, one, &r), 200);
    assert_non_null(strstr(r.body, "\"stored\":0,\"already_present\":1"));
    free(r.body);
    const char *many = "[{\"kind\":\"gpu\",\"instance\":\"node2\",\"device\":\"nvidia3\","
                       "\"uuid\":\"GPU-abc\",\"time\":1709300000,\"reason\":\"XID 79\"},"
                       "{\"kind\":\"node\",\"instance\":\"node3\",\"time\":\"1709200000.5\"}]";
    assert_int_equal(http(f.port, "POST", "/api/v1/failures", NULL, many, &r), 200);
    assert_non_null(strstr(r.body, "\"received\":2,\"stored\":2"));
    free(r.body);

    assert_int_equal(http(f.port, "GET", "/api/v1/failures", NULL, NULL, &r), 200);
    /* Sorted by time: node3, node1, node2. */
    const char *p3 = strstr(r.body, "\"instance\":\"node3\"");
    const char *p1 = strstr(r.body, "\"instance\":\"node1\"");
    const char *p2 = strstr(r.body, "\"instance\":\"node2\"");
    assert_true(p3 && p1 && p2 && p3 < p1 && p1 < p2);
    assert_non_null(strstr(r.body, "\"time\":\"2024-03-01T12:00:00Z\",\"timestamp\":1709294400.000,"
                                   "\"kind\":\"disk\",\"instance\":\"node1\",\"device\":\"sda\","
                                   "\"serial\":\"S1\",\"reason\":\"pending sectors\""));
    assert_non_null(strstr(r.body, "\"uuid\":\"GPU-abc\""));
    assert_non_null(strstr(r.body, "\"timestamp\":1709200000.500"));
    free(r.body);
    assert_int_equal(http(f.port, "GET", "/api/v1/failures?kind=gpu", NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "node2"));
    assert_null(strstr(r.body, "node1"));
    free(r.body);
    assert_int_equal(http(f.port, "GET",
                          "/api/v1/failures?since=2024-03-01T00:00:00Z&until=1709295000", NULL,
                          NULL, &r),
                     200);
    assert_non_null(strstr(r.body, "node1"));
    assert_null(strstr(r.body, "node2"));
    assert_null(strstr(r.body, "node3"));
    free(r.body);
    assert_int_equal(http(f.port, "GET", "/api/v1/failures?instance=nope", NULL, NULL, &r), 200);
    assert_string_equal(r.body, "{\"status\":\"success\",\"data\":[]}\n");
    free(r.body);
    /* PromQL sees them. */
    assert_int_equal(
        http(f.port, "GET",
             "/api/v1/"
             "query?query=count(max_over_time(augur_failure_event%5B30d%5D))&time=1709300000",
             NULL, NULL, &r),
        200);
    assert_non_null(strstr(r.body, "\"3\""));
    free(r.body);
    fx_stop(&f, 1);
    /* Durable: reopen the store directory and list. */
    tsdb_t *db;
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    assert_int_equal(tsdb_open(f.dir, &o, &db), 0);
    tsdb_reader_t *rd;
    assert_int_equal(tsdb_reader_open(db, &rd), 0);
    failure_list_t l;
    assert_int_equal(failures_list(rd, NULL, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[1].serial, "S1");
    assert_true(l.v[1].t_ms == INT64_C(1709294400000));
    failure_list_free(&l);
    tsdb_reader_close(rd);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(f.dir);
}

static void test_bad_requests(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL);
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"", "truncated"},
        {"{\"kind\":\"disk\",", "line 1 column 16"},
        {"not json", "JSON syntax error"},
        {"[]", "empty request"},
        {"42", "expected an event object"},
        {"{\"kind\":\"tape\",\"instance\":\"n\",\"time\":1}", "not disk, gpu or node"},
        {"{\"kind\":\"disk\",\"instance\":\"n\",\"time\":1}", "needs device or serial"},
        {"{\"kind\":\"gpu\",\"instance\":\"n\",\"time\":1}", "needs device or uuid"},
        {"{\"kind\":\"node\",\"time\":1}", "instance is missing"},
        {"{\"kind\":\"node\",\"instance\":\"n\"}", "time is missing"},
        {"{\"kind\":\"node\",\"instance\":\"n\",\"time\":\"yesterday\"}", "RFC 3339"},
        {"{\"kind\":\"node\",\"instance\":\"n\",\"time\":\"2024-02-30\"}", "RFC 3339"},
        {"{\"kind\":\"node\",\"instance\":\"n\",\"time\":1,\"sevirity\":\"x\"}", "unknown member"},
        {"{\"kind\":\"node\",\"instance\":7,\"time\":1}", "instance must be a string"},
        {"{\"kind\":\"node\",\"instance\":\"n\",\"time\":99999999999}", "in the future"},
        /* One bad event in an array: nothing stored. */
        {"[{\"kind\":\"node\",\"instance\":\"ok\",\"time\":1},{\"kind\":\"disk\",\"instance\":"
         "\"n\","
         "\"time\":1}]",
         "event 2: a disk failure needs device or serial"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp_t r;
        int st = http(f.port, "POST", "/api/v1/failures", NULL, bad[i].body, &r);
        if (st != 400 || !strstr(r.body, bad[i].want))
            fprintf(stderr, "case %zu: %d %s\n", i, st, r.body);
        assert_int_equal(st, 400);
        assert_non_null(strstr(r.body, bad[i].want));
        free(r.body);
    }
    resp_t r;
    assert_int_equal(http(f.port, "GET", "/api/v1/failures", NULL, NULL, &r), 200);
    assert_string_equal(r.body, "{\"status\":\"success\",\"data\":[]}\n");
    free(r.body);
    assert_int_equal(http(f.port, "GET", "/api/v1/failures?kind=tape", NULL, NULL, &r), 400);
    free(r.body);
    assert_int_equal(http(f.port, "GET", "/api/v1/failures?since=soon", NULL, NULL, &r), 400);
    free(r.body);
    assert_int_equal(http(f.port, "DELETE", "/api/v1/failures", NULL, NULL, &r), 405);
    free(r.body);
    fx_stop(&f, 0);
}

static void test_roles(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, "read bearer r-token\nwrite bearer w-token\nadmin bearer a-token\n");
    const char *ev = "{\"kind\":\"node\",\"instance\":\"n1\",\"time\":\"2024-01-01\"}";
    resp_t r;
    assert_int_equal(http(f.port, "POST", "/api/v1/failures", NULL, ev, &r), 401);
    free(r.body);
    assert_int_equal(
        http(f.port, "POST", "/api/v1/failures", "Authorization: Bearer r-token\r\n", ev, &r), 401);
    free(r.body);
    assert_int_equal(
        http(f.port, "POST", "/api/v1/failures", "Authorization: Bearer bad\r\n", ev, &r), 401);
    free(r.body);
    assert_int_equal(
        http(f.port, "POST", "/api/v1/failures", "Authorization: Bearer w-token\r\n", ev, &r), 200);
    free(r.body);
    assert_int_equal(
        http(f.port, "POST", "/api/v1/failures", "Authorization: Bearer a-token\r\n", ev, &r), 200);
    assert_non_null(strstr(r.body, "\"already_present\":1"));
    free(r.body);
    assert_int_equal(http(f.port, "GET", "/api/v1/failures", NULL, NULL, &r), 401);
    free(r.body);
    assert_int_equal(
        http(f.port, "GET", "/api/v1/failures", "Authorization: Bearer r-token\r\n", NULL, &r),
        200);
    assert_non_null(strstr(r.body, "\"instance\":\"n1\""));
    free(r.body);
    fx_stop(&f, 0);
}

/* ---- the binary: augur label, augur import --url ------------------------- */

static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_label_cli(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) skip();
    char dir[256], cmd[2048], out[8192];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(cmd, sizeof cmd,
             "'%s' label failure --store '%s/s' --kind disk --instance node1 --device sda "
             "--serial S1 --time 2024-03-01T12:00:00Z --reason 'pending sectors' 2>&1",
             bin, dir);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "recorded disk failure"));
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "already recorded"));
    snprintf(cmd, sizeof cmd,
             "'%s' label failure --store '%s/s' --kind=gpu --instance=node2 --uuid=GPU-1 "
             "--time=1709300000 2>&1",
             bin, dir);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd,
             "'%s' label failure --store '%s/s' --kind disk --instance node1 --time 2024-03-01 "
             "2>&1",
             bin, dir);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "needs device or serial"));
    snprintf(cmd, sizeof cmd,
             "'%s' label failure --store '%s/s' --kind disk --instance n --device d --time "
             "tomorrow 2>&1",
             bin, dir);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "'%s' label list --store '%s/s' --kind disk 2>&1", bin, dir);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_string_equal(out, "{\"time\":\"2024-03-01T12:00:00Z\",\"timestamp\":1709294400.000,"
                             "\"kind\":\"disk\",\"instance\":\"node1\",\"device\":\"sda\","
                             "\"serial\":\"S1\",\"reason\":\"pending sectors\"}\n");
    snprintf(cmd, sizeof cmd, "'%s' label --help", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "--kind disk|gpu|node"));
    tu_rmrf(dir);
}

static void test_import_url(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    const char *src = getenv("AUGUR_SRC");
    if (!bin || !src) skip();
    char dir[256], log[300], cmd[4096], out[16384];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(log, sizeof log, "%s/serve.log", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1); /* never ctest's pipe: a leaked server must not hold it open */
        dup2(fd, 2);
        char sp[400];
        snprintf(sp, sizeof sp, "--storage.path=%s/s", dir);
        execl(bin, bin, "serve", "--web.listen-address=127.0.0.1:0", sp, "--storage.retention=0",
              "--log.level=info", (char *)NULL);
        _exit(127);
    }
    unsigned port = 0;
    for (int i = 0; i < 200 && !port; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        FILE *fp = fopen(log, "r");
        if (!fp) continue;
        char line[1024];
        while (fgets(line, sizeof line, fp)) {
            char *q = strstr(line, " port=");
            if (q && strstr(line, "msg=listening")) port = (unsigned)atoi(q + 6);
        }
        fclose(fp);
    }
    assert_true(port > 0);
    for (int i = 0; i < 200; i++) {
        resp_t r;
        int st = http(port, "GET", "/-/ready", NULL, NULL, &r);
        free(r.body);
        if (st == 200) break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* nvidia-smi and smartctl through remote write; failure events from a
     * Backblaze CSV too. */
    snprintf(cmd, sizeof cmd,
             "'%s' import nvidia-smi --url http://127.0.0.1:%u --instance h1 --batch 7 "
             "'%s/tests/data/nvidia-smi/a100_2gpu.csv' 2>&1",
             bin, port, src);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "imported 4 rows"));
    snprintf(cmd, sizeof cmd,
             "'%s' import smartctl-json --url http://127.0.0.1:%u/ --instance h1 "
             "'%s/tests/data/smartctl/nvme0.json' 2>&1",
             bin, port, src);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    char csv[400];
    snprintf(csv, sizeof csv, "%s/d.csv", dir);
    FILE *fp = fopen(csv, "w");
    fputs("date,serial_number,model,capacity_bytes,failure,smart_5_raw\n"
          "2024-01-01,A,M,1,0,1\n2024-01-02,A,M,1,1,2\n",
          fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "'%s' import backblaze --url http://127.0.0.1:%u '%s' 2>&1", bin,
             port, csv);
    int st0 = run(cmd, out, sizeof out);
    if (st0) fprintf(stderr, "%s", out);
    assert_int_equal(st0, 0);
    resp_t r;
    assert_int_equal(http(port, "GET",
                          "/api/v1/query?query=DCGM_FI_DEV_POWER_USAGE&time=1709294405", NULL, NULL,
                          &r),
                     200);
    assert_non_null(strstr(r.body, "\"250.12\""));
    assert_non_null(strstr(r.body, "\"262.5\""));
    free(r.body);
    assert_int_equal(http(port, "GET",
                          "/api/v1/query?query=smartctl_device_media_errors&time=1709294470", NULL,
                          NULL, &r),
                     200);
    assert_non_null(strstr(r.body, "\"nvme0\""));
    free(r.body);
    assert_int_equal(http(port, "GET", "/api/v1/failures?kind=disk", NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "\"time\":\"2024-01-02T00:00:00Z\""));
    free(r.body);
    /* A server that is not there: the import stops and says so. */
    snprintf(cmd, sizeof cmd, "'%s' import backblaze --url http://127.0.0.1:1 '%s' 2>&1", bin, csv);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "NOT stored"));
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    tu_rmrf(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_get),   cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_roles),      cmocka_unit_test(test_label_cli),
        cmocka_unit_test(test_import_url),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tsdb_thread_cleanup();
    return rc;
}
