/*
 * sim.h — augur's deterministic fleet simulator (public API).
 *
 * A fleet of N nodes, each with D disks and G GPUs, stepped over time. Every
 * step produces one value per live series, in the conventions of the real
 * exporters (node_exporter, smartctl_exporter, dcgm-exporter), and the
 * ground-truth failure events of that step. Failures come from hazard models
 * (docs/simulator.md gives the models, their parameters and the field
 * studies behind them):
 *
 *   disks  age-dependent (bathtub) hazard x model base rate x temperature x
 *          workload x neighbourhood stress; a fraction of failures announce
 *          themselves days to weeks ahead in SMART 5/187/188/197/198/199
 *          (NVMe: media errors, spare), the rest fail without warning;
 *   GPUs   base hazard x temperature x stress; precursors are memory (SBE
 *          bursts, retired pages / row remaps, DBEs, XID 48/63/64/92/94/95),
 *          thermal/power (temperature, throttling, power swings, XID 79) or
 *          interconnect (PCIe replays, NVLink CRC, XID 74);
 *   nodes  and racks  stressors (cooling fault, unstable power, vibration)
 *          that raise the hazard of every device of the node (or rack) for a
 *          while, through a decaying stress dose (GPUs: cooling and power
 *          only), but show in the telemetry of only some drive bays
 *          (temperature, SMART 188/199/197) and GPU slots (temperature, power
 *          swings, PCIe replays); a disk failure raises its node's disk
 *          hazard for days (rebuild).
 *
 *   sim_config_init()    defaults
 *   sim_create()         build the fleet (series table, initial state)
 *   sim_step()           advance one interval: values + failure events
 *   sim_series_count(), sim_series_get()  the series table (grows when a
 *                        failed device is replaced by a new one)
 *   sim_destroy()
 *
 * Determinism: no clock, no global RNG. Everything follows from
 * sim_config_t (seed and start time included): the same config gives
 * byte-identical output on every platform with IEEE doubles. Each node and
 * rack has its own random stream derived from (seed, id), so node i behaves
 * the same whatever the fleet size beyond it.
 *
 * Errors: functions return 0 or a negative SIM_E* code (sim_strerror()).
 */
#ifndef AUGUR_SIM_H
#define AUGUR_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_ERRNO_MAP(X)                                                                           \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "I/O error")                                                                        \
    X(ESTORE, -4, "store append failed")                                                           \
    X(ELIMIT, -5, "fleet too large (series index overflow)")

typedef enum {
#define SIM_ERR_ENUM_(name, code, msg) SIM_##name = code,
    SIM_ERRNO_MAP(SIM_ERR_ENUM_)
#undef SIM_ERR_ENUM_
} sim_err_t;

/* Static message for an error code; never NULL. */
const char *sim_strerror(int err);

/* ---- configuration ------------------------------------------------------ */

typedef struct {
    uint64_t seed;           /* every random draw follows from it */
    uint32_t nodes;          /* default 10 */
    uint32_t disks_per_node; /* default 8; the first nvme_per_node are NVMe */
    uint32_t nvme_per_node;  /* default 1 (<= disks_per_node) */
    uint32_t gpus_per_node;  /* default 8 */
    uint32_t nodes_per_rack; /* default 16; 0 = no racks, no rack label */
    uint32_t racks_per_pod;  /* default 8; 0 = no pod label */
    int rack_labels;         /* put rack/pod labels on every series (default 1) */
    int64_t start_ms;        /* time of the first step (default 2024-01-01T00:00:00Z) */
    int64_t interval_ms;     /* step (default 1 h) */
    /* Physics clock: device ageing, hazards, precursor growth and stressor
     * durations advance time_scale times faster than the sample timestamps
     * (1 = real time; `serve --demo` accelerates). Rate counters such as CPU
     * seconds follow the timestamps. */
    double time_scale;   /* default 1 */
    double hazard_scale; /* multiplies every failure hazard (default 1) */
    /* Disks. */
    double disk_afr;            /* fleet-average annual failure rate at age-multiplier 1 (0.015) */
    int disk_bathtub;           /* age-dependent hazard (1) or constant (0) */
    double disk_age_max_years;  /* initial ages uniform in [0, this] (default 4) */
    double disk_precursor_frac; /* failures with SMART precursors (default 0.6) */
    double disk_lead_min_days, disk_lead_max_days; /* precursor lead (3, 21) */
    double disk_background_frac; /* healthy disks with a small, stable SMART 5 count (0.03) */
    /* GPUs. */
    double gpu_afr;                              /* annual failure rate (default 0.02) */
    double gpu_precursor_frac;                   /* failures with precursors (default 0.55) */
    double gpu_lead_min_days, gpu_lead_max_days; /* (1, 10) */
    /* Neighbourhood stressors. */
    double node_stressor_rate; /* node stressor starts per node-year (default 0.2) */
    double rack_stressor_rate; /* rack stressor starts per rack-year (default 0.1) */
    double stressor_min_days, stressor_max_days; /* duration (0.5, 4) */
    double stressor_hazard_mult; /* hazard multiplier per day of stress dose (50) */
    /* Stress damage accumulates and heals slowly: the node keeps a stress
     * dose D (days under stress, decaying with this time constant) and its
     * disks' hazard is x (1 + (stressor_hazard_mult - 1) * D); its GPUs' the
     * same with a dose of cooling and power stress only. 0 = no dose:
     * x stressor_hazard_mult while a stressor is active. (4) */
    double stressor_tail_days;
    /* Fraction of a node's drive bays (and GPU slots) where a stressor shows
     * in the device's telemetry (disks: temperature, SMART 188/199/197;
     * GPUs: temperature, power swings, PCIe replays); the others' hazard
     * rises just the same but their telemetry stays quiet. Drawn per bay and
     * slot when the fleet is built, at least one ATA bay and one GPU slot
     * per node (0.25). */
    double stressor_visible_frac;
    /* After a disk fails, the other disks of its node (and its replacement)
     * run at disk_cofail_mult times their hazard for disk_cofail_days
     * (rebuild and degraded-array load): (3, 7); 1 = off. */
    double disk_cofail_mult, disk_cofail_days;
    double replace_days;         /* a failed device is replaced after this long (1) */
} sim_config_t;

