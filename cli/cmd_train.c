/*
 * cmd_train.c — `augur train`: train an NTAM failure predictor and write a model file.
 *
 *   augur train --kind disk|gpu --source DIR|sim:SPEC|FILE.csv --window W --horizon H --out MODEL
 *               [--epochs N] [--seed S] [--threads T] [--folds K] [--fold I] [--cv] ...
 *
 * The data are split by device (stratified folds from a seeded hash of the serial) and, with
 * --holdout-days, by time; never by random rows. One fold is the test set, the next one the
 * validation set for early stopping, the rest is trained on. --cv repeats this for every fold
 * and prints the spread. Sources: Backblaze-format CSV files (models/bbcsv.h), or, through
 * models/ntam_source.h, an augur store directory (labels: its failure events) or a simulator
 * spec ("sim:nodes=500,days=90,hazard=10"), disks or GPUs, whose windows are built by
 * models/features.h exactly as the server's predictor builds them from a store, so the model
 * written serves (`augur serve --predict.model.disk|gpu`).
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
#include "models/ntam_source.h"
#include "models/ntam_train.h"

static const char train_usage[] =
    "usage: augur train --kind disk|gpu --source SRC [--source SRC]... --window W --horizon H\n"
    "                   --out MODEL [options]\n"
    "\n"
    "Train the neighbourhood-temporal attention model (NTAM) to predict that a device fails\n"
    "within H days from its last W steps of telemetry, and write a versioned model file.\n"
    "\n"
    "Source SRC, one of:\n"
    "  DIR    an augur store directory (written by augur serve, augur simulate --out.store or\n"
    "         augur import; opened read-only, so a running server's data dir works, minus what\n"
    "         is still only in its WAL). Disks: smartctl_exporter series; GPUs: dcgm-exporter\n"
    "         series. Labels: the failure events stored in it (augur label failure, POST\n"
    "         /api/v1/failures, augur import backblaze), matched by serial / UUID. Neighbours:\n"
    "         the devices of the same instance.\n"
    "  sim:SPEC  the fleet simulator run in memory: sim:nodes=N,days=N,seed=N,hazard=X\n"
    "         [,disks=N,nvme=N,gpus=N,stress=X,rack-stress=X,precursor=X]. Defaults: disks,\n"
    "         500 nodes x 8 disks (1 NVMe), 90 days; GPUs, 200 nodes x 8 GPUs, 60 days; seed 1,\n"
    "         hazard x1. Devices on a node are neighbours.\n"
    "  FILE   a Backblaze drive-stats CSV file (date, serial_number, model, failure,\n"
    "         [datacenter, vault_id, pod_id,] smart_N_raw...), disks only, repeatable. Drives on\n"
    "         one Storage Pod (pod_id) are neighbours; without pod_id every drive is alone.\n"
    "Store and simulator sources use the features of docs/features.md through the server's\n"
    "feature module (one step a day for disks, one an hour for GPUs; one sample per device and\n"
    "day), so the model written serves with augur serve --predict.model.disk / .gpu.\n"
    "\n"
    "Split: devices are dealt into K folds (failed and healthy separately, in seeded hash order);\n"
    "fold I is the test set, fold I+1 the validation set (early stopping on its PR-AUC), the rest\n"
    "is trained on. --holdout-days also splits by time. Never a random row split.\n"
    "\n"
    "Labels: positive iff the device fails 1..H days after the window's last step (H = 0: that\n"
    "day); rows after the failure are dropped; a never-failed device's last H days are "
    "unlabelled.\n"
    "CSV features (leak-free by default): log1p of each SMART raw value and, for W > 1, its\n"
    "change over the window; no date, no age/usage counters (1 4 7 9 12 191 192 193 195 222\n"
    "240 241 242), no temperatures (190 194).\n"
    "Baselines printed beside NTAM: logistic regression on the same features, the rule (disks:\n"
    "any raw SMART 5/187/188/197/198 > 0; GPUs: any DBE or row-remap failure) and the\n"
    "no-neighbour ablation.\n"
    "\n"
    "options:\n"
    "  --kind disk|gpu          device kind (CSV sources: disk)\n"
    "  --source SRC             input (repeatable)\n"
    "  --model-filter NAME      keep only rows of this drive model\n"
    "  --window W               steps per window: days for disks (default 14), hours for\n"
    "                           GPUs (default 24)\n"
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
    "  --lr-schedule constant|cosine  learning rate after warm-up (constant)\n"
    "  --neg-keep N             store/simulator sources: train on 1 in N node-days without a\n"
    "                           positive (default 1: all)\n"
    "  --nb-summary off|kv|head|on  neighbours' window summaries (change over the window, last\n"
    "                           step minus window mean): in the neighbourhood attention's keys\n"
    "                           and values (kv), as a node summary (mean, max) in the head\n"
    "                           (head), or both (on); measured, no PR-AUC gain (default off)\n"
    "  --scope node|rack|pod    neighbourhood of a device (store/simulator sources): the\n"
    "                           devices of its node (default), of its rack (series label rack;\n"
    "                           a device without one keeps its node), or of its pod (label pod,\n"
    "                           else rack, else node); recorded in the model, served alike\n"
    "  --scope-cap N            most devices in one neighbourhood group: a larger rack/pod is cut\n"
    "                           into chunks of whole nodes (default 128: 16 nodes x 8; 0: none)\n"
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
    int threads, cv, with_ablation, quiet, tty, neg_keep, window_set, scope_set;
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
            if (parse_int(v, 1, 4096, &a->pr.window)) BAD;
            a->window_set = 1;
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
        } else if (!strcmp(o, "--lr-schedule")) {
            NEEDV;
            if (!strcmp(v, "constant") || !strcmp(v, "cosine"))
                a->tc.lr_schedule = strcmp(v, "cosine") ? NTAM_LR_CONSTANT : NTAM_LR_COSINE;
            else
                BAD;
        } else if (!strcmp(o, "--neg-keep")) {
            NEEDV;
            if (parse_int(v, 1, 1000, &a->neg_keep)) BAD;
        } else if (!strcmp(o, "--nb-summary")) {
            NEEDV;
            if (!strcmp(v, "off")) a->hp.nb_summary = 0;
            else if (!strcmp(v, "kv")) a->hp.nb_summary = NTAM_NB_SUMMARY_KV;
            else if (!strcmp(v, "head")) a->hp.nb_summary = NTAM_NB_SUMMARY_HEAD;
            else if (!strcmp(v, "on")) a->hp.nb_summary = NTAM_NB_SUMMARY_ALL;
            else
                BAD;
        } else if (!strcmp(o, "--scope")) {
            NEEDV;
            feat_scope_t sc;
            if (feat_scope_parse(v, &sc)) {
                fprintf(stderr, "augur train: bad value '%s' for --scope (node, rack or pod)\n", v);
                return 2;
            }
            a->pr.scope = (int32_t)sc;
            a->scope_set = 1;
        } else if (!strcmp(o, "--scope-cap")) {
            NEEDV;
            if (parse_int(v, 0, 1 << 20, &a->pr.scope_cap) ||
                (a->pr.scope_cap > 0 && a->pr.scope_cap < 2)) {
                fprintf(stderr,
                        "augur train: bad value '%s' for --scope-cap (0 for no cap, or at least "
                        "2 devices)\n",
                        v);
                return 2;
            }
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
                    "augur %s: %s: a store directory or simulator spec is the only source "
                    "(not mixed with CSV files)\n",
                    cmd, src[i]);
            return 1;
        }
        if (kind != NTAM_KIND_DISK) {
            fprintf(stderr, "augur %s: Backblaze CSV sources hold disks, not GPUs (--kind disk)\n",
                    cmd);
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

/* ---- store directories and simulator specs (models/ntam_source.h) --------------------------
 *
 * Both become a device timeline whose windows go through the serving feature module, so the
 * model written serves (its schema hash is feat_schema_hash(kind)). */

