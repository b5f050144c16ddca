/* ops_norm.c: batch normalisation over channel dim 1, for (B, C) and (B, C, H, W) inputs.
 *
 *   y = gamma * xhat + beta,  xhat = (x - mean) * inv_std,  inv_std = 1 / sqrt(var + eps)
 *
 * Fused variants: batchnorm_relu, max(0, y); batchnorm_add_relu, max(0, y + skip), the end
 * of a residual block (each the same bits as the separate ops, one pass over memory).
 * Training mode normalises with the batch statistics of each channel (biased variance) and
 * updates the running statistics in place during the forward pass, as PyTorch does; eval
 * mode normalises with the running statistics, so y is an affine function of x. The mean and
 * inv_std actually used are saved for backward. Each row of S values is summed in float
 * lanes and the row sums in double: a channel of a ResNet batch holds over 10^5 values.
 * Channels are split over the thread pool.
 * Not here: layer/group/instance norm, affine=False (pass gamma = 1, beta = 0 instead).
 *
 * Legend: B batch, C channels, S = H*W positions per image (1 for 2-d input),
 * N = B*S values per channel.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/simd.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"

typedef struct {
    bool   training;  /* graph mode when the node was recorded                      */
    bool   relu;      /* batchnorm_relu: y = max(0, bn(x)), dy masked by y > 0      */
    bool   add;       /* batchnorm_add_relu: y = max(0, bn(x) + skip), skip = src[5] */
    bool   ran;       /* the forward pass has run: a second run (the output dropped
                         and recomputed for backward, lb_graph_drop) normalises with
                         the saved statistics and leaves the running ones and the mask */
    float  momentum, eps;
    float *mean;      /* (C) batch mean (training) or running mean (eval)          */
    float *inv_std;   /* (C) 1 / sqrt(var + eps) of the same statistics             */
    uint8_t *mask;    /* batchnorm_relu with gradients: bit s%8 of byte s/8 of row
                         (n, c) (rows of (S+7)/8 bytes) is y > 0; backward reads it, not
                         y, so y may be released once its readers have run */
} bn_saved;

/* Shape of x as (B, C, S). */
static void bn_dims(const lb_tensor *x, int64_t *B, int64_t *C, int64_t *S)
{
    *B = x->shape[0];
    *C = x->shape[1];
    *S = x->n_dims == 4 ? x->shape[2] * x->shape[3] : 1;
}

/* Row sums over S values in 32 float lanes: lane k takes the values at s = k mod 32, in
 * increasing s: four independent accumulators, so the sums do not wait on one add's latency
 * (in a ResNet-20 step the passes are bound by memory either way). The lanes are folded to
 * 8 in float, ((k) + (k+8)) + ((k+16) + (k+24)), and those added in double, so a channel's
 * sum never accumulates more than S/32 floats in single precision. The portable code does
 * the same operations in the same order as the AVX2 kernel, so both give the same bits. */
enum { RL_SUM, RL_SQ, RL_DY, RL_MASK_DY };
#define RL_LANES 32

static inline double lanes_fold(const float *l)
{
    float f[8];
    for (int k = 0; k < 8; k++) f[k] = (l[k] + l[k + 8]) + (l[k + 16] + l[k + 24]);
    return ((double)f[0] + f[1] + f[2] + f[3]) + ((double)f[4] + f[5] + f[6] + f[7]);
}

/* keep dy[s] (bit s of the ReLU mask set) or +0: relu's backward rule */
static inline float masked(float v, const uint8_t *bits, int64_t s)
{
    uint32_t d;
    memcpy(&d, &v, sizeof d);
    d &= -(uint32_t)(bits[s >> 3] >> (s & 7) & 1u);
    memcpy(&v, &d, sizeof d);
    return v;
}

