/*
 * test_features.c — models/features: hand-computed disk and GPU windows,
 * counter resets, missing values (carried forward, flagged, padding masked),
 * neighbour lists per scope, a hand-written tiny store (alias labels, a
 * replaced disk), and the store path against the simulator's own values
 * (store -> raw equals what was written).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/features.h"
#include "sim/sim.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

#define NA NAN

static int feat_index(feat_kind_t k, const char *name)
{
    for (uint32_t f = 0; f < feat_count(k); f++)
        if (!strcmp(feat_name(k, f), name)) return (int)f;
    fail_msg("no feature %s", name);
    return -1;
}

static float X(const float *x, feat_kind_t k, uint32_t w, const char *name)
{
    return x[(size_t)w * feat_count(k) + (uint32_t)feat_index(k, name)];
}

static void test_schema(void **state)
{
    (void)state;
    assert_int_equal(feat_raw_count(FEAT_KIND_DISK), FEAT_RD_N);
    assert_int_equal(feat_raw_count(FEAT_KIND_GPU), FEAT_RG_N);
    assert_true(feat_count(FEAT_KIND_DISK) >= 15);
    assert_true(feat_count(FEAT_KIND_GPU) >= 30);
    assert_null(feat_name(FEAT_KIND_DISK, feat_count(FEAT_KIND_DISK)));
    assert_true(feat_schema_hash(FEAT_KIND_DISK) != feat_schema_hash(FEAT_KIND_GPU));
    assert_true(feat_schema_hash(FEAT_KIND_DISK) == feat_schema_hash(FEAT_KIND_DISK));
    /* No age/usage counters (they leak the label in Backblaze files). */
    for (uint32_t f = 0; f < feat_count(FEAT_KIND_DISK); f++) {
        assert_null(strstr(feat_name(FEAT_KIND_DISK, f), "smart_9"));
        assert_null(strstr(feat_name(FEAT_KIND_DISK, f), "smart_12"));
    }
    assert_int_equal(feat_compute(FEAT_KIND_DISK, 1, 0, NULL, NULL, NULL), FEAT_EINVAL);
}

