/*
 * test_store_sids.c — appending by series id (tsdb_series_id,
 * tsdb_append_sids): outcomes as tsdb_append, ids stable across calls and
 * flushes, unknown/deleted ids refused, and durability: a series resolved
 * before a flush but first sampled after it (its labels were never in the
 * WAL segment the flush dropped) survives a kill -9.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "tsdb/tsdb.h"

#define T0 INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

static tsdb_str_t S(const char *s)
{
    tsdb_str_t r = {s, (uint32_t)strlen(s)};
    return r;
}

static tsdb_t *open_store_mode(const char *dir, int sync_mode)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = sync_mode;
    tsdb_t *db = NULL;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) fprintf(stderr, "open: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
    assert_int_equal(rc, 0);
    return db;
}

static tsdb_t *open_store(const char *dir)
{
    return open_store_mode(dir, TSDB_SYNC_PERIODIC);
}

static tsdb_sid_t resolve(tsdb_t *db, const char *name, const char *dev, int *created)
{
    tsdb_label_t l[3] = {{S("device"), S(dev)}, {S("__name__"), S(name)}, {S("job"), S("t")}};
    tsdb_sid_t sid = 0;
    assert_int_equal(tsdb_series_id(db, l, 3, &sid, created), 0);
    assert_true(sid > 0);
    return sid;
}

/* Samples of name{device=dev} (-1: no such series). */
static long read_back(tsdb_t *db, const char *name, const char *dev, tsdb_sample_t *out, size_t cap)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", name}, {TSDB_MATCH_EQ, "device", dev}};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, m, 2, INT64_MIN, INT64_MAX, &ids), 0);
    assert_true(ids.n <= 1);
    long n = -1;
    if (ids.n) {
        n = 0;
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, ids.ids[0], INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *s;
        size_t k;
        while (tsdb_iter_next(it, &s, &k) == 1) {
            assert_true((size_t)n + k <= cap);
            memcpy(out + n, s, k * sizeof *s);
            n += (long)k;
        }
        tsdb_iter_close(it);
    }
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    return n;
}

static void test_sids_outcomes(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    int created;
    tsdb_sid_t a = resolve(db, "m", "a", &created);
    assert_int_equal(created, 1);
    /* the same labels in another order: the same series */
    tsdb_label_t l[3] = {{S("job"), S("t")}, {S("device"), S("a")}, {S("__name__"), S("m")}};
    tsdb_sid_t a2 = 0;
    assert_int_equal(tsdb_series_id(db, l, 3, &a2, &created), 0);
    assert_int_equal(created, 0);
    assert_true(a2 == a);
    tsdb_sid_t b = resolve(db, "m", "b", &created);
    assert_true(b != a);
    /* invalid labels: refused, nothing created */
    tsdb_label_t bad[2] = {{S("job"), S("t")}, {S("device"), S("x")}}; /* no __name__ */
    tsdb_sid_t x = 0;
    assert_int_equal(tsdb_series_id(db, bad, 2, &x, &created), TSDB_EINVAL);
    assert_int_equal(created, 0);

    tsdb_sid_sample_t in[6] = {{a, T0, 1},       {a, T0 + 1000, 2}, {b, T0, 5},
                               {a, T0 + 500, 3}, {b, T0 + 1000, 6}, {999999, T0, 1}};
    uint8_t oc[8];
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append_sids(db, in, 6, oc, &res), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(oc[i], TSDB_OUT_STORED);
    assert_int_equal(oc[5], TSDB_OUT_INVALID); /* unknown id */
    assert_int_equal(res.stored, 5);
    assert_int_equal(res.invalid, 1);
    /* a retry: duplicates; a changed value: conflict; far too old */
    tsdb_sid_sample_t again[3] = {{a, T0, 1}, {b, T0, 7}, {a, T0 - 2 * 3600 * 1000, 1}};
    assert_int_equal(tsdb_append_sids(db, again, 3, oc, &res), 0);
    assert_int_equal(oc[0], TSDB_OUT_DUPLICATE);
    assert_int_equal(oc[1], TSDB_OUT_CONFLICT);
    assert_int_equal(oc[2], TSDB_OUT_TOO_OLD);
    assert_int_equal(res.duplicate, 1);
    assert_int_equal(res.conflict, 1);
    assert_int_equal(res.too_old, 1);
    /* the same after sealing; ids survive the flush */
    assert_int_equal(tsdb_flush(db), 0);
    assert_true(resolve(db, "m", "a", &created) == a);
    assert_int_equal(created, 0);
    assert_int_equal(tsdb_append_sids(db, again, 2, oc, &res), 0);
    assert_int_equal(oc[0], TSDB_OUT_DUPLICATE);
    assert_int_equal(oc[1], TSDB_OUT_CONFLICT);
    tsdb_sample_t got[8];
    assert_int_equal(read_back(db, "m", "a", got, 8), 3);
    assert_int_equal(got[1].t, T0 + 500);
    assert_true(got[1].v == 3);
    /* a deleted series' id is refused */
    tsdb_matcher_t m = {TSDB_MATCH_EQ, "device", "b"};
    uint64_t ndel = 0;
    assert_int_equal(tsdb_delete_series(db, &m, 1, &ndel), 0);
    assert_int_equal(ndel, 1);
    tsdb_sid_sample_t late[1] = {{b, T0 + 5000, 1}};
    assert_int_equal(tsdb_append_sids(db, late, 1, oc, &res), 0);
    assert_int_equal(oc[0], TSDB_OUT_INVALID);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* The head's order flag without reading the head (head_push): samples past
 * the newest time keep it sorted, an older one clears it, so a retry of the
 * older sample is still found (a binary search over an unsorted head would
 * miss it and store it twice) and reads come back in time order. Enough
 * series for several series slabs (4096 structs each), every one read back. */
static void test_sids_head_order_and_slabs(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    int created;
    tsdb_sid_t a = resolve(db, "m", "a", &created);
    tsdb_sid_sample_t in[4] = {{a, T0, 1}, {a, T0 + 2000, 2}, {a, T0 + 3000, 3}, {a, T0 + 1000, 4}};
    uint8_t oc[4];
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append_sids(db, in, 4, oc, &res), 0);
    assert_int_equal(res.stored, 4);
    /* retries before any flush: all duplicates, the out-of-order one too */
    assert_int_equal(tsdb_append_sids(db, in, 4, oc, &res), 0);
    assert_int_equal(res.duplicate, 4);
    assert_int_equal(res.stored, 0);
    tsdb_sid_sample_t chg[1] = {{a, T0 + 1000, 5}};
    assert_int_equal(tsdb_append_sids(db, chg, 1, oc, &res), 0);
    assert_int_equal(oc[0], TSDB_OUT_CONFLICT);
    tsdb_sample_t got[8];
    assert_int_equal(read_back(db, "m", "a", got, 8), 4);
    for (int i = 0; i < 4; i++) assert_int_equal(got[i].t, T0 + 1000 * i);
    assert_true(got[1].v == 4);

    enum { NS = 3 * 4096 + 17 };
    tsdb_sid_t *ids = malloc(NS * sizeof *ids);
    tsdb_sid_sample_t *b = malloc(NS * sizeof *b);
    assert_non_null(ids);
    assert_non_null(b);
    char dev[32];
    for (int i = 0; i < NS; i++) {
        snprintf(dev, sizeof dev, "d%d", i);
        ids[i] = resolve(db, "n", dev, &created);
        assert_int_equal(created, 1);
    }
    for (int d = 0; d < 3; d++) {
        for (int i = 0; i < NS; i++) {
            b[i].sid = ids[i];
            b[i].t = T0 + d * 60000;
            b[i].v = i * 10 + d;
        }
        assert_int_equal(tsdb_append_sids(db, b, NS, NULL, &res), 0);
        assert_int_equal(res.stored, NS);
        if (d == 1) assert_int_equal(tsdb_flush(db), 0);
    }
    assert_int_equal(tsdb_close(db), 0);
    db = open_store(dir);
    for (int i = 0; i < NS; i += 997) {
        snprintf(dev, sizeof dev, "d%d", i);
        assert_int_equal(read_back(db, "n", dev, got, 8), 3);
        for (int d = 0; d < 3; d++) {
            assert_int_equal(got[d].t, T0 + d * 60000);
            assert_true(got[d].v == i * 10 + d);
        }
    }
    assert_int_equal(read_back(db, "m", "a", got, 8), 4);
    assert_true(got[1].v == 4);
    free(ids);
    free(b);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* The compact WAL entries of tsdb_append_sids (0x03: sid and time deltas
 * within a record, small integers as varints, anything else as 8 bytes) read
 * back bit-exact after a kill -9: -0.0, NaN, 2^53 and past it, negatives,
 * fractions, infinities; ids and times going backwards inside a record; an
 * entry dropped from the record (a duplicate) between two others. */
static const double wal_vals_x[4] = {-0.0, 9007199254740992.0, 7, INFINITY};
static const double wal_vals_y[4] = {0.5, 9007199254740994.0, -7, 1.0 / 3};
static double wal_vals_z[4] = {0, -9007199254740992.0, 1e300, -123456789012};

static void wal_values_child(const char *dir, int fd)
{
    tsdb_t *db = open_store(dir);
    int created;
    tsdb_sid_t x = resolve(db, "w", "x", &created);
    tsdb_sid_t y = resolve(db, "w", "y", &created);
    tsdb_sid_t z = resolve(db, "w", "z", &created);
    const double *X = wal_vals_x, *Y = wal_vals_y, *Z = wal_vals_z;
    tsdb_sid_sample_t r1[6] = {{y, T0, Y[0]},        {x, T0, X[0]},        {z, T0, Z[0]},
                               {x, T0 + 2000, X[1]}, {y, T0 + 1000, Y[1]}, {z, T0 + 1000, Z[1]}};
    tsdb_sid_sample_t r2[7] = {{z, T0 + 2000, Z[2]}, {x, T0, X[0]} /* duplicate */,
                               {y, T0 + 2000, Y[2]}, {x, T0 + 1000, X[2]} /* out of order */,
                               {z, T0 + 3000, Z[3]}, {y, T0 + 3000, Y[3]},
                               {x, T0 + 3000, X[3]}};
    tsdb_append_result_t res;
    if (tsdb_append_sids(db, r1, 6, NULL, &res) || res.stored != 6) _exit(3);
    if (tsdb_append_sids(db, r2, 7, NULL, &res) || res.stored != 6 || res.duplicate != 1) _exit(3);
    if (write(fd, "k", 1) != 1) _exit(3);
    pause();
    _exit(0);
}

static void test_sids_wal_values_kill9(void **state)
{
    (void)state;
    wal_vals_z[0] = nan("0x123"); /* a NaN with payload bits */
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        wal_values_child(dir, p[1]);
    }
    close(p[1]);
    char k = 0;
    assert_int_equal(read(p[0], &k, 1), 1);
    close(p[0]);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
    for (int round = 0; round < 2; round++) { /* replayed, then sealed and reopened */
        tsdb_t *db = open_store(dir);
        const char *dev[3] = {"x", "y", "z"};
        const double *want[3] = {wal_vals_x, wal_vals_y, wal_vals_z};
        /* x's samples at T0, +1000, +2000, +3000 are X[0], X[2], X[1], X[3] */
        const int order_x[4] = {0, 2, 1, 3}, order_yz[4] = {0, 1, 2, 3};
        for (int d = 0; d < 3; d++) {
            tsdb_sample_t got[8];
            assert_int_equal(read_back(db, "w", dev[d], got, 8), 4);
            for (int i = 0; i < 4; i++) {
                double w = want[d][d == 0 ? order_x[i] : order_yz[i]];
                assert_int_equal(got[i].t, T0 + 1000 * i);
                assert_memory_equal(&got[i].v, &w, sizeof w);
            }
        }
        assert_int_equal(tsdb_close(db), 0);
    }
    tu_rmrf(dir);
}

