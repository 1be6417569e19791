/*
 * cmd_label.c — `augur label`: record and list ground-truth failure events
 * in a store directory, offline (no server may be running on it; with a
 * server, use POST/GET /api/v1/failures).
 *
 *   augur label failure --store DIR --kind disk --instance X [--device D]
 *                       [--serial S | --uuid U] --time T [--reason R]
 *   augur label list    --store DIR [--kind K] [--instance X] [--since T] [--until T]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ingest/failures.h"
#include "tsdb/tsdb.h"

static void label_usage(FILE *f)
{
    fputs("usage: augur label <command> --store DIR [options]\n"
          "\n"
          "Ground-truth failure events, stored in the store as samples of\n"
          "augur_failure_event{kind, instance, device, serial|UUID, reason} = 1 at the failure\n"
          "time (durable, visible to PromQL). Offline: stop the server on DIR first, or use\n"
          "POST /api/v1/failures on a running server.\n"
          "\n"
          "commands:\n"
          "  failure   record one failure event\n"
          "            --kind disk|gpu|node   (required)\n"
          "            --instance NODE        (required) the node, as in the instance label\n"
          "            --device NAME          sda, nvme0n1, nvidia3, ...\n"
          "            --serial S             disk serial number (a disk needs device or serial)\n"
          "            --uuid U               GPU UUID (a gpu needs device or uuid)\n"
          "            --time T               (required) RFC 3339 (2024-03-01T12:00:00Z), a date\n"
          "                                   (2024-03-01, 00:00 UTC) or Unix seconds\n"
          "            --reason R             free text\n"
          "  list      print the recorded events, one JSON object a line, oldest first\n"
          "            [--kind K] [--instance X] [--since T] [--until T]\n"
          "\n"
          "common options:\n"
          "  --store DIR   the store directory (required)\n",
          f);
}

int cli_label(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        label_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    int list = !strcmp(cmd, "list");
    if (!list && strcmp(cmd, "failure")) {
        fprintf(stderr, "augur label: unknown command '%s' (failure, list)\n", cmd);
        return 2;
    }
    const char *store = NULL, *time_s = NULL, *since_s = NULL, *until_s = NULL;
    failure_event_t e = {NULL, NULL, NULL, NULL, NULL, NULL, INT64_MIN};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            label_usage(stdout);
            return 0;
        }
        static const char *const names[] = {"--store",  "--kind", "--instance", "--device",
                                            "--serial", "--uuid", "--time",     "--reason",
                                            "--since",  "--until"};
        const char **dst[] = {&store,  &e.kind, &e.instance, &e.device, &e.serial,
                              &e.uuid, &time_s, &e.reason,   &since_s,  &until_s};
        int found = 0;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            size_t nl = strlen(names[k]);
            if (!strcmp(a, names[k])) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "augur label: %s needs a value\n", a);
                    return 2;
                }
                *dst[k] = argv[++i];
                found = 1;
            } else if (!strncmp(a, names[k], nl) && a[nl] == '=') {
                *dst[k] = a + nl + 1;
                found = 1;
            }
            if (found) break;
        }
        if (!found) {
            fprintf(stderr, "augur label: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!store) {
        fprintf(stderr, "augur label: --store DIR is required\n");
        return 2;
    }
    int64_t since = INT64_MIN, until = INT64_MAX;
    if ((time_s && ingest_time_parse(time_s, strlen(time_s), &e.t_ms)) ||
        (since_s && ingest_time_parse(since_s, strlen(since_s), &since)) ||
        (until_s && ingest_time_parse(until_s, strlen(until_s), &until))) {
        fprintf(stderr, "augur label: bad time: want RFC 3339, YYYY-MM-DD or Unix seconds\n");
        return 2;
    }
    char err[400];
    if (!list && failure_event_check(&e, err, sizeof err)) {
        fprintf(stderr, "augur label failure: %s\n", err);
        return 2;
    }
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.read_only = list;
    o.flush_interval_ms = -1;
    tsdb_t *db = NULL;
    int rc = tsdb_open(store, &o, &db);
    if (rc) {
        const char *d = tsdb_last_error_detail();
        fprintf(stderr, "augur label: cannot open store %s: %s%s%s\n", store, tsdb_strerror(rc),
                *d ? ": " : "", d);
        return 2;
    }
    int status = 0;
    if (!list) {
        tsdb_append_result_t res;
        memset(&res, 0, sizeof res);
        rc = failures_append(db, &e, 1, &res, err, sizeof err);
        if (rc) {
            fprintf(stderr, "augur label failure: %s\n", err);
            status = 2;
        } else if (res.stored) {
            char t[40];
            ingest_time_format(e.t_ms, t, sizeof t);
            printf("recorded %s failure of %s%s%s on %s at %s\n", e.kind,
                   e.device   ? e.device
                   : e.serial ? e.serial
                   : e.uuid   ? e.uuid
                              : "the node",
                   "", "", e.instance, t);
        } else if (res.duplicate) {
            printf("already recorded (nothing changed)\n");
        } else {
            fprintf(stderr, "augur label failure: the store refused the event\n");
            status = 1;
        }
    } else {
        tsdb_reader_t *r = NULL;
        failure_list_t l;
        failure_filter_t f = {e.kind, e.instance, e.device, since, until};
        rc = tsdb_reader_open(db, &r);
        if (!rc) rc = failures_list(r, &f, &l);
        if (rc) {
            fprintf(stderr, "augur label list: %s\n", failures_strerror(rc));
            status = 2;
        } else {
            for (size_t i = 0; i < l.n; i++) {
                failure_list_t one = {&l.v[i], 1, 1, {0}};
                tbuf_t b = {0};
                if (failures_json_write(&b, &one) == 0 && b.len >= 2)
                    printf("%.*s\n", (int)(b.len - 2), (const char *)b.p + 1);
                tbuf_free(&b);
            }
            failure_list_free(&l);
        }
        tsdb_reader_close(r);
    }
    rc = tsdb_close(db);
    if (rc && !status) {
        fprintf(stderr, "augur label: closing the store: %s\n", tsdb_strerror(rc));
        status = 2;
    }
    tsdb_thread_cleanup();
    return status;
}
