/* failures.c — failure events as samples of augur_failure_event (see failures.h). */
#include "ingest/failures.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *failures_strerror(int err)
{
    switch (err) {
#define FAILURES_ERR_STR_(name, code, msg)                                                         \
    case code:                                                                                     \
        return msg;
        FAILURES_ERRNO_MAP(FAILURES_ERR_STR_)
#undef FAILURES_ERR_STR_
    }
    return "unknown error";
}

static int present(const char *s)
{
    return s && *s;
}

static int utf8_valid(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p, *e = s + n;
    while (s < e) {
        unsigned c = *s++;
        if (c < 0x80) {
            if (c < 0x20 && c != '\t') return 0; /* no control characters in labels */
            continue;
        }
        int k = (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (k < 0 || (c & 0xfe) == 0xc0 || e - s < k) return 0;
        for (int i = 0; i < k; i++)
            if ((s[i] & 0xc0) != 0x80) return 0;
        s += k;
    }
    return 1;
}

static int field_check(const char *name, const char *v, size_t max, char *err, size_t errcap)
{
    if (!present(v)) return 0;
    size_t l = strlen(v);
    if (l > max) {
        snprintf(err, errcap, "%s is longer than %zu bytes", name, max);
        return FAILURES_EINVAL;
    }
    if (!utf8_valid(v, l)) {
        snprintf(err, errcap, "%s is not valid UTF-8 text (or holds control characters)", name);
        return FAILURES_EINVAL;
    }
    return 0;
}

int failure_event_check(const failure_event_t *e, char *err, size_t errcap)
{
    if (!e) return FAILURES_EINVAL;
    if (!present(e->kind)) {
        snprintf(err, errcap, "kind is missing (disk, gpu or node)");
        return FAILURES_EINVAL;
    }
    if (strcmp(e->kind, "disk") && strcmp(e->kind, "gpu") && strcmp(e->kind, "node")) {
        snprintf(err, errcap, "kind \"%.40s\" is not disk, gpu or node", e->kind);
        return FAILURES_EINVAL;
    }
    if (!present(e->instance)) {
        snprintf(err, errcap, "instance is missing");
        return FAILURES_EINVAL;
    }
    if (!strcmp(e->kind, "disk") && !present(e->device) && !present(e->serial)) {
        snprintf(err, errcap, "a disk failure needs device or serial");
        return FAILURES_EINVAL;
    }
    if (!strcmp(e->kind, "gpu") && !present(e->device) && !present(e->uuid)) {
        snprintf(err, errcap, "a gpu failure needs device or uuid");
        return FAILURES_EINVAL;
    }
    if (e->t_ms == INT64_MIN) {
        snprintf(err, errcap, "time is missing");
        return FAILURES_EINVAL;
    }
    if (e->t_ms < 0 || e->t_ms > INT64_C(253402300799999)) {
        snprintf(err, errcap, "time is out of range (1970 to 9999)");
        return FAILURES_EINVAL;
    }
    int rc;
    if ((rc = field_check("instance", e->instance, FAILURE_MAX_FIELD_LEN, err, errcap)) ||
        (rc = field_check("device", e->device, FAILURE_MAX_FIELD_LEN, err, errcap)) ||
        (rc = field_check("serial", e->serial, FAILURE_MAX_FIELD_LEN, err, errcap)) ||
        (rc = field_check("uuid", e->uuid, FAILURE_MAX_FIELD_LEN, err, errcap)) ||
        (rc = field_check("reason", e->reason, FAILURE_MAX_REASON_LEN, err, errcap)))
        return rc;
    return 0;
}

static void lab(tsdb_label_t *l, uint32_t *n, const char *name, const char *v)
{
    if (!present(v)) return;
    l[*n].name.ptr = name;
    l[*n].name.len = (uint32_t)strlen(name);
    l[*n].value.ptr = v;
    l[*n].value.len = (uint32_t)strlen(v);
    (*n)++;
}

uint32_t failure_event_labels(const failure_event_t *e, tsdb_label_t *out)
{
    uint32_t n = 0;
    lab(out, &n, "__name__", FAILURE_METRIC);
    lab(out, &n, "kind", e->kind);
    lab(out, &n, "instance", e->instance);
    lab(out, &n, "device", e->device);
    lab(out, &n, "serial", e->serial);
    lab(out, &n, "UUID", e->uuid);
    lab(out, &n, "reason", e->reason);
    return n;
}

int failure_event_add(ingest_batch_t *b, const failure_event_t *e)
{
    failure_event_t c = *e;
    const char **f[] = {&c.kind, &c.instance, &c.device, &c.serial, &c.uuid, &c.reason};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (present(*f[i]) && !(*f[i] = ingest_batch_str(b, *f[i], strlen(*f[i])))) return -1;
    tsdb_label_t l[FAILURE_MAX_LABELS];
    uint32_t n = failure_event_labels(&c, l);
    return ingest_batch_add(b, l, n, c.t_ms, 1.0);
}

int failures_append(tsdb_t *db, const failure_event_t *ev, size_t n, tsdb_append_result_t *res,
                    char *err, size_t errcap)
{
    char why[300];
    for (size_t i = 0; i < n; i++)
        if (failure_event_check(&ev[i], why, sizeof why)) {
            if (n > 1)
                snprintf(err, errcap, "event %zu: %s", i + 1, why);
            else
                snprintf(err, errcap, "%s", why);
            return FAILURES_EINVAL;
        }
    if (!n) return 0;
    tsdb_label_t *labels = malloc(n * FAILURE_MAX_LABELS * sizeof *labels);
    tsdb_series_in_t *ser = malloc(n * sizeof *ser);
    tsdb_sample_t *smp = malloc(n * sizeof *smp);
    if (!labels || !ser || !smp) {
        free(labels);
        free(ser);
        free(smp);
        snprintf(err, errcap, "out of memory");
        return FAILURES_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ser[i].labels = labels + i * FAILURE_MAX_LABELS;
        ser[i].nlabels = failure_event_labels(&ev[i], labels + i * FAILURE_MAX_LABELS);
        smp[i].t = ev[i].t_ms;
        smp[i].v = 1.0;
        ser[i].samples = &smp[i];
        ser[i].nsamples = 1;
    }
    int rc = tsdb_append(db, ser, n, NULL, res);
    free(labels);
    free(ser);
    free(smp);
    if (rc) {
        const char *d = tsdb_last_error_detail();
        snprintf(err, errcap, "%s%s%s", tsdb_strerror(rc), *d ? ": " : "", d);
        return rc == TSDB_ENOMEM ? FAILURES_ENOMEM : FAILURES_ESTORE;
    }
    return 0;
}

/* ---- JSON in ----------------------------------------------------------- */

static int event_from_json(const json_doc_t *d, uint32_t obj, failure_event_t *e, char *err,
                           size_t errcap)
{
    memset(e, 0, sizeof *e);
    e->t_ms = INT64_MIN;
    if (d->nodes[obj].type != JSON_OBJECT) {
        snprintf(err, errcap, "an event must be a JSON object");
        return FAILURES_EINVAL;
    }
    uint32_t end = d->nodes[obj].next;
    for (uint32_t k = obj + 1; k < end; k = d->nodes[k].next) {
        const json_node_t *n = &d->nodes[k];
        const char *key = json_key(d, n);
        const char **dst = NULL;
        if (!strcmp(key, "kind"))
            dst = &e->kind;
        else if (!strcmp(key, "instance"))
            dst = &e->instance;
        else if (!strcmp(key, "device"))
            dst = &e->device;
        else if (!strcmp(key, "serial") || !strcmp(key, "serial_number"))
            dst = &e->serial;
        else if (!strcmp(key, "uuid") || !strcmp(key, "UUID"))
            dst = &e->uuid;
        else if (!strcmp(key, "reason"))
            dst = &e->reason;
        if (dst) {
            if (n->type == JSON_NULL) continue;
            if (n->type != JSON_STRING) {
                snprintf(err, errcap, "%s must be a string", key);
                return FAILURES_EINVAL;
            }
            if (strlen(json_str(d, n)) != n->len) {
                snprintf(err, errcap, "%s holds a NUL character", key);
                return FAILURES_EINVAL;
            }
            *dst = json_str(d, n);
            continue;
        }
        if (!strcmp(key, "time")) {
            const char *s = n->type == JSON_STRING   ? json_str(d, n)
                            : n->type == JSON_NUMBER ? d->strings + n->str
                                                     : NULL;
            size_t sl = s ? n->len : 0;
            if (!s || ingest_time_parse(s, sl, &e->t_ms)) {
                snprintf(err, errcap,
                         "time must be RFC 3339 (2024-03-01T12:00:00Z) or Unix seconds");
                return FAILURES_EINVAL;
            }
            continue;
        }
        snprintf(err, errcap,
                 "unknown member \"%.60s\" (known: kind, instance, device, serial, uuid, time, "
                 "reason)",
                 key);
        return FAILURES_EINVAL;
    }
    return failure_event_check(e, err, errcap);
}

int failures_parse_json(json_doc_t *doc, const char *p, size_t len, failure_event_t **events,
                        size_t *n, char *err, size_t errcap)
{
    *events = NULL;
    *n = 0;
    int rc = json_parse(doc, p, len);
    if (rc == JSON_ENOMEM) {
        snprintf(err, errcap, "out of memory");
        return FAILURES_ENOMEM;
    }
    if (rc) {
        snprintf(err, errcap, "line %u column %u: %s (%s)", doc->err_line, doc->err_col,
                 json_strerror(rc), doc->err_msg ? doc->err_msg : "");
        return FAILURES_EJSON;
    }
    const json_node_t *root = &doc->nodes[0];
    size_t cnt = root->type == JSON_ARRAY ? root->nkids : 1;
    if (root->type != JSON_ARRAY && root->type != JSON_OBJECT) {
        snprintf(err, errcap, "expected an event object or an array of them");
        return FAILURES_EINVAL;
    }
    if (cnt > FAILURE_MAX_EVENTS) {
        snprintf(err, errcap, "more than %d events in one request", FAILURE_MAX_EVENTS);
        return FAILURES_EINVAL;
    }
    if (!cnt) return 0;
    failure_event_t *ev = calloc(cnt, sizeof *ev);
    if (!ev) {
        snprintf(err, errcap, "out of memory");
        return FAILURES_ENOMEM;
    }
    size_t i = 0;
    char why[300];
    if (root->type == JSON_OBJECT) {
        if ((rc = event_from_json(doc, 0, &ev[0], why, sizeof why))) {
            snprintf(err, errcap, "%s", why);
            free(ev);
            return rc;
        }
        i = 1;
    } else {
        for (uint32_t k = 1; k < root->next; k = doc->nodes[k].next, i++)
            if ((rc = event_from_json(doc, k, &ev[i], why, sizeof why))) {
                snprintf(err, errcap, "event %zu: %s", i + 1, why);
                free(ev);
                return rc;
            }
    }
    *events = ev;
    *n = i;
    return 0;
}

/* ---- listing ------------------------------------------------------------ */

void failure_list_free(failure_list_t *l)
{
    if (!l) return;
    free(l->v);
    tbuf_free(&l->strings);
    memset(l, 0, sizeof *l);
}

/* Events collected with string offsets (+1; 0 = absent) before the string
 * buffer stops moving. */
typedef struct {
    size_t off[6]; /* kind instance device serial uuid reason */
    int64_t t;
} raw_ev_t;

static size_t put_str(tbuf_t *b, const tsdb_label_t *l)
{
    size_t off = b->len;
    if (tbuf_put(b, l->value.ptr, l->value.len) || tbuf_put(b, "", 1)) return 0;
    return off + 1;
}

static int cmp_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int ev_cmp(const void *pa, const void *pb)
{
    const failure_event_t *a = pa, *b = pb;
    if (a->t_ms != b->t_ms) return a->t_ms < b->t_ms ? -1 : 1;
    int c;
    if ((c = cmp_str(a->instance, b->instance))) return c;
    if ((c = cmp_str(a->device, b->device))) return c;
    if ((c = cmp_str(a->kind, b->kind))) return c;
    if ((c = cmp_str(a->serial, b->serial))) return c;
    if ((c = cmp_str(a->uuid, b->uuid))) return c;
    return cmp_str(a->reason, b->reason);
}

int failures_list(tsdb_reader_t *r, const failure_filter_t *f, failure_list_t *out)
{
    memset(out, 0, sizeof *out);
    tsdb_matcher_t m[4];
    size_t nm = 0;
    m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "__name__", FAILURE_METRIC};
    if (f && present(f->kind)) m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "kind", f->kind};
    if (f && present(f->instance))
        m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "instance", f->instance};
    if (f && present(f->device)) m[nm++] = (tsdb_matcher_t){TSDB_MATCH_EQ, "device", f->device};
    int64_t mint = f ? f->since : INT64_MIN, maxt = f ? f->until : INT64_MAX;
    tsdb_sids_t sids = {0};
    int rc = tsdb_select(r, m, nm, mint, maxt, &sids);
    if (rc) return rc == TSDB_ENOMEM ? FAILURES_ENOMEM : FAILURES_ESTORE;
    raw_ev_t *raw = NULL;
    size_t nraw = 0, rcap = 0;
    int err = 0;
    static const char *const names[6] = {"kind", "instance", "device", "serial", "UUID", "reason"};
    for (size_t i = 0; i < sids.n && !err; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(r, sids.ids[i], &l, &nl)) continue; /* deleted meanwhile */
        raw_ev_t proto;
        memset(&proto, 0, sizeof proto);
        for (size_t k = 0; k < nl; k++)
            for (int j = 0; j < 6; j++)
                if (l[k].name.len == strlen(names[j]) &&
                    !memcmp(l[k].name.ptr, names[j], l[k].name.len)) {
                    proto.off[j] = put_str(&out->strings, &l[k]);
                    if (!proto.off[j]) err = FAILURES_ENOMEM;
                }
        tsdb_iter_t *it = NULL;
        if ((rc = tsdb_iter_open(r, sids.ids[i], mint, maxt, &it))) {
            err = rc == TSDB_ENOMEM ? FAILURES_ENOMEM : FAILURES_ESTORE;
            break;
        }
        const tsdb_sample_t *s;
        size_t ns;
        while ((rc = tsdb_iter_next(it, &s, &ns)) != 0) {
            if (rc < 0) {
                if (rc == TSDB_ECORRUPT) continue;
                err = FAILURES_ESTORE;
                break;
            }
            for (size_t k = 0; k < ns; k++) {
                uint64_t bits;
                memcpy(&bits, &s[k].v, sizeof bits);
                if (bits == TSDB_STALE_NAN_BITS) continue;
                if (nraw == rcap) {
                    size_t nc = rcap ? rcap * 2 : 64;
                    raw_ev_t *nr = realloc(raw, nc * sizeof *nr);
                    if (!nr) {
                        err = FAILURES_ENOMEM;
                        break;
                    }
                    raw = nr;
                    rcap = nc;
                }
                raw[nraw] = proto;
                raw[nraw++].t = s[k].t;
            }
            if (err) break;
        }
        tsdb_iter_close(it);
    }
    tsdb_sids_free(&sids);
    if (!err && nraw) {
        out->v = malloc(nraw * sizeof *out->v);
        if (!out->v) err = FAILURES_ENOMEM;
    }
    if (err) {
        free(raw);
        failure_list_free(out);
        return err;
    }
    const char *base = (const char *)out->strings.p;
    for (size_t i = 0; i < nraw; i++) {
        const char *v[6];
        for (int j = 0; j < 6; j++)
            v[j] = raw[i].off[j] ? base + raw[i].off[j] - 1 : NULL;
        out->v[i] = (failure_event_t){v[0], v[1], v[2], v[3], v[4], v[5], raw[i].t};
    }
    out->n = out->cap = nraw;
    free(raw);
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, ev_cmp);
    return 0;
}

