/* rules.c — Prometheus rule files (YAML, libyaml's document API) into
 * alert_ruleset_t, checked as promtool checks them: every problem is one
 * "FILE:LINE:COL: why" line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alert/alert_int.h"

typedef struct {
    const char *file;
    tbuf_t *errs;
    size_t *nerrs;
    int oom;
} lctx_t;

__attribute__((format(printf, 3, 4))) static void lerr(lctx_t *c, const yaml_node_t *n,
                                                       const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (*c->nerrs)++;
    if (c->errs && alert_printf(c->errs, "%s:%d:%d: %s\n", c->file, alert_yaml_line(n),
                                alert_yaml_col(n), msg))
        c->oom = 1;
}

static void rule_free(alert_rule_def_t *r)
{
    free(r->alert);
    free(r->record);
    free(r->expr);
    promql_expr_free(r->pq);
    alert_kv_free(r->labels, r->nlabels);
    alert_kv_free(r->annotations, r->nannotations);
    memset(r, 0, sizeof *r);
}

static void group_free(alert_group_def_t *g)
{
    for (size_t i = 0; i < g->nrules; i++)
        rule_free(&g->rules[i]);
    free(g->rules);
    free(g->name);
    free(g->file);
    memset(g, 0, sizeof *g);
}

void alert_ruleset_free(alert_ruleset_t *rs)
{
    if (!rs) return;
    for (size_t i = 0; i < rs->ngroups; i++)
        group_free(&rs->groups[i]);
    free(rs->groups);
    rs->groups = NULL;
    rs->ngroups = 0;
}

size_t alert_ruleset_rule_count(const alert_ruleset_t *rs)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->ngroups; i++)
        n += rs->groups[i].nrules;
    return n;
}

/* A mapping of strings to strings (labels, annotations). */
static int load_map(lctx_t *c, alert_yaml_t *y, yaml_node_t *m, const char *what, const char *ctx,
                    int templates, alert_kv_t **out, size_t *nout)
{
    if (alert_yaml_is_null(m)) return 0;
    if (m->type != YAML_MAPPING_NODE) {
        lerr(c, m, "%s: %s must be a mapping", ctx, what);
        return -1;
    }
    int bad = 0;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = alert_yaml_node(y, p->key), *v = alert_yaml_node(y, p->value);
        const char *ks = alert_yaml_str(k), *vs = alert_yaml_str(v);
        if (!ks || !vs) {
            lerr(c, k, "%s: %s values must be strings", ctx, what);
            bad = 1;
            continue;
        }
        if (!alert_label_name_valid(ks)) {
            lerr(c, k, "%s: invalid %s name \"%s\"", ctx, what, ks);
            bad = 1;
            continue;
        }
        if (alert_kv_get(*out, *nout, ks)) {
            lerr(c, k, "%s: %s \"%s\" given twice", ctx, what, ks);
            bad = 1;
            continue;
        }
        if (templates) {
            char terr[256];
            if (alert_template_expand(vs, strlen(vs), NULL, NULL, terr, sizeof terr)) {
                lerr(c, v, "%s: %s \"%s\": template: %s", ctx, what, ks, terr);
                bad = 1;
                continue;
            }
        }
        if (alert_kv_set(out, nout, ks, vs)) {
            c->oom = 1;
            return -1;
        }
    }
    return bad ? -1 : 0;
}

