/* test_nab.c — the NAB scorer (models/nab.c): the worked example and other
 * hand-computed cases from ../shared/data/nab/README.md, and the official
 * scorer's results for four synthetic detectors (scorer_checks.json). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "models/nab.h"
#include "testutil.h"

static const nab_profile_t *std_profile(void)
{
    return &nab_profiles[0];
}

static void test_sigmoid(void **state)
{
    (void)state;
    assert_true(fabs(nab_sigmoid(-1.0) - 0.98661429815143) < 1e-12);
    assert_true(fabs(nab_sigmoid(0.0)) < 1e-15);
    assert_true(fabs(nab_sigmoid(1.0) + 0.98661429815143) < 1e-12);
    assert_true(fabs(nab_sigmoid(3.0) + 0.99999938819555) < 1e-12);
    assert_true(nab_sigmoid(3.0001) == -1.0);
    assert_int_equal(nab_probation(20), 3);
    assert_int_equal(nab_probation(1127), 169);
    assert_int_equal(nab_probation(10000), 750);
}

/* README worked example: N = 20, window rows 10..13. */
static void test_worked_example(void **state)
{
    (void)state;
    double s[20] = {0};
    nab_window_t w = {10, 13};
    nab_file_t f = {20, s, &w, 1};
    const nab_profile_t *p = std_profile();
    static const struct {
        size_t row;
        double a;
    } want[] = {{1, 0.0},        {5, -0.11},      {10, 1.0},        {11, 0.966989},
                {12, 0.859793},  {13, 0.562124},  {14, -0.075049},  {15, -0.102422},
                {19, -0.109990}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_true(fabs(nab_row_value(&f, p, want[i].row) - want[i].a) < 1e-6);
    s[1] = 1.0;
    s[5] = s[14] = 0.8;
    s[12] = s[13] = 0.9;
    assert_true(fabs(nab_file_raw(&f, p, 1.1) + 1.0) < 1e-12);
    assert_true(fabs(nab_file_raw(&f, p, 0.9) - 0.8597925669) < 1e-9);
    assert_true(fabs(nab_file_raw(&f, p, 0.8) - 0.6747437700) < 1e-9);
    nab_result_t r;
    double pfr;
    assert_int_equal(nab_score(&f, 1, p, &r, &pfr), 0);
    assert_true(r.threshold == 0.9);
    assert_true(fabs(r.raw - 0.8597925669) < 1e-9);
    assert_true(fabs(r.score - 100.0 * (0.8597925669 + 1.0) / 2.0) < 1e-7);
    assert_int_equal(r.tp, 1);
    assert_int_equal(r.fp, 0);
}

/* Small hand cases: ties keep the higher threshold, probation ignored,
 * detections everywhere give the obvious answer, out-of-range refused. */
static void test_hand_cases(void **state)
{
    (void)state;
    const nab_profile_t *p = std_profile();
    double s[20] = {0};
    nab_window_t w = {10, 13};
    nab_file_t f = {20, s, &w, 1};
    nab_result_t r;
    /* All zeros: threshold 0 detects every row from probation on; the
     * window's first row (+1) outweighs 7 + 6 false positives. */
    assert_int_equal(nab_score(&f, 1, p, &r, NULL), 0);
    assert_true(r.threshold == 0.0);
    double all = 1.0 - 7 * 0.11;
    for (size_t i = 14; i < 20; i++)
        all += nab_row_value(&f, p, i);
    assert_true(fabs(r.raw - all) < 1e-12);
    /* First row of the window only: perfect. */
    s[10] = 1.0;
    assert_int_equal(nab_score(&f, 1, p, &r, NULL), 0);
    assert_true(r.threshold == 1.0);
    assert_true(fabs(r.score - 100.0) < 1e-12);
    /* A detection in probation is ignored. */
    s[0] = 1.0;
    assert_int_equal(nab_score(&f, 1, p, &r, NULL), 0);
    assert_true(fabs(r.score - 100.0) < 1e-12);
    /* Tie: a later threshold adding a zero-value row does not win. With a
     * window-free file the best is no detection at all. */
    double z[10] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
    nab_file_t g = {10, z, NULL, 0};
    assert_int_equal(nab_score(&g, 1, p, &r, NULL), 0);
    assert_true(r.threshold == 1.1);
    assert_true(fabs(r.raw) < 1e-12);
    /* Every row detected (score 1 everywhere): counted, not a crash. */
    for (int i = 0; i < 20; i++)
        s[i] = 1.0;
    assert_int_equal(nab_score(&f, 1, p, &r, NULL), 0);
    assert_true(fabs(nab_file_raw(&f, p, 1.0) - all) < 1e-12);
    /* Out of range scores are refused. */
    s[15] = 1.5;
    assert_int_equal(nab_score(&f, 1, p, &r, NULL), NAB_ERANGE);
    s[15] = NAN;
    assert_int_equal(nab_score(&f, 1, p, &r, NULL), NAB_ERANGE);
}

static void test_csv_and_labels(void **state)
{
    (void)state;
    const char csv[] = "timestamp,value\n2014-04-01 00:00:00,20.0\r\n"
                       "2014-04-01 00:05:00,-1.03989471325e-05\n2014-04-01 00:10:00,90";
    nab_csv_t c;
    assert_int_equal(nab_csv_parse(csv, sizeof csv - 1, &c), 0);
    assert_int_equal(c.n, 3);
    int ok;
    assert_true(c.ts[0] == nab_parse_time("2014-04-01 00:00:00", 19, &ok) && ok);
    assert_true(c.ts[0] == INT64_C(1396310400000));
    assert_true(c.ts[1] - c.ts[0] == 300000);
    assert_true(c.v[1] == -1.03989471325e-05);
    assert_true(c.v[2] == 90.0);
    assert_string_equal(c.tstr[2], "2014-04-01 00:10:00");
    const char js[] = "{\"a/x.csv\": [[\"2014-04-01 00:05:00.000000\", "
                      "\"2014-04-01 00:10:00.000000\"]], \"b.csv\": []}";
    nab_labels_t l;
    assert_int_equal(nab_labels_parse(js, sizeof js - 1, &l), 0);
    assert_int_equal(l.n, 2);
    const nab_label_entry_t *e = nab_labels_find(&l, "a/x.csv");
    assert_non_null(e);
    assert_int_equal(e->nwin, 1);
    nab_window_t w;
    assert_int_equal(nab_windows_resolve(e, &c, &w), 0);
    assert_int_equal(w.lo, 1);
    assert_int_equal(w.hi, 2);
    assert_int_equal(nab_labels_find(&l, "b.csv")->nwin, 0);
    nab_labels_free(&l);
    nab_csv_free(&c);
    assert_int_equal(nab_csv_parse("t,v\nxx,1\n", 9, &c), NAB_EPARSE);
    assert_int_equal(nab_labels_parse("{\"a\": [[\"x\"", 11, &l), NAB_EPARSE);
}

/* ---- scorer_checks.json --------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

/* The number after `"key":` at or after p. */
static double num_after(const char *p, const char *key)
{
    char pat[512];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(p, pat);
    assert_non_null(q);
    return strtod(q + strlen(pat), NULL);
}

static const char *find_obj(const char *p, const char *key)
{
    char pat[256];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(p, pat);
    assert_non_null(q);
    return q + strlen(pat);
}

static const char *nab_dir(void)
{
    static char buf[4096];
    const char *e = getenv("AUGUR_NAB_DIR");
    if (e && *e) return e;
    const char *src = getenv("AUGUR_SRC");
    struct stat sb;
    snprintf(buf, sizeof buf, "%s/../shared/data/nab", src && *src ? src : "..");
    if (!stat(buf, &sb)) return buf;
    snprintf(buf, sizeof buf, "../../shared/data/nab");
    if (!stat(buf, &sb)) return buf;
    return NULL;
}

static void fill(nab_corpus_t *c, const char *det)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t n = c->files[i].n;
        double *s = c->scores[i];
        for (size_t r = 0; r < n; r++)
            s[r] = 0.0;
        const nab_window_t *w = c->files[i].win;
        if (!strcmp(det, "first")) {
            for (size_t k = 0; k < c->files[i].nwin; k++)
                s[w[k].lo] = 1.0;
        } else if (!strcmp(det, "last")) {
            for (size_t k = 0; k < c->files[i].nwin; k++)
                s[w[k].hi] = 1.0;
        } else if (!strcmp(det, "mixed")) {
            for (size_t r = 0; r < n; r += 1500)
                s[r] = 0.6;
            for (size_t k = 0; k < c->files[i].nwin; k++) {
                s[w[k].lo] = 0.6;
                s[(w[k].lo + w[k].hi) / 2] = 0.9;
                if (w[k].hi + 1 < n) s[w[k].hi + 1] = 1.0;
            }
        }
    }
}

