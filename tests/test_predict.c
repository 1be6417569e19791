/*
 * test_predict.c — failure prediction in the server.
 *
 * In process (models/predict.h): model validation messages (wrong kind, foreign schema,
 * corrupted, truncated); predict_run on a hand-written store: every device scored, attention
 * weights of a node sum to 1 with the slot, features ranked by magnitude, series written with
 * the alert rules' label names, node risk = 1 − Π(1 − p).
 *
 * End to end: `$AUGUR_BIN serve --predict.model.disk=<tiny model>` on a free loopback port;
 * disk telemetry imported for 2 nodes × 2 disks; POST /api/v1/admin/predict; the probabilities
 * and node risks read back through /api/v1/query; GET /api/v1/predictions JSON shape, ranking
 * and parameter errors; a corrupted and a wrong-kind model refused by POST
 * /api/v1/admin/reload and by SIGHUP while the old model keeps serving; a good new model
 * accepted (its checksum shows).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "models/features.h"
#include "models/ntam.h"
#include "models/ntam_file.h"
#include "models/predict.h"
#include "testhttp.h"
#include "testutil.h"
#include "tsdb/tsdb.h"

enum { TW = 3 };

/* A tiny untrained model of the disk (or GPU) schema and neighbourhood scope, saved at path. */
static void write_model_scope(const char *path, int kind, uint64_t seed, uint64_t schema_override,
                              int scope)
{
    feat_kind_t fk = kind ? FEAT_KIND_GPU : FEAT_KIND_DISK;
    ntam_hparams_t hp;
    ntam_hparams_default(&hp, (int)feat_count(fk), TW);
    hp.d_model = 8;
    hp.d_ff = 8;
    hp.d_head = 8;
    ntam_bundle_t b;
    memset(&b, 0, sizeof b);
    assert_int_equal(ntam_create(&hp, seed, &b.model), 0);
    b.kind = kind;
    b.horizon = 7;
    b.n_features = (int32_t)feat_count(fk);
    for (int f = 0; f < b.n_features; f++) {
        snprintf(b.feature[f], NTAM_FEATURE_NAME, "%s", feat_name(fk, (uint32_t)f));
        b.mean[f] = 0;
        b.scale[f] = 1;
    }
    b.schema_hash = schema_override ? schema_override : feat_schema_hash(fk);
    b.threshold = 0.5f;
    b.seed = seed;
    b.folds = 5;
    b.scope = scope;
    b.scope_cap = 128;
    assert_int_equal(ntam_bundle_save(&b, path), 0);
    ntam_bundle_clear(&b);
}

static void write_model(const char *path, int kind, uint64_t seed, uint64_t schema_override)
{
    write_model_scope(path, kind, seed, schema_override, FEAT_SCOPE_NODE);
}

static void test_model_validation(void **state)
{
    (void)state;
    char dir[256], path[300], err[600];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/m.ntam", dir);
    predict_model_t *m = NULL;
    write_model(path, 0, 1, 0);
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), 0);
    assert_non_null(m);
    assert_int_equal(m->kind, FEAT_KIND_DISK);
    predict_model_destroy(m);
    /* wrong kind */
    assert_int_equal(predict_model_load(path, FEAT_KIND_GPU, &m, err, sizeof err), NTAM_ESCHEMA);
    assert_null(m);
    assert_non_null(strstr(err, "feature schema"));
    write_model(path, 1, 1, feat_schema_hash(FEAT_KIND_DISK));
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), NTAM_ESCHEMA);
    assert_non_null(strstr(err, "trained for gpu"));
    /* foreign schema */
    write_model(path, 0, 1, 0x1234);
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), NTAM_ESCHEMA);
    assert_non_null(strstr(err, "different feature schema"));
    /* corrupted, truncated, missing */
    write_model(path, 0, 1, 0);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), NTAM_ECHECKSUM);
    assert_non_null(strstr(err, "corrupted"));
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), NTAM_ETRUNC);
    unlink(path);
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), NTAM_EIO);
    assert_non_null(strstr(err, "cannot open"));
    tu_rmrf(dir);
}

#define HOUR 3600000LL

static void put(tsdb_t *db, const char *const *kv, int64_t t, double v)
{
    tsdb_label_t l[12];
    uint32_t n = 0;
    for (; kv[2 * n]; n++)
        l[n] = (tsdb_label_t){{kv[2 * n], (uint32_t)strlen(kv[2 * n])},
                              {kv[2 * n + 1], (uint32_t)strlen(kv[2 * n + 1])}};
    tsdb_sample_t s = {t, v};
    tsdb_series_in_t in = {l, n, &s, 1};
    assert_int_equal(tsdb_append(db, &in, 1, NULL, NULL), 0);
}

