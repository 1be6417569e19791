/*
 * ntam.h — the neighbourhood-temporal attention model (NTAM, after Luo et al., WWW 2021)
 * for disk and GPU failure prediction, on CBLAS/OpenBLAS.
 *
 * For every device i of a batch the model reads a window X_i ∈ R^{W×F} (W time steps of F
 * normalised features, a per-step mask for missing days) and the windows of the other devices
 * on the same node, and returns the logit of P(device i fails within the horizon).
 *
 *   1. temporal encoder: E = X·We + be + P (sinusoidal positions), then n_blocks post-LN
 *      transformer blocks over the W steps (single-head scaled-dot-product self-attention with
 *      residual and layer norm, ReLU feed-forward with residual and layer norm), then attention
 *      pooling over time (score_t = z_t·u, masked softmax) → h_i ∈ R^d;
 *   2. neighbourhood attention: q_i = h_i·Wq', k_j = h_j·Wk', v_j = h_j·Wv' for the other devices
 *      j ≠ i of the node plus a learned "no neighbour" slot (k0, v0); c_i = Σ α_ij v_j with the
 *      softmax over {slot} ∪ {j ≠ i}; a lone device gets c_i = v0;
 *   3. head: logit = w2·relu([h_i ; c_i]·Wh1 + bh1) + b2.
 *
 * With nb_summary the neighbours also contribute what a device cannot see in itself: each
 * device's window summary s_j ∈ R^{2F} — asinh of its change over the window (x at the last
 * observed step minus x at the first) and of its last observed step minus its window mean, on
 * the normalised features, computed inside the model from X and the mask, so training and
 * serving cannot differ — enters the keys and values (bit NTAM_NB_SUMMARY_KV: [q k v]_j =
 * h_j·Wn + s_j·Ws), and/or the head reads the node summary of the other devices (bit
 * NTAM_NB_SUMMARY_HEAD: logit = w2·relu([h_i ; c_i ; mean_{j≠i} s_j ; max_{j≠i} s_j]·Wh1 + bh1)
 * + b2, zeros for a lone device). ablate_neighbours = 1 turns both off (c_i = v0, node summary
 * 0), so the ablation sees nothing of the neighbours.
 *
 * Every dense product is a cblas_sgemm / cblas_sgemv call; a batch holds many nodes so the
 * projections are a few large GEMMs (rows = devices × W). Forward and backward are written out
 * by hand. The same code is compiled twice, for float (training, serving) and double (gradient
 * checks against finite differences: ntam_d_*).
 *
 * Memory: all parameters, gradients and Adam moments live in flat arrays allocated by
 * ntam_create(); activations live in a caller workspace sized by ntam_workspace_size(), so the
 * training loop allocates nothing. Deterministic: the seed is an argument, no clock is read.
 * With more than one BLAS thread, sums may round differently from run to run; tests pin one
 * thread (ntam_set_threads(1)).
 */
#ifndef AUGUR_MODELS_NTAM_H
#define AUGUR_MODELS_NTAM_H

#include <stddef.h>
#include <stdint.h>

/* Error codes: 0 = OK, negative = error. */
#define NTAM_ERRNO_MAP(X)                                                                          \
    X(NTAM_OK, 0, "success")                                                                       \
    X(NTAM_EINVAL, -1, "invalid argument")                                                         \
    X(NTAM_ENOMEM, -2, "out of memory")                                                            \
    X(NTAM_EIO, -3, "I/O error")                                                                   \
    X(NTAM_EFORMAT, -4, "not an augur model file (bad magic)")                                     \
    X(NTAM_EVERSION, -5,                                                                           \
      "unsupported model file format version (this build reads versions 2 and 3; a model "         \
      "written before the neighbour summaries is version 1: retrain it with augur train)")         \
    X(NTAM_ETRUNC, -6, "model file is truncated")                                                  \
    X(NTAM_ECHECKSUM, -7, "model file checksum mismatch: the file is corrupted")                   \
    X(NTAM_ESCHEMA, -8, "model was trained on a different feature schema")                         \
    X(NTAM_ESHAPE, -9, "batch does not fit the workspace or the model's shape")                    \
    X(NTAM_ENUMERIC, -10, "non-finite loss or gradient")