/* Fill *c with the defaults above. */
void sim_config_init(sim_config_t *c);

/* ---- the series table ---------------------------------------------------- */

typedef enum {
    SIM_SRC_NODE = 0, /* node_exporter series of a node */
    SIM_SRC_DISK = 1, /* smartctl_exporter series of one disk */
    SIM_SRC_GPU = 2,  /* dcgm-exporter series of one GPU */
} sim_source_t;

typedef struct {
    const tsdb_label_t *labels; /* sorted by name (remote-write order), __name__ included */
    uint32_t nlabels;
    uint8_t source; /* sim_source_t */
    uint32_t node;  /* node index */
    uint32_t dev;   /* disk or GPU index within the node */
} sim_series_t;

/* ---- events and frames --------------------------------------------------- */

typedef enum { SIM_KIND_DISK = 0, SIM_KIND_GPU = 1 } sim_kind_t;

typedef enum {
    SIM_STRESS_NONE = 0,
    SIM_STRESS_COOLING = 1,   /* temperatures up, thermal throttling */
    SIM_STRESS_POWER = 2,     /* power swings, PCIe replays, disk command timeouts */
    SIM_STRESS_VIBRATION = 3, /* disks: pending sectors, seek trouble */
    SIM_STRESS_NEIGHBOUR = 4, /* events only: a disk failure on the node (rebuild load) */
} sim_stress_t;

/* One ground-truth failure. Strings are valid until sim_destroy(). */
typedef struct {
    int64_t t_ms;       /* the failure: the device stops reporting after this step */
    int64_t trigger_ms; /* when the hazard fired (= t_ms when there was no precursor) */
    uint8_t kind;       /* sim_kind_t */
    uint8_t precursor;  /* 1 if telemetry announced it (SMART / ECC / thermal ...) */
    /* What caused the firing (sim_stress_t): the node's stressor, active or
     * in its tail, or a neighbour's failure, drawn in proportion to each
     * one's share of the hazard; 0 = the device's own base hazard. */
    uint8_t stress;
    uint32_t node, dev;
    const char *instance; /* node name */
    const char *device;   /* "sda", "nvme0", "nvidia3" */
    const char *serial;   /* disk serial number or GPU UUID */
    const char *model;
    const char *reason; /* short cause: "smart_precursor", "sudden", "memory", ... */
    const char *rack;   /* "" without racks */
} sim_event_t;

/* The output of one step. `v` has sim_series_count() entries; NaN means the
 * series has no sample at this step (device failed, not yet replaced, or a
 * replaced device's old series). Valid until the next sim_step(). */
typedef struct {
    int64_t t_ms;
    const double *v;
    uint32_t nseries;
    const sim_event_t *events;
    uint32_t nevents;
} sim_frame_t;

/* Running totals, for tests and summaries. Device-hours are physics hours
 * (time_scale applied) of devices present and not yet failed. */
typedef struct {
    uint64_t steps;
    double disk_hours, disk_stressed_hours;
    double gpu_hours, gpu_stressed_hours;
    uint64_t disk_triggers, disk_triggers_stressed; /* hazard firings */
    uint64_t gpu_triggers, gpu_triggers_stressed;
    uint64_t disk_failures, disk_failures_precursor;
    uint64_t gpu_failures, gpu_failures_precursor;
    uint64_t node_stressors, rack_stressors;
    uint64_t samples;              /* non-NaN values produced */
    double expected_disk_triggers; /* integrated hazard (sum of h*dt) */
    double expected_gpu_triggers;
} sim_stats_t;

typedef struct sim sim_t;

/* Build the fleet. Errors: SIM_EINVAL (zero nodes, interval <= 0, fractions
 * outside [0,1], nvme_per_node > disks_per_node, ...), SIM_ENOMEM,
 * SIM_ELIMIT. */
int sim_create(const sim_config_t *cfg, sim_t **out);
void sim_destroy(sim_t *s); /* accepts NULL */

