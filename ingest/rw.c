/*
 * rw.c — Prometheus remote-write 1.0 / 2.0 decoding (see rw.h).
 *
 * Wire format (protobuf, facts from the encoding spec):
 *
 *   message   := field*
 *   field     := tag payload
 *   tag       := varint (field_number << 3 | wire_type), field_number >= 1
 *   wire_type  0 VARINT  payload = varint (1..10 bytes, little-endian base 128)
 *              1 I64     payload = 8 bytes little-endian
 *              2 LEN     payload = varint length, then that many bytes
 *              3/4 SGROUP/EGROUP (deprecated groups: refused here)
 *              5 I32     payload = 4 bytes little-endian
 *
 * Messages decoded (unknown fields of any valid wire type are skipped):
 *
 *   1.0 prometheus.WriteRequest            2.0 io.prometheus.write.v2.Request
 *     1 timeseries  LEN TimeSeries           4 symbols     LEN string (symbols[0] == "")
 *     3 metadata    LEN MetricMetadata       5 timeseries  LEN TimeSeries
 *   TimeSeries                             TimeSeries
 *     1 labels      LEN Label                1 labels_refs uint32 pairs (packed LEN or VARINT)
 *     2 samples     LEN Sample               2 samples     LEN Sample
 *     3 exemplars   LEN (counted)            3 histograms  LEN (counted)
 *     4 histograms  LEN (counted)            4 exemplars   LEN (counted)
 *   Label: 1 name LEN, 2 value LEN           5 metadata    LEN Metadata {1 type, 3 help_ref,
 *   Sample: 1 value I64 (double),                                       4 unit_ref: VARINT}
 *           2 timestamp VARINT (int64)       6 created_timestamp VARINT
 *   MetricMetadata: 1 type VARINT, 4/5/6 LEN
 *
 * Worked example: a 1.0 request with one series up{job="a"}, value 1.0 at
 * t = 1000 ms (42 bytes; tests/test_rw.c decodes exactly these bytes):
 *
 *   0a 28                              WriteRequest.timeseries, LEN 40
 *     0a 0e                            TimeSeries.labels, LEN 14
 *       0a 08 5f 5f 6e 61 6d 65 5f 5f    Label.name  "__name__"
 *       12 02 75 70                      Label.value "up"
 *     0a 08                            TimeSeries.labels, LEN 8
 *       0a 03 6a 6f 62  12 01 61         name "job", value "a"
 *     12 0c                            TimeSeries.samples, LEN 12
 *       09 00 00 00 00 00 00 f0 3f       Sample.value, I64: 1.0
 *       10 e8 07                         Sample.timestamp, VARINT: 1000
 *
 * Every read is checked against the end of the enclosing message; lengths
 * are compared with the bytes left before they are used, and nothing is
 * allocated from a length read off the wire except through the limits.
 */
#include "ingest/rw.h"

#include <snappy-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and reasons -------------------------------------------------- */

const char *rw_strerror(int err)
{
    switch (err) {
#define RW_ERR_STR_(name, code, msg)                                                               \
    case code:                                                                                     \
        return msg;
        RW_ERRNO_MAP(RW_ERR_STR_)
#undef RW_ERR_STR_
    }
    return "unknown error";
}

const char *rw_reason_str(rw_reason_t r)
{
    switch (r) {
#define RW_REASON_STR_(name, code, msg)                                                            \
    case code:                                                                                     \
        return msg;
        RW_REASON_MAP(RW_REASON_STR_)
#undef RW_REASON_STR_
    }
    return "unknown reason";
}

/* ---- options ------------------------------------------------------------- */

#define RW_DEF_MAX_BODY ((size_t)32 << 20)
#define RW_DEF_MAX_SERIES 100000u
#define RW_DEF_MAX_SAMPLES 1000000u
#define RW_DEF_MAX_LABELS_TOTAL 2000000u
#define RW_DEF_MAX_SYMBOLS 2000000u
#define RW_DEF_MAX_LABELS 64u
#define RW_DEF_MAX_NAME_LEN 256u
#define RW_DEF_MAX_VALUE_LEN 4096u

void rw_options_init(rw_options_t *o)
{
    o->max_body_bytes = RW_DEF_MAX_BODY;
    o->max_series = RW_DEF_MAX_SERIES;
    o->max_samples = RW_DEF_MAX_SAMPLES;
    o->max_labels_total = RW_DEF_MAX_LABELS_TOTAL;
    o->max_symbols = RW_DEF_MAX_SYMBOLS;
    o->max_labels_per_series = RW_DEF_MAX_LABELS;
    o->max_label_name_len = RW_DEF_MAX_NAME_LEN;
    o->max_label_value_len = RW_DEF_MAX_VALUE_LEN;
}

/* ---- decoder state --------------------------------------------------------- */

/* One TimeSeries as parsed: ranges into the label and sample arenas. Indices,
 * not pointers, because the arenas may move while the request is parsed. */
typedef struct {
    uint32_t lab_off, nlab; /* stored labels (at most max_labels_per_series) */
    uint32_t nlab_wire;     /* labels on the wire */
    uint32_t smp_off, nsmp;
    uint32_t nhist;
    uint32_t index; /* position in the request */
    rw_reason_t reason;
    tsdb_str_t bad; /* offending label name */
} rw_srec_t;

struct rw_decoder {
    rw_options_t o;
    uint8_t *body; /* decompressed protobuf */
    size_t body_cap;
    tsdb_label_t *lab;
    size_t lab_n, lab_cap;
    tsdb_sample_t *smp;
    size_t smp_n, smp_cap;
    rw_srec_t *srec;
    size_t srec_n, srec_cap;
    tsdb_str_t *sym; /* 2.0 symbol table */
    size_t sym_n, sym_cap;
    tsdb_series_in_t *out;
    size_t out_cap;
    uint32_t *out_idx;
    size_t out_idx_cap;
    rw_reject_t *rej;
    size_t rej_cap;
    rw_request_t req;    /* counters of the request being decoded */
    const uint8_t *base; /* start of the protobuf body, for error offsets */
    uint64_t allocs, requests;
    size_t erroff;
    char err[256];
};

