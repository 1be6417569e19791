/* bench_nab.c — run augur's streaming detector over the NAB data and
 * print the NAB score for the three profiles (the C scorer in
 * models/nab.c, rules from ../shared/data/nab/README.md).
 *
 *   bench_nab [--nab DIR] [--labels NAME] [--results DIR] [--out DIR] [-v]
 *
 *   --nab DIR       NAB folder (data/, combined_windows_dev.json);
 *                   default $AUGUR_NAB_DIR, else ../shared/data/nab,
 *                   ../../shared/data/nab
 *   --labels NAME   label file inside DIR (default combined_windows_dev.json)
 *   --results DIR   score NAB results CSVs (<DIR>/<category>/<file>.csv, the
 *                   anomaly_score column, or one score a line) instead of
 *                   running the detector
 *   --out DIR       also write the detector's results there (NAB format)
 *   --set F=V       override one detect_config_t field (tuning runs)
 *   --folds         also score the even- and odd-numbered files apart
 *                   (two-fold check of a tuned setting)
 *   -v              per-file raw scores and detections (standard profile)
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "models/detect.h"
#include "models/nab.h"

/* --set NAME=VALUE: override one detect_config_t field (for tuning runs;
 * the figures in bench/RESULTS.md use the defaults). */
static int config_set(detect_config_t *cfg, const char *arg)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"alpha_fast", offsetof(detect_config_t, alpha_fast)},
        {"alpha_slow", offsetof(detect_config_t, alpha_slow)},
        {"alpha_season", offsetof(detect_config_t, alpha_season)},
        {"huber_k", offsetof(detect_config_t, huber_k)},
        {"spot_q", offsetof(detect_config_t, spot_q)},
        {"cusum_k", offsetof(detect_config_t, cusum_k)},
        {"refractory", offsetof(detect_config_t, refractory)},
        {"novelty_k", offsetof(detect_config_t, novelty_k)},
        {"sub_alarm", offsetof(detect_config_t, sub_alarm)},
        {"onset_margin", offsetof(detect_config_t, onset_margin)},
        {"novelty_decay", offsetof(detect_config_t, novelty_decay)},
        {"novelty_repeat", offsetof(detect_config_t, novelty_repeat)},
        {"season_gate", offsetof(detect_config_t, season_gate)},
        {"score_decay", offsetof(detect_config_t, score_decay)},
        {"score_repeat", offsetof(detect_config_t, score_repeat)},
        {"score_margin", offsetof(detect_config_t, score_margin)},
        {"gap_weight", offsetof(detect_config_t, gap_weight)},
    };
    const char *eq = strchr(arg, '=');
    if (!eq) return -1;
    char *end;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end) return -1;
    if ((size_t)(eq - arg) == 6 && !strncmp(arg, "warmup", 6)) {
        if (v < 0 || v > 1e9) return -1;
        cfg->warmup = (uint32_t)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strlen(fields[i].name) == (size_t)(eq - arg) &&
            !strncmp(arg, fields[i].name, (size_t)(eq - arg))) {
            float f = (float)v;
            memcpy((char *)cfg + fields[i].off, &f, sizeof f);
            return 0;
        }
    return -1;
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(tmp, 0777) && errno != EEXIST ? -1 : 0;
}

