/* detect.c — the streaming detector ensemble (see detect.h and
 * docs/anomaly-detection.md). One update is a few dozen flops, two
 * log/pow calls per tail in use, no branches that depend on history
 * length, and no allocation. */
#include "models/detect.h"

#include <float.h>
#include <math.h>
#include <string.h>

_Static_assert(sizeof(detect_state_t) == 256, "detector state must stay 256 bytes");

const char *detect_strerror(int err)
{
    switch (err) {
#define DETECT_ERR_STR_(name, code, msg)                                                           \
    case code:                                                                                     \
        return msg;
        DETECT_ERRNO_MAP(DETECT_ERR_STR_)
#undef DETECT_ERR_STR_
    }
    return "unknown error";
}

void detect_config_init(detect_config_t *c)
{
    c->warmup = 150;
    c->alpha_fast = 0.2f;
    c->alpha_slow = 0.01f;
    c->alpha_season = 0.1f;
    c->huber_k = 3.0f;
    c->spot_q = 0.95f;
    c->cusum_k = 0.5f;
    c->refractory = 0.9999f;
    c->onset_margin = 1.1f;
    c->novelty_k = 0.4f;
    c->sub_alarm = 0.2f;
    c->novelty_decay = 0.9995f;
    c->novelty_repeat = 0.5f;
    c->season_gate = 3.0f;
    c->score_decay = 0.9f;
    c->score_repeat = 0.1f;
    c->score_margin = 2.0f;
    c->gap_weight = 0.2f;
}

/* Initial SPOT thresholds per statistic (in the statistic's units) and the
 * step of the quantile tracker relative to the typical excess. */
static const float spot_u0[4] = {1.5f, 1.5f, 2.0f, 0.3f};
/* The same for the seasonal channel's tail (an exponential tail: its
 * running mean excess is its only shape parameter). */
#define SEASON_U0 2.0f
#define SEASON_M0 1.0f

void detect_init(detect_state_t *st, uint32_t flags)
{
    memset(st, 0, sizeof *st);
    st->magic = DETECT_MAGIC;
    st->flags = (uint8_t)(flags & DETECT_F_COUNTER);
    st->gexp = DETECT_GRID_NONE;
    st->gmask = 0xffffffffu; /* no grid: nothing is new */
    st->t_last = INT64_MIN;
    st->pchange = 1.0f;
    for (int i = 0; i < 4; i++) {
        st->spot[i].u = spot_u0[i];
        st->spot[i].m1 = 0.5f * spot_u0[i];
        st->spot[i].m2 = 0.5f * spot_u0[i] * spot_u0[i];
    }
    st->su = SEASON_U0;
    st->sm1 = SEASON_M0;
}

/* ---- SPOT -------------------------------------------------------------- */

/* -log10 of the tail probability of x under the model (0 at or below u).
 * base: -log10(1 - q), the surprise at u (qbase()). */
static float spot_surprise(const detect_spot_t *sp, float x, double base)
{
    if (!(x > sp->u)) return 0.0f;
    double y = (double)x - sp->u;
    double mu = sp->m1 > 1e-6f ? sp->m1 : 1e-6;
    double var = (double)sp->m2 - mu * mu;
    if (var < 1e-3 * mu * mu) var = 1e-3 * mu * mu;
    double r = mu * mu / var;
    double g = 0.5 * (1.0 - r); /* GPD shape, method of moments */
    double sigma = 0.5 * mu * (1.0 + r);
    if (g > 0.75) g = 0.75;
    if (g < 0.0) g = 0.0; /* no finite endpoint: rank extremes by size */
    double lp;            /* log10 p */
    if (fabs(g) < 1e-4) {
        lp = -base - y / sigma / 2.302585092994046;
    } else {
        double a = 1.0 + g * y / sigma;
        if (a <= 1e-12) a = 1e-12;
        lp = -base - log10(a) / g;
    }
    double s = -lp;
    return (float)(s > 60.0 ? 60.0 : s);
}

/* -log10(1 - q) for the configured quantile: a log10 that would otherwise
 * be paid on most updates with a tail in play, kept per thread for the
 * last q seen (one configuration in practice; a new q recomputes it). */
static double qbase(float q)
{
    static _Thread_local float q_seen = NAN; /* no q seen yet: never equal */
    static _Thread_local double base_seen;
    if (q != q_seen) {
        base_seen = -log10(1.0 - (double)q);
        q_seen = q;
    }
    return base_seen;
}

/* Learn from x. step: quantile tracker step (statistic units). w: weight
 * of the excess moments. cap: excesses are winsorised at u + cap*m1 so one
 * anomaly does not inflate the tail. */
