/*
 * ntam_source.c — device timelines from a store or the simulator, and labelled windows cut from
 * them through the serving feature module (see ntam_source.h).
 */
#include "models/ntam_source.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ingest/failures.h"
#include "models/bbcsv.h"
#include "models/ntam.h"
#include "sim/sim.h"

static void seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* ---- the timeline ---------------------------------------------------------------------------- */

void ntam_tl_free(ntam_tl_t *t)
{
    if (!t) return;
    for (int32_t i = 0; i < t->n_dev; i++) {
        free(t->dev[i].id);
        free(t->dev[i].instance);
        free(t->dev[i].device);
        free(t->dev[i].rack);
        free(t->dev[i].pod);
        free(t->dev[i].raw);
    }
    free(t->dev);
    for (uint32_t n = 0; n < t->n_nodes; n++) {
        if (t->node_dev) free(t->node_dev[n]);
        if (t->node_name) free(t->node_name[n]);
    }
    free(t->node_dev);
    free(t->node_name);
    free(t->node_n);
    free(t->node_cap);
    memset(t, 0, sizeof *t);
}

int32_t ntam_tl_days(const ntam_tl_t *t)
{
    return t->per_day > 0 ? t->n_steps / t->per_day : 0;
}

static int tl_init(ntam_tl_t *t, feat_kind_t kind, uint32_t nodes, int32_t n_steps)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->step_ms = kind == FEAT_KIND_DISK ? 86400000LL : 3600000LL;
    t->per_day = kind == FEAT_KIND_DISK ? 1 : 24;
    t->n_steps = n_steps;
    t->C = feat_raw_count(kind);
    t->n_nodes = nodes;
    t->node_dev = calloc(nodes + 1, sizeof *t->node_dev);
    t->node_name = calloc(nodes + 1, sizeof *t->node_name);
    t->node_n = calloc(nodes + 1, sizeof *t->node_n);
    t->node_cap = calloc(nodes + 1, sizeof *t->node_cap);
    return t->node_dev && t->node_name && t->node_n && t->node_cap ? 0 : -1;
}

static int node_push(ntam_tl_t *t, uint32_t node, uint32_t dev)
{
    if (t->node_n[node] == t->node_cap[node]) {
        uint32_t nc = t->node_cap[node] ? t->node_cap[node] * 2 : 16;
        uint32_t *nv = realloc(t->node_dev[node], nc * sizeof *nv);
        if (!nv) return -1;
        t->node_dev[node] = nv;
        t->node_cap[node] = nc;
    }
    t->node_dev[node][t->node_n[node]++] = dev;
    return 0;
}

/* A new device at step `first` (raw rows first .. n_steps−1, NaN); its index or -1. */
static int32_t tl_add(ntam_tl_t *t, const char *id, const char *instance, const char *device,
                      const char *rack, const char *pod, uint32_t node, int32_t first, int nvme)
{
    if (t->n_dev == t->cap) {
        int32_t ncap = t->cap ? t->cap * 2 : 1024;
        ntam_tl_dev_t *nv = realloc(t->dev, (size_t)ncap * sizeof *nv);
        if (!nv) return -1;
        t->dev = nv;
        t->cap = ncap;
    }
    int32_t d = t->n_dev;
    ntam_tl_dev_t *v = &t->dev[d];
    memset(v, 0, sizeof *v);
    t->n_dev++;
    size_t rows = (size_t)(t->n_steps - first);
    v->id = strdup(id);
    v->instance = strdup(instance);
    v->device = strdup(device);
    v->rack = strdup(rack ? rack : "");
    v->pod = strdup(pod ? pod : "");
    v->raw = malloc(rows * t->C * sizeof *v->raw + 1);
    if (!v->id || !v->instance || !v->device || !v->rack || !v->pod || !v->raw) return -1;
    for (size_t q = 0; q < rows * t->C; q++)
        v->raw[q] = NAN;
    v->node = node;
    v->first = first;
    v->last = first;
    v->fail = INT32_MIN;
    v->nvme = (uint8_t)nvme;
    if (!t->node_name[node] && !(t->node_name[node] = strdup(instance))) return -1;
    return node_push(t, node, (uint32_t)d) ? -1 : d;
}

/* Give back the rows after each device's last step. */
static void tl_shrink(ntam_tl_t *t)
{
    for (int32_t i = 0; i < t->n_dev; i++) {
        ntam_tl_dev_t *v = &t->dev[i];
        double *nr = realloc(v->raw, (size_t)(v->last - v->first + 1) * t->C * sizeof *nr);
        if (nr) v->raw = nr;
    }
}

static inline const double *tl_row(const ntam_tl_t *t, const ntam_tl_dev_t *v, int32_t k)
{
    return v->raw + (size_t)(k - v->first) * t->C;
}

static int tl_obs(const ntam_tl_t *t, const ntam_tl_dev_t *v, int32_t k)
{
    if (k < v->first || k > v->last) return 0;
    const double *row = tl_row(t, v, k);
    for (uint32_t c = 0; c < t->C; c++)
        if (row[c] == row[c]) return 1;
    return 0;
}

/* Device di is present at step s as the predictor sees the store at that step's end: a sample
 * at s, and no newer identity of its slot (disks: instance and device; GPUs: instance and UUID)
 * with one too, since feat_devices_from_store() keeps one device a slot, the newest (a failed
 * disk and its replacement both report in the step of the swap; only the replacement is
 * scored, and only it is a neighbour). Newest: the later first step (the replacement), then
 * the later last step, then the greater id, then the earlier index (the reader's tie-breaks). */
