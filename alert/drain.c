/* drain.c — the drain controller (drain.h has the model). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "alert/alert_int.h"
#include "alert/drain.h"

#define MAX_DOM 4

enum { NS_OK = 0, NS_FLAGGED, NS_AWAITING, NS_DRAINING, NS_DRAINED, NS_FAILED, NS_COUNT };
static const char *const ns_names[] = {"ok",       "flagged", "awaiting_approval",
                                       "draining", "drained", "drain_failed"};

typedef struct {
    double risk;         /* latest value; NaN = no data this tick */
    int64_t above_since; /* 0 = not >= drain_threshold */
    int64_t below_since; /* 0 = not < undrain_threshold */
} dkind_t;

typedef struct {
    char *instance;     /* the node label's value: the key */
    char *node;         /* for commands: port stripped */
    char *dom[MAX_DOM]; /* failure-domain label values (NULL = absent) */
    int state;
    int kind; /* kind it is flagged / drained for; -1 = none */
    int64_t state_since;
    int64_t cordoned_at;
    int64_t cooldown_until;
    int approved;
    int cancelled;
    int uncordon_req;
    char last_decision[200];
    dkind_t k[DRAIN_KINDS];
} dnode_t;

typedef struct {
    char *instance;
    int kind;
    int64_t started_at;
    int result; /* 0 pending, 1 true positive, 2 false positive */
    int dry_run;
    int64_t resolved_at;
} doutcome_t;

typedef struct {
    int64_t t;
    char *instance;
} dflag_t;

struct drain {
    tsdb_t *db;
    char *state_path, *audit_path;
    int audit_fd;
    drain_policy_t pol;
    pq_expr_t *q[DRAIN_KINDS];
    pq_expr_t *alerts_q;
    pthread_mutex_t mu, tick_mu;
    dnode_t *nodes; /* sorted by instance */
    size_t n, cap;
    dflag_t *flags;
    size_t nflags, capflags;
    int64_t *starts;
    size_t nstarts, capstarts;
    doutcome_t *outc;
    size_t noutc, capoutc;
    int paused, tripped;
    int64_t tripped_at;
    size_t fleet;
    int dirty;
    uint64_t commands, command_failures;
};

/* ---- small helpers --------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *g = realloc(*p, nc * sz);
    if (!g) return -1;
    *p = g;
    *cap = nc;
    return 0;
}

static dnode_t *node_find(drain_t *d, const char *inst)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(d->nodes[mid].instance, inst);
        if (!c) return &d->nodes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Find or add (keeps the array sorted). NULL on allocation failure. */
static dnode_t *node_get(drain_t *d, const char *inst)
{
    dnode_t *x = node_find(d, inst);
    if (x) return x;
    if (grow((void **)&d->nodes, &d->cap, d->n, sizeof *d->nodes)) return NULL;
    size_t pos = 0;
    while (pos < d->n && strcmp(d->nodes[pos].instance, inst) < 0)
        pos++;
    memmove(&d->nodes[pos + 1], &d->nodes[pos], (d->n - pos) * sizeof *d->nodes);
    dnode_t *nn = &d->nodes[pos];
    memset(nn, 0, sizeof *nn);
    nn->instance = alert_strdup(inst);
    const char *c = strrchr(inst, ':');
    nn->node = d->pol.strip_port && c && c > inst && !strchr(c, ']')
                   ? alert_strndup(inst, (size_t)(c - inst))
                   : alert_strdup(inst);
    nn->kind = -1;
    for (int k = 0; k < DRAIN_KINDS; k++)
        nn->k[k].risk = NAN;
    if (!nn->instance || !nn->node) {
        free(nn->instance);
        free(nn->node);
        memmove(&d->nodes[pos], &d->nodes[pos + 1], (d->n - pos) * sizeof *d->nodes);
        return NULL;
    }
    d->n++;
    return nn;
}

static void node_free(dnode_t *x)
{
    free(x->instance);
    free(x->node);
    for (int i = 0; i < MAX_DOM; i++)
        free(x->dom[i]);
}

/* Node names safe for a command line argument: no option injection
 * ("--all"), no path or shell metacharacters. */
static int node_name_safe(const char *s)
{
    if (!s || !*s || strlen(s) > 253) return 0;
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '_'))
            return 0;
    return 1;
}

static double node_risk(const dnode_t *x)
{
    double r = NAN;
    for (int k = 0; k < DRAIN_KINDS; k++)
        if (!isnan(x->k[k].risk) && (isnan(r) || x->k[k].risk > r)) r = x->k[k].risk;
    return r;
}

static int is_cordoned(int s)
{
    return s == NS_DRAINING || s == NS_DRAINED || s == NS_FAILED;
}

/* ---- audit log ------------------------------------------------------------- */

static void audit_begin(tbuf_t *b, int64_t now, const char *event)
{
    char ts[40];
    alert_time_rfc3339(now, ts, sizeof ts);
    b->len = 0;
    alert_printf(b, "{\"ts\":\"%s\",\"t\":%" PRId64 ",\"event\":\"%s\"", ts, now, event);
}

static void audit_kv(tbuf_t *b, const char *k, const char *v)
{
    alert_printf(b, ",\"%s\":", k);
    alert_json_str(b, v ? v : "");
}

static void audit_scores(drain_t *d, tbuf_t *b, const dnode_t *x)
{
    tbuf_put(b, ",\"scores\":{", 11);
    int first = 1;
    for (int k = 0; k < DRAIN_KINDS; k++) {
        if (isnan(x->k[k].risk)) continue;
        char v[64];
        alert_format_float(x->k[k].risk, v, sizeof v);
        alert_printf(b, "%s\"%s\":%s", first ? "" : ",", drain_kind_name(k), v);
        first = 0;
    }
    tbuf_put(b, "}", 1);
    alert_printf(b, ",\"dry_run\":%s", d->pol.dry_run ? "true" : "false");
}

/* Append the line and fdatasync it. */
static void audit_end(drain_t *d, tbuf_t *b)
{
    if (tbuf_put(b, "}\n", 2)) return;
    if (d->audit_fd < 0) return;
    const char *p = (const char *)b->p;
    size_t n = b->len;
    while (n) {
        ssize_t w = write(d->audit_fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fprintf(stderr, "level=error msg=\"drain audit log write failed\" err=\"%s\"\n",
                    strerror(errno));
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    fdatasync(d->audit_fd);
}

static void audit_decision(drain_t *d, int64_t now, const dnode_t *x, const char *action,
                           int allowed, const char *rule, const char *reason)
{
    tbuf_t b = {0};
    audit_begin(&b, now, "decision");
    audit_kv(&b, "node", x->node);
    audit_kv(&b, "instance", x->instance);
    audit_kv(&b, "action", action);
    alert_printf(&b, ",\"allowed\":%s", allowed ? "true" : "false");
    audit_kv(&b, "rule", rule);
    audit_kv(&b, "reason", reason);
    if (x->kind >= 0) audit_kv(&b, "kind", drain_kind_name(x->kind));
    audit_scores(d, &b, x);
    audit_end(d, &b);
    tbuf_free(&b);
}

static void audit_admin(drain_t *d, int64_t now, const char *who, const char *action,
                        const char *node, const char *result)
{
    tbuf_t b = {0};
    audit_begin(&b, now, "admin");
    audit_kv(&b, "who", who);
    audit_kv(&b, "action", action);
    if (node) audit_kv(&b, "node", node);
    audit_kv(&b, "result", result);
    audit_end(d, &b);
    tbuf_free(&b);
}

/* ---- state file ------------------------------------------------------------ */

static void esc_put(FILE *f, const char *s)
{
    if (!s || !*s) {
        fputs("%", f);
        return;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == '%' || c >= 0x7f)
            fprintf(f, "%%%02x", c);
        else
            fputc(c, f);
    }
}

/* Undo esc_put in place ("%" alone = empty). */
static char *unesc(char *s)
{
    if (!strcmp(s, "%")) {
        s[0] = 0;
        return s;
    }
    char *o = s;
    for (char *p = s; *p; p++) {
        unsigned v;
        if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1) {
            *o++ = (char)v;
            p += 2;
        } else
            *o++ = *p;
    }
    *o = 0;
    return s;
}