/* W = 5 disk window by hand: padding, growth, a reset, a gap. */
static void test_disk_window_by_hand(void **state)
{
    (void)state;
    enum { W = 5, C = FEAT_RD_N };
    double raw[W][C];
    for (int w = 0; w < W; w++)
        for (int c = 0; c < C; c++)
            raw[w][c] = NA;
    /* step 0: no data (padding). */
    /* step 1 */
    raw[1][FEAT_RD_5] = 2;
    raw[1][FEAT_RD_187] = 5;
    raw[1][FEAT_RD_TEMP] = 30;
    raw[1][FEAT_RD_NVME] = 0;
    /* step 2: 5 grows, 187 grows */
    raw[2][FEAT_RD_5] = 10;
    raw[2][FEAT_RD_187] = 7;
    raw[2][FEAT_RD_TEMP] = 40;
    raw[2][FEAT_RD_NVME] = 0;
    /* step 3: missing entirely -> carried forward, flagged */
    /* step 4: 187 reset (new drive in the slot) to 1 */
    raw[4][FEAT_RD_5] = 10;
    raw[4][FEAT_RD_187] = 1;
    raw[4][FEAT_RD_TEMP] = 50;
    raw[4][FEAT_RD_NVME] = 0;
    float x[W * 32];
    uint8_t m[W];
    assert_int_equal(feat_compute(FEAT_KIND_DISK, 1, W, &raw[0][0], x, m), 0);
    const feat_kind_t K = FEAT_KIND_DISK;
    uint8_t want_mask[W] = {0, 1, 1, 1, 1};
    assert_memory_equal(m, want_mask, W);
    for (uint32_t f = 0; f < feat_count(K); f++)
        assert_true(x[f] == 0.0f); /* padding is 0 */
    assert_float_equal(X(x, K, 1, "log1p_smart_5"), log1p(2), 1e-6);
    assert_float_equal(X(x, K, 2, "log1p_smart_5"), log1p(10), 1e-6);
    assert_float_equal(X(x, K, 3, "log1p_smart_5"), log1p(10), 1e-6); /* carried */
    assert_float_equal(X(x, K, 1, "log1p_inc_smart_5"), 0, 1e-6);
    assert_float_equal(X(x, K, 2, "log1p_inc_smart_5"), log1p(8), 1e-6);
    assert_float_equal(X(x, K, 4, "log1p_inc_smart_5"), log1p(8), 1e-6);
    /* 187: 5, 7, (7), 1 -> increases 0, 2, 0, 1 (reset counts the new value) */
    assert_float_equal(X(x, K, 2, "log1p_inc_smart_187"), log1p(2), 1e-6);
    assert_float_equal(X(x, K, 4, "log1p_inc_smart_187"), log1p(3), 1e-6);
    assert_float_equal(X(x, K, 4, "log1p_smart_187"), log1p(1), 1e-6);
    /* missing flag only on the carried step */
    assert_float_equal(X(x, K, 2, "missing"), 0, 0);
    assert_float_equal(X(x, K, 3, "missing"), 1, 0);
    assert_float_equal(X(x, K, 4, "missing"), 0, 0);
    /* temperatures 30, 40, (40), 50: mean over the 4 filled steps = 40 */
    assert_float_equal(X(x, K, 1, "temp_c_minus_40_div_10"), -1.0, 1e-6);
    assert_float_equal(X(x, K, 4, "temp_c_minus_40_div_10"), 1.0, 1e-6);
    assert_float_equal(X(x, K, 1, "temp_minus_window_mean_div_5"), -2.0, 1e-6);
    assert_float_equal(X(x, K, 3, "temp_minus_window_mean_div_5"), 0.0, 1e-6);
    assert_float_equal(X(x, K, 4, "is_nvme"), 0, 0);
    /* An NVMe device: media errors and spare. */
    for (int w = 0; w < W; w++)
        for (int c = 0; c < C; c++)
            raw[w][c] = NA;
    for (int w = 0; w < W; w++) {
        raw[w][FEAT_RD_MEDIA] = w < 3 ? 0 : 4;
        raw[w][FEAT_RD_SPARE] = w < 3 ? 100 : 60;
        raw[w][FEAT_RD_NVME] = 1;
    }
    assert_int_equal(feat_compute(FEAT_KIND_DISK, 1, W, &raw[0][0], x, m), 0);
    assert_float_equal(X(x, K, 4, "log1p_inc_nvme_media_errors"), log1p(4), 1e-6);
    assert_float_equal(X(x, K, 4, "nvme_spare_used"), 0.4, 1e-6);
    assert_float_equal(X(x, K, 0, "is_nvme"), 1, 0);
}

