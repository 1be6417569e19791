/*
 * predict.c — scoring every device of a store with an NTAM model (see predict.h).
 */
#include "models/predict.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/ntam.h"

static void seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

int predict_model_from_bytes(const uint8_t *buf, size_t len, const char *name, feat_kind_t kind,
                             predict_model_t **out, char *err, size_t errlen)
{
    if (!out || (!buf && len) || (kind != FEAT_KIND_DISK && kind != FEAT_KIND_GPU)) {
        seterr(err, errlen, "invalid argument");
        return NTAM_EINVAL;
    }
    *out = NULL;
    if (!name) name = "(memory)";
    predict_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        seterr(err, errlen, "out of memory");
        return NTAM_ENOMEM;
    }
    uint64_t want = feat_schema_hash(kind);
    int rc = ntam_bundle_decode(buf, len, want, &m->b);
    if (rc == NTAM_ESCHEMA) {
        seterr(err, errlen,
               "model file %s: trained on a different feature schema (hash %016llx, this build's "
               "%s features have %016llx): retrain it with this version of augur",
               name, (unsigned long long)m->b.schema_hash, feat_kind_name(kind),
               (unsigned long long)want);
        ntam_bundle_clear(&m->b);
        free(m);
        return rc;
    }
    if (rc) {
        seterr(err, errlen, "model file %s: %s", name, ntam_strerror(rc));
        ntam_bundle_clear(&m->b);
        free(m);
        return rc;
    }
    const ntam_hparams_t *hp = ntam_hparams(m->b.model);
    rc = NTAM_ESCHEMA;
    if (m->b.kind != (int32_t)kind) {
        seterr(err, errlen, "model file %s: trained for %s devices, not %s", name,
               feat_kind_name(m->b.kind), feat_kind_name(kind));
        goto bad;
    }
    if ((uint32_t)m->b.n_features != feat_count(kind) || hp->n_features != m->b.n_features) {
        seterr(err, errlen, "model file %s: %d features, the %s schema has %u", name,
               m->b.n_features, feat_kind_name(kind), feat_count(kind));
        goto bad;
    }
    for (uint32_t f = 0; f < feat_count(kind); f++)
        if (strncmp(m->b.feature[f], feat_name(kind, f), NTAM_FEATURE_NAME)) {
            seterr(err, errlen, "model file %s: feature %u is '%.48s', expected '%s'", name, f,
                   m->b.feature[f], feat_name(kind, f));
            goto bad;
        }
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ buf[i]) * 0x100000001b3ULL;
    m->checksum = h;
    m->file_bytes = len;
    m->kind = kind;
    snprintf(m->path, sizeof m->path, "%s", name);
    *out = m;
    return 0;
bad:
    ntam_bundle_clear(&m->b);
    free(m);
    return rc;
}

int predict_model_load(const char *path, feat_kind_t kind, predict_model_t **out, char *err,
                       size_t errlen)
{
    if (!path || !out) {
        seterr(err, errlen, "invalid argument");
        return NTAM_EINVAL;
    }
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        seterr(err, errlen, "model file %s: cannot open: %s", path, strerror(errno));
        return NTAM_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (1 << 30)) {
        close(fd);
        seterr(err, errlen, "model file %s: not a regular file of at most 1 GiB", path);
        return NTAM_EIO;
    }
    size_t n = (size_t)st.st_size, off = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        seterr(err, errlen, "out of memory");
        return NTAM_ENOMEM;
    }
    while (off < n) {
        ssize_t k = read(fd, buf + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        off += (size_t)k;
    }
    close(fd);
    int rc = predict_model_from_bytes(buf, off, path, kind, out, err, errlen);
    free(buf);
    return rc;
}

void predict_model_destroy(predict_model_t *m)
{
    if (!m) return;
    ntam_bundle_clear(&m->b);
    free(m);
}

void predict_result_destroy(predict_result_t *res)
{
    if (!res) return;
    feat_devices_destroy(res->devices);
    free(res->score);
    free(res);
}

/* Top-k insertion by key (descending). */
static void top_feat(predict_score_t *s, uint16_t f, float v)
{
    float a = fabsf(v);
    if (a == 0) return;
    int n = s->nfeat;
    if (n == PREDICT_TOP && a <= fabsf(s->feat[n - 1].value)) return;
    int k = n < PREDICT_TOP ? n : PREDICT_TOP - 1;
    while (k > 0 && fabsf(s->feat[k - 1].value) < a) {
        s->feat[k] = s->feat[k - 1];
        k--;
    }
    s->feat[k].feature = f;
    s->feat[k].value = v;
    if (n < PREDICT_TOP) s->nfeat++;
}

