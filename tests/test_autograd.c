/* test_autograd.c: the engine's tests (arena, tape, dense/elementwise/loss ops), and main()
 * of the test_autograd binary. Convolution, pooling and normalisation are tested in
 * test_autograd_conv.c. Three levels per op family: forward values on hand-computed cases,
 * finite-difference gradient rows, and end-to-end graphs (diamond reuse). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/blas.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"
#include "tests/gradcheck.h"
#include "tests/suites.h"

/* ---- forward values --------------------------------------------------------------------- */

START_TEST(test_matmul_bias_forward)
{
    lb_graph *g = lb_graph_new(0);
    /* x (2,3) · w (2,3)ᵀ + b */
    const float xs[] = { 1, 2, 3, 4, 5, 6 }, ws[] = { 1, 0, -1, 0.5f, 0.5f, 0.5f }, bs[] = { 10, 20 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, 3 }, 2, false);
    lb_tensor *w = lb_leaf_from(g, ws, (int64_t[]){ 2, 3 }, 2, false);
    lb_tensor *b = lb_leaf_from(g, bs, (int64_t[]){ 2 }, 1, false);
    lb_tensor *y = lb_add_bias(g, lb_matmul_nt(g, x, w), b);
    ck_assert_ptr_nonnull(y);
    const float want[] = { 1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5f + 20 };
    for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(y->data[i], want[i], 1e-6);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_elementwise_forward)
{
    lb_graph *g = lb_graph_new(0);
    const float as[] = { -1, 2, -3, 4 }, bs[] = { 5, -6, 7, 8 };
    lb_tensor *a = lb_leaf_from(g, as, (int64_t[]){ 4 }, 1, false);
    lb_tensor *b = lb_leaf_from(g, bs, (int64_t[]){ 4 }, 1, false);
    lb_tensor *s = lb_add(g, a, b), *p = lb_mul(g, a, b), *r = lb_relu(g, a);
    const float ws[] = { 4, -4, 4, 12 }, wp[] = { -5, -12, -21, 32 }, wr[] = { 0, 2, 0, 4 };
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(s->data[i], ws[i]);
        ck_assert_float_eq(p->data[i], wp[i]);
        ck_assert_float_eq(r->data[i], wr[i]);
    }
    lb_tensor *f = lb_flatten(g, lb_reshape(g, a, (int64_t[]){ 1, 2, 2 }, 3));
    ck_assert_int_eq(f->n_dims, 2);
    ck_assert_int_eq(f->shape[1], 4);
    ck_assert_float_eq(lb_sum(g, a)->data[0], 2.0f);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_softmax_ce_forward)
{
    lb_graph *g = lb_graph_new(0);
    /* row 0: equal logits -> loss log(3); row 1: huge logits must not overflow */
    const float zs[] = { 0, 0, 0, 1000, 0, -1000 };
    const int32_t ys[] = { 1, 0 };
    lb_tensor *z = lb_leaf_from(g, zs, (int64_t[]){ 2, 3 }, 2, false);
    lb_tensor *l = lb_softmax_ce(g, z, ys);
    ck_assert_ptr_nonnull(l);
    ck_assert_float_eq_tol(l->data[0], (float)(log(3.0) / 2.0), 1e-6);
    ck_assert(isfinite(l->data[0]));
    lb_graph_free(g);
}
END_TEST

/* Label smoothing: the loss against a double-precision reference of PyTorch's definition
 * (target (1-eps) onehot + eps/C), eps = 0 equal to lb_softmax_ce bit for bit, eps outside
 * [0, 1) refused. */
START_TEST(test_softmax_ce_smooth)
{
    lb_graph *g = lb_graph_new(0);
    const float zs[] = { 0.5f, -1.0f, 2.0f, 0.25f, 3.0f, 1.0f, -2.0f, 0.0f };
    const int32_t ys[] = { 2, 0 };
    const float eps = 0.1f;
    lb_tensor *z = lb_leaf_from(g, zs, (int64_t[]){ 2, 4 }, 2, false);
    lb_tensor *l = lb_softmax_ce_smooth(g, z, ys, eps);
    ck_assert_ptr_nonnull(l);
    double want = 0.0;
    for (int b = 0; b < 2; b++) {
        double se = 0.0;
        for (int c = 0; c < 4; c++) se += exp((double)zs[b * 4 + c]);
        for (int c = 0; c < 4; c++) {
            const double t = (c == ys[b] ? 1.0 - eps : 0.0) + eps / 4.0;
            want -= t * ((double)zs[b * 4 + c] - log(se));
        }
    }
    ck_assert_double_eq_tol(l->data[0], want / 2.0, 1e-6);
    const float plain = lb_softmax_ce(g, z, ys)->data[0];
    const float zero = lb_softmax_ce_smooth(g, z, ys, 0.0f)->data[0];
    ck_assert_mem_eq(&plain, &zero, sizeof plain);
    ck_assert_ptr_null(lb_softmax_ce_smooth(g, z, ys, 1.0f));
    lb_error err;
    ck_assert_int_eq(lb_graph_status(g, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "label smoothing"));
    lb_graph_free(g);
}
END_TEST

