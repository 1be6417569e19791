/* backblaze.c — Backblaze drive-stats CSV → smartctl_exporter-shaped series
 * (see backblaze.h).
 *
 * Per file, the header is turned into a column plan (what each column is and,
 * for SMART columns, the label values of its series), so a row costs one
 * pass over its bytes: split, parse numbers, add samples with label arrays
 * built from the plan. Strings that vary per row (serial, instance, model)
 * are copied once per row into the batch arena. */
#include "ingest/backblaze.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "ingest/failures.h"

typedef enum {
    COL_IGNORE = 0,
    COL_DATE,
    COL_SERIAL,
    COL_MODEL,
    COL_CAPACITY,
    COL_FAILURE,
    COL_DATACENTER,
    COL_CLUSTER,
    COL_VAULT,
    COL_POD,
    COL_SLOT,
    COL_SMART,
} col_kind_t;

typedef struct {
    col_kind_t kind;
    unsigned id;        /* SMART attribute id */
    int raw;            /* SMART: 1 raw, 0 normalized */
    const char *id_str; /* "194": in backblaze_t.idstr (batched labels outlive a header) */
    const char *name;   /* ATA name (static) */
    uint32_t slot;      /* SMART: index into a drive's series ids */
} col_t;

/* Series-id path (a sink with series_id/append_sids): each drive remembers
 * the id of each of its series, so a row costs one lookup by serial instead
 * of a label set per sample. Slots 0-3 are the per-drive series, then one
 * per (attribute id, raw/normalized) in order of first appearance. */
enum { SLOT_DEVICE, SLOT_CAPACITY, SLOT_TEMP, SLOT_POH, SLOT_SMART0 };

typedef struct {
    char *key;     /* serial \0 identity (instance \0 pod \0 model \0 slot) */
    uint32_t klen; /* bytes of key */
    uint32_t slen; /* bytes of serial */
    uint64_t h;    /* hash of serial */
    uint32_t *sid; /* per slot, 0 = not resolved yet */
    uint32_t nsid;
    uint32_t next; /* table index + 1 of the drive whose row followed this
                      one's last time, 0 = none (see drive_get) */
} drive_t;

/* A failed drive: the latest failure date seen for its serial. */
typedef struct {
    char *serial, *instance;
    int64_t t;
} failed_t;

struct backblaze {
    backblaze_options_t o;
    ingest_batch_t batch;
    backblaze_stats_t st;
    int want_header;
    uint64_t line;
    col_t *cols;
    uint8_t *kind8; /* cols[i].kind, a byte each (row_fast walks it per cell) */
    size_t ncols;
    size_t nsmart; /* COL_SMART columns */
    int have_loc; /* header has datacenter/vault/pod columns */
    const char **cell;
    uint32_t *cell_len;
    char *scratch; /* unquoted cells */
    size_t scratch_cap;
    char last_date[10];
    int64_t last_date_ms;
    failed_t *failed; /* open addressing on serial */
    size_t nfailed, failed_cap;
    int sticky;         /* a sink error: refuse further input */
    char idstr[256][4]; /* "0".."255" */
    /* series-id path */
    int use_sids;
    uint16_t slot_of[512]; /* (id << 1 | raw) -> slot + 1, 0 = none yet */
    uint32_t nslots;
    drive_t *drives; /* open addressing on the serial */
    size_t ndrives, drives_cap;
    size_t last_drive; /* table index + 1 of the previous row's drive, 0 = none */
    tsdb_sid_sample_t *sbuf;
    size_t sn, scap;
};

const char *backblaze_ata_name(unsigned id)
{
    static const struct {
        unsigned short id;
        const char *name;
    } t[] = {
        {1, "Raw_Read_Error_Rate"},
        {2, "Throughput_Performance"},
        {3, "Spin_Up_Time"},
        {4, "Start_Stop_Count"},
        {5, "Reallocated_Sector_Ct"},
        {7, "Seek_Error_Rate"},
        {8, "Seek_Time_Performance"},
        {9, "Power_On_Hours"},
        {10, "Spin_Retry_Count"},
        {11, "Calibration_Retry_Count"},
        {12, "Power_Cycle_Count"},
        {13, "Read_Soft_Error_Rate"},
        {22, "Helium_Level"},
        {170, "Available_Reservd_Space"},
        {171, "Program_Fail_Count"},
        {172, "Erase_Fail_Count"},
        {173, "Wear_Leveling_Count"},
        {174, "Unexpect_Power_Loss_Ct"},
        {175, "Program_Fail_Count_Chip"},
        {176, "Erase_Fail_Count_Chip"},
        {177, "Wear_Leveling_Count"},
        {178, "Used_Rsvd_Blk_Cnt_Chip"},
        {179, "Used_Rsvd_Blk_Cnt_Tot"},
        {180, "Unused_Rsvd_Blk_Cnt_Tot"},
        {181, "Program_Fail_Cnt_Total"},
        {182, "Erase_Fail_Count_Total"},
        {183, "Runtime_Bad_Block"},
        {184, "End-to-End_Error"},
        {187, "Reported_Uncorrect"},
        {188, "Command_Timeout"},
        {189, "High_Fly_Writes"},
        {190, "Airflow_Temperature_Cel"},
        {191, "G-Sense_Error_Rate"},
        {192, "Power-Off_Retract_Count"},
        {193, "Load_Cycle_Count"},
        {194, "Temperature_Celsius"},
        {195, "Hardware_ECC_Recovered"},
        {196, "Reallocated_Event_Count"},
        {197, "Current_Pending_Sector"},
        {198, "Offline_Uncorrectable"},
        {199, "UDMA_CRC_Error_Count"},
        {200, "Multi_Zone_Error_Rate"},
        {201, "Soft_Read_Error_Rate"},
        {202, "Data_Address_Mark_Errs"},
        {220, "Disk_Shift"},
        {222, "Loaded_Hours"},
        {223, "Load_Retry_Count"},
        {224, "Load_Friction"},
        {226, "Load-in_Time"},
        {232, "Available_Reservd_Space"},
        {233, "Media_Wearout_Indicator"},
        {240, "Head_Flying_Hours"},
        {241, "Total_LBAs_Written"},
        {242, "Total_LBAs_Read"},
        {250, "Read_Error_Retry_Rate"},
        {254, "Free_Fall_Sensor"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].id == id) return t[i].name;
    return "Unknown_Attribute";
}

