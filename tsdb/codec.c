/*
 * codec.c — chunk and block encoding of sealed data (contract: codec.h).
 *
 * Everything here is deterministic (no clock, no RNG, no floating-point
 * state other than the default rounding mode), and every decoder takes
 * (ptr, len), keeps an end pointer and rejects malformed input with
 * TSDB_ECORRUPT. No decoder loop runs more than n times, and n is checked
 * against the caller's capacity before anything is written.
 *
 * Notation: "vu" = LEB128 varint (unsigned), "vz" = zigzag then LEB128,
 * "u64le" = 8 bytes little endian. Arithmetic on timestamps and mantissas is
 * done modulo 2^64, so every int64 input (INT64_MIN .. INT64_MAX) encodes.
 *
 * ======================================================================
 * CHUNK: the samples of one series, t strictly increasing, 1 <= n < 2^32
 * ======================================================================
 *
 *  field      type  meaning
 *  ---------  ----  ---------------------------------------------------------
 *  head       u8    bits 0-1 tmode, bits 2-4 vmode, bits 5-7 zero
 *  n          vu    number of samples
 *  t0         vz    first timestamp (ms)
 *  -- tmode 0 (n == 1): nothing more
 *  -- tmode 1 (n >= 2, constant interval): delta vu (> 0); t_i = t0 + i*delta
 *  -- tmode 2 (n >= 3, delta-of-delta):
 *     span    vu    t_{n-1} - t0, so that chunk_info() needs no decoding
 *     d1      vu    t_1 - t_0
 *     dod     vz    (n-2) x  (t_i - t_{i-1}) - (t_{i-1} - t_{i-2}), i = 2..n-1
 *  values     -     by vmode, below; they end the chunk exactly
 *
 *  vmode 0  CONST    u64le   the bits of every value
 *  vmode 1  DECIMAL  v_i = (double)m_i / 10^k, bit-exact (checked when encoding)
 *     dh      u8    bits 0-4 k (0..22), bits 5-6 order (0..2), bit 7 exceptions
 *     g       vu    common divisor of the residuals (>= 1)
 *     anchors vz    min(order, n) values: m_0 (order >= 1), m_1 - m_0 (order 2)
 *     resid   vz    (n - order) x r_i / g, where r_i is, for order
 *                     0: m_i    1: m_i - m_{i-1}    2: (m_i - m_{i-1}) - (m_{i-1} - m_{i-2})
 *     -- if bit 7 of dh: values not representable as m / 10^k (NaN, +-Inf, -0.0,
 *        too many digits); their m_i repeats m_{i-1} (0 for i = 0):
 *     nexc    vu    1..n
 *     exc     -     nexc x (gap vu, bits u64le); pos_j = pos_{j-1} + 1 + gap_j, pos_-1 = -1
 *  vmode 2  GORILLA  (written only on request) bit stream, most significant bit first, zero padded to a byte:
 *                    64 bits of v_0; then for x = bits(v_i) ^ bits(v_{i-1}):
 *                      '0'                         x == 0
 *                      '10' + w bits               x fits the previous window (lz, w)
 *                      '11' + lz:5 + (w-1):6 + w bits   new window; lz <= 31, w 1..64
 *  vmode 3  XORB     byte-aligned XOR: u64le v_0; (n-1) control bytes; then payloads.
 *                    x == 0: control 0x80, no payload; else control = lzb << 4 | tzb
 *                    (leading/trailing zero BYTES of x, lzb + tzb <= 7) and the
 *                    8 - lzb - tzb middle bytes of x, least significant first.
 *
 *  Worked example: t = 1000, 16000, 31000 (every 15 s), v = 1.5, 1.75, 2.0
 *    05            head: tmode 1, vmode 1 (DECIMAL)
 *    03            n = 3
 *    d0 0f         t0 = 1000 (zigzag 2000)
 *    98 75         delta = 15000
 *    02            dh: k = 2, order 0, no exceptions (m = 150, 175, 200)
 *    19            g = 25
 *    0c 0e 10      m / g = 6, 7, 8 (zigzag 12, 14, 16)
 *  = 11 bytes. (Order 1 would be 5 value bytes: m_0 = 150 takes 2.)
 *
 *  The encoder picks CONST when every bit pattern is equal, else the smaller
 *  of DECIMAL (with its cheapest order) and XORB, DECIMAL on a tie. GORILLA
 *  is decoded, and written only on request (chunk_encode_mode): byte-aligned
 *  streams shrink by 20-40 % under the block's zstd and match between
 *  series, bit-packed ones hardly at all, so on node_exporter data GORILLA
 *  made blocks bigger even where its chunk was half the size
 *  (bench/bench_codec.c measures this).
 *
 * ======================================================================
 * BLOCK: chunks of many series (ascending sids), zstd'd together
 * ======================================================================
 *
 *  header, 32 bytes, little endian
 *   off  size  field
 *   0    4     magic "AUGB"
 *   4    1     version (1)
 *   5    1     flags: bit 0 = payload is one zstd frame (else stored raw)
 *   6    2     reserved, zero
 *   8    4     nseries (>= 1)
 *   12   4     raw_len: decompressed payload bytes (<= 1 GiB)
 *   16   4     dir_len: directory bytes at the end of raw
 *   20   4     payload_len: bytes after the header (= block length - 32)
 *   24   8     checksum: XXH64(payload, seed = XXH64(header[0..24), seed 0))
 *  payload   zstd frame (or raw) of:
 *   chunks    the nseries chunks, concatenated in sid order
 *   directory (dir_len bytes):
 *     sid_0 vu, then (nseries-1) x (sid_i - sid_{i-1} - 1) vu
 *     nseries x chunk length vu (>= 1; they sum to raw_len - dir_len)
 *
 *  Counts and time ranges are not repeated in the directory: block_open()
 *  reads them from each chunk's header (chunk_info, O(1) per chunk).
 *  block_open() checks, in order: length and header fields, checksum (before
 *  decompressing), size caps, exact decompressed size, directory, then every
 *  chunk header. Any mismatch is TSDB_ECORRUPT.
 */
