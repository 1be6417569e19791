/*
 * detect.h — streaming anomaly detection for one series at a time.
 *
 * A detector is a fixed-size, plain-data state (detect_state_t, 256 bytes)
 * updated once per sample in O(1) time without allocating. Each update
 * returns an anomaly score in [0, 1) that means the same thing on every
 * series, so one threshold serves a whole fleet:
 *
 *   score = s / (s + DETECT_HALF)   where s = -log10(p)
 *
 * and p is the estimated probability, under the series' own recent
 * behaviour, of a sample at least this unusual. Score 0.5 is p = 1e-6.
 *
 * The ensemble (docs/anomaly-detection.md has the reasoning):
 *
 *   baseline    two predictors, chosen per series by their running error:
 *               a robust fast level (Huber-clipped EWMA) and a slow level
 *               plus an hour-of-day profile (24 buckets), i.e. daily
 *               seasonality found automatically: the profile is used only
 *               once it predicts better than the plain level.
 *   scale       robust EWMA of |residual| (clipped), floored so that
 *               flat or quantised series do not divide by ~0.
 *   EVT         each statistic's upper tail is modelled as in SPOT/DSPOT
 *               (Siffer et al., KDD 2017): a running high quantile u and a
 *               generalised Pareto fit (method of moments) of the excesses
 *               over u give p for values past u; no hand-set z cut-offs.
 *   statistics  residual up, residual down (spikes, dips, seasonal
 *               breaks), two-sided CUSUM of the standardised residual
 *               (level shifts), log ratio of short/long residual scale
 *               (variance shifts), and a run-length test for flatlines.
 *   novelty     how far the value, or its short EWMA, leaves the range
 *               of everything seen so far (relative to the range's
 *               width): a level the series has never been at.
 *   ensemble    s = max over statistics of -log10(p), less log10 of their
 *               number (Bonferroni); zero during warm-up; a decaying
 *               memory of recent surprise that a new onset must beat by
 *               a margin, so one event (or a daily repeat of it) yields
 *               one alarm.
 *               Sub-alarm residual scores (below DETECT_ALARM) are
 *               shrunk, and the score is the larger of that and the
 *               novelty score (docs/anomaly-detection.md). Novelty has
 *               its own decaying memory: a novelty score that does not
 *               beat it (the range creeping outwards after an excursion)
 *               is reported at a fraction of its value.
 *   gap         a value inside the range but away from every value seen
 *               so far (a level never visited between two known ones):
 *               the distance to the nearest visited bucket of a 32-bucket
 *               grid over the range, in range widths, scored like the
 *               novelty and shrunk like a sub-alarm residual score.
 *   seasonal    while the plain level is the baseline, the hour-of-day
 *               profile still scores: how far x is from the profile's
 *               prediction where the profile and the plain level
 *               disagree (a daily pattern that did not happen), with its
 *               own EVT tail; it reports alarms only, and only onsets
 *               above the surprise memory it shares with the residual
 *               statistics.
 *   memory      last, a decaying memory of the final scores: a sub-alarm
 *               score that does not beat it by a margin is the tail of the
 *               event that set it and is reported at a fraction (alarms
 *               never are).
 *
 * Inputs: NaN, ±Inf and the Prometheus staleness marker are skipped
 * without touching the state (the score returned is 0). Counters
 * (DETECT_F_COUNTER) are scored on their per-second rate, with resets
 * handled as Prometheus' rate() does, and a reset flagged as an event.
 *
 * Determinism: no clock, no RNG; the same samples give bit-identical
 * states and scores. Time enters as the sample timestamp (ms).
 */
#ifndef AUGUR_MODELS_DETECT_H
#define AUGUR_MODELS_DETECT_H

#include <stddef.h>
#include <stdint.h>

#define DETECT_ERRNO_MAP(X)                                                                        \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ESPACE, -2, "buffer too small")                                                              \
    X(EFORMAT, -3, "not a detector state, or an unsupported state version")

typedef enum {
#define DETECT_ERR_ENUM_(name, code, msg) DETECT_##name = code,
    DETECT_ERRNO_MAP(DETECT_ERR_ENUM_)
#undef DETECT_ERR_ENUM_
} detect_err_t;

const char *detect_strerror(int err);

