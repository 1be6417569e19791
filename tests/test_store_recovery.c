/*
 * test_store_recovery.c — reopening after a crash (WAL replay).
 *
 * - A multi-segment WAL in the import mode (tsdb_seal_closed_only): flushes
 *   keep the checkpoint behind the open partitions and, once the kept
 *   samples pass twice the head limit, seal other series whole, so the
 *   segments replayed hold samples that are already sealed. After kill -9
 *   every acknowledged sample is present exactly once, bit for bit, with the
 *   right count, read-only (replay alone) and read-write (replay + seal).
 * - The same with kills at random moments while background flushes run.
 * - A torn last record: the records before it are replayed, it is not; a
 *   bad record in an older segment is damage and is counted.
 * - The progress callback: called per segment with growing counts.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "ingest/import_batch.h"
#include "tsdb/tsdb.h"

#define T0 INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */
#define HOUR INT64_C(3600000)
#define DAY (24 * HOUR)

#define NSER 300

static double value_of(uint32_t s, int64_t h)
{
    return s % 2 ? (double)(h * (s + 1)) : (double)((h * 7 + s) % 1000) / 100.0;
}

static tsdb_sid_t series_of(tsdb_t *db, uint32_t i)
{
    char name[16], dev[16];
    snprintf(name, sizeof name, "m%u", i % 30);
    snprintf(dev, sizeof dev, "d%u", i / 30);
    tsdb_label_t l[2] = {{{"__name__", 8}, {name, (uint32_t)strlen(name)}},
                         {{"dev", 3}, {dev, (uint32_t)strlen(dev)}}};
    tsdb_sid_t sid = 0;
    if (tsdb_series_id(db, l, 2, &sid, NULL)) return 0;
    return sid;
}

static void import_options(tsdb_options_t *o, int bg)
{
    tsdb_options_init(o);
    o->sync_mode = TSDB_SYNC_PERIODIC;
    o->ooo_window_ms = 400 * DAY;
    o->partition_ms = 4 * DAY;
    o->wal_segment_bytes = 64 * 1024; /* many segments */
    o->head_max_samples = 1000;       /* kept samples soon pass 2 x 16 x NSER */
    o->flush_interval_ms = bg ? 20 : -1;
}

/* Child: hourly samples of NSER series, an append per hour, acknowledged
 * hours written to fd (4 bytes each); without bg, a tsdb_flush every 31
 * hours. Stops after `hours` and waits to be killed. */
static int child_nowal; /* the child opens with TSDB_SYNC_NONE (no WAL) */

static void import_child(const char *dir, int fd, int hours, int bg)
{
    tsdb_options_t o;
    import_options(&o, bg);
    if (child_nowal) o.sync_mode = TSDB_SYNC_NONE;
    tsdb_t *db = NULL;
    if (tsdb_open(dir, &o, &db)) _exit(3);
    tsdb_seal_closed_only(db, 1);
    tsdb_sid_t sid[NSER];
    for (uint32_t i = 0; i < NSER; i++)
        if (!(sid[i] = series_of(db, i))) _exit(3);
    tsdb_sid_sample_t b[NSER];
    for (int32_t h = 0; h < hours; h++) {
        for (uint32_t i = 0; i < NSER; i++) {
            b[i].sid = sid[i];
            b[i].t = T0 + h * HOUR;
            b[i].v = value_of(i, h);
        }
        tsdb_append_result_t r;
        if (tsdb_append_sids(db, b, NSER, NULL, &r) || r.stored != NSER) _exit(3);
        if (write(fd, &h, 4) != 4) _exit(3);
        if (!bg && h % 31 == 30 && tsdb_flush(db)) _exit(3);
    }
    pause();
    _exit(0);
}

static int wal_segments(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/wal", dir);
    DIR *d = opendir(p);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".wal")) n++;
    closedir(d);
    return n;
}

typedef struct {
    int calls, done_calls;
    uint64_t last_seg, last_samples, nseg;
    uint64_t dropped, damaged;
    int order_ok;
} prog_t;

