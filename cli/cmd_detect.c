/* cmd_detect.c — `augur detect`: run the streaming detector over CSV files
 * (NAB format) and write NAB results files. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "models/detect.h"
#include "models/nab.h"

static const char detect_usage[] =
    "usage: augur detect FILE.csv [--out SCORES.csv] [--counter]\n"
    "       augur detect --all DIR --out OUTDIR [--counter]\n"
    "\n"
    "Score a time series with augur's streaming anomaly detector (the one\n"
    "`augur serve` runs on ingested series; docs/anomaly-detection.md). Input:\n"
    "CSV with a header and rows `timestamp,value`, timestamps\n"
    "`YYYY-MM-DD HH:MM:SS` (UTC) or integer epoch seconds/milliseconds, rows in\n"
    "time order (the Numenta Anomaly Benchmark format). Output: the NAB\n"
    "results format, `timestamp,value,anomaly_score`, one row per input row;\n"
    "each score uses only the rows up to it. Score 0.4 means p = 1e-4, 0.5\n"
    "p = 1e-6 (see the docs); the first 150 rows are warm-up (score 0).\n"
    "\n"
    "  --out PATH     output file (default: standard output); with --all, the\n"
    "                 output directory (the input tree is mirrored there)\n"
    "  --all DIR      score every *.csv under DIR (recursively)\n"
    "  --counter      the values are a monotonic counter: score its rate\n"
    "  -h, --help     this text\n";

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

static int detect_file(const char *in, const char *out, uint32_t flags)
{
    nab_csv_t c;
    int rc = nab_csv_load(in, &c);
    if (rc) {
        fprintf(stderr, "augur detect: %s: %s\n", in, rc == NAB_ENOMEM ? "out of memory"
                                                      : "unreadable or not timestamp,value CSV");
        return 1;
    }
    FILE *f = stdout;
    if (out && !(f = fopen(out, "w"))) {
        fprintf(stderr, "augur detect: cannot write %s: %s\n", out, strerror(errno));
        nab_csv_free(&c);
        return 1;
    }
    detect_config_t cfg;
    detect_config_init(&cfg);
    detect_state_t st;
    detect_init(&st, flags);
    fputs("timestamp,value,anomaly_score\n", f);
    for (size_t i = 0; i < c.n; i++) {
        double s = detect_update(&st, &cfg, c.ts[i], c.v[i], NULL);
        fprintf(f, "%s,%.17g,%.17g\n", c.tstr[i], c.v[i], s);
    }
    int bad = ferror(f);
    if (out) bad |= fclose(f) != 0;
    else bad |= fflush(f) != 0;
    if (bad) fprintf(stderr, "augur detect: write error on %s\n", out ? out : "stdout");
    nab_csv_free(&c);
    return bad ? 1 : 0;
}

static int walk(const char *dir, const char *outdir, uint32_t flags, int *nfiles)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "augur detect: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    /* Sorted order so that runs are reproducible. */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char in[4096], out[4096];
        snprintf(in, sizeof in, "%s/%s", dir, names[i]);
        snprintf(out, sizeof out, "%s/%s", outdir, names[i]);
        struct stat sb;
        if (stat(in, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) {
            rc |= walk(in, out, flags, nfiles);
        } else {
            size_t l = strlen(names[i]);
            if (l < 4 || strcmp(names[i] + l - 4, ".csv")) continue;
            if (mkdirs(outdir)) {
                fprintf(stderr, "augur detect: cannot create %s\n", outdir);
                rc = 1;
                continue;
            }
            rc |= detect_file(in, out, flags);
            (*nfiles)++;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int cli_detect(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *all = NULL;
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(detect_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--counter")) {
            flags |= DETECT_F_COUNTER;
        } else if (!strcmp(a, "--out") || !strcmp(a, "--all")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "augur detect: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--out"))
                out = argv[++i];
            else
                all = argv[++i];
        } else if (!strncmp(a, "--out=", 6)) {
            out = a + 6;
        } else if (!strncmp(a, "--all=", 6)) {
            all = a + 6;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "augur detect: unknown option '%s'\n%s", a, detect_usage);
            return 2;
        } else if (!in) {
            in = a;
        } else {
            fprintf(stderr, "augur detect: one input file at a time (or --all DIR)\n");
            return 2;
        }
    }
    if (all) {
        if (in || !out) {
            fprintf(stderr, "augur detect: --all DIR needs --out OUTDIR and no FILE\n");
            return 2;
        }
        int nfiles = 0;
        int rc = walk(all, out, flags, &nfiles);
        fprintf(stderr, "augur detect: %d files scored into %s\n", nfiles, out);
        return rc;
    }
    if (!in) {
        fputs(detect_usage, stderr);
        return 2;
    }
    return detect_file(in, out, flags);
}
