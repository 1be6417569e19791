/*
 * bench_import.c — Backblaze CSV import speed, rows per second on one core.
 *
 *   bench_import [DRIVES [DAYS [STORE_DIR]]]     (defaults 20000 drives, 10 days)
 *
 * Synthesizes CSV text in the layout of a recent quarter of the public
 * dataset (date, serial_number, model, capacity_bytes, failure, datacenter,
 * cluster_id, vault_id, pod_id, pod_slot_num, is_legacy_format, then
 * smart_N_normalized/smart_N_raw for 95 attribute ids: 201 columns), where a
 * drive model fills about 25 attributes and leaves the rest blank, as the
 * real files do. Rows are day-major (one daily file after another).
 *
 * Two figures:
 *   parse   the importer with a sink that only counts (CSV split, number
 *           parsing, label building, batching)
 *   store   the same into a fresh store with tsdb_append (SYNC_PERIODIC, as
 *           `augur import --store` uses), tsdb_close included
 * The text is generated before the clock starts; lines are fed the way the
 * CLI feeds them. Deterministic (fixed LCG seed).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest/backblaze.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(rng >> 33);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const unsigned ids[] = {
    1,   2,   3,   4,   5,   7,   8,   9,   10,  11,  12,  13,  15,  16,  17,  18,  22,  23,  24,
    160, 161, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200,
    201, 202, 206, 210, 218, 220, 222, 223, 224, 225, 226, 230, 231, 232, 233, 234, 235, 240, 241,
    242, 244, 245, 246, 247, 248, 250, 251, 252, 254, 255, 11,  13,  15,  16,  17,  18,  22,  23};
#define NIDS (sizeof ids / sizeof ids[0])

static void gen(tbuf_t *t, unsigned drives, unsigned days, uint64_t *rows)
{
    char buf[256];
    const char *h = "date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,"
                    "vault_id,pod_id,pod_slot_num,is_legacy_format";
    tbuf_put(t, h, strlen(h));
    for (size_t i = 0; i < NIDS; i++) {
        int n = snprintf(buf, sizeof buf, ",smart_%u_normalized,smart_%u_raw",
                         ids[i] + (i >= 87 ? 1000 : 0), ids[i] + (i >= 87 ? 1000 : 0));
        tbuf_put(t, buf, (size_t)n);
    }
    tbuf_put(t, "\n", 1);
    /* Four models, each with its own set of ~25 filled attributes. */
    unsigned char filled[4][NIDS];
    for (int m = 0; m < 4; m++)
        for (size_t i = 0; i < NIDS; i++)
            filled[m][i] = rnd() % 100 < 26;
    static const char *const models[] = {"ST12000NM0008", "HGST HUH721212ALE604",
                                         "TOSHIBA MG07ACA14TA", "WDC WUH721816ALE6L4"};
    for (unsigned d = 0; d < days; d++) {
        for (unsigned k = 0; k < drives; k++) {
            int m = (int)(k % 4);
            int n = snprintf(buf, sizeof buf,
                             "2024-01-%02u,SN%08u,%s,12000138625024,%d,sac%u,1,%u,%u,%u,0", d + 1,
                             k, models[m], rnd() % 100000 == 0, k % 2, 1000 + k / 1200,
                             (k / 60) % 20, k % 60);
            tbuf_put(t, buf, (size_t)n);
            for (size_t i = 0; i < NIDS; i++) {
                if (!filled[m][i] || i >= 87) {
                    tbuf_put(t, ",,", 2);
                    continue;
                }
                n = snprintf(buf, sizeof buf, ",%u,%u", 100 - rnd() % 20,
                             ids[i] == 9       ? 20000 + d * 24
                             : rnd() % 50 == 0 ? rnd() % 1000
                                               : 0);
                tbuf_put(t, buf, (size_t)n);
            }
            tbuf_put(t, "\n", 1);
            (*rows)++;
        }
    }
}

static int count_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    (void)s;
    (void)ctx;
    res->stored = n;
    return 0;
}

static int store_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    return tsdb_append(ctx, s, n, NULL, res);
}

static double run(const tbuf_t *t, ingest_sink_t *sink, ingest_totals_t *tot, uint64_t *rows)
{
    backblaze_options_t o;
    backblaze_options_init(&o);
    o.sink = sink;
    o.totals = tot;
    backblaze_t *p;
    if (backblaze_create(&o, &p)) abort();
    double t0 = now_s();
    backblaze_file_begin(p);
    const char *s = (const char *)t->p, *end = s + t->len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = (size_t)((nl ? nl : end) - s);
        if (backblaze_line(p, s, n)) abort();
        s += n + 1;
    }
    if (backblaze_finish(p)) abort();
    double el = now_s() - t0;
    backblaze_stats_t st;
    backblaze_stats(p, &st);
    *rows = st.rows;
    backblaze_destroy(p);
    return el;
}

int main(int argc, char **argv)
{
    unsigned drives = argc > 1 ? (unsigned)atoi(argv[1]) : 20000;
    unsigned days = argc > 2 ? (unsigned)atoi(argv[2]) : 10;
    if (days > 31) days = 31;
    tbuf_t t = {0};
    uint64_t rows = 0;
    gen(&t, drives, days, &rows);
    printf("bench_import: %u drives x %u days = %" PRIu64 " rows, %zu columns, %.1f MB of CSV\n",
           drives, days, rows, 11 + 2 * NIDS, (double)t.len / 1e6);

    ingest_totals_t tot;
    memset(&tot, 0, sizeof tot);
    ingest_sink_t sink = {count_append, NULL};
    uint64_t r;
    double el = run(&t, &sink, &tot, &r);
    printf("parse: %.2f s, %.0f rows/s, %.2f M samples/s (%" PRIu64 " samples)\n", el,
           (double)r / el, (double)tot.samples / el / 1e6, tot.samples);

    char dir[256];
    const char *base = getenv("TMPDIR");
    if (argc > 3)
        snprintf(dir, sizeof dir, "%s", argv[3]);
    else {
        snprintf(dir, sizeof dir, "%s/augur-bench-import-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) return 1;
    }
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.sync_mode = TSDB_SYNC_PERIODIC;
    o.ooo_window_ms = INT64_C(400) * 86400000;
    o.partition_ms = INT64_C(32) * 86400000; /* as `augur import backblaze --store` */
    tsdb_t *db;
    if (tsdb_open(dir, &o, &db)) return 1;
    memset(&tot, 0, sizeof tot);
    sink = (ingest_sink_t){store_append, db};
    double t0 = now_s();
    el = run(&t, &sink, &tot, &r);
    double el_close;
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    double t1 = now_s();
    tsdb_flush(db); /* as `augur import --store` */
    tsdb_stats(db, &st);
    tsdb_close(db);
    el_close = now_s() - t1;
    (void)t0;
    printf("store: %.2f s append + %.2f s close, %.0f rows/s (%.0f with close), %.2f M samples/s, "
           "%" PRIu64 " series, %.2f bytes/sample before close\n",
           el, el_close, (double)r / el, (double)r / (el + el_close), (double)tot.stored / el / 1e6,
           st.series, st.bytes_per_sample);
    if (argc <= 3) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) return 1;
    }
    tbuf_free(&t);
    tsdb_thread_cleanup();
    return 0;
}
