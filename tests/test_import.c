/*
 * test_import.c — the importers: golden tests on the real Backblaze files in
 * ../shared/data/smart (skipped when absent), the smartctl JSON and
 * nvidia-smi fixtures in tests/data/, malformed input, the JSON parser, the
 * remote-write encoder (round trip through rw_decode_v1), time parsing, and
 * the `augur import` binary (progress/report/exit status, file:line errors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ingest/backblaze.h"
#include "ingest/failures.h"
#include "ingest/json.h"
#include "ingest/nvsmi.h"
#include "ingest/rw.h"
#include "ingest/rw_encode.h"
#include "ingest/smartctl.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

#define SMART_DIR "/work/shared/data/smart"
#define TOSHIBA SMART_DIR "/TOSHIBA MQ01ABF050_last_10_day_all_q_raw.csv"
#define ST8000 SMART_DIR "/ST8000DM002_last_day_all_q_raw.csv"

static const char *src_dir(void)
{
    const char *s = getenv("AUGUR_SRC");
    return s && *s ? s : ".";
}

/* ---- fixture: a store and a sink into it ---------------------------------- */

typedef struct {
    char dir[256];
    tsdb_t *db;
    ingest_sink_t sink;
    ingest_totals_t tot;
    char errs[8192]; /* "line: msg\n" of every error */
    size_t nerr;
} fx_t;

/* Backblaze tests run twice: through tsdb_append (labels per sample) and
 * through the store's id operations (tsdb_series_id + tsdb_append_sids), the
 * path `augur import backblaze --store` takes. */
static int bb_sids;

static int sids_on(void **state)
{
    (void)state;
    bb_sids = 1;
    return 0;
}

static int sids_off(void **state)
{
    (void)state;
    bb_sids = 0;
    return 0;
}

static int fx_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    fx_t *f = ctx;
    return tsdb_append(f->db, s, n, NULL, res);
}

static void fx_err(void *ctx, uint64_t line, const char *msg)
{
    fx_t *f = ctx;
    size_t l = strlen(f->errs);
    snprintf(f->errs + l, sizeof f->errs - l, "%" PRIu64 ": %s\n", line, msg);
    f->nerr++;
}

static void fx_open(fx_t *f)
{
    memset(f, 0, sizeof *f);
    assert_non_null(tu_mkdtemp(f->dir, sizeof f->dir));
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.flush_interval_ms = -1;
    o.ooo_window_ms = INT64_C(400) * 86400000;
    assert_int_equal(tsdb_open(f->dir, &o, &f->db), 0);
    f->sink.append = fx_append;
    f->sink.ctx = f;
    if (bb_sids) ingest_store_sink(f->db, &f->sink); /* what `augur import --store` uses */
}

static void fx_close(fx_t *f)
{
    assert_int_equal(tsdb_close(f->db), 0);
    tu_rmrf(f->dir);
}

/* Feed a file line by line (a small read buffer, so lines cross chunks). */
typedef int (*line_fn)(void *p, const char *s, size_t n);

static void feed_file(const char *path, line_fn fn, void *p)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0) {
        if (line[n - 1] == '\n') n--;
        assert_int_equal(fn(p, line, (size_t)n), 0);
    }
    free(line);
    fclose(fp);
}

static void feed_text(const char *text, line_fn fn, void *p)
{
    const char *s = text;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        assert_int_equal(fn(p, s, n), 0);
        s += n + (e ? 1 : 0);
    }
}

static int bb_line(void *p, const char *s, size_t n)
{
    return backblaze_line(p, s, n);
}

static int nv_line(void *p, const char *s, size_t n)
{
    return nvsmi_line(p, s, n);
}

/* The single value of metric{labels...} at time t (NAN if absent); label
 * pairs as "name", "value", ..., NULL. Also counts the matching series. */
static double value_at(tsdb_t *db, int64_t t, size_t *nseries, const char *metric, ...)
{
    tsdb_matcher_t m[12];
    size_t nm = 0;
    m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "__name__", metric};
    va_list ap;
    va_start(ap, metric);
    const char *n;
    while ((n = va_arg(ap, const char *)) != NULL && nm < 12) {
        const char *v = va_arg(ap, const char *);
        m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, n, v};
    }
    va_end(ap);
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_sids_t sids = {0};
    assert_int_equal(tsdb_select(r, m, nm, t, t, &sids), 0);
    double v = NAN;
    for (size_t i = 0; i < sids.n; i++) {
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, sids.ids[i], t, t, &it), 0);
        const tsdb_sample_t *s;
        size_t ns;
        while (tsdb_iter_next(it, &s, &ns) > 0)
            for (size_t k = 0; k < ns; k++)
                if (s[k].t == t) v = s[k].v;
        tsdb_iter_close(it);
    }
    if (nseries) *nseries = sids.n;
    tsdb_sids_free(&sids);
    tsdb_reader_close(r);
    return v;
}

static int64_t day(const char *d)
{
    int64_t ms;
    assert_int_equal(ingest_date_parse(d, strlen(d), &ms), 0);
    return ms;
}

static backblaze_t *bb_new(fx_t *f, const char *instance)
{
    backblaze_options_t o;
    backblaze_options_init(&o);
    o.sink = &f->sink;
    if (bb_sids) o.sid_ops = &ingest_store_sid_ops;
    o.totals = &f->tot;
    o.on_error = fx_err;
    o.err_ctx = f;
    o.instance = instance;
    o.batch_samples = 5000; /* several flushes per file */
    backblaze_t *p;
    assert_int_equal(backblaze_create(&o, &p), 0);
    return p;
}

static int have_smart(void)
{
    return access(TOSHIBA, R_OK) == 0 && access(ST8000, R_OK) == 0;
}

static size_t count_events(tsdb_t *db, const char *instance)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    failure_filter_t f = {"disk", instance, NULL, INT64_MIN, INT64_MAX};
    failure_list_t l;
    assert_int_equal(failures_list(r, &f, &l), 0);
    size_t n = l.n;
    failure_list_free(&l);
    tsdb_reader_close(r);
    return n;
}

/* ---- Backblaze: real files --------------------------------------------------- */