static int rw_fail(rw_decoder_t *d, int code, const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int rw_fail(rw_decoder_t *d, int code, const uint8_t *at, const char *fmt, ...)
{
    va_list ap;
    size_t n = 0;
    d->erroff = at && d->base ? (size_t)(at - d->base) : 0;
    if (at && d->base) {
        int k = snprintf(d->err, sizeof d->err, "offset %zu: ", d->erroff);
        n = k > 0 ? (size_t)k : 0;
        if (n >= sizeof d->err) n = sizeof d->err - 1;
    }
    va_start(ap, fmt);
    vsnprintf(d->err + n, sizeof d->err - n, fmt, ap);
    va_end(ap);
    return code;
}

/* Grow an arena to hold `need` elements. Returns the new block, or NULL
 * (old block untouched) on overflow or allocation failure. */
static void *arena_grow(rw_decoder_t *d, void *p, size_t *cap, size_t need, size_t elsz)
{
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 4 / elsz) return NULL;
        nc *= 2;
    }
    void *np = realloc(p, nc * elsz);
    if (!np) return NULL;
    *cap = nc;
    d->allocs++;
    return np;
}

#define ARENA_RESERVE(d, arr, cap, need)                                                           \
    do {                                                                                           \
        if ((need) > (cap)) {                                                                      \
            void *np_ = arena_grow((d), (arr), &(cap), (need), sizeof *(arr));                     \
            if (!np_) return rw_fail((d), RW_ENOMEM, NULL, "out of memory");                       \
            (arr) = np_;                                                                           \
        }                                                                                          \
    } while (0)

int rw_decoder_create(const rw_options_t *opts, rw_decoder_t **out)
{
    if (!out) return RW_EINVAL;
    *out = NULL;
    rw_decoder_t *d = calloc(1, sizeof *d);
    if (!d) return RW_ENOMEM;
    rw_options_t def;
    rw_options_init(&def);
    if (opts) {
        d->o = *opts;
        if (!d->o.max_body_bytes) d->o.max_body_bytes = def.max_body_bytes;
        if (!d->o.max_series) d->o.max_series = def.max_series;
        if (!d->o.max_samples) d->o.max_samples = def.max_samples;
        if (!d->o.max_labels_total) d->o.max_labels_total = def.max_labels_total;
        if (!d->o.max_symbols) d->o.max_symbols = def.max_symbols;
        if (!d->o.max_labels_per_series) d->o.max_labels_per_series = def.max_labels_per_series;
        if (!d->o.max_label_name_len) d->o.max_label_name_len = def.max_label_name_len;
        if (!d->o.max_label_value_len) d->o.max_label_value_len = def.max_label_value_len;
    } else {
        d->o = def;
    }
    /* Offsets and string lengths are 32-bit (tsdb_str_t). */
    if (d->o.max_body_bytes > UINT32_MAX) d->o.max_body_bytes = UINT32_MAX;
    *out = d;
    return 0;
}

void rw_decoder_destroy(rw_decoder_t *d)
{
    if (!d) return;
    free(d->body);
    free(d->lab);
    free(d->smp);
    free(d->srec);
    free(d->sym);
    free(d->out);
    free(d->out_idx);
    free(d->rej);
    free(d);
}

const char *rw_decoder_errmsg(const rw_decoder_t *d, size_t *offset)
{
    if (offset) *offset = d ? d->erroff : 0;
    return d ? d->err : "";
}

void rw_decoder_stats(const rw_decoder_t *d, rw_decoder_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (!d) return;
    st->allocs = d->allocs;
    st->requests = d->requests;
    st->bytes_held = d->body_cap + d->lab_cap * sizeof *d->lab + d->smp_cap * sizeof *d->smp +
                     d->srec_cap * sizeof *d->srec + d->sym_cap * sizeof *d->sym +
                     d->out_cap * sizeof *d->out + d->out_idx_cap * sizeof *d->out_idx +
                     d->rej_cap * sizeof *d->rej;
}

/* ---- snappy ----------------------------------------------------------------- */

int rw_decoder_uncompress(rw_decoder_t *d, const void *src, size_t len, const uint8_t **out,
                          size_t *outlen)
{
    if (!d || !out || !outlen || (!src && len)) return RW_EINVAL;
    d->err[0] = 0;
    d->erroff = 0;
    d->base = NULL;
    size_t ulen = 0;
    if (!len || snappy_uncompressed_length(src, len, &ulen) != SNAPPY_OK)
        return rw_fail(d, RW_ESNAPPY, NULL, "snappy: unreadable uncompressed-length preamble");
    if (ulen > d->o.max_body_bytes)
        return rw_fail(d, RW_ETOOLARGE, NULL,
                       "snappy: declared uncompressed length %zu exceeds the limit of %zu bytes",
                       ulen, d->o.max_body_bytes);
    size_t need = ulen ? ulen : 1;
    if (need > d->body_cap) {
        /* No realloc: the old contents are not needed. */
        uint8_t *nb = malloc(need);
        if (!nb) return rw_fail(d, RW_ENOMEM, NULL, "out of memory (%zu byte body)", need);
        free(d->body);
        d->body = nb;
        d->body_cap = need;
        d->allocs++;
    }
    size_t got = ulen;
    if (snappy_uncompress(src, len, (char *)d->body, &got) != SNAPPY_OK || got != ulen)
        return rw_fail(d, RW_ESNAPPY, NULL, "snappy: corrupt block (declared %zu bytes)", ulen);
    *out = d->body;
    *outlen = ulen;
    return 0;
}

/* ---- protobuf primitives ----------------------------------------------------- */

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_SGROUP = 3, PB_EGROUP = 4, PB_I32 = 5 };

/* Returns 0, -1 if truncated, -2 if longer than 10 bytes or over 64 bits. */
static inline int pb_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (p >= end) return -1;
        uint8_t c = *p++;
        if (i == 9 && c > 1) return -2;
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    return -2;
}

