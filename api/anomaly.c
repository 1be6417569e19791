/* anomaly.c — detection inside the server (see anomaly.h).
 *
 * Ingest threads serialise the selected, stored samples of each request into
 * the `fill` buffer (one lock per request); the worker swaps it with its
 * `work` buffer and scores without holding the queue lock. Memory is bounded
 * by 2 x queue_bytes plus one 256-byte state and the labels per series.
 *
 * Queue record (native endianness, 8-byte aligned):
 *
 *   u32 len (whole record)  u16 nlabels  u16 flags (DETECT_F_*)
 *   u32 nsamples            u32 0        u64 series hash
 *   nsamples x { i64 t, f64 v }
 *   nlabels x { u32 nlen, u32 vlen, name bytes, value bytes }   padded to 8
 *
 * State file <storage>/detect.state (little-endian; written to .tmp,
 * fsync'd, renamed):
 *
 *   "AUGDET01"  u32 version (1)  u32 nseries
 *   per series: u16 nlabels, { u32 nlen, name, u32 vlen, value } x nlabels,
 *               DETECT_STATE_BYTES state, f32 alarm_score, i64 alarm_t,
 *               f64 alarm_x, f64 alarm_expected
 *   u64 checksum of everything before it
 */
#include "api/anomaly.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "api/api_int.h"
#include "api/log.h"
#include "models/detect.h"
#include "models/nab.h"

#define MIB ((size_t)1 << 20)
#define NAME_CACHE 4096

void api_detect_config_init(api_detect_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->enabled = 1;
    c->selector = API_DETECT_DEFAULT_SELECTOR;
}

/* ---- hashing ----------------------------------------------------------- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *s = p;
    uint64_t h = seed ^ (n * UINT64_C(0x9e3779b97f4a7c15));
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix64(w)) * UINT64_C(0x9e3779b97f4a7c15);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w ^ ((uint64_t)n << 56));
}

/* ---- per-series and per-instance state (worker) ---------------------- */

typedef struct {
    detect_state_t st;
    uint64_t hash;
    char *blob;        /* label bytes: names and values, each NUL-terminated */
    tsdb_label_t *out; /* score series labels (point into blob / statics) */
    uint32_t nout;
    uint32_t nlabels; /* original labels (first nlabels pairs of blob) */
    int32_t inst;     /* instance index or -1 */
    uint8_t active;   /* counted as anomalous in its instance */
    float score;      /* latest score */
    float w_score;    /* last score written to the store */
    int64_t w_t;      /* when (INT64_MIN: never) */
    float alarm_score;
    int64_t last_t, alarm_t;
    double alarm_x, alarm_exp;
} slot_t;

typedef struct {
    char *value;
    tsdb_label_t lab[2];
    uint32_t total, active;
    int64_t t;   /* latest sample time seen for the instance */
    int64_t t_emitted; /* time of the last rate sample written */
    int touched; /* emit a rate sample after this batch */
} inst_t;

struct api_detect {
    api_detect_config_t cfg;
    tsdb_t *db;
    char *state_path;
    pcre2_code *re;
    _Atomic uint64_t name_cache[NAME_CACHE]; /* name hash | selected bit */

    pthread_mutex_t q_mu;
    pthread_cond_t q_cv, done_cv;
    tbuf_t fill, work;
    uint64_t enq_seq, done_seq;
    int stop;
    pthread_t thr;
    int thr_started;

    pthread_mutex_t map_mu; /* slots, instances (worker writes, handler reads) */
    slot_t *slots;
    size_t nslots, slots_cap;
    uint32_t *tab; /* slot index + 1, open addressing */
    size_t tab_cap;
    inst_t *inst;
    size_t ninst, inst_cap;

    /* worker scratch, reused */
    tsdb_series_in_t *os;
    size_t os_n, os_cap;
    tsdb_sample_t *osamp;
    size_t osamp_n, osamp_cap;
    size_t *os_off;
    uint64_t last_persist_ns;

    _Atomic uint64_t n_samples, n_dropped, n_alarms, n_saves, n_save_errors, n_append_errors,
        n_ignored, n_series;
};