static void top_nb(predict_score_t *s, uint32_t d, float w)
{
    int n = s->nnb;
    if (n == PREDICT_TOP && w <= s->nb[n - 1].weight) return;
    int k = n < PREDICT_TOP ? n : PREDICT_TOP - 1;
    while (k > 0 && s->nb[k - 1].weight < w) {
        s->nb[k] = s->nb[k - 1];
        k--;
    }
    s->nb[k].device = d;
    s->nb[k].weight = w;
    if (n < PREDICT_TOP) s->nnb++;
}

int predict_run(const predict_model_t *m, tsdb_reader_t *r, int64_t t, const predict_config_t *cfg,
                predict_result_t **out, char *err, size_t errlen)
{
    if (!m || !r || !out) {
        seterr(err, errlen, "invalid argument");
        return NTAM_EINVAL;
    }
    *out = NULL;
    const ntam_hparams_t *hp = ntam_hparams(m->b.model);
    feat_config_t fc;
    fc.kind = m->kind;
    fc.window = (uint32_t)hp->window;
    fc.step_ms = cfg && cfg->step_ms > 0     ? cfg->step_ms
                 : m->kind == FEAT_KIND_DISK ? 86400000LL
                                             : 3600000LL;
    int32_t batch = cfg && cfg->batch_dev > 0 ? cfg->batch_dev : 1024;
    predict_result_t *res = calloc(1, sizeof *res);
    if (!res) {
        seterr(err, errlen, "out of memory");
        return NTAM_ENOMEM;
    }
    res->kind = m->kind;
    res->t_ms = t;
    res->horizon = m->b.horizon;
    res->threshold = m->b.threshold;
    int rc = feat_devices_from_store(r, &fc, t, &res->devices);
    if (rc) {
        seterr(err, errlen, "reading %s devices from the store: %s", feat_kind_name(m->kind),
               rc == FEAT_ESTORE ? tsdb_strerror(feat_store_error()) : "out of memory");
        predict_result_destroy(res);
        return rc == FEAT_ENOMEM ? NTAM_ENOMEM : NTAM_EIO;
    }
    uint32_t n = feat_devices_count(res->devices);
    res->n = n;
    res->score = calloc(n ? n : 1, sizeof *res->score);
    if (!res->score) {
        seterr(err, errlen, "out of memory");
        predict_result_destroy(res);
        return NTAM_ENOMEM;
    }
    if (!n) {
        *out = res;
        return 0;
    }
    uint32_t W = fc.window, C = feat_raw_count(m->kind), F = feat_count(m->kind);
    double *raw = malloc((size_t)n * W * C * sizeof *raw);
    float *x = malloc((size_t)n * W * F * sizeof *x);
    uint8_t *mask = malloc((size_t)n * W);
    int32_t *node_of = malloc((size_t)n * sizeof *node_of);
    int32_t *noff = malloc(((size_t)n + 1) * sizeof *noff);
    float *logit = malloc((size_t)n * sizeof *logit);
    uint32_t *order = malloc((size_t)n * sizeof *order);
    uint32_t *goff = malloc(((size_t)n + 1) * sizeof *goff);
    float *xp = malloc((size_t)n * W * F * sizeof *xp); /* x in plan order */
    uint8_t *mp = malloc((size_t)n * W);
    float *wbuf = NULL;
    void *ws = NULL;
    int32_t nn = 0, maxn = 0;
    rc = NTAM_ENOMEM;
    seterr(err, errlen, "out of memory");
    if (!raw || !x || !mask || !node_of || !noff || !logit || !order || !goff || !xp || !mp)
        goto out;
    rc = feat_read_store(r, &fc, res->devices, t, raw);
    if (rc) {
        seterr(err, errlen, "reading %s windows from the store: %s", feat_kind_name(m->kind),
               rc == FEAT_ESTORE ? tsdb_strerror(feat_store_error()) : "out of memory");
        rc = rc == FEAT_ENOMEM ? NTAM_ENOMEM : NTAM_EIO;
        goto out;
    }
    if ((rc = feat_compute(m->kind, n, W, raw, x, mask))) {
        seterr(err, errlen, "computing features failed");
        rc = NTAM_EINVAL;
        goto out;
    }
    /* The model's normalisation on observed steps; padding stays 0. */
    for (size_t i = 0; i < (size_t)n * W; i++) {
        float *row = x + i * F;
        if (!mask[i]) {
            memset(row, 0, F * sizeof *row);
            continue;
        }
        for (uint32_t f = 0; f < F; f++)
            row[f] = (row[f] - m->b.mean[f]) * m->b.scale[f];
    }
    /* Neighbourhood groups under the model's scope (feat_scope_plan: the grouping training
     * used): rows of the batches are devices in plan order; with scope node and devices sorted
     * by (instance, device), plan order is device order. */
    {
        const feat_device_t **pv = malloc((size_t)n * sizeof *pv);
        if (!pv) goto out;
        for (uint32_t i = 0; i < n; i++)
            pv[i] = feat_devices_get(res->devices, i);
        uint32_t ngr = 0;
        int prc = feat_scope_plan(pv, n, (feat_scope_t)m->b.scope, (uint32_t)m->b.scope_cap, order,
                                  goff, &ngr);
        free(pv);
        if (prc) {
            rc = prc == FEAT_ENOMEM ? NTAM_ENOMEM : NTAM_EINVAL;
            seterr(err, errlen, "grouping devices by %s failed",
                   feat_scope_name((feat_scope_t)m->b.scope));
            goto out;
        }
        nn = (int32_t)ngr;
    }
    for (int32_t k = 0; k < nn; k++) {
        noff[k] = (int32_t)goff[k];
        if ((int32_t)goff[k + 1] - (int32_t)goff[k] > maxn)
            maxn = (int32_t)goff[k + 1] - (int32_t)goff[k];
        for (uint32_t row = goff[k]; row < goff[k + 1]; row++)
            node_of[row] = k;
    }
    noff[nn] = (int32_t)n;
    for (uint32_t row = 0; row < n; row++) {
        memcpy(xp + (size_t)row * W * F, x + (size_t)order[row] * W * F, (size_t)W * F * sizeof *x);
        memcpy(mp + (size_t)row * W, mask + (size_t)order[row] * W, W);
    }
    if (batch < maxn) batch = maxn;
    size_t wsz = ntam_workspace_size(hp, batch, maxn);
    ws = malloc(wsz ? wsz : 1);
    wbuf = malloc((size_t)maxn * sizeof *wbuf);
    if (!ws || !wbuf || !wsz) {
        rc = wsz ? NTAM_ENOMEM : NTAM_ESHAPE;
        goto out;
    }
    for (int32_t k0 = 0; k0 < nn;) {
        int32_t k1 = k0;
        while (k1 < nn && noff[k1 + 1] - noff[k0] <= batch)
            k1++;
        int32_t d0 = noff[k0], nd = noff[k1] - d0;
        int32_t boff[1025];
        int32_t *bo = boff, *heap = NULL;
        if (k1 - k0 + 1 > 1025) {
            heap = malloc((size_t)(k1 - k0 + 1) * sizeof *heap);
            if (!heap) goto out;
            bo = heap;
        }
        for (int32_t k = k0; k <= k1; k++)
            bo[k - k0] = noff[k] - d0;
        ntam_batch_t b = {nd,   k1 - k0, bo, xp + (size_t)d0 * W * F, mp + (size_t)d0 * W,
                          NULL, NULL};
        rc = ntam_forward(m->b.model, &b, ws, wsz, logit + d0);
        for (int32_t i = 0; !rc && i < nd; i++) {
            uint32_t dev = order[d0 + i];
            predict_score_t *s = &res->score[dev];
            s->prob = ntam_sigmoid(logit[d0 + i]);
            float slot = 1;
            int cnt = ntam_neighbour_weights(m->b.model, &b, ws, i, &slot, wbuf);
            if (cnt < 0) {
                rc = cnt;
                break;
            }
            s->slot_weight = slot;
            int32_t ns = bo[node_of[d0 + i] - k0];
            for (int j = 0; j < cnt; j++)
                if (ns + j != i) top_nb(s, order[d0 + ns + j], wbuf[j]);
            /* last observed step */
            int32_t last = -1;
            for (int32_t w = (int32_t)W - 1; w >= 0 && last < 0; w--)
                if (mask[(size_t)dev * W + (size_t)w]) last = w;
            if (last >= 0)
                for (uint32_t f = 0; f < F; f++)
                    top_feat(s, (uint16_t)f, x[((size_t)dev * W + (size_t)last) * F + f]);
        }
        free(heap);
        if (rc) {
            seterr(err, errlen, "inference failed: %s", ntam_strerror(rc));
            goto out;
        }
        k0 = k1;
    }
    rc = 0;
out:
    free(raw);
    free(x);
    free(mask);
    free(node_of);
    free(noff);
    free(logit);
    free(order);
    free(goff);
    free(xp);
    free(mp);
    free(wbuf);
    free(ws);
    if (rc) {
        predict_result_destroy(res);
        return rc;
    }
    if (err && errlen) err[0] = 0;
    *out = res;
    return 0;
}