/* The lanes of one row, by mode: RL_SUM a += x; RL_SQ a += x - m, b += (x - m)^2; RL_DY a += dy,
 * b += dy * (x - m); RL_MASK_DY the same after dy is masked in place by bits. Values from
 * s0 on (the AVX2 kernel's blocks end there) in lane s mod 32. */
static void row_lanes_tail(const float *restrict x, float *restrict dy, const uint8_t *bits,
                           int64_t s0, int64_t S, float m, int mode, float *restrict a,
                           float *restrict b)
{
    for (int64_t s = s0; s < S; s++) {
        const int k = (int)(s & (RL_LANES - 1));
        const float d = x[s] - m;
        if (mode == RL_SUM) {
            a[k] += x[s];
        } else if (mode == RL_SQ) {
            a[k] += d;
            b[k] += d * d;
        } else {
            const float g = mode == RL_MASK_DY ? (dy[s] = masked(dy[s], bits, s)) : dy[s];
            a[k] += g;
            b[k] += g * d;
        }
    }
}

#if LB_HAVE_AVX2
/* One block of 8 values at s into the accumulators a, b, by mode. */
LB_AVX2 static inline void lanes8_avx2(const float *restrict x, float *restrict dy,
                                       const uint8_t *restrict bits, int64_t s, __m256 vm,
                                       int mode, __m256 *a, __m256 *b)
{
    const __m256 xv = _mm256_loadu_ps(x + s);
    if (mode == RL_SUM) {
        *a = _mm256_add_ps(*a, xv);
    } else if (mode == RL_SQ) {
        const __m256 d = _mm256_sub_ps(xv, vm);
        *a = _mm256_add_ps(*a, d);
        *b = _mm256_add_ps(*b, _mm256_mul_ps(d, d));
    } else {
        __m256 g = _mm256_loadu_ps(dy + s);
        if (mode == RL_MASK_DY) {
            const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            const __m256i t = _mm256_and_si256(_mm256_set1_epi32(bits[s >> 3]), lane_bit);
            g = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(t, lane_bit)));
            _mm256_storeu_ps(dy + s, g);
        }
        *a = _mm256_add_ps(*a, g);
        *b = _mm256_add_ps(*b, _mm256_mul_ps(g, _mm256_sub_ps(xv, vm)));
    }
}

/* Whole blocks of 8, block s/8 into accumulator (s/8) mod 4. Returns the values done. */
LB_AVX2 static int64_t row_lanes_avx2(const float *restrict x, float *restrict dy,
                                      const uint8_t *restrict bits, int64_t S, float m, int mode,
                                      float *restrict la, float *restrict lb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const __m256 vm = _mm256_set1_ps(m);
    int64_t s = 0;
    for (; s + 32 <= S; s += 32) {
        lanes8_avx2(x, dy, bits, s, vm, mode, &a0, &b0);
        lanes8_avx2(x, dy, bits, s + 8, vm, mode, &a1, &b1);
        lanes8_avx2(x, dy, bits, s + 16, vm, mode, &a2, &b2);
        lanes8_avx2(x, dy, bits, s + 24, vm, mode, &a3, &b3);
    }
    if (s + 8 <= S) lanes8_avx2(x, dy, bits, s, vm, mode, &a0, &b0), s += 8;
    if (s + 8 <= S) lanes8_avx2(x, dy, bits, s, vm, mode, &a1, &b1), s += 8;
    if (s + 8 <= S) lanes8_avx2(x, dy, bits, s, vm, mode, &a2, &b2), s += 8;
    _mm256_storeu_ps(la, a0), _mm256_storeu_ps(la + 8, a1);
    _mm256_storeu_ps(la + 16, a2), _mm256_storeu_ps(la + 24, a3);
    _mm256_storeu_ps(lb, b0), _mm256_storeu_ps(lb + 8, b1);
    _mm256_storeu_ps(lb + 16, b2), _mm256_storeu_ps(lb + 24, b3);
    return s;
}
#endif

static bool force_portable;

