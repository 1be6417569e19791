/*
 * sim_out.c — simulator outputs: the store writer (tsdb_append), the
 * failure-event series, the remote-write 1.0 encoder and the CSV writers
 * (Backblaze-style disks, nvidia-smi-style GPUs, events as CSV and JSON
 * lines). Formats are described in docs/simulator.md.
 *
 * Remote-write 1.0 body (prometheus.WriteRequest, then snappy block):
 *
 *   WriteRequest  { 1: repeated TimeSeries (LEN) }
 *   TimeSeries    { 1: repeated Label (LEN); 2: repeated Sample (LEN) }
 *   Label         { 1: name (LEN); 2: value (LEN) }
 *   Sample        { 1: value (I64, tag 0x09); 2: timestamp (VARINT, tag 0x10) }
 *
 *   e.g. one series {__name__="up"} with one sample (1.0 at t=1000):
 *   0a 15  0a 08 0a 08 5f 5f 6e 61 6d 65 5f 5f 12 02 75 70 ... (labels)
 *          12 0b 09 00 00 00 00 00 00 f0 3f 10 e8 07           (sample)
 */
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_int.h"

/* ---- time ---------------------------------------------------------------------- */

/* Days since 1970-01-01 -> civil date (proleptic Gregorian). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

char *sim_time_format(int64_t t, int date_only, char *buf, size_t n)
{
    int64_t days = floor_div(t, 86400000);
    int64_t ms = t - days * 86400000;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    if (date_only)
        snprintf(buf, n, "%04d-%02d-%02d", y, m, d);
    else
        snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, (int)(ms / 3600000),
                 (int)(ms / 60000 % 60), (int)(ms / 1000 % 60), (int)(ms % 1000));
    return buf;
}

/* ---- failure-event series ------------------------------------------------------------ */

static void lab(tsdb_label_t *l, const char *n, const char *v)
{
    l->name.ptr = n;
    l->name.len = (uint32_t)strlen(n);
    l->value.ptr = v;
    l->value.len = (uint32_t)strlen(v);
}

uint32_t sim_event_labels(const sim_event_t *e, tsdb_label_t l[SIM_EVENT_NLABELS])
{
    /* The representation of ingest/failures.h: serial for disks, UUID (as
     * dcgm-exporter spells it) for GPUs. Sorted by name: "UUID" sorts
     * before "__name__". */
    uint32_t n = 0;
    if (e->kind == SIM_KIND_GPU) lab(&l[n++], "UUID", e->serial);
    lab(&l[n++], "__name__", "augur_failure_event");
    lab(&l[n++], "device", e->device);
    lab(&l[n++], "instance", e->instance);
    lab(&l[n++], "kind", e->kind == SIM_KIND_DISK ? "disk" : "gpu");
    lab(&l[n++], "reason", e->reason);
    if (e->kind == SIM_KIND_DISK) lab(&l[n++], "serial", e->serial);
    return n;
}

/* ---- store writer ------------------------------------------------------------------- */

struct sim_store_writer {
    tsdb_t *db;
    uint32_t k;         /* steps buffered per series */
    uint32_t steps;     /* steps in the buffer */
    uint32_t cap;       /* series capacity of buf/cnt */
    tsdb_sample_t *buf; /* cap * k */
    uint32_t *cnt;
    const sim_t *sim;
    tsdb_series_in_t *in;
    uint64_t samples;
    int tsdb_err;
};

int sim_store_writer_create(tsdb_t *db, sim_store_writer_t **out)
{
    if (!db || !out) return SIM_EINVAL;
    sim_store_writer_t *w = calloc(1, sizeof *w);
    if (!w) return SIM_ENOMEM;
    w->db = db;
    *out = w;
    return 0;
}

void sim_store_writer_destroy(sim_store_writer_t *w)
{
    if (!w) return;
    free(w->buf);
    free(w->cnt);
    free(w->in);
    free(w);
}

uint64_t sim_store_writer_samples(const sim_store_writer_t *w)
{
    return w->samples;
}

int sim_store_writer_tsdb_error(const sim_store_writer_t *w)
{
    return w->tsdb_err;
}

#define SIM_APPEND_CHUNK 16384

