/* notify.c — the Alertmanager v2 sender.
 *
 * One queue and one thread per Alertmanager (each gets every alert: HA
 * pairs deduplicate among themselves, no load balancer in between). A
 * queue holds at most queue_capacity alerts; a full queue drops its oldest
 * alerts (augur_notifications_dropped_total). The thread posts batches of
 * max_batch alerts as a JSON array to <url>/api/v2/alerts with libcurl,
 * retrying a failed POST with exponential backoff (max_attempts in all);
 * a batch that still fails is dropped and counted, as Prometheus does (the
 * next resend carries the alerts again). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert/alert_int.h"

typedef struct {
    struct alert_notifier *n;
    char *url;  /* full POST URL */
    char *base; /* as configured, for the metric label */
    char **q;   /* ring of JSON objects */
    size_t head, len;
    int busy; /* a batch is in flight */
    pthread_t th;
    int started;
    _Atomic uint64_t sent, errors, dropped;
} am_t;

struct alert_notifier {
    alert_notifier_config_t cfg;
    am_t *am;
    size_t nam;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* work or stop */
    pthread_cond_t idle; /* a queue became empty */
    int stopping;
    int64_t stop_deadline_ns;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void alert_notifier_config_init(alert_notifier_config_t *c)
{
    memset(c, 0, sizeof *c);
}

static size_t discard_cb(char *p, size_t sz, size_t nm, void *ud)
{
    tbuf_t *b = ud;
    size_t n = sz * nm;
    if (b->len < 512) tbuf_put(b, p, n < 512 - b->len ? n : 512 - b->len);
    return n;
}

/* One POST. 0 on a 2xx answer. */
static int post_once(am_t *a, const char *body, size_t len, char *why, size_t whylen)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, whylen, "curl_easy_init failed");
        return -1;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    tbuf_t resp = {0};
    curl_easy_setopt(c, CURLOPT_URL, a->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)a->n->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)a->n->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "augur-alerting");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(rc));
        ret = -1;
    } else if (code / 100 != 2) {
        snprintf(why, whylen, "HTTP %ld: %.*s", code, (int)resp.len,
                 resp.len ? (char *)resp.p : "");
        ret = -1;
    }
    tbuf_free(&resp);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return ret;
}

static void *am_thread(void *arg)
{
    am_t *a = arg;
    struct alert_notifier *n = a->n;
    tbuf_t body = {0};
    char **batch = calloc(n->cfg.max_batch, sizeof *batch);
    pthread_mutex_lock(&n->mu);
    for (;;) {
        while (!a->len && !n->stopping)
            pthread_cond_wait(&n->cv, &n->mu);
        if (!a->len || !batch || (n->stopping && mono_ns() > n->stop_deadline_ns)) break;
        size_t k = 0;
        while (a->len && k < n->cfg.max_batch) {
            batch[k++] = a->q[a->head];
            a->head = (a->head + 1) % n->cfg.queue_capacity;
            a->len--;
        }
        a->busy = 1;
        pthread_mutex_unlock(&n->mu);
        body.len = 0;
        int oom = tbuf_put(&body, "[", 1);
        for (size_t i = 0; i < k && !oom; i++)
            oom = (i && tbuf_put(&body, ",", 1)) || tbuf_put(&body, batch[i], strlen(batch[i]));
        oom = oom || tbuf_put(&body, "]", 2); /* with the NUL */
        int ok = 0;
        int64_t backoff = n->cfg.backoff_ms;
        char why[600] = "out of memory";
        for (int att = 0; !oom && att < n->cfg.max_attempts; att++) {
            if (!post_once(a, (const char *)body.p, body.len - 1, why, sizeof why)) {
                ok = 1;
                break;
            }
            atomic_fetch_add(&a->errors, 1);
            fprintf(stderr,
                    "level=warn msg=\"alertmanager send failed\" alertmanager=\"%s\" "
                    "attempt=%d alerts=%zu err=\"%s\"\n",
                    a->base, att + 1, k, why);
            if (att + 1 == n->cfg.max_attempts) break;
            /* Back off, but wake up for a stop past its deadline. */
            pthread_mutex_lock(&n->mu);
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += backoff / 1000;
            dl.tv_nsec += (backoff % 1000) * 1000000;
            if (dl.tv_nsec >= 1000000000) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000;
            }
            int stop = 0;
            while (!stop) {
                if (n->stopping && mono_ns() > n->stop_deadline_ns)
                    stop = 1;
                else if (pthread_cond_timedwait(&n->cv, &n->mu, &dl))
                    break;
            }
            pthread_mutex_unlock(&n->mu);
            if (stop) break;
            backoff *= 2;
        }
        if (ok)
            atomic_fetch_add(&a->sent, k);
        else
            atomic_fetch_add(&a->dropped, k);
        for (size_t i = 0; i < k; i++)
            free(batch[i]);
        pthread_mutex_lock(&n->mu);
        a->busy = 0;
        if (!a->len) pthread_cond_broadcast(&n->idle);
    }
    a->busy = 0;
    pthread_cond_broadcast(&n->idle);
    pthread_mutex_unlock(&n->mu);
    free(batch);
    tbuf_free(&body);
    return NULL;
}

