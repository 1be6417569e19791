/*
 * rw.h — Prometheus remote-write 1.0 and 2.0 request decoding.
 *
 * A POST /api/v1/write body is a snappy *block* (never framed) holding one
 * protobuf message: prometheus.WriteRequest (remote write 1.0) or
 * io.prometheus.write.v2.Request (2.0). rw_decode_v1()/rw_decode_v2() turn
 * such a body into an array of tsdb_series_in_t that goes straight into
 * tsdb_append(), plus a list of the series that were rejected and why.
 *
 *   rw_options_init()      defaults for the limits below
 *   rw_decoder_create()    a reusable decoder (one per thread / connection)
 *   rw_decoder_uncompress() the snappy step alone
 *   rw_decode_v1/_v2()     decompress (optionally), parse, validate
 *   rw_reject_format()     one rejected series as text for a 400 body
 *   rw_decoder_destroy()
 *
 * Memory: the decoder owns grow-only arenas (decompressed body, labels,
 * samples, series, symbols). After the first few requests have sized them
 * it allocates nothing: not per request, series or sample. Label strings are
 * not copied: they point into the decompressed body (or into the caller's
 * body for RW_ENC_IDENTITY).
 *
 * Outcomes: a request-level error (negative RW_E* code) means nothing of the
 * request is usable — the server answers 413 for RW_ETOOLARGE and 400 for
 * the others (RW_ENOMEM: 500). A request that parses returns 0 even when
 * some series are invalid: those are listed in rw_request_t.rejects (the
 * server stores the valid ones and answers 400 naming the rejected ones).
 * Native histograms, exemplars and metadata are parsed for well-formedness,
 * counted, and not stored.
 *
 * Threading: a decoder belongs to one thread at a time. Decoders share
 * nothing.
 */
#ifndef AUGUR_INGEST_RW_H
#define AUGUR_INGEST_RW_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors (request level) -------------------------------------------- */

#define RW_ERRNO_MAP(X)                                                                            \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(ETOOLARGE, -3, "uncompressed body larger than the configured limit")                         \
    X(ESNAPPY, -4, "corrupt snappy block")                                                         \
    X(EPROTO, -5, "malformed protobuf message")                                                    \
    X(EREF, -6, "invalid symbol reference (remote write 2.0)")                                     \
    X(ELIMIT, -7, "request exceeds a per-request limit (series, samples, labels, symbols)")

typedef enum {
#define RW_ERR_ENUM_(name, code, msg) RW_##name = code,
    RW_ERRNO_MAP(RW_ERR_ENUM_)
#undef RW_ERR_ENUM_
} rw_err_t;

/* Static message for an RW_E* code; never NULL. */
const char *rw_strerror(int err);

/* ---- per-series rejection reasons --------------------------------------- */

#define RW_REASON_MAP(X)                                                                           \
    X(NONE, 0, "valid")                                                                            \
    X(NO_NAME, 1, "missing __name__ label")                                                        \
    X(BAD_METRIC_NAME, 2, "metric name does not match [a-zA-Z_:][a-zA-Z0-9_:]*")                   \
    X(EMPTY_LABEL_NAME, 3, "empty label name")                                                     \
    X(BAD_LABEL_NAME, 4, "label name does not match [a-zA-Z_][a-zA-Z0-9_]*")                       \
    X(DUP_LABEL_NAME, 5, "duplicate label name")                                                   \
    X(BAD_UTF8, 6, "label value is not valid UTF-8")                                               \
    X(TOO_MANY_LABELS, 7, "too many labels")                                                       \
    X(NAME_TOO_LONG, 8, "label name too long")                                                     \
    X(VALUE_TOO_LONG, 9, "label value too long")

typedef enum {
#define RW_REASON_ENUM_(name, code, msg) RW_REASON_##name = code,
    RW_REASON_MAP(RW_REASON_ENUM_)
#undef RW_REASON_ENUM_
} rw_reason_t;

/* Static text for a reason; never NULL. */
const char *rw_reason_str(rw_reason_t r);

/* ---- options ------------------------------------------------------------ */

typedef struct {
    size_t max_body_bytes;     /* uncompressed protobuf size; default 32 MiB */
    uint32_t max_series;       /* series per request (request error); default 100,000 */
    uint32_t max_samples;      /* float samples per request (request error); default 1,000,000 */
    uint32_t max_labels_total; /* label pairs per request (request error); default 2,000,000 */
    uint32_t max_symbols;      /* 2.0 symbol table entries (request error); default 2,000,000 */
    uint32_t max_labels_per_series; /* above: series rejected; default 64 */
    uint32_t max_label_name_len;    /* bytes; above: series rejected; default 256 */
    uint32_t max_label_value_len;   /* bytes; above: series rejected; default 4096 */
} rw_options_t;

/* Fill *o with the defaults above. */
void rw_options_init(rw_options_t *o);

/* ---- decoder ------------------------------------------------------------ */

typedef struct rw_decoder rw_decoder_t;

/* Create a decoder with `opts` (NULL = defaults; a zero field also means its
 * default). Arenas are allocated on first use. Errors: RW_EINVAL (out NULL),
 * RW_ENOMEM. */
