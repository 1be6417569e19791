/*
 * ntam_train.c — training loop, batched scoring, logistic-regression baseline.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/metrics.h"
#include "models/ntam_train.h"

void ntam_train_cfg_default(ntam_train_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    ntam_opt_default(&c->opt);
    c->epochs = 30;
    c->patience = 6;
    c->batch_dev = 256;
    c->pos_repeat = 1;
    c->seed = 1;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Scoring with caller buffers: ws (ws_size bytes), node_off (chunk_dev + 1 entries). */
static int predict_ws(const ntam_t *m, const ntam_data_t *d, int32_t chunk_dev, void *ws,
                      size_t ws_size, int32_t *node_off, float *logit_buf, float *prob)
{
    const size_t WF = (size_t)d->W * d->F;
    size_t g = 0;
    while (g < d->n_groups) {
        size_t s0 = d->goff[g], e = s0;
        int32_t nn = 0;
        node_off[0] = 0;
        while (g < d->n_groups &&
               (nn == 0 || (int64_t)(d->goff[g + 1] - s0) <= (int64_t)chunk_dev)) {
            e = d->goff[g + 1];
            node_off[++nn] = (int32_t)(e - s0);
            g++;
        }
        ntam_batch_t b = {(int32_t)(e - s0), nn, node_off, d->x + s0 * WF, d->tmask + s0 * d->W,
                          NULL, NULL};
        int rc = ntam_forward(m, &b, ws, ws_size, logit_buf);
        if (rc) return rc;
        for (size_t i = s0; i < e; i++) prob[i] = ntam_sigmoid(logit_buf[i - s0]);
    }
    return 0;
}

static int32_t chunk_for(const ntam_data_t *d, int32_t chunk_dev)
{
    return chunk_dev > d->max_group ? chunk_dev : d->max_group;
}

int ntam_predict(const ntam_t *m, const ntam_data_t *d, int32_t chunk_dev, float *prob)
{
    if (!m || !d || !prob || chunk_dev < 1) return NTAM_EINVAL;
    if (d->F != ntam_hparams(m)->n_features || d->W != ntam_hparams(m)->window) return NTAM_EINVAL;
    if (!d->n) return 0;
    int32_t cd = chunk_for(d, chunk_dev);
    size_t wsz = ntam_workspace_size(ntam_hparams(m), cd, d->max_group ? d->max_group : 1);
    void *ws = malloc(wsz);
    int32_t *no = malloc(((size_t)cd + 1) * sizeof *no);
    float *lb = malloc((size_t)cd * sizeof *lb);
    int rc = NTAM_ENOMEM;
    if (ws && no && lb) rc = predict_ws(m, d, cd, ws, wsz, no, lb, prob);
    free(ws);
    free(no);
    free(lb);
    return rc;
}

float ntam_lr_factor(int32_t schedule, int64_t s, int64_t total)
{
    if (schedule != NTAM_LR_COSINE || total < 1) return 1.0f;
    if (s < 0) s = 0;
    if (s > total) s = total;
    return (float)(0.5 * (1.0 + cos(3.14159265358979323846 * (double)s / (double)total)));
}

