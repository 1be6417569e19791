/*
 * features.c — feature windows for failure prediction (docs/features.md).
 *
 * feat_compute() is the only place where raw exporter values become model
 * inputs; the store reader and any other source (CSV rows) only fill the raw
 * [n][W][C] array. Transforms are fixed (no fitted statistics), so a model
 * trained on one fleet reads the same numbers when serving another.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/features.h"

/* ---- schema ------------------------------------------------------------------------ */

static const char *const disk_names[] = {
    "log1p_smart_5",
    "log1p_smart_187",
    "log1p_smart_188",
    "log1p_smart_197",
    "log1p_smart_198",
    "log1p_smart_199",
    "log1p_nvme_media_errors",
    "log1p_inc_smart_5",
    "log1p_inc_smart_187",
    "log1p_inc_smart_188",
    "log1p_inc_smart_197",
    "log1p_inc_smart_198",
    "log1p_inc_smart_199",
    "log1p_inc_nvme_media_errors",
    "nvme_spare_used",
    "temp_c_minus_40_div_10",
    "temp_minus_window_mean_div_5",
    "is_nvme",
    "missing",
};
#define DISK_F (sizeof disk_names / sizeof disk_names[0])
#define DISK_NCTR 7 /* counters: raw channels 0..6 */

static const char *const gpu_names[] = {
    "log1p_step_inc_ecc_sbe",
    "log1p_step_inc_ecc_dbe",
    "log1p_step_inc_retired_sbe",
    "log1p_step_inc_retired_dbe",
    "log1p_step_inc_unc_remapped_rows",
    "log1p_step_inc_pcie_replay",
    "log1p_step_inc_nvlink_crc",
    "log1p_step_inc_thermal_violation_s",
    "log1p_inc_ecc_sbe",
    "log1p_inc_ecc_dbe",
    "log1p_inc_retired_sbe",
    "log1p_inc_retired_dbe",
    "log1p_inc_unc_remapped_rows",
    "log1p_inc_pcie_replay",
    "log1p_inc_nvlink_crc",
    "log1p_inc_thermal_violation_s",
    "log1p_ecc_dbe",
    "log1p_retired_pages",
    "log1p_unc_remapped_rows",
    "retired_pending",
    "row_remap_failure",
    "xid_memory",
    "xid_nvlink",
    "xid_off_bus",
    "xid_other",
    "xid_new",
    "temp_c_minus_60_div_15",
    "mem_temp_c_minus_70_div_15",
    "temp_minus_window_mean_div_5",
    "power_rel_window_mean",
    "sm_clock_rel_window_max",
    "util_frac",
    "missing",
};
#define GPU_F (sizeof gpu_names / sizeof gpu_names[0])
#define GPU_NCTR 8

uint32_t feat_raw_count(feat_kind_t kind)
{
    return kind == FEAT_KIND_DISK ? FEAT_RD_N : FEAT_RG_N;
}

uint32_t feat_count(feat_kind_t kind)
{
    return kind == FEAT_KIND_DISK ? (uint32_t)DISK_F : (uint32_t)GPU_F;
}

const char *feat_name(feat_kind_t kind, uint32_t f)
{
    if (f >= feat_count(kind)) return NULL;
    return kind == FEAT_KIND_DISK ? disk_names[f] : gpu_names[f];
}

/* Bump when a transform changes without a name changing. */
#define FEAT_TRANSFORM_VERSION 1

uint64_t feat_schema_hash(feat_kind_t kind)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)FEAT_TRANSFORM_VERSION ^ ((uint64_t)kind << 8);
    for (uint32_t f = 0; f < feat_count(kind); f++) {
        const char *n = feat_name(kind, f);
        for (; *n; n++)
            h = (h ^ (uint8_t)*n) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL;
    }
    return h;
}

/* ---- raw -> features ------------------------------------------------------------------ */

static inline int isnum(double v)
{
    return v == v;
}

static inline float lg(double v)
{
    return (float)log1p(v > 0 ? v : 0);
}

/* Forward-fill raw channel c of one device window into out[W]; returns the
 * number of steps with data (observed or filled). obs[w] = 1 if observed. */
static void ffill(const double *raw, uint32_t W, uint32_t C, uint32_t c, double *out)
{
    double last = NAN;
    for (uint32_t w = 0; w < W; w++) {
        double v = raw[(size_t)w * C + c];
        if (isnum(v)) last = v;
        out[w] = last;
    }
}

/* Counter increases: a decrease is a reset (new device, driver reload): the
 * increase is then the new value (Prometheus rate() semantics). The first
 * step with data has increase 0. */
static void increases(const double *v, uint32_t W, double *step_inc, double *cum_inc)
{
    double prev = NAN, cum = 0;
    for (uint32_t w = 0; w < W; w++) {
        double inc = 0;
        if (isnum(v[w])) {
            if (isnum(prev)) inc = v[w] >= prev ? v[w] - prev : v[w];
            prev = v[w];
        }
        cum += inc;
        step_inc[w] = inc;
        cum_inc[w] = cum;
    }
}