void lb_batchnorm_force_portable(bool on) { force_portable = on; }

/* The lanes a, b of a row (zeroed first), by mode. */
static void row_lanes(const float *restrict x, float *restrict dy, const uint8_t *bits,
                      int64_t S, float m, int mode, float *restrict a, float *restrict b)
{
    int64_t s0 = 0;
#if LB_HAVE_AVX2
    if (lb_cpu_avx2() && !force_portable) s0 = row_lanes_avx2(x, dy, bits, S, m, mode, a, b);
#endif
    if (s0 == 0) memset(a, 0, RL_LANES * sizeof(float)), memset(b, 0, RL_LANES * sizeof(float));
    row_lanes_tail(x, dy, bits, s0, S, m, mode, a, b);
}

static inline double row_sum(const float *restrict x, int64_t S)
{
    float a[RL_LANES], b[RL_LANES];
    row_lanes(x, NULL, NULL, S, 0.0f, RL_SUM, a, b);
    return lanes_fold(a);
}

/* Sum of (x - m)^2 over a row. */
static inline double row_sq_dev(const float *restrict x, int64_t S, float m)
{
    float a[RL_LANES], b[RL_LANES];
    row_lanes(x, NULL, NULL, S, m, RL_SQ, a, b);
    return lanes_fold(b);
}

/* Rows of at least this many values get their statistics one row at a time (row_stats_merge):
 * a row of a (B, C, H, W) batch is H*W contiguous values, 64 to 1024 floats in the zoo, and
 * its second pass reads it from L1 instead of the whole channel from memory again. */
#define ROW_STATS_MIN 32

/* Merges a row of S values into the mean and sum of squared deviations (*mean, *m2) of the n
 * values before it (Chan et al.'s pairwise update). The row's own are two-pass ones: its sum,
 * then the deviations from its mean rounded to float, m, summed and squared (A = sum(x - m),
 * Q = sum((x - m)^2)): its exact mean is m + A/S and its squared deviations from it
 * Q - A^2/S (the corrected two-pass algorithm), so the float rounding of the first sum does
 * not reach the result. No cancellation when |mean| >> std, as with two passes over the
 * whole channel; the sums in another order. */
static inline void row_stats_merge(const float *restrict x, int64_t S, double n, double *mean,
                                   double *m2)
{
    float a[RL_LANES], b[RL_LANES];
    const float m = (float)(row_sum(x, S) / (double)S);
    row_lanes(x, NULL, NULL, S, m, RL_SQ, a, b);
    const double A = lanes_fold(a), mu = m + A / (double)S;
    double q = lanes_fold(b) - A * A / (double)S;
    if (q < 0.0) q = 0.0;
    const double tot = n + (double)S, d = mu - *mean;
    *mean += d * ((double)S / tot);
    *m2 += q + d * d * (n * (double)S / tot);
}

/* Sums of dy and of dy * (x - m) over a row; with bits, dy is first masked in place by them
 * (batchnorm_relu's backward: the bits relu's backward would have written), in the same
 * pass. */
static inline void row_dy_sums(float *restrict dy, const uint8_t *bits, const float *restrict x,
                               int64_t S, float m, double *sum_dy, double *sum_dy_xc)
{
    float a[RL_LANES], b[RL_LANES];
    row_lanes(x, dy, bits, S, m, bits ? RL_MASK_DY : RL_DY, a, b);
    *sum_dy += lanes_fold(a);
    *sum_dy_xc += lanes_fold(b);
}

/* bits[k] bit i = (y[8k + i] > 0), for a row of S values. */
#if LB_HAVE_AVX2
LB_AVX2 static int64_t mask_bits_avx2(const float *restrict y, int64_t S, uint8_t *restrict bits)
{
    const __m256 zero = _mm256_setzero_ps();
    int64_t s = 0;
    for (; s + 8 <= S; s += 8)
        bits[s >> 3] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(y + s), zero,
                                                                 _CMP_GT_OQ));
    return s;
}
#endif

