/*
 * fuzz_json.c — libFuzzer target for ingest/json, and the two consumers of
 * untrusted JSON: failure-event bodies (ingest/failures) and smartctl
 * documents (ingest/smartctl).
 *
 * Oracles beyond ASan/UBSan: on success the node tree is consistent (every
 * subtree ends within its parent, child counts match a walk, strings are
 * NUL-terminated inside the string buffer); on failure the error position
 * lies within the input; parsing is deterministic (same result twice).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/failures.h"
#include "ingest/json.h"
#include "ingest/smartctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void walk(const json_doc_t *d, uint32_t i, uint32_t end)
{
    const json_node_t *n = &d->nodes[i];
    CHECK(n->next > i && n->next <= end);
    if (n->type == JSON_STRING || n->type == JSON_NUMBER) {
        CHECK((size_t)n->str + n->len < d->slen);
        CHECK(d->strings[n->str + n->len] == 0);
    }
    if (n->key != UINT32_MAX) CHECK((size_t)n->key + n->keylen < d->slen);
    if (n->type == JSON_ARRAY || n->type == JSON_OBJECT) {
        uint32_t cnt = 0;
        for (uint32_t k = i + 1; k < n->next; k = d->nodes[k].next) {
            CHECK((d->nodes[k].key != UINT32_MAX) == (n->type == JSON_OBJECT));
            walk(d, k, n->next);
            cnt++;
        }
        CHECK(cnt == n->nkids);
    } else {
        CHECK(n->next == i + 1);
    }
}

static int null_append(void *ctx, const tsdb_series_in_t *s, size_t n, tsdb_append_result_t *res)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        for (uint32_t a = 0; a < s[i].nlabels; a++)
            CHECK(s[i].labels[a].name.len > 0 && s[i].labels[a].value.len > 0);
    res->stored = n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_doc_t d;
    json_doc_init(&d);
    int rc = json_parse(&d, (const char *)data, size);
    if (rc == 0) {
        CHECK(d.n > 0);
        walk(&d, 0, d.n);
        CHECK(d.nodes[0].next == d.n);
    } else {
        CHECK(d.err_off <= size);
        uint32_t line = d.err_line;
        int rc2 = json_parse(&d, (const char *)data, size);
        CHECK(rc2 == rc && d.err_line == line);
    }
    /* Failure-event bodies. */
    failure_event_t *ev = NULL;
    size_t n = 0;
    char err[300];
    rc = failures_parse_json(&d, (const char *)data, size, &ev, &n, err, sizeof err);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            CHECK(failure_event_check(&ev[i], err, sizeof err) == 0);
            tsdb_label_t l[FAILURE_MAX_LABELS];
            CHECK(failure_event_labels(&ev[i], l) >= 3);
        }
    }
    free(ev);
    json_doc_free(&d);
    /* smartctl documents. */
    ingest_sink_t sink = {null_append, NULL};
    smartctl_options_t o;
    smartctl_options_init(&o);
    o.instance = "h";
    o.default_time_ms = 1000;
    o.sink = &sink;
    smartctl_t *p;
    if (!smartctl_create(&o, &p)) {
        rc = smartctl_document(p, (const char *)data, size);
        CHECK(rc == 0 || rc == 1);
        smartctl_destroy(p);
    }
    return 0;
}