/* Selected by name? Cached per name hash (benign races: whole-word atomics). */
static int name_selected(api_detect_t *d, const char *name, size_t len)
{
    uint64_t h = hash_bytes(name, len, 7) | 1u;
    _Atomic uint64_t *e = &d->name_cache[h & (NAME_CACHE - 1)];
    uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
    if (v && (v | 1u) == h) return (int)(v & 1u) ^ 1; /* stored: h with bit0 = !selected */
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return 0;
    int rc = pcre2_match(d->re, (PCRE2_SPTR)name, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    int sel = rc >= 0;
    atomic_store_explicit(e, sel ? h & ~(uint64_t)1 : h, memory_order_relaxed);
    return sel;
}

static int is_counter_name(const char *n, size_t len)
{
    static const char *const suf[] = {"_total", "_count", "_sum", "_bucket"};
    for (size_t i = 0; i < 4; i++) {
        size_t sl = strlen(suf[i]);
        if (len > sl && !memcmp(n + len - sl, suf[i], sl)) return 1;
    }
    return 0;
}

/* ---- ingest side -------------------------------------------------------- */

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

void api_detect_observe(api_detect_t *d, const tsdb_series_in_t *series, size_t n,
                        const uint8_t *outcomes)
{
    if (!d) return;
    size_t oi = 0;
    pthread_mutex_lock(&d->q_mu);
    int was_empty = d->fill.len == 0;
    for (size_t i = 0; i < n; i++) {
        const tsdb_series_in_t *s = &series[i];
        size_t first = oi;
        oi += s->nsamples;
        const tsdb_label_t *name = NULL;
        for (uint32_t k = 0; k < s->nlabels; k++)
            if (s->labels[k].name.len == 8 && !memcmp(s->labels[k].name.ptr, "__name__", 8)) {
                name = &s->labels[k];
                break;
            }
        if (!name || !name_selected(d, name->value.ptr, name->value.len)) continue;
        uint32_t ns = 0;
        for (uint32_t k = 0; k < s->nsamples; k++)
            ns += !outcomes || outcomes[first + k] == TSDB_OUT_STORED;
        if (!ns || s->nlabels > 0xffff) continue;
        size_t lb = 0;
        for (uint32_t k = 0; k < s->nlabels; k++)
            lb += 8 + s->labels[k].name.len + s->labels[k].value.len;
        size_t len = pad8(24 + (size_t)ns * 16 + lb);
        if (d->fill.len + len > d->cfg.queue_bytes || tbuf_reserve(&d->fill, len)) {
            atomic_fetch_add_explicit(&d->n_dropped, ns, memory_order_relaxed);
            continue;
        }
        uint8_t *p = d->fill.p + d->fill.len;
        uint32_t h32[2] = {(uint32_t)len,
                           (uint32_t)s->nlabels |
                               (is_counter_name(name->value.ptr, name->value.len)
                                    ? (uint32_t)DETECT_F_COUNTER << 16
                                    : 0)};
        uint32_t h32b[2] = {ns, 0};
        uint64_t h = 0; /* the worker hashes the label bytes */
        memcpy(p, h32, 8);
        memcpy(p + 8, h32b, 8);
        memcpy(p + 16, &h, 8);
        uint8_t *q = p + 24;
        for (uint32_t k = 0; k < s->nsamples; k++)
            if (!outcomes || outcomes[first + k] == TSDB_OUT_STORED) {
                memcpy(q, &s->samples[k].t, 8);
                memcpy(q + 8, &s->samples[k].v, 8);
                q += 16;
            }
        for (uint32_t k = 0; k < s->nlabels; k++) {
            uint32_t ln[2] = {s->labels[k].name.len, s->labels[k].value.len};
            memcpy(q, ln, 8);
            memcpy(q + 8, s->labels[k].name.ptr, ln[0]);
            memcpy(q + 8 + ln[0], s->labels[k].value.ptr, ln[1]);
            q += 8 + ln[0] + ln[1];
        }
        memset(q, 0, (size_t)(p + len - q));
        d->fill.len += len;
        d->enq_seq++;
    }
    if (was_empty && d->fill.len) pthread_cond_signal(&d->q_cv);
    pthread_mutex_unlock(&d->q_mu);
}

/* ---- worker ------------------------------------------------------------- */

static slot_t *slot_find(api_detect_t *d, uint64_t h)
{
    if (!d->tab_cap) return NULL;
    for (size_t i = h & (d->tab_cap - 1);; i = (i + 1) & (d->tab_cap - 1)) {
        uint32_t e = d->tab[i];
        if (!e) return NULL;
        if (d->slots[e - 1].hash == h) return &d->slots[e - 1];
    }
}

static int tab_grow(api_detect_t *d)
{
    size_t nc = d->tab_cap ? d->tab_cap * 2 : 1024;
    uint32_t *nt = calloc(nc, sizeof *nt);
    if (!nt) return -1;
    for (size_t s = 0; s < d->nslots; s++) {
        size_t i = d->slots[s].hash & (nc - 1);
        while (nt[i])
            i = (i + 1) & (nc - 1);
        nt[i] = (uint32_t)(s + 1);
    }
    free(d->tab);
    d->tab = nt;
    d->tab_cap = nc;
    return 0;
}

static int32_t inst_get(api_detect_t *d, const char *v)
{
    for (size_t i = 0; i < d->ninst; i++) /* instances are few: a scan is enough */
        if (!strcmp(d->inst[i].value, v)) return (int32_t)i;
    if (d->ninst == d->inst_cap) {
        size_t nc = d->inst_cap ? d->inst_cap * 2 : 64;
        inst_t *ni = realloc(d->inst, nc * sizeof *ni);
        if (!ni) return -1;
        d->inst = ni;
        d->inst_cap = nc;
        for (size_t i = 0; i < d->ninst; i++) { /* re-point labels into moved structs */
            d->inst[i].lab[1].value.ptr = d->inst[i].value;
        }
    }
    inst_t *in = &d->inst[d->ninst];
    memset(in, 0, sizeof *in);
    in->t_emitted = INT64_MIN;
    in->value = strdup(v);
    if (!in->value) return -1;
    in->lab[0] = (tsdb_label_t){{"__name__", 8}, {"augur_node_anomaly_rate", 23}};
    in->lab[1] = (tsdb_label_t){{"instance", 8}, {in->value, (uint32_t)strlen(in->value)}};
    return (int32_t)d->ninst++;
}

/* New slot from label pairs (names/values with lengths). */
static slot_t *slot_add(api_detect_t *d, uint64_t h, uint32_t nl, const char *const *nm,
                        const uint32_t *nlen, const char *const *vl, const uint32_t *vlen,
                        uint32_t flags)
{
    if (d->nslots >= d->cfg.max_series) {
        atomic_fetch_add_explicit(&d->n_ignored, 1, memory_order_relaxed);
        return NULL;
    }
    if ((d->nslots + 1) * 2 > d->tab_cap && tab_grow(d)) return NULL;
    if (d->nslots == d->slots_cap) {
        size_t nc = d->slots_cap ? d->slots_cap * 2 : 256;
        slot_t *ns = realloc(d->slots, nc * sizeof *ns);
        if (!ns) return NULL;
        d->slots = ns;
        d->slots_cap = nc;
    }
    size_t bytes = 0;
    for (uint32_t k = 0; k < nl; k++)
        bytes += nlen[k] + vlen[k] + 2;
    slot_t *s = &d->slots[d->nslots];
    memset(s, 0, sizeof *s);
    s->blob = malloc(bytes + 1);
    s->out = malloc((nl + 2) * sizeof *s->out);
    if (!s->blob || !s->out) {
        free(s->blob);
        free(s->out);
        return NULL;
    }
    /* Score series: __name__ replaced, the original name kept in `metric`
     * (or `exported_metric` when the series has a `metric` label). */
    int has_metric = 0;
    for (uint32_t k = 0; k < nl; k++)
        if (nlen[k] == 6 && !memcmp(nm[k], "metric", 6)) has_metric = 1;
    char *p = s->blob;
    uint32_t no = 1;
    s->out[0] = (tsdb_label_t){{"__name__", 8}, {"augur_anomaly_score", 19}};
    const char *instance = NULL;
    for (uint32_t k = 0; k < nl; k++) {
        char *n0 = p;
        memcpy(p, nm[k], nlen[k]);
        p[nlen[k]] = 0;
        p += nlen[k] + 1;
        char *v0 = p;
        memcpy(p, vl[k], vlen[k]);
        p[vlen[k]] = 0;
        p += vlen[k] + 1;
        if (nlen[k] == 8 && !memcmp(n0, "__name__", 8)) {
            s->out[no++] = (tsdb_label_t){
                {has_metric ? "exported_metric" : "metric", has_metric ? 15u : 6u},
                {v0, vlen[k]}};
        } else {
            s->out[no++] = (tsdb_label_t){{n0, nlen[k]}, {v0, vlen[k]}};
            if (nlen[k] == 8 && !memcmp(n0, "instance", 8)) instance = v0;
        }
    }
    s->nout = no;
    s->nlabels = nl;
    s->hash = h;
    s->inst = instance ? inst_get(d, instance) : -1;
    if (s->inst >= 0) d->inst[s->inst].total++;
    detect_init(&s->st, flags);
    s->alarm_t = INT64_MIN;
    s->w_t = INT64_MIN;
    size_t i = h & (d->tab_cap - 1);
    while (d->tab[i])
        i = (i + 1) & (d->tab_cap - 1);
    d->tab[i] = (uint32_t)(d->nslots + 1);
    d->nslots++;
    atomic_store_explicit(&d->n_series, d->nslots, memory_order_relaxed);
    return s;
}

static int out_reserve(api_detect_t *d, size_t series, size_t samples)
{
    if (d->os_n + series > d->os_cap) {
        size_t nc = d->os_cap ? d->os_cap : 256;
        while (nc < d->os_n + series)
            nc *= 2;
        tsdb_series_in_t *no = realloc(d->os, nc * sizeof *no);
        size_t *noff = realloc(d->os_off, nc * sizeof *noff);
        if (no) d->os = no;
        if (noff) d->os_off = noff;
        if (!no || !noff) return -1;
        d->os_cap = nc;
    }
    if (d->osamp_n + samples > d->osamp_cap) {
        size_t nc = d->osamp_cap ? d->osamp_cap : 1024;
        while (nc < d->osamp_n + samples)
            nc *= 2;
        tsdb_sample_t *ns = realloc(d->osamp, nc * sizeof *ns);
        if (!ns) return -1;
        d->osamp = ns;
        d->osamp_cap = nc;
    }
    return 0;
}

static void out_flush(api_detect_t *d)
{
    /* instance rates */
    for (size_t i = 0; i < d->ninst; i++) {
        inst_t *in = &d->inst[i];
        if (!in->touched) continue;
        in->touched = 0;
        if (in->t <= in->t_emitted) continue; /* one rate sample per instance timestamp */
        in->t_emitted = in->t;
        if (out_reserve(d, 1, 1)) break;
        d->os_off[d->os_n] = d->osamp_n;
        d->os[d->os_n++] = (tsdb_series_in_t){in->lab, 2, NULL, 1};
        d->osamp[d->osamp_n++] =
            (tsdb_sample_t){in->t, in->total ? (double)in->active / in->total : 0.0};
    }
    if (!d->os_n) return;
    for (size_t i = 0; i < d->os_n; i++)
        d->os[i].samples = d->osamp + d->os_off[i];
    tsdb_append_result_t res;
    int rc = tsdb_append(d->db, d->os, d->os_n, NULL, &res);
    if (rc) atomic_fetch_add_explicit(&d->n_append_errors, 1, memory_order_relaxed);
    d->os_n = d->osamp_n = 0;
}

static void process(api_detect_t *d, const uint8_t *p, size_t len)
{
    const char *nm[256], *vl[256];
    uint32_t nlen[256], vlen[256];
    double thr = d->cfg.threshold;
    pthread_mutex_lock(&d->map_mu);
    for (size_t off = 0; off + 24 <= len;) {
        uint32_t h32[2], h32b[2];
        uint64_t h;
        memcpy(h32, p + off, 8);
        memcpy(h32b, p + off + 8, 8);
        memcpy(&h, p + off + 16, 8);
        size_t rl = h32[0];
        uint32_t nl = h32[1] & 0xffff, flags = h32[1] >> 16, ns = h32b[0];
        const uint8_t *samp = p + off + 24;
        /* Series identity: a hash of the label bytes as sent (senders send
         * them sorted, as Prometheus does). */
        const uint8_t *lb = samp + (size_t)ns * 16, *le = lb;
        for (uint32_t k = 0; k < nl; k++) {
            uint32_t ln[2];
            memcpy(ln, le, 8);
            le += 8 + ln[0] + ln[1];
        }
        h = hash_bytes(lb, (size_t)(le - lb), 5);
        off += rl;
        slot_t *s = slot_find(d, h);
        if (!s) {
            if (nl > 256) continue;
            const uint8_t *q = samp + (size_t)ns * 16;
            for (uint32_t k = 0; k < nl; k++) {
                uint32_t ln[2];
                memcpy(ln, q, 8);
                nm[k] = (const char *)q + 8;
                nlen[k] = ln[0];
                vl[k] = (const char *)q + 8 + ln[0];
                vlen[k] = ln[1];
                q += 8 + ln[0] + ln[1];
            }
            s = slot_add(d, h, nl, nm, nlen, vl, vlen, flags);
            if (!s) continue;
        }
        if (out_reserve(d, 1, ns)) continue;
        size_t first = d->osamp_n;
        detect_config_t dc;
        detect_config_init(&dc);
        for (uint32_t k = 0; k < ns; k++) {
            int64_t t;
            double v;
            memcpy(&t, samp + (size_t)k * 16, 8);
            memcpy(&v, samp + (size_t)k * 16 + 8, 8);
            detect_result_t r;
            double sc = detect_update(&s->st, &dc, t, v, &r);
            if (r.events & DETECT_EV_SKIPPED) continue;
            s->score = (float)sc;
            s->last_t = t;
            if (sc >= 0.3 && (sc >= s->alarm_score || t - s->alarm_t > 3600000)) {
                if (sc >= thr) atomic_fetch_add_explicit(&d->n_alarms, 1, memory_order_relaxed);
                s->alarm_score = (float)sc;
                s->alarm_t = t;
                s->alarm_x = r.x;
                s->alarm_exp = r.expected;
            }
            /* "anomalous now": the undamped level, not the onset score */
            int act = !(r.events & DETECT_EV_WARMUP) && r.surprise / (r.surprise + DETECT_HALF) >= thr;
            if (s->inst >= 0) {
                inst_t *in = &d->inst[s->inst];
                if (act != s->active) {
                    if (act)
                        in->active++;
                    else
                        in->active--;
                }
                if (t > in->t) in->t = t;
                in->touched = 1;
            }
            s->active = (uint8_t)act;
            /* Write on change: a score sample when the score moves, else one
             * every 4 minutes so the series stays inside PromQL's 5-minute
             * lookback. Quiet series (almost all) then cost one store sample
             * per 4 minutes instead of one per scrape. */
            if (s->w_t == INT64_MIN || fabs(sc - (double)s->w_score) >= 0.01 ||
                t - s->w_t >= 240000 || t < s->w_t) {
                d->osamp[d->osamp_n++] = (tsdb_sample_t){t, sc};
                s->w_score = (float)sc;
                s->w_t = t;
            }
        }
        atomic_fetch_add_explicit(&d->n_samples, ns, memory_order_relaxed);
        if (d->osamp_n > first) {
            d->os_off[d->os_n] = first;
            d->os[d->os_n++] = (tsdb_series_in_t){s->out, s->nout, NULL,
                                                  (uint32_t)(d->osamp_n - first)};
        }
        if (d->osamp_n >= 65536) out_flush(d);
    }
    out_flush(d);
    pthread_mutex_unlock(&d->map_mu);
}

/* ---- persistence ------------------------------------------------------ */

static void wput(tbuf_t *b, const void *p, size_t n)
{
    tbuf_put(b, p, n);
}
static void wput32(tbuf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wput(b, x, 4);
}
static void wput64(tbuf_t *b, uint64_t v)
{
    wput32(b, (uint32_t)v);
    wput32(b, (uint32_t)(v >> 32));
}
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Called with map_mu held. */
static int state_save(api_detect_t *d)
{
    if (!d->state_path) return 0;
    tbuf_t b = {0};
    wput(&b, "AUGDET01", 8);
    wput32(&b, 1);
    wput32(&b, (uint32_t)d->nslots);
    for (size_t i = 0; i < d->nslots; i++) {
        slot_t *s = &d->slots[i];
        uint8_t nl[2] = {(uint8_t)s->nlabels, (uint8_t)(s->nlabels >> 8)};
        wput(&b, nl, 2);
        const char *p = s->blob;
        for (uint32_t k = 0; k < 2 * s->nlabels; k++) {
            size_t l = strlen(p);
            wput32(&b, (uint32_t)l);
            wput(&b, p, l);
            p += l + 1;
        }
        if (tbuf_reserve(&b, DETECT_STATE_BYTES)) break;
        detect_state_encode(&s->st, b.p + b.len, DETECT_STATE_BYTES);
        b.len += DETECT_STATE_BYTES;
        uint32_t f;
        memcpy(&f, &s->alarm_score, 4);
        wput32(&b, f);
        wput64(&b, (uint64_t)s->alarm_t);
        uint64_t u;
        memcpy(&u, &s->alarm_x, 8);
        wput64(&b, u);
        memcpy(&u, &s->alarm_exp, 8);
        wput64(&b, u);
    }
    wput64(&b, hash_bytes(b.p, b.len, 99));
    int ok = b.p != NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", d->state_path);
    int fd = ok ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) {
        size_t w = 0;
        while (w < b.len) {
            ssize_t r = write(fd, b.p + w, b.len - w);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            w += (size_t)r;
        }
        ok = w == b.len && !fsync(fd);
        ok = !close(fd) && ok;
        ok = ok && !rename(tmp, d->state_path);
        if (ok) { /* make the rename durable */
            char dir[4200];
            snprintf(dir, sizeof dir, "%s", d->state_path);
            char *sl = strrchr(dir, '/');
            if (sl) *sl = 0;
            int dfd = open(sl ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
        } else {
            unlink(tmp);
        }
    } else {
        ok = 0;
    }
    tbuf_free(&b);
    atomic_fetch_add(ok ? &d->n_saves : &d->n_save_errors, 1);
    return ok ? 0 : -1;
}

static int state_load(api_detect_t *d)
{
    FILE *f = fopen(d->state_path, "rb");
    if (!f) return errno == ENOENT ? 0 : -1;
    tbuf_t b = {0};
    uint8_t chunk[65536];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (tbuf_put(&b, chunk, r)) break;
    fclose(f);
    const uint8_t *p = b.p, *end = b.p + b.len;
    int rc = -1;
    if (b.len < 24 || memcmp(p, "AUGDET01", 8) || rd32(p + 8) != 1 ||
        rd64(end - 8) != hash_bytes(b.p, b.len - 8, 99))
        goto out;
    uint32_t n = rd32(p + 12);
    p += 16;
    end -= 8;
    const char *nm[256], *vl[256];
    uint32_t nlen[256], vlen[256];
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 2) goto out;
        uint32_t nl = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        p += 2;
        if (nl > 256) goto out;
        for (uint32_t k = 0; k < nl; k++) {
            for (int j = 0; j < 2; j++) {
                if (end - p < 4) goto out;
                uint32_t l = rd32(p);
                p += 4;
                if ((size_t)(end - p) < l) goto out;
                if (j == 0) {
                    nm[k] = (const char *)p;
                    nlen[k] = l;
                } else {
                    vl[k] = (const char *)p;
                    vlen[k] = l;
                }
                p += l;
            }
        }
        if ((size_t)(end - p) < DETECT_STATE_BYTES + 28) goto out;
        detect_state_t st;
        if (detect_state_decode(&st, p, DETECT_STATE_BYTES) < 0) goto out;
        p += DETECT_STATE_BYTES;
        tbuf_t kb = {0}; /* the label bytes as queued, for the same hash */
        for (uint32_t k = 0; k < nl; k++) {
            uint32_t ln[2] = {nlen[k], vlen[k]};
            tbuf_put(&kb, ln, 8);
            tbuf_put(&kb, nm[k], nlen[k]);
            tbuf_put(&kb, vl[k], vlen[k]);
        }
        uint64_t h = hash_bytes(kb.p, kb.len, 5);
        tbuf_free(&kb);
        slot_t *s = slot_find(d, h) ? NULL : slot_add(d, h, nl, nm, nlen, vl, vlen, st.flags);
        if (s) {
            s->st = st;
            uint32_t fs = rd32(p);
            memcpy(&s->alarm_score, &fs, 4);
            s->alarm_t = (int64_t)rd64(p + 4);
            uint64_t u = rd64(p + 12);
            memcpy(&s->alarm_x, &u, 8);
            u = rd64(p + 20);
            memcpy(&s->alarm_exp, &u, 8);
            s->last_t = st.t_last;
        }
        p += 28;
    }
    rc = 0;
