/*
 * test_rw.c — remote-write decoder tests (ingest/rw.h).
 *
 *  - differential: random requests encoded by protobuf-c (generated from
 *    the tests/proto files), snappy-compressed, decoded, compared bit for bit
 *    with the model they were built from (1.0 and 2.0);
 *  - malformed inputs: a table of wire-level errors, truncation at every
 *    offset, byte mutations, snappy corruption and size limits;
 *  - per-series validation, request limits, reject formatting;
 *  - steady state: no allocation after warm-up;
 *  - real bodies from the shared benchmark generator (tests/data/rw).
 *
 * Seed: AUGUR_TEST_SEED=<n> (decimal or 0x...) replays a run; the seed in use
 * is printed first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/rw.h"
#include "tsdb/tsdb_util.h"

#include "proto/rw1.pb-c.h"
#include "proto/rw2.pb-c.h"

#ifndef AUGUR_SRC_DIR
#define AUGUR_SRC_DIR "."
#endif

static uint64_t g_seed = UINT64_C(0x5eed2a0c);

/* ---- small helpers ---------------------------------------------------------- */

/* Every allocation a test case makes for protobuf-c messages, freed at once. */
static void **g_ta;
static size_t g_ta_n, g_ta_cap;

static void *ta(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    if (g_ta_n == g_ta_cap) {
        g_ta_cap = g_ta_cap ? 2 * g_ta_cap : 256;
        g_ta = realloc(g_ta, g_ta_cap * sizeof *g_ta);
        assert_non_null(g_ta);
    }
    g_ta[g_ta_n++] = p;
    return p;
}

static void ta_free_all(void)
{
    for (size_t i = 0; i < g_ta_n; i++)
        free(g_ta[i]);
    free(g_ta);
    g_ta = NULL;
    g_ta_n = g_ta_cap = 0;
}

/* Snappy-compress into a malloc'd buffer. */
static uint8_t *snappy_wrap(const void *p, size_t n, size_t *outlen)
{
    size_t cap = snappy_max_compressed_length(n);
    uint8_t *o = malloc(cap);
    assert_non_null(o);
    *outlen = cap;
    assert_int_equal(snappy_compress(p, n, (char *)o, outlen), SNAPPY_OK);
    return o;
}

/* Hand encoder, for inputs protobuf-c will not produce. */
static void e_varint(tbuf_t *b, uint64_t v)
{
    assert_int_equal(tbuf_varint(b, v), 0);
}

static void e_raw(tbuf_t *b, const void *p, size_t n)
{
    assert_int_equal(tbuf_put(b, p, n), 0);
}

static void e_tag(tbuf_t *b, uint32_t field, unsigned wt)
{
    e_varint(b, (uint64_t)field << 3 | wt);
}

static void e_len(tbuf_t *b, uint32_t field, const void *p, size_t n)
{
    e_tag(b, field, 2);
    e_varint(b, n);
    e_raw(b, p, n);
}

static void e_sub(tbuf_t *b, uint32_t field, tbuf_t *sub)
{
    e_len(b, field, sub->p, sub->len);
    tbuf_free(sub);
}

typedef struct {
    const char *p;
    size_t n;
} bstr_t;
#define BS(s) ((bstr_t){(s), sizeof(s) - 1})

static void e_label1(tbuf_t *ts, bstr_t name, bstr_t value)
{
    tbuf_t l = {0};
    e_len(&l, 1, name.p, name.n);
    e_len(&l, 2, value.p, value.n);
    e_sub(ts, 1, &l);
}

static void e_sample(tbuf_t *ts, double v, int64_t t)
{
    tbuf_t s = {0};
    uint8_t b8[8];
    e_tag(&s, 1, 1);
    le64_put(b8, f64_bits(v));
    e_raw(&s, b8, 8);
    e_tag(&s, 2, 0);
    e_varint(&s, (uint64_t)t);
    e_sub(ts, 2, &s);
}

/* One 1.0 request with one series: labels as name/value pairs, one sample. */
static void e_req1(tbuf_t *req, const bstr_t *kv, size_t npairs)
{
    tbuf_t ts = {0};
    for (size_t i = 0; i < npairs; i++)
        e_label1(&ts, kv[2 * i], kv[2 * i + 1]);
    e_sample(&ts, 1.5, 1000);
    e_sub(req, 1, &ts);
}

static rw_decoder_t *dec_new(const rw_options_t *o)
{
    rw_decoder_t *d = NULL;
    assert_int_equal(rw_decoder_create(o, &d), 0);
    assert_non_null(d);
    return d;
}

/* ---- reference checks (written independently of rw.c) --------------------------- */

static int ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F, k = 1;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F, k = 2;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07, k = 3;
        } else {
            return 0;
        }
        if (n - i < k + 1) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

static int ref_name_ok(const uint8_t *s, size_t n, int metric)
{
    if (!n) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (i > 0 && c >= '0' && c <= '9') || (metric && c == ':');
        if (!ok) return 0;
    }
    return 1;
}

static int ref_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    for (size_t i = 0; i < an && i < bn; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return an == bn ? 0 : an < bn ? -1 : 1;
}

/* Whatever the input, an accepted request's output must satisfy this. */
static void check_invariants(const rw_request_t *q)
{
    uint64_t ns = 0;
    assert_true(q->nseries + q->nrejects <= q->nseries_wire);
    for (size_t i = 0; i < q->nseries; i++) {
        const tsdb_series_in_t *s = &q->series[i];
        int have_name = 0;
        assert_true(s->nlabels >= 1);
        assert_true(s->nsamples >= 1);
        ns += s->nsamples;
        if (i) assert_true(q->series_index[i] > q->series_index[i - 1]);
        for (uint32_t j = 0; j < s->nlabels; j++) {
            const tsdb_label_t *l = &s->labels[j];
            assert_true(ref_name_ok((const uint8_t *)l->name.ptr, l->name.len, 0));
            assert_true(l->value.len >= 1);
            assert_true(ref_utf8((const uint8_t *)l->value.ptr, l->value.len));
            if (j)
                assert_true(ref_cmp((const uint8_t *)s->labels[j - 1].name.ptr,
                                    s->labels[j - 1].name.len, (const uint8_t *)l->name.ptr,
                                    l->name.len) < 0);
            if (l->name.len == 8 && !memcmp(l->name.ptr, "__name__", 8)) {
                have_name = 1;
                assert_true(ref_name_ok((const uint8_t *)l->value.ptr, l->value.len, 1));
            }
        }
        assert_true(have_name);
    }
    assert_int_equal(ns, q->nsamples);
    for (size_t i = 0; i < q->nrejects; i++) {
        assert_true(q->rejects[i].reason != RW_REASON_NONE);
        assert_true(q->rejects[i].index < q->nseries_wire);
    }
}

/* ---- the random model ------------------------------------------------------------- */

#define M_SERIES 40
#define M_LABELS 24 /* above the test limit of 16 labels per series */
#define M_SAMPLES 6
#define T_MAX_LABELS 16
#define T_MAX_NAME 40
#define T_MAX_VALUE 100

typedef struct {
    const uint8_t *p;
    uint32_t n;
} m_str_t;

typedef struct {
    m_str_t name[M_LABELS], value[M_LABELS];
    uint32_t nlab;
    tsdb_sample_t smp[M_SAMPLES];
    uint8_t omit_v[M_SAMPLES], omit_t[M_SAMPLES];
    uint32_t nsmp, nhist, nexem;
    int meta;
    rw_reason_t want;
} m_series_t;

typedef struct {
    m_series_t s[M_SERIES];
    uint32_t n;
    uint32_t nmeta; /* 1.0 request-level metadata entries */
    uint8_t *pool;
    size_t used, cap;
} m_req_t;

static m_str_t m_put(m_req_t *m, const void *p, size_t n)
{
    assert_true(m->used + n <= m->cap);
    uint8_t *d = m->pool + m->used;
    if (n) memcpy(d, p, n);
    m->used += n;
    return (m_str_t){d, (uint32_t)n};
}