static int xid_class(double x)
{
    int v = (int)x;
    if (!isnum(x) || v == 0) return -1;
    if (v == 48 || v == 63 || v == 64 || v == 92 || v == 94 || v == 95) return 0;
    if (v == 74) return 1;
    if (v == 79) return 2;
    return 3;
}

#define MAXW 4096

static void disk_compute(uint32_t W, const double *raw, float *x, uint8_t *mask)
{
    const uint32_t C = FEAT_RD_N, F = DISK_F;
    double v[MAXW], si[MAXW], ci[MAXW];
    /* mask and missing flag: any channel observed at w. */
    uint32_t started = 0;
    for (uint32_t w = 0; w < W; w++) {
        int obs = 0;
        for (uint32_t c = 0; c < C; c++)
            obs |= isnum(raw[(size_t)w * C + c]);
        if (obs) started = 1;
        mask[w] = (uint8_t)started;
        memset(x + (size_t)w * F, 0, F * sizeof *x);
        x[(size_t)w * F + 18] = started && !obs ? 1.0f : 0.0f;
    }
    for (uint32_t c = 0; c < DISK_NCTR; c++) {
        ffill(raw, W, C, c, v);
        increases(v, W, si, ci);
        for (uint32_t w = 0; w < W; w++) {
            if (!mask[w]) continue;
            x[(size_t)w * F + c] = isnum(v[w]) ? lg(v[w]) : 0.0f;
            x[(size_t)w * F + DISK_NCTR + c] = lg(ci[w]);
        }
    }
    ffill(raw, W, C, FEAT_RD_SPARE, v);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) x[(size_t)w * F + 14] = (float)((100.0 - v[w]) / 100.0);
    ffill(raw, W, C, FEAT_RD_TEMP, v);
    double sum = 0;
    uint32_t n = 0;
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) {
            sum += v[w];
            n++;
        }
    double mean = n ? sum / n : 0;
    for (uint32_t w = 0; w < W; w++) {
        if (!mask[w] || !isnum(v[w])) continue;
        x[(size_t)w * F + 15] = (float)((v[w] - 40.0) / 10.0);
        x[(size_t)w * F + 16] = (float)((v[w] - mean) / 5.0);
    }
    ffill(raw, W, C, FEAT_RD_NVME, v);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) x[(size_t)w * F + 17] = v[w] > 0 ? 1.0f : 0.0f;
}

static void gpu_compute(uint32_t W, const double *raw, float *x, uint8_t *mask)
{
    const uint32_t C = FEAT_RG_N, F = GPU_F;
    double v[MAXW], si[MAXW], ci[MAXW];
    uint32_t started = 0;
    for (uint32_t w = 0; w < W; w++) {
        int obs = 0;
        for (uint32_t c = 0; c < C; c++)
            obs |= isnum(raw[(size_t)w * C + c]);
        if (obs) started = 1;
        mask[w] = (uint8_t)started;
        memset(x + (size_t)w * F, 0, F * sizeof *x);
        x[(size_t)w * F + 32] = started && !obs ? 1.0f : 0.0f;
    }
    for (uint32_t c = 0; c < GPU_NCTR; c++) {
        ffill(raw, W, C, c, v);
        double scale = c == FEAT_RG_THERMAL ? 1e-6 : 1.0; /* us -> s */
        increases(v, W, si, ci);
        for (uint32_t w = 0; w < W; w++) {
            if (!mask[w]) continue;
            x[(size_t)w * F + c] = lg(si[w] * scale);
            x[(size_t)w * F + GPU_NCTR + c] = lg(ci[w] * scale);
            if (!isnum(v[w])) continue;
            if (c == FEAT_RG_DBE) x[(size_t)w * F + 16] = lg(v[w]);
            if (c == FEAT_RG_UNC_REMAP) x[(size_t)w * F + 18] = lg(v[w]);
        }
    }
    double a[MAXW];
    ffill(raw, W, C, FEAT_RG_RET_SBE, v);
    ffill(raw, W, C, FEAT_RG_RET_DBE, a);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w])
            x[(size_t)w * F + 17] = lg((isnum(v[w]) ? v[w] : 0) + (isnum(a[w]) ? a[w] : 0));
    ffill(raw, W, C, FEAT_RG_RET_PEND, v);
    ffill(raw, W, C, FEAT_RG_REMAP_FAIL, a);
    for (uint32_t w = 0; w < W; w++) {
        if (!mask[w]) continue;
        x[(size_t)w * F + 19] = isnum(v[w]) && v[w] > 0 ? 1.0f : 0.0f;
        x[(size_t)w * F + 20] = isnum(a[w]) && a[w] > 0 ? 1.0f : 0.0f;
    }
    ffill(raw, W, C, FEAT_RG_XID, v);
    double prev = NAN;
    for (uint32_t w = 0; w < W; w++) {
        if (!mask[w]) continue;
        int k = xid_class(v[w]);
        if (k >= 0) x[(size_t)w * F + 21 + k] = 1.0f;
        /* A new XID: the held value changed to a nonzero code (observed
         * steps only: a carried-forward value is not news). */
        double o = raw[(size_t)w * C + FEAT_RG_XID];
        if (isnum(o) && o != 0 && (!isnum(prev) || o != prev)) x[(size_t)w * F + 25] = 1.0f;
        if (isnum(o)) prev = o;
    }
    /* Gauges relative to the window. */
    double sum = 0, psum = 0, cmax = 0;
    uint32_t n = 0, pn = 0;
    ffill(raw, W, C, FEAT_RG_TEMP, v);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) {
            sum += v[w];
            n++;
        }
    double tmean = n ? sum / n : 0;
    for (uint32_t w = 0; w < W; w++) {
        if (!mask[w] || !isnum(v[w])) continue;
        x[(size_t)w * F + 26] = (float)((v[w] - 60.0) / 15.0);
        x[(size_t)w * F + 28] = (float)((v[w] - tmean) / 5.0);
    }
    ffill(raw, W, C, FEAT_RG_MEM_TEMP, v);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) x[(size_t)w * F + 27] = (float)((v[w] - 70.0) / 15.0);
    ffill(raw, W, C, FEAT_RG_POWER, v);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) {
            psum += v[w];
            pn++;
        }
    double pmean = pn ? psum / pn : 0;
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w])) x[(size_t)w * F + 29] = (float)((v[w] - pmean) / (pmean + 1.0));
    ffill(raw, W, C, FEAT_RG_CLOCK, v);
    ffill(raw, W, C, FEAT_RG_UTIL, a);
    for (uint32_t w = 0; w < W; w++)
        if (mask[w] && isnum(v[w]) && v[w] > cmax) cmax = v[w];
    for (uint32_t w = 0; w < W; w++) {
        if (!mask[w]) continue;
        int busy = isnum(a[w]) && a[w] > 10;
        if (busy && isnum(v[w]) && cmax > 0) x[(size_t)w * F + 30] = (float)(v[w] / cmax - 1.0);
        if (isnum(a[w])) x[(size_t)w * F + 31] = (float)(a[w] / 100.0);
    }
}

