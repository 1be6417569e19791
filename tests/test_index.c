/*
 * test_index.c — the series index (tsdb/index.c) against reference models.
 *
 *   test_index_differential   random label sets and matcher sets, with
 *                             deletes interleaved: idx_select vs. a scan with
 *                             idx_labels_match vs. an independent matcher
 *                             (strcmp + POSIX ERE); label names/values (all and
 *                             restricted); series get and foreach.
 *   test_index_big_postings   postings lists spanning many LMDB pages, inserted
 *                             out of order (APPENDDUP fallback).
 *   test_index_edge_cases     unknown label, empty result, bad regex, NUL
 *                             bytes, idempotent re-put, widen, missing ids,
 *                             corrupted records, pair cleanup after delete.
 *   test_index_readonly       idx_open in a read-only txn; foreach stops early.
 *   test_index_map_full       MDB_MAP_FULL becomes TSDB_EFULL.
 *   test_index_alloc_failures every allocation (ours, LMDB's, PCRE2's) failed in
 *                             turn: each call returns 0 or TSDB_ENOMEM.
 *
 * Replay a random test with AUGUR_TEST_SEED=<seed>.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <lmdb.h>

#include "testutil.h"
#include "tsdb/index.h"
#include "tsdb/tsdb.h"

/* ---- fixture -------------------------------------------------------------- */

typedef struct {
    char dir[512];
    MDB_env *env;
    MDB_txn *txn;
    idx_dbis_t d;
} fx_t;

static void fx_open(fx_t *f, size_t mapsize)
{
    memset(f, 0, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    assert_int_equal(mdb_env_create(&f->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(f->env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(f->env, mapsize), 0);
    assert_int_equal(mdb_env_open(f->env, f->dir, MDB_NOSYNC, 0644), 0);
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &f->txn), 0);
    assert_int_equal(idx_open(f->txn, &f->d), 0);
}

/* Commit and continue in a new write transaction. */
static void fx_cycle(fx_t *f)
{
    assert_int_equal(mdb_txn_commit(f->txn), 0);
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &f->txn), 0);
}

static void fx_close(fx_t *f)
{
    if (f->txn) mdb_txn_abort(f->txn);
    mdb_env_close(f->env);
    tu_rmrf(f->dir);
}

static tsdb_label_t lab(const char *n, const char *v)
{
    tsdb_label_t l = {{n, (uint32_t)strlen(n)}, {v, (uint32_t)strlen(v)}};
    return l;
}

static size_t db_entries(fx_t *f, MDB_dbi dbi)
{
    MDB_stat st;
    assert_int_equal(mdb_stat(f->txn, dbi, &st), 0);
    return st.ms_entries;
}

static int strings_has(const tsdb_strings_t *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0) return 1;
    return 0;
}

static void select_str(fx_t *f, const tsdb_matcher_t *m, size_t nm, tsdb_sids_t *out)
{
    idx_matchers_t *mc;
    assert_int_equal(idx_matchers_compile(m, nm, &mc), 0);
    assert_int_equal(idx_select(f->txn, &f->d, mc, out), 0);
    idx_matchers_free(mc);
}

/* ---- reference model ------------------------------------------------------ */

static const char *const NAMES[] = {"__name__", "a", "a\x01", "ab", "instance", "job", "mode"};
#define NNAMES (sizeof NAMES / sizeof NAMES[0])
static const char *const METRICS[] = {"up", "node_cpu_seconds_total", "node_load1", "a", "ab",
                                      "x", "node_network_receive_bytes_total", "abc"};
#define NMETRICS (sizeof METRICS / sizeof METRICS[0])
static const char *const VALUES[] = {
    "x",   "y",   "a",         "ab",        "abc",      "b",        "node-0001:9100",
    "node-0002:9100", "node-0013:9100", "\xc3\xa9", "\xc3\xa9\x61", "a|b", "a.b", "A",
    "idle", "user", "c", "bc",
};
#define NVALUES (sizeof VALUES / sizeof VALUES[0])
static const char *const REGEXES[] = {
    ".*",  ".+",    "",     "a.*",   "x|y",  "a|",    "node-00[01][0-9].*", "(a|b)c?",
    "\xc3\xa9.*",   "[^a].*", "a",  "ab|abc", "n.*", "a.b", "a\\.b", "x|y|", "[xy]", "b+",
    "A|a", "idle", "node_.*_total", "node-0001:9100|c", "u.*r",
    "node_(load1|cpu_seconds_total)", "a(b|c)", "ab(c)|x", "n(o|x).*", "node_(x)|a.*", "ab?c?",
    "a[|]b|x",
};
#define NREGEXES (sizeof REGEXES / sizeof REGEXES[0])
static const char *const EQVALS[] = {"x", "a", "ab", "", "idle", "node-0001:9100", "zzz", "up",
                                     "node_load1", "\xc3\xa9"};
#define NEQVALS (sizeof EQVALS / sizeof EQVALS[0])