static int tl_present(const ntam_tl_t *t, int32_t di, int32_t s)
{
    const ntam_tl_dev_t *v = &t->dev[di];
    if (!tl_obs(t, v, s)) return 0;
    int disk = t->kind == FEAT_KIND_DISK;
    for (uint32_t q = 0; q < t->node_n[v->node]; q++) {
        int32_t ui = (int32_t)t->node_dev[v->node][q];
        const ntam_tl_dev_t *u = &t->dev[ui];
        if (ui == di || strcmp(disk ? u->device : u->id, disk ? v->device : v->id)) continue;
        if (!tl_obs(t, u, s)) continue;
        int c = strcmp(u->id, v->id);
        if (u->first > v->first ||
            (u->first == v->first &&
             (u->last > v->last || (u->last == v->last && (c > 0 || (!c && ui < di))))))
            return 0;
    }
    return 1;
}

/* ---- labelled windows ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t str_hash(const char *s, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return mix64(h);
}

/* Label of device v at sample step s: 1 positive, 0 negative, -1 context only. */
static int tl_label(const ntam_tl_t *t, const ntam_tl_dev_t *v, int32_t s, int32_t H, int neg_never)
{
    int64_t hs = (int64_t)H * t->per_day;
    if (v->fail != INT32_MIN) {
        int64_t gap = (int64_t)v->fail - s;
        if (H == 0) return gap >= 0 && gap < t->per_day ? 1 : neg_never ? -1 : 0;
        if (gap <= 0) return -1;
        if (gap <= hs) return 1;
        return neg_never ? -1 : 0;
    }
    /* outcome known only H days before the device's last sample */
    return s + hs <= v->last ? 0 : -1;
}

/* Fold of every device: failed and healthy dealt separately in seeded hash order. */
static int tl_folds(const ntam_tl_t *t, int folds, uint64_t seed, int32_t *fold)
{
    int32_t *ord = malloc((size_t)t->n_dev * sizeof *ord + 1);
    uint64_t *key = malloc((size_t)t->n_dev * sizeof *key + 1);
    if (!ord || !key) {
        free(ord);
        free(key);
        return -1;
    }
    for (int cls = 0; cls < 2; cls++) {
        int32_t n = 0;
        for (int32_t i = 0; i < t->n_dev; i++)
            if ((t->dev[i].fail != INT32_MIN) == cls) {
                key[n] = str_hash(t->dev[i].id, seed);
                ord[n++] = i;
            }
        for (int32_t gap = n / 2; gap > 0; gap /= 2)
            for (int32_t i = gap; i < n; i++)
                for (int32_t j = i; j >= gap && key[j - gap] > key[j]; j -= gap) {
                    uint64_t tk = key[j];
                    key[j] = key[j - gap];
                    key[j - gap] = tk;
                    int32_t to = ord[j];
                    ord[j] = ord[j - gap];
                    ord[j - gap] = to;
                }
        for (int32_t i = 0; i < n; i++)
            fold[ord[i]] = folds > 0 ? i % folds : 0;
    }
    free(ord);
    free(key);
    return 0;
}

/* The baseline rule at step s (last value of each channel up to s). */
static int tl_rule(const ntam_tl_t *t, const ntam_tl_dev_t *v, int32_t s)
{
    static const int disk_ch[] = {FEAT_RD_5,   FEAT_RD_187, FEAT_RD_188,
                                  FEAT_RD_197, FEAT_RD_198, FEAT_RD_MEDIA};
    static const int gpu_ch[] = {FEAT_RG_DBE, FEAT_RG_RET_DBE, FEAT_RG_REMAP_FAIL};
    const int *ch = t->kind == FEAT_KIND_DISK ? disk_ch : gpu_ch;
    int nch = t->kind == FEAT_KIND_DISK ? 6 : 3;
    for (int q = 0; q < nch; q++)
        for (int32_t k = s; k >= v->first; k--) {
            double x = tl_row(t, v, k)[ch[q]];
            if (x != x) continue;
            if (x > 0) return 1;
            break;
        }
    return 0;
}

/* Write sample n of d: device di's window ending at step s (day `day`), label lab (−1: context
 * only). raw is W·C scratch. */
static void tl_emit(const ntam_tl_t *t, ntam_data_t *d, size_t n, int32_t di, int32_t s,
                    int32_t day, int lab, int32_t W, int32_t F, double *raw)
{
    const ntam_tl_dev_t *v = &t->dev[di];
    uint32_t C = t->C;
    for (int32_t w = 0; w < W; w++) {
        int32_t k = s - W + 1 + w;
        const double *row = k >= v->first && k <= v->last ? tl_row(t, v, k) : NULL;
        for (uint32_t c = 0; c < C; c++)
            raw[(size_t)w * C + c] = row ? row[c] : NAN;
    }
    feat_compute(t->kind, 1, (uint32_t)W, raw, d->x + n * (size_t)W * F, d->tmask + n * (size_t)W);
    d->y[n] = lab == 1 ? 1.0f : 0.0f;
    d->w[n] = lab >= 0 ? 1.0f : 0.0f;
    d->dev[n] = di;
    d->day[n] = day;
    d->rule[n] = (uint8_t)tl_rule(t, v, s);
}