out:
    tbuf_free(&b);
    return rc;
}

static void *worker(void *arg)
{
    api_detect_t *d = arg;
    pthread_mutex_lock(&d->q_mu);
    for (;;) {
        while (!d->fill.len && !d->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&d->q_cv, &d->q_mu, &ts);
            if (!d->fill.len) break; /* periodic tick: maybe persist */
        }
        tbuf_t t = d->work;
        d->work = d->fill;
        d->fill = t;
        d->fill.len = 0;
        uint64_t seq = d->enq_seq;
        int stop = d->stop;
        pthread_mutex_unlock(&d->q_mu);
        if (d->work.len) process(d, d->work.p, d->work.len);
        d->work.len = 0;
        if (d->cfg.persist_interval_ms > 0) {
            uint64_t now = api_now_ns();
            if (now - d->last_persist_ns >= (uint64_t)d->cfg.persist_interval_ms * 1000000u) {
                pthread_mutex_lock(&d->map_mu);
                state_save(d);
                pthread_mutex_unlock(&d->map_mu);
                d->last_persist_ns = now;
            }
        }
        pthread_mutex_lock(&d->q_mu);
        d->done_seq = seq;
        pthread_cond_broadcast(&d->done_cv);
        if (stop && !d->fill.len) break;
    }
    pthread_mutex_unlock(&d->q_mu);
    tsdb_thread_cleanup();
    return NULL;
}

