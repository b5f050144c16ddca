/* ops_elementwise.c: add, mul, relu, reshape/flatten, dropout, sum.
 * Each op works on the flat element array; n is the element count. */
#include <string.h>

#include "autograd/simd.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"

static lb_tensor *shape_fail(lb_graph *g, const char *op, const lb_tensor *a, const lb_tensor *b)
{
    char s1[64], s2[64];
    return lb_graph_fail(g, LB_ERR_SHAPE, "%s: shapes %s and %s differ", op,
                         lb_shape_str(a, s1, sizeof s1), lb_shape_str(b, s2, sizeof s2));
}

/* ---- add: y = a + b ------------------------------------------------------------------- */

/* Elementwise ops are split over the pool in ranges of at least PAR_MIN elements. */
#define PAR_MIN 32768

LB_CLONES
static void add_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const float *restrict a = y->src[0]->data, *restrict b = y->src[1]->data;
    float *restrict o = y->data;
    for (int64_t i = lo; i < hi; i++) o[i] = a[i] + b[i];
}

static void add_forward(lb_tensor *y) { lb_parallel_for_dyn(lb_numel(y), PAR_MIN, add_forward_part, y); }

typedef struct {
    lb_tensor   *y;
    const float *dy;
    int          taken; /* the operand that took y's gradient buffer, or -1 */
} add_bwd;

LB_CLONES
static void add_backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const add_bwd *j = ctx;
    for (int k = 0; k < 2; k++) {
        const lb_tensor *s = j->y->src[k];
        if (s->grad && k != j->taken) lb_grad_pass(s->grad, j->dy, lo, hi, s->grad_fresh);
    }
}

/* A fresh operand takes y's gradient buffer itself (lb_grad_take), so the identity
 * gradient is not copied. */
static void add_backward(lb_tensor *y)
{
    add_bwd j = { y, y->grad, -1 };
    for (int k = 0; k < 2 && j.taken < 0; k++)
        if (lb_grad_take(y, y->src[k])) j.taken = k;
    if (j.taken < 0 || (j.taken == 0 && y->src[1]->grad))
        lb_parallel_for_dyn(lb_numel(y), PAR_MIN, add_backward_part, &j);
}

static const lb_op_def add_def = { "add", add_forward, add_backward, .overwrite = 3u };

lb_tensor *lb_add(lb_graph *g, lb_tensor *a, lb_tensor *b)
{
    if (!a || !b || !lb_graph_ok(g)) return NULL;
    if (!lb_same_shape(a, b)) return shape_fail(g, "add", a, b);
    return lb_graph_record(g, &add_def, a->shape, a->n_dims, (lb_tensor *[]){ a, b }, 2, NULL);
}

/* add_inplace: a += b in a's buffer; the backward is add's (it reads no data). */
LB_CLONES
static void add_inplace_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    float *restrict a = y->data; /* == src[0]->data */
    const float *restrict b = y->src[1]->data;
    for (int64_t i = lo; i < hi; i++) a[i] += b[i];
}

static void add_inplace_forward(lb_tensor *y)
{
    lb_parallel_for_dyn(lb_numel(y), PAR_MIN, add_inplace_forward_part, y);
}

static const lb_op_def add_inplace_def = { "add_inplace", add_inplace_forward, add_backward,
                                           .overwrite = 3u };

lb_tensor *lb_add_inplace(lb_graph *g, lb_tensor *a, lb_tensor *b)
{
    if (!a || !b || !lb_graph_ok(g)) return NULL;
    if (!lb_same_shape(a, b)) return shape_fail(g, "add", a, b);
    if (a == b || a->data == b->data) return lb_add(g, a, b);
    return lb_graph_record_inplace(g, &add_inplace_def, (lb_tensor *[]){ a, b }, 2, NULL);
}

/* ---- mul: y = a * b ------------------------------------------------------------------- */

static void mul_forward(lb_tensor *y)
{
    const float *a = y->src[0]->data, *b = y->src[1]->data;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++) y->data[i] = a[i] * b[i];
}