int feat_compute(feat_kind_t kind, uint32_t n, uint32_t W, const double *raw, float *x,
                 uint8_t *mask)
{
    if ((kind != FEAT_KIND_DISK && kind != FEAT_KIND_GPU) || !W || W > MAXW ||
        (n && (!raw || !x || !mask)))
        return FEAT_EINVAL;
    uint32_t C = feat_raw_count(kind), F = feat_count(kind);
    for (uint32_t i = 0; i < n; i++) {
        const double *r = raw + (size_t)i * W * C;
        float *xo = x + (size_t)i * W * F;
        uint8_t *m = mask + (size_t)i * W;
        if (kind == FEAT_KIND_DISK)
            disk_compute(W, r, xo, m);
        else
            gpu_compute(W, r, xo, m);
    }
    return 0;
}

/* ---- device lists -------------------------------------------------------------------- */

struct feat_devices {
    feat_device_t *v;
    uint32_t n, cap;
};

int feat_devices_create(feat_devices_t **out)
{
    if (!out) return FEAT_EINVAL;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : FEAT_ENOMEM;
}

static void dev_free_strings(feat_device_t *d)
{
    free((char *)d->instance);
    free((char *)d->device);
    free((char *)d->id);
    free((char *)d->model);
    free((char *)d->rack);
    free((char *)d->pod);
}

void feat_devices_destroy(feat_devices_t *d)
{
    if (!d) return;
    for (uint32_t i = 0; i < d->n; i++)
        dev_free_strings(&d->v[i]);
    free(d->v);
    free(d);
}

static char *sdup(const char *s)
{
    return strdup(s ? s : "");
}

int feat_devices_add(feat_devices_t *d, const feat_device_t *dev)
{
    if (!d || !dev || !dev->instance || !dev->device) return FEAT_EINVAL;
    if (d->n == d->cap) {
        uint32_t nc = d->cap ? d->cap * 2 : 64;
        feat_device_t *nv = realloc(d->v, nc * sizeof *nv);
        if (!nv) return FEAT_ENOMEM;
        d->v = nv;
        d->cap = nc;
    }
    feat_device_t *o = &d->v[d->n];
    o->instance = sdup(dev->instance);
    o->device = sdup(dev->device);
    o->id = sdup(dev->id);
    o->model = sdup(dev->model);
    o->rack = sdup(dev->rack);
    o->pod = sdup(dev->pod);
    o->first_ms = dev->first_ms;
    o->nvme = dev->nvme;
    if (!o->instance || !o->device || !o->id || !o->model || !o->rack || !o->pod) {
        dev_free_strings(o);
        return FEAT_ENOMEM;
    }
    d->n++;
    return 0;
}

uint32_t feat_devices_count(const feat_devices_t *d)
{
    return d ? d->n : 0;
}

const feat_device_t *feat_devices_get(const feat_devices_t *d, uint32_t i)
{
    return d && i < d->n ? &d->v[i] : NULL;
}

/* The neighbourhood key of a device under scope, with its level (2 pod, 1 rack, 0 instance):
 * keys of different levels never match, so a rack named like a node is not merged with it. */
static const char *scope_key(const feat_device_t *d, feat_scope_t scope, int *level)
{
    const char *pod = d->pod ? d->pod : "", *rack = d->rack ? d->rack : "";
    if (scope == FEAT_SCOPE_POD && pod[0]) return *level = 2, pod;
    if (scope >= FEAT_SCOPE_RACK && rack[0]) return *level = 1, rack;
    *level = 0;
    return d->instance;
}