#define MAXL 8
typedef struct {
    uint32_t sid;
    int alive;
    size_t n;
    tsdb_label_t l[MAXL];
} mser_t;

/* Skewed pick in [0, n): small indexes much more likely. */
static size_t skew(trng_t *r, size_t n)
{
    double u = trng_unit(r);
    return (size_t)(u * u * u * (double)n);
}

static void gen_labels(trng_t *r, mser_t *s)
{
    s->n = 0;
    /* NAMES is in byte order, as labels must be */
    for (size_t i = 0; i < NNAMES; i++) {
        if (i == 0)
            s->l[s->n++] = lab(NAMES[0], METRICS[skew(r, NMETRICS)]);
        else if (trng_below(r, 2))
            s->l[s->n++] = lab(NAMES[i], VALUES[skew(r, NVALUES)]);
    }
}

static const char *ref_value(const mser_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->l[i].name.ptr, name) == 0) return s->l[i].value.ptr;
    return "";
}

/* Independent matcher: strcmp for =/!=, POSIX ERE for =~/!~. */
static int ref_match(const mser_t *s, const tsdb_matcher_t *m, size_t nm, regex_t *re)
{
    for (size_t i = 0; i < nm; i++) {
        const char *v = ref_value(s, m[i].name);
        int ok;
        switch (m[i].type) {
        case TSDB_MATCH_EQ: ok = strcmp(v, m[i].value) == 0; break;
        case TSDB_MATCH_NE: ok = strcmp(v, m[i].value) != 0; break;
        case TSDB_MATCH_RE: ok = regexec(&re[i], v, 0, NULL, 0) == 0; break;
        default: ok = regexec(&re[i], v, 0, NULL, 0) != 0; break;
        }
        if (!ok) return 0;
    }
    return 1;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Expected sorted unique strings vs. out. */
static void check_strings(const char **exp, size_t n, const tsdb_strings_t *out, const char *what)
{
    qsort(exp, n, sizeof *exp, str_cmp);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || strcmp(exp[i], exp[w - 1]) != 0) exp[w++] = exp[i];
    if (w != out->n) fprintf(stderr, "%s: expected %zu strings, got %zu\n", what, w, out->n);
    assert_int_equal(w, out->n);
    for (size_t i = 0; i < w; i++) assert_string_equal(exp[i], out->v[i]);
}

static void check_names_values(fx_t *f, const mser_t *ser, size_t ns, const tsdb_sids_t *rs)
{
    const char **exp = malloc((ns * MAXL + 1) * sizeof *exp);
    assert_non_null(exp);
    size_t n = 0, j = 0;
    for (size_t i = 0; i < ns; i++) {
        if (!ser[i].alive) continue;
        if (rs) { /* restricted to the sorted set rs */
            while (j < rs->n && rs->ids[j] < ser[i].sid) j++;
            if (j == rs->n || rs->ids[j] != ser[i].sid) continue;
        }
        for (size_t k = 0; k < ser[i].n; k++) exp[n++] = ser[i].l[k].name.ptr;
    }
    tsdb_strings_t out = {0};
    assert_int_equal(idx_label_names(f->txn, &f->d, rs, &out), 0);
    check_strings(exp, n, &out, "label names");
    tsdb_strings_free(&out);

    for (size_t nmi = 0; nmi <= NNAMES; nmi++) {
        const char *name = nmi < NNAMES ? NAMES[nmi] : "unknown";
        n = j = 0;
        for (size_t i = 0; i < ns; i++) {
            if (!ser[i].alive) continue;
            if (rs) {
                while (j < rs->n && rs->ids[j] < ser[i].sid) j++;
                if (j == rs->n || rs->ids[j] != ser[i].sid) continue;
            }
            const char *v = ref_value(&ser[i], name);
            if (*v) exp[n++] = v;
        }
        assert_int_equal(idx_label_values(f->txn, &f->d, name, rs, &out), 0);
        check_strings(exp, n, &out, name);
        tsdb_strings_free(&out);
    }
    free(exp);
}

static void random_matchers(trng_t *r, tsdb_matcher_t *m, size_t nm)
{
    for (size_t i = 0; i < nm; i++) {
        m[i].type = (tsdb_match_type_t)trng_below(r, 4);
        m[i].name = trng_below(r, 12) == 0 ? "unknown" : NAMES[trng_below(r, NNAMES)];
        if (m[i].type == TSDB_MATCH_EQ || m[i].type == TSDB_MATCH_NE)
            m[i].value = EQVALS[trng_below(r, NEQVALS)];
        else
            m[i].value = REGEXES[trng_below(r, NREGEXES)];
    }
}

static size_t q_total, q_nonempty, q_partial; /* how informative the queries were */

