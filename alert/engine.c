/* engine.c — rule evaluation with Prometheus' alert state machine.
 *
 * Per alerting rule, at each evaluation time ts (Prometheus 2.42
 * rules/alerting.go semantics):
 *   - every sample of the expression's result is one alert, identified by
 *     its labels without __name__, plus the rule's labels (templated), plus
 *     alertname; a new one starts pending with activeAt = ts;
 *   - pending for at least `for` -> firing (firedAt = ts);
 *   - an alert missing from the result: pending ones are deleted; firing
 *     ones stay firing for keep_firing_for, then become inactive
 *     (resolvedAt = ts) and are kept resolved_retention so that the
 *     resolution is sent;
 *   - a send is due for a firing or resolved alert when it was resolved
 *     since the last send or resend_delay has passed; endsAt is resolvedAt,
 *     or ts + 4 * max(interval, resend_delay) while firing (validUntil).
 * Series: ALERTS{alertname,alertstate,...} = 1 and ALERTS_FOR_STATE{...} =
 * activeAt in seconds, for every pending/firing alert, with staleness
 * markers when an alert leaves a state. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert/alert_int.h"

typedef struct {
    alert_t a;
    int written;               /* ALERTS series last written: 0 none, 1 pending, 2 firing */
    int64_t restored_fired_at; /* from restore: firing before the restart */
} ralert_t;

typedef struct {
    alert_rule_def_t def;
    ralert_t *alerts; /* sorted by a.fp */
    size_t n, cap;
    char last_error[512];
    int64_t last_eval_ms;
    double eval_seconds;
    int evaluated;
} rule_rt_t;

typedef struct {
    char *name, *file;
    int64_t interval_ms;
    uint32_t limit;
    rule_rt_t *rules;
    size_t nrules;
    int64_t next_due; /* INT64_MIN = never evaluated */
    int64_t last_eval_ms;
    double eval_seconds;
} group_rt_t;

struct alert_engine {
    tsdb_t *db;
    alert_engine_config_t cfg;
    char *external_url;
    group_rt_t *groups;
    size_t ngroups;
    pthread_mutex_t mu;
};

const char *alert_state_name(alert_state_t s)
{
    return s == ALERT_STATE_FIRING ? "firing" : s == ALERT_STATE_PENDING ? "pending" : "inactive";
}

void alert_engine_config_init(alert_engine_config_t *c)
{
    memset(c, 0, sizeof *c);
}

void alert_outbox_clear(alert_outbox_t *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->v[i]);
    o->n = 0;
}

void alert_outbox_free(alert_outbox_t *o)
{
    if (!o) return;
    alert_outbox_clear(o);
    free(o->v);
    o->v = NULL;
    o->cap = 0;
}

static int outbox_add(alert_outbox_t *o, tbuf_t *b)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 16;
        char **g = realloc(o->v, nc * sizeof *g);
        if (!g) return -1;
        o->v = g;
        o->cap = nc;
    }
    char *s = alert_strndup(b->len ? (const char *)b->p : "", b->len);
    if (!s) return -1;
    o->v[o->n++] = s;
    return 0;
}

static void alert_clear(alert_t *a)
{
    alert_kv_free(a->labels, a->nlabels);
    alert_kv_free(a->annotations, a->nannotations);
    memset(a, 0, sizeof *a);
}

static void rule_rt_free(rule_rt_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        alert_clear(&r->alerts[i].a);
    free(r->alerts);
    free(r->def.alert);
    free(r->def.record);
    free(r->def.expr);
    promql_expr_free(r->def.pq);
    alert_kv_free(r->def.labels, r->def.nlabels);
    alert_kv_free(r->def.annotations, r->def.nannotations);
}

static void groups_free(group_rt_t *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < g[i].nrules; k++)
            rule_rt_free(&g[i].rules[k]);
        free(g[i].rules);
        free(g[i].name);
        free(g[i].file);
    }
    free(g);
}

int alert_engine_create(tsdb_t *db, const alert_engine_config_t *cfg, alert_engine_t **out)
{
    if (!db || !out) return ALERT_EINVAL;
    alert_engine_t *e = calloc(1, sizeof *e);
    if (!e) return ALERT_ENOMEM;
    e->db = db;
    if (cfg) e->cfg = *cfg;
    if (e->cfg.eval_interval_ms <= 0) e->cfg.eval_interval_ms = 60000;
    if (e->cfg.resend_delay_ms <= 0) e->cfg.resend_delay_ms = 60000;
    if (e->cfg.resolved_retention_ms <= 0) e->cfg.resolved_retention_ms = 15 * 60000;
    if (e->cfg.outage_tolerance_ms <= 0) e->cfg.outage_tolerance_ms = 3600000;
    if (e->cfg.for_grace_period_ms <= 0) e->cfg.for_grace_period_ms = 10 * 60000;
    e->external_url =
        alert_strdup(e->cfg.external_url ? e->cfg.external_url : "http://localhost:9201");
    if (!e->external_url) {
        free(e);
        return ALERT_ENOMEM;
    }
    size_t ul = strlen(e->external_url);
    while (ul && e->external_url[ul - 1] == '/')
        e->external_url[--ul] = 0;
    e->cfg.external_url = e->external_url;
    pthread_mutex_init(&e->mu, NULL);
    *out = e;
    return 0;
}

