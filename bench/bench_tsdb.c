/*
 * bench_tsdb.c — in-process store benchmark: append throughput (remote-write
 * shaped batches and backfill batches), read-back (decode) throughput,
 * bytes/sample on disk after a flush, and memory per active series.
 *
 *   bench_tsdb --workload /tmp/wl-100 [--shape batches|backfill] --store DIR
 *   bench_tsdb --synthetic SERIESxSAMPLES [--shape ...] --store DIR
 *
 * The workload directory is made by ../shared/bench/rwgen.py (snappy +
 * protobuf remote-write bodies); it is decoded with ingest/rw.h first (not
 * timed), then appended. CPU is process CPU time (includes the store's
 * background flush thread); wall time is printed but is noisy.
 */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ingest/rw.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

/* ---- a decoded workload: series with all their samples ------------------------ */

typedef struct {
    char *labels_blob; /* "name\0value\0..." */
    uint32_t nlabels;
    tsdb_label_t *labels;
    tsdb_sample_t *s;
    uint32_t n, cap;
} wseries_t;

typedef struct {
    wseries_t *v;
    size_t n, cap;
    /* batches shape: the original bodies as (series index, first sample, count) runs */
    struct run {
        uint32_t series, first, count;
    } *runs;
    size_t nruns, runcap;
    uint32_t *body_end; /* runs index where each body ends */
    size_t nbodies, bodycap;
    uint64_t samples;
} workload_t;

/* open-addressing map from a label-set string to a series index */
static size_t *wmap;
static size_t wmap_cap;

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

static size_t blob_len(const wseries_t *s)
{
    const char *p = s->labels_blob;
    for (uint32_t i = 0; i < 2 * s->nlabels; i++) p += strlen(p) + 1;
    return (size_t)(p - s->labels_blob);
}

static uint32_t series_for(workload_t *w, const tsdb_series_in_t *in)
{
    static tbuf_t key;
    key.len = 0;
    for (uint32_t i = 0; i < in->nlabels; i++) {
        tbuf_put(&key, in->labels[i].name.ptr, in->labels[i].name.len);
        tbuf_put(&key, "", 1);
        tbuf_put(&key, in->labels[i].value.ptr, in->labels[i].value.len);
        tbuf_put(&key, "", 1);
    }
    if ((w->n + 1) * 2 > wmap_cap) {
        size_t nc = wmap_cap ? wmap_cap * 2 : 1 << 16;
        size_t *nm = malloc(nc * sizeof *nm);
        for (size_t i = 0; i < nc; i++) nm[i] = SIZE_MAX;
        for (size_t i = 0; i < w->n; i++) {
            size_t h = fnv(w->v[i].labels_blob, blob_len(&w->v[i])) & (nc - 1);
            while (nm[h] != SIZE_MAX) h = (h + 1) & (nc - 1);
            nm[h] = i;
        }
        free(wmap);
        wmap = nm;
        wmap_cap = nc;
    }
    size_t h = fnv((char *)key.p, key.len) & (wmap_cap - 1);
    while (wmap[h] != SIZE_MAX) {
        wseries_t *s = &w->v[wmap[h]];
        if (blob_len(s) == key.len && !memcmp(s->labels_blob, key.p, key.len)) return (uint32_t)wmap[h];
        h = (h + 1) & (wmap_cap - 1);
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->v = realloc(w->v, w->cap * sizeof *w->v);
    }
    wseries_t *s = &w->v[w->n];
    memset(s, 0, sizeof *s);
    s->labels_blob = malloc(key.len);
    memcpy(s->labels_blob, key.p, key.len);
    s->nlabels = in->nlabels;
    s->labels = malloc(in->nlabels * sizeof *s->labels);
    const char *p = s->labels_blob;
    for (uint32_t i = 0; i < in->nlabels; i++) {
        s->labels[i].name.ptr = p;
        s->labels[i].name.len = (uint32_t)strlen(p);
        p += s->labels[i].name.len + 1;
        s->labels[i].value.ptr = p;
        s->labels[i].value.len = (uint32_t)strlen(p);
        p += s->labels[i].value.len + 1;
    }
    wmap[h] = w->n;
    return (uint32_t)w->n++;
}

