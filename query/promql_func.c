/*
 * promql_func.c — the PromQL function table and the functions, with
 * Prometheus 2.42's numerics (extrapolated rate, Kahan-summed regression,
 * quantiles by linear interpolation, classic-bucket histogram_quantile).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "query/promql_int.h"

#define S PQ_T_SCALAR
#define V PQ_T_VECTOR
#define M PQ_T_MATRIX
#define STR PQ_T_STRING

static const pq_func_t funcs[] = {
    {"abs", 1, 1, {V}, V, PQ_F_ABS},
    {"absent", 1, 1, {V}, V, PQ_F_ABSENT},
    {"absent_over_time", 1, 1, {M}, V, PQ_F_ABSENT_OVER_TIME},
    {"acos", 1, 1, {V}, V, PQ_F_ACOS},
    {"acosh", 1, 1, {V}, V, PQ_F_ACOSH},
    {"asin", 1, 1, {V}, V, PQ_F_ASIN},
    {"asinh", 1, 1, {V}, V, PQ_F_ASINH},
    {"atan", 1, 1, {V}, V, PQ_F_ATAN},
    {"atanh", 1, 1, {V}, V, PQ_F_ATANH},
    {"avg_over_time", 1, 1, {M}, V, PQ_F_AVG_OVER_TIME},
    {"ceil", 1, 1, {V}, V, PQ_F_CEIL},
    {"changes", 1, 1, {M}, V, PQ_F_CHANGES},
    {"clamp", 3, 3, {V, S, S}, V, PQ_F_CLAMP},
    {"clamp_max", 2, 2, {V, S}, V, PQ_F_CLAMP_MAX},
    {"clamp_min", 2, 2, {V, S}, V, PQ_F_CLAMP_MIN},
    {"cos", 1, 1, {V}, V, PQ_F_COS},
    {"cosh", 1, 1, {V}, V, PQ_F_COSH},
    {"count_over_time", 1, 1, {M}, V, PQ_F_COUNT_OVER_TIME},
    {"day_of_month", 0, 1, {V}, V, PQ_F_DAY_OF_MONTH},
    {"day_of_week", 0, 1, {V}, V, PQ_F_DAY_OF_WEEK},
    {"day_of_year", 0, 1, {V}, V, PQ_F_DAY_OF_YEAR},
    {"days_in_month", 0, 1, {V}, V, PQ_F_DAYS_IN_MONTH},
    {"deg", 1, 1, {V}, V, PQ_F_DEG},
    {"delta", 1, 1, {M}, V, PQ_F_DELTA},
    {"deriv", 1, 1, {M}, V, PQ_F_DERIV},
    {"exp", 1, 1, {V}, V, PQ_F_EXP},
    {"floor", 1, 1, {V}, V, PQ_F_FLOOR},
    {"histogram_quantile", 2, 2, {S, V}, V, PQ_F_HISTOGRAM_QUANTILE},
    {"holt_winters", 3, 3, {M, S, S}, V, PQ_F_HOLT_WINTERS},
    {"hour", 0, 1, {V}, V, PQ_F_HOUR},
    {"idelta", 1, 1, {M}, V, PQ_F_IDELTA},
    {"increase", 1, 1, {M}, V, PQ_F_INCREASE},
    {"irate", 1, 1, {M}, V, PQ_F_IRATE},
    {"label_join", 3, -1, {V, STR, STR, STR}, V, PQ_F_LABEL_JOIN},
    {"label_replace", 5, 5, {V, STR, STR, STR, STR}, V, PQ_F_LABEL_REPLACE},
    {"last_over_time", 1, 1, {M}, V, PQ_F_LAST_OVER_TIME},
    {"ln", 1, 1, {V}, V, PQ_F_LN},
    {"log10", 1, 1, {V}, V, PQ_F_LOG10},
    {"log2", 1, 1, {V}, V, PQ_F_LOG2},
    {"max_over_time", 1, 1, {M}, V, PQ_F_MAX_OVER_TIME},
    {"min_over_time", 1, 1, {M}, V, PQ_F_MIN_OVER_TIME},
    {"minute", 0, 1, {V}, V, PQ_F_MINUTE},
    {"month", 0, 1, {V}, V, PQ_F_MONTH},
    {"pi", 0, 0, {V}, S, PQ_F_PI},
    {"predict_linear", 2, 2, {M, S}, V, PQ_F_PREDICT_LINEAR},
    {"present_over_time", 1, 1, {M}, V, PQ_F_PRESENT_OVER_TIME},
    {"quantile_over_time", 2, 2, {S, M}, V, PQ_F_QUANTILE_OVER_TIME},
    {"rad", 1, 1, {V}, V, PQ_F_RAD},
    {"rate", 1, 1, {M}, V, PQ_F_RATE},
    {"resets", 1, 1, {M}, V, PQ_F_RESETS},
    {"round", 1, 2, {V, S}, V, PQ_F_ROUND},
    {"scalar", 1, 1, {V}, S, PQ_F_SCALAR},
    {"sgn", 1, 1, {V}, V, PQ_F_SGN},
    {"sin", 1, 1, {V}, V, PQ_F_SIN},
    {"sinh", 1, 1, {V}, V, PQ_F_SINH},
    {"sort", 1, 1, {V}, V, PQ_F_SORT},
    {"sort_desc", 1, 1, {V}, V, PQ_F_SORT_DESC},
    {"sqrt", 1, 1, {V}, V, PQ_F_SQRT},
    {"stddev_over_time", 1, 1, {M}, V, PQ_F_STDDEV_OVER_TIME},
    {"stdvar_over_time", 1, 1, {M}, V, PQ_F_STDVAR_OVER_TIME},
    {"sum_over_time", 1, 1, {M}, V, PQ_F_SUM_OVER_TIME},
    {"tan", 1, 1, {V}, V, PQ_F_TAN},
    {"tanh", 1, 1, {V}, V, PQ_F_TANH},
    {"time", 0, 0, {V}, S, PQ_F_TIME},
    {"timestamp", 1, 1, {V}, V, PQ_F_TIMESTAMP},
    {"vector", 1, 1, {S}, V, PQ_F_VECTOR},
    {"year", 0, 1, {V}, V, PQ_F_YEAR},
};

#undef S
#undef V
#undef M
#undef STR

const pq_func_t *pq_func_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
        if (strlen(funcs[i].name) == len && !memcmp(funcs[i].name, name, len)) return &funcs[i];
    return NULL;
}

/* ---- helpers ---------------------------------------------------------------- */