START_TEST(test_dropout_modes)
{
    lb_graph *g = lb_graph_new(0);
    lb_rng rng = lb_rng_make(7);
    float ones[1000];
    for (int i = 0; i < 1000; i++) ones[i] = 1.0f;
    lb_tensor *x = lb_leaf_from(g, ones, (int64_t[]){ 1000 }, 1, false);
    lb_tensor *y = lb_dropout(g, x, 0.25f, &rng);
    int zeros = 0;
    for (int i = 0; i < 1000; i++) {
        ck_assert(y->data[i] == 0.0f || fabsf(y->data[i] - 1.0f / 0.75f) < 1e-6f);
        zeros += y->data[i] == 0.0f;
    }
    ck_assert_int_gt(zeros, 180);
    ck_assert_int_lt(zeros, 320);
    lb_graph_set_training(g, false);
    ck_assert_ptr_eq(lb_dropout(g, x, 0.25f, &rng), x); /* identity in eval mode */
    lb_graph_free(g);
}
END_TEST

/* ---- gradient checks --------------------------------------------------------------------- */

static lb_tensor *b_matmul(lb_graph *g, lb_tensor **in) { return lb_matmul_nt(g, in[0], in[1]); }
static lb_tensor *b_bias2(lb_graph *g, lb_tensor **in) { return lb_add_bias(g, in[0], in[1]); }
static lb_tensor *b_bias4(lb_graph *g, lb_tensor **in) { return lb_add_bias(g, in[0], in[1]); }
static lb_tensor *b_add(lb_graph *g, lb_tensor **in) { return lb_add(g, in[0], in[1]); }
static lb_tensor *b_mul(lb_graph *g, lb_tensor **in) { return lb_mul(g, in[0], in[1]); }
static lb_tensor *b_relu(lb_graph *g, lb_tensor **in) { return lb_relu(g, in[0]); }
static lb_tensor *b_flatten(lb_graph *g, lb_tensor **in) { return lb_flatten(g, in[0]); }
static lb_tensor *b_sum(lb_graph *g, lb_tensor **in) { return lb_sum(g, in[0]); }
static lb_tensor *b_dropout(lb_graph *g, lb_tensor **in)
{
    lb_rng r = lb_rng_make(3); /* same mask on every evaluation */
    return lb_dropout(g, in[0], 0.3f, &r);
}
static lb_tensor *b_softmax_ce(lb_graph *g, lb_tensor **in)
{
    static const int32_t labels[4] = { 0, 3, 2, 4 };
    return lb_softmax_ce(g, in[0], labels);
}
static lb_tensor *b_softmax_ce_smooth(lb_graph *g, lb_tensor **in)
{
    static const int32_t labels[4] = { 5, 1, 0, 2 };
    return lb_softmax_ce_smooth(g, in[0], labels, 0.2f);
}
/* diamond: y = relu(x) * x + x (x feeds three ops) */
static lb_tensor *b_diamond(lb_graph *g, lb_tensor **in)
{
    return lb_add(g, lb_mul(g, lb_relu(g, in[0]), in[0]), in[0]);
}
/* a two-layer perceptron end to end */
static lb_tensor *b_mlp(lb_graph *g, lb_tensor **in)
{
    static const int32_t labels[3] = { 1, 0, 3 };
    lb_tensor *h = lb_relu(g, lb_add_bias(g, lb_matmul_nt(g, in[0], in[1]), in[2]));
    return lb_softmax_ce(g, lb_matmul_nt(g, h, in[3]), labels);
}

static const gradcheck_case cases[] = {
    { "matmul_nt", 2, { { 3, 5 }, { 4, 5 } }, { 2, 2 }, b_matmul, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "add_bias_2d", 2, { { 3, 4 }, { 4 } }, { 2, 1 }, b_bias2, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "add_bias_4d", 2, { { 2, 3, 2, 2 }, { 3 } }, { 4, 1 }, b_bias4, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "add", 2, { { 2, 3 }, { 2, 3 } }, { 2, 2 }, b_add, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "mul", 2, { { 2, 3 }, { 2, 3 } }, { 2, 2 }, b_mul, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "relu", 1, { { 3, 4 } }, { 2 }, b_relu, 1e-2, 2e-3, GC_AWAY_FROM_ZERO, 0 },
    { "flatten", 1, { { 2, 3, 2 } }, { 3 }, b_flatten, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "sum", 1, { { 7 } }, { 1 }, b_sum, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "dropout", 1, { { 4, 5 } }, { 2 }, b_dropout, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "softmax_ce", 1, { { 4, 6 } }, { 2 }, b_softmax_ce, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "softmax_ce_smooth", 1, { { 4, 6 } }, { 2 }, b_softmax_ce_smooth, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "diamond", 1, { { 3, 3 } }, { 2 }, b_diamond, 1e-2, 2e-3, GC_AWAY_FROM_ZERO, 0 },
    { "mlp", 4, { { 3, 5 }, { 6, 5 }, { 6 }, { 4, 6 } }, { 2, 2, 1, 2 }, b_mlp, 1e-2, 3e-3, GC_NORMAL, 0 },
};

