/* server.c — libmicrohttpd daemon, routing, bodies, auth, probes, /metrics
 * and the query API bridge (see server.h). */
#include "api/api_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

const char *api_strerror(int err)
{
    switch (err) {
#define API_ERR_STR_(name, code, msg)                                                              \
    case code:                                                                                     \
        return msg;
        API_ERRNO_MAP(API_ERR_STR_)
#undef API_ERR_STR_
    }
    return "unknown error";
}

uint64_t api_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t api_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void api_config_init(api_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->listen_address = ":9201";
    c->storage_path = "./augur-data";
    c->query.cache_bytes = 64 * 1024 * 1024;
}

static void config_defaults(api_config_t *c)
{
    if (!c->threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = n > 4 ? (unsigned)n : 4;
    }
    if (!c->max_connections) c->max_connections = 1024;
    if (!c->connection_timeout_s) c->connection_timeout_s = 30;
    if (!c->request_timeout_s) c->request_timeout_s = 300;
    if (!c->max_request_bytes) c->max_request_bytes = 32 * MIB;
    if (!c->max_decompressed_bytes) c->max_decompressed_bytes = 32 * MIB;
    if (!c->max_inflight_bytes) c->max_inflight_bytes = 256 * MIB;
    if (c->max_inflight_bytes < c->max_request_bytes) c->max_inflight_bytes = c->max_request_bytes;
    if (!c->max_series_per_request) c->max_series_per_request = 100000;
    if (!c->max_samples_per_request) c->max_samples_per_request = 1000000;
    if (!c->max_labels_per_series) c->max_labels_per_series = 64;
    if (!c->max_label_name_len) c->max_label_name_len = 256;
    if (!c->max_label_value_len) c->max_label_value_len = 4096;
    if (!c->max_future_ms) c->max_future_ms = 10 * 60 * 1000;
    if (!c->max_reported_errors) c->max_reported_errors = 10;
    if (!c->version) c->version = "unknown";
}

/* ---- JSON and responses ------------------------------------------------ */

int api_json_escape(tbuf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (tbuf_reserve(b, len + 16)) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6];
        size_t n;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            n = 2;
        } else if (c == '\n') {
            memcpy(e, "\\n", 2);
            n = 2;
        } else if (c == '\t') {
            memcpy(e, "\\t", 2);
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            n = 6;
        } else {
            e[0] = (char)c;
            n = 1;
        }
        if (tbuf_put(b, e, n)) return -1;
    }
    return 0;
}

void api_resp_header(api_resp_t *rs, const char *name, const char *fmt, ...)
{
    if (rs->nh >= 6) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->hval[rs->nh], sizeof rs->hval[0], fmt, ap);
    va_end(ap);
    rs->hname[rs->nh++] = name;
}

void api_resp_error_n(api_resp_t *rs, unsigned code, const char *etype, const char *msg, size_t len)
{
    rs->code = code;
    rs->ctype = "application/json";
    rs->body.len = 0;
    static const char a[] = "{\"status\":\"error\",\"errorType\":\"";
    if (tbuf_put(&rs->body, a, sizeof a - 1) || tbuf_put(&rs->body, etype, strlen(etype)) ||
        tbuf_put(&rs->body, "\",\"error\":\"", 11) || api_json_escape(&rs->body, msg, len) ||
        tbuf_put(&rs->body, "\"}\n", 3))
        rs->body.len = 0; /* out of memory: empty body, status still right */
}

