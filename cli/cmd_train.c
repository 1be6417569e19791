/*
 * cmd_train.c — `augur train`: train an NTAM failure predictor and write a model file.
 *
 *   augur train --kind disk --source FILE.csv [--source ...] --window W --horizon H --out MODEL
 *               [--epochs N] [--seed S] [--threads T] [--folds K] [--fold I] [--cv] ...
 *
 * The data are split by device (stratified folds from a seeded hash of the serial) and, with
 * --holdout-days, by time; never by random rows. One fold is the test set, the next one the
 * validation set for early stopping, the rest is trained on. --cv repeats this for every fold
 * and prints the spread. Sources: Backblaze-format CSV files (models/bbcsv.h), or a simulator
 * spec ("sim:nodes=500,days=90,hazard=10"): the fleet simulator (sim/) run in memory, its disks'
 * windows built by models/features.h exactly as the server's predictor builds them from a
 * store, so the model written serves (`augur serve --predict.model.disk`).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "api/predictions.h"
#include "models/bbcsv.h"
#include "models/features.h"
#include "models/metrics.h"
#include "models/ntam.h"
#include "models/ntam_data.h"
#include "models/ntam_eval.h"
#include "models/ntam_file.h"
#include "models/ntam_train.h"
#include "sim/sim.h"

static const char train_usage[] =
    "usage: augur train --kind disk|gpu --source SRC [--source SRC]... --window W --horizon H\n"
    "                   --out MODEL [options]\n"
    "\n"
    "Train the neighbourhood-temporal attention model (NTAM) to predict that a device fails\n"
    "within H days from its last W days of telemetry, and write a versioned model file.\n"
    "\n"
    "Source SRC: a Backblaze drive-stats CSV file (date, serial_number, model, failure,\n"
    "[datacenter, vault_id, pod_id,] smart_N_raw...). Drives on one Storage Pod (pod_id) are\n"
    "neighbours; without pod_id every drive is alone. Or a simulator spec\n"
    "sim:nodes=N,days=N,seed=N,hazard=X[,disks=N,nvme=N,stress=X,rack-stress=X,precursor=X]\n"
    "(defaults 500 nodes, 8 disks of which 1 NVMe, 90 days, seed 1, hazard x1): a simulated\n"
    "fleet stepped daily in memory; features are those of docs/features.md (the server's), so\n"
    "the model written serves with augur serve --predict.model.disk. Disks on a node are\n"
    "neighbours. (Store directories: not yet supported by this command.)\n"
    "\n"
    "Split: devices are dealt into K folds (failed and healthy separately, in seeded hash order);\n"
    "fold I is the test set, fold I+1 the validation set (early stopping on its PR-AUC), the rest\n"
    "is trained on. --holdout-days also splits by time. Never a random row split.\n"
    "\n"
    "Labels: positive iff the device fails 1..H days after the window's last day (H = 0: on that\n"
    "day); rows after the failure are dropped; a never-failed device's last H days are "
    "unlabelled.\n"
    "Features (leak-free by default): log1p of each SMART raw value and, for W > 1, its change "
    "over\n"
    "the window; no date, no age/usage counters (1 4 7 9 12 191 192 193 195 222 240 241 242), no\n"
    "temperatures (190 194).\n"
    "\n"
    "options:\n"
    "  --kind disk|gpu          device kind (CSV sources: disk)\n"
    "  --source SRC             input (repeatable)\n"
    "  --model-filter NAME      keep only rows of this drive model\n"
    "  --window W               days per window (default 14)\n"
    "  --horizon H              days ahead (default 7)\n"
    "  --out MODEL              model file to write\n"
    "  --epochs N               maximum epochs (default 30)\n"
    "  --patience N             stop after N epochs without a better validation PR-AUC (6)\n"
    "  --seed S                 weights and shuffling seed (default 1)\n"
    "  --split-seed S           device-split seed (default 1)\n"
    "  --threads T              OpenBLAS threads (default 1)\n"
    "  --folds K                device folds (default 5, at least 3)\n"
    "  --fold I                 test fold (default 0)\n"
    "  --cv                     train and evaluate every fold; print mean and spread (the model\n"
    "                           of fold I is written)\n"
    "  --holdout-days N         also split by time: train on days before end-N-H, test after\n"
    "  --negatives all|never-failed   negatives from every device (default) or only from\n"
    "                           devices that never failed\n"
    "  --features leakfree|all  feature set (default leakfree)\n"
    "  --d-model D              width (default 64)      --blocks N   attention blocks (1)\n"
    "  --d-ff N                 feed-forward width (128) --d-head N  head width (64)\n"
    "  --batch N                devices per batch (256)\n"
    "  --lr X                   Adam step (1e-3)         --weight-decay X (1e-4)\n"
    "  --loss bce|focal         loss (bce)               --pos-weight X (default sqrt(neg/pos))\n"
    "  --pos-repeat N           oversample groups with a positive N times per epoch (1)\n"
    "  --ema X                  validate and keep a moving average of the weights (0: off)\n"
    "  --neg-keep N             simulator sources: train on 1 in N node-days that hold no\n"
    "                           positive (default 1: all)\n"
    "  --ablate-neighbours      neighbourhood attention off (the ablation baseline)\n"
    "  --with-ablation          in --cv, also train the ablation per fold\n"
    "  --quiet                  no progress output\n";

typedef struct {
    const char *src[64];
    int n_src;
    const char *out, *model_filter;
    int kind;
    ntam_protocol_t pr;
    ntam_hparams_t hp;
    ntam_train_cfg_t tc;
    float pos_weight; /* < 0: auto */
    int threads, cv, with_ablation, quiet, tty, neg_keep;
} targs_t;

