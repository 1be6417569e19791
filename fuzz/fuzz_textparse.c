/*
 * fuzz_textparse.c — libFuzzer target for ingest/textparse.
 *
 * The first input byte picks the dialect and flags; the rest is the body.
 * Oracles beyond ASan/UBSan:
 *  - every output series satisfies tsdb_append()'s contract (sorted,
 *    distinct, non-empty names and values, __name__ present, 1 sample);
 *  - strict mode fails exactly when lenient mode rejected a line;
 *  - formatting the output back to 0.0.4 text and parsing it again gives
 *    the same series bit for bit (labels, value bits, timestamps).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/textparse.h"
#include "tsdb/tsdb_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static textparse_t *g_p, *g_q;
static tbuf_t g_out;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int str_cmp(tsdb_str_t a, tsdb_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static void check_result(const textparse_result_t *r)
{
    volatile unsigned sink = 0;
    for (size_t i = 0; i < r->nseries; i++) {
        const tsdb_series_in_t *s = &r->series[i];
        CHECK(s->nsamples == 1);
        int has_name = 0;
        for (uint32_t j = 0; j < s->nlabels; j++) {
            const tsdb_label_t *l = &s->labels[j];
            CHECK(l->name.len > 0 && l->value.len > 0);
            CHECK(!memchr(l->value.ptr, 0, l->value.len));
            for (uint32_t k = 0; k < l->name.len; k++)
                sink += (unsigned char)l->name.ptr[k];
            for (uint32_t k = 0; k < l->value.len; k++)
                sink += (unsigned char)l->value.ptr[k];
            if (j) CHECK(str_cmp(s->labels[j - 1].name, l->name) < 0);
            if (l->name.len == 8 && !memcmp(l->name.ptr, "__name__", 8)) has_name = 1;
        }
        CHECK(has_name);
        double v = s->samples[0].v;
        if (isnan(v)) CHECK(f64_bits(v) == UINT64_C(0x7ff8000000000001));
    }
    for (size_t i = 0; i < r->nmeta; i++) {
        const textparse_meta_t *m = &r->meta[i];
        for (uint32_t k = 0; k < m->help.len; k++)
            sink += (unsigned char)m->help.ptr[k];
        CHECK(m->name.len > 0);
    }
    CHECK(r->nerrors <= r->nrejected);
    for (size_t i = 0; i < r->nerrors; i++)
        CHECK(strlen(r->errors[i].msg) > 0);
    (void)sink;
}

static int put(const char *s, size_t n)
{
    return tbuf_put(&g_out, s, n);
}

/* 0.0.4 text for the parsed series (timestamps in ms). */
static void format_result(const textparse_result_t *r)
{
    g_out.len = 0;
    char num[64];
    for (size_t i = 0; i < r->nseries; i++) {
        const tsdb_series_in_t *s = &r->series[i];
        const tsdb_label_t *name = NULL;
        for (uint32_t j = 0; j < s->nlabels; j++)
            if (s->labels[j].name.len == 8 && !memcmp(s->labels[j].name.ptr, "__name__", 8))
                name = &s->labels[j];
        CHECK(name);
        CHECK(!put(name->value.ptr, name->value.len) && !put("{", 1));
        for (uint32_t j = 0; j < s->nlabels; j++) {
            const tsdb_label_t *l = &s->labels[j];
            if (l == name) continue;
            CHECK(!put(l->name.ptr, l->name.len) && !put("=\"", 2));
            for (uint32_t k = 0; k < l->value.len; k++) {
                char c = l->value.ptr[k];
                if (c == '\\' || c == '"')
                    CHECK(!put("\\", 1) && !put(&c, 1));
                else if (c == '\n')
                    CHECK(!put("\\n", 2));
                else
                    CHECK(!put(&c, 1));
            }
            CHECK(!put("\",", 2));
        }
        double v = s->samples[0].v;
        int n;
        if (isnan(v))
            n = snprintf(num, sizeof num, "} NaN");
        else if (isinf(v))
            n = snprintf(num, sizeof num, "} %s", v > 0 ? "+Inf" : "-Inf");
        else
            n = snprintf(num, sizeof num, "} %.17g", v);
        CHECK(!put(num, (size_t)n));
        n = snprintf(num, sizeof num, " %lld\n", (long long)s->samples[0].t);
        CHECK(!put(num, (size_t)n));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_p) {
        if (textparse_create(&g_p) || textparse_create(&g_q)) abort();
    }
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    static const tsdb_label_t extras[] = {
        {{"job", 3}, {"fuzz", 4}}, {{"a", 1}, {"", 0}}, {{"instance", 8}, {"x:1", 3}}};
    textparse_options_t o;
    textparse_options_init(&o);
    o.dialect = (mode & 1) ? TEXTPARSE_OPENMETRICS : TEXTPARSE_PROM;
    o.flags =
        (mode & 2 ? TEXTPARSE_F_DROP_CREATED : 0) | (mode & 4 ? TEXTPARSE_F_IGNORE_TIMESTAMPS : 0);
    if (mode & 8) {
        o.extra_labels = extras;
        o.nextra_labels = 3;
    }
    if (mode & 16) { /* small limits reach the limit paths */
        o.max_line_bytes = 64;
        o.max_labels_per_series = 4;
        o.max_label_name_len = 8;
        o.max_label_value_len = 16;
        o.max_errors = 2;
        o.max_samples = 8;
    }
    o.default_ts_ms = -1;

    textparse_result_t r;
    int rc = textparse_parse(g_p, body, len, &o, &r);
    CHECK(rc == 0 || rc == TEXTPARSE_ELIMIT);
    if (rc != 0) {
        CHECK(r.nseries == 0);
        return 0;
    }
    check_result(&r);
    uint64_t nrej = r.nrejected;
    size_t nser = r.nseries;

    /* Strict mode agrees with lenient mode (on another parser: r stays valid). */
    textparse_options_t so = o;
    so.flags |= TEXTPARSE_F_STRICT;
    textparse_result_t sr;
    int src = textparse_parse(g_q, body, len, &so, &sr);
    if (nrej) {
        CHECK(src == TEXTPARSE_ESYNTAX || src == TEXTPARSE_ELIMIT);
        if (src == TEXTPARSE_ESYNTAX) CHECK(sr.nerrors == 1 && sr.nseries == 0);
    } else {
        CHECK(src == 0 && sr.nseries == nser);
    }

    /* Round trip through the 0.0.4 formatter. */
    format_result(&r);
    textparse_options_t ro;
    textparse_options_init(&ro);
    ro.max_line_bytes = 1u << 30;
    ro.max_labels_per_series = 65536;
    ro.max_label_value_len = 1u << 30;
    ro.max_label_name_len = 1u << 30;
    textparse_result_t rr;
    CHECK(textparse_parse(g_q, (const char *)g_out.p, g_out.len, &ro, &rr) == 0);
    CHECK(rr.nrejected == 0);
    CHECK(rr.nseries == nser);
    for (size_t i = 0; i < nser; i++) {
        const tsdb_series_in_t *a = &r.series[i], *b = &rr.series[i];
        CHECK(a->nlabels == b->nlabels);
        for (uint32_t j = 0; j < a->nlabels; j++) {
            CHECK(str_cmp(a->labels[j].name, b->labels[j].name) == 0);
            CHECK(str_cmp(a->labels[j].value, b->labels[j].value) == 0);
        }
        CHECK(f64_bits(a->samples[0].v) == f64_bits(b->samples[0].v));
        CHECK(a->samples[0].t == b->samples[0].t);
    }
    return 0;
}
