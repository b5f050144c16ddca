/* ops_pool.c: max, average and global average pooling over NCHW images.
 *
 * Every pooling op works plane by plane (one (H, W) plane per image and channel). Windows
 * are clamped to the image, so padding is never read: for max pooling a padded cell never
 * wins, for average pooling it counts as a zero in the divisor k*k (PyTorch's
 * count_include_pad=True). As in PyTorch, pad <= k/2, so every window holds an input cell.
 * Not here: ceil_mode, dilation, count_include_pad=False, non-square windows.
 *
 * Legend: B batch, C channels, H W input size, Ho Wo output size, S = Ho*Wo, k window size.
 */
#include <math.h>
#include <string.h>

#include "autograd/simd.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"
#include "autograd/pool22.h"

typedef struct {
    int      k, stride, pad;
    /* (B, C, Ho, Wo), max pooling only: the winner's place in its window, i*k + j for input
     * cell (oh*stride - pad + i, ow*stride - pad + j); one byte when k*k <= 256 (a quarter
     * of an int32 index: vgg-small keeps 10 MB less at batch 128), else four */
    uint8_t *am8;
    int32_t *am32;
} pool_saved;

static inline void am_put(const pool_saved *p, int64_t o, int64_t r)
{
    if (p->am8) p->am8[o] = (uint8_t)r;
    else p->am32[o] = (int32_t)r;
}

/* The window of output (oh, ow), clamped to the image: rows [*h0, *h1), cols [*w0, *w1). */
static void window(const pool_saved *p, int64_t H, int64_t W, int64_t oh, int64_t ow,
                   int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1)
{
    const int64_t ih = oh * p->stride - p->pad, iw = ow * p->stride - p->pad;
    *h0 = ih < 0 ? 0 : ih;
    *h1 = ih + p->k < H ? ih + p->k : H;
    *w0 = iw < 0 ? 0 : iw;
    *w1 = iw + p->k < W ? iw + p->k : W;
}

/* Validates x, k, stride and pad for a k x k pooling op and allocates its saved data. */
static pool_saved *pool_setup(lb_graph *g, const char *op, const lb_tensor *x, int k,
                              int stride, int pad, int64_t *Ho, int64_t *Wo)
{
    char sx[64];
    lb_shape_str(x, sx, sizeof sx);
    if (x->n_dims != 4 || x->shape[2] < 1 || x->shape[3] < 1)
        return lb_graph_fail(g, LB_ERR_SHAPE, "%s: x %s (expected (B, C, H, W), H, W >= 1)",
                             op, sx);
    if (k < 1 || stride < 1 || pad < 0 || pad > k / 2)
        return lb_graph_fail(g, LB_ERR_ARG,
                             "%s: k %d, stride %d, pad %d (expected k >= 1, stride >= 1, "
                             "0 <= pad <= k/2)", op, k, stride, pad);
    const int64_t H = x->shape[2], W = x->shape[3];
    if (H + 2 * (int64_t)pad < k || W + 2 * (int64_t)pad < k)
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "%s: window %dx%d larger than x %s padded by %d (the output "
                             "would be empty)", op, k, k, sx, pad);
    if (H * W > INT32_MAX)
        return lb_graph_fail(g, LB_ERR_SHAPE, "%s: x %s has planes over 2^31 cells", op, sx);
    *Ho = (H + 2 * (int64_t)pad - k) / stride + 1;
    *Wo = (W + 2 * (int64_t)pad - k) / stride + 1;
    pool_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (pool_saved){ .k = k, .stride = stride, .pad = pad };
    return p;
}

/* ---- maxpool2d ------------------------------------------------------------------------ */

