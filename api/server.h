/*
 * server.h — augur's HTTP server (libmicrohttpd).
 *
 * Endpoints (docs/serve.md has the details and examples):
 *
 *   POST /api/v1/write                     remote write 1.0 and 2.0 (snappy)
 *   POST /api/v1/import/prometheus         text exposition / OpenMetrics
 *   GET|POST /api/v1/{query,query_range,series,labels,label/<n>/values,
 *                     metadata,status/buildinfo,status/tsdb,export}
 *                                          Prometheus query API (query/)
 *   POST /api/v1/admin/tsdb/delete_series  admin: delete series by match[]
 *   POST /api/v1/admin/tsdb/snapshot       admin: backup into <storage>/snapshots/
 *   POST /internal/force_flush             admin: seal the head into LMDB
 *   GET  /metrics                          augur's own metrics
 *   GET  /-/healthy, /-/ready              liveness, readiness
 *
 * Life cycle:
 *
 *   api_server_start()      bind and serve (the store may not be open yet:
 *                           /-/ready and data endpoints answer 503)
 *   api_server_set_store()  the store is open and recovered: ready, unless
 *                           api_server_set_starting(s, 1) holds readiness
 *                           back until the caller's other parts are attached
 *   api_server_shutdown()   stop accepting, finish in-flight requests
 *   api_server_destroy()    stop the daemon, free; the caller closes the store
 *
 * Threading: requests are served by a fixed pool of libmicrohttpd threads in
 * epoll mode (never a thread per connection). Every request body is buffered
 * under a per-request cap and a server-wide in-flight budget, so memory is
 * bounded whatever the clients do.
 */
#ifndef AUGUR_API_SERVER_H
#define AUGUR_API_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "api/auth.h"
#include "query/query_api.h"
#include "tsdb/tsdb.h"

#define API_ERRNO_MAP(X)                                                                           \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EADDR, -3, "invalid or unresolvable listen address")                                         \
    X(ELISTEN, -4, "could not start the HTTP listener (address in use?)")                          \
    X(ETLS, -5, "TLS certificate or key unreadable, or TLS unsupported by libmicrohttpd")          \
    X(ETIMEOUT, -6, "in-flight requests did not finish in time")

typedef enum {
#define API_ERR_ENUM_(name, code, msg) API_##name = code,
    API_ERRNO_MAP(API_ERR_ENUM_)
#undef API_ERR_ENUM_
} api_err_t;

/* Static message for an API_E* code; never NULL. */
const char *api_strerror(int err);

typedef struct {
    const char *listen_address; /* "host:port", "[v6]:port" or ":port"; port 0 = any free port */
    const char *storage_path;   /* store directory (snapshots go under it) */
    const char *tls_cert_file;  /* PEM; both or neither with tls_key_file */
    const char *tls_key_file;
    const api_auth_t *auth;           /* borrowed; NULL = no credentials */
    const char *version;              /* for augur_build_info; static string */
    unsigned threads;                 /* libmicrohttpd pool; 0 = max(4, CPUs) */
    unsigned max_connections;         /* 0 = 1024 */
    unsigned connection_timeout_s;    /* idle/slow connection timeout; 0 = 30 */
    unsigned request_timeout_s;       /* a body must arrive within this; 0 = 300 */
    size_t max_request_bytes;         /* wire body cap (compressed); 0 = 32 MiB */
    size_t max_decompressed_bytes;    /* remote write after snappy; 0 = 32 MiB */
    size_t max_inflight_bytes;        /* all buffered bodies together; 0 = 256 MiB */
    uint32_t max_series_per_request;  /* 0 = 100,000 */
    uint32_t max_samples_per_request; /* 0 = 1,000,000 */
    uint32_t max_labels_per_series;   /* 0 = 64 */
    uint32_t max_label_name_len;      /* 0 = 256 */
    uint32_t max_label_value_len;     /* 0 = 4096 */
    int64_t max_future_ms;        /* samples further ahead of the clock are refused; 0 = 10 min */
    unsigned max_reported_errors; /* series/lines named in a 400 body; 0 = 10 */
    qapi_limits_t query;          /* passed to the query API */
} api_config_t;

/* Fill *c with the defaults above (listen_address ":9201",
 * storage_path "./augur-data"). */
void api_config_init(api_config_t *c);

typedef struct api_server api_server_t;

/* Start serving. The configuration strings and auth are borrowed for the
 * life of the server. Errors: API_EINVAL, API_ENOMEM, API_EADDR,
 * API_ELISTEN, API_ETLS. */
int api_server_start(const api_config_t *cfg, api_server_t **out);

/* The TCP port actually bound (useful with port 0). */
unsigned api_server_port(const api_server_t *s);

/* Is every listener on a loopback address? (Admin endpoints without an
 * admin credential are allowed only then.) */
int api_server_loopback_only(const api_server_t *s);

/* Attach the open store and become ready. The store must stay open until
 * api_server_destroy(). */
void api_server_set_store(api_server_t *s, tsdb_t *db);

/* While starting is 1, /-/ready answers 503 even with the store attached
 * (ingestion and queries are already served): `augur serve` sets it before
 * the store opens and clears it once detection, alerting and prediction are
 * attached, so a load balancer or test waiting for ready sees all of them. */
void api_server_set_starting(api_server_t *s, int starting);

/* Stop accepting connections and wait up to timeout_ms for requests in
 * flight to finish. Returns 0, or API_ETIMEOUT if some were still running
 * (api_server_destroy() then cuts them off). */
int api_server_shutdown(api_server_t *s, int64_t timeout_ms);

/* Stop the daemon and free everything. Accepts NULL. */
void api_server_destroy(api_server_t *s);

/* Attach the alerting runner (alert/alert.h: rules, Alertmanager sender,
 * drain controller): serves /api/v1/rules, /api/v1/alerts, POST /-/reload
 * and /api/v1/drains*, and adds its metrics to /metrics. Borrowed: attach
 * NULL before stopping it. (api/alerts.c) */
struct alert_runner;
void api_server_set_alerting(api_server_t *s, struct alert_runner *r);

/* ---- flag values (shared by the serve command and tests) ---------------- */

/* Prometheus-style duration: one or more <integer><unit> with units ms, s,
 * m, h, d, w, y (365 d), largest first, e.g. "15d", "1h30m", "500ms"; "0"
 * alone is 0. Returns 0 and sets *ms, or -1 (syntax, order, overflow). */
int api_duration_parse(const char *s, int64_t *ms);

/* Byte size: an integer with an optional suffix B, KiB/K/KB, MiB/M/MB,
 * GiB/G/GB, TiB/T/TB (all binary: K = 1024). Returns 0 and sets *out, or -1. */
int api_bytes_parse(const char *s, uint64_t *out);
#endif
