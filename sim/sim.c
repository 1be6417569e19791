/*
 * sim.c — the fleet simulator: fleet construction, series table, and the
 * per-step physics (workload, temperatures, counters, hazards, precursors,
 * stressors). The models and their sources are in docs/simulator.md.
 *
 * Two clocks: sample timestamps (t, ms) drive rate counters and the diurnal
 * cycle; the physics clock (dt_h = dt * time_scale, hours) drives ageing,
 * hazards, precursor growth and stressor durations.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_int.h"

const char *sim_strerror(int err)
{
    switch (err) {
#define SIM_ERR_STR_(name, code, msg)                                                              \
    case code:                                                                                     \
        return msg;
        SIM_ERRNO_MAP(SIM_ERR_STR_)
#undef SIM_ERR_STR_
    }
    return "unknown error";
}

const int sim_attr_id[SIM_NATTR] = {5, 9, 12, 187, 188, 194, 197, 198, 199};
const char *const sim_attr_name[SIM_NATTR] = {
    "Reallocated_Sector_Ct",  "Power_On_Hours",        "Power_Cycle_Count",
    "Reported_Uncorrect",     "Command_Timeout",       "Temperature_Celsius",
    "Current_Pending_Sector", "Offline_Uncorrectable", "UDMA_CRC_Error_Count",
};

const char *const sim_dcgm_name[SG_N] = {
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
};

/* HDD models (one per node, by weight), then the NVMe model. afr_mult is
 * relative to cfg.disk_afr; the HDD weights make the fleet average 1. */
const sim_disk_model_t sim_disk_models[] = {
    {"ST12000NM0008", 12000138625024ULL, 1.0, "SN02", 0, 0.4},
    {"HGST HUH721212ALN604", 12000138625024ULL, 0.5, "LEGNW3D0", 0, 0.3},
    {"TOSHIBA MG07ACA14TA", 14000519643136ULL, 1.5, "0101", 0, 0.3},
    {"SAMSUNG MZQL23T8HCLS-00A07", 3840755982336ULL, 0.5, "GDC5602Q", 1, 0},
};
#define NHDD_MODELS 3
#define NVME_MODEL 3

const sim_gpu_model_t sim_gpu_models[] = {
    {"NVIDIA A100-SXM4-80GB", 1.0, 400, 60, 1410, 81920, 0, 0.5},
    {"NVIDIA H100 80GB HBM3", 0.8, 700, 75, 1980, 81559, 0, 0.35},
    {"Tesla V100-SXM2-32GB", 1.6, 300, 45, 1530, 32768, 1, 0.15},
};
#define NGPU_MODELS 3

void sim_config_init(sim_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->nodes = 10;
    c->disks_per_node = 8;
    c->nvme_per_node = 1;
    c->gpus_per_node = 8;
    c->nodes_per_rack = 16;
    c->racks_per_pod = 8;
    c->rack_labels = 1;
    c->start_ms = 1704067200000LL; /* 2024-01-01T00:00:00Z */
    c->interval_ms = 3600000;
    c->time_scale = 1;
    c->hazard_scale = 1;
    c->disk_afr = 0.015;
    c->disk_bathtub = 1;
    c->disk_age_max_years = 4;
    c->disk_precursor_frac = 0.6;
    c->disk_lead_min_days = 3;
    c->disk_lead_max_days = 21;
    c->disk_background_frac = 0.03;
    c->gpu_afr = 0.02;
    c->gpu_precursor_frac = 0.55;
    c->gpu_lead_min_days = 1;
    c->gpu_lead_max_days = 10;
    c->node_stressor_rate = 0.2;
    c->rack_stressor_rate = 0.1;
    c->stressor_min_days = 0.5;
    c->stressor_max_days = 4;
    c->stressor_hazard_mult = 50;
    c->stressor_tail_days = 4;
    c->stressor_visible_frac = 0.25;
    c->disk_cofail_mult = 3;
    c->disk_cofail_days = 7;
    c->replace_days = 1;
}

/* ---- small math ----------------------------------------------------------- */

/* Approximately standard normal: Irwin-Hall with four 16-bit uniforms from
 * one draw (tails cut at +-3.46; cheap and deterministic). */
static inline double gauss(trng_t *r)
{
    uint64_t x = trng_next(r);
    double s = (double)(x & 0xffff) + (double)((x >> 16) & 0xffff) + (double)((x >> 32) & 0xffff) +
               (double)(x >> 48);
    return (s / 65535.0 - 2.0) * 1.7320508075688772;
}

static inline double unif(trng_t *r, double a, double b)
{
    return a + (b - a) * trng_unit(r);
}

static inline double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Poisson draw (inversion for small means, normal approximation above 30). */
static double poisson(trng_t *r, double mean)
{
    if (mean <= 0) return 0;
    if (mean > 30) {
        double k = floor(mean + sqrt(mean) * gauss(r) + 0.5);
        return k < 0 ? 0 : k;
    }
    double u = trng_unit(r), p = exp(-mean), cdf = p;
    double k = 0;
    while (u > cdf && k < 200) {
        k += 1;
        p *= mean / k;
        cdf += p;
    }
    return k;
}

/* Precursor growth curve on [0,1]: slow start, steep end. */
static inline double growth(double f)
{
    f = clampd(f, 0, 1);
    return (exp(3.0 * f) - 1.0) / (exp(3.0) - 1.0);
}

static void rng_for(trng_t *r, uint64_t seed, uint64_t kind, uint64_t id)
{
    uint64_t x = seed ^ (0xa0761d6478bd642fULL * (id + 1)) ^ (kind << 56);
    trng_seed(r, trng_splitmix(&x));
}

/* ---- arena and series table -------------------------------------------------- */

static void *arena_alloc(sim_t *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    sim_arena_blk_t *b = s->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        b = malloc(sizeof(sim_arena_blk_t) + 16 + cap);
        if (!b) return NULL;
        b->next = s->arena;
        b->used = 0;
        b->cap = cap;
        s->arena = b;
    }
    uint8_t *base = (uint8_t *)(b + 1);
    base += (16 - ((uintptr_t)base & 15)) & 15;
    void *p = base + b->used;
    b->used += n;
    return p;
}

static const char *arena_str(sim_t *s, const char *str)
{
    size_t n = strlen(str);
    char *p = arena_alloc(s, n + 1);
    if (!p) return NULL;
    memcpy(p, str, n + 1);
    return p;
}

static int label_cmp(const void *a, const void *b)
{
    const tsdb_label_t *x = a, *y = b;
    uint32_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
    int c = memcmp(x->name.ptr, y->name.ptr, n);
    if (c) return c;
    return (x->name.len > y->name.len) - (x->name.len < y->name.len);
}

typedef struct {
    tsdb_label_t l[16];
    uint32_t n;
} lset_t;