static void spot_learn(detect_spot_t *sp, float q, float x, float step, float w)
{
    if (x > sp->u) {
        float y = x - sp->u, cap = 8.0f * sp->m1 + 1e-6f;
        if (y > cap) y = cap;
        sp->m1 += w * (y - sp->m1);
        sp->m2 += w * (y * y - sp->m2);
        sp->u += step * q;
    } else {
        sp->u -= step * (1.0f - q);
    }
}

/* ---- helpers ----------------------------------------------------------- */

/* Branch layout: the rare paths (bad input, the first sample, overflowed
 * residuals, confirmed level shifts) out of the straight line. */
#if defined(__GNUC__)
#define RARE(c) __builtin_expect(!!(c), 0)
#else
#define RARE(c) (c)
#endif

static inline float minf_(float a, float b)
{
    return a < b ? a : b;
}

static inline float maxf_(float a, float b)
{
    return a > b ? a : b;
}

static inline float clampf(float x, float lo, float hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

static double score_of(double s)
{
    return s <= 0 ? 0.0 : s / (s + DETECT_HALF);
}

/* ---- gap grid ---------------------------------------------------------- */

/* Which values has the series been at? A grid of GRID_B buckets of width
 * w = 2^gexp over the range, one bit each (gmask). The grid covers
 * [16J w, (16J + 32) w) for an integer J: its position is a multiple of
 * half its span, so it need not be stored. The range [lo[0], hi[0]] always
 * lies inside the grid, so J is floor(lo[0] / 16w) or one less, and the
 * parity of J (a flag bit) says which. gmask holds bucket i of the grid
 * in bit (i + 16J) mod 32, i.e. the bit of floor(x / w) mod 32, so a value
 * inside the range finds its bit without J (the common case). When a
 * value falls outside, the grid doubles (pairs of buckets merge) until it
 * fits: rare, and at most a few steps per doubling of the range. */
#define GRID_B 32
#define GRID_ODD 0x80u /* flags: J is odd */
#define GRID_EMAX 124  /* 32 x 2^124 = 2^129 holds [-FLT_MAX, FLT_MAX] */
#define GRID_EMIN (-126)

/* 2^e for |e| < 1000, exactly, without a libm call. */
static inline double pow2i(int e)
{
    uint64_t u = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* floor(a) for |a| < 2^62. */
static inline int64_t ifloor(double a)
{
    int64_t i = (int64_t)a;
    return i - (a < (double)i);
}

/* The grid's lower edge and width; J from lo[0] and the parity flag. */
static inline double grid_lo(const detect_state_t *st, float lo, double *w)
{
    int e = st->gexp;
    *w = pow2i(e); /* divisions by w below are exact: a power of two */
    int64_t j = ifloor((double)lo * pow2i(-e - 4));
    if ((uint32_t)(j & 1) != ((st->flags & GRID_ODD) != 0)) j--;
    return (double)(j * 16) * *w;
}

/* Swap the halves of a mask: between the grid's order of buckets and the
 * stored one when J is odd. */
static inline uint32_t rot16(uint32_t m)
{
    return m << 16 | m >> 16;
}

/* Store a grid: width 2^e, position j, mask m in the grid's order. */
static inline void grid_store(detect_state_t *st, int e, int64_t j, uint32_t m)
{
    st->gexp = (int8_t)e;
    st->flags = (uint8_t)((st->flags & ~GRID_ODD) | ((j & 1) ? GRID_ODD : 0u));
    st->gmask = (j & 1) ? rot16(m) : m;
}

static inline void grid_off(detect_state_t *st)
{
    st->gexp = DETECT_GRID_OFF;
    st->flags &= (uint8_t)~GRID_ODD;
    st->gmask = 0xffffffffu;
}

/* Merge pairs of buckets: bit k of the result is bit 2k | bit 2k+1. */
static inline uint32_t grid_halve(uint32_t m)
{
    m = (m | m >> 1) & 0x55555555u;
    m = (m | m >> 1) & 0x33333333u;
    m = (m | m >> 2) & 0x0f0f0f0fu;
    m = (m | m >> 4) & 0x00ff00ffu;
    m = (m | m >> 8) & 0x0000ffffu;
    return m;
}

/* Start a grid holding [a, b] (a < b, finite), with the buckets from a's
 * to b's marked (all of them when span, else only those two). */
static void grid_start(detect_state_t *st, double a, double b, int span)
{
    int e;
    frexp((b - a) / GRID_B, &e); /* 2^e > (b - a) / 32 */
    if (e < GRID_EMIN) e = GRID_EMIN;
    for (; e <= GRID_EMAX; e++) {
        double w = pow2i(e);
        int64_t j = ifloor(a * pow2i(-e - 4));
        double lo = (double)(j * 16) * w;
        if (b < lo + GRID_B * w) {
            int ia = (int)((a - lo) / w), ib = (int)((b - lo) / w);
            uint32_t top = ib >= 31 ? 0xffffffffu : (2u << ib) - 1u;
            grid_store(st, e, j, span ? top & ~((1u << ia) - 1u) : (1u << ia) | (1u << ib));
            return;
        }
    }
    grid_off(st);
}

static inline int clz32(uint32_t m)
{
#if defined(__GNUC__)
    return __builtin_clz(m);
#else
    int n = 0;
    while (!(m & 0x80000000u))
        m <<= 1, n++;
    return n;
#endif
}

static inline int ctz32(uint32_t m)
{
#if defined(__GNUC__)
    return __builtin_ctz(m);
#else
    int n = 0;
    while (!(m & 1u))
        m >>= 1, n++;
    return n;
#endif
}

/* Mark x's bucket. Returns how far x is from the nearest bucket a value
 * has been in before (0 if its own), in the units of x. The grid first
 * grows to hold x if it has to. */
static double grid_visit(detect_state_t *st, double x, float lo)
{
    double w, glo = grid_lo(st, lo, &w);
    int e = st->gexp;
    int64_t j = ifloor(glo * pow2i(-e - 4));
    uint32_t m = (j & 1) ? rot16(st->gmask) : st->gmask; /* the grid's order */
    if (RARE(x < glo || x >= glo + GRID_B * w)) {
        while (x < glo || x >= glo + GRID_B * w) {
            if (e >= GRID_EMAX) {
                grid_off(st);
                return 0.0;
            }
            int64_t jn;
            int o;
            if (j & 1) {
                jn = (j - 1) / 2; /* the old buckets land in the middle */
                o = 8;
            } else if (x >= glo) {
                jn = j / 2; /* grow upwards: the old buckets at the bottom */
                o = 0;
            } else {
                jn = j / 2 - 1; /* grow downwards: the old buckets at the top */
                o = 16;
            }
            m = grid_halve(m) << o;
            j = jn;
            e++;
            w *= 2.0;
            glo = (double)(j * 16) * w;
        }
    }
    int i = (int)((x - glo) * pow2i(-e));
    uint32_t bit = 1u << i;
    grid_store(st, e, j, m | bit);
    if (m & bit) return 0.0;
    double d = INFINITY;
    uint32_t below = m & (bit - 1u), above = i < 31 ? m >> (i + 1) : 0u;
    if (below) d = x - (glo + (double)(32 - clz32(below)) * w);
    if (above) d = fmin(d, glo + (double)(i + 1 + ctz32(above)) * w - x);
    return d < INFINITY ? d : 0.0;
}

/* ---- update ------------------------------------------------------------ */

/* Fill the caller's result for an update that returns before scoring. */
static double early(detect_result_t *res, uint32_t events, double x, double expected)
{
    if (res) {
        memset(res, 0, sizeof *res);
        res->events = events;
        res->x = x;
        res->expected = expected;
    }
    return 0.0;
}

double detect_update(detect_state_t *st, const detect_config_t *cfg, int64_t t_ms, double v,
                     detect_result_t *res)
{
    /* The result is written once, at the end: stores through res (or
     * loads through cfg) in between could alias the state's fields and
     * make the compiler reload them. The configuration is read once. */
    if (RARE(!isfinite(v) || t_ms <= st->t_last)) /* NaN, Inf, stale marker, repeat */
        return early(res, DETECT_EV_SKIPPED, 0.0, 0.0);
    uint32_t events = 0;
    double x = v;
    int64_t t_prev = st->t_last; /* INT64_MIN before the first sample */
    if (st->flags & DETECT_F_COUNTER) {
        double prev = st->v_last;
        st->v_last = v;
        st->t_last = t_ms;
        if (t_prev == INT64_MIN) /* first sample: no rate yet */
            return early(res, DETECT_EV_SKIPPED | DETECT_EV_WARMUP, 0.0, 0.0);
        int64_t dt = t_ms - t_prev; /* > 0: checked above; no overflow now */
        double d = v - prev;
        if (d < 0) { /* reset: the counter restarted from 0 */
            d = v;
            events |= DETECT_EV_COUNTER_RESET;
        }
        x = d * 1000.0 / (double)dt;
    } else {
        st->v_last = v;
        st->t_last = t_ms;
    }

    /* Hour of day (UTC): the hour number floor(t_ms / 3.6e6) and its
     * remainder modulo 24, in integer arithmetic (divisions by constants:
     * a multiply and shifts). Exact for every int64 timestamp; the double
     * product used before (t_ms x (1 / 3.6e6)) rounded below the hour at
     * about a third of the exact hours, which put those samples in the
     * previous hour's bucket. */
    int64_t hn = t_ms / 3600000;
    if (t_ms % 3600000 < 0) hn--; /* floor for times before 1970 */
    int h = (int)(hn % 24);
    if (h < 0) h += 24;
    const float k = cfg->huber_k, q = cfg->spot_q, cusum_k = cfg->cusum_k;
    const float alpha_fast = cfg->alpha_fast, alpha_slow = cfg->alpha_slow;
    const float onset_margin = cfg->onset_margin, novelty_k = cfg->novelty_k;
    /* the sample count saturates at 65535 */
    const uint32_t warmup = cfg->warmup < UINT16_MAX ? cfg->warmup : UINT16_MAX;
    const uint32_t n = st->n;

    if (RARE(n == 0)) {
        st->lf = st->ls = x;
        st->x_last = (float)x;
        st->ef = st->es = st->sshort = 0.0f;
        st->season[h] = 0.0f;
        st->xs = st->hi[0] = st->lo[0] = st->hi[1] = st->lo[1] = (float)x;
        st->seen |= 1u << h;
        st->n = 1;
        return early(res, events | DETECT_EV_WARMUP, x, x);
    }

    /* Predictions. */
    uint32_t seen = st->seen;
    int have_s = seen >> h & 1u;
    int full = (seen & 0xffffffu) == 0xffffffu;
    double lf = st->lf, ls = st->ls;
    float ef0 = st->ef, es0 = st->es;
    double pf = lf;
    double ps = ls + st->season[h];
    /* Holt-Winters-style baseline once every hour of the day has been seen,
     * chosen when it predicts better than the plain level. */
    int use_s = have_s && full && n >= warmup && es0 < ef0;
    double pred = use_s ? ps : pf;
    float e = use_s ? es0 : ef0;
    /* Scale floor: relative to the magnitude so flat series do not divide
     * by zero; any change of a long-flat series is still large. */
    float floor_ = (float)(1e-6 * (fabs(lf) + 1e-3) + 0.005 * fabs(ls));
    if (use_s && floor_ < 0.1f * ef0) floor_ = 0.1f * ef0;
    float scale = e > floor_ ? e : floor_;
    double r = x - pred;
    float z = (float)(r / scale);
    if (RARE(!isfinite(z))) z = z > 0 ? 1e6f : -1e6f;
    float zc = clampf(z, -k - 1.0f, k + 1.0f);

    /* Statistics. */
    float gp = st->gp + zc - cusum_k, gn = st->gn - zc - cusum_k;
    gp = gp > 0 ? gp : 0;
    gn = gn > 0 ? gn : 0;
    float g = gp > gn ? gp : gn;
    float ssh = st->sshort + (n < 10 ? 1.0f / (float)(n + 1) : 0.1f) *
                                 (minf_(fabsf((float)r), 6.0f * scale) - st->sshort);
    float vr = (ssh + floor_) / (scale + floor_) - 1.0f; /* variance increase only */
    if (!(vr > 0)) vr = 0;
    float stat[4] = {z > 0 ? z : 0, z < 0 ? -z : 0, g, vr};
    int warm = n < warmup;
    float comp[DETECT_NCOMP] = {0};
    float smax = 0.0f;
    if (!warm) {
        double qb = qbase(q);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            comp[c] = spot_surprise(&st->spot[c], stat[c], qb);
            if (comp[c] > smax) smax = comp[c];
        }
    }
    /* Flatline: a run of identical values where values usually change. */
    int same = (float)x == st->x_last;
    uint32_t run = same ? st->run + (st->run < UINT16_MAX) : 0; /* saturating */
    if (run >= 3 && !warm) {
        float pc = clampf(st->pchange, 0.0f, 0.99f);
        float flat = (float)run * -log10f(1.0f - pc) - 2.0f;
        comp[DETECT_C_FLAT] = flat < 0 ? 0.0f : flat;
        if (comp[DETECT_C_FLAT] > smax) smax = comp[DETECT_C_FLAT];
    }

    /* Seasonal channel. While the plain level is the baseline (it
     * predicts better on the whole), a daily pattern that fails to happen
     * is invisible to it: x stays where the fast level is. The profile
     * still knows what the hour usually looks like, so the channel scores
     * how far x is from the profile's prediction, but only as far as the
     * profile and the fast level disagree (the smaller distance): a spike
     * that both miss is the residual statistics' business. Its own tail
     * (exponential), learnt whenever the profile is complete and not in
     * use. It scores only while the profile is credible: complete for two
     * days (midnights, UTC, counted in bits 24-30 of seen; a profile that
     * has just been completed still holds the first day's values, which
     * are start-up transients in many series) and an error within
     * season_gate times the plain level's. */
    uint32_t sdays = seen >> 24 & 0x7fu;
    if (full && sdays < 127) {
        int64_t day = (hn - h) / 24; /* exact: hn - h is a multiple of 24 */
        if ((double)t_prev < (double)day * 86400000.0) { /* a midnight passed */
            sdays++;
            seen = (seen & ~(0x7fu << 24)) | sdays << 24;
        }
    }
    int s_learn = full && !use_s && n >= 20;
    float sz = 0.0f, ssur = 0.0f;
    if (s_learn) {
        float se = es0 > floor_ ? es0 : floor_;
        sz = minf_(fabsf((float)(x - ps)), fabsf((float)(ps - pf))) / se;
        if (!isfinite(sz)) sz = 1e6f;
        if (sz > st->su && !warm && sdays >= 2 && es0 < cfg->season_gate * ef0) {
            /* exponential tail: p = (1 - q) exp(-(sz - u) / m1) */
            double ex = ((double)sz - st->su) / ((double)st->sm1 + 1e-6);
            ssur = (float)fmin(qbase(q) + ex * 0.4342944819032518, 60.0);
        }
    }

    double s = smax - 0.69897; /* Bonferroni over 5 statistics */
    if (s < 0) s = 0;
    if (use_s) events |= DETECT_EV_SEASONAL;

    /* Refractory memory: a long event reports its onset, then fades. A
     * new onset has to beat the decayed memory by a margin: without it a
     * repeat of the same event (a daily jump the baseline cannot learn)
     * creeps back above the memory as it decays and alarms every day.
     * The first time the seasonal baseline takes over, the surprises of
     * the plain level (a daily pattern it could not predict) stop being
     * the yardstick: the memory starts again. */
    float mem = st->mem;
    if (RARE(use_s && !(seen >> 31))) {
        mem = 0.0f;
        seen |= 1u << 31;
    }
    double out = s;
    if (s <= mem * onset_margin) out = s * 0.02;
    float mem_new = maxf_(mem * cfg->refractory, (float)s);

    /* Novelty: how far x, or its short EWMA (a sustained level), leaves
     * the range of everything seen so far, in widths of that range. A
     * level never seen before is what most labelled incidents look like;
     * the range forgets very slowly (the ends move in by 1e-5 of the
     * width per sample) so that one old outlier does not mask everything
     * for ever. Floats: relative precision is all the ratio needs. */
    float xf = (float)x;
    if (RARE(!isfinite(xf))) xf = x > 0 ? FLT_MAX : -FLT_MAX;
    float xs = st->xs + 0.1f * (xf - st->xs);
    if (RARE(!isfinite(xs))) xs = xf;
    const float lo0 = st->lo[0], hi0 = st->hi[0];
    float nov = 0.0f, v2[2] = {xf, xs};
    for (int j = 0; j < 2; j++) {
        float hi = st->hi[j], lo = st->lo[j];
        float wdt = hi - lo;
        float ex = maxf_(v2[j] - hi, lo - v2[j]);
        if (ex > 0 && wdt > 0 && isfinite(wdt)) nov = maxf_(nov, ex / wdt);
        hi = maxf_(hi, v2[j]);
        lo = minf_(lo, v2[j]);
        float sh = 1e-5f * (hi - lo);
        st->hi[j] = isfinite(sh) ? hi - sh : hi;
        st->lo[j] = isfinite(sh) ? lo + sh : lo;
    }
    st->xs = xs;
    /* nov = 0 (inside the range: most samples) scores 0 without dividing */
    nov = minf_(nov, 1e30f); /* an excess of FLT_MAX over a tiny width: inf, 1 below */
    double nscore =
        nov == 0.0f && novelty_k > 0.0f ? 0.0 : (double)nov / ((double)nov + novelty_k);
    /* Novelty memory: after an excursion to a new level the range keeps
     * creeping outwards for a while (the short EWMA is still climbing, a
     * noisy plateau sets new records); those are repeats of one event
     * unless they beat the decayed memory of the novelty scores. */
    float nmem = (float)st->nmem * (1.0f / 65535.0f); /* nscore < 1: fits 16 bits */
    st->nmem = (uint16_t)(maxf_(nmem * cfg->novelty_decay, (float)nscore) * 65535.0f);
    if (nscore <= nmem) nscore *= cfg->novelty_repeat;
    /* Gap: a value inside the range but away from every value seen so
     * far (a level never visited between two that were), in widths of
     * the range, like the novelty; shrunk like a sub-alarm residual
     * score. The grid's buckets are 1/32 to 1/8 of the range wide, and
     * the distance is to the nearest edge of a visited bucket (never more
     * than the distance to the nearest value seen). It does not enter the
     * novelty memory. */
    if (xf >= lo0 && xf <= hi0) {
        /* Inside the range, so inside the grid: x's bit is floor(x / w)
         * mod 32 (with no grid, every bit is set and w is 2^-127: x / w
         * is small). */
        double xw = (double)xf * pow2i(-st->gexp);
        int64_t kb = RARE(xw < 0) ? ifloor(xw) : (int64_t)xw; /* most series are >= 0 */
        if (RARE(!(st->gmask & 1u << (kb & 31)))) {
            double d = grid_visit(st, xf, lo0);
            if (d > 0 && xf > lo0 && xf < hi0 && cfg->gap_weight > 0.0f) {
                double ge = d / ((double)hi0 - lo0);
                double gscore = cfg->gap_weight * ge / (ge + novelty_k);
                if (gscore > nscore) nscore = gscore; /* a novelty of its own kind */
            }
        }
    } else if (st->gexp <= GRID_EMAX) {
        (void)grid_visit(st, xf, lo0); /* a new extreme: the range's novelty */
    } else if (RARE(st->gexp == DETECT_GRID_NONE)) {
        grid_start(st, fmin(lo0, xf), fmax(hi0, xf), 0); /* the two values seen */
    }

    /* The residual ensemble's scores below the alarm level are shrunk, so
     * that its many small surprises do not outrank a clear novelty; at and
     * above it the calibration is unchanged. */
    double rscore = score_of(out);
    if (rscore < DETECT_ALARM) rscore *= cfg->sub_alarm;
    double final = rscore > nscore ? rscore : nscore;
    /* The seasonal channel reports alarms only, and only onsets above
     * the memory of recent surprise, which it shares with the residual
     * statistics (so it does not repeat their alarms). */
    double s2 = ssur - 0.69897;
    if (s2 > 0 && s2 > mem_new * onset_margin) {
        double sc2 = score_of(s2);
        if (sc2 >= DETECT_ALARM) {
            if (sc2 > final) final = sc2;
            mem_new = (float)s2;
        }
    }
    st->mem = mem_new;
    if (final > 0.999) final = 0.999;
    if (warm) {
        final = 0;
        events |= DETECT_EV_WARMUP;
    }
    /* Score memory: a sub-alarm score that does not beat the decayed
     * memory of the final scores (x 0.9 per sample: an excursion's weight
     * in the short EWMA, whose records make its tail, decays the same way)
     * by a margin (2) is the tail of the event that set it, not a new one:
     * reported at a fraction. Alarms are reported as they are. */
    float fm = (float)st->fmem * (1.0f / 65535.0f); /* final < 1: fits 16 bits */
    st->fmem = (uint16_t)(maxf_(fm * cfg->score_decay, (float)final) * 65535.0f);
    int damp = (final < DETECT_ALARM) & (final <= fm * cfg->score_margin); /* no short circuit: */
    final *= damp ? cfg->score_repeat : 1.0f; /* the outcome depends on the data */

    /* Learn. Tails first (they judged this sample already). */
    float w = 0.02f; /* running mean of the first excesses, then an EWMA */
    if ((float)n * (1.0f - q) < 49.0f) w = maxf_(w, 1.0f / (1.0f + (float)n * (1.0f - q)));
    if (n >= 20) /* the scale must have settled first */
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            float step = 0.05f * (st->spot[c].m1 + 0.05f);
            spot_learn(&st->spot[c], q, minf_(stat[c], 100.0f), step, w);
        }
    if (s_learn) { /* spot_learn() without the second moment */
        float step = 0.05f * (st->sm1 + 0.05f), y = minf_(sz, 100.0f) - st->su;
        if (y > 0) {
            st->sm1 += w * (minf_(y, 8.0f * st->sm1 + 1e-6f) - st->sm1);
            st->su += step * q;
        } else {
            st->su -= step * (1.0f - q);
        }
    }
    /* Level shift confirmed by the CUSUM: move the baselines to the new
     * level instead of crawling there one clipped step at a time. */
    int shifted = g > 8.0f * (1.0f + cusum_k);
    double rf = x - pf, rs = x - ps;
    float ef = ef0 > floor_ ? ef0 : floor_, es = es0 > floor_ ? es0 : floor_;
    if (RARE(shifted)) {
        st->lf = x;
        st->ls = ls + rs; /* the seasonal baseline now predicts x */
        gp = gn = 0;
    } else {
        st->lf = lf + alpha_fast * clampf((float)rf, -k * ef, k * ef);
        double cl = clampf((float)rs, -k * es, k * es);
        st->ls = ls + alpha_fast * cl;
        if (have_s)
            st->season[h] += cfg->alpha_season * (1.0f - alpha_fast) * (float)cl;
        else
            st->season[h] = (float)(x - st->ls);
    }
    st->seen = seen | 1u << h;
    float af = alpha_slow * 2.0f;
    if ((float)n * af < 1.0f) af = maxf_(af, 1.0f / (float)(n + 1)); /* mean at first */
    float kc = n < 30 ? 1e30f : 2.0f * k; /* no clipping before the scale exists */
    st->ef = ef0 + af * (minf_(fabsf((float)rf), kc * ef) - ef0);
    if (have_s)
        st->es = es0 + af * (minf_(fabsf((float)rs), kc * es) - es0);
    else
        st->es = es0 + af * (minf_(fabsf((float)rf), kc * ef) * 1.2f - es0);
    st->sshort = ssh;
    st->gp = gp;
    st->gn = gn;
    st->pchange += alpha_slow * ((same ? 0.0f : 1.0f) - st->pchange);
    st->run = (uint16_t)run;
    st->x_last = (float)x;
    if (n < UINT16_MAX) st->n = (uint16_t)(n + 1);
    if (res) {
        res->score = final;
        res->surprise = s;
        memcpy(res->comp, comp, sizeof comp);
        /* In -log10 p units, for explanations. */
        res->comp[DETECT_C_NOVEL] =
            (float)(nscore < 0.999 ? nscore * DETECT_HALF / (1.0 - nscore) : 6000.0);
        res->events = events;
        res->x = x;
        res->expected = pred;
    }
    return final;
}