static void test_scorer_checks(void **state)
{
    (void)state;
    const char *dir = nab_dir();
    if (!dir) {
        fprintf(stderr, "NAB data not found (set AUGUR_NAB_DIR): skipped\n");
        skip();
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/scorer_checks.json", dir);
    char *js = slurp(path);
    assert_non_null(js);
    nab_corpus_t c;
    char err[4096];
    int rc = nab_corpus_load(dir, "combined_windows_dev.json", &c, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", err, nab_strerror(rc));
    assert_int_equal(rc, 0);
    assert_int_equal(c.n, 41);
    double *pfr = calloc(c.n, sizeof *pfr);
    static const char *const dets[] = {"first", "last", "mixed", "zeros"};
    int checked = 0;
    for (size_t d = 0; d < 4; d++) {
        fill(&c, dets[d]);
        const char *dp = find_obj(strstr(js, "\"detectors\""), dets[d]);
        for (int p = 0; p < NAB_NPROFILES; p++) {
            const char *pp = find_obj(find_obj(dp, "profiles"), nab_profiles[p].name);
            nab_result_t r;
            assert_int_equal(nab_score(c.files, c.n, &nab_profiles[p], &r, pfr), 0);
            double th = num_after(pp, "threshold"), sc = num_after(pp, "score"),
                   raw = num_after(pp, "raw");
            if (fabs(r.threshold - th) > 1e-12 || fabs(r.score - sc) > 1e-9 ||
                fabs(r.raw - raw) > 1e-9)
                fprintf(stderr, "%s/%s: got th %.17g score %.17g raw %.17g, want %.17g %.17g %.17g\n",
                        dets[d], nab_profiles[p].name, r.threshold, r.score, r.raw, th, sc, raw);
            assert_true(fabs(r.threshold - th) <= 1e-12);
            assert_true(fabs(r.score - sc) <= 1e-9);
            assert_true(fabs(r.raw - raw) <= 1e-9);
            assert_true(fabs(r.null_raw - num_after(pp, "null_raw")) <= 1e-9);
            assert_true(fabs(r.perfect_raw - num_after(pp, "perfect_raw")) <= 1e-9);
            const char *pf = find_obj(pp, "per_file_raw");
            for (size_t i = 0; i < c.n; i++) {
                double want = num_after(pf, c.keys[i]);
                if (fabs(pfr[i] - want) > 1e-9)
                    fprintf(stderr, "%s/%s %s: %.17g want %.17g\n", dets[d], nab_profiles[p].name,
                            c.keys[i], pfr[i], want);
                assert_true(fabs(pfr[i] - want) <= 1e-9);
                checked++;
            }
        }
    }
    fprintf(stderr, "scorer_checks: %d per-file figures match\n", checked);
    free(pfr);
    free(js);
    nab_corpus_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigmoid),        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_hand_cases),     cmocka_unit_test(test_csv_and_labels),
        cmocka_unit_test(test_scorer_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