static int pb_varint_fail(rw_decoder_t *d, int r, const uint8_t *at, const char *msg,
                          const char *what)
{
    return rw_fail(d, RW_EPROTO, at, "%s: %s %s", msg, what,
                   r == -1 ? "varint truncated" : "varint longer than 10 bytes");
}

static const char *const pb_wt_name[8] = {"VARINT", "I64", "LEN",       "SGROUP",
                                          "EGROUP", "I32", "invalid 6", "invalid 7"};

/* Read a tag. Refuses field number 0, numbers over 2^29-1, groups and the
 * undefined wire types 6/7. */
static int pb_tag_slow(rw_decoder_t *d, const uint8_t **pp, const uint8_t *end, uint32_t *field,
                       unsigned *wt, const char *msg)
{
    const uint8_t *at = *pp;
    uint64_t t;
    int r = pb_varint(pp, end, &t);
    if (r) return pb_varint_fail(d, r, at, msg, "tag");
    if (t > UINT32_MAX)
        return rw_fail(d, RW_EPROTO, at, "%s: field number %llu too large", msg,
                       (unsigned long long)(t >> 3));
    *field = (uint32_t)(t >> 3);
    *wt = (unsigned)(t & 7);
    if (*field == 0) return rw_fail(d, RW_EPROTO, at, "%s: field number 0", msg);
    if (*wt == PB_SGROUP || *wt == PB_EGROUP)
        return rw_fail(d, RW_EPROTO, at, "%s: field %u: groups are not supported", msg, *field);
    if (*wt > PB_I32)
        return rw_fail(d, RW_EPROTO, at, "%s: field %u: invalid wire type %u", msg, *field, *wt);
    return 0;
}

/* The common case inline: a one-byte tag (fields 1..15) of a valid wire
 * type (bit set in 0x27: VARINT, I64, LEN, I32). Callers have p < end. */
static inline int pb_tag(rw_decoder_t *d, const uint8_t **pp, const uint8_t *end, uint32_t *field,
                         unsigned *wt, const char *msg)
{
    uint8_t c = **pp;
    if (c < 0x80 && c >= 8 && ((0x27u >> (c & 7)) & 1)) {
        *field = c >> 3;
        *wt = c & 7;
        *pp += 1;
        return 0;
    }
    return pb_tag_slow(d, pp, end, field, wt, msg);
}

/* Read a LEN payload's length; *sub_end ends it and *pp moves past. */
static inline int pb_len(rw_decoder_t *d, const uint8_t **pp, const uint8_t *end,
                         const uint8_t **sub_end, const char *msg, uint32_t field)
{
    const uint8_t *at = *pp;
    uint64_t n;
    int r = pb_varint(pp, end, &n);
    if (r) return pb_varint_fail(d, r, at, msg, "length");
    if (n > (uint64_t)(end - *pp))
        return rw_fail(d, RW_EPROTO, at,
                       "%s: field %u: length %llu runs past the end (%zu bytes left)", msg, field,
                       (unsigned long long)n, (size_t)(end - *pp));
    *sub_end = *pp + n;
    return 0;
}

static int pb_skip(rw_decoder_t *d, const uint8_t **pp, const uint8_t *end, unsigned wt,
                   uint32_t field, const char *msg)
{
    const uint8_t *at = *pp;
    uint64_t v;
    const uint8_t *se = NULL;
    int r;
    switch (wt) {
    case PB_VARINT:
        r = pb_varint(pp, end, &v);
        return r ? pb_varint_fail(d, r, at, msg, "unknown field") : 0;
    case PB_I64:
        if (end - *pp < 8)
            return rw_fail(d, RW_EPROTO, at, "%s: field %u: I64 truncated", msg, field);
        *pp += 8;
        return 0;
    case PB_I32:
        if (end - *pp < 4)
            return rw_fail(d, RW_EPROTO, at, "%s: field %u: I32 truncated", msg, field);
        *pp += 4;
        return 0;
    case PB_LEN:
        r = pb_len(d, pp, end, &se, msg, field);
        if (r) return r;
        *pp = se;
        return 0;
    }
    return rw_fail(d, RW_EPROTO, at, "%s: field %u: cannot skip wire type %u", msg, field, wt);
}

static int pb_wrong_type(rw_decoder_t *d, const uint8_t *at, const char *msg, uint32_t field,
                         unsigned wt)
{
    return rw_fail(d, RW_EPROTO, at, "%s: field %u has wire type %s, which it cannot have", msg,
                   field, pb_wt_name[wt & 7]);
}

/* Shorthand for the parse loops: `at` is the tag's position. */
#define PB_TAG(d, p, end, field, wt, msg)                                                          \
    do {                                                                                           \
        int r_ = pb_tag((d), &(p), (end), &(field), &(wt), (msg));                                 \
        if (r_) return r_;                                                                         \
    } while (0)
#define PB_EXPECT(d, at, wt, want, field, msg)                                                     \
    do {                                                                                           \
        if ((wt) != (want)) return pb_wrong_type((d), (at), (msg), (field), (wt));                 \
    } while (0)
#define PB_SKIP(d, p, end, wt, field, msg)                                                         \
    do {                                                                                           \
        int r_ = pb_skip((d), &(p), (end), (wt), (field), (msg));                                  \
        if (r_) return r_;                                                                         \
    } while (0)
#define PB_LENGTH(d, p, end, sub_end, msg, field)                                                  \
    do {                                                                                           \
        int r_ = pb_len((d), &(p), (end), &(sub_end), (msg), (field));                             \
        if (r_) return r_;                                                                         \
    } while (0)