typedef struct {
    int tty, quiet, fold;
    double t0;
    const char *tag;
} prog_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress_cb(void *ctx, const ntam_progress_t *p)
{
    prog_t *g = ctx;
    if (g->quiet) return;
    double el = now_s() - g->t0;
    double done = (double)(p->epoch - 1) + (double)p->batch / (double)(p->batches ? p->batches : 1);
    double eta = done > 0 ? el * ((double)p->epochs - done) / done : 0;
    if (g->tty) {
        fprintf(stderr, "\r\033[K%s fold %d epoch %d/%d batch %lld/%lld loss %.4f", g->tag, g->fold,
                p->epoch, p->epochs, (long long)p->batch, (long long)p->batches, p->loss);
        if (p->end_of_epoch)
            fprintf(stderr, " val PR-AUC %.3f (best %.3f)", p->val_pr_auc, p->best_val_pr_auc);
        fprintf(stderr, " ETA %.0fs (max epochs)", eta);
        if (p->end_of_epoch) fputc('\n', stderr);
    } else if (p->end_of_epoch) {
        fprintf(
            stderr, "%s fold %d epoch %d/%d loss %.4f val PR-AUC %.3f best %.3f elapsed %.1fs\n",
            g->tag, g->fold, p->epoch, p->epochs, p->loss, p->val_pr_auc, p->best_val_pr_auc, el);
    }
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || !isfinite(v)) return -1;
    *out = (float)v;
    return 0;
}

