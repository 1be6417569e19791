/*
 * test_sim.c — the fleet simulator (sim/).
 *
 * Determinism: the same seed gives byte-identical frames, CSV files, event
 * files and store contents; another seed differs. Statistics (seed printed,
 * AUGUR_TEST_SEED replays): realised hazard firings against the integrated
 * hazard (Poisson bounds), the disk AFR against the configured one, the
 * precursor fractions (binomial bounds), SMART growth before precursor
 * failures and none before sudden ones, the hazard ratio under stressors and
 * the co-failure excess on shared nodes. Formats: remote-write bodies decoded
 * by ingest/rw, Backblaze CSV invariants, events in the store.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/rw.h"
#include "sim/sim.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

static uint64_t g_seed;

/* FNV-1a over bytes. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void small_config(sim_config_t *c, uint64_t seed)
{
    sim_config_init(c);
    c->seed = seed;
    c->nodes = 12;
    c->nodes_per_rack = 4;
    c->racks_per_pod = 2;
    c->hazard_scale = 40; /* a few failures in a short run */
    c->interval_ms = 3600000;
}

/* Hash of every frame (time, value bits, events) and of the series table. */
static uint64_t run_hash(const sim_config_t *c, uint32_t steps)
{
    sim_t *s = NULL;
    assert_int_equal(sim_create(c, &s), 0);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint32_t k = 0; k < steps; k++) {
        sim_frame_t f;
        assert_int_equal(sim_step(s, &f), 0);
        h = fnv(h, &f.t_ms, sizeof f.t_ms);
        for (uint32_t i = 0; i < f.nseries; i++) {
            uint64_t b = f64_bits(f.v[i]);
            h = fnv(h, &b, 8);
        }
        for (uint32_t e = 0; e < f.nevents; e++) {
            h = fnv(h, f.events[e].serial, strlen(f.events[e].serial));
            h = fnv(h, f.events[e].reason, strlen(f.events[e].reason));
        }
    }
    for (uint32_t i = 0; i < sim_series_count(s); i++) {
        const sim_series_t *se = sim_series_get(s, i);
        for (uint32_t l = 0; l < se->nlabels; l++) {
            h = fnv(h, se->labels[l].name.ptr, se->labels[l].name.len);
            h = fnv(h, "=", 1);
            h = fnv(h, se->labels[l].value.ptr, se->labels[l].value.len);
        }
    }
    sim_destroy(s);
    return h;
}

static void test_determinism_frames(void **state)
{
    (void)state;
    sim_config_t c;
    small_config(&c, g_seed);
    uint64_t a = run_hash(&c, 400), b = run_hash(&c, 400);
    assert_true(a == b);
    c.seed = g_seed + 1;
    assert_true(run_hash(&c, 400) != a);
}

typedef struct {
    char *p[4];
    size_t n[4];
} csv_bufs_t;

static void run_csv(const sim_config_t *c, uint32_t steps, csv_bufs_t *out)
{
    FILE *f[4];
    for (int k = 0; k < 4; k++) {
        f[k] = open_memstream(&out->p[k], &out->n[k]);
        assert_non_null(f[k]);
    }
    sim_t *s = NULL;
    assert_int_equal(sim_create(c, &s), 0);
    sim_csv_options_t o = {f[0], f[1], f[2], f[3], 6 * 3600000};
    sim_csv_t *csv = NULL;
    assert_int_equal(sim_csv_create(s, &o, &csv), 0);
    for (uint32_t k = 0; k < steps; k++) {
        sim_frame_t fr;
        assert_int_equal(sim_step(s, &fr), 0);
        assert_int_equal(sim_csv_add(csv, s, &fr), 0);
    }
    assert_int_equal(sim_csv_finish(csv, s), 0);
    sim_csv_destroy(csv);
    sim_destroy(s);
    for (int k = 0; k < 4; k++)
        fclose(f[k]);
}

static void csv_free(csv_bufs_t *b)
{
    for (int k = 0; k < 4; k++)
        free(b->p[k]);
}

/* Same seed, same bytes; and the Backblaze file's invariants: one
 * failure = 1 row per failed ATA disk, on its last row, the serial never
 * seen again; the events files list every failure. */