int rw_decoder_create(const rw_options_t *opts, rw_decoder_t **out);

/* Free the decoder and its arenas. Accepts NULL. */
void rw_decoder_destroy(rw_decoder_t *d);

/* Detail of the decoder's last error, e.g. "offset 1234: label: wire type 0
 * for a length-delimited field"; "" after a success. Valid until the next
 * call on this decoder. `*offset` (if not NULL) receives the byte offset
 * into the protobuf body at which the problem was found (0 when the error
 * is not about a position). */
const char *rw_decoder_errmsg(const rw_decoder_t *d, size_t *offset);

typedef struct {
    uint64_t allocs;   /* arena (re)allocations since create: flat in steady state */
    size_t bytes_held; /* arena capacity in bytes */
    uint64_t requests; /* decode calls that returned 0 */
} rw_decoder_stats_t;

void rw_decoder_stats(const rw_decoder_t *d, rw_decoder_stats_t *st);

/* Decompress a snappy block into the decoder's body buffer. The declared
 * length is read and checked against max_body_bytes before anything is
 * allocated. On 0, *out and *outlen are the protobuf body, valid until the next
 * call on this decoder (a later rw_decode_*(..., RW_ENC_IDENTITY, ...) on
 * exactly this buffer is allowed and copies nothing).
 * Errors: RW_EINVAL, RW_ETOOLARGE, RW_ESNAPPY, RW_ENOMEM. */
int rw_decoder_uncompress(rw_decoder_t *d, const void *src, size_t len, const uint8_t **out,
                          size_t *outlen);

/* ---- decoding ----------------------------------------------------------- */

typedef enum {
    RW_ENC_SNAPPY = 0,   /* body is a snappy block (Content-Encoding: snappy) */
    RW_ENC_IDENTITY = 1, /* body is the protobuf message itself */
} rw_encoding_t;

/* One rejected series. Its labels are those read from the wire (as far as
 * they were stored: at most max_labels_per_series), sorted when the reason
 * allowed sorting. */
typedef struct {
    uint32_t index;             /* position of the series in the request (0-based) */
    rw_reason_t reason;         /* why */
    tsdb_str_t label;           /* the offending label name; len 0 if none */
    const tsdb_label_t *labels; /* the series' labels, for naming it */
    uint32_t nlabels;
    uint32_t nsamples; /* samples dropped with it */
} rw_reject_t;

/* A decoded request. Every pointer is borrowed from the decoder (and, for
 * RW_ENC_IDENTITY, label strings from the caller's body) and is valid until
 * the next decode on the same decoder or its destroy. */
typedef struct {
    const tsdb_series_in_t *series; /* valid series with >= 1 sample: labels
                                     * sorted, unique, empty values dropped */
    size_t nseries;
    const uint32_t *series_index; /* request position of each series[i] */
    const rw_reject_t *rejects;   /* invalid series, in request order */
    size_t nrejects;
    uint64_t nseries_wire;           /* TimeSeries messages in the request */
    uint64_t nsamples;               /* float samples in series[] */
    uint64_t nsamples_rejected;      /* float samples in rejected series */
    uint64_t nhistograms;            /* native histogram samples: unsupported, not stored */
    uint64_t nseries_histogram_only; /* valid series with histograms and no float sample */
    uint64_t nexemplars;             /* exemplars: ignored */
    uint64_t nmetadata;              /* 1.0 MetricMetadata / 2.0 series Metadata: ignored */
    size_t body_bytes;               /* protobuf size (after snappy) */
} rw_request_t;

/* Decode a remote write 1.0 body (prometheus.WriteRequest).
 * Returns 0 (see rw_request_t: some series may be rejected) or:
 *   RW_EINVAL    bad arguments or encoding
 *   RW_ETOOLARGE uncompressed size above max_body_bytes (HTTP 413)
 *   RW_ESNAPPY   corrupt snappy block
 *   RW_EPROTO    malformed protobuf: truncation, a field past its end, a
 *                varint over 10 bytes, field number 0, a wrong wire type for
 *                a known field, groups (rw_decoder_errmsg() has details)
 *   RW_ELIMIT    more series/samples/labels than the options allow
 *   RW_ENOMEM
 * On error *out is zeroed. */
int rw_decode_v1(rw_decoder_t *d, const void *body, size_t len, rw_encoding_t enc,
                 rw_request_t *out);

/* Decode a remote write 2.0 body (io.prometheus.write.v2.Request). Label
 * strings point to symbols. Errors as rw_decode_v1(), plus RW_EREF: a
 * label, help or unit reference past the symbol table, an odd number of
 * label references, or a symbol table whose first entry is not "". */
int rw_decode_v2(rw_decoder_t *d, const void *body, size_t len, rw_encoding_t enc,
                 rw_request_t *out);

/* Write `series <index> {a="x", b="y"}: <reason> (label "<name>")` into buf
 * (always NUL-terminated when cap > 0; values are escaped as in PromQL,
 * output truncated with "..." to fit). Returns the length written. */
size_t rw_reject_format(const rw_reject_t *r, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* AUGUR_INGEST_RW_H */
