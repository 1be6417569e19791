/*
 * promql_util.c — arenas, interned label sets, number/time formatting and
 * parsing for the PromQL engine and the HTTP API.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/promql_int.h"

/* ---- errors ------------------------------------------------------------ */

const char *promql_strerror(int err)
{
    switch (err) {
#define PQ_ERR_STR_(name, code, msg) \
    case code:                       \
        return msg;
        PQ_ERRNO_MAP(PQ_ERR_STR_)
#undef PQ_ERR_STR_
    }
    return "unknown error";
}

const char *promql_type_name(pq_type_t t)
{
    switch (t) {
    case PQ_T_SCALAR: return "scalar";
    case PQ_T_VECTOR: return "vector";
    case PQ_T_MATRIX: return "matrix";
    case PQ_T_STRING: return "string";
    default: return "none";
    }
}

/* ---- arena ------------------------------------------------------------- */

void *pq_arena_alloc(pq_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    pq_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = c ? c->cap * 2 : 4096;
        if (cap > (size_t)1 << 24) cap = (size_t)1 << 24;
        if (cap < n) cap = n;
        pq_chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        a->head = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

char *pq_arena_strndup(pq_arena_t *a, const char *s, size_t n)
{
    char *p = pq_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void pq_arena_free(pq_arena_t *a)
{
    pq_chunk_t *c = a->head;
    while (c) {
        pq_chunk_t *nx = c->next;
        free(c);
        c = nx;
    }
    a->head = NULL;
    a->total = 0;
}

pq_arena_mark_t pq_arena_mark(const pq_arena_t *a)
{
    pq_arena_mark_t m = {a->head, a->head ? a->head->used : 0};
    return m;
}

void pq_arena_reset(pq_arena_t *a, pq_arena_mark_t m)
{
    while (a->head && a->head != m.head) {
        pq_chunk_t *nx = a->head->next;
        free(a->head);
        a->head = nx;
    }
    if (a->head) a->head->used = m.used;
}

/* ---- labels ------------------------------------------------------------ */

uint64_t pq_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t labels_hash(const pq_label_t *l, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = pq_hash_bytes(h, l[i].name, strlen(l[i].name) + 1);
        h = pq_hash_bytes(h, l[i].value, strlen(l[i].value) + 1);
    }
    return h ^ (h >> 29);
}

static int labels_eq(const pq_labels_t *a, const pq_label_t *l, size_t n)
{
    if (a->n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(a->l[i].name, l[i].name) || strcmp(a->l[i].value, l[i].value)) return 0;
    return 1;
}

static int intern_grow(pq_intern_t *in)
{
    size_t nc = in->cap ? in->cap * 2 : 256;
    const pq_labels_t **ns = calloc(nc, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < in->cap; i++) {
        const pq_labels_t *x = in->slots[i];
        if (!x) continue;
        size_t j = x->hash & (nc - 1);
        while (ns[j]) j = (j + 1) & (nc - 1);
        ns[j] = x;
    }
    free(in->slots);
    in->slots = ns;
    in->cap = nc;
    return 0;
}

const pq_labels_t *pq_intern(pq_intern_t *in, const pq_label_t *l, size_t n, int copy)
{
    if ((in->n + 1) * 2 > in->cap && intern_grow(in)) return NULL;
    uint64_t h = labels_hash(l, n);
    size_t j = h & (in->cap - 1);
    while (in->slots[j]) {
        if (in->slots[j]->hash == h && labels_eq(in->slots[j], l, n)) return in->slots[j];
        j = (j + 1) & (in->cap - 1);
    }
    pq_labels_t *x = pq_arena_alloc(in->arena, sizeof *x + n * sizeof(pq_label_t));
    if (!x) return NULL;
    x->n = (uint32_t)n;
    x->hash = h;
    x->noname = NULL;
    for (size_t i = 0; i < n; i++) {
        if (copy) {
            x->l[i].name = pq_arena_strndup(in->arena, l[i].name, strlen(l[i].name));
            x->l[i].value = pq_arena_strndup(in->arena, l[i].value, strlen(l[i].value));
            if (!x->l[i].name || !x->l[i].value) return NULL;
        } else {
            x->l[i] = l[i];
        }
    }
    in->slots[j] = x;
    in->n++;
    return x;
}

void pq_intern_free(pq_intern_t *in)
{
    free(in->slots);
    in->slots = NULL;
    in->cap = in->n = 0;
}

const char *pq_labels_get(const pq_labels_t *ls, const char *name)
{
    for (uint32_t i = 0; i < ls->n; i++)
        if (!strcmp(ls->l[i].name, name)) return ls->l[i].value;
    return NULL;
}

int pq_labels_cmp(const pq_labels_t *a, const pq_labels_t *b)
{
    uint32_t n = a->n < b->n ? a->n : b->n;
    for (uint32_t i = 0; i < n; i++) {
        int c = strcmp(a->l[i].name, b->l[i].name);
        if (c) return c;
        c = strcmp(a->l[i].value, b->l[i].value);
        if (c) return c;
    }
    return (a->n > b->n) - (a->n < b->n);
}

/* ---- float formatting ---------------------------------------------------- */

static size_t fmt_u64(char *o, uint64_t u)
{
    char t[24];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (size_t i = 0; i < n; i++) o[i] = t[n - 1 - i];
    o[n] = 0;
    return n;
}

size_t pq_fmt_float(char *buf, double v)
{
    if (isnan(v)) {
        memcpy(buf, "NaN", 4);
        return 3;
    }
    if (isinf(v)) {
        memcpy(buf, v > 0 ? "+Inf" : "-Inf", 5);
        return 4;
    }
    char *o = buf;
    if (v == 0) {
        if (signbit(v)) *o++ = '-';
        *o++ = '0';
        *o = 0;
        return (size_t)(o - buf);
    }
    if (v < 0) {
        *o++ = '-';
        v = -v;
    }
    if (v < 9007199254740992.0 && v == floor(v)) /* integers: exact, the common case */
        return (size_t)(o - buf) + fmt_u64(o, (uint64_t)v);
    char d[32];
    int e;
    int nd = pq_shortest_digits(v, d, &e);
    if (e <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -e; i++) *o++ = '0';
        memcpy(o, d, (size_t)nd);
        o += nd;
    } else if (e >= nd) {
        memcpy(o, d, (size_t)nd);
        o += nd;
        for (int i = nd; i < e; i++) *o++ = '0';
    } else {
        memcpy(o, d, (size_t)e);
        o += e;
        *o++ = '.';
        memcpy(o, d + e, (size_t)(nd - e));
        o += nd - e;
    }
    *o = 0;
    return (size_t)(o - buf);
}

