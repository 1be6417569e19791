/*
 * features.h — per-device feature windows for failure prediction, shared by
 * training and serving (no train/serve skew). docs/features.md is the
 * specification: which series, which transforms, missing values, counter
 * resets, neighbourhoods.
 *
 * Two stages, one code path:
 *
 *   raw  [devices][W][C]  doubles: the exporter values of C raw channels at
 *                         each of W steps (NaN = no sample at that step).
 *                         Filled from a store by feat_read_store(), or by the
 *                         caller (e.g. from Backblaze CSV rows).
 *   X    [devices][W][F]  floats: feat_compute() turns raw into normalised
 *                         features, plus mask [devices][W] (1 = the step has
 *                         data, observed or carried forward; 0 = padding
 *                         before the device's first sample in the window).
 *
 * Step w of a window ending at t is at t - (W-1-w)*step_ms and takes the last
 * sample in (t_w - step_ms, t_w]. Neighbours are the other devices of the
 * same batch on the same instance (optionally rack or pod), as a CSR list.
 *
 * Everything is caller-allocated and deterministic: the store path reads
 * only what the reader shows; no clock, no randomness. Sizes: X is
 * n*W*feat_count(kind) floats, mask n*W bytes, raw n*W*feat_raw_count(kind)
 * doubles.
 *
 * Errors: 0 or a negative FEAT_E* code.
 */
#ifndef AUGUR_MODELS_FEATURES_H
#define AUGUR_MODELS_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FEAT_EINVAL (-1)
#define FEAT_ENOMEM (-2)
#define FEAT_ESTORE (-3) /* a tsdb call failed; feat_store_error() has its code */

typedef enum { FEAT_KIND_DISK = 0, FEAT_KIND_GPU = 1 } feat_kind_t;

typedef enum {
    FEAT_SCOPE_NODE = 0, /* neighbours: same instance */
    FEAT_SCOPE_RACK = 1, /* same rack label (falls back to instance without one) */
    FEAT_SCOPE_POD = 2,  /* same pod label (falls back to rack, then instance) */
} feat_scope_t;          /* a model file records one: see feat_scope_plan() */

/* Raw channels (C), in order. */
enum {
    FEAT_RD_5 = 0,
    FEAT_RD_187,
    FEAT_RD_188,
    FEAT_RD_197,
    FEAT_RD_198,
    FEAT_RD_199,
    FEAT_RD_MEDIA, /* NVMe media errors */
    FEAT_RD_SPARE, /* NVMe available spare (%) */
    FEAT_RD_TEMP,  /* smartctl_device_temperature */
    FEAT_RD_NVME,  /* 1 for NVMe devices, 0 for ATA (set by the reader) */
    FEAT_RD_N
};
enum {
    FEAT_RG_SBE = 0,
    FEAT_RG_DBE,
    FEAT_RG_RET_SBE,
    FEAT_RG_RET_DBE,
    FEAT_RG_UNC_REMAP,
    FEAT_RG_PCIE,
    FEAT_RG_NVLINK,
    FEAT_RG_THERMAL, /* counters */
    FEAT_RG_RET_PEND,
    FEAT_RG_REMAP_FAIL,
    FEAT_RG_XID,
    FEAT_RG_TEMP,
    FEAT_RG_MEM_TEMP,
    FEAT_RG_POWER,
    FEAT_RG_CLOCK,
    FEAT_RG_UTIL,
    FEAT_RG_N
};

uint32_t feat_raw_count(feat_kind_t kind); /* C */
uint32_t feat_count(feat_kind_t kind);     /* F */
/* Name of feature f (< feat_count), e.g. "log1p_smart_5". NULL if out of range. */
const char *feat_name(feat_kind_t kind, uint32_t f);

/* "disk" or "gpu": the kind's name in labels, flags and messages. */
const char *feat_kind_name(feat_kind_t kind);
/* Hash of the feature schema (names, order, transforms version): a model
 * file records it and refuses another. */
uint64_t feat_schema_hash(feat_kind_t kind);

/* Raw -> features for n devices. raw is [n][W][C] (not modified); x is
 * [n][W][F]; mask is [n][W]. */
int feat_compute(feat_kind_t kind, uint32_t n, uint32_t W, const double *raw, float *x,
                 uint8_t *mask);

/* ---- devices and neighbours --------------------------------------------------- */

typedef struct {
    const char *instance; /* node */
    const char *device;   /* "sda", "nvme0", "nvidia3" */
    const char *id;       /* disk serial_number or GPU UUID ("" if unknown) */
    const char *model;
    const char *rack, *pod; /* "" without */
    int64_t first_ms;       /* first sample of this device identity in the window
                             * (INT64_MIN: unknown, the whole window counts) */
    int nvme;               /* disks: 1 for NVMe */
} feat_device_t;

typedef struct feat_devices feat_devices_t;

