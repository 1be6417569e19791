/*
 * test_headpack.c — the packed in-memory head (tsdb/headpack.h): every
 * strictly increasing int64 time sequence and every value bit pattern
 * (NaN payloads, -0.0, infinities, denormals) decodes exactly; lookups find
 * every stored time and no other; the sizes are what the format promises
 * for steady data (1 byte a sample for a constant at a fixed interval).
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "testutil.h"
#include "tsdb/headpack.h"

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double bits_to_f64(uint64_t b)
{
    double v;
    memcpy(&v, &b, 8);
    return v;
}

/* Pack ts/vs (n), decode, compare bit for bit, look every time up. */
static void roundtrip(const int64_t *ts, const double *vs, uint32_t n)
{
    uint8_t *p = malloc(HEADPACK_HDR + (size_t)HEADPACK_MAX_ENTRY * n + 1);
    assert_non_null(p);
    headpack_init(p);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t before = headpack_len(p);
        headpack_put(p, i == 0, ts[i], vs[i]);
        assert_true(headpack_len(p) - before <= HEADPACK_MAX_ENTRY);
        assert_true(headpack_last_t(p) == ts[i]);
    }
    if (n) assert_true(headpack_first_t(p) == ts[0]);
    tsdb_sample_t *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    assert_non_null(out);
    assert_int_equal(headpack_decode(p, n, out), 0);
    for (uint32_t i = 0; i < n; i++) {
        if (out[i].t != ts[i] || memcmp(&out[i].v, &vs[i], 8))
            fail_msg("sample %u of %u: t %" PRId64 " want %" PRId64, i, n, out[i].t, ts[i]);
        uint64_t bits = 0, want;
        memcpy(&want, &vs[i], 8);
        assert_int_equal(headpack_find(p, n, ts[i], &bits), (long)i);
        assert_true(bits == want);
        /* a time between two stored ones is not found */
        if (i + 1 < n && (uint64_t)ts[i + 1] - (uint64_t)ts[i] > 1) assert_int_equal(headpack_find(p, n, ts[i] + 1, &bits), -1);
    }
    uint64_t b;
    if (n && ts[0] > INT64_MIN) assert_int_equal(headpack_find(p, n, ts[0] - 1, &b), -1);
    if (n && ts[n - 1] < INT64_MAX) assert_int_equal(headpack_find(p, n, ts[n - 1] + 1, &b), -1);
    /* a truncated buffer is refused, not overrun */
    if (n) {
        uint32_t len = headpack_len(p);
        headpack_hdr_t h;
        memcpy(&h, p, sizeof h);
        h.len = len - 1;
        memcpy(p, &h, sizeof h);
        assert_int_equal(headpack_decode(p, n, out), -1);
    }
    free(out);
    free(p);
}

static void test_steady_sizes(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t ts[N];
    double vs[N];
    for (int i = 0; i < N; i++) {
        ts[i] = INT64_C(1767225600000) + (int64_t)i * 86400000;
        vs[i] = 42.0;
    }
    uint8_t *p = malloc(HEADPACK_HDR + HEADPACK_MAX_ENTRY * N);
    assert_non_null(p);
    headpack_init(p);
    for (int i = 0; i < N; i++) headpack_put(p, i == 0, ts[i], vs[i]);
    /* first entry: control + t + the 2 non-zero bytes of 42.0; then the
     * first interval (86,400,000: four bytes) and 1 byte each */
    assert_int_equal(headpack_len(p), HEADPACK_HDR + 11 + 5 + (N - 2));
    free(p);
    roundtrip(ts, vs, N);
    /* a counter that grows by small integers at a 15 s scrape with jitter */
    for (int i = 0; i < N; i++) {
        ts[i] = INT64_C(1767225600000) + (int64_t)i * 15000 + (int64_t)(rnd() % 7);
        vs[i] = (double)(1000000 + i * 3);
    }
    roundtrip(ts, vs, N);
}

