/*
 * cmd_eval.c — `augur eval`: score a trained NTAM model on its held-out devices (or all devices
 * of a new source) and print its metrics next to the baselines on the same samples.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "models/bbcsv.h"
#include "models/ntam.h"
#include "models/ntam_data.h"
#include "models/ntam_eval.h"
#include "models/ntam_file.h"
#include "models/ntam_train.h"

int cli_ntam_load_sources(const char *cmd, int kind, const char *const *src, int n_src,
                          const char *model_filter, bbcsv_t *t);

static const char eval_usage[] =
    "usage: augur eval --model MODEL --source SRC [--source SRC]... [options]\n"
    "\n"
    "Score MODEL on the devices it was not trained on: the test fold recorded in the model file\n"
    "(same device split, same time split, same labels as `augur train`), and print PR-AUC,\n"
    "ROC-AUC, best F1 and its threshold, recall at 0.1 % and 1 % false-positive rate, and the\n"
    "lead times (days from the first alarm at the model's threshold to the failure), next to\n"
    "the baselines on the same samples: logistic regression on the same features (fitted on\n"
    "the model's training devices), Backblaze's SMART rule (any raw 5/187/188/197/198 > 0) and,\n"
    "with --ablation, a model trained with --ablate-neighbours.\n"
    "\n"
    "options:\n"
    "  --model MODEL            model file written by augur train\n"
    "  --source SRC             Backblaze-format CSV (repeatable)\n"
    "  --model-filter NAME      keep only rows of this drive model\n"
    "  --ablation MODEL         also score this no-neighbour model\n"
    "  --all-devices            score every device of the source (a source the model never saw)\n"
    "  --plot FILE.svg          precision-recall curves\n"
    "  --predictions FILE.csv   every scored device-day: serial, date, probability, label, and the\n"
    "                           baselines' scores\n"
    "  --threads T              OpenBLAS threads (default 1)\n";

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

/* Build part with the protocol recorded in b; the feature set is the one whose schema matches. */
static int build_part(const bbcsv_t *t, const ntam_bundle_t *b, int part, ntam_data_t *d)
{
    ntam_protocol_t pr;
    ntam_protocol_default(&pr);
    const ntam_hparams_t *hp = ntam_hparams(b->model);
    pr.window = hp->window;
    pr.horizon = b->horizon;
    pr.folds = b->folds;
    pr.fold = b->fold;
    pr.split_seed = b->split_seed;
    pr.holdout_days = b->holdout_days;
    pr.negatives = (b->flags & NTAM_FLAG_NEG_NEVER_FAILED) ? NTAM_NEG_NEVER_FAILED : NTAM_NEG_ALL;
    char err[256];
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
    for (int f = 0; f < b->n_features; f++) fprintf(stderr, " %s", b->feature[f]);
    fprintf(stderr, ")\n");
    return 1;
}