/* ---- life cycle ----------------------------------------------------------- */

static void detect_free(api_detect_t *d)
{
    for (size_t i = 0; i < d->nslots; i++) {
        free(d->slots[i].blob);
        free(d->slots[i].out);
    }
    for (size_t i = 0; i < d->ninst; i++)
        free(d->inst[i].value);
    free(d->slots);
    free(d->tab);
    free(d->inst);
    free(d->os);
    free(d->os_off);
    free(d->osamp);
    tbuf_free(&d->fill);
    tbuf_free(&d->work);
    if (d->re) pcre2_code_free(d->re);
    free(d->state_path);
    pthread_mutex_destroy(&d->q_mu);
    pthread_mutex_destroy(&d->map_mu);
    pthread_cond_destroy(&d->q_cv);
    pthread_cond_destroy(&d->done_cv);
    free(d);
}

int api_detect_start(struct api_server *srv, tsdb_t *db, const api_detect_config_t *cfg,
                     const char *state_path, char *err, size_t errcap)
{
    if (!srv || !db || !cfg) return -1;
    if (!cfg->enabled) return 0;
    api_detect_t *d = calloc(1, sizeof *d);
    if (!d) return -1;
    d->cfg = *cfg;
    if (!d->cfg.selector || !*d->cfg.selector) d->cfg.selector = API_DETECT_DEFAULT_SELECTOR;
    if (!d->cfg.queue_bytes) d->cfg.queue_bytes = 64 * MIB;
    if (!d->cfg.persist_interval_ms) d->cfg.persist_interval_ms = 5 * 60 * 1000;
    if (!(d->cfg.threshold > 0 && d->cfg.threshold < 1)) d->cfg.threshold = 0.4;
    if (!d->cfg.max_series) d->cfg.max_series = 1000000;
    d->db = db;
    pthread_mutex_init(&d->q_mu, NULL);
    pthread_mutex_init(&d->map_mu, NULL);
    pthread_cond_init(&d->q_cv, NULL);
    pthread_cond_init(&d->done_cv, NULL);
    size_t sl = strlen(d->cfg.selector);
    char *pat = malloc(sl + 8);
    if (!pat) {
        detect_free(d);
        return -1;
    }
    snprintf(pat, sl + 8, "^(?:%s)$", d->cfg.selector);
    int ec;
    PCRE2_SIZE eo;
    d->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_DOLLAR_ENDONLY, &ec, &eo,
                          NULL);
    free(pat);
    if (!d->re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, errcap, "invalid --detect.selector: %s at offset %zu", (char *)msg,
                 (size_t)eo);
        detect_free(d);
        return -1;
    }
    pcre2_jit_compile(d->re, PCRE2_JIT_COMPLETE);
    if (state_path) {
        d->state_path = strdup(state_path);
        if (!d->state_path) {
            detect_free(d);
            return -1;
        }
        if (state_load(d)) {
            char q[300];
            api_log(API_LOG_WARN, "detector state unreadable, starting fresh", "file=%s",
                    api_log_quote(q, sizeof q, state_path, strlen(state_path)));
        }
    }
    d->last_persist_ns = api_now_ns();
    if (pthread_create(&d->thr, NULL, worker, d)) {
        snprintf(err, errcap, "cannot start the detection thread");
        detect_free(d);
        return -1;
    }
    d->thr_started = 1;
    atomic_store(&srv->det, d);
    api_log(API_LOG_INFO, "anomaly detection on", "series_restored=%zu", d->nslots);
    return 0;
}

