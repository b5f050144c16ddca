/* fake_quant.h: fake-quantization ops with straight-through estimators (STE).
 *
 * Every op here maps float tensors to float tensors that take only the values a b-bit
 * integer grid can represent, so training sees quantization error while gradients flow
 * through (Bengio et al. 2013; Jacob et al. 2018). Rounding is nearbyintf: ties to even, the
 * same as torch.round. These are autograd ops (see autograd/ops.h for the conventions:
 * shapes validated, sticky errors, NULL propagation).
 *
 * Scale layouts (lb_qgran), for x of shape (N, ...) with K = numel / N elements per row:
 *   LB_QG_TENSOR   one scale for all of x                       n_scales = 1
 *   LB_QG_CHANNEL  one scale per index of dim 0 (out channel)   n_scales = N
 *   LB_QG_GROUP    per row, each run of G consecutive elements  n_scales = N * ceil(K / G)
 *
 *     lb_qparams qp = { .gran = LB_QG_CHANNEL, .qmin = -8, .qmax = 7, .n = O, .scale = s };
 *     lb_tensor *wq = lb_fake_quant(g, w, &qp, LB_STE_CLIPPED);
 *     lb_tensor *aq = lb_fake_quant_lsq(g, x, step, LB_QG_TENSOR, 0, 0, 15, gs);  // learned
 */
#ifndef LB_FAKE_QUANT_H
#define LB_FAKE_QUANT_H

#include "autograd/ops.h"

typedef enum lb_qgran { LB_QG_TENSOR = 0, LB_QG_CHANNEL, LB_QG_GROUP } lb_qgran;

/* Straight-through estimators for the rounding step.
 *   PLAIN:   dx = dy everywhere (the clamp is ignored too)
 *   CLIPPED: dx = dy where qmin <= round(x/s) + z <= qmax before clamping, i.e. where x lies in
 *            [s*(qmin - z), s*(qmax - z)]; 0 outside (the clamp's true derivative) */
typedef enum lb_ste { LB_STE_PLAIN = 0, LB_STE_CLIPPED } lb_ste;

/* Fixed quantization parameters (from an observer or calibration). */
typedef struct lb_qparams {
    lb_qgran     gran;
    int64_t      group;       /* G, for LB_QG_GROUP                                   */
    int32_t      qmin, qmax;  /* integer range, e.g. -8..7 (signed 4-bit), 0..15     */
    int64_t      n;           /* number of scales                                     */
    const float *scale;       /* (n) > 0, finite                                      */
    const float *zero_point;  /* (n) integers stored as float, or NULL for all zeros  */
} lb_qparams;

/* Number of scales x needs under gran (and group G); -1 when G < 1 for groups. */
int64_t lb_qgran_count(const lb_tensor *x, lb_qgran gran, int64_t group);

/* y = s * (clamp(round(x / s) + z, qmin, qmax) - z), with s and z chosen per element by the
 * layout. The scales are copied, so qp's arrays may change after the call. A bad layout,
 * count, scale (<= 0, NaN, Inf) or range is a sticky LB_ERR_ARG. */
lb_tensor *lb_fake_quant(lb_graph *g, lb_tensor *x, const lb_qparams *qp, lb_ste ste);

/* LSQ (Esser et al. 2020, "Learned Step Size Quantization"): y = s * clamp(round(x/s), qmin,
 * qmax) with the step s a trainable tensor (n_scales) under the layout. Backward:
 *   dx = dy where qmin <= x/s <= qmax, else 0
 *   ds = grad_scale * sum over the scale's elements of dy * { round(x/s) - x/s  inside
 *                                                            { qmin or qmax     outside (below/above)
 * grad_scale is 1/sqrt(numel_per_scale * qmax) in the paper. */
lb_tensor *lb_fake_quant_lsq(lb_graph *g, lb_tensor *x, lb_tensor *step, lb_qgran gran,
                             int64_t group, int32_t qmin, int32_t qmax, float grad_scale);

/* LSQ's data-driven initial step: 2 * mean(|x|) / sqrt(qmax) per scale (Esser et al.), written
 * into step_out (n_scales floats). x is a plain tensor (no graph needed). */
void lb_lsq_init_step(const lb_tensor *x, lb_qgran gran, int64_t group, int32_t qmax,
                      float *step_out);

/* PACT (Choi et al. 2018): unsigned activations clipped to a learned level alpha (shape (1)):
 *   y = round(clamp(x, 0, alpha) * L / alpha) * alpha / L,  L = 2^bits - 1
 *   dx = dy where 0 <= x <= alpha, else 0;   dalpha = sum of dy where x > alpha (paper eq. 3) */
lb_tensor *lb_pact(lb_graph *g, lb_tensor *x, lb_tensor *alpha, int bits);

/* DoReFa weights (Zhou et al. 2016), per tensor:
 *   t = tanh(w);  u = t / (2 max|t|) + 1/2;  y = 2 * round(u * L) / L - 1,  L = 2^bits - 1
 * Backward: STE through the rounding, exact derivative of the tanh normalisation with max|t|
 * treated as a constant. */
lb_tensor *lb_dorefa_weight(lb_graph *g, lb_tensor *w, int bits);

/* Binary weights (XNOR-Net, Rastegari et al. 2016): y = sign(w) * a, a = mean |w| per output
 * channel (gran CHANNEL) or over the tensor (TENSOR); sign(0) = +1. Backward: dx = dy where
 * |w| <= 1, else 0 (clipped STE; a treated as a constant). */
lb_tensor *lb_binary_weight(lb_graph *g, lb_tensor *w, lb_qgran gran);

/* Ternary weights (TWN, Li et al. 2016): d = thresh * mean|w|, y = a * sign(w) where |w| > d,
 * 0 elsewhere; a = mean of |w| over |w| > d (per channel or tensor). Backward: plain STE.
 * thresh is usually 0.7. */
lb_tensor *lb_ternary_weight(lb_graph *g, lb_tensor *w, lb_qgran gran, float thresh);

#endif
