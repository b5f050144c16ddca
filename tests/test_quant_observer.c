/* test_quant_observer.c: range observers, integer ranges, scales and zero points, calibration
 * (percentile, MSE) and the bit configuration (short spec, file, precedence, text round trip).
 *
 * Observer and parameter values are small hand-computed cases (the arithmetic is in the
 * comments; momenta and ranges are chosen so the float results are exact). Calibration uses
 * seeded lb_rng data. File fixtures are written into a mkdtemp folder that the unchecked
 * teardown removes, so a failing test leaves nothing behind. main() is in test_quant.c.
 */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/rng.h"
#include "quant/observer.h"
#include "quant/qconfig.h"
#include "tests/suites.h"

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* A plain (d0, d1) tensor over caller storage: observers need no graph. */
static lb_tensor tens2(float *data, int64_t d0, int64_t d1)
{
    lb_tensor t;
    memset(&t, 0, sizeof t);
    t.data     = data;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.n_dims   = 2;
    return t;
}

/* ---------------------------------------------------------------- observers */

START_TEST(test_obs_minmax)
{
    float       mn = 0, mx = 0, count = 0;
    lb_observer ob = { .kind = LB_OBS_MINMAX, .n = 1, .min = &mn, .max = &mx, .count = &count };
    float       a[4] = { 1, 2, 3, 4 }, b[4] = { -1, 5, 0, 0 }, c[4] = { 2, 2, 2, 2 };
    lb_tensor   x = tens2(a, 2, 2);
    lb_observer_update(&ob, &x);
    /* the first update sets the range: the zero-initialised state is not folded in */
    ck_assert_float_eq(mn, 1.0f);
    ck_assert_float_eq(mx, 4.0f);
    x.data = b;
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, -1.0f);
    ck_assert_float_eq(mx, 5.0f);
    x.data = c; /* a narrower batch never shrinks a min/max range */
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, -1.0f);
    ck_assert_float_eq(mx, 5.0f);
    ck_assert_float_eq(count, 3.0f);
    ck_assert(!lb_observer_frozen(&ob)); /* freeze_after 0: never */
}
END_TEST

START_TEST(test_obs_ema)
{
    float       mn = 0, mx = 0, count = 0;
    lb_observer ob = { .kind = LB_OBS_EMA, .momentum = 0.25f, .n = 1, .min = &mn, .max = &mx,
                       .count = &count };
    float       a[2] = { 1, 3 }, b[2] = { -1, 5 }, c[2] = { 2, 2 };
    lb_tensor   x = tens2(a, 1, 2);
    lb_observer_update(&ob, &x); /* sets [1, 3] */
    ck_assert_float_eq(mn, 1.0f);
    ck_assert_float_eq(mx, 3.0f);
    x.data = b;
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, 0.5f); /* 0.75 * 1 + 0.25 * -1 */
    ck_assert_float_eq(mx, 3.5f); /* 0.75 * 3 + 0.25 * 5  */
    x.data = c;
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, 0.875f); /* 0.75 * 0.5 + 0.25 * 2 */
    ck_assert_float_eq(mx, 3.125f); /* 0.75 * 3.5 + 0.25 * 2 */
    ck_assert_float_eq(count, 3.0f);
}
END_TEST

START_TEST(test_obs_per_channel)
{
    float       mn[3] = { 0 }, mx[3] = { 0 }, count = 0;
    float       a[6] = { 1, 2, -1, -5, 0, 7 }, b[6] = { 0, 1, -2, -2, 3, 3 };
    lb_observer ob = { .kind = LB_OBS_MINMAX, .n = 3, .min = mn, .max = mx, .count = &count };
    lb_tensor   x = tens2(a, 3, 2); /* rows are channels */
    lb_observer_update(&ob, &x);
    x.data = b;
    lb_observer_update(&ob, &x);
    const float want_min[3] = { 0, -5, 0 }, want_max[3] = { 2, -1, 7 };
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(mn[c], want_min[c]);
        ck_assert_float_eq(mx[c], want_max[c]);
    }
    /* EMA, momentum 0.5, on a (2, 2, 2) tensor: channel 0 = {1,2,3,4}, channel 1 = {-4..-1} */
    float e[8] = { 1, 2, 3, 4, -4, -3, -2, -1 }, f[8] = { 0, 0, 0, 0, 1, 1, 1, 1 };
    float emn[2], emx[2], ecount = 0;
    lb_observer eo = { .kind = LB_OBS_EMA, .momentum = 0.5f, .n = 2, .min = emn, .max = emx,
                       .count = &ecount };
    lb_tensor   y = tens2(e, 2, 2);
    y.shape[2] = 2;
    y.n_dims   = 3;
    lb_observer_update(&eo, &y);
    ck_assert_float_eq(emn[0], 1.0f);
    ck_assert_float_eq(emx[1], -1.0f);
    y.data = f;
    lb_observer_update(&eo, &y);
    ck_assert_float_eq(emn[0], 0.5f);  /* (1 + 0) / 2 */
    ck_assert_float_eq(emx[0], 2.0f);  /* (4 + 0) / 2 */
    ck_assert_float_eq(emn[1], -1.5f); /* (-4 + 1) / 2 */
    ck_assert_float_eq(emx[1], 0.0f);  /* (-1 + 1) / 2 */
}
END_TEST

START_TEST(test_obs_freeze)
{
    float       mn = 0, mx = 0, count = 0;
    lb_observer ob = { .kind = LB_OBS_MINMAX, .freeze_after = 2, .n = 1, .min = &mn, .max = &mx,
                       .count = &count };
    float       v[3] = { 1, 2, 5 };
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(lb_observer_frozen(&ob), i >= 2);
        lb_tensor x = tens2(&v[i], 1, 1);
        lb_observer_update(&ob, &x);
    }
    ck_assert(lb_observer_frozen(&ob));
    ck_assert_float_eq(count, 2.0f); /* the third update was ignored */
    ck_assert_float_eq(mx, 2.0f);
    /* without a counter an observer never freezes */
    ob.count = NULL;
    ck_assert(!lb_observer_frozen(&ob));
    lb_tensor x = tens2(&v[2], 1, 1);
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mx, 5.0f);
}
END_TEST