#include <math.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "tsdb/codec.h"

/* ---- small helpers ----------------------------------------------------- */

#define CHUNK_MAX_N UINT32_MAX
#define DEC_MAX_K 22 /* 10^22 is the largest power of ten exact in a double */

static const double p10[DEC_MAX_K + 1] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                          1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                          1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline size_t vlen(uint64_t v)
{
    size_t l = 1;
    while (v >= 0x80) {
        v >>= 7;
        l++;
    }
    return l;
}

static inline int64_t u2i(uint64_t u)
{
    int64_t i;
    memcpy(&i, &u, 8);
    return i;
}

static inline uint64_t uabs(uint64_t r)
{
    return (r >> 63) ? (uint64_t)0 - r : r;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static inline int clz64(uint64_t x)
{
    return x ? __builtin_clzll(x) : 64;
}

static inline int ctz64(uint64_t x)
{
    return x ? __builtin_ctzll(x) : 64;
}

/* ---- decimal representation -------------------------------------------- */

static inline int dec_back(double v, int k, int64_t m)
{
    return f64_bits((double)m / p10[k]) == f64_bits(v);
}

/* Does v equal (double)m / 10^k bit for bit for some int64 m? v * 10^k is
 * rounded, and when it lands near a half (above 2^52 doubles are spaced
 * 0.5 and more), the other neighbour is tried too. */
static inline int dec_fit(double v, int k, int64_t *m)
{
    double x = v * p10[k];
    if (!(x > -9.2e18 && x < 9.2e18)) return 0; /* also NaN */
    int64_t mi = (int64_t)(x + (x >= 0 ? 0.5 : -0.5));
    if (!dec_back(v, k, mi)) {
        double fr = x - (double)mi;
        if (fr <= -0.25)
            mi--;
        else if (fr >= 0.25)
            mi++;
        else
            return 0;
        if (!dec_back(v, k, mi)) return 0;
    }
    *m = mi;
    return 1;
}

typedef struct {
    int k;          /* scale: v = m / 10^k */
    int order;      /* 0, 1 or 2 */
    uint64_t g;     /* common divisor of the residuals of that order */
    size_t nexc;    /* values stored raw */
    size_t excsize; /* bytes of the exception list, without nexc */
    size_t size;    /* bytes of the whole value section */
} dec_plan_t;

/* Mantissa of v at scale k; an exception repeats prev. */
static inline uint64_t dec_mant(double v, int k, uint64_t prev, int *exc)
{
    int64_t m;
    if (dec_fit(v, k, &m)) {
        *exc = 0;
        return (uint64_t)m;
    }
    *exc = 1;
    return prev;
}

/* Residual of order o at index i (i >= o) given m_i, d_i = m_i - m_{i-1}
 * and d_{i-1}. */
static inline uint64_t dec_resid(int o, uint64_t m, uint64_t d, uint64_t dprev)
{
    return o == 0 ? m : o == 1 ? d : d - dprev;
}

static inline uint64_t dec_div(uint64_t r, uint64_t g)
{
    return (uint64_t)(u2i(r) / (int64_t)g);
}

/* Plan the DECIMAL encoding of s[0..n). maxexc caps the exceptions.
 * Returns 0, or -1 when DECIMAL does not apply. */
static int dec_plan(const tsdb_sample_t *s, size_t n, size_t maxexc, dec_plan_t *pl)
{
    /* 1. the smallest common scale (values that fit no scale are exceptions) */
    int k = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t m;
        if (dec_fit(s[i].v, k, &m)) continue;
        int kk = k + 1;
        while (kk <= DEC_MAX_K && !dec_fit(s[i].v, kk, &m)) kk++;
        if (kk <= DEC_MAX_K)
            k = kk;
        else if (++bad > maxexc)
            return -1;
    }
    /* 2. exceptions at that scale, and the gcd of each residual stream */
    uint64_t g[3] = {0, 0, 0}, mprev = 0, dprev = 0;
    size_t nexc = 0, excsize = 0, lastpos = 0;
    for (size_t i = 0; i < n; i++) {
        int e;
        uint64_t m = dec_mant(s[i].v, k, mprev, &e);
        if (e) {
            excsize += vlen(nexc ? i - lastpos - 1 : i) + 8;
            lastpos = i;
            if (++nexc > maxexc) return -1;
        }
        uint64_t d = m - mprev;
        for (int o = 0; o < 3; o++)
            if (i >= (size_t)o && g[o] != 1) g[o] = gcd_u64(g[o], uabs(dec_resid(o, m, d, dprev)));
        dprev = d;
        mprev = m;
    }
    for (int o = 0; o < 3; o++)
        if (g[o] == 0 || g[o] > (uint64_t)INT64_MAX) g[o] = 1;
    /* 3. size of each order */
    size_t sz[3] = {0, 0, 0};
    mprev = dprev = 0;
    for (size_t i = 0; i < n; i++) {
        int e;
        uint64_t m = dec_mant(s[i].v, k, mprev, &e);
        uint64_t d = m - mprev;
        for (int o = 0; o < 3; o++) {
            if (i < (size_t)o)
                sz[o] += vlen(zigzag_enc(u2i(i == 0 ? m : d))); /* anchors */
            else
                sz[o] += vlen(zigzag_enc(u2i(dec_div(dec_resid(o, m, d, dprev), g[o]))));
        }
        dprev = d;
        mprev = m;
    }
    static const int pref[3] = {1, 2, 0};
    int best = pref[0];
    for (int j = 1; j < 3; j++)
        if (sz[pref[j]] + vlen(g[pref[j]]) < sz[best] + vlen(g[best])) best = pref[j];
    pl->k = k;
    pl->order = best;
    pl->g = g[best];
    pl->nexc = nexc;
    pl->excsize = excsize;
    pl->size = 1 + vlen(g[best]) + sz[best] + (nexc ? vlen(nexc) + excsize : 0);
    return 0;
}