START_TEST(test_op_gradient)
{
    const gradcheck_case *c = &cases[_i];
    gradcheck_result r = gradcheck_run(c, 1234u + (unsigned)_i);
    ck_assert_msg(r.status == LB_OK, "%s: %s", c->name, r.msg);
    ck_assert_msg(r.max_err <= c->tol, "%s: max err %.3g at input %d[%lld] > tol %.3g (%s)", c->name,
                  r.max_err, r.worst_input, (long long)r.worst_index, c->tol, r.msg);
}
END_TEST

/* diamond y = x*x + x: dy/dx = 2x + 1, checked exactly */
START_TEST(test_diamond_exact)
{
    lb_graph *g = lb_graph_new(0);
    const float xs[] = { -2, 0.5f, 3 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 3 }, 1, true);
    lb_tensor *l = lb_sum(g, lb_add(g, lb_mul(g, x, x), x));
    lb_error err = { 0 };
    ck_assert_int_eq(lb_backward(g, l, &err), LB_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq(x->grad[i], 2 * xs[i] + 1);
    lb_graph_free(g);
}
END_TEST

/* Ops that overwrite a fresh gradient (lb_op_def.overwrite) instead of adding to a zeroed
 * one: h = x*x feeds relu (overwrites) and add(h, h) (h twice: must add), in both tape
 * orders, and a buffer reused from an earlier node holds stale values that must not leak.
 * l = sum(relu(h) + (h + h) + x*x), so dl/dh = 3 where h > 0 and dl/dx = 8x. */
START_TEST(test_fresh_gradients)
{
    const float xs[] = { -2, 0.5f, 3, 1.25f };
    for (int order = 0; order < 2; order++) {
        lb_graph *g = lb_graph_new(0);
        lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 4 }, 1, true);
        lb_tensor *h = lb_mul(g, x, x), *a, *b;
        if (order == 0) {
            a = lb_relu(g, h);
            b = lb_add(g, h, h);
        } else {
            b = lb_add(g, h, h);
            a = lb_relu(g, h);
        }
        /* the gradients of the adds below are released (holding ones) before h's is taken,
         * so h's buffer is a reused one with stale values */
        lb_tensor *l = lb_sum(g, lb_add(g, lb_add(g, a, b), lb_mul(g, x, x)));
        lb_error err = { 0 };
        ck_assert_int_eq(lb_backward(g, l, &err), LB_OK);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(x->grad[i] == 8.0f * xs[i], "order %d: dx[%d] = %g, expected %g", order,
                          i, (double)x->grad[i], 8.0 * xs[i]);
        lb_graph_free(g);
    }
}
END_TEST

/* parameters (lb_params) accumulate across two backward passes until zeroed */
START_TEST(test_param_grad_accumulates)
{
    lb_error err = { 0 };
    lb_params *ps = lb_params_new();
    lb_tensor *w = lb_params_add(ps, "w", (int64_t[]){ 2 }, 1, 0, &err);
    lb_tensor *buf = lb_params_add(ps, "running", (int64_t[]){ 2 }, 1, LB_PARAM_BUFFER, &err);
    ck_assert_int_eq(lb_params_finalize(ps, &err), LB_OK);
    ck_assert_ptr_null(buf->grad);
    ck_assert_int_eq(lb_params_count(ps), 2);
    w->data[0] = 3, w->data[1] = -1;
    lb_graph *g = lb_graph_new(0);
    for (int k = 0; k < 2; k++) {
        lb_graph_reset(g);
        ck_assert_int_eq(lb_backward(g, lb_sum(g, lb_mul(g, w, w)), &err), LB_OK);
    }
    ck_assert_float_eq(w->grad[0], 12.0f); /* 2 passes x 2w */
    lb_params_zero_grad(ps);
    ck_assert_float_eq(w->grad[0], 0.0f);
    ck_assert_ptr_null(lb_params_add(ps, "late", (int64_t[]){ 1 }, 1, 0, &err));
    lb_graph_free(g);
    lb_params_free(ps);
}
END_TEST

/* ---- engine: sticky errors, arena, BLAS ---------------------------------------------------- */