static void check_query(fx_t *f, const mser_t *ser, size_t ns, const tsdb_matcher_t *m,
                        size_t nm, tsdb_sids_t *got)
{
    idx_matchers_t *mc;
    assert_int_equal(idx_matchers_compile(m, nm, &mc), 0);
    regex_t re[4];
    for (size_t i = 0; i < nm; i++) {
        if (m[i].type < TSDB_MATCH_RE) continue;
        char pat[128];
        snprintf(pat, sizeof pat, "^(%s)$", m[i].value);
        assert_int_equal(regcomp(&re[i], pat, REG_EXTENDED | REG_NOSUB), 0);
    }
    assert_int_equal(idx_select(f->txn, &f->d, mc, got), 0);
    size_t k = 0;
    for (size_t i = 0; i < ns; i++) {
        if (!ser[i].alive) continue;
        int a = idx_labels_match(mc, ser[i].l, ser[i].n);
        int b = ref_match(&ser[i], m, nm, re);
        if (a != b) {
            fprintf(stderr, "series %u: idx_labels_match %d, reference %d\n", ser[i].sid, a, b);
            for (size_t q = 0; q < nm; q++)
                fprintf(stderr, "  matcher %s %d \"%s\"\n", m[q].name, (int)m[q].type,
                        m[q].value);
        }
        assert_int_equal(a, b);
        if (!a) continue;
        if (k >= got->n || got->ids[k] != ser[i].sid) {
            fprintf(stderr, "series %u expected in selection (position %zu)\n", ser[i].sid, k);
            for (size_t q = 0; q < nm; q++)
                fprintf(stderr, "  matcher %s %d \"%s\"\n", m[q].name, (int)m[q].type,
                        m[q].value);
        }
        assert_true(k < got->n);
        assert_int_equal(got->ids[k], ser[i].sid);
        k++;
    }
    assert_int_equal(k, got->n);
    size_t alive = 0;
    for (size_t i = 0; i < ns; i++) alive += ser[i].alive;
    q_total++;
    q_nonempty += got->n > 0;
    q_partial += got->n > 0 && got->n < alive;
    idx_matchers_free(mc);
    for (size_t i = 0; i < nm; i++)
        if (m[i].type >= TSDB_MATCH_RE) regfree(&re[i]);
}

typedef struct {
    const mser_t *ser;
    size_t ns, pos;
} foreach_ctx_t;

static int foreach_cb(void *ctx, uint32_t sid, const tsdb_label_t *labels, size_t n, int64_t mint,
                      int64_t maxt)
{
    foreach_ctx_t *c = ctx;
    while (c->pos < c->ns && !c->ser[c->pos].alive) c->pos++;
    assert_true(c->pos < c->ns);
    const mser_t *s = &c->ser[c->pos++];
    assert_int_equal(sid, s->sid);
    assert_int_equal(n, s->n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(labels[i].name.ptr, s->l[i].name.ptr);
        assert_string_equal(labels[i].value.ptr, s->l[i].value.ptr);
    }
    assert_int_equal(mint, (int64_t)sid * 1000);
    assert_int_equal(maxt, (int64_t)sid * 1000 + 5);
    return 0;
}