static int load_rule(lctx_t *c, alert_yaml_t *y, yaml_node_t *rn, const char *gname, size_t idx,
                     alert_rule_def_t *r)
{
    char ctx[512];
    snprintf(ctx, sizeof ctx, "group \"%s\", rule %zu", gname, idx + 1);
    r->line = alert_yaml_line(rn);
    if (rn->type != YAML_MAPPING_NODE) {
        lerr(c, rn, "%s: a rule must be a mapping", ctx);
        return -1;
    }
    int bad = 0;
    /* Name the rule in every message, whatever the key order. */
    for (yaml_node_pair_t *p = rn->data.mapping.pairs.start; p < rn->data.mapping.pairs.top; p++) {
        const char *ks = alert_yaml_str(alert_yaml_node(y, p->key));
        const char *vs = alert_yaml_str(alert_yaml_node(y, p->value));
        if (ks && vs && *vs && (!strcmp(ks, "alert") || !strcmp(ks, "record"))) {
            snprintf(ctx + strlen(ctx), sizeof ctx - strlen(ctx), ", \"%s\"", vs);
            break;
        }
    }
    yaml_node_t *expr = NULL, *fornode = NULL, *kff = NULL, *labels = NULL, *ann = NULL;
    yaml_node_t *namenode = NULL;
    for (yaml_node_pair_t *p = rn->data.mapping.pairs.start; p < rn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = alert_yaml_node(y, p->key), *v = alert_yaml_node(y, p->value);
        const char *ks = alert_yaml_str(k);
        if (!ks) {
            lerr(c, k, "%s: keys must be strings", ctx);
            bad = 1;
        } else if (!strcmp(ks, "alert") || !strcmp(ks, "record")) {
            const char *vs = alert_yaml_str(v);
            if (!vs || !*vs) {
                lerr(c, v, "%s: %s must be a non-empty string", ctx, ks);
                bad = 1;
                continue;
            }
            if (r->alert || r->record) {
                lerr(c, k, "%s: only one of 'record' and 'alert' may be set", ctx);
                bad = 1;
                continue;
            }
            char *d = alert_strdup(vs);
            if (!d) {
                c->oom = 1;
                return -1;
            }
            if (ks[0] == 'a')
                r->alert = d;
            else
                r->record = d;
            namenode = v;
        } else if (!strcmp(ks, "expr"))
            expr = v;
        else if (!strcmp(ks, "for"))
            fornode = v;
        else if (!strcmp(ks, "keep_firing_for"))
            kff = v;
        else if (!strcmp(ks, "labels"))
            labels = v;
        else if (!strcmp(ks, "annotations"))
            ann = v;
        else {
            lerr(c, k, "%s: field %s not found in type rulefmt.Rule", ctx, ks);
            bad = 1;
        }
    }
    const char *name = r->alert ? r->alert : r->record;
    if (!name) {
        lerr(c, rn, "%s: one of 'record' or 'alert' must be set", ctx);
        bad = 1;
    }
    if (r->record && !alert_metric_name_valid(r->record)) {
        lerr(c, namenode, "%s: invalid recording rule name: %s", ctx, r->record);
        bad = 1;
    }
    if (!expr || !alert_yaml_str(expr) || !*alert_yaml_str(expr)) {
        lerr(c, expr ? expr : rn, "%s: field 'expr' must be set in rule", ctx);
        bad = 1;
    } else {
        const char *es = alert_yaml_str(expr);
        r->expr = alert_strdup(es);
        if (!r->expr) {
            c->oom = 1;
            return -1;
        }
        char perr[512];
        int rc = promql_parse(es, strlen(es), &r->pq, perr, sizeof perr);
        if (rc == PQ_ENOMEM) {
            c->oom = 1;
            return -1;
        }
        if (rc) {
            lerr(c, expr, "%s: could not parse expression: %s", ctx, perr);
            bad = 1;
        } else if (promql_expr_type(r->pq) != PQ_T_VECTOR &&
                   promql_expr_type(r->pq) != PQ_T_SCALAR) {
            lerr(c, expr, "%s: invalid expression type \"%s\" (must be vector or scalar)", ctx,
                 promql_type_name(promql_expr_type(r->pq)));
            bad = 1;
        }
    }
    const struct {
        yaml_node_t *n;
        int64_t *dst;
        const char *key;
    } durs[] = {{fornode, &r->for_ms, "for"}, {kff, &r->keep_firing_for_ms, "keep_firing_for"}};
    for (int i = 0; i < 2; i++) {
        if (!durs[i].n) continue;
        if (r->record) {
            lerr(c, durs[i].n, "%s: invalid field '%s' in recording rule", ctx, durs[i].key);
            bad = 1;
        } else if (alert_duration_parse(alert_yaml_str(durs[i].n), durs[i].dst)) {
            lerr(c, durs[i].n, "%s: %s: not a valid duration string: \"%s\"", ctx, durs[i].key,
                 alert_yaml_str(durs[i].n) ? alert_yaml_str(durs[i].n) : "");
            bad = 1;
        }
    }
    if (ann && r->record) {
        lerr(c, ann, "%s: invalid field 'annotations' in recording rule", ctx);
        bad = 1;
    }
    if (labels && load_map(c, y, labels, "label", ctx, r->alert != NULL, &r->labels, &r->nlabels))
        bad = 1;
    for (size_t i = 0; i < r->nlabels; i++)
        if (!strcmp(r->labels[i].name, "__name__")) {
            lerr(c, labels, "%s: invalid label name: __name__", ctx);
            bad = 1;
        }
    if (ann && !r->record &&
        load_map(c, y, ann, "annotation", ctx, 1, &r->annotations, &r->nannotations))
        bad = 1;
    return bad ? -1 : 0;
}