static void test_bb_toshiba(void **state)
{
    (void)state;
    if (!have_smart()) skip();
    fx_t f;
    fx_open(&f);
    backblaze_t *p = bb_new(&f, NULL);
    backblaze_file_begin(p);
    feed_file(TOSHIBA, bb_line, p);
    assert_int_equal(backblaze_finish(p), 0);
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    assert_int_equal(st.rows, 5335);
    assert_int_equal(st.rows_skipped, 0);
    assert_int_equal(st.rows_failed, 776);   /* README: 776 rows with failure = 1 */
    assert_int_equal(st.failure_events, 79); /* 79 drives with any 1 */
    assert_int_equal(f.nerr, 0);
    /* 14 SMART columns, every cell filled in this file. */
    assert_int_equal(st.values, 5335 * 14);
    assert_int_equal(f.tot.conflict + f.tot.too_old + f.tot.invalid, 0);
    assert_int_equal(f.tot.stored, f.tot.samples);
    /* Cells: 17OYTGI0T, 2019-12-22: smart_9_raw 18550, smart_194_raw 41. */
    size_t ns;
    assert_true(value_at(f.db, day("2019-12-22"), &ns, "smartctl_device_attribute", "device",
                         "17OYTGI0T", "attribute_id", "9", "attribute_value_type", "raw",
                         NULL) == 18550.0);
    assert_int_equal(ns, 1);
    assert_true(value_at(f.db, day("2019-12-22"), NULL, "smartctl_device_attribute", "device",
                         "17OYTGI0T", "attribute_name", "Temperature_Celsius", NULL) == 41.0);
    assert_true(value_at(f.db, day("2019-12-22"), NULL, "smartctl_device_temperature", "device",
                         "17OYTGI0T", "temperature_type", "current", NULL) == 41.0);
    assert_true(value_at(f.db, day("2019-12-31"), NULL, "smartctl_device_power_on_seconds",
                         "device", "17OYTGI0T", NULL) == 18772.0 * 3600);
    assert_true(value_at(f.db, day("2019-12-31"), NULL, "smartctl_device", "device", "17OYTGI0T",
                         "model_name", "TOSHIBA MQ01ABF050", "instance", "17OYTGI0T", NULL) == 1.0);
    assert_true(value_at(f.db, day("2019-12-31"), NULL, "smartctl_device_capacity_bytes", "device",
                         "17OYTGI0T", NULL) == 500107862016.0);
    /* Failure events: one per failed drive, at its last failure=1 row.
     * 57QEWPXKT failed on 2019-04-05 (then one more 0 row); 66GHS5MMS on
     * 2019-01-05. */
    assert_int_equal(count_events(f.db, NULL), 79);
    assert_true(value_at(f.db, day("2019-04-05"), &ns, "augur_failure_event", "serial", "57QEWPXKT",
                         "kind", "disk", NULL) == 1.0);
    assert_int_equal(ns, 1);
    assert_true(value_at(f.db, day("2019-01-05"), NULL, "augur_failure_event", "serial",
                         "66GHS5MMS", NULL) == 1.0);
    /* A re-import stores nothing new: everything is already present. */
    ingest_totals_t before = f.tot;
    backblaze_destroy(p);
    p = bb_new(&f, NULL);
    backblaze_file_begin(p);
    feed_file(TOSHIBA, bb_line, p);
    assert_int_equal(backblaze_finish(p), 0);
    assert_int_equal(f.tot.stored, before.stored);
    assert_int_equal(f.tot.duplicate - before.duplicate, f.tot.samples - before.samples);
    assert_int_equal(count_events(f.db, NULL), 79);
    backblaze_destroy(p);
    fx_close(&f);
}