START_TEST(test_obs_nonfinite)
{
    float       mn = 0, mx = 0, count = 0;
    lb_observer ob = { .kind = LB_OBS_EMA, .momentum = 0.5f, .n = 1, .min = &mn, .max = &mx,
                       .count = &count };
    float       a[6] = { NAN, 1, -INFINITY, 2, INFINITY, NAN };
    lb_tensor   x = tens2(a, 2, 3);
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, 1.0f);
    ck_assert_float_eq(mx, 2.0f);
    /* a batch without finite values changes nothing, count included */
    float nan4[4] = { NAN, NAN, NAN, NAN };
    x = tens2(nan4, 2, 2);
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, 1.0f);
    ck_assert_float_eq(mx, 2.0f);
    ck_assert_float_eq(count, 1.0f);
    /* per channel: the all-NaN channel keeps its state, the other one moves */
    float pmn[2] = { -1, -2 }, pmx[2] = { 1, 2 }, pcount = 1;
    lb_observer po = { .kind = LB_OBS_MINMAX, .n = 2, .min = pmn, .max = pmx, .count = &pcount };
    float b[4] = { NAN, NAN, 5, NAN };
    x = tens2(b, 2, 2);
    lb_observer_update(&po, &x);
    ck_assert_float_eq(pmn[0], -1.0f);
    ck_assert_float_eq(pmx[0], 1.0f);
    ck_assert_float_eq(pmx[1], 5.0f);
    ck_assert_float_eq(pcount, 2.0f);
    /* an empty tensor changes nothing either */
    x = tens2(b, 2, 0);
    lb_observer_update(&po, &x);
    ck_assert_float_eq(pcount, 2.0f);
}
END_TEST

/* Without count, an empty state (min > max) marks the first update. */
START_TEST(test_obs_no_count)
{
    float       mn = INFINITY, mx = -INFINITY;
    lb_observer ob = { .kind = LB_OBS_EMA, .momentum = 0.5f, .n = 1, .min = &mn, .max = &mx };
    float       a[2] = { 1, 3 }, b[2] = { -1, 5 };
    lb_tensor   x = tens2(a, 1, 2);
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, 1.0f);
    ck_assert_float_eq(mx, 3.0f);
    x.data = b;
    lb_observer_update(&ob, &x);
    ck_assert_float_eq(mn, 0.0f);
    ck_assert_float_eq(mx, 4.0f);
}
END_TEST

/* ---------------------------------------------------------------- ranges and parameters */

static const struct {
    int        bits;
    lb_qscheme scheme;
    int32_t    qmin, qmax;
} qranges[] = {
    { 8, LB_QSCHEME_SYMMETRIC, -128, 127 }, { 4, LB_QSCHEME_SYMMETRIC, -8, 7 },
    { 2, LB_QSCHEME_SYMMETRIC, -2, 1 },     { 1, LB_QSCHEME_SYMMETRIC, -1, 0 },
    { 8, LB_QSCHEME_ASYMMETRIC, 0, 255 },   { 3, LB_QSCHEME_ASYMMETRIC, 0, 7 },
    { 4, LB_QSCHEME_UNSIGNED, 0, 15 },      { 1, LB_QSCHEME_ASYMMETRIC, 0, 1 },
    { 1, LB_QSCHEME_UNSIGNED, 0, 1 },
};

START_TEST(test_qrange)
{
    int32_t lo = 99, hi = 99;
    lb_qrange(qranges[_i].bits, qranges[_i].scheme, &lo, &hi);
    ck_assert_int_eq(lo, qranges[_i].qmin);
    ck_assert_int_eq(hi, qranges[_i].qmax);
}
END_TEST

typedef struct {
    const char *what;
    int         bits;
    lb_qscheme  scheme;
    float       min, max, scale, zp;
} qparam_row;

static const qparam_row qparam_rows[] = {
    { "sym 4b", 4, LB_QSCHEME_SYMMETRIC, -2, 1, 2.0f / 7, 0 },
    { "sym 8b", 8, LB_QSCHEME_SYMMETRIC, -0.5f, 1, 1.0f / 127, 0 },
    { "sym 1b", 1, LB_QSCHEME_SYMMETRIC, -0.5f, 0.25f, 0.5f, 0 }, /* divides by 1 */
    { "sym zero width", 4, LB_QSCHEME_SYMMETRIC, 0, 0, 1e-8f, 0 },
    { "sym NaN bound", 4, LB_QSCHEME_SYMMETRIC, NAN, 2, 2.0f / 7, 0 },
    { "uns 2b", 2, LB_QSCHEME_UNSIGNED, -4, 3, 1, 0 }, /* min ignored: 3 / 3 */
    { "uns all negative", 4, LB_QSCHEME_UNSIGNED, -4, -1, 1e-8f, 0 },
    { "asym 8b", 8, LB_QSCHEME_ASYMMETRIC, -1, 3, 4.0f / 255, 64 }, /* round(63.75) */
    { "asym tie up", 2, LB_QSCHEME_ASYMMETRIC, -1.5f, 1.5f, 1, 2 },   /* round(1.5) = 2, even */
    { "asym tie down", 2, LB_QSCHEME_ASYMMETRIC, -0.5f, 2.5f, 1, 0 }, /* round(0.5) = 0, even */
    { "asym all positive", 4, LB_QSCHEME_ASYMMETRIC, 2, 5, 1.0f / 3, 0 }, /* [0, 5] / 15 */
    { "asym all negative", 2, LB_QSCHEME_ASYMMETRIC, -6, -3, 2, 3 },      /* [-6, 0] / 3 */
    { "asym zero width", 4, LB_QSCHEME_ASYMMETRIC, 0, 0, 1e-8f, 0 },
    { "asym NaN", 4, LB_QSCHEME_ASYMMETRIC, NAN, NAN, 1e-8f, 0 },
};