/* Group order: indices sorted by (level, scope key, index). */
typedef struct {
    const char *key;
    int level;
    uint32_t i;
} grp_t;

static int grp_key_cmp(const grp_t *x, const grp_t *y)
{
    if (x->level != y->level) return x->level - y->level;
    return strcmp(x->key, y->key);
}

static int grp_cmp(const void *a, const void *b)
{
    const grp_t *x = a, *y = b;
    int c = grp_key_cmp(x, y);
    if (c) return c;
    return (x->i > y->i) - (x->i < y->i);
}

static grp_t *groups_of(const feat_device_t *const *v, uint32_t n, feat_scope_t scope)
{
    grp_t *g = malloc(((size_t)n + 1) * sizeof *g);
    if (!g) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        g[i].key = scope_key(v[i], scope, &g[i].level);
        g[i].i = i;
    }
    qsort(g, n, sizeof *g, grp_cmp);
    return g;
}

static grp_t *groups(const feat_devices_t *d, feat_scope_t scope)
{
    const feat_device_t **v = malloc(((size_t)d->n + 1) * sizeof *v);
    if (!v) return NULL;
    for (uint32_t i = 0; i < d->n; i++)
        v[i] = &d->v[i];
    grp_t *g = groups_of(v, d->n, scope);
    free(v);
    return g;
}

const char *feat_scope_name(feat_scope_t scope)
{
    switch (scope) {
    case FEAT_SCOPE_NODE:
        return "node";
    case FEAT_SCOPE_RACK:
        return "rack";
    case FEAT_SCOPE_POD:
        return "pod";
    }
    return NULL;
}

int feat_scope_parse(const char *s, feat_scope_t *out)
{
    for (int k = FEAT_SCOPE_NODE; s && k <= FEAT_SCOPE_POD; k++)
        if (!strcmp(s, feat_scope_name((feat_scope_t)k))) {
            if (out) *out = (feat_scope_t)k;
            return 0;
        }
    return FEAT_EINVAL;
}

/* Index order inside a scope group: by instance, then by input index (nodes stay runs). */
typedef struct {
    const char *inst;
    uint32_t i;
} inst_t;

static int inst_cmp(const void *a, const void *b)
{
    const inst_t *x = a, *y = b;
    int c = strcmp(x->inst, y->inst);
    if (c) return c;
    return (x->i > y->i) - (x->i < y->i);
}

int feat_scope_plan(const feat_device_t *const *dev, uint32_t n, feat_scope_t scope, uint32_t cap,
                    uint32_t *order, uint32_t *goff, uint32_t *n_groups)
{
    if ((n && (!dev || !order)) || !goff || !n_groups || (int)scope < FEAT_SCOPE_NODE ||
        scope > FEAT_SCOPE_POD)
        return FEAT_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        if (!dev[i] || !dev[i]->instance) return FEAT_EINVAL;
    *n_groups = 0;
    goff[0] = 0;
    if (!n) return 0;
    grp_t *g = groups_of(dev, n, scope);
    inst_t *in = malloc((size_t)n * sizeof *in);
    if (!g || !in) {
        free(g);
        free(in);
        return FEAT_ENOMEM;
    }
    uint32_t ng = 0, pos = 0;
    for (uint32_t a = 0; a < n;) {
        uint32_t b = a;
        while (b < n && !grp_key_cmp(&g[b], &g[a]))
            b++;
        uint32_t m = b - a;
        for (uint32_t k = 0; k < m; k++)
            in[k] = (inst_t){dev[g[a + k].i]->instance, g[a + k].i};
        qsort(in, m, sizeof *in, inst_cmp);
        /* cap: cut the group into k = ceil(m / cap) chunks of whole nodes, each filled up to
         * ceil(m / k) devices, never past cap unless one node alone is larger */
        uint32_t chunks = cap && m > cap ? (m + cap - 1) / cap : 1;
        uint32_t target = (m + chunks - 1) / chunks, fill = 0;
        for (uint32_t k = 0; k < m;) {
            uint32_t e = k;
            while (e < m && !strcmp(in[e].inst, in[k].inst))
                e++;
            uint32_t nodesz = e - k;
            if (fill && (fill >= target || (cap && fill + nodesz > cap))) {
                goff[++ng] = pos;
                fill = 0;
            }
            for (uint32_t q = k; q < e; q++)
                order[pos++] = in[q].i;
            fill += nodesz;
            k = e;
        }
        goff[++ng] = pos;
        a = b;
    }
    *n_groups = ng;
    free(g);
    free(in);
    return 0;
}

size_t feat_neighbours_bound(const feat_devices_t *d, feat_scope_t scope)
{
    if (!d || !d->n) return 0;
    grp_t *g = groups(d, scope);
    if (!g) return (size_t)d->n * (d->n - 1); /* worst case */
    size_t total = 0;
    for (uint32_t a = 0; a < d->n;) {
        uint32_t b = a;
        while (b < d->n && !grp_key_cmp(&g[b], &g[a]))
            b++;
        total += (size_t)(b - a) * (b - a - 1);
        a = b;
    }
    free(g);
    return total;
}