/* 2 nodes: n1 with sda, sdb (sdb's SMART 5 grows), n2 with sda alone. */
static void fill_store(tsdb_t *db, int64_t T)
{
    static const char *inst[3] = {"n1", "n1", "n2"}, *dev[3] = {"sda", "sdb", "sda"},
                      *ser[3] = {"S1", "S2", "S3"};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < TW; k++) {
            int64_t t = T - (TW - 1 - k) * HOUR - 60000;
            const char *d[] = {"__name__", "smartctl_device", "instance", inst[i],      "device",
                               dev[i],     "serial_number",   ser[i],     "model_name", "M",
                               NULL};
            put(db, d, t, 1);
            char id[8];
            snprintf(id, sizeof id, "5");
            const char *a[] = {"__name__",
                               "smartctl_device_attribute",
                               "instance",
                               inst[i],
                               "device",
                               dev[i],
                               "attribute_id",
                               id,
                               "attribute_value_type",
                               "raw",
                               NULL};
            put(db, a, t, i == 1 ? 10.0 * k * k : 0);
            const char *tp[] = {
                "__name__", "smartctl_device_temperature", "instance", inst[i], "device", dev[i],
                NULL};
            put(db, tp, t, 35 + i);
        }
}

static void test_predict_run_store(void **state)
{
    (void)state;
    char dir[256], path[300], err[600];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/m.ntam", dir);
    write_model(path, 0, 3, 0);
    predict_model_t *m = NULL;
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), 0);
    char sd[300];
    snprintf(sd, sizeof sd, "%s/db", dir);
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(sd, &o, &db), 0);
    int64_t T = 1700000000000LL;
    fill_store(db, T);
    tsdb_reader_t *r = NULL;
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    predict_config_t pc = {HOUR, 2}; /* batches of 2 devices: n1, then n2 */
    predict_result_t *res = NULL;
    assert_int_equal(predict_run(m, r, T, &pc, &res, err, sizeof err), 0);
    tsdb_reader_close(r);
    assert_int_equal(res->n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const predict_score_t *s = &res->score[i];
        assert_true(s->prob > 0 && s->prob < 1);
        float sum = s->slot_weight;
        for (int k = 0; k < s->nnb; k++)
            sum += s->nb[k].weight;
        assert_true(fabsf(sum - 1) < 1e-4f);
        for (int k = 1; k < s->nfeat; k++)
            assert_true(fabsf(s->feat[k - 1].value) >= fabsf(s->feat[k].value));
    }
    assert_int_equal(res->score[0].nnb, 1); /* n1/sda sees n1/sdb */
    assert_int_equal(res->score[0].nb[0].device, 1);
    assert_int_equal(res->score[2].nnb, 0); /* alone on n2 */
    assert_true(fabsf(res->score[2].slot_weight - 1) < 1e-6f);
    /* the grown SMART 5 of n1/sdb is among its top features */
    int seen = 0;
    for (int k = 0; k < res->score[1].nfeat; k++)
        seen |=
            !strcmp(feat_name(FEAT_KIND_DISK, res->score[1].feat[k].feature), "log1p_inc_smart_5");
    assert_true(seen);
    /* series */
    assert_int_equal(predict_result_append(db, res), 0);
    const predict_result_t *both[2] = {res, NULL};
    uint32_t nodes = 0;
    assert_int_equal(predict_node_risk_append(db, both, 2, T, &nodes), 0);
    assert_int_equal(nodes, 2);
    assert_int_equal(tsdb_reader_open(db, &r), 0);
    tsdb_matcher_t mt[3];
    memset(mt, 0, sizeof mt);
    mt[0].type = TSDB_MATCH_EQ;
    mt[0].name = "__name__";
    mt[0].value = "augur_node_failure_risk";
    mt[1].type = TSDB_MATCH_EQ;
    mt[1].name = "instance";
    mt[1].value = "n1";
    tsdb_sids_t sids = {0};
    assert_int_equal(tsdb_select(r, mt, 2, T, T, &sids), 0);
    assert_int_equal(sids.n, 1);
    tsdb_iter_t *it = NULL;
    assert_int_equal(tsdb_iter_open(r, sids.ids[0], T, T, &it), 0);
    const tsdb_sample_t *sm;
    size_t ns;
    assert_int_equal(tsdb_iter_next(it, &sm, &ns), 1);
    assert_int_equal(ns, 1);
    double want = 1 - (1 - (double)res->score[0].prob) * (1 - (double)res->score[1].prob);
    assert_true(fabs(sm[0].v - want) < 1e-9);
    tsdb_iter_close(it);
    tsdb_sids_free(&sids);
    mt[0].value = "augur_failure_probability";
    mt[1].name = "serial";
    mt[1].value = "S2";
    mt[2].type = TSDB_MATCH_EQ;
    mt[2].name = "kind";
    mt[2].value = "disk";
    memset(&sids, 0, sizeof sids);
    assert_int_equal(tsdb_select(r, mt, 3, T, T, &sids), 0);
    assert_int_equal(sids.n, 1);
    tsdb_sids_free(&sids);
    tsdb_reader_close(r);
    /* the same weights with scope rack or pod: these devices have no rack or pod label, so
     * each keeps its node (feat_scope_t's fallback) and every probability is the same */
    for (int sc = FEAT_SCOPE_RACK; sc <= FEAT_SCOPE_POD; sc++) {
        m->b.scope = sc;
        predict_result_t *rr = NULL;
        assert_int_equal(tsdb_reader_open(db, &r), 0);
        assert_int_equal(predict_run(m, r, T, &pc, &rr, err, sizeof err), 0);
        tsdb_reader_close(r);
        assert_int_equal(rr->n, 3);
        for (uint32_t i = 0; i < 3; i++) {
            assert_true(rr->score[i].prob == res->score[i].prob);
            assert_int_equal(rr->score[i].nnb, res->score[i].nnb);
        }
        predict_result_destroy(rr);
    }
    predict_result_destroy(res);
    predict_model_destroy(m);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* A rack larger than the model's cap: 20 nodes x 4 disks in one rack, cap 64 → two chunks of
 * 10 whole nodes; no neighbour crosses the cut, batches grow to hold a whole chunk (batch_dev
 * 16 < 40), and the cap changes the probabilities (without it every disk sees all 79 others). */
