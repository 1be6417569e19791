/*
 * test_ntam.c — NTAM layers: gradient checks of every parameter tensor against central finite
 * differences in double precision (BCE and focal loss, ablated neighbours, masks, nodes of
 * several sizes), float/double agreement, overfitting a tiny set, same seed → same weights,
 * permutation invariance within a node, workspace checks.
 *
 * Random inputs come from a seed printed at start; AUGUR_TEST_SEED=<seed> replays one.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "models/ntam.h"

static uint64_t g_seed = 20240601;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unif(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* A small batch: nodes of 3, 1 and 4 devices; a few masked steps. */
typedef struct {
    ntam_hparams_t hp;
    int n_dev, n_nodes;
    int32_t node_off[4];
    double *x, *y, *w;
    uint8_t *tm;
} tiny_t;

static void tiny_make(tiny_t *t, int ablate, int summary, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->hp.n_features = 3;
    t->hp.window = 4;
    t->hp.d_model = 6;
    t->hp.n_blocks = 2;
    t->hp.d_ff = 5;
    t->hp.d_head = 4;
    t->hp.ablate_neighbours = ablate;
    t->hp.nb_summary = summary;
    t->n_dev = 8;
    t->n_nodes = 3;
    int32_t off[4] = {0, 3, 4, 8};
    memcpy(t->node_off, off, sizeof off);
    int W = t->hp.window, F = t->hp.n_features;
    t->x = calloc((size_t)t->n_dev * W * F, sizeof(double));
    t->y = calloc((size_t)t->n_dev, sizeof(double));
    t->w = calloc((size_t)t->n_dev, sizeof(double));
    t->tm = calloc((size_t)t->n_dev * W, 1);
    assert_non_null(t->x);
    assert_non_null(t->tm);
    uint64_t s = seed;
    for (int i = 0; i < t->n_dev * W * F; i++) t->x[i] = 2 * rng_unif(&s) - 1;
    for (int i = 0; i < t->n_dev; i++) {
        t->y[i] = (i % 3) == 0;
        t->w[i] = i == 5 ? 0.0 : 0.5 + rng_unif(&s);
    }
    for (int i = 0; i < t->n_dev * W; i++) t->tm[i] = 1;
    t->tm[1 * W + 0] = 0; /* device 1: first step missing */
    t->tm[6 * W + 2] = 0;
    t->tm[6 * W + 3] = 0;
}

static void tiny_free(tiny_t *t)
{
    free(t->x);
    free(t->y);
    free(t->w);
    free(t->tm);
}

static ntam_batch_d_t tiny_batch(const tiny_t *t)
{
    ntam_batch_d_t b = {t->n_dev, t->n_nodes, t->node_off, t->x, t->tm, t->y, t->w};
    return b;
}

/* Random parameters (wider than the initialisation, so pooling and the slot are exercised). */
static double *random_params(const ntam_hparams_t *hp, size_t *n_out, uint64_t seed)
{
    ntam_tensor_t last;
    ntam_tensor_info(hp, ntam_tensor_count(hp) - 1, &last);
    size_t n = last.offset + last.size;
    double *p = malloc(n * sizeof(double));
    assert_non_null(p);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) p[i] = (2 * rng_unif(&s) - 1) * 0.6;
    for (int k = 0; k < ntam_tensor_count(hp); k++) {
        ntam_tensor_t t;
        ntam_tensor_info(hp, k, &t);
        if (strstr(t.name, "gain"))
            for (size_t i = 0; i < t.size; i++) p[t.offset + i] += 1.0;
    }
    *n_out = n;
    return p;
}

