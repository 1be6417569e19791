/*
 * test_train_sources.c — training sources through the serving feature module
 * (models/ntam_source.h): a simulated fleet written into a store is read back as a device
 * timeline (identities, replacements, failure labels from the stored events), its windows
 * score exactly as the server's predictor scores the same store at the same time (no
 * train/serve skew), the split never mixes devices or leaks time, and bad sources are refused
 * with a sentence.
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

#include "ingest/failures.h"
#include "models/features.h"
#include "models/ntam.h"
#include "models/ntam_file.h"
#include "models/ntam_source.h"
#include "models/ntam_train.h"
#include "models/predict.h"
#include "sim/sim.h"
#include "testutil.h"

static tsdb_t *open_store(const char *dir)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.partition_ms = 7LL * 86400000;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    return db;
}

typedef struct {
    char dir[256];
    tsdb_t *db;
    uint64_t disk_fail, gpu_fail; /* ground-truth events */
    char fail_serial[2][64][64];  /* [kind][i] */
    int64_t fail_t[2][64];
} fleet_t;

/* A small fleet, hourly, 20 days, into a fresh store. With hazard > 0 the fleet must have at
 * least two failures of each kind, which the hazard gives at most seeds but not all (24 disks
 * over 20 days is a handful of failures; seed 8 has none): a seed whose fleet has fewer is
 * followed by the next candidate (seed + 1000·k), so every AUGUR_TEST_SEED tests something. */
static void fleet_make_seed(fleet_t *fl, double hazard, uint64_t seed);

static void fleet_make(fleet_t *fl, double hazard)
{
    uint64_t seed = tu_seed("test_train_sources", 3);
    for (int k = 0;; k++) {
        fleet_make_seed(fl, hazard, seed + 1000u * (uint64_t)k);
        if (hazard <= 0 || (fl->disk_fail >= 2 && fl->gpu_fail >= 2)) {
            if (k)
                fprintf(stderr, "[test_train_sources] fleet seed %llu\n",
                        (unsigned long long)(seed + 1000u * (uint64_t)k));
            return;
        }
        assert_true(k < 20);
        assert_int_equal(tsdb_close(fl->db), 0);
        tu_rmrf(fl->dir);
    }
}

static void fleet_make_seed(fleet_t *fl, double hazard, uint64_t seed)
{
    memset(fl, 0, sizeof *fl);
    assert_non_null(tu_mkdtemp(fl->dir, sizeof fl->dir));
    fl->db = open_store(fl->dir);
    sim_config_t c;
    sim_config_init(&c);
    c.seed = seed;
    c.nodes = 6;
    c.disks_per_node = 3;
    c.nvme_per_node = 1;
    c.gpus_per_node = 3;
    c.nodes_per_rack = 3;
    c.hazard_scale = hazard;
    c.replace_days = 0.5;
    sim_t *s = NULL;
    assert_int_equal(sim_create(&c, &s), 0);
    sim_store_writer_t *w = NULL;
    assert_int_equal(sim_store_writer_create(fl->db, &w), 0);
    for (int k = 0; k < 20 * 24; k++) {
        sim_frame_t f;
        assert_int_equal(sim_step(s, &f), 0);
        for (uint32_t e = 0; e < f.nevents; e++) {
            int g = f.events[e].kind == SIM_KIND_GPU;
            uint64_t *n = g ? &fl->gpu_fail : &fl->disk_fail;
            if (*n < 64) {
                snprintf(fl->fail_serial[g][*n], 64, "%s", f.events[e].serial);
                fl->fail_t[g][*n] = f.events[e].t_ms;
            }
            (*n)++;
        }
        assert_int_equal(sim_store_writer_add(w, s, &f), 0);
    }
    assert_int_equal(sim_store_writer_flush(w), 0);
    sim_store_writer_destroy(w);
    sim_destroy(s);
}