static void kahan_inc(double inc, double *sum, double *c)
{
    double t = *sum + inc;
    if (fabs(*sum) >= fabs(inc)) *c += (*sum - t) + inc;
    else *c += (inc - t) + *sum;
    *sum = t;
}

static double go_max(double a, double b)
{
    if (isinf(a) && a > 0) return a;
    if (isinf(b) && b > 0) return b;
    if (isnan(a) || isnan(b)) return NAN;
    if (a == 0 && a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}

static double go_min(double a, double b)
{
    if (isinf(a) && a < 0) return a;
    if (isinf(b) && b < 0) return b;
    if (isnan(a) || isnan(b)) return NAN;
    if (a == 0 && a == b) return signbit(a) ? a : b;
    return a < b ? a : b;
}

static void linreg(const tsdb_sample_t *s, size_t n, int64_t icept, double *slope, double *intercept)
{
    double sx = 0, cx = 0, sy = 0, cy = 0, sxy = 0, cxy = 0, sx2 = 0, cx2 = 0, fn = 0;
    double inity = s[0].v;
    int consty = 1;
    for (size_t i = 0; i < n; i++) {
        if (consty && i > 0 && s[i].v != inity) consty = 0;
        fn += 1;
        double x = (double)(s[i].t - icept) / 1e3;
        kahan_inc(x, &sx, &cx);
        kahan_inc(s[i].v, &sy, &cy);
        kahan_inc(x * s[i].v, &sxy, &cxy);
        kahan_inc(x * x, &sx2, &cx2);
    }
    if (consty) {
        if (isinf(inity)) {
            *slope = *intercept = NAN;
            return;
        }
        *slope = 0;
        *intercept = inity;
        return;
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    double cov = sxy - sx * sy / fn;
    double var = sx2 - sx * sx / fn;
    *slope = cov / var;
    *intercept = sy / fn - *slope * sx / fn;
}

/* The extrapolation factor of rate/increase/delta (Prometheus 2.42) from
 * the window's distances: to_start, to_end and sampled in seconds, n >= 2
 * samples. */
static inline __attribute__((always_inline)) double extrap_factor(double to_start, double to_end, double sampled,
                                                                  size_t n, int64_t range, int rate)
{
    double avg = sampled / (double)(n - 1);
    double thr = avg * 1.1;
    double interval = sampled;
    interval += to_start < thr ? to_start : avg / 2;
    interval += to_end < thr ? to_end : avg / 2;
    double factor = interval / sampled;
    if (rate) factor /= (double)range / 1000;
    return factor;
}

/* The raw increase of a window: last - first, plus the counter-reset
 * correction when asked. */
static inline __attribute__((always_inline)) double window_delta(const tsdb_sample_t *s, size_t n, int resets)
{
    double result = s[n - 1].v - s[0].v;
    if (resets) {
        double last = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i].v < last) result += last;
            last = s[i].v;
        }
    }
    return result;
}

/* A counter's extrapolation towards the start stops where it would reach
 * zero: the shorter to_start, or to_start itself. */
static inline __attribute__((always_inline)) double zero_clamped_start(const tsdb_sample_t *s, double result,
                                                                       double to_start, double sampled,
                                                                       int counter)
{
    if (counter && result > 0 && s[0].v >= 0) {
        double to_zero = sampled * (s[0].v / result);
        if (to_zero < to_start) return to_zero;
    }
    return to_start;
}

/* rate/increase/delta with Prometheus' extrapolation. Returns 0 if no value. */
static inline __attribute__((always_inline)) int
extrapolated(const tsdb_sample_t *s, size_t n, int64_t rstart, int64_t rend, int64_t range, int resets, int rate,
             double *out, int counter)
{
    if (n < 2) return 0;
    double result = window_delta(s, n, resets);
    double to_start = (double)(s[0].t - rstart) / 1000;
    double to_end = (double)(rend - s[n - 1].t) / 1000;
    double sampled = (double)(s[n - 1].t - s[0].t) / 1000;
    to_start = zero_clamped_start(s, result, to_start, sampled, counter);
    *out = result * extrap_factor(to_start, to_end, sampled, n, range, rate);
    return 1;
}