int sim_store_writer_flush(sim_store_writer_t *w)
{
    if (!w) return SIM_EINVAL;
    if (!w->steps) return 0;
    size_t n = 0;
    for (uint32_t i = 0; i < w->cap; i++) {
        if (!w->cnt[i]) continue;
        const sim_series_t *se = sim_series_get(w->sim, i);
        tsdb_series_in_t *in = &w->in[n++];
        in->labels = se->labels;
        in->nlabels = se->nlabels;
        in->samples = w->buf + (size_t)i * w->k;
        in->nsamples = w->cnt[i];
        if (n == SIM_APPEND_CHUNK) {
            tsdb_append_result_t res;
            int rc = tsdb_append(w->db, w->in, n, NULL, &res);
            if (rc) {
                w->tsdb_err = rc;
                return SIM_ESTORE;
            }
            w->samples += res.stored;
            n = 0;
        }
    }
    if (n) {
        tsdb_append_result_t res;
        int rc = tsdb_append(w->db, w->in, n, NULL, &res);
        if (rc) {
            w->tsdb_err = rc;
            return SIM_ESTORE;
        }
        w->samples += res.stored;
    }
    memset(w->cnt, 0, (size_t)w->cap * sizeof *w->cnt);
    w->steps = 0;
    return 0;
}

int sim_store_writer_add(sim_store_writer_t *w, const sim_t *s, const sim_frame_t *f)
{
    if (!w || !s || !f) return SIM_EINVAL;
    if (f->nseries > w->cap) {
        int rc = sim_store_writer_flush(w);
        if (rc) return rc;
        uint32_t nc = f->nseries + f->nseries / 4 + 64;
        if (!w->k) {
            /* Buffer up to ~4M samples, 1..64 steps. */
            uint64_t k = (4u << 20) / nc;
            w->k = (uint32_t)(k < 1 ? 1 : k > 64 ? 64 : k);
        }
        tsdb_sample_t *nb = realloc(w->buf, (size_t)nc * w->k * sizeof *nb);
        if (!nb) return SIM_ENOMEM;
        w->buf = nb;
        uint32_t *ncnt = realloc(w->cnt, (size_t)nc * sizeof *ncnt);
        if (!ncnt) return SIM_ENOMEM;
        w->cnt = ncnt;
        memset(w->cnt + w->cap, 0, (size_t)(nc - w->cap) * sizeof *ncnt);
        size_t chunk = nc < SIM_APPEND_CHUNK ? nc : SIM_APPEND_CHUNK;
        tsdb_series_in_t *ni = realloc(w->in, chunk * sizeof *ni);
        if (!ni) return SIM_ENOMEM;
        w->in = ni;
        w->cap = nc;
    }
    w->sim = s;
    for (uint32_t i = 0; i < f->nseries; i++) {
        double v = f->v[i];
        if (v != v) continue;
        tsdb_sample_t *p = &w->buf[(size_t)i * w->k + w->cnt[i]++];
        p->t = f->t_ms;
        p->v = v;
    }
    w->steps++;
    if (f->nevents) {
        tsdb_label_t l[SIM_EVENT_NLABELS];
        tsdb_sample_t one;
        tsdb_series_in_t in;
        for (uint32_t e = 0; e < f->nevents; e++) {
            in.labels = l;
            in.nlabels = sim_event_labels(&f->events[e], l);
            one.t = f->events[e].t_ms;
            one.v = 1;
            in.samples = &one;
            in.nsamples = 1;
            tsdb_append_result_t res;
            int rc = tsdb_append(w->db, &in, 1, NULL, &res);
            if (rc) {
                w->tsdb_err = rc;
                return SIM_ESTORE;
            }
            w->samples += res.stored;
        }
    }
    if (w->steps >= w->k) return sim_store_writer_flush(w);
    return 0;
}

/* ---- remote write 1.0 encoder ------------------------------------------------------------ */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t label_msg_len(const tsdb_label_t *l)
{
    return 1 + varint_len(l->name.len) + l->name.len + 1 + varint_len(l->value.len) + l->value.len;
}

static size_t sample_msg_len(const tsdb_sample_t *s)
{
    return 1 + 8 + 1 + varint_len((uint64_t)s->t);
}

