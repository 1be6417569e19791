/* test_detect.c — the streaming detector (models/detect.c) on synthetic
 * signals with known anomalies (spike, level shift, variance change,
 * seasonal break, flatline, counter reset), clean periodic and random-walk
 * signals (no alarm after warm-up), persistence round trip, determinism,
 * and NaN/Inf/staleness inputs that must not poison the state.
 *
 * Signals come from a seeded generator: AUGUR_TEST_SEED replays one. Each
 * test seeds its own generator from that seed and its name (rng_for()), so
 * the data of one test does not depend on which tests run before it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "models/detect.h"
#include "testutil.h"

#define ALARM 0.4      /* score the tests call an alarm (-log10 p = 4, the server default) */
#define STEP_MS 300000 /* 5 minutes */
#define T0 INT64_C(1396310400000) /* 2014-04-01 00:00 UTC */

static uint64_t rng_state;

static double urand(void)
{
    rng_state = rng_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void)
{
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

static uint64_t base_seed;

static int group_setup(void **state)
{
    (void)state;
    base_seed = tu_seed("test_detect", 20240601);
    return 0;
}

/* Start the generator for one test: the run's seed mixed with the test's
 * name (FNV-1a), then a few draws to spread nearby seeds apart. */
static void rng_for(const char *test)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const char *p = test; *p; p++)
        h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
    rng_state = base_seed ^ h;
    for (int i = 0; i < 4; i++)
        (void)urand();
}

typedef struct {
    size_t n;
    double *v;
    int64_t *t;
    double *s;
} sig_t;

static void sig_alloc(sig_t *g, size_t n)
{
    g->n = n;
    g->v = calloc(n, sizeof *g->v);
    g->t = calloc(n, sizeof *g->t);
    g->s = calloc(n, sizeof *g->s);
    assert_non_null(g->v);
    assert_non_null(g->t);
    assert_non_null(g->s);
    for (size_t i = 0; i < n; i++)
        g->t[i] = T0 + (int64_t)i * STEP_MS;
}

static void sig_free(sig_t *g)
{
    free(g->v);
    free(g->t);
    free(g->s);
}

static void run_cfg(sig_t *g, uint32_t flags, const detect_config_t *c)
{
    detect_state_t st;
    detect_init(&st, flags);
    for (size_t i = 0; i < g->n; i++) {
        g->s[i] = detect_update(&st, c, g->t[i], g->v[i], NULL);
        assert_true(g->s[i] >= 0.0 && g->s[i] < 1.0);
    }
}

static void run(sig_t *g, uint32_t flags)
{
    detect_config_t c;
    detect_config_init(&c);
    run_cfg(g, flags, &c);
}

static double max_in(const sig_t *g, size_t a, size_t b)
{
    double m = 0;
    for (size_t i = a; i < b && i < g->n; i++)
        if (g->s[i] > m) m = g->s[i];
    return m;
}

/* Warm-up: the config's warm-up plus two days (seasonal profile). */
static size_t warm(void)
{
    detect_config_t c;
    detect_config_init(&c);
    return c.warmup + 2 * 288;
}

static void test_state_size(void **state)
{
    (void)state;
    assert_int_equal(sizeof(detect_state_t), 256);
    assert_true(DETECT_STATE_BYTES <= 256);
}

static void noise(sig_t *g, double mean, double sd)
{
    for (size_t i = 0; i < g->n; i++)
        g->v[i] = mean + sd * gauss();
}

static void test_spike(void **state)
{
    (void)state;
    rng_for("spike");
    sig_t g;
    sig_alloc(&g, 3000);
    noise(&g, 50, 2);
    g.v[2000] += 30; /* 15 sd */
    run(&g, 0);
    fprintf(stderr, "spike: at %.3f, elsewhere max %.3f\n", g.s[2000],
            fmax(max_in(&g, warm(), 2000), max_in(&g, 2001, 3000)));
    assert_true(g.s[2000] >= ALARM);
    assert_true(max_in(&g, warm(), 2000) < ALARM);
    sig_free(&g);
}

static void test_level_shift(void **state)
{
    (void)state;
    rng_for("level_shift");
    sig_t g;
    sig_alloc(&g, 3000);
    noise(&g, 50, 2);
    for (size_t i = 2000; i < g.n; i++)
        g.v[i] += 14; /* 7 sd, sustained (6 sd scores 0.39-0.60 over seeds 1-30: the
                       * alarm line, not a margin) */
    run(&g, 0);
    fprintf(stderr, "level shift: max in first 10 after %.3f, before %.3f, late %.3f\n",
            max_in(&g, 2000, 2010), max_in(&g, warm(), 2000), max_in(&g, 2300, 3000));
    assert_true(max_in(&g, 2000, 2010) >= ALARM);
    assert_true(max_in(&g, warm(), 2000) < ALARM);
    assert_true(max_in(&g, 2300, 3000) < ALARM); /* the new level is learnt */
    sig_free(&g);
}