START_TEST(test_qparams_from_range)
{
    const qparam_row *r = &qparam_rows[_i];
    float s = -1, z = -1;
    lb_qparams_from_range(&r->min, &r->max, 1, r->bits, r->scheme, &s, &z);
    ck_assert_msg(fabsf(s - r->scale) <= 1e-6f * r->scale, "%s: scale %.9g, want %.9g", r->what,
                  s, r->scale);
    ck_assert_msg(z == r->zp, "%s: zero point %g, want %g", r->what, z, r->zp);
    ck_assert(s > 0 && isfinite(s));
    /* 0 maps to an integer level exactly: z is an integer inside the range */
    int32_t qmin, qmax;
    lb_qrange(r->bits, r->scheme, &qmin, &qmax);
    ck_assert(z == nearbyintf(z) && z >= (float)qmin && z <= (float)qmax);
    /* the zero point is optional */
    float s2 = -1;
    lb_qparams_from_range(&r->min, &r->max, 1, r->bits, r->scheme, &s2, NULL);
    ck_assert_float_eq(s2, s);
}
END_TEST

START_TEST(test_qparams_many)
{
    /* n entries at once, and infinite bounds give a finite scale */
    const float mn[3] = { -1, -INFINITY, 0 }, mx[3] = { 1, INFINITY, 3 };
    float       s[3], z[3];
    lb_qparams_from_range(mn, mx, 3, 8, LB_QSCHEME_ASYMMETRIC, s, z);
    ck_assert_float_eq_tol(s[0], 2.0f / 255, 1e-9f);
    ck_assert_float_eq(z[0], 127.0f); /* 1 / float(2/255) = 127.49999, as in PyTorch (float32) */
    ck_assert(isfinite(s[1]) && s[1] > 0);
    ck_assert(z[1] == 127.0f || z[1] == 128.0f);
    ck_assert_float_eq_tol(s[2], 3.0f / 255, 1e-9f);
    ck_assert_float_eq(z[2], 0.0f);
    lb_qparams_from_range(mn, mx, 3, 4, LB_QSCHEME_SYMMETRIC, s, z);
    ck_assert(isfinite(s[1]) && s[1] > 0);
    ck_assert_float_eq_tol(s[2], 3.0f / 7, 1e-7f);
}
END_TEST

/* ---------------------------------------------------------------- calibration */

START_TEST(test_percentile_exact)
{
    const float x[6] = { -5, 1, NAN, 2, -3, 4 }; /* |x| sorted: 1 2 3 4 5 */
    ck_assert_float_eq(lb_calib_percentile(x, 6, 100), 5.0f);
    ck_assert_float_eq(lb_calib_percentile(x, 6, 50), 3.0f);
    ck_assert_float_eq(lb_calib_percentile(x, 6, 25), 2.0f);
    ck_assert_float_eq_tol(lb_calib_percentile(x, 6, 90), 4.6f, 1e-6f); /* rank 3.6 */
    ck_assert_float_eq_tol(lb_calib_percentile(x, 6, 10), 1.4f, 1e-6f); /* rank 0.4 */
    ck_assert_float_eq(lb_calib_percentile(x, 6, 0), 1.0f);
    ck_assert_float_eq(lb_calib_percentile(x, 6, 150), 5.0f); /* clamped */
    ck_assert_float_eq(lb_calib_percentile(x, 0, 99), 0.0f);
    const float nans[2] = { NAN, NAN }, one[1] = { -7 };
    ck_assert_float_eq(lb_calib_percentile(nans, 2, 99), 0.0f);
    ck_assert_float_eq(lb_calib_percentile(one, 1, 99.9), 7.0f);
}
END_TEST

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Selection agrees with sorting, on data full of duplicates (quarter steps). */
START_TEST(test_percentile_vs_sort)
{
    enum { N = 1001 };
    float  x[N], s[N];
    lb_rng rng = lb_rng_make(5);
    for (int i = 0; i < N; i++) x[i] = nearbyintf(lb_rng_normal(&rng) * 8.0f) / 4.0f;
    for (int i = 0; i < N; i++) s[i] = fabsf(x[i]);
    qsort(s, N, sizeof s[0], cmp_float);
    const double ps[] = { 0, 1, 10, 33.3, 50, 90, 99, 99.9, 99.99, 100 };
    for (int k = 0; k < N_OF(ps); k++) {
        const double pos = ps[k] / 100.0 * (N - 1), t = pos - floor(pos);
        const int    lo  = (int)floor(pos), hi = lo + 1 < N ? lo + 1 : lo;
        const float  want = (float)(s[lo] + t * (s[hi] - s[lo]));
        ck_assert_msg(fabsf(lb_calib_percentile(x, N, ps[k]) - want) <= 1e-6f, "p=%g", ps[k]);
    }
}
END_TEST

/* n samples: kind 0 normal, 1 Laplace (heavy tails), 2 uniform [-1, 1). Returns max|x|. */
static float fill(float *x, int n, int kind, uint64_t seed)
{
    lb_rng rng  = lb_rng_make(seed);
    float  amax = 0;
    for (int i = 0; i < n; i++) {
        const float u = lb_rng_uniform(&rng);
        if (kind == 0) x[i] = lb_rng_normal(&rng);
        else if (kind == 1) x[i] = (u < 0.5f ? 1.0f : -1.0f) * logf(1.0f - 2.0f * fabsf(u - 0.5f));
        else x[i] = 2.0f * u - 1.0f;
        amax = fmaxf(amax, fabsf(x[i]));
    }
    return amax;
}

