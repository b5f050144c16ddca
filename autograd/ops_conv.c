/* ops_conv.c: 2-d convolution (cross-correlation, as PyTorch) by im2col + sgemm.
 *
 * Each image is unrolled into a scratch matrix col (K, S) whose row (c, i, j) holds the input
 * pixels that kernel tap (c, i, j) sees at every output position; then Y_n = W · col is one
 * sgemm. The scratch holds one image at a time (allocated by the constructor, reused by
 * backward, which re-unrolls the image instead of keeping B copies). A 1x1 kernel with
 * stride 1 and no padding skips im2col: the image already is col.
 * Not here: dilation, groups, asymmetric stride or padding, NHWC layout.
 *
 * Legend: B batch, C input channels, H W input size, O output channels, kh kw kernel size,
 * Ho Wo output size, S = Ho*Wo output positions, K = C*kh*kw unrolled patch length.
 */
#include <string.h>

#include "autograd/blas.h"
#include "autograd/ops.h"

typedef struct {
    int64_t C, H, W, kh, kw, Ho, Wo;
    int     stride, pad;
    float  *col;    /* (K, S) scratch for one image; NULL on the 1x1 direct path */
} conv_saved;

/* Output positions o in [*lo, *hi) whose input index o*stride - pad + k lies in [0, n_in):
 * the rest of the row reads zero padding. Lets the inner loops run without bounds checks. */
static void valid_range(int64_t n_in, int64_t n_out, int stride, int pad, int64_t k,
                        int64_t *lo, int64_t *hi)
{
    const int64_t first = pad - k;            /* o*stride >= first */
    const int64_t last = n_in - 1 + pad - k;  /* o*stride <= last  */
    int64_t l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int64_t h = last < 0 ? 0 : last / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col[(c*kh + i)*kw + j][oh*Wo + ow] = x[c][oh*stride - pad + i][ow*stride - pad + j], or 0
 * where that falls in the padding. */
static void im2col(const conv_saved *p, const float *restrict x /* (C, H, W) */,
                   float *restrict col /* (K, S) */)
{
    const int64_t H = p->H, W = p->W, Ho = p->Ho, Wo = p->Wo, S = Ho * Wo;
    const int stride = p->stride, pad = p->pad;
    for (int64_t c = 0; c < p->C; c++)
        for (int64_t i = 0; i < p->kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            for (int64_t j = 0; j < p->kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                float *row = col + ((c * p->kh + i) * p->kw + j) * S;
                /* rows [r0, r1) read the image; no row does when no column is valid */
                const int64_t n = ow1 - ow0, iw0 = ow0 * stride - pad + j;
                const int64_t r0 = n > 0 ? oh0 : 0, r1 = n > 0 ? oh1 : 0;
                memset(row, 0, (size_t)(r0 * Wo) * sizeof(float));
                for (int64_t oh = r0; oh < r1; oh++) {
                    float *r = row + oh * Wo;
                    const float *xr = x + (c * H + oh * stride - pad + i) * W + iw0;
                    for (int64_t ow = 0; ow < ow0; ow++) r[ow] = 0.0f;
                    if (stride == 1) {
                        memcpy(r + ow0, xr, (size_t)n * sizeof(float));
                    } else {
                        for (int64_t t = 0; t < n; t++) r[ow0 + t] = xr[t * stride];
                    }
                    for (int64_t ow = ow1; ow < Wo; ow++) r[ow] = 0.0f;
                }
                memset(row + r1 * Wo, 0, (size_t)((Ho - r1) * Wo) * sizeof(float));
            }
        }
}

/* The adjoint of im2col: dx[c][ih][iw] += every dcol entry that was read from (c, ih, iw).
 * Padding entries are dropped. */
static void col2im_add(const conv_saved *p, const float *restrict dcol /* (K, S) */,
                       float *restrict dx /* (C, H, W) */)
{
    const int64_t H = p->H, W = p->W, Ho = p->Ho, Wo = p->Wo, S = Ho * Wo;
    const int stride = p->stride, pad = p->pad;
    for (int64_t c = 0; c < p->C; c++)
        for (int64_t i = 0; i < p->kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            for (int64_t j = 0; j < p->kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                const float *row = dcol + ((c * p->kh + i) * p->kw + j) * S;
                const int64_t n = ow1 - ow0, iw0 = ow0 * stride - pad + j;
                if (n <= 0) continue; /* this tap only ever reads padding */
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    const float *r = row + oh * Wo + ow0;
                    float *xr = dx + (c * H + oh * stride - pad + i) * W + iw0;
                    if (stride == 1) { /* contiguous: lets the compiler vectorize */
                        for (int64_t t = 0; t < n; t++) xr[t] += r[t];
                    } else {
                        for (int64_t t = 0; t < n; t++) xr[t * stride] += r[t];
                    }
                }
            }
        }
}

