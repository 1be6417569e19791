/*
 * bench_recovery.c — cost of reopening a store after a crash with a large
 * WAL (WAL replay), against the cost of appending the same samples.
 *
 *   bench_recovery build DIR [--shape rw|import] [--series N] [--samples M]
 *                  [--kill-in-flush]
 *   bench_recovery open DIR [--ro] [--verify --shape S --series N --samples M]
 *
 * build appends N series x M samples into a new store DIR, then ends the
 * process with _exit() without closing the store: what kill -9 leaves (every
 * WAL record was written; a background flush may be cut anywhere).
 *
 *   --shape rw      (default) remote-write after a long outage of the flusher:
 *                   15 s samples, 2 h partitions, no background thread, so
 *                   every sample is still in the WAL; appends of 2,000
 *                   samples (one sample of each of 2,000 series).
 *   --shape import  the Backblaze import: daily samples, 32-day partitions,
 *                   tsdb_seal_closed_only, the background flush thread on,
 *                   periodic fsync, appends by series id of 59 samples (one
 *                   drive's row), day by day; the WAL holds what the import
 *                   mode keeps (the open partition, and the segments behind
 *                   the held checkpoint).
 *   --kill-in-flush (import shape) after the last append, a tsdb_flush
 *                   (the import mode on: the open partition stays in the
 *                   head, its segments behind the checkpoint); then turn the
 *                   mode off and start the final tsdb_flush as augur import
 *                   does, and die once it has committed blocks for half the
 *                   series groups: the flush commits along the way, the
 *                   checkpoint last, so the replay meets samples that are
 *                   already sealed. 84 days end a 32-day partition.
 *
 * open opens DIR (replay, then the seal of the replayed head) and closes it.
 * --ro opens it read-only: the replay alone, nothing written. Each prints one
 * line: CPU seconds (user + system, all threads), peak RSS, samples, and
 * samples per CPU second. --verify (with build's arguments) then reads every
 * series back and checks that each acknowledged sample is there exactly once,
 * bit for bit (not timed). Run open on a copy of the built store (cp -a) to
 * compare two builds on the same input.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tsdb/tsdb.h"

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static uint64_t dir_bytes(const char *dir, const char *sub)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "du -sb --apparent-size '%s/%s' 2>/dev/null", dir, sub);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    unsigned long long v = 0;
    if (fscanf(p, "%llu", &v) != 1) v = 0;
    pclose(p);
    return v;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_recovery build DIR [--shape rw|import] [--series N] "
                    "[--samples M] [--kill-in-flush]\n       bench_recovery open DIR [--ro] [--verify --shape S "
                    "--series N --samples M]\n");
    exit(2);
}

#define ROW 59 /* series per drive (import shape) */
#define T0 INT64_C(1704067200000) /* 2024-01-01 */

/* The m-th sample of series s: counters, gauges with a few decimals, constants. */
static double value_of(uint64_t s, uint64_t m)
{
    switch (s % 3) {
    case 0: return (double)(m * (s % 97 + 1));
    case 1: return (double)((m * 7 + s) % 1000) / 100.0;
    default: return 100.0;
    }
}

/* Every series holds exactly samples m = 0 .. nsamples-1, bit for bit. */
static int verify(tsdb_t *db, int import, uint64_t nseries, uint64_t nsamples)
{
    tsdb_reader_t *r;
    if (tsdb_reader_open(db, &r)) return 1;
    tsdb_matcher_t mt = {TSDB_MATCH_RE, "job", ".+"};
    tsdb_sids_t ids = {0};
    int bad = 0;
    uint64_t total = 0;
    if (tsdb_select(r, &mt, 1, INT64_MIN, INT64_MAX, &ids)) bad = 1;
    if (!bad && ids.n != nseries) {
        fprintf(stderr, "verify: %zu series, want %" PRIu64 "\n", ids.n, nseries);
        bad = 1;
    }
    const int64_t step = import ? 86400000 : 15000;
    for (size_t i = 0; i < ids.n && bad < 10; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(r, ids.ids[i], &l, &nl) || nl != 3) {
            bad++;
            continue;
        }
        /* sorted by name: __name__, instance, job | __name__, job, serial */
        uint64_t k = strtoull(l[0].value.ptr + (import ? 6 : 7), NULL, 10);
        uint64_t g = strtoull(l[import ? 2 : 1].value.ptr + (import ? 1 : 5), NULL, 10);
        uint64_t s = import ? g * ROW + k : g * 500 + k;
        tsdb_iter_t *it;
        if (tsdb_iter_open(r, ids.ids[i], INT64_MIN, INT64_MAX, &it)) {
            bad++;
            continue;
        }
        const tsdb_sample_t *v;
        size_t n;
        uint64_t m = 0;
        int rc;
        while ((rc = tsdb_iter_next(it, &v, &n)) == 1)
            for (size_t j = 0; j < n; j++, m++) {
                double want = value_of(s, m);
                if (m >= nsamples || v[j].t != T0 + (int64_t)m * step ||
                    memcmp(&v[j].v, &want, 8)) {
                    if (bad < 10)
                        fprintf(stderr, "verify: series %" PRIu64 " sample %" PRIu64
                                        " t=%" PRId64 " v=%g\n", s, m, v[j].t, v[j].v);
                    bad++;
                }
            }
        tsdb_iter_close(it);
        if (rc < 0 || m != nsamples) {
            if (bad < 10)
                fprintf(stderr, "verify: series %" PRIu64 ": %" PRIu64 " samples (rc %d)\n", s,
                        m, rc);
            bad++;
        }
        total += m;
    }
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    printf("verify %s: %" PRIu64 " samples read\n", bad ? "FAILED" : "ok", total);
    return bad ? 1 : 0;
}

