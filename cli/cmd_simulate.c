/*
 * cmd_simulate.c — `augur simulate` (the fleet simulator: store, remote
 * write, CSV and event outputs) and the in-process demo feed of
 * `augur serve --demo` (docs/simulator.md).
 *
 * The simulator library never reads a clock; this file does: the remote-write
 * rate control and the demo's wall-clock stepping.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "sim/sim.h"
#include "tsdb/tsdb.h"

static const char simulate_usage[] =
    "usage: augur simulate [flags]\n"
    "\n"
    "Simulate a fleet of N nodes x D disks x G GPUs, deterministically from a\n"
    "seed, with node_exporter, smartctl_exporter and dcgm-exporter series and\n"
    "failures drawn from hazard models (docs/simulator.md). Flags take\n"
    "--flag=value or --flag value. Durations: 30s, 5m, 1h, 7d, 2w.\n"
    "\n"
    "Fleet:\n"
    "  --seed=N                   random seed (default 1)\n"
    "  --nodes=N                  nodes (default 10)\n"
    "  --disks=N                  disks per node, <= 26 (default 8)\n"
    "  --nvme=N                   of which NVMe (default 1)\n"
    "  --gpus=N                   GPUs per node, <= 64 (default 8)\n"
    "  --nodes-per-rack=N         0: no racks (default 16)\n"
    "  --racks-per-pod=N          0: no pods (default 8)\n"
    "  --no-rack-labels           do not put rack/pod labels on the series\n"
    "\n"
    "Time:\n"
    "  --start=TIME               first step: YYYY-MM-DD[THH:MM:SSZ] or Unix ms\n"
    "                             (default 2024-01-01)\n"
    "  --span=DURATION            simulated span (default 7d)\n"
    "  --interval=DURATION        step (default 1h)\n"
    "  --time-scale=X             physics runs X times faster than timestamps\n"
    "                             (default 1)\n"
    "\n"
    "Failure models (defaults in docs/simulator.md):\n"
    "  --hazard-scale=X           multiply every hazard (default 1)\n"
    "  --disk-afr=F               fleet disk annual failure rate (0.015)\n"
    "  --gpu-afr=F                GPU annual failure rate (0.02)\n"
    "  --disk-precursor-frac=F    disk failures with SMART precursors (0.6)\n"
    "  --gpu-precursor-frac=F     GPU failures with precursors (0.55)\n"
    "  --node-stressor-rate=F     node stressors per node-year (0.2)\n"
    "  --rack-stressor-rate=F     rack stressors per rack-year (0.1)\n"
    "  --stressor-hazard-mult=F   hazard multiplier per day of stress dose (50)\n"
    "  --stressor-tail-days=F     stress dose decay time constant (4; 0: no dose)\n"
    "  --stressor-visible-frac=F  drive bays and GPU slots where stress shows in\n"
    "                             telemetry (0.25)\n"
    "  --disk-cofail-mult=F       node's disk hazard multiplier after a disk failure (3)\n"
    "  --disk-cofail-days=F       ... for this many days (7)\n"
    "  --no-bathtub               constant disk hazard over age\n"
    "\n"
    "Outputs (any combination; none: simulate and print the summary):\n"
    "  --out.store=DIR            append into a store directory (created)\n"
    "  --out.remote-write=URL     POST remote-write 1.0 to http://host:port/path\n"
    "  --rw.rate=N                samples per second (default 0: unlimited)\n"
    "  --rw.batch=N               samples per request (default 5000)\n"
    "  --rw.bearer-token=TOKEN    Authorization: Bearer TOKEN\n"
    "  --out.disk-csv=FILE        Backblaze-style daily rows for ATA disks\n"
    "  --out.gpu-csv=FILE         nvidia-smi-style rows for GPUs\n"
    "  --gpu-csv-step=DURATION    GPU CSV row spacing (default 1d)\n"
    "  --out.events=FILE          ground-truth failures as CSV\n"
    "  --out.events-json=FILE     ground-truth failures as JSON lines\n"
    "  --quiet                    no summary on stderr\n"
    "\n"
    "The store also gets augur_failure_event{kind,instance,device,serial|UUID,\n"
    "reason} = 1 at every failure. Same flags and seed: identical output.\n";

/* ---- small parsers ------------------------------------------------------------- */

