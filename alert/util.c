/* util.c — errors, durations, label pairs, JSON and YAML helpers of alert/. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "alert/alert_int.h"

const char *alert_strerror(int err)
{
    switch (err) {
#define ALERT_ERR_STR_(name, code, msg)                                                            \
    case code:                                                                                     \
        return msg;
        ALERT_ERRNO_MAP(ALERT_ERR_STR_)
#undef ALERT_ERR_STR_
    }
    return "unknown error";
}

/* ---- durations ------------------------------------------------------------ */

int alert_duration_parse(const char *s, int64_t *ms)
{
    if (!s || !*s) return -1;
    if (!strcmp(s, "0")) {
        *ms = 0;
        return 0;
    }
    static const struct {
        const char *u;
        int64_t ms;
    } units[] = {{"y", 365LL * 86400000},
                 {"w", 7LL * 86400000},
                 {"d", 86400000},
                 {"h", 3600000},
                 {"m", 60000},
                 {"s", 1000},
                 {"ms", 1}};
    int64_t total = 0;
    int last = -1;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p)) return -1;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v > INT64_MAX / 10) return -1;
            v = v * 10 + (*p++ - '0');
        }
        int k = -1;
        /* "ms" before "m": longest match. */
        if (p[0] == 'm' && p[1] == 's')
            k = 6;
        else
            for (int i = 0; i < 6; i++)
                if (*p == units[i].u[0]) k = i;
        if (k < 0 || k <= last) return -1;
        p += strlen(units[k].u);
        last = k;
        if (v > INT64_MAX / units[k].ms || total > INT64_MAX - v * units[k].ms) return -1;
        total += v * units[k].ms;
    }
    *ms = total;
    return 0;
}

void alert_duration_format(int64_t ms, char *buf, size_t n)
{
    if (ms <= 0) {
        snprintf(buf, n, "0s");
        return;
    }
    static const struct {
        const char *u;
        int64_t ms;
    } units[] = {{"y", 365LL * 86400000},
                 {"w", 7LL * 86400000},
                 {"d", 86400000},
                 {"h", 3600000},
                 {"m", 60000},
                 {"s", 1000},
                 {"ms", 1}};
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < 7 && ms; i++) {
        int64_t q = ms / units[i].ms;
        if (!q) continue;
        ms -= q * units[i].ms;
        int w = snprintf(buf + o, o < n ? n - o : 0, "%lld%s", (long long)q, units[i].u);
        if (w > 0) o += (size_t)w;
    }
}

/* ---- strings and label pairs ---------------------------------------------- */

char *alert_strdup(const char *s)
{
    return s ? alert_strndup(s, strlen(s)) : NULL;
}

char *alert_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void alert_kv_free(alert_kv_t *kv, size_t n)
{
    if (!kv) return;
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

int alert_kv_copy(const alert_kv_t *src, size_t n, alert_kv_t **out)
{
    *out = NULL;
    if (!n) return 0;
    alert_kv_t *kv = calloc(n, sizeof *kv);
    if (!kv) return -1;
    for (size_t i = 0; i < n; i++) {
        kv[i].name = alert_strdup(src[i].name);
        kv[i].value = alert_strdup(src[i].value);
        if (!kv[i].name || !kv[i].value) {
            alert_kv_free(kv, n);
            return -1;
        }
    }
    *out = kv;
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const alert_kv_t *)a)->name, ((const alert_kv_t *)b)->name);
}

void alert_kv_sort(alert_kv_t *kv, size_t n)
{
    if (n > 1) qsort(kv, n, sizeof *kv, kv_cmp);
}

int alert_kv_set(alert_kv_t **kv, size_t *n, const char *name, const char *value)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*kv)[i].name, name)) {
            char *v = alert_strdup(value);
            if (!v) return -1;
            free((*kv)[i].value);
            (*kv)[i].value = v;
            return 0;
        }
    alert_kv_t *g = realloc(*kv, (*n + 1) * sizeof **kv);
    if (!g) return -1;
    *kv = g;
    g[*n].name = alert_strdup(name);
    g[*n].value = alert_strdup(value);
    if (!g[*n].name || !g[*n].value) {
        free(g[*n].name);
        free(g[*n].value);
        return -1;
    }
    (*n)++;
    return 0;
}