static void test_predict_rack_cap(void **state)
{
    (void)state;
    char dir[256], path[300], err[600], sd[300];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/m.ntam", dir);
    write_model_scope(path, 0, 11, 0, FEAT_SCOPE_RACK);
    predict_model_t *m = NULL;
    assert_int_equal(predict_model_load(path, FEAT_KIND_DISK, &m, err, sizeof err), 0);
    assert_int_equal(m->b.scope, FEAT_SCOPE_RACK);
    snprintf(sd, sizeof sd, "%s/db", dir);
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    tsdb_t *db = NULL;
    assert_int_equal(tsdb_open(sd, &o, &db), 0);
    int64_t T = 1700000000000LL;
    for (int nd = 0; nd < 20; nd++)
        for (int k = 0; k < 4; k++)
            for (int w = 0; w < TW; w++) {
                char inst[16], dev[8], ser[16], v5[16];
                snprintf(inst, sizeof inst, "n%02d", nd);
                snprintf(dev, sizeof dev, "sd%c", 'a' + k);
                snprintf(ser, sizeof ser, "S%02d%d", nd, k);
                int64_t t = T - (TW - 1 - w) * HOUR - 60000;
                const char *d[] = {"__name__", "smartctl_device", "instance", inst,   "device",
                                   dev,        "serial_number",   ser,        "rack", "r1",
                                   NULL};
                put(db, d, t, 1);
                snprintf(v5, sizeof v5, "5");
                const char *a5[] = {"__name__",
                                    "smartctl_device_attribute",
                                    "instance",
                                    inst,
                                    "device",
                                    dev,
                                    "attribute_id",
                                    v5,
                                    "attribute_value_type",
                                    "raw",
                                    NULL};
                put(db, a5, t, (nd * 4 + k) % 7 == 0 ? 5.0 * w * w : 0);
                const char *tp[] = {
                    "__name__", "smartctl_device_temperature", "instance", inst, "device", dev,
                    NULL};
                put(db, tp, t, 30 + (nd % 5) + k);
            }
    float prob[2][80];
    for (int pass = 0; pass < 2; pass++) {
        m->b.scope_cap = pass ? 0 : 64;
        tsdb_reader_t *r = NULL;
        assert_int_equal(tsdb_reader_open(db, &r), 0);
        predict_config_t pc = {HOUR, 16};
        predict_result_t *res = NULL;
        assert_int_equal(predict_run(m, r, T, &pc, &res, err, sizeof err), 0);
        tsdb_reader_close(r);
        assert_int_equal(res->n, 80);
        for (uint32_t i = 0; i < 80; i++) {
            const predict_score_t *sc = &res->score[i];
            prob[pass][i] = sc->prob;
            assert_int_equal(sc->nnb, PREDICT_TOP);
            int half = atoi(feat_devices_get(res->devices, i)->instance + 1) / 10;
            float sum = sc->slot_weight;
            for (int k = 0; k < sc->nnb; k++) {
                sum += sc->nb[k].weight;
                assert_true(sc->nb[k].device != i);
                int nh = atoi(feat_devices_get(res->devices, sc->nb[k].device)->instance + 1) / 10;
                if (!pass) assert_int_equal(nh, half); /* never across the cut */
            }
            assert_true(sum <= 1 + 1e-4f);
        }
        predict_result_destroy(res);
    }
    int differ = 0;
    for (int i = 0; i < 80; i++)
        differ += prob[0][i] != prob[1][i];
    assert_true(differ > 0);
    predict_model_destroy(m);
    assert_int_equal(tsdb_close(db), 0);
    tu_rmrf(dir);
}

