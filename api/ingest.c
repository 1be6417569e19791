/* ingest.c — POST /api/v1/write (remote write 1.0/2.0) and
 * POST /api/v1/import/prometheus (text exposition / OpenMetrics).
 *
 * Both end in ingest_append(): drop samples too far in the future, append
 * the rest with tsdb_append() (durable when it returns), count every
 * outcome, and answer 204 when everything was stored (or was an identical
 * retry), 400 naming the first few refused series otherwise — the valid
 * samples of a 400 request are stored all the same. */
#include "api/api_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RW2_PROTO "io.prometheus.write.v2.Request"
#define RW1_PROTO "prometheus.WriteRequest"

/* ---- header checks ----------------------------------------------------- */

static int token_eq(const char *s, size_t len, const char *word)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') s++, len -= 2;
    return strlen(word) == len && !strncasecmp(s, word, len);
}

/* The value of parameter `key` in a Content-Type header, or NULL. */
static const char *ct_param(const char *ct, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = strchr(ct, ';');
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = strchr(p, ';');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > kl && !strncasecmp(p, key, kl) && p[kl] == '=') {
            *vlen = l - kl - 1;
            return p + kl + 1;
        }
        p = e;
    }
    return NULL;
}

static size_t media_len(const char *ct)
{
    const char *e = strchr(ct, ';');
    return e ? (size_t)(e - ct) : strlen(ct);
}

int api_write_precheck(api_req_t *r, struct MHD_Connection *c, api_resp_t *rs)
{
    const char *ct = api_req_header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *ce = api_req_header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
    const char *ver = api_req_header(c, "X-Prometheus-Remote-Write-Version");
    r->rw_version = 1;
    if (ct) {
        if (!token_eq(ct, media_len(ct), "application/x-protobuf")) {
            api_resp_error(rs, 415, "bad_data",
                           "unsupported Content-Type %.100s: remote write needs "
                           "application/x-protobuf (proto=" RW1_PROTO " or " RW2_PROTO ")",
                           ct);
            return -1;
        }
        size_t pl;
        const char *proto = ct_param(ct, "proto", &pl);
        if (proto) {
            if (token_eq(proto, pl, RW2_PROTO))
                r->rw_version = 2;
            else if (!token_eq(proto, pl, RW1_PROTO)) {
                api_resp_error(rs, 415, "bad_data",
                               "unsupported remote write message %.*s (supported: " RW1_PROTO
                               ", " RW2_PROTO ")",
                               (int)(pl > 100 ? 100 : pl), proto);
                return -1;
            }
        } else if (ver && ver[0] == '2' && ver[1] == '.') {
            r->rw_version = 2;
        }
    } else if (ver && ver[0] == '2' && ver[1] == '.') {
        r->rw_version = 2;
    }
    if (!ce || !token_eq(ce, strlen(ce), "snappy")) {
        api_resp_error(rs, 415, "bad_data",
                       "remote write needs Content-Encoding: snappy (block format), got %.60s",
                       ce ? ce : "none");
        return -1;
    }
    return 0;
}

int api_import_precheck(api_req_t *r, struct MHD_Connection *c, api_resp_t *rs)
{
    (void)r;
    const char *ce = api_req_header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && !token_eq(ce, strlen(ce), "identity")) {
        api_resp_error(rs, 415, "bad_data",
                       "unsupported Content-Encoding %.60s for the text format (send it "
                       "uncompressed)",
                       ce);
        return -1;
    }
    const char *ct = api_req_header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && (token_eq(ct, media_len(ct), "application/x-protobuf") ||
               token_eq(ct, media_len(ct), "application/vnd.google.protobuf"))) {
        api_resp_error(rs, 415, "bad_data",
                       "the protobuf exposition format is not supported: send text/plain or "
                       "application/openmetrics-text");
        return -1;
    }
    return 0;
}

/* ---- reports ----------------------------------------------------------- */

typedef struct {
    tbuf_t *b;
    unsigned n, max;
    uint64_t more;
} report_t;

static int report_begin(report_t *rp)
{
    if (rp->n >= rp->max) {
        rp->more++;
        return 0;
    }
    rp->n++;
    if (rp->b->len) tbuf_put(rp->b, "; ", 2);
    return 1;
}

static void put_str(tbuf_t *b, const char *s)
{
    tbuf_put(b, s, strlen(s));
}