static void test_variance_change(void **state)
{
    (void)state;
    rng_for("variance_change");
    sig_t g;
    sig_alloc(&g, 3000);
    noise(&g, 50, 1);
    for (size_t i = 2000; i < g.n; i++)
        g.v[i] = 50 + 6 * gauss();
    run(&g, 0);
    fprintf(stderr, "variance: max after %.3f, before %.3f\n", max_in(&g, 2000, 2050),
            max_in(&g, warm(), 2000));
    assert_true(max_in(&g, 2000, 2050) >= ALARM);
    assert_true(max_in(&g, warm(), 2000) < ALARM);
    sig_free(&g);
}

/* Daily square-ish pattern (high 09:00-18:00) with noise. */
static double daily(int64_t t)
{
    int64_t h = (t / 3600000) % 24;
    return h >= 9 && h < 18 ? 80.0 : 20.0;
}

static void test_seasonal_break(void **state)
{
    (void)state;
    rng_for("seasonal_break");
    sig_t g;
    sig_alloc(&g, 288 * 14);
    for (size_t i = 0; i < g.n; i++)
        g.v[i] = daily(g.t[i]) + 2 * gauss();
    /* Day 10: the daytime rise does not happen. */
    size_t d10 = 288 * 10;
    for (size_t i = d10; i < d10 + 288; i++)
        g.v[i] = 20 + 2 * gauss();
    run(&g, 0);
    fprintf(stderr, "seasonal break: max on day 10 %.3f, days 3-9 %.3f\n",
            max_in(&g, d10, d10 + 288), max_in(&g, 288 * 3, d10));
    assert_true(max_in(&g, d10, d10 + 288) >= ALARM);
    assert_true(max_in(&g, 288 * 3, d10) < ALARM);
    sig_free(&g);
}

/* NAB's art_daily_jumpsdown in miniature: a daily high from 09:00 to
 * 18:00 (a step up; a step most of the way down and a one-hour tail),
 * noisier when high. On day 18 the high is half as tall. When the
 * hour-of-day baseline is in use, its residual catches that; but the
 * fast level predicts this signal about as well as the profile, and when
 * the plain level is the baseline, the value at 09:00 is close to its
 * prediction and far from the profile's: the residual statistics miss
 * the day, and the seasonal channel has to see it. Which baseline wins
 * depends on the noise, so 8 realisations are run, each with and without
 * the channel. With it, the day is caught in nearly every one (see the
 * tolerance below), it is never scored lower than without the channel,
 * and the channel adds (nearly) no alarm on the clean days. */
static double step_day(int64_t t, double high)
{
    double h = (double)(t % 86400000) / 3600000.0;
    if (h < 9 || h >= 19) return 20.0;
    if (h < 18) return high;
    return 20.0 + 10.0 * (19 - h);
}

static void test_seasonal_missed_peak(void **state)
{
    (void)state;
    rng_for("seasonal_missed_peak");
    sig_t g;
    sig_alloc(&g, 288 * 21);
    size_t d18 = 288 * 18;
    double *with = malloc(g.n * sizeof *with);
    assert_non_null(with);
    int by_channel = 0, missed = 0, added_all = 0, worse = 0;
    for (int rep = 0; rep < 8; rep++) {
        for (size_t i = 0; i < g.n; i++) {
            double high = i >= d18 && i < d18 + 288 ? 40.0 : 80.0;
            g.v[i] = step_day(g.t[i], high) + (step_day(g.t[i], 80) > 20 ? 4.5 : 1.0) * gauss();
        }
        detect_config_t c;
        detect_config_init(&c);
        run_cfg(&g, 0, &c);
        memcpy(with, g.s, g.n * sizeof *with);
        c.season_gate = 0; /* the same signal without the seasonal channel */
        run_cfg(&g, 0, &c);
        double on = 0, on0 = max_in(&g, d18, d18 + 288);
        int added = 0; /* clean-day alarms that only the channel raised */
        for (size_t i = d18; i < d18 + 288; i++)
            on = with[i] > on ? with[i] : on;
        for (size_t i = 288 * 3; i < d18; i++)
            added += with[i] >= ALARM && g.s[i] < ALARM;
        by_channel += on0 < ALARM;
        fprintf(stderr,
                "missed peak %d: max on day 18 %.3f, without the seasonal channel %.3f; "
                "alarms it added on days 3-17: %d\n",
                rep, on, on0, added);
        missed += on < ALARM;
        added_all += added;
        worse += on < on0;
    }
    fprintf(stderr,
            "missed peak: caught only by the seasonal channel in %d of 8, missed in %d, "
            "clean-day alarms added %d, day scored lower with the channel %d\n",
            by_channel, missed, added_all, worse);
    /* Over seeds 1-30 (240 realisations) the day was missed in 6 and the
     * channel added 1 clean-day alarm: when the seasonal baseline is in use
     * the drop to half height is scored by the residual statistics alone,
     * whose tail has learnt the noisy daily steps (-log10 p 3.8-4.0), or a
     * false alarm in the days before has raised the onset memory above it.
     * So a realisation may miss; two in one run of 8 is the most seen. */
    assert_true(missed <= 2);
    assert_true(added_all <= 1);
    assert_int_equal(worse, 0); /* the channel never hides what the rest catches */
    free(with);
    sig_free(&g);
}

