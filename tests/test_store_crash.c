/*
 * test_store_crash.c — durability under kill -9, and behaviour when the
 * LMDB map cap or the disk is full.
 *
 * Crash test: a child process appends batches through the public API and
 * reports each acknowledged batch on a pipe; the parent kill -9s it at a
 * random moment (flushes and compactions run in the background all the
 * time), reopens the store and checks that every acknowledged sample is
 * there, bit for bit, and that tsdb_check finds nothing wrong. Repeated
 * AUGUR_CRASH_KILLS times (default 20).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/select.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "testutil.h"
#include "tsdb/tsdb.h"

#define T0 INT64_C(1767225600000)
#define CR_SERIES 40
#define CR_PER 6

static tsdb_str_t S(const char *s)
{
    tsdb_str_t r = {s, (uint32_t)strlen(s)};
    return r;
}

static double crash_value(long b, int k, int j)
{
    if ((b + k + j) % 17 == 0) return f64_from_bits(TSDB_STALE_NAN_BITS);
    return (double)b * 1000.0 + k * 10 + j + 0.25;
}

/* Batch b: CR_SERIES series x CR_PER samples at T0 + b*CR_PER*1000 + j*1000. */
static int append_batch(tsdb_t *db, long b)
{
    static char ids[CR_SERIES][16];
    tsdb_label_t labels[CR_SERIES][3];
    tsdb_sample_t smp[CR_SERIES][CR_PER];
    tsdb_series_in_t in[CR_SERIES];
    for (int k = 0; k < CR_SERIES; k++) {
        snprintf(ids[k], sizeof ids[k], "s%d", k);
        labels[k][0] = (tsdb_label_t){S("__name__"), S("crash")};
        labels[k][1] = (tsdb_label_t){S("id"), S(ids[k])};
        labels[k][2] = (tsdb_label_t){S("instance"), S(k % 2 ? "node-a" : "node-b")};
        for (int j = 0; j < CR_PER; j++) {
            smp[k][j].t = T0 + (b * CR_PER + j) * 1000;
            smp[k][j].v = crash_value(b, k, j);
        }
        in[k] = (tsdb_series_in_t){labels[k], 3, smp[k], CR_PER};
    }
    return tsdb_append(db, in, CR_SERIES, NULL, NULL);
}

static tsdb_options_t crash_opts(void)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.head_max_samples = 3000; /* flush often: crashes land inside flushes too */
    o.flush_interval_ms = 20;
    o.wal_segment_bytes = 256 * 1024;
    return o;
}

static void child_main(const char *dir, long start, int fd)
{
    tsdb_options_t o = crash_opts();
    tsdb_t *db;
    if (tsdb_open(dir, &o, &db)) _exit(3);
    for (long b = start;; b++) {
        if (append_batch(db, b)) _exit(4);
        if (write(fd, &b, sizeof b) != sizeof b) _exit(5);
    }
}

/* Every acked batch [0, upto] present with exact values; returns samples seen. */
static void verify_acked(const char *dir, long upto)
{
    tsdb_options_t o = crash_opts();
    o.flush_interval_ms = -1;
    tsdb_t *db;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) fprintf(stderr, "reopen: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
    assert_int_equal(rc, 0);
    uint64_t bad;
    assert_int_equal(tsdb_check(db, &bad), 0);
    assert_int_equal(bad, 0);
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    for (int k = 0; k < CR_SERIES; k++) {
        char id[16];
        snprintf(id, sizeof id, "s%d", k);
        tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", "crash"}, {TSDB_MATCH_EQ, "id", id}};
        tsdb_sids_t ids = {0};
        assert_int_equal(tsdb_select(r, m, 2, INT64_MIN, INT64_MAX, &ids), 0);
        if (upto < 0) {
            tsdb_sids_free(&ids);
            continue;
        }
        assert_int_equal(ids.n, 1);
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, ids.ids[0], T0, T0 + (upto + 1) * CR_PER * 1000 - 1, &it), 0);
        const tsdb_sample_t *s;
        size_t n;
        long idx = 0;
        while ((rc = tsdb_iter_next(it, &s, &n)) == 1) {
            for (size_t i = 0; i < n; i++, idx++) {
                long b = idx / CR_PER;
                int j = (int)(idx % CR_PER);
                assert_int_equal(s[i].t, T0 + idx * 1000);
                assert_true(f64_bits(s[i].v) == f64_bits(crash_value(b, k, j)));
            }
        }
        assert_int_equal(rc, 0);
        if (idx != (upto + 1) * CR_PER)
            fprintf(stderr, "series %d: %ld samples, want %ld\n", k, idx, (upto + 1) * CR_PER);
        assert_int_equal(idx, (upto + 1) * CR_PER);
        tsdb_iter_close(it);
        tsdb_sids_free(&ids);
    }
    tsdb_reader_close(r);
    assert_int_equal(tsdb_close(db), 0);
}

