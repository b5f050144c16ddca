/* bn_fold.h: folding batch normalisation into the preceding conv/linear for QAT.
 *
 * With BN statistics frozen (running mean mu, variance var), BN(conv(x, w) + b) equals
 * conv(x, w_f) + b_f with
 *     w_f[o] = w[o] * gamma[o] / sqrt(var[o] + eps)
 *     b_f[o] = beta[o] + (b[o] - mu[o]) * gamma[o] / sqrt(var[o] + eps)      (b = 0 if absent)
 * so the weights that get fake-quantized are the ones an integer runtime will use (Jacob et
 * al. 2018, section 3.2; Krishnamoorthi 2018, section 3.2 "freeze batch-norm statistics").
 * Both are autograd ops: gradients reach w, b, gamma and beta; mu and var are constants.
 *
 *     lb_tensor *wf = lb_fold_weight(g, w, bn->gamma, bn->running_var, bn->eps);
 *     lb_tensor *bf = lb_fold_bias(g, b, bn->gamma, bn->beta, bn->running_mean,
 *                                  bn->running_var, bn->eps);
 */
#ifndef LB_BN_FOLD_H
#define LB_BN_FOLD_H

#include "autograd/ops.h"

/* w (O, ...) -> w_f (O, ...); gamma, var (O). */
lb_tensor *lb_fold_weight(lb_graph *g, lb_tensor *w, lb_tensor *gamma, lb_tensor *var, float eps);
/* -> b_f (O); b may be NULL (a conv without bias). */
lb_tensor *lb_fold_bias(lb_graph *g, lb_tensor *b, lb_tensor *gamma, lb_tensor *beta,
                        lb_tensor *mean, lb_tensor *var, float eps);

#endif
