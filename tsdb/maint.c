/*
 * maint.c — retention, deletion, online backup, integrity check, stats.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsdb/tsdb_int.h"

/* Sum of sizes of the regular files under dir (like `du -sb` on the files). */
static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st)) continue;
        if (S_ISDIR(st.st_mode)) total += dir_bytes(path);
        else if (S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

int tsdb_stats(tsdb_t *db, tsdb_stats_t *st)
{
    if (!db || !st) return TSDB_EINVAL;
    memset(st, 0, sizeof *st);
    MDB_envinfo info;
    MDB_stat ms;
    MDB_txn *txn;
    uint64_t free_pages = 0, nblocks = 0;
    db_reader_enter(db);
    mdb_env_info(db->env, &info);
    mdb_env_stat(db->env, &ms);
    if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn) == 0) {
        MDB_stat s;
        if (mdb_stat(txn, db->blocks, &s) == 0) nblocks = s.ms_entries;
        /* in use: the file less LMDB's free list (the trees' own page counts
         * leave out the postings' sorted-duplicate subtrees) */
        free_pages = db_free_pages(txn);
        mdb_env_info(db->env, &info);
        mdb_txn_abort(txn);
    }
    db_reader_leave(db);
    pthread_mutex_lock(&db->mu);
    st->series = db->nseries;
    st->active_series = db->nactive;
    st->head_samples = db->head_samples + db->frozen_samples;
    st->samples = db->sealed_samples + st->head_samples;
    st->wal_fsyncs = db->fsyncs;
    st->wal_fsync_ns = db->fsync_ns;
    st->flushes = db->flushes;
    st->vacuums = db->vacuums;
    st->corrupt_blocks = db->corrupt_blocks;
    st->wal_bytes = db->wal.bytes_written;
    uint64_t mem = sizeof *db + db->npages * sizeof(series_t **) + db->fresh_cap * sizeof(series_t *) +
                   db->ng_cap * sizeof(struct name_group *) * 4 +
                   db->table_cap * sizeof *db->table + db->active_cap * sizeof(series_t *) +
                   db->wal_pending.cap + db->wal_spare.cap + db->mem_head_bytes;
    mem += db->nslabs * SERIES_SLAB_BYTES; /* series structs */
    for (uint32_t g = 0; g < db->npages; g++)
        if (db->pages[g]) mem += TSDB_GROUP_SIDS * sizeof(series_t *);
    for (size_t f = 0; f < db->nfresh; f++) mem += db->fresh[f]->labels_len;
    st->memory_bytes = mem;
    pthread_mutex_unlock(&db->mu);
    st->blocks = nblocks;
    st->map_size = info.me_mapsize;
    st->lmdb_bytes = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
    uint64_t filep = (uint64_t)info.me_last_pgno + 1;
    st->lmdb_used_bytes = (filep > free_pages ? filep - free_pages : 0) * ms.ms_psize;
    st->bytes_on_disk = dir_bytes(db->dir);
    st->bytes_per_sample = st->samples ? (double)st->bytes_on_disk / (double)st->samples : 0;
    return 0;
}

