/*
 * test_server.c — `augur serve` over real HTTP: the server runs in-process
 * (api_server_start on a free loopback port, a store in a temp dir) or as a
 * spawned $AUGUR_BIN, and a small raw-socket HTTP/1.1 client of our own talks
 * to it. Remote-write bodies are built by a minimal protobuf encoder below
 * and compressed with libsnappy.
 *
 * Covered: probes and routing (404/405/Allow/JSON errors), readiness before
 * the store is open, remote write 1.0 and 2.0 (204 only once durable,
 * duplicates are not errors, staleness markers bit-exact, RW 2.0 headers),
 * the malformed-request table (each answer checked, then the server still
 * serves and earlier data is intact), conflicts/out-of-order/future samples
 * (400 naming the series, valid samples stored), body limits (declared
 * 100 MB, chunked over the cap, snappy declared length), in-flight budget
 * (503 + Retry-After), slow-loris, auth (bearer/basic per role, admin on
 * loopback only), text import (extra_label, OpenMetrics, server time),
 * admin endpoints, /metrics, flag parsing, and a spawned server killed with
 * SIGKILL and stopped with SIGTERM, then reopened: every acknowledged sample
 * is there.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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
#include <snappy-c.h>

#include "api/api_int.h"
#include "api/auth.h"
#include "api/server.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

/* ---- HTTP client -------------------------------------------------------- */

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t blen;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static int tcp_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may answer early and close */
        c += w;
        n -= (size_t)w;
    }
}

/* Read a whole response (the request said Connection: close). */
static void read_resp(int fd, resp_t *r)
{
    tbuf_t b = {0};
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        assert_int_equal(tbuf_put(&b, buf, (size_t)n), 0);
    }
    memset(r, 0, sizeof *r);
    r->status = -1;
    if (!b.len) {
        tbuf_free(&b);
        return;
    }
    tbuf_put(&b, "", 1);
    char *s = (char *)b.p;
    /* Skip interim 100 Continue answers. */
    while (!strncmp(s, "HTTP/1.1 100", 12)) {
        char *e = strstr(s, "\r\n\r\n");
        if (!e) break;
        s = e + 4;
    }
    sscanf(s, "HTTP/1.%*d %d", &r->status);
    char *e = strstr(s, "\r\n\r\n");
    size_t hl = e ? (size_t)(e - s) : strlen(s);
    if (hl >= sizeof r->head) hl = sizeof r->head - 1;
    memcpy(r->head, s, hl);
    r->head[hl] = 0;
    if (e) {
        e += 4;
        r->blen = b.len - 1 - (size_t)(e - (char *)b.p);
        r->body = malloc(r->blen + 1);
        memcpy(r->body, e, r->blen);
        r->body[r->blen] = 0;
    } else {
        r->body = calloc(1, 1);
    }
    tbuf_free(&b);
}

/* One request on a fresh connection. `hdrs` holds extra "Name: value\r\n"
 * lines. Returns the status (-1: no answer). */
static int http(unsigned port, const char *method, const char *path, const char *hdrs,
                const void *body, size_t blen, resp_t *r)
{
    int fd = tcp_connect(port);
    assert_true(fd >= 0);
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     method, path, blen, hdrs ? hdrs : "");
    send_all(fd, head, (size_t)n);
    if (blen) send_all(fd, body, blen);
    read_resp(fd, r);
    close(fd);
    return r->status;
}

static int utf8_ok(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p, *e = s + n;
    while (s < e) {
        unsigned c = *s++;
        int k = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (k < 0 || e - s < k) return 0;
        for (int i = 0; i < k; i++)
            if ((s[i] & 0xc0) != 0x80) return 0;
        s += k;
    }
    return 1;
}

static int header_has(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

#define RW1_HDRS                                                                                   \
    "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"                         \
    "X-Prometheus-Remote-Write-Version: 0.1.0\r\n"
#define RW2_HDRS                                                                                   \
    "Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request\r\n"                \
    "Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 2.0.0\r\n"

/* ---- protobuf + snappy -------------------------------------------------- */

static void pb_key(tbuf_t *b, unsigned field, unsigned wt)
{
    tbuf_varint(b, (uint64_t)field << 3 | wt);
}

static void pb_bytes(tbuf_t *b, unsigned field, const void *p, size_t n)
{
    pb_key(b, field, 2);
    tbuf_varint(b, n);
    tbuf_put(b, p, n);
}

static void pb_double(tbuf_t *b, unsigned field, double v)
{
    uint8_t x[8];
    le64_put(x, f64_bits(v));
    pb_key(b, field, 1);
    tbuf_put(b, x, 8);
}

static void pb_int(tbuf_t *b, unsigned field, int64_t v)
{
    pb_key(b, field, 0);
    tbuf_varint(b, (uint64_t)v);
}

typedef struct {
    const char *const *labels; /* name, value, name, value, ..., NULL */
    const int64_t *t;
    const double *v;
    size_t n;
} ts_t;

/* Append one v1 TimeSeries (field 1 of WriteRequest) to req. */
static void rw1_series(tbuf_t *req, const ts_t *s)
{
    tbuf_t ts = {0}, tmp = {0};
    for (size_t i = 0; s->labels[i]; i += 2) {
        tmp.len = 0;
        pb_bytes(&tmp, 1, s->labels[i], strlen(s->labels[i]));
        pb_bytes(&tmp, 2, s->labels[i + 1], strlen(s->labels[i + 1]));
        pb_bytes(&ts, 1, tmp.p, tmp.len);
    }
    for (size_t k = 0; k < s->n; k++) {
        tmp.len = 0;
        pb_double(&tmp, 1, s->v[k]);
        pb_int(&tmp, 2, s->t[k]);
        pb_bytes(&ts, 2, tmp.p, tmp.len);
    }
    pb_bytes(req, 1, ts.p, ts.len);
    tbuf_free(&ts);
    tbuf_free(&tmp);
}

/* v2: symbols table + series with label refs. */
static void rw2_build(tbuf_t *req, const ts_t *s, size_t ns)
{
    const char *sym[256];
    size_t nsym = 0;
    sym[nsym++] = "";
    tbuf_t body = {0}, ts = {0}, tmp = {0}, refs = {0};
    for (size_t i = 0; i < ns; i++) {
        ts.len = refs.len = 0;
        for (size_t l = 0; s[i].labels[l]; l++) {
            size_t k;
            for (k = 0; k < nsym; k++)
                if (!strcmp(sym[k], s[i].labels[l])) break;
            if (k == nsym) sym[nsym++] = s[i].labels[l];
            tbuf_varint(&refs, k);
        }
        pb_bytes(&ts, 1, refs.p, refs.len);
        for (size_t k = 0; k < s[i].n; k++) {
            tmp.len = 0;
            pb_double(&tmp, 1, s[i].v[k]);
            pb_int(&tmp, 2, s[i].t[k]);
            pb_bytes(&ts, 2, tmp.p, tmp.len);
        }
        pb_bytes(&body, 5, ts.p, ts.len);
    }
    for (size_t k = 0; k < nsym; k++)
        pb_bytes(req, 4, sym[k], strlen(sym[k]));
    tbuf_put(req, body.p, body.len);
    tbuf_free(&body);
    tbuf_free(&ts);
    tbuf_free(&tmp);
    tbuf_free(&refs);
}

static void snappy_of(const tbuf_t *in, tbuf_t *out)
{
    size_t cl = snappy_max_compressed_length(in->len);
    out->len = 0;
    assert_int_equal(tbuf_reserve(out, cl), 0);
    assert_int_equal(snappy_compress((const char *)in->p, in->len, (char *)out->p, &cl), SNAPPY_OK);
    out->len = cl;
}

/* ---- fixtures --------------------------------------------------------- */

typedef struct {
    char dir[256];
    tsdb_t *db;
    api_server_t *srv;
    unsigned port;
    api_auth_t *auth;
    int64_t t0; /* a recent base timestamp */
} fx_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fx_start(fx_t *f, const char *listen, const char *auth_text, size_t max_req,
                     size_t max_inflight, int attach)
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
    c.listen_address = listen ? listen : "127.0.0.1:0";
    c.storage_path = f->dir;
    c.auth = f->auth;
    c.threads = 2;
    c.connection_timeout_s = 2;
    c.request_timeout_s = 3;
    c.max_request_bytes = max_req ? max_req : 4u << 20;
    c.max_decompressed_bytes = 8u << 20;
    c.max_inflight_bytes = max_inflight;
    c.version = "test";
    assert_int_equal(api_server_start(&c, &f->srv), 0);
    f->port = api_server_port(f->srv);
    assert_true(f->port > 0);
    if (attach) api_server_set_store(f->srv, f->db);
    f->t0 = (now_ms() - 30 * 60 * 1000) / 1000 * 1000;
}

