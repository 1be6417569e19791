/*
 * metrics.c — ranking metrics over (score, label) pairs and lead times.
 *
 * Everything ranks the examples once by descending score (a merge sort of indices in the
 * caller's workspace: stable and O(n log n) with no allocation), then walks the distinct
 * thresholds accumulating true and false positives.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/metrics.h"

size_t metrics_workspace_size(size_t n)
{
    return 2 * n * sizeof(uint32_t) + 64;
}

/* idx ← indices of score sorted by descending score (stable). tmp: n scratch entries. */
static void rank_desc(const float *score, size_t n, uint32_t *idx, uint32_t *tmp)
{
    for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) tmp[o++] = score[idx[b]] > score[idx[a]] ? idx[b++] : idx[a++];
            while (a < mid) tmp[o++] = idx[a++];
            while (b < hi) tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

static int check_in(const float *score, const uint8_t *label, size_t n, void *ws)
{
    if (!score || !label || !ws || n == 0 || n > UINT32_MAX) return METRICS_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (isnan(score[i])) return METRICS_EINVAL;
    return 0;
}

int metrics_compute(const float *score, const uint8_t *label, size_t n, void *ws, metrics_t *out)
{
    if (!out || check_in(score, label, n, ws)) return METRICS_EINVAL;
    memset(out, 0, sizeof *out);
    uint32_t *idx = ws, *tmp = idx + n;
    rank_desc(score, n, idx, tmp);
    size_t P = 0;
    for (size_t i = 0; i < n; i++) P += label[i] != 0;
    size_t N = n - P;
    out->n = n;
    out->n_pos = P;
    out->roc_auc = 0.5;
    out->thr_fpr01 = INFINITY;
    if (P == 0 || N == 0) return 0;
    size_t tp = 0, fp = 0;
    double ap = 0, auc = 0, prev_r = 0;
    for (size_t k = 0; k < n;) {
        float s = score[idx[k]];
        size_t tp0 = tp, fp0 = fp;
        while (k < n && score[idx[k]] == s) {
            if (label[idx[k]]) tp++;
            else fp++;
            k++;
        }
        double r = (double)tp / (double)P, p = (double)tp / (double)(tp + fp);
        ap += (r - prev_r) * p;
        prev_r = r;
        /* ROC: this group's negatives outrank the positives below; ties count half */
        auc += (double)(fp - fp0) * ((double)tp0 + 0.5 * (double)(tp - tp0));
        double f1 = tp ? 2 * p * r / (p + r) : 0;
        if (f1 > out->best_f1) {
            out->best_f1 = f1;
            out->best_f1_thr = s;
            out->best_f1_prec = p;
            out->best_f1_recall = r;
        }
        double fpr = (double)fp / (double)N;
        if (fpr <= 0.001 && r > out->recall_fpr001) out->recall_fpr001 = r;
        if (fpr <= 0.01 && r > out->recall_fpr01) {
            out->recall_fpr01 = r;
            out->thr_fpr01 = s;
        }
    }
    out->pr_auc = ap;
    out->roc_auc = auc / ((double)P * (double)N);
    return 0;
}

double metrics_pr_auc(const float *score, const uint8_t *label, size_t n, void *ws)
{
    metrics_t m;
    if (metrics_compute(score, label, n, ws, &m)) return -1;
    return m.pr_auc;
}

int64_t metrics_pr_curve(const float *score, const uint8_t *label, size_t n, void *ws,
                         float *precision, float *recall, float *thr)
{
    if (!precision || !recall || !thr || check_in(score, label, n, ws)) return METRICS_EINVAL;
    uint32_t *idx = ws, *tmp = idx + n;
    rank_desc(score, n, idx, tmp);
    size_t P = 0;
    for (size_t i = 0; i < n; i++) P += label[i] != 0;
    size_t tp = 0, fp = 0;
    int64_t m = 0;
    for (size_t k = 0; k < n;) {
        float s = score[idx[k]];
        while (k < n && score[idx[k]] == s) {
            if (label[idx[k]]) tp++;
            else fp++;
            k++;
        }
        precision[m] = (float)tp / (float)(tp + fp);
        recall[m] = P ? (float)tp / (float)P : 0.0f;
        thr[m] = s;
        m++;
    }
    return m;
}

int64_t metrics_lead_times(const int32_t *dev, const int32_t *day, const float *score, size_t n,
                           const int32_t *fail_day, int32_t n_dev, float thr, int32_t max_lead,
                           int32_t *lead)
{
    if (!dev || !day || !score || !fail_day || !lead || n_dev < 0 || max_lead < 1)
        return METRICS_EINVAL;
    for (int32_t d = 0; d < n_dev; d++) lead[d] = -1;
    for (size_t k = 0; k < n; k++) {
        int32_t d = dev[k];
        if (d < 0 || d >= n_dev) return METRICS_EINVAL;
        int32_t f = fail_day[d];
        if (f == INT32_MIN || score[k] < thr) continue;
        int64_t l = (int64_t)f - day[k];
        if (l < 0 || l > max_lead) continue;
        if (l > lead[d]) lead[d] = (int32_t)l;
    }
    int64_t hit = 0;
    for (int32_t d = 0; d < n_dev; d++) hit += lead[d] >= 0;
    return hit;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

double metrics_quantile_i32(int32_t *v, size_t n, double q)
{
    if (!v || n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_i32);
    size_t s = 0;
    while (s < n && v[s] < 0) s++;
    size_t m = n - s;
    if (m == 0) return NAN;
    if (q <= 0) return v[s];
    if (q >= 1) return v[n - 1];
    double pos = q * (double)(m - 1);
    size_t lo = (size_t)pos;
    double fr = pos - (double)lo;
    if (lo + 1 >= m) return v[s + lo];
    return v[s + lo] * (1 - fr) + v[s + lo + 1] * fr;
}
