/*
 * promql_fmt.c — shortest round-trip decimal digits of a double, fast.
 *
 * The API answers every value as Go's strconv.FormatFloat(v, 'f', -1, 64):
 * the shortest decimal that parses back to the same double, and among the
 * shortest the one closest to v. A range query answer holds tens of thousands
 * of values, so this must cost tens of nanoseconds, not the microseconds of a
 * printf/strtod search.
 *
 * Method (after Ulf Adams' Ryu, PLDI 2018; written here from the paper's
 * description, not from its code): with v = m * 2^e, the doubles' rounding
 * interval is (m - 1/2 ulp, m + 1/2 ulp) — in units of 2^(e-2): (4m - 2 or
 * 4m - 1 at a power-of-two boundary, 4m + 2), closed when m is even (strtod
 * rounds half to even). All three bounds are scaled by 10^-e10 with a
 * 125-bit approximation of the power of five, which the paper shows is exact
 * after truncation for every double; then decimal digits are removed while
 * the scaled interval still contains a shorter number, rounding the middle
 * value correctly. Exactness in the rare cases where a bound has trailing
 * zeros is tracked explicitly (the *_tz flags).
 *
 * The 125-bit tables (5^i truncated, and 2^k / 5^q rounded up) are computed
 * once per process with a small bignum, so there is no table to trust.
 * tests/test_promql_fmt.c compares every result with a printf/strtod search
 * on millions of random doubles.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "query/promql_int.h"

#define POW5_BITS 125
#define POW5_INV_N 342 /* q up to log10Pow2(2046 - 1077) */
#define POW5_N 326     /* i up to -e2 - q for the smallest subnormal */

typedef unsigned __int128 u128;

static uint64_t pow5_tab[POW5_N][2];     /* [i] = floor(5^i / 2^(bits(5^i) - 125)), lo, hi */
static uint64_t pow5inv_tab[POW5_INV_N][2]; /* [q] = floor(2^(bits(5^q) - 1 + 125) / 5^q) + 1 */
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

static int pow5bits(int e)
{
    return (int)(((uint32_t)e * 1217359u) >> 19) + 1;
}

static int log10_pow2(int e)
{
    return (int)(((uint32_t)e * 78913u) >> 18);
}

static int log10_pow5(int e)
{
    return (int)(((uint32_t)e * 732923u) >> 20);
}

/* ---- bignum for the tables (little-endian 32-bit words) ---------------- */

#define BN_W 40 /* 1280 bits: 5^342 has 795, 2^(795 + 125) needs 921 */

typedef struct {
    uint32_t w[BN_W];
    int n; /* words in use */
} bn_t;

static void bn_mul_small(bn_t *a, uint32_t m)
{
    uint64_t carry = 0;
    for (int i = 0; i < a->n; i++) {
        uint64_t x = (uint64_t)a->w[i] * m + carry;
        a->w[i] = (uint32_t)x;
        carry = x >> 32;
    }
    if (carry) a->w[a->n++] = (uint32_t)carry;
}

static int bn_bits(const bn_t *a)
{
    if (!a->n) return 0;
    return (a->n - 1) * 32 + (32 - __builtin_clz(a->w[a->n - 1]));
}

static int bn_bit(const bn_t *a, int b)
{
    int wi = b / 32;
    return wi < a->n ? (int)((a->w[wi] >> (b % 32)) & 1) : 0;
}

/* Top 125 bits of a (a has >= 125 bits), or a << (125 - bits). */
static void bn_top125(const bn_t *a, uint64_t out[2])
{
    int nb = bn_bits(a);
    u128 r = 0;
    for (int b = nb - 1; b >= 0 && b >= nb - POW5_BITS; b--) r = (r << 1) | (u128)bn_bit(a, b);
    if (nb < POW5_BITS) r <<= (POW5_BITS - nb);
    out[0] = (uint64_t)r;
    out[1] = (uint64_t)(r >> 64);
}

