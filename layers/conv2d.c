/* conv2d.c: the convolution layer (im2col + sgemm in autograd/ops_conv.c). */
#include "layers/conv2d.h"

#include <math.h>

lb_status lb_conv2d_init(lb_conv2d_layer *c, lb_params *ps, const char *name, int in_c, int out_c,
                         int kh, int kw, int stride, int pad, bool bias, lb_error *err)
{
    char pname[LB_NAME_LEN + 16];
    *c = (lb_conv2d_layer){ .in_c = in_c, .out_c = out_c, .kh = kh, .kw = kw, .stride = stride,
                      .pad = pad };
    if (in_c < 1 || out_c < 1 || kh < 1 || kw < 1 || stride < 1 || pad < 0)
        return lb_errorf(err, LB_ERR_ARG,
                         "conv %s: in=%d out=%d k=%dx%d stride=%d pad=%d (channels, kernel and "
                         "stride must be >= 1, pad >= 0)",
                         name, in_c, out_c, kh, kw, stride, pad);
    snprintf(pname, sizeof pname, "%s.weight", name);
    if (!(c->weight = lb_params_add(ps, pname, (int64_t[]){ out_c, in_c, kh, kw }, 4, 0, err)))
        return err ? err->status : LB_ERR_ARG;
    if (bias) {
        snprintf(pname, sizeof pname, "%s.bias", name);
        if (!(c->bias = lb_params_add(ps, pname, (int64_t[]){ out_c }, 1, LB_PARAM_NO_DECAY, err)))
            return err ? err->status : LB_ERR_ARG;
    }
    return LB_OK;
}

void lb_conv2d_reset(lb_conv2d_layer *c, lb_rng *rng)
{
    const float std = sqrtf(2.0f / (float)(c->in_c * c->kh * c->kw));
    for (int64_t i = 0, n = lb_numel(c->weight); i < n; i++)
        c->weight->data[i] = std * lb_rng_normal(rng);
    if (c->bias)
        for (int i = 0; i < c->out_c; i++) c->bias->data[i] = 0.0f;
}

lb_tensor *lb_conv2d_forward(const lb_conv2d_layer *c, lb_graph *g, lb_tensor *x)
{
    return lb_conv2d(g, x, c->weight, c->bias, c->stride, c->pad);
}

int64_t lb_conv2d_out_size(int64_t in, int k, int stride, int pad)
{
    if (stride < 1 || in + 2 * (int64_t)pad < k) return 0;
    return (in + 2 * (int64_t)pad - k) / stride + 1;
}
