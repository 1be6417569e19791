/* nvsmi.c — nvidia-smi --format=csv → dcgm-exporter series (see nvsmi.h). */
#include "ingest/nvsmi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { C_IGNORE = 0, C_TIME, C_INDEX, C_UUID, C_NAME, C_BUS, C_METRIC } ckind_t;

typedef struct {
    ckind_t kind;
    const char *metric; /* C_METRIC */
} ccol_t;

struct nvsmi {
    nvsmi_options_t o;
    ingest_batch_t batch;
    nvsmi_stats_t st;
    int want_header;
    uint64_t line;
    ccol_t cols[NVSMI_MAX_COLUMNS];
    size_t ncols;
    int have_time, have_index;
    const char *cell[NVSMI_MAX_COLUMNS];
    uint32_t clen[NVSMI_MAX_COLUMNS];
    char header[4096]; /* the header line, to recognise repeats */
    size_t header_len;
    int sticky;
};

/* nvidia-smi query field → dcgm-exporter field. Several nvidia-smi spellings
 * name the same field (the header prints the long form). */
static const struct {
    const char *field, *metric;
} fmap[] = {
    {"temperature.gpu", "DCGM_FI_DEV_GPU_TEMP"},
    {"temperature.memory", "DCGM_FI_DEV_MEMORY_TEMP"},
    {"power.draw", "DCGM_FI_DEV_POWER_USAGE"},
    {"power.draw.instant", "DCGM_FI_DEV_POWER_USAGE_INSTANT"},
    {"enforced.power.limit", "DCGM_FI_DEV_ENFORCED_POWER_LIMIT"},
    {"clocks.sm", "DCGM_FI_DEV_SM_CLOCK"},
    {"clocks.current.sm", "DCGM_FI_DEV_SM_CLOCK"},
    {"clocks.mem", "DCGM_FI_DEV_MEM_CLOCK"},
    {"clocks.current.memory", "DCGM_FI_DEV_MEM_CLOCK"},
    {"utilization.gpu", "DCGM_FI_DEV_GPU_UTIL"},
    {"utilization.memory", "DCGM_FI_DEV_MEM_COPY_UTIL"},
    {"memory.used", "DCGM_FI_DEV_FB_USED"},
    {"memory.free", "DCGM_FI_DEV_FB_FREE"},
    {"memory.reserved", "DCGM_FI_DEV_FB_RESERVED"},
    {"fan.speed", "DCGM_FI_DEV_FAN_SPEED"},
    {"pcie.link.gen.current", "DCGM_FI_DEV_PCIE_LINK_GEN"},
    {"pcie.link.width.current", "DCGM_FI_DEV_PCIE_LINK_WIDTH"},
    {"ecc.errors.corrected.volatile.total", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"},
    {"ecc.errors.uncorrected.volatile.total", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"},
    {"ecc.errors.corrected.aggregate.total", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL"},
    {"ecc.errors.uncorrected.aggregate.total", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"},
    {"retired_pages.single_bit_ecc.count", "DCGM_FI_DEV_RETIRED_SBE"},
    {"retired_pages.sbe", "DCGM_FI_DEV_RETIRED_SBE"},
    {"retired_pages.double_bit.count", "DCGM_FI_DEV_RETIRED_DBE"},
    {"retired_pages.dbe", "DCGM_FI_DEV_RETIRED_DBE"},
    {"retired_pages.pending", "DCGM_FI_DEV_RETIRED_PENDING"},
    {"remapped_rows.correctable", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"},
    {"remapped_rows.uncorrectable", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"},
    {"remapped_rows.pending", "DCGM_FI_DEV_ROW_REMAP_PENDING"},
    {"remapped_rows.failure", "DCGM_FI_DEV_ROW_REMAP_FAILURE"},
};

const char *nvsmi_field_map(const char *field)
{
    for (size_t i = 0; i < sizeof fmap / sizeof fmap[0]; i++)
        if (!strcasecmp(field, fmap[i].field)) return fmap[i].metric;
    return NULL;
}

void nvsmi_options_init(nvsmi_options_t *o)
{
    memset(o, 0, sizeof *o);
}

int nvsmi_create(const nvsmi_options_t *o, nvsmi_t **out)
{
    if (!o || !out || !o->sink || !o->sink->append || !o->instance || !*o->instance)
        return TSDB_EINVAL;
    nvsmi_t *p = calloc(1, sizeof *p);
    if (!p) return TSDB_ENOMEM;
    p->o = *o;
    if (!p->o.batch_samples) p->o.batch_samples = 65536;
    ingest_batch_init(&p->batch);
    p->want_header = 1;
    *out = p;
    return 0;
}

void nvsmi_destroy(nvsmi_t *p)
{
    if (!p) return;
    ingest_batch_free(&p->batch);
    free(p);
}

void nvsmi_file_begin(nvsmi_t *p)
{
    p->want_header = 1;
    p->line = 0;
}

void nvsmi_stats(const nvsmi_t *p, nvsmi_stats_t *st)
{
    *st = p->st;
}

static void report(nvsmi_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(nvsmi_t *p, const char *fmt, ...)
{
    if (!p->o.on_error) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->o.on_error(p->o.err_ctx, p->line, msg);
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* Split on commas and trim. Returns the cell count (capped at max+1). */
static size_t split(nvsmi_t *p, const char *s, size_t len, size_t max)
{
    const char *e = s + len;
    size_t n = 0;
    for (;;) {
        const char *c = memchr(s, ',', (size_t)(e - s));
        const char *ce = c ? c : e;
        if (n < max) {
            const char *v = s;
            size_t vl = (size_t)(ce - s);
            trim(&v, &vl);
            p->cell[n] = v;
            p->clen[n] = (uint32_t)vl;
        }
        n++;
        if (!c || n > max) break;
        s = c + 1;
    }
    return n;
}

static int parse_header(nvsmi_t *p, const char *s, size_t len)
{
    size_t n = split(p, s, len, NVSMI_MAX_COLUMNS);
    if (n > NVSMI_MAX_COLUMNS) {
        report(p, "header: more than %d columns", NVSMI_MAX_COLUMNS);
        return TSDB_EINVAL;
    }
    p->ncols = n;
    p->have_time = p->have_index = 0;
    p->st.columns_ignored = 0;
    for (size_t i = 0; i < n; i++) {
        char name[128];
        size_t l = p->clen[i];
        const char *c = p->cell[i];
        const char *br = memchr(c, '[', l); /* "power.draw [W]" */
        if (br) {
            l = (size_t)(br - c);
            trim(&c, &l);
        }
        if (l >= sizeof name) l = sizeof name - 1;
        memcpy(name, c, l);
        name[l] = 0;
        ccol_t *col = &p->cols[i];
        col->kind = C_IGNORE;
        col->metric = NULL;
        if (!strcasecmp(name, "timestamp"))
            col->kind = C_TIME, p->have_time = 1;
        else if (!strcasecmp(name, "index"))
            col->kind = C_INDEX, p->have_index = 1;
        else if (!strcasecmp(name, "uuid") || !strcasecmp(name, "gpu_uuid"))
            col->kind = C_UUID;
        else if (!strcasecmp(name, "name") || !strcasecmp(name, "gpu_name"))
            col->kind = C_NAME;
        else if (!strcasecmp(name, "pci.bus_id") || !strcasecmp(name, "gpu_bus_id"))
            col->kind = C_BUS;
        else if ((col->metric = nvsmi_field_map(name)) != NULL)
            col->kind = C_METRIC;
        else
            p->st.columns_ignored++;
    }
    if (!p->have_time || !p->have_index) {
        report(p,
               "header: no %s column (want the output of nvidia-smi "
               "--query-gpu=timestamp,index,uuid,name,... --format=csv, with its header)",
               !p->have_time ? "timestamp" : "index");
        return TSDB_EINVAL;
    }
    p->header_len = len < sizeof p->header ? len : sizeof p->header;
    memcpy(p->header, s, p->header_len);
    return 0;
}

static int digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int nvsmi_time_parse(const char *s, size_t len, int64_t *ms)
{
    /* YYYY/MM/DD HH:MM:SS[.fff] */
    if (len >= 19 && s[4] == '/' && s[7] == '/' && s[10] == ' ' && s[13] == ':' && s[16] == ':') {
        char iso[40];
        memcpy(iso, s, 10);
        iso[4] = iso[7] = '-';
        int64_t day;
        unsigned hh, mi, ss;
        if (ingest_date_parse(iso, 10, &day) || digits(s + 11, 2, &hh) || digits(s + 14, 2, &mi) ||
            digits(s + 17, 2, &ss) || hh > 23 || mi > 59 || ss > 60)
            return -1;
        int64_t frac = 0;
        size_t i = 19;
        if (i < len && s[i] == '.') {
            i++;
            int64_t scale = 100;
            size_t nd = 0;
            while (i < len && s[i] >= '0' && s[i] <= '9') {
                frac += (s[i] - '0') * scale;
                scale /= 10;
                i++;
                nd++;
            }
            if (!nd) return -1;
        }
        if (i != len) return -1;
        *ms = day + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000 + frac;
        return 0;
    }
    return ingest_time_parse(s, len, ms);
}

/* A cell: 1 and *v, 0 when missing, -1 when not understood. */
static int cell_value(const char *s, size_t n, double *v)
{
    if (!n) return 0;
    if (s[0] == '[' || (n == 3 && !strncasecmp(s, "N/A", 3))) return 0;
    static const struct {
        const char *w;
        double v;
    } words[] = {{"Yes", 1},     {"No", 0},       {"Active", 1}, {"Not Active", 0},
                 {"Enabled", 1}, {"Disabled", 0}, {"True", 1},   {"False", 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i].w) == n && !strncasecmp(s, words[i].w, n)) {
            *v = words[i].v;
            return 1;
        }
    char buf[64];
    if (n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e;
    double d = strtod(buf, &e);
    if (e == buf || d != d) return -1;
    /* An optional unit after one space: "250.12 W", "81920 MiB", "45 %". */
    if (*e == ' ') {
        e++;
        for (char *u = e; *u; u++)
            if (!((*u >= 'A' && *u <= 'Z') || (*u >= 'a' && *u <= 'z') || *u == '%')) return -1;
        if (!*e) return -1;
    } else if (*e) {
        return -1;
    }
    *v = d;
    return 1;
}

static tsdb_label_t L(const char *n, const char *v, size_t vl)
{
    tsdb_label_t l = {{n, (uint32_t)strlen(n)}, {v, (uint32_t)vl}};
    return l;
}

static int parse_row(nvsmi_t *p, const char *s, size_t len)
{
    size_t n = split(p, s, len, p->ncols);
    if (n != p->ncols) {
        report(p, "%zu fields, the header has %zu", n, p->ncols);
        return 1;
    }
    int64_t t = 0;
    const char *idx = NULL, *uuid = NULL, *name = NULL, *bus = NULL;
    size_t il = 0, ul = 0, nl = 0, bl = 0;
    double vals[NVSMI_MAX_COLUMNS];
    unsigned char has[NVSMI_MAX_COLUMNS];
    for (size_t i = 0; i < n; i++) {
        const char *c = p->cell[i];
        size_t cl = p->clen[i];
        has[i] = 0;
        switch (p->cols[i].kind) {
        case C_TIME:
            if (nvsmi_time_parse(c, cl, &t)) {
                report(p, "bad timestamp \"%.*s\" (want YYYY/MM/DD HH:MM:SS.mmm)",
                       (int)(cl > 40 ? 40 : cl), c);
                return 1;
            }
            break;
        case C_INDEX: {
            unsigned g;
            if (!cl || cl > 4 || digits(c, cl, &g)) {
                report(p, "bad GPU index \"%.*s\"", (int)(cl > 40 ? 40 : cl), c);
                return 1;
            }
            idx = c, il = cl;
            break;
        }
        case C_UUID:
            if (cl && c[0] != '[') uuid = c, ul = cl;
            break;
        case C_NAME:
            if (cl && c[0] != '[') name = c, nl = cl;
            break;
        case C_BUS:
            if (cl && c[0] != '[') bus = c, bl = cl;
            break;
        case C_METRIC: {
            int r = cell_value(c, cl, &vals[i]);
            if (r < 0) {
                report(p, "column %zu (%s): \"%.*s\" is not a number", i + 1, p->cols[i].metric,
                       (int)(cl > 40 ? 40 : cl), c);
                return 1;
            }
            if (r == 0) p->st.missing++;
            has[i] = (unsigned char)r;
            break;
        }
        default:
            break;
        }
        if (cl > 256 && p->cols[i].kind != C_IGNORE) {
            report(p, "column %zu: cell longer than 256 bytes", i + 1);
            return 1;
        }
    }
    if (!idx) return 1; /* have_index: cannot happen */
    ingest_batch_t *b = &p->batch;
    char devbuf[16];
    int dl = snprintf(devbuf, sizeof devbuf, "nvidia%.*s", (int)il, idx);
    const char *gpu = ingest_batch_str(b, idx, il);
    const char *dev = ingest_batch_str(b, devbuf, (size_t)dl);
    const char *uu = uuid ? ingest_batch_str(b, uuid, ul) : NULL;
    const char *mn = name ? ingest_batch_str(b, name, nl) : NULL;
    const char *bu = bus ? ingest_batch_str(b, bus, bl) : NULL;
    if (!gpu || !dev || (uuid && !uu) || (name && !mn) || (bus && !bu)) return TSDB_ENOMEM;
    tsdb_label_t lab[8];
    uint32_t k = 1;
    size_t instl = strlen(p->o.instance);
    lab[k++] = L("gpu", gpu, il);
    lab[k++] = L("device", dev, (size_t)dl);
    lab[k++] = L("instance", p->o.instance, instl);
    lab[k++] = L("Hostname", p->o.instance, instl);
    if (uu) lab[k++] = L("UUID", uu, ul);
    if (mn) lab[k++] = L("modelName", mn, nl);
    if (bu) lab[k++] = L("pci_bus_id", bu, bl);
    for (size_t i = 0; i < n; i++) {
        if (!has[i]) continue;
        lab[0] = L("__name__", p->cols[i].metric, strlen(p->cols[i].metric));
        if (ingest_batch_add(b, lab, k, t, vals[i])) return TSDB_ENOMEM;
        p->st.values++;
    }
    p->st.rows++;
    return 0;
}

int nvsmi_flush(nvsmi_t *p)
{
    if (p->sticky) return p->sticky;
    int rc = ingest_batch_flush(&p->batch, p->o.sink, p->o.totals);
    if (rc) p->sticky = rc;
    return rc;
}

int nvsmi_line(nvsmi_t *p, const char *s, size_t len)
{
    if (p->sticky) return p->sticky;
    p->line++;
    p->st.lines++;
    if (len && s[len - 1] == '\r') len--;
    if (!len) return 0;
    if (p->want_header) {
        int rc = parse_header(p, s, len);
        if (rc) return rc;
        p->want_header = 0;
        return 0;
    }
    if (len == p->header_len && !memcmp(s, p->header, len)) return 0; /* repeated header */
    int rc = parse_row(p, s, len);
    if (rc == 1) {
        p->st.rows_skipped++;
        return 0;
    }
    if (rc) {
        p->sticky = rc;
        return rc;
    }
    if (ingest_batch_samples(&p->batch) >= p->o.batch_samples) return nvsmi_flush(p);
    return 0;
}