/* y (B, O, Ho, Wo) = conv(x (B, C, H, W), w (O, C, kh, kw)) + b (O) */
static void conv2d_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0], *w = y->src[1], *b = y->src[2];
    const conv_saved *p = y->saved;
    const int64_t B = x->shape[0], O = w->shape[0];
    const int64_t K = p->C * p->kh * p->kw, S = p->Ho * p->Wo;
    for (int64_t n = 0; n < B; n++) {
        const float *xn = x->data + n * p->C * p->H * p->W;
        float *yn = y->data + n * O * S;
        const float *col = xn;
        if (p->col) {
            im2col(p, xn, p->col);
            col = p->col;
        }
        /* with a bias, start each output row at b[o] and let sgemm add to it (beta = 1) */
        if (b)
            for (int64_t o = 0; o < O; o++)
                for (int64_t s = 0; s < S; s++) yn[o * S + s] = b->data[o];
        /* Y_n (O, S) = W (O, K) · col (K, S) [+ Y_n] */
        lb_sgemm(false, false, O, S, K, 1.0f, w->data, K, col, S, b ? 1.0f : 0.0f, yn, S);
    }
}

static void conv2d_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0], *w = y->src[1], *b = y->src[2];
    const conv_saved *p = y->saved;
    const int64_t B = x->shape[0], O = w->shape[0];
    const int64_t K = p->C * p->kh * p->kw, S = p->Ho * p->Wo, CHW = p->C * p->H * p->W;
    /* 1. db[o] = sum over images and positions of dY[n][o] */
    if (b && b->grad)
        for (int64_t o = 0; o < O; o++) {
            double acc = 0.0;
            for (int64_t n = 0; n < B; n++) {
                const float *dy = y->grad + (n * O + o) * S;
                for (int64_t s = 0; s < S; s++) acc += dy[s];
            }
            b->grad[o] += (float)acc;
        }
    if (!w->grad && !x->grad) return;
    /* 2. per image: dW from the re-unrolled image, then dx through the same scratch */
    for (int64_t n = 0; n < B; n++) {
        const float *xn = x->data + n * CHW, *dyn = y->grad + n * O * S;
        if (w->grad) {
            const float *col = xn;
            if (p->col) {
                im2col(p, xn, p->col);
                col = p->col;
            }
            /* dW (O, K) += dY_n (O, S) · colᵀ (S, K) */
            lb_sgemm(false, true, O, K, S, 1.0f, dyn, S, col, S, 1.0f, w->grad, K);
        }
        if (!x->grad) continue;
        float *dxn = x->grad + n * CHW;
        if (p->col) {
            /* dcol (K, S) = Wᵀ (K, O) · dY_n (O, S); overwrites the unrolled image */
            lb_sgemm(true, false, K, S, O, 1.0f, w->data, K, dyn, S, 0.0f, p->col, S);
            col2im_add(p, p->col, dxn);
        } else {
            /* direct path, col is x_n itself: dX_n (C, S) += Wᵀ (C, O) · dY_n (O, S) */
            lb_sgemm(true, false, K, S, O, 1.0f, w->data, K, dyn, S, 1.0f, dxn, S);
        }
    }
}

static const lb_op_def conv2d_def = { "conv2d", conv2d_forward, conv2d_backward };

lb_tensor *lb_conv2d(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride, int pad)
{
    if (!x || !w || !lb_graph_ok(g)) return NULL;
    char sx[64], sw[64], sb[64];
    lb_shape_str(x, sx, sizeof sx);
    lb_shape_str(w, sw, sizeof sw);
    if (x->n_dims != 4 || w->n_dims != 4 || x->shape[1] != w->shape[1] || x->shape[1] < 1
        || x->shape[2] < 1 || x->shape[3] < 1 || w->shape[0] < 1 || w->shape[2] < 1
        || w->shape[3] < 1)
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "conv2d: x %s and w %s (expected x (B, C, H, W), w (O, C, kh, kw) "
                             "with the same C and non-empty dims)", sx, sw);
    if (b && (b->n_dims != 1 || b->shape[0] != w->shape[0]))
        return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: bias %s for w %s (expected (%lld))",
                             lb_shape_str(b, sb, sizeof sb), sw, (long long)w->shape[0]);
    if (stride < 1 || pad < 0)
        return lb_graph_fail(g, LB_ERR_ARG, "conv2d: stride %d, pad %d (expected stride >= 1, "
                             "pad >= 0)", stride, pad);
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    /* checked before dividing: C division truncates toward zero, so a kernel larger than
     * the padded input would otherwise give Ho = 1 */
    if (H + 2 * (int64_t)pad < kh || W + 2 * (int64_t)pad < kw)
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "conv2d: kernel %lldx%lld larger than input %s padded by %d "
                             "(the output would be empty)",
                             (long long)kh, (long long)kw, sx, pad);
    const int64_t P = pad;
    const int64_t Ho = (H + 2 * P - kh) / stride + 1, Wo = (W + 2 * P - kw) / stride + 1;

    conv_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (conv_saved){ .C = C, .H = H, .W = W, .kh = kh, .kw = kw, .Ho = Ho, .Wo = Wo,
                       .stride = stride, .pad = pad, .col = NULL };
    const bool direct = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    if (!direct) {
        const int64_t n_col = lb_shape_numel((int64_t[]){ C * kh * kw, Ho * Wo }, 2);
        if (n_col < 0 || (uint64_t)n_col > SIZE_MAX / sizeof(float))
            return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: im2col buffer for x %s, w %s "
                                 "overflows", sx, sw);
        p->col = lb_graph_alloc(g, (size_t)n_col * sizeof(float));
        if (!p->col) return NULL;
    }
    lb_tensor *src[3] = { x, w, b };
    return lb_graph_record(g, &conv2d_def, (int64_t[]){ B, O, Ho, Wo }, 4, src, b ? 3 : 2, p);
}
