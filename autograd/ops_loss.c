/* ops_loss.c: softmax cross-entropy, mean over the batch, with optional label smoothing eps
 * (PyTorch's CrossEntropyLoss(label_smoothing=eps): the target is (1-eps) onehot(y) + eps/C).
 *   forward:  loss = (1/B) sum_b [ logsumexp(z_b) - (1-eps) z_b[y_b] - (eps/C) sum_c z_b[c] ]
 *             (max subtracted first)
 *   backward: dz_b = dloss * (softmax(z_b) - target_b) / B
 * eps = 0 takes the plain expressions (z_b[y_b], onehot), bit for bit those without the option.
 * The softmax probabilities are kept in saved memory for backward. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"

typedef struct {
    int32_t *labels; /* (B) */
    float   *prob;   /* (B, C) softmax of the logits */
    float    eps;    /* label smoothing, in [0, 1) */
} ce_saved;

static void softmax_ce_forward(lb_tensor *y)
{
    const lb_tensor *z = y->src[0];
    ce_saved *s = y->saved;
    const int64_t B = z->shape[0], C = z->shape[1];
    double total = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *zb = z->data + b * C;
        float *pb = s->prob + b * C;
        float mx = zb[0];
        for (int64_t c = 1; c < C; c++) mx = zb[c] > mx ? zb[c] : mx;
        double se = 0.0;
        for (int64_t c = 0; c < C; c++) {
            pb[c] = expf(zb[c] - mx);
            se += pb[c];
        }
        const float inv = (float)(1.0 / se);
        for (int64_t c = 0; c < C; c++) pb[c] *= inv;
        if (s->eps == 0.0f) {
            total += log(se) + mx - zb[s->labels[b]];
        } else {
            double sz = 0.0;
            for (int64_t c = 0; c < C; c++) sz += zb[c];
            total += log(se) + mx - (1.0 - s->eps) * zb[s->labels[b]] - s->eps * sz / (double)C;
        }
    }
    y->data[0] = (float)(total / (double)B);
}

static void softmax_ce_backward(lb_tensor *y)
{
    lb_tensor *z = y->src[0];
    const ce_saved *s = y->saved;
    if (!z->grad) return;
    const int64_t B = z->shape[0], C = z->shape[1];
    const float k = y->grad[0] / (float)B;
    if (s->eps != 0.0f) {
        const float off = s->eps / (float)C, on = 1.0f - s->eps + off;
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++) {
                float p = s->prob[b * C + c] - (c == s->labels[b] ? on : off);
                z->grad[b * C + c] += k * p;
            }
        return;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            float p = s->prob[b * C + c] - (c == s->labels[b] ? 1.0f : 0.0f);
            z->grad[b * C + c] += k * p;
        }
}

static const lb_op_def softmax_ce_def = { "softmax_ce", softmax_ce_forward, softmax_ce_backward,
                                          .overwrite = 0 };

lb_tensor *lb_softmax_ce(lb_graph *g, lb_tensor *logits, const int32_t *labels)
{
    return lb_softmax_ce_smooth(g, logits, labels, 0.0f);
}

lb_tensor *lb_softmax_ce_smooth(lb_graph *g, lb_tensor *logits, const int32_t *labels, float eps)
{
    if (!logits || !lb_graph_ok(g)) return NULL;
    if (!(eps >= 0.0f && eps < 1.0f))
        return lb_graph_fail(g, LB_ERR_ARG, "softmax_ce: label smoothing %g outside [0, 1)",
                             (double)eps);
    if (logits->n_dims != 2 || logits->shape[0] < 1 || logits->shape[1] < 1) {
        char a[64];
        return lb_graph_fail(g, LB_ERR_SHAPE, "softmax_ce: logits %s (expected (B, C))",
                             lb_shape_str(logits, a, sizeof a));
    }
    const int64_t B = logits->shape[0], C = logits->shape[1];
    for (int64_t b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= C)
            return lb_graph_fail(g, LB_ERR_ARG, "softmax_ce: label %d at row %lld outside [0, %lld)",
                                 labels[b], (long long)b, (long long)C);
    ce_saved *s = lb_graph_alloc(g, sizeof *s);
    if (!s) return NULL;
    s->labels = lb_graph_alloc(g, (size_t)B * sizeof(int32_t));
    s->prob = lb_graph_alloc(g, (size_t)(B * C) * sizeof(float));
    if (!s->labels || !s->prob) return NULL;
    memcpy(s->labels, labels, (size_t)B * sizeof(int32_t));
    s->eps = eps;
    return lb_graph_record(g, &softmax_ce_def, (int64_t[]){ 1 }, 1, (lb_tensor *[]){ logits }, 1, s);
}