/* A series resolved but never sampled is not stored (a flush with it
 * succeeds); after a reopen its id may name a new series (nothing durable
 * ever used it), never a stored series' id. */
static void test_sids_unused(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    int created;
    tsdb_sid_t a = resolve(db, "m", "a", &created);
    tsdb_sid_t e = resolve(db, "m", "empty", &created);
    tsdb_sid_sample_t in[1] = {{a, T0, 1}};
    assert_int_equal(tsdb_append_sids(db, in, 1, NULL, NULL), 0);
    assert_int_equal(tsdb_flush(db), 0);
    tsdb_sample_t got[4];
    assert_int_equal(read_back(db, "m", "empty", got, 4), -1);
    assert_int_equal(read_back(db, "m", "a", got, 4), 1);
    assert_int_equal(tsdb_close(db), 0);
    db = open_store(dir);
    assert_int_equal(read_back(db, "m", "empty", got, 4), -1);
    tsdb_sid_t n = resolve(db, "m", "new", &created);
    assert_int_equal(created, 1);
    assert_true(n != a);
    (void)e;
    tsdb_sid_sample_t s2[1] = {{n, T0, 9}};
    assert_int_equal(tsdb_append_sids(db, s2, 1, NULL, NULL), 0);
    assert_int_equal(read_back(db, "m", "new", got, 4), 1);
    assert_int_equal(read_back(db, "m", "a", got, 4), 1);
    assert_true(got[0].v == 1);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* Child: resolve series, flush between resolving and sampling (twice for
 * one of them), append, then die without closing. */
static void crash_child(const char *dir, int fd)
{
    tsdb_t *db = open_store(dir);
    int created;
    tsdb_sid_t a = resolve(db, "m", "a", &created);
    tsdb_sid_t b = resolve(db, "m", "b", &created);
    tsdb_sid_t c = resolve(db, "m", "c", &created);
    resolve(db, "m", "never", &created);
    tsdb_sid_sample_t s1[1] = {{a, T0, 1}};
    if (tsdb_append_sids(db, s1, 1, NULL, NULL)) _exit(3);
    if (tsdb_flush(db)) _exit(3); /* b, c: no samples yet, their labels not logged */
    tsdb_sid_sample_t s2[2] = {{b, T0, 2}, {a, T0 + 1000, 11}};
    if (tsdb_append_sids(db, s2, 2, NULL, NULL)) _exit(3);
    if (tsdb_flush(db)) _exit(3);
    if (tsdb_flush(db)) _exit(3);
    tsdb_sid_sample_t s3[2] = {{c, T0, 3}, {b, T0 + 1000, 4}};
    if (tsdb_append_sids(db, s3, 2, NULL, NULL)) _exit(3);
    /* acknowledged: the WAL is written (SYNC_PERIODIC: in the page cache) */
    if (write(fd, "k", 1) != 1) _exit(3);
    pause();
    _exit(0);
}

static void test_sids_kill9(void **state)
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
        crash_child(dir, p[1]);
    }
    close(p[1]);
    char k = 0;
    assert_int_equal(read(p[0], &k, 1), 1);
    close(p[0]);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
    tsdb_t *db = open_store(dir);
    tsdb_sample_t got[4];
    assert_int_equal(read_back(db, "m", "a", got, 4), 2);
    assert_true(got[1].v == 11);
    assert_int_equal(read_back(db, "m", "b", got, 4), 2);
    assert_true(got[0].v == 2 && got[1].v == 4);
    assert_int_equal(read_back(db, "m", "c", got, 4), 1);
    assert_true(got[0].v == 3);
    assert_int_equal(read_back(db, "m", "never", got, 4), -1);
    /* and it all stays after a flush and reopen */
    assert_int_equal(tsdb_close(db), 0);
    db = open_store(dir);
    assert_int_equal(read_back(db, "m", "b", got, 4), 2);
    assert_int_equal(read_back(db, "m", "c", got, 4), 1);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

