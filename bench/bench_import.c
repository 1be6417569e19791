/*
 * bench_import.c — Backblaze CSV import speed, rows per CPU second, end to end.
 *
 *   bench_import [DRIVES [DAYS [STORE_DIR]]]   synthetic quarter (default 20000 x 90)
 *   bench_import --files FILE...                 real files (e.g. the two in ../shared/data/smart)
 *   bench_import --write DIR [DRIVES [DAYS]]     write the synthetic day files, for timing
 *                                                `augur import backblaze` itself
 *
 * Synthetic data: one CSV "file" per day in the layout of a recent quarter of
 * the public dataset (date, serial_number, model, capacity_bytes, failure,
 * datacenter, cluster_id, vault_id, pod_id, pod_slot_num, is_legacy_format,
 * then smart_N_normalized/smart_N_raw for 95 attribute ids: 201 columns),
 * where a drive model fills about 25 attributes and leaves the rest blank, as
 * the real files do. Values behave like the real ones: most are constant per
 * drive, counters grow (power-on hours, LBAs, load cycles), a few are noisy
 * (error rates, temperature). About 1 drive in 25,000 fails per day; it is
 * replaced by a new serial the next day (new series arrive along the way).
 * Deterministic (fixed LCG seed).
 *
 * Two runs over the same data, each from a fresh importer:
 *   parse  the importer with a sink that only counts (CSV split, numbers,
 *          labels, batching)
 *   store  the same into a fresh store opened as `augur import backblaze
 *          --store` opens it (ingest_store_open), with the final flush and
 *          close (fsync) included
 * Day files are generated just before they are fed; the generator's CPU time
 * (measured per thread) is subtracted. CPU = process user + system, all
 * threads (the store's background flush thread included). rows/s are per
 * CPU second.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ingest/backblaze.h"
#include "ingest/import_batch.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

static uint64_t rng;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(rng >> 33);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double proc_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const unsigned ids[] = {
    1,   2,   3,   4,   5,   7,   8,   9,   10,  11,  12,  13,  15,  16,  17,  18,  22,  23,  24,
    160, 161, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200,
    201, 202, 206, 210, 218, 220, 222, 223, 224, 225, 226, 230, 231, 232, 233, 234, 235, 240, 241,
    242, 244, 245, 246, 247, 248, 250, 251, 252, 254, 255, 11,  13,  15,  16,  17,  18,  22,  23};
#define NIDS (sizeof ids / sizeof ids[0])
#define NMODELS 4

/* ---- synthetic quarter ------------------------------------------------------ */

typedef struct {
    unsigned drives, days;
    unsigned char filled[NMODELS][NIDS];
    uint32_t *serial;   /* per slot: current serial number */
    uint32_t *base;     /* per slot: per-drive constant offset */
    uint32_t next_serial;
    uint64_t rows;
} synth_t;

static void synth_init(synth_t *g, unsigned drives, unsigned days)
{
    memset(g, 0, sizeof *g);
    rng = 0x9e3779b97f4a7c15u;
    g->drives = drives;
    g->days = days;
    for (int m = 0; m < NMODELS; m++)
        for (size_t i = 0; i < NIDS; i++)
            g->filled[m][i] = i < 87 && (ids[i] == 9 || ids[i] == 194 || rnd() % 100 < 26);
    g->serial = malloc(drives * sizeof *g->serial);
    g->base = malloc(drives * sizeof *g->base);
    if (!g->serial || !g->base) abort();
    for (unsigned k = 0; k < drives; k++) {
        g->serial[k] = k;
        g->base[k] = rnd();
    }
    g->next_serial = drives;
}

static void synth_free(synth_t *g)
{
    free(g->serial);
    free(g->base);
    g->serial = g->base = NULL;
}

