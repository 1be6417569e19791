/* admin.c — admin endpoints: delete series, snapshot, force flush; and the
 * series-selector parser they need (`name{label op "value", ...}`).
 *
 * Only the selector grammar is parsed here (a metric name, label matchers
 * with = != =~ !~ and single, double or back-quoted strings); PromQL proper
 * lives in query/. */
#include "api/api_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_MATCHERS 64

static int name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* Room left in the arena; the parser never grows it (pointers into it must
 * stay valid), the caller reserves enough up front. */
static char *arena_put(tbuf_t *a, const char *s, size_t n)
{
    if (a->cap - a->len < n + 1) return NULL;
    char *p = (char *)a->p + a->len;
    memcpy(p, s, n);
    p[n] = 0;
    a->len += n + 1;
    return p;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A quoted string at *pp (unescaped into the arena). */
static const char *parse_string(const char **pp, const char *end, tbuf_t *a, char *err,
                                size_t errcap)
{
    const char *p = *pp;
    char q = *p++;
    if (a->cap - a->len < (size_t)(end - p) + 1) {
        snprintf(err, errcap, "internal: arena too small");
        return NULL;
    }
    char *out = (char *)a->p + a->len, *o = out;
    while (p < end && *p != q) {
        char c = *p++;
        if (c == '\\' && q != '`') {
            if (p >= end) break;
            char e = *p++;
            switch (e) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case '\\':
            case '"':
            case '\'':
                c = e;
                break;
            case 'x': {
                int h1 = p + 1 < end ? hexv(p[0]) : -1, h2 = p + 1 < end ? hexv(p[1]) : -1;
                if (h1 < 0 || h2 < 0) {
                    snprintf(err, errcap, "invalid \\x escape in string");
                    return NULL;
                }
                c = (char)(h1 * 16 + h2);
                p += 2;
                break;
            }
            default:
                snprintf(err, errcap, "unsupported escape \\%c in string", e);
                return NULL;
            }
        } else if (c == '\n' && q != '`') {
            snprintf(err, errcap, "newline in string");
            return NULL;
        }
        *o++ = c;
    }
    if (p >= end) {
        snprintf(err, errcap, "unterminated string");
        return NULL;
    }
    *o = 0;
    a->len += (size_t)(o - out) + 1;
    *pp = p + 1;
    return out;
}

static void skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
        (*p)++;
}

int api_selector_parse(const char *s, size_t len, tsdb_matcher_t *m, size_t mcap, tbuf_t *arena,
                       char *err, size_t errcap)
{
    const char *p = s, *end = s + len;
    size_t n = 0;
    skip_ws(&p, end);
    if (p < end && (name_start(*p) || *p == ':')) {
        const char *b = p;
        while (p < end && (name_char(*p) || *p == ':'))
            p++;
        const char *v = arena_put(arena, b, (size_t)(p - b));
        const char *nm = arena_put(arena, "__name__", 8);
        if (!v || !nm) {
            snprintf(err, errcap, "internal: arena too small");
            return -1;
        }
        m[n++] = (tsdb_matcher_t){TSDB_MATCH_EQ, nm, v};
        skip_ws(&p, end);
    }
    if (p < end && *p == '{') {
        p++;
        for (;;) {
            skip_ws(&p, end);
            if (p < end && *p == '}') {
                p++;
                break;
            }
            if (p >= end || !name_start(*p)) {
                snprintf(err, errcap, "expected label name at offset %zu", (size_t)(p - s));
                return -1;
            }
            const char *b = p;
            while (p < end && name_char(*p))
                p++;
            const char *name = arena_put(arena, b, (size_t)(p - b));
            skip_ws(&p, end);
            tsdb_match_type_t t;
            if (p + 1 < end && p[0] == '=' && p[1] == '~')
                t = TSDB_MATCH_RE, p += 2;
            else if (p + 1 < end && p[0] == '!' && p[1] == '~')
                t = TSDB_MATCH_NRE, p += 2;
            else if (p + 1 < end && p[0] == '!' && p[1] == '=')
                t = TSDB_MATCH_NE, p += 2;
            else if (p < end && p[0] == '=')
                t = TSDB_MATCH_EQ, p += 1;
            else {
                snprintf(err, errcap, "expected =, !=, =~ or !~ at offset %zu", (size_t)(p - s));
                return -1;
            }
            skip_ws(&p, end);
            if (p >= end || (*p != '"' && *p != '\'' && *p != '`')) {
                snprintf(err, errcap, "expected quoted string at offset %zu", (size_t)(p - s));
                return -1;
            }
            const char *val = parse_string(&p, end, arena, err, errcap);
            if (!val || !name) {
                if (!name) snprintf(err, errcap, "internal: arena too small");
                return -1;
            }
            if (n >= mcap) {
                snprintf(err, errcap, "more than %zu matchers", mcap);
                return -1;
            }
            m[n++] = (tsdb_matcher_t){t, name, val};
            skip_ws(&p, end);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            snprintf(err, errcap, "expected , or } at offset %zu", (size_t)(p - s));
            return -1;
        }
    }
    skip_ws(&p, end);
    if (p != end) {
        snprintf(err, errcap, "unexpected character at offset %zu", (size_t)(p - s));
        return -1;
    }
    if (n == 0) {
        snprintf(err, errcap, "empty selector");
        return -1;
    }
    return (int)n;
}