#define DAY INT64_C(86400000)

/* Child: a store of one-day partitions in tsdb_seal_closed_only mode. a has
 * samples on day 0 and day 1, b only on day 1 (a series never in LMDB), c
 * only on day 0. Two flushes keep day 1 in the head (the WAL segment that has
 * it stays), one more sample for b; day 2 arrives, a third flush seals day 1
 * and drops that segment (day 2 was logged after it), one more sample, then
 * death without closing. Exit 4: the flushes did not keep what they should. */
static void hold_child(const char *dir, int fd, int stage)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.partition_ms = DAY;
    tsdb_t *db = NULL;
    if (tsdb_open(dir, &o, &db)) _exit(3);
    tsdb_seal_closed_only(db, 1);
    int created;
    tsdb_sid_t a = resolve(db, "m", "a", &created);
    tsdb_sid_t b = resolve(db, "m", "b", &created);
    tsdb_sid_t c = resolve(db, "m", "c", &created);
    tsdb_sid_sample_t s1[4] = {{a, T0, 1}, {a, T0 + DAY, 2}, {b, T0 + DAY + 5, 3}, {c, T0 + 1, 4}};
    if (tsdb_append_sids(db, s1, 4, NULL, NULL)) _exit(3);
    tsdb_stats_t st;
    for (int k = 0; k < 2; k++) {
        if (tsdb_flush(db)) _exit(3);
        if (tsdb_stats(db, &st) || st.samples != 4 || st.head_samples != 2) _exit(4);
    }
    tsdb_sid_sample_t s2[3] = {
        {b, T0 + DAY + 6, 5}, {a, T0 + 2 * DAY + 1, 6}, {c, T0 + 2 * DAY + 2, 7}};
    if (tsdb_append_sids(db, s2, stage == 1 ? 1 : 3, NULL, NULL)) _exit(3);
    if (stage == 1) {
        if (write(fd, "k", 1) != 1) _exit(3);
        pause();
    }
    if (tsdb_flush(db)) _exit(3);
    if (tsdb_stats(db, &st) || st.samples != 7 || st.head_samples != 2) _exit(4);
    tsdb_sid_sample_t s3[1] = {{b, T0 + 2 * DAY + 3, 8}};
    if (tsdb_append_sids(db, s3, 1, NULL, NULL)) _exit(3);
    if (write(fd, "k", 1) != 1) _exit(3);
    pause();
    _exit(0);
}

static void check_hold_store(const char *dir, int stage)
{
    tsdb_t *db = open_store(dir);
    tsdb_sample_t got[4];
    if (stage == 1) { /* killed after the second flush */
        assert_int_equal(read_back(db, "m", "a", got, 4), 2);
        assert_true(got[0].t == T0 && got[0].v == 1 && got[1].t == T0 + DAY && got[1].v == 2);
        assert_int_equal(read_back(db, "m", "b", got, 4), 2);
        assert_true(got[0].t == T0 + DAY + 5 && got[0].v == 3 && got[1].v == 5);
        assert_int_equal(read_back(db, "m", "c", got, 4), 1);
        tsdb_stats_t st;
        assert_int_equal(tsdb_stats(db, &st), 0);
        assert_int_equal(st.samples, 5);
        assert_int_equal(tsdb_close(db), 0);
        return;
    }
    assert_int_equal(read_back(db, "m", "a", got, 4), 3);
    assert_true(got[0].t == T0 && got[0].v == 1 && got[1].t == T0 + DAY && got[1].v == 2);
    assert_true(got[2].t == T0 + 2 * DAY + 1 && got[2].v == 6);
    assert_int_equal(read_back(db, "m", "b", got, 4), 3);
    assert_true(got[0].t == T0 + DAY + 5 && got[0].v == 3 && got[1].v == 5 && got[2].v == 8);
    assert_int_equal(read_back(db, "m", "c", got, 4), 2);
    assert_true(got[0].t == T0 + 1 && got[0].v == 4 && got[1].v == 7);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.samples, 8);
    assert_int_equal(st.series, 3);
    assert_int_equal(tsdb_close(db), 0);
}

/* tsdb_seal_closed_only: samples flushes kept in the head survive a kill -9
 * (and a series known only from them keeps its labels), sealed samples are
 * not counted twice, and close then seals everything. */
static void test_seal_closed_only_kill9(void **state)
{
    (void)state;
    for (int stage = 1; stage <= 2; stage++) {
        char dir[256];
        assert_non_null(tu_mkdtemp(dir, sizeof dir));
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            hold_child(dir, p[1], stage);
        }
        close(p[1]);
        char k = 0;
        ssize_t got = read(p[0], &k, 1);
        close(p[0]);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        assert_int_equal(got, 1);
        assert_true(WIFSIGNALED(st));
        check_hold_store(dir, stage); /* from the WAL */
        check_hold_store(dir, stage); /* sealed by the close */
        tu_rmrf(dir);
    }
}

/* Without a crash: the mode seals finished partitions only, turning it off
 * seals the rest, and the head limit counts only new samples (a kept head
 * over the limit does not make every append wait for a flush). */
static void test_seal_closed_only_modes(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.partition_ms = DAY;
    o.head_max_samples = 4;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    tsdb_seal_closed_only(db, 1);
    int created;
    tsdb_sid_t a = resolve(db, "m", "a", &created);
    /* 3 samples on day 0, 3 on day 1 */
    tsdb_sid_sample_t s1[6];
    for (int i = 0; i < 6; i++) {
        s1[i].sid = a;
        s1[i].t = T0 + (i / 3) * DAY + i;
        s1[i].v = i;
    }
    assert_int_equal(tsdb_append_sids(db, s1, 6, NULL, NULL), 0);
    tsdb_stats_t st;
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.head_samples, 3);
    assert_int_equal(st.samples, 6);
    /* twice the limit (16 samples per series, 2 series: 64) kept in a: b (later in
     * the head's order) is sealed whole */
    tsdb_sid_t b = resolve(db, "m", "b", &created);
    tsdb_sid_sample_t s2[70];
    for (int i = 0; i < 70; i++) {
        s2[i].sid = i < 67 ? a : b;
        s2[i].t = T0 + DAY + 100 + i;
        s2[i].v = 100 + i;
    }
    assert_int_equal(tsdb_append_sids(db, s2, 70, NULL, NULL), 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.head_samples, 70);
    assert_int_equal(st.samples, 76);
    /* day 2 starts: day 1 is sealed */
    tsdb_sid_sample_t s3[2] = {{a, T0 + 2 * DAY, 7}, {a, T0 + 2 * DAY + 1, 8}};
    assert_int_equal(tsdb_append_sids(db, s3, 2, NULL, NULL), 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.head_samples, 2);
    assert_int_equal(st.samples, 78);
    tsdb_seal_closed_only(db, 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.head_samples, 0);
    assert_int_equal(st.samples, 78);
    assert_int_equal(tsdb_close(db), 0);
    db = open_store(dir);
    tsdb_sample_t got[100];
    assert_int_equal(read_back(db, "m", "a", got, 100), 75);
    for (int i = 1; i < 75; i++)
        assert_true(got[i].t > got[i - 1].t);
    assert_true(got[0].v == 0 && got[74].v == 8);
    assert_int_equal(read_back(db, "m", "b", got, 100), 3);
    assert_true(got[0].v == 167 && got[2].v == 169);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* ---- memory cap (tsdb_options_t.memory_max_bytes) ------------------------ */