int feat_neighbours(const feat_devices_t *d, feat_scope_t scope, uint32_t *off, uint32_t *idx,
                    size_t cap)
{
    if (!d || !off) return FEAT_EINVAL;
    if (!d->n) {
        off[0] = 0;
        return 0;
    }
    grp_t *g = groups(d, scope);
    if (!g) return FEAT_ENOMEM;
    /* group start/end of each device */
    uint32_t *gs = malloc(2 * (size_t)d->n * sizeof *gs);
    if (!gs) {
        free(g);
        return FEAT_ENOMEM;
    }
    for (uint32_t a = 0; a < d->n;) {
        uint32_t b = a;
        while (b < d->n && !grp_key_cmp(&g[b], &g[a]))
            b++;
        for (uint32_t k = a; k < b; k++) {
            gs[2 * g[k].i] = a;
            gs[2 * g[k].i + 1] = b;
        }
        a = b;
    }
    size_t pos = 0;
    int rc = 0;
    for (uint32_t i = 0; i < d->n; i++) {
        off[i] = (uint32_t)pos;
        for (uint32_t k = gs[2 * i]; k < gs[2 * i + 1]; k++) {
            if (g[k].i == i) continue;
            if (pos >= cap || !idx) {
                rc = FEAT_EINVAL;
                goto out;
            }
            idx[pos++] = g[k].i; /* ascending: g sorted by index within a key */
        }
    }
    off[d->n] = (uint32_t)pos;
out:
    free(gs);
    free(g);
    return rc;
}

/* ---- store reader ----------------------------------------------------------------------- */

static _Thread_local int feat_tsdb_err;

int feat_store_error(void)
{
    return feat_tsdb_err;
}

static int store_err(int rc)
{
    feat_tsdb_err = rc;
    return rc == TSDB_ENOMEM ? FEAT_ENOMEM : FEAT_ESTORE;
}

/* Copy label `name` of a label set into buf ("" if absent). */
static const char *label_get(const tsdb_label_t *l, size_t n, const char *name, char *buf,
                             size_t cap)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (l[i].name.len == nl && !memcmp(l[i].name.ptr, name, nl)) {
            size_t k = l[i].value.len < cap - 1 ? l[i].value.len : cap - 1;
            memcpy(buf, l[i].value.ptr, k);
            buf[k] = 0;
            return buf;
        }
    buf[0] = 0;
    return buf;
}

/* First and last sample times of a series in [mint, maxt]; 0 if none. */
static int series_span(tsdb_reader_t *r, tsdb_sid_t sid, int64_t mint, int64_t maxt, int64_t *first,
                       int64_t *last)
{
    tsdb_iter_t *it = NULL;
    int rc = tsdb_iter_open(r, sid, mint, maxt, &it);
    if (rc) return rc;
    const tsdb_sample_t *s;
    size_t n;
    int any = 0;
    while ((rc = tsdb_iter_next(it, &s, &n)) == 1 || rc == TSDB_ECORRUPT) {
        if (rc != 1) continue;
        if (!any) *first = s[0].t;
        *last = s[n - 1].t;
        any = 1;
    }
    tsdb_iter_close(it);
    return rc < 0 ? rc : any;
}

static int select_name(tsdb_reader_t *r, const char *metric, int64_t mint, int64_t maxt,
                       tsdb_sids_t *out)
{
    tsdb_matcher_t m = {TSDB_MATCH_EQ, "__name__", metric};
    return tsdb_select(r, &m, 1, mint, maxt, out);
}

typedef struct {
    feat_device_t d;
    int64_t last;
    char buf[6][256];
} cand_t;

static int dev_cmp(const void *a, const void *b)
{
    const feat_device_t *x = a, *y = b;
    int c = strcmp(x->instance, y->instance);
    return c ? c : strcmp(x->device, y->device);
}

