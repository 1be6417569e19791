/*
 * test_codec.c — chunk and block codec (tsdb/codec.c): bit-exact round trips
 * on adversarial values and timestamps, determinism, bounds, and rejection of
 * every truncation and corruption.
 *
 * Random tests use one seed, printed at start; set AUGUR_TEST_SEED to replay.
 */
#include <dirent.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>
#include <zstd.h>

#include "tsdb/codec.h"

static uint64_t g_seed;

#define NMODES 5
static const int all_modes[NMODES] = {CHUNK_V_AUTO, CHUNK_V_CONST, CHUNK_V_DECIMAL,
                                      CHUNK_V_GORILLA, CHUNK_V_XORB};

/* ---- helpers ------------------------------------------------------------- */

static void assert_same_samples(const tsdb_sample_t *a, const tsdb_sample_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].t != b[i].t || f64_bits(a[i].v) != f64_bits(b[i].v)) {
            print_error("sample %zu: want t=%" PRId64 " v=%016" PRIx64 ", got t=%" PRId64
                        " v=%016" PRIx64 "\n",
                        i, a[i].t, f64_bits(a[i].v), b[i].t, f64_bits(b[i].v));
            fail();
        }
    }
}

static int all_same_bits(const tsdb_sample_t *s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (f64_bits(s[i].v) != f64_bits(s[0].v)) return 0;
    return 1;
}

/* Encode with vmode, decode, compare; also checks chunk_info, determinism,
 * chunk_bound and a too-small capacity. */