/* Score memory: after an excursion to a new level, the short EWMA keeps
 * setting records for a while (a run of weak novelty scores, one event).
 * Scores that do not beat the decaying memory of the final scores are
 * reported at score_repeat of their value; alarms never are. Compared
 * with the same signal and the memory off (score_repeat 1): the onset is
 * the same, every other difference is a sub-alarm score x 0.1, and the
 * run of weak detections after the onset is shorter. */
static void test_score_memory(void **state)
{
    (void)state;
    rng_for("score_memory");
    sig_t g;
    sig_alloc(&g, 2400);
    noise(&g, 50, 2);
    for (size_t i = 2000; i < 2200; i++)
        g.v[i] += 8.0 * (double)(i < 2010 ? i - 1999 : 10); /* a ramp to a new level */
    detect_config_t c;
    detect_config_init(&c);
    run_cfg(&g, 0, &c);
    double *with = malloc(g.n * sizeof *with);
    assert_non_null(with);
    memcpy(with, g.s, g.n * sizeof *with);
    c.score_repeat = 1.0f;
    run_cfg(&g, 0, &c);
    int weak_with = 0, weak_without = 0, damped = 0;
    for (size_t i = 0; i < g.n; i++) {
        if (with[i] != g.s[i]) {
            assert_true(g.s[i] < ALARM);
            assert_true(fabs(with[i] - 0.1 * g.s[i]) < 1e-6 * g.s[i]);
            damped++;
        }
        if (i > 2000 && i < 2100) {
            weak_with += with[i] >= 0.04;
            weak_without += g.s[i] >= 0.04;
        }
    }
    size_t first = 2000, first_with = 2000;
    while (first < g.n && g.s[first] < 0.04)
        first++;
    while (first_with < g.n && with[first_with] < 0.04)
        first_with++;
    double peak = max_in(&g, 2000, 2100);
    for (size_t i = 2000; i < 2100; i++)
        g.s[i] = with[i];
    fprintf(stderr,
            "score memory: first score >= 0.04 at %zu (without the memory %zu), peak %.3f (%.3f); "
            "scores >= 0.04 in the 100 after the onset %d (without %d); %d damped in all\n",
            first_with, first, max_in(&g, 2000, 2100), peak, weak_with, weak_without, damped);
    assert_true(peak >= ALARM);
    assert_true(max_in(&g, 2000, 2100) == peak); /* the alarm is unchanged */
    assert_true(first < 2010 && first_with == first); /* so is the earliest detection */
    assert_true(weak_with < weak_without);
    free(with);
    sig_free(&g);
}

static void test_flatline(void **state)
{
    (void)state;
    rng_for("flatline");
    sig_t g;
    sig_alloc(&g, 3000);
    noise(&g, 50, 2);
    for (size_t i = 2000; i < g.n; i++)
        g.v[i] = 51.5; /* stuck sensor */
    run(&g, 0);
    fprintf(stderr, "flatline: max in 30 after %.3f, before %.3f\n", max_in(&g, 2000, 2030),
            max_in(&g, warm(), 2000));
    assert_true(max_in(&g, 2000, 2030) >= ALARM);
    assert_true(max_in(&g, warm(), 2000) < ALARM);
    sig_free(&g);
}

static void test_counter_reset(void **state)
{
    (void)state;
    rng_for("counter_reset");
    detect_config_t c;
    detect_config_init(&c);
    detect_state_t st;
    detect_init(&st, DETECT_F_COUNTER);
    double ctr = 1e6, maxafter = 0;
    int resets = 0;
    for (int i = 0; i < 3000; i++) {
        int64_t t = T0 + (int64_t)i * 15000;
        if (i == 2000) ctr = 0;     /* process restarted */
        ctr += 1500 + 30 * gauss(); /* ~100/s over 15 s */
        detect_result_t r;
        double s = detect_update(&st, &c, t, ctr, &r);
        if (r.events & DETECT_EV_COUNTER_RESET) {
            resets++;
            assert_int_equal(i, 2000);
        }
        if (i > 2000 && s > maxafter) maxafter = s;
        if (i > 300 && i != 2000) assert_true(fabs(r.x - 100) < 20); /* the rate */
    }
    fprintf(stderr, "counter reset: resets %d, max score after %.3f\n", resets, maxafter);
    assert_int_equal(resets, 1);
    assert_true(maxafter < ALARM); /* the reset does not poison the rate */
}

static void test_clean_periodic(void **state)
{
    (void)state;
    rng_for("clean_periodic");
    sig_t g;
    sig_alloc(&g, 288 * 14);
    for (size_t i = 0; i < g.n; i++)
        g.v[i] = 100 + 30 * sin(6.283185307179586 * (double)(g.t[i] % 86400000) / 86400000.0) +
                 2 * gauss();
    run(&g, 0);
    double m = max_in(&g, warm(), g.n);
    fprintf(stderr, "clean periodic: max after warm-up %.3f\n", m);
    assert_true(m < ALARM);
    sig_free(&g);
}

static void test_clean_random_walk(void **state)
{
    (void)state;
    rng_for("clean_random_walk");
    sig_t g;
    sig_alloc(&g, 4000);
    double x = 1000;
    for (size_t i = 0; i < g.n; i++) {
        x += gauss();
        g.v[i] = x;
    }
    run(&g, 0);
    double m = max_in(&g, warm(), g.n);
    fprintf(stderr, "clean random walk: max after warm-up %.3f\n", m);
    assert_true(m < ALARM);
    sig_free(&g);
}