/* ---- persistence ------------------------------------------------------- */

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}
static uint8_t *put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}
static uint8_t *putf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return put32(p, u);
}
static uint8_t *putd(uint8_t *p, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    return put64(p, u);
}
static const uint8_t *get32(const uint8_t *p, uint32_t *v)
{
    uint32_t x = 0;
    for (int i = 0; i < 4; i++)
        x |= (uint32_t)p[i] << (8 * i);
    *v = x;
    return p + 4;
}
static const uint8_t *get64(const uint8_t *p, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)p[i] << (8 * i);
    *v = x;
    return p + 8;
}
static const uint8_t *getf(const uint8_t *p, float *f)
{
    uint32_t u;
    p = get32(p, &u);
    memcpy(f, &u, 4);
    return p;
}
static const uint8_t *getd(const uint8_t *p, double *f)
{
    uint64_t u;
    p = get64(p, &u);
    memcpy(f, &u, 8);
    return p;
}

/* The float fields in encoding order (0xDE72-0xDE75 records had the
 * novelty memory, as a float, between the tails and the seasonal tail). */
#define DETECT_NFLOAT (8 + 24 + 5 + 12 + 2)
#define DETECT_NFLOAT_OLD (DETECT_NFLOAT + 1)
static void float_fields(detect_state_t *st, float **f)
{
    size_t i = 0;
    f[i++] = &st->ef;
    f[i++] = &st->es;
    f[i++] = &st->sshort;
    f[i++] = &st->gp;
    f[i++] = &st->gn;
    f[i++] = &st->pchange;
    f[i++] = &st->mem;
    f[i++] = &st->x_last;
    for (int k = 0; k < 24; k++)
        f[i++] = &st->season[k];
    f[i++] = &st->xs;
    for (int k = 0; k < 2; k++) {
        f[i++] = &st->hi[k];
        f[i++] = &st->lo[k];
    }
    for (int k = 0; k < 4; k++) {
        f[i++] = &st->spot[k].u;
        f[i++] = &st->spot[k].m1;
        f[i++] = &st->spot[k].m2;
    }
    f[i++] = &st->su; /* these two: zero in 0xDE72 and 0xDE73 records */
    f[i++] = &st->sm1;
}