static void test_crash_kill9(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("store_crash", 7);
    long kills = tu_env_long("AUGUR_CRASH_KILLS", 20);
    trng_t g;
    trng_seed(&g, seed);
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    long acked = -1;
    for (long round = 0; round < kills; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_main(dir, acked + 1, p[1]);
        }
        close(p[1]);
        /* let it run a random while, reading acks without blocking it */
        int64_t delay_us = 2000 + (int64_t)trng_below(&g, 120000);
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t el = (now.tv_sec - t0.tv_sec) * 1000000 + (now.tv_nsec - t0.tv_nsec) / 1000;
            if (el >= delay_us) break;
            struct timeval tv = {0, (suseconds_t)(delay_us - el)};
            fd_set rf;
            FD_ZERO(&rf);
            FD_SET(p[0], &rf);
            if (select(p[0] + 1, &rf, NULL, NULL, &tv) > 0) {
                long b;
                ssize_t k = read(p[0], &b, sizeof b);
                if (k == sizeof b) acked = b;
                else if (k <= 0) break;
            }
        }
        kill(pid, SIGKILL);
        /* acks written before the kill are still in the pipe */
        long b;
        while (read(p[0], &b, sizeof b) == sizeof b) acked = b;
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        assert_true(WIFSIGNALED(st)); /* it was killed, did not fail on its own */
        verify_acked(dir, acked);
    }
    fprintf(stderr, "crash: %ld kills, %ld batches (%ld samples) acknowledged, none lost\n", kills,
            acked + 1, (acked + 1) * CR_SERIES * CR_PER);
    assert_true(acked > 0);
    tu_rmrf(dir);
}

/* ---- map cap ------------------------------------------------------------------------- */

static void test_map_full(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.map_size_cap = 256 * 1024; /* tiny: fills after a few thousand samples */
    o.head_max_samples = 2000;
    o.flush_interval_ms = 10;
    o.wal_segment_bytes = 1 << 20;
    tsdb_t *db;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    long b, last_ok = -1;
    int rc = 0, fulls = 0;
    /* Append until the store refuses three times in a row: a refused batch
     * stores nothing, and space freed by compaction may let a later retry
     * of the same batch in, which then counts as acknowledged. */
    for (b = 0; b < 100000 && fulls < 3;) {
        rc = append_batch(db, b);
        if (rc == TSDB_EFULL) {
            fulls++;
            continue;
        }
        assert_int_equal(rc, 0);
        fulls = 0;
        last_ok = b++;
    }
    fprintf(stderr, "map full after %ld batches: %s (%s)\n", last_ok + 1, tsdb_strerror(rc),
            tsdb_last_error_detail());
    assert_int_equal(rc, TSDB_EFULL);
    assert_true(last_ok > 5);
    tsdb_close(db); /* its flush fails: the data stays in the WAL */
    /* with room, everything acknowledged is there and appends resume */
    verify_acked(dir, last_ok);
    o.map_size_cap = 0;
    o.flush_interval_ms = -1;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    assert_int_equal(append_batch(db, last_ok + 1), 0);
    assert_int_equal(tsdb_close(db), 0);
    verify_acked(dir, last_ok + 1);
    tu_rmrf(dir);
}

/* ---- disk full --------------------------------------------------------------------------- */

static void test_disk_full(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    /* a small tmpfs, if we may mount (root in CI); else a file-size limit */
    int mounted = mount("augur-test", dir, "tmpfs", 0, "size=4m") == 0;
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    char store[300], filler[300];
    snprintf(store, sizeof store, "%s/store", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    if (!mounted) {
        fprintf(stderr, "disk full: cannot mount tmpfs (%s); using RLIMIT_FSIZE instead\n",
                strerror(errno));
        signal(SIGXFSZ, SIG_IGN);
    }
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.head_max_samples = 5000;
    o.flush_interval_ms = 10;
    o.wal_segment_bytes = 128 * 1024;
    tsdb_t *db;
    assert_int_equal(tsdb_open(store, &o, &db), 0);
    if (mounted) {
        /* leave ~600 KiB free */
        FILE *f = fopen(filler, "w");
        assert_non_null(f);
        static char blk[64 * 1024];
        for (int i = 0; i < (4 * 1024 - 600) / 64; i++) fwrite(blk, 1, sizeof blk, f);
        fclose(f);
    } else {
        struct rlimit rl = {1 << 20, old.rlim_max};
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    }
    long b, last_ok = -1;
    int rc = 0;
    for (b = 0; b < 200000; b++) {
        rc = append_batch(db, b);
        if (rc) break;
        last_ok = b;
    }
    fprintf(stderr, "disk full after %ld batches: %s (%s)\n", last_ok + 1, tsdb_strerror(rc),
            tsdb_last_error_detail());
    assert_true(rc == TSDB_ENOSPC || rc == TSDB_EFULL);
    assert_true(last_ok > 5);
    /* free space: appends resume in the same process */
    if (mounted) unlink(filler);
    else setrlimit(RLIMIT_FSIZE, &old);
    int ok = 0;
    for (int tries = 0; tries < 200 && !ok; tries++) { /* the failed flush is retried */
        rc = append_batch(db, last_ok + 1);
        if (rc == 0) ok = 1;
        else {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (!ok) fprintf(stderr, "resume: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
    assert_true(ok);
    assert_int_equal(tsdb_close(db), 0);
    verify_acked(store, last_ok + 1);
    if (mounted) umount(dir);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_kill9),
        cmocka_unit_test(test_map_full),
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
