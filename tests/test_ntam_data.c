/*
 * test_ntam_data.c — Backblaze CSV reader and the labelling/split protocol of ntam_data on a
 * small hand-made file: labels at horizon H and 0, dropped rows after a failure, unknown
 * outcomes as context, leak-free features, disjoint stratified folds, node-day groups,
 * normalisation, and a short end-to-end training run on the result.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "models/bbcsv.h"
#include "models/ntam_data.h"
#include "models/ntam_train.h"

static char g_dir[64], g_csv[128];

/* Drives A, B on pod 1; C alone (no pod). A fails on 2019-01-05 (rows 01..06: the row after the
 * failure is dropped). B and C never fail, rows 01..06. C has a blank smart_5. */
static const char CSV[] =
    "date,serial_number,model,capacity_bytes,failure,datacenter,vault_id,pod_id,smart_5_raw,"
    "smart_9_raw,smart_187_raw,smart_194_raw\n"
    "2019-01-01,A,M1,1,0,dc,v,1,0,100,0,30\n"
    "2019-01-02,A,M1,1,0,dc,v,1,0,124,0,30\n"
    "2019-01-03,A,M1,1,0,dc,v,1,8,148,0,31\n"
    "2019-01-04,A,M1,1,0,dc,v,1,16,172,2,31\n"
    "2019-01-05,A,M1,1,1,dc,v,1,64,196,5,32\n"
    "2019-01-06,A,M1,1,0,dc,v,1,64,220,5,32\n"
    "2019-01-01,B,M1,1,0,dc,v,1,0,10,0,25\n"
    "2019-01-02,B,M1,1,0,dc,v,1,0,34,0,25\n"
    "2019-01-03,B,M1,1,0,dc,v,1,0,58,0,25\n"
    "2019-01-04,B,M1,1,0,dc,v,1,0,82,0,25\n"
    "2019-01-05,B,M1,1,0,dc,v,1,0,106,0,25\n"
    "2019-01-06,B,M1,1,0,dc,v,1,0,130,0,25\n"
    "2019-01-01,C,M2,1,0,,,,0,1,0,20\n"
    "2019-01-02,C,M2,1,0,,,,,2,0,20\n"
    "2019-01-03,C,M2,1,0,,,,0,3,1,20\n"
    "2019-01-04,C,M2,1,0,,,,0,4,1,20\n"
    "2019-01-05,C,M2,1,0,,,,0,5,1,20\n"
    "2019-01-06,C,M2,1,0,,,,0,6,1,20\n"
    "not-a-date,D,M1,1,0,dc,v,1,0,1,0,20\n";

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/test_ntam_data.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_csv, sizeof g_csv, "%s/bb.csv", g_dir);
    FILE *f = fopen(g_csv, "w");
    if (!f) return -1;
    fputs(CSV, f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_csv);
    rmdir(g_dir);
    return 0;
}

static void test_reader(void **state)
{
    (void)state;
    bbcsv_t t;
    bbcsv_init(&t);
    char err[256];
    assert_int_equal(bbcsv_read_file(&t, g_csv, NULL, err, sizeof err), 0);
    assert_int_equal(t.n_rows, 18);
    assert_int_equal(t.rows_skipped, 1);
    assert_int_equal(t.n_dev, 3);
    assert_int_equal(t.n_node, 2); /* dc/v/1 and C alone */
    assert_int_equal(t.dev_node[0], t.dev_node[1]);
    assert_true(t.dev_node[2] != t.dev_node[0]);
    assert_string_equal(t.node[t.dev_node[0]], "dc/v/1");
    assert_non_null(t.raw[5]);
    assert_true(isnan(t.raw[5][13])); /* C, 2019-01-02: blank */
    assert_null(t.raw[1]);
    char d[16];
    bbcsv_format_date(t.day[0], d);
    assert_string_equal(d, "2019-01-01");
    bbcsv_free(&t);
    /* model filter, missing file, bad header */
    bbcsv_init(&t);
    assert_int_equal(bbcsv_read_file(&t, g_csv, "M2", err, sizeof err), 0);
    assert_int_equal(t.n_dev, 1);
    assert_int_equal(t.rows_filtered, 13); /* D is filtered before its date is read */
    bbcsv_free(&t);
    assert_int_equal(bbcsv_read_file(&t, "/nonexistent/x.csv", NULL, err, sizeof err), BBCSV_EIO);
    bbcsv_free(&t);
}

