/*
 * bench_ntam.c — NTAM speed.
 *
 *   bench_ntam [--threads T] [--batch B] [--steps N] [--devices D] [--nb-summary S] [--group N]
 *
 * 1. Training: ntam_train_step on batches of B devices in neighbourhood groups of N (default 8,
 *    a node; 128 is a rack of 16 nodes x 8, augur train --scope rack), W = 14, F = 32, d = 64,
 *    d_ff = 128, d_head = 64. The BLAS calls of one step are recorded (shapes and transposes);
 *    the step's GEMM/GEMV floating-point work divided by the wall time of a whole step (loss,
 *    softmaxes, layer norms, AdamW included) is the throughput training sustains. Then the
 *    very same calls, alone, back to back, give the throughput OpenBLAS reaches on those shapes.
 *    The ratio is the fraction the goal asks ≥ 50 % of.
 * 2. Inference: D devices (default 10,000) scored in batches of whole groups, up to 1,024
 *    devices, on one thread.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/ntam.h"

typedef struct {
    int kind, ta, tb, M, N, K;
} call_t;

typedef struct {
    call_t *c;
    int n, cap;
} trace_t;

static void on_blas(void *ctx, int kind, int ta, int tb, int M, int N, int K)
{
    trace_t *t = ctx;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->c = realloc(t->c, (size_t)t->cap * sizeof *t->c);
        if (!t->c) abort();
    }
    t->c[t->n++] = (call_t){kind, ta, tb, M, N, K};
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rs = 12345;
static float frand(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rs >> 40) & 0xffffff) / 16777216.0f * 2 - 1;
}

int main(int argc, char **argv)
{
    int threads = 1, B = 256, steps = 20, D = 10000, nbs = 0, per_node = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--devices")) D = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--nb-summary")) nbs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--group")) per_node = atoi(argv[i + 1]);
    }
    if (B < 8 || steps < 1 || D < 8 || threads < 1 || nbs < 0 || nbs > NTAM_NB_SUMMARY_ALL ||
        per_node < 1 || per_node > B || per_node > D) {
        fprintf(stderr, "usage: bench_ntam [--threads T] [--batch B≥8] [--steps N] [--devices D]"
                        " [--nb-summary 0-3 (default 0, augur train's)]"
                        " [--group N: devices per neighbourhood group, default 8 (a node);"
                        " 128 = a rack of 16 nodes x 8, augur train --scope rack]\n");
        return 2;
    }
    ntam_set_threads(threads);
    const int W = 14, F = 32;
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, F, W);
    hp.nb_summary = nbs;
    ntam_t *m;
    if (ntam_create(&hp, 1, &m)) return 1;
    int maxdev = B > 1024 ? B : 1024;
    size_t wsz = ntam_workspace_size(&hp, maxdev, per_node);
    void *ws = malloc(wsz);
    float *x = malloc(sizeof(float) * (size_t)(D > B ? D : B) * W * F);
    float *y = malloc(sizeof(float) * (size_t)B), *logit = malloc(sizeof(float) * (size_t)D);
    int32_t *off = malloc(sizeof(int32_t) * (size_t)(D / per_node + 2));
    if (!ws || !x || !y || !logit || !off) return 1;
    for (size_t i = 0; i < (size_t)(D > B ? D : B) * W * F; i++) x[i] = frand();
    for (int i = 0; i < B; i++) y[i] = (i % 17) == 0;
    for (int k = 0; k <= D / per_node; k++) off[k] = k * per_node;
    ntam_opt_t o;
    ntam_opt_default(&o);
    ntam_batch_t b = {B / per_node * per_node, B / per_node, off, x, NULL, y, NULL};
    float loss;
    ntam_train_step(m, &o, &b, ws, wsz, &loss); /* warm up */
    trace_t tr = {0};
    ntam_set_blas_trace(on_blas, &tr);
    ntam_train_step(m, &o, &b, ws, wsz, &loss);
    ntam_set_blas_trace(NULL, NULL);
    double flops = 0;
    for (int i = 0; i < tr.n; i++)
        flops += 2.0 * tr.c[i].M * tr.c[i].N * (double)tr.c[i].K;
    double t0 = now_s();
    for (int s = 0; s < steps; s++) ntam_train_step(m, &o, &b, ws, wsz, &loss);
    double t_train = (now_s() - t0) / steps;
    /* the same calls alone, on buffers as large as the largest operand */
    size_t big = 0;
    for (int i = 0; i < tr.n; i++) {
        size_t a = (size_t)tr.c[i].M * tr.c[i].K, bb = (size_t)tr.c[i].K * tr.c[i].N,
               c = (size_t)tr.c[i].M * tr.c[i].N;
        if (a > big) big = a;
        if (bb > big) big = bb;
        if (c > big) big = c;
    }
    float *A = malloc(big * sizeof(float)), *Bm = malloc(big * sizeof(float)),
          *C = malloc(big * sizeof(float));
    if (!A || !Bm || !C) return 1;
    for (size_t i = 0; i < big; i++) A[i] = frand(), Bm[i] = frand(), C[i] = 0;
    double t1 = now_s();
    for (int s = 0; s < steps; s++)
        for (int i = 0; i < tr.n; i++) {
            const call_t *c = &tr.c[i];
            if (c->kind == 'g') {
                int lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
                cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans,
                            c->tb ? CblasTrans : CblasNoTrans, c->M, c->N, c->K, 1.0f, A, lda, Bm,
                            ldb, 0.0f, C, c->N);
            } else {
                /* gemv recorded as M×K matrix (rows M = first dim of A) */
                cblas_sgemv(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->M, c->K, 1.0f, A,
                            c->K, Bm, 1, 0.0f, C, 1);
            }
        }
    double t_blas = (now_s() - t1) / steps;
    int n_gemm = 0;
    for (int i = 0; i < tr.n; i++) n_gemm += tr.c[i].kind == 'g';
    printf(
        "training step: %d devices (groups of %d), W=%d F=%d d=%d d_ff=%d, nb_summary %d, %d BLAS "
        "threads\n",
        b.n_dev, per_node, W, F, hp.d_model, hp.d_ff, hp.nb_summary, threads);
    printf("  BLAS calls per step: %d (%d gemm, %d gemv), %.3f GFLOP\n", tr.n, n_gemm,
           tr.n - n_gemm, flops * 1e-9);
    printf("  whole training step: %.2f ms -> %.1f GFLOP/s sustained\n", t_train * 1e3,
           flops / t_train * 1e-9);
    printf("  same BLAS calls alone: %.2f ms -> %.1f GFLOP/s\n", t_blas * 1e3,
           flops / t_blas * 1e-9);
    printf("  training sustains %.0f %% of the OpenBLAS throughput on the same shapes\n",
           100.0 * t_blas / t_train);
    /* inference */
    ntam_set_threads(1);
    int nd = D / per_node * per_node;
    int ib_dev = 1024 / per_node * per_node; /* whole groups, as the predictor batches */
    if (ib_dev < per_node) ib_dev = per_node;
    int32_t *loc = malloc(sizeof(int32_t) * (size_t)(ib_dev / per_node + 1));
    if (!loc) return 1;
    double t2 = now_s();
    for (int s = 0; s < nd; s += ib_dev) {
        int cnt = nd - s < ib_dev ? nd - s : ib_dev;
        int nn = cnt / per_node;
        for (int k = 0; k <= nn; k++) loc[k] = k * per_node;
        ntam_batch_t ib = {cnt, nn, loc, x + (size_t)s * W * F, NULL, NULL, NULL};
        if (ntam_forward(m, &ib, ws, wsz, logit + s)) return 1;
    }
    double t_inf = now_s() - t2;
    free(loc);
    printf(
        "inference: %d devices (W=%d F=%d d=%d, groups of %d), 1 thread: %.3f s (%.1f us/device)\n",
        nd, W, F, hp.d_model, per_node, t_inf, t_inf / nd * 1e6);
    free(A);
    free(Bm);
    free(C);
    free(tr.c);
    free(ws);
    free(x);
    free(y);
    free(logit);
    free(off);
    ntam_destroy(m);
    return 0;
}