static int parse_u32(const char *v, uint32_t *out)
{
    char *e;
    errno = 0;
    unsigned long long u = strtoull(v, &e, 10);
    if (errno || e == v || *e || u > UINT32_MAX) return -1;
    *out = (uint32_t)u;
    return 0;
}

static int parse_u64(const char *v, uint64_t *out)
{
    char *e;
    errno = 0;
    unsigned long long u = strtoull(v, &e, 0);
    if (errno || e == v || *e) return -1;
    *out = u;
    return 0;
}

static int parse_f(const char *v, double *out)
{
    char *e;
    errno = 0;
    double d = strtod(v, &e);
    if (errno || e == v || *e || !isfinite(d) || d < 0) return -1;
    *out = d;
    return 0;
}

static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" or Unix milliseconds. */
static int parse_time(const char *v, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, s = 0, n = 0;
    if (sscanf(v, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10) {
        const char *r = v + 10;
        if (*r) {
            int k = 0;
            if (sscanf(r, "T%2d:%2d:%2d%n", &h, &mi, &s, &k) != 3) return -1;
            r += k;
            if (*r == 'Z') r++;
            if (*r) return -1;
        }
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return -1;
        *out = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000LL;
        return 0;
    }
    char *e;
    errno = 0;
    long long ms = strtoll(v, &e, 10);
    if (errno || e == v || *e) return -1;
    *out = ms;
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a minimal HTTP/1.1 POST (plain http, one connection per request) ---------- */

typedef struct {
    char host[300], port[300], path[512];
    const char *token;
} rw_target_t;

static int url_parse(const char *url, rw_target_t *t)
{
    if (strncmp(url, "http://", 7)) return -1;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char hp[300];
    if (!hl || hl >= sizeof hp) return -1;
    memcpy(hp, h, hl);
    hp[hl] = 0;
    snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/api/v1/write");
    char *colon = strrchr(hp, ':');
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (!rb) return -1;
        *rb = 0;
        snprintf(t->host, sizeof t->host, "%s", hp + 1);
        snprintf(t->port, sizeof t->port, "%s", rb[1] == ':' ? rb + 2 : "80");
    } else if (colon) {
        *colon = 0;
        snprintf(t->host, sizeof t->host, "%s", hp);
        snprintf(t->port, sizeof t->port, "%s", colon + 1);
    } else {
        snprintf(t->host, sizeof t->host, "%s", hp);
        snprintf(t->port, sizeof t->port, "80");
    }
    return 0;
}

/* Returns the HTTP status, or -1 on a connection error. */
static int http_post(const rw_target_t *t, const uint8_t *body, size_t len, char *err, size_t errn)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(t->host, t->port, &hints, &ai) || !ai) {
        snprintf(err, errn, "cannot resolve %.100s", t->host);
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {30, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (!connect(fd, p->ai_addr, p->ai_addrlen)) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errn, "cannot connect to %.100s:%.20s: %.100s", t->host, t->port,
                 strerror(errno));
        return -1;
    }
    char head[1400];
    int hn =
        snprintf(head, sizeof head,
                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: augur-simulate/%s\r\n"
                 "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                 "X-Prometheus-Remote-Write-Version: 0.1.0\r\n%s%s%s"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 t->path, t->host, t->port, AUGUR_VERSION, t->token ? "Authorization: Bearer " : "",
                 t->token ? t->token : "", t->token ? "\r\n" : "", len);
    const uint8_t *parts[2] = {(const uint8_t *)head, body};
    size_t lens[2] = {(size_t)hn, len};
    for (int k = 0; k < 2; k++) {
        size_t off = 0;
        while (off < lens[k]) {
            ssize_t w = send(fd, parts[k] + off, lens[k] - off, MSG_NOSIGNAL);
            if (w <= 0) {
                if (w < 0 && errno == EINTR) continue;
                snprintf(err, errn, "send: %s", strerror(errno));
                close(fd);
                return -1;
            }
            off += (size_t)w;
        }
    }
    char resp[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
        if (got == sizeof resp - 1) {
            char sink[4096];
            while (recv(fd, sink, sizeof sink, 0) > 0) {
            }
            break;
        }
    }
    close(fd);
    resp[got] = 0;
    int status = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(err, errn, "no HTTP answer");
        return -1;
    }
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(err, errn, "%.300s", b ? b + 4 : "");
    return status;
}

