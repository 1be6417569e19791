/*
 * labels.c — canonical label sets: validation, sorting, serialization and
 * the 128-bit fingerprint that maps a label set to its series.
 *
 * Serialization (used in the WAL and for series not yet in the index):
 *   varint n | n x ( varint name_len | name | varint value_len | value )
 * with labels sorted by name (bytewise).
 *
 * Fingerprint: XXH3-128 over the serialization. Two different label sets
 * collide with probability ~2^-128 per pair; the store relies on it (as
 * other TSDBs rely on 64-bit fingerprints plus a check) and documents it
 * in docs/storage-format.md.
 */
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "tsdb/tsdb_int.h"

#define LABELS_MAX 1024

static int str_cmp(tsdb_str_t a, tsdb_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return (a.len > b.len) - (a.len < b.len);
}

int labels_canonical(const tsdb_label_t *in, size_t n, tsdb_label_t *out)
{
    if (n == 0) {
        tsdb_set_detail("series has no labels");
        return TSDB_EINVAL;
    }
    if (n > LABELS_MAX) {
        tsdb_set_detail("series has %zu labels (max %d)", n, LABELS_MAX);
        return TSDB_EINVAL;
    }
    int sorted = 1;
    for (size_t i = 0; i < n; i++) {
        out[i] = in[i];
        if (i && str_cmp(in[i - 1].name, in[i].name) >= 0) sorted = 0;
    }
    if (!sorted) { /* insertion sort: label sets are small */
        for (size_t i = 1; i < n; i++) {
            tsdb_label_t x = out[i];
            size_t j = i;
            while (j > 0 && str_cmp(out[j - 1].name, x.name) > 0) {
                out[j] = out[j - 1];
                j--;
            }
            out[j] = x;
        }
    }
    int has_name = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i].name.len == 0) {
            tsdb_set_detail("empty label name");
            return TSDB_EINVAL;
        }
        if (out[i].value.len == 0) {
            tsdb_set_detail("label %.*s has an empty value", (int)out[i].name.len, out[i].name.ptr);
            return TSDB_EINVAL;
        }
        if (memchr(out[i].name.ptr, 0, out[i].name.len) ||
            memchr(out[i].value.ptr, 0, out[i].value.len)) {
            tsdb_set_detail("label %.*s contains a NUL byte", (int)out[i].name.len,
                            out[i].name.ptr);
            return TSDB_EINVAL;
        }
        if (i && str_cmp(out[i - 1].name, out[i].name) == 0) {
            tsdb_set_detail("duplicate label name %.*s", (int)out[i].name.len, out[i].name.ptr);
            return TSDB_EINVAL;
        }
        if (out[i].name.len == 8 && !memcmp(out[i].name.ptr, "__name__", 8)) has_name = 1;
    }
    if (!has_name) {
        tsdb_set_detail("series has no __name__ label");
        return TSDB_EINVAL;
    }
    return 0;
}

int labels_serialize(const tsdb_label_t *l, size_t n, tbuf_t *out)
{
    if (tbuf_varint(out, n)) return TSDB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (tbuf_varint(out, l[i].name.len) || tbuf_put(out, l[i].name.ptr, l[i].name.len) ||
            tbuf_varint(out, l[i].value.len) || tbuf_put(out, l[i].value.ptr, l[i].value.len))
            return TSDB_ENOMEM;
    }
    return 0;
}

int labels_parse(const uint8_t *p, size_t len, idx_labels_t *out)
{
    const uint8_t *end = p + len;
    uint64_t n;
    out->n = 0;
    if (varint_get(&p, end, &n) || n > LABELS_MAX) return TSDB_ECORRUPT;
    if (out->cap < n) {
        tsdb_label_t *nv = realloc(out->v, n * sizeof *nv);
        if (!nv) return TSDB_ENOMEM;
        out->v = nv;
        out->cap = n;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a, b;
        if (varint_get(&p, end, &a) || a > (uint64_t)(end - p)) return TSDB_ECORRUPT;
        out->v[i].name.ptr = (const char *)p;
        out->v[i].name.len = (uint32_t)a;
        p += a;
        if (varint_get(&p, end, &b) || b > (uint64_t)(end - p)) return TSDB_ECORRUPT;
        out->v[i].value.ptr = (const char *)p;
        out->v[i].value.len = (uint32_t)b;
        p += b;
    }
    if (p != end) return TSDB_ECORRUPT;
    out->n = n;
    return 0;
}

void labels_hash(const tsdb_label_t *l, size_t n, uint64_t h[2])
{
    /* One-shot hash over a flat copy (lengths keep "ab"+"c" and "a"+"bc"
     * apart); streaming only for very large label sets. */
    uint8_t buf[2048];
    size_t need = 0;
    for (size_t i = 0; i < n; i++) need += 8 + (size_t)l[i].name.len + l[i].value.len;
    XXH128_hash_t r;
    if (need <= sizeof buf) {
        uint8_t *p = buf;
        for (size_t i = 0; i < n; i++) {
            le32_put(p, l[i].name.len);
            le32_put(p + 4, l[i].value.len);
            p += 8;
            memcpy(p, l[i].name.ptr, l[i].name.len);
            p += l[i].name.len;
            memcpy(p, l[i].value.ptr, l[i].value.len);
            p += l[i].value.len;
        }
        r = XXH3_128bits(buf, need);
    } else {
        XXH3_state_t st;
        XXH3_128bits_reset(&st);
        for (size_t i = 0; i < n; i++) {
            uint8_t lens[8];
            le32_put(lens, l[i].name.len);
            le32_put(lens + 4, l[i].value.len);
            XXH3_128bits_update(&st, lens, sizeof lens);
            XXH3_128bits_update(&st, l[i].name.ptr, l[i].name.len);
            XXH3_128bits_update(&st, l[i].value.ptr, l[i].value.len);
        }
        r = XXH3_128bits_digest(&st);
    }
    h[0] = r.low64;
    h[1] = r.high64;
}