START_TEST(test_sticky_shape_error)
{
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ 2, 3 }, 2, false);
    lb_tensor *w = lb_leaf(g, (int64_t[]){ 4, 5 }, 2, false);
    lb_tensor *y = lb_relu(g, lb_matmul_nt(g, x, w)); /* fails, then relu propagates NULL */
    ck_assert_ptr_null(y);
    lb_error err = { 0 };
    ck_assert_int_eq(lb_graph_status(g, &err), LB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "matmul_nt"));
    ck_assert_ptr_null(lb_add(g, x, x)); /* graph failed: everything returns NULL */
    lb_graph_reset(g);
    ck_assert(lb_graph_ok(g));
    const int32_t bad[2] = { 0, 7 };
    ck_assert_ptr_null(lb_softmax_ce(g, x, bad)); /* label outside [0, 3) */
    ck_assert_int_eq(lb_graph_status(g, &err), LB_ERR_ARG);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_arena_exhausted_is_error)
{
    lb_graph *g = lb_graph_new(1 << 20); /* 1 MiB cap */
    lb_tensor *x = lb_leaf(g, (int64_t[]){ 1024, 1024 }, 2, false); /* 4 MiB */
    ck_assert_ptr_null(x);
    lb_error err = { 0 };
    ck_assert_int_eq(lb_graph_status(g, &err), LB_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(err.msg, "arena"));
    lb_graph_free(g);
}
END_TEST

/* lb_arena_trim gives back the allocations from p on, in the current block only */
START_TEST(test_arena_trim)
{
    lb_arena a;
    lb_arena_init(&a, 0);
    char *p = lb_arena_alloc(&a, 1000), *q = lb_arena_alloc(&a, 64);
    ck_assert_ptr_eq(q, p + 1024); /* 64-byte rounding */
    ck_assert_ptr_eq(lb_arena_top(&a), q + 64);
    ck_assert(!lb_arena_trim(&a, q + 128)); /* past the top */
    ck_assert(lb_arena_trim(&a, q));
    ck_assert_uint_eq(a.used, 1024);
    ck_assert_ptr_eq(lb_arena_alloc(&a, 128), q); /* the next one starts there */
    ck_assert_uint_eq(a.high_water, 1024 + 128);
    ck_assert(lb_arena_trim(&a, p));
    ck_assert_uint_eq(a.used, 0);
    lb_arena_free(&a);
}
END_TEST

/* A released buffer at the data arena's top goes back to it: a larger one made next starts
 * there instead of above it (the backward pass releases a stage's gradients, then makes the
 * next stage's larger ones). */
START_TEST(test_released_top_reused)
{
    lb_graph *g = lb_graph_new(0);
    lb_graph_set_release_activations(g, true);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ 4096 }, 1, false);
    lb_tensor *x2 = lb_leaf(g, (int64_t[]){ 8192 }, 1, false);
    ck_assert(x && x2);
    memset(x->data, 0, 4096 * sizeof(float));
    memset(x2->data, 0, 8192 * sizeof(float));
    lb_tensor *y1 = lb_relu(g, x);
    const size_t u1 = lb_graph_data_arena(g)->used;
    lb_tensor *y2 = lb_relu(g, y1);
    ck_assert_uint_eq(lb_graph_data_arena(g)->used, u1 + 4096 * sizeof(float));
    lb_graph_discard(g, y2);
    ck_assert_uint_eq(lb_graph_data_arena(g)->used, u1);
    lb_tensor *y3 = lb_relu(g, x2); /* too big for any released run: at the top */
    ck_assert_ptr_nonnull(y3);
    ck_assert_uint_eq(lb_graph_data_arena(g)->used, u1 + 8192 * sizeof(float));
    ck_assert_uint_eq(lb_graph_data_arena(g)->high_water, u1 + 8192 * sizeof(float));
    lb_graph_free(g);
}
END_TEST

/* after the first step, a step of the same shape mallocs no arena block */
START_TEST(test_steady_state_no_malloc)
{
    lb_graph *g = lb_graph_new(0);
    float data[64 * 200];
    for (int i = 0; i < 64 * 200; i++) data[i] = (float)(i % 13) * 0.1f;
    uint64_t after_first = 0;
    for (int step = 0; step < 5; step++) {
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf_from(g, data, (int64_t[]){ 64, 200 }, 2, true);
        for (int k = 0; k < 50; k++) x = lb_relu(g, lb_add(g, x, x)); /* > 1 MiB: several blocks */
        lb_error err;
        ck_assert_int_eq(lb_backward(g, lb_sum(g, x), &err), LB_OK);
        if (step == 1) after_first = lb_graph_arena(g)->n_mallocs;
    }
    ck_assert_uint_gt(after_first, 0);
    ck_assert_uint_eq(lb_graph_arena(g)->n_mallocs, after_first);
    lb_graph_free(g);
}
END_TEST

/* One step of a net whose layers near the input are wider than those after them, and a
 * conv-BN-ReLU block with an in-place residual add: the gradients, the loss and the data-arena
 * high-water mark, with or without releasing activations during backward. */