static void on_progress(void *ctx, const tsdb_replay_progress_t *p)
{
    prog_t *pg = ctx;
    pg->calls++;
    if (p->segments_done < pg->last_seg || p->samples < pg->last_samples ||
        p->segments_done > p->segments)
        pg->order_ok = 0;
    pg->last_seg = p->segments_done;
    pg->last_samples = p->samples;
    pg->nseg = p->segments;
    if (p->done) {
        pg->done_calls++;
        pg->dropped = p->dropped;
        pg->damaged = p->damaged;
    }
}

/* Every series holds exactly hours 0 .. h - 1 for one h > acked (appends
 * after the one acknowledged last may have landed before the kill), bit for
 * bit, each once. Returns h. */
static int check_store_p(const char *dir, int ro, int acked, prog_t *pg)
{
    tsdb_options_t o;
    import_options(&o, 0);
    o.read_only = ro;
    if (pg) {
        memset(pg, 0, sizeof *pg);
        pg->order_ok = 1;
        o.replay_progress = on_progress;
        o.replay_progress_ctx = pg;
    }
    tsdb_t *db = NULL;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) fprintf(stderr, "open: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
    assert_int_equal(rc, 0);
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    int hours = -1;
    uint64_t total = 0;
    for (uint32_t i = 0; i < NSER; i++) {
        char name[16], dev[16];
        snprintf(name, sizeof name, "m%u", i % 30);
        snprintf(dev, sizeof dev, "d%u", i / 30);
        tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", name}, {TSDB_MATCH_EQ, "dev", dev}};
        tsdb_sids_t ids = {0};
        assert_int_equal(tsdb_select(r, m, 2, INT64_MIN, INT64_MAX, &ids), 0);
        assert_int_equal(ids.n, 1);
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, ids.ids[0], INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *s;
        size_t k;
        int64_t h = 0;
        while ((rc = tsdb_iter_next(it, &s, &k)) == 1)
            for (size_t j = 0; j < k; j++, h++) {
                double want = value_of(i, h);
                if (s[j].t != T0 + h * HOUR || memcmp(&s[j].v, &want, 8))
                    fail_msg("series %u sample %" PRId64 ": t=%" PRId64 " v=%g", i, h,
                             s[j].t, s[j].v);
            }
        assert_int_equal(rc, 0);
        tsdb_iter_close(it);
        tsdb_sids_free(&ids);
        /* the child may have gone on appending before the kill landed */
        if (h < acked + 1)
            fail_msg("series %u: %" PRId64 " samples, %d acknowledged", i, h, acked + 1);
        if (hours < 0) hours = (int)h;
        assert_int_equal(h, hours); /* a record is all or nothing */
        total += (uint64_t)h;
    }
    tsdb_reader_close(r);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.series, NSER);
    if (!ro) assert_int_equal(st.samples, total); /* nothing counted twice */
    assert_int_equal(tsdb_close(db), 0);
    return hours;
}

static int check_store(const char *dir, int ro, int acked)
{
    return check_store_p(dir, ro, acked, NULL);
}

/* Kill the child after it acknowledged `kill_after` hours (< 0: when it is
 * done); returns the last hour acknowledged. */
static int run_child(const char *dir, int hours, int bg, int kill_after)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        import_child(dir, p[1], hours, bg);
    }
    close(p[1]);
    int32_t h, last = -1;
    while (read(p[0], &h, 4) == 4) {
        last = h;
        if (last == hours - 1 || (kill_after >= 0 && last >= kill_after)) break;
    }
    kill(pid, SIGKILL);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
    return last;
}

static void test_hold_multiseg_kill9(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    /* 4-day partitions start at T0 + 2 d (aligned to the epoch): the last
     * flush, at hour 309, keeps hours 240-309 of the first series (70 x 300
     * samples would pass twice the head limit, 9,600) and seals the others
     * whole, while the segments that logged them stay behind the checkpoint */
    int hours = 24 * 13;
    int acked = run_child(dir, hours, 0, -1);
    assert_int_equal(acked, hours - 1);
    int nseg = wal_segments(dir);
    assert_true(nseg >= 3); /* segments behind the held checkpoint */
    /* the replay alone (nothing written), twice: it must not change the store */
    prog_t pg;
    assert_int_equal(check_store_p(dir, 1, acked, &pg), hours);
    assert_true(pg.dropped > 1000); /* sealed samples met again in the WAL */
    assert_int_equal(pg.done_calls, 1);
    assert_int_equal(pg.damaged, 0);
    assert_int_equal(wal_segments(dir), nseg);
    assert_int_equal(check_store(dir, 1, acked), hours);
    assert_int_equal(check_store_p(dir, 0, acked, &pg), hours); /* replay + seal */
    assert_true(pg.dropped > 1000);
    assert_int_equal(check_store(dir, 0, acked), hours); /* from blocks */
    tu_rmrf(dir);
}