static void test_bb_st8000(void **state)
{
    (void)state;
    if (!have_smart()) skip();
    fx_t f;
    fx_open(&f);
    backblaze_t *p = bb_new(&f, NULL);
    backblaze_file_begin(p);
    feed_file(ST8000, bb_line, p);
    assert_int_equal(backblaze_finish(p), 0);
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    assert_int_equal(st.rows, 9936);
    assert_int_equal(st.rows_failed, 122);
    assert_int_equal(st.failure_events, 122);
    assert_int_equal(st.values, 9936 * 21);
    assert_int_equal(f.tot.stored, f.tot.samples);
    /* First data row: ZA100GA0 2019-12-31, smart_241_raw 64547444200,
     * smart_1_raw 47884664, smart_5_raw 0. */
    int64_t t = day("2019-12-31");
    assert_true(value_at(f.db, t, NULL, "smartctl_device_attribute", "device", "ZA100GA0",
                         "attribute_id", "241", NULL) == 64547444200.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_attribute", "device", "ZA100GA0",
                         "attribute_name", "Raw_Read_Error_Rate", NULL) == 47884664.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_attribute", "device", "ZA100GA0",
                         "attribute_name", "Reallocated_Sector_Ct", NULL) == 0.0);
    /* Failure events: 122, spread over 2019, the first on 2019-01-02. */
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(f.db, &r), 0);
    failure_filter_t flt = {"disk", NULL, NULL, INT64_MIN, INT64_MAX};
    failure_list_t l;
    assert_int_equal(failures_list(r, &flt, &l), 0);
    assert_int_equal(l.n, 122);
    assert_true(l.v[0].t_ms == day("2019-01-02"));
    assert_string_equal(l.v[0].reason, "backblaze failure=1");
    assert_string_equal(l.v[0].serial, l.v[0].device);
    failure_list_free(&l);
    flt.since = day("2019-12-01");
    assert_int_equal(failures_list(r, &flt, &l), 0);
    assert_true(l.n > 0 && l.n < 122);
    for (size_t i = 0; i < l.n; i++)
        assert_true(l.v[i].t_ms >= flt.since);
    failure_list_free(&l);
    tsdb_reader_close(r);
    backblaze_destroy(p);
    fx_close(&f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every series of a store as sorted text lines "labels: t=v ...". */
static void dump_store(tsdb_t *db, tbuf_t *out)
{
    tsdb_reader_t *r;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m = {TSDB_MATCH_RE, "__name__", ".+"};
    tsdb_sids_t sids = {0};
    assert_int_equal(tsdb_select(r, &m, 1, INT64_MIN, INT64_MAX, &sids), 0);
    char **lines = calloc(sids.n + 1, sizeof *lines);
    assert_non_null(lines);
    for (size_t i = 0; i < sids.n; i++) {
        tbuf_t l = {0};
        const tsdb_label_t *lab;
        size_t nl;
        assert_int_equal(tsdb_series_labels(r, sids.ids[i], &lab, &nl), 0);
        for (size_t k = 0; k < nl; k++) {
            tbuf_put(&l, lab[k].name.ptr, lab[k].name.len);
            tbuf_put(&l, "=", 1);
            tbuf_put(&l, lab[k].value.ptr, lab[k].value.len);
            tbuf_put(&l, ",", 1);
        }
        tsdb_iter_t *it;
        assert_int_equal(tsdb_iter_open(r, sids.ids[i], INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *sm;
        size_t ns;
        while (tsdb_iter_next(it, &sm, &ns) > 0)
            for (size_t k = 0; k < ns; k++) {
                char b[64];
                int n = snprintf(b, sizeof b, " %" PRId64 "=%.17g", sm[k].t, sm[k].v);
                tbuf_put(&l, b, (size_t)n);
            }
        tsdb_iter_close(it);
        tbuf_put(&l, "", 1);
        lines[i] = (char *)l.p;
    }
    qsort(lines, sids.n, sizeof *lines, cmp_str);
    out->len = 0;
    for (size_t i = 0; i < sids.n; i++) {
        tbuf_put(out, lines[i], strlen(lines[i]));
        tbuf_put(out, "\n", 1);
        free(lines[i]);
    }
    free(lines);
    tsdb_sids_free(&sids);
    tsdb_reader_close(r);
}

/* Both paths store exactly the same series and samples, and count the same
 * outcomes: a first import, a re-import (all duplicates), one with a changed
 * value (a conflict), after a flush and a reopen. */
static void test_bb_paths_agree(void **state)
{
    (void)state;
    if (!have_smart()) skip();
    fx_t f[2];
    tbuf_t d[2] = {{0}, {0}};
    for (int k = 0; k < 2; k++) {
        bb_sids = k;
        fx_open(&f[k]);
        for (int round = 0; round < 2; round++) {
            backblaze_t *p = bb_new(&f[k], NULL);
            backblaze_file_begin(p);
            feed_file(TOSHIBA, bb_line, p);
            if (round == 1) {
                /* a drive seen before, power-on hours changed: two conflicts
                 * (the attribute and smartctl_device_power_on_seconds) */
                backblaze_file_begin(p);
                feed_text("date,serial_number,model,capacity_bytes,failure,smart_9_raw\n"
                          "2019-12-22,17OYTGI0T,TOSHIBA MQ01ABF050,500107862016,0,18551\n",
                          bb_line, p);
            }
            assert_int_equal(backblaze_finish(p), 0);
            backblaze_destroy(p);
            if (round == 0) assert_int_equal(tsdb_flush(f[k].db), 0);
        }
        assert_int_equal(tsdb_close(f[k].db), 0);
        tsdb_options_t o;
        tsdb_options_init(&o);
        o.flush_interval_ms = -1;
        assert_int_equal(tsdb_open(f[k].dir, &o, &f[k].db), 0);
        dump_store(f[k].db, &d[k]);
    }
    bb_sids = 0;
    assert_true(d[0].len > 100000);
    assert_int_equal(d[0].len, d[1].len);
    assert_memory_equal(d[0].p, d[1].p, d[0].len);
    assert_int_equal(f[0].tot.samples, f[1].tot.samples);
    assert_int_equal(f[0].tot.stored, f[1].tot.stored);
    assert_int_equal(f[0].tot.duplicate, f[1].tot.duplicate);
    assert_int_equal(f[0].tot.conflict, 2);
    assert_int_equal(f[1].tot.conflict, 2);
    assert_int_equal(f[0].tot.series_created, f[1].tot.series_created);
    assert_int_equal(f[1].tot.stored + f[1].tot.duplicate + 2, f[1].tot.samples);
    for (int k = 0; k < 2; k++) {
        tbuf_free(&d[k]);
        fx_close(&f[k]);
    }
}

/* ---- Backblaze: layouts and malformed input ----------------------------------- */

/* The drive table under changing row orders (the series-id path guesses
 * each row's next drive from the previous file, and its table grows past
 * 4096 entries mid-file): 5000 drives in order, reversed, then interleaved
 * with some drives gone, new ones and one moved to another pod; the store
 * must hold exactly what the label path stores. */
static void bb_order_day(tbuf_t *t, int d, int ndrives)
{
    char buf[256];
    t->len = 0;
    const char *h = "date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,"
                    "vault_id,pod_id,pod_slot_num,smart_9_raw,smart_194_raw,smart_5_raw\n";
    tbuf_put(t, h, strlen(h));
    for (int r = 0; r < ndrives; r++) {
        int k = d == 0 ? r : d == 1 ? ndrives - 1 - r : (r % 2 ? r / 2 : ndrives - 1 - r / 2);
        if (d == 2 && k % 97 == 3) continue;           /* gone */
        int pod = d == 2 && k == 1234 ? 9 : k % 7;     /* one moved */
        int n = snprintf(buf, sizeof buf, "2024-03-%02d,S%05d,M%d,1000,0,dc1,1,%d,%d,%d,%d,%d,%d\n",
                         d + 1, k, k % 3, k % 5, pod, k % 60, 1000 + k + d * 24, 30 + k % 9, k % 13);
        tbuf_put(t, buf, (size_t)n);
        if (d == 2 && k % 101 == 0) { /* new drives */
            n = snprintf(buf, sizeof buf, "2024-03-03,N%05d,M1,1000,0,dc1,1,1,1,1,%d,31,0\n", k, k);
            tbuf_put(t, buf, (size_t)n);
        }
    }
    tbuf_put(t, "", 1); /* NUL for feed_text */
    t->len--;
}

static void test_bb_drive_order(void **state)
{
    (void)state;
    enum { NDRIVES = 5000 };
    fx_t f[2];
    tbuf_t d[2] = {{0}, {0}}, day = {0};
    for (int k = 0; k < 2; k++) {
        bb_sids = k;
        fx_open(&f[k]);
        backblaze_t *p = bb_new(&f[k], NULL);
        for (int dd = 0; dd < 3; dd++) {
            bb_order_day(&day, dd, NDRIVES);
            backblaze_file_begin(p);
            feed_text((const char *)day.p, bb_line, p);
        }
        assert_int_equal(backblaze_finish(p), 0);
        backblaze_destroy(p);
        dump_store(f[k].db, &d[k]);
    }
    bb_sids = 0;
    assert_true(d[0].len > 100000);
    assert_int_equal(d[0].len, d[1].len);
    assert_memory_equal(d[0].p, d[1].p, d[0].len);
    assert_int_equal(f[0].tot.series_created, f[1].tot.series_created);
    assert_int_equal(f[1].tot.samples, f[1].tot.stored);
    assert_int_equal(f[0].tot.stored, f[1].tot.stored);
    /* 7 series per drive (3 attributes, device, capacity, temperature,
     * power-on), the moved drive's again, the new drives' */
    size_t nnew = 0, ngone = 0;
    for (int k = 0; k < NDRIVES; k++) {
        nnew += k % 101 == 0 && k % 97 != 3;
        ngone += k % 97 == 3;
    }
    assert_int_equal(f[1].tot.series_created, 7 * (NDRIVES + 1 + nnew));
    assert_int_equal(f[1].tot.samples, 7 * (3 * NDRIVES - ngone + nnew));
    for (int k = 0; k < 2; k++) fx_close(&f[k]);
    tbuf_free(&day);
    for (int k = 0; k < 2; k++) tbuf_free(&d[k]);
}

static void test_bb_newer_layout(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f);
    backblaze_t *p = bb_new(&f, "unused-here");
    /* A 2024-style header (location columns, normalized + raw, a blank),
     * then a second file with an older layout in another column order. */
    tbuf_t h = {0}, row = {0};
    const char *hs = "date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,"
                     "vault_id,pod_id,pod_slot_num,is_legacy_format";
    tbuf_put(&h, hs, strlen(hs));
    const char *r0 = "2024-01-01,SER1,ST4000DM000,4000787030016,0,sac0,1,1047,12,33,0";
    tbuf_put(&row, r0, strlen(r0));
    /* 60 SMART ids x 2 = 120 SMART columns: 131 columns. */
    for (unsigned id = 1; id <= 60; id++) {
        char c[64];
        int n = snprintf(c, sizeof c, ",smart_%u_normalized,smart_%u_raw", id, id);
        tbuf_put(&h, c, (size_t)n);
        if (id == 5)
            n = snprintf(c, sizeof c, ",100,8");
        else if (id == 7)
            n = snprintf(c, sizeof c, ",,"); /* blank: missing */
        else
            n = snprintf(c, sizeof c, ",%u,%u.0", 100 + id, id * 10);
        tbuf_put(&row, c, (size_t)n);
    }
    tbuf_put(&h, "", 1);
    tbuf_put(&row, "", 1);
    backblaze_file_begin(p);
    assert_int_equal(backblaze_line(p, (const char *)h.p, strlen((const char *)h.p)), 0);
    assert_int_equal(backblaze_line(p, (const char *)row.p, strlen((const char *)row.p)), 0);
    backblaze_file_begin(p);
    feed_text("serial_number,date,failure,model,smart_5_raw,smart_197_raw\r\n"
              "SER2,2024-01-02,1,WDC,3,\r\n",
              bb_line, p);
    assert_int_equal(backblaze_finish(p), 0);
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    assert_int_equal(st.rows, 2);
    assert_int_equal(st.rows_skipped, 0);
    assert_int_equal(st.values, 59 * 2 + 1);
    assert_int_equal(st.blanks, 2 + 1);
    int64_t t = day("2024-01-01");
    size_t ns;
    assert_true(value_at(f.db, t, &ns, "smartctl_device_attribute", "instance", "sac0/1047/12",
                         "pod", "sac0/1047", "device", "SER1", "attribute_id", "5",
                         "attribute_value_type", "raw", NULL) == 8.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_attribute", "device", "SER1",
                         "attribute_id", "5", "attribute_value_type", "value", NULL) == 100.0);
    assert_true(isnan(value_at(f.db, t, &ns, "smartctl_device_attribute", "device", "SER1",
                               "attribute_id", "7", NULL)));
    assert_int_equal(ns, 0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device", "device", "SER1", "slot", "33", NULL) ==
                1.0);
    /* No location columns: the configured instance. */
    assert_true(value_at(f.db, day("2024-01-02"), NULL, "smartctl_device_attribute", "instance",
                         "unused-here", "device", "SER2", "attribute_name", "Reallocated_Sector_Ct",
                         NULL) == 3.0);
    assert_int_equal(count_events(f.db, "unused-here"), 1);
    tbuf_free(&h);
    tbuf_free(&row);
    backblaze_destroy(p);
    fx_close(&f);
}

static void test_bb_malformed(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f);
    backblaze_t *p = bb_new(&f, NULL);
    backblaze_file_begin(p);
    feed_text("date,serial_number,model,capacity_bytes,failure,smart_5_raw,smart_9_raw\n"
              "2019-01-01,A,M,100,0,1.0,10.0\n"       /* 2: good */
              "2019-01-01,B,M,100,0,1.0\n"            /* 3: too few fields */
              "2019-01-01,C,M,100,0,1.0,10.0,9\n"     /* 4: too many */
              "2019-01-01,D,M,100,0,x,10.0\n"         /* 5: not a number */
              "2019-13-01,E,M,100,0,1.0,10.0\n"       /* 6: bad date */
              "2019-01-01,F,M,100,2,1.0,10.0\n"       /* 7: failure not 0/1 */
              "01/01/2019,G,M,100,0,1.0,10.0\n"       /* 8: bad date */
              "\n"                                    /* 9: blank: ignored */
              "2019-01-01,\"H,quoted\",M,100,0,1,2\n" /* 10: good, quoted serial */
              "2019-01-01,I,M,100,0,\"3\n"            /* 11: unterminated quote */
              "2019-01-01,,M,100,0,1,2\n",            /* 12: empty serial */
              bb_line, p);
    assert_int_equal(backblaze_finish(p), 0);
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    assert_int_equal(st.rows, 2);
    assert_int_equal(st.rows_skipped, 8);
    assert_int_equal(f.nerr, 8);
    const char *want[] = {"3: 6 fields, the header has 7",
                          "4: 8 fields",
                          "5: column 6 (smart_5_raw): \"x\" is not a number",
                          "6: bad date \"2019-13-01\"",
                          "7: failure \"2\" is not 0 or 1",
                          "8: bad date",
                          "11: unterminated quote",
                          "12: empty serial_number"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(f.errs, want[i])) fprintf(stderr, "missing '%s' in:\n%s", want[i], f.errs);
        assert_non_null(strstr(f.errs, want[i]));
    }
    /* Nothing of a refused row is stored: exactly the 2 good rows' samples
     * (2 attributes + device + capacity + power-on seconds each). */
    assert_int_equal(f.tot.samples, 2 * 5);
    assert_int_equal(f.tot.stored, 2 * 5);
    size_t ns;
    value_at(f.db, day("2019-01-01"), &ns, "smartctl_device", NULL);
    assert_int_equal(ns, 2);
    assert_true(value_at(f.db, day("2019-01-01"), NULL, "smartctl_device", "device", "H,quoted",
                         NULL) == 1.0);
    backblaze_destroy(p);

    /* A header without date/serial_number is refused. */
    f.nerr = 0;
    f.errs[0] = 0;
    p = bb_new(&f, NULL);
    backblaze_file_begin(p);
    assert_int_equal(backblaze_line(p, "a,b,c", 5), TSDB_EINVAL);
    assert_non_null(strstr(f.errs, "1: header: no date column"));
    backblaze_destroy(p);
    fx_close(&f);
}

