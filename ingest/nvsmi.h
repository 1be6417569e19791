/*
 * nvsmi.h — nvidia-smi CSV importer.
 *
 * Input: the output of
 *
 *   nvidia-smi --query-gpu=timestamp,index,uuid,name,temperature.gpu,power.draw,…
 *              --format=csv [-l SECONDS]
 *
 * a header naming the fields (with units: "power.draw [W]"), then one row per
 * GPU per sample: "2024/03/01 12:00:00.123, 0, GPU-…, NVIDIA A100-SXM4-80GB,
 * 34, 250.12 W, …". Cells may carry units ("250.12 W", "81920 MiB"), and
 * "[N/A]", "N/A", "[Not Supported]" or any "[…]" for a missing value (no
 * sample). Yes/No, Active/Not Active and Enabled/Disabled read as 1/0.
 * Repeated headers (nvidia-smi -l restarts) are recognised and skipped.
 * The timestamp has no zone: it is read as UTC.
 *
 * Output: dcgm-exporter names with its labels gpu (index), UUID, device
 * ("nvidia<index>"), modelName, Hostname and instance (both the configured
 * instance), pci_bus_id when the CSV has pci.bus_id. The field map is in
 * docs/telemetry.md and nvsmi_field_map(); unknown columns are ignored and
 * counted.
 */
#ifndef AUGUR_INGEST_NVSMI_H
#define AUGUR_INGEST_NVSMI_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/import_batch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NVSMI_MAX_COLUMNS 256

typedef struct {
    const char *instance; /* instance and Hostname labels (required) */
    size_t batch_samples; /* 0 = 65536 */
    const ingest_sink_t *sink;
    ingest_totals_t *totals;
    void (*on_error)(void *ctx, uint64_t line, const char *msg);
    void *err_ctx;
} nvsmi_options_t;

void nvsmi_options_init(nvsmi_options_t *o);

typedef struct {
    uint64_t lines, rows, rows_skipped, values, missing;
    uint64_t columns_ignored; /* in the current file's header */
} nvsmi_stats_t;

typedef struct nvsmi nvsmi_t;

int nvsmi_create(const nvsmi_options_t *o, nvsmi_t **out); /* TSDB_EINVAL, TSDB_ENOMEM */
void nvsmi_destroy(nvsmi_t *p);                            /* accepts NULL */
void nvsmi_file_begin(nvsmi_t *p);
/* One line without its newline. 0 (used or skipped: see stats), TSDB_EINVAL
 * (header without timestamp/index: the file cannot be read), or the sink's
 * error. */
int nvsmi_line(nvsmi_t *p, const char *line, size_t len);
int nvsmi_flush(nvsmi_t *p);
void nvsmi_stats(const nvsmi_t *p, nvsmi_stats_t *st);

/* The dcgm-exporter metric for an nvidia-smi field name ("power.draw"), or
 * NULL if it is not imported. */
const char *nvsmi_field_map(const char *field);

/* "2024/03/01 12:00:00.123" (or RFC 3339) → ms. 0 or -1. */
int nvsmi_time_parse(const char *s, size_t len, int64_t *ms);

#ifdef __cplusplus
}
#endif
#endif