static void test_gpu_window_by_hand(void **state)
{
    (void)state;
    enum { W = 4, C = FEAT_RG_N };
    double raw[W][C];
    for (int w = 0; w < W; w++) {
        for (int c = 0; c < C; c++)
            raw[w][c] = 0;
        raw[w][FEAT_RG_TEMP] = 60 + 10 * w; /* 60 70 80 90: mean 75 */
        raw[w][FEAT_RG_MEM_TEMP] = 70;
        raw[w][FEAT_RG_POWER] = w == 3 ? 500 : 300;  /* mean 350 */
        raw[w][FEAT_RG_CLOCK] = w == 3 ? 705 : 1410; /* throttled at the end */
        raw[w][FEAT_RG_UTIL] = 100;
    }
    raw[1][FEAT_RG_SBE] = 10;
    raw[2][FEAT_RG_SBE] = 110;
    raw[3][FEAT_RG_SBE] = 110;
    raw[2][FEAT_RG_DBE] = 1;
    raw[3][FEAT_RG_DBE] = 1;
    raw[2][FEAT_RG_XID] = 48;
    raw[3][FEAT_RG_XID] = 48;      /* held, not new */
    raw[3][FEAT_RG_THERMAL] = 2e6; /* 2 s */
    raw[3][FEAT_RG_REMAP_FAIL] = 1;
    float x[W * 40];
    uint8_t m[W];
    const feat_kind_t K = FEAT_KIND_GPU;
    assert_int_equal(feat_compute(K, 1, W, &raw[0][0], x, m), 0);
    assert_float_equal(X(x, K, 1, "log1p_step_inc_ecc_sbe"), log1p(10), 1e-5);
    assert_float_equal(X(x, K, 2, "log1p_step_inc_ecc_sbe"), log1p(100), 1e-5);
    assert_float_equal(X(x, K, 3, "log1p_step_inc_ecc_sbe"), 0, 1e-6);
    assert_float_equal(X(x, K, 3, "log1p_inc_ecc_sbe"), log1p(110), 1e-5);
    assert_float_equal(X(x, K, 3, "log1p_ecc_dbe"), log1p(1), 1e-6);
    assert_float_equal(X(x, K, 2, "xid_memory"), 1, 0);
    assert_float_equal(X(x, K, 3, "xid_memory"), 1, 0);
    assert_float_equal(X(x, K, 2, "xid_new"), 1, 0);
    assert_float_equal(X(x, K, 3, "xid_new"), 0, 0);
    assert_float_equal(X(x, K, 1, "xid_memory"), 0, 0);
    assert_float_equal(X(x, K, 3, "log1p_step_inc_thermal_violation_s"), log1p(2), 1e-5);
    assert_float_equal(X(x, K, 3, "row_remap_failure"), 1, 0);
    assert_float_equal(X(x, K, 0, "temp_minus_window_mean_div_5"), -3, 1e-6);
    assert_float_equal(X(x, K, 3, "power_rel_window_mean"), 150.0 / 351.0, 1e-6);
    assert_float_equal(X(x, K, 3, "sm_clock_rel_window_max"), -0.5, 1e-6);
    assert_float_equal(X(x, K, 0, "util_frac"), 1, 0);
    for (int w = 0; w < W; w++)
        assert_int_equal(m[w], 1);
}

static void add_dev(feat_devices_t *d, const char *inst, const char *dev, const char *rack,
                    const char *pod)
{
    feat_device_t x = {inst, dev, "", "", rack, pod, INT64_MIN, 0};
    assert_int_equal(feat_devices_add(d, &x), 0);
}

static void check_nbrs(const feat_devices_t *d, feat_scope_t sc, const char *want)
{
    size_t cap = feat_neighbours_bound(d, sc);
    uint32_t off[16], idx[64];
    assert_true(cap <= 64);
    assert_int_equal(feat_neighbours(d, sc, off, idx, cap), 0);
    char got[256] = "";
    for (uint32_t i = 0; i < feat_devices_count(d); i++) {
        size_t l = strlen(got);
        snprintf(got + l, sizeof got - l, "%u:", i);
        for (uint32_t k = off[i]; k < off[i + 1]; k++) {
            l = strlen(got);
            snprintf(got + l, sizeof got - l, "%u,", idx[k]);
        }
        l = strlen(got);
        snprintf(got + l, sizeof got - l, " ");
    }
    assert_string_equal(got, want);
    if (cap) assert_int_equal(feat_neighbours(d, sc, off, idx, cap - 1), FEAT_EINVAL);
}

static void test_neighbours(void **state)
{
    (void)state;
    feat_devices_t *d = NULL;
    assert_int_equal(feat_devices_create(&d), 0);
    add_dev(d, "a", "sda", "r1", "p1");
    add_dev(d, "a", "sdb", "r1", "p1");
    add_dev(d, "b", "sda", "r1", "p1");
    add_dev(d, "a", "sdc", "r2", "p1");
    add_dev(d, "c", "sda", "", "");
    check_nbrs(d, FEAT_SCOPE_NODE, "0:1,3, 1:0,3, 2: 3:0,1, 4: ");
    check_nbrs(d, FEAT_SCOPE_RACK, "0:1,2, 1:0,2, 2:0,1, 3: 4: ");
    check_nbrs(d, FEAT_SCOPE_POD, "0:1,2,3, 1:0,2,3, 2:0,1,3, 3:0,1,2, 4: ");
    feat_devices_destroy(d);
    feat_devices_destroy(NULL);
}

