/*
 * fuzz_block.c — libFuzzer target for the sealed-data codec (tsdb/codec.c).
 *
 * Each input is used four ways:
 *   1. as a block, as is: block_open(), then every series decoded;
 *   2. as a block whose checksum the harness recomputes, so that mutations
 *      reach the size caps, zstd and the directory behind the checksum;
 *   3. as a chunk: chunk_info() and chunk_decode(), which must agree;
 *   4. as samples (16 bytes each: a timestamp step and raw value bits),
 *      encoded with every value encoding and as a block, then decoded and
 *      compared bit for bit (an encoder oracle).
 * Decoders must return 0 or TSDB_ECORRUPT and never read out of bounds.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DAUGUR_FUZZ=ON && make -C build-fuzz fuzz_block
 * Run:   build-fuzz/fuzz/fuzz_block fuzz/corpus/fuzz_block -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tsdb/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OUT 65536

static tsdb_sample_t out_buf[MAX_OUT];

static void check(int cond)
{
    if (!cond) abort();
}

static void check_decoded(const tsdb_sample_t *s, size_t n)
{
    for (size_t i = 1; i < n; i++) check(s[i].t > s[i - 1].t);
}

static void fuzz_block(const uint8_t *p, size_t len)
{
    block_reader_t br = {0};
    int rc = block_open(&br, p, len);
    check(rc == 0 || rc == TSDB_ECORRUPT);
    if (rc == 0) {
        check(br.nseries >= 1);
        for (uint32_t i = 0; i < br.nseries; i++) {
            if (i) check(br.sids[i] > br.sids[i - 1]);
            check(block_find(&br, br.sids[i]) == (long)i);
            size_t n = 0;
            rc = block_decode_series(&br, i, out_buf, MAX_OUT, &n);
            check(rc == 0 || rc == TSDB_ECORRUPT);
            if (rc == 0) {
                check(n == br.counts[i] && out_buf[0].t == br.mints[i] &&
                      out_buf[n - 1].t == br.maxts[i]);
                check_decoded(out_buf, n);
            }
        }
    }
    block_reader_free(&br);
}

static void fuzz_chunk(const uint8_t *p, size_t len)
{
    uint32_t cnt = 0;
    int64_t mint = 0, maxt = 0;
    int irc = chunk_info(p, len, &cnt, &mint, &maxt);
    check(irc == 0 || irc == TSDB_ECORRUPT);
    size_t n = 0;
    int rc = chunk_decode(p, len, out_buf, MAX_OUT, &n);
    check(rc == 0 || rc == TSDB_ECORRUPT);
    if (rc == 0) {
        check(irc == 0 && n == cnt && out_buf[0].t == mint && out_buf[n - 1].t == maxt);
        check_decoded(out_buf, n);
    }
}

static void same(const tsdb_sample_t *a, const tsdb_sample_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) check(a[i].t == b[i].t && f64_bits(a[i].v) == f64_bits(b[i].v));
}

static void fuzz_encode(const uint8_t *p, size_t len)
{
    size_t n = len / 16;
    if (n == 0 || n > 4096) return;
    tsdb_sample_t *s = malloc(n * sizeof *s);
    if (!s) return;
    /* timestamps: a start, then steps >= 1 (steps wrap around to stay increasing) */
    uint64_t t = le64_get(p);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t step = le64_get(p + 16 * i) & 0xffffffffffULL;
        if (i) {
            if (step == 0) step = 1;
            uint64_t nt = t + step;
            if ((int64_t)nt <= (int64_t)t) break; /* would pass INT64_MAX */
            t = nt;
        }
        s[m].t = (int64_t)t;
        s[m].v = f64_from_bits(le64_get(p + 16 * i + 8));
        m++;
    }
    tbuf_t b = {0}, scratch = {0};
    static const int modes[] = {CHUNK_V_AUTO, CHUNK_V_CONST, CHUNK_V_DECIMAL, CHUNK_V_GORILLA,
                                CHUNK_V_XORB};
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        b.len = 0;
        int rc = chunk_encode_mode(s, m, modes[k], &b);
        if (rc == TSDB_EINVAL && modes[k] == CHUNK_V_CONST) continue;
        check(rc == 0);
        if (modes[k] == CHUNK_V_AUTO) check(b.len <= chunk_bound(m));
        size_t got = 0;
        check(chunk_decode(b.p, b.len, out_buf, MAX_OUT, &got) == 0 && got == m);
        same(s, out_buf, m);
    }
    /* the same samples as a block of up to three series */
    block_series_t ser[3];
    size_t ns = m >= 3 ? 3 : 1, per = m / ns;
    for (size_t i = 0; i < ns; i++) {
        ser[i].sid = (uint32_t)(i * 7 + (p[0] & 3));
        ser[i].samples = s + i * per;
        ser[i].n = (uint32_t)(i == ns - 1 ? m - i * per : per);
    }
    check(block_encode(ser, ns, 1 + (p[len - 1] & 3), &b, &scratch) == 0);
    block_reader_t br = {0};
    check(block_open(&br, b.p, b.len) == 0 && br.nseries == ns);
    for (uint32_t i = 0; i < ns; i++) {
        size_t got = 0;
        check(block_decode_series(&br, i, out_buf, MAX_OUT, &got) == 0 && got == ser[i].n);
        same(ser[i].samples, out_buf, got);
    }
    block_reader_free(&br);
    tbuf_free(&b);
    tbuf_free(&scratch);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* copies of exactly `size` bytes, so that any over-read is caught */
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return 0;
    if (size) memcpy(p, data, size);
    fuzz_block(p, size);
    fuzz_chunk(p, size);
    if (size >= 32 && !memcmp(p, "AUGB", 4)) {
        le32_put(p + 20, (uint32_t)(size - 32));
        le64_put(p + 24, XXH64(p + 32, size - 32, XXH64(p, 24, 0)));
        fuzz_block(p, size);
    }
    fuzz_encode(p, size);
    free(p);
    return 0;
}