static int load_group(lctx_t *c, alert_yaml_t *y, yaml_node_t *gn, alert_group_def_t *g,
                      const alert_group_def_t *prev, size_t nprev)
{
    g->line = alert_yaml_line(gn);
    if (gn->type != YAML_MAPPING_NODE) {
        lerr(c, gn, "a group must be a mapping");
        return -1;
    }
    int bad = 0;
    yaml_node_t *rules = NULL;
    for (yaml_node_pair_t *p = gn->data.mapping.pairs.start; p < gn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = alert_yaml_node(y, p->key), *v = alert_yaml_node(y, p->value);
        const char *ks = alert_yaml_str(k), *vs = alert_yaml_str(v);
        if (!ks) {
            lerr(c, k, "group keys must be strings");
            bad = 1;
        } else if (!strcmp(ks, "name")) {
            if (!vs || !*vs) {
                lerr(c, v, "Groupname must not be empty");
                bad = 1;
                continue;
            }
            if (!(g->name = alert_strdup(vs))) {
                c->oom = 1;
                return -1;
            }
        } else if (!strcmp(ks, "interval")) {
            if (alert_duration_parse(vs, &g->interval_ms) || g->interval_ms <= 0) {
                lerr(c, v, "interval: not a valid positive duration: \"%s\"", vs ? vs : "");
                bad = 1;
            }
        } else if (!strcmp(ks, "limit")) {
            char *e;
            long long l = vs ? strtoll(vs, &e, 10) : -1;
            if (!vs || *e || l < 0 || l > UINT32_MAX) {
                lerr(c, v, "limit: not a non-negative integer");
                bad = 1;
            } else
                g->limit = (uint32_t)l;
        } else if (!strcmp(ks, "rules"))
            rules = v;
        else {
            lerr(c, k, "field %s not found in type rulefmt.RuleGroup", ks);
            bad = 1;
        }
    }
    if (!g->name) {
        lerr(c, gn, "Groupname must not be empty");
        return -1;
    }
    for (size_t i = 0; i < nprev; i++)
        if (!strcmp(prev[i].name, g->name)) {
            lerr(c, gn, "groupname: \"%s\" is repeated in the same file", g->name);
            bad = 1;
        }
    if (!(g->file = alert_strdup(c->file))) {
        c->oom = 1;
        return -1;
    }
    if (!rules || alert_yaml_is_null(rules)) return bad ? -1 : 0;
    if (rules->type != YAML_SEQUENCE_NODE) {
        lerr(c, rules, "group \"%s\": rules must be a list", g->name);
        return -1;
    }
    size_t n = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
    g->rules = calloc(n ? n : 1, sizeof *g->rules);
    if (!g->rules) {
        c->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *rn = alert_yaml_node(y, rules->data.sequence.items.start[i]);
        g->nrules++;
        if (load_rule(c, y, rn, g->name, i, &g->rules[i])) bad = 1;
        if (c->oom) return -1;
    }
    return bad ? -1 : 0;
}