/* Scratch for the rack / pod grouping of one sample step. */
typedef struct {
    int32_t *dev;        /* present devices, in node order */
    int8_t *lab;         /* their labels (−1 context), after the node-day draw */
    feat_device_t *view; /* their labels as feat_scope_plan reads them */
    const feat_device_t **pv;
    uint32_t *order, *goff;
} tl_scope_ws_t;

static void tl_scope_ws_free(tl_scope_ws_t *g)
{
    free(g->dev);
    free(g->lab);
    free(g->view);
    free(g->pv);
    free(g->order);
    free(g->goff);
    memset(g, 0, sizeof *g);
}

int ntam_tl_build(const ntam_tl_t *t, const ntam_protocol_t *pr, int part, int neg_keep,
                  ntam_data_t *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    int32_t W = pr->window, H = pr->horizon, F = (int32_t)feat_count(t->kind);
    int32_t P = t->per_day;
    uint32_t C = t->C;
    int neg_never = pr->negatives == NTAM_NEG_NEVER_FAILED;
    if (W < 1 || W > 4096 || H < 0 ||
        (part != NTAM_PART_ALL && (pr->folds < 3 || pr->fold < 0 || pr->fold >= pr->folds))) {
        seterr(err, errlen, "bad protocol (window, horizon, folds)");
        return NTAM_EINVAL;
    }
    int32_t *fold = malloc((size_t)t->n_dev * sizeof *fold + 1);
    if (!fold || tl_folds(t, pr->folds, pr->split_seed, fold)) {
        free(fold);
        seterr(err, errlen, "out of memory");
        return NTAM_ENOMEM;
    }
    int folds = pr->folds > 0 ? pr->folds : 1;
    int want_fold = part == NTAM_PART_TEST  ? pr->fold
                    : part == NTAM_PART_VAL ? (pr->fold + 1) % folds
                                            : -1;
    /* sample days: the first whose day-end step ends a window of W steps */
    int32_t end = ntam_tl_days(t) - 1, dmin = W > P ? (W - P + P - 1) / P : 0, dmax = end;
    if (pr->holdout_days > 0) {
        if (part == NTAM_PART_TRAIN)
            dmax = end - pr->holdout_days - H;
        else if (part != NTAM_PART_ALL)
            dmin = end - pr->holdout_days + 1 > dmin ? end - pr->holdout_days + 1 : dmin;
    }
    size_t n = 0, ng = 0;
    int rc = NTAM_ENOMEM;
    tl_scope_ws_t gs;
    memset(&gs, 0, sizeof gs);
    double *raw = NULL;
    if (pr->scope < FEAT_SCOPE_NODE || pr->scope > FEAT_SCOPE_POD || pr->scope_cap < 0) {
        free(fold);
        seterr(err, errlen, "bad protocol (neighbourhood scope)");
        return NTAM_EINVAL;
    }
    int scoped = pr->scope != FEAT_SCOPE_NODE;
    if (scoped) {
        size_t nd = (size_t)t->n_dev + 1;
        gs.dev = malloc(nd * sizeof *gs.dev);
        gs.lab = malloc(nd);
        gs.view = calloc(nd, sizeof *gs.view);
        gs.pv = malloc(nd * sizeof *gs.pv);
        gs.order = malloc(nd * sizeof *gs.order);
        gs.goff = malloc((nd + 1) * sizeof *gs.goff);
        if (!gs.dev || !gs.lab || !gs.view || !gs.pv || !gs.order || !gs.goff) goto fail;
    }
    raw = malloc((size_t)W * C * sizeof *raw);
    if (!raw) goto fail;
    for (int pass = 0; pass < 2; pass++) {
        n = ng = 0;
        d->n_pos = d->n_neg = 0;
        d->max_group = 0;
        for (int32_t day = dmin; day <= dmax; day++) {
            int32_t s = day * P + P - 1;
            if (scoped) {
                /* rack / pod: node-days drawn as for scope node (their scored samples), then
                 * every present device grouped as the predictor groups them */
                uint32_t m = 0;
                for (uint32_t node = 0; node < t->n_nodes; node++) {
                    uint32_t m0 = m;
                    int32_t scored = 0, pos = 0;
                    for (uint32_t q = 0; q < t->node_n[node]; q++) {
                        int32_t di = (int32_t)t->node_dev[node][q];
                        const ntam_tl_dev_t *v = &t->dev[di];
                        if (!tl_present(t, di, s)) continue;
                        int in = part == NTAM_PART_ALL ||
                                 (part == NTAM_PART_TRAIN
                                      ? fold[di] != pr->fold && fold[di] != (pr->fold + 1) % folds
                                      : fold[di] == want_fold);
                        int lab = in ? tl_label(t, v, s, H, neg_never) : -1;
                        scored += lab >= 0;
                        pos += lab == 1;
                        gs.dev[m] = di;
                        gs.lab[m] = (int8_t)lab;
                        gs.view[m] = (feat_device_t){v->instance, v->device, v->id,     "",
                                                     v->rack,     v->pod,    INT64_MIN, v->nvme};
                        gs.pv[m] = &gs.view[m];
                        m++;
                    }
                    int keep = scored > 0;
                    if (keep && part == NTAM_PART_TRAIN && neg_keep > 1 && !pos &&
                        mix64(pr->split_seed ^ ((uint64_t)day << 32) ^ node) % (uint64_t)neg_keep)
                        keep = 0;
                    for (uint32_t q = m0; !keep && q < m; q++)
                        gs.lab[q] = -1;
                }
                uint32_t gn = 0;
                if (feat_scope_plan(gs.pv, m, (feat_scope_t)pr->scope, (uint32_t)pr->scope_cap,
                                    gs.order, gs.goff, &gn))
                    goto fail;
                for (uint32_t g = 0; g < gn; g++) {
                    int any = 0;
                    for (uint32_t r = gs.goff[g]; r < gs.goff[g + 1] && !any; r++)
                        any = gs.lab[gs.order[r]] >= 0;
                    if (!any) continue;
                    if (pass) d->goff[ng] = n;
                    ng++;
                    int32_t members = (int32_t)(gs.goff[g + 1] - gs.goff[g]);
                    if (members > d->max_group) d->max_group = members;
                    for (uint32_t r = gs.goff[g]; r < gs.goff[g + 1]; r++) {
                        int lab = gs.lab[gs.order[r]];
                        if (lab == 1) d->n_pos++;
                        if (lab == 0) d->n_neg++;
                        if (pass) tl_emit(t, d, n, gs.dev[gs.order[r]], s, day, lab, W, F, raw);
                        n++;
                    }
                }
                continue;
            }
            for (uint32_t node = 0; node < t->n_nodes; node++) {
                int32_t members = 0, scored = 0, pos = 0;
                for (uint32_t q = 0; q < t->node_n[node]; q++) {
                    int32_t di = (int32_t)t->node_dev[node][q];
                    const ntam_tl_dev_t *v = &t->dev[di];
                    if (!tl_present(t, di, s)) continue;
                    members++;
                    int in = part == NTAM_PART_ALL ||
                             (part == NTAM_PART_TRAIN
                                  ? fold[di] != pr->fold && fold[di] != (pr->fold + 1) % folds
                                  : fold[di] == want_fold);
                    int lab = in ? tl_label(t, v, s, H, neg_never) : -1;
                    if (lab >= 0) scored++;
                    if (lab == 1) pos++;
                }
                if (!scored) continue;
                if (part == NTAM_PART_TRAIN && neg_keep > 1 && !pos &&
                    mix64(pr->split_seed ^ ((uint64_t)day << 32) ^ node) % (uint64_t)neg_keep)
                    continue;
                if (pass) d->goff[ng] = n;
                ng++;
                if (members > d->max_group) d->max_group = members;
                for (uint32_t q = 0; q < t->node_n[node]; q++) {
                    int32_t di = (int32_t)t->node_dev[node][q];
                    const ntam_tl_dev_t *v = &t->dev[di];
                    if (!tl_present(t, di, s)) continue;
                    int in = part == NTAM_PART_ALL ||
                             (part == NTAM_PART_TRAIN
                                  ? fold[di] != pr->fold && fold[di] != (pr->fold + 1) % folds
                                  : fold[di] == want_fold);
                    int lab = in ? tl_label(t, v, s, H, neg_never) : -1;
                    if (lab == 1) d->n_pos++;
                    if (lab == 0) d->n_neg++;
                    if (pass) {
                        for (int32_t w = 0; w < W; w++) {
                            int32_t k = s - W + 1 + w;
                            const double *row =
                                k >= v->first && k <= v->last ? tl_row(t, v, k) : NULL;
                            for (uint32_t c = 0; c < C; c++)
                                raw[(size_t)w * C + c] = row ? row[c] : NAN;
                        }
                        feat_compute(t->kind, 1, (uint32_t)W, raw, d->x + n * (size_t)W * F,
                                     d->tmask + n * (size_t)W);
                        d->y[n] = lab == 1 ? 1.0f : 0.0f;
                        d->w[n] = lab >= 0 ? 1.0f : 0.0f;
                        d->dev[n] = di;
                        d->day[n] = day;
                        d->rule[n] = (uint8_t)tl_rule(t, v, s);
                    }
                    n++;
                }
            }
        }
        if (!pass) {
            d->W = W;
            d->F = F;
            d->n = n;
            d->n_groups = ng;
            d->x = malloc(n * (size_t)W * F * sizeof *d->x + 1);
            d->tmask = malloc(n * (size_t)W + 1);
            d->y = malloc(n * sizeof *d->y + 1);
            d->w = malloc(n * sizeof *d->w + 1);
            d->dev = malloc(n * sizeof *d->dev + 1);
            d->day = malloc(n * sizeof *d->day + 1);
            d->rule = malloc(n + 1);
            d->goff = malloc((ng + 1) * sizeof *d->goff);
            d->n_dev_src = t->n_dev;
            d->fail_day = malloc((size_t)t->n_dev * sizeof *d->fail_day + 1);
            d->feature = calloc((size_t)F, sizeof *d->feature);
            if (!d->x || !d->tmask || !d->y || !d->w || !d->dev || !d->day || !d->rule ||
                !d->goff || !d->fail_day || !d->feature)
                goto fail;
        }
    }
    d->goff[ng] = n;
    for (int32_t i = 0; i < t->n_dev; i++)
        d->fail_day[i] = t->dev[i].fail == INT32_MIN ? INT32_MIN : t->dev[i].fail / P;
    for (int32_t f = 0; f < F; f++)
        snprintf(d->feature[f], NTAM_FEATURE_NAME, "%s", feat_name(t->kind, (uint32_t)f));
    free(raw);
    free(fold);
    tl_scope_ws_free(&gs);
    return 0;
fail:
    seterr(err, errlen, "out of memory");
    free(raw);
    free(fold);
    tl_scope_ws_free(&gs);
    ntam_data_free(d);
    return rc;
}