/* Older layouts (0xDE72-0xDE75), written here from a state for the
 * migration checks: a 48-byte header with a 32-bit sample count and 52
 * floats, the novelty memory among them (after the tails), no gap grid.
 * In 0xDE72-0xDE74 the run length takes all of bytes 8-11 (no score
 * memory there). In a 0xDE72/0xDE73 record the fields those layouts
 * lacked (the novelty memory, the seasonal tail) are zero padding. */
#define OLD_NMEM_OFF (48 + 49 * 4)
#define OLD_STAIL_OFF (48 + 50 * 4)

static uint8_t *le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + n;
}

static uint8_t *lef(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return le(p, u, 4);
}

static uint8_t *led(uint8_t *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return le(p, u, 8);
}

static void encode_old(const detect_state_t *st, unsigned magic, uint8_t *buf)
{
    memset(buf, 0, DETECT_STATE_BYTES);
    uint8_t *p = le(buf, magic | (uint32_t)(st->flags & DETECT_F_COUNTER) << 16, 4);
    p = le(p, st->n, 4);
    p = le(p, magic == DETECT_MAGIC_V5 ? st->run | (uint32_t)st->fmem << 16 : st->run, 4);
    p = le(p, st->seen, 4);
    p = le(p, (uint64_t)st->t_last, 8);
    p = led(p, st->v_last);
    p = led(p, st->lf);
    p = led(p, st->ls);
    const float head[8] = {st->ef, st->es, st->sshort, st->gp, st->gn, st->pchange, st->mem,
                           st->x_last};
    for (int i = 0; i < 8; i++)
        p = lef(p, head[i]);
    for (int i = 0; i < 24; i++)
        p = lef(p, st->season[i]);
    p = lef(p, st->xs);
    for (int i = 0; i < 2; i++) {
        p = lef(p, st->hi[i]);
        p = lef(p, st->lo[i]);
    }
    for (int i = 0; i < 4; i++) {
        p = lef(p, st->spot[i].u);
        p = lef(p, st->spot[i].m1);
        p = lef(p, st->spot[i].m2);
    }
    p = lef(p, magic == DETECT_MAGIC_V2 ? 0.0f : (float)st->nmem / 65535.0f);
    int tail = magic == DETECT_MAGIC_V4 || magic == DETECT_MAGIC_V5;
    p = lef(p, tail ? st->su : 0.0f);
    p = lef(p, tail ? st->sm1 : 0.0f);
    assert_true(p == buf + 256);
}