void backblaze_options_init(backblaze_options_t *o)
{
    memset(o, 0, sizeof *o);
}

int backblaze_create(const backblaze_options_t *o, backblaze_t **out)
{
    if (!o || !out || !o->sink || !o->sink->append) return TSDB_EINVAL;
    backblaze_t *p = calloc(1, sizeof *p);
    if (!p) return TSDB_ENOMEM;
    p->o = *o;
    if (!p->o.batch_samples) p->o.batch_samples = 65536;
    ingest_batch_init(&p->batch);
    p->want_header = 1;
    p->use_sids = o->sid_ops && o->sid_ops->series_id && o->sid_ops->append_sids;
    p->nslots = SLOT_SMART0;
    if (p->use_sids) {
        p->scap = p->o.batch_samples + BACKBLAZE_MAX_COLUMNS + 8;
        p->sbuf = malloc(p->scap * sizeof *p->sbuf);
        if (!p->sbuf) {
            free(p);
            return TSDB_ENOMEM;
        }
    }
    for (unsigned i = 0; i < 256; i++)
        snprintf(p->idstr[i], sizeof p->idstr[i], "%u", i);
    *out = p;
    return 0;
}

void backblaze_destroy(backblaze_t *p)
{
    if (!p) return;
    ingest_batch_free(&p->batch);
    free(p->cols);
    free(p->kind8);
    free(p->cell);
    free(p->cell_len);
    free(p->scratch);
    for (size_t i = 0; i < p->failed_cap; i++) {
        free(p->failed[i].serial);
        free(p->failed[i].instance);
    }
    free(p->failed);
    for (size_t i = 0; i < p->drives_cap; i++) {
        free(p->drives[i].key);
        free(p->drives[i].sid);
    }
    free(p->drives);
    free(p->sbuf);
    free(p);
}

void backblaze_file_begin(backblaze_t *p)
{
    p->want_header = 1;
    p->line = 0;
    p->st.columns_ignored = 0;
}

void backblaze_stats(const backblaze_t *p, backblaze_stats_t *st)
{
    *st = p->st;
}

static void report(backblaze_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(backblaze_t *p, const char *fmt, ...)
{
    if (!p->o.on_error) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->o.on_error(p->o.err_ctx, p->line, msg);
}

/* The comma scan of both row parsers (split_plain, row_fast): END(pos) at
 * each comma of s[0..len) in order, then at len; QUOTE (which leaves the
 * function) at a quote. 16 bytes at a time, one bit per comma: a quarter's
 * rows have ~200 mostly blank cells, and a memchr call per cell was most of
 * the parse. */
#ifdef __SSE2__
#define COMMA_SCAN_WIDE(s, len, i_, QUOTE, END)                                                    \
    do {                                                                                           \
        const __m128i vc_ = _mm_set1_epi8(','), vq_ = _mm_set1_epi8('"');                          \
        for (; i_ + 16 <= (len); i_ += 16) {                                                       \
            __m128i b_ = _mm_loadu_si128((const __m128i *)(const void *)((s) + i_));               \
            if (_mm_movemask_epi8(_mm_cmpeq_epi8(b_, vq_))) QUOTE;                                 \
            unsigned m_ = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(b_, vc_));                    \
            for (; m_; m_ &= m_ - 1)                                                               \
                END(i_ + (size_t)__builtin_ctz(m_));                                               \
        }                                                                                          \
    } while (0)
#else
#define COMMA_SCAN_WIDE(s, len, i_, QUOTE, END) ((void)0)
#endif
#define COMMA_SCAN(s, len, QUOTE, END)                                                             \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        COMMA_SCAN_WIDE(s, len, i_, QUOTE, END); /* then the last < 16 bytes */                    \
        for (; i_ < (len); i_++) {                                                                 \
            if ((s)[i_] == '"') QUOTE;                                                             \
            if ((s)[i_] == ',') END(i_);                                                           \
        }                                                                                          \
        END(len);                                                                                  \
    } while (0)

/* Split a line without quotes (every row of the public files). -3 when the
 * line has a quote (split() handles it). */
static long split_plain(backblaze_t *p, const char *s, size_t len, size_t max)
{
    long n = 0;
    size_t start = 0;
#define CELL_END(pos)                                                                              \
    do {                                                                                           \
        if ((size_t)n < max) {                                                                     \
            p->cell[n] = s + start;                                                                \
            p->cell_len[n] = (uint32_t)((pos) - start);                                            \
        }                                                                                          \
        n++;                                                                                       \
        start = (pos) + 1;                                                                         \
    } while (0)
    COMMA_SCAN(s, len, return -3, CELL_END);
#undef CELL_END
    return n;
}

