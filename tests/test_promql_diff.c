/* test_promql_diff.c — augur's side of the PromQL differential test.
 *
 * Harness mode (used by tests/integration/promql_diff.sh, which runs the same
 * data and queries against a real Prometheus and compares):
 *   AUGUR_PROMQL_DIFF_DATA=data.txt AUGUR_PROMQL_DIFF_QUERIES=queries.tsv
 *   AUGUR_PROMQL_DIFF_OUT=answers.tsv test_promql_diff
 * writes the data into a fresh store with tsdb_append, runs every query
 * through qapi_handle in-process and writes "<status>\t<json>" per query.
 *
 * Without those variables it runs the checked-in corpus
 * ($AUGUR_SRC/tests/data/promql/) the same way and checks each answer against
 * the recorded Prometheus answer (expected.tsv, written by promql_diff.py
 * --record) with the same rules: same status, same label sets, same
 * timestamps, values within 1e-9 relative or both NaN.
 *
 * data.txt:    "S\tname=value\t..." starts a series (values %XX-escaped for
 *              '%', tab, newline), then "<t_ms> <hex bits of the double>" lines.
 * queries.tsv: "query\t<time>\t<expr>" or "query_range\t<start>\t<end>\t<step>\t<expr>"
 *              (times in float seconds, expr with \t \n written as \\t \\n).
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "query/promql_int.h"
#include "query/query_api.h"
#include "testutil.h"

/* Answers of the checked-in corpus that may differ from Prometheus (each one
 * is explained in docs/promql-differences.md). */
#define KNOWN_DIFFERENCES 0
#define AUGUR_SRC_FALLBACK "."

static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char h[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

/* Load data.txt into db. Returns the number of samples. */
static size_t load_data(tsdb_t *db, const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    tsdb_label_t lab[64];
    char *labstore[64];
    size_t nl = 0, total = 0;
    tsdb_sample_t *s = NULL;
    size_t ns = 0, scap = 0;
#define FLUSH_SERIES()                                                              \
    do {                                                                            \
        if (nl && ns) {                                                             \
            tsdb_series_in_t in = {lab, (uint32_t)nl, s, (uint32_t)ns};             \
            tsdb_append_result_t res;                                               \
            assert_int_equal(tsdb_append(db, &in, 1, NULL, &res), 0);               \
            assert_int_equal(res.stored, ns);                                       \
            total += ns;                                                            \
        }                                                                           \
        for (size_t i_ = 0; i_ < nl; i_++) free(labstore[i_]);                      \
        nl = ns = 0;                                                                \
    } while (0)
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        if (line[0] == 'S' && line[1] == '\t') {
            FLUSH_SERIES();
            char *save = NULL;
            for (char *tok = strtok_r(line + 2, "\t", &save); tok; tok = strtok_r(NULL, "\t", &save)) {
                assert_true(nl < 64);
                char *eq = strchr(tok, '=');
                assert_non_null(eq);
                *eq = 0;
                char *nm = strdup(tok);
                unescape(eq + 1);
                char *buf = malloc(strlen(nm) + strlen(eq + 1) + 2);
                strcpy(buf, nm);
                strcpy(buf + strlen(nm) + 1, eq + 1);
                free(nm);
                labstore[nl] = buf;
                lab[nl].name = (tsdb_str_t){buf, (uint32_t)strlen(buf)};
                lab[nl].value = (tsdb_str_t){buf + strlen(buf) + 1, (uint32_t)strlen(buf + strlen(buf) + 1)};
                nl++;
            }
        } else if (n > 0) {
            int64_t t;
            uint64_t bits;
            assert_int_equal(sscanf(line, "%" SCNd64 " %" SCNx64, &t, &bits), 2);
            if (ns == scap) {
                scap = scap ? scap * 2 : 256;
                s = realloc(s, scap * sizeof *s);
                assert_non_null(s);
            }
            s[ns++] = (tsdb_sample_t){t, f64_from_bits(bits)};
        }
    }
    FLUSH_SERIES();
#undef FLUSH_SERIES
    free(s);
    free(line);
    fclose(f);
    return total;
}