static void lset_add(lset_t *ls, const char *name, const char *value)
{
    if (!value || !*value || ls->n >= 16) return;
    ls->l[ls->n].name.ptr = name;
    ls->l[ls->n].name.len = (uint32_t)strlen(name);
    ls->l[ls->n].value.ptr = value;
    ls->l[ls->n].value.len = (uint32_t)strlen(value);
    ls->n++;
}

/* Append a series with the labels of ls (sorted into the arena). Returns its
 * index or -1 (ENOMEM/ELIMIT). */
static int64_t series_add(sim_t *s, lset_t *ls, uint8_t src, uint32_t node, uint32_t dev)
{
    if (s->nseries == s->cap) {
        if (s->cap >= UINT32_MAX / 2) return -1;
        uint32_t nc = s->cap ? s->cap * 2 : 4096;
        sim_series_t *ns = realloc(s->series, (size_t)nc * sizeof *ns);
        if (!ns) return -1;
        s->series = ns;
        double *nv = realloc(s->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        s->v = nv;
        s->cap = nc;
    }
    tsdb_label_t *l = arena_alloc(s, ls->n * sizeof *l);
    if (!l) return -1;
    memcpy(l, ls->l, ls->n * sizeof *l);
    qsort(l, ls->n, sizeof *l, label_cmp);
    sim_series_t *se = &s->series[s->nseries];
    se->labels = l;
    se->nlabels = ls->n;
    se->source = src;
    se->node = node;
    se->dev = dev;
    s->v[s->nseries] = NAN;
    return s->nseries++;
}

static void lset_node(const sim_t *s, const sim_node_t *n, lset_t *ls, const char *metric,
                      const char *job)
{
    ls->n = 0;
    lset_add(ls, "__name__", metric);
    lset_add(ls, "instance", n->name);
    lset_add(ls, "job", job);
    if (s->cfg.rack_labels) {
        lset_add(ls, "rack", n->rack);
        lset_add(ls, "pod", n->pod);
    }
}

static const char *cpu_modes[4] = {"idle", "iowait", "system", "user"};

static int node_series_build(sim_t *s, uint32_t ni)
{
    sim_node_t *n = &s->nodes[ni];
    lset_t ls;
    int64_t first = -1, r;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        __VA_ARGS__;                                                                               \
        r = series_add(s, &ls, SIM_SRC_NODE, ni, 0);                                               \
        if (r < 0) return SIM_ENOMEM;                                                              \
        if (first < 0) first = r;                                                                  \
    } while (0)
    ADD(lset_node(s, n, &ls, "node_load1", "node"));
    for (int m = 0; m < 4; m++)
        ADD(lset_node(s, n, &ls, "node_cpu_seconds_total", "node"); lset_add(&ls, "cpu", "0");
            lset_add(&ls, "mode", cpu_modes[m]));
    ADD(lset_node(s, n, &ls, "node_memory_MemAvailable_bytes", "node"));
    ADD(lset_node(s, n, &ls, "node_memory_MemTotal_bytes", "node"));
    ADD(lset_node(s, n, &ls, "node_hwmon_temp_celsius", "node");
        lset_add(&ls, "chip", "platform_coretemp_0"); lset_add(&ls, "sensor", "temp1"));
    ADD(lset_node(s, n, &ls, "node_hwmon_temp_celsius", "node"); lset_add(&ls, "chip", "acpitz");
        lset_add(&ls, "sensor", "temp1"));
    for (uint32_t d = 0; d < s->cfg.disks_per_node; d++)
        ADD(lset_node(s, n, &ls, "node_disk_io_time_seconds_total", "node");
            lset_add(&ls, "device", s->dev_names[d]));
#undef ADD
    n->base = (uint32_t)first;
    return 0;
}

static const char hexd[] = "0123456789abcdef";

static int disk_series_build(sim_t *s, sim_disk_t *d)
{
    sim_node_t *n = &s->nodes[d->node];
    trng_t *r = &n->rng;
    char buf[64];
    const sim_disk_model_t *m = &sim_disk_models[d->model];
    /* Serial: vendor-looking prefix + 8 base-36 characters. */
    static const char b36[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const char *pre = d->nvme ? "S64H" : d->model == 0 ? "ZJV" : d->model == 1 ? "8CK" : "Y9K";
    size_t p = (size_t)snprintf(buf, sizeof buf, "%s", pre);
    for (int i = 0; i < 8; i++)
        buf[p++] = b36[trng_below(r, 36)];
    buf[p] = 0;
    d->serial = arena_str(s, buf);
    if (!d->serial) return SIM_ENOMEM;
    const char *dev = s->dev_names[d->slot];
    lset_t ls;
    int64_t first = -1, rr;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        __VA_ARGS__;                                                                               \
        lset_add(&ls, "device", dev);                                                              \
        rr = series_add(s, &ls, SIM_SRC_DISK, d->node, d->slot);                                   \
        if (rr < 0) return SIM_ENOMEM;                                                             \
        if (first < 0) first = rr;                                                                 \
    } while (0)
    ADD(lset_node(s, n, &ls, "smartctl_device", "smartctl");
        lset_add(&ls, "interface", d->nvme ? "nvme" : "sat");
        lset_add(&ls, "protocol", d->nvme ? "NVMe" : "ATA"); lset_add(&ls, "model_name", m->name);
        lset_add(&ls, "serial_number", d->serial); lset_add(&ls, "firmware_version", m->firmware));
    ADD(lset_node(s, n, &ls, "smartctl_device_temperature", "smartctl");
        lset_add(&ls, "temperature_type", "current"));
    ADD(lset_node(s, n, &ls, "smartctl_device_power_on_seconds", "smartctl"));
    ADD(lset_node(s, n, &ls, "smartctl_device_smart_status", "smartctl"));
    if (!d->nvme) {
        for (int a = 0; a < SIM_NATTR; a++) {
            char id[8];
            snprintf(id, sizeof id, "%d", sim_attr_id[a]);
            const char *ids = arena_str(s, id);
            if (!ids) return SIM_ENOMEM;
            for (int vt = 0; vt < 2; vt++)
                ADD(lset_node(s, n, &ls, "smartctl_device_attribute", "smartctl");
                    lset_add(&ls, "attribute_id", ids);
                    lset_add(&ls, "attribute_name", sim_attr_name[a]);
                    lset_add(&ls, "attribute_value_type", vt ? "value" : "raw"));
        }
    } else {
        ADD(lset_node(s, n, &ls, "smartctl_device_media_errors", "smartctl"));
        ADD(lset_node(s, n, &ls, "smartctl_device_percentage_used", "smartctl"));
        ADD(lset_node(s, n, &ls, "smartctl_device_available_spare", "smartctl"));
        ADD(lset_node(s, n, &ls, "smartctl_device_critical_warning", "smartctl"));
        ADD(lset_node(s, n, &ls, "smartctl_device_num_err_log_entries", "smartctl"));
    }
#undef ADD
    d->base = (uint32_t)first;
    d->blanked = 0;
    return 0;
}

