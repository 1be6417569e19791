/*
 * cmd_eval.c — `augur eval`: score a trained NTAM model on its held-out devices (or all devices
 * of a new source) and print its metrics next to the baselines on the same samples. Sources as
 * for `augur train`: Backblaze CSV files, a store directory or a simulator spec (disks, GPUs).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "models/bbcsv.h"
#include "models/features.h"
#include "models/ntam.h"
#include "models/ntam_data.h"
#include "models/ntam_eval.h"
#include "models/ntam_file.h"
#include "models/ntam_source.h"
#include "models/ntam_train.h"

int cli_ntam_load_sources(const char *cmd, int kind, const char *const *src, int n_src,
                          const char *model_filter, bbcsv_t *t);
int cli_ntam_load_tl(const char *cmd, int kind, const char *src, int quiet, ntam_tl_t *tl);

static const char eval_usage[] =
    "usage: augur eval --model MODEL --source SRC [--source SRC]... [options]\n"
    "\n"
    "Score MODEL on the devices it was not trained on: the test fold recorded in the model file\n"
    "(same device split, same time split, same labels as `augur train`), and print PR-AUC,\n"
    "ROC-AUC, best F1 and its threshold, recall at 0.1 % and 1 % false-positive rate, and the\n"
    "lead times (days from the first alarm at the model's threshold to the failure), next to\n"
    "the baselines on the same samples: logistic regression on the same features (fitted on\n"
    "the model's training devices), the rule (disks: Backblaze's, any raw SMART\n"
    "5/187/188/197/198 > 0; GPUs: any DBE or row-remap failure) and, with --ablation MODEL or\n"
    "--ablate-neighbours, NTAM without neighbourhood attention.\n"
    "\n"
    "Source SRC, as for augur train: an augur store directory (labels: its failure events),\n"
    "a simulator spec sim:nodes=N,days=N,seed=N,hazard=X,... (the same spec as for training to\n"
    "score the held-out fold; another seed with --all-devices for a fleet never seen), or\n"
    "Backblaze CSV files (disk models trained on CSV; repeatable). Store and simulator sources\n"
    "need a model trained on them (the serving feature schema).\n"
    "\n"
    "options:\n"
    "  --model MODEL            model file written by augur train\n"
    "  --source SRC             store directory, sim:SPEC or Backblaze-format CSV\n"
    "  --kind disk|gpu          refuse a model of another kind (default: the model's)\n"
    "  --model-filter NAME      CSV: keep only rows of this drive model\n"
    "  --ablation MODEL         also score this no-neighbour model\n"
    "  --ablate-neighbours      also train NTAM without neighbourhood attention on the model's\n"
    "                           training devices (its hyper-parameters, --epochs) and score it\n"
    "  --epochs N               epochs for --ablate-neighbours (default 30, patience 6)\n"
    "  --seed S                 seed for --ablate-neighbours (default: the model's)\n"
    "  --scope node|rack|pod    the neighbourhood scope the model was trained with (read from\n"
    "                           the model file; given, it must match)\n"
    "  --neg-keep N             store/simulator: fit the baselines on 1 in N training node-days\n"
    "                           without a positive (default 1: all)\n"
    "  --all-devices            score every device of the source (a source the model never saw)\n"
    "  --plot FILE.svg          precision-recall curves\n"
    "  --predictions FILE.csv   every scored device-day: serial (or UUID), date, probability,\n"
    "                           label, and the baselines' scores\n"
    "  --threads T              OpenBLAS threads (default 1)\n"
    "  --quiet                  no progress output\n";

static int load_model(const char *path, ntam_bundle_t *b)
{
    int rc = ntam_bundle_load(path, 0, b);
    if (rc) {
        fprintf(stderr, "augur eval: %s: %s%s\n", path, ntam_strerror(rc),
                rc == NTAM_EIO ? " (cannot read the file)" : "");
        return 1;
    }
    return 0;
}

/* The protocol recorded in b. */
static void model_protocol(const ntam_bundle_t *b, ntam_protocol_t *pr)
{
    ntam_protocol_default(pr);
    const ntam_hparams_t *hp = ntam_hparams(b->model);
    pr->window = hp->window;
    pr->horizon = b->horizon;
    pr->folds = b->folds;
    pr->fold = b->fold;
    pr->split_seed = b->split_seed;
    pr->holdout_days = b->holdout_days;
    pr->negatives = (b->flags & NTAM_FLAG_NEG_NEVER_FAILED) ? NTAM_NEG_NEVER_FAILED : NTAM_NEG_ALL;
    pr->scope = b->scope;
    pr->scope_cap = b->scope_cap;
}