static int utf8_valid(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p, *e = s + n;
    while (s < e) {
        unsigned c = *s++;
        int k = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (k < 0 || (c & 0xfe) == 0xc0 || e - s < k) return 0;
        for (int i = 0; i < k; i++)
            if ((s[i] & 0xc0) != 0x80) return 0;
        s += k;
    }
    return 1;
}

/* Bytes as in a PromQL string: \" \\ \n escaped, the bytes >= 0x80 of
 * invalid UTF-8 as \xHH (the answer is JSON and must stay valid UTF-8);
 * at most max bytes, then "...". */
static void put_escaped(tbuf_t *b, const char *p, size_t n, size_t max)
{
    size_t vl = n > max ? max : n;
    int bin = !utf8_valid(p, n);
    if (!bin) /* do not cut a character in two */
        while (vl < n && vl > 0 && ((unsigned char)p[vl] & 0xc0) == 0x80)
            vl--;
    for (size_t k = 0; k < vl; k++) {
        char ch = p[k];
        if (bin && (unsigned char)ch >= 0x80) {
            char hx[8];
            snprintf(hx, sizeof hx, "\\x%02x", (unsigned char)ch);
            put_str(b, hx);
        } else if (ch == '"' || ch == '\\') {
            tbuf_put(b, "\\", 1);
            tbuf_put(b, &ch, 1);
        } else if (ch == '\n') {
            tbuf_put(b, "\\n", 2);
        } else {
            tbuf_put(b, &ch, 1);
        }
    }
    if (vl < n) put_str(b, "...");
}

/* `{__name__="x", a="y"}`, cut at ~400 bytes. */
static void put_labels(tbuf_t *b, const tsdb_label_t *l, size_t n)
{
    size_t start = b->len;
    tbuf_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (b->len - start > 400) {
            put_str(b, ", ...");
            break;
        }
        if (i) tbuf_put(b, ", ", 2);
        put_escaped(b, l[i].name.ptr, l[i].name.len, 128);
        tbuf_put(b, "=\"", 2);
        put_escaped(b, l[i].value.ptr, l[i].value.len, 200);
        tbuf_put(b, "\"", 1);
    }
    tbuf_put(b, "}", 1);
}

/* ---- append ------------------------------------------------------------ */

static int ws_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static void add_reject(api_server_t *s, api_reject_t why, uint64_t n)
{
    if (n) atomic_fetch_add_explicit(&s->m.samples_rejected[why], n, memory_order_relaxed);
}

typedef struct {
    const char *what;         /* "series" or "line" */
    const uint32_t *position; /* request position (0-based) or line of each input series */
    int one_based;            /* positions printed +1 */
    uint64_t refused_before;  /* samples already refused by the decoder/parser */
    uint64_t written;         /* out: stored + identical retries */
} ingest_ctx_t;

/* Append `in` after removing samples past now + max_future. Fills rs: 204,
 * 400 (with the report that rp already holds plus the refusals here), or
 * 5xx when the store failed. */