static void test_random_sequences(void **state)
{
    (void)state;
    rng = tu_seed("headpack_random", 0x9e3779b97f4a7c15u) | 1;
    enum { N = 300 };
    int64_t ts[N];
    double vs[N];
    for (int round = 0; round < 2000; round++) {
        uint32_t n = (uint32_t)(rnd() % N);
        /* start anywhere, including the extremes */
        int kind = (int)(rnd() % 4);
        int64_t t = kind == 0 ? INT64_MIN : kind == 1 ? -(int64_t)(rnd() >> 2) : (int64_t)(rnd() >> 20);
        for (uint32_t i = 0; i < n; i++) {
            ts[i] = t;
            /* steps: repeated, small changes, big, huge (wrapping interval arithmetic) */
            uint64_t room = (uint64_t)INT64_MAX - (uint64_t)t; /* t + step must not overflow */
            uint64_t step;
            switch (rnd() % 5) {
            case 0: step = 1000; break;
            case 1: step = 1 + rnd() % 300; break;
            case 2: step = 1 + rnd() % (UINT64_C(1) << 33); break;
            case 3: step = 1 + (rnd() >> 3); break;
            default: step = 15000 + rnd() % 3; break;
            }
            if (room < (uint64_t)(n - i)) { /* cannot go on: end the sequence here */
                n = i + 1;
                break;
            }
            uint64_t maxstep = room / (uint64_t)(n - i);
            if (step > maxstep) step = maxstep ? maxstep : 1;
            t = (int64_t)((uint64_t)t + step);
        }
        for (uint32_t i = 0; i < n; i++) {
            switch (rnd() % 6) {
            case 0: vs[i] = i ? vs[i - 1] : 0.0; break;
            case 1: vs[i] = (double)(int64_t)(rnd() % 100000); break;
            case 2: vs[i] = bits_to_f64(rnd()); break; /* any pattern, NaNs included */
            case 3: vs[i] = (rnd() & 1) ? -0.0 : INFINITY; break;
            case 4: vs[i] = bits_to_f64(rnd() & 0x000fffffffffffffu); break; /* denormal */
            default: vs[i] = (double)(rnd() % 1000) / 100.0; break;
            }
        }
        roundtrip(ts, vs, n);
    }
}

/* headpack_split: the parts decode to the samples before and from the cut,
 * in order, the later part at the front of the head's own buffer; one side
 * empty, or a buffer too small for the re-encoded part, refuses to split and
 * changes nothing. */
static void test_split(void **state)
{
    (void)state;
    rng = tu_seed("headpack_split", 77) | 1;
    enum { N = 200 };
    int64_t ts[N];
    double vs[N];
    int refused_small = 0;
    for (int round = 0; round < 1000; round++) {
        uint32_t n = 1 + (uint32_t)(rnd() % N);
        int64_t t = (int64_t)(rnd() >> 24);
        for (uint32_t i = 0; i < n; i++) {
            ts[i] = t;
            t += 1 + (int64_t)(rnd() % 100000);
            vs[i] = (rnd() % 3) ? (double)(rnd() % 50) : bits_to_f64(rnd());
        }
        uint8_t *p = malloc(HEADPACK_HDR + HEADPACK_MAX_ENTRY * N);
        assert_non_null(p);
        headpack_init(p);
        for (uint32_t i = 0; i < n; i++) headpack_put(p, i == 0, ts[i], vs[i]);
        uint32_t len = headpack_len(p);
        /* sometimes a buffer exactly as long as its entries: the part kept
         * may not fit once its first entries store time and value whole */
        uint32_t cap = (rnd() % 4) ? HEADPACK_HDR + HEADPACK_MAX_ENTRY * N : len;
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, p, len);
        uint32_t k = (uint32_t)(rnd() % (n + 1)); /* cut before sample k */
        int64_t cut = k < n ? ts[k] : ts[n - 1] + 1;
        uint8_t *lo;
        uint32_t nlo;
        int rc = headpack_split(p, n, cap, cut, &lo, &nlo);
        if (rc) {
            assert_int_equal(rc, -1);
            assert_null(lo);
            assert_memory_equal(p, copy, len); /* untouched */
            if (k != 0 && k != n) {
                assert_true(cap == len);
                refused_small++;
            }
        } else {
            assert_true(k != 0 && k != n);
            assert_int_equal(nlo, k);
            assert_true(headpack_len(p) + HEADPACK_MAX_ENTRY <= cap);
            tsdb_sample_t out[N];
            assert_int_equal(headpack_decode(lo, k, out), 0);
            assert_int_equal(headpack_decode(p, n - k, out + k), 0);
            for (uint32_t i = 0; i < n; i++)
                assert_true(out[i].t == ts[i] && !memcmp(&out[i].v, &vs[i], 8));
            assert_true(headpack_last_t(lo) == ts[k - 1] && headpack_first_t(p) == ts[k]);
            assert_true(headpack_last_t(p) == ts[n - 1]);
            /* the part kept in the head takes further entries as a head would */
            if (cap > len) {
                headpack_put(p, 0, ts[n - 1] + 5, 2.5);
                tsdb_sample_t o2[N + 1];
                assert_int_equal(headpack_decode(p, n - k + 1, o2), 0);
                assert_true(o2[n - k].t == ts[n - 1] + 5 && o2[n - k].v == 2.5);
            }
            free(lo);
        }
        free(copy);
        free(p);
    }
    assert_true(refused_small > 0); /* the size check was exercised */
}

