/* cmd_serve.c — `augur serve`: open the store and run the HTTP server until
 * SIGTERM/SIGINT (see docs/serve.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alert/alert.h"
#include "api/anomaly.h"
#include "api/auth.h"
#include "api/log.h"
#include "api/predictions.h"
#include "api/server.h"
#include "cli/cli.h"
#include "tsdb/tsdb.h"

static const char serve_usage[] =
    "usage: augur serve [flags]\n"
    "\n"
    "Run the server: Prometheus remote write and text import in, the Prometheus\n"
    "query API out, augur's own metrics on /metrics. Flags take --flag=value or\n"
    "--flag value. Durations: 500ms, 30s, 5m, 1h30m, 15d, 2w, 1y. Sizes: 1048576,\n"
    "512KiB, 32MiB, 1GiB.\n"
    "\n"
    "HTTP:\n"
    "  --web.listen-address=ADDR      host:port, [v6]:port or :port (all IPv4\n"
    "                                 interfaces); port 0 picks a free port\n"
    "                                 (default :9201)\n"
    "  --web.auth-file=PATH           credentials per role (read, write, admin),\n"
    "                                 one '<role> <bearer|basic> <credential>' a\n"
    "                                 line; without it every endpoint is open\n"
    "                                 except the admin ones, which then need a\n"
    "                                 loopback-only listen address\n"
    "  --web.tls-cert-file=PATH       PEM certificate: serve HTTPS (needs the key)\n"
    "  --web.tls-key-file=PATH        PEM private key\n"
    "  --web.threads=N                HTTP worker threads (default max(4, CPUs))\n"
    "  --web.max-connections=N        open connections (default 1024)\n"
    "  --web.read-timeout=DURATION    close connections idle or stalled this long\n"
    "                                 (slow clients) (default 30s)\n"
    "  --web.request-timeout=DURATION  a request body must arrive within this\n"
    "                                 (trickling clients) (default 5m)\n"
    "  --web.max-request-bytes=SIZE   request body cap as sent (compressed); over\n"
    "                                 it: 413 (default 32MiB)\n"
    "  --web.max-inflight-bytes=SIZE  all request bodies buffered at once; over it:\n"
    "                                 503 + Retry-After (default 256MiB)\n"
    "  --web.shutdown-timeout=DURATION  wait this long for in-flight requests on\n"
    "                                 SIGTERM/SIGINT (default 30s)\n"
    "\n"
    "Ingestion limits (violations are refused, counted in\n"
    "augur_samples_rejected_total{reason}):\n"
    "  --ingest.max-decompressed-bytes=SIZE  remote-write body after snappy; over\n"
    "                                 it: 413 (default 32MiB)\n"
    "  --ingest.max-series-per-request=N     (default 100000; over it: 400)\n"
    "  --ingest.max-samples-per-request=N    (default 1000000; over it: 400)\n"
    "  --ingest.max-labels-per-series=N      including __name__ (default 64)\n"
    "  --ingest.max-label-name-length=N      bytes (default 256)\n"
    "  --ingest.max-label-value-length=N     bytes (default 4096)\n"
    "  --ingest.max-future=DURATION   samples further ahead of the server clock are\n"
    "                                 refused (default 10m)\n"
    "\n"
    "Storage:\n"
    "  --storage.path=DIR             store directory (default ./augur-data)\n"
    "  --storage.retention=DURATION   drop data older than this; 0 keeps\n"
    "                                 everything (default 15d)\n"
    "  --storage.sync=always|periodic always: fsync before every write is\n"
    "                                 acknowledged; periodic: fsync every\n"
    "                                 --storage.sync-interval (survives kill -9,\n"
    "                                 not power loss) (default always)\n"
    "  --storage.sync-interval=DURATION  (default 1s)\n"
    "  --storage.out-of-order-window=DURATION  samples this much older than their\n"
    "                                 series' newest are still accepted (default 1h)\n"
    "  --storage.max-bytes=SIZE       LMDB map size cap (default 1TiB)\n"
    "\n"
    "Queries:\n"
    "  --query.timeout=DURATION       (default 2m)\n"
    "  --query.max-samples=N          samples loaded per query (default 50000000)\n"
    "  --query.lookback-delta=DURATION  (default 5m)\n"
    "  --query.cache-size=SIZE        range-query result cache: steps older than 5m\n"
    "                                 are kept and reused; backfill, deletes and\n"
    "                                 retention invalidate (default 64MiB; 0 = off)\n"
    "\n"
    "Demo (a simulated fleet feeding this server, docs/simulator.md):\n"
    "  --demo                         run the fleet simulator in-process: backfill\n"
    "                                 --demo.history, then a step every\n"
    "                                 --demo.interval at the wall clock; the store\n"
    "                                 defaults to ./augur-demo-data\n"
    "  --demo.nodes=N                 nodes (8 disks, 8 GPUs each) (default 50)\n"
    "  --demo.seed=N                  (default 1)\n"
    "  --demo.history=DURATION        (default 1d)\n"
    "  --demo.interval=DURATION       (default 15s)\n"
    "  --demo.time-scale=X            device ageing and failures run X times\n"
    "                                 faster than the clock (default 60)\n"
    "  --demo.hazard-scale=X          failure hazards times X (default 10)\n"
    "\n"
    "Anomaly detection (docs/anomaly-detection.md): every stored sample of the\n"
    "selected series is scored by a streaming detector in a worker thread; scores\n"
    "go to augur_anomaly_score{metric=\"<name>\",...} and per instance to\n"
    "augur_node_anomaly_rate{instance}; GET /api/v1/anomalies lists recent alarms.\n"
    "  --detect.enabled=true|false    (default true)\n"
    "  --detect.selector=REGEX        metric names to score, fully anchored\n"
    "                                 (default node_load1|node_cpu_seconds_total|\n"
    "                                 node_memory_.*|smartctl_.*|DCGM_.*); counters\n"
    "                                 (_total, _count, _sum, _bucket) are scored on\n"
    "                                 their rate\n"
    "  --detect.threshold=SCORE       score counted as anomalous, in (0, 1)\n"
    "                                 (default 0.4: -log10 p = 4)\n"
    "  --detect.queue-size=SIZE       pending samples; when full, samples are\n"
    "                                 dropped and counted in\n"
    "                                 augur_detect_dropped_total (default 64MiB)\n"
    "  --detect.persist-interval=DURATION  save detector states to\n"
    "                                 <storage.path>/detect.state this often and\n"
    "                                 at shutdown (default 5m)\n"
    "\n"
    "Alerting (docs/alerting.md): Prometheus rule files evaluated over this store;\n"
    "ALERTS/ALERTS_FOR_STATE written back; alerts sent to Alertmanager (v2 API).\n"
    "SIGHUP or POST /-/reload (admin) re-reads the files.\n"
    "  --rules.file=PATH              rule file or glob; repeatable\n"
    "  --config.file=PATH             Prometheus-style config: global\n"
    "                                 evaluation_interval and external_labels,\n"
    "                                 rule_files, alerting.alertmanagers (static)\n"
    "  --rules.defaults=true|false    load the built-in rules\n"
    "                                 (rules/augur-defaults.yml) (default true)\n"
    "  --rules.evaluation-interval=DURATION  groups without an interval (default 1m)\n"
    "  --rules.alert.resend-delay=DURATION  resend firing alerts this often (default 1m)\n"
    "  --alertmanager.url=URL         http://host:9093; repeatable (every one gets\n"
    "                                 every alert)\n"
    "  --alertmanager.queue-capacity=N  alerts queued per Alertmanager; the oldest\n"
    "                                 are dropped beyond it (default 10000)\n"
    "  --alertmanager.timeout=DURATION  per POST (default 10s)\n"
    "  --web.external-url=URL         base of the alerts' generatorURL\n"
    "                                 (default http://<listen address>)\n"
    "\n"
    "Draining (docs/draining.md): cordon and drain nodes whose predicted risk stays\n"
    "high, within safety budgets. DRY RUN and manual approval by default.\n"
    "  --drain.enabled=true|false     run the drain controller (default true)\n"
    "  --drain.config=PATH            YAML drain policy (default: built-in, dry run)\n"
    "  --drain.interval=DURATION      control loop period (default 30s)\n"
    "\n"
    "Failure prediction (docs/model.md): NTAM models score every disk / GPU in\n"
    "the store on a schedule; augur_failure_probability{kind,instance,device,\n"
    "serial|UUID} and augur_node_failure_risk{instance} are written back;\n"
    "GET /api/v1/predictions ranks them with the features and neighbours that\n"
    "weighed most. SIGHUP or POST /api/v1/admin/reload (admin) re-reads the model\n"
    "files; a file that fails validation is refused and the old model keeps\n"
    "serving. POST /api/v1/admin/predict (admin) evaluates at once.\n"
    "  --predict.enabled=true|false   (default true: on when a model is given, and\n"
    "                                 with --demo, which has built-in disk and GPU\n"
    "                                 models trained on the simulator)\n"
    "  --predict.model.disk=FILE      disk model (augur train --kind disk)\n"
    "  --predict.model.gpu=FILE       GPU model (augur train --kind gpu)\n"
    "  --predict.interval.disk=DURATION  (default 1h; 30s with --demo)\n"
    "  --predict.interval.gpu=DURATION   (default 5m; 30s with --demo)\n"
    "  --predict.step.disk=DURATION   window step (default 1d; with --demo 1d divided\n"
    "                                 by --demo.time-scale)\n"
    "  --predict.step.gpu=DURATION    window step (default 1h; with --demo 1h divided\n"
    "                                 by --demo.time-scale)\n"
    "\n"
    "Logging:\n"
    "  --log.level=debug|info|warn|error  logfmt on stderr; debug adds an access log\n"
    "                                 line per request (default info)\n"
    "\n"
    "Endpoints: POST /api/v1/write, POST /api/v1/import/prometheus, /api/v1/query,\n"
    "query_range, series, labels, label/<name>/values, metadata, status/*, export,\n"
    "GET /api/v1/rules, /api/v1/alerts, GET /metrics, /-/healthy, /-/ready; admin:\n"
    "POST /api/v1/admin/tsdb/delete_series, POST /api/v1/admin/tsdb/snapshot,\n"
    "POST /internal/force_flush, POST /-/reload, GET|POST /api/v1/drains[/...],\n"
    "POST /api/v1/admin/reload, POST /api/v1/admin/predict; read:\n"
    "GET /api/v1/predictions?kind=&min_probability=&limit=.\n"
    "\n"
    "SIGTERM/SIGINT: stop accepting, finish in-flight requests, flush and close the\n"
    "store, exit 0. A second signal exits at once (status 1); the write-ahead log\n"
    "keeps every acknowledged sample either way.\n";

/* ---- signals ----------------------------------------------------------- */

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_count;