static size_t series_msg_len(const tsdb_series_in_t *se)
{
    size_t n = 0;
    for (uint32_t i = 0; i < se->nlabels; i++) {
        size_t l = label_msg_len(&se->labels[i]);
        n += 1 + varint_len(l) + l;
    }
    for (uint32_t i = 0; i < se->nsamples; i++) {
        size_t l = sample_msg_len(&se->samples[i]);
        n += 1 + varint_len(l) + l;
    }
    return n;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const char *s, uint32_t n)
{
    *p++ = tag;
    p += varint_put_raw(p, n);
    memcpy(p, s, n);
    return p + n;
}

int sim_rw_encode(const tsdb_series_in_t *series, size_t nseries, uint8_t **body, size_t *len,
                  size_t *cap)
{
    if (!body || !len || !cap || (nseries && !series)) return SIM_EINVAL;
    size_t raw = 0;
    for (size_t i = 0; i < nseries; i++) {
        size_t l = series_msg_len(&series[i]);
        raw += 1 + varint_len(l) + l;
    }
    uint8_t *pb = malloc(raw ? raw : 1);
    if (!pb) return SIM_ENOMEM;
    uint8_t *p = pb;
    for (size_t i = 0; i < nseries; i++) {
        const tsdb_series_in_t *se = &series[i];
        *p++ = 0x0a;
        p += varint_put_raw(p, series_msg_len(se));
        for (uint32_t k = 0; k < se->nlabels; k++) {
            const tsdb_label_t *l = &se->labels[k];
            *p++ = 0x0a;
            p += varint_put_raw(p, label_msg_len(l));
            p = put_bytes(p, 0x0a, l->name.ptr, l->name.len);
            p = put_bytes(p, 0x12, l->value.ptr, l->value.len);
        }
        for (uint32_t k = 0; k < se->nsamples; k++) {
            const tsdb_sample_t *s = &se->samples[k];
            *p++ = 0x12;
            p += varint_put_raw(p, sample_msg_len(s));
            *p++ = 0x09;
            le64_put(p, f64_bits(s->v));
            p += 8;
            *p++ = 0x10;
            p += varint_put_raw(p, (uint64_t)s->t);
        }
    }
    size_t need = snappy_max_compressed_length(raw);
    if (*cap < need) {
        uint8_t *nb = realloc(*body, need);
        if (!nb) {
            free(pb);
            return SIM_ENOMEM;
        }
        *body = nb;
        *cap = need;
    }
    size_t out = *cap;
    snappy_status st = snappy_compress((const char *)pb, raw, (char *)*body, &out);
    free(pb);
    if (st != SNAPPY_OK) return SIM_ENOMEM;
    *len = out;
    return 0;
}

/* ---- CSV writers ---------------------------------------------------------------------- */

typedef struct {
    int pending;
    int64_t day;
    const char *serial;
    double v[SD_ATA_N];
} disk_row_t;

struct sim_csv {
    FILE *disk, *gpu, *evc, *evj;
    int64_t gpu_step;
    int64_t next_gpu;
    int64_t cur_day;
    disk_row_t *rows;
    uint32_t ndisks;
    int err;
};

int sim_csv_create(const sim_t *s, const sim_csv_options_t *o, sim_csv_t **out)
{
    if (!s || !o || !out) return SIM_EINVAL;
    sim_csv_t *c = calloc(1, sizeof *c);
    if (!c) return SIM_ENOMEM;
    c->disk = o->disk;
    c->gpu = o->gpu;
    c->evc = o->events_csv;
    c->evj = o->events_json;
    c->gpu_step = o->gpu_step_ms > 0 ? o->gpu_step_ms : 86400000;
    c->next_gpu = INT64_MIN;
    c->cur_day = INT64_MIN;
    c->ndisks = sim_disk_count(s);
    c->rows = calloc(c->ndisks + 1, sizeof *c->rows);
    if (!c->rows) {
        free(c);
        return SIM_ENOMEM;
    }
    if (c->disk) {
        fputs("date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,vault_id,"
              "pod_id,pod_slot_num",
              c->disk);
        for (int a = 0; a < SIM_NATTR; a++)
            fprintf(c->disk, ",smart_%d_normalized,smart_%d_raw", sim_attr_id[a], sim_attr_id[a]);
        fputc('\n', c->disk);
    }
    if (c->gpu)
        fputs("timestamp,hostname,index,uuid,name,temperature.gpu,temperature.memory,"
              "power.draw [W],clocks.sm [MHz],utilization.gpu [%],memory.used [MiB],"
              "ecc.errors.corrected.volatile.total,ecc.errors.uncorrected.volatile.total,"
              "retired_pages.sbe,retired_pages.dbe,retired_pages.pending,"
              "remapped_rows.failure,remapped_rows.uncorrectable,pcie.replay_counter,"
              "nvlink.crc_flit_errors,thermal_violation_us,xid,rack,failure\n",
              c->gpu);
    if (c->evc)
        fputs("time,kind,instance,device,serial,model,reason,precursor,trigger_time,stress,rack\n",
              c->evc);
    *out = c;
    return 0;
}

