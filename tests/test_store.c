/*
 * test_store.c — the store through its public API: round trips, outcomes,
 * out-of-order, a differential test against a naive in-memory reference
 * under random operation sequences (with reopen, flush, delete, retention),
 * concurrency with group commit, backup, corruption and format version.
 * The crash (kill -9) and space-exhaustion tests are in test_store_crash.c.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lmdb.h>

#include "testutil.h"
#include "tsdb/tsdb.h"

#define T0 INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

static tsdb_str_t S(const char *s)
{
    tsdb_str_t r = {s, (uint32_t)strlen(s)};
    return r;
}

static tsdb_t *open_store(const char *dir, int64_t flush_interval)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = flush_interval;
    tsdb_t *db = NULL;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) fprintf(stderr, "open: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
    assert_int_equal(rc, 0);
    return db;
}

static tsdb_t *open_store_pm(const char *dir, int64_t flush_interval, int64_t pm)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = flush_interval;
    o.partition_ms = pm;
    tsdb_t *db = NULL;
    int rc = tsdb_open(dir, &o, &db);
    if (rc) fprintf(stderr, "open: %s (%s)\n", tsdb_strerror(rc), tsdb_last_error_detail());
    assert_int_equal(rc, 0);
    return db;
}

/* Read all samples of the single series matching name/id into out. */
static size_t read_series(tsdb_t *db, const char *name, const char *id, tsdb_sample_t *out,
                          size_t cap, int *found)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", name}, {TSDB_MATCH_EQ, "id", id}};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, m, 2, INT64_MIN, INT64_MAX, &ids), 0);
    assert_true(ids.n <= 1);
    *found = (int)ids.n;
    size_t n = 0;
    if (ids.n) {
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, ids.ids[0], INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *s;
        size_t k;
        int rc;
        while ((rc = tsdb_iter_next(it, &s, &k)) == 1) {
            assert_true(n + k <= cap);
            memcpy(out + n, s, k * sizeof *s);
            n += k;
        }
        assert_int_equal(rc, 0);
        tsdb_iter_close(it);
    }
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    return n;
}

static int append1(tsdb_t *db, const char *name, const char *id, const tsdb_sample_t *s, size_t n,
                   uint8_t *oc)
{
    tsdb_label_t l[3] = {{S("id"), S(id)}, {S("__name__"), S(name)}, {S("job"), S("test")}};
    tsdb_series_in_t in = {l, 3, s, (uint32_t)n};
    return tsdb_append(db, &in, 1, oc, NULL);
}

static const uint64_t special_bits[] = {
    UINT64_C(0x7ff0000000000002), /* staleness marker */
    UINT64_C(0x7ff8000000000000), /* quiet NaN */
    UINT64_C(0x7ff8000000000001), UINT64_C(0xfff8000000000abc), UINT64_C(0x7ff4000000000000),
    UINT64_C(0x7ff0000000000000), /* +Inf */
    UINT64_C(0xfff0000000000000), /* -Inf */
    UINT64_C(0x8000000000000000), /* -0.0 */
    UINT64_C(0x0000000000000000), UINT64_C(0x0000000000000001), /* denormal */
    UINT64_C(0x000fffffffffffff), UINT64_C(0x7fefffffffffffff), UINT64_C(0x3fb999999999999a),
};

static void test_roundtrip_special(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, -1);
    size_t ns = sizeof special_bits / sizeof *special_bits;
    tsdb_sample_t in[64];
    for (size_t i = 0; i < ns; i++) {
        in[i].t = T0 + (int64_t)i * 15000;
        in[i].v = f64_from_bits(special_bits[i]);
    }
    uint8_t oc[64];
    assert_int_equal(append1(db, "m", "1", in, ns, oc), 0);
    for (size_t i = 0; i < ns; i++) assert_int_equal(oc[i], TSDB_OUT_STORED);
    for (int phase = 0; phase < 3; phase++) {
        /* phase 0: head, 1: sealed, 2: after reopen */
        if (phase == 1) assert_int_equal(tsdb_flush(db), 0);
        if (phase == 2) {
            assert_int_equal(tsdb_close(db), 0);
            db = open_store(dir, -1);
        }
        tsdb_sample_t got[64];
        int found;
        size_t n = read_series(db, "m", "1", got, 64, &found);
        assert_int_equal(found, 1);
        assert_int_equal(n, ns);
        for (size_t i = 0; i < ns; i++) {
            assert_int_equal(got[i].t, in[i].t);
            assert_true(f64_bits(got[i].v) == special_bits[i]);
        }
    }
    tsdb_close(db);
    tu_rmrf(dir);
}

