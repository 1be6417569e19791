/*
 * predict.h — online failure prediction from a store: the scoring half of the predictor job in
 * `augur serve` (the job itself, its schedule and the HTTP API live in api/predictions.c).
 *
 *   predict_model_load()   read and validate a model file for a device kind: magic, version,
 *                          length, checksum (models/ntam_file.h), then the kind, the feature
 *                          schema hash against feat_schema_hash(kind) and the feature names
 *                          against feat_name(); refused with a message naming what is wrong
 *   predict_run()          at time t: the devices of that kind present in the store
 *                          (feat_devices_from_store), their windows (feat_read_store,
 *                          feat_compute), the model's normalisation, batched NTAM inference over
 *                          whole nodes; per device P(fail within the horizon), the features that
 *                          weighed most and the neighbours that weighed most
 *   predict_result_append() augur_failure_probability{kind, instance, device, serial|UUID
 *                          [, rack, pod]} at t through tsdb_append
 *   predict_node_risk()    augur_node_failure_risk{instance} = 1 − Π(1 − p) over the devices
 *                          of the node (of one or several results), appended at t
 *
 * "Weighed most": features are the last step's normalised inputs (what the model sees, in
 * standard deviations of the training data), ranked by magnitude; neighbours are ranked by the
 * neighbourhood attention weight α_ij of the forward pass, next to the "no neighbour" slot's
 * weight. Both are cheap (no backward pass).
 *
 * No clock and no randomness: t is an argument. Errors: 0 or a negative NTAM_E* code; err gets
 * a sentence.
 */
#ifndef AUGUR_MODELS_PREDICT_H
#define AUGUR_MODELS_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "models/features.h"
#include "models/ntam_file.h"
#include "tsdb/tsdb.h"

#define PREDICT_TOP 5 /* features and neighbours kept per device */

/* A validated model: the bundle and what serving needs. */
typedef struct predict_model {
    ntam_bundle_t b; /* weights, normalisation, threshold, horizon */
    feat_kind_t kind;
    uint64_t checksum; /* FNV-1a 64 of the file (identifies the version serving) */
    size_t file_bytes;
    char path[512]; /* where it came from ("(embedded)" for built-in bytes) */
} predict_model_t;

/* Load and validate `path` for `kind`. On failure *out is NULL and err says why ("model file
 * X: checksum mismatch: the file is corrupted", "... was trained for gpu, not disk", ...).
 * Returns 0, NTAM_EIO, NTAM_ENOMEM, NTAM_EFORMAT, NTAM_EVERSION, NTAM_ETRUNC, NTAM_ECHECKSUM,
 * NTAM_ESCHEMA. */
int predict_model_load(const char *path, feat_kind_t kind, predict_model_t **out, char *err,
                       size_t errlen);
/* The same from bytes in memory (an embedded model); name is used in messages. */
int predict_model_from_bytes(const uint8_t *buf, size_t len, const char *name, feat_kind_t kind,
                             predict_model_t **out, char *err, size_t errlen);
void predict_model_destroy(predict_model_t *m); /* accepts NULL */

typedef struct {
    int64_t step_ms;   /* window step (0: 1 day for disks, 1 hour for GPUs) */
    int32_t batch_dev; /* devices per inference batch, whole nodes (0: 1024) */
} predict_config_t;

typedef struct {
    uint16_t feature; /* index into feat_name(kind, .) */
    float value;      /* normalised input at the last observed step */
} predict_feat_t;

typedef struct {
    uint32_t device; /* index into the result's devices */
    float weight;    /* attention weight α_ij */
} predict_nb_t;

typedef struct {
    float prob;                       /* P(fail within the horizon) */
    uint8_t nfeat, nnb;               /* entries used below */
    float slot_weight;                /* attention on the "no neighbour" slot */
    predict_feat_t feat[PREDICT_TOP]; /* largest |value| first */
    predict_nb_t nb[PREDICT_TOP];     /* largest weight first */
} predict_score_t;

typedef struct {
    feat_kind_t kind;
    int64_t t_ms;
    int32_t horizon;         /* days, from the model */
    float threshold;         /* the model's alarm threshold */
    uint32_t n;              /* devices scored */
    feat_devices_t *devices; /* identities (instance, device, id, rack, pod), owned */
    predict_score_t *score;  /* n entries */
} predict_result_t;

/* Score every device of the model's kind present at t. *out gets a new result (n may be 0).
 * Workspaces are allocated per call and freed before returning. */
int predict_run(const predict_model_t *m, tsdb_reader_t *r, int64_t t, const predict_config_t *cfg,
                predict_result_t **out, char *err, size_t errlen);
void predict_result_destroy(predict_result_t *res); /* accepts NULL */

/* Append augur_failure_probability of every device at res->t_ms. 0 or a negative TSDB_E*. */
int predict_result_append(tsdb_t *db, const predict_result_t *res);

/* Append augur_node_failure_risk{instance} at t from the devices of `n` results (NULL entries
 * skipped): 1 − Π(1 − p) over every device of the instance. *nodes gets the number of series
 * written (may be NULL). 0 or a negative TSDB_E*. */
int predict_node_risk_append(tsdb_t *db, const predict_result_t *const *res, int n, int64_t t,
                             uint32_t *nodes);

#endif