static inline double rd_f64(const uint8_t *p)
{
    uint64_t u = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
                 (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
                 (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* ---- common message parts ------------------------------------------------------ */

/* Sample { double value = 1; int64 timestamp = 2; } — the same in 1.0 and 2.0. */
static int rw_sample_parse(rw_decoder_t *d, const uint8_t *p, const uint8_t *end, tsdb_sample_t *s)
{
    uint64_t ts = 0;
    /* Fast path: exactly "09 <8> 10 <varint>", as every sender writes it. */
    if (end - p >= 11 && p[0] == 0x09 && p[9] == 0x10) {
        const uint8_t *q = p + 10;
        if (pb_varint(&q, end, &ts) == 0 && q == end) {
            s->v = rd_f64(p + 1);
            s->t = (int64_t)ts;
            return 0;
        }
        ts = 0;
    }
    s->v = 0.0;
    while (p < end) {
        const uint8_t *at = p;
        uint32_t field = 0;
        unsigned wt = 0;
        PB_TAG(d, p, end, field, wt, "Sample");
        if (field == 1) {
            PB_EXPECT(d, at, wt, PB_I64, field, "Sample");
            if (end - p < 8) return rw_fail(d, RW_EPROTO, at, "Sample: value truncated");
            s->v = rd_f64(p);
            p += 8;
        } else if (field == 2) {
            PB_EXPECT(d, at, wt, PB_VARINT, field, "Sample");
            int r = pb_varint(&p, end, &ts);
            if (r) return pb_varint_fail(d, r, at, "Sample", "timestamp");
        } else {
            PB_SKIP(d, p, end, wt, field, "Sample");
        }
    }
    s->t = (int64_t)ts;
    return 0;
}

/* Start a series record. */
static int rw_series_begin(rw_decoder_t *d, const uint8_t *at, rw_srec_t **out)
{
    if (d->srec_n >= d->o.max_series)
        return rw_fail(d, RW_ELIMIT, at, "more than %u series in one request", d->o.max_series);
    ARENA_RESERVE(d, d->srec, d->srec_cap, d->srec_n + 1);
    rw_srec_t *s = &d->srec[d->srec_n];
    memset(s, 0, sizeof *s);
    s->index = (uint32_t)d->srec_n;
    s->lab_off = (uint32_t)d->lab_n;
    s->smp_off = (uint32_t)d->smp_n;
    d->srec_n++;
    *out = s;
    return 0;
}

/* The arena slot for the next label of series s (the last record), or
 * *slot = NULL past the per-series cap: such labels are parsed and counted,
 * not kept, and the series will be rejected. The caller fills the slot
 * directly (no label struct passed by value: store-forwarding stalls). */
static inline int rw_label_slot(rw_decoder_t *d, rw_srec_t *s, const uint8_t *at,
                                tsdb_label_t **slot)
{
    s->nlab_wire++;
    *slot = NULL;
    if (s->nlab >= d->o.max_labels_per_series) return 0;
    if (d->lab_n >= d->o.max_labels_total)
        return rw_fail(d, RW_ELIMIT, at, "more than %u labels in one request",
                       d->o.max_labels_total);
    ARENA_RESERVE(d, d->lab, d->lab_cap, d->lab_n + 1);
    *slot = &d->lab[d->lab_n++];
    s->nlab++;
    return 0;
}

static int rw_sample_push(rw_decoder_t *d, rw_srec_t *s, const uint8_t *at, const uint8_t *p,
                          const uint8_t *end)
{
    if (d->smp_n >= d->o.max_samples)
        return rw_fail(d, RW_ELIMIT, at, "more than %u samples in one request", d->o.max_samples);
    ARENA_RESERVE(d, d->smp, d->smp_cap, d->smp_n + 1);
    int r = rw_sample_parse(d, p, end, &d->smp[d->smp_n]);
    if (r) return r;
    d->smp_n++;
    s->nsmp++;
    return 0;
}

/* ---- validation --------------------------------------------------------------- */

/* Character classes of name bytes: 1 label-name first [a-zA-Z_], 2 label-name
 * rest [a-zA-Z0-9_], 4 metric-name first [a-zA-Z_:], 8 metric-name rest
 * [a-zA-Z0-9_:]. Bytes >= 0x80 are in no class. */
static const uint8_t rw_name_cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 20 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 12, 0,  0,  0,  0,  0,  /* 30 0-9 : */
    0,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 40 A-O */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 0,  0,  0,  0,  15, /* 50 P-Z _ */
    0,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 60 a-o */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 0,  0,  0,  0,  0,  /* 70 p-z */
};

#define RW_ONES UINT64_C(0x0101010101010101)
#define RW_HIGH UINT64_C(0x8080808080808080)

/* High bit of each byte of x (all bytes < 0x80) set iff lo <= byte <= hi. */
static inline uint64_t swar_range(uint64_t x, unsigned lo, unsigned hi)
{
    return (x + RW_ONES * (0x80 - lo)) & ~(x + RW_ONES * (0x7f - hi)) & RW_HIGH;
}

/* Eight bytes at a time (SWAR), the tail by table. `metric` admits ':'. */
static inline int name_valid(tsdb_str_t s, int metric)
{
    const uint8_t *p = (const uint8_t *)s.ptr;
    unsigned first = metric ? 4 : 1, rest = metric ? 8 : 2;
    uint32_t n = s.len, i = 0;
    if (!n || !(rw_name_cls[p[0]] & first)) return 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & RW_HIGH) return 0;
        uint64_t ok = swar_range(w, 0x30, metric ? 0x3a : 0x39) |  /* 0-9 (:) */
                      swar_range(w | RW_ONES * 0x20, 0x61, 0x7a) | /* A-Z a-z */
                      swar_range(w, 0x5f, 0x5f);                   /* _ */
        if (ok != RW_HIGH) return 0;
    }
    unsigned acc = rest;
    for (; i < n; i++)
        acc &= rw_name_cls[p[i]];
    return acc != 0;
}