int ntam_tl_write_predictions(const char *path, const ntam_tl_t *t, const ntam_data_t *d,
                              const float *const *probs, const char *const *names, int n)
{
    FILE *f = fopen(path, "w");
    if (!f) return NTAM_EIO;
    fprintf(f, "%s,instance,device,date,probability,label",
            t->kind == FEAT_KIND_GPU ? "uuid" : "serial_number");
    for (int c = 1; c < n; c++)
        fprintf(f, ",%s", names[c]);
    fprintf(f, "\n");
    for (size_t i = 0; i < d->n; i++) {
        if (d->w[i] <= 0) continue;
        const ntam_tl_dev_t *v = &t->dev[d->dev[i]];
        int64_t ms = t->t0_ms + ((int64_t)d->day[i] * t->per_day + t->per_day - 1) * t->step_ms;
        int64_t ed = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
        char date[16];
        bbcsv_format_date((int32_t)ed, date);
        fprintf(f, "%s,%s,%s,%s,%.6g,%d", v->id, v->instance, v->device, date, probs[0][i],
                d->y[i] > 0);
        for (int c = 1; c < n; c++)
            fprintf(f, ",%.6g", probs[c][i]);
        fprintf(f, "\n");
    }
    return fclose(f) == 0 ? 0 : NTAM_EIO;
}