static float release_step(lb_graph *g, bool release, float *gw, size_t *high, bool *dropped,
                          float *stats)
{
    enum { B = 64, D = 256, NW0 = 2 * D * 2 * D, NW1 = D * 2 * D, NWC = 4 * 4 * 9 };
    static float xs[B * 2 * D], w0[NW0], w1[NW1], xc[4 * 4 * 8 * 8], wc[NWC];
    lb_rng rng = lb_rng_make(5);
    for (int i = 0; i < B * 2 * D; i++) xs[i] = lb_rng_normal(&rng);
    for (int i = 0; i < NW0; i++) w0[i] = 0.05f * lb_rng_normal(&rng);
    for (int i = 0; i < NW1; i++) w1[i] = 0.05f * lb_rng_normal(&rng);
    for (int i = 0; i < 4 * 4 * 8 * 8; i++) xc[i] = lb_rng_normal(&rng);
    for (int i = 0; i < NWC; i++) wc[i] = 0.2f * lb_rng_normal(&rng);
    const float ones[4] = { 1, 1, 1, 1 }, zeros[4] = { 0 };
    float rm[4] = { 0 }, rv[4] = { 1, 1, 1, 1 };
    lb_graph_reset(g);
    lb_graph_set_release_activations(g, release);
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ B, 2 * D }, 2, false);
    lb_tensor *W0 = lb_leaf_from(g, w0, (int64_t[]){ 2 * D, 2 * D }, 2, true);
    lb_tensor *W1 = lb_leaf_from(g, w1, (int64_t[]){ D, 2 * D }, 2, true);
    lb_tensor *a1 = lb_relu(g, lb_matmul_nt(g, x, W0));
    lb_tensor *r = lb_relu(g, a1);
    lb_tensor *h = lb_matmul_nt(g, r, W1);
    lb_graph_drop(g, r); /* with release: recomputed for the matmul's and its own backward */
    ck_assert(!release || (r->data == NULL && r->recompute));
    for (int k = 0; k < 4; k++) h = lb_relu(g, h);
    lb_tensor *X = lb_leaf_from(g, xc, (int64_t[]){ 4, 4, 8, 8 }, 4, false);
    lb_tensor *Wc = lb_leaf_from(g, wc, (int64_t[]){ 4, 4, 3, 3 }, 4, true);
    lb_tensor *ga = lb_leaf_from(g, ones, (int64_t[]){ 4 }, 1, true);
    lb_tensor *be = lb_leaf_from(g, zeros, (int64_t[]){ 4 }, 1, true);
    lb_tensor *mean = lb_leaf_from(g, rm, (int64_t[]){ 4 }, 1, false);
    lb_tensor *var = lb_leaf_from(g, rv, (int64_t[]){ 4 }, 1, false);
    lb_tensor *c = lb_batchnorm(g, lb_conv2d(g, X, Wc, NULL, 1, 1), ga, be, mean, var, 0.1f,
                                1e-5f);
    lb_tensor *bn = c; /* owns the buffer the in-place add and relu write */
    c = lb_relu_inplace(g, lb_add_inplace(g, c, lb_relu(g, lb_conv2d(g, X, Wc, NULL, 1, 1))));
    /* BN-ReLU read only by max pooling: discarded after the pooling (its mask is kept) */
    lb_tensor *br = lb_batchnorm_relu(g, lb_conv2d(g, X, Wc, NULL, 1, 1), ga, be, mean, var,
                                      0.1f, 1e-5f);
    lb_tensor *mp = lb_maxpool2d(g, br, 2, 2, 0);
    lb_graph_discard(g, br);
    ck_assert(!release || br->data == NULL);
    /* BN-ReLU read by a pure op (standing in for a fake quantizer) read by a conv: both dropped,
     * recomputed in a chain for the conv's backward; the BN's second run normalises with the
     * first one's statistics and leaves the running ones as they were */
    float rm2[4] = { 0 }, rv2[4] = { 1, 1, 1, 1 };
    lb_tensor *mean2 = lb_leaf_from(g, rm2, (int64_t[]){ 4 }, 1, false);
    lb_tensor *var2 = lb_leaf_from(g, rv2, (int64_t[]){ 4 }, 1, false);
    lb_tensor *b2 = lb_batchnorm_relu(g, lb_conv2d(g, X, Wc, NULL, 1, 1), ga, be, mean2, var2,
                                      0.1f, 1e-5f);
    lb_tensor *q2 = lb_relu(g, b2);
    lb_tensor *c2 = lb_conv2d(g, q2, Wc, NULL, 1, 1);
    lb_graph_drop(g, q2);
    lb_graph_drop(g, b2);
    ck_assert(!release || (q2->data == NULL && b2->data == NULL));
    /* BN-ReLU read by a conv alone, dropped: the conv's backward takes its images from the
     * batch-norm's rows (lb_op_def.rows), so it is never recomputed whole */
    float rm3[4] = { 0 }, rv3[4] = { 1, 1, 1, 1 };
    lb_tensor *mean3 = lb_leaf_from(g, rm3, (int64_t[]){ 4 }, 1, false);
    lb_tensor *var3 = lb_leaf_from(g, rv3, (int64_t[]){ 4 }, 1, false);
    lb_tensor *b3 = lb_batchnorm_relu(g, lb_conv2d(g, X, Wc, NULL, 1, 1), ga, be, mean3, var3,
                                      0.1f, 1e-5f);
    lb_tensor *c3 = lb_conv2d(g, b3, Wc, NULL, 1, 1);
    lb_graph_drop(g, b3);
    lb_tensor *loss = lb_add(g, lb_add(g, lb_sum(g, lb_mul(g, h, h)), lb_sum(g, lb_mul(g, c, c))),
                             lb_add(g, lb_sum(g, lb_mul(g, mp, mp)), lb_sum(g, lb_mul(g, c2, c2))));
    loss = lb_add(g, loss, lb_sum(g, lb_mul(g, c3, c3)));
    lb_error err = { 0 };
    ck_assert_msg(loss != NULL && lb_backward(g, loss, &err) == LB_OK, "%s", err.msg);
    ck_assert(!release || b3->data == NULL);
    /* run again: r (for the matmul's backward), q2 and b2 (for the conv's); not b3, which its
     * conv reads by rows and its own backward (out_unused) does not read at all */
    ck_assert_int_eq(lb_graph_recomputed(g), release ? 3 : 0);
    memcpy(gw, W0->grad, NW0 * sizeof(float));
    memcpy(gw + NW0, W1->grad, NW1 * sizeof(float));
    memcpy(gw + NW0 + NW1, Wc->grad, NWC * sizeof(float));
    memcpy(gw + NW0 + NW1 + NWC, ga->grad, 4 * sizeof(float));
    *high = lb_graph_data_arena(g)->high_water;
    *dropped = a1->data == NULL && h->data == NULL && bn->data == NULL;
    memcpy(stats, mean2->data, 4 * sizeof(float));
    memcpy(stats + 4, var2->data, 4 * sizeof(float));
    return loss->data[0];
}