static void fx_stop(fx_t *f)
{
    assert_int_equal(api_server_shutdown(f->srv, 5000), 0);
    api_server_destroy(f->srv);
    assert_int_equal(tsdb_close(f->db), 0);
    api_auth_destroy(f->auth);
    tu_rmrf(f->dir);
}

/* All samples of series matching __name__=name (and label=value if given). */
static size_t read_back(tsdb_t *db, const char *name, const char *lname, const char *lval,
                        tsdb_sample_t *out, size_t cap, size_t *nseries)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", name}, {TSDB_MATCH_EQ, lname, lval}};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, m, lname ? 2 : 1, INT64_MIN, INT64_MAX, &ids), 0);
    if (nseries) *nseries = ids.n;
    size_t n = 0;
    for (size_t i = 0; i < ids.n; i++) {
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, ids.ids[i], INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *s;
        size_t k;
        while (tsdb_iter_next(it, &s, &k) == 1) {
            for (size_t j = 0; j < k && n < cap; j++)
                out[n++] = s[j];
        }
        tsdb_iter_close(it);
    }
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    return n;
}

/* Post a v1 body made of `ns` series. */
static int post_rw1(unsigned port, const ts_t *s, size_t ns, const char *extra, resp_t *r)
{
    tbuf_t req = {0}, z = {0};
    for (size_t i = 0; i < ns; i++)
        rw1_series(&req, &s[i]);
    snappy_of(&req, &z);
    char hdrs[1024];
    snprintf(hdrs, sizeof hdrs, "%s%s", RW1_HDRS, extra ? extra : "");
    int st = http(port, "POST", "/api/v1/write", hdrs, z.p, z.len, r);
    tbuf_free(&req);
    tbuf_free(&z);
    return st;
}

static void expect_healthy(unsigned port)
{
    resp_t r;
    assert_int_equal(http(port, "GET", "/-/healthy", NULL, NULL, 0, &r), 200);
    resp_free(&r);
}

/* ---- tests: routing, probes ------------------------------------------- */

static void test_routing(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    resp_t r;
    assert_int_equal(http(f.port, "GET", "/-/healthy", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/-/ready", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/no/such/path", NULL, NULL, 0, &r), 404);
    assert_non_null(strstr(r.body, "\"status\":\"error\""));
    assert_non_null(strstr(r.body, "\"errorType\":\"not_found\""));
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/api/v1/write", NULL, NULL, 0, &r), 405);
    assert_true(header_has(&r, "Allow: POST"));
    assert_non_null(strstr(r.body, "not allowed"));
    resp_free(&r);
    assert_int_equal(http(f.port, "DELETE", "/-/healthy", NULL, NULL, 0, &r), 405);
    assert_true(header_has(&r, "Allow: GET, HEAD"));
    resp_free(&r);
    /* Query API routes reach query/. */
    assert_int_equal(http(f.port, "GET", "/api/v1/status/buildinfo", NULL, NULL, 0, &r), 200);
    assert_non_null(strstr(r.body, "\"status\":\"success\""));
    resp_free(&r);
    fx_stop(&f);
}