int alert_rules_load_buffer(alert_ruleset_t *rs, const char *name, const char *text, size_t len,
                            tbuf_t *errs, size_t *nerrs)
{
    size_t nerr_local = 0;
    lctx_t c = {.file = name, .errs = errs, .nerrs = nerrs ? nerrs : &nerr_local};
    size_t before = *c.nerrs;
    alert_yaml_t y;
    char yerr[512];
    if (alert_yaml_load(&y, text, len, yerr, sizeof yerr)) {
        (*c.nerrs)++;
        if (errs && alert_printf(errs, "%s:%s\n", name, yerr)) return ALERT_ENOMEM;
        return ALERT_ERULES;
    }
    yaml_node_t *root = alert_yaml_root(&y);
    alert_group_def_t *gs = NULL;
    size_t ng = 0;
    int rc = 0;
    if (!root || alert_yaml_is_null(root)) goto done; /* an empty file: no groups */
    if (root->type != YAML_MAPPING_NODE) {
        lerr(&c, root, "the file must be a mapping with a 'groups' list");
        goto done;
    }
    yaml_node_t *groups = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = alert_yaml_node(&y, p->key);
        const char *ks = alert_yaml_str(k);
        if (ks && !strcmp(ks, "groups"))
            groups = alert_yaml_node(&y, p->value);
        else
            lerr(&c, k, "field %s not found in type rulefmt.RuleGroups", ks ? ks : "?");
    }
    if (!groups || alert_yaml_is_null(groups)) goto done;
    if (groups->type != YAML_SEQUENCE_NODE) {
        lerr(&c, groups, "'groups' must be a list");
        goto done;
    }
    size_t n = (size_t)(groups->data.sequence.items.top - groups->data.sequence.items.start);
    gs = calloc(n ? n : 1, sizeof *gs);
    if (!gs) {
        rc = ALERT_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        load_group(&c, &y, alert_yaml_node(&y, groups->data.sequence.items.start[i]), &gs[ng], gs,
                   ng);
        ng++;
        if (c.oom) break;
    }
done:
    alert_yaml_free(&y);
    if (c.oom) rc = ALERT_ENOMEM;
    if (!rc && *c.nerrs != before) rc = ALERT_ERULES;
    if (!rc && ng) {
        alert_group_def_t *g = realloc(rs->groups, (rs->ngroups + ng) * sizeof *g);
        if (!g)
            rc = ALERT_ENOMEM;
        else {
            memcpy(g + rs->ngroups, gs, ng * sizeof *g);
            rs->groups = g;
            rs->ngroups += ng;
            free(gs);
            return 0;
        }
    }
    for (size_t i = 0; i < ng; i++)
        group_free(&gs[i]);
    free(gs);
    return rc;
}

int alert_rules_load_file(alert_ruleset_t *rs, const char *path, tbuf_t *errs, size_t *nerrs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (nerrs) (*nerrs)++;
        if (errs) alert_printf(errs, "%s: cannot read: %s\n", path, strerror(errno));
        return ALERT_EIO;
    }
    size_t cap = 16u << 20;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ALERT_ENOMEM;
    }
    size_t n = fread(buf, 1, cap + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > cap) {
        free(buf);
        if (nerrs) (*nerrs)++;
        if (errs) alert_printf(errs, "%s: %s\n", path, rerr ? "read error" : "larger than 16 MiB");
        return ALERT_EIO;
    }
    int rc = alert_rules_load_buffer(rs, path, buf, n, errs, nerrs);
    free(buf);
    return rc;
}