START_TEST(test_release_activations)
{
    enum { NG = 512 * 512 + 256 * 512 + 144 + 4 };
    static float g_off[NG], g_on[NG];
    size_t high_off, high_on, high_on2;
    bool dropped_off, dropped_on;
    float st_off[8], st_on[8];
    lb_graph *g0 = lb_graph_new(0), *g1 = lb_graph_new(0);
    const float l_off = release_step(g0, false, g_off, &high_off, &dropped_off, st_off);
    const float l_on = release_step(g1, true, g_on, &high_on, &dropped_on, st_on);
    ck_assert(!dropped_off && dropped_on); /* with release, op outputs are gone after backward */
    ck_assert_float_eq(l_on, l_off);       /* the loss keeps its value */
    ck_assert_msg(memcmp(g_off, g_on, sizeof g_off) == 0, "gradients differ with release");
    ck_assert_msg(memcmp(st_off, st_on, sizeof st_off) == 0,
                  "running statistics differ after the BN's output was recomputed");
    ck_assert(st_on[0] != 0.0f); /* and they did move (once) */
    /* the wide layers' gradients fit in the released narrow layers' buffers, merged */
    ck_assert_msg(high_on + 64 * 512 * sizeof(float) <= high_off,
                  "data arena high-water %zu with release, %zu without", high_on, high_off);
    release_step(g1, true, g_on, &high_on2, &dropped_on, st_on); /* merges the first step's blocks */
    const uint64_t mallocs = lb_graph_data_arena(g1)->n_mallocs;
    release_step(g1, true, g_on, &high_on2, &dropped_on, st_on);
    ck_assert_uint_eq(lb_graph_data_arena(g1)->n_mallocs, mallocs); /* steady state */
    ck_assert_msg(memcmp(g_off, g_on, sizeof g_off) == 0, "gradients differ on a later step");
    lb_graph_free(g0);
    lb_graph_free(g1);
}
END_TEST

START_TEST(test_sgemm_matches_ref)
{
    lb_rng r = lb_rng_make(5);
    enum { M = 17, N = 13, K = 29 };
    float a[M * K], b[K * N], c1[M * N], c2[M * N];
    for (int i = 0; i < M * K; i++) a[i] = lb_rng_normal(&r);
    for (int i = 0; i < K * N; i++) b[i] = lb_rng_normal(&r);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int i = 0; i < M * N; i++) c1[i] = c2[i] = (float)i;
            const int64_t lda = ta ? M : K, ldb = tb ? K : N;
            lb_sgemm(ta, tb, M, N, K, 0.5f, a, lda, b, ldb, 2.0f, c1, N);
            lb_sgemm_ref(ta, tb, M, N, K, 0.5f, a, lda, b, ldb, 2.0f, c2, N);
            for (int i = 0; i < M * N; i++) ck_assert_float_eq_tol(c1[i], c2[i], 1e-4f);
        }
}
END_TEST

