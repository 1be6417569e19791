/* headpack.h — the packed form of a series' head (samples not sealed yet).
 *
 * A head that only ever received samples in time order is kept packed: a
 * 32-byte header, then one entry per sample, so that a day-a-sample import
 * or a steady scrape costs 1-5 bytes a sample in memory instead of 16. Any
 * other use (an out-of-order sample, a flush that splits the head, a replay
 * that drops sealed samples) unpacks it into a plain tsdb_sample_t array
 * first; readers decode it into their own copy.
 *
 * Entry: a control byte c, then the time field, then the value field.
 *   c & 3 (time): 0 the interval repeats (t = prev + dt); 1 one byte, the
 *     change of the interval (int8); 2 four bytes, the change (int32 LE);
 *     3 eight bytes, t itself (LE). Intervals and changes are taken modulo
 *     2^64, so every int64 sequence encodes.
 *   c >> 2 (value, x = bits(v) XOR bits(previous v)): 63 x == 0; else
 *     8 * lzb + tzb, where lzb and tzb count the leading and trailing zero
 *     bytes of x (lzb + tzb <= 7), followed by its 8 - lzb - tzb middle
 *     bytes, least significant first.
 * The first entry always stores t whole (mode 3) and its value against
 * bits 0; the interval before the second entry counts as 0.
 *
 * Not a disk format: it lives only in memory (sealed blocks use codec.h).
 */
#ifndef AUGUR_TSDB_HEADPACK_H
#define AUGUR_TSDB_HEADPACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tsdb/tsdb.h"

typedef struct {
    int64_t last_t;      /* t of the last entry */
    int64_t last_dt;     /* its interval (mod 2^64) */
    uint64_t last_v;     /* bits of its value */
    uint32_t len;        /* bytes in use, header included */
    uint32_t last_off;   /* where the last entry starts (0: no entry, or not known) */
} headpack_hdr_t;

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "headpack copies value bytes LE");

#define HEADPACK_HDR ((uint32_t)sizeof(headpack_hdr_t))
#define HEADPACK_MAX_ENTRY 17u /* 1 + 8 + 8 */

static inline void headpack_init(uint8_t *p)
{
    headpack_hdr_t h = {0, 0, 0, HEADPACK_HDR, 0};
    memcpy(p, &h, sizeof h);
}

static inline uint32_t headpack_len(const uint8_t *p)
{
    uint32_t len;
    memcpy(&len, p + offsetof(headpack_hdr_t, len), 4);
    return len;
}

/* t of the last entry (meaningless before the first). */
static inline int64_t headpack_last_t(const uint8_t *p)
{
    int64_t t;
    memcpy(&t, p + offsetof(headpack_hdr_t, last_t), 8);
    return t;
}

/* t of the first entry (n >= 1: it stores t whole). */
static inline int64_t headpack_first_t(const uint8_t *p)
{
    int64_t t;
    memcpy(&t, p + HEADPACK_HDR + 1, 8);
    return t;
}

/* Append (t, v) to the entries of p, with the header state in *h instead
 * of p's own header (which is left as it is): a store that keeps that state
 * beside the series appends without touching the header's cache line, and
 * writes it back (memcpy to p) before anything else reads p. The buffer has
 * room for HEADPACK_MAX_ENTRY more bytes after h->len. first: no entry yet.
 * Returns the entry's size. */
static inline uint32_t headpack_put_h(uint8_t *p, headpack_hdr_t *h, int first, int64_t t, double v)
{
    uint8_t *o = p + h->len;
    uint64_t dt = (uint64_t)t - (uint64_t)h->last_t;
    int64_t dod = (int64_t)(dt - (uint64_t)h->last_dt);
    uint64_t vb;
    memcpy(&vb, &v, 8);
    uint64_t x = vb ^ h->last_v;
    uint32_t c, k = 1;
    if (first) {
        c = 3;
        uint64_t ut = (uint64_t)t;
        memcpy(o + 1, &ut, 8);
        k += 8;
    } else if (dod == 0) {
        c = 0;
    } else if (dod >= -128 && dod <= 127) {
        c = 1;
        o[1] = (uint8_t)(int8_t)dod;
        k += 1;
    } else if (dod >= INT32_MIN && dod <= INT32_MAX) {
        c = 2;
        uint32_t d32 = (uint32_t)(int32_t)dod;
        memcpy(o + 1, &d32, 4);
        k += 4;
    } else {
        c = 3;
        uint64_t ut = (uint64_t)t;
        memcpy(o + 1, &ut, 8);
        k += 8;
    }
    if (x == 0) {
        c |= 63u << 2;
    } else {
        uint32_t lzb = (uint32_t)__builtin_clzll(x) / 8, tzb = (uint32_t)__builtin_ctzll(x) / 8;
        uint32_t nb = 8 - lzb - tzb;
        c |= (8 * lzb + tzb) << 2;
        uint64_t mid = x >> (8 * tzb);
        memcpy(o + k, &mid, 8); /* little endian; the bytes past nb are overwritten later */
        k += nb;
    }
    o[0] = (uint8_t)c;
    h->last_off = h->len;
    h->len += k;
    h->last_dt = first ? 0 : (int64_t)dt; /* the first interval is the second entry's */
    h->last_t = t;
    h->last_v = vb;
    return k;
}

