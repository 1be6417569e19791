/*
 * fuzz_nvsmi.c — libFuzzer target for ingest/nvsmi (nvidia-smi CSV).
 *
 * The input is split at '\n' into lines (the first is the header). Oracles
 * beyond ASan/UBSan: every series handed to the sink has non-empty label
 * names and values, exactly one __name__ starting with DCGM_FI_DEV_, and a
 * finite value; rows + skipped rows never exceed the lines fed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/nvsmi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int check_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        CHECK(s[i].nsamples == 1);
        CHECK(!isnan(s[i].samples[0].v));
        int name = 0;
        for (uint32_t a = 0; a < s[i].nlabels; a++) {
            CHECK(s[i].labels[a].name.len > 0 && s[i].labels[a].value.len > 0);
            if (s[i].labels[a].name.len == 8 && !memcmp(s[i].labels[a].name.ptr, "__name__", 8)) {
                name++;
                CHECK(s[i].labels[a].value.len > 12 &&
                      !memcmp(s[i].labels[a].value.ptr, "DCGM_FI_DEV_", 12));
            }
        }
        CHECK(name == 1);
    }
    res->stored = n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ingest_sink_t sink = {check_append, NULL};
    nvsmi_options_t o;
    nvsmi_options_init(&o);
    o.instance = "host";
    o.batch_samples = 16;
    o.sink = &sink;
    nvsmi_t *p;
    if (nvsmi_create(&o, &p)) return 0;
    nvsmi_file_begin(p);
    const char *s = (const char *)data, *end = s + size;
    uint64_t lines = 0;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = (size_t)((nl ? nl : end) - s);
        int rc = nvsmi_line(p, s, n);
        if (rc == TSDB_EINVAL) break; /* unusable header: the CLI stops the file */
        CHECK(rc == 0);
        lines++;
        s += n + 1;
    }
    CHECK(nvsmi_flush(p) == 0);
    nvsmi_stats_t st;
    nvsmi_stats(p, &st);
    CHECK(st.rows + st.rows_skipped <= lines);
    nvsmi_destroy(p);
    return 0;
}
