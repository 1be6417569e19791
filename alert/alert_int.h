/* alert_int.h — internals shared by the files of alert/ (not public). */
#ifndef AUGUR_ALERT_INT_H
#define AUGUR_ALERT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "alert/alert.h"

/* Strings and label pairs. */
char *alert_strdup(const char *s);
char *alert_strndup(const char *s, size_t n);
void alert_kv_free(alert_kv_t *kv, size_t n);
int alert_kv_copy(const alert_kv_t *src, size_t n, alert_kv_t **out);
void alert_kv_sort(alert_kv_t *kv, size_t n);
/* Set (replace or add) name=value in a growable array. 0 or -1. */
int alert_kv_set(alert_kv_t **kv, size_t *n, const char *name, const char *value);
const char *alert_kv_get(const alert_kv_t *kv, size_t n, const char *name);
uint64_t alert_kv_hash(const alert_kv_t *kv, size_t n); /* of a sorted set */

/* JSON string (quoted, escaped) onto b. 0 or -1. */
int alert_json_str(tbuf_t *b, const char *s);
int alert_json_strn(tbuf_t *b, const char *s, size_t n);
int alert_printf(tbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* RFC 3339 with milliseconds, UTC. */
void alert_time_rfc3339(int64_t ms, char *buf, size_t n);
/* Go's %v of a float64 (shortest round-trip, e when exp < -4 || exp >= 21). */
void alert_format_float(double v, char *buf, size_t n);

int alert_label_name_valid(const char *s);
int alert_metric_name_valid(const char *s);

/* ---- YAML (libyaml document API) ---- */
typedef struct {
    yaml_document_t doc;
    int loaded;
} alert_yaml_t;
/* Load the first document of text. 0, or -1 with err "LINE:COL: why". An
 * empty text gives a document without a root (root() returns NULL). */
int alert_yaml_load(alert_yaml_t *y, const char *text, size_t len, char *err, size_t errlen);
void alert_yaml_free(alert_yaml_t *y);
yaml_node_t *alert_yaml_root(alert_yaml_t *y);
yaml_node_t *alert_yaml_node(alert_yaml_t *y, int idx);
static inline int alert_yaml_line(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 0;
}
static inline int alert_yaml_col(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.column + 1 : 0;
}
/* Scalar value (NUL-terminated) or NULL for a non-scalar. */
const char *alert_yaml_str(const yaml_node_t *n);
/* A scalar that is YAML null (~, null, empty plain). */
int alert_yaml_is_null(const yaml_node_t *n);
int alert_yaml_bool(const yaml_node_t *n, int *out);
int alert_yaml_double(const yaml_node_t *n, double *out);

/* Render an alert as an Alertmanager v2 postable alert JSON object. */
int alert_render_postable(const alert_t *a, const char *generator_url, const alert_kv_t *ext,
                          size_t next, tbuf_t *out);

/* Percent-encode for a URL query component. */
int alert_url_escape(tbuf_t *b, const char *s);

#endif