static void roundtrip_mode(const tsdb_sample_t *s, size_t n, int vmode)
{
    tbuf_t a = {0}, b = {0};
    int rc = chunk_encode_mode(s, n, vmode, &a);
    if (vmode == CHUNK_V_CONST && !all_same_bits(s, n)) {
        assert_int_equal(rc, TSDB_EINVAL);
        tbuf_free(&a);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(chunk_encode_mode(s, n, vmode, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.p, b.p, a.len);
    if (vmode == CHUNK_V_AUTO) assert_true(a.len <= chunk_bound(n));
    if (vmode >= 0) assert_int_equal(chunk_value_mode(a.p, a.len), vmode);

    uint32_t cnt;
    int64_t mint, maxt;
    assert_int_equal(chunk_info(a.p, a.len, &cnt, &mint, &maxt), 0);
    assert_int_equal(cnt, n);
    assert_true(mint == s[0].t && maxt == s[n - 1].t);

    tsdb_sample_t *out = calloc(n + 1, sizeof *out);
    assert_non_null(out);
    size_t got = 0;
    assert_int_equal(chunk_decode(a.p, a.len, out, n, &got), 0);
    assert_int_equal(got, n);
    assert_same_samples(s, out, n);
    assert_int_equal(chunk_decode(a.p, a.len, out, n - 1, &got), TSDB_ECORRUPT);
    free(out);
    tbuf_free(&a);
    tbuf_free(&b);
}

static void roundtrip_all(const tsdb_sample_t *s, size_t n)
{
    for (int i = 0; i < NMODES; i++) roundtrip_mode(s, n, all_modes[i]);
}

static int auto_mode(const tsdb_sample_t *s, size_t n)
{
    tbuf_t a = {0};
    assert_int_equal(chunk_encode(s, n, &a), 0);
    int m = chunk_value_mode(a.p, a.len);
    tbuf_free(&a);
    return m;
}

static tsdb_sample_t *regular(size_t n, int64_t t0, int64_t step)
{
    tsdb_sample_t *s = calloc(n, sizeof *s);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) s[i].t = t0 + (int64_t)i * step;
    return s;
}

static const uint64_t special_bits[] = {
    UINT64_C(0x7ff0000000000002), /* Prometheus staleness NaN */
    UINT64_C(0x7ff8000000000000), /* quiet NaN */
    UINT64_C(0xfff8000000000000), /* negative quiet NaN */
    UINT64_C(0x7ff8000000000123), /* quiet NaN with payload */
    UINT64_C(0x7ff0000000000001), /* signalling NaN */
    UINT64_C(0x7ff4deadbeef0001), /* signalling NaN with payload */
    UINT64_C(0xffffffffffffffff), /* all ones NaN */
    UINT64_C(0x7ff0000000000000), /* +Inf */
    UINT64_C(0xfff0000000000000), /* -Inf */
    UINT64_C(0x8000000000000000), /* -0.0 */
    UINT64_C(0x0000000000000000), /* +0.0 */
    UINT64_C(0x0000000000000001), /* smallest denormal */
    UINT64_C(0x800fffffffffffff), /* largest negative denormal */
    UINT64_C(0x0010000000000000), /* DBL_MIN */
    UINT64_C(0x7fefffffffffffff), /* DBL_MAX */
    UINT64_C(0xffefffffffffffff), /* -DBL_MAX */
    UINT64_C(0x3fd3333333333334), /* 0.1 + 0.2 */
    UINT64_C(0x3ff0000000000000), /* 1.0 */
    UINT64_C(0x4340000000000000), /* 2^53 */
    UINT64_C(0x4340000000000001), /* 2^53 + 2 */
    UINT64_C(0x43e0000000000000), /* 2^63 */
    UINT64_C(0xc3e0000000000000), /* -2^63 */
};
#define NSPECIAL (sizeof special_bits / sizeof special_bits[0])

static trng_t test_rng(uint64_t salt)
{
    trng_t r;
    trng_seed(&r, g_seed ^ salt);
    return r;
}

/* ---- chunks: values -------------------------------------------------------- */

static void test_chunk_worked_example(void **state)
{
    (void)state;
    /* the example in codec.c's layout comment */
    tsdb_sample_t s[3] = {{1000, 1.5}, {16000, 1.75}, {31000, 2.0}};
    static const uint8_t want[] = {0x05, 0x03, 0xd0, 0x0f, 0x98, 0x75,
                                   0x02, 0x19, 0x0c, 0x0e, 0x10};
    tbuf_t b = {0};
    assert_int_equal(chunk_encode(s, 3, &b), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.p, want, sizeof want);
    tbuf_free(&b);
}

static void test_chunk_special_values(void **state)
{
    (void)state;
    size_t n = NSPECIAL;
    tsdb_sample_t *s = regular(n, 1700000000000, 15000);
    /* each special alone, as a constant, and all of them in sequence */
    for (size_t i = 0; i < NSPECIAL; i++) {
        for (size_t j = 0; j < n; j++) s[j].v = f64_from_bits(special_bits[i]);
        roundtrip_all(s, 1);
        roundtrip_all(s, n);
        assert_int_equal(auto_mode(s, n), CHUNK_V_CONST);
    }
    for (size_t j = 0; j < n; j++) s[j].v = f64_from_bits(special_bits[j]);
    roundtrip_all(s, n);
    for (size_t j = 0; j < n; j++) s[j].v = f64_from_bits(special_bits[n - 1 - j]);
    roundtrip_all(s, n);
    free(s);
}

static void test_chunk_decimal_with_exceptions(void **state)
{
    (void)state;
    /* a decimal gauge with staleness markers, -0.0, Inf and NaN inside: stays DECIMAL */
    size_t n = 240;
    tsdb_sample_t *s = regular(n, 1700000000000, 15000);
    for (size_t i = 0; i < n; i++) s[i].v = 20.0 + (double)(i % 17) / 10.0;
    s[0].v = f64_from_bits(TSDB_STALE_NAN_BITS);
    s[17].v = -0.0;
    s[100].v = INFINITY;
    s[101].v = NAN;
    s[n - 1].v = f64_from_bits(TSDB_STALE_NAN_BITS);
    roundtrip_all(s, n);
    assert_int_equal(auto_mode(s, n), CHUNK_V_DECIMAL);
    /* forced DECIMAL on values that are all exceptions */
    for (size_t i = 0; i < n; i++) s[i].v = f64_from_bits(special_bits[i % NSPECIAL]);
    roundtrip_mode(s, n, CHUNK_V_DECIMAL);
    free(s);
}

static void test_chunk_decimal_precision(void **state)
{
    (void)state;
    size_t n = 120;
    tsdb_sample_t *s = regular(n, 0, 1000);
    /* integers stored as floats, large and negative */
    for (size_t i = 0; i < n; i++) s[i].v = 4096.0 * (double)(2000000 + i * i);
    roundtrip_all(s, n);
    assert_int_equal(auto_mode(s, n), CHUNK_V_DECIMAL);
    for (size_t i = 0; i < n; i++) s[i].v = -9007199254740992.0 + (double)i;
    roundtrip_all(s, n);
    /* values needing 1..15 decimals, and 0.1 + 0.2 which no short decimal hits */
    for (int k = 1; k <= 15; k++) {
        for (size_t i = 0; i < n; i++) s[i].v = (double)(int64_t)(i * 7 + 3) / pow(10.0, k);
        roundtrip_all(s, n);
    }
    for (size_t i = 0; i < n; i++) s[i].v = (i & 1) ? 0.1 + 0.2 : 0.3;
    roundtrip_all(s, n);
    /* tiny and huge magnitudes */
    for (size_t i = 0; i < n; i++) s[i].v = 1e-300 * (double)(i + 1);
    roundtrip_all(s, n);
    for (size_t i = 0; i < n; i++) s[i].v = 1e300 * (double)(i + 1);
    roundtrip_all(s, n);
    for (size_t i = 0; i < n; i++) s[i].v = (i & 1) ? DBL_MAX : -DBL_MAX;
    roundtrip_all(s, n);
    for (size_t i = 0; i < n; i++) s[i].v = (double)(i % 3) * 1e18 - 9.2e18;
    roundtrip_all(s, n);
    /* 12-decimal values above 2^52 / 10^12 where v * 10^12 lands on a half:
     * the encoder must still find k = 12 (dh is the byte after the header) */
    {
        tsdb_sample_t h[3] = {{0, 4105.5432488592423}, {1000, 4126.1245371678924},
                              {2000, 4144.5792908090743}};
        tbuf_t b = {0};
        assert_int_equal(chunk_encode_mode(h, 3, CHUNK_V_DECIMAL, &b), 0);
        assert_int_equal(b.p[5] & 31, 12);
        assert_int_equal(b.p[5] & 0x80, 0);
        tbuf_free(&b);
        roundtrip_all(h, 3);
    }
    /* mantissa deltas that overflow int64 */
    for (size_t i = 0; i < n; i++) s[i].v = (i & 1) ? 9.0e18 : -9.0e18;
    roundtrip_all(s, n);
    free(s);
}

static void test_chunk_counters(void **state)
{
    (void)state;
    trng_t r = test_rng(1);
    size_t n = 480;
    tsdb_sample_t *s = regular(n, 1767225600000, 15000);
    double c = 0;
    for (size_t i = 0; i < n; i++) {
        if (trng_below(&r, 100) == 0) c = 0; /* reset */
        c += (double)trng_below(&r, 100000) / 100.0;
        s[i].v = round(c * 100) / 100;
    }
    roundtrip_all(s, n);
    assert_int_equal(auto_mode(s, n), CHUNK_V_DECIMAL);
    /* a counter in 512-byte sectors */
    c = 1e12;
    for (size_t i = 0; i < n; i++) {
        c += 512.0 * (double)trng_below(&r, 5000);
        s[i].v = c;
    }
    roundtrip_all(s, n);
    /* a counter that increments by exactly 1 every time */
    for (size_t i = 0; i < n; i++) s[i].v = 1e6 + (double)i;
    roundtrip_all(s, n);
    free(s);
}

static void test_chunk_random(void **state)
{
    (void)state;
    trng_t r = test_rng(2);
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 1 + (size_t)trng_below(&r, iter < 200 ? 40 : 700);
        tsdb_sample_t *s = calloc(n, sizeof *s);
        assert_non_null(s);
        int64_t t = (int64_t)(trng_next(&r) >> 20) - (INT64_C(1) << 43);
        int tkind = (int)trng_below(&r, 3), vkind = (int)trng_below(&r, 6);
        for (size_t i = 0; i < n; i++) {
            s[i].t = t;
            t += tkind == 0 ? 15000 : tkind == 1 ? 1 + (int64_t)trng_below(&r, 3) * 14999
                                                  : 14990 + (int64_t)trng_below(&r, 20);
            switch (vkind) {
            case 0: /* any bits */
                s[i].v = f64_from_bits(trng_next(&r));
                break;
            case 1: /* uniform doubles */
                s[i].v = trng_unit(&r) * 1000;
                break;
            case 2: /* decimals with 0..4 digits */
                s[i].v = (double)(int64_t)trng_below(&r, 100000) / 100.0;
                break;
            case 3: /* mostly equal, sometimes special */
                s[i].v = trng_below(&r, 8) ? 42.5 : f64_from_bits(special_bits[trng_below(&r, NSPECIAL)]);
                break;
            case 4: /* random walk on a grid of 0.25 */
                s[i].v = (i ? s[i - 1].v : 0) + 0.25 * ((double)trng_below(&r, 9) - 4);
                break;
            default: /* few distinct bit patterns */
                s[i].v = f64_from_bits(special_bits[trng_below(&r, 3)]);
                break;
            }
        }
        roundtrip_all(s, n);
        free(s);
    }
}