/* Score at which p = 1e-6 (the -log10 p that maps to 0.5). */
#define DETECT_HALF 6.0

/* The score the server and the tests call an alarm (-log10 p = 4). */
#define DETECT_ALARM 0.4

/* State flags (set at init). */
#define DETECT_F_COUNTER 1u /* monotonic counter: detect on its rate */

/* Gap grid sentinels for detect_state_t.gexp. */
#define DETECT_GRID_NONE 127 /* no two distinct values seen yet */
#define DETECT_GRID_OFF 126  /* the range outgrew a float grid: no gap scores */

/* Components, for detect_result_t.comp[] and explanations. */
typedef enum {
    DETECT_C_UP = 0, /* residual above the baseline */
    DETECT_C_DOWN,   /* residual below the baseline */
    DETECT_C_SHIFT,  /* CUSUM: sustained level shift */
    DETECT_C_VAR,    /* variance change */
    DETECT_C_FLAT,   /* flatline (value stopped changing) */
    DETECT_C_NOVEL,  /* novelty: outside the range seen so far (score units) */
    DETECT_NCOMP
} detect_comp_t;

/* Events reported by one update (bit set). */
#define DETECT_EV_WARMUP 1u        /* still warming up: score forced to 0 */
#define DETECT_EV_SKIPPED 2u       /* NaN/Inf/stale/duplicate input: state untouched */
#define DETECT_EV_COUNTER_RESET 4u /* counter went down: reset handled */
#define DETECT_EV_SEASONAL 8u      /* the seasonal baseline is in use */

/* Configuration: one for every series (no per-series tuning). */
typedef struct {
    uint32_t warmup;      /* samples before scores are emitted (default 150; at most 65535,
                             the sample count saturates there) */
    float alpha_fast;     /* fast level EWMA weight (default 0.2) */
    float alpha_slow;     /* slow level / scale weight (default 0.01) */
    float alpha_season;   /* hour-of-day bucket weight (default 0.1) */
    float huber_k;        /* residual clip for updates, in scales (default 3) */
    float spot_q;         /* SPOT initial-threshold quantile (default 0.95) */
    float cusum_k;        /* CUSUM allowance, in scales (default 0.5) */
    float refractory;     /* per-sample decay of the alarm memory (default 0.9999) */
    float onset_margin;   /* a surprise is a new onset above margin x memory (default 1.1) */
    float novelty_k;      /* range excess (in range widths) that scores 0.5 (default 0.1) */
    float sub_alarm;      /* factor on residual scores below DETECT_ALARM (default 0.2) */
    float novelty_decay;  /* per-sample decay of the novelty memory (default 0.9995) */
    float novelty_repeat; /* factor on a novelty score not above that memory (default 0.5) */
    float season_gate;    /* seasonal channel: scores while the profile's error is below
                             gate x the plain level's (default 3); 0 turns it off */
    float score_decay;    /* per-sample decay of the final-score memory (default 0.9) */
    float score_repeat;   /* factor on a sub-alarm score not above margin x that memory
                             (default 0.1); 1 turns it off */
    float score_margin;   /* a sub-alarm score is new above margin x memory (default 2) */
    float gap_weight;     /* factor on the gap novelty score e / (e + novelty_k) of a value
                             inside the range but away from every value seen (default 0.2,
                             the sub_alarm factor); 0 turns it off */
} detect_config_t;

void detect_config_init(detect_config_t *c);

/* One SPOT tail model (12 bytes). The fraction of samples over u is
 * 1 - spot_q by construction of the quantile tracker. */
typedef struct {
    float u;      /* running quantile (initial threshold) */
    float m1, m2; /* running mean and mean square of the excesses over u */
} detect_spot_t;

