/*
 * bbcsv.c — Backblaze CSV into a column table (see bbcsv.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/bbcsv.h"

void bbcsv_init(bbcsv_t *t)
{
    memset(t, 0, sizeof *t);
}

void bbcsv_free(bbcsv_t *t)
{
    if (!t) return;
    free(t->dev);
    free(t->day);
    free(t->failure);
    for (int a = 0; a < BBCSV_MAX_ATTR; a++) free(t->raw[a]);
    for (int32_t i = 0; i < t->n_dev; i++) free(t->serial[i]);
    for (int32_t i = 0; i < t->n_node; i++) free(t->node[i]);
    free(t->serial);
    free(t->dev_node);
    free(t->node);
    free(t->dev_hash);
    free(t->node_hash);
    bbcsv_init(t);
}

/* days from civil date (proleptic Gregorian) */
static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3u : 9u)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int32_t)doe - 719468;
}

int bbcsv_parse_date(const char *s, size_t n, int32_t *days)
{
    if (n != 10 || s[4] != '-' || s[7] != '-') return -1;
    int v[3] = {0, 0, 0};
    const int pos[3][2] = {{0, 4}, {5, 7}, {8, 10}};
    for (int k = 0; k < 3; k++)
        for (int i = pos[k][0]; i < pos[k][1]; i++) {
            if (s[i] < '0' || s[i] > '9') return -1;
            v[k] = v[k] * 10 + (s[i] - '0');
        }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31) return -1;
    *days = days_from_civil(v[0], (unsigned)v[1], (unsigned)v[2]);
    return 0;
}

void bbcsv_format_date(int32_t z, char *buf)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int y = (int)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(buf, 16, "%04d-%02u-%02u", y % 10000, m % 100, d % 100);
}

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h;
}

/* Find or add a name in an open-addressing table. Returns its index or a negative error. */
static int32_t intern(char ***names, int32_t *n, int32_t *cap, int32_t **ht, size_t *hcap,
                      const char *s, size_t len)
{
    if ((size_t)(*n + 1) * 2 > *hcap) {
        size_t nc = *hcap ? *hcap * 2 : 1024;
        int32_t *nh = malloc(nc * sizeof *nh);
        if (!nh) return BBCSV_ENOMEM;
        for (size_t i = 0; i < nc; i++) nh[i] = -1;
        for (int32_t i = 0; i < *n; i++) {
            size_t j = hash_str((*names)[i], strlen((*names)[i])) & (nc - 1);
            while (nh[j] >= 0) j = (j + 1) & (nc - 1);
            nh[j] = i;
        }
        free(*ht);
        *ht = nh;
        *hcap = nc;
    }
    size_t j = hash_str(s, len) & (*hcap - 1);
    while ((*ht)[j] >= 0) {
        const char *o = (*names)[(*ht)[j]];
        if (strlen(o) == len && !memcmp(o, s, len)) return (*ht)[j];
        j = (j + 1) & (*hcap - 1);
    }
    if (*n == *cap) {
        int32_t nc = *cap ? *cap * 2 : 256;
        char **nn = realloc(*names, (size_t)nc * sizeof *nn);
        if (!nn) return BBCSV_ENOMEM;
        *names = nn;
        *cap = nc;
    }
    char *c = malloc(len + 1);
    if (!c) return BBCSV_ENOMEM;
    memcpy(c, s, len);
    c[len] = 0;
    (*names)[*n] = c;
    (*ht)[j] = *n;
    return (*n)++;
}

static int grow_rows(bbcsv_t *t)
{
    if (t->n_rows < t->cap) return 0;
    size_t nc = t->cap ? t->cap * 2 : 4096;
    int32_t *dv = realloc(t->dev, nc * sizeof *dv);
    if (!dv) return BBCSV_ENOMEM;
    t->dev = dv;
    int32_t *dy = realloc(t->day, nc * sizeof *dy);
    if (!dy) return BBCSV_ENOMEM;
    t->day = dy;
    uint8_t *f = realloc(t->failure, nc);
    if (!f) return BBCSV_ENOMEM;
    t->failure = f;
    for (int a = 0; a < BBCSV_MAX_ATTR; a++) {
        if (!t->raw[a]) continue;
        float *r = realloc(t->raw[a], nc * sizeof *r);
        if (!r) return BBCSV_ENOMEM;
        t->raw[a] = r;
    }
    t->cap = nc;
    return 0;
}

