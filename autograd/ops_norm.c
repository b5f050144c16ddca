/* ops_norm.c: batch normalisation over channel dim 1, for (B, C) and (B, C, H, W) inputs.
 *
 *   y = gamma * xhat + beta,  xhat = (x - mean) * inv_std,  inv_std = 1 / sqrt(var + eps)
 *
 * Training mode normalises with the batch statistics of each channel (biased variance) and
 * updates the running statistics in place during the forward pass, as PyTorch does; eval
 * mode normalises with the running statistics, so y is an affine function of x. The mean and
 * inv_std actually used are saved for backward. Sums run in double: a channel of a ResNet
 * batch holds over 10^5 values.
 * Not here: layer/group/instance norm, affine=False (pass gamma = 1, beta = 0 instead).
 *
 * Legend: B batch, C channels, S = H*W positions per image (1 for 2-d input),
 * N = B*S values per channel.
 */
#include <math.h>

#include "autograd/ops.h"

typedef struct {
    bool   training;  /* graph mode when the node was recorded                      */
    float  momentum, eps;
    float *mean;      /* (C) batch mean (training) or running mean (eval)          */
    float *inv_std;   /* (C) 1 / sqrt(var + eps) of the same statistics             */
} bn_saved;

/* Shape of x as (B, C, S). */
static void bn_dims(const lb_tensor *x, int64_t *B, int64_t *C, int64_t *S)
{
    *B = x->shape[0];
    *C = x->shape[1];
    *S = x->n_dims == 4 ? x->shape[2] * x->shape[3] : 1;
}

/* Training mode: batch mean and biased variance of every channel -> p->mean, p->inv_std,
 * and the running statistics move towards the batch ones (unbiased variance). */
static void bn_batch_stats(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    lb_tensor *rmean = y->src[3], *rvar = y->src[4];
    const bn_saved *p = y->saved;
    int64_t B, C, S;
    bn_dims(x, &B, &C, &S);
    const double N = (double)(B * S), m = p->momentum;
    for (int64_t c = 0; c < C; c++) {
        double sum = 0.0;
        for (int64_t n = 0; n < B; n++) {
            const float *xp = x->data + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) sum += xp[s];
        }
        const double mean = sum / N;
        double sq = 0.0; /* two passes: no cancellation when |mean| >> std */
        for (int64_t n = 0; n < B; n++) {
            const float *xp = x->data + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) {
                const double d = xp[s] - mean;
                sq += d * d;
            }
        }
        const double var = sq / N;
        p->mean[c] = (float)mean;
        p->inv_std[c] = (float)(1.0 / sqrt(var + p->eps));
        rmean->data[c] = (float)((1.0 - m) * rmean->data[c] + m * mean);
        rvar->data[c] = (float)((1.0 - m) * rvar->data[c] + m * var * N / (N - 1.0));
    }
}

static void batchnorm_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0], *gamma = y->src[1], *beta = y->src[2];
    const lb_tensor *rmean = y->src[3], *rvar = y->src[4];
    const bn_saved *p = y->saved;
    int64_t B, C, S;
    bn_dims(x, &B, &C, &S);
    if (p->training) {
        bn_batch_stats(y);
    } else {
        for (int64_t c = 0; c < C; c++) {
            p->mean[c] = rmean->data[c];
            p->inv_std[c] = (float)(1.0 / sqrt((double)rvar->data[c] + p->eps));
        }
    }
    /* y = a * (x - mean) + beta per channel, a = gamma * inv_std; subtracting the mean
     * first keeps precision when |mean| >> std (folding it into the offset would not) */
    for (int64_t n = 0; n < B; n++)
        for (int64_t c = 0; c < C; c++) {
            const float a = gamma->data[c] * p->inv_std[c], mean = p->mean[c];
            const float b = beta->data[c];
            const float *xp = x->data + (n * C + c) * S;
            float *yp = y->data + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) yp[s] = a * (xp[s] - mean) + b;
        }
}

/* dgamma = sum(dy * xhat), dbeta = sum(dy) over a channel; and
 * training: dx = gamma * inv_std / N * (N*dy - sum(dy) - xhat * sum(dy * xhat))
 * eval:     dx = gamma * inv_std * dy (the statistics are constants).
 * The running statistics get no gradient. */
static void batchnorm_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0], *gamma = y->src[1], *beta = y->src[2];
    const bn_saved *p = y->saved;
    int64_t B, C, S;
    bn_dims(x, &B, &C, &S);
    const double N = (double)(B * S);
    for (int64_t c = 0; c < C; c++) {
        const float mean = p->mean[c], inv_std = p->inv_std[c];
        /* 1. channel sums of dy and dy * xhat */
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t n = 0; n < B; n++) {
            const float *xp = x->data + (n * C + c) * S, *dy = y->grad + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) {
                sum_dy += dy[s];
                sum_dy_xhat += (double)dy[s] * ((xp[s] - mean) * inv_std);
            }
        }
        if (gamma->grad) gamma->grad[c] += (float)sum_dy_xhat;
        if (beta->grad) beta->grad[c] += (float)sum_dy;
        if (!x->grad) continue;
        /* 2. dx = k * (dy - mean_dy - xhat * mean_dy_xhat); the means vanish in eval mode */
        const float k = gamma->data[c] * inv_std;
        const float mean_dy = p->training ? (float)(sum_dy / N) : 0.0f;
        const float mean_dy_xhat = p->training ? (float)(sum_dy_xhat / N) : 0.0f;
        for (int64_t n = 0; n < B; n++) {
            const float *xp = x->data + (n * C + c) * S, *dy = y->grad + (n * C + c) * S;
            float *dx = x->grad + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) {
                const float xhat = (xp[s] - mean) * inv_std;
                dx[s] += k * (dy[s] - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}

static const lb_op_def batchnorm_def = { "batchnorm", batchnorm_forward, batchnorm_backward };

lb_tensor *lb_batchnorm(lb_graph *g, lb_tensor *x, lb_tensor *gamma, lb_tensor *beta,
                        lb_tensor *running_mean, lb_tensor *running_var, float momentum,
                        float eps)
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
    *p = (bn_saved){ .training = training, .momentum = momentum, .eps = eps };
    p->mean = lb_graph_alloc(g, (size_t)C * sizeof(float));
    p->inv_std = lb_graph_alloc(g, (size_t)C * sizeof(float));
    if (!p->mean || !p->inv_std) return NULL;
    return lb_graph_record(g, &batchnorm_def, x->shape, x->n_dims,
                           (lb_tensor *[]){ x, gamma, beta, running_mean, running_var }, 5, p);
}