#define MB_SERIES 60000
#define MB_DAYS 30
#define MB_BATCH 10000

static tsdb_t *open_budget(const char *dir, uint64_t memory_max, int pack)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = 3600 * 1000; /* a background thread, flushing on demand only */
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.partition_ms = 32 * DAY;
    o.ooo_window_ms = 400 * DAY;
    o.head_max_samples = UINT64_C(1) << 40; /* only the memory cap starts a flush */
    o.memory_max_bytes = memory_max;
    o.pack_heads = pack;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    tsdb_seal_closed_only(db, 1);
    return db;
}

static double mb_value(unsigned i, unsigned d)
{
    return (double)(i * 7u + d * 13u % 97u);
}

/* MB_SERIES series x MB_DAYS daily samples, a day at a time as an import
 * sends them; fd >= 0: tell it when done and wait to be killed. Checks after
 * every batch that the head stays inside its budget; *pieces: whether samples
 * were sealed before the end although every day is in one or two partitions. */
static void mb_fill(tsdb_t *db, int fd, int *pieces)
{
    static tsdb_sid_t sid[MB_SERIES];
    char dev[32];
    int created;
    for (unsigned i = 0; i < MB_SERIES; i++) {
        snprintf(dev, sizeof dev, "d%u", i);
        sid[i] = resolve(db, "m", dev, &created);
    }
    static tsdb_sid_sample_t b[MB_BATCH];
    uint64_t max_head = 0, budget = 0;
    for (unsigned d = 0; d < MB_DAYS; d++)
        for (unsigned i0 = 0; i0 < MB_SERIES; i0 += MB_BATCH) {
            for (unsigned k = 0; k < MB_BATCH; k++) {
                b[k].sid = sid[i0 + k];
                b[k].t = T0 + (int64_t)d * DAY;
                b[k].v = mb_value(i0 + k, d);
            }
            tsdb_append_result_t res;
            memset(&res, 0, sizeof res);
            if (tsdb_append_sids(db, b, MB_BATCH, NULL, &res) || res.stored != MB_BATCH) {
                if (fd >= 0) _exit(3);
                fail();
            }
            tsdb_memory_t m;
            tsdb_memory(db, &m);
            if (m.head > max_head) max_head = m.head;
            budget = m.head_budget;
        }
    /* a flush started by the last appends may still be under way */
    tsdb_stats_t st;
    for (int w = 0; w < 200; w++) {
        if (tsdb_stats(db, &st)) _exit(3);
        if (!budget || st.flushes > 0) break;
        usleep(50 * 1000);
    }
    *pieces = st.flushes > 0 && st.samples - st.head_samples > 0;
    if (fd >= 0) {
        /* every sample is durable (periodic sync: tsdb_flush would seal) */
        if (budget && max_head > budget) _exit(4);
        if (write(fd, "k", 1) != 1) _exit(3);
        pause();
        _exit(0);
    }
    if (budget) assert_true(max_head <= budget);
}

static void mb_check(const char *dir)
{
    tsdb_t *db = open_store(dir);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.samples, (uint64_t)MB_SERIES * MB_DAYS);
    assert_int_equal(st.series, MB_SERIES);
    tsdb_sample_t got[MB_DAYS + 1];
    char dev[32];
    for (unsigned i = 0; i < MB_SERIES; i += 997) {
        snprintf(dev, sizeof dev, "d%u", i);
        assert_int_equal(read_back(db, "m", dev, got, MB_DAYS + 1), MB_DAYS);
        for (unsigned d = 0; d < MB_DAYS; d++) {
            assert_true(got[d].t == T0 + (int64_t)d * DAY);
            assert_true(got[d].v == mb_value(i, d));
        }
    }
    assert_int_equal(tsdb_close(db), 0);
}

/* With a memory cap the import's head is sealed in pieces before the
 * partition is finished (without one nothing is sealed before the end), the
 * head stays inside its budget, and every sample comes back exactly, after a
 * close and after a kill -9. */
static void test_memory_budget_pieces(void **state)
{
    (void)state;
    char dir[256];
    int pieces = -1;
    /* no cap: everything stays in the head */
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_budget(dir, 0, 0);
    mb_fill(db, -1, &pieces);
    assert_int_equal(pieces, 0);
    tsdb_memory_t m;
    tsdb_memory(db, &m);
    assert_int_equal(m.head_budget, 0);
    assert_int_equal(m.head_samples, (uint64_t)MB_SERIES * MB_DAYS);
    assert_true(m.head >= m.head_samples * sizeof(tsdb_sample_t));
    assert_int_equal(m.unpersisted, MB_SERIES);
    assert_true(m.labels > 0 && m.series_structs >= MB_SERIES * 64u && m.total > m.head);
    assert_int_equal(tsdb_close(db), 0);
    mb_check(dir);
    tu_rmrf(dir);

    /* a cap of 1 byte: the head gets the minimum budget (48 MiB; the heads
     * here take ~38 MB at 30 days: a flush starts at 16 MiB) */
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    db = open_budget(dir, 1, 0);
    mb_fill(db, -1, &pieces);
    assert_int_equal(pieces, 1);
    tsdb_memory(db, &m);
    assert_true(m.head_budget >= (UINT64_C(48) << 20));
    assert_true(m.head_samples < (uint64_t)MB_SERIES * MB_DAYS);
    assert_true(m.unpersisted < MB_SERIES); /* sealed series dropped their label copy */
    tsdb_seal_closed_only(db, 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_close(db), 0);
    mb_check(dir);
    tu_rmrf(dir);

    /* the same killed after the last append */
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        tsdb_t *cdb = open_budget(dir, 1, 0);
        int cp = 0;
        mb_fill(cdb, p[1], &cp);
        _exit(5);
    }
    close(p[1]);
    char k = 0;
    ssize_t got = read(p[0], &k, 1);
    close(p[0]);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(got, 1);
    assert_true(WIFSIGNALED(st));
    mb_check(dir); /* from the WAL and the pieces */
    mb_check(dir); /* sealed by the close */
    tu_rmrf(dir);
}


/* A flush sorts its entries by series id, which the active list mostly is
 * already (a shortcut takes an ordered or nearly ordered list as it is, or
 * moves the few entries out of place and merges them back). Series take
 * their samples in orders that exercise each way: in id order; with late
 * series amid early ones; with early ones last; reversed and shuffled (the
 * full sort); with many early ones first (the shortcut gives up half way). A wrong order splits a block group across two writes, and the
 * second overwrites the first: every sample must read back after a reopen. */