static void test_not_ready(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 0);
    resp_t r;
    assert_int_equal(http(f.port, "GET", "/-/healthy", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/-/ready", NULL, NULL, 0, &r), 503);
    resp_free(&r);
    const char *lab[] = {"__name__", "m", NULL};
    int64_t t = f.t0;
    double v = 1;
    ts_t s = {lab, &t, &v, 1};
    assert_int_equal(post_rw1(f.port, &s, 1, NULL, &r), 503);
    assert_true(header_has(&r, "Retry-After:"));
    resp_free(&r);
    api_server_set_store(f.srv, f.db);
    assert_int_equal(http(f.port, "GET", "/-/ready", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    assert_int_equal(post_rw1(f.port, &s, 1, NULL, &r), 204);
    resp_free(&r);
    fx_stop(&f);
}

/* ---- tests: remote write ------------------------------------------------ */

static void test_write_v1(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    int64_t t[100];
    double v[100];
    for (int i = 0; i < 100; i++) {
        t[i] = f.t0 + i * 1000;
        v[i] = i * 0.1 - 3;
    }
    v[50] = f64_from_bits(TSDB_STALE_NAN_BITS);
    v[51] = f64_from_bits(UINT64_C(0x7ff8000000000001));
    v[52] = -0.0;
    v[53] = INFINITY;
    /* Labels unsorted on the wire: the server sorts them. */
    const char *la[] = {"job", "node", "__name__", "node_load1", "instance", "a:9100", NULL};
    const char *lb[] = {"__name__", "node_load1", "instance", "b:9100", "job", "node", NULL};
    ts_t s[2] = {{la, t, v, 100}, {lb, t, v, 60}};
    resp_t r;
    assert_int_equal(post_rw1(f.port, s, 2, NULL, &r), 204);
    assert_int_equal(r.blen, 0);
    resp_free(&r);
    /* Durable and readable as soon as the 204 arrived. */
    tsdb_sample_t out[200];
    size_t ns;
    assert_int_equal(read_back(f.db, "node_load1", "instance", "a:9100", out, 200, &ns), 100);
    assert_int_equal(ns, 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(out[i].t, t[i]);
        assert_true(f64_bits(out[i].v) == f64_bits(v[i]));
    }
    /* A sender retry of the same body: 204, nothing doubled. */
    assert_int_equal(post_rw1(f.port, s, 2, NULL, &r), 204);
    resp_free(&r);
    assert_int_equal(read_back(f.db, "node_load1", NULL, NULL, out, 200, &ns), 160);
    assert_int_equal(ns, 2);
    /* Content-Type parameters and case are tolerated. */
    assert_int_equal(post_rw1(f.port, s, 1, NULL, &r), 204);
    resp_free(&r);
    /* /metrics counts it. */
    assert_int_equal(http(f.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    assert_non_null(strstr(r.body, "augur_samples_ingested_total 160\n"));
    assert_non_null(strstr(r.body, "augur_samples_duplicate_total 260\n"));
    assert_non_null(
        strstr(r.body, "augur_http_requests_total{handler=\"write\",code=\"204\"} 3\n"));
    assert_non_null(strstr(
        r.body, "augur_http_request_duration_seconds_bucket{handler=\"write\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(r.body, "augur_active_series 2\n"));
    assert_non_null(strstr(r.body, "augur_storage_bytes "));
    assert_non_null(strstr(r.body, "augur_wal_fsyncs_total "));
    assert_non_null(strstr(r.body, "process_cpu_seconds_total "));
    assert_non_null(strstr(r.body, "process_resident_memory_bytes "));
    assert_non_null(strstr(r.body, "# TYPE augur_http_request_duration_seconds histogram\n"));
    resp_free(&r);
    fx_stop(&f);
}

static void test_write_v2(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    int64_t t[3] = {f.t0, f.t0 + 15000, f.t0 + 30000};
    double v[3] = {1.5, 2.5, f64_from_bits(TSDB_STALE_NAN_BITS)};
    const char *la[] = {"__name__", "gpu_temp", "gpu", "0", NULL};
    const char *lb[] = {"__name__", "gpu_temp", "gpu", "1", NULL};
    ts_t s[2] = {{la, t, v, 3}, {lb, t, v, 2}};
    tbuf_t req = {0}, z = {0};
    rw2_build(&req, s, 2);
    snappy_of(&req, &z);
    resp_t r;
    assert_int_equal(http(f.port, "POST", "/api/v1/write", RW2_HDRS, z.p, z.len, &r), 204);
    assert_true(header_has(&r, "X-Prometheus-Remote-Write-Samples-Written: 5"));
    assert_true(header_has(&r, "X-Prometheus-Remote-Write-Histograms-Written: 0"));
    assert_true(header_has(&r, "X-Prometheus-Remote-Write-Exemplars-Written: 0"));
    resp_free(&r);
    tsdb_sample_t out[8];
    assert_int_equal(read_back(f.db, "gpu_temp", "gpu", "0", out, 8, NULL), 3);
    assert_true(f64_bits(out[2].v) == TSDB_STALE_NAN_BITS);
    /* The version header alone selects 2.0 too. */
    assert_int_equal(http(f.port, "POST", "/api/v1/write",
                          "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                          "X-Prometheus-Remote-Write-Version: 2.0.0\r\n",
                          z.p, z.len, &r),
                     204);
    assert_true(header_has(&r, "X-Prometheus-Remote-Write-Samples-Written: 5"));
    resp_free(&r);
    tbuf_free(&req);
    tbuf_free(&z);
    fx_stop(&f);
}

/* Per-sample outcomes: conflicts, too old, future — 400 naming the series,
 * the rest stored. */
static void test_write_partial(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    const char *la[] = {"__name__", "m", "id", "a", NULL};
    const char *lb[] = {"__name__", "m", "id", "b", NULL};
    int64_t t0[2] = {f.t0, f.t0 + 1000};
    double v0[2] = {1, 2};
    ts_t s0 = {la, t0, v0, 2};
    resp_t r;
    assert_int_equal(post_rw1(f.port, &s0, 1, NULL, &r), 204);
    resp_free(&r);
    /* a: conflicting value at t0 (+ one new sample); b: fine. */
    int64_t t1[2] = {f.t0, f.t0 + 2000};
    double v1[2] = {99, 3};
    ts_t s1[2] = {{la, t1, v1, 2}, {lb, t1, v1, 2}};
    assert_int_equal(post_rw1(f.port, s1, 2, NULL, &r), 400);
    assert_non_null(strstr(r.body, "duplicate sample for timestamp"));
    assert_non_null(strstr(r.body, "id=\\\"a\\\""));
    assert_null(strstr(r.body, "id=\\\"b\\\""));
    resp_free(&r);
    tsdb_sample_t out[8];
    assert_int_equal(read_back(f.db, "m", "id", "a", out, 8, NULL), 3);
    assert_true(out[0].v == 1); /* the first value stays */
    assert_int_equal(read_back(f.db, "m", "id", "b", out, 8, NULL), 2);
    /* Older than the out-of-order window (1 h). */
    int64_t t2 = f.t0 - 2 * 3600 * 1000;
    double v2 = 5;
    ts_t s2 = {la, &t2, &v2, 1};
    assert_int_equal(post_rw1(f.port, &s2, 1, NULL, &r), 400);
    assert_non_null(strstr(r.body, "out of order sample"));
    resp_free(&r);
    /* Too far in the future (> 10 min): refused; the good sample stored. */
    int64_t t3[2] = {now_ms() + 3600 * 1000, f.t0 + 3000};
    double v3[2] = {7, 8};
    ts_t s3 = {lb, t3, v3, 2};
    assert_int_equal(post_rw1(f.port, &s3, 1, NULL, &r), 400);
    assert_non_null(strstr(r.body, "too far in the future"));
    resp_free(&r);
    assert_int_equal(read_back(f.db, "m", "id", "b", out, 8, NULL), 3);
    assert_int_equal(http(f.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    assert_non_null(
        strstr(r.body, "augur_samples_rejected_total{reason=\"duplicate_timestamp\"} 1\n"));
    assert_non_null(strstr(r.body, "augur_samples_rejected_total{reason=\"out_of_order\"} 1\n"));
    assert_non_null(
        strstr(r.body, "augur_samples_rejected_total{reason=\"too_far_in_future\"} 1\n"));
    resp_free(&r);
    fx_stop(&f);
}

/* ---- the malformed-request table ------------------------------------------ */

typedef enum {
    B_RAW,        /* body bytes as given (already "compressed" or garbage) */
    B_PB_SNAPPY,  /* body is protobuf: snappy it */
    B_PB_TRUNC,   /* protobuf cut in half, then snappy */
    B_SNAPPY_CUT, /* valid protobuf, snappy output cut */
} btype_t;

typedef struct {
    const char *name;
    const char *hdrs;
    btype_t bt;
    const uint8_t *raw;
    size_t rawlen;
    int status;
    const char *msg; /* substring of the answer */
} bad_t;

static void build_base(tbuf_t *pb, int64_t t0)
{
    static int64_t t[4];
    static double v[4] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++)
        t[i] = t0 + i * 1000;
    static const char *l[] = {"__name__", "base", "k", "v", NULL};
    ts_t s = {l, t, v, 4};
    rw1_series(pb, &s);
}

static void test_malformed_table(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 1u << 20, 0, 1);
    resp_t r;
    /* Data stored before: must stay intact throughout. */
    tbuf_t base = {0}, z = {0};
    build_base(&base, f.t0);
    snappy_of(&base, &z);
    assert_int_equal(http(f.port, "POST", "/api/v1/write", RW1_HDRS, z.p, z.len, &r), 204);
    resp_free(&r);

    /* Hand-made protobuf bodies. */
    static const uint8_t wrong_wt[] = {0x08, 0x01}; /* field 1 as varint */
    static const uint8_t long_varint[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01}; /* 11-byte length */
    static const uint8_t big_len[] = {0x0a, 0xff, 0xff, 0xff, 0x7f, 0x00};
    static const uint8_t garbage[] = {0x20, 0xad, 0xbe, 0xef, 0x00, 0x13, 0x37, 0x42, 0x99};
    /* Snappy block declaring 1 GiB (varint 0x40000000) then a literal. */
    static const uint8_t bomb[] = {0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x41};

    /* Label-level problems: one bad series next to a good one. */
    tbuf_t utf8 = {0}, dup = {0}, empty = {0}, many = {0};
    int64_t t = f.t0 + 60000;
    double v = 42;
    const char *good[] = {"__name__", "good", NULL};
    ts_t gs = {good, &t, &v, 1};
    const char *bad_utf8[] = {"__name__", "u", "x", "\xc3\x28", NULL};
    ts_t s1 = {bad_utf8, &t, &v, 1};
    rw1_series(&utf8, &s1);
    rw1_series(&utf8, &gs);
    const char *dupl[] = {"__name__", "d", "x", "1", "x", "2", NULL};
    ts_t s2 = {dupl, &t, &v, 1};
    rw1_series(&dup, &s2);
    const char *empt[] = {"__name__", "e", "", "1", NULL};
    ts_t s3 = {empt, &t, &v, 1};
    rw1_series(&empty, &s3);
    static const char *manyl[2 * 10000 + 3];
    static char names[10000][8];
    manyl[0] = "__name__";
    manyl[1] = "many";
    for (int i = 0; i < 9999; i++) {
        snprintf(names[i], sizeof names[i], "l%05d", i);
        manyl[2 + 2 * i] = names[i];
        manyl[3 + 2 * i] = "v";
    }
    manyl[2 + 2 * 9999] = NULL;
    ts_t s4 = {manyl, &t, &v, 1};
    rw1_series(&many, &s4);

    const bad_t table[] = {
        {"garbage snappy", RW1_HDRS, B_RAW, garbage, sizeof garbage, 400, "snappy"},
        {"truncated snappy", RW1_HDRS, B_SNAPPY_CUT, base.p, base.len, 400, "snappy"},
        {"declared length over limit", RW1_HDRS, B_RAW, bomb, sizeof bomb, 413, "larger"},
        {"truncated protobuf", RW1_HDRS, B_PB_TRUNC, base.p, base.len, 400, "protobuf"},
        {"wrong wire type", RW1_HDRS, B_PB_SNAPPY, wrong_wt, sizeof wrong_wt, 400, "wire type"},
        {"varint over 10 bytes", RW1_HDRS, B_PB_SNAPPY, long_varint, sizeof long_varint, 400,
         "protobuf"},
        {"oversized length prefix", RW1_HDRS, B_PB_SNAPPY, big_len, sizeof big_len, 400,
         "protobuf"},
        {"invalid UTF-8", RW1_HDRS, B_PB_SNAPPY, utf8.p, utf8.len, 400, "x=\\\"\\\\xc3("},
        {"duplicate labels", RW1_HDRS, B_PB_SNAPPY, dup.p, dup.len, 400, "duplicate label name"},
        {"empty label name", RW1_HDRS, B_PB_SNAPPY, empty.p, empty.len, 400, "empty label name"},
        {"10,000 labels", RW1_HDRS, B_PB_SNAPPY, many.p, many.len, 400, "too many labels"},
        {"wrong content type", "Content-Type: application/json\r\nContent-Encoding: snappy\r\n",
         B_PB_SNAPPY, base.p, base.len, 415, "Content-Type"},
        {"unknown proto",
         "Content-Type: application/x-protobuf;proto=foo.Bar\r\nContent-Encoding: snappy\r\n",
         B_PB_SNAPPY, base.p, base.len, 415, "foo.Bar"},
        {"no content encoding", "Content-Type: application/x-protobuf\r\n", B_PB_SNAPPY, base.p,
         base.len, 415, "snappy"},
        {"gzip content encoding",
         "Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n", B_PB_SNAPPY, base.p,
         base.len, 415, "gzip"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const bad_t *b = &table[i];
        tbuf_t pb = {0}, body = {0};
        tbuf_put(&pb, b->raw, b->rawlen);
        switch (b->bt) {
        case B_RAW:
            tbuf_put(&body, pb.p, pb.len);
            break;
        case B_PB_SNAPPY:
            snappy_of(&pb, &body);
            break;
        case B_PB_TRUNC:
            pb.len /= 2;
            snappy_of(&pb, &body);
            break;
        case B_SNAPPY_CUT:
            snappy_of(&pb, &body);
            body.len = body.len * 2 / 3;
            break;
        }
        int st = http(f.port, "POST", "/api/v1/write", b->hdrs, body.p, body.len, &r);
        if (st != b->status || !r.body || !strstr(r.body, b->msg))
            fail_msg("%s: got %d %s, want %d with '%s'", b->name, st, r.body ? r.body : "",
                     b->status, b->msg);
        assert_non_null(strstr(r.body, "\"status\":\"error\""));
        assert_true(utf8_ok(r.body, r.blen)); /* the JSON stays valid */
        resp_free(&r);
        tbuf_free(&pb);
        tbuf_free(&body);
        expect_healthy(f.port);
        tsdb_sample_t out[8];
        size_t ns;
        assert_int_equal(read_back(f.db, "base", NULL, NULL, out, 8, &ns), 4);
        assert_int_equal(ns, 1);
    }
    /* The valid series next to the invalid UTF-8 one was stored. */
    tsdb_sample_t out[4];
    assert_int_equal(read_back(f.db, "good", NULL, NULL, out, 4, NULL), 1);
    assert_int_equal(read_back(f.db, "u", NULL, NULL, out, 4, NULL), 0);

    /* A 100 MB body: refused from its declared length before it is read. */
    int fd = tcp_connect(f.port);
    const char *h = "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                    "Content-Length: 104857600\r\n\r\n";
    send_all(fd, h, strlen(h));
    char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    send_all(fd, chunk, sizeof chunk);
    read_resp(fd, &r);
    close(fd);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "over the limit"));
    resp_free(&r);
    /* Chunked (no declared length) past the 1 MiB cap: read, dropped, 413. */
    fd = tcp_connect(f.port);
    h = "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    send_all(fd, h, strlen(h));
    for (int i = 0; i < 40; i++) {
        char ch[16];
        snprintf(ch, sizeof ch, "%zx\r\n", sizeof chunk);
        send_all(fd, ch, strlen(ch));
        send_all(fd, chunk, sizeof chunk);
        send_all(fd, "\r\n", 2);
    }
    send_all(fd, "0\r\n\r\n", 5);
    read_resp(fd, &r);
    close(fd);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    assert_non_null(strstr(r.body, "augur_samples_rejected_total{reason=\"invalid_utf8\"} 1\n"));
    assert_non_null(
        strstr(r.body, "augur_samples_rejected_total{reason=\"duplicate_label_name\"} 1\n"));
    assert_non_null(strstr(r.body, "augur_samples_rejected_total{reason=\"too_many_labels\"} 1\n"));
    assert_non_null(strstr(r.body, "augur_http_inflight_body_bytes 0\n"));
    assert_non_null(strstr(r.body, "# TYPE augur_storage_vacuums_total counter\naugur_storage_vacuums_total 0\n"));
    resp_free(&r);
    expect_healthy(f.port);
    tbuf_free(&utf8);
    tbuf_free(&dup);
    tbuf_free(&empty);
    tbuf_free(&many);
    tbuf_free(&base);
    tbuf_free(&z);
    fx_stop(&f);
}

/* ---- slow clients, overload -------------------------------------------- */

static void test_slowloris(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1); /* connection timeout 2 s */
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = tcp_connect(f.port);
        assert_true(fds[i] >= 0);
        send_all(fds[i], "POST /api/v1/write HTTP/1.1\r\nHost: x\r\n", 39);
    }
    /* The server keeps serving while they dribble. */
    expect_healthy(f.port);
    uint64_t t0 = api_now_ns();
    /* Each is cut off after the timeout, without an answer. */
    for (int i = 0; i < 8; i++) {
        char b[256];
        ssize_t n = recv(fds[i], b, sizeof b, 0);
        assert_true(n <= 0 || !strncmp(b, "HTTP/1.1 408", 12));
        close(fds[i]);
    }
    double secs = (double)(api_now_ns() - t0) / 1e9;
    assert_true(secs < 10);
    expect_healthy(f.port);
    /* A body trickled one byte every 0.5 s never hits the idle timeout but
     * is cut at the request timeout (3 s). */
    int fd = tcp_connect(f.port);
    const char *h = "POST /api/v1/write HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                    "Content-Length: 1000\r\n\r\n";
    send_all(fd, h, strlen(h));
    t0 = api_now_ns();
    int closed = 0;
    for (int i = 0; i < 40 && !closed; i++) {
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1) closed = 1;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 0) == 1) {
            char b[64];
            if (recv(fd, b, sizeof b, MSG_DONTWAIT) <= 0) closed = 1;
        }
    }
    close(fd);
    secs = (double)(api_now_ns() - t0) / 1e9;
    assert_true(closed);
    assert_true(secs >= 2.5 && secs < 8);
    expect_healthy(f.port);
    fx_stop(&f);
}

static void test_overload(void **state)
{
    (void)state;
    fx_t f;
    /* Budget for one 1 MiB body at a time. */
    fx_start(&f, NULL, NULL, 1u << 20, 1u << 20, 1);
    int hold = tcp_connect(f.port);
    const char *h = "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                    "Content-Length: 1048000\r\n\r\n";
    send_all(hold, h, strlen(h));
    send_all(hold, "x", 1);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    /* The budget is held: the next body is refused with 503 + Retry-After. */
    resp_t r;
    char body[1000];
    memset(body, 0, sizeof body);
    assert_int_equal(http(f.port, "POST", "/api/v1/write", RW1_HDRS, body, sizeof body, &r), 503);
    assert_true(header_has(&r, "Retry-After:"));
    resp_free(&r);
    close(hold);
    nanosleep(&ts, NULL);
    /* Released when the holder went away. */
    tbuf_t pb = {0}, z = {0};
    build_base(&pb, f.t0);
    snappy_of(&pb, &z);
    assert_int_equal(http(f.port, "POST", "/api/v1/write", RW1_HDRS, z.p, z.len, &r), 204);
    resp_free(&r);
    tbuf_free(&pb);
    tbuf_free(&z);
    fx_stop(&f);
}

typedef struct {
    api_server_t *srv;
    int rc;
} shut_t;

static void *shutdown_thread(void *arg)
{
    shut_t *st = arg;
    st->rc = api_server_shutdown(st->srv, 10000);
    return NULL;
}

/* A request in flight when shutdown begins is finished and answered; new
 * connections are refused. */
static void test_graceful_inflight(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    tbuf_t pb = {0}, z = {0};
    build_base(&pb, f.t0);
    snappy_of(&pb, &z);
    int fd = tcp_connect(f.port);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     z.len);
    send_all(fd, head, (size_t)n);
    send_all(fd, z.p, z.len / 2);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    shut_t st = {f.srv, -99};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, shutdown_thread, &st), 0);
    nanosleep(&ts, NULL);
    assert_int_equal(st.rc, -99);         /* still waiting for our request */
    assert_true(tcp_connect(f.port) < 0); /* no longer accepting */
    send_all(fd, z.p + z.len / 2, z.len - z.len / 2);
    resp_t r;
    read_resp(fd, &r);
    close(fd);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    pthread_join(th, NULL);
    assert_int_equal(st.rc, 0);
    tsdb_sample_t out[8];
    assert_int_equal(read_back(f.db, "base", NULL, NULL, out, 8, NULL), 4);
    api_server_destroy(f.srv);
    assert_int_equal(tsdb_close(f.db), 0);
    tu_rmrf(f.dir);
    tbuf_free(&pb);
    tbuf_free(&z);
}