/* Append (t, v), header in p; the buffer has room for HEADPACK_MAX_ENTRY
 * more bytes. first: no entry yet. */
static inline void headpack_put(uint8_t *p, int first, int64_t t, double v)
{
    headpack_hdr_t h;
    memcpy(&h, p, sizeof h);
    headpack_put_h(p, &h, first, t, v);
    memcpy(p, &h, sizeof h);
}

/* A reader over the entries. */
typedef struct {
    const uint8_t *q, *end;
    uint64_t t, dt, vb;
    int first;
} headpack_rd_t;

static inline void headpack_rd_init(headpack_rd_t *r, const uint8_t *p)
{
    r->q = p + HEADPACK_HDR;
    r->end = p + headpack_len(p);
    r->t = r->dt = r->vb = 0;
    r->first = 1;
}

/* The fields of the entry at *qp (before end): *whole 1 with the time itself
 * in *tf, else 0 with the change of the interval in *tf; the value's XOR
 * with the previous one in *x. Advances *qp. -1 if the bytes run out. */
static inline int headpack_entry(const uint8_t **qp, const uint8_t *end, int *whole, uint64_t *tf,
                                 uint64_t *x)
{
    const uint8_t *q = *qp;
    if (q >= end) return -1;
    uint32_t c = *q++;
    *whole = 0;
    switch (c & 3) {
    case 0:
        *tf = 0;
        break;
    case 1:
        if (end - q < 1) return -1;
        *tf = (uint64_t)(int64_t)(int8_t)q[0];
        q += 1;
        break;
    case 2: {
        if (end - q < 4) return -1;
        uint32_t d32;
        memcpy(&d32, q, 4);
        *tf = (uint64_t)(int64_t)(int32_t)d32;
        q += 4;
        break;
    }
    default:
        if (end - q < 8) return -1;
        memcpy(tf, q, 8);
        q += 8;
        *whole = 1;
        break;
    }
    *x = 0;
    uint32_t vm = c >> 2;
    if (vm != 63) {
        uint32_t lzb = vm / 8, tzb = vm % 8;
        if (lzb + tzb > 7) return -1;
        uint32_t nb = 8 - lzb - tzb;
        if ((uint32_t)(end - q) < nb) return -1;
        uint64_t mid = 0;
        memcpy(&mid, q, nb);
        q += nb;
        *x = mid << (8 * tzb);
    }
    *qp = q;
    return 0;
}

/* The next entry into *t and *vb. Returns 0, or -1 if the bytes run out
 * (never for a buffer headpack_put wrote). */
static inline int headpack_next(headpack_rd_t *r, int64_t *t, uint64_t *vb)
{
    int whole;
    uint64_t tf, x;
    if (headpack_entry(&r->q, r->end, &whole, &tf, &x)) return -1;
    uint64_t nt = whole ? tf : r->t + r->dt + tf;
    r->dt = r->first ? 0 : nt - r->t;
    r->first = 0;
    r->t = nt;
    r->vb ^= x;
    *t = (int64_t)nt;
    *vb = r->vb;
    return 0;
}

/* Decode n entries into out[0..n). Returns 0 or -1 (see headpack_next). */
static inline int headpack_decode(const uint8_t *p, uint32_t n, tsdb_sample_t *out)
{
    headpack_rd_t r;
    headpack_rd_init(&r, p);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t vb;
        if (headpack_next(&r, &out[i].t, &vb)) return -1;
        memcpy(&out[i].v, &vb, 8);
    }
    return 0;
}

/* headpack_split's shortcut for the usual case at a partition boundary: only
 * the last entry is at or after cut. The state before it (its time, interval
 * and value) follows from the header and the last entry's own bytes, so no
 * entry is decoded. -1 (nothing changed) when that is not the case or cannot
 * be told that way: the last entry's start unknown, or its time stored whole
 * (the interval before it is not recorded then). The caller has n >= 2 and
 * cap >= HEADPACK_HDR + HEADPACK_MAX_ENTRY. */