void alert_engine_destroy(alert_engine_t *e)
{
    if (!e) return;
    groups_free(e->groups, e->ngroups);
    pthread_mutex_destroy(&e->mu);
    free(e->external_url);
    free(e);
}

static int same_rule(const rule_rt_t *a, const alert_rule_def_t *b)
{
    const char *na = a->def.alert ? a->def.alert : a->def.record;
    const char *nb = b->alert ? b->alert : b->record;
    return !!a->def.alert == !!b->alert && !strcmp(na, nb) && !strcmp(a->def.expr, b->expr);
}

int alert_engine_set_rules(alert_engine_t *e, alert_ruleset_t *rs)
{
    if (!e || !rs) return ALERT_EINVAL;
    group_rt_t *ng = calloc(rs->ngroups ? rs->ngroups : 1, sizeof *ng);
    if (!ng) return ALERT_ENOMEM;
    for (size_t i = 0; i < rs->ngroups; i++) {
        alert_group_def_t *gd = &rs->groups[i];
        group_rt_t *g = &ng[i];
        g->rules = calloc(gd->nrules ? gd->nrules : 1, sizeof *g->rules);
        if (!g->rules) {
            groups_free(ng, i + 1);
            return ALERT_ENOMEM;
        }
        g->next_due = INT64_MIN;
    }
    /* From here nothing fails: move definitions, carry state over. */
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < rs->ngroups; i++) {
        alert_group_def_t *gd = &rs->groups[i];
        group_rt_t *g = &ng[i];
        g->name = gd->name;
        g->file = gd->file;
        g->interval_ms = gd->interval_ms > 0 ? gd->interval_ms : e->cfg.eval_interval_ms;
        g->limit = gd->limit;
        g->nrules = gd->nrules;
        group_rt_t *old = NULL;
        for (size_t k = 0; k < e->ngroups; k++)
            if (!strcmp(e->groups[k].name, g->name) && !strcmp(e->groups[k].file, g->file))
                old = &e->groups[k];
        if (old) g->next_due = old->interval_ms == g->interval_ms ? old->next_due : INT64_MIN;
        for (size_t r = 0; r < gd->nrules; r++) {
            rule_rt_t *rt = &g->rules[r];
            rt->def = gd->rules[r];
            if (!old) continue;
            for (size_t k = 0; k < old->nrules; k++) {
                rule_rt_t *o = &old->rules[k];
                if (o->alerts && same_rule(o, &rt->def)) {
                    rt->alerts = o->alerts;
                    rt->n = o->n;
                    rt->cap = o->cap;
                    o->alerts = NULL;
                    o->n = o->cap = 0;
                    rt->last_eval_ms = o->last_eval_ms;
                    break;
                }
            }
        }
        free(gd->rules);
    }
    free(rs->groups);
    rs->groups = NULL;
    size_t nng = rs->ngroups;
    rs->ngroups = 0;
    group_rt_t *oldg = e->groups;
    size_t oldn = e->ngroups;
    e->groups = ng;
    e->ngroups = nng;
    pthread_mutex_unlock(&e->mu);
    groups_free(oldg, oldn);
    return 0;
}

/* ---- series writing -------------------------------------------------------- */

typedef struct {
    tsdb_series_in_t *s;
    size_t n, cap;
    tsdb_sample_t *samples; /* one per series */
    size_t scap;
    tbuf_t arena; /* label arrays (offsets fixed up at flush) */
    size_t *lab_off;
} sbatch_t;

static void sbatch_free(sbatch_t *b)
{
    free(b->s);
    free(b->samples);
    free(b->lab_off);
    tbuf_free(&b->arena);
    memset(b, 0, sizeof *b);
}

/* Add series name{labels, extra=extrav} = v at t. */
static int sbatch_add(sbatch_t *b, const char *name, const alert_kv_t *kv, size_t n,
                      const char *extra, const char *extrav, int64_t t, double v)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 32;
        tsdb_series_in_t *g = realloc(b->s, nc * sizeof *g);
        if (!g) return -1;
        b->s = g;
        tsdb_sample_t *gs = realloc(b->samples, nc * sizeof *gs);
        if (!gs) return -1;
        b->samples = gs;
        size_t *go = realloc(b->lab_off, nc * sizeof *go);
        if (!go) return -1;
        b->lab_off = go;
        b->cap = nc;
    }
    size_t nl = n + 1 + (extra ? 1 : 0);
    /* Align the arena for tsdb_label_t. */
    size_t pad = (sizeof(void *) - b->arena.len % sizeof(void *)) % sizeof(void *);
    static const char zeros[16];
    if (tbuf_put(&b->arena, zeros, pad)) return -1;
    size_t off = b->arena.len;
    if (tbuf_reserve(&b->arena, nl * sizeof(tsdb_label_t))) return -1;
    tsdb_label_t *l = (tsdb_label_t *)(void *)(b->arena.p + off);
    size_t k = 0;
    l[k++] = (tsdb_label_t){{"__name__", 8}, {name, (uint32_t)strlen(name)}};
    for (size_t i = 0; i < n; i++)
        l[k++] = (tsdb_label_t){{kv[i].name, (uint32_t)strlen(kv[i].name)},
                                {kv[i].value, (uint32_t)strlen(kv[i].value)}};
    if (extra)
        l[k++] =
            (tsdb_label_t){{extra, (uint32_t)strlen(extra)}, {extrav, (uint32_t)strlen(extrav)}};
    b->arena.len += nl * sizeof(tsdb_label_t);
    b->lab_off[b->n] = off;
    b->samples[b->n] = (tsdb_sample_t){t, v};
    b->s[b->n] = (tsdb_series_in_t){NULL, (uint32_t)nl, NULL, 1};
    b->n++;
    return 0;
}