static int state_save(drain_t *d)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", d->state_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return DRAIN_EIO;
    fprintf(f, "augur-drain-state 1\nglobal %d %d %" PRId64 "\n", d->paused, d->tripped,
            d->tripped_at);
    for (size_t i = 0; i < d->nflags; i++) {
        fprintf(f, "flag %" PRId64 " ", d->flags[i].t);
        esc_put(f, d->flags[i].instance);
        fputc('\n', f);
    }
    for (size_t i = 0; i < d->nstarts; i++)
        fprintf(f, "start %" PRId64 "\n", d->starts[i]);
    for (size_t i = 0; i < d->n; i++) {
        dnode_t *x = &d->nodes[i];
        fputs("node ", f);
        esc_put(f, x->instance);
        fprintf(f, " %d %d %" PRId64 " %" PRId64 " %" PRId64 " %d %d %d", x->state, x->kind,
                x->state_since, x->cordoned_at, x->cooldown_until, x->approved, x->cancelled,
                x->uncordon_req);
        for (int k = 0; k < DRAIN_KINDS; k++)
            fprintf(f, " %" PRId64 " %" PRId64, x->k[k].above_since, x->k[k].below_since);
        for (int k = 0; k < MAX_DOM; k++) {
            fputc(' ', f);
            esc_put(f, x->dom[k]);
        }
        fputc(' ', f);
        esc_put(f, x->last_decision);
        fputc('\n', f);
    }
    for (size_t i = 0; i < d->noutc; i++) {
        doutcome_t *o = &d->outc[i];
        fputs("outcome ", f);
        esc_put(f, o->instance);
        fprintf(f, " %d %" PRId64 " %d %d %" PRId64 "\n", o->kind, o->started_at, o->result,
                o->dry_run, o->resolved_at);
    }
    fputs("end\n", f);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, d->state_path)) {
        unlink(tmp);
        return DRAIN_EIO;
    }
    /* The rename itself durable: fsync the directory. */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", d->state_path);
    char *sl = strrchr(dir, '/');
    if (sl) {
        *sl = 0;
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    d->dirty = 0;
    return 0;
}

static int state_load(drain_t *d, char *err, size_t errlen)
{
    FILE *f = fopen(d->state_path, "r");
    if (!f) return errno == ENOENT ? 0 : DRAIN_EIO;
    char line[8192];
    int ln = 0, ok_end = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        line[strcspn(line, "\n")] = 0;
        char *tok[64];
        int nt = 0;
        for (char *s = strtok(line, " "); s && nt < 64; s = strtok(NULL, " "))
            tok[nt++] = s;
        if (!nt) continue;
        if (ln == 1) {
            if (nt != 2 || strcmp(tok[0], "augur-drain-state") || strcmp(tok[1], "1")) {
                snprintf(err, errlen, "%s: not a drain state file (version 1)", d->state_path);
                rc = DRAIN_EIO;
                break;
            }
            continue;
        }
        if (!strcmp(tok[0], "end")) {
            ok_end = 1;
            break;
        }
        if (!strcmp(tok[0], "global") && nt == 4) {
            d->paused = atoi(tok[1]);
            d->tripped = atoi(tok[2]);
            d->tripped_at = strtoll(tok[3], NULL, 10);
        } else if (!strcmp(tok[0], "flag") && nt == 3) {
            if (grow((void **)&d->flags, &d->capflags, d->nflags, sizeof *d->flags)) goto oom;
            d->flags[d->nflags].t = strtoll(tok[1], NULL, 10);
            if (!(d->flags[d->nflags].instance = alert_strdup(unesc(tok[2])))) goto oom;
            d->nflags++;
        } else if (!strcmp(tok[0], "start") && nt == 2) {
            if (grow((void **)&d->starts, &d->capstarts, d->nstarts, sizeof *d->starts)) goto oom;
            d->starts[d->nstarts++] = strtoll(tok[1], NULL, 10);
        } else if (!strcmp(tok[0], "node") && nt == 2 + 8 + 2 * DRAIN_KINDS + MAX_DOM + 1) {
            dnode_t *x = node_get(d, unesc(tok[1]));
            if (!x) goto oom;
            int i = 2;
            x->state = atoi(tok[i++]);
            if (x->state < 0 || x->state >= NS_COUNT) x->state = NS_OK;
            x->kind = atoi(tok[i++]);
            x->state_since = strtoll(tok[i++], NULL, 10);
            x->cordoned_at = strtoll(tok[i++], NULL, 10);
            x->cooldown_until = strtoll(tok[i++], NULL, 10);
            x->approved = atoi(tok[i++]);
            x->cancelled = atoi(tok[i++]);
            x->uncordon_req = atoi(tok[i++]);
            for (int k = 0; k < DRAIN_KINDS; k++) {
                x->k[k].above_since = strtoll(tok[i++], NULL, 10);
                x->k[k].below_since = strtoll(tok[i++], NULL, 10);
            }
            for (int k = 0; k < MAX_DOM; k++) {
                char *v = unesc(tok[i++]);
                if (*v && !(x->dom[k] = alert_strdup(v))) goto oom;
            }
            snprintf(x->last_decision, sizeof x->last_decision, "%s", unesc(tok[i++]));
            /* A command cut off by the restart: its outcome is unknown. */
            if (x->state == NS_DRAINING) x->state = NS_FAILED;
        } else if (!strcmp(tok[0], "outcome") && nt == 7) {
            if (grow((void **)&d->outc, &d->capoutc, d->noutc, sizeof *d->outc)) goto oom;
            doutcome_t *o = &d->outc[d->noutc];
            if (!(o->instance = alert_strdup(unesc(tok[1])))) goto oom;
            o->kind = atoi(tok[2]);
            o->started_at = strtoll(tok[3], NULL, 10);
            o->result = atoi(tok[4]);
            o->dry_run = atoi(tok[5]);
            o->resolved_at = strtoll(tok[6], NULL, 10);
            d->noutc++;
        } else {
            snprintf(err, errlen, "%s:%d: unreadable line", d->state_path, ln);
            rc = DRAIN_EIO;
            break;
        }
    }
    fclose(f);
    if (!rc && !ok_end) {
        snprintf(err, errlen, "%s: truncated (no end line)", d->state_path);
        rc = DRAIN_EIO;
    }
    return rc;
oom:
    fclose(f);
    return DRAIN_ENOMEM;
}

/* ---- open / close / policy ------------------------------------------------- */