/* Build a device list by hand (rows path). Strings are copied. */
int feat_devices_create(feat_devices_t **out);
int feat_devices_add(feat_devices_t *d, const feat_device_t *dev);
uint32_t feat_devices_count(const feat_devices_t *d);
const feat_device_t *feat_devices_get(const feat_devices_t *d, uint32_t i);
void feat_devices_destroy(feat_devices_t *d); /* accepts NULL */

/* Upper bound of the neighbour entries feat_neighbours() writes. */
size_t feat_neighbours_bound(const feat_devices_t *d, feat_scope_t scope);
/* CSR neighbour lists: neighbours of device i are idx[off[i] .. off[i+1]),
 * ascending, never i itself. off has n+1 entries; idx has `cap` entries
 * (>= feat_neighbours_bound() suffices). Returns 0 or FEAT_EINVAL (cap too
 * small). */
int feat_neighbours(const feat_devices_t *d, feat_scope_t scope, uint32_t *off, uint32_t *idx,
                    size_t cap);

/* "node", "rack", "pod" (NULL for another value); feat_scope_parse() reads those names:
 * 0 or FEAT_EINVAL. */
const char *feat_scope_name(feat_scope_t scope);
int feat_scope_parse(const char *s, feat_scope_t *out);

/* Default cap on the devices of one neighbourhood group (a rack of 16 nodes x 8 devices). */
#define FEAT_SCOPE_CAP_DEFAULT 128

/* The neighbourhood groups of n devices under scope, as the model sees them: devices with the
 * same scope key (feat_neighbours' keys: instance, or the rack / pod label with its fallbacks;
 * a rack key never matches an instance key) form a group; inside a group devices are ordered
 * by instance, then by their position in dev, so a node is a run. A group of m > cap devices
 * (cap 0: no cap) is cut, deterministically, into k = ceil(m / cap) chunks of whole nodes in
 * instance order, each filled to ceil(m / k) devices and never past cap (a single node larger
 * than cap stays whole: a node's own neighbourhood is never cut). Chunks depend only on the
 * set of devices and their labels, so training and the server's predictor cut alike.
 * order[k] (n entries) is the device at row k; group g is rows goff[g] .. goff[g+1]-1 (goff
 * has n + 1 entries); groups come in order of (key level, key). 0, FEAT_EINVAL, FEAT_ENOMEM. */
int feat_scope_plan(const feat_device_t *const *dev, uint32_t n, feat_scope_t scope, uint32_t cap,
                    uint32_t *order, uint32_t *goff, uint32_t *n_groups);

/* ---- from a store ------------------------------------------------------------------ */

typedef struct {
    feat_kind_t kind;
    uint32_t window; /* W >= 1 */
    int64_t step_ms; /* > 0: disks typically 1 day, GPUs 1 hour */
} feat_config_t;

/* The devices present at t (a sample of smartctl_device / DCGM_FI_DEV_GPU_TEMP
 * in (t - step_ms, t]), sorted by (instance, device). A disk slot whose
 * serial changed keeps the newest serial, and first_ms tells where it
 * started. Errors: FEAT_EINVAL, FEAT_ENOMEM, FEAT_ESTORE. */
int feat_devices_from_store(tsdb_reader_t *r, const feat_config_t *cfg, int64_t t,
                            feat_devices_t **out);

/* Read the raw window ending at t of every device of `d` into raw
 * [n][W][C] (steps before first_ms stay NaN). */
int feat_read_store(tsdb_reader_t *r, const feat_config_t *cfg, const feat_devices_t *d, int64_t t,
                    double *raw);

/* Every device identity of `kind` with a presence sample (smartctl_device /
 * DCGM_FI_DEV_GPU_TEMP) in [mint, maxt]: one entry per (instance, device,
 * serial) for disks and per (instance, UUID) for GPUs, replaced devices
 * included (training needs the failed ones, which are no longer present at
 * the end). first_ms is the identity's first presence sample; (*last_ms)[i]
 * (malloc'd, n entries, may be NULL when n = 0) its last. Sorted by
 * (instance, device, first_ms). Errors as feat_devices_from_store(). */
int feat_devices_history(tsdb_reader_t *r, feat_kind_t kind, int64_t mint, int64_t maxt,
                         feat_devices_t **out, int64_t **last_ms);

/* The raw channel a series feeds, exactly as feat_read_store() picks series
 * (metric name, attribute id and value type with the older label names,
 * temperature_type), or -1. label(ctx, name) returns the value of a label
 * ("" when absent; "__name__" is the metric). For sources that hold series
 * outside a store (the simulator's frames). */
int feat_series_channel(feat_kind_t kind, const char *(*label)(void *ctx, const char *name),
                        void *ctx);

/* The last tsdb error of a FEAT_ESTORE in this thread. */
int feat_store_error(void);

#ifdef __cplusplus
}
#endif
#endif /* AUGUR_MODELS_FEATURES_H */