static int sbatch_flush(sbatch_t *b, tsdb_t *db)
{
    if (!b->n) return 0;
    for (size_t i = 0; i < b->n; i++) {
        b->s[i].labels = (const tsdb_label_t *)(const void *)(b->arena.p + b->lab_off[i]);
        b->s[i].samples = &b->samples[i];
    }
    int rc = tsdb_append(db, b->s, b->n, NULL, NULL);
    b->n = 0;
    b->arena.len = 0;
    return rc;
}

static double stale_nan(void)
{
    return f64_from_bits(TSDB_STALE_NAN_BITS);
}

/* Write the alert's series for its state at ts (and stale markers for a
 * state it left). Labels of the alert live until the batch is flushed. */
static int write_alert_series(sbatch_t *b, ralert_t *ra, int64_t ts, int gone)
{
    alert_t *a = &ra->a;
    int now = gone || a->state == ALERT_STATE_INACTIVE ? 0 : a->state == ALERT_STATE_FIRING ? 2 : 1;
    if (ra->written && ra->written != now &&
        sbatch_add(b, "ALERTS", a->labels, a->nlabels, "alertstate",
                   ra->written == 2 ? "firing" : "pending", ts, stale_nan()))
        return -1;
    if (ra->written && !now &&
        sbatch_add(b, "ALERTS_FOR_STATE", a->labels, a->nlabels, NULL, NULL, ts, stale_nan()))
        return -1;
    if (now) {
        if (sbatch_add(b, "ALERTS", a->labels, a->nlabels, "alertstate",
                       now == 2 ? "firing" : "pending", ts, 1.0) ||
            sbatch_add(b, "ALERTS_FOR_STATE", a->labels, a->nlabels, NULL, NULL, ts,
                       (double)a->active_at / 1000.0))
            return -1;
    }
    ra->written = now;
    return 0;
}

/* ---- evaluation ------------------------------------------------------------ */

static int ralert_cmp(const void *x, const void *y)
{
    uint64_t a = ((const ralert_t *)x)->a.fp, b = ((const ralert_t *)y)->a.fp;
    return a < b ? -1 : a > b;
}

static ralert_t *find_alert(rule_rt_t *r, uint64_t fp, const alert_kv_t *kv, size_t n)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->alerts[mid].a.fp < fp)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < r->n && r->alerts[lo].a.fp == fp; lo++) {
        alert_t *a = &r->alerts[lo].a;
        if (a->nlabels != n) continue;
        size_t i = 0;
        while (i < n && !strcmp(a->labels[i].name, kv[i].name) &&
               !strcmp(a->labels[i].value, kv[i].value))
            i++;
        if (i == n) return &r->alerts[lo];
    }
    return NULL;
}

static int pq_eval_at(alert_engine_t *e, tsdb_reader_t *rd, const pq_expr_t *x, int64_t ts,
                      pq_result_t **res, char *err, size_t errlen)
{
    pq_opts_t o;
    memset(&o, 0, sizeof o);
    o.start_ms = o.end_ms = ts;
    o.lookback_ms = e->cfg.lookback_ms;
    o.timeout_ms = 60000;
    return promql_eval(rd, x, &o, res, err, errlen);
}

/* The label set of one result sample for this rule: sample labels without
 * __name__, rule labels (templated), alertname. Also expands annotations.
 * tmpl_labels: the sample's labels (with __name__), as Prometheus passes
 * them to the templates. */