static int gpu_series_build(sim_t *s, sim_gpu_t *g)
{
    sim_node_t *n = &s->nodes[g->node];
    trng_t *r = &n->rng;
    char buf[48];
    static const int grp[5] = {8, 4, 4, 4, 12};
    size_t p = (size_t)snprintf(buf, sizeof buf, "GPU-");
    for (int k = 0; k < 5; k++) {
        if (k) buf[p++] = '-';
        for (int i = 0; i < grp[k]; i++)
            buf[p++] = hexd[trng_below(r, 16)];
    }
    buf[p] = 0;
    g->uuid = arena_str(s, buf);
    if (!g->uuid) return SIM_ENOMEM;
    lset_t ls;
    int64_t first = -1;
    for (int f = 0; f < SG_N; f++) {
        lset_node(s, n, &ls, sim_dcgm_name[f], "dcgm");
        lset_add(&ls, "gpu", s->gpu_idx[g->slot]);
        lset_add(&ls, "UUID", g->uuid);
        lset_add(&ls, "device", s->gpu_names[g->slot]);
        lset_add(&ls, "modelName", sim_gpu_models[n->gpu_model].name);
        lset_add(&ls, "Hostname", n->name);
        int64_t rr = series_add(s, &ls, SIM_SRC_GPU, g->node, g->slot);
        if (rr < 0) return SIM_ENOMEM;
        if (first < 0) first = rr;
    }
    g->base = (uint32_t)first;
    g->blanked = 0;
    return 0;
}

/* ---- device (re)installation -------------------------------------------------- */

static int disk_install(sim_t *s, sim_disk_t *d, int initial)
{
    sim_node_t *n = &s->nodes[d->node];
    trng_t *r = &n->rng;
    d->model = d->nvme ? NVME_MODEL : n->hdd_model;
    d->state = DEV_HEALTHY;
    d->age_h = initial ? unif(r, 0, s->cfg.disk_age_max_years) * 8766.0 : 0;
    d->cycles = floor(d->age_h / 720.0) + (double)trng_below(r, 5);
    d->temp_off = 3.0 * gauss(r);
    d->wl_mult = unif(r, 0.7, 1.3);
    memset(d->raw, 0, sizeof d->raw);
    memset(d->amp, 0, sizeof d->amp);
    d->prec_mask = 0;
    d->background = trng_unit(r) < s->cfg.disk_background_frac;
    if (d->background) d->raw[A5] = (double)(1 + trng_below(r, 24));
    if (trng_unit(r) < 0.05) d->raw[A199] = (double)(1 + trng_below(r, 8)); /* old cable trouble */
    d->media = 0;
    d->used = d->nvme ? floor(d->age_h / 8766.0 * 4.0) : 0;
    d->spare = 100;
    d->errlog = d->nvme ? (double)trng_below(r, 3) : 0;
    d->trig_stress = 0;
    d->gen++;
    return disk_series_build(s, d);
}

static int gpu_install(sim_t *s, sim_gpu_t *g)
{
    sim_node_t *n = &s->nodes[g->node];
    trng_t *r = &n->rng;
    g->state = DEV_HEALTHY;
    g->temp_off = 2.5 * gauss(r);
    g->sbe = trng_unit(r) < 0.1 ? (double)(1 + trng_below(r, 20)) : 0;
    g->dbe = g->ret_sbe = g->ret_dbe = g->ret_pend = g->remap_fail = g->unc_remap = 0;
    g->pcie = (double)trng_below(r, 3);
    g->nvlink = 0;
    g->thermal_us = 0;
    g->xid = 0;
    g->ptype = GP_NONE;
    g->dbe_done = g->remap_fail_done = 0;
    g->trig_stress = 0;
    g->gen++;
    return gpu_series_build(s, g);
}

/* ---- create / destroy -------------------------------------------------------- */

static int config_check(const sim_config_t *c)
{
    if (!c->nodes || c->interval_ms <= 0) return SIM_EINVAL;
    if (c->disks_per_node > 26 || c->gpus_per_node > 64) return SIM_EINVAL;
    if (c->nvme_per_node > c->disks_per_node || c->nvme_per_node > 8) return SIM_EINVAL;
    const double fr[] = {c->disk_precursor_frac, c->disk_background_frac, c->gpu_precursor_frac,
                         c->stressor_visible_frac};
    for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++)
        if (!(fr[i] >= 0 && fr[i] <= 1)) return SIM_EINVAL;
    const double pos[] = {c->time_scale,
                          c->hazard_scale + 1,
                          c->disk_afr + 1,
                          c->gpu_afr + 1,
                          c->node_stressor_rate + 1,
                          c->rack_stressor_rate + 1,
                          c->stressor_hazard_mult,
                          c->disk_age_max_years + 1,
                          c->replace_days + 1,
                          c->stressor_tail_days + 1,
                          c->disk_cofail_mult,
                          c->disk_cofail_days + 1};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (!(pos[i] > 0) || !isfinite(pos[i])) return SIM_EINVAL;
    if (c->hazard_scale < 0 || c->disk_afr < 0 || c->gpu_afr < 0) return SIM_EINVAL;
    if (!(c->disk_lead_min_days > 0 && c->disk_lead_max_days >= c->disk_lead_min_days))
        return SIM_EINVAL;
    if (!(c->gpu_lead_min_days > 0 && c->gpu_lead_max_days >= c->gpu_lead_min_days))
        return SIM_EINVAL;
    if (!(c->stressor_min_days > 0 && c->stressor_max_days >= c->stressor_min_days))
        return SIM_EINVAL;
    if ((uint64_t)c->nodes * (c->disks_per_node * 23u + c->gpus_per_node * 17u + 40u) >
        UINT32_MAX / 4)
        return SIM_ELIMIT;
    return 0;
}

static uint8_t pick_weighted(trng_t *r, const double *w, size_t n)
{
    double u = trng_unit(r), acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += w[i];
        if (u < acc) return (uint8_t)i;
    }
    return (uint8_t)(n - 1);
}

