/* ops.h: every differentiable op of the engine.
 *
 * Each constructor validates shapes (a mismatch is a sticky graph error, see graph.h),
 * allocates its output in the graph arena, runs forward at once and records the node.
 * Every constructor returns NULL when given a NULL input or a failed graph, so a forward
 * pass needs no per-call checks. Shapes are PyTorch order; images are NCHW.
 *
 *     lb_tensor *h = lb_relu(g, lb_add_row(g, lb_matmul_nt(g, x, w1), b1));
 *     lb_tensor *loss = lb_softmax_ce(g, lb_add_row(g, lb_matmul_nt(g, h, w2), b2), y);
 */
#ifndef LB_OPS_H
#define LB_OPS_H

#include <stdint.h>

#include "autograd/graph.h"
#include "autograd/rng.h"

/* ---- dense (ops_matmul.c) ------------------------------------------------------------ */

/* x (B, K), w (N, K) -> x · wᵀ (B, N). One sgemm forward, two backward. */
lb_tensor *lb_matmul_nt(lb_graph *g, lb_tensor *x, lb_tensor *w);
/* y (B, N) + b (N) broadcast over rows; or y (B, C, H, W) + b (C) per channel. */
lb_tensor *lb_add_bias(lb_graph *g, lb_tensor *y, lb_tensor *b);

/* ---- elementwise and shape (ops_elementwise.c) ---------------------------------------- */

/* a + b, same shape (residual connections). */
lb_tensor *lb_add(lb_graph *g, lb_tensor *a, lb_tensor *b);
/* a * b elementwise, same shape. */
lb_tensor *lb_mul(lb_graph *g, lb_tensor *a, lb_tensor *b);
lb_tensor *lb_relu(lb_graph *g, lb_tensor *x);
/* relu overwriting x (no new activation memory). Only for an x that nothing else reads
 * afterwards, forward or backward: x's own op must not need its output in backward (conv,
 * linear, bias, batch-norm and add do not), and x must have no other consumer. */
lb_tensor *lb_relu_inplace(lb_graph *g, lb_tensor *x);
/* a + b written over a, under the same condition on a as lb_relu_inplace. */
lb_tensor *lb_add_inplace(lb_graph *g, lb_tensor *a, lb_tensor *b);
/* Same data, new shape of equal element count (a copy in the arena). */
lb_tensor *lb_reshape(lb_graph *g, lb_tensor *x, const int64_t *shape, int n_dims);
/* (B, ...) -> (B, prod(...)). */
lb_tensor *lb_flatten(lb_graph *g, lb_tensor *x);
/* Inverted dropout: in training mode zeroes each element with probability p and scales the
 * rest by 1/(1-p), drawing from rng; in eval mode (or p == 0) returns x itself. */
lb_tensor *lb_dropout(lb_graph *g, lb_tensor *x, float p, lb_rng *rng);
/* Sum of all elements -> scalar (shape (1)). */
lb_tensor *lb_sum(lb_graph *g, lb_tensor *x);

/* ---- loss (ops_loss.c) ---------------------------------------------------------------- */

/* Mean over the batch of -log softmax(logits)[label]; logits (B, C), labels[B] in [0, C).
 * Numerically stable (max subtracted). Labels are copied. A label outside [0, C) is a sticky
 * LB_ERR_ARG. Returns a scalar. */
lb_tensor *lb_softmax_ce(lb_graph *g, lb_tensor *logits, const int32_t *labels);
/* The same with label smoothing eps in [0, 1) (else a sticky LB_ERR_ARG): the target row is
 * (1 - eps) onehot(label) + eps / C, as PyTorch's CrossEntropyLoss(label_smoothing=eps).
 * eps = 0 is lb_softmax_ce bit for bit. */
lb_tensor *lb_softmax_ce_smooth(lb_graph *g, lb_tensor *logits, const int32_t *labels, float eps);

/* ---- convolution and pooling (ops_conv.c, ops_pool.c) --------------------------------- */

/* x (B, C, H, W), w (O, C, kh, kw), b (O) or NULL -> (B, O, Ho, Wo) with
 * Ho = (H + 2*pad - kh) / stride + 1. Direct kernels for stride 1, im2col + sgemm otherwise. */
lb_tensor *lb_conv2d(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride, int pad);
/* lb_maxpool2d(lb_conv2d(x, w, b, stride, pad), 2, 2, 0) as one op where the direct stride-1
 * path applies (the usual 3x3 and 5x5 convolutions, output at least 2x2): the convolution's
 * output is pooled per image while in cache and never stored, and its gradient is rebuilt per
 * image from the pooled one. The same values and gradients as the two ops, bit for bit.
 * Elsewhere it records the two ops. */
lb_tensor *lb_conv2d_maxpool2(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride,
                              int pad);
/* For tests: makes conv2d use its portable C kernels even where AVX2 and FMA exist. */
void lb_conv2d_force_portable(bool on);
/* For tests: how conv2d's backward shares out dx on several threads. 0: as timing goes (a
 * thread done with its own images takes over dx from the others); 1: every image's dx by a
 * thread other than the one that computes its dW; 2: every thread computes its dW first, and
 * then the threads take the dx as they come. */
void lb_conv2d_force_steal(int mode);
/* For tests: makes batchnorm's row sums use their portable C code even where AVX2 exists. */
void lb_batchnorm_force_portable(bool on);
/* Max pooling, window k, stride s, padding pad (padded cells never win): (B, C, H, W) -> (B, C, Ho, Wo). */
lb_tensor *lb_maxpool2d(lb_graph *g, lb_tensor *x, int k, int stride, int pad);
/* Average pooling; padded cells count in the divisor (PyTorch's count_include_pad=True). */
lb_tensor *lb_avgpool2d(lb_graph *g, lb_tensor *x, int k, int stride, int pad);
/* Mean over H and W: (B, C, H, W) -> (B, C). */
lb_tensor *lb_global_avgpool(lb_graph *g, lb_tensor *x);

/* ---- normalisation (ops_norm.c) ------------------------------------------------------- */

/* Batch normalisation over channel dim 1 of x (B, C) or (B, C, H, W); gamma, beta (C)
 * trainable; running_mean, running_var (C) buffers. Training mode: normalises with the batch
 * statistics (biased variance) and updates running = (1-momentum)*running + momentum*batch
 * (unbiased variance, as PyTorch). Eval mode: uses the running statistics. */
lb_tensor *lb_batchnorm(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                        lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                        float eps);
/* relu(batchnorm(x)) as one op ("batchnorm_relu"): the same values and gradients as the two
 * ops (relu's rules: y > 0 passes dy), without relu's passes over the activation. */
lb_tensor *lb_batchnorm_relu(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                             lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                             float eps);
/* relu(batchnorm(x) + skip) as one op ("batchnorm_add_relu"), the end of a residual block:
 * the same values and gradients as the three ops (add's sum of batch-norm's rounded output
 * and skip; skip's gradient is relu's masked dy, handed over as its buffer when it is skip's
 * first) in one pass over the activations each way. skip has x's shape. */
lb_tensor *lb_batchnorm_add_relu(lb_graph *g, lb_tensor *x, lb_tensor *skip, lb_tensor *gamma,
                                 lb_tensor *beta, lb_tensor *running_mean,
                                 lb_tensor *running_var, float momentum, float eps);

#endif
