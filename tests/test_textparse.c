/*
 * test_textparse.c — Prometheus text / OpenMetrics exposition parser.
 *
 * Golden files in tests/data/text/ (node_exporter.txt is a real page made by
 * capture_node_exporter.sh), a malformed-line table, and a round-trip
 * property test (seed printed; AUGUR_TEST_SEED=<n> replays one).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ingest/textparse.h"
#include "tsdb/tsdb_util.h"

#define NORMAL_NAN_BITS UINT64_C(0x7ff8000000000001)

/* ---- helpers ------------------------------------------------------------ */

static char *read_file(const char *rel, size_t *len)
{
    const char *src = getenv("AUGUR_SRC");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s: %s (set AUGUR_SRC to the source tree)\n", path,
                strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static int seq(tsdb_str_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* Value of label `name` in s, or NULL (a static copy, NUL-terminated). */
static const char *label(const tsdb_series_in_t *s, const char *name)
{
    static char buf[1 << 16];
    for (uint32_t i = 0; i < s->nlabels; i++) {
        if (seq(s->labels[i].name, name)) {
            uint32_t n = s->labels[i].value.len < sizeof buf - 1 ? s->labels[i].value.len
                                                                 : (uint32_t)sizeof buf - 1;
            memcpy(buf, s->labels[i].value.ptr, n);
            buf[n] = 0;
            return buf;
        }
    }
    return NULL;
}

static int str_cmp(tsdb_str_t a, tsdb_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

/* What tsdb_append() requires of every series, plus sortedness. */
static void check_invariants(const textparse_result_t *r)
{
    for (size_t i = 0; i < r->nseries; i++) {
        const tsdb_series_in_t *s = &r->series[i];
        assert_int_equal(s->nsamples, 1);
        assert_non_null(s->samples);
        int has_name = 0;
        for (uint32_t j = 0; j < s->nlabels; j++) {
            assert_true(s->labels[j].name.len > 0);
            assert_true(s->labels[j].value.len > 0);
            if (j) assert_true(str_cmp(s->labels[j - 1].name, s->labels[j].name) < 0);
            if (seq(s->labels[j].name, "__name__")) has_name = 1;
        }
        assert_true(has_name);
    }
    assert_true(r->nerrors <= r->nrejected);
}

/* Parse `body` with `o` (NULL = defaults) into *r; returns the rc. */
static int parse(textparse_t *p, const char *body, const textparse_options_t *o,
                 textparse_result_t *r)
{
    int rc = textparse_parse(p, body, strlen(body), o, r);
    if (rc == 0) check_invariants(r);
    return rc;
}

static const tsdb_series_in_t *find_series(const textparse_result_t *r, const char *name,
                                           const char *lname, const char *lvalue)
{
    for (size_t i = 0; i < r->nseries; i++) {
        const char *n = label(&r->series[i], "__name__");
        if (!n || strcmp(n, name)) continue;
        if (lname) {
            const char *v = label(&r->series[i], lname);
            if (!v || strcmp(v, lvalue)) continue;
        }
        return &r->series[i];
    }
    return NULL;
}

static uint64_t bits(double d)
{
    return f64_bits(d);
}

static uint64_t test_seed(void)
{
    const char *e = getenv("AUGUR_TEST_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    return seed;
}

/* ---- golden: node_exporter ---------------------------------------------- */

static void test_node_exporter_golden(void **state)
{
    (void)state;
    size_t len;
    char *body = read_file("tests/data/text/node_exporter.txt", &len);
    assert_non_null(body);
    /* Count sample lines and distinct metadata names independently. */
    size_t nsample_lines = 0;
    for (const char *s = body; s < body + len;) {
        const char *nl = memchr(s, '\n', (size_t)(body + len - s));
        const char *e = nl ? nl : body + len;
        if (e > s && *s != '#') nsample_lines++;
        s = nl ? nl + 1 : e;
    }
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_options_t o;
    textparse_options_init(&o);
    o.default_ts_ms = 1700000000000;
    textparse_result_t r;
    assert_int_equal(textparse_parse(p, body, len, &o, &r), 0);
    check_invariants(&r);
    for (size_t i = 0; i < r.nerrors; i++)
        fprintf(stderr, "%s\n", r.errors[i].msg);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, nsample_lines);
    assert_true(r.nseries > 300);
    for (size_t i = 0; i < r.nseries; i++) {
        assert_int_equal(r.series[i].samples[0].t, 1700000000000);
        assert_true(r.series_line[i] >= 1 && r.series_line[i] <= r.nlines);
    }

    /* Every family has a TYPE line in node_exporter output. */
    assert_true(r.nmeta > 100);
    for (size_t i = 0; i < r.nmeta; i++) {
        assert_int_not_equal(r.meta[i].type, TEXTPARSE_TYPE_NONE);
        assert_non_null(r.meta[i].help.ptr);
    }
    const textparse_meta_t *m = textparse_meta_find(p, "go_gc_duration_seconds", 22);
    assert_non_null(m);
    assert_int_equal(m->type, TEXTPARSE_TYPE_SUMMARY);
    assert_true(seq(m->help, "A summary of the pause duration of garbage collection cycles."));
    m = textparse_meta_find(p, "node_cpu_seconds_total", 22);
    assert_non_null(m);
    assert_int_equal(m->type, TEXTPARSE_TYPE_COUNTER);
    m = textparse_meta_find(p, "go_goroutines", 13);
    assert_non_null(m);
    assert_int_equal(m->type, TEXTPARSE_TYPE_GAUGE);
    assert_null(m->unit.ptr);
    assert_null(textparse_meta_find(p, "no_such_family", 14));

    /* Exact values and labels (from the captured page). */
    const tsdb_series_in_t *s = find_series(&r, "node_boot_time_seconds", NULL, NULL);
    assert_non_null(s);
    assert_true(s->samples[0].v == 1.795909072e+09);
    assert_int_equal(s->nlabels, 1);
    s = find_series(&r, "node_cpu_seconds_total", "mode", "idle");
    assert_non_null(s);
    assert_string_equal(label(s, "cpu"), "0");
    assert_true(s->samples[0].v == 569.49);
    s = find_series(&r, "node_filesystem_size_bytes", "mountpoint", "/");
    assert_non_null(s);
    assert_true(s->samples[0].v == 2.70553174016e+11);
    assert_string_equal(label(s, "fstype"), "ext4");
    s = find_series(&r, "node_exporter_build_info", NULL, NULL);
    assert_non_null(s);
    static const char *const names[] = {"__name__",  "branch",   "goarch", "goos",
                                        "goversion", "revision", "version"};
    assert_int_equal(s->nlabels, 7);
    for (int i = 0; i < 7; i++)
        assert_true(seq(s->labels[i].name, names[i]));
    assert_string_equal(label(s, "version"), "1.5.0");
    s = find_series(&r, "node_uname_info", NULL, NULL);
    assert_non_null(s);
    assert_string_equal(label(s, "version"), "#1 SMP PREEMPT_DYNAMIC @0");
    assert_string_equal(label(s, "domainname"), "(none)");

    textparse_destroy(p);
    free(body);
}

/* ---- golden: OpenMetrics ------------------------------------------------ */

static void test_openmetrics_golden(void **state)
{
    (void)state;
    size_t len;
    char *body = read_file("tests/data/text/openmetrics.txt", &len);
    assert_non_null(body);
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_options_t o;
    textparse_options_init(&o);
    const char *ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    o.dialect = textparse_dialect_detect(ct, strlen(ct));
    assert_int_equal(o.dialect, TEXTPARSE_OPENMETRICS);
    o.default_ts_ms = 42;
    textparse_result_t r;
    assert_int_equal(textparse_parse(p, body, len, &o, &r), 0);
    check_invariants(&r);
    for (size_t i = 0; i < r.nerrors; i++)
        fprintf(stderr, "%s\n", r.errors[i].msg);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, 19);
    assert_int_equal(r.nexemplars, 3);
    assert_true(r.eof_seen);
    assert_int_equal(r.nmeta, 7);

    const textparse_meta_t *m = textparse_meta_find(p, "disk_io_seconds", 15);
    assert_non_null(m);
    assert_int_equal(m->type, TEXTPARSE_TYPE_COUNTER);
    assert_true(seq(m->unit, "seconds"));
    assert_true(seq(m->help, "Time spent doing I/O, by device. Escapes: \\ \" \n."));
    assert_int_equal(m->line, 1);
    static const struct {
        const char *name;
        textparse_type_t type;
    } types[] = {{"gpu_temperature_celsius", TEXTPARSE_TYPE_GAUGE},
                 {"job_latency_seconds", TEXTPARSE_TYPE_HISTOGRAM},
                 {"build", TEXTPARSE_TYPE_INFO},
                 {"drive_state", TEXTPARSE_TYPE_STATESET},
                 {"queue_depth", TEXTPARSE_TYPE_GAUGEHISTOGRAM},
                 {"mystery", TEXTPARSE_TYPE_UNKNOWN}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        m = textparse_meta_find(p, types[i].name, strlen(types[i].name));
        assert_non_null(m);
        assert_int_equal(m->type, types[i].type);
        assert_string_equal(textparse_type_name(m->type), textparse_type_name(types[i].type));
    }
    assert_string_equal(textparse_type_name(TEXTPARSE_TYPE_GAUGEHISTOGRAM), "gaugehistogram");

    const tsdb_series_in_t *s = find_series(&r, "disk_io_seconds_total", "device", "sda");
    assert_non_null(s);
    assert_true(s->samples[0].v == 1234.5);
    assert_int_equal(s->samples[0].t, INT64_C(1700000000123));
    s = find_series(&r, "disk_io_seconds_total", "device", "nvme0n1");
    assert_non_null(s);
    assert_int_equal(s->samples[0].t, 42);
    s = find_series(&r, "gpu_temperature_celsius", "gpu", "1");
    assert_non_null(s);
    assert_true(bits(s->samples[0].v) == NORMAL_NAN_BITS);
    s = find_series(&r, "job_latency_seconds_bucket", "le", "+Inf");
    assert_non_null(s);
    assert_true(s->samples[0].v == 11);
    s = find_series(&r, "mystery", NULL, NULL);
    assert_non_null(s);
    assert_true(isinf(s->samples[0].v) && s->samples[0].v < 0);
    assert_int_equal(s->samples[0].t, INT64_C(1700000001000));
    assert_non_null(find_series(&r, "job_latency_seconds_created", NULL, NULL));

    /* The same page with _created samples dropped. */
    o.flags = TEXTPARSE_F_DROP_CREATED;
    assert_int_equal(textparse_parse(p, body, len, &o, &r), 0);
    assert_int_equal(r.nseries, 17);
    assert_int_equal(r.ncreated_dropped, 2);
    assert_null(find_series(&r, "job_latency_seconds_created", NULL, NULL));
    assert_null(find_series(&r, "disk_io_seconds_created", NULL, NULL));

    /* Read as 0.0.4 instead: exemplars and float timestamps are errors. */
    o.flags = 0;
    o.dialect = TEXTPARSE_PROM;
    assert_int_equal(textparse_parse(p, body, len, &o, &r), 0);
    assert_int_equal(r.nrejected, 3);
    assert_int_equal(r.nseries, 16);

    textparse_destroy(p);
    free(body);
}

/* ---- escapes, whitespace, values, timestamps ---------------------------- */

static void test_escapes(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    const char *body =
        "# HELP m a \\\\ b \\n c \\\" d \\t e\n"
        "m{a=\"x\\\\y\",b=\"q\\\"q\",c=\"l1\\nl2\",d=\"keep\\t\\x\",e=\"tail\\\\\"} 1\n"
        "m{a=\"plain\"} 2\n";
    assert_int_equal(parse(p, body, NULL, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, 2);
    assert_string_equal(label(&r.series[0], "a"), "x\\y");
    assert_string_equal(label(&r.series[0], "b"), "q\"q");
    assert_string_equal(label(&r.series[0], "c"), "l1\nl2");
    assert_string_equal(label(&r.series[0], "d"), "keep\\t\\x");
    assert_string_equal(label(&r.series[0], "e"), "tail\\");
    /* An unescaped value points into the body. */
    const char *pv = NULL;
    for (uint32_t i = 0; i < r.series[1].nlabels; i++)
        if (seq(r.series[1].labels[i].name, "a")) pv = r.series[1].labels[i].value.ptr;
    assert_true(pv >= body && pv < body + strlen(body));
    /* 0.0.4 HELP: only \\ and \n. */
    assert_true(seq(r.meta[0].help, "a \\ b \n c \\\" d \\t e"));

    textparse_options_t o;
    textparse_options_init(&o);
    o.dialect = TEXTPARSE_OPENMETRICS;
    assert_int_equal(parse(p, "# HELP m a \\\\ b \\n c \\\" d\n# EOF\n", &o, &r), 0);
    assert_true(seq(r.meta[0].help, "a \\ b \n c \" d"));
    textparse_destroy(p);
}

static void test_whitespace_and_label_sets(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    const char *body = "\n"
                       "   \t\n"
                       "  # just a comment\n"
                       "#no space comment\n"
                       "# HELPER not metadata\n"
                       "a{} 1\n"
                       "b { } 2\n"
                       "c{ z = \"1\" ,\ty=\"2\", } 3  \t\n"
                       "d{x=\"1\",}4\n"
                       "\t e  5 \t 6 \r\n"
                       "f{empty=\"\",k=\"v\"} 7\n"
                       "g{zz=\"1\",aa=\"2\",__x=\"3\",AA=\"4\",a=\"5\"} 8\n"
                       "h 9";
    assert_int_equal(parse(p, body, NULL, &r), 0);
    for (size_t i = 0; i < r.nerrors; i++)
        fprintf(stderr, "%s\n", r.errors[i].msg);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, 8);
    assert_int_equal(r.nmeta, 0);
    assert_int_equal(r.nlines, 13);
    assert_int_equal(r.series[0].nlabels, 1);
    assert_int_equal(r.series[1].nlabels, 1);
    assert_int_equal(r.series[2].nlabels, 3);
    assert_string_equal(label(&r.series[2], "z"), "1");
    assert_string_equal(label(&r.series[2], "y"), "2");
    assert_true(r.series[3].samples[0].v == 4);
    assert_true(r.series[4].samples[0].v == 5);
    assert_int_equal(r.series[4].samples[0].t, 6);
    assert_int_equal(r.series_line[4], 10);
    /* Empty label values are dropped. */
    assert_int_equal(r.series[5].nlabels, 2);
    assert_null(label(&r.series[5], "empty"));
    /* Bytewise order: uppercase < '_' < lowercase. */
    static const char *const order[] = {"AA", "__name__", "__x", "a", "aa", "zz"};
    assert_int_equal(r.series[6].nlabels, 6);
    for (int i = 0; i < 6; i++)
        assert_true(seq(r.series[6].labels[i].name, order[i]));
    assert_true(r.series[7].samples[0].v == 9);
    textparse_destroy(p);
}

static void test_special_values(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    const char *body =
        "v NaN\nv nan\nv NAN\nv +Inf\nv -Inf\nv Inf\nv inf\nv +Infinity\n"
        "v -infinity\nv -0\nv 0\nv 1e-400\nv 1.\nv .5\nv -.5e1\nv 1E+2\n"
        "v 4.9e-324\nv 1.7976931348623157e308\nv 0.1\nv 123456789012345678901234567890\n"
        "v 0.000000000000000000000000000001\nv 00012\n";
    assert_int_equal(parse(p, body, NULL, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, 22);
    for (int i = 0; i < 3; i++)
        assert_true(bits(r.series[i].samples[0].v) == NORMAL_NAN_BITS);
    /* Never the staleness marker, whatever the text. */
    for (size_t i = 0; i < r.nseries; i++)
        assert_true(bits(r.series[i].samples[0].v) != TSDB_STALE_NAN_BITS);
    assert_true(r.series[3].samples[0].v == HUGE_VAL);
    assert_true(r.series[4].samples[0].v == -HUGE_VAL);
    assert_true(r.series[5].samples[0].v == HUGE_VAL);
    assert_true(r.series[6].samples[0].v == HUGE_VAL);
    assert_true(r.series[7].samples[0].v == HUGE_VAL);
    assert_true(r.series[8].samples[0].v == -HUGE_VAL);
    assert_true(bits(r.series[9].samples[0].v) == bits(-0.0));
    assert_true(bits(r.series[10].samples[0].v) == 0);
    assert_true(r.series[11].samples[0].v == 0);
    assert_true(r.series[12].samples[0].v == 1);
    assert_true(r.series[13].samples[0].v == 0.5);
    assert_true(r.series[14].samples[0].v == -5);
    assert_true(r.series[15].samples[0].v == 100);
    assert_true(r.series[16].samples[0].v == 4.9e-324);
    assert_true(r.series[17].samples[0].v == 1.7976931348623157e308);
    assert_true(r.series[18].samples[0].v == 0.1);
    assert_true(r.series[19].samples[0].v == 123456789012345678901234567890.0);
    assert_true(r.series[20].samples[0].v == 1e-30);
    assert_true(r.series[21].samples[0].v == 12);

    /* Rejected: what Go's ParseFloat or Prometheus refuses. */
    static const char *const bad[] = {"+NaN",  "-nan",  "nanx", "infin", "0x10",  "0x1p3",
                                      "1_000", "1e",    "1e+",  ".",     "-",     "+",
                                      "1..2",  "1e5.5", "e5",   "1,5",   "NaN(1)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "v %s\n", bad[i]);
        assert_int_equal(parse(p, line, NULL, &r), 0);
        if (r.nrejected != 1) fprintf(stderr, "accepted %s\n", bad[i]);
        assert_int_equal(r.nrejected, 1);
        assert_int_equal(r.nseries, 0);
    }
    assert_int_equal(parse(p, "v 1e309\nv -1e400\n", NULL, &r), 0);
    assert_int_equal(r.nrejected, 2);
    assert_string_equal(r.errors[0].msg, "line 1, col 3: sample value out of range \"1e309\"");
    textparse_destroy(p);
}

static void test_timestamps(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    textparse_options_t o;
    textparse_options_init(&o);
    o.default_ts_ms = -7;
    assert_int_equal(parse(p,
                           "a 1 1700000000000\na 1\na 1 -5\na 1 9223372036854775807\n"
                           "a 1 -9223372036854775808\na 1 0\n",
                           &o, &r),
                     0);
    assert_int_equal(r.nrejected, 0);
    static const int64_t want[] = {1700000000000, -7, -5, INT64_MAX, INT64_MIN, 0};
    for (int i = 0; i < 6; i++)
        assert_int_equal(r.series[i].samples[0].t, want[i]);
    assert_int_equal(parse(p, "a 1 9223372036854775808\na 1 1.5\na 1 1e3\na 1 +5\n", &o, &r), 0);
    assert_int_equal(r.nrejected, 4);
    assert_string_equal(r.errors[0].msg,
                        "line 1, col 5: timestamp out of range \"9223372036854775808\"");
    assert_string_equal(r.errors[1].msg, "line 2, col 5: invalid timestamp \"1.5\"");

    o.flags = TEXTPARSE_F_IGNORE_TIMESTAMPS;
    assert_int_equal(parse(p, "a 1 1700000000000\na 1 x\n", &o, &r), 0);
    assert_int_equal(r.nseries, 1);
    assert_int_equal(r.series[0].samples[0].t, -7);
    assert_int_equal(r.nrejected, 1);

    /* OpenMetrics: seconds, converted exactly, truncated toward zero. */
    o.flags = 0;
    o.dialect = TEXTPARSE_OPENMETRICS;
    static const struct {
        const char *ts;
        int64_t ms;
    } om[] = {{"1700000000", 1700000000000},
              {"1700000000.123", 1700000000123},
              {"1.001", 1001},
              {"1.0019", 1001},
              {"0.0015", 1},
              {"0.0009", 0},
              {"-1.0005", -1000},
              {"1e3", 1000000},
              {"1.5E-2", 15},
              {"0.00000000000000000001e22", 100000},
              {"0e99999", 0},
              {"-0", 0},
              {"+2", 2000},
              {"9223372036854775.807", INT64_MAX},
              {"-9223372036854775.808", INT64_MIN},
              {"000001.000", 1000}};
    for (size_t i = 0; i < sizeof om / sizeof om[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "a 1 %s\n# EOF\n", om[i].ts);
        assert_int_equal(parse(p, body, &o, &r), 0);
        if (r.nrejected) fprintf(stderr, "%s: %s\n", om[i].ts, r.errors[0].msg);
        assert_int_equal(r.nrejected, 0);
        assert_int_equal(r.series[0].samples[0].t, om[i].ms);
    }
    static const char *const ombad[] = {"NaN", "+Inf", "-inf", "1e20", "9223372036854775.808",
                                        "1,5", "0x10", "1.2.3"};
    for (size_t i = 0; i < sizeof ombad / sizeof ombad[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "a 1 %s\n# EOF\n", ombad[i]);
        assert_int_equal(parse(p, body, &o, &r), 0);
        if (r.nrejected != 1) fprintf(stderr, "accepted OM ts %s\n", ombad[i]);
        assert_int_equal(r.nrejected, 1);
    }
    textparse_destroy(p);
}

/* ---- extra labels ------------------------------------------------------- */

static void test_extra_labels(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    textparse_options_t o;
    textparse_options_init(&o);
    tsdb_label_t ex[4];
    assert_int_equal(textparse_extra_label_parse("job=import", 10, &ex[0]), 0);
    assert_int_equal(textparse_extra_label_parse("instance=h1:9100", 16, &ex[1]), 0);
    assert_int_equal(textparse_extra_label_parse("drop=", 5, &ex[2]), 0);
    assert_int_equal(textparse_extra_label_parse("a=b=c", 5, &ex[3]), 0);
    assert_true(seq(ex[3].name, "a") && seq(ex[3].value, "b=c"));
    assert_int_equal(ex[2].value.len, 0);
    tsdb_label_t junk;
    assert_int_equal(textparse_extra_label_parse("novalue", 7, &junk), TEXTPARSE_EINVAL);
    assert_int_equal(textparse_extra_label_parse("1x=y", 4, &junk), TEXTPARSE_EINVAL);
    assert_int_equal(textparse_extra_label_parse("=y", 2, &junk), TEXTPARSE_EINVAL);

    o.extra_labels = ex;
    o.nextra_labels = 3;
    assert_int_equal(parse(p, "m{job=\"orig\",drop=\"x\",zz=\"1\"} 1\nm 2\n", &o, &r), 0);
    assert_int_equal(r.nseries, 2);
    static const char *const n0[] = {"__name__", "instance", "job", "zz"};
    assert_int_equal(r.series[0].nlabels, 4);
    for (int i = 0; i < 4; i++)
        assert_true(seq(r.series[0].labels[i].name, n0[i]));
    assert_string_equal(label(&r.series[0], "job"), "import");
    assert_string_equal(label(&r.series[0], "instance"), "h1:9100");
    assert_int_equal(r.series[1].nlabels, 3);
    assert_string_equal(label(&r.series[1], "job"), "import");

    /* __name__ may be overridden, not removed; names must be valid and unique. */
    tsdb_label_t nm = {{"__name__", 8}, {"renamed", 7}};
    o.extra_labels = &nm;
    o.nextra_labels = 1;
    assert_int_equal(parse(p, "m 1\n", &o, &r), 0);
    assert_string_equal(label(&r.series[0], "__name__"), "renamed");
    tsdb_label_t badx[2] = {{{"__name__", 8}, {"", 0}}, {{"a", 1}, {"1", 1}}};
    o.extra_labels = badx;
    assert_int_equal(textparse_parse(p, "m 1\n", 4, &o, &r), TEXTPARSE_EINVAL);
    badx[0] = (tsdb_label_t){{"a", 1}, {"2", 1}};
    o.nextra_labels = 2;
    assert_int_equal(textparse_parse(p, "m 1\n", 4, &o, &r), TEXTPARSE_EINVAL);
    badx[0] = (tsdb_label_t){{"a-b", 3}, {"2", 1}};
    assert_int_equal(textparse_parse(p, "m 1\n", 4, &o, &r), TEXTPARSE_EINVAL);
    badx[0] = (tsdb_label_t){{"b", 1}, {"\xff", 1}};
    assert_int_equal(textparse_parse(p, "m 1\n", 4, &o, &r), TEXTPARSE_EINVAL);
    o.extra_labels = NULL;
    assert_int_equal(textparse_parse(p, "m 1\n", 4, &o, &r), TEXTPARSE_EINVAL);

    /* Extra labels count against max_labels_per_series. */
    o.extra_labels = ex;
    o.nextra_labels = 2;
    o.max_labels_per_series = 3;
    assert_int_equal(parse(p, "m{a=\"1\"} 1\nm{a=\"1\",b=\"2\"} 1\n", &o, &r), 0);
    assert_int_equal(r.nseries, 0);
    assert_int_equal(r.nrejected, 2);
    assert_string_equal(r.errors[0].msg,
                        "line 1, col 1: too many labels with the extra labels (4, limit 3)");
    textparse_destroy(p);
}

/* ---- metadata ----------------------------------------------------------- */

static void test_metadata(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    const char *body = "# TYPE a counter\n"
                       "# HELP b first\n"
                       "# HELP a   some help  \n"
                       "# HELP b second\n"
                       "# HELP c\n"
                       "# TYPE d gauge \t\n"
                       "# UNIT e_bytes bytes\n"
                       "# UNIT f_bytes nonsense words\n"
                       "#\tTYPE\tg\thistogram\n";
    assert_int_equal(parse(p, body, NULL, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nmeta, 6);
    assert_true(seq(r.meta[0].name, "a"));
    assert_int_equal(r.meta[0].type, TEXTPARSE_TYPE_COUNTER);
    assert_true(seq(r.meta[0].help, "some help  "));
    assert_int_equal(r.meta[0].line, 1);
    assert_true(seq(r.meta[1].help, "second"));
    assert_int_equal(r.meta[1].type, TEXTPARSE_TYPE_NONE);
    assert_non_null(r.meta[2].help.ptr);
    assert_int_equal(r.meta[2].help.len, 0);
    assert_int_equal(r.meta[3].type, TEXTPARSE_TYPE_GAUGE);
    assert_true(seq(r.meta[4].unit, "bytes"));
    assert_null(textparse_meta_find(p, "f_bytes", 7));          /* lax # UNIT in 0.0.4: a comment */
    const textparse_meta_t *g = textparse_meta_find(p, "g", 1); /* tabs are blanks too */
    assert_non_null(g);
    assert_int_equal(g->type, TEXTPARSE_TYPE_HISTOGRAM);

    /* Many families: the hash table grows. */
    char *big = malloc(5000 * 40);
    assert_non_null(big);
    size_t n = 0;
    for (int i = 0; i < 5000; i++)
        n += (size_t)sprintf(big + n, "# TYPE fam_%d gauge\n", i);
    for (int i = 0; i < 5000; i += 7)
        n += (size_t)sprintf(big + n, "# HELP fam_%d h%d\n", i, i);
    assert_int_equal(textparse_parse(p, big, n, NULL, &r), 0);
    assert_int_equal(r.nmeta, 5000);
    for (int i = 0; i < 5000; i++) {
        char nm[32];
        int k = sprintf(nm, "fam_%d", i);
        const textparse_meta_t *m = textparse_meta_find(p, nm, (size_t)k);
        assert_non_null(m);
        assert_int_equal(m->type, TEXTPARSE_TYPE_GAUGE);
        assert_true((i % 7 == 0) == (m->help.ptr != NULL));
    }
    free(big);
    textparse_destroy(p);
}

/* ---- malformed lines ---------------------------------------------------- */

typedef struct {
    const char *line;
    size_t len; /* 0 = strlen */
    const char *msg;
} badcase_t;

#define B(l, m)                                                                                    \
    {                                                                                              \
        l, 0, m                                                                                    \
    }
#define BN(l, m)                                                                                   \
    {                                                                                              \
        l, sizeof(l) - 1, m                                                                        \
    }

static const badcase_t prom_bad[] = {
    B("foo{a=\"1\" 1", "line 2, col 11: expected ',' or '}' after label value (found '1')"),
    B("foo{a\"1\"} 1", "line 2, col 6: expected '=' after label name (found '\"')"),
    B("foo{a=1} 1", "line 2, col 7: expected '\"' to start label value (found '1')"),
    B("foo{a=\"1} 1", "line 2, col 7: unterminated label value"),
    B("foo{a=\"1\\\"} 1", "line 2, col 7: unterminated label value"),
    B("foo{a=\"1\\", "line 2, col 7: unterminated label value"),
    B("foo{1a=\"x\"} 1", "line 2, col 5: expected label name or '}' (found '1')"),
    B("foo{a=\"x\",,} 1", "line 2, col 11: expected label name or '}' (found ',')"),
    B("foo{,} 1", "line 2, col 5: expected label name or '}' (found ',')"),
    B("foo{a=\"x\"", "line 2, col 10: expected ',' or '}' after label value (found end of line)"),
    B("foo{", "line 2, col 5: expected label name or '}' (found end of line)"),
    B("foo{a:b=\"1\"} 1", "line 2, col 6: expected '=' after label name (found ':')"),
    B("foo", "line 2, col 4: expected value after metric name (found end of line)"),
    B("foo   ", "line 2, col 7: expected value after metric name (found end of line)"),
    B("foo{a=\"b\"}", "line 2, col 11: expected value after '}' (found end of line)"),
    B("foo abc", "line 2, col 5: invalid sample value \"abc\""),
    B("foo 0x10", "line 2, col 5: invalid sample value \"0x10\""),
    B("foo 1_000", "line 2, col 5: invalid sample value \"1_000\""),
    B("foo +NaN", "line 2, col 5: invalid sample value \"+NaN\""),
    B("foo{a=\"1\"}{b=\"2\"} 3", "line 2, col 11: invalid sample value \"{b=?2?}\""),
    B("foo 1e400", "line 2, col 5: sample value out of range \"1e400\""),
    B("foo 1 abc", "line 2, col 7: invalid timestamp \"abc\""),
    B("foo 1 -", "line 2, col 7: invalid timestamp \"-\""),
    B("foo 1 99999999999999999999",
      "line 2, col 7: timestamp out of range \"99999999999999999999\""),
    B("foo 1 2 3", "line 2, col 9: expected end of line after timestamp (found '3')"),
    B("foo 1 2 # {a=\"b\"} 1", "line 2, col 9: expected end of line after timestamp (found '#')"),
    B("foo 1 # {a=\"b\"} 1", "line 2, col 7: invalid timestamp \"#\""),
    B("foo-bar 1", "line 2, col 4: invalid character in metric name (found '-')"),
    B("foo.bar 1", "line 2, col 4: invalid character in metric name (found '.')"),
    B("9foo 1", "line 2, col 1: expected metric name or '#' at start of line (found '9')"),
    B("{a=\"1\"} 1", "line 2, col 1: expected metric name or '#' at start of line (found '{')"),
    B("  -1", "line 2, col 3: expected metric name or '#' at start of line (found '-')"),
    B("\xc3\xa9t\xc3\xa9 1",
      "line 2, col 1: expected metric name or '#' at start of line (found byte 0xc3)"),
    B("foo{a=\"1\",a=\"2\"} 1", "line 2, col 11: duplicate label name \"a\""),
    B("foo{b=\"1\",a=\"0\",b=\"2\"} 1", "line 2, col 17: duplicate label name \"b\""),
    B("foo{__name__=\"x\"} 1", "line 2, col 5: duplicate label name \"__name__\""),
    B("foo{a=\"x\xff\"} 1", "line 2, col 9: invalid UTF-8 in label value"),
    B("foo{a=\"\xc0\xaf\"} 1", "line 2, col 8: invalid UTF-8 in label value"),
    B("foo{a=\"\xed\xa0\x80\"} 1", "line 2, col 8: invalid UTF-8 in label value"),
    B("foo{a=\"\xf4\x90\x80\x80\"} 1", "line 2, col 8: invalid UTF-8 in label value"),
    B("foo{a=\"\xe2\x82\"} 1", "line 2, col 8: invalid UTF-8 in label value"),
    BN("foo{a=\"x\0\"} 1", "line 2, col 9: NUL byte in label value"),
    B("foo\x01 1", "line 2, col 4: invalid character in metric name (found byte 0x01)"),
    B("foo 1\r2", "line 2, col 5: invalid sample value \"1?2\""),
    B("# TYPE foo bogus", "line 2, col 12: invalid metric type \"bogus\""),
    B("# TYPE foo Counter", "line 2, col 12: invalid metric type \"Counter\""),
    B("# TYPE foo", "line 2, col 11: expected metric type after metric name (found end of line)"),
    B("# TYPE foo ", "line 2, col 12: expected metric type after metric name (found end of line)"),
    B("# HELP 1foo x", "line 2, col 8: expected metric name after HELP (found '1')"),
    B("# TYPE  ", "line 2, col 9: expected metric name after TYPE (found end of line)"),
    B("# HELP foo-bar x", "line 2, col 11: invalid character in metric name (found '-')"),
    B("# HELP foo \xff", "line 2, col 12: invalid UTF-8 in help text"),
};

static const badcase_t om_bad[] = {
    B("foo 1 # x", "line 2, col 9: expected '{' to start exemplar (found 'x')"),
    B("foo 1 #", "line 2, col 8: expected '{' to start exemplar (found end of line)"),
    B("foo 1 1.5.5", "line 2, col 7: invalid timestamp \"1.5.5\""),
    B("foo 1 NaN", "line 2, col 7: invalid timestamp \"NaN\""),
    B("foo 1 1e30", "line 2, col 7: timestamp out of range \"1e30\""),
    B("foo 1 2 3", "line 2, col 9: expected end of line after timestamp (found '3')"),
    B("# UNIT foo_seconds bytes",
      "line 2, col 20: unit \"bytes\" is not a suffix of metric name \"foo_seconds\""),
    B("# UNIT seconds seconds",
      "line 2, col 16: unit \"seconds\" is not a suffix of metric name \"seconds\""),
    B("# UNIT foo_seconds sec-onds", "line 2, col 23: invalid character in unit (found '-')"),
    B("# UNIT 1x", "line 2, col 8: expected metric name after UNIT (found '1')"),
};

static void run_bad_table(const badcase_t *tab, size_t n, textparse_dialect_t d)
{
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_options_t o;
    textparse_options_init(&o);
    o.dialect = d;
    for (size_t i = 0; i < n; i++) {
        size_t ll = tab[i].len ? tab[i].len : strlen(tab[i].line);
        char *body = malloc(ll + 64);
        assert_non_null(body);
        size_t bl = 0;
        memcpy(body, "ok_a{x=\"1\"} 1\n", 14);
        bl = 14;
        memcpy(body + bl, tab[i].line, ll);
        bl += ll;
        const char *tail = d == TEXTPARSE_OPENMETRICS ? "\nok_b 2\n# EOF\n" : "\nok_b 2\n";
        memcpy(body + bl, tail, strlen(tail));
        bl += strlen(tail);
        textparse_result_t r;
        assert_int_equal(textparse_parse(p, body, bl, &o, &r), 0);
        check_invariants(&r);
        if (r.nrejected != 1 || strcmp(r.errors[0].msg, tab[i].msg)) {
            fprintf(stderr, "case %zu: %s\n  want: %s\n  got : %s (%" PRIu64 " rejected)\n", i,
                    tab[i].line, tab[i].msg, r.nerrors ? r.errors[0].msg : "(none)", r.nrejected);
        }
        assert_int_equal(r.nrejected, 1);
        assert_int_equal(r.nerrors, 1);
        assert_string_equal(r.errors[0].msg, tab[i].msg);
        assert_int_equal(r.errors[0].line, 2);
        /* The valid lines around it are kept. */
        assert_int_equal(r.nseries, 2);
        assert_string_equal(label(&r.series[0], "__name__"), "ok_a");
        assert_string_equal(label(&r.series[1], "__name__"), "ok_b");
        assert_int_equal(r.series_line[1], 3);

        /* Strict mode: the whole body fails with that one error. */
        o.flags = TEXTPARSE_F_STRICT;
        assert_int_equal(textparse_parse(p, body, bl, &o, &r), TEXTPARSE_ESYNTAX);
        assert_int_equal(r.nseries, 0);
        assert_int_equal(r.nmeta, 0);
        assert_int_equal(r.nerrors, 1);
        assert_string_equal(r.errors[0].msg, tab[i].msg);
        o.flags = 0;
        free(body);
    }
    textparse_destroy(p);
}

static void test_malformed_table_prom(void **state)
{
    (void)state;
    run_bad_table(prom_bad, sizeof prom_bad / sizeof prom_bad[0], TEXTPARSE_PROM);
}

static void test_malformed_table_openmetrics(void **state)
{
    (void)state;
    run_bad_table(om_bad, sizeof om_bad / sizeof om_bad[0], TEXTPARSE_OPENMETRICS);
}

static void test_openmetrics_eof(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_options_t o;
    textparse_options_init(&o);
    o.dialect = TEXTPARSE_OPENMETRICS;
    textparse_result_t r;
    assert_int_equal(parse(p, "a 1\nb 2\n", &o, &r), 0);
    assert_int_equal(r.nseries, 2);
    assert_false(r.eof_seen);
    assert_int_equal(r.nrejected, 1);
    assert_string_equal(r.errors[0].msg, "line 3, col 1: missing # EOF at end of OpenMetrics data");
    assert_int_equal(parse(p, "a 1\n# EOF\nb 2\n", &o, &r), 0);
    assert_int_equal(r.nseries, 1);
    assert_true(r.eof_seen);
    assert_string_equal(r.errors[0].msg, "line 3, col 1: unexpected data after # EOF");
    assert_int_equal(parse(p, "a 1\n# EOF", &o, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(parse(p, "a 1\n# EOF\n\n", &o, &r), 0);
    assert_int_equal(r.nrejected, 1);
    o.flags = TEXTPARSE_F_STRICT;
    assert_int_equal(parse(p, "a 1\n", &o, &r), TEXTPARSE_ESYNTAX);
    assert_int_equal(r.nerrors, 1);
    /* In 0.0.4, "# EOF" is an ordinary comment. */
    o.flags = 0;
    o.dialect = TEXTPARSE_PROM;
    assert_int_equal(parse(p, "a 1\n# EOF\nb 2\n", &o, &r), 0);
    assert_int_equal(r.nseries, 2);
    assert_false(r.eof_seen);
    textparse_destroy(p);
}

static void test_error_cap_and_limits(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    char *body = malloc(150 * 16 + 16);
    assert_non_null(body);
    size_t n = 0;
    for (int i = 0; i < 150; i++)
        n += (size_t)sprintf(body + n, "bad line %d\n", i);
    n += (size_t)sprintf(body + n, "good 1\n");
    assert_int_equal(textparse_parse(p, body, n, NULL, &r), 0);
    assert_int_equal(r.nrejected, 150);
    assert_int_equal(r.nerrors, 100);
    assert_int_equal(r.nseries, 1);
    assert_string_equal(r.errors[99].msg, "line 100, col 5: invalid sample value \"line\"");

    textparse_options_t o;
    textparse_options_init(&o);
    o.max_errors = 3;
    assert_int_equal(textparse_parse(p, body, n, &o, &r), 0);
    assert_int_equal(r.nerrors, 3);
    o.max_body_bytes = n - 1;
    assert_int_equal(textparse_parse(p, body, n, &o, &r), TEXTPARSE_ETOOLARGE);
    assert_int_equal(r.nseries, 0);
    free(body);

    textparse_options_init(&o);
    o.max_samples = 2;
    assert_int_equal(parse(p, "a 1\nb 2\n", &o, &r), 0);
    assert_int_equal(parse(p, "# TYPE a gauge\na 1\nb 2\nc 3\n", &o, &r), TEXTPARSE_ELIMIT);
    assert_int_equal(r.nseries, 0);
    assert_int_equal(r.nmeta, 0);
    assert_null(textparse_meta_find(p, "a", 1)); /* nothing stale after a failure */

    /* Argument checks; an empty body is fine. */
    assert_int_equal(textparse_parse(p, NULL, 0, NULL, &r), 0);
    assert_int_equal(r.nseries, 0);
    assert_int_equal(textparse_parse(p, NULL, 1, NULL, &r), TEXTPARSE_EINVAL);
    assert_int_equal(textparse_parse(NULL, "a 1", 3, NULL, &r), TEXTPARSE_EINVAL);
    assert_int_equal(textparse_parse(p, "a 1", 3, NULL, NULL), TEXTPARSE_EINVAL);
    o.dialect = (textparse_dialect_t)7;
    assert_int_equal(textparse_parse(p, "a 1", 3, &o, &r), TEXTPARSE_EINVAL);
    assert_int_equal(textparse_create(NULL), TEXTPARSE_EINVAL);
    textparse_destroy(NULL);
    assert_string_equal(textparse_strerror(TEXTPARSE_ESYNTAX), "malformed line (strict mode)");
    assert_string_equal(textparse_strerror(12345), "unknown error");
    textparse_destroy(p);
}

static void test_huge_lines(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    textparse_options_t o;
    textparse_options_init(&o);
    size_t vlen = 3u << 20; /* a 3 MiB label value */
    char *body = malloc(vlen + 256);
    assert_non_null(body);
    size_t n = (size_t)sprintf(body, "small 1\nhuge{v=\"");
    for (size_t i = 0; i < vlen; i++)
        body[n + i] = (char)('a' + i % 26);
    n += vlen;
    n += (size_t)sprintf(body + n, "\"} 2 3\nafter 4\n");
    assert_int_equal(textparse_parse(p, body, n, &o, &r), 0);
    assert_int_equal(r.nseries, 2);
    assert_int_equal(r.nrejected, 1);
    char want[128];
    snprintf(want, sizeof want, "line 2, col 1: line too long (%zu bytes, limit %u)", vlen + 14,
             1u << 20);
    assert_string_equal(r.errors[0].msg, want);

    o.max_line_bytes = 4u << 20;
    assert_int_equal(textparse_parse(p, body, n, &o, &r), 0);
    assert_int_equal(r.nrejected, 1);
    assert_string_equal(r.errors[0].msg,
                        "line 2, col 9: label value too long (3145728 bytes, limit 4096)");
    o.max_label_value_len = 4u << 20;
    assert_int_equal(textparse_parse(p, body, n, &o, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, 3);
    assert_int_equal(r.series[1].labels[1].value.len, vlen);
    assert_int_equal(r.series[1].samples[0].t, 3);

    /* Label count and name length limits. */
    n = (size_t)sprintf(body, "many{");
    for (int i = 0; i < 64; i++)
        n += (size_t)sprintf(body + n, "l%d=\"v\",", i);
    n += (size_t)sprintf(body + n, "} 1\n");
    assert_int_equal(textparse_parse(p, body, n, NULL, &r), 0);
    assert_int_equal(r.nrejected, 1);
    assert_string_equal(r.errors[0].msg, "line 1, col 500: too many labels (limit 64)");
    o.max_labels_per_series = 65;
    assert_int_equal(textparse_parse(p, body, n, &o, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.series[0].nlabels, 65);
    n = (size_t)sprintf(body, "x{");
    memset(body + n, 'n', 300);
    n += 300;
    n += (size_t)sprintf(body + n, "=\"1\"} 1\n");
    assert_int_equal(textparse_parse(p, body, n, NULL, &r), 0);
    assert_string_equal(r.errors[0].msg,
                        "line 1, col 3: label name too long (300 bytes, limit 256)");
    n = (size_t)sprintf(body, "x");
    memset(body + n, 'n', 5000);
    n += 5000;
    n += (size_t)sprintf(body + n, " 1\n");
    assert_int_equal(textparse_parse(p, body, n, NULL, &r), 0);
    assert_string_equal(r.errors[0].msg,
                        "line 1, col 1: metric name too long (5001 bytes, limit 4096)");
    free(body);
    textparse_destroy(p);
}

static void test_utf8_values(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    const char *body = "m{a=\"caf\xc3\xa9\",b=\"\xe6\x97\xa5\xe6\x9c\xac\",c=\"\xf0\x9f\x98\x80\","
                       "d=\"\xef\xbf\xbf\",e=\"\xf4\x8f\xbf\xbf\",f=\"\\\"\xc3\xa9\\\\\"} 1\n";
    assert_int_equal(parse(p, body, NULL, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_string_equal(label(&r.series[0], "a"), "caf\xc3\xa9");
    assert_string_equal(label(&r.series[0], "c"), "\xf0\x9f\x98\x80");
    assert_string_equal(label(&r.series[0], "f"), "\"\xc3\xa9\\");
    textparse_destroy(p);
}

static void test_dialect_detect(void **state)
{
    (void)state;
    static const struct {
        const char *ct;
        textparse_dialect_t d;
    } c[] = {{"application/openmetrics-text", TEXTPARSE_OPENMETRICS},
             {"application/openmetrics-text; version=1.0.0; charset=utf-8", TEXTPARSE_OPENMETRICS},
             {"  Application/OpenMetrics-Text;version=0.0.1", TEXTPARSE_OPENMETRICS},
             {"text/plain; version=0.0.4", TEXTPARSE_PROM},
             {"application/openmetrics-textx", TEXTPARSE_PROM},
             {"application/openmetrics", TEXTPARSE_PROM},
             {"", TEXTPARSE_PROM}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        assert_int_equal(textparse_dialect_detect(c[i].ct, strlen(c[i].ct)), c[i].d);
    assert_int_equal(textparse_dialect_detect(NULL, 0), TEXTPARSE_PROM);
}

static void test_reuse_keeps_results_valid(void **state)
{
    (void)state;
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    /* Grow every arena in the first parse, then parse a small body. */
    size_t cap = 200000 * 48;
    char *body = malloc(cap);
    assert_non_null(body);
    size_t n = 0;
    for (int i = 0; i < 200000; i++)
        n += (size_t)sprintf(body + n, "m{i=\"%d\",e=\"x\\\\%d\"} %d\n", i, i, i);
    assert_int_equal(textparse_parse(p, body, n, NULL, &r), 0);
    check_invariants(&r);
    assert_int_equal(r.nseries, 200000);
    for (int i = 0; i < 200000; i += 997) {
        char want[32];
        sprintf(want, "x\\%d", i);
        assert_string_equal(label(&r.series[i], "e"), want);
        assert_true(r.series[i].samples[0].v == i);
    }
    assert_int_equal(parse(p, "z{q=\"a\\nb\"} 5\n", NULL, &r), 0);
    assert_int_equal(r.nseries, 1);
    assert_string_equal(label(&r.series[0], "q"), "a\nb");
    free(body);
    textparse_destroy(p);
}

/* ---- round trip property test -------------------------------------------- */

typedef struct {
    char name[24];
    char lname[8][12];
    char lval[8][40];
    int nl;
    double v;
    int64_t t;
    int has_t;
} gen_series_t;

static void gen_name(trng_t *g, char *out, size_t max, int metric)
{
    static const char first[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";
    static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";
    size_t n = 1 + trng_below(g, max - 1);
    for (size_t i = 0; i < n; i++) {
        if (metric && trng_below(g, 8) == 0)
            out[i] = ':';
        else if (i == 0)
            out[i] = first[trng_below(g, sizeof first - 1)];
        else
            out[i] = rest[trng_below(g, sizeof rest - 1)];
    }
    out[n] = 0;
}

static void gen_value_str(trng_t *g, char *out, size_t max)
{
    static const char *const pieces[] = {
        "a", "Z", "0", " ", "\\", "\"",       "\n",           "{",
        "}", ",", "=", "#", "\t", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80"};
    size_t n = 0, k = trng_below(g, 12);
    for (size_t i = 0; i < k; i++) {
        const char *pc = pieces[trng_below(g, sizeof pieces / sizeof pieces[0])];
        size_t l = strlen(pc);
        if (n + l >= max) break;
        memcpy(out + n, pc, l);
        n += l;
    }
    out[n] = 0;
}

static double gen_double(trng_t *g)
{
    switch (trng_below(g, 8)) {
    case 0:
        return (double)(int64_t)(trng_next(g) % 2000001) - 1000000.0;
    case 1:
        return trng_unit(g);
    case 2: {
        static const double sp[] = {0.0, -0.0, 1e308, -4.9e-324, 2.2250738585072014e-308};
        return sp[trng_below(g, 5)];
    }
    case 3:
        return trng_below(g, 2) ? HUGE_VAL : -HUGE_VAL;
    case 4:
        return f64_from_bits(NORMAL_NAN_BITS);
    default: {
        double d;
        do
            d = f64_from_bits(trng_next(g));
        while (isnan(d) || isinf(d));
        return d;
    }
    }
}

static void ws(trng_t *g, char **o)
{
    size_t k = trng_below(g, 4) == 0 ? 1 + trng_below(g, 3) : 0;
    for (size_t i = 0; i < k; i++)
        *(*o)++ = trng_below(g, 2) ? ' ' : '\t';
}

/* Format one series as a text line (randomized blanks) at *o. */
static void format_line(trng_t *g, const gen_series_t *s, int om, char **o)
{
    char *w = *o;
    w += sprintf(w, "%s", s->name);
    if (s->nl || trng_below(g, 4) == 0) {
        ws(g, &w);
        *w++ = '{';
        for (int i = 0; i < s->nl; i++) {
            ws(g, &w);
            w += sprintf(w, "%s", s->lname[i]);
            ws(g, &w);
            *w++ = '=';
            ws(g, &w);
            *w++ = '"';
            for (const char *c = s->lval[i]; *c; c++) {
                if (*c == '\\' || *c == '"') {
                    *w++ = '\\';
                    *w++ = *c;
                } else if (*c == '\n') {
                    *w++ = '\\';
                    *w++ = 'n';
                } else {
                    *w++ = *c;
                }
            }
            *w++ = '"';
            ws(g, &w);
            if (i + 1 < s->nl || trng_below(g, 3) == 0) *w++ = ',';
        }
        ws(g, &w);
        *w++ = '}';
    }
    *w++ = ' ';
    ws(g, &w);
    if (isnan(s->v))
        w += sprintf(w, "NaN");
    else if (isinf(s->v))
        w += sprintf(w, s->v > 0 ? "+Inf" : "-Inf");
    else
        w += sprintf(w, "%.17g", s->v);
    if (s->has_t) {
        *w++ = ' ';
        ws(g, &w);
        if (om) {
            /* Exact decimal seconds. */
            uint64_t a = s->t < 0 ? (uint64_t)0 - (uint64_t)s->t : (uint64_t)s->t;
            w += sprintf(w, "%s%" PRIu64 ".%03u", s->t < 0 ? "-" : "", a / 1000,
                         (unsigned)(a % 1000));
        } else {
            w += sprintf(w, "%" PRId64, s->t);
        }
    }
    if (om && trng_below(g, 5) == 0) w += sprintf(w, " # {trace_id=\"t\"} 1.5");
    ws(g, &w);
    *w++ = '\n';
    *o = w;
}

static int lcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void roundtrip_once(textparse_t *p, trng_t *g, int om, uint64_t seed)
{
    size_t nser = 1 + trng_below(g, 300);
    gen_series_t *gs = calloc(nser, sizeof *gs);
    char *body = malloc(nser * 1024 + 16);
    assert_non_null(gs);
    assert_non_null(body);
    char *w = body;
    for (size_t i = 0; i < nser; i++) {
        gen_series_t *s = &gs[i];
        gen_name(g, s->name, 20, 1);
        s->nl = (int)trng_below(g, 8);
        for (int j = 0; j < s->nl; j++) {
            int dup;
            do {
                gen_name(g, s->lname[j], 10, 0);
                dup = !strcmp(s->lname[j], "__name__");
                for (int k = 0; k < j; k++)
                    dup |= !strcmp(s->lname[j], s->lname[k]);
            } while (dup);
            gen_value_str(g, s->lval[j], sizeof s->lval[j]);
        }
        s->v = gen_double(g);
        s->has_t = (int)trng_below(g, 2);
        if (s->has_t) {
            uint64_t x = trng_next(g);
            s->t = trng_below(g, 2) ? (int64_t)(x >> 1) * (x & 1 ? -1 : 1)
                                    : (int64_t)(x % 4000000000000ULL);
        }
        if (trng_below(g, 10) == 0) w += sprintf(w, "# HELP %s some help\n", s->name);
        format_line(g, s, om, &w);
    }
    if (om) w += sprintf(w, "# EOF\n");
    textparse_options_t o;
    textparse_options_init(&o);
    o.dialect = om ? TEXTPARSE_OPENMETRICS : TEXTPARSE_PROM;
    o.default_ts_ms = 123456;
    textparse_result_t r;
    assert_int_equal(textparse_parse(p, body, (size_t)(w - body), &o, &r), 0);
    check_invariants(&r);
    if (r.nrejected) {
        fprintf(stderr, "seed %" PRIu64 ": %s\n", seed, r.errors[0].msg);
        fail();
    }
    assert_int_equal(r.nseries, nser);
    for (size_t i = 0; i < nser; i++) {
        const gen_series_t *s = &gs[i];
        const tsdb_series_in_t *t = &r.series[i];
        /* Expected labels: the non-empty ones plus __name__, sorted. */
        const char *names[9];
        int ne = 0;
        names[ne++] = "__name__";
        for (int j = 0; j < s->nl; j++)
            if (s->lval[j][0]) names[ne++] = s->lname[j];
        qsort(names, (size_t)ne, sizeof names[0], lcmp);
        assert_int_equal(t->nlabels, ne);
        for (int j = 0; j < ne; j++) {
            assert_true(seq(t->labels[j].name, names[j]));
            const char *want = s->name;
            for (int k = 0; k < s->nl; k++)
                if (!strcmp(s->lname[k], names[j])) want = s->lval[k];
            if (!seq(t->labels[j].value, want)) {
                fprintf(stderr, "seed %" PRIu64 ": series %zu label %s\n", seed, i, names[j]);
                fail();
            }
        }
        uint64_t want_bits = isnan(s->v) ? NORMAL_NAN_BITS : bits(s->v);
        if (bits(t->samples[0].v) != want_bits) {
            fprintf(stderr, "seed %" PRIu64 ": series %zu value %.17g != %.17g\n", seed, i,
                    t->samples[0].v, s->v);
            fail();
        }
        assert_int_equal(t->samples[0].t, s->has_t ? s->t : 123456);
    }
    free(gs);
    free(body);
}

static void test_roundtrip_random(void **state)
{
    (void)state;
    uint64_t seed = test_seed();
    fprintf(stderr,
            "test_roundtrip_random: seed %" PRIu64 " (AUGUR_TEST_SEED=%" PRIu64 " to replay)\n",
            seed, seed);
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    for (int it = 0; it < 200; it++) {
        trng_t g;
        uint64_t s = seed + (uint64_t)it;
        trng_seed(&g, s);
        roundtrip_once(p, &g, it & 1, s);
    }
    textparse_destroy(p);
}

/* The exact fast path for short decimals must agree with strtod bit for bit. */
static void test_float_parse_vs_strtod(void **state)
{
    (void)state;
    uint64_t seed = test_seed();
    fprintf(stderr, "test_float_parse_vs_strtod: seed %" PRIu64 "\n", seed);
    trng_t g;
    trng_seed(&g, seed);
    enum { N = 50000 };
    char(*strs)[64] = malloc((size_t)N * 64);
    char *body = malloc((size_t)N * 72);
    assert_non_null(strs);
    assert_non_null(body);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        char *s = strs[i];
        size_t k = 0;
        if (trng_below(&g, 3) == 0) s[k++] = trng_below(&g, 2) ? '-' : '+';
        size_t nd = 1 + trng_below(&g, 22), dot = trng_below(&g, nd + 2);
        for (size_t j = 0; j < nd; j++) {
            if (j == dot) s[k++] = '.';
            s[k++] = (char)('0' + trng_below(&g, 10));
        }
        if (trng_below(&g, 2)) k += (size_t)sprintf(s + k, "e%d", (int)trng_below(&g, 70) - 35);
        s[k] = 0;
        n += (size_t)sprintf(body + n, "v %s\n", s);
    }
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    assert_int_equal(textparse_parse(p, body, n, NULL, &r), 0);
    assert_int_equal(r.nrejected, 0);
    assert_int_equal(r.nseries, N);
    for (int i = 0; i < N; i++) {
        double want = strtod(strs[i], NULL);
        if (bits(want) != bits(r.series[i].samples[0].v)) {
            fprintf(stderr, "%s: got %.17g want %.17g\n", strs[i], r.series[i].samples[0].v, want);
            fail();
        }
    }
    textparse_destroy(p);
    free(strs);
    free(body);
}

/* ---- fuzz corpus replay (regressions live there as regress-*) ------------ */

static void test_fuzz_corpus_replay(void **state)
{
    (void)state;
    const char *src = getenv("AUGUR_SRC");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/fuzz_textparse", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "no corpus at %s: skipped\n", dir);
        skip();
    }
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    struct dirent *e;
    int nfiles = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char rel[600];
        snprintf(rel, sizeof rel, "fuzz/corpus/fuzz_textparse/%s", e->d_name);
        size_t len;
        char *b = read_file(rel, &len);
        assert_non_null(b);
        /* As fuzz_textparse.c reads them: byte 0 holds the mode bits. */
        for (int dialect = 0; dialect < 2 && len > 0; dialect++) {
            textparse_options_t o;
            textparse_options_init(&o);
            o.dialect = (textparse_dialect_t)dialect;
            if (b[0] & 2) o.flags |= TEXTPARSE_F_DROP_CREATED;
            if (b[0] & 4) o.flags |= TEXTPARSE_F_IGNORE_TIMESTAMPS;
            if (b[0] & 16) {
                o.max_line_bytes = 64;
                o.max_labels_per_series = 4;
                o.max_label_name_len = 8;
                o.max_label_value_len = 16;
                o.max_errors = 2;
                o.max_samples = 8;
            }
            textparse_result_t r;
            int rc = textparse_parse(p, b + 1, len - 1, &o, &r);
            assert_true(rc == 0 || rc == TEXTPARSE_ELIMIT);
            if (rc == 0) check_invariants(&r);
        }
        free(b);
        nfiles++;
    }
    closedir(d);
    assert_true(nfiles > 0);
    textparse_destroy(p);
}

/* ---- throughput (printed, not asserted) ---------------------------------- */

static void test_throughput_node_exporter(void **state)
{
    (void)state;
    size_t len;
    char *body = read_file("tests/data/text/node_exporter.txt", &len);
    assert_non_null(body);
    textparse_t *p;
    assert_int_equal(textparse_create(&p), 0);
    textparse_result_t r;
    const char *it_env = getenv("AUGUR_TEXTPARSE_BENCH_ITERS");
    int iters = it_env ? atoi(it_env) : 200;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    size_t nser = 0;
    for (int i = 0; i < iters; i++) {
        assert_int_equal(textparse_parse(p, body, len, NULL, &r), 0);
        nser += r.nseries;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double sec = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    fprintf(stderr, "textparse: node_exporter page %zu bytes x %d: %.1f MB/s, %.2f M samples/s\n",
            len, iters, (double)len * iters / sec / 1e6, (double)nser / sec / 1e6);
    textparse_destroy(p);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_exporter_golden),
        cmocka_unit_test(test_openmetrics_golden),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_whitespace_and_label_sets),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_extra_labels),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_malformed_table_prom),
        cmocka_unit_test(test_malformed_table_openmetrics),
        cmocka_unit_test(test_openmetrics_eof),
        cmocka_unit_test(test_error_cap_and_limits),
        cmocka_unit_test(test_huge_lines),
        cmocka_unit_test(test_utf8_values),
        cmocka_unit_test(test_dialect_detect),
        cmocka_unit_test(test_reuse_keeps_results_valid),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_float_parse_vs_strtod),
        cmocka_unit_test(test_fuzz_corpus_replay),
        cmocka_unit_test(test_throughput_node_exporter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