/* Split a CSV line into cells. Quoted cells ("a,b", "" for a quote) are
 * unquoted into scratch. Returns the number of cells, or -1 for an
 * unterminated quote; at most max cells are stored (more are counted). */
static long split(backblaze_t *p, const char *s, size_t len, size_t max)
{
    long fast = split_plain(p, s, len, max);
    if (fast != -3) return fast;
    const char *e = s + len;
    long n = 0;
    size_t so = 0;
    if (p->scratch_cap < len + 1) {
        char *ns = realloc(p->scratch, len + 1);
        if (!ns) return -2;
        p->scratch = ns;
        p->scratch_cap = len + 1;
    }
    for (;;) {
        const char *c = s;
        size_t cl;
        if (s < e && *s == '"') {
            char *o = p->scratch + so;
            const char *q = s + 1;
            for (;;) {
                if (q >= e) return -1;
                if (*q == '"') {
                    if (q + 1 < e && q[1] == '"') {
                        *o++ = '"';
                        q += 2;
                        continue;
                    }
                    q++;
                    break;
                }
                *o++ = *q++;
            }
            c = p->scratch + so;
            cl = (size_t)(o - c);
            so += cl;
            s = q;
            if (s < e && *s != ',') return -1;
        } else {
            const char *comma = memchr(s, ',', (size_t)(e - s));
            cl = (size_t)((comma ? comma : e) - s);
            s += cl;
        }
        if ((size_t)n < max) {
            p->cell[n] = c;
            p->cell_len[n] = (uint32_t)cl;
        }
        n++;
        if (s >= e) break;
        s++; /* comma */
    }
    return n;
}

static int parse_header(backblaze_t *p, const char *s, size_t len)
{
    /* Cells arrays sized for the largest header allowed. */
    if (!p->cell) {
        p->cell = malloc(BACKBLAZE_MAX_COLUMNS * sizeof *p->cell);
        p->cell_len = malloc(BACKBLAZE_MAX_COLUMNS * sizeof *p->cell_len);
        if (!p->cell || !p->cell_len) return TSDB_ENOMEM;
    }
    long n = split(p, s, len, BACKBLAZE_MAX_COLUMNS);
    if (n == -2) return TSDB_ENOMEM;
    if (n < 0) {
        report(p, "header: unterminated quote");
        return TSDB_EINVAL;
    }
    if (n > BACKBLAZE_MAX_COLUMNS) {
        report(p, "header: %ld columns, more than %d", n, BACKBLAZE_MAX_COLUMNS);
        return TSDB_EINVAL;
    }
    free(p->cols);
    free(p->kind8);
    p->cols = calloc((size_t)n, sizeof *p->cols);
    p->kind8 = calloc((size_t)n, 1);
    p->ncols = 0;
    if (!p->cols || !p->kind8) return TSDB_ENOMEM;
    p->ncols = (size_t)n;
    p->nsmart = 0;
    p->have_loc = 0;
    p->st.columns_ignored = 0;
    int have_date = 0, have_serial = 0;
    static const struct {
        const char *name;
        col_kind_t kind;
    } fixed[] = {
        {"date", COL_DATE},          {"serial_number", COL_SERIAL},
        {"model", COL_MODEL},        {"capacity_bytes", COL_CAPACITY},
        {"failure", COL_FAILURE},    {"datacenter", COL_DATACENTER},
        {"cluster_id", COL_CLUSTER}, {"vault_id", COL_VAULT},
        {"pod_id", COL_POD},         {"pod_slot_num", COL_SLOT},
    };
    for (long i = 0; i < n; i++) {
        char name[64];
        size_t l = p->cell_len[i];
        const char *c = p->cell[i];
        while (l && (*c == ' ' || *c == '\t'))
            c++, l--;
        while (l && (c[l - 1] == ' ' || c[l - 1] == '\t'))
            l--;
        if (l >= sizeof name) l = sizeof name - 1;
        memcpy(name, c, l);
        name[l] = 0;
        col_t *col = &p->cols[i];
        for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
            if (!strcmp(name, fixed[k].name)) {
                for (long j = 0; j < i; j++)
                    if (p->cols[j].kind == fixed[k].kind) {
                        report(p, "header: column %s appears twice", name);
                        return TSDB_EINVAL;
                    }
                col->kind = fixed[k].kind;
            }
        unsigned id;
        char kind[16];
        int used;
        if (col->kind == COL_IGNORE &&
            sscanf(name, "smart_%3u_%15[a-z]%n", &id, kind, &used) == 2 &&
            (size_t)used == strlen(name) && id <= 255 &&
            (!strcmp(kind, "raw") || !strcmp(kind, "normalized"))) {
            col->raw = kind[0] == 'r';
            if (col->raw || !p->o.skip_normalized) {
                col->kind = COL_SMART;
                col->id = id;
                unsigned sk = id << 1 | (unsigned)col->raw;
                if (!p->slot_of[sk]) p->slot_of[sk] = (uint16_t)(++p->nslots);
                col->slot = p->slot_of[sk] - 1u;
                col->id_str = p->idstr[id];
                col->name = backblaze_ata_name(id);
            }
        }
        if (col->kind == COL_DATE) have_date = 1;
        if (col->kind == COL_SERIAL) have_serial = 1;
        if (col->kind == COL_DATACENTER || col->kind == COL_VAULT || col->kind == COL_POD)
            p->have_loc = 1;
        if (col->kind == COL_IGNORE) p->st.columns_ignored++;
        if (col->kind == COL_SMART) p->nsmart++;
        p->kind8[i] = (uint8_t)col->kind;
    }
    if (!have_date || !have_serial) {
        report(p, "header: no %s column (is this a Backblaze drive-stats CSV?)",
               !have_date ? "date" : "serial_number");
        return TSDB_EINVAL;
    }
    return 0;
}

