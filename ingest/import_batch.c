/* import_batch.c — batch builder, string arena, time parsing (see import_batch.h). */
#include "ingest/import_batch.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_BYTES ((size_t)64 << 10)

struct ingest_block {
    ingest_block_t *next;
    size_t used, cap;
    char data[];
};

void ingest_batch_init(ingest_batch_t *b)
{
    memset(b, 0, sizeof *b);
}

void ingest_batch_free(ingest_batch_t *b)
{
    if (!b) return;
    free(b->labels);
    free(b->ser);
    free(b->out);
    for (ingest_block_t *k = b->blocks, *nx; k; k = nx) {
        nx = k->next;
        free(k);
    }
    ingest_batch_init(b);
}

const char *ingest_batch_str(ingest_batch_t *b, const char *p, size_t n)
{
    ingest_block_t *k = b->cur;
    while (k && k->cap - k->used < n + 1)
        k = k->next; /* blocks after cur are empty (kept from earlier batches) */
    if (!k) {
        size_t cap = n + 1 > BLOCK_BYTES ? n + 1 : BLOCK_BYTES;
        k = malloc(sizeof *k + cap);
        if (!k) {
            b->oom = 1;
            return NULL;
        }
        k->used = 0;
        k->cap = cap;
        /* Link after cur (or first). */
        if (b->cur) {
            k->next = b->cur->next;
            b->cur->next = k;
        } else {
            k->next = b->blocks;
            b->blocks = k;
        }
    }
    b->cur = k;
    char *o = k->data + k->used;
    if (n) memcpy(o, p, n);
    o[n] = 0;
    k->used += n + 1;
    return o;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

int ingest_batch_add(ingest_batch_t *b, const tsdb_label_t *labels, uint32_t nlabels, int64_t t_ms,
                     double v)
{
    if (grow((void **)&b->labels, &b->labels_cap, b->nlabels + nlabels, sizeof *b->labels) ||
        grow((void **)&b->ser, &b->ser_cap, b->nser + 1, sizeof *b->ser)) {
        b->oom = 1;
        return -1;
    }
    memcpy(b->labels + b->nlabels, labels, nlabels * sizeof *labels);
    struct ingest_ser_ *s = &b->ser[b->nser++];
    s->lab = (uint32_t)b->nlabels;
    s->nlab = nlabels;
    s->s.t = t_ms;
    s->s.v = v;
    b->nlabels += nlabels;
    return 0;
}

static void batch_reset(ingest_batch_t *b)
{
    b->nlabels = 0;
    b->nser = 0;
    for (ingest_block_t *k = b->blocks; k; k = k->next)
        k->used = 0;
    b->cur = b->blocks;
    b->oom = 0;
}

int ingest_batch_flush(ingest_batch_t *b, const ingest_sink_t *sink, ingest_totals_t *tot)
{
    if (b->oom) {
        batch_reset(b);
        return TSDB_ENOMEM;
    }
    if (!b->nser) return 0;
    if (grow((void **)&b->out, &b->out_cap, b->nser, sizeof *b->out)) {
        batch_reset(b);
        return TSDB_ENOMEM;
    }
    for (size_t i = 0; i < b->nser; i++) {
        b->out[i].labels = b->labels + b->ser[i].lab;
        b->out[i].nlabels = b->ser[i].nlab;
        b->out[i].samples = &b->ser[i].s;
        b->out[i].nsamples = 1;
    }
    tsdb_append_result_t res;
    memset(&res, 0, sizeof res);
    int rc = sink->append(sink->ctx, b->out, b->nser, &res);
    if (!rc && tot) {
        tot->samples += b->nser;
        tot->stored += res.stored;
        tot->duplicate += res.duplicate;
        tot->conflict += res.conflict;
        tot->too_old += res.too_old;
        tot->invalid += res.invalid;
        tot->series_created += res.series_created;
        tot->batches++;
    }
    batch_reset(b);
    return rc;
}

/* ---- offline import into a store -------------------------------------------- */

uint64_t ingest_default_memory_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0) return 0;
    return (uint64_t)pages * (uint64_t)psz / 2;
}

int ingest_parse_bytes(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    unsigned shift = 0;
    switch (*s) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
    }
    if (shift) {
        s++;
        if (*s == 'i') s++;
        if (*s == 'B' || *s == 'b') s++;
    } else if (*s == 'B' || *s == 'b') {
        s++;
    }
    if (*s) return -1;
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}