static int policy_copy(drain_policy_t *dst, const drain_policy_t *src)
{
    memset(dst, 0, sizeof *dst);
    *dst = *src;
    dst->node_label = alert_strdup(src->node_label);
    dst->cordon_cmd = alert_strdup(src->cordon_cmd);
    dst->drain_cmd = alert_strdup(src->drain_cmd);
    dst->uncordon_cmd = alert_strdup(src->uncordon_cmd);
    dst->webhook_url = src->webhook_url ? alert_strdup(src->webhook_url) : NULL;
    int bad = !dst->node_label || !dst->cordon_cmd || !dst->drain_cmd || !dst->uncordon_cmd ||
              (src->webhook_url && !dst->webhook_url);
    for (int k = 0; k < DRAIN_KINDS; k++) {
        dst->kinds[k].query = alert_strdup(src->kinds[k].query ? src->kinds[k].query : "vector(0)");
        bad |= !dst->kinds[k].query;
    }
    char ***vs[] = {&dst->domain_labels, &dst->block_alerts, &dst->opt_out};
    size_t ns[] = {src->ndomain_labels, src->nblock_alerts, src->nopt_out};
    char **srcv[] = {src->domain_labels, src->block_alerts, src->opt_out};
    for (int i = 0; i < 3; i++) {
        *vs[i] = NULL;
        if (!ns[i]) continue;
        *vs[i] = calloc(ns[i], sizeof(char *));
        if (!*vs[i]) {
            bad = 1;
            continue;
        }
        for (size_t k = 0; k < ns[i]; k++)
            bad |= !((*vs[i])[k] = alert_strdup(srcv[i][k]));
    }
    if (dst->ndomain_labels > MAX_DOM) dst->ndomain_labels = MAX_DOM;
    dst->windows = NULL;
    if (src->nwindows) {
        dst->windows = malloc(src->nwindows * sizeof *dst->windows);
        if (dst->windows)
            memcpy(dst->windows, src->windows, src->nwindows * sizeof *dst->windows);
        else
            bad = 1;
    }
    if (bad) {
        drain_policy_free(dst);
        return DRAIN_ENOMEM;
    }
    return 0;
}

static int queries_build(drain_t *d, pq_expr_t **q, pq_expr_t **aq)
{
    char err[300];
    for (int k = 0; k < DRAIN_KINDS; k++) {
        const char *s = d->pol.kinds[k].query;
        if (promql_parse(s, strlen(s), &q[k], err, sizeof err)) {
            for (int j = 0; j < k; j++)
                promql_expr_free(q[j]);
            return DRAIN_ECONFIG;
        }
    }
    static const char aqs[] = "ALERTS{alertstate=\"firing\"}";
    if (promql_parse(aqs, sizeof aqs - 1, aq, err, sizeof err)) {
        for (int j = 0; j < DRAIN_KINDS; j++)
            promql_expr_free(q[j]);
        return DRAIN_ECONFIG;
    }
    return 0;
}

int drain_open(tsdb_t *db, const char *dir, const drain_policy_t *p, drain_t **out, char *err,
               size_t errlen)
{
    if (!db || !dir || !p || !out) return DRAIN_EINVAL;
    *out = NULL;
    if (err && errlen) err[0] = 0;
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    drain_t *d = calloc(1, sizeof *d);
    if (!d) return DRAIN_ENOMEM;
    d->db = db;
    d->audit_fd = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->tick_mu, NULL);
    int rc = policy_copy(&d->pol, p);
    if (rc) {
        free(d);
        return rc;
    }
    rc = queries_build(d, d->q, &d->alerts_q);
    if (rc) {
        snprintf(err, errlen, "a risk query does not parse");
        drain_policy_free(&d->pol);
        free(d);
        return rc;
    }
    mkdir(dir, 0755);
    size_t dl = strlen(dir) + 32;
    d->state_path = malloc(dl);
    d->audit_path = malloc(dl);
    if (!d->state_path || !d->audit_path) {
        drain_close(d);
        return DRAIN_ENOMEM;
    }
    snprintf(d->state_path, dl, "%s/drain.state", dir);
    snprintf(d->audit_path, dl, "%s/drain-audit.jsonl", dir);
    d->audit_fd = open(d->audit_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (d->audit_fd < 0) {
        snprintf(err, errlen, "%s: %s", d->audit_path, strerror(errno));
        drain_close(d);
        return DRAIN_EIO;
    }
    rc = state_load(d, err, errlen);
    if (rc) {
        drain_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

void drain_close(drain_t *d)
{
    if (!d) return;
    if (d->state_path && d->audit_fd >= 0) state_save(d);
    if (d->audit_fd >= 0) close(d->audit_fd);
    for (size_t i = 0; i < d->n; i++)
        node_free(&d->nodes[i]);
    free(d->nodes);
    for (size_t i = 0; i < d->nflags; i++)
        free(d->flags[i].instance);
    free(d->flags);
    free(d->starts);
    for (size_t i = 0; i < d->noutc; i++)
        free(d->outc[i].instance);
    free(d->outc);
    for (int k = 0; k < DRAIN_KINDS; k++)
        promql_expr_free(d->q[k]);
    promql_expr_free(d->alerts_q);
    drain_policy_free(&d->pol);
    free(d->state_path);
    free(d->audit_path);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->tick_mu);
    free(d);
}

int drain_set_policy(drain_t *d, const drain_policy_t *p)
{
    drain_policy_t np;
    int rc = policy_copy(&np, p);
    if (rc) return rc;
    pthread_mutex_lock(&d->tick_mu);
    pthread_mutex_lock(&d->mu);
    drain_policy_t old = d->pol;
    d->pol = np;
    pq_expr_t *q[DRAIN_KINDS], *aq = NULL;
    rc = queries_build(d, q, &aq);
    if (rc) {
        d->pol = old;
        drain_policy_free(&np);
    } else {
        for (int k = 0; k < DRAIN_KINDS; k++) {
            promql_expr_free(d->q[k]);
            d->q[k] = q[k];
        }
        promql_expr_free(d->alerts_q);
        d->alerts_q = aq;
        drain_policy_free(&old);
    }
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_unlock(&d->tick_mu);
    return rc;
}

/* ---- the tick ---------------------------------------------------------------- */

static int in_window(const drain_policy_t *p, int64_t now)
{
    if (!p->nwindows) return 1;
    time_t s = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    int m = tm.tm_hour * 60 + tm.tm_min, wd = tm.tm_wday, prev = (wd + 6) % 7;
    for (size_t i = 0; i < p->nwindows; i++) {
        const drain_window_t *w = &p->windows[i];
        if (w->start_min < w->end_min) {
            if ((w->days >> wd & 1) && m >= w->start_min && m < w->end_min) return 1;
        } else {
            if ((w->days >> wd & 1) && m >= w->start_min) return 1;
            if ((w->days >> prev & 1) && m < w->end_min) return 1;
        }
    }
    return 0;
}

/* Is there a failure event for this node (kind; -1 = any) in [from, to]? */
static int failure_event(tsdb_reader_t *rd, const drain_policy_t *p, const dnode_t *x, int kind,
                         int64_t from, int64_t to)
{
    const char *names[2] = {x->instance, x->node};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !strcmp(x->instance, x->node)) break;
        tsdb_matcher_t m[3];
        size_t nm = 0;
        m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "__name__", "augur_failure_event"};
        m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, p->node_label, names[i]};
        if (kind == DRAIN_KIND_DISK || kind == DRAIN_KIND_GPU)
            m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "kind", drain_kind_name(kind)};
        tsdb_sids_t ids = {0};
        if (tsdb_select(rd, m, nm, from, to, &ids)) continue;
        int found = 0;
        for (size_t k = 0; k < ids.n && !found; k++) {
            tsdb_iter_t *it;
            if (tsdb_iter_open(rd, ids.ids[k], from, to, &it)) continue;
            const tsdb_sample_t *s;
            size_t n;
            int r;
            while (!found && (r = tsdb_iter_next(it, &s, &n)) != 0) {
                if (r < 0) break;
                for (size_t j = 0; j < n; j++)
                    if (f64_bits(s[j].v) != TSDB_STALE_NAN_BITS) found = 1;
            }
            tsdb_iter_close(it);
        }
        tsdb_sids_free(&ids);
        if (found) return 1;
    }
    return 0;
}