START_TEST(test_mse_clip)
{
    enum { N = 1000 };
    float x[N];
    /* uniform data at 8 bits: rounding error is tiny, any clipping costs more -> (about) max */
    float amax = fill(x, N, 2, 1);
    float c    = lb_calib_mse(x, N, 8, LB_QSCHEME_SYMMETRIC);
    ck_assert_msg(c >= 0.98f * amax && c <= amax, "uniform: clip %g of max %g", c, amax);
    /* Gaussian at 4 bits clips well inside the sample max (the optimum is near 2.5 sigma) */
    amax = fill(x, N, 0, 2);
    c    = lb_calib_mse(x, N, 4, LB_QSCHEME_SYMMETRIC);
    ck_assert_msg(c > 0.5f * amax && c < 0.8f * amax, "normal: clip %g of max %g", c, amax);
    /* heavy-tailed (Laplace) data at 4 bits clips harder */
    amax = fill(x, N, 1, 3);
    c    = lb_calib_mse(x, N, 4, LB_QSCHEME_SYMMETRIC);
    ck_assert_msg(c > 0.3f * amax && c < 0.75f * amax, "laplace: clip %g of max %g", c, amax);
    /* every answer lies on the grid amax * k / 100 */
    const float k = c / amax * 100.0f;
    ck_assert_float_eq_tol(k, nearbyintf(k), 1e-3f);
    /* unsigned: ReLU'd normal data at 2 bits (levels 0, c/3, 2c/3, c) */
    fill(x, N, 0, 4);
    float pmax = 0;
    for (int i = 0; i < N; i++) x[i] = fmaxf(x[i], 0.0f), pmax = fmaxf(pmax, x[i]);
    c = lb_calib_mse(x, N, 2, LB_QSCHEME_UNSIGNED);
    ck_assert_msg(c > 0.4f * pmax && c < 0.8f * pmax, "relu: clip %g of max %g", c, pmax);
}
END_TEST

/* One outlier of 100 among 999 N(0, 1) values: clipping it to c costs (100 - c)^2 / n, more
 * than rounding every other value to 0 costs (about 1), so MSE keeps the range; a percentile
 * is what removes a lone outlier. */
START_TEST(test_mse_outlier_vs_percentile)
{
    enum { N = 1000 };
    float x[N];
    fill(x, N - 1, 0, 6);
    x[N - 1] = 100.0f;
    ck_assert_float_ge(lb_calib_mse(x, N, 4, LB_QSCHEME_SYMMETRIC), 90.0f);
    ck_assert_float_lt(lb_calib_percentile(x, N, 99.9), 5.0f);
}
END_TEST

START_TEST(test_mse_edge_cases)
{
    const float zeros[3] = { 0, 0, 0 }, nans[2] = { NAN, INFINITY }, neg[2] = { -1, -2 };
    ck_assert_float_eq(lb_calib_mse(zeros, 0, 4, LB_QSCHEME_SYMMETRIC), 0.0f);
    ck_assert_float_eq(lb_calib_mse(zeros, 3, 4, LB_QSCHEME_SYMMETRIC), 0.0f);
    ck_assert_float_eq(lb_calib_mse(nans, 2, 4, LB_QSCHEME_SYMMETRIC), 0.0f);
    ck_assert_float_eq(lb_calib_mse(neg, 2, 4, LB_QSCHEME_UNSIGNED), 0.0f);
    /* NaNs are skipped: the same data with NaNs mixed in gives the same clip */
    enum { N = 500 };
    float x[N], y[N + 50];
    fill(x, N, 0, 7);
    for (int i = 0, j = 0; i < N; i++) {
        y[j++] = x[i];
        if (i % 10 == 0) y[j++] = NAN;
    }
    ck_assert_float_eq(lb_calib_mse(x, N, 3, LB_QSCHEME_SYMMETRIC),
                       lb_calib_mse(y, N + 50, 3, LB_QSCHEME_SYMMETRIC));
    ck_assert(lb_calib_mse(x, N, 4, LB_QSCHEME_ASYMMETRIC) > 0);
}
END_TEST

/* ---------------------------------------------------------------- qconfig: short specs */

#define WB LB_QSET_W_BITS
#define AB LB_QSET_A_BITS

typedef struct {
    const char *spec;
    int         w, a;
    lb_qmethod  wm, am;
    lb_qgran    gran;
    int64_t     group;
    lb_ste      ste;
    int         first, last; /* both bits of the first/last layer, -1 = not given */
} spec_row;

static const spec_row good_specs[] = {
    { "w4a4", 4, 4, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "w2a2,first=8,last=8", 2, 2, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, 8, 8 },
    { "w4a8,wq=lsq,aq=pact,gran=group:32", 4, 8, LB_QM_LSQ, LB_QM_PACT, LB_QG_GROUP, 32,
      LB_STE_CLIPPED, -1, -1 },
    { "fp32", 0, 0, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "w1a4", 1, 4, LB_QM_BINARY, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "wta8", 2, 8, LB_QM_TERNARY, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "wt", 2, 0, LB_QM_TERNARY, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "w8", 8, 0, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "a8", 0, 8, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "w0a8", 0, 8, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "w4a4,wq=minmax,aq=ema,ste=plain,gran=tensor", 4, 4, LB_QM_MINMAX, LB_QM_EMA, LB_QG_TENSOR,
      0, LB_STE_PLAIN, -1, -1 },
    { "a4,wq=binary", 1, 4, LB_QM_BINARY, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "wq=ternary,aq=minmax,a4", 2, 4, LB_QM_TERNARY, LB_QM_MINMAX, LB_QG_CHANNEL, 0,
      LB_STE_CLIPPED, -1, -1 },
    { "w1a2,wq=dorefa", 1, 2, LB_QM_DOREFA, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, -1 },
    { "w3a3,wq=dorefa,first=0", 3, 3, LB_QM_DOREFA, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED,
      0, -1 },
    { " w4a4 , last=6 ", 4, 4, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, -1, 6 },
    { "fp32,first=8", 0, 0, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED, 8, -1 },
};

START_TEST(test_spec_good)
{
    const spec_row *r = &good_specs[_i];
    lb_qconfig qc;
    lb_error   err = { 0 };
    ck_assert_msg(lb_qconfig_parse_spec(r->spec, &qc, &err) == LB_OK, "%s: %s", r->spec, err.msg);
    const lb_qlayer_cfg *d = &qc.deflt;
    ck_assert_int_eq(d->w_bits, r->w);
    ck_assert_int_eq(d->a_bits, r->a);
    ck_assert_int_eq(d->w_method, r->wm);
    ck_assert_int_eq(d->a_method, r->am);
    ck_assert_int_eq(d->w_gran, r->gran);
    ck_assert_int_eq(d->w_group, r->group);
    ck_assert_int_eq(d->ste, r->ste);
    ck_assert_int_eq(qc.n_layers, 0);
    ck_assert_uint_eq(qc.first.set, r->first >= 0 ? (unsigned)(WB | AB) : 0u);
    ck_assert_uint_eq(qc.last.set, r->last >= 0 ? (unsigned)(WB | AB) : 0u);
    if (r->first >= 0) ck_assert_int_eq(qc.first.cfg.w_bits, r->first);
    if (r->first >= 0) ck_assert_int_eq(qc.first.cfg.a_bits, r->first);
    if (r->last >= 0) ck_assert_int_eq(qc.last.cfg.a_bits, r->last);
}
END_TEST