static int build_alert_labels(alert_engine_t *e, rule_rt_t *r, const pq_series_t *s, double v,
                              alert_kv_t **lab, size_t *nlab, alert_kv_t **ann, size_t *nann,
                              char *err, size_t errlen)
{
    *lab = NULL;
    *nlab = 0;
    *ann = NULL;
    *nann = 0;
    alert_kv_t *tl = NULL;
    size_t ntl = 0;
    tbuf_t tb = {0};
    int rc = ALERT_ENOMEM;
    for (size_t i = 0; i < s->nlabels; i++) {
        if (alert_kv_set(&tl, &ntl, s->labels[i].name, s->labels[i].value)) goto out;
        if (strcmp(s->labels[i].name, "__name__") &&
            alert_kv_set(lab, nlab, s->labels[i].name, s->labels[i].value))
            goto out;
    }
    alert_tmpl_data_t d = {tl, ntl, v, e->cfg.external_labels, e->cfg.nexternal_labels};
    for (size_t i = 0; i < r->def.nlabels; i++) {
        tb.len = 0;
        int trc = alert_template_expand(r->def.labels[i].value, strlen(r->def.labels[i].value), &d,
                                        &tb, err, errlen);
        if (trc == ALERT_ENOMEM) goto out;
        if (tbuf_put(&tb, "", 1)) goto out;
        if (trc) /* Prometheus keeps the error text as the value */
            snprintf((char *)tb.p, tb.len, "<error expanding template: %s>", err);
        if (((char *)tb.p)[0] == 0) { /* an empty value removes the label */
            for (size_t k = 0; k < *nlab; k++)
                if (!strcmp((*lab)[k].name, r->def.labels[i].name)) {
                    free((*lab)[k].name);
                    free((*lab)[k].value);
                    (*lab)[k] = (*lab)[--*nlab];
                    break;
                }
            continue;
        }
        if (alert_kv_set(lab, nlab, r->def.labels[i].name, (const char *)tb.p)) goto out;
    }
    if (alert_kv_set(lab, nlab, "alertname", r->def.alert)) goto out;
    alert_kv_sort(*lab, *nlab);
    for (size_t i = 0; i < r->def.nannotations; i++) {
        tb.len = 0;
        char terr[256];
        int trc =
            alert_template_expand(r->def.annotations[i].value, strlen(r->def.annotations[i].value),
                                  &d, &tb, terr, sizeof terr);
        if (trc == ALERT_ENOMEM) goto out;
        if (trc) {
            tb.len = 0;
            if (alert_printf(&tb, "<error expanding template: %s>", terr)) goto out;
        }
        if (tbuf_put(&tb, "", 1) ||
            alert_kv_set(ann, nann, r->def.annotations[i].name, (const char *)tb.p))
            goto out;
    }
    alert_kv_sort(*ann, *nann);
    rc = 0;
out:
    alert_kv_free(tl, ntl);
    tbuf_free(&tb);
    if (rc) {
        alert_kv_free(*lab, *nlab);
        alert_kv_free(*ann, *nann);
        *lab = *ann = NULL;
        *nlab = *nann = 0;
    }
    return rc;
}

static int render_send(alert_engine_t *e, group_rt_t *g, rule_rt_t *r, ralert_t *ra, int64_t ts,
                       alert_outbox_t *out)
{
    (void)g;
    alert_t *a = &ra->a;
    tbuf_t url = {0}, b = {0};
    int rc = -1;
    if (alert_printf(&url, "%s/graph?g0.expr=", e->external_url) ||
        alert_url_escape(&url, r->def.expr) || tbuf_put(&url, "&g0.tab=1", 10))
        goto out;
    int64_t delta =
        g->interval_ms > e->cfg.resend_delay_ms ? g->interval_ms : e->cfg.resend_delay_ms;
    a->last_sent_at = ts;
    a->valid_until = ts + 4 * delta;
    if (alert_render_postable(a, (const char *)url.p, e->cfg.external_labels,
                              e->cfg.nexternal_labels, &b) ||
        outbox_add(out, &b))
        goto out;
    rc = 0;
out:
    tbuf_free(&url);
    tbuf_free(&b);
    return rc;
}

int alert_render_postable(const alert_t *a, const char *generator_url, const alert_kv_t *ext,
                          size_t next, tbuf_t *b)
{
    char t1[40], t2[40];
    if (tbuf_put(b, "{\"labels\":{", 11)) return -1;
    size_t k = 0;
    for (size_t i = 0; i < a->nlabels; i++, k++)
        if ((k && tbuf_put(b, ",", 1)) || alert_json_str(b, a->labels[i].name) ||
            tbuf_put(b, ":", 1) || alert_json_str(b, a->labels[i].value))
            return -1;
    for (size_t i = 0; i < next; i++) {
        if (alert_kv_get(a->labels, a->nlabels, ext[i].name)) continue;
        if ((k++ && tbuf_put(b, ",", 1)) || alert_json_str(b, ext[i].name) || tbuf_put(b, ":", 1) ||
            alert_json_str(b, ext[i].value))
            return -1;
    }
    if (tbuf_put(b, "},\"annotations\":{", 17)) return -1;
    for (size_t i = 0; i < a->nannotations; i++)
        if ((i && tbuf_put(b, ",", 1)) || alert_json_str(b, a->annotations[i].name) ||
            tbuf_put(b, ":", 1) || alert_json_str(b, a->annotations[i].value))
            return -1;
    alert_time_rfc3339(a->fired_at ? a->fired_at : a->active_at, t1, sizeof t1);
    alert_time_rfc3339(a->state == ALERT_STATE_INACTIVE ? a->resolved_at : a->valid_until, t2,
                       sizeof t2);
    return alert_printf(b, "},\"startsAt\":\"%s\",\"endsAt\":\"%s\",\"generatorURL\":", t1, t2) ||
                   alert_json_str(b, generator_url) || tbuf_put(b, "}", 1)
               ? -1
               : 0;
}