int ntam_train_run(ntam_t *m, const ntam_train_cfg_t *c, const ntam_data_t *tr,
                   const ntam_data_t *val, ntam_train_result_t *res)
{
    if (!m || !c || !tr || !res || c->epochs < 1 || c->batch_dev < 1) return NTAM_EINVAL;
    const ntam_hparams_t *hp = ntam_hparams(m);
    if (tr->F != hp->n_features || tr->W != hp->window) return NTAM_EINVAL;
    if (val && (val->F != tr->F || val->W != tr->W)) return NTAM_EINVAL;
    if (!tr->n_pos && !tr->n_neg) return NTAM_EINVAL;
    memset(res, 0, sizeof *res);
    const size_t WF = (size_t)tr->W * tr->F;
    const int rep = c->pos_repeat > 1 ? c->pos_repeat : 1;
    int32_t maxg = tr->max_group, cd = chunk_for(tr, c->batch_dev);
    int32_t vmaxg = val ? val->max_group : 1;
    int32_t bcap = cd + maxg; /* a batch may overshoot by one group */
    int32_t wdev = bcap, wnode = maxg > vmaxg ? maxg : vmaxg;
    if (val && chunk_for(val, c->batch_dev) > wdev) wdev = chunk_for(val, c->batch_dev);
    /* everything up front */
    size_t n_order = 0;
    for (size_t g = 0; g < tr->n_groups; g++) {
        int pos = 0, scored = 0;
        for (size_t i = tr->goff[g]; i < tr->goff[g + 1]; i++) {
            pos |= tr->y[i] > 0 && tr->w[i] > 0;
            scored |= tr->w[i] > 0;
        }
        if (scored) n_order += pos ? (size_t)rep : 1;
    }
    size_t wsz = ntam_workspace_size(hp, wdev, wnode);
    void *ws = malloc(wsz);
    size_t *order = malloc((n_order ? n_order : 1) * sizeof *order);
    float *bx = malloc((size_t)bcap * WF * sizeof *bx), *by = malloc((size_t)bcap * sizeof *by);
    float *bw = malloc((size_t)bcap * sizeof *bw);
    uint8_t *btm = malloc((size_t)bcap * tr->W);
    int32_t *boff = malloc(((size_t)wdev + 2) * sizeof *boff);
    float *lbuf = malloc((size_t)wdev * sizeof *lbuf);
    size_t np = ntam_param_count(m);
    float *best = malloc(np * sizeof *best);
    const int use_ema = c->ema > 0 && c->ema < 1;
    float *avg = use_ema ? malloc(np * sizeof *avg) : NULL,
          *cur = use_ema ? malloc(np * sizeof *cur) : NULL;
    float *vprob = val && val->n ? malloc(val->n * sizeof *vprob) : NULL;
    uint8_t *vlab = val && val->n ? malloc(val->n) : NULL;
    size_t n_vs = 0;
    if (val)
        for (size_t i = 0; i < val->n; i++) n_vs += val->w[i] > 0;
    float *vs_score = n_vs ? malloc(n_vs * sizeof(float)) : NULL;
    void *mws = n_vs ? malloc(metrics_workspace_size(n_vs)) : NULL;
    int rc = NTAM_ENOMEM;
    if (!ws || !order || !bx || !by || !bw || !btm || !boff || !lbuf || !best ||
        (use_ema && (!avg || !cur)) || (val && val->n && (!vprob || !vlab)) ||
        (n_vs && (!vs_score || !mws)))
        goto out;
    {
        size_t k = 0;
        for (size_t g = 0; g < tr->n_groups; g++) {
            int pos = 0, scored = 0;
            for (size_t i = tr->goff[g]; i < tr->goff[g + 1]; i++) {
                pos |= tr->y[i] > 0 && tr->w[i] > 0;
                scored |= tr->w[i] > 0;
            }
            if (!scored) continue;
            for (int r = 0; r < (pos ? rep : 1); r++) order[k++] = g;
        }
    }
    if (val) {
        size_t k = 0;
        for (size_t i = 0; i < val->n; i++)
            if (val->w[i] > 0) vlab[k++] = val->y[i] > 0;
    }
    memcpy(best, ntam_params(m), np * sizeof *best);
    if (use_ema) memcpy(avg, ntam_params(m), np * sizeof *avg);
    res->best_val_pr_auc = -1;
    uint64_t rs = c->seed ^ 0x7472616e5eedULL;
    int64_t batches = 0;
    {
        /* batches per epoch (for progress): count by simulation of the fill rule */
        int64_t nb = 0;
        int32_t fill = 0;
        for (size_t k = 0; k < n_order; k++) {
            fill += (int32_t)(tr->goff[order[k] + 1] - tr->goff[order[k]]);
            if (fill >= c->batch_dev) nb++, fill = 0;
        }
        batches = nb + (fill > 0);
    }
    int32_t since_best = 0;
    ntam_opt_t opt = c->opt;
    const int64_t total_steps = (int64_t)c->epochs * batches;
    for (int32_t ep = 1; ep <= c->epochs; ep++) {
        for (size_t k = n_order; k > 1; k--) {
            size_t j = (size_t)(rng_next(&rs) % k);
            size_t tmp = order[k - 1];
            order[k - 1] = order[j];
            order[j] = tmp;
        }
        double lsum = 0;
        int64_t bi = 0;
        size_t k = 0;
        while (k < n_order) {
            int32_t nd = 0, nn = 0;
            boff[0] = 0;
            while (k < n_order && nd < c->batch_dev) {
                size_t g = order[k++], s0 = tr->goff[g], e = tr->goff[g + 1];
                size_t cnt = e - s0;
                memcpy(bx + (size_t)nd * WF, tr->x + s0 * WF, cnt * WF * sizeof(float));
                memcpy(btm + (size_t)nd * tr->W, tr->tmask + s0 * tr->W, cnt * tr->W);
                memcpy(by + nd, tr->y + s0, cnt * sizeof(float));
                memcpy(bw + nd, tr->w + s0, cnt * sizeof(float));
                nd += (int32_t)cnt;
                boff[++nn] = nd;
            }
            ntam_batch_t b = {nd, nn, boff, bx, btm, by, bw};
            float loss = 0;
            opt.lr = c->opt.lr * ntam_lr_factor(c->lr_schedule, res->steps, total_steps);
            int r = ntam_train_step(m, &opt, &b, ws, wsz, &loss);
            if (r == NTAM_ENUMERIC) res->skipped_steps++;
            else if (r) {
                rc = r;
                goto out;
            }
            res->steps++;
            bi++;
            if (r == 0) lsum += loss;
            if (use_ema && r == 0) {
                const float *w = ntam_params(m), a = c->ema;
                for (size_t j = 0; j < np; j++)
                    avg[j] = a * avg[j] + (1.0f - a) * w[j];
            }
            if (c->progress) {
                ntam_progress_t pr = {ep, c->epochs, bi, batches, (float)(lsum / (double)bi),
                                      -1, res->best_val_pr_auc, 0};
                c->progress(c->ctx, &pr);
            }
        }
        res->epochs_run = ep;
        if (use_ema) { /* validate (and keep) the averaged weights */
            memcpy(cur, ntam_params(m), np * sizeof *cur);
            memcpy(ntam_params(m), avg, np * sizeof *avg);
        }
        double vpr = -1;
        if (n_vs) {
            int32_t vcd = chunk_for(val, c->batch_dev);
            rc = predict_ws(m, val, vcd, ws, wsz, boff, lbuf, vprob);
            if (rc) goto out;
            size_t q = 0;
            for (size_t i = 0; i < val->n; i++)
                if (val->w[i] > 0) vs_score[q++] = vprob[i];
            vpr = metrics_pr_auc(vs_score, vlab, n_vs, mws);
        }
        if (!n_vs || vpr > res->best_val_pr_auc) {
            res->best_val_pr_auc = vpr;
            res->best_epoch = ep;
            memcpy(best, ntam_params(m), np * sizeof *best);
            since_best = 0;
        } else {
            since_best++;
        }
        if (use_ema) memcpy(ntam_params(m), cur, np * sizeof *cur);
        if (c->progress) {
            ntam_progress_t pr = {ep,  c->epochs, bi, batches, (float)(lsum / (double)(bi ? bi : 1)),
                                  vpr, res->best_val_pr_auc, 1};
            c->progress(c->ctx, &pr);
        }
        if (n_vs && since_best >= c->patience) break;
    }
    memcpy(ntam_params(m), best, np * sizeof *best);
    rc = 0;
out:
    free(ws);
    free(order);
    free(bx);
    free(by);
    free(bw);
    free(btm);
    free(boff);
    free(lbuf);
    free(best);
    free(avg);
    free(cur);
    free(vprob);
    free(vlab);
    free(vs_score);
    free(mws);
    return rc;
}