static void test_persist_round_trip(void **state)
{
    (void)state;
    rng_for("persist_round_trip");
    detect_config_t c;
    detect_config_init(&c);
    detect_state_t a, b;
    detect_init(&a, 0);
    for (int i = 0; i < 1000; i++)
        detect_update(&a, &c, T0 + i * STEP_MS, daily(T0 + i * STEP_MS) + gauss(), NULL);
    uint8_t buf[DETECT_STATE_BYTES], buf2[DETECT_STATE_BYTES];
    assert_int_equal(detect_state_encode(&a, buf, sizeof buf), DETECT_STATE_BYTES);
    assert_int_equal(detect_state_encode(&a, buf, 10), DETECT_ESPACE);
    assert_int_equal(detect_state_decode(&b, buf, sizeof buf), DETECT_STATE_BYTES);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(detect_state_encode(&b, buf2, sizeof buf2), DETECT_STATE_BYTES);
    assert_memory_equal(buf, buf2, DETECT_STATE_BYTES); /* encode twice, compare */
    for (int i = 1000; i < 1500; i++) {
        int64_t t = T0 + i * STEP_MS;
        double v = daily(t) + gauss() + (i == 1400 ? 40 : 0);
        double sa = detect_update(&a, &c, t, v, NULL), sb = detect_update(&b, &c, t, v, NULL);
        assert_memory_equal(&sa, &sb, sizeof sa);
        if (i == 1400) assert_true(b.fmem > 0); /* the spike set the score memory */
    }
    assert_int_equal(detect_state_encode(&b, buf2, sizeof buf2), DETECT_STATE_BYTES);
    /* Refused: short, bad magic, non-finite field. */
    assert_int_equal(detect_state_decode(&b, buf, 100), DETECT_ESPACE);
    buf2[0] ^= 0xff;
    assert_int_equal(detect_state_decode(&b, buf2, sizeof buf2), DETECT_EFORMAT);
    buf2[0] ^= 0xff;
    /* A state of the first layout (magic 0xDE71, with a day-of-week
     * profile) is refused, not misread. */
    buf2[0] = 0x71;
    assert_int_equal(detect_state_decode(&b, buf2, sizeof buf2), DETECT_EFORMAT);
    buf2[0] = (uint8_t)(DETECT_MAGIC & 0xff);
    assert_int_equal(detect_state_decode(&b, buf2, sizeof buf2), DETECT_STATE_BYTES);
    /* States of the second to fifth layouts (no gap grid; a 32-bit sample
     * count; 0xDE72-0xDE74 also a 32-bit run length and no score memory;
     * 0xDE72 and 0xDE73 also without the fields added later, where they
     * had zero padding) are migrated: the same state with a gap grid that
     * counts the whole range seen so far as visited, an empty score memory
     * (before 0xDE75), no novelty memory (0xDE72), a fresh seasonal tail
     * (0xDE72, 0xDE73). Non-zero padding in an older record is refused. */
    {
        detect_state_t fresh;
        detect_init(&fresh, 0);
        assert_true(b.su != fresh.su || b.sm1 != fresh.sm1); /* the tail has learnt */
        assert_true(b.nmem > 0);
        assert_true(b.gexp < DETECT_GRID_OFF);
        uint8_t old[DETECT_STATE_BYTES];
        detect_state_t m, ref = b;
        encode_old(&b, DETECT_MAGIC_V5, old);
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_STATE_BYTES);
        assert_int_equal(m.magic, DETECT_MAGIC);
        /* the migrated grid: one run of visited buckets (lo's to hi's) */
        assert_true(m.gexp < DETECT_GRID_OFF);
        uint32_t gm = m.flags & 0x80 ? m.gmask << 16 | m.gmask >> 16 : m.gmask; /* grid order */
        uint32_t low = gm & (~gm + 1u);
        assert_true(gm != 0 && ((gm + low) & gm) == 0);
        ref.gexp = m.gexp;
        ref.gmask = m.gmask;
        ref.flags = (uint8_t)((ref.flags & DETECT_F_COUNTER) | (m.flags & ~DETECT_F_COUNTER));
        assert_memory_equal(&m, &ref, sizeof m);
        { /* no gap scores inside the range the old detector has seen */
            detect_config_t c0 = c;
            for (int q = 1; q < 8; q++) {
                detect_state_t mc = m;
                double v = m.lo[0] + (m.hi[0] - (double)m.lo[0]) * q / 8.0;
                detect_update(&mc, &c0, T0 + 1500 * STEP_MS, v, NULL);
                assert_int_equal(mc.gmask, m.gmask); /* its bucket was already set */
            }
        }
        ref.fmem = 0;
        encode_old(&b, DETECT_MAGIC_V4, old);
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_STATE_BYTES);
        assert_memory_equal(&m, &ref, sizeof m);
        ref.su = fresh.su;
        ref.sm1 = fresh.sm1;
        encode_old(&b, DETECT_MAGIC_V3, old);
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_STATE_BYTES);
        assert_memory_equal(&m, &ref, sizeof m);
        old[OLD_STAIL_OFF + 5] = 1;
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_EFORMAT);
        ref.nmem = 0;
        encode_old(&b, DETECT_MAGIC_V2, old);
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_STATE_BYTES);
        assert_memory_equal(&m, &ref, sizeof m);
        old[OLD_NMEM_OFF] = 1;
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_EFORMAT);
        old[OLD_NMEM_OFF] = 0;
        old[OLD_STAIL_OFF] = 1;
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_EFORMAT);
        /* An old record's run length beyond 16 bits saturates. */
        encode_old(&b, DETECT_MAGIC_V4, old);
        old[8] = 0xa0, old[9] = 0x86, old[10] = 0x01, old[11] = 0; /* 100000 */
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_STATE_BYTES);
        assert_int_equal(m.run, UINT16_MAX);
        /* and so does an old record's sample count */
        encode_old(&b, DETECT_MAGIC_V5, old);
        old[4] = 0xa0, old[5] = 0x86, old[6] = 0x01, old[7] = 0; /* 100000 */
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_STATE_BYTES);
        assert_int_equal(m.n, UINT16_MAX);
        /* an old record's novelty memory must be a score in [0, 1) */
        encode_old(&b, DETECT_MAGIC_V5, old);
        (void)lef(old + OLD_NMEM_OFF, 1.5f);
        assert_int_equal(detect_state_decode(&m, old, sizeof old), DETECT_EFORMAT);
    }
    /* A 0xDE76 record: unknown flag bits, a grid exponent out of range, a
     * grid that does not hold the range, or no grid without every bit of
     * the mask set are refused; no grid with every bit set is read. */
    {
        detect_state_t m;
        uint8_t bad[DETECT_STATE_BYTES];
        memcpy(bad, buf2, sizeof bad);
        bad[2] |= 0x40;
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_EFORMAT);
        memcpy(bad, buf2, sizeof bad);
        bad[3] = 125;
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_EFORMAT);
        bad[3] = (uint8_t)(int8_t)-127;
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_EFORMAT);
        bad[3] = (uint8_t)(int8_t)-126; /* a range ~2^130 buckets from 0: not a grid */
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_EFORMAT);
        memcpy(bad, buf2, sizeof bad);
        bad[3] = (uint8_t)(b.gexp - 3); /* 8 times finer: the range does not fit */
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_EFORMAT);
        memcpy(bad, buf2, sizeof bad);
        bad[3] = (uint8_t)(int8_t)DETECT_GRID_NONE; /* no grid, but not every bit set */
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_EFORMAT);
        memset(bad + 252, 0xff, 4);
        bad[2] &= 0x7f;
        assert_int_equal(detect_state_decode(&m, bad, sizeof bad), DETECT_STATE_BYTES);
        assert_int_equal(m.gexp, DETECT_GRID_NONE);
    }
    double nan = NAN;
    memcpy(buf2 + 32, &nan, 8); /* lf */
    assert_int_equal(detect_state_decode(&b, buf2, sizeof buf2), DETECT_EFORMAT);
}