size_t pq_fmt_time(char *buf, int64_t t)
{
    char *o = buf;
    uint64_t u;
    if (t < 0) {
        *o++ = '-';
        u = (uint64_t)0 - (uint64_t)t;
    } else {
        u = (uint64_t)t;
    }
    o += fmt_u64(o, u / 1000);
    unsigned f = (unsigned)(u % 1000);
    if (f) {
        *o++ = '.';
        *o++ = (char)('0' + f / 100);
        *o++ = (char)('0' + f / 10 % 10);
        *o++ = (char)('0' + f % 10);
        *o = 0;
    }
    return (size_t)(o - buf);
}

/* ---- time and duration parsing ------------------------------------------ */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int parse_rfc3339(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, se, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n < 19)
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return -1;
    const char *p = s + n;
    int64_t ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3) ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (!digits) return -1;
        for (; digits < 3; digits++) ms *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || strlen(p) < 6) return -1;
        off = (oh * 60 + om) * 60;
        if (*p == '-') off = -off;
        p += 6;
    } else {
        return -1;
    }
    if (*p) return -1;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - off;
    *out = secs * 1000 + ms;
    return 0;
}

int pq_parse_time(const char *s, int64_t *out_ms)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double f = strtod(s, &end);
    if (end != s && *end == 0 && errno == 0) {
        if (!isfinite(f) || f > 9.2e15 || f < -9.2e15) {
            /* Prometheus maps the extremes to min/max time */
            if (isinf(f) || f > 0) {
                *out_ms = f > 0 ? INT64_MAX / 2 : INT64_MIN / 2;
                if (isnan(f)) return -1;
                return 0;
            }
            *out_ms = INT64_MIN / 2;
            return 0;
        }
        *out_ms = (int64_t)llround(f * 1000.0);
        return 0;
    }
    return parse_rfc3339(s, out_ms);
}

size_t pq_parse_duration(const char *p, const char *end, int64_t *out_ms)
{
    static const struct {
        const char *u;
        int64_t ms;
    } units[] = {{"y", 365LL * 86400000}, {"w", 7LL * 86400000}, {"d", 86400000},
                 {"h", 3600000},         {"m", 60000},           {"s", 1000},
                 {"ms", 1}};
    const char *s = p;
    int64_t total = 0;
    int last = -1, any = 0;
    while (p < end && isdigit((unsigned char)*p)) {
        int64_t n = 0;
        while (p < end && isdigit((unsigned char)*p)) {
            if (n > INT64_MAX / 10 - 10) return 0;
            n = n * 10 + (*p++ - '0');
        }
        int u = -1;
        if (p + 1 < end && p[0] == 'm' && p[1] == 's') {
            u = 6;
        } else if (p < end) {
            for (int i = 0; i < 6; i++)
                if (*p == units[i].u[0]) u = i;
        }
        if (u < 0 || u <= last) return 0;
        p += strlen(units[u].u);
        if (n > INT64_MAX / units[u].ms || total > INT64_MAX - n * units[u].ms) return 0;
        total += n * units[u].ms;
        last = u;
        any = 1;
    }
    if (!any) return 0;
    if (p < end && (isalnum((unsigned char)*p) || *p == '_')) return 0;
    *out_ms = total;
    return (size_t)(p - s);
}

int pq_parse_duration_param(const char *s, int64_t *out_ms)
{
    if (!s || !*s) return -1;
    char *end;
    double f = strtod(s, &end);
    if (end != s && *end == 0) {
        if (!isfinite(f) || f > 9.2e15 || f < -9.2e15) return -1;
        *out_ms = (int64_t)llround(f * 1000.0);
        return 0;
    }
    size_t n = strlen(s);
    if (pq_parse_duration(s, s + n, out_ms) != n) return -1;
    return 0;
}

int tbuf_puts(tbuf_t *b, const char *s)
{
    return tbuf_put(b, s, strlen(s));
}

int tbuf_json_str(tbuf_t *b, const char *s)
{
    if (tbuf_reserve(b, strlen(s) + 2)) return -1;
    b->p[b->len++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        const char *e = NULL;
        switch (*p) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                e = esc;
            }
        }
        if (e) {
            if (tbuf_puts(b, e)) return -1;
        } else {
            if (tbuf_put(b, p, 1)) return -1;
        }
    }
    return tbuf_put(b, "\"", 1);
}
