/*
 * rw_encode.h — Prometheus remote-write 1.0 request encoding (the inverse of
 * rw_decode_v1() in rw.h): what `augur import --url` sends to a running
 * server, and what tests and load generators can use.
 *
 * Wire format (prometheus.WriteRequest, protobuf; then one snappy block):
 *
 *   WriteRequest  1: repeated TimeSeries (length-delimited)
 *   TimeSeries    1: repeated Label      2: repeated Sample
 *   Label         1: name (string)       2: value (string)
 *   Sample        1: value (double, fixed64)  2: timestamp (int64 ms, varint)
 *
 * Labels are written sorted by name, as the 1.0 spec requires; the input
 * need not be sorted. Example: one series {__name__="up", job="a"} with the
 * sample (1000 ms, 1.0) encodes as
 *
 *   0a 28                          timeseries, 40 bytes
 *     0a 0e 0a 08 "__name__" 12 02 "up"
 *     0a 08 0a 03 "job" 12 01 "a"
 *     12 0c 09 <1.0 as 8 LE bytes> 10 e8 07
 *
 * Encoders write into caller buffers sized by the _bound() functions.
 */
#ifndef AUGUR_INGEST_RW_ENCODE_H
#define AUGUR_INGEST_RW_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/rw.h"
#include "tsdb/tsdb.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RW_ENCODE_MAX_LABELS 256 /* per series */

/* Upper bound of rw_encode_v1()'s output for these series. */
size_t rw_encode_v1_bound(const tsdb_series_in_t *series, size_t n);

/* Encode a WriteRequest into out (cap bytes; rw_encode_v1_bound() is always
 * enough). *len gets the size. Returns 0, RW_EINVAL (NULL arguments, more
 * than RW_ENCODE_MAX_LABELS labels in a series, cap too small). */
int rw_encode_v1(const tsdb_series_in_t *series, size_t n, uint8_t *out, size_t cap, size_t *len);

/* Upper bound of the snappy block for n input bytes. */
size_t rw_snappy_bound(size_t n);

/* Compress into one snappy block. Returns 0 or RW_EINVAL (cap too small). */
int rw_snappy_compress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
