/*
 * ntam_eval.c — metrics rows, table, PR-curve SVG and predictions CSV.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/ntam.h"
#include "models/ntam_eval.h"

/* Scored samples of d: scores and labels into new arrays. */
static size_t gather(const ntam_data_t *d, const float *prob, float **s, uint8_t **y)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) n += d->w[i] > 0;
    *s = malloc((n ? n : 1) * sizeof **s);
    *y = malloc(n ? n : 1);
    if (!*s || !*y) return (size_t)-1;
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->w[i] > 0) {
            (*s)[k] = prob[i];
            (*y)[k++] = d->y[i] > 0;
        }
    return n;
}

float ntam_eval_threshold(const ntam_data_t *d, const float *prob)
{
    float *s;
    uint8_t *y;
    size_t n = gather(d, prob, &s, &y);
    float thr = 0.5f;
    if (n != (size_t)-1 && n) {
        void *ws = malloc(metrics_workspace_size(n));
        metrics_t m;
        if (ws && !metrics_compute(s, y, n, ws, &m) && m.best_f1 > 0) thr = (float)m.best_f1_thr;
        free(ws);
    }
    free(s);
    free(y);
    return thr;
}

int ntam_eval_score(const ntam_data_t *d, const float *prob, float thr, int32_t max_lead,
                    const char *name, ntam_eval_row_t *out)
{
    memset(out, 0, sizeof *out);
    out->name = name;
    out->thr = thr;
    float *s;
    uint8_t *y;
    size_t n = gather(d, prob, &s, &y);
    int rc = NTAM_ENOMEM;
    void *ws = NULL;
    int32_t *lead = NULL, *fail = NULL, *dev = NULL, *day = NULL;
    if (n == (size_t)-1) goto out;
    if (!n) {
        rc = METRICS_EINVAL;
        goto out;
    }
    ws = malloc(metrics_workspace_size(n));
    lead = malloc((size_t)d->n_dev_src * sizeof *lead + 1);
    fail = malloc((size_t)d->n_dev_src * sizeof *fail + 1);
    dev = malloc(n * sizeof *dev);
    day = malloc(n * sizeof *day);
    if (!ws || !lead || !fail || !dev || !day) goto out;
    rc = metrics_compute(s, y, n, ws, &out->m);
    if (rc) goto out;
    /* lead times over devices with a scored sample; failures only count if scored here */
    for (int32_t k = 0; k < d->n_dev_src; k++) fail[k] = INT32_MIN;
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (d->w[i] <= 0) continue;
        dev[k] = d->dev[i];
        day[k] = d->day[i];
        s[k] = prob[i];
        k++;
        if (d->fail_day[d->dev[i]] != INT32_MIN) fail[d->dev[i]] = d->fail_day[d->dev[i]];
    }
    for (int32_t q = 0; q < d->n_dev_src; q++) out->failed += fail[q] != INT32_MIN;
    int64_t hit = metrics_lead_times(dev, day, s, n, fail, d->n_dev_src, thr, max_lead, lead);
    out->detected = hit > 0 ? hit : 0;
    out->lead_p25 = metrics_quantile_i32(lead, (size_t)d->n_dev_src, 0.25);
    out->lead_median = metrics_quantile_i32(lead, (size_t)d->n_dev_src, 0.5);
    out->lead_p75 = metrics_quantile_i32(lead, (size_t)d->n_dev_src, 0.75);
    rc = 0;
out:
    if (n != (size_t)-1) {
        free(s);
        free(y);
    }
    free(ws);
    free(lead);
    free(fail);
    free(dev);
    free(day);
    return rc;
}