int ingest_store_open(const char *dir, int fmt, uint64_t memory_max, tsdb_t **out)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.memory_max_bytes = memory_max;
    /* No WAL: an import acknowledges nothing before its final flush, and
     * one that crashed is run again (what was sealed comes back as
     * duplicates). Writing every sample twice cost ~10 % of the CPU and,
     * with millions of series not yet indexed, their labels again after
     * every flush (16 GB written for a 100,000-drive quarter). */
    o.sync_mode = TSDB_SYNC_NONE;
    /* a day file at a time keeps up to a 32-day partition of every series
     * in the head: packed, ~1.5 bytes a sample instead of 16 */
    o.pack_heads = 1;
    o.ooo_window_ms = INT64_C(400) * 86400000; /* history arrives in any file order */
    /* one sample a day: blocks of 32 days instead of 2 h (new groups only) */
    if (fmt == INGEST_FMT_DAILY) o.partition_ms = INT64_C(32) * 86400000;
    if (fmt == INGEST_FMT_DAILY) {
        /* A big import frees and takes back hundreds of MB of heap at every
         * flush (frozen head arrays, flush buffers): keep up to 1 GiB of it
         * instead of handing it to the kernel and faulting it in again
         * (3-5 % of `augur import backblaze`'s CPU on 20k drives x 90 days,
         * peak RSS unchanged). Process-wide: the import is the process. */
        uint64_t keep = (uint64_t)1 << 30;
        /* under a memory cap, keep at most a sixteenth of it */
        if (memory_max && memory_max / 16 < keep) keep = memory_max / 16;
        mallopt(M_TRIM_THRESHOLD, (int)keep);
        mallopt(M_TOP_PAD, 64 << 20);
    }
    /* a store left by a crashed import can hold a large WAL: say so */
    o.replay_progress = tsdb_replay_progress_stderr;
    o.replay_progress_ctx = (void *)"augur import";
    o.replay_progress_ms = 5000;
    int rc = tsdb_open(dir, &o, out);
    /* a day file at a time: seal each 32-day partition once, when the
     * import has moved past it (the caller turns this off before its final
     * tsdb_flush) */
    if (!rc && fmt == INGEST_FMT_DAILY) tsdb_seal_closed_only(*out, 1);
    return rc;
}

static int store_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    return tsdb_append(ctx, s, n, NULL, res);
}

static int store_series_id(void *ctx, const tsdb_label_t *l, uint32_t n, tsdb_sid_t *sid,
                           int *created)
{
    return tsdb_series_id(ctx, l, n, sid, created);
}

static int store_append_sids(void *ctx, const tsdb_sid_sample_t *s, size_t n,
                             tsdb_append_result_t *res)
{
    return tsdb_append_sids(ctx, s, n, NULL, res);
}

const ingest_sid_ops_t ingest_store_sid_ops = {store_series_id, store_append_sids};

void ingest_store_sink(tsdb_t *db, ingest_sink_t *sink)
{
    sink->append = store_append;
    sink->ctx = db;
}

/* ---- time ---------------------------------------------------------------- */

int64_t ingest_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    /* Howard Hinnant's days_from_civil (public domain algorithm). */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int date_ok(unsigned y, unsigned m, unsigned d)
{
    static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1) return 0;
    unsigned md = mdays[m - 1] + (m == 2 && leap(y));
    return d <= md;
}

int ingest_date_parse(const char *s, size_t len, int64_t *ms)
{
    unsigned y, m, d;
    if (len != 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) || digits(s + 5, 2, &m) ||
        digits(s + 8, 2, &d) || !date_ok(y, m, d))
        return -1;
    *ms = ingest_days_from_civil(y, m, d) * 86400000;
    return 0;
}

int ingest_time_parse(const char *s, size_t len, int64_t *ms)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (!len) return -1;
    if (len >= 10 && s[4] == '-') {
        int64_t day;
        if (ingest_date_parse(s, 10, &day)) return -1;
        if (len == 10) {
            *ms = day;
            return 0;
        }
        const char *p = s + 10, *end = s + len;
        unsigned hh, mi, ss;
        if (end - p < 9 || (*p != 'T' && *p != 't' && *p != ' ') || p[3] != ':' || p[6] != ':' ||
            digits(p + 1, 2, &hh) || digits(p + 4, 2, &mi) || digits(p + 7, 2, &ss) || hh > 23 ||
            mi > 59 || ss > 60)
            return -1;
        p += 9;
        int64_t frac = 0;
        if (p < end && *p == '.') {
            p++;
            int nd = 0;
            int64_t scale = 100;
            while (p < end && *p >= '0' && *p <= '9') {
                if (nd < 3) frac += (*p - '0') * scale;
                scale /= 10;
                nd++;
                p++;
            }
            if (!nd) return -1;
        }
        int64_t off = 0;
        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (p < end && (*p == '+' || *p == '-')) {
            unsigned oh, om;
            if (end - p != 6 || p[3] != ':' || digits(p + 1, 2, &oh) || digits(p + 4, 2, &om) ||
                oh > 23 || om > 59)
                return -1;
            off = ((int64_t)oh * 60 + om) * 60000 * (*p == '-' ? -1 : 1);
            p += 6;
        } else {
            return -1; /* RFC 3339 needs an offset */
        }
        if (p != end) return -1;
        *ms = day + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000 + frac - off;
        return 0;
    }
    /* Unix seconds. */
    const char *p = s, *end = s + len;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end) return -1;
    int64_t sec = 0;
    int nd = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (sec > (INT64_MAX / 1000 - 9) / 10) return -1;
        sec = sec * 10 + (*p++ - '0');
        nd++;
    }
    int64_t frac = 0;
    if (p < end && *p == '.') {
        p++;
        int64_t scale = 100;
        int fd = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            frac += (*p++ - '0') * scale;
            scale /= 10;
            fd++;
        }
        if (!fd && !nd) return -1;
    } else if (!nd) {
        return -1;
    }
    if (p != end) return -1;
    int64_t v = sec * 1000 + frac;
    *ms = neg ? -v : v;
    return 0;
}

void ingest_time_format(int64_t ms, char *buf, size_t cap)
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000;
    /* civil_from_days */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    unsigned hh = (unsigned)(rem / 3600000), mi = (unsigned)(rem / 60000 % 60),
             ss = (unsigned)(rem / 1000 % 60), msr = (unsigned)(rem % 1000);
    if (msr)
        snprintf(buf, cap, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u.%03uZ", y, m, d, hh, mi, ss,
                 msr);
    else
        snprintf(buf, cap, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02uZ", y, m, d, hh, mi, ss);
}
