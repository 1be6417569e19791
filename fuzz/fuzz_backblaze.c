/*
 * fuzz_backblaze.c — libFuzzer target for ingest/backblaze (Backblaze CSV).
 *
 * The first input byte picks options (instance given or not, normalized
 * columns skipped, batch size); the rest is split at '\n' into lines; a 0x01
 * byte at a line start begins a new file. Oracles beyond ASan/UBSan: every
 * batch the sink receives satisfies tsdb_append()'s input contract
 * (non-empty distinct label names, non-empty values, __name__ present, one
 * sample); rows imported + rows skipped never exceeds the data lines fed;
 * the one-pass row parser and the general one (backblaze_options_t
 * general_parse) give the same samples, errors and stats, byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/backblaze.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A digest of everything a parse gives out, in order (FNV-1a). */
static void mix(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 1099511628211u;
}

static int check_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    uint64_t *h = ctx;
    for (size_t i = 0; i < n; i++) {
        CHECK(s[i].nsamples == 1);
        for (uint32_t a = 0; a < s[i].nlabels; a++) {
            mix(h, s[i].labels[a].name.ptr, s[i].labels[a].name.len);
            mix(h, "=", 1);
            mix(h, s[i].labels[a].value.ptr, s[i].labels[a].value.len);
            mix(h, ",", 1);
        }
        mix(h, &s[i].samples[0].t, sizeof s[i].samples[0].t);
        mix(h, &s[i].samples[0].v, sizeof s[i].samples[0].v);
        int name = 0;
        for (uint32_t a = 0; a < s[i].nlabels; a++) {
            CHECK(s[i].labels[a].name.len > 0);
            CHECK(s[i].labels[a].value.len > 0);
            /* Touch every byte (ASan catches dangling label strings). */
            volatile char x = 0;
            for (uint32_t k = 0; k < s[i].labels[a].value.len; k++)
                x ^= s[i].labels[a].value.ptr[k];
            (void)x;
            if (s[i].labels[a].name.len == 8 && !memcmp(s[i].labels[a].name.ptr, "__name__", 8))
                name++;
            for (uint32_t b = 0; b < a; b++)
                CHECK(s[i].labels[a].name.len != s[i].labels[b].name.len ||
                      memcmp(s[i].labels[a].name.ptr, s[i].labels[b].name.ptr,
                             s[i].labels[a].name.len));
        }
        CHECK(name == 1);
    }
    res->stored = n;
    return 0;
}

static void on_error(void *ctx, uint64_t line, const char *msg)
{
    uint64_t *h = ctx;
    mix(h, &line, sizeof line);
    mix(h, msg, strlen(msg) + 1);
}

/* One parse of the input; its digest and stats. 0, or -1 if the importer
 * could not be created. */
static int run(const uint8_t *data, size_t size, int general, uint64_t *h, backblaze_stats_t *st)
{
    uint8_t flags = data[0];
    *h = 1469598103934665603u;
    ingest_sink_t sink = {check_append, h};
    ingest_totals_t tot;
    memset(&tot, 0, sizeof tot);
    backblaze_options_t o;
    backblaze_options_init(&o);
    o.instance = flags & 1 ? "node-1" : NULL;
    o.skip_normalized = flags & 2;
    o.batch_samples = flags & 4 ? 1 : 64;
    o.sink = &sink;
    o.totals = &tot;
    o.on_error = on_error;
    o.err_ctx = h;
    o.general_parse = general;
    backblaze_t *p;
    if (backblaze_create(&o, &p)) return -1;
    backblaze_file_begin(p);
    const char *s = (const char *)data + 1, *end = (const char *)data + size;
    uint64_t lines = 0;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = (size_t)((nl ? nl : end) - s);
        if (n && s[0] == 1) {
            backblaze_file_begin(p);
            s++;
            n--;
        }
        /* An unusable header is a normal outcome: go on like the CLI does. */
        int rc = backblaze_line(p, s, n);
        CHECK(rc == 0 || rc == TSDB_EINVAL);
        lines++;
        s += n + 1;
    }
    CHECK(backblaze_finish(p) == 0);
    backblaze_stats(p, st);
    CHECK(st->rows + st->rows_skipped <= lines);
    CHECK(tot.samples == tot.stored);
    backblaze_destroy(p);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    uint64_t h[2];
    backblaze_stats_t st[2];
    if (run(data, size, 0, &h[0], &st[0]) || run(data, size, 1, &h[1], &st[1])) return 0;
    CHECK(h[0] == h[1]);
    CHECK(!memcmp(&st[0], &st[1], sizeof st[0]));
    return 0;
}