/* Background flushes in the import mode, killed at random moments. */
static void test_hold_random_kill9(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("hold_random_kill9", 20261129);
    srand((unsigned)seed);
    long kills = tu_env_long("AUGUR_CRASH_KILLS", 4);
    for (long k = 0; k < kills; k++) {
        char dir[256];
        assert_non_null(tu_mkdtemp(dir, sizeof dir));
        int hours = 24 * 14;
        int acked = run_child(dir, hours, 1, 24 + rand() % (hours - 48));
        assert_true(acked >= 0);
        check_store(dir, 1, acked);
        int got = check_store(dir, 0, acked);
        assert_int_equal(check_store(dir, 0, acked), got);
        tu_rmrf(dir);
    }
}

/* Oldest (first = 1) or newest WAL segment path into buf; the number of records in it into *nrec
 * and the offset of the last one into *last. */
static void pick_segment(const char *dir, int first, char *buf, size_t n, int *nrec, off_t *last)
{
    char p[512];
    snprintf(p, sizeof p, "%s/wal", dir);
    DIR *d = opendir(p);
    assert_non_null(d);
    char best[300] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".wal") &&
            (!best[0] || (first ? strcmp(e->d_name, best) < 0 : strcmp(e->d_name, best) > 0)))
            snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    assert_true(best[0]);
    snprintf(buf, n, "%.511s/%.299s", p, best);
    int fd = open(buf, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t h[8];
    off_t off = 0;
    *nrec = 0;
    while (pread(fd, h, 8, off) == 8) {
        uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
                       (uint32_t)h[3] << 24;
        if (!len) break;
        *last = off;
        (*nrec)++;
        off += 8 + len;
    }
    close(fd);
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* A torn last record (its write cut short: the checksum fails) is not
 * replayed, everything before it is, and the store opens. */
static void test_torn_tail(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int hours = 40;
    int acked = run_child(dir, hours, 0, -1); /* one flush at hour 30 */
    assert_int_equal(acked, hours - 1);
    char seg[900];
    int nrec;
    off_t last = 0;
    pick_segment(dir, 0, seg, sizeof seg, &nrec, &last);
    assert_true(nrec >= 2);
    flip_byte(seg, last + 20);
    /* the last hour is gone (its record is the torn one), the rest is there */
    prog_t pg;
    assert_int_equal(check_store_p(dir, 1, acked - 1, &pg), hours - 1);
    assert_int_equal(pg.damaged, 0); /* a torn tail is not damage */
    assert_int_equal(check_store(dir, 0, acked - 1), hours - 1);
    assert_int_equal(check_store(dir, 0, acked - 1), hours - 1);
    tu_rmrf(dir);

    /* a bad record in a segment that is not the newest: counted as damage,
     * the open still succeeds */
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    hours = 24 * 13;
    run_child(dir, hours, 0, -1);
    pick_segment(dir, 1, seg, sizeof seg, &nrec, &last);
    assert_true(nrec >= 2);
    flip_byte(seg, last + 20);
    tsdb_options_t o;
    import_options(&o, 0);
    memset(&pg, 0, sizeof pg);
    o.replay_progress = on_progress;
    o.replay_progress_ctx = &pg;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    assert_int_equal(pg.damaged, 1);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

static void test_progress(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int hours = 24 * 11;
    run_child(dir, hours, 0, -1);
    int nseg = wal_segments(dir);
    tsdb_options_t o;
    import_options(&o, 0);
    prog_t pg = {0};
    pg.order_ok = 1;
    o.replay_progress = on_progress;
    o.replay_progress_ctx = &pg;
    o.replay_progress_ms = 0; /* every segment */
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    assert_true(pg.order_ok);
    assert_int_equal(pg.done_calls, 1);
    assert_true(pg.calls >= nseg); /* one per segment, then the final one */
    assert_int_equal(pg.last_seg, pg.nseg);
    assert_true(pg.nseg >= (uint64_t)nseg - 1 && pg.nseg <= (uint64_t)nseg);
    assert_true(pg.last_samples > 0);
    assert_int_equal(tsdb_close(db), 0);
    /* nothing to replay: no calls */
    pg = (prog_t){0};
    pg.order_ok = 1;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    assert_int_equal(pg.calls, 0);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

static uint64_t wal_bytes(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/wal", dir);
    DIR *d = opendir(p);
    if (!d) return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char f[900];
        struct stat st;
        snprintf(f, sizeof f, "%.511s/%.299s", p, e->d_name);
        if (strstr(e->d_name, ".wal") && !stat(f, &st)) n += (uint64_t)st.st_size;
    }
    closedir(d);
    return n;
}

/* Series resolved by id whose samples all stay in the head (import mode):
 * their labels must not be counted again as "to log" at every flush, and an
 * append reserves WAL room for its own series' labels only. Either mistake
 * makes appends start new preallocated segments as big as all the unlogged
 * labels (a 1.2 M series import filled 70 GB of disk in seconds). */
static void test_hold_wal_reservation(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_options_t o;
    import_options(&o, 0);
    o.wal_segment_bytes = 64 * 1024; /* below the 5,000 label records (~230 KB) */
    o.partition_ms = 32 * DAY;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    tsdb_seal_closed_only(db, 1);
    enum { NS = 5000 };
    static tsdb_sid_t sid[NS];
    static tsdb_sid_sample_t b[NS];
    /* 10 days in one partition, 4 flushes a day: everything stays in the head */
    for (int day = 0; day < 10; day++) {
        for (uint32_t q = 0; q < 4; q++) {
            for (uint32_t i = q * NS / 4; i < (q + 1) * NS / 4; i++) {
                if (day == 0) {
                    char name[16], dev[48];
                    snprintf(name, sizeof name, "m%u", i % 30);
                    snprintf(dev, sizeof dev, "device-with-a-long-name-%u", i / 30);
                    tsdb_label_t l[2] = {{{"__name__", 8}, {name, (uint32_t)strlen(name)}},
                                         {{"dev", 3}, {dev, (uint32_t)strlen(dev)}}};
                    assert_int_equal(tsdb_series_id(db, l, 2, &sid[i], NULL), 0);
                }
                b[i].sid = sid[i];
                b[i].t = T0 + day * DAY;
                b[i].v = day;
            }
            for (uint32_t i = q * NS / 4; i < (q + 1) * NS / 4; i += 50)
                assert_int_equal(tsdb_append_sids(db, b + i, 50, NULL, NULL), 0);
            assert_int_equal(tsdb_flush(db), 0);
        }
    }
    /* 50,000 samples and 5,000 label sets are ~1 MB of records, in 64 KiB
     * segments, all held. Before the fixes: 2.4 GB (labels counted again at
     * every flush), 250 MB (each append reserving room for every unlogged
     * label set, more than a segment: a new segment per append). */
    uint64_t w = wal_bytes(dir);
    if (w > UINT64_C(16) << 20) fail_msg("WAL holds %" PRIu64 " bytes", w);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.head_samples, 10 * NS);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* A flush commits along the way (blocks, series) and writes the checkpoint
 * and "block_seq" last. Killed in between, with samples appended after its
 * freeze (in the same partitions, only in the WAL): the reopened store's
 * flush must not reuse the dead flush's block seq, or its blocks replace
 * the index entries of the dead flush's blocks, whose samples the replay
 * dropped as sealed (2,816 of 80,000 acknowledged samples lost before). */
#define KF_NS 40000

static void *kf_flush(void *db)
{
    tsdb_flush(db);
    return NULL;
}

static void kf_child(const char *dir, int fd)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    tsdb_t *db = NULL;
    if (tsdb_open(dir, &o, &db)) _exit(3);
    static tsdb_sid_t sid[KF_NS];
    static tsdb_sid_sample_t b[KF_NS];
    for (uint32_t i = 0; i < KF_NS; i++) {
        if (!(sid[i] = series_of(db, i))) _exit(3);
        b[i].sid = sid[i];
        b[i].t = T0;
        b[i].v = 1;
    }
    if (tsdb_append_sids(db, b, KF_NS, NULL, NULL)) _exit(3);
    tsdb_stats_t st;
    if (tsdb_stats(db, &st)) _exit(3);
    uint64_t b0 = st.blocks;
    pthread_t th;
    if (pthread_create(&th, NULL, kf_flush, db)) _exit(3);
    struct timespec ts = {0, 20000000}; /* the flush freezes the head at once */
    nanosleep(&ts, NULL);
    for (uint32_t i = 0; i < KF_NS; i++) {
        b[i].t = T0 + 1000;
        b[i].v = 2;
    }
    if (tsdb_append_sids(db, b, KF_NS, NULL, NULL)) _exit(3);
    do { /* some blocks committed: kill now */
        if (tsdb_stats(db, &st)) _exit(3);
    } while (st.blocks <= b0 + 20);
    if (write(fd, "k", 1) != 1) _exit(3);
    pause();
    _exit(0);
}

static void test_kill_in_flush_seq(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        kf_child(dir, p[1]);
    }
    close(p[1]);
    char k;
    ssize_t got = read(p[0], &k, 1);
    kill(pid, SIGKILL);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(got, 1);
    for (int pass = 0; pass < 2; pass++) { /* replay + seal, then from blocks */
        tsdb_options_t o;
        tsdb_options_init(&o);
        o.flush_interval_ms = -1;
        tsdb_t *db = NULL;
        assert_int_equal(tsdb_open(dir, &o, &db), 0);
        tsdb_reader_t *r;
        assert_int_equal(tsdb_reader_open(db, &r), 0);
        tsdb_matcher_t m = {TSDB_MATCH_RE, "dev", ".+"};
        tsdb_sids_t ids = {0};
        assert_int_equal(tsdb_select(r, &m, 1, INT64_MIN, INT64_MAX, &ids), 0);
        assert_int_equal(ids.n, KF_NS);
        uint64_t bad = 0;
        for (size_t i = 0; i < ids.n; i++) {
            tsdb_iter_t *it;
            assert_int_equal(tsdb_iter_open(r, ids.ids[i], INT64_MIN, INT64_MAX, &it), 0);
            const tsdb_sample_t *s;
            size_t n;
            int64_t c = 0;
            while (tsdb_iter_next(it, &s, &n) == 1)
                for (size_t j = 0; j < n; j++, c++)
                    if (c > 1 || s[j].t != T0 + c * 1000 || s[j].v != (double)(c + 1)) bad++;
            if (c != 2) bad++;
            tsdb_iter_close(it);
        }
        tsdb_sids_free(&ids);
        tsdb_reader_close(r);
        if (bad) fail_msg("pass %d: %" PRIu64 " series without their 2 samples", pass, bad);
        tsdb_stats_t sst;
        assert_int_equal(tsdb_stats(db, &sst), 0);
        assert_int_equal(sst.samples, 2 * KF_NS); /* the dead flush's blocks counted once */
        assert_int_equal(tsdb_close(db), 0);
    }
    tu_rmrf(dir);
}

