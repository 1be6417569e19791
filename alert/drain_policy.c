/* drain_policy.c — the drain policy: defaults and the YAML file
 * (docs/draining.md lists every key). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alert/alert_int.h"
#include "alert/drain.h"

const char *drain_strerror(int err)
{
    switch (err) {
#define DRAIN_ERR_STR_(name, code, msg)                                                            \
    case code:                                                                                     \
        return msg;
        DRAIN_ERRNO_MAP(DRAIN_ERR_STR_)
#undef DRAIN_ERR_STR_
    }
    return "unknown error";
}

const char *drain_kind_name(int k)
{
    static const char *const n[] = {"disk", "gpu", "node_anomaly"};
    return k >= 0 && k < DRAIN_KINDS ? n[k] : "?";
}

static void strv_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void drain_policy_free(drain_policy_t *p)
{
    if (!p) return;
    free(p->node_label);
    strv_free(p->domain_labels, p->ndomain_labels);
    free(p->cordon_cmd);
    free(p->drain_cmd);
    free(p->uncordon_cmd);
    free(p->webhook_url);
    for (int k = 0; k < DRAIN_KINDS; k++)
        free(p->kinds[k].query);
    strv_free(p->block_alerts, p->nblock_alerts);
    free(p->windows);
    strv_free(p->opt_out, p->nopt_out);
    memset(p, 0, sizeof *p);
}

int drain_policy_init(drain_policy_t *p)
{
    memset(p, 0, sizeof *p);
    p->dry_run = 1;
    p->manual_approval = 1;
    p->strip_port = 1;
    p->node_label = alert_strdup("instance");
    p->domain_labels = calloc(2, sizeof *p->domain_labels);
    if (p->domain_labels) {
        p->domain_labels[0] = alert_strdup("rack");
        p->domain_labels[1] = alert_strdup("pod");
        p->ndomain_labels = 2;
    }
    p->cordon_cmd = alert_strdup("kubectl cordon {{node}}");
    p->drain_cmd = alert_strdup("kubectl drain {{node}} --ignore-daemonsets "
                                "--delete-emptydir-data --timeout={{timeout}}");
    p->uncordon_cmd = alert_strdup("kubectl uncordon {{node}}");
    p->command_timeout_ms = 15 * 60000;
    p->drain_timeout_ms = 10 * 60000;
    static const char *const q[] = {
        "max by (instance, rack, pod) (augur_failure_probability{kind=\"disk\"})",
        "max by (instance, rack, pod) (augur_failure_probability{kind=\"gpu\"})",
        "max by (instance, rack, pod) (augur_node_anomaly_rate)"};
    static const double thr[] = {0.9, 0.9, 0.6}, low[] = {0.5, 0.5, 0.2};
    static const int64_t forms[] = {30 * 60000, 30 * 60000, 60 * 60000};
    for (int k = 0; k < DRAIN_KINDS; k++) {
        p->kinds[k].enabled = k != DRAIN_KIND_NODE_ANOMALY; /* anomalies alone: alert only */
        p->kinds[k].query = alert_strdup(q[k]);
        p->kinds[k].drain_threshold = thr[k];
        p->kinds[k].for_ms = forms[k];
        p->kinds[k].undrain_threshold = low[k];
        p->kinds[k].undrain_for_ms = 6 * 3600000LL;
    }
    p->max_cordoned = 2;
    p->max_cordoned_percent = 5;
    p->max_per_domain = 1;
    p->min_spacing_ms = 30 * 60000;
    p->max_per_hour = 2;
    p->cooldown_ms = 24 * 3600000LL;
    p->breaker_percent = 10;
    p->breaker_min_flagged = 3;
    p->breaker_window_ms = 3600000;
    p->horizon_ms = 7 * 86400000LL;
    p->uncordon_on_failure = 1;
    int bad = !p->node_label || !p->domain_labels || !p->domain_labels[0] || !p->domain_labels[1] ||
              !p->cordon_cmd || !p->drain_cmd || !p->uncordon_cmd;
    for (int k = 0; k < DRAIN_KINDS; k++)
        bad |= !p->kinds[k].query;
    if (bad) {
        drain_policy_free(p);
        return DRAIN_ENOMEM;
    }
    return 0;
}

