/*
 * ntam_eval.h — score a data set with a model and the baselines, and report: the pieces
 * `augur train` and `augur eval` share (metrics table, PR-curve SVG, predictions CSV).
 */
#ifndef AUGUR_MODELS_NTAM_EVAL_H
#define AUGUR_MODELS_NTAM_EVAL_H

#include <stdio.h>

#include "models/bbcsv.h"
#include "models/metrics.h"
#include "models/ntam_data.h"

typedef struct {
    const char *name;      /* row label */
    metrics_t m;           /* over the scored samples */
    float thr;             /* alarm threshold used for lead times */
    int64_t failed;        /* failed devices with a scored sample */
    int64_t detected;      /* of them, alarmed within max_lead days before failing */
    double lead_p25, lead_median, lead_p75; /* days, over detected devices (NaN if none) */
} ntam_eval_row_t;

/* Metrics of prob over d's scored samples, and lead times at thr (look-back max_lead days).
 * Returns 0, METRICS_EINVAL (no scored sample) or NTAM_ENOMEM. */
int ntam_eval_score(const ntam_data_t *d, const float *prob, float thr, int32_t max_lead,
                    const char *name, ntam_eval_row_t *out);

/* Best-F1 threshold of prob on d's scored samples (0.5 if there is none). */
float ntam_eval_threshold(const ntam_data_t *d, const float *prob);

/* The metrics table. */
void ntam_eval_print(FILE *f, const ntam_eval_row_t *rows, int n);

/* Precision-recall curves of several scorers on d as an SVG file. 0 or NTAM_EIO/NTAM_ENOMEM. */
int ntam_eval_plot_svg(const char *path, const ntam_data_t *d, const float *const *probs,
                       const char *const *names, int n);

/* Every scored sample: serial, date, probability, label (and the baselines' scores). */
int ntam_eval_write_predictions(const char *path, const bbcsv_t *t, const ntam_data_t *d,
                                const float *const *probs, const char *const *names, int n);

#endif