static void ingest_append(api_req_t *r, api_ws_t *ws, tsdb_t *db, const tsdb_series_in_t *in,
                          size_t n, ingest_ctx_t *ix, report_t *rp, api_resp_t *rs)
{
    api_server_t *s = r->s;
    int64_t maxt = api_wall_ms() + s->cfg.max_future_ms;
    uint64_t total = 0, nfuture = 0;
    for (size_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < in[i].nsamples; k++) {
            total++;
            if (in[i].samples[k].t > maxt) nfuture++;
        }
    const tsdb_series_in_t *ser = in;
    size_t nser = n;
    const uint32_t *pos = ix->position;
    if (nfuture) {
        if (ws_grow((void **)&ws->fseries, &ws->fseries_cap, n, sizeof *ws->fseries) ||
            ws_grow((void **)&ws->fsamples, &ws->fsamples_cap, total - nfuture + 1,
                    sizeof *ws->fsamples)) {
            api_resp_error(rs, 503, "unavailable", "out of memory; retry later");
            api_resp_header(rs, "Retry-After", "1");
            return;
        }
        size_t cap_idx = ws->fseries_cap;
        uint32_t *np = realloc(ws->findex, cap_idx * sizeof *np);
        if (!np) {
            api_resp_error(rs, 503, "unavailable", "out of memory; retry later");
            api_resp_header(rs, "Retry-After", "1");
            return;
        }
        ws->findex = np;
        size_t ns = 0, o = 0;
        for (size_t i = 0; i < n; i++) {
            size_t first = o;
            uint32_t bad = 0;
            for (uint32_t k = 0; k < in[i].nsamples; k++) {
                if (in[i].samples[k].t > maxt)
                    bad++;
                else
                    ws->fsamples[o++] = in[i].samples[k];
            }
            if (bad && report_begin(rp)) {
                char tmp[96];
                snprintf(tmp, sizeof tmp, "%s %" PRIu32 " ", ix->what,
                         (ix->position ? ix->position[i] : (uint32_t)i) + (ix->one_based ? 1 : 0));
                put_str(&ws->msg, tmp);
                put_labels(&ws->msg, in[i].labels, in[i].nlabels);
                snprintf(tmp, sizeof tmp,
                         ": sample timestamp too far in the future (%" PRIu32
                         " samples after now + %" PRId64 " ms)",
                         bad, s->cfg.max_future_ms);
                put_str(&ws->msg, tmp);
            }
            if (o == first) continue;
            ws->fseries[ns] = in[i];
            ws->fseries[ns].samples = ws->fsamples + first;
            ws->fseries[ns].nsamples = (uint32_t)(o - first);
            ws->findex[ns] = ix->position ? ix->position[i] : (uint32_t)i;
            ns++;
        }
        ser = ws->fseries;
        nser = ns;
        pos = ws->findex;
        add_reject(s, API_REJ_FUTURE, nfuture);
    }
    if (ws_grow((void **)&ws->outcomes, &ws->outcomes_cap, total + 1, 1)) {
        api_resp_error(rs, 503, "unavailable", "out of memory; retry later");
        api_resp_header(rs, "Retry-After", "1");
        return;
    }
    tsdb_append_result_t res;
    memset(&res, 0, sizeof res);
    int rc = nser ? tsdb_append(db, ser, nser, ws->outcomes, &res) : 0;
    if (rc) {
        atomic_fetch_add(&s->m.append_errors, 1);
        const char *detail = tsdb_last_error_detail();
        char q[300];
        api_log(API_LOG_ERROR, "append failed", "err=%s detail=%s series=%zu",
                api_log_quote(q, sizeof q, tsdb_strerror(rc), strlen(tsdb_strerror(rc))),
                api_log_quote(q + 150, 150, detail, strlen(detail)), nser);
        if (rc == TSDB_ECLOSED || rc == TSDB_ENOSPC || rc == TSDB_EFULL || rc == TSDB_ENOMEM) {
            api_resp_error(rs, 503, "unavailable", "store cannot take writes now: %s%s%s",
                           tsdb_strerror(rc), *detail ? ": " : "", detail);
            api_resp_header(rs, "Retry-After", "30");
        } else {
            api_resp_error(rs, 500, "internal", "store append failed: %s%s%s", tsdb_strerror(rc),
                           *detail ? ": " : "", detail);
        }
        return;
    }
    api_detect_observe(atomic_load_explicit(&s->det, memory_order_acquire), ser, nser,
                       ws->outcomes);
    atomic_fetch_add_explicit(&s->m.samples_ingested, res.stored, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->m.samples_duplicate, res.duplicate, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->m.series_created, res.series_created, memory_order_relaxed);
    add_reject(s, API_REJ_CONFLICT, res.conflict);
    add_reject(s, API_REJ_TOO_OLD, res.too_old);
    add_reject(s, API_REJ_INVALID, res.invalid);
    ix->written = res.stored + res.duplicate;
    if (res.conflict || res.too_old || res.invalid) {
        size_t oi = 0;
        for (size_t i = 0; i < nser; i++) {
            uint32_t cnt[5] = {0, 0, 0, 0, 0};
            for (uint32_t k = 0; k < ser[i].nsamples; k++) {
                uint8_t o = ws->outcomes[oi++];
                if (o < 5) cnt[o]++;
            }
            static const char *const why[5] = {
                NULL, NULL,
                "duplicate sample for timestamp (a different value is already stored there)",
                "out of order sample (older than the out-of-order window)", "invalid sample"};
            for (int w = 2; w < 5; w++) {
                if (!cnt[w] || !report_begin(rp)) continue;
                char tmp[200];
                snprintf(tmp, sizeof tmp, "%s %" PRIu32 " ", ix->what,
                         (pos ? pos[i] : (uint32_t)i) + (ix->one_based ? 1 : 0));
                put_str(&ws->msg, tmp);
                put_labels(&ws->msg, ser[i].labels, ser[i].nlabels);
                snprintf(tmp, sizeof tmp, ": %s (%" PRIu32 " of %" PRIu32 " samples)", why[w],
                         cnt[w], ser[i].nsamples);
                put_str(&ws->msg, tmp);
            }
        }
    }
    uint64_t refused = ix->refused_before + nfuture + res.conflict + res.too_old + res.invalid;
    if (!refused && !rp->n && !rp->more) {
        rs->code = 204;
        return;
    }
    /* 400: the head of the message says what happened to the request. */
    tbuf_t *b = &ws->msg;
    char head[256];
    int hl = snprintf(
        head, sizeof head,
        "%" PRIu64 " samples refused, %" PRIu64 " stored, %" PRIu64 " already present: ", refused,
        res.stored, res.duplicate);
    if (rp->more) {
        char tail[64];
        snprintf(tail, sizeof tail, "; and %" PRIu64 " more", rp->more);
        put_str(b, tail);
    }
    /* Prefix the head: shift the report right. */
    if (hl > 0 && !tbuf_reserve(b, (size_t)hl)) {
        memmove(b->p + hl, b->p, b->len);
        memcpy(b->p, head, (size_t)hl);
        b->len += (size_t)hl;
    }
    api_resp_error_n(rs, 400, "bad_data", (const char *)b->p, b->len);
    if (api_log_enabled(API_LOG_DEBUG)) {
        char q[600];
        api_log(API_LOG_DEBUG, "write partly refused", "handler=%s detail=%s",
                api_handler_name(r->h), api_log_quote(q, sizeof q, (const char *)b->p, b->len));
    }
}