/* lb_find_nonfinite: NaN, +Inf and -Inf anywhere (first one wins), nothing else; and
 * lb_params_tensor_at maps a block index back to its tensor. */
START_TEST(test_find_nonfinite)
{
    float x[37];
    for (int i = 0; i < 37; i++) x[i] = (float)i - 18.0f;
    x[3] = FLT_MAX, x[4] = -FLT_MAX, x[5] = FLT_MIN / 4.0f, x[6] = -0.0f; /* all finite */
    ck_assert_int_eq(lb_find_nonfinite(x, 37), -1);
    ck_assert_int_eq(lb_find_nonfinite(x, 0), -1);
    const float bad[] = { NAN, -NAN, INFINITY, -INFINITY };
    for (int k = 0; k < 4; k++) {
        x[36] = bad[k];
        ck_assert_int_eq(lb_find_nonfinite(x, 37), 36);
        ck_assert_int_eq(lb_find_nonfinite(x, 36), -1);
        x[20] = bad[k];
        ck_assert_int_eq(lb_find_nonfinite(x, 37), 20);
        x[20] = x[36] = 1.0f;
    }
    lb_params *ps = lb_params_new();
    lb_error err = { 0 };
    ck_assert_ptr_nonnull(lb_params_add(ps, "a", (int64_t[]){ 2, 3 }, 2, 0, &err));
    ck_assert_ptr_nonnull(lb_params_add(ps, "b", (int64_t[]){ 1 }, 1, 0, &err));
    ck_assert_ptr_nonnull(lb_params_add(ps, "c", (int64_t[]){ 4 }, 1, 0, &err));
    const char *want[] = { "a", "a", "a", "a", "a", "a", "b", "c", "c", "c", "c" };
    for (int i = 0; i < 11; i++) ck_assert_str_eq(lb_params_tensor_at(ps, i)->name, want[i]);
    ck_assert_ptr_null(lb_params_tensor_at(ps, 11));
    ck_assert_ptr_null(lb_params_tensor_at(ps, -1));
    /* the limit is checked before the total could overflow */
    ck_assert_ptr_null(lb_params_add(ps, "d", (int64_t[]){ LB_PARAMS_MAX }, 1, 0, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "exceed the limit"));
    ck_assert_ptr_null(lb_params_add(ps, "e", (int64_t[]){ INT64_MAX / 2, 2 }, 2, 0, &err));
    lb_params_free(ps);
}
END_TEST

START_TEST(test_rng_deterministic)
{
    lb_rng a = lb_rng_make(42), b = lb_rng_make(42), c = lb_rng_make(43);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(lb_rng_u64(&a), lb_rng_u64(&b));
    ck_assert_uint_ne(lb_rng_u64(&a), lb_rng_u64(&c));
    double s = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) {
        float z = lb_rng_normal(&a);
        s += z, s2 += (double)z * z;
    }
    ck_assert_double_eq_tol(s / 20000, 0.0, 0.03);
    ck_assert_double_eq_tol(s2 / 20000, 1.0, 0.05);
}
END_TEST

/* relu_inplace gives relu's values and gradients, in its input's buffer */
START_TEST(test_relu_inplace_matches_relu)
{
    float xs[257], bs[257], rs[257];
    lb_rng r = lb_rng_make(3);
    for (int i = 0; i < 257; i++) {
        xs[i] = lb_rng_normal(&r);
        bs[i] = lb_rng_normal(&r);
        rs[i] = lb_rng_normal(&r);
    }
    xs[5] = 0.0f, bs[5] = 0.0f; /* an exact zero: no gradient, as in relu */
    float grad[2][2][257], val[2][257];
    for (int inplace = 0; inplace < 2; inplace++) {
        lb_graph *g = lb_graph_new(0);
        lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 257 }, 1, true);
        lb_tensor *b = lb_leaf_from(g, bs, (int64_t[]){ 257 }, 1, true);
        lb_tensor *rt = lb_leaf_from(g, rs, (int64_t[]){ 257 }, 1, false);
        lb_tensor *s = lb_add(g, x, b);
        lb_tensor *y = inplace ? lb_relu_inplace(g, s) : lb_relu(g, s);
        ck_assert_ptr_nonnull(y);
        if (inplace) ck_assert_ptr_eq(y->data, s->data);
        memcpy(val[inplace], y->data, sizeof val[inplace]);
        lb_error err = { 0 };
        ck_assert_int_eq(lb_backward(g, lb_sum(g, lb_mul(g, y, rt)), &err), LB_OK);
        memcpy(grad[inplace][0], x->grad, sizeof grad[0][0]);
        memcpy(grad[inplace][1], b->grad, sizeof grad[0][1]);
        lb_graph_free(g);
    }
    ck_assert_mem_eq(val[0], val[1], sizeof val[0]);
    ck_assert_mem_eq(grad[0], grad[1], sizeof grad[0]);
    ck_assert_float_eq(grad[1][0][5], 0.0f);
}
END_TEST