typedef enum { ACT_DRAIN, ACT_UNCORDON } act_type_t;

typedef struct {
    act_type_t type;
    char *instance, *node;
    int kind;
    double risk;
    int ok;
    char why[200];
} action_t;

static size_t count_cordoned(drain_t *d)
{
    size_t c = 0;
    for (size_t i = 0; i < d->n; i++)
        c += is_cordoned(d->nodes[i].state);
    return c;
}

/* The first rule that blocks a drain of x now, or NULL when allowed
 * (approval aside). why gets the detail. */
static const char *check_rules(drain_t *d, const dnode_t *x, int64_t now, const char *firing,
                               char *why, size_t wl)
{
    const drain_policy_t *p = &d->pol;
    why[0] = 0;
    for (size_t i = 0; i < p->nopt_out; i++)
        if (!strcmp(p->opt_out[i], x->node) || !strcmp(p->opt_out[i], x->instance)) {
            snprintf(why, wl, "node opted out in the policy");
            return "opt_out";
        }
    if (!node_name_safe(x->node)) {
        snprintf(why, wl, "node name is not a safe command argument");
        return "invalid_node_name";
    }
    if (d->tripped) {
        snprintf(why, wl, "circuit breaker tripped; an admin must reset it");
        return "circuit_breaker";
    }
    if (d->paused) {
        snprintf(why, wl, "automatic draining paused by an admin");
        return "paused";
    }
    if (x->cooldown_until > now) {
        snprintf(why, wl, "in cooldown for %" PRId64 " s more", (x->cooldown_until - now) / 1000);
        return "cooldown";
    }
    if (!in_window(p, now)) {
        snprintf(why, wl, "outside every maintenance window");
        return "maintenance_window";
    }
    if (firing) {
        snprintf(why, wl, "alert %s is firing", firing);
        return "alert_firing";
    }
    size_t fleet = p->fleet_size ? p->fleet_size : d->fleet;
    size_t pct = (size_t)floor(p->max_cordoned_percent * (double)fleet / 100.0);
    if (pct < 1) pct = 1;
    size_t lim = p->max_cordoned < pct ? p->max_cordoned : pct;
    size_t cord = count_cordoned(d);
    if (cord >= lim) {
        snprintf(why, wl, "%zu nodes cordoned, limit %zu (max_cordoned %" PRIu32 ", %g%% of %zu)",
                 cord, lim, p->max_cordoned, p->max_cordoned_percent, fleet);
        return "max_cordoned";
    }
    for (size_t k = 0; k < p->ndomain_labels; k++) {
        if (!x->dom[k]) continue;
        size_t c = 0;
        for (size_t i = 0; i < d->n; i++)
            if (is_cordoned(d->nodes[i].state) && d->nodes[i].dom[k] &&
                !strcmp(d->nodes[i].dom[k], x->dom[k]))
                c++;
        if (c >= p->max_per_domain) {
            snprintf(why, wl, "%zu nodes cordoned in %s=%s, limit %" PRIu32, c, p->domain_labels[k],
                     x->dom[k], p->max_per_domain);
            return "max_per_domain";
        }
    }
    int64_t last = INT64_MIN;
    size_t hour = 0;
    for (size_t i = 0; i < d->nstarts; i++) {
        if (d->starts[i] > last) last = d->starts[i];
        if (d->starts[i] > now - 3600000) hour++;
    }
    if (last != INT64_MIN && now - last < p->min_spacing_ms) {
        snprintf(why, wl, "last drain started %" PRId64 " s ago, min spacing %" PRId64 " s",
                 (now - last) / 1000, p->min_spacing_ms / 1000);
        return "min_spacing";
    }
    if (hour >= p->max_per_hour) {
        snprintf(why, wl, "%zu drains started in the last hour, max %" PRIu32, hour,
                 p->max_per_hour);
        return "max_per_hour";
    }
    return NULL;
}

static void set_state(dnode_t *x, int s, int64_t now)
{
    if (x->state != s) x->state_since = now;
    x->state = s;
}

/* Log a decision once per change of (action, rule). */
static void decide(drain_t *d, int64_t now, dnode_t *x, const char *action, int allowed,
                   const char *rule, const char *why)
{
    char key[200];
    snprintf(key, sizeof key, "%s:%s", action, rule);
    if (!strcmp(key, x->last_decision)) return;
    snprintf(x->last_decision, sizeof x->last_decision, "%s", key);
    audit_decision(d, now, x, action, allowed, rule, why);
    d->dirty = 1;
}

static int webhook_post(const char *url, const char *body, char *out, size_t outcap)
{
    CURL *c = curl_easy_init();
    if (!c) return -1;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(out, outcap, "%s", curl_easy_strerror(rc));
        return -1;
    }
    snprintf(out, outcap, "HTTP %ld", code);
    return code / 100 == 2 ? 0 : (int)code;
}

/* Run one command of an action (no lock held). Returns the exit status. */
static int run_one(drain_t *d, const drain_policy_t *p, int64_t now, const action_t *a,
                   const char *what, const char *tmpl)
{
    char tmo[32], out[4096] = "";
    alert_duration_format(p->drain_timeout_ms, tmo, sizeof tmo);
    tbuf_t b = {0};
    int st;
    audit_begin(&b, now, "command");
    audit_kv(&b, "node", a->node);
    audit_kv(&b, "action", what);
    if (p->webhook_url) {
        tbuf_t body = {0};
        char rv[64];
        alert_format_float(a->risk, rv, sizeof rv);
        alert_printf(&body, "{\"action\":\"%s\",\"node\":", what);
        alert_json_str(&body, a->node);
        alert_printf(&body, ",\"instance\":");
        alert_json_str(&body, a->instance);
        alert_printf(&body, ",\"kind\":\"%s\",\"risk\":%s,\"dry_run\":%s}",
                     a->kind >= 0 ? drain_kind_name(a->kind) : "", isnan(a->risk) ? "null" : rv,
                     p->dry_run ? "true" : "false");
        tbuf_put(&body, "", 1);
        audit_kv(&b, "webhook", p->webhook_url);
        if (p->dry_run) {
            st = 0;
            snprintf(out, sizeof out, "dry run: not sent");
        } else {
            st = webhook_post(p->webhook_url, (const char *)body.p, out, sizeof out);
        }
        tbuf_free(&body);
    } else {
        char **argv = NULL;
        int rc = drain_argv_build(tmpl, a->node, a->kind >= 0 ? drain_kind_name(a->kind) : "", tmo,
                                  &argv);
        tbuf_put(&b, ",\"argv\":[", 9);
        for (size_t i = 0; argv && argv[i]; i++) {
            if (i) tbuf_put(&b, ",", 1);
            alert_json_str(&b, argv[i]);
        }
        tbuf_put(&b, "]", 1);
        if (rc) {
            st = -1;
            snprintf(out, sizeof out, "bad command template");
        } else if (p->dry_run) {
            st = 0;
            snprintf(out, sizeof out, "dry run: not executed");
        } else {
            st = drain_exec(argv, p->command_timeout_ms, out, sizeof out);
        }
        free(argv);
    }
    alert_printf(&b, ",\"exit\":%d,\"dry_run\":%s", st, p->dry_run ? "true" : "false");
    audit_kv(&b, "output", out);
    pthread_mutex_lock(&d->mu);
    audit_end(d, &b);
    if (!p->dry_run) {
        d->commands++;
        if (st) d->command_failures++;
    }
    pthread_mutex_unlock(&d->mu);
    tbuf_free(&b);
    return st;
}