/* Gap novelty: a value inside the range but away from every value seen.
 * Two levels (10 and 20, sd 0.3) in random order; at row 2500 a value of
 * 15, a level never visited between two that were, scores a gap (about
 * 0.2 x 0.3 / (0.3 + 0.4)): above every score in the 1500 rows before
 * it, below an alarm (a gap is a sub-alarm score by design), and at least
 * 0.05 lower without the gap statistic. A second sample at that level is
 * no longer new. */
static void test_gap_novelty(void **state)
{
    (void)state;
    rng_for("gap_novelty");
    sig_t g;
    sig_alloc(&g, 3000);
    for (size_t i = 0; i < g.n; i++)
        g.v[i] = (urand() < 0.5 ? 10.0 : 20.0) + 0.3 * gauss();
    g.v[2500] = 15.0;
    g.v[2501] = 15.05;
    run(&g, 0);
    double before = max_in(&g, 1000, 2500);
    fprintf(stderr, "gap: row 2500 %.3f, 2501 %.3f, max before %.3f\n", g.s[2500], g.s[2501],
            before);
    assert_true(g.s[2500] > 0.05 && g.s[2500] < ALARM);
    assert_true(g.s[2500] > before);
    assert_true(g.s[2501] < 0.2 * g.s[2500]);
    double with = g.s[2500];
    detect_config_t c;
    detect_config_init(&c);
    c.gap_weight = 0.0f;
    run_cfg(&g, 0, &c);
    fprintf(stderr, "gap: row 2500 without the gap statistic %.3f\n", g.s[2500]);
    assert_true(with - g.s[2500] > 0.05);
    sig_free(&g);
}

/* Invert comp[DETECT_C_NOVEL] (-log10 p units) to the gap in range widths
 * when the novelty of the range is 0 (x and its short EWMA inside their
 * ranges): comp = s x 6 / (1 - s), s = w x e / (e + k). */
static double gap_of_comp(float comp, const detect_config_t *c)
{
    double s = comp / (comp + DETECT_HALF) / c->gap_weight;
    return s <= 0 ? 0.0 : c->novelty_k * s / (1.0 - s);
}

/* The grid's gap against the exact one (the distance to the nearest value
 * seen, brute force), on clusters at random levels with jumps that grow
 * the range a thousandfold both ways (the grid doubles many times): never
 * more than the exact gap, and within two of the grid's buckets of it.
 * Afterwards, values between the old range and the far levels are gaps. */
static void test_gap_grid(void **state)
{
    (void)state;
    rng_for("gap_grid");
    detect_config_t c;
    detect_config_init(&c);
    detect_state_t st;
    detect_init(&st, 0);
    enum { N = 6000 };
    static float seen[N];
    size_t nseen = 0, checked = 0, gaps = 0;
    double level = 0;
    for (int i = 0; i < N; i++) {
        if (i % 200 == 0) level = 100.0 * urand();
        double v = level + urand();
        if (i == 3000) v = 1e5;  /* grows the range upwards */
        if (i == 4000) v = -1e5; /* and downwards */
        if (i >= 5000 && i % 100 == 50) v = (i % 200 == 50 ? 1 : -1) * 2e4 * (1 + urand());
        float xf = (float)v;
        float lo0 = st.lo[0], hi0 = st.hi[0];
        float xs = st.xs + 0.1f * (xf - st.xs);
        int inside = i > 0 && xf > lo0 && xf < hi0 && xs >= st.lo[1] && xs <= st.hi[1];
        detect_result_t r;
        detect_update(&st, &c, T0 + (int64_t)i * STEP_MS, v, &r);
        if (inside && (uint32_t)i >= c.warmup) {
            double d = INFINITY;
            for (size_t k = 0; k < nseen; k++)
                d = fmin(d, fabs((double)xf - seen[k]));
            double e_true = d / ((double)hi0 - lo0), e = gap_of_comp(r.comp[DETECT_C_NOVEL], &c);
            double bucket = ldexp(1.0, st.gexp) / ((double)hi0 - lo0);
            assert_true(e <= e_true * (1 + 1e-4) + 1e-9);
            assert_true(e >= e_true - 2 * bucket - 1e-9);
            checked++;
            if (i >= 5000 && i % 100 == 50 && e_true > 0.1) {
                assert_true(e > 0.05); /* far from the levels seen: a gap */
                gaps++;
            }
        }
        seen[nseen++] = xf;
    }
    fprintf(stderr, "gap grid: %zu checked, %zu far gaps, grid 2^%d\n", checked, gaps, st.gexp);
    assert_true(checked > 4000);
    assert_true(gaps >= 2);
    assert_true(st.gexp < DETECT_GRID_OFF);
}

