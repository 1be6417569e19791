/*
 * alert.h — alerting rules over augur's own store, and the Alertmanager
 * sender (docs/alerting.md).
 *
 *   alert_rules_load_*()     Prometheus rule files (YAML) -> alert_ruleset_t,
 *                            with promtool-style "file:line:col: why" errors
 *   alert_template_expand()  the Go-template subset of annotations and labels
 *   alert_engine_*()         evaluation: inactive -> pending -> firing ->
 *                            resolved as Prometheus; ALERTS and
 *                            ALERTS_FOR_STATE appended to the store; state
 *                            restored from ALERTS_FOR_STATE after a restart
 *   alert_notifier_*()       Alertmanager v2 (POST /api/v2/alerts) to every
 *                            configured Alertmanager, bounded queue each
 *   alert_runner_*()         the `augur serve` glue: a thread that evaluates
 *                            on the wall clock, reloads, and ticks the drain
 *                            controller (alert/drain.h)
 *
 * Determinism: the engine never reads a clock; every evaluation takes now_ms.
 * Only the runner (wall clock) and the notifier (retry backoff) do.
 *
 * Errors: 0 or a negative ALERT_E* code; alert_strerror() names it.
 */
#ifndef AUGUR_ALERT_H
#define AUGUR_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "query/promql.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

#define ALERT_ERRNO_MAP(X)                                                                         \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "I/O error")                                                                        \
    X(ERULES, -4, "invalid rule file")                                                             \
    X(ESTORE, -5, "store error")                                                                   \
    X(ECONFIG, -6, "invalid configuration file")                                                   \
    X(ETHREAD, -7, "cannot start a thread")

typedef enum {
#define ALERT_ERR_ENUM_(name, code, msg) ALERT_##name = code,
    ALERT_ERRNO_MAP(ALERT_ERR_ENUM_)
#undef ALERT_ERR_ENUM_
} alert_err_t;

const char *alert_strerror(int err);

/* Prometheus duration ("90s", "1h30m", "15d", "0"); 0 or -1. */
int alert_duration_parse(const char *s, int64_t *ms);
/* Format ms as a Prometheus duration ("1h30m", "0s") into buf. */
void alert_duration_format(int64_t ms, char *buf, size_t n);

/* ---- label pairs ---------------------------------------------------------- */

typedef struct {
    char *name, *value; /* owned, NUL-terminated */
} alert_kv_t;

/* ---- templates ------------------------------------------------------------ */

typedef struct {
    const alert_kv_t *labels; /* $labels (the alert's labels) */
    size_t nlabels;
    double value;          /* $value */
    const alert_kv_t *ext; /* $externalLabels */
    size_t next;
} alert_tmpl_data_t;

/* Expand one template (see docs/alerting.md for the subset: {{ $labels.x }},
 * {{ $value }}, {{ $externalLabels.x }}, {{ .Labels.x }}, {{ .Value }},
 * functions humanize, humanize1024, humanizePercentage, humanizeDuration,
 * humanizeTimestamp, printf, toUpper, toLower, title, pipelines with |,
 * trim markers {{- and -}}, comments) onto out.
 * Returns 0, ALERT_EINVAL with err "col N: why" for a template outside the
 * subset, ALERT_ENOMEM. With d == NULL only the syntax is checked. */
int alert_template_expand(const char *t, size_t len, const alert_tmpl_data_t *d, tbuf_t *out,
                          char *err, size_t errlen);

/* ---- rule files ----------------------------------------------------------- */

typedef struct {
    char *alert;  /* alerting rule name, or NULL */
    char *record; /* recording rule metric name, or NULL */
    char *expr;
    pq_expr_t *pq; /* parsed expr */
    int64_t for_ms;
    int64_t keep_firing_for_ms;
    alert_kv_t *labels;
    size_t nlabels;
    alert_kv_t *annotations;
    size_t nannotations;
    int line; /* in the file */
} alert_rule_def_t;

typedef struct {
    char *name;
    char *file;
    int64_t interval_ms; /* 0 = the engine's default */
    uint32_t limit;      /* 0 = no limit on alerts/series per rule */
    alert_rule_def_t *rules;
    size_t nrules;
    int line;
} alert_group_def_t;

typedef struct {
    alert_group_def_t *groups;
    size_t ngroups;
} alert_ruleset_t;

/* Parse one rule file's text and append its groups to rs. Every problem is
 * appended to errs as one line "NAME:LINE:COL: why\n" and counted in
 * *nerrs; a file with errors adds no group. Returns 0, ALERT_ERULES
 * (errors found), ALERT_ENOMEM. */
int alert_rules_load_buffer(alert_ruleset_t *rs, const char *name, const char *text, size_t len,
                            tbuf_t *errs, size_t *nerrs);