/* ---- YAML ------------------------------------------------------------------ */

typedef struct {
    alert_yaml_t *y;
    char *err;
    size_t errlen;
    int failed;
} pctx_t;

__attribute__((format(printf, 3, 4))) static int perr(pctx_t *c, const yaml_node_t *n,
                                                      const char *fmt, ...)
{
    if (c->failed) return -1;
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%d:%d: %s", alert_yaml_line(n), alert_yaml_col(n), m);
    c->failed = 1;
    return -1;
}

static int get_str(pctx_t *c, yaml_node_t *v, const char *key, char **dst)
{
    const char *s = alert_yaml_str(v);
    if (!s) return perr(c, v, "%s: want a string", key);
    char *d = alert_strdup(s);
    if (!d) return perr(c, v, "out of memory");
    free(*dst);
    *dst = d;
    return 0;
}

static int get_dur(pctx_t *c, yaml_node_t *v, const char *key, int64_t *dst)
{
    if (alert_duration_parse(alert_yaml_str(v), dst))
        return perr(c, v, "%s: want a duration such as 30m, 6h, 7d", key);
    return 0;
}

static int get_u32(pctx_t *c, yaml_node_t *v, const char *key, uint32_t *dst)
{
    const char *s = alert_yaml_str(v);
    char *e;
    long long x = s ? strtoll(s, &e, 10) : -1;
    if (!s || !*s || *e || x < 0 || x > 1000000000)
        return perr(c, v, "%s: want an integer >= 0", key);
    *dst = (uint32_t)x;
    return 0;
}

static int get_num(pctx_t *c, yaml_node_t *v, const char *key, double *dst, double lo, double hi)
{
    double x;
    if (alert_yaml_double(v, &x) || x < lo || x > hi)
        return perr(c, v, "%s: want a number in [%g, %g]", key, lo, hi);
    *dst = x;
    return 0;
}

static int get_bool(pctx_t *c, yaml_node_t *v, const char *key, int *dst)
{
    if (alert_yaml_bool(v, dst)) return perr(c, v, "%s: want true or false", key);
    return 0;
}

static int get_strv(pctx_t *c, yaml_node_t *v, const char *key, char ***dst, size_t *n)
{
    if (alert_yaml_is_null(v)) {
        strv_free(*dst, *n);
        *dst = NULL;
        *n = 0;
        return 0;
    }
    if (v->type != YAML_SEQUENCE_NODE) return perr(c, v, "%s: want a list of strings", key);
    size_t k = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    char **a = calloc(k ? k : 1, sizeof *a);
    if (!a) return perr(c, v, "out of memory");
    for (size_t i = 0; i < k; i++) {
        yaml_node_t *it = alert_yaml_node(c->y, v->data.sequence.items.start[i]);
        const char *s = alert_yaml_str(it);
        if (!s || !*s || !(a[i] = alert_strdup(s))) {
            strv_free(a, k);
            return perr(c, it, "%s: want non-empty strings", key);
        }
    }
    strv_free(*dst, *n);
    *dst = a;
    *n = k;
    return 0;
}

#define FOR_PAIRS(c, m, pp, k, v, ks)                                                              \
    for (yaml_node_pair_t *pp = (m)->data.mapping.pairs.start; pp < (m)->data.mapping.pairs.top;   \
         pp++)                                                                                     \
        for (yaml_node_t *k = alert_yaml_node((c)->y, pp->key),                                    \
                         *v = alert_yaml_node((c)->y, pp->value);                                  \
             k; k = NULL)                                                                          \
            for (const char *ks = alert_yaml_str(k) ? alert_yaml_str(k) : ""; ks; ks = NULL)