static const struct {
    const char *spec, *want;
} bad_specs[] = {
    { "", "empty" },
    { "  ", "empty" },
    { "w9a4", "w9a4: weight bits must be 0..8" },
    { "w4a1", "w4a1: activation bits must be 0 or 2..8" },
    { "w4a9", "activation bits must be 0 or 2..8" },
    { "w4a4,wq=pact", "wq=pact: pact quantizes activations only" },
    { "w4a4,aq=dorefa", "aq=dorefa: dorefa quantizes weights only" },
    { "w4a4,aq=binary", "binary quantizes weights only" },
    { "w4a4,aq=ternary", "ternary quantizes weights only" },
    { "w4a4,gran=group:0", "group size >= 1" },
    { "w4a4,gran=group", "group size >= 1" },
    { "w4a4,gran=group:x", "group size >= 1" },
    { "w4a4,gran=rows", "expected tensor, channel or group:N" },
    { "w4a4,w8", "w8: key 'w' given twice" },
    { "w4a4,first=8,first=4", "key 'first' given twice" },
    { "wt,wq=lsq", "key 'wq' given twice" },
    { "fp32,a4", "key 'a' given twice" },
    { "w4a4,foo=1", "unknown key 'foo'" },
    { "w4a4,w=4", "unknown key 'w'" },
    { "w4a4,xyz", "unknown item 'xyz'" },
    { "fp16", "unknown item 'fp16'" },
    { "wxa4", "unknown item 'wxa4'" },
    { "w-1", "unknown item 'w-1'" },
    { "w4a4,,first=8", "empty item" },
    { "w4a4,", "empty item" },
    { "w4a4,first=1", "first=1: bits must be 0 or 2..8" },
    { "w4a4,last=9", "last=9: bits must be 0 or 2..8" },
    { "w4a4,ste=fuzzy", "expected plain or clipped" },
    { "w4a4,wq=magic", "unknown quantizer 'magic'" },
    { "w4,wq=binary", "wq=binary cannot quantize 4-bit weights" },
    { "w1,wq=lsq", "wq=lsq cannot quantize 1-bit weights" },
    { "w3a4,wq=ternary", "wq=ternary cannot quantize 3-bit weights" },
    { "w", "expected a bit count" },
    { "w4a", "expected a bit count" },
};

START_TEST(test_spec_bad)
{
    lb_qconfig qc;
    qc.n_layers  = 12345; /* untouched on failure */
    lb_error  err = { 0 };
    ck_assert_int_eq(lb_qconfig_parse_spec(bad_specs[_i].spec, &qc, &err), LB_ERR_ARG);
    ck_assert_int_eq(err.status, LB_ERR_ARG);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "quant spec '%s': ", bad_specs[_i].spec);
    ck_assert_msg(!strncmp(err.msg, prefix, strlen(prefix)), "message '%s' lacks prefix '%s'",
                  err.msg, prefix);
    ck_assert_msg(strstr(err.msg, bad_specs[_i].want), "'%s': message '%s' lacks '%s'",
                  bad_specs[_i].spec, err.msg, bad_specs[_i].want);
    ck_assert_int_eq(qc.n_layers, 12345);
}
END_TEST

/* ---------------------------------------------------------------- qconfig: files */

static char tmpdir[64];

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lb_test_qconfig.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[sizeof tmpdir + sizeof e->d_name + 1];
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
}