static void test_csv_identical_and_backblaze_invariants(void **state)
{
    (void)state;
    sim_config_t c;
    small_config(&c, g_seed);
    c.hazard_scale = 150;
    csv_bufs_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    run_csv(&c, 24 * 40, &a);
    run_csv(&c, 24 * 40, &b);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(a.n[k], b.n[k]);
        assert_memory_equal(a.p[k], b.p[k], a.n[k]);
        assert_true(a.n[k] > 0);
    }
    /* Parse the disk CSV. */
    char *save = NULL, *line = strtok_r(a.p[0], "\n", &save);
    assert_non_null(line);
    assert_true(!strncmp(line, "date,serial_number,model,capacity_bytes,failure,", 48));
    size_t rows = 0, fails = 0;
    enum { MAXS = 4096 };
    static char serials[MAXS][32];
    static char last_date[MAXS][16];
    static int failed[MAXS];
    size_t ns = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        char date[16], serial[32];
        int failure = -1;
        assert_int_equal(sscanf(line, "%15[^,],%31[^,],%*[^,],%*[^,],%d", date, serial, &failure),
                         3);
        rows++;
        size_t i;
        for (i = 0; i < ns; i++)
            if (!strcmp(serials[i], serial)) break;
        if (i == ns) {
            assert_true(ns < MAXS);
            snprintf(serials[ns], sizeof serials[ns], "%s", serial);
            ns++;
        }
        assert_false(failed[i]); /* nothing after a failure row */
        if (last_date[i][0]) assert_true(strcmp(last_date[i], date) < 0);
        snprintf(last_date[i], sizeof last_date[i], "%s", date);
        if (failure == 1) {
            failed[i] = 1;
            fails++;
        }
    }
    assert_true(rows > 12 * 7 * 30);
    /* Events CSV: count disk failures on ATA drives (device sd*). */
    size_t ata_events = 0, all_events = 0;
    save = NULL;
    line = strtok_r(a.p[2], "\n", &save);
    while ((line = strtok_r(NULL, "\n", &save))) {
        all_events++;
        if (strstr(line, ",disk,") && strstr(line, ",sd")) ata_events++;
    }
    assert_true(all_events > 0);
    assert_int_equal(fails, ata_events);
    /* JSON lines: one per event. */
    size_t jl = 0;
    for (size_t i = 0; i < a.n[3]; i++)
        jl += a.p[3][i] == '\n';
    assert_int_equal(jl, all_events);
    fprintf(stderr, "[csv] %zu disk rows, %zu serials, %zu failure rows, %zu events\n", rows, ns,
            fails, all_events);
    csv_free(&a);
    csv_free(&b);
}

/* Store output twice (two directories), dump both, compare; the failure
 * events are there as augur_failure_event series. */
static uint64_t store_hash(tsdb_t *db, uint64_t *nsamples, uint64_t *nevents)
{
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t m = {TSDB_MATCH_RE, "__name__", ".+"};
    tsdb_sids_t sids = {0};
    assert_int_equal(tsdb_select(r, &m, 1, INT64_MIN, INT64_MAX, &sids), 0);
    /* Series ids depend on creation order, which is deterministic too, but
     * hash label text + samples per series and combine order-independently. */
    uint64_t total = 0;
    *nsamples = 0;
    *nevents = 0;
    for (size_t i = 0; i < sids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        assert_int_equal(tsdb_series_labels(r, sids.ids[i], &l, &nl), 0);
        uint64_t h = 0xcbf29ce484222325ULL;
        int is_event = 0;
        for (size_t k = 0; k < nl; k++) {
            h = fnv(h, l[k].name.ptr, l[k].name.len);
            h = fnv(h, l[k].value.ptr, l[k].value.len);
            if (l[k].name.len == 8 && !memcmp(l[k].name.ptr, "__name__", 8) &&
                l[k].value.len == 19 && !memcmp(l[k].value.ptr, "augur_failure_event", 19))
                is_event = 1;
        }
        tsdb_iter_t *it = NULL;
        assert_int_equal(tsdb_iter_open(r, sids.ids[i], INT64_MIN, INT64_MAX, &it), 0);
        const tsdb_sample_t *smp;
        size_t n;
        int rc;
        while ((rc = tsdb_iter_next(it, &smp, &n)) == 1) {
            for (size_t k = 0; k < n; k++) {
                h = fnv(h, &smp[k].t, 8);
                uint64_t b = f64_bits(smp[k].v);
                h = fnv(h, &b, 8);
                if (is_event) assert_true(smp[k].v == 1.0);
            }
            *nsamples += n;
            if (is_event) *nevents += n;
        }
        assert_int_equal(rc, 0);
        tsdb_iter_close(it);
        total += h * 0x9e3779b97f4a7c15ULL;
    }
    tsdb_sids_free(&sids);
    tsdb_reader_close(r);
    return total;
}

static void write_store(const sim_config_t *c, const char *dir, uint32_t steps, uint64_t *nev)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(dir, &o, &db), 0);
    sim_t *s = NULL;
    assert_int_equal(sim_create(c, &s), 0);
    sim_store_writer_t *w = NULL;
    assert_int_equal(sim_store_writer_create(db, &w), 0);
    *nev = 0;
    for (uint32_t k = 0; k < steps; k++) {
        sim_frame_t f;
        assert_int_equal(sim_step(s, &f), 0);
        *nev += f.nevents;
        assert_int_equal(sim_store_writer_add(w, s, &f), 0);
    }
    assert_int_equal(sim_store_writer_flush(w), 0);
    sim_stats_t st;
    sim_stats(s, &st);
    assert_int_equal(sim_store_writer_samples(w), st.samples + *nev);
    sim_store_writer_destroy(w);
    sim_destroy(s);
    assert_int_equal(tsdb_close(db), 0);
}

static void test_store_identical(void **state)
{
    (void)state;
    sim_config_t c;
    small_config(&c, g_seed);
    c.nodes = 3;
    c.hazard_scale = 2000;
    c.disk_lead_min_days = c.gpu_lead_min_days = 0.5;
    c.disk_lead_max_days = c.gpu_lead_max_days = 1;
    char d1[256], d2[256];
    assert_non_null(tu_mkdtemp(d1, sizeof d1));
    assert_non_null(tu_mkdtemp(d2, sizeof d2));
    uint64_t ev1, ev2;
    write_store(&c, d1, 24 * 3, &ev1);
    write_store(&c, d2, 24 * 3, &ev2);
    assert_int_equal(ev1, ev2);
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.read_only = 1;
    o.flush_interval_ms = -1;
    tsdb_t *a = NULL, *b = NULL;
    assert_int_equal(tsdb_open(d1, &o, &a), 0);
    assert_int_equal(tsdb_open(d2, &o, &b), 0);
    uint64_t na, nb, ea, eb;
    uint64_t ha = store_hash(a, &na, &ea), hb = store_hash(b, &nb, &eb);
    assert_true(ha == hb);
    assert_int_equal(na, nb);
    assert_int_equal(ea, ev1);
    assert_true(ev1 > 0);
    fprintf(stderr, "[store] %" PRIu64 " samples, %" PRIu64 " failure events\n", na, ea);
    tsdb_close(a);
    tsdb_close(b);
    tsdb_thread_cleanup();
    tu_rmrf(d1);
    tu_rmrf(d2);
}