void api_detect_sync(api_detect_t *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->q_mu);
    uint64_t target = d->enq_seq;
    pthread_cond_signal(&d->q_cv);
    while (d->done_seq < target)
        pthread_cond_wait(&d->done_cv, &d->q_mu);
    pthread_mutex_unlock(&d->q_mu);
}

void api_detect_destroy(api_detect_t *d)
{
    if (!d) return;
    if (d->thr_started) {
        pthread_mutex_lock(&d->q_mu);
        d->stop = 1;
        pthread_cond_signal(&d->q_cv);
        pthread_mutex_unlock(&d->q_mu);
        pthread_join(d->thr, NULL);
    }
    pthread_mutex_lock(&d->map_mu);
    state_save(d);
    pthread_mutex_unlock(&d->map_mu);
    detect_free(d);
}

/* ---- metrics and the listing ------------------------------------------- */

int api_detect_metrics_render(api_detect_t *d, tbuf_t *out)
{
    if (!d) return 0;
    char b[2048];
    size_t qb;
    pthread_mutex_lock(&d->q_mu);
    qb = d->fill.len;
    pthread_mutex_unlock(&d->q_mu);
    int n = snprintf(
        b, sizeof b,
        "# HELP augur_detect_samples_total Samples scored by the anomaly detectors.\n"
        "# TYPE augur_detect_samples_total counter\naugur_detect_samples_total %" PRIu64 "\n"
        "# HELP augur_detect_dropped_total Samples not scored because the detection queue was "
        "full.\n# TYPE augur_detect_dropped_total counter\naugur_detect_dropped_total %" PRIu64 "\n"
        "# HELP augur_detect_alarms_total Scores at or over the detection threshold.\n"
        "# TYPE augur_detect_alarms_total counter\naugur_detect_alarms_total %" PRIu64 "\n"
        "# HELP augur_detect_series Series with a detector state.\n"
        "# TYPE augur_detect_series gauge\naugur_detect_series %" PRIu64 "\n"
        "# HELP augur_detect_series_ignored_total New series refused at the series limit.\n"
        "# TYPE augur_detect_series_ignored_total counter\naugur_detect_series_ignored_total "
        "%" PRIu64 "\n"
        "# HELP augur_detect_queue_bytes Bytes waiting in the detection queue.\n"
        "# TYPE augur_detect_queue_bytes gauge\naugur_detect_queue_bytes %zu\n"
        "# HELP augur_detect_state_saves_total Detector state files written.\n"
        "# TYPE augur_detect_state_saves_total counter\naugur_detect_state_saves_total %" PRIu64
        "\n# HELP augur_detect_state_save_errors_total Detector state writes that failed.\n"
        "# TYPE augur_detect_state_save_errors_total counter\n"
        "augur_detect_state_save_errors_total %" PRIu64 "\n"
        "# HELP augur_detect_append_errors_total Score batches the store refused.\n"
        "# TYPE augur_detect_append_errors_total counter\naugur_detect_append_errors_total "
        "%" PRIu64 "\n",
        atomic_load(&d->n_samples), atomic_load(&d->n_dropped), atomic_load(&d->n_alarms),
        atomic_load(&d->n_series), atomic_load(&d->n_ignored), qb, atomic_load(&d->n_saves),
        atomic_load(&d->n_save_errors), atomic_load(&d->n_append_errors));
    if (n < 0) return -1;
    return tbuf_put(out, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

static int parse_time_param(const char *s, int64_t *ms)
{
    char *e;
    double v = strtod(s, &e);
    if (e != s && !*e && isfinite(v)) {
        *ms = (int64_t)(v * 1000.0);
        return 0;
    }
    size_t l = strlen(s);
    if (l && (s[l - 1] == 'Z' || s[l - 1] == 'z')) l--;
    int ok;
    int64_t t = nab_parse_time(s, l, &ok);
    if (!ok) return -1;
    *ms = t;
    return 0;
}

static int cand_cmp(const void *a, const void *b)
{
    const slot_t *x = *(slot_t *const *)a, *y = *(slot_t *const *)b;
    if (x->alarm_score != y->alarm_score) return x->alarm_score > y->alarm_score ? -1 : 1;
    if (x->alarm_t != y->alarm_t) return x->alarm_t > y->alarm_t ? -1 : 1;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static void put_num(tbuf_t *b, double v)
{
    char t[64];
    int n;
    if (!isfinite(v))
        n = snprintf(t, sizeof t, "\"%s\"", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
    else
        n = snprintf(t, sizeof t, "%.6g", v);
    tbuf_put(b, t, (size_t)n);
}

static void put_ts(tbuf_t *b, int64_t ms)
{
    char t[64];
    int n = snprintf(t, sizeof t, "%.3f", (double)ms / 1000.0);
    tbuf_put(b, t, (size_t)n);
}

int api_detect_handle_list(api_detect_t *d, const char *since, const char *min_score,
                           const char *limit, int64_t now_ms, tbuf_t *body, unsigned *status)
{
    body->len = 0;
    char err[200] = "";
    int64_t since_ms = now_ms - 3600000;
    double mins = d ? d->cfg.threshold : 0.4;
    long lim = 100;
    char *e;
    if (since && *since && parse_time_param(since, &since_ms))
        snprintf(err, sizeof err, "invalid since: want unix seconds or RFC 3339");
    if (min_score && *min_score) {
        mins = strtod(min_score, &e);
        if (*e || !isfinite(mins)) snprintf(err, sizeof err, "invalid min_score");
    }
    if (limit && *limit) {
        lim = strtol(limit, &e, 10);
        if (*e || lim < 0) snprintf(err, sizeof err, "invalid limit");
        if (lim == 0 || lim > 100000) lim = 100000;
    }
    if (*err) {
        *status = 400;
        tbuf_put(body, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"", 50);
        api_json_escape(body, err, strlen(err));
        return tbuf_put(body, "\"}\n", 3);
    }
    *status = 200;
    tbuf_put(body, "{\"status\":\"success\",\"data\":[", 28);
    if (!d) return tbuf_put(body, "]}\n", 3);
    pthread_mutex_lock(&d->map_mu);
    slot_t **c = malloc((d->nslots ? d->nslots : 1) * sizeof *c);
    size_t nc = 0;
    if (!c) {
        pthread_mutex_unlock(&d->map_mu);
        return -1;
    }
    for (size_t i = 0; i < d->nslots; i++) {
        slot_t *s = &d->slots[i];
        if (s->alarm_t != INT64_MIN && s->alarm_t >= since_ms && s->alarm_score >= mins)
            c[nc++] = s;
    }
    qsort(c, nc, sizeof *c, cand_cmp);
    for (size_t i = 0; i < nc && i < (size_t)lim; i++) {
        slot_t *s = c[i];
        if (i) tbuf_put(body, ",", 1);
        tbuf_put(body, "{\"labels\":{", 11);
        const char *p = s->blob;
        for (uint32_t k = 0; k < s->nlabels; k++) {
            size_t nl = strlen(p);
            const char *v = p + nl + 1;
            size_t vl = strlen(v);
            if (k) tbuf_put(body, ",", 1);
            tbuf_put(body, "\"", 1);
            api_json_escape(body, p, nl);
            tbuf_put(body, "\":\"", 3);
            api_json_escape(body, v, vl);
            tbuf_put(body, "\"", 1);
            p = v + vl + 1;
        }
        tbuf_put(body, "},\"score\":", 10);
        put_num(body, s->alarm_score);
        tbuf_put(body, ",\"timestamp\":", 13);
        put_ts(body, s->alarm_t);
        tbuf_put(body, ",\"value\":", 9);
        put_num(body, s->alarm_x);
        tbuf_put(body, ",\"expected\":", 12);
        put_num(body, s->alarm_exp);
        tbuf_put(body, ",\"current_score\":", 17);
        put_num(body, s->score);
        tbuf_put(body, ",\"last_timestamp\":", 18);
        put_ts(body, s->last_t);
        tbuf_put(body, "}", 1);
    }
    pthread_mutex_unlock(&d->map_mu);
    free(c);
    return tbuf_put(body, "]}\n", 3);
}
