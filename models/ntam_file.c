/*
 * ntam_file.c — encode, decode, save and load the NTAM model file (layout in ntam_file.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/ntam_file.h"

_Static_assert(NTAM_FILE_VERSION == 3, "NTAM_EVERSION's message in ntam.h names the version");

static const uint8_t MAGIC[8] = {'A', 'U', 'G', 'R', 'N', 'T', 'A', 'M'};

static uint64_t fnv1a(const uint8_t *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

uint64_t ntam_schema_hash(const char (*names)[NTAM_FEATURE_NAME], int n)
{
    uint64_t h = FNV_INIT;
    for (int i = 0; i < n; i++) h = fnv1a((const uint8_t *)names[i], strnlen(names[i], NTAM_FEATURE_NAME) + 1, h);
    return h;
}

/* little-endian put/get */
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void putf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put32(p, u);
}
static float getf(const uint8_t *p)
{
    uint32_t u = get32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define HDR_FIXED 72u                             /* through the second F */
#define PER_FEATURE (NTAM_FEATURE_NAME + 4 + 4) /* name, mean, scale */
#define MID_FIXED_V2 44u                        /* threshold .. n_params, version 2 */
#define MID_FIXED 52u                           /* version 3: + scope, scope cap */

static size_t file_len_v(uint32_t version, int F, size_t n_par)
{
    return HDR_FIXED + (size_t)F * PER_FEATURE + (version == 2 ? MID_FIXED_V2 : MID_FIXED) +
           4 * n_par + 8;
}

static size_t file_len(int F, size_t n_par)
{
    return file_len_v(NTAM_FILE_VERSION, F, n_par);
}

size_t ntam_bundle_bound(const ntam_bundle_t *b)
{
    if (!b || !b->model) return 0;
    return file_len(b->n_features, ntam_param_count(b->model));
}

int64_t ntam_bundle_encode(const ntam_bundle_t *b, uint8_t *buf, size_t cap)
{
    if (!b || !b->model || !buf) return NTAM_EINVAL;
    const ntam_hparams_t *hp = ntam_hparams(b->model);
    if (b->n_features != hp->n_features || b->n_features > NTAM_MAX_FEATURES) return NTAM_EINVAL;
    if (b->scope < 0 || b->scope > NTAM_SCOPE_MAX || b->scope_cap < 0) return NTAM_EINVAL;
    size_t np = ntam_param_count(b->model), total = file_len(b->n_features, np);
    if (cap < total) return NTAM_EINVAL;
    uint8_t *p = buf;
    memcpy(p, MAGIC, 8);
    put32(p + 8, NTAM_FILE_VERSION);
    put32(p + 12, (uint32_t)hp->nb_summary); /* NTAM_NB_SUMMARY_* bits */
    put64(p + 16, total);
    put64(p + 24, b->schema_hash);
    put32(p + 32, (uint32_t)b->kind);
    put32(p + 36, (uint32_t)b->horizon);
    const int32_t h7[7] = {hp->n_features, hp->window,  hp->d_model,          hp->n_blocks,
                           hp->d_ff,       hp->d_head, hp->ablate_neighbours};
    for (int i = 0; i < 7; i++) put32(p + 40 + 4 * i, (uint32_t)h7[i]);
    put32(p + 68, (uint32_t)b->n_features);
    p += HDR_FIXED;
    int F = b->n_features;
    for (int i = 0; i < F; i++) {
        memset(p, 0, NTAM_FEATURE_NAME);
        memcpy(p, b->feature[i], strnlen(b->feature[i], NTAM_FEATURE_NAME - 1));
        p += NTAM_FEATURE_NAME;
    }
    for (int i = 0; i < F; i++, p += 4) putf(p, b->mean[i]);
    for (int i = 0; i < F; i++, p += 4) putf(p, b->scale[i]);
    putf(p, b->threshold);
    put64(p + 4, b->seed);
    put64(p + 12, b->split_seed);
    put32(p + 20, (uint32_t)b->folds);
    put32(p + 24, (uint32_t)b->fold);
    put32(p + 28, (uint32_t)b->holdout_days);
    put32(p + 32, b->flags);
    put32(p + 36, (uint32_t)b->scope);
    put32(p + 40, (uint32_t)b->scope_cap);
    put64(p + 44, np);
    p += MID_FIXED;
    const float *w = ntam_params_const(b->model);
    for (size_t i = 0; i < np; i++, p += 4) putf(p, w[i]);
    put64(p, fnv1a(buf, (size_t)(p - buf), FNV_INIT));
    return (int64_t)total;
}

int ntam_bundle_decode(const uint8_t *buf, size_t len, uint64_t expect_schema, ntam_bundle_t *out)
{
    if (!buf || !out) return NTAM_EINVAL;
    memset(out, 0, sizeof *out);
    if (len < 8 || memcmp(buf, MAGIC, 8)) return NTAM_EFORMAT;
    if (len < 24) return NTAM_ETRUNC;
    /* version 2 (before the scope) reads as scope node, no cap: the grouping it was trained on */
    uint32_t version = get32(buf + 8);
    if (version != NTAM_FILE_VERSION && version != 2) return NTAM_EVERSION;
    size_t mid = version == 2 ? MID_FIXED_V2 : MID_FIXED;
    uint32_t hflags = get32(buf + 12);
    uint64_t total = get64(buf + 16);
    if (total > len) return NTAM_ETRUNC;
    if (total < len || total < HDR_FIXED + mid + 8) return NTAM_ECHECKSUM;
    if (fnv1a(buf, total - 8, FNV_INIT) != get64(buf + total - 8)) return NTAM_ECHECKSUM;
    /* the bytes are what was written; still check every field before use */
    ntam_hparams_t hp;
    int32_t h7[7];
    for (int i = 0; i < 7; i++) h7[i] = (int32_t)get32(buf + 40 + 4 * i);
    hp.n_features = h7[0], hp.window = h7[1], hp.d_model = h7[2], hp.n_blocks = h7[3];
    hp.d_ff = h7[4], hp.d_head = h7[5], hp.ablate_neighbours = h7[6];
    if (hflags & ~(uint32_t)NTAM_NB_SUMMARY_ALL) return NTAM_EFORMAT;
    hp.nb_summary = (int32_t)hflags;
    int F = (int32_t)get32(buf + 68);
    if (ntam_hparams_check(&hp) || F != hp.n_features || F > NTAM_MAX_FEATURES)
        return NTAM_EFORMAT;
    if (HDR_FIXED + (size_t)F * PER_FEATURE + mid + 8 > total) return NTAM_EFORMAT;
    const uint8_t *p = buf + HDR_FIXED;
    for (int i = 0; i < F; i++, p += NTAM_FEATURE_NAME) {
        memcpy(out->feature[i], p, NTAM_FEATURE_NAME);
        out->feature[i][NTAM_FEATURE_NAME - 1] = 0;
    }
    for (int i = 0; i < F; i++, p += 4) out->mean[i] = getf(p);
    for (int i = 0; i < F; i++, p += 4) out->scale[i] = getf(p);
    out->threshold = getf(p);
    out->seed = get64(p + 4);
    out->split_seed = get64(p + 12);
    out->folds = (int32_t)get32(p + 20);
    out->fold = (int32_t)get32(p + 24);
    out->holdout_days = (int32_t)get32(p + 28);
    out->flags = get32(p + 32);
    uint64_t np;
    if (version == 2) {
        out->scope = 0;
        out->scope_cap = 0;
        np = get64(p + 36);
    } else {
        out->scope = (int32_t)get32(p + 36);
        out->scope_cap = (int32_t)get32(p + 40);
        np = get64(p + 44);
    }
    out->version = (int32_t)version;
    p += mid;
    out->schema_hash = get64(buf + 24);
    out->kind = (int32_t)get32(buf + 32);
    out->horizon = (int32_t)get32(buf + 36);
    out->n_features = F;
    if (out->kind != NTAM_KIND_DISK && out->kind != NTAM_KIND_GPU) return NTAM_EFORMAT;
    if (out->folds < 0 || out->fold < 0 || (out->folds && out->fold >= out->folds) ||
        out->holdout_days < 0 || (out->flags & ~NTAM_FLAG_NEG_NEVER_FAILED) || out->scope < 0 ||
        out->scope > NTAM_SCOPE_MAX || out->scope_cap < 0)
        return NTAM_EFORMAT;
    if (np > (total - (size_t)(p - buf) - 8) / 4 || file_len_v(version, F, (size_t)np) != total)
        return NTAM_EFORMAT;
    for (int i = 0; i < F; i++)
        if (!isfinite(out->mean[i]) || !isfinite(out->scale[i])) return NTAM_EFORMAT;
    if (expect_schema && out->schema_hash != expect_schema) return NTAM_ESCHEMA;
    ntam_t *m;
    int rc = ntam_create(&hp, 0, &m);
    if (rc) return rc;
    if (ntam_param_count(m) != np) {
        ntam_destroy(m);
        return NTAM_EFORMAT;
    }
    float *w = ntam_params(m);
    for (size_t i = 0; i < np; i++, p += 4) {
        w[i] = getf(p);
        if (!isfinite(w[i])) {
            ntam_destroy(m);
            return NTAM_EFORMAT;
        }
    }
    out->model = m;
    return 0;
}

int ntam_bundle_save(const ntam_bundle_t *b, const char *path)
{
    if (!b || !path) return NTAM_EINVAL;
    size_t n = ntam_bundle_bound(b);
    if (!n) return NTAM_EINVAL;
    uint8_t *buf = malloc(n);
    if (!buf) return NTAM_ENOMEM;
    int64_t w = ntam_bundle_encode(b, buf, n);
    if (w < 0) {
        free(buf);
        return (int)w;
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) {
        free(buf);
        return NTAM_ENOMEM;
    }
    snprintf(tmp, pl + 16, "%s.tmp", path);
    int rc = NTAM_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        size_t off = 0;
        while (off < (size_t)w) {
            ssize_t k = write(fd, buf + off, (size_t)w - off);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            off += (size_t)k;
        }
        if (off == (size_t)w && fsync(fd) == 0) rc = 0;
        if (close(fd) != 0) rc = NTAM_EIO;
        if (rc == 0 && rename(tmp, path) != 0) rc = NTAM_EIO;
        if (rc) unlink(tmp);
    }
    free(tmp);
    free(buf);
    return rc;
}

int ntam_bundle_load(const char *path, uint64_t expect_schema, ntam_bundle_t *out)
{
    if (!path || !out) return NTAM_EINVAL;
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NTAM_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 30)) {
        close(fd);
        return NTAM_EIO;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return NTAM_ENOMEM;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t k = read(fd, buf + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        off += (size_t)k;
    }
    close(fd);
    int rc = ntam_bundle_decode(buf, off, expect_schema, out);
    free(buf);
    return rc;
}

void ntam_bundle_clear(ntam_bundle_t *b)
{
    if (!b) return;
    ntam_destroy(b->model);
    b->model = NULL;
}