static const pq_labels_t *absent_labels(pq_ctx_t *c, pq_node_t *arg)
{
    if (arg->kind != PQ_N_VSEL && arg->kind != PQ_N_MSEL) return c->empty;
    pq_label_t l[64];
    size_t k = 0;
    const char *del[64];
    size_t nd = 0;
    for (size_t i = 0; i < arg->u.sel.nm && k < 64 && nd < 64; i++) {
        const pq_matcher_t *m = &arg->u.sel.m[i];
        if (!strcmp(m->name, "__name__")) continue;
        int has = 0;
        for (size_t j = 0; j < k; j++)
            if (!strcmp(l[j].name, m->name)) has = 1;
        if (m->type == TSDB_MATCH_EQ && !has) {
            if (*m->value) {
                l[k].name = m->name;
                l[k].value = m->value;
                k++;
            }
        } else {
            del[nd++] = m->name;
        }
    }
    pq_label_t o[64];
    size_t ko = 0;
    for (size_t j = 0; j < k; j++) {
        int d = 0;
        for (size_t x = 0; x < nd; x++)
            if (!strcmp(del[x], l[j].name)) d = 1;
        if (!d) o[ko++] = l[j];
    }
    /* sort by name */
    for (size_t i = 1; i < ko; i++)
        for (size_t j = i; j > 0 && strcmp(o[j - 1].name, o[j].name) > 0; j--) {
            pq_label_t t = o[j];
            o[j] = o[j - 1];
            o[j - 1] = t;
        }
    return pq_cintern(c, o, ko, 1);
}

static pq_value_t vec_new(pq_ctx_t *c, size_t cap)
{
    pq_value_t r = {.type = PQ_T_VECTOR};
    r.vec.s = pq_talloc(c, (cap ? cap : 1) * sizeof *r.vec.s);
    return r;
}

/* ---- functions over range vectors -------------------------------------------- */