static int eval_rule(alert_engine_t *e, group_rt_t *g, rule_rt_t *r, tsdb_reader_t *rd, int64_t ts,
                     sbatch_t *sb, alert_outbox_t *out)
{
    pq_result_t *res = NULL;
    char err[512] = "";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r->last_eval_ms = ts;
    r->evaluated = 1;
    int rc = pq_eval_at(e, rd, r->def.pq, ts, &res, err, sizeof err);
    if (rc == PQ_ENOMEM) return ALERT_ENOMEM;
    if (rc) {
        snprintf(r->last_error, sizeof r->last_error, "%s%s%s", promql_strerror(rc),
                 *err ? ": " : "", err);
        /* Prometheus keeps the alerts as they are on a query error. */
        return 0;
    }
    r->last_error[0] = 0;
    int ret = 0;
    if (r->def.record) {
        if (g->limit && res->nseries > g->limit) {
            snprintf(r->last_error, sizeof r->last_error,
                     "exceeded limit of %" PRIu32 " with %zu series", g->limit, res->nseries);
            goto done;
        }
        for (size_t i = 0; i < res->nseries; i++) {
            const pq_series_t *s = &res->series[i];
            if (!s->npoints) continue;
            alert_kv_t *kv = NULL;
            size_t nkv = 0;
            int bad = 0;
            for (size_t k = 0; k < s->nlabels && !bad; k++)
                if (strcmp(s->labels[k].name, "__name__"))
                    bad = alert_kv_set(&kv, &nkv, s->labels[k].name, s->labels[k].value);
            for (size_t k = 0; k < r->def.nlabels && !bad; k++)
                bad = alert_kv_set(&kv, &nkv, r->def.labels[k].name, r->def.labels[k].value);
            if (!bad && !e->cfg.no_series)
                bad = sbatch_add(sb, r->def.record, kv, nkv, NULL, NULL, ts, s->points[0].v);
            /* sbatch keeps pointers into kv until the flush: flush now. */
            if (!bad && !e->cfg.no_series && sbatch_flush(sb, e->db)) ret = ALERT_ESTORE;
            alert_kv_free(kv, nkv);
            if (bad) {
                ret = ALERT_ENOMEM;
                break;
            }
        }
        goto done;
    }

    /* Alerting rule. Mark which alerts the result holds. */
    unsigned char *seen = calloc(r->n + res->nseries + 1, 1);
    if (!seen) {
        ret = ALERT_ENOMEM;
        goto done;
    }
    size_t n_before = r->n;
    for (size_t i = 0; i < res->nseries; i++) {
        const pq_series_t *s = &res->series[i];
        if (!s->npoints) continue;
        double v = s->points[0].v;
        alert_kv_t *lab, *ann;
        size_t nlab, nann;
        char terr[256];
        if (build_alert_labels(e, r, s, v, &lab, &nlab, &ann, &nann, terr, sizeof terr)) {
            ret = ALERT_ENOMEM;
            break;
        }
        uint64_t fp = alert_kv_hash(lab, nlab);
        ralert_t *ra = NULL;
        /* Search the sorted part, then the ones added in this round. */
        size_t saved_n = r->n;
        r->n = n_before;
        ra = find_alert(r, fp, lab, nlab);
        r->n = saved_n;
        if (!ra)
            for (size_t k = n_before; k < r->n; k++)
                if (r->alerts[k].a.fp == fp && r->alerts[k].a.nlabels == nlab) {
                    size_t q = 0;
                    while (q < nlab && !strcmp(r->alerts[k].a.labels[q].name, lab[q].name) &&
                           !strcmp(r->alerts[k].a.labels[q].value, lab[q].value))
                        q++;
                    if (q == nlab) ra = &r->alerts[k];
                }
        if (ra && seen[ra - r->alerts]) {
            snprintf(r->last_error, sizeof r->last_error,
                     "vector contains metrics with the same labelset after applying alert labels");
            alert_kv_free(lab, nlab);
            alert_kv_free(ann, nann);
            free(seen);
            goto done; /* Prometheus: the whole evaluation fails, state kept */
        }
        if (ra && ra->a.state != ALERT_STATE_INACTIVE) {
            ra->a.value = v;
            alert_kv_free(ra->a.annotations, ra->a.nannotations);
            ra->a.annotations = ann;
            ra->a.nannotations = nann;
            alert_kv_free(lab, nlab);
            seen[ra - r->alerts] = 1;
            continue;
        }
        if (ra) { /* a resolved alert comes back: a new alert replaces it */
            alert_clear(&ra->a);
        } else {
            if (r->n == r->cap) {
                size_t nc = r->cap ? r->cap * 2 : 8;
                ralert_t *gr = realloc(r->alerts, nc * sizeof *gr);
                unsigned char *gs = realloc(seen, nc + res->nseries + 1);
                if (!gr || !gs) {
                    if (gr) r->alerts = gr;
                    if (gs) seen = gs;
                    alert_kv_free(lab, nlab);
                    alert_kv_free(ann, nann);
                    ret = ALERT_ENOMEM;
                    break;
                }
                r->alerts = gr;
                r->cap = nc;
                seen = gs;
            }
            ra = &r->alerts[r->n];
            memset(ra, 0, sizeof *ra);
            seen[r->n] = 0;
            r->n++;
        }
        int written = ra->written;
        memset(ra, 0, sizeof *ra);
        ra->written = written;
        ra->a.labels = lab;
        ra->a.nlabels = nlab;
        ra->a.annotations = ann;
        ra->a.nannotations = nann;
        ra->a.fp = fp;
        ra->a.value = v;
        ra->a.state = ALERT_STATE_PENDING;
        ra->a.active_at = ts;
        seen[ra - r->alerts] = 1;
    }
    if (ret) {
        free(seen);
        goto done;
    }
    /* Transitions. */
    size_t w = 0;
    int64_t keep = e->cfg.resolved_retention_ms;
    for (size_t i = 0; i < r->n; i++) {
        ralert_t *ra = &r->alerts[i];
        alert_t *a = &ra->a;
        int drop = 0;
        if (!seen[i]) {
            if (a->state == ALERT_STATE_PENDING ||
                (a->resolved_at && a->state == ALERT_STATE_INACTIVE &&
                 ts - a->resolved_at > keep)) {
                drop = 1;
            } else if (a->state == ALERT_STATE_FIRING && r->def.keep_firing_for_ms > 0 &&
                       (a->keep_firing_since == 0 ||
                        ts - a->keep_firing_since < r->def.keep_firing_for_ms)) {
                if (!a->keep_firing_since) a->keep_firing_since = ts;
            } else if (a->state != ALERT_STATE_INACTIVE) {
                a->state = ALERT_STATE_INACTIVE;
                a->resolved_at = ts;
            }
        } else {
            a->keep_firing_since = 0;
            if (a->state == ALERT_STATE_PENDING && ts - a->active_at >= r->def.for_ms) {
                a->state = ALERT_STATE_FIRING;
                a->fired_at = ra->restored_fired_at ? ra->restored_fired_at : ts;
            }
        }
        if (!e->cfg.no_series && write_alert_series(sb, ra, ts, drop)) ret = ALERT_ENOMEM;
        if (drop) {
            /* The batch holds pointers into the labels: flush first. */
            if (!e->cfg.no_series && sbatch_flush(sb, e->db)) ret = ALERT_ESTORE;
            alert_clear(a);
            continue;
        }
        if (out && (a->state == ALERT_STATE_FIRING ||
                    (a->state == ALERT_STATE_INACTIVE && a->resolved_at))) {
            int needs =
                a->resolved_at > a->last_sent_at || a->last_sent_at + e->cfg.resend_delay_ms < ts;
            if (needs && render_send(e, g, r, ra, ts, out)) ret = ALERT_ENOMEM;
        }
        if (w != i) r->alerts[w] = *ra;
        w++;
    }
    r->n = w;
    if (r->n > 1) qsort(r->alerts, r->n, sizeof *r->alerts, ralert_cmp);
    free(seen);
    if (g->limit) {
        size_t active = 0;
        for (size_t i = 0; i < r->n; i++)
            active += r->alerts[i].a.state != ALERT_STATE_INACTIVE;
        if (active > g->limit)
            snprintf(r->last_error, sizeof r->last_error,
                     "exceeded limit of %" PRIu32 " with %zu alerts", g->limit, active);
    }
done:
    promql_result_free(res);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->eval_seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return ret;
}