static void test_index_differential(void **state)
{
    (void)state;
    trng_t r;
    trng_seed(&r, tu_seed("test_index_differential", 20240601));
    fx_t f;
    fx_open(&f, 256u << 20);

    enum { N0 = 1500, ROUNDS = 5, ADD = 250, DEL = 200, QUERIES = 200 };
    size_t cap = N0 + ROUNDS * ADD;
    mser_t *ser = calloc(cap, sizeof *ser); /* sorted by sid (index = sid - 1) */
    assert_non_null(ser);
    size_t ns = 0;
    tsdb_sids_t got = {0};

    for (int round = 0; round <= ROUNDS; round++) {
        /* Insert a batch, shuffled so that sids arrive partly out of order. */
        size_t add = round == 0 ? N0 : ADD, base = ns;
        for (size_t i = 0; i < add; i++) {
            ser[ns].sid = (uint32_t)(ns + 1);
            ser[ns].alive = 1;
            gen_labels(&r, &ser[ns]);
            ns++;
        }
        uint32_t *order = malloc(add * sizeof *order);
        assert_non_null(order);
        for (size_t i = 0; i < add; i++) order[i] = (uint32_t)(base + i);
        for (size_t i = add; i > 1 && round % 2 == 1; i--) {
            size_t j = trng_below(&r, i);
            uint32_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        for (size_t i = 0; i < add; i++) {
            mser_t *s = &ser[order[i]];
            int64_t t0 = (int64_t)s->sid * 1000;
            assert_int_equal(idx_series_put(f.txn, &f.d, s->sid, s->l, s->n, t0 + 2, t0 + 3), 0);
            /* a re-put and a widen land on the same series */
            assert_int_equal(idx_series_put(f.txn, &f.d, s->sid, s->l, s->n, t0, t0 + 1), 0);
            assert_int_equal(idx_series_widen(f.txn, &f.d, s->sid, t0 + 4, t0 + 5), 0);
        }
        free(order);
        /* Delete some. */
        for (int i = 0; round > 0 && i < DEL; i++) {
            mser_t *s = &ser[trng_below(&r, ns)];
            int rc = idx_series_delete(f.txn, &f.d, s->sid);
            assert_int_equal(rc, s->alive ? 0 : TSDB_ENOTFOUND);
            s->alive = 0;
        }
        if (trng_below(&r, 2)) fx_cycle(&f);

        for (int q = 0; q < QUERIES; q++) {
            tsdb_matcher_t m[3];
            size_t nm = 1 + trng_below(&r, 3);
            random_matchers(&r, m, nm);
            check_query(&f, ser, ns, m, nm, &got);
            if (q % 40 == 0) check_names_values(&f, ser, ns, &got);
        }
        check_names_values(&f, ser, ns, NULL);

        /* get and foreach agree with the model */
        idx_labels_t labels = {0};
        tbuf_t buf = {0};
        for (size_t i = 0; i < ns; i++) {
            int64_t mint, maxt;
            int rc = idx_series_get(f.txn, &f.d, ser[i].sid, &labels, &buf, &mint, &maxt);
            if (!ser[i].alive) {
                assert_int_equal(rc, TSDB_ENOTFOUND);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(labels.n, ser[i].n);
            for (size_t k = 0; k < labels.n; k++) {
                assert_string_equal(labels.v[k].name.ptr, ser[i].l[k].name.ptr);
                assert_string_equal(labels.v[k].value.ptr, ser[i].l[k].value.ptr);
            }
            assert_int_equal(mint, (int64_t)ser[i].sid * 1000);
            assert_int_equal(maxt, (int64_t)ser[i].sid * 1000 + 5);
        }
        free(labels.v);
        tbuf_free(&buf);
        foreach_ctx_t fc = {ser, ns, 0};
        assert_int_equal(idx_series_foreach(f.txn, &f.d, foreach_cb, &fc), 0);
        while (fc.pos < ns && !ser[fc.pos].alive) fc.pos++;
        assert_int_equal(fc.pos, ns);
    }

    /* Delete everything: the dictionary empties out. */
    for (size_t i = 0; i < ns; i++)
        if (ser[i].alive) assert_int_equal(idx_series_delete(f.txn, &f.d, ser[i].sid), 0);
    assert_int_equal(db_entries(&f, f.d.series), 0);
    assert_int_equal(db_entries(&f, f.d.postings), 0);
    assert_int_equal(db_entries(&f, f.d.pairids), 0);
    assert_int_equal(db_entries(&f, f.d.pairs), 1); /* only the id counter */
    tsdb_strings_t names = {0};
    assert_int_equal(idx_label_names(f.txn, &f.d, NULL, &names), 0);
    assert_int_equal(names.n, 0);

    fprintf(stderr, "[test_index_differential] %zu queries: %zu non-empty, %zu neither empty nor all\n",
            q_total, q_nonempty, q_partial);
    tsdb_sids_free(&got);
    free(ser);
    fx_close(&f);
}

/* ---- big postings ------------------------------------------------------------ */

static void test_index_big_postings(void **state)
{
    (void)state;
    trng_t r;
    trng_seed(&r, tu_seed("test_index_big_postings", 7));
    fx_t f;
    fx_open(&f, 256u << 20);
    enum { N = 6000 };
    uint32_t *order = malloc(N * sizeof *order);
    assert_non_null(order);
    for (uint32_t i = 0; i < N; i++) order[i] = i + 1;
    for (size_t i = N; i > 1; i--) { /* random order for the second half */
        if (i <= N / 2) break;
        size_t j = N / 2 + trng_below(&r, i - N / 2);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    char v[32];
    for (size_t i = 0; i < N; i++) {
        uint32_t sid = order[i];
        snprintf(v, sizeof v, "%u", sid % 3);
        tsdb_label_t l[3] = {lab("__name__", "m"), lab("job", "node"), lab("k", v)};
        assert_int_equal(idx_series_put(f.txn, &f.d, sid, l, 3, 0, 0), 0);
        if (i == N / 3) fx_cycle(&f);
    }
    fx_cycle(&f);
    tsdb_sids_t got = {0};
    tsdb_matcher_t m1[] = {{TSDB_MATCH_EQ, "job", "node"}};
    select_str(&f, m1, 1, &got);
    assert_int_equal(got.n, N);
    for (size_t i = 0; i < N; i++) assert_int_equal(got.ids[i], i + 1);
    tsdb_matcher_t m2[] = {{TSDB_MATCH_EQ, "job", "node"}, {TSDB_MATCH_NE, "k", "1"}};
    select_str(&f, m2, 2, &got);
    size_t k = 0;
    for (uint32_t sid = 1; sid <= N; sid++)
        if (sid % 3 != 1) assert_int_equal(got.ids[k++], sid);
    assert_int_equal(k, got.n);
    tsdb_matcher_t m3[] = {{TSDB_MATCH_RE, "k", "0|2"}, {TSDB_MATCH_NRE, "k", "2"}};
    select_str(&f, m3, 2, &got);
    assert_int_equal(got.n, N / 3);
    for (size_t i = 0; i < got.n; i++) assert_int_equal(got.ids[i] % 3, 0);
    /* delete every other series; the lists shrink but stay sorted */
    for (uint32_t sid = 2; sid <= N; sid += 2)
        assert_int_equal(idx_series_delete(f.txn, &f.d, sid), 0);
    select_str(&f, m1, 1, &got);
    assert_int_equal(got.n, N / 2);
    for (size_t i = 0; i < got.n; i++) assert_int_equal(got.ids[i], 2 * i + 1);
    tsdb_sids_free(&got);
    free(order);
    fx_close(&f);
}

/* ---- edge cases -------------------------------------------------------------- */

static void test_index_edge_cases(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f, 256u << 20);
    tsdb_sids_t got = {0};
    idx_matchers_t *mc = NULL;

    tsdb_label_t s1[] = {lab("__name__", "up"), lab("job", "node")};
    tsdb_label_t s2[] = {lab("__name__", "up"), lab("job", "gpu"), lab("only", "here")};
    tsdb_label_t s3[] = {lab("__name__", "upx")};
    assert_int_equal(idx_series_put(f.txn, &f.d, 1, s1, 2, 100, 200), 0);
    assert_int_equal(idx_series_put(f.txn, &f.d, 2, s2, 3, 100, 200), 0);
    assert_int_equal(idx_series_put(f.txn, &f.d, 3, s3, 1, INT64_MIN, INT64_MAX), 0);

    /* unknown label */
    tsdb_matcher_t u1[] = {{TSDB_MATCH_EQ, "nope", "x"}};
    select_str(&f, u1, 1, &got);
    assert_int_equal(got.n, 0);
    tsdb_matcher_t u2[] = {{TSDB_MATCH_NE, "nope", "x"}};
    select_str(&f, u2, 1, &got);
    assert_int_equal(got.n, 3);
    tsdb_matcher_t u3[] = {{TSDB_MATCH_RE, "nope", ".+"}};
    select_str(&f, u3, 1, &got);
    assert_int_equal(got.n, 0);
    /* empty result */
    tsdb_matcher_t e1[] = {{TSDB_MATCH_EQ, "__name__", "up"}, {TSDB_MATCH_EQ, "job", "zzz"}};
    select_str(&f, e1, 2, &got);
    assert_int_equal(got.n, 0);
    /* anchoring, "" semantics */
    tsdb_matcher_t a1[] = {{TSDB_MATCH_RE, "__name__", "up"}};
    select_str(&f, a1, 1, &got);
    assert_int_equal(got.n, 2);
    tsdb_matcher_t a2[] = {{TSDB_MATCH_EQ, "only", ""}};
    select_str(&f, a2, 1, &got);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.ids[0], 1);
    assert_int_equal(got.ids[1], 3);
    tsdb_matcher_t a3[] = {{TSDB_MATCH_RE, "job", "node|"}, {TSDB_MATCH_RE, "__name__", "u.*"}};
    select_str(&f, a3, 2, &got);
    assert_int_equal(got.n, 2); /* job="node" or no job */
    assert_int_equal(got.ids[0], 1);
    assert_int_equal(got.ids[1], 3);
    tsdb_matcher_t a4[] = {{TSDB_MATCH_RE, "job", ".*"}};
    assert_int_equal(idx_matchers_compile(a4, 1, &mc), 0);
    assert_int_equal(idx_matchers_all_match_empty(mc), 1);
    assert_int_equal(idx_select(f.txn, &f.d, mc, &got), 0);
    assert_int_equal(got.n, 3); /* still sensible: all series */
    idx_matchers_free(mc);
    tsdb_matcher_t a5[] = {{TSDB_MATCH_RE, "job", ".+"}, {TSDB_MATCH_NE, "x", ""}};
    assert_int_equal(idx_matchers_compile(a5, 2, &mc), 0);
    assert_int_equal(idx_matchers_all_match_empty(mc), 0);
    idx_matchers_free(mc);

    /* regex: trailing newline is not ignored by the end anchor */
    tsdb_matcher_t nl[] = {{TSDB_MATCH_RE, "v", "a"}};
    assert_int_equal(idx_matchers_compile(nl, 1, &mc), 0);
    tsdb_label_t lnl[] = {lab("v", "a\n")};
    assert_int_equal(idx_labels_match(mc, lnl, 1), 0);
    tsdb_label_t la[] = {lab("v", "a")};
    assert_int_equal(idx_labels_match(mc, la, 1), 1);
    idx_matchers_free(mc);

    /* invalid regex */
    tsdb_matcher_t bad[] = {{TSDB_MATCH_RE, "job", "a("}};
    assert_int_equal(idx_matchers_compile(bad, 1, &mc), TSDB_EREGEX);
    assert_null(mc);
    assert_non_null(strstr(tsdb_last_error_detail(), "regex"));
    tsdb_matcher_t bad2[] = {{TSDB_MATCH_NRE, "job", "a)|(b"}};
    assert_int_equal(idx_matchers_compile(bad2, 1, &mc), TSDB_EREGEX);
    tsdb_matcher_t bad3[] = {{TSDB_MATCH_EQ, "", "x"}};
    assert_int_equal(idx_matchers_compile(bad3, 1, &mc), TSDB_EINVAL);

    /* NUL bytes, empty values, order */
    tsdb_label_t n1[] = {{{"__name__", 8}, {"a\0b", 3}}};
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, n1, 1, 0, 0), TSDB_EINVAL);
    tsdb_label_t n2[] = {{{"na\0me", 5}, {"ab", 2}}};
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, n2, 1, 0, 0), TSDB_EINVAL);
    tsdb_label_t n3[] = {lab("__name__", "")};
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, n3, 1, 0, 0), TSDB_EINVAL);
    tsdb_label_t n4[] = {lab("job", "x"), lab("__name__", "y")};
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, n4, 2, 0, 0), TSDB_EINVAL);
    tsdb_label_t n5[] = {lab("job", "x"), lab("job", "y")};
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, n5, 2, 0, 0), TSDB_EINVAL);
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, s1, 2, 5, 4), TSDB_EINVAL);
    assert_int_equal(idx_series_put(f.txn, &f.d, 0, s1, 2, 0, 0), TSDB_EINVAL);
    char longv[600];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    tsdb_label_t n6[] = {lab("__name__", longv)};
    assert_int_equal(idx_series_put(f.txn, &f.d, 10, n6, 1, 0, 0), TSDB_ELIMIT);
    assert_int_equal(idx_series_get(f.txn, &f.d, 10, &(idx_labels_t){0}, &(tbuf_t){0}, NULL, NULL),
                     TSDB_ENOTFOUND);

    /* idempotent re-put; a re-put widens; different labels refused */
    size_t pairs0 = db_entries(&f, f.d.pairs), post0 = db_entries(&f, f.d.postings);
    assert_int_equal(idx_series_put(f.txn, &f.d, 1, s1, 2, 150, 160), 0);
    assert_int_equal(idx_series_put(f.txn, &f.d, 1, s1, 2, 50, 300), 0);
    assert_int_equal(db_entries(&f, f.d.pairs), pairs0);
    assert_int_equal(db_entries(&f, f.d.postings), post0);
    assert_int_equal(idx_series_put(f.txn, &f.d, 1, s2, 3, 0, 0), TSDB_EINVAL);
    assert_int_equal(idx_series_put(f.txn, &f.d, 1, s3, 1, 0, 0), TSDB_EINVAL);
    idx_labels_t labels = {0};
    tbuf_t buf = {0};
    int64_t mint, maxt;
    assert_int_equal(idx_series_get(f.txn, &f.d, 1, &labels, &buf, &mint, &maxt), 0);
    assert_int_equal(mint, 50);
    assert_int_equal(maxt, 300);
    assert_int_equal(labels.n, 2);
    assert_string_equal(labels.v[1].value.ptr, "node");
    /* widen: never narrows; missing id */
    assert_int_equal(idx_series_widen(f.txn, &f.d, 1, 100, 120), 0);
    assert_int_equal(idx_series_widen(f.txn, &f.d, 1, 40, 400), 0);
    assert_int_equal(idx_series_get(f.txn, &f.d, 1, &labels, &buf, &mint, &maxt), 0);
    assert_int_equal(mint, 40);
    assert_int_equal(maxt, 400);
    assert_int_equal(idx_series_widen(f.txn, &f.d, 99, 0, 1), TSDB_ENOTFOUND);
    assert_int_equal(idx_series_get(f.txn, &f.d, 3, &labels, &buf, &mint, &maxt), 0);
    assert_true(mint == INT64_MIN && maxt == INT64_MAX);
    assert_int_equal(idx_series_get(f.txn, &f.d, 99, &labels, &buf, &mint, &maxt), TSDB_ENOTFOUND);
    assert_int_equal(idx_series_delete(f.txn, &f.d, 99), TSDB_ENOTFOUND);

    /* delete removes now-unused pairs, so names and values follow */
    tsdb_strings_t ss = {0};
    assert_int_equal(idx_label_names(f.txn, &f.d, NULL, &ss), 0);
    assert_true(strings_has(&ss, "only"));
    tsdb_strings_free(&ss);
    assert_int_equal(idx_series_delete(f.txn, &f.d, 2), 0);
    assert_int_equal(idx_label_names(f.txn, &f.d, NULL, &ss), 0);
    assert_int_equal(ss.n, 2);
    assert_false(strings_has(&ss, "only"));
    tsdb_strings_free(&ss);
    assert_int_equal(idx_label_values(f.txn, &f.d, "job", NULL, &ss), 0);
    assert_int_equal(ss.n, 1);
    assert_string_equal(ss.v[0], "node");
    tsdb_strings_free(&ss);
    assert_int_equal(idx_label_values(f.txn, &f.d, "only", NULL, &ss), 0);
    assert_int_equal(ss.n, 0);
    tsdb_matcher_t g1[] = {{TSDB_MATCH_EQ, "job", "gpu"}};
    select_str(&f, g1, 1, &got);
    assert_int_equal(got.n, 0);
    /* a deleted pair comes back with a new id */
    assert_int_equal(idx_series_put(f.txn, &f.d, 4, s2, 3, 0, 0), 0);
    select_str(&f, g1, 1, &got);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.ids[0], 4);
    /* restricted names/values skip ids that are not in the index */
    tsdb_sids_t rs = {0};
    assert_int_equal(sids_push(&rs, 4), 0);
    assert_int_equal(sids_push(&rs, 77), 0);
    assert_int_equal(sids_push(&rs, UINT64_C(1) << 40), 0);
    assert_int_equal(idx_label_names(f.txn, &f.d, &rs, &ss), 0);
    assert_int_equal(ss.n, 3);
    tsdb_strings_free(&ss);
    assert_int_equal(idx_label_values(f.txn, &f.d, "only", &rs, &ss), 0);
    assert_int_equal(ss.n, 1);
    tsdb_strings_free(&ss);
    tsdb_sids_free(&rs);

    /* corrupted series records */
    static const struct {
        uint8_t b[8];
        size_t n;
    } garbage[] = {
        {{0xff, 0xff}, 2},             /* truncated varint */
        {{0x00, 0x00, 0x05, 0x01}, 4}, /* n larger than the rest */
        {{0x00, 0x00, 0x01, 0x7f}, 4}, /* pair id 127 does not exist */
        {{0x00, 0x00, 0x01, 0x01, 0x01}, 5}, /* trailing byte */
        {{0x00, 0x00, 0x00}, 3},       /* no labels */
        {{0x00, 0x00, 0x01, 0x00}, 4}, /* pair id 0 */
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        uint8_t kb[4];
        be32_put(kb, 500);
        MDB_val k = {4, kb}, v = {garbage[i].n, (void *)garbage[i].b};
        assert_int_equal(mdb_put(f.txn, f.d.series, &k, &v, 0), 0);
        assert_int_equal(idx_series_get(f.txn, &f.d, 500, &labels, &buf, &mint, &maxt),
                         TSDB_ECORRUPT);
        assert_int_equal(labels.n, 0);
        /* widen and delete do not resolve pair ids: a dangling id does not
         * stop them (a broken series can still be deleted) */
        int dangling = garbage[i].b[3] == 0x7f;
        assert_int_equal(idx_series_widen(f.txn, &f.d, 500, 0, 1), dangling ? 0 : TSDB_ECORRUPT);
        assert_int_equal(idx_series_delete(f.txn, &f.d, 500), dangling ? 0 : TSDB_ECORRUPT);
    }
    /* a pair text without its separator */
    {
        uint8_t kb[4];
        be32_put(kb, 1);
        MDB_val k = {4, kb}, v = {3, "abc"};
        assert_int_equal(mdb_put(f.txn, f.d.pairids, &k, &v, 0), 0);
        assert_int_equal(idx_series_get(f.txn, &f.d, 1, &labels, &buf, &mint, &maxt),
                         TSDB_ECORRUPT);
    }
    free(labels.v);
    tbuf_free(&buf);
    tsdb_sids_free(&got);
    fx_close(&f);
}