static int over_time(pq_ctx_t *c, int id, const tsdb_sample_t *s, size_t n, double param, double *out)
{
    (void)c;
    switch (id) {
    case PQ_F_COUNT_OVER_TIME: *out = (double)n; return 1;
    case PQ_F_PRESENT_OVER_TIME: *out = 1; return 1;
    case PQ_F_LAST_OVER_TIME: *out = s[n - 1].v; return 1;
    case PQ_F_SUM_OVER_TIME: {
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += s[i].v;
        *out = sum;
        return 1;
    }
    case PQ_F_AVG_OVER_TIME: {
        double mean = 0, cnt = 0;
        for (size_t i = 0; i < n; i++) {
            cnt++;
            if (isinf(mean)) {
                if (isinf(s[i].v) && (mean > 0) == (s[i].v > 0)) continue;
                if (!isinf(s[i].v) && !isnan(s[i].v)) continue;
            }
            mean += s[i].v / cnt - mean / cnt;
        }
        *out = mean;
        return 1;
    }
    case PQ_F_MIN_OVER_TIME: {
        double m = s[0].v;
        for (size_t i = 0; i < n; i++)
            if (s[i].v < m || isnan(m)) m = s[i].v;
        *out = m;
        return 1;
    }
    case PQ_F_MAX_OVER_TIME: {
        double m = s[0].v;
        for (size_t i = 0; i < n; i++)
            if (s[i].v > m || isnan(m)) m = s[i].v;
        *out = m;
        return 1;
    }
    case PQ_F_STDDEV_OVER_TIME:
    case PQ_F_STDVAR_OVER_TIME: {
        /* Welford with Neumaier-compensated mean and sum of squares, as 2.42 */
        double cnt = 0, mean = 0, cmean = 0, aux = 0, caux = 0;
        for (size_t i = 0; i < n; i++) {
            cnt++;
            double delta = s[i].v - (mean + cmean);
            kahan_inc(delta / cnt, &mean, &cmean);
            kahan_inc(delta * (s[i].v - (mean + cmean)), &aux, &caux);
        }
        double var = (aux + caux) / cnt;
        *out = id == PQ_F_STDVAR_OVER_TIME ? var : sqrt(var);
        return 1;
    }
    case PQ_F_QUANTILE_OVER_TIME: {
        double *v = pq_talloc(c, n * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = s[i].v;
        *out = pq_quantile(param, v, n);
        return 1;
    }
    case PQ_F_CHANGES:
    case PQ_F_RESETS: {
        double cnt = 0, prev = s[0].v;
        for (size_t i = 1; i < n; i++) {
            double cur = s[i].v;
            if (id == PQ_F_CHANGES ? (cur != prev && !(isnan(cur) && isnan(prev))) : cur < prev) cnt++;
            prev = cur;
        }
        *out = cnt;
        return 1;
    }
    case PQ_F_IRATE:
    case PQ_F_IDELTA: {
        if (n < 2) return 0;
        const tsdb_sample_t *last = &s[n - 1], *prev = &s[n - 2];
        double r = (id == PQ_F_IRATE && last->v < prev->v) ? last->v : last->v - prev->v;
        int64_t dt = last->t - prev->t;
        if (dt == 0) return 0;
        if (id == PQ_F_IRATE) r /= (double)dt / 1000;
        *out = r;
        return 1;
    }
    case PQ_F_DERIV: {
        if (n < 2) return 0;
        double slope, icept;
        linreg(s, n, s[0].t, &slope, &icept);
        *out = slope;
        return 1;
    }
    default: return 0;
    }
}

int pq_sweepable(int id)
{
    switch (id) {
    case PQ_F_RATE:
    case PQ_F_INCREASE:
    case PQ_F_DELTA:
    case PQ_F_IRATE:
    case PQ_F_IDELTA:
    case PQ_F_DERIV:
    case PQ_F_CHANGES:
    case PQ_F_RESETS:
    case PQ_F_COUNT_OVER_TIME:
    case PQ_F_SUM_OVER_TIME:
    case PQ_F_AVG_OVER_TIME:
    case PQ_F_MIN_OVER_TIME:
    case PQ_F_MAX_OVER_TIME:
    case PQ_F_STDDEV_OVER_TIME:
    case PQ_F_STDVAR_OVER_TIME:
    case PQ_F_LAST_OVER_TIME:
    case PQ_F_PRESENT_OVER_TIME: return 1;
    default: return 0;
    }
}

static int64_t sat_sub64(int64_t a, int64_t b)
{
    if (b > 0 && a < INT64_MIN + b) return INT64_MIN;
    if (b < 0 && a > INT64_MAX + b) return INT64_MAX;
    return a - b;
}

/* `start` is the first step's time minus the selector's offset (the caller
 * made sure nothing overflows). The windows move forward with the steps, so two indexes that only grow
 * replace the per-step binary searches; each window is computed by the same
 * code as eval_matrix_func (same operations in the same order, so the same
 * bits). For rate/increase the counter-reset correction loop is skipped when
 * a sliding count says the window holds no reset. */
void pq_sweep_series(pq_ctx_t *c, int id, const tsdb_sample_t *s, size_t n, int64_t start, int64_t step,
                     size_t nsteps, int64_t range, double *vals, uint8_t *present, size_t stride)
{
    (void)c;
    size_t lo = 0, hi = 0, nres = 0; /* window s[lo, hi); nres: k in (lo, hi) with s[k] < s[k-1] */
    int counter = id == PQ_F_RATE || id == PQ_F_INCREASE;
    int mvalid = 0; /* memo of the last extrapolation factor and its window distances */
    int64_t mks = 0, mke = 0;
    size_t mcnt = 0;
    double mfactor = 0, mstart = 0, msampled = 0;
    for (size_t i = 0; i < nsteps; i++) {
        int64_t ts = start + (int64_t)i * step;
        int64_t maxt = ts, mint = sat_sub64(ts, range);
        while (hi < n && s[hi].t <= maxt) {
            if (counter && hi > lo && s[hi].v < s[hi - 1].v) nres++;
            hi++;
        }
        while (lo < hi && s[lo].t < mint) {
            if (counter && lo + 1 < hi && s[lo + 1].v < s[lo].v) nres--;
            lo++;
        }
        uint8_t *pr = &present[i * stride];
        size_t cnt = hi - lo;
        if (!cnt) {
            *pr = 0;
            continue;
        }
        const tsdb_sample_t *w = s + lo;
        double v;
        int ok;
        switch (id) {
        case PQ_F_RATE:
        case PQ_F_INCREASE:
        case PQ_F_DELTA: {
            /* extrapolated(), with the factor reused while the window's
             * distances (start gap, end gap, count) repeat, as they do for
             * regular scrapes: the same operations on the same inputs, so
             * the same bits, without the chain of divisions per window */
            if (cnt < 2) {
                ok = 0;
                break;
            }
            double result = window_delta(w, cnt, counter && nres > 0);
            int64_t ks = w[0].t - (ts - range), ke = ts - w[cnt - 1].t;
            if (!mvalid || ks != mks || ke != mke || cnt != mcnt) {
                mstart = (double)ks / 1000;
                msampled = (double)(w[cnt - 1].t - w[0].t) / 1000;
                mfactor = extrap_factor(mstart, (double)ke / 1000, msampled, cnt, range, id == PQ_F_RATE);
                mks = ks;
                mke = ke;
                mcnt = cnt;
                mvalid = 1;
            }
            double zs = zero_clamped_start(w, result, mstart, msampled, counter);
            if (zs != mstart) /* the zero clamp applies: a factor of its own */
                v = result * extrap_factor(zs, (double)ke / 1000, msampled, cnt, range, id == PQ_F_RATE);
            else
                v = result * mfactor;
            ok = 1;
            break;
        }
        default: ok = over_time(c, id, w, cnt, 0, &v);
        }
        *pr = (uint8_t)ok;
        if (ok) vals[i * stride] = v;
    }
}

static pq_value_t eval_matrix_func(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    int id = n->u.call.fn->id;
    size_t mi = id == PQ_F_QUANTILE_OVER_TIME ? 1 : 0;
    pq_node_t *marg = n->u.call.args[mi];
    double p1 = 0, p2 = 0;
    if (id == PQ_F_QUANTILE_OVER_TIME) p1 = pq_eval_node(c, n->u.call.args[0], ts).scalar;
    if (id == PQ_F_PREDICT_LINEAR) p1 = pq_eval_node(c, n->u.call.args[1], ts).scalar;
    if (id == PQ_F_HOLT_WINTERS) {
        p1 = pq_eval_node(c, n->u.call.args[1], ts).scalar;
        p2 = pq_eval_node(c, n->u.call.args[2], ts).scalar;
        if (p1 <= 0 || p1 >= 1)
            pq_fail(c, PQ_EEXEC, "invalid smoothing factor. Expected: 0 < sf < 1, got: %f", p1);
        if (p2 <= 0 || p2 >= 1)
            pq_fail(c, PQ_EEXEC, "invalid trend factor. Expected: 0 < tf < 1, got: %f", p2);
    }
    pq_value_t mv = pq_eval_node(c, marg, ts);
    pq_matrix_t m = mv.mat;
    if (id == PQ_F_ABSENT_OVER_TIME) {
        pq_value_t r = vec_new(c, 1);
        if (m.n == 0) r.vec.s[r.vec.n++] = (pq_sample_t){absent_labels(c, marg), 1, ts};
        return r;
    }
    /* range boundaries of the selection, for extrapolation */
    int64_t rend = ts, range = 0;
    pq_node_t *um = marg;
    while (um->kind == PQ_N_PAREN) um = um->u.un.expr;
    if (um->kind == PQ_N_MSEL) {
        rend = pq_sel_eval_time(c, um->u.sel.at, um->u.sel.at_ms, ts) - um->u.sel.offset_ms;
        range = um->u.sel.range_ms;
    } else if (um->kind == PQ_N_SUBQ) {
        rend = pq_sel_eval_time(c, um->u.subq.at, um->u.subq.at_ms, ts) - um->u.subq.offset_ms;
        range = um->u.subq.range_ms;
    }
    pq_value_t r = vec_new(c, m.n);
    for (size_t i = 0; i < m.n; i++) {
        pq_check_deadline(c);
        const tsdb_sample_t *s = m.s[i].s;
        size_t cnt = m.s[i].n;
        if (!cnt) continue;
        double v;
        int ok;
        switch (id) {
        case PQ_F_RATE:
        case PQ_F_INCREASE:
        case PQ_F_DELTA:
            ok = extrapolated(s, cnt, rend - range, rend, range, id != PQ_F_DELTA, id == PQ_F_RATE, &v,
                              id != PQ_F_DELTA);
            break;
        case PQ_F_PREDICT_LINEAR: {
            if (cnt < 2) {
                ok = 0;
                break;
            }
            double slope, icept;
            linreg(s, cnt, ts, &slope, &icept);
            v = slope * p1 + icept;
            ok = 1;
            break;
        }
        case PQ_F_HOLT_WINTERS: {
            if (cnt < 2) {
                ok = 0;
                break;
            }
            double s0 = 0, s1 = s[0].v, b = s[1].v - s[0].v;
            for (size_t j = 1; j < cnt; j++) {
                double x = p1 * s[j].v;
                if (j - 1 != 0) b = p2 * (s1 - s0) + (1 - p2) * b;
                double y = (1 - p1) * (s1 + b);
                s0 = s1;
                s1 = x + y;
            }
            v = s1;
            ok = 1;
            break;
        }
        default: ok = over_time(c, id, s, cnt, p1, &v);
        }
        if (!ok) continue;
        /* 2.42 keeps the metric name for last_over_time only */
        const pq_labels_t *ol = id == PQ_F_LAST_OVER_TIME ? m.s[i].m : pq_drop_name(c, m.s[i].m);
        r.vec.s[r.vec.n++] = (pq_sample_t){ol, v, ts};
    }
    pq_vec_check_dups(c, &r.vec);
    return r;
}

/* ---- label_replace / label_join -------------------------------------------------- */

static void free_code(void *p)
{
    pcre2_code_free(p);
}

static void free_md(void *p)
{
    pcre2_match_data_free(p);
}

static void free_tbuf(void *p)
{
    tbuf_free(p);
    free(p);
}

static int valid_lname(const char *s)
{
    if (!*s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* Go's regexp.Expand: $1, ${1}, $name, ${name}, $$. */
static void expand_template(pq_ctx_t *c, tbuf_t *o, const char *tmpl, const char *src,
                            pcre2_code *re, pcre2_match_data *md)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    uint32_t ng = pcre2_get_ovector_count(md);
    for (const char *p = tmpl; *p;) {
        if (*p != '$') {
            if (tbuf_put(o, p++, 1)) pq_fail(c, PQ_ENOMEM, "out of memory");
            continue;
        }
        const char *q = p + 1;
        if (*q == '$') {
            if (tbuf_put(o, "$", 1)) pq_fail(c, PQ_ENOMEM, "out of memory");
            p += 2;
            continue;
        }
        const char *nb, *ne;
        if (*q == '{') {
            nb = q + 1;
            ne = nb;
            while (*ne && (isalnum((unsigned char)*ne) || *ne == '_')) ne++;
            if (ne == nb || *ne != '}') {
                if (tbuf_put(o, "$", 1)) pq_fail(c, PQ_ENOMEM, "out of memory");
                p++;
                continue;
            }
            p = ne + 1;
        } else {
            nb = q;
            ne = nb;
            while (*ne && (isalnum((unsigned char)*ne) || *ne == '_')) ne++;
            if (ne == nb) {
                if (tbuf_put(o, "$", 1)) pq_fail(c, PQ_ENOMEM, "out of memory");
                p++;
                continue;
            }
            p = ne;
        }
        char name[128];
        size_t nl = (size_t)(ne - nb);
        if (nl >= sizeof name) continue;
        memcpy(name, nb, nl);
        name[nl] = 0;
        long idx = -1;
        if (strspn(name, "0123456789") == nl) {
            idx = nl > 9 ? -1 : strtol(name, NULL, 10);
        } else {
            int r = pcre2_substring_number_from_name(re, (PCRE2_SPTR)name);
            idx = r >= 0 ? r : -1;
        }
        if (idx < 0 || (uint32_t)idx >= ng) continue;
        PCRE2_SIZE b = ov[2 * idx], e = ov[2 * idx + 1];
        if (b == PCRE2_UNSET || e < b) continue;
        if (tbuf_put(o, src + b, e - b)) pq_fail(c, PQ_ENOMEM, "out of memory");
    }
}

static pq_value_t eval_label_replace(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_value_t in = pq_eval_node(c, n->u.call.args[0], ts);
    const char *dst = pq_eval_node(c, n->u.call.args[1], ts).str;
    const char *repl = pq_eval_node(c, n->u.call.args[2], ts).str;
    const char *srcl = pq_eval_node(c, n->u.call.args[3], ts).str;
    const char *regex = pq_eval_node(c, n->u.call.args[4], ts).str;
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)regex, strlen(regex),
                                   PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(err, msg, sizeof msg);
        pq_fail(c, PQ_EEXEC, "invalid regular expression in label_replace(): %s", (const char *)msg);
    }
    pq_defer(c, free_code, re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) pq_fail(c, PQ_ENOMEM, "out of memory");
    pq_defer(c, free_md, md);
    if (!valid_lname(dst)) pq_fail(c, PQ_EEXEC, "invalid destination label name in label_replace(): %s", dst);
    pq_value_t r = vec_new(c, in.vec.n);
    tbuf_t *ob = calloc(1, sizeof *ob);
    if (!ob) pq_fail(c, PQ_ENOMEM, "out of memory");
    pq_defer(c, free_tbuf, ob);
    for (size_t i = 0; i < in.vec.n; i++) {
        const pq_labels_t *m = in.vec.s[i].m;
        const char *sv = pq_labels_get(m, srcl);
        if (!sv) sv = "";
        int rc = pcre2_match(re, (PCRE2_SPTR)sv, strlen(sv), 0, 0, md, NULL);
        if (rc >= 0) {
            ob->len = 0;
            expand_template(c, ob, repl, sv, re, md);
            char *val = pq_arena_strndup(&c->perm, (const char *)ob->p, ob->len);
            if (!val) pq_fail(c, PQ_ENOMEM, "out of memory");
            m = pq_labels_set(c, m, dst, val);
        }
        r.vec.s[r.vec.n++] = (pq_sample_t){m, in.vec.s[i].v, ts};
    }

    pq_vec_check_dups(c, &r.vec);
    return r;
}