/* Value of attribute column i for a drive on day d. */
static uint64_t raw_value(unsigned id, uint32_t base, unsigned d)
{
    switch (id) {
    case 9: /* power-on hours */
    case 240:
        return 10000 + base % 30000 + d * 24;
    case 241: /* LBAs written / read: grow daily */
    case 242:
        return (uint64_t)(base % 1000000) * 100000 + (uint64_t)d * (5000000 + base % 999983);
    case 193:
    case 12:
        return base % 500 + d / 7;
    case 194:
    case 190:
        return 22 + base % 12 + rnd() % 4;
    case 1:
    case 7:
    case 195:
        return rnd() % 200000000;
    case 5:
    case 197:
    case 198:
    case 187:
    case 188:
        return base % 97 == 0 ? (base % 7) + d / 10 : 0;
    default:
        return base % 13 == 0 ? base % 1000 : 0;
    }
}

/* Day d as one CSV file (header included) into t. */
static void synth_day(synth_t *g, unsigned d, tbuf_t *t)
{
    char buf[256];
    t->len = 0;
    const char *h = "date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,"
                    "vault_id,pod_id,pod_slot_num,is_legacy_format";
    tbuf_put(t, h, strlen(h));
    for (size_t i = 0; i < NIDS; i++) {
        unsigned id = ids[i] + (i >= 87 ? 1000 : 0);
        int n = snprintf(buf, sizeof buf, ",smart_%u_normalized,smart_%u_raw", id, id);
        tbuf_put(t, buf, (size_t)n);
    }
    tbuf_put(t, "\n", 1);
    static const char *const models[NMODELS] = {"ST12000NM0008", "HGST HUH721212ALE604",
                                                "TOSHIBA MG07ACA14TA", "WDC WUH721816ALE6L4"};
    char date[32];
    ingest_time_format((ingest_days_from_civil(2024, 1, 1) + d) * 86400000, date, sizeof date);
    date[10] = 0;
    for (unsigned k = 0; k < g->drives; k++) {
        int m = (int)(k % NMODELS);
        int failed = rnd() % 25000 == 0;
        int n = snprintf(buf, sizeof buf, "%s,ZL%08u,%s,%s,%d,sac%u,1,%u,%u,%u,0", date,
                         g->serial[k], models[m], m == 3 ? "16000900661248" : "12000138625024",
                         failed, k % 2, 1000 + k / 1200, (k / 60) % 20, k % 60);
        tbuf_put(t, buf, (size_t)n);
        uint32_t base = g->base[k];
        for (size_t i = 0; i < NIDS; i++) {
            if (!g->filled[m][i]) {
                tbuf_put(t, ",,", 2);
                continue;
            }
            unsigned id = ids[i];
            uint64_t raw = raw_value(id, base + (uint32_t)i * 7919u, d);
            unsigned norm = id == 194 || id == 190 ? (unsigned)raw
                            : id == 1 || id == 7    ? 70 + rnd() % 15
                                                    : 100 - (base >> (i % 16)) % 3;
            n = snprintf(buf, sizeof buf, ",%u,%" PRIu64, norm, raw);
            tbuf_put(t, buf, (size_t)n);
        }
        tbuf_put(t, "\n", 1);
        g->rows++;
        if (failed) { /* replaced by a new drive the next day */
            g->serial[k] = g->next_serial++;
            g->base[k] = rnd();
        }
    }
}

/* ---- feeding ---------------------------------------------------------------- */

/* --memory-limit (0: none, as `augur import --memory-limit 0`) */
static uint64_t memory_limit;

/* Memory at the day with the highest RSS (store runs): the store's own
 * accounting, malloc's, and the process's resident set. */
static struct {
    uint64_t rss;
    unsigned day;
    tsdb_memory_t m;
    size_t heap_used, heap_arena, mmapped;
} mem_peak;

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* imp_cpu: the importing thread's CPU so far, generator left out */
static void mem_note(tsdb_t *db, unsigned day, double imp_cpu)
{
    uint64_t r = rss_bytes();
    if (getenv("BENCH_IMPORT_VERBOSE")) { /* a line per day on stderr */
        tsdb_memory_t m;
        tsdb_memory(db, &m);
        fprintf(stderr,
                "day %u: %.1f CPU-s, importing thread %.1f, RSS %.0f MB, store %.0f MB (head %.0f "
                "MB, %" PRIu64 " series, %" PRIu64 " not indexed)\n",
                day + 1, proc_cpu_s(), imp_cpu, r / 1e6, m.total / 1e6, m.head / 1e6, m.series,
                m.unpersisted);
    }
    if (r <= mem_peak.rss) return;
    mem_peak.rss = r;
    mem_peak.day = day;
    tsdb_memory(db, &mem_peak.m);
    struct mallinfo2 mi = mallinfo2();
    mem_peak.heap_used = mi.uordblks + mi.hblkhd;
    mem_peak.heap_arena = mi.arena;
    mem_peak.mmapped = mi.hblkhd;
}