/* 0 ok, 1 help, 2 usage error */
static int parse_args(int argc, char **argv, targs_t *a)
{
    memset(a, 0, sizeof *a);
    a->kind = -1;
    ntam_protocol_default(&a->pr);
    ntam_hparams_default(&a->hp, 1, 14);
    ntam_train_cfg_default(&a->tc);
    a->pos_weight = -1;
    a->threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int iv;
        float fv;
#define NEEDV                                                                                      \
    do {                                                                                           \
        if (!v) {                                                                                  \
            fprintf(stderr, "augur train: %s needs a value\n", o);                                 \
            return 2;                                                                              \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
#define BAD                                                                                        \
    do {                                                                                           \
        fprintf(stderr, "augur train: bad value '%s' for %s\n", v, o);                             \
        return 2;                                                                                  \
    } while (0)
        if (!strcmp(o, "--help") || !strcmp(o, "-h"))
            return 1;
        else if (!strcmp(o, "--kind")) {
            NEEDV;
            if (!strcmp(v, "disk"))
                a->kind = NTAM_KIND_DISK;
            else if (!strcmp(v, "gpu"))
                a->kind = NTAM_KIND_GPU;
            else
                BAD;
        } else if (!strcmp(o, "--source")) {
            NEEDV;
            if (a->n_src == 64) BAD;
            a->src[a->n_src++] = v;
        } else if (!strcmp(o, "--model-filter")) {
            NEEDV;
            a->model_filter = v;
        } else if (!strcmp(o, "--out")) {
            NEEDV;
            a->out = v;
        } else if (!strcmp(o, "--window")) {
            NEEDV;
            if (parse_int(v, 1, 366, &a->pr.window)) BAD;
        } else if (!strcmp(o, "--horizon")) {
            NEEDV;
            if (parse_int(v, 0, 366, &a->pr.horizon)) BAD;
        } else if (!strcmp(o, "--epochs")) {
            NEEDV;
            if (parse_int(v, 1, 100000, &a->tc.epochs)) BAD;
        } else if (!strcmp(o, "--patience")) {
            NEEDV;
            if (parse_int(v, 1, 100000, &a->tc.patience)) BAD;
        } else if (!strcmp(o, "--seed")) {
            NEEDV;
            if (parse_int(v, 0, 2147483647, &iv)) BAD;
            a->tc.seed = (uint64_t)iv;
        } else if (!strcmp(o, "--split-seed")) {
            NEEDV;
            if (parse_int(v, 0, 2147483647, &iv)) BAD;
            a->pr.split_seed = (uint64_t)iv;
        } else if (!strcmp(o, "--threads")) {
            NEEDV;
            if (parse_int(v, 1, 256, &a->threads)) BAD;
        } else if (!strcmp(o, "--folds")) {
            NEEDV;
            if (parse_int(v, 3, 100, &a->pr.folds)) BAD;
        } else if (!strcmp(o, "--fold")) {
            NEEDV;
            if (parse_int(v, 0, 99, &a->pr.fold)) BAD;
        } else if (!strcmp(o, "--cv")) {
            a->cv = 1;
        } else if (!strcmp(o, "--holdout-days")) {
            NEEDV;
            if (parse_int(v, 0, 100000, &a->pr.holdout_days)) BAD;
        } else if (!strcmp(o, "--negatives")) {
            NEEDV;
            if (!strcmp(v, "all"))
                a->pr.negatives = NTAM_NEG_ALL;
            else if (!strcmp(v, "never-failed"))
                a->pr.negatives = NTAM_NEG_NEVER_FAILED;
            else
                BAD;
        } else if (!strcmp(o, "--features")) {
            NEEDV;
            if (!strcmp(v, "leakfree"))
                a->pr.features = NTAM_FEAT_LEAKFREE;
            else if (!strcmp(v, "all"))
                a->pr.features = NTAM_FEAT_ALL;
            else
                BAD;
        } else if (!strcmp(o, "--d-model")) {
            NEEDV;
            if (parse_int(v, 1, 1024, &a->hp.d_model)) BAD;
        } else if (!strcmp(o, "--blocks")) {
            NEEDV;
            if (parse_int(v, 1, 8, &a->hp.n_blocks)) BAD;
        } else if (!strcmp(o, "--d-ff")) {
            NEEDV;
            if (parse_int(v, 1, 8192, &a->hp.d_ff)) BAD;
        } else if (!strcmp(o, "--d-head")) {
            NEEDV;
            if (parse_int(v, 1, 4096, &a->hp.d_head)) BAD;
        } else if (!strcmp(o, "--batch")) {
            NEEDV;
            if (parse_int(v, 1, 1 << 20, &a->tc.batch_dev)) BAD;
        } else if (!strcmp(o, "--lr")) {
            NEEDV;
            if (parse_float(v, &fv) || fv <= 0) BAD;
            a->tc.opt.lr = fv;
        } else if (!strcmp(o, "--weight-decay")) {
            NEEDV;
            if (parse_float(v, &fv) || fv < 0) BAD;
            a->tc.opt.weight_decay = fv;
        } else if (!strcmp(o, "--loss")) {
            NEEDV;
            if (!strcmp(v, "bce"))
                a->tc.opt.loss = NTAM_LOSS_BCE;
            else if (!strcmp(v, "focal"))
                a->tc.opt.loss = NTAM_LOSS_FOCAL;
            else
                BAD;
        } else if (!strcmp(o, "--pos-weight")) {
            NEEDV;
            if (parse_float(v, &fv) || fv <= 0) BAD;
            a->pos_weight = fv;
        } else if (!strcmp(o, "--pos-repeat")) {
            NEEDV;
            if (parse_int(v, 1, 1000, &a->tc.pos_repeat)) BAD;
        } else if (!strcmp(o, "--ema")) {
            NEEDV;
            if (parse_float(v, &fv) || fv < 0 || fv >= 1) BAD;
            a->tc.ema = fv;
        } else if (!strcmp(o, "--neg-keep")) {
            NEEDV;
            if (parse_int(v, 1, 1000, &a->neg_keep)) BAD;
        } else if (!strcmp(o, "--ablate-neighbours")) {
            a->hp.ablate_neighbours = 1;
        } else if (!strcmp(o, "--with-ablation")) {
            a->with_ablation = 1;
        } else if (!strcmp(o, "--quiet")) {
            a->quiet = 1;
        } else {
            fprintf(stderr, "augur train: unknown option '%s' (see augur train --help)\n", o);
            return 2;
        }
#undef NEEDV
#undef BAD
    }
    if (a->kind < 0 || !a->n_src || (!a->out && !a->cv)) {
        fprintf(stderr, "augur train: --kind, --source and --out are required\n");
        return 2;
    }
    if (a->pr.fold >= a->pr.folds) {
        fprintf(stderr, "augur train: --fold must be below --folds\n");
        return 2;
    }
    return 0;
}

/* Read every source into t. 0 or 1 (message printed). */
int cli_ntam_load_sources(const char *cmd, int kind, const char *const *src, int n_src,
                          const char *model_filter, bbcsv_t *t);
int cli_ntam_load_sources(const char *cmd, int kind, const char *const *src, int n_src,
                          const char *model_filter, bbcsv_t *t)
{
    bbcsv_init(t);
    for (int i = 0; i < n_src; i++) {
        struct stat st;
        if (!strncmp(src[i], "sim:", 4) || (stat(src[i], &st) == 0 && S_ISDIR(st.st_mode))) {
            fprintf(stderr,
                    "augur %s: %s: store directories and simulator specs are not supported yet "
                    "(they need the shared feature module); export Backblaze-format CSV\n",
                    cmd, src[i]);
            return 1;
        }
        if (kind != NTAM_KIND_DISK) {
            fprintf(stderr, "augur %s: Backblaze CSV sources hold disks: use --kind disk\n", cmd);
            return 1;
        }
        char err[512];
        int rc = bbcsv_read_file(t, src[i], model_filter, err, sizeof err);
        if (rc) {
            fprintf(stderr, "augur %s: %s\n", cmd, err);
            return 1;
        }
    }
    return 0;
}

/* ---- simulator sources ("sim:nodes=500,days=90,seed=1,hazard=10") ------------------------
 *
 * The simulator runs in memory at one step per day; each disk's raw channels are read from
 * its series exactly as models/features.c reads them from a store (same metric names and
 * labels), and the windows go through the same feat_compute() as serving, so a model trained
 * here is a serving model (its schema hash is feat_schema_hash()). Labels and the split follow
 * ntam_data.h: positive iff the disk fails 1..H days after the window's last day, its failure
 * day is context only, a healthy disk's last H days are unlabelled; devices dealt into folds
 * (failed and healthy separately, seeded hash order), and with --holdout-days a time split. */

typedef struct {
    char *serial, *instance;
    uint32_t node;
    int32_t first, last, fail; /* days; fail = INT32_MIN if it did not fail */
    uint8_t nvme;
    uint64_t h;  /* split hash */
    double *raw; /* [n_days][C], NaN = no sample */
} simdev_t;

typedef struct {
    int32_t n_days;
    uint32_t nodes, C;
    simdev_t *dev;
    int32_t n_dev, cap;
    uint32_t **node_dev; /* per node: its devices (all identities over time) */
    uint32_t *node_n, *node_cap;
    uint64_t failures, failures_precursor;
} simtab_t;

static void simtab_free(simtab_t *t)
{
    for (int32_t i = 0; i < t->n_dev; i++) {
        free(t->dev[i].serial);
        free(t->dev[i].instance);
        free(t->dev[i].raw);
    }
    free(t->dev);
    for (uint32_t n = 0; n < t->nodes && t->node_dev; n++)
        free(t->node_dev[n]);
    free(t->node_dev);
    free(t->node_n);
    free(t->node_cap);
    memset(t, 0, sizeof *t);
}

static const char *series_label(const sim_series_t *se, const char *name)
{
    for (uint32_t l = 0; l < se->nlabels; l++)
        if (!strcmp(se->labels[l].name.ptr, name)) return se->labels[l].value.ptr;
    return "";
}

/* The feature channel a disk series feeds (as features.c reads a store), or -1. */
static int disk_channel(const sim_series_t *se)
{
    const char *nm = series_label(se, "__name__");
    if (!strcmp(nm, "smartctl_device_attribute")) {
        if (strcmp(series_label(se, "attribute_value_type"), "raw")) return -1;
        static const int ids[6] = {5, 187, 188, 197, 198, 199};
        int id = atoi(series_label(se, "attribute_id"));
        for (int k = 0; k < 6; k++)
            if (id == ids[k]) return FEAT_RD_5 + k;
        return -1;
    }
    if (!strcmp(nm, "smartctl_device_media_errors")) return FEAT_RD_MEDIA;
    if (!strcmp(nm, "smartctl_device_available_spare")) return FEAT_RD_SPARE;
    if (!strcmp(nm, "smartctl_device_temperature")) {
        const char *tt = series_label(se, "temperature_type");
        return !tt[0] || !strcmp(tt, "current") ? FEAT_RD_TEMP : -1;
    }
    return -1;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t str_hash(const char *s, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return mix64(h);
}

/* Parse "sim:k=v,..." into c and days. 0 or -1 (message printed). */
static int sim_spec_parse(const char *cmd, const char *spec, sim_config_t *c, int32_t *days)
{
    sim_config_init(c);
    c->nodes = 500;
    c->gpus_per_node = 0;
    c->interval_ms = 86400000;
    *days = 90;
    const char *p = spec + 4;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char kv[128];
        if (l >= sizeof kv) goto bad;
        memcpy(kv, p, l);
        kv[l] = 0;
        char *eq = strchr(kv, '=');
        if (!eq) goto bad;
        *eq = 0;
        char *end;
        double v = strtod(eq + 1, &end);
        if (*end || !isfinite(v) || v < 0) goto bad;
        if (!strcmp(kv, "nodes") && v >= 1 && v <= 100000)
            c->nodes = (uint32_t)v;
        else if (!strcmp(kv, "days") && v >= 2 && v <= 3650)
            *days = (int32_t)v;
        else if (!strcmp(kv, "seed"))
            c->seed = (uint64_t)v;
        else if (!strcmp(kv, "hazard"))
            c->hazard_scale = v;
        else if (!strcmp(kv, "disks") && v >= 1 && v <= 64)
            c->disks_per_node = (uint32_t)v;
        else if (!strcmp(kv, "nvme") && v <= 64)
            c->nvme_per_node = (uint32_t)v;
        else if (!strcmp(kv, "stress"))
            c->node_stressor_rate = v;
        else if (!strcmp(kv, "rack-stress"))
            c->rack_stressor_rate = v;
        else if (!strcmp(kv, "precursor") && v <= 1)
            c->disk_precursor_frac = v;
        else
            goto bad;
        p = e ? e + 1 : p + l;
    }
    if (c->nvme_per_node > c->disks_per_node) goto bad;
    return 0;
bad:
    fprintf(stderr,
            "augur %s: bad simulator spec '%s' (sim:nodes=N,days=N,seed=N,hazard=X,disks=N,"
            "nvme=N,stress=X,rack-stress=X,precursor=X)\n",
            cmd, spec);
    return -1;
}

static int node_push(simtab_t *t, uint32_t node, uint32_t dev)
{
    if (t->node_n[node] == t->node_cap[node]) {
        uint32_t nc = t->node_cap[node] ? t->node_cap[node] * 2 : 16;
        uint32_t *nv = realloc(t->node_dev[node], nc * sizeof *nv);
        if (!nv) return -1;
        t->node_dev[node] = nv;
        t->node_cap[node] = nc;
    }
    t->node_dev[node][t->node_n[node]++] = dev;
    return 0;
}

/* Run the simulator of spec for disks into t. 0 or 1 (message printed). */
static int simtab_build(const char *cmd, const char *spec, int quiet, simtab_t *t)
{
    memset(t, 0, sizeof *t);
    sim_config_t c;
    int32_t days;
    if (sim_spec_parse(cmd, spec, &c, &days)) return 1;
    sim_t *s = NULL;
    int rc = sim_create(&c, &s);
    if (rc) {
        fprintf(stderr, "augur %s: simulator: %s\n", cmd, sim_strerror(rc));
        return 1;
    }
    t->n_days = days;
    t->nodes = c.nodes;
    t->C = feat_raw_count(FEAT_KIND_DISK);
    uint32_t nd = sim_disk_count(s);
    int32_t *cur = malloc(nd * sizeof *cur);
    int8_t *chan = NULL;
    uint32_t chan_n = 0;
    t->node_dev = calloc(c.nodes, sizeof *t->node_dev);
    t->node_n = calloc(c.nodes, sizeof *t->node_n);
    t->node_cap = calloc(c.nodes, sizeof *t->node_cap);
    int ret = 1;
    if (!cur || !t->node_dev || !t->node_n || !t->node_cap) goto nomem;
    for (uint32_t i = 0; i < nd; i++)
        cur[i] = -1;
    for (int32_t k = 0; k < days; k++) {
        sim_frame_t f;
        if ((rc = sim_step(s, &f))) {
            fprintf(stderr, "augur %s: simulator: %s\n", cmd, sim_strerror(rc));
            goto out;
        }
        uint32_t ns = sim_series_count(s);
        if (ns > chan_n) {
            int8_t *nc = realloc(chan, ns);
            if (!nc) goto nomem;
            chan = nc;
            for (uint32_t j = chan_n; j < ns; j++) {
                const sim_series_t *se = sim_series_get(s, j);
                chan[j] = (int8_t)(se->source == SIM_SRC_DISK ? disk_channel(se) : -1);
            }
            chan_n = ns;
        }
        for (uint32_t i = 0; i < nd; i++) {
            sim_device_info_t di;
            sim_disk_info(s, i, &di);
            if (!di.serial) continue;
            int32_t d = cur[i];
            if (d < 0 || strcmp(t->dev[d].serial, di.serial)) {
                if (!di.present) continue;
                if (t->n_dev == t->cap) {
                    int32_t ncap = t->cap ? t->cap * 2 : 1024;
                    simdev_t *nv = realloc(t->dev, (size_t)ncap * sizeof *nv);
                    if (!nv) goto nomem;
                    t->dev = nv;
                    t->cap = ncap;
                }
                d = t->n_dev;
                simdev_t *v = &t->dev[d];
                memset(v, 0, sizeof *v);
                v->serial = strdup(di.serial);
                v->instance = strdup(di.instance);
                v->raw = malloc((size_t)days * t->C * sizeof *v->raw);
                t->n_dev++;
                if (!v->serial || !v->instance || !v->raw) goto nomem;
                for (size_t q = 0; q < (size_t)days * t->C; q++)
                    v->raw[q] = NAN;
                v->node = di.node;
                v->first = k;
                v->last = k;
                v->fail = INT32_MIN;
                v->nvme = (uint8_t)di.nvme;
                if (node_push(t, di.node, (uint32_t)d)) goto nomem;
                cur[i] = d;
            }
            simdev_t *v = &t->dev[d];
            double *row = v->raw + (size_t)k * t->C;
            int obs = 0;
            for (uint32_t j = 0; j < di.nseries; j++) {
                uint32_t si = di.series_base + j;
                if (si >= f.nseries || chan[si] < 0) continue;
                double x = f.v[si];
                if (x != x) continue;
                row[chan[si]] = x;
                obs = 1;
            }
            if (obs) {
                row[FEAT_RD_NVME] = v->nvme;
                v->last = k;
            }
        }
        for (uint32_t e = 0; e < f.nevents; e++) {
            const sim_event_t *ev = &f.events[e];
            if (ev->kind != SIM_KIND_DISK) continue;
            uint32_t slot = ev->node * c.disks_per_node + ev->dev;
            if (slot < nd && cur[slot] >= 0 && !strcmp(t->dev[cur[slot]].serial, ev->serial)) {
                t->dev[cur[slot]].fail = k;
                t->failures++;
                t->failures_precursor += ev->precursor;
            }
        }
    }
    if (!quiet)
        fprintf(stderr,
                "simulated %u nodes x %u disks x %d days (seed %llu, hazard x%g): %d disks, "
                "%llu failures (%llu with precursors)\n",
                c.nodes, c.disks_per_node, days, (unsigned long long)c.seed, c.hazard_scale,
                t->n_dev, (unsigned long long)t->failures,
                (unsigned long long)t->failures_precursor);
    ret = 0;
    goto out;
nomem:
    fprintf(stderr, "augur %s: out of memory\n", cmd);
out:
    free(cur);
    free(chan);
    sim_destroy(s);
    if (ret) simtab_free(t);
    return ret;
}

static int sim_obs(const simtab_t *t, const simdev_t *v, int32_t day)
{
    if (day < v->first || day > v->last) return 0;
    const double *row = v->raw + (size_t)day * t->C;
    for (uint32_t c = 0; c < t->C; c++)
        if (row[c] == row[c]) return 1;
    return 0;
}

/* Label of device v at day d: 1 positive, 0 negative, -1 context only. */
static int sim_label(const simtab_t *t, const simdev_t *v, int32_t d, int32_t H, int neg_never)
{
    if (v->fail != INT32_MIN) {
        int32_t gap = v->fail - d;
        if (H == 0) return gap == 0 ? 1 : neg_never ? -1 : 0;
        if (gap <= 0) return -1;
        if (gap <= H) return 1;
        return neg_never ? -1 : 0;
    }
    return d + H <= t->n_days - 1 ? 0 : -1;
}

/* Fold of every device: failed and healthy dealt separately in seeded hash order. */
static int sim_folds(const simtab_t *t, int folds, uint64_t seed, int32_t *fold)
{
    int32_t *ord = malloc((size_t)t->n_dev * sizeof *ord + 1);
    uint64_t *key = malloc((size_t)t->n_dev * sizeof *key + 1);
    if (!ord || !key) {
        free(ord);
        free(key);
        return -1;
    }
    for (int cls = 0; cls < 2; cls++) {
        int32_t n = 0;
        for (int32_t i = 0; i < t->n_dev; i++)
            if ((t->dev[i].fail != INT32_MIN) == cls) {
                key[n] = str_hash(t->dev[i].serial, seed);
                ord[n++] = i;
            }
        /* insertion-free: sort by key with a simple shell sort (n is at most a few 10,000) */
        for (int32_t gap = n / 2; gap > 0; gap /= 2)
            for (int32_t i = gap; i < n; i++)
                for (int32_t j = i; j >= gap && key[j - gap] > key[j]; j -= gap) {
                    uint64_t tk = key[j];
                    key[j] = key[j - gap];
                    key[j - gap] = tk;
                    int32_t to = ord[j];
                    ord[j] = ord[j - gap];
                    ord[j - gap] = to;
                }
        for (int32_t i = 0; i < n; i++)
            fold[ord[i]] = i % folds;
    }
    free(ord);
    free(key);
    return 0;
}

/* Build one part from a simulated fleet (ntam_data.h semantics). neg_keep > 1 keeps one in
 * neg_keep training node-days that hold no positive (seeded), to keep epochs short. */
static int sim_data_build(const simtab_t *t, const ntam_protocol_t *pr, int part, int neg_keep,
                          ntam_data_t *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    int32_t W = pr->window, H = pr->horizon, F = (int32_t)feat_count(FEAT_KIND_DISK);
    uint32_t C = t->C;
    int neg_never = pr->negatives == NTAM_NEG_NEVER_FAILED;
    if (W < 1 || W > 366 || pr->folds < 3 || pr->fold < 0 || pr->fold >= pr->folds) {
        snprintf(err, errlen, "bad protocol (window, folds)");
        return NTAM_EINVAL;
    }
    int32_t *fold = malloc((size_t)t->n_dev * sizeof *fold + 1);
    if (!fold || sim_folds(t, pr->folds, pr->split_seed, fold)) {
        free(fold);
        snprintf(err, errlen, "out of memory");
        return NTAM_ENOMEM;
    }
    int want_fold = part == NTAM_PART_TEST  ? pr->fold
                    : part == NTAM_PART_VAL ? (pr->fold + 1) % pr->folds
                                            : -1;
    int32_t end = t->n_days - 1, dmin = W - 1, dmax = end;
    if (pr->holdout_days > 0) {
        if (part == NTAM_PART_TRAIN)
            dmax = end - pr->holdout_days - H;
        else if (part != NTAM_PART_ALL)
            dmin = end - pr->holdout_days + 1 > dmin ? end - pr->holdout_days + 1 : dmin;
    }
    /* pass 0 counts, pass 1 fills */
    size_t n = 0, ng = 0;
    int rc = NTAM_ENOMEM;
    double *raw = malloc((size_t)W * C * sizeof *raw);
    if (!raw) goto fail;
    for (int pass = 0; pass < 2; pass++) {
        n = ng = 0;
        d->n_pos = d->n_neg = 0;
        d->max_group = 0;
        for (int32_t day = dmin; day <= dmax; day++)
            for (uint32_t node = 0; node < t->nodes; node++) {
                int32_t members = 0, scored = 0, pos = 0;
                for (uint32_t q = 0; q < t->node_n[node]; q++) {
                    const simdev_t *v = &t->dev[t->node_dev[node][q]];
                    if (!sim_obs(t, v, day)) continue;
                    members++;
                    int32_t di = (int32_t)t->node_dev[node][q];
                    int in = part == NTAM_PART_ALL ||
                             (part == NTAM_PART_TRAIN
                                  ? fold[di] != pr->fold && fold[di] != (pr->fold + 1) % pr->folds
                                  : fold[di] == want_fold);
                    int lab = in ? sim_label(t, v, day, H, neg_never) : -1;
                    if (lab >= 0) scored++;
                    if (lab == 1) pos++;
                }
                if (!scored) continue;
                if (part == NTAM_PART_TRAIN && neg_keep > 1 && !pos &&
                    mix64(pr->split_seed ^ ((uint64_t)day << 32) ^ node) % (uint64_t)neg_keep)
                    continue;
                if (pass) d->goff[ng] = n;
                ng++;
                if (members > d->max_group) d->max_group = members;
                for (uint32_t q = 0; q < t->node_n[node]; q++) {
                    int32_t di = (int32_t)t->node_dev[node][q];
                    const simdev_t *v = &t->dev[di];
                    if (!sim_obs(t, v, day)) continue;
                    int in = part == NTAM_PART_ALL ||
                             (part == NTAM_PART_TRAIN
                                  ? fold[di] != pr->fold && fold[di] != (pr->fold + 1) % pr->folds
                                  : fold[di] == want_fold);
                    int lab = in ? sim_label(t, v, day, H, neg_never) : -1;
                    if (lab == 1) d->n_pos++;
                    if (lab == 0) d->n_neg++;
                    if (pass) {
                        for (int32_t w = 0; w < W; w++) {
                            int32_t dd = day - W + 1 + w;
                            for (uint32_t c = 0; c < C; c++)
                                raw[(size_t)w * C + c] = dd >= v->first && dd <= v->last
                                                             ? v->raw[(size_t)dd * C + c]
                                                             : NAN;
                        }
                        feat_compute(FEAT_KIND_DISK, 1, (uint32_t)W, raw, d->x + n * (size_t)W * F,
                                     d->tmask + n * (size_t)W);
                        d->y[n] = lab == 1 ? 1.0f : 0.0f;
                        d->w[n] = lab >= 0 ? 1.0f : 0.0f;
                        d->dev[n] = di;
                        d->day[n] = day;
                        const double *row = v->raw + (size_t)day * C;
                        int rule = 0;
                        for (int c = FEAT_RD_5; c <= FEAT_RD_198; c++)
                            rule |= row[c] > 0;
                        rule |= row[FEAT_RD_MEDIA] > 0;
                        d->rule[n] = (uint8_t)rule;
                    }
                    n++;
                }
            }
        if (!pass) {
            d->W = W;
            d->F = F;
            d->n = n;
            d->n_groups = ng;
            d->x = malloc(n * (size_t)W * F * sizeof *d->x + 1);
            d->tmask = malloc(n * (size_t)W + 1);
            d->y = malloc(n * sizeof *d->y + 1);
            d->w = malloc(n * sizeof *d->w + 1);
            d->dev = malloc(n * sizeof *d->dev + 1);
            d->day = malloc(n * sizeof *d->day + 1);
            d->rule = malloc(n + 1);
            d->goff = malloc((ng + 1) * sizeof *d->goff);
            d->n_dev_src = t->n_dev;
            d->fail_day = malloc((size_t)t->n_dev * sizeof *d->fail_day + 1);
            d->feature = calloc((size_t)F, sizeof *d->feature);
            if (!d->x || !d->tmask || !d->y || !d->w || !d->dev || !d->day || !d->rule ||
                !d->goff || !d->fail_day || !d->feature)
                goto fail;
        }
    }
    d->goff[ng] = n;
    for (int32_t i = 0; i < t->n_dev; i++)
        d->fail_day[i] = t->dev[i].fail;
    for (int32_t f = 0; f < F; f++)
        snprintf(d->feature[f], NTAM_FEATURE_NAME, "%s", feat_name(FEAT_KIND_DISK, (uint32_t)f));
    free(raw);
    free(fold);
    return 0;
fail:
    snprintf(err, errlen, "out of memory");
    free(raw);
    free(fold);
    ntam_data_free(d);
    return rc;
}

/* A training source: Backblaze CSV rows or a simulated fleet. */
typedef struct {
    const bbcsv_t *csv;
    const simtab_t *sim;
    int neg_keep;
} source_t;

static int build_any(const source_t *src, const ntam_protocol_t *pr, int part, ntam_data_t *d,
                     char *err, size_t errlen)
{
    if (src->sim) return sim_data_build(src->sim, pr, part, src->neg_keep, d, err, errlen);
    return ntam_data_build(src->csv, pr, part, d, err, errlen);
}

typedef struct {
    ntam_eval_row_t rows[5]; /* NTAM, NTAM at 1 % FPR, no-neighbour ablation, logistic, rule */
    int n_rows;
    size_t n_train, n_pos_train, n_test, n_pos_test;
    int best_epoch;
} fold_result_t;

static int train_one(const targs_t *a, const ntam_hparams_t *hp, const ntam_data_t *tr,
                     const ntam_data_t *va, float pw, int fold, const char *tag, ntam_t **out)
{
    ntam_t *m;
    int rc = ntam_create(hp, a->tc.seed, &m);
    if (rc) return rc;
    ntam_train_cfg_t tc = a->tc;
    tc.opt.pos_weight = pw;
    prog_t pg = {a->tty, a->quiet, fold, now_s(), tag};
    tc.progress = progress_cb;
    tc.ctx = &pg;
    ntam_train_result_t res;
    rc = ntam_train_run(m, &tc, tr, va->n_pos ? va : NULL, &res);
    if (rc) {
        ntam_destroy(m);
        return rc;
    }
    if (!a->quiet)
        fprintf(stderr, "%s fold %d: %d epochs, kept epoch %d (val PR-AUC %.3f), %.1fs\n", tag,
                fold, res.epochs_run, res.best_epoch, res.best_val_pr_auc, now_s() - pg.t0);
    *out = m;
    return 0;
}

/* One fold: build parts, normalise, train, evaluate with baselines. Saves the model if path. */
static int run_fold(const targs_t *a, const source_t *t, int fold, const char *save_path,
                    fold_result_t *fr)
{
    memset(fr, 0, sizeof *fr);
    ntam_protocol_t pr = a->pr;
    pr.fold = fold;
    ntam_data_t tr, va, te;
    char err[256];
    int rc = build_any(t, &pr, NTAM_PART_TRAIN, &tr, err, sizeof err);
    if (!rc)
        rc = build_any(t, &pr, NTAM_PART_VAL, &va, err, sizeof err);
    else
        memset(&va, 0, sizeof va);
    if (!rc)
        rc = build_any(t, &pr, NTAM_PART_TEST, &te, err, sizeof err);
    else
        memset(&te, 0, sizeof te);
    ntam_t *m = NULL, *ab = NULL;
    float *p_ntam = NULL, *p_ab = NULL, *p_lr = NULL, *p_rule = NULL, *lrw = NULL;
    if (rc) {
        fprintf(stderr, "augur train: %s\n", err);
        goto out;
    }
    if (!tr.n_pos || !te.n_pos) {
        fprintf(stderr,
                "augur train: fold %d has no positive in the %s part (%zu train, %zu test"
                " positives): check --horizon and the data\n",
                fold, tr.n_pos ? "test" : "training", tr.n_pos, te.n_pos);
        rc = NTAM_EINVAL;
        goto out;
    }
    if (tr.F > NTAM_MAX_FEATURES) {
        rc = NTAM_EINVAL;
        goto out;
    }
    float mean[NTAM_MAX_FEATURES], scale[NTAM_MAX_FEATURES];
    ntam_data_fit_norm(&tr, mean, scale);
    ntam_data_apply_norm(&tr, mean, scale);
    ntam_data_apply_norm(&va, mean, scale);
    ntam_data_apply_norm(&te, mean, scale);
    float pw = a->pos_weight > 0 ? a->pos_weight : (float)sqrt((double)tr.n_neg / (double)tr.n_pos);
    ntam_hparams_t hp = a->hp;
    hp.n_features = tr.F;
    hp.window = tr.W;
    if (!a->quiet)
        fprintf(stderr,
                "fold %d: train %zu samples (%zu pos), val %zu (%zu pos), test %zu (%zu pos); "
                "F=%d W=%d, largest node-day group %d, pos_weight %.2f\n",
                fold, tr.n_pos + tr.n_neg, tr.n_pos, va.n_pos + va.n_neg, va.n_pos,
                te.n_pos + te.n_neg, te.n_pos, tr.F, tr.W, tr.max_group, pw);
    rc = train_one(a, &hp, &tr, &va, pw, fold, hp.ablate_neighbours ? "ntam(ablated)" : "ntam", &m);
    if (rc) goto out;
    rc = NTAM_ENOMEM;
    p_ntam = malloc(te.n * sizeof *p_ntam + 1);
    p_ab = malloc(te.n * sizeof *p_ab + 1);
    p_lr = malloc(te.n * sizeof *p_lr + 1);
    p_rule = malloc(te.n * sizeof *p_rule + 1);
    lrw = malloc(((size_t)tr.W * tr.F + 1) * sizeof *lrw);
    float *vprob = malloc(va.n * sizeof *vprob + 1);
    if (!p_ntam || !p_ab || !p_lr || !p_rule || !lrw || !vprob) {
        free(vprob);
        goto out;
    }
    int32_t chunk = 1024;
    float thr = 0.5f, thr1 = INFINITY;
    if (va.n && !ntam_predict(m, &va, chunk, vprob)) {
        thr = ntam_eval_threshold(&va, vprob);
        /* the alarm threshold of a 1 % false-positive rate on the validation negatives */
        size_t nn = 0;
        for (size_t i = 0; i < va.n; i++)
            if (va.w[i] > 0 && va.y[i] == 0) vprob[nn++] = vprob[i];
        if (nn) {
            /* partial selection: the value with 1 % of negatives at or above it */
            size_t k = nn / 100;
            for (size_t i = 0; i <= k && i < nn; i++) {
                size_t b = i;
                for (size_t j = i + 1; j < nn; j++)
                    if (vprob[j] > vprob[b]) b = j;
                float tv = vprob[i];
                vprob[i] = vprob[b];
                vprob[b] = tv;
            }
            thr1 = nextafterf(vprob[k < nn ? k : nn - 1], INFINITY);
        }
    }
    free(vprob);
    if ((rc = ntam_predict(m, &te, chunk, p_ntam))) goto out;
    int ablate_row = !hp.ablate_neighbours && (a->with_ablation || !a->cv);
    if (ablate_row && tr.max_group > 1) {
        ntam_hparams_t hpa = hp;
        hpa.ablate_neighbours = 1;
        if ((rc = train_one(a, &hpa, &tr, &va, pw, fold, "ntam(ablated)", &ab))) goto out;
        if ((rc = ntam_predict(ab, &te, chunk, p_ab))) goto out;
    } else {
        memcpy(p_ab, p_ntam, te.n * sizeof *p_ab);
    }
    if ((rc = ntam_logreg_fit(&tr, pw, 1e-3f, 400, lrw))) goto out;
    ntam_logreg_predict(&te, lrw, p_lr);
    for (size_t i = 0; i < te.n; i++)
        p_rule[i] = te.rule[i];
    int32_t max_lead = pr.window + pr.horizon > 30 ? pr.window + pr.horizon : 30;
    int k = 0;
    ntam_eval_score(&te, p_ntam, thr, max_lead, hp.ablate_neighbours ? "NTAM (ablated)" : "NTAM",
                    &fr->rows[k++]);
    if (isfinite(thr1))
        ntam_eval_score(&te, p_ntam, thr1, max_lead, "NTAM, alarm at 1% val FPR", &fr->rows[k++]);
    if (!hp.ablate_neighbours && ablate_row) {
        ntam_eval_score(&te, p_ab, thr, max_lead,
                        tr.max_group > 1 ? "NTAM no-neighbour" : "NTAM no-neighbour (=NTAM)",
                        &fr->rows[k++]);
    }
    ntam_eval_score(&te, p_lr, 0.5f, max_lead, "logistic regression", &fr->rows[k++]);
    ntam_eval_score(&te, p_rule, 0.5f, max_lead, "SMART rule", &fr->rows[k++]);
    /* logistic: lead time at its own best-F1 threshold would need validation scores too; 0.5 is
     * its class-weighted decision point */
    fr->n_rows = k;
    fr->n_train = tr.n_pos + tr.n_neg;
    fr->n_pos_train = tr.n_pos;
    fr->n_test = te.n_pos + te.n_neg;
    fr->n_pos_test = te.n_pos;
    if (save_path) {
        ntam_bundle_t b;
        memset(&b, 0, sizeof b);
        b.model = m;
        b.kind = a->kind;
        b.horizon = pr.horizon;
        b.n_features = tr.F;
        for (int f = 0; f < tr.F; f++) {
            memcpy(b.feature[f], tr.feature[f], NTAM_FEATURE_NAME);
            b.mean[f] = mean[f];
            b.scale[f] = scale[f];
        }
        b.schema_hash = t->sim
                            ? feat_schema_hash(FEAT_KIND_DISK)
                            : ntam_schema_hash((const char(*)[NTAM_FEATURE_NAME])b.feature, tr.F);
        b.threshold = thr;
        b.seed = a->tc.seed;
        b.split_seed = pr.split_seed;
        b.folds = pr.folds;
        b.fold = fold;
        b.holdout_days = pr.holdout_days;
        b.flags = pr.negatives == NTAM_NEG_NEVER_FAILED ? NTAM_FLAG_NEG_NEVER_FAILED : 0;
        rc = ntam_bundle_save(&b, save_path);
        if (rc) {
            fprintf(stderr, "augur train: cannot write %s: %s\n", save_path, ntam_strerror(rc));
            goto out;
        }
        if (!a->quiet) fprintf(stderr, "wrote %s (alarm threshold %.4f)\n", save_path, thr);
    }
    rc = 0;
out:
    ntam_destroy(m);
    ntam_destroy(ab);
    free(p_ntam);
    free(p_ab);
    free(p_lr);
    free(p_rule);
    free(lrw);
    ntam_data_free(&tr);
    ntam_data_free(&va);
    ntam_data_free(&te);
    return rc;
}

static void print_fold(int fold, const fold_result_t *fr)
{
    printf("\nfold %d: test %zu samples, %zu positive (train %zu, %zu positive)\n", fold,
           fr->n_test, fr->n_pos_test, fr->n_train, fr->n_pos_train);
    ntam_eval_print(stdout, fr->rows, fr->n_rows);
}

int cli_train(int argc, char **argv)
{
    targs_t a;
    int pr = parse_args(argc, argv, &a);
    if (pr == 1) {
        fputs(train_usage, stdout);
        return 0;
    }
    if (pr) return 2;
    a.tty = isatty(2);
    ntam_set_threads(a.threads);
    bbcsv_t t;
    simtab_t st;
    memset(&st, 0, sizeof st);
    bbcsv_init(&t);
    source_t src = {&t, NULL, a.neg_keep};
    if (!strncmp(a.src[0], "sim:", 4)) {
        if (a.n_src > 1 || a.kind != NTAM_KIND_DISK) {
            fprintf(stderr, "augur train: a simulator source is the only source, for --kind disk "
                            "(GPU training from the simulator: not yet)\n");
            return 2;
        }
        if (simtab_build("train", a.src[0], a.quiet, &st)) return 1;
        src.sim = &st;
    } else {
        if (cli_ntam_load_sources("train", a.kind, a.src, a.n_src, a.model_filter, &t)) {
            bbcsv_free(&t);
            return 1;
        }
        if (!a.quiet)
            fprintf(stderr,
                    "read %zu rows, %d devices, %d nodes (%zu rows skipped, %zu filtered)\n",
                    t.n_rows, t.n_dev, t.n_node, t.rows_skipped, t.rows_filtered);
    }
    int rc = 0;
    if (!a.cv) {
        fold_result_t fr;
        rc = run_fold(&a, &src, a.pr.fold, a.out, &fr);
        if (!rc) print_fold(a.pr.fold, &fr);
    } else {
        fold_result_t *all = calloc((size_t)a.pr.folds, sizeof *all);
        if (!all) rc = NTAM_ENOMEM;
        for (int f = 0; !rc && f < a.pr.folds; f++) {
            rc = run_fold(&a, &src, f, f == a.pr.fold ? a.out : NULL, &all[f]);
            if (!rc) print_fold(f, &all[f]);
        }
        if (!rc) {
            printf(
                "\n%d-fold cross-validation (split by device, seed %llu): mean ± sd [min, max]\n",
                a.pr.folds, (unsigned long long)a.pr.split_seed);
            printf("%-28s %-30s %-30s\n", "scorer", "PR-AUC", "ROC-AUC");
            for (int r = 0; r < all[0].n_rows; r++) {
                double s[2] = {0, 0}, s2[2] = {0, 0}, mn[2] = {1e9, 1e9}, mx[2] = {-1e9, -1e9};
                for (int f = 0; f < a.pr.folds; f++) {
                    double v[2] = {all[f].rows[r].m.pr_auc, all[f].rows[r].m.roc_auc};
                    for (int q = 0; q < 2; q++) {
                        s[q] += v[q];
                        s2[q] += v[q] * v[q];
                        if (v[q] < mn[q]) mn[q] = v[q];
                        if (v[q] > mx[q]) mx[q] = v[q];
                    }
                }
                printf("%-28s", all[0].rows[r].name);
                for (int q = 0; q < 2; q++) {
                    double m = s[q] / a.pr.folds;
                    double sd =
                        sqrt(fmax(0, s2[q] / a.pr.folds - m * m) * a.pr.folds / (a.pr.folds - 1));
                    char buf[64];
                    snprintf(buf, sizeof buf, "%.3f ± %.3f [%.3f, %.3f]", m, sd, mn[q], mx[q]);
                    printf(" %-30s", buf);
                }
                printf("\n");
            }
        }
        free(all);
    }
    bbcsv_free(&t);
    simtab_free(&st);
    if (rc) {
        fprintf(stderr, "augur train: %s\n", ntam_strerror(rc));
        return 1;
    }
    return 0;
}

/* ---- the --demo predictor ------------------------------------------------------------------ */

extern const uint8_t augur_model_disk_sim[]; /* models/data/disk-sim.ntam, compiled in */
extern const size_t augur_model_disk_sim_len;

void cli_predict_demo_defaults(struct api_predict_config *c, const cli_demo_opts_t *demo)
{
    if (!c->model_path[0]) {
        c->model_mem[0] = augur_model_disk_sim;
        c->model_mem_len[0] = augur_model_disk_sim_len;
    }
    double ts = demo->time_scale > 0 ? demo->time_scale : 1;
    if (!c->step_ms[0]) c->step_ms[0] = (int64_t)(86400000.0 / ts);
    if (!c->step_ms[1])
        c->step_ms[1] = (int64_t)(3600000.0 / ts) > 1 ? (int64_t)(3600000.0 / ts) : 1;
    for (int k = 0; k < 2; k++)
        if (!c->interval_ms[k]) c->interval_ms[k] = 30000;
    if (!c->first_delay_ms) c->first_delay_ms = 5000;
}
