/*
 * ntam_data.c — windows, labels, groups and the split from a Backblaze CSV table (see
 * ntam_data.h for the protocol).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/ntam_data.h"

void ntam_protocol_default(ntam_protocol_t *p)
{
    memset(p, 0, sizeof *p);
    p->window = 14;
    p->horizon = 7;
    p->features = NTAM_FEAT_LEAKFREE;
    p->negatives = NTAM_NEG_ALL;
    p->folds = 5;
    p->fold = 0;
    p->split_seed = 1;
    p->scope = 0;
    p->scope_cap = 128;
}

void ntam_data_free(ntam_data_t *d)
{
    if (!d) return;
    free(d->x);
    free(d->tmask);
    free(d->y);
    free(d->w);
    free(d->dev);
    free(d->day);
    free(d->rule);
    free(d->goff);
    free(d->fail_day);
    free(d->feature);
    memset(d, 0, sizeof *d);
}

static int leaky_attr(int a)
{
    static const int bad[] = {1, 4, 7, 9, 12, 191, 192, 193, 195, 222, 240, 241, 242, 190, 194};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (a == bad[i]) return 1;
    return 0;
}

typedef struct {
    int32_t day;
    int32_t row;
} dayrow_t;

static int cmp_dayrow(const void *a, const void *b)
{
    const dayrow_t *x = a, *y = b;
    return (x->day > y->day) - (x->day < y->day);
}

typedef struct {
    int32_t node, day, dev;
    int8_t status; /* 1 pos, 0 neg, -1 context */
} cand_t;

static int cmp_cand(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->node != y->node) return (x->node > y->node) - (x->node < y->node);
    if (x->day != y->day) return (x->day > y->day) - (x->day < y->day);
    return (x->dev > y->dev) - (x->dev < y->dev);
}

typedef struct {
    uint64_t h;
    int32_t dev;
} hdev_t;