/* ---- the thread pool --------------------------------------------------------------------- */

typedef struct {
    int  hits[1000];
    int  tid_of[1000];
} cover_ctx;

static void cover_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    cover_ctx *c = ctx;
    for (int64_t i = lo; i < hi; i++) c->hits[i]++, c->tid_of[i] = tid;
}

/* Every item is visited exactly once, by contiguous ranges in thread order, for item counts
 * below, at and above the thread count, across restarts of the pool with other sizes (a
 * worker started while a region is being published must still take part in it). */
START_TEST(test_parallel_for_covers_once)
{
    static const int threads[] = { 1, 2, 3, 5, 2, 1, 4 };
    static const int64_t counts[] = { 0, 1, 2, 3, 7, 64, 1000 };
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        ck_assert_int_eq(lb_parallel_set_threads(threads[t], NULL), LB_OK);
        ck_assert_int_eq(lb_parallel_threads(), threads[t]);
        for (int rep = 0; rep < 10; rep++)
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
                static cover_ctx c;
                memset(&c, 0, sizeof c);
                const int64_t min_items = rep % 2 ? 1 : 16;
                lb_parallel_for(counts[k], min_items, cover_part, &c);
                const int used = lb_parallel_count(counts[k], min_items);
                ck_assert_int_le(used, threads[t]);
                for (int64_t i = 0; i < counts[k]; i++) {
                    ck_assert_int_eq(c.hits[i], 1);
                    int64_t lo, hi;
                    lb_parallel_range(counts[k], c.tid_of[i], used, &lo, &hi);
                    ck_assert(i >= lo && i < hi);
                }
            }
    }
    lb_error err = { 0 };
    ck_assert_int_eq(lb_parallel_set_threads(-1, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "threads"));
    ck_assert_int_eq(lb_parallel_set_threads(1, NULL), LB_OK);
}
END_TEST

/* Scratch grows, keeps its contents' alignment, and survives a change of thread count. */
START_TEST(test_parallel_scratch)
{
    ck_assert_int_eq(lb_parallel_set_threads(3, NULL), LB_OK);
    ck_assert_int_eq(lb_parallel_reserve(1000, NULL), LB_OK);
    for (int t = 0; t < 3; t++) {
        char *p = lb_parallel_scratch(t);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq((uintptr_t)p % 64, 0);
        memset(p, t, 1000);
    }
    ck_assert_int_eq(lb_parallel_reserve(10, NULL), LB_OK); /* never shrinks */
    ck_assert_int_eq(lb_parallel_set_threads(2, NULL), LB_OK);
    for (int t = 0; t < 2; t++) memset(lb_parallel_scratch(t), 1, 1000);
    ck_assert_int_eq(lb_parallel_set_threads(1, NULL), LB_OK);
}
END_TEST

Suite *autograd_core_suite(void)
{
    Suite *s = suite_create("autograd_core");
    TCase *fwd = tcase_create("forward");
    tcase_add_test(fwd, test_matmul_bias_forward);
    tcase_add_test(fwd, test_elementwise_forward);
    tcase_add_test(fwd, test_softmax_ce_forward);
    tcase_add_test(fwd, test_softmax_ce_smooth);
    tcase_add_test(fwd, test_dropout_modes);
    suite_add_tcase(s, fwd);
    TCase *grad = tcase_create("gradients");
    tcase_add_loop_test(grad, test_op_gradient, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(grad, test_diamond_exact);
    tcase_add_test(grad, test_fresh_gradients);
    tcase_add_test(grad, test_param_grad_accumulates);
    tcase_add_test(grad, test_relu_inplace_matches_relu);
    suite_add_tcase(s, grad);
    TCase *eng = tcase_create("engine");
    tcase_set_timeout(eng, 60); /* the pool test oversubscribes the cores on purpose */
    tcase_add_test(eng, test_sticky_shape_error);
    tcase_add_test(eng, test_arena_exhausted_is_error);
    tcase_add_test(eng, test_arena_trim);
    tcase_add_test(eng, test_released_top_reused);
    tcase_add_test(eng, test_steady_state_no_malloc);
    tcase_add_test(eng, test_release_activations);
    tcase_add_test(eng, test_sgemm_matches_ref);
    tcase_add_test(eng, test_rng_deterministic);
    tcase_add_test(eng, test_parallel_for_covers_once);
    tcase_add_test(eng, test_parallel_scratch);
    tcase_add_test(eng, test_find_nonfinite);
    suite_add_tcase(s, eng);
    return s;
}

int main(void)
{
    Suite *suites[] = { autograd_core_suite(), autograd_conv_suite() };
    return lb_run_suites(suites, 2);
}