/* [a-zA-Z_][a-zA-Z0-9_]* */
static int label_name_valid(tsdb_str_t s)
{
    return name_valid(s, 0);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static int metric_name_valid(tsdb_str_t s)
{
    return name_valid(s, 1);
}

/* UTF-8 as RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & UINT64_C(0x8080808080808080))) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c < 0xC2) return 0;
        if (c < 0xE0) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
            continue;
        }
        if (c < 0xF0) {
            if (n - i < 3) return 0;
            uint8_t c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && c1 < 0xA0) return 0;  /* overlong */
            if (c == 0xED && c1 >= 0xA0) return 0; /* surrogate */
            i += 3;
            continue;
        }
        if (c < 0xF5) {
            if (n - i < 4) return 0;
            uint8_t c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && c1 < 0x90) return 0;  /* overlong */
            if (c == 0xF4 && c1 >= 0x90) return 0; /* > U+10FFFF */
            i += 4;
            continue;
        }
        return 0;
    }
    return 1;
}

/* Label values are mostly short ASCII: OR the bytes together first. */
static inline int utf8_valid(const uint8_t *s, size_t n)
{
    uint8_t acc = 0;
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & UINT64_C(0x8080808080808080)) return utf8_check(s, n);
    }
    for (; i < n; i++)
        acc |= s[i];
    return acc < 0x80 ? 1 : utf8_check(s, n);
}

/* Byte-wise order (as memcmp, shorter first on a common prefix). Names
 * differ early: an inline loop beats a call to memcmp. */
static inline int str_cmp(tsdb_str_t a, tsdb_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    const uint8_t *x = (const uint8_t *)a.ptr, *y = (const uint8_t *)b.ptr;
    for (uint32_t i = 0; i < n; i++)
        if (x[i] != y[i]) return (int)x[i] - (int)y[i];
    return (a.len > b.len) - (a.len < b.len);
}

static inline int is_name_label(tsdb_str_t s)
{
    return s.len == 8 && memcmp(s.ptr, "__name__", 8) == 0;
}

static void label_sift(tsdb_label_t *l, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && str_cmp(l[child].name, l[child + 1].name) < 0) child++;
        if (str_cmp(l[root].name, l[child].name) >= 0) return;
        tsdb_label_t t = l[root];
        l[root] = l[child];
        l[child] = t;
        root = child;
    }
}

/* Sort by name without allocating (glibc qsort may malloc). */
static void labels_sort(tsdb_label_t *l, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            tsdb_label_t t = l[i];
            size_t j = i;
            while (j > 0 && str_cmp(l[j - 1].name, t.name) > 0) {
                l[j] = l[j - 1];
                j--;
            }
            l[j] = t;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        label_sift(l, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        tsdb_label_t t = l[0];
        l[0] = l[end];
        l[end] = t;
        label_sift(l, 0, end);
    }
}

/* Check one series (labels stored in the arena) and normalise it: drop
 * labels with empty values (Prometheus treats them as absent), sort. Sets
 * s->reason; nothing here fails the request. */
