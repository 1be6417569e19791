/*
 * cmd_import.c — `augur import <format> [--store DIR | --url URL] FILE…`:
 * stream telemetry files into a store directory (offline) or into a running
 * augur by remote write 1.0.
 *
 *   backblaze      Backblaze drive-stats CSV (ingest/backblaze.h)
 *   smartctl-json  `smartctl -j -a /dev/X` output (ingest/smartctl.h)
 *   nvidia-smi     `nvidia-smi --query-gpu=… --format=csv` (ingest/nvsmi.h)
 *
 * CSV files are read in 1 MiB chunks and fed line by line: memory does not
 * depend on the file size. Problems name FILE:LINE. The final report says
 * exactly how many rows and samples were stored, already present, refused,
 * or not sent; the exit status is 0 only when every row was imported.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/backblaze.h"
#include "ingest/import_batch.h"
#include "ingest/nvsmi.h"
#include "ingest/rw_encode.h"
#include "ingest/smartctl.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

#define CHUNK ((size_t)1 << 20)
#define MAX_LINE ((size_t)16 << 20)
#define MAX_JSON ((size_t)64 << 20)

static void import_usage(FILE *f)
{
    fputs("usage: augur import <format> (--store DIR | --url URL) [options] FILE...\n"
          "\n"
          "Stream telemetry files into a store directory (offline: no server may be running\n"
          "on it) or into a running augur (remote write to URL/api/v1/write). FILE '-' is stdin.\n"
          "\n"
          "formats:\n"
          "  backblaze       Backblaze drive-stats CSV (any year's columns; one sample per row\n"
          "                  at 00:00 UTC; failure=1 rows become failure events)\n"
          "  smartctl-json   output of `smartctl -j -a /dev/X` (smartmontools >= 7): ATA\n"
          "                  attributes, NVMe health log; one file per device\n"
          "  nvidia-smi      output of `nvidia-smi --query-gpu=timestamp,index,uuid,name,...\n"
          "                  --format=csv` (with its header), mapped to dcgm-exporter names\n"
          "\n"
          "options:\n"
          "  --store DIR          write into this store directory (created if missing)\n"
          "  --url URL            send to a running augur, e.g. http://127.0.0.1:9201\n"
          "  --bearer-token TOKEN Authorization: Bearer TOKEN for --url (write role)\n"
          "  --basic-auth U:P     Authorization: Basic for --url\n"
          "  --instance NAME      instance label: backblaze rows without datacenter/vault/pod\n"
          "                       columns (default: the serial number); smartctl-json and\n"
          "                       nvidia-smi (default: this machine's host name)\n"
          "  --time T             smartctl-json: sample time when the JSON has no local_time\n"
          "                       (RFC 3339 or Unix seconds)\n"
          "  --skip-normalized    backblaze: do not import smart_N_normalized columns\n"
          "  --batch N            samples per append/request (default 65536)\n"
          "  --max-errors N       print at most N row errors (default 20; all are counted)\n"
          "  --memory-limit N     --store: cap the store's memory at N bytes (suffix K, M, G,\n"
          "                       T: powers of 1024; 0 = no cap; default half the physical\n"
          "                       memory). Past it the in-memory head is sealed in pieces,\n"
          "                       as often as needed (slower, partitions merged later).\n"
          "                       The per-series part (~0.3 KiB a series) is not capped.\n"
          "  --no-progress        no progress bar (it is drawn only when stderr is a TTY)\n"
          "  --quiet              no report\n"
          "\n"
          "--store writes no WAL: samples are stored when a flush seals them, and the\n"
          "report comes after the last one. If an import is killed, run it again with the\n"
          "same files: what was already stored counts as duplicates, the rest is added.\n"
          "\n"
          "Exit status: 0 every row imported; 1 some rows or samples were refused (the report\n"
          "says which); 2 usage or I/O error, or the import stopped early.\n",
          f);
}

/* ---- sinks ------------------------------------------------------------------ */

typedef struct {
    tsdb_t *db;
} store_sink_t;

typedef struct {
    char host[256];
    char port[16];
    char path[512];
    char auth[512]; /* full header line or "" */
    tbuf_t pb, z, resp;
    char err[512];
    uint64_t requests;
} url_sink_t;