/* Build part with the protocol recorded in b. CSV: the feature set is the one whose schema
 * matches; timeline: the serving schema of its kind, checked before (tl_schema_ok). */
static int build_part(const bbcsv_t *t, const ntam_tl_t *tl, const ntam_bundle_t *b, int part,
                      int neg_keep, ntam_data_t *d)
{
    ntam_protocol_t pr;
    model_protocol(b, &pr);
    char err[256];
    if (tl) {
        int rc = ntam_tl_build(tl, &pr, part, neg_keep, d, err, sizeof err);
        if (rc) fprintf(stderr, "augur eval: %s\n", err);
        return rc ? 1 : 0;
    }
    const int sets[2] = {NTAM_FEAT_LEAKFREE, NTAM_FEAT_ALL};
    for (int s = 0; s < 2; s++) {
        pr.features = sets[s];
        int rc = ntam_data_build(t, &pr, part, d, err, sizeof err);
        if (rc) {
            fprintf(stderr, "augur eval: %s\n", err);
            return 1;
        }
        if (d->F == b->n_features &&
            ntam_schema_hash((const char(*)[NTAM_FEATURE_NAME])d->feature, d->F) == b->schema_hash)
            return 0;
        ntam_data_free(d);
    }
    fprintf(stderr, "augur eval: %s: the source's features do not match the model's (%d:",
            ntam_strerror(NTAM_ESCHEMA), b->n_features);
    for (int f = 0; f < b->n_features; f++)
        fprintf(stderr, " %s", b->feature[f]);
    fprintf(stderr, ")\n");
    return 1;
}

static const char *kind_str(int k)
{
    return k == NTAM_KIND_GPU ? "gpu" : "disk";
}

/* A timeline source needs a model of the serving feature schema of its kind. */
static int tl_schema_ok(const char *path, const ntam_bundle_t *b)
{
    feat_kind_t k = b->kind == NTAM_KIND_GPU ? FEAT_KIND_GPU : FEAT_KIND_DISK;
    if (b->schema_hash == feat_schema_hash(k) && (uint32_t)b->n_features == feat_count(k)) return 1;
    fprintf(stderr,
            "augur eval: %s: %s (trained on other features than the %s features of "
            "docs/features.md, e.g. Backblaze CSV columns): evaluate it on that kind of source, "
            "or retrain it on a store or simulator source\n",
            path, ntam_strerror(NTAM_ESCHEMA), kind_str(b->kind));
    return 0;
}

