/* runner.c — alerting inside `augur serve`: a thread evaluates the rule
 * groups when due (wall clock), hands alerts to the notifier and ticks the
 * drain controller; reload swaps rules, Alertmanagers and policy in place. */
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert/alert_int.h"

typedef struct {
    int64_t eval_interval_ms;
    alert_kv_t *ext;
    size_t next;
    char **rule_files;
    size_t nrule_files;
    char **am;
    size_t nam;
} pcfg_t;

static void pcfg_free(pcfg_t *c)
{
    alert_kv_free(c->ext, c->next);
    for (size_t i = 0; i < c->nrule_files; i++)
        free(c->rule_files[i]);
    free(c->rule_files);
    for (size_t i = 0; i < c->nam; i++)
        free(c->am[i]);
    free(c->am);
    memset(c, 0, sizeof *c);
}

static int strv_add(char ***v, size_t *n, const char *s)
{
    char **g = realloc(*v, (*n + 1) * sizeof *g);
    if (!g) return -1;
    *v = g;
    if (!(g[*n] = alert_strdup(s))) return -1;
    (*n)++;
    return 0;
}

static yaml_node_t *map_get(alert_yaml_t *y, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = alert_yaml_str(alert_yaml_node(y, p->key));
        if (k && !strcmp(k, key)) return alert_yaml_node(y, p->value);
    }
    return NULL;
}

/* Parse the Prometheus-style config file. */
static int pcfg_load(const char *path, pcfg_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return ALERT_EIO;
    }
    char *buf = malloc((4 << 20) + 1);
    size_t n = buf ? fread(buf, 1, 4 << 20, f) : 0;
    fclose(f);
    if (!buf) return ALERT_ENOMEM;
    alert_yaml_t y;
    char yerr[300];
    if (alert_yaml_load(&y, buf, n, yerr, sizeof yerr)) {
        snprintf(err, errlen, "%s:%s", path, yerr);
        free(buf);
        return ALERT_ECONFIG;
    }
    free(buf);
    int rc = 0;
    yaml_node_t *root = alert_yaml_root(&y), *g = map_get(&y, root, "global"), *v;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl)
        sl[1] = 0;
    else
        dir[0] = 0;
#define CFAIL(n_, msg_)                                                                            \
    do {                                                                                           \
        snprintf(err, errlen, "%s:%d:%d: %s", path, alert_yaml_line(n_), alert_yaml_col(n_),       \
                 msg_);                                                                            \
        rc = ALERT_ECONFIG;                                                                        \
        goto out;                                                                                  \
    } while (0)
    if ((v = map_get(&y, g, "evaluation_interval")) &&
        (alert_duration_parse(alert_yaml_str(v), &c->eval_interval_ms) || c->eval_interval_ms <= 0))
        CFAIL(v, "global.evaluation_interval: not a valid duration");
    if ((v = map_get(&y, g, "external_labels")) && !alert_yaml_is_null(v)) {
        if (v->type != YAML_MAPPING_NODE) CFAIL(v, "global.external_labels: want a mapping");
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
             p++) {
            const char *k = alert_yaml_str(alert_yaml_node(&y, p->key));
            const char *val = alert_yaml_str(alert_yaml_node(&y, p->value));
            if (!k || !val || !alert_label_name_valid(k))
                CFAIL(alert_yaml_node(&y, p->key), "global.external_labels: invalid label");
            if (alert_kv_set(&c->ext, &c->next, k, val)) {
                rc = ALERT_ENOMEM;
                goto out;
            }
        }
        alert_kv_sort(c->ext, c->next);
    }
    if ((v = map_get(&y, root, "rule_files")) && !alert_yaml_is_null(v)) {
        if (v->type != YAML_SEQUENCE_NODE) CFAIL(v, "rule_files: want a list");
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            const char *s = alert_yaml_str(alert_yaml_node(&y, *it));
            if (!s || !*s) CFAIL(alert_yaml_node(&y, *it), "rule_files: want strings");
            char full[8192];
            snprintf(full, sizeof full, "%s%s", s[0] == '/' ? "" : dir, s);
            if (strv_add(&c->rule_files, &c->nrule_files, full)) {
                rc = ALERT_ENOMEM;
                goto out;
            }
        }
    }
    yaml_node_t *ams = map_get(&y, map_get(&y, root, "alerting"), "alertmanagers");
    if (ams && !alert_yaml_is_null(ams)) {
        if (ams->type != YAML_SEQUENCE_NODE) CFAIL(ams, "alerting.alertmanagers: want a list");
        for (yaml_node_item_t *it = ams->data.sequence.items.start;
             it < ams->data.sequence.items.top; it++) {
            yaml_node_t *am = alert_yaml_node(&y, *it);
            const char *scheme = alert_yaml_str(map_get(&y, am, "scheme"));
            const char *prefix = alert_yaml_str(map_get(&y, am, "path_prefix"));
            if (!scheme) scheme = "http";
            if (strcmp(scheme, "http") && strcmp(scheme, "https"))
                CFAIL(am, "alertmanagers: scheme must be http or https");
            if (!prefix) prefix = "";
            yaml_node_t *sc = map_get(&y, am, "static_configs");
            if (!sc || sc->type != YAML_SEQUENCE_NODE)
                CFAIL(am, "alertmanagers: only static_configs are supported");
            for (yaml_node_item_t *s = sc->data.sequence.items.start;
                 s < sc->data.sequence.items.top; s++) {
                yaml_node_t *t = map_get(&y, alert_yaml_node(&y, *s), "targets");
                if (!t || t->type != YAML_SEQUENCE_NODE)
                    CFAIL(alert_yaml_node(&y, *s), "static_configs: want targets: [host:port]");
                for (yaml_node_item_t *ti = t->data.sequence.items.start;
                     ti < t->data.sequence.items.top; ti++) {
                    const char *hp = alert_yaml_str(alert_yaml_node(&y, *ti));
                    if (!hp || !*hp) CFAIL(alert_yaml_node(&y, *ti), "targets: want host:port");
                    char url[4096];
                    snprintf(url, sizeof url, "%s://%s%s%s", scheme, hp,
                             *prefix && prefix[0] != '/' ? "/" : "", prefix);
                    if (strv_add(&c->am, &c->nam, url)) {
                        rc = ALERT_ENOMEM;
                        goto out;
                    }
                }
            }
        }
    }