/* ---- logistic regression ---- */

int ntam_logreg_fit(const ntam_data_t *tr, float pos_weight, float l2, int iters, float *w)
{
    if (!tr || !w || iters < 1) return NTAM_EINVAL;
    const int D = tr->W * tr->F;
    size_t n = tr->n;
    float *p = malloc((n ? n : 1) * sizeof *p), *g = malloc(((size_t)D + 1) * sizeof *g);
    float *mo = calloc((size_t)D + 1, sizeof *mo), *vo = calloc((size_t)D + 1, sizeof *vo);
    if (!p || !g || !mo || !vo) {
        free(p);
        free(g);
        free(mo);
        free(vo);
        return NTAM_ENOMEM;
    }
    double sw = 0;
    for (size_t i = 0; i < n; i++) sw += tr->w[i] * (tr->y[i] > 0 ? pos_weight : 1);
    if (sw <= 0) sw = 1;
    memset(w, 0, ((size_t)D + 1) * sizeof *w);
    const float lr = 0.05f, b1 = 0.9f, b2 = 0.999f;
    for (int it = 1; it <= iters; it++) {
        /* p = X·w (GEMV n×D), residual r_i = weight_i·(σ − y)/Σweight */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, D, 1.0f, tr->x, D, w, 1, 0.0f, p, 1);
        for (size_t i = 0; i < n; i++) {
            float s = ntam_sigmoid(p[i] + w[D]);
            float wi = tr->w[i] * (tr->y[i] > 0 ? pos_weight : 1);
            p[i] = (float)(wi * (s - tr->y[i]) / sw);
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, D, 1.0f, tr->x, D, p, 1, 0.0f, g, 1);
        g[D] = 0;
        for (size_t i = 0; i < n; i++) g[D] += p[i];
        for (int j = 0; j < D; j++) g[j] += l2 * w[j];
        float c1 = 1 / (1 - powf(b1, (float)it)), c2 = 1 / (1 - powf(b2, (float)it));
        for (int j = 0; j <= D; j++) {
            mo[j] = b1 * mo[j] + (1 - b1) * g[j];
            vo[j] = b2 * vo[j] + (1 - b2) * g[j] * g[j];
            w[j] -= lr * (mo[j] * c1) / (sqrtf(vo[j] * c2) + 1e-8f);
        }
    }
    free(p);
    free(g);
    free(mo);
    free(vo);
    return 0;
}

void ntam_logreg_predict(const ntam_data_t *d, const float *w, float *prob)
{
    const int D = d->W * d->F;
    if (!d->n) return;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)d->n, D, 1.0f, d->x, D, w, 1, 0.0f, prob, 1);
    for (size_t i = 0; i < d->n; i++) prob[i] = ntam_sigmoid(prob[i] + w[D]);
}