static volatile int flush_done;

/* Resolve series first .. first + n - 1 right before their first samples, as
 * the importer does per drive (a series resolved but not yet logged makes
 * every append reserve WAL room for its labels). */
static int resolve(tsdb_t *db, int import, tsdb_sid_t *sid, uint64_t first, size_t n)
{
    int rc;
    for (uint64_t i = first; i < first + n; i++) {
        char name[32], inst[32];
        if (import) {
            snprintf(name, sizeof name, "smart_%" PRIu64, i % ROW);
            snprintf(inst, sizeof inst, "Z%09" PRIu64, i / ROW);
        } else {
            snprintf(name, sizeof name, "metric_%" PRIu64, i % 500);
            snprintf(inst, sizeof inst, "node-%05" PRIu64, i / 500);
        }
        tsdb_label_t l[3] = {{{"__name__", 8}, {name, (uint32_t)strlen(name)}},
                             {{import ? "serial" : "instance", import ? 6u : 8u},
                              {inst, (uint32_t)strlen(inst)}},
                             {{"job", 3}, {import ? "bb" : "node", import ? 2u : 4u}}};
        if ((rc = tsdb_series_id(db, l, 3, &sid[i], NULL))) {
            fprintf(stderr, "series id: %s\n", tsdb_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void *flush_main(void *arg)
{
    int rc = tsdb_flush(arg);
    flush_done = 1;
    printf("kill-in-flush: the flush ended (rc %d) before the kill\n", rc);
    fflush(stdout);
    return NULL;
}

static int build(const char *dir, int import, uint64_t nseries, uint64_t nsamples, int kill_flush)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    if (import) {
        o.sync_mode = TSDB_SYNC_PERIODIC;
        o.ooo_window_ms = INT64_C(400) * 86400000;
        o.partition_ms = INT64_C(32) * 86400000;
    } else {
        o.sync_mode = TSDB_SYNC_PERIODIC; /* CPU is measured; spare the disk 100k fsyncs */
        o.flush_interval_ms = -1;         /* the flusher is stuck: everything stays in the WAL */
    }
    tsdb_t *db;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) {
        fprintf(stderr, "open %s: %s (%s)\n", dir, tsdb_strerror(rc), tsdb_last_error_detail());
        return 1;
    }
    if (import) tsdb_seal_closed_only(db, 1);
    tsdb_sid_t *sid = malloc(nseries * sizeof *sid);
    if (!sid) return 1;
    double c0 = cpu_s(), w0 = wall_s();
    size_t batch = import ? ROW : 2000;
    tsdb_sid_sample_t *b = malloc(batch * sizeof *b);
    if (!b) return 1;
    const int64_t t0 = T0;
    const int64_t step = import ? 86400000 : 15000;
    uint64_t stored = 0;
    for (uint64_t m = 0; m < nsamples; m++) {
        int64_t t = t0 + (int64_t)m * step;
        for (uint64_t i = 0; i < nseries; i += batch) {
            size_t n = nseries - i < batch ? (size_t)(nseries - i) : batch;
            if (m == 0 && resolve(db, import, sid, i, n)) return 1;
            for (size_t k = 0; k < n; k++) {
                uint64_t s = i + k;
                b[k].sid = sid[s];
                b[k].t = t;
                b[k].v = value_of(s, m);
            }
            tsdb_append_result_t r;
            if ((rc = tsdb_append_sids(db, b, n, NULL, &r))) {
                fprintf(stderr, "append: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
                return 1;
            }
            stored += r.stored;
        }
    }
    double c1 = cpu_s(), w1 = wall_s();
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    uint64_t wal = dir_bytes(dir, "wal");
    printf("build %s shape=%s series=%" PRIu64 " samples=%" PRIu64 " append_cpu_s=%.2f "
           "wall_s=%.2f samples_per_cpu_s=%.0f head=%" PRIu64 " sealed=%" PRIu64
           " wal_bytes=%" PRIu64 " peak_rss_mb=%.0f\n",
           dir, import ? "import" : "rw", nseries, stored, c1 - c0, w1 - w0,
           stored / (c1 - c0), st.head_samples, st.samples - st.head_samples, wal, peak_rss_mb());
    fflush(stdout);
    if (kill_flush) {
        /* settle: no background flush in progress, the closed partitions
         * sealed, the open one in the head (its segments held) */
        if ((rc = tsdb_flush(db))) return 1;
        tsdb_stats(db, &st);
        uint64_t b0 = st.blocks, target = b0 + nseries / 128 / 2;
        printf("kill-in-flush: %" PRIu64 " samples in the head, %" PRIu64 " blocks; final flush "
               "killed at %" PRIu64 " blocks\n", st.head_samples, b0, target);
        tsdb_seal_closed_only(db, 0);
        pthread_t th;
        if (pthread_create(&th, NULL, flush_main, db)) return 1;
        while (!flush_done) {
            tsdb_stats(db, &st);
            if (st.blocks >= target) break;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        fflush(stdout);
    }
    _exit(0); /* no tsdb_close: a crash */
}

#ifdef TSDB_HAVE_REPLAY_PROGRESS
static void on_progress(void *ctx, const tsdb_replay_progress_t *p)
{
    if (p->done) *(tsdb_replay_progress_t *)ctx = *p;
}
#endif

static int open_store(const char *dir, int ro, int import, uint64_t nseries, uint64_t nsamples,
                      int check)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.read_only = ro;
    o.flush_interval_ms = -1; /* measure the open, not background work after it */
#ifdef TSDB_HAVE_REPLAY_PROGRESS
    tsdb_replay_progress_t pg = {0};
    o.replay_progress = on_progress;
    o.replay_progress_ctx = &pg;
#endif
    uint64_t wal = dir_bytes(dir, "wal");
    double c0 = cpu_s(), w0 = wall_s();
    tsdb_t *db;
    int rc = tsdb_open(dir, &o, &db);
    double c1 = cpu_s(), w1 = wall_s();
    if (rc) {
        fprintf(stderr, "open %s: %s (%s)\n", dir, tsdb_strerror(rc), tsdb_last_error_detail());
        return 1;
    }
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    double rss = peak_rss_mb();
    int vrc = check ? verify(db, import, nseries, nsamples) : 0;
    double cv = cpu_s();
    rc = tsdb_close(db);
    double c2 = cpu_s();
    printf("open%s %s wal_bytes=%" PRIu64 " open_cpu_s=%.2f wall_s=%.2f samples=%" PRIu64
           " head=%" PRIu64 " series=%" PRIu64 " head_samples_per_cpu_s=%.0f peak_rss_mb=%.0f "
           "close_cpu_s=%.2f close_rc=%d\n",
           ro ? "-ro" : "", dir, wal, c1 - c0, w1 - w0, st.samples, st.head_samples, st.series,
           (ro ? st.head_samples : st.samples) / (c1 - c0), rss, c2 - cv, rc);
#ifdef TSDB_HAVE_REPLAY_PROGRESS
    if (pg.done)
        printf("  replay: %" PRIu64 " segments, %" PRIu64 " samples to the head, %" PRIu64
               " skipped as sealed (hold), %" PRIu64 " found in sealed blocks, %.2f s wall\n",
               pg.segments, pg.samples, pg.skipped, pg.dropped, pg.elapsed_s);
#endif
    return rc || vrc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) usage();
    const char *mode = argv[1], *dir = argv[2];
    int import = 0, ro = 0, check = 0, kill_flush = 0;
    uint64_t nseries = 100000, nsamples = 100;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            const char *s = argv[++i];
            if (!strcmp(s, "import")) import = 1;
            else if (strcmp(s, "rw")) usage();
        } else if (!strcmp(argv[i], "--series") && i + 1 < argc) {
            nseries = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--samples") && i + 1 < argc) {
            nsamples = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--ro")) {
            ro = 1;
        } else if (!strcmp(argv[i], "--kill-in-flush")) {
            kill_flush = 1;
        } else if (!strcmp(argv[i], "--verify")) {
            check = 1;
        } else {
            usage();
        }
    }
    if (!nseries || !nsamples) usage();
    if (kill_flush && !import) usage();
    if (!strcmp(mode, "build")) return build(dir, import, nseries, nsamples, kill_flush);
    if (!strcmp(mode, "open")) return open_store(dir, ro, import, nseries, nsamples, check);
    usage();
    return 2;
}