static pq_value_t eval_label_join(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    pq_value_t in = pq_eval_node(c, n->u.call.args[0], ts);
    const char *dst = pq_eval_node(c, n->u.call.args[1], ts).str;
    const char *sep = pq_eval_node(c, n->u.call.args[2], ts).str;
    size_t nsrc = n->u.call.nargs - 3;
    const char **src = pq_talloc(c, (nsrc ? nsrc : 1) * sizeof *src);
    for (size_t i = 0; i < nsrc; i++) {
        src[i] = pq_eval_node(c, n->u.call.args[3 + i], ts).str;
        if (!valid_lname(src[i])) pq_fail(c, PQ_EEXEC, "invalid source label name in label_join(): %s", src[i]);
    }
    if (!valid_lname(dst)) pq_fail(c, PQ_EEXEC, "invalid destination label name in label_join(): %s", dst);
    pq_value_t r = vec_new(c, in.vec.n);
    for (size_t i = 0; i < in.vec.n; i++) {
        const pq_labels_t *m = in.vec.s[i].m;
        size_t len = 1;
        for (size_t j = 0; j < nsrc; j++) {
            const char *v = pq_labels_get(m, src[j]);
            len += (v ? strlen(v) : 0) + strlen(sep);
        }
        char *val = pq_arena_alloc(&c->perm, len);
        if (!val) pq_fail(c, PQ_ENOMEM, "out of memory");
        size_t o = 0;
        for (size_t j = 0; j < nsrc; j++) {
            if (j) {
                memcpy(val + o, sep, strlen(sep));
                o += strlen(sep);
            }
            const char *v = pq_labels_get(m, src[j]);
            if (v) {
                memcpy(val + o, v, strlen(v));
                o += strlen(v);
            }
        }
        val[o] = 0;
        m = pq_labels_set(c, m, dst, val);
        r.vec.s[r.vec.n++] = (pq_sample_t){m, in.vec.s[i].v, ts};
    }
    pq_vec_check_dups(c, &r.vec);
    return r;
}

