/* metrics.c — augur's own metrics in the Prometheus text format. */
#include "api/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const handler_names[] = {
#define API_H_NAME_(id, name) name,
    API_HANDLER_MAP(API_H_NAME_)
#undef API_H_NAME_
};

static const char *const reject_names[] = {
#define API_REJ_NAME_(id, name) name,
    API_REJECT_MAP(API_REJ_NAME_)
#undef API_REJ_NAME_
};

static const unsigned codes[API_CODES] = {200, 204, 400, 401, 403, 404, 405, 406,
                                          413, 415, 422, 429, 500, 503, 507};

/* Upper bounds of the duration buckets, seconds. */
static const double dur_le[API_DUR_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,      2.5,   5,    10,    30,   60};

const char *api_handler_name(api_handler_t h)
{
    return (unsigned)h < API_H_COUNT ? handler_names[h] : "unknown";
}

void api_metrics_init(api_metrics_t *m, double start_time_s, const char *version)
{
    memset(m, 0, sizeof *m);
    m->start_time_s = start_time_s;
    m->version = version ? version : "unknown";
}

void api_metrics_request(api_metrics_t *m, api_handler_t h, unsigned code, uint64_t dur_ns)
{
    if ((unsigned)h >= API_H_COUNT) return;
    unsigned ci = API_CODES;
    for (unsigned i = 0; i < API_CODES; i++)
        if (codes[i] == code) {
            ci = i;
            break;
        }
    atomic_fetch_add_explicit(&m->requests[h][ci], 1, memory_order_relaxed);
    double s = (double)dur_ns / 1e9;
    unsigned b = 0;
    while (b < API_DUR_BUCKETS && s > dur_le[b])
        b++;
    atomic_fetch_add_explicit(&m->dur_bucket[h][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->dur_sum_ns[h], dur_ns, memory_order_relaxed);
}

__attribute__((format(printf, 2, 3))) static int put(tbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    return tbuf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static int head(tbuf_t *b, const char *name, const char *type, const char *help)
{
    return put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static int counter(tbuf_t *b, const char *name, const char *help, uint64_t v)
{
    return head(b, name, "counter", help) | put(b, "%s %" PRIu64 "\n", name, v);
}

static int gauge(tbuf_t *b, const char *name, const char *help, double v)
{
    return head(b, name, "gauge", help) | put(b, "%s %.17g\n", name, v);
}

/* Process figures from /proc/self: CPU seconds, RSS and virtual bytes. */
static void proc_self(double *cpu_s, double *rss, double *vsz)
{
    *cpu_s = *rss = *vsz = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        /* Fields after the last ')' of comm: state is field 3. */
        char *p = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0, vs = 0;
        long long rs = 0;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                        "%*d %*u %llu %lld",
                        &ut, &st, &vs, &rs) == 4) {
            long tck = sysconf(_SC_CLK_TCK);
            long pg = sysconf(_SC_PAGESIZE);
            *cpu_s = (double)(ut + st) / (double)(tck > 0 ? tck : 100);
            *vsz = (double)vs;
            *rss = (double)rs * (double)(pg > 0 ? pg : 4096);
        }
    }
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

int api_metrics_render(const api_metrics_t *m, tsdb_t *db, int ready, int64_t inflight_budget,
                       tbuf_t *out)
{
    int rc = 0;
    rc |= head(out, "augur_build_info", "gauge",
               "A metric with constant value 1 labelled with the build version.");
    rc |= put(out, "augur_build_info{version=\"%s\"} 1\n", m->version);
    rc |= gauge(out, "augur_ready", "1 when /-/ready answers 200: store open and recovered, every enabled component attached.", ready ? 1 : 0);

    rc |= counter(out, "augur_samples_ingested_total",
                  "Samples stored (durable on acknowledgement).", LD(m->samples_ingested));
    rc |= counter(out, "augur_samples_duplicate_total",
                  "Samples identical to ones already stored (sender retries), not stored again.",
                  LD(m->samples_duplicate));
    rc |= head(out, "augur_samples_rejected_total", "counter",
               "Samples refused, by reason (parse_error counts text lines).");
    for (int i = 1; i < API_REJ_COUNT; i++)
        rc |= put(out, "augur_samples_rejected_total{reason=\"%s\"} %" PRIu64 "\n", reject_names[i],
                  LD(m->samples_rejected[i]));
    rc |= counter(out, "augur_series_created_total", "Series created by writes.",
                  LD(m->series_created));
    rc |= head(out, "augur_remote_write_requests_total", "counter",
               "Remote-write requests received, by protocol version.");
    rc |= put(out, "augur_remote_write_requests_total{protocol=\"1.0\"} %" PRIu64 "\n",
              LD(m->rw_requests[1]));
    rc |= put(out, "augur_remote_write_requests_total{protocol=\"2.0\"} %" PRIu64 "\n",
              LD(m->rw_requests[2]));
    rc |= counter(out, "augur_histograms_dropped_total",
                  "Native histogram samples received and not stored (unsupported).",
                  LD(m->histograms_dropped));
    rc |= counter(out, "augur_exemplars_dropped_total", "Exemplars received and not stored.",
                  LD(m->exemplars_dropped));
    rc |= counter(
        out, "augur_metadata_received_total",
        "Metric metadata entries received (remote write metadata, text # TYPE/# HELP families).",
        LD(m->metadata_received));
    rc |= counter(out, "augur_http_request_too_large_total", "Requests answered 413.",
                  LD(m->bodies_too_large));
    rc |= counter(out, "augur_http_overloaded_total",
                  "Requests answered 503 because the in-flight body budget was spent.",
                  LD(m->overloaded));
    rc |= counter(out, "augur_append_errors_total", "Store append failures (answered 5xx).",
                  LD(m->append_errors));
    rc |= gauge(out, "augur_http_inflight_requests", "Requests being received or handled.",
                (double)LD(m->inflight_requests));
    rc |= gauge(out, "augur_http_inflight_body_bytes", "Request body bytes buffered (queue depth).",
                (double)LD(m->inflight_bytes));
    rc |= gauge(out, "augur_http_inflight_body_bytes_limit", "Budget for buffered request bodies.",
                (double)inflight_budget);
    rc |=
        gauge(out, "augur_http_connections", "Open HTTP connections.", (double)LD(m->connections));

    rc |= head(out, "augur_http_requests_total", "counter",
               "HTTP requests by handler and status code.");
    for (int h = 0; h < API_H_COUNT; h++)
        for (int c = 0; c <= API_CODES; c++) {
            uint64_t v = LD(m->requests[h][c]);
            if (!v) continue;
            if (c < API_CODES)
                rc |=
                    put(out, "augur_http_requests_total{handler=\"%s\",code=\"%u\"} %" PRIu64 "\n",
                        handler_names[h], codes[c], v);
            else
                rc |= put(out,
                          "augur_http_requests_total{handler=\"%s\",code=\"other\"} %" PRIu64 "\n",
                          handler_names[h], v);
        }
    rc |= head(out, "augur_http_request_duration_seconds", "histogram",
               "HTTP request handling time by handler (body receipt to response queued).");
    for (int h = 0; h < API_H_COUNT; h++) {
        uint64_t cum = 0;
        uint64_t tot = 0;
        for (int b = 0; b <= API_DUR_BUCKETS; b++)
            tot += LD(m->dur_bucket[h][b]);
        if (!tot) continue;
        for (int b = 0; b < API_DUR_BUCKETS; b++) {
            cum += LD(m->dur_bucket[h][b]);
            rc |=
                put(out,
                    "augur_http_request_duration_seconds_bucket{handler=\"%s\",le=\"%g\"} %" PRIu64
                    "\n",
                    handler_names[h], dur_le[b], cum);
        }
        cum += LD(m->dur_bucket[h][API_DUR_BUCKETS]);
        rc |= put(out,
                  "augur_http_request_duration_seconds_bucket{handler=\"%s\",le=\"+Inf\"} %" PRIu64
                  "\n"
                  "augur_http_request_duration_seconds_sum{handler=\"%s\"} %.9f\n"
                  "augur_http_request_duration_seconds_count{handler=\"%s\"} %" PRIu64 "\n",
                  handler_names[h], cum, handler_names[h], (double)LD(m->dur_sum_ns[h]) / 1e9,
                  handler_names[h], cum);
    }

    if (db) {
        tsdb_stats_t st;
        if (tsdb_stats(db, &st) == 0) {
            rc |= gauge(out, "augur_series", "Series in the index.", (double)st.series);
            rc |= gauge(out, "augur_active_series", "Series with samples in the in-memory head.",
                        (double)st.active_series);
            rc |= gauge(out, "augur_storage_samples", "Samples stored (sealed + head).",
                        (double)st.samples);
            rc |= gauge(out, "augur_head_samples", "Samples in the head, not yet sealed.",
                        (double)st.head_samples);
            rc |= gauge(out, "augur_storage_blocks", "Sealed blocks.", (double)st.blocks);
            rc |= gauge(out, "augur_storage_bytes",
                        "Bytes on disk of the store directory (LMDB + WAL).",
                        (double)st.bytes_on_disk);
            rc |= gauge(out, "augur_storage_lmdb_bytes", "LMDB file size.", (double)st.lmdb_bytes);
            rc |= gauge(out, "augur_storage_lmdb_used_bytes", "LMDB pages in use.",
                        (double)st.lmdb_used_bytes);
            rc |= counter(out, "augur_storage_vacuums_total",
                          "Compacting rewrites of the LMDB file (when over a fifth of it is free).",
                          st.vacuums);
            rc |= gauge(out, "augur_wal_bytes", "WAL bytes written.", (double)st.wal_bytes);
            rc |= gauge(out, "augur_storage_memory_bytes", "Heap held by the store.",
                        (double)st.memory_bytes);
            rc |= counter(out, "augur_wal_fsyncs_total", "WAL fsyncs.", st.wal_fsyncs);
            rc |=
                head(out, "augur_wal_fsync_seconds_total", "counter", "Time spent in WAL fsyncs.");
            rc |= put(out, "augur_wal_fsync_seconds_total %.9f\n", (double)st.wal_fsync_ns / 1e9);
            rc |=
                counter(out, "augur_storage_flushes_total", "Head flushes into LMDB.", st.flushes);
            rc |= counter(out, "augur_storage_corrupt_blocks_total",
                          "Blocks found corrupt while reading.", st.corrupt_blocks);
        }
    }

    double cpu, rss, vsz;
    proc_self(&cpu, &rss, &vsz);
    rc |= head(out, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.");
    rc |= put(out, "process_cpu_seconds_total %.2f\n", cpu);
    rc |= gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", rss);
    rc |= gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", vsz);
    rc |= gauge(out, "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.", m->start_time_s);
    rc |= gauge(out, "process_open_fds", "Number of open file descriptors.", open_fds());
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        rc |= gauge(out, "process_max_fds", "Maximum number of open file descriptors.",
                    (double)rl.rlim_cur);
    return rc ? -1 : 0;
}