/* Writes text (len bytes) to tmpdir/name; the path goes to path[256]. */
static void write_fixture(const char *name, const char *text, size_t len, char *path)
{
    snprintf(path, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_file_good)
{
    const char *text = "# test configuration\n"
                       "\n"
                       "default w=4 a=4 wq=lsq aq=lsq gran=channel ste=clipped\r\n"
                       "first   w=8 a=8   # keep the stem precise\n"
                       "last    w=8 a=8\n"
                       "layer conv2 w=2 a=4 wq=minmax\n"
                       "  layer\tfc1 gran=group:16\n"
                       "layer bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb aq=pact\n"
                       "default a=8\n"           /* later lines override earlier ones */
                       "layer conv2 ste=plain";  /* ... field by field; no final newline */
    char path[256];
    write_fixture("good.conf", text, strlen(text), path);
    lb_qconfig qc;
    lb_error   err = { 0 };
    ck_assert_msg(lb_qconfig_parse_file(path, &qc, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(qc.deflt.w_bits, 4);
    ck_assert_int_eq(qc.deflt.a_bits, 8);
    ck_assert_int_eq(qc.deflt.w_method, LB_QM_LSQ);
    ck_assert_int_eq(qc.deflt.w_gran, LB_QG_CHANNEL);
    ck_assert_uint_eq(qc.first.set, WB | AB);
    ck_assert_int_eq(qc.first.cfg.w_bits, 8);
    ck_assert_int_eq(qc.last.cfg.a_bits, 8);
    ck_assert_int_eq(qc.n_layers, 3);
    const lb_qoverride *c2 = &qc.layers[0], *fc = &qc.layers[1];
    ck_assert_str_eq(c2->name, "conv2");
    ck_assert_uint_eq(c2->set, WB | AB | LB_QSET_W_METHOD | LB_QSET_STE);
    ck_assert_int_eq(c2->cfg.w_bits, 2);
    ck_assert_int_eq(c2->cfg.a_bits, 4);
    ck_assert_int_eq(c2->cfg.w_method, LB_QM_MINMAX);
    ck_assert_int_eq(c2->cfg.ste, LB_STE_PLAIN);
    ck_assert_str_eq(fc->name, "fc1");
    ck_assert_uint_eq(fc->set, LB_QSET_GRAN);
    ck_assert_int_eq(fc->cfg.w_gran, LB_QG_GROUP);
    ck_assert_int_eq(fc->cfg.w_group, 16);
    ck_assert_int_eq(strlen(qc.layers[2].name), 47);
    ck_assert_int_eq(qc.layers[2].cfg.a_method, LB_QM_PACT);
    /* an empty file is the float configuration */
    ck_assert_int_eq(lb_qconfig_parse_text("# nothing\n\n", "empty.conf", &qc, &err), LB_OK);
    ck_assert(lb_qconfig_is_float(&qc));
}
END_TEST

static const struct {
    const char *text;
    int         line;
    const char *want;
} bad_files[] = {
    { "default w=4\nfrobnicate w=2\n", 2, "unknown directive 'frobnicate'" },
    { "default w=4 colour=red\n", 1, "default: unknown key 'colour'" },
    { "\n# c\ndefault w=9\n", 3, "w=9: weight bits must be 0..8" },
    { "layer fc a=1\n", 1, "a=1: activation bits must be 0 or 2..8" },
    { "default w=4 wq=pact\n", 1, "wq=pact: pact quantizes activations only" },
    { "layer fc aq=dorefa\n", 1, "aq=dorefa: dorefa quantizes weights only" },
    { "default a=4 aq=ternary\n", 1, "ternary quantizes weights only" },
    { "first w=4 a=4 w=2\n", 1, "w=2: key 'w' given twice" },
    { "layer\n", 1, "layer needs a name" },
    { "layer w=4\n", 1, "layer needs a name" },
    { "layer conv1\n", 1, "layer: no settings" },
    { "default\n", 1, "default: no settings" },
    { "default w4\n", 1, "'w4': expected key=value" },
    { "default w=\n", 1, "'w=': expected key=value" },
    { "layer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa w=4\n", 1, "too long (max 47" },
    { "default gran=group:0\n", 1, "group size >= 1" },
    { "default ste=maybe\n", 1, "expected plain or clipped" },
    { "default w=4 wq=binary\n", 1, "wq=binary cannot quantize 4-bit weights" },
    { "default w=1\ndefault wq=minmax\n", 2, "wq=minmax cannot quantize the 1-bit weights" },
    { "layer fc w=1\n\nlayer fc wq=ema\n", 3, "wq=ema cannot quantize the 1-bit weights" },
    { "default w=1 a=4\nlayer fc wq=lsq\n", 2,
      "fc: wq=lsq cannot quantize the 1-bit weights it inherits from the default" },
    { "first w=1\nlayer fc wq=minmax a=4\ndefault w=4\n", 2,
      "fc: wq=minmax cannot quantize the 1-bit weights it inherits when combined" },
};

START_TEST(test_file_bad)
{
    char path[256], name[32], prefix[300];
    snprintf(name, sizeof name, "bad%d.conf", _i);
    write_fixture(name, bad_files[_i].text, strlen(bad_files[_i].text), path);
    lb_qconfig qc;
    lb_error   err = { 0 };
    ck_assert_int_eq(lb_qconfig_parse_file(path, &qc, &err), LB_ERR_FORMAT);
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, bad_files[_i].line);
    ck_assert_msg(!strncmp(err.msg, prefix, strlen(prefix)), "case %d: '%s' lacks prefix '%s'", _i,
                  err.msg, prefix);
    ck_assert_msg(strstr(err.msg, bad_files[_i].want), "case %d: '%s' lacks '%s'", _i, err.msg,
                  bad_files[_i].want);
    /* the same text from memory names the caller's origin */
    ck_assert_int_eq(lb_qconfig_parse_text(bad_files[_i].text, "mem.conf", &qc, &err),
                     LB_ERR_FORMAT);
    snprintf(prefix, sizeof prefix, "mem.conf:%d: ", bad_files[_i].line);
    ck_assert_msg(!strncmp(err.msg, prefix, strlen(prefix)), "'%s' lacks '%s'", err.msg, prefix);
}
END_TEST

START_TEST(test_file_limits)
{
    lb_qconfig qc;
    lb_error   err = { 0 };
    char       path[256];
    /* I/O error names the path */
    ck_assert_int_eq(lb_qconfig_parse_file("/nonexistent/q.conf", &qc, &err), LB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/q.conf"));
    /* a NUL byte: not a text file */
    write_fixture("nul.conf", "default w=4\0x\n", 14, path);
    ck_assert_int_eq(lb_qconfig_parse_file(path, &qc, &err), LB_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "NUL"));
    /* 256 overrides fit, the 257th does not */
    enum { CAP = (LB_QCONFIG_MAX_LAYERS + 1) * 24 };
    char *text = malloc(CAP);
    ck_assert_ptr_nonnull(text);
    size_t len = 0;
    for (int i = 0; i <= LB_QCONFIG_MAX_LAYERS; i++)
        len += (size_t)snprintf(text + len, CAP - len, "layer l%d w=4\n", i);
    write_fixture("many.conf", text, len, path);
    ck_assert_int_eq(lb_qconfig_parse_file(path, &qc, &err), LB_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, ":257: too many layer overrides"));
    text[len - strlen("layer l256 w=4\n")] = 0;
    ck_assert_int_eq(lb_qconfig_parse_text(text, "many", &qc, &err), LB_OK);
    ck_assert_int_eq(qc.n_layers, LB_QCONFIG_MAX_LAYERS);
    free(text);
    /* an overlong line */
    char line[1200];
    memset(line, ' ', sizeof line - 1);
    line[sizeof line - 1] = 0;
    ck_assert_int_eq(lb_qconfig_parse_text(line, "long", &qc, &err), LB_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "long:1: line too long"));
}
END_TEST

/* ---------------------------------------------------------------- qconfig: use */