typedef struct {
    backblaze_t *p;
    double gen_cpu; /* generator CPU seconds (main thread), to subtract */
} run_t;

static void feed(backblaze_t *p, const tbuf_t *t)
{
    backblaze_file_begin(p);
    const char *s = (const char *)t->p, *end = s + t->len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = (size_t)((nl ? nl : end) - s);
        if (backblaze_line(p, s, n)) {
            fprintf(stderr, "bench_import: import failed: %s\n", tsdb_last_error_detail());
            exit(1);
        }
        s += n + 1;
    }
    if (backblaze_flush(p)) {
        fprintf(stderr, "bench_import: flush failed\n");
        exit(1);
    }
}

static int count_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    (void)ctx;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i].nsamples;
    res->stored = k;
    return 0;
}

/* Parse-only id operations: a new id per resolve (the importer resolves each
 * series once), appends counted. */
static tsdb_sid_t count_next;
static int count_series_id(void *ctx, const tsdb_label_t *l, uint32_t n, tsdb_sid_t *sid,
                           int *created)
{
    (void)ctx;
    (void)l;
    (void)n;
    *sid = ++count_next;
    *created = 1;
    return 0;
}

static int count_append_sids(void *ctx, const tsdb_sid_sample_t *s, size_t n,
                             tsdb_append_result_t *res)
{
    (void)ctx;
    (void)s;
    res->stored = n;
    return 0;
}

static const ingest_sid_ops_t count_ops = {count_series_id, count_append_sids};

typedef struct {
    double cpu, wall;
    double close_cpu; /* final tsdb_flush + tsdb_close (process CPU) */
    double main_cpu;  /* the importing thread, close included */
    uint64_t rows, samples, stored, series, failures;
} result_t;

/* One run: synthetic (g != NULL) or the files' texts. db NULL = parse only. */
static void run(synth_t *g, tbuf_t *files, size_t nfiles, tsdb_t *db, result_t *r)
{
    ingest_totals_t tot;
    memset(&tot, 0, sizeof tot);
    ingest_sink_t sink = {count_append, NULL};
    if (db) ingest_store_sink(db, &sink);
    backblaze_options_t o;
    backblaze_options_init(&o);
    o.sink = &sink;
    o.sid_ops = db ? &ingest_store_sid_ops : &count_ops;
    o.totals = &tot;
    o.general_parse = getenv("BENCH_IMPORT_GENERAL_PARSE") != NULL; /* the row parser before */
    backblaze_t *p;
    if (backblaze_create(&o, &p)) abort();
    tbuf_t day = {0};
    double gen = 0, c0 = proc_cpu_s(), w0 = wall_s(), wgen = 0, m0 = thread_cpu_s();
    if (g) {
        synth_init(g, g->drives, g->days);
        for (unsigned d = 0; d < g->days; d++) {
            double t0 = thread_cpu_s(), wt0 = wall_s();
            synth_day(g, d, &day);
            gen += thread_cpu_s() - t0;
            wgen += wall_s() - wt0;
            feed(p, &day);
            if (db) {
                /* mallinfo2 walks malloc's free lists: not the import's CPU */
                double n0 = thread_cpu_s(), wn0 = wall_s();
                mem_note(db, d, n0 - m0 - gen);
                gen += thread_cpu_s() - n0;
                wgen += wall_s() - wn0;
            }
        }
        synth_free(g);
    } else {
        for (size_t f = 0; f < nfiles; f++)
            feed(p, &files[f]);
    }
    if (backblaze_finish(p)) abort();
    if (db) { /* as above: the last mallinfo2 walk is not the import's CPU either */
        double n0 = thread_cpu_s(), wn0 = wall_s();
        mem_note(db, g ? g->days : 0, n0 - m0 - gen);
        gen += thread_cpu_s() - n0;
        wgen += wall_s() - wn0;
    }
    double cc0 = proc_cpu_s();
    if (db) {
        tsdb_seal_closed_only(db, 0); /* seal the open partitions too */
        int rc = tsdb_flush(db);
        if (!rc) rc = tsdb_close(db);
        if (rc) {
            fprintf(stderr, "bench_import: closing the store: %s\n", tsdb_strerror(rc));
            exit(1);
        }
    }
    r->close_cpu = proc_cpu_s() - cc0;
    r->main_cpu = thread_cpu_s() - m0 - gen;
    r->cpu = proc_cpu_s() - c0 - gen;
    r->wall = wall_s() - w0 - wgen;
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    r->rows = st.rows;
    r->failures = st.failure_events;
    r->samples = tot.samples;
    r->stored = tot.stored;
    r->series = tot.series_created;
    backblaze_destroy(p);
    tbuf_free(&day);
}