/* `augur import` reopening a store with a WAL (left by `augur serve`, or by
 * an import from before imports stopped writing one) says that it is
 * replaying the WAL (tsdb_replay_progress_stderr through ingest_store_open),
 * and the store opens with every acknowledged sample */
static void test_import_reopen_progress(void **state)
{
    (void)state;
    char dir[256], log[300];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int acked = run_child(dir, 24 * 6, 0, 24 * 5);
    assert_true(acked >= 24 * 5);
    snprintf(log, sizeof log, "%s.stderr", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, 2) == 2);
    close(fd);
    tsdb_t *db = NULL;
    int rc = ingest_store_open(dir, INGEST_FMT_DAILY, 0, &db);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(rc, 0);
    tsdb_seal_closed_only(db, 0);
    assert_int_equal(tsdb_close(db), 0);
    /* the import writes no WAL of its own, and its flush retired the old one */
    assert_true(wal_bytes(dir) == 0);
    char buf[2048] = {0};
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    unlink(log);
    buf[n] = 0;
    const char *line = strstr(buf, "augur import: WAL replayed: ");
    assert_non_null(line);
    unsigned long long segs = 0, smp = 0;
    assert_int_equal(sscanf(line, "augur import: WAL replayed: %llu segments, %llu samples", &segs, &smp), 2);
    assert_true(segs >= 1);
    assert_true(smp >= 1);
    check_store(dir, 1, acked);
    tu_rmrf(dir);
}