static void fleet_free(fleet_t *fl)
{
    assert_int_equal(tsdb_close(fl->db), 0);
    tsdb_thread_cleanup();
    tu_rmrf(fl->dir);
}

static int32_t find_dev(const ntam_tl_t *t, const char *id)
{
    for (int32_t i = 0; i < t->n_dev; i++)
        if (!strcmp(t->dev[i].id, id)) return i;
    return -1;
}

/* Identities and labels: every ground-truth failure lands on its device at its step. */
static void check_labels(const fleet_t *fl, const ntam_tl_t *t, int g)
{
    uint64_t n = g ? fl->gpu_fail : fl->disk_fail;
    assert_true(n >= 2);
    assert_int_equal(t->failures, n);
    assert_int_equal(t->events_unmatched, 0);
    for (uint64_t e = 0; e < n && e < 64; e++) {
        int32_t d = find_dev(t, fl->fail_serial[g][e]);
        assert_true(d >= 0);
        const ntam_tl_dev_t *v = &t->dev[d];
        int64_t want = (fl->fail_t[g][e] - t->t0_ms + t->step_ms - 1) / t->step_ms;
        assert_int_equal(v->fail, want);
        /* the device stops reporting after its failure step */
        assert_true(v->last <= v->fail);
        assert_true(v->last >= v->fail - 1);
    }
    /* replacements are new identities on the same slot, after the failed one (from its last
     * step on: a disk swapped within the day of its failure shares that daily step) */
    int replaced = 0;
    for (int32_t i = 0; i < t->n_dev; i++)
        for (int32_t j = 0; j < t->n_dev; j++)
            if (i != j && !strcmp(t->dev[i].instance, t->dev[j].instance) &&
                !strcmp(t->dev[i].device, t->dev[j].device) && t->dev[i].fail != INT32_MIN &&
                t->dev[j].first >= t->dev[i].last && t->dev[j].first > t->dev[i].first)
                replaced++;
    assert_true(replaced >= 1);
}

/* Windows cut from the timeline score exactly as predict_run() scores the store at that time,
 * with the model's neighbourhood scope (node, rack, pod) and cap: training groups devices as
 * the predictor does. want_group: the largest group training must have built. */