/* The plan as text: groups separated by '|', rows as "instance/device". */
static void check_plan(const feat_devices_t *d, feat_scope_t sc, uint32_t cap, const char *want)
{
    uint32_t n = feat_devices_count(d), order[64], goff[65], ng = 99;
    const feat_device_t *pv[64];
    assert_true(n <= 64);
    for (uint32_t i = 0; i < n; i++)
        pv[i] = feat_devices_get(d, i);
    assert_int_equal(feat_scope_plan(pv, n, sc, cap, order, goff, &ng), 0);
    char got[1024] = "";
    assert_int_equal(goff[0], 0);
    assert_int_equal(goff[ng], n);
    for (uint32_t g = 0; g < ng; g++) {
        assert_true(goff[g + 1] > goff[g]);
        size_t l = strlen(got);
        snprintf(got + l, sizeof got - l, "%s", g ? "|" : "");
        for (uint32_t r = goff[g]; r < goff[g + 1]; r++) {
            l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%s/%s", r > goff[g] ? " " : "",
                     pv[order[r]]->instance, pv[order[r]]->device);
        }
    }
    assert_string_equal(got, want);
}

static void test_scope_plan(void **state)
{
    (void)state;
    feat_devices_t *d = NULL;
    assert_int_equal(feat_devices_create(&d), 0);
    add_dev(d, "b", "sda", "r1", "p1");
    add_dev(d, "a", "sda", "r1", "p1");
    add_dev(d, "a", "sdb", "r1", "p1");
    add_dev(d, "c", "sda", "r2", "p1");
    add_dev(d, "d", "sda", "", "");
    add_dev(d, "r1", "sda", "", ""); /* a node named like a rack: not in rack r1 */
    check_plan(d, FEAT_SCOPE_NODE, 0, "a/sda a/sdb|b/sda|c/sda|d/sda|r1/sda");
    /* without a rack label a device keeps its node; rack keys never meet instance keys */
    check_plan(d, FEAT_SCOPE_RACK, 0, "d/sda|r1/sda|a/sda a/sdb b/sda|c/sda");
    check_plan(d, FEAT_SCOPE_POD, 0, "d/sda|r1/sda|a/sda a/sdb b/sda c/sda");
    /* the cap cuts whole nodes: a node is never split, even when alone above the cap */
    check_plan(d, FEAT_SCOPE_POD, 2, "d/sda|r1/sda|a/sda a/sdb|b/sda c/sda");
    check_plan(d, FEAT_SCOPE_POD, 3, "d/sda|r1/sda|a/sda a/sdb|b/sda c/sda");
    check_plan(d, FEAT_SCOPE_NODE, 1, "a/sda a/sdb|b/sda|c/sda|d/sda|r1/sda");
    /* the input order does not change the groups (training and the predictor list devices in
     * different orders) */
    feat_devices_t *e = NULL;
    assert_int_equal(feat_devices_create(&e), 0);
    for (int i = 5; i >= 0; i--) {
        const feat_device_t *x = feat_devices_get(d, (uint32_t)i);
        add_dev(e, x->instance, x->device, x->rack, x->pod);
    }
    check_plan(e, FEAT_SCOPE_POD, 2, "d/sda|r1/sda|a/sdb a/sda|b/sda c/sda");
    feat_devices_destroy(e);
    feat_devices_destroy(d);
    /* a rack of 17 nodes x 8 devices at the default cap 128: two balanced chunks (9 and 8
     * nodes), not 16 + 1 */
    assert_int_equal(feat_devices_create(&d), 0);
    for (int nd = 0; nd < 17; nd++)
        for (int k = 0; k < 8; k++) {
            char in[16], dv[16];
            snprintf(in, sizeof in, "n%02d", nd);
            snprintf(dv, sizeof dv, "sd%c", 'a' + k);
            add_dev(d, in, dv, "r", "");
        }
    uint32_t n = feat_devices_count(d), *order = malloc(n * sizeof *order),
             *goff = malloc((n + 1) * sizeof *goff), ng = 0;
    const feat_device_t **pv = malloc(n * sizeof *pv);
    assert_true(order && goff && pv);
    for (uint32_t i = 0; i < n; i++)
        pv[i] = feat_devices_get(d, i);
    assert_int_equal(
        feat_scope_plan(pv, n, FEAT_SCOPE_RACK, FEAT_SCOPE_CAP_DEFAULT, order, goff, &ng), 0);
    assert_int_equal(ng, 2);
    assert_int_equal(goff[1], 72);
    assert_int_equal(goff[2], 136);
    assert_int_equal(feat_scope_plan(pv, n, FEAT_SCOPE_RACK, 0, order, goff, &ng), 0);
    assert_int_equal(ng, 1);
    /* errors */
    assert_int_equal(feat_scope_plan(pv, n, (feat_scope_t)3, 0, order, goff, &ng), FEAT_EINVAL);
    assert_int_equal(feat_scope_plan(pv, n, FEAT_SCOPE_RACK, 0, NULL, goff, &ng), FEAT_EINVAL);
    assert_int_equal(feat_scope_plan(NULL, 0, FEAT_SCOPE_RACK, 0, NULL, goff, &ng), 0);
    assert_int_equal(ng, 0);
    free(order);
    free(goff);
    free(pv);
    feat_devices_destroy(d);
    /* names */
    feat_scope_t sc = FEAT_SCOPE_NODE;
    assert_int_equal(feat_scope_parse("rack", &sc), 0);
    assert_int_equal(sc, FEAT_SCOPE_RACK);
    assert_int_equal(feat_scope_parse("pod", &sc), 0);
    assert_int_equal(sc, FEAT_SCOPE_POD);
    assert_int_equal(feat_scope_parse("Rack", &sc), FEAT_EINVAL);
    assert_int_equal(feat_scope_parse("", &sc), FEAT_EINVAL);
    assert_int_equal(feat_scope_parse(NULL, &sc), FEAT_EINVAL);
    assert_string_equal(feat_scope_name(FEAT_SCOPE_NODE), "node");
    assert_null(feat_scope_name((feat_scope_t)7));
}