static void rw_series_validate(rw_decoder_t *d, rw_srec_t *s)
{
    tsdb_label_t *l = d->lab + s->lab_off;
    uint32_t n = s->nlab;
    if (s->nlab_wire > d->o.max_labels_per_series) {
        s->reason = RW_REASON_TOO_MANY_LABELS;
        return;
    }
    int drop = 0;
    for (uint32_t i = 0; i < n; i++) {
        rw_reason_t why = RW_REASON_NONE;
        if (l[i].name.len == 0)
            why = RW_REASON_EMPTY_LABEL_NAME;
        else if (l[i].name.len > d->o.max_label_name_len)
            why = RW_REASON_NAME_TOO_LONG;
        else if (!label_name_valid(l[i].name))
            why = RW_REASON_BAD_LABEL_NAME;
        else if (l[i].value.len > d->o.max_label_value_len)
            why = RW_REASON_VALUE_TOO_LONG;
        else if (!utf8_valid((const uint8_t *)l[i].value.ptr, l[i].value.len))
            why = RW_REASON_BAD_UTF8;
        if (why != RW_REASON_NONE) {
            s->reason = why;
            s->bad = l[i].name;
            return;
        }
        drop |= l[i].value.len == 0;
    }
    if (drop) {
        uint32_t w = 0;
        for (uint32_t i = 0; i < n; i++)
            if (l[i].value.len) l[w++] = l[i];
        n = s->nlab = w;
    }
    int sorted = 1;
    for (uint32_t i = 1; i < n; i++) {
        int c = str_cmp(l[i - 1].name, l[i].name);
        if (c > 0) {
            sorted = 0;
            break;
        }
        if (c == 0) {
            s->reason = RW_REASON_DUP_LABEL_NAME;
            s->bad = l[i].name;
            return;
        }
    }
    if (!sorted) {
        labels_sort(l, n);
        for (uint32_t i = 1; i < n; i++) {
            if (str_cmp(l[i - 1].name, l[i].name) == 0) {
                s->reason = RW_REASON_DUP_LABEL_NAME;
                s->bad = l[i].name;
                return;
            }
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (is_name_label(l[i].name)) {
            if (!metric_name_valid(l[i].value)) {
                s->reason = RW_REASON_BAD_METRIC_NAME;
                s->bad = l[i].name;
            }
            return;
        }
    }
    s->reason = RW_REASON_NO_NAME;
}

/* ---- remote write 1.0 ------------------------------------------------------------ */

/* Label { string name = 1; string value = 2; } */
static int rw1_label_parse(rw_decoder_t *d, const uint8_t *p, const uint8_t *end, tsdb_str_t *name,
                           tsdb_str_t *value)
{
    name->ptr = value->ptr = (const char *)p; /* empty, but never NULL */
    name->len = value->len = 0;
    /* Fast path: "0a <n> name 12 <m> value" with one-byte lengths. */
    size_t left = (size_t)(end - p);
    if (left >= 4 && p[0] == 0x0a && p[1] < 0x80 && p[1] <= left - 4) {
        const uint8_t *q = p + 2 + p[1];
        if (q[0] == 0x12 && q[1] < 0x80 && (size_t)q[1] == (size_t)(end - q) - 2) {
            name->ptr = (const char *)p + 2;
            name->len = p[1];
            value->ptr = (const char *)q + 2;
            value->len = q[1];
            return 0;
        }
    }
    while (p < end) {
        const uint8_t *at = p;
        uint32_t field = 0;
        unsigned wt = 0;
        PB_TAG(d, p, end, field, wt, "Label");
        if (field == 1 || field == 2) {
            const uint8_t *se = NULL;
            PB_EXPECT(d, at, wt, PB_LEN, field, "Label");
            PB_LENGTH(d, p, end, se, "Label", field);
            tsdb_str_t *dst = field == 1 ? name : value;
            dst->ptr = (const char *)p;
            dst->len = (uint32_t)(se - p);
            p = se;
        } else {
            PB_SKIP(d, p, end, wt, field, "Label");
        }
    }
    return 0;
}

static int rw1_series_parse(rw_decoder_t *d, const uint8_t *at0, const uint8_t *p,
                            const uint8_t *end)
{
    rw_srec_t *s;
    int r = rw_series_begin(d, at0, &s);
    if (r) return r;
    while (p < end) {
        const uint8_t *at = p, *se = NULL;
        uint32_t field = 0;
        unsigned wt = 0;
        PB_TAG(d, p, end, field, wt, "TimeSeries");
        switch (field) {
        case 1: {
            tsdb_label_t spare, *l;
            PB_EXPECT(d, at, wt, PB_LEN, field, "TimeSeries");
            PB_LENGTH(d, p, end, se, "TimeSeries", field);
            if ((r = rw_label_slot(d, s, at, &l))) return r;
            if (!l) l = &spare;
            if ((r = rw1_label_parse(d, p, se, &l->name, &l->value))) return r;
            p = se;
            break;
        }
        case 2:
            PB_EXPECT(d, at, wt, PB_LEN, field, "TimeSeries");
            PB_LENGTH(d, p, end, se, "TimeSeries", field);
            if ((r = rw_sample_push(d, s, at, p, se))) return r;
            p = se;
            break;
        case 3: /* exemplars */
        case 4: /* native histograms */
            PB_EXPECT(d, at, wt, PB_LEN, field, "TimeSeries");
            PB_LENGTH(d, p, end, se, "TimeSeries", field);
            if (field == 3) {
                d->req.nexemplars++;
            } else {
                d->req.nhistograms++;
                s->nhist++;
            }
            p = se;
            break;
        default:
            PB_SKIP(d, p, end, wt, field, "TimeSeries");
        }
    }
    rw_series_validate(d, s);
    return 0;
}

/* MetricMetadata { MetricType type = 1; string metric_family_name = 4;
 * string help = 5; string unit = 6; } — checked for form, then ignored. */
static int rw1_metadata_parse(rw_decoder_t *d, const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        const uint8_t *at = p, *se = NULL;
        uint32_t field = 0;
        unsigned wt = 0;
        uint64_t v;
        PB_TAG(d, p, end, field, wt, "MetricMetadata");
        if (field == 1) {
            PB_EXPECT(d, at, wt, PB_VARINT, field, "MetricMetadata");
            int r = pb_varint(&p, end, &v);
            if (r) return pb_varint_fail(d, r, at, "MetricMetadata", "type");
        } else if (field == 4 || field == 5 || field == 6) {
            PB_EXPECT(d, at, wt, PB_LEN, field, "MetricMetadata");
            PB_LENGTH(d, p, end, se, "MetricMetadata", field);
            p = se;
        } else {
            PB_SKIP(d, p, end, wt, field, "MetricMetadata");
        }
    }
    d->req.nmetadata++;
    return 0;
}

static int rw1_parse(rw_decoder_t *d, const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        const uint8_t *at = p, *se = NULL;
        uint32_t field = 0;
        unsigned wt = 0;
        int r;
        PB_TAG(d, p, end, field, wt, "WriteRequest");
        if (field == 1 || field == 3) {
            PB_EXPECT(d, at, wt, PB_LEN, field, "WriteRequest");
            PB_LENGTH(d, p, end, se, "WriteRequest", field);
            r = field == 1 ? rw1_series_parse(d, at, p, se) : rw1_metadata_parse(d, p, se);
            if (r) return r;
            p = se;
        } else {
            PB_SKIP(d, p, end, wt, field, "WriteRequest");
        }
    }
    return 0;
}

/* ---- remote write 2.0 ------------------------------------------------------------ */

static inline int rw2_ref(rw_decoder_t *d, const uint8_t *at, uint64_t ref, const char *what)
{
    if (ref >= d->sym_n)
        return rw_fail(d, RW_EREF, at, "%s: symbol reference %llu out of range (%zu symbols)", what,
                       (unsigned long long)ref, d->sym_n);
    return 0;
}

/* One label reference; every second one completes a label. */
static inline int rw2_label_ref(rw_decoder_t *d, rw_srec_t *s, const uint8_t *at, uint64_t ref,
                                uint64_t *pending, int *have)
{
    int r = rw2_ref(d, at, ref, "TimeSeries.labels_refs");
    if (r) return r;
    if (!*have) {
        *pending = ref;
        *have = 1;
        return 0;
    }
    *have = 0;
    tsdb_label_t *l;
    if ((r = rw_label_slot(d, s, at, &l))) return r;
    if (l) {
        l->name = d->sym[*pending];
        l->value = d->sym[ref];
    }
    return 0;
}

/* Metadata { MetricType type = 1; uint32 help_ref = 3; uint32 unit_ref = 4; } */
static int rw2_metadata_parse(rw_decoder_t *d, const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        const uint8_t *at = p;
        uint32_t field = 0;
        unsigned wt = 0;
        uint64_t v;
        PB_TAG(d, p, end, field, wt, "Metadata");
        if (field == 1 || field == 3 || field == 4) {
            PB_EXPECT(d, at, wt, PB_VARINT, field, "Metadata");
            int r = pb_varint(&p, end, &v);
            if (r) return pb_varint_fail(d, r, at, "Metadata", "field");
            if (field != 1 &&
                (r = rw2_ref(d, at, v, field == 3 ? "Metadata.help_ref" : "Metadata.unit_ref")))
                return r;
        } else {
            PB_SKIP(d, p, end, wt, field, "Metadata");
        }
    }
    return 0;
}

