/*
 * bench_index.c — size and speed of the series index (tsdb/index.c).
 *
 * Builds, in one LMDB write transaction, the index of a node_exporter fleet:
 * N instances (default 100) x 510 series, metric names from
 * ../shared/data/node_exporter_types.txt (or $AUGUR_NODE_TYPES), labels
 * instance="node-0001:9100", job="node" and cpu/mode/device/... as
 * node_exporter sets them. Reports bytes per series on disk (LMDB pages in
 * use after commit x page size) and the CPU time of typical selects.
 *
 *   bench_index [instances] [repeats]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lmdb.h>

#include "tsdb/index.h"
#include "tsdb/tsdb.h"

#define PER_INSTANCE 510
#define MAXLAB 8

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_index: %s: %s (%s)\n", what, tsdb_strerror(rc),
            tsdb_last_error_detail());
    exit(1);
}

/* ---- series shapes ----------------------------------------------------- */

typedef struct {
    char name[96];
    int nl;
    char ln[MAXLAB][16], lv[MAXLAB][48]; /* extra labels (not instance/job) */
} shape_t;

static shape_t shapes[PER_INSTANCE];
static int nshapes;

static shape_t *shape_add(const char *name)
{
    if (nshapes >= PER_INSTANCE) return NULL;
    shape_t *s = &shapes[nshapes++];
    memset(s, 0, sizeof *s);
    size_t n = strlen(name);
    if (n >= sizeof s->name) n = sizeof s->name - 1;
    memcpy(s->name, name, n);
    return s;
}

static void shape_label(shape_t *s, const char *n, const char *v)
{
    if (!s || s->nl >= MAXLAB) return;
    snprintf(s->ln[s->nl], sizeof s->ln[0], "%s", n);
    snprintf(s->lv[s->nl], sizeof s->lv[0], "%s", v);
    s->nl++;
}

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static void shapes_build(const char *types_path)
{
    static char names[512][96];
    int nn = 0;
    FILE *fp = fopen(types_path, "r");
    if (!fp) {
        perror(types_path);
        exit(1);
    }
    char line[256], name[96];
    while (nn < 512 && fgets(line, sizeof line, fp))
        if (sscanf(line, "# TYPE %95s", name) == 1) memcpy(names[nn++], name, sizeof name);
    fclose(fp);

    static const char *modes[] = {"idle", "iowait", "irq", "nice", "softirq", "steal", "system",
                                  "user"};
    static const char *disks[] = {"nvme0n1", "sda"};
    static const char *nics[] = {"docker0", "eth0", "lo"};
    static const char *mounts[][3] = {{"/dev/nvme0n1p2", "ext4", "/"},
                                      {"/dev/nvme0n1p1", "vfat", "/boot/efi"},
                                      {"tmpfs", "tmpfs", "/run"}};
    char buf[16];
    for (int i = 0; i < nn; i++) {
        const char *n = names[i];
        if (strcmp(n, "node_cpu_seconds_total") == 0) {
            for (int c = 0; c < 8; c++)
                for (int m = 0; m < 8; m++) {
                    shape_t *s = shape_add(n);
                    snprintf(buf, sizeof buf, "%d", c);
                    shape_label(s, "cpu", buf);
                    shape_label(s, "mode", modes[m]);
                }
        } else if (strcmp(n, "node_cpu_guest_seconds_total") == 0) {
            for (int c = 0; c < 8; c++)
                for (int m = 0; m < 2; m++) {
                    shape_t *s = shape_add(n);
                    snprintf(buf, sizeof buf, "%d", c);
                    shape_label(s, "cpu", buf);
                    shape_label(s, "mode", m ? "user" : "nice");
                }
        } else if (has_prefix(n, "node_disk_")) {
            for (int d = 0; d < 2; d++) shape_label(shape_add(n), "device", disks[d]);
        } else if (has_prefix(n, "node_network_")) {
            for (int d = 0; d < 3; d++) shape_label(shape_add(n), "device", nics[d]);
        } else if (has_prefix(n, "node_filesystem_")) {
            for (int m = 0; m < 3; m++) {
                shape_t *s = shape_add(n);
                shape_label(s, "device", mounts[m][0]);
                shape_label(s, "fstype", mounts[m][1]);
                shape_label(s, "mountpoint", mounts[m][2]);
            }
        } else {
            shape_add(n);
        }
    }
    /* Fill up to 510 with hwmon sensors, as a bigger node would have. */
    for (int t = 0; nshapes < PER_INSTANCE; t++) {
        shape_t *s = shape_add("node_hwmon_temp_celsius");
        shape_label(s, "chip", "platform_coretemp_0");
        snprintf(buf, sizeof buf, "temp%d", t + 1);
        shape_label(s, "sensor", buf);
    }
}