enum { COL_IGNORE = -1, COL_DATE = -2, COL_SERIAL = -3, COL_MODEL = -4, COL_FAILURE = -5,
       COL_DC = -6, COL_VAULT = -7, COL_POD = -8 };

static int header_col(const char *s, size_t n)
{
#define IS(lit) (n == sizeof(lit) - 1 && !memcmp(s, lit, n))
    if (IS("date")) return COL_DATE;
    if (IS("serial_number")) return COL_SERIAL;
    if (IS("model")) return COL_MODEL;
    if (IS("failure")) return COL_FAILURE;
    if (IS("datacenter")) return COL_DC;
    if (IS("vault_id")) return COL_VAULT;
    if (IS("pod_id")) return COL_POD;
#undef IS
    if (n > 10 && !memcmp(s, "smart_", 6) && !memcmp(s + n - 4, "_raw", 4)) {
        int id = 0;
        for (size_t i = 6; i < n - 4; i++) {
            if (s[i] < '0' || s[i] > '9' || id > 255) return COL_IGNORE;
            id = id * 10 + (s[i] - '0');
        }
        if (id >= 1 && id < BBCSV_MAX_ATTR) return id;
    }
    return COL_IGNORE;
}

/* Split line into fields (no quoting in Backblaze files; surrounding quotes are stripped). */
static size_t split(char *line, size_t len, const char **f, size_t *fl, size_t maxf)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len && n < maxf; i++) {
        if (i == len || line[i] == ',') {
            const char *s = line + start;
            size_t l = i - start;
            if (l >= 2 && s[0] == '"' && s[l - 1] == '"') s++, l -= 2;
            while (l && (s[l - 1] == ' ' || s[l - 1] == '\r')) l--;
            f[n] = s;
            fl[n] = l;
            n++;
            start = i + 1;
        }
    }
    return n;
}

#define MAXF 1024

