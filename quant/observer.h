/* observer.h: range observers and calibration -> quantization parameters.
 *
 * An observer tracks the range of a tensor (per tensor, or per channel of dim 0) while
 * training or calibrating, and turns it into scales and zero points for lb_fake_quant.
 * Its state lives in caller-provided float arrays (the quantizer keeps them in lb_params as
 * buffers, so checkpoints carry them). Nothing here allocates except lb_calib_percentile.
 * Non-finite data (NaN, +-Inf) is skipped everywhere: one bad value would otherwise stay in a
 * running range forever.
 *
 *     lb_observer ob = { .kind = LB_OBS_EMA, .momentum = 0.01f, .freeze_after = 1000,
 *                        .n = O, .min = mins, .max = maxs, .count = &count };
 *     lb_observer_update(&ob, w);                     // each training step
 *     lb_qparams_from_range(ob.min, ob.max, O, 4, LB_QSCHEME_SYMMETRIC, scale, zp);
 */
#ifndef LB_OBSERVER_H
#define LB_OBSERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"

typedef enum lb_obs_kind {
    LB_OBS_MINMAX = 0, /* running min of mins and max of maxes                              */
    LB_OBS_EMA,        /* exponential moving average of each batch's min and max            */
} lb_obs_kind;

typedef enum lb_qscheme {
    LB_QSCHEME_SYMMETRIC = 0, /* signed, zero point 0: q in [-2^(b-1), 2^(b-1)-1]            */
    LB_QSCHEME_ASYMMETRIC,    /* unsigned with a zero point: q in [0, 2^b-1]                 */
    LB_QSCHEME_UNSIGNED,      /* unsigned, zero point 0 (non-negative data, after ReLU)      */
} lb_qscheme;

typedef struct lb_observer {
    lb_obs_kind kind;
    float       momentum;     /* EMA weight of the new batch, e.g. 0.01                   */
    int64_t     freeze_after; /* stop updating after this many updates; 0 = never         */
    int64_t     n;            /* 1 (per tensor) or the channel count (per channel, dim 0) */
    float      *min, *max;    /* (n) state, caller-owned                                  */
    float      *count;        /* (1) updates so far, caller-owned (float so it can live
                                 in lb_params and be checkpointed; exact up to 2^24), or
                                 NULL: never frozen, see lb_observer_update               */
} lb_observer;

/* Folds x's range into the observer (no-op once frozen). n == 1: over all of x; otherwise
 * per index of dim 0 (x->shape[0] must equal n, else LB_ASSERT: the caller sized the state
 * from the same tensor). Per channel c, with lo/hi the min/max of x's finite values:
 *   first update (*count == 0), or an empty state (!(min[c] <= max[c]), e.g. +INF/-INF or
 *   NaN, which is how to start an observer without count):   min[c] = lo, max[c] = hi
 *   MINMAX:  min[c] = min(min[c], lo),  max[c] = max(max[c], hi)
 *   EMA:     min[c] = (1 - momentum) * min[c] + momentum * lo  (max likewise)
 * A channel without finite values keeps its state; *count grows by one when at least one
 * channel was updated (so an all-NaN or empty x changes nothing). */
void lb_observer_update(lb_observer *ob, const lb_tensor *x);
/* True once freeze_after > 0 updates were counted (never when count is NULL). */
bool lb_observer_frozen(const lb_observer *ob);

/* Integer range of a scheme at a bit width: symmetric [-2^(b-1), 2^(b-1)-1], asymmetric and
 * unsigned [0, 2^b-1]. Meant for 2..8 bits; 1 bit gives [-1, 0] (symmetric) or [0, 1] (binary
 * weights use lb_binary_weight instead). bits outside 1..16 is a bug (LB_ASSERT). */
void lb_qrange(int bits, lb_qscheme scheme, int32_t *qmin, int32_t *qmax);

/* Scales and zero points from ranges, n entries:
 *   symmetric:  s = max(|min|, |max|) / qmax (qmax = 2^(b-1)-1; 1 bit divides by 1), z = 0
 *   unsigned:   s = max(max, 0) / (2^b - 1), z = 0
 *   asymmetric: s = (max' - min') / (2^b - 1) with the range widened to include 0
 *               (min' = min(min, 0), max' = max(max, 0), as PyTorch's MinMaxObserver),
 *               z = clamp(round(-min'/s), 0, 2^b-1), round = nearbyintf (ties to even)
 * Every scale is clamped to [1e-8, FLT_MAX]: a zero-width range gives 1e-8 (never 0, never
 * NaN, never Inf). A NaN bound counts as 0 and +-Inf as +-FLT_MAX. zero_point may be NULL
 * (the zero points are then not written). bits as for lb_qrange. */
void lb_qparams_from_range(const float *min, const float *max, int64_t n, int bits,
                           lb_qscheme scheme, float *scale, float *zero_point);

/* Calibration of one clipping value from a sample of values (per tensor):
 * the p-th percentile of |x| (p in (0, 100]), e.g. 99.99, interpolating linearly between the
 * closest ranks like numpy.percentile and torch.quantile (p = 100 gives max|x|, p = 50 the
 * median). Non-finite values are skipped; p outside [0, 100] is clamped (NaN counts as 100).
 * Allocates a scratch copy of n floats (expected O(n) selection), which is fine for
 * calibration but not meant for the training step. Returns 0 when n == 0, when no value is
 * finite and when the scratch allocation fails; callers treat 0 as "no range". */
float lb_calib_percentile(const float *x, int64_t n, double p);
/* The clip c minimising the mean squared error between x and its fake quantization with
 * range [-c, c] (symmetric, asymmetric) or [0, c] (unsigned), searched over the grid
 * c_k = amax * k / 100, k = 1..100, with amax = max|x| (max(x, 0) for unsigned). Each
 * candidate is scored with the scale and zero point lb_qparams_from_range gives for that
 * range, the integer range of lb_qrange and nearbyintf rounding, i.e. exactly what
 * lb_fake_quant will do. Ties go to the smallest clip. Non-finite values are skipped.
 * Returns 0 when amax is 0 (n == 0, all zero or no finite value). Cost O(100 n). */
float lb_calib_mse(const float *x, int64_t n, int bits, lb_qscheme scheme);

#endif