/* ---- auth ------------------------------------------------------------- */

static void test_auth(void **state)
{
    (void)state;
    const char *cfg = "# test credentials\n"
                      "write bearer w-token-123\n"
                      "read  basic  grafana:s3cret\n"
                      "admin bearer adm-token\n";
    fx_t f;
    fx_start(&f, NULL, cfg, 0, 0, 1);
    tbuf_t pb = {0}, z = {0};
    build_base(&pb, f.t0);
    snappy_of(&pb, &z);
    resp_t r;
    assert_int_equal(http(f.port, "POST", "/api/v1/write", RW1_HDRS, z.p, z.len, &r), 401);
    assert_true(header_has(&r, "WWW-Authenticate:"));
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/write",
                          RW1_HDRS "Authorization: Bearer w-token-124\r\n", z.p, z.len, &r),
                     401);
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/write",
                          RW1_HDRS "Authorization: Bearer w-token-12\r\n", z.p, z.len, &r),
                     401);
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/write",
                          RW1_HDRS "Authorization: Bearer w-token-123\r\n", z.p, z.len, &r),
                     204);
    resp_free(&r);
    /* The admin credential grants write too. */
    assert_int_equal(http(f.port, "POST", "/api/v1/write",
                          RW1_HDRS "Authorization: bearer adm-token\r\n", z.p, z.len, &r),
                     204);
    resp_free(&r);
    /* Reads: basic auth "grafana:s3cret" = Z3JhZmFuYTpzM2NyZXQ=. */
    assert_int_equal(http(f.port, "GET", "/metrics", NULL, NULL, 0, &r), 401);
    resp_free(&r);
    assert_int_equal(
        http(f.port, "GET", "/metrics", "Authorization: Bearer w-token-123\r\n", NULL, 0, &r), 401);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/metrics",
                          "Authorization: Basic Z3JhZmFuYTpzM2NyZXQ=\r\n", NULL, 0, &r),
                     200);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/metrics",
                          "Authorization: Basic Z3JhZmFuYTpzM2NyZXU=\r\n", NULL, 0, &r),
                     401);
    resp_free(&r);
    /* The basic credential does not open the write endpoint. */
    assert_int_equal(http(f.port, "POST", "/api/v1/write",
                          RW1_HDRS "Authorization: Basic Z3JhZmFuYTpzM2NyZXQ=\r\n", z.p, z.len, &r),
                     401);
    resp_free(&r);
    /* Admin. */
    assert_int_equal(http(f.port, "POST", "/internal/force_flush",
                          "Authorization: Bearer w-token-123\r\n", NULL, 0, &r),
                     401);
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/internal/force_flush",
                          "Authorization: Bearer adm-token\r\n", NULL, 0, &r),
                     204);
    resp_free(&r);
    /* Probes are always open. */
    expect_healthy(f.port);
    assert_int_equal(http(f.port, "GET", "/-/ready", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    tbuf_free(&pb);
    tbuf_free(&z);
    fx_stop(&f);
}

static void test_admin_needs_loopback(void **state)
{
    (void)state;
    fx_t f;
    /* All interfaces, no admin credential: admin refused, the rest open. */
    fx_start(&f, "0.0.0.0:0", NULL, 0, 0, 1);
    assert_false(api_server_loopback_only(f.srv));
    resp_t r;
    assert_int_equal(http(f.port, "POST", "/internal/force_flush", NULL, NULL, 0, &r), 403);
    assert_non_null(strstr(r.body, "admin"));
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/admin/tsdb/snapshot", NULL, NULL, 0, &r), 403);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    fx_stop(&f);
}

static void test_auth_parse(void **state)
{
    (void)state;
    api_auth_t *a;
    char err[128];
    assert_int_equal(api_auth_parse("", 0, &a, err, sizeof err), 0);
    assert_int_equal(api_auth_count(a), 0);
    api_auth_destroy(a);
    const char *bad[] = {"root bearer x\n", "read digest x\n", "read bearer\n",
                         "read basic nocolon\n", "read bearer a b\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(api_auth_parse(bad[i], strlen(bad[i]), &a, err, sizeof err), -1);
        assert_non_null(strstr(err, "line 1"));
    }
    const char *ok = "\n  # c\r\nread bearer t1 # trailing comment\r\nadmin basic u:p:q\n";
    assert_int_equal(api_auth_parse(ok, strlen(ok), &a, err, sizeof err), 0);
    assert_int_equal(api_auth_count(a), 2);
    assert_int_equal(api_auth_roles_configured(a), API_ROLE_READ | API_ROLE_ADMIN);
    assert_int_equal(api_auth_check(a, "Bearer t1", 9), API_ROLE_READ);
    assert_int_equal(api_auth_check(a, "Bearer t1  ", 11), API_ROLE_READ);
    assert_int_equal(api_auth_check(a, "Bearer t", 8), 0);
    assert_int_equal(api_auth_check(a, "Bearer", 6), 0);
    assert_int_equal(api_auth_check(a, "Token t1", 8), 0);
    /* "u:p:q" -> dTpwOnE= */
    assert_int_equal(api_auth_check(a, "Basic dTpwOnE=", 14),
                     API_ROLE_READ | API_ROLE_WRITE | API_ROLE_ADMIN);
    assert_int_equal(api_auth_check(a, "Basic dTpwOnE", 13),
                     API_ROLE_READ | API_ROLE_WRITE | API_ROLE_ADMIN);
    assert_int_equal(api_auth_check(a, "Basic !!!!", 10), 0);
    assert_int_equal(api_auth_check(a, NULL, 0), 0);
    api_auth_destroy(a);
}

/* ---- text import -------------------------------------------------------- */

static void test_import(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    char body[1024];
    snprintf(body, sizeof body,
             "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n"
             "# TYPE node_cpu_seconds_total counter\n"
             "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.5 %" PRId64 "\n"
             "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 42\n"
             "broken{ 1\n",
             f.t0);
    resp_t r;
    int64_t before = now_ms();
    assert_int_equal(http(f.port, "POST",
                          "/api/v1/import/prometheus?extra_label=job=push&extra_label=dc=eu",
                          "Content-Type: text/plain; version=0.0.4\r\n", body, strlen(body), &r),
                     400);
    assert_non_null(strstr(r.body, "line 5"));
    assert_non_null(strstr(r.body, "2 stored"));
    resp_free(&r);
    int64_t after = now_ms();
    tsdb_sample_t out[4];
    size_t ns;
    assert_int_equal(read_back(f.db, "node_cpu_seconds_total", "job", "push", out, 4, &ns), 2);
    assert_int_equal(ns, 2);
    assert_int_equal(read_back(f.db, "node_cpu_seconds_total", "mode", "idle", out, 4, NULL), 1);
    assert_int_equal(out[0].t, f.t0);
    assert_true(out[0].v == 12345.5);
    assert_int_equal(read_back(f.db, "node_cpu_seconds_total", "mode", "user", out, 4, NULL), 1);
    assert_true(out[0].t >= before && out[0].t <= after); /* server time */
    assert_int_equal(read_back(f.db, "node_cpu_seconds_total", "dc", "eu", out, 4, NULL), 2);
    /* OpenMetrics by Content-Type: timestamps in seconds, # EOF. */
    snprintf(body, sizeof body,
             "# TYPE disk_temp_celsius gauge\n# UNIT disk_temp_celsius celsius\n"
             "disk_temp_celsius{dev=\"sda\"} 38 %" PRId64 ".5\n# EOF\n",
             f.t0 / 1000);
    assert_int_equal(http(f.port, "POST", "/api/v1/import/prometheus",
                          "Content-Type: application/openmetrics-text; version=1.0.0\r\n", body,
                          strlen(body), &r),
                     204);

    resp_free(&r);
    assert_int_equal(read_back(f.db, "disk_temp_celsius", NULL, NULL, out, 4, NULL), 1);
    assert_int_equal(out[0].t, f.t0 + 500);
    /* Bad extra label, compressed body. */
    assert_int_equal(
        http(f.port, "POST", "/api/v1/import/prometheus?extra_label=1bad=x", NULL, "a 1\n", 4, &r),
        400);
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/import/prometheus", "Content-Encoding: gzip\r\n",
                          "a 1\n", 4, &r),
                     415);
    resp_free(&r);
    assert_int_equal(http(f.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    assert_non_null(strstr(r.body, "augur_metadata_received_total 2\n"));
    assert_non_null(strstr(r.body, "augur_samples_rejected_total{reason=\"parse_error\"} 1\n"));
    resp_free(&r);
    fx_stop(&f);
}

/* ---- admin -------------------------------------------------------------- */

static void test_admin(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, NULL, NULL, 0, 0, 1);
    resp_t r;
    int64_t t = f.t0;
    double v = 1;
    const char *a[] = {"__name__", "x", "job", "a", NULL};
    const char *b[] = {"__name__", "x", "job", "b", NULL};
    ts_t s[2] = {{a, &t, &v, 1}, {b, &t, &v, 1}};
    assert_int_equal(post_rw1(f.port, s, 2, NULL, &r), 204);
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/internal/force_flush", NULL, NULL, 0, &r), 204);
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/admin/tsdb/delete_series", NULL, NULL, 0, &r),
                     400);
    assert_non_null(strstr(r.body, "match[]"));
    resp_free(&r);
    assert_int_equal(http(f.port, "POST", "/api/v1/admin/tsdb/delete_series?match[]=x%7Bjob%3D",
                          NULL, NULL, 0, &r),
                     400);
    resp_free(&r);
    const char *form = "match%5B%5D=x%7Bjob%3D%22a%22%7D";
    assert_int_equal(http(f.port, "POST", "/api/v1/admin/tsdb/delete_series",
                          "Content-Type: application/x-www-form-urlencoded\r\n", form, strlen(form),
                          &r),
                     204);
    resp_free(&r);
    tsdb_sample_t out[4];
    size_t ns;
    read_back(f.db, "x", NULL, NULL, out, 4, &ns);
    assert_int_equal(ns, 1);
    assert_int_equal(read_back(f.db, "x", "job", "b", out, 4, NULL), 1);
    assert_int_equal(http(f.port, "POST", "/api/v1/admin/tsdb/snapshot", NULL, NULL, 0, &r), 200);
    const char *nm = strstr(r.body, "\"name\":\"");
    assert_non_null(nm);
    char path[600], name[80];
    assert_int_equal(sscanf(nm + 8, "%79[^\"]", name), 1);
    snprintf(path, sizeof path, "%s/snapshots/%s/data.mdb", f.dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    resp_free(&r);
    fx_stop(&f);
}