static void check_no_skew(tsdb_t *db, const ntam_tl_t *t, int32_t W, feat_scope_t scope,
                          int32_t cap, int32_t want_group)
{
    feat_kind_t kind = t->kind;
    ntam_protocol_t pr;
    ntam_protocol_default(&pr);
    pr.window = W;
    pr.horizon = 2;
    pr.folds = 0;
    pr.scope = (int32_t)scope;
    pr.scope_cap = cap;
    ntam_data_t d;
    char err[256];
    assert_int_equal(ntam_tl_build(t, &pr, NTAM_PART_ALL, 1, &d, err, sizeof err), 0);
    assert_int_equal(d.max_group, want_group);
    assert_int_equal(d.F, (int32_t)feat_count(kind));
    assert_true(d.n_pos > 0);
    float mean[NTAM_MAX_FEATURES], scale[NTAM_MAX_FEATURES];
    ntam_data_fit_norm(&d, mean, scale);
    ntam_data_apply_norm(&d, mean, scale);
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, d.F, W);
    hp.d_model = 16;
    hp.d_ff = 32;
    hp.d_head = 16;
    ntam_t *m = NULL;
    assert_int_equal(ntam_create(&hp, 5, &m), 0);
    float *prob = malloc(d.n * sizeof *prob + 1);
    assert_int_equal(ntam_predict(m, &d, 64, prob), 0);
    ntam_bundle_t b;
    memset(&b, 0, sizeof b);
    b.model = m;
    b.kind = kind == FEAT_KIND_GPU ? NTAM_KIND_GPU : NTAM_KIND_DISK;
    b.horizon = pr.horizon;
    b.n_features = d.F;
    for (int f = 0; f < d.F; f++) {
        memcpy(b.feature[f], d.feature[f], NTAM_FEATURE_NAME);
        b.mean[f] = mean[f];
        b.scale[f] = scale[f];
    }
    b.schema_hash = feat_schema_hash(kind);
    b.threshold = 0.5f;
    b.scope = (int32_t)scope;
    b.scope_cap = cap;
    size_t bcap = ntam_bundle_bound(&b);
    uint8_t *buf = malloc(bcap);
    int64_t len = ntam_bundle_encode(&b, buf, bcap);
    assert_true(len > 0);
    predict_model_t *pm = NULL;
    assert_int_equal(predict_model_from_bytes(buf, (size_t)len, "tl", kind, &pm, err, sizeof err),
                     0);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    /* three days: the first sampled (GPU windows padded at the start), middle, the last */
    int32_t days = ntam_tl_days(t), checked = 0, first = days, last = 0;
    for (size_t i = 0; i < d.n; i++) {
        if (d.day[i] < first) first = d.day[i];
        if (d.day[i] > last) last = d.day[i];
    }
    assert_int_equal(first, kind == FEAT_KIND_DISK ? W - 1 : 0);
    /* in the last H days only devices that fail within the span have a known outcome: every
     * sample scored there is a positive (healthy devices are unlabelled, a negative would need
     * a failure more than H days later) */
    assert_true(last <= days - 1);
    int32_t late = 0;
    for (size_t i = 0; i < d.n; i++)
        if (d.day[i] > days - 1 - pr.horizon && d.w[i] > 0) {
            assert_true(d.y[i] == 1.0f);
            late++;
        }
    if (last > days - 1 - pr.horizon) assert_true(late > 0);
    /* the last day on which every device's outcome is known (every node is a group) */
    int32_t full = last < days - 1 - pr.horizon ? last : days - 1 - pr.horizon;
    int32_t pick[8] = {first, days / 2, full}, np = 3;
    /* and the days of a swap: a failed device and its replacement on the same slot both report
     * in the step of the swap (disks, daily steps); the server keeps one device a slot, the
     * newest, so the failed one is no sample and no neighbour there */
    int32_t swaps = 0;
    for (int32_t i = 0; i < t->n_dev; i++)
        for (int32_t j = 0; j < t->n_dev; j++) {
            const ntam_tl_dev_t *a = &t->dev[i], *c = &t->dev[j];
            if (i == j || a->fail == INT32_MIN || c->first != a->last || c->first <= a->first ||
                strcmp(a->instance, c->instance) ||
                strcmp(kind == FEAT_KIND_DISK ? a->device : a->id,
                       kind == FEAT_KIND_DISK ? c->device : c->id))
                continue;
            int32_t day = c->first / t->per_day;
            if (c->first % t->per_day != t->per_day - 1 || day < first || day > full) continue;
            int in_a = 0, in_c = 0;
            for (size_t k = 0; k < d.n; k++)
                if (d.day[k] == day) {
                    in_a += d.dev[k] == i;
                    in_c += d.dev[k] == j;
                }
            assert_int_equal(in_a, 0);
            assert_int_equal(in_c, 1);
            swaps++;
            int dup = 0;
            for (int32_t q = 0; q < np; q++)
                dup |= pick[q] == day;
            if (!dup && np < 8) pick[np++] = day;
        }
    fprintf(stderr, "[test_train_sources] %s: %d swap days\n",
            kind == FEAT_KIND_DISK ? "disk" : "gpu", swaps);
    for (int q = 0; q < np; q++) {
        int32_t day = pick[q];
        int32_t s = day * t->per_day + t->per_day - 1;
        predict_result_t *res = NULL;
        assert_int_equal(
            predict_run(pm, r, t->t0_ms + (int64_t)s * t->step_ms, NULL, &res, err, sizeof err), 0);
        uint32_t at_day = 0;
        for (size_t i = 0; i < d.n; i++)
            at_day += d.day[i] == day;
        assert_int_equal(res->n, at_day);
        for (uint32_t k = 0; k < res->n; k++) {
            const feat_device_t *fd = feat_devices_get(res->devices, k);
            size_t hit = SIZE_MAX;
            for (size_t i = 0; i < d.n; i++)
                if (d.day[i] == day && !strcmp(t->dev[d.dev[i]].id, fd->id)) hit = i;
            assert_true(hit != SIZE_MAX);
            assert_true(fabsf(res->score[k].prob - prob[hit]) <= 1e-5f);
            checked++;
        }
        predict_result_destroy(res);
    }
    assert_true(checked > 10);
    tsdb_reader_close(r);
    predict_model_destroy(pm);
    free(buf);
    free(prob);
    ntam_destroy(m);
    ntam_data_free(&d);
}