int sim_create(const sim_config_t *cfg, sim_t **out)
{
    if (!cfg || !out) return SIM_EINVAL;
    *out = NULL;
    int rc = config_check(cfg);
    if (rc) return rc;
    sim_t *s = calloc(1, sizeof *s);
    if (!s) return SIM_ENOMEM;
    s->cfg = *cfg;
    const sim_config_t *c = &s->cfg;
    s->t = c->start_ms - c->interval_ms;
    uint32_t N = c->nodes, D = c->disks_per_node, G = c->gpus_per_node;
    s->nracks = c->nodes_per_rack ? (N + c->nodes_per_rack - 1) / c->nodes_per_rack : 0;
    s->nodes = calloc(N, sizeof *s->nodes);
    s->racks = calloc(s->nracks ? s->nracks : 1, sizeof *s->racks);
    s->disks = calloc((size_t)N * D + 1, sizeof *s->disks);
    s->gpus = calloc((size_t)N * G + 1, sizeof *s->gpus);
    if (!s->nodes || !s->racks || !s->disks || !s->gpus) goto nomem;
    char buf[32];
    for (uint32_t d = 0; d < D; d++) {
        if (d < c->nvme_per_node)
            snprintf(buf, sizeof buf, "nvme%u", d);
        else
            snprintf(buf, sizeof buf, "sd%c", (char)('a' + (d - c->nvme_per_node)));
        if (!(s->dev_names[d] = arena_str(s, buf))) goto nomem;
    }
    for (uint32_t g = 0; g < G; g++) {
        snprintf(buf, sizeof buf, "nvidia%u", g);
        if (!(s->gpu_names[g] = arena_str(s, buf))) goto nomem;
        snprintf(buf, sizeof buf, "%u", g);
        if (!(s->gpu_idx[g] = arena_str(s, buf))) goto nomem;
    }
    for (uint32_t k = 0; k < s->nracks; k++)
        rng_for(&s->racks[k].rng, c->seed, 2, k);
    double hddw[NHDD_MODELS], gpuw[NGPU_MODELS];
    for (int i = 0; i < NHDD_MODELS; i++)
        hddw[i] = sim_disk_models[i].weight;
    for (int i = 0; i < NGPU_MODELS; i++)
        gpuw[i] = sim_gpu_models[i].weight;
    for (uint32_t i = 0; i < N; i++) {
        sim_node_t *n = &s->nodes[i];
        rng_for(&n->rng, c->seed, 1, i);
        snprintf(buf, sizeof buf, "node-%04u", i);
        if (!(n->name = arena_str(s, buf))) goto nomem;
        n->rack = n->pod = "";
        if (c->nodes_per_rack) {
            n->rack_idx = i / c->nodes_per_rack;
            if (i % c->nodes_per_rack == 0) {
                snprintf(buf, sizeof buf, "rack-%03u", n->rack_idx);
                if (!(n->rack = arena_str(s, buf))) goto nomem;
            } else {
                n->rack = s->nodes[i - 1].rack;
            }
            if (c->racks_per_pod) {
                uint32_t pod = n->rack_idx / c->racks_per_pod;
                if (i % (c->nodes_per_rack * c->racks_per_pod) == 0) {
                    snprintf(buf, sizeof buf, "pod-%02u", pod);
                    if (!(n->pod = arena_str(s, buf))) goto nomem;
                } else {
                    n->pod = s->nodes[i - 1].pod;
                }
            }
        }
        trng_t *r = &n->rng;
        n->hdd_model = pick_weighted(r, hddw, NHDD_MODELS);
        n->gpu_model = pick_weighted(r, gpuw, NGPU_MODELS);
        n->base_load = unif(r, 0.2, 0.7);
        n->inlet_off = 1.5 * gauss(r);
        n->mem_total = (double)(256ULL << 30) * (double)(1 + trng_below(r, 4));
        for (int m = 0; m < 4; m++)
            n->cpu[m] = unif(r, 1e5, 1e6);
        n->busy = trng_unit(r) < 0.7;
        n->job_left_h = unif(r, 0, 8);
        if (node_series_build(s, i)) goto nomem;
        for (uint32_t d = 0; d < D; d++) {
            sim_disk_t *dk = &s->disks[(size_t)i * D + d];
            dk->node = i;
            dk->slot = d;
            dk->nvme = d < c->nvme_per_node;
            dk->io_time = unif(r, 1e4, 1e6);
            if (disk_install(s, dk, 1)) goto nomem;
        }
        for (uint32_t g = 0; g < G; g++) {
            sim_gpu_t *gp = &s->gpus[(size_t)i * G + g];
            gp->node = i;
            gp->slot = g;
            if (gpu_install(s, gp)) goto nomem;
        }
        /* The bays where stressors show (nearest the failed fan, on the
         * marginal power rail, on the resonant part of the chassis). */
        n->stress_bays = 0;
        for (uint32_t d = 0; d < D; d++)
            if (trng_unit(r) < c->stressor_visible_frac) n->stress_bays |= 1u << d;
        if (!n->stress_bays && D && c->stressor_visible_frac > 0) {
            uint32_t ata = D - c->nvme_per_node;
            n->stress_bays = 1u << (ata ? c->nvme_per_node + (uint32_t)trng_below(r, ata)
                                        : (uint32_t)trng_below(r, D));
        }
        /* The GPU slots where stressors show (downstream of the failed fan,
         * on the marginal power stage), drawn the same way: at least one.
         * No draw without GPUs, so a disk-only fleet is unchanged. */
        n->stress_gpus = 0;
        for (uint32_t g = 0; g < G; g++)
            if (trng_unit(r) < c->stressor_visible_frac) n->stress_gpus |= 1ull << g;
        if (!n->stress_gpus && G && c->stressor_visible_frac > 0)
            n->stress_gpus = 1ull << trng_below(r, G);
    }
    *out = s;
    return 0;
nomem:
    sim_destroy(s);
    return SIM_ENOMEM;
}

void sim_destroy(sim_t *s)
{
    if (!s) return;
    sim_arena_blk_t *b = s->arena;
    while (b) {
        sim_arena_blk_t *nx = b->next;
        free(b);
        b = nx;
    }
    free(s->series);
    free(s->v);
    free(s->nodes);
    free(s->racks);
    free(s->disks);
    free(s->gpus);
    free(s->ev);
    free(s);
}

const sim_config_t *sim_config(const sim_t *s)
{
    return &s->cfg;
}

uint32_t sim_series_count(const sim_t *s)
{
    return s->nseries;
}

const sim_series_t *sim_series_get(const sim_t *s, uint32_t i)
{
    return i < s->nseries ? &s->series[i] : NULL;
}

void sim_stats(const sim_t *s, sim_stats_t *st)
{
    *st = s->st;
}

uint32_t sim_disk_count(const sim_t *s)
{
    return s->cfg.nodes * s->cfg.disks_per_node;
}

uint32_t sim_gpu_count(const sim_t *s)
{
    return s->cfg.nodes * s->cfg.gpus_per_node;
}

void sim_disk_info(const sim_t *s, uint32_t i, sim_device_info_t *o)
{
    const sim_disk_t *d = &s->disks[i];
    const sim_node_t *n = &s->nodes[d->node];
    o->present = d->state != DEV_FAILED;
    o->instance = n->name;
    o->device = s->dev_names[d->slot];
    o->serial = d->serial;
    o->model = sim_disk_models[d->model].name;
    o->rack = n->rack;
    o->pod = n->pod;
    o->node = d->node;
    o->slot = d->slot;
    o->nvme = d->nvme;
    o->stress_visible = (int)((n->stress_bays >> d->slot) & 1u);
    o->capacity_bytes = sim_disk_models[d->model].capacity;
    o->series_base = d->base;
    o->nseries = d->nvme ? SD_NVME_N : SD_ATA_N;
}

