/* fuzz_promql.c — libFuzzer target for the PromQL lexer and parser
 * (promql_parse), and for the evaluator on what parses: accepted expressions
 * are evaluated over an empty in-memory store at a fixed time with small
 * limits, which must end in success or a clean error.
 *
 * fuzz/CMakeLists.txt links ingest and tsdb only, so this target compiles the
 * query sources it needs directly (they are small and self-contained). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "query/promql.h"
#include "tsdb/tsdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tsdb_t *g_db;
static tsdb_reader_t *g_r;

static void open_store(void)
{
    char dir[] = "/tmp/augur-fuzz-promql-XXXXXX";
    if (!mkdtemp(dir)) abort();
    tsdb_options_t o;
    tsdb_options_init(&o);
    o.flush_interval_ms = -1;
    o.sync_mode = TSDB_SYNC_PERIODIC;
    if (tsdb_open(dir, &o, &g_db)) abort();
    tsdb_label_t l[2] = {{{"__name__", 8}, {"m", 1}}, {{"k", 1}, {"v", 1}}};
    tsdb_sample_t s[32];
    for (int i = 0; i < 32; i++) s[i] = (tsdb_sample_t){i * 10000, i % 5};
    tsdb_series_in_t in = {l, 2, s, 32};
    if (tsdb_append(g_db, &in, 1, NULL, NULL)) abort();
    if (tsdb_reader_open(g_db, &g_r)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_db) open_store();
    char err[256];
    pq_expr_t *e = NULL;
    int rc = promql_parse((const char *)data, size, &e, err, sizeof err);
    if (rc != 0 && rc != PQ_EPARSE && rc != PQ_ENOMEM) abort();
    if (rc == 0) {
        pq_opts_t o = {.start_ms = 300000, .end_ms = 300000, .timeout_ms = 200, .max_samples = 100000};
        pq_result_t *res = NULL;
        int erc = promql_eval(g_r, e, &o, &res, err, sizeof err);
        if (erc != 0 && erc != PQ_EEXEC && erc != PQ_ETIMEOUT && erc != PQ_ESAMPLES && erc != PQ_ENOMEM)
            abort();
        promql_result_free(res);
    }
    promql_expr_free(e);
    return 0;
}