/* Layout 0xDE76: magic | flags << 16 | gexp << 24, n | nmem << 16,
 * run | fmem << 16, seen (4 bytes each), t_last, v_last, lf, ls (8 each),
 * the DETECT_NFLOAT floats, gmask: 256 bytes. */
int detect_state_encode(const detect_state_t *st, uint8_t *buf, size_t cap)
{
    if (cap < DETECT_STATE_BYTES) return DETECT_ESPACE;
    uint8_t *p = buf;
    p = put32(p, (uint32_t)DETECT_MAGIC | (uint32_t)st->flags << 16 |
                     (uint32_t)(uint8_t)st->gexp << 24);
    p = put32(p, (uint32_t)st->n | (uint32_t)st->nmem << 16);
    p = put32(p, (uint32_t)st->run | (uint32_t)st->fmem << 16);
    p = put32(p, st->seen);
    p = put64(p, (uint64_t)st->t_last);
    p = putd(p, st->v_last);
    p = putd(p, st->lf);
    p = putd(p, st->ls);
    float *f[DETECT_NFLOAT];
    float_fields((detect_state_t *)st, f);
    for (size_t i = 0; i < DETECT_NFLOAT; i++)
        p = putf(p, *f[i]);
    p = put32(p, st->gmask);
    return (int)(p - buf);
}