static inline int headpack_split_last(uint8_t *p, int64_t cut, uint8_t **lo)
{
    headpack_hdr_t h;
    memcpy(&h, p, sizeof h);
    if (h.last_t < cut || h.last_off <= HEADPACK_HDR || h.last_off >= h.len) return -1;
    int64_t prev_t = (int64_t)((uint64_t)h.last_t - (uint64_t)h.last_dt);
    if (prev_t >= cut) return -1;
    const uint8_t *q = p + h.last_off;
    int whole;
    uint64_t dod, x;
    if (headpack_entry(&q, p + h.len, &whole, &dod, &x) || whole) return -1;
    uint8_t *b = (uint8_t *)malloc(h.last_off);
    if (!b) return -1;
    /* b: every entry but the last, with the state after the one before it */
    memcpy(b, p, h.last_off);
    headpack_hdr_t bh = h;
    bh.len = h.last_off;
    bh.last_off = 0; /* not known: a frozen part takes no more entries */
    bh.last_dt = (int64_t)((uint64_t)h.last_dt - dod);
    bh.last_t = prev_t;
    bh.last_v = h.last_v ^ x;
    memcpy(b, &bh, sizeof bh);
    /* p: the last entry alone */
    double v;
    memcpy(&v, &h.last_v, 8);
    headpack_init(p);
    headpack_put(p, 1, h.last_t, v);
    *lo = b;
    return 0;
}

/* Split the n entries of the buffer p (cap bytes) at time cut, p staying the
 * head: the entries before cut are copied to a new buffer *lo of exactly
 * their size (its header the state after the last of them; *nlo of them);
 * those at or after it are re-encoded at the front of p, which keeps its
 * size. The buffer the head grew in is kept, and only the part that is
 * sealed and freed soon is allocated: at a partition boundary of an import
 * every series splits, and a new buffer for each series' head would come
 * from fresh pages of the flushing thread's heap every time. Returns -1 and
 * changes nothing if either part would be empty, the re-encoded part would
 * not fit in cap, or memory is short. */
static inline int headpack_split(uint8_t *p, uint32_t n, uint32_t cap, int64_t cut, uint8_t **lo,
                                 uint32_t *nlo)
{
    *lo = NULL;
    *nlo = 0;
    if (cap < HEADPACK_HDR + HEADPACK_MAX_ENTRY) return -1;
    if (n >= 2 && headpack_split_last(p, cut, lo) == 0) {
        *nlo = n - 1;
        return 0;
    }
    headpack_rd_t r;
    headpack_rd_init(&r, p);
    uint32_t k = 0;
    const uint8_t *at = r.q; /* start of entry k */
    headpack_rd_t before = r;
    for (; k < n; k++) {
        int64_t t;
        uint64_t vb;
        before = r;
        at = r.q;
        if (headpack_next(&r, &t, &vb)) return -1; /* never: our own bytes */
        if (t >= cut) break;
    }
    if (k == 0 || k == n) return -1;
    /* entries k.. re-encoded aside first (they may grow: the first stores
     * its time and value whole, the second its interval) */
    uint32_t len = headpack_len(p), tail = (uint32_t)(p + len - at);
    uint32_t tcap = HEADPACK_HDR + tail + 2 * HEADPACK_MAX_ENTRY + 8;
    uint8_t stackbuf[512];
    uint8_t *t2 = tcap <= sizeof stackbuf ? stackbuf : (uint8_t *)malloc(tcap);
    if (!t2) return -1;
    headpack_init(t2);
    headpack_rd_t rr = before;
    for (uint32_t i = k; i < n; i++) {
        int64_t t;
        uint64_t vb;
        double v;
        if (headpack_next(&rr, &t, &vb)) break;
        memcpy(&v, &vb, 8);
        headpack_put(t2, i == k, t, v);
    }
    uint32_t hlen = headpack_len(t2), llen = (uint32_t)(at - p);
    uint8_t *b = hlen + HEADPACK_MAX_ENTRY <= cap ? (uint8_t *)malloc(llen) : NULL;
    if (!b) {
        if (t2 != stackbuf) free(t2);
        return -1;
    }
    /* b: entries ..k-1, with the reader's state before entry k */
    memcpy(b, p, llen);
    headpack_hdr_t h;
    memcpy(&h, p, sizeof h);
    h.len = llen;
    h.last_off = 0; /* not known (see headpack_split_last) */
    h.last_t = (int64_t)before.t;
    h.last_dt = (int64_t)before.dt;
    h.last_v = before.vb;
    memcpy(b, &h, sizeof h);
    memcpy(p, t2, hlen);
    if (t2 != stackbuf) free(t2);
    *lo = b;
    *nlo = k;
    return 0;
}

/* Index of the entry at t among n, or -1; *bits its value's bits. */
static inline long headpack_find(const uint8_t *p, uint32_t n, int64_t t, uint64_t *bits)
{
    if (!n || t < headpack_first_t(p) || t > headpack_last_t(p)) return -1;
    headpack_rd_t r;
    headpack_rd_init(&r, p);
    for (uint32_t i = 0; i < n; i++) {
        int64_t et;
        uint64_t vb;
        if (headpack_next(&r, &et, &vb)) return -1;
        if (et == t) {
            *bits = vb;
            return (long)i;
        }
        if (et > t) return -1; /* entries are in time order */
    }
    return -1;
}

#endif