/* Last column of each data line of a results file. */
static int load_results(const char *path, double *s, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    size_t i = 0;
    while (fgets(line, sizeof line, f)) {
        char *c = strrchr(line, ',');
        char *num = c ? c + 1 : line, *e;
        double v = strtod(num, &e);
        if (e == num) continue; /* header */
        if (i < n) s[i] = v;
        i++;
    }
    fclose(f);
    return i == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("AUGUR_NAB_DIR"), *labels = "combined_windows_dev.json";
    const char *results = NULL, *out = NULL;
    detect_config_t cfg;
    detect_config_init(&cfg);
    int folds = 0;   /* also score the even- and odd-numbered files apart */
    int verbose = 0; /* 1: per-file raw scores; 2: also windows and detections */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nab") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--labels") && i + 1 < argc)
            labels = argv[++i];
        else if (!strcmp(argv[i], "--results") && i + 1 < argc)
            results = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            if (config_set(&cfg, argv[++i])) {
                fprintf(stderr, "bench_nab: --set %s: unknown field or bad value\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--folds"))
            folds = 1;
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-vv"))
            verbose = 2;
        else {
            fprintf(stderr, "usage: bench_nab [--nab DIR] [--labels NAME] [--results DIR] "
                            "[--out DIR] [--set FIELD=VALUE] [--folds] [-v|-vv]\n");
            return 2;
        }
    }
    static const char *const guesses[] = {"../shared/data/nab", "../../shared/data/nab",
                                          "../../../shared/data/nab"};
    struct stat sb;
    for (size_t g = 0; !dir && g < sizeof guesses / sizeof guesses[0]; g++)
        if (!stat(guesses[g], &sb)) dir = guesses[g];
    if (!dir) {
        fprintf(stderr, "bench_nab: NAB data not found: pass --nab DIR or set AUGUR_NAB_DIR\n");
        return 2;
    }
    nab_corpus_t c;
    char err[4096] = "";
    int rc = nab_corpus_load(dir, labels, &c, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_nab: %s: %s\n", err, nab_strerror(rc));
        return 1;
    }
    size_t rows = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < c.n; i++) {
        rows += c.csv[i].n;
        if (results) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", results, c.keys[i]);
            if (load_results(path, c.scores[i], c.csv[i].n)) {
                fprintf(stderr, "bench_nab: %s: missing or wrong row count\n", path);
                nab_corpus_free(&c);
                return 1;
            }
            continue;
        }
        detect_state_t st;
        detect_init(&st, 0);
        const char *dbg = getenv("AUGUR_NAB_DEBUG"); /* file name part: print the alarms */
        int show = dbg && *dbg && strstr(c.keys[i], dbg);
        const char *dmin = getenv("AUGUR_NAB_DEBUG_MIN"); /* print rows scoring above */
        double show_min = dmin ? atof(dmin) : 0.15;
        for (size_t r = 0; r < c.csv[i].n; r++) {
            detect_result_t dr;
            c.scores[i][r] = detect_update(&st, &cfg, c.csv[i].ts[r], c.csv[i].v[r], &dr);
            if (show && dr.score >= show_min)
                printf("%s row %zu x %g exp %g score %.3f s %.2f comp %.1f %.1f %.1f %.1f %.1f "
                       "nov %.2f ev %u\n",
                       c.keys[i], r, dr.x, dr.expected, dr.score, dr.surprise, dr.comp[0],
                       dr.comp[1], dr.comp[2], dr.comp[3], dr.comp[4], dr.comp[5], dr.events);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (out && !results) {
        for (size_t i = 0; i < c.n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", out, c.keys[i]);
            char *slash = strrchr(path, '/');
            *slash = 0;
            mkdirs(path);
            *slash = '/';
            FILE *f = fopen(path, "w");
            if (!f) {
                fprintf(stderr, "bench_nab: cannot write %s\n", path);
                continue;
            }
            fputs("timestamp,value,anomaly_score\n", f);
            for (size_t r = 0; r < c.csv[i].n; r++)
                fprintf(f, "%s,%.17g,%.17g\n", c.csv[i].tstr[r], c.csv[i].v[r], c.scores[i][r]);
            fclose(f);
        }
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    size_t nwin = 0;
    for (size_t i = 0; i < c.n; i++)
        nwin += c.files[i].nwin;
    printf("NAB %s: %zu files, %zu rows, %zu windows%s\n", labels, c.n, rows, nwin,
           results ? "" : "");
    if (!results)
        printf("detector: %.1f ms for all rows (%.1f ns/sample)\n", secs * 1e3,
               secs * 1e9 / (double)(rows ? rows : 1));
    double *pfr = malloc(c.n * sizeof *pfr);
    for (int p = 0; p < NAB_NPROFILES; p++) {
        nab_result_t r;
        rc = nab_score(c.files, c.n, &nab_profiles[p], &r, pfr);
        if (rc) {
            fprintf(stderr, "bench_nab: %s\n", nab_strerror(rc));
            break;
        }
        printf("%-20s score %7.2f  threshold %.6f  raw %8.4f  TP %llu FP %llu FN %llu\n",
               nab_profiles[p].name, r.score, r.threshold, r.raw, (unsigned long long)r.tp,
               (unsigned long long)r.fp, (unsigned long long)r.fn);
        if (verbose && p == 0)
            for (size_t i = 0; i < c.n; i++) {
                size_t det = 0, prob = nab_probation(c.files[i].n);
                for (size_t k = prob; k < c.files[i].n; k++)
                    det += c.scores[i][k] >= r.threshold;
                printf("  %-60s raw %8.4f  windows %zu  detections %zu\n", c.keys[i], pfr[i],
                       c.files[i].nwin, det);
                if (verbose < 2) continue;
                for (size_t w = 0; w < c.files[i].nwin; w++)
                    printf("      window %zu..%zu\n", c.files[i].win[w].lo, c.files[i].win[w].hi);
                for (size_t k = prob; k < c.files[i].n; k++)
                    if (c.scores[i][k] >= r.threshold)
                        printf("      det row %zu score %.3f value %+.3f\n", k, c.scores[i][k],
                               nab_row_value(&c.files[i], &nab_profiles[p], k));
            }
    }
    /* Two-fold check against over-fitting: the files in label order, split
     * into even and odd positions, each half scored on its own (its own
     * optimised threshold and normalisation). */
    nab_file_t *half = malloc(c.n * sizeof *half);
    for (int h = 0; folds && half && h < 2 && !rc; h++) {
        size_t m = 0, hw = 0;
        for (size_t i = (size_t)h; i < c.n; i += 2) {
            half[m++] = c.files[i];
            hw += c.files[i].nwin;
        }
        printf("fold %d/2 (%zu files, %zu windows):", h, m, hw);
        for (int p = 0; p < NAB_NPROFILES; p++) {
            nab_result_t r;
            rc = nab_score(half, m, &nab_profiles[p], &r, NULL);
            if (rc) break;
            printf("  %s %.2f", nab_profiles[p].name, r.score);
        }
        printf("\n");
    }
    free(half);
    free(pfr);
    nab_corpus_free(&c);
    return rc ? 1 : 0;
}