static void grad_check(int ablate, int summary, int loss_kind)
{
    tiny_t t;
    tiny_make(&t, ablate, summary, g_seed);
    ntam_opt_t o;
    ntam_opt_default(&o);
    o.loss = loss_kind;
    o.pos_weight = 3.0f;
    o.focal_gamma = 2.0f;
    size_t n;
    double *p = random_params(&t.hp, &n, g_seed + 1);
    double *g = malloc(n * sizeof(double));
    size_t wsz = ntam_d_workspace_size(&t.hp, t.n_dev, 4);
    void *ws = malloc(wsz);
    assert_non_null(g);
    assert_non_null(ws);
    ntam_batch_d_t b = tiny_batch(&t);
    double L;
    assert_int_equal(ntam_d_loss_grad(&t.hp, p, &o, &b, ws, wsz, &L, g), 0);
    /* Fourth-order central differences (truncation O(h^4), round-off O(eps/h)) at two step
     * sizes. Where the two estimates disagree, a ReLU kink lies within the stencil and the
     * coordinate is skipped (counted: at most 5 % may be); elsewhere the relative error must be
     * ≤ 1e-6, with 1e-4 as the scale below which the round-off of the differences (~1e-11)
     * dominates (there the absolute error must be ≤ 1e-10). */
    const double h0 = 1e-4;
    double worst = 0;
    int skipped = 0;
    for (int k = 0; k < ntam_tensor_count(&t.hp); k++) {
        ntam_tensor_t ti;
        ntam_tensor_info(&t.hp, k, &ti);
        double tworst = 0, gmax = 0;
        for (size_t i = ti.offset; i < ti.offset + ti.size; i++) {
            double keep = p[i], est[2];
            for (int r = 0; r < 2; r++) {
                double h = r ? h0 / 2 : h0, f[4];
                const double steps[4] = {2 * h, h, -h, -2 * h};
                for (int j = 0; j < 4; j++) {
                    p[i] = keep + steps[j];
                    assert_int_equal(ntam_d_loss_grad(&t.hp, p, &o, &b, ws, wsz, &f[j], NULL), 0);
                }
                est[r] = (8 * (f[1] - f[2]) - (f[0] - f[3])) / (12 * h);
            }
            p[i] = keep;
            double num = est[1], an = g[i];
            if (fabs(est[0] - est[1]) > 1e-7 * fmax(fabs(num), 1e-4)) {
                skipped++;
                continue;
            }
            double err = fabs(num - an) / fmax(fmax(fabs(num), fabs(an)), 1e-4);
            if (err > tworst) tworst = err;
            if (fabs(an) > gmax) gmax = fabs(an);
        }
        if (tworst > 1e-6)
            fprintf(stderr, "  tensor %-16s max rel err %.3g (|g|max %.3g)\n", ti.name, tworst,
                    gmax);
        /* the summary weights get a gradient exactly when the neighbours are on */
        if (!strcmp(ti.name, "nb.ws")) {
            if (ablate) assert_true(gmax == 0);
            else assert_true(gmax > 1e-6);
        }
        if (tworst > worst) worst = tworst;
    }
    fprintf(stderr,
            "  gradcheck ablate=%d summary=%d loss=%s: loss %.6f, worst rel err %.3g over %zu params"
            " (%d skipped at ReLU kinks)\n",
            ablate, summary, loss_kind ? "focal" : "bce", L, worst, n, skipped);
    assert_true(worst <= 1e-6);
    assert_true(skipped <= (int)(n / 20));
    free(ws);
    free(g);
    free(p);
    tiny_free(&t);
}

static void test_gradcheck_bce(void **state)
{
    (void)state;
    grad_check(0, 0, NTAM_LOSS_BCE);
}

static void test_gradcheck_focal(void **state)
{
    (void)state;
    grad_check(0, 0, NTAM_LOSS_FOCAL);
}

static void test_gradcheck_ablated(void **state)
{
    (void)state;
    grad_check(1, 0, NTAM_LOSS_BCE);
}

static void test_gradcheck_summary(void **state)
{
    (void)state;
    grad_check(0, NTAM_NB_SUMMARY_ALL, NTAM_LOSS_BCE);
    grad_check(0, NTAM_NB_SUMMARY_ALL, NTAM_LOSS_FOCAL);
    grad_check(0, NTAM_NB_SUMMARY_KV, NTAM_LOSS_BCE);
    grad_check(0, NTAM_NB_SUMMARY_HEAD, NTAM_LOSS_BCE);
}

static void test_gradcheck_summary_ablated(void **state)
{
    (void)state;
    grad_check(1, NTAM_NB_SUMMARY_ALL, NTAM_LOSS_BCE);
}

