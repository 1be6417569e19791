/* test_promql_fmt.c — the fast shortest round-trip float formatter
 * (query/promql_fmt.c) against a reference that searches the shortest
 * precision with printf("%.*e") + strtod: random bit patterns (subnormals,
 * huge, tiny), random decimal-looking values, rates, and edge cases.
 * AUGUR_TEST_SEED replays; AUGUR_FMT_N sets the random count (default 1 M). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "query/promql_int.h"
#include "testutil.h"

/* Reference: the correctly rounded p-digit value is the closest p-digit
 * decimal, so the first p whose printf result parses back is the answer.
 * Except at a power of two, where the interval below v is half the one
 * above: there the p-digit neighbour above v may parse back when the
 * closest (below) does not; Go, like Ryu, answers the shortest in the
 * interval. So also try the last digit plus one. */
static int digits_of(const char *tmp, char *digits, int *exp10)
{
    int nd = 0;
    const char *s = tmp;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    int e = atoi(s + 1);
    *exp10 = e + 1;
    return nd;
}

static int ref_digits(double v, char *digits, int *exp10)
{
    char tmp[64];
    int nd = 0;
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
        nd = digits_of(tmp, digits, exp10);
        if (strtod(tmp, NULL) == v) break;
        /* the neighbour above: digits + 1 in the last place */
        char up[32];
        memcpy(up, digits, (size_t)nd);
        int i = nd - 1, e = *exp10;
        while (i >= 0 && up[i] == '9') up[i--] = '0';
        if (i < 0) {
            memmove(up + 1, up, (size_t)nd - 1);
            up[0] = '1';
            e++;
        } else {
            up[i]++;
        }
        char s2[64];
        snprintf(s2, sizeof s2, "0.%.*se%d", nd, up, e);
        if (strtod(s2, NULL) == v) {
            memcpy(digits, up, (size_t)nd);
            *exp10 = e;
            break;
        }
    }
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    return nd;
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int check(double v)
{
    if (!(v > 0) || isinf(v)) return 0;
    char a[32], b[32];
    int ea, eb;
    int na = pq_shortest_digits(v, a, &ea);
    int nb = ref_digits(v, b, &eb);
    if (na != nb || ea != eb || strcmp(a, b)) {
        fprintf(stderr, "mismatch for %a (%.17g): fast %s e%d, ref %s e%d\n", v, v, a, ea, b, eb);
        return 1;
    }
    return 0;
}

static void test_edges(void **state)
{
    (void)state;
    static const double e[] = {5e-324, 1e-323, DBL_MIN, DBL_MAX, 1, 2, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3,
                               1e-7, 1e21, 1e22, 1e23, 123456789012345678.0, 9007199254740993.0,
                               4.35, 0.000123, 299792458, 1.7976931348623157e308, 2.2250738585072009e-308,
                               0.015, 100.5, 1e15 + 0.3, 5e-310, 9.5367431640625e-07};
    int bad = 0;
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) bad += check(e[i]);
    for (int x = -1074; x <= 1023; x++) { /* powers of two: asymmetric intervals */
        double p = ldexp(1, x);
        bad += check(p);
        bad += check(nextafter(p, 0));
        bad += check(nextafter(p, INFINITY));
    }
    for (int x = -323; x <= 308; x++) bad += check(pow(10, x)); /* powers of ten */
    for (int i = 1; i < 100000; i++) bad += check(i / 1000.0) + check(i * 0.1) + check(i / 7.0);
    assert_int_equal(bad, 0);
    char buf[400];
    pq_fmt_float(buf, 1e21);
    assert_string_equal(buf, "1000000000000000000000");
    pq_fmt_float(buf, 1.5e-7);
    assert_string_equal(buf, "0.00000015");
    pq_fmt_float(buf, -0.1);
    assert_string_equal(buf, "-0.1");
    pq_fmt_float(buf, 12345.678);
    assert_string_equal(buf, "12345.678");
    pq_fmt_float(buf, -0.0);
    assert_string_equal(buf, "-0");
    pq_fmt_float(buf, NAN);
    assert_string_equal(buf, "NaN");
    pq_fmt_float(buf, -INFINITY);
    assert_string_equal(buf, "-Inf");
    pq_fmt_time(buf, 1700000600500);
    assert_string_equal(buf, "1700000600.500");
    pq_fmt_time(buf, 1700000600000);
    assert_string_equal(buf, "1700000600");
    pq_fmt_time(buf, -1500);
    assert_string_equal(buf, "-1.500");
}

static void test_random(void **state)
{
    (void)state;
    rng_state = tu_seed("test_promql_fmt", 20260101);
    long n = tu_env_long("AUGUR_FMT_N", 1000000);
    int bad = 0;
    for (long i = 0; i < n && bad < 10; i++) {
        uint64_t r = rnd();
        double v;
        switch (i % 4) {
        case 0: memcpy(&v, &r, 8); v = fabs(v); break;               /* any bit pattern */
        case 1: v = (double)(r >> 11) / (double)(1 + (rnd() >> 40)); break; /* rates */
        case 2: v = (double)(r % 100000000000ULL) / pow(10, (double)(rnd() % 20)); break; /* decimals */
        default: v = ldexp((double)(r >> 11), (int)(rnd() % 200) - 150); break;
        }
        bad += check(v);
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