/* ---- chunks: timestamps ---------------------------------------------------- */

static void test_chunk_timestamps(void **state)
{
    (void)state;
    tsdb_sample_t s[8];
    for (int i = 0; i < 8; i++) s[i].v = (double)i;

    /* single samples at the extremes */
    int64_t singles[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX};
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) {
        s[0].t = singles[i];
        roundtrip_all(s, 1);
    }
    /* two samples whose delta overflows int64 */
    s[0].t = INT64_MIN;
    s[1].t = INT64_MAX;
    roundtrip_all(s, 2);
    /* delta-of-delta overflowing int64 */
    int64_t wild[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX};
    for (int i = 0; i < 4; i++) s[i].t = wild[i];
    roundtrip_all(s, 4);
    int64_t wild2[] = {INT64_MIN, 0, 1, 2, INT64_MAX - 5, INT64_MAX - 4, INT64_MAX};
    for (int i = 0; i < 7; i++) s[i].t = wild2[i];
    roundtrip_all(s, 7);
    /* negative timestamps, constant interval */
    for (int i = 0; i < 8; i++) s[i].t = -1000000 + i * 7;
    roundtrip_all(s, 8);
    /* constant interval ending exactly at INT64_MAX */
    for (int i = 0; i < 8; i++) s[i].t = INT64_MAX - (7 - i) * (INT64_C(1) << 59);
    roundtrip_all(s, 8);
    /* irregular: jittered scrape, gaps */
    int64_t irr[] = {1000, 2001, 2999, 4000, 60000, 60001, 120000, 120500};
    for (int i = 0; i < 8; i++) s[i].t = irr[i];
    roundtrip_all(s, 8);

    /* not strictly increasing, empty, NULL */
    tbuf_t b = {0};
    for (int i = 0; i < 8; i++) s[i].t = i;
    s[5].t = 4;
    assert_int_equal(chunk_encode(s, 8, &b), TSDB_EINVAL);
    s[5].t = 3;
    assert_int_equal(chunk_encode(s, 8, &b), TSDB_EINVAL);
    s[0].t = INT64_MAX;
    assert_int_equal(chunk_encode(s, 2, &b), TSDB_EINVAL);
    assert_int_equal(chunk_encode(s, 0, &b), TSDB_EINVAL);
    assert_int_equal(chunk_encode(NULL, 1, &b), TSDB_EINVAL);
    assert_int_equal(chunk_encode_mode(s, 1, 7, &b), TSDB_EINVAL);
    assert_int_equal(b.len, 0);
    tbuf_free(&b);
}

