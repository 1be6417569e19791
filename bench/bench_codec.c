/*
 * bench_codec.c — bytes/sample and speed of the chunk/block codec on real
 * node_exporter telemetry.
 *
 * Loads the 1 s recording (zstd'd JSON lines, one series per line:
 * {"labels":{...},"timestamps":[ms...],"values":[...]}), builds a fleet of
 * perturbed nodes the way ../shared/bench/rwgen.py describes its workload
 * (circular time shift per node; counters rebuilt from their increments and
 * scaled per node and series; gauges offset by up to +-2 % of their median;
 * everything rounded to the recorded resolution), then for each scrape
 * interval, chunk length and block size reports:
 *   - bytes/sample of the chunks before zstd, and of whole blocks at zstd
 *     levels 1, 3, 9;
 *   - encode and decode throughput (samples per CPU second,
 *     CLOCK_PROCESS_CPUTIME_ID) of chunks alone and of blocks (level 3);
 *   - how often each value encoding was picked.
 * An experiment table then forces each value encoding in turn, to compare
 * the encodings after zstd.
 *
 * Usage: bench_codec [--data FILE] [--types FILE] [--nodes N] [--seed S]
 *                    [--top K] [--quick] [--corpus DIR]
 *   --corpus DIR writes a few small encoded blocks and chunks into DIR (the
 *   seed corpus of fuzz/fuzz_block) and exits.
 *   defaults: ../shared/data/node_exporter_1s.jsonl.zst and
 *   ../shared/data/node_exporter_types.txt (run from the repository root),
 *   20 nodes, seed 1.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "tsdb/codec.h"

/* ---- loading the recording ----------------------------------------------- */

typedef struct {
    char name[160];
    size_t n;
    int64_t *t;
    double *v;
} rec_series_t;

typedef struct {
    rec_series_t *s;
    size_t ns, cap;
} recording_t;

static void die(const char *msg)
{
    fprintf(stderr, "bench_codec: %s\n", msg);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static char *load_zst(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_codec: cannot open %s (use --data)\n", path);
        exit(1);
    }
    tbuf_t in = {0}, out = {0};
    char buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0)
        if (tbuf_put(&in, buf, r)) die("out of memory");
    fclose(f);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc) die("out of memory");
    ZSTD_inBuffer zi = {in.p, in.len, 0};
    while (zi.pos < zi.size) {
        if (tbuf_reserve(&out, 1 << 20)) die("out of memory");
        ZSTD_outBuffer zo = {out.p + out.len, out.cap - out.len, 0};
        size_t rc = ZSTD_decompressStream(dc, &zo, &zi);
        if (ZSTD_isError(rc)) die("bad zstd data");
        out.len += zo.pos;
        if (rc == 0 && zi.pos == zi.size) break;
    }
    ZSTD_freeDCtx(dc);
    tbuf_free(&in);
    if (tbuf_put(&out, "", 1)) die("out of memory");
    *len = out.len - 1;
    return (char *)out.p;
}

/* Parse "[x, y, ...]" at p (numbers, or quoted "NaN"/"+Inf"/"-Inf"). */
static const char *parse_array(const char *p, int is_int, tbuf_t *dst, size_t *count)
{
    if (*p != '[') die("bad JSON: array expected");
    p++;
    *count = 0;
    while (*p && *p != ']') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ']') break;
        int quoted = *p == '"';
        if (quoted) p++;
        char *end;
        if (is_int) {
            int64_t x = strtoll(p, &end, 10);
            if (tbuf_put(dst, &x, 8)) die("out of memory");
        } else {
            double x = strtod(p, &end);
            if (tbuf_put(dst, &x, 8)) die("out of memory");
        }
        if (end == p) die("bad JSON number");
        p = end;
        if (quoted) {
            if (*p != '"') die("bad JSON string");
            p++;
        }
        (*count)++;
    }
    return *p ? p + 1 : p;
}

static void load_recording(const char *path, recording_t *rec)
{
    size_t len;
    char *text = load_zst(path, &len);
    memset(rec, 0, sizeof *rec);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (*line) {
            if (rec->ns == rec->cap) {
                rec->cap = rec->cap ? rec->cap * 2 : 256;
                rec->s = realloc(rec->s, rec->cap * sizeof *rec->s);
                if (!rec->s) die("out of memory");
            }
            rec_series_t *s = &rec->s[rec->ns++];
            memset(s, 0, sizeof *s);
            const char *nm = strstr(line, "\"__name__\":\"");
            if (nm) {
                nm += 12;
                size_t l = strcspn(nm, "\"");
                if (l >= sizeof s->name) l = sizeof s->name - 1;
                memcpy(s->name, nm, l);
            }
            const char *ts = strstr(line, "\"timestamps\":"), *vs = strstr(line, "\"values\":");
            if (!ts || !vs) die("bad JSON line: no timestamps/values");
            tbuf_t tb = {0}, vb = {0};
            size_t nt, nv;
            parse_array(ts + 13, 1, &tb, &nt);
            parse_array(vs + 9, 0, &vb, &nv);
            if (nt != nv || nt == 0) die("bad JSON line: lengths differ");
            s->n = nt;
            s->t = (int64_t *)(void *)tb.p;
            s->v = (double *)(void *)vb.p;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
}

/* "# TYPE name type" lines -> type of a metric name. */
typedef struct {
    char name[160];
    char type[16];
} mtype_t;

static mtype_t *g_types;
static size_t g_ntypes;

static void load_types(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_codec: no types file %s; every series treated by shape\n", path);
        return;
    }
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        char name[160], type[16];
        if (sscanf(line, "# TYPE %159s %15s", name, type) != 2) continue;
        if (g_ntypes == cap) {
            cap = cap ? cap * 2 : 256;
            g_types = realloc(g_types, cap * sizeof *g_types);
            if (!g_types) die("out of memory");
        }
        snprintf(g_types[g_ntypes].name, sizeof g_types[g_ntypes].name, "%s", name);
        snprintf(g_types[g_ntypes].type, sizeof g_types[g_ntypes].type, "%s", type);
        g_ntypes++;
    }
    fclose(f);
}

static const char *type_of(const char *name)
{
    for (size_t i = 0; i < g_ntypes; i++)
        if (!strcmp(g_types[i].name, name)) return g_types[i].type;
    return NULL;
}

/* ---- the fleet workload --------------------------------------------------- */

enum { K_CONSTANT, K_COUNTER, K_GAUGE, K_DISCRETE, K_CLOCK, K_NKINDS };
static const char *kind_names[K_NKINDS] = {"constant", "counter", "gauge", "discrete", "clock"};

typedef struct {
    int kind;
    double step; /* resolution: integer multiples of step (> 0), or */
    int dec;     /* ... dec decimals (step == 0) */
    double *v;   /* L values on the 1 s grid */
    double scale;
    int nonneg;
    double *cum; /* counters: accumulated increments over the tiled recording */
    size_t ncum;
} tmpl_t;

static int decimals_of(double v)
{
    for (int k = 0; k <= 12; k++) {
        double p = pow(10.0, k);
        if (rint(v * p) / p == v) return k;
    }
    return 12;
}

static double round_res(const tmpl_t *tp, double x)
{
    if (tp->step > 0) return rint(x / tp->step) * tp->step;
    double p = pow(10.0, tp->dec);
    return rint(x * p) / p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void classify(const rec_series_t *rs, const int64_t *grid, size_t L, tmpl_t *tp)
{
    memset(tp, 0, sizeof *tp);
    /* values on the grid: the last sample at or before each grid point (+500 ms) */
    tp->v = xmalloc(L * sizeof *tp->v);
    size_t j = 0;
    for (size_t i = 0; i < L; i++) {
        while (j + 1 < rs->n && rs->t[j + 1] <= grid[i] + 500) j++;
        tp->v[i] = rs->v[j];
    }
    const double *v = tp->v;
    int constant = 1, integer = 1, monotone = 1;
    for (size_t i = 0; i < L; i++) {
        if (memcmp(&v[i], &v[0], 8)) constant = 0;
        if (i && v[i] < v[i - 1]) monotone = 0;
        if (isfinite(v[i]) && (v[i] != floor(v[i]) || fabs(v[i]) >= 9007199254740992.0))
            integer = 0;
    }
    /* resolution */
    if (integer) {
        uint64_t g = 0;
        for (size_t i = 0; i < L; i++)
            if (isfinite(v[i])) g = gcd64(g, (uint64_t)fabs(v[i]));
        tp->step = g ? (double)g : 1.0;
    } else {
        for (size_t i = 0; i < L; i++)
            if (isfinite(v[i])) {
                int d = decimals_of(v[i]);
                if (d > tp->dec) tp->dec = d;
            }
    }
    const char *type = type_of(rs->name);
    if (!type) {
        static const char *sufs[] = {"_sum", "_count", "_bucket"};
        for (int s = 0; s < 3 && !type; s++) {
            if (!ends_with(rs->name, sufs[s])) continue;
            char base[160];
            snprintf(base, sizeof base, "%.*s", (int)(strlen(rs->name) - strlen(sufs[s])),
                     rs->name);
            const char *bt = type_of(base);
            if (bt && (!strcmp(bt, "summary") || !strcmp(bt, "histogram"))) type = "counter";
        }
    }
    if (!type) type = "gauge";
    if (!strcmp(type, "untyped"))
        type = monotone && !strstr(rs->name, "CurrEstab") && !strstr(rs->name, "Forwarding")
                   ? "counter"
                   : "gauge";
    double *mag = xmalloc(L * sizeof *mag), *lag = xmalloc(L * sizeof *lag);
    size_t nf = 0;
    double mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < L; i++) {
        lag[i] = v[i] - (double)grid[i] / 1000.0;
        if (isfinite(v[i])) {
            mag[nf++] = fabs(v[i]);
            if (v[i] < mn) mn = v[i];
            if (v[i] > mx) mx = v[i];
        }
    }
    qsort(lag, L, sizeof *lag, cmp_double);
    double lag_med = lag[L / 2], lag_spread = lag[L - 1] - lag[0];
    qsort(mag, nf, sizeof *mag, cmp_double);
    tp->scale = nf ? mag[nf / 2] : 0;
    if (tp->scale == 0 && nf) tp->scale = mx - mn;
    tp->nonneg = nf && mn >= 0;
    int ndistinct = 0;
    if (integer) {
        /* integers with <= 8 distinct values */
        for (size_t i = 0; i < nf && ndistinct <= 8; i++)
            if (i == 0 || mag[i] != mag[i - 1]) ndistinct++;
    }
    if (constant)
        tp->kind = K_CONSTANT;
    else if (!strcmp(type, "counter"))
        tp->kind = K_COUNTER;
    else if (fabs(lag_med) < 86400 && lag_spread < 4.0)
        tp->kind = K_CLOCK;
    else if (ends_with(rs->name, "_info") || !strcmp(rs->name, "up") ||
             (integer && ndistinct <= 8 && mn >= 0))
        tp->kind = K_DISCRETE;
    else
        tp->kind = K_GAUGE;
    free(mag);
    free(lag);
}

/* Counter increments tiled `reps` times, accumulated. */
static void counter_prepare(tmpl_t *tp, size_t L, size_t reps)
{
    double *inc = xmalloc(L * sizeof *inc), mean = 0;
    for (size_t i = 0; i + 1 < L; i++) {
        double d = tp->v[i + 1] - tp->v[i];
        inc[i] = d < 0 ? tp->v[i + 1] : d;
        mean += inc[i];
    }
    inc[L - 1] = L > 1 ? mean / (double)(L - 1) : 0; /* the wrap-around increment */
    tp->ncum = L * reps + 1;
    tp->cum = xmalloc(tp->ncum * sizeof *tp->cum);
    tp->cum[0] = 0;
    for (size_t i = 1; i < tp->ncum; i++) tp->cum[i] = tp->cum[i - 1] + inc[(i - 1) % L];
    free(inc);
}

static double normal(trng_t *r)
{
    double u1 = 1.0 - trng_unit(r), u2 = trng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

typedef struct {
    size_t nseries, T;
    int64_t *ts;  /* T */
    double *v;    /* nseries x T, node-major */
    int *kind;    /* nseries */
} fleet_t;

static void fleet_build(const tmpl_t *tp, size_t S, size_t L, const int64_t *grid, size_t nodes,
                        size_t T, int interval_s, uint64_t seed, fleet_t *fl)
{
    trng_t r;
    trng_seed(&r, seed);
    fl->nseries = nodes * S;
    fl->T = T;
    fl->ts = xmalloc(T * sizeof *fl->ts);
    fl->v = xmalloc(fl->nseries * T * sizeof *fl->v);
    fl->kind = xmalloc(fl->nseries * sizeof *fl->kind);
    const int64_t start = INT64_C(1767225600000); /* 2026-01-01T00:00:00Z */
    for (size_t k = 0; k < T; k++) fl->ts[k] = start + (int64_t)k * interval_s * 1000;
    for (size_t node = 0; node < nodes; node++) {
        size_t shift = (size_t)trng_below(&r, L);
        double factor = exp(0.35 * normal(&r));
        factor = factor < 0.4 ? 0.4 : factor > 2.5 ? 2.5 : factor;
        for (size_t j = 0; j < S; j++) {
            const tmpl_t *t = &tp[j];
            double jitter = 1.0 + (trng_unit(&r) * 2 - 1) * 0.10;
            double offs = trng_unit(&r) * 2 - 1;
            double *out = fl->v + (node * S + j) * T;
            fl->kind[node * S + j] = t->kind;
            double off = round_res(t, offs * 0.02 * t->scale);
            for (size_t k = 0; k < T; k++) {
                size_t pos = shift + (size_t)interval_s * k, posw = pos % L;
                double x;
                switch (t->kind) {
                case K_CONSTANT:
                    x = t->v[0];
                    break;
                case K_COUNTER:
                    x = round_res(t, factor * jitter *
                                         (t->v[shift] + t->cum[pos] - t->cum[shift]));
                    break;
                case K_CLOCK: {
                    double lag = t->v[posw] - (double)grid[posw] / 1000.0;
                    double p = pow(10.0, t->dec > 3 ? t->dec : 3);
                    x = rint(((double)fl->ts[k] / 1000.0 + lag) * p) / p;
                    break;
                }
                case K_DISCRETE:
                    x = t->v[posw];
                    break;
                default:
                    x = round_res(t, t->v[posw] + off);
                    if (t->nonneg && x < 0) x = 0;
                    break;
                }
                out[k] = x;
            }
        }
    }
}

static void fleet_free(fleet_t *fl)
{
    free(fl->ts);
    free(fl->v);
    free(fl->kind);
}

/* ---- measuring ---------------------------------------------------------------- */

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The fleet's series as chunks of n samples (the first n ticks). */
static tsdb_sample_t *fleet_samples(const fleet_t *fl, size_t n)
{
    tsdb_sample_t *s = xmalloc(fl->nseries * n * sizeof *s);
    for (size_t g = 0; g < fl->nseries; g++)
        for (size_t k = 0; k < n; k++) {
            s[g * n + k].t = fl->ts[k];
            s[g * n + k].v = fl->v[g * fl->T + k];
        }
    return s;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Metric-major order: by metric name, then recorded series, then node (the
 * order of sorted label sets, as Prometheus and VictoriaMetrics lay out
 * their blocks). */
static const recording_t *g_rec;
static size_t g_S;

static int cmp_metric(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(g_rec->s[x % g_S].name, g_rec->s[y % g_S].name);
    if (c) return c;
    if (x % g_S != y % g_S) return x % g_S < y % g_S ? -1 : 1;
    return x < y ? -1 : x > y;
}

typedef struct {
    double chunk_bps, blk_bps[3];
    double enc_sps, dec_sps, benc_sps, bdec_sps;
    uint64_t modes[4];
    uint64_t kind_bytes[K_NKINDS], kind_samples[K_NKINDS];
} result_t;

static const int zlevels[3] = {1, 3, 9};

/* ord: the series (fleet indices) in block order; each block takes spb
 * consecutive ones and lists them by ascending sid (= fleet index + 1). */
static void measure(const fleet_t *fl, const size_t *ord, size_t n, size_t spb, int vmode,
                    int timing, result_t *res)
{
    memset(res, 0, sizeof *res);
    size_t G = fl->nseries;
    tsdb_sample_t *s = fleet_samples(fl, n);
    double samples = (double)G * (double)n;
    tbuf_t chunks = {0}, blk = {0}, scratch = {0};
    size_t *off = xmalloc((G + 1) * sizeof *off);

    /* chunks alone */
    double c0 = cpu_now();
    off[0] = 0;
    for (size_t g = 0; g < G; g++) {
        if (chunk_encode_mode(s + g * n, n, vmode, &chunks)) die("chunk_encode failed");
        off[g + 1] = chunks.len;
    }
    double c1 = cpu_now();
    res->chunk_bps = (double)chunks.len / samples;
    res->enc_sps = samples / (c1 - c0);
    for (size_t g = 0; g < G; g++) {
        int m = chunk_value_mode(chunks.p + off[g], off[g + 1] - off[g]);
        if (m >= 0) res->modes[m]++;
        res->kind_bytes[fl->kind[g]] += off[g + 1] - off[g];
        res->kind_samples[fl->kind[g]] += n;
    }
    if (timing) {
        tsdb_sample_t *out = xmalloc(n * sizeof *out);
        int reps = 3;
        c0 = cpu_now();
        for (int rep = 0; rep < reps; rep++)
            for (size_t g = 0; g < G; g++) {
                size_t got;
                if (chunk_decode(chunks.p + off[g], off[g + 1] - off[g], out, n, &got) ||
                    got != n)
                    die("chunk_decode failed");
                if (rep == 0 && memcmp(out, s + g * n, n * sizeof *out)) die("round trip differs");
            }
        c1 = cpu_now();
        res->dec_sps = samples * reps / (c1 - c0);
        free(out);
    }

    /* blocks of spb consecutive series */
    block_series_t *bs = xmalloc(spb * sizeof *bs);
    size_t *idx = xmalloc(spb * sizeof *idx);
    block_reader_t br = {0};
    tsdb_sample_t *out = xmalloc(n * sizeof *out);
    for (int l = 0; l < 3; l++) {
        uint64_t bytes = 0;
        double enc = 0, dec = 0;
        for (size_t g0 = 0; g0 < G; g0 += spb) {
            size_t m = G - g0 < spb ? G - g0 : spb;
            memcpy(idx, ord + g0, m * sizeof *idx);
            qsort(idx, m, sizeof *idx, cmp_size);
            for (size_t i = 0; i < m; i++) {
                bs[i].sid = (uint32_t)(idx[i] + 1);
                bs[i].samples = s + idx[i] * n;
                bs[i].n = (uint32_t)n;
            }
            c0 = cpu_now();
            if (block_encode(bs, m, zlevels[l], &blk, &scratch)) die("block_encode failed");
            c1 = cpu_now();
            enc += c1 - c0;
            bytes += blk.len;
            if (zlevels[l] == 3 && timing) {
                c0 = cpu_now();
                if (block_open(&br, blk.p, blk.len)) die("block_open failed");
                for (uint32_t i = 0; i < br.nseries; i++) {
                    size_t got;
                    if (block_decode_series(&br, i, out, n, &got)) die("block decode failed");
                }
                c1 = cpu_now();
                dec += c1 - c0;
            }
        }
        res->blk_bps[l] = (double)bytes / samples;
        if (zlevels[l] == 3) {
            res->benc_sps = samples / enc;
            res->bdec_sps = dec > 0 ? samples / dec : 0;
        }
    }
    block_reader_free(&br);
    free(out);
    free(bs);
    free(idx);
    free(off);
    tbuf_free(&chunks);
    tbuf_free(&blk);
    tbuf_free(&scratch);
    free(s);
}

/* Every chunk encoded with vmode forced (CONST kept where the values allow),
 * then zstd'd per block of spb series as block_encode would; the header and
 * directory are counted as 32 + 2 bytes per series. */
static void measure_forced(const fleet_t *fl, const size_t *ord, const char *gname, size_t n,
                           size_t spb, int vmode)
{
    size_t G = fl->nseries;
    tsdb_sample_t *s = fleet_samples(fl, n);
    tbuf_t chunks = {0}, z = {0};
    uint64_t total = 0, bytes[3] = {0, 0, 0};
    size_t *idx = xmalloc(spb * sizeof *idx);
    for (size_t g0 = 0; g0 < G; g0 += spb) {
        size_t m = G - g0 < spb ? G - g0 : spb;
        chunks.len = 0;
        memcpy(idx, ord + g0, m * sizeof *idx);
        qsort(idx, m, sizeof *idx, cmp_size);
        for (size_t i = 0; i < m; i++) {
            const tsdb_sample_t *ss = s + idx[i] * n;
            if (chunk_encode_mode(ss, n, CHUNK_V_CONST, &chunks) &&
                chunk_encode_mode(ss, n, vmode, &chunks))
                die("forced chunk_encode failed");
        }
        total += chunks.len;
        size_t bound = ZSTD_compressBound(chunks.len);
        if (tbuf_reserve(&z, bound)) die("out of memory");
        for (int l = 0; l < 3; l++) {
            size_t zl = ZSTD_compress(z.p, bound, chunks.p, chunks.len, zlevels[l]);
            if (ZSTD_isError(zl)) die("zstd failed");
            bytes[l] += zl + 32 + 2 * m;
        }
    }
    double samples = (double)G * (double)n;
    printf("| %s | %s | %.3f | %.3f | %.3f | %.3f |\n", gname,
           vmode == CHUNK_V_AUTO ? "auto (smallest)" : chunk_value_mode_name(vmode),
           (double)total / samples, (double)bytes[0] / samples, (double)bytes[1] / samples,
           (double)bytes[2] / samples);
    tbuf_free(&chunks);
    tbuf_free(&z);
    free(idx);
    free(s);
}

/* The templates that cost the most: chunk bytes per sample over all nodes. */
typedef struct {
    size_t j;
    double bps;
    uint64_t modes[4];
} tcost_t;

static int cmp_tcost(const void *a, const void *b)
{
    double x = ((const tcost_t *)a)->bps, y = ((const tcost_t *)b)->bps;
    return x > y ? -1 : x < y;
}

static void by_template(const fleet_t *fl, const recording_t *rec, size_t S, size_t n, size_t top)
{
    tsdb_sample_t *s = fleet_samples(fl, n);
    tcost_t *c = xmalloc(S * sizeof *c);
    memset(c, 0, S * sizeof *c);
    tbuf_t b = {0};
    for (size_t g = 0; g < fl->nseries; g++) {
        b.len = 0;
        if (chunk_encode(s + g * n, n, &b)) die("chunk_encode failed");
        c[g % S].j = g % S;
        c[g % S].bps += (double)b.len / (double)n / (double)(fl->nseries / S);
        c[g % S].modes[chunk_value_mode(b.p, b.len)]++;
    }
    qsort(c, S, sizeof *c, cmp_tcost);
    printf("| series (recorded name) | kind | chunk B/sample | const/decimal/gorilla/xorb |\n");
    printf("|---|---|---|---|\n");
    for (size_t i = 0; i < top && i < S; i++)
        printf("| %s | %s | %.3f | %" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 " |\n",
               rec->s[c[i].j].name, kind_names[fl->kind[c[i].j]], c[i].bps, c[i].modes[0],
               c[i].modes[1], c[i].modes[2], c[i].modes[3]);
    tbuf_free(&b);
    free(c);
    free(s);
}

/* A few small real blocks and chunks as a seed corpus for fuzz/fuzz_block. */
static void write_file(const char *dir, const char *name, const uint8_t *p, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, len, f) != len || fclose(f)) die("cannot write the corpus");
    printf("wrote %s (%zu bytes)\n", path, len);
}

static void write_corpus(const fleet_t *fl, size_t S, const char *dir)
{
    static const struct {
        size_t first, count, n;
        int level, stride;
    } blocks[] = {
        {0, 1, 1, 3, 1},    /* one sample: stored raw */
        {40, 12, 30, 3, 1}, /* a node's consecutive series */
        {0, 6, 60, 1, 41},  /* every 41st series: mixed kinds */
        {5, 8, 20, 9, 0},   /* one series across 8 nodes (stride S) */
    };
    tbuf_t b = {0}, scratch = {0};
    block_series_t bs[16];
    tsdb_sample_t *s = fleet_samples(fl, 60);
    char name[64];
    for (size_t k = 0; k < sizeof blocks / sizeof blocks[0]; k++) {
        size_t stride = blocks[k].stride ? (size_t)blocks[k].stride : S;
        for (size_t i = 0; i < blocks[k].count; i++) {
            size_t g = (blocks[k].first + i * stride) % fl->nseries;
            bs[i].sid = (uint32_t)(g + 1);
            bs[i].samples = s + g * 60;
            bs[i].n = (uint32_t)blocks[k].n;
        }
        if (block_encode(bs, blocks[k].count, blocks[k].level, &b, &scratch))
            die("block_encode failed");
        snprintf(name, sizeof name, "block-%zu.bin", k);
        write_file(dir, name, b.p, b.len);
    }
    /* chunks: one of each kind and a forced GORILLA and XORB */
    int done[K_NKINDS] = {0};
    for (size_t g = 0; g < S && g < fl->nseries; g++) {
        if (done[fl->kind[g]]++) continue;
        b.len = 0;
        if (chunk_encode(s + g * 60, 40, &b)) die("chunk_encode failed");
        snprintf(name, sizeof name, "chunk-%s.bin", kind_names[fl->kind[g]]);
        write_file(dir, name, b.p, b.len);
        if (fl->kind[g] == K_GAUGE) {
            static const int forced[2] = {CHUNK_V_GORILLA, CHUNK_V_XORB};
            for (int f = 0; f < 2; f++) {
                b.len = 0;
                if (chunk_encode_mode(s + g * 60, 40, forced[f], &b)) die("chunk_encode failed");
                snprintf(name, sizeof name, "chunk-%s.bin", chunk_value_mode_name(forced[f]));
                write_file(dir, name, b.p, b.len);
            }
        }
    }
    tbuf_free(&b);
    tbuf_free(&scratch);
    free(s);
}

int main(int argc, char **argv)
{
    const char *data = "../shared/data/node_exporter_1s.jsonl.zst";
    const char *types = "../shared/data/node_exporter_types.txt";
    size_t nodes = 20;
    uint64_t seed = 1;
    int quick = 0, top = 0;
    const char *corpus = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types = argv[++i];
        else if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
            nodes = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc)
            corpus = argv[++i];
        else if (!strcmp(argv[i], "--top") && i + 1 < argc)
            top = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--data FILE] [--types FILE] [--nodes N] [--seed S] "
                            "[--top K] [--quick] [--corpus DIR]\n",
                    argv[0]);
            return 2;
        }
    }
    if (nodes == 0) nodes = 1;

    recording_t rec;
    load_recording(data, &rec);
    load_types(types);
    /* the 1 s grid: the longest series' timestamps */
    size_t ref = 0;
    for (size_t i = 0; i < rec.ns; i++)
        if (rec.s[i].n > rec.s[ref].n) ref = i;
    size_t L = rec.s[ref].n, S = rec.ns;
    const int64_t *grid = rec.s[ref].t;
    tmpl_t *tp = xmalloc(S * sizeof *tp);
    int kinds[K_NKINDS] = {0};
    for (size_t j = 0; j < S; j++) {
        classify(&rec.s[j], grid, L, &tp[j]);
        kinds[tp[j].kind]++;
    }
    printf("recording: %s: %zu series x %zu points; kinds:", data, S, L);
    for (int k = 0; k < K_NKINDS; k++) printf(" %s %d", kind_names[k], kinds[k]);
    printf("\nfleet: %zu nodes (seed %" PRIu64 "), %zu series\n\n", nodes, seed, nodes * S);

    static const int intervals[2] = {15, 1};
    static const size_t chunk_ns[3] = {120, 240, 480};
    static const size_t spbs[3] = {64, 128, 256};
    size_t maxT = 480;
    size_t reps = (L + 15 * maxT) / L + 2;
    for (size_t j = 0; j < S; j++)
        if (tp[j].kind == K_COUNTER) counter_prepare(&tp[j], L, reps);

    if (corpus) {
        fleet_t fc;
        fleet_build(tp, S, L, grid, nodes < 8 ? 8 : nodes, 60, 15, seed, &fc);
        write_corpus(&fc, S, corpus);
        fleet_free(&fc);
        return 0;
    }

    size_t G = nodes * S;
    size_t *ord[2];
    ord[0] = xmalloc(G * sizeof *ord[0]);
    ord[1] = xmalloc(G * sizeof *ord[1]);
    for (size_t g = 0; g < G; g++) ord[0][g] = ord[1][g] = g;
    g_rec = &rec;
    g_S = S;
    qsort(ord[1], G, sizeof *ord[1], cmp_metric);
    static const char *grouping[2] = {"node-major", "metric-major"};

    printf("Blocks take consecutive series in node-major order (sids as remote write creates\n"
           "them: node by node) or metric-major order (sorted label sets: one metric across\n"
           "nodes). B/sample = bytes / samples; throughput = samples per CPU second.\n\n");
    printf("| interval | grouping | samples/chunk | series/block | chunks B/sample | zstd-1 | "
           "zstd-3 | zstd-9 | chunk enc Msamples/s | chunk dec Msamples/s | block enc (zstd-3) "
           "Msamples/s | block dec Msamples/s | const/decimal/gorilla/xorb chunks |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    result_t keep = {0};
    fleet_t fl15 = {0};
    for (int ii = 0; ii < 2; ii++) {
        fleet_t fl;
        fleet_build(tp, S, L, grid, nodes, maxT, intervals[ii], seed, &fl);
        for (int oi = 0; oi < 2; oi++) {
            for (int ci = 0; ci < 3; ci++) {
                for (int bi = 0; bi < 3; bi++) {
                    if (quick && (ci != 1 || bi != 1)) continue;
                    result_t r;
                    measure(&fl, ord[oi], chunk_ns[ci], spbs[bi], CHUNK_V_AUTO, 1, &r);
                    printf("| %d s | %s | %zu | %zu | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | "
                           "%.1f | %.1f | %" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 " |\n",
                           intervals[ii], grouping[oi], chunk_ns[ci], spbs[bi], r.chunk_bps,
                           r.blk_bps[0], r.blk_bps[1], r.blk_bps[2], r.enc_sps / 1e6,
                           r.dec_sps / 1e6, r.benc_sps / 1e6, r.bdec_sps / 1e6, r.modes[0],
                           r.modes[1], r.modes[2], r.modes[3]);
                    fflush(stdout);
                    if (ii == 0 && oi == 0 && ci == 1 && bi == 1) keep = r;
                }
            }
        }
        if (ii == 0)
            fl15 = fl;
        else
            fleet_free(&fl);
    }

    /* where the bytes go, and each encoding forced: 15 s x 240 x 128 */
    printf("\nBy series kind (15 s, 240 samples/chunk, chunks before zstd):\n\n");
    printf("| kind | series | chunk B/sample | share of chunk bytes |\n|---|---|---|---|\n");
    uint64_t tot = 0;
    for (int k = 0; k < K_NKINDS; k++) tot += keep.kind_bytes[k];
    for (int k = 0; k < K_NKINDS; k++)
        printf("| %s | %" PRIu64 " | %.3f | %.1f %% |\n", kind_names[k], keep.kind_samples[k] / 240,
               keep.kind_samples[k] ? (double)keep.kind_bytes[k] / (double)keep.kind_samples[k]
                                    : 0,
               100.0 * (double)keep.kind_bytes[k] / (double)tot);
    printf("\nForced value encodings (15 s, 240 samples/chunk, 128 series/block; CONST where the\n"
           "values allow, else the forced one; zstd of the concatenated chunks):\n\n");
    printf("| grouping | encoding | chunks B/sample | zstd-1 | zstd-3 | zstd-9 |\n"
           "|---|---|---|---|---|---|\n");
    for (int oi = 0; oi < 2; oi++)
        for (int vm = CHUNK_V_AUTO; vm <= CHUNK_V_XORB; vm++)
            if (vm != CHUNK_V_CONST) measure_forced(&fl15, ord[oi], grouping[oi], 240, 128, vm);
    if (top > 0) {
        printf("\nCostliest series (15 s, 240 samples/chunk, chunks before zstd):\n\n");
        by_template(&fl15, &rec, S, 240, (size_t)top);
    }
    fleet_free(&fl15);
    free(ord[0]);
    free(ord[1]);
    for (size_t j = 0; j < S; j++) {
        free(tp[j].v);
        free(tp[j].cum);
        free(rec.s[j].t);
        free(rec.s[j].v);
    }
    free(tp);
    free(rec.s);
    free(g_types);
    return 0;
}
