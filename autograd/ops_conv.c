/* ops_conv.c: 2-d convolution (cross-correlation, as PyTorch) by im2col + sgemm.
 *
 * A chunk of G images is unrolled into a scratch matrix col (K, G*S) whose row (c, i, j) holds
 * the input pixels that kernel tap (c, i, j) sees at every output position of every image in
 * the chunk; then Y = W · col is one large sgemm (G is chosen so col stays near 16 MiB, which
 * keeps the sgemm big enough for BLAS to run near its peak, also on two threads). The scratch
 * is allocated by the constructor and reused by backward, which re-unrolls each chunk
 * instead of keeping B copies. A 1x1 kernel with stride 1 and no padding skips im2col.
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
    int64_t G;      /* images per chunk                                             */
    float  *col;    /* (K, G*S) unrolled chunk; NULL on the 1x1 direct path          */
    float  *buf;    /* (O, G*S) chunk of outputs or of their gradients               */
} conv_saved;

/* Target size of the col scratch, in floats. */
#define COL_FLOATS ((int64_t)4 << 20)

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
                   float *restrict col /* (K, ld), this image's S columns */, int64_t ld)
{
    const int64_t H = p->H, W = p->W, Ho = p->Ho, Wo = p->Wo;
    const int stride = p->stride, pad = p->pad;
    for (int64_t c = 0; c < p->C; c++)
        for (int64_t i = 0; i < p->kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            for (int64_t j = 0; j < p->kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                float *row = col + ((c * p->kh + i) * p->kw + j) * ld;
                /* rows [r0, r1) read the image; no row does when no column is valid */
                const int64_t n = ow1 - ow0, iw0 = ow0 * stride - pad + j;
                const int64_t r0 = n > 0 ? oh0 : 0, r1 = n > 0 ? oh1 : 0;
                memset(row, 0, (size_t)(r0 * Wo) * sizeof(float));
                for (int64_t oh = r0; oh < r1; oh++) {
                    float *r = row + oh * Wo;
                    const float *xr = x + (c * H + oh * stride - pad + i) * W + iw0;
                    for (int64_t ow = 0; ow < ow0; ow++) r[ow] = 0.0f;
                    if (stride == 1) { /* rows are short: an inline loop beats memcpy calls */
                        for (int64_t t = 0; t < n; t++) r[ow0 + t] = xr[t];
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
static void col2im_add(const conv_saved *p, const float *restrict dcol /* (K, ld) */,
                       int64_t ld, float *restrict dx /* (C, H, W) */)
{
    const int64_t H = p->H, W = p->W, Ho = p->Ho, Wo = p->Wo;
    const int stride = p->stride, pad = p->pad;
    for (int64_t c = 0; c < p->C; c++)
        for (int64_t i = 0; i < p->kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            for (int64_t j = 0; j < p->kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                const float *row = dcol + ((c * p->kh + i) * p->kw + j) * ld;
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

/* Unrolls images [n0, n0+G) of x into p->col (K, G*S); returns the matrix to multiply. On
 * the direct path (1x1, stride 1, no pad) with G == 1 the image itself is that matrix. */
static const float *unroll(const conv_saved *p, const float *x, int64_t n0, int64_t G)
{
    const int64_t CHW = p->C * p->H * p->W, S = p->Ho * p->Wo;
    if (!p->col) return x + n0 * CHW;
    for (int64_t g = 0; g < G; g++) im2col(p, x + (n0 + g) * CHW, p->col + g * S, G * S);
    return p->col;
}

/* y (B, O, Ho, Wo) = conv(x (B, C, H, W), w (O, C, kh, kw)) + b (O) */
static void conv2d_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0], *w = y->src[1], *b = y->src[2];
    const conv_saved *p = y->saved;
    const int64_t B = x->shape[0], O = w->shape[0];
    const int64_t K = p->C * p->kh * p->kw, S = p->Ho * p->Wo;
    for (int64_t n0 = 0; n0 < B; n0 += p->G) {
        const int64_t G = B - n0 < p->G ? B - n0 : p->G, GS = G * S;
        const float *col = unroll(p, x->data, n0, G);
        /* Ybuf (O, G*S) = W (O, K) · col (K, G*S) */
        lb_sgemm(false, false, O, GS, K, 1.0f, w->data, K, col, GS, 0.0f, p->buf, GS);
        /* scatter to y[n0+g][o][s], adding the bias */
        for (int64_t g = 0; g < G; g++)
            for (int64_t o = 0; o < O; o++) {
                const float *src = p->buf + o * GS + g * S;
                float *dst = y->data + ((n0 + g) * O + o) * S;
                const float bo = b ? b->data[o] : 0.0f;
                for (int64_t s2 = 0; s2 < S; s2++) dst[s2] = src[s2] + bo;
            }
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
    /* 2. per chunk: gather dY, dW from the re-unrolled chunk, then dx through the scratch */
    for (int64_t n0 = 0; n0 < B; n0 += p->G) {
        const int64_t G = B - n0 < p->G ? B - n0 : p->G, GS = G * S;
        const float *dy = y->grad + n0 * O * S; /* (O, S) on the direct path with G == 1 */
        if (p->G > 1 || p->col) {
            for (int64_t g = 0; g < G; g++) /* dYbuf (O, G*S) from dy[n0+g][o][s] */
                for (int64_t o = 0; o < O; o++)
                    memcpy(p->buf + o * GS + g * S, y->grad + ((n0 + g) * O + o) * S,
                           (size_t)S * sizeof(float));
            dy = p->buf;
        }
        if (w->grad) {
            const float *col = unroll(p, x->data, n0, G);
            /* dW (O, K) += dY (O, G*S) · colᵀ (G*S, K) */
            lb_sgemm(false, true, O, K, GS, 1.0f, dy, GS, col, GS, 1.0f, w->grad, K);
        }
        if (!x->grad) continue;
        if (p->col) {
            /* dcol (K, G*S) = Wᵀ (K, O) · dY (O, G*S); overwrites the unrolled chunk */
            lb_sgemm(true, false, K, GS, O, 1.0f, w->data, K, dy, GS, 0.0f, p->col, GS);
            for (int64_t g = 0; g < G; g++)
                col2im_add(p, p->col + g * S, GS, x->grad + (n0 + g) * CHW);
        } else {
            /* direct path, one image: dX_n (C, S) += Wᵀ (C, O) · dY_n (O, S) */
            lb_sgemm(true, false, K, S, O, 1.0f, w->data, K, dy, S, 1.0f, x->grad + n0 * CHW, S);
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
                       .stride = stride, .pad = pad, .G = 1, .col = NULL };
    const bool direct = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    const int64_t per_image = C * kh * kw * Ho * Wo;
    if (!direct) {
        p->G = per_image >= COL_FLOATS ? 1 : COL_FLOATS / per_image;
        if (p->G > B) p->G = B;
        const int64_t n_col = lb_shape_numel((int64_t[]){ per_image, p->G }, 2);
        if (n_col < 0 || (uint64_t)n_col > SIZE_MAX / sizeof(float))
            return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: im2col buffer for x %s, w %s "
                                 "overflows", sx, sw);
        p->col = lb_graph_alloc(g, (size_t)n_col * sizeof(float));
        if (!p->col) return NULL;
    }
    { /* the output chunk buffer (forward scatter, backward gather) */
        const int64_t n_buf = lb_shape_numel((int64_t[]){ O, Ho * Wo, p->G }, 3);
        if (n_buf < 0 || (uint64_t)n_buf > SIZE_MAX / sizeof(float))
            return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: output buffer for x %s overflows", sx);
        p->buf = lb_graph_alloc(g, (size_t)n_buf * sizeof(float));
        if (!p->buf) return NULL;
    }
    lb_tensor *src[3] = { x, w, b };
    return lb_graph_record(g, &conv2d_def, (int64_t[]){ B, O, Ho, Wo }, 4, src, b ? 3 : 2, p);
}