/* Load src as a timeline if it is a simulator spec or a directory: 0 loaded, 1 error (message
 * printed), -1 not such a source (a CSV file). */
int cli_ntam_load_tl(const char *cmd, int kind, const char *src, int quiet, ntam_tl_t *tl);
int cli_ntam_load_tl(const char *cmd, int kind, const char *src, int quiet, ntam_tl_t *tl)
{
    struct stat st;
    int sim = !strncmp(src, "sim:", 4);
    if (!sim && (stat(src, &st) || !S_ISDIR(st.st_mode))) {
        if (!stat(src, &st) || strchr(src, '.')) return -1; /* a file: CSV */
        fprintf(stderr, "augur %s: %s: no such file or store directory\n", cmd, src);
        return 1;
    }
    feat_kind_t k = kind == NTAM_KIND_GPU ? FEAT_KIND_GPU : FEAT_KIND_DISK;
    char err[768], sum[256];
    sum[0] = 0;
    double t0 = now_s();
    int rc = sim ? ntam_tl_from_sim(src, k, tl, sum, sizeof sum, err, sizeof err)
                 : ntam_tl_from_store(src, k, tl, err, sizeof err);
    if (rc) {
        fprintf(stderr, "augur %s: %s\n", cmd, err);
        return 1;
    }
    if (!quiet) {
        if (sim)
            fprintf(stderr, "%s\n", sum);
        else
            fprintf(stderr,
                    "store %s: %d %s devices on %u nodes over %d days (%s steps), %llu failures "
                    "(%llu events matched no device), read in %.1fs\n",
                    src, tl->n_dev, k == FEAT_KIND_GPU ? "gpu" : "disk", tl->n_nodes,
                    ntam_tl_days(tl), k == FEAT_KIND_GPU ? "hourly" : "daily",
                    (unsigned long long)tl->failures, (unsigned long long)tl->events_unmatched,
                    now_s() - t0);
    }
    return 0;
}