static void write_series(drain_t *d, int64_t now)
{
    drain_outcomes_t o;
    memset(&o, 0, sizeof o);
    o.precision = NAN;
    for (size_t i = 0; i < d->noutc; i++) {
        if (d->outc[i].result == 1) o.true_positive++;
        if (d->outc[i].result == 2) o.false_positive++;
    }
    double prec = o.true_positive + o.false_positive
                      ? (double)o.true_positive / (double)(o.true_positive + o.false_positive)
                      : NAN;
    const struct {
        const char *name;
        double v;
    } s[] = {
        {"augur_drain_breaker_tripped", d->tripped},
        {"augur_drain_paused", d->paused},
        {"augur_drain_dry_run", d->pol.dry_run},
        {"augur_drain_cordoned_nodes", (double)count_cordoned(d)},
        {"augur_drain_precision", prec},
    };
    tsdb_label_t l[5];
    tsdb_sample_t smp[5];
    tsdb_series_in_t in[5];
    size_t n = 0;
    for (size_t i = 0; i < 5; i++) {
        if (isnan(s[i].v)) continue;
        l[n] = (tsdb_label_t){{"__name__", 8}, {s[i].name, (uint32_t)strlen(s[i].name)}};
        smp[n] = (tsdb_sample_t){now, s[i].v};
        in[n] = (tsdb_series_in_t){&l[n], 1, &smp[n], 1};
        n++;
    }
    tsdb_append(d->db, in, n, NULL, NULL);
}

