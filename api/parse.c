/* parse.c — duration and byte-size flag values (see server.h). */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "api/server.h"

int api_duration_parse(const char *s, int64_t *ms)
{
    if (!s || !*s) return -1;
    if (!strcmp(s, "0")) {
        *ms = 0;
        return 0;
    }
    static const struct {
        const char *u;
        int64_t ms;
    } units[] = {{"y", 365LL * 86400000},
                 {"w", 7LL * 86400000},
                 {"d", 86400000},
                 {"h", 3600000},
                 {"ms", 1},
                 {"m", 60000},
                 {"s", 1000}};
    /* Rank of each unit for the largest-first rule (ms is smallest). */
    static const int rank[] = {6, 5, 4, 3, 0, 2, 1};
    int64_t total = 0;
    int last = 7;
    const char *p = s;
    while (*p) {
        if (*p < '0' || *p > '9') return -1;
        int64_t v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return -1;
            v = v * 10 + (*p++ - '0');
        }
        int u = -1;
        for (int i = 0; i < 7; i++) {
            size_t l = strlen(units[i].u);
            if (!strncmp(p, units[i].u, l)) {
                /* "m" must not swallow the "m" of "ms". */
                if (units[i].u[0] == 'm' && l == 1 && p[1] == 's') continue;
                u = i;
                p += l;
                break;
            }
        }
        if (u < 0 || rank[u] >= last) return -1;
        last = rank[u];
        if (v > INT64_MAX / units[u].ms) return -1;
        int64_t add = v * units[u].ms;
        if (total > INT64_MAX - add) return -1;
        total += add;
    }
    *ms = total;
    return 0;
}

int api_bytes_parse(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    uint64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    static const struct {
        const char *u;
        unsigned shift;
    } units[] = {{"", 0},     {"B", 0},   {"K", 10},   {"KB", 10}, {"KiB", 10},
                 {"M", 20},   {"MB", 20}, {"MiB", 20}, {"G", 30},  {"GB", 30},
                 {"GiB", 30}, {"T", 40},  {"TB", 40},  {"TiB", 40}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(p, units[i].u)) {
            if (units[i].shift && v > (UINT64_MAX >> units[i].shift)) return -1;
            *out = v << units[i].shift;
            return 0;
        }
    return -1;
}