/* ---- end to end ------------------------------------------------------------------------------ */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One request; the body (NUL-terminated) into buf. Returns the status or -1. */
static int http(unsigned port, const char *method, const char *path, const char *body, char *buf,
                size_t cap)
{
    return th_request_buf(port, method, path, body, 20, buf, cap);
}

static int count_str(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int log_has(const char *log, const char *needle)
{
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    char line[4096];
    int hit = 0;
    while (!hit && fgets(line, sizeof line, f))
        hit = strstr(line, needle) != NULL;
    fclose(f);
    return hit;
}

static pid_t live_pid; /* the spawned server, killed by the teardown if a test fails */

static int kill_live(void **state)
{
    (void)state;
    if (live_pid > 0) {
        kill(live_pid, SIGKILL);
        waitpid(live_pid, NULL, 0);
        live_pid = 0;
    }
    return 0;
}

static void test_serve_predictor(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) skip();
    char dir[256], log[300], sp[320], model[300], mflag[340];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(log, sizeof log, "%s/serve.log", dir);
    snprintf(sp, sizeof sp, "--storage.path=%s/data", dir);
    snprintf(model, sizeof model, "%s/disk.ntam", dir);
    snprintf(mflag, sizeof mflag, "--predict.model.disk=%s", model);
    write_model(model, 0, 5, 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    live_pid = pid;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1); /* never ctest's pipe: a leaked server must not hold it open */
        dup2(fd, 2);
        execl(bin, bin, "serve", "--web.listen-address=127.0.0.1:0", sp, mflag,
              "--predict.step.disk=1h", "--predict.interval.disk=1h", "--detect.enabled=false",
              "--drain.enabled=false", (char *)NULL);
        _exit(127);
    }
    unsigned port = 0;
    for (int i = 0; i < 400 && !port; i++) {
        sleep_ms(25);
        FILE *f = fopen(log, "r");
        if (!f) continue;
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            char *q = strstr(line, " port=");
            if (q && strstr(line, "msg=listening")) port = (unsigned)atoi(q + 6);
        }
        fclose(f);
    }
    assert_true(port > 0);
    static char buf[1 << 17];
    int st = -1;
    for (int i = 0; i < 200 && st != 200; i++) {
        st = http(port, "GET", "/-/ready", NULL, buf, sizeof buf);
        if (st != 200) sleep_ms(25);
    }
    assert_int_equal(st, 200);
    /* telemetry: 2 nodes x 2 disks, 3 hourly steps ending a minute ago */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t T = (int64_t)now.tv_sec * 1000 - 60000;
    static char body[1 << 15];
    size_t bl = 0;
    static const char *inst[4] = {"n1", "n1", "n2", "n2"}, *dev[4] = {"sda", "sdb", "sda", "sdb"},
                      *ser[4] = {"S1", "S2", "S3", "S4"};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) {
            long long t = (long long)(T - (2 - k) * HOUR);
            bl += (size_t)snprintf(
                body + bl, sizeof body - bl,
                "smartctl_device{instance=\"%s\",device=\"%s\",serial_number=\"%s\","
                "model_name=\"M\",rack=\"r1\"} 1 %lld\n"
                "smartctl_device_attribute{instance=\"%s\",device=\"%s\",attribute_id=\"5\","
                "attribute_value_type=\"raw\"} %d %lld\n"
                "smartctl_device_temperature{instance=\"%s\",device=\"%s\"} %d %lld\n",
                inst[i], dev[i], ser[i], t, inst[i], dev[i], i == 3 ? 50 * k * k : 0, t, inst[i],
                dev[i], 30 + i, t);
        }
    st = http(port, "POST", "/api/v1/import/prometheus", body, buf, sizeof buf);
    if (st != 204) fprintf(stderr, "import: %d %s\n", st, buf);
    assert_int_equal(st, 204);
    /* evaluate now: /-/ready answered 200 only once the predictor was
     * attached, so there is no 503 window to retry through */
    st = http(port, "POST", "/api/v1/admin/predict", "", buf, sizeof buf);
    if (st != 200) fprintf(stderr, "predict: %d %s\n", st, buf);
    assert_int_equal(st, 200);
    /* the series through PromQL, with the alert rules' label names */
    st = http(port, "GET",
              "/api/v1/query?query=count(augur_failure_probability%7Bkind%3D%22disk%22%7D)", NULL,
              buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, "\"4\""));
    st = http(port, "GET", "/api/v1/query?query=augur_failure_probability%7Bserial%3D%22S4%22%7D",
              NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, "\"instance\":\"n2\""));
    assert_non_null(strstr(buf, "\"device\":\"sdb\""));
    assert_non_null(strstr(buf, "\"rack\":\"r1\""));
    st = http(port, "GET", "/api/v1/query?query=count(augur_node_failure_risk)", NULL, buf,
              sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, "\"2\""));
    /* the ranked list */
    st = http(port, "GET", "/api/v1/predictions?kind=disk&limit=3", NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(
        strstr(buf, "{\"status\":\"success\",\"data\":{\"models\":[{\"kind\":\"disk\""));
    assert_non_null(strstr(buf, "\"total\":4,\"predictions\":["));
    assert_int_equal(count_str(buf, "\"probability\":"), 3 + 3); /* 3 devices + 1 neighbour each */
    assert_int_equal(count_str(buf, "\"features\":["), 3);
    assert_int_equal(count_str(buf, "\"no_neighbour_weight\":"), 3);
    assert_non_null(strstr(buf, "\"neighbours\":[{\"instance\":\""));
    assert_non_null(strstr(buf, "\"scope\":\"node\""));
    /* scope node: a device's neighbours are on its own node (entries {"instance":... are
     * neighbours: a device's own entry starts with "kind") */
    assert_int_equal(
        count_str(buf, "{\"instance\":\"n1\"") + count_str(buf, "{\"instance\":\"n2\""), 3);
    assert_non_null(strstr(buf, "\"horizon_days\":7"));
    /* ranking: probabilities of the listed devices never increase */
    double prev = 2;
    for (const char *p = strstr(buf, "\"predictions\":"); (p = strstr(p, "{\"kind\":\"disk\""));
         p++) {
        const char *q = strstr(p, "\"probability\":");
        assert_non_null(q);
        double v = atof(q + 14);
        assert_true(v <= prev && v > 0 && v < 1);
        prev = v;
    }
    char checksum[40] = "";
    const char *cs = strstr(buf, "\"checksum\":\"");
    assert_non_null(cs);
    memcpy(checksum, cs + 12, 16);
    assert_int_equal(
        http(port, "GET", "/api/v1/predictions?min_probability=2", NULL, buf, sizeof buf), 400);
    assert_int_equal(http(port, "GET", "/api/v1/predictions?kind=tape", NULL, buf, sizeof buf),
                     400);
    st = http(port, "GET", "/api/v1/predictions?kind=gpu", NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, "\"models\":[],\"total\":0,\"predictions\":[]"));
    assert_int_equal(http(port, "GET", "/api/v1/admin/reload", NULL, buf, sizeof buf), 405);
    /* a corrupted model is refused; the old one keeps serving */
    write_model(model, 0, 6, 0);
    FILE *f = fopen(model, "r+b");
    assert_non_null(f);
    fseek(f, 300, SEEK_SET);
    fputc(0xa5, f);
    fclose(f);
    st = http(port, "POST", "/api/v1/admin/reload", "", buf, sizeof buf);
    assert_int_equal(st, 400);
    assert_non_null(strstr(buf, "\"status\":\"error\""));
    assert_non_null(strstr(buf, "checksum mismatch"));
    assert_non_null(strstr(buf, "previous models keep serving"));
    /* a GPU model in the disk slot: refused at SIGHUP too */
    write_model(model, 1, 6, feat_schema_hash(FEAT_KIND_DISK));
    kill(pid, SIGHUP);
    int refused = 0;
    for (int i = 0; i < 200 && !refused; i++) {
        refused = log_has(log, "model reload refused") && log_has(log, "trained for gpu");
        if (!refused) sleep_ms(25);
    }
    assert_true(refused);
    assert_int_equal(http(port, "POST", "/api/v1/admin/predict", "", buf, sizeof buf), 200);
    st = http(port, "GET", "/api/v1/predictions", NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, checksum)); /* still the first model */
    assert_non_null(strstr(buf, "\"total\":4"));
    /* a good new model is taken */
    write_model(model, 0, 7, 0);
    st = http(port, "POST", "/api/v1/admin/reload", "", buf, sizeof buf);
    assert_int_equal(st, 200);
    st = http(port, "GET", "/api/v1/predictions", NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_null(strstr(buf, checksum));
    st = http(port, "GET", "/metrics", NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, "augur_predict_reloads_total{result=\"success\"} 1"));
    assert_non_null(strstr(buf, "augur_predict_reloads_total{result=\"failure\"} 2"));
    /* a rack-scope model: every disk is in rack r1, so each has the 3 others as neighbours,
     * two of them on the other node, and the explanation names their instance */
    write_model_scope(model, 0, 7, 0, FEAT_SCOPE_RACK);
    assert_int_equal(http(port, "POST", "/api/v1/admin/reload", "", buf, sizeof buf), 200);
    assert_int_equal(http(port, "POST", "/api/v1/admin/predict", "", buf, sizeof buf), 200);
    st = http(port, "GET", "/api/v1/predictions?kind=disk&limit=0", NULL, buf, sizeof buf);
    assert_int_equal(st, 200);
    assert_non_null(strstr(buf, "\"scope\":\"rack\",\"scope_cap\":128"));
    assert_int_equal(count_str(buf, "\"probability\":"), 4 + 4 * 3);
    assert_int_equal(count_str(buf, "{\"instance\":\"n1\""), 6);
    assert_int_equal(count_str(buf, "{\"instance\":\"n2\""), 6);
    /* n1/sda's neighbours include n2's disks (its entry, then its neighbour list) */
    const char *e = strstr(buf, "{\"kind\":\"disk\",\"instance\":\"n1\",\"device\":\"sda\"");
    assert_non_null(e);
    const char *nb = strstr(e, "\"neighbours\":[");
    const char *end = strstr(nb, "]}");
    assert_true(nb && end);
    const char *hit = strstr(nb, "{\"instance\":\"n2\",\"device\":\"sdb\",\"serial\":\"S4\"");
    assert_true(hit && hit < end);
    kill(pid, SIGTERM);
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    live_pid = 0;
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    tu_rmrf(dir);
}