void sim_csv_destroy(sim_csv_t *c)
{
    if (!c) return;
    free(c->rows);
    free(c);
}

/* %.17g would write "12" as "12" and 0.1 as 0.10000000000000001: values here
 * are integers or short decimals, so print integers exactly and others
 * with %.6g. */
static void put_num(FILE *f, double v)
{
    if (v != v) return;
    if (v == floor(v) && fabs(v) < 9e15)
        fprintf(f, "%lld", (long long)v);
    else
        fprintf(f, "%.6g", v);
}

static void disk_row_write(sim_csv_t *c, const sim_t *s, uint32_t i, const disk_row_t *r,
                           int failure)
{
    sim_device_info_t di;
    sim_disk_info(s, i, &di);
    char date[16];
    sim_time_format(r->day * 86400000, 1, date, sizeof date);
    uint32_t vault = s->cfg.nodes_per_rack ? di.node / s->cfg.nodes_per_rack : 0;
    fprintf(c->disk, "%s,%s,%s,%llu,%d,sim,0,%u,%u,%u", date, r->serial, di.model,
            (unsigned long long)di.capacity_bytes, failure, vault, di.node, di.slot);
    for (int a = 0; a < SIM_NATTR; a++) {
        fputc(',', c->disk);
        put_num(c->disk, r->v[SD_ATTR0 + 2 * a + 1]);
        fputc(',', c->disk);
        put_num(c->disk, r->v[SD_ATTR0 + 2 * a]);
    }
    fputc('\n', c->disk);
}

static void disk_row_capture(const sim_t *s, uint32_t i, const sim_frame_t *f, disk_row_t *r,
                             int64_t day)
{
    sim_device_info_t di;
    sim_disk_info(s, i, &di);
    r->pending = 1;
    r->day = day;
    r->serial = di.serial;
    memcpy(r->v, f->v + di.series_base, sizeof r->v);
}

static void gpu_row_write(sim_csv_t *c, const sim_t *s, uint32_t i, const sim_frame_t *f,
                          int failure)
{
    sim_device_info_t di;
    sim_gpu_info(s, i, &di);
    const double *v = f->v + di.series_base;
    if (v[0] != v[0]) return;
    char ts[32];
    sim_time_format(f->t_ms, 0, ts, sizeof ts);
    /* nvidia-smi style: 2024/01/01 00:00:00.000 */
    ts[4] = ts[7] = '/';
    ts[10] = ' ';
    ts[23] = 0;
    fprintf(c->gpu, "%s,%s,%u,%s,%s", ts, di.instance, di.slot, di.serial, di.model);
    static const int order[] = {
        SG_GPU_TEMP,  SG_MEM_TEMP,    SG_POWER,      SG_SM_CLOCK,     SG_UTIL,     SG_FB_USED,
        SG_SBE,       SG_DBE,         SG_RET_SBE,    SG_RET_DBE,      SG_RET_PEND, SG_REMAP_FAIL,
        SG_UNC_REMAP, SG_PCIE_REPLAY, SG_NVLINK_CRC, SG_THERMAL_VIOL, SG_XID};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        fputc(',', c->gpu);
        put_num(c->gpu, v[order[k]]);
    }
    fprintf(c->gpu, ",%s,%d\n", di.rack, failure);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static const char *stress_str(int k)
{
    return k == SIM_STRESS_COOLING     ? "cooling"
           : k == SIM_STRESS_POWER     ? "power"
           : k == SIM_STRESS_VIBRATION ? "vibration"
           : k == SIM_STRESS_NEIGHBOUR ? "neighbour_failure"
                                       : "";
}

