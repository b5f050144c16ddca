/* ops_norm.c: batch normalisation over channel dim 1, for (B, C) and (B, C, H, W) inputs.
 *
 *   y = gamma * xhat + beta,  xhat = (x - mean) * inv_std,  inv_std = 1 / sqrt(var + eps)
 *
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

/* Row sums over S values, in 8 float lanes (lane k takes the values at s = k mod 8, the
 * same order in the portable and the AVX2 code, so both give the same bits); callers add the
 * row sums in double, so a channel's sum never accumulates more than S floats in single
 * precision. */
static inline double lanes_sum(const float *l)
{
    return ((double)l[0] + l[1] + l[2] + l[3]) + ((double)l[4] + l[5] + l[6] + l[7]);
}

#if LB_HAVE_AVX2
/* One kernel for the three row sums: a[k] += x (with dy == NULL and m unused: sum of x),
 * b[k] += (x - m)^2 (sq), or a[k] += dy, b[k] += dy * (x - m) (with dy). */
LB_AVX2 static void row_lanes_avx2(const float *restrict x, const float *restrict dy, int64_t S,
                                   float m, bool sq, float *restrict la, float *restrict lb)
{
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    const __m256 vm = _mm256_set1_ps(m);
    int64_t s = 0;
    if (dy)
        for (; s + 8 <= S; s += 8) {
            const __m256 d = _mm256_loadu_ps(dy + s);
            a = _mm256_add_ps(a, d);
            b = _mm256_add_ps(b, _mm256_mul_ps(d, _mm256_sub_ps(_mm256_loadu_ps(x + s), vm)));
        }
    else if (sq)
        for (; s + 8 <= S; s += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + s), vm);
            b = _mm256_add_ps(b, _mm256_mul_ps(d, d));
        }
    else
        for (; s + 8 <= S; s += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(x + s));
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(lb, b);
    for (; s < S; s++) {
        const float d = x[s] - m;
        if (dy) {
            la[s & 7] += dy[s];
            lb[s & 7] += dy[s] * d;
        } else if (sq) {
            lb[s & 7] += d * d;
        } else {
            la[s & 7] += x[s];
        }
    }
}
#endif

static inline double row_sum(const float *restrict x, int64_t S)
{
    float l[8] = { 0 };
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) {
        float u[8];
        row_lanes_avx2(x, NULL, S, 0.0f, false, l, u);
        return lanes_sum(l);
    }
#endif
    int64_t s = 0;
    for (; s + 8 <= S; s += 8)
        for (int k = 0; k < 8; k++) l[k] += x[s + k];
    for (; s < S; s++) l[s & 7] += x[s];
    return lanes_sum(l);
}

/* Sum of (x - m)^2 over a row. */
static inline double row_sq_dev(const float *restrict x, int64_t S, float m)
{
    float l[8] = { 0 };
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) {
        float u[8];
        row_lanes_avx2(x, NULL, S, m, true, u, l);
        return lanes_sum(l);
    }
#endif
    int64_t s = 0;
    for (; s + 8 <= S; s += 8)
        for (int k = 0; k < 8; k++) {
            const float d = x[s + k] - m;
            l[k] += d * d;
        }
    for (; s < S; s++) {
        const float d = x[s] - m;
        l[s & 7] += d * d;
    }
    return lanes_sum(l);
}

/* Sums of dy and of dy * (x - m) over a row. */
static inline void row_dy_sums(const float *restrict dy, const float *restrict x, int64_t S,
                               float m, double *sum_dy, double *sum_dy_xc)
{
    float a[8] = { 0 }, b[8] = { 0 };
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) {
        row_lanes_avx2(x, dy, S, m, false, a, b);
        *sum_dy += lanes_sum(a);
        *sum_dy_xc += lanes_sum(b);
        return;
    }
#endif
    int64_t s = 0;
    for (; s + 8 <= S; s += 8)
        for (int k = 0; k < 8; k++) {
            a[k] += dy[s + k];
            b[k] += dy[s + k] * (x[s + k] - m);
        }
    for (; s < S; s++) {
        a[s & 7] += dy[s];
        b[s & 7] += dy[s] * (x[s] - m);
    }
    *sum_dy += lanes_sum(a);
    *sum_dy_xc += lanes_sum(b);
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

