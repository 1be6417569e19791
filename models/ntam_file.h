/*
 * ntam_file.h — the NTAM model file: weights plus everything needed to use them correctly
 * (feature schema, normalisation statistics, hyper-parameters, horizon, alarm threshold, how
 * the training split was made), versioned and checksummed.
 *
 * Byte layout (version 3, all integers and floats little-endian):
 *
 *   offset      size   field
 *   0           8      magic "AUGRNTAM"
 *   8           4      format version (3; 2 is read too, see below)
 *   12          4      model flags = ntam_hparams_t.nb_summary: bit 0 neighbour summaries in
 *                      the keys/values, bit 1 node summary in the head; other bits 0
 *   16          8      total file length in bytes
 *   24          8      feature-schema hash (ntam_schema_hash of the feature names)
 *   32          4      kind (0 disk, 1 gpu)
 *   36          4      horizon (days)
 *   40          28     ntam_hparams_t: F, W, d, n_blocks, d_ff, d_head, ablate (7 × i32)
 *   68          4      F again (the number of schema entries that follow)
 *   72          F×48   feature names, NUL-padded
 *   72+48F      F×4    normalisation mean (f32): x' = (x − mean) · scale
 *   72+52F      F×4    normalisation scale (f32)
 *   72+56F      4      alarm threshold on P(fail) (f32)
 *   76+56F      8      model seed
 *   84+56F      8      split seed
 *   92+56F      4      folds (device folds of the split)
 *   96+56F      4      fold held out for validation/test
 *   100+56F     4      holdout days (time split; 0 = devices only)
 *   104+56F     4      protocol flags: bit 0 = negatives only from never-failed devices
 *   108+56F     4      neighbourhood scope (feat_scope_t: 0 node, 1 rack, 2 pod)
 *   112+56F     4      scope cap: most devices in one neighbourhood group (0 = no cap)
 *   116+56F     8      P = number of parameters
 *   124+56F     P×4    parameters (f32), in ntam_tensor_info order
 *   124+56F+4P  8      FNV-1a 64 of every byte before it
 *
 * Version 2 is the same without the two scope words (P at 108+56F): it is read as scope node,
 * no cap — how every version-2 model was trained and served (issue 8, rounds 3 and before).
 *
 * Example: F = 7, W = 1, d = 32, one block, d_ff = 64, d_head = 32 → P = 13,953 and the file is
 * 124 + 7·56 + 4·13,953 + 8 = 56,336 bytes.
 *
 * Loading checks, in order: length and magic (NTAM_EFORMAT), version (NTAM_EVERSION), stated
 * length against the real one (NTAM_ETRUNC when shorter), checksum (NTAM_ECHECKSUM), field
 * ranges (NTAM_EFORMAT), and, when the caller gives one, the schema hash (NTAM_ESCHEMA).
 */
#ifndef AUGUR_MODELS_NTAM_FILE_H
#define AUGUR_MODELS_NTAM_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "models/ntam.h"

/* Version 2 (issue 8, round 3): the model flags word and the neighbour-summary tensors
 * (nb.ws follows head.b2 when bit 0 is set; head.w1 has 2d + 4F rows when bit 1 is). Version 3
 * (issue 8, round 4): the neighbourhood scope and its cap; version 2 files still load (scope
 * node). Version 1 files (no summaries, written before) are refused with NTAM_EVERSION:
 * retrain them. */
#define NTAM_FILE_VERSION 3
#define NTAM_SCOPE_MAX 2 /* FEAT_SCOPE_POD (models/features.h) */
#define NTAM_MAX_FEATURES 256
#define NTAM_FEATURE_NAME 48

enum { NTAM_KIND_DISK = 0, NTAM_KIND_GPU = 1 };
#define NTAM_FLAG_NEG_NEVER_FAILED 1u

typedef struct {
    ntam_t *model;                                       /* owned; ntam_bundle_clear frees */
    uint64_t schema_hash;                                /* ntam_schema_hash(feature, F) */
    int32_t kind;                                        /* NTAM_KIND_* */
    int32_t horizon;                                     /* days */
    int32_t n_features;                                  /* F (= model's n_features) */
    char feature[NTAM_MAX_FEATURES][NTAM_FEATURE_NAME]; /* feature names */
    float mean[NTAM_MAX_FEATURES];                       /* normalisation offset */
    float scale[NTAM_MAX_FEATURES];                      /* normalisation factor */
    float threshold;                                     /* alarm threshold on probability */
    uint64_t seed;                                       /* model seed */
    uint64_t split_seed;                                 /* device-fold hash seed */
    int32_t folds, fold;                                 /* device folds, held-out fold */
    int32_t holdout_days;                                /* time split (0: devices only) */
    uint32_t flags;                                      /* NTAM_FLAG_* (protocol) */
    int32_t scope;     /* neighbourhood: feat_scope_t (0 node, 1 rack, 2 pod) */
    int32_t scope_cap; /* most devices in one neighbourhood group (0 = no cap) */
    int32_t version;   /* decode: the file's format version (2 or 3); ignored by encode */
} ntam_bundle_t;

/* Hash of an ordered list of feature names (FNV-1a 64 over names and NULs). */
uint64_t ntam_schema_hash(const char (*names)[NTAM_FEATURE_NAME], int n);

/* Bytes ntam_bundle_encode writes. */
size_t ntam_bundle_bound(const ntam_bundle_t *b);
/* Encode into buf (cap ≥ ntam_bundle_bound). Returns bytes written or a negative error. */
int64_t ntam_bundle_encode(const ntam_bundle_t *b, uint8_t *buf, size_t cap);
/* Decode len bytes (untrusted). expect_schema 0 = accept any. On success out->model is a new
 * model the caller frees with ntam_bundle_clear. Errors as listed at the top. */
int ntam_bundle_decode(const uint8_t *buf, size_t len, uint64_t expect_schema, ntam_bundle_t *out);

/* Write atomically (temporary file, fsync, rename). 0 or NTAM_EIO / NTAM_ENOMEM. */
int ntam_bundle_save(const ntam_bundle_t *b, const char *path);
/* Read and decode a file (at most 1 GiB). NTAM_EIO if it cannot be read. */
int ntam_bundle_load(const char *path, uint64_t expect_schema, ntam_bundle_t *out);

/* Free the model; NULL-safe. */
void ntam_bundle_clear(ntam_bundle_t *b);

#endif