static int want_map(pctx_t *c, yaml_node_t *v, const char *key)
{
    if (!v || v->type != YAML_MAPPING_NODE) return perr(c, v, "%s: want a mapping", key);
    return 0;
}

static int hhmm(const char *s, int *min)
{
    int h, m;
    char tail;
    if (!s || sscanf(s, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || h > 24 || m < 0 || m > 59 ||
        (h == 24 && m))
        return -1;
    *min = h * 60 + m;
    return 0;
}

static int parse_windows(pctx_t *c, yaml_node_t *v, drain_policy_t *p)
{
    if (alert_yaml_is_null(v)) {
        free(p->windows);
        p->windows = NULL;
        p->nwindows = 0;
        return 0;
    }
    if (v->type != YAML_SEQUENCE_NODE) return perr(c, v, "maintenance_windows: want a list");
    size_t k = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    drain_window_t *w = calloc(k ? k : 1, sizeof *w);
    if (!w) return perr(c, v, "out of memory");
    for (size_t i = 0; i < k && !c->failed; i++) {
        yaml_node_t *it = alert_yaml_node(c->y, v->data.sequence.items.start[i]);
        if (want_map(c, it, "maintenance_windows[]")) break;
        w[i].days = 0x7f;
        int have_s = 0, have_e = 0;
        FOR_PAIRS(c, it, pw, kk, vv, ks)
        {
            if (!strcmp(ks, "start")) {
                have_s = 1;
                if (hhmm(alert_yaml_str(vv), &w[i].start_min))
                    perr(c, vv, "start: want HH:MM (UTC)");
            } else if (!strcmp(ks, "end")) {
                have_e = 1;
                if (hhmm(alert_yaml_str(vv), &w[i].end_min)) perr(c, vv, "end: want HH:MM (UTC)");
            } else if (!strcmp(ks, "days")) {
                static const char *const dn[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
                if (vv->type != YAML_SEQUENCE_NODE) {
                    perr(c, vv, "days: want a list such as [mon, tue]");
                    continue;
                }
                w[i].days = 0;
                for (yaml_node_item_t *d = vv->data.sequence.items.start;
                     d < vv->data.sequence.items.top; d++) {
                    const char *ds = alert_yaml_str(alert_yaml_node(c->y, *d));
                    int f = -1;
                    for (int q = 0; q < 7 && ds; q++)
                        if (!strncasecmp(ds, dn[q], 3)) f = q;
                    if (f < 0)
                        perr(c, alert_yaml_node(c->y, *d), "days: unknown day '%s'", ds ? ds : "");
                    else
                        w[i].days |= (uint8_t)(1u << f);
                }
            } else
                perr(c, kk, "maintenance_windows: unknown key '%s'", ks);
        }
        if (!c->failed && (!have_s || !have_e))
            perr(c, it, "maintenance window needs start and end");
    }
    if (c->failed) {
        free(w);
        return -1;
    }
    free(p->windows);
    p->windows = w;
    p->nwindows = k;
    return 0;
}

static int parse_kind(pctx_t *c, yaml_node_t *m, drain_kind_policy_t *k, const char *name)
{
    if (want_map(c, m, name)) return -1;
    FOR_PAIRS(c, m, pk, kk, v, ks)
    {
        if (!strcmp(ks, "enabled"))
            get_bool(c, v, ks, &k->enabled);
        else if (!strcmp(ks, "query")) {
            if (!get_str(c, v, ks, &k->query)) {
                pq_expr_t *e = NULL;
                char pe[300];
                if (promql_parse(k->query, strlen(k->query), &e, pe, sizeof pe))
                    perr(c, v, "%s.query: %s", name, pe);
                else if (promql_expr_type(e) != PQ_T_VECTOR)
                    perr(c, v, "%s.query: must return an instant vector", name);
                promql_expr_free(e);
            }
        } else if (!strcmp(ks, "drain_threshold"))
            get_num(c, v, ks, &k->drain_threshold, -1e300, 1e300);
        else if (!strcmp(ks, "for"))
            get_dur(c, v, ks, &k->for_ms);
        else if (!strcmp(ks, "undrain_threshold"))
            get_num(c, v, ks, &k->undrain_threshold, -1e300, 1e300);
        else if (!strcmp(ks, "undrain_for"))
            get_dur(c, v, ks, &k->undrain_for_ms);
        else
            perr(c, kk, "%s: unknown key '%s'", name, ks);
    }
    if (!c->failed && k->undrain_threshold > k->drain_threshold)
        perr(c, m, "%s: undrain_threshold must not be above drain_threshold", name);
    return c->failed ? -1 : 0;
}

int drain_policy_parse(drain_policy_t *p, const char *text, size_t len, char *err, size_t errlen)
{
    alert_yaml_t y;
    if (alert_yaml_load(&y, text, len, err, errlen)) return DRAIN_ECONFIG;
    pctx_t c = {&y, err, errlen, 0};
    yaml_node_t *root = alert_yaml_root(&y);
    if (!root || alert_yaml_is_null(root)) {
        alert_yaml_free(&y);
        return 0;
    }
    if (want_map(&c, root, "policy")) goto out;
    FOR_PAIRS(&c, root, p0, k, v, ks)
    {
        if (c.failed) break;
        if (!strcmp(ks, "dry_run"))
            get_bool(&c, v, ks, &p->dry_run);
        else if (!strcmp(ks, "manual_approval"))
            get_bool(&c, v, ks, &p->manual_approval);
        else if (!strcmp(ks, "node_label"))
            get_str(&c, v, ks, &p->node_label);
        else if (!strcmp(ks, "strip_port"))
            get_bool(&c, v, ks, &p->strip_port);
        else if (!strcmp(ks, "failure_domain_labels"))
            get_strv(&c, v, ks, &p->domain_labels, &p->ndomain_labels);
        else if (!strcmp(ks, "commands")) {
            if (want_map(&c, v, ks)) break;
            FOR_PAIRS(&c, v, p1, k2, v2, ks2)
            {
                if (!strcmp(ks2, "cordon"))
                    get_str(&c, v2, ks2, &p->cordon_cmd);
                else if (!strcmp(ks2, "drain"))
                    get_str(&c, v2, ks2, &p->drain_cmd);
                else if (!strcmp(ks2, "uncordon"))
                    get_str(&c, v2, ks2, &p->uncordon_cmd);
                else if (!strcmp(ks2, "timeout"))
                    get_dur(&c, v2, ks2, &p->command_timeout_ms);
                else if (!strcmp(ks2, "drain_timeout"))
                    get_dur(&c, v2, ks2, &p->drain_timeout_ms);
                else
                    perr(&c, k2, "commands: unknown key '%s'", ks2);
            }
            const char *const cmds[] = {p->cordon_cmd, p->drain_cmd, p->uncordon_cmd};
            for (int i = 0; i < 3 && !c.failed; i++) {
                char **argv = NULL;
                if (drain_argv_build(cmds[i], "node", "disk", "1m", &argv))
                    perr(&c, v, "commands: '%s' is not a valid command template", cmds[i]);
                free(argv);
            }
        } else if (!strcmp(ks, "webhook")) {
            if (want_map(&c, v, ks)) break;
            FOR_PAIRS(&c, v, p1, k2, v2, ks2)
            {
                if (!strcmp(ks2, "url")) {
                    if (!get_str(&c, v2, ks2, &p->webhook_url) &&
                        strncmp(p->webhook_url, "http://", 7) &&
                        strncmp(p->webhook_url, "https://", 8))
                        perr(&c, v2, "webhook.url: want http:// or https://");
                } else
                    perr(&c, k2, "webhook: unknown key '%s'", ks2);
            }
        } else if (!strcmp(ks, "kinds")) {
            if (want_map(&c, v, ks)) break;
            FOR_PAIRS(&c, v, p1, k2, v2, ks2)
            {
                int f = -1;
                for (int q = 0; q < DRAIN_KINDS; q++)
                    if (!strcmp(ks2, drain_kind_name(q))) f = q;
                if (f < 0)
                    perr(&c, k2, "kinds: unknown kind '%s' (disk, gpu, node_anomaly)", ks2);
                else
                    parse_kind(&c, v2, &p->kinds[f], ks2);
            }
        } else if (!strcmp(ks, "limits")) {
            if (want_map(&c, v, ks)) break;
            FOR_PAIRS(&c, v, p1, k2, v2, ks2)
            {
                if (!strcmp(ks2, "max_cordoned"))
                    get_u32(&c, v2, ks2, &p->max_cordoned);
                else if (!strcmp(ks2, "max_cordoned_percent"))
                    get_num(&c, v2, ks2, &p->max_cordoned_percent, 0, 100);
                else if (!strcmp(ks2, "max_per_domain"))
                    get_u32(&c, v2, ks2, &p->max_per_domain);
                else if (!strcmp(ks2, "min_spacing"))
                    get_dur(&c, v2, ks2, &p->min_spacing_ms);
                else if (!strcmp(ks2, "max_per_hour"))
                    get_u32(&c, v2, ks2, &p->max_per_hour);
                else if (!strcmp(ks2, "cooldown"))
                    get_dur(&c, v2, ks2, &p->cooldown_ms);
                else if (!strcmp(ks2, "fleet_size"))
                    get_u32(&c, v2, ks2, &p->fleet_size);
                else
                    perr(&c, k2, "limits: unknown key '%s'", ks2);
            }
        } else if (!strcmp(ks, "circuit_breaker")) {
            if (want_map(&c, v, ks)) break;
            FOR_PAIRS(&c, v, p1, k2, v2, ks2)
            {
                if (!strcmp(ks2, "max_flagged_percent"))
                    get_num(&c, v2, ks2, &p->breaker_percent, 0, 100);
                else if (!strcmp(ks2, "min_flagged"))
                    get_u32(&c, v2, ks2, &p->breaker_min_flagged);
                else if (!strcmp(ks2, "window"))
                    get_dur(&c, v2, ks2, &p->breaker_window_ms);
                else
                    perr(&c, k2, "circuit_breaker: unknown key '%s'", ks2);
            }
        } else if (!strcmp(ks, "block_when_firing"))
            get_strv(&c, v, ks, &p->block_alerts, &p->nblock_alerts);
        else if (!strcmp(ks, "maintenance_windows"))
            parse_windows(&c, v, p);
        else if (!strcmp(ks, "opt_out"))
            get_strv(&c, v, ks, &p->opt_out, &p->nopt_out);
        else if (!strcmp(ks, "outcome_horizon"))
            get_dur(&c, v, ks, &p->horizon_ms);
        else if (!strcmp(ks, "uncordon_on_failure_event"))
            get_bool(&c, v, ks, &p->uncordon_on_failure);
        else
            perr(&c, k, "unknown key '%s'", ks);
    }
    if (!c.failed && (!p->node_label || !alert_label_name_valid(p->node_label)))
        perr(&c, root, "node_label: want a label name");
    if (!c.failed && p->max_cordoned == 0)
        perr(&c, root, "limits.max_cordoned: 0 would never drain; set dry_run or disable kinds");
out:
    alert_yaml_free(&y);
    return c.failed ? DRAIN_ECONFIG : 0;
}

int drain_policy_load_file(drain_policy_t *p, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read", path);
        return DRAIN_EIO;
    }
    char *buf = malloc((1 << 20) + 1);
    size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
    fclose(f);
    if (!buf) return DRAIN_ENOMEM;
    char e2[400];
    int rc = drain_policy_parse(p, buf, n, e2, sizeof e2);
    if (rc) snprintf(err, errlen, "%s:%s", path, e2);
    free(buf);
    return rc;
}