static int cmp_hdev(const void *a, const void *b)
{
    const hdev_t *x = a, *y = b;
    if (x->h != y->h) return (x->h > y->h) - (x->h < y->h);
    return (x->dev > y->dev) - (x->dev < y->dev);
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t serial_hash(const char *s, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ mix(seed + 0x9e3779b97f4a7c15ULL);
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return mix(h);
}

int ntam_data_build(const bbcsv_t *t, const ntam_protocol_t *p, int part, ntam_data_t *out,
                    char *err, size_t errlen)
{
    char dummy[8];
    if (!err) err = dummy, errlen = sizeof dummy;
    err[0] = 0;
    memset(out, 0, sizeof *out);
    if (!t || !p || p->window < 1 || p->window > 366 || p->horizon < 0 || p->folds < 0 ||
        (p->folds && (p->folds < 3 || p->fold < 0 || p->fold >= p->folds)) || p->holdout_days < 0 ||
        (part != NTAM_PART_ALL && !p->folds && !p->holdout_days)) {
        snprintf(err, errlen, "invalid protocol (window 1..366, horizon ≥ 0, folds 0 or ≥ 3)");
        return NTAM_EINVAL;
    }
    if (p->scope != 0) {
        snprintf(err, errlen,
                 "neighbourhood scope rack or pod needs a store directory or simulator source "
                 "(Backblaze CSV rows are grouped by pod_id, one server: scope node); import "
                 "the CSV into a store with augur import backblaze, whose pod label is the "
                 "vault, and train on the store");
        return NTAM_EINVAL;
    }
    const int W = p->window, H = p->horizon, min_obs = p->min_obs > 0 ? p->min_obs : W;
    int attrs[BBCSV_MAX_ATTR], na = 0;
    for (int a = 1; a < BBCSV_MAX_ATTR; a++) {
        if (!t->raw[a]) continue;
        if (p->features == NTAM_FEAT_LEAKFREE && leaky_attr(a)) continue;
        size_t seen = 0;
        for (size_t r = 0; r < t->n_rows; r++) seen += !isnan(t->raw[a][r]);
        if (seen) attrs[na++] = a;
    }
    if (!na || !t->n_rows) {
        snprintf(err, errlen, "no usable SMART attribute columns (or no rows)");
        return NTAM_EINVAL;
    }
    const int F = W > 1 ? 2 * na : na;
    int rc = NTAM_ENOMEM;
    int32_t nd = t->n_dev;
    size_t *doff = calloc((size_t)nd + 1, sizeof *doff);
    dayrow_t *dr = malloc(t->n_rows * sizeof *dr);
    int32_t *fail = malloc((size_t)nd * sizeof *fail), *last = malloc((size_t)nd * sizeof *last);
    int32_t *foldof = malloc((size_t)nd * sizeof *foldof);
    hdev_t *hd = malloc((size_t)nd * sizeof *hd);
    cand_t *cand = NULL;
    if (!doff || !dr || !fail || !last || !foldof || !hd) goto out;
    /* rows of each device, by day */
    for (size_t r = 0; r < t->n_rows; r++) doff[t->dev[r] + 1]++;
    for (int32_t d = 0; d < nd; d++) doff[d + 1] += doff[d];
    {
        size_t *pos = malloc((size_t)nd * sizeof *pos);
        if (!pos) goto out;
        memcpy(pos, doff, (size_t)nd * sizeof *pos);
        for (size_t r = 0; r < t->n_rows; r++)
            dr[pos[t->dev[r]]++] = (dayrow_t){t->day[r], (int32_t)r};
        free(pos);
    }
    int32_t end = INT32_MIN;
    for (int32_t d = 0; d < nd; d++) {
        qsort(dr + doff[d], doff[d + 1] - doff[d], sizeof *dr, cmp_dayrow);
        fail[d] = INT32_MIN;
        last[d] = INT32_MIN;
        for (size_t k = doff[d]; k < doff[d + 1]; k++) {
            if (t->failure[dr[k].row]) fail[d] = dr[k].day;
            if (dr[k].day > last[d]) last[d] = dr[k].day;
        }
        if (last[d] > end) end = last[d];
    }
    /* device folds: failed and healthy dealt separately in hash order */
    for (int32_t d = 0; d < nd; d++) foldof[d] = 0;
    if (p->folds) {
        for (int pass = 0; pass < 2; pass++) {
            int32_t m = 0;
            for (int32_t d = 0; d < nd; d++)
                if ((fail[d] != INT32_MIN) == (pass == 0))
                    hd[m++] = (hdev_t){serial_hash(t->serial[d], p->split_seed), d};
            qsort(hd, (size_t)m, sizeof *hd, cmp_hdev);
            for (int32_t k = 0; k < m; k++) foldof[hd[k].dev] = k % p->folds;
        }
    }
    const int32_t cut = p->holdout_days ? end - p->holdout_days : INT32_MAX;
    /* candidates */
    size_t nc = 0;
    cand = malloc(t->n_rows * sizeof *cand);
    if (!cand) goto out;
    for (int32_t d = 0; d < nd; d++) {
        int in_part = 1;
        if (p->folds && part != NTAM_PART_ALL) {
            int f = foldof[d], tf = p->fold, vf = (p->fold + 1) % p->folds;
            in_part = part == NTAM_PART_TEST ? f == tf : part == NTAM_PART_VAL ? f == vf
                                                                               : f != tf && f != vf;
        }
        size_t a = doff[d];
        for (size_t k = doff[d]; k < doff[d + 1]; k++) {
            int32_t day = dr[k].day;
            if (fail[d] != INT32_MIN && day > fail[d]) continue;
            /* time split */
            if (p->holdout_days && part == NTAM_PART_TRAIN && day > cut) continue;
            if (p->holdout_days && (part == NTAM_PART_VAL || part == NTAM_PART_TEST) && day <= cut)
                continue;
            while (a < k && dr[a].day <= day - W) a++;
            if ((int)(k - a + 1) < min_obs) continue;
            int8_t st;
            int32_t known = last[d];
            if (p->holdout_days && part == NTAM_PART_TRAIN && known > cut) known = cut;
            if (fail[d] != INT32_MIN && (!p->holdout_days || part != NTAM_PART_TRAIN ||
                                         fail[d] <= cut || fail[d] - day <= H)) {
                int32_t lead = fail[d] - day;
                if (H == 0) st = lead == 0 ? 1 : (p->negatives == NTAM_NEG_ALL ? 0 : -1);
                else if (lead == 0) st = -1;
                else if (lead <= H) st = 1;
                else st = p->negatives == NTAM_NEG_ALL ? 0 : -1;
                if (p->holdout_days && part == NTAM_PART_TRAIN && st == 1 && fail[d] > cut)
                    st = -1; /* failure after the cut: unknown at training time */
            } else {
                st = (int64_t)day + H <= known ? 0 : -1;
            }
            if (p->holdout_days && part == NTAM_PART_TRAIN && st == 0 && (int64_t)day + H > cut)
                st = -1;
            if (!in_part) st = -1;
            cand[nc++] = (cand_t){t->dev_node[d], day, d, st};
        }
    }
    qsort(cand, nc, sizeof *cand, cmp_cand);
    /* keep groups with a scored sample */
    size_t keep = 0, ngroups = 0;
    for (size_t i = 0; i < nc;) {
        size_t j = i;
        int scored = 0;
        while (j < nc && cand[j].node == cand[i].node && cand[j].day == cand[i].day)
            scored |= cand[j++].status >= 0;
        if (scored) {
            memmove(cand + keep, cand + i, (j - i) * sizeof *cand);
            keep += j - i;
            ngroups++;
        }
        i = j;
    }
    out->W = W;
    out->F = F;
    out->n = keep;
    out->n_groups = ngroups;
    out->n_dev_src = nd;
    size_t n = keep ? keep : 1;
    out->x = calloc(n * (size_t)W * F, sizeof(float));
    out->tmask = calloc(n * (size_t)W, 1);
    out->y = calloc(n, sizeof(float));
    out->w = calloc(n, sizeof(float));
    out->dev = calloc(n, sizeof(int32_t));
    out->day = calloc(n, sizeof(int32_t));
    out->rule = calloc(n, 1);
    out->goff = calloc(ngroups + 1, sizeof(size_t));
    out->fail_day = malloc((size_t)(nd ? nd : 1) * sizeof(int32_t));
    out->feature = calloc((size_t)F, sizeof *out->feature);
    if (!out->x || !out->tmask || !out->y || !out->w || !out->dev || !out->day || !out->rule ||
        !out->goff || !out->fail_day || !out->feature)
        goto out;
    memcpy(out->fail_day, fail, (size_t)nd * sizeof(int32_t));
    for (int i = 0; i < na; i++) {
        snprintf(out->feature[i], NTAM_FEATURE_NAME, "log1p_smart_%d_raw", attrs[i]);
        if (W > 1) snprintf(out->feature[na + i], NTAM_FEATURE_NAME, "delta_log1p_smart_%d_raw", attrs[i]);
    }
    size_t g = 0;
    for (size_t i = 0; i < keep; i++) {
        if (i == 0 || cand[i].node != cand[i - 1].node || cand[i].day != cand[i - 1].day) {
            out->goff[g++] = i;
        }
        const cand_t *c = &cand[i];
        out->y[i] = c->status == 1;
        out->w[i] = c->status >= 0;
        out->n_pos += c->status == 1;
        out->n_neg += c->status == 0;
        out->dev[i] = c->dev;
        out->day[i] = c->day;
        float *x = out->x + i * (size_t)W * F;
        uint8_t *tm = out->tmask + i * (size_t)W;
        /* walk the device's rows in the window */
        size_t a = doff[c->dev], e = doff[c->dev + 1];
        while (a < e && dr[a].day <= c->day - W) a++;
        float first[BBCSV_MAX_ATTR];
        int have_first = 0;
        for (size_t k = a; k < e && dr[k].day <= c->day; k++) {
            int s = W - 1 - (c->day - dr[k].day);
            int32_t r = dr[k].row;
            tm[s] = 1;
            for (int j = 0; j < na; j++) {
                float v = t->raw[attrs[j]][r];
                float lv = isnan(v) ? 0.0f : log1pf(v > 0 ? v : 0);
                x[s * F + j] = lv;
                if (!have_first) first[j] = lv;
                if (W > 1) x[s * F + na + j] = lv - first[j];
            }
            have_first = 1;
            if (dr[k].day == c->day) {
                static const int rule_attr[5] = {5, 187, 188, 197, 198};
                for (int q = 0; q < 5; q++) {
                    const float *col = t->raw[rule_attr[q]];
                    if (col && col[r] > 0) out->rule[i] = 1;
                }
            }
        }
    }
    out->goff[g] = keep;
    out->max_group = 0;
    for (size_t k = 0; k < ngroups; k++)
        if ((int32_t)(out->goff[k + 1] - out->goff[k]) > out->max_group)
            out->max_group = (int32_t)(out->goff[k + 1] - out->goff[k]);
    rc = 0;
out:
    if (rc) {
        ntam_data_free(out);
        if (!err[0]) snprintf(err, errlen, "out of memory");
    }
    free(cand);
    free(doff);
    free(dr);
    free(fail);
    free(last);
    free(foldof);
    free(hd);
    return rc;
}

void ntam_data_fit_norm(const ntam_data_t *d, float *mean, float *scale)
{
    const int W = d->W, F = d->F;
    for (int f = 0; f < F; f++) {
        double s = 0, s2 = 0, n = 0;
        for (size_t i = 0; i < d->n; i++) {
            if (d->w[i] <= 0) continue;
            for (int t = 0; t < W; t++) {
                if (!d->tmask[i * W + t]) continue;
                double v = d->x[(i * W + t) * F + f];
                s += v;
                s2 += v * v;
                n++;
            }
        }
        double m = n ? s / n : 0, var = n ? s2 / n - m * m : 0;
        mean[f] = (float)m;
        scale[f] = var > 1e-12 ? (float)(1 / sqrt(var)) : 1.0f;
    }
}

void ntam_data_apply_norm(ntam_data_t *d, const float *mean, const float *scale)
{
    const int W = d->W, F = d->F;
    for (size_t i = 0; i < d->n; i++)
        for (int t = 0; t < W; t++) {
            float *x = d->x + (i * W + t) * F;
            int obs = d->tmask[i * W + t];
            for (int f = 0; f < F; f++) x[f] = obs ? (x[f] - mean[f]) * scale[f] : 0.0f;
        }
}