/* A bad model file at start: the server refuses to start and says why. */
static void test_serve_bad_model(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) skip();
    char dir[256], log[300], sp[320], model[300], mflag[340];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(log, sizeof log, "%s/serve.log", dir);
    snprintf(sp, sizeof sp, "--storage.path=%s/data", dir);
    snprintf(model, sizeof model, "%s/disk.ntam", dir);
    snprintf(mflag, sizeof mflag, "--predict.model.disk=%s", model);
    FILE *f = fopen(model, "w");
    assert_non_null(f);
    fputs("not a model\n", f);
    fclose(f);
    pid_t pid = fork();
    assert_true(pid >= 0);
    live_pid = pid;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1); /* never ctest's pipe: a leaked server must not hold it open */
        dup2(fd, 2);
        execl(bin, bin, "serve", "--web.listen-address=127.0.0.1:0", sp, mflag,
              "--detect.enabled=false", (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    live_pid = 0;
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 1);
    assert_true(log_has(log, "cannot start failure prediction"));
    assert_true(log_has(log, "bad magic"));
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_validation),
        cmocka_unit_test(test_predict_run_store),
        cmocka_unit_test(test_predict_rack_cap),
        cmocka_unit_test_teardown(test_serve_predictor, kill_live),
        cmocka_unit_test_teardown(test_serve_bad_model, kill_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