static uint8_t *dec_write(const tsdb_sample_t *s, size_t n, const dec_plan_t *pl, uint8_t *w)
{
    int k = pl->k, o = pl->order;
    *w++ = (uint8_t)(k | (o << 5) | (pl->nexc ? 0x80 : 0));
    w += varint_put_raw(w, pl->g);
    uint64_t mprev = 0, dprev = 0;
    for (size_t i = 0; i < n; i++) {
        int e;
        uint64_t m = dec_mant(s[i].v, k, mprev, &e);
        uint64_t d = m - mprev;
        if (i < (size_t)o)
            w += varint_put_raw(w, zigzag_enc(u2i(i == 0 ? m : d)));
        else
            w += varint_put_raw(w, zigzag_enc(u2i(dec_div(dec_resid(o, m, d, dprev), pl->g))));
        dprev = d;
        mprev = m;
    }
    if (pl->nexc) {
        w += varint_put_raw(w, pl->nexc);
        size_t last = 0, cnt = 0;
        int64_t m;
        for (size_t i = 0; i < n; i++) {
            if (dec_fit(s[i].v, k, &m)) continue;
            w += varint_put_raw(w, cnt ? i - last - 1 : i);
            le64_put(w, f64_bits(s[i].v));
            w += 8;
            last = i;
            cnt++;
        }
    }
    return w;
}

/* ---- Gorilla XOR (bit packed) ------------------------------------------ */

typedef struct {
    uint8_t *p;    /* NULL: count only */
    uint64_t acc;  /* pending bits, right aligned */
    int nacc;      /* number of pending bits (< 8 between calls) */
    uint64_t bits; /* total bits written */
} bitw_t;

static inline void bw_put32(bitw_t *w, uint64_t v, int nb)
{
    w->bits += (uint64_t)nb;
    if (!w->p) return;
    w->acc = (w->acc << nb) | (v & ((UINT64_C(1) << nb) - 1));
    w->nacc += nb;
    while (w->nacc >= 8) {
        w->nacc -= 8;
        *w->p++ = (uint8_t)(w->acc >> w->nacc);
    }
}

static inline void bw_put(bitw_t *w, uint64_t v, int nb)
{
    if (nb > 32) {
        bw_put32(w, v >> 32, nb - 32);
        nb = 32;
    }
    bw_put32(w, v, nb);
}

static void bw_flush(bitw_t *w)
{
    if (w->p && w->nacc) *w->p++ = (uint8_t)(w->acc << (8 - w->nacc));
    w->nacc = 0;
}

/* Encode (or with w->p == NULL, count) the Gorilla stream. */
static void gorilla_run(const tsdb_sample_t *s, size_t n, bitw_t *w)
{
    uint64_t prev = f64_bits(s[0].v);
    bw_put(w, prev, 64);
    int wl = -1, ww = 0; /* window: leading zeros, width; wl < 0: none */
    for (size_t i = 1; i < n; i++) {
        uint64_t cur = f64_bits(s[i].v), x = cur ^ prev;
        prev = cur;
        if (!x) {
            bw_put(w, 0, 1);
            continue;
        }
        int lz = clz64(x), tz = ctz64(x);
        if (lz > 31) lz = 31;
        if (wl >= 0 && lz >= wl && tz >= 64 - wl - ww) {
            bw_put(w, 2, 2);
            bw_put(w, x >> (64 - wl - ww), ww);
        } else {
            wl = lz;
            ww = 64 - lz - tz;
            bw_put(w, 3, 2);
            bw_put(w, (uint64_t)lz, 5);
            bw_put(w, (uint64_t)(ww - 1), 6);
            bw_put(w, x >> tz, ww);
        }
    }
}