static size_t put_cp(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static m_str_t gen_value(trng_t *r, m_req_t *m, size_t maxcp)
{
    uint8_t buf[4 * 64];
    size_t n = 0, k = trng_below(r, maxcp + 1);
    for (size_t i = 0; i < k; i++) {
        uint32_t cp, kind = (uint32_t)trng_below(r, 10);
        if (kind < 6)
            cp = 0x20 + (uint32_t)trng_below(r, 0x5f);
        else if (kind == 6)
            cp = (uint32_t)trng_below(r, 0x20); /* controls, NUL included: valid UTF-8 */
        else if (kind == 7)
            cp = 0x80 + (uint32_t)trng_below(r, 0x800 - 0x80);
        else if (kind == 8)
            do
                cp = 0x800 + (uint32_t)trng_below(r, 0x10000 - 0x800);
            while (cp >= 0xD800 && cp <= 0xDFFF);
        else
            cp = 0x10000 + (uint32_t)trng_below(r, 0x110000 - 0x10000);
        n += put_cp(buf + n, cp);
    }
    return m_put(m, buf, n);
}

static const char alpha_[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";
static const char alnum_[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";

/* A valid, unique label name: ends in "_<index char>" so it never equals
 * __name__ nor the names the defects add (those end in "__"). */
static m_str_t gen_label_name(trng_t *r, m_req_t *m, uint32_t idx)
{
    char b[32];
    size_t n = 0, k = trng_below(r, 8);
    b[n++] = alpha_[trng_below(r, sizeof alpha_ - 1)];
    for (size_t i = 0; i < k; i++)
        b[n++] = alnum_[trng_below(r, sizeof alnum_ - 1)];
    b[n++] = '_';
    b[n++] = alnum_[idx % 62];
    if (idx >= 62) b[n++] = alnum_[idx / 62];
    return m_put(m, b, n);
}

static m_str_t gen_metric_name(trng_t *r, m_req_t *m)
{
    static const char first[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:";
    static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789";
    char b[32];
    size_t n = 0, k = trng_below(r, 20);
    b[n++] = first[trng_below(r, sizeof first - 1)];
    for (size_t i = 0; i < k; i++)
        b[n++] = rest[trng_below(r, sizeof rest - 1)];
    return m_put(m, b, n);
}

static double gen_double(trng_t *r)
{
    switch (trng_below(r, 10)) {
    case 0:
        return f64_from_bits(trng_next(r)); /* any bits, NaN payloads included */
    case 1:
        return f64_from_bits(TSDB_STALE_NAN_BITS);
    case 2:
        return INFINITY;
    case 3:
        return -INFINITY;
    case 4:
        return -0.0;
    case 5:
        return 0.0;
    case 6:
        return (double)(int64_t)trng_below(r, 1000);
    case 7:
        return f64_from_bits(UINT64_C(0x7ff8000000000001));
    default:
        return trng_unit(r) * 1e6;
    }
}

static int64_t gen_ts(trng_t *r)
{
    switch (trng_below(r, 8)) {
    case 0:
        return 0;
    case 1:
        return INT64_MIN;
    case 2:
        return INT64_MAX;
    case 3:
        return -(int64_t)trng_below(r, UINT64_C(1) << 40);
    case 4:
        return (int64_t)trng_next(r);
    default:
        return INT64_C(1767225600000) + (int64_t)trng_below(r, 86400000);
    }
}

static void m_add(m_series_t *s, m_str_t name, m_str_t value)
{
    assert_true(s->nlab < M_LABELS);
    s->name[s->nlab] = name;
    s->value[s->nlab] = value;
    s->nlab++;
}

static void gen_series(trng_t *r, m_req_t *m, m_series_t *s)
{
    static const char *const bad_names[] = {"1abc", "a-b", "a:b", "\xc3\xa9t\xc3\xa9",
                                            "a.b",  "a b", "9",   "\x80"};
    static const char *const bad_metric[] = {"1abc", "a-b", "a.b", "", "0:", "\xc3\xa9"};
    static const struct {
        const char *p;
        size_t n;
    } bad_utf8[] = {
        {"\xc0\x80", 2},     {"\xed\xa0\x80", 3}, {"\xf4\x90\x80\x80", 4},
        {"ab\xe2\x82", 4},   {"\x80", 1},         {"\xf5\x80\x80\x80", 4},
        {"\xe0\x80\xaf", 3}, {"x\xff", 2},        {"\xf0\x8f\xbf\xbf", 4},
        {"\xc2", 1},
    };
    memset(s, 0, sizeof *s);
    rw_reason_t want = RW_REASON_NONE;
    if (trng_below(r, 4) == 0) want = (rw_reason_t)(1 + trng_below(r, 9));
    s->want = want;

    /* __name__ */
    if (want == RW_REASON_NO_NAME) {
        if (trng_below(r, 2)) m_add(s, m_put(m, "__name__", 8), m_put(m, "", 0));
    } else if (want == RW_REASON_BAD_METRIC_NAME) {
        const char *b = bad_metric[trng_below(r, sizeof bad_metric / sizeof *bad_metric)];
        /* An empty metric name would be dropped as an empty value: make it
         * a NO_NAME case then. */
        if (!*b) s->want = RW_REASON_NO_NAME;
        m_add(s, m_put(m, "__name__", 8), m_put(m, b, strlen(b)));
    } else {
        m_add(s, m_put(m, "__name__", 8), gen_metric_name(r, m));
    }
    uint32_t extra = (uint32_t)trng_below(r, 7);
    if (want == RW_REASON_TOO_MANY_LABELS)
        extra = T_MAX_LABELS + (uint32_t)trng_below(r, M_LABELS - T_MAX_LABELS - 1);
    if (want == RW_REASON_DUP_LABEL_NAME && extra == 0) extra = 1;
    for (uint32_t i = 0; i < extra; i++) {
        m_str_t v = trng_below(r, 10) == 0 ? m_put(m, "", 0) : gen_value(r, m, 12);
        if (i == 0 && want == RW_REASON_DUP_LABEL_NAME && v.n == 0) v = m_put(m, "x", 1);
        m_add(s, gen_label_name(r, m, i), v);
    }
    switch (want) {
    case RW_REASON_EMPTY_LABEL_NAME:
        m_add(s, m_put(m, "", 0), m_put(m, "v", 1));
        break;
    case RW_REASON_BAD_LABEL_NAME: {
        const char *b = bad_names[trng_below(r, sizeof bad_names / sizeof *bad_names)];
        m_add(s, m_put(m, b, strlen(b)), m_put(m, "v", 1));
        break;
    }
    case RW_REASON_DUP_LABEL_NAME:
        m_add(s, s->name[1], m_put(m, "dup", 3));
        break;
    case RW_REASON_BAD_UTF8: {
        size_t k = trng_below(r, sizeof bad_utf8 / sizeof *bad_utf8);
        m_add(s, m_put(m, "bad_utf8__", 10), m_put(m, bad_utf8[k].p, bad_utf8[k].n));
        break;
    }
    case RW_REASON_NAME_TOO_LONG: {
        char b[64];
        size_t n = T_MAX_NAME + 1 + trng_below(r, 20);
        for (size_t i = 0; i < n; i++)
            b[i] = 'n';
        b[n - 2] = b[n - 1] = '_';
        m_add(s, m_put(m, b, n), m_put(m, "v", 1));
        break;
    }
    case RW_REASON_VALUE_TOO_LONG: {
        char b[160];
        size_t n = T_MAX_VALUE + 1 + trng_below(r, 50);
        memset(b, 'v', n);
        m_add(s, m_put(m, "long__", 6), m_put(m, b, n));
        break;
    }
    default:
        break;
    }
    /* Wire order: sorted half of the time, else shuffled. */
    if (trng_below(r, 2)) {
        for (uint32_t i = s->nlab; i > 1; i--) {
            uint32_t j = (uint32_t)trng_below(r, i);
            m_str_t tn = s->name[i - 1], tv = s->value[i - 1];
            s->name[i - 1] = s->name[j], s->value[i - 1] = s->value[j];
            s->name[j] = tn, s->value[j] = tv;
        }
    } else {
        for (uint32_t i = 1; i < s->nlab; i++)
            for (uint32_t j = i; j > 0 && ref_cmp(s->name[j - 1].p, s->name[j - 1].n, s->name[j].p,
                                                  s->name[j].n) > 0;
                 j--) {
                m_str_t tn = s->name[j - 1], tv = s->value[j - 1];
                s->name[j - 1] = s->name[j], s->value[j - 1] = s->value[j];
                s->name[j] = tn, s->value[j] = tv;
            }
    }
    s->nsmp = trng_below(r, 8) == 0 ? 0 : 1 + (uint32_t)trng_below(r, M_SAMPLES);
    for (uint32_t i = 0; i < s->nsmp; i++) {
        s->smp[i].v = gen_double(r);
        s->smp[i].t = gen_ts(r);
        s->omit_v[i] = f64_bits(s->smp[i].v) == 0 && trng_below(r, 2);
        s->omit_t[i] = s->smp[i].t == 0 && trng_below(r, 2);
    }
    s->nhist = trng_below(r, 6) == 0 ? 1 + (uint32_t)trng_below(r, 2) : 0;
    s->nexem = trng_below(r, 6) == 0 ? 1 + (uint32_t)trng_below(r, 2) : 0;
    s->meta = trng_below(r, 3) == 0;
}

static void gen_req(trng_t *r, m_req_t *m)
{
    m->used = 0;
    m->n = (uint32_t)trng_below(r, M_SERIES + 1);
    m->nmeta = (uint32_t)trng_below(r, 3);
    for (uint32_t i = 0; i < m->n; i++)
        gen_series(r, m, &m->s[i]);
}

static m_req_t *m_new(void)
{
    m_req_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->cap = 1 << 20;
    m->pool = malloc(m->cap);
    assert_non_null(m->pool);
    return m;
}

static void m_free(m_req_t *m)
{
    if (!m) return;
    free(m->pool);
    free(m);
}

/* Expected labels of a valid series: empty values dropped, sorted. */
static uint32_t m_expected_labels(const m_series_t *s, m_str_t *name, m_str_t *value)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nlab; i++) {
        if (!s->value[i].n) continue;
        uint32_t j = n++;
        while (j > 0 && ref_cmp(name[j - 1].p, name[j - 1].n, s->name[i].p, s->name[i].n) > 0) {
            name[j] = name[j - 1];
            value[j] = value[j - 1];
            j--;
        }
        name[j] = s->name[i];
        value[j] = s->value[i];
    }
    return n;
}

static void m_compare(const m_req_t *m, const rw_request_t *q, int v2)
{
    size_t vo = 0, ro = 0;
    uint64_t nhist = 0, nexem = 0, nmeta = v2 ? 0 : m->nmeta, hist_only = 0, nsmp = 0, nrej = 0;
    check_invariants(q);
    assert_int_equal(q->nseries_wire, m->n);
    for (uint32_t i = 0; i < m->n; i++) {
        const m_series_t *s = &m->s[i];
        nhist += s->nhist;
        nexem += s->nexem;
        if (v2) nmeta += (uint64_t)s->meta;
        if (s->want != RW_REASON_NONE) {
            assert_true(ro < q->nrejects);
            const rw_reject_t *j = &q->rejects[ro++];
            assert_int_equal(j->index, i);
            if (j->reason != s->want)
                fail_msg("series %u: reason %s, want %s", i, rw_reason_str(j->reason),
                         rw_reason_str(s->want));
            assert_int_equal(j->nsamples, s->nsmp);
            nrej += s->nsmp;
            continue;
        }
        if (!s->nsmp) {
            hist_only += s->nhist > 0;
            continue;
        }
        assert_true(vo < q->nseries);
        assert_int_equal(q->series_index[vo], i);
        const tsdb_series_in_t *o = &q->series[vo++];
        m_str_t en[M_LABELS], ev[M_LABELS];
        uint32_t ne = m_expected_labels(s, en, ev);
        assert_int_equal(o->nlabels, ne);
        for (uint32_t k = 0; k < ne; k++) {
            assert_int_equal(o->labels[k].name.len, en[k].n);
            assert_memory_equal(o->labels[k].name.ptr, en[k].p, en[k].n);
            assert_int_equal(o->labels[k].value.len, ev[k].n);
            assert_memory_equal(o->labels[k].value.ptr, ev[k].p, ev[k].n);
        }
        assert_int_equal(o->nsamples, s->nsmp);
        for (uint32_t k = 0; k < s->nsmp; k++) {
            assert_int_equal(o->samples[k].t, s->smp[k].t);
            assert_int_equal(f64_bits(o->samples[k].v), f64_bits(s->smp[k].v));
        }
        nsmp += s->nsmp;
    }
    assert_int_equal(vo, q->nseries);
    assert_int_equal(ro, q->nrejects);
    assert_int_equal(q->nsamples, nsmp);
    assert_int_equal(q->nsamples_rejected, nrej);
    assert_int_equal(q->nhistograms, nhist);
    assert_int_equal(q->nseries_histogram_only, hist_only);
    assert_int_equal(q->nexemplars, nexem);
    assert_int_equal(q->nmetadata, nmeta);
}

static ProtobufCBinaryData pbin(m_str_t s)
{
    return (ProtobufCBinaryData){s.n, (uint8_t *)(uintptr_t)s.p};
}

/* ---- 1.0 encoding with protobuf-c --------------------------------------------------- */

static uint8_t *m_encode_v1(trng_t *r, const m_req_t *m, size_t *len)
{
    Prometheus__WriteRequest *wr = ta(sizeof *wr);
    *wr = (Prometheus__WriteRequest)PROMETHEUS__WRITE_REQUEST__INIT;
    wr->n_timeseries = m->n;
    wr->timeseries = ta(m->n * sizeof *wr->timeseries);
    for (uint32_t i = 0; i < m->n; i++) {
        const m_series_t *s = &m->s[i];
        Prometheus__TimeSeries *t = ta(sizeof *t);
        *t = (Prometheus__TimeSeries)PROMETHEUS__TIME_SERIES__INIT;
        wr->timeseries[i] = t;
        t->n_labels = s->nlab;
        t->labels = ta(s->nlab * sizeof *t->labels);
        for (uint32_t k = 0; k < s->nlab; k++) {
            Prometheus__Label *l = ta(sizeof *l);
            *l = (Prometheus__Label)PROMETHEUS__LABEL__INIT;
            /* An absent field and an empty one decode alike. */
            l->has_name = s->name[k].n > 0 || trng_below(r, 2);
            l->name = pbin(s->name[k]);
            l->has_value = s->value[k].n > 0 || trng_below(r, 2);
            l->value = pbin(s->value[k]);
            if (trng_below(r, 16) == 0) l->has_x_varint = 1, l->x_varint = trng_next(r);
            if (trng_below(r, 16) == 0) l->has_x_i32 = 1, l->x_i32 = (uint32_t)trng_next(r);
            t->labels[k] = l;
        }
        t->n_samples = s->nsmp;
        t->samples = ta(s->nsmp * sizeof *t->samples);
        for (uint32_t k = 0; k < s->nsmp; k++) {
            Prometheus__Sample *x = ta(sizeof *x);
            *x = (Prometheus__Sample)PROMETHEUS__SAMPLE__INIT;
            x->has_value = !s->omit_v[k];
            x->value = s->smp[k].v;
            x->has_timestamp = !s->omit_t[k];
            x->timestamp = s->smp[k].t;
            if (trng_below(r, 16) == 0) x->has_x_varint = 1, x->x_varint = trng_next(r);
            if (trng_below(r, 16) == 0) x->has_x_len = 1, x->x_len = pbin(s->name[0]);
            t->samples[k] = x;
        }
        t->n_histograms = s->nhist;
        t->histograms = ta(s->nhist * sizeof *t->histograms);
        for (uint32_t k = 0; k < s->nhist; k++) {
            Prometheus__Histogram *h = ta(sizeof *h);
            *h = (Prometheus__Histogram)PROMETHEUS__HISTOGRAM__INIT;
            h->has_count_int = 1, h->count_int = trng_below(r, 100);
            h->has_sum = 1, h->sum = gen_double(r);
            h->has_schema = 1, h->schema = (int32_t)trng_below(r, 8) - 4;
            h->has_timestamp = 1, h->timestamp = gen_ts(r);
            t->histograms[k] = h;
        }
        t->n_exemplars = s->nexem;
        t->exemplars = ta(s->nexem * sizeof *t->exemplars);
        for (uint32_t k = 0; k < s->nexem; k++) {
            Prometheus__Exemplar *e = ta(sizeof *e);
            *e = (Prometheus__Exemplar)PROMETHEUS__EXEMPLAR__INIT;
            Prometheus__Label *l = ta(sizeof *l);
            *l = (Prometheus__Label)PROMETHEUS__LABEL__INIT;
            l->has_name = l->has_value = 1;
            l->name = (ProtobufCBinaryData){8, (uint8_t *)"trace_id"};
            l->value = (ProtobufCBinaryData){3, (uint8_t *)"abc"};
            e->n_labels = 1;
            e->labels = ta(sizeof *e->labels);
            e->labels[0] = l;
            e->has_value = 1, e->value = gen_double(r);
            e->has_timestamp = 1, e->timestamp = gen_ts(r);
            t->exemplars[k] = e;
        }
        if (trng_below(r, 10) == 0) t->has_x_i64 = 1, t->x_i64 = trng_next(r);
        if (trng_below(r, 10) == 0) t->has_x_len = 1, t->x_len = pbin(s->name[0]);
        if (trng_below(r, 10) == 0) t->has_x_i32 = 1, t->x_i32 = 7;
        if (trng_below(r, 10) == 0) t->has_x_varint = 1, t->x_varint = UINT64_MAX;
    }
    wr->n_metadata = m->nmeta;
    wr->metadata = ta(m->nmeta * sizeof *wr->metadata);
    for (uint32_t i = 0; i < m->nmeta; i++) {
        Prometheus__MetricMetadata *md = ta(sizeof *md);
        *md = (Prometheus__MetricMetadata)PROMETHEUS__METRIC_METADATA__INIT;
        md->has_type = 1;
        md->type = (Prometheus__MetricMetadata__MetricType)trng_below(r, 8);
        md->has_metric_family_name = 1;
        md->metric_family_name = (ProtobufCBinaryData){4, (uint8_t *)"fam1"};
        md->has_help = trng_below(r, 2);
        md->help = (ProtobufCBinaryData){4, (uint8_t *)"help"};
        md->has_unit = trng_below(r, 2);
        md->unit = (ProtobufCBinaryData){1, (uint8_t *)"s"};
        wr->metadata[i] = md;
    }
    if (trng_below(r, 4) == 0) wr->has_x_varint = 1, wr->x_varint = 1;
    if (trng_below(r, 4) == 0) wr->has_x_i64 = 1, wr->x_i64 = 2;
    if (trng_below(r, 4) == 0)
        wr->has_x_len = 1, wr->x_len = (ProtobufCBinaryData){3, (uint8_t *)"\x0a\x01\x00"};
    if (trng_below(r, 4) == 0) wr->has_x_i32 = 1, wr->x_i32 = 3;
    size_t n = prometheus__write_request__get_packed_size(wr);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    assert_int_equal(prometheus__write_request__pack(wr, buf), n);
    *len = n;
    return buf;
}

/* ---- 2.0 encoding with protobuf-c --------------------------------------------------- */

typedef struct {
    ProtobufCBinaryData *v;
    size_t n, cap;
    int dedupe;
} symtab_t;

static uint32_t sym_ref(symtab_t *st, m_str_t s)
{
    if (st->dedupe)
        for (size_t i = 0; i < st->n; i++)
            if (st->v[i].len == s.n && (!s.n || !memcmp(st->v[i].data, s.p, s.n)))
                return (uint32_t)i;
    if (st->n == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 64;
        ProtobufCBinaryData *nv = ta(st->cap * sizeof *nv);
        if (st->n) memcpy(nv, st->v, st->n * sizeof *nv);
        st->v = nv;
    }
    st->v[st->n] = pbin(s);
    return (uint32_t)st->n++;
}

static uint8_t *m_encode_v2(trng_t *r, const m_req_t *m, size_t *len)
{
    symtab_t st = {NULL, 0, 0, (int)trng_below(r, 5) != 0};
    sym_ref(&st, (m_str_t){(const uint8_t *)"", 0}); /* symbols[0] = "" */
    Io__Prometheus__Write__V2__Request *rq = ta(sizeof *rq);
    *rq = (Io__Prometheus__Write__V2__Request)IO__PROMETHEUS__WRITE__V2__REQUEST__INIT;
    rq->n_timeseries = m->n;
    rq->timeseries = ta(m->n * sizeof *rq->timeseries);
    for (uint32_t i = 0; i < m->n; i++) {
        const m_series_t *s = &m->s[i];
        Io__Prometheus__Write__V2__TimeSeries *t = ta(sizeof *t);
        *t = (Io__Prometheus__Write__V2__TimeSeries)IO__PROMETHEUS__WRITE__V2__TIME_SERIES__INIT;
        rq->timeseries[i] = t;
        t->n_labels_refs = 2 * s->nlab;
        t->labels_refs = ta(2 * s->nlab * sizeof *t->labels_refs);
        for (uint32_t k = 0; k < s->nlab; k++) {
            t->labels_refs[2 * k] = sym_ref(&st, s->name[k]);
            t->labels_refs[2 * k + 1] = sym_ref(&st, s->value[k]);
        }
        t->n_samples = s->nsmp;
        t->samples = ta(s->nsmp * sizeof *t->samples);
        for (uint32_t k = 0; k < s->nsmp; k++) {
            Io__Prometheus__Write__V2__Sample *x = ta(sizeof *x);
            *x = (Io__Prometheus__Write__V2__Sample)IO__PROMETHEUS__WRITE__V2__SAMPLE__INIT;
            x->has_value = !s->omit_v[k];
            x->value = s->smp[k].v;
            x->has_timestamp = !s->omit_t[k];
            x->timestamp = s->smp[k].t;
            if (trng_below(r, 16) == 0) x->has_x_varint = 1, x->x_varint = trng_next(r);
            t->samples[k] = x;
        }
        t->n_histograms = s->nhist;
        t->histograms = ta(s->nhist * sizeof *t->histograms);
        for (uint32_t k = 0; k < s->nhist; k++) {
            Io__Prometheus__Write__V2__Histogram *h = ta(sizeof *h);
            *h = (Io__Prometheus__Write__V2__Histogram)IO__PROMETHEUS__WRITE__V2__HISTOGRAM__INIT;
            h->has_count_int = 1, h->count_int = trng_below(r, 100);
            h->has_timestamp = 1, h->timestamp = gen_ts(r);
            t->histograms[k] = h;
        }
        t->n_exemplars = s->nexem;
        t->exemplars = ta(s->nexem * sizeof *t->exemplars);
        for (uint32_t k = 0; k < s->nexem; k++) {
            Io__Prometheus__Write__V2__Exemplar *e = ta(sizeof *e);
            *e = (Io__Prometheus__Write__V2__Exemplar)IO__PROMETHEUS__WRITE__V2__EXEMPLAR__INIT;
            e->n_labels_refs = 2;
            e->labels_refs = ta(2 * sizeof *e->labels_refs);
            e->labels_refs[0] = sym_ref(&st, (m_str_t){(const uint8_t *)"trace_id", 8});
            e->labels_refs[1] = sym_ref(&st, (m_str_t){(const uint8_t *)"abc", 3});
            e->has_value = 1, e->value = gen_double(r);
            e->has_timestamp = 1, e->timestamp = gen_ts(r);
            t->exemplars[k] = e;
        }
        if (s->meta) {
            Io__Prometheus__Write__V2__Metadata *md = ta(sizeof *md);
            *md = (Io__Prometheus__Write__V2__Metadata)IO__PROMETHEUS__WRITE__V2__METADATA__INIT;
            md->has_type = 1;
            md->type = (Io__Prometheus__Write__V2__Metadata__MetricType)trng_below(r, 8);
            md->has_help_ref = 1;
            md->help_ref = sym_ref(&st, (m_str_t){(const uint8_t *)"Some help.", 10});
            md->has_unit_ref = trng_below(r, 2);
            md->unit_ref = sym_ref(&st, (m_str_t){(const uint8_t *)"seconds", 7});
            t->metadata = md;
        }
        if (trng_below(r, 3) == 0) t->has_created_timestamp = 1, t->created_timestamp = gen_ts(r);
        if (trng_below(r, 10) == 0) t->has_x_i64 = 1, t->x_i64 = trng_next(r);
        if (trng_below(r, 10) == 0) t->has_x_len = 1, t->x_len = pbin(s->name[0]);
        if (trng_below(r, 10) == 0) t->has_x_i32 = 1, t->x_i32 = 7;
        if (trng_below(r, 10) == 0) t->has_x_varint = 1, t->x_varint = UINT64_MAX;
    }
    rq->n_symbols = st.n;
    rq->symbols = st.v;
    if (trng_below(r, 4) == 0) rq->has_x_varint = 1, rq->x_varint = 1;
    if (trng_below(r, 4) == 0) rq->has_x_i64 = 1, rq->x_i64 = 2;
    if (trng_below(r, 4) == 0) rq->has_x_i32 = 1, rq->x_i32 = 3;
    size_t n = io__prometheus__write__v2__request__get_packed_size(rq);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    assert_int_equal(io__prometheus__write__v2__request__pack(rq, buf), n);
    *len = n;
    return buf;
}

static rw_options_t test_opts(void)
{
    rw_options_t o;
    rw_options_init(&o);
    o.max_labels_per_series = T_MAX_LABELS;
    o.max_label_name_len = T_MAX_NAME;
    o.max_label_value_len = T_MAX_VALUE;
    return o;
}

typedef int (*decode_fn)(rw_decoder_t *, const void *, size_t, rw_encoding_t, rw_request_t *);

static void differential(int v2, int rounds)
{
    trng_t r;
    trng_seed(&r, g_seed ^ (v2 ? 0x2222 : 0x1111));
    rw_options_t o = test_opts();
    rw_decoder_t *d = dec_new(&o);
    m_req_t *m = m_new();
    decode_fn dec = v2 ? rw_decode_v2 : rw_decode_v1;
    for (int it = 0; it < rounds; it++) {
        size_t n, zn;
        rw_request_t q;
        gen_req(&r, m);
        uint8_t *pb = v2 ? m_encode_v2(&r, m, &n) : m_encode_v1(&r, m, &n);
        uint8_t *z = snappy_wrap(pb, n, &zn);
        int rc = dec(d, z, zn, RW_ENC_SNAPPY, &q);
        if (rc) fail_msg("round %d: %s (%s)", it, rw_strerror(rc), rw_decoder_errmsg(d, NULL));
        assert_int_equal(q.body_bytes, n);
        m_compare(m, &q, v2);
        rc = dec(d, pb, n, RW_ENC_IDENTITY, &q);
        assert_int_equal(rc, 0);
        m_compare(m, &q, v2);
        free(z);
        free(pb);
        ta_free_all();
    }
    m_free(m);
    rw_decoder_destroy(d);
}

static void test_v1_differential(void **state)
{
    (void)state;
    differential(0, 400);
}

static void test_v2_differential(void **state)
{
    (void)state;
    differential(1, 400);
}

/* ---- hand-made cases ------------------------------------------------------------- */

/* The worked example in the header comment of ingest/rw.c, byte for byte. */
static void test_worked_example(void **state)
{
    (void)state;
    static const uint8_t ex[] = {0x0a, 0x28, 0x0a, 0x0e, 0x0a, 0x08, '_',  '_',  'n',  'a',  'm',
                                 'e',  '_',  '_',  0x12, 0x02, 'u',  'p',  0x0a, 0x08, 0x0a, 0x03,
                                 'j',  'o',  'b',  0x12, 0x01, 'a',  0x12, 0x0c, 0x09, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x10, 0xe8, 0x07};
    assert_int_equal(sizeof ex, 42);
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    assert_int_equal(rw_decode_v1(d, ex, sizeof ex, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.nrejects, 0);
    assert_int_equal(q.series[0].nlabels, 2);
    assert_int_equal(q.series[0].labels[0].name.len, 8);
    assert_memory_equal(q.series[0].labels[1].value.ptr, "a", 1);
    /* zero-copy: the strings point into the body */
    assert_ptr_equal(q.series[0].labels[0].value.ptr, (const char *)ex + 16);
    assert_int_equal(q.series[0].nsamples, 1);
    assert_int_equal(q.series[0].samples[0].t, 1000);
    assert_true(q.series[0].samples[0].v == 1.0);
    /* The same body, encoded by protobuf-c. */
    Prometheus__Label l0 = PROMETHEUS__LABEL__INIT, l1 = PROMETHEUS__LABEL__INIT;
    l0.has_name = l0.has_value = l1.has_name = l1.has_value = 1;
    l0.name = (ProtobufCBinaryData){8, (uint8_t *)"__name__"};
    l0.value = (ProtobufCBinaryData){2, (uint8_t *)"up"};
    l1.name = (ProtobufCBinaryData){3, (uint8_t *)"job"};
    l1.value = (ProtobufCBinaryData){1, (uint8_t *)"a"};
    Prometheus__Label *lp[2] = {&l0, &l1};
    Prometheus__Sample s = PROMETHEUS__SAMPLE__INIT;
    s.has_value = s.has_timestamp = 1;
    s.value = 1.0;
    s.timestamp = 1000;
    Prometheus__Sample *sp[1] = {&s};
    Prometheus__TimeSeries t = PROMETHEUS__TIME_SERIES__INIT;
    t.n_labels = 2, t.labels = lp, t.n_samples = 1, t.samples = sp;
    Prometheus__TimeSeries *tp[1] = {&t};
    Prometheus__WriteRequest w = PROMETHEUS__WRITE_REQUEST__INIT;
    w.n_timeseries = 1, w.timeseries = tp;
    uint8_t buf[64];
    assert_int_equal(prometheus__write_request__get_packed_size(&w), sizeof ex);
    prometheus__write_request__pack(&w, buf);
    assert_memory_equal(buf, ex, sizeof ex);
    rw_decoder_destroy(d);
}

typedef struct {
    const char *name;
    int v2;
    const char *bytes;
    size_t len;
    int rc;
} wire_case_t;

#define WC(name, v2, lit, rc)                                                                      \
    {                                                                                              \
        name, v2, lit, sizeof(lit) - 1, rc                                                         \
    }

static const wire_case_t wire_cases[] = {
    WC("empty request", 0, "", 0),
    WC("field number 0", 0, "\x02\x00", RW_EPROTO),
    WC("field number 0 in series", 0, "\x0a\x02\x00\x00", RW_EPROTO),
    WC("start group", 0, "\x0b", RW_EPROTO),
    WC("end group", 0, "\x0c", RW_EPROTO),
    WC("group inside series", 0, "\x0a\x01\x1b", RW_EPROTO),
    WC("wire type 6", 0, "\x0e", RW_EPROTO),
    WC("wire type 7", 0, "\x0f\x00", RW_EPROTO),
    WC("timeseries as VARINT", 0, "\x08\x01", RW_EPROTO),
    WC("timeseries as I64", 0, "\x09\x00\x00\x00\x00\x00\x00\x00\x00", RW_EPROTO),
    WC("metadata as I32", 0, "\x1d\x00\x00\x00\x00", RW_EPROTO),
    WC("label as VARINT", 0, "\x0a\x02\x08\x01", RW_EPROTO),
    WC("sample as I32", 0, "\x0a\x05\x15\x00\x00\x00\x00", RW_EPROTO),
    WC("sample value as VARINT", 0, "\x0a\x04\x12\x02\x08\x01", RW_EPROTO),
    WC("sample timestamp as I64", 0, "\x0a\x0b\x12\x09\x11\x00\x00\x00\x00\x00\x00\x00\x00",
       RW_EPROTO),
    WC("sample value truncated", 0, "\x0a\x05\x12\x03\x09\x00\x00", RW_EPROTO),
    WC("label name as VARINT", 0, "\x0a\x04\x0a\x02\x08\x01", RW_EPROTO),
    WC("label value as I32", 0, "\x0a\x07\x0a\x05\x15\x00\x00\x00\x00", RW_EPROTO),
    WC("exemplar as VARINT", 0, "\x0a\x02\x18\x01", RW_EPROTO),
    WC("histogram as I64", 0, "\x0a\x09\x21\x00\x00\x00\x00\x00\x00\x00\x00", RW_EPROTO),
    WC("metadata type as LEN", 0, "\x1a\x02\x0a\x00", RW_EPROTO),
    WC("metadata help as VARINT", 0, "\x1a\x02\x28\x01", RW_EPROTO),
    WC("tag varint of 11 bytes", 0, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", RW_EPROTO),
    WC("tag varint overflows 64 bits", 0, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", RW_EPROTO),
    WC("field number 2^29", 0, "\x80\x80\x80\x80\x10\x00", RW_EPROTO),
    WC("field number 2^29-1 skipped", 0, "\xf8\xff\xff\xff\x0f\x00", 0),
    WC("tag truncated", 0, "\x80", RW_EPROTO),
    WC("length varint of 11 bytes", 0, "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
       RW_EPROTO),
    WC("length truncated", 0, "\x0a", RW_EPROTO),
    WC("length past end", 0, "\x0a\x05\x00", RW_EPROTO),
    WC("length 2^32-1", 0, "\x0a\xff\xff\xff\xff\x0f", RW_EPROTO),
    WC("length 2^63", 0, "\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", RW_EPROTO),
    WC("label past its series", 0, "\x0a\x03\x0a\x05\x00", RW_EPROTO),
    WC("timestamp varint of 11 bytes", 0,
       "\x0a\x0e\x12\x0c\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", RW_EPROTO),
    WC("unknown I64 truncated", 0, "\x21\x00\x00", RW_EPROTO),
    WC("unknown I32 truncated", 0, "\x25\x00", RW_EPROTO),
    WC("unknown VARINT truncated", 0, "\x20\x80", RW_EPROTO),
    WC("unknown fields of every type", 0,
       "\x20\x05\x29\x01\x02\x03\x04\x05\x06\x07\x08\x32\x01x\x3d\x01\x02\x03\x04", 0),
    WC("empty series", 0, "\x0a\x00", 0),
    WC("empty label and sample", 0, "\x0a\x04\x0a\x00\x12\x00", 0),
    /* 2.0 */
    WC("v2 empty request", 1, "", 0),
    WC("v2 symbols[0] not empty", 1, "\x22\x01x", RW_EREF),
    WC("v2 refs without symbols", 1, "\x2a\x04\x0a\x02\x00\x00", RW_EREF),
    WC("v2 label ref out of range", 1, "\x22\x00\x22\x01x\x2a\x04\x0a\x02\x01\x02", RW_EREF),
    WC("v2 odd number of refs", 1, "\x22\x00\x22\x01x\x2a\x03\x0a\x01\x01", RW_EREF),
    WC("v2 odd refs, unpacked", 1, "\x22\x00\x22\x01x\x2a\x02\x08\x01", RW_EREF),
    WC("v2 help_ref out of range", 1, "\x22\x00\x2a\x04\x2a\x02\x18\x05", RW_EREF),
    WC("v2 unit_ref out of range", 1, "\x22\x00\x2a\x04\x2a\x02\x20\x01", RW_EREF),
    WC("v2 huge ref", 1, "\x22\x00\x2a\x08\x0a\x06\x00\xff\xff\xff\xff\x0f", RW_EREF),
    WC("v2 refs as I64", 1, "\x22\x00\x2a\x09\x09\x00\x00\x00\x00\x00\x00\x00\x00", RW_EPROTO),
    WC("v2 packed ref truncated", 1, "\x22\x00\x2a\x03\x0a\x01\x80", RW_EPROTO),
    WC("v2 symbols as VARINT", 1, "\x20\x00", RW_EPROTO),
    WC("v2 timeseries as I32", 1, "\x2d\x00\x00\x00\x00", RW_EPROTO),
    WC("v2 metadata as VARINT", 1, "\x22\x00\x2a\x02\x28\x01", RW_EPROTO),
    WC("v2 metadata type as I64", 1, "\x2a\x0b\x2a\x09\x09\x00\x00\x00\x00\x00\x00\x00\x00",
       RW_EPROTO),
    WC("v2 created_timestamp as LEN", 1, "\x2a\x02\x32\x00", RW_EPROTO),
    WC("v2 histogram as VARINT", 1, "\x2a\x02\x18\x00", RW_EPROTO),
    WC("v2 symbol past end", 1,
       "\x22\x05"
       "ab",
       RW_EPROTO),
    WC("v2 group", 1, "\x23", RW_EPROTO),
    WC("v2 unknown fields", 1, "\x08\x01\x11\x00\x00\x00\x00\x00\x00\x00\x00\x1a\x00", 0),
    WC("v2 series without labels", 1, "\x2a\x02\x12\x00", 0),
};

static void test_wire_table(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    for (size_t i = 0; i < sizeof wire_cases / sizeof *wire_cases; i++) {
        const wire_case_t *c = &wire_cases[i];
        decode_fn dec = c->v2 ? rw_decode_v2 : rw_decode_v1;
        rw_request_t q;
        for (int z = 0; z < 2; z++) {
            int rc;
            if (z) {
                size_t zn;
                uint8_t *zb = snappy_wrap(c->bytes, c->len, &zn);
                rc = dec(d, zb, zn, RW_ENC_SNAPPY, &q);
                free(zb);
            } else {
                rc = dec(d, c->bytes, c->len, RW_ENC_IDENTITY, &q);
            }
            if (rc != c->rc)
                fail_msg("case '%s': got %d (%s: %s), want %d", c->name, rc, rw_strerror(rc),
                         rw_decoder_errmsg(d, NULL), c->rc);
            if (rc) {
                assert_true(rw_decoder_errmsg(d, NULL)[0] != 0);
                assert_int_equal(q.nseries, 0);
                assert_null(q.series);
            } else {
                check_invariants(&q);
                assert_int_equal(q.nseries, 0);
                assert_int_equal(rw_decoder_errmsg(d, NULL)[0], 0);
            }
        }
    }
    rw_decoder_destroy(d);
}

static void test_error_detail(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    size_t off = 99;
    /* A valid series, then a series whose label runs past its end. */
    static const char body[] = "\x0a\x00\x0a\x03\x0a\x05\x00";
    assert_int_equal(rw_decode_v1(d, body, sizeof body - 1, RW_ENC_IDENTITY, &q), RW_EPROTO);
    const char *msg = rw_decoder_errmsg(d, &off);
    assert_int_equal(off, 5); /* the length varint of the Label */
    assert_non_null(strstr(msg, "offset 5"));
    assert_non_null(strstr(msg, "TimeSeries"));
    assert_non_null(strstr(msg, "past the end"));
    assert_int_equal(rw_decode_v1(d, "\x0a\x02\x08\x01", 4, RW_ENC_IDENTITY, &q), RW_EPROTO);
    msg = rw_decoder_errmsg(d, &off);
    assert_int_equal(off, 2);
    assert_non_null(strstr(msg, "wire type VARINT"));
    rw_decoder_destroy(d);
}

/* ---- per-series validation ------------------------------------------------------- */

typedef struct {
    const char *name;
    bstr_t kv[8];
    size_t npairs;
    rw_reason_t want;
} series_case_t;

static const series_case_t series_cases[] = {
    {"valid", {BS("__name__"), BS("up"), BS("job"), BS("a")}, 2, RW_REASON_NONE},
    {"metric with colons", {BS("__name__"), BS(":a:b_9")}, 1, RW_REASON_NONE},
    {"unsorted", {BS("z"), BS("1"), BS("__name__"), BS("m"), BS("A"), BS("2")}, 3, RW_REASON_NONE},
    {"empty value dropped", {BS("__name__"), BS("m"), BS("e"), BS("")}, 2, RW_REASON_NONE},
    {"NUL in value", {BS("__name__"), BS("m"), BS("v"), BS("a\0b")}, 2, RW_REASON_NONE},
    {"4-byte UTF-8", {BS("__name__"), BS("m"), BS("v"), BS("\xf0\x9f\x98\x80")}, 2, RW_REASON_NONE},
    {"U+10FFFF", {BS("__name__"), BS("m"), BS("v"), BS("\xf4\x8f\xbf\xbf")}, 2, RW_REASON_NONE},
    {"U+FFFF", {BS("__name__"), BS("m"), BS("v"), BS("\xef\xbf\xbf")}, 2, RW_REASON_NONE},
    {"U+E000", {BS("__name__"), BS("m"), BS("v"), BS("\xee\x80\x80")}, 2, RW_REASON_NONE},
    {"no __name__", {BS("job"), BS("a")}, 1, RW_REASON_NO_NAME},
    {"no labels", {BS("")}, 0, RW_REASON_NO_NAME},
    {"empty __name__", {BS("__name__"), BS(""), BS("job"), BS("a")}, 2, RW_REASON_NO_NAME},
    {"metric starts with digit", {BS("__name__"), BS("1m")}, 1, RW_REASON_BAD_METRIC_NAME},
    {"metric with dash", {BS("__name__"), BS("a-b")}, 1, RW_REASON_BAD_METRIC_NAME},
    {"metric with UTF-8", {BS("__name__"), BS("caf\xc3\xa9")}, 1, RW_REASON_BAD_METRIC_NAME},
    {"empty label name", {BS("__name__"), BS("m"), BS(""), BS("v")}, 2, RW_REASON_EMPTY_LABEL_NAME},
    {"empty name and value",
     {BS("__name__"), BS("m"), BS(""), BS("")},
     2,
     RW_REASON_EMPTY_LABEL_NAME},
    {"label name with colon",
     {BS("__name__"), BS("m"), BS("a:b"), BS("v")},
     2,
     RW_REASON_BAD_LABEL_NAME},
    {"label name starts with digit",
     {BS("__name__"), BS("m"), BS("0a"), BS("v")},
     2,
     RW_REASON_BAD_LABEL_NAME},
    {"label name with NUL",
     {BS("__name__"), BS("m"), BS("a\0"), BS("v")},
     2,
     RW_REASON_BAD_LABEL_NAME},
    {"duplicate, sorted",
     {BS("__name__"), BS("m"), BS("a"), BS("1"), BS("a"), BS("2")},
     3,
     RW_REASON_DUP_LABEL_NAME},
    {"duplicate, unsorted",
     {BS("a"), BS("1"), BS("__name__"), BS("m"), BS("a"), BS("2")},
     3,
     RW_REASON_DUP_LABEL_NAME},
    {"duplicate __name__",
     {BS("__name__"), BS("m"), BS("__name__"), BS("m")},
     2,
     RW_REASON_DUP_LABEL_NAME},
    {"duplicate, one value empty",
     {BS("__name__"), BS("m"), BS("a"), BS(""), BS("a"), BS("2")},
     3,
     RW_REASON_NONE},
    {"overlong NUL", {BS("__name__"), BS("m"), BS("v"), BS("\xc0\x80")}, 2, RW_REASON_BAD_UTF8},
    {"overlong 3-byte",
     {BS("__name__"), BS("m"), BS("v"), BS("\xe0\x9f\xbf")},
     2,
     RW_REASON_BAD_UTF8},
    {"overlong 4-byte",
     {BS("__name__"), BS("m"), BS("v"), BS("\xf0\x8f\xbf\xbf")},
     2,
     RW_REASON_BAD_UTF8},
    {"surrogate", {BS("__name__"), BS("m"), BS("v"), BS("\xed\xa0\x80")}, 2, RW_REASON_BAD_UTF8},
    {"above U+10FFFF",
     {BS("__name__"), BS("m"), BS("v"), BS("\xf4\x90\x80\x80")},
     2,
     RW_REASON_BAD_UTF8},
    {"F5 lead", {BS("__name__"), BS("m"), BS("v"), BS("\xf5\x80\x80\x80")}, 2, RW_REASON_BAD_UTF8},
    {"lone continuation", {BS("__name__"), BS("m"), BS("v"), BS("abc\x80")}, 2, RW_REASON_BAD_UTF8},
    {"truncated sequence",
     {BS("__name__"), BS("m"), BS("v"), BS("abcdefgh\xe2\x82")},
     2,
     RW_REASON_BAD_UTF8},
    {"bad byte after 8 ASCII",
     {BS("__name__"), BS("m"), BS("v"), BS("abcdefgh\xff")},
     2,
     RW_REASON_BAD_UTF8},
    {"invalid metric name bytes", {BS("__name__"), BS("\xff")}, 1, RW_REASON_BAD_UTF8},
};

static void test_series_table(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    for (size_t i = 0; i < sizeof series_cases / sizeof *series_cases; i++) {
        const series_case_t *c = &series_cases[i];
        tbuf_t b = {0};
        rw_request_t q;
        e_req1(&b, c->kv, c->npairs);
        int rc = rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q);
        if (rc) fail_msg("case '%s': %s", c->name, rw_decoder_errmsg(d, NULL));
        check_invariants(&q);
        if (c->want == RW_REASON_NONE) {
            if (q.nseries != 1)
                fail_msg("case '%s': rejected: %s", c->name,
                         q.nrejects ? rw_reason_str(q.rejects[0].reason) : "?");
            assert_int_equal(q.nrejects, 0);
        } else {
            assert_int_equal(q.nseries, 0);
            assert_int_equal(q.nrejects, 1);
            if (q.rejects[0].reason != c->want)
                fail_msg("case '%s': reason '%s', want '%s'", c->name,
                         rw_reason_str(q.rejects[0].reason), rw_reason_str(c->want));
            assert_int_equal(q.nsamples_rejected, 1);
        }
        tbuf_free(&b);
    }
    rw_decoder_destroy(d);
}

/* Every byte at every position of names long enough for the word-at-a-time
 * path, against the reference classifier. */
static void test_name_chars_exhaustive(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    for (size_t len = 1; len <= 19; len += 6) {
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                char name[32];
                memset(name, 'a', len);
                name[pos] = (char)c;
                for (int metric = 0; metric < 2; metric++) {
                    tbuf_t b = {0};
                    bstr_t kv[4] = {BS("__name__"), BS("m"), {name, len}, BS("v")};
                    if (metric) kv[1] = (bstr_t){name, len}, kv[2] = BS("x");
                    e_req1(&b, kv, 2);
                    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
                    rw_reason_t want = RW_REASON_NONE;
                    if (metric && c >= 0x80)
                        want = RW_REASON_BAD_UTF8;
                    else if (!ref_name_ok((const uint8_t *)name, len, metric))
                        want = metric ? RW_REASON_BAD_METRIC_NAME : RW_REASON_BAD_LABEL_NAME;
                    rw_reason_t got = q.nrejects ? q.rejects[0].reason : RW_REASON_NONE;
                    if (got != want)
                        fail_msg("len %zu pos %zu byte 0x%02x metric %d: %s, want %s", len, pos, c,
                                 metric, rw_reason_str(got), rw_reason_str(want));
                    tbuf_free(&b);
                }
            }
        }
    }
    rw_decoder_destroy(d);
}

/* Random byte strings (mostly high bytes) as label values: BAD_UTF8 exactly
 * when the reference decoder refuses them. */
static void test_utf8_random(void **state)
{
    (void)state;
    trng_t r;
    trng_seed(&r, g_seed ^ 0x0f8);
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    static const uint8_t pick[] = {0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
                                   0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90};
    for (int it = 0; it < 20000; it++) {
        char v[24];
        size_t n = 1 + trng_below(&r, sizeof v - 1);
        for (size_t i = 0; i < n; i++)
            v[i] = (char)(trng_below(&r, 2) ? pick[trng_below(&r, sizeof pick)]
                                            : (uint8_t)trng_next(&r));
        tbuf_t b = {0};
        bstr_t kv[4] = {BS("__name__"), BS("m"), BS("v"), {v, n}};
        e_req1(&b, kv, 2);
        assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
        int want_bad = !ref_utf8((const uint8_t *)v, n);
        int got_bad = q.nrejects && q.rejects[0].reason == RW_REASON_BAD_UTF8;
        if (want_bad != got_bad) {
            char hex[80];
            for (size_t i = 0; i < n; i++)
                snprintf(hex + 3 * i, 4, "%02x ", (uint8_t)v[i]);
            fail_msg("value %s: decoder says %s", hex, got_bad ? "invalid" : "valid");
        }
        assert_int_equal(q.nseries + q.nrejects, 1);
        tbuf_free(&b);
    }
    rw_decoder_destroy(d);
}

static void test_many_labels(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    tbuf_t b = {0}, ts = {0};
    char name[16];
    e_label1(&ts, BS("__name__"), BS("m"));
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(name, sizeof name, "l%d", i);
        e_label1(&ts, (bstr_t){name, (size_t)n}, BS("v"));
    }
    e_sample(&ts, 1, 1);
    e_sub(&b, 1, &ts);
    /* A valid series after it. */
    bstr_t ok[] = {BS("__name__"), BS("ok")};
    e_req1(&b, ok, 1);
    rw_request_t q;
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    check_invariants(&q);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.series_index[0], 1);
    assert_int_equal(q.nrejects, 1);
    assert_int_equal(q.rejects[0].reason, RW_REASON_TOO_MANY_LABELS);
    assert_int_equal(q.rejects[0].index, 0);
    /* Only up to the cap is kept for naming the series. */
    assert_int_equal(q.rejects[0].nlabels, 64);
    /* Exactly at the cap is fine. */
    tbuf_free(&b);
    e_label1(&ts, BS("__name__"), BS("m"));
    for (int i = 0; i < 63; i++) {
        int n = snprintf(name, sizeof name, "l%d", i);
        e_label1(&ts, (bstr_t){name, (size_t)n}, BS("v"));
    }
    e_sample(&ts, 1, 1);
    e_sub(&b, 1, &ts);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.series[0].nlabels, 64);
    tbuf_free(&b);
    rw_decoder_destroy(d);
}