#undef CFAIL
out:
    alert_yaml_free(&y);
    if (rc) pcfg_free(c);
    return rc;
}

static int load_rules(const alert_runner_config_t *cfg, const pcfg_t *pc, alert_ruleset_t *rs,
                      tbuf_t *errs, size_t *nerrs)
{
    int rc = 0;
    if (cfg->load_defaults) {
        rc = alert_rules_load_buffer(rs, "augur-defaults.yml", alert_default_rules,
                                     alert_default_rules_len, errs, nerrs);
        if (rc == ALERT_ENOMEM) return rc;
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? (pc ? pc->nrule_files : 0) : cfg->nrule_files;
        for (size_t i = 0; i < n; i++) {
            const char *pat = pass ? pc->rule_files[i] : cfg->rule_files[i];
            glob_t g;
            memset(&g, 0, sizeof g);
            int gr = glob(pat, GLOB_NOCHECK, NULL, &g);
            for (size_t k = 0; gr == 0 && k < g.gl_pathc; k++) {
                int r = alert_rules_load_file(rs, g.gl_pathv[k], errs, nerrs);
                if (r == ALERT_ENOMEM) {
                    globfree(&g);
                    return r;
                }
                if (r && !rc) rc = r;
            }
            globfree(&g);
        }
    }
    return rc ? ALERT_ERULES : 0;
}

int alert_config_rules(const alert_runner_config_t *cfg, alert_ruleset_t *rs, tbuf_t *errs,
                       size_t *nerrs)
{
    pcfg_t pc;
    memset(&pc, 0, sizeof pc);
    if (cfg->config_file) {
        char err[600];
        int rc = pcfg_load(cfg->config_file, &pc, err, sizeof err);
        if (rc) {
            if (nerrs) (*nerrs)++;
            if (errs) alert_printf(errs, "%s\n", err);
            return rc;
        }
    }
    int rc = load_rules(cfg, &pc, rs, errs, nerrs);
    pcfg_free(&pc);
    return rc;
}

/* ---- the runner ------------------------------------------------------------ */