typedef struct {
    const uint8_t *p;
    uint64_t pos, end; /* bit positions */
} bitr_t;

static inline int br_get(bitr_t *r, int nb, uint64_t *out)
{
    if ((uint64_t)nb > r->end - r->pos) return -1;
    uint64_t v = 0;
    while (nb > 0) {
        int off = (int)(r->pos & 7), avail = 8 - off, take = nb < avail ? nb : avail;
        unsigned b = r->p[r->pos >> 3];
        v = (v << take) | ((b >> (avail - take)) & ((1u << take) - 1));
        r->pos += (uint64_t)take;
        nb -= take;
    }
    *out = v;
    return 0;
}

static int gorilla_decode(const uint8_t *p, const uint8_t *end, tsdb_sample_t *out, size_t n)
{
    bitr_t r = {p, 0, (uint64_t)(end - p) * 8};
    uint64_t prev, b;
    if (br_get(&r, 64, &prev)) return TSDB_ECORRUPT;
    out[0].v = f64_from_bits(prev);
    int wl = -1, ww = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t x = 0;
        if (br_get(&r, 1, &b)) return TSDB_ECORRUPT;
        if (b) {
            if (br_get(&r, 1, &b)) return TSDB_ECORRUPT;
            if (b) {
                uint64_t lz, wm1;
                if (br_get(&r, 5, &lz) || br_get(&r, 6, &wm1)) return TSDB_ECORRUPT;
                if (lz + wm1 + 1 > 64) return TSDB_ECORRUPT;
                wl = (int)lz;
                ww = (int)wm1 + 1;
            } else if (wl < 0) {
                return TSDB_ECORRUPT;
            }
            if (br_get(&r, ww, &x)) return TSDB_ECORRUPT;
            x <<= 64 - wl - ww;
        }
        prev ^= x;
        out[i].v = f64_from_bits(prev);
    }
    /* the stream must end in this byte, padded with zeros */
    if (r.end - r.pos >= 8) return TSDB_ECORRUPT;
    uint64_t pad;
    if (br_get(&r, (int)(r.end - r.pos), &pad) || pad) return TSDB_ECORRUPT;
    return 0;
}

/* ---- byte-aligned XOR -------------------------------------------------- */

static size_t xorb_size(const tsdb_sample_t *s, size_t n)
{
    size_t sz = 8 + (n - 1);
    uint64_t prev = f64_bits(s[0].v);
    for (size_t i = 1; i < n; i++) {
        uint64_t cur = f64_bits(s[i].v), x = cur ^ prev;
        prev = cur;
        if (x) sz += (size_t)(8 - clz64(x) / 8 - ctz64(x) / 8);
    }
    return sz;
}

static uint8_t *xorb_write(const tsdb_sample_t *s, size_t n, uint8_t *w)
{
    uint64_t prev = f64_bits(s[0].v);
    le64_put(w, prev);
    uint8_t *ctl = w + 8, *pay = ctl + (n - 1);
    for (size_t i = 1; i < n; i++) {
        uint64_t cur = f64_bits(s[i].v), x = cur ^ prev;
        prev = cur;
        if (!x) {
            *ctl++ = 0x80;
            continue;
        }
        int lzb = clz64(x) / 8, tzb = ctz64(x) / 8;
        *ctl++ = (uint8_t)(lzb << 4 | tzb);
        x >>= 8 * tzb;
        for (int j = 0; j < 8 - lzb - tzb; j++, x >>= 8) *pay++ = (uint8_t)x;
    }
    return pay;
}

static int xorb_decode(const uint8_t *p, const uint8_t *end, tsdb_sample_t *out, size_t n)
{
    if ((size_t)(end - p) < 8 || (size_t)(end - p) - 8 < n - 1) return TSDB_ECORRUPT;
    uint64_t prev = le64_get(p);
    out[0].v = f64_from_bits(prev);
    const uint8_t *ctl = p + 8, *pay = ctl + (n - 1);
    for (size_t i = 1; i < n; i++) {
        unsigned c = *ctl++;
        if (c != 0x80) {
            unsigned lzb = c >> 4, tzb = c & 15;
            if (lzb + tzb > 7) return TSDB_ECORRUPT;
            size_t w = 8 - lzb - tzb;
            if ((size_t)(end - pay) < w) return TSDB_ECORRUPT;
            uint64_t x = 0;
            for (size_t j = w; j-- > 0;) x = (x << 8) | pay[j];
            pay += w;
            prev ^= x << (8 * tzb);
        }
        out[i].v = f64_from_bits(prev);
    }
    return pay == end ? 0 : TSDB_ECORRUPT;
}