void api_handle_delete_series(api_req_t *r, tsdb_t *db, api_resp_t *rs)
{
    if (api_req_param(r, "start", 0) || api_req_param(r, "end", 0)) {
        api_resp_error(rs, 400, "bad_data",
                       "start/end are not supported: delete_series removes every sample of the "
                       "matching series");
        return;
    }
    size_t total = 0, nsel = 0;
    for (const char *v; (v = api_req_param(r, "match[]", nsel)); nsel++)
        total += strlen(v);
    if (!nsel) {
        api_resp_error(rs, 400, "bad_data", "no match[] parameter provided");
        return;
    }
    tbuf_t arena = {0};
    if (tbuf_reserve(&arena, 2 * total + 64 * nsel + 64)) {
        api_resp_error(rs, 500, "internal", "out of memory");
        return;
    }
    uint64_t deleted = 0;
    for (size_t i = 0; i < nsel; i++) {
        const char *v = api_req_param(r, "match[]", i);
        tsdb_matcher_t m[MAX_MATCHERS];
        char err[200];
        arena.len = 0;
        int n = api_selector_parse(v, strlen(v), m, MAX_MATCHERS, &arena, err, sizeof err);
        if (n < 0) {
            api_resp_error(rs, 400, "bad_data", "invalid match[] %.200s: %s", v, err);
            tbuf_free(&arena);
            return;
        }
        uint64_t nd = 0;
        int rc = tsdb_delete_series(db, m, (size_t)n, &nd);
        if (rc) {
            api_resp_error(rs, rc == TSDB_EINVAL || rc == TSDB_EREGEX ? 400 : 500,
                           rc == TSDB_EINVAL || rc == TSDB_EREGEX ? "bad_data" : "internal",
                           "delete_series %.200s: %s %s", v, tsdb_strerror(rc),
                           tsdb_last_error_detail());
            tbuf_free(&arena);
            return;
        }
        deleted += nd;
    }
    tbuf_free(&arena);
    char q[300];
    const char *first = api_req_param(r, "match[]", 0);
    api_log(API_LOG_INFO, "series deleted", "series=%" PRIu64 " match=%s", deleted,
            api_log_quote(q, sizeof q, first, strlen(first)));
    rs->code = 204;
}

void api_handle_snapshot(api_req_t *r, tsdb_t *db, api_resp_t *rs)
{
    api_server_t *s = r->s;
    char dir[4096], name[64], path[4200];
    snprintf(dir, sizeof dir, "%s/snapshots", s->cfg.storage_path);
    if (mkdir(dir, 0755) && errno != EEXIST) {
        api_resp_error(rs, 500, "internal", "mkdir %s: %s", dir, strerror(errno));
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* Unique enough: one admin operation runs at a time, the suffix breaks
     * ties within a second. */
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec;
    snprintf(name, sizeof name, "%04d%02d%02dT%02d%02d%02dZ-%016" PRIx64, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, trng_splitmix(&x));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = tsdb_backup(db, path);
    if (rc) {
        api_resp_error(rs, 500, "internal", "snapshot: %s %s", tsdb_strerror(rc),
                       tsdb_last_error_detail());
        return;
    }
    api_log(API_LOG_INFO, "snapshot created", "name=%s", name);
    rs->code = 200;
    rs->ctype = "application/json";
    char body[160];
    int n =
        snprintf(body, sizeof body, "{\"status\":\"success\",\"data\":{\"name\":\"%s\"}}\n", name);
    if (tbuf_put(&rs->body, body, (size_t)n)) api_resp_error(rs, 500, "internal", "out of memory");
}

void api_handle_flush(api_req_t *r, tsdb_t *db, api_resp_t *rs)
{
    (void)r;
    uint64_t t0 = api_now_ns();
    int rc = tsdb_flush(db);
    if (rc) {
        api_resp_error(rs, 500, "internal", "flush: %s %s", tsdb_strerror(rc),
                       tsdb_last_error_detail());
        return;
    }
    api_log(API_LOG_INFO, "head flushed", "duration_ms=%.1f", (double)(api_now_ns() - t0) / 1e6);
    rs->code = 204;
}