/* ---- store paths -------------------------------------------------------------------- */

static tsdb_t *open_store(const char *dir)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.ooo_window_ms = -1;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    return db;
}

static void put(tsdb_t *db, const char **kv, const int64_t *t, const double *v, uint32_t n)
{
    tsdb_label_t l[16];
    uint32_t nl = 0;
    for (; kv[2 * nl]; nl++) {
        l[nl].name.ptr = kv[2 * nl];
        l[nl].name.len = (uint32_t)strlen(kv[2 * nl]);
        l[nl].value.ptr = kv[2 * nl + 1];
        l[nl].value.len = (uint32_t)strlen(kv[2 * nl + 1]);
    }
    tsdb_sample_t s[16];
    for (uint32_t i = 0; i < n; i++) {
        s[i].t = t[i];
        s[i].v = v[i];
    }
    tsdb_series_in_t in = {l, nl, s, n};
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append(db, &in, 1, NULL, &res), 0);
    assert_int_equal(res.stored, n);
}

#define DAY 86400000LL

/* A tiny store by hand: node a has sda (ATA, replaced on day 3: new serial,
 * attribute counters restart) and nvme0; old label names (id, value_type)
 * on sda's 187. Window W = 4 days ending at day 5. */
static void test_store_tiny_by_hand(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    int64_t T[6];
    for (int i = 0; i < 6; i++)
        T[i] = 1700000000000LL + i * DAY;
    const char *info_old[] = {
        "__name__", "smartctl_device", "instance", "a",    "device", "sda", "serial_number",
        "OLD1",     "model_name",      "M",        "rack", "r1",     NULL};
    const char *info_new[] = {
        "__name__", "smartctl_device", "instance", "a",    "device", "sda", "serial_number",
        "NEW1",     "model_name",      "M",        "rack", "r1",     NULL};
    const char *info_nv[] = {
        "__name__", "smartctl_device", "instance", "a",    "device", "nvme0", "serial_number",
        "NV1",      "protocol",        "NVMe",     "rack", "r1",     NULL};
    double ones[6] = {1, 1, 1, 1, 1, 1};
    put(db, info_old, T, ones, 3);     /* days 0..2 */
    put(db, info_new, T + 3, ones, 3); /* days 3..5 */
    put(db, info_nv, T, ones, 6);
    const char *a5[] = {"__name__",
                        "smartctl_device_attribute",
                        "instance",
                        "a",
                        "device",
                        "sda",
                        "attribute_id",
                        "5",
                        "attribute_name",
                        "Reallocated_Sector_Ct",
                        "attribute_value_type",
                        "raw",
                        NULL};
    double v5[6] = {100, 120, 150, 0, 3, 9}; /* old drive bad, new one from 0 */
    put(db, a5, T, v5, 6);
    const char *a5v[] = {"__name__",
                         "smartctl_device_attribute",
                         "instance",
                         "a",
                         "device",
                         "sda",
                         "attribute_id",
                         "5",
                         "attribute_name",
                         "Reallocated_Sector_Ct",
                         "attribute_value_type",
                         "value",
                         NULL};
    double v5v[6] = {90, 90, 80, 100, 100, 100};
    put(db, a5v, T, v5v, 6);
    const char *a187[] = {
        "__name__", "smartctl_device_attribute", "instance",   "a",   "device", "sda", "id", "187",
        "name",     "Reported_Uncorrect",        "value_type", "raw", NULL};
    double v187[6] = {7, 7, 7, 0, 0, 2};
    put(db, a187, T, v187, 6);
    const char *tmp[] = {"__name__",
                         "smartctl_device_temperature",
                         "instance",
                         "a",
                         "device",
                         "sda",
                         "temperature_type",
                         "current",
                         NULL};
    double vt[6] = {30, 31, 32, 33, 34, 35};
    put(db, tmp, T, vt, 6);
    const char *med[] = {
        "__name__", "smartctl_device_media_errors", "instance", "a", "device", "nvme0", NULL};
    double vm[6] = {0, 0, 0, 1, 1, 5};
    int64_t tm[6];
    for (int i = 0; i < 6; i++)
        tm[i] = T[i] - 3600000; /* an hour before each day mark */
    put(db, med, tm, vm, 6);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    feat_config_t cfg = {FEAT_KIND_DISK, 4, DAY};
    feat_devices_t *d = NULL;
    assert_int_equal(feat_devices_from_store(r, &cfg, T[5], &d), 0);
    assert_int_equal(feat_devices_count(d), 2);
    const feat_device_t *nv = feat_devices_get(d, 0), *sda = feat_devices_get(d, 1);
    assert_string_equal(nv->device, "nvme0");
    assert_int_equal(nv->nvme, 1);
    assert_string_equal(sda->device, "sda");
    assert_string_equal(sda->id, "NEW1");
    assert_int_equal(sda->nvme, 0);
    assert_true(sda->first_ms == T[3]);
    enum { W = 4, C = FEAT_RD_N };
    double raw[2][W][C];
    assert_int_equal(feat_read_store(r, &cfg, d, T[5], &raw[0][0][0]), 0);
    /* Steps are days 2..5. sda: day 2 belongs to the old serial -> padding. */
    for (int c = 0; c < C; c++)
        assert_true(isnan(raw[1][0][c]));
    assert_true(raw[1][1][FEAT_RD_5] == 0 && raw[1][2][FEAT_RD_5] == 3 &&
                raw[1][3][FEAT_RD_5] == 9);
    assert_true(raw[1][3][FEAT_RD_187] == 2); /* old label names */
    assert_true(raw[1][3][FEAT_RD_TEMP] == 35);
    assert_true(raw[1][3][FEAT_RD_NVME] == 0);
    assert_true(isnan(raw[1][3][FEAT_RD_198]));
    /* nvme0: the 23:00 sample lands in the step ending at the next day mark. */
    assert_true(raw[0][0][FEAT_RD_MEDIA] == 0 && raw[0][1][FEAT_RD_MEDIA] == 1 &&
                raw[0][3][FEAT_RD_MEDIA] == 5);
    assert_true(raw[0][3][FEAT_RD_NVME] == 1);
    float x[2 * W * 32];
    uint8_t m[2 * W];
    assert_int_equal(feat_compute(FEAT_KIND_DISK, 2, W, &raw[0][0][0], x, m), 0);
    assert_int_equal(m[W + 0], 0);
    assert_int_equal(m[W + 1], 1);
    const float *xs = x + W * feat_count(FEAT_KIND_DISK);
    assert_float_equal(X(xs, FEAT_KIND_DISK, 3, "log1p_inc_smart_5"), log1p(9), 1e-6);
    /* Neighbours on the node. */
    uint32_t off[3], idx[2];
    assert_int_equal(feat_neighbours(d, FEAT_SCOPE_NODE, off, idx, 2), 0);
    assert_int_equal(off[1] - off[0], 1);
    assert_int_equal(idx[0], 1);
    feat_devices_destroy(d);
    tsdb_reader_close(r);
    assert_int_equal(tsdb_close(db), 0);
    tsdb_thread_cleanup();
    tu_rmrf(dir);
}

