/* batchnorm.h: batch normalisation layer (per channel of dim 1).
 *
 *     lb_batchnorm_layer bn;
 *     lb_batchnorm_init(&bn, ps, "bn1", 16, 0.1f, 1e-5f, &err);
 *     lb_tensor *y = lb_batchnorm_forward(&bn, g, x);   // training or eval per lb_graph mode
 */
#ifndef LB_BATCHNORM_H
#define LB_BATCHNORM_H

#include "autograd/ops.h"

typedef struct lb_batchnorm_layer {
    lb_tensor *gamma, *beta;         /* (C) trainable, no weight decay        */
    lb_tensor *running_mean;         /* (C) buffer                            */
    lb_tensor *running_var;          /* (C) buffer                            */
    int        c;
    float      momentum, eps;
} lb_batchnorm_layer;

/* Declares <name>.weight, .bias (trainable) and .running_mean, .running_var (buffers). */
lb_status lb_batchnorm_init(lb_batchnorm_layer *bn, lb_params *ps, const char *name, int c,
                            float momentum, float eps, lb_error *err);
/* gamma = 1, beta = 0, running mean 0, running var 1 (PyTorch's initial state). */
void lb_batchnorm_reset(lb_batchnorm_layer *bn);
lb_tensor *lb_batchnorm_forward(const lb_batchnorm_layer *bn, lb_graph *g, lb_tensor *x);

#endif