LB_CLONES
static void maxpool2d_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lb_tensor *x = y->src[0];
    const pool_saved *p = y->saved;
    const int64_t H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    if (p->k == 2 && p->stride == 2 && p->pad == 0) { /* the common case, without window() */
        for (int64_t pl = lo; pl < hi; pl++) {
            const float *xp = x->data + pl * H * W;
            float *yp = y->data + pl * Ho * Wo;
            uint8_t *ap = p->am8 + pl * Ho * Wo; /* k*k = 4: always one byte */
            for (int64_t oh = 0; oh < Ho; oh++)
                lb_pool22_row(xp + 2 * oh * W, xp + (2 * oh + 1) * W, Wo, yp + oh * Wo,
                              ap + oh * Wo);
        }
        return;
    }
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *xp = x->data + pl * H * W;   /* (H, W)   */
        float *yp = y->data + pl * Ho * Wo;       /* (Ho, Wo) */
        const int64_t o0 = pl * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t h0, h1, w0, w1;
                window(p, H, W, oh, ow, &h0, &h1, &w0, &w1);
                int64_t bh = h0, bw = w0;
                float best = xp[h0 * W + w0];
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        const float v = xp[ih * W + iw];
                        if (v > best || isnan(v)) { /* first max wins; NaN propagates */
                            best = v;
                            bh = ih;
                            bw = iw;
                        }
                    }
                yp[oh * Wo + ow] = best;
                am_put(p, o0 + oh * Wo + ow, (bh - (oh * p->stride - p->pad)) * p->k
                                                 + (bw - (ow * p->stride - p->pad)));
            }
    }
}

static void maxpool2d_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_parallel_for_dyn(x->shape[0] * x->shape[1], 16, maxpool2d_forward_part, y);
}

static void maxpool2d_backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    lb_tensor *x = y->src[0];
    if (!x->grad) return;
    const pool_saved *p = y->saved;
    const int64_t HW = x->shape[2] * x->shape[3], S = y->shape[2] * y->shape[3];
    const int64_t W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3], k = p->k;
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = x->grad + pl * HW;            /* (H, W)   */
        const float *dy = y->grad + pl * S;       /* (Ho, Wo) */
        if (k == 2 && p->stride == 2 && p->pad == 0 && x->grad_fresh) {
            /* the common case, dx fresh: each 2x2 window written whole (its winner's cell dy,
             * the others 0), then the odd last row or column no window covers */
            lb_pool22_back_plane(dy, p->am8 + pl * S, Ho, Wo, x->shape[2], W, dx);
            continue;
        }
        if (x->grad_fresh) memset(dx, 0, (size_t)HW * sizeof(float)); /* a plane, in cache */
        if (k == 2 && p->stride == 2 && p->pad == 0) { /* the common case: place 2*row + col */
            const uint8_t *ap = p->am8 + pl * S;
            for (int64_t oh = 0, s = 0; oh < Ho; oh++)
                for (int64_t ow = 0; ow < Wo; ow++, s++)
                    dx[(2 * oh + (ap[s] >> 1)) * W + 2 * ow + (ap[s] & 1)] += dy[s];
            continue;
        }
        for (int64_t oh = 0, s = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++, s++) { /* only the winner gets dy */
                const int64_t r = p->am8 ? p->am8[pl * S + s] : p->am32[pl * S + s];
                dx[(oh * p->stride - p->pad + r / k) * W + ow * p->stride - p->pad + r % k] += dy[s];
            }
    }
}

static void maxpool2d_backward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_parallel_for_dyn(x->shape[0] * x->shape[1], 16, maxpool2d_backward_part, y);
}

static const lb_op_def maxpool2d_def = { "maxpool2d", maxpool2d_forward, maxpool2d_backward,
                                         .overwrite = 1u };

lb_tensor *lb_maxpool2d(lb_graph *g, lb_tensor *x, int k, int stride, int pad)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    int64_t Ho = 0, Wo = 0;
    pool_saved *p = pool_setup(g, "maxpool2d", x, k, stride, pad, &Ho, &Wo);
    if (!p) return NULL;
    const int64_t B = x->shape[0], C = x->shape[1];
    const int64_t n_out = lb_shape_numel((int64_t[]){ B, C, Ho, Wo }, 4);
    if (n_out < 0 || (uint64_t)n_out > SIZE_MAX / sizeof(int32_t))
        return lb_graph_fail(g, LB_ERR_SHAPE, "maxpool2d: output size overflows");
    if (k * k <= 256) {
        if (!(p->am8 = lb_graph_alloc(g, (size_t)n_out))) return NULL;
    } else if (!(p->am32 = lb_graph_alloc(g, (size_t)n_out * sizeof(int32_t)))) {
        return NULL;
    }
    return lb_graph_record(g, &maxpool2d_def, (int64_t[]){ B, C, Ho, Wo }, 4,
                           (lb_tensor *[]){ x }, 1, p);
}

