/*
 * drain.h — the drain controller: from risk scores to cordoned and drained
 * nodes, safely (docs/draining.md).
 *
 * Every tick (drain_tick(d, now_ms), driven by the server's clock or a fake
 * one in tests) the controller:
 *   1. evaluates one PromQL risk query per kind (disk, gpu, node_anomaly)
 *      over the store: one value per node (the node label, default
 *      `instance`), failure-domain labels (rack, pod) carried along;
 *   2. tracks per node and kind since when the risk is >= drain_threshold
 *      and since when it is < undrain_threshold (missing data resets both:
 *      a telemetry gap never drains nor undrains);
 *   3. counts nodes newly flagged within the breaker window; more than
 *      max_flagged_percent of the fleet (and at least min_flagged) trips the
 *      circuit breaker: no automatic action until an admin resets it;
 *   4. for each node above its threshold for `for` (highest risk first)
 *      checks, in order: opt-out, breaker, pause, cooldown, maintenance
 *      window, blocking alerts firing, max cordoned (absolute and % of the
 *      fleet), max per failure domain, minimum spacing, max per hour, manual
 *      approval; the first rule that fails blocks it (and is logged once per
 *      change), otherwise the node is cordoned and drained (commands run
 *      with fork/execve — no shell — or a webhook);
 *   5. uncordons a drained node when a failure event for it follows the
 *      drain (the device was replaced) or its risk stayed below
 *      undrain_threshold for undrain_for (hysteresis), then starts its
 *      cooldown;
 *   6. resolves outcomes: a drain followed by a failure event within the
 *      horizon is a true positive, one without is a false positive.
 *
 * Dry run (the default) goes through the same decisions and state, but
 * runs nothing: the audit log says what would have been run.
 *
 * Durability: every decision and command result is appended to
 * <dir>/drain-audit.jsonl (one JSON object a line, fdatasync'd before the
 * command runs and after it ends); the state (nodes, timers, breaker,
 * pause, drain history, outcomes) is saved atomically to <dir>/drain.state
 * after every tick that changed it, and loaded by drain_open().
 */
#ifndef AUGUR_DRAIN_H
#define AUGUR_DRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_util.h"

#define DRAIN_ERRNO_MAP(X)                                                                         \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "I/O error (audit log or state file)")                                              \
    X(ECONFIG, -4, "invalid drain policy")                                                         \
    X(ENOTFOUND, -5, "unknown node")                                                               \
    X(ESTATE, -6, "the node is not in a state that allows this")                                   \
    X(ESTORE, -7, "store error")

typedef enum {
#define DRAIN_ERR_ENUM_(name, code, msg) DRAIN_##name = code,
    DRAIN_ERRNO_MAP(DRAIN_ERR_ENUM_)
#undef DRAIN_ERR_ENUM_
} drain_err_t;

const char *drain_strerror(int err);

typedef enum {
    DRAIN_KIND_DISK = 0,
    DRAIN_KIND_GPU,
    DRAIN_KIND_NODE_ANOMALY,
    DRAIN_KINDS
} drain_kind_t;
const char *drain_kind_name(int k); /* "disk", "gpu", "node_anomaly" */

typedef struct {
    int enabled;
    char *query;              /* PromQL: one series per node */
    double drain_threshold;   /* risk >= this ... */
    int64_t for_ms;           /* ... continuously this long: drain candidate */
    double undrain_threshold; /* risk < this ... */
    int64_t undrain_for_ms;   /* ... this long: uncordon */
} drain_kind_policy_t;

typedef struct {
    uint8_t days;  /* bit d = weekday d (0 = Sunday); 0x7f = every day */
    int start_min; /* minutes after 00:00 UTC */
    int end_min;   /* end <= start: the window runs past midnight */
} drain_window_t;