static int bn_cmp(const bn_t *a, const bn_t *b)
{
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

static void bn_sub(bn_t *a, const bn_t *b) /* a >= b */
{
    int64_t borrow = 0;
    for (int i = 0; i < a->n; i++) {
        int64_t x = (int64_t)a->w[i] - (i < b->n ? (int64_t)b->w[i] : 0) - borrow;
        borrow = x < 0;
        a->w[i] = (uint32_t)(x + (borrow ? ((int64_t)1 << 32) : 0));
    }
    while (a->n && !a->w[a->n - 1]) a->n--;
}

static void bn_shl1_or(bn_t *a, int bit)
{
    uint32_t carry = (uint32_t)bit;
    for (int i = 0; i < a->n; i++) {
        uint32_t nc = a->w[i] >> 31;
        a->w[i] = (a->w[i] << 1) | carry;
        carry = nc;
    }
    if (carry) a->w[a->n++] = carry;
}

/* floor(2^e / d) + 1, for a quotient of at most 128 bits. */
static void bn_inv(const bn_t *d, int e, uint64_t out[2])
{
    bn_t r = {{0}, 0};
    u128 q = 0;
    for (int b = e; b >= 0; b--) {
        bn_shl1_or(&r, b == e);
        q <<= 1;
        if (bn_cmp(&r, d) >= 0) {
            bn_sub(&r, d);
            q |= 1;
        }
    }
    q += 1;
    out[0] = (uint64_t)q;
    out[1] = (uint64_t)(q >> 64);
}

static void tables_init(void)
{
    bn_t p = {{1}, 1};
    int nmax = POW5_N > POW5_INV_N ? POW5_N : POW5_INV_N;
    for (int i = 0; i < nmax; i++) {
        if (i < POW5_N) bn_top125(&p, pow5_tab[i]);
        if (i < POW5_INV_N) bn_inv(&p, pow5bits(i) - 1 + POW5_BITS, pow5inv_tab[i]);
        bn_mul_small(&p, 5);
    }
}

/* ---- the conversion ------------------------------------------------------ */

static uint64_t mul_shift(uint64_t m, const uint64_t mul[2], int j)
{
    u128 b0 = (u128)m * mul[0];
    u128 b2 = (u128)m * mul[1];
    return (uint64_t)(((b0 >> 64) + b2) >> (j - 64));
}

static int pow5_factor(uint64_t v)
{
    int n = 0;
    while (v && v % 5 == 0) {
        v /= 5;
        n++;
    }
    return n;
}

static int mult_pow5(uint64_t v, int p)
{
    return pow5_factor(v) >= p;
}

static int mult_pow2(uint64_t v, int p)
{
    return p >= 64 ? v == 0 : (v & ((UINT64_C(1) << p) - 1)) == 0;
}

/* v finite, > 0. Writes the shortest round-trip digits (no trailing zeros)
 * and returns their count; *exp10 such that v = 0.d1d2... * 10^exp10. */
int pq_shortest_digits(double v, char *digits, int *exp10)
{
    pthread_once(&tab_once, tables_init);
    uint64_t bits = f64_bits(v);
    uint64_t mant = bits & ((UINT64_C(1) << 52) - 1);
    int bexp = (int)((bits >> 52) & 0x7ff);
    int e2;
    uint64_t m2;
    if (bexp == 0) {
        e2 = 1 - 1023 - 52 - 2;
        m2 = mant;
    } else {
        e2 = bexp - 1023 - 52 - 2;
        m2 = (UINT64_C(1) << 52) | mant;
    }
    int even = (m2 & 1) == 0;
    uint64_t mv = 4 * m2;
    int mm_shift = mant != 0 || bexp <= 1;
    uint64_t vr, vp, vm;
    int e10;
    int vm_tz = 0, vr_tz = 0;
    if (e2 >= 0) {
        int q = log10_pow2(e2) - (e2 > 3);
        e10 = q;
        int k = POW5_BITS + pow5bits(q) - 1;
        int i = -e2 + q + k;
        vr = mul_shift(4 * m2, pow5inv_tab[q], i);
        vp = mul_shift(4 * m2 + 2, pow5inv_tab[q], i);
        vm = mul_shift(4 * m2 - 1 - (uint64_t)mm_shift, pow5inv_tab[q], i);
        if (q <= 21) {
            if (mv % 5 == 0) vr_tz = mult_pow5(mv, q);
            else if (even) vm_tz = mult_pow5(mv - 1 - (uint64_t)mm_shift, q);
            else vp -= (uint64_t)mult_pow5(mv + 2, q);
        }
    } else {
        int q = log10_pow5(-e2) - (-e2 > 1);
        e10 = q + e2;
        int i = -e2 - q;
        int k = pow5bits(i) - POW5_BITS;
        int j = q - k;
        vr = mul_shift(4 * m2, pow5_tab[i], j);
        vp = mul_shift(4 * m2 + 2, pow5_tab[i], j);
        vm = mul_shift(4 * m2 - 1 - (uint64_t)mm_shift, pow5_tab[i], j);
        if (q <= 1) {
            vr_tz = 1;
            if (even) vm_tz = mm_shift;
            else vp--;
        } else if (q < 63) {
            vr_tz = mult_pow2(mv, q);
        }
    }
    int removed = 0;
    int last = 0;
    uint64_t out;
    if (vm_tz || vr_tz) {
        for (;;) {
            uint64_t vp10 = vp / 10, vm10 = vm / 10;
            if (vp10 <= vm10) break;
            int vmmod = (int)(vm % 10);
            uint64_t vr10 = vr / 10;
            int vrmod = (int)(vr % 10);
            vm_tz &= vmmod == 0;
            vr_tz &= last == 0;
            last = vrmod;
            vr = vr10;
            vp = vp10;
            vm = vm10;
            removed++;
        }
        if (vm_tz) {
            for (;;) {
                uint64_t vm10 = vm / 10;
                int vmmod = (int)(vm % 10);
                if (vmmod != 0) break;
                uint64_t vp10 = vp / 10, vr10 = vr / 10;
                int vrmod = (int)(vr % 10);
                vr_tz &= last == 0;
                last = vrmod;
                vr = vr10;
                vp = vp10;
                vm = vm10;
                removed++;
            }
        }
        if (vr_tz && last == 5 && vr % 2 == 0) last = 4; /* exactly half: to even */
        out = vr + (uint64_t)((vr == vm && (!even || !vm_tz)) || last >= 5);
    } else {
        int round_up = 0;
        while (vp / 100 > vm / 100) { /* two digits at a time while possible */
            round_up = vr % 100 >= 50;
            vr /= 100;
            vp /= 100;
            vm /= 100;
            removed += 2;
        }
        while (vp / 10 > vm / 10) {
            round_up = vr % 10 >= 5;
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        out = vr + (uint64_t)(vr == vm || round_up);
    }
    /* out has the digits; value = out * 10^(e10 + removed) */
    char tmp[24];
    int nd = 0;
    while (out) {
        tmp[nd++] = (char)('0' + out % 10);
        out /= 10;
    }
    int exp = e10 + removed;
    int lead = 0; /* drop trailing zeros (the value keeps them in exp) */
    while (lead < nd - 1 && tmp[lead] == '0') {
        lead++;
        exp++;
    }
    int k = 0;
    for (int i = nd - 1; i >= lead; i--) digits[k++] = tmp[i];
    digits[k] = 0;
    *exp10 = exp + k;
    return k;
}
