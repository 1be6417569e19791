/*
 * cmd_tsdb.c — `augur tsdb`: inspect and maintain a store directory offline
 * (the server must not be running on it: the store is locked).
 *
 *   augur tsdb stats  DIR
 *   augur tsdb check  DIR
 *   augur tsdb backup DIR DEST
 *   augur tsdb dump   DIR [--match M]... [--start MS] [--end MS]
 *   augur tsdb delete DIR --match M [--match M]...
 *   augur tsdb retention DIR --retention DURATION [--now MS]
 *
 * A matcher M is one label matcher: name=value, name!=value, name=~regex or
 * name!~regex (e.g. --match __name__=node_load1 --match 'instance=~node-1.*').
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "tsdb/tsdb.h"

static void tsdb_usage(FILE *f)
{
    fputs("usage: augur tsdb <command> DIR [options]\n"
          "\n"
          "Offline store maintenance (stop the server on DIR first; the store is locked).\n"
          "\n"
          "commands:\n"
          "  stats DIR                      series, samples, bytes on disk, bytes/sample\n"
          "  check DIR                      verify every block's checksum and structure;\n"
          "                                 exit 1 if any block is bad\n"
          "  backup DIR DEST                consistent compacted copy into new directory DEST\n"
          "  dump DIR [--match M]... [--start MS] [--end MS]\n"
          "                                 print samples: labels, timestamp (ms), value\n"
          "  delete DIR --match M [--match M]...\n"
          "                                 delete every series matching all matchers\n"
          "  retention DIR --retention D [--now MS]\n"
          "                                 drop data older than now - D (e.g. 15d, 12h)\n"
          "\n"
          "A matcher M is name=value, name!=value, name=~regex or name!~regex.\n"
          "Durations: a number with unit ms, s, m, h, d, w or y (e.g. 90d).\n",
          f);
}

int cli_parse_duration_ms(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    double mult;
    if (!strcmp(end, "ms")) mult = 1;
    else if (!strcmp(end, "s")) mult = 1e3;
    else if (!strcmp(end, "m")) mult = 60e3;
    else if (!strcmp(end, "h")) mult = 3600e3;
    else if (!strcmp(end, "d")) mult = 86400e3;
    else if (!strcmp(end, "w")) mult = 7 * 86400e3;
    else if (!strcmp(end, "y")) mult = 365 * 86400e3;
    else return -1;
    double ms = v * mult;
    if (ms > 9.2e18) return -1;
    *out = (int64_t)ms;
    return 0;
}

/* Parse "name<op>value" into m (pointers into a copy owned by the caller). */
static int parse_matcher(char *s, tsdb_matcher_t *m)
{
    char *p = s;
    while (*p && *p != '=' && *p != '!') p++;
    if (p == s || !*p) return -1;
    if (p[0] == '=' && p[1] == '~') {
        m->type = TSDB_MATCH_RE;
        *p = 0;
        m->value = p + 2;
    } else if (p[0] == '!' && p[1] == '~') {
        m->type = TSDB_MATCH_NRE;
        *p = 0;
        m->value = p + 2;
    } else if (p[0] == '!' && p[1] == '=') {
        m->type = TSDB_MATCH_NE;
        *p = 0;
        m->value = p + 2;
    } else if (p[0] == '=') {
        m->type = TSDB_MATCH_EQ;
        *p = 0;
        m->value = p + 1;
    } else {
        return -1;
    }
    m->name = s;
    return 0;
}

static int open_or_report(const char *dir, int read_only, tsdb_t **db)
{
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.read_only = read_only;
    o.replay_progress = tsdb_replay_progress_stderr;
    o.replay_progress_ctx = (void *)"augur tsdb";
    o.replay_progress_ms = 5000;
    int rc = tsdb_open(dir, &o, db);
    if (rc) {
        fprintf(stderr, "augur tsdb: cannot open %s: %s", dir, tsdb_strerror(rc));
        if (*tsdb_last_error_detail()) fprintf(stderr, " (%s)", tsdb_last_error_detail());
        fputc('\n', stderr);
    }
    return rc;
}

static int cmd_stats(tsdb_t *db)
{
    tsdb_stats_t st;
    int rc = tsdb_stats(db, &st);
    if (rc) return rc;
    printf("series            %" PRIu64 "\n", st.series);
    printf("samples           %" PRIu64 "\n", st.samples);
    printf("blocks            %" PRIu64 "\n", st.blocks);
    printf("bytes_on_disk     %" PRIu64 "\n", st.bytes_on_disk);
    printf("bytes_per_sample  %.4f\n", st.bytes_per_sample);
    printf("lmdb_file_bytes   %" PRIu64 "\n", st.lmdb_bytes);
    printf("lmdb_used_bytes   %" PRIu64 "\n", st.lmdb_used_bytes);
    printf("map_size_bytes    %" PRIu64 "\n", st.map_size);
    return 0;
}

/* Format labels as {a="b",...} into buf (truncated at n bytes). */
static void format_labels(const tsdb_label_t *l, size_t nl, char *buf, size_t n)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "{");
    for (size_t i = 0; i < nl && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%.*s=\"%.*s\"", i ? "," : "",
                                (int)l[i].name.len, l[i].name.ptr, (int)l[i].value.len,
                                l[i].value.ptr);
    if (off < n) snprintf(buf + off, n - off, "}");
}