/* Float path agrees with the double path on the same weights and inputs. */
static void float_matches_double(int summary)
{
    tiny_t t;
    tiny_make(&t, 0, summary, g_seed + 7);
    ntam_t *m;
    assert_int_equal(ntam_create(&t.hp, 11, &m), 0);
    size_t n = ntam_param_count(m);
    double *pd = malloc(n * sizeof(double));
    float *xf = malloc(sizeof(float) * (size_t)t.n_dev * t.hp.window * t.hp.n_features);
    assert_non_null(pd);
    assert_non_null(xf);
    for (size_t i = 0; i < n; i++) pd[i] = ntam_params(m)[i];
    for (int i = 0; i < t.n_dev * t.hp.window * t.hp.n_features; i++) xf[i] = (float)t.x[i];
    size_t wd = ntam_d_workspace_size(&t.hp, t.n_dev, 4), wf = ntam_workspace_size(&t.hp, t.n_dev, 4);
    void *ws = malloc(wd > wf ? wd : wf);
    assert_non_null(ws);
    ntam_batch_d_t bd = tiny_batch(&t);
    ntam_batch_t bf = {t.n_dev, t.n_nodes, t.node_off, xf, t.tm, NULL, NULL};
    double ld[8];
    float lf[8];
    assert_int_equal(ntam_d_forward(&t.hp, pd, &bd, ws, wd, ld), 0);
    assert_int_equal(ntam_forward(m, &bf, ws, wf, lf), 0);
    for (int i = 0; i < t.n_dev; i++) assert_true(fabs(ld[i] - lf[i]) < 1e-4);
    /* neighbour weights of device 0 (node of 3): slot + two others sum to 1, self is 0 */
    float slot, wts[4];
    assert_int_equal(ntam_neighbour_weights(m, &bf, ws, 0, &slot, wts), 3);
    assert_true(wts[0] == 0.0f);
    assert_true(fabsf(slot + wts[1] + wts[2] - 1.0f) < 1e-5f);
    assert_int_equal(ntam_neighbour_weights(m, &bf, ws, 3, &slot, wts), 1); /* lone device */
    assert_true(slot == 1.0f);
    /* too small a workspace is refused */
    assert_int_equal(ntam_forward(m, &bf, ws, 256, lf), NTAM_ESHAPE);
    free(ws);
    free(xf);
    free(pd);
    ntam_destroy(m);
    tiny_free(&t);
}

static void test_float_matches_double(void **state)
{
    (void)state;
    float_matches_double(0);
    float_matches_double(NTAM_NB_SUMMARY_ALL);
}

/* Permuting devices within a node permutes the outputs (with and without summaries). */
static void node_permutation(int summary)
{
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, 3, 5);
    hp.nb_summary = summary;
    hp.d_model = 8;
    hp.d_ff = 8;
    hp.d_head = 8;
    ntam_t *m;
    assert_int_equal(ntam_create(&hp, 3, &m), 0);
    int nd = 4;
    float x[4 * 5 * 3], xp[4 * 5 * 3], l1[4], l2[4];
    uint64_t s = g_seed + 3;
    for (int i = 0; i < 60; i++) x[i] = (float)(2 * rng_unif(&s) - 1);
    const int perm[4] = {2, 0, 3, 1};
    for (int i = 0; i < nd; i++) memcpy(xp + i * 15, x + perm[i] * 15, sizeof(float) * 15);
    int32_t off[2] = {0, 4};
    ntam_batch_t b1 = {nd, 1, off, x, NULL, NULL, NULL}, b2 = {nd, 1, off, xp, NULL, NULL, NULL};
    size_t wsz = ntam_workspace_size(&hp, nd, nd);
    void *ws = malloc(wsz);
    assert_non_null(ws);
    assert_int_equal(ntam_forward(m, &b1, ws, wsz, l1), 0);
    assert_int_equal(ntam_forward(m, &b2, ws, wsz, l2), 0);
    for (int i = 0; i < nd; i++) assert_true(fabsf(l2[i] - l1[perm[i]]) < 1e-5f);
    free(ws);
    ntam_destroy(m);
}