static int url_parse(url_sink_t *u, const char *url)
{
    if (strncmp(url, "http://", 7)) return -1;
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char hp[256];
    if (!hl || hl >= sizeof hp) return -1;
    memcpy(hp, h, hl);
    hp[hl] = 0;
    const char *colon = strrchr(hp, ':');
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (!rb) return -1;
        *rb = 0;
        snprintf(u->host, sizeof u->host, "%.200s", hp + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        snprintf(u->host, sizeof u->host, "%.*s", (int)(colon ? (size_t)(colon - hp) : hl), hp);
    }
    snprintf(u->port, sizeof u->port, "%s", colon ? colon + 1 : "80");
    const char *p = slash && strcmp(slash, "/") ? slash : "";
    /* A bare server URL means its remote-write endpoint. */
    if (!*p || !strstr(p, "/api/v1/write"))
        snprintf(u->path, sizeof u->path, "%s/api/v1/write",
                 *p && p[strlen(p) - 1] == '/' ? "" : p);
    else
        snprintf(u->path, sizeof u->path, "%s", p);
    return u->host[0] ? 0 : -1;
}

static int url_connect(url_sink_t *u)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &res) || !res) {
        snprintf(u->err, sizeof u->err, "cannot resolve %s:%s", u->host, u->port);
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {120, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(u->err, sizeof u->err, "cannot connect to %s:%s: %s", u->host, u->port,
                 strerror(errno));
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* POST one body; returns the HTTP status (the body in u->resp), or -1. */
static int url_post(url_sink_t *u, const char *ctype, const char *extra, const void *body,
                    size_t blen)
{
    int fd = url_connect(u);
    if (fd < 0) return -1;
    char head[2048];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
                      "User-Agent: augur-import/" AUGUR_VERSION "\r\nContent-Type: %s\r\n%s%s"
                      "Content-Length: %zu\r\n\r\n",
                      u->path, u->host, u->port, ctype, extra, u->auth, blen);
    if (send_all(fd, head, (size_t)hl) || send_all(fd, body, blen)) {
        snprintf(u->err, sizeof u->err, "sending to %s:%s failed: %s", u->host, u->port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    u->resp.len = 0;
    char buf[16384];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (u->resp.len < (1u << 20) && tbuf_put(&u->resp, buf, (size_t)r)) break;
    }
    close(fd);
    if (tbuf_put(&u->resp, "", 1)) return -1;
    int status = -1;
    if (sscanf((const char *)u->resp.p, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(u->err, sizeof u->err, "no HTTP answer from %s:%s", u->host, u->port);
        return -1;
    }
    return status;
}

/* Counts from a 400 body: "N samples refused, S stored, D already present". */
static void parse_counts(const char *body, tsdb_append_result_t *res, size_t n)
{
    unsigned long long refused, stored, dup;
    const char *p = strstr(body, "\r\n\r\n");
    p = p ? strstr(p, "\"error\":\"") : NULL;
    if (p && sscanf(p + 9, "%llu samples refused, %llu stored, %llu already present", &refused,
                    &stored, &dup) == 3) {
        res->stored = stored;
        res->duplicate = dup;
        res->conflict = refused;
    } else {
        res->conflict = n;
    }
}

static int url_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    url_sink_t *u = ctx;
    u->pb.len = u->z.len = 0;
    size_t bound = rw_encode_v1_bound(s, n);
    if (tbuf_reserve(&u->pb, bound)) return TSDB_ENOMEM;
    size_t len;
    if (rw_encode_v1(s, n, u->pb.p, u->pb.cap, &len)) return TSDB_EINVAL;
    u->pb.len = len;
    if (tbuf_reserve(&u->z, rw_snappy_bound(len))) return TSDB_ENOMEM;
    size_t zl;
    if (rw_snappy_compress(u->pb.p, len, u->z.p, u->z.cap, &zl)) return TSDB_EINVAL;
    u->requests++;
    for (int attempt = 0;; attempt++) {
        int st = url_post(
            u, "application/x-protobuf",
            "Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n", u->z.p, zl);
        if (st == 204 || st == 200) {
            res->stored = n; /* 1.0 does not tell stored from already present */
            return 0;
        }
        if (st == 400) {
            parse_counts((const char *)u->resp.p, res, n);
            return 0;
        }
        /* Overload: back off (1+2+4+8 s); unreachable: two quick retries. */
        if (((st == 503 || st == 429) && attempt < 4) || (st < 0 && attempt < 2)) {
            struct timespec ts = {1 << attempt, 0};
            nanosleep(&ts, NULL);
            continue;
        }
        if (st > 0) {
            const char *b = strstr((const char *)u->resp.p, "\r\n\r\n");
            snprintf(u->err, sizeof u->err, "server answered %d: %.300s", st, b ? b + 4 : "");
        }
        return TSDB_EIO;
    }
}

/* ---- reporting ------------------------------------------------------------- */

typedef struct {
    const char *file;
    uint64_t errors, max_errors;
    int tty, progress, quiet;
    off_t size, done;
    uint64_t rows;
    struct timespec t0, last;
} ui_t;

static void on_error(void *ctx, uint64_t line, const char *msg)
{
    ui_t *ui = ctx;
    ui->errors++;
    if (ui->errors <= ui->max_errors) {
        if (ui->progress) fputs("\r\033[K", stderr);
        fprintf(stderr, "%s:%" PRIu64 ": %s\n", ui->file, line, msg);
    } else if (ui->errors == ui->max_errors + 1) {
        fprintf(stderr, "%s: more errors follow (counted, not printed; see --max-errors)\n",
                ui->file);
    }
}

static double secs_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

static void progress(ui_t *ui, int final)
{
    if (!ui->progress) return;
    if (!final && secs_since(&ui->last) < 0.2) return;
    clock_gettime(CLOCK_MONOTONIC, &ui->last);
    double el = secs_since(&ui->t0);
    char bar[32];
    int w = 24, fill = ui->size > 0 ? (int)((double)ui->done / (double)ui->size * w) : 0;
    if (fill > w) fill = w;
    for (int i = 0; i < w; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r\033[K%.40s [%s] %5.1f%% %" PRIu64 " rows %.0f rows/s", ui->file, bar,
            ui->size > 0 ? 100.0 * (double)ui->done / (double)ui->size : 0.0, ui->rows,
            el > 0 ? (double)ui->rows / el : 0.0);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

/* ---- line feeding ------------------------------------------------------------ */

typedef int (*line_fn)(void *p, const char *line, size_t len);

/* Feed every line of fd to fn. Returns 0, -1 on a read error, -2 on a line
 * over MAX_LINE, or fn's error. */
static int feed_lines(int fd, line_fn fn, void *p, ui_t *ui, uint64_t (*rows)(void *p))
{
    tbuf_t b = {0};
    int rc = 0;
    if (tbuf_reserve(&b, CHUNK)) return TSDB_ENOMEM;
    size_t start = 0;
    for (;;) {
        if (b.cap - b.len < CHUNK / 2) {
            if (start) {
                memmove(b.p, b.p + start, b.len - start);
                b.len -= start;
                start = 0;
            }
            if (b.cap - b.len < CHUNK / 2) {
                if (b.len > MAX_LINE) {
                    rc = -2;
                    break;
                }
                if (tbuf_reserve(&b, CHUNK)) {
                    rc = TSDB_ENOMEM;
                    break;
                }
            }
        }
        ssize_t r = read(fd, b.p + b.len, b.cap - b.len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r == 0) {
            if (b.len > start) rc = fn(p, (const char *)b.p + start, b.len - start);
            break;
        }
        size_t scan = b.len;
        b.len += (size_t)r;
        ui->done += r;
        const uint8_t *nl;
        while ((nl = memchr(b.p + scan, '\n', b.len - scan)) != NULL) {
            size_t e = (size_t)(nl - b.p);
            rc = fn(p, (const char *)b.p + start, e - start);
            if (rc) goto out;
            start = e + 1;
            scan = start;
        }
        ui->rows = rows(p);
        progress(ui, 0);
    }
out:
    ui->rows = rows(p);
    tbuf_free(&b);
    return rc;
}

static int bb_line(void *p, const char *s, size_t n)
{
    return backblaze_line(p, s, n);
}

static uint64_t bb_rows(void *p)
{
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    return st.rows;
}

static int nv_line(void *p, const char *s, size_t n)
{
    return nvsmi_line(p, s, n);
}

static uint64_t nv_rows(void *p)
{
    nvsmi_stats_t st;
    nvsmi_stats(p, &st);
    return st.rows;
}

/* Whole (small) file into memory: smartctl JSON documents. */
static int read_all(int fd, tbuf_t *b)
{
    b->len = 0;
    for (;;) {
        if (tbuf_reserve(b, 65536)) return TSDB_ENOMEM;
        ssize_t r = read(fd, b->p + b->len, b->cap - b->len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        b->len += (size_t)r;
        if (b->len > MAX_JSON) return -2;
    }
}

/* ---- main --------------------------------------------------------------------- */

static const char *b64(const char *s, char *out, size_t cap)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        out[o++] = t[v >> 18];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
    return out;
}

int cli_import(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        import_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *format = argv[1];
    enum { F_BB, F_SMART, F_NV } fmt;
    if (!strcmp(format, "backblaze"))
        fmt = F_BB;
    else if (!strcmp(format, "smartctl-json") || !strcmp(format, "smartctl"))
        fmt = F_SMART;
    else if (!strcmp(format, "nvidia-smi") || !strcmp(format, "nvsmi"))
        fmt = F_NV;
    else {
        fprintf(stderr,
                "augur import: unknown format '%s' (backblaze, smartctl-json, nvidia-smi)\n",
                format);
        return 2;
    }
    const char *store = NULL, *url = NULL, *instance = NULL, *token = NULL, *basic = NULL,
               *timearg = NULL;
    int skip_norm = 0, no_progress = 0, quiet = 0;
    long batch = 65536, max_errors = 20;
    uint64_t memory_limit = ingest_default_memory_limit();
    const char **files = calloc((size_t)argc, sizeof *files);
    size_t nfiles = 0;
    if (!files) return 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
#define OPT(name)                                                                                  \
    (!strcmp(a, name)                     ? (i + 1 < argc ? (v = argv[++i], 1) : (v = NULL, 1))    \
     : !strncmp(a, name "=", sizeof name) ? (v = a + sizeof name, 1)                               \
                                          : 0)
        if (OPT("--store")) {
            store = v;
        } else if (OPT("--url")) {
            url = v;
        } else if (OPT("--instance")) {
            instance = v;
        } else if (OPT("--bearer-token")) {
            token = v;
        } else if (OPT("--basic-auth")) {
            basic = v;
        } else if (OPT("--time")) {
            timearg = v;
        } else if (OPT("--batch")) {
            batch = v ? strtol(v, NULL, 10) : 0;
            if (batch < 1) v = NULL;
        } else if (OPT("--memory-limit")) {
            if (v && ingest_parse_bytes(v, &memory_limit)) v = NULL;
        } else if (OPT("--max-errors")) {
            max_errors = v ? strtol(v, NULL, 10) : -1;
            if (max_errors < 0) v = NULL;
        } else if (!strcmp(a, "--skip-normalized")) {
            skip_norm = 1;
            continue;
        } else if (!strcmp(a, "--no-progress")) {
            no_progress = 1;
            continue;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
            continue;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            import_usage(stdout);
            free(files);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "augur import: unknown option %s\n", a);
            free(files);
            return 2;
        } else {
            files[nfiles++] = a;
            continue;
        }
#undef OPT
        if (!v) {
            fprintf(stderr, "augur import: %s needs a valid value\n", a);
            free(files);
            return 2;
        }
    }
    if (!!store == !!url || !nfiles) {
        fprintf(stderr, "augur import: give exactly one of --store DIR or --url URL, and at "
                        "least one FILE (see --help)\n");
        free(files);
        return 2;
    }
    int64_t fixed_t = INT64_MIN;
    if (timearg && ingest_time_parse(timearg, strlen(timearg), &fixed_t)) {
        fprintf(stderr, "augur import: --time %s: want RFC 3339 or Unix seconds\n", timearg);
        free(files);
        return 2;
    }
    char host[256] = "localhost";
    if (fmt != F_BB && !instance) {
        if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
        instance = host;
    }

    /* The sink. */
    ingest_sink_t sink;
    store_sink_t ss = {NULL};
    url_sink_t *us = NULL;
    if (store) {
        int rc = ingest_store_open(store, fmt == F_BB ? INGEST_FMT_DAILY : INGEST_FMT_DEFAULT,
                                   memory_limit, &ss.db);
        if (rc) {
            const char *d = tsdb_last_error_detail();
            fprintf(stderr, "augur import: cannot open store %s: %s%s%s\n", store,
                    tsdb_strerror(rc), *d ? ": " : "", d);
            free(files);
            return 2;
        }
        ingest_store_sink(ss.db, &sink);
    } else {
        us = calloc(1, sizeof *us);
        if (!us || url_parse(us, url)) {
            fprintf(stderr, "augur import: --url %s: want http://host:port[/path]\n", url);
            free(us);
            free(files);
            return 2;
        }
        char enc[700];
        if (token) snprintf(us->auth, sizeof us->auth, "Authorization: Bearer %.400s\r\n", token);
        if (basic)
            snprintf(us->auth, sizeof us->auth, "Authorization: Basic %.400s\r\n",
                     b64(basic, enc, sizeof enc));
        sink = (ingest_sink_t){url_append, us};
    }

    ingest_totals_t tot;
    memset(&tot, 0, sizeof tot);
    ui_t ui;
    memset(&ui, 0, sizeof ui);
    ui.max_errors = (uint64_t)max_errors;
    ui.tty = isatty(2);
    ui.progress = ui.tty && !no_progress && !quiet;
    ui.quiet = quiet;
    clock_gettime(CLOCK_MONOTONIC, &ui.t0);

    backblaze_t *bb = NULL;
    nvsmi_t *nv = NULL;
    smartctl_t *sm = NULL;
    int rc = 0;
    if (fmt == F_BB) {
        backblaze_options_t o;
        backblaze_options_init(&o);
        o.instance = instance;
        o.skip_normalized = skip_norm;
        o.batch_samples = (size_t)batch;
        o.sink = &sink;
        if (ss.db) o.sid_ops = &ingest_store_sid_ops;
        o.totals = &tot;
        o.on_error = on_error;
        o.err_ctx = &ui;
        rc = backblaze_create(&o, &bb);
    } else if (fmt == F_NV) {
        nvsmi_options_t o;
        nvsmi_options_init(&o);
        o.instance = instance;
        o.batch_samples = (size_t)batch;
        o.sink = &sink;
        o.totals = &tot;
        o.on_error = on_error;
        o.err_ctx = &ui;
        rc = nvsmi_create(&o, &nv);
    } else {
        smartctl_options_t o;
        smartctl_options_init(&o);
        o.instance = instance;
        o.default_time_ms = fixed_t;
        o.sink = &sink;
        o.totals = &tot;
        o.on_error = on_error;
        o.err_ctx = &ui;
        rc = smartctl_create(&o, &sm);
    }
    int stopped = 0;
    size_t files_done = 0;
    uint64_t files_failed = 0;
    tbuf_t jbuf = {0};
    for (size_t f = 0; f < nfiles && !rc; f++) {
        const char *path = files[f];
        int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
        ui.file = strcmp(path, "-") ? path : "<stdin>";
        if (fd < 0) {
            fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
            files_failed++;
            continue;
        }
        struct stat sb;
        ui.size = !fstat(fd, &sb) && S_ISREG(sb.st_mode) ? sb.st_size : 0;
        ui.done = 0;
        int frc;
        if (fmt == F_BB) {
            backblaze_file_begin(bb);
            frc = feed_lines(fd, bb_line, bb, &ui, bb_rows);
            if (!frc) frc = backblaze_flush(bb);
        } else if (fmt == F_NV) {
            nvsmi_file_begin(nv);
            frc = feed_lines(fd, nv_line, nv, &ui, nv_rows);
            if (!frc) frc = nvsmi_flush(nv);
        } else {
            frc = read_all(fd, &jbuf);
            if (!frc) frc = smartctl_document(sm, (const char *)jbuf.p, jbuf.len);
            ui.done = (off_t)jbuf.len;
        }
        progress(&ui, 1);
        if (fd) close(fd);
        if (frc == -1) {
            fprintf(stderr, "%s: read error: %s\n", path, strerror(errno));
            files_failed++;
        } else if (frc == -2) {
            fprintf(stderr, "%s: a line (or JSON document) is too long; file skipped from there\n",
                    path);
            files_failed++;
        } else if (frc == TSDB_EINVAL && fmt != F_SMART) {
            /* Unusable header: on_error said why; the next file may be fine. */
            files_failed++;
        } else if (frc == 1 && fmt == F_SMART) {
            files_failed++; /* document refused: on_error said why */
        } else if (frc) {
            rc = frc;
            stopped = 1;
            break;
        }
        files_done++;
    }
    tbuf_free(&jbuf);
    if (!rc && bb) rc = backblaze_finish(bb);
    if (rc) stopped = 1;

    uint64_t rows = 0, skipped = 0, events = 0, ignored = 0;
    if (bb) {
        backblaze_stats_t st;
        backblaze_stats(bb, &st);
        rows = st.rows;
        skipped = st.rows_skipped;
        events = st.failure_events;
    } else if (nv) {
        nvsmi_stats_t st;
        nvsmi_stats(nv, &st);
        rows = st.rows;
        skipped = st.rows_skipped;
        ignored = st.columns_ignored;
    } else if (sm) {
        smartctl_stats_t st;
        smartctl_stats(sm, &st);
        rows = st.documents;
        skipped = st.documents_skipped;
    }
    int close_rc = 0;
    if (ss.db) {
        /* merge every partition and give the file its compact size now */
        tsdb_seal_closed_only(ss.db, 0); /* seal the open partitions too */
        close_rc = tsdb_flush(ss.db);
        int crc = tsdb_close(ss.db);
        if (!close_rc) close_rc = crc;
    }
    /* the rate includes sealing and syncing the store: the rows are only
     * all stored once that is done */
    double el = secs_since(&ui.t0);
    if (stopped) {
        const char *d = us && us->err[0] ? us->err : tsdb_last_error_detail();
        fprintf(stderr, "augur import: stopped: %s%s%s\n", tsdb_strerror(rc), *d ? ": " : "", d);
    }
    if (close_rc) fprintf(stderr, "augur import: closing the store: %s\n", tsdb_strerror(close_rc));
    uint64_t refused = tot.conflict + tot.too_old + tot.invalid;
    if (!quiet) {
        const char *unit = fmt == F_SMART ? "documents" : "rows";
        fprintf(stderr,
                "imported %" PRIu64 " %s from %zu of %zu files in %.2f s (%.0f %s/s); %" PRIu64
                " %s refused (errors above)\n",
                rows, unit, files_done - (size_t)files_failed, nfiles, el,
                el > 0 ? (double)rows / el : 0.0, unit, skipped, unit);
        fprintf(stderr,
                "samples: %" PRIu64 " sent, %" PRIu64 " stored, %" PRIu64
                " already present, %" PRIu64 " refused by the store (%" PRIu64
                " conflicting value, %" PRIu64 " out of order, %" PRIu64 " invalid); %" PRIu64
                " new series",
                tot.samples, tot.stored, tot.duplicate, refused, tot.conflict, tot.too_old,
                tot.invalid, tot.series_created);
        if (us) fprintf(stderr, "; %" PRIu64 " requests", us->requests);
        fputc('\n', stderr);
        if (fmt == F_BB) fprintf(stderr, "failure events: %" PRIu64 "\n", events);
        if (ignored) fprintf(stderr, "columns not imported: %" PRIu64 "\n", ignored);
        if (stopped)
            fprintf(stderr,
                    "NOT stored: everything after the last %s counted above (the import "
                    "stopped; rerun it: samples already stored are recognised)\n",
                    unit);
    }
    backblaze_destroy(bb);
    nvsmi_destroy(nv);
    smartctl_destroy(sm);
    if (us) {
        tbuf_free(&us->pb);
        tbuf_free(&us->z);
        tbuf_free(&us->resp);
        free(us);
    }
    free(files);
    tsdb_thread_cleanup();
    if (stopped || close_rc || files_failed) return 2;
    return skipped || refused ? 1 : 0;
}
