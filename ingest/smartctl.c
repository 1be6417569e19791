/* smartctl.c — smartctl -j JSON → smartctl_exporter series (see smartctl.h). */
#include "ingest/smartctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/json.h"

struct smartctl {
    smartctl_options_t o;
    ingest_batch_t batch;
    json_doc_t doc;
    smartctl_stats_t st;
};

void smartctl_options_init(smartctl_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->default_time_ms = INT64_MIN;
}

int smartctl_create(const smartctl_options_t *o, smartctl_t **out)
{
    if (!o || !out || !o->sink || !o->sink->append || !o->instance || !*o->instance)
        return TSDB_EINVAL;
    smartctl_t *p = calloc(1, sizeof *p);
    if (!p) return TSDB_ENOMEM;
    p->o = *o;
    ingest_batch_init(&p->batch);
    json_doc_init(&p->doc);
    *out = p;
    return 0;
}

void smartctl_destroy(smartctl_t *p)
{
    if (!p) return;
    ingest_batch_free(&p->batch);
    json_doc_free(&p->doc);
    free(p);
}

void smartctl_stats(const smartctl_t *p, smartctl_stats_t *st)
{
    *st = p->st;
}

static void report(smartctl_t *p, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(smartctl_t *p, uint64_t line, const char *fmt, ...)
{
    if (!p->o.on_error) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->o.on_error(p->o.err_ctx, line, msg);
}

typedef struct {
    smartctl_t *p;
    tsdb_label_t base[2]; /* instance, device */
    int64_t t;
    int oom;
} dev_t_;

static tsdb_label_t L(const char *n, const char *v)
{
    tsdb_label_t l = {{n, (uint32_t)strlen(n)}, {v, (uint32_t)strlen(v)}};
    return l;
}

/* One sample of metric{instance, device, extra…}. */
static void emit(dev_t_ *d, const char *metric, const tsdb_label_t *extra, uint32_t nextra,
                 double v)
{
    tsdb_label_t l[16];
    l[0] = L("__name__", metric);
    l[1] = d->base[0];
    l[2] = d->base[1];
    for (uint32_t i = 0; i < nextra && i < 13; i++)
        l[3 + i] = extra[i];
    if (ingest_batch_add(&d->p->batch, l, 3 + (nextra < 13 ? nextra : 13), d->t, v)) d->oom = 1;
    d->p->st.values++;
}

static int num_at(const json_doc_t *doc, uint32_t from, const char *path, double *v)
{
    return json_num(json_path(doc, from, path), v);
}

static void emit_num(dev_t_ *d, const char *metric, uint32_t from, const char *path, double scale)
{
    double v;
    if (!num_at(&d->p->doc, from, path, &v)) emit(d, metric, NULL, 0, v * scale);
}

/* A string member copied into the batch (NULL when absent or empty). */
static const char *str_at(dev_t_ *d, uint32_t from, const char *path)
{
    const json_node_t *n = json_path(&d->p->doc, from, path);
    const char *s = json_str(&d->p->doc, n);
    if (!s || !*s || strlen(s) != n->len || n->len > 256) return NULL;
    const char *c = ingest_batch_str(&d->p->batch, s, n->len);
    if (!c) d->oom = 1;
    return c;
}

static int one_document(smartctl_t *p, uint32_t root, size_t idx)
{
    json_doc_t *doc = &p->doc;
    if (doc->nodes[root].type != JSON_OBJECT) {
        report(p, 0, "document %zu: not a JSON object", idx + 1);
        return 1;
    }
    dev_t_ d;
    memset(&d, 0, sizeof d);
    d.p = p;
    /* The device name: /dev/sda → sda, as smartctl_exporter labels it. */
    const json_node_t *nn = json_path(doc, root, "device.name");
    const char *name = json_str(doc, nn);
    if (!name || !*name || strlen(name) != nn->len || nn->len > 256) {
        report(p, 0, "document %zu: no device.name (is this `smartctl -j -a` output?)", idx + 1);
        return 1;
    }
    if (!strncmp(name, "/dev/", 5)) name += 5;
    if (!*name) { /* "/dev/": no device left to label */
        report(p, 0, "document %zu: device.name \"/dev/\" names no device", idx + 1);
        return 1;
    }
    double tt;
    if (!num_at(doc, root, "local_time.time_t", &tt) && tt > 0 && tt < 253402300799.0)
        d.t = (int64_t)tt * 1000;
    else if (p->o.default_time_ms != INT64_MIN)
        d.t = p->o.default_time_ms;
    else {
        report(p, 0, "document %zu (%s): no local_time.time_t; give the time with --time", idx + 1,
               name);
        return 1;
    }
    const char *dev = ingest_batch_str(&p->batch, name, strlen(name));
    if (!dev) return TSDB_ENOMEM;
    d.base[0] = L("instance", p->o.instance);
    d.base[1] = L("device", dev);

    /* smartctl_device info */
    tsdb_label_t info[8];
    uint32_t ni = 0;
    static const struct {
        const char *label, *path;
    } infos[] = {
        {"interface", "device.type"},       {"protocol", "device.protocol"},
        {"model_family", "model_family"},   {"model_name", "model_name"},
        {"serial_number", "serial_number"}, {"firmware_version", "firmware_version"},
    };
    for (size_t i = 0; i < sizeof infos / sizeof infos[0]; i++) {
        const char *v = str_at(&d, root, infos[i].path);
        if (v) info[ni++] = L(infos[i].label, v);
    }
    /* NVMe names its model differently in older versions. */
    if (!json_path(doc, root, "model_name")) {
        const char *v = str_at(&d, root, "model_number");
        if (v) info[ni++] = L("model_name", v);
    }
    emit(&d, "smartctl_device", info, ni, 1.0);
    emit_num(&d, "smartctl_device_capacity_bytes", root, "user_capacity.bytes", 1);
    emit_num(&d, "smartctl_device_smartctl_exit_status", root, "smartctl.exit_status", 1);
    const json_node_t *passed = json_path(doc, root, "smart_status.passed");
    if (passed && (passed->type == JSON_TRUE || passed->type == JSON_FALSE))
        emit(&d, "smartctl_device_smart_status", NULL, 0, passed->type == JSON_TRUE);
    tsdb_label_t cur = L("temperature_type", "current");
    double v;
    if (!num_at(doc, root, "temperature.current", &v) ||
        !num_at(doc, root, "nvme_smart_health_information_log.temperature", &v))
        emit(&d, "smartctl_device_temperature", &cur, 1, v);
    double hours, minutes = 0;
    if (!num_at(doc, root, "power_on_time.hours", &hours)) {
        num_at(doc, root, "power_on_time.minutes", &minutes);
        emit(&d, "smartctl_device_power_on_seconds", NULL, 0, hours * 3600 + minutes * 60);
    } else if (!num_at(doc, root, "nvme_smart_health_information_log.power_on_hours", &hours)) {
        emit(&d, "smartctl_device_power_on_seconds", NULL, 0, hours * 3600);
    }
    if (!num_at(doc, root, "power_cycle_count", &v) ||
        !num_at(doc, root, "nvme_smart_health_information_log.power_cycles", &v))
        emit(&d, "smartctl_device_power_cycle_count", NULL, 0, v);

    /* ATA attribute table. */
    const json_node_t *tab = json_path(doc, root, "ata_smart_attributes.table");
    if (tab && tab->type == JSON_ARRAY) {
        uint32_t ti = json_index(doc, tab);
        for (uint32_t k = ti + 1; k < tab->next; k = doc->nodes[k].next) {
            double id;
            if (doc->nodes[k].type != JSON_OBJECT || num_at(doc, k, "id", &id) || id < 0 ||
                id > 255)
                continue;
            char ids[8];
            snprintf(ids, sizeof ids, "%d", (int)id);
            const char *ida = ingest_batch_str(&p->batch, ids, strlen(ids));
            const char *an = str_at(&d, k, "name");
            if (!ida) return TSDB_ENOMEM;
            tsdb_label_t al[3] = {L("attribute_id", ida),
                                  L("attribute_name", an ? an : "Unknown_Attribute"),
                                  L("attribute_value_type", "value")};
            static const char *const kinds[4][2] = {
                {"value", "value"}, {"worst", "worst"}, {"thresh", "thresh"}, {"raw", "raw.value"}};
            for (int q = 0; q < 4; q++)
                if (!num_at(doc, k, kinds[q][1], &v)) {
                    al[2] = L("attribute_value_type", kinds[q][0]);
                    emit(&d, "smartctl_device_attribute", al, 3, v);
                }
            p->st.attributes++;
        }
    }
    /* NVMe health log. */
    const json_node_t *nv = json_path(doc, root, "nvme_smart_health_information_log");
    if (nv && nv->type == JSON_OBJECT) {
        uint32_t ni2 = json_index(doc, nv);
        static const struct {
            const char *metric, *field;
            double scale;
        } nm[] = {
            {"smartctl_device_critical_warning", "critical_warning", 1},
            {"smartctl_device_available_spare", "available_spare", 1},
            {"smartctl_device_available_spare_threshold", "available_spare_threshold", 1},
            {"smartctl_device_percentage_used", "percentage_used", 1},
            {"smartctl_device_media_errors", "media_errors", 1},
            {"smartctl_device_num_err_log_entries", "num_err_log_entries", 1},
            {"smartctl_device_bytes_read", "data_units_read", 512000},
            {"smartctl_device_bytes_written", "data_units_written", 512000},
        };
        for (size_t i = 0; i < sizeof nm / sizeof nm[0]; i++)
            emit_num(&d, nm[i].metric, ni2, nm[i].field, nm[i].scale);
    }
    if (d.oom) return TSDB_ENOMEM;
    p->st.documents++;
    return 0;
}

int smartctl_document(smartctl_t *p, const char *ptr, size_t len)
{
    int rc = json_parse(&p->doc, ptr, len);
    if (rc == JSON_ENOMEM) return TSDB_ENOMEM;
    if (rc) {
        report(p, p->doc.err_line, "column %u: %s (%s)", p->doc.err_col, json_strerror(rc),
               p->doc.err_msg ? p->doc.err_msg : "");
        p->st.documents_skipped++;
        return 1;
    }
    /* Nothing of a refused file is sent: build everything, then flush. */
    size_t ndocs = 0;
    int refused = 0;
    if (p->doc.nodes[0].type == JSON_ARRAY) {
        for (uint32_t k = 1; k < p->doc.nodes[0].next; k = p->doc.nodes[k].next, ndocs++) {
            rc = one_document(p, k, ndocs);
            if (rc < 0) return rc;
            if (rc) refused++;
        }
    } else {
        rc = one_document(p, 0, 0);
        if (rc < 0) return rc;
        if (rc) refused++;
        ndocs = 1;
    }
    p->st.documents_skipped += (uint64_t)refused;
    rc = ingest_batch_flush(&p->batch, p->o.sink, p->o.totals);
    if (rc) return rc;
    return refused ? 1 : 0;
}