static void test_node_permutation(void **state)
{
    (void)state;
    node_permutation(0);
    node_permutation(NTAM_NB_SUMMARY_ALL);
}

/* What the head reads from the node summary, by hand: every weight 0 except one head.w1 row,
 * so logit = relu(that input). F = 2, W = 3, one node of 3 devices and a lone one. Summary of a
 * device: s[f] = asinh(x_last − x_first), s[F + f] = asinh(x_last − mean over observed steps).
 * Head input rows: h (d), c (d), mean_{j≠i} s_j (2F), max_{j≠i} s_j (2F). */
static void test_summary_by_hand(void **state)
{
    (void)state;
    enum { F = 2, W = 3, ND = 4 };
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, F, W);
    hp.d_model = 4;
    hp.d_ff = 4;
    hp.d_head = 1;
    hp.nb_summary = NTAM_NB_SUMMARY_HEAD;
    ntam_t *m;
    assert_int_equal(ntam_create(&hp, 1, &m), 0);
    int w1 = -1, w2 = -1;
    for (int k = 0; k < ntam_tensor_count(&hp); k++) {
        ntam_tensor_t t;
        ntam_tensor_info(&hp, k, &t);
        if (!strcmp(t.name, "head.w1")) {
            w1 = (int)t.offset;
            assert_int_equal(t.rows, 2 * 4 + 4 * F);
        }
        if (!strcmp(t.name, "head.w2")) w2 = (int)t.offset;
    }
    assert_true(w1 >= 0 && w2 >= 0);
    /* feature 0 of device i at step t = 10·i + t² (device 1's step 0 masked: it starts at
     * step 1); feature 1 = −x0 */
    float x[ND * W * F];
    uint8_t tm[ND * W];
    for (int i = 0; i < ND; i++)
        for (int t = 0; t < W; t++) {
            x[(i * W + t) * F] = (float)(10 * i + t * t);
            x[(i * W + t) * F + 1] = -(float)(10 * i + t * t);
            tm[i * W + t] = !(i == 1 && t == 0);
        }
    /* s0 (change over the window): devices 0, 2: asinh 4; device 1: asinh(4 − 1) = asinh 3.
     * s2 (last − mean): devices 0, 2: asinh(4 − 5/3) = asinh 7/3; device 1: asinh(4 − 5/2). */
    const float a4 = asinhf(4.0f), a3 = asinhf(3.0f), a73 = asinhf(7.0f / 3), a32 = asinhf(1.5f);
    int32_t off[3] = {0, 3, 4};
    ntam_batch_t b = {ND, 2, off, x, tm, NULL, NULL};
    size_t wsz = ntam_workspace_size(&hp, ND, 3);
    void *ws = malloc(wsz);
    assert_non_null(ws);
    const struct {
        int row;          /* head input row */
        float want[3];    /* logits of devices 0..2 (device 3 is alone: 0) */
    } cases[] = {
        {8 + 0, {(a3 + a4) / 2, a4, (a4 + a3) / 2}},     /* mean of s0 over the others */
        {8 + 2, {(a32 + a73) / 2, a73, (a73 + a32) / 2}}, /* mean of s2 */
        {8 + 4, {a4, a4, a4}},                           /* max of s0 */
        {8 + 4 + 2, {a73, a73, a73}},                    /* max of s2 */
        {8 + 4 + 1, {0.0f, 0.0f, 0.0f}},                 /* max of s1 = −asinh 3: relu → 0 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float *p = ntam_params(m), lg[ND];
        memset(p, 0, sizeof(float) * ntam_param_count(m));
        p[w1 + cases[c].row] = 1.0f; /* head.w1 is rows × d_head (1 column) */
        p[w2] = 1.0f;
        assert_int_equal(ntam_forward(m, &b, ws, wsz, lg), 0);
        for (int i = 0; i < 3; i++) assert_true(fabsf(lg[i] - cases[c].want[i]) < 1e-5f);
        assert_true(lg[3] == 0.0f);
        /* the ablation sees no summary */
        ntam_hparams_t ha = hp;
        ha.ablate_neighbours = 1;
        ntam_t *ma;
        assert_int_equal(ntam_create(&ha, 1, &ma), 0);
        memcpy(ntam_params(ma), p, sizeof(float) * ntam_param_count(m));
        assert_int_equal(ntam_forward(ma, &b, ws, wsz, lg), 0);
        for (int i = 0; i < ND; i++) assert_true(lg[i] == 0.0f);
        ntam_destroy(ma);
    }
    free(ws);
    ntam_destroy(m);
}