int tsdb_retention_apply(tsdb_t *db, int64_t now_ms)
{
    if (!db) return TSDB_EINVAL;
    if (db->opt.retention_ms <= 0 || db->opt.read_only) return 0;
    int64_t cutoff = now_ms - db->opt.retention_ms;
    pthread_mutex_lock(&db->flush_mu);
    MDB_txn *txn;
    int rc = db_txn_begin_write(db, &txn);
    if (rc) {
        pthread_mutex_unlock(&db->flush_mu);
        return rc;
    }
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, db->blocks, &cur);
    uint64_t removed = 0, nblocks = 0;
    block_reader_t br = {0};
    tbuf_t fb = {0};
    uint8_t (*dead)[16] = NULL;
    size_t ndead = 0, deadcap = 0;
    if (!rc) {
        /* pass 1: the expired keys (each group's partitions are in time order) */
        MDB_val key, val;
        uint8_t k[16];
        int op = MDB_FIRST;
        while ((rc = mdb_cursor_get(cur, &key, &val, op)) == 0) {
            op = MDB_NEXT;
            uint32_t g, seq;
            int64_t p;
            db_block_key_parse(key.mv_data, &g, &p, &seq);
            if (db_part_end(p, db_group_pm(db, g)) > cutoff) {
                if (g == UINT32_MAX) break;
                db_block_key(k, g + 1, INT64_MIN, 0); /* skip to the next group */
                key.mv_size = 16;
                key.mv_data = k;
                op = MDB_SET_RANGE;
                continue;
            }
            if (ndead == deadcap) {
                deadcap = deadcap ? deadcap * 2 : 64;
                void *nd = realloc(dead, deadcap * 16);
                if (!nd) {
                    rc = TSDB_ENOMEM;
                    break;
                }
                dead = nd;
            }
            memcpy(dead[ndead++], key.mv_data, 16);
            const uint8_t *bp;
            size_t bl;
            if (db_block_read(db, txn, &val, &fb, &bp, &bl) == 0 && block_open(&br, bp, bl) == 0)
                removed += br.total_samples;
        }
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND) rc = 0;
        if (rc > 0) rc = db_lmdb_err(rc, "retention scan");
        /* pass 2: delete them */
        for (size_t i = 0; !rc && i < ndead; i++) {
            rc = db_block_del(db, txn, dead[i]);
            nblocks++;
        }
    } else {
        rc = db_lmdb_err(rc, "cursor");
    }
    free(dead);
    tbuf_free(&fb);
    block_reader_free(&br);
    if (!rc && nblocks) {
        pthread_mutex_lock(&db->mu);
        db->sealed_samples -= removed < db->sealed_samples ? removed : db->sealed_samples;
        uint64_t ss = db->sealed_samples;
        for (uint64_t i = 0; i < (uint64_t)db->npages * TSDB_GROUP_SIDS; i++) {
            series_t *s = db_sid_get(db, i);
            if (s && s->sealed_maxt != INT64_MIN && s->sealed_mint < cutoff) {
                int64_t nm = db_part_of(cutoff, db_group_pm_locked(db, (uint32_t)(i / TSDB_GROUP_SIDS)));
                if (nm > s->sealed_mint) s->sealed_mint = nm;
                if (s->mint < nm) s->mint = nm;
            }
        }
        pthread_mutex_unlock(&db->mu);
        uint8_t b[8];
        le64_put(b, ss);
        MDB_val key = {7, (void *)"samples"}, val = {8, b};
        rc = db_lmdb_err(mdb_put(txn, db->meta, &key, &val, 0), "write meta");
    }
    if (!rc && nblocks) {
        rc = db_lmdb_err(mdb_txn_commit(txn), "commit retention");
        atomic_fetch_add(&db->change_gen, 1); /* after the commit: cached answers may have used the data */
    } else {
        mdb_txn_abort(txn);
    }
    pthread_mutex_unlock(&db->flush_mu);
    return rc;
}

int tsdb_delete_series(tsdb_t *db, const tsdb_matcher_t *m, size_t nm, uint64_t *ndeleted)
{
    if (!db || (nm && !m)) return TSDB_EINVAL;
    if (db->opt.read_only) return TSDB_EINVAL;
    if (ndeleted) *ndeleted = 0;
    pthread_mutex_lock(&db->flush_mu);
    /* Seal the head first so no deleted sample is left only in the WAL. */
    int rc = db_flush_locked(db, 0);
    tsdb_reader_t *r = NULL;
    tsdb_sids_t ids = {0};
    if (!rc) rc = tsdb_reader_open(db, &r);
    if (!rc) rc = tsdb_select(r, m, nm, INT64_MIN, INT64_MAX, &ids);
    tsdb_reader_close(r);
    if (rc || ids.n == 0) {
        tsdb_sids_free(&ids);
        pthread_mutex_unlock(&db->flush_mu);
        return rc;
    }
    MDB_txn *txn;
    /* Hold mu across the index change so no append recreates the series in
     * between; appends wait for this (short) transaction. */
    pthread_mutex_lock(&db->mu);
    rc = db_txn_begin_write(db, &txn);
    uint64_t head_removed = 0;
    for (size_t i = 0; !rc && i < ids.n; i++) {
        series_t *s = db_sid_get(db, ids.ids[i]);
        if (!s || s->deleted) continue;
        if (s->persisted) {
            rc = idx_series_delete(txn, &db->idx, s->sid);
            if (rc == TSDB_ENOTFOUND) rc = 0;
        }
    }
    if (!rc) rc = db_lmdb_err(mdb_txn_commit(txn), "commit delete");
    else mdb_txn_abort(txn);
    if (!rc) {
        for (size_t i = 0; i < ids.n; i++) {
            series_t *s = db_sid_get(db, ids.ids[i]);
            if (!s || s->deleted) continue;
            s->deleted = 1;
            head_removed += s->n;
            db->head_samples -= s->n;
            s->n = 0; /* stays in the active list; flush skips empty heads */
            db_table_remove(db, s); /* the same labels will make a new series */
            db->nseries--;
        }
        db->gen++;
        atomic_fetch_add(&db->change_gen, 1);
        if (ndeleted) *ndeleted = ids.n;
    }
    pthread_mutex_unlock(&db->mu);
    (void)head_removed;
    /* Drop their samples from the sealed blocks (frees the space). */
    uint64_t removed = 0;
    if (!rc) rc = db_rewrite_everything(db, &removed);
    tsdb_sids_free(&ids);
    pthread_mutex_unlock(&db->flush_mu);
    return rc;
}

