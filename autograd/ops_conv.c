/* ops_conv.c: 2-d convolution (cross-correlation, as PyTorch) by im2col + sgemm.
 *
 * Images are split over the threads of the pool (parallel.h). Each image is unrolled into the
 * thread's scratch matrix col (K, S), whose row (c, i, j) holds the input pixels that kernel
 * tap (c, i, j) sees at every output position; then Y_n = W · col is one small sgemm that
 * runs from cache (measured here: a per-image (16 x 144) · (144 x 1024) product runs at 1.5x
 * the speed of one product over a chunk of 32 images, whose operands no longer fit in L2).
 * Backward re-unrolls each image instead of keeping B copies, accumulates dW per thread and
 * sums the partials in thread order. A 1x1 kernel with stride 1 and no padding skips im2col.
 * Not here: dilation, groups, asymmetric stride or padding, NHWC layout.
 *
 * Legend: B batch, C input channels, H W input size, O output channels, kh kw kernel size,
 * Ho Wo output size, S = Ho*Wo output positions, K = C*kh*kw unrolled patch length.
 */
#include <string.h>

#include "autograd/simd.h"
#include "autograd/blas.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"

typedef struct {
    int64_t C, H, W, kh, kw, Ho, Wo;
    int     stride, pad;
    bool    col;    /* unroll with im2col; false on the 1x1 direct path              */
    /* backward through the transposed convolution (stride 1, pad <= k - 1): dx is the
     * correlation of dy with the flipped, transposed kernel wf, padded by k - 1 - pad */
    bool    flip;
    int64_t tC, tH, tW, tkh, tkw, tHo, tWo; /* that correlation's geometry (dy -> dx)    */
    int     tpad;
    float  *wf;     /* (C, O, kh, kw): wf[c][o][i][j] = w[o][c][kh-1-i][kw-1-j]      */
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

/* Output rows [oa, ob) of the unrolled image: col[(c*kh + i)*kw + j][(oh - oa)*Wo + ow] =
 * x[c][oh*stride - pad + i][ow*stride - pad + j], or 0 where that falls in the padding.
 * Rows are short (8 to 32 values here), so inline loops beat memcpy/memset calls; GCC would
 * turn the plain loops into those calls, hence the attribute. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
LB_CLONES
static void im2col_g(int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t Ho,
                     int64_t Wo, int stride, int pad, const float *restrict x /* (C, H, W) */,
                     int64_t oa, int64_t ob, float *restrict col /* (C*kh*kw, (ob-oa)*Wo) */)
{
    (void)Ho;
    const int64_t S = (ob - oa) * Wo;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            if (oh0 < oa) oh0 = oa;
            if (oh1 > ob) oh1 = ob;
            for (int64_t j = 0; j < kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                float *restrict row = col + ((c * kh + i) * kw + j) * S - oa * Wo;
                /* rows [r0, r1) read the image; no row does when no column is valid */
                const int64_t n = ow1 - ow0, iw0 = ow0 * stride - pad + j;
                const int64_t r0 = n > 0 && oh0 < oh1 ? oh0 : oa, r1 = n > 0 && oh0 < oh1 ? oh1 : oa;
                for (int64_t t = oa * Wo; t < r0 * Wo; t++) row[t] = 0.0f;
                for (int64_t oh = r0; oh < r1; oh++) {
                    float *restrict r = row + oh * Wo;
                    const float *restrict xr = x + (c * H + oh * stride - pad + i) * W + iw0;
                    for (int64_t ow = 0; ow < ow0; ow++) r[ow] = 0.0f;
                    if (stride == 1) {
                        for (int64_t t = 0; t < n; t++) r[ow0 + t] = xr[t];
                    } else {
                        for (int64_t t = 0; t < n; t++) r[ow0 + t] = xr[t * stride];
                    }
                    for (int64_t ow = ow1; ow < Wo; ow++) r[ow] = 0.0f;
                }
                for (int64_t t = r1 * Wo; t < ob * Wo; t++) row[t] = 0.0f;
            }
        }
}