static void test_length_limits(void **state)
{
    (void)state;
    rw_options_t o;
    rw_options_init(&o);
    o.max_label_name_len = 8; /* "__name__" itself is 8 */
    o.max_label_value_len = 3;
    rw_decoder_t *d = dec_new(&o);
    rw_request_t q;
    struct {
        bstr_t kv[4];
        rw_reason_t want;
    } cases[] = {
        {{BS("__name__"), BS("abc"), BS("abcdefgh"), BS("xyz")}, RW_REASON_NONE},
        {{BS("__name__"), BS("abc"), BS("abcdefghi"), BS("x")}, RW_REASON_NAME_TOO_LONG},
        {{BS("__name__"), BS("abcd"), BS("a"), BS("x")}, RW_REASON_VALUE_TOO_LONG},
    };
    for (size_t i = 0; i < 3; i++) {
        tbuf_t b = {0};
        e_req1(&b, cases[i].kv, 2);
        assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
        if (cases[i].want == RW_REASON_NONE) {
            assert_int_equal(q.nseries, 1);
        } else {
            assert_int_equal(q.nrejects, 1);
            assert_int_equal(q.rejects[0].reason, cases[i].want);
        }
        tbuf_free(&b);
    }
    rw_decoder_destroy(d);
}

static void test_request_limits(void **state)
{
    (void)state;
    rw_options_t o;
    rw_options_init(&o);
    o.max_series = 3;
    o.max_samples = 5;
    o.max_labels_total = 7;
    o.max_symbols = 4;
    rw_decoder_t *d = dec_new(&o);
    rw_request_t q;
    bstr_t kv[] = {BS("__name__"), BS("m"), BS("a"), BS("b")};
    tbuf_t b = {0};
    for (int i = 0; i < 3; i++)
        e_req1(&b, kv, 2);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 3);
    e_req1(&b, kv, 1);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), RW_ELIMIT);
    assert_non_null(strstr(rw_decoder_errmsg(d, NULL), "series"));
    tbuf_free(&b);
    /* labels: 4 series x 2 = 8 > 7 (and series limit raised) */
    o.max_series = 10;
    rw_decoder_destroy(d);
    d = dec_new(&o);
    for (int i = 0; i < 4; i++)
        e_req1(&b, kv, 2);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), RW_ELIMIT);
    assert_non_null(strstr(rw_decoder_errmsg(d, NULL), "labels"));
    tbuf_free(&b);
    /* samples: 6 > 5 */
    tbuf_t ts = {0};
    e_label1(&ts, BS("__name__"), BS("m"));
    for (int i = 0; i < 6; i++)
        e_sample(&ts, i, i);
    e_sub(&b, 1, &ts);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), RW_ELIMIT);
    assert_non_null(strstr(rw_decoder_errmsg(d, NULL), "samples"));
    tbuf_free(&b);
    /* symbols: 5 > 4 */
    for (int i = 0; i < 5; i++)
        e_len(&b, 4, "", 0);
    assert_int_equal(rw_decode_v2(d, b.p, b.len, RW_ENC_IDENTITY, &q), RW_ELIMIT);
    tbuf_free(&b);
    for (int i = 0; i < 4; i++)
        e_len(&b, 4, "", 0);
    assert_int_equal(rw_decode_v2(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    /* v2 series limit counts in the first pass */
    for (int i = 0; i < 11; i++)
        e_len(&b, 5, "", 0);
    assert_int_equal(rw_decode_v2(d, b.p, b.len, RW_ENC_IDENTITY, &q), RW_ELIMIT);
    tbuf_free(&b);
    rw_decoder_destroy(d);
}

/* 2.0 field order and encodings protobuf-c does not emit by itself. */
static void test_v2_wire_variants(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    /* series first, symbols after; labels_refs unpacked, in two runs, and
     * the sample before the labels. */
    tbuf_t b = {0}, ts = {0}, pk = {0};
    e_sample(&ts, 2.5, 7);
    e_tag(&ts, 1, 0);
    e_varint(&ts, 1); /* __name__ */
    e_varint(&pk, 2); /* "m" */
    e_varint(&pk, 3); /* "job" */
    e_varint(&pk, 4); /* "x" */
    e_sub(&ts, 1, &pk);
    e_sub(&b, 5, &ts);
    e_len(&b, 4, "", 0);
    e_len(&b, 4, "__name__", 8);
    e_len(&b, 4, "m", 1);
    e_len(&b, 4, "job", 3);
    e_len(&b, 4, "x", 1);
    assert_int_equal(rw_decode_v2(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.series[0].nlabels, 2);
    assert_memory_equal(q.series[0].labels[0].name.ptr, "__name__", 8);
    assert_memory_equal(q.series[0].labels[1].value.ptr, "x", 1);
    assert_int_equal(q.series[0].samples[0].t, 7);
    tbuf_free(&b);

    /* The same through protobuf-c's unpacked message. */
    Io__Prometheus__Write__V2__Sample s = IO__PROMETHEUS__WRITE__V2__SAMPLE__INIT;
    s.has_value = s.has_timestamp = 1;
    s.value = -0.0;
    s.timestamp = -5;
    Io__Prometheus__Write__V2__Sample *sp[1] = {&s};
    uint32_t refs[] = {1, 2, 3, 4};
    Io__Prometheus__Write__V2__TimeSeriesUnpacked t =
        IO__PROMETHEUS__WRITE__V2__TIME_SERIES_UNPACKED__INIT;
    t.n_labels_refs = 4, t.labels_refs = refs, t.n_samples = 1, t.samples = sp;
    Io__Prometheus__Write__V2__TimeSeriesUnpacked *tp[1] = {&t};
    ProtobufCBinaryData sy[5] = {{0, (uint8_t *)""},
                                 {8, (uint8_t *)"__name__"},
                                 {1, (uint8_t *)"m"},
                                 {3, (uint8_t *)"job"},
                                 {1, (uint8_t *)"x"}};
    Io__Prometheus__Write__V2__RequestUnpacked ru =
        IO__PROMETHEUS__WRITE__V2__REQUEST_UNPACKED__INIT;
    ru.n_symbols = 5, ru.symbols = sy, ru.n_timeseries = 1, ru.timeseries = tp;
    uint8_t buf[128];
    size_t n = io__prometheus__write__v2__request_unpacked__pack(&ru, buf);
    assert_int_equal(rw_decode_v2(d, buf, n, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(f64_bits(q.series[0].samples[0].v), f64_bits(-0.0));
    assert_int_equal(q.series[0].samples[0].t, -5);

    /* A label value ref to symbols[0] is an empty value: dropped. A name
     * ref to it is an empty name: rejected. */
    refs[3] = 0;
    n = io__prometheus__write__v2__request_unpacked__pack(&ru, buf);
    assert_int_equal(rw_decode_v2(d, buf, n, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.series[0].nlabels, 1);
    refs[2] = 0, refs[3] = 4;
    n = io__prometheus__write__v2__request_unpacked__pack(&ru, buf);
    assert_int_equal(rw_decode_v2(d, buf, n, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nrejects, 1);
    assert_int_equal(q.rejects[0].reason, RW_REASON_EMPTY_LABEL_NAME);
    rw_decoder_destroy(d);
}

/* A 1.0 TimeSeries split in two encoded halves (protobuf merge: repeated
 * fields append), samples before labels. */
static void test_v1_field_order(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    tbuf_t b = {0}, ts = {0};
    e_sample(&ts, 1, 1);
    e_label1(&ts, BS("job"), BS("j"));
    e_sample(&ts, 2, 2);
    e_label1(&ts, BS("__name__"), BS("m"));
    e_sub(&b, 1, &ts);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.series[0].nsamples, 2);
    assert_int_equal(q.series[0].samples[1].t, 2);
    assert_memory_equal(q.series[0].labels[0].name.ptr, "__name__", 8);
    /* Repeated scalar in a Label: the last one wins (proto3 rule). */
    tbuf_free(&b);
    tbuf_t l = {0};
    e_len(&l, 1, "xx", 2);
    e_len(&l, 2, "1", 1);
    e_len(&l, 1, "__name__", 8);
    e_len(&l, 2, "n", 1);
    e_sub(&ts, 1, &l);
    e_sample(&ts, 1, 1);
    e_sub(&b, 1, &ts);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    assert_int_equal(q.series[0].nlabels, 1);
    assert_memory_equal(q.series[0].labels[0].value.ptr, "n", 1);
    tbuf_free(&b);
    rw_decoder_destroy(d);
}

/* ---- snappy and size ----------------------------------------------------------- */

static void test_snappy_errors(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    static const struct {
        const char *p;
        size_t n;
        int rc;
    } cases[] = {
        {"", 0, RW_ESNAPPY},
        {"\x80", 1, RW_ESNAPPY},                     /* preamble truncated */
        {"\xff\xff\xff\xff\xff\xff", 6, RW_ESNAPPY}, /* preamble over 32 bits */
        {"\x05\xff\xff\xff", 4, RW_ESNAPPY},         /* bad element */
        {"\x05\x10hel", 5, RW_ESNAPPY},              /* literal truncated */
        {"\x03\x08"
         "abcdef",
         8, RW_ESNAPPY}, /* more output than declared */
        {"\x06\x08"
         "abc\x09\x05\x00",
         8, RW_ESNAPPY},                               /* copy before start */
        {"\x80\x80\x80\x20\x00", 5, RW_ETOOLARGE},     /* 64 MiB declared */
        {"\xff\xff\xff\xff\x0f\x00", 6, RW_ETOOLARGE}, /* 4 GiB - 1 declared */
        {"\x81\x80\x80\x10", 4, RW_ETOOLARGE},         /* 32 MiB + 1 */
        {"\x00", 1, 0},                                /* empty request */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = rw_decode_v1(d, cases[i].p, cases[i].n, RW_ENC_SNAPPY, &q);
        if (rc != cases[i].rc)
            fail_msg("snappy case %zu: %d (%s), want %d", i, rc, rw_decoder_errmsg(d, NULL),
                     cases[i].rc);
        rc = rw_decode_v2(d, cases[i].p, cases[i].n, RW_ENC_SNAPPY, &q);
        assert_int_equal(rc, cases[i].rc);
    }
    /* Too large: refused before anything is allocated. */
    rw_decoder_stats_t st;
    rw_decoder_stats(d, &st);
    assert_true(st.bytes_held < 1024 * 1024);
    rw_decoder_destroy(d);

    /* Every truncation of a valid compressed body fails as snappy. */
    trng_t r;
    trng_seed(&r, g_seed ^ 0x5a5a);
    m_req_t *m = m_new();
    d = dec_new(NULL);
    gen_req(&r, m);
    size_t n, zn;
    uint8_t *pb = m_encode_v1(&r, m, &n);
    uint8_t *z = snappy_wrap(pb, n, &zn);
    for (size_t k = 0; k < zn; k++) {
        int rc = rw_decode_v1(d, z, k, RW_ENC_SNAPPY, &q);
        assert_int_equal(rc, RW_ESNAPPY);
    }
    /* Every single-byte corruption: any documented outcome, no crash. */
    for (size_t k = 0; k < zn; k++) {
        uint8_t save = z[k];
        z[k] ^= (uint8_t)(1 + trng_below(&r, 255));
        int rc = rw_decode_v1(d, z, zn, RW_ENC_SNAPPY, &q);
        assert_true(rc == 0 || rc == RW_ESNAPPY || rc == RW_EPROTO || rc == RW_ETOOLARGE);
        if (rc == 0) check_invariants(&q);
        z[k] = save;
    }
    free(z);
    free(pb);
    ta_free_all();
    m_free(m);
    rw_decoder_destroy(d);
}

static void test_size_limit(void **state)
{
    (void)state;
    rw_options_t o;
    rw_options_init(&o);
    o.max_body_bytes = 1000;
    rw_decoder_t *d = dec_new(&o);
    rw_request_t q;
    uint8_t body[1001];
    /* 1000 bytes: one unknown LEN field 102 (tag 2 bytes + length 2 bytes + 996). */
    memset(body, 'x', sizeof body);
    body[0] = 0xb2, body[1] = 0x06, body[2] = 0xe4, body[3] = 0x07; /* field 102, len 996 */
    size_t zn;
    uint8_t *z = snappy_wrap(body, 1000, &zn);
    assert_int_equal(rw_decode_v1(d, z, zn, RW_ENC_SNAPPY, &q), 0);
    assert_int_equal(q.body_bytes, 1000);
    assert_int_equal(rw_decode_v1(d, body, 1000, RW_ENC_IDENTITY, &q), 0);
    free(z);
    body[3] = 0x07 + 0, body[2] = 0xe5; /* len 997 */
    z = snappy_wrap(body, 1001, &zn);
    assert_int_equal(rw_decode_v1(d, z, zn, RW_ENC_SNAPPY, &q), RW_ETOOLARGE);
    assert_non_null(strstr(rw_decoder_errmsg(d, NULL), "1001"));
    assert_int_equal(rw_decode_v1(d, body, 1001, RW_ENC_IDENTITY, &q), RW_ETOOLARGE);
    /* The snappy step alone. */
    const uint8_t *out;
    size_t outlen;
    assert_int_equal(rw_decoder_uncompress(d, z, zn, &out, &outlen), RW_ETOOLARGE);
    free(z);
    z = snappy_wrap(body, 10, &zn);
    assert_int_equal(rw_decoder_uncompress(d, z, zn, &out, &outlen), 0);
    assert_int_equal(outlen, 10);
    assert_memory_equal(out, body, 10);
    free(z);
    rw_decoder_destroy(d);
}

/* ---- truncation and mutation sweeps ------------------------------------------------- */

static void sweep(int v2)
{
    trng_t r;
    trng_seed(&r, g_seed ^ (v2 ? 0x7777 : 0x6666));
    rw_options_t o = test_opts();
    rw_decoder_t *d = dec_new(&o);
    m_req_t *m = m_new();
    decode_fn dec = v2 ? rw_decode_v2 : rw_decode_v1;
    for (int round = 0; round < 4; round++) {
        size_t n;
        rw_request_t q;
        do
            gen_req(&r, m);
        while (m->n < 3);
        uint8_t *pb = v2 ? m_encode_v2(&r, m, &n) : m_encode_v1(&r, m, &n);
        uint8_t *cp = malloc(n);
        assert_non_null(cp);
        /* Every prefix, in a buffer of exactly that size (ASan sees overreads). */
        for (size_t k = 0; k < n; k++) {
            uint8_t *pre = malloc(k ? k : 1);
            assert_non_null(pre);
            memcpy(pre, pb, k);
            int rc = dec(d, pre, k, RW_ENC_IDENTITY, &q);
            assert_true(rc == 0 || rc == RW_EPROTO || rc == RW_EREF);
            if (rc == 0) {
                check_invariants(&q);
                assert_true(q.nseries_wire <= m->n);
            }
            free(pre);
        }
        /* Every byte replaced by a random one. */
        for (size_t k = 0; k < n; k++) {
            memcpy(cp, pb, n);
            cp[k] = (uint8_t)trng_next(&r);
            int rc = dec(d, cp, n, RW_ENC_IDENTITY, &q);
            assert_true(rc == 0 || rc == RW_EPROTO || rc == RW_EREF);
            if (rc == 0) check_invariants(&q);
        }
        free(cp);
        free(pb);
        ta_free_all();
    }
    m_free(m);
    rw_decoder_destroy(d);
}

static void test_v1_truncation_mutation(void **state)
{
    (void)state;
    sweep(0);
}

static void test_v2_truncation_mutation(void **state)
{
    (void)state;
    sweep(1);
}

/* ---- reporting, API ----------------------------------------------------------------- */

static void test_reject_format(void **state)
{
    (void)state;
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    tbuf_t b = {0};
    bstr_t ok[] = {BS("__name__"), BS("ok")};
    bstr_t bad[] = {BS("__name__"), BS("m"), BS("job"), BS("a\"b\\c\nd"), BS("job"), BS("\xff")};
    e_req1(&b, ok, 1);
    e_req1(&b, bad, 3);
    assert_int_equal(rw_decode_v1(d, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nrejects, 1);
    char buf[256];
    size_t n = rw_reject_format(&q.rejects[0], buf, sizeof buf);
    assert_string_equal(buf, "series 1 {__name__=\"m\", job=\"a\\\"b\\\\c\\nd\", job=\"\\xff\"}: "
                             "label value is not valid UTF-8 (label \"job\")");
    assert_int_equal(n, strlen(buf));
    /* Truncated output ends in "..." and stays within the buffer. */
    n = rw_reject_format(&q.rejects[0], buf, 20);
    assert_int_equal(n, 19);
    assert_int_equal(strlen(buf), 19);
    assert_string_equal(buf + 16, "...");
    assert_int_equal(rw_reject_format(&q.rejects[0], buf, 1), 0);
    assert_int_equal(buf[0], 0);
    assert_int_equal(rw_reject_format(NULL, buf, sizeof buf), 0);
    tbuf_free(&b);
    rw_decoder_destroy(d);
}

static void test_api(void **state)
{
    (void)state;
    rw_decoder_t *d = NULL;
    rw_request_t q;
    assert_int_equal(rw_decoder_create(NULL, NULL), RW_EINVAL);
    rw_decoder_destroy(NULL);
    d = dec_new(NULL);
    assert_int_equal(rw_decode_v1(NULL, "", 0, RW_ENC_IDENTITY, &q), RW_EINVAL);
    assert_int_equal(rw_decode_v1(d, NULL, 3, RW_ENC_IDENTITY, &q), RW_EINVAL);
    assert_int_equal(rw_decode_v1(d, "", 0, RW_ENC_IDENTITY, NULL), RW_EINVAL);
    assert_int_equal(rw_decode_v1(d, "", 0, (rw_encoding_t)7, &q), RW_EINVAL);
    assert_int_equal(rw_decode_v1(d, NULL, 0, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 0);
    assert_string_equal(rw_strerror(RW_ETOOLARGE),
                        "uncompressed body larger than the configured limit");
    assert_string_equal(rw_strerror(12345), "unknown error");
    assert_string_equal(rw_reason_str(RW_REASON_DUP_LABEL_NAME), "duplicate label name");
    assert_string_equal(rw_reason_str((rw_reason_t)99), "unknown reason");
    rw_options_t o;
    memset(&o, 0, sizeof o); /* zero fields mean defaults */
    rw_decoder_t *d2 = dec_new(&o);
    tbuf_t b = {0};
    bstr_t kv[] = {BS("__name__"), BS("m")};
    e_req1(&b, kv, 1);
    assert_int_equal(rw_decode_v1(d2, b.p, b.len, RW_ENC_IDENTITY, &q), 0);
    assert_int_equal(q.nseries, 1);
    tbuf_free(&b);
    rw_decoder_destroy(d2);
    rw_decoder_destroy(d);
}

/* ---- real bodies -------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    tbuf_t b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(tbuf_put(&b, chunk, n), 0);
    fclose(f);
    assert_int_equal(tbuf_put(&b, "", 1), 0);
    *len = b.len - 1;
    return (char *)b.p;
}

static const char *data_dir(char *buf, size_t cap)
{
    const char *src = getenv("AUGUR_SRC");
    snprintf(buf, cap, "%s/tests/data/rw", src && *src ? src : AUGUR_SRC_DIR);
    return buf;
}

/* "name=value,..." of sorted labels. */
static void series_key(const tsdb_series_in_t *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->nlabels; i++) {
        int k =
            snprintf(buf + n, cap - n, "%s%.*s=%.*s", i ? "," : "", (int)s->labels[i].name.len,
                     s->labels[i].name.ptr, (int)s->labels[i].value.len, s->labels[i].value.ptr);
        assert_true(k > 0 && (size_t)k < cap - n);
        n += (size_t)k;
    }
}

static uint64_t json_u64_after(const char *json, const char *anchor, const char *key)
{
    const char *p = strstr(json, anchor);
    assert_non_null(p);
    p = strstr(p, key);
    assert_non_null(p);
    return strtoull(p + strlen(key), NULL, 10);
}

static void test_real_bodies(void **state)
{
    (void)state;
    char dir[1024], path[1200];
    data_dir(dir, sizeof dir);
    size_t len;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char *manifest = read_file(path, &len);
    if (!manifest) fail_msg("cannot read %s", path);
    uint64_t want_series = json_u64_after(manifest, "\"dir\": \"shard-00\"", "\"series\": ");
    uint64_t want_samples = json_u64_after(manifest, "\"dir\": \"shard-00\"", "\"samples\": ");
    uint64_t start_ms = json_u64_after(manifest, "\"params\"", "\"start_ms\": ");
    uint64_t interval = json_u64_after(manifest, "\"params\"", "\"interval_s\": ");
    snprintf(path, sizeof path, "%s/index.tsv", dir);
    char *index = read_file(path, &len);
    assert_non_null(index);
    snprintf(path, sizeof path, "%s/check.tsv", dir);
    char *check = read_file(path, &len);
    assert_non_null(check);

    rw_decoder_t *d = dec_new(NULL);
    uint64_t total = 0, checked = 0;
    char **keys = NULL; /* distinct series over all bodies */
    size_t nkeys = 0, bodies = 0;
    char fname[64];
    unsigned tick;
    unsigned long nsamples, nbytes;
    const char *line = index;
    while (sscanf(line, "%63s %u %lu %lu", fname, &tick, &nsamples, &nbytes) == 4) {
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        char *body = read_file(path, &len);
        assert_non_null(body);
        assert_int_equal(len, nbytes);
        rw_request_t q;
        int rc = rw_decode_v1(d, body, len, RW_ENC_SNAPPY, &q);
        if (rc) fail_msg("%s: %s", fname, rw_decoder_errmsg(d, NULL));
        check_invariants(&q);
        assert_int_equal(q.nrejects, 0);
        assert_int_equal(q.nsamples, nsamples);
        assert_int_equal(q.nseries, nsamples); /* one sample per series per body */
        for (size_t i = 0; i < q.nseries; i++) {
            const tsdb_series_in_t *s = &q.series[i];
            char key[1024];
            assert_int_equal(s->samples[0].t, (int64_t)(start_ms + tick * interval * 1000));
            series_key(s, key, sizeof key);
            size_t k;
            for (k = 0; k < nkeys; k++)
                if (!strcmp(keys[k], key)) break;
            if (k == nkeys) {
                keys = realloc(keys, (nkeys + 1) * sizeof *keys);
                assert_non_null(keys);
                keys[nkeys++] = strdup(key);
            }
            /* the check series, bit for bit */
            size_t kl = strlen(key);
            for (const char *c = check; (c = strstr(c, key)) != NULL; c++) {
                if ((c != check && c[-1] != '\n') || c[kl] != '\t') continue;
                long long ts;
                unsigned long long bits;
                assert_int_equal(sscanf(c + kl, "\t%lld\t%llx", &ts, &bits), 2);
                if (ts != s->samples[0].t) continue;
                assert_int_equal(f64_bits(s->samples[0].v), bits);
                checked++;
            }
        }
        total += q.nsamples;
        bodies++;
        free(body);
        line = strchr(line, '\n');
        if (!line) break;
        line++;
    }
    assert_int_equal(bodies, 2);
    assert_int_equal(total, want_samples);
    assert_int_equal(nkeys, want_series);
    assert_true(checked >= 2); /* shard 00 holds some of the 32 check series */
    print_message("real bodies: %zu bodies, %llu samples, %zu series, %llu check samples\n", bodies,
                  (unsigned long long)total, nkeys, (unsigned long long)checked);
    for (size_t k = 0; k < nkeys; k++)
        free(keys[k]);
    free(keys);
    free(index);
    free(check);
    free(manifest);
    rw_decoder_destroy(d);
}

/* After warm-up the decoder allocates nothing, request after request. */
static void test_steady_state(void **state)
{
    (void)state;
    char dir[1024], path[1200];
    size_t len0, len1;
    data_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/00000-000.rw", dir);
    char *b0 = read_file(path, &len0);
    snprintf(path, sizeof path, "%s/00001-000.rw", dir);
    char *b1 = read_file(path, &len1);
    assert_non_null(b0);
    assert_non_null(b1);
    rw_decoder_t *d = dec_new(NULL);
    rw_request_t q;
    rw_decoder_stats_t st0, st1;
    assert_int_equal(rw_decode_v1(d, b0, len0, RW_ENC_SNAPPY, &q), 0);
    assert_int_equal(rw_decode_v1(d, b1, len1, RW_ENC_SNAPPY, &q), 0);
    rw_decoder_stats(d, &st0);
    assert_true(st0.allocs > 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(
            rw_decode_v1(d, (i & 1) ? b1 : b0, (i & 1) ? len1 : len0, RW_ENC_SNAPPY, &q), 0);
        /* errors do not allocate either */
        assert_int_equal(rw_decode_v1(d, b0, len0 / 2, RW_ENC_SNAPPY, &q), RW_ESNAPPY);
    }
    rw_decoder_stats(d, &st1);
    assert_int_equal(st1.allocs, st0.allocs);
    assert_int_equal(st1.requests, st0.requests + 50);
    assert_int_equal(st1.bytes_held, st0.bytes_held);
    free(b0);
    free(b1);
    rw_decoder_destroy(d);
}

/* ---- fuzz regressions --------------------------------------------------------------- */

/* Inputs the fuzzers found, each decoded by a fresh decoder both ways. */
static const struct {
    const char *what;
    const char *p;
    size_t n;
} fuzz_regressions[] = {
    /* clang UBSan: NULL + 0 on the label arena of a fresh decoder (an empty
     * TimeSeries before any label was ever stored) */
    {"empty series, fresh decoder", "\x0a\x00", 2},
    {"2.0 series without labels, fresh decoder",
     "\x22\x00\x22\x08\x5f\x73\x65\x63\x6f\x6e\x64\x33\x2a\x1d\x7a\x04\x01\x02\x05\x06"
     "\x1a\x04\x08\x03\x78\x05\x22\x0f\x0a\x02\x09\x0a\x11\x00\x00\x00\x00\x40\x00\xf0"
     "\x3f\x50\x01",
     43},
};

static void test_fuzz_regressions(void **state)
{
    (void)state;
    rw_request_t q;
    for (size_t i = 0; i < sizeof fuzz_regressions / sizeof *fuzz_regressions; i++) {
        for (int v = 0; v < 2; v++) {
            decode_fn dec = v ? rw_decode_v2 : rw_decode_v1;
            for (int e = 0; e < 2; e++) {
                rw_decoder_t *d = dec_new(NULL);
                int rc = dec(d, fuzz_regressions[i].p, fuzz_regressions[i].n, (rw_encoding_t)e, &q);
                if (rc == 0) check_invariants(&q);
                rw_decoder_destroy(d);
            }
        }
    }
}

int main(void)
{
    const char *e = getenv("AUGUR_TEST_SEED");
    if (e && *e) g_seed = strtoull(e, NULL, 0);
    printf("test_rw: seed 0x%llx (set AUGUR_TEST_SEED to replay)\n", (unsigned long long)g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_wire_table),
        cmocka_unit_test(test_error_detail),
        cmocka_unit_test(test_series_table),
        cmocka_unit_test(test_name_chars_exhaustive),
        cmocka_unit_test(test_utf8_random),
        cmocka_unit_test(test_many_labels),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_v1_field_order),
        cmocka_unit_test(test_v2_wire_variants),
        cmocka_unit_test(test_v1_differential),
        cmocka_unit_test(test_v2_differential),
        cmocka_unit_test(test_snappy_errors),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_v1_truncation_mutation),
        cmocka_unit_test(test_v2_truncation_mutation),
        cmocka_unit_test(test_reject_format),
        cmocka_unit_test(test_real_bodies),
        cmocka_unit_test(test_steady_state),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