int alert_notifier_start(const alert_notifier_config_t *cfg, alert_notifier_t **out)
{
    if (!cfg || !out) return ALERT_EINVAL;
    *out = NULL;
    for (size_t i = 0; i < cfg->nurls; i++)
        if (strncmp(cfg->urls[i], "http://", 7) && strncmp(cfg->urls[i], "https://", 8))
            return ALERT_EINVAL;
    pthread_once(&curl_once, curl_init_once);
    alert_notifier_t *n = calloc(1, sizeof *n);
    if (!n) return ALERT_ENOMEM;
    n->cfg = *cfg;
    if (!n->cfg.queue_capacity) n->cfg.queue_capacity = 10000;
    if (!n->cfg.max_batch) n->cfg.max_batch = 64;
    if (n->cfg.timeout_ms <= 0) n->cfg.timeout_ms = 10000;
    if (n->cfg.max_attempts <= 0) n->cfg.max_attempts = 3;
    if (n->cfg.backoff_ms <= 0) n->cfg.backoff_ms = 500;
    n->cfg.urls = NULL;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    pthread_cond_init(&n->idle, NULL);
    n->am = calloc(cfg->nurls ? cfg->nurls : 1, sizeof *n->am);
    if (!n->am) {
        alert_notifier_stop(n, 0);
        return ALERT_ENOMEM;
    }
    for (size_t i = 0; i < cfg->nurls; i++) {
        am_t *a = &n->am[n->nam++];
        a->n = n;
        const char *u = cfg->urls[i];
        size_t ul = strlen(u);
        while (ul && u[ul - 1] == '/')
            ul--;
        a->base = alert_strndup(u, ul);
        a->url = malloc(ul + 16);
        a->q = calloc(n->cfg.queue_capacity, sizeof *a->q);
        if (!a->base || !a->url || !a->q) {
            alert_notifier_stop(n, 0);
            return ALERT_ENOMEM;
        }
        if (ul >= 14 && !strcmp(a->base + ul - 14, "/api/v2/alerts"))
            snprintf(a->url, ul + 16, "%s", a->base);
        else
            snprintf(a->url, ul + 16, "%s/api/v2/alerts", a->base);
        if (pthread_create(&a->th, NULL, am_thread, a)) {
            alert_notifier_stop(n, 0);
            return ALERT_ETHREAD;
        }
        a->started = 1;
    }
    *out = n;
    return 0;
}