enum {
#define NTAM_ENUM_(name, code, msg) name = code,
    NTAM_ERRNO_MAP(NTAM_ENUM_)
#undef NTAM_ENUM_
};

/* Message for an error code ("unknown error" for codes not in the map). */
const char *ntam_strerror(int err);

/* Model shape. Fixed at creation, stored in the model file. */
typedef struct {
    int32_t n_features;        /* F: features per time step */
    int32_t window;            /* W: time steps per window */
    int32_t d_model;           /* d: embedding width */
    int32_t n_blocks;          /* transformer blocks over time (≥ 1) */
    int32_t d_ff;              /* feed-forward width inside a block */
    int32_t d_head;            /* hidden width of the head MLP */
    int32_t ablate_neighbours; /* 1: c_i = v0 for every device (neighbour attention off) */
    int32_t nb_summary;        /* neighbour summaries (see below), bits: NTAM_NB_SUMMARY_KV
                                * (keys/values), NTAM_NB_SUMMARY_HEAD (node summary in the
                                * head); 0: h_j only, as model file version 1 */
} ntam_hparams_t;
enum { NTAM_NB_SUMMARY_KV = 1, NTAM_NB_SUMMARY_HEAD = 2, NTAM_NB_SUMMARY_ALL = 3 };

/* Defaults for F features and W steps: d = 64, one block, d_ff = 128, d_head = 64. */
void ntam_hparams_default(ntam_hparams_t *hp, int n_features, int window);

/* Checks ranges (F, W in 1..4096, d in 1..1024, ...). 0 or NTAM_EINVAL. */
int ntam_hparams_check(const ntam_hparams_t *hp);

/* Set the OpenBLAS thread count (n ≥ 1). Affects the whole process. */
void ntam_set_threads(int n);

/* One batch of devices, grouped by node: the devices of node k are rows node_off[k] ..
 * node_off[k+1]-1. Arrays are borrowed for the call only. */
typedef struct {
    int32_t n_dev;            /* devices (rows) */
    int32_t n_nodes;          /* nodes; node_off has n_nodes + 1 entries, node_off[0] = 0 */
    const int32_t *node_off;  /* NULL: every device is its own node */
    const float *x;           /* n_dev × W × F, row-major [device][step][feature] */
    const uint8_t *tmask;     /* n_dev × W, 1 = step observed; NULL = all observed */
    const float *y;           /* n_dev labels in {0,1} (training only) */
    const float *w;           /* n_dev loss weights (0 = context only); NULL = all 1 */
} ntam_batch_t;

/* The same in double precision, for gradient checks. */
typedef struct {
    int32_t n_dev;
    int32_t n_nodes;
    const int32_t *node_off;
    const double *x;
    const uint8_t *tmask;
    const double *y;
    const double *w;
} ntam_batch_d_t;

/* Loss and optimiser settings. */
enum { NTAM_LOSS_BCE = 0, NTAM_LOSS_FOCAL = 1 };
typedef struct {
    int32_t loss;        /* NTAM_LOSS_BCE (class-weighted) or NTAM_LOSS_FOCAL */
    float pos_weight;    /* weight of positives in the loss (BCE and focal) */
    float focal_gamma;   /* focal exponent (focal loss only) */
    float lr;            /* Adam step size after warm-up */
    float beta1, beta2;  /* Adam moment decays */
    float eps;           /* Adam denominator guard */
    float weight_decay;  /* decoupled (AdamW) decay on weight matrices, not biases/norms */
    float clip_norm;     /* global gradient-norm clip; 0 = off */
    int32_t warmup;      /* steps of linear learning-rate warm-up */
} ntam_opt_t;

/* lr 1e-3, betas 0.9/0.999, eps 1e-8, decay 1e-4, clip 1.0, warm-up 50, BCE, pos_weight 1. */
void ntam_opt_default(ntam_opt_t *o);

typedef struct ntam ntam_t;

/* Create a model with weights initialised from seed (Xavier-uniform matrices, unit layer-norm
 * gains, zero biases). Returns 0, NTAM_EINVAL or NTAM_ENOMEM. */
int ntam_create(const ntam_hparams_t *hp, uint64_t seed, ntam_t **out);
/* Free a model; NULL is fine. */
void ntam_destroy(ntam_t *m);