static int read_file(const char *path, tbuf_t *t)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (tbuf_put(t, buf, n)) {
            fclose(f);
            return -1;
        }
    int bad = ferror(f);
    fclose(f);
    return bad ? -1 : 0;
}

static uint64_t du_bytes(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "du -sb '%s'", dir);
    FILE *f = popen(cmd, "r");
    unsigned long long b = 0;
    if (f) {
        if (fscanf(f, "%llu", &b) != 1) b = 0;
        pclose(f);
    }
    return b;
}

int main(int argc, char **argv)
{
    int ai = 1;
    const char *write_dir = NULL;
    memory_limit = ingest_default_memory_limit(); /* as `augur import` */
    /* BENCH_HEAD_PACKING=0: plain 16-byte heads, to compare in one binary */
    const char *hp = getenv("BENCH_HEAD_PACKING");
    if (hp && !strcmp(hp, "0")) tsdb_debug_head_packing(0);
    if (argc > 2 && !strcmp(argv[1], "--memory-limit")) {
        if (ingest_parse_bytes(argv[2], &memory_limit)) {
            fprintf(stderr, "bench_import: --memory-limit %s: want bytes (K/M/G suffix)\n", argv[2]);
            return 2;
        }
        argv += 2;
        argc -= 2;
    }
    tbuf_t *files = NULL;
    size_t nfiles = 0;
    if (argc > 1 && !strcmp(argv[1], "--write")) {
        if (argc < 3) return 2;
        write_dir = argv[2];
        ai = 3;
    } else if (argc > 1 && !strcmp(argv[1], "--files")) {
        nfiles = (size_t)(argc - 2);
        files = calloc(nfiles + 1, sizeof *files);
        for (size_t f = 0; f < nfiles; f++)
            if (read_file(argv[2 + f], &files[f])) {
                fprintf(stderr, "bench_import: cannot read %s\n", argv[2 + f]);
                return 1;
            }
        ai = argc;
    }
    unsigned drives = argc > ai ? (unsigned)atoi(argv[ai]) : 20000;
    unsigned days = argc > ai + 1 ? (unsigned)atoi(argv[ai + 1]) : 90;
    const char *store_arg = argc > ai + 2 ? argv[ai + 2] : NULL;
    if (!drives || !days || days > 3660) {
        fprintf(stderr, "usage: bench_import [--memory-limit N] [DRIVES [DAYS [STORE_DIR]]] | --files FILE... | "
                        "--write DIR [DRIVES [DAYS]]\n");
        return 2;
    }
    synth_t g, *gp = NULL;
    memset(&g, 0, sizeof g);
    if (write_dir) {
        mkdir(write_dir, 0755);
        tbuf_t day = {0};
        synth_init(&g, drives, days);
        for (unsigned d = 0; d < days; d++) {
            synth_day(&g, d, &day);
            char path[600], date[32];
            ingest_time_format((ingest_days_from_civil(2024, 1, 1) + d) * 86400000, date,
                               sizeof date);
            date[10] = 0;
            snprintf(path, sizeof path, "%s/%s.csv", write_dir, date);
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(day.p, 1, day.len, f) != day.len || fclose(f)) {
                fprintf(stderr, "bench_import: cannot write %s\n", path);
                return 1;
            }
        }
        printf("wrote %u day files, %" PRIu64 " rows, into %s\n", days, g.rows, write_dir);
        tbuf_free(&day);
        synth_free(&g);
        return 0;
    }
    if (!files) {
        g.drives = drives;
        g.days = days;
        gp = &g;
        printf("bench_import: synthetic, %u drives x %u days = %u rows, %zu columns\n", drives,
               days, drives * days, 11 + 2 * NIDS);
    } else {
        size_t bytes = 0;
        for (size_t f = 0; f < nfiles; f++)
            bytes += files[f].len;
        printf("bench_import: %zu files, %.1f MB\n", nfiles, (double)bytes / 1e6);
    }

    result_t pr, sr;
    run(gp, files, nfiles, NULL, &pr);
    printf("parse: %" PRIu64 " rows, %" PRIu64 " samples, %.2f CPU-s (%.2f s wall): %.0f rows/CPU-s, "
           "%.2f M samples/CPU-s\n",
           pr.rows, pr.samples, pr.cpu, pr.wall, (double)pr.rows / pr.cpu,
           (double)pr.samples / pr.cpu / 1e6);

    char dir[512];
    const char *base = getenv("TMPDIR");
    if (store_arg)
        snprintf(dir, sizeof dir, "%s", store_arg);
    else {
        snprintf(dir, sizeof dir, "%s/augur-bench-import-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) return 1;
    }
    tsdb_t *db;
    int rc = ingest_store_open(dir, INGEST_FMT_DAILY, memory_limit, &db);
    if (rc) {
        fprintf(stderr, "bench_import: cannot open store %s: %s\n", dir, tsdb_strerror(rc));
        return 1;
    }
    run(gp, files, nfiles, db, &sr);
    uint64_t du = du_bytes(dir);
    printf("store: %" PRIu64 " rows, %" PRIu64 " samples stored, %" PRIu64 " series, %" PRIu64
           " failure events, %.2f CPU-s (%.2f s wall, flush + close included): %.0f rows/CPU-s, "
           "%.2f M samples/CPU-s; %.2f bytes/sample on disk\n",
           sr.rows, sr.stored, sr.series, sr.failures, sr.cpu, sr.wall, (double)sr.rows / sr.cpu,
           (double)sr.stored / sr.cpu / 1e6, sr.stored ? (double)du / (double)sr.stored : 0.0);
    printf("store CPU split: importing thread %.2f s (final flush + close %.2f s), background "
           "flushes %.2f s\n",
           sr.main_cpu, sr.close_cpu, sr.cpu - sr.main_cpu);
    {
        const tsdb_memory_t *m = &mem_peak.m;
        double ps = m->series ? 1.0 / (double)m->series : 0;
        printf("memory at the highest RSS (after day %u of the store run): RSS %.0f MB = %.0f "
               "bytes/series; malloc in use %.0f MB (main arena %.0f MB, mmapped %.0f MB)\n",
               mem_peak.day + 1, mem_peak.rss / 1e6, (double)mem_peak.rss * ps,
               mem_peak.heap_used / 1e6, mem_peak.heap_arena / 1e6, mem_peak.mmapped / 1e6);
        printf("  store (bytes/series, %" PRIu64 " series): series structs %.0f, label copies %.0f "
               "(%" PRIu64 " series not in the index), tables %.0f, head %.0f (%.1f samples/series), "
               "frozen %.0f, WAL buffers %.0f; total %.0f MB; head budget %.0f MB\n",
               m->series, m->series_structs * ps, m->labels * ps, m->unpersisted, m->tables * ps,
               m->head * ps, m->head_samples * ps, m->frozen * ps, m->wal_buffers * ps,
               m->total / 1e6, m->head_budget / 1e6);
    }
    printf("store / parse CPU: %.2fx; store alone (store - parse): %.2f M samples/CPU-s\n",
           sr.cpu / pr.cpu,
           sr.cpu > pr.cpu ? (double)sr.stored / (sr.cpu - pr.cpu) / 1e6 : 0.0);
    if (!store_arg) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) return 1;
    }
    for (size_t f = 0; f < nfiles; f++)
        tbuf_free(&files[f]);
    free(files);
    tsdb_thread_cleanup();
    return 0;
}