static void test_store_timeline(void **state)
{
    (void)state;
    ntam_set_threads(1);
    fleet_t fl;
    fleet_make(&fl, 400);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(fl.db, &r), 0);
    char err[512];
    ntam_tl_t disk, gpu;
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_DISK, &disk, err, sizeof err), 0);
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_GPU, &gpu, err, sizeof err), 0);
    tsdb_reader_close(r);
    assert_int_equal(disk.per_day, 1);
    assert_int_equal(gpu.per_day, 24);
    assert_int_equal(disk.n_nodes, 6);
    assert_int_equal(gpu.n_nodes, 6);
    assert_int_equal(ntam_tl_days(&gpu), 20);
    check_labels(&fl, &disk, 0);
    check_labels(&fl, &gpu, 1);
    /* NVMe disks are flagged on every observed step, as feat_read_store() does */
    for (int32_t i = 0; i < disk.n_dev; i++)
        assert_int_equal(disk.dev[i].nvme, !strncmp(disk.dev[i].device, "nvme", 4));
    /* 6 nodes of 3 disks and 3 GPUs, racks of 3 nodes, one pod */
    check_no_skew(fl.db, &disk, 5, FEAT_SCOPE_NODE, 128, 3);
    check_no_skew(fl.db, &gpu, 24, FEAT_SCOPE_NODE, 128, 3);
    check_no_skew(fl.db, &disk, 5, FEAT_SCOPE_RACK, 128, 9);
    check_no_skew(fl.db, &gpu, 24, FEAT_SCOPE_RACK, 128, 9);
    /* the pod (18 devices) cut at 7: three chunks of two whole nodes */
    check_no_skew(fl.db, &disk, 5, FEAT_SCOPE_POD, 7, 6);
    ntam_tl_free(&disk);
    ntam_tl_free(&gpu);
    /* the same through the directory (read-only open beside the writer) */
    assert_int_equal(tsdb_flush(fl.db), 0);
    assert_int_equal(ntam_tl_from_store(fl.dir, FEAT_KIND_GPU, &gpu, err, sizeof err), 0);
    assert_int_equal(gpu.failures, fl.gpu_fail);
    ntam_tl_free(&gpu);
    fleet_free(&fl);
}

