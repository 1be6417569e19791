/* bench_detect.c — detector throughput: sample updates per second on one
 * core, over many independent series (states in a contiguous array, as
 * the server keeps them), plus the state size. The rate is per CPU second
 * of the process (one thread); wall time is printed beside it.
 *
 *   bench_detect [--series N] [--samples M]   (defaults 10000 x 2000)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/detect.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t nser = 10000, nsamp = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--series"))
            nser = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--samples"))
            nsamp = strtoul(argv[i + 1], NULL, 10);
    }
    detect_config_t cfg;
    detect_config_init(&cfg);
    detect_state_t *st = malloc(nser * sizeof *st);
    /* Precomputed inputs (a noisy daily pattern with spikes) so the loop
     * measures the detector, not the generator. */
    enum { NV = 4096 };
    double *vals = malloc(NV * sizeof *vals);
    uint64_t r = 42;
    for (int i = 0; i < NV; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(r >> 11) / 9007199254740992.0;
        vals[i] =
            50 + 20 * sin(i * 6.283185307179586 / 288) + 4 * (u - 0.5) + (i % 997 == 0 ? 40 : 0);
    }
    if (!st || !vals) return 1;
    for (size_t s = 0; s < nser; s++)
        detect_init(&st[s], 0);
    double sum = 0, t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    const int64_t T0 = 1396310400000LL;
    /* Sample-major, as ingestion delivers: every series gets sample k. */
    for (size_t k = 0; k < nsamp; k++) {
        int64_t t = T0 + (int64_t)k * 15000;
        for (size_t s = 0; s < nser; s++)
            sum += detect_update(&st[s], &cfg, t, vals[(k + s * 7) & (NV - 1)], NULL);
    }
    double dt = clock_s(CLOCK_MONOTONIC) - t0, dc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    double n = (double)nser * (double)nsamp;
    /* Per core: the process's CPU time (one thread), which a shared,
     * loaded machine does not inflate the way it inflates wall time. */
    printf("detect_update: %zu series x %zu samples = %.0f updates in %.3f s CPU (%.3f s wall): "
           "%.1f M/s per core (%.1f ns/update), state %zu bytes/series (checksum %.3f)\n",
           nser, nsamp, n, dc, dt, n / dc / 1e6, dc / n * 1e9, sizeof(detect_state_t), sum);
    free(st);
    free(vals);
    return 0;
}
