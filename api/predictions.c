/*
 * predictions.c — the predictor job of `augur serve` and its endpoints (see predictions.h).
 *
 * Locking: `mu` guards the models, the latest results, the counters and the run requests;
 * `run_mu` is held for a whole evaluation, so a reload (which takes it before swapping) never
 * frees a model under inference. HTTP handlers take only `mu`.
 */
#include "api/predictions.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
#include "models/predict.h"

struct api_predict {
    tsdb_t *db;
    api_predict_config_t cfg;
    pthread_t thr;
    int started;
    pthread_mutex_t mu, run_mu;
    pthread_cond_t cv;   /* wakes the thread (stop, run request) */
    pthread_cond_t done; /* a requested run finished */
    int stop;
    uint64_t run_req, run_done;
    predict_model_t *model[2];
    predict_result_t *last[2];
    uint64_t runs[2], failures[2], reloads, reload_failures;
    double last_seconds[2];
    int64_t last_ms[2];
    char last_err[512];
};

static const char *const kind_str[2] = {"disk", "gpu"};

void api_predict_config_init(api_predict_config_t *c)
{
    memset(c, 0, sizeof *c);
}

static int64_t interval_of(const api_predict_t *p, int k)
{
    int64_t v = p->cfg.interval_ms[k];
    return v > 0 ? v : k ? 300000 : 3600000;
}

/* Load every configured model into out[] (NULL where none). 0 or -1 (err). */
static int load_all(const api_predict_config_t *c, predict_model_t *out[2], char *err, size_t n)
{
    out[0] = out[1] = NULL;
    for (int k = 0; k < 2; k++) {
        int rc = 0;
        if (c->model_path[k])
            rc = predict_model_load(c->model_path[k], (feat_kind_t)k, &out[k], err, n);
        else if (c->model_mem[k])
            rc = predict_model_from_bytes(c->model_mem[k], c->model_mem_len[k], "(built-in)",
                                          (feat_kind_t)k, &out[k], err, n);
        if (rc) {
            predict_model_destroy(out[0]);
            out[0] = NULL;
            return -1;
        }
    }
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One evaluation of kind k at t (run_mu held by the caller). */
static int evaluate(api_predict_t *p, int k, int64_t t, char *err, size_t errcap)
{
    pthread_mutex_lock(&p->mu);
    predict_model_t *m = p->model[k];
    pthread_mutex_unlock(&p->mu);
    if (!m) return 0;
    double t0 = mono_s();
    tsdb_reader_t *r = NULL;
    int rc = tsdb_reader_open(p->db, &r);
    predict_result_t *res = NULL;
    if (rc) {
        snprintf(err, errcap, "cannot open a store reader: %s", tsdb_strerror(rc));
        rc = -1;
    } else {
        predict_config_t pc = {p->cfg.step_ms[k], 0};
        if (predict_run(m, r, t, &pc, &res, err, errcap)) rc = -1;
        tsdb_reader_close(r);
    }
    if (!rc && (rc = predict_result_append(p->db, res))) {
        snprintf(err, errcap, "writing augur_failure_probability: %s", tsdb_strerror(rc));
        rc = -1;
    }
    uint32_t nodes = 0;
    if (!rc) {
        pthread_mutex_lock(&p->mu);
        predict_result_destroy(p->last[k]);
        p->last[k] = res;
        res = NULL;
        /* node risk over the latest result of every kind */
        const predict_result_t *both[2] = {p->last[0], p->last[1]};
        int wrc = predict_node_risk_append(p->db, both, 2, t, &nodes);
        pthread_mutex_unlock(&p->mu);
        if (wrc) {
            snprintf(err, errcap, "writing augur_node_failure_risk: %s", tsdb_strerror(wrc));
            rc = -1;
        }
    }
    predict_result_destroy(res);
    double dt = mono_s() - t0;
    pthread_mutex_lock(&p->mu);
    p->runs[k]++;
    p->last_seconds[k] = dt;
    if (rc) {
        p->failures[k]++;
        snprintf(p->last_err, sizeof p->last_err, "%s", err);
    } else {
        p->last_ms[k] = t;
    }
    uint32_t ndev = p->last[k] ? p->last[k]->n : 0, alarms = 0;
    for (uint32_t i = 0; !rc && i < ndev; i++)
        alarms += p->last[k]->score[i].prob >= p->last[k]->threshold;
    pthread_mutex_unlock(&p->mu);
    char q[600];
    if (rc)
        api_log(API_LOG_ERROR, "prediction failed", "kind=%s err=%s", kind_str[k],
                api_log_quote(q, sizeof q, err, strlen(err)));
    else
        api_log(API_LOG_INFO, "predictions written",
                "kind=%s devices=%u nodes=%u above_threshold=%u duration_ms=%.1f", kind_str[k],
                ndev, nodes, alarms, dt * 1e3);
    return rc;
}

static void *job_main(void *arg)
{
    api_predict_t *p = arg;
    int64_t next[2];
    int64_t now = api_wall_ms();
    for (int k = 0; k < 2; k++)
        next[k] = now + (p->cfg.first_delay_ms > 0 ? p->cfg.first_delay_ms : 0);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->stop) break;
        now = api_wall_ms();
        int due[2] = {0, 0}, any = p->run_req > p->run_done;
        uint64_t req = p->run_req;
        for (int k = 0; k < 2; k++) {
            due[k] = p->model[k] && (any || now >= next[k]);
        }
        if (!due[0] && !due[1]) {
            int64_t wake = INT64_MAX;
            for (int k = 0; k < 2; k++)
                if (p->model[k] && next[k] < wake) wake = next[k];
            if (wake == INT64_MAX) wake = now + 1000;
            if (wake - now > 1000) wake = now + 1000; /* re-read the clock at least every second */
            struct timespec ts;
            ts.tv_sec = (time_t)(wake / 1000);
            ts.tv_nsec = (long)(wake % 1000) * 1000000L;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&p->mu);
        pthread_mutex_lock(&p->run_mu);
        char err[512] = "";
        for (int k = 0; k < 2; k++)
            if (due[k]) {
                evaluate(p, k, api_wall_ms(), err, sizeof err);
                next[k] = api_wall_ms() + interval_of(p, k);
            }
        pthread_mutex_unlock(&p->run_mu);
        pthread_mutex_lock(&p->mu);
        if (any && req > p->run_done) {
            p->run_done = req;
            pthread_cond_broadcast(&p->done);
        }
    }
    p->run_done = p->run_req; /* release waiters */
    pthread_cond_broadcast(&p->done);
    pthread_mutex_unlock(&p->mu);
    tsdb_thread_cleanup();
    return NULL;
}