START_TEST(test_qconfig_for)
{
    lb_qconfig  qc;
    lb_error    err  = { 0 };
    const char *text = "default w=4 a=4\n"
                       "first w=8 a=8\n"
                       "last a=8\n"
                       "layer conv1 w=2\n"
                       "layer fc wq=minmax\n";
    ck_assert_int_eq(lb_qconfig_parse_text(text, "t", &qc, &err), LB_OK);
    lb_qlayer_cfg c = lb_qconfig_for(&qc, "conv1", true, false); /* first, then the name */
    ck_assert_int_eq(c.w_bits, 2);
    ck_assert_int_eq(c.a_bits, 8);
    c = lb_qconfig_for(&qc, "conv1", false, false);
    ck_assert_int_eq(c.w_bits, 2);
    ck_assert_int_eq(c.a_bits, 4);
    c = lb_qconfig_for(&qc, "fc", false, true);
    ck_assert_int_eq(c.w_bits, 4);
    ck_assert_int_eq(c.a_bits, 8);
    ck_assert_int_eq(c.w_method, LB_QM_MINMAX);
    c = lb_qconfig_for(&qc, "conv7", false, false); /* no override: the default */
    ck_assert_int_eq(c.w_bits, 4);
    ck_assert_int_eq(c.w_method, LB_QM_LSQ);
    c = lb_qconfig_for(&qc, NULL, true, true); /* first, then last */
    ck_assert_int_eq(c.w_bits, 8);
    ck_assert_int_eq(c.a_bits, 8);
    /* bits without a method on a binary network: an 8-bit LSQ first layer */
    ck_assert_int_eq(lb_qconfig_parse_spec("w1a4,first=8", &qc, &err), LB_OK);
    c = lb_qconfig_for(&qc, "conv1", true, false);
    ck_assert_int_eq(c.w_bits, 8);
    ck_assert_int_eq(c.w_method, LB_QM_LSQ);
    c = lb_qconfig_for(&qc, "conv2", false, false);
    ck_assert_int_eq(c.w_bits, 1);
    ck_assert_int_eq(c.w_method, LB_QM_BINARY);
    /* a ternary network keeps ternary weights where an override asks for 2 bits */
    ck_assert_int_eq(lb_qconfig_parse_spec("wta4,last=2", &qc, &err), LB_OK);
    c = lb_qconfig_for(&qc, "fc", false, true);
    ck_assert_int_eq(c.w_method, LB_QM_TERNARY);
    ck_assert_int_eq(c.a_bits, 2);
}
END_TEST

START_TEST(test_check_names)
{
    lb_qconfig  qc;
    lb_error    err     = { 0 };
    const char *names[] = { "conv1", "conv2", "fc" };
    ck_assert_int_eq(lb_qconfig_parse_text("layer conv2 w=2\nlayer fc a=8\n", "t", &qc, &err),
                     LB_OK);
    ck_assert_int_eq(lb_qconfig_check_names(&qc, names, 3, &err), LB_OK);
    ck_assert_int_eq(lb_qconfig_parse_text("layer conv2 w=2\nlayer conv9 a=8\n", "t", &qc, &err),
                     LB_OK);
    ck_assert_int_eq(lb_qconfig_check_names(&qc, names, 3, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'conv9'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "conv1 conv2 fc"));
    ck_assert_int_eq(lb_qconfig_check_names(&qc, names, 0, &err), LB_ERR_ARG);
    lb_qconfig fl = lb_qconfig_float();
    ck_assert_int_eq(lb_qconfig_check_names(&fl, names, 0, &err), LB_OK);
}
END_TEST

static void assert_same_cfg(const lb_qlayer_cfg *a, const lb_qlayer_cfg *b, unsigned set)
{
    if (set & LB_QSET_W_BITS) ck_assert_int_eq(a->w_bits, b->w_bits);
    if (set & LB_QSET_A_BITS) ck_assert_int_eq(a->a_bits, b->a_bits);
    if (set & LB_QSET_W_METHOD) ck_assert_int_eq(a->w_method, b->w_method);
    if (set & LB_QSET_A_METHOD) ck_assert_int_eq(a->a_method, b->a_method);
    if (set & LB_QSET_GRAN) ck_assert_int_eq(a->w_gran, b->w_gran);
    if (set & LB_QSET_GRAN) ck_assert_int_eq(a->w_group, b->w_group);
    if (set & LB_QSET_STE) ck_assert_int_eq(a->ste, b->ste);
}

static void assert_same_qconfig(const lb_qconfig *a, const lb_qconfig *b)
{
    assert_same_cfg(&a->deflt, &b->deflt, ~0u);
    ck_assert_uint_eq(a->first.set, b->first.set);
    assert_same_cfg(&a->first.cfg, &b->first.cfg, a->first.set);
    ck_assert_uint_eq(a->last.set, b->last.set);
    assert_same_cfg(&a->last.cfg, &b->last.cfg, a->last.set);
    ck_assert_int_eq(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        ck_assert_str_eq(a->layers[i].name, b->layers[i].name);
        ck_assert_uint_eq(a->layers[i].set, b->layers[i].set);
        assert_same_cfg(&a->layers[i].cfg, &b->layers[i].cfg, a->layers[i].set);
    }
}

/* to_text, parse_text, to_text again: equal configurations and identical text. */
START_TEST(test_to_text_round_trip)
{
    static const char *specs[] = { "w4a4", "w2a2,first=8,last=8", "wta8,gran=group:64",
                                   "w1a4,wq=dorefa,aq=pact,ste=plain", "fp32", "a8,last=0" };
    static const char *files[] = {
        "default w=4 a=4\nfirst w=8 a=8\nlayer conv2 w=2 a=4 wq=minmax\nlayer fc gran=tensor\n",
        "default w=1 a=4\nlayer c1 w=3 wq=dorefa ste=plain\nlayer c2 wq=binary aq=ema\n"
        "last a=8\n",
    };
    char text[4096], again[4096];
    for (int i = 0; i < N_OF(specs) + N_OF(files); i++) {
        lb_qconfig a, b;
        lb_error   err = { 0 };
        const int  f   = i - N_OF(specs);
        lb_status  st  = f < 0 ? lb_qconfig_parse_spec(specs[i], &a, &err)
                               : lb_qconfig_parse_text(files[f], "t", &a, &err);
        ck_assert_msg(st == LB_OK, "case %d: %s", i, err.msg);
        const int len = lb_qconfig_to_text(&a, text, sizeof text);
        ck_assert_int_gt(len, 0);
        ck_assert_int_eq(len, (int)strlen(text));
        ck_assert_msg(lb_qconfig_parse_text(text, "rt", &b, &err) == LB_OK, "case %d: %s\n%s", i,
                      err.msg, text);
        assert_same_qconfig(&a, &b);
        ck_assert_int_eq(lb_qconfig_to_text(&b, again, sizeof again), len);
        ck_assert_str_eq(again, text);
        /* too small a buffer: -1, never an overrun */
        ck_assert_int_eq(lb_qconfig_to_text(&a, again, (size_t)len), -1);
        ck_assert_int_eq(lb_qconfig_to_text(&a, again, (size_t)len + 1), len);
    }
}
END_TEST