static void test_chunk_sizes(void **state)
{
    (void)state;
    /* a constant series with a constant interval costs a few bytes */
    size_t n = 240;
    tsdb_sample_t *s = regular(n, 1767225600000, 15000);
    for (size_t i = 0; i < n; i++) s[i].v = 16777216.0;
    tbuf_t b = {0};
    assert_int_equal(chunk_encode(s, n, &b), 0);
    assert_true(b.len <= 20);
    /* appending: chunk_encode adds to what is in the buffer */
    size_t first = b.len;
    assert_int_equal(chunk_encode(s, n, &b), 0);
    assert_int_equal(b.len, 2 * first);
    assert_memory_equal(b.p, b.p + first, first);
    /* a linear counter: order 2 residuals are all zero */
    for (size_t i = 0; i < n; i++) s[i].v = 100.5 + 0.25 * (double)i;
    b.len = 0;
    assert_int_equal(chunk_encode(s, n, &b), 0);
    assert_true(b.len <= 20 + n);
    tbuf_free(&b);
    free(s);
    assert_true(chunk_bound(1) >= 30);
    assert_int_equal(chunk_bound(SIZE_MAX / 2), SIZE_MAX);
}

/* ---- chunks: malformed input ----------------------------------------------- */

static void make_chunks(tbuf_t *all, size_t *offs, size_t *nchunks)
{
    trng_t r = test_rng(3);
    size_t k = 0;
    for (int kind = 0; kind < 6; kind++) {
        for (int mode = 0; mode < NMODES; mode++) {
            size_t n = kind == 0 ? 1 : 2 + (size_t)trng_below(&r, 50);
            tsdb_sample_t *s = regular(n, 1767225600000, 15000);
            for (size_t i = 0; i < n; i++) {
                if (kind == 2 && i) s[i].t = s[i - 1].t + 1 + (int64_t)trng_below(&r, 30000);
                s[i].v = kind == 1   ? 3.0
                         : kind == 3 ? f64_from_bits(trng_next(&r))
                         : kind == 4 ? f64_from_bits(special_bits[trng_below(&r, NSPECIAL)])
                                     : (double)trng_below(&r, 1000) / 10.0;
            }
            if (chunk_encode_mode(s, n, all_modes[mode], all) == 0) offs[++k] = all->len;
            free(s);
        }
    }
    *nchunks = k;
}

static void test_chunk_truncations(void **state)
{
    (void)state;
    tbuf_t all = {0};
    size_t offs[64] = {0}, nc = 0;
    make_chunks(&all, offs, &nc);
    assert_true(nc > 20);
    tsdb_sample_t out[64];
    for (size_t c = 0; c < nc; c++) {
        const uint8_t *p = all.p + offs[c];
        size_t len = offs[c + 1] - offs[c], n;
        assert_int_equal(chunk_decode(p, len, out, 64, &n), 0);
        for (size_t l = 0; l < len; l++) {
            /* a copy of exactly l bytes, so ASan sees any over-read */
            uint8_t *cp = malloc(l ? l : 1);
            assert_non_null(cp);
            memcpy(cp, p, l);
            assert_int_equal(chunk_decode(cp, l, out, 64, &n), TSDB_ECORRUPT);
            free(cp);
        }
        /* one trailing byte too many */
        uint8_t *cp = malloc(len + 1);
        assert_non_null(cp);
        memcpy(cp, p, len);
        cp[len] = 0;
        assert_int_equal(chunk_decode(cp, len + 1, out, 64, &n), TSDB_ECORRUPT);
        free(cp);
    }
    assert_int_equal(chunk_info(NULL, 0, NULL, NULL, NULL), TSDB_ECORRUPT);
    tbuf_free(&all);
}

static void test_chunk_corruptions(void **state)
{
    (void)state;
    tbuf_t all = {0};
    size_t offs[64] = {0}, nc = 0;
    make_chunks(&all, offs, &nc);
    trng_t r = test_rng(4);
    tsdb_sample_t out[64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t c = (size_t)trng_below(&r, nc), len = offs[c + 1] - offs[c], n = 0;
        uint8_t *cp = malloc(len);
        assert_non_null(cp);
        memcpy(cp, all.p + offs[c], len);
        int flips = 1 + (int)trng_below(&r, 3);
        for (int f = 0; f < flips; f++) cp[trng_below(&r, len)] ^= (uint8_t)(1 + trng_below(&r, 255));
        int rc = chunk_decode(cp, len, out, 64, &n);
        assert_true(rc == 0 || rc == TSDB_ECORRUPT);
        if (rc == 0) {
            assert_true(n >= 1 && n <= 64);
            for (size_t i = 1; i < n; i++) assert_true(out[i].t > out[i - 1].t);
            uint32_t cnt;
            int64_t mint, maxt;
            assert_int_equal(chunk_info(cp, len, &cnt, &mint, &maxt), 0);
            assert_true(cnt == n && mint == out[0].t && maxt == out[n - 1].t);
        }
        free(cp);
    }
    tbuf_free(&all);
}