/* ---- remote-write batching ---------------------------------------------------- */

typedef struct {
    rw_target_t target;
    double rate;
    uint32_t batch;
    tsdb_series_in_t *in;
    tsdb_sample_t *smp;
    size_t n, cap;
    uint8_t *body;
    size_t blen, bcap;
    uint64_t sent, requests;
    double t0;
    tsdb_label_t evl[256][SIM_EVENT_NLABELS];
    uint32_t nevl;
} rw_out_t;

static int rw_send(rw_out_t *o)
{
    if (!o->n) return 0;
    for (size_t i = 0; i < o->n; i++)
        o->in[i].samples = &o->smp[i];
    int rc = sim_rw_encode(o->in, o->n, &o->body, &o->blen, &o->bcap);
    if (rc) {
        fprintf(stderr, "augur simulate: remote write encode: %s\n", sim_strerror(rc));
        return -1;
    }
    char err[400];
    int status = -1;
    for (int attempt = 0; attempt < 6; attempt++) {
        status = http_post(&o->target, o->body, o->blen, err, sizeof err);
        if (status >= 200 && status < 300) break;
        if (status >= 400 && status < 500 && status != 429) break;
        struct timespec ts = {0, 200000000L << (attempt < 3 ? attempt : 3)};
        nanosleep(&ts, NULL);
    }
    if (status < 200 || status >= 300) {
        fprintf(stderr, "augur simulate: remote write to http://%s:%s%s failed (status %d): %s\n",
                o->target.host, o->target.port, o->target.path, status, err);
        return -1;
    }
    o->sent += o->n;
    o->requests++;
    o->n = 0;
    o->nevl = 0;
    if (o->rate > 0) {
        double want = (double)o->sent / o->rate, el = mono_s() - o->t0;
        if (want > el) {
            double d = want - el;
            struct timespec ts = {(time_t)d, (long)((d - floor(d)) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

static int rw_push(rw_out_t *o, const tsdb_label_t *l, uint32_t nl, int64_t t, double v)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 1024;
        tsdb_series_in_t *ni = realloc(o->in, nc * sizeof *ni);
        if (!ni) return -1;
        o->in = ni;
        tsdb_sample_t *ns = realloc(o->smp, nc * sizeof *ns);
        if (!ns) return -1;
        o->smp = ns;
        o->cap = nc;
    }
    o->in[o->n].labels = l;
    o->in[o->n].nlabels = nl;
    o->in[o->n].nsamples = 1;
    o->smp[o->n].t = t;
    o->smp[o->n].v = v;
    o->n++;
    if (o->n >= o->batch) return rw_send(o);
    return 0;
}

/* Label pointers of a frame's series stay valid while the series table does
 * not grow, which only happens inside sim_step(): send before stepping. */
static int rw_frame(rw_out_t *o, const sim_t *s, const sim_frame_t *f)
{
    for (uint32_t i = 0; i < f->nseries; i++) {
        if (f->v[i] != f->v[i]) continue;
        const sim_series_t *se = sim_series_get(s, i);
        if (rw_push(o, se->labels, se->nlabels, f->t_ms, f->v[i])) return -1;
    }
    for (uint32_t e = 0; e < f->nevents; e++) {
        if (o->nevl == 256 && rw_send(o)) return -1;
        tsdb_label_t *l = o->evl[o->nevl++];
        uint32_t nl = sim_event_labels(&f->events[e], l);
        if (rw_push(o, l, nl, f->events[e].t_ms, 1)) return -1;
    }
    return rw_send(o);
}

/* ---- augur simulate ------------------------------------------------------------- */

typedef struct {
    sim_config_t c;
    int64_t span_ms;
    const char *store, *rw_url, *disk_csv, *gpu_csv, *ev_csv, *ev_json, *token;
    double rate;
    uint32_t batch;
    int64_t gpu_csv_step;
    int quiet;
} sim_opts_t;

static int sim_flag(sim_opts_t *o, const char *name, const char *v)
{
    sim_config_t *c = &o->c;
    int64_t d;
#define IS(n) (!strcmp(name, n))
    if (IS("seed")) return parse_u64(v, &c->seed);
    if (IS("nodes")) return parse_u32(v, &c->nodes);
    if (IS("disks")) return parse_u32(v, &c->disks_per_node);
    if (IS("nvme")) return parse_u32(v, &c->nvme_per_node);
    if (IS("gpus")) return parse_u32(v, &c->gpus_per_node);
    if (IS("nodes-per-rack")) return parse_u32(v, &c->nodes_per_rack);
    if (IS("racks-per-pod")) return parse_u32(v, &c->racks_per_pod);
    if (IS("start")) return parse_time(v, &c->start_ms);
    if (IS("span")) return cli_parse_duration_ms(v, &o->span_ms) || o->span_ms <= 0 ? -1 : 0;
    if (IS("interval"))
        return cli_parse_duration_ms(v, &c->interval_ms) || c->interval_ms <= 0 ? -1 : 0;
    if (IS("gpu-csv-step"))
        return cli_parse_duration_ms(v, &d) || d <= 0 ? -1 : (o->gpu_csv_step = d, 0);
    if (IS("time-scale")) return parse_f(v, &c->time_scale);
    if (IS("hazard-scale")) return parse_f(v, &c->hazard_scale);
    if (IS("disk-afr")) return parse_f(v, &c->disk_afr);
    if (IS("gpu-afr")) return parse_f(v, &c->gpu_afr);
    if (IS("disk-precursor-frac")) return parse_f(v, &c->disk_precursor_frac);
    if (IS("gpu-precursor-frac")) return parse_f(v, &c->gpu_precursor_frac);
    if (IS("node-stressor-rate")) return parse_f(v, &c->node_stressor_rate);
    if (IS("rack-stressor-rate")) return parse_f(v, &c->rack_stressor_rate);
    if (IS("stressor-hazard-mult")) return parse_f(v, &c->stressor_hazard_mult);
    if (IS("stressor-tail-days")) return parse_f(v, &c->stressor_tail_days);
    if (IS("stressor-visible-frac")) return parse_f(v, &c->stressor_visible_frac);
    if (IS("disk-cofail-mult")) return parse_f(v, &c->disk_cofail_mult);
    if (IS("disk-cofail-days")) return parse_f(v, &c->disk_cofail_days);
    if (IS("out.store")) return (o->store = v, 0);
    if (IS("out.remote-write")) return (o->rw_url = v, 0);
    if (IS("rw.rate")) return parse_f(v, &o->rate);
    if (IS("rw.batch")) return parse_u32(v, &o->batch) || !o->batch ? -1 : 0;
    if (IS("rw.bearer-token")) return (o->token = v, 0);
    if (IS("out.disk-csv")) return (o->disk_csv = v, 0);
    if (IS("out.gpu-csv")) return (o->gpu_csv = v, 0);
    if (IS("out.events")) return (o->ev_csv = v, 0);
    if (IS("out.events-json")) return (o->ev_json = v, 0);
#undef IS
    return -2;
}

static FILE *open_out(const char *path)
{
    if (!path) return NULL;
    if (!strcmp(path, "-")) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "augur simulate: cannot create %s: %s\n", path, strerror(errno));
    return f;
}

static int close_out(FILE *f)
{
    if (!f || f == stdout) return f ? fflush(f) : 0;
    return fclose(f);
}

int cli_simulate(int argc, char **argv)
{
    sim_opts_t o;
    memset(&o, 0, sizeof o);
    sim_config_init(&o.c);
    o.span_ms = 7LL * 86400000;
    o.batch = 5000;
    o.gpu_csv_step = 86400000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(simulate_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (!strcmp(a, "--no-rack-labels")) {
            o.c.rack_labels = 0;
            continue;
        }
        if (!strcmp(a, "--no-bathtub")) {
            o.c.disk_bathtub = 0;
            continue;
        }
        if (strncmp(a, "--", 2)) {
            fprintf(stderr, "augur simulate: unexpected argument '%s'\n", a);
            return 2;
        }
        a += 2;
        char name[64];
        const char *eq = strchr(a, '='), *v;
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a, nl);
        name[nl] = 0;
        sim_opts_t probe = o;
        if (sim_flag(&probe, name, "1") == -2) {
            fprintf(stderr, "augur simulate: unknown flag '--%s' (see augur simulate --help)\n",
                    name);
            return 2;
        }
        if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "augur simulate: flag --%s needs a value\n", name);
                return 2;
            }
            v = argv[++i];
        }
        int r = sim_flag(&o, name, v);
        if (r == -2) {
            fprintf(stderr, "augur simulate: unknown flag '--%s' (see augur simulate --help)\n",
                    name);
            return 2;
        }
        if (r) {
            fprintf(stderr, "augur simulate: invalid value '%s' for --%s\n", v, name);
            return 2;
        }
    }
    rw_out_t *rw = NULL;
    if (o.rw_url) {
        rw = calloc(1, sizeof *rw);
        if (!rw) return 1;
        if (url_parse(o.rw_url, &rw->target)) {
            fprintf(stderr, "augur simulate: --out.remote-write needs http://host:port/path\n");
            free(rw);
            return 2;
        }
        rw->target.token = o.token;
        rw->rate = o.rate;
        rw->batch = o.batch;
    }
    sim_t *s = NULL;
    int rc = sim_create(&o.c, &s);
    if (rc) {
        fprintf(stderr, "augur simulate: %s\n", sim_strerror(rc));
        free(rw);
        return rc == SIM_EINVAL ? 2 : 1;
    }
    int ret = 1;
    tsdb_t *db = NULL;
    sim_store_writer_t *sw = NULL;
    sim_csv_t *csv = NULL;
    FILE *fd = NULL, *fg = NULL, *fe = NULL, *fj = NULL;
    if (o.store) {
        if (mkdir(o.store, 0755) && errno != EEXIST) {
            fprintf(stderr, "augur simulate: cannot create %s: %s\n", o.store, strerror(errno));
            goto out;
        }
        tsdb_options_t to;
        tsdb_options_init(&to);
        to.sync_mode = TSDB_SYNC_PERIODIC;
        to.flush_interval_ms = -1;
        to.ooo_window_ms = -1;
        /* blocks span a few hundred samples per series whatever the step */
        if (o.c.interval_ms >= 2 * 3600 * 1000) to.partition_ms = INT64_C(32) * 86400000;
        else if (o.c.interval_ms >= 10 * 60 * 1000) to.partition_ms = INT64_C(8) * 86400000;
        else if (o.c.interval_ms >= 60 * 1000) to.partition_ms = 86400000;
        rc = tsdb_open(o.store, &to, &db);
        if (rc) {
            fprintf(stderr, "augur simulate: cannot open store %s: %s %s\n", o.store,
                    tsdb_strerror(rc), tsdb_last_error_detail());
            goto out;
        }
        if (sim_store_writer_create(db, &sw)) goto out;
    }
    if ((o.disk_csv && !(fd = open_out(o.disk_csv))) ||
        (o.gpu_csv && !(fg = open_out(o.gpu_csv))) || (o.ev_csv && !(fe = open_out(o.ev_csv))) ||
        (o.ev_json && !(fj = open_out(o.ev_json))))
        goto out;
    if (fd || fg || fe || fj) {
        sim_csv_options_t co = {fd, fg, fe, fj, o.gpu_csv_step};
        if (sim_csv_create(s, &co, &csv)) goto out;
    }
    double t0 = mono_s();
    if (rw) rw->t0 = t0;
    uint64_t nsteps = (uint64_t)((o.span_ms + o.c.interval_ms - 1) / o.c.interval_ms);
    for (uint64_t k = 0; k < nsteps; k++) {
        sim_frame_t f;
        rc = sim_step(s, &f);
        if (rc) {
            fprintf(stderr, "augur simulate: %s\n", sim_strerror(rc));
            goto out;
        }
        if (sw && (rc = sim_store_writer_add(sw, s, &f))) {
            fprintf(stderr, "augur simulate: store: %s (%s)\n", sim_strerror(rc),
                    tsdb_strerror(sim_store_writer_tsdb_error(sw)));
            goto out;
        }
        if (csv && (rc = sim_csv_add(csv, s, &f))) {
            fprintf(stderr, "augur simulate: writing CSV: %s\n", strerror(errno));
            goto out;
        }
        if (rw && rw_frame(rw, s, &f)) goto out;
    }
    if (sw && (rc = sim_store_writer_flush(sw))) {
        fprintf(stderr, "augur simulate: store: %s\n", sim_strerror(rc));
        goto out;
    }
    if (csv && sim_csv_finish(csv, s)) {
        fprintf(stderr, "augur simulate: writing CSV failed\n");
        goto out;
    }
    double el = mono_s() - t0;
    if (!o.quiet) {
        sim_stats_t st;
        sim_stats(s, &st);
        fprintf(stderr,
                "simulated %" PRIu64 " steps: %u nodes, %u disks, %u GPUs, %u series, %" PRIu64
                " samples in %.2f s (%.1f M samples/s)\n"
                "failures: %" PRIu64 " disks (%" PRIu64 " with precursors), %" PRIu64
                " GPUs (%" PRIu64 " with precursors); stressors: %" PRIu64 " node, %" PRIu64
                " rack\n",
                st.steps, o.c.nodes, sim_disk_count(s), sim_gpu_count(s), sim_series_count(s),
                st.samples, el, el > 0 ? (double)st.samples / el / 1e6 : 0.0, st.disk_failures,
                st.disk_failures_precursor, st.gpu_failures, st.gpu_failures_precursor,
                st.node_stressors, st.rack_stressors);
        if (sw)
            fprintf(stderr, "store %s: %" PRIu64 " samples appended\n", o.store,
                    sim_store_writer_samples(sw));
        if (rw)
            fprintf(stderr, "remote write: %" PRIu64 " samples in %" PRIu64 " requests\n", rw->sent,
                    rw->requests);
    }
    ret = 0;