static void mul_backward(lb_tensor *y)
{
    lb_tensor *a = y->src[0], *b = y->src[1];
    const int64_t n = lb_numel(y);
    if (a->grad)
        for (int64_t i = 0; i < n; i++) a->grad[i] += y->grad[i] * b->data[i]; /* da = dy * b */
    if (b->grad)
        for (int64_t i = 0; i < n; i++) b->grad[i] += y->grad[i] * a->data[i]; /* db = dy * a */
}

static const lb_op_def mul_def = { "mul", mul_forward, mul_backward, .overwrite = 0 };

lb_tensor *lb_mul(lb_graph *g, lb_tensor *a, lb_tensor *b)
{
    if (!a || !b || !lb_graph_ok(g)) return NULL;
    if (!lb_same_shape(a, b)) return shape_fail(g, "mul", a, b);
    return lb_graph_record(g, &mul_def, a->shape, a->n_dims, (lb_tensor *[]){ a, b }, 2, NULL);
}

/* ---- relu ----------------------------------------------------------------------------- */

LB_CLONES
static void relu_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const float *restrict x = y->src[0]->data;
    float *restrict o = y->data;
    for (int64_t i = lo; i < hi; i++) o[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_forward(lb_tensor *y)
{
    lb_parallel_for_dyn(lb_numel(y), PAR_MIN, relu_forward_part, y);
}

/* dx[i] += dy[i] where v[i] > 0 (dx[i] = that, or 0, when dx is fresh), branch-free: dy is
 * masked with the bits of (v > 0), which the compiler vectorizes (with a select it emits a
 * branch, and the sign is random, so that branch mispredicts half the time). Adding +0.0f
 * where v <= 0 leaves dx unchanged, as skipping the add would, except that -0.0f becomes
 * +0.0f. v is relu's input, or its output when in place (positive at the same places). */
LB_CLONES
static void relu_mask_add(float *restrict dx, const float *restrict dy,
                          const float *restrict v, int64_t lo, int64_t hi, bool fresh)
{
    if (fresh) {
        for (int64_t i = lo; i < hi; i++) {
            uint32_t d;
            memcpy(&d, &dy[i], sizeof d);
            d &= -(uint32_t)(v[i] > 0.0f);
            memcpy(&dx[i], &d, sizeof d);
        }
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        uint32_t d;
        memcpy(&d, &dy[i], sizeof d);
        d &= -(uint32_t)(v[i] > 0.0f);
        float m;
        memcpy(&m, &d, sizeof m);
        dx[i] += m;
    }
}

static void relu_backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    relu_mask_add(y->src[0]->grad, y->grad, y->src[0]->data, lo, hi, y->src[0]->grad_fresh);
}

static void relu_backward(lb_tensor *y)
{
    if (y->src[0]->grad) lb_parallel_for_dyn(lb_numel(y), PAR_MIN, relu_backward_part, y);
}

static const lb_op_def relu_def = { "relu", relu_forward, relu_backward, .overwrite = 1u };

/* In place: the mask comes from the output (y > 0 exactly where x > 0). */
static void relu_inplace_backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    relu_mask_add(y->src[0]->grad, y->grad, y->data, lo, hi, y->src[0]->grad_fresh);
}

static void relu_inplace_backward(lb_tensor *y)
{
    if (y->src[0]->grad) lb_parallel_for_dyn(lb_numel(y), PAR_MIN, relu_inplace_backward_part, y);
}

LB_CLONES
static void relu_inplace_forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    float *restrict v = ((lb_tensor *)ctx)->data; /* input and output: one buffer */
    for (int64_t i = lo; i < hi; i++) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
}

static void relu_inplace_forward(lb_tensor *y)
{
    lb_parallel_for_dyn(lb_numel(y), PAR_MIN, relu_inplace_forward_part, y);
}

static const lb_op_def relu_inplace_def = { "relu_inplace", relu_inplace_forward,
                                            relu_inplace_backward, .overwrite = 1u };

lb_tensor *lb_relu_inplace(lb_graph *g, lb_tensor *x)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    return lb_graph_record_inplace(g, &relu_inplace_def, (lb_tensor *[]){ x }, 1, NULL);
}

lb_tensor *lb_relu(lb_graph *g, lb_tensor *x)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    return lb_graph_record(g, &relu_def, x->shape, x->n_dims, (lb_tensor *[]){ x }, 1, NULL);
}