/* TSDB_SYNC_NONE (augur import): nothing goes to a WAL; a kill -9 loses
 * exactly the samples no flush sealed, leaves a store that opens cleanly
 * with every series a gap-free prefix of what was appended, and running the
 * same appends again completes it: what was sealed comes back as
 * duplicates, the rest is stored, and the end result is exact. */
static void test_nowal_kill9_rerun(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int hours = 24 * 13;
    child_nowal = 1;
    int acked = run_child(dir, hours, 0, -1);
    child_nowal = 0;
    assert_int_equal(acked, hours - 1);
    assert_true(wal_bytes(dir) == 0);

    tsdb_options_t o;
    import_options(&o, 0);
    o.sync_mode = TSDB_SYNC_NONE;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    uint64_t sealed = st.samples;
    /* the flushes every 31 hours sealed closed partitions: something, not all */
    assert_true(sealed > 0);
    assert_true(sealed < (uint64_t)NSER * (uint64_t)hours);
    /* what is there is a prefix of every series, bit for bit */
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    uint64_t seen = 0;
    for (uint32_t i = 0; i < NSER; i++) {
        tsdb_sid_t sid = series_of(db, i);
        assert_true(sid != 0);
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, sid, INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *sm;
        size_t k;
        int64_t h = 0;
        int rc;
        while ((rc = tsdb_iter_next(it, &sm, &k)) == 1)
            for (size_t j = 0; j < k; j++, h++) {
                double want = value_of(i, h);
                if (sm[j].t != T0 + h * HOUR || memcmp(&sm[j].v, &want, 8))
                    fail_msg("series %u sample %" PRId64 ": t=%" PRId64, i, h, sm[j].t);
            }
        assert_int_equal(rc, 0);
        tsdb_iter_close(it);
        seen += (uint64_t)h;
    }
    tsdb_reader_close(r);
    assert_true(seen == sealed);
    /* the rerun */
    tsdb_seal_closed_only(db, 1);
    uint64_t stored = 0, dup = 0;
    for (int32_t h = 0; h < hours; h++) {
        tsdb_sid_sample_t b[NSER];
        for (uint32_t i = 0; i < NSER; i++) {
            b[i].sid = series_of(db, i);
            b[i].t = T0 + h * HOUR;
            b[i].v = value_of(i, h);
        }
        tsdb_append_result_t res;
        assert_int_equal(tsdb_append_sids(db, b, NSER, NULL, &res), 0);
        assert_int_equal(res.conflict + res.too_old + res.invalid, 0);
        stored += res.stored;
        dup += res.duplicate;
    }
    assert_true(stored + dup == (uint64_t)NSER * (uint64_t)hours);
    assert_true(dup <= sealed);
    /* sealed samples met again (through the store's cache of decoded
     * partitions, before and after a flush changes the blocks): the same
     * value is a duplicate, another one a conflict */
    tsdb_seal_closed_only(db, 0);
    for (int round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < NSER; i += 7) {
            tsdb_sid_sample_t b = {series_of(db, i), T0 + 5 * HOUR, value_of(i, 5)};
            uint8_t oc = 0xff;
            assert_int_equal(tsdb_append_sids(db, &b, 1, &oc, NULL), 0);
            assert_int_equal(oc, TSDB_OUT_DUPLICATE);
            b.v += 0.5;
            assert_int_equal(tsdb_append_sids(db, &b, 1, &oc, NULL), 0);
            assert_int_equal(oc, TSDB_OUT_CONFLICT);
        }
        assert_int_equal(tsdb_flush(db), 0);
    }
    assert_int_equal(tsdb_close(db), 0);
    assert_true(wal_bytes(dir) == 0);
    assert_int_equal(check_store(dir, 0, hours - 1), hours); /* exact, each once */
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_multiseg_kill9),
        cmocka_unit_test(test_hold_random_kill9),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_hold_wal_reservation),
        cmocka_unit_test(test_kill_in_flush_seq),
        cmocka_unit_test(test_import_reopen_progress),
        cmocka_unit_test(test_nowal_kill9_rerun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