/* ---- store ------------------------------------------------------------------------------------
 */

/* Step holding time x: step k covers (t0 + (k−1)·step, t0 + k·step]. */
static int64_t step_of(const ntam_tl_t *t, int64_t x)
{
    int64_t d = x - t->t0_ms;
    return d <= 0 ? -((-d) / t->step_ms) : (d + t->step_ms - 1) / t->step_ms;
}

typedef struct {
    const char *a, *b;
    int64_t first;
    uint32_t i;
} gkey_t;

static int gkey_cmp(const void *x, const void *y)
{
    const gkey_t *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    if (!c) c = strcmp(p->b, q->b);
    if (!c) c = (p->first > q->first) - (p->first < q->first);
    if (!c) c = (p->i > q->i) - (p->i < q->i);
    return c;
}

#define STORE_CHUNK 512 /* steps per feat_read_store call */

/* Failure events of the timeline's kind onto its devices. */
static int tl_match_failures(ntam_tl_t *t, tsdb_reader_t *r, uint64_t *n_events, char *err,
                             size_t errlen)
{
    failure_filter_t f = {feat_kind_name(t->kind), NULL, NULL, INT64_MIN, INT64_MAX};
    failure_list_t l;
    int rc = failures_list(r, &f, &l);
    if (rc) {
        seterr(err, errlen, "reading failure events: %s", failures_strerror(rc));
        failure_list_free(&l);
        return rc == FAILURES_ENOMEM ? NTAM_ENOMEM : NTAM_EIO;
    }
    *n_events = l.n;
    int gpu = t->kind == FEAT_KIND_GPU;
    for (size_t e = 0; e < l.n; e++) {
        const failure_event_t *ev = &l.v[e];
        const char *id = gpu ? ev->uuid : ev->serial;
        int64_t k = step_of(t, ev->t_ms);
        int32_t best = -1;
        for (int32_t i = 0; i < t->n_dev; i++) {
            const ntam_tl_dev_t *v = &t->dev[i];
            if (ev->instance && ev->instance[0] && strcmp(ev->instance, v->instance)) continue;
            if (id && id[0]) {
                if (strcmp(id, v->id)) continue;
            } else if (!ev->device || strcmp(ev->device, v->device)) {
                continue;
            }
            if (k < v->first) continue; /* before this device existed */
            /* the latest identity that started before the event */
            if (best < 0 || v->first > t->dev[best].first) best = i;
        }
        if (best < 0) {
            t->events_unmatched++;
            continue;
        }
        ntam_tl_dev_t *v = &t->dev[best];
        int32_t ks = k > INT32_MAX ? INT32_MAX : (int32_t)k;
        if (v->fail == INT32_MIN) {
            t->failures++;
            v->fail = ks;
        } else if (ks < v->fail) {
            v->fail = ks;
        }
    }
    failure_list_free(&l);
    return 0;
}

