/* rw_encode.c — remote-write 1.0 encoder (see rw_encode.h). */
#include "ingest/rw_encode.h"

#include <snappy-c.h>
#include <string.h>

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t label_len(const tsdb_label_t *l)
{
    return 1 + varint_len(l->name.len) + l->name.len + 1 + varint_len(l->value.len) + l->value.len;
}

static size_t sample_len(const tsdb_sample_t *s)
{
    return 1 + 8 + (s->t ? 1 + varint_len((uint64_t)s->t) : 0);
}

static size_t series_len(const tsdb_series_in_t *s)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->nlabels; i++) {
        size_t l = label_len(&s->labels[i]);
        n += 1 + varint_len(l) + l;
    }
    for (uint32_t i = 0; i < s->nsamples; i++) {
        size_t l = sample_len(&s->samples[i]);
        n += 1 + varint_len(l) + l;
    }
    return n;
}

size_t rw_encode_v1_bound(const tsdb_series_in_t *series, size_t n)
{
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = series_len(&series[i]);
        b += 1 + varint_len(l) + l;
    }
    return b;
}

static int label_less(const tsdb_label_t *a, const tsdb_label_t *b)
{
    size_t m = a->name.len < b->name.len ? a->name.len : b->name.len;
    int c = memcmp(a->name.ptr, b->name.ptr, m);
    return c < 0 || (c == 0 && a->name.len < b->name.len);
}

int rw_encode_v1(const tsdb_series_in_t *series, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    if ((!series && n) || !out || !len) return RW_EINVAL;
    uint8_t *p = out, *end = out + cap;
    uint16_t ord[RW_ENCODE_MAX_LABELS];
    for (size_t i = 0; i < n; i++) {
        const tsdb_series_in_t *s = &series[i];
        if (s->nlabels > RW_ENCODE_MAX_LABELS) return RW_EINVAL;
        size_t sl = series_len(s);
        if ((size_t)(end - p) < 1 + varint_len(sl) + sl) return RW_EINVAL;
        *p++ = 0x0a;
        p = put_varint(p, sl);
        /* Insertion sort of label indices by name (series are small). */
        for (uint32_t k = 0; k < s->nlabels; k++) {
            uint32_t j = k;
            while (j > 0 && label_less(&s->labels[k], &s->labels[ord[j - 1]])) {
                ord[j] = ord[j - 1];
                j--;
            }
            ord[j] = (uint16_t)k;
        }
        for (uint32_t k = 0; k < s->nlabels; k++) {
            const tsdb_label_t *l = &s->labels[ord[k]];
            *p++ = 0x0a;
            p = put_varint(p, label_len(l));
            *p++ = 0x0a;
            p = put_varint(p, l->name.len);
            if (l->name.len) memcpy(p, l->name.ptr, l->name.len);
            p += l->name.len;
            *p++ = 0x12;
            p = put_varint(p, l->value.len);
            if (l->value.len) memcpy(p, l->value.ptr, l->value.len);
            p += l->value.len;
        }
        for (uint32_t k = 0; k < s->nsamples; k++) {
            const tsdb_sample_t *sm = &s->samples[k];
            *p++ = 0x12;
            p = put_varint(p, sample_len(sm));
            *p++ = 0x09;
            uint64_t bits;
            memcpy(&bits, &sm->v, 8);
            for (int b = 0; b < 8; b++)
                *p++ = (uint8_t)(bits >> (8 * b));
            if (sm->t) {
                *p++ = 0x10;
                p = put_varint(p, (uint64_t)sm->t);
            }
        }
    }
    *len = (size_t)(p - out);
    return 0;
}

size_t rw_snappy_bound(size_t n)
{
    return snappy_max_compressed_length(n);
}

int rw_snappy_compress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    if (!out || !len || cap < snappy_max_compressed_length(n)) return RW_EINVAL;
    size_t cl = cap;
    if (snappy_compress((const char *)in, n, (char *)out, &cl) != SNAPPY_OK) return RW_EINVAL;
    *len = cl;
    return 0;
}
