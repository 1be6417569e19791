/* testutil.h — helpers shared by the cmocka tests: temp dirs, seeds. */
#ifndef AUGUR_TESTUTIL_H
#define AUGUR_TESTUTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsdb/tsdb_util.h"

/* A fresh directory under $TMPDIR (or /tmp). Returns a static buffer. */
static inline char *tu_mkdtemp(char *buf, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/augur-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(buf);
}

static inline void tu_rmrf(const char *dir)
{
    size_t n = strlen(dir) + 16;
    char *cmd = malloc(n);
    if (!cmd) return;
    snprintf(cmd, n, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    free(cmd);
}

/* The seed for random tests: AUGUR_TEST_SEED if set, else `def`. Printed so
 * that a failure can be replayed. */
static inline uint64_t tu_seed(const char *test, uint64_t def)
{
    const char *e = getenv("AUGUR_TEST_SEED");
    uint64_t s = e && *e ? strtoull(e, NULL, 0) : def;
    fprintf(stderr, "[%s] seed %" PRIu64 " (replay with AUGUR_TEST_SEED=%" PRIu64 ")\n", test, s,
            s);
    return s;
}

/* An integer from the environment, or def. */
static inline long tu_env_long(const char *name, long def)
{
    const char *e = getenv(name);
    return e && *e ? strtol(e, NULL, 0) : def;
}

#endif
