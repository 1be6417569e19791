/*
 * json.h — a small, strict JSON (RFC 8259) parser for the importers and the
 * failure-event API.
 *
 * json_parse() turns a document (ptr, len) into a flat array of nodes in
 * document order. A container's children follow it; node.next is the index
 * of the node after the container's whole subtree, so siblings are walked
 * with `for (k = first_child; k != end; k = nodes[k].next)`. Strings (keys
 * and values) are unescaped into one buffer owned by the document and are
 * NUL-terminated (they may also contain NUL bytes from \u0000: use .len).
 *
 * Limits: the input is never read past ptr + len; nesting is capped
 * (JSON_MAX_DEPTH) and the node count is bounded by the input length, so a
 * document of n bytes costs at most about 40 n bytes of memory.
 *
 *   json_doc_t d; json_doc_init(&d);
 *   if (json_parse(&d, text, len) == 0) {
 *       const json_node_t *t = json_path(&d, 0, "smart_status.passed");
 *       ...
 *   }
 *   json_doc_free(&d);
 */
#ifndef AUGUR_INGEST_JSON_H
#define AUGUR_INGEST_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JSON_ERRNO_MAP(X)                                                                          \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(ESYNTAX, -3, "JSON syntax error")                                                            \
    X(ETRUNC, -4, "JSON document truncated")                                                       \
    X(EDEPTH, -5, "JSON nested too deeply")                                                        \
    X(ETOOLARGE, -6, "JSON document too large")

typedef enum {
#define JSON_ERR_ENUM_(name, code, msg) JSON_##name = code,
    JSON_ERRNO_MAP(JSON_ERR_ENUM_)
#undef JSON_ERR_ENUM_
} json_err_t;

const char *json_strerror(int err);

#define JSON_MAX_DEPTH 64
#define JSON_MAX_BYTES ((size_t)256 << 20)

typedef enum {
    JSON_NULL = 0,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type_t;

typedef struct {
    json_type_t type;
    uint32_t next;   /* index of the node after this subtree */
    uint32_t nkids;  /* containers: number of children */
    uint32_t key;    /* object members: offset of the key in doc.strings; else UINT32_MAX */
    uint32_t keylen; /* key length */
    uint32_t str;    /* strings: offset in doc.strings; numbers: offset of the literal */
    uint32_t len;    /* string length (bytes, unescaped); numbers: literal length */
    int is_int;      /* numbers: integral literal that fits int64 exactly (i is valid) */
    double num;      /* numbers: value (nearest double) */
    int64_t i;       /* numbers: exact value when is_int */
} json_node_t;

typedef struct {
    json_node_t *nodes; /* nodes[0] is the root */
    uint32_t n, cap;
    char *strings; /* unescaped strings and number literals, NUL-terminated each */
    size_t slen, scap;
    /* Where parsing failed: 1-based line and column, byte offset. */
    uint32_t err_line, err_col;
    size_t err_off;
    const char *err_msg; /* static text: what was expected */
} json_doc_t;

void json_doc_init(json_doc_t *d);
/* Free what the document holds (it can be parsed into again after). */
void json_doc_free(json_doc_t *d);

/* Parse one JSON value (surrounding whitespace allowed, nothing else).
 * Returns 0, or JSON_ESYNTAX / JSON_ETRUNC / JSON_EDEPTH (err_* fields say
 * where), JSON_ETOOLARGE (len > JSON_MAX_BYTES), JSON_ENOMEM, JSON_EINVAL. */
int json_parse(json_doc_t *d, const char *ptr, size_t len);

/* Member `key` of object node `obj` (the first if repeated), or NULL. */
const json_node_t *json_get(const json_doc_t *d, uint32_t obj, const char *key);
/* Follow a dotted path of member names from node `from` ("a.b.c"), or NULL. */
const json_node_t *json_path(const json_doc_t *d, uint32_t from, const char *path);
/* Index of a node pointer (for json_get on a nested node). */
static inline uint32_t json_index(const json_doc_t *d, const json_node_t *n)
{
    return (uint32_t)(n - d->nodes);
}
/* String value, or NULL if n is NULL or not a string. */
const char *json_str(const json_doc_t *d, const json_node_t *n);
/* Key of a member node, or NULL. */
const char *json_key(const json_doc_t *d, const json_node_t *n);
/* Number value: 0 and *out, or -1 if n is NULL or not a number. */
int json_num(const json_node_t *n, double *out);

#ifdef __cplusplus
}
#endif
#endif