static int load_workload(const char *dir, workload_t *w)
{
    rw_decoder_t *d;
    if (rw_decoder_create(NULL, &d)) return -1;
    tbuf_t body = {0};
    for (int shard = 0;; shard++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/shard-%02d/index.tsv", dir, shard);
        FILE *idx = fopen(path, "r");
        if (!idx) {
            if (shard == 0) {
                fprintf(stderr, "no %s\n", path);
                return -1;
            }
            break;
        }
        char line[1024];
        while (fgets(line, sizeof line, idx)) {
            char fname[512];
            if (sscanf(line, "%511s", fname) != 1 || !strstr(fname, ".rw")) continue;
            snprintf(path, sizeof path, "%s/shard-%02d/%s", dir, shard, fname);
            FILE *f = fopen(path, "rb");
            if (!f) continue;
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            body.len = 0;
            tbuf_reserve(&body, (size_t)sz);
            body.len = fread(body.p, 1, (size_t)sz, f);
            fclose(f);
            rw_request_t req;
            if (rw_decode_v1(d, body.p, body.len, RW_ENC_SNAPPY, &req)) {
                fprintf(stderr, "%s: decode error\n", path);
                continue;
            }
            for (size_t i = 0; i < req.nseries; i++) {
                const tsdb_series_in_t *in = &req.series[i];
                uint32_t si = series_for(w, in);
                wseries_t *s = &w->v[si];
                if (s->n + in->nsamples > s->cap) {
                    s->cap = (s->n + in->nsamples) * 2;
                    s->s = realloc(s->s, s->cap * sizeof *s->s);
                }
                if (w->nruns == w->runcap) {
                    w->runcap = w->runcap ? w->runcap * 2 : 1 << 16;
                    w->runs = realloc(w->runs, w->runcap * sizeof *w->runs);
                }
                w->runs[w->nruns++] = (struct run){si, s->n, in->nsamples};
                memcpy(s->s + s->n, in->samples, in->nsamples * sizeof *s->s);
                s->n += in->nsamples;
                w->samples += in->nsamples;
            }
            if (w->nbodies == w->bodycap) {
                w->bodycap = w->bodycap ? w->bodycap * 2 : 1024;
                w->body_end = realloc(w->body_end, w->bodycap * sizeof *w->body_end);
            }
            w->body_end[w->nbodies++] = (uint32_t)w->nruns;
        }
        fclose(idx);
    }
    tbuf_free(&body);
    rw_decoder_destroy(d);
    return 0;
}

/* Synthetic fleet: gauges with 2 decimals, counters, constants, random floats. */
static void make_synthetic(workload_t *w, size_t nseries, size_t nsamples)
{
    trng_t g;
    trng_seed(&g, 42);
    static const char *kinds[] = {"gauge", "counter", "const", "float"};
    for (size_t i = 0; i < nseries; i++) {
        char blob[256];
        int kind = (int)(i % 4);
        int len = snprintf(blob, sizeof blob, "__name__%csynth_%s%cid%c%zu%cinstance%cnode-%04zu",
                           0, kinds[kind], 0, 0, i, 0, 0, i / 100);
        tsdb_label_t l[3];
        const char *p = blob;
        for (int k = 0; k < 3; k++) {
            l[k].name.ptr = p;
            l[k].name.len = (uint32_t)strlen(p);
            p += l[k].name.len + 1;
            l[k].value.ptr = p;
            l[k].value.len = (uint32_t)strlen(p);
            p += l[k].value.len + 1;
        }
        (void)len;
        tsdb_series_in_t in = {l, 3, NULL, 0};
        uint32_t si = series_for(w, &in);
        wseries_t *s = &w->v[si];
        s->cap = s->n = (uint32_t)nsamples;
        s->s = malloc(nsamples * sizeof *s->s);
        double v = (double)trng_below(&g, 10000) / 100.0, c = 0;
        for (size_t j = 0; j < nsamples; j++) {
            s->s[j].t = INT64_C(1767225600000) + (int64_t)j * 15000;
            switch (kind) {
            case 0: v += ((double)trng_below(&g, 201) - 100) / 100.0; s->s[j].v = round(v * 100) / 100; break;
            case 1: c += (double)trng_below(&g, 5000); s->s[j].v = c; break;
            case 2: s->s[j].v = 1; break;
            default: s->s[j].v = trng_unit(&g); break;
            }
        }
        w->samples += nsamples;
    }
    /* batches shape: one sample of every series per body, 2000 series per body */
    for (size_t j = 0; j < nsamples; j++)
        for (size_t i = 0; i < nseries; i++) {
            if (w->nruns == w->runcap) {
                w->runcap = w->runcap ? w->runcap * 2 : 1 << 16;
                w->runs = realloc(w->runs, w->runcap * sizeof *w->runs);
            }
            w->runs[w->nruns++] = (struct run){(uint32_t)i, (uint32_t)j, 1};
            if (w->nruns % 2000 == 0 || i + 1 == nseries) {
                if (w->nbodies == w->bodycap) {
                    w->bodycap = w->bodycap ? w->bodycap * 2 : 1024;
                    w->body_end = realloc(w->body_end, w->bodycap * sizeof *w->body_end);
                }
                w->body_end[w->nbodies++] = (uint32_t)w->nruns;
            }
        }
}

