/* template.c — the subset of Go's text/template that Prometheus alert
 * annotations use (docs/alerting.md, "Templates").
 *
 *   {{ $labels.instance }}  {{ $value }}  {{ $externalLabels.x }}
 *   {{ .Labels.x }} {{ .Value }} {{ $labels }}
 *   {{ humanize $value }}  {{ $value | humanizePercentage }}
 *   {{ printf "%.2f" $value }}  {{ index $labels "device" }}
 *   {{- trim -}}  {{/ * comment * /}}
 *
 * An action is a pipeline of commands separated by '|'; each command is an
 * operand or a function followed by operands; the previous command's result
 * is passed as the last argument of the next. Control structures (if,
 * range, with, define) and parentheses are outside the subset and refused
 * with a message, so `augur check rules` reports them. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert/alert_int.h"

typedef enum { V_STR, V_NUM, V_MAP } vtype_t;

typedef struct {
    vtype_t t;
    double d;
    tbuf_t s;
} val_t;

typedef struct {
    const char *p, *end; /* action text */
    const char *base;    /* template start, for columns */
    const alert_tmpl_data_t *d;
    char *err;
    size_t errlen;
} tctx_t;

/* fmt holds at most one %s (for arg). */
static int terr(tctx_t *c, const char *at, const char *fmt, const char *arg)
{
    char m[256];
    const char *pct = strstr(fmt, "%s");
    if (pct)
        snprintf(m, sizeof m, "%.*s%s%s", (int)(pct - fmt), fmt, arg ? arg : "", pct + 2);
    else
        snprintf(m, sizeof m, "%s", fmt);
    /* "col N: " then the message, cut to the caller's buffer */
    int n = snprintf(c->err, c->errlen, "col %d: ", (int)(at - c->base) + 1);
    if (n >= 0 && (size_t)n < c->errlen) {
        size_t k = strnlen(m, c->errlen - (size_t)n - 1);
        memcpy(c->err + n, m, k);
        c->err[(size_t)n + k] = 0;
    }
    return ALERT_EINVAL;
}

static void val_free(val_t *v)
{
    tbuf_free(&v->s);
    memset(v, 0, sizeof *v);
}

static int val_str(val_t *v, const char *s, size_t n)
{
    v->t = V_STR;
    v->s.len = 0;
    return tbuf_put(&v->s, s, n) ? ALERT_ENOMEM : 0;
}

static int val_print(const val_t *v, const alert_tmpl_data_t *d, tbuf_t *out)
{
    char b[64];
    switch (v->t) {
    case V_NUM:
        alert_format_float(v->d, b, sizeof b);
        return tbuf_put(out, b, strlen(b)) ? ALERT_ENOMEM : 0;
    case V_STR:
        return tbuf_put(out, v->s.p, v->s.len) ? ALERT_ENOMEM : 0;
    case V_MAP: {
        /* Go prints a map as map[k:v k:v] (keys sorted; labels are). */
        if (tbuf_put(out, "map[", 4)) return ALERT_ENOMEM;
        const alert_kv_t *kv = v->d == 0 ? (d ? d->labels : NULL) : (d ? d->ext : NULL);
        size_t n = v->d == 0 ? (d ? d->nlabels : 0) : (d ? d->next : 0);
        for (size_t i = 0; i < n; i++)
            if ((i && tbuf_put(out, " ", 1)) || alert_printf(out, "%s:%s", kv[i].name, kv[i].value))
                return ALERT_ENOMEM;
        return tbuf_put(out, "]", 1) ? ALERT_ENOMEM : 0;
    }
    }
    return 0;
}

/* Number of a value (strings are parsed, as Prometheus' humanize does). */
static int val_num(tctx_t *c, const char *at, const val_t *v, double *out)
{
    if (v->t == V_NUM) {
        *out = v->d;
        return 0;
    }
    if (v->t == V_STR) {
        if (!c->d) { /* syntax check only */
            *out = 0;
            return 0;
        }
        char tmp[128];
        size_t n = v->s.len < sizeof tmp - 1 ? v->s.len : sizeof tmp - 1;
        memcpy(tmp, v->s.p, n);
        tmp[n] = 0;
        char *e;
        double x = strtod(tmp, &e);
        if (e != tmp && !*e) {
            *out = x;
            return 0;
        }
        return terr(c, at, "cannot convert \"%s\" to a number", tmp);
    }
    return terr(c, at, "a label map is not a number", NULL);
}