static void mask_bits(const float *restrict y, int64_t S, uint8_t *restrict bits)
{
    int64_t s = 0;
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) s = mask_bits_avx2(y, S, bits);
#endif
    for (; s < S; s += 8) {
        unsigned b = 0;
        for (int64_t i = 0; i < 8 && s + i < S; i++) b |= (unsigned)(y[s + i] > 0.0f) << i;
        bits[s >> 3] = (uint8_t)b;
    }
}

/* y = a * (x - mean) + b over a row of S values, then relu's select when relu: subtracting
 * the mean first keeps precision when |mean| >> std (folding it into the offset would not).
 * With sp (batchnorm_add_relu), y = max(0, (a * (x - mean) + b) + sp): the sum that add
 * would have made of batch-norm's rounded output. The forward pass and bn_rows both use it,
 * so they give the same bits. */
static inline void bn_row(const float *restrict xp, const float *restrict sp,
                          float *restrict yp, int64_t S, float a, float mean, float b, bool relu)
{
    if (sp)
        for (int64_t s = 0; s < S; s++) {
            const float v = a * (xp[s] - mean) + b, u = v + sp[s];
            yp[s] = u > 0.0f ? u : 0.0f;
        }
    else if (relu)
        for (int64_t s = 0; s < S; s++) {
            const float v = a * (xp[s] - mean) + b;
            yp[s] = v > 0.0f ? v : 0.0f;
        }
    else
        for (int64_t s = 0; s < S; s++) yp[s] = a * (xp[s] - mean) + b;
}

#if LB_HAVE_AVX2
/* bn_row with relu (and sp when given) and mask_bits of its output in the same pass, whole
 * blocks of 8: the same operations in the same order (max(u, 0) is u > 0 ? u : +0, NaN
 * included; y > 0 exactly where u > 0). Returns the values done. */
LB_AVX2 static int64_t bn_row_mask_avx2(const float *restrict xp, const float *restrict sp,
                                        float *restrict yp, int64_t S, float a, float mean,
                                        float b, uint8_t *restrict bits)
{
    const __m256 va = _mm256_set1_ps(a), vm = _mm256_set1_ps(mean), vb = _mm256_set1_ps(b);
    const __m256 zero = _mm256_setzero_ps();
    int64_t s = 0;
    for (; s + 8 <= S; s += 8) {
        __m256 u = _mm256_add_ps(_mm256_mul_ps(va, _mm256_sub_ps(_mm256_loadu_ps(xp + s), vm)),
                                 vb);
        if (sp) u = _mm256_add_ps(u, _mm256_loadu_ps(sp + s));
        _mm256_storeu_ps(yp + s, _mm256_max_ps(u, zero));
        bits[s >> 3] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(u, zero, _CMP_GT_OQ));
    }
    return s;
}
#endif

/* bn_row then, with bits, the ReLU mask of the row (relu set): one pass with AVX2. */
static inline void bn_row_mask(const float *restrict xp, const float *restrict sp,
                               float *restrict yp, int64_t S, float a, float mean, float b,
                               bool relu, uint8_t *restrict bits)
{
    int64_t s = 0;
#if LB_HAVE_AVX2
    if (bits && lb_cpu_avx2() && !force_portable)
        s = bn_row_mask_avx2(xp, sp, yp, S, a, mean, b, bits);
#endif
    bn_row(xp + s, sp ? sp + s : NULL, yp + s, S - s, a, mean, b, relu);
    if (bits && s < S) mask_bits(yp + s, S - s, bits + (s >> 3));
}