static int eval_groups(alert_engine_t *e, int64_t now, alert_outbox_t *out, int all)
{
    tsdb_reader_t *rd = NULL;
    int rc = 0, count = 0;
    sbatch_t sb;
    memset(&sb, 0, sizeof sb);
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->ngroups && !rc; i++) {
        group_rt_t *g = &e->groups[i];
        if (!all && g->next_due != INT64_MIN && g->next_due > now) continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t k = 0; k < g->nrules && !rc; k++) {
            /* A fresh snapshot per rule: recording rules earlier in the
             * group are visible to later ones, as in Prometheus. */
            if (!rd) {
                if (tsdb_reader_open(e->db, &rd)) {
                    rc = ALERT_ESTORE;
                    break;
                }
            } else if (tsdb_reader_refresh(rd)) {
                rc = ALERT_ESTORE;
                break;
            }
            rc = eval_rule(e, g, &g->rules[k], rd, now, &sb, out);
            if (!rc && !e->cfg.no_series && sbatch_flush(&sb, e->db)) rc = ALERT_ESTORE;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        g->eval_seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        g->last_eval_ms = now;
        if (g->next_due == INT64_MIN || all)
            g->next_due = now + g->interval_ms;
        else
            while (g->next_due <= now)
                g->next_due += g->interval_ms;
        count++;
    }
    pthread_mutex_unlock(&e->mu);
    tsdb_reader_close(rd);
    sbatch_free(&sb);
    return rc ? rc : count;
}

int alert_engine_eval(alert_engine_t *e, int64_t now_ms, alert_outbox_t *out)
{
    return e ? eval_groups(e, now_ms, out, 0) : ALERT_EINVAL;
}

int alert_engine_eval_all(alert_engine_t *e, int64_t now_ms, alert_outbox_t *out)
{
    return e ? eval_groups(e, now_ms, out, 1) : ALERT_EINVAL;
}

int64_t alert_engine_next_due(alert_engine_t *e)
{
    int64_t t = INT64_MAX;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->ngroups; i++)
        if (e->groups[i].next_due < t) t = e->groups[i].next_due;
    pthread_mutex_unlock(&e->mu);
    return t;
}

/* ---- restore --------------------------------------------------------------- */

