/*
 * failures.h — device failure events: the ground truth that failure
 * prediction is trained and scored on.
 *
 * An event is stored in the store itself, as one sample of the series
 *
 *   augur_failure_event{kind="disk"|"gpu"|"node", instance="…", device="…",
 *                       serial="…" | UUID="…", reason="…"} 1  @ failure time
 *
 * so that it is durable like any sample (WAL, crash recovery, backups),
 * visible to PromQL, and listed by selecting that series. Empty fields are
 * left out of the label set. The same event recorded twice (same labels,
 * same time) is one sample: recording is idempotent.
 *
 * Entry points: POST/GET /api/v1/failures (api/failures.c), `augur label
 * failure` (cli/cmd_label.c) and the Backblaze importer (failure = 1 rows).
 */
#ifndef AUGUR_INGEST_FAILURES_H
#define AUGUR_INGEST_FAILURES_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/import_batch.h"
#include "ingest/json.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FAILURES_ERRNO_MAP(X)                                                                      \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid failure event")                                                         \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EJSON, -3, "malformed JSON")                                                                 \
    X(ESTORE, -4, "store error")

typedef enum {
#define FAILURES_ERR_ENUM_(name, code, msg) FAILURES_##name = code,
    FAILURES_ERRNO_MAP(FAILURES_ERR_ENUM_)
#undef FAILURES_ERR_ENUM_
} failures_err_t;

const char *failures_strerror(int err);

#define FAILURE_METRIC "augur_failure_event"
#define FAILURE_MAX_LABELS 7      /* __name__ + kind instance device serial UUID reason */
#define FAILURE_MAX_FIELD_LEN 256 /* instance, device, serial, uuid */
#define FAILURE_MAX_REASON_LEN 1024
#define FAILURE_MAX_EVENTS 10000 /* per JSON request */

/* One event. Strings are borrowed (NULL or "" = absent). */
typedef struct {
    const char *kind;     /* "disk", "gpu" or "node" */
    const char *instance; /* the node (as in the telemetry's instance label) */
    const char *device;   /* "sda", "nvme0n1", "nvidia3" … */
    const char *serial;   /* disk serial number */
    const char *uuid;     /* GPU UUID ("GPU-…"), label UUID as dcgm-exporter has it */
    const char *reason;   /* free text */
    int64_t t_ms;         /* failure time, ms since the epoch */
} failure_event_t;

/* Check an event: known kind, instance present, a disk needs device or
 * serial, a GPU device or uuid; lengths within the caps; valid UTF-8.
 * Returns 0 or FAILURES_EINVAL with err saying why. */
int failure_event_check(const failure_event_t *e, char *err, size_t errcap);

/* The label set of an event's series (borrowing its strings) into out
 * (FAILURE_MAX_LABELS entries). Returns the label count. */
uint32_t failure_event_labels(const failure_event_t *e, tsdb_label_t *out);

/* Add the event to a batch (strings copied). 0 or -1 (memory). */
int failure_event_add(ingest_batch_t *b, const failure_event_t *e);

/* Store events with tsdb_append (checked first: one bad event stores
 * nothing). res gets the counts (duplicate = already recorded). Returns 0,
 * FAILURES_EINVAL (err says which event and why), FAILURES_ENOMEM or
 * FAILURES_ESTORE (err holds the tsdb error). */
int failures_append(tsdb_t *db, const failure_event_t *ev, size_t n, tsdb_append_result_t *res,
                    char *err, size_t errcap);

/* Parse a JSON body: one event object or an array of them, with members
 * kind, instance, device, serial, uuid (or UUID), reason (strings) and time
 * (RFC 3339 string or Unix seconds, number or string). Unknown members are
 * refused (a typo must not silently drop a field). *events (malloc'd, free
 * it) point into doc's strings. Returns 0, FAILURES_EJSON or FAILURES_EINVAL
 * with err ("event 2: …", "line 3 column 5: …"), FAILURES_ENOMEM. */
int failures_parse_json(json_doc_t *doc, const char *p, size_t len, failure_event_t **events,
                        size_t *n, char *err, size_t errcap);

/* ---- listing ------------------------------------------------------------ */

typedef struct {
    const char *kind;     /* NULL = any */
    const char *instance; /* NULL = any */
    const char *device;   /* NULL = any */
    int64_t since, until; /* inclusive, ms; INT64_MIN/INT64_MAX = unbounded */
} failure_filter_t;

typedef struct {
    failure_event_t *v; /* sorted by time, then instance, device */
    size_t n, cap;
    tbuf_t strings; /* owns the events' strings */
} failure_list_t;

void failure_list_free(failure_list_t *l);

/* Every stored event matching the filter (stale markers skipped). Returns
 * 0, FAILURES_ENOMEM or FAILURES_ESTORE. */
int failures_list(tsdb_reader_t *r, const failure_filter_t *f, failure_list_t *out);

/* Append the events as a JSON array of objects {kind, instance, device,
 * serial, uuid, reason, time (RFC 3339), timestamp (Unix s)}, absent fields
 * left out. 0 or -1 (memory). */
int failures_json_write(tbuf_t *b, const failure_list_t *l);

#ifdef __cplusplus
}
#endif
#endif