void sim_gpu_info(const sim_t *s, uint32_t i, sim_device_info_t *o)
{
    const sim_gpu_t *g = &s->gpus[i];
    const sim_node_t *n = &s->nodes[g->node];
    o->present = g->state != DEV_FAILED;
    o->instance = n->name;
    o->device = s->gpu_names[g->slot];
    o->serial = g->uuid;
    o->model = sim_gpu_models[n->gpu_model].name;
    o->rack = n->rack;
    o->pod = n->pod;
    o->node = g->node;
    o->slot = g->slot;
    o->nvme = 0;
    o->stress_visible = (int)((n->stress_gpus >> g->slot) & 1u);
    o->capacity_bytes = 0;
    o->series_base = g->base;
    o->nseries = SG_N;
}

/* ---- events ----------------------------------------------------------------------- */

static int event_push(sim_t *s, sim_event_t *e)
{
    if (s->nev == s->evcap) {
        uint32_t nc = s->evcap ? s->evcap * 2 : 64;
        sim_event_t *ne = realloc(s->ev, nc * sizeof *ne);
        if (!ne) return SIM_ENOMEM;
        s->ev = ne;
        s->evcap = nc;
    }
    s->ev[s->nev++] = *e;
    return 0;
}

/* ---- per-step physics ------------------------------------------------------------- */

typedef struct {
    int64_t t;
    double dt_s; /* wall seconds since the previous step */
    double dt_h; /* physics hours */
    double diurnal;
} step_ctx_t;

static void stressor_update(trng_t *r, uint8_t *kind, double *left, double rate,
                            const step_ctx_t *x, const sim_config_t *c, uint64_t *count)
{
    if (*kind) {
        *left -= x->dt_h;
        if (*left <= 0) *kind = SIM_STRESS_NONE;
        return;
    }
    double p = rate / 8766.0 * x->dt_h;
    if (p > 0 && trng_unit(r) < p) {
        *kind = (uint8_t)(1 + trng_below(r, 3));
        *left = unif(r, c->stressor_min_days, c->stressor_max_days) * 24.0;
        (*count)++;
    }
}

static void node_step(sim_t *s, sim_node_t *n, uint8_t stress, const step_ctx_t *x)
{
    trng_t *r = &n->rng;
    double *v = s->v + n->base;
    n->ar = 0.9 * n->ar + 0.05 * gauss(r);
    double u = clampd(n->base_load + 0.15 * x->diurnal + n->ar, 0.02, 0.98);
    n->util = u;
    double ncpu = 64;
    v[SN_LOAD1] = floor(u * ncpu * (1.0 + 0.08 * gauss(r)) * 100.0 + 0.5) / 100.0;
    double us = u * 0.8, sy = u * 0.15, io = 0.01 + (stress == SIM_STRESS_VIBRATION ? 0.03 : 0);
    double id = 1.0 - us - sy - io;
    if (id < 0) id = 0;
    n->cpu[0] += x->dt_s * id;
    n->cpu[1] += x->dt_s * io;
    n->cpu[2] += x->dt_s * sy;
    n->cpu[3] += x->dt_s * us;
    for (int m = 0; m < 4; m++)
        v[SN_CPU_IDLE + m] = floor(n->cpu[m] * 100.0) / 100.0;
    double avail = n->mem_total * clampd(0.65 - 0.45 * u + 0.02 * gauss(r), 0.03, 0.95);
    v[SN_MEM_AVAIL] = floor(avail / 4096.0) * 4096.0;
    v[SN_MEM_TOTAL] = n->mem_total;
    n->inlet = 22.0 + 1.5 * x->diurnal + n->inlet_off + (stress == SIM_STRESS_COOLING ? 3.0 : 0) +
               0.3 * gauss(r);
    v[SN_TEMP_INLET] = floor(n->inlet * 10.0 + 0.5) / 10.0;
    v[SN_TEMP_CPU] = floor((n->inlet + 25.0 + 30.0 * u + gauss(r)) + 0.5);
    /* GPU jobs: busy/idle alternation shared by the node's GPUs. */
    n->job_left_h -= x->dt_s / 3600.0;
    if (n->job_left_h <= 0) {
        n->busy = trng_unit(r) < 0.75;
        n->job_left_h = n->busy ? unif(r, 1, 24) : unif(r, 0.25, 4);
    }
}

static double disk_bathtub(double age_y)
{
    return 0.8 + 1.5 * exp(-age_y / 0.15) + 0.25 * age_y * age_y * age_y / 27.0;
}

static int disk_fail(sim_t *s, sim_disk_t *d, const step_ctx_t *x, const char *reason,
                     uint8_t precursor, uint8_t stress)
{
    sim_node_t *n = &s->nodes[d->node];
    sim_event_t e = {
        .t_ms = x->t,
        .trigger_ms = d->trigger_ms,
        .kind = SIM_KIND_DISK,
        .precursor = precursor,
        .stress = stress,
        .node = d->node,
        .dev = d->slot,
        .instance = n->name,
        .device = s->dev_names[d->slot],
        .serial = d->serial,
        .model = sim_disk_models[d->model].name,
        .reason = reason,
        .rack = n->rack,
    };
    d->state = DEV_FAILED;
    d->replace_h = s->cfg.replace_days * 24.0;
    if (s->cfg.disk_cofail_mult > 1) n->cofail_left_h = s->cfg.disk_cofail_days * 24.0;
    s->st.disk_failures++;
    if (precursor) s->st.disk_failures_precursor++;
    return event_push(s, &e);
}

static int disk_step(sim_t *s, sim_disk_t *d, sim_node_t *n, uint8_t stress, const step_ctx_t *x)
{
    const sim_config_t *c = &s->cfg;
    trng_t *r = &n->rng;
    if (d->state == DEV_FAILED) {
        if (!d->blanked) {
            uint32_t k = d->nvme ? SD_NVME_N : SD_ATA_N;
            for (uint32_t i = 0; i < k; i++)
                s->v[d->base + i] = NAN;
            d->blanked = 1;
        }
        d->replace_h -= x->dt_h;
        if (d->replace_h > 0) return 0;
        int rc = disk_install(s, d, 0);
        if (rc) return rc;
    }
    double *v = s->v + d->base;
    d->age_h += x->dt_h;
    double w = clampd(n->util * d->wl_mult + 0.05 * gauss(r), 0, 1);
    d->io_time += x->dt_s * w;
    s->v[n->base + SN_IO_TIME0 + d->slot] = floor(d->io_time * 1000.0) / 1000.0;
    /* A stressor shows in the telemetry of the node's stress bays only. */
    int shows = (int)((n->stress_bays >> d->slot) & 1u);
    /* Cooling: the node's inlet sensor reads +3 C; the bays behind the fault
     * run +6 C over their normal, the other bays keep their airflow. */
    double bay_air = n->inlet - (stress == SIM_STRESS_COOLING ? 3.0 : 0);
    double temp = bay_air + (d->nvme ? 15.0 : 11.0) + 6.0 * w + d->temp_off +
                  (stress == SIM_STRESS_COOLING && shows ? 6.0 : 0) + 0.4 * gauss(r);
    temp = floor(temp + 0.5);
    /* Hazard. */
    const sim_disk_model_t *m = &sim_disk_models[d->model];
    double h = c->disk_afr * m->afr_mult / 8766.0 * c->hazard_scale;
    if (c->disk_bathtub) h *= disk_bathtub(d->age_h / 8766.0);
    h *= 1.0 + 0.05 * (temp > 45 ? temp - 45 : 0);
    h *= 0.8 + 0.4 * w;
    /* Neighbourhood: the stressor's excess (while active, then decaying) and
     * a neighbour's failure add to the hazard of every disk of the node. */
    double xs = 0, xc = 0;
    uint8_t skind = n->last_stress;
    if (c->stressor_tail_days > 0)
        xs = (c->stressor_hazard_mult - 1) * n->dose_d;
    else if (stress)
        xs = c->stressor_hazard_mult - 1;
    if (n->cofail_left_h > 0) xc = c->disk_cofail_mult - 1;
    h *= 1 + xs + xc;
    s->st.disk_hours += x->dt_h;
    if (stress) s->st.disk_stressed_hours += x->dt_h;
    if (d->state == DEV_HEALTHY) {
        s->st.expected_disk_triggers += h * x->dt_h;
        double p = 1.0 - exp(-h * x->dt_h);
        if (trng_unit(r) < p) {
            s->st.disk_triggers++;
            if (stress) s->st.disk_triggers_stressed++;
            d->trigger_ms = x->t;
            /* Cause, in proportion to each term's share of the hazard. */
            uint8_t cause = 0;
            if (xs + xc > 0) {
                double u = trng_unit(r) * (1 + xs + xc);
                cause = u < xs ? skind : u < xs + xc ? (uint8_t)SIM_STRESS_NEIGHBOUR : 0;
            }
            d->trig_stress = cause;
            double pf = c->disk_precursor_frac * (cause ? 0.5 : 1.0);
            if (trng_unit(r) < pf) {
                double lead = unif(r, c->disk_lead_min_days, c->disk_lead_max_days) * 24.0;
                if (cause) lead *= 0.3;
                d->lead_h = d->left_h = lead;
                d->state = DEV_DOOMED;
                /* Which attributes grow (Pinheiro: reallocations, offline
                 * reallocations, pending ("probational") sectors; Backblaze:
                 * 5/187/188/197/198). At least one. */
                static const double pa[SIM_NATTR] = {0.75, 0, 0, 0.45, 0.25, 0, 0.55, 0.45, 0.1};
                d->prec_mask = 0;
                for (int a = 0; a < SIM_NATTR; a++)
                    if (pa[a] > 0 && trng_unit(r) < pa[a]) d->prec_mask |= (uint8_t)(1u << a);
                if (!d->prec_mask) d->prec_mask = 1u << A5;
                for (int a = 0; a < SIM_NATTR; a++)
                    d->amp[a] = exp(unif(r, log(8.0), log(a == A5 ? 3000.0 : 400.0)));
            } else {
                if (!d->nvme) v[SD_STATUS] = 1;
                int rc = disk_fail(s, d, x,
                                   cause == SIM_STRESS_NEIGHBOUR ? "cofail_sudden"
                                   : cause                       ? "stress_sudden"
                                                                 : "sudden",
                                   0, cause);
                if (rc) return rc;
            }
        }
    }
    /* Precursor growth. */
    int failing_now = 0;
    if (d->state == DEV_DOOMED) {
        d->left_h -= x->dt_h;
        double f = 1.0 - d->left_h / d->lead_h;
        double g = growth(f);
        if (!d->nvme) {
            for (int a = 0; a < SIM_NATTR; a++) {
                if (!(d->prec_mask & (1u << a))) continue;
                double target = floor(d->amp[a] * g * (1.0 + 0.1 * gauss(r)));
                if (target > d->raw[a]) d->raw[a] = target;
            }
        } else {
            double target = floor(d->amp[A5] * 0.2 * g);
            if (target > d->media) d->media = target;
            d->errlog = d->errlog > d->media ? d->errlog : d->media;
            if (d->prec_mask & (1u << A197)) d->spare = floor(100.0 - 95.0 * g);
        }
        if (d->left_h <= 0) failing_now = 1;
    }
    /* Stressor side effects on the stress bays' disks, healthy and failing
     * alike. */
    if (!d->nvme) {
        if (stress == SIM_STRESS_POWER && shows) {
            d->raw[A188] += poisson(r, 0.2 * x->dt_h);
            d->raw[A199] += poisson(r, 0.05 * x->dt_h);
        } else if (stress == SIM_STRESS_VIBRATION && shows) {
            d->raw[A197] += poisson(r, 0.1 * x->dt_h);
        }
        /* Pending sectors get resolved (remapped or rewritten) over time
         * on healthy drives. */
        if (d->state == DEV_HEALTHY && d->raw[A197] > 0 && trng_unit(r) < 0.01 * x->dt_h)
            d->raw[A197] -= 1;
    }
    if (trng_unit(r) < x->dt_h / 2000.0) d->cycles += 1;
    /* Emit. */
    v[SD_INFO] = 1;
    v[SD_TEMP] = temp;
    v[SD_POWER_ON] = floor(d->age_h) * 3600.0;
    v[SD_STATUS] = (d->state == DEV_DOOMED && d->left_h < 24.0 && d->amp[A5] > 1000) ? 0 : 1;
    if (!d->nvme) {
        d->raw[A9] = floor(d->age_h);
        d->raw[A12] = d->cycles;
        d->raw[A194] = temp;
        for (int a = 0; a < SIM_NATTR; a++) {
            double raw = d->raw[a], val;
            switch (a) {
            case A9:
                val = floor(clampd(100.0 - raw / 876.6, 1, 100));
                break;
            case A12:
                val = floor(clampd(100.0 - raw / 100.0, 1, 100));
                break;
            case A194:
                val = raw;
                break;
            case A5:
            case A197:
            case A198:
                val = floor(clampd(100.0 - raw / 8.0, 1, 100));
                break;
            case A188:
                val = floor(clampd(100.0 - raw / 10.0, 1, 100));
                break;
            default:
                val = floor(clampd(100.0 - raw, 1, 100));
                break;
            }
            v[SD_ATTR0 + 2 * a] = raw;
            v[SD_ATTR0 + 2 * a + 1] = val;
        }
    } else {
        d->used = floor(d->age_h / 8766.0 * 4.0);
        v[SD_NVME_MEDIA] = d->media;
        v[SD_NVME_USED] = d->used;
        v[SD_NVME_SPARE] = d->spare;
        v[SD_NVME_CRIT] = d->spare < 10 ? 1 : 0;
        v[SD_NVME_ERRLOG] = d->errlog;
    }
    if (failing_now)
        return disk_fail(s, d, x,
                         d->trig_stress == SIM_STRESS_NEIGHBOUR ? "cofail_smart_precursor"
                         : d->trig_stress                       ? "stress_smart_precursor"
                                                                : "smart_precursor",
                         1, d->trig_stress);
    return 0;
}