/* Latest ALERTS_FOR_STATE sample of exactly these labels in [mint, maxt]. */
static int last_for_state(tsdb_reader_t *rd, const alert_t *a, int64_t mint, int64_t maxt,
                          tsdb_sample_t *last)
{
    tsdb_matcher_t m[64];
    size_t nm = 0;
    m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "__name__", "ALERTS_FOR_STATE"};
    for (size_t i = 0; i < a->nlabels && nm < 64; i++)
        m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, a->labels[i].name, a->labels[i].value};
    tsdb_sids_t ids = {0};
    int found = 0;
    if (tsdb_select(rd, m, nm, mint, maxt, &ids)) return 0;
    for (size_t i = 0; i < ids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(rd, ids.ids[i], &l, &nl) || nl != a->nlabels + 1) continue;
        tsdb_iter_t *it;
        if (tsdb_iter_open(rd, ids.ids[i], mint, maxt, &it)) continue;
        const tsdb_sample_t *s;
        size_t n;
        int r;
        while ((r = tsdb_iter_next(it, &s, &n)) != 0) {
            if (r < 0) {
                if (r == TSDB_ECORRUPT) continue;
                break;
            }
            for (size_t k = 0; k < n; k++) {
                if (f64_bits(s[k].v) == TSDB_STALE_NAN_BITS || isnan(s[k].v)) {
                    found = 0; /* the alert ended after this */
                    continue;
                }
                *last = s[k];
                found = 1;
            }
        }
        tsdb_iter_close(it);
    }
    tsdb_sids_free(&ids);
    return found;
}

int alert_engine_restore(alert_engine_t *e, int64_t now)
{
    if (!e) return ALERT_EINVAL;
    tsdb_reader_t *rd = NULL;
    if (tsdb_reader_open(e->db, &rd)) return ALERT_ESTORE;
    sbatch_t sb;
    memset(&sb, 0, sizeof sb);
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->ngroups && !rc; i++) {
        group_rt_t *g = &e->groups[i];
        for (size_t k = 0; k < g->nrules && !rc; k++) {
            rule_rt_t *r = &g->rules[k];
            if (!r->def.alert || r->def.for_ms <= 0) continue;
            /* Create the alerts as a first evaluation would, without
             * writing series or sending. */
            int saved = e->cfg.no_series;
            e->cfg.no_series = 1;
            rc = eval_rule(e, g, r, rd, now, &sb, NULL);
            e->cfg.no_series = saved;
            for (size_t a = 0; a < r->n && !rc; a++) {
                ralert_t *ra = &r->alerts[a];
                if (ra->a.state != ALERT_STATE_PENDING || ra->a.active_at != now) continue;
                tsdb_sample_t last;
                if (!last_for_state(rd, &ra->a, now - e->cfg.outage_tolerance_ms, now, &last))
                    continue;
                int64_t down_at = last.t;
                int64_t restored = (int64_t)llround(last.v * 1000.0);
                int64_t spent = down_at - restored;
                int64_t remaining = r->def.for_ms - spent;
                if (remaining <= 0) {
                    /* Firing before the restart: keep activeAt and firedAt. */
                    ra->restored_fired_at = restored + r->def.for_ms;
                } else if (remaining < e->cfg.for_grace_period_ms) {
                    restored = now + e->cfg.for_grace_period_ms - r->def.for_ms;
                } else {
                    restored += now - down_at;
                }
                ra->a.active_at = restored;
                ra->written = 1; /* the pending series may still be there */
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
    tsdb_reader_close(rd);
    sbatch_free(&sb);
    return rc;
}

/* ---- introspection --------------------------------------------------------- */

void alert_engine_visit(alert_engine_t *e, alert_visit_fn fn, void *ctx)
{
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->ngroups; i++)
        for (size_t k = 0; k < e->groups[i].nrules; k++) {
            rule_rt_t *r = &e->groups[i].rules[k];
            for (size_t a = 0; a < r->n; a++)
                fn(ctx, e->groups[i].name, r->def.alert, &r->alerts[a].a);
        }
    pthread_mutex_unlock(&e->mu);
}

size_t alert_engine_count(alert_engine_t *e, const char *rule, alert_state_t state)
{
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->ngroups; i++)
        for (size_t k = 0; k < e->groups[i].nrules; k++) {
            rule_rt_t *r = &e->groups[i].rules[k];
            if (!r->def.alert || (rule && strcmp(rule, r->def.alert))) continue;
            for (size_t a = 0; a < r->n; a++)
                n += r->alerts[a].a.state == state;
        }
    pthread_mutex_unlock(&e->mu);
    return n;
}

static int json_kv(tbuf_t *b, const alert_kv_t *kv, size_t n)
{
    if (tbuf_put(b, "{", 1)) return -1;
    for (size_t i = 0; i < n; i++)
        if ((i && tbuf_put(b, ",", 1)) || alert_json_str(b, kv[i].name) || tbuf_put(b, ":", 1) ||
            alert_json_str(b, kv[i].value))
            return -1;
    return tbuf_put(b, "}", 1);
}

static int json_alert(tbuf_t *b, const alert_t *a)
{
    char t[40], v[64];
    alert_time_rfc3339(a->active_at, t, sizeof t);
    alert_format_float(a->value, v, sizeof v);
    return tbuf_put(b, "{\"labels\":", 10) || json_kv(b, a->labels, a->nlabels) ||
                   tbuf_put(b, ",\"annotations\":", 15) ||
                   json_kv(b, a->annotations, a->nannotations) ||
                   alert_printf(b, ",\"state\":\"%s\",\"activeAt\":\"%s\",\"value\":\"%s\"}",
                                alert_state_name(a->state), t, v)
               ? -1
               : 0;
}

