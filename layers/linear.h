/* linear.h: fully connected layer y = x · Wᵀ + b.
 *
 * A layer is a plain struct of parameter handles and configuration; it owns no memory (its
 * tensors live in the model's lb_params) and has no backward (autograd does that).
 *
 *     lb_linear fc;
 *     lb_linear_init(&fc, ps, "fc1", 784, 256, true, &err);
 *     lb_tensor *y = lb_linear_forward(&fc, g, x);     // x (B, 784) -> y (B, 256)
 */
#ifndef LB_LINEAR_H
#define LB_LINEAR_H

#include <stdbool.h>

#include "autograd/ops.h"
#include "autograd/rng.h"

typedef struct lb_linear {
    lb_tensor *weight;  /* (out, in)          */
    lb_tensor *bias;    /* (out), or NULL     */
    int64_t    in, out;
} lb_linear;

/* Declares "<name>.weight" and "<name>.bias" in ps. LB_ERR_ARG for in or out < 1. */
lb_status lb_linear_init(lb_linear *l, lb_params *ps, const char *name, int64_t in, int64_t out,
                         bool bias, lb_error *err);
/* Kaiming-normal weights (std = sqrt(2 / in)), zero bias. Call after lb_params_finalize. */
void lb_linear_reset(lb_linear *l, lb_rng *rng);
/* x (B, in) -> (B, out); NULL when the graph has failed. */
lb_tensor *lb_linear_forward(const lb_linear *l, lb_graph *g, lb_tensor *x);

#endif