/* ---- Backblaze: the one-pass row parser against the general one ------------- */

/* Everything a parse produces, in order: each sample the sink receives
 * (labels, time, value), each error line, the stats at the end. */
typedef struct {
    tbuf_t out;
} rec_t;

static int rec_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    rec_t *r = ctx;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t a = 0; a < s[i].nlabels; a++) {
            tbuf_put(&r->out, s[i].labels[a].name.ptr, s[i].labels[a].name.len);
            tbuf_put(&r->out, "=", 1);
            tbuf_put(&r->out, s[i].labels[a].value.ptr, s[i].labels[a].value.len);
            tbuf_put(&r->out, ",", 1);
        }
        for (size_t k = 0; k < s[i].nsamples; k++) {
            char b[64];
            int m = snprintf(b, sizeof b, " %" PRId64 "=%.17g\n", s[i].samples[k].t,
                             s[i].samples[k].v);
            tbuf_put(&r->out, b, (size_t)m);
        }
    }
    res->stored = n;
    return 0;
}

static void rec_err(void *ctx, uint64_t line, const char *msg)
{
    rec_t *r = ctx;
    char b[32];
    int m = snprintf(b, sizeof b, "error %" PRIu64 ": ", line);
    tbuf_put(&r->out, b, (size_t)m);
    tbuf_put(&r->out, msg, strlen(msg));
    tbuf_put(&r->out, "\n", 1);
}

/* Parse files[0..nf) (NUL-terminated texts, each one file) with the general
 * path or not; the record in r. */
static void rec_parse(rec_t *r, const char *const *files, size_t nf, int general)
{
    ingest_sink_t sink = {rec_append, r};
    backblaze_options_t o;
    backblaze_options_init(&o);
    o.sink = &sink;
    o.on_error = rec_err;
    o.err_ctx = r;
    o.batch_samples = 777;
    o.general_parse = general;
    backblaze_t *p;
    assert_int_equal(backblaze_create(&o, &p), 0);
    for (size_t i = 0; i < nf; i++) {
        backblaze_file_begin(p);
        const char *s = files[i];
        while (*s) {
            const char *e = strchr(s, '\n');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            int rc = backblaze_line(p, s, n);
            assert_true(rc == 0 || rc == TSDB_EINVAL); /* EINVAL: a refused header */
            s += n + (e ? 1 : 0);
        }
    }
    assert_int_equal(backblaze_finish(p), 0);
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    char b[256];
    int m = snprintf(b, sizeof b,
                     "lines %" PRIu64 " rows %" PRIu64 " skipped %" PRIu64 " failed %" PRIu64
                     " values %" PRIu64 " blanks %" PRIu64 " events %" PRIu64 "\n",
                     st.lines, st.rows, st.rows_skipped, st.rows_failed, st.values, st.blanks,
                     st.failure_events);
    tbuf_put(&r->out, b, (size_t)m);
    backblaze_destroy(p);
}