/* The same for a file (at most 16 MiB); ALERT_EIO when unreadable. */
int alert_rules_load_file(alert_ruleset_t *rs, const char *path, tbuf_t *errs, size_t *nerrs);
/* Groups of rs whose names repeat across files are not errors (Prometheus
 * keys groups by file and name). */
void alert_ruleset_free(alert_ruleset_t *rs); /* frees the contents; accepts NULL */
size_t alert_ruleset_rule_count(const alert_ruleset_t *rs);

/* The shipped default rules (rules/augur-defaults.yml, compiled in). */
extern const char alert_default_rules[];
extern const size_t alert_default_rules_len;

/* ---- evaluation ----------------------------------------------------------- */

typedef enum {
    ALERT_STATE_INACTIVE = 0, /* resolved (kept 15 min to send the resolution) */
    ALERT_STATE_PENDING = 1,
    ALERT_STATE_FIRING = 2,
} alert_state_t;

const char *alert_state_name(alert_state_t s); /* "inactive", "pending", "firing" */

/* One alert instance of a rule: a stable label set. */
typedef struct {
    alert_kv_t *labels; /* sorted by name, alertname included */
    size_t nlabels;
    alert_kv_t *annotations; /* expanded at the latest evaluation */
    size_t nannotations;
    alert_state_t state;
    double value;
    int64_t active_at, fired_at, resolved_at; /* ms; 0 = not yet */
    int64_t last_sent_at, valid_until, keep_firing_since;
    uint64_t fp; /* label-set hash */
} alert_t;

typedef struct {
    int64_t eval_interval_ms;          /* group default; 0 = 1 m */
    int64_t resend_delay_ms;           /* 0 = 1 m */
    int64_t resolved_retention_ms;     /* resolved alerts resent this long; 0 = 15 m */
    int64_t outage_tolerance_ms;       /* restore looks back this far; 0 = 1 h */
    int64_t for_grace_period_ms;       /* min pending left after a restore; 0 = 10 m */
    int64_t lookback_ms;               /* PromQL lookback; 0 = 5 m */
    const char *external_url;          /* generatorURL base; NULL = "http://localhost:9201" */
    const alert_kv_t *external_labels; /* added to sent alerts (borrowed) */
    size_t nexternal_labels;
    int no_series; /* 1 = do not append ALERTS/ALERTS_FOR_STATE */
} alert_engine_config_t;

void alert_engine_config_init(alert_engine_config_t *c);

/* Alerts to send: each entry is one JSON object of the Alertmanager v2
 * postable alert (labels, annotations, startsAt, endsAt, generatorURL). */
typedef struct {
    char **v;
    size_t n, cap;
} alert_outbox_t;
void alert_outbox_clear(alert_outbox_t *o); /* frees the strings, keeps the array */
void alert_outbox_free(alert_outbox_t *o);

typedef struct alert_engine alert_engine_t;

int alert_engine_create(tsdb_t *db, const alert_engine_config_t *cfg, alert_engine_t **out);
void alert_engine_destroy(alert_engine_t *e); /* accepts NULL */

/* Install rules (the contents of rs are taken; rs is left empty). Active
 * alerts of a rule with the same group (file, name), rule name and
 * expression carry over, as Prometheus does on reload. */
int alert_engine_set_rules(alert_engine_t *e, alert_ruleset_t *rs);

/* After the first set_rules at start: for every alerting rule with a `for`,
 * evaluate it at now_ms and take each alert's active time from its latest
 * ALERTS_FOR_STATE sample within the outage tolerance (the pending time
 * spent before the outage counts; at least for_grace_period is left when
 * it would run out during the outage). Alerts firing before the restart
 * fire again at the next evaluation with their old activeAt. */
int alert_engine_restore(alert_engine_t *e, int64_t now_ms);

/* Evaluate every group due at now_ms (a group is due every interval after
 * its first evaluation); alerts that need sending go to out (may be NULL).
 * Returns the number of groups evaluated (>= 0) or a negative error. Query
 * errors are not errors of the call: they are kept per rule (lastError). */
int alert_engine_eval(alert_engine_t *e, int64_t now_ms, alert_outbox_t *out);

/* Evaluate all groups now, due or not (tests, `augur check` dry runs). */
int alert_engine_eval_all(alert_engine_t *e, int64_t now_ms, alert_outbox_t *out);

/* Earliest time a group is due (INT64_MAX with no groups). */
int64_t alert_engine_next_due(alert_engine_t *e);

/* Visit every alert (pending, firing, and resolved ones still kept). */
typedef void (*alert_visit_fn)(void *ctx, const char *group, const char *rule, const alert_t *a);
void alert_engine_visit(alert_engine_t *e, alert_visit_fn fn, void *ctx);