static void test_outcomes(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, -1);
    tsdb_sample_t a[3] = {{T0, 1}, {T0 + 1000, 2}, {T0 + 2000, 3}};
    uint8_t oc[8];
    tsdb_append_result_t res;
    assert_int_equal(append1(db, "m", "1", a, 3, oc), 0);
    /* retry of the same batch: all duplicates */
    assert_int_equal(append1(db, "m", "1", a, 3, oc), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(oc[i], TSDB_OUT_DUPLICATE);
    /* different value at a stored timestamp: conflict; too old; in-window ooo */
    tsdb_sample_t b[3] = {{T0 + 1000, 5}, {T0 + 2000 - 3600 * 1000 - 1, 1}, {T0 + 500, 7}};
    assert_int_equal(append1(db, "m", "1", b, 3, oc), 0);
    assert_int_equal(oc[0], TSDB_OUT_CONFLICT);
    assert_int_equal(oc[1], TSDB_OUT_TOO_OLD);
    assert_int_equal(oc[2], TSDB_OUT_STORED);
    /* the same after sealing */
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(append1(db, "m", "1", a, 3, oc), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(oc[i], TSDB_OUT_DUPLICATE);
    assert_int_equal(append1(db, "m", "1", b, 1, oc), 0);
    assert_int_equal(oc[0], TSDB_OUT_CONFLICT);
    /* invalid series: no __name__, duplicate label, empty name */
    tsdb_label_t bad1[1] = {{S("job"), S("x")}};
    tsdb_label_t bad2[3] = {{S("__name__"), S("m")}, {S("a"), S("1")}, {S("a"), S("2")}};
    tsdb_label_t bad3[2] = {{S("__name__"), S("m")}, {S(""), S("2")}};
    tsdb_label_t good[2] = {{S("__name__"), S("m")}, {S("id"), S("2")}};
    tsdb_series_in_t in[4] = {{bad1, 1, a, 1}, {bad2, 3, a, 1}, {good, 2, a, 2}, {bad3, 2, a, 1}};
    assert_int_equal(tsdb_append(db, in, 4, oc, &res), 0);
    assert_int_equal(oc[0], TSDB_OUT_INVALID);
    assert_int_equal(oc[1], TSDB_OUT_INVALID);
    assert_int_equal(oc[2], TSDB_OUT_STORED);
    assert_int_equal(oc[3], TSDB_OUT_STORED);
    assert_int_equal(oc[4], TSDB_OUT_INVALID);
    assert_int_equal(res.invalid, 3);
    assert_int_equal(res.stored, 2);
    assert_int_equal(res.series_created, 1);
    /* read back in order with the out-of-order sample */
    tsdb_sample_t got[8];
    int found;
    size_t n = read_series(db, "m", "1", got, 8, &found);
    assert_int_equal(n, 4);
    assert_int_equal(got[0].t, T0);
    assert_int_equal(got[1].t, T0 + 500);
    assert_true(got[1].v == 7);
    assert_int_equal(got[2].t, T0 + 1000);
    assert_true(got[2].v == 2);
    tsdb_close(db);
    tu_rmrf(dir);
}

static void test_matchers_and_labels(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, -1);
    tsdb_sample_t a[1] = {{T0, 1}};
    const char *ids[] = {"1", "2", "3", "10"};
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 4; i++) {
            tsdb_sample_t s = {T0 + pass * 1000, i};
            assert_int_equal(append1(db, i < 2 ? "up" : "down", ids[i], &s, 1, NULL), 0);
        }
        tsdb_reader_t *r;
        assert_int_equal(tsdb_reader_open(db, &r), 0);
        tsdb_sids_t out = {0};
        tsdb_matcher_t m1[] = {{TSDB_MATCH_RE, "id", "1.*"}};
        assert_int_equal(tsdb_select(r, m1, 1, INT64_MIN, INT64_MAX, &out), 0);
        assert_int_equal(out.n, 2);
        tsdb_matcher_t m2[] = {{TSDB_MATCH_EQ, "job", "test"}, {TSDB_MATCH_NE, "__name__", "up"}};
        assert_int_equal(tsdb_select(r, m2, 2, INT64_MIN, INT64_MAX, &out), 0);
        assert_int_equal(out.n, 2);
        tsdb_matcher_t m3[] = {{TSDB_MATCH_NRE, "id", "1|2"}, {TSDB_MATCH_EQ, "job", "test"}};
        assert_int_equal(tsdb_select(r, m3, 2, INT64_MIN, INT64_MAX, &out), 0);
        assert_int_equal(out.n, 2);
        /* time range excludes everything */
        assert_int_equal(tsdb_select(r, m2, 2, T0 + 5000, T0 + 9000, &out), 0);
        assert_int_equal(out.n, 0);
        /* a selector matching everything is refused; a bad regex too */
        tsdb_matcher_t m4[] = {{TSDB_MATCH_RE, "id", ".*"}};
        assert_int_equal(tsdb_select(r, m4, 1, INT64_MIN, INT64_MAX, &out), TSDB_EINVAL);
        tsdb_matcher_t m5[] = {{TSDB_MATCH_RE, "id", "(("}};
        assert_int_equal(tsdb_select(r, m5, 1, INT64_MIN, INT64_MAX, &out), TSDB_EREGEX);
        tsdb_strings_t sv = {0};
        assert_int_equal(tsdb_label_names(r, NULL, 0, &sv), 0);
        assert_int_equal(sv.n, 3);
        assert_string_equal(sv.v[0], "__name__");
        assert_string_equal(sv.v[1], "id");
        assert_string_equal(sv.v[2], "job");
        tsdb_strings_free(&sv);
        tsdb_matcher_t m6[] = {{TSDB_MATCH_EQ, "__name__", "down"}};
        assert_int_equal(tsdb_label_values(r, "id", m6, 1, &sv), 0);
        assert_int_equal(sv.n, 2);
        assert_string_equal(sv.v[0], "10");
        assert_string_equal(sv.v[1], "3");
        tsdb_strings_free(&sv);
        /* labels of a series */
        assert_int_equal(tsdb_select(r, m6, 1, INT64_MIN, INT64_MAX, &out), 0);
        const tsdb_label_t *l;
        size_t nl;
        assert_int_equal(tsdb_series_labels(r, out.ids[0], &l, &nl), 0);
        assert_int_equal(nl, 3);
        assert_memory_equal(l[0].name.ptr, "__name__", 8);
        assert_int_equal(tsdb_series_labels(r, 999999, &l, &nl), TSDB_ENOTFOUND);
        tsdb_sids_free(&out);
        tsdb_reader_close(r);
        assert_int_equal(tsdb_flush(db), 0); /* second pass: from the index */
    }
    (void)a;
    tsdb_close(db);
    tu_rmrf(dir);
}

