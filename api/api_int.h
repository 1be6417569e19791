/*
 * api_int.h — internals shared by the files of api/ (not a public header).
 */
#ifndef AUGUR_API_INT_H
#define AUGUR_API_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api/anomaly.h"
#include "api/auth.h"
#include "api/log.h"
#include "api/metrics.h"
#include "api/predictions.h"
#include "api/server.h"
#include "ingest/rw.h"
#include "ingest/textparse.h"
#include "tsdb/tsdb_util.h"

/* Per-thread scratch for the ingest handlers: decoders and buffers that
 * grow to the largest request seen and are then reused, so a steady stream
 * of requests allocates nothing per request beyond its body. */
typedef struct api_ws {
    rw_decoder_t *rw;
    textparse_t *tp;
    uint8_t *outcomes; /* one tsdb_outcome_t per appended sample */
    size_t outcomes_cap;
    tsdb_series_in_t *fseries; /* series with future samples filtered out */
    size_t fseries_cap;
    tsdb_sample_t *fsamples;
    size_t fsamples_cap;
    uint32_t *findex;       /* request position of each fseries[i] */
    tbuf_t msg;             /* error report being built */
    tsdb_label_t extra[32]; /* ?extra_label= pairs */
    struct api_ws *next;    /* free list */
} api_ws_t;

struct api_server {
    api_config_t cfg;
    struct MHD_Daemon *d;
    _Atomic(tsdb_t *) db; /* NULL until the store is open: not ready */
    _Atomic int stopping; /* shutdown began: refuse new requests */
    _Atomic int starting; /* store open, components still attaching: not ready yet */
    unsigned port;
    int loopback_only;
    unsigned auth_roles;      /* roles that have at least one credential */
    char *tls_cert, *tls_key; /* PEM contents (libmicrohttpd wants memory) */
    rw_options_t rwopt;
    api_metrics_t m;
    pthread_mutex_t ws_mu;
    api_ws_t *ws_free;        /* idle workspaces */
    pthread_mutex_t admin_mu; /* one admin operation at a time */
    _Atomic(api_detect_t *) det; /* anomaly detection (api/anomaly.c); NULL = off */
    _Atomic(struct alert_runner *) alerting; /* rules + drains (api/alerts.c); NULL = off */
    _Atomic(struct api_predict *) pred; /* failure predictor (api/predictions.c); NULL = off */
};

/* Route families: which handler, which methods, which role. */
typedef enum {
    API_R_NOT_FOUND = 0,
    API_R_HEALTHY,
    API_R_READY,
    API_R_METRICS,
    API_R_WRITE,
    API_R_IMPORT,
    API_R_QAPI,
    API_R_DELETE_SERIES,
    API_R_SNAPSHOT,
    API_R_FLUSH,
    API_R_ANOMALIES,
    API_R_FAILURES, /* failures.c */
    API_R_RELOAD,   /* alerts.c: POST /-/reload */
    API_R_RULES,    /* alerts.c: GET /api/v1/rules */
    API_R_ALERTS,   /* alerts.c: GET /api/v1/alerts */
    API_R_DRAINS,   /* drains.c: /api/v1/drains[/...] */
    API_R_PREDICTIONS,  /* predictions.c: GET /api/v1/predictions */
    API_R_MODEL_RELOAD, /* predictions.c: POST /api/v1/admin/reload */
    API_R_PREDICT_NOW,  /* predictions.c: POST /api/v1/admin/predict */
} api_route_t;

typedef struct {
    uint32_t name, value; /* offsets into api_req_t.pbuf (NUL-terminated) */
} api_param_t;

#define API_MAX_PARAMS 256

