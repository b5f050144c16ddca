/* observer.c: range observers (running min/max, EMA), integer ranges, scales and zero points
 * from ranges, and the two calibration searches (percentile, MSE over a clip grid).
 *
 * Everything here works on caller-owned arrays: observers keep their state in the arrays the
 * quantizer registered as lb_params buffers, so nothing is allocated, except the scratch copy
 * lb_calib_percentile selects in (calibration runs once, not in the training step).
 * Non-finite values in the data are skipped everywhere: one NaN or Inf would otherwise stay in
 * a running range forever. This file does not fake-quantize tensors (see fake_quant.c).
 */
#include "quant/observer.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* Smallest scale lb_qparams_from_range returns, so that x / s never divides by zero. */
#define MIN_SCALE 1e-8f

/* Number of clip candidates lb_calib_mse tries: c_k = amax * k / MSE_GRID, k = 1..MSE_GRID. */
#define MSE_GRID 100

/* ---- observers ------------------------------------------------------------------------- */

/* Min and max of the finite values of x[0..k); false (and no output) when none is finite. */
static bool finite_range(const float *x, int64_t k, float *lo, float *hi)
{
    float mn = INFINITY, mx = -INFINITY;
    bool any = false;
    for (int64_t i = 0; i < k; i++) {
        const float v = x[i];
        if (!isfinite(v)) continue;
        any = true;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    if (any) *lo = mn, *hi = mx;
    return any;
}

bool lb_observer_frozen(const lb_observer *ob)
{
    return ob->freeze_after > 0 && ob->count && *ob->count >= (float)ob->freeze_after;
}

void lb_observer_update(lb_observer *ob, const lb_tensor *x)
{
    LB_ASSERT(ob && x && ob->min && ob->max && ob->n >= 1);
    /* per channel: the caller sized the state from the same tensor, so a mismatch is a bug */
    LB_ASSERT(ob->n == 1 || (x->n_dims >= 1 && x->shape[0] == ob->n));
    if (lb_observer_frozen(ob)) return;
    const int64_t C = ob->n, K = lb_numel(x) / C; /* channels, elements per channel */
    if (K == 0) return;
    const bool  first = ob->count && *ob->count < 1.0f;
    const float m     = ob->momentum;
    bool        seen  = false;
    for (int64_t c = 0; c < C; c++) {
        float lo, hi;
        if (!finite_range(x->data + c * K, K, &lo, &hi)) continue; /* keeps its state */
        seen = true;
        if (first || !(ob->min[c] <= ob->max[c])) {     /* first update, or an empty state */
            ob->min[c] = lo;
            ob->max[c] = hi;
        } else if (ob->kind == LB_OBS_MINMAX) {
            ob->min[c] = fminf(ob->min[c], lo);
            ob->max[c] = fmaxf(ob->max[c], hi);
        } else {                                         /* EMA */
            ob->min[c] = (1.0f - m) * ob->min[c] + m * lo;
            ob->max[c] = (1.0f - m) * ob->max[c] + m * hi;
        }
    }
    if (seen && ob->count) *ob->count += 1.0f;
}

/* ---- ranges and parameters ------------------------------------------------------------ */

void lb_qrange(int bits, lb_qscheme scheme, int32_t *qmin, int32_t *qmax)
{
    LB_ASSERT(bits >= 1 && bits <= 16); /* callers validate configured widths first */
    if (scheme == LB_QSCHEME_SYMMETRIC) {
        *qmin = -(int32_t)(1 << (bits - 1));
        *qmax = (int32_t)(1 << (bits - 1)) - 1;
    } else {
        *qmin = 0;
        *qmax = (int32_t)(1 << bits) - 1;
    }
}

/* A range bound as used for parameters: NaN counts as 0, +-Inf as +-FLT_MAX. */
static double bound(float v)
{
    if (isnan(v)) return 0.0;
    if (isinf(v)) return v > 0 ? FLT_MAX : -FLT_MAX;
    return v;
}

/* s clamped to [MIN_SCALE, FLT_MAX]: never 0, never Inf. */
static float clamp_scale(double s)
{
    if (!(s >= MIN_SCALE)) return MIN_SCALE;
    return s > FLT_MAX ? FLT_MAX : (float)s;
}

void lb_qparams_from_range(const float *min, const float *max, int64_t n, int bits,
                           lb_qscheme scheme, float *scale, float *zero_point)
{
    LB_ASSERT(bits >= 1 && bits <= 16);
    const double levels = (double)((1 << bits) - 1); /* 2^b - 1 */
    const double qmax_s = (double)((1 << (bits - 1)) - 1);
    for (int64_t i = 0; i < n; i++) {
        const double lo = bound(min[i]), hi = bound(max[i]);
        float        z  = 0.0f;
        if (scheme == LB_QSCHEME_SYMMETRIC) {
            /* 1 bit: qmax is 0, so divide by 1 instead (levels -s and 0) */
            scale[i] = clamp_scale(fmax(fabs(lo), fabs(hi)) / (qmax_s > 0 ? qmax_s : 1.0));
        } else if (scheme == LB_QSCHEME_UNSIGNED) {
            scale[i] = clamp_scale(fmax(hi, 0.0) / levels);
        } else {
            /* widen to include 0 so that 0 is exactly representable (zero padding, ReLU) */
            const double lo0 = fmin(lo, 0.0), hi0 = fmax(hi, 0.0);
            scale[i] = clamp_scale((hi0 - lo0) / levels);
            z = nearbyintf((float)(-lo0 / scale[i]));
            z = fminf(fmaxf(z, 0.0f), (float)levels);
        }
        if (zero_point) zero_point[i] = z;
    }
}

/* ---- calibration ----------------------------------------------------------------------- */

static void swapf(float *a, float *b)
{
    const float t = *a;
    *a = *b;
    *b = t;
}

/* Partially orders a[0..n) so that a[k] is the k-th smallest, everything before it <= a[k]
 * and everything after it >= a[k] (Hoare's FIND, as in Wirth's "select"; median-of-three
 * pivot). Expected O(n). */
static void select_kth(float *a, int64_t n, int64_t k)
{
    int64_t l = 0, r = n - 1;
    while (l < r) {
        const int64_t mid = l + (r - l) / 2;
        if (a[mid] < a[l]) swapf(&a[mid], &a[l]);
        if (a[r] < a[l]) swapf(&a[r], &a[l]);
        if (a[r] < a[mid]) swapf(&a[r], &a[mid]);
        const float pivot = a[mid];
        int64_t     i = l, j = r;
        do {
            while (a[i] < pivot) i++;
            while (pivot < a[j]) j--;
            if (i <= j) {
                swapf(&a[i], &a[j]);
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k) l = i;
        if (k < i) r = j;
    }
}

float lb_calib_percentile(const float *x, int64_t n, double p)
{
    if (n <= 0 || (uint64_t)n > SIZE_MAX / sizeof(float)) return 0.0f;
    if (isnan(p) || p > 100.0) p = 100.0;
    if (p < 0.0) p = 0.0;
    float *a = malloc((size_t)n * sizeof *a);
    if (!a) return 0.0f;
    int64_t m = 0; /* finite values kept */
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i])) a[m++] = fabsf(x[i]);
    float result = 0.0f;
    if (m > 0) {
        /* linear interpolation between the closest ranks (numpy's and torch.quantile's default) */
        const double  pos = p / 100.0 * (double)(m - 1);
        const int64_t k   = (int64_t)floor(pos);
        const double  t   = pos - (double)k;
        select_kth(a, m, k);
        result = a[k];
        if (t > 0.0 && k + 1 < m) {
            float next = a[k + 1]; /* the (k+1)-th smallest is the minimum of the upper part */
            for (int64_t i = k + 2; i < m; i++) next = a[i] < next ? a[i] : next;
            result = (float)((double)a[k] + t * ((double)next - (double)a[k]));
        }
    }
    free(a);
    return result;
}