static void on_signal(int sig)
{
    if (sig_count++ > 0) {
        static const char msg[] = "level=warn msg=\"second signal: exiting immediately\"\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(1);
    }
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(sig_pipe[1], &b, 1);
    (void)w;
}

static void on_sighup(int sig)
{
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(sig_pipe[1], &b, 1);
    (void)w;
}

static int signals_install(void)
{
    if (pipe(sig_pipe)) return -1;
    for (int i = 0; i < 2; i++)
        fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) return -1;
    sa.sa_handler = on_sighup; /* reload: not counted as a stop signal */
    if (sigaction(SIGHUP, &sa, NULL)) return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- flags ------------------------------------------------------------- */

typedef struct {
    api_config_t api;
    const char *auth_file;
    const char *log_level;
    int64_t retention_ms;
    int64_t read_timeout_ms;
    int64_t request_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t sync_interval_ms;
    int64_t ooo_window_ms;
    uint64_t max_bytes;
    tsdb_sync_mode_t sync;
    cli_demo_opts_t demo;
    int storage_path_set;
    const char *detect_enabled;
    const char *detect_threshold;
    api_detect_config_t detect;
    const char *rule_files[64];  /* --rules.file, repeatable */
    size_t nrule_files;
    const char *am_urls[16];     /* --alertmanager.url, repeatable */
    size_t nam_urls;
    const char *config_file;
    const char *rules_defaults;
    int64_t eval_interval_ms;
    int64_t resend_delay_ms;
    unsigned am_queue;
    int64_t am_timeout_ms;
    const char *external_url;
    const char *drain_enabled;
    const char *drain_config;
    int64_t drain_interval_ms;
    const char *predict_enabled;
    api_predict_config_t predict;
} serve_opts_t;