/* mask_row_bits's 8-value blocks: each lane ANDed with all ones where its bit is set, else
 * with zero, as the scalar loop below. Returns the values done (a multiple of 8). */
#if LB_HAVE_AVX2
LB_AVX2 static int64_t mask_row_bits_avx2(float *restrict dy, const uint8_t *restrict bits,
                                          int64_t S)
{
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    int64_t s = 0;
    for (; s + 8 <= S; s += 8) {
        const __m256i b = _mm256_and_si256(_mm256_set1_epi32(bits[s >> 3]), lane_bit);
        const __m256  keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane_bit));
        _mm256_storeu_ps(dy + s, _mm256_and_ps(_mm256_loadu_ps(dy + s), keep));
    }
    return s;
}
#endif

/* dy[s] = bit s of bits ? dy[s] : +0 (the mask of mask_bits; relu's backward rule). */
static inline void mask_row_bits(float *restrict dy, const uint8_t *restrict bits, int64_t S)
{
    int64_t s = 0;
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) s = mask_row_bits_avx2(dy, bits, S);
#endif
    for (; s < S; s++) {
        uint32_t d;
        memcpy(&d, &dy[s], sizeof d);
        d &= -(uint32_t)(bits[s >> 3] >> (s & 7) & 1u);
        memcpy(&dy[s], &d, sizeof d);
    }
}

/* batchnorm_relu's first backward pass over a row in one: dy masked in place (mask_row_bits)
 * and its sums (row_dy_sums) from the masked values in the same loads; the same bits as the
 * two passes. */
#if LB_HAVE_AVX2
LB_AVX2 static int64_t row_mask_dy_sums_avx2(float *restrict dy, const uint8_t *restrict bits,
                                             const float *restrict x, int64_t S, float m,
                                             float *restrict la, float *restrict lb)
{
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256  vm = _mm256_set1_ps(m);
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    int64_t s = 0;
    for (; s + 8 <= S; s += 8) {
        const __m256i t = _mm256_and_si256(_mm256_set1_epi32(bits[s >> 3]), lane_bit);
        const __m256  keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(t, lane_bit));
        const __m256  d = _mm256_and_ps(_mm256_loadu_ps(dy + s), keep);
        _mm256_storeu_ps(dy + s, d);
        a = _mm256_add_ps(a, d);
        b = _mm256_add_ps(b, _mm256_mul_ps(d, _mm256_sub_ps(_mm256_loadu_ps(x + s), vm)));
    }
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(lb, b);
    return s;
}
#endif

/* mask_row_bits then row_dy_sums on one row. */
static inline void row_mask_dy_sums(float *restrict dy, const uint8_t *restrict bits,
                                    const float *restrict x, int64_t S, float m, double *sum_dy,
                                    double *sum_dy_xc)
{
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) {
        float a[8], b[8];
        int64_t s = row_mask_dy_sums_avx2(dy, bits, x, S, m, a, b);
        for (; s < S; s++) {
            uint32_t d;
            memcpy(&d, &dy[s], sizeof d);
            d &= -(uint32_t)(bits[s >> 3] >> (s & 7) & 1u);
            memcpy(&dy[s], &d, sizeof d);
            a[s & 7] += dy[s];
            b[s & 7] += dy[s] * (x[s] - m);
        }
        *sum_dy += lanes_sum(a);
        *sum_dy_xc += lanes_sum(b);
        return;
    }