START_TEST(test_cfg_str)
{
    static const struct {
        lb_qlayer_cfg c;
        const char   *want;
    } rows[] = {
        { { 4, 4, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED },
          "w4a4 lsq/lsq channel" },
        { { 0, 0, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED }, "fp32" },
        { { 8, 0, LB_QM_LSQ, LB_QM_LSQ, LB_QG_TENSOR, 0, LB_STE_CLIPPED }, "w8 lsq tensor" },
        { { 0, 8, LB_QM_LSQ, LB_QM_PACT, LB_QG_CHANNEL, 0, LB_STE_CLIPPED }, "a8 pact" },
        { { 1, 4, LB_QM_BINARY, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_CLIPPED },
          "w1a4 binary/lsq channel" },
        { { 4, 4, LB_QM_MINMAX, LB_QM_EMA, LB_QG_GROUP, 32, LB_STE_PLAIN },
          "w4a4 minmax/ema group:32 ste=plain" },
        { { 4, 4, LB_QM_LSQ, LB_QM_LSQ, LB_QG_CHANNEL, 0, LB_STE_PLAIN }, "w4a4 lsq/lsq channel" },
    };
    char buf[64];
    for (int i = 0; i < N_OF(rows); i++) {
        lb_qlayer_cfg_str(&rows[i].c, buf, sizeof buf);
        ck_assert_str_eq(buf, rows[i].want);
    }
    lb_qlayer_cfg_str(&rows[0].c, buf, 5); /* truncated, still terminated */
    ck_assert_str_eq(buf, "w4a4");
}
END_TEST

START_TEST(test_is_float_and_methods)
{
    static const struct {
        const char *spec;
        bool        is_float;
    } rows[] = { { "fp32", true }, { "fp32,first=8", false }, { "w4a4", false }, { "a4", false },
                 { "fp32,last=0", true } };
    lb_qconfig qc = lb_qconfig_float();
    lb_error   err = { 0 };
    ck_assert(lb_qconfig_is_float(&qc));
    for (int i = 0; i < N_OF(rows); i++) {
        ck_assert_int_eq(lb_qconfig_parse_spec(rows[i].spec, &qc, &err), LB_OK);
        ck_assert_msg(lb_qconfig_is_float(&qc) == rows[i].is_float, "%s", rows[i].spec);
    }
    ck_assert_int_eq(lb_qconfig_parse_text("layer x wq=minmax w=0\n", "t", &qc, &err), LB_OK);
    ck_assert(lb_qconfig_is_float(&qc));
    ck_assert_int_eq(lb_qconfig_parse_text("layer x a=4\n", "t", &qc, &err), LB_OK);
    ck_assert(!lb_qconfig_is_float(&qc));
    for (int m = 0; m < LB_QM_COUNT; m++) {
        lb_qmethod got = LB_QM_COUNT;
        ck_assert_int_eq(lb_qmethod_parse(lb_qmethod_name((lb_qmethod)m), &got, &err), LB_OK);
        ck_assert_int_eq(got, m);
    }
    ck_assert_str_eq(lb_qmethod_name(LB_QM_COUNT), "?");
    lb_qmethod got;
    ck_assert_int_eq(lb_qmethod_parse("magic", &got, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'magic'"));
}
END_TEST

Suite *quant_observer_suite(void)
{
    Suite *s  = suite_create("quant_observer");
    TCase *tc = tcase_create("observer");
    tcase_add_test(tc, test_obs_minmax);
    tcase_add_test(tc, test_obs_ema);
    tcase_add_test(tc, test_obs_per_channel);
    tcase_add_test(tc, test_obs_freeze);
    tcase_add_test(tc, test_obs_nonfinite);
    tcase_add_test(tc, test_obs_no_count);
    tcase_add_loop_test(tc, test_qrange, 0, N_OF(qranges));
    tcase_add_loop_test(tc, test_qparams_from_range, 0, N_OF(qparam_rows));
    tcase_add_test(tc, test_qparams_many);
    suite_add_tcase(s, tc);

    tc = tcase_create("calibration");
    tcase_add_test(tc, test_percentile_exact);
    tcase_add_test(tc, test_percentile_vs_sort);
    tcase_add_test(tc, test_mse_clip);
    tcase_add_test(tc, test_mse_outlier_vs_percentile);
    tcase_add_test(tc, test_mse_edge_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("qconfig");
    tcase_add_loop_test(tc, test_spec_good, 0, N_OF(good_specs));
    tcase_add_loop_test(tc, test_spec_bad, 0, N_OF(bad_specs));
    tcase_add_test(tc, test_qconfig_for);
    tcase_add_test(tc, test_check_names);
    tcase_add_test(tc, test_to_text_round_trip);
    tcase_add_test(tc, test_cfg_str);
    tcase_add_test(tc, test_is_float_and_methods);
    suite_add_tcase(s, tc);

    tc = tcase_create("qconfig_files");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_file_good);
    tcase_add_loop_test(tc, test_file_bad, 0, N_OF(bad_files));
    tcase_add_test(tc, test_file_limits);
    suite_add_tcase(s, tc);
    return s;
}