/* ---- histogram_quantile ---------------------------------------------------------------- */

typedef struct {
    double ub, count;
} bucket_t;

static int cmp_bucket(const void *a, const void *b)
{
    double x = ((const bucket_t *)a)->ub, y = ((const bucket_t *)b)->ub;
    return (x > y) - (x < y);
}

static double bucket_quantile(double q, bucket_t *b, size_t n)
{
    if (isnan(q)) return NAN;
    if (q < 0) return -INFINITY;
    if (q > 1) return INFINITY;
    qsort(b, n, sizeof *b, cmp_bucket);
    if (!(isinf(b[n - 1].ub) && b[n - 1].ub > 0)) return NAN;
    /* coalesce equal bounds */
    size_t k = 0;
    bucket_t last = b[0];
    for (size_t i = 1; i < n; i++) {
        if (b[i].ub == last.ub) {
            last.count += b[i].count;
        } else {
            b[k++] = last;
            last = b[i];
        }
    }
    b[k++] = last;
    n = k;
    double mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (b[i].count > mx) mx = b[i].count;
        else if (b[i].count < mx) b[i].count = mx;
    }
    if (n < 2) return NAN;
    double obs = b[n - 1].count;
    if (obs == 0) return NAN;
    double rank = q * obs;
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid].count >= rank) hi = mid;
        else lo = mid + 1;
    }
    size_t i = lo;
    if (i == n - 1) return b[n - 2].ub;
    if (i == 0 && b[0].ub <= 0) return b[0].ub;
    double start = 0, end = b[i].ub, count = b[i].count;
    if (i > 0) {
        start = b[i - 1].ub;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    return start + (end - start) * (rank / count);
}

static int parse_go_float(const char *s, double *out)
{
    if (!*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end) return -1;
    /* strtod accepts hex floats and "infinity" like Go; reject leading space */
    if (isspace((unsigned char)*s)) return -1;
    *out = v;
    return 0;
}