static int rw2_series_parse(rw_decoder_t *d, const uint8_t *at0, const uint8_t *p,
                            const uint8_t *end)
{
    rw_srec_t *s;
    uint64_t pending = 0, v;
    int have = 0, meta = 0;
    int r = rw_series_begin(d, at0, &s);
    if (r) return r;
    while (p < end) {
        const uint8_t *at = p, *se = NULL;
        uint32_t field = 0;
        unsigned wt = 0;
        PB_TAG(d, p, end, field, wt, "TimeSeries");
        switch (field) {
        case 1: /* labels_refs: packed, or (legal too) one varint per element */
            if (wt == PB_LEN) {
                PB_LENGTH(d, p, end, se, "TimeSeries", field);
                while (p < se) {
                    const uint8_t *vat = p;
                    if ((r = pb_varint(&p, se, &v)))
                        return pb_varint_fail(d, r, vat, "TimeSeries", "labels_refs");
                    if ((r = rw2_label_ref(d, s, vat, v, &pending, &have))) return r;
                }
            } else if (wt == PB_VARINT) {
                if ((r = pb_varint(&p, end, &v)))
                    return pb_varint_fail(d, r, at, "TimeSeries", "labels_refs");
                if ((r = rw2_label_ref(d, s, at, v, &pending, &have))) return r;
            } else {
                return pb_wrong_type(d, at, "TimeSeries", field, wt);
            }
            break;
        case 2:
            PB_EXPECT(d, at, wt, PB_LEN, field, "TimeSeries");
            PB_LENGTH(d, p, end, se, "TimeSeries", field);
            if ((r = rw_sample_push(d, s, at, p, se))) return r;
            p = se;
            break;
        case 3: /* native histograms */
        case 4: /* exemplars */
            PB_EXPECT(d, at, wt, PB_LEN, field, "TimeSeries");
            PB_LENGTH(d, p, end, se, "TimeSeries", field);
            if (field == 3) {
                d->req.nhistograms++;
                s->nhist++;
            } else {
                d->req.nexemplars++;
            }
            p = se;
            break;
        case 5:
            PB_EXPECT(d, at, wt, PB_LEN, field, "TimeSeries");
            PB_LENGTH(d, p, end, se, "TimeSeries", field);
            if ((r = rw2_metadata_parse(d, p, se))) return r;
            meta = 1;
            p = se;
            break;
        case 6: /* created_timestamp */
            PB_EXPECT(d, at, wt, PB_VARINT, field, "TimeSeries");
            if ((r = pb_varint(&p, end, &v)))
                return pb_varint_fail(d, r, at, "TimeSeries", "created_timestamp");
            break;
        default:
            PB_SKIP(d, p, end, wt, field, "TimeSeries");
        }
    }
    if (have) return rw_fail(d, RW_EREF, at0, "TimeSeries %u: odd number of labels_refs", s->index);
    d->req.nmetadata += (uint64_t)meta;
    rw_series_validate(d, s);
    return 0;
}

static int rw2_parse(rw_decoder_t *d, const uint8_t *p0, const uint8_t *end)
{
    /* Pass 1: the symbol table (it may follow the series on the wire), and
     * the series count, so that limits fail before any series work. */
    const uint8_t *p = p0;
    size_t nts = 0;
    while (p < end) {
        const uint8_t *at = p, *se = NULL;
        uint32_t field = 0;
        unsigned wt = 0;
        PB_TAG(d, p, end, field, wt, "Request");
        if (field == 4 || field == 5) {
            PB_EXPECT(d, at, wt, PB_LEN, field, "Request");
            PB_LENGTH(d, p, end, se, "Request", field);
            if (field == 4) {
                if (d->sym_n >= d->o.max_symbols)
                    return rw_fail(d, RW_ELIMIT, at, "more than %u symbols in one request",
                                   d->o.max_symbols);
                ARENA_RESERVE(d, d->sym, d->sym_cap, d->sym_n + 1);
                d->sym[d->sym_n].ptr = (const char *)p;
                d->sym[d->sym_n].len = (uint32_t)(se - p);
                d->sym_n++;
            } else if (++nts > d->o.max_series) {
                return rw_fail(d, RW_ELIMIT, at, "more than %u series in one request",
                               d->o.max_series);
            }
            p = se;
        } else {
            PB_SKIP(d, p, end, wt, field, "Request");
        }
    }
    if (d->sym_n && d->sym[0].len != 0)
        return rw_fail(d, RW_EREF, NULL, "symbols[0] must be the empty string");
    /* Pass 2: the series. The structure was checked in pass 1. */
    p = p0;
    while (p < end) {
        const uint8_t *at = p, *se = NULL;
        uint32_t field = 0;
        unsigned wt = 0;
        PB_TAG(d, p, end, field, wt, "Request");
        if (field == 5) {
            PB_LENGTH(d, p, end, se, "Request", field);
            int r = rw2_series_parse(d, at, p, se);
            if (r) return r;
            p = se;
        } else {
            PB_SKIP(d, p, end, wt, field, "Request");
        }
    }
    return 0;
}

/* ---- driver ------------------------------------------------------------------------ */