static void test_flush_sort_orders(void **state)
{
    (void)state;
    enum { NS = 5000, ROUNDS = 3 };
    size_t *ord = malloc(NS * sizeof *ord);
    tsdb_sid_t *ids = malloc(NS * sizeof *ids);
    tsdb_sid_sample_t *b = malloc(NS * sizeof *b);
    tsdb_sample_t got[ROUNDS + 1];
    assert_non_null(ord);
    assert_non_null(ids);
    assert_non_null(b);
    char dev[32];
    for (int pattern = 0; pattern < 6; pattern++) {
        char dir[256];
        assert_non_null(tu_mkdtemp(dir, sizeof dir));
        tsdb_t *db = open_store_mode(dir, pattern & 1 ? TSDB_SYNC_NONE : TSDB_SYNC_PERIODIC);
        int created;
        for (int i = 0; i < NS; i++) {
            snprintf(dev, sizeof dev, "d%d", i);
            ids[i] = resolve(db, "o", dev, &created);
        }
        for (size_t i = 0; i < NS; i++) ord[i] = i;
        uint64_t rng = 12345 + (uint64_t)pattern;
        if (pattern == 1) { /* the last 51 series, one every 97 places: too big there */
            size_t k = 0, late = NS - 51, next = late;
            for (size_t i = 0; i < late; i++) {
                if (i % 97 == 50) ord[k++] = next++;
                ord[k++] = i;
            }
            while (next < NS) ord[k++] = next++;
        } else if (pattern == 5) { /* every 97th series first: overflows the shortcut */
            size_t k = 0;
            for (size_t i = 0; i < NS; i += 97) ord[k++] = i;
            for (size_t i = 0; i < NS; i++)
                if (i % 97) ord[k++] = i;
        } else if (pattern == 2) { /* every 89th series last: too small */
            size_t k = 0;
            for (size_t i = 0; i < NS; i++)
                if (i % 89) ord[k++] = i;
            for (size_t i = 0; i < NS; i += 89) ord[k++] = i;
        } else if (pattern == 3) {
            for (size_t i = 0; i < NS; i++) ord[i] = NS - 1 - i;
        } else if (pattern == 4) {
            for (size_t i = NS - 1; i > 0; i--) {
                rng = rng * 6364136223846793005u + 1442695040888963407u;
                size_t j = (size_t)(rng >> 33) % (i + 1), t = ord[i];
                ord[i] = ord[j];
                ord[j] = t;
            }
        }
        for (int r = 0; r < ROUNDS; r++) {
            for (size_t i = 0; i < NS; i++) {
                b[i].sid = ids[ord[i]];
                b[i].t = T0 + r * 60000;
                b[i].v = (double)ord[i] * 10 + r;
            }
            tsdb_append_result_t res;
            assert_int_equal(tsdb_append_sids(db, b, NS, NULL, &res), 0);
            assert_int_equal(res.stored, NS);
            assert_int_equal(tsdb_flush(db), 0);
        }
        assert_int_equal(tsdb_close(db), 0);
        db = open_store_mode(dir, TSDB_SYNC_PERIODIC);
        for (int i = 0; i < NS; i++) {
            snprintf(dev, sizeof dev, "d%d", i);
            long n = read_back(db, "o", dev, got, ROUNDS + 1);
            if (n != ROUNDS) fprintf(stderr, "pattern %d series %d: %ld samples\n", pattern, i, n);
            assert_int_equal(n, ROUNDS);
            for (int r = 0; r < ROUNDS; r++) {
                assert_int_equal(got[r].t, T0 + r * 60000);
                assert_true(got[r].v == (double)i * 10 + r);
            }
        }
        assert_int_equal(tsdb_close(db), 0);
        tu_rmrf(dir);
    }
    free(ord);
    free(ids);
    free(b);
}

/* An import at partition boundaries: a row gives each device's series of
 * two metrics in turn, so the active list alternates between two id ranges
 * (out of id order at every device), and at a boundary almost every head is
 * split, its earlier part copied out to be sealed and the rest kept at the
 * front of its own buffer. Some devices miss days (their head is then
 * sealed whole, or kept whole in the open partition, and comes back at the
 * end of the list) and some start late. The flush sorts, and when it has
 * split every series it keeps, hands the list back in id order. Every
 * sample reads back after a reopen, packed heads or not. */
static double il_value(int dev, int metric, int day)
{
    return (double)(dev * 1000 + metric * 100 + day) + (day % 3 ? 0.25 : 0.0);
}

static int il_has(int dev, int day)
{
    if (dev >= 150 && day < 5) return 0; /* starts late */
    return (dev + day) % 11 != 0;        /* misses a day now and then */
}

static void test_split_interleaved_import(void **state)
{
    (void)state;
    enum { ND = 200, DAYS = 14 };
    char dev[32];
    for (int pack = 0; pack < 2; pack++) {
        char dir[256];
        assert_non_null(tu_mkdtemp(dir, sizeof dir));
        tsdb_options_t o;
        tsdb_options_init(&o);
        o.flush_interval_ms = -1;
        o.sync_mode = pack ? TSDB_SYNC_NONE : TSDB_SYNC_PERIODIC;
        o.partition_ms = 4 * DAY;
        o.ooo_window_ms = 400 * DAY;
        o.head_max_samples = UINT64_C(1) << 40;
        o.pack_heads = pack;
        tsdb_t *db = NULL;
        assert_int_equal(tsdb_open(dir, &o, &db), 0);
        tsdb_seal_closed_only(db, 1);
        tsdb_sid_t ids[ND][2];
        int created;
        /* the metrics' ids in two ranges, created device by device */
        for (int d = 0; d < ND; d++) {
            snprintf(dev, sizeof dev, "d%d", d);
            ids[d][0] = resolve(db, "m0", dev, &created);
            ids[d][1] = resolve(db, "m1", dev, &created);
        }
        assert_true(ids[1][0] < ids[0][1]); /* interleaved ranges, as assumed */
        uint64_t total = 0;
        tsdb_sid_sample_t b[2 * ND];
        for (int day = 0; day < DAYS; day++) {
            size_t n = 0;
            for (int d = 0; d < ND; d++) {
                if (!il_has(d, day)) continue;
                for (int m = 0; m < 2; m++) {
                    b[n].sid = ids[d][m];
                    b[n].t = T0 + day * DAY + 3600000 * (d % 5);
                    b[n].v = il_value(d, m, day);
                    n++;
                }
            }
            tsdb_append_result_t res;
            assert_int_equal(tsdb_append_sids(db, b, n, NULL, &res), 0);
            assert_int_equal(res.stored, n);
            total += n;
            assert_int_equal(tsdb_flush(db), 0);
        }
        tsdb_stats_t st;
        assert_int_equal(tsdb_stats(db, &st), 0);
        assert_int_equal(st.samples, total); /* sealed and in the head */
        tsdb_seal_closed_only(db, 0);
        assert_int_equal(tsdb_flush(db), 0);
        assert_int_equal(tsdb_close(db), 0);
        db = open_store_mode(dir, TSDB_SYNC_PERIODIC);
        tsdb_sample_t got[DAYS + 1];
        for (int d = 0; d < ND; d++) {
            snprintf(dev, sizeof dev, "d%d", d);
            for (int m = 0; m < 2; m++) {
                long n = read_back(db, m ? "m1" : "m0", dev, got, DAYS + 1);
                long k = 0;
                for (int day = 0; day < DAYS; day++) {
                    if (!il_has(d, day)) continue;
                    assert_true(k < n);
                    assert_int_equal(got[k].t, T0 + day * DAY + 3600000 * (d % 5));
                    assert_true(got[k].v == il_value(d, m, day));
                    k++;
                }
                assert_int_equal(n, k);
            }
        }
        assert_int_equal(tsdb_close(db), 0);
        tu_rmrf(dir);
    }
}

/* A packed head keeps its last entry's state in the series, its time being
 * the newest accepted. After a flush sealed the newest samples, an older
 * sample starts the next head: it must not start packed with a time that
 * is not the newest, or the next entry's interval is computed from the
 * wrong time. Values and outcomes read back exactly, before and after a
 * flush and a reopen. */