int feat_devices_from_store(tsdb_reader_t *r, const feat_config_t *cfg, int64_t t,
                            feat_devices_t **out)
{
    if (!r || !cfg || !out || !cfg->window || cfg->step_ms <= 0) return FEAT_EINVAL;
    *out = NULL;
    int disk = cfg->kind == FEAT_KIND_DISK;
    int64_t wmin = t - (int64_t)cfg->window * cfg->step_ms + 1;
    tsdb_sids_t sids = {0};
    int rc = select_name(r, disk ? "smartctl_device" : "DCGM_FI_DEV_GPU_TEMP", t - cfg->step_ms + 1,
                         t, &sids);
    if (rc) return store_err(rc);
    cand_t *c = calloc(sids.n + 1, sizeof *c);
    feat_devices_t *d = NULL;
    int ret = FEAT_ENOMEM;
    if (!c || feat_devices_create(&d)) goto out;
    size_t nc = 0;
    for (size_t i = 0; i < sids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        rc = tsdb_series_labels(r, sids.ids[i], &l, &nl);
        if (rc == TSDB_ENOTFOUND) continue;
        if (rc) {
            ret = store_err(rc);
            goto out;
        }
        cand_t *k = &c[nc];
        k->d.instance = label_get(l, nl, "instance", k->buf[0], 256);
        if (!k->d.instance[0]) k->d.instance = label_get(l, nl, "Hostname", k->buf[0], 256);
        k->d.device = label_get(l, nl, "device", k->buf[1], 256);
        k->d.id = label_get(l, nl, disk ? "serial_number" : "UUID", k->buf[2], 256);
        k->d.model = label_get(l, nl, disk ? "model_name" : "modelName", k->buf[3], 256);
        k->d.rack = label_get(l, nl, "rack", k->buf[4], 256);
        k->d.pod = label_get(l, nl, "pod", k->buf[5], 256);
        if (disk) {
            char p[32];
            k->d.nvme = !strcmp(label_get(l, nl, "protocol", p, sizeof p), "NVMe") ||
                        !strcmp(label_get(l, nl, "interface", p, sizeof p), "nvme");
        }
        if (!k->d.instance[0] || !k->d.device[0]) continue;
        int64_t first = 0, last = 0;
        rc = series_span(r, sids.ids[i], wmin - cfg->step_ms, t, &first, &last);
        if (rc < 0) {
            ret = store_err(rc);
            goto out;
        }
        if (!rc) continue;
        k->d.first_ms = first;
        k->last = last;
        nc++;
    }
    /* One entry per slot (disks: instance+device; GPUs: UUID). Keep the newest. */
    for (size_t i = 0; i < nc; i++) {
        int keep = 1;
        for (size_t j = 0; j < nc && keep; j++) {
            if (i == j) continue;
            int same =
                disk ? !strcmp(c[i].d.instance, c[j].d.instance) &&
                           !strcmp(c[i].d.device, c[j].d.device)
                     : !strcmp(c[i].d.id, c[j].d.id) && !strcmp(c[i].d.instance, c[j].d.instance);
            if (!same) continue;
            if (c[j].last > c[i].last ||
                (c[j].last == c[i].last && strcmp(c[j].d.id, c[i].d.id) > 0) ||
                (c[j].last == c[i].last && !strcmp(c[j].d.id, c[i].d.id) && j < i))
                keep = 0;
        }
        if (keep && (ret = feat_devices_add(d, &c[i].d))) goto out;
    }
    if (d->n) qsort(d->v, d->n, sizeof *d->v, dev_cmp); /* v is NULL when empty (UBSan) */
    ret = 0;
out:
    tsdb_sids_free(&sids);
    free(c);
    if (ret)
        feat_devices_destroy(d);
    else
        *out = d;
    return ret;
}

/* Device lookup by key (disks: instance + device; GPUs: UUID). Linear over a
 * sorted array with bsearch. */
typedef struct {
    const char *a, *b;
    uint32_t i;
} key_t_;

static int key_cmp(const void *x, const void *y)
{
    const key_t_ *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    return c ? c : strcmp(p->b, q->b);
}

typedef struct {
    const char *metric;
    int channel;
    int attr; /* smartctl attribute id, or 0 */
} chan_src_t;

static const chan_src_t disk_src[] = {
    {"smartctl_device_attribute", FEAT_RD_5, 5},
    {"smartctl_device_attribute", FEAT_RD_187, 187},
    {"smartctl_device_attribute", FEAT_RD_188, 188},
    {"smartctl_device_attribute", FEAT_RD_197, 197},
    {"smartctl_device_attribute", FEAT_RD_198, 198},
    {"smartctl_device_attribute", FEAT_RD_199, 199},
    {"smartctl_device_media_errors", FEAT_RD_MEDIA, 0},
    {"smartctl_device_available_spare", FEAT_RD_SPARE, 0},
    {"smartctl_device_temperature", FEAT_RD_TEMP, 0},
};

static const char *const gpu_src[FEAT_RG_N] = {
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_GPU_UTIL",
};

/* Label getter over a store's label set. */
typedef struct {
    const tsdb_label_t *l;
    size_t n;
    char buf[256];
} lctx_t;

static const char *tsdb_label_fn(void *ctx, const char *name)
{
    lctx_t *c = ctx;
    return label_get(c->l, c->n, name, c->buf, sizeof c->buf);
}

int feat_series_channel(feat_kind_t kind, const char *(*label)(void *ctx, const char *name),
                        void *ctx)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s", label(ctx, "__name__"));
    if (kind == FEAT_KIND_GPU) {
        for (int k = 0; k < FEAT_RG_N; k++)
            if (!strcmp(nm, gpu_src[k])) return k;
        return -1;
    }
    for (size_t k = 0; k < sizeof disk_src / sizeof disk_src[0]; k++) {
        if (strcmp(nm, disk_src[k].metric)) continue;
        if (disk_src[k].attr) {
            /* attribute_id / attribute_value_type, or the older id / value_type */
            const char *id = label(ctx, "attribute_id");
            if (!id[0]) id = label(ctx, "id");
            if (atoi(id) != disk_src[k].attr) continue;
            const char *vt = label(ctx, "attribute_value_type");
            if (!vt[0]) vt = label(ctx, "value_type");
            if (strcmp(vt, "raw")) return -1;
            return disk_src[k].channel;
        }
        if (disk_src[k].channel == FEAT_RD_TEMP) {
            const char *tt = label(ctx, "temperature_type");
            if (tt[0] && strcmp(tt, "current")) return -1;
        }
        return disk_src[k].channel;
    }
    return -1;
}