static void event_write(sim_csv_t *c, const sim_event_t *e)
{
    char t1[32], t2[32];
    sim_time_format(e->t_ms, 0, t1, sizeof t1);
    sim_time_format(e->trigger_ms, 0, t2, sizeof t2);
    const char *kind = e->kind == SIM_KIND_DISK ? "disk" : "gpu";
    if (c->evc)
        fprintf(c->evc, "%s,%s,%s,%s,%s,%s,%s,%d,%s,%s,%s\n", t1, kind, e->instance, e->device,
                e->serial, e->model, e->reason, e->precursor, t2, stress_str(e->stress), e->rack);
    if (c->evj) {
        FILE *f = c->evj;
        fprintf(f, "{\"time\":\"%s\",\"kind\":\"%s\",\"instance\":", t1, kind);
        json_str(f, e->instance);
        fputs(",\"device\":", f);
        json_str(f, e->device);
        fprintf(f, ",\"%s\":", e->kind == SIM_KIND_DISK ? "serial" : "uuid");
        json_str(f, e->serial);
        fputs(",\"model\":", f);
        json_str(f, e->model);
        fputs(",\"reason\":", f);
        json_str(f, e->reason);
        fprintf(f, ",\"precursor\":%s,\"trigger_time\":\"%s\",\"stress\":",
                e->precursor ? "true" : "false", t2);
        if (e->stress)
            json_str(f, stress_str(e->stress));
        else
            fputs("null", f);
        fputs(",\"rack\":", f);
        json_str(f, e->rack);
        fputs("}\n", f);
    }
}

static int disk_index(const sim_t *s, const sim_event_t *e)
{
    return (int)(e->node * s->cfg.disks_per_node + e->dev);
}

int sim_csv_add(sim_csv_t *c, const sim_t *s, const sim_frame_t *f)
{
    if (!c || !s || !f) return SIM_EINVAL;
    int64_t day = floor_div(f->t_ms, 86400000);
    if (c->disk && day != c->cur_day) {
        for (uint32_t i = 0; i < c->ndisks; i++) {
            disk_row_t *r = &c->rows[i];
            if (r->pending) disk_row_write(c, s, i, r, 0);
            r->pending = 0;
            sim_device_info_t di;
            sim_disk_info(s, i, &di);
            if (di.present && !di.nvme && f->v[di.series_base] == f->v[di.series_base])
                disk_row_capture(s, i, f, r, day);
        }
        c->cur_day = day;
    }
    for (uint32_t e = 0; e < f->nevents; e++) {
        const sim_event_t *ev = &f->events[e];
        event_write(c, ev);
        if (ev->kind == SIM_KIND_DISK && c->disk) {
            uint32_t i = (uint32_t)disk_index(s, ev);
            sim_device_info_t di;
            sim_disk_info(s, i, &di);
            if (!di.nvme) {
                disk_row_t *r = &c->rows[i];
                disk_row_capture(s, i, f, r, day);
                r->serial = ev->serial;
                disk_row_write(c, s, i, r, 1);
                r->pending = 0;
            }
        }
        if (ev->kind == SIM_KIND_GPU && c->gpu)
            gpu_row_write(c, s, ev->node * s->cfg.gpus_per_node + ev->dev, f, 1);
    }
    if (c->gpu && f->t_ms >= c->next_gpu) {
        uint32_t ng = sim_gpu_count(s);
        for (uint32_t i = 0; i < ng; i++) {
            sim_device_info_t di;
            sim_gpu_info(s, i, &di);
            if (!di.present) continue;
            gpu_row_write(c, s, i, f, 0);
        }
        if (c->next_gpu == INT64_MIN) c->next_gpu = f->t_ms;
        while (c->next_gpu <= f->t_ms)
            c->next_gpu += c->gpu_step;
    }
    FILE *fs[4] = {c->disk, c->gpu, c->evc, c->evj};
    for (int k = 0; k < 4; k++)
        if (fs[k] && ferror(fs[k])) return SIM_EIO;
    return 0;
}

int sim_csv_finish(sim_csv_t *c, const sim_t *s)
{
    if (!c || !s) return SIM_EINVAL;
    if (c->disk)
        for (uint32_t i = 0; i < c->ndisks; i++) {
            if (c->rows[i].pending) disk_row_write(c, s, i, &c->rows[i], 0);
            c->rows[i].pending = 0;
        }
    FILE *fs[4] = {c->disk, c->gpu, c->evc, c->evj};
    for (int k = 0; k < 4; k++)
        if (fs[k] && (fflush(fs[k]) || ferror(fs[k]))) return SIM_EIO;
    return 0;
}
