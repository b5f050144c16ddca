/* ops_matmul.c: x · wᵀ and bias addition.
 * Legend: B batch, K input features, N output features, C channels, S = H*W spatial size. */
#include <string.h>

#include "autograd/simd.h"
#include "autograd/blas.h"
#include "autograd/ops.h"

/* ---- matmul_nt: y (B, N) = x (B, K) · w (N, K)ᵀ ---------------------------------------- */

static void matmul_nt_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0], *w = y->src[1];
    const int64_t B = x->shape[0], K = x->shape[1], N = w->shape[0];
    /* Y (B,N) = X (B,K) · Wᵀ (K,N) */
    lb_sgemm_par(false, true, B, N, K, 1.0f, x->data, K, w->data, K, 0.0f, y->data, N);
}

static void matmul_nt_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0], *w = y->src[1];
    const int64_t B = x->shape[0], K = x->shape[1], N = w->shape[0];
    /* dX (B,K) += dY (B,N) · W (N,K); = when dX is fresh */
    if (x->grad)
        lb_sgemm_par(false, false, B, K, N, 1.0f, y->grad, N, w->data, K,
                     x->grad_fresh ? 0.0f : 1.0f, x->grad, K);
    /* dW (N,K) += dYᵀ (N,B) · X (B,K); = when fresh (w is an op's output, e.g. a fake-quantized
     * weight) */
    if (w->grad)
        lb_sgemm_par(true, false, N, K, B, 1.0f, y->grad, N, x->data, K,
                     w->grad_fresh ? 0.0f : 1.0f, w->grad, K);
}

static const lb_op_def matmul_nt_def = { "matmul_nt", matmul_nt_forward, matmul_nt_backward,
                                         .overwrite = 3u, .out_unused = true };

lb_tensor *lb_matmul_nt(lb_graph *g, lb_tensor *x, lb_tensor *w)
{
    if (!x || !w || !lb_graph_ok(g)) return NULL;
    if (x->n_dims != 2 || w->n_dims != 2 || x->shape[1] != w->shape[1]) {
        char a[64], b[64];
        return lb_graph_fail(g, LB_ERR_SHAPE, "matmul_nt: x %s and w %s (expected (B,K), (N,K))",
                             lb_shape_str(x, a, sizeof a), lb_shape_str(w, b, sizeof b));
    }
    return lb_graph_record(g, &matmul_nt_def, (int64_t[]){ x->shape[0], w->shape[0] }, 2,
                           (lb_tensor *[]){ x, w }, 2, NULL);
}

/* ---- add_bias: y (B, C, S) = x (B, C, S) + b (C); S = 1 for 2-d input ------------------ */

static void bias_dims(const lb_tensor *x, int64_t *B, int64_t *C, int64_t *S)
{
    *B = x->shape[0];
    *C = x->shape[1];
    const int64_t bc = (*B) * (*C);
    *S = bc > 0 ? lb_numel(x) / bc : 0;
}

LB_CLONES
static void add_bias_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0], *b = y->src[1];
    int64_t B, C, S;
    bias_dims(x, &B, &C, &S);
    if (S == 1) { /* (B, C): a row at a time, so the loop runs over C and vectorizes */
        for (int64_t n = 0; n < B; n++) {
            const float *restrict xp = x->data + n * C, *restrict bp = b->data;
            float *restrict yp = y->data + n * C;
            for (int64_t c = 0; c < C; c++) yp[c] = xp[c] + bp[c];
        }
        return;
    }
    for (int64_t n = 0; n < B; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *xp = x->data + (n * C + c) * S;
            float *yp = y->data + (n * C + c) * S;
            const float bc = b->data[c];
            for (int64_t s = 0; s < S; s++) yp[s] = xp[s] + bc;
        }
}

/* dx = dy: a fresh dx takes y's gradient buffer (lb_grad_take). */
LB_CLONES
static void add_bias_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0], *b = y->src[1];
    int64_t B, C, S;
    bias_dims(x, &B, &C, &S);
    const int64_t n_all = B * C * S;
    if (b->grad && S == 1) { /* db[c] += dy[n][c] in order of n, as below, a row at a time */
        float *restrict db = b->grad;
        for (int64_t n = 0; n < B; n++) {
            const float *restrict dy = y->grad + n * C;
            for (int64_t c = 0; c < C; c++) db[c] += dy[c];
        }
    } else if (b->grad) {
        for (int64_t n = 0; n < B; n++)
            for (int64_t c = 0; c < C; c++) {
                const float *dy = y->grad + (n * C + c) * S;
                float s = 0.0f;
                for (int64_t k = 0; k < S; k++) s += dy[k];
                b->grad[c] += s; /* db[c] = sum over batch and space of dY */
            }
    }
    if (lb_grad_take(y, x)) {
        /* x now holds dy */
    } else if (x->grad && x->grad_fresh) {
        memcpy(x->grad, y->grad, (size_t)n_all * sizeof(float));
    } else if (x->grad) {
        float *restrict dx = x->grad;
        const float *restrict dy = y->grad;
        for (int64_t i = 0; i < n_all; i++) dx[i] += dy[i];
    }
}

static const lb_op_def add_bias_def = { "add_bias", add_bias_forward, add_bias_backward,
                                        .overwrite = 1u };

lb_tensor *lb_add_bias(lb_graph *g, lb_tensor *y, lb_tensor *b)
{
    if (!y || !b || !lb_graph_ok(g)) return NULL;
    if (y->n_dims < 2 || b->n_dims != 1 || b->shape[0] != y->shape[1]) {
        char a[64], c[64];
        return lb_graph_fail(g, LB_ERR_SHAPE, "add_bias: y %s and b %s (expected (B,C,...), (C))",
                             lb_shape_str(y, a, sizeof a), lb_shape_str(b, c, sizeof c));
    }
    return lb_graph_record(g, &add_bias_def, y->shape, y->n_dims, (lb_tensor *[]){ y, b }, 2, NULL);
}