/* Channels [lo, hi) of the forward pass; the op is split over channels. */
LB_CLONES
static void forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lb_tensor *x = y->src[0], *gamma = y->src[1], *beta = y->src[2];
    lb_tensor *rmean = y->src[3], *rvar = y->src[4];
    const bn_saved *p = y->saved;
    int64_t B, C, S;
    bn_dims(x, &B, &C, &S);
    const double N = (double)(B * S), m = p->momentum;
    for (int64_t c = lo; c < hi; c++) {
        if (p->training && !p->ran) { /* (a second run keeps the first one's statistics) */
            /* batch mean and biased variance; the running statistics move towards them
             * (unbiased variance). */
            double mean, sq;
            if (S >= ROW_STATS_MIN) { /* one pass over memory: each row's two passes in L1 */
                mean = 0.0, sq = 0.0;
                for (int64_t n = 0; n < B; n++)
                    row_stats_merge(x->data + (n * C + c) * S, S, (double)(n * S), &mean, &sq);
            } else { /* two passes: no cancellation when |mean| >> std */
                double sum = 0.0;
                sq = 0.0;
                for (int64_t n = 0; n < B; n++) sum += row_sum(x->data + (n * C + c) * S, S);
                mean = sum / N;
                for (int64_t n = 0; n < B; n++)
                    sq += row_sq_dev(x->data + (n * C + c) * S, S, (float)mean);
            }
            const double var = sq / N;
            p->mean[c] = (float)mean;
            p->inv_std[c] = (float)(1.0 / sqrt(var + p->eps));
            rmean->data[c] = (float)((1.0 - m) * rmean->data[c] + m * mean);
            rvar->data[c] = (float)((1.0 - m) * rvar->data[c] + m * var * N / (N - 1.0));
        } else if (!p->training) {
            p->mean[c] = rmean->data[c];
            p->inv_std[c] = (float)(1.0 / sqrt((double)rvar->data[c] + p->eps));
        }
        /* y = a * (x - mean) + beta, a = gamma * inv_std */
        const float a = gamma->data[c] * p->inv_std[c], mean = p->mean[c], b = beta->data[c];
        const bool with_mask = p->relu && p->mask && !p->ran;
        for (int64_t n = 0; n < B; n++)
            bn_row_mask(x->data + (n * C + c) * S,
                        p->add ? y->src[5]->data + (n * C + c) * S : NULL,
                        y->data + (n * C + c) * S, S, a, mean, b, p->relu,
                        with_mask ? p->mask + (n * C + c) * ((S + 7) / 8) : NULL);
    }
}

/* lb_op_def.rows: image n of y (C, S) into dst, with the statistics of the forward pass. */
LB_CLONES
static void bn_rows(const lb_tensor *y, int64_t n, float *dst)
{
    const lb_tensor *x = y->src[0], *gamma = y->src[1], *beta = y->src[2];
    const bn_saved *p = y->saved;
    int64_t B, C, S;
    bn_dims(x, &B, &C, &S);
    for (int64_t c = 0; c < C; c++)
        bn_row(x->data + (n * C + c) * S, NULL, dst + c * S, S, gamma->data[c] * p->inv_std[c],
               p->mean[c], beta->data[c], p->relu);
}

static void batchnorm_forward(lb_tensor *y)
{
    lb_parallel_for_dyn(y->src[0]->shape[1], 1, forward_part, y);
    ((bn_saved *)y->saved)->ran = true;
}

/* dgamma = sum(dy * xhat), dbeta = sum(dy) over a channel; and
 * training: dx = gamma * inv_std / N * (N*dy - sum(dy) - xhat * sum(dy * xhat))
 * eval:     dx = gamma * inv_std * dy (the statistics are constants).
 * The running statistics get no gradient. Channels [lo, hi). */