/* ---- differential test against a naive reference ------------------------------ */

#define NSER 12
#define MAXS 4000

typedef struct {
    int64_t t;
    uint64_t bits;
} ref_sample_t;

typedef struct {
    ref_sample_t v[MAXS];
    size_t n;
    int64_t maxt; /* newest accepted ever (INT64_MIN if none since creation) */
} ref_series_t;

static ref_series_t ref[NSER];

static long ref_find(const ref_series_t *r, int64_t t)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].t == t) return (long)i;
    return -1;
}

static int ref_append(ref_series_t *r, int64_t t, uint64_t bits)
{
    long i = ref_find(r, t);
    if (i >= 0) return r->v[i].bits == bits ? TSDB_OUT_DUPLICATE : TSDB_OUT_CONFLICT;
    if (r->maxt != INT64_MIN && t < r->maxt - 3600 * 1000) return TSDB_OUT_TOO_OLD;
    assert_true(r->n < MAXS);
    size_t j = r->n++;
    while (j > 0 && r->v[j - 1].t > t) {
        r->v[j] = r->v[j - 1];
        j--;
    }
    r->v[j].t = t;
    r->v[j].bits = bits;
    if (t > r->maxt) r->maxt = t;
    return TSDB_OUT_STORED;
}

static uint64_t rand_bits(trng_t *g)
{
    switch (trng_below(g, 4)) {
    case 0: return special_bits[trng_below(g, sizeof special_bits / sizeof *special_bits)];
    case 1: return f64_bits((double)(int64_t)trng_below(g, 1000));
    case 2: return trng_next(g);
    default: return f64_bits((double)trng_below(g, 100000) / 100.0);
    }
}