/* A numeric cell. Fast path for digits with an optional ".0…" (the form of
 * every Backblaze value); anything else through strtod on a copy. */
static int parse_num(const char *s, size_t n, double *out)
{
    size_t i = 0;
    int neg = 0;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    uint64_t v = 0;
    size_t nd = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && nd < 19) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        i++;
        nd++;
    }
    if (nd && (i == n || s[i] == '.')) {
        size_t j = i;
        if (j < n) {
            j++;
            while (j < n && s[j] == '0')
                j++;
        }
        if (j == n && (i == n || j > i + 1 || i + 1 == n)) {
            if (v <= (UINT64_C(1) << 53)) {
                *out = neg ? -(double)v : (double)v;
                return 0;
            }
        }
    }
    char buf[BACKBLAZE_MAX_FIELD + 1];
    if (!n || n > BACKBLAZE_MAX_FIELD) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e;
    double d = strtod(buf, &e);
    if (e != buf + n || d != d) return -1; /* no NaN from the data */
    *out = d;
    return 0;
}

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

static int failed_note(backblaze_t *p, const char *serial, size_t sl, const char *inst, size_t il,
                       int64_t t)
{
    if (p->nfailed * 2 >= p->failed_cap) {
        size_t nc = p->failed_cap ? p->failed_cap * 2 : 256;
        failed_t *nf = calloc(nc, sizeof *nf);
        if (!nf) return -1;
        for (size_t i = 0; i < p->failed_cap; i++)
            if (p->failed[i].serial) {
                size_t h = hash_str(p->failed[i].serial, strlen(p->failed[i].serial)) & (nc - 1);
                while (nf[h].serial)
                    h = (h + 1) & (nc - 1);
                nf[h] = p->failed[i];
            }
        free(p->failed);
        p->failed = nf;
        p->failed_cap = nc;
    }
    size_t h = hash_str(serial, sl) & (p->failed_cap - 1);
    while (p->failed[h].serial) {
        failed_t *f = &p->failed[h];
        if (strlen(f->serial) == sl && !memcmp(f->serial, serial, sl)) {
            if (t >= f->t) {
                char *ni = strndup(inst, il);
                if (!ni) return -1;
                free(f->instance);
                f->instance = ni;
                f->t = t;
            }
            return 0;
        }
        h = (h + 1) & (p->failed_cap - 1);
    }
    char *ns = strndup(serial, sl), *ni = strndup(inst, il);
    if (!ns || !ni) {
        free(ns);
        free(ni);
        return -1;
    }
    p->failed[h] = (failed_t){ns, ni, t};
    p->nfailed++;
    return 0;
}

static tsdb_label_t L(const char *n, const char *v, size_t vl)
{
    tsdb_label_t l = {{n, (uint32_t)strlen(n)}, {v, (uint32_t)vl}};
    return l;
}

#define LS(n, v) L(n, v, sizeof v - 1)

/* ---- series-id path ------------------------------------------------------ */

/* The drive with this serial; its identity (the label values besides the
 * serial) is ident: when it differs from the one remembered (the drive moved
 * or was relabelled), its series are different ones and are resolved anew. */
static drive_t *drive_get(backblaze_t *p, const char *serial, size_t sl, const char *ident,
                          size_t idl)
{
    if ((p->ndrives + 1) * 2 > p->drives_cap) {
        size_t nc = p->drives_cap ? p->drives_cap * 2 : 4096;
        drive_t *nd = calloc(nc, sizeof *nd);
        if (!nd) return NULL;
        for (size_t i = 0; i < p->drives_cap; i++)
            if (p->drives[i].key) {
                size_t h = p->drives[i].h & (nc - 1);
                while (nd[h].key)
                    h = (h + 1) & (nc - 1);
                nd[h] = p->drives[i];
                nd[h].next = 0; /* indexes change */
            }
        free(p->drives);
        p->drives = nd;
        p->drives_cap = nc;
        p->last_drive = 0;
    }
    uint64_t hv = hash_str(serial, sl);
    size_t h = hv & (p->drives_cap - 1);
    drive_t *d;
    for (;;) {
        d = &p->drives[h];
        if (!d->key) break;
        if (d->h == hv && d->slen == sl && !memcmp(d->key, serial, sl)) break;
        h = (h + 1) & (p->drives_cap - 1);
    }
    size_t klen = sl + 1 + idl;
    if (!d->key || d->klen != klen || memcmp(d->key + sl + 1, ident, idl)) {
        char *nk = malloc(klen);
        if (!nk) return NULL;
        memcpy(nk, serial, sl);
        nk[sl] = 0;
        memcpy(nk + sl + 1, ident, idl);
        if (!d->key) p->ndrives++;
        free(d->key);
        d->key = nk;
        d->klen = (uint32_t)klen;
        d->slen = (uint32_t)sl;
        d->h = hv;
        if (d->sid) memset(d->sid, 0, d->nsid * sizeof *d->sid);
    }
    if (d->nsid < p->nslots) {
        uint32_t *ns = realloc(d->sid, p->nslots * sizeof *ns);
        if (!ns) return NULL;
        memset(ns + d->nsid, 0, (p->nslots - d->nsid) * sizeof *ns);
        d->sid = ns;
        d->nsid = p->nslots;
    }
    /* Day files list the drives in the same order every day: the drive that
     * followed this one last time is likely next again. Its table entry was
     * fetched a row ago (below): fetch its key and ids now, and the entry
     * of the one after it. With tens of thousands of drives these are cache
     * misses otherwise (~20 % of a row's parsing). A wrong guess costs
     * nothing but the fetches. */
    if (p->last_drive && p->last_drive - 1 != h) p->drives[p->last_drive - 1].next = (uint32_t)h + 1;
    p->last_drive = h + 1;
    if (d->next && d->next <= p->drives_cap) {
        const drive_t *a = &p->drives[d->next - 1];
        if (a->key) __builtin_prefetch(a->key);
        if (a->sid)
            for (uint32_t k = 0; k < a->nsid; k += 16) __builtin_prefetch(a->sid + k);
        if (a->next && a->next <= p->drives_cap) __builtin_prefetch(&p->drives[a->next - 1]);
    }
    return d;
}

