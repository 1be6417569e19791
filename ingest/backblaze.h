/*
 * backblaze.h — Backblaze drive-stats CSV importer.
 *
 * Input: the daily CSV files of the public dataset (one row per drive per
 * day) and files derived from them: a header line naming the columns, then
 * rows. Columns are found by header name, so any year's layout works:
 *
 *   date, serial_number, model, capacity_bytes, failure,
 *   [datacenter, cluster_id, vault_id, pod_id, pod_slot_num, is_legacy_format,]
 *   smart_1_normalized, smart_1_raw, … smart_255_raw
 *
 * Output, one sample per row at 00:00 UTC of `date`, in the names
 * smartctl_exporter uses (docs/telemetry.md):
 *
 *   smartctl_device_attribute{instance, device, attribute_id="5",
 *       attribute_name="Reallocated_Sector_Ct", attribute_value_type="raw"} <smart_5_raw>
 *       (attribute_value_type="value" for smart_N_normalized)
 *   smartctl_device{instance, device, model_name, serial_number} 1
 *   smartctl_device_capacity_bytes{instance, device} <capacity_bytes>
 *   smartctl_device_temperature{instance, device, temperature_type="current"} <smart_194_raw>
 *   smartctl_device_power_on_seconds{instance, device} <smart_9_raw * 3600>
 *
 * device is the serial number. instance is "<datacenter>/<vault_id>/<pod_id>"
 * when the row has those columns filled (a Storage Pod is one server: its
 * drives are neighbours), with pod="<datacenter>/<vault_id>" as the wider
 * neighbourhood; otherwise the configured instance, else the serial number
 * (the drive is then its own node: no neighbours are invented).
 * A blank cell is a missing value: no sample.
 *
 * Failure events: one per drive, at the date of its last row with
 * failure = 1 (Backblaze marks exactly one row; derived files that copy the
 * label onto a drive's last N rows still give one event, at the failure
 * day), emitted by backblaze_finish() as augur_failure_event{kind="disk",
 * instance, device, serial, reason="backblaze failure=1"}.
 *
 * Rows that do not parse (wrong field count, non-numeric value, bad date,
 * failure not 0/1) are skipped, counted, and passed to on_error with their
 * line number; the rest of the file goes on.
 */
#ifndef AUGUR_INGEST_BACKBLAZE_H
#define AUGUR_INGEST_BACKBLAZE_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/import_batch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BACKBLAZE_MAX_COLUMNS 1024
#define BACKBLAZE_MAX_FIELD 256 /* bytes per cell */

typedef struct {
    const char *instance; /* instance for rows without location columns; NULL = serial */
    int skip_normalized;  /* do not import smart_N_normalized columns */
    size_t batch_samples; /* samples per sink call; 0 = 65536 */
    const ingest_sink_t *sink;
    /* Optional: the sink's id operations (ingest_store_sid_ops for a store).
     * Each drive's series are then resolved once and rows appended by id. */
    const ingest_sid_ops_t *sid_ops;
    ingest_totals_t *totals; /* sink outcomes are added here (may be NULL) */
    /* A row or header problem: line (1-based) and a message. May be NULL. */
    void (*on_error)(void *ctx, uint64_t line, const char *msg);
    void *err_ctx;
    /* Testing: parse every row on the general path. Rows are otherwise
     * parsed in one pass when they have no quote and nothing wrong; the
     * tests and the fuzz target compare the two paths' output. */
    int general_parse;
} backblaze_options_t;

void backblaze_options_init(backblaze_options_t *o);

typedef struct {
    uint64_t lines;           /* lines seen, headers and blanks included */
    uint64_t rows;            /* data rows imported */
    uint64_t rows_skipped;    /* data rows refused (on_error told why) */
    uint64_t rows_failed;     /* imported rows with failure = 1 */
    uint64_t values;          /* samples produced from SMART cells */
    uint64_t blanks;          /* blank SMART cells (missing values) */
    uint64_t failure_events;  /* events emitted by backblaze_finish() */
    uint64_t columns_ignored; /* header columns not imported (current file) */
} backblaze_stats_t;

typedef struct backblaze backblaze_t;

/* Errors are TSDB_E* codes (TSDB_EINVAL, TSDB_ENOMEM) or the sink's. */
int backblaze_create(const backblaze_options_t *o, backblaze_t **out);
void backblaze_destroy(backblaze_t *p); /* accepts NULL */

/* Start a new file: the next line is its header. */
void backblaze_file_begin(backblaze_t *p);

/* One line (without its newline; a trailing \r is ignored). Returns 0 when
 * the line was used or skipped (see stats), TSDB_EINVAL when the header is
 * unusable (no date or serial_number column: the rest of the file would be
 * refused too), or the sink's error (nothing more should be fed). */
int backblaze_line(backblaze_t *p, const char *line, size_t len);

/* Send what is batched (call at the end of each file to know that
 * everything so far is stored). */
int backblaze_flush(backblaze_t *p);

/* Flush, then emit and flush the failure events. Call once, at the end. */
int backblaze_finish(backblaze_t *p);

void backblaze_stats(const backblaze_t *p, backblaze_stats_t *st);

/* The standard ATA name of SMART attribute id ("Reallocated_Sector_Ct"),
 * or "Unknown_Attribute" as smartctl prints it. */
const char *backblaze_ata_name(unsigned id);

#ifdef __cplusplus
}
#endif
#endif