int ntam_tl_from_reader(tsdb_reader_t *r, feat_kind_t kind, ntam_tl_t *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    feat_devices_t *ds = NULL, *gen = NULL;
    int64_t *last = NULL;
    const int64_t LO = -(1LL << 62), HI = 1LL << 62;
    int rc = feat_devices_history(r, kind, LO, HI, &ds, &last);
    if (rc) {
        seterr(err, errlen, "reading %s devices: %s", feat_kind_name(kind),
               rc == FEAT_ESTORE ? tsdb_strerror(feat_store_error()) : "out of memory");
        return rc == FEAT_ENOMEM ? NTAM_ENOMEM : NTAM_EIO;
    }
    uint32_t n = feat_devices_count(ds);
    ntam_tl_t *t = out;
    gkey_t *keys = NULL;
    double *raw = NULL;
    int32_t *tdev = NULL;
    int ret = NTAM_ENOMEM;
    if (!n) {
        seterr(err, errlen, "no %s telemetry (no %s series)", feat_kind_name(kind),
               kind == FEAT_KIND_DISK ? "smartctl_device" : "DCGM_FI_DEV_GPU_TEMP");
        ret = NTAM_EINVAL;
        goto out;
    }
    int64_t tmin = HI, tmax = LO;
    for (uint32_t i = 0; i < n; i++) {
        if (feat_devices_get(ds, i)->first_ms < tmin) tmin = feat_devices_get(ds, i)->first_ms;
        if (last[i] > tmax) tmax = last[i];
    }
    int64_t step = kind == FEAT_KIND_DISK ? 86400000LL : 3600000LL;
    /* step k covers (t0 + (k−1)·step, t0 + k·step]: the last holds tmax */
    int64_t steps = (tmax - tmin + step - 1) / step + 1;
    /* memory: every device's rows at 8 bytes a channel */
    if (steps > 1000000 || (double)steps * n * feat_raw_count(kind) * 8.0 > 8e9) {
        seterr(err, errlen,
               "the %s telemetry spans %lld steps of %s for %u devices: too large to hold",
               feat_kind_name(kind), (long long)steps, kind == FEAT_KIND_DISK ? "1 d" : "1 h", n);
        ret = NTAM_EINVAL;
        goto out;
    }
    /* nodes: devices are sorted by instance, so a node is a run */
    uint32_t nodes = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!i || strcmp(feat_devices_get(ds, i)->instance, feat_devices_get(ds, i - 1)->instance))
            nodes++;
    if (tl_init(t, kind, nodes, (int32_t)steps)) goto out;
    t->t0_ms = tmin;
    tdev = malloc(n * sizeof *tdev);
    keys = malloc(n * sizeof *keys);
    if (!tdev || !keys) goto out;
    uint32_t node = 0;
    for (uint32_t i = 0; i < n; i++) {
        const feat_device_t *fd = feat_devices_get(ds, i);
        if (i && strcmp(fd->instance, feat_devices_get(ds, i - 1)->instance)) node++;
        char idbuf[600];
        const char *id = fd->id;
        if (!id[0]) {
            snprintf(idbuf, sizeof idbuf, "%s/%s", fd->instance, fd->device);
            id = idbuf;
        }
        int32_t d = tl_add(t, id, fd->instance, fd->device, fd->rack, fd->pod, node,
                           (int32_t)step_of(t, fd->first_ms), fd->nvme);
        if (d < 0) goto out;
        t->dev[d].last = (int32_t)step_of(t, last[i]);
        tdev[i] = d;
        /* the key feat_read_store finds a device by */
        keys[i].a = kind == FEAT_KIND_DISK ? fd->instance : fd->id;
        keys[i].b = kind == FEAT_KIND_DISK ? fd->device : "";
        keys[i].first = fd->first_ms;
        keys[i].i = i;
    }
    /* generations: no two devices with the same key in one feat_read_store call */
    qsort(keys, n, sizeof *keys, gkey_cmp);
    uint32_t *genof = malloc(n * sizeof *genof), ngen = 0;
    if (!genof) goto out;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t g = 0;
        if (k && !strcmp(keys[k].a, keys[k - 1].a) && !strcmp(keys[k].b, keys[k - 1].b))
            g = genof[keys[k - 1].i] + 1;
        genof[keys[k].i] = g;
        if (g + 1 > ngen) ngen = g + 1;
    }
    uint32_t C = t->C;
    raw = malloc((size_t)n * STORE_CHUNK * C * sizeof *raw);
    if (!raw) {
        free(genof);
        goto out;
    }
    for (uint32_t g = 0; g < ngen; g++) {
        feat_devices_destroy(gen);
        gen = NULL;
        uint32_t *members = malloc(n * sizeof *members), nm = 0;
        int bad = 0;
        if (!members || feat_devices_create(&gen)) bad = 1;
        for (uint32_t i = 0; i < n && !bad; i++)
            if (genof[i] == g) {
                bad = feat_devices_add(gen, feat_devices_get(ds, i)) != 0;
                members[nm++] = i;
            }
        for (int32_t a = 0; !bad && a < t->n_steps; a += STORE_CHUNK) {
            int32_t b = a + STORE_CHUNK - 1 < t->n_steps ? a + STORE_CHUNK - 1 : t->n_steps - 1;
            feat_config_t fc = {kind, (uint32_t)(b - a + 1), step};
            rc = feat_read_store(r, &fc, gen, t->t0_ms + (int64_t)b * step, raw);
            if (rc) {
                seterr(err, errlen, "reading %s telemetry: %s", feat_kind_name(kind),
                       rc == FEAT_ESTORE ? tsdb_strerror(feat_store_error()) : "out of memory");
                ret = rc == FEAT_ENOMEM ? NTAM_ENOMEM : NTAM_EIO;
                bad = 2;
                break;
            }
            for (uint32_t m = 0; m < nm; m++) {
                ntam_tl_dev_t *v = &t->dev[tdev[members[m]]];
                for (int32_t k = a > v->first ? a : v->first; k <= b && k <= v->last; k++)
                    memcpy(v->raw + (size_t)(k - v->first) * C,
                           raw + ((size_t)m * (size_t)(b - a + 1) + (size_t)(k - a)) * C,
                           C * sizeof *raw);
            }
        }
        free(members);
        if (bad) {
            free(genof);
            goto out;
        }
    }
    free(genof);
    tl_shrink(t);
    uint64_t n_events = 0;
    if ((ret = tl_match_failures(t, r, &n_events, err, errlen))) goto out;
    if (!t->failures) {
        if (!n_events)
            seterr(err, errlen,
                   "no %s failure events (augur_failure_event{kind=\"%s\"}) to label with: "
                   "record them with `augur label failure`, POST /api/v1/failures or an import",
                   feat_kind_name(kind), feat_kind_name(kind));
        else
            seterr(err, errlen,
                   "none of the %llu %s failure events names a device of the telemetry (by "
                   "%s, or instance and device)",
                   (unsigned long long)n_events, feat_kind_name(kind),
                   kind == FEAT_KIND_DISK ? "serial" : "UUID");
        ret = NTAM_EINVAL;
        goto out;
    }
    ret = 0;