/* Queue one sample of the drive's series in slot (resolved from lab[0..nl)
 * the first time). 0, or the sink's error. */
static int sid_add(backblaze_t *p, drive_t *d, uint32_t slot, const tsdb_label_t *lab,
                   uint32_t nl, int64_t t, double v)
{
    uint32_t sid = d->sid[slot];
    if (!sid) {
        tsdb_sid_t id;
        int created = 0;
        int rc = p->o.sid_ops->series_id(p->o.sink->ctx, lab, nl, &id, &created);
        if (rc == TSDB_EINVAL) { /* labels the store refuses (e.g. a NUL byte) */
            if (p->o.totals) {
                p->o.totals->samples++;
                p->o.totals->invalid++;
            }
            return 0;
        }
        if (rc) return rc;
        if (created && p->o.totals) p->o.totals->series_created++;
        d->sid[slot] = sid = (uint32_t)id;
    }
    tsdb_sid_sample_t *o = &p->sbuf[p->sn++];
    o->sid = sid;
    o->t = t;
    o->v = v;
    return 0;
}

static int sids_flush(backblaze_t *p)
{
    if (!p->sn) return 0;
    tsdb_append_result_t res;
    memset(&res, 0, sizeof res);
    int rc = p->o.sid_ops->append_sids(p->o.sink->ctx, p->sbuf, p->sn, &res);
    ingest_totals_t *tot = p->o.totals;
    if (!rc && tot) {
        tot->samples += p->sn;
        tot->stored += res.stored;
        tot->duplicate += res.duplicate;
        tot->conflict += res.conflict;
        tot->too_old += res.too_old;
        tot->invalid += res.invalid;
        tot->batches++;
    }
    p->sn = 0;
    return rc;
}

typedef struct {
    int64_t t;
    const char *serial, *model, *slot, *inst, *pod;
    size_t sl, ml, slotl, il, podl;
    int have_cap;
    double cap;
} row_t;

/* One row's cells as both parsing paths leave them: the fixed columns by
 * kind (f[k] NULL: the file has no such column), the checked date, capacity
 * and failure flag, then the SMART values present, in column order, with
 * their column index. */
typedef struct {
    const char *f[COL_SMART];
    size_t fl[COL_SMART];
    int64_t t;
    int failure, have_cap;
    double cap;
    size_t nv;
    uint16_t vcol[BACKBLAZE_MAX_COLUMNS];
    double vals[BACKBLAZE_MAX_COLUMNS];
} cells_t;

static int emit_sids(backblaze_t *p, const row_t *r, const cells_t *cv)
{
    char ident[4 * (3 * BACKBLAZE_MAX_FIELD + 4)];
    size_t idl = 0;
#define IDENT_PUT(str, n)                                                                          \
    do {                                                                                           \
        if (n) memcpy(ident + idl, str, n);                                                        \
        idl += n;                                                                                  \
        ident[idl++] = 0;                                                                          \
    } while (0)
    IDENT_PUT(r->inst, r->il);
    IDENT_PUT(r->pod, r->podl);
    IDENT_PUT(r->model, r->ml);
    IDENT_PUT(r->slot, r->slotl);
#undef IDENT_PUT
    drive_t *d = drive_get(p, r->serial, r->sl, ident, idl);
    if (!d) return TSDB_ENOMEM;
    tsdb_label_t s_lab[12];
    uint32_t bn = 0;
    s_lab[bn++] = LS("__name__", "smartctl_device_attribute");
    s_lab[bn++] = L("instance", r->inst, r->il);
    s_lab[bn++] = L("device", r->serial, r->sl);
    if (r->pod) s_lab[bn++] = L("pod", r->pod, r->podl);
    double temp = 0, poh = 0;
    int have_temp = 0, have_poh = 0, rc;
    for (size_t k = 0; k < cv->nv; k++) {
        const col_t *c = &p->cols[cv->vcol[k]];
        double v = cv->vals[k];
        if (!d->sid[c->slot]) {
            s_lab[bn] = L("attribute_id", c->id_str, strlen(c->id_str));
            s_lab[bn + 1] = L("attribute_name", c->name, strlen(c->name));
            s_lab[bn + 2] =
                c->raw ? LS("attribute_value_type", "raw") : LS("attribute_value_type", "value");
        }
        if ((rc = sid_add(p, d, c->slot, s_lab, bn + 3, r->t, v))) return rc;
        p->st.values++;
        if (c->raw && c->id == 194) temp = v, have_temp = 1;
        if (c->raw && c->id == 9) poh = v, have_poh = 1;
    }
    s_lab[0] = LS("__name__", "smartctl_device");
    uint32_t k = bn;
    if (r->ml) s_lab[k++] = L("model_name", r->model, r->ml);
    s_lab[k++] = L("serial_number", r->serial, r->sl);
    if (r->slotl) s_lab[k++] = L("slot", r->slot, r->slotl);
    if ((rc = sid_add(p, d, SLOT_DEVICE, s_lab, k, r->t, 1.0))) return rc;
    if (r->have_cap) {
        s_lab[0] = LS("__name__", "smartctl_device_capacity_bytes");
        if ((rc = sid_add(p, d, SLOT_CAPACITY, s_lab, bn, r->t, r->cap))) return rc;
    }
    if (have_temp) {
        s_lab[0] = LS("__name__", "smartctl_device_temperature");
        s_lab[bn] = LS("temperature_type", "current");
        if ((rc = sid_add(p, d, SLOT_TEMP, s_lab, bn + 1, r->t, temp))) return rc;
    }
    if (have_poh) {
        s_lab[0] = LS("__name__", "smartctl_device_power_on_seconds");
        if ((rc = sid_add(p, d, SLOT_POH, s_lab, bn, r->t, poh * 3600.0))) return rc;
    }
    return 0;
}