struct alert_runner {
    tsdb_t *db;
    alert_runner_config_t cfg;
    alert_engine_t *eng;
    alert_notifier_t *notif;
    drain_t *drain;
    pcfg_t pc;
    alert_kv_t *ext; /* external labels in effect (engine borrows) */
    size_t next;
    pthread_t th, dth; /* rules; drain (its commands may take minutes) */
    int started, dstarted;
    pthread_mutex_t mu; /* reload vs thread */
    pthread_cond_t cv;
    int stop, kick;
    uint64_t evals, eval_failures, reloads, reload_failures;
    int last_reload_ok;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timed_wait(alert_runner_t *r, int64_t wait)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* The drain controller's own loop: a 10-minute `kubectl drain` must not
 * hold up rule evaluation. */
static void *drain_thread(void *arg)
{
    alert_runner_t *r = arg;
    int64_t drain_iv = r->cfg.drain_interval_ms > 0 ? r->cfg.drain_interval_ms : 30000;
    int64_t next = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        int64_t now = wall_ms();
        if (now >= next || r->kick) {
            r->kick = 0;
            drain_t *d = r->drain;
            pthread_mutex_unlock(&r->mu);
            drain_tick(d, now);
            pthread_mutex_lock(&r->mu);
            next = now + drain_iv;
        }
        int64_t wait = next - wall_ms();
        if (wait > 1000) wait = 1000;
        if (wait > 0 && !r->stop && !r->kick) timed_wait(r, wait);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void *runner_thread(void *arg)
{
    alert_runner_t *r = arg;
    alert_outbox_t ob = {0};
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        int64_t now = wall_ms();
        if (alert_engine_next_due(r->eng) <= now) {
            int rc = alert_engine_eval(r->eng, now, &ob);
            r->evals++;
            if (rc < 0) {
                r->eval_failures++;
                fprintf(stderr, "level=error msg=\"rule evaluation failed\" err=\"%s\"\n",
                        alert_strerror(rc));
            }
            alert_notifier_send(r->notif, &ob);
            alert_outbox_clear(&ob);
        }
        int64_t wait = alert_engine_next_due(r->eng) - wall_ms();
        if (wait > 1000) wait = 1000;
        if (wait > 0 && !r->stop) timed_wait(r, wait);
    }
    pthread_mutex_unlock(&r->mu);
    alert_outbox_free(&ob);
    return NULL;
}

/* Build everything a configuration needs; on success swap it in. */
static int runner_load(alert_runner_t *r, int first, char *err, size_t errlen)
{
    pcfg_t pc;
    memset(&pc, 0, sizeof pc);
    int rc = 0;
    if (r->cfg.config_file && (rc = pcfg_load(r->cfg.config_file, &pc, err, errlen))) return rc;
    alert_ruleset_t rs = {0};
    tbuf_t errs = {0};
    size_t nerrs = 0;
    rc = load_rules(&r->cfg, &pc, &rs, &errs, &nerrs);
    if (rc) {
        snprintf(err, errlen, "%zu rule file error(s): %.*s", nerrs,
                 (int)(errs.len > 1500 ? 1500 : errs.len), errs.len ? (char *)errs.p : "");
        tbuf_free(&errs);
        alert_ruleset_free(&rs);
        pcfg_free(&pc);
        return rc;
    }
    tbuf_free(&errs);
    drain_policy_t pol;
    int have_pol = 0;
    if (r->cfg.drain_enabled) {
        if ((rc = drain_policy_init(&pol))) goto fail;
        have_pol = 1;
        if (r->cfg.drain_config &&
            (rc = drain_policy_load_file(&pol, r->cfg.drain_config, err, errlen)))
            goto fail;
    }
    /* Alertmanagers: flags + config file. */
    const char **urls = calloc(r->cfg.nam_urls + pc.nam + 1, sizeof *urls);
    if (!urls) {
        rc = ALERT_ENOMEM;
        goto fail;
    }
    size_t nu = 0;
    for (size_t i = 0; i < r->cfg.nam_urls; i++)
        urls[nu++] = r->cfg.am_urls[i];
    for (size_t i = 0; i < pc.nam; i++)
        urls[nu++] = pc.am[i];
    alert_notifier_config_t nc = r->cfg.notifier;
    nc.urls = urls;
    nc.nurls = nu;
    alert_notifier_t *notif = NULL;
    rc = alert_notifier_start(&nc, &notif);
    free(urls);
    if (rc) {
        snprintf(err, errlen, "alertmanager: %s", alert_strerror(rc));
        goto fail;
    }
    alert_engine_config_t ec = r->cfg.engine;
    if (pc.eval_interval_ms) ec.eval_interval_ms = pc.eval_interval_ms;
    ec.external_labels = pc.ext;
    ec.nexternal_labels = pc.next;
    if (first) {
        if ((rc = alert_engine_create(r->db, &ec, &r->eng))) {
            alert_notifier_stop(notif, 0);
            goto fail;
        }
    }
    /* Commit. */
    alert_engine_set_rules(r->eng, &rs);
    if (!first) {
        /* The engine borrows the external labels: keep old ones alive
         * until the engine config is replaced (it is fixed at create;
         * a reload of external labels needs a restart — documented). */
    }
    alert_notifier_t *old = r->notif;
    pthread_mutex_lock(&r->mu);
    r->notif = notif;
    pthread_mutex_unlock(&r->mu);
    alert_notifier_stop(old, 2000);
    if (have_pol) {
        if (!r->drain) {
            char derr[400] = "";
            rc = drain_open(r->db, r->cfg.state_dir ? r->cfg.state_dir : ".", &pol, &r->drain, derr,
                            sizeof derr);
            if (rc) snprintf(err, errlen, "drain controller: %s: %s", drain_strerror(rc), derr);
        } else {
            rc = drain_set_policy(r->drain, &pol);
            if (rc) snprintf(err, errlen, "drain policy: %s", drain_strerror(rc));
        }
        drain_policy_free(&pol);
        have_pol = 0;
    }
    if (first) {
        r->pc = pc;
    } else {
        pcfg_free(&pc); /* external labels stay those of the start */
    }
    return rc;
fail:
    if (have_pol) drain_policy_free(&pol);
    alert_ruleset_free(&rs);
    pcfg_free(&pc);
    return rc;
}

int alert_runner_start(tsdb_t *db, const alert_runner_config_t *cfg, alert_runner_t **out,
                       char *err, size_t errlen)
{
    if (!db || !cfg || !out) return ALERT_EINVAL;
    *out = NULL;
    alert_runner_t *r = calloc(1, sizeof *r);
    if (!r) return ALERT_ENOMEM;
    r->db = db;
    r->cfg = *cfg;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    int rc = runner_load(r, 1, err, errlen);
    if (rc) {
        alert_runner_stop(r);
        return rc;
    }
    rc = alert_engine_restore(r->eng, wall_ms());
    if (rc)
        fprintf(stderr, "level=warn msg=\"alert state not restored\" err=\"%s\"\n",
                alert_strerror(rc));
    r->last_reload_ok = 1;
    if (pthread_create(&r->th, NULL, runner_thread, r)) {
        alert_runner_stop(r);
        return ALERT_ETHREAD;
    }
    r->started = 1;
    if (r->drain) {
        if (pthread_create(&r->dth, NULL, drain_thread, r)) {
            alert_runner_stop(r);
            return ALERT_ETHREAD;
        }
        r->dstarted = 1;
    }
    *out = r;
    return 0;
}

int alert_runner_reload(alert_runner_t *r, char *err, size_t errlen)
{
    if (!r) return ALERT_EINVAL;
    int rc = runner_load(r, 0, err, errlen);
    pthread_mutex_lock(&r->mu);
    r->reloads++;
    if (rc) r->reload_failures++;
    r->last_reload_ok = rc == 0;
    r->kick = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void alert_runner_kick(alert_runner_t *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->kick = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void alert_runner_stop(alert_runner_t *r)
{
    if (!r) return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->th, NULL);
        if (r->dstarted) pthread_join(r->dth, NULL);
    }
    alert_notifier_stop(r->notif, 2000);
    drain_close(r->drain);
    alert_engine_destroy(r->eng);
    pcfg_free(&r->pc);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

alert_engine_t *alert_runner_engine(alert_runner_t *r)
{
    return r ? r->eng : NULL;
}

drain_t *alert_runner_drain(alert_runner_t *r)
{
    return r ? r->drain : NULL;
}

int alert_runner_metrics_render(alert_runner_t *r, tbuf_t *out)
{
    if (!r) return 0;
    pthread_mutex_lock(&r->mu);
    int rc = alert_notifier_metrics_render(r->notif, out);
    if (!rc)
        rc =
            alert_printf(out,
                         "# HELP augur_rule_evaluation_rounds_total Rule evaluation rounds.\n"
                         "# TYPE augur_rule_evaluation_rounds_total counter\n"
                         "augur_rule_evaluation_rounds_total %llu\n"
                         "# HELP augur_rule_evaluation_failures_total Rounds that failed.\n"
                         "# TYPE augur_rule_evaluation_failures_total counter\n"
                         "augur_rule_evaluation_failures_total %llu\n"
                         "# HELP augur_alerts Alerts by state.\n# TYPE augur_alerts gauge\n"
                         "augur_alerts{state=\"pending\"} %zu\naugur_alerts{state=\"firing\"} %zu\n"
                         "# HELP augur_config_last_reload_successful Whether the last rules "
                         "reload succeeded.\n# TYPE augur_config_last_reload_successful gauge\n"
                         "augur_config_last_reload_successful %d\n",
                         (unsigned long long)r->evals, (unsigned long long)r->eval_failures,
                         alert_engine_count(r->eng, NULL, ALERT_STATE_PENDING),
                         alert_engine_count(r->eng, NULL, ALERT_STATE_FIRING), r->last_reload_ok);
    pthread_mutex_unlock(&r->mu);
    if (!rc) rc = drain_metrics_render(r->drain, out);
    return rc;
}