static uint64_t du_bytes(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "du -sb '%s'", dir);
    FILE *p = popen(cmd, "r");
    uint64_t v = 0;
    if (p) {
        if (fscanf(p, "%" SCNu64, &v) != 1) v = 0;
        pclose(p);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *wl = NULL, *store = NULL, *shape = "batches", *synth = NULL, *sync = "always";
    /* BENCH_HEAD_PACKING=0: plain 16-byte heads, to compare in one binary */
    const char *hp = getenv("BENCH_HEAD_PACKING");
    if (hp && !strcmp(hp, "0")) tsdb_debug_head_packing(0);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--workload")) wl = argv[i + 1];
        else if (!strcmp(argv[i], "--store")) store = argv[i + 1];
        else if (!strcmp(argv[i], "--shape")) shape = argv[i + 1];
        else if (!strcmp(argv[i], "--synthetic")) synth = argv[i + 1];
        else if (!strcmp(argv[i], "--sync")) sync = argv[i + 1];
    }
    if ((!wl && !synth) || !store) {
        fprintf(stderr, "usage: bench_tsdb (--workload DIR | --synthetic NxM) --store DIR "
                        "[--shape batches|backfill] [--sync always|periodic]\n");
        return 2;
    }
    workload_t w = {0};
    if (wl) {
        if (load_workload(wl, &w)) return 1;
    } else {
        size_t ns = 0, nm = 0;
        if (sscanf(synth, "%zux%zu", &ns, &nm) != 2) return 2;
        make_synthetic(&w, ns, nm);
    }
    printf("workload: %s, %zu series, %" PRIu64 " samples, %zu bodies, shape %s, sync %s\n",
           wl ? wl : synth, w.n, w.samples, w.nbodies, shape, sync);
    long rss0 = status_kb("VmRSS:");

    tsdb_options_t o;
    tsdb_options_init(&o);
    o.sync_mode = !strcmp(sync, "periodic") ? TSDB_SYNC_PERIODIC : TSDB_SYNC_ALWAYS;
    tsdb_t *db;
    int rc = tsdb_open(store, &o, &db);
    if (rc) {
        fprintf(stderr, "open: %s\n", tsdb_strerror(rc));
        return 1;
    }
    tsdb_series_in_t *batch = malloc(4096 * sizeof *batch);
    double c0 = cpu_s(), w0 = wall_s();
    uint64_t appended = 0, calls = 0;
    long peak_active_rss = 0;
    uint64_t peak_active = 0;
    if (!strcmp(shape, "batches")) {
        size_t r = 0;
        for (size_t b = 0; b < w.nbodies; b++) {
            size_t nb = 0;
            for (; r < w.body_end[b]; r++) {
                struct run *ru = &w.runs[r];
                wseries_t *s = &w.v[ru->series];
                batch[nb++] = (tsdb_series_in_t){s->labels, s->nlabels, s->s + ru->first, ru->count};
                appended += ru->count;
                if (nb == 4096) {
                    tsdb_append(db, batch, nb, NULL, NULL);
                    nb = 0;
                }
            }
            tsdb_append_result_t res;
            rc = tsdb_append(db, batch, nb, NULL, &res);
            calls++;
            if (rc) {
                fprintf(stderr, "append: %s\n", tsdb_strerror(rc));
                return 1;
            }
            if (b % 500 == 0) {
                long rss = status_kb("VmRSS:");
                tsdb_stats_t st;
                tsdb_stats(db, &st);
                if (st.active_series >= peak_active) {
                    peak_active = st.active_series;
                    peak_active_rss = rss;
                }
            }
        }
    } else { /* backfill: 8 series x all their samples per call */
        for (size_t i = 0; i < w.n; i += 8) {
            size_t nb = 0;
            for (size_t k = i; k < w.n && k < i + 8; k++) {
                batch[nb++] = (tsdb_series_in_t){w.v[k].labels, w.v[k].nlabels, w.v[k].s, w.v[k].n};
                appended += w.v[k].n;
            }
            rc = tsdb_append(db, batch, nb, NULL, NULL);
            calls++;
            if (rc) {
                fprintf(stderr, "append: %s\n", tsdb_strerror(rc));
                return 1;
            }
        }
    }
    double c1 = cpu_s(), w1 = wall_s();
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    long rss_end = status_kb("VmRSS:");
    rc = tsdb_flush(db);
    double c2 = cpu_s(), w2 = wall_s();
    if (rc) fprintf(stderr, "flush: %s\n", tsdb_strerror(rc));
    tsdb_stats(db, &st);
    uint64_t du = du_bytes(store);

    /* read everything back */
    tsdb_reader_t *r;
    tsdb_reader_open(db, &r);
    tsdb_matcher_t m = {TSDB_MATCH_RE, "__name__", ".+"};
    tsdb_sids_t ids = {0};
    double c3 = cpu_s(), w3 = wall_s();
    tsdb_select(r, &m, 1, INT64_MIN, INT64_MAX, &ids);
    uint64_t readn = 0;
    for (size_t i = 0; i < ids.n; i++) {
        tsdb_iter_t *it;
        if (tsdb_iter_open(r, ids.ids[i], INT64_MIN, INT64_MAX, &it)) continue;
        const tsdb_sample_t *s;
        size_t n;
        while (tsdb_iter_next(it, &s, &n) == 1) readn += n;
        tsdb_iter_close(it);
    }
    double c4 = cpu_s(), w4 = wall_s();
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    tsdb_close(db);

    double app_cpu = c1 - c0, flush_cpu = c2 - c1, read_cpu = c4 - c3;
    printf("| metric | value |\n|---|---|\n");
    printf("| append calls | %" PRIu64 " |\n", calls);
    printf("| append CPU s (process, incl. background flushes) | %.2f |\n", app_cpu);
    printf("| append samples per CPU second | %.0f |\n", appended / app_cpu);
    printf("| append wall s (noisy) | %.2f |\n", w1 - w0);
    printf("| final flush + compaction CPU s | %.2f (wall %.2f) |\n", flush_cpu, w2 - w1);
    printf("| ingest CPU s per 1M samples, all included | %.3f |\n",
           (app_cpu + flush_cpu) / (appended / 1e6));
    printf("| read-back samples | %" PRIu64 " of %" PRIu64 " |\n", readn, appended);
    printf("| decode samples per CPU second | %.0f (wall %.2f s) |\n", readn / read_cpu, w4 - w3);
    printf("| bytes on disk (du -sb) | %" PRIu64 " |\n", du);
    printf("| bytes/sample (du -sb / samples) | %.3f |\n", (double)du / (double)st.samples);
    printf("| LMDB used bytes / samples | %.3f |\n", (double)st.lmdb_used_bytes / (double)st.samples);
    printf("| series | %" PRIu64 " |\n", st.series);
    printf("| RSS growth at end of appends / series, KiB | %.2f |\n",
           (double)(rss_end - rss0) / (double)(st.series ? st.series : 1));
    if (peak_active)
        printf("| RSS growth / active series at peak head, KiB | %.2f |\n",
               (double)(peak_active_rss - rss0) / (double)peak_active);
    printf("| store memory estimate / series, bytes | %.0f |\n",
           (double)st.memory_bytes / (double)(st.series ? st.series : 1));
    printf("| WAL fsyncs | %" PRIu64 " |\n", st.wal_fsyncs);
    if (readn != appended) {
        fprintf(stderr, "READ-BACK MISMATCH\n");
        return 1;
    }
    return 0;
}