typedef enum { F_STR, F_DUR, F_BYTES, F_U32, F_UINT, F_SYNC } ftype_t;

typedef struct {
    const char *name;
    ftype_t type;
    size_t off;
} flag_t;

#define O(field) offsetof(serve_opts_t, field)

static const flag_t flags[] = {
    {"web.listen-address", F_STR, O(api.listen_address)},
    {"web.auth-file", F_STR, O(auth_file)},
    {"web.tls-cert-file", F_STR, O(api.tls_cert_file)},
    {"web.tls-key-file", F_STR, O(api.tls_key_file)},
    {"web.threads", F_UINT, O(api.threads)},
    {"web.max-connections", F_UINT, O(api.max_connections)},
    {"web.read-timeout", F_DUR, O(read_timeout_ms)},
    {"web.request-timeout", F_DUR, O(request_timeout_ms)},
    {"web.max-request-bytes", F_BYTES, O(api.max_request_bytes)},
    {"web.max-inflight-bytes", F_BYTES, O(api.max_inflight_bytes)},
    {"web.shutdown-timeout", F_DUR, O(shutdown_timeout_ms)},
    {"ingest.max-decompressed-bytes", F_BYTES, O(api.max_decompressed_bytes)},
    {"ingest.max-series-per-request", F_U32, O(api.max_series_per_request)},
    {"ingest.max-samples-per-request", F_U32, O(api.max_samples_per_request)},
    {"ingest.max-labels-per-series", F_U32, O(api.max_labels_per_series)},
    {"ingest.max-label-name-length", F_U32, O(api.max_label_name_len)},
    {"ingest.max-label-value-length", F_U32, O(api.max_label_value_len)},
    {"ingest.max-future", F_DUR, O(api.max_future_ms)},
    {"storage.path", F_STR, O(api.storage_path)},
    {"storage.retention", F_DUR, O(retention_ms)},
    {"storage.sync", F_SYNC, O(sync)},
    {"storage.sync-interval", F_DUR, O(sync_interval_ms)},
    {"storage.out-of-order-window", F_DUR, O(ooo_window_ms)},
    {"storage.max-bytes", F_BYTES, O(max_bytes)},
    {"query.timeout", F_DUR, O(api.query.timeout_ms)},
    {"query.max-samples", F_BYTES, O(api.query.max_samples)},
    {"query.lookback-delta", F_DUR, O(api.query.lookback_ms)},
    {"query.cache-size", F_BYTES, O(api.query.cache_bytes)},
    {"log.level", F_STR, O(log_level)},
    {"detect.enabled", F_STR, O(detect_enabled)},
    {"detect.selector", F_STR, O(detect.selector)},
    {"detect.threshold", F_STR, O(detect_threshold)},
    {"detect.queue-size", F_BYTES, O(detect.queue_bytes)},
    {"detect.persist-interval", F_DUR, O(detect.persist_interval_ms)},
    {"config.file", F_STR, O(config_file)},
    {"rules.defaults", F_STR, O(rules_defaults)},
    {"rules.evaluation-interval", F_DUR, O(eval_interval_ms)},
    {"rules.alert.resend-delay", F_DUR, O(resend_delay_ms)},
    {"alertmanager.queue-capacity", F_UINT, O(am_queue)},
    {"alertmanager.timeout", F_DUR, O(am_timeout_ms)},
    {"web.external-url", F_STR, O(external_url)},
    {"drain.enabled", F_STR, O(drain_enabled)},
    {"drain.config", F_STR, O(drain_config)},
    {"drain.interval", F_DUR, O(drain_interval_ms)},
    {"predict.enabled", F_STR, O(predict_enabled)},
    {"predict.model.disk", F_STR, O(predict.model_path[0])},
    {"predict.model.gpu", F_STR, O(predict.model_path[1])},
    {"predict.interval.disk", F_DUR, O(predict.interval_ms[0])},
    {"predict.interval.gpu", F_DUR, O(predict.interval_ms[1])},
    {"predict.step.disk", F_DUR, O(predict.step_ms[0])},
    {"predict.step.gpu", F_DUR, O(predict.step_ms[1])},
};

