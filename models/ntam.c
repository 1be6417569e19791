/*
 * ntam.c — NTAM model object, parameter layout, optimiser (AdamW, clipping, warm-up) and the
 * float/double instantiations of ntam_impl.h.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/ntam.h"

#define NTAM_MAX_BLOCKS 8

/* OpenBLAS extension (declared by its cblas.h, repeated here for other CBLAS headers). */
void openblas_set_num_threads(int num_threads);

static _Thread_local ntam_blas_trace_fn ntam_trace_fn_;
static _Thread_local void *ntam_trace_ctx_;

void ntam_set_blas_trace(ntam_blas_trace_fn fn, void *ctx)
{
    ntam_trace_fn_ = fn;
    ntam_trace_ctx_ = ctx;
}

const char *ntam_strerror(int err)
{
    switch (err) {
#define NTAM_STR_(name, code, msg)                                                                 \
    case code:                                                                                     \
        return msg;
        NTAM_ERRNO_MAP(NTAM_STR_)
#undef NTAM_STR_
    }
    return "unknown error";
}

void ntam_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}

float ntam_sigmoid(float z)
{
    if (z >= 0) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

void ntam_hparams_default(ntam_hparams_t *hp, int n_features, int window)
{
    memset(hp, 0, sizeof *hp);
    hp->n_features = n_features;
    hp->window = window;
    hp->d_model = 64;
    hp->n_blocks = 1;
    hp->d_ff = 128;
    hp->d_head = 64;
}

int ntam_hparams_check(const ntam_hparams_t *hp)
{
    if (!hp) return NTAM_EINVAL;
    if (hp->n_features < 1 || hp->n_features > 4096) return NTAM_EINVAL;
    if (hp->window < 1 || hp->window > 4096) return NTAM_EINVAL;
    if (hp->d_model < 1 || hp->d_model > 1024) return NTAM_EINVAL;
    if (hp->n_blocks < 1 || hp->n_blocks > NTAM_MAX_BLOCKS) return NTAM_EINVAL;
    if (hp->d_ff < 1 || hp->d_ff > 8192) return NTAM_EINVAL;
    if (hp->d_head < 1 || hp->d_head > 4096) return NTAM_EINVAL;
    if (hp->ablate_neighbours != 0 && hp->ablate_neighbours != 1) return NTAM_EINVAL;
    if (hp->nb_summary < 0 || hp->nb_summary > NTAM_NB_SUMMARY_ALL) return NTAM_EINVAL;
    return 0;
}

void ntam_opt_default(ntam_opt_t *o)
{
    memset(o, 0, sizeof *o);
    o->loss = NTAM_LOSS_BCE;
    o->pos_weight = 1.0f;
    o->focal_gamma = 2.0f;
    o->lr = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->weight_decay = 1e-4f;
    o->clip_norm = 1.0f;
    o->warmup = 50;
}

/* ---- parameter layout ---- */

int ntam_tensor_count(const ntam_hparams_t *hp)
{
    return 2 + 10 * hp->n_blocks + 8 + ((hp->nb_summary & NTAM_NB_SUMMARY_KV) ? 1 : 0);
}

int ntam_tensor_info(const ntam_hparams_t *hp, int k, ntam_tensor_t *out)
{
    static const char *const blk_names[10] = {"wqkv", "wo",   "ln1.gain", "ln1.bias", "ff1.w",
                                              "ff1.b", "ff2.w", "ff2.b",    "ln2.gain", "ln2.bias"};
    static char names[NTAM_MAX_BLOCKS][10][24];
    const int F = hp->n_features, d = hp->d_model, dff = hp->d_ff, dh = hp->d_head;
    /* window summary per device: into the keys/values, and (mean, max) into the head */
    const int S = (hp->nb_summary & NTAM_NB_SUMMARY_KV) ? 2 * F : 0;
    const int S2 = (hp->nb_summary & NTAM_NB_SUMMARY_HEAD) ? 4 * F : 0;
    int n = ntam_tensor_count(hp);
    if (k < 0 || k >= n) return NTAM_EINVAL;
    size_t off = 0;
    for (int i = 0; i <= k; i++) {
        ntam_tensor_t t = {0};
        if (i == 0) t = (ntam_tensor_t){"emb.w", 0, 0, F, d, 1};
        else if (i == 1) t = (ntam_tensor_t){"emb.b", 0, 0, 1, d, 0};
        else if (i < 2 + 10 * hp->n_blocks) {
            int l = (i - 2) / 10, j = (i - 2) % 10;
            int r = 1, c = d, decay = 0;
            switch (j) {
            case 0: r = d, c = 3 * d, decay = 1; break;
            case 1: r = d, c = d, decay = 1; break;
            case 4: r = d, c = dff, decay = 1; break;
            case 5: r = 1, c = dff; break;
            case 6: r = dff, c = d, decay = 1; break;
            default: break;
            }
            /* names are the same for every model: filled once (same bytes if threads race) */
            if (!names[l][j][0]) snprintf(names[l][j], sizeof names[l][j], "block%d.%s", l, blk_names[j]);
            t = (ntam_tensor_t){names[l][j], 0, 0, r, c, decay};
        } else {
            int j = i - 2 - 10 * hp->n_blocks;
            switch (j) {
            case 0: t = (ntam_tensor_t){"pool.u", 0, 0, 1, d, 0}; break;
            case 1: t = (ntam_tensor_t){"nb.wqkv", 0, 0, d, 3 * d, 1}; break;
            case 2: t = (ntam_tensor_t){"nb.k0", 0, 0, 1, d, 0}; break;
            case 3: t = (ntam_tensor_t){"nb.v0", 0, 0, 1, d, 0}; break;
            case 4: t = (ntam_tensor_t){"head.w1", 0, 0, 2 * d + S2, dh, 1}; break;
            case 5: t = (ntam_tensor_t){"head.b1", 0, 0, 1, dh, 0}; break;
            case 6: t = (ntam_tensor_t){"head.w2", 0, 0, 1, dh, 1}; break;
            case 7: t = (ntam_tensor_t){"head.b2", 0, 0, 1, 1, 0}; break;
            default: t = (ntam_tensor_t){"nb.ws", 0, 0, S, 3 * d, 1}; break;
            }
        }
        t.offset = off;
        t.size = (size_t)t.rows * (size_t)t.cols;
        off += t.size;
        if (i == k) *out = t;
    }
    return 0;
}

static size_t param_count_hp(const ntam_hparams_t *hp)
{
    ntam_tensor_t t;
    ntam_tensor_info(hp, ntam_tensor_count(hp) - 1, &t);
    return t.offset + t.size;
}

/* ---- the two instantiations ---- */

#define REAL float
#define NT(x) x##_f
#define BLAS_GEMM cblas_sgemm
#define BLAS_GEMV cblas_sgemv
#define BATCH ntam_batch_t
#define R_EXP expf
#define R_LOG logf
#define R_SQRT sqrtf
#define R_LOG1P log1pf
#define R_POW powf
#define R_ASINH asinhf
#include "models/ntam_impl.h"
#undef REAL
#undef NT
#undef BLAS_GEMM
#undef BLAS_GEMV
#undef BATCH
#undef R_EXP
#undef R_LOG
#undef R_SQRT
#undef R_LOG1P
#undef R_POW
#undef R_ASINH

#define REAL double
#define NT(x) x##_d
#define BLAS_GEMM cblas_dgemm
#define BLAS_GEMV cblas_dgemv
#define BATCH ntam_batch_d_t
#define R_EXP exp
#define R_LOG log
#define R_SQRT sqrt
#define R_LOG1P log1p
#define R_POW pow
#define R_ASINH asinh
#include "models/ntam_impl.h"
#undef REAL
#undef NT
#undef BLAS_GEMM
#undef BLAS_GEMV
#undef BATCH
#undef R_EXP
#undef R_LOG
#undef R_SQRT
#undef R_LOG1P
#undef R_POW
#undef R_ASINH

/* ---- model object ---- */

struct ntam {
    ntam_hparams_t hp;
    size_t n_par;
    float *p, *g, *m, *v; /* parameters, gradient, Adam moments: one allocation */
    int64_t t;            /* Adam steps taken */
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

int ntam_create(const ntam_hparams_t *hp, uint64_t seed, ntam_t **out)
{
    if (!out) return NTAM_EINVAL;
    *out = NULL;
    if (ntam_hparams_check(hp)) return NTAM_EINVAL;
    ntam_t *m = calloc(1, sizeof *m);
    if (!m) return NTAM_ENOMEM;
    m->hp = *hp;
    m->n_par = param_count_hp(hp);
    m->p = calloc(4 * m->n_par, sizeof(float));
    if (!m->p) {
        free(m);
        return NTAM_ENOMEM;
    }
    m->g = m->p + m->n_par;
    m->m = m->g + m->n_par;
    m->v = m->m + m->n_par;
    uint64_t s = seed ^ 0x6e74616d5eedULL;
    for (int k = 0; k < ntam_tensor_count(hp); k++) {
        ntam_tensor_t t;
        ntam_tensor_info(hp, k, &t);
        float *p = m->p + t.offset;
        const char *nm = t.name;
        size_t L = strlen(nm);
        if (L >= 4 && !strcmp(nm + L - 4, "gain")) {
            for (size_t i = 0; i < t.size; i++) p[i] = 1.0f;
        } else if (t.decay || !strcmp(nm, "nb.k0") || !strcmp(nm, "nb.v0")) {
            double lim = sqrt(6.0 / (double)(t.rows + t.cols));
            if (t.rows == 1) lim = sqrt(1.0 / (double)t.cols);
            for (size_t i = 0; i < t.size; i++) p[i] = (float)((2 * unif(&s) - 1) * lim);
        } /* biases and pool.u start at 0 */
    }
    *out = m;
    return 0;
}

void ntam_destroy(ntam_t *m)
{
    if (!m) return;
    free(m->p);
    free(m);
}

const ntam_hparams_t *ntam_hparams(const ntam_t *m)
{
    return &m->hp;
}
size_t ntam_param_count(const ntam_t *m)
{
    return m->n_par;
}
float *ntam_params(ntam_t *m)
{
    return m->p;
}
const float *ntam_params_const(const ntam_t *m)
{
    return m->p;
}
int64_t ntam_steps(const ntam_t *m)
{
    return m->t;
}
void ntam_opt_reset(ntam_t *m)
{
    memset(m->m, 0, 2 * m->n_par * sizeof(float));
    m->t = 0;
}

size_t ntam_workspace_size(const ntam_hparams_t *hp, int max_dev, int max_node_dev)
{
    if (ntam_hparams_check(hp) || max_dev < 1 || max_node_dev < 1) return 0;
    return layout_f(hp, (size_t)max_dev, (size_t)max_node_dev, 1, NULL, NULL) + 64;
}

size_t ntam_d_workspace_size(const ntam_hparams_t *hp, int max_dev, int max_node_dev)
{
    if (ntam_hparams_check(hp) || max_dev < 1 || max_node_dev < 1) return 0;
    return layout_d(hp, (size_t)max_dev, (size_t)max_node_dev, 1, NULL, NULL) + 64;
}

/* Workspaces from malloc are 16-aligned; the layout wants 64. */
static void *align64(void *ws, size_t *size)
{
    uintptr_t p = (uintptr_t)ws, a = (p + 63) & ~(uintptr_t)63;
    if (*size < a - p) return NULL;
    *size -= a - p;
    return (void *)a;
}

int ntam_forward(const ntam_t *m, const ntam_batch_t *b, void *ws, size_t ws_size, float *logits)
{
    if (!m || !b || !logits) return NTAM_EINVAL;
    ws = align64(ws, &ws_size);
    ws_t_f w;
    int rc = prepare_f(&m->hp, b, ws, ws_size, 0, &w);
    if (rc) return rc;
    par_t_f P;
    params_bind_f(&m->hp, m->p, &P);
    forward_f(&m->hp, &P, b, &w);
    memcpy(logits, w.logit, sizeof(float) * (size_t)b->n_dev);
    return 0;
}

int ntam_neighbour_weights(const ntam_t *m, const ntam_batch_t *b, const void *ws, int32_t i,
                           float *slot, float *weights)
{
    if (!m || !b || !ws || !slot || !weights || i < 0 || i >= b->n_dev) return NTAM_EINVAL;
    int maxn = max_node_f(b);
    if (maxn < 1) return NTAM_EINVAL;
    size_t big = (size_t)-1;
    void *a = align64((void *)(uintptr_t)ws, &big);
    ws_t_f w;
    layout_f(&m->hp, (size_t)b->n_dev, (size_t)maxn, 0, a, &w);
    size_t aoff = 0;
    for (int k = 0; k < n_nodes_f(b); k++) {
        int s, e;
        node_range_f(b, k, &s, &e);
        int n = e - s;
        if (i >= s && i < e) {
            *slot = w.alpha0[i];
            memcpy(weights, w.nalpha + aoff + (size_t)(i - s) * n, sizeof(float) * (size_t)n);
            return n;
        }
        aoff += (size_t)n * n;
    }
    return NTAM_EINVAL;
}

int ntam_loss_grad(const ntam_t *m, const ntam_opt_t *o, const ntam_batch_t *b, void *ws,
                   size_t ws_size, float *loss, float *grad)
{
    if (!m || !o || !loss) return NTAM_EINVAL;
    ws = align64(ws, &ws_size);
    return loss_grad_f(&m->hp, m->p, o, b, ws, ws_size, loss, grad, m->n_par);
}

int ntam_d_loss_grad(const ntam_hparams_t *hp, const double *params, const ntam_opt_t *o,
                     const ntam_batch_d_t *b, void *ws, size_t ws_size, double *loss,
                     double *grad)
{
    if (ntam_hparams_check(hp) || !params || !o || !loss) return NTAM_EINVAL;
    ws = align64(ws, &ws_size);
    return loss_grad_d(hp, params, o, b, ws, ws_size, loss, grad, param_count_hp(hp));
}

int ntam_d_forward(const ntam_hparams_t *hp, const double *params, const ntam_batch_d_t *b,
                   void *ws, size_t ws_size, double *logits)
{
    if (ntam_hparams_check(hp) || !params || !logits) return NTAM_EINVAL;
    ws = align64(ws, &ws_size);
    ws_t_d w;
    int rc = prepare_d(hp, b, ws, ws_size, 0, &w);
    if (rc) return rc;
    par_t_d P;
    params_bind_d(hp, params, &P);
    forward_d(hp, &P, b, &w);
    memcpy(logits, w.logit, sizeof(double) * (size_t)b->n_dev);
    return 0;
}

int ntam_train_step(ntam_t *m, const ntam_opt_t *o, const ntam_batch_t *b, void *ws,
                    size_t ws_size, float *loss)
{
    if (!m || !o || !b || !loss) return NTAM_EINVAL;
    int rc = ntam_loss_grad(m, o, b, ws, ws_size, loss, m->g);
    if (rc) return rc;
    double nrm = 0;
    for (size_t i = 0; i < m->n_par; i++) nrm += (double)m->g[i] * m->g[i];
    nrm = sqrt(nrm);
    if (!isfinite(*loss) || !isfinite(nrm)) return NTAM_ENUMERIC;
    float cs = 1.0f;
    if (o->clip_norm > 0 && nrm > o->clip_norm) cs = (float)(o->clip_norm / nrm);
    m->t++;
    float lr = o->lr;
    if (o->warmup > 0 && m->t < o->warmup) lr *= (float)m->t / (float)o->warmup;
    const float b1 = o->beta1, b2 = o->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)m->t));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)m->t));
    for (int k = 0; k < ntam_tensor_count(&m->hp); k++) {
        ntam_tensor_t t;
        ntam_tensor_info(&m->hp, k, &t);
        float decay = t.decay ? lr * o->weight_decay : 0.0f;
        for (size_t i = t.offset; i < t.offset + t.size; i++) {
            float g = m->g[i] * cs;
            m->m[i] = b1 * m->m[i] + (1 - b1) * g;
            m->v[i] = b2 * m->v[i] + (1 - b2) * g * g;
            float mh = m->m[i] * c1, vh = m->v[i] * c2;
            m->p[i] -= lr * mh / (sqrtf(vh) + o->eps) + decay * m->p[i];
        }
    }
    return 0;
}
