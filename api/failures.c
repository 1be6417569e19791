/* failures.c — POST/GET /api/v1/failures: record and list ground-truth
 * device failure events (ingest/failures.h has the storage model).
 *
 *   POST /api/v1/failures     body: one JSON event or an array of them
 *                             {"kind":"disk","instance":"node1","device":"sda",
 *                              "serial":"S1","time":"2024-03-01T12:00:00Z",
 *                              "reason":"reallocated sectors"}
 *                             → 200 {"status":"success","data":{"received":N,
 *                                    "stored":S,"already_present":D}}
 *                             write role (admin grants it too)
 *   GET  /api/v1/failures?kind=&instance=&device=&since=&until=
 *                             → 200 {"status":"success","data":[events…]}
 *                             read role
 *
 * Errors: 400 malformed JSON or an invalid event (nothing of the request is
 * stored then), 400 bad parameters, 503 the store cannot take writes. */
#include "api/api_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/failures.h"

static void handle_post(api_req_t *r, tsdb_t *db, api_resp_t *rs)
{
    api_server_t *s = r->s;
    json_doc_t doc;
    json_doc_init(&doc);
    failure_event_t *ev = NULL;
    size_t n = 0;
    char err[512];
    int rc =
        failures_parse_json(&doc, (const char *)r->body.p, r->body.len, &ev, &n, err, sizeof err);
    if (rc == FAILURES_ENOMEM) {
        api_resp_error(rs, 503, "unavailable", "out of memory; retry later");
        api_resp_header(rs, "Retry-After", "1");
        goto out;
    }
    if (rc) {
        api_resp_error(rs, 400, "bad_data", "failure events: %s", err);
        goto out;
    }
    if (!n) {
        api_resp_error(rs, 400, "bad_data", "failure events: empty request");
        goto out;
    }
    int64_t maxt = api_wall_ms() + s->cfg.max_future_ms;
    for (size_t i = 0; i < n; i++)
        if (ev[i].t_ms > maxt) {
            api_resp_error(rs, 400, "bad_data",
                           "failure events: event %zu: time is in the future (more than %" PRId64
                           " ms ahead of the server clock)",
                           i + 1, s->cfg.max_future_ms);
            goto out;
        }
    tsdb_append_result_t res;
    memset(&res, 0, sizeof res);
    rc = failures_append(db, ev, n, &res, err, sizeof err);
    if (rc == FAILURES_EINVAL) {
        api_resp_error(rs, 400, "bad_data", "failure events: %s", err);
        goto out;
    }
    if (rc) {
        atomic_fetch_add(&s->m.append_errors, 1);
        api_log(API_LOG_ERROR, "failure events not stored", "detail=%s", err);
        api_resp_error(rs, 503, "unavailable", "failure events not stored: %s", err);
        api_resp_header(rs, "Retry-After", "30");
        goto out;
    }
    atomic_fetch_add_explicit(&s->m.samples_ingested, res.stored, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->m.series_created, res.series_created, memory_order_relaxed);
    if (res.conflict || res.too_old || res.invalid) {
        api_resp_error(rs, 400, "bad_data",
                       "failure events: %" PRIu64 " refused by the store (out of order or "
                       "invalid), %" PRIu64 " stored, %" PRIu64 " already present",
                       res.conflict + res.too_old + res.invalid, res.stored, res.duplicate);
        goto out;
    }
    char body[200];
    int bl = snprintf(body, sizeof body,
                      "{\"status\":\"success\",\"data\":{\"received\":%zu,\"stored\":%" PRIu64
                      ",\"already_present\":%" PRIu64 "}}\n",
                      n, res.stored, res.duplicate);
    rs->code = 200;
    rs->ctype = "application/json";
    rs->body.len = 0;
    if (tbuf_put(&rs->body, body, (size_t)bl)) api_resp_error(rs, 500, "internal", "out of memory");
out:
    free(ev);
    json_doc_free(&doc);
}

static int time_param(api_req_t *r, const char *name, int64_t *out, api_resp_t *rs)
{
    const char *v = api_req_param(r, name, 0);
    if (!v || !*v) return 0;
    if (ingest_time_parse(v, strlen(v), out)) {
        api_resp_error(rs, 400, "bad_data",
                       "invalid parameter %s=%.80s: want RFC 3339 or Unix seconds", name, v);
        return -1;
    }
    return 0;
}

static void handle_get(api_req_t *r, tsdb_t *db, api_resp_t *rs)
{
    failure_filter_t f = {NULL, NULL, NULL, INT64_MIN, INT64_MAX};
    f.kind = api_req_param(r, "kind", 0);
    f.instance = api_req_param(r, "instance", 0);
    f.device = api_req_param(r, "device", 0);
    if (f.kind && *f.kind && strcmp(f.kind, "disk") && strcmp(f.kind, "gpu") &&
        strcmp(f.kind, "node")) {
        api_resp_error(rs, 400, "bad_data", "invalid parameter kind=%.40s: want disk, gpu or node",
                       f.kind);
        return;
    }
    if (time_param(r, "since", &f.since, rs) || time_param(r, "until", &f.until, rs)) return;
    if (f.since > f.until) {
        api_resp_error(rs, 400, "bad_data", "since is after until");
        return;
    }
    tsdb_reader_t *rd = NULL;
    failure_list_t l;
    memset(&l, 0, sizeof l);
    int rc = tsdb_reader_open(db, &rd);
    const char *why = rc ? tsdb_strerror(rc) : NULL;
    if (!rc && (rc = failures_list(rd, &f, &l)) != 0) why = failures_strerror(rc);
    tsdb_reader_close(rd);
    if (rc) {
        api_resp_error(rs, 503, "unavailable", "cannot read failure events: %s", why);
        api_resp_header(rs, "Retry-After", "5");
        return;
    }
    rs->code = 200;
    rs->ctype = "application/json";
    rs->body.len = 0;
    static const char head[] = "{\"status\":\"success\",\"data\":";
    if (tbuf_put(&rs->body, head, sizeof head - 1) || failures_json_write(&rs->body, &l) ||
        tbuf_put(&rs->body, "}\n", 2))
        api_resp_error(rs, 500, "internal", "out of memory");
    failure_list_free(&l);
}

void api_handle_failures(api_req_t *r, tsdb_t *db, api_resp_t *rs)
{
    if (!strcmp(r->method, "POST"))
        handle_post(r, db, rs);
    else
        handle_get(r, db, rs);
}