/* Read one series' samples into raw[i][w][ch] (last sample per step). */
static int read_series(tsdb_reader_t *r, tsdb_sid_t sid, const feat_config_t *cfg, int64_t t,
                       int64_t first_ms, double *raw_dev, uint32_t C, uint32_t ch)
{
    uint32_t W = cfg->window;
    int64_t t0 = t - (int64_t)(W - 1) * cfg->step_ms;
    int64_t mint = t0 - cfg->step_ms + 1;
    if (first_ms != INT64_MIN && first_ms > mint) mint = first_ms;
    if (mint > t) return 0;
    tsdb_iter_t *it = NULL;
    int rc = tsdb_iter_open(r, sid, mint, t, &it);
    if (rc == TSDB_ENOTFOUND) return 0;
    if (rc) return rc;
    const tsdb_sample_t *s;
    size_t n;
    while ((rc = tsdb_iter_next(it, &s, &n)) == 1 || rc == TSDB_ECORRUPT) {
        if (rc != 1) continue;
        for (size_t k = 0; k < n; k++) {
            if (s[k].v != s[k].v) continue; /* staleness markers and NaN: no sample */
            /* step w covers (t_w - step, t_w] */
            int64_t d = s[k].t - t0;
            int64_t w = d <= 0 ? -((-d) / cfg->step_ms) : (d + cfg->step_ms - 1) / cfg->step_ms;
            if (w < 0 || w >= (int64_t)W) continue;
            raw_dev[(size_t)w * C + ch] = s[k].v;
        }
    }
    tsdb_iter_close(it);
    return rc < 0 ? rc : 0;
}

int feat_read_store(tsdb_reader_t *r, const feat_config_t *cfg, const feat_devices_t *d, int64_t t,
                    double *raw)
{
    if (!r || !cfg || !d || !cfg->window || cfg->step_ms <= 0 || (d->n && !raw)) return FEAT_EINVAL;
    if (cfg->window > MAXW) return FEAT_EINVAL;
    int disk = cfg->kind == FEAT_KIND_DISK;
    uint32_t W = cfg->window, C = feat_raw_count(cfg->kind);
    size_t total = (size_t)d->n * W * C;
    for (size_t i = 0; i < total; i++)
        raw[i] = NAN;
    if (!d->n) return 0;
    key_t_ *keys = malloc(d->n * sizeof *keys);
    if (!keys) return FEAT_ENOMEM;
    for (uint32_t i = 0; i < d->n; i++) {
        keys[i].a = disk ? d->v[i].instance : d->v[i].id;
        keys[i].b = disk ? d->v[i].device : "";
        keys[i].i = i;
    }
    qsort(keys, d->n, sizeof *keys, key_cmp);
    int64_t mint = t - (int64_t)W * cfg->step_ms + 1;
    int ret = 0;
    size_t nsrc = disk ? sizeof disk_src / sizeof disk_src[0] : FEAT_RG_N;
    const char *prev_metric = NULL;
    tsdb_sids_t sids = {0};
    for (size_t k = 0; k < nsrc && !ret; k++) {
        const char *metric = disk ? disk_src[k].metric : gpu_src[k];
        if (!prev_metric || strcmp(prev_metric, metric)) {
            tsdb_sids_free(&sids);
            memset(&sids, 0, sizeof sids);
            int rc = select_name(r, metric, mint, t, &sids);
            if (rc) {
                ret = store_err(rc);
                break;
            }
            prev_metric = metric;
        }
        for (size_t j = 0; j < sids.n && !ret; j++) {
            const tsdb_label_t *l;
            size_t nl;
            int rc = tsdb_series_labels(r, sids.ids[j], &l, &nl);
            if (rc == TSDB_ENOTFOUND) continue;
            if (rc) {
                ret = store_err(rc);
                break;
            }
            char a[256], b[256];
            key_t_ q = {a, b, 0};
            if (disk) {
                label_get(l, nl, "instance", a, sizeof a);
                label_get(l, nl, "device", b, sizeof b);
                lctx_t lc = {l, nl, {0}};
                if (feat_series_channel(FEAT_KIND_DISK, tsdb_label_fn, &lc) != disk_src[k].channel)
                    continue;
            } else {
                label_get(l, nl, "UUID", a, sizeof a);
                b[0] = 0;
            }
            key_t_ *hit = bsearch(&q, keys, d->n, sizeof *keys, key_cmp);
            if (!hit) continue;
            uint32_t i = hit->i;
            uint32_t ch = disk ? (uint32_t)disk_src[k].channel : (uint32_t)k;
            rc = read_series(r, sids.ids[j], cfg, t, d->v[i].first_ms, raw + (size_t)i * W * C, C,
                             ch);
            if (rc) ret = store_err(rc);
        }
    }
    tsdb_sids_free(&sids);
    free(keys);
    if (ret) return ret;
    if (disk)
        for (uint32_t i = 0; i < d->n; i++)
            for (uint32_t w = 0; w < W; w++) {
                double *row = raw + ((size_t)i * W + w) * C;
                int obs = 0;
                for (uint32_t c = 0; c < C; c++)
                    obs |= isnum(row[c]);
                if (obs) row[FEAT_RD_NVME] = d->v[i].nvme ? 1 : 0;
            }
    return 0;
}