static int flag_set(serve_opts_t *o, const flag_t *f, const char *v)
{
    char *base = (char *)o + f->off;
    uint64_t u;
    int64_t d;
    char *e;
    switch (f->type) {
    case F_STR:
        if (!*v) return -1;
        *(const char **)(void *)base = v;
        return 0;
    case F_DUR:
        if (api_duration_parse(v, &d)) return -1;
        *(int64_t *)(void *)base = d;
        return 0;
    case F_BYTES:
        if (!strcmp(f->name, "query.max-samples")) {
            errno = 0;
            u = strtoull(v, &e, 10);
            if (errno || *e || e == v) return -1;
        } else if (api_bytes_parse(v, &u))
            return -1;
        if (!strcmp(f->name, "storage.max-bytes") || !strcmp(f->name, "query.max-samples"))
            *(uint64_t *)(void *)base = u;
        else
            *(size_t *)(void *)base = (size_t)u;
        return 0;
    case F_U32:
    case F_UINT:
        errno = 0;
        u = strtoull(v, &e, 10);
        if (errno || *e || e == v || u == 0 || u > UINT32_MAX) return -1;
        if (f->type == F_U32)
            *(uint32_t *)(void *)base = (uint32_t)u;
        else
            *(unsigned *)(void *)base = (unsigned)u;
        return 0;
    case F_SYNC:
        if (!strcmp(v, "always"))
            *(tsdb_sync_mode_t *)(void *)base = TSDB_SYNC_ALWAYS;
        else if (!strcmp(v, "periodic"))
            *(tsdb_sync_mode_t *)(void *)base = TSDB_SYNC_PERIODIC;
        else
            return -1;
        return 0;
    }
    return -1;
}