/* Extreme values. A series at the 1e-30 scale that jumps to +-1e30 and
 * +-1e-40: the grid doubles ~200 times; scores stay in [0, 1) and the
 * state survives an encode/decode round trip at every step. Then a series
 * near the top of the float range (2e38-3e38) that jumps to -1, +-3e38
 * and back: the grid reaches the widest float grid (2^124 buckets) or
 * turns itself off, and scores stay in [0, 1). (Near 3e38 other float
 * fields of the state overflow, e.g. x - level, so that part does not
 * check persistence.) */
static void test_gap_extremes(void **state)
{
    (void)state;
    rng_for("gap_extremes");
    detect_config_t c;
    detect_config_init(&c);
    detect_state_t st, back;
    detect_init(&st, 0);
    uint8_t buf[DETECT_STATE_BYTES];
    const double odd[4] = {1e30, -1e30, 1e-40, -1e-40};
    int max_exp = -200;
    for (int i = 0; i < 2000; i++) {
        double v = i % 50 == 49 ? odd[(i / 50) % 4] : 1e-30 * gauss();
        double sc = detect_update(&st, &c, T0 + (int64_t)i * STEP_MS, v, NULL);
        assert_true(sc >= 0.0 && sc < 1.0);
        assert_int_equal(detect_state_encode(&st, buf, sizeof buf), DETECT_STATE_BYTES);
        assert_int_equal(detect_state_decode(&back, buf, sizeof buf), DETECT_STATE_BYTES);
        assert_memory_equal(&back, &st, sizeof st);
        if (st.gexp < DETECT_GRID_OFF && st.gexp > max_exp) max_exp = st.gexp;
    }
    assert_true(max_exp >= 95 && max_exp < DETECT_GRID_OFF); /* 32 x 2^95 > 2e30 */
    detect_init(&st, 0);
    for (int i = 0; i < 1000; i++) {
        double v = 2.5e38 + 5e37 * (urand() - 0.5);
        if (i % 100 == 99) v = (i / 100) % 3 == 0 ? -1.0 : (i / 100) % 3 == 1 ? 3e38 : -3e38;
        double sc = detect_update(&st, &c, T0 + (int64_t)i * STEP_MS, v, NULL);
        assert_true(sc >= 0.0 && sc < 1.0);
        assert_true(i == 0 || st.gexp == DETECT_GRID_OFF || st.gexp <= 124); /* a grid after 2 */
    }
    fprintf(stderr, "gap extremes: widest grid at 1e30 2^%d; near 3e38: %d\n", max_exp, st.gexp);
}

static void test_determinism(void **state)
{
    (void)state;
    rng_for("determinism");
    sig_t g;
    sig_alloc(&g, 3000);
    noise(&g, 10, 3);
    g.v[2500] = 100;
    run(&g, 0);
    double *first = malloc(g.n * sizeof *first);
    memcpy(first, g.s, g.n * sizeof *first);
    run(&g, 0);
    assert_memory_equal(first, g.s, g.n * sizeof *first);
    free(first);
    sig_free(&g);
}

/* Two configurations used in turn from one thread (as a process serving
 * several detector settings would) give each series the scores it gets
 * alone: nothing derived from one configuration leaks into the other's
 * updates (the tails' surprise at u is kept per thread for the last
 * quantile seen). The spikes and the changed quantile put the tails in
 * play on most updates. */
static void test_configs_interleaved(void **state)
{
    (void)state;
    rng_for("configs_interleaved");
    sig_t a, b;
    sig_alloc(&a, 3000);
    sig_alloc(&b, 3000);
    noise(&a, 50, 2);
    noise(&b, 10, 1);
    for (size_t i = 300; i < 3000; i += 97) {
        a.v[i] += 20;
        b.v[i + 40 < 3000 ? i + 40 : i] -= 6;
    }
    detect_config_t ca, cb;
    detect_config_init(&ca);
    detect_config_init(&cb);
    cb.spot_q = 0.9f;
    run_cfg(&a, 0, &ca);
    run_cfg(&b, 0, &cb);
    detect_state_t sa, sb;
    detect_init(&sa, 0);
    detect_init(&sb, 0);
    size_t differ = 0;
    /* A statistic just past its tail's threshold u has p = 1 - q: the
     * smallest positive surprise seen is -log10(1 - q) plus a little. */
    float least[2] = {1e30f, 1e30f};
    for (size_t i = 0; i < 3000; i++) {
        detect_result_t ra, rb;
        double x = detect_update(&sa, &ca, a.t[i], a.v[i], &ra);
        double y = detect_update(&sb, &cb, b.t[i], b.v[i], &rb);
        assert_memory_equal(&x, &a.s[i], sizeof x);
        assert_memory_equal(&y, &b.s[i], sizeof y);
        differ += x != y;
        for (int c = DETECT_C_UP; c <= DETECT_C_VAR; c++) {
            if (ra.comp[c] > 0 && ra.comp[c] < least[0]) least[0] = ra.comp[c];
            if (rb.comp[c] > 0 && rb.comp[c] < least[1]) least[1] = rb.comp[c];
        }
    }
    assert_true(differ > 100); /* the two really are scored differently */
    fprintf(stderr, "configs_interleaved: least surprise %.4f (q 0.95), %.4f (q 0.9)\n",
            least[0], least[1]);
    assert_true(least[0] >= 1.30103f - 1e-4f && least[0] < 1.30103f + 0.1f);
    assert_true(least[1] >= 1.0f - 1e-4f && least[1] < 1.0f + 0.1f);
    sig_free(&a);
    sig_free(&b);
}