static int gpu_fail(sim_t *s, sim_gpu_t *g, const step_ctx_t *x, const char *reason,
                    uint8_t precursor, uint8_t stress)
{
    sim_node_t *n = &s->nodes[g->node];
    sim_event_t e = {
        .t_ms = x->t,
        .trigger_ms = g->trigger_ms,
        .kind = SIM_KIND_GPU,
        .precursor = precursor,
        .stress = stress,
        .node = g->node,
        .dev = g->slot,
        .instance = n->name,
        .device = s->gpu_names[g->slot],
        .serial = g->uuid,
        .model = sim_gpu_models[n->gpu_model].name,
        .reason = reason,
        .rack = n->rack,
    };
    g->state = DEV_FAILED;
    g->replace_h = s->cfg.replace_days * 24.0;
    s->st.gpu_failures++;
    if (precursor) s->st.gpu_failures_precursor++;
    return event_push(s, &e);
}

static int gpu_step(sim_t *s, sim_gpu_t *g, sim_node_t *n, uint8_t stress, const step_ctx_t *x)
{
    const sim_config_t *c = &s->cfg;
    trng_t *r = &n->rng;
    if (g->state == DEV_FAILED) {
        if (!g->blanked) {
            for (uint32_t i = 0; i < SG_N; i++)
                s->v[g->base + i] = NAN;
            g->blanked = 1;
        }
        g->replace_h -= x->dt_h;
        if (g->replace_h > 0) return 0;
        int rc = gpu_install(s, g);
        if (rc) return rc;
    }
    const sim_gpu_model_t *m = &sim_gpu_models[n->gpu_model];
    double *v = s->v + g->base;
    double f = 0, gr = 0;
    /* Only cooling and power stressors reach a GPU, and they show in the
     * telemetry of the node's stress slots only (as disks' stress bays). */
    if (stress != SIM_STRESS_COOLING && stress != SIM_STRESS_POWER) stress = SIM_STRESS_NONE;
    int shows = (int)((n->stress_gpus >> g->slot) & 1u);
    if (g->state == DEV_DOOMED) {
        g->left_h -= x->dt_h;
        f = 1.0 - g->left_h / g->lead_h;
        gr = growth(f);
    }
    double util = n->busy ? clampd(92.0 + 4.0 * gauss(r), 0, 100) : clampd(1.5 + gauss(r), 0, 100);
    util = floor(util + 0.5);
    /* Cooling: the node's inlet sensor reads +3 C; the slots behind the
     * fault run +6 C over their normal, the others keep their airflow. */
    double slot_air = n->inlet - (stress == SIM_STRESS_COOLING ? 3.0 : 0);
    double temp = slot_air + 8.0 + 0.45 * util + g->temp_off + 0.6 * gauss(r);
    if (stress == SIM_STRESS_COOLING && shows) temp += 6.0;
    if (g->ptype == GP_THERMAL) temp += 14.0 * gr;
    double power = m->idle_w + (m->tdp_w - m->idle_w) * util / 100.0 * (1.0 + 0.03 * gauss(r));
    int pswing = stress == SIM_STRESS_POWER && shows;
    if (pswing || g->ptype == GP_THERMAL)
        power += (pswing ? 0.08 : 0.2 * gr) * m->tdp_w * gauss(r);
    power = clampd(power, m->idle_w * 0.8, m->tdp_w * 1.05);
    double clock = util > 10 ? m->max_clock : 210;
    double throttle = temp > 84 ? clampd((temp - 84) / 10.0, 0, 0.6) : 0;
    if (throttle > 0 && util > 10) {
        clock = floor(m->max_clock * (1.0 - 0.5 * throttle) / 15.0) * 15.0;
        g->thermal_us += x->dt_s * 1e6 * throttle;
    }
    /* Background errors: rare correctable ECC, PCIe replays. */
    g->sbe += poisson(r, 0.0005 * x->dt_h);
    g->pcie += poisson(r, (pswing ? 2.0 : 0.002) * x->dt_h);
    if (n->busy && trng_unit(r) < 0.0002 * x->dt_h) g->xid = 13; /* application fault */
    /* Hazard. */
    double h = c->gpu_afr * m->afr_mult / 8766.0 * c->hazard_scale;
    h *= 1.0 + 0.04 * (temp > 75 ? temp - 75 : 0);
    /* Every GPU of the node: the stressor's excess through the GPUs' stress
     * dose (as disks), or x the multiplier while active without a dose. */
    double xs = 0;
    if (c->stressor_tail_days > 0)
        xs = (c->stressor_hazard_mult - 1) * n->gdose_d;
    else if (stress)
        xs = c->stressor_hazard_mult - 1;
    h *= 1 + xs;
    s->st.gpu_hours += x->dt_h;
    if (stress) s->st.gpu_stressed_hours += x->dt_h;
    int sudden = 0;
    if (g->state == DEV_HEALTHY) {
        s->st.expected_gpu_triggers += h * x->dt_h;
        if (trng_unit(r) < 1.0 - exp(-h * x->dt_h)) {
            s->st.gpu_triggers++;
            if (stress) s->st.gpu_triggers_stressed++;
            g->trigger_ms = x->t;
            /* Cause, in proportion to the stressor's share of the hazard. */
            uint8_t cause = 0;
            if (xs > 0) cause = trng_unit(r) * (1 + xs) < xs ? n->last_gstress : 0;
            g->trig_stress = cause;
            double pf = c->gpu_precursor_frac * (cause ? 0.5 : 1.0);
            if (trng_unit(r) < pf) {
                double u = trng_unit(r);
                g->ptype = u < 0.5 ? GP_MEMORY : u < 0.8 ? GP_THERMAL : GP_LINK;
                double lead = unif(r, c->gpu_lead_min_days, c->gpu_lead_max_days) * 24.0;
                if (cause) lead *= 0.3;
                g->lead_h = g->left_h = lead;
                g->state = DEV_DOOMED;
            } else {
                g->xid = 79;
                sudden = 1;
            }
        }
    }
    int failing_now = 0;
    const char *reason = "memory";
    if (g->state == DEV_DOOMED) {
        if (g->ptype == GP_MEMORY) {
            /* SBE bursts that intensify, then DBEs with page retirement (Volta)
             * or row remapping (Ampere/Hopper), XIDs 92/94/48/63/64. */
            double sbe = poisson(r, (0.5 + 300.0 * gr) * x->dt_h * (trng_unit(r) < 0.3 ? 4 : 1));
            g->sbe += sbe;
            if (sbe > 50 && trng_unit(r) < 0.3) g->xid = 92;
            if (m->page_retirement && sbe > 0 && trng_unit(r) < 0.05 * x->dt_h * (1 + 10 * gr))
                g->ret_sbe += 1;
            if (f > 0.6 && !g->dbe_done && trng_unit(r) < 0.2 * x->dt_h) {
                g->dbe += 1;
                g->dbe_done = 1;
                if (m->page_retirement) {
                    g->ret_dbe += 1;
                    g->ret_pend = 1;
                    g->xid = 63;
                } else {
                    g->unc_remap += 1;
                    g->xid = trng_unit(r) < 0.5 ? 94 : 63;
                }
            } else if (g->dbe_done && trng_unit(r) < 0.05 * x->dt_h) {
                g->dbe += 1;
                g->xid = 48;
                if (!m->page_retirement) g->unc_remap += 1;
            }
            if (f > 0.85 && !g->remap_fail_done && trng_unit(r) < 0.1 * x->dt_h) {
                g->remap_fail_done = 1;
                if (!m->page_retirement) g->remap_fail = 1;
                g->xid = 64;
            }
            reason = "memory";
        } else if (g->ptype == GP_THERMAL) {
            reason = "thermal";
        } else {
            g->pcie += poisson(r, 40.0 * gr * x->dt_h);
            g->nvlink += poisson(r, 400.0 * gr * x->dt_h);
            if (f > 0.5 && trng_unit(r) < 0.1 * x->dt_h) g->xid = 74;
            reason = "interconnect";
        }
        if (g->left_h <= 0) {
            failing_now = 1;
            g->xid = g->ptype == GP_MEMORY ? 95 : g->ptype == GP_LINK ? 74 : 79;
        }
    }
    double fb = n->busy ? floor(m->fb_mib * clampd(0.8 + 0.08 * gauss(r), 0.1, 0.99)) : 0;
    v[SG_GPU_TEMP] = floor(temp + 0.5);
    v[SG_MEM_TEMP] = floor(temp + 7.0 + 0.5 * gauss(r) + 0.5);
    v[SG_POWER] = floor(power * 1000.0 + 0.5) / 1000.0;
    v[SG_SM_CLOCK] = clock;
    v[SG_UTIL] = util;
    v[SG_FB_USED] = fb;
    v[SG_XID] = g->xid;
    v[SG_SBE] = g->sbe;
    v[SG_DBE] = g->dbe;
    v[SG_RET_SBE] = g->ret_sbe;
    v[SG_RET_DBE] = g->ret_dbe;
    v[SG_RET_PEND] = g->ret_pend;
    v[SG_REMAP_FAIL] = g->remap_fail;
    v[SG_UNC_REMAP] = g->unc_remap;
    v[SG_PCIE_REPLAY] = g->pcie;
    v[SG_NVLINK_CRC] = g->nvlink;
    v[SG_THERMAL_VIOL] = floor(g->thermal_us);
    if (sudden)
        return gpu_fail(s, g, x, g->trig_stress ? "stress_sudden" : "sudden", 0, g->trig_stress);
    if (failing_now) {
        return gpu_fail(s, g, x,
                        g->trig_stress ? (g->ptype == GP_MEMORY    ? "stress_memory"
                                          : g->ptype == GP_THERMAL ? "stress_thermal"
                                                                   : "stress_interconnect")
                                       : reason,
                        1, g->trig_stress);
    }
    return 0;
}