void api_resp_error(api_resp_t *rs, unsigned code, const char *etype, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    api_resp_error_n(rs, code, etype, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static void resp_text(api_resp_t *rs, unsigned code, const char *ctype, const char *text)
{
    rs->code = code;
    rs->ctype = ctype;
    rs->body.len = 0;
    if (tbuf_put(&rs->body, text, strlen(text))) rs->body.len = 0;
}

const char *api_req_header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Send rs. Takes the body buffer. */
static enum MHD_Result resp_send(api_req_t *r, struct MHD_Connection *c, api_resp_t *rs)
{
    struct MHD_Response *resp;
    if (rs->body.len) {
        resp = MHD_create_response_from_buffer(rs->body.len, rs->body.p, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            tbuf_free(&rs->body);
            return MHD_NO;
        }
        rs->body.p = NULL;
        r->resp_bytes = rs->body.len;
        rs->body.len = rs->body.cap = 0;
    } else {
        tbuf_free(&rs->body);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
    }
    if (rs->ctype && rs->code != 204) MHD_add_response_header(resp, "Content-Type", rs->ctype);
    for (int i = 0; i < rs->nh; i++)
        MHD_add_response_header(resp, rs->hname[i], rs->hval[i]);
    if (atomic_load(&r->s->stopping)) MHD_add_response_header(resp, "Connection", "close");
    r->code = rs->code;
    r->responded = 1;
    enum MHD_Result ok = MHD_queue_response(c, rs->code, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ---- request parameters (query API) ----------------------------------- */

static int param_add(api_req_t *r, const char *name, size_t nl, const char *val, size_t vl)
{
    if (r->nparams >= API_MAX_PARAMS) {
        r->params_truncated = 1;
        return 0;
    }
    if (r->pbuf.len + nl + vl + 2 > UINT32_MAX) return -1;
    uint32_t no = (uint32_t)r->pbuf.len;
    if (tbuf_put(&r->pbuf, name, nl) || tbuf_put(&r->pbuf, "", 1)) return -1;
    uint32_t vo = (uint32_t)r->pbuf.len;
    if (tbuf_put(&r->pbuf, val, vl) || tbuf_put(&r->pbuf, "", 1)) return -1;
    r->params[r->nparams++] = (api_param_t){no, vo};
    return 0;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    api_req_t *r = cls;
    if (!key) return MHD_YES;
    if (!value) value = "";
    return param_add(r, key, strlen(key), value, strlen(value)) ? MHD_NO : MHD_YES;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode one application/x-www-form-urlencoded component in place. */
static size_t form_unescape(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int h1, h2;
        if (s[i] == '+')
            s[o++] = ' ';
        else if (s[i] == '%' && i + 2 < len + 0 && (h1 = hexval(s[i + 1])) >= 0 &&
                 (h2 = hexval(s[i + 2])) >= 0) {
            s[o++] = (char)(h1 * 16 + h2);
            i += 2;
        } else
            s[o++] = s[i];
    }
    return o;
}

static int parse_form(api_req_t *r)
{
    char *p = (char *)r->body.p, *end = p + r->body.len;
    while (p < end) {
        char *amp = memchr(p, '&', (size_t)(end - p));
        char *e = amp ? amp : end;
        if (e > p) {
            char *eq = memchr(p, '=', (size_t)(e - p));
            char *ne = eq ? eq : e;
            size_t nl = form_unescape(p, (size_t)(ne - p));
            size_t vl = eq ? form_unescape(eq + 1, (size_t)(e - eq - 1)) : 0;
            if (param_add(r, p, nl, eq ? eq + 1 : "", vl)) return -1;
        }
        p = e + 1;
    }
    return 0;
}

const char *api_req_param(api_req_t *r, const char *name, size_t idx)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (!strcmp((const char *)r->pbuf.p + r->params[i].name, name) && idx-- == 0)
            return (const char *)r->pbuf.p + r->params[i].value;
    return NULL;
}

static const char *qapi_get(void *ctx, const char *name, size_t idx)
{
    return api_req_param(ctx, name, idx);
}

/* ---- workspaces ------------------------------------------------------- */

static api_ws_t *ws_acquire(api_server_t *s)
{
    pthread_mutex_lock(&s->ws_mu);
    api_ws_t *w = s->ws_free;
    if (w) s->ws_free = w->next;
    pthread_mutex_unlock(&s->ws_mu);
    if (w) return w;
    w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (rw_decoder_create(&s->rwopt, &w->rw) || textparse_create(&w->tp)) {
        rw_decoder_destroy(w->rw);
        free(w);
        return NULL;
    }
    return w;
}

static void ws_release(api_server_t *s, api_ws_t *w)
{
    if (!w) return;
    pthread_mutex_lock(&s->ws_mu);
    w->next = s->ws_free;
    s->ws_free = w;
    pthread_mutex_unlock(&s->ws_mu);
}

static void ws_destroy(api_ws_t *w)
{
    rw_decoder_destroy(w->rw);
    textparse_destroy(w->tp);
    free(w->outcomes);
    free(w->fseries);
    free(w->fsamples);
    free(w->findex);
    tbuf_free(&w->msg);
    free(w);
}

/* ---- routing ---------------------------------------------------------- */

typedef struct {
    const char *path;
    api_route_t route;
    api_handler_t h;
    const char *allow; /* methods, as in the Allow header */
    unsigned role;     /* API_ROLE_*; 0 = open */
    int needs_store;
} route_def_t;

static const route_def_t routes[] = {
    {"/-/healthy", API_R_HEALTHY, API_H_HEALTHY, "GET, HEAD", 0, 0},
    {"/-/ready", API_R_READY, API_H_READY, "GET, HEAD", 0, 0},
    {"/metrics", API_R_METRICS, API_H_METRICS, "GET", API_ROLE_READ, 0},
    {"/api/v1/write", API_R_WRITE, API_H_WRITE, "POST", API_ROLE_WRITE, 1},
    {"/api/v1/import/prometheus", API_R_IMPORT, API_H_IMPORT, "POST", API_ROLE_WRITE, 1},
    {"/api/v1/admin/tsdb/delete_series", API_R_DELETE_SERIES, API_H_DELETE_SERIES, "POST, PUT",
     API_ROLE_ADMIN, 1},
    {"/api/v1/admin/tsdb/snapshot", API_R_SNAPSHOT, API_H_SNAPSHOT, "POST, PUT", API_ROLE_ADMIN, 1},
    {"/internal/force_flush", API_R_FLUSH, API_H_FLUSH, "GET, POST", API_ROLE_ADMIN, 1},
    {"/api/v1/anomalies", API_R_ANOMALIES, API_H_API_OTHER, "GET", API_ROLE_READ, 1},
    /* GET needs only the read role: see precheck(). */
    {"/api/v1/failures", API_R_FAILURES, API_H_API_OTHER, "GET, POST", API_ROLE_WRITE, 1},
    {"/-/reload", API_R_RELOAD, API_H_API_OTHER, "POST, PUT", API_ROLE_ADMIN, 0},
    {"/api/v1/rules", API_R_RULES, API_H_API_OTHER, "GET", API_ROLE_READ, 1},
    {"/api/v1/alerts", API_R_ALERTS, API_H_API_OTHER, "GET", API_ROLE_READ, 1},
    {"/api/v1/predictions", API_R_PREDICTIONS, API_H_API_OTHER, "GET", API_ROLE_READ, 1},
    {"/api/v1/admin/reload", API_R_MODEL_RELOAD, API_H_API_OTHER, "POST, PUT", API_ROLE_ADMIN, 1},
    {"/api/v1/admin/predict", API_R_PREDICT_NOW, API_H_API_OTHER, "POST, PUT", API_ROLE_ADMIN, 1},
};

/* /api/v1/drains and /api/v1/drains/...: admin (drains.c). */
static const route_def_t drains_route = {"",          API_R_DRAINS,   API_H_API_OTHER,
                                         "GET, POST", API_ROLE_ADMIN, 1};

static const route_def_t qapi_route = {"",          API_R_QAPI,    API_H_API_OTHER,
                                       "GET, POST", API_ROLE_READ, 1};
static const route_def_t notfound_route = {"", API_R_NOT_FOUND, API_H_NOT_FOUND, "", 0, 0};

static api_handler_t qapi_handler(const char *p)
{
    static const struct {
        const char *prefix;
        int exact;
        api_handler_t h;
    } t[] = {
        {"query", 1, API_H_QUERY},         {"query_range", 1, API_H_QUERY_RANGE},
        {"series", 1, API_H_SERIES},       {"labels", 1, API_H_LABELS},
        {"label/", 0, API_H_LABEL_VALUES}, {"metadata", 1, API_H_METADATA},
        {"status/", 0, API_H_STATUS},      {"export", 1, API_H_EXPORT},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].exact ? !strcmp(p, t[i].prefix) : !strncmp(p, t[i].prefix, strlen(t[i].prefix)))
            return t[i].h;
    return API_H_API_OTHER;
}

static const route_def_t *route_find(const char *url, const char **qpath)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) return &routes[i];
    if (!strncmp(url, "/api/v1/drains", 14) && (!url[14] || url[14] == '/')) return &drains_route;
    if (!strncmp(url, "/api/v1/", 8) && qapi_handles(url + 8)) {
        *qpath = url + 8;
        return &qapi_route;
    }
    return &notfound_route;
}