static void verify_all(tsdb_t *db)
{
    static tsdb_sample_t got[MAXS];
    for (int s = 0; s < NSER; s++) {
        char id[16];
        snprintf(id, sizeof id, "%d", s);
        int found;
        size_t n = read_series(db, "rnd", id, got, MAXS, &found);
        if (n != ref[s].n) fprintf(stderr, "series %d: got %zu samples, want %zu\n", s, n, ref[s].n);
        assert_int_equal(n, ref[s].n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(got[i].t, ref[s].v[i].t);
            assert_true(f64_bits(got[i].v) == ref[s].v[i].bits);
        }
    }
}

static void test_differential(void **state)
{
    (void)state;
    uint64_t seed = tu_seed("store_differential", 20261128);
    long rounds = tu_env_long("AUGUR_TEST_ROUNDS", 400);
    trng_t g;
    trng_seed(&g, seed);
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    /* the partition length of the series' group: 2 h by default, or another */
    static const int64_t pms[] = {2 * 3600 * 1000, 3 * 3600 * 1000, 86400 * 1000, 5 * 60 * 1000};
    int64_t PM = pms[trng_below(&g, 4)];
    fprintf(stderr, "differential: partition %lld ms\n", (long long)PM);
    tsdb_t *db = open_store_pm(dir, -1, PM);
    for (int s = 0; s < NSER; s++) {
        ref[s].n = 0;
        ref[s].maxt = INT64_MIN;
    }
    int64_t now = T0;
    for (long round = 0; round < rounds; round++) {
        unsigned op = (unsigned)trng_below(&g, 100);
        if (op < 80) { /* append a batch over several series */
            tsdb_series_in_t in[NSER];
            tsdb_label_t labels[NSER][2];
            static tsdb_sample_t smp[NSER][16];
            char ids[NSER][16];
            int which[NSER];
            size_t ni = 0;
            size_t nsel = 1 + trng_below(&g, 4);
            for (size_t k = 0; k < nsel; k++) {
                int s = (int)trng_below(&g, NSER);
                int dup = 0;
                for (size_t q = 0; q < ni; q++) dup |= which[q] == s;
                if (dup) continue;
                which[ni] = s;
                snprintf(ids[ni], sizeof ids[ni], "%d", s);
                labels[ni][0].name = S("__name__");
                labels[ni][0].value = S("rnd");
                labels[ni][1].name = S("id");
                labels[ni][1].value = S(ids[ni]);
                size_t ns = 1 + trng_below(&g, 15);
                for (size_t j = 0; j < ns; j++) {
                    int64_t t;
                    unsigned kind = (unsigned)trng_below(&g, 10);
                    if (kind < 6) t = now + (int64_t)trng_below(&g, 60000); /* forward */
                    else if (kind < 8 && ref[s].n) /* exact retry of an existing sample */
                        t = ref[s].v[trng_below(&g, ref[s].n)].t;
                    else t = now - (int64_t)trng_below(&g, 3 * 3600 * 1000); /* out of order */
                    uint64_t bits = rand_bits(&g);
                    long e = ref_find(&ref[s], t);
                    if (e >= 0 && trng_below(&g, 2)) bits = ref[s].v[e].bits;
                    smp[ni][j].t = t;
                    smp[ni][j].v = f64_from_bits(bits);
                }
                in[ni].labels = labels[ni];
                in[ni].nlabels = 2;
                in[ni].samples = smp[ni];
                in[ni].nsamples = (uint32_t)ns;
                ni++;
            }
            uint8_t oc[NSER * 16];
            assert_int_equal(tsdb_append(db, in, ni, oc, NULL), 0);
            size_t o = 0;
            for (size_t k = 0; k < ni; k++)
                for (uint32_t j = 0; j < in[k].nsamples; j++, o++) {
                    int want = ref_append(&ref[which[k]], smp[k][j].t, f64_bits(smp[k][j].v));
                    if (oc[o] != want)
                        fprintf(stderr, "round %ld series %d t=%" PRId64 ": outcome %d want %d\n",
                                round, which[k], smp[k][j].t, oc[o], want);
                    assert_int_equal(oc[o], want);
                }
            now += (int64_t)trng_below(&g, 120000);
        } else if (op < 86) {
            assert_int_equal(tsdb_flush(db), 0);
        } else if (op < 91) {
            assert_int_equal(tsdb_close(db), 0);
            /* reopening with another default must not change existing groups */
            db = open_store_pm(dir, -1, trng_below(&g, 2) ? PM : 0);
        } else if (op < 94) { /* delete one series */
            int s = (int)trng_below(&g, NSER);
            char id[16];
            snprintf(id, sizeof id, "%d", s);
            tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", "rnd"}, {TSDB_MATCH_EQ, "id", id}};
            uint64_t nd;
            assert_int_equal(tsdb_delete_series(db, m, 2, &nd), 0);
            assert_int_equal(nd, ref[s].maxt != INT64_MIN ? 1 : 0);
            ref[s].n = 0;
            ref[s].maxt = INT64_MIN;
        } else if (op < 96) { /* retention: reopen with a retention and apply it */
            assert_int_equal(tsdb_close(db), 0);
            tsdb_options_t o;
            tsdb_options_init(&o);
            o.flush_interval_ms = -1;
            o.retention_ms = 4 * 3600 * 1000;
            o.partition_ms = PM;
            assert_int_equal(tsdb_open(dir, &o, &db), 0);
            assert_int_equal(tsdb_flush(db), 0);
            int64_t cutoff = now - o.retention_ms;
            assert_int_equal(tsdb_retention_apply(db, now), 0);
            for (int s = 0; s < NSER; s++) {
                size_t w = 0;
                for (size_t i = 0; i < ref[s].n; i++) {
                    int64_t t = ref[s].v[i].t;
                    int64_t p = t / PM * PM;
                    if (t % PM < 0) p -= PM;
                    if (p + PM > cutoff) ref[s].v[w++] = ref[s].v[i];
                }
                ref[s].n = w;
            }
        } else {
            verify_all(db);
        }
    }
    verify_all(db);
    uint64_t bad;
    assert_int_equal(tsdb_check(db, &bad), 0);
    assert_int_equal(bad, 0);
    tsdb_close(db);
    tu_rmrf(dir);
}