void alert_notifier_stop(alert_notifier_t *n, int64_t timeout_ms)
{
    if (!n) return;
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    n->stop_deadline_ns = mono_ns() + (timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    for (size_t i = 0; i < n->nam; i++) {
        am_t *a = &n->am[i];
        if (a->started) pthread_join(a->th, NULL);
        for (size_t k = 0; a->q && k < a->len; k++)
            free(a->q[(a->head + k) % n->cfg.queue_capacity]);
        free(a->q);
        free(a->url);
        free(a->base);
    }
    free(n->am);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    pthread_cond_destroy(&n->idle);
    free(n);
}

void alert_notifier_send(alert_notifier_t *n, const alert_outbox_t *o)
{
    if (!n || !o || !o->n) return;
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->nam; i++) {
        am_t *a = &n->am[i];
        for (size_t k = 0; k < o->n; k++) {
            char *s = alert_strdup(o->v[k]);
            if (!s) {
                atomic_fetch_add(&a->dropped, 1);
                continue;
            }
            if (a->len == n->cfg.queue_capacity) { /* drop the oldest */
                free(a->q[a->head]);
                a->head = (a->head + 1) % n->cfg.queue_capacity;
                a->len--;
                atomic_fetch_add(&a->dropped, 1);
            }
            a->q[(a->head + a->len) % n->cfg.queue_capacity] = s;
            a->len++;
        }
    }
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

int alert_notifier_wait_idle(alert_notifier_t *n, int64_t timeout_ms)
{
    if (!n) return 0;
    int64_t dl = mono_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&n->mu);
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < n->nam; i++)
            busy |= n->am[i].len || n->am[i].busy;
        if (!busy) break;
        if (mono_ns() > dl) {
            pthread_mutex_unlock(&n->mu);
            return -1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&n->idle, &n->mu, &ts);
    }
    pthread_mutex_unlock(&n->mu);
    return 0;
}

void alert_notifier_stats(alert_notifier_t *n, alert_notifier_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (!n) return;
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->nam; i++) {
        st->sent += atomic_load(&n->am[i].sent);
        st->errors += atomic_load(&n->am[i].errors);
        st->dropped += atomic_load(&n->am[i].dropped);
        st->queue_length += n->am[i].len;
    }
    pthread_mutex_unlock(&n->mu);
}

int alert_notifier_metrics_render(alert_notifier_t *n, tbuf_t *out)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"augur_notifications_sent_total", "counter",
         "Alerts delivered to an Alertmanager (2xx answer)."},
        {"augur_notifications_errors_total", "counter",
         "Failed POSTs to an Alertmanager (each attempt)."},
        {"augur_notifications_dropped_total", "counter",
         "Alerts dropped: queue full (oldest first) or every attempt failed."},
        {"augur_notifications_queue_length", "gauge", "Alerts waiting to be sent."},
    };
    if (!n) return 0;
    pthread_mutex_lock(&n->mu);
    int rc = 0;
    for (size_t k = 0; k < 4 && !rc; k++) {
        rc = alert_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                          m[k].type);
        for (size_t i = 0; i < n->nam && !rc; i++) {
            am_t *a = &n->am[i];
            uint64_t v = k == 0   ? atomic_load(&a->sent)
                         : k == 1 ? atomic_load(&a->errors)
                         : k == 2 ? atomic_load(&a->dropped)
                                  : a->len;
            rc = alert_printf(out, "%s{alertmanager=", m[k].name) || alert_json_str(out, a->url) ||
                 alert_printf(out, "} %llu\n", (unsigned long long)v);
        }
    }
    if (!rc)
        rc = alert_printf(out,
                          "# HELP augur_notifications_queue_capacity Capacity of each queue.\n"
                          "# TYPE augur_notifications_queue_capacity gauge\n"
                          "augur_notifications_queue_capacity %zu\n"
                          "# HELP augur_notifications_alertmanagers_discovered Alertmanagers "
                          "configured.\n# TYPE augur_notifications_alertmanagers_discovered "
                          "gauge\naugur_notifications_alertmanagers_discovered %zu\n",
                          n->cfg.queue_capacity, n->nam);
    pthread_mutex_unlock(&n->mu);
    return rc;
}