int sim_step_to(sim_t *s, int64_t t, sim_frame_t *f)
{
    if (!s || !f) return SIM_EINVAL;
    if (s->nstep && t <= s->t) return SIM_EINVAL;
    const sim_config_t *c = &s->cfg;
    step_ctx_t x;
    x.t = t;
    int64_t dt = s->nstep ? t - s->t : c->interval_ms;
    x.dt_s = (double)dt / 1000.0;
    x.dt_h = (double)dt / 3600000.0 * c->time_scale;
    int64_t day_ms = ((t % 86400000) + 86400000) % 86400000;
    x.diurnal = sin(2.0 * M_PI * ((double)day_ms / 3600000.0 - 9.0) / 24.0);
    s->nev = 0;
    for (uint32_t k = 0; k < s->nracks; k++)
        stressor_update(&s->racks[k].rng, &s->racks[k].stress, &s->racks[k].stress_left_h,
                        c->rack_stressor_rate, &x, c, &s->st.rack_stressors);
    uint32_t D = c->disks_per_node, G = c->gpus_per_node;
    for (uint32_t i = 0; i < c->nodes; i++) {
        sim_node_t *n = &s->nodes[i];
        stressor_update(&n->rng, &n->stress, &n->stress_left_h, c->node_stressor_rate, &x, c,
                        &s->st.node_stressors);
        uint8_t stress = n->stress;
        if (!stress && s->nracks) stress = s->racks[n->rack_idx].stress;
        /* Stress dose (days, decaying): the disks' hazard over this step
         * follows the dose at its start (explicit Euler), so a stressor
         * shows in telemetry before the damage it does. */
        if (stress) n->last_stress = stress;
        n->dose_d = n->dose_next_d;
        if (c->stressor_tail_days > 0)
            n->dose_next_d = n->dose_d * exp(-x.dt_h / (c->stressor_tail_days * 24)) +
                             (stress ? x.dt_h / 24 : 0);
        /* The GPUs' dose: cooling and power stressors only. */
        uint8_t gstress =
            stress == SIM_STRESS_COOLING || stress == SIM_STRESS_POWER ? stress : SIM_STRESS_NONE;
        if (gstress) n->last_gstress = gstress;
        n->gdose_d = n->gdose_next_d;
        if (c->stressor_tail_days > 0)
            n->gdose_next_d = n->gdose_d * exp(-x.dt_h / (c->stressor_tail_days * 24)) +
                              (gstress ? x.dt_h / 24 : 0);
        if (n->cofail_left_h > 0) n->cofail_left_h -= x.dt_h;
        node_step(s, n, stress, &x);
        for (uint32_t d = 0; d < D; d++) {
            int rc = disk_step(s, &s->disks[(size_t)i * D + d], n, stress, &x);
            if (rc) return rc;
        }
        for (uint32_t g = 0; g < G; g++) {
            int rc = gpu_step(s, &s->gpus[(size_t)i * G + g], n, stress, &x);
            if (rc) return rc;
        }
    }
    uint64_t live = 0;
    for (uint32_t i = 0; i < s->nseries; i++)
        live += s->v[i] == s->v[i];
    s->st.samples += live;
    s->t = t;
    s->nstep++;
    s->st.steps++;
    f->t_ms = t;
    f->v = s->v;
    f->nseries = s->nseries;
    f->events = s->ev;
    f->nevents = s->nev;
    return 0;
}

int sim_step(sim_t *s, sim_frame_t *f)
{
    if (!s) return SIM_EINVAL;
    int64_t t = s->nstep ? s->t + s->cfg.interval_ms : s->cfg.start_ms;
    return sim_step_to(s, t, f);
}