#define LBL(s)                                                                                     \
    {                                                                                              \
        (s), (uint32_t)strlen(s)                                                                   \
    }

int predict_result_append(tsdb_t *db, const predict_result_t *res)
{
    if (!db || !res) return TSDB_EINVAL;
    if (!res->n) return 0;
    enum { NL = 7 };
    tsdb_series_in_t *in = malloc(res->n * sizeof *in);
    tsdb_label_t *lb = malloc((size_t)res->n * NL * sizeof *lb);
    tsdb_sample_t *sm = malloc(res->n * sizeof *sm);
    if (!in || !lb || !sm) {
        free(in);
        free(lb);
        free(sm);
        return TSDB_ENOMEM;
    }
    int gpu = res->kind == FEAT_KIND_GPU;
    size_t ns = 0;
    for (uint32_t i = 0; i < res->n; i++) {
        const feat_device_t *d = feat_devices_get(res->devices, i);
        if (!d->instance[0] || !d->device[0]) continue;
        tsdb_label_t *l = lb + (size_t)ns * NL;
        uint32_t k = 0;
        l[k++] = (tsdb_label_t){LBL("__name__"), LBL("augur_failure_probability")};
        l[k++] = (tsdb_label_t){LBL("kind"), LBL(gpu ? "gpu" : "disk")};
        l[k++] = (tsdb_label_t){LBL("instance"), LBL(d->instance)};
        l[k++] = (tsdb_label_t){LBL("device"), LBL(d->device)};
        if (d->id[0]) l[k++] = (tsdb_label_t){LBL(gpu ? "UUID" : "serial"), LBL(d->id)};
        if (d->rack[0]) l[k++] = (tsdb_label_t){LBL("rack"), LBL(d->rack)};
        if (d->pod[0]) l[k++] = (tsdb_label_t){LBL("pod"), LBL(d->pod)};
        sm[ns].t = res->t_ms;
        sm[ns].v = (double)res->score[i].prob;
        in[ns] = (tsdb_series_in_t){l, k, &sm[ns], 1};
        ns++;
    }
    int rc = ns ? tsdb_append(db, in, ns, NULL, NULL) : 0;
    free(in);
    free(lb);
    free(sm);
    return rc;
}