static void rec_agree(const char *const *files, size_t nf, size_t *out_len)
{
    rec_t r[2] = {{{0}}, {{0}}};
    rec_parse(&r[0], files, nf, 0);
    rec_parse(&r[1], files, nf, 1);
    if (r[0].out.len != r[1].out.len || memcmp(r[0].out.p, r[1].out.p, r[0].out.len)) {
        size_t i = 0;
        while (i < r[0].out.len && i < r[1].out.len && r[0].out.p[i] == r[1].out.p[i])
            i++;
        size_t a = i > 200 ? i - 200 : 0;
        fprintf(stderr, "fast and general parses differ at byte %zu:\nfast: %.*s\ngeneral: %.*s\n",
                i, (int)((r[0].out.len > a + 400 ? 400 : r[0].out.len - a)),
                (const char *)r[0].out.p + a, (int)((r[1].out.len > a + 400 ? 400 : r[1].out.len - a)),
                (const char *)r[1].out.p + a);
        fail();
    }
    if (out_len) *out_len = r[0].out.len;
    tbuf_free(&r[0].out);
    tbuf_free(&r[1].out);
}

static char *slurp_path(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    tbuf_t b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        tbuf_put(&b, buf, n);
    fclose(fp);
    tbuf_put(&b, "", 1);
    return (char *)b.p;
}

/* Rows of a recent layout with random damage: each row of a clean file is
 * copied with up to three edits (a byte replaced by one of ",\".-x0 \r+e",
 * a byte dropped, a cell blanked), so both paths see every kind of bad cell
 * in every kind of column, amid good rows. */
static char *mutated_file(uint64_t *rng, const char *clean)
{
    static const char repl[] = ",\".-x0 \r+e9";
    tbuf_t b = {0};
    const char *s = clean;
    int first = 1;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        char line[8192];
        if (n >= sizeof line - 1) n = sizeof line - 2;
        memcpy(line, s, n);
        *rng = *rng * 6364136223846793005u + 1442695040888963407u;
        unsigned edits = first ? 0 : (unsigned)(*rng >> 61) % 4; /* header kept */
        for (unsigned k = 0; k < edits && n; k++) {
            *rng = *rng * 6364136223846793005u + 1442695040888963407u;
            size_t at = (size_t)(*rng >> 33) % n;
            switch ((*rng >> 20) % 3) {
            case 0:
                line[at] = repl[(*rng >> 8) % (sizeof repl - 1)];
                break;
            case 1:
                memmove(line + at, line + at + 1, n - at - 1);
                n--;
                break;
            default: { /* blank the cell around at */
                size_t a = at, z = at;
                while (a && line[a - 1] != ',')
                    a--;
                while (z < n && line[z] != ',')
                    z++;
                memmove(line + a, line + z, n - z);
                n -= z - a;
            }
            }
        }
        tbuf_put(&b, line, n);
        tbuf_put(&b, "\n", 1);
        first = 0;
        s += (e ? (size_t)(e - s) + 1 : strlen(s));
    }
    tbuf_put(&b, "", 1);
    return (char *)b.p;
}

static void test_bb_fast_general_agree(void **state)
{
    (void)state;
    /* the malformed and layout cases of the tests above */
    const char *small[] = {
        "date,serial_number,model,capacity_bytes,failure,smart_5_raw,smart_9_raw\n"
        "2019-01-01,A,M,100,0,1.0,10.0\n2019-01-01,B,M,100,0,1.0\n"
        "2019-01-01,C,M,100,0,1.0,10.0,9\n2019-01-01,D,M,100,0,x,10.0\n"
        "2019-13-01,E,M,100,0,1.0,10.0\n2019-01-01,F,M,100,2,1.0,10.0\n"
        "01/01/2019,G,M,100,0,1.0,10.0\n\n2019-01-01,\"H,quoted\",M,100,0,1,2\n"
        "2019-01-01,I,M,100,0,\"3\n2019-01-01,,M,100,0,1,2\n"
        "2019-01-01,J,M,-1,1,-0,1e3\n2019-01-01,K,M,,,,\n2019-01-0,L,M,1,0,1,2\n",
        "serial_number,date,failure,model,smart_5_raw,smart_197_raw\r\nSER2,2024-01-02,1,WDC,3,\r\n",
        "date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,vault_id,pod_id,"
        "pod_slot_num,is_legacy_format,smart_1_normalized,smart_1_raw,smart_194_raw,smart_9_raw\n"
        "2024-01-01,S1,ST4000DM000,4000787030016,0,sac0,1,1047,12,33,0,100,8,31,1000\n"
        "2024-01-01,S2,ST4000DM000,4000787030016,0,,,,,,0,100,,31,1001\n"
        "2024-01-01,S3,ST4000DM000,4000787030016,0,sac0,1,1047,12,33,0,100,8,31\n",
        "a,b,c\n",
    };
    size_t len;
    rec_agree(small, sizeof small / sizeof small[0], &len);
    assert_true(len > 1000);
    /* the real files, whole, then with random damage */
    if (!have_smart()) return;
    char *tosh = slurp_path(TOSHIBA), *st8 = slurp_path(ST8000);
    const char *real[] = {tosh, st8};
    rec_agree(real, 2, &len);
    assert_true(len > 10000000);
    uint64_t rng = 42;
    for (int round = 0; round < 3; round++) {
        char *m1 = mutated_file(&rng, tosh), *m2 = mutated_file(&rng, st8);
        const char *mut[] = {m1, m2};
        rec_agree(mut, 2, NULL);
        free(m1);
        free(m2);
    }
    free(tosh);
    free(st8);
}

/* ---- smartctl JSON ------------------------------------------------------------ */

static int slurp(const char *rel, tbuf_t *b)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", src_dir(), rel);
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    char buf[65536];
    size_t n;
    b->len = 0;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        tbuf_put(b, buf, n);
    fclose(fp);
    return 0;
}

static smartctl_t *sm_new(fx_t *f, int64_t def_t)
{
    smartctl_options_t o;
    smartctl_options_init(&o);
    o.instance = "host1";
    o.default_time_ms = def_t;
    o.sink = &f->sink;
    o.totals = &f->tot;
    o.on_error = fx_err;
    o.err_ctx = f;
    smartctl_t *p;
    assert_int_equal(smartctl_create(&o, &p), 0);
    return p;
}

