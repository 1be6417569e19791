/*
 * fuzz_rw1.c — libFuzzer target for the remote-write 1.0 decoder
 * (rw_decode_v1); fuzz_rw2.c includes this file for 2.0.
 *
 * Each input is decoded three ways with one long-lived decoder, replaced by
 * a fresh one every 256 inputs (so both arena reuse and first use are
 * fuzzed):
 *   1. as the raw protobuf body (RW_ENC_IDENTITY);
 *   2. as a snappy block (mostly corrupt snappy);
 *   3. snappy-compressed here first, then decoded: must give exactly the
 *      result of 1.
 * Any accepted request must satisfy the output invariants (labels sorted,
 * unique, valid names, UTF-8 values, __name__ present); a violation aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>

#include "ingest/rw.h"

#ifndef FUZZ_RW_VERSION
#define FUZZ_RW_VERSION 1
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_decode(rw_decoder_t *d, const void *p, size_t n, rw_encoding_t e, rw_request_t *q)
{
#if FUZZ_RW_VERSION == 2
    return rw_decode_v2(d, p, n, e, q);
#else
    return rw_decode_v1(d, p, n, e, q);
#endif
}

#define FZ_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_rw: invariant failed: %s (line %d)\n", #c, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int fz_name_ok(tsdb_str_t s, int metric)
{
    if (!s.len) return 0;
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (i && c >= '0' && c <= '9') || (metric && c == ':');
        if (!ok) return 0;
    }
    return 1;
}

static int fz_cmp(tsdb_str_t a, tsdb_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static void fz_check(const rw_request_t *q)
{
    uint64_t ns = 0;
    FZ_CHECK(q->nseries + q->nrejects <= q->nseries_wire);
    for (size_t i = 0; i < q->nseries; i++) {
        const tsdb_series_in_t *s = &q->series[i];
        int name = 0;
        FZ_CHECK(s->nlabels > 0 && s->nsamples > 0);
        ns += s->nsamples;
        for (uint32_t j = 0; j < s->nlabels; j++) {
            FZ_CHECK(fz_name_ok(s->labels[j].name, 0));
            FZ_CHECK(s->labels[j].value.len > 0);
            if (j) FZ_CHECK(fz_cmp(s->labels[j - 1].name, s->labels[j].name) < 0);
            if (s->labels[j].name.len == 8 && !memcmp(s->labels[j].name.ptr, "__name__", 8)) {
                name = 1;
                FZ_CHECK(fz_name_ok(s->labels[j].value, 1));
            }
        }
        FZ_CHECK(name);
        /* touch every sample (ASan) */
        for (uint32_t j = 0; j < s->nsamples; j++)
            FZ_CHECK(s->samples[j].t == s->samples[j].t);
    }
    FZ_CHECK(ns == q->nsamples);
    for (size_t i = 0; i < q->nrejects; i++) {
        char buf[160];
        FZ_CHECK(q->rejects[i].reason != RW_REASON_NONE);
        FZ_CHECK(q->rejects[i].index < q->nseries_wire);
        size_t n = rw_reject_format(&q->rejects[i], buf, sizeof buf);
        FZ_CHECK(n < sizeof buf && strlen(buf) == n);
    }
}

static int fz_rc_ok(int rc)
{
    return rc == 0 || rc == RW_EPROTO || rc == RW_EREF || rc == RW_ELIMIT || rc == RW_ETOOLARGE ||
           rc == RW_ESNAPPY;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rw_decoder_t *dec;
    static char *zbuf;
    static size_t zcap;
    static unsigned calls;
    /* Mostly one long-lived decoder (arena reuse), now and then a fresh one. */
    if (dec && ++calls % 256 == 0) {
        rw_decoder_destroy(dec);
        dec = NULL;
    }
    if (!dec) {
        rw_options_t o;
        rw_options_init(&o);
        o.max_labels_per_series = 16; /* small limits reach the limit paths */
        o.max_label_name_len = 32;
        o.max_label_value_len = 64;
        o.max_series = 1000;
        o.max_samples = 5000;
        o.max_labels_total = 5000;
        o.max_symbols = 5000;
        o.max_body_bytes = 1 << 20;
        if (rw_decoder_create(&o, &dec)) abort();
    }
    rw_request_t q;

    int rc1 = fz_decode(dec, data, size, RW_ENC_IDENTITY, &q);
    FZ_CHECK(fz_rc_ok(rc1) && rc1 != RW_ESNAPPY);
    uint64_t n1 = 0, s1 = 0, r1 = 0;
    if (rc1 == 0) {
        fz_check(&q);
        n1 = q.nseries, s1 = q.nsamples, r1 = q.nrejects;
    }

    int rc2 = fz_decode(dec, data, size, RW_ENC_SNAPPY, &q);
    FZ_CHECK(fz_rc_ok(rc2));
    if (rc2 == 0) fz_check(&q);

    size_t need = snappy_max_compressed_length(size);
    if (need > zcap) {
        free(zbuf);
        zbuf = malloc(need);
        if (!zbuf) abort();
        zcap = need;
    }
    size_t zn = zcap;
    if (snappy_compress((const char *)data, size, zbuf, &zn) != SNAPPY_OK) abort();
    int rc3 = fz_decode(dec, zbuf, zn, RW_ENC_SNAPPY, &q);
    FZ_CHECK(rc3 == rc1);
    if (rc3 == 0) {
        fz_check(&q);
        FZ_CHECK(q.nseries == n1 && q.nsamples == s1 && q.nrejects == r1);
    }
    return 0;
}