/* ---- chunk encode -------------------------------------------------------- */

size_t chunk_bound(size_t n)
{
    /* head 1 + n 5 + t0 10 + span 10 + d1 10 + dods 10/sample, values at most
     * XORB's 9/sample (the encoder never picks anything bigger). */
    if (n > (SIZE_MAX - 64) / 19) return SIZE_MAX;
    return 64 + 19 * n;
}

int chunk_value_mode(const uint8_t *p, size_t len)
{
    if (!p || len < 1 || (p[0] >> 5) || ((p[0] >> 2) & 7) > CHUNK_V_XORB) return TSDB_ECORRUPT;
    return (p[0] >> 2) & 7;
}

const char *chunk_value_mode_name(int vmode)
{
    static const char *names[] = {"const", "decimal", "gorilla", "xorb"};
    return vmode >= 0 && vmode <= CHUNK_V_XORB ? names[vmode] : "?";
}

int chunk_encode_mode(const tsdb_sample_t *s, size_t n, int vmode, tbuf_t *out)
{
    if (!s || !out || n == 0 || n > CHUNK_MAX_N || vmode < CHUNK_V_AUTO || vmode > CHUNK_V_XORB)
        return TSDB_EINVAL;

    /* timestamps: strictly increasing; constant interval or delta-of-delta */
    unsigned tmode = n == 1 ? 0 : 1;
    uint64_t d1 = n > 1 ? (uint64_t)s[1].t - (uint64_t)s[0].t : 0;
    size_t tsz = 1 + vlen(n) + vlen(zigzag_enc(s[0].t));
    {
        uint64_t dprev = d1;
        size_t dodsz = 0;
        for (size_t i = 1; i < n; i++) {
            if (s[i].t <= s[i - 1].t) return TSDB_EINVAL;
            uint64_t d = (uint64_t)s[i].t - (uint64_t)s[i - 1].t;
            if (i >= 2) dodsz += vlen(zigzag_enc(u2i(d - dprev)));
            if (d != d1) tmode = 2;
            dprev = d;
        }
        if (tmode == 1) tsz += vlen(d1);
        if (tmode == 2)
            tsz += vlen((uint64_t)s[n - 1].t - (uint64_t)s[0].t) + vlen(d1) + dodsz;
    }

    /* values: measure every applicable mode, keep the smallest */
    int isconst = 1;
    uint64_t b0 = f64_bits(s[0].v);
    for (size_t i = 1; i < n && isconst; i++) isconst = f64_bits(s[i].v) == b0;
    dec_plan_t pl;
    size_t best_sz = SIZE_MAX;
    int best = -1;
    if (isconst && (vmode == CHUNK_V_AUTO || vmode == CHUNK_V_CONST)) {
        best = CHUNK_V_CONST;
        best_sz = 8;
    }
    if (best < 0 && (vmode == CHUNK_V_AUTO || vmode == CHUNK_V_DECIMAL)) {
        if (!dec_plan(s, n, vmode == CHUNK_V_AUTO ? n / 4 : n, &pl)) {
            best = CHUNK_V_DECIMAL;
            best_sz = pl.size;
        }
    }
    if (best != CHUNK_V_CONST && (vmode == CHUNK_V_AUTO || vmode == CHUNK_V_XORB)) {
        size_t sz = xorb_size(s, n);
        if (sz < best_sz) {
            best = CHUNK_V_XORB;
            best_sz = sz;
        }
    }
    /* GORILLA only when forced: bit-packed streams barely shrink under the
     * block's zstd while byte-aligned ones lose 20-40 %, so on node_exporter
     * data every automatic pick of GORILLA, even at half the size of
     * DECIMAL, made the block bigger (bench/bench_codec.c measures this). */
    if (vmode == CHUNK_V_GORILLA) {
        bitw_t bw = {0};
        gorilla_run(s, n, &bw);
        best = CHUNK_V_GORILLA;
        best_sz = (size_t)((bw.bits + 7) / 8);
    }
    if (best < 0) return TSDB_EINVAL; /* forced CONST on varying values */

    if (tbuf_reserve(out, tsz + best_sz)) return TSDB_ENOMEM;
    uint8_t *w0 = out->p + out->len, *w = w0;
    *w++ = (uint8_t)(tmode | (unsigned)best << 2);
    w += varint_put_raw(w, n);
    w += varint_put_raw(w, zigzag_enc(s[0].t));
    if (tmode == 1) w += varint_put_raw(w, d1);
    if (tmode == 2) {
        w += varint_put_raw(w, (uint64_t)s[n - 1].t - (uint64_t)s[0].t);
        w += varint_put_raw(w, d1);
        uint64_t dprev = d1;
        for (size_t i = 2; i < n; i++) {
            uint64_t d = (uint64_t)s[i].t - (uint64_t)s[i - 1].t;
            w += varint_put_raw(w, zigzag_enc(u2i(d - dprev)));
            dprev = d;
        }
    }
    switch (best) {
    case CHUNK_V_CONST:
        le64_put(w, b0);
        w += 8;
        break;
    case CHUNK_V_DECIMAL:
        w = dec_write(s, n, &pl, w);
        break;
    case CHUNK_V_XORB:
        w = xorb_write(s, n, w);
        break;
    default: {
        bitw_t bw = {.p = w};
        gorilla_run(s, n, &bw);
        bw_flush(&bw);
        w = bw.p;
        break;
    }
    }
    out->len += (size_t)(w - w0);
    return 0;
}