void ntam_eval_print(FILE *f, const ntam_eval_row_t *rows, int n)
{
    fprintf(f, "%-24s %7s %7s %7s %8s %9s %9s %10s %s\n", "scorer", "PR-AUC", "ROC-AUC", "bestF1",
            "F1-thr", "R@0.1%FPR", "R@1%FPR", "detected", "lead days p25/med/p75");
    for (int i = 0; i < n; i++) {
        const ntam_eval_row_t *r = &rows[i];
        char det[32];
        snprintf(det, sizeof det, "%lld/%lld", (long long)r->detected, (long long)r->failed);
        fprintf(f, "%-24s %7.3f %7.3f %7.3f %8.4f %9.3f %9.3f %10s ", r->name, r->m.pr_auc,
                r->m.roc_auc, r->m.best_f1, r->m.best_f1_thr, r->m.recall_fpr001,
                r->m.recall_fpr01, det);
        if (isnan(r->lead_median)) fprintf(f, "-\n");
        else fprintf(f, "%.1f/%.1f/%.1f\n", r->lead_p25, r->lead_median, r->lead_p75);
    }
}

int ntam_eval_plot_svg(const char *path, const ntam_data_t *d, const float *const *probs,
                       const char *const *names, int n)
{
    static const char *const colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"};
    FILE *f = fopen(path, "w");
    if (!f) return NTAM_EIO;
    const double X0 = 60, Y0 = 20, WD = 480, HT = 400;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"480\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"640\" height=\"480\" fill=\"white\"/>\n");
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"black\"/>\n",
            X0, Y0, WD, HT);
    for (int t = 0; t <= 10; t += 2) {
        double v = t / 10.0;
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.1f</text>\n", X0 + v * WD,
                Y0 + HT + 16, v);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.1f</text>\n", X0 - 6,
                Y0 + HT - v * HT + 4, v);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">recall</text>\n", X0 + WD / 2,
            Y0 + HT + 34);
    fprintf(f, "<text x=\"14\" y=\"%g\" transform=\"rotate(-90 14 %g)\" "
               "text-anchor=\"middle\">precision</text>\n",
            Y0 + HT / 2, Y0 + HT / 2);
    int rc = 0;
    for (int c = 0; c < n; c++) {
        float *s;
        uint8_t *y;
        size_t m = gather(d, probs[c], &s, &y);
        if (m == (size_t)-1 || !m) {
            if (m != (size_t)-1) free(s), free(y);
            rc = m ? NTAM_ENOMEM : 0;
            continue;
        }
        void *ws = malloc(metrics_workspace_size(m));
        float *pr = malloc(m * sizeof *pr), *rc_ = malloc(m * sizeof *rc_), *th = malloc(m * sizeof *th);
        metrics_t mt;
        if (ws && pr && rc_ && th && !metrics_compute(s, y, m, ws, &mt)) {
            int64_t k = metrics_pr_curve(s, y, m, ws, pr, rc_, th);
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                    colours[c % 5]);
            for (int64_t i = 0; i < k; i++)
                fprintf(f, "%.1f,%.1f ", X0 + rc_[i] * WD, Y0 + HT - pr[i] * HT);
            fprintf(f, "\"/>\n<text x=\"%g\" y=\"%g\" fill=\"%s\">%s (AP %.3f)</text>\n",
                    X0 + WD - 200, Y0 + 20 + 16 * c, colours[c % 5], names[c], mt.pr_auc);
        } else {
            rc = NTAM_ENOMEM;
        }
        free(ws);
        free(pr);
        free(rc_);
        free(th);
        free(s);
        free(y);
    }
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) rc = NTAM_EIO;
    return rc;
}

int ntam_eval_write_predictions(const char *path, const bbcsv_t *t, const ntam_data_t *d,
                                const float *const *probs, const char *const *names, int n)
{
    FILE *f = fopen(path, "w");
    if (!f) return NTAM_EIO;
    fprintf(f, "serial_number,date,probability,label");
    for (int c = 1; c < n; c++) fprintf(f, ",%s", names[c]);
    fprintf(f, "\n");
    for (size_t i = 0; i < d->n; i++) {
        if (d->w[i] <= 0) continue;
        char date[16];
        bbcsv_format_date(d->day[i], date);
        fprintf(f, "%s,%s,%.6g,%d", t->serial[d->dev[i]], date, probs[0][i], d->y[i] > 0);
        for (int c = 1; c < n; c++) fprintf(f, ",%.6g", probs[c][i]);
        fprintf(f, "\n");
    }
    return fclose(f) == 0 ? 0 : NTAM_EIO;
}
