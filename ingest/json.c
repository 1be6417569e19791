/* json.c — strict JSON parser into a flat node array (see json.h).
 *
 * Recursive descent with an explicit depth cap. Every read checks the end
 * pointer first. Strings are unescaped (\uXXXX with surrogate pairs into
 * UTF-8; a lone surrogate is a syntax error) into d->strings, which is sized
 * once to len + node count so no pointer into it moves while parsing. */
#include "ingest/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *json_strerror(int err)
{
    switch (err) {
#define JSON_ERR_STR_(name, code, msg)                                                             \
    case code:                                                                                     \
        return msg;
        JSON_ERRNO_MAP(JSON_ERR_STR_)
#undef JSON_ERR_STR_
    }
    return "unknown error";
}

void json_doc_init(json_doc_t *d)
{
    memset(d, 0, sizeof *d);
}

void json_doc_free(json_doc_t *d)
{
    if (!d) return;
    free(d->nodes);
    free(d->strings);
    json_doc_init(d);
}

typedef struct {
    json_doc_t *d;
    const char *start, *p, *end;
    int err;
} jp_t;

static int jp_fail(jp_t *j, int err, const char *msg)
{
    if (!j->err) {
        j->err = err;
        j->d->err_msg = msg;
        j->d->err_off = (size_t)(j->p - j->start);
    }
    return -1;
}

static void ws(jp_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int node_new(jp_t *j, json_type_t t, uint32_t *idx)
{
    json_doc_t *d = j->d;
    if (d->n == d->cap) {
        if (d->cap >= UINT32_MAX / 2) return jp_fail(j, JSON_ETOOLARGE, "too many values");
        uint32_t nc = d->cap ? d->cap * 2 : 64;
        json_node_t *nn = realloc(d->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return jp_fail(j, JSON_ENOMEM, "out of memory");
        d->nodes = nn;
        d->cap = nc;
    }
    json_node_t *n = &d->nodes[d->n];
    memset(n, 0, sizeof *n);
    n->type = t;
    n->key = UINT32_MAX;
    *idx = d->n++;
    return 0;
}

/* Reserve room in the string buffer; the buffer is preallocated to the input
 * length plus one NUL per value, so this only fails on a bug. */
static char *str_room(jp_t *j, size_t n)
{
    json_doc_t *d = j->d;
    if (d->scap - d->slen < n + 1) {
        jp_fail(j, JSON_ENOMEM, "string buffer exhausted");
        return NULL;
    }
    return d->strings + d->slen;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at j->p (the opening quote). Stores it, NUL-terminated. */
static int parse_string(jp_t *j, uint32_t *off, uint32_t *len)
{
    j->p++; /* " */
    /* Escapes only shrink (\uXXXX -> at most 3 bytes; pairs 12 -> 4). */
    const char *q = j->p;
    while (q < j->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= j->end) {
        j->p = j->end;
        return jp_fail(j, JSON_ETRUNC, "end of input inside a string");
    }
    char *o0 = str_room(j, (size_t)(q - j->p));
    if (!o0) return -1;
    char *o = o0;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            *o = 0;
            *off = (uint32_t)j->d->slen;
            *len = (uint32_t)(o - o0);
            j->d->slen += (size_t)(o - o0) + 1;
            return 0;
        }
        if (c < 0x20) return jp_fail(j, JSON_ESYNTAX, "control character in string");
        if (c != '\\') {
            *o++ = (char)c;
            j->p++;
            continue;
        }
        if (j->end - j->p < 2) break;
        char e = j->p[1];
        j->p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *o++ = e;
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned cp;
            if (j->end - j->p < 4) {
                j->p = j->end;
                return jp_fail(j, JSON_ETRUNC, "end of input inside a \\u escape");
            }
            if (hex4(j->p, &cp)) return jp_fail(j, JSON_ESYNTAX, "invalid \\u escape");
            j->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                unsigned lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || hex4(j->p + 2, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return jp_fail(j, JSON_ESYNTAX, "unpaired UTF-16 surrogate");
                j->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return jp_fail(j, JSON_ESYNTAX, "unpaired UTF-16 surrogate");
            }
            o += utf8_put(o, cp);
            break;
        }
        default:
            j->p -= 1;
            return jp_fail(j, JSON_ESYNTAX, "invalid escape in string");
        }
    }
    j->p = j->end;
    return jp_fail(j, JSON_ETRUNC, "end of input inside a string");
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int parse_number(jp_t *j, uint32_t idx)
{
    const char *s = j->p, *p = j->p;
    int integral = 1;
    if (p < j->end && *p == '-') p++;
    if (p >= j->end) {
        j->p = p;
        return jp_fail(j, JSON_ETRUNC, "end of input inside a number");
    }
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        while (p < j->end && is_digit(*p))
            p++;
    } else {
        j->p = p;
        return jp_fail(j, JSON_ESYNTAX, "invalid number");
    }
    if (p < j->end && *p == '.') {
        integral = 0;
        p++;
        if (p >= j->end || !is_digit(*p)) {
            j->p = p;
            return jp_fail(j, p >= j->end ? JSON_ETRUNC : JSON_ESYNTAX, "digit expected after '.'");
        }
        while (p < j->end && is_digit(*p))
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) p++;
        if (p >= j->end || !is_digit(*p)) {
            j->p = p;
            return jp_fail(j, p >= j->end ? JSON_ETRUNC : JSON_ESYNTAX,
                           "digit expected in exponent");
        }
        while (p < j->end && is_digit(*p))
            p++;
    }
    size_t n = (size_t)(p - s);
    char *o = str_room(j, n);
    if (!o) return -1;
    memcpy(o, s, n);
    o[n] = 0;
    json_node_t *nd = &j->d->nodes[idx];
    nd->str = (uint32_t)j->d->slen;
    nd->len = (uint32_t)n;
    j->d->slen += n + 1;
    nd->num = strtod(o, NULL);
    if (integral) {
        errno = 0;
        long long v = strtoll(o, NULL, 10);
        if (!errno) {
            nd->is_int = 1;
            nd->i = v;
        }
    }
    j->p = p;
    return 0;
}

