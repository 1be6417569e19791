/*
 * bench_rw.c — remote-write decoding cost per sample.
 *
 *   bench_rw [WORKLOAD_DIR] [PASSES]      (default /tmp/wl-100, 3 passes)
 *
 * WORKLOAD_DIR is an rwgen.py workload (../shared/bench/README.md): every
 * shard-XX/index.tsv names snappy-compressed prometheus.WriteRequest bodies.
 * For every body, in index order, it measures process CPU time of
 *   snappy    rw_decoder_uncompress()
 *   protobuf  rw_decode_v1(..., RW_ENC_IDENTITY) on that buffer (parse + validate)
 *   total     rw_decode_v1(..., RW_ENC_SNAPPY), the server's call
 * and the same for the body transcoded to remote write 2.0 (symbols table;
 * the transcoding is not timed). The first pass warms the arenas and is not
 * counted. Allocations are counted by a malloc hook (off under sanitizers)
 * and by the decoder's own arena counter: both should be 0 per request in
 * steady state.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <snappy-c.h>

#include "ingest/rw.h"
#include "tsdb/tsdb_util.h"

/* ---- malloc hook (glibc: forward to the __libc_* allocator) ---------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_NO_HOOK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define BENCH_NO_HOOK 1
#endif
#endif

static uint64_t g_allocs;

#ifndef BENCH_NO_HOOK
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

void *malloc(size_t n)
{
    g_allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    g_allocs++;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    g_allocs++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#define BENCH_HOOK_ON 1
#else
#define BENCH_HOOK_ON 0
#endif

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int read_file(const char *path, tbuf_t *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    b->len = 0;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (tbuf_put(b, chunk, n)) {
            fclose(f);
            return -1;
        }
    fclose(f);
    return 0;
}

/* ---- 1.0 -> 2.0 transcoding (not timed) ------------------------------------------ */

typedef struct {
    tsdb_str_t *k;
    uint32_t *ref;
    size_t cap, n;
    tbuf_t syms; /* encoded symbols (field 4), in ref order */
} symtab_t;

static uint64_t str_hash(tsdb_str_t s)
{
    uint64_t h = 1469598103934665603ULL;
    for (uint32_t i = 0; i < s.len; i++)
        h = (h ^ (uint8_t)s.ptr[i]) * 1099511628211ULL;
    return h;
}

static uint32_t sym_ref(symtab_t *t, tsdb_str_t s)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 1024;
        tsdb_str_t *nk = calloc(nc, sizeof *nk);
        uint32_t *nr = calloc(nc, sizeof *nr);
        if (!nk || !nr) abort();
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->k[i].ptr) continue;
            size_t j = str_hash(t->k[i]) & (nc - 1);
            while (nk[j].ptr)
                j = (j + 1) & (nc - 1);
            nk[j] = t->k[i];
            nr[j] = t->ref[i];
        }
        free(t->k);
        free(t->ref);
        t->k = nk, t->ref = nr, t->cap = nc;
    }
    size_t j = str_hash(s) & (t->cap - 1);
    while (t->k[j].ptr) {
        if (t->k[j].len == s.len && !memcmp(t->k[j].ptr, s.ptr, s.len)) return t->ref[j];
        j = (j + 1) & (t->cap - 1);
    }
    t->k[j] = s.len ? s : (tsdb_str_t){"", 0};
    t->ref[j] = (uint32_t)t->n++;
    if (tbuf_varint(&t->syms, 4 << 3 | 2) || tbuf_varint(&t->syms, s.len) ||
        tbuf_put(&t->syms, s.ptr, s.len))
        abort();
    return t->ref[j];
}

static void symtab_reset(symtab_t *t)
{
    if (t->cap) memset(t->k, 0, t->cap * sizeof *t->k);
    t->n = 0;
    t->syms.len = 0;
}

static void symtab_free(symtab_t *t)
{
    free(t->k);
    free(t->ref);
    tbuf_free(&t->syms);
}