/* The common case in one pass over the row's bytes: split, file each cell
 * by its column's kind and parse the SMART numbers as they go by (the
 * general path below makes three passes over a quarter's ~200 cells, most
 * of them blank). Only a row with no quote and nothing wrong in it is taken:
 * 0 = c is filled; 1 = the general path is to parse the row again, and
 * report what is wrong with it. Leaves no trace in p but the date cache. */
static int row_fast(backblaze_t *p, const char *s, size_t len, cells_t *c)
{
    const uint8_t *kind = p->kind8;
    const size_t ncols = p->ncols;
    size_t n = 0, start = 0, nv = 0;
    memset(c->f, 0, sizeof c->f);
    memset(c->fl, 0, sizeof c->fl);
#define CELL_END(pos)                                                                              \
    do {                                                                                           \
        size_t cl_ = (pos) - start;                                                                \
        if (n == ncols) return 1;                                                                  \
        unsigned k_ = kind[n];                                                                     \
        if (k_ == COL_SMART) {                                                                     \
            if (cl_) {                                                                             \
                if (cl_ > BACKBLAZE_MAX_FIELD || parse_num(s + start, cl_, &c->vals[nv]))          \
                    return 1;                                                                      \
                c->vcol[nv++] = (uint16_t)n;                                                       \
            }                                                                                      \
        } else if (k_ != COL_IGNORE) {                                                             \
            c->f[k_] = s + start;                                                                  \
            c->fl[k_] = cl_;                                                                       \
        }                                                                                          \
        n++;                                                                                       \
        start = (pos) + 1;                                                                         \
    } while (0)
    COMMA_SCAN(s, len, return 1, CELL_END);
#undef CELL_END
    if (n != ncols) return 1;
    c->nv = nv;
    /* the general path's checks, without its reports */
    const char *d = c->f[COL_DATE];
    size_t dl = c->fl[COL_DATE];
    if (dl == 10 && !memcmp(d, p->last_date, 10)) {
        c->t = p->last_date_ms;
    } else {
        if (!d || ingest_date_parse(d, dl, &c->t)) return 1;
        if (dl == 10) {
            memcpy(p->last_date, d, 10);
            p->last_date_ms = c->t;
        }
    }
    c->have_cap = 0;
    c->cap = 0;
    if (c->fl[COL_CAPACITY]) {
        if (parse_num(c->f[COL_CAPACITY], c->fl[COL_CAPACITY], &c->cap)) return 1;
        c->have_cap = c->cap >= 0; /* Backblaze writes -1 when unknown */
    }
    c->failure = 0;
    if (c->f[COL_FAILURE]) {
        const char *fv = c->f[COL_FAILURE];
        if (c->fl[COL_FAILURE] != 1 || (fv[0] != '0' && fv[0] != '1')) return 1;
        c->failure = fv[0] == '1';
    }
    size_t sl = c->fl[COL_SERIAL];
    if (!sl || sl > BACKBLAZE_MAX_FIELD) return 1;
    return 0;
}

/* Any row: split (quotes too), then a pass for the fixed columns and the
 * checks, and one for the numbers, reporting the first problem in column
 * order. 0 = c is filled, 1 = reported, or an error. */
