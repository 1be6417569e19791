/* log.c — logfmt lines on stderr (see log.h). */
#include "api/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_threshold = API_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int api_log_level_parse(const char *s, api_log_level_t *out)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, level_names[i])) {
            *out = (api_log_level_t)i;
            return 0;
        }
    return -1;
}

void api_log_set_level(api_log_level_t level)
{
    atomic_store(&log_threshold, (int)level);
}

int api_log_enabled(api_log_level_t level)
{
    return (int)level >= atomic_load(&log_threshold);
}

static int safe_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

const char *api_log_quote(char *buf, size_t cap, const char *s, size_t len)
{
    if (!cap) return buf;
    int bare = len > 0;
    for (size_t i = 0; i < len && bare; i++)
        bare = safe_char((unsigned char)s[i]);
    size_t o = 0;
    if (bare) {
        if (len >= cap) {
            if (cap < 4) {
                buf[0] = 0;
                return buf;
            }
            memcpy(buf, s, cap - 4);
            memcpy(buf + cap - 4, "...", 4);
            return buf;
        }
        memcpy(buf, s, len);
        buf[len] = 0;
        return buf;
    }
    /* Quoted: reserve room for the closing quote, "..." and the NUL. */
    if (cap < 8) {
        buf[0] = 0;
        return buf;
    }
    buf[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        size_t n;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            n = 2;
        } else if (c == '\n') {
            memcpy(tmp, "\\n", 2);
            n = 2;
        } else if (c == '\t') {
            memcpy(tmp, "\\t", 2);
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            n = 4;
        } else {
            tmp[0] = (char)c;
            n = 1;
        }
        if (o + n + 5 > cap) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, tmp, n);
        o += n;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}

void api_log(api_log_level_t level, const char *msg, const char *kvfmt, ...)
{
    if (!api_log_enabled(level)) return;
    char line[4096];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char q[1024];
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level],
                     api_log_quote(q, sizeof q, msg, strlen(msg)));
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (kvfmt && *kvfmt && len + 2 < sizeof line) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        int m = vsnprintf(line + len, sizeof line - len, kvfmt, ap);
#pragma GCC diagnostic pop
        va_end(ap);
        if (m > 0) len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
    }
    if (len >= sizeof line - 1) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
