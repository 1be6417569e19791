/* test_tsdb_labels.c — tsdb_label_values_range / tsdb_label_names_range
 * against the reference they replace: the labels of every series that
 * tsdb_select returns for the same range. Series are spread over time,
 * some sealed into LMDB (in the index), some only in the head, some
 * deleted; ranges are random (seeded: AUGUR_TEST_SEED replays). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "tsdb/tsdb.h"

#define NS 300

static uint64_t rs;
static uint64_t rnd(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void add_series(tsdb_t *db, int i, int64_t t0, int n)
{
    char inst[32], job[32], name[32], extra[32];
    snprintf(name, sizeof name, "m%d", i % 7);
    snprintf(inst, sizeof inst, "node-%03d", i % 53);
    snprintf(job, sizeof job, "job%d", i % 5);
    snprintf(extra, sizeof extra, "x%d", i);
    tsdb_label_t l[4] = {{{"__name__", 8}, {name, (uint32_t)strlen(name)}},
                         {{"instance", 8}, {inst, (uint32_t)strlen(inst)}},
                         {{"job", 3}, {job, (uint32_t)strlen(job)}},
                         {{i % 3 ? "rare" : "x", i % 3 ? 4u : 1u}, {extra, (uint32_t)strlen(extra)}}};
    tsdb_sample_t s[16];
    for (int k = 0; k < n; k++) s[k] = (tsdb_sample_t){t0 + k * 15000, k};
    tsdb_series_in_t in = {l, 4, s, (uint32_t)n};
    assert_int_equal(tsdb_append(db, &in, 1, NULL, NULL), 0);
}

/* Reference: labels of the selected series. */
static void reference(tsdb_reader_t *r, const char *name, int64_t mint, int64_t maxt, tsdb_strings_t *out)
{
    tsdb_matcher_t m = {TSDB_MATCH_RE, "__name__", ".+"};
    tsdb_sids_t ids = {0};
    assert_int_equal(tsdb_select(r, &m, 1, mint, maxt, &ids), 0);
    for (size_t i = 0; i < ids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        assert_int_equal(tsdb_series_labels(r, ids.ids[i], &l, &nl), 0);
        for (size_t j = 0; j < nl; j++) {
            const tsdb_str_t *x = NULL;
            if (!name) x = &l[j].name;
            else if (l[j].name.len == strlen(name) && !memcmp(l[j].name.ptr, name, l[j].name.len)) x = &l[j].value;
            if (!x) continue;
            int dup = 0;
            for (size_t k = 0; k < out->n && !dup; k++)
                dup = strlen(out->v[k]) == x->len && !memcmp(out->v[k], x->ptr, x->len);
            if (dup) continue;
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 16;
                out->v = realloc(out->v, out->cap * sizeof *out->v);
                assert_non_null(out->v);
            }
            out->v[out->n] = strndup(x->ptr, x->len);
            out->n++;
        }
    }
    tsdb_sids_free(&ids);
}

static int cmp_s(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void compare(tsdb_t *db, int64_t mint, int64_t maxt)
{
    static const char *names[] = {NULL, "instance", "job", "rare", "x", "__name__", "absent"};
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        tsdb_strings_t a = {0}, b = {0};
        if (names[i]) assert_int_equal(tsdb_label_values_range(r, names[i], mint, maxt, &a), 0);
        else assert_int_equal(tsdb_label_names_range(r, mint, maxt, &a), 0);
        reference(r, names[i], mint, maxt, &b);
        if (b.n > 1) qsort(b.v, b.n, sizeof *b.v, cmp_s);
        if (a.n != b.n) fprintf(stderr, "%s [%lld, %lld]: %zu vs %zu\n", names[i] ? names[i] : "(names)",
                                (long long)mint, (long long)maxt, a.n, b.n);
        assert_int_equal(a.n, b.n);
        for (size_t k = 0; k < a.n; k++) assert_string_equal(a.v[k], b.v[k]);
        tsdb_strings_free(&a);
        tsdb_strings_free(&b);
    }
    tsdb_reader_close(r);
}

static void test_ranges(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    tsdb_t *db;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    rs = tu_seed("test_tsdb_labels", 4);
    const int64_t base = 1700000000000;
    /* first half sealed (in the LMDB index), second half head-only */
    for (int i = 0; i < NS; i++) {
        add_series(db, i, base + (int64_t)(rnd() % 86400) * 1000, 1 + (int)(rnd() % 16));
        if (i == NS / 2) assert_int_equal(tsdb_flush(db), 0);
    }
    tsdb_matcher_t del = {TSDB_MATCH_EQ, "rare", "x4"};
    uint64_t nd;
    assert_int_equal(tsdb_delete_series(db, &del, 1, &nd), 0);
    compare(db, INT64_MIN / 4, INT64_MAX / 4);
    compare(db, base - 1000, base - 1); /* nothing */
    for (int k = 0; k < 60; k++) {
        int64_t a = base + (int64_t)(rnd() % 90000) * 1000 - 2000000;
        int64_t b = a + (int64_t)(rnd() % (k < 30 ? 600 : 20000)) * 1000;
        compare(db, a, b);
    }
    tsdb_strings_t s = {0};
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    assert_int_equal(tsdb_label_values_range(r, "job", 10, 5, &s), TSDB_EINVAL);
    tsdb_reader_close(r);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_ranges)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
