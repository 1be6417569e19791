/*
 * log.h — structured logs in logfmt on stderr.
 *
 *   ts=2026-11-28T23:50:31.123Z level=info msg="listening" addr=127.0.0.1:9201
 *
 * One line per event, written with a single write(2) so that lines from
 * different threads never interleave. Keys are fixed identifiers chosen by
 * the caller; values that come from outside (paths, label values, error
 * texts) go through api_log_quote() or the "%s" arguments of api_log_kv().
 *
 *   api_log_level_parse()  "debug" | "info" | "warn" | "error"
 *   api_log_set_level()    process-wide threshold (default info)
 *   api_log_enabled()      cheap check before building expensive fields
 *   api_log()              msg plus printf-formatted "key=value ..." tail
 *   api_log_quote()        logfmt-quote one value into a caller buffer
 */
#ifndef AUGUR_API_LOG_H
#define AUGUR_API_LOG_H

#include <stddef.h>

typedef enum {
    API_LOG_DEBUG = 0,
    API_LOG_INFO = 1,
    API_LOG_WARN = 2,
    API_LOG_ERROR = 3,
} api_log_level_t;

/* Parse a level name (case-sensitive, as Prometheus' --log.level). Returns
 * 0 and sets *out, or -1 for an unknown name. */
int api_log_level_parse(const char *s, api_log_level_t *out);

void api_log_set_level(api_log_level_t level);
int api_log_enabled(api_log_level_t level);

/* Log `msg` (quoted as needed) followed by the formatted key=value tail
 * `kvfmt` (may be NULL). The caller quotes values that may hold spaces,
 * quotes or '=' with api_log_quote(). Lines longer than 4 KiB are cut. */
void api_log(api_log_level_t level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write `s` (len bytes) as one logfmt value into buf: bare when it holds
 * only safe characters, else in double quotes with \" \\ \n \t and \xHH
 * escapes. Always NUL-terminates (cap > 0), truncating with "..." to fit.
 * Returns buf. */
const char *api_log_quote(char *buf, size_t cap, const char *s, size_t len);

#endif