/* Turn series records into the output arrays. Cannot fail once reserved. */
static int rw_finish(rw_decoder_t *d, rw_request_t *out)
{
    size_t n = d->srec_n;
    ARENA_RESERVE(d, d->out, d->out_cap, n ? n : 1);
    ARENA_RESERVE(d, d->out_idx, d->out_idx_cap, n ? n : 1);
    ARENA_RESERVE(d, d->rej, d->rej_cap, n ? n : 1);
    rw_request_t *q = &d->req;
    size_t no = 0, nr = 0;
    for (size_t i = 0; i < n; i++) {
        const rw_srec_t *s = &d->srec[i];
        if (s->reason != RW_REASON_NONE) {
            rw_reject_t *j = &d->rej[nr++];
            j->index = s->index;
            j->reason = s->reason;
            j->label = s->bad;
            j->labels = d->lab + s->lab_off;
            j->nlabels = s->nlab;
            j->nsamples = s->nsmp;
            q->nsamples_rejected += s->nsmp;
        } else if (s->nsmp) {
            tsdb_series_in_t *o = &d->out[no];
            o->labels = d->lab + s->lab_off;
            o->nlabels = s->nlab;
            o->samples = d->smp + s->smp_off;
            o->nsamples = s->nsmp;
            d->out_idx[no++] = s->index;
            q->nsamples += s->nsmp;
        } else if (s->nhist) {
            q->nseries_histogram_only++;
        }
    }
    q->series = d->out;
    q->nseries = no;
    q->series_index = d->out_idx;
    q->rejects = d->rej;
    q->nrejects = nr;
    q->nseries_wire = n;
    *out = *q;
    return 0;
}

static int rw_decode(rw_decoder_t *d, const void *body, size_t len, rw_encoding_t enc,
                     rw_request_t *out, int version)
{
    static const uint8_t empty[1];
    if (out) memset(out, 0, sizeof *out);
    if (!d || !out || (!body && len))
        return d ? rw_fail(d, RW_EINVAL, NULL, "bad argument") : RW_EINVAL;
    d->lab_n = d->smp_n = d->srec_n = d->sym_n = 0;
    memset(&d->req, 0, sizeof d->req);
    d->err[0] = 0;
    d->erroff = 0;
    d->base = NULL;
    const uint8_t *pb;
    size_t pblen;
    int r;
    if (enc == RW_ENC_SNAPPY) {
        if ((r = rw_decoder_uncompress(d, body, len, &pb, &pblen))) return r;
    } else if (enc == RW_ENC_IDENTITY) {
        if (len > d->o.max_body_bytes)
            return rw_fail(d, RW_ETOOLARGE, NULL, "body of %zu bytes exceeds the limit of %zu", len,
                           d->o.max_body_bytes);
        pb = body ? body : empty;
        pblen = len;
    } else {
        return rw_fail(d, RW_EINVAL, NULL, "unknown encoding %d", (int)enc);
    }
    /* Arenas exist before any pointer arithmetic on them (NULL + 0 is UB). */
    ARENA_RESERVE(d, d->lab, d->lab_cap, 1);
    ARENA_RESERVE(d, d->smp, d->smp_cap, 1);
    d->base = pb;
    r = version == 1 ? rw1_parse(d, pb, pb + pblen) : rw2_parse(d, pb, pb + pblen);
    if (!r) r = rw_finish(d, out);
    if (r) {
        memset(out, 0, sizeof *out);
        return r;
    }
    out->body_bytes = pblen;
    d->requests++;
    return 0;
}

int rw_decode_v1(rw_decoder_t *d, const void *body, size_t len, rw_encoding_t enc,
                 rw_request_t *out)
{
    return rw_decode(d, body, len, enc, out, 1);
}

int rw_decode_v2(rw_decoder_t *d, const void *body, size_t len, rw_encoding_t enc,
                 rw_request_t *out)
{
    return rw_decode(d, body, len, enc, out, 2);
}

/* ---- reporting ------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t cap, len;
    int full;
} rw_w_t;

static void w_putc(rw_w_t *w, char c)
{
    if (w->full) return;
    if (w->len + 1 >= w->cap) {
        w->full = 1;
        return;
    }
    w->buf[w->len++] = c;
}

static void w_puts(rw_w_t *w, const char *s)
{
    while (*s)
        w_putc(w, *s++);
}

/* Quoted, escaped: \\ \" \n, other control and non-UTF-8 bytes as \xHH. */
static void w_quoted(rw_w_t *w, tsdb_str_t s)
{
    static const char hex[] = "0123456789abcdef";
    int ok = utf8_valid((const uint8_t *)s.ptr, s.len);
    w_putc(w, '"');
    for (uint32_t i = 0; i < s.len && !w->full; i++) {
        uint8_t c = (uint8_t)s.ptr[i];
        if (c == '\\' || c == '"') {
            w_putc(w, '\\');
            w_putc(w, (char)c);
        } else if (c == '\n') {
            w_puts(w, "\\n");
        } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !ok)) {
            w_puts(w, "\\x");
            w_putc(w, hex[c >> 4]);
            w_putc(w, hex[c & 15]);
        } else {
            w_putc(w, (char)c);
        }
    }
    w_putc(w, '"');
}

size_t rw_reject_format(const rw_reject_t *r, char *buf, size_t cap)
{
    if (!buf || !cap) return 0;
    rw_w_t w = {buf, cap, 0, 0};
    char num[32];
    buf[0] = 0;
    if (!r) return 0;
    snprintf(num, sizeof num, "series %u {", r->index);
    w_puts(&w, num);
    for (uint32_t i = 0; i < r->nlabels && !w.full; i++) {
        if (i) w_puts(&w, ", ");
        /* Valid names print bare; anything else quoted. */
        if (label_name_valid(r->labels[i].name)) {
            for (uint32_t k = 0; k < r->labels[i].name.len; k++)
                w_putc(&w, r->labels[i].name.ptr[k]);
        } else {
            w_quoted(&w, r->labels[i].name);
        }
        w_putc(&w, '=');
        w_quoted(&w, r->labels[i].value);
    }
    w_puts(&w, "}: ");
    w_puts(&w, rw_reason_str(r->reason));
    if (r->label.len || r->reason == RW_REASON_EMPTY_LABEL_NAME) {
        w_puts(&w, " (label ");
        w_quoted(&w, r->label);
        w_putc(&w, ')');
    }
    if (w.full && cap >= 4) {
        size_t at = w.len < cap - 4 ? w.len : cap - 4;
        memcpy(buf + at, "...", 3);
        w.len = at + 3;
    }
    buf[w.len] = 0;
    return w.len;
}