static int find(const ntam_data_t *d, int32_t dev, int32_t day)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->dev[i] == dev && d->day[i] == day) return (int)i;
    return -1;
}

static void test_labels(void **state)
{
    (void)state;
    bbcsv_t t;
    bbcsv_init(&t);
    assert_int_equal(bbcsv_read_file(&t, g_csv, NULL, NULL, 0), 0);
    int32_t d0;
    bbcsv_parse_date("2019-01-01", 10, &d0);
    ntam_protocol_t p;
    ntam_protocol_default(&p);
    p.window = 2;
    p.horizon = 2;
    p.folds = 0;
    ntam_data_t d;
    char err[128];
    assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_ALL, &d, err, sizeof err), 0);
    /* leak-free: 5 and 187 kept, 9 (age) and 194 (temperature) dropped; W > 1 adds deltas */
    assert_int_equal(d.F, 4);
    assert_string_equal(d.feature[0], "log1p_smart_5_raw");
    assert_string_equal(d.feature[1], "log1p_smart_187_raw");
    assert_string_equal(d.feature[2], "delta_log1p_smart_5_raw");
    /* A (dev 0): windows end on days 2..5 (full windows: day 1 has no predecessor); day 6 after
     * the failure is dropped; day 5 = failure day is context for H ≥ 1, and so is B's day 5
     * (outcome unknown): their group has no scored sample and is dropped; days 3, 4 positive;
     * day 2: fail − t = 3 > H → negative */
    assert_true(find(&d, 0, d0) < 0);
    assert_true(find(&d, 0, d0 + 5) < 0);
    int i2 = find(&d, 0, d0 + 1), i3 = find(&d, 0, d0 + 2), i4 = find(&d, 0, d0 + 3),
        i5 = find(&d, 0, d0 + 4);
    assert_true(i2 >= 0 && i3 >= 0 && i4 >= 0 && i5 < 0);
    assert_true(d.y[i2] == 0 && d.w[i2] == 1);
    assert_true(d.y[i3] == 1 && d.w[i3] == 1);
    assert_true(d.y[i4] == 1 && d.w[i4] == 1);
    /* rule: A on day 4 has smart_5 = 16 > 0 */
    assert_int_equal(d.rule[i4], 1);
    assert_int_equal(d.rule[i2], 0);
    /* features of A on day 4: log1p(8), log1p(16) and the change since day 3 */
    const float *x = d.x + (size_t)i4 * d.W * d.F;
    assert_true(fabsf(x[0] - log1pf(8)) < 1e-6f && fabsf(x[d.F + 0] - log1pf(16)) < 1e-6f);
    assert_true(fabsf(x[d.F + 2] - (log1pf(16) - log1pf(8))) < 1e-6f);
    /* B (never failed, last day 6): negatives while t + 2 ≤ 6 */
    int b4 = find(&d, 1, d0 + 3), b5 = find(&d, 1, d0 + 4);
    assert_true(b4 >= 0 && d.w[b4] == 1 && d.y[b4] == 0);
    assert_true(b5 < 0);
    /* A and B share pod groups: the group of day 4 holds both */
    int found = 0;
    for (size_t g = 0; g < d.n_groups; g++)
        if (d.goff[g + 1] - d.goff[g] == 2 && d.day[d.goff[g]] == d0 + 3) found = 1;
    assert_true(found);
    assert_int_equal(d.max_group, 2);
    assert_int_equal(d.fail_day[0], d0 + 4);
    assert_int_equal(d.fail_day[1], INT32_MIN);
    ntam_data_free(&d);
    /* never-failed negatives: A's day 2 becomes context */
    p.negatives = NTAM_NEG_NEVER_FAILED;
    assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_ALL, &d, err, sizeof err), 0);
    i2 = find(&d, 0, d0 + 1); /* kept as context: B's day 2 in the same group is scored */
    assert_true(i2 >= 0 && d.w[i2] == 0);
    assert_true(find(&d, 1, d0 + 1) >= 0);
    ntam_data_free(&d);
    /* horizon 0: the failure day itself is the positive */
    p.negatives = NTAM_NEG_ALL;
    p.horizon = 0;
    p.window = 1;
    assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_ALL, &d, err, sizeof err), 0);
    assert_int_equal(d.F, 2);
    i5 = find(&d, 0, d0 + 4);
    assert_true(i5 >= 0 && d.y[i5] == 1 && d.w[i5] == 1);
    assert_int_equal(d.n_pos, 1);
    ntam_data_free(&d);
    /* all features: 9 and 194 come back */
    p.features = NTAM_FEAT_ALL;
    assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_ALL, &d, err, sizeof err), 0);
    assert_int_equal(d.F, 4);
    ntam_data_free(&d);
    bbcsv_free(&t);
}