/* One request, from its first byte to its completion callback. */
typedef struct api_req {
    api_server_t *s;
    api_route_t route;
    api_handler_t h; /* metrics label */
    const char *url; /* borrowed from libmicrohttpd for the request */
    const char *method;
    const char *qpath;  /* query API path relative to /api/v1/ */
    int rw_version;     /* 1 or 2 for API_R_WRITE */
    uint64_t t0_ns;     /* CLOCK_MONOTONIC at the first call */
    tbuf_t body;        /* request body, at most max_request_bytes */
    size_t body_cap;    /* cap for this route */
    int64_t reserved;   /* bytes held in the in-flight budget */
    uint64_t discarded; /* body bytes thrown away after an overflow */
    size_t body_bytes;  /* body bytes received */
    int too_large;      /* body over the cap: answer 413 */
    int overloaded;     /* in-flight budget spent: answer 503 */
    int responded;      /* response queued */
    unsigned code;      /* status sent */
    size_t resp_bytes;
    /* Parameters (query string then form body), for the query API. */
    tbuf_t pbuf;
    api_param_t params[API_MAX_PARAMS];
    size_t nparams;
    int params_truncated;
} api_req_t;

/* A response being built: status, JSON or text body, a few headers. */
typedef struct {
    unsigned code;
    tbuf_t body;       /* handed to libmicrohttpd (freed by it) */
    const char *ctype; /* static */
    const char *hname[6];
    char hval[6][96];
    int nh;
} api_resp_t;

/* ---- server.c ---- */
uint64_t api_now_ns(void); /* CLOCK_MONOTONIC */
int64_t api_wall_ms(void); /* CLOCK_REALTIME, milliseconds */
void api_resp_header(api_resp_t *rs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prometheus-style JSON error body: {"status":"error","errorType":..,"error":..}. */
void api_resp_error(api_resp_t *rs, unsigned code, const char *etype, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with a message of known length (may hold newlines, quotes). */
void api_resp_error_n(api_resp_t *rs, unsigned code, const char *etype, const char *msg,
                      size_t len);
/* Append s (len bytes) JSON-escaped, without quotes. */
int api_json_escape(tbuf_t *b, const char *s, size_t len);
const char *api_req_param(api_req_t *r, const char *name, size_t idx);
/* Header value of the request, or NULL. */
const char *api_req_header(struct MHD_Connection *c, const char *name);

/* ---- ingest.c ---- */
void api_handle_write(api_req_t *r, struct MHD_Connection *c, api_ws_t *ws, tsdb_t *db,
                      api_resp_t *rs);
void api_handle_import(api_req_t *r, struct MHD_Connection *c, api_ws_t *ws, tsdb_t *db,
                       api_resp_t *rs);
/* Check the remote-write headers before the body is read: 0 and sets
 * r->rw_version, or fills rs with the 415 answer and returns -1. */
int api_write_precheck(api_req_t *r, struct MHD_Connection *c, api_resp_t *rs);
int api_import_precheck(api_req_t *r, struct MHD_Connection *c, api_resp_t *rs);

/* ---- failures.c ---- */
/* POST (write role) records events; GET (read role) lists them. */
void api_handle_failures(api_req_t *r, tsdb_t *db, api_resp_t *rs);

/* ---- alerts.c, drains.c ---- */
void api_handle_alerting(api_req_t *r, api_resp_t *rs); /* rules, alerts, reload */
void api_handle_drains(api_req_t *r, api_resp_t *rs);
int api_alerting_metrics_render(api_server_t *s, tbuf_t *out);

/* ---- predictions.c ---- */
void api_handle_predictions(api_req_t *r, api_resp_t *rs);

/* ---- admin.c ---- */
void api_handle_delete_series(api_req_t *r, tsdb_t *db, api_resp_t *rs);
void api_handle_snapshot(api_req_t *r, tsdb_t *db, api_resp_t *rs);
void api_handle_flush(api_req_t *r, tsdb_t *db, api_resp_t *rs);

/* Parse one series selector (`name{a="b",c=~"d"}`) into matchers whose
 * strings live in arena (NUL-terminated; the pointers are fixed up after
 * parsing so the arena may not be appended to afterwards). Returns the
 * number of matchers, or -1 with err set. */
int api_selector_parse(const char *s, size_t len, tsdb_matcher_t *m, size_t mcap, tbuf_t *arena,
                       char *err, size_t errcap);

#endif