static int label_cmp(const void *a, const void *b)
{
    const tsdb_label_t *x = a, *y = b;
    size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
    int c = memcmp(x->name.ptr, y->name.ptr, n);
    return c ? c : (int)x->name.len - (int)y->name.len;
}

static tsdb_label_t mk(const char *n, const char *v)
{
    tsdb_label_t l = {{n, (uint32_t)strlen(n)}, {v, (uint32_t)strlen(v)}};
    return l;
}

/* ---- queries ------------------------------------------------------------- */

static void bench_select(MDB_txn *txn, const idx_dbis_t *d, const char *title,
                         const tsdb_matcher_t *m, size_t nm, int reps)
{
    tsdb_sids_t out = {0};
    double t0 = cpu_now();
    for (int r = 0; r < reps; r++) {
        idx_matchers_t *mc;
        int rc = idx_matchers_compile(m, nm, &mc);
        if (rc) die("compile", rc);
        if ((rc = idx_select(txn, d, mc, &out))) die("select", rc);
        idx_matchers_free(mc);
    }
    double us = (cpu_now() - t0) / reps * 1e6;
    printf("  %-62s %7zu series %9.1f us\n", title, out.n, us);
    tsdb_sids_free(&out);
}

int main(int argc, char **argv)
{
    int ninst = argc > 1 ? atoi(argv[1]) : 100;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (ninst < 1 || ninst > 9999 || reps < 1) {
        fprintf(stderr, "usage: bench_index [instances 1..9999] [repeats]\n");
        return 2;
    }
    const char *types = getenv("AUGUR_NODE_TYPES");
    shapes_build(types && *types ? types : "../shared/data/node_exporter_types.txt");

    char dir[] = "/tmp/augur-bench-index-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    MDB_env *env;
    MDB_txn *txn;
    idx_dbis_t d;
    int rc;
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 16)) ||
        (rc = mdb_env_set_mapsize(env, (size_t)4 << 30)) ||
        (rc = mdb_env_open(env, dir, MDB_NOSYNC, 0644)) ||
        (rc = mdb_txn_begin(env, NULL, 0, &txn))) {
        fprintf(stderr, "lmdb: %s\n", mdb_strerror(rc));
        return 1;
    }
    if ((rc = idx_open(txn, &d))) die("idx_open", rc);

    /* ---- build ---- */
    size_t nseries = (size_t)ninst * PER_INSTANCE, nlabels = 0;
    double t0 = cpu_now();
    for (int i = 0; i < ninst; i++) {
        char inst[32];
        snprintf(inst, sizeof inst, "node-%04d:9100", i + 1);
        for (int j = 0; j < PER_INSTANCE; j++) {
            const shape_t *s = &shapes[j];
            tsdb_label_t l[MAXLAB + 3];
            size_t n = 0;
            l[n++] = mk("__name__", s->name);
            l[n++] = mk("instance", inst);
            l[n++] = mk("job", "node");
            for (int k = 0; k < s->nl; k++) l[n++] = mk(s->ln[k], s->lv[k]);
            qsort(l, n, sizeof l[0], label_cmp);
            nlabels += n;
            uint32_t sid = (uint32_t)(i * PER_INSTANCE + j + 1);
            int64_t mint = INT64_C(1700000000000) + i, maxt = mint + 7200000;
            if ((rc = idx_series_put(txn, &d, sid, l, n, mint, maxt))) die("put", rc);
        }
    }
    double build = cpu_now() - t0;
    if ((rc = mdb_txn_commit(txn))) {
        fprintf(stderr, "commit: %s\n", mdb_strerror(rc));
        return 1;
    }

    /* ---- size ---- */
    MDB_envinfo info;
    MDB_stat est;
    mdb_env_info(env, &info);
    mdb_env_stat(env, &est);
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) return 1;
    static const char *dbn[] = {"pairs", "pairids", "series", "postings"};
    MDB_dbi dbis[] = {d.pairs, d.pairids, d.series, d.postings};
    size_t psize = est.ms_psize, used = 0;
    printf("bench_index: %d instances x %d series = %zu series, %.2f labels/series\n", ninst,
           PER_INSTANCE, nseries, (double)nlabels / (double)nseries);
    printf("build (one txn): %.3f s CPU, %.2f us/series\n", build, build / (double)nseries * 1e6);
    for (int i = 0; i < 4; i++) {
        MDB_stat st;
        mdb_stat(txn, dbis[i], &st);
        size_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
        used += pages;
        printf("  %-9s %8zu entries %6zu pages %10zu bytes %6.1f B/series (depth %u)\n", dbn[i],
               (size_t)st.ms_entries, pages, pages * psize, (double)(pages * psize) / nseries,
               st.ms_depth);
    }
    /* mdb_stat of a DUPSORT db counts only its main tree, not the sub-trees
     * of long postings lists: count every page instead as the file's pages
     * minus the two meta pages minus the free pages (freelist records are
     * IDLs: a count word, then that many page numbers). */
    size_t file_pages = info.me_last_pgno + 1, free_pages = 0;
    {
        MDB_cursor *c;
        MDB_val k, v;
        if (mdb_cursor_open(txn, 0, &c) == 0) {
            for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
                 rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                size_t cnt;
                if (v.mv_size < sizeof cnt) continue;
                memcpy(&cnt, v.mv_data, sizeof cnt);
                free_pages += cnt;
            }
            mdb_cursor_close(c);
        }
    }
    size_t in_use = file_pages - 2 - free_pages;
    printf("  postings sub-trees (long lists) and main db: %zu pages %10zu bytes %6.1f B/series\n",
           in_use - used, (in_use - used) * psize, (double)((in_use - used) * psize) / nseries);
    printf("index in use: %zu pages x %zu B = %zu B = %.1f B/series\n", in_use, psize,
           in_use * psize, (double)(in_use * psize) / nseries);
    printf("file high-water: %zu pages = %.1f B/series (%zu free pages, 2 meta)\n", file_pages,
           (double)(file_pages * psize) / nseries, free_pages);

    /* ---- selects ---- */
    printf("select (CPU per call, mean of %d, matcher compile included):\n", reps);
    tsdb_matcher_t q1[] = {{TSDB_MATCH_EQ, "__name__", "node_cpu_seconds_total"},
                           {TSDB_MATCH_NE, "mode", "idle"}};
    bench_select(txn, &d, "{__name__=\"node_cpu_seconds_total\", mode!=\"idle\"}", q1, 2, reps);
    tsdb_matcher_t q2[] = {{TSDB_MATCH_RE, "instance", "node-00[1-3].*"}};
    bench_select(txn, &d, "{instance=~\"node-00[1-3].*\"}", q2, 1, reps);
    tsdb_matcher_t q3[] = {{TSDB_MATCH_RE, "__name__", "node_network_.*_bytes_total"}};
    bench_select(txn, &d, "{__name__=~\"node_network_.*_bytes_total\"}", q3, 1, reps);
    tsdb_matcher_t q4[] = {{TSDB_MATCH_EQ, "__name__", "node_load1"},
                           {TSDB_MATCH_EQ, "instance", "node-0042:9100"}};
    bench_select(txn, &d, "{__name__=\"node_load1\", instance=\"node-0042:9100\"}", q4, 2, reps);
    tsdb_matcher_t q5[] = {{TSDB_MATCH_EQ, "__name__", "node_load1"},
                           {TSDB_MATCH_EQ, "job", "node"}};
    bench_select(txn, &d, "{__name__=\"node_load1\", job=\"node\"}", q5, 2, reps);
    tsdb_matcher_t q6[] = {{TSDB_MATCH_EQ, "job", "node"}};
    bench_select(txn, &d, "{job=\"node\"}", q6, 1, reps);
    tsdb_matcher_t q7[] = {{TSDB_MATCH_RE, "__name__", "node_(load1|load5)"},
                           {TSDB_MATCH_NRE, "instance", "node-00[0-4].*"}};
    bench_select(txn, &d, "{__name__=~\"node_(load1|load5)\", instance!~\"node-00[0-4].*\"}", q7,
                 2, reps);

    tsdb_strings_t vals = {0};
    t0 = cpu_now();
    for (int r = 0; r < reps; r++) {
        tsdb_strings_free(&vals);
        if ((rc = idx_label_values(txn, &d, "instance", NULL, &vals))) die("values", rc);
    }
    printf("  %-62s %7zu values %9.1f us\n", "label values of instance", vals.n,
           (cpu_now() - t0) / reps * 1e6);
    tsdb_strings_free(&vals);
    {
        tsdb_sids_t sel = {0};
        idx_matchers_t *mc;
        if ((rc = idx_matchers_compile(q1, 2, &mc)) || (rc = idx_select(txn, &d, mc, &sel)))
            die("select", rc);
        idx_matchers_free(mc);
        t0 = cpu_now();
        for (int r = 0; r < reps; r++) {
            tsdb_strings_free(&vals);
            if ((rc = idx_label_values(txn, &d, "instance", &sel, &vals))) die("values", rc);
        }
        printf("  %-62s %7zu values %9.1f us\n", "label values of instance over q1's series",
               vals.n, (cpu_now() - t0) / reps * 1e6);
        tsdb_strings_free(&vals);
        t0 = cpu_now();
        for (int r = 0; r < reps; r++) {
            tsdb_strings_free(&vals);
            if ((rc = idx_label_names(txn, &d, NULL, &vals))) die("names", rc);
        }
        printf("  %-62s %7zu names  %9.1f us\n", "label names", vals.n,
               (cpu_now() - t0) / reps * 1e6);
        tsdb_strings_free(&vals);
        tsdb_sids_free(&sel);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