/* 60 synthetic drives: folds are disjoint, cover every drive, and each holds failed drives. */
static void test_folds(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/many.csv", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "date,serial_number,model,failure,smart_5_raw,smart_187_raw\n");
    for (int i = 0; i < 60; i++)
        fprintf(f, "2019-03-01,S%03d,M,%d,%d,%d\n", i, i % 6 == 0, i % 6 == 0 ? 10 + i : i % 5,
                i % 3);
    fclose(f);
    bbcsv_t t;
    bbcsv_init(&t);
    assert_int_equal(bbcsv_read_file(&t, path, NULL, NULL, 0), 0);
    ntam_protocol_t p;
    ntam_protocol_default(&p);
    p.window = 1;
    p.horizon = 0;
    p.folds = 5;
    int seen[60] = {0};
    for (int fold = 0; fold < 5; fold++) {
        p.fold = fold;
        ntam_data_t te, tr, va;
        assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_TEST, &te, NULL, 0), 0);
        assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_TRAIN, &tr, NULL, 0), 0);
        assert_int_equal(ntam_data_build(&t, &p, NTAM_PART_VAL, &va, NULL, 0), 0);
        assert_int_equal(te.n + tr.n + va.n, 60);
        assert_int_equal(te.n_pos, 2); /* 10 failed drives over 5 folds */
        for (size_t i = 0; i < te.n; i++) seen[te.dev[i]]++;
        for (size_t i = 0; i < te.n; i++)
            for (size_t j = 0; j < tr.n; j++) assert_true(te.dev[i] != tr.dev[j]);
        /* a short end-to-end run: normalise, train 3 epochs, score */
        float mean[4], scale[4];
        ntam_data_fit_norm(&tr, mean, scale);
        ntam_data_apply_norm(&tr, mean, scale);
        ntam_data_apply_norm(&te, mean, scale);
        if (fold == 0) {
            ntam_hparams_t hp;
            ntam_hparams_default(&hp, tr.F, tr.W);
            hp.d_model = 8;
            hp.d_ff = 8;
            hp.d_head = 8;
            ntam_t *m;
            assert_int_equal(ntam_create(&hp, 1, &m), 0);
            ntam_train_cfg_t c;
            ntam_train_cfg_default(&c);
            c.epochs = 3;
            c.batch_dev = 16;
            ntam_train_result_t res;
            assert_int_equal(ntam_train_run(m, &c, &tr, &va, &res), 0);
            assert_true(res.epochs_run >= 1 && res.steps >= 3);
            float prob[60];
            assert_int_equal(ntam_predict(m, &te, 4, prob), 0);
            for (size_t i = 0; i < te.n; i++) assert_true(prob[i] >= 0 && prob[i] <= 1);
            /* Weight averaging: one step (one batch per epoch, one epoch, no validation) gives
             * ema * w0 + (1 - ema) * w1, w1 the weights the same step gives without it. */
            {
                ntam_t *m0, *m1;
                assert_int_equal(ntam_create(&hp, 7, &m0), 0);
                assert_int_equal(ntam_create(&hp, 7, &m1), 0);
                size_t np = ntam_param_count(m0);
                float *w0 = malloc(np * sizeof *w0);
                assert_non_null(w0);
                memcpy(w0, ntam_params(m0), np * sizeof *w0);
                ntam_train_cfg_t c1 = c;
                c1.epochs = 1;
                c1.batch_dev = 1000;
                ntam_train_result_t r1;
                assert_int_equal(ntam_train_run(m0, &c1, &tr, NULL, &r1), 0);
                assert_int_equal(r1.steps, 1);
                c1.ema = 0.75f;
                assert_int_equal(ntam_train_run(m1, &c1, &tr, NULL, &r1), 0);
                const float *a0 = ntam_params(m0), *a1 = ntam_params(m1);
                size_t moved = 0;
                for (size_t j = 0; j < np; j++) {
                    float want = 0.75f * w0[j] + 0.25f * a0[j];
                    assert_true(fabsf(a1[j] - want) <= 1e-6f * (1.0f + fabsf(want)));
                    moved += a0[j] != w0[j];
                }
                assert_true(moved > np / 2);
                free(w0);
                ntam_destroy(m0);
                ntam_destroy(m1);
            }
            /* Cosine schedule: factors, and over two one-batch epochs the second step moves
             * every weight by exactly half of what the constant rate moves it (Adam's update
             * and the decoupled decay both scale with the rate; same data, same state). */
            assert_true(ntam_lr_factor(NTAM_LR_CONSTANT, 5, 10) == 1.0f);
            assert_true(ntam_lr_factor(NTAM_LR_COSINE, 0, 10) == 1.0f);
            assert_true(fabsf(ntam_lr_factor(NTAM_LR_COSINE, 5, 10) - 0.5f) < 1e-6f);
            assert_true(fabsf(ntam_lr_factor(NTAM_LR_COSINE, 1, 2) - 0.5f) < 1e-6f);
            assert_true(ntam_lr_factor(NTAM_LR_COSINE, 10, 10) < 1e-6f);
            assert_true(ntam_lr_factor(NTAM_LR_COSINE, 12, 10) < 1e-6f);
            assert_true(ntam_lr_factor(NTAM_LR_COSINE, 3, 0) == 1.0f);
            {
                ntam_t *ma, *mb, *mc;
                assert_int_equal(ntam_create(&hp, 9, &ma), 0);
                assert_int_equal(ntam_create(&hp, 9, &mb), 0);
                assert_int_equal(ntam_create(&hp, 9, &mc), 0);
                size_t np = ntam_param_count(ma);
                ntam_train_cfg_t c2 = c;
                c2.batch_dev = 1000;
                c2.opt.warmup = 0;
                c2.epochs = 1;
                ntam_train_result_t r2;
                assert_int_equal(ntam_train_run(ma, &c2, &tr, NULL, &r2), 0); /* w1 */
                c2.epochs = 2;
                assert_int_equal(ntam_train_run(mb, &c2, &tr, NULL, &r2), 0); /* constant */
                assert_int_equal(r2.steps, 2);
                c2.lr_schedule = NTAM_LR_COSINE;
                assert_int_equal(ntam_train_run(mc, &c2, &tr, NULL, &r2), 0); /* cosine */
                const float *w1 = ntam_params(ma), *wb = ntam_params(mb), *wc = ntam_params(mc);
                size_t moved = 0;
                for (size_t j = 0; j < np; j++) {
                    float half = 0.5f * (wb[j] - w1[j]);
                    assert_true(fabsf((wc[j] - w1[j]) - half) <= 1e-6f * (1.0f + fabsf(w1[j])));
                    moved += fabsf(half) > 1e-5f;
                }
                assert_true(moved > np / 2);
                ntam_destroy(ma);
                ntam_destroy(mb);
                ntam_destroy(mc);
            }
            float w[3];
            assert_int_equal(ntam_logreg_fit(&tr, 2.0f, 1e-3f, 50, w), 0);
            ntam_logreg_predict(&te, w, prob);
            ntam_destroy(m);
        }
        ntam_data_free(&te);
        ntam_data_free(&tr);
        ntam_data_free(&va);
    }
    for (int i = 0; i < 60; i++) assert_int_equal(seen[i], 1);
    bbcsv_free(&t);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_folds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