int api_predict_start(tsdb_t *db, const api_predict_config_t *cfg, api_predict_t **out, char *err,
                      size_t errcap)
{
    *out = NULL;
    api_predict_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    p->db = db;
    p->cfg = *cfg;
    if (load_all(cfg, p->model, err, errcap)) {
        free(p);
        return -1;
    }
    if (!p->model[0] && !p->model[1]) {
        snprintf(err, errcap, "no model: give --predict.model.disk and/or --predict.model.gpu");
        free(p);
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->done, NULL);
    if (pthread_create(&p->thr, NULL, job_main, p)) {
        snprintf(err, errcap, "cannot start the predictor thread");
        api_predict_stop(p);
        return -1;
    }
    p->started = 1;
    char q[600];
    for (int k = 0; k < 2; k++)
        if (p->model[k]) {
            const ntam_hparams_t *hp = ntam_hparams(p->model[k]->b.model);
            api_log(API_LOG_INFO, "prediction model loaded",
                    "kind=%s file=%s checksum=%016" PRIx64 " window=%d horizon_days=%d "
                    "scope=%s interval_ms=%" PRId64,
                    kind_str[k],
                    api_log_quote(q, sizeof q, p->model[k]->path, strlen(p->model[k]->path)),
                    p->model[k]->checksum, hp->window, p->model[k]->b.horizon,
                    feat_scope_name((feat_scope_t)p->model[k]->b.scope), interval_of(p, k));
        }
    *out = p;
    return 0;
}

void api_predict_stop(api_predict_t *p)
{
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thr, NULL);
    }
    for (int k = 0; k < 2; k++) {
        predict_model_destroy(p->model[k]);
        predict_result_destroy(p->last[k]);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done);
    free(p);
}