/* A tiny set (24 devices, random labels) is fitted to near-zero loss; same seed → same weights. */
static float overfit(uint64_t seed, ntam_t **out)
{
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, 4, 6);
    hp.d_model = 16;
    hp.d_ff = 32;
    hp.d_head = 16;
    ntam_t *m;
    assert_int_equal(ntam_create(&hp, seed, &m), 0);
    enum { ND = 24 };
    float x[ND * 6 * 4], y[ND];
    int32_t off[ND / 2 + 1];
    uint64_t s = 99;
    for (int i = 0; i < ND * 24; i++) x[i] = (float)(2 * rng_unif(&s) - 1);
    for (int i = 0; i < ND; i++) y[i] = (float)(rng_next(&s) & 1);
    for (int k = 0; k <= ND / 2; k++) off[k] = 2 * k;
    ntam_batch_t b = {ND, ND / 2, off, x, NULL, y, NULL};
    ntam_opt_t o;
    ntam_opt_default(&o);
    o.lr = 1e-2f;
    o.warmup = 10;
    o.weight_decay = 0;
    size_t wsz = ntam_workspace_size(&hp, ND, 2);
    void *ws = malloc(wsz);
    assert_non_null(ws);
    float loss = 0;
    for (int it = 0; it < 400; it++) assert_int_equal(ntam_train_step(m, &o, &b, ws, wsz, &loss), 0);
    assert_int_equal(ntam_loss_grad(m, &o, &b, ws, wsz, &loss, NULL), 0);
    free(ws);
    *out = m;
    return loss;
}

static void test_overfit_and_determinism(void **state)
{
    (void)state;
    ntam_t *a, *b;
    float la = overfit(5, &a), lb = overfit(5, &b);
    fprintf(stderr, "  overfit: final loss %.5f\n", la);
    assert_true(la < 0.01f);
    assert_true(la == lb);
    assert_int_equal(ntam_param_count(a), ntam_param_count(b));
    assert_memory_equal(ntam_params(a), ntam_params(b), ntam_param_count(a) * sizeof(float));
    assert_int_equal(ntam_steps(a), 400);
    ntam_destroy(a);
    ntam_destroy(b);
}

static void test_hparams_and_errors(void **state)
{
    (void)state;
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, 0, 4);
    ntam_t *m = (ntam_t *)1;
    assert_int_equal(ntam_create(&hp, 1, &m), NTAM_EINVAL);
    assert_null(m);
    hp.n_features = 2;
    hp.n_blocks = 99;
    assert_int_equal(ntam_hparams_check(&hp), NTAM_EINVAL);
    assert_int_equal(ntam_workspace_size(&hp, 4, 4), 0);
    assert_string_equal(ntam_strerror(NTAM_ECHECKSUM),
                        "model file checksum mismatch: the file is corrupted");
    assert_string_equal(ntam_strerror(12345), "unknown error");
    ntam_destroy(NULL);
}

int main(void)
{
    const char *env = getenv("AUGUR_TEST_SEED");
    if (env) g_seed = strtoull(env, NULL, 10);
    fprintf(stderr, "test_ntam: seed %llu (AUGUR_TEST_SEED to replay)\n", (unsigned long long)g_seed);
    ntam_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_bce),
        cmocka_unit_test(test_gradcheck_focal),
        cmocka_unit_test(test_gradcheck_ablated),
        cmocka_unit_test(test_gradcheck_summary),
        cmocka_unit_test(test_gradcheck_summary_ablated),
        cmocka_unit_test(test_summary_by_hand),
        cmocka_unit_test(test_float_matches_double),
        cmocka_unit_test(test_node_permutation),
        cmocka_unit_test(test_overfit_and_determinism),
        cmocka_unit_test(test_hparams_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
