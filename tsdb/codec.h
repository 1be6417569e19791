/*
 * codec.h — (private to tsdb/) encoding of sealed data.
 *
 * Two levels:
 *   chunk: the samples of ONE series, strictly increasing timestamps,
 *          encoded with a time-series-aware scheme (timestamps
 *          delta-of-delta; values either Gorilla XOR, or decimal integers
 *          delta-coded, or constant — picked per chunk, whichever is smaller).
 *          Values round-trip bit-exactly (NaN payloads, +-Inf, -0.0,
 *          denormals).
 *   block: the chunks of many series (ascending series ids) for one time
 *          partition, zstd-compressed together, with a header and a
 *          checksum so that corruption is detected, never crashes.
 *
 * The byte layouts are documented in codec.c.
 */
#ifndef AUGUR_TSDB_CODEC_H
#define AUGUR_TSDB_CODEC_H

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

/* ---- chunks ------------------------------------------------------------ */

/* Upper bound of the encoded size of n samples. */
size_t chunk_bound(size_t n);

/* Append the encoding of s[0..n) (n >= 1, t strictly increasing) to out.
 * Deterministic: the same input always gives the same bytes.
 * Returns 0, TSDB_EINVAL (not strictly increasing, n == 0) or TSDB_ENOMEM. */
int chunk_encode(const tsdb_sample_t *s, size_t n, tbuf_t *out);

/* Number of samples and the time range of an encoded chunk, without
 * decoding the values. Returns 0 or TSDB_ECORRUPT. */
int chunk_info(const uint8_t *p, size_t len, uint32_t *n, int64_t *mint, int64_t *maxt);

/* Decode a chunk into out[0..cap). *n receives the count. Returns 0,
 * TSDB_ECORRUPT (malformed or truncated input, or more than cap samples). */
int chunk_decode(const uint8_t *p, size_t len, tsdb_sample_t *out, size_t cap, size_t *n);

/* Value encodings of a chunk (layouts in codec.c). */
enum {
    CHUNK_V_AUTO = -1,   /* chunk_encode_mode(): pick the smallest */
    CHUNK_V_CONST = 0,   /* one value */
    CHUNK_V_DECIMAL = 1, /* m / 10^k, delta-coded mantissas */
    CHUNK_V_GORILLA = 2, /* bit-packed XOR */
    CHUNK_V_XORB = 3,    /* byte-aligned XOR */
};

/* chunk_encode() with the value encoding forced to vmode (CHUNK_V_AUTO:
 * chunk_encode() itself). For tests and benchmarks: a forced encoding may
 * exceed chunk_bound(). Returns 0, TSDB_EINVAL (also: CONST forced on varying
 * values) or TSDB_ENOMEM. */
int chunk_encode_mode(const tsdb_sample_t *s, size_t n, int vmode, tbuf_t *out);

/* The value encoding (CHUNK_V_*) of an encoded chunk, or TSDB_ECORRUPT. */
int chunk_value_mode(const uint8_t *p, size_t len);

/* "const", "decimal", "gorilla", "xorb"; "?" for anything else. */
const char *chunk_value_mode_name(int vmode);

/* ---- blocks ------------------------------------------------------------ */

typedef struct {
    uint32_t sid;                 /* ascending, unique within a block */
    const tsdb_sample_t *samples; /* strictly increasing t */
    uint32_t n;                   /* >= 1 */
} block_series_t;

/* Encode series[0..ns) as one block, replacing out's contents. `level` is the
 * zstd level (e.g. 3). `scratch` is reused between calls to avoid
 * allocation; it must be a different buffer than out. Returns 0, TSDB_EINVAL,
 * TSDB_ENOMEM.
 * Compression depends mostly on which series share a block: one metric
 * across many nodes compresses better than one node's metrics (0.26 vs 0.59
 * bytes/sample on the benchmark fleet, partly because its nodes replay one
 * recording; ~15 % with independent nodes). See docs/storage-format.md. */
int block_encode(const block_series_t *series, size_t ns, int level, tbuf_t *out,
                 tbuf_t *scratch);

/* A decoded block: the directory and the decompressed chunk bytes. Reusable:
 * block_open() may be called again on the same reader; block_reader_free()
 * releases its buffers. */
typedef struct {
    uint32_t nseries;
    uint32_t *sids;     /* [nseries] ascending */
    uint32_t *counts;   /* [nseries] samples per series */
    int64_t *mints;     /* [nseries] */
    int64_t *maxts;     /* [nseries] */
    uint32_t *offsets;  /* [nseries + 1] into raw */
    tbuf_t raw;         /* decompressed chunk bytes */
    tbuf_t dir;         /* storage for the arrays above */
    uint64_t total_samples;
} block_reader_t;

/* Verify the checksum and decompress (bounded: refuses a declared size over
 * 1 GiB). Returns 0, TSDB_ECORRUPT, TSDB_ENOMEM. */
int block_open(block_reader_t *br, const uint8_t *p, size_t len);

/* Index of sid in the directory, or -1. */
long block_find(const block_reader_t *br, uint32_t sid);

/* Decode series i of an opened block into out[0..cap); *n its count.
 * Returns 0 or TSDB_ECORRUPT. */
int block_decode_series(const block_reader_t *br, uint32_t i, tsdb_sample_t *out, size_t cap,
                        size_t *n);

void block_reader_free(block_reader_t *br);

#endif /* AUGUR_TSDB_CODEC_H */