LB_CLONES
static void backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    lb_tensor *x = y->src[0], *gamma = y->src[1], *beta = y->src[2];
    const bn_saved *p = y->saved;
    int64_t B, C, S;
    bn_dims(x, &B, &C, &S);
    const double N = (double)(B * S);
    for (int64_t c = lo; c < hi; c++) {
        const float mean = p->mean[c], inv_std = p->inv_std[c];
        /* 1. channel sums of dy and dy * xhat (with relu: dy masked first, in place, as
         * relu's backward would have written it: the bits of dy where y > 0, else +0) */
        double sum_dy = 0.0, sum_dy_xc = 0.0;
        for (int64_t n = 0; n < B; n++) {
            float *dyr = y->grad + (n * C + c) * S;
            /* a batchnorm_relu that gets a gradient always has its mask (see batchnorm()) */
            row_dy_sums(dyr, p->relu ? p->mask + (n * C + c) * ((S + 7) / 8) : NULL,
                        x->data + (n * C + c) * S, S, mean, &sum_dy, &sum_dy_xc);
        }
        const double sum_dy_xhat = sum_dy_xc * inv_std;
        if (gamma->grad) gamma->grad[c] += (float)sum_dy_xhat;
        if (beta->grad) beta->grad[c] += (float)sum_dy;
        if (!x->grad) continue;
        /* 2. dx = k * (dy - mean_dy - xhat * mean_dy_xhat); the means vanish in eval mode */
        const float k = gamma->data[c] * inv_std;
        const float mean_dy = p->training ? (float)(sum_dy / N) : 0.0f;
        const float mean_dy_xhat = p->training ? (float)(sum_dy_xhat / N) : 0.0f;
        const float q = mean_dy_xhat * inv_std; /* xhat * mean_dy_xhat = (x - mean) * q */
        for (int64_t n = 0; n < B; n++) {
            const float *restrict xp = x->data + (n * C + c) * S;
            const float *restrict dy = y->grad + (n * C + c) * S;
            float *restrict dx = x->grad + (n * C + c) * S;
            if (x->grad_fresh) /* the first gradient to reach x: written, not added */
                for (int64_t s = 0; s < S; s++) dx[s] = k * (dy[s] - mean_dy - (xp[s] - mean) * q);
            else
                for (int64_t s = 0; s < S; s++) dx[s] += k * (dy[s] - mean_dy - (xp[s] - mean) * q);
        }
    }
}

/* skip's gradient from batchnorm_add_relu's masked dy: added, or copied when fresh */
LB_CLONES
static void skip_grad_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const lb_tensor *y = ctx;
    lb_grad_pass(y->src[5]->grad, y->grad, lo, hi, y->src[5]->grad_fresh);
}

static void batchnorm_backward(lb_tensor *y)
{
    lb_parallel_for_dyn(y->src[0]->shape[1], 1, backward_part, y);
    /* batchnorm_add_relu: y->grad now holds relu's masked dy (masked in place by the sums'
     * pass), which is skip's gradient as add passes it on: a fresh skip takes the buffer */
    if (((bn_saved *)y->saved)->add && y->src[5]->grad && !lb_grad_take(y, y->src[5]))
        lb_parallel_for_dyn(lb_numel(y), 32768, skip_grad_part, y);
}

static const lb_op_def batchnorm_def = { "batchnorm", batchnorm_forward, batchnorm_backward,
                                         .overwrite = 1u, .out_unused = true, .rows = bn_rows };
static const lb_op_def batchnorm_relu_def = { "batchnorm_relu", batchnorm_forward,
                                              batchnorm_backward, .overwrite = 1u,
                                              .out_unused = true, .rows = bn_rows };
/* (no rows: a residual block's output has more than one reader, so it is never dropped) */
static const lb_op_def batchnorm_add_relu_def = { "batchnorm_add_relu", batchnorm_forward,
                                                  batchnorm_backward,
                                                  .overwrite = 1u | 1u << 5,
                                                  .out_unused = true };