/* ---- every identity over a span (training) ------------------------------------------------ */

typedef struct {
    char *instance, *device, *id, *model, *rack, *pod;
    int nvme;
    int64_t first, last;
} hist_t;

static int hist_cmp(const void *a, const void *b)
{
    const hist_t *x = a, *y = b;
    int c = strcmp(x->instance, y->instance);
    if (!c) c = strcmp(x->device, y->device);
    if (!c) c = (x->first > y->first) - (x->first < y->first);
    if (!c) c = strcmp(x->id, y->id);
    return c;
}

static void hist_free(hist_t *h)
{
    free(h->instance);
    free(h->device);
    free(h->id);
    free(h->model);
    free(h->rack);
    free(h->pod);
}

int feat_devices_history(tsdb_reader_t *r, feat_kind_t kind, int64_t mint, int64_t maxt,
                         feat_devices_t **out, int64_t **last_ms)
{
    if (!r || !out || !last_ms || mint > maxt || (kind != FEAT_KIND_DISK && kind != FEAT_KIND_GPU))
        return FEAT_EINVAL;
    *out = NULL;
    *last_ms = NULL;
    int disk = kind == FEAT_KIND_DISK;
    tsdb_sids_t sids = {0};
    int rc = select_name(r, disk ? "smartctl_device" : "DCGM_FI_DEV_GPU_TEMP", mint, maxt, &sids);
    if (rc) return store_err(rc);
    hist_t *h = calloc(sids.n + 1, sizeof *h);
    feat_devices_t *d = NULL;
    int64_t *last = NULL;
    size_t nh = 0;
    int ret = FEAT_ENOMEM;
    if (!h || feat_devices_create(&d)) goto out;
    for (size_t i = 0; i < sids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        rc = tsdb_series_labels(r, sids.ids[i], &l, &nl);
        if (rc == TSDB_ENOTFOUND) continue;
        if (rc) {
            ret = store_err(rc);
            goto out;
        }
        char b[6][256];
        const char *inst = label_get(l, nl, "instance", b[0], 256);
        if (!inst[0]) inst = label_get(l, nl, "Hostname", b[0], 256);
        const char *dev = label_get(l, nl, "device", b[1], 256);
        const char *id = label_get(l, nl, disk ? "serial_number" : "UUID", b[2], 256);
        if (!inst[0] || !dev[0] || (!disk && !id[0])) continue;
        int64_t first = 0, lst = 0;
        rc = series_span(r, sids.ids[i], mint, maxt, &first, &lst);
        if (rc < 0) {
            ret = store_err(rc);
            goto out;
        }
        if (!rc) continue;
        /* the same identity in several series (a label changed): one entry, the union */
        size_t k = 0;
        for (; k < nh; k++)
            if (!strcmp(h[k].instance, inst) && !strcmp(h[k].id, id) &&
                (!disk || !strcmp(h[k].device, dev)))
                break;
        if (k < nh) {
            if (first < h[k].first) h[k].first = first;
            if (lst > h[k].last) h[k].last = lst;
            continue;
        }
        hist_t *o = &h[nh];
        o->instance = strdup(inst);
        o->device = strdup(dev);
        o->id = strdup(id);
        o->model = strdup(label_get(l, nl, disk ? "model_name" : "modelName", b[3], 256));
        o->rack = strdup(label_get(l, nl, "rack", b[4], 256));
        o->pod = strdup(label_get(l, nl, "pod", b[5], 256));
        nh++;
        if (!o->instance || !o->device || !o->id || !o->model || !o->rack || !o->pod) goto out;
        if (disk) {
            char p[32];
            o->nvme = !strcmp(label_get(l, nl, "protocol", p, sizeof p), "NVMe") ||
                      !strcmp(label_get(l, nl, "interface", p, sizeof p), "nvme");
        }
        o->first = first;
        o->last = lst;
    }
    if (nh) qsort(h, nh, sizeof *h, hist_cmp);
    last = malloc((nh ? nh : 1) * sizeof *last);
    if (!last) goto out;
    for (size_t i = 0; i < nh; i++) {
        feat_device_t fd = {h[i].instance, h[i].device, h[i].id,    h[i].model,
                            h[i].rack,     h[i].pod,    h[i].first, h[i].nvme};
        if ((ret = feat_devices_add(d, &fd))) goto out;
        last[i] = h[i].last;
    }
    ret = 0;
out:
    tsdb_sids_free(&sids);
    for (size_t i = 0; i < nh; i++)
        hist_free(&h[i]);
    free(h);
    if (ret) {
        feat_devices_destroy(d);
        free(last);
    } else {
        *out = d;
        *last_ms = last;
    }
    return ret;
}

const char *feat_kind_name(feat_kind_t kind)
{
    return kind == FEAT_KIND_GPU ? "gpu" : "disk";
}
