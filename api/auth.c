/* auth.c — bearer and basic credentials per role (see auth.h). */
#include "api/auth.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_MAX_FILE (1u << 20)
#define AUTH_MAX_CRED 1024

typedef enum { SCHEME_BEARER = 0, SCHEME_BASIC = 1 } scheme_t;

typedef struct {
    unsigned roles;  /* granted */
    unsigned listed; /* named on the line */
    scheme_t scheme;
    char *cred; /* token, or "user:password" */
    size_t len;
} cred_t;

struct api_auth {
    cred_t *v;
    size_t n;
};

static void errf(char *err, size_t cap, unsigned line, const char *why)
{
    if (err && cap) snprintf(err, cap, "line %u: %s", line, why);
}

void api_auth_destroy(api_auth_t *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        /* Credentials do not outlive the server in memory. */
        volatile char *p = a->v[i].cred;
        for (size_t k = 0; k < a->v[i].len; k++)
            p[k] = 0;
        free(a->v[i].cred);
    }
    free(a->v);
    free(a);
}

/* Next whitespace-separated field of [*p, end); NULL when none. */
static const char *next_field(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s >= end) {
        *p = s;
        return NULL;
    }
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t')
        e++;
    *len = (size_t)(e - s);
    *p = e;
    return s;
}

static int field_is(const char *f, size_t len, const char *word)
{
    return strlen(word) == len && !memcmp(f, word, len);
}

int api_auth_parse(const char *text, size_t len, api_auth_t **out, char *err, size_t errcap)
{
    if (!out || (!text && len)) return -1;
    *out = NULL;
    api_auth_t *a = calloc(1, sizeof *a);
    if (!a) return -2;
    size_t cap = 0;
    const char *p = text, *end = text + len;
    unsigned lineno = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && le[-1] == '\r') le--;
        const char *q = p;
        p = nl ? nl + 1 : end;
        size_t l1, l2, l3, l4;
        const char *f1 = next_field(&q, le, &l1);
        if (!f1 || f1[0] == '#') continue;
        const char *f2 = next_field(&q, le, &l2);
        const char *f3 = f2 ? next_field(&q, le, &l3) : NULL;
        const char *f4 = f3 ? next_field(&q, le, &l4) : NULL;
        if (!f3 || (f4 && f4[0] != '#')) {
            errf(err, errcap, lineno, "expected: <read|write|admin> <bearer|basic> <credential>");
            goto bad;
        }
        unsigned roles;
        if (field_is(f1, l1, "read"))
            roles = API_ROLE_READ;
        else if (field_is(f1, l1, "write"))
            roles = API_ROLE_WRITE;
        else if (field_is(f1, l1, "admin"))
            roles = API_ROLE_READ | API_ROLE_WRITE | API_ROLE_ADMIN;
        else {
            errf(err, errcap, lineno, "unknown role (expected read, write or admin)");
            goto bad;
        }
        scheme_t sch;
        if (field_is(f2, l2, "bearer"))
            sch = SCHEME_BEARER;
        else if (field_is(f2, l2, "basic"))
            sch = SCHEME_BASIC;
        else {
            errf(err, errcap, lineno, "unknown scheme (expected bearer or basic)");
            goto bad;
        }
        if (l3 > AUTH_MAX_CRED) {
            errf(err, errcap, lineno, "credential longer than 1024 bytes");
            goto bad;
        }
        if (sch == SCHEME_BASIC && (!memchr(f3, ':', l3) || f3[0] == ':')) {
            errf(err, errcap, lineno, "basic credential must be user:password");
            goto bad;
        }
        for (size_t i = 0; i < l3; i++)
            if ((unsigned char)f3[i] < 0x21 || (unsigned char)f3[i] == 0x7f) {
                errf(err, errcap, lineno, "control character in credential");
                goto bad;
            }
        if (a->n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            cred_t *nv = realloc(a->v, nc * sizeof *nv);
            if (!nv) goto oom;
            a->v = nv;
            cap = nc;
        }
        char *c = malloc(l3 + 1);
        if (!c) goto oom;
        memcpy(c, f3, l3);
        c[l3] = 0;
        a->v[a->n++] = (cred_t){roles, roles & API_ROLE_ADMIN ? API_ROLE_ADMIN : roles, sch, c, l3};
    }
    *out = a;
    return 0;
bad:
    api_auth_destroy(a);
    return -1;
oom:
    api_auth_destroy(a);
    return -2;
}

int api_auth_load(const char *path, api_auth_t **out, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errcap) snprintf(err, errcap, "cannot open %s", path);
        return -3;
    }
    char *buf = malloc(AUTH_MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return -2;
    }
    size_t n = fread(buf, 1, AUTH_MAX_FILE + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > AUTH_MAX_FILE) {
        free(buf);
        if (err && errcap)
            snprintf(err, errcap, "%s: %s", path, rerr ? "read error" : "larger than 1 MiB");
        return -3;
    }
    int rc = api_auth_parse(buf, n, out, err, errcap);
    volatile char *vb = buf;
    for (size_t i = 0; i < n; i++)
        vb[i] = 0;
    free(buf);
    return rc;
}

size_t api_auth_count(const api_auth_t *a)
{
    return a ? a->n : 0;
}

unsigned api_auth_roles_configured(const api_auth_t *a)
{
    unsigned r = 0;
    for (size_t i = 0; a && i < a->n; i++)
        r |= a->v[i].listed;
    return r;
}

/* Equality of two byte strings in time that depends only on their lengths,
 * not on where they differ. */
static int ct_equal(const uint8_t *x, size_t xl, const uint8_t *y, size_t yl)
{
    size_t n = xl > yl ? xl : yl;
    unsigned d = xl != yl;
    for (size_t i = 0; i < n; i++) {
        uint8_t a = i < xl ? x[i] : 0, b = i < yl ? y[i] : 0;
        d |= (unsigned)(a ^ b);
    }
    return d == 0;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with optional padding. Returns decoded length or -1. */
static long b64_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

static int scheme_prefix(const char *h, size_t len, const char *word, size_t *skip)
{
    size_t wl = strlen(word);
    if (len <= wl || strncasecmp(h, word, wl) != 0 || (h[wl] != ' ' && h[wl] != '\t')) return 0;
    size_t i = wl;
    while (i < len && (h[i] == ' ' || h[i] == '\t'))
        i++;
    *skip = i;
    return 1;
}

unsigned api_auth_check(const api_auth_t *a, const char *h, size_t len)
{
    if (!a || !h || !len) return 0;
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    size_t skip;
    scheme_t sch;
    uint8_t dec[AUTH_MAX_CRED + 4];
    const uint8_t *cred;
    size_t clen;
    if (scheme_prefix(h, len, "Bearer", &skip)) {
        sch = SCHEME_BEARER;
        cred = (const uint8_t *)h + skip;
        clen = len - skip;
    } else if (scheme_prefix(h, len, "Basic", &skip)) {
        sch = SCHEME_BASIC;
        long n = b64_decode(h + skip, len - skip, dec, sizeof dec);
        if (n < 0) return 0;
        cred = dec;
        clen = (size_t)n;
    } else {
        return 0;
    }
    if (clen == 0 || clen > AUTH_MAX_CRED) return 0;
    unsigned roles = 0;
    for (size_t i = 0; i < a->n; i++) {
        /* Compare against every entry (no early exit). */
        int eq = ct_equal(cred, clen, (const uint8_t *)a->v[i].cred, a->v[i].len);
        unsigned mask = (unsigned)-(eq & (a->v[i].scheme == sch));
        roles |= a->v[i].roles & mask;
    }
    return roles;
}