out:
    sim_csv_destroy(csv);
    if (close_out(fd) | close_out(fg) | close_out(fe) | close_out(fj)) {
        fprintf(stderr, "augur simulate: closing an output file failed\n");
        ret = 1;
    }
    sim_store_writer_destroy(sw);
    if (db && tsdb_flush(db)) {
        fprintf(stderr, "augur simulate: sealing the store failed\n");
        ret = 1;
    }
    if (db && tsdb_close(db)) {
        fprintf(stderr, "augur simulate: closing the store failed\n");
        ret = 1;
    }
    if (rw) {
        free(rw->in);
        free(rw->smp);
        free(rw->body);
        free(rw);
    }
    sim_destroy(s);
    tsdb_thread_cleanup();
    return ret;
}

/* ---- serve --demo ---------------------------------------------------------------- */

struct cli_demo {
    pthread_t th;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tsdb_t *db;
    cli_demo_opts_t o;
};

void cli_demo_opts_init(cli_demo_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->nodes = 50;
    o->seed = 1;
    o->history_ms = 86400000;
    o->backfill_step_ms = 300000;
    o->interval_ms = 15000;
    o->time_scale = 60;
    o->hazard_scale = 10;
}

int cli_demo_flag(cli_demo_opts_t *o, const char *arg, const char *next, int *used_next)
{
    *used_next = 0;
    if (!strcmp(arg, "--demo")) {
        o->enabled = 1;
        return 0;
    }
    if (strncmp(arg, "--demo.", 7)) return -1;
    const char *a = arg + 7, *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    const char *v = eq ? eq + 1 : next;
    if (!v) return -1;
    if (!eq) *used_next = 1;
    o->enabled = 1;
    int64_t d;
#define IS(n) (nl == strlen(n) && !strncmp(a, n, nl))
    if (IS("nodes")) return parse_u32(v, &o->nodes) || !o->nodes ? -1 : 0;
    if (IS("seed")) return parse_u64(v, &o->seed);
    if (IS("history")) return cli_parse_duration_ms(v, &d) || d < 0 ? -1 : (o->history_ms = d, 0);
    if (IS("interval"))
        return cli_parse_duration_ms(v, &d) || d < 1000 ? -1 : (o->interval_ms = d, 0);
    if (IS("time-scale")) return parse_f(v, &o->time_scale) || o->time_scale <= 0 ? -1 : 0;
    if (IS("hazard-scale")) return parse_f(v, &o->hazard_scale);
#undef IS
    return -1;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *demo_main(void *arg)
{
    cli_demo_t *dm = arg;
    sim_config_t c;
    sim_config_init(&c);
    c.seed = dm->o.seed;
    c.nodes = dm->o.nodes;
    c.time_scale = dm->o.time_scale;
    c.hazard_scale = dm->o.hazard_scale;
    c.interval_ms = dm->o.interval_ms;
    int64_t now = wall_ms();
    now -= now % 1000;
    c.start_ms = now - dm->o.history_ms;
    sim_t *s = NULL;
    sim_store_writer_t *w = NULL;
    int rc = sim_create(&c, &s);
    if (!rc) rc = sim_store_writer_create(dm->db, &w);
    if (rc) {
        fprintf(stderr, "level=error msg=\"demo simulator failed to start\" err=\"%s\"\n",
                sim_strerror(rc));
        goto done;
    }
    /* Backfill the history coarsely, then follow the wall clock. */
    int64_t t = c.start_ms;
    sim_frame_t f;
    uint64_t nback = 0;
    while (!dm->stop && t < now) {
        if ((rc = sim_step_to(s, t, &f)) || (rc = sim_store_writer_add(w, s, &f))) break;
        nback++;
        t += dm->o.backfill_step_ms;
    }
    if (!rc) rc = sim_store_writer_flush(w);
    if (!rc)
        fprintf(stderr,
                "level=info msg=\"demo fleet backfilled\" nodes=%u disks=%u gpus=%u series=%u "
                "steps=%" PRIu64 " samples=%" PRIu64 "\n",
                c.nodes, sim_disk_count(s), sim_gpu_count(s), sim_series_count(s), nback,
                sim_store_writer_samples(w));
    int64_t last = f.t_ms;
    while (!rc && !dm->stop) {
        int64_t tn = wall_ms();
        if (tn - last >= dm->o.interval_ms || tn - last >= 1000 * 3600) {
            tn -= tn % 1000;
            if (tn <= last) tn = last + 1;
            if ((rc = sim_step_to(s, tn, &f)) || (rc = sim_store_writer_add(w, s, &f)) ||
                (rc = sim_store_writer_flush(w)))
                break;
            last = tn;
            for (uint32_t e = 0; e < f.nevents; e++)
                fprintf(stderr,
                        "level=info msg=\"demo failure\" kind=%s instance=%s device=%s reason=%s\n",
                        f.events[e].kind == SIM_KIND_DISK ? "disk" : "gpu", f.events[e].instance,
                        f.events[e].device, f.events[e].reason);
        }
        pthread_mutex_lock(&dm->mu);
        if (!dm->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 250000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&dm->cv, &dm->mu, &ts);
        }
        pthread_mutex_unlock(&dm->mu);
    }
    if (rc)
        fprintf(stderr, "level=error msg=\"demo simulator stopped\" err=\"%s\" store_err=\"%s\"\n",
                sim_strerror(rc), w ? tsdb_strerror(sim_store_writer_tsdb_error(w)) : "");
done:
    sim_store_writer_destroy(w);
    sim_destroy(s);
    tsdb_thread_cleanup();
    return NULL;
}

int cli_demo_start(tsdb_t *db, const cli_demo_opts_t *o, cli_demo_t **out)
{
    *out = NULL;
    if (!o->enabled) return 0;
    cli_demo_t *dm = calloc(1, sizeof *dm);
    if (!dm) return -1;
    dm->db = db;
    dm->o = *o;
    pthread_mutex_init(&dm->mu, NULL);
    pthread_cond_init(&dm->cv, NULL);
    if (pthread_create(&dm->th, NULL, demo_main, dm)) {
        pthread_mutex_destroy(&dm->mu);
        pthread_cond_destroy(&dm->cv);
        free(dm);
        return -1;
    }
    dm->started = 1;
    *out = dm;
    return 0;
}

void cli_demo_stop(cli_demo_t *dm)
{
    if (!dm) return;
    pthread_mutex_lock(&dm->mu);
    dm->stop = 1;
    pthread_cond_broadcast(&dm->cv);
    pthread_mutex_unlock(&dm->mu);
    if (dm->started) pthread_join(dm->th, NULL);
    pthread_mutex_destroy(&dm->mu);
    pthread_cond_destroy(&dm->cv);
    free(dm);
}