static pq_value_t eval_histogram_quantile(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    double q = pq_eval_node(c, n->u.call.args[0], ts).scalar;
    pq_value_t in = pq_eval_node(c, n->u.call.args[1], ts);
    size_t nv = in.vec.n;
    const pq_labels_t **keys = pq_talloc(c, (nv ? nv : 1) * sizeof *keys);
    bucket_t **bk = pq_talloc(c, (nv ? nv : 1) * sizeof *bk);
    size_t *nb = pq_talloc(c, (nv ? nv : 1) * sizeof *nb);
    size_t ng = 0;
    bucket_t *all = pq_talloc(c, (nv ? nv : 1) * sizeof *all);
    size_t *grp = pq_talloc(c, (nv ? nv : 1) * sizeof *grp);
    for (size_t i = 0; i < nv; i++) {
        const pq_labels_t *m = in.vec.s[i].m;
        const char *le = pq_labels_get(m, "le");
        double ub;
        if (!le || parse_go_float(le, &ub)) {
            grp[i] = SIZE_MAX;
            continue;
        }
        const pq_labels_t *key = pq_labels_set(c, pq_drop_name(c, m), "le", "");
        size_t g;
        for (g = 0; g < ng; g++)
            if (keys[g] == key) break;
        if (g == ng) {
            keys[ng] = key;
            nb[ng] = 0;
            ng++;
        }
        grp[i] = g;
        all[i] = (bucket_t){ub, in.vec.s[i].v};
        nb[g]++;
    }
    for (size_t g = 0; g < ng; g++) {
        bk[g] = pq_talloc(c, nb[g] * sizeof *bk[g]);
        nb[g] = 0;
    }
    for (size_t i = 0; i < nv; i++)
        if (grp[i] != SIZE_MAX) bk[grp[i]][nb[grp[i]]++] = all[i];
    pq_value_t r = vec_new(c, ng);
    for (size_t g = 0; g < ng; g++)
        r.vec.s[r.vec.n++] = (pq_sample_t){keys[g], bucket_quantile(q, bk[g], nb[g]), ts};
    return r;
}

/* ---- sort ---------------------------------------------------------------------------------- */

static int cmp_sort_asc(const void *a, const void *b)
{
    double x = ((const pq_sample_t *)a)->v, y = ((const pq_sample_t *)b)->v;
    if (isnan(x)) return isnan(y) ? 0 : 1;
    if (isnan(y)) return -1;
    return (x > y) - (x < y);
}

static int cmp_sort_desc(const void *a, const void *b)
{
    double x = ((const pq_sample_t *)a)->v, y = ((const pq_sample_t *)b)->v;
    if (isnan(x)) return isnan(y) ? 0 : 1;
    if (isnan(y)) return -1;
    return (x < y) - (x > y);
}

/* ---- date functions ----------------------------------------------------------------------- */

