/*
 * test_metrics.c — ranking metrics and lead times on hand-computed cases, and PR-AUC / ROC-AUC
 * against a naive O(n²) reference on random data with ties.
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

#include "models/metrics.h"

static char g_ws[1 << 16];

/* scores 0.9..0.4, labels 1 0 1 0 0 1:
 *   AP  = 1/3·1 + 1/3·2/3 + 1/3·3/6 = 13/18
 *   ROC = (3 + 2 + 0) / 9 = 5/9
 *   F1  = 2/3 at τ = 0.7 (also at 0.4; the higher threshold wins)
 *   recall at FPR ≤ 1 % (3 negatives: FPR must be 0) = 1/3 at τ = 0.9 */
static void test_hand_case(void **state)
{
    (void)state;
    const float s[6] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f};
    const uint8_t y[6] = {1, 0, 1, 0, 0, 1};
    metrics_t m;
    assert_int_equal(metrics_compute(s, y, 6, g_ws, &m), 0);
    assert_true(fabs(m.pr_auc - 13.0 / 18) < 1e-12);
    assert_true(fabs(m.roc_auc - 5.0 / 9) < 1e-12);
    assert_true(fabs(m.best_f1 - 2.0 / 3) < 1e-12);
    assert_true(fabs(m.best_f1_thr - 0.7) < 1e-6);
    assert_true(fabs(m.recall_fpr01 - 1.0 / 3) < 1e-12);
    assert_true(fabs(m.recall_fpr001 - 1.0 / 3) < 1e-12);
    assert_true(fabs(m.thr_fpr01 - 0.9) < 1e-6);
    assert_int_equal(m.n_pos, 3);
    float p[6], r[6], t[6];
    assert_int_equal(metrics_pr_curve(s, y, 6, g_ws, p, r, t), 6);
    assert_true(fabsf(p[2] - 2.0f / 3) < 1e-6f && fabsf(r[2] - 2.0f / 3) < 1e-6f);
    assert_true(fabsf(p[5] - 0.5f) < 1e-6f && r[5] == 1.0f);
}

/* All scores tied: one threshold, AP = prevalence, ROC = 1/2. */
static void test_ties(void **state)
{
    (void)state;
    const float s[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    const uint8_t y[4] = {1, 0, 0, 0};
    metrics_t m;
    assert_int_equal(metrics_compute(s, y, 4, g_ws, &m), 0);
    assert_true(fabs(m.pr_auc - 0.25) < 1e-12);
    assert_true(fabs(m.roc_auc - 0.5) < 1e-12);
    assert_true(fabs(m.best_f1 - 0.4) < 1e-12);
    /* perfect ranking: both 1 */
    const float s2[4] = {0.1f, 0.9f, 0.2f, 0.3f};
    const uint8_t y2[4] = {0, 1, 0, 0};
    assert_int_equal(metrics_compute(s2, y2, 4, g_ws, &m), 0);
    assert_true(m.pr_auc == 1.0 && m.roc_auc == 1.0 && m.best_f1 == 1.0);
    assert_true(m.recall_fpr001 == 1.0);
}

static void test_degenerate(void **state)
{
    (void)state;
    const float s[3] = {0.1f, 0.2f, NAN};
    const uint8_t y[3] = {0, 0, 1};
    metrics_t m;
    assert_int_equal(metrics_compute(s, y, 2, g_ws, &m), 0); /* no positives */
    assert_true(m.pr_auc == 0 && m.roc_auc == 0.5);
    assert_int_equal(metrics_compute(s, y, 3, g_ws, &m), METRICS_EINVAL); /* NaN */
    assert_int_equal(metrics_compute(s, y, 0, g_ws, &m), METRICS_EINVAL);
    assert_true(metrics_pr_auc(NULL, y, 2, g_ws) < 0);
}

/* Random scores on a coarse grid (many ties) against O(n²) definitions. */
static void test_against_naive(void **state)
{
    (void)state;
    enum { N = 300 };
    float s[N];
    uint8_t y[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        s[i] = (float)((x >> 33) % 20) / 20.0f;
        y[i] = ((x >> 20) % 7) == 0 || s[i] > 0.9f;
    }
    metrics_t m;
    assert_int_equal(metrics_compute(s, y, N, g_ws, &m), 0);
    double auc = 0, P = 0, Nn = 0, ap = 0;
    for (int i = 0; i < N; i++) {
        if (y[i]) P++;
        else Nn++;
        if (!y[i]) continue;
        for (int j = 0; j < N; j++)
            if (!y[j]) auc += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
    }
    auc /= P * Nn;
    /* AP as the mean over positives of the precision at that positive's threshold group */
    for (int i = 0; i < N; i++) {
        if (!y[i]) continue;
        double tp = 0, all = 0;
        for (int j = 0; j < N; j++)
            if (s[j] >= s[i]) {
                all++;
                tp += y[j];
            }
        ap += tp / all;
    }
    ap /= P;
    assert_true(fabs(auc - m.roc_auc) < 1e-9);
    assert_true(fabs(ap - m.pr_auc) < 1e-9);
}

/* Device 0 fails on day 10 with alarms on days 3 (outside 5-day look-back), 6 and 8: lead 4.
 * Device 1 fails on day 20 with no alarm: -1. Device 2 never fails: -1. */
static void test_lead_times(void **state)
{
    (void)state;
    const int32_t dev[7] = {0, 0, 0, 0, 1, 1, 2};
    const int32_t day[7] = {3, 6, 8, 9, 18, 19, 5};
    const float sc[7] = {0.9f, 0.8f, 0.7f, 0.1f, 0.2f, 0.3f, 0.99f};
    const int32_t fail[3] = {10, 20, INT32_MIN};
    int32_t lead[3];
    assert_int_equal(metrics_lead_times(dev, day, sc, 7, fail, 3, 0.5f, 5, lead), 1);
    assert_int_equal(lead[0], 4);
    assert_int_equal(lead[1], -1);
    assert_int_equal(lead[2], -1);
    int32_t v[5] = {4, -1, 2, 6, -1};
    assert_true(metrics_quantile_i32(v, 5, 0.5) == 4.0);
    int32_t v2[4] = {1, 2, 3, 4};
    assert_true(fabs(metrics_quantile_i32(v2, 4, 0.5) - 2.5) < 1e-12);
    int32_t v3[2] = {-1, -1};
    assert_true(isnan(metrics_quantile_i32(v3, 2, 0.5)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_case),     cmocka_unit_test(test_ties),
        cmocka_unit_test(test_degenerate),    cmocka_unit_test(test_against_naive),
        cmocka_unit_test(test_lead_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