static void test_packed_head_after_sealed_newer(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.ooo_window_ms = 400 * DAY;
    o.pack_heads = 1;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    int created;
    tsdb_sid_t a = resolve(db, "ph", "a", &created);
    tsdb_sid_sample_t s1[2] = {{a, T0 + 10 * DAY, 1}, {a, T0 + 20 * DAY, 2}};
    assert_int_equal(tsdb_append_sids(db, s1, 2, NULL, NULL), 0);
    assert_int_equal(tsdb_flush(db), 0); /* the newest (day 20) sealed */
    /* day 15 (older than the newest), then days 25, 26, 27.5 */
    tsdb_sid_sample_t s2[4] = {{a, T0 + 15 * DAY, 3}, {a, T0 + 25 * DAY, 4},
                               {a, T0 + 26 * DAY, 5}, {a, T0 + 27 * DAY + DAY / 2, 6}};
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append_sids(db, s2, 4, NULL, &res), 0);
    assert_int_equal(res.stored, 4);
    int64_t want_t[6] = {10, 15, 20, 25, 26, 27};
    double want_v[6] = {1, 3, 2, 4, 5, 6};
    for (int pass = 0; pass < 3; pass++) {
        tsdb_sample_t got[8];
        assert_int_equal(read_back(db, "ph", "a", got, 8), 6);
        for (int i = 0; i < 6; i++) {
            assert_int_equal(got[i].t, T0 + want_t[i] * DAY + (i == 5 ? DAY / 2 : 0));
            assert_true(got[i].v == want_v[i]);
        }
        /* the same samples again: duplicates; another value: a conflict */
        uint8_t oc[2];
        tsdb_sid_sample_t d2[2] = {{a, T0 + 26 * DAY, 5}, {a, T0 + 15 * DAY, 9}};
        assert_int_equal(tsdb_append_sids(db, d2, 2, oc, NULL), 0);
        assert_int_equal(oc[0], TSDB_OUT_DUPLICATE);
        assert_int_equal(oc[1], TSDB_OUT_CONFLICT);
        if (pass == 0) assert_int_equal(tsdb_flush(db), 0);
        if (pass == 1) {
            assert_int_equal(tsdb_close(db), 0);
            db = open_store_mode(dir, TSDB_SYNC_PERIODIC);
        }
    }
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* A store written in order, with nothing deleted, is dense: its in-use
 * count (the file less LMDB's free list) covers the postings' duplicate
 * subtrees, and the flush does not vacuum it. Summing the trees' own page
 * counts (what the vacuum check did) left the subtrees out, so a dense
 * import looked a quarter free and was rewritten for ~1 % gain. */
static void test_dense_store_not_vacuumed(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    enum { N = 40000 };
    static tsdb_sid_sample_t in[N];
    for (int i = 0; i < N; i++) {
        char id[16], a[8], b[8], c[8], d[8];
        snprintf(id, sizeof id, "%d", i);
        snprintf(a, sizeof a, "a%d", i % 3);
        snprintf(b, sizeof b, "b%d", i % 5);
        snprintf(c, sizeof c, "c%d", i % 2);
        snprintf(d, sizeof d, "d%d", i % 4);
        tsdb_label_t l[6] = {{S("__name__"), S("m")}, {S("a"), S(a)}, {S("b"), S(b)},
                             {S("c"), S(c)},          {S("d"), S(d)}, {S("id"), S(id)}};
        tsdb_sid_t sid;
        int created;
        assert_int_equal(tsdb_series_id(db, l, 6, &sid, &created), 0);
        in[i] = (tsdb_sid_sample_t){sid, T0, i};
    }
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append_sids(db, in, N, NULL, &res), 0);
    assert_int_equal(tsdb_flush(db), 0);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_true(st.lmdb_used_bytes <= st.lmdb_bytes);
    assert_true(st.lmdb_used_bytes * 10 >= st.lmdb_bytes * 9); /* < 10 % free */
    assert_int_equal(st.vacuums, 0);
    /* the same store with half its series deleted is vacuumed */
    uint64_t ndel = 0;
    tsdb_matcher_t m[1] = {{TSDB_MATCH_EQ, "c", "c0"}};
    assert_int_equal(tsdb_delete_series(db, m, 1, &ndel), 0);
    assert_int_equal(ndel, N / 2);
    assert_int_equal(tsdb_flush(db), 0);
    tsdb_stats_t st2;
    assert_int_equal(tsdb_stats(db, &st2), 0);
    assert_int_equal(st2.vacuums, 1);
    assert_true(st2.lmdb_bytes < st.lmdb_bytes);
    assert_true(st2.lmdb_used_bytes <= st2.lmdb_bytes);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* A store without a WAL (an import) gets the light vacuum at an explicit
 * flush: small trees repacked, then a compacting copy once over a
 * hundredth of the file is free. Here repeated flushes into one partition
 * merge the earlier blocks away; every sample reads back after the copy
 * and a reopen. */
static void test_nowal_compact_copy(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store_mode(dir, TSDB_SYNC_NONE);
    enum { N = 20000, K = 6 };
    static tsdb_sid_sample_t in[N];
    static tsdb_sid_t sids[N];
    char dev[16];
    int created;
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof dev, "d%d", i);
        sids[i] = resolve(db, "m", dev, &created);
    }
    tsdb_stats_t st;
    for (int round = 0; round < K; round++) {
        for (int i = 0; i < N; i++)
            in[i] = (tsdb_sid_sample_t){sids[i], T0 + round * 60000, (double)(i * 7 + round * 1000003)};
        tsdb_append_result_t res;
        assert_int_equal(tsdb_append_sids(db, in, N, NULL, &res), 0);
        assert_int_equal(res.stored, N);
        assert_int_equal(tsdb_flush(db), 0);
        assert_int_equal(tsdb_stats(db, &st), 0);
        assert_true(st.lmdb_used_bytes <= st.lmdb_bytes);
        /* after each flush no more than a hundredth is left free */
        assert_true((st.lmdb_bytes - st.lmdb_used_bytes) * 100 <= st.lmdb_bytes ||
                    st.lmdb_bytes < 512 * 4096);
    }
    assert_true(st.vacuums >= 1);
    assert_int_equal(tsdb_close(db), 0);
    db = open_store(dir);
    tsdb_sample_t buf[K];
    for (int i = 0; i < N; i += 997) {
        snprintf(dev, sizeof dev, "d%d", i);
        assert_int_equal(read_back(db, "m", dev, buf, K), K);
        for (int round = 0; round < K; round++) {
            assert_int_equal(buf[round].t, T0 + round * 60000);
            assert_true(buf[round].v == (double)(i * 7 + round * 1000003));
        }
    }
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.samples, (uint64_t)N * K);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* The vacuum after a flush rewrites the index databases page by page
 * (postings a page of ids at a time): every selection still returns exactly
 * the right series afterwards, and the file got smaller. */