/* ---- remote write ------------------------------------------------------- */

static void rw_headers(api_resp_t *rs, uint64_t written)
{
    api_resp_header(rs, "X-Prometheus-Remote-Write-Samples-Written", "%" PRIu64, written);
    api_resp_header(rs, "X-Prometheus-Remote-Write-Histograms-Written", "0");
    api_resp_header(rs, "X-Prometheus-Remote-Write-Exemplars-Written", "0");
}

void api_handle_write(api_req_t *r, struct MHD_Connection *c, api_ws_t *ws, tsdb_t *db,
                      api_resp_t *rs)
{
    (void)c;
    api_server_t *s = r->s;
    int v2 = r->rw_version == 2;
    atomic_fetch_add_explicit(&s->m.rw_requests[v2 ? 2 : 1], 1, memory_order_relaxed);
    rw_request_t q;
    int rc = v2 ? rw_decode_v2(ws->rw, r->body.p, r->body.len, RW_ENC_SNAPPY, &q)
                : rw_decode_v1(ws->rw, r->body.p, r->body.len, RW_ENC_SNAPPY, &q);
    if (rc) {
        size_t off = 0;
        const char *detail = rw_decoder_errmsg(ws->rw, &off);
        unsigned code = rc == RW_ETOOLARGE ? 413 : rc == RW_ENOMEM ? 503 : 400;
        if (rc == RW_ETOOLARGE) atomic_fetch_add(&s->m.bodies_too_large, 1);
        api_resp_error(rs, code, code == 503 ? "unavailable" : "bad_data",
                       "remote write %s request: %s%s%.400s%s", v2 ? "2.0" : "1.0", rw_strerror(rc),
                       *detail ? " (" : "", detail, *detail ? ")" : "");
        if (code == 503) api_resp_header(rs, "Retry-After", "1");
        if (v2) rw_headers(rs, 0);
        char qd[300];
        api_log(API_LOG_DEBUG, "remote write refused", "code=%u detail=%s", code,
                api_log_quote(qd, sizeof qd, detail, strlen(detail)));
        return;
    }
    atomic_fetch_add_explicit(&s->m.histograms_dropped, q.nhistograms, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->m.exemplars_dropped, q.nexemplars, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->m.metadata_received, q.nmetadata, memory_order_relaxed);
    ws->msg.len = 0;
    report_t rp = {&ws->msg, 0, s->cfg.max_reported_errors, 0};
    for (size_t i = 0; i < q.nrejects; i++) {
        const rw_reject_t *j = &q.rejects[i];
        add_reject(s, (api_reject_t)j->reason, j->nsamples);
        if (report_begin(&rp)) {
            /* Reason first: the label set may be cut. */
            char line[200];
            snprintf(line, sizeof line, "series %" PRIu32 ": %s", j->index,
                     rw_reason_str(j->reason));
            put_str(&ws->msg, line);
            if (j->label.len) {
                put_str(&ws->msg, " (label \"");
                put_escaped(&ws->msg, j->label.ptr, j->label.len, 128);
                put_str(&ws->msg, "\")");
            }
            put_str(&ws->msg, " ");
            put_labels(&ws->msg, j->labels, j->nlabels);
        }
    }
    ingest_ctx_t ix = {"series", q.series_index, 0, q.nsamples_rejected, 0};
    ingest_append(r, ws, db, q.series, q.nseries, &ix, &rp, rs);
    if (v2) rw_headers(rs, ix.written);
}