int bbcsv_read_file(bbcsv_t *t, const char *path, const char *model_filter, char *err,
                    size_t errlen)
{
    char dummy[8];
    if (!err) err = dummy, errlen = sizeof dummy;
    err[0] = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "cannot open %s", path);
        return BBCSV_EIO;
    }
    static __thread int col[MAXF];
    static __thread const char *f[MAXF];
    static __thread size_t fl[MAXF];
    char *line = NULL, nodebuf[512];
    size_t lcap = 0, ncol = 0;
    ssize_t len;
    int rc = 0, have_header = 0;
    int c_date = -1, c_serial = -1, c_model = -1, c_fail = -1, c_dc = -1, c_vault = -1, c_pod = -1;
    while ((len = getline(&line, &lcap, fp)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (!len) continue;
        size_t n = split(line, (size_t)len, f, fl, MAXF);
        if (!have_header) {
            have_header = 1;
            ncol = n;
            for (size_t i = 0; i < n; i++) {
                col[i] = header_col(f[i], fl[i]);
                switch (col[i]) {
                case COL_DATE: c_date = (int)i; break;
                case COL_SERIAL: c_serial = (int)i; break;
                case COL_MODEL: c_model = (int)i; break;
                case COL_FAILURE: c_fail = (int)i; break;
                case COL_DC: c_dc = (int)i; break;
                case COL_VAULT: c_vault = (int)i; break;
                case COL_POD: c_pod = (int)i; break;
                default: break;
                }
                if (col[i] > 0 && !t->raw[col[i]]) {
                    size_t cap = t->cap ? t->cap : 4096;
                    float *r = malloc(cap * sizeof *r);
                    if (!r) {
                        rc = BBCSV_ENOMEM;
                        goto out;
                    }
                    for (size_t k = 0; k < t->n_rows; k++) r[k] = NAN;
                    t->raw[col[i]] = r;
                    if (!t->cap) { /* first allocation of the row arrays follows the same cap */
                        if ((rc = grow_rows(t))) goto out;
                    }
                }
            }
            if (c_date < 0 || c_serial < 0 || c_fail < 0) {
                snprintf(err, errlen, "%s: header lacks date, serial_number or failure", path);
                rc = BBCSV_EHEADER;
                goto out;
            }
            if (model_filter && c_model < 0) {
                snprintf(err, errlen, "%s: header lacks model (needed for the model filter)", path);
                rc = BBCSV_EHEADER;
                goto out;
            }
            continue;
        }
        if (n != ncol) {
            t->rows_skipped++;
            continue;
        }
        if (model_filter && (fl[c_model] != strlen(model_filter) ||
                             memcmp(f[c_model], model_filter, fl[c_model]))) {
            t->rows_filtered++;
            continue;
        }
        int32_t day;
        if (bbcsv_parse_date(f[c_date], fl[c_date], &day) || !fl[c_serial] || fl[c_fail] < 1 ||
            (f[c_fail][0] != '0' && f[c_fail][0] != '1')) {
            t->rows_skipped++;
            continue;
        }
        if ((rc = grow_rows(t))) goto out;
        int32_t d = intern(&t->serial, &t->n_dev, &t->dev_cap, &t->dev_hash, &t->dev_hcap,
                           f[c_serial], fl[c_serial]);
        if (d < 0) {
            rc = d;
            goto out;
        }
        if (t->dev_cap > t->dev_node_cap) {
            int32_t *dn = realloc(t->dev_node, (size_t)t->dev_cap * sizeof *dn);
            if (!dn) {
                rc = BBCSV_ENOMEM;
                goto out;
            }
            t->dev_node = dn;
            t->dev_node_cap = t->dev_cap;
        }
        int32_t node;
        if (c_pod >= 0 && fl[c_pod]) {
            snprintf(nodebuf, sizeof nodebuf, "%.*s/%.*s/%.*s", c_dc >= 0 ? (int)fl[c_dc] : 0,
                     c_dc >= 0 ? f[c_dc] : "", c_vault >= 0 ? (int)fl[c_vault] : 0,
                     c_vault >= 0 ? f[c_vault] : "", (int)fl[c_pod], f[c_pod]);
            node = intern(&t->node, &t->n_node, &t->node_cap, &t->node_hash, &t->node_hcap,
                          nodebuf, strlen(nodebuf));
        } else {
            node = intern(&t->node, &t->n_node, &t->node_cap, &t->node_hash, &t->node_hcap,
                          f[c_serial], fl[c_serial]);
        }
        if (node < 0) {
            rc = node;
            goto out;
        }
        t->dev_node[d] = node; /* the latest location wins */
        size_t r = t->n_rows++;
        t->dev[r] = d;
        t->day[r] = day;
        t->failure[r] = f[c_fail][0] == '1';
        for (int a = 1; a < BBCSV_MAX_ATTR; a++)
            if (t->raw[a]) t->raw[a][r] = NAN;
        for (size_t i = 0; i < n; i++) {
            if (col[i] <= 0 || !fl[i]) continue;
            char tmp[64], *end;
            size_t l = fl[i] < sizeof tmp - 1 ? fl[i] : sizeof tmp - 1;
            memcpy(tmp, f[i], l);
            tmp[l] = 0;
            double v = strtod(tmp, &end);
            if (end != tmp && *end == 0 && isfinite(v)) t->raw[col[i]][r] = (float)v;
        }
    }
    if (!have_header) {
        snprintf(err, errlen, "%s: empty file", path);
        rc = BBCSV_EHEADER;
    }
out:
    free(line);
    fclose(fp);
    return rc;
}