/* Count alerts in a state for a rule name (NULL = every rule). */
size_t alert_engine_count(alert_engine_t *e, const char *rule, alert_state_t state);

/* Prometheus API bodies: GET /api/v1/rules and /api/v1/alerts (data part
 * wrapped in {"status":"success","data":...}). */
int alert_engine_rules_json(alert_engine_t *e, tbuf_t *out);
int alert_engine_alerts_json(alert_engine_t *e, tbuf_t *out);

/* ---- Alertmanager sender -------------------------------------------------- */

typedef struct {
    const char *const *urls; /* Alertmanager base URLs ("http://host:9093[/prefix]") */
    size_t nurls;
    size_t queue_capacity; /* alerts queued per Alertmanager; 0 = 10,000 */
    size_t max_batch;      /* alerts per POST; 0 = 64 */
    int64_t timeout_ms;    /* per POST; 0 = 10 s */
    int max_attempts;      /* per batch; 0 = 3 */
    int64_t backoff_ms;    /* first retry delay, doubled each time; 0 = 500 ms */
} alert_notifier_config_t;

void alert_notifier_config_init(alert_notifier_config_t *c);

typedef struct alert_notifier alert_notifier_t;

/* Start one sender thread per Alertmanager. ALERT_ENOMEM, ALERT_ETHREAD,
 * ALERT_EINVAL (a URL that is not http:// or https://). */
int alert_notifier_start(const alert_notifier_config_t *cfg, alert_notifier_t **out);
/* Stop: give queued alerts up to timeout_ms to go out, then free. Accepts NULL. */
void alert_notifier_stop(alert_notifier_t *n, int64_t timeout_ms);
/* Queue copies of the outbox's alerts for every Alertmanager (drops the
 * oldest queued ones when a queue is full, counted). */
void alert_notifier_send(alert_notifier_t *n, const alert_outbox_t *o);
/* Wait until every queue is empty and nothing is in flight (tests). 0 or -1
 * at the timeout. */
int alert_notifier_wait_idle(alert_notifier_t *n, int64_t timeout_ms);
/* augur_notifications_* metrics (text format) appended to out. */
int alert_notifier_metrics_render(alert_notifier_t *n, tbuf_t *out);

typedef struct {
    uint64_t sent, errors, dropped, queue_length;
} alert_notifier_stats_t;
/* Totals over every Alertmanager. */
void alert_notifier_stats(alert_notifier_t *n, alert_notifier_stats_t *st);

/* ---- the serve glue ---------------------------------------------------------- */

#include "alert/drain.h"

typedef struct {
    const char *const *rule_files; /* paths or globs (--rules.file) */
    size_t nrule_files;
    const char *config_file;    /* Prometheus-style: global.evaluation_interval,
                                   global.external_labels, rule_files,
                                   alerting.alertmanagers[].static_configs[].targets,
                                   scheme, path_prefix; other keys ignored */
    int load_defaults;          /* the compiled-in rules/augur-defaults.yml */
    const char *const *am_urls; /* --alertmanager.url */
    size_t nam_urls;
    alert_engine_config_t engine;
    alert_notifier_config_t notifier; /* urls ignored: am_urls + config file */
    int drain_enabled;                /* run the drain controller */
    const char *drain_config;         /* YAML policy; NULL = defaults (dry run) */
    int64_t drain_interval_ms;        /* 0 = 30 s */
    const char *state_dir;            /* drain state and audit log */
} alert_runner_config_t;

typedef struct alert_runner alert_runner_t;

/* Load everything and start the evaluation thread (wall clock). Errors
 * (ALERT_ERULES, ALERT_ECONFIG, ...) leave err with the reasons. */
int alert_runner_start(tsdb_t *db, const alert_runner_config_t *cfg, alert_runner_t **out,
                       char *err, size_t errlen);
/* Re-read the config file, rule files and drain policy; on any error the
 * running configuration stays and err says why. */
int alert_runner_reload(alert_runner_t *r, char *err, size_t errlen);
void alert_runner_stop(alert_runner_t *r); /* accepts NULL */
alert_engine_t *alert_runner_engine(alert_runner_t *r);
drain_t *alert_runner_drain(alert_runner_t *r); /* NULL when disabled */
/* Wake the thread now (after an admin action). */
void alert_runner_kick(alert_runner_t *r);
/* augur_notifications_*, augur_drain_*, augur_rule_* metrics. */
int alert_runner_metrics_render(alert_runner_t *r, tbuf_t *out);

/* Load the rule files a runner would load (defaults, globs, config file's
 * rule_files) into rs; errors appended to errs. Used by `augur check`. */
int alert_config_rules(const alert_runner_config_t *cfg, alert_ruleset_t *rs, tbuf_t *errs,
                       size_t *nerrs);
#endif