/* The hour of the day (the seasonal profile's bucket) and the day count
 * are exact for any timestamp: the same samples shifted by whole days,
 * starting before 1970, just after it and in 2026, score the same, bit for
 * bit (the profile is complete and scoring after the first two days). The
 * hour used to come from a double product, t x (1 / 3.6e6), which rounds
 * below the hour for about a third of the exact hours since 1970 and half
 * of those since 2017 (none in 2013-2016, NAB's years): those samples
 * went to the previous hour's bucket. */
static void test_hour_buckets(void **state)
{
    (void)state;
    rng_for("hour_buckets");
    const int64_t day = INT64_C(86400000);
    const int64_t shift[3] = {-7 * day, 13 * day, INT64_C(1767225600000)}; /* 2026-01-01 */
    sig_t g[3];
    for (int k = 0; k < 3; k++)
        sig_alloc(&g[k], 4000);
    for (size_t i = 0; i < g[0].n; i++) {
        int64_t off = 3600000 / 3 + (int64_t)i * STEP_MS; /* from 00:20 */
        int hr = (int)(off / 3600000 % 24);
        double v = (hr >= 9 && hr < 18 ? 80.0 : 20.0) + gauss();
        for (int k = 0; k < 3; k++) {
            g[k].t[i] = shift[k] + off;
            g[k].v[i] = v;
        }
    }
    double dip = 20.0 + gauss(); /* a missed day-time peak (10:20) */
    for (int k = 0; k < 3; k++) {
        g[k].v[3000] = dip;
        run(&g[k], 0);
    }
    assert_memory_equal(g[0].s, g[1].s, g[0].n * sizeof *g[0].s);
    assert_memory_equal(g[0].s, g[2].s, g[0].n * sizeof *g[0].s);
    assert_true(g[0].s[3000] >= ALARM);
    for (int k = 0; k < 3; k++)
        sig_free(&g[k]);
}

static void test_nan_inf_stale(void **state)
{
    (void)state;
    rng_for("nan_inf_stale");
    detect_config_t c;
    detect_config_init(&c);
    detect_state_t clean, dirty;
    detect_init(&clean, 0);
    detect_init(&dirty, 0);
    uint64_t stale_bits = UINT64_C(0x7ff0000000000002);
    double stale;
    memcpy(&stale, &stale_bits, 8);
    const double bad[] = {NAN, INFINITY, -INFINITY, stale};
    for (int i = 0; i < 3000; i++) {
        int64_t t = T0 + i * STEP_MS;
        double v = daily(t) + gauss();
        if (i % 7 == 3) { /* a bad sample between two good ones (own timestamp) */
            detect_result_t r;
            double s = detect_update(&dirty, &c, t - STEP_MS / 2, bad[(i / 7) % 4], &r);
            assert_true(s == 0.0);
            assert_true(r.events & DETECT_EV_SKIPPED);
        }
        double a = detect_update(&clean, &c, t, v, NULL), b = detect_update(&dirty, &c, t, v, NULL);
        assert_memory_equal(&a, &b, sizeof a);
        assert_true(isfinite(a));
    }
    uint8_t x[DETECT_STATE_BYTES], y[DETECT_STATE_BYTES];
    detect_state_encode(&clean, x, sizeof x);
    detect_state_encode(&dirty, y, sizeof y);
    assert_memory_equal(x, y, sizeof x);
    /* Repeated and older timestamps are skipped too. */
    detect_result_t r;
    detect_update(&dirty, &c, T0, 5.0, &r);
    assert_true(r.events & DETECT_EV_SKIPPED);
    /* Huge finite values do not make the state non-finite. */
    detect_update(&dirty, &c, T0 + 4000LL * STEP_MS, 1e308, NULL);
    detect_update(&dirty, &c, T0 + 4001LL * STEP_MS, -1e308, NULL);
    double s = detect_update(&dirty, &c, T0 + 4002LL * STEP_MS, 20, NULL);
    assert_true(isfinite(s) && s >= 0 && s < 1);
    assert_int_equal(detect_state_encode(&dirty, y, sizeof y), DETECT_STATE_BYTES);
    assert_int_equal(detect_state_decode(&clean, y, sizeof y), DETECT_STATE_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_size),
        cmocka_unit_test(test_spike),
        cmocka_unit_test(test_level_shift),
        cmocka_unit_test(test_variance_change),
        cmocka_unit_test(test_seasonal_break),
        cmocka_unit_test(test_flatline),
        cmocka_unit_test(test_counter_reset),
        cmocka_unit_test(test_clean_periodic),
        cmocka_unit_test(test_clean_random_walk),
        cmocka_unit_test(test_persist_round_trip),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_nan_inf_stale),
        cmocka_unit_test(test_seasonal_missed_peak),
        cmocka_unit_test(test_score_memory),
        cmocka_unit_test(test_configs_interleaved),
        cmocka_unit_test(test_hour_buckets),
        cmocka_unit_test(test_gap_novelty),
        cmocka_unit_test(test_gap_grid),
        cmocka_unit_test(test_gap_extremes),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