static void test_selector_parse(void **state)
{
    (void)state;
    tbuf_t arena = {0};
    assert_int_equal(tbuf_reserve(&arena, 4096), 0);
    tsdb_matcher_t m[8];
    char err[128];
    const char *s = "up{job=~\"no.*\", a!=\"x\\\"y\", b!~'z', c=`r\\aw`,}";
    int n = api_selector_parse(s, strlen(s), m, 8, &arena, err, sizeof err);
    assert_int_equal(n, 5);
    assert_string_equal(m[0].name, "__name__");
    assert_string_equal(m[0].value, "up");
    assert_int_equal(m[1].type, TSDB_MATCH_RE);
    assert_string_equal(m[2].value, "x\"y");
    assert_int_equal(m[2].type, TSDB_MATCH_NE);
    assert_int_equal(m[3].type, TSDB_MATCH_NRE);
    assert_string_equal(m[4].value, "r\\aw");
    const char *bad[] = {"", "{}", "up{", "up{a}", "up{a=b}", "up{a=\"b}", "up}", "{a=\"b\"} x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        arena.len = 0;
        assert_int_equal(api_selector_parse(bad[i], strlen(bad[i]), m, 8, &arena, err, sizeof err),
                         -1);
    }
    tbuf_free(&arena);
}