/* The per-series state: 256 bytes of plain data (copy it, store it). */
typedef struct {
    uint16_t magic;        /* DETECT_MAGIC once initialised */
    uint8_t flags;         /* DETECT_F_*; bit 7: parity of the gap grid's position (internal) */
    int8_t gexp;           /* gap grid: bucket width 2^gexp (DETECT_GRID_NONE: none yet,
                              DETECT_GRID_OFF: the range does not fit a float grid; both
                              with every bit of gmask set) */
    uint16_t n;            /* samples scored (after counter differencing; saturating) */
    uint16_t nmem;         /* memory of recent novelty scores, in units of 1/65535 */
    uint16_t run;          /* consecutive samples equal to the previous one (saturating) */
    uint16_t fmem;         /* memory of recent final scores, in units of 1/65535 */
    uint32_t seen;         /* bits 0-23: hours seen; 24-30: days since all were seen
                              (saturating); bit 31: seasonal baseline used once */
    int64_t t_last;        /* timestamp of the last accepted sample (ms) */
    double v_last;         /* last raw value (counters: last counter value) */
    double lf;             /* fast level */
    double ls;             /* slow level (seasonal baseline = ls + season) */
    float ef, es;          /* running |error| of the fast and seasonal predictors */
    float sshort;          /* short-run |error| of the chosen predictor (variance) */
    float gp, gn;          /* CUSUM sums (standardised) */
    float pchange;         /* running probability that a sample differs from the last */
    float mem;             /* refractory memory of recent surprise */
    float x_last;          /* last scored value (flatline test, counters' rate) */
    float season[24];      /* hour-of-day deviation from the slow level */
    float xs;              /* short EWMA of x (novelty of a sustained level) */
    float hi[2], lo[2];    /* range seen so far of x [0] and of xs [1] */
    detect_spot_t spot[4]; /* tails of UP, DOWN, SHIFT, VAR */
    float su, sm1;         /* seasonal channel's tail: quantile, mean excess (exponential) */
    uint32_t gmask;        /* gap grid: which of its 32 buckets a value has been in
                              (bucket floor(x / 2^gexp) mod 32: the grid's first bucket
                              is bit 0, or bit 16 when flags bit 7 is set) */
} detect_state_t;

/* Magic and layout version in one: 0xDE71 was the first layout (with a
 * day-of-week profile); 0xDE72 added the novelty range; 0xDE73 the
 * novelty memory; 0xDE74 the seasonal channel's tail; 0xDE75 the
 * final-score memory (16 bits, beside a 16-bit run length that used to
 * take 32); 0xDE76 the gap grid (gexp, gmask), with the sample count and
 * the novelty memory in 16 bits each to make room. 0xDE72-0xDE75 states
 * are migrated (sample count saturated, novelty memory rounded to 16 bits,
 * a gap grid that counts the whole range seen so far as visited; before
 * 0xDE75: run length saturated, an empty score memory; the fields added
 * since 0xDE72/0xDE73 were zero padding in those records: no novelty
 * memory yet, a fresh seasonal tail). Decoding refuses any other value, so
 * an older state file starts the detectors fresh. */
#define DETECT_MAGIC 0xDE76u
#define DETECT_MAGIC_V5 0xDE75u
#define DETECT_MAGIC_V4 0xDE74u
#define DETECT_MAGIC_V3 0xDE73u
#define DETECT_MAGIC_V2 0xDE72u

/* The outcome of one update. */
typedef struct {
    double score;             /* in [0, 1) */
    double surprise;          /* -log10 p of the ensemble (before refractory) */
    float comp[DETECT_NCOMP]; /* -log10 p of each component */
    uint32_t events;          /* DETECT_EV_* */
    double x;                 /* the value scored (rate for counters) */
    double expected;          /* the baseline prediction for x */
} detect_result_t;

/* Start a state. flags: DETECT_F_*. */
void detect_init(detect_state_t *st, uint32_t flags);

/* Feed one sample (t in ms, v raw). Returns the score in [0, 1); res, if
 * not NULL, receives the details. O(1), never allocates. Samples older
 * than or equal to the last accepted timestamp are skipped. */
double detect_update(detect_state_t *st, const detect_config_t *cfg, int64_t t_ms, double v,
                     detect_result_t *res);

/* ---- persistence ------------------------------------------------------- */

/* Serialised size of one state (fixed). */
#define DETECT_STATE_BYTES 256

/* Write st into buf (DETECT_STATE_BYTES, little-endian, versioned).
 * Returns bytes written or DETECT_ESPACE. */
int detect_state_encode(const detect_state_t *st, uint8_t *buf, size_t cap);

/* Read a state written by detect_state_encode. Returns bytes consumed, or
 * DETECT_ESPACE (short buffer), DETECT_EFORMAT (bad magic/version or
 * non-finite fields). */
int detect_state_decode(detect_state_t *st, const uint8_t *buf, size_t len);

#endif
