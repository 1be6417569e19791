/*
 * ntam_data.h — labelled windows for NTAM training and evaluation, built from a Backblaze CSV
 * table (bbcsv.h) under an explicit, leak-aware protocol.
 *
 * A sample is one device on one day t: its window of W calendar days t−W+1 .. t (missing days
 * masked), its label, and the samples of the other devices of its node on the same day (its
 * group, for neighbourhood attention). Samples of one group are contiguous.
 *
 * Labels (horizon H, fail_day = the last day with failure = 1):
 *   H ≥ 1: positive iff 1 ≤ fail_day − t ≤ H; H = 0: positive iff t = fail_day;
 *   a failed drive's days after fail_day are dropped, and for H ≥ 1 its day fail_day itself is
 *   context only; its days with fail_day − t > H are negatives, or context only with
 *   negatives = NTAM_NEG_NEVER_FAILED;
 *   a drive that never failed gives negatives on days with t + H ≤ its last observed day
 *   (later days are context only: their outcome is unknown).
 * Context-only samples have weight 0: they are inputs for neighbours, never scored.
 *
 * Split: devices are dealt into `folds` folds, failed and healthy drives separately, in the
 * order of a seeded hash of their serial (so every fold gets its share of failures). Part TEST
 * is fold `fold`, VAL is fold (fold + 1) mod folds, TRAIN the rest. With holdout_days > 0 the
 * split is also by time: TRAIN keeps days t ≤ end − holdout − H (their outcome is known before
 * the cut) and VAL/TEST days t > end − holdout. Never a random row split.
 *
 * Features (leak-free by default): for each kept SMART attribute N, log1p(raw_N) at every step
 * and, when W > 1, its change since the window's first observed step. The leak-free set drops
 * the age/usage counters 1, 4, 7, 9, 12, 191, 192, 193, 195, 222, 240, 241, 242 (they track
 * calendar time, which the label depends on in these exports) and the temperatures 190 and
 * 194 (seasonal); the date is never a feature.
 */
#ifndef AUGUR_MODELS_NTAM_DATA_H
#define AUGUR_MODELS_NTAM_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "models/bbcsv.h"
#include "models/ntam_file.h"

enum { NTAM_FEAT_LEAKFREE = 0, NTAM_FEAT_ALL = 1 };
enum { NTAM_NEG_ALL = 0, NTAM_NEG_NEVER_FAILED = 1 };
enum { NTAM_PART_ALL = 0, NTAM_PART_TRAIN = 1, NTAM_PART_VAL = 2, NTAM_PART_TEST = 3 };

typedef struct {
    int32_t window;       /* W (days) */
    int32_t horizon;      /* H (days) */
    int32_t min_obs;      /* observed days a window needs; 0 = W (full windows only) */
    int32_t features;     /* NTAM_FEAT_* */
    int32_t negatives;    /* NTAM_NEG_* */
    int32_t folds;        /* device folds (≥ 3 for train/val/test; 0 = no split) */
    int32_t fold;         /* test fold */
    uint64_t split_seed;  /* seeds the device order */
    int32_t holdout_days; /* time split (0 = devices only) */
    int32_t scope;        /* neighbourhood groups: feat_scope_t (0 node, 1 rack, 2 pod); store
                           * and simulator sources (ntam_tl_build); CSV rows: node only */
    int32_t scope_cap;    /* most devices in one group (feat_scope_plan; 0 = no cap) */
} ntam_protocol_t;

/* W = 14, H = 7, leak-free, all negatives, 5 folds, fold 0, seed 1, no time split, scope node,
 * scope cap 128 (FEAT_SCOPE_CAP_DEFAULT). */
void ntam_protocol_default(ntam_protocol_t *p);

typedef struct {
    int32_t W, F;
    size_t n;             /* samples */
    float *x;             /* n × W × F features */
    uint8_t *tmask;       /* n × W, 1 = day observed */
    float *y;             /* label 0/1 */
    float *w;             /* 1 = scored, 0 = context only */
    int32_t *dev;         /* device index in the source table */
    int32_t *day;         /* day t */
    uint8_t *rule;        /* Backblaze's rule fires at t (raw 5/187/188/197/198 > 0) */
    size_t n_groups;
    size_t *goff;         /* group g = samples goff[g] .. goff[g+1]-1 (one node, one day) */
    int32_t max_group;    /* largest group */
    size_t n_pos, n_neg;  /* scored samples by label */
    int32_t n_dev_src;    /* devices in the source table (for lead times) */
    int32_t *fail_day;    /* source device → failure day or INT32_MIN (n_dev_src entries) */
    char (*feature)[NTAM_FEATURE_NAME]; /* F names */
} ntam_data_t;

/* Build the samples of one part. err gets a message on failure. Returns 0, NTAM_EINVAL (bad
 * protocol, no usable attribute) or NTAM_ENOMEM. */
int ntam_data_build(const bbcsv_t *t, const ntam_protocol_t *p, int part, ntam_data_t *out,
                    char *err, size_t errlen);
void ntam_data_free(ntam_data_t *d);

/* Mean and 1/std of every feature over the observed steps of scored samples (scale 1 where the
 * spread is 0). */
void ntam_data_fit_norm(const ntam_data_t *d, float *mean, float *scale);
/* x ← (x − mean)·scale on observed steps; masked steps become 0. */
void ntam_data_apply_norm(ntam_data_t *d, const float *mean, const float *scale);

#endif