static int cmd_dump(tsdb_t *db, const tsdb_matcher_t *m, size_t nm, int64_t start, int64_t end)
{
    tsdb_reader_t *r;
    int rc = tsdb_reader_open(db, &r);
    if (rc) return rc;
    tsdb_matcher_t all = {TSDB_MATCH_RE, "__name__", ".+"};
    tsdb_sids_t ids = {0};
    rc = tsdb_select(r, nm ? m : &all, nm ? nm : 1, start, end, &ids);
    for (size_t i = 0; !rc && i < ids.n; i++) {
        const tsdb_label_t *l;
        size_t nl;
        if (tsdb_series_labels(r, ids.ids[i], &l, &nl)) continue;
        char lbuf[8192]; /* a copy: the next reader call invalidates l */
        format_labels(l, nl, lbuf, sizeof lbuf);
        tsdb_iter_t *it;
        if ((rc = tsdb_iter_open(r, ids.ids[i], start, end, &it))) break;
        const tsdb_sample_t *s;
        size_t n;
        int k;
        while ((k = tsdb_iter_next(it, &s, &n)) != 0) {
            if (k < 0) {
                fprintf(stderr, "augur tsdb dump: series %" PRIu64 ": %s\n", ids.ids[i],
                        tsdb_strerror(k));
                if (k == TSDB_ECORRUPT) continue;
                break;
            }
            for (size_t j = 0; j < n; j++) printf("%s %" PRId64 " %.17g\n", lbuf, s[j].t, s[j].v);
        }
        tsdb_iter_close(it);
    }
    tsdb_sids_free(&ids);
    tsdb_reader_close(r);
    return rc;
}

int cli_tsdb(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        tsdb_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (argc < 3) {
        tsdb_usage(stderr);
        return 2;
    }
    const char *dir = argv[2];
    tsdb_matcher_t m[32];
    size_t nm = 0;
    int64_t start = INT64_MIN, end = INT64_MAX, retention = -1, now = -1;
    const char *dest = NULL;
    int i = 3;
    if (!strcmp(cmd, "backup")) {
        if (argc < 4) {
            tsdb_usage(stderr);
            return 2;
        }
        dest = argv[3];
        i = 4;
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--match") && val) {
            if (nm == 32 || parse_matcher(argv[++i], &m[nm])) {
                fprintf(stderr, "augur tsdb: bad matcher '%s' (want name=value, name!=value, "
                                "name=~re or name!~re)\n", val);
                return 2;
            }
            nm++;
        } else if (!strcmp(a, "--start") && val) {
            start = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--end") && val) {
            end = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--now") && val) {
            now = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--retention") && val) {
            if (cli_parse_duration_ms(argv[++i], &retention)) {
                fprintf(stderr, "augur tsdb: bad duration '%s'\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "augur tsdb: unknown or incomplete option '%s'\n", a);
            tsdb_usage(stderr);
            return 2;
        }
    }
    int known = !strcmp(cmd, "stats") || !strcmp(cmd, "check") || !strcmp(cmd, "backup") ||
                !strcmp(cmd, "dump") || !strcmp(cmd, "delete") || !strcmp(cmd, "retention");
    if (!known) {
        fprintf(stderr, "augur tsdb: unknown command '%s'\n", cmd);
        tsdb_usage(stderr);
        return 2;
    }
    if (!strcmp(cmd, "delete") && nm == 0) {
        fprintf(stderr, "augur tsdb delete: at least one --match is required\n");
        return 2;
    }
    if (!strcmp(cmd, "retention") && retention < 0) {
        fprintf(stderr, "augur tsdb retention: --retention is required\n");
        return 2;
    }
    tsdb_t *db;
    int ro = !strcmp(cmd, "stats") || !strcmp(cmd, "check") || !strcmp(cmd, "dump");
    int rc;
    if (!strcmp(cmd, "retention")) {
        tsdb_options_t ro_opt;
        tsdb_options_init(&ro_opt);
        ro_opt.flush_interval_ms = -1;
        ro_opt.retention_ms = retention > 0 ? retention : 1;
        ro_opt.replay_progress = tsdb_replay_progress_stderr;
        ro_opt.replay_progress_ctx = (void *)"augur tsdb";
        ro_opt.replay_progress_ms = 5000;
        rc = tsdb_open(dir, &ro_opt, &db);
        if (rc) {
            fprintf(stderr, "augur tsdb: cannot open %s: %s (%s)\n", dir, tsdb_strerror(rc),
                    tsdb_last_error_detail());
            return 1;
        }
    } else if (open_or_report(dir, ro, &db)) {
        return 1;
    }
    int exit_code = 0;
    if (!strcmp(cmd, "stats")) {
        rc = cmd_stats(db);
    } else if (!strcmp(cmd, "check")) {
        uint64_t bad = 0;
        rc = tsdb_check(db, &bad);
        if (!rc) {
            printf("%" PRIu64 " bad block(s)\n", bad);
            if (bad) exit_code = 1;
        }
    } else if (!strcmp(cmd, "backup")) {
        rc = tsdb_backup(db, dest);
        if (!rc) printf("backup written to %s\n", dest);
    } else if (!strcmp(cmd, "dump")) {
        rc = cmd_dump(db, m, nm, start, end);
    } else if (!strcmp(cmd, "delete")) {
        uint64_t n = 0;
        rc = tsdb_delete_series(db, m, nm, &n);
        if (!rc) printf("deleted %" PRIu64 " series\n", n);
    } else {
        if (now < 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        }
        rc = tsdb_retention_apply(db, now);
        if (!rc) printf("retention applied: data before %" PRId64 " ms dropped\n", now - retention);
    }
    if (rc) {
        fprintf(stderr, "augur tsdb %s: %s", cmd, tsdb_strerror(rc));
        if (*tsdb_last_error_detail()) fprintf(stderr, " (%s)", tsdb_last_error_detail());
        fputc('\n', stderr);
        exit_code = 1;
    }
    int crc = tsdb_close(db);
    if (crc && !rc) {
        fprintf(stderr, "augur tsdb: close: %s\n", tsdb_strerror(crc));
        exit_code = 1;
    }
    return exit_code;
}