/* Device split and time split: a device is scored in one part only; hold-out days. */
static void test_split(void **state)
{
    (void)state;
    fleet_t fl;
    fleet_make(&fl, 400);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(fl.db, &r), 0);
    char err[512];
    ntam_tl_t t;
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_GPU, &t, err, sizeof err), 0);
    tsdb_reader_close(r);
    ntam_protocol_t pr;
    ntam_protocol_default(&pr);
    pr.window = 12;
    pr.horizon = 2;
    pr.folds = 3;
    pr.holdout_days = 6;
    ntam_data_t part[3];
    int8_t *owner = malloc((size_t)t.n_dev);
    int32_t end = ntam_tl_days(&t) - 1;
    /* every positive the labels allow, counted from the timeline: a failing device's day-end
     * steps 1..H days before its failure. Over the rotations of the test fold a device is in
     * each part once, so its training days count once and its hold-out days twice (validation
     * and test); the days between are in no part. (A count, not "some positive": which part a
     * failing device lands in is the seeded hash's, and at some seeds no failure falls in its
     * part's days for one fold.) */
    uint64_t want_pos = 0, got_pos = 0;
    for (int32_t i = 0; i < t.n_dev; i++) {
        const ntam_tl_dev_t *v = &t.dev[i];
        if (v->fail == INT32_MIN) continue;
        for (int32_t day = 0; day <= end; day++) {
            int32_t s = day * 24 + 23;
            if (s < v->first || s > v->last || v->fail - s < 1 || v->fail - s > pr.horizon * 24)
                continue;
            if (day <= end - pr.holdout_days - pr.horizon)
                want_pos++;
            else if (day > end - pr.holdout_days)
                want_pos += 2;
        }
    }
    assert_true(want_pos > 0);
    for (pr.fold = 0; pr.fold < pr.folds; pr.fold++) {
        memset(owner, -1, (size_t)t.n_dev);
        for (int p = 0; p < 3; p++) {
            assert_int_equal(
                ntam_tl_build(&t, &pr, NTAM_PART_TRAIN + p, 1, &part[p], err, sizeof err), 0);
            const ntam_data_t *d = &part[p];
            for (size_t i = 0; i < d->n; i++) {
                if (d->w[i] <= 0) continue;
                int32_t di = d->dev[i];
                assert_true(owner[di] < 0 || owner[di] == p);
                owner[di] = (int8_t)p;
                if (p == 0)
                    assert_true(d->day[i] <= end - pr.holdout_days - pr.horizon);
                else
                    assert_true(d->day[i] > end - pr.holdout_days);
                /* labels */
                const ntam_tl_dev_t *v = &t.dev[di];
                int32_t s = d->day[i] * 24 + 23;
                if (d->y[i] > 0) {
                    assert_true(v->fail != INT32_MIN);
                    assert_true(v->fail - s >= 1 && v->fail - s <= pr.horizon * 24);
                } else if (v->fail == INT32_MIN) {
                    assert_true(s + pr.horizon * 24 <= v->last);
                }
            }
            /* groups are one node and one day */
            for (size_t g = 0; g < d->n_groups; g++)
                for (size_t i = d->goff[g] + 1; i < d->goff[g + 1]; i++) {
                    assert_int_equal(d->day[i], d->day[d->goff[g]]);
                    assert_int_equal(t.dev[d->dev[i]].node, t.dev[d->dev[d->goff[g]]].node);
                }
        }
        for (int p = 0; p < 3; p++) {
            got_pos += part[p].n_pos;
            ntam_data_free(&part[p]);
        }
    }
    assert_int_equal(got_pos, want_pos);
    free(owner);
    ntam_tl_free(&t);
    fleet_free(&fl);
}