/* Rows [oa, ob) of x's unrolled image, for the convolution itself. */
static void im2col(const conv_saved *p, const float *restrict x, int64_t oa, int64_t ob,
                   float *restrict col)
{
    im2col_g(p->C, p->H, p->W, p->kh, p->kw, p->Ho, p->Wo, p->stride, p->pad, x, oa, ob, col);
}

/* Output rows per band: the unrolled band (K x rows*Wo floats) stays near BAND_FLOATS, about
 * a third of this machine's 512 KiB L2, so im2col writes it and sgemm reads it from cache. */
#ifndef BAND_FLOATS
#define BAND_FLOATS ((int64_t)40 << 10)
#endif
static int64_t band_rows(int64_t K, int64_t Wo, int64_t Ho)
{
    int64_t r = BAND_FLOATS / (K * Wo);
    return r < 1 ? 1 : r > Ho ? Ho : r;
}

/* The adjoint of im2col: dx[c][ih][iw] += every dcol entry that was read from (c, ih, iw).
 * Padding entries are dropped. */
LB_CLONES
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

/* The per-image work of forward and backward, split over images by lb_parallel_for. Each
 * thread unrolls one image at a time into its own scratch (K, S) and multiplies it with one
 * small sgemm, which stays in cache; BLAS itself runs single-threaded inside the region. */
typedef struct {
    const conv_saved *p;
    lb_tensor        *y, *x, *w, *b;
    int64_t           O, K, S, CHW;
} conv_job;

/* Scratch floats per thread: one band of the unrolled image (of x, or of dy for the
 * transposed backward) or, on the col2im path, the whole unrolled image; then the partial
 * dW (O, K). */
static int64_t col_floats(const conv_saved *p, bool x_grad)
{
    const int64_t K = p->C * p->kh * p->kw, tK = p->tC * p->tkh * p->tkw;
    int64_t n = p->col ? K * band_rows(K, p->Wo, p->Ho) * p->Wo : 0;
    if (p->flip) {
        const int64_t t = tK * band_rows(tK, p->tWo, p->tHo) * p->tWo;
        n = t > n ? t : n;
    } else if (p->col && x_grad) {
        n = K * p->Ho * p->Wo;
    }
    return n;
}

static void forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    const conv_job *j = ctx;
    const conv_saved *p = j->p;
    float *col = lb_parallel_scratch(tid);
    const int64_t R = band_rows(j->K, p->Wo, p->Ho);
    for (int64_t n = lo; n < hi; n++) {
        const float *xn = j->x->data + n * j->CHW;
        float *yn = j->y->data + n * j->O * j->S;
        if (!p->col) { /* Y_n (O, S) = W (O, C) · X_n (C, S) */
            lb_sgemm(false, false, j->O, j->S, j->K, 1.0f, j->w->data, j->K, xn, j->S, 0.0f, yn,
                     j->S);
        } else {
            for (int64_t oa = 0; oa < p->Ho; oa += R) { /* Y_n[:, band] = W (O, K) · col */
                const int64_t ob = oa + R < p->Ho ? oa + R : p->Ho, BS = (ob - oa) * p->Wo;
                im2col(p, xn, oa, ob, col);
                lb_sgemm(false, false, j->O, BS, j->K, 1.0f, j->w->data, j->K, col, BS, 0.0f,
                         yn + oa * p->Wo, j->S);
            }
        }
        if (j->b)
            for (int64_t o = 0; o < j->O; o++) {
                const float bo = j->b->data[o];
                float *r = yn + o * j->S;
                for (int64_t s = 0; s < j->S; s++) r[s] += bo;
            }
    }
}