out:
    free(keys);
    free(raw);
    free(tdev);
    free(last);
    feat_devices_destroy(gen);
    feat_devices_destroy(ds);
    if (ret) ntam_tl_free(t);
    return ret;
}

int ntam_tl_from_store(const char *dir, feat_kind_t kind, ntam_tl_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        seterr(err, errlen, "%s: %s", dir,
               stat(dir, &st) ? strerror(errno) : "not a directory (a store directory or a CSV)");
        return NTAM_EINVAL;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    if (stat(p, &st)) {
        seterr(err, errlen, "%s: not an augur store directory (no data.mdb)", dir);
        return NTAM_EINVAL;
    }
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.read_only = 1;
    o.flush_interval_ms = -1;
    tsdb_t *db = NULL;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) {
        seterr(err, errlen, "%s: cannot open the store: %s%s%s", dir, tsdb_strerror(rc),
               *tsdb_last_error_detail() ? ": " : "", tsdb_last_error_detail());
        return NTAM_EIO;
    }
    tsdb_reader_t *r = NULL;
    rc = tsdb_reader_open(db, &r);
    if (rc) {
        seterr(err, errlen, "%s: cannot read the store: %s", dir, tsdb_strerror(rc));
        tsdb_close(db);
        return NTAM_EIO;
    }
    char e2[512];
    rc = ntam_tl_from_reader(r, kind, out, e2, sizeof e2);
    if (rc) seterr(err, errlen, "store %s: %s", dir, e2);
    tsdb_reader_close(r);
    tsdb_close(db);
    return rc;
}

/* ---- simulator --------------------------------------------------------------------------------
 */

/* Parse "sim:k=v,..." for kind into c and days. 0 or NTAM_EINVAL. */
static int sim_spec_parse(const char *spec, feat_kind_t kind, sim_config_t *c, int32_t *days,
                          char *err, size_t errlen)
{
    sim_config_init(c);
    int gpu = kind == FEAT_KIND_GPU;
    c->nodes = gpu ? 200 : 500;
    c->gpus_per_node = gpu ? 8 : 0;
    if (gpu) {
        c->disks_per_node = 0;
        c->nvme_per_node = 0;
    }
    c->interval_ms = gpu ? 3600000 : 86400000;
    *days = gpu ? 60 : 90;
    if (strncmp(spec, "sim:", 4)) goto bad;
    const char *p = spec + 4;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char kv[128];
        if (l >= sizeof kv) goto bad;
        memcpy(kv, p, l);
        kv[l] = 0;
        char *eq = strchr(kv, '=');
        if (!eq) goto bad;
        *eq = 0;
        char *end;
        double v = strtod(eq + 1, &end);
        if (*end || !isfinite(v) || v < 0) goto bad;
        if (!strcmp(kv, "nodes") && v >= 1 && v <= 100000)
            c->nodes = (uint32_t)v;
        else if (!strcmp(kv, "days") && v >= 2 && v <= 3650)
            *days = (int32_t)v;
        else if (!strcmp(kv, "seed"))
            c->seed = (uint64_t)v;
        else if (!strcmp(kv, "hazard"))
            c->hazard_scale = v;
        else if (!strcmp(kv, "disks") && v <= 64 && (gpu || v >= 1))
            c->disks_per_node = (uint32_t)v;
        else if (!strcmp(kv, "nvme") && v <= 64)
            c->nvme_per_node = (uint32_t)v;
        else if (!strcmp(kv, "gpus") && v <= 64 && (!gpu || v >= 1))
            c->gpus_per_node = (uint32_t)v;
        else if (!strcmp(kv, "stress"))
            c->node_stressor_rate = v;
        else if (!strcmp(kv, "rack-stress"))
            c->rack_stressor_rate = v;
        else if (!strcmp(kv, "precursor") && v <= 1) {
            if (gpu)
                c->gpu_precursor_frac = v;
            else
                c->disk_precursor_frac = v;
        } else
            goto bad;
        p = e ? e + 1 : p + l;
    }
    if (c->nvme_per_node > c->disks_per_node) goto bad;
    if (gpu && (double)c->nodes * c->gpus_per_node * *days * 24 * FEAT_RG_N * 8.0 > 8e9) {
        seterr(err, errlen,
               "simulator spec '%s': %u GPUs x %d days of hourly steps is too large to hold "
               "(use fewer nodes or days)",
               spec, c->nodes * c->gpus_per_node, *days);
        return NTAM_EINVAL;
    }
    return 0;
bad:
    seterr(err, errlen,
           "bad simulator spec '%s' (sim:nodes=N,days=N,seed=N,hazard=X,disks=N,nvme=N,gpus=N,"
           "stress=X,rack-stress=X,precursor=X)",
           spec);
    return NTAM_EINVAL;
}

int ntam_sim_spec_check(const char *spec, feat_kind_t kind, char *err, size_t errlen)
{
    sim_config_t c;
    int32_t days;
    return sim_spec_parse(spec, kind, &c, &days, err, errlen);
}

typedef struct {
    const sim_series_t *se;
} sim_lctx_t;