/* ---- text import --------------------------------------------------------- */

void api_handle_import(api_req_t *r, struct MHD_Connection *c, api_ws_t *ws, tsdb_t *db,
                       api_resp_t *rs)
{
    api_server_t *s = r->s;
    const char *ct = api_req_header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
    textparse_options_t o;
    textparse_options_init(&o);
    o.dialect = textparse_dialect_detect(ct, ct ? strlen(ct) : 0);
    o.default_ts_ms = api_wall_ms();
    o.max_body_bytes = s->cfg.max_request_bytes;
    o.max_samples = s->cfg.max_samples_per_request;
    o.max_labels_per_series = s->cfg.max_labels_per_series;
    o.max_label_name_len = s->cfg.max_label_name_len;
    o.max_label_value_len = s->cfg.max_label_value_len;
    o.max_errors = s->cfg.max_reported_errors;
    /* ?extra_label=name=value, repeatable. */
    uint32_t nextra = 0;
    for (size_t i = 0;; i++) {
        const char *v = api_req_param(r, "extra_label", i);
        if (!v) break;
        if (nextra >= sizeof ws->extra / sizeof ws->extra[0]) {
            api_resp_error(rs, 400, "bad_data", "more than %zu extra_label parameters",
                           sizeof ws->extra / sizeof ws->extra[0]);
            return;
        }
        if (textparse_extra_label_parse(v, strlen(v), &ws->extra[nextra])) {
            api_resp_error(rs, 400, "bad_data",
                           "invalid extra_label %.200s: want name=value with a valid label name",
                           v);
            return;
        }
        nextra++;
    }
    o.extra_labels = ws->extra;
    o.nextra_labels = nextra;
    textparse_result_t tr;
    int rc = textparse_parse(ws->tp, (const char *)r->body.p, r->body.len, &o, &tr);
    if (rc) {
        unsigned code = rc == TEXTPARSE_ETOOLARGE || rc == TEXTPARSE_ELIMIT ? 413
                        : rc == TEXTPARSE_ENOMEM                            ? 503
                                                                            : 400;
        if (code == 413) atomic_fetch_add(&s->m.bodies_too_large, 1);
        api_resp_error(rs, code, code == 503 ? "unavailable" : "bad_data", "text import: %s%s%s",
                       textparse_strerror(rc), tr.nerrors ? ": " : "",
                       tr.nerrors ? tr.errors[0].msg : "");
        if (code == 503) api_resp_header(rs, "Retry-After", "1");
        return;
    }
    atomic_fetch_add_explicit(&s->m.metadata_received, tr.nmeta, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->m.exemplars_dropped, tr.nexemplars, memory_order_relaxed);
    add_reject(s, API_REJ_PARSE_ERROR, tr.nrejected);
    ws->msg.len = 0;
    report_t rp = {&ws->msg, 0, s->cfg.max_reported_errors, 0};
    for (size_t i = 0; i < tr.nerrors; i++)
        if (report_begin(&rp)) put_str(&ws->msg, tr.errors[i].msg);
    rp.more += tr.nrejected > tr.nerrors ? tr.nrejected - tr.nerrors : 0;
    ingest_ctx_t ix = {"line", tr.series_line, 0, tr.nrejected, 0};
    ingest_append(r, ws, db, tr.series, tr.nseries, &ix, &rp, rs);
}
