/*
 * bbcsv.h — a small streaming reader of Backblaze drive-stats CSV files into a column table,
 * for training and evaluating on Backblaze-format exports without a store.
 *
 * Columns are found by header name: date, serial_number, model, failure (required), the
 * location columns datacenter, cluster_id, vault_id, pod_id (optional) and smart_N_raw (any N
 * in 1..255; smart_N_normalized and unknown columns are ignored). A blank or non-numeric SMART
 * cell is a missing value (NaN). Rows whose date, serial or failure do not parse are skipped and
 * counted. Several files may be read into one table (their columns may differ).
 *
 * The neighbourhood of a drive is its Storage Pod: node = "datacenter/vault_id/pod_id" when the
 * row has a pod_id, else the drive is its own node (no neighbours are invented).
 */
#ifndef AUGUR_MODELS_BBCSV_H
#define AUGUR_MODELS_BBCSV_H

#include <stddef.h>
#include <stdint.h>

enum { BBCSV_OK = 0, BBCSV_EINVAL = -1, BBCSV_ENOMEM = -2, BBCSV_EIO = -3, BBCSV_EHEADER = -4 };

#define BBCSV_MAX_ATTR 256

typedef struct {
    size_t n_rows, cap;        /* rows kept, allocated */
    int32_t *dev;              /* row → device index */
    int32_t *day;              /* row → days since 1970-01-01 */
    uint8_t *failure;          /* row → failure column (0/1) */
    float *raw[BBCSV_MAX_ATTR]; /* raw[N][row]: smart_N_raw, NaN if missing; NULL if never seen */
    int32_t n_dev, dev_cap;
    char **serial;             /* device → serial number */
    int32_t *dev_node;         /* device → node index */
    int32_t dev_node_cap;      /* entries allocated in dev_node */
    int32_t n_node, node_cap;
    char **node;               /* node → name */
    size_t rows_skipped;       /* unparseable rows */
    size_t rows_filtered;      /* rows of other drive models (model filter) */
    /* private: hash of serials and node names */
    int32_t *dev_hash, *node_hash;
    size_t dev_hcap, node_hcap;
} bbcsv_t;

/* An empty table. */
void bbcsv_init(bbcsv_t *t);
/* Free everything; the table is empty again. */
void bbcsv_free(bbcsv_t *t);

/* Append the rows of one CSV file. model_filter: keep only rows whose model column equals it
 * (NULL = all). err (may be NULL) gets a message on failure. Returns 0, BBCSV_EIO (cannot
 * read), BBCSV_EHEADER (a required column is missing) or BBCSV_ENOMEM. */
int bbcsv_read_file(bbcsv_t *t, const char *path, const char *model_filter, char *err,
                    size_t errlen);

/* Parse "YYYY-MM-DD" into days since 1970-01-01. 0 or -1. */
int bbcsv_parse_date(const char *s, size_t n, int32_t *days);
/* Format days since 1970-01-01 as YYYY-MM-DD into buf (≥ 16 bytes). */
void bbcsv_format_date(int32_t days, char *buf);

#endif