/* A training source: Backblaze CSV rows, or a timeline (store directory, simulator). */
typedef struct {
    const bbcsv_t *csv;
    const ntam_tl_t *tl;
    int neg_keep;
} source_t;

static int build_any(const source_t *src, const ntam_protocol_t *pr, int part, ntam_data_t *d,
                     char *err, size_t errlen)
{
    if (src->tl) return ntam_tl_build(src->tl, pr, part, src->neg_keep, d, err, errlen);
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

/* Save m (trained on tr, normalised with mean/scale) as the model of `fold`. */
static int save_model(const targs_t *a, const source_t *t, const ntam_protocol_t *pr, int fold,
                      ntam_t *m, const ntam_data_t *tr, const float *mean, const float *scale,
                      float thr, const char *save_path)
{
    ntam_bundle_t b;
    memset(&b, 0, sizeof b);
    b.model = m;
    b.kind = a->kind;
    b.horizon = pr->horizon;
    b.n_features = tr->F;
    for (int f = 0; f < tr->F; f++) {
        memcpy(b.feature[f], tr->feature[f], NTAM_FEATURE_NAME);
        b.mean[f] = mean[f];
        b.scale[f] = scale[f];
    }
    b.schema_hash = t->tl ? feat_schema_hash(t->tl->kind)
                          : ntam_schema_hash((const char(*)[NTAM_FEATURE_NAME])b.feature, tr->F);
    b.threshold = thr;
    b.seed = a->tc.seed;
    b.split_seed = pr->split_seed;
    b.folds = pr->folds;
    b.fold = fold;
    b.holdout_days = pr->holdout_days;
    b.flags = pr->negatives == NTAM_NEG_NEVER_FAILED ? NTAM_FLAG_NEG_NEVER_FAILED : 0;
    b.scope = pr->scope;
    b.scope_cap = pr->scope_cap;
    int rc = ntam_bundle_save(&b, save_path);
    if (rc) {
        fprintf(stderr, "augur train: cannot write %s: %s\n", save_path, ntam_strerror(rc));
        return rc;
    }
    if (!a->quiet) fprintf(stderr, "wrote %s (alarm threshold %.4f)\n", save_path, thr);
    return 0;
}

/* Build the three parts of fold under pr. 0 or an error (message printed). */
static int build_parts(const source_t *t, const ntam_protocol_t *pr, ntam_data_t *tr,
                       ntam_data_t *va, ntam_data_t *te)
{
    char err[512];
    memset(va, 0, sizeof *va);
    memset(te, 0, sizeof *te);
    int rc = build_any(t, pr, NTAM_PART_TRAIN, tr, err, sizeof err);
    if (!rc) rc = build_any(t, pr, NTAM_PART_VAL, va, err, sizeof err);
    if (!rc) rc = build_any(t, pr, NTAM_PART_TEST, te, err, sizeof err);
    if (rc) fprintf(stderr, "augur train: %s\n", err);
    return rc;
}

/* One fold: build parts, normalise, train, evaluate with baselines. Saves the model if path.
 * With a rack or pod scope, NTAM trains and scores on the scope's groups; the baselines (the
 * no-neighbour ablation, logistic regression, the rule) are then computed on the parts built
 * with scope node — the same scored samples, so their rows are exactly those of a --scope node
 * run and the comparison changes only what NTAM's neighbourhood is. */
static int run_fold(const targs_t *a, const source_t *t, int fold, const char *save_path,
                    fold_result_t *fr)
{
    memset(fr, 0, sizeof *fr);
    ntam_protocol_t pr = a->pr;
    pr.fold = fold;
    int scoped = t->tl && pr.scope != FEAT_SCOPE_NODE;
    ntam_data_t tr, va, te;
    int rc = build_parts(t, &pr, &tr, &va, &te);
    ntam_t *m = NULL, *ab = NULL;
    float *p_ntam = NULL, *p_ab = NULL, *p_lr = NULL, *p_rule = NULL, *lrw = NULL;
    if (rc) goto out;
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
                "F=%d W=%d, largest %s-day group %d (%zu training rows with context), "
                "pos_weight %.2f\n",
                fold, tr.n_pos + tr.n_neg, tr.n_pos, va.n_pos + va.n_neg, va.n_pos,
                te.n_pos + te.n_neg, te.n_pos, tr.F, tr.W, feat_scope_name((feat_scope_t)pr.scope),
                tr.max_group, tr.n, pw);
    rc = train_one(a, &hp, &tr, &va, pw, fold, hp.ablate_neighbours ? "ntam(ablated)" : "ntam", &m);
    if (rc) goto out;
    rc = NTAM_ENOMEM;
    p_ntam = malloc(te.n * sizeof *p_ntam + 1);
    float *vprob = malloc(va.n * sizeof *vprob + 1);
    if (!p_ntam || !vprob) {
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
    int32_t wdays = t->tl ? (pr.window + t->tl->per_day - 1) / t->tl->per_day : pr.window;
    int32_t max_lead = wdays + pr.horizon > 30 ? wdays + pr.horizon : 30;
    int k = 0;
    ntam_eval_score(&te, p_ntam, thr, max_lead, hp.ablate_neighbours ? "NTAM (ablated)" : "NTAM",
                    &fr->rows[k++]);
    if (isfinite(thr1))
        ntam_eval_score(&te, p_ntam, thr1, max_lead, "NTAM, alarm at 1% val FPR", &fr->rows[k++]);
    fr->n_train = tr.n_pos + tr.n_neg;
    fr->n_pos_train = tr.n_pos;
    fr->n_test = te.n_pos + te.n_neg;
    fr->n_pos_test = te.n_pos;
    if (save_path && (rc = save_model(a, t, &pr, fold, m, &tr, mean, scale, thr, save_path)))
        goto out;
    int ablate_row = !hp.ablate_neighbours && (a->with_ablation || !a->cv);
    if (scoped) {
        /* the baselines' parts: scope node (same scored samples, node groups) */
        ntam_data_free(&tr);
        ntam_data_free(&va);
        ntam_data_free(&te);
        ntam_protocol_t pn = pr;
        pn.scope = FEAT_SCOPE_NODE;
        if ((rc = build_parts(t, &pn, &tr, &va, &te))) goto out;
        if ((size_t)fr->n_test != te.n_pos + te.n_neg || fr->n_pos_test != te.n_pos) {
            fprintf(stderr, "augur train: fold %d: the node-scope test part differs (%zu, %zu)\n",
                    fold, te.n_pos + te.n_neg, te.n_pos);
            rc = NTAM_EINVAL;
            goto out;
        }
        ntam_data_fit_norm(&tr, mean, scale);
        ntam_data_apply_norm(&tr, mean, scale);
        ntam_data_apply_norm(&va, mean, scale);
        ntam_data_apply_norm(&te, mean, scale);
    }
    rc = NTAM_ENOMEM;
    p_ab = malloc(te.n * sizeof *p_ab + 1);
    p_lr = malloc(te.n * sizeof *p_lr + 1);
    p_rule = malloc(te.n * sizeof *p_rule + 1);
    lrw = malloc(((size_t)tr.W * tr.F + 1) * sizeof *lrw);
    if (!p_ab || !p_lr || !p_rule || !lrw) goto out;
    int own_ablation = ablate_row && (tr.max_group > 1 || scoped);
    if (own_ablation) {
        ntam_hparams_t hpa = hp;
        hpa.ablate_neighbours = 1;
        if ((rc = train_one(a, &hpa, &tr, &va, pw, fold, "ntam(ablated)", &ab))) goto out;
        if ((rc = ntam_predict(ab, &te, chunk, p_ab))) goto out;
    } else if (ablate_row) {
        memcpy(p_ab, p_ntam, te.n * sizeof *p_ab);
    }
    if ((rc = ntam_logreg_fit(&tr, pw, 1e-3f, 400, lrw))) goto out;
    ntam_logreg_predict(&te, lrw, p_lr);
    for (size_t i = 0; i < te.n; i++)
        p_rule[i] = te.rule[i];
    if (!hp.ablate_neighbours && ablate_row) {
        ntam_eval_score(&te, p_ab, thr, max_lead,
                        own_ablation ? "NTAM no-neighbour" : "NTAM no-neighbour (=NTAM)",
                        &fr->rows[k++]);
    }
    ntam_eval_score(&te, p_lr, 0.5f, max_lead, "logistic regression", &fr->rows[k++]);
    ntam_eval_score(&te, p_rule, 0.5f, max_lead,
                    a->kind == NTAM_KIND_GPU ? "DBE/row-remap rule" : "SMART rule", &fr->rows[k++]);
    /* logistic: lead time at its own best-F1 threshold would need validation scores too; 0.5 is
     * its class-weighted decision point */
    fr->n_rows = k;
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
    ntam_tl_t st;
    memset(&st, 0, sizeof st);
    bbcsv_init(&t);
    source_t src = {&t, NULL, a.neg_keep};
    if (a.kind == NTAM_KIND_GPU && !a.window_set) a.pr.window = 24; /* hours */
    int tl = cli_ntam_load_tl("train", a.kind, a.src[0], a.quiet, &st);
    if (tl == 1) return 1;
    if (!tl) {
        src.tl = &st;
        if (a.model_filter) {
            fprintf(stderr, "augur train: --model-filter applies to CSV sources only\n");
            ntam_tl_free(&st);
            return 2;
        }
        if (a.n_src > 1) {
            fprintf(stderr, "augur train: a store directory or simulator spec is the only "
                            "source\n");
            ntam_tl_free(&st);
            return 2;
        }
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
    ntam_tl_free(&st);
    if (rc) {
        fprintf(stderr, "augur train: %s\n", ntam_strerror(rc));
        return 1;
    }
    return 0;
}

/* ---- the --demo predictor ------------------------------------------------------------------ */

extern const uint8_t augur_model_disk_sim[]; /* models/data/disk-sim.ntam, compiled in */
extern const size_t augur_model_disk_sim_len;
extern const uint8_t augur_model_gpu_sim[]; /* models/data/gpu-sim.ntam, compiled in */
extern const size_t augur_model_gpu_sim_len;

void cli_predict_demo_defaults(struct api_predict_config *c, const cli_demo_opts_t *demo)
{
    if (!c->model_path[0]) {
        c->model_mem[0] = augur_model_disk_sim;
        c->model_mem_len[0] = augur_model_disk_sim_len;
    }
    if (!c->model_path[1]) {
        c->model_mem[1] = augur_model_gpu_sim;
        c->model_mem_len[1] = augur_model_gpu_sim_len;
    }
    double ts = demo->time_scale > 0 ? demo->time_scale : 1;
    if (!c->step_ms[0]) c->step_ms[0] = (int64_t)(86400000.0 / ts);
    if (!c->step_ms[1])
        c->step_ms[1] = (int64_t)(3600000.0 / ts) > 1 ? (int64_t)(3600000.0 / ts) : 1;
    for (int k = 0; k < 2; k++)
        if (!c->interval_ms[k]) c->interval_ms[k] = 30000;
    if (!c->first_delay_ms) c->first_delay_ms = 5000;
}