static int method_allowed(const char *allow, const char *method)
{
    size_t ml = strlen(method);
    for (const char *p = allow; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ml && !memcmp(p, method, ml)) return 1;
        if (!e) break;
        p = e + 1;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* ---- auth ------------------------------------------------------------- */

/* 0 when the request may go on, else fills rs (401/403). */
static int auth_check(api_server_t *s, struct MHD_Connection *c, unsigned role, api_resp_t *rs)
{
    if (!role) return 0;
    const api_auth_t *a = s->cfg.auth;
    /* A role without a credential line is open; admin then only on a
     * loopback-only listener. */
    if (!(s->auth_roles & role)) {
        if (role != API_ROLE_ADMIN || s->loopback_only) return 0;
        api_resp_error(rs, 403, "forbidden",
                       "admin endpoints are disabled: configure an admin credential in "
                       "--web.auth-file or listen on a loopback address only");
        return -1;
    }
    const char *h = api_req_header(c, MHD_HTTP_HEADER_AUTHORIZATION);
    unsigned got = api_auth_check(a, h, h ? strlen(h) : 0);
    if (got & role) return 0;
    if (!h) {
        api_resp_error(rs, 401, "unauthorized", "authentication required");
    } else {
        api_resp_error(rs, 401, "unauthorized", "invalid credentials for this endpoint");
    }
    api_resp_header(rs, "WWW-Authenticate", "Bearer realm=\"augur\"");
    return -1;
}

/* ---- body accumulation ------------------------------------------------- */

static int budget_take(api_server_t *s, api_req_t *r, size_t n)
{
    int64_t lim = (int64_t)s->cfg.max_inflight_bytes;
    int64_t prev = atomic_fetch_add(&s->m.inflight_bytes, (int64_t)n);
    if (prev + (int64_t)n > lim) {
        atomic_fetch_sub(&s->m.inflight_bytes, (int64_t)n);
        return -1;
    }
    r->reserved += (int64_t)n;
    return 0;
}

static void budget_release(api_server_t *s, api_req_t *r)
{
    if (r->reserved) atomic_fetch_sub(&s->m.inflight_bytes, r->reserved);
    r->reserved = 0;
}

static void body_drop(api_req_t *r)
{
    tbuf_free(&r->body);
    budget_release(r->s, r);
}

/* Append a chunk; sets too_large/overloaded instead of growing past the
 * limits. Returns -1 when the connection should be cut (a client that keeps
 * sending far past the cap). */
static int body_add(api_req_t *r, const char *data, size_t n)
{
    api_server_t *s = r->s;
    r->body_bytes += n;
    if (r->too_large || r->overloaded) {
        r->discarded += n;
        return r->discarded > 4 * (uint64_t)r->body_cap + 64 * MIB ? -1 : 0;
    }
    if (n > r->body_cap - r->body.len) {
        r->too_large = 1;
        r->discarded = r->body.len + n;
        body_drop(r);
        return 0;
    }
    size_t need = r->body.len + n;
    if ((int64_t)need > r->reserved && budget_take(s, r, need - (size_t)r->reserved)) {
        r->overloaded = 1;
        body_drop(r);
        return 0;
    }
    if (tbuf_put(&r->body, data, n)) {
        r->overloaded = 1; /* out of memory: answer 503, the sender retries */
        body_drop(r);
    }
    return 0;
}

/* ---- handlers ---------------------------------------------------------- */

static void handle_metrics(api_server_t *s, api_resp_t *rs)
{
    rs->code = 200;
    rs->ctype = "text/plain; version=0.0.4; charset=utf-8";
    tsdb_t *db = atomic_load(&s->db);
    int ready = db && !atomic_load(&s->starting) && !atomic_load(&s->stopping);
    if (api_metrics_render(&s->m, db, ready,
                           (int64_t)s->cfg.max_inflight_bytes, &rs->body) ||
        api_detect_metrics_render(atomic_load(&s->det), &rs->body) ||
        api_alerting_metrics_render(s, &rs->body) ||
        api_predict_metrics_render(atomic_load(&s->pred), &rs->body) ||
        (s->cfg.query.cache && qapi_cache_metrics(s->cfg.query.cache, &rs->body)))
        api_resp_error(rs, 500, "internal", "out of memory");
}

static void handle_qapi(api_req_t *r, struct MHD_Connection *c, tsdb_t *db, api_resp_t *rs)
{
    api_server_t *s = r->s;
    if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r) < 0) {
        api_resp_error(rs, 500, "internal", "out of memory");
        return;
    }
    if (!strcmp(r->method, "POST") && r->body.len) {
        const char *ct = api_req_header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
            api_resp_error(rs, 415, "bad_data",
                           "POST bodies must be application/x-www-form-urlencoded");
            return;
        }
        if (parse_form(r)) {
            api_resp_error(rs, 500, "internal", "out of memory");
            return;
        }
    }
    if (r->params_truncated) {
        api_resp_error(rs, 400, "bad_data", "more than %d request parameters", API_MAX_PARAMS);
        return;
    }
    int status = 500;
    int rc =
        qapi_handle(db, r->qpath, qapi_get, r, api_wall_ms(), &s->cfg.query, &rs->body, &status);
    if (rc) {
        api_resp_error(rs, 500, "internal", "query API failed: out of memory");
        return;
    }
    rs->code = (unsigned)status;
    rs->ctype = "application/json";
    if (status == 503) api_resp_header(rs, "Retry-After", "5");
}