static void test_smartctl(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f);
    smartctl_t *p = sm_new(&f, INT64_MIN);
    tbuf_t b = {0};
    assert_int_equal(slurp("tests/data/smartctl/ata_sda.json", &b), 0);
    assert_int_equal(smartctl_document(p, (const char *)b.p, b.len), 0);
    assert_int_equal(slurp("tests/data/smartctl/nvme0.json", &b), 0);
    assert_int_equal(smartctl_document(p, (const char *)b.p, b.len), 0);
    assert_int_equal(slurp("tests/data/smartctl/ata_failing_sdb.json", &b), 0);
    assert_int_equal(smartctl_document(p, (const char *)b.p, b.len), 0);
    int64_t t = INT64_C(1709294400000);
    size_t ns;
    assert_true(value_at(f.db, t, &ns, "smartctl_device_attribute", "instance", "host1", "device",
                         "sda", "attribute_id", "5", "attribute_name", "Reallocated_Sector_Ct",
                         "attribute_value_type", "raw", NULL) == 8.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_attribute", "device", "sda",
                         "attribute_id", "1", "attribute_value_type", "thresh", NULL) == 44.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_attribute", "device", "sda",
                         "attribute_id", "194", "attribute_value_type", "raw", NULL) == 36.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device", "device", "sda", "serial_number",
                         "ZCT0ABCD", "model_family", "Seagate BarraCuda 3.5", "interface", "sat",
                         "protocol", "ATA", NULL) == 1.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_smart_status", "device", "sda", NULL) ==
                1.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_temperature", "device", "sda", NULL) ==
                36.0);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_power_on_seconds", "device", "sda",
                         NULL) == 36055.0 * 3600);
    assert_true(value_at(f.db, t, NULL, "smartctl_device_capacity_bytes", "device", "sda", NULL) ==
                8001563222016.0);
    /* NVMe */
    int64_t tn = INT64_C(1709294460000);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device_media_errors", "device", "nvme0", NULL) ==
                2.0);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device_percentage_used", "device", "nvme0",
                         NULL) == 3.0);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device_available_spare_threshold", "device",
                         "nvme0", NULL) == 10.0);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device_num_err_log_entries", "device", "nvme0",
                         NULL) == 15.0);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device_bytes_written", "device", "nvme0",
                         NULL) == 98765432.0 * 512000);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device_temperature", "device", "nvme0", NULL) ==
                41.0);
    assert_true(value_at(f.db, tn, NULL, "smartctl_device", "device", "nvme0", "model_name",
                         "SAMSUNG MZQL21T9HCJR-00A07", NULL) == 1.0);
    /* Failing disk */
    int64_t tf = INT64_C(1709298000000);
    assert_true(value_at(f.db, tf, NULL, "smartctl_device_smart_status", "device", "sdb", NULL) ==
                0.0);
    assert_true(value_at(f.db, tf, NULL, "smartctl_device_smartctl_exit_status", "device", "sdb",
                         NULL) == 24.0);
    assert_true(value_at(f.db, tf, NULL, "smartctl_device_power_on_seconds", "device", "sdb",
                         NULL) == 41234.0 * 3600 + 30 * 60);
    assert_int_equal(f.nerr, 0);
    uint64_t sent = f.tot.samples;

    /* Truncated JSON: refused with its line, nothing sent. */
    assert_int_equal(slurp("tests/data/smartctl/truncated.json", &b), 0);
    assert_int_equal(smartctl_document(p, (const char *)b.p, b.len), 1);
    assert_int_equal(f.nerr, 1);
    assert_non_null(strstr(f.errs, "truncated"));
    assert_int_equal(f.tot.samples, sent);
    /* No time and no default: refused. */
    const char *notime = "{\"device\":{\"name\":\"/dev/sdz\"},\"smart_status\":{\"passed\":true}}";
    assert_int_equal(smartctl_document(p, notime, strlen(notime)), 1);
    assert_non_null(strstr(f.errs, "no local_time"));
    /* Not smartctl output. */
    assert_int_equal(smartctl_document(p, "[1,2]", 5), 1);
    assert_int_equal(smartctl_document(p, "{}", 2), 1);
    /* "/dev/" alone names no device (found by fuzz_json: it made an empty
     * device label) */
    const char *nodev = "{\"device\":{\"name\":\"/dev/\"},\"local_time\":{\"time_t\":1709294460},"
                        "\"smart_status\":{\"passed\":true}}";
    assert_int_equal(smartctl_document(p, nodev, strlen(nodev)), 1);
    assert_non_null(strstr(f.errs, "names no device"));
    assert_int_equal(f.tot.samples, sent);
    smartctl_stats_t st;
    smartctl_stats(p, &st);
    assert_int_equal(st.documents, 3);
    assert_int_equal(st.documents_skipped, 6);
    smartctl_destroy(p);

    /* With a default time the same document is accepted. */
    p = sm_new(&f, INT64_C(1700000000000));
    assert_int_equal(smartctl_document(p, notime, strlen(notime)), 0);
    assert_true(value_at(f.db, INT64_C(1700000000000), NULL, "smartctl_device_smart_status",
                         "device", "sdz", NULL) == 1.0);
    smartctl_destroy(p);
    tbuf_free(&b);
    fx_close(&f);
}

/* ---- nvidia-smi ---------------------------------------------------------------- */

static nvsmi_t *nv_new(fx_t *f)
{
    nvsmi_options_t o;
    nvsmi_options_init(&o);
    o.instance = "gpu-node-7";
    o.sink = &f->sink;
    o.totals = &f->tot;
    o.on_error = fx_err;
    o.err_ctx = f;
    nvsmi_t *p;
    assert_int_equal(nvsmi_create(&o, &p), 0);
    return p;
}

static void test_nvsmi(void **state)
{
    (void)state;
    fx_t f;
    fx_open(&f);
    nvsmi_t *p = nv_new(&f);
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/nvidia-smi/a100_2gpu.csv", src_dir());
    nvsmi_file_begin(p);
    feed_file(path, nv_line, p);
    /* The header again (nvidia-smi -l restarting) is skipped. */
    assert_int_equal(nvsmi_flush(p), 0);
    nvsmi_stats_t st;
    nvsmi_stats(p, &st);
    assert_int_equal(st.rows, 4);
    assert_int_equal(st.rows_skipped, 0);
    assert_int_equal(f.nerr, 0);
    int64_t t0, t1;
    assert_int_equal(nvsmi_time_parse("2024/03/01 12:00:00.000", 23, &t0), 0);
    assert_true(t0 == INT64_C(1709294400000));
    t1 = t0 + 10000;
    size_t ns;
    assert_true(value_at(f.db, t0, &ns, "DCGM_FI_DEV_POWER_USAGE", "gpu", "0", "device", "nvidia0",
                         "UUID", "GPU-5a6b7c8d-1111-2222-3333-444455556666", "modelName",
                         "NVIDIA A100-SXM4-80GB", "Hostname", "gpu-node-7", "instance",
                         "gpu-node-7", "pci_bus_id", "00000000:07:00.0", NULL) == 250.12);
    assert_int_equal(ns, 1);
    assert_true(value_at(f.db, t0, NULL, "DCGM_FI_DEV_GPU_TEMP", "gpu", "1", NULL) == 36.0);
    assert_true(value_at(f.db, t0, NULL, "DCGM_FI_DEV_MEMORY_TEMP", "gpu", "1", NULL) == 47.0);
    assert_true(isnan(value_at(f.db, t1, NULL, "DCGM_FI_DEV_MEMORY_TEMP", "gpu", "1", NULL)));
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_SM_CLOCK", "gpu", "1", NULL) == 1410.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_GPU_UTIL", "gpu", "1", NULL) == 92.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_FB_USED", "gpu", "1", NULL) == 40600.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "gpu", "1", NULL) ==
                15.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "gpu", "1", NULL) == 1.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_RETIRED_SBE", "gpu", "1", NULL) == 1.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_RETIRED_DBE", "gpu", "1", NULL) == 1.0);
    assert_true(value_at(f.db, t1, NULL, "DCGM_FI_DEV_RETIRED_PENDING", "gpu", "1", NULL) == 1.0);
    assert_true(value_at(f.db, t0, NULL, "DCGM_FI_DEV_RETIRED_PENDING", "gpu", "1", NULL) == 0.0);
    assert_true(value_at(f.db, t0, NULL, "DCGM_FI_DEV_ROW_REMAP_FAILURE", "gpu", "0", NULL) == 0.0);
    value_at(f.db, t0, &ns, "DCGM_FI_DEV_FAN_SPEED", NULL);
    assert_int_equal(ns, 0); /* [N/A] and [Not Supported] everywhere */
    assert_int_equal(st.missing, 4 + 1);
    nvsmi_destroy(p);

    /* Malformed rows: each named by its line, the good ones stored. */
    p = nv_new(&f);
    snprintf(path, sizeof path, "%s/tests/data/nvidia-smi/malformed.csv", src_dir());
    nvsmi_file_begin(p);
    feed_file(path, nv_line, p);
    assert_int_equal(nvsmi_flush(p), 0);
    nvsmi_stats(p, &st);
    assert_int_equal(st.rows, 2);
    assert_int_equal(st.rows_skipped, 3);
    assert_non_null(strstr(f.errs, "3: column 5 (DCGM_FI_DEV_GPU_TEMP): \"hot\" is not a number"));
    assert_non_null(strstr(f.errs, "4: 6 fields, the header has 8"));
    assert_non_null(strstr(f.errs, "5: bad timestamp"));
    assert_true(value_at(f.db, t0, NULL, "DCGM_FI_DEV_GPU_TEMP", "gpu", "4", NULL) == 43.0);
    value_at(f.db, t0, &ns, "DCGM_FI_DEV_POWER_USAGE", "modelName", "Tesla V100-SXM2-32GB", NULL);
    assert_int_equal(ns, 2);
    nvsmi_destroy(p);

    /* No header: refused. */
    p = nv_new(&f);
    nvsmi_file_begin(p);
    const char *noh = "2024/03/01 12:00:00.000, 0, GPU-0, X, 40";
    assert_int_equal(nvsmi_line(p, noh, strlen(noh)), TSDB_EINVAL);
    nvsmi_destroy(p);
    fx_close(&f);
}