static double date_part(int id, double v)
{
    if (isnan(v) || isinf(v) || v > 9.2e15 || v < -9.2e15) return NAN;
    time_t t = (time_t)(int64_t)v;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return NAN;
    switch (id) {
    case PQ_F_DAY_OF_MONTH: return tm.tm_mday;
    case PQ_F_DAY_OF_WEEK: return tm.tm_wday;
    case PQ_F_DAY_OF_YEAR: return tm.tm_yday + 1;
    case PQ_F_HOUR: return tm.tm_hour;
    case PQ_F_MINUTE: return tm.tm_min;
    case PQ_F_MONTH: return tm.tm_mon + 1;
    case PQ_F_YEAR: return tm.tm_year + 1900;
    case PQ_F_DAYS_IN_MONTH: {
        static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int y = tm.tm_year + 1900;
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        return dm[tm.tm_mon] + (tm.tm_mon == 1 && leap);
    }
    default: return NAN;
    }
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static double simple(int id, double v)
{
    switch (id) {
    case PQ_F_ABS: return fabs(v);
    case PQ_F_CEIL: return ceil(v);
    case PQ_F_FLOOR: return floor(v);
    case PQ_F_EXP: return exp(v);
    case PQ_F_SQRT: return sqrt(v);
    case PQ_F_LN: return log(v);
    case PQ_F_LOG2: return log2(v);
    case PQ_F_LOG10: return log10(v);
    case PQ_F_SGN: return v > 0 ? 1 : v < 0 ? -1 : v;
    case PQ_F_ACOS: return acos(v);
    case PQ_F_ACOSH: return acosh(v);
    case PQ_F_ASIN: return asin(v);
    case PQ_F_ASINH: return asinh(v);
    case PQ_F_ATAN: return atan(v);
    case PQ_F_ATANH: return atanh(v);
    case PQ_F_COS: return cos(v);
    case PQ_F_COSH: return cosh(v);
    case PQ_F_SIN: return sin(v);
    case PQ_F_SINH: return sinh(v);
    case PQ_F_TAN: return tan(v);
    case PQ_F_TANH: return tanh(v);
    case PQ_F_DEG: return v * 180 / M_PI;
    case PQ_F_RAD: return v * M_PI / 180;
    default: return NAN;
    }
}

pq_value_t pq_eval_call(pq_ctx_t *c, pq_node_t *n, int64_t ts)
{
    if (n->u.call.sweep) return pq_sweep_vector(c, n, ts, NULL);
    int id = n->u.call.fn->id;
    pq_node_t **a = n->u.call.args;
    pq_value_t r = {.type = PQ_T_NONE};
    switch (id) {
    case PQ_F_TIME:
        r.type = PQ_T_SCALAR;
        r.scalar = (double)ts / 1000;
        return r;
    case PQ_F_PI:
        r.type = PQ_T_SCALAR;
        r.scalar = M_PI;
        return r;
    case PQ_F_VECTOR:
        r = vec_new(c, 1);
        r.vec.s[r.vec.n++] = (pq_sample_t){c->empty, pq_eval_node(c, a[0], ts).scalar, ts};
        return r;
    case PQ_F_SCALAR: {
        pq_value_t v = pq_eval_node(c, a[0], ts);
        r.type = PQ_T_SCALAR;
        r.scalar = v.vec.n == 1 ? v.vec.s[0].v : NAN;
        return r;
    }
    case PQ_F_ABSENT: {
        pq_value_t v = pq_eval_node(c, a[0], ts);
        r = vec_new(c, 1);
        if (v.vec.n == 0) r.vec.s[r.vec.n++] = (pq_sample_t){absent_labels(c, a[0]), 1, ts};
        return r;
    }
    case PQ_F_LABEL_REPLACE: return eval_label_replace(c, n, ts);
    case PQ_F_LABEL_JOIN: return eval_label_join(c, n, ts);
    case PQ_F_HISTOGRAM_QUANTILE: return eval_histogram_quantile(c, n, ts);
    case PQ_F_SORT:
    case PQ_F_SORT_DESC: {
        pq_value_t v = pq_eval_node(c, a[0], ts);
        r = vec_new(c, v.vec.n);
        for (size_t i = 0; i < v.vec.n; i++) r.vec.s[r.vec.n++] = (pq_sample_t){v.vec.s[i].m, v.vec.s[i].v, ts};
        if (r.vec.n > 1) qsort(r.vec.s, r.vec.n, sizeof *r.vec.s, id == PQ_F_SORT ? cmp_sort_asc : cmp_sort_desc);
        return r;
    }
    case PQ_F_TIMESTAMP: {
        pq_node_t *arg = a[0];
        while (arg->kind == PQ_N_PAREN) arg = arg->u.un.expr;
        int raw = arg->kind == PQ_N_VSEL;
        pq_value_t v = pq_eval_node(c, a[0], ts);
        r = vec_new(c, v.vec.n);
        for (size_t i = 0; i < v.vec.n; i++)
            r.vec.s[r.vec.n++] = (pq_sample_t){pq_drop_name(c, v.vec.s[i].m),
                                               (double)(raw ? v.vec.s[i].t : ts) / 1000, ts};
        pq_vec_check_dups(c, &r.vec);
        return r;
    }
    case PQ_F_DAY_OF_MONTH:
    case PQ_F_DAY_OF_WEEK:
    case PQ_F_DAY_OF_YEAR:
    case PQ_F_DAYS_IN_MONTH:
    case PQ_F_HOUR:
    case PQ_F_MINUTE:
    case PQ_F_MONTH:
    case PQ_F_YEAR: {
        if (n->u.call.nargs == 0) {
            r = vec_new(c, 1);
            r.vec.s[r.vec.n++] = (pq_sample_t){c->empty, date_part(id, (double)ts / 1000), ts};
            return r;
        }
        pq_value_t v = pq_eval_node(c, a[0], ts);
        r = vec_new(c, v.vec.n);
        for (size_t i = 0; i < v.vec.n; i++)
            r.vec.s[r.vec.n++] = (pq_sample_t){pq_drop_name(c, v.vec.s[i].m), date_part(id, v.vec.s[i].v), ts};
        pq_vec_check_dups(c, &r.vec);
        return r;
    }
    case PQ_F_ROUND:
    case PQ_F_CLAMP:
    case PQ_F_CLAMP_MAX:
    case PQ_F_CLAMP_MIN: {
        pq_value_t v = pq_eval_node(c, a[0], ts);
        double p1 = n->u.call.nargs > 1 ? pq_eval_node(c, a[1], ts).scalar : 1;
        double p2 = n->u.call.nargs > 2 ? pq_eval_node(c, a[2], ts).scalar : 0;
        r = vec_new(c, v.vec.n);
        if (id == PQ_F_CLAMP && p2 < p1) return r;
        for (size_t i = 0; i < v.vec.n; i++) {
            double x = v.vec.s[i].v, o;
            if (id == PQ_F_ROUND) {
                double inv = 1.0 / p1;
                o = floor(x * inv + 0.5) / inv;
            } else if (id == PQ_F_CLAMP) {
                o = go_max(p1, go_min(p2, x));
            } else if (id == PQ_F_CLAMP_MAX) {
                o = go_min(p1, x);
            } else {
                o = go_max(p1, x);
            }
            r.vec.s[r.vec.n++] = (pq_sample_t){pq_drop_name(c, v.vec.s[i].m), o, ts};
        }
        pq_vec_check_dups(c, &r.vec);
        return r;
    }
    default: break;
    }
    if (n->u.call.fn->arg_types[0] == PQ_T_MATRIX || id == PQ_F_QUANTILE_OVER_TIME)
        return eval_matrix_func(c, n, ts);
    /* simple element-wise functions */
    pq_value_t v = pq_eval_node(c, a[0], ts);
    r = vec_new(c, v.vec.n);
    for (size_t i = 0; i < v.vec.n; i++)
        r.vec.s[r.vec.n++] = (pq_sample_t){pq_drop_name(c, v.vec.s[i].m), simple(id, v.vec.s[i].v), ts};
    pq_vec_check_dups(c, &r.vec);
    return r;
}