typedef struct {
    const char *k[6];
    const char *v[6];
} qparams_t;

static const char *qget(void *ctx, const char *name, size_t idx)
{
    qparams_t *p = ctx;
    if (idx) return NULL;
    for (int i = 0; i < 6 && p->k[i]; i++)
        if (!strcmp(p->k[i], name)) return p->v[i];
    return NULL;
}

static void unescape_expr(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '\\' && p[1] == 't') {
            *o++ = '\t';
            p++;
        } else if (*p == '\\' && p[1] == 'n') {
            *o++ = '\n';
            p++;
        } else if (*p == '\\' && p[1] == '\\') {
            *o++ = '\\';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

/* The same range query through the result cache: first the first half of
 * the range (cached), then the whole range (the cached half and the computed
 * rest merged), then the whole range again (all from the cache). Each must
 * be byte-identical to the uncached answer. */
static size_t cache_checked;

static void check_cached(tsdb_t *db, qparams_t *qp, int status, const tbuf_t *want)
{
    int64_t s, e, st;
    if (pq_parse_time(qp->v[0], &s) || pq_parse_time(qp->v[1], &e) || pq_parse_duration_param(qp->v[2], &st) ||
        st <= 0 || e <= s)
        return;
    qapi_cache_t *cache = qapi_cache_new(64 << 20);
    assert_non_null(cache);
    qapi_limits_t lim = {0};
    lim.cache = cache;
    const int64_t now = 4102444800000LL; /* 2100: every step is old enough to cache */
    char mid[64];
    int64_t m = s + (e - s) / st / 2 * st;
    snprintf(mid, sizeof mid, "%s%lld.%03lld", m < 0 ? "-" : "", (long long)(m < 0 ? -m : m) / 1000,
             (long long)(m < 0 ? -m : m) % 1000);
    tbuf_t got = {0};
    const char *end = qp->v[1];
    for (int round = 0; round < 3; round++) {
        qp->v[1] = round == 0 ? mid : end;
        int gs = 0;
        assert_int_equal(qapi_handle(db, "query_range", qget, qp, now, &lim, &got, &gs), 0);
        if (round == 0) continue;
        if (gs != status || got.len != want->len || memcmp(got.p, want->p, got.len)) {
            fprintf(stderr, "cached answer (round %d) of %s [%s, %s] step %s differs:\n got  %d %.300s\n want %d %.300s\n",
                    round, qp->v[3], qp->v[0], end, qp->v[2], gs, (char *)got.p, status, (char *)want->p);
            fail();
        }
    }
    qp->v[1] = end;
    cache_checked++;
    tbuf_free(&got);
    qapi_cache_free(cache);
}

/* Run every query; write "<status>\t<json>\n" per query to out. */
static size_t run_queries(tsdb_t *db, const char *qpath, FILE *out)
{
    FILE *f = fopen(qpath, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0, nq = 0;
    ssize_t n;
    tbuf_t body = {0};
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        if (!n || line[0] == '#') continue;
        char *fld[6] = {0};
        int nf = 0;
        char *p = line;
        while (nf < 6) {
            fld[nf++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = 0;
            p = tab + 1;
        }
        qparams_t qp = {{0}, {0}};
        const char *path = fld[0];
        if (!strcmp(path, "query")) {
            assert_true(nf >= 3);
            unescape_expr(fld[2]);
            qp.k[0] = "time";
            qp.v[0] = fld[1];
            qp.k[1] = "query";
            qp.v[1] = fld[2];
        } else {
            assert_true(nf >= 5);
            unescape_expr(fld[4]);
            qp.k[0] = "start";
            qp.v[0] = fld[1];
            qp.k[1] = "end";
            qp.v[1] = fld[2];
            qp.k[2] = "step";
            qp.v[2] = fld[3];
            qp.k[3] = "query";
            qp.v[3] = fld[4];
        }
        int status = 0;
        assert_int_equal(qapi_handle(db, path, qget, &qp, 0, NULL, &body, &status), 0);
        fprintf(out, "%d\t%.*s\n", status, (int)body.len, (const char *)body.p);
        if (strcmp(path, "query")) check_cached(db, &qp, status, &body);
        nq++;
    }
    tbuf_free(&body);
    free(line);
    fclose(f);
    return nq;
}

static tsdb_t *open_store(char *dir, size_t n)
{
    assert_non_null(tu_mkdtemp(dir, n));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.ooo_window_ms = -1;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    return db;
}

/* ---- comparison for the checked-in corpus --------------------------------------
 * A tiny reader for the two JSON shapes involved: it flattens an answer into
 * lines "labels-json t value" (sorted), which are then compared field by field. */

typedef struct {
    char **rows;
    size_t n, cap;
    char status[32];
    char rtype[16];
} flat_t;

static void flat_add(flat_t *f, const char *s)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->rows = realloc(f->rows, f->cap * sizeof *f->rows);
    }
    f->rows[f->n++] = strdup(s);
}