/* 0 = run, 1 = exit 0 (help), 2 = usage error. */
static int parse_flags(int argc, char **argv, serve_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "augur serve: unexpected argument '%s'\n", a);
            return 2;
        }
        if (!strncmp(a, "--demo", 6) && (a[6] == 0 || a[6] == '.')) {
            int used = 0;
            if (cli_demo_flag(&o->demo, a, i + 1 < argc ? argv[i + 1] : NULL, &used)) {
                fprintf(stderr, "augur serve: invalid flag or value '%s'\n", a);
                return 2;
            }
            i += used;
            continue;
        }
        if (!strncmp(a, "--storage.path", 14)) o->storage_path_set = 1;
        /* Repeatable flags. */
        if (!strncmp(a, "--rules.file", 12) || !strncmp(a, "--alertmanager.url", 18)) {
            int rf = a[2] == 'r';
            size_t pl = rf ? 12 : 18;
            if (a[pl] == '=' || a[pl] == 0) {
                const char *v = a[pl] == '=' ? a + pl + 1 : (i + 1 < argc ? argv[++i] : NULL);
                size_t *n = rf ? &o->nrule_files : &o->nam_urls;
                size_t cap = rf ? 64 : 16;
                if (!v || !*v || *n >= cap) {
                    fprintf(stderr, "augur serve: %s needs a value (at most %zu)\n",
                            rf ? "--rules.file" : "--alertmanager.url", cap);
                    return 2;
                }
                if (rf)
                    o->rule_files[(*n)++] = v;
                else
                    o->am_urls[(*n)++] = v;
                continue;
            }
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const flag_t *f = NULL;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strlen(flags[k].name) == nl && !strncmp(flags[k].name, a, nl)) f = &flags[k];
        if (!f) {
            fprintf(stderr, "augur serve: unknown flag '--%.*s' (see augur serve --help)\n",
                    (int)nl, a);
            return 2;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "augur serve: flag --%s needs a value\n", f->name);
                return 2;
            }
            v = argv[++i];
        }
        if (flag_set(o, f, v)) {
            fprintf(stderr, "augur serve: invalid value '%s' for --%s\n", v, f->name);
            return 2;
        }
    }
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* tsdb_options_t.replay_progress for the store's open: info lines while a
 * WAL left by a crash is replayed, a warning for damaged segments. */
static void log_replay_progress(void *ctx, const tsdb_replay_progress_t *p)
{
    (void)ctx;
    if (!p->done) {
        api_log(API_LOG_INFO, p->segments_done ? "replaying WAL" : "replaying WAL after a crash",
                "segments_done=%" PRIu64 " segments=%" PRIu64 " samples=%" PRIu64
                " skipped_sealed=%" PRIu64 " elapsed_s=%.1f",
                p->segments_done, p->segments, p->samples, p->skipped, p->elapsed_s);
        return;
    }
    api_log(p->damaged ? API_LOG_WARN : API_LOG_INFO, "WAL replayed",
            "segments=%" PRIu64 " samples=%" PRIu64 " skipped_sealed=%" PRIu64
            " dropped_sealed=%" PRIu64 " damaged_segments=%" PRIu64 " elapsed_s=%.1f",
            p->segments, p->samples, p->skipped, p->dropped, p->damaged, p->elapsed_s);
}