static void test_chunk_crafted(void **state)
{
    (void)state;
    tsdb_sample_t out[8];
    size_t n;
    /* header claims 2^32-1 samples at a constant interval: refused by cap, not looped */
    static const uint8_t huge[] = {0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x01,
                                   0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t cnt;
    assert_int_equal(chunk_info(huge, sizeof huge, &cnt, NULL, NULL), 0);
    assert_int_equal(cnt, UINT32_MAX);
    assert_int_equal(chunk_decode(huge, sizeof huge, out, 8, &n), TSDB_ECORRUPT);
    /* n = 2^32 */
    static const uint8_t over[] = {0x01, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00, 0x01,
                                   0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(chunk_info(over, sizeof over, NULL, NULL, NULL), TSDB_ECORRUPT);
    /* constant interval running past INT64_MAX */
    static const uint8_t past[] = {0x01, 0x03, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(chunk_info(past, sizeof past, NULL, NULL, NULL), TSDB_ECORRUPT);
    /* zero interval; reserved bits; bad modes; n == 1 with tmode 1 */
    static const uint8_t zero_iv[] = {0x01, 0x02, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t resv[] = {0x20, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t badv[] = {0x10, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t badt[] = {0x03, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t one1[] = {0x01, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t ok1[] = {0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(chunk_decode(zero_iv, sizeof zero_iv, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(resv, sizeof resv, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(badv, sizeof badv, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(badt, sizeof badt, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(one1, sizeof one1, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(ok1, sizeof ok1, out, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(chunk_decode(ok1, sizeof ok1, NULL, 8, &n), TSDB_ECORRUPT);
    /* delta-of-delta going backwards, and a span that disagrees with the dods */
    static const uint8_t back[] = {0x02, 0x03, 0x00, 0x02, 0x02, 0x05, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t span[] = {0x02, 0x03, 0x00, 0x05, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t good[] = {0x02, 0x03, 0x00, 0x05, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(chunk_decode(back, sizeof back, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(span, sizeof span, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(good, sizeof good, out, 8, &n), 0);
    assert_true(n == 3 && out[0].t == 0 && out[1].t == 2 && out[2].t == 5);
    /* DECIMAL: k > 22, g == 0, exception beyond n */
    static const uint8_t dk[] = {0x04, 0x01, 0x00, 0x17, 0x01, 0x00};
    static const uint8_t dg[] = {0x04, 0x01, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t dx[] = {0x04, 0x01, 0x00, 0x80, 0x01, 0x00, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t dok[] = {0x04, 0x01, 0x00, 0x80, 0x01, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f};
    assert_int_equal(chunk_decode(dk, sizeof dk, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(dg, sizeof dg, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(dx, sizeof dx, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(dok, sizeof dok, out, 8, &n), 0);
    assert_true(isinf(out[0].v));
    /* GORILLA: window reuse before any window; nonzero padding */
    static const uint8_t gw[] = {0x09, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x80};
    static const uint8_t gp[] = {0x09, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
    static const uint8_t gok[] = {0x09, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x00};
    assert_int_equal(chunk_decode(gw, sizeof gw, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(gp, sizeof gp, out, 8, &n), TSDB_ECORRUPT);
    assert_int_equal(chunk_decode(gok, sizeof gok, out, 8, &n), 0);
    /* XORB: control with lzb + tzb > 7 */
    static const uint8_t xc[] = {0x0d, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x44};
    assert_int_equal(chunk_decode(xc, sizeof xc, out, 8, &n), TSDB_ECORRUPT);
}

/* ---- blocks ------------------------------------------------------------------ */

typedef struct {
    block_series_t *series;
    tsdb_sample_t *samples;
    size_t ns;
} blockset_t;

static void blockset_make(blockset_t *bs, size_t ns, size_t npts, uint64_t salt)
{
    trng_t r = test_rng(salt);
    bs->ns = ns;
    bs->series = calloc(ns, sizeof *bs->series);
    bs->samples = calloc(ns * npts, sizeof *bs->samples);
    assert_non_null(bs->series);
    assert_non_null(bs->samples);
    uint32_t sid = (uint32_t)trng_below(&r, 1000);
    for (size_t i = 0; i < ns; i++) {
        tsdb_sample_t *s = bs->samples + i * npts;
        size_t n = 1 + (size_t)trng_below(&r, npts);
        int kind = (int)trng_below(&r, 4);
        double c = 0;
        for (size_t j = 0; j < n; j++) {
            s[j].t = 1767225600000 + (int64_t)j * 15000 + (kind == 3 ? (int64_t)trng_below(&r, 50) : 0);
            c += (double)trng_below(&r, 1000);
            s[j].v = kind == 0 ? 1.0 : kind == 1 ? c / 100 : kind == 2 ? trng_unit(&r) : c;
        }
        bs->series[i].sid = sid;
        bs->series[i].samples = s;
        bs->series[i].n = (uint32_t)n;
        sid += 1 + (uint32_t)trng_below(&r, i % 7 == 0 ? 100000 : 3);
    }
}

static void blockset_free(blockset_t *bs)
{
    free(bs->series);
    free(bs->samples);
}

static void block_check(const blockset_t *bs, const uint8_t *p, size_t len)
{
    block_reader_t br = {0};
    assert_int_equal(block_open(&br, p, len), 0);
    assert_int_equal(br.nseries, bs->ns);
    uint64_t total = 0;
    tsdb_sample_t *out = calloc(2000, sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < bs->ns; i++) {
        const block_series_t *s = &bs->series[i];
        assert_int_equal(block_find(&br, s->sid), (long)i);
        assert_int_equal(br.sids[i], s->sid);
        assert_int_equal(br.counts[i], s->n);
        assert_true(br.mints[i] == s->samples[0].t && br.maxts[i] == s->samples[s->n - 1].t);
        size_t n = 0;
        assert_int_equal(block_decode_series(&br, (uint32_t)i, out, 2000, &n), 0);
        assert_int_equal(n, s->n);
        assert_same_samples(s->samples, out, n);
        if (s->n > 1)
            assert_int_equal(block_decode_series(&br, (uint32_t)i, out, s->n - 1, &n), TSDB_ECORRUPT);
        total += s->n;
        if (i == 0 || s->sid != bs->series[i - 1].sid + 1)
            assert_int_equal(block_find(&br, s->sid - 1), -1);
    }
    assert_int_equal(br.total_samples, total);
    assert_int_equal(block_find(&br, bs->series[bs->ns - 1].sid + 1), -1);
    assert_int_equal(block_decode_series(&br, (uint32_t)bs->ns, out, 2000, NULL), TSDB_ECORRUPT);
    free(out);
    block_reader_free(&br);
    block_reader_free(&br); /* twice is fine */
    block_reader_free(NULL);
}

static void test_block_roundtrip(void **state)
{
    (void)state;
    static const int levels[] = {-5, 1, 3, 9, 19};
    for (size_t ns = 1; ns <= 300; ns = ns * 3 + 1) {
        blockset_t bs;
        blockset_make(&bs, ns, 300, 10 + ns);
        tbuf_t a = {0}, b = {0}, scratch = {0};
        for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
            assert_int_equal(block_encode(bs.series, ns, levels[l], &a, &scratch), 0);
            block_check(&bs, a.p, a.len);
            /* deterministic, and out/scratch are reusable */
            assert_int_equal(block_encode(bs.series, ns, levels[l], &b, &scratch), 0);
            assert_int_equal(a.len, b.len);
            assert_memory_equal(a.p, b.p, a.len);
        }
        tbuf_free(&a);
        tbuf_free(&b);
        tbuf_free(&scratch);
        blockset_free(&bs);
    }
}

static void test_block_raw_stored(void **state)
{
    (void)state;
    /* one sample of random bits: zstd cannot shrink it, so it is stored raw */
    tsdb_sample_t s = {123456789, f64_from_bits(UINT64_C(0x9d3a5f17c2e8b461))};
    block_series_t one = {7, &s, 1};
    blockset_t bs = {&one, NULL, 1};
    tbuf_t b = {0}, scratch = {0};
    assert_int_equal(block_encode(&one, 1, 3, &b, &scratch), 0);
    assert_int_equal(b.p[5], 0); /* flags: not compressed */
    block_check(&bs, b.p, b.len);
    tbuf_free(&b);
    tbuf_free(&scratch);
}

static void test_block_invalid_args(void **state)
{
    (void)state;
    tsdb_sample_t s[2] = {{1, 1.0}, {2, 2.0}};
    block_series_t ser[2] = {{5, s, 2}, {5, s, 2}};
    tbuf_t b = {0}, scratch = {0};
    assert_int_equal(block_encode(ser, 2, 3, &b, &scratch), TSDB_EINVAL); /* duplicate sid */
    ser[1].sid = 4;
    assert_int_equal(block_encode(ser, 2, 3, &b, &scratch), TSDB_EINVAL); /* descending */
    ser[1].sid = 6;
    ser[1].n = 0;
    assert_int_equal(block_encode(ser, 2, 3, &b, &scratch), TSDB_EINVAL);
    ser[1].n = 2;
    ser[1].samples = NULL;
    assert_int_equal(block_encode(ser, 2, 3, &b, &scratch), TSDB_EINVAL);
    ser[1].samples = s;
    assert_int_equal(block_encode(ser, 0, 3, &b, &scratch), TSDB_EINVAL);
    assert_int_equal(block_encode(ser, 2, 1000, &b, &scratch), TSDB_EINVAL);
    assert_int_equal(block_encode(ser, 2, 3, &b, &b), TSDB_EINVAL);
    s[1].t = 1;
    assert_int_equal(block_encode(ser, 2, 3, &b, &scratch), TSDB_EINVAL); /* not increasing */
    s[1].t = 2;
    assert_int_equal(block_encode(ser, 2, 3, &b, &scratch), 0);
    assert_int_equal(block_open(NULL, b.p, b.len), TSDB_EINVAL);
    assert_int_equal(block_find(NULL, 5), -1);
    tbuf_free(&b);
    tbuf_free(&scratch);
}

static void test_block_truncations_and_flips(void **state)
{
    (void)state;
    blockset_t bs;
    blockset_make(&bs, 20, 60, 5);
    tbuf_t b = {0}, scratch = {0};
    assert_int_equal(block_encode(bs.series, bs.ns, 3, &b, &scratch), 0);
    block_reader_t br = {0};
    for (size_t l = 0; l < b.len; l++) {
        uint8_t *cp = malloc(l ? l : 1);
        assert_non_null(cp);
        memcpy(cp, b.p, l);
        assert_int_equal(block_open(&br, cp, l), TSDB_ECORRUPT);
        assert_int_equal(br.nseries, 0);
        free(cp);
    }
    /* every single-bit flip */
    uint8_t *cp = malloc(b.len + 1);
    assert_non_null(cp);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(cp, b.p, b.len);
            cp[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(block_open(&br, cp, b.len), TSDB_ECORRUPT);
        }
    }
    /* random multi-byte damage, and a trailing byte */
    trng_t r = test_rng(6);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(cp, b.p, b.len);
        int flips = 1 + (int)trng_below(&r, 8);
        for (int f = 0; f < flips; f++) cp[trng_below(&r, b.len)] ^= (uint8_t)(1 + trng_below(&r, 255));
        assert_int_equal(block_open(&br, cp, b.len), TSDB_ECORRUPT);
    }
    memcpy(cp, b.p, b.len);
    cp[b.len] = 0;
    assert_int_equal(block_open(&br, cp, b.len + 1), TSDB_ECORRUPT);
    /* the reader still works after all those failures */
    assert_int_equal(block_open(&br, b.p, b.len), 0);
    assert_int_equal(br.nseries, bs.ns);
    free(cp);
    block_reader_free(&br);
    tbuf_free(&b);
    tbuf_free(&scratch);
    blockset_free(&bs);
}

/* Build a block around an arbitrary raw payload with a VALID checksum, to
 * reach the checks behind it. */
static void craft_block(tbuf_t *b, const uint8_t *raw, size_t raw_len, uint32_t ns,
                        uint32_t dir_len, int compress, uint32_t raw_len_field)
{
    b->len = 0;
    assert_int_equal(tbuf_reserve(b, 32 + ZSTD_compressBound(raw_len) + raw_len), 0);
    uint8_t *h = b->p;
    size_t plen = raw_len;
    if (compress) {
        plen = ZSTD_compress(h + 32, ZSTD_compressBound(raw_len), raw, raw_len, 3);
        assert_false(ZSTD_isError(plen));
    } else if (raw_len) {
        memcpy(h + 32, raw, raw_len);
    }
    memcpy(h, "AUGB", 4);
    h[4] = 1;
    h[5] = compress ? 1 : 0;
    h[6] = h[7] = 0;
    le32_put(h + 8, ns);
    le32_put(h + 12, raw_len_field);
    le32_put(h + 16, dir_len);
    le32_put(h + 20, (uint32_t)plen);
    le64_put(h + 24, XXH64(h + 32, plen, XXH64(h, 24, 0)));
    b->len = 32 + plen;
}

static void test_block_crafted(void **state)
{
    (void)state;
    block_reader_t br = {0};
    tbuf_t b = {0}, chunk = {0};
    tsdb_sample_t s[3] = {{10, 1.0}, {20, 2.0}, {30, 3.5}};
    assert_int_equal(chunk_encode(s, 3, &chunk), 0);
    size_t cl = chunk.len;
    uint8_t raw[256];
    memcpy(raw, chunk.p, cl);

    /* the valid reference: one series sid 9 */
    raw[cl] = 9;
    raw[cl + 1] = (uint8_t)cl;
    for (int z = 0; z < 2; z++) {
        craft_block(&b, raw, cl + 2, 1, 2, z, (uint32_t)cl + 2);
        assert_int_equal(block_open(&br, b.p, b.len), 0);
        assert_int_equal(br.sids[0], 9);
        assert_int_equal(br.counts[0], 3);
    }
    /* chunk length 0, too long, short of the end */
    raw[cl + 1] = 0;
    craft_block(&b, raw, cl + 2, 1, 2, 1, (uint32_t)cl + 2);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    raw[cl + 1] = (uint8_t)(cl + 1);
    craft_block(&b, raw, cl + 2, 1, 2, 1, (uint32_t)cl + 2);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    raw[cl + 1] = (uint8_t)(cl - 1);
    craft_block(&b, raw, cl + 2, 1, 2, 1, (uint32_t)cl + 2);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    raw[cl + 1] = (uint8_t)cl;
    /* directory with bytes left over; nseries too large; nseries 0 */
    raw[cl + 2] = 0;
    craft_block(&b, raw, cl + 3, 1, 3, 1, (uint32_t)cl + 3);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    craft_block(&b, raw, cl + 2, 2, 2, 1, (uint32_t)cl + 2);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    craft_block(&b, raw, cl + 2, 0, 2, 1, (uint32_t)cl + 2);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    /* dir_len past raw_len; raw_len disagreeing with the frame; > 1 GiB */
    craft_block(&b, raw, cl + 2, 1, (uint32_t)cl + 3, 1, (uint32_t)cl + 2);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    craft_block(&b, raw, cl + 2, 1, 2, 1, (uint32_t)cl + 3);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    craft_block(&b, raw, cl + 2, 1, 2, 0, (uint32_t)cl + 3);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    craft_block(&b, raw, cl + 2, 1, 2, 1, (UINT32_C(1) << 30) + 1);
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    /* two series: sids must ascend; sid overflowing u32 */
    memcpy(raw + cl, chunk.p, cl);
    uint8_t *d = raw + 2 * cl;
    d[0] = 0xff, d[1] = 0xff, d[2] = 0xff, d[3] = 0xff, d[4] = 0x0f; /* sid UINT32_MAX */
    d[5] = 0;                                                        /* next = UINT32_MAX + 1 */
    d[6] = (uint8_t)cl, d[7] = (uint8_t)cl;
    craft_block(&b, raw, 2 * cl + 8, 2, 8, 1, (uint32_t)(2 * cl + 8));
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    d[0] = 0xfe; /* sid UINT32_MAX - 1, then UINT32_MAX: fine */
    craft_block(&b, raw, 2 * cl + 8, 2, 8, 1, (uint32_t)(2 * cl + 8));
    assert_int_equal(block_open(&br, b.p, b.len), 0);
    assert_int_equal(br.sids[1], UINT32_MAX);
    assert_int_equal(block_find(&br, UINT32_MAX), 1);
    /* a damaged chunk header behind a good checksum */
    raw[0] = 0xff;
    craft_block(&b, raw, 2 * cl + 8, 2, 8, 1, (uint32_t)(2 * cl + 8));
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    /* a bad magic or version, even with the checksum redone */
    raw[0] = chunk.p[0];
    craft_block(&b, raw, 2 * cl + 8, 2, 8, 1, (uint32_t)(2 * cl + 8));
    b.p[4] = 2;
    le64_put(b.p + 24, XXH64(b.p + 32, b.len - 32, XXH64(b.p, 24, 0)));
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    /* garbage instead of a zstd frame */
    craft_block(&b, raw, 2 * cl + 8, 2, 8, 0, (uint32_t)(2 * cl + 8));
    b.p[5] = 1;
    le64_put(b.p + 24, XXH64(b.p + 32, b.len - 32, XXH64(b.p, 24, 0)));
    assert_int_equal(block_open(&br, b.p, b.len), TSDB_ECORRUPT);
    block_reader_free(&br);
    tbuf_free(&b);
    tbuf_free(&chunk);
}

/* Every file of the fuzz target's corpus (fuzz/corpus/fuzz_block: real
 * blocks and chunks, plus any input the fuzzer once found misbehaving) goes
 * through the decoders: 0 or TSDB_ECORRUPT, never a crash; the block-*.bin
 * seeds are valid blocks. Needs AUGUR_SRC (ctest sets it); skipped without. */
static void test_fuzz_corpus_replay(void **state)
{
    (void)state;
    const char *src = getenv("AUGUR_SRC");
    if (!src) {
        print_message("AUGUR_SRC not set: corpus replay skipped\n");
        skip();
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/fuzz_block", src);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int nfiles = 0, nblocks = 0;
    tsdb_sample_t *out = calloc(65536, sizeof *out);
    assert_non_null(out);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(1 << 20);
        assert_non_null(buf);
        size_t len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        uint8_t *p = malloc(len ? len : 1); /* exact size, for ASan */
        assert_non_null(p);
        memcpy(p, buf, len);
        free(buf);
        block_reader_t br = {0};
        int rc = block_open(&br, p, len);
        assert_true(rc == 0 || rc == TSDB_ECORRUPT);
        if (!strncmp(e->d_name, "block-", 6)) {
            assert_int_equal(rc, 0);
            nblocks++;
        }
        for (uint32_t i = 0; rc == 0 && i < br.nseries; i++) {
            size_t n;
            int r2 = block_decode_series(&br, i, out, 65536, &n);
            assert_true(r2 == 0 || r2 == TSDB_ECORRUPT);
        }
        block_reader_free(&br);
        size_t n;
        rc = chunk_decode(p, len, out, 65536, &n);
        assert_true(rc == 0 || rc == TSDB_ECORRUPT);
        if (!strncmp(e->d_name, "chunk-", 6)) assert_int_equal(rc, 0);
        free(p);
        nfiles++;
    }
    closedir(d);
    free(out);
    assert_true(nfiles >= 5 && nblocks >= 1);
}

int main(void)
{
    const char *env = getenv("AUGUR_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 0) : UINT64_C(20260101);
    printf("test_codec: seed %" PRIu64 " (AUGUR_TEST_SEED to replay)\n", g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_worked_example),
        cmocka_unit_test(test_chunk_special_values),
        cmocka_unit_test(test_chunk_decimal_with_exceptions),
        cmocka_unit_test(test_chunk_decimal_precision),
        cmocka_unit_test(test_chunk_counters),
        cmocka_unit_test(test_chunk_random),
        cmocka_unit_test(test_chunk_timestamps),
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_chunk_truncations),
        cmocka_unit_test(test_chunk_corruptions),
        cmocka_unit_test(test_chunk_crafted),
        cmocka_unit_test(test_block_roundtrip),
        cmocka_unit_test(test_block_raw_stored),
        cmocka_unit_test(test_block_invalid_args),
        cmocka_unit_test(test_block_truncations_and_flips),
        cmocka_unit_test(test_block_crafted),
        cmocka_unit_test(test_fuzz_corpus_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
