/*
 * wal.c — the write-ahead log: numbered, preallocated segment files.
 *
 *   <store>/wal/0000000000000001.wal, 0000000000000002.wal, ...
 *
 * Segment = sequence of records, then zeros (the preallocated tail):
 *
 *   offset  size  field
 *   0       4     payload length L (little endian), > 0
 *   4       4     checksum: low 32 bits of XXH3-64(payload)
 *   8       L     payload (see store.c: series and sample entries)
 *
 * Example: a 5-byte payload "hello" is 05 00 00 00 | cc cc cc cc | 68 65 6c 6c 6f.
 *
 * Space for a segment is reserved with posix_fallocate() when it is created,
 * so that writing an acknowledged record never fails for lack of space: a
 * full disk shows up as TSDB_ENOSPC at rotation, before anything of a batch
 * is applied. Replay stops a segment at the first record whose length is 0,
 * runs past the end, or fails its checksum: such a record was never
 * acknowledged (its fsync had not returned).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "tsdb/tsdb_int.h"

#define WAL_MAX_RECORD (1u << 30)

static void seg_path(const wal_t *w, uint64_t seq, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%016" PRIx64 ".wal", w->dir, seq);
}

int wal_open(wal_t *w, const char *storedir, uint64_t seg_target)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->seg_target = seg_target;
    size_t n = strlen(storedir) + 5;
    w->dir = malloc(n);
    if (!w->dir) return TSDB_ENOMEM;
    snprintf(w->dir, n, "%s/wal", storedir);
    if (mkdir(w->dir, 0755) && errno != EEXIST) {
        tsdb_set_detail("mkdir %s: %s", w->dir, strerror(errno));
        return TSDB_EIO;
    }
    return 0;
}

void wal_close(wal_t *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    free(w->dir);
    w->dir = NULL;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return TSDB_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc ? TSDB_EIO : 0;
}

int wal_rotate(wal_t *w, uint64_t need)
{
    char path[4096];
    uint64_t seq = w->seq + 1;
    uint64_t size = w->seg_target;
    if (size < need + 64) size = need + 64;
    seg_path(w, seq, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        tsdb_set_detail("create %s: %s", path, strerror(e));
        return e == ENOSPC || e == EDQUOT || e == EFBIG ? TSDB_ENOSPC : TSDB_EIO;
    }
    int e = posix_fallocate(fd, 0, (off_t)size);
    if (e == 0 && fsync(fd) != 0) e = errno;
    if (e == 0 && fsync_dir(w->dir) != 0) e = EIO;
    if (e) {
        close(fd);
        unlink(path);
        tsdb_set_detail("reserve %" PRIu64 " bytes for %s: %s", size, path, strerror(e));
        return e == ENOSPC || e == EDQUOT || e == EFBIG ? TSDB_ENOSPC : TSDB_EIO;
    }
    if (w->fd >= 0) close(w->fd);
    w->fd = fd;
    w->seq = seq;
    w->seg_size = size;
    w->seg_used = 0;
    w->seg_written = 0;
    return 0;
}

int wal_write(wal_t *w, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t k = pwrite(w->fd, p, len, (off_t)w->seg_written);
        if (k < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            tsdb_set_detail("write WAL segment %" PRIu64 ": %s", w->seq, strerror(e));
            return e == ENOSPC || e == EFBIG ? TSDB_ENOSPC : TSDB_EIO;
        }
        p += k;
        len -= (size_t)k;
        w->seg_written += (uint64_t)k;
        w->bytes_written += (uint64_t)k;
    }
    return 0;
}

int wal_sync(wal_t *w)
{
    if (w->fd < 0) return 0;
    if (fdatasync(w->fd) != 0) {
        tsdb_set_detail("fdatasync WAL segment %" PRIu64 ": %s", w->seq, strerror(errno));
        return TSDB_EIO;
    }
    return 0;
}

static int list_segments(const wal_t *w, uint64_t **out, size_t *n)
{
    DIR *d = opendir(w->dir);
    if (!d) return TSDB_EIO;
    uint64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".wal")) continue;
        uint64_t seq = strtoull(e->d_name, &end, 16);
        if (end != e->d_name + 16) continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                return TSDB_ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = seq;
    }
    closedir(d);
    for (size_t i = 1; i < cnt; i++) { /* insertion sort, few segments */
        uint64_t x = v[i];
        size_t j = i;
        while (j && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    *out = v;
    *n = cnt;
    return 0;
}

void wal_remove_upto(wal_t *w, uint64_t upto)
{
    uint64_t *v;
    size_t n;
    if (list_segments(w, &v, &n)) return;
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        if (v[i] > upto || (w->fd >= 0 && v[i] == w->seq)) continue;
        seg_path(w, v[i], path, sizeof path);
        unlink(path);
    }
    free(v);
    fsync_dir(w->dir);
}

static uint32_t rec_sum(const uint8_t *p, size_t len)
{
    return (uint32_t)XXH3_64bits(p, len);
}

int wal_frame(tbuf_t *out, const uint8_t *payload, size_t len)
{
    if (len == 0 || len > WAL_MAX_RECORD) return TSDB_EINVAL;
    if (tbuf_reserve(out, len + 8)) return TSDB_ENOMEM;
    le32_put(out->p + out->len, (uint32_t)len);
    le32_put(out->p + out->len + 4, rec_sum(payload, len));
    memcpy(out->p + out->len + 8, payload, len);
    out->len += len + 8;
    return 0;
}

void wal_frame_finish(tbuf_t *out, size_t start)
{
    size_t len = out->len - start - 8;
    le32_put(out->p + start, (uint32_t)len);
    le32_put(out->p + start + 4, rec_sum(out->p + start + 8, len));
}

int wal_replay(wal_t *w, uint64_t after, wal_record_fn fn, wal_seg_fn seg, void *ctx,
               uint64_t *max_seq, uint64_t *nbad)
{
    uint64_t *v;
    size_t n;
    int rc = list_segments(w, &v, &n);
    if (rc) return rc;
    *max_seq = after;
    char path[4096];
    tbuf_t buf = {0};
    size_t todo = 0, done = 0;
    for (size_t i = 0; i < n; i++) todo += v[i] > after;
    if (seg && todo) rc = seg(ctx, 0, todo);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (v[i] > *max_seq) *max_seq = v[i];
        if (v[i] <= after) continue;
        w->replay_seq = v[i];
        seg_path(w, v[i], path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            tsdb_set_detail("open %s: %s", path, strerror(errno));
            rc = TSDB_EIO;
            break;
        }
        struct stat st;
        if (fstat(fd, &st) || tbuf_reserve(&buf, (size_t)st.st_size + 1)) {
            close(fd);
            rc = TSDB_ENOMEM;
            break;
        }
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t k = pread(fd, buf.p + got, (size_t)st.st_size - got, (off_t)got);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            got += (size_t)k;
        }
        close(fd);
        const uint8_t *p = buf.p, *end = buf.p + got;
        while (end - p >= 8) {
            uint32_t len = le32_get(p), sum = le32_get(p + 4);
            if (len == 0) break; /* preallocated tail */
            if (len > (size_t)(end - p - 8) || rec_sum(p + 8, len) != sum) {
                if (i + 1 < n) (*nbad)++; /* torn record in an older segment: damage */
                break;
            }
            rc = fn(ctx, p + 8, len);
            if (rc) break;
            p += 8 + len;
        }
        done++;
        if (!rc && seg) rc = seg(ctx, done, todo);
    }
    tbuf_free(&buf);
    free(v);
    return rc;
}
