/*
 * ntam_train.h — the NTAM training loop (shuffled batches of whole node-day groups, AdamW,
 * early stopping on validation PR-AUC), batched scoring of a data set, and the logistic-
 * regression baseline on the same features.
 *
 * ntam_train_run allocates everything it needs before the first step (workspace, batch buffers,
 * the best weights, validation scores) and nothing inside the loop. Deterministic for a given
 * seed with one BLAS thread. No clock: the caller measures time in its progress callback.
 */
#ifndef AUGUR_MODELS_NTAM_TRAIN_H
#define AUGUR_MODELS_NTAM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "models/ntam.h"
#include "models/ntam_data.h"

typedef struct {
    int32_t epoch, epochs;   /* current (1-based) and maximum */
    int64_t batch, batches;  /* batch within the epoch (1-based), batches per epoch */
    float loss;              /* mean training loss so far in this epoch */
    double val_pr_auc;       /* after the epoch (−1 during it or without validation data) */
    double best_val_pr_auc;  /* best so far */
    int32_t end_of_epoch;    /* 1 on the call after the epoch's validation */
} ntam_progress_t;

typedef void (*ntam_progress_fn)(void *ctx, const ntam_progress_t *p);

typedef struct {
    ntam_opt_t opt;
    int32_t epochs;          /* maximum epochs */
    int32_t patience;        /* stop after this many epochs without a better val PR-AUC */
    int32_t batch_dev;       /* devices per batch (whole groups are added until reached) */
    int32_t pos_repeat;      /* groups with a positive appear this many times per epoch (≥ 1) */
    uint64_t seed;           /* shuffling */
    /* Weight averaging: 0 = off; otherwise an exponential moving average of the weights,
     * a <- ema * a + (1 - ema) * w after every step, is what is validated each epoch, kept
     * as the best and returned (Polyak averaging: a flatter point than the last step). */
    float ema;
    /* Learning-rate schedule after warm-up: NTAM_LR_CONSTANT (opt.lr throughout) or
     * NTAM_LR_COSINE (opt.lr · ½(1 + cos(π·s/S)) at step s of S = epochs × batches per epoch,
     * annealed to 0 by the last possible step; early stopping may end it sooner). */
    int32_t lr_schedule;
    ntam_progress_fn progress; /* may be NULL; called after every batch and every epoch */
    void *ctx;
} ntam_train_cfg_t;

enum { NTAM_LR_CONSTANT = 0, NTAM_LR_COSINE = 1 };

/* The factor the schedule applies to opt.lr at step s (0-based) of `total` steps: 1 for
 * NTAM_LR_CONSTANT (or total < 1), ½(1 + cos(π·min(s, total)/total)) for NTAM_LR_COSINE. */
float ntam_lr_factor(int32_t schedule, int64_t s, int64_t total);

/* 30 epochs, patience 6, 256 devices per batch, pos_repeat 1, seed 1, ema 0, constant learning
 * rate, ntam_opt_default. */
void ntam_train_cfg_default(ntam_train_cfg_t *c);

typedef struct {
    int32_t epochs_run;
    int32_t best_epoch;      /* the epoch whose weights were kept (0 = none improved) */
    double best_val_pr_auc;
    int64_t steps;
    int32_t skipped_steps;   /* non-finite steps skipped */
} ntam_train_result_t;

/* Train m on tr; with val (may be NULL) keep the weights of the best validation PR-AUC.
 * Returns 0, NTAM_EINVAL (shapes differ, no scored sample) or NTAM_ENOMEM. */
int ntam_train_run(ntam_t *m, const ntam_train_cfg_t *c, const ntam_data_t *tr,
                   const ntam_data_t *val, ntam_train_result_t *res);

/* P(fail) for every sample of d, in batches of whole groups of up to chunk_dev devices.
 * Allocates its workspace. 0, NTAM_EINVAL or NTAM_ENOMEM. */
int ntam_predict(const ntam_t *m, const ntam_data_t *d, int32_t chunk_dev, float *prob);

/* Logistic regression on the flattened window (W·F inputs + bias), class-weighted BCE with L2,
 * full-batch Adam for iters steps. w gets W·F + 1 weights (bias last). */
int ntam_logreg_fit(const ntam_data_t *tr, float pos_weight, float l2, int iters, float *w);
/* P(fail) for every sample. */
void ntam_logreg_predict(const ntam_data_t *d, const float *w, float *prob);

#endif