/* ---- JSON parser ------------------------------------------------------------- */

static void test_json(void **state)
{
    (void)state;
    json_doc_t d;
    json_doc_init(&d);
    const char *ok = " {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"],"
                     " \"b\": {\"c\": 9007199254740993, \"d\": {}} , \"e\": []} ";
    assert_int_equal(json_parse(&d, ok, strlen(ok)), 0);
    const json_node_t *a = json_get(&d, 0, "a");
    assert_non_null(a);
    assert_int_equal(a->type, JSON_ARRAY);
    assert_int_equal(a->nkids, 6);
    uint32_t k = json_index(&d, a) + 1;
    assert_true(d.nodes[k].is_int && d.nodes[k].i == 1);
    k = d.nodes[k].next;
    assert_true(d.nodes[k].num == -2500.0 && !d.nodes[k].is_int);
    k = d.nodes[k].next;
    assert_int_equal(d.nodes[k].type, JSON_TRUE);
    k = d.nodes[d.nodes[d.nodes[k].next].next].next;
    assert_string_equal(json_str(&d, &d.nodes[k]), "x\xc3\xa9\xf0\x9f\x98\x80\n");
    const json_node_t *c = json_path(&d, 0, "b.c");
    assert_true(c && c->is_int && c->i == INT64_C(9007199254740993));
    assert_int_equal(json_path(&d, 0, "b.d")->type, JSON_OBJECT);
    assert_null(json_path(&d, 0, "b.x"));
    assert_null(json_path(&d, 0, "a.b"));
    assert_int_equal(json_get(&d, 0, "e")->nkids, 0);
    static const struct {
        const char *in;
        int rc;
        unsigned line, col;
    } bad[] = {
        {"", JSON_ETRUNC, 1, 1},
        {"{\"a\":1", JSON_ETRUNC, 1, 7},
        {"{\"a\":1,}", JSON_ESYNTAX, 1, 8},
        {"[1 2]", JSON_ESYNTAX, 1, 4},
        {"{\n\"a\":\n tru", JSON_ETRUNC, 3, 5},
        {"{\"a\" 1}", JSON_ESYNTAX, 1, 6},
        {"01", JSON_ESYNTAX, 1, 2},
        {"1.", JSON_ETRUNC, 1, 3},
        {"-", JSON_ETRUNC, 1, 2},
        {"\"\\x\"", JSON_ESYNTAX, 1, 3},
        {"\"\\ud800\"", JSON_ESYNTAX, 1, 8},
        {"\"a\nb\"", JSON_ESYNTAX, 1, 3},
        {"[1] x", JSON_ESYNTAX, 1, 5},
        {"nul", JSON_ETRUNC, 1, 4},
        {"nulx", JSON_ESYNTAX, 1, 1},
        {"{1:2}", JSON_ESYNTAX, 1, 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = json_parse(&d, bad[i].in, strlen(bad[i].in));
        if (rc != bad[i].rc || d.err_line != bad[i].line || d.err_col != bad[i].col)
            fprintf(stderr, "case %zu '%s': rc %d line %u col %u\n", i, bad[i].in, rc, d.err_line,
                    d.err_col);
        assert_int_equal(rc, bad[i].rc);
        assert_int_equal(d.err_line, bad[i].line);
        assert_int_equal(d.err_col, bad[i].col);
    }
    /* Depth cap. */
    char deep[200];
    memset(deep, '[', sizeof deep);
    assert_int_equal(json_parse(&d, deep, sizeof deep), JSON_EDEPTH);
    /* Never reads past len: a valid prefix of a longer buffer. */
    assert_int_equal(json_parse(&d, "[1]]]]", 3), 0);
    assert_int_equal(json_parse(&d, "\"abc", 2), JSON_ETRUNC);
    json_doc_free(&d);
}

/* ---- remote-write encoder -------------------------------------------------------- */

static void test_rw_encode(void **state)
{
    (void)state;
    tsdb_label_t l1[] = {{{"job", 3}, {"a", 1}}, {{"__name__", 8}, {"up", 2}}};
    tsdb_label_t l2[] = {{{"zz", 2}, {"1", 1}},
                         {{"instance", 8}, {"h:9100", 6}},
                         {{"__name__", 8}, {"node_load1", 10}}};
    tsdb_sample_t s1[] = {{1000, 1.0}};
    tsdb_sample_t s2[] = {{-5, -0.5}, {INT64_C(1709294400000), 1e300}, {0, 0.0}};
    tsdb_series_in_t in[] = {{l1, 2, s1, 1}, {l2, 3, s2, 3}};
    size_t bound = rw_encode_v1_bound(in, 2);
    uint8_t *pb = malloc(bound), *z = malloc(rw_snappy_bound(bound));
    size_t len, zl;
    assert_int_equal(rw_encode_v1(in, 2, pb, bound, &len), 0);
    assert_true(len <= bound);
    /* The worked example of rw_encode.h. */
    static const uint8_t head[] = {0x0a, 0x28, 0x0a, 0x0e, 0x0a, 0x08, '_',  '_', 'n',
                                   'a',  'm',  'e',  '_',  '_',  0x12, 0x02, 'u', 'p'};
    assert_memory_equal(pb, head, sizeof head);
    assert_int_equal(rw_encode_v1(in, 2, pb, len - 1, &zl), RW_EINVAL);
    assert_int_equal(rw_snappy_compress(pb, len, z, rw_snappy_bound(len), &zl), 0);
    rw_decoder_t *d;
    assert_int_equal(rw_decoder_create(NULL, &d), 0);
    rw_request_t q;
    assert_int_equal(rw_decode_v1(d, z, zl, RW_ENC_SNAPPY, &q), 0);
    assert_int_equal(q.nseries, 2);
    assert_int_equal(q.nrejects, 0);
    assert_int_equal(q.series[1].nlabels, 3);
    assert_memory_equal(q.series[1].labels[0].name.ptr, "__name__", 8);
    assert_memory_equal(q.series[1].labels[2].value.ptr, "1", 1);
    assert_int_equal(q.series[1].nsamples, 3);
    assert_true(q.series[1].samples[0].t == -5 && q.series[1].samples[0].v == -0.5);
    assert_true(q.series[1].samples[1].v == 1e300);
    assert_true(q.series[1].samples[2].t == 0);
    rw_decoder_destroy(d);
    free(pb);
    free(z);
}

