/*
 * test_ntam_file.c — model file round trip (bytes and disk), and refusal of truncated,
 * corrupted, wrong-version, wrong-schema and foreign files.
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

#include "models/ntam_file.h"

static void make_bundle(ntam_bundle_t *b)
{
    memset(b, 0, sizeof *b);
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, 7, 1);
    hp.d_model = 32;
    hp.d_ff = 64;
    hp.d_head = 32;
    assert_int_equal(ntam_create(&hp, 42, &b->model), 0);
    b->n_features = 7;
    for (int i = 0; i < 7; i++) {
        snprintf(b->feature[i], NTAM_FEATURE_NAME, "log_smart_%d_raw", i);
        b->mean[i] = 0.5f * (float)i;
        b->scale[i] = 1.0f / (float)(i + 1);
    }
    b->schema_hash = ntam_schema_hash((const char(*)[NTAM_FEATURE_NAME])b->feature, 7);
    b->kind = NTAM_KIND_DISK;
    b->horizon = 3;
    b->threshold = 0.25f;
    b->seed = 7;
    b->split_seed = 99;
    b->folds = 5;
    b->fold = 2;
    b->holdout_days = 0;
    b->scope = 1; /* rack */
    b->scope_cap = 128;
}

static uint8_t *encode(const ntam_bundle_t *b, size_t *n)
{
    *n = ntam_bundle_bound(b);
    uint8_t *buf = malloc(*n);
    assert_non_null(buf);
    assert_int_equal(ntam_bundle_encode(b, buf, *n), (int64_t)*n);
    return buf;
}

static void test_round_trip(void **state)
{
    (void)state;
    ntam_bundle_t b, c;
    make_bundle(&b);
    size_t n;
    uint8_t *buf = encode(&b, &n);
    /* the worked example of ntam_file.h */
    assert_int_equal(ntam_param_count(b.model), 13953);
    assert_int_equal(n, 56336);
    assert_int_equal(ntam_bundle_decode(buf, n, b.schema_hash, &c), 0);
    assert_int_equal(c.n_features, 7);
    assert_string_equal(c.feature[3], "log_smart_3_raw");
    assert_true(c.mean[4] == b.mean[4] && c.scale[6] == b.scale[6]);
    assert_true(c.threshold == 0.25f && c.horizon == 3 && c.fold == 2 && c.folds == 5);
    assert_true(c.seed == 7 && c.split_seed == 99);
    assert_true(c.scope == 1 && c.scope_cap == 128 && c.version == NTAM_FILE_VERSION);
    assert_memory_equal(ntam_hparams(c.model), ntam_hparams(b.model), sizeof(ntam_hparams_t));
    assert_memory_equal(ntam_params(c.model), ntam_params(b.model),
                        ntam_param_count(b.model) * sizeof(float));
    /* encode → decode → encode gives the same bytes */
    size_t n2;
    uint8_t *buf2 = encode(&c, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n);
    free(buf2);
    ntam_bundle_clear(&c);
    free(buf);
    ntam_bundle_clear(&b);
}

static void test_refused(void **state)
{
    (void)state;
    ntam_bundle_t b, c;
    make_bundle(&b);
    size_t n;
    uint8_t *buf = encode(&b, &n);
    /* truncated anywhere */
    const size_t cuts[] = {0, 5, 8, 20, 24, 100, n / 2, n - 9, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        int rc = ntam_bundle_decode(buf, cuts[i], 0, &c);
        assert_true(cuts[i] < 8 ? rc == NTAM_EFORMAT : rc == NTAM_ETRUNC);
        assert_null(c.model);
    }
    /* one flipped bit anywhere after the version: checksum (or a length mismatch) */
    for (size_t off = 16; off < n; off += 997) {
        buf[off] ^= 0x10;
        int rc = ntam_bundle_decode(buf, n, 0, &c);
        assert_true(rc == NTAM_ECHECKSUM || rc == NTAM_ETRUNC);
        buf[off] ^= 0x10;
    }
    buf[n - 1] ^= 1; /* the checksum itself */
    assert_int_equal(ntam_bundle_decode(buf, n, 0, &c), NTAM_ECHECKSUM);
    buf[n - 1] ^= 1;
    /* wrong version: an older (1) or a newer (4) format */
    assert_int_equal(buf[8], NTAM_FILE_VERSION);
    buf[8] = 1;
    assert_int_equal(ntam_bundle_decode(buf, n, 0, &c), NTAM_EVERSION);
    buf[8] = 4;
    assert_int_equal(ntam_bundle_decode(buf, n, 0, &c), NTAM_EVERSION);
    buf[8] = NTAM_FILE_VERSION;
    /* unknown model-flag bits, with a valid checksum: refused as a bad field */
    buf[12] = 0x04;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n - 8; i++) h = (h ^ buf[i]) * 0x100000001b3ULL;
    uint8_t saved[8];
    memcpy(saved, buf + n - 8, 8);
    for (int i = 0; i < 8; i++) buf[n - 8 + i] = (uint8_t)(h >> (8 * i));
    assert_int_equal(ntam_bundle_decode(buf, n, 0, &c), NTAM_EFORMAT);
    assert_null(c.model);
    buf[12] = 0;
    memcpy(buf + n - 8, saved, 8);
    /* wrong schema */
    assert_int_equal(ntam_bundle_decode(buf, n, b.schema_hash ^ 1, &c), NTAM_ESCHEMA);
    assert_null(c.model);
    /* not a model file; trailing bytes */
    const uint8_t junk[32] = "# HELP node_load1 1m load\n";
    assert_int_equal(ntam_bundle_decode(junk, sizeof junk, 0, &c), NTAM_EFORMAT);
    uint8_t *longer = malloc(n + 4);
    assert_non_null(longer);
    memcpy(longer, buf, n);
    memset(longer + n, 0, 4);
    assert_int_equal(ntam_bundle_decode(longer, n + 4, 0, &c), NTAM_ECHECKSUM);
    free(longer);
    /* the original still decodes */
    assert_int_equal(ntam_bundle_decode(buf, n, 0, &c), 0);
    ntam_bundle_clear(&c);
    free(buf);
    ntam_bundle_clear(&b);
}