/* ---- avgpool2d: y = (sum of the window's input cells) / (k*k) ---------------------------- */

static void avgpool2d_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lb_tensor *x = y->src[0];
    const pool_saved *p = y->saved;
    const int64_t H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    const float inv = 1.0f / (float)(p->k * p->k);
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *xp = x->data + pl * H * W;   /* (H, W)   */
        float *yp = y->data + pl * Ho * Wo;       /* (Ho, Wo) */
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t h0, h1, w0, w1;
                window(p, H, W, oh, ow, &h0, &h1, &w0, &w1);
                float s = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
                yp[oh * Wo + ow] = s * inv;
            }
    }
}

static void avgpool2d_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_parallel_for_dyn(x->shape[0] * x->shape[1], 16, avgpool2d_forward_part, y);
}

static void avgpool2d_backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    lb_tensor *x = y->src[0];
    if (!x->grad) return;
    const pool_saved *p = y->saved;
    const int64_t H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    const float inv = 1.0f / (float)(p->k * p->k);
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = x->grad + pl * H * W;         /* (H, W)   */
        const float *dy = y->grad + pl * Ho * Wo; /* (Ho, Wo) */
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t h0, h1, w0, w1;
                window(p, H, W, oh, ow, &h0, &h1, &w0, &w1);
                const float d = dy[oh * Wo + ow] * inv; /* dx += dy / (k*k) on the window */
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dx[ih * W + iw] += d;
            }
    }
}

static void avgpool2d_backward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_parallel_for_dyn(x->shape[0] * x->shape[1], 16, avgpool2d_backward_part, y);
}

static const lb_op_def avgpool2d_def = { "avgpool2d", avgpool2d_forward, avgpool2d_backward,
                                         .overwrite = 0 };

lb_tensor *lb_avgpool2d(lb_graph *g, lb_tensor *x, int k, int stride, int pad)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    int64_t Ho = 0, Wo = 0;
    pool_saved *p = pool_setup(g, "avgpool2d", x, k, stride, pad, &Ho, &Wo);
    if (!p) return NULL;
    return lb_graph_record(g, &avgpool2d_def, (int64_t[]){ x->shape[0], x->shape[1], Ho, Wo },
                           4, (lb_tensor *[]){ x }, 1, p);
}

/* ---- global_avgpool: y (B, C) = mean over (H, W) of x (B, C, H, W) ------------------------ */

static void global_avgpool_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lb_tensor *x = y->src[0];
    const int64_t HW = x->shape[2] * x->shape[3];
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *xp = x->data + pl * HW;      /* (H, W) */
        double s = 0.0;
        for (int64_t i = 0; i < HW; i++) s += xp[i];
        y->data[pl] = (float)(s / (double)HW);
    }
}

static void global_avgpool_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_parallel_for_dyn(x->shape[0] * x->shape[1], 16, global_avgpool_forward_part, y);
}

static void global_avgpool_backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    lb_tensor *x = y->src[0];
    if (!x->grad) return;
    const int64_t HW = x->shape[2] * x->shape[3];
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = x->grad + pl * HW;            /* (H, W) */
        const float d = y->grad[pl] / (float)HW;  /* dx += dy / (H*W) */
        for (int64_t i = 0; i < HW; i++) dx[i] += d;
    }
}

static void global_avgpool_backward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_parallel_for_dyn(x->shape[0] * x->shape[1], 16, global_avgpool_backward_part, y);
}

static const lb_op_def global_avgpool_def = { "global_avgpool", global_avgpool_forward,
                                               global_avgpool_backward, .overwrite = 0 };

lb_tensor *lb_global_avgpool(lb_graph *g, lb_tensor *x)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    if (x->n_dims != 4 || x->shape[2] < 1 || x->shape[3] < 1) {
        char sx[64];
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "global_avgpool: x %s (expected (B, C, H, W), H, W >= 1)",
                             lb_shape_str(x, sx, sizeof sx));
    }
    return lb_graph_record(g, &global_avgpool_def, (int64_t[]){ x->shape[0], x->shape[1] }, 2,
                           (lb_tensor *[]){ x }, 1, NULL);
}