static void skip_ws(tctx_t *c)
{
    while (c->p < c->end && isspace((unsigned char)*c->p))
        c->p++;
}

static const char *lookup(const alert_kv_t *kv, size_t n, const char *name, size_t nl)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(kv[i].name) == nl && !memcmp(kv[i].name, name, nl)) return kv[i].value;
    return NULL;
}

/* An operand: variable, field, string, number. 1 = parsed, 0 = not an
 * operand here, < 0 error. */
static int operand(tctx_t *c, val_t *v)
{
    const char *s = c->p;
    if (s >= c->end) return 0;
    if (*s == '"' || *s == '`') {
        char q = *s++;
        v->t = V_STR;
        v->s.len = 0;
        while (s < c->end && *s != q) {
            char ch = *s;
            if (q == '"' && ch == '\\' && s + 1 < c->end) {
                s++;
                ch = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
            }
            if (tbuf_put(&v->s, &ch, 1)) return ALERT_ENOMEM;
            s++;
        }
        if (s >= c->end) return terr(c, c->p, "unterminated string", NULL);
        c->p = s + 1;
        return 1;
    }
    if (isdigit((unsigned char)*s) ||
        ((*s == '-' || *s == '+' || *s == '.') && s + 1 < c->end && isdigit((unsigned char)s[1]))) {
        char tmp[64];
        size_t n = 0;
        while (s + n < c->end && n < sizeof tmp - 1 &&
               (isalnum((unsigned char)s[n]) || s[n] == '.' || s[n] == '-' || s[n] == '+'))
            n++;
        memcpy(tmp, s, n);
        tmp[n] = 0;
        char *e;
        v->t = V_NUM;
        v->d = strtod(tmp, &e);
        if (*e) return terr(c, s, "bad number %s", tmp);
        c->p = s + n;
        return 1;
    }
    if (*s != '$' && *s != '.') return 0;
    /* $name.field or .Field.sub */
    const char *e = s + 1;
    while (e < c->end && (isalnum((unsigned char)*e) || *e == '_' || *e == '.'))
        e++;
    size_t n = (size_t)(e - s);
    char path[256];
    if (n >= sizeof path) return terr(c, s, "name too long", NULL);
    memcpy(path, s, n);
    path[n] = 0;
    c->p = e;
    const char *field = NULL;
    int which = -1; /* 0 labels, 1 value, 2 external labels */
    static const struct {
        const char *pfx;
        int which;
    } vars[] = {{"$labels", 0}, {".Labels", 0},         {"$value", 1},
                {".Value", 1},  {"$externalLabels", 2}, {".ExternalLabels", 2}};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        size_t pl = strlen(vars[i].pfx);
        if (!strncmp(path, vars[i].pfx, pl) && (path[pl] == 0 || path[pl] == '.')) {
            which = vars[i].which;
            field = path[pl] == '.' ? path + pl + 1 : NULL;
        }
    }
    if (which < 0)
        return terr(c, s,
                    "unknown variable or field %s (the subset knows $labels, "
                    "$value, $externalLabels, .Labels, .Value)",
                    path);
    if (which == 1) {
        if (field) return terr(c, s, "$value has no fields", NULL);
        v->t = V_NUM;
        v->d = c->d ? c->d->value : 0;
        return 1;
    }
    if (!field) {
        v->t = V_MAP;
        v->d = which == 0 ? 0 : 1;
        return 1;
    }
    if (!*field || strchr(field, '.')) return terr(c, s, "bad field in %s", path);
    const char *val = NULL;
    if (c->d)
        val = which == 0 ? lookup(c->d->labels, c->d->nlabels, field, strlen(field))
                         : lookup(c->d->ext, c->d->next, field, strlen(field));
    /* A missing label is "<no value>" in Go; Prometheus' alert templates
     * show it as the empty string with missingkey=zero semantics. */
    return val_str(v, val ? val : "", val ? strlen(val) : 0) ? ALERT_ENOMEM : 1;
}