int tsdb_backup(tsdb_t *db, const char *dest)
{
    if (!db || !dest) return TSDB_EINVAL;
    if (mkdir(dest, 0755) && errno != EEXIST) {
        tsdb_set_detail("mkdir %s: %s", dest, strerror(errno));
        return TSDB_EIO;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dest);
    if (access(path, F_OK) == 0) {
        tsdb_set_detail("%s already holds a store", dest);
        return TSDB_EINVAL;
    }
    int rc = 0;
    if (!db->opt.read_only) rc = tsdb_flush(db);
    if (rc) return rc;
    rc = mdb_env_copy2(db->env, dest, MDB_CP_COMPACT);
    return db_lmdb_err(rc, "backup copy");
}

int tsdb_check(tsdb_t *db, uint64_t *nbad)
{
    if (!db || !nbad) return TSDB_EINVAL;
    *nbad = 0;
    MDB_txn *txn;
    db_reader_enter(db);
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        db_reader_leave(db);
        return db_lmdb_err(rc, "begin read txn");
    }
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, db->blocks, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        db_reader_leave(db);
        return db_lmdb_err(rc, "cursor");
    }
    block_reader_t br = {0};
    tbuf_t fb = {0};
    tsdb_sample_t *tmp = NULL;
    size_t tcap = 0;
    MDB_val key, val;
    int op = MDB_FIRST;
    uint64_t total = 0;
    while ((rc = mdb_cursor_get(cur, &key, &val, op)) == 0) {
        op = MDB_NEXT;
        uint32_t g, seq;
        int64_t p;
        if (key.mv_size != 16) {
            (*nbad)++;
            continue;
        }
        db_block_key_parse(key.mv_data, &g, &p, &seq);
        int64_t gpm = db_group_pm(db, g);
        const uint8_t *bp = NULL;
        size_t bl = 0;
        int bad = db_block_read(db, txn, &val, &fb, &bp, &bl) != 0 || block_open(&br, bp, bl) != 0;
        for (uint32_t i = 0; !bad && i < br.nseries; i++) {
            size_t got;
            if (br.sids[i] / TSDB_GROUP_SIDS != g) bad = 1;
            if (br.counts[i] > tcap) {
                tsdb_sample_t *nt = realloc(tmp, br.counts[i] * sizeof *nt);
                if (!nt) {
                    rc = TSDB_ENOMEM;
                    break;
                }
                tmp = nt;
                tcap = br.counts[i];
            }
            if (!bad && block_decode_series(&br, i, tmp, tcap, &got)) bad = 1;
            for (size_t k = 0; !bad && k < got; k++)
                if (tmp[k].t < p || (tmp[k].t >= db_part_end(p, gpm) && db_part_end(p, gpm) != INT64_MAX) ||
                    (k && tmp[k].t <= tmp[k - 1].t))
                    bad = 1;
            total += got;
        }
        if (rc == TSDB_ENOMEM) break;
        if (bad) (*nbad)++;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    free(tmp);
    tbuf_free(&fb);
    block_reader_free(&br);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    db_reader_leave(db);
    (void)total;
    return rc < 0 ? rc : db_lmdb_err(rc, "check scan");
}
