/* mixed.h: the algorithms behind mixed-precision bit assignment, free of any model:
 *   - a reference weight quantizer with an MSE-optimal clipping level per output channel
 *     (what "this layer at b bits" means when sensitivities are measured),
 *   - Hutchinson's estimator of Hessian traces per parameter block, with Hessian-vector
 *     products from central finite differences of gradients (HAWQ-V2),
 *   - an exact multiple-choice knapsack solver (dynamic programming over the cost).
 * The model-level glue (which layers, their gradients, their bytes) is train/sensitivity.h;
 * the commands are `lowbit sensitivity` and `lowbit mixed` (cli/cmd_mixed.c).
 *
 *     // choose one of C options for each of L layers, total cost <= budget, least objective
 *     int choice[L];  double obj;  int64_t used;
 *     if (lb_mixed_solve(L, C, cost, objective, budget, choice, &obj, &used, &err)) ...
 *
 *     // per-block Hessian traces of a loss whose gradient grad_fn computes
 *     double tr[2], se[2];
 *     lb_hutchinson_trace(grad_fn, ctx, w, n, off, len, 2, false, 64, 1e-2f, 42, tr, se,
 *                         &err);
 */
#ifndef LB_MIXED_H
#define LB_MIXED_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/status.h"

/* Quantizes w (rows, K) row by row onto the signed symmetric grid of `bits` bits that
 * lowbit's weight quantizers use (q in [-2^(b-1), 2^(b-1)-1], one scale per row) and writes
 * the dequantized values to out (may equal w). bits 2..8: the scale of each row is the one
 * of s = (max|w| / qmax) * k / 100, k = 1..100, with the least squared error of the row (a
 * grid search for the MSE-optimal clipping level, which at 2 bits lies far below max|w|);
 * bits 1: binary, sign(w) * mean|w| per row (XNOR-Net, as wq=binary). *sq_err (may be NULL)
 * receives sum (Q(w) - w)^2. Other bits are a bug. */
void lb_weight_quantize_mse(const float *w, int64_t rows, int64_t K, int bits, float *out,
                            double *sq_err);

/* Computes the gradient g[0..n) of some loss at w[0..n); returns LB_OK or an error in err. */
typedef lb_status (*lb_grad_fn)(void *ctx, const float *w, float *g, lb_error *err);

/* Hutchinson's estimator, per block: for blocks b = [off[b], off[b] + len[b]) of w (disjoint),
 *     tr(H_bb) ~ mean over samples of  v_b^T (H v)_b,   v Rademacher (+-1) on every block,
 *     H v ~ (g(w + eps v) - g(w - eps v)) / (2 eps)    (central differences, exact for a
 *                                                       quadratic loss up to rounding)
 * with eps_b = rel_eps * rms(w_b) per block (rel_eps itself when the block is all zero).
 * together: all blocks are perturbed at once, so one pair of gradient calls per sample
 * serves every block (the cross terms v_b^T H_bc v_c have mean zero but add variance, a lot
 * of it in a deep ReLU network, where the cross-layer blocks are large and indefinite);
 * otherwise each block is perturbed alone (n_blocks pairs of calls per sample), which
 * estimates tr(H_bb) without cross terms. trace[b] gets the mean, se[b] (may be NULL)
 * its standard error over the samples (0 for one sample). w is perturbed during the call and
 * restored bit for bit before return. The generator is seeded with seed. LB_ERR_ARG for
 * samples < 1, rel_eps <= 0 or an empty block; grad_fn's error is passed on; LB_ERR_NOMEM. */
lb_status lb_hutchinson_trace(lb_grad_fn grad_fn, void *ctx, float *w, int64_t n,
                              const int64_t *off, const int64_t *len, int n_blocks, bool together,
                              int samples, float rel_eps, uint64_t seed, double *trace,
                              double *se, lb_error *err);

/* Writes the logits z[0 .. N*C) (N samples, C classes, row-major) of some model at w. */
typedef lb_status (*lb_logits_fn)(void *ctx, const float *w, float *z, lb_error *err);

/* Hutchinson's estimator of the Gauss-Newton block traces of the mean softmax cross-entropy:
 *     tr(G_bb) ~ mean over samples of  mean_n (J_n v_b)^T (diag(p_n) - p_n p_n^T) (J_n v_b)
 * with J_n v_b ~ (z_n(w + eps v_b) - z_n(w - eps v_b)) / (2 eps)  (central differences of the
 * logits, each block perturbed alone, eps_b = rel_eps * rms(w_b)) and p_n = softmax(z_n(w)).
 * For one layer of a ReLU network the logits are piecewise linear in that layer's weights, so
 * this is the block's Hessian almost everywhere (what double back-propagation gives), and it
 * is never negative; finite differences of gradients (lb_hutchinson_trace) instead pick up
 * the ReLU and max-pool kinks crossed by the perturbation. Only forward passes: 1 + 2 x
 * samples x n_blocks calls of logits_fn. Arguments, restoring of w and errors as
 * lb_hutchinson_trace; N, C >= 1. */
lb_status lb_hutchinson_gn_trace(lb_logits_fn logits_fn, void *ctx, float *w, int64_t n,
                                 int64_t N, int C, const int64_t *off, const int64_t *len,
                                 int n_blocks, int samples, float rel_eps, uint64_t seed,
                                 double *trace, double *se, lb_error *err);

/* Multiple-choice knapsack, solved exactly: picks choice[l] in [0, C) for each layer l in
 * [0, L) minimising sum objective[l*C + choice[l]] subject to sum cost[l*C + choice[l]] <=
 * budget (costs >= 0, any unit, e.g. bits). Dynamic programming over the total cost after
 * subtracting each layer's cheapest option and dividing every cost and the budget by the
 * costs' greatest common divisor: O(L * C * budget') time, L * budget' bytes. Ties keep the
 * cheaper choice, then the lower index. *best and *used (each may be NULL) get the objective
 * and the cost of the solution.
 * LB_ERR_ARG: L < 1, C < 1 or C > 255, a negative cost, an objective that is not finite, or
 * an infeasible
 * budget ("budget X is below the smallest possible total Y"); LB_ERR_NOMEM when the table
 * would exceed 1 GiB (the message says how large, with a hint to coarsen the costs). */
lb_status lb_mixed_solve(int L, int C, const int64_t *cost, const double *objective,
                         int64_t budget, int *choice, double *best, int64_t *used,
                         lb_error *err);

#endif