int chunk_encode(const tsdb_sample_t *s, size_t n, tbuf_t *out)
{
    return chunk_encode_mode(s, n, CHUNK_V_AUTO, out);
}

/* ---- chunk decode -------------------------------------------------------- */

typedef struct {
    unsigned tmode, vmode;
    uint64_t n;
    int64_t t0, maxt;
    uint64_t d1;      /* tmode 1: the interval; tmode 2: t_1 - t_0 */
    const uint8_t *p; /* next byte after the parsed header */
} chunk_hdr_t;

/* Parse a chunk's header up to (tmode 2: excluding) the dod stream. */
static int chunk_hdr(const uint8_t *p, size_t len, chunk_hdr_t *h)
{
    if (!p || len < 1) return TSDB_ECORRUPT;
    const uint8_t *end = p + len;
    unsigned head = *p++;
    uint64_t zt0, span;
    h->tmode = head & 3;
    h->vmode = (head >> 2) & 7;
    if ((head >> 5) || h->tmode > 2 || h->vmode > CHUNK_V_XORB) return TSDB_ECORRUPT;
    if (varint_get(&p, end, &h->n) || varint_get(&p, end, &zt0)) return TSDB_ECORRUPT;
    if (h->n == 0 || h->n > CHUNK_MAX_N) return TSDB_ECORRUPT;
    if ((h->tmode == 0) != (h->n == 1) || (h->tmode == 2 && h->n < 3)) return TSDB_ECORRUPT;
    h->t0 = zigzag_dec(zt0);
    h->d1 = 0;
    if (h->tmode == 0) {
        span = 0;
    } else if (h->tmode == 1) {
        if (varint_get(&p, end, &h->d1) || h->d1 == 0) return TSDB_ECORRUPT;
        if (h->d1 > UINT64_MAX / (h->n - 1)) return TSDB_ECORRUPT;
        span = h->d1 * (h->n - 1);
    } else {
        if (varint_get(&p, end, &span) || varint_get(&p, end, &h->d1)) return TSDB_ECORRUPT;
        if (h->d1 == 0 || span < h->n - 1) return TSDB_ECORRUPT;
    }
    /* t0 + span must not pass INT64_MAX */
    if (span > (uint64_t)INT64_MAX - (uint64_t)h->t0) return TSDB_ECORRUPT;
    h->maxt = u2i((uint64_t)h->t0 + span);
    h->p = p;
    return 0;
}

int chunk_info(const uint8_t *p, size_t len, uint32_t *n, int64_t *mint, int64_t *maxt)
{
    chunk_hdr_t h;
    int rc = chunk_hdr(p, len, &h);
    if (rc) return rc;
    if (n) *n = (uint32_t)h.n;
    if (mint) *mint = h.t0;
    if (maxt) *maxt = h.maxt;
    return 0;
}

static int dec_decode(const uint8_t *p, const uint8_t *end, tsdb_sample_t *out, size_t n)
{
    if (p >= end) return TSDB_ECORRUPT;
    unsigned dh = *p++;
    unsigned k = dh & 31, o = (dh >> 5) & 3;
    uint64_t g, z;
    if (k > DEC_MAX_K || o > 2) return TSDB_ECORRUPT;
    if (varint_get(&p, end, &g) || g == 0) return TSDB_ECORRUPT;
    double scale = p10[k];
    uint64_t m = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        if (varint_get(&p, end, &z)) return TSDB_ECORRUPT;
        uint64_t a = (uint64_t)zigzag_dec(z);
        if (i < o) {
            d = a;
            m = i == 0 ? a : m + a;
        } else {
            uint64_t r = a * g;
            if (o == 0) {
                m = r;
            } else {
                d = o == 1 ? r : d + r;
                m += d;
            }
        }
        out[i].v = (double)u2i(m) / scale;
    }
    if (dh & 0x80) {
        uint64_t nexc, gap, pos = 0;
        if (varint_get(&p, end, &nexc) || nexc == 0 || nexc > n) return TSDB_ECORRUPT;
        for (uint64_t j = 0; j < nexc; j++) {
            if (varint_get(&p, end, &gap) || gap >= n) return TSDB_ECORRUPT;
            pos += gap + (j ? 1 : 0);
            if (pos >= n || end - p < 8) return TSDB_ECORRUPT;
            out[pos].v = f64_from_bits(le64_get(p));
            p += 8;
        }
    }
    return p == end ? 0 : TSDB_ECORRUPT;
}

