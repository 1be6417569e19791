/*
 * metrics.h — evaluation metrics for failure prediction: PR-AUC (average precision), ROC-AUC,
 * best F1 and its threshold, recall at fixed false-positive rates, precision-recall curves, and
 * the lead-time distribution (days between the first alarm and the failure).
 *
 * Scores are "higher = more likely to fail"; a threshold τ predicts positive for score ≥ τ.
 * Tied scores are one threshold (no credit from the order of ties). Nothing here allocates:
 * callers pass a workspace of metrics_workspace_size(n) bytes, so the training loop can compute
 * validation PR-AUC without allocating.
 */
#ifndef AUGUR_MODELS_METRICS_H
#define AUGUR_MODELS_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum { METRICS_OK = 0, METRICS_EINVAL = -1 };

typedef struct {
    size_t n;              /* scored examples */
    size_t n_pos;          /* positives among them */
    double pr_auc;         /* average precision: Σ_k (R_k − R_{k−1})·P_k over thresholds */
    double roc_auc;        /* area under ROC (ties count one half) */
    double best_f1;        /* largest F1 over thresholds */
    double best_f1_thr;    /* its threshold (the highest one on a tie) */
    double best_f1_prec;   /* precision at that threshold */
    double best_f1_recall; /* recall at that threshold */
    double recall_fpr001;  /* best recall with false-positive rate ≤ 0.1 % */
    double recall_fpr01;   /* best recall with false-positive rate ≤ 1 % */
    double thr_fpr01;      /* the threshold reaching recall_fpr01 (+inf if none) */
} metrics_t;

/* Workspace bytes for n examples. */
size_t metrics_workspace_size(size_t n);

/* All of metrics_t for scores/labels (label ≠ 0 = positive). With no positives or no negatives
 * the AUCs are 0 (PR) / 0.5 (ROC). Returns 0, or METRICS_EINVAL (NULL pointers, n = 0, NaN
 * score). */
int metrics_compute(const float *score, const uint8_t *label, size_t n, void *ws,
                    metrics_t *out);

/* Only the PR-AUC (for early stopping): same rules; returns -1 on invalid input. */
double metrics_pr_auc(const float *score, const uint8_t *label, size_t n, void *ws);

/* Precision-recall curve, one point per distinct threshold from the highest score down:
 * precision[k], recall[k], thr[k] (each array n entries). Returns the number of points or
 * METRICS_EINVAL. */
int64_t metrics_pr_curve(const float *score, const uint8_t *label, size_t n, void *ws,
                         float *precision, float *recall, float *thr);

/* Lead times. Every example is a device-day: device dev[k] (0 ≤ dev < n_dev), day day[k],
 * score score[k]. fail_day[d] is the day device d failed, or INT32_MIN if it did not. For each
 * failed device the first alarm is the earliest day t with fail_day − max_lead ≤ t ≤ fail_day
 * and score ≥ thr; lead[d] gets fail_day − t in days (0: alarm on the failure day itself), or
 * -1 (not detected or not failed).
 * Returns the number of failed devices detected, or METRICS_EINVAL. */
int64_t metrics_lead_times(const int32_t *dev, const int32_t *day, const float *score, size_t n,
                           const int32_t *fail_day, int32_t n_dev, float thr, int32_t max_lead,
                           int32_t *lead);

/* Quantile q ∈ [0,1] of the non-negative entries of v (length n), by linear interpolation; sorts
 * v in place (negative entries first). NaN if there are none. */
double metrics_quantile_i32(int32_t *v, size_t n, double q);

#endif