static void dispatch(api_req_t *r, struct MHD_Connection *c, api_resp_t *rs)
{
    api_server_t *s = r->s;
    tsdb_t *db = atomic_load(&s->db);
    api_ws_t *ws = NULL;
    switch (r->route) {
    case API_R_HEALTHY:
        resp_text(rs, 200, "text/plain; charset=utf-8", "augur is Healthy.\n");
        return;
    case API_R_READY:
        if (db && !atomic_load(&s->stopping) && !atomic_load(&s->starting))
            resp_text(rs, 200, "text/plain; charset=utf-8", "augur is Ready.\n");
        else
            resp_text(rs, 503, "text/plain; charset=utf-8",
                      !db                            ? "augur is not ready: opening the store.\n"
                      : atomic_load(&s->stopping)   ? "augur is shutting down.\n"
                                                     : "augur is not ready: starting detection, "
                                                       "alerting and prediction.\n");
        return;
    case API_R_METRICS:
        handle_metrics(s, rs);
        return;
    case API_R_RELOAD:
        api_handle_alerting(r, rs);
        return;
    default:
        break;
    }
    if (!db) { /* pre-checked, but the store may not be attached yet */
        api_resp_error(rs, 503, "unavailable", "the store is not open yet");
        api_resp_header(rs, "Retry-After", "5");
        return;
    }
    switch (r->route) {
    case API_R_WRITE:
    case API_R_IMPORT:
        ws = ws_acquire(s);
        if (!ws) {
            api_resp_error(rs, 503, "unavailable", "out of memory");
            api_resp_header(rs, "Retry-After", "1");
            return;
        }
        if (r->route == API_R_WRITE)
            api_handle_write(r, c, ws, db, rs);
        else if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r) < 0)
            api_resp_error(rs, 500, "internal", "out of memory");
        else
            api_handle_import(r, c, ws, db, rs);
        ws_release(s, ws);
        return;
    case API_R_QAPI:
        handle_qapi(r, c, db, rs);
        return;
    case API_R_ANOMALIES:
        if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r) < 0 ||
            api_detect_handle_list(atomic_load(&s->det), api_req_param(r, "since", 0),
                                   api_req_param(r, "min_score", 0), api_req_param(r, "limit", 0),
                                   api_wall_ms(), &rs->body, &rs->code)) {
            api_resp_error(rs, 500, "internal", "out of memory");
            return;
        }
        rs->ctype = "application/json";
        return;
    case API_R_FAILURES:
        if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r) < 0) {
            api_resp_error(rs, 500, "internal", "out of memory");
            return;
        }
        api_handle_failures(r, db, rs);
        return;
    case API_R_RULES:
    case API_R_ALERTS:
        api_handle_alerting(r, rs);
        return;
    case API_R_DRAINS:
        api_handle_drains(r, rs);
        return;
    case API_R_PREDICTIONS:
    case API_R_MODEL_RELOAD:
    case API_R_PREDICT_NOW:
        if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r) < 0) {
            api_resp_error(rs, 500, "internal", "out of memory");
            return;
        }
        api_handle_predictions(r, rs);
        return;
    case API_R_DELETE_SERIES:
    case API_R_SNAPSHOT:
    case API_R_FLUSH:
        if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r) < 0 ||
            (r->body.len && parse_form(r))) {
            api_resp_error(rs, 500, "internal", "out of memory");
            return;
        }
        pthread_mutex_lock(&s->admin_mu);
        if (r->route == API_R_DELETE_SERIES)
            api_handle_delete_series(r, db, rs);
        else if (r->route == API_R_SNAPSHOT)
            api_handle_snapshot(r, db, rs);
        else
            api_handle_flush(r, db, rs);
        pthread_mutex_unlock(&s->admin_mu);
        return;
    default:
        api_resp_error(rs, 404, "not_found", "not found");
        return;
    }
}