/* The shortcut for a cut before the last entry (headpack_split_last, the
 * usual case at a partition boundary) against a part packed from scratch:
 * the same bytes and the same header state (time, interval, value bits of
 * its last entry), so it decodes and finds the same; the part kept takes
 * further entries. Intervals and values of every kind, including jumps that
 * store the time whole (no shortcut: the slow way must give the same). */
static void test_split_last(void **state)
{
    (void)state;
    rng = tu_seed("headpack_split_last", 91) | 1;
    enum { N = 64 };
    int64_t ts[N + 1];
    double vs[N + 1];
    for (int round = 0; round < 3000; round++) {
        uint32_t n = 2 + (uint32_t)(rnd() % (N - 1));
        int64_t t = (int64_t)(rnd() >> 2) - (INT64_C(1) << 61);
        int64_t dt = 1 + (int64_t)(rnd() % 1000);
        for (uint32_t i = 0; i < n; i++) {
            ts[i] = t;
            switch (rnd() % 5) {
            case 0: break;                                   /* steady */
            case 1: dt += (int64_t)(rnd() % 200) - 100; break; /* int8 change */
            case 2: dt += (int64_t)(rnd() % 2000000); break; /* int32 change */
            case 3: dt += (int64_t)(rnd() % (UINT64_C(1) << 40)); break; /* stored whole */
            default: dt = 1 + (int64_t)(rnd() % 1000); break;
            }
            if (dt < 1) dt = 1;
            t += dt;
            uint64_t r = rnd() % 4;
            vs[i] = r == 0 ? 42.0 : r == 1 ? (double)(rnd() % 50) : r == 2 ? vs[i ? i - 1 : 0] : bits_to_f64(rnd());
        }
        uint32_t cap = HEADPACK_HDR + HEADPACK_MAX_ENTRY * N;
        uint8_t *p = malloc(cap);
        uint8_t *ref = malloc(cap);
        assert_non_null(p);
        assert_non_null(ref);
        headpack_init(p);
        headpack_init(ref);
        for (uint32_t i = 0; i < n; i++) headpack_put(p, i == 0, ts[i], vs[i]);
        for (uint32_t i = 0; i + 1 < n; i++) headpack_put(ref, i == 0, ts[i], vs[i]);
        /* cut anywhere in (ts[n-2], ts[n-1]] */
        int64_t gap = ts[n - 1] - ts[n - 2];
        int64_t cut = ts[n - 2] + 1 + (int64_t)(rnd() % (uint64_t)gap);
        uint8_t *lo;
        uint32_t nlo;
        assert_int_equal(headpack_split(p, n, cap, cut, &lo, &nlo), 0);
        assert_int_equal(nlo, n - 1);
        headpack_hdr_t a, b;
        memcpy(&a, lo, sizeof a);
        memcpy(&b, ref, sizeof b);
        assert_int_equal(a.len, b.len);
        assert_true(a.last_t == b.last_t && a.last_dt == b.last_dt && a.last_v == b.last_v);
        assert_memory_equal(lo + HEADPACK_HDR, ref + HEADPACK_HDR, a.len - HEADPACK_HDR);
        tsdb_sample_t out[N + 1];
        memset(out, 0, sizeof out);
        assert_int_equal(headpack_decode(p, 1, out), 0);
        assert_true(out[0].t == ts[n - 1] && !memcmp(&out[0].v, &vs[n - 1], 8));
        /* the head is now its last entry packed from scratch */
        uint8_t one[HEADPACK_HDR + HEADPACK_MAX_ENTRY];
        headpack_init(one);
        headpack_put(one, 1, ts[n - 1], vs[n - 1]);
        assert_int_equal(headpack_len(p), headpack_len(one));
        assert_memory_equal(p, one, headpack_len(one));
        /* the part kept takes another entry as a head would */
        headpack_put(p, 0, ts[n - 1] + 7, 1.5);
        assert_int_equal(headpack_decode(p, 2, out), 0);
        assert_true(out[1].t == ts[n - 1] + 7 && out[1].v == 1.5);
        uint64_t bits;
        assert_int_equal(headpack_find(lo, n - 1, ts[n - 2], &bits), (long)(n - 2));
        free(p);
        free(lo);
        free(ref);
    }
}

static void test_extremes(void **state)
{
    (void)state;
    int64_t ts[4] = {INT64_MIN, -1, 0, INT64_MAX};
    double vs[4] = {NAN, -0.0, DBL_MAX, -INFINITY};
    roundtrip(ts, vs, 4);
    int64_t t2[2] = {INT64_MIN, INT64_MAX};
    roundtrip(t2, vs, 2);
    roundtrip(ts, vs, 1);
    roundtrip(ts, vs, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_sizes),
        cmocka_unit_test(test_random_sequences),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_last),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