/* Encode the decoded 1.0 request as a 2.0 Request into out (protobuf). */
static void transcode_v2(const rw_request_t *q, symtab_t *st, tbuf_t *out)
{
    tbuf_t series = {0}, ts = {0}, refs = {0};
    symtab_reset(st);
    sym_ref(st, (tsdb_str_t){"", 0});
    for (size_t i = 0; i < q->nseries; i++) {
        const tsdb_series_in_t *s = &q->series[i];
        ts.len = refs.len = 0;
        for (uint32_t j = 0; j < s->nlabels; j++) {
            if (tbuf_varint(&refs, sym_ref(st, s->labels[j].name)) ||
                tbuf_varint(&refs, sym_ref(st, s->labels[j].value)))
                abort();
        }
        if (tbuf_varint(&ts, 1 << 3 | 2) || tbuf_varint(&ts, refs.len) ||
            tbuf_put(&ts, refs.p, refs.len))
            abort();
        for (uint32_t j = 0; j < s->nsamples; j++) {
            uint8_t b[32];
            size_t n = 0;
            b[n++] = 0x09;
            le64_put(b + n, f64_bits(s->samples[j].v));
            n += 8;
            b[n++] = 0x10;
            n += varint_put_raw(b + n, (uint64_t)s->samples[j].t);
            if (tbuf_varint(&ts, 2 << 3 | 2) || tbuf_varint(&ts, n) || tbuf_put(&ts, b, n)) abort();
        }
        if (tbuf_varint(&series, 5 << 3 | 2) || tbuf_varint(&series, ts.len) ||
            tbuf_put(&series, ts.p, ts.len))
            abort();
    }
    out->len = 0;
    if (tbuf_put(out, st->syms.p, st->syms.len) || tbuf_put(out, series.p, series.len)) abort();
    tbuf_free(&series);
    tbuf_free(&ts);
    tbuf_free(&refs);
}

/* ---- main ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *z; /* snappy body */
    size_t zn;
    uint8_t *z2; /* the same request as 2.0, snappy */
    size_t z2n;
} body_t;

typedef struct {
    uint64_t snappy_ns, pb_ns, total_ns, samples, requests, hook_allocs, dec_allocs;
} acc_t;