/* ---- concurrency: several appenders, a reader, group commit ------------------------ */

typedef struct {
    tsdb_t *db;
    int id;
    int n;
} thr_arg_t;

static void *appender(void *p)
{
    thr_arg_t *a = p;
    char id[16];
    snprintf(id, sizeof id, "w%d", a->id);
    for (int i = 0; i < a->n; i++) {
        tsdb_sample_t s[4];
        for (int k = 0; k < 4; k++) {
            s[k].t = T0 + (int64_t)(i * 4 + k) * 1000;
            s[k].v = i * 4 + k;
        }
        int rc = append1(a->db, "conc", id, s, 4, NULL);
        if (rc) {
            fprintf(stderr, "appender %d: %s (%s)\n", a->id, tsdb_strerror(rc), tsdb_last_error_detail());
            return (void *)1;
        }
    }
    return NULL;
}

static void *reader_thr(void *p)
{
    thr_arg_t *a = p;
    for (int i = 0; i < a->n; i++) {
        tsdb_sample_t got[4096];
        int found;
        size_t n = read_series(a->db, "conc", "w0", got, 4096, &found);
        for (size_t k = 1; k < n; k++)
            if (got[k].t <= got[k - 1].t) {
                fprintf(stderr, "reader: out of order at %zu\n", k);
                return (void *)1;
            }
        if (i % 16 == 0) tsdb_flush(a->db);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, 100);
    pthread_t th[5];
    thr_arg_t args[5];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg_t){db, i, 250};
        assert_int_equal(pthread_create(&th[i], NULL, appender, &args[i]), 0);
    }
    args[4] = (thr_arg_t){db, 0, 60};
    assert_int_equal(pthread_create(&th[4], NULL, reader_thr, &args[4]), 0);
    for (int i = 0; i < 5; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    assert_int_equal(st.samples, 4 * 250 * 4);
    assert_int_equal(st.series, 4);
    /* group commit: at most one fsync per append, usually fewer */
    assert_true(st.wal_fsyncs <= 1000 + st.flushes * 2 + 4);
    fprintf(stderr, "concurrent: 1000 appends, %" PRIu64 " WAL fsyncs, %" PRIu64 " flushes\n",
            st.wal_fsyncs, st.flushes);
    for (int w = 0; w < 4; w++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", w);
        static tsdb_sample_t got[2000];
        int found;
        assert_int_equal(read_series(db, "conc", id, got, 2000, &found), 1000);
        for (int k = 0; k < 1000; k++) assert_true(got[k].v == k);
    }
    tsdb_close(db);
    tu_rmrf(dir);
}