/* Neighbour summaries: the flags and the extra tensors round trip; the file is longer by exactly
 * the extra parameters (head.w1 gains 4F rows, nb.ws is 2F × 3d); each bit alone adds its own. */
static void test_nb_summary(void **state)
{
    (void)state;
    ntam_bundle_t b, c, plain;
    make_bundle(&plain);
    memset(&b, 0, sizeof b);
    b = plain;
    ntam_hparams_t hp = *ntam_hparams(plain.model);
    hp.nb_summary = NTAM_NB_SUMMARY_ALL;
    assert_int_equal(ntam_create(&hp, 42, &b.model), 0);
    size_t extra = (size_t)4 * 7 * 32 + (size_t)2 * 7 * 3 * 32;
    assert_int_equal(ntam_param_count(b.model), ntam_param_count(plain.model) + extra);
    size_t n, n0;
    uint8_t *buf = encode(&b, &n), *buf0 = encode(&plain, &n0);
    assert_int_equal(n, n0 + 4 * extra);
    assert_int_equal(buf[12], 3);
    assert_int_equal(buf0[12], 0);
    assert_int_equal(ntam_bundle_decode(buf, n, b.schema_hash, &c), 0);
    assert_int_equal(ntam_hparams(c.model)->nb_summary, NTAM_NB_SUMMARY_ALL);
    assert_memory_equal(ntam_params(c.model), ntam_params(b.model),
                        ntam_param_count(b.model) * sizeof(float));
    ntam_bundle_clear(&c);
    assert_int_equal(ntam_bundle_decode(buf0, n0, 0, &c), 0);
    assert_int_equal(ntam_hparams(c.model)->nb_summary, 0);
    ntam_bundle_clear(&c);
    for (int bit = 1; bit <= 2; bit++) {
        ntam_hparams_t h1 = hp;
        h1.nb_summary = bit;
        ntam_t *m1;
        assert_int_equal(ntam_create(&h1, 42, &m1), 0);
        assert_int_equal(ntam_param_count(m1), ntam_param_count(plain.model) +
                                                   (bit == NTAM_NB_SUMMARY_KV ? (size_t)2 * 7 * 3 * 32
                                                                              : (size_t)4 * 7 * 32));
        ntam_destroy(m1);
    }
    free(buf);
    free(buf0);
    ntam_bundle_clear(&b);
    ntam_bundle_clear(&plain);
}

/* A real version-1 file (the disk demo model shipped before the neighbour summaries) is refused
 * with a message that says what to do. */
static void test_v1_file_refused(void **state)
{
    (void)state;
    const char *src = getenv("AUGUR_SRC");
    assert_non_null(src); /* set by ctest */
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/ntam/disk-sim-v1.ntam", src);
    ntam_bundle_t c;
    assert_int_equal(ntam_bundle_load(path, 0, &c), NTAM_EVERSION);
    assert_null(c.model);
    const char *msg = ntam_strerror(NTAM_EVERSION);
    assert_non_null(strstr(msg, "versions 2 and 3"));
    assert_non_null(strstr(msg, "version 1"));
    assert_non_null(strstr(msg, "retrain"));
}

/* Rewrite the checksum of buf[0..n) after an edit. */
static void fix_checksum(uint8_t *buf, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n - 8; i++)
        h = (h ^ buf[i]) * 0x100000001b3ULL;
    for (int i = 0; i < 8; i++)
        buf[n - 8 + i] = (uint8_t)(h >> (8 * i));
}