/* Checks that need only the request line and headers. 0 = go on reading
 * the body; -1 = rs holds the answer. */
static int precheck(api_req_t *r, struct MHD_Connection *c, const route_def_t *rd, api_resp_t *rs)
{
    api_server_t *s = r->s;
    if (rd->route == API_R_NOT_FOUND) {
        api_resp_error(rs, 404, "not_found", "unknown path %.200s", r->url);
        return -1;
    }
    if (!method_allowed(rd->allow, r->method)) {
        api_resp_error(rs, 405, "bad_data", "method %.16s not allowed for %.200s (allowed: %s)",
                       r->method, r->url, rd->allow);
        api_resp_header(rs, "Allow", "%s", rd->allow);
        return -1;
    }
    unsigned role = rd->role;
    if (rd->route == API_R_FAILURES && strcmp(r->method, "POST")) role = API_ROLE_READ;
    if (auth_check(s, c, role, rs)) return -1;
    if (atomic_load(&s->stopping) && rd->needs_store) {
        api_resp_error(rs, 503, "unavailable", "server is shutting down");
        api_resp_header(rs, "Retry-After", "5");
        return -1;
    }
    if (rd->needs_store && !atomic_load(&s->db)) {
        api_resp_error(rs, 503, "unavailable", "the store is not open yet (recovering)");
        api_resp_header(rs, "Retry-After", "5");
        return -1;
    }
    if (r->route == API_R_WRITE && api_write_precheck(r, c, rs)) return -1;
    if (r->route == API_R_IMPORT && api_import_precheck(r, c, rs)) return -1;
    /* Declared body size: refuse or reserve before reading a byte. */
    const char *cl = api_req_header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *e;
        errno = 0;
        unsigned long long n = strtoull(cl, &e, 10);
        if (errno || e == cl) n = ~0ull;
        if (n > r->body_cap) {
            atomic_fetch_add(&s->m.bodies_too_large, 1);
            api_resp_error(rs, 413, "bad_data",
                           "request body of %llu bytes is over the limit of %zu bytes "
                           "(--web.max-request-bytes)",
                           n, r->body_cap);
            return -1;
        }
        if (n && budget_take(s, r, (size_t)n)) {
            atomic_fetch_add(&s->m.overloaded, 1);
            api_resp_error(rs, 503, "unavailable", "too many request bytes in flight; retry later");
            api_resp_header(rs, "Retry-After", "1");
            return -1;
        }
        if (n && tbuf_reserve(&r->body, (size_t)n)) {
            budget_release(s, r);
            api_resp_error(rs, 503, "unavailable", "out of memory; retry later");
            api_resp_header(rs, "Retry-After", "1");
            return -1;
        }
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    api_server_t *s = cls;
    api_req_t *r = *con_cls;
    api_resp_t rs;
    memset(&rs, 0, sizeof rs);
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->s = s;
        r->url = url;
        r->method = method;
        r->t0_ns = api_now_ns();
        atomic_fetch_add(&s->m.inflight_requests, 1);
        const route_def_t *rd = route_find(url, &r->qpath);
        r->route = rd->route;
        r->h = rd->route == API_R_QAPI ? qapi_handler(r->qpath) : rd->h;
        r->body_cap = s->cfg.max_request_bytes;
        if (precheck(r, c, rd, &rs)) return resp_send(r, c, &rs);
        return MHD_YES;
    }
    if (r->responded) { /* early answer queued: swallow what still comes */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        /* The idle timeout does not stop a client that trickles bytes:
         * bound the whole upload too. */
        if (api_now_ns() - r->t0_ns > (uint64_t)s->cfg.request_timeout_s * 1000000000u) {
            char q[300];
            api_log(API_LOG_INFO, "upload too slow, connection closed", "path=%s received=%zu",
                    api_log_quote(q, sizeof q, url, strlen(url)), r->body_bytes);
            return MHD_NO;
        }
        int cut = body_add(r, upload, *upload_size);
        *upload_size = 0;
        return cut ? MHD_NO : MHD_YES;
    }
    if (r->too_large) {
        atomic_fetch_add(&s->m.bodies_too_large, 1);
        api_resp_error(&rs, 413, "bad_data",
                       "request body over the limit of %zu bytes (--web.max-request-bytes)",
                       r->body_cap);
    } else if (r->overloaded) {
        atomic_fetch_add(&s->m.overloaded, 1);
        api_resp_error(&rs, 503, "unavailable", "too many request bytes in flight; retry later");
        api_resp_header(&rs, "Retry-After", "1");
    } else {
        dispatch(r, c, &rs);
    }
    /* The body is no longer needed: give its budget back before sending. */
    body_drop(r);
    return resp_send(r, c, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    api_server_t *s = cls;
    api_req_t *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    uint64_t dur = api_now_ns() - r->t0_ns;
    unsigned code = r->responded ? r->code : 0;
    api_metrics_request(&s->m, r->h, code, dur);
    if (api_log_enabled(API_LOG_DEBUG) ||
        (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && api_log_enabled(API_LOG_INFO) &&
         r->route != API_R_HEALTHY)) {
        char qu[300], addr[64] = "?";
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
                          sizeof addr);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                          addr, sizeof addr);
        }
        static const char *const toe_names[] = {"ok",       "error",      "timeout",
                                                "shutdown", "read_error", "client_abort"};
        api_log(toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? API_LOG_DEBUG : API_LOG_INFO,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "request" : "request ended early",
                "method=%s path=%s handler=%s code=%u duration_ms=%.3f bytes_in=%zu bytes_out=%zu "
                "remote=%s end=%s",
                r->method, api_log_quote(qu, sizeof qu, r->url, strlen(r->url)),
                api_handler_name(r->h), code, (double)dur / 1e6, r->body_bytes, r->resp_bytes, addr,
                (unsigned)toe < 6 ? toe_names[toe] : "other");
    }
    body_drop(r);
    tbuf_free(&r->pbuf);
    atomic_fetch_sub(&s->m.inflight_requests, 1);
    free(r);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)c;
    (void)socket_context;
    api_server_t *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->m.connections, 1);
    else
        atomic_fetch_sub(&s->m.connections, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
#pragma GCC diagnostic pop
    if (n < 0) return;
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = 0;
    char q[600];
    api_log(API_LOG_DEBUG, "libmicrohttpd", "detail=%s", api_log_quote(q, sizeof q, msg, len));
}