static void test_flag_values(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(api_duration_parse("15d", &ms), 0);
    assert_int_equal(ms, 15LL * 86400000);
    assert_int_equal(api_duration_parse("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(api_duration_parse("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(api_duration_parse("1m30s500ms", &ms), 0);
    assert_int_equal(ms, 90500);
    assert_int_equal(api_duration_parse("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(api_duration_parse("2w1y", &ms), -1);
    assert_int_equal(api_duration_parse("10", &ms), -1);
    assert_int_equal(api_duration_parse("1.5h", &ms), -1);
    assert_int_equal(api_duration_parse("", &ms), -1);
    assert_int_equal(api_duration_parse("99999999999999999999y", &ms), -1);
    uint64_t b;
    assert_int_equal(api_bytes_parse("32MiB", &b), 0);
    assert_int_equal(b, 32u << 20);
    assert_int_equal(api_bytes_parse("512k", &b), 0);
    assert_int_equal(b, 512u << 10);
    assert_int_equal(api_bytes_parse("100", &b), 0);
    assert_int_equal(b, 100);
    assert_int_equal(api_bytes_parse("1.5G", &b), -1);
    assert_int_equal(api_bytes_parse("MiB", &b), -1);
}

/* ---- the real binary ---------------------------------------------------- */

typedef struct {
    pid_t pid;
    unsigned port;
    char log[300];
} proc_t;

/* Servers this test started: killed by the group teardown, so a failed test
 * leaves no process behind. */
static pid_t spawned[16];

static void spawned_track(pid_t pid)
{
    for (size_t i = 0; i < sizeof spawned / sizeof spawned[0]; i++)
        if (!spawned[i] || waitpid(spawned[i], NULL, WNOHANG) != 0) {
            spawned[i] = pid;
            return;
        }
}

static int kill_spawned(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof spawned / sizeof spawned[0]; i++)
        if (spawned[i] && waitpid(spawned[i], NULL, WNOHANG) == 0) {
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], NULL, 0);
        }
    return 0;
}

static int spawn_serve(proc_t *p, const char *dir, const char *extra)
{
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) return -1;
    snprintf(p->log, sizeof p->log, "%s.log", dir);
    /* a restart appends to the same log: read only what this process writes */
    struct stat lst;
    long from = stat(p->log, &lst) == 0 ? (long)lst.st_size : 0;
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1); /* nothing on ctest's pipe: an orphan must not hold it open */
        dup2(fd, 2);
        char sp[400];
        snprintf(sp, sizeof sp, "--storage.path=%s", dir);
        execl(bin, bin, "serve", "--web.listen-address=127.0.0.1:0", sp, "--storage.retention=0",
              extra ? extra : "--log.level=info", (char *)NULL);
        _exit(127);
    }
    /* Wait for the newest "port=" and readiness. */
    p->port = 0;
    for (int i = 0; i < 200 && !p->port; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        FILE *f = fopen(p->log, "r");
        if (!f) continue;
        if (fseek(f, from, SEEK_SET)) {
            fclose(f);
            continue;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            char *q = strstr(line, " port=");
            if (q && strstr(line, "msg=listening")) p->port = (unsigned)atoi(q + 6);
        }
        fclose(f);
        if (p->port && waitpid(p->pid, NULL, WNOHANG) != 0) p->port = 0;
    }
    assert_true(p->port > 0);
    spawned_track(p->pid);
    for (int i = 0; i < 200; i++) {
        int cfd = tcp_connect(p->port);
        if (cfd < 0) { /* not accepting (yet): wait, never assert */
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        close(cfd);
        resp_t r;
        int st = http(p->port, "GET", "/-/ready", NULL, NULL, 0, &r);
        resp_free(&r);
        if (st == 200) return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void test_binary_restart(void **state)
{
    (void)state;
    if (!getenv("AUGUR_BIN")) skip();
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    proc_t p;
    assert_int_equal(spawn_serve(&p, dir, NULL), 0);
    int64_t t0 = (now_ms() - 20 * 60 * 1000) / 1000 * 1000;
    enum { N = 50 };
    static int64_t t[N];
    static double v[N];
    resp_t r;
    /* 50 acknowledged writes, then SIGKILL. */
    for (int i = 0; i < N; i++) {
        t[i] = t0 + i * 1000;
        v[i] = i * 1.25;
        const char *l[] = {"__name__", "k9", "job", "x", NULL};
        ts_t s = {l, &t[i], &v[i], 1};
        assert_int_equal(post_rw1(p.port, &s, 1, NULL, &r), 204);
        resp_free(&r);
    }
    kill(p.pid, SIGKILL);
    waitpid(p.pid, NULL, 0);
    /* Restart on the same directory, write more, stop gracefully. */
    assert_int_equal(spawn_serve(&p, dir, "--log.level=debug"), 0);
    const char *l[] = {"__name__", "k9", "job", "x", NULL};
    ts_t all = {l, t, v, N};
    assert_int_equal(post_rw1(p.port, &all, 1, NULL, &r), 204); /* all duplicates now */
    resp_free(&r);
    int64_t t2 = t0 + N * 1000;
    double v2 = -1;
    ts_t s2 = {l, &t2, &v2, 1};
    assert_int_equal(post_rw1(p.port, &s2, 1, NULL, &r), 204);
    resp_free(&r);
    kill(p.pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(p.pid, &status, 0), p.pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Everything acknowledged is in the store, once. */
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    tsdb_t *db;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    tsdb_sample_t out[N + 4];
    assert_int_equal(read_back(db, "k9", NULL, NULL, out, N + 4, NULL), N + 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(out[i].t, t[i]);
        assert_true(out[i].v == v[i]);
    }
    assert_true(out[N].v == -1);
    assert_int_equal(tsdb_close(db), 0);
    /* The logs are logfmt and include the access log at debug. */
    FILE *f = fopen(p.log, "r");
    assert_non_null(f);
    char line[2048];
    int access = 0, stopped = 0;
    while (fgets(line, sizeof line, f)) {
        assert_int_equal(strncmp(line, "ts=", 3), 0);
        assert_non_null(strstr(line, " level="));
        assert_non_null(strstr(line, " msg="));
        if (strstr(line, "msg=request ") && strstr(line, "handler=write code=204")) access++;
        if (strstr(line, "msg=stopped")) stopped++;
    }
    fclose(f);
    assert_true(access >= 2);
    assert_int_equal(stopped, 1);
    unlink(p.log);
    tu_rmrf(dir);
}

/* SIGTERM waits for an in-flight request; a second signal exits at once
 * with status 1. */
static void test_binary_second_signal(void **state)
{
    (void)state;
    if (!getenv("AUGUR_BIN")) skip();
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    proc_t p;
    assert_int_equal(spawn_serve(&p, dir, "--web.shutdown-timeout=60s"), 0);
    int fd = tcp_connect(p.port);
    const char *h = "POST /api/v1/write HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                    "Content-Length: 1000\r\n\r\nabc";
    send_all(fd, h, strlen(h));
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    kill(p.pid, SIGTERM);
    nanosleep(&ts, NULL);
    nanosleep(&ts, NULL);
    assert_int_equal(waitpid(p.pid, NULL, WNOHANG), 0); /* still waiting */
    uint64_t t0 = api_now_ns();
    kill(p.pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(p.pid, &status, 0), p.pid);
    assert_true((api_now_ns() - t0) / 1000000 < 3000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    close(fd);
    unlink(p.log);
    tu_rmrf(dir);
}

static void test_binary_cli(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) skip();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "'%s' serve --help | grep -q -- --web.listen-address", bin);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s' serve --no-such-flag 2>/dev/null", bin);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "'%s' serve --storage.retention=5x 2>/dev/null", bin);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "'%s' serve --web.listen-address=nonsense 2>/dev/null", bin);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    api_log_set_level(API_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_values),
        cmocka_unit_test(test_auth_parse),
        cmocka_unit_test(test_selector_parse),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_not_ready),
        cmocka_unit_test(test_write_v1),
        cmocka_unit_test(test_write_v2),
        cmocka_unit_test(test_write_partial),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_overload),
        cmocka_unit_test(test_graceful_inflight),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_admin_needs_loopback),
        cmocka_unit_test(test_import),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_binary_cli),
        cmocka_unit_test(test_binary_restart),
        cmocka_unit_test(test_binary_second_signal),
    };
    return cmocka_run_group_tests(tests, NULL, kill_spawned);
}