typedef struct {
    const char *instance;
    double keep; /* Π(1 − p) */
} node_acc_t;

static int nacc_cmp(const void *a, const void *b)
{
    return strcmp(((const node_acc_t *)a)->instance, ((const node_acc_t *)b)->instance);
}

int predict_node_risk_append(tsdb_t *db, const predict_result_t *const *res, int n, int64_t t,
                             uint32_t *nodes)
{
    if (nodes) *nodes = 0;
    if (!db || (!res && n)) return TSDB_EINVAL;
    size_t total = 0;
    for (int k = 0; k < n; k++)
        if (res[k]) total += res[k]->n;
    if (!total) return 0;
    node_acc_t *a = malloc(total * sizeof *a);
    if (!a) return TSDB_ENOMEM;
    size_t m = 0;
    for (int k = 0; k < n; k++)
        for (uint32_t i = 0; res[k] && i < res[k]->n; i++) {
            const char *inst = feat_devices_get(res[k]->devices, i)->instance;
            if (!inst[0]) continue;
            a[m].instance = inst;
            a[m].keep = 1.0 - (double)res[k]->score[i].prob;
            m++;
        }
    qsort(a, m, sizeof *a, nacc_cmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u && !strcmp(a[u - 1].instance, a[i].instance))
            a[u - 1].keep *= a[i].keep;
        else
            a[u++] = a[i];
    }
    tsdb_series_in_t *in = malloc((u ? u : 1) * sizeof *in);
    tsdb_label_t *lb = malloc((u ? u : 1) * 2 * sizeof *lb);
    tsdb_sample_t *sm = malloc((u ? u : 1) * sizeof *sm);
    int rc = TSDB_ENOMEM;
    if (in && lb && sm) {
        for (size_t i = 0; i < u; i++) {
            lb[2 * i] = (tsdb_label_t){LBL("__name__"), LBL("augur_node_failure_risk")};
            lb[2 * i + 1] = (tsdb_label_t){LBL("instance"), LBL(a[i].instance)};
            sm[i].t = t;
            sm[i].v = 1.0 - a[i].keep;
            in[i] = (tsdb_series_in_t){lb + 2 * i, 2, &sm[i], 1};
        }
        rc = u ? tsdb_append(db, in, u, NULL, NULL) : 0;
        if (!rc && nodes) *nodes = (uint32_t)u;
    }
    free(in);
    free(lb);
    free(sm);
    free(a);
    return rc;
}