static int row_general(backblaze_t *p, const char *s, size_t len, cells_t *cv)
{
    long n = split(p, s, len, p->ncols);
    if (n == -2) return TSDB_ENOMEM;
    if (n < 0) {
        report(p, "unterminated quote");
        return 1;
    }
    if ((size_t)n != p->ncols) {
        report(p, "%ld fields, the header has %zu", n, p->ncols);
        return 1;
    }
    /* Pass 1: identity fields and validation (nothing added yet, so a bad
     * row leaves no trace in the batch). */
    memset(cv->f, 0, sizeof cv->f);
    memset(cv->fl, 0, sizeof cv->fl);
    cv->t = 0;
    cv->failure = cv->have_cap = 0;
    cv->cap = 0;
    for (size_t i = 0; i < p->ncols; i++) {
        const char *c = p->cell[i];
        size_t cl = p->cell_len[i];
        col_kind_t k = p->cols[i].kind;
        if (k != COL_IGNORE && k != COL_SMART) {
            cv->f[k] = c;
            cv->fl[k] = cl;
        }
        switch (k) {
        case COL_DATE:
            if (cl == 10 && !memcmp(c, p->last_date, 10)) {
                cv->t = p->last_date_ms;
            } else if (ingest_date_parse(c, cl, &cv->t)) {
                report(p, "bad date \"%.*s\" (want YYYY-MM-DD)", (int)(cl > 40 ? 40 : cl), c);
                return 1;
            } else if (cl == 10) {
                memcpy(p->last_date, c, 10);
                p->last_date_ms = cv->t;
            }
            break;
        case COL_CAPACITY:
            if (cl) {
                if (parse_num(c, cl, &cv->cap)) {
                    report(p, "capacity_bytes \"%.*s\" is not a number", (int)(cl > 40 ? 40 : cl),
                           c);
                    return 1;
                }
                cv->have_cap = cv->cap >= 0; /* Backblaze writes -1 when unknown */
            }
            break;
        case COL_FAILURE:
            if (cl == 1 && (c[0] == '0' || c[0] == '1'))
                cv->failure = c[0] == '1';
            else {
                report(p, "failure \"%.*s\" is not 0 or 1", (int)(cl > 40 ? 40 : cl), c);
                return 1;
            }
            break;
        case COL_SMART:
            if (cl && cl > BACKBLAZE_MAX_FIELD) {
                report(p, "column %zu: cell longer than %d bytes", i + 1, BACKBLAZE_MAX_FIELD);
                return 1;
            }
            break;
        default:
            break;
        }
    }
    size_t sl = cv->fl[COL_SERIAL];
    if (!sl || sl > BACKBLAZE_MAX_FIELD) {
        if (sl)
            report(p, "serial_number longer than %d bytes", BACKBLAZE_MAX_FIELD);
        else
            report(p, "empty serial_number");
        return 1;
    }
    /* Numbers are checked before anything is added. */
    size_t nv = 0;
    for (size_t i = 0; i < p->ncols; i++) {
        if (p->cols[i].kind != COL_SMART) continue;
        if (!p->cell_len[i]) {
            p->st.blanks++;
            continue;
        }
        if (parse_num(p->cell[i], p->cell_len[i], &cv->vals[nv])) {
            report(p, "column %zu (smart_%u_%s): \"%.*s\" is not a number", i + 1, p->cols[i].id,
                   p->cols[i].raw ? "raw" : "normalized",
                   (int)(p->cell_len[i] > 40 ? 40 : p->cell_len[i]), p->cell[i]);
            return 1;
        }
        cv->vcol[nv++] = (uint16_t)i;
    }
    cv->nv = nv;
    return 0;
}

static int parse_row(backblaze_t *p, const char *s, size_t len)
{
    cells_t cv;
    if (p->o.general_parse || row_fast(p, s, len, &cv)) {
        int rc = row_general(p, s, len, &cv);
        if (rc) return rc;
    } else {
        p->st.blanks += p->nsmart - cv.nv;
    }
    const int64_t t = cv.t;
    const int failure = cv.failure, have_cap = cv.have_cap;
    const double cap = cv.cap;
    const char *serial = cv.f[COL_SERIAL], *model = cv.f[COL_MODEL], *dc = cv.f[COL_DATACENTER];
    const char *vault = cv.f[COL_VAULT], *pod = cv.f[COL_POD], *slot = cv.f[COL_SLOT];
    const size_t sl = cv.fl[COL_SERIAL], ml = cv.fl[COL_MODEL], dcl = cv.fl[COL_DATACENTER];
    const size_t vl = cv.fl[COL_VAULT], pl = cv.fl[COL_POD], slotl = cv.fl[COL_SLOT];
    if (p->use_sids) {
        row_t r = {t, serial, model, slot, NULL, NULL, sl, ml, slotl, 0, 0, have_cap, cap};
        char tmp[3 * BACKBLAZE_MAX_FIELD + 4];
        if (p->have_loc && (dcl || vl || pl)) {
            int k = snprintf(tmp, sizeof tmp, "%.*s/%.*s/%.*s", (int)(dcl > 256 ? 256 : dcl),
                             dc ? dc : "", (int)(vl > 256 ? 256 : vl), vault ? vault : "",
                             (int)(pl > 256 ? 256 : pl), pod ? pod : "");
            r.inst = tmp;
            r.il = (size_t)k;
            r.pod = tmp;
            r.podl = (dcl > 256 ? 256 : dcl) + 1 + (vl > 256 ? 256 : vl);
        } else if (p->o.instance && *p->o.instance) {
            r.inst = p->o.instance;
            r.il = strlen(r.inst);
        } else {
            r.inst = serial;
            r.il = sl;
        }
        int rc = emit_sids(p, &r, &cv);
        if (rc) return rc;
        if (failure) {
            p->st.rows_failed++;
            if (failed_note(p, serial, sl, r.inst, r.il, t)) return TSDB_ENOMEM;
        }
        p->st.rows++;
        return 0;
    }
    /* Identity strings, copied once. */
    ingest_batch_t *b = &p->batch;
    const char *dev = ingest_batch_str(b, serial, sl);
    const char *inst, *podl = NULL;
    size_t il, podll = 0;
    if (p->have_loc && (dcl || vl || pl)) {
        char tmp[3 * BACKBLAZE_MAX_FIELD + 4];
        int k = snprintf(tmp, sizeof tmp, "%.*s/%.*s/%.*s", (int)(dcl > 256 ? 256 : dcl),
                         dc ? dc : "", (int)(vl > 256 ? 256 : vl), vault ? vault : "",
                         (int)(pl > 256 ? 256 : pl), pod ? pod : "");
        il = (size_t)k;
        inst = ingest_batch_str(b, tmp, il);
        size_t podlen = (dcl > 256 ? 256 : dcl) + 1 + (vl > 256 ? 256 : vl);
        podl = ingest_batch_str(b, tmp, podlen);
        podll = podlen;
    } else if (p->o.instance && *p->o.instance) {
        inst = p->o.instance;
        il = strlen(inst);
    } else {
        inst = dev;
        il = sl;
    }
    if (!dev || !inst || (p->have_loc && (dcl || vl || pl) && !podl)) return TSDB_ENOMEM;
    tsdb_label_t lab[8];
    uint32_t nb = 0;
    lab[nb++] = L("instance", inst, il);
    lab[nb++] = L("device", dev, sl);
    if (podl) lab[nb++] = L("pod", podl, podll);
    /* lab[0..nb) is the base set; each series appends its own. */
    tsdb_label_t s_lab[12];
    memcpy(s_lab + 1, lab, nb * sizeof *lab);
    uint32_t bn = nb + 1;
    double temp = 0, poh = 0;
    int have_temp = 0, have_poh = 0;
    for (size_t q = 0; q < cv.nv; q++) {
        const col_t *c = &p->cols[cv.vcol[q]];
        const double v = cv.vals[q];
        s_lab[0] = LS("__name__", "smartctl_device_attribute");
        s_lab[bn] = L("attribute_id", c->id_str, strlen(c->id_str));
        s_lab[bn + 1] = L("attribute_name", c->name, strlen(c->name));
        s_lab[bn + 2] =
            c->raw ? LS("attribute_value_type", "raw") : LS("attribute_value_type", "value");
        if (ingest_batch_add(b, s_lab, bn + 3, t, v)) return TSDB_ENOMEM;
        p->st.values++;
        if (c->raw && c->id == 194) temp = v, have_temp = 1;
        if (c->raw && c->id == 9) poh = v, have_poh = 1;
    }
    s_lab[0] = LS("__name__", "smartctl_device");
    uint32_t k = bn;
    const char *mdl = ml ? ingest_batch_str(b, model, ml) : NULL;
    if (ml && !mdl) return TSDB_ENOMEM;
    if (ml) s_lab[k++] = L("model_name", mdl, ml);
    s_lab[k++] = L("serial_number", dev, sl);
    if (slotl) {
        const char *sc = ingest_batch_str(b, slot, slotl);
        if (!sc) return TSDB_ENOMEM;
        s_lab[k++] = L("slot", sc, slotl);
    }
    if (ingest_batch_add(b, s_lab, k, t, 1.0)) return TSDB_ENOMEM;
    if (have_cap) {
        s_lab[0] = LS("__name__", "smartctl_device_capacity_bytes");
        if (ingest_batch_add(b, s_lab, bn, t, cap)) return TSDB_ENOMEM;
    }
    if (have_temp) {
        s_lab[0] = LS("__name__", "smartctl_device_temperature");
        s_lab[bn] = LS("temperature_type", "current");
        if (ingest_batch_add(b, s_lab, bn + 1, t, temp)) return TSDB_ENOMEM;
    }
    if (have_poh) {
        s_lab[0] = LS("__name__", "smartctl_device_power_on_seconds");
        if (ingest_batch_add(b, s_lab, bn, t, poh * 3600.0)) return TSDB_ENOMEM;
    }
    if (failure) {
        p->st.rows_failed++;
        if (failed_note(p, serial, sl, inst, il, t)) return TSDB_ENOMEM;
    }
    p->st.rows++;
    return 0;
}