#endif
    mask_row_bits(dy, bits, S);
    row_dy_sums(dy, x, S, m, sum_dy, sum_dy_xc);
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
        if (p->training) {
            /* batch mean and biased variance; the running statistics move towards them
             * (unbiased variance). Two passes: no cancellation when |mean| >> std. */
            double sum = 0.0, sq = 0.0;
            for (int64_t n = 0; n < B; n++) sum += row_sum(x->data + (n * C + c) * S, S);
            const double mean = sum / N;
            for (int64_t n = 0; n < B; n++)
                sq += row_sq_dev(x->data + (n * C + c) * S, S, (float)mean);
            const double var = sq / N;
            p->mean[c] = (float)mean;
            p->inv_std[c] = (float)(1.0 / sqrt(var + p->eps));
            rmean->data[c] = (float)((1.0 - m) * rmean->data[c] + m * mean);
            rvar->data[c] = (float)((1.0 - m) * rvar->data[c] + m * var * N / (N - 1.0));
        } else {
            p->mean[c] = rmean->data[c];
            p->inv_std[c] = (float)(1.0 / sqrt((double)rvar->data[c] + p->eps));
        }
        /* y = a * (x - mean) + beta, a = gamma * inv_std; subtracting the mean first keeps
         * precision when |mean| >> std (folding it into the offset would not) */
        const float a = gamma->data[c] * p->inv_std[c], mean = p->mean[c], b = beta->data[c];
        for (int64_t n = 0; n < B; n++) {
            const float *restrict xp = x->data + (n * C + c) * S;
            float *restrict yp = y->data + (n * C + c) * S;
            if (p->relu) { /* the same value, then relu's select */
                for (int64_t s = 0; s < S; s++) {
                    const float v = a * (xp[s] - mean) + b;
                    yp[s] = v > 0.0f ? v : 0.0f;
                }
                if (p->mask) mask_bits(yp, S, p->mask + (n * C + c) * ((S + 7) / 8));
            } else
                for (int64_t s = 0; s < S; s++) yp[s] = a * (xp[s] - mean) + b;
        }
    }
}

static void batchnorm_forward(lb_tensor *y)
{
    lb_parallel_for(y->src[0]->shape[1], 1, forward_part, y);
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
            if (p->relu)
                row_mask_dy_sums(dyr, p->mask + (n * C + c) * ((S + 7) / 8),
                                 x->data + (n * C + c) * S, S, mean, &sum_dy, &sum_dy_xc);
            else
                row_dy_sums(dyr, x->data + (n * C + c) * S, S, mean, &sum_dy, &sum_dy_xc);
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

static void batchnorm_backward(lb_tensor *y)
{
    lb_parallel_for(y->src[0]->shape[1], 1, backward_part, y);
}

static const lb_op_def batchnorm_def = { "batchnorm", batchnorm_forward, batchnorm_backward,
                                         .overwrite = 1u };
static const lb_op_def batchnorm_relu_def = { "batchnorm_relu", batchnorm_forward,
                                              batchnorm_backward, .overwrite = 1u };

static lb_tensor *batchnorm(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                            lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                            float eps, bool relu)
{
    if (!x || !gamma || !beta || !running_mean || !running_var || !lb_graph_ok(g)) return NULL;
    char sx[64];
    lb_shape_str(x, sx, sizeof sx);
    if ((x->n_dims != 2 && x->n_dims != 4) || x->shape[1] < 1)
        return lb_graph_fail(g, LB_ERR_SHAPE, "batchnorm: x %s (expected (B, C) or (B, C, H, W))",
                             sx);
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
    *p = (bn_saved){ .training = training, .relu = relu, .momentum = momentum, .eps = eps };
    p->mean = lb_graph_alloc(g, (size_t)C * sizeof(float));
    p->inv_std = lb_graph_alloc(g, (size_t)C * sizeof(float));
    if (!p->mean || !p->inv_std) return NULL;
    if (relu && lb_graph_grad_enabled(g)
        && (x->requires_grad || gamma->requires_grad || beta->requires_grad)) {
        const int64_t rows = lb_numel(x) / (x->n_dims == 4 ? x->shape[2] * x->shape[3] : 1);
        const int64_t S = x->n_dims == 4 ? x->shape[2] * x->shape[3] : 1;
        if (!(p->mask = lb_graph_alloc(g, (size_t)(rows * ((S + 7) / 8))))) return NULL;
    }
    return lb_graph_record(g, relu ? &batchnorm_relu_def : &batchnorm_def, x->shape, x->n_dims,
                           (lb_tensor *[]){ x, gamma, beta, running_mean, running_var }, 5, p);
}

lb_tensor *lb_batchnorm(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                        lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                        float eps)
{
    return batchnorm(g, x, gamma, beta, running_mean, running_var, momentum, eps, false);
}

lb_tensor *lb_batchnorm_relu(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                             lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                             float eps)
{
    return batchnorm(g, x, gamma, beta, running_mean, running_var, momentum, eps, true);
}