/* ---- start / stop ----------------------------------------------------- */

static char *read_file_all(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = !buf || ferror(f) || n > max;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* Split "host:port", "[v6]:port" or ":port" and resolve. */
static int resolve_listen(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[256], port[16];
    const char *colon;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof host) return -1;
        memcpy(host, addr + 1, (size_t)(rb - addr - 1));
        host[rb - addr - 1] = 0;
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= sizeof host) return -1;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
    }
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port) return -1;
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    if (atoi(port) > 65535) return -1;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = host[0] ? AF_UNSPEC : AF_INET;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) || !res) return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return 0;
}

int api_server_start(const api_config_t *cfg, api_server_t **out)
{
    if (!cfg || !out || !cfg->listen_address) return API_EINVAL;
    *out = NULL;
    api_server_t *s = calloc(1, sizeof *s);
    if (!s) return API_ENOMEM;
    s->cfg = *cfg;
    config_defaults(&s->cfg);
    /* the range-query result cache is the server's own */
    s->cfg.query.cache = NULL;
    if (s->cfg.query.cache_bytes && !(s->cfg.query.cache = qapi_cache_new(s->cfg.query.cache_bytes))) {
        free(s);
        return API_ENOMEM;
    }
    pthread_mutex_init(&s->ws_mu, NULL);
    pthread_mutex_init(&s->admin_mu, NULL);
    api_metrics_init(&s->m, (double)api_wall_ms() / 1000.0, s->cfg.version);
    s->auth_roles = api_auth_roles_configured(s->cfg.auth);
    rw_options_init(&s->rwopt);
    s->rwopt.max_body_bytes = s->cfg.max_decompressed_bytes;
    s->rwopt.max_series = s->cfg.max_series_per_request;
    s->rwopt.max_samples = s->cfg.max_samples_per_request;
    s->rwopt.max_labels_per_series = s->cfg.max_labels_per_series;
    s->rwopt.max_label_name_len = s->cfg.max_label_name_len;
    s->rwopt.max_label_value_len = s->cfg.max_label_value_len;

    struct sockaddr_storage ss;
    socklen_t sl = 0;
    memset(&ss, 0, sizeof ss);
    if (resolve_listen(s->cfg.listen_address, &ss, &sl)) {
        api_server_destroy(s);
        return API_EADDR;
    }
    s->loopback_only = is_loopback(&ss);

    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    int tls = s->cfg.tls_cert_file || s->cfg.tls_key_file;
    if (tls) {
        if (!s->cfg.tls_cert_file || !s->cfg.tls_key_file ||
            MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            api_server_destroy(s);
            return API_ETLS;
        }
        s->tls_cert = read_file_all(s->cfg.tls_cert_file, 1 << 20);
        s->tls_key = read_file_all(s->cfg.tls_key_file, 1 << 20);
        if (!s->tls_cert || !s->tls_key) {
            api_server_destroy(s);
            return API_ETLS;
        }
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem opts[16];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)s->cfg.threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                        (intptr_t)s->cfg.max_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        (intptr_t)s->cfg.connection_timeout_s, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 511, NULL};
    if (tls) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            on_mhd_log, s, MHD_OPTION_ARRAY, opts, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_END);
    if (!s->d) {
        int e = errno;
        api_server_destroy(s);
        errno = e;
        return tls ? API_ETLS : API_ELISTEN;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    *out = s;
    return 0;
}