static void humanize(double v, int base1024, tbuf_t *o)
{
    char b[64];
    if (v == 0 || isnan(v) || isinf(v)) {
        snprintf(b, sizeof b, "%.4g", v);
    } else if (base1024) {
        static const char *pfx[] = {"", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"};
        int i = 0;
        while (fabs(v) >= 1024 && i < 8) {
            v /= 1024;
            i++;
        }
        snprintf(b, sizeof b, "%.4g%s", v, pfx[i]);
    } else if (fabs(v) >= 1) {
        static const char *pfx[] = {"", "k", "M", "G", "T", "P", "E", "Z", "Y"};
        int i = 0;
        while (fabs(v) >= 1000 && i < 8) {
            v /= 1000;
            i++;
        }
        snprintf(b, sizeof b, "%.4g%s", v, pfx[i]);
    } else {
        static const char *pfx[] = {"", "m", "u", "n", "p", "f", "a", "z", "y"};
        int i = 0;
        while (fabs(v) < 1 && i < 8) {
            v *= 1000;
            i++;
        }
        snprintf(b, sizeof b, "%.4g%s", v, pfx[i]);
    }
    tbuf_put(o, b, strlen(b));
}

static void humanize_duration(double v, tbuf_t *o)
{
    char b[96];
    if (isnan(v) || isinf(v)) {
        snprintf(b, sizeof b, "%.4g", v);
    } else if (fabs(v) >= 1) {
        const char *sign = v < 0 ? "-" : "";
        double a = fabs(v);
        long long secs = (long long)a;
        long long d = secs / 86400, h = secs / 3600 % 24, m = secs / 60 % 60, s = secs % 60;
        if (d)
            snprintf(b, sizeof b, "%s%lldd %lldh %lldm %llds", sign, d, h, m, s);
        else if (h)
            snprintf(b, sizeof b, "%s%lldh %lldm %llds", sign, h, m, s);
        else if (m)
            snprintf(b, sizeof b, "%s%lldm %llds", sign, m, s);
        else
            snprintf(b, sizeof b, "%s%.4gs", sign, a);
    } else if (v == 0) {
        snprintf(b, sizeof b, "0s");
    } else {
        static const char *u[] = {"s", "ms", "us", "ns", "ps"};
        int i = 0;
        while (fabs(v) < 1 && i < 4) {
            v *= 1000;
            i++;
        }
        snprintf(b, sizeof b, "%.4g%s", v, u[i]);
    }
    tbuf_put(o, b, strlen(b));
}

/* printf with Go-style verbs over numbers and strings. */
static int do_printf(tctx_t *c, const char *at, const val_t *args, size_t n, tbuf_t *o)
{
    if (!n || args[0].t != V_STR) return terr(c, at, "printf needs a format string", NULL);
    const char *f = (const char *)args[0].s.p;
    size_t fl = args[0].s.len, ai = 1;
    for (size_t i = 0; i < fl; i++) {
        if (f[i] != '%') {
            if (tbuf_put(o, f + i, 1)) return ALERT_ENOMEM;
            continue;
        }
        size_t j = i + 1;
        char spec[32] = "%";
        size_t sl = 1;
        while (j < fl && sl < sizeof spec - 2 && strchr("0123456789.-+ #", f[j]))
            spec[sl++] = f[j++];
        if (j >= fl) return terr(c, at, "printf: incomplete verb", NULL);
        char verb = f[j];
        i = j;
        if (verb == '%') {
            if (tbuf_put(o, "%", 1)) return ALERT_ENOMEM;
            continue;
        }
        if (ai >= n) {
            if (alert_printf(o, "%%!%c(MISSING)", verb)) return ALERT_ENOMEM;
            continue;
        }
        const val_t *a = &args[ai++];
        char b[512];
        if (verb == 'v' || verb == 's' || verb == 'q') {
            tbuf_t tmp = {0};
            if (val_print(a, c->d, &tmp)) return ALERT_ENOMEM;
            if (verb == 'q') {
                if (alert_json_strn(o, tmp.len ? (const char *)tmp.p : "", tmp.len)) {
                    tbuf_free(&tmp);
                    return ALERT_ENOMEM;
                }
            } else if (tbuf_put(o, tmp.p, tmp.len)) {
                tbuf_free(&tmp);
                return ALERT_ENOMEM;
            }
            tbuf_free(&tmp);
            continue;
        }
        double x;
        int rc = val_num(c, at, a, &x);
        if (rc) return rc;
        if (strchr("eEfFgG", verb)) {
            spec[sl++] = verb;
            spec[sl] = 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            snprintf(b, sizeof b, spec, x);
        } else if (verb == 'd' || verb == 'x' || verb == 'X') {
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = verb;
            spec[sl] = 0;
            snprintf(b, sizeof b, spec, (long long)x);
#pragma GCC diagnostic pop
        } else {
            return terr(c, at, "printf: verb %s not in the subset (v s q d x e f g)",
                        (char[3]){'%', verb, 0});
        }
        if (tbuf_put(o, b, strlen(b))) return ALERT_ENOMEM;
    }
    return 0;
}

#define MAX_ARGS 8

/* One command: operand, or function with operands; `prev` (may be NULL)
 * is appended as the last argument. */
static int command(tctx_t *c, val_t *prev, val_t *res)
{
    skip_ws(c);
    const char *at = c->p;
    val_t args[MAX_ARGS + 1];
    memset(args, 0, sizeof args);
    size_t na = 0;
    int rc = operand(c, &args[0]);
    if (rc < 0) goto out;
    if (rc == 1) {
        skip_ws(c);
        if (c->p < c->end && *c->p != '|') {
            rc = terr(c, c->p, "unexpected '%s' after an operand", (char[2]){*c->p, 0});
            goto out;
        }
        if (prev) {
            rc = terr(c, at, "an operand cannot take a piped argument", NULL);
            goto out;
        }
        *res = args[0];
        memset(&args[0], 0, sizeof args[0]);
        rc = 0;
        goto out;
    }
    /* Function name. */
    const char *e = c->p;
    while (e < c->end && (isalnum((unsigned char)*e) || *e == '_'))
        e++;
    if (e == c->p) {
        rc = c->p < c->end && *c->p == '('
                 ? terr(c, c->p, "parentheses are not in the template subset", NULL)
                 : terr(c, c->p, "expected a value or a function", NULL);
        goto out;
    }
    char fn[32];
    size_t fl = (size_t)(e - c->p);
    if (fl >= sizeof fn) fl = sizeof fn - 1;
    memcpy(fn, c->p, fl);
    fn[fl] = 0;
    c->p = e;
    static const char *const control[] = {"if",     "else",     "end",   "range", "with",
                                          "define", "template", "block", "break", "continue"};
    for (size_t i = 0; i < sizeof control / sizeof control[0]; i++)
        if (!strcmp(fn, control[i])) {
            rc = terr(c, at, "'%s' is not in the template subset (no control structures)", fn);
            goto out;
        }
    for (;;) {
        skip_ws(c);
        if (c->p >= c->end || *c->p == '|') break;
        if (na >= MAX_ARGS) {
            rc = terr(c, c->p, "too many arguments", NULL);
            goto out;
        }
        rc = operand(c, &args[na]);
        if (rc < 0) goto out;
        if (rc == 0) {
            rc = terr(c, c->p, "unexpected '%s' in the arguments", (char[2]){*c->p, 0});
            goto out;
        }
        na++;
    }
    if (prev) {
        args[na++] = *prev;
        memset(prev, 0, sizeof *prev);
    }
    res->t = V_STR;
    res->s.len = 0;
    rc = 0;
    double x = 0;
    int one_num = !strcmp(fn, "humanize") || !strcmp(fn, "humanize1024") ||
                  !strcmp(fn, "humanizePercentage") || !strcmp(fn, "humanizeDuration") ||
                  !strcmp(fn, "humanizeTimestamp");
    int one_str = !strcmp(fn, "toUpper") || !strcmp(fn, "toLower") || !strcmp(fn, "title");
    if (one_num || one_str) {
        if (na != 1) {
            rc = terr(c, at, "%s takes one argument", fn);
            goto out;
        }
    }
    if (one_num) {
        rc = val_num(c, at, &args[0], &x);
        if (rc) goto out;
    }
    if (!strcmp(fn, "humanize"))
        humanize(x, 0, &res->s);
    else if (!strcmp(fn, "humanize1024"))
        humanize(x, 1, &res->s);
    else if (!strcmp(fn, "humanizePercentage"))
        rc = alert_printf(&res->s, "%.4g%%", x * 100) ? ALERT_ENOMEM : 0;
    else if (!strcmp(fn, "humanizeDuration"))
        humanize_duration(x, &res->s);
    else if (!strcmp(fn, "humanizeTimestamp")) {
        char b[64];
        if (isnan(x) || isinf(x))
            snprintf(b, sizeof b, "%.4g", x);
        else {
            time_t t = (time_t)x;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
        }
        rc = tbuf_put(&res->s, b, strlen(b)) ? ALERT_ENOMEM : 0;
    } else if (one_str) {
        rc = val_print(&args[0], c->d, &res->s);
        int up = fn[2] == 'U', start = 1;
        for (size_t i = 0; !rc && i < res->s.len; i++) {
            char *ch = (char *)res->s.p + i;
            if (!strcmp(fn, "title")) {
                if (start && isalpha((unsigned char)*ch)) *ch = (char)toupper((unsigned char)*ch);
                start = !isalnum((unsigned char)*ch);
            } else
                *ch = (char)(up ? toupper((unsigned char)*ch) : tolower((unsigned char)*ch));
        }
    } else if (!strcmp(fn, "printf"))
        rc = do_printf(c, at, args, na, &res->s);
    else if (!strcmp(fn, "index")) {
        if (na != 2 || args[0].t != V_MAP || args[1].t != V_STR) {
            rc = terr(c, at, "index takes a label map and a name", NULL);
            goto out;
        }
        const char *v = NULL;
        if (c->d)
            v = args[0].d == 0
                    ? lookup(c->d->labels, c->d->nlabels, (const char *)args[1].s.p, args[1].s.len)
                    : lookup(c->d->ext, c->d->next, (const char *)args[1].s.p, args[1].s.len);
        rc = v && tbuf_put(&res->s, v, strlen(v)) ? ALERT_ENOMEM : 0;
    } else
        rc = terr(c, at, "function %s is not in the template subset", fn);
out:
    for (size_t i = 0; i <= MAX_ARGS; i++)
        val_free(&args[i]);
    return rc;
}

int alert_template_expand(const char *t, size_t len, const alert_tmpl_data_t *d, tbuf_t *out,
                          char *err, size_t errlen)
{
    tctx_t c = {.base = t, .d = d, .err = err, .errlen = errlen};
    const char *p = t, *end = t + len;
    char dummy[8];
    if (!err) {
        c.err = dummy;
        c.errlen = sizeof dummy;
    }
    int trim_next = 0;
    while (p < end) {
        const char *o = NULL;
        for (const char *q = p; q + 1 < end; q++)
            if (q[0] == '{' && q[1] == '{') {
                o = q;
                break;
            }
        const char *text_end = o ? o : end;
        const char *ts = p;
        if (trim_next)
            while (ts < text_end && isspace((unsigned char)*ts))
                ts++;
        int trim_prev = o && o + 3 < end && o[2] == '-' && isspace((unsigned char)o[3]);
        const char *te = text_end;
        if (trim_prev)
            while (te > ts && isspace((unsigned char)te[-1]))
                te--;
        if (out && te > ts && tbuf_put(out, ts, (size_t)(te - ts))) return ALERT_ENOMEM;
        if (!o) break;
        const char *a = o + 2 + (trim_prev ? 2 : 0);
        const char *close = NULL;
        int in_str = 0;
        for (const char *q = a; q + 1 < end; q++) {
            if (*q == '"' && (q == a || q[-1] != '\\')) in_str = !in_str;
            if (!in_str && q[0] == '}' && q[1] == '}') {
                close = q;
                break;
            }
        }
        if (!close) return terr(&c, o, "unclosed action", NULL);
        const char *ae = close;
        trim_next = 0;
        if (ae - a >= 2 && ae[-1] == '-' && isspace((unsigned char)ae[-2])) {
            trim_next = 1;
            ae -= 2;
        }
        p = close + 2;
        /* Comment. */
        const char *s = a;
        while (s < ae && isspace((unsigned char)*s))
            s++;
        if (ae - s >= 4 && s[0] == '/' && s[1] == '*') {
            const char *ce = ae;
            while (ce > s && isspace((unsigned char)ce[-1]))
                ce--;
            if (ce - s < 4 || ce[-1] != '/' || ce[-2] != '*')
                return terr(&c, s, "unterminated comment", NULL);
            continue;
        }
        if (s == ae) return terr(&c, o, "empty action", NULL);
        c.p = s;
        c.end = ae;
        val_t cur;
        memset(&cur, 0, sizeof cur);
        int have = 0;
        for (;;) {
            val_t res;
            memset(&res, 0, sizeof res);
            int rc = command(&c, have ? &cur : NULL, &res);
            val_free(&cur);
            if (rc) {
                val_free(&res);
                return rc;
            }
            cur = res;
            have = 1;
            skip_ws(&c);
            if (c.p < c.end && *c.p == '|') {
                c.p++;
                continue;
            }
            break;
        }
        int rc = out ? val_print(&cur, d, out) : 0;
        val_free(&cur);
        if (rc) return rc;
    }
    return 0;
}
