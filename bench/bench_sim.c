/*
 * bench_sim.c — simulator speed.
 *
 *   bench_sim [NODES [DAYS [STORE_NODES [STORE_DAYS]]]]   (defaults 1000 90 100 7)
 *
 * 1. core: NODES x 8 disks x 8 GPUs over DAYS at 1 h, values generated, no output;
 * 2. the same with the Backblaze disk CSV, GPU CSV (daily) and events written
 *    to /dev/null;
 * 3. store: STORE_NODES over STORE_DAYS appended into a fresh store (tsdb_append).
 * Prints seconds and samples per second for each.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim/sim.h"
#include "tsdb/tsdb.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(uint32_t nodes, uint32_t days, int csv, const char *store)
{
    sim_config_t c;
    sim_config_init(&c);
    c.nodes = nodes;
    sim_t *s = NULL;
    if (sim_create(&c, &s)) return 1;
    FILE *dn = NULL;
    sim_csv_t *cv = NULL;
    tsdb_t *db = NULL;
    sim_store_writer_t *w = NULL;
    if (csv) {
        dn = fopen("/dev/null", "w");
        sim_csv_options_t o = {dn, dn, dn, dn, 86400000};
        if (!dn || sim_csv_create(s, &o, &cv)) return 1;
    }
    if (store) {
        tsdb_options_t o;
        tsdb_options_init(&o);
        o.sync_mode = TSDB_SYNC_PERIODIC;
        o.flush_interval_ms = -1;
        if (tsdb_open(store, &o, &db) || sim_store_writer_create(db, &w)) return 1;
    }
    double t0 = now_s();
    uint32_t steps = days * 24;
    for (uint32_t k = 0; k < steps; k++) {
        sim_frame_t f;
        if (sim_step(s, &f)) return 1;
        if (cv && sim_csv_add(cv, s, &f)) return 1;
        if (w && sim_store_writer_add(w, s, &f)) return 1;
    }
    if (cv) sim_csv_finish(cv, s);
    if (w) sim_store_writer_flush(w);
    double el = now_s() - t0;
    if (db) {
        double t1 = now_s();
        tsdb_close(db);
        el += now_s() - t1;
    }
    sim_stats_t st;
    sim_stats(s, &st);
    printf("%-6s %5u nodes x 8 disks x 8 GPUs x %3u days @1h: %8u series, %11" PRIu64
           " samples, %6.2f s, %6.1f M samples/s; failures %" PRIu64 " disks, %" PRIu64 " GPUs\n",
           store ? "store"
           : csv ? "csv"
                 : "core",
           nodes, days, sim_series_count(s), st.samples, el, (double)st.samples / el / 1e6,
           st.disk_failures, st.gpu_failures);
    sim_csv_destroy(cv);
    if (dn) fclose(dn);
    sim_store_writer_destroy(w);
    sim_destroy(s);
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t nodes = argc > 1 ? (uint32_t)atoi(argv[1]) : 1000;
    uint32_t days = argc > 2 ? (uint32_t)atoi(argv[2]) : 90;
    uint32_t snodes = argc > 3 ? (uint32_t)atoi(argv[3]) : 100;
    uint32_t sdays = argc > 4 ? (uint32_t)atoi(argv[4]) : 7;
    if (run(nodes, days, 0, NULL) || run(nodes, days, 1, NULL)) return 1;
    char dir[] = "/tmp/bench_sim_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    int rc = run(snodes, sdays, 0, dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    tsdb_thread_cleanup();
    return rc;
}