unsigned api_server_port(const api_server_t *s)
{
    return s ? s->port : 0;
}

int api_server_loopback_only(const api_server_t *s)
{
    return s && s->loopback_only;
}

void api_server_set_store(api_server_t *s, tsdb_t *db)
{
    if (s) atomic_store(&s->db, db);
}

void api_server_set_starting(api_server_t *s, int starting)
{
    if (s) atomic_store(&s->starting, starting ? 1 : 0);
}

int api_server_shutdown(api_server_t *s, int64_t timeout_ms)
{
    if (!s || !s->d) return 0;
    atomic_store(&s->stopping, 1);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    uint64_t deadline = api_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    while (atomic_load(&s->m.inflight_requests) > 0) {
        if (api_now_ns() >= deadline) return API_ETIMEOUT;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

void api_server_destroy(api_server_t *s)
{
    if (!s) return;
    if (s->d) MHD_stop_daemon(s->d);
    api_detect_destroy(atomic_load(&s->det)); /* scores queued so far, state saved */
    while (s->ws_free) {
        api_ws_t *w = s->ws_free;
        s->ws_free = w->next;
        ws_destroy(w);
    }
    pthread_mutex_destroy(&s->ws_mu);
    pthread_mutex_destroy(&s->admin_mu);
    qapi_cache_free(s->cfg.query.cache);
    free(s->tls_cert);
    if (s->tls_key) {
        volatile char *k = s->tls_key;
        for (size_t i = 0; k[i]; i++)
            k[i] = 0;
        free(s->tls_key);
    }
    free(s);
}