int alert_engine_alerts_json(alert_engine_t *e, tbuf_t *b)
{
    int rc = 0, first = 1;
    pthread_mutex_lock(&e->mu);
    if (tbuf_put(b, "{\"status\":\"success\",\"data\":{\"alerts\":[", 38)) rc = -1;
    for (size_t i = 0; i < e->ngroups && !rc; i++)
        for (size_t k = 0; k < e->groups[i].nrules && !rc; k++) {
            rule_rt_t *r = &e->groups[i].rules[k];
            for (size_t a = 0; a < r->n && !rc; a++) {
                if (r->alerts[a].a.state == ALERT_STATE_INACTIVE) continue;
                if ((!first && tbuf_put(b, ",", 1)) || json_alert(b, &r->alerts[a].a)) rc = -1;
                first = 0;
            }
        }
    if (!rc && tbuf_put(b, "]}}\n", 4)) rc = -1;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int alert_engine_rules_json(alert_engine_t *e, tbuf_t *b)
{
    int rc = 0;
    char t[40];
    pthread_mutex_lock(&e->mu);
    if (tbuf_put(b, "{\"status\":\"success\",\"data\":{\"groups\":[", 38)) rc = -1;
    for (size_t i = 0; i < e->ngroups && !rc; i++) {
        group_rt_t *g = &e->groups[i];
        if ((i && tbuf_put(b, ",", 1)) || tbuf_put(b, "{\"name\":", 8) ||
            alert_json_str(b, g->name) || tbuf_put(b, ",\"file\":", 8) ||
            alert_json_str(b, g->file) || tbuf_put(b, ",\"rules\":[", 10))
            rc = -1;
        for (size_t k = 0; k < g->nrules && !rc; k++) {
            rule_rt_t *r = &g->rules[k];
            alert_state_t st = ALERT_STATE_INACTIVE;
            for (size_t a = 0; a < r->n; a++)
                if (r->alerts[a].a.state > st) st = r->alerts[a].a.state;
            alert_time_rfc3339(r->last_eval_ms, t, sizeof t);
            if ((k && tbuf_put(b, ",", 1)) || tbuf_put(b, "{", 1)) rc = -1;
            if (!rc && r->def.alert) {
                if (alert_printf(b, "\"state\":\"%s\",\"name\":", alert_state_name(st)) ||
                    alert_json_str(b, r->def.alert) || tbuf_put(b, ",\"query\":", 9) ||
                    alert_json_str(b, r->def.expr) ||
                    alert_printf(b, ",\"duration\":%g,\"keepFiringFor\":%g,\"labels\":",
                                 (double)r->def.for_ms / 1000,
                                 (double)r->def.keep_firing_for_ms / 1000) ||
                    json_kv(b, r->def.labels, r->def.nlabels) ||
                    tbuf_put(b, ",\"annotations\":", 15) ||
                    json_kv(b, r->def.annotations, r->def.nannotations) ||
                    tbuf_put(b, ",\"alerts\":[", 11))
                    rc = -1;
                int first = 1;
                for (size_t a = 0; a < r->n && !rc; a++) {
                    if (r->alerts[a].a.state == ALERT_STATE_INACTIVE) continue;
                    if ((!first && tbuf_put(b, ",", 1)) || json_alert(b, &r->alerts[a].a)) rc = -1;
                    first = 0;
                }
                if (!rc && tbuf_put(b, "],\"type\":\"alerting\"", 19)) rc = -1;
            } else if (!rc) {
                if (tbuf_put(b, "\"name\":", 7) || alert_json_str(b, r->def.record) ||
                    tbuf_put(b, ",\"query\":", 9) || alert_json_str(b, r->def.expr) ||
                    tbuf_put(b, ",\"labels\":", 10) || json_kv(b, r->def.labels, r->def.nlabels) ||
                    tbuf_put(b, ",\"type\":\"recording\"", 19))
                    rc = -1;
            }
            if (!rc && (alert_printf(b, ",\"health\":\"%s\",\"lastError\":",
                                     !r->evaluated      ? "unknown"
                                     : r->last_error[0] ? "err"
                                                        : "ok") ||
                        alert_json_str(b, r->last_error) ||
                        alert_printf(b, ",\"evaluationTime\":%.6f,\"lastEvaluation\":\"%s\"}",
                                     r->eval_seconds, t)))
                rc = -1;
        }
        alert_time_rfc3339(g->last_eval_ms, t, sizeof t);
        if (!rc && alert_printf(b,
                                "],\"interval\":%g,\"limit\":%" PRIu32
                                ",\"evaluationTime\":%.6f,\"lastEvaluation\":\"%s\"}",
                                (double)g->interval_ms / 1000, g->limit, g->eval_seconds, t))
            rc = -1;
    }
    if (!rc && tbuf_put(b, "]}}\n", 4)) rc = -1;
    pthread_mutex_unlock(&e->mu);
    return rc;
}