/* ---- remote write -------------------------------------------------------------- */

static void test_rw_encode_roundtrip(void **state)
{
    (void)state;
    sim_config_t c;
    small_config(&c, g_seed);
    c.nodes = 3;
    sim_t *s = NULL;
    assert_int_equal(sim_create(&c, &s), 0);
    sim_frame_t f;
    assert_int_equal(sim_step(s, &f), 0);
    assert_int_equal(sim_step(s, &f), 0);
    uint32_t n = f.nseries;
    tsdb_series_in_t *in = calloc(n, sizeof *in);
    tsdb_sample_t *smp = calloc(n, sizeof *smp);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (f.v[i] != f.v[i]) continue;
        const sim_series_t *se = sim_series_get(s, i);
        smp[k].t = f.t_ms;
        smp[k].v = f.v[i];
        in[k].labels = se->labels;
        in[k].nlabels = se->nlabels;
        in[k].samples = &smp[k];
        in[k].nsamples = 1;
        k++;
    }
    uint8_t *body = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(sim_rw_encode(in, k, &body, &len, &cap), 0);
    rw_options_t ro;
    rw_options_init(&ro);
    rw_decoder_t *d = NULL;
    assert_int_equal(rw_decoder_create(&ro, &d), 0);
    rw_request_t req;
    assert_int_equal(rw_decode_v1(d, body, len, RW_ENC_SNAPPY, &req), 0);
    assert_int_equal(req.nseries, k);
    assert_int_equal(req.nrejects, 0);
    for (uint32_t i = 0; i < k; i++) {
        assert_int_equal(req.series[i].nlabels, in[i].nlabels);
        for (uint32_t l = 0; l < in[i].nlabels; l++) {
            assert_int_equal(req.series[i].labels[l].name.len, in[i].labels[l].name.len);
            assert_memory_equal(req.series[i].labels[l].name.ptr, in[i].labels[l].name.ptr,
                                in[i].labels[l].name.len);
            assert_memory_equal(req.series[i].labels[l].value.ptr, in[i].labels[l].value.ptr,
                                in[i].labels[l].value.len);
        }
        assert_int_equal(req.series[i].nsamples, 1);
        assert_true(req.series[i].samples[0].t == f.t_ms);
        assert_true(f64_bits(req.series[i].samples[0].v) == f64_bits(smp[i].v));
    }
    rw_decoder_destroy(d);
    free(body);
    free(in);
    free(smp);
    sim_destroy(s);
}

/* ---- statistics ------------------------------------------------------------------ */

/* Two-sided ~99.9 % bounds for a Poisson count with mean m (normal
 * approximation with continuity slack; fine for m >= 10). */
static void poisson_bounds(double m, double *lo, double *hi)
{
    *lo = m - 3.29 * sqrt(m) - 1;
    *hi = m + 3.29 * sqrt(m) + 1;
}

typedef struct {
    uint32_t ndisk, ngpu;
    double *disk_err; /* [step][disk]: sum of raw 5,187,188,197,198,199 */
    const char **disk_serial; /* [step][disk]: the disk in the slot (NULL while failed) */
    double *gpu_pcie;         /* [step][gpu]: PCIe replay counter (keep & KEEP_GPU) */
    const char **gpu_uuid;    /* [step][gpu]: the GPU in the slot (NULL while failed) */
    uint32_t nsteps;
    sim_event_t *ev;
    size_t nev, evcap;
    int64_t end_ms;
    sim_stats_t st;
    sim_t *sim;            /* kept: event strings live in it */
    uint64_t cofail_pairs; /* failures on the same node within 3 days of each other */
    uint64_t time_pairs;   /* failures anywhere within 3 days of each other */
} run_t;

enum { KEEP_SMART = 1, KEEP_GPU = 2 };