/* y (B, O, Ho, Wo) = conv(x (B, C, H, W), w (O, C, kh, kw)) + b (O) */
static void conv2d_forward(lb_tensor *y)
{
    const conv_saved *p = y->saved;
    conv_job j = { p, y, y->src[0], y->src[1], y->src[2], y->src[1]->shape[0],
                   p->C * p->kh * p->kw, p->Ho * p->Wo, p->C * p->H * p->W };
    lb_parallel_for(j.x->shape[0], 1, forward_part, &j);
}

/* db[o] = sum over images and positions of dY[n][o], split over channels. */
static void bias_grad_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const conv_job *j = ctx;
    const int64_t B = j->x->shape[0];
    for (int64_t o = lo; o < hi; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < B; n++) {
            const float *dy = j->y->grad + (n * j->O + o) * j->S;
            float s4[8] = { 0 };
            int64_t s = 0;
            for (; s + 8 <= j->S; s += 8)
                for (int k = 0; k < 8; k++) s4[k] += dy[s + k];
            for (; s < j->S; s++) s4[0] += dy[s];
            for (int k = 0; k < 8; k++) acc += s4[k];
        }
        j->b->grad[o] += (float)acc;
    }
}

/* Per image: dW_t (O, K) += dY_n (O, S) · col_nᵀ (S, K) into this thread's partial sum, then
 * dx_n: either as the correlation of dY_n with the flipped kernel (one sgemm that adds into
 * dx directly), or through dcol = Wᵀ · dY_n (into the same scratch) and col2im. */
static void backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    const conv_job *j = ctx;
    const conv_saved *p = j->p;
    float *col = lb_parallel_scratch(tid);
    float *dw = col + col_floats(p, j->x->grad != NULL);
    const int64_t R = band_rows(j->K, p->Wo, p->Ho);
    const int64_t tK = p->tC * p->tkh * p->tkw, tR = p->flip ? band_rows(tK, p->tWo, p->tHo) : 0;
    for (int64_t n = lo; n < hi; n++) {
        const float *xn = j->x->data + n * j->CHW;
        const float *dy = j->y->grad + n * j->O * j->S;
        float *dx = j->x->grad ? j->x->grad + n * j->CHW : NULL;
        if (j->w->grad) {
            if (!p->col) { /* dW (O, C) += dY_n (O, S) · X_nᵀ (S, C) */
                lb_sgemm(false, true, j->O, j->K, j->S, 1.0f, dy, j->S, xn, j->S,
                         n == lo ? 0.0f : 1.0f, dw, j->K);
            } else {
                for (int64_t oa = 0; oa < p->Ho; oa += R) { /* dW += dY_n[:, band] · colᵀ */
                    const int64_t ob = oa + R < p->Ho ? oa + R : p->Ho, BS = (ob - oa) * p->Wo;
                    im2col(p, xn, oa, ob, col);
                    lb_sgemm(false, true, j->O, j->K, BS, 1.0f, dy + oa * p->Wo, j->S, col, BS,
                             n == lo && oa == 0 ? 0.0f : 1.0f, dw, j->K);
                }
            }
        }
        if (!dx) continue;
        if (p->flip) {
            /* dX_n[:, band] (C, .) += Wf (C, O*kh*kw) · unroll(dY_n)[:, band] */
            for (int64_t oa = 0; oa < p->tHo; oa += tR) {
                const int64_t ob = oa + tR < p->tHo ? oa + tR : p->tHo, BS = (ob - oa) * p->tWo;
                im2col_g(p->tC, p->tH, p->tW, p->tkh, p->tkw, p->tHo, p->tWo, 1, p->tpad, dy, oa,
                         ob, col);
                lb_sgemm(false, false, p->C, BS, tK, 1.0f, p->wf, tK, col, BS, 1.0f,
                         dx + oa * p->tWo, p->tHo * p->tWo);
            }
        } else if (p->col) {
            /* dcol (K, S) = Wᵀ (K, O) · dY_n (O, S); overwrites the unrolled image */
            lb_sgemm(true, false, j->K, j->S, j->O, 1.0f, j->w->data, j->K, dy, j->S, 0.0f, col,
                     j->S);
            col2im_add(p, col, j->S, dx);
        } else {
            /* direct path: dX_n (C, S) += Wᵀ (C, O) · dY_n (O, S) */
            lb_sgemm(true, false, j->K, j->S, j->O, 1.0f, j->w->data, j->K, dy, j->S, 1.0f, dx,
                     j->S);
        }
    }
}

