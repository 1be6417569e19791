/* drains.c — the drain controller's admin API (alert/drain.h does the work):
 *
 *   GET  /api/v1/drains                    state, limits, nodes, outcomes
 *   POST /api/v1/drains/{node}/approve     manual-approval mode: allow it
 *   POST /api/v1/drains/{node}/cancel      drop a pending candidate
 *   POST /api/v1/drains/{node}/uncordon    uncordon at the next tick
 *   POST /api/v1/drains/breaker/reset      re-arm after a circuit-breaker trip
 *   POST /api/v1/drains/pause | resume     stop / restart automatic action
 *
 * All admin role. 404 unknown node, 409 wrong state, 503 controller off. */
#include "api/api_int.h"

#include <stdio.h>
#include <string.h>

#include "alert/alert.h"

void api_handle_drains(api_req_t *r, api_resp_t *rs)
{
    api_server_t *s = r->s;
    drain_t *d = alert_runner_drain(atomic_load(&s->alerting));
    if (!d) {
        api_resp_error(rs, 503, "unavailable",
                       "the drain controller is not running (--drain.enabled=false?)");
        return;
    }
    const char *sub = r->url + strlen("/api/v1/drains");
    int64_t now = api_wall_ms();
    int get = !strcmp(r->method, "GET");
    if (!*sub || !strcmp(sub, "/")) {
        if (!get) {
            api_resp_error(rs, 405, "bad_data", "GET only");
            api_resp_header(rs, "Allow", "GET");
            return;
        }
        rs->code = 200;
        rs->ctype = "application/json";
        if (drain_json(d, now, &rs->body)) api_resp_error(rs, 500, "internal", "out of memory");
        return;
    }
    if (get) {
        api_resp_error(rs, 405, "bad_data", "POST only");
        api_resp_header(rs, "Allow", "POST");
        return;
    }
    sub++;
    const char *who = "http-admin";
    int rc;
    char node[512] = "";
    const char *action = sub;
    if (!strcmp(sub, "pause"))
        rc = drain_pause(d, 1, who, now);
    else if (!strcmp(sub, "resume"))
        rc = drain_pause(d, 0, who, now);
    else if (!strcmp(sub, "breaker/reset"))
        rc = drain_breaker_reset(d, who, now);
    else {
        const char *sl = strrchr(sub, '/');
        if (!sl || sl == sub || (size_t)(sl - sub) >= sizeof node) {
            api_resp_error(rs, 404, "not_found", "unknown drain action %.200s", sub);
            return;
        }
        memcpy(node, sub, (size_t)(sl - sub));
        node[sl - sub] = 0;
        action = sl + 1;
        if (!strcmp(action, "approve"))
            rc = drain_approve(d, node, who, now);
        else if (!strcmp(action, "cancel"))
            rc = drain_cancel(d, node, who, now);
        else if (!strcmp(action, "uncordon"))
            rc = drain_uncordon(d, node, who, now);
        else {
            api_resp_error(rs, 404, "not_found",
                           "unknown drain action %.100s (approve, cancel, "
                           "uncordon)",
                           action);
            return;
        }
    }
    if (rc == DRAIN_ENOTFOUND) {
        api_resp_error(rs, 404, "not_found", "node %.200s is not known to the drain controller",
                       node);
        return;
    }
    if (rc == DRAIN_ESTATE) {
        api_resp_error(rs, 409, "conflict", "node %.200s: %s (state %s)", node, drain_strerror(rc),
                       drain_node_state(d, node) ? drain_node_state(d, node) : "?");
        return;
    }
    if (rc) {
        api_resp_error(rs, 500, "internal", "%s", drain_strerror(rc));
        return;
    }
    alert_runner_kick(atomic_load(&s->alerting));
    api_log(API_LOG_INFO, "drain admin action", "action=%s node=%s", action, *node ? node : "-");
    rs->code = 200;
    rs->ctype = "application/json";
    char head[200];
    int hl =
        snprintf(head, sizeof head, "{\"status\":\"success\",\"data\":{\"action\":\"%s\"", action);
    if (tbuf_put(&rs->body, head, (size_t)hl) ||
        (*node &&
         (tbuf_put(&rs->body, ",\"node\":\"", 9) ||
          api_json_escape(&rs->body, node, strlen(node)) || tbuf_put(&rs->body, "\"", 1))) ||
        tbuf_put(&rs->body, "}}\n", 3))
        api_resp_error(rs, 500, "internal", "out of memory");
}