/* Mean squared error between the finite values of x and their fake quantization with scale s,
 * zero point z and integer range [qmin, qmax] (the same arithmetic as lb_fake_quant). */
static double fq_mse(const float *x, int64_t n, float s, float z, int32_t qmin, int32_t qmax)
{
    double  sum = 0.0;
    int64_t m   = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        float q = nearbyintf(x[i] / s) + z;
        q = fminf(fmaxf(q, (float)qmin), (float)qmax);
        const double d = (double)x[i] - (double)((q - z) * s);
        sum += d * d;
        m++;
    }
    return m ? sum / (double)m : 0.0;
}

float lb_calib_mse(const float *x, int64_t n, int bits, lb_qscheme scheme)
{
    LB_ASSERT(bits >= 1 && bits <= 16);
    float amax = 0.0f; /* max|x|, or max(x, 0) for unsigned */
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        const float v = scheme == LB_QSCHEME_UNSIGNED ? x[i] : fabsf(x[i]);
        amax = v > amax ? v : amax;
    }
    if (!(amax > 0.0f)) return 0.0f;
    int32_t qmin, qmax;
    lb_qrange(bits, scheme, &qmin, &qmax);
    float  best_c   = amax;
    double best_err = INFINITY;
    for (int k = 1; k <= MSE_GRID; k++) {
        const float c  = k == MSE_GRID ? amax : amax * (float)k / (float)MSE_GRID;
        const float lo = scheme == LB_QSCHEME_UNSIGNED ? 0.0f : -c;
        float       s, z;
        lb_qparams_from_range(&lo, &c, 1, bits, scheme, &s, &z);
        const double e = fq_mse(x, n, s, z, qmin, qmax);
        if (e < best_err) { /* strict: the smallest clip wins ties */
            best_err = e;
            best_c   = c;
        }
    }
    return best_c;
}