const sim_config_t *sim_config(const sim_t *s);

/* Advance to the next step (the first call produces start_ms) and fill *f.
 * Errors: SIM_ENOMEM (series table growth). */
int sim_step(sim_t *s, sim_frame_t *f);

/* Advance to time t_ms (> the previous step; steps need not be regular:
 * `serve --demo` backfills coarsely, then follows the wall clock). */
int sim_step_to(sim_t *s, int64_t t_ms, sim_frame_t *f);

uint32_t sim_series_count(const sim_t *s);
/* Series i (< sim_series_count()). The pointer is valid until the next
 * sim_step() (the table may grow); its label strings until sim_destroy(). */
const sim_series_t *sim_series_get(const sim_t *s, uint32_t i);

void sim_stats(const sim_t *s, sim_stats_t *st);

/* Disk / GPU state for the CSV writers. `present` is 0 while a failed device
 * awaits its replacement. */
typedef struct {
    int present;
    const char *instance, *device, *serial, *model, *rack, *pod;
    uint32_t node, slot;
    int nvme;
    int stress_visible; /* stressors show in this bay's / GPU slot's telemetry */
    uint64_t capacity_bytes;
    uint32_t series_base; /* first series index of the device's current block */
    uint32_t nseries;     /* series in the block */
} sim_device_info_t;

uint32_t sim_disk_count(const sim_t *s); /* nodes * disks_per_node */
uint32_t sim_gpu_count(const sim_t *s);
void sim_disk_info(const sim_t *s, uint32_t i, sim_device_info_t *out);
void sim_gpu_info(const sim_t *s, uint32_t i, sim_device_info_t *out);

/* ---- outputs (sim_out.c) -------------------------------------------------- */

/* Store writer: buffers a few steps per series, then tsdb_append()s them
 * (also the augur_failure_event series). */
typedef struct sim_store_writer sim_store_writer_t;
int sim_store_writer_create(tsdb_t *db, sim_store_writer_t **out);
/* Add one frame. Errors: SIM_ENOMEM, SIM_ESTORE (tsdb error in *tsdb_err). */
int sim_store_writer_add(sim_store_writer_t *w, const sim_t *s, const sim_frame_t *f);
/* Append everything buffered. */
int sim_store_writer_flush(sim_store_writer_t *w);
/* Samples appended so far, and the last tsdb error code (0 if none). */
uint64_t sim_store_writer_samples(const sim_store_writer_t *w);
int sim_store_writer_tsdb_error(const sim_store_writer_t *w);
void sim_store_writer_destroy(sim_store_writer_t *w); /* accepts NULL; does not flush */

/* The failure-event series of one event: augur_failure_event{kind, instance,
 * device, serial (disks) | UUID (GPUs), reason} = 1 at t_ms, as
 * ingest/failures.h stores events. Fills the 6
 * labels into `labels` (sorted by name) and returns the count. */
#define SIM_EVENT_NLABELS 6
uint32_t sim_event_labels(const sim_event_t *e, tsdb_label_t labels[SIM_EVENT_NLABELS]);

/* Remote write 1.0: a prometheus.WriteRequest holding `nseries` series with
 * their samples, snappy-compressed into *body (grown as needed; *cap is its
 * capacity). Labels are written in the order given (sim series are sorted).
 * Errors: SIM_ENOMEM, SIM_EINVAL. */
int sim_rw_encode(const tsdb_series_in_t *series, size_t nseries, uint8_t **body, size_t *len,
                  size_t *cap);

/* CSV writers. The Backblaze-style disk CSV has one row per ATA disk per day
 * (date, serial_number, model, capacity_bytes, failure, datacenter,
 * cluster_id, vault_id, pod_id, pod_slot_num, smart_N_normalized,
 * smart_N_raw ...): pod = node, vault = rack; failure = 1 on a failed drive's
 * last row. The GPU CSV has one row per GPU per csv step (nvidia-smi-like
 * columns plus failure). The events CSV and JSON-lines files list every
 * sim_event_t. Each *_header() writes the header line. Rows are written
 * from frames; the writer decides (from the frame time) whether a day or
 * csv step starts. Errors: SIM_EIO. */
typedef struct sim_csv sim_csv_t;
typedef struct {
    void *disk; /* FILE *, or NULL */
    void *gpu;  /* FILE *, or NULL */
    void *events_csv;
    void *events_json;
    int64_t gpu_step_ms; /* GPU CSV row spacing (default 1 day) */
} sim_csv_options_t;
int sim_csv_create(const sim_t *s, const sim_csv_options_t *o, sim_csv_t **out);
int sim_csv_add(sim_csv_t *c, const sim_t *s, const sim_frame_t *f);
/* Write the rows still pending (the last day of the disk CSV). */
int sim_csv_finish(sim_csv_t *c, const sim_t *s);
void sim_csv_destroy(sim_csv_t *c); /* accepts NULL */

/* Format t_ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (buf >= 25) or "YYYY-MM-DD"
 * (date_only; buf >= 11). Returns buf. */
char *sim_time_format(int64_t t_ms, int date_only, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* AUGUR_SIM_H */