typedef struct {
    int dry_run;          /* default 1 */
    int manual_approval;  /* default 1 */
    char *node_label;     /* default "instance" */
    int strip_port;       /* "host:9100" -> "host" for {{node}}; default 1 */
    char **domain_labels; /* default rack, pod */
    size_t ndomain_labels;
    char *cordon_cmd, *drain_cmd, *uncordon_cmd; /* templates, split into argv (no shell) */
    int64_t command_timeout_ms;                  /* kill a command after; default 15m */
    int64_t drain_timeout_ms;                    /* {{timeout}} in the templates; default 10m */
    char *webhook_url; /* set: POST {action,node,...} instead of commands */
    drain_kind_policy_t kinds[DRAIN_KINDS];
    uint32_t max_cordoned;        /* default 2 */
    double max_cordoned_percent;  /* of the fleet; default 5 (at least 1 node) */
    uint32_t max_per_domain;      /* default 1 */
    int64_t min_spacing_ms;       /* between drain starts; default 30m */
    uint32_t max_per_hour;        /* drain starts in any 1 h; default 2 */
    int64_t cooldown_ms;          /* after an uncordon; default 24h */
    uint32_t fleet_size;          /* 0 = nodes seen by the risk queries */
    double breaker_percent;       /* default 10 */
    uint32_t breaker_min_flagged; /* default 3 */
    int64_t breaker_window_ms;    /* default 1h */
    char **block_alerts;          /* alert names that block drains while firing */
    size_t nblock_alerts;
    drain_window_t *windows; /* none = any time */
    size_t nwindows;
    char **opt_out; /* node names (after port stripping) never drained */
    size_t nopt_out;
    int64_t horizon_ms;      /* outcome horizon; default 7d */
    int uncordon_on_failure; /* default 1 */
} drain_policy_t;

/* Defaults above. */
int drain_policy_init(drain_policy_t *p);
void drain_policy_free(drain_policy_t *p); /* accepts NULL */
/* Parse a YAML policy (keys documented in docs/draining.md) over the
 * defaults already in *p. DRAIN_ECONFIG with err "LINE:COL: why". */
int drain_policy_parse(drain_policy_t *p, const char *text, size_t len, char *err, size_t errlen);
int drain_policy_load_file(drain_policy_t *p, const char *path, char *err, size_t errlen);

typedef struct drain drain_t;

/* Open the controller on store db with state in dir (created if needed;
 * the state file is loaded when present). The policy is copied. */
int drain_open(tsdb_t *db, const char *dir, const drain_policy_t *p, drain_t **out, char *err,
               size_t errlen);
/* Save the state and free. Accepts NULL. */
void drain_close(drain_t *d);
/* Replace the policy (reload); node state is kept. */
int drain_set_policy(drain_t *d, const drain_policy_t *p);

/* One control step at now_ms (see the top of this file). Commands run in
 * the calling thread, without the state lock held. */
int drain_tick(drain_t *d, int64_t now_ms);

/* Admin actions (the API and `augur drain`); `who` goes to the audit log.
 * They take effect at once in the state and act at the next tick. */
int drain_approve(drain_t *d, const char *node, const char *who, int64_t now_ms);
int drain_cancel(drain_t *d, const char *node, const char *who, int64_t now_ms);
int drain_uncordon(drain_t *d, const char *node, const char *who, int64_t now_ms);
int drain_breaker_reset(drain_t *d, const char *who, int64_t now_ms);
int drain_pause(drain_t *d, int paused, const char *who, int64_t now_ms);

/* Node state name ("ok", "flagged", "awaiting_approval", "draining",
 * "drained", "drain_failed") of a node, or NULL when unknown. */
const char *drain_node_state(drain_t *d, const char *node);
int drain_breaker_tripped(drain_t *d);

/* GET /api/v1/drains body ({"status":"success","data":{...}}). */
int drain_json(drain_t *d, int64_t now_ms, tbuf_t *out);
/* augur_drain_* metrics (text format). */
int drain_metrics_render(drain_t *d, tbuf_t *out);

typedef struct {
    uint64_t true_positive, false_positive, pending;
    double precision; /* NaN with no resolved outcome */
} drain_outcomes_t;
void drain_outcomes(drain_t *d, drain_outcomes_t *o);

/* Split a command template into argv and substitute {{node}}, {{kind}},
 * {{timeout}} inside each word (a value never splits a word). Quotes '…'
 * and "…" group words. *argv is NULL-terminated, one allocation: free it.
 * 0, DRAIN_EINVAL (unterminated quote, empty), DRAIN_ENOMEM. */
int drain_argv_build(const char *tmpl, const char *node, const char *kind, const char *timeout,
                     char ***argv);

/* Run argv (fork + execvp, no shell) with a timeout; combined stdout and
 * stderr, at most outcap - 1 bytes, into out. Returns the exit status
 * (0..255), 128 + signal when killed, -1 when it could not start. */
int drain_exec(char *const *argv, int64_t timeout_ms, char *out, size_t outcap);

#endif