int chunk_decode(const uint8_t *p, size_t len, tsdb_sample_t *out, size_t cap, size_t *n)
{
    chunk_hdr_t h;
    int rc = chunk_hdr(p, len, &h);
    if (rc) return rc;
    if (h.n > cap || !out) return TSDB_ECORRUPT;
    const uint8_t *q = h.p, *end = p + len;
    size_t cnt = (size_t)h.n;

    out[0].t = h.t0;
    if (h.tmode == 1) {
        for (size_t i = 1; i < cnt; i++) out[i].t = u2i((uint64_t)out[i - 1].t + h.d1);
    } else if (h.tmode == 2) {
        uint64_t d = h.d1, z;
        out[1].t = u2i((uint64_t)h.t0 + d);
        if (out[1].t <= h.t0) return TSDB_ECORRUPT;
        for (size_t i = 2; i < cnt; i++) {
            if (varint_get(&q, end, &z)) return TSDB_ECORRUPT;
            d += (uint64_t)zigzag_dec(z);
            out[i].t = u2i((uint64_t)out[i - 1].t + d);
            if (out[i].t <= out[i - 1].t) return TSDB_ECORRUPT;
        }
        if (out[cnt - 1].t != h.maxt) return TSDB_ECORRUPT;
    }

    switch (h.vmode) {
    case CHUNK_V_CONST: {
        if (end - q != 8) return TSDB_ECORRUPT;
        double v = f64_from_bits(le64_get(q));
        for (size_t i = 0; i < cnt; i++) out[i].v = v;
        break;
    }
    case CHUNK_V_DECIMAL:
        rc = dec_decode(q, end, out, cnt);
        break;
    case CHUNK_V_GORILLA:
        rc = gorilla_decode(q, end, out, cnt);
        break;
    default:
        rc = xorb_decode(q, end, out, cnt);
        break;
    }
    if (rc) return rc;
    if (n) *n = cnt;
    return 0;
}

/* ---- blocks ---------------------------------------------------------------- */

#define BLK_HDR 32
#define BLK_VERSION 1
#define BLK_F_ZSTD 1u
#define BLK_MAX_RAW (UINT32_C(1) << 30)
static const uint8_t blk_magic[4] = {'A', 'U', 'G', 'B'};

static uint64_t blk_checksum(const uint8_t *hdr, const uint8_t *payload, size_t plen)
{
    return XXH64(payload, plen, XXH64(hdr, 24, 0));
}

int block_encode(const block_series_t *series, size_t ns, int level, tbuf_t *out, tbuf_t *scratch)
{
    if (!series || !out || !scratch || out == scratch || ns == 0 || ns > UINT32_MAX)
        return TSDB_EINVAL;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) return TSDB_EINVAL;
    for (size_t i = 0; i < ns; i++) {
        if (!series[i].samples || series[i].n == 0) return TSDB_EINVAL;
        if (i && series[i].sid <= series[i - 1].sid) return TSDB_EINVAL;
    }
    /* chunks into scratch; their lengths parked in out meanwhile */
    scratch->len = 0;
    out->len = 0;
    if (tbuf_reserve(out, ns * 4)) return TSDB_ENOMEM;
    uint32_t *lens = (uint32_t *)(void *)out->p;
    for (size_t i = 0; i < ns; i++) {
        size_t before = scratch->len;
        int rc = chunk_encode(series[i].samples, series[i].n, scratch);
        if (rc) return rc;
        if (scratch->len > BLK_MAX_RAW) return TSDB_EINVAL;
        lens[i] = (uint32_t)(scratch->len - before);
    }
    size_t dir0 = scratch->len;
    if (tbuf_reserve(scratch, ns * 20)) return TSDB_ENOMEM;
    uint8_t *w = scratch->p + scratch->len;
    w += varint_put_raw(w, series[0].sid);
    for (size_t i = 1; i < ns; i++) w += varint_put_raw(w, series[i].sid - series[i - 1].sid - 1);
    for (size_t i = 0; i < ns; i++) w += varint_put_raw(w, lens[i]);
    scratch->len = (size_t)(w - scratch->p);
    size_t raw_len = scratch->len, dir_len = raw_len - dir0;
    if (raw_len > BLK_MAX_RAW) return TSDB_EINVAL;

    size_t bound = ZSTD_compressBound(raw_len);
    out->len = 0;
    if (tbuf_reserve(out, BLK_HDR + (bound > raw_len ? bound : raw_len))) return TSDB_ENOMEM;
    uint8_t *h = out->p, *payload = out->p + BLK_HDR;
    size_t plen = ZSTD_compress(payload, bound, scratch->p, raw_len, level);
    if (ZSTD_isError(plen)) return TSDB_ENOMEM; /* zstd fails only allocating */
    unsigned flags = BLK_F_ZSTD;
    if (plen >= raw_len) {
        memcpy(payload, scratch->p, raw_len);
        plen = raw_len;
        flags = 0;
    }
    memcpy(h, blk_magic, 4);
    h[4] = BLK_VERSION;
    h[5] = (uint8_t)flags;
    h[6] = h[7] = 0;
    le32_put(h + 8, (uint32_t)ns);
    le32_put(h + 12, (uint32_t)raw_len);
    le32_put(h + 16, (uint32_t)dir_len);
    le32_put(h + 20, (uint32_t)plen);
    le64_put(h + 24, blk_checksum(h, payload, plen));
    out->len = BLK_HDR + plen;
    return 0;
}