/* The simulator writes a store; the raw GPU and disk windows read back equal
 * the values the simulator produced at those steps. */
static void test_store_matches_simulator(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("test_features", 7);
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    sim_config_t c;
    sim_config_init(&c);
    c.seed = seed;
    c.nodes = 2;
    c.disks_per_node = 3;
    c.gpus_per_node = 2;
    c.hazard_scale = 0;
    sim_t *s = NULL;
    assert_int_equal(sim_create(&c, &s), 0);
    sim_store_writer_t *w = NULL;
    assert_int_equal(sim_store_writer_create(db, &w), 0);
    enum { STEPS = 30, W = 12 };
    uint32_t ns = sim_series_count(s);
    double *vals = malloc((size_t)STEPS * ns * sizeof *vals);
    int64_t tlast = 0;
    for (int k = 0; k < STEPS; k++) {
        sim_frame_t f;
        assert_int_equal(sim_step(s, &f), 0);
        assert_int_equal(f.nseries, ns);
        memcpy(vals + (size_t)k * ns, f.v, ns * sizeof *vals);
        assert_int_equal(sim_store_writer_add(w, s, &f), 0);
        tlast = f.t_ms;
    }
    assert_int_equal(sim_store_writer_flush(w), 0);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    /* GPUs: channel -> DCGM series index in a GPU block (found by name). */
    feat_config_t cfg = {FEAT_KIND_GPU, W, c.interval_ms};
    feat_devices_t *d = NULL;
    assert_int_equal(feat_devices_from_store(r, &cfg, tlast, &d), 0);
    assert_int_equal(feat_devices_count(d), sim_gpu_count(s));
    double *raw = malloc((size_t)feat_devices_count(d) * W * FEAT_RG_N * sizeof *raw);
    assert_int_equal(feat_read_store(r, &cfg, d, tlast, raw), 0);
    static const char *names[FEAT_RG_N] = {"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                                           "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                                           "DCGM_FI_DEV_RETIRED_SBE",
                                           "DCGM_FI_DEV_RETIRED_DBE",
                                           "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
                                           "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                                           "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                                           "DCGM_FI_DEV_THERMAL_VIOLATION",
                                           "DCGM_FI_DEV_RETIRED_PENDING",
                                           "DCGM_FI_DEV_ROW_REMAP_FAILURE",
                                           "DCGM_FI_DEV_XID_ERRORS",
                                           "DCGM_FI_DEV_GPU_TEMP",
                                           "DCGM_FI_DEV_MEMORY_TEMP",
                                           "DCGM_FI_DEV_POWER_USAGE",
                                           "DCGM_FI_DEV_SM_CLOCK",
                                           "DCGM_FI_DEV_GPU_UTIL"};
    size_t checked = 0;
    for (uint32_t g = 0; g < sim_gpu_count(s); g++) {
        sim_device_info_t gi;
        sim_gpu_info(s, g, &gi);
        uint32_t di = UINT32_MAX;
        for (uint32_t i = 0; i < feat_devices_count(d); i++)
            if (!strcmp(feat_devices_get(d, i)->id, gi.serial)) di = i;
        assert_true(di != UINT32_MAX);
        assert_string_equal(feat_devices_get(d, di)->instance, gi.instance);
        assert_string_equal(feat_devices_get(d, di)->rack, gi.rack);
        for (uint32_t j = 0; j < gi.nseries; j++) {
            const sim_series_t *se = sim_series_get(s, gi.series_base + j);
            const char *nm = NULL;
            for (uint32_t l = 0; l < se->nlabels; l++)
                if (!strcmp(se->labels[l].name.ptr, "__name__")) nm = se->labels[l].value.ptr;
            for (int ch = 0; ch < FEAT_RG_N; ch++) {
                if (strcmp(nm, names[ch])) continue;
                for (int k = 0; k < W; k++) {
                    double want = vals[(size_t)(STEPS - W + k) * ns + gi.series_base + j];
                    double got = raw[((size_t)di * W + k) * FEAT_RG_N + ch];
                    assert_true(f64_bits(want) == f64_bits(got));
                    checked++;
                }
            }
        }
    }
    assert_int_equal(checked, (size_t)sim_gpu_count(s) * W * FEAT_RG_N);
    free(raw);
    feat_devices_destroy(d);
    /* Disks: SMART 5 raw and temperature for every ATA disk. */
    cfg.kind = FEAT_KIND_DISK;
    assert_int_equal(feat_devices_from_store(r, &cfg, tlast, &d), 0);
    assert_int_equal(feat_devices_count(d), sim_disk_count(s));
    raw = malloc((size_t)feat_devices_count(d) * W * FEAT_RD_N * sizeof *raw);
    assert_int_equal(feat_read_store(r, &cfg, d, tlast, raw), 0);
    for (uint32_t i = 0; i < feat_devices_count(d); i++) {
        const feat_device_t *fd = feat_devices_get(d, i);
        assert_int_equal(fd->nvme, !strncmp(fd->device, "nvme", 4));
        for (int k = 0; k < W; k++) {
            const double *row = raw + ((size_t)i * W + k) * FEAT_RD_N;
            assert_false(isnan(row[FEAT_RD_TEMP]));
            assert_true(row[FEAT_RD_NVME] == (double)fd->nvme);
            if (fd->nvme)
                assert_false(isnan(row[FEAT_RD_MEDIA]));
            else
                assert_false(isnan(row[FEAT_RD_5]));
        }
    }
    float *x = malloc((size_t)feat_devices_count(d) * W * feat_count(FEAT_KIND_DISK) * sizeof *x);
    uint8_t *m = malloc((size_t)feat_devices_count(d) * W);
    assert_int_equal(feat_compute(FEAT_KIND_DISK, feat_devices_count(d), W, raw, x, m), 0);
    for (size_t i = 0; i < (size_t)feat_devices_count(d) * W; i++)
        assert_int_equal(m[i], 1);
    free(x);
    free(m);
    free(raw);
    feat_devices_destroy(d);
    tsdb_reader_close(r);
    sim_store_writer_destroy(w);
    sim_destroy(s);
    free(vals);
    assert_int_equal(tsdb_close(db), 0);
    tsdb_thread_cleanup();
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_disk_window_by_hand),
        cmocka_unit_test(test_gpu_window_by_hand),
        cmocka_unit_test(test_neighbours),
        cmocka_unit_test(test_scope_plan),
        cmocka_unit_test(test_store_tiny_by_hand),
        cmocka_unit_test(test_store_matches_simulator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