int api_predict_reload(api_predict_t *p, char *err, size_t errcap)
{
    if (!p) {
        snprintf(err, errcap, "the predictor is not running");
        return -1;
    }
    predict_model_t *nm[2];
    if (load_all(&p->cfg, nm, err, errcap)) {
        pthread_mutex_lock(&p->mu);
        p->reload_failures++;
        pthread_mutex_unlock(&p->mu);
        char q[600];
        api_log(API_LOG_ERROR, "model reload refused, previous models keep serving", "err=%s",
                api_log_quote(q, sizeof q, err, strlen(err)));
        return -1;
    }
    pthread_mutex_lock(&p->run_mu);
    pthread_mutex_lock(&p->mu);
    predict_model_t *old[2] = {p->model[0], p->model[1]};
    p->model[0] = nm[0];
    p->model[1] = nm[1];
    p->reloads++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->run_mu);
    for (int k = 0; k < 2; k++) {
        if (nm[k])
            api_log(API_LOG_INFO, "prediction model reloaded", "kind=%s checksum=%016" PRIx64,
                    kind_str[k], nm[k]->checksum);
        predict_model_destroy(old[k]);
    }
    return 0;
}

int api_predict_run_now(api_predict_t *p, char *err, size_t errcap)
{
    if (!p) {
        snprintf(err, errcap, "the predictor is not running");
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    uint64_t f0 = p->failures[0] + p->failures[1];
    uint64_t want = ++p->run_req;
    pthread_cond_broadcast(&p->cv);
    while (p->run_done < want && !p->stop)
        pthread_cond_wait(&p->done, &p->mu);
    int rc = p->failures[0] + p->failures[1] > f0 ? -1 : 0;
    if (rc) snprintf(err, errcap, "%s", p->last_err);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int api_predict_metrics_render(api_predict_t *p, tbuf_t *out)
{
    if (!p) return 0;
    char b[2048];
    int n = 0;
    pthread_mutex_lock(&p->mu);
    n += snprintf(b + n, sizeof b - (size_t)n,
                  "# HELP augur_predict_runs_total Predictor evaluations, by device kind.\n"
                  "# TYPE augur_predict_runs_total counter\n");
    for (int k = 0; k < 2; k++)
        if (p->model[k])
            n += snprintf(b + n, sizeof b - (size_t)n,
                          "augur_predict_runs_total{kind=\"%s\"} %" PRIu64 "\n", kind_str[k],
                          p->runs[k]);
    n += snprintf(b + n, sizeof b - (size_t)n,
                  "# HELP augur_predict_failures_total Predictor evaluations that failed.\n"
                  "# TYPE augur_predict_failures_total counter\n");
    for (int k = 0; k < 2; k++)
        if (p->model[k])
            n += snprintf(b + n, sizeof b - (size_t)n,
                          "augur_predict_failures_total{kind=\"%s\"} %" PRIu64 "\n", kind_str[k],
                          p->failures[k]);
    n += snprintf(b + n, sizeof b - (size_t)n,
                  "# HELP augur_predict_last_duration_seconds Time of the last evaluation.\n"
                  "# TYPE augur_predict_last_duration_seconds gauge\n");
    for (int k = 0; k < 2; k++)
        if (p->model[k])
            n += snprintf(b + n, sizeof b - (size_t)n,
                          "augur_predict_last_duration_seconds{kind=\"%s\"} %.6f\n", kind_str[k],
                          p->last_seconds[k]);
    n += snprintf(b + n, sizeof b - (size_t)n,
                  "# HELP augur_predict_model_info The model serving, by kind (checksum of the "
                  "file).\n# TYPE augur_predict_model_info gauge\n");
    for (int k = 0; k < 2; k++)
        if (p->model[k])
            n += snprintf(b + n, sizeof b - (size_t)n,
                          "augur_predict_model_info{kind=\"%s\",checksum=\"%016" PRIx64
                          "\",horizon_days=\"%d\"} 1\n",
                          kind_str[k], p->model[k]->checksum, p->model[k]->b.horizon);
    n += snprintf(b + n, sizeof b - (size_t)n,
                  "# HELP augur_predict_reloads_total Model reloads, by result.\n"
                  "# TYPE augur_predict_reloads_total counter\n"
                  "augur_predict_reloads_total{result=\"success\"} %" PRIu64 "\n"
                  "augur_predict_reloads_total{result=\"failure\"} %" PRIu64 "\n",
                  p->reloads, p->reload_failures);
    pthread_mutex_unlock(&p->mu);
    if (n < 0 || (size_t)n >= sizeof b) return -1;
    return tbuf_put(out, b, (size_t)n);
}

/* ---- JSON --------------------------------------------------------------- */

static int jputs(tbuf_t *b, const char *s)
{
    return tbuf_put(b, s, strlen(s));
}

static int jstr(tbuf_t *b, const char *s)
{
    return jputs(b, "\"") || api_json_escape(b, s, strlen(s)) || jputs(b, "\"");
}

static int jfmt(tbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfmt(tbuf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return -1;
    return tbuf_put(b, tmp, (size_t)n);
}

typedef struct {
    int k;
    uint32_t i;
    float p;
} rank_t;

static int rank_cmp(const void *a, const void *b)
{
    const rank_t *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    if (x->k != y->k) return x->k - y->k;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int device_json(tbuf_t *b, const predict_result_t *r, uint32_t i)
{
    const feat_device_t *d = feat_devices_get(r->devices, i);
    const predict_score_t *s = &r->score[i];
    int gpu = r->kind == FEAT_KIND_GPU;
    if (jputs(b, "{\"kind\":") || jstr(b, kind_str[gpu]) || jputs(b, ",\"instance\":") ||
        jstr(b, d->instance) || jputs(b, ",\"device\":") || jstr(b, d->device) ||
        jputs(b, gpu ? ",\"UUID\":" : ",\"serial\":") || jstr(b, d->id) ||
        jputs(b, ",\"model\":") || jstr(b, d->model) || jputs(b, ",\"rack\":") ||
        jstr(b, d->rack) || jputs(b, ",\"pod\":") || jstr(b, d->pod) ||
        jfmt(b, ",\"probability\":%.6g,\"alarm\":%s,\"time\":%.3f,\"horizon_days\":%d", s->prob,
             s->prob >= r->threshold ? "true" : "false", (double)r->t_ms / 1e3, r->horizon) ||
        jputs(b, ",\"features\":["))
        return -1;
    for (int f = 0; f < s->nfeat; f++)
        if ((f && jputs(b, ",")) || jputs(b, "{\"name\":") ||
            jstr(b, feat_name(r->kind, s->feat[f].feature)) ||
            jfmt(b, ",\"value\":%.4g}", s->feat[f].value))
            return -1;
    if (jfmt(b, "],\"no_neighbour_weight\":%.4g,\"neighbours\":[", s->slot_weight)) return -1;
    for (int k = 0; k < s->nnb; k++) {
        const feat_device_t *nd = feat_devices_get(r->devices, s->nb[k].device);
        /* with a rack or pod scope a neighbour may sit on another node: name its instance */
        if ((k && jputs(b, ",")) || jputs(b, "{\"instance\":") || jstr(b, nd->instance) ||
            jputs(b, ",\"device\":") || jstr(b, nd->device) ||
            jputs(b, gpu ? ",\"UUID\":" : ",\"serial\":") || jstr(b, nd->id) ||
            jfmt(b, ",\"weight\":%.4g,\"probability\":%.6g}", s->nb[k].weight,
                 r->score[s->nb[k].device].prob))
            return -1;
    }
    return jputs(b, "]}");
}

int api_predict_list_json(api_predict_t *p, const char *kind, const char *min_p, const char *limit,
                          tbuf_t *body, unsigned *status)
{
    *status = 400;
    int want[2] = {1, 1};
    if (kind && *kind) {
        if (!strcmp(kind, "disk"))
            want[1] = 0;
        else if (!strcmp(kind, "gpu"))
            want[0] = 0;
        else {
            *status = 400;
            return jputs(body, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":"
                               "\"kind must be disk or gpu\"}\n");
        }
    }
    double minp = 0;
    long lim = 100;
    char *e;
    if (min_p && *min_p) {
        minp = strtod(min_p, &e);
        if (*e || !(minp >= 0 && minp <= 1))
            return jputs(body, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":"
                               "\"min_probability must be a number in [0, 1]\"}\n");
    }
    if (limit && *limit) {
        errno = 0;
        lim = strtol(limit, &e, 10);
        if (errno || *e || lim < 0)
            return jputs(body, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":"
                               "\"limit must be a non-negative integer\"}\n");
        if (lim == 0) lim = 1L << 30; /* 0: no limit */
    }
    if (!p) {
        *status = 503;
        return jputs(body, "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":"
                           "\"failure prediction is not running (no model: see "
                           "--predict.model.disk, --predict.model.gpu)\"}\n");
    }
    *status = 200;
    pthread_mutex_lock(&p->mu);
    size_t total = 0;
    for (int k = 0; k < 2; k++)
        if (want[k] && p->last[k]) total += p->last[k]->n;
    rank_t *rk = malloc((total ? total : 1) * sizeof *rk);
    int rc = -1;
    if (!rk) goto out;
    size_t m = 0;
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; want[k] && p->last[k] && i < p->last[k]->n; i++)
            if (p->last[k]->score[i].prob >= minp)
                rk[m++] = (rank_t){k, i, p->last[k]->score[i].prob};
    qsort(rk, m, sizeof *rk, rank_cmp);
    if (jputs(body, "{\"status\":\"success\",\"data\":{\"models\":[")) goto out;
    int first = 1;
    for (int k = 0; k < 2; k++) {
        if (!want[k] || !p->model[k]) continue;
        const predict_result_t *r = p->last[k];
        if ((!first && jputs(body, ",")) || jputs(body, "{\"kind\":") || jstr(body, kind_str[k]) ||
            jputs(body, ",\"file\":") || jstr(body, p->model[k]->path) ||
            jfmt(body, ",\"checksum\":\"%016" PRIx64 "\",\"horizon_days\":%d,\"threshold\":%.6g",
                 p->model[k]->checksum, p->model[k]->b.horizon, p->model[k]->b.threshold) ||
            jfmt(body, ",\"scope\":\"%s\",\"scope_cap\":%d",
                 feat_scope_name((feat_scope_t)p->model[k]->b.scope), p->model[k]->b.scope_cap) ||
            (r ? jfmt(body, ",\"evaluated_at\":%.3f,\"devices\":%u}", (double)r->t_ms / 1e3, r->n)
               : jputs(body, ",\"evaluated_at\":null,\"devices\":0}")))
            goto out;
        first = 0;
    }
    if (jfmt(body, "],\"total\":%zu,\"predictions\":[", m)) goto out;
    for (size_t j = 0; j < m && (long)j < lim; j++)
        if ((j && jputs(body, ",")) || device_json(body, p->last[rk[j].k], rk[j].i)) goto out;
    rc = jputs(body, "]}}\n");
out:
    pthread_mutex_unlock(&p->mu);
    free(rk);
    return rc;
}

/* ---- HTTP handlers ------------------------------------------------------- */

void api_server_set_predictor(api_server_t *s, api_predict_t *p)
{
    if (s) atomic_store(&s->pred, p);
}

void api_handle_predictions(api_req_t *r, api_resp_t *rs)
{
    api_predict_t *p = atomic_load(&r->s->pred);
    rs->ctype = "application/json";
    if (r->route == API_R_PREDICTIONS) {
        if (api_predict_list_json(p, api_req_param(r, "kind", 0),
                                  api_req_param(r, "min_probability", 0),
                                  api_req_param(r, "limit", 0), &rs->body, &rs->code))
            api_resp_error(rs, 500, "internal", "out of memory");
        return;
    }
    if (!p) {
        api_resp_error(rs, 503, "unavailable",
                       "failure prediction is not running (no model: see --predict.model.disk, "
                       "--predict.model.gpu)");
        return;
    }
    char err[600] = "";
    int rc;
    if (r->route == API_R_MODEL_RELOAD) {
        pthread_mutex_lock(&r->s->admin_mu);
        rc = api_predict_reload(p, err, sizeof err);
        pthread_mutex_unlock(&r->s->admin_mu);
        if (rc) {
            api_resp_error(rs, 400, "bad_data",
                           "model reload refused, previous models keep "
                           "serving: %s",
                           err);
            return;
        }
        api_log(API_LOG_INFO, "prediction models reloaded", "via=%s", "http");
    } else {
        rc = api_predict_run_now(p, err, sizeof err);
        if (rc) {
            api_resp_error(rs, 500, "prediction_failed", "%s", err);
            return;
        }
    }
    rs->code = 200;
    if (jputs(&rs->body, "{\"status\":\"success\"}\n"))
        api_resp_error(rs, 500, "internal", "out of memory");
}
