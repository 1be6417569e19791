/*
 * nab.h — the Numenta Anomaly Benchmark score, written from the rules in
 * ../shared/data/nab/README.md (probationary period, labelled windows,
 * scaled sigmoid, cost profiles, one optimised threshold per profile,
 * normalisation null = 0 / perfect = 100), plus the small readers it needs:
 * NAB data CSVs (`timestamp,value`) and the label JSON.
 *
 *   nab_csv_parse()      `timestamp,value` text -> rows (ms timestamps, values)
 *   nab_labels_parse()   combined_windows*.json -> per-file windows (strings)
 *   nab_windows_resolve() window timestamps -> row indices of one file
 *   nab_score()          corpus score for one profile, threshold optimised
 *
 * Everything is deterministic; no clock is read. Errors are negative
 * NAB_E* codes (nab_strerror()).
 */
#ifndef AUGUR_MODELS_NAB_H
#define AUGUR_MODELS_NAB_H

#include <stddef.h>
#include <stdint.h>

#define NAB_ERRNO_MAP(X)                                                                   \
    X(OK, 0, "success")                                                                    \
    X(EINVAL, -1, "invalid argument")                                                      \
    X(ENOMEM, -2, "out of memory")                                                         \
    X(EPARSE, -3, "malformed input")                                                       \
    X(ENOTFOUND, -4, "window timestamp matches no row")                                    \
    X(ERANGE, -5, "score outside [0, 1] or not finite")

typedef enum {
#define NAB_ERR_ENUM_(name, code, msg) NAB_##name = code,
    NAB_ERRNO_MAP(NAB_ERR_ENUM_)
#undef NAB_ERR_ENUM_
} nab_err_t;

const char *nab_strerror(int err);

/* ---- profiles ---------------------------------------------------------- */

typedef struct {
    const char *name; /* "standard", "reward_low_FP_rate", "reward_low_FN_rate" */
    double tp_w, fp_w, fn_w;
} nab_profile_t;

#define NAB_NPROFILES 3
extern const nab_profile_t nab_profiles[NAB_NPROFILES];

/* S(y) = 2/(1+e^(5y)) - 1 for y <= 3, -1 above. */
double nab_sigmoid(double y);

/* ---- data -------------------------------------------------------------- */

typedef struct {
    size_t lo, hi; /* first and last row of the window (inclusive) */
} nab_window_t;

/* One file to score. scores[i] is the detector's output on row i. */
typedef struct {
    size_t n;
    const double *scores;
    const nab_window_t *win; /* in row order, not overlapping */
    size_t nwin;
} nab_file_t;

typedef struct {
    double threshold; /* optimised; 1.1 = no detections */
    double raw;       /* corpus raw score at threshold */
    double null_raw, perfect_raw;
    double score; /* normalised: 100 (raw - null) / (perfect - null) */
    uint64_t tp, fp, fn; /* windows detected, detections outside windows, windows missed */
} nab_result_t;

/* Probationary rows of a file of n rows: min(floor(0.15 n), 750). */
size_t nab_probation(size_t n);

/* What a detection on row i of file f is worth under profile p (README
 * step 4). Rows in probation are worth 0. */
double nab_row_value(const nab_file_t *f, const nab_profile_t *p, size_t i);

/* Raw score of one file at threshold th (README step 6). */
double nab_file_raw(const nab_file_t *f, const nab_profile_t *p, double th);

/* Optimise the threshold over all files for profile p and score them.
 * per_file_raw, if not NULL, receives each file's raw score at the chosen
 * threshold. Allocates a workspace internally (not a hot path).
 * Errors: NAB_EINVAL, NAB_ENOMEM, NAB_ERANGE (a score not finite or outside
 * [0, 1]). */
int nab_score(const nab_file_t *files, size_t nfiles, const nab_profile_t *p, nab_result_t *out,
              double *per_file_raw);

/* ---- readers ----------------------------------------------------------- */

/* Parsed `timestamp,value` CSV. ts[i] in ms since the epoch (UTC assumed),
 * tstr[i] the timestamp text of row i (NUL-terminated, inside text). */
typedef struct {
    size_t n;
    int64_t *ts;
    double *v;
    char *text;  /* owned copy of the file, timestamps NUL-terminated */
    char **tstr; /* row -> timestamp text */
} nab_csv_t;

/* Parse CSV text (len bytes) with a header line. Timestamps are
 * `YYYY-MM-DD HH:MM:SS` (an optional fraction is accepted and ignored for
 * ts) or integer epoch seconds/milliseconds. Errors: NAB_EPARSE, NAB_ENOMEM. */
int nab_csv_parse(const char *text, size_t len, nab_csv_t *out);
/* Read and parse a file. NAB_EPARSE also when the file cannot be read. */
int nab_csv_load(const char *path, nab_csv_t *out);
void nab_csv_free(nab_csv_t *c); /* accepts a zeroed struct */

/* `YYYY-MM-DD HH:MM:SS[.ffffff]` -> ms since the epoch, or -1 with *ok = 0. */
int64_t nab_parse_time(const char *s, size_t len, int *ok);

/* Label file: keys (relative paths) and their windows as timestamp strings
 * with the `.000000` fraction removed. */
typedef struct {
    char *key;
    size_t nwin;
    char (*win)[2][32]; /* [k][0] start, [k][1] end */
} nab_label_entry_t;

typedef struct {
    size_t n;
    nab_label_entry_t *e;
} nab_labels_t;

int nab_labels_parse(const char *json, size_t len, nab_labels_t *out);
int nab_labels_load(const char *path, nab_labels_t *out);
void nab_labels_free(nab_labels_t *l);
/* Entry for key, or NULL. */
const nab_label_entry_t *nab_labels_find(const nab_labels_t *l, const char *key);

/* Map the windows of entry e onto rows of c (first row whose timestamp text
 * equals each end). win must hold e->nwin entries. NAB_ENOTFOUND when a
 * timestamp is not a row. */
int nab_windows_resolve(const nab_label_entry_t *e, const nab_csv_t *c, nab_window_t *win);

/* ---- corpus ------------------------------------------------------------ */

/* Every file named in a label file, loaded from <dir>/data/<key>, with its
 * windows as rows. files[i].scores points at scores[i] (zeroed, n rows),
 * for the caller to fill before nab_score(). */
typedef struct {
    size_t n;
    nab_labels_t labels;
    nab_csv_t *csv;      /* [n] */
    nab_window_t **win;  /* [n] */
    double **scores;     /* [n][csv[i].n] */
    nab_file_t *files;   /* [n] */
    const char **keys;   /* [n] label keys, e.g. "realTraffic/speed_6005.csv" */
} nab_corpus_t;

/* Load <dir>/<labels_name> (e.g. "combined_windows_dev.json") and the data
 * files it names. Errors: NAB_EPARSE (a file unreadable or malformed; the
 * path is copied into err), NAB_ENOTFOUND, NAB_ENOMEM. */
int nab_corpus_load(const char *dir, const char *labels_name, nab_corpus_t *c, char *err,
                    size_t errcap);
void nab_corpus_free(nab_corpus_t *c);

#endif