static const char *sim_label_fn(void *ctx, const char *name)
{
    const sim_series_t *se = ((sim_lctx_t *)ctx)->se;
    for (uint32_t l = 0; l < se->nlabels; l++)
        if (!strcmp(se->labels[l].name.ptr, name)) return se->labels[l].value.ptr;
    return "";
}

int ntam_tl_from_sim(const char *spec, feat_kind_t kind, ntam_tl_t *out, char *summary,
                     size_t summary_len, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    sim_config_t c;
    int32_t days;
    int rc = sim_spec_parse(spec, kind, &c, &days, err, errlen);
    if (rc) return rc;
    int gpu = kind == FEAT_KIND_GPU;
    sim_t *s = NULL;
    rc = sim_create(&c, &s);
    if (rc) {
        seterr(err, errlen, "simulator: %s", sim_strerror(rc));
        return NTAM_EINVAL;
    }
    ntam_tl_t *t = out;
    int32_t steps = gpu ? days * 24 : days;
    uint32_t per_node = gpu ? c.gpus_per_node : c.disks_per_node;
    uint32_t nd = gpu ? sim_gpu_count(s) : sim_disk_count(s);
    int32_t *cur = malloc((nd + 1) * sizeof *cur);
    int8_t *chan = NULL;
    uint32_t chan_n = 0;
    int ret = NTAM_ENOMEM;
    if (!cur || tl_init(t, kind, c.nodes, steps)) goto nomem;
    t->t0_ms = c.start_ms;
    for (uint32_t i = 0; i < nd; i++)
        cur[i] = -1;
    uint8_t want_src = gpu ? SIM_SRC_GPU : SIM_SRC_DISK;
    for (int32_t k = 0; k < steps; k++) {
        sim_frame_t f;
        if ((rc = sim_step(s, &f))) {
            seterr(err, errlen, "simulator: %s", sim_strerror(rc));
            ret = NTAM_EINVAL;
            goto out;
        }
        uint32_t ns = sim_series_count(s);
        if (ns > chan_n) {
            int8_t *nc = realloc(chan, ns);
            if (!nc) goto nomem;
            chan = nc;
            for (uint32_t j = chan_n; j < ns; j++) {
                sim_lctx_t lc = {sim_series_get(s, j)};
                chan[j] = (int8_t)(lc.se->source == want_src
                                       ? feat_series_channel(kind, sim_label_fn, &lc)
                                       : -1);
            }
            chan_n = ns;
        }
        for (uint32_t i = 0; i < nd; i++) {
            sim_device_info_t di;
            if (gpu)
                sim_gpu_info(s, i, &di);
            else
                sim_disk_info(s, i, &di);
            if (!di.serial) continue;
            int32_t d = cur[i];
            if (d < 0 || strcmp(t->dev[d].id, di.serial)) {
                if (!di.present) continue;
                /* the rack and pod labels the simulator puts on the device's series */
                d = tl_add(t, di.serial, di.instance, di.device ? di.device : "",
                           c.rack_labels ? di.rack : "", c.rack_labels ? di.pod : "", di.node, k,
                           gpu ? 0 : di.nvme);
                if (d < 0) goto nomem;
                cur[i] = d;
            }
            ntam_tl_dev_t *v = &t->dev[d];
            double *row = v->raw + (size_t)(k - v->first) * t->C;
            int obs = 0;
            for (uint32_t j = 0; j < di.nseries; j++) {
                uint32_t si = di.series_base + j;
                if (si >= f.nseries || chan[si] < 0) continue;
                double x = f.v[si];
                if (x != x) continue;
                row[chan[si]] = x;
                obs = 1;
            }
            if (obs) {
                if (!gpu) row[FEAT_RD_NVME] = v->nvme; /* as feat_read_store sets it */
                v->last = k;
            }
        }
        for (uint32_t e = 0; e < f.nevents; e++) {
            const sim_event_t *ev = &f.events[e];
            if (ev->kind != (gpu ? SIM_KIND_GPU : SIM_KIND_DISK)) continue;
            uint32_t slot = ev->node * per_node + ev->dev;
            if (slot < nd && cur[slot] >= 0 && !strcmp(t->dev[cur[slot]].id, ev->serial)) {
                t->dev[cur[slot]].fail = k;
                t->failures++;
                t->failures_precursor += ev->precursor;
            }
        }
    }
    tl_shrink(t);
    if (!t->failures) {
        seterr(err, errlen,
               "simulator spec '%s': no %s failed in %d days: nothing to learn or score (raise "
               "hazard, nodes or days)",
               spec, gpu ? "GPU" : "disk", days);
        ret = NTAM_EINVAL;
        goto out;
    }
    if (summary && summary_len)
        snprintf(summary, summary_len,
                 "simulated %u nodes x %u %s x %d days (seed %llu, hazard x%g, %s steps): %d %s, "
                 "%llu failures (%llu with precursors)",
                 c.nodes, per_node, gpu ? "GPUs" : "disks", days, (unsigned long long)c.seed,
                 c.hazard_scale, gpu ? "hourly" : "daily", t->n_dev, gpu ? "GPUs" : "disks",
                 (unsigned long long)t->failures, (unsigned long long)t->failures_precursor);
    ret = 0;
    goto out;
nomem:
    seterr(err, errlen, "out of memory");
    ret = NTAM_ENOMEM;
out:
    free(cur);
    free(chan);
    sim_destroy(s);
    if (ret) ntam_tl_free(t);
    return ret;
}