/* ---- JSON out ------------------------------------------------------------ */

static int json_esc(tbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            if (tbuf_put(b, e, 2)) return -1;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (tbuf_put(b, e, 6)) return -1;
        } else if (tbuf_put(b, s, 1)) {
            return -1;
        }
    }
    return 0;
}

static int member(tbuf_t *b, const char *name, const char *v)
{
    if (!present(v)) return 0;
    return tbuf_put(b, ",\"", 2) || tbuf_put(b, name, strlen(name)) || tbuf_put(b, "\":\"", 3) ||
                   json_esc(b, v) || tbuf_put(b, "\"", 1)
               ? -1
               : 0;
}

int failures_json_write(tbuf_t *b, const failure_list_t *l)
{
    if (tbuf_put(b, "[", 1)) return -1;
    for (size_t i = 0; i < l->n; i++) {
        const failure_event_t *e = &l->v[i];
        char t[40], head[120];
        ingest_time_format(e->t_ms, t, sizeof t);
        int hl = snprintf(head, sizeof head, "%s{\"time\":\"%s\",\"timestamp\":%" PRId64 ".%03d",
                          i ? "," : "", t, e->t_ms / 1000, (int)(e->t_ms % 1000));
        if (tbuf_put(b, head, (size_t)hl) || member(b, "kind", e->kind) ||
            member(b, "instance", e->instance) || member(b, "device", e->device) ||
            member(b, "serial", e->serial) || member(b, "uuid", e->uuid) ||
            member(b, "reason", e->reason) || tbuf_put(b, "}", 1))
            return -1;
    }
    return tbuf_put(b, "]", 1);
}