int cli_eval(int argc, char **argv)
{
    const char *model = NULL, *ablation = NULL, *plot = NULL, *preds = NULL, *filter = NULL;
    const char *src[64];
    int n_src = 0, all = 0, threads = 1;
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
        if (!v) {
            fprintf(stderr, "augur eval: unknown option or missing value: '%s' (see --help)\n", o);
            return 2;
        }
        i++;
        if (!strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--ablation")) ablation = v;
        else if (!strcmp(o, "--plot")) plot = v;
        else if (!strcmp(o, "--predictions")) preds = v;
        else if (!strcmp(o, "--model-filter")) filter = v;
        else if (!strcmp(o, "--source") && n_src < 64) src[n_src++] = v;
        else if (!strcmp(o, "--threads")) {
            threads = atoi(v);
            if (threads < 1 || threads > 256) {
                fprintf(stderr, "augur eval: bad --threads '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "augur eval: unknown option '%s' (see augur eval --help)\n", o);
            return 2;
        }
    }
    if (!model || !n_src) {
        fprintf(stderr, "augur eval: --model and --source are required\n");
        return 2;
    }
    ntam_set_threads(threads);
    ntam_bundle_t b, ab;
    memset(&ab, 0, sizeof ab);
    if (load_model(model, &b)) return 1;
    if (ablation && load_model(ablation, &ab)) {
        ntam_bundle_clear(&b);
        return 1;
    }
    if (ablation && (ab.schema_hash != b.schema_hash || ab.horizon != b.horizon ||
                     ntam_hparams(ab.model)->window != ntam_hparams(b.model)->window)) {
        fprintf(stderr, "augur eval: %s: not trained on the same features, window and horizon\n",
                ablation);
        ntam_bundle_clear(&b);
        ntam_bundle_clear(&ab);
        return 1;
    }
    bbcsv_t t;
    ntam_data_t te, tr;
    memset(&te, 0, sizeof te);
    memset(&tr, 0, sizeof tr);
    float *p[4] = {NULL, NULL, NULL, NULL}, *lrw = NULL;
    int ret = 1;
    if (cli_ntam_load_sources("eval", b.kind, src, n_src, filter, &t)) goto out;
    if (build_part(&t, &b, all || !b.folds ? NTAM_PART_ALL : NTAM_PART_TEST, &te)) goto out;
    if (build_part(&t, &b, b.folds ? NTAM_PART_TRAIN : NTAM_PART_ALL, &tr)) goto out;
    if (!te.n_pos && !te.n_neg) {
        fprintf(stderr, "augur eval: no scored sample in the evaluation part\n");
        goto out;
    }
    ntam_data_apply_norm(&te, b.mean, b.scale);
    ntam_data_apply_norm(&tr, b.mean, b.scale);
    for (int k = 0; k < 4; k++) p[k] = malloc(te.n * sizeof(float) + 1);
    lrw = malloc(((size_t)tr.W * tr.F + 1) * sizeof *lrw);
    if (!p[0] || !p[1] || !p[2] || !p[3] || !lrw) goto out;
    int rc = ntam_predict(b.model, &te, 1024, p[0]);
    if (!rc && ablation) rc = ntam_predict(ab.model, &te, 1024, p[1]);
    if (rc) {
        fprintf(stderr, "augur eval: %s\n", ntam_strerror(rc));
        goto out;
    }
    float pw = tr.n_pos ? (float)sqrt((double)tr.n_neg / (double)tr.n_pos) : 1.0f;
    if (ntam_logreg_fit(&tr, pw, 1e-3f, 400, lrw)) goto out;
    ntam_logreg_predict(&te, lrw, p[2]);
    for (size_t i = 0; i < te.n; i++) p[3][i] = te.rule[i];
    int32_t max_lead = te.W + b.horizon > 30 ? te.W + b.horizon : 30;
    ntam_eval_row_t rows[4];
    const float *probs[4];
    const char *names[4];
    int n = 0;
    const char *const all_names[4] = {"NTAM", "NTAM no-neighbour", "logistic regression",
                                      "SMART rule"};
    for (int k = 0; k < 4; k++) {
        if (k == 1 && !ablation) continue;
        float thr = k == 0 ? b.threshold : k == 1 ? ab.threshold : 0.5f;
        ntam_eval_score(&te, p[k], thr, max_lead, all_names[k], &rows[n]);
        probs[n] = p[k];
        names[n] = k == 0 ? "probability" : k == 1 ? "ntam_no_neighbour" : k == 2 ? "logistic" : "smart_rule";
        n++;
    }
    size_t nd = 0;
    for (size_t i = 0; i < te.n; i++) nd += te.w[i] > 0;
    printf("%s: %s, window %d days, horizon %d days; %zu scored samples (%zu positive) on %s\n",
           model, b.kind == NTAM_KIND_GPU ? "gpu" : "disk", te.W, b.horizon, nd, te.n_pos,
           all || !b.folds ? "all devices of the source"
                           : "the held-out test fold of the model's device split");
    printf("alarm threshold %.4f (best F1 on the validation fold); lead times look back %d days\n",
           b.threshold, max_lead);
    ntam_eval_print(stdout, rows, n);
    if (plot) {
        const char *pn[4];
        for (int k = 0; k < n; k++) pn[k] = rows[k].name;
        if (ntam_eval_plot_svg(plot, &te, probs, pn, n)) {
            fprintf(stderr, "augur eval: cannot write %s\n", plot);
            goto out;
        }
    }
    if (preds && ntam_eval_write_predictions(preds, &t, &te, probs, names, n)) {
        fprintf(stderr, "augur eval: cannot write %s\n", preds);
        goto out;
    }
    ret = 0;
out:
    for (int k = 0; k < 4; k++) free(p[k]);
    free(lrw);
    ntam_data_free(&te);
    ntam_data_free(&tr);
    bbcsv_free(&t);
    ntam_bundle_clear(&b);
    ntam_bundle_clear(&ab);
    return ret;
}