static void report(const char *name, const acc_t *a, int passes)
{
    double s = (double)a->samples;
    printf("%-4s %8.2f %9.2f %8.2f %11.3f %12.3f\n", name, (double)a->snappy_ns / s,
           (double)a->pb_ns / s, (double)a->total_ns / s,
           BENCH_HOOK_ON ? (double)a->hook_allocs / (double)a->requests : -1.0,
           (double)a->dec_allocs / (double)a->requests);
    (void)passes;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/wl-100";
    int passes = argc > 2 ? atoi(argv[2]) : 3;
    if (passes < 1) passes = 1;

    /* Load every body (in replay order, shard by shard). */
    body_t *bodies = NULL;
    size_t nb = 0, capb = 0;
    uint64_t zbytes = 0, pbbytes = 0, pb2bytes = 0;
    tbuf_t file = {0}, v2 = {0};
    symtab_t st = {0};
    rw_decoder_t *d;
    if (rw_decoder_create(NULL, &d)) return 1;
    for (int shard = 0;; shard++) {
        char path[4096], line[512];
        snprintf(path, sizeof path, "%s/shard-%02d/index.tsv", dir, shard);
        FILE *idx = fopen(path, "r");
        if (!idx) break;
        while (fgets(line, sizeof line, idx)) {
            char name[256];
            if (sscanf(line, "%255s", name) != 1) continue;
            snprintf(path, sizeof path, "%s/shard-%02d/%s", dir, shard, name);
            if (read_file(path, &file)) {
                fprintf(stderr, "bench_rw: cannot read %s\n", path);
                return 1;
            }
            rw_request_t q;
            int rc = rw_decode_v1(d, file.p, file.len, RW_ENC_SNAPPY, &q);
            if (rc) {
                fprintf(stderr, "bench_rw: %s: %s\n", path, rw_decoder_errmsg(d, NULL));
                return 1;
            }
            transcode_v2(&q, &st, &v2);
            if (nb == capb) {
                capb = capb ? 2 * capb : 1024;
                bodies = realloc(bodies, capb * sizeof *bodies);
                if (!bodies) return 1;
            }
            body_t *b = &bodies[nb++];
            b->zn = file.len;
            b->z = malloc(file.len);
            b->z2n = snappy_max_compressed_length(v2.len);
            b->z2 = malloc(b->z2n);
            if (!b->z || !b->z2) return 1;
            memcpy(b->z, file.p, file.len);
            if (snappy_compress((const char *)v2.p, v2.len, (char *)b->z2, &b->z2n)) return 1;
            zbytes += file.len;
            pbbytes += q.body_bytes;
            pb2bytes += v2.len;
        }
        fclose(idx);
    }
    if (!nb) {
        fprintf(stderr,
                "bench_rw: no bodies under %s (make one: /usr/bin/python3 "
                "../shared/bench/rwgen.py --out %s)\n",
                dir, dir);
        return 1;
    }
    tbuf_free(&file);
    tbuf_free(&v2);
    symtab_free(&st);

    acc_t acc[2];
    memset(acc, 0, sizeof acc);
    for (int pass = 0; pass <= passes; pass++) {
        for (int ver = 0; ver < 2; ver++) {
            acc_t *a = &acc[ver];
            for (size_t i = 0; i < nb; i++) {
                const uint8_t *z = ver ? bodies[i].z2 : bodies[i].z;
                size_t zn = ver ? bodies[i].z2n : bodies[i].zn;
                const uint8_t *pb;
                size_t pbn;
                rw_request_t q;
                rw_decoder_stats_t s0, s1;
                rw_decoder_stats(d, &s0);
                uint64_t h0 = g_allocs;
                uint64_t t0 = cpu_ns();
                int rc = rw_decoder_uncompress(d, z, zn, &pb, &pbn);
                uint64_t t1 = cpu_ns();
                if (!rc)
                    rc = ver ? rw_decode_v2(d, pb, pbn, RW_ENC_IDENTITY, &q)
                             : rw_decode_v1(d, pb, pbn, RW_ENC_IDENTITY, &q);
                uint64_t t2 = cpu_ns();
                if (!rc)
                    rc = ver ? rw_decode_v2(d, z, zn, RW_ENC_SNAPPY, &q)
                             : rw_decode_v1(d, z, zn, RW_ENC_SNAPPY, &q);
                uint64_t t3 = cpu_ns();
                uint64_t h1 = g_allocs;
                rw_decoder_stats(d, &s1);
                if (rc) {
                    fprintf(stderr, "bench_rw: decode failed: %s\n", rw_decoder_errmsg(d, NULL));
                    return 1;
                }
                if (pass == 0) continue; /* warm-up */
                a->snappy_ns += t1 - t0;
                a->pb_ns += t2 - t1;
                a->total_ns += t3 - t2;
                a->samples += q.nsamples;
                a->requests++;
                a->hook_allocs += h1 - h0;
                a->dec_allocs += s1.allocs - s0.allocs;
            }
        }
    }
    rw_decoder_stats_t st_end;
    rw_decoder_stats(d, &st_end);
    printf("bench_rw: %s: %zu bodies, %.2f M samples/pass, snappy %.1f MB -> protobuf %.1f MB "
           "(2.0: %.1f MB), %d timed passes\n",
           dir, nb, (double)acc[0].samples / passes / 1e6, (double)zbytes / 1e6,
           (double)pbbytes / 1e6, (double)pb2bytes / 1e6, passes);
    printf("CPU ns per sample (process CPU time); allocations per request after warm-up\n");
    printf("%-4s %8s %9s %8s %11s %12s\n", "rw", "snappy", "protobuf", "total", "mallocs/req",
           "arena/req");
    report("1.0", &acc[0], passes);
    report("2.0", &acc[1], passes);
    printf("decoder arenas held: %.1f MB%s\n", (double)st_end.bytes_held / 1e6,
           BENCH_HOOK_ON ? "" : " (malloc hook off under sanitizers: mallocs/req = -1)");
    for (size_t i = 0; i < nb; i++) {
        free(bodies[i].z);
        free(bodies[i].z2);
    }
    free(bodies);
    rw_decoder_destroy(d);
    return 0;
}