/* Version 3 records the neighbourhood scope and its cap; a bad scope or cap is refused even
 * with a valid checksum; the version-2 layout (no scope words) still loads, as scope node. */
static void test_scope(void **state)
{
    (void)state;
    ntam_bundle_t b, c;
    make_bundle(&b);
    size_t n;
    uint8_t *buf = encode(&b, &n);
    size_t at = 72 + 7 * 56 + 36; /* the scope word: 108 + 56F */
    assert_int_equal(buf[at], 1);
    assert_int_equal(buf[at + 4], 128);
    for (int bad = 0; bad < 3; bad++) {
        uint8_t *x = malloc(n);
        assert_non_null(x);
        memcpy(x, buf, n);
        if (bad == 0) x[at] = 3;        /* no such scope */
        if (bad == 1) x[at + 3] = 0x80; /* negative scope */
        if (bad == 2) x[at + 7] = 0x80; /* negative cap */
        fix_checksum(x, n);
        assert_int_equal(ntam_bundle_decode(x, n, 0, &c), NTAM_EFORMAT);
        assert_null(c.model);
        free(x);
    }
    /* the same model in the version-2 layout: drop the two words, version 2, new length */
    size_t n2 = n - 8;
    uint8_t *v2 = malloc(n2);
    assert_non_null(v2);
    memcpy(v2, buf, at);
    memcpy(v2 + at, buf + at + 8, n - at - 8);
    v2[8] = 2;
    for (int i = 0; i < 8; i++)
        v2[16 + i] = (uint8_t)((uint64_t)n2 >> (8 * i));
    fix_checksum(v2, n2);
    assert_int_equal(ntam_bundle_decode(v2, n2, b.schema_hash, &c), 0);
    assert_int_equal(c.version, 2);
    assert_int_equal(c.scope, 0); /* node: how version-2 models were trained and served */
    assert_int_equal(c.scope_cap, 0);
    assert_memory_equal(ntam_params(c.model), ntam_params(b.model),
                        ntam_param_count(b.model) * sizeof(float));
    /* re-encoded it is a version-3 file of scope node */
    size_t n3;
    uint8_t *re = encode(&c, &n3);
    assert_int_equal(n3, n);
    assert_int_equal(re[8], 3);
    assert_int_equal(re[at], 0);
    free(re);
    ntam_bundle_clear(&c);
    /* the version-2 layout with a version-3 number is not mistaken for one */
    v2[8] = 3;
    fix_checksum(v2, n2);
    assert_int_not_equal(ntam_bundle_decode(v2, n2, 0, &c), 0);
    assert_null(c.model);
    /* encode refuses a scope it cannot record */
    b.scope = 3;
    uint8_t *y = malloc(n);
    assert_non_null(y);
    assert_int_equal(ntam_bundle_encode(&b, y, n), NTAM_EINVAL);
    free(y);
    free(v2);
    free(buf);
    ntam_bundle_clear(&b);
}

/* The demo models shipped in models/data are version-2 files: they still load, as scope node. */
static void test_v2_demo_loads(void **state)
{
    (void)state;
    const char *src = getenv("AUGUR_SRC");
    assert_non_null(src);
    const char *files[2] = {"models/data/disk-sim.ntam", "models/data/gpu-sim.ntam"};
    for (int k = 0; k < 2; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", src, files[k]);
        ntam_bundle_t c;
        assert_int_equal(ntam_bundle_load(path, 0, &c), 0);
        assert_int_equal(c.version, 2);
        assert_int_equal(c.scope, 0);
        assert_int_equal(c.kind, k == 0 ? NTAM_KIND_DISK : NTAM_KIND_GPU);
        ntam_bundle_clear(&c);
    }
}

static void test_save_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_ntam_file.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], tmp[160];
    snprintf(path, sizeof path, "%s/m.ntam", dir);
    ntam_bundle_t b, c;
    make_bundle(&b);
    assert_int_equal(ntam_bundle_save(&b, path), 0);
    assert_int_equal(ntam_bundle_load(path, b.schema_hash, &c), 0);
    assert_memory_equal(ntam_params(c.model), ntam_params(b.model),
                        ntam_param_count(b.model) * sizeof(float));
    ntam_bundle_clear(&c);
    /* truncate the file on disk */
    assert_int_equal(truncate(path, 1000), 0);
    assert_int_equal(ntam_bundle_load(path, 0, &c), NTAM_ETRUNC);
    snprintf(tmp, sizeof tmp, "%s/missing", dir);
    assert_int_equal(ntam_bundle_load(tmp, 0, &c), NTAM_EIO);
    assert_int_equal(ntam_bundle_load(dir, 0, &c), NTAM_EIO); /* a directory */
    unlink(path);
    rmdir(dir);
    ntam_bundle_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_nb_summary), cmocka_unit_test(test_v1_file_refused),
        cmocka_unit_test(test_scope),      cmocka_unit_test(test_v2_demo_loads),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