static void test_bad_sources(void **state)
{
    (void)state;
    char err[512];
    ntam_tl_t t;
    /* missing directory, a directory that is not a store */
    assert_int_equal(
        ntam_tl_from_store("/nonexistent/augur-store", FEAT_KIND_DISK, &t, err, sizeof err),
        NTAM_EINVAL);
    assert_non_null(strstr(err, "No such file"));
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    assert_int_equal(ntam_tl_from_store(dir, FEAT_KIND_DISK, &t, err, sizeof err), NTAM_EINVAL);
    assert_non_null(strstr(err, "not an augur store directory"));
    /* an empty store: no telemetry of the kind */
    tsdb_t *db = open_store(dir);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_GPU, &t, err, sizeof err), NTAM_EINVAL);
    assert_non_null(strstr(err, "no gpu telemetry"));
    tsdb_reader_close(r);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
    /* telemetry without failures, then an event for nobody, then one by instance and device */
    fleet_t fl;
    fleet_make(&fl, 0);
    assert_int_equal(fl.disk_fail, 0);
    assert_int_equal(tsdb_reader_open(fl.db, &r), 0);
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_DISK, &t, err, sizeof err), NTAM_EINVAL);
    assert_non_null(strstr(err, "no disk failure events"));
    tsdb_reader_close(r);
    failure_event_t ev = {"disk", "node-0001", "sdb", "NOSUCHSERIAL", NULL, "test", 0};
    sim_config_t c;
    sim_config_init(&c);
    ev.t_ms = c.start_ms + 5LL * 86400000;
    tsdb_append_result_t ar;
    assert_int_equal(failures_append(fl.db, &ev, 1, &ar, err, sizeof err), 0);
    assert_int_equal(tsdb_reader_open(fl.db, &r), 0);
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_DISK, &t, err, sizeof err), NTAM_EINVAL);
    assert_non_null(strstr(err, "none of the 1 disk failure events"));
    tsdb_reader_close(r);
    ev.serial = NULL;
    ev.t_ms += 3600000;
    assert_int_equal(failures_append(fl.db, &ev, 1, &ar, err, sizeof err), 0);
    assert_int_equal(tsdb_reader_open(fl.db, &r), 0);
    assert_int_equal(ntam_tl_from_reader(r, FEAT_KIND_DISK, &t, err, sizeof err), 0);
    assert_int_equal(t.failures, 1);
    assert_int_equal(t.events_unmatched, 1);
    int32_t hit = -1;
    for (int32_t i = 0; i < t.n_dev; i++)
        if (t.dev[i].fail != INT32_MIN) hit = i;
    assert_true(hit >= 0);
    assert_string_equal(t.dev[hit].instance, "node-0001");
    assert_string_equal(t.dev[hit].device, "sdb");
    assert_int_equal(t.dev[hit].fail, (ev.t_ms - t.t0_ms + t.step_ms - 1) / t.step_ms);
    tsdb_reader_close(r);
    ntam_tl_free(&t);
    fleet_free(&fl);
    /* simulator specs */
    assert_int_equal(ntam_sim_spec_check("sim:nodes=3,bogus=1", FEAT_KIND_GPU, err, sizeof err),
                     NTAM_EINVAL);
    assert_non_null(strstr(err, "bad simulator spec"));
    assert_int_equal(ntam_sim_spec_check("sim:nodes=2,gpus=0", FEAT_KIND_GPU, err, sizeof err),
                     NTAM_EINVAL);
    assert_int_equal(ntam_sim_spec_check("sim:nodes=2,days=3", FEAT_KIND_GPU, err, sizeof err), 0);
}

/* The simulator source gives the same identities and failures as the simulator's own events,
 * hourly for GPUs. */
static void test_sim_source(void **state)
{
    (void)state;
    char err[512], sum[256];
    ntam_tl_t t;
    assert_int_equal(ntam_tl_from_sim("sim:nodes=8,days=10,hazard=200,seed=4", FEAT_KIND_GPU, &t,
                                      sum, sizeof sum, err, sizeof err),
                     0);
    assert_int_equal(t.n_steps, 240);
    assert_int_equal(t.per_day, 24);
    assert_true(t.failures > 0);
    assert_non_null(strstr(sum, "8 nodes x 8 GPUs x 10 days"));
    int64_t failed = 0;
    for (int32_t i = 0; i < t.n_dev; i++) {
        failed += t.dev[i].fail != INT32_MIN;
        assert_true(!strncmp(t.dev[i].id, "GPU-", 4));
        assert_true(t.dev[i].last >= t.dev[i].first);
    }
    assert_int_equal(failed, (int64_t)t.failures);
    /* 8 x 8 GPUs, plus the replacements of failed ones (some not yet replaced at the end) */
    assert_true(t.n_dev >= 64 && t.n_dev <= 64 + failed);
    ntam_tl_free(&t);
    assert_int_equal(ntam_tl_from_sim("sim:nodes=0", FEAT_KIND_DISK, &t, NULL, 0, err, sizeof err),
                     NTAM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_timeline),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_bad_sources),
        cmocka_unit_test(test_sim_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