static void conv2d_backward(lb_tensor *y)
{
    const conv_saved *p = y->saved;
    conv_job j = { p, y, y->src[0], y->src[1], y->src[2], y->src[1]->shape[0],
                   p->C * p->kh * p->kw, p->Ho * p->Wo, p->C * p->H * p->W };
    const int64_t B = j.x->shape[0];
    if (j.b && j.b->grad) lb_parallel_for(j.O, 1, bias_grad_part, &j);
    if (!j.w->grad && !j.x->grad) return;
    if (p->flip && j.x->grad) { /* wf[c][o][i][k] = w[o][c][kh-1-i][kw-1-k] */
        const int64_t C = p->C, kh = p->kh, kw = p->kw;
        for (int64_t o = 0; o < j.O; o++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t k = 0; k < kw; k++)
                        p->wf[((c * j.O + o) * kh + i) * kw + k] =
                            j.w->data[((o * C + c) * kh + kh - 1 - i) * kw + kw - 1 - k];
    }
    const int used = lb_parallel_count(B, 1);
    lb_parallel_for(B, 1, backward_part, &j);
    if (!j.w->grad) return;
    /* dW += the threads' partial sums, in thread order */
    const int64_t off = col_floats(p, j.x->grad != NULL), OK = j.O * j.K;
    for (int t = 0; t < used; t++) {
        const float *part = (const float *)lb_parallel_scratch(t) + off;
        for (int64_t i = 0; i < OK; i++) j.w->grad[i] += part[i];
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
    const bool direct = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    *p = (conv_saved){ .C = C, .H = H, .W = W, .kh = kh, .kw = kw, .Ho = Ho, .Wo = Wo,
                       .stride = stride, .pad = pad, .col = !direct };
    /* dx as a correlation when that is a plain stride-1 one; a 1x1 direct conv keeps its
     * single sgemm. The products: (C, tS, O*kh*kw) here against (C*kh*kw, S, O) for col2im,
     * so the same flops when O*H*W == C*Ho*Wo */
    p->flip = !direct && stride == 1 && pad <= kh - 1 && pad <= kw - 1 && x->requires_grad;
    if (p->flip) {
        p->tC = O, p->tH = Ho, p->tW = Wo, p->tkh = kh, p->tkw = kw, p->tHo = H, p->tWo = W;
        p->tpad = (int)(kh - 1 - pad);
        if (kh != kw) p->flip = false; /* one pad for both axes */
        /* worth it only when it multiplies no more than col2im's product does: true for
         * "same" convs with O <= C (ResNet), not for LeNet's unpadded 5x5 (5x the work) */
        if (O * H * W > C * Ho * Wo) p->flip = false;
    }
    if (p->flip) {
        p->wf = lb_graph_alloc(g, (size_t)(O * C * kh * kw) * sizeof(float));
        if (!p->wf) return NULL;
    }
    const int64_t n_scratch = lb_shape_numel((int64_t[]){ col_floats(p, x->requires_grad) + O * C * kh * kw, 1 },
                                             2);
    if (n_scratch < 0 || (uint64_t)n_scratch > SIZE_MAX / sizeof(float))
        return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: im2col buffer for x %s, w %s overflows",
                             sx, sw);
    lb_error e = { 0 };
    if (lb_parallel_reserve((size_t)n_scratch * sizeof(float), &e))
        return lb_graph_fail(g, e.status, "conv2d: %s", e.msg);
    lb_tensor *src[3] = { x, w, b };
    return lb_graph_record(g, &conv2d_def, (int64_t[]){ B, O, Ho, Wo }, 4, src, b ? 3 : 2, p);
}