int backblaze_flush(backblaze_t *p)
{
    if (p->sticky) return p->sticky;
    int rc = sids_flush(p);
    if (!rc) rc = ingest_batch_flush(&p->batch, p->o.sink, p->o.totals);
    if (rc) p->sticky = rc;
    return rc;
}

int backblaze_line(backblaze_t *p, const char *s, size_t len)
{
    if (p->sticky) return p->sticky;
    p->line++;
    p->st.lines++;
    if (len && s[len - 1] == '\r') len--;
    if (p->want_header) {
        if (!len) return 0; /* blank lines before the header */
        int rc = parse_header(p, s, len);
        if (rc) return rc;
        p->want_header = 0;
        return 0;
    }
    if (!len) return 0;
    int rc = parse_row(p, s, len);
    if (rc == 1) {
        p->st.rows_skipped++;
        return 0;
    }
    if (rc) {
        p->sticky = rc;
        return rc;
    }
    if (ingest_batch_samples(&p->batch) >= p->o.batch_samples || p->sn >= p->o.batch_samples)
        return backblaze_flush(p);
    return 0;
}

static int failed_cmp(const void *a, const void *b)
{
    const failed_t *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return strcmp(x->serial, y->serial);
}

int backblaze_finish(backblaze_t *p)
{
    int rc = backblaze_flush(p);
    if (rc) return rc;
    /* Deterministic order: by time, then serial. Compact the table first. */
    size_t n = 0;
    for (size_t i = 0; i < p->failed_cap; i++)
        if (p->failed[i].serial) p->failed[n++] = p->failed[i];
    for (size_t i = n; i < p->failed_cap; i++)
        memset(&p->failed[i], 0, sizeof p->failed[i]);
    if (n > 1) qsort(p->failed, n, sizeof *p->failed, failed_cmp);
    for (size_t i = 0; i < n; i++) {
        failure_event_t e = {
            "disk", p->failed[i].instance, p->failed[i].serial, p->failed[i].serial,
            NULL,   "backblaze failure=1", p->failed[i].t};
        if (failure_event_add(&p->batch, &e)) return TSDB_ENOMEM;
        p->st.failure_events++;
    }
    /* The table is now unordered: it is not used again. */
    p->nfailed = 0;
    rc = backblaze_flush(p);
    return rc;
}
