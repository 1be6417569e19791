/* alerts.c — alerting endpoints of the server (alert/ does the work):
 *
 *   GET  /api/v1/rules    rule groups, health, alerts (Prometheus format)  read
 *   GET  /api/v1/alerts   pending and firing alerts (Prometheus format)    read
 *   POST /-/reload        re-read config file, rule files, drain policy    admin
 *
 * and the augur_notifications_* / augur_drain_* / augur_rule_* metrics. */
#include "api/api_int.h"

#include <stdio.h>
#include <string.h>

#include "alert/alert.h"

void api_server_set_alerting(api_server_t *s, struct alert_runner *r)
{
    if (s) atomic_store(&s->alerting, r);
}

int api_alerting_metrics_render(api_server_t *s, tbuf_t *out)
{
    return alert_runner_metrics_render(atomic_load(&s->alerting), out);
}

void api_handle_alerting(api_req_t *r, api_resp_t *rs)
{
    api_server_t *s = r->s;
    alert_runner_t *ar = atomic_load(&s->alerting);
    if (!ar) {
        api_resp_error(rs, 503, "unavailable", "alerting is not running");
        return;
    }
    rs->ctype = "application/json";
    rs->code = 200;
    int rc = 0;
    if (r->route == API_R_RULES)
        rc = alert_engine_rules_json(alert_runner_engine(ar), &rs->body);
    else if (r->route == API_R_ALERTS)
        rc = alert_engine_alerts_json(alert_runner_engine(ar), &rs->body);
    else { /* API_R_RELOAD */
        char err[2048] = "";
        pthread_mutex_lock(&s->admin_mu);
        rc = alert_runner_reload(ar, err, sizeof err);
        pthread_mutex_unlock(&s->admin_mu);
        if (rc == ALERT_ENOMEM) {
            api_resp_error(rs, 503, "unavailable", "out of memory");
            return;
        }
        if (rc) {
            char q[2100];
            api_log(API_LOG_ERROR, "reload failed, previous configuration kept", "err=%s",
                    api_log_quote(q, sizeof q, err, strlen(err)));
            api_resp_error(rs, 500, "reload_failed", "%s", err);
            return;
        }
        api_log(API_LOG_INFO, "configuration reloaded", "via=%s", "http");
        static const char ok[] = "{\"status\":\"success\"}\n";
        rc = tbuf_put(&rs->body, ok, sizeof ok - 1);
    }
    if (rc) api_resp_error(rs, 500, "internal", "out of memory");
}
