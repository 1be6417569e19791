/*
 * ntam_source.h — NTAM training and evaluation sources read through the serving feature module
 * (models/features.h): an augur store directory and the fleet simulator, for disks and GPUs.
 *
 * Both become a device timeline (ntam_tl_t): every device identity (a disk serial, a GPU UUID;
 * a replacement is a new device) with its raw channels at every step of a regular grid, its
 * node, and its failure step. Windows are cut from the timeline and go through feat_compute(),
 * the function the predictor job calls, so a model trained here serves as it is (its schema
 * hash is feat_schema_hash(kind)).
 *
 *   grid        disks: one step a day; GPUs: one step an hour (the predictor's default steps,
 *               --predict.step.disk / .gpu). Step k takes the last sample in
 *               (t0 + (k−1)·step, t0 + k·step], as feat_read_store() does.
 *   samples     one per device and day: at the day's last step (disks: every step; GPUs:
 *               steps 23, 47, ...), for a device with a sample at that step (present, as
 *               feat_devices_from_store() finds devices). Its window is the W steps ending
 *               there; steps before the device's first sample are padding.
 *   labels      horizon H days (H·steps_per_day steps): as ntam_data.h — positive iff the
 *               failure comes 1..H days (in steps) after the sample; H = 0: within the
 *               sample's day; the failure itself and later are context only; a healthy
 *               device's last H days are unlabelled (outcome unknown); negatives from every
 *               device or, with NTAM_NEG_NEVER_FAILED, only from devices that never failed.
 *   groups      the devices of one node (instance) present at the sample step: neighbours;
 *               with protocol scope rack or pod, the devices of one rack / pod (labels, with
 *               feat_scope_plan()'s fallbacks and cap) present at the step, exactly as the
 *               predictor groups them. --neg-keep still draws node-days (the same draw as
 *               scope node); devices of node-days not drawn are context (weight 0), so every
 *               scope trains on the same scored samples.
 *   split       devices dealt into folds (failed and healthy separately, seeded hash of the
 *               id); --holdout-days also splits by time. Never a random row split.
 *   rule        the baseline at the sample: disks, Backblaze's (raw 5/187/188/197/198 or NVMe
 *               media errors > 0); GPUs, any DBE (volatile ECC DBE or retired DBE pages > 0)
 *               or a row-remap failure.
 *
 * Store: ntam_tl_from_store() reads the identities with feat_devices_history(), their raw
 * channels with feat_read_store() over the whole span (in chunks), and the labels from the
 * stored failure events (ingest/failures.h: `augur label failure`, POST /api/v1/failures, the
 * Backblaze importer, `augur simulate --out.store`), matched by serial / UUID, else by
 * (instance, device) at the event's time. Simulator: ntam_tl_from_sim() steps sim/ in memory
 * and classifies its series with feat_series_channel() (the store reader's rules).
 *
 * Errors: 0 or a negative NTAM_E* code with a sentence in err.
 */
#ifndef AUGUR_MODELS_NTAM_SOURCE_H
#define AUGUR_MODELS_NTAM_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "models/features.h"
#include "models/ntam_data.h"

typedef struct {
    char *id;       /* serial / UUID (never empty: "instance/device" when the source has none) */
    char *instance; /* node */
    char *device;
    char *rack, *pod;    /* the series' rack / pod labels ("" without) */
    uint32_t node;       /* index into the timeline's nodes */
    int32_t first, last; /* steps with data */
    int32_t fail;        /* failure step, INT32_MIN if it did not fail */
    uint8_t nvme;        /* disks */
    double *raw;         /* [(last − first + 1)][C], row k − first is step k; NaN = none */
} ntam_tl_dev_t;

typedef struct {
    feat_kind_t kind;
    int64_t t0_ms;   /* end of step 0 */
    int64_t step_ms; /* 1 d (disks), 1 h (GPUs) */
    int32_t per_day; /* steps per day */
    int32_t n_steps;
    uint32_t C; /* raw channels (feat_raw_count) */
    ntam_tl_dev_t *dev;
    int32_t n_dev, cap;
    uint32_t n_nodes;
    char **node_name;    /* n_nodes */
    uint32_t **node_dev; /* per node: its devices (every identity over time) */
    uint32_t *node_n, *node_cap;
    uint64_t failures;           /* failures matched to a device */
    uint64_t failures_precursor; /* simulator: of them, with precursors */
    uint64_t events_unmatched;   /* store: failure events of this kind no device matched */
} ntam_tl_t;

void ntam_tl_free(ntam_tl_t *t); /* NULL-safe, idempotent */

/* Days the timeline covers (whole days of samples). */
int32_t ntam_tl_days(const ntam_tl_t *t);

/* ---- sources ------------------------------------------------------------------------------- */

/* Every `kind` device of the store directory `dir` (opened read-only, so a running server's
 * directory can be read; samples still only in its WAL are not seen). Errors with a sentence:
 * no such directory, not a store, no device of that kind, no failure event of that kind
 * (NTAM_EINVAL), store errors (NTAM_EIO), NTAM_ENOMEM. */
int ntam_tl_from_store(const char *dir, feat_kind_t kind, ntam_tl_t *out, char *err, size_t errlen);

/* The same from an open reader (tests). */
int ntam_tl_from_reader(tsdb_reader_t *r, feat_kind_t kind, ntam_tl_t *out, char *err,
                        size_t errlen);

/* A simulator spec "sim:nodes=N,days=N,seed=N,hazard=X,disks=N,nvme=N,gpus=N,stress=X,
 * rack-stress=X,precursor=X" for `kind`. Defaults: disks — 500 nodes x 8 disks (1 NVMe), no
 * GPUs, 90 days, stepped daily; GPUs — 200 nodes x 8 GPUs, no disks, 60 days, stepped hourly.
 * precursor sets the precursor fraction of `kind`. Returns 0 or NTAM_EINVAL (err: the spec's
 * grammar). */
int ntam_sim_spec_check(const char *spec, feat_kind_t kind, char *err, size_t errlen);

/* Run the simulator of spec into a timeline. summary (may be NULL) gets one line. */
int ntam_tl_from_sim(const char *spec, feat_kind_t kind, ntam_tl_t *out, char *summary,
                     size_t summary_len, char *err, size_t errlen);

/* ---- labelled windows ------------------------------------------------------------------------ */

/* Build one part (NTAM_PART_*) under protocol p (window in steps, horizon and holdout in
 * days; folds ≥ 3, or 0 with part NTAM_PART_ALL). neg_keep > 1 keeps one in neg_keep
 * training node-days that hold no positive (seeded by the split seed). Features: feat_name()
 * of the timeline's kind; d->day is the day index since t0; d->dev indexes t->dev. */
int ntam_tl_build(const ntam_tl_t *t, const ntam_protocol_t *p, int part, int neg_keep,
                  ntam_data_t *d, char *err, size_t errlen);

/* Every scored sample of d: device id, instance, device, date (UTC), probability, label, and
 * further scorers' columns (names[1..n-1]). 0 or NTAM_EIO. */
int ntam_tl_write_predictions(const char *path, const ntam_tl_t *t, const ntam_data_t *d,
                              const float *const *probs, const char *const *names, int n);

#endif