static void test_vacuum_keeps_index(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    enum { N = 30000 };
    static tsdb_sid_sample_t in[N * 2];
    size_t k = 0;
    for (int i = 0; i < N; i++) {
        char id[16], grp[8], par[8];
        snprintf(id, sizeof id, "%d", i);
        snprintf(grp, sizeof grp, "g%d", i % 7);
        snprintf(par, sizeof par, "%d", i % 2);
        tsdb_label_t l[4] = {
            {S("__name__"), S("m")}, {S("id"), S(id)}, {S("grp"), S(grp)}, {S("par"), S(par)}};
        tsdb_sid_t sid;
        int created;
        assert_int_equal(tsdb_series_id(db, l, 4, &sid, &created), 0);
        in[k++] = (tsdb_sid_sample_t){sid, T0, i};
        in[k++] = (tsdb_sid_sample_t){sid, T0 + 60000, i + 0.5};
    }
    tsdb_append_result_t res;
    assert_int_equal(tsdb_append_sids(db, in, k, NULL, &res), 0);
    assert_int_equal(res.stored, k);
    assert_int_equal(tsdb_flush(db), 0);
    /* delete a third (ids divisible by 3) */
    uint64_t ndel = 0, total_del = 0;
    for (int g = 0; g < 7; g++) {
        char grp[8];
        snprintf(grp, sizeof grp, "g%d", g);
        tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "grp", grp}, {TSDB_MATCH_EQ, "par", "0"}};
        assert_int_equal(tsdb_delete_series(db, m, 2, &ndel), 0);
        total_del += ndel;
    }
    assert_int_equal(total_del, N / 2);
    tsdb_stats_t before, after;
    assert_int_equal(tsdb_stats(db, &before), 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_stats(db, &after), 0);
    assert_true(after.lmdb_bytes < before.lmdb_bytes); /* vacuumed */
    assert_int_equal(tsdb_close(db), 0);
    db = open_store(dir);
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    for (int g = 0; g < 7; g++) {
        char grp[8];
        snprintf(grp, sizeof grp, "g%d", g);
        tsdb_matcher_t m[1] = {{TSDB_MATCH_EQ, "grp", grp}};
        tsdb_sids_t ids = {0};
        assert_int_equal(tsdb_select(r, m, 1, INT64_MIN, INT64_MAX, &ids), 0);
        size_t want = 0;
        for (int i = 0; i < N; i++)
            want += i % 7 == g && i % 2 == 1;
        assert_int_equal(ids.n, want);
        for (size_t j = 0; j < ids.n; j++) {
            const tsdb_label_t *l;
            size_t nl;
            assert_int_equal(tsdb_series_labels(r, ids.ids[j], &l, &nl), 0);
            assert_int_equal(nl, 4);
            assert_memory_equal(l[2].name.ptr, "id", 2); /* sorted: __name__ grp id par */
            char idb[16];
            assert_true(l[2].value.len < sizeof idb);
            memcpy(idb, l[2].value.ptr, l[2].value.len);
            idb[l[2].value.len] = 0;
            int id = atoi(idb);
            assert_int_equal(id % 7, g);
            assert_int_equal(id % 2, 1);
        }
        tsdb_sids_free(&ids);
    }
    tsdb_matcher_t odd[1] = {{TSDB_MATCH_EQ, "par", "1"}};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, odd, 1, INT64_MIN, INT64_MAX, &ids), 0);
    assert_int_equal(ids.n, N / 2);
    tsdb_sids_free(&ids);
    tsdb_matcher_t even[1] = {{TSDB_MATCH_EQ, "par", "0"}};
    assert_int_equal(tsdb_select(r, even, 1, INT64_MIN, INT64_MAX, &ids), 0);
    assert_int_equal(ids.n, 0);
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    tsdb_sample_t got[4];
    assert_int_equal(read_back(db, "m", "x", got, 4), -1);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

static size_t count_sel(tsdb_t *db, const char *name, const char *value)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m = {TSDB_MATCH_EQ, name, value};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, &m, 1, INT64_MIN, INT64_MAX, &ids), 0);
    size_t n = ids.n;
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    return n;
}

/* A flush writes the postings of its new series in bulk, a page of ids per
 * pair; when a pair's list already holds larger ids (another metric's later
 * group), they go one by one into the middle. Every list stays complete. */
static void test_postings_bulk_out_of_order(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir);
    int created;
    for (int round = 0; round < 3; round++) {
        tsdb_sid_sample_t in[2000];
        size_t k = 0;
        for (int i = 0; i < 1000; i++) { /* "b" first in round 0: its group is older */
            char dev[32];
            snprintf(dev, sizeof dev, "d%d-%d", round, i);
            tsdb_sid_t b = resolve(db, "b", dev, &created);
            tsdb_sid_t a = resolve(db, "a", dev, &created);
            in[k++] = (tsdb_sid_sample_t){a, T0 + round, 1};
            in[k++] = (tsdb_sid_sample_t){b, T0 + round, 2};
        }
        assert_int_equal(tsdb_append_sids(db, in, k, NULL, NULL), 0);
        assert_int_equal(tsdb_flush(db), 0);
    }
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(count_sel(db, "job", "t"), 6000);
        assert_int_equal(count_sel(db, "__name__", "a"), 3000);
        assert_int_equal(count_sel(db, "__name__", "b"), 3000);
        assert_int_equal(count_sel(db, "device", "d2-999"), 2);
        assert_int_equal(tsdb_close(db), 0);
        db = open_store(dir);
    }
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* Packed heads (tsdb/headpack.h) against plain ones: the same random mix
 * of appends (in order, out of order, duplicates, conflicts, too old, NaN
 * and -0.0 values), flushes in both modes and reads gives the same outcomes
 * and the same samples, bit for bit, through the head, after flushes that
 * split heads, and after reopening; and a day-a-sample import holds its
 * head in under a quarter of the plain memory. */
#define PK_SERIES 64
static void pk_run(const char *dir, int packed, uint64_t seed, uint64_t *outc, size_t nout,
                   uint64_t *head_bytes)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.pack_heads = packed;
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.partition_ms = 4 * DAY;
    o.ooo_window_ms = 10 * DAY;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    tsdb_sid_t sid[PK_SERIES];
    char dev[16];
    for (unsigned i = 0; i < PK_SERIES; i++) {
        snprintf(dev, sizeof dev, "d%u", i);
        sid[i] = resolve(db, "pk", dev, NULL);
    }
    uint64_t r = seed | 1;
#define PK_RND() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    int64_t tnext[PK_SERIES], tlast[PK_SERIES];
    double vlast[PK_SERIES];
    for (unsigned i = 0; i < PK_SERIES; i++) {
        tnext[i] = T0 + (int64_t)(PK_RND() % 1000);
        tlast[i] = INT64_MIN;
        vlast[i] = 0;
    }
    size_t k = 0;
    for (int step = 0; step < 6000; step++) {
        unsigned i = (unsigned)(PK_RND() % PK_SERIES);
        tsdb_sid_sample_t smp = {sid[i], 0, 0};
        uint64_t what = PK_RND() % 100;
        if (what < 80) { /* in order, hourly-ish */
            smp.t = tnext[i];
            tnext[i] += 4 * 3600000 + (int64_t)(PK_RND() % 5);
        } else if (what < 95) { /* out of order: within the window, or too old */
            smp.t = tnext[i] - (int64_t)(PK_RND() % (14 * DAY));
        } else { /* the newest again: a duplicate or a conflict */
            smp.t = tlast[i] == INT64_MIN ? tnext[i] : tlast[i];
        }
        uint64_t vk = PK_RND() % 8;
        smp.v = vk == 0 ? NAN : vk == 1 ? -0.0 : vk < 4 ? (double)(smp.t / 3600000 % 7)
                                                        : (double)(PK_RND() % 1000) / 10.0;
        if (what >= 95 && tlast[i] != INT64_MIN && PK_RND() % 2) smp.v = vlast[i];
        if (what < 80) {
            tlast[i] = smp.t;
            vlast[i] = smp.v;
        }
        uint8_t oc = 0xff;
        tsdb_append_result_t res;
        assert_int_equal(tsdb_append_sids(db, &smp, 1, &oc, &res), 0);
        if (k < nout) outc[k++] = oc;
        if (step % 997 == 996) {
            tsdb_seal_closed_only(db, (int)(PK_RND() % 2));
            assert_int_equal(tsdb_flush(db), 0);
        }
    }
    tsdb_memory_t m;
    tsdb_memory(db, &m);
    (void)m;
    /* everything read back through head + blocks, then after a reopen */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < PK_SERIES; i++) {
            static tsdb_sample_t got[8000];
            snprintf(dev, sizeof dev, "d%u", i);
            long n = read_back(db, "pk", dev, got, 8000);
            assert_true(n >= 0);
            for (long j = 0; j < n; j++) {
                uint64_t b;
                memcpy(&b, &got[j].v, 8);
                if (k < nout) outc[k++] = (uint64_t)got[j].t ^ b;
            }
            if (k < nout) outc[k++] = (uint64_t)n;
        }
        assert_int_equal(tsdb_close(db), 0);
        if (pass == 0) assert_int_equal(tsdb_open(dir, &o, &db), 0);
    }
    /* a 30-day import of 20,000 series, one sample a day: head memory */
    char d2[300];
    snprintf(d2, sizeof d2, "%s-mem", dir);
    tsdb_t *mdb = open_budget(d2, 0, packed);
    static tsdb_sid_t ms[20000];
    for (unsigned i = 0; i < 20000; i++) {
        snprintf(dev, sizeof dev, "m%u", i);
        ms[i] = resolve(mdb, "mem", dev, NULL);
    }
    static tsdb_sid_sample_t b[20000];
    for (unsigned d = 0; d < 30; d++) {
        for (unsigned i = 0; i < 20000; i++) {
            b[i].sid = ms[i];
            b[i].t = T0 + (int64_t)d * DAY;
            b[i].v = mb_value(i, d / 7); /* changes once a week */
        }
        assert_int_equal(tsdb_append_sids(mdb, b, 20000, NULL, NULL), 0);
    }
    tsdb_memory(mdb, &m);
    assert_int_equal(m.head_samples, 20000u * 30u);
    *head_bytes = m.head;
    assert_int_equal(tsdb_close(mdb), 0);
    tu_rmrf(d2);
