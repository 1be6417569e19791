/* bench_query.c — latency of typical dashboard queries through qapi_handle
 * over a synthetic fleet: N nodes x (node_cpu_seconds_total per cpu/mode +
 * gauges), 15 s interval. Prints median and p99 per query, and for range
 * queries also through a result cache (the first, untimed request fills it;
 * the clock is a day after the data, so every step is cacheable).
 *
 * Usage: bench_query [nodes=100] [hours=1] [reps=20] [dir]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "query/query_api.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    const char *k[6], *v[6];
} params_t;

static const char *getp(void *ctx, const char *name, size_t idx)
{
    params_t *p = ctx;
    if (idx) return NULL;
    for (int i = 0; i < 6 && p->k[i]; i++)
        if (!strcmp(p->k[i], name)) return p->v[i];
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int nodes = argc > 1 ? atoi(argv[1]) : 100;
    int hours = argc > 2 ? atoi(argv[2]) : 1;
    int reps = argc > 3 ? atoi(argv[3]) : 20;
    char dir[256];
    if (argc > 4) {
        snprintf(dir, sizeof dir, "%s", argv[4]);
    } else {
        snprintf(dir, sizeof dir, "/tmp/augur-bench-query-XXXXXX");
        if (!mkdtemp(dir)) return 1;
    }
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    tsdb_t *db;
    if (tsdb_open(dir, &o, &db)) return 1;
    const int64_t t0 = 1700000000000;
    int ticks = hours * 240;
    static const char *modes[] = {"idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"};
    uint64_t total = 0;
    double tl = now_s();
    tsdb_sample_t *s = malloc(ticks * sizeof *s);
    for (int n = 0; n < nodes; n++) {
        char inst[32];
        snprintf(inst, sizeof inst, "node-%04d:9100", n);
        for (int cpu = 0; cpu < 4; cpu++) {
            char cs[8];
            snprintf(cs, sizeof cs, "%d", cpu);
            for (int m = 0; m < 8; m++) {
                tsdb_label_t l[5] = {{{"__name__", 8}, {"node_cpu_seconds_total", 22}},
                                     {{"cpu", 3}, {cs, (uint32_t)strlen(cs)}},
                                     {{"instance", 8}, {inst, (uint32_t)strlen(inst)}},
                                     {{"job", 3}, {"node", 4}},
                                     {{"mode", 4}, {modes[m], (uint32_t)strlen(modes[m])}}};
                double v = 1000.0 * n + m;
                for (int i = 0; i < ticks; i++) {
                    v += (m == 0 ? 12.0 : 1.0) + (i % 7) * 0.01;
                    s[i] = (tsdb_sample_t){t0 + i * 15000LL, v};
                }
                tsdb_series_in_t in = {l, 5, s, (uint32_t)ticks};
                if (tsdb_append(db, &in, 1, NULL, NULL)) return 1;
                total += ticks;
            }
        }
        tsdb_label_t l[3] = {{{"__name__", 8}, {"node_load1", 10}},
                             {{"instance", 8}, {inst, (uint32_t)strlen(inst)}},
                             {{"job", 3}, {"node", 4}}};
        for (int i = 0; i < ticks; i++) s[i] = (tsdb_sample_t){t0 + i * 15000LL, (n * 7 + i) % 13 / 3.0};
        tsdb_series_in_t in = {l, 3, s, (uint32_t)ticks};
        if (tsdb_append(db, &in, 1, NULL, NULL)) return 1;
        total += ticks;
    }
    free(s);
    tsdb_flush(db);
    printf("loaded %" PRIu64 " samples (%d nodes, %d h) in %.2f s\n", total, nodes, hours, now_s() - tl);
    char end[32], start[32], at[32];
    snprintf(end, sizeof end, "%.3f", (t0 + (ticks - 1) * 15000LL) / 1000.0);
    snprintf(start, sizeof start, "%.3f", (t0 + (ticks - 1) * 15000LL - 3600000LL) / 1000.0);
    snprintf(at, sizeof at, "%s", end);
    struct {
        const char *name, *path;
        params_t p;
    } qs[] = {
        {"rate sum by instance (range 1h/15s)", "query_range",
         {{"query", "start", "end", "step"},
          {"sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))", start, end, "15"}}},
        {"topk(10) (range 1h/15s)", "query_range",
         {{"query", "start", "end", "step"}, {"topk(10, node_load1)", start, end, "15"}}},
        {"regex matcher instant", "query",
         {{"query", "time"}, {"sum(rate(node_cpu_seconds_total{instance=~\"node-00[0-4].*\",mode=~\"user|system\"}[5m]))", at}}},
        {"count_over_time per name (verify.py)", "query",
         {{"query", "time"}, {"count_over_time({__name__=\"node_load1\",job=\"node\"}[3600s])", at}}},
        {"raw range selector (verify.py)", "query",
         {{"query", "time"}, {"{__name__=\"node_load1\",instance=\"node-0001:9100\",job=\"node\"}[3600s]", at}}},
        {"label values instance", "label/instance/values", {{NULL}, {NULL}}},
        {"series job=node", "series", {{"match[]"}, {"node_load1"}}},
    };
    tbuf_t out = {0};
    double *lat = malloc(reps * sizeof *lat);
    qapi_cache_t *cache = qapi_cache_new(64 << 20);
    if (!cache) return 1;
    const int64_t now = t0 + ticks * 15000LL + 86400000LL;
    for (size_t q = 0; q < sizeof qs / sizeof qs[0]; q++) {
        int range = !strcmp(qs[q].path, "query_range");
        for (int cached = 0; cached <= range; cached++) {
            qapi_limits_t lim = {0};
            lim.cache = cached ? cache : NULL;
            int status = 0;
            size_t bytes = 0;
            if (cached && qapi_handle(db, qs[q].path, getp, &qs[q].p, now, &lim, &out, &status)) return 1;
            for (int r = 0; r < reps; r++) {
                double a = now_s();
                if (qapi_handle(db, qs[q].path, getp, &qs[q].p, now, &lim, &out, &status)) return 1;
                lat[r] = now_s() - a;
                bytes = out.len;
            }
            qsort(lat, reps, sizeof *lat, cmp_d);
            char name[64];
            snprintf(name, sizeof name, "%s%s", qs[q].name, cached ? " cached" : "");
            printf("%-47s status %d %8zu B  median %8.2f ms  p99 %8.2f ms\n", name, status, bytes,
                   lat[reps / 2] * 1e3, lat[(reps * 99) / 100 < reps ? (reps * 99) / 100 : reps - 1] * 1e3);
        }
    }
    qapi_cache_free(cache);
    free(lat);
    tbuf_free(&out);
    tsdb_close(db);
    if (argc <= 4) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) return 1;
    }
    return 0;
}