const char *alert_kv_get(const alert_kv_t *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(kv[i].name, name)) return kv[i].value;
    return NULL;
}

uint64_t alert_kv_hash(const alert_kv_t *kv, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over name\xff value\xff ... */
    for (size_t i = 0; i < n; i++) {
        for (const char *p = kv[i].name; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
        for (const char *p = kv[i].value; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ 0xfe) * 1099511628211ull;
    }
    return h;
}

int alert_label_name_valid(const char *s)
{
    if (!s || !*s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

int alert_metric_name_valid(const char *s)
{
    if (!s || !*s || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':')) return 0;
    return 1;
}

/* ---- JSON and text -------------------------------------------------------- */

int alert_json_strn(tbuf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (tbuf_reserve(b, len + 2) || tbuf_put(b, "\"", 1)) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6];
        size_t k;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            k = 2;
        } else if (c == '\n') {
            memcpy(e, "\\n", 2);
            k = 2;
        } else if (c == '\t') {
            memcpy(e, "\\t", 2);
            k = 2;
        } else if (c == '\r') {
            memcpy(e, "\\r", 2);
            k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            k = 6;
        } else {
            e[0] = (char)c;
            k = 1;
        }
        if (tbuf_put(b, e, k)) return -1;
    }
    return tbuf_put(b, "\"", 1);
}

int alert_json_str(tbuf_t *b, const char *s)
{
    return alert_json_strn(b, s ? s : "", s ? strlen(s) : 0);
}

int alert_printf(tbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof tmp) return tbuf_put(b, tmp, (size_t)n);
    if (tbuf_reserve(b, (size_t)n + 1)) return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void alert_time_rfc3339(int64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)s * 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void alert_format_float(double v, char *buf, size_t n)
{
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        snprintf(buf, n, signbit(v) ? "-0" : "0");
        return;
    }
    char e[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = d.ddde[+-]XX: decide the notation from the exponent. */
    char *ep = strchr(e, 'e');
    int exp10 = atoi(ep + 1);
    if (exp10 < -4 || exp10 >= 21) {
        /* Go: mantissa without trailing zeros, exponent at least 2 digits. */
        *ep = 0;
        snprintf(buf, n, "%se%c%02d", e, exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return;
    }
    int decimals = prec - 1 - exp10;
    if (decimals < 0) decimals = 0;
    snprintf(buf, n, "%.*f", decimals, v);
}

int alert_url_escape(tbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            if (tbuf_put(b, s, 1)) return -1;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (tbuf_put(b, e, 3)) return -1;
        }
    }
    return 0;
}

/* ---- YAML ----------------------------------------------------------------- */

int alert_yaml_load(alert_yaml_t *y, const char *text, size_t len, char *err, size_t errlen)
{
    memset(y, 0, sizeof *y);
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        snprintf(err, errlen, "1:1: out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &y->doc)) {
        snprintf(err, errlen, "%zu:%zu: %s%s%s", p.problem_mark.line + 1, p.problem_mark.column + 1,
                 p.problem ? p.problem : "YAML syntax error", p.context ? " " : "",
                 p.context ? p.context : "");
        yaml_parser_delete(&p);
        return -1;
    }
    yaml_parser_delete(&p);
    y->loaded = 1;
    return 0;
}

void alert_yaml_free(alert_yaml_t *y)
{
    if (y && y->loaded) yaml_document_delete(&y->doc);
    if (y) y->loaded = 0;
}

yaml_node_t *alert_yaml_root(alert_yaml_t *y)
{
    return y->loaded ? yaml_document_get_root_node(&y->doc) : NULL;
}

yaml_node_t *alert_yaml_node(alert_yaml_t *y, int idx)
{
    return yaml_document_get_node(&y->doc, idx);
}

const char *alert_yaml_str(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int alert_yaml_is_null(const yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE) return 0;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

int alert_yaml_bool(const yaml_node_t *n, int *out)
{
    const char *s = alert_yaml_str(n);
    if (!s) return -1;
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
        *out = 0;
        return 0;
    }
    return -1;
}

int alert_yaml_double(const yaml_node_t *n, double *out)
{
    const char *s = alert_yaml_str(n);
    if (!s || !*s) return -1;
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || *e || !isfinite(v)) return -1;
    *out = v;
    return 0;
}