static void run_fleet(const sim_config_t *c, uint32_t steps, run_t *r, int keep)
{
    int keep_smart = keep & KEEP_SMART;
    memset(r, 0, sizeof *r);
    sim_t *s = NULL;
    assert_int_equal(sim_create(c, &s), 0);
    r->ndisk = sim_disk_count(s);
    r->ngpu = sim_gpu_count(s);
    r->nsteps = steps;
    if (keep_smart) {
        r->disk_err = calloc((size_t)steps * r->ndisk, sizeof *r->disk_err);
        assert_non_null(r->disk_err);
        r->disk_serial = calloc((size_t)steps * r->ndisk, sizeof *r->disk_serial);
        assert_non_null(r->disk_serial);
    }
    if (keep & KEEP_GPU) {
        r->gpu_pcie = calloc((size_t)steps * r->ngpu, sizeof *r->gpu_pcie);
        r->gpu_uuid = calloc((size_t)steps * r->ngpu, sizeof *r->gpu_uuid);
        assert_non_null(r->gpu_pcie);
        assert_non_null(r->gpu_uuid);
    }
    uint32_t off[6], noff = 0, pcie_off = UINT32_MAX;
    for (uint32_t k = 0; k < steps; k++) {
        sim_frame_t f;
        assert_int_equal(sim_step(s, &f), 0);
        if (keep_smart) {
            if (!noff) {
                /* Offsets of the error attributes' raw series inside an ATA
                 * block, found by label on the first ATA disk. */
                for (uint32_t i = 0; i < r->ndisk && !noff; i++) {
                    sim_device_info_t di;
                    sim_disk_info(s, i, &di);
                    if (di.nvme) continue;
                    for (uint32_t j = 0; j < di.nseries; j++) {
                        const sim_series_t *se = sim_series_get(s, di.series_base + j);
                        const char *id = NULL, *vt = NULL;
                        for (uint32_t l = 0; l < se->nlabels; l++) {
                            if (!strcmp(se->labels[l].name.ptr, "attribute_id"))
                                id = se->labels[l].value.ptr;
                            if (!strcmp(se->labels[l].name.ptr, "attribute_value_type"))
                                vt = se->labels[l].value.ptr;
                        }
                        if (!id || strcmp(vt, "raw")) continue;
                        int a = atoi(id);
                        if (a == 5 || a == 187 || a == 188 || a == 197 || a == 198 || a == 199)
                            off[noff++] = j;
                    }
                }
                assert_int_equal(noff, 6);
            }
            for (uint32_t i = 0; i < r->ndisk; i++) {
                sim_device_info_t di;
                sim_disk_info(s, i, &di);
                double sum = 0;
                if (!di.nvme)
                    for (uint32_t j = 0; j < noff; j++) {
                        double v = f.v[di.series_base + off[j]];
                        if (v == v) sum += v;
                    }
                r->disk_err[(size_t)k * r->ndisk + i] = sum;
                r->disk_serial[(size_t)k * r->ndisk + i] = di.present ? di.serial : NULL;
            }
        }
        if (keep & KEEP_GPU) {
            for (uint32_t i = 0; i < r->ngpu; i++) {
                sim_device_info_t di;
                sim_gpu_info(s, i, &di);
                if (pcie_off == UINT32_MAX) /* found by name in the first GPU's block */
                    for (uint32_t j = 0; j < di.nseries; j++) {
                        const sim_series_t *se = sim_series_get(s, di.series_base + j);
                        for (uint32_t l = 0; l < se->nlabels; l++)
                            if (!strcmp(se->labels[l].name.ptr, "__name__") &&
                                !strcmp(se->labels[l].value.ptr, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"))
                                pcie_off = j;
                    }
                assert_true(pcie_off < di.nseries);
                double v = f.v[di.series_base + pcie_off];
                r->gpu_pcie[(size_t)k * r->ngpu + i] = v == v ? v : 0;
                r->gpu_uuid[(size_t)k * r->ngpu + i] = di.present ? di.serial : NULL;
            }
        }
        for (uint32_t e = 0; e < f.nevents; e++) {
            if (r->nev == r->evcap) {
                r->evcap = r->evcap ? r->evcap * 2 : 256;
                r->ev = realloc(r->ev, r->evcap * sizeof *r->ev);
                assert_non_null(r->ev);
            }
            r->ev[r->nev++] = f.events[e];
        }
        r->end_ms = f.t_ms;
    }
    for (size_t i = 0; i < r->nev; i++)
        for (size_t j = i + 1; j < r->nev; j++)
            if (llabs(r->ev[i].t_ms - r->ev[j].t_ms) <= 3 * 86400000LL) {
                r->time_pairs++;
                r->cofail_pairs += r->ev[i].node == r->ev[j].node;
            }
    sim_stats(s, &r->st);
    r->sim = s;
}

static void run_free(run_t *r)
{
    free(r->disk_err);
    free(r->disk_serial);
    free(r->gpu_pcie);
    free(r->gpu_uuid);
    free(r->ev);
    sim_destroy(r->sim);
}

static void stat_config(sim_config_t *c, uint64_t seed)
{
    sim_config_init(c);
    c->seed = seed;
    c->nodes = 100;
    c->interval_ms = 6 * 3600000;
    c->hazard_scale = 16;
}

/* Realised hazard firings match the integrated hazard; with a flat hazard
 * and no stressors the realised disk AFR is the configured one. */
static void test_stat_failure_rates(void **state)
{
    (void)state;
    sim_config_t c;
    stat_config(&c, g_seed);
    c.node_stressor_rate = c.rack_stressor_rate = 0;
    c.disk_cofail_mult = 1;
    c.disk_bathtub = 0;
    run_t r;
    run_fleet(&c, 4 * 120, &r, 0);
    double lo, hi;
    poisson_bounds(r.st.expected_disk_triggers, &lo, &hi);
    fprintf(stderr, "[rates] disk triggers %" PRIu64 " expected %.1f [%.1f, %.1f]\n",
            r.st.disk_triggers, r.st.expected_disk_triggers, lo, hi);
    assert_true(r.st.disk_triggers >= lo && r.st.disk_triggers <= hi);
    poisson_bounds(r.st.expected_gpu_triggers, &lo, &hi);
    fprintf(stderr, "[rates] gpu triggers %" PRIu64 " expected %.1f [%.1f, %.1f]\n",
            r.st.gpu_triggers, r.st.expected_gpu_triggers, lo, hi);
    assert_true(r.st.gpu_triggers >= lo && r.st.gpu_triggers <= hi);
    /* Calibration: AFR = triggers / device-years / hazard_scale. Model mix,
     * workload and temperature factors average ~1 by construction: allow the
     * Poisson bounds plus 25 %. */
    double dy = r.st.disk_hours / 8766.0;
    double afr = (double)r.st.disk_triggers / dy / c.hazard_scale;
    double m = c.disk_afr * c.hazard_scale * dy;
    poisson_bounds(m, &lo, &hi);
    fprintf(stderr, "[rates] disk AFR %.4f (configured %.4f; %.0f disk-years)\n", afr, c.disk_afr,
            dy);
    assert_true(r.st.disk_triggers >= 0.75 * lo && r.st.disk_triggers <= 1.25 * hi);
    double gy = r.st.gpu_hours / 8766.0;
    fprintf(stderr, "[rates] gpu AFR %.4f (configured %.4f)\n",
            (double)r.st.gpu_triggers / gy / c.hazard_scale, c.gpu_afr);
    poisson_bounds(c.gpu_afr * c.hazard_scale * gy, &lo, &hi);
    assert_true(r.st.gpu_triggers >= 0.75 * lo && r.st.gpu_triggers <= 1.4 * hi);
    run_free(&r);
}

static int binom_ok(size_t k, size_t n, double p, const char *what)
{
    double m = (double)n * p, sd = sqrt((double)n * p * (1 - p));
    int ok = fabs((double)k - m) <= 3.29 * sd + 1;
    fprintf(stderr, "[%s] %zu of %zu (%.3f; configured %.3f; bound +-%.1f) %s\n", what, k, n,
            n ? (double)k / (double)n : 0.0, p, 3.29 * sd + 1, ok ? "ok" : "FAIL");
    return ok;
}

/* Precursor fractions (unstressed failures whose trigger is early enough
 * for the longest lead to have run out), SMART growth before precursor disk
 * failures, and no growth in the days before sudden ones. */
static void test_stat_precursors(void **state)
{
    (void)state;
    sim_config_t c;
    stat_config(&c, g_seed);
    c.node_stressor_rate = c.rack_stressor_rate = 0;
    c.disk_cofail_mult = 1;
    c.hazard_scale = 30;
    c.nodes = 75;
    c.disk_background_frac = 0;
    uint32_t steps = 4 * 100;
    run_t r;
    run_fleet(&c, steps, &r, KEEP_SMART);
    int64_t dcut = r.end_ms - (int64_t)(c.disk_lead_max_days * 86400000.0);
    int64_t gcut = r.end_ms - (int64_t)(c.gpu_lead_max_days * 86400000.0);
    size_t dn = 0, dk = 0, gn = 0, gk = 0, grow_ok = 0, grow_n = 0, flat_ok = 0, flat_n = 0;
    for (size_t i = 0; i < r.nev; i++) {
        const sim_event_t *e = &r.ev[i];
        if (e->kind == SIM_KIND_DISK && e->trigger_ms <= dcut) {
            dn++;
            dk += e->precursor;
        }
        if (e->kind == SIM_KIND_GPU && e->trigger_ms <= gcut) {
            gn++;
            gk += e->precursor;
        }
        if (e->kind != SIM_KIND_DISK || e->device[0] != 's') continue;
        uint32_t di = e->node * c.disks_per_node + e->dev;
        size_t kf = (size_t)((e->t_ms - c.start_ms) / c.interval_ms);
        size_t kt = (size_t)((e->trigger_ms - c.start_ms) / c.interval_ms);
        double at_fail = r.disk_err[kf * r.ndisk + di];
        if (e->precursor) {
            grow_n++;
            grow_ok += at_fail > r.disk_err[kt * r.ndisk + di];
        } else if (kf >= 12) {
            flat_n++;
            flat_ok += at_fail == r.disk_err[(kf - 12) * r.ndisk + di];
        }
    }
    assert_true(dn >= 30 && gn >= 30);
    assert_true(binom_ok(dk, dn, c.disk_precursor_frac, "disk precursor fraction"));
    assert_true(binom_ok(gk, gn, c.gpu_precursor_frac, "gpu precursor fraction"));
    fprintf(stderr,
            "[precursors] SMART grew before %zu/%zu precursor failures; flat for 3 days "
            "before %zu/%zu sudden ones\n",
            grow_ok, grow_n, flat_ok, flat_n);
    assert_true(grow_n > 0 && grow_ok >= grow_n * 9 / 10);
    assert_true(flat_n > 0 && flat_ok >= flat_n * 9 / 10);
    run_free(&r);
}

/* Stressors: the hazard rate under stress is about stressor_hazard_mult
 * times the unstressed one, and failures cluster on nodes (co-failure pairs
 * well above the same fleet without stressors). */
static void test_stat_neighbourhood(void **state)
{
    (void)state;
    sim_config_t c;
    stat_config(&c, g_seed);
    c.node_stressor_rate = 6;
    c.rack_stressor_rate = 2;
    c.stressor_hazard_mult = 25;
    c.stressor_tail_days = 0; /* the ratio below compares active-stress hours only */
    c.disk_cofail_mult = 1;
    c.hazard_scale = 30;
    run_t r;
    run_fleet(&c, 4 * 120, &r, 0);
    double hs = r.st.disk_stressed_hours + r.st.gpu_stressed_hours;
    double hu = r.st.disk_hours + r.st.gpu_hours - hs;
    uint64_t ks = r.st.disk_triggers_stressed + r.st.gpu_triggers_stressed;
    uint64_t ku = r.st.disk_triggers + r.st.gpu_triggers - ks;
    double ratio = ((double)ks / hs) / ((double)ku / hu);
    /* 99.9 % interval of the ratio from the binomial split of k = ks + ku
     * (log scale, delta method). */
    double se = sqrt(1.0 / (double)ks + 1.0 / (double)ku);
    double lo = ratio * exp(-3.29 * se), hi = ratio * exp(3.29 * se);
    fprintf(stderr,
            "[neighbourhood] stressed %" PRIu64 " firings in %.0f h, unstressed %" PRIu64
            " in %.0f h: hazard ratio %.2f [%.2f, %.2f] (configured multiplier %.1f; cooling "
            "adds temperature effects)\n",
            ks, hs, ku, hu, ratio, lo, hi, c.stressor_hazard_mult);
    assert_true(lo <= c.stressor_hazard_mult * 1.4 && hi >= c.stressor_hazard_mult);
    sim_config_t c0 = c;
    c0.node_stressor_rate = c0.rack_stressor_rate = 0;
    run_t r0;
    run_fleet(&c0, 4 * 120, &r0, 0);
    /* Without node correlation a pair of failures close in time shares a
     * node with probability 1/nodes: expected = time_pairs / nodes. */
    double e1 = (double)r.time_pairs / c.nodes, e0 = (double)r0.time_pairs / c.nodes;
    fprintf(stderr,
            "[neighbourhood] same-node failure pairs within 3 days: %" PRIu64 " (chance %.1f) of "
            "%zu failures with stressors; %" PRIu64 " (chance %.1f) of %zu without\n",
            r.cofail_pairs, e1, r.nev, r0.cofail_pairs, e0, r0.nev);
    assert_true((double)r.cofail_pairs > e1 + 3.29 * sqrt(e1) + 1);
    assert_true((double)r.cofail_pairs > 2.0 * e1);
    assert_true((double)r0.cofail_pairs <= e0 + 3.29 * sqrt(e0) + 1);
    /* A disk failure raises its neighbours' hazard (rebuild load): without
     * stressors, same-node pairs come back above chance. */
    sim_config_t c1 = c0;
    c1.disk_cofail_mult = 8;
    run_t r1;
    run_fleet(&c1, 4 * 120, &r1, 0);
    /* Disk failures within disk_cofail_days of each other. */
    size_t nb = 0, nd = 0, tp = 0, sp = 0;
    int64_t win = (int64_t)(c1.disk_cofail_days * 86400000.0);
    for (size_t i = 0; i < r1.nev; i++) {
        if (r1.ev[i].kind != SIM_KIND_DISK) continue;
        nd++;
        nb += r1.ev[i].stress == SIM_STRESS_NEIGHBOUR;
        for (size_t j = i + 1; j < r1.nev; j++)
            if (r1.ev[j].kind == SIM_KIND_DISK && llabs(r1.ev[i].t_ms - r1.ev[j].t_ms) <= win) {
                tp++;
                sp += r1.ev[i].node == r1.ev[j].node;
            }
    }
    double e2 = (double)tp / c.nodes;
    fprintf(stderr,
            "[neighbourhood] disk_cofail_mult %.0f, no stressors: %zu (chance %.1f) same-node "
            "disk pairs within %.0f days of %zu disk failures, %zu caused by a neighbour's\n",
            c1.disk_cofail_mult, sp, e2, c1.disk_cofail_days, nd, nb);
    assert_true((double)sp > e2 + 3.29 * sqrt(e2) + 1);
    assert_true(nb > 0);
    run_free(&r);
    run_free(&r0);
    run_free(&r1);
}

/* Whether the SMART error counters of the disk in slot i (only the disk
 * `serial` if not NULL) grew between steps k0 and k1, comparing steps that
 * hold the same disk (a replacement is not growth). */
static int grew_in(const run_t *r, uint32_t i, size_t k0, size_t k1, const char *serial)
{
    for (size_t k = k0 + 1; k <= k1; k++) {
        const char *a = r->disk_serial[(k - 1) * r->ndisk + i],
                   *b = r->disk_serial[k * r->ndisk + i];
        if (a && a == b && (!serial || a == serial) &&
            r->disk_err[k * r->ndisk + i] > r->disk_err[(k - 1) * r->ndisk + i])
            return 1;
    }
    return 0;
}

/* Stressors show in the telemetry of the node's stress bays only, while the
 * hazard of every disk rises: a stress-caused failure in another bay without
 * a SMART precursor of its own is silent on the device itself (its SMART
 * error counters flat for the 7 days before), and for power and vibration
 * stress a neighbour's counters grew in those days. The silent fraction of
 * stress-caused failures matches (1 - precursor_frac / 2) x (share of quiet
 * bays). */
static void test_stat_stress_visibility(void **state)
{
    (void)state;
    sim_config_t c;
    stat_config(&c, g_seed);
    c.node_stressor_rate = 2;
    c.rack_stressor_rate = 1;
    c.disk_cofail_mult = 1;
    c.hazard_scale = 30;
    c.disk_background_frac = 0;
    uint32_t steps = 4 * 120, back = 4 * 7;
    run_t r;
    run_fleet(&c, steps, &r, KEEP_SMART);
    const sim_t *s = r.sim;
    uint32_t D = c.disks_per_node, ata = 0, shown = 0;
    for (uint32_t i = 0; i < r.ndisk; i++) {
        sim_device_info_t di;
        sim_disk_info(s, i, &di);
        if (di.nvme) continue;
        ata++;
        shown += di.stress_visible != 0;
    }
    size_t n = 0, silent = 0, quiet_ok = 0, nb_n = 0, nb_ok = 0, bay_shown = 0;
    for (size_t i = 0; i < r.nev; i++) {
        const sim_event_t *e = &r.ev[i];
        if (e->kind != SIM_KIND_DISK || e->device[0] != 's' || !e->stress ||
            e->stress == SIM_STRESS_NEIGHBOUR)
            continue;
        size_t kf = (size_t)((e->t_ms - c.start_ms) / c.interval_ms);
        if (kf < back) continue;
        uint32_t di_idx = e->node * D + e->dev;
        sim_device_info_t di;
        sim_disk_info(s, di_idx, &di);
        n++;
        bay_shown += di.stress_visible != 0;
        if (e->precursor || di.stress_visible) continue;
        silent++;
        quiet_ok += !grew_in(&r, di_idx, kf - back, kf, e->serial);
        if (e->stress == SIM_STRESS_COOLING) continue;
        nb_n++;
        int grew = 0;
        for (uint32_t j = 0; j < D && !grew; j++)
            if (j != e->dev) grew = grew_in(&r, e->node * D + j, kf - back, kf, NULL);
        nb_ok += grew;
    }
    double q = 1.0 - (double)shown / (double)ata;
    double p = (1.0 - c.disk_precursor_frac * 0.5) * q;
    fprintf(stderr,
            "[visibility] %u of %u ATA bays show stress; %zu stress-caused ATA failures, %zu in a "
            "stress bay; %zu silent (no precursor, quiet bay): own SMART flat 7 d before %zu/%zu, "
            "a neighbour's grew (power, vibration) %zu/%zu\n",
            shown, ata, n, bay_shown, silent, quiet_ok, silent, nb_ok, nb_n);
    assert_true(n >= 40);
    assert_true(shown > 0 && shown < ata / 2);
    /* Failures of one stress episode come together (a node's bays share
     * it), so the binomial spread is widened by a design effect of 3. */
    double sd = sqrt(3.0 * (double)n * p * (1 - p));
    fprintf(stderr, "[visibility] silent fraction %.3f, configured %.3f, bound +-%.1f failures\n",
            (double)silent / (double)n, p, 3.29 * sd + 1);
    assert_true(fabs((double)silent - (double)n * p) <= 3.29 * sd + 1);
    assert_true(silent > 0 && quiet_ok == silent);
    assert_true(nb_n > 0 && nb_ok >= nb_n * 7 / 10);
    run_free(&r);
}

/* PCIe replays the GPU in slot i (only `uuid` if not NULL) gained between steps k0 and k1,
 * over steps that hold the same GPU (a replacement's fresh counter is not growth). */
static double gpu_pcie_gain(const run_t *r, uint32_t i, size_t k0, size_t k1, const char *uuid)
{
    double gain = 0;
    for (size_t k = k0 + 1; k <= k1; k++) {
        const char *a = r->gpu_uuid[(k - 1) * r->ngpu + i], *b = r->gpu_uuid[k * r->ngpu + i];
        if (a && a == b && (!uuid || a == uuid))
            gain += r->gpu_pcie[k * r->ngpu + i] - r->gpu_pcie[(k - 1) * r->ngpu + i];
    }
    return gain;
}

/* GPUs, the same neighbourhood as disks: cooling and power stressors raise the hazard of every
 * GPU of the node through a stress dose but show only in the node's stress slots. Vibration
 * does not reach GPUs (no stress-caused GPU failure names it); the silent fraction of the
 * stress-caused GPU failures (no precursor, quiet slot) matches (1 - precursor_frac / 2) x
 * (share of quiet slots); a silent one gained no more than background PCIe replays in the
 * 7 days before it failed, and under power stress a neighbour's replays jumped then. */
static void test_stat_gpu_stress_visibility(void **state)
{
    (void)state;
    sim_config_t c;
    stat_config(&c, g_seed);
    c.disks_per_node = c.nvme_per_node = 0;
    c.node_stressor_rate = 2;
    c.rack_stressor_rate = 1;
    c.hazard_scale = 30;
    uint32_t steps = 4 * 120, back = 4 * 7;
    run_t r;
    run_fleet(&c, steps, &r, KEEP_GPU);
    const sim_t *s = r.sim;
    uint32_t G = c.gpus_per_node, shown = 0;
    for (uint32_t nd = 0; nd < c.nodes; nd++) {
        uint32_t on_node = 0;
        for (uint32_t g = 0; g < G; g++) {
            sim_device_info_t di;
            sim_gpu_info(s, nd * G + g, &di);
            on_node += di.stress_visible != 0;
        }
        assert_true(on_node >= 1);
        shown += on_node;
    }
    size_t n = 0, silent = 0, quiet_ok = 0, nb_n = 0, nb_ok = 0, vib = 0, n_all = 0;
    for (size_t i = 0; i < r.nev; i++) {
        const sim_event_t *e = &r.ev[i];
        if (e->kind != SIM_KIND_GPU || !e->stress) continue;
        n_all++;
        vib += e->stress == SIM_STRESS_VIBRATION || e->stress == SIM_STRESS_NEIGHBOUR;
        size_t kf = (size_t)((e->t_ms - c.start_ms) / c.interval_ms);
        if (kf < back) continue;
        sim_device_info_t di;
        sim_gpu_info(s, e->node * G + e->dev, &di);
        n++;
        if (e->precursor || di.stress_visible) continue;
        silent++;
        quiet_ok += gpu_pcie_gain(&r, e->node * G + e->dev, kf - back, kf, e->serial) < 10;
        if (e->stress != SIM_STRESS_POWER) continue;
        nb_n++;
        int jumped = 0;
        for (uint32_t j = 0; j < G && !jumped; j++)
            if (j != e->dev) jumped = gpu_pcie_gain(&r, e->node * G + j, kf - back, kf, NULL) >= 10;
        nb_ok += jumped;
    }
    double q = 1.0 - (double)shown / (double)r.ngpu;
    double p = (1.0 - c.gpu_precursor_frac * 0.5) * q;
    double sd = sqrt(3.0 * (double)n * p * (1 - p)); /* design effect 3, as for disks */
    fprintf(stderr,
            "[gpu visibility] %u of %u GPU slots show stress; %zu stress-caused GPU failures "
            "(%zu vibration/neighbour); %zu silent (no precursor, quiet slot): fraction %.3f, "
            "configured %.3f, bound +-%.1f; own PCIe replays flat 7 d before %zu/%zu; a "
            "neighbour's jumped (power) %zu/%zu\n",
            shown, r.ngpu, n_all, vib, silent, (double)silent / (double)n, p, 3.29 * sd + 1,
            quiet_ok, silent, nb_ok, nb_n);
    assert_true(n >= 40);
    assert_int_equal(vib, 0);
    assert_true(shown > 0 && shown < r.ngpu / 2);
    assert_true(fabs((double)silent - (double)n * p) <= 3.29 * sd + 1);
    assert_true(silent > 0 && quiet_ok >= silent * 95 / 100);
    assert_true(nb_n > 0 && nb_ok >= nb_n * 7 / 10);
    run_free(&r);
}

/* ---- API edges -------------------------------------------------------------------- */

static void test_config_and_api(void **state)
{
    (void)state;
    sim_config_t c;
    sim_t *s = NULL;
    sim_config_init(&c);
    c.nodes = 0;
    assert_int_equal(sim_create(&c, &s), SIM_EINVAL);
    sim_config_init(&c);
    c.disk_precursor_frac = 1.5;
    assert_int_equal(sim_create(&c, &s), SIM_EINVAL);
    sim_config_init(&c);
    c.nvme_per_node = 9;
    assert_int_equal(sim_create(&c, &s), SIM_EINVAL);
    sim_config_init(&c);
    c.interval_ms = 0;
    assert_int_equal(sim_create(&c, &s), SIM_EINVAL);
    assert_null(s);
    sim_destroy(NULL);
    assert_string_equal(sim_strerror(SIM_ENOMEM), "out of memory");
    /* Irregular steps: forward only. */
    sim_config_init(&c);
    c.nodes = 2;
    c.gpus_per_node = 0;
    c.nodes_per_rack = 0;
    assert_int_equal(sim_create(&c, &s), 0);
    sim_frame_t f;
    assert_int_equal(sim_step_to(s, 1000, &f), 0);
    assert_int_equal(sim_step_to(s, 1000, &f), SIM_EINVAL);
    assert_int_equal(sim_step_to(s, 61000, &f), 0);
    assert_int_equal(f.t_ms, 61000);
    /* No racks: no rack label; labels sorted; __name__ present. */
    for (uint32_t i = 0; i < sim_series_count(s); i++) {
        const sim_series_t *se = sim_series_get(s, i);
        int has_name = 0;
        for (uint32_t l = 0; l < se->nlabels; l++) {
            assert_true(strcmp(se->labels[l].name.ptr, "rack") != 0);
            if (!strcmp(se->labels[l].name.ptr, "__name__")) has_name = 1;
            if (l) assert_true(strcmp(se->labels[l - 1].name.ptr, se->labels[l].name.ptr) < 0);
        }
        assert_true(has_name);
    }
    sim_destroy(s);
    char buf[32];
    assert_string_equal(sim_time_format(0, 0, buf, sizeof buf), "1970-01-01T00:00:00.000Z");
    assert_string_equal(sim_time_format(1709210096789LL, 0, buf, sizeof buf),
                        "2024-02-29T12:34:56.789Z");
    assert_string_equal(sim_time_format(-1, 1, buf, sizeof buf), "1969-12-31");
}

int main(void)
{
    g_seed = tu_seed("test_sim", 42);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_and_api),
        cmocka_unit_test(test_determinism_frames),
        cmocka_unit_test(test_csv_identical_and_backblaze_invariants),
        cmocka_unit_test(test_store_identical),
        cmocka_unit_test(test_rw_encode_roundtrip),
        cmocka_unit_test(test_stat_failure_rates),
        cmocka_unit_test(test_stat_precursors),
        cmocka_unit_test(test_stat_neighbourhood),
        cmocka_unit_test(test_stat_stress_visibility),
        cmocka_unit_test(test_stat_gpu_stress_visibility),
    };
    const char *filter = getenv("AUGUR_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