/* ---- reshape (a copy, so the tape stays simple) ---------------------------------------- */

static void reshape_forward(lb_tensor *y)
{
    memcpy(y->data, y->src[0]->data, (size_t)lb_numel(y) * sizeof(float));
}

/* dx = dy: a fresh dx takes y's gradient buffer, as in add. */
static void reshape_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0];
    if (!x->grad) return;
    const int64_t n = lb_numel(y);
    if (lb_grad_take(y, x)) {
        /* x now holds dy */
    } else if (x->grad_fresh) {
        memcpy(x->grad, y->grad, (size_t)n * sizeof(float));
    } else {
        for (int64_t i = 0; i < n; i++) x->grad[i] += y->grad[i];
    }
}

static const lb_op_def reshape_def = { "reshape", reshape_forward, reshape_backward,
                                       .overwrite = 1u };

lb_tensor *lb_reshape(lb_graph *g, lb_tensor *x, const int64_t *shape, int n_dims)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    if (n_dims < 1 || n_dims > LB_MAX_DIMS || lb_shape_numel(shape, n_dims) != lb_numel(x))
        return lb_graph_fail(g, LB_ERR_SHAPE, "reshape: %lld elements into a shape of %lld",
                             (long long)lb_numel(x),
                             (long long)(n_dims >= 1 && n_dims <= LB_MAX_DIMS
                                             ? lb_shape_numel(shape, n_dims)
                                             : -1));
    return lb_graph_record(g, &reshape_def, shape, n_dims, (lb_tensor *[]){ x }, 1, NULL);
}

lb_tensor *lb_flatten(lb_graph *g, lb_tensor *x)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    if (x->n_dims < 1) return lb_graph_fail(g, LB_ERR_SHAPE, "flatten: scalar input");
    const int64_t B = x->shape[0];
    return lb_reshape(g, x, (int64_t[]){ B, B ? lb_numel(x) / B : 0 }, 2);
}

/* ---- dropout (inverted): y = x * mask / (1 - p) ---------------------------------------- */

static void dropout_forward(lb_tensor *y)
{
    const float *x = y->src[0]->data, *mask = y->saved;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++) y->data[i] = x[i] * mask[i];
}

static void dropout_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0];
    const float *mask = y->saved;
    if (!x->grad) return;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++) x->grad[i] += y->grad[i] * mask[i];
}

static const lb_op_def dropout_def = { "dropout", dropout_forward, dropout_backward,
                                       .overwrite = 0 };

lb_tensor *lb_dropout(lb_graph *g, lb_tensor *x, float p, lb_rng *rng)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return lb_graph_fail(g, LB_ERR_ARG, "dropout: p = %g (expected 0 <= p < 1)", p);
    if (!lb_graph_is_training(g) || p == 0.0f) return x;
    if (!rng) return lb_graph_fail(g, LB_ERR_ARG, "dropout: training mode needs an rng");
    const int64_t n = lb_numel(x);
    float *mask = lb_graph_alloc(g, (size_t)n * sizeof(float));
    if (!mask) return NULL;
    const float keep = 1.0f / (1.0f - p); /* the mask holds 0 or 1/(1-p) */
    for (int64_t i = 0; i < n; i++) mask[i] = lb_rng_uniform(rng) < p ? 0.0f : keep;
    return lb_graph_record(g, &dropout_def, x->shape, x->n_dims, (lb_tensor *[]){ x }, 1, mask);
}

/* ---- sum -> scalar -------------------------------------------------------------------- */

static void sum_forward(lb_tensor *y)
{
    const lb_tensor *x = y->src[0];
    double s = 0.0;
    for (int64_t i = 0, n = lb_numel(x); i < n; i++) s += x->data[i];
    y->data[0] = (float)s;
}

static void sum_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0];
    if (!x->grad) return;
    for (int64_t i = 0, n = lb_numel(x); i < n; i++) x->grad[i] += y->grad[0];
}

static const lb_op_def sum_def = { "sum", sum_forward, sum_backward, .overwrite = 0 };

lb_tensor *lb_sum(lb_graph *g, lb_tensor *x)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    return lb_graph_record(g, &sum_def, (int64_t[]){ 1 }, 1, (lb_tensor *[]){ x }, 1, NULL);
}