static int block_open_(block_reader_t *br, const uint8_t *p, size_t len)
{
    if (!p || len < BLK_HDR || memcmp(p, blk_magic, 4) || p[4] != BLK_VERSION) return TSDB_ECORRUPT;
    unsigned flags = p[5];
    uint32_t ns = le32_get(p + 8), raw_len = le32_get(p + 12), dir_len = le32_get(p + 16);
    uint32_t plen = le32_get(p + 20);
    if ((flags & ~BLK_F_ZSTD) || p[6] || p[7] || plen != len - BLK_HDR) return TSDB_ECORRUPT;
    const uint8_t *payload = p + BLK_HDR;
    if (le64_get(p + 24) != blk_checksum(p, payload, plen)) return TSDB_ECORRUPT;
    /* each series takes >= 2 directory bytes and >= 3 chunk bytes */
    if (raw_len > BLK_MAX_RAW || dir_len > raw_len || ns == 0 || ns > dir_len / 2 ||
        ns > (raw_len - dir_len) / 3)
        return TSDB_ECORRUPT;

    br->raw.len = 0;
    if (tbuf_reserve(&br->raw, raw_len ? raw_len : 1)) return TSDB_ENOMEM;
    if (flags & BLK_F_ZSTD) {
        unsigned long long fcs = ZSTD_getFrameContentSize(payload, plen);
        if (fcs != raw_len) return TSDB_ECORRUPT;
        size_t r = ZSTD_decompress(br->raw.p, raw_len, payload, plen);
        if (ZSTD_isError(r)) {
            return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? TSDB_ENOMEM
                                                                        : TSDB_ECORRUPT;
        }
        if (r != raw_len) return TSDB_ECORRUPT;
    } else {
        if (plen != raw_len) return TSDB_ECORRUPT;
        memcpy(br->raw.p, payload, raw_len);
    }
    br->raw.len = raw_len;

    /* directory arrays, 8-byte ones first for alignment */
    size_t need = (size_t)ns * (8 + 8 + 4 + 4 + 4) + 4;
    br->dir.len = 0;
    if (tbuf_reserve(&br->dir, need)) return TSDB_ENOMEM;
    br->dir.len = need;
    uint8_t *a = br->dir.p;
    br->mints = (int64_t *)(void *)a;
    br->maxts = br->mints + ns;
    br->sids = (uint32_t *)(void *)(br->maxts + ns);
    br->counts = br->sids + ns;
    br->offsets = br->counts + ns;

    const uint8_t *d = br->raw.p + (raw_len - dir_len), *dend = br->raw.p + raw_len;
    uint64_t v, sid = 0, off = 0, chunks_len = raw_len - dir_len;
    for (uint32_t i = 0; i < ns; i++) {
        if (varint_get(&d, dend, &v)) return TSDB_ECORRUPT;
        sid = i ? sid + v + 1 : v;
        if (v > UINT32_MAX || sid > UINT32_MAX) return TSDB_ECORRUPT;
        br->sids[i] = (uint32_t)sid;
    }
    for (uint32_t i = 0; i < ns; i++) {
        if (varint_get(&d, dend, &v) || v == 0 || v > chunks_len - off) return TSDB_ECORRUPT;
        br->offsets[i] = (uint32_t)off;
        off += v;
    }
    if (d != dend || off != chunks_len) return TSDB_ECORRUPT;
    br->offsets[ns] = (uint32_t)off;

    uint64_t total = 0;
    for (uint32_t i = 0; i < ns; i++) {
        int rc = chunk_info(br->raw.p + br->offsets[i], br->offsets[i + 1] - br->offsets[i],
                            &br->counts[i], &br->mints[i], &br->maxts[i]);
        if (rc) return rc;
        total += br->counts[i];
    }
    br->total_samples = total;
    br->nseries = ns;
    return 0;
}

int block_open(block_reader_t *br, const uint8_t *p, size_t len)
{
    if (!br) return TSDB_EINVAL;
    br->nseries = 0;
    br->total_samples = 0;
    int rc = block_open_(br, p, len);
    if (rc) {
        br->nseries = 0;
        br->total_samples = 0;
    }
    return rc;
}

long block_find(const block_reader_t *br, uint32_t sid)
{
    if (!br) return -1;
    size_t lo = 0, hi = br->nseries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (br->sids[mid] < sid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < br->nseries && br->sids[lo] == sid ? (long)lo : -1;
}

int block_decode_series(const block_reader_t *br, uint32_t i, tsdb_sample_t *out, size_t cap,
                        size_t *n)
{
    if (!br || i >= br->nseries) return TSDB_ECORRUPT;
    return chunk_decode(br->raw.p + br->offsets[i], br->offsets[i + 1] - br->offsets[i], out, cap,
                        n);
}

void block_reader_free(block_reader_t *br)
{
    if (!br) return;
    tbuf_free(&br->raw);
    tbuf_free(&br->dir);
    memset(br, 0, sizeof *br);
}
