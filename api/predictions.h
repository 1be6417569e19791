/*
 * predictions.h — the failure predictor job of `augur serve` (models/predict.h does the
 * scoring).
 *
 * A thread evaluates every loaded model on its schedule (disks hourly, GPUs every 5 minutes by
 * default): the windows of every device of that kind present in the store at the wall-clock
 * time t, batched NTAM inference, then through tsdb_append at t:
 *
 *   augur_failure_probability{kind, instance, device, serial|UUID[, rack, pod]}
 *   augur_node_failure_risk{instance}     1 − Π(1 − p) over the node's devices (all kinds)
 *
 * HTTP (api/predictions.c):
 *   GET  /api/v1/predictions?kind=&min_probability=&limit=   read: ranked list with the
 *        features and the neighbours that weighed most
 *   POST /api/v1/admin/reload     admin: re-read the model files, validate, then swap
 *   POST /api/v1/admin/predict    admin: evaluate every model now (answers when done)
 *
 * Reload (also on SIGHUP): each configured file is loaded and validated (magic, version,
 * length, checksum, kind, feature schema) before anything is swapped; if any is bad, none is
 * swapped, the old models keep serving and the error says which file and why.
 */
#ifndef AUGUR_API_PREDICTIONS_H
#define AUGUR_API_PREDICTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

typedef struct api_predict_config {
    const char *model_path[2];   /* [0] disk, [1] GPU; NULL = none (or the embedded bytes) */
    const uint8_t *model_mem[2]; /* built-in model bytes used when model_path is NULL */
    size_t model_mem_len[2];
    int64_t interval_ms[2]; /* evaluation period; 0 = 1 h (disk), 5 min (GPU) */
    int64_t step_ms[2];     /* window step; 0 = 1 d (disk), 1 h (GPU) */
    int64_t first_delay_ms; /* first evaluation this long after the start (0 = at once) */
} api_predict_config_t;

void api_predict_config_init(api_predict_config_t *c);

typedef struct api_predict api_predict_t;
struct api_server;

/* Load and validate the models, start the job. No model at all is an error (nothing to do).
 * Returns 0, or -1 with err filled (a bad model file, out of memory, no thread). */
int api_predict_start(tsdb_t *db, const api_predict_config_t *cfg, api_predict_t **out, char *err,
                      size_t errcap);
/* Stop the thread (waits for an evaluation in progress) and free. Accepts NULL. */
void api_predict_stop(api_predict_t *p);

/* Re-read the configured model files; on any error nothing changes. 0 or -1 (err filled). */
int api_predict_reload(api_predict_t *p, char *err, size_t errcap);

/* Evaluate every model now and wait for it. 0, or -1 (err filled: the last failure). */
int api_predict_run_now(api_predict_t *p, char *err, size_t errcap);

/* Attach to the server for the HTTP endpoints and /metrics (NULL detaches; detach before
 * api_predict_stop). */
void api_server_set_predictor(struct api_server *s, api_predict_t *p);

/* augur_predict_* metrics in the text format. */
int api_predict_metrics_render(api_predict_t *p, tbuf_t *out);

/* JSON of GET /api/v1/predictions into body; *status gets the HTTP status. kind, min_p and
 * limit are the raw query parameters (NULL when absent). 0 or -1 (out of memory). */
int api_predict_list_json(api_predict_t *p, const char *kind, const char *min_p, const char *limit,
                          tbuf_t *body, unsigned *status);

#endif