int cli_serve(int argc, char **argv)
{
    serve_opts_t o;
    memset(&o, 0, sizeof o);
    api_config_init(&o.api);
    o.api.version = AUGUR_VERSION;
    o.log_level = "info";
    o.retention_ms = 15LL * 86400000;
    o.read_timeout_ms = 30000;
    o.request_timeout_ms = 300000;
    o.shutdown_timeout_ms = 30000;
    o.sync = TSDB_SYNC_ALWAYS;
    o.sync_interval_ms = 1000;
    o.ooo_window_ms = 3600000;
    cli_demo_opts_init(&o.demo);
    api_detect_config_init(&o.detect);
    o.detect.persist_interval_ms = 5 * 60 * 1000;
    api_predict_config_init(&o.predict);
    int pr = parse_flags(argc, argv, &o);
    if (pr == 1) {
        fputs(serve_usage, stdout);
        return 0;
    }
    if (pr) return 2;
    if (o.demo.enabled && !o.storage_path_set) o.api.storage_path = "./augur-demo-data";
    api_log_level_t lvl;
    if (api_log_level_parse(o.log_level, &lvl)) {
        fprintf(stderr, "augur serve: invalid --log.level '%s' (debug, info, warn, error)\n",
                o.log_level);
        return 2;
    }
    api_log_set_level(lvl);
    if (o.detect_enabled) {
        if (!strcmp(o.detect_enabled, "true"))
            o.detect.enabled = 1;
        else if (!strcmp(o.detect_enabled, "false"))
            o.detect.enabled = 0;
        else {
            fprintf(stderr, "augur serve: --detect.enabled wants true or false\n");
            return 2;
        }
    }
    if (o.detect_threshold) {
        char *e;
        o.detect.threshold = strtod(o.detect_threshold, &e);
        if (*e || !(o.detect.threshold > 0 && o.detect.threshold < 1)) {
            fprintf(stderr, "augur serve: --detect.threshold wants a number in (0, 1)\n");
            return 2;
        }
    }
    if (o.detect.persist_interval_ms == 0) o.detect.persist_interval_ms = -1; /* 0: at exit only */
    int rules_defaults = 1, drain_enabled = 1, predict_enabled = 1;
    const char *const bools[3] = {o.rules_defaults, o.drain_enabled, o.predict_enabled};
    int *const bdst[3] = {&rules_defaults, &drain_enabled, &predict_enabled};
    for (int i = 0; i < 3; i++) {
        if (!bools[i]) continue;
        if (!strcmp(bools[i], "true") || !strcmp(bools[i], "false"))
            *bdst[i] = bools[i][0] == 't';
        else {
            fprintf(stderr, "augur serve: --%s wants true or false\n",
                    i == 2 ? "predict.enabled" : i ? "drain.enabled" : "rules.defaults");
            return 2;
        }
    }
    if (!o.api.tls_cert_file != !o.api.tls_key_file) {
        fprintf(stderr, "augur serve: --web.tls-cert-file and --web.tls-key-file go together\n");
        return 2;
    }
    o.api.connection_timeout_s =
        o.read_timeout_ms <= 0 ? 0 : (unsigned)((o.read_timeout_ms + 999) / 1000);
    o.api.request_timeout_s =
        o.request_timeout_ms <= 0 ? 0 : (unsigned)((o.request_timeout_ms + 999) / 1000);

    char q[600];
    api_auth_t *auth = NULL;
    if (o.auth_file) {
        char err[300] = "";
        int rc = api_auth_load(o.auth_file, &auth, err, sizeof err);
        if (rc) {
            api_log(API_LOG_ERROR, "cannot load auth file", "file=%s err=%s",
                    api_log_quote(q, 300, o.auth_file, strlen(o.auth_file)),
                    api_log_quote(q + 300, 300, err, strlen(err)));
            return 1;
        }
        struct stat st;
        if (!stat(o.auth_file, &st) && (st.st_mode & 0077))
            api_log(API_LOG_WARN, "auth file is readable by group or others", "file=%s mode=%04o",
                    api_log_quote(q, sizeof q, o.auth_file, strlen(o.auth_file)),
                    (unsigned)(st.st_mode & 07777));
        o.api.auth = auth;
    }
    if (signals_install()) {
        api_log(API_LOG_ERROR, "cannot install signal handlers", NULL);
        api_auth_destroy(auth);
        return 1;
    }

    api_server_t *srv = NULL;
    int rc = api_server_start(&o.api, &srv);
    if (!rc) api_server_set_starting(srv, 1); /* ready once everything below is attached */
    if (rc) {
        api_log(API_LOG_ERROR, "cannot start HTTP server", "addr=%s err=%s errno=%s",
                api_log_quote(q, 200, o.api.listen_address, strlen(o.api.listen_address)),
                api_log_quote(q + 200, 200, api_strerror(rc), strlen(api_strerror(rc))),
                api_log_quote(q + 400, 200, strerror(errno), strlen(strerror(errno))));
        api_auth_destroy(auth);
        return 1;
    }
    api_log(API_LOG_INFO, "listening", "addr=%s port=%u tls=%s auth=%s admin=%s",
            o.api.listen_address, api_server_port(srv), o.api.tls_cert_file ? "on" : "off",
            auth ? "on" : "off",
            (api_auth_roles_configured(auth) & API_ROLE_ADMIN) ? "credential"
            : api_server_loopback_only(srv)                    ? "loopback"
                                                               : "disabled");

    tsdb_options_t to;
    tsdb_options_init(&to);
    to.retention_ms = o.retention_ms;
    to.sync_mode = o.sync;
    to.sync_interval_ms = o.sync_interval_ms;
    to.ooo_window_ms = o.ooo_window_ms > 0 ? o.ooo_window_ms : -1;
    to.map_size_cap = o.max_bytes;
    if (mkdir(o.api.storage_path, 0755) && errno != EEXIST) {
        api_log(API_LOG_ERROR, "cannot create storage directory", "path=%s err=%s",
                api_log_quote(q, 300, o.api.storage_path, strlen(o.api.storage_path)),
                api_log_quote(q + 300, 300, strerror(errno), strlen(strerror(errno))));
        api_server_destroy(srv);
        api_auth_destroy(auth);
        return 1;
    }
    api_log(API_LOG_INFO, "opening store", "path=%s retention_ms=%" PRId64 " sync=%s",
            api_log_quote(q, sizeof q, o.api.storage_path, strlen(o.api.storage_path)),
            o.retention_ms, o.sync == TSDB_SYNC_ALWAYS ? "always" : "periodic");
    /* a WAL left by a crash is replayed inside tsdb_open: say how far it is
     * (every 5 s; /-/ready answers 503 until the store is open) */
    to.replay_progress = log_replay_progress;
    to.replay_progress_ms = 5000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tsdb_t *db = NULL;
    rc = tsdb_open(o.api.storage_path, &to, &db);
    if (rc) {
        const char *d = tsdb_last_error_detail();
        api_log(API_LOG_ERROR, "cannot open store", "path=%s err=%s detail=%s",
                api_log_quote(q, 200, o.api.storage_path, strlen(o.api.storage_path)),
                api_log_quote(q + 200, 200, tsdb_strerror(rc), strlen(tsdb_strerror(rc))),
                api_log_quote(q + 400, 200, d, strlen(d)));
        api_server_shutdown(srv, 1000);
        api_server_destroy(srv);
        api_auth_destroy(auth);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    tsdb_stats_t st;
    memset(&st, 0, sizeof st);
    tsdb_stats(db, &st);
    api_log(API_LOG_INFO, "store open",
            "duration_ms=%.1f series=%" PRIu64 " samples=%" PRIu64 " head_samples=%" PRIu64,
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
            st.series, st.samples, st.head_samples);
    api_server_set_store(srv, db);
    if (o.detect.enabled) {
        char sp[4200], derr[300] = "";
        snprintf(sp, sizeof sp, "%s/detect.state", o.api.storage_path);
        if (api_detect_start(srv, db, &o.detect, sp, derr, sizeof derr)) {
            api_log(API_LOG_ERROR, "cannot start anomaly detection", "err=%s",
                    api_log_quote(q, sizeof q, derr, strlen(derr)));
            api_server_shutdown(srv, 1000);
            api_server_destroy(srv);
            tsdb_close(db);
            api_auth_destroy(auth);
            return 1;
        }
    }
    alert_runner_config_t ac;
    memset(&ac, 0, sizeof ac);
    ac.rule_files = o.rule_files;
    ac.nrule_files = o.nrule_files;
    ac.config_file = o.config_file;
    ac.load_defaults = rules_defaults;
    ac.am_urls = o.am_urls;
    ac.nam_urls = o.nam_urls;
    alert_engine_config_init(&ac.engine);
    ac.engine.eval_interval_ms = o.eval_interval_ms;
    ac.engine.resend_delay_ms = o.resend_delay_ms;
    ac.engine.lookback_ms = o.api.query.lookback_ms;
    char ext_url[300];
    if (!o.external_url) {
        snprintf(ext_url, sizeof ext_url, "http://%s%s",
                 o.api.listen_address[0] == ':' ? "localhost" : "", o.api.listen_address);
        o.external_url = ext_url;
    }
    ac.engine.external_url = o.external_url;
    alert_notifier_config_init(&ac.notifier);
    ac.notifier.queue_capacity = o.am_queue;
    ac.notifier.timeout_ms = o.am_timeout_ms;
    ac.drain_enabled = drain_enabled;
    ac.drain_config = o.drain_config;
    ac.drain_interval_ms = o.drain_interval_ms;
    ac.state_dir = o.api.storage_path;
    alert_runner_t *alerting = NULL;
    {
        char aerr[2048] = "";
        if (alert_runner_start(db, &ac, &alerting, aerr, sizeof aerr)) {
            api_log(API_LOG_ERROR, "cannot start alerting", "err=%s",
                    api_log_quote(q, sizeof q, aerr, strlen(aerr)));
            api_server_shutdown(srv, 1000);
            api_server_destroy(srv);
            tsdb_close(db);
            api_auth_destroy(auth);
            return 1;
        }
        api_server_set_alerting(srv, alerting);
        api_log(API_LOG_INFO, "alerting started", "rule_files=%zu alertmanagers=%zu drain=%s",
                o.nrule_files, o.nam_urls,
                !drain_enabled ? "off" : o.drain_config ? "policy file" : "defaults (dry run)");
    }
    api_predict_t *pred = NULL;
    if (predict_enabled && o.demo.enabled) cli_predict_demo_defaults(&o.predict, &o.demo);
    if (predict_enabled && (o.predict.model_path[0] || o.predict.model_path[1] ||
                            o.predict.model_mem[0] || o.predict.model_mem[1])) {
        char perr[1024] = "";
        if (api_predict_start(db, &o.predict, &pred, perr, sizeof perr)) {
            api_log(API_LOG_ERROR, "cannot start failure prediction", "err=%s",
                    api_log_quote(q, sizeof q, perr, strlen(perr)));
            api_server_shutdown(srv, 1000);
            api_server_set_alerting(srv, NULL);
            alert_runner_stop(alerting);
            api_server_destroy(srv);
            tsdb_close(db);
            api_auth_destroy(auth);
            return 1;
        }
        api_server_set_predictor(srv, pred);
    }
    cli_demo_t *demo = NULL;
    if (cli_demo_start(db, &o.demo, &demo))
        api_log(API_LOG_ERROR, "cannot start the demo simulator", NULL);
    api_server_set_starting(srv, 0);
    api_log(API_LOG_INFO, "ready", "detection=%s alerting=on prediction=%s",
            o.detect.enabled ? "on" : "off", pred ? "on" : "off");

    /* Wait for SIGTERM/SIGINT. */
    unsigned char sig = 0;
    for (;;) {
        ssize_t n = read(sig_pipe[0], &sig, 1);
        if (n == 1 && sig == SIGHUP) {
            char rerr[2048] = "";
            if (alert_runner_reload(alerting, rerr, sizeof rerr))
                api_log(API_LOG_ERROR, "reload failed, previous configuration kept", "err=%s",
                        api_log_quote(q, sizeof q, rerr, strlen(rerr)));
            else
                api_log(API_LOG_INFO, "configuration reloaded", "via=%s", "SIGHUP");
            if (pred) {
                if (!api_predict_reload(pred, rerr, sizeof rerr))
                    api_log(API_LOG_INFO, "prediction models reloaded", "via=%s", "SIGHUP");
            }
            continue;
        }
        if (n == 1) break;
        if (n < 0 && errno == EINTR) continue;
        sleep_ms(100);
    }
    api_log(API_LOG_INFO, "shutting down", "signal=%s inflight_timeout_ms=%" PRId64,
            sig == SIGINT ? "SIGINT" : "SIGTERM", o.shutdown_timeout_ms);
    if (api_server_shutdown(srv, o.shutdown_timeout_ms))
        api_log(API_LOG_WARN, "in-flight requests cut off at the shutdown timeout", NULL);
    cli_demo_stop(demo);
    api_server_set_alerting(srv, NULL);
    alert_runner_stop(alerting);
    api_server_set_predictor(srv, NULL);
    api_predict_stop(pred);
    api_server_destroy(srv);
    rc = tsdb_close(db);
    if (rc) {
        const char *d = tsdb_last_error_detail();
        api_log(API_LOG_ERROR, "store close failed (data stays in the WAL)", "err=%s detail=%s",
                api_log_quote(q, 300, tsdb_strerror(rc), strlen(tsdb_strerror(rc))),
                api_log_quote(q + 300, 300, d, strlen(d)));
    }
    api_auth_destroy(auth);
    api_log(API_LOG_INFO, "stopped", NULL);
    return rc ? 1 : 0;
}
