/* bn_fold.c: the two folding ops of bn_fold.h. Legend: O output channels, K elements per
 * output channel of w. inv[o] = 1 / sqrt(var[o] + eps) is a constant (frozen statistics). */
#include "quant/bn_fold.h"

#include <math.h>

typedef struct {
    float  eps;
    float *inv; /* (O) */
} fold_saved;

static float *inv_std(lb_graph *g, const lb_tensor *var, float eps)
{
    const int64_t O = var->shape[0];
    float *inv = lb_graph_alloc(g, (size_t)O * sizeof(float));
    if (inv)
        for (int64_t o = 0; o < O; o++) inv[o] = 1.0f / sqrtf(var->data[o] + eps);
    return inv;
}

/* ---- w_f = w * gamma * inv, per output channel ------------------------------------------ */

static void fold_weight_forward(lb_tensor *y)
{
    const lb_tensor *w = y->src[0], *gamma = y->src[1];
    const fold_saved *p = y->saved;
    const int64_t O = w->shape[0], K = lb_numel(w) / O;
    for (int64_t o = 0; o < O; o++) {
        const float k = gamma->data[o] * p->inv[o];
        for (int64_t i = 0; i < K; i++) y->data[o * K + i] = w->data[o * K + i] * k;
    }
}

static void fold_weight_backward(lb_tensor *y)
{
    lb_tensor *w = y->src[0], *gamma = y->src[1];
    const fold_saved *p = y->saved;
    const int64_t O = w->shape[0], K = lb_numel(w) / O;
    for (int64_t o = 0; o < O; o++) {
        const float *dy = y->grad + o * K;
        if (w->grad) { /* dw = dy * gamma * inv */
            const float k = gamma->data[o] * p->inv[o];
            for (int64_t i = 0; i < K; i++) w->grad[o * K + i] += dy[i] * k;
        }
        if (gamma->grad) { /* dgamma = inv * sum(dy * w) */
            double acc = 0.0;
            for (int64_t i = 0; i < K; i++) acc += (double)dy[i] * w->data[o * K + i];
            gamma->grad[o] += (float)acc * p->inv[o];
        }
    }
}

static const lb_op_def fold_weight_def = { "fold_weight", fold_weight_forward, fold_weight_backward,
                                           .overwrite = 0 };

static bool vec_of(const lb_tensor *t, int64_t O) { return t->n_dims == 1 && t->shape[0] == O; }

lb_tensor *lb_fold_weight(lb_graph *g, lb_tensor *w, lb_tensor *gamma, lb_tensor *var, float eps)
{
    if (!w || !gamma || !var || !lb_graph_ok(g)) return NULL;
    if (w->n_dims < 2 || !vec_of(gamma, w->shape[0]) || !vec_of(var, w->shape[0]))
        return lb_graph_fail(g, LB_ERR_SHAPE, "fold_weight: w, gamma and var disagree on channels");
    if (!(eps > 0.0f)) return lb_graph_fail(g, LB_ERR_ARG, "fold_weight: eps %g", eps);
    fold_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    p->eps = eps;
    if (!(p->inv = inv_std(g, var, eps))) return NULL;
    return lb_graph_record(g, &fold_weight_def, w->shape, w->n_dims, (lb_tensor *[]){ w, gamma },
                           2, p);
}

/* ---- b_f = beta + (b - mean) * gamma * inv ------------------------------------------------- */
/* src: gamma, beta, mean, [b] */

static void fold_bias_forward(lb_tensor *y)
{
    const lb_tensor *gamma = y->src[0], *beta = y->src[1], *mean = y->src[2], *b = y->src[3];
    const fold_saved *p = y->saved;
    for (int64_t o = 0; o < y->shape[0]; o++) {
        const float bo = b ? b->data[o] : 0.0f;
        y->data[o] = beta->data[o] + (bo - mean->data[o]) * gamma->data[o] * p->inv[o];
    }
}

static void fold_bias_backward(lb_tensor *y)
{
    lb_tensor *gamma = y->src[0], *beta = y->src[1], *mean = y->src[2], *b = y->src[3];
    const fold_saved *p = y->saved;
    for (int64_t o = 0; o < y->shape[0]; o++) {
        const float dy = y->grad[o], bo = b ? b->data[o] : 0.0f;
        if (beta->grad) beta->grad[o] += dy;                                          /* dbeta  */
        if (gamma->grad) gamma->grad[o] += dy * (bo - mean->data[o]) * p->inv[o];     /* dgamma */
        if (b && b->grad) b->grad[o] += dy * gamma->data[o] * p->inv[o];              /* db     */
    }
}

static const lb_op_def fold_bias_def = { "fold_bias", fold_bias_forward, fold_bias_backward,
                                         .overwrite = 0 };

lb_tensor *lb_fold_bias(lb_graph *g, lb_tensor *b, lb_tensor *gamma, lb_tensor *beta,
                        lb_tensor *mean, lb_tensor *var, float eps)
{
    if (!gamma || !beta || !mean || !var || !lb_graph_ok(g)) return NULL;
    const int64_t O = gamma->shape[0];
    if (!vec_of(gamma, O) || !vec_of(beta, O) || !vec_of(mean, O) || !vec_of(var, O) ||
        (b && !vec_of(b, O)))
        return lb_graph_fail(g, LB_ERR_SHAPE, "fold_bias: b, gamma, beta, mean, var disagree");
    if (!(eps > 0.0f)) return lb_graph_fail(g, LB_ERR_ARG, "fold_bias: eps %g", eps);
    fold_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    p->eps = eps;
    if (!(p->inv = inv_std(g, var, eps))) return NULL;
    lb_tensor *src[4] = { gamma, beta, mean, b };
    return lb_graph_record(g, &fold_bias_def, (int64_t[]){ O }, 1, src, b ? 4 : 3, p);
}