const ntam_hparams_t *ntam_hparams(const ntam_t *m);
/* Number of scalar parameters, and the flat parameter array (valid until ntam_destroy). */
size_t ntam_param_count(const ntam_t *m);
float *ntam_params(ntam_t *m);
const float *ntam_params_const(const ntam_t *m);
/* Adam step counter (steps taken by ntam_train_step). */
int64_t ntam_steps(const ntam_t *m);
/* Reset Adam moments and the step counter (weights unchanged). */
void ntam_opt_reset(ntam_t *m);

/* Per-parameter-block description, for docs, file format and tests. */
typedef struct {
    const char *name; /* e.g. "block0.wqkv" */
    size_t offset;    /* into the flat parameter array */
    size_t size;      /* scalars */
    int32_t rows, cols;
    int32_t decay;    /* 1: weight decay applies */
} ntam_tensor_t;
/* Number of tensors, and tensor k (0 ≤ k < count). */
int ntam_tensor_count(const ntam_hparams_t *hp);
int ntam_tensor_info(const ntam_hparams_t *hp, int k, ntam_tensor_t *out);

/* Bytes of workspace for batches of up to max_dev devices with at most max_node_dev devices on
 * one node (float path; ntam_d_workspace_size for double). 0 if the arguments are invalid. */
size_t ntam_workspace_size(const ntam_hparams_t *hp, int max_dev, int max_node_dev);
size_t ntam_d_workspace_size(const ntam_hparams_t *hp, int max_dev, int max_node_dev);

/* Inference: logits[i] for every device of the batch. ws must hold ntam_workspace_size() bytes
 * for this batch's device count and largest node. Returns 0, NTAM_EINVAL or NTAM_ESHAPE. */
int ntam_forward(const ntam_t *m, const ntam_batch_t *b, void *ws, size_t ws_size, float *logits);

/* After ntam_forward on ws: the neighbour attention of device i (row of the batch): *slot gets
 * the weight of the "no neighbour" slot, weights[k] the weight of the k-th device of its node
 * (0 for itself); returns the node's device count (the length written), or a negative error.
 * weights must hold max_node_dev entries. */
int ntam_neighbour_weights(const ntam_t *m, const ntam_batch_t *b, const void *ws, int32_t i,
                           float *slot, float *weights);

/* One optimiser step on a labelled batch: forward, loss, backward, clip, AdamW. *loss gets the
 * batch loss before the step. Returns 0, NTAM_EINVAL, NTAM_ESHAPE, or NTAM_ENUMERIC (non-finite
 * loss or gradient: the step is skipped, the weights are unchanged). */
int ntam_train_step(ntam_t *m, const ntam_opt_t *o, const ntam_batch_t *b, void *ws,
                    size_t ws_size, float *loss);

/* Loss and its gradient with respect to the parameters, without a step (float path). grad has
 * ntam_param_count() entries. */
int ntam_loss_grad(const ntam_t *m, const ntam_opt_t *o, const ntam_batch_t *b, void *ws,
                   size_t ws_size, float *loss, float *grad);

/* Double-precision path over explicit parameters (layout of ntam_tensor_info), for gradient
 * checks: loss (and grad, if not NULL) for batch b. */
int ntam_d_loss_grad(const ntam_hparams_t *hp, const double *params, const ntam_opt_t *o,
                     const ntam_batch_d_t *b, void *ws, size_t ws_size, double *loss,
                     double *grad);
/* Double-precision logits. */
int ntam_d_forward(const ntam_hparams_t *hp, const double *params, const ntam_batch_d_t *b,
                   void *ws, size_t ws_size, double *logits);

/* Optional trace of the GEMM/GEMV shapes a step issues (for bench_ntam): while set, every BLAS
 * call made by this thread's ntam code calls fn(ctx, kind, transA, transB, M, N, K) with kind
 * 'g' (gemm) or 'v' (gemv; N = 1). NULL turns it off. */
typedef void (*ntam_blas_trace_fn)(void *ctx, int kind, int ta, int tb, int M, int N, int K);
void ntam_set_blas_trace(ntam_blas_trace_fn fn, void *ctx);

/* Numerically stable logistic function. */
float ntam_sigmoid(float z);

#endif