int cli_eval(int argc, char **argv)
{
    const char *model = NULL, *ablation = NULL, *plot = NULL, *preds = NULL, *filter = NULL;
    const char *src[64];
    int n_src = 0, all = 0, threads = 1, kind = -1, ablate = 0, epochs = 0, neg_keep = 1, quiet = 0;
    int scope = -1;
    long seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        }
        if (!strcmp(o, "--all-devices")) {
            all = 1;
            continue;
        }
        if (!strcmp(o, "--ablate-neighbours")) {
            ablate = 1;
            continue;
        }
        if (!strcmp(o, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "augur eval: unknown option or missing value: '%s' (see --help)\n", o);
            return 2;
        }
        i++;
        char *end;
        if (!strcmp(o, "--model"))
            model = v;
        else if (!strcmp(o, "--ablation"))
            ablation = v;
        else if (!strcmp(o, "--plot"))
            plot = v;
        else if (!strcmp(o, "--predictions"))
            preds = v;
        else if (!strcmp(o, "--model-filter"))
            filter = v;
        else if (!strcmp(o, "--source")) {
            if (n_src == 64) {
                fprintf(stderr, "augur eval: at most 64 sources\n");
                return 2;
            }
            src[n_src++] = v;
        } else if (!strcmp(o, "--kind")) {
            if (!strcmp(v, "disk"))
                kind = NTAM_KIND_DISK;
            else if (!strcmp(v, "gpu"))
                kind = NTAM_KIND_GPU;
            else {
                fprintf(stderr, "augur eval: bad --kind '%s' (disk or gpu)\n", v);
                return 2;
            }
        } else if (!strcmp(o, "--scope")) {
            feat_scope_t sc;
            if (feat_scope_parse(v, &sc)) {
                fprintf(stderr, "augur eval: bad value '%s' for --scope (node, rack or pod)\n", v);
                return 2;
            }
            scope = (int)sc;
        } else if (!strcmp(o, "--threads") || !strcmp(o, "--epochs") || !strcmp(o, "--neg-keep") ||
                   !strcmp(o, "--seed")) {
            long x = strtol(v, &end, 10);
            int lim = !strcmp(o, "--seed") ? 2147483647 : !strcmp(o, "--epochs") ? 100000 : 1000;
            if (*end || end == v || x < (!strcmp(o, "--seed") ? 0 : 1) || x > lim) {
                fprintf(stderr, "augur eval: bad value '%s' for %s\n", v, o);
                return 2;
            }
            if (!strcmp(o, "--threads"))
                threads = (int)x;
            else if (!strcmp(o, "--epochs"))
                epochs = (int)x;
            else if (!strcmp(o, "--neg-keep"))
                neg_keep = (int)x;
            else
                seed = x;
        } else {
            fprintf(stderr, "augur eval: unknown option '%s' (see augur eval --help)\n", o);
            return 2;
        }
    }
    if (!model || !n_src) {
        fprintf(stderr, "augur eval: --model and --source are required\n");
        return 2;
    }
    if (ablation && ablate) {
        fprintf(stderr, "augur eval: --ablation MODEL and --ablate-neighbours: choose one\n");
        return 2;
    }
    ntam_set_threads(threads);
    ntam_bundle_t b, ab;
    memset(&ab, 0, sizeof ab);
    if (load_model(model, &b)) return 1;
    if (kind >= 0 && b.kind != kind) {
        fprintf(stderr, "augur eval: %s: trained for %s devices, not %s\n", model, kind_str(b.kind),
                kind_str(kind));
        ntam_bundle_clear(&b);
        return 1;
    }
    if (scope >= 0 && scope != b.scope) {
        fprintf(stderr,
                "augur eval: %s was trained with --scope %s, not %s: its neighbourhoods are "
                "part of the model (omit --scope to use the model's)\n",
                model, feat_scope_name((feat_scope_t)b.scope),
                feat_scope_name((feat_scope_t)scope));
        ntam_bundle_clear(&b);
        return 2;
    }
    if (ablation && load_model(ablation, &ab)) {
        ntam_bundle_clear(&b);
        return 1;
    }
    if (ablation &&
        (ab.schema_hash != b.schema_hash || ab.horizon != b.horizon || ab.kind != b.kind ||
         ntam_hparams(ab.model)->window != ntam_hparams(b.model)->window)) {
        fprintf(stderr,
                "augur eval: %s: not trained on the same kind, features, window and horizon\n",
                ablation);
        ntam_bundle_clear(&b);
        ntam_bundle_clear(&ab);
        return 1;
    }
    bbcsv_t t;
    bbcsv_init(&t);
    ntam_tl_t tl;
    memset(&tl, 0, sizeof tl);
    const ntam_tl_t *tlp = NULL;
    ntam_data_t te, tr, va;
    memset(&te, 0, sizeof te);
    memset(&tr, 0, sizeof tr);
    memset(&va, 0, sizeof va);
    float *p[4] = {NULL, NULL, NULL, NULL}, *lrw = NULL;
    ntam_t *abm = NULL;
    int ret = 1;
    int lt = cli_ntam_load_tl("eval", b.kind, src[0], quiet, &tl);
    if (lt == 1) goto out;
    if (!lt) {
        if (n_src > 1 || filter) {
            fprintf(stderr, "augur eval: %s\n",
                    filter ? "--model-filter applies to CSV sources only"
                           : "a store directory or simulator spec is the only source");
            goto out;
        }
        if (!tl_schema_ok(model, &b) || (ablation && !tl_schema_ok(ablation, &ab))) goto out;
        tlp = &tl;
    } else if (cli_ntam_load_sources("eval", b.kind, src, n_src, filter, &t)) {
        goto out;
    }
    int test_part = all || !b.folds ? NTAM_PART_ALL : NTAM_PART_TEST;
    if (build_part(&t, tlp, &b, test_part, 1, &te)) goto out;
    if (build_part(&t, tlp, &b, b.folds ? NTAM_PART_TRAIN : NTAM_PART_ALL, neg_keep, &tr)) goto out;
    if (ablate && b.folds && build_part(&t, tlp, &b, NTAM_PART_VAL, 1, &va)) goto out;
    if (!te.n_pos && !te.n_neg) {
        fprintf(stderr, "augur eval: no scored sample in the evaluation part\n");
        goto out;
    }
    if (!te.n_pos) {
        fprintf(stderr,
                "augur eval: no positive sample in the evaluation part (%zu negatives): no "
                "failure within %d days of a scored window\n",
                te.n_neg, b.horizon);
        goto out;
    }
    ntam_data_apply_norm(&te, b.mean, b.scale);
    ntam_data_apply_norm(&tr, b.mean, b.scale);
    ntam_data_apply_norm(&va, b.mean, b.scale);
    for (int k = 0; k < 4; k++)
        p[k] = malloc(te.n * sizeof(float) + 1);
    lrw = malloc(((size_t)tr.W * tr.F + 1) * sizeof *lrw);
    if (!p[0] || !p[1] || !p[2] || !p[3] || !lrw) goto out;
    int rc = ntam_predict(b.model, &te, 1024, p[0]);
    if (!rc && ablation) rc = ntam_predict(ab.model, &te, 1024, p[1]);
    if (rc) {
        fprintf(stderr, "augur eval: %s\n", ntam_strerror(rc));
        goto out;
    }
    float pw = tr.n_pos ? (float)sqrt((double)tr.n_neg / (double)tr.n_pos) : 1.0f;
    float ab_thr = ablation ? ab.threshold : 0.5f;
    if (ablate) {
        if (!tr.n_pos) {
            fprintf(stderr, "augur eval: --ablate-neighbours: no positive in the training part\n");
            goto out;
        }
        ntam_hparams_t hp = *ntam_hparams(b.model);
        hp.ablate_neighbours = 1;
        ntam_train_cfg_t tc;
        ntam_train_cfg_default(&tc);
        if (epochs) tc.epochs = epochs;
        tc.seed = seed >= 0 ? (uint64_t)seed : b.seed;
        tc.opt.pos_weight = pw;
        ntam_train_result_t res;
        if ((rc = ntam_create(&hp, tc.seed, &abm)) ||
            (rc = ntam_train_run(abm, &tc, &tr, va.n_pos ? &va : NULL, &res)) ||
            (rc = ntam_predict(abm, &te, 1024, p[1]))) {
            fprintf(stderr, "augur eval: --ablate-neighbours: %s\n", ntam_strerror(rc));
            goto out;
        }
        if (va.n) {
            float *vp = malloc(va.n * sizeof *vp + 1);
            if (vp && !ntam_predict(abm, &va, 1024, vp)) ab_thr = ntam_eval_threshold(&va, vp);
            free(vp);
        }
        if (!quiet)
            fprintf(stderr, "ablation: %d epochs, kept epoch %d (val PR-AUC %.3f)\n",
                    res.epochs_run, res.best_epoch, res.best_val_pr_auc);
    }
    if (ntam_logreg_fit(&tr, pw, 1e-3f, 400, lrw)) goto out;
    ntam_logreg_predict(&te, lrw, p[2]);
    for (size_t i = 0; i < te.n; i++)
        p[3][i] = te.rule[i];
    int32_t wdays = tlp ? (te.W + tlp->per_day - 1) / tlp->per_day : te.W;
    int32_t max_lead = wdays + b.horizon > 30 ? wdays + b.horizon : 30;
    ntam_eval_row_t rows[4];
    const float *probs[4];
    const char *names[4];
    int n = 0;
    const char *const all_names[4] = {"NTAM", "NTAM no-neighbour", "logistic regression",
                                      b.kind == NTAM_KIND_GPU ? "DBE/row-remap rule"
                                                              : "SMART rule"};
    for (int k = 0; k < 4; k++) {
        if (k == 1 && !ablation && !ablate) continue;
        float thr = k == 0 ? b.threshold : k == 1 ? ab_thr : 0.5f;
        ntam_eval_score(&te, p[k], thr, max_lead, all_names[k], &rows[n]);
        probs[n] = p[k];
        names[n] = k == 0                    ? "probability"
                   : k == 1                  ? "ntam_no_neighbour"
                   : k == 2                  ? "logistic"
                   : b.kind == NTAM_KIND_GPU ? "gpu_rule"
                                             : "smart_rule";
        n++;
    }
    size_t nd = 0;
    for (size_t i = 0; i < te.n; i++)
        nd += te.w[i] > 0;
    printf("%s: %s, window %d %s, horizon %d days; %zu scored samples (%zu positive) on %s\n",
           model, kind_str(b.kind), te.W, tlp && tlp->per_day > 1 ? "hours" : "days", b.horizon, nd,
           te.n_pos,
           all || !b.folds ? "all devices of the source"
                           : "the held-out test fold of the model's device split");
    printf("alarm threshold %.4f (best F1 on the validation fold); lead times look back %d days\n",
           b.threshold, max_lead);
    if (b.scope != FEAT_SCOPE_NODE) {
        if (b.scope_cap)
            printf("neighbourhood scope %s, groups cut at %d devices (whole nodes)\n",
                   feat_scope_name((feat_scope_t)b.scope), b.scope_cap);
        else
            printf("neighbourhood scope %s, no cap\n", feat_scope_name((feat_scope_t)b.scope));
    }
    ntam_eval_print(stdout, rows, n);
    if (plot) {
        const char *pn[4];
        for (int k = 0; k < n; k++)
            pn[k] = rows[k].name;
        if (ntam_eval_plot_svg(plot, &te, probs, pn, n)) {
            fprintf(stderr, "augur eval: cannot write %s\n", plot);
            goto out;
        }
    }
    if (preds && (tlp ? ntam_tl_write_predictions(preds, tlp, &te, probs, names, n)
                      : ntam_eval_write_predictions(preds, &t, &te, probs, names, n))) {
        fprintf(stderr, "augur eval: cannot write %s\n", preds);
        goto out;
    }
    ret = 0;
out:
    for (int k = 0; k < 4; k++)
        free(p[k]);
    free(lrw);
    ntam_destroy(abm);
    ntam_data_free(&te);
    ntam_data_free(&tr);
    ntam_data_free(&va);
    bbcsv_free(&t);
    ntam_tl_free(&tl);
    ntam_bundle_clear(&b);
    ntam_bundle_clear(&ab);
    return ret;
}