static void flat_free(flat_t *f)
{
    for (size_t i = 0; i < f->n; i++) free(f->rows[i]);
    free(f->rows);
}

/* Skip a JSON string starting at p (a quote); returns the char after it. */
static const char *skip_str(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
    return *p ? p + 1 : p;
}

static const char *skip_obj(const char *p)
{
    int d = 0;
    for (; *p; p++) {
        if (*p == '"') {
            p = skip_str(p) - 1;
            continue;
        }
        if (*p == '{' || *p == '[') d++;
        if (*p == '}' || *p == ']') {
            if (--d == 0) return p + 1;
        }
    }
    return p;
}

/* Parse one point "[t,"v"]" at p; appends "<metric> t v". */
static const char *flat_point(flat_t *f, const char *metric, size_t mlen, const char *p)
{
    /* p at '[' */
    p++;
    char *end;
    double t = strtod(p, &end);
    p = end + 1; /* ',' */
    const char *vs = p + 1;
    const char *ve = skip_str(p) - 1;
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s %.3f %.*s", (int)mlen, metric, t, (int)(ve - vs), vs);
    flat_add(f, buf);
    return ve + 2; /* past '"]' */
}

static int cmp_rows(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void flatten(const char *line, flat_t *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->status, sizeof f->status, "%.*s", (int)strcspn(line, "\t"), line);
    const char *rt = strstr(line, "\"resultType\":\"");
    if (!rt) return;
    rt += 14;
    snprintf(f->rtype, sizeof f->rtype, "%.*s", (int)strcspn(rt, "\""), rt);
    const char *p = strstr(line, "\"result\":");
    p += 9;
    if (!strcmp(f->rtype, "scalar") || !strcmp(f->rtype, "string")) {
        flat_point(f, "{}", 2, p);
        return;
    }
    p++; /* '[' */
    while (*p == '{') {
        const char *m = strstr(p, "\"metric\":") + 9;
        const char *me = skip_obj(m);
        p = me + 1; /* ',' */
        if (!strncmp(p, "\"value\":", 8)) {
            p = flat_point(f, m, (size_t)(me - m), p + 8);
        } else {
            p += 10; /* "values":[ */
            while (*p == '[') {
                p = flat_point(f, m, (size_t)(me - m), p);
                if (*p == ',') p++;
            }
            p++; /* ']' */
        }
        p++; /* '}' */
        if (*p == ',') p++;
    }
    if (f->n > 1) qsort(f->rows, f->n, sizeof *f->rows, cmp_rows);
}

static double parse_val(const char *s)
{
    if (!strcmp(s, "NaN")) return NAN;
    if (!strcmp(s, "+Inf")) return INFINITY;
    if (!strcmp(s, "-Inf")) return -INFINITY;
    return strtod(s, NULL);
}

