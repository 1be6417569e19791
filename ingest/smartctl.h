/*
 * smartctl.h — importer for `smartctl -j -a /dev/X` (smartmontools >= 7)
 * JSON documents.
 *
 * One document describes one device at one moment (local_time.time_t, or
 * the configured default time). It becomes samples in the names
 * prometheus-community/smartctl_exporter uses, with labels instance (the
 * configured host) and device (device.name without "/dev/"):
 *
 *   smartctl_device{…, interface, protocol, model_family, model_name,
 *                   serial_number, firmware_version} 1
 *   smartctl_device_capacity_bytes, smartctl_device_smart_status (1 passed),
 *   smartctl_device_smartctl_exit_status, smartctl_device_temperature
 *   {temperature_type="current"}, smartctl_device_power_on_seconds,
 *   smartctl_device_power_cycle_count
 *   ATA:  smartctl_device_attribute{attribute_id, attribute_name,
 *         attribute_value_type="value"|"worst"|"thresh"|"raw"} per table row
 *   NVMe: smartctl_device_critical_warning, _available_spare,
 *         _available_spare_threshold, _percentage_used, _media_errors,
 *         _num_err_log_entries, _bytes_read, _bytes_written (data units × 512000)
 *
 * A file may hold one document or a JSON array of documents.
 */
#ifndef AUGUR_INGEST_SMARTCTL_H
#define AUGUR_INGEST_SMARTCTL_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/import_batch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *instance;    /* required */
    int64_t default_time_ms; /* for documents without local_time; INT64_MIN = refuse them */
    const ingest_sink_t *sink;
    ingest_totals_t *totals;
    /* Why a document was refused: line (1-based, 0 when not about a place). */
    void (*on_error)(void *ctx, uint64_t line, const char *msg);
    void *err_ctx;
} smartctl_options_t;

void smartctl_options_init(smartctl_options_t *o);

typedef struct {
    uint64_t documents, documents_skipped, values, attributes;
} smartctl_stats_t;

typedef struct smartctl smartctl_t;

int smartctl_create(const smartctl_options_t *o, smartctl_t **out); /* TSDB_EINVAL/ENOMEM */
void smartctl_destroy(smartctl_t *p);                               /* accepts NULL */

/* Import one file's text (ptr, len) and send it to the sink. Returns 0, 1
 * when the text was refused (malformed JSON, no device name, no time:
 * on_error said why, nothing of it was sent), or a negative sink error. */
int smartctl_document(smartctl_t *p, const char *ptr, size_t len);

void smartctl_stats(const smartctl_t *p, smartctl_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif
