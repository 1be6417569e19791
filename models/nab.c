/* nab.c — NAB scoring rules and the CSV / label readers (see nab.h). */
#include "models/nab.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nab_strerror(int err)
{
    switch (err) {
#define NAB_ERR_STR_(name, code, msg)                                                              \
    case code:                                                                                     \
        return msg;
        NAB_ERRNO_MAP(NAB_ERR_STR_)
#undef NAB_ERR_STR_
    }
    return "unknown error";
}

const nab_profile_t nab_profiles[NAB_NPROFILES] = {
    {"standard", 1.0, 0.11, 1.0},
    {"reward_low_FP_rate", 1.0, 0.22, 1.0},
    {"reward_low_FN_rate", 1.0, 0.11, 2.0},
};

double nab_sigmoid(double y)
{
    if (y > 3.0) return -1.0;
    return 2.0 / (1.0 + exp(5.0 * y)) - 1.0;
}

size_t nab_probation(size_t n)
{
    double p = floor(0.15 * (double)n);
    return p > 750.0 ? 750 : (size_t)p;
}

/* Window containing row i, or the latest window ending before i (*inside
 * says which), or -1. Windows are sorted and disjoint: binary search. */
static long window_at(const nab_file_t *f, size_t i, int *inside)
{
    size_t a = 0, b = f->nwin; /* first window with lo > i */
    while (a < b) {
        size_t m = (a + b) / 2;
        if (f->win[m].lo > i)
            b = m;
        else
            a = m + 1;
    }
    *inside = 0;
    if (a == 0) return -1;
    const nab_window_t *w = &f->win[a - 1];
    if (i <= w->hi) *inside = 1;
    return (long)(a - 1);
}

double nab_row_value(const nab_file_t *f, const nab_profile_t *p, size_t i)
{
    if (i < nab_probation(f->n)) return 0.0;
    int inside;
    long k = window_at(f, i, &inside);
    if (k < 0) return -p->fp_w;
    const nab_window_t *w = &f->win[k];
    double wid = (double)(w->hi - w->lo + 1);
    if (inside) {
        double y = -(double)(w->hi - i + 1) / wid;
        return p->tp_w * nab_sigmoid(y) / nab_sigmoid(-1.0);
    }
    double y = (double)(i - w->hi) / (wid - 1.0);
    return p->fp_w * nab_sigmoid(y);
}

/* Windows that count: not entirely inside the probationary period. */
static int window_counts(const nab_file_t *f, size_t k, size_t prob)
{
    return f->win[k].hi >= prob;
}

double nab_file_raw(const nab_file_t *f, const nab_profile_t *p, double th)
{
    size_t prob = nab_probation(f->n);
    double raw = 0.0;
    size_t k = 0;
    for (size_t w = 0; w < f->nwin; w++) {
        if (!window_counts(f, w, prob)) continue;
        /* earliest detection inside the window */
        size_t lo = f->win[w].lo < prob ? prob : f->win[w].lo;
        double best = -p->fn_w;
        for (size_t i = lo; i <= f->win[w].hi; i++)
            if (f->scores[i] >= th) {
                best = nab_row_value(f, p, i);
                break;
            }
        raw += best;
    }
    for (size_t i = prob; i < f->n; i++) {
        if (f->scores[i] < th) continue;
        while (k < f->nwin && f->win[k].hi < i)
            k++;
        if (k < f->nwin && f->win[k].lo <= i) continue; /* inside a window */
        raw += nab_row_value(f, p, i);
    }
    return raw;
}

typedef struct {
    double s;
    uint32_t file;
    uint32_t row;
} cand_t;

static int cand_cmp(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1; /* descending score */
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

int nab_score(const nab_file_t *files, size_t nfiles, const nab_profile_t *p, nab_result_t *out,
              double *per_file_raw)
{
    if (!files || !p || !out) return NAB_EINVAL;
    memset(out, 0, sizeof *out);
    size_t total = 0, nwin = 0, wbase_n = 0;
    for (size_t f = 0; f < nfiles; f++) {
        size_t prob = nab_probation(files[f].n);
        for (size_t i = prob; i < files[f].n; i++) {
            double s = files[f].scores[i];
            if (!isfinite(s) || s < 0.0 || s > 1.0) return NAB_ERANGE;
        }
        total += files[f].n - prob;
        for (size_t k = 0; k < files[f].nwin; k++)
            if (window_counts(&files[f], k, prob)) nwin++;
        wbase_n += files[f].nwin;
        if (files[f].n > UINT32_MAX) return NAB_EINVAL;
    }
    cand_t *c = malloc((total ? total : 1) * sizeof *c);
    double *wbest = malloc((wbase_n ? wbase_n : 1) * sizeof *wbest);
    size_t *wbase = malloc((nfiles ? nfiles : 1) * sizeof *wbase);
    if (!c || !wbest || !wbase) {
        free(c);
        free(wbest);
        free(wbase);
        return NAB_ENOMEM;
    }
    size_t m = 0, wb = 0;
    for (size_t f = 0; f < nfiles; f++) {
        wbase[f] = wb;
        for (size_t k = 0; k < files[f].nwin; k++)
            wbest[wb + k] = -p->fn_w;
        wb += files[f].nwin;
        for (size_t i = nab_probation(files[f].n); i < files[f].n; i++)
            c[m++] = (cand_t){files[f].scores[i], (uint32_t)f, (uint32_t)i};
    }
    qsort(c, m, sizeof *c, cand_cmp);
    /* Sweep thresholds downward: every distinct score, after 1.1 (no
     * detections). A window is worth its earliest detection, which is its
     * largest value: keep the best per window. Ties keep the higher
     * threshold (strictly greater only). */
    double raw = -p->fn_w * (double)nwin;
    double best_raw = raw, best_th = 1.1;
    for (size_t a = 0; a < m;) {
        size_t b = a;
        while (b < m && c[b].s == c[a].s) {
            const nab_file_t *ff = &files[c[b].file];
            int inside;
            long k = window_at(ff, c[b].row, &inside);
            double v = nab_row_value(ff, p, c[b].row);
            if (inside) {
                double *wbv = &wbest[wbase[c[b].file] + (size_t)k];
                if (v > *wbv) {
                    raw += v - *wbv;
                    *wbv = v;
                }
            } else {
                raw += v;
            }
            b++;
        }
        if (raw > best_raw) {
            best_raw = raw;
            best_th = c[a].s;
        }
        a = b;
    }
    free(c);
    free(wbest);
    free(wbase);
    /* Recompute at the chosen threshold file by file (the sweep's running
     * sum may differ in the last bits). */
    double sum = 0.0;
    for (size_t f = 0; f < nfiles; f++) {
        double r = nab_file_raw(&files[f], p, best_th);
        if (per_file_raw) per_file_raw[f] = r;
        sum += r;
        size_t prob = nab_probation(files[f].n), k = 0;
        for (size_t w = 0; w < files[f].nwin; w++) {
            if (!window_counts(&files[f], w, prob)) continue;
            int hit = 0;
            for (size_t i = files[f].win[w].lo; i <= files[f].win[w].hi && !hit; i++)
                hit = i >= prob && files[f].scores[i] >= best_th;
            if (hit)
                out->tp++;
            else
                out->fn++;
        }
        for (size_t i = prob; i < files[f].n; i++) {
            if (files[f].scores[i] < best_th) continue;
            while (k < files[f].nwin && files[f].win[k].hi < i)
                k++;
            if (!(k < files[f].nwin && files[f].win[k].lo <= i)) out->fp++;
        }
    }
    out->threshold = best_th;
    out->raw = sum;
    out->perfect_raw = p->tp_w * (double)nwin;
    out->null_raw = -p->fn_w * (double)nwin;
    double den = out->perfect_raw - out->null_raw;
    out->score = den > 0 ? 100.0 * (sum - out->null_raw) / den : 0.0;
    return 0;
}

/* ---- time and CSV ------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned mo, unsigned d)
{
    y -= mo <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (mo + (mo > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, size_t n, unsigned *v)
{
    unsigned x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + (unsigned)(s[i] - '0');
    }
    *v = x;
    return 0;
}

int64_t nab_parse_time(const char *s, size_t len, int *ok)
{
    *ok = 0;
    unsigned Y, M, D, h, mi, se;
    if (len < 19 || s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T') ||
        s[13] != ':' || s[16] != ':')
        goto epoch;
    if (digits(s, 4, &Y) || digits(s + 5, 2, &M) || digits(s + 8, 2, &D) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || se > 60) return -1;
    int64_t ms = 0;
    if (len > 19) {
        if (s[19] != '.') return -1;
        double scale = 100.0;
        for (size_t i = 20; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') return -1;
            ms += (int64_t)((s[i] - '0') * scale);
            scale /= 10.0;
        }
    }
    *ok = 1;
    return ((days_from_civil(Y, M, D) * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000 + ms;
epoch: {
    /* integer epoch seconds (<= 11 digits) or milliseconds */
    unsigned long long x = 0;
    if (!len || len > 18) return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + (unsigned)(s[i] - '0');
    }
    *ok = 1;
    return len <= 11 ? (int64_t)x * 1000 : (int64_t)x;
}
}

void nab_csv_free(nab_csv_t *c)
{
    if (!c) return;
    free(c->ts);
    free(c->v);
    free(c->text);
    free(c->tstr);
    memset(c, 0, sizeof *c);
}

int nab_csv_parse(const char *text, size_t len, nab_csv_t *out)
{
    memset(out, 0, sizeof *out);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    out->text = malloc(len + 1);
    out->ts = malloc(lines * sizeof *out->ts);
    out->v = malloc(lines * sizeof *out->v);
    out->tstr = malloc(lines * sizeof *out->tstr);
    if (!out->text || !out->ts || !out->v || !out->tstr) {
        nab_csv_free(out);
        return NAB_ENOMEM;
    }
    memcpy(out->text, text, len);
    out->text[len] = 0;
    char *p = out->text, *end = out->text + len;
    int header = 1;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *line = p;
        p = nl ? nl + 1 : end;
        char *e = le;
        if (e > line && e[-1] == '\r') e--;
        if (e == line) continue; /* blank line */
        *e = 0;
        if (header) { /* first line: a header unless it parses as a row */
            header = 0;
            char *comma = memchr(line, ',', (size_t)(e - line));
            int ok = 0;
            if (comma) nab_parse_time(line, (size_t)(comma - line), &ok);
            if (!ok) continue;
        }
        char *comma = memchr(line, ',', (size_t)(e - line));
        if (!comma) goto bad;
        *comma = 0;
        int ok;
        int64_t t = nab_parse_time(line, (size_t)(comma - line), &ok);
        if (!ok) goto bad;
        char *ve;
        errno = 0;
        double v = strtod(comma + 1, &ve);
        while (ve < e && (*ve == ' ' || *ve == '\t'))
            ve++;
        if (ve == comma + 1 || ve != e) goto bad;
        out->ts[out->n] = t;
        out->v[out->n] = v;
        out->tstr[out->n] = line;
        out->n++;
    }
    return 0;
bad:
    nab_csv_free(out);
    return NAB_EPARSE;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        if (cap > ((size_t)1 << 31)) { /* 2 GiB cap */
            free(b);
            b = NULL;
            break;
        }
        char *nb = realloc(b, cap * 2);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    if (b && ferror(f)) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = n;
    return b;
}

int nab_csv_load(const char *path, nab_csv_t *out)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *t = read_all(path, &len);
    if (!t) return NAB_EPARSE;
    int rc = nab_csv_parse(t, len, out);
    free(t);
    return rc;
}

/* ---- labels ------------------------------------------------------------ */

void nab_labels_free(nab_labels_t *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].key);
        free(l->e[i].win);
    }
    free(l->e);
    memset(l, 0, sizeof *l);
}

/* A JSON string at *pp (after the opening quote): copied into dst (cap
 * bytes, truncated never: error if too long). No escapes are expected in
 * label files; \" and \\ are accepted. */
static int json_str(const char **pp, const char *end, char *dst, size_t cap)
{
    const char *p = *pp;
    size_t n = 0;
    while (p < end && *p != '"') {
        char ch = *p++;
        if (ch == '\\') {
            if (p >= end) return -1;
            ch = *p++;
        }
        if (n + 1 >= cap) return -1;
        dst[n++] = ch;
    }
    if (p >= end) return -1;
    dst[n] = 0;
    *pp = p + 1;
    return 0;
}

int nab_labels_parse(const char *json, size_t len, nab_labels_t *out)
{
    memset(out, 0, sizeof *out);
    const char *p = json, *end = json + len;
    int depth = 0, slot = 0; /* slot: 0 start, 1 end of the current window */
    size_t cap = 0;
    nab_label_entry_t *cur = NULL;
    char buf[1024];
    while (p < end) {
        char ch = *p++;
        switch (ch) {
        case '{':
        case '[':
            depth++;
            if (depth > 3) goto bad;
            if (depth == 3) {
                if (!cur) goto bad;
                void *nw = realloc(cur->win, (cur->nwin + 1) * sizeof *cur->win);
                if (!nw) goto oom;
                cur->win = nw;
                memset(cur->win[cur->nwin], 0, sizeof cur->win[0]);
                cur->nwin++;
                slot = 0;
            }
            break;
        case '}':
        case ']':
            if (depth == 3 && slot != 2) goto bad;
            depth--;
            if (depth < 0) goto bad;
            break;
        case '"':
            if (json_str(&p, end, buf, sizeof buf)) goto bad;
            if (depth == 1) {
                if (out->n == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    void *ne = realloc(out->e, nc * sizeof *out->e);
                    if (!ne) goto oom;
                    out->e = ne;
                    cap = nc;
                }
                cur = &out->e[out->n++];
                memset(cur, 0, sizeof *cur);
                cur->key = strdup(buf);
                if (!cur->key) goto oom;
            } else if (depth == 3) {
                if (slot > 1) goto bad;
                size_t l = strlen(buf);
                if (l > 19 && !strcmp(buf + 19, ".000000")) buf[19] = 0, l = 19;
                if (l >= sizeof cur->win[0][0]) goto bad;
                memcpy(cur->win[cur->nwin - 1][slot], buf, l + 1);
                slot++;
            } else {
                goto bad;
            }
            break;
        default:
            break;
        }
    }
    if (depth != 0) goto bad;
    return 0;
bad:
    nab_labels_free(out);
    return NAB_EPARSE;
oom:
    nab_labels_free(out);
    return NAB_ENOMEM;
}

int nab_labels_load(const char *path, nab_labels_t *out)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *t = read_all(path, &len);
    if (!t) return NAB_EPARSE;
    int rc = nab_labels_parse(t, len, out);
    free(t);
    return rc;
}

const nab_label_entry_t *nab_labels_find(const nab_labels_t *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->e[i].key, key)) return &l->e[i];
    return NULL;
}

int nab_windows_resolve(const nab_label_entry_t *e, const nab_csv_t *c, nab_window_t *win)
{
    for (size_t k = 0; k < e->nwin; k++) {
        long lo = -1, hi = -1;
        for (size_t i = 0; i < c->n && (lo < 0 || hi < 0); i++) {
            if (lo < 0 && !strcmp(c->tstr[i], e->win[k][0])) lo = (long)i;
            if (hi < 0 && !strcmp(c->tstr[i], e->win[k][1])) hi = (long)i;
        }
        if (lo < 0 || hi < 0 || hi < lo) return NAB_ENOTFOUND;
        win[k].lo = (size_t)lo;
        win[k].hi = (size_t)hi;
    }
    return 0;
}

/* ---- corpus ------------------------------------------------------------ */

void nab_corpus_free(nab_corpus_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        if (c->csv) nab_csv_free(&c->csv[i]);
        if (c->win) free(c->win[i]);
        if (c->scores) free(c->scores[i]);
    }
    free(c->csv);
    free(c->win);
    free(c->scores);
    free(c->files);
    free(c->keys);
    nab_labels_free(&c->labels);
    memset(c, 0, sizeof *c);
}

int nab_corpus_load(const char *dir, const char *labels_name, nab_corpus_t *c, char *err,
                    size_t errcap)
{
    memset(c, 0, sizeof *c);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, labels_name);
    int rc = nab_labels_load(path, &c->labels);
    if (rc) {
        snprintf(err, errcap, "%s", path);
        return rc;
    }
    size_t n = c->labels.n;
    c->csv = calloc(n ? n : 1, sizeof *c->csv);
    c->win = calloc(n ? n : 1, sizeof *c->win);
    c->scores = calloc(n ? n : 1, sizeof *c->scores);
    c->files = calloc(n ? n : 1, sizeof *c->files);
    c->keys = calloc(n ? n : 1, sizeof *c->keys);
    if (!c->csv || !c->win || !c->scores || !c->files || !c->keys) {
        nab_corpus_free(c);
        return NAB_ENOMEM;
    }
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        const nab_label_entry_t *e = &c->labels.e[i];
        c->keys[i] = e->key;
        snprintf(path, sizeof path, "%s/data/%s", dir, e->key);
        rc = nab_csv_load(path, &c->csv[i]);
        if (!rc) {
            c->win[i] = calloc(e->nwin ? e->nwin : 1, sizeof *c->win[i]);
            c->scores[i] = calloc(c->csv[i].n ? c->csv[i].n : 1, sizeof *c->scores[i]);
            if (!c->win[i] || !c->scores[i]) rc = NAB_ENOMEM;
        }
        if (!rc) rc = nab_windows_resolve(e, &c->csv[i], c->win[i]);
        if (rc) {
            snprintf(err, errcap, "%s", path);
            nab_corpus_free(c);
            return rc;
        }
        c->files[i] = (nab_file_t){c->csv[i].n, c->scores[i], c->win[i], e->nwin};
    }
    return 0;
}