static int literal(jp_t *j, const char *word, json_type_t t, uint32_t idx)
{
    size_t n = strlen(word);
    size_t have = (size_t)(j->end - j->p);
    if (have < n) {
        if (!memcmp(j->p, word, have)) {
            j->p = j->end;
            return jp_fail(j, JSON_ETRUNC, "end of input inside a literal");
        }
        return jp_fail(j, JSON_ESYNTAX, "invalid literal");
    }
    if (memcmp(j->p, word, n)) return jp_fail(j, JSON_ESYNTAX, "value expected");
    j->p += n;
    j->d->nodes[idx].type = t;
    return 0;
}

static int parse_value(jp_t *j, int depth, uint32_t key, uint32_t keylen);

static int parse_container(jp_t *j, int depth, uint32_t idx, int obj)
{
    char close = obj ? '}' : ']';
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        ws(j);
        if (j->p >= j->end) return jp_fail(j, JSON_ETRUNC, "end of input inside a container");
        uint32_t koff = UINT32_MAX, klen = 0;
        if (obj) {
            if (*j->p != '"') return jp_fail(j, JSON_ESYNTAX, "member name (string) expected");
            if (parse_string(j, &koff, &klen)) return -1;
            ws(j);
            if (j->p >= j->end) return jp_fail(j, JSON_ETRUNC, "end of input: ':' expected");
            if (*j->p != ':') return jp_fail(j, JSON_ESYNTAX, "':' expected");
            j->p++;
        }
        if (parse_value(j, depth + 1, koff, klen)) return -1;
        j->d->nodes[idx].nkids++;
        ws(j);
        if (j->p >= j->end) return jp_fail(j, JSON_ETRUNC, "end of input inside a container");
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == close) {
            j->p++;
            return 0;
        }
        return jp_fail(j, JSON_ESYNTAX, obj ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int parse_value(jp_t *j, int depth, uint32_t key, uint32_t keylen)
{
    if (depth > JSON_MAX_DEPTH) return jp_fail(j, JSON_EDEPTH, "nested too deeply");
    ws(j);
    if (j->p >= j->end) return jp_fail(j, JSON_ETRUNC, "end of input: value expected");
    uint32_t idx;
    if (node_new(j, JSON_NULL, &idx)) return -1;
    j->d->nodes[idx].key = key;
    j->d->nodes[idx].keylen = keylen;
    int rc;
    switch (*j->p) {
    case '{':
        j->d->nodes[idx].type = JSON_OBJECT;
        rc = parse_container(j, depth, idx, 1);
        break;
    case '[':
        j->d->nodes[idx].type = JSON_ARRAY;
        rc = parse_container(j, depth, idx, 0);
        break;
    case '"': {
        uint32_t off, len;
        rc = parse_string(j, &off, &len);
        if (!rc) {
            j->d->nodes[idx].type = JSON_STRING;
            j->d->nodes[idx].str = off;
            j->d->nodes[idx].len = len;
        }
        break;
    }
    case 't':
        rc = literal(j, "true", JSON_TRUE, idx);
        break;
    case 'f':
        rc = literal(j, "false", JSON_FALSE, idx);
        break;
    case 'n':
        rc = literal(j, "null", JSON_NULL, idx);
        break;
    default:
        j->d->nodes[idx].type = JSON_NUMBER;
        rc = parse_number(j, idx);
        break;
    }
    if (rc) return -1;
    j->d->nodes[idx].next = j->d->n;
    return 0;
}

int json_parse(json_doc_t *d, const char *ptr, size_t len)
{
    if (!d || (!ptr && len)) return JSON_EINVAL;
    if (len > JSON_MAX_BYTES) return JSON_ETOOLARGE;
    d->n = 0;
    d->slen = 0;
    d->err_line = d->err_col = 0;
    d->err_off = 0;
    d->err_msg = NULL;
    /* Every value stores at most its own bytes plus a NUL, and a value takes
     * at least one input byte: len * 2 + 1 is always enough. */
    size_t need = len * 2 + 1;
    if (d->scap < need) {
        char *ns = realloc(d->strings, need);
        if (!ns) return JSON_ENOMEM;
        d->strings = ns;
        d->scap = need;
    }
    jp_t j = {d, ptr ? ptr : "", ptr ? ptr : "", (ptr ? ptr : "") + len, 0};
    if (!parse_value(&j, 0, UINT32_MAX, 0)) {
        ws(&j);
        if (j.p != j.end) jp_fail(&j, JSON_ESYNTAX, "trailing characters after the value");
    }
    if (j.err) {
        uint32_t line = 1, col = 1;
        for (size_t i = 0; i < d->err_off && i < len; i++) {
            if (ptr[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        d->err_line = line;
        d->err_col = col;
        d->n = 0;
        return j.err;
    }
    return 0;
}

const json_node_t *json_get(const json_doc_t *d, uint32_t obj, const char *key)
{
    if (!d || obj >= d->n || d->nodes[obj].type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    uint32_t end = d->nodes[obj].next;
    for (uint32_t k = obj + 1; k < end; k = d->nodes[k].next) {
        const json_node_t *n = &d->nodes[k];
        if (n->keylen == kl && !memcmp(d->strings + n->key, key, kl)) return n;
    }
    return NULL;
}

const json_node_t *json_path(const json_doc_t *d, uint32_t from, const char *path)
{
    char part[128];
    const json_node_t *n = d && from < d->n ? &d->nodes[from] : NULL;
    while (n && *path) {
        const char *dot = strchr(path, '.');
        size_t l = dot ? (size_t)(dot - path) : strlen(path);
        if (l >= sizeof part) return NULL;
        memcpy(part, path, l);
        part[l] = 0;
        n = json_get(d, json_index(d, n), part);
        path += l + (dot ? 1 : 0);
    }
    return n;
}

const char *json_str(const json_doc_t *d, const json_node_t *n)
{
    if (!n || n->type != JSON_STRING) return NULL;
    return d->strings + n->str;
}

const char *json_key(const json_doc_t *d, const json_node_t *n)
{
    if (!n || n->key == UINT32_MAX) return NULL;
    return d->strings + n->key;
}

int json_num(const json_node_t *n, double *out)
{
    if (!n || n->type != JSON_NUMBER) return -1;
    *out = n->num;
    return 0;
}
