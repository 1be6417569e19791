/*
 * anomaly.h — streaming anomaly detection inside `augur serve`.
 *
 * Every sample stored by remote write or text import whose metric name
 * matches the selector is handed to a worker thread through a bounded
 * queue (when the queue is full the samples are dropped and counted;
 * ingestion never waits). The worker runs one models/detect state per
 * series and appends, through tsdb_append():
 *
 *   augur_anomaly_score{metric="<original __name__>", <original labels>}
 *   augur_node_anomaly_rate{instance="..."}   fraction of that instance's
 *                                             detected series anomalous now
 *
 * Counters (names ending in _total, _count, _sum, _bucket) are scored on
 * their per-second rate. Detector states are saved atomically to
 * <storage.path>/detect.state every persist interval and at shutdown, and
 * loaded at start, so a restart does not warm up again.
 *
 * GET /api/v1/anomalies?since=&min_score=&limit= lists the series whose
 * latest alarm (score >= min_score, at or after since) is recent, highest
 * score first.
 */
#ifndef AUGUR_API_ANOMALY_H
#define AUGUR_API_ANOMALY_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

#define API_DETECT_DEFAULT_SELECTOR                                                        \
    "node_load1|node_cpu_seconds_total|node_memory_.*|smartctl_.*|DCGM_.*"

typedef struct {
    int enabled;                 /* 0 = no detection at all */
    const char *selector;        /* PCRE2 regex on __name__, fully anchored */
    size_t queue_bytes;          /* bound of the pending-sample queue; 0 = 64 MiB */
    int64_t persist_interval_ms; /* state save period; 0 = 5 min; < 0 = only at shutdown */
    double threshold;            /* score counted as anomalous (rate, default listing); 0 = 0.4 */
    uint32_t max_series;         /* series tracked at most (more are ignored); 0 = 1,000,000 */
} api_detect_config_t;

void api_detect_config_init(api_detect_config_t *c);

typedef struct api_detect api_detect_t;
struct api_server;

/* Start detection for server s on store db (after api_server_set_store).
 * state_path: file for persisted states (NULL = none). Returns 0, or -1
 * (bad selector: err filled; out of memory; thread creation failed). */
int api_detect_start(struct api_server *s, tsdb_t *db, const api_detect_config_t *cfg,
                     const char *state_path, char *err, size_t errcap);

/* Stop the worker: process what is queued, save the states, free.
 * Accepts NULL. Called by api_server_destroy(). */
void api_detect_destroy(api_detect_t *d);

/* The ingest hook: series just appended and each sample's outcome
 * (tsdb_outcome_t, series by series). Only STORED samples are queued. */
void api_detect_observe(api_detect_t *d, const tsdb_series_in_t *series, size_t n,
                        const uint8_t *outcomes);

/* Wait until everything queued before the call has been scored (tests). */
void api_detect_sync(api_detect_t *d);

/* augur_detect_* metrics in the text format. */
int api_detect_metrics_render(api_detect_t *d, tbuf_t *out);

/* GET /api/v1/anomalies: fills body (JSON) and *status. */
struct api_req;
int api_detect_handle_list(api_detect_t *d, const char *since, const char *min_score,
                           const char *limit, int64_t now_ms, tbuf_t *body, unsigned *status);

#endif