/* ---- backup, corruption, format version ------------------------------------------- */

static void fill(tsdb_t *db, int nseries, int nsamples, int64_t step)
{
    for (int s = 0; s < nseries; s++) {
        char id[16];
        snprintf(id, sizeof id, "%d", s);
        tsdb_sample_t buf[512];
        for (int i = 0; i < nsamples; i++) {
            buf[i].t = T0 + i * step;
            buf[i].v = s * 1000 + i;
        }
        assert_int_equal(append1(db, "fill", id, buf, (size_t)nsamples, NULL), 0);
    }
}

static void test_backup(void **state)
{
    (void)state;
    char dir[256], dest[300];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(dest, sizeof dest, "%s/backup", dir);
    char src[300];
    snprintf(src, sizeof src, "%s/src", dir);
    tsdb_t *db = open_store(src, -1);
    fill(db, 100, 300, 15000);
    assert_int_equal(tsdb_backup(db, dest), 0);
    assert_int_equal(tsdb_backup(db, dest), TSDB_EINVAL); /* refuses to overwrite */
    tsdb_t *b = open_store(dest, -1);
    tsdb_stats_t s1, s2;
    tsdb_stats(db, &s1);
    tsdb_stats(b, &s2);
    assert_int_equal(s1.samples, s2.samples);
    assert_int_equal(s2.series, 100);
    tsdb_sample_t got[512];
    int found;
    assert_int_equal(read_series(b, "fill", "42", got, 512, &found), 300);
    assert_true(got[299].v == 42 * 1000 + 299);
    tsdb_close(b);
    tsdb_close(db);
    tu_rmrf(dir);
}

/* Overwrite one byte in the middle of the first block through LMDB itself. */
static void corrupt_first_block(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, UINT64_C(1) << 40);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "bdata", 0, &dbi), 0); /* block fragments */
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k, v;
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    uint8_t key[16];
    memcpy(key, k.mv_data, k.mv_size);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0x5a;
    MDB_val nk = {k.mv_size, key}, nv = {v.mv_size, copy};
    mdb_cursor_close(cur);
    assert_int_equal(mdb_put(txn, dbi, &nk, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

static void test_corrupt_block(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, -1);
    /* 4 partitions of 2 h for series 0: the first block is (group 0, first partition) */
    fill(db, 3, 480, 60000);
    assert_int_equal(tsdb_close(db), 0);
    corrupt_first_block(dir);
    db = open_store(dir, -1);
    uint64_t bad;
    assert_int_equal(tsdb_check(db, &bad), 0);
    assert_int_equal(bad, 1);
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m[2] = {{TSDB_MATCH_EQ, "__name__", "fill"}, {TSDB_MATCH_EQ, "id", "1"}};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, m, 2, INT64_MIN, INT64_MAX, &ids), 0);
    assert_int_equal(ids.n, 1);
    tsdb_iter_t *it;
    assert_int_equal(tsdb_iter_open(r, ids.ids[0], INT64_MIN, INT64_MAX, &it), 0);
    const tsdb_sample_t *s;
    size_t n, total = 0;
    int rc, ncorrupt = 0;
    while ((rc = tsdb_iter_next(it, &s, &n)) != 0) {
        if (rc == TSDB_ECORRUPT) {
            ncorrupt++;
            continue;
        }
        assert_int_equal(rc, 1);
        total += n;
    }
    assert_int_equal(ncorrupt, 1);
    assert_int_equal(total, 480 - 120); /* the other 3 partitions are intact */
    tsdb_iter_close(it);
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    /* appends and flushes keep working; the corrupt block is left alone */
    fill(db, 3, 10, 1000);
    assert_int_equal(tsdb_flush(db), 0);
    tsdb_close(db);
    tu_rmrf(dir);
}

static void test_format_version(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, -1);
    fill(db, 1, 10, 1000);
    tsdb_close(db);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    uint8_t v8[8] = {TSDB_FORMAT_VERSION + 1};
    MDB_val k = {6, "format"}, v = {8, v8};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    assert_int_equal(tsdb_open(dir, &o, &db), TSDB_EVERSION);
    assert_non_null(strstr(tsdb_last_error_detail(), "format version"));
    tu_rmrf(dir);
}

static void test_lock(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_t *db = open_store(dir, -1);
    /* flock is per open file description: a second open in-process conflicts too */
    tsdb_t *db2 = NULL;
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    assert_int_equal(tsdb_open(dir, &o, &db2), TSDB_ELOCKED);
    tsdb_close(db);
    tu_rmrf(dir);
}

static void test_partition_length(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    const int64_t DAY = 86400000;
    tsdb_t *db = open_store_pm(dir, -1, 32 * DAY);
    /* 300 series, one sample a day for 90 days, appended day by day with flushes */
    for (int d = 0; d < 90; d++) {
        for (int s = 0; s < 300; s++) {
            char id[16];
            snprintf(id, sizeof id, "%d", s);
            tsdb_sample_t smp = {T0 + d * DAY, s * 1000.0 + d};
            assert_int_equal(append1(db, "daily", id, &smp, 1, NULL), 0);
        }
        if (d % 7 == 6) assert_int_equal(tsdb_flush(db), 0);
    }
    assert_int_equal(tsdb_flush(db), 0);
    tsdb_stats_t st;
    assert_int_equal(tsdb_stats(db, &st), 0);
    /* 3 groups x 4 partitions of 32 days (90 days from an aligned start), merged */
    fprintf(stderr, "daily: %llu blocks, %.3f bytes/sample\n", (unsigned long long)st.blocks,
            st.bytes_per_sample);
    assert_true(st.blocks <= 3 * 4);
    assert_int_equal(tsdb_close(db), 0);
    /* the store remembers the groups' length; new groups take the new default */
    db = open_store(dir, -1);
    tsdb_sample_t got[128];
    int found;
    assert_int_equal(read_series(db, "daily", "123", got, 128, &found), 90);
    for (int d = 0; d < 90; d++) {
        assert_int_equal(got[d].t, T0 + d * DAY);
        assert_true(got[d].v == 123 * 1000.0 + d);
    }
    tsdb_sample_t more = {T0 + 90 * DAY, 1};
    assert_int_equal(append1(db, "other", "1", &more, 1, NULL), 0);
    assert_int_equal(append1(db, "daily", "123", &more, 1, NULL), 0);
    assert_int_equal(tsdb_flush(db), 0);
    assert_int_equal(read_series(db, "daily", "123", got, 128, &found), 91);
    assert_int_equal(read_series(db, "other", "1", got, 128, &found), 1);
    uint64_t bad;
    assert_int_equal(tsdb_check(db, &bad), 0);
    assert_int_equal(bad, 0);
    tsdb_close(db);
    /* out of range */
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.partition_ms = 1000;
    assert_int_equal(tsdb_open(dir, &o, &db), TSDB_EINVAL);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_special), cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_matchers_and_labels), cmocka_unit_test(test_differential),
        cmocka_unit_test(test_concurrent), cmocka_unit_test(test_backup),
        cmocka_unit_test(test_corrupt_block), cmocka_unit_test(test_format_version),
        cmocka_unit_test(test_lock),        cmocka_unit_test(test_partition_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