/* ---- allocation failures ------------------------------------------------------ */

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
/* Fault injection: with fail_after >= 0, the fail_after-th allocation from
 * now on (and only it) fails. Applies to LMDB and PCRE2 as well. */
#define HAVE_FAULTSIM 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static long fail_after = -1;
static int fault_now(void)
{
    return fail_after >= 0 && fail_after-- == 0;
}
void *malloc(size_t n)
{
    return fault_now() ? NULL : __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    return fault_now() ? NULL : __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    return fault_now() ? NULL : __libc_realloc(p, n);
}
void free(void *p)
{
    __libc_free(p);
}
#endif

/* Each operation either succeeds or fails with TSDB_ENOMEM, whichever
 * allocation fails; nothing crashes (run under valgrind for leaks). */
static void test_index_alloc_failures(void **state)
{
    (void)state;
#ifndef HAVE_FAULTSIM
    skip();
#else
    fx_t f;
    fx_open(&f, 64u << 20);
    /* a base index, so that selects and deletes have work to do */
    char v[32];
    for (uint32_t sid = 1; sid <= 300; sid++) {
        snprintf(v, sizeof v, "%u", sid % 17);
        tsdb_label_t l[] = {lab("__name__", sid % 2 ? "a" : "b"), lab("i", v), lab("job", "x")};
        assert_int_equal(idx_series_put(f.txn, &f.d, sid, l, 3, 0, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(f.txn), 0); /* one write txn at a time */
    f.txn = NULL;
    long k;
    int failed = 1;
    for (k = 0; failed; k++) {
        MDB_txn *txn;
        assert_int_equal(mdb_txn_begin(f.env, NULL, 0, &txn), 0);
        int rcs[8], nrc = 0;
        fail_after = k;
        tsdb_label_t l[] = {lab("__name__", "new"), lab("i", "fresh"), lab("job", "x")};
        rcs[nrc++] = idx_series_put(txn, &f.d, 1000, l, 3, 0, 0);
        tsdb_matcher_t m[] = {{TSDB_MATCH_RE, "i", "1.*"}, {TSDB_MATCH_NE, "__name__", "b"}};
        idx_matchers_t *mc = NULL;
        tsdb_sids_t got = {0};
        rcs[nrc] = idx_matchers_compile(m, 2, &mc);
        if (rcs[nrc++] == 0) rcs[nrc++] = idx_select(txn, &f.d, mc, &got);
        idx_matchers_free(mc);
        tsdb_strings_t ss = {0};
        rcs[nrc++] = idx_label_values(txn, &f.d, "i", &got, &ss);
        tsdb_strings_free(&ss);
        rcs[nrc++] = idx_label_names(txn, &f.d, &got, &ss);
        tsdb_strings_free(&ss);
        tsdb_sids_free(&got);
        idx_labels_t labels = {0};
        tbuf_t buf = {0};
        rcs[nrc++] = idx_series_get(txn, &f.d, 7, &labels, &buf, NULL, NULL);
        free(labels.v);
        tbuf_free(&buf);
        rcs[nrc++] = idx_series_delete(txn, &f.d, 8);
        failed = fail_after < 0; /* the injected failure happened */
        fail_after = -1;
        for (int i = 0; i < nrc; i++) {
            if (rcs[i] != 0 && rcs[i] != TSDB_ENOMEM)
                fprintf(stderr, "allocation %ld: operation %d returned %d (%s)\n", k, i, rcs[i],
                        tsdb_last_error_detail());
            assert_true(rcs[i] == 0 || rcs[i] == TSDB_ENOMEM);
        }
        mdb_txn_abort(txn);
    }
    fprintf(stderr, "[test_index_alloc_failures] %ld allocation sites failed in turn\n", k - 1);
    fx_close(&f);
#endif
}

static int stop_at_two(void *ctx, uint32_t sid, const tsdb_label_t *labels, size_t n,
                       int64_t mint, int64_t maxt)
{
    (void)labels, (void)n, (void)mint, (void)maxt;
    ++*(int *)ctx;
    return sid == 2 ? 42 : 0;
}

/* Read-only transactions open existing databases and do not create them;
 * foreach stops with the callback's value. */
static void test_index_readonly(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f, 1u << 20);
    mdb_txn_abort(f.txn); /* nothing created */
    MDB_txn *ro;
    assert_int_equal(mdb_txn_begin(f.env, NULL, MDB_RDONLY, &ro), 0);
    idx_dbis_t d;
    assert_int_equal(idx_open(ro, &d), TSDB_ENOTFOUND);
    mdb_txn_abort(ro);
    assert_int_equal(mdb_txn_begin(f.env, NULL, 0, &f.txn), 0);
    assert_int_equal(idx_open(f.txn, &f.d), 0);
    tsdb_label_t l[] = {lab("__name__", "m")};
    for (uint32_t sid = 1; sid <= 3; sid++)
        assert_int_equal(idx_series_put(f.txn, &f.d, sid, l, 1, 0, 0), 0);
    assert_int_equal(mdb_txn_commit(f.txn), 0);
    assert_int_equal(mdb_txn_begin(f.env, NULL, MDB_RDONLY, &f.txn), 0);
    assert_int_equal(idx_open(f.txn, &d), 0);
    int calls = 0;
    assert_int_equal(idx_series_foreach(f.txn, &d, stop_at_two, &calls), 42);
    assert_int_equal(calls, 2);
    fx_close(&f);
}

static void test_index_map_full(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f, 1u << 20); /* 1 MiB */
    int rc = 0;
    char v[64];
    for (uint32_t sid = 1; sid < 200000 && rc == 0; sid++) {
        snprintf(v, sizeof v, "value-%u-with-some-padding-to-fill-pages", sid);
        tsdb_label_t l[] = {lab("__name__", "m"), lab("id", v)};
        rc = idx_series_put(f.txn, &f.d, sid, l, 2, 0, 0);
    }
    assert_int_equal(rc, TSDB_EFULL);
    assert_non_null(strstr(tsdb_last_error_detail(), "MDB_MAP_FULL"));
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_differential),
        cmocka_unit_test(test_index_big_postings),
        cmocka_unit_test(test_index_edge_cases),
        cmocka_unit_test(test_index_readonly),
        cmocka_unit_test(test_index_map_full),
        cmocka_unit_test(test_index_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