/* ---- time --------------------------------------------------------------------- */

/* --memory-limit's byte counts: suffixes are powers of 1024, junk refused. */
static void test_parse_bytes(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(ingest_parse_bytes("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ingest_parse_bytes("123", &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(ingest_parse_bytes("512k", &v), 0);
    assert_int_equal(v, UINT64_C(512) << 10);
    assert_int_equal(ingest_parse_bytes("20G", &v), 0);
    assert_int_equal(v, UINT64_C(20) << 30);
    assert_int_equal(ingest_parse_bytes("3MiB", &v), 0);
    assert_int_equal(v, UINT64_C(3) << 20);
    assert_int_equal(ingest_parse_bytes("1T", &v), 0);
    assert_int_equal(v, UINT64_C(1) << 40);
    assert_int_equal(ingest_parse_bytes("100B", &v), 0);
    assert_int_equal(v, 100);
    v = 7;
    static const char *bad[] = {"", "G", "-1", "1.5G", "12X", "1GG", "1 G",
                                "99999999999999999999", "17179869184G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ingest_parse_bytes(bad[i], &v), -1);
        assert_int_equal(v, 7);
    }
    assert_true(ingest_default_memory_limit() > 0);
}

static void test_time(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"1970-01-01", 0},
        {"2019-12-31", INT64_C(1577750400000)},
        {"2024-02-29", INT64_C(1709164800000)},
        {"2024-03-01T12:00:00Z", INT64_C(1709294400000)},
        {"2024-03-01T12:00:00.5Z", INT64_C(1709294400500)},
        {"2024-03-01 14:00:00.123456+02:00", INT64_C(1709294400123)},
        {"2024-03-01T07:30:00-04:30", INT64_C(1709294400000)},
        {"1709294400", INT64_C(1709294400000)},
        {"1709294400.25", INT64_C(1709294400250)},
        {" 0 ", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -1;
        assert_int_equal(ingest_time_parse(ok[i].s, strlen(ok[i].s), &ms), 0);
        assert_true(ms == ok[i].ms);
    }
    static const char *const bad[] = {
        "",     "2023-02-29", "2024-13-01", "2024-03-01T12:00:00", "2024-03-01T25:00:00Z",
        "12ab", "2024/03/01", "1e9",        "2024-03-01T12:00Z",   "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (!ingest_time_parse(bad[i], strlen(bad[i]), &ms))
            fprintf(stderr, "accepted %s\n", bad[i]);
        assert_int_not_equal(ingest_time_parse(bad[i], strlen(bad[i]), &ms), 0);
    }
    char buf[40];
    ingest_time_format(INT64_C(1709294400500), buf, sizeof buf);
    assert_string_equal(buf, "2024-03-01T12:00:00.500Z");
    ingest_time_format(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    /* Round trip over a range of days. */
    for (int64_t d = 0; d < 400 * 366; d += 37) {
        int64_t ms = d * 86400000 + 3723000, back;
        ingest_time_format(ms, buf, sizeof buf);
        assert_int_equal(ingest_time_parse(buf, strlen(buf), &back), 0);
        assert_true(back == ms);
    }
}

/* ---- the binary ---------------------------------------------------------------- */

static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_binary(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) skip();
    char dir[256], cmd[4096], out[16384];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    /* A file whose name has a space, malformed rows: exit 1, file:line. */
    char csv[512];
    snprintf(csv, sizeof csv, "%s/bad day.csv", dir);
    FILE *fp = fopen(csv, "w");
    assert_non_null(fp);
    fputs("date,serial_number,model,capacity_bytes,failure,smart_5_raw\n"
          "2019-01-01,A,M,1,0,1\n2019-01-01,B,M,1,0,zz\n2019-01-02,A,M,1,1,2\n",
          fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "'%s' import backblaze --store '%s/s' '%s' 2>&1", bin, dir, csv);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    if (!strstr(out, "bad day.csv:3: column 6 (smart_5_raw)")) fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "bad day.csv:3: column 6 (smart_5_raw): \"zz\" is not a number"));
    assert_non_null(strstr(out, "imported 2 rows from 1 of 1 files"));
    assert_non_null(strstr(out, "1 rows refused"));
    assert_non_null(strstr(out, "failure events: 1"));
    snprintf(cmd, sizeof cmd, "'%s' label list --store '%s/s' 2>&1", bin, dir);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"time\":\"2019-01-02T00:00:00Z\""));
    /* The real file with a space in its name; re-import: all already present. */
    if (have_smart()) {
        snprintf(cmd, sizeof cmd, "'%s' import backblaze --store '%s/s2' '%s' 2>&1", bin, dir,
                 TOSHIBA);
        assert_int_equal(run(cmd, out, sizeof out), 0);
        assert_non_null(strstr(out, "imported 5335 rows"));
        assert_non_null(strstr(out, "failure events: 79"));
        assert_int_equal(run(cmd, out, sizeof out), 0);
        assert_non_null(strstr(out, " 0 stored"));
    }
    /* smartctl-json + nvidia-smi from stdin, truncated JSON. */
    snprintf(cmd, sizeof cmd,
             "'%s' import smartctl-json --store '%s/s3' --instance h1 "
             "'%s/tests/data/smartctl/ata_sda.json' '%s/tests/data/smartctl/truncated.json' 2>&1",
             bin, dir, src_dir(), src_dir());
    assert_int_equal(run(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "truncated.json:"));
    assert_non_null(strstr(out, "imported 1 documents from 1 of 2 files"));
    snprintf(cmd, sizeof cmd,
             "'%s' import nvidia-smi --store '%s/s3' --instance h1 - "
             "< '%s/tests/data/nvidia-smi/a100_2gpu.csv' 2>&1",
             bin, dir, src_dir());
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "imported 4 rows"));
    /* Usage errors. */
    snprintf(cmd, sizeof cmd, "'%s' import backblaze '%s' 2>&1", bin, csv);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "'%s' import parquet --store x y 2>&1", bin);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "'%s' import --help", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "smartctl-json"));
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_parse_bytes),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_rw_encode),
        cmocka_unit_test(test_bb_malformed),
        cmocka_unit_test(test_bb_newer_layout),
        cmocka_unit_test(test_bb_toshiba),
        cmocka_unit_test(test_bb_st8000),
        cmocka_unit_test_setup_teardown(test_bb_malformed, sids_on, sids_off),
        cmocka_unit_test_setup_teardown(test_bb_newer_layout, sids_on, sids_off),
        cmocka_unit_test_setup_teardown(test_bb_toshiba, sids_on, sids_off),
        cmocka_unit_test_setup_teardown(test_bb_st8000, sids_on, sids_off),
        cmocka_unit_test(test_bb_paths_agree),
        cmocka_unit_test(test_bb_drive_order),
        cmocka_unit_test(test_bb_fast_general_agree),
        cmocka_unit_test(test_smartctl),
        cmocka_unit_test(test_nvsmi),
        cmocka_unit_test(test_binary),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tsdb_thread_cleanup();
    return rc;
}