/* skip: batchnorm_add_relu's residual operand (relu then set), else NULL */
static lb_tensor *batchnorm(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                            lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                            float eps, bool relu, lb_tensor *skip)
{
    if (!x || !gamma || !beta || !running_mean || !running_var || !lb_graph_ok(g)) return NULL;
    char sx[64];
    lb_shape_str(x, sx, sizeof sx);
    if ((x->n_dims != 2 && x->n_dims != 4) || x->shape[1] < 1)
        return lb_graph_fail(g, LB_ERR_SHAPE, "batchnorm: x %s (expected (B, C) or (B, C, H, W))",
                             sx);
    if (skip && !lb_same_shape(skip, x)) {
        char ss[64];
        return lb_graph_fail(g, LB_ERR_SHAPE, "batchnorm_add_relu: skip %s for x %s (expected "
                             "the same shape)", lb_shape_str(skip, ss, sizeof ss), sx);
    }
    const int64_t C = x->shape[1];
    const lb_tensor *vec[4] = { gamma, beta, running_mean, running_var };
    static const char *const vec_name[4] = { "gamma", "beta", "running_mean", "running_var" };
    for (int i = 0; i < 4; i++)
        if (vec[i]->n_dims != 1 || vec[i]->shape[0] != C) {
            char sv[64];
            return lb_graph_fail(g, LB_ERR_SHAPE, "batchnorm: %s %s for x %s (expected (%lld))",
                                 vec_name[i], lb_shape_str(vec[i], sv, sizeof sv), sx,
                                 (long long)C);
        }
    if (!(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f) || !isfinite(eps))
        return lb_graph_fail(g, LB_ERR_ARG,
                             "batchnorm: momentum %g, eps %g (expected 0 <= momentum <= 1, "
                             "eps > 0)", momentum, eps);
    const bool training = lb_graph_is_training(g);
    const int64_t N = lb_numel(x) / C;
    if (training && N < 2)
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "batchnorm: x %s has %lld value per channel; training mode needs "
                             "at least 2 (hint: batch size > 1, or eval mode)",
                             sx, (long long)N);
    bn_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (bn_saved){ .training = training, .relu = relu, .add = skip != NULL,
                     .momentum = momentum, .eps = eps };
    p->mean = lb_graph_alloc(g, (size_t)C * sizeof(float));
    p->inv_std = lb_graph_alloc(g, (size_t)C * sizeof(float));
    if (!p->mean || !p->inv_std) return NULL;
    if (relu && lb_graph_grad_enabled(g)
        && (x->requires_grad || gamma->requires_grad || beta->requires_grad
            || (skip && skip->requires_grad))) {
        const int64_t rows = lb_numel(x) / (x->n_dims == 4 ? x->shape[2] * x->shape[3] : 1);
        const int64_t S = x->n_dims == 4 ? x->shape[2] * x->shape[3] : 1;
        if (!(p->mask = lb_graph_alloc(g, (size_t)(rows * ((S + 7) / 8))))) return NULL;
    }
    return lb_graph_record(g, skip ? &batchnorm_add_relu_def
                              : relu ? &batchnorm_relu_def
                                     : &batchnorm_def,
                           x->shape, x->n_dims,
                           (lb_tensor *[]){ x, gamma, beta, running_mean, running_var, skip },
                           skip ? 6 : 5, p);
}

lb_tensor *lb_batchnorm(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                        lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                        float eps)
{
    return batchnorm(g, x, gamma, beta, running_mean, running_var, momentum, eps, false, NULL);
}

lb_tensor *lb_batchnorm_relu(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                             lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                             float eps)
{
    return batchnorm(g, x, gamma, beta, running_mean, running_var, momentum, eps, true, NULL);
}

lb_tensor *lb_batchnorm_add_relu(lb_graph *g, lb_tensor *x, lb_tensor *skip, lb_tensor *gamma,
                                 lb_tensor *beta, lb_tensor *running_mean,
                                 lb_tensor *running_var, float momentum, float eps)
{
    if (!skip) return NULL; /* an earlier failure, kept in g */
    return batchnorm(g, x, gamma, beta, running_mean, running_var, momentum, eps, true, skip);
}
