/* sim_int.h — simulator internals shared by sim.c and sim_out.c. */
#ifndef AUGUR_SIM_INT_H
#define AUGUR_SIM_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sim/sim.h"
#include "tsdb/tsdb_util.h"

/* Per-block series layout (index within a device's block). */
enum {
    /* node block */
    SN_LOAD1 = 0,
    SN_CPU_IDLE,
    SN_CPU_IOWAIT,
    SN_CPU_SYSTEM,
    SN_CPU_USER,
    SN_MEM_AVAIL,
    SN_MEM_TOTAL,
    SN_TEMP_CPU,
    SN_TEMP_INLET,
    SN_IO_TIME0, /* + disk index: node_disk_io_time_seconds_total{device} */
};

/* SMART attributes emitted for ATA disks, in this order. */
#define SIM_NATTR 9
extern const int sim_attr_id[SIM_NATTR];
extern const char *const sim_attr_name[SIM_NATTR];
enum { A5 = 0, A9, A12, A187, A188, A194, A197, A198, A199 };

enum {
    /* disk block (ATA and NVMe) */
    SD_INFO = 0,
    SD_TEMP,
    SD_POWER_ON,
    SD_STATUS,
    SD_ATTR0 = 4, /* ATA: raw/value pairs: SD_ATTR0 + 2*a (raw), + 2*a + 1 (value) */
    SD_ATA_N = SD_ATTR0 + 2 * SIM_NATTR,
    SD_NVME_MEDIA = 4,
    SD_NVME_USED,
    SD_NVME_SPARE,
    SD_NVME_CRIT,
    SD_NVME_ERRLOG,
    SD_NVME_N,
};

/* GPU block: the DCGM fields in this order. */
enum {
    SG_GPU_TEMP = 0,
    SG_MEM_TEMP,
    SG_POWER,
    SG_SM_CLOCK,
    SG_UTIL,
    SG_FB_USED,
    SG_XID,
    SG_SBE,
    SG_DBE,
    SG_RET_SBE,
    SG_RET_DBE,
    SG_RET_PEND,
    SG_REMAP_FAIL,
    SG_UNC_REMAP,
    SG_PCIE_REPLAY,
    SG_NVLINK_CRC,
    SG_THERMAL_VIOL,
    SG_N,
};
extern const char *const sim_dcgm_name[SG_N];

typedef struct {
    const char *name;
    uint64_t capacity;
    double afr_mult;
    const char *firmware;
    int nvme;
    double weight;
} sim_disk_model_t;

typedef struct {
    const char *name;
    double afr_mult;
    double tdp_w, idle_w;
    double max_clock, fb_mib;
    int page_retirement; /* 1: retired pages (Volta); 0: row remapping (Ampere+) */
    double weight;
} sim_gpu_model_t;

extern const sim_disk_model_t sim_disk_models[];
extern const sim_gpu_model_t sim_gpu_models[];

enum { DEV_HEALTHY = 0, DEV_DOOMED = 1, DEV_FAILED = 2 };
enum { GP_NONE = 0, GP_MEMORY = 1, GP_THERMAL = 2, GP_LINK = 3 };

typedef struct {
    uint32_t node, slot;
    uint8_t model, nvme, state, blanked;
    uint8_t prec_mask; /* bit a: attribute a grows (A5 ...); NVMe: bit 0 media, bit 1 spare */
    uint8_t background;
    uint8_t trig_stress;
    uint32_t base; /* series block */
    uint32_t gen;
    const char *serial;
    double age_h; /* power-on hours (physics clock) */
    double cycles;
    double temp_off, wl_mult;
    double raw[SIM_NATTR]; /* ATA raw counters (A9/A194 unused here) */
    double media, used, spare, errlog;
    double lead_h, left_h; /* precursor lead and time to failure (DOOMED) */
    double amp[SIM_NATTR];
    double replace_h; /* FAILED: time left until the replacement */
    int64_t trigger_ms;
    double io_time;
} sim_disk_t;

typedef struct {
    uint32_t node, slot;
    uint8_t state, blanked, ptype, trig_stress;
    uint8_t dbe_done, remap_fail_done;
    uint32_t base, gen;
    const char *uuid;
    double temp_off;
    double sbe, dbe, ret_sbe, ret_dbe, ret_pend, remap_fail, unc_remap, pcie, nvlink, thermal_us;
    double xid;
    double lead_h, left_h, replace_h;
    int64_t trigger_ms;
} sim_gpu_t;

typedef struct {
    trng_t rng;
    const char *name, *rack, *pod;
    uint32_t rack_idx;
    uint8_t hdd_model, gpu_model, stress, busy;
    double stress_left_h;
    uint8_t last_stress;  /* kind of the latest stressor (active or ended) */
    double dose_d;        /* accumulated stress (days, decaying) at the step's start */
    double dose_next_d;   /* ... at its end */
    double cofail_left_h; /* hours left of the raised hazard after a disk failure */
    uint32_t stress_bays; /* bit d: stressors show in disk slot d's telemetry */
    /* GPUs: the same for GPU slots (bit g), and the GPUs' own stress dose, which only
     * cooling and power stressors raise (vibration does not reach a GPU). */
    uint64_t stress_gpus;
    uint8_t last_gstress; /* kind of the latest cooling/power stressor */
    double gdose_d, gdose_next_d;
    double base_load, ar, inlet_off;
    double cpu[4];
    double mem_total;
    double job_left_h;
    uint32_t base;
    double util; /* this step's CPU utilisation (0..1) */
    double inlet;
} sim_node_t;

typedef struct {
    trng_t rng;
    uint8_t stress;
    double stress_left_h;
} sim_rack_t;

/* Chunked arena: pointers stay valid until sim_destroy. */
typedef struct sim_arena_blk {
    struct sim_arena_blk *next;
    size_t used, cap;
    /* data follows, max_align_t aligned */
} sim_arena_blk_t;

struct sim {
    sim_config_t cfg;
    int64_t t; /* time of the last step */
    uint64_t nstep;
    sim_arena_blk_t *arena;
    sim_series_t *series;
    double *v;
    uint32_t nseries, cap;
    sim_node_t *nodes;
    sim_rack_t *racks;
    uint32_t nracks;
    sim_disk_t *disks;
    sim_gpu_t *gpus;
    sim_event_t *ev;
    uint32_t nev, evcap;
    sim_stats_t st;
    const char *dev_names[64]; /* "sda".., "nvme0".. cached per slot */
    const char *gpu_names[64];
    const char *gpu_idx[64];
};

#endif