int drain_tick(drain_t *d, int64_t now)
{
    if (!d) return DRAIN_EINVAL;
    pthread_mutex_lock(&d->tick_mu);
    tsdb_reader_t *rd = NULL;
    if (tsdb_reader_open(d->db, &rd)) {
        pthread_mutex_unlock(&d->tick_mu);
        return DRAIN_ESTORE;
    }
    pthread_mutex_lock(&d->mu);
    drain_policy_t *p = &d->pol;
    int rc = 0;
    action_t *acts = NULL;
    size_t nacts = 0, capacts = 0;

    /* 1. Risk per node and kind. */
    for (size_t i = 0; i < d->n; i++)
        for (int k = 0; k < DRAIN_KINDS; k++)
            d->nodes[i].k[k].risk = NAN;
    size_t fleet = 0;
    for (int k = 0; k < DRAIN_KINDS; k++) {
        if (!p->kinds[k].enabled) continue;
        pq_opts_t o;
        memset(&o, 0, sizeof o);
        o.start_ms = o.end_ms = now;
        o.timeout_ms = 60000;
        pq_result_t *res = NULL;
        char err[300];
        if (promql_eval(rd, d->q[k], &o, &res, err, sizeof err)) {
            fprintf(stderr, "level=warn msg=\"drain risk query failed\" kind=%s err=\"%s\"\n",
                    drain_kind_name(k), err);
            continue;
        }
        for (size_t i = 0; i < res->nseries; i++) {
            const pq_series_t *s = &res->series[i];
            if (!s->npoints || isnan(s->points[0].v)) continue;
            const char *inst = NULL;
            for (size_t j = 0; j < s->nlabels; j++)
                if (!strcmp(s->labels[j].name, p->node_label)) inst = s->labels[j].value;
            if (!inst || !*inst) continue;
            dnode_t *x = node_get(d, inst);
            if (!x) {
                rc = DRAIN_ENOMEM;
                break;
            }
            double v = s->points[0].v;
            if (isnan(x->k[k].risk) || v > x->k[k].risk) x->k[k].risk = v;
            for (size_t q = 0; q < p->ndomain_labels; q++)
                for (size_t j = 0; j < s->nlabels; j++)
                    if (!strcmp(s->labels[j].name, p->domain_labels[q]) &&
                        (!x->dom[q] || strcmp(x->dom[q], s->labels[j].value))) {
                        free(x->dom[q]);
                        x->dom[q] = alert_strdup(s->labels[j].value);
                    }
        }
        promql_result_free(res);
    }
    for (size_t i = 0; i < d->n; i++) {
        int seen = 0;
        for (int k = 0; k < DRAIN_KINDS; k++)
            seen |= !isnan(d->nodes[i].k[k].risk);
        fleet += seen;
    }
    d->fleet = fleet ? fleet : d->n;

    /* 2. Timers; 3. newly flagged nodes and the breaker. */
    for (size_t i = 0; i < d->n && !rc; i++) {
        dnode_t *x = &d->nodes[i];
        int above = 0;
        for (int k = 0; k < DRAIN_KINDS; k++) {
            dkind_t *dk = &x->k[k];
            const drain_kind_policy_t *kp = &p->kinds[k];
            int64_t a0 = dk->above_since, b0 = dk->below_since;
            if (isnan(dk->risk) || !kp->enabled) {
                if (a0 || b0) d->dirty = 1;
                dk->above_since = dk->below_since = 0;
                continue;
            }
            if (dk->risk >= kp->drain_threshold) {
                if (!dk->above_since) dk->above_since = now;
                above = 1;
            } else
                dk->above_since = 0;
            if (dk->risk < kp->undrain_threshold) {
                if (!dk->below_since) dk->below_since = now;
            } else
                dk->below_since = 0;
            if (dk->above_since != a0 || dk->below_since != b0) d->dirty = 1;
        }
        if (!above && x->cancelled) {
            x->cancelled = 0;
            d->dirty = 1;
        }
        if (above && x->state == NS_OK && !x->cancelled) {
            set_state(x, NS_FLAGGED, now);
            x->approved = 0;
            for (int k = 0; k < DRAIN_KINDS; k++)
                if (x->k[k].above_since && (x->kind < 0 || x->k[k].risk > x->k[x->kind].risk))
                    x->kind = k;
            decide(d, now, x, "flag", 1, "risk_above_threshold",
                   "risk reached the drain threshold");
            if (grow((void **)&d->flags, &d->capflags, d->nflags, sizeof *d->flags)) {
                rc = DRAIN_ENOMEM;
                break;
            }
            d->flags[d->nflags].t = now;
            d->flags[d->nflags].instance = alert_strdup(x->instance);
            if (d->flags[d->nflags].instance) d->nflags++;
        } else if (!above && (x->state == NS_FLAGGED || x->state == NS_AWAITING)) {
            set_state(x, NS_OK, now);
            x->approved = 0;
            x->kind = -1;
            decide(d, now, x, "unflag", 1, "risk_below_threshold",
                   "risk fell below the drain threshold before any action");
        }
    }
    /* Breaker: distinct nodes flagged within the window. */
    size_t w = 0;
    for (size_t i = 0; i < d->nflags; i++) {
        if (d->flags[i].t > now - p->breaker_window_ms)
            d->flags[w++] = d->flags[i];
        else
            free(d->flags[i].instance);
    }
    d->nflags = w;
    size_t distinct = 0;
    for (size_t i = 0; i < d->nflags; i++) {
        size_t j = 0;
        while (j < i && strcmp(d->flags[j].instance, d->flags[i].instance))
            j++;
        distinct += j == i;
    }
    if (!d->tripped && (double)distinct > p->breaker_percent * (double)d->fleet / 100.0 &&
        distinct >= p->breaker_min_flagged) {
        d->tripped = 1;
        d->tripped_at = now;
        d->dirty = 1;
        tbuf_t b = {0};
        audit_begin(&b, now, "breaker");
        audit_kv(&b, "action", "trip");
        alert_printf(&b, ",\"flagged_in_window\":%zu,\"fleet\":%zu,\"max_flagged_percent\":%g",
                     distinct, d->fleet, p->breaker_percent);
        audit_kv(&b, "reason",
                 "more nodes flagged within the window than the policy allows: "
                 "likely a model or telemetry fault; all automatic action stopped");
        audit_end(d, &b);
        tbuf_free(&b);
        fprintf(stderr, "level=error msg=\"drain circuit breaker tripped\" flagged=%zu fleet=%zu\n",
                distinct, d->fleet);
    }

    /* 4. Outcomes and uncordons. */
    for (size_t i = 0; i < d->noutc; i++) {
        doutcome_t *o = &d->outc[i];
        if (o->result) continue;
        dnode_t *x = node_find(d, o->instance);
        if (x && failure_event(rd, p, x, o->kind == DRAIN_KIND_NODE_ANOMALY ? -1 : o->kind,
                               o->started_at, o->started_at + p->horizon_ms)) {
            o->result = 1;
            o->resolved_at = now;
            d->dirty = 1;
        } else if (now > o->started_at + p->horizon_ms) {
            o->result = 2;
            o->resolved_at = now;
            d->dirty = 1;
        }
        if (o->result) {
            tbuf_t b = {0};
            audit_begin(&b, now, "outcome");
            audit_kv(&b, "instance", o->instance);
            audit_kv(&b, "kind", drain_kind_name(o->kind));
            audit_kv(&b, "result", o->result == 1 ? "true_positive" : "false_positive");
            alert_printf(&b, ",\"started_at\":%" PRId64 ",\"dry_run\":%s", o->started_at,
                         o->dry_run ? "true" : "false");
            audit_end(d, &b);
            tbuf_free(&b);
        }
    }
    for (size_t i = 0; i < d->n && !rc; i++) {
        dnode_t *x = &d->nodes[i];
        if (!is_cordoned(x->state) || x->state == NS_DRAINING) continue;
        const char *why = NULL, *rule = NULL;
        if (x->uncordon_req) {
            rule = "admin";
            why = "uncordon requested by an admin";
        } else if (p->uncordon_on_failure &&
                   failure_event(rd, p, x, x->kind == DRAIN_KIND_NODE_ANOMALY ? -1 : x->kind,
                                 x->cordoned_at, now)) {
            rule = "failure_event";
            why = "a failure event followed the drain: the device was replaced";
        } else if (x->kind >= 0) {
            const dkind_t *dk = &x->k[x->kind];
            int any_above = 0;
            for (int k = 0; k < DRAIN_KINDS; k++)
                any_above |= x->k[k].above_since != 0;
            if (!any_above && dk->below_since &&
                now - dk->below_since >= p->kinds[x->kind].undrain_for_ms) {
                rule = "hysteresis";
                why = "risk stayed below the undrain threshold for undrain_for";
            }
        }
        if (!rule) continue;
        if (!x->uncordon_req && (d->tripped || d->paused)) {
            decide(d, now, x, "uncordon", 0, d->tripped ? "circuit_breaker" : "paused",
                   d->tripped ? "circuit breaker tripped" : "paused by an admin");
            continue;
        }
        decide(d, now, x, "uncordon", 1, rule, why);
        if (grow((void **)&acts, &capacts, nacts, sizeof *acts)) {
            rc = DRAIN_ENOMEM;
            break;
        }
        action_t *a = &acts[nacts++];
        memset(a, 0, sizeof *a);
        a->type = ACT_UNCORDON;
        a->instance = alert_strdup(x->instance);
        a->node = alert_strdup(x->node);
        a->kind = x->kind;
        a->risk = node_risk(x);
        x->uncordon_req = 0;
    }

    /* 5. Candidates, highest risk first. */
    const char *firing = NULL;
    char firing_buf[200] = "";
    if (p->nblock_alerts) {
        pq_opts_t o;
        memset(&o, 0, sizeof o);
        o.start_ms = o.end_ms = now;
        pq_result_t *res = NULL;
        char err[200];
        if (!promql_eval(rd, d->alerts_q, &o, &res, err, sizeof err)) {
            for (size_t i = 0; i < res->nseries && !firing; i++)
                for (size_t j = 0; j < res->series[i].nlabels && !firing; j++)
                    if (!strcmp(res->series[i].labels[j].name, "alertname"))
                        for (size_t q = 0; q < p->nblock_alerts; q++)
                            if (!strcmp(p->block_alerts[q], res->series[i].labels[j].value)) {
                                snprintf(firing_buf, sizeof firing_buf, "%s", p->block_alerts[q]);
                                firing = firing_buf;
                            }
            promql_result_free(res);
        }
    }
    size_t *cand = calloc(d->n ? d->n : 1, sizeof *cand);
    size_t nc = 0;
    if (!cand) rc = DRAIN_ENOMEM;
    for (size_t i = 0; i < d->n && !rc; i++) {
        dnode_t *x = &d->nodes[i];
        if (x->state != NS_FLAGGED && x->state != NS_AWAITING) continue;
        int ready = 0;
        for (int k = 0; k < DRAIN_KINDS; k++)
            if (x->k[k].above_since && now - x->k[k].above_since >= p->kinds[k].for_ms) {
                if (!ready || x->k[k].risk > x->k[x->kind].risk) x->kind = k;
                ready = 1;
            }
        if (ready) cand[nc++] = i;
    }
    for (size_t a = 1; a < nc; a++) /* insertion sort by risk desc, instance asc */
        for (size_t b = a; b > 0; b--) {
            dnode_t *x = &d->nodes[cand[b - 1]], *y = &d->nodes[cand[b]];
            double rx = x->k[x->kind].risk, ry = y->k[y->kind].risk;
            if (ry > rx || (ry == rx && strcmp(y->instance, x->instance) < 0)) {
                size_t t = cand[b - 1];
                cand[b - 1] = cand[b];
                cand[b] = t;
            } else
                break;
        }
    for (size_t c = 0; c < nc && !rc; c++) {
        dnode_t *x = &d->nodes[cand[c]];
        char why[300];
        const char *rule = check_rules(d, x, now, firing, why, sizeof why);
        if (rule) {
            decide(d, now, x, "drain", 0, rule, why);
            continue;
        }
        if (p->manual_approval && !x->approved) {
            if (x->state != NS_AWAITING) set_state(x, NS_AWAITING, now);
            decide(d, now, x, "drain", 0, "manual_approval",
                   "every other rule allows it; waiting for an admin's approval");
            continue;
        }
        decide(d, now, x, "drain", 1, x->approved ? "approved" : "policy",
               "all safety rules passed");
        set_state(x, NS_DRAINING, now);
        x->cordoned_at = now;
        x->approved = 0;
        if (grow((void **)&d->starts, &d->capstarts, d->nstarts, sizeof *d->starts) ||
            grow((void **)&acts, &capacts, nacts, sizeof *acts) ||
            grow((void **)&d->outc, &d->capoutc, d->noutc, sizeof *d->outc)) {
            rc = DRAIN_ENOMEM;
            break;
        }
        d->starts[d->nstarts++] = now;
        doutcome_t *o = &d->outc[d->noutc];
        memset(o, 0, sizeof *o);
        o->instance = alert_strdup(x->instance);
        o->kind = x->kind;
        o->started_at = now;
        o->dry_run = p->dry_run;
        if (o->instance) d->noutc++;
        action_t *a = &acts[nacts++];
        memset(a, 0, sizeof *a);
        a->type = ACT_DRAIN;
        a->instance = alert_strdup(x->instance);
        a->node = alert_strdup(x->node);
        a->kind = x->kind;
        a->risk = x->k[x->kind].risk;
        d->dirty = 1;
    }
    free(cand);
    /* Prune drain starts older than both windows that use them. */
    int64_t keep = p->min_spacing_ms > 3600000 ? p->min_spacing_ms : 3600000;
    w = 0;
    for (size_t i = 0; i < d->nstarts; i++)
        if (d->starts[i] > now - keep) d->starts[w++] = d->starts[i];
    d->nstarts = w;
    if (d->dirty && state_save(d))
        fprintf(stderr, "level=error msg=\"drain state not saved\" path=\"%s\"\n", d->state_path);
    /* A private copy of the policy for the commands (a reload may swap it). */
    drain_policy_t pcopy;
    int have_copy = nacts && !policy_copy(&pcopy, p);
    pthread_mutex_unlock(&d->mu);

    /* 6. Commands, without the lock. */
    for (size_t i = 0; i < nacts; i++) {
        action_t *a = &acts[i];
        if (!a->instance || !a->node || !have_copy) {
            a->ok = 0;
            continue;
        }
        if (a->type == ACT_DRAIN) {
            a->ok = run_one(d, &pcopy, now, a, "cordon", pcopy.cordon_cmd) == 0 &&
                    run_one(d, &pcopy, now, a, "drain", pcopy.drain_cmd) == 0;
        } else {
            a->ok = run_one(d, &pcopy, now, a, "uncordon", pcopy.uncordon_cmd) == 0;
        }
    }
    if (have_copy) drain_policy_free(&pcopy);

    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < nacts; i++) {
        action_t *a = &acts[i];
        dnode_t *x = a->instance ? node_find(d, a->instance) : NULL;
        if (x) {
            if (a->type == ACT_DRAIN)
                set_state(x, a->ok ? NS_DRAINED : NS_FAILED, now);
            else if (a->ok) {
                set_state(x, NS_OK, now);
                x->kind = -1;
                x->cooldown_until = now + d->pol.cooldown_ms;
                x->last_decision[0] = 0;
            }
            d->dirty = 1;
        }
        free(a->instance);
        free(a->node);
    }
    free(acts);
    write_series(d, now);
    if (d->dirty && state_save(d))
        fprintf(stderr, "level=error msg=\"drain state not saved\" path=\"%s\"\n", d->state_path);
    pthread_mutex_unlock(&d->mu);
    tsdb_reader_close(rd);
    pthread_mutex_unlock(&d->tick_mu);
    return rc;
}