#undef PK_RND
}

static void test_packed_heads(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("packed_heads", 20261129);
    enum { NOUT = 40000 };
    static uint64_t a[NOUT], b[NOUT];
    char da[256], dbd[256];
    assert_non_null(tu_mkdtemp(da, sizeof da));
    assert_non_null(tu_mkdtemp(dbd, sizeof dbd));
    uint64_t ha = 0, hb = 0;
    pk_run(da, 1, seed, a, NOUT, &ha);
    pk_run(dbd, 0, seed, b, NOUT, &hb);
    for (size_t i = 0; i < NOUT; i++)
        if (a[i] != b[i]) fail_msg("packed and plain differ at output %zu", i);
    /* outcomes of every kind were met (the mix is not trivially in order) */
    int seen[8] = {0};
    for (size_t i = 0; i < 6000; i++)
        if (a[i] < 8) seen[a[i]] = 1;
    fprintf(stderr, "outcomes seen: %d %d %d %d\n", seen[0], seen[1], seen[2], seen[3]);
    assert_true(seen[TSDB_OUT_STORED] && seen[TSDB_OUT_DUPLICATE] && seen[TSDB_OUT_CONFLICT] &&
                seen[TSDB_OUT_TOO_OLD]);
    fprintf(stderr, "head bytes for 600,000 daily samples: packed %" PRIu64 ", plain %" PRIu64 "\n",
            ha, hb);
    assert_true(hb >= 20000u * 30u * sizeof(tsdb_sample_t));
    assert_true(ha * 4 < hb);
    tu_rmrf(da);
    tu_rmrf(dbd);

    /* the memory-cap import of test_memory_budget_pieces: at the minimum
     * budget, where plain heads are sealed in pieces, packed ones fit and
     * the partition is sealed once, at the end, with every sample exact */
    assert_non_null(tu_mkdtemp(da, sizeof da));
    tsdb_t *db = open_budget(da, 1, 1);
    int pieces = -1;
    mb_fill(db, -1, &pieces);
    assert_int_equal(pieces, 0);
    tsdb_memory_t m;
    tsdb_memory(db, &m);
    assert_int_equal(m.head_samples, (uint64_t)MB_SERIES * MB_DAYS);
    assert_true(m.head < m.head_budget / 3);
    assert_int_equal(m.unpersisted, MB_SERIES);
    tsdb_seal_closed_only(db, 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(tsdb_close(db), 0);
    mb_check(da);
    tu_rmrf(da);
}

/* A flush in tsdb_seal_closed_only mode that seals nothing of a series (its
 * samples are all in the open partition) indexes it all the same, so its
 * label copy goes; it is found by its labels, reads back exactly, and after
 * kill -9 the WAL replay brings every sample back, packed heads or not. */
#define KW_SERIES 1000
#define KW_DAYS 10
static void kw_fill(tsdb_t *db)
{
    char dev[32];
    static tsdb_sid_t sid[KW_SERIES];
    for (unsigned i = 0; i < KW_SERIES; i++) {
        snprintf(dev, sizeof dev, "k%u", i);
        sid[i] = resolve(db, "kw", dev, NULL);
    }
    static tsdb_sid_sample_t b[KW_SERIES];
    /* days 0-9 after 2026-01-01: inside the 32-day partition that starts
     * 2025-12-26 */
    for (unsigned d = 0; d < KW_DAYS; d++) {
        for (unsigned i = 0; i < KW_SERIES; i++) {
            b[i].sid = sid[i];
            b[i].t = T0 + (int64_t)d * DAY;
            b[i].v = mb_value(i, d);
        }
        assert_int_equal(tsdb_append_sids(db, b, KW_SERIES, NULL, NULL), 0);
    }
}

static void kw_check(tsdb_t *db)
{
    char dev[32];
    tsdb_sample_t got[KW_DAYS + 1];
    for (unsigned i = 0; i < KW_SERIES; i += 37) {
        snprintf(dev, sizeof dev, "k%u", i);
        assert_int_equal(read_back(db, "kw", dev, got, KW_DAYS + 1), KW_DAYS);
        for (unsigned d = 0; d < KW_DAYS; d++)
            assert_true(got[d].t == T0 + (int64_t)d * DAY && got[d].v == mb_value(i, d));
    }
}

static void test_kept_whole_indexed(void **state)
{
    (void)state;
    for (int pack = 0; pack < 2; pack++) {
        char dir[256];
        assert_non_null(tu_mkdtemp(dir, sizeof dir));
        tsdb_t *db = open_budget(dir, 0, pack);
        kw_fill(db);
        assert_int_equal(tsdb_flush(db), 0);
        tsdb_stats_t st;
        assert_int_equal(tsdb_stats(db, &st), 0);
        assert_int_equal(st.samples - st.head_samples, 0); /* nothing sealed */
        tsdb_memory_t m;
        tsdb_memory(db, &m);
        assert_int_equal(m.unpersisted, 0);
        assert_int_equal(m.labels, 0);
        kw_check(db);
        assert_int_equal(tsdb_close(db), 0);
        db = open_budget(dir, 0, pack);
        kw_check(db);
        assert_int_equal(tsdb_close(db), 0);
        tu_rmrf(dir);

        /* kill -9 after the flush: the WAL replay finds the series by id */
        assert_non_null(tu_mkdtemp(dir, sizeof dir));
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            tsdb_t *cdb = open_budget(dir, 0, pack);
            kw_fill(cdb);
            if (tsdb_flush(cdb)) _exit(3);
            if (write(p[1], "k", 1) != 1) _exit(3);
            pause();
            _exit(0);
        }
        close(p[1]);
        char k = 0;
        ssize_t got = read(p[0], &k, 1);
        close(p[0]);
        kill(pid, SIGKILL);
        int wst;
        waitpid(pid, &wst, 0);
        assert_int_equal(got, 1);
        db = open_budget(dir, 0, pack);
        assert_int_equal(tsdb_stats(db, &st), 0);
        assert_int_equal(st.series, KW_SERIES);
        kw_check(db);
        assert_int_equal(tsdb_close(db), 0);
        tu_rmrf(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sids_outcomes),
        cmocka_unit_test(test_sids_unused),
        cmocka_unit_test(test_sids_head_order_and_slabs),
        cmocka_unit_test(test_sids_wal_values_kill9),
        cmocka_unit_test(test_sids_kill9),
        cmocka_unit_test(test_seal_closed_only_kill9),
        cmocka_unit_test(test_seal_closed_only_modes),
        cmocka_unit_test(test_memory_budget_pieces),
        cmocka_unit_test(test_packed_heads),
        cmocka_unit_test(test_flush_sort_orders),
        cmocka_unit_test(test_split_interleaved_import),
        cmocka_unit_test(test_packed_head_after_sealed_newer),
        cmocka_unit_test(test_kept_whole_indexed),
        cmocka_unit_test(test_vacuum_keeps_index),
        cmocka_unit_test(test_dense_store_not_vacuumed),
        cmocka_unit_test(test_nowal_compact_copy),
        cmocka_unit_test(test_postings_bulk_out_of_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