_Static_assert(16 + 32 + 4 * DETECT_NFLOAT + 4 == DETECT_STATE_BYTES, "0xDE76 record size");
_Static_assert(16 + 32 + 4 * DETECT_NFLOAT_OLD <= DETECT_STATE_BYTES, "0xDE75 record size");

int detect_state_decode(detect_state_t *st, const uint8_t *buf, size_t len)
{
    if (len < DETECT_STATE_BYTES) return DETECT_ESPACE;
    detect_state_t s;
    memset(&s, 0, sizeof s);
    const uint8_t *p = buf;
    uint32_t mf, n, run;
    uint64_t t;
    p = get32(p, &mf);
    /* 0xDE72-0xDE75 records hold a 32-bit sample count (saturated to 16
     * bits here), the novelty memory as a float after the tails (rounded
     * to 16 bits here) and no gap grid: it starts with every bucket of the
     * range seen so far counted as visited (no gap scores inside that
     * range, which the old detector has already judged). 0xDE72-0xDE74
     * also hold a 32-bit run length (saturated to 16 bits) and no score
     * memory (it starts empty). 0xDE72 and 0xDE73 differ from 0xDE74 only
     * by fields encoded last (the novelty memory, then the seasonal tail),
     * where the older records have zero padding: they read as a state with
     * no novelty memory yet (0xDE72) and a fresh seasonal tail (both). */
    unsigned m = mf & 0xffff;
    int v2 = m == DETECT_MAGIC_V2, v3 = m == DETECT_MAGIC_V3, v4 = m == DETECT_MAGIC_V4;
    int old = v2 || v3 || v4 || m == DETECT_MAGIC_V5;
    if (m != DETECT_MAGIC && !old) return DETECT_EFORMAT;
    s.magic = DETECT_MAGIC;
    if (old) {
        if ((mf >> 16) & ~DETECT_F_COUNTER) return DETECT_EFORMAT;
        s.flags = (uint8_t)(mf >> 16);
    } else {
        s.flags = (uint8_t)(mf >> 16);
        s.gexp = (int8_t)(uint8_t)(mf >> 24);
        if (s.flags & ~(DETECT_F_COUNTER | GRID_ODD)) return DETECT_EFORMAT;
        if (s.gexp < GRID_EMIN ||
            (s.gexp > GRID_EMAX && s.gexp != DETECT_GRID_NONE && s.gexp != DETECT_GRID_OFF))
            return DETECT_EFORMAT;
    }
    p = get32(p, &n);
    if (old) {
        s.n = n > UINT16_MAX ? UINT16_MAX : (uint16_t)n;
    } else {
        s.n = (uint16_t)n;
        s.nmem = (uint16_t)(n >> 16);
    }
    p = get32(p, &run);
    if (v2 || v3 || v4) {
        s.run = run > UINT16_MAX ? UINT16_MAX : (uint16_t)run;
    } else {
        s.run = (uint16_t)run;
        s.fmem = (uint16_t)(run >> 16);
    }
    p = get32(p, &s.seen);
    p = get64(p, &t);
    s.t_last = (int64_t)t;
    p = getd(p, &s.v_last);
    p = getd(p, &s.lf);
    p = getd(p, &s.ls);
    if (!isfinite(s.lf) || !isfinite(s.ls) || (s.n && !isfinite(s.v_last))) return DETECT_EFORMAT;
    float *f[DETECT_NFLOAT_OLD], nmem = 0.0f;
    float_fields(&s, f);
    if (old) { /* the novelty memory before the seasonal tail */
        f[DETECT_NFLOAT] = f[DETECT_NFLOAT - 1];
        f[DETECT_NFLOAT - 1] = f[DETECT_NFLOAT - 2];
        f[DETECT_NFLOAT - 2] = &nmem;
    }
    size_t nf = old ? DETECT_NFLOAT_OLD : DETECT_NFLOAT;
    for (size_t i = 0; i < nf; i++) {
        p = getf(p, f[i]);
        if (!isfinite(*f[i])) return DETECT_EFORMAT;
    }
    if (old) {
        if (v2 && nmem != 0.0f) return DETECT_EFORMAT;
        if (!(nmem >= 0.0f && nmem < 1.0f)) return DETECT_EFORMAT;
        s.nmem = (uint16_t)lrintf(nmem * 65535.0f);
        if (v2 || v3) {
            if (s.su != 0.0f || s.sm1 != 0.0f) return DETECT_EFORMAT;
            s.su = SEASON_U0;
            s.sm1 = SEASON_M0;
        }
        s.gexp = DETECT_GRID_NONE;
        s.gmask = 0xffffffffu;
        if (s.n && s.hi[0] > s.lo[0]) grid_start(&s, s.lo[0], s.hi[0], 1);
    } else {
        p = get32(p, &s.gmask);
        if (s.gexp <= GRID_EMAX) { /* the range must lie in the grid */
            double inv = pow2i(-s.gexp); /* and be at most 2^40 buckets from 0 (ifloor) */
            if (!(fabs(s.lo[0]) * inv < 0x1p40 && fabs(s.hi[0]) * inv < 0x1p40))
                return DETECT_EFORMAT;
            double w, glo = grid_lo(&s, s.lo[0], &w);
            if (!(s.lo[0] >= glo && s.hi[0] < glo + GRID_B * w)) return DETECT_EFORMAT;
        } else if (s.gmask != 0xffffffffu || (s.flags & GRID_ODD)) {
            return DETECT_EFORMAT; /* no grid: every bucket counts as visited */
        }
    }
    *st = s;
    return DETECT_STATE_BYTES;
}
