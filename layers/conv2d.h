/* conv2d.h: 2-d convolution layer over NCHW images.
 *
 *     lb_conv2d_layer c;
 *     lb_conv2d_init(&c, ps, "conv1", 1, 6, 5, 5, 1, 2, true, &err);
 *     lb_tensor *y = lb_conv2d_forward(&c, g, x);   // (B, 1, 28, 28) -> (B, 6, 28, 28)
 */
#ifndef LB_CONV2D_H
#define LB_CONV2D_H

#include <stdbool.h>

#include "autograd/ops.h"
#include "autograd/rng.h"

typedef struct lb_conv2d_layer {
    lb_tensor *weight;            /* (out_c, in_c, kh, kw) */
    lb_tensor *bias;              /* (out_c), or NULL      */
    int        in_c, out_c, kh, kw, stride, pad;
} lb_conv2d_layer;

/* Declares "<name>.weight" (and "<name>.bias") in ps. LB_ERR_ARG for channels or kernel < 1,
 * stride < 1 or pad < 0. */
lb_status lb_conv2d_init(lb_conv2d_layer *c, lb_params *ps, const char *name, int in_c, int out_c,
                         int kh, int kw, int stride, int pad, bool bias, lb_error *err);
/* Kaiming-normal weights (std = sqrt(2 / (in_c*kh*kw))), zero bias. */
void lb_conv2d_reset(lb_conv2d_layer *c, lb_rng *rng);
/* x (B, in_c, H, W) -> (B, out_c, Ho, Wo). */
lb_tensor *lb_conv2d_forward(const lb_conv2d_layer *c, lb_graph *g, lb_tensor *x);
/* Output size of one spatial dim; < 1 when the kernel does not fit. */
int64_t lb_conv2d_out_size(int64_t in, int k, int stride, int pad);

#endif