/* ---- admin actions ----------------------------------------------------------- */

static dnode_t *admin_node(drain_t *d, const char *node)
{
    dnode_t *x = node_find(d, node);
    if (x) return x;
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->nodes[i].node, node)) return &d->nodes[i];
    return NULL;
}

static int admin_op(drain_t *d, const char *node, const char *who, int64_t now, const char *op)
{
    if (!d || !node) return DRAIN_EINVAL;
    pthread_mutex_lock(&d->mu);
    dnode_t *x = admin_node(d, node);
    int rc = 0;
    if (!x)
        rc = DRAIN_ENOTFOUND;
    else if (!strcmp(op, "approve")) {
        if (x->state == NS_AWAITING || x->state == NS_FLAGGED)
            x->approved = 1;
        else
            rc = DRAIN_ESTATE;
    } else if (!strcmp(op, "cancel")) {
        if (x->state == NS_AWAITING || x->state == NS_FLAGGED) {
            set_state(x, NS_OK, now);
            x->approved = 0;
            x->cancelled = 1;
            x->kind = -1;
            x->last_decision[0] = 0;
        } else
            rc = DRAIN_ESTATE;
    } else if (!strcmp(op, "uncordon")) {
        if (is_cordoned(x->state) && x->state != NS_DRAINING)
            x->uncordon_req = 1;
        else
            rc = DRAIN_ESTATE;
    }
    audit_admin(d, now, who, op, x ? x->node : node, rc ? drain_strerror(rc) : "ok");
    if (!rc) {
        d->dirty = 1;
        state_save(d);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int drain_approve(drain_t *d, const char *node, const char *who, int64_t now)
{
    return admin_op(d, node, who, now, "approve");
}

int drain_cancel(drain_t *d, const char *node, const char *who, int64_t now)
{
    return admin_op(d, node, who, now, "cancel");
}

int drain_uncordon(drain_t *d, const char *node, const char *who, int64_t now)
{
    return admin_op(d, node, who, now, "uncordon");
}

int drain_breaker_reset(drain_t *d, const char *who, int64_t now)
{
    if (!d) return DRAIN_EINVAL;
    pthread_mutex_lock(&d->mu);
    d->tripped = 0;
    d->tripped_at = 0;
    /* Flags before the reset no longer count: only new ones can re-trip. */
    for (size_t i = 0; i < d->nflags; i++)
        free(d->flags[i].instance);
    d->nflags = 0;
    audit_admin(d, now, who, "breaker_reset", NULL, "ok");
    d->dirty = 1;
    state_save(d);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

int drain_pause(drain_t *d, int paused, const char *who, int64_t now)
{
    if (!d) return DRAIN_EINVAL;
    pthread_mutex_lock(&d->mu);
    d->paused = paused != 0;
    audit_admin(d, now, who, paused ? "pause" : "resume", NULL, "ok");
    d->dirty = 1;
    state_save(d);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

const char *drain_node_state(drain_t *d, const char *node)
{
    pthread_mutex_lock(&d->mu);
    dnode_t *x = admin_node(d, node);
    const char *s = x ? ns_names[x->state] : NULL;
    pthread_mutex_unlock(&d->mu);
    return s;
}

int drain_breaker_tripped(drain_t *d)
{
    pthread_mutex_lock(&d->mu);
    int t = d->tripped;
    pthread_mutex_unlock(&d->mu);
    return t;
}

static void outcomes_locked(drain_t *d, drain_outcomes_t *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < d->noutc; i++) {
        if (d->outc[i].result == 1)
            o->true_positive++;
        else if (d->outc[i].result == 2)
            o->false_positive++;
        else
            o->pending++;
    }
    o->precision = o->true_positive + o->false_positive
                       ? (double)o->true_positive / (double)(o->true_positive + o->false_positive)
                       : NAN;
}

void drain_outcomes(drain_t *d, drain_outcomes_t *o)
{
    pthread_mutex_lock(&d->mu);
    outcomes_locked(d, o);
    pthread_mutex_unlock(&d->mu);
}

int drain_json(drain_t *d, int64_t now, tbuf_t *b)
{
    (void)now;
    pthread_mutex_lock(&d->mu);
    const drain_policy_t *p = &d->pol;
    drain_outcomes_t o;
    outcomes_locked(d, &o);
    char prec[64], t[40];
    if (isnan(o.precision))
        snprintf(prec, sizeof prec, "null");
    else
        alert_format_float(o.precision, prec, sizeof prec);
    size_t distinct = 0;
    for (size_t i = 0; i < d->nflags; i++) {
        size_t j = 0;
        while (j < i && strcmp(d->flags[j].instance, d->flags[i].instance))
            j++;
        distinct += j == i;
    }
    alert_time_rfc3339(d->tripped_at, t, sizeof t);
    int rc = alert_printf(
        b,
        "{\"status\":\"success\",\"data\":{\"dry_run\":%s,\"manual_approval\":%s,\"paused\":%s,"
        "\"breaker\":{\"tripped\":%s,\"since\":%s%s%s,\"flagged_in_window\":%zu,"
        "\"max_flagged_percent\":%g,\"min_flagged\":%" PRIu32 "},\"fleet_size\":%zu,"
        "\"cordoned\":%zu,\"limits\":{\"max_cordoned\":%" PRIu32 ",\"max_cordoned_percent\":%g,"
        "\"max_per_domain\":%" PRIu32 ",\"min_spacing_seconds\":%g,\"max_per_hour\":%" PRIu32
        ",\"cooldown_seconds\":%g},\"outcomes\":{\"true_positive\":%" PRIu64
        ",\"false_positive\":%" PRIu64 ",\"pending\":%" PRIu64 ",\"precision\":%s},\"nodes\":[",
        p->dry_run ? "true" : "false", p->manual_approval ? "true" : "false",
        d->paused ? "true" : "false", d->tripped ? "true" : "false", d->tripped ? "\"" : "",
        d->tripped ? t : "null", d->tripped ? "\"" : "", distinct, p->breaker_percent,
        p->breaker_min_flagged, p->fleet_size ? p->fleet_size : d->fleet, count_cordoned(d),
        p->max_cordoned, p->max_cordoned_percent, p->max_per_domain,
        (double)p->min_spacing_ms / 1000, p->max_per_hour, (double)p->cooldown_ms / 1000,
        o.true_positive, o.false_positive, o.pending, prec);
    int first = 1;
    for (size_t i = 0; i < d->n && !rc; i++) {
        dnode_t *x = &d->nodes[i];
        if (x->state == NS_OK && !x->cooldown_until && !x->cancelled) continue;
        if (!first) tbuf_put(b, ",", 1);
        first = 0;
        alert_time_rfc3339(x->state_since, t, sizeof t);
        tbuf_put(b, "{\"node\":", 8);
        alert_json_str(b, x->node);
        tbuf_put(b, ",\"instance\":", 12);
        alert_json_str(b, x->instance);
        alert_printf(b, ",\"state\":\"%s\",\"since\":\"%s\",\"kind\":%s%s%s,\"approved\":%s",
                     ns_names[x->state], t, x->kind >= 0 ? "\"" : "",
                     x->kind >= 0 ? drain_kind_name(x->kind) : "null", x->kind >= 0 ? "\"" : "",
                     x->approved ? "true" : "false");
        tbuf_put(b, ",\"scores\":{", 11);
        int f2 = 1;
        for (int k = 0; k < DRAIN_KINDS; k++) {
            if (isnan(x->k[k].risk)) continue;
            char v[64];
            alert_format_float(x->k[k].risk, v, sizeof v);
            alert_printf(b, "%s\"%s\":%s", f2 ? "" : ",", drain_kind_name(k), v);
            f2 = 0;
        }
        tbuf_put(b, "},\"domain\":{", 12);
        f2 = 1;
        for (size_t k = 0; k < p->ndomain_labels; k++) {
            if (!x->dom[k]) continue;
            if (!f2) tbuf_put(b, ",", 1);
            f2 = 0;
            alert_json_str(b, p->domain_labels[k]);
            tbuf_put(b, ":", 1);
            alert_json_str(b, x->dom[k]);
        }
        tbuf_put(b, "},\"last_decision\":", 18);
        alert_json_str(b, x->last_decision);
        if (x->cooldown_until) {
            alert_time_rfc3339(x->cooldown_until, t, sizeof t);
            alert_printf(b, ",\"cooldown_until\":\"%s\"", t);
        }
        tbuf_put(b, "}", 1);
    }
    tbuf_put(b, "],\"drains\":[", 12);
    for (size_t i = 0; i < d->noutc; i++) {
        doutcome_t *oc = &d->outc[i];
        alert_time_rfc3339(oc->started_at, t, sizeof t);
        if (i) tbuf_put(b, ",", 1);
        tbuf_put(b, "{\"instance\":", 12);
        alert_json_str(b, oc->instance);
        alert_printf(b, ",\"kind\":\"%s\",\"started_at\":\"%s\",\"dry_run\":%s,\"outcome\":\"%s\"}",
                     drain_kind_name(oc->kind), t, oc->dry_run ? "true" : "false",
                     oc->result == 1   ? "true_positive"
                     : oc->result == 2 ? "false_positive"
                                       : "pending");
    }
    if (tbuf_put(b, "]}}\n", 4)) rc = -1;
    pthread_mutex_unlock(&d->mu);
    return rc ? DRAIN_ENOMEM : 0;
}

int drain_metrics_render(drain_t *d, tbuf_t *b)
{
    if (!d) return 0;
    pthread_mutex_lock(&d->mu);
    drain_outcomes_t o;
    outcomes_locked(d, &o);
    size_t st[NS_COUNT] = {0};
    for (size_t i = 0; i < d->n; i++)
        st[d->nodes[i].state]++;
    int rc =
        alert_printf(b, "# HELP augur_drain_nodes Nodes known to the drain controller by state.\n"
                        "# TYPE augur_drain_nodes gauge\n");
    for (int s = 0; s < NS_COUNT && !rc; s++)
        rc = alert_printf(b, "augur_drain_nodes{state=\"%s\"} %zu\n", ns_names[s], st[s]);
    if (!rc)
        rc = alert_printf(
            b,
            "# HELP augur_drain_breaker_tripped 1 while the circuit breaker stops automatic "
            "action.\n# TYPE augur_drain_breaker_tripped gauge\naugur_drain_breaker_tripped %d\n"
            "# HELP augur_drain_paused 1 while an admin paused automatic draining.\n"
            "# TYPE augur_drain_paused gauge\naugur_drain_paused %d\n"
            "# HELP augur_drain_dry_run 1 when the controller runs no command.\n"
            "# TYPE augur_drain_dry_run gauge\naugur_drain_dry_run %d\n"
            "# HELP augur_drain_commands_total Commands and webhook calls run.\n"
            "# TYPE augur_drain_commands_total counter\naugur_drain_commands_total %" PRIu64 "\n"
            "# HELP augur_drain_command_failures_total Commands that exited non-zero.\n"
            "# TYPE augur_drain_command_failures_total counter\n"
            "augur_drain_command_failures_total %" PRIu64 "\n"
            "# HELP augur_drain_outcomes Past drains by outcome (failure event within the "
            "horizon or not).\n# TYPE augur_drain_outcomes gauge\n"
            "augur_drain_outcomes{outcome=\"true_positive\"} %" PRIu64 "\n"
            "augur_drain_outcomes{outcome=\"false_positive\"} %" PRIu64 "\n"
            "augur_drain_outcomes{outcome=\"pending\"} %" PRIu64 "\n",
            d->tripped, d->paused, d->pol.dry_run, d->commands, d->command_failures,
            o.true_positive, o.false_positive, o.pending);
    if (!rc && !isnan(o.precision))
        rc = alert_printf(b,
                          "# HELP augur_drain_precision True positives over resolved drains.\n"
                          "# TYPE augur_drain_precision gauge\naugur_drain_precision %g\n",
                          o.precision);
    pthread_mutex_unlock(&d->mu);
    return rc ? DRAIN_ENOMEM : 0;
}