static int rows_match(const char *a, const char *b)
{
    const char *sa = strrchr(a, ' '), *sb = strrchr(b, ' ');
    if (!sa || !sb || sa - a != sb - b || memcmp(a, b, (size_t)(sa - a))) return 0;
    double x = parse_val(sa + 1), y = parse_val(sb + 1);
    if (isnan(x) && isnan(y)) return 1;
    if (x == y) return 1;
    return fabs(x - y) <= 1e-9 * fmax(fabs(x), fabs(y));
}

static int answers_match(const char *got, const char *want)
{
    flat_t g, w;
    flatten(got, &g);
    flatten(want, &w);
    int ok = !strcmp(g.status, w.status) && !strcmp(g.rtype, w.rtype) && g.n == w.n;
    for (size_t i = 0; ok && i < g.n; i++) ok = rows_match(g.rows[i], w.rows[i]);
    flat_free(&g);
    flat_free(&w);
    return ok;
}

static void test_corpus(void **state)
{
    (void)state;
    const char *data = getenv("AUGUR_PROMQL_DIFF_DATA");
    const char *queries = getenv("AUGUR_PROMQL_DIFF_QUERIES");
    const char *outp = getenv("AUGUR_PROMQL_DIFF_OUT");
    char dir[256];
    if (data && queries && outp) {
        tsdb_t *db = open_store(dir, sizeof dir);
        size_t ns = load_data(db, data);
        FILE *out = fopen(outp, "w");
        assert_non_null(out);
        size_t nq = run_queries(db, queries, out);
        fclose(out);
        fprintf(stderr, "loaded %zu samples, ran %zu queries (%zu range queries also through the result cache)\n",
                ns, nq, cache_checked);
        tsdb_close(db);
        tu_rmrf(dir);
        return;
    }
    const char *src = getenv("AUGUR_SRC");
    if (!src) src = AUGUR_SRC_FALLBACK;
    char dpath[1024], qpath[1024], epath[1024], opath[1024];
    snprintf(dpath, sizeof dpath, "%s/tests/data/promql/data.txt", src);
    snprintf(qpath, sizeof qpath, "%s/tests/data/promql/queries.tsv", src);
    snprintf(epath, sizeof epath, "%s/tests/data/promql/expected.tsv", src);
    FILE *ef = fopen(epath, "r");
    if (!ef) {
        fprintf(stderr, "no recorded corpus at %s: skipped\n", epath);
        skip();
    }
    tsdb_t *db = open_store(dir, sizeof dir);
    load_data(db, dpath);
    snprintf(opath, sizeof opath, "%s/answers.tsv", dir);
    FILE *out = fopen(opath, "w");
    assert_non_null(out);
    size_t nq = run_queries(db, qpath, out);
    fclose(out);
    tsdb_close(db);
    /* compare line by line; the known divergences are listed in
     * docs/promql-differences.md and marked "# known" in queries.tsv's
     * neighbour file known.txt (line numbers) */
    FILE *gf = fopen(opath, "r");
    assert_non_null(gf);
    char *gl = NULL, *el = NULL;
    size_t gc = 0, ec = 0, matched = 0, line = 0;
    size_t bad = 0;
    while (getline(&gl, &gc, gf) > 0 && getline(&el, &ec, ef) > 0) {
        line++;
        gl[strcspn(gl, "\n")] = 0;
        el[strcspn(el, "\n")] = 0;
        if (answers_match(gl, el)) {
            matched++;
        } else {
            bad++;
            if (bad <= 10) fprintf(stderr, "query %zu differs:\n got  %.300s\n want %.300s\n", line, gl, el);
        }
    }
    free(gl);
    free(el);
    fclose(gf);
    fclose(ef);
    tu_rmrf(dir);
    fprintf(stderr, "corpus: %zu queries, %zu match Prometheus 2.42\n", nq, matched);
    long allowed = tu_env_long("AUGUR_PROMQL_DIFF_ALLOWED", KNOWN_DIFFERENCES);
    assert_true((long)bad <= allowed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
