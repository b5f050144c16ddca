/* test_autograd_conv.c: tests of convolution, pooling and batch normalisation (ops_conv.c,
 * ops_pool.c, ops_norm.c).
 *
 * Forward values on tiny hand-computed cases; finite-difference gradient rows (including
 * diamond graphs that prove accumulation); conv2d against a naive direct convolution,
 * forward and backward; batch-norm running statistics against their formula; and shape and
 * argument errors (sticky, NULL result). main() is in test_autograd.c.
 */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/parallel.h"
#include "tests/gradcheck.h"
#include "tests/suites.h"

/* ---- helpers -------------------------------------------------------------------------- */

static lb_tensor *leaf(lb_graph *g, const float *data, const int64_t *shape, int n_dims,
                       bool requires_grad)
{
    lb_tensor *t = lb_leaf_from(g, data, shape, n_dims, requires_grad);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Batch-norm's four (C) vectors as leaves: gamma and beta (with gradients when grad), and
 * the running mean and variance. */
typedef struct {
    lb_tensor *gamma, *beta, *rm, *rv;
} bn_leaves;

static bn_leaves bn_vectors(lb_graph *g, int64_t C, const float *gs, const float *bs,
                            const float *rm, const float *rv, bool grad)
{
    const int64_t shape[1] = { C };
    return (bn_leaves){ leaf(g, gs, shape, 1, grad), leaf(g, bs, shape, 1, grad),
                        leaf(g, rm, shape, 1, false), leaf(g, rv, shape, 1, false) };
}

/* A zero-filled leaf, for error cases. */
static lb_tensor *zeros(lb_graph *g, const int64_t *shape, int n_dims)
{
    lb_tensor *t = lb_leaf(g, shape, n_dims, true);
    ck_assert_ptr_nonnull(t);
    memset(t->data, 0, (size_t)lb_numel(t) * sizeof(float));
    return t;
}

/* A (n) leaf without gradient holding v0 + dv*i (batch-norm running statistics). */
static lb_tensor *ramp(lb_graph *g, int64_t n, float v0, float dv)
{
    lb_tensor *t = lb_leaf(g, (int64_t[]){ n }, 1, false);
    if (t)
        for (int64_t i = 0; i < n; i++) t->data[i] = v0 + dv * (float)i;
    return t;
}

static void expect_near(const char *what, const float *got, const float *want, int64_t n,
                        double tol)
{
    for (int64_t i = 0; i < n; i++) {
        const double scale = fmax(1.0, fabs((double)want[i]));
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol * scale,
                      "%s[%lld]: got %.7g, want %.7g", what, (long long)i, got[i], want[i]);
    }
}

static void expect_shape4(const lb_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    ck_assert_int_eq(t->n_dims, 4);
    ck_assert_int_eq(t->shape[0], a);
    ck_assert_int_eq(t->shape[1], b);
    ck_assert_int_eq(t->shape[2], c);
    ck_assert_int_eq(t->shape[3], d);
}

/* Runs lb_backward on loss = sum(y * r). */
static void backward_weighted(lb_graph *g, lb_tensor *y, const float *r)
{
    lb_error err = { 0 };
    lb_tensor *rt = leaf(g, r, y->shape, y->n_dims, false);
    lb_tensor *loss = lb_sum(g, lb_mul(g, y, rt));
    ck_assert_msg(lb_backward(g, loss, &err) == LB_OK, "backward: %s", err.msg);
}

/* ---- (a) forward values on hand-computed cases ------------------------------------------ */

static const float img3[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 }; /* (1, 1, 3, 3) */

START_TEST(test_conv2d_forward_3x3)
{
    lb_graph *g = lb_graph_new(0);
    const float ones[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, half = 0.5f;
    lb_tensor *x = leaf(g, img3, (int64_t[]){ 1, 1, 3, 3 }, 4, false);
    lb_tensor *w = leaf(g, ones, (int64_t[]){ 1, 1, 3, 3 }, 4, false);
    lb_tensor *b = leaf(g, &half, (int64_t[]){ 1 }, 1, false);

    /* box sum of the 3x3 neighbourhood, zero padded, plus 0.5 */
    lb_tensor *y = lb_conv2d(g, x, w, b, 1, 1);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 1, 3, 3);
    const float box[9] = { 12.5f, 21.5f, 16.5f, 27.5f, 45.5f, 33.5f, 24.5f, 39.5f, 28.5f };
    expect_near("box", y->data, box, 9, 1e-6);

    /* stride 2 keeps the corners of the stride-1 result */
    y = lb_conv2d(g, x, w, NULL, 2, 1);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 1, 2, 2);
    const float box_s2[4] = { 12, 16, 24, 28 };
    expect_near("box stride 2", y->data, box_s2, 4, 1e-6);

    /* an asymmetric kernel pins the orientation (cross-correlation, no flip):
     * y[i][j] = x[i-1][j-1] + 2 x[i+1][j+1] */
    const float diag[9] = { 1, 0, 0, 0, 0, 0, 0, 0, 2 };
    lb_tensor *wd = leaf(g, diag, (int64_t[]){ 1, 1, 3, 3 }, 4, false);
    y = lb_conv2d(g, x, wd, NULL, 1, 1);
    ck_assert_ptr_nonnull(y);
    const float want_diag[9] = { 10, 12, 0, 16, 19, 2, 0, 4, 5 };
    expect_near("diagonal", y->data, want_diag, 9, 1e-6);
    ck_assert_int_eq(lb_graph_status(g, NULL), LB_OK);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_conv2d_forward_1x1)
{
    /* 1x1 kernel, stride 1, pad 0 (the path without im2col): a per-pixel channel mix */
    lb_graph *g = lb_graph_new(0);
    const float xs[8] = { 1, 2, 3, 4, 10, 20, 30, 40 };     /* (1, 2, 2, 2) */
    const float ws[6] = { 1, 0, 0, 1, 1, -1 };               /* (3, 2, 1, 1) */
    const float bs[3] = { 0, 0, 1 };
    lb_tensor *x = leaf(g, xs, (int64_t[]){ 1, 2, 2, 2 }, 4, false);
    lb_tensor *w = leaf(g, ws, (int64_t[]){ 3, 2, 1, 1 }, 4, false);
    lb_tensor *b = leaf(g, bs, (int64_t[]){ 3 }, 1, false);
    lb_tensor *y = lb_conv2d(g, x, w, b, 1, 0);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 3, 2, 2);
    const float want[12] = { 1, 2, 3, 4, 10, 20, 30, 40, -8, -17, -26, -35 };
    expect_near("1x1", y->data, want, 12, 1e-6);
    lb_graph_free(g);
}
END_TEST

static const float img4[16] = { 1, 5, 2, 0,
                                3, 4, 8, 7,
                                9, 6, 1, 2,
                                0, 2, 3, 4 }; /* (1, 1, 4, 4) */

START_TEST(test_maxpool_forward)
{
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = leaf(g, img4, (int64_t[]){ 1, 1, 4, 4 }, 4, true);
    lb_tensor *y = lb_maxpool2d(g, x, 2, 2, 0);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 1, 2, 2);
    const float want[4] = { 5, 8, 9, 4 };
    expect_near("maxpool", y->data, want, 4, 0.0);
    /* backward routes dy to the winners only */
    const float r[4] = { 1, 2, 3, 4 };
    backward_weighted(g, y, r);
    const float dx[16] = { 0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 4 };
    expect_near("maxpool dx", x->grad, dx, 16, 0.0);

    /* all negative input with padding: a padded cell (zero) must never win; overlapping
     * windows (stride 1) accumulate into the shared winner */
    lb_graph_reset(g);
    const float neg[4] = { -1, -2, -3, -4 };
    x = leaf(g, neg, (int64_t[]){ 1, 1, 2, 2 }, 4, true);
    y = lb_maxpool2d(g, x, 2, 1, 1);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 1, 3, 3);
    const float want_neg[9] = { -1, -1, -2, -1, -1, -2, -3, -3, -4 };
    expect_near("maxpool padded", y->data, want_neg, 9, 0.0);
    const float ones[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    backward_weighted(g, y, ones);
    const float counts[4] = { 4, 2, 2, 1 };
    expect_near("maxpool padded dx", x->grad, counts, 4, 0.0);

    /* ties: the first maximum in the window wins (as PyTorch); a NaN propagates */
    lb_graph_reset(g);
    const float tie[8] = { 2, 2, 2, 2, 1, NAN, 3, 0 };
    x = leaf(g, tie, (int64_t[]){ 1, 2, 2, 2 }, 4, true);
    y = lb_maxpool2d(g, x, 2, 2, 0);
    ck_assert_ptr_nonnull(y);
    ck_assert_float_eq(y->data[0], 2.0f);
    ck_assert_float_nan(y->data[1]);
    const float r_tie[2] = { 1, 0 };
    backward_weighted(g, y, r_tie);
    const float dx_tie[4] = { 1, 0, 0, 0 };
    expect_near("maxpool tie dx", x->grad, dx_tie, 4, 0.0);
    lb_graph_free(g);
}
END_TEST

/* 2x2 stride-2 max pooling, odd sizes (the last row and column in no window), ties and NaNs:
 * y and the winner's place against a scalar reference, then dx both ways: added into a
 * leaf's gradient, and written whole into an op output's fresh gradient (the pooling of a
 * reshape), where the cells no window wins must come out 0. Wo = 11: the 4-wide kernels
 * and their scalar tail. */
START_TEST(test_maxpool_k2_rows)
{
    enum { C = 3, H = 7, W = 23, Ho = 3, Wo = 11 };
    float xs[C * H * W], want[C * Ho * Wo], dx[C * H * W] = { 0 }, r[C * Ho * Wo];
    lb_rng rng = lb_rng_make(3);
    for (int i = 0; i < C * H * W; i++) {
        const float u = lb_rng_uniform(&rng);
        xs[i] = u < 0.1f ? NAN : u < 0.4f ? 1.0f : (float)(int)(u * 8.0f); /* ties, NaNs */
    }
    for (int i = 0; i < C * Ho * Wo; i++) r[i] = (float)(i + 1);
    for (int c = 0, o = 0; c < C; c++)
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++, o++) {
                const int i0 = (c * H + 2 * oh) * W + 2 * ow;
                const int cand[4] = { i0, i0 + 1, i0 + W, i0 + W + 1 };
                int b = cand[0];
                for (int t = 1; t < 4; t++)
                    if (xs[cand[t]] > xs[b] || isnan(xs[cand[t]])) b = cand[t];
                want[o] = xs[b];
                dx[b] += r[o];
            }
    for (int fresh = 0; fresh < 2; fresh++) {
        lb_graph *g = lb_graph_new(0);
        lb_tensor *x = leaf(g, xs, (int64_t[]){ 1, C, H, W }, 4, true);
        lb_tensor *xin = fresh ? lb_reshape(g, x, (int64_t[]){ 1, C, H, W }, 4) : x;
        lb_tensor *y = lb_maxpool2d(g, xin, 2, 2, 0);
        ck_assert_ptr_nonnull(y);
        for (int i = 0; i < C * Ho * Wo; i++)
            ck_assert_msg(memcmp(&y->data[i], &want[i], sizeof(float)) == 0 || (isnan(y->data[i]) && isnan(want[i])),
                          "y[%d] = %g, want %g", i, (double)y->data[i], (double)want[i]);
        backward_weighted(g, y, r);
        expect_near(fresh ? "maxpool k2 rows dx (fresh)" : "maxpool k2 rows dx", x->grad, dx,
                    C * H * W, 0.0);
        lb_graph_free(g);
    }
}
END_TEST

START_TEST(test_avgpool_forward)
{
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = leaf(g, img4, (int64_t[]){ 1, 1, 4, 4 }, 4, false);
    lb_tensor *y = lb_avgpool2d(g, x, 2, 2, 0);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 1, 2, 2);
    const float want[4] = { 13.0f / 4, 17.0f / 4, 17.0f / 4, 10.0f / 4 };
    expect_near("avgpool", y->data, want, 4, 1e-7);

    /* padding counts in the divisor (count_include_pad): the corner window sees only x[0][0]
     * and still divides by 4 */
    x = leaf(g, img3, (int64_t[]){ 1, 1, 3, 3 }, 4, true);
    y = lb_avgpool2d(g, x, 2, 2, 1);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, 1, 1, 2, 2);
    const float want_pad[4] = { 0.25f, 1.25f, 2.75f, 7.0f };
    expect_near("avgpool padded", y->data, want_pad, 4, 1e-7);
    const float ones[4] = { 1, 1, 1, 1 };
    backward_weighted(g, y, ones);
    const float dx[9] = { 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f };
    expect_near("avgpool padded dx", x->grad, dx, 9, 0.0);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_global_avgpool_forward)
{
    lb_graph *g = lb_graph_new(0);
    const float xs[8] = { 1, 3, 2, 6, -1, -3, 10, 0 }; /* (2, 2, 1, 2) */
    lb_tensor *x = leaf(g, xs, (int64_t[]){ 2, 2, 1, 2 }, 4, true);
    lb_tensor *y = lb_global_avgpool(g, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_dims, 2);
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 2);
    const float want[4] = { 2, 4, -2, 5 };
    expect_near("global_avgpool", y->data, want, 4, 0.0);
    const float r[4] = { 1, 2, 3, 4 };
    backward_weighted(g, y, r);
    const float dx[8] = { 0.5f, 0.5f, 1, 1, 1.5f, 1.5f, 2, 2 };
    expect_near("global_avgpool dx", x->grad, dx, 8, 0.0);
    lb_graph_free(g);
}
END_TEST

/* Two samples per channel: channel 0 holds {1, 3} (mean 2, biased var 1), channel 1 holds
 * {10, 20} (mean 15, biased var 25). gamma = (2, 0.5), beta = (1, -1), eps = 1e-5. */
START_TEST(test_batchnorm_forward)
{
    lb_graph *g = lb_graph_new(0);
    const float gs[2] = { 2.0f, 0.5f }, bs[2] = { 1.0f, -1.0f };
    for (int layout = 0; layout < 2; layout++) {
        lb_graph_reset(g);
        lb_tensor *x;
        if (layout == 0) {
            const float xs[4] = { 1, 10, 3, 20 };                 /* (B=2, C=2) */
            x = leaf(g, xs, (int64_t[]){ 2, 2 }, 2, false);
        } else {
            const float xs[4] = { 1, 3, 10, 20 };                 /* (1, 2, 1, 2) */
            x = leaf(g, xs, (int64_t[]){ 1, 2, 1, 2 }, 4, false);
        }
        lb_tensor *gamma = leaf(g, gs, (int64_t[]){ 2 }, 1, false);
        lb_tensor *beta = leaf(g, bs, (int64_t[]){ 2 }, 1, false);
        lb_tensor *rm = ramp(g, 2, 0.0f, 0.0f), *rv = ramp(g, 2, 1.0f, 0.0f);
        lb_tensor *y = lb_batchnorm(g, x, gamma, beta, rm, rv, 0.1f, 1e-5f);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(y->n_dims, x->n_dims);
        const float want2[4] = { -1.0f, -1.5f, 3.0f, -0.5f }, want4[4] = { -1, 3, -1.5f, -0.5f };
        expect_near(layout ? "bn 4-d" : "bn 2-d", y->data, layout ? want4 : want2, 4, 1e-4);
        /* running = 0.9 running + 0.1 batch, with the unbiased variance (2 * biased) */
        const float want_rm[2] = { 0.2f, 1.5f }, want_rv[2] = { 1.1f, 5.9f };
        expect_near("running_mean", rm->data, want_rm, 2, 1e-6);
        expect_near("running_var", rv->data, want_rv, 2, 1e-6);
    }

    /* eval mode: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta, and the
     * running statistics stay as they are */
    lb_graph_reset(g);
    lb_graph_set_training(g, false);
    const float xs[4] = { 1, 10, 3, 20 }, rms[2] = { 1, 2 }, rvs[2] = { 3.75f, 0.75f };
    lb_tensor *x = leaf(g, xs, (int64_t[]){ 2, 2 }, 2, false);
    const bn_leaves v = bn_vectors(g, 2, gs, bs, rms, rvs, false);
    lb_tensor *gamma = v.gamma, *beta = v.beta, *rm = v.rm, *rv = v.rv;
    lb_tensor *y = lb_batchnorm(g, x, gamma, beta, rm, rv, 0.1f, 0.25f); /* std 2 and 1 */
    ck_assert_ptr_nonnull(y);
    const float want[4] = { 1, 3, 3, 8 };
    expect_near("bn eval", y->data, want, 4, 1e-4);
    expect_near("bn eval running_mean", rm->data, rms, 2, 0.0);
    expect_near("bn eval running_var", rv->data, rvs, 2, 0.0);
    lb_graph_free(g);
}
END_TEST

/* ---- (b) finite-difference gradient rows ------------------------------------------------- */

static lb_tensor *conv_s1p0(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], in[2], 1, 0);
}
static lb_tensor *conv_s1p1(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], in[2], 1, 1);
}
static lb_tensor *conv_s2p0(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], in[2], 2, 0);
}
static lb_tensor *conv_s2p1(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], in[2], 2, 1);
}
static lb_tensor *conv_s3p2(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], in[2], 3, 2);
}
static lb_tensor *conv_nb_s2p1(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], NULL, 2, 1);
}
static lb_tensor *conv_nb_s1p0(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d(g, in[0], in[1], NULL, 1, 0);
}

static lb_tensor *conv_pool_p2(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d_maxpool2(g, in[0], in[1], in[2], 1, 2);
}
static lb_tensor *conv_pool_nb_p0(lb_graph *g, lb_tensor **in)
{
    return lb_conv2d_maxpool2(g, in[0], in[1], NULL, 1, 0);
}
static lb_tensor *conv_pool_s2p1(lb_graph *g, lb_tensor **in) /* not fused: two ops */
{
    return lb_conv2d_maxpool2(g, in[0], in[1], in[2], 2, 1);
}

/* Diamond: x, w and b feed two convolutions; their gradients must add up. */
static lb_tensor *conv_diamond(lb_graph *g, lb_tensor **in)
{
    return lb_add(g, lb_conv2d(g, in[0], in[1], in[2], 1, 1),
                  lb_conv2d(g, in[0], in[1], in[2], 1, 1));
}

/* Diamond on the 1x1 direct path: y = conv1x1(x) + x (needs O == C). */
static lb_tensor *conv_1x1_residual(lb_graph *g, lb_tensor **in)
{
    return lb_add(g, lb_conv2d(g, in[0], in[1], in[2], 1, 0), in[0]);
}

static lb_tensor *maxpool_k2s2(lb_graph *g, lb_tensor **in)
{
    return lb_maxpool2d(g, in[0], 2, 2, 0);
}
static lb_tensor *maxpool_k3s1p1(lb_graph *g, lb_tensor **in)
{
    return lb_maxpool2d(g, in[0], 3, 1, 1);
}
static lb_tensor *maxpool_k3s2p1(lb_graph *g, lb_tensor **in)
{
    return lb_maxpool2d(g, in[0], 3, 2, 1);
}
/* a window of 17x17 > 256 cells: the winner's place is kept in four bytes, not one */
static lb_tensor *maxpool_k17s2p8(lb_graph *g, lb_tensor **in)
{
    return lb_maxpool2d(g, in[0], 17, 2, 8);
}
static lb_tensor *avgpool_k2s2(lb_graph *g, lb_tensor **in)
{
    return lb_avgpool2d(g, in[0], 2, 2, 0);
}
static lb_tensor *avgpool_k3s2p1(lb_graph *g, lb_tensor **in)
{
    return lb_avgpool2d(g, in[0], 3, 2, 1);
}
static lb_tensor *avgpool_k3s1p1(lb_graph *g, lb_tensor **in)
{
    return lb_avgpool2d(g, in[0], 3, 1, 1);
}
static lb_tensor *global_avgpool(lb_graph *g, lb_tensor **in)
{
    return lb_global_avgpool(g, in[0]);
}

/* Diamond through both pooling kinds. */
static lb_tensor *pool_diamond(lb_graph *g, lb_tensor **in)
{
    return lb_add(g, lb_maxpool2d(g, in[0], 2, 2, 0), lb_avgpool2d(g, in[0], 2, 2, 0));
}

/* Batch norm of in[0] with gamma in[1], beta in[2]; fresh running statistics (0 and 1 in
 * training mode, non-trivial ones in eval mode) are made here, since they get no gradient.
 * With skip: relu(batchnorm(in[0]) + skip) as one op (a residual block's end). */
static lb_tensor *bn_op(lb_graph *g, lb_tensor **in, bool training, lb_tensor *skip)
{
    if (!in[0]) return NULL;
    lb_graph_set_training(g, training);
    const int64_t C = in[0]->shape[1];
    lb_tensor *rm = training ? ramp(g, C, 0.0f, 0.0f) : ramp(g, C, -0.2f, 0.15f);
    lb_tensor *rv = training ? ramp(g, C, 1.0f, 0.0f) : ramp(g, C, 0.5f, 0.25f);
    if (skip) return lb_batchnorm_add_relu(g, in[0], skip, in[1], in[2], rm, rv, 0.1f, 1e-5f);
    return lb_batchnorm(g, in[0], in[1], in[2], rm, rv, 0.1f, 1e-5f);
}

static lb_tensor *bn(lb_graph *g, lb_tensor **in, bool training)
{
    return bn_op(g, in, training, NULL);
}

static lb_tensor *bn_train(lb_graph *g, lb_tensor **in)
{
    return bn(g, in, true);
}
static lb_tensor *bn_eval(lb_graph *g, lb_tensor **in)
{
    return bn(g, in, false);
}

/* Diamond: two batch norms share x, gamma and beta. */
static lb_tensor *bn_diamond(lb_graph *g, lb_tensor **in)
{
    return lb_add(g, bn(g, in, true), lb_mul(g, bn(g, in, true), in[0]));
}

/* relu(batchnorm(in[0]) + in[3]), gamma in[1], beta in[2] */
static lb_tensor *bn_add_relu_train(lb_graph *g, lb_tensor **in)
{
    return bn_op(g, in, true, in[3]);
}
static lb_tensor *bn_add_relu_eval(lb_graph *g, lb_tensor **in)
{
    return bn_op(g, in, false, in[3]);
}

/* A small ResNet-like chain: conv -> batch norm -> avgpool -> global average. Inputs:
 * x, w, gamma, beta. */
static lb_tensor *conv_bn_pool(lb_graph *g, lb_tensor **in)
{
    lb_tensor *h = lb_conv2d(g, in[0], in[1], NULL, 1, 1);
    lb_tensor *bn_in[3] = { h, in[2], in[3] };
    return lb_global_avgpool(g, lb_avgpool2d(g, bn(g, bn_in, true), 2, 2, 0));
}

/* name, inputs, shapes, dims, build, eps, tol, init, no_grad_mask */
static const gradcheck_case grad_rows[] = {
    { "conv2d s1 p0 3x3", 3, { { 2, 2, 5, 5 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_s1p0, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d s1 p1 3x3", 3, { { 2, 2, 5, 5 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_s1p1, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d s2 p0 3x3", 3, { { 2, 2, 6, 6 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_s2p0, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d s2 p1 3x3", 3, { { 2, 2, 6, 6 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_s2p1, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d s1 p1 2x3 bias", 3, { { 1, 2, 4, 5 }, { 2, 2, 2, 3 }, { 2 } }, { 4, 4, 1 },
      conv_s1p1, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d s2 p1 3x5 no bias", 2, { { 2, 2, 6, 7 }, { 3, 2, 3, 5 } }, { 4, 4 },
      conv_nb_s2p1, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d 1x1 direct", 3, { { 2, 3, 3, 3 }, { 4, 3, 1, 1 }, { 4 } }, { 4, 4, 1 },
      conv_s1p0, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d 1x1 direct no bias", 2, { { 2, 3, 3, 3 }, { 4, 3, 1, 1 } }, { 4, 4 },
      conv_nb_s1p0, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d 1x1 s2 p1", 3, { { 1, 2, 4, 4 }, { 2, 2, 1, 1 }, { 2 } }, { 4, 4, 1 },
      conv_s2p1, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d s3 p2 2x2 (pad > kernel)", 3, { { 1, 2, 4, 4 }, { 2, 2, 2, 2 }, { 2 } },
      { 4, 4, 1 }, conv_s3p2, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d x without grad", 3, { { 2, 2, 5, 5 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_s1p1, 1e-2, 1e-2, GC_NORMAL, 1u << 0 },
    { "conv2d w, b without grad", 3, { { 2, 2, 5, 5 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_s2p1, 1e-2, 1e-2, GC_NORMAL, (1u << 1) | (1u << 2) },
    { "conv2d diamond", 3, { { 2, 2, 4, 4 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_diamond, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d 1x1 residual diamond", 3, { { 2, 3, 3, 3 }, { 3, 3, 1, 1 }, { 3 } },
      { 4, 4, 1 }, conv_1x1_residual, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "conv2d_maxpool2 5x5 p2", 3, { { 2, 2, 6, 6 }, { 3, 2, 5, 5 }, { 3 } }, { 4, 4, 1 },
      conv_pool_p2, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "conv2d_maxpool2 3x3 p0, odd output, no bias", 2, { { 2, 2, 7, 9 }, { 5, 2, 3, 3 } },
      { 4, 4 }, conv_pool_nb_p0, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "conv2d_maxpool2 s2 (two ops)", 3, { { 1, 2, 8, 8 }, { 3, 2, 3, 3 }, { 3 } }, { 4, 4, 1 },
      conv_pool_s2p1, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "maxpool2d k2 s2", 1, { { 2, 2, 4, 4 } }, { 4 }, maxpool_k2s2, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "maxpool2d k3 s1 p1", 1, { { 1, 2, 5, 5 } }, { 4 }, maxpool_k3s1p1, 1e-3, 1e-2,
      GC_NORMAL, 0 },
    { "maxpool2d k3 s2 p1", 1, { { 2, 1, 5, 6 } }, { 4 }, maxpool_k3s2p1, 1e-3, 1e-2,
      GC_NORMAL, 0 },
    { "maxpool2d k17 s2 p8", 1, { { 1, 2, 18, 19 } }, { 4 }, maxpool_k17s2p8, 1e-3, 1e-2,
      GC_NORMAL, 0 },
    { "avgpool2d k2 s2", 1, { { 2, 2, 4, 4 } }, { 4 }, avgpool_k2s2, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "avgpool2d k3 s2 p1", 1, { { 2, 2, 5, 5 } }, { 4 }, avgpool_k3s2p1, 1e-2, 1e-2,
      GC_NORMAL, 0 },
    { "avgpool2d k3 s1 p1", 1, { { 1, 2, 4, 5 } }, { 4 }, avgpool_k3s1p1, 1e-2, 1e-2,
      GC_NORMAL, 0 },
    { "global_avgpool", 1, { { 2, 3, 3, 4 } }, { 4 }, global_avgpool, 1e-2, 1e-2, GC_NORMAL, 0 },
    { "pool diamond", 1, { { 2, 2, 4, 4 } }, { 4 }, pool_diamond, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "batchnorm train 2-d", 3, { { 6, 3 }, { 3 }, { 3 } }, { 2, 1, 1 }, bn_train, 1e-3, 1e-2,
      GC_NORMAL, 0 },
    { "batchnorm train 4-d", 3, { { 3, 2, 3, 3 }, { 2 }, { 2 } }, { 4, 1, 1 }, bn_train, 1e-3,
      1e-2, GC_NORMAL, 0 },
    { "batchnorm eval 2-d", 3, { { 4, 3 }, { 3 }, { 3 } }, { 2, 1, 1 }, bn_eval, 1e-2, 1e-2,
      GC_NORMAL, 0 },
    { "batchnorm eval 4-d", 3, { { 2, 2, 2, 3 }, { 2 }, { 2 } }, { 4, 1, 1 }, bn_eval, 1e-2,
      1e-2, GC_NORMAL, 0 },
    { "batchnorm diamond", 3, { { 2, 2, 2, 2 }, { 2 }, { 2 } }, { 4, 1, 1 }, bn_diamond, 1e-3,
      1e-2, GC_NORMAL, 0 },
    { "batchnorm_add_relu train", 4, { { 3, 2, 3, 3 }, { 2 }, { 2 }, { 3, 2, 3, 3 } },
      { 4, 1, 1, 4 }, bn_add_relu_train, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "batchnorm_add_relu eval", 4, { { 2, 2, 2, 3 }, { 2 }, { 2 }, { 2, 2, 2, 3 } },
      { 4, 1, 1, 4 }, bn_add_relu_eval, 1e-3, 1e-2, GC_NORMAL, 0 },
    { "batchnorm_add_relu skip without grad", 4,
      { { 3, 2, 3, 3 }, { 2 }, { 2 }, { 3, 2, 3, 3 } }, { 4, 1, 1, 4 }, bn_add_relu_train,
      1e-3, 1e-2, GC_NORMAL, 1u << 3 },
    { "batchnorm_add_relu only skip with grad", 4,
      { { 3, 2, 3, 3 }, { 2 }, { 2 }, { 3, 2, 3, 3 } }, { 4, 1, 1, 4 }, bn_add_relu_train,
      1e-3, 1e-2, GC_NORMAL, 7u },
    { "conv-bn-avgpool-global chain", 4, { { 2, 2, 4, 4 }, { 3, 2, 3, 3 }, { 3 }, { 3 } },
      { 4, 4, 1, 1 }, conv_bn_pool, 1e-3, 1e-2, GC_NORMAL, 0 },
};

START_TEST(test_gradient) /* _i: row index, from tcase_add_loop_test */
{
    const gradcheck_case *c = &grad_rows[_i];
    gradcheck_result r = gradcheck_run(c, 1234u + (unsigned)_i);
    ck_assert_msg(r.status == LB_OK, "%s: %s", c->name, r.msg);
    ck_assert_msg(r.max_err <= c->tol, "%s: max err %.3g at input %d[%lld] > tol %.3g (%s)",
                  c->name, r.max_err, r.worst_input, (long long)r.worst_index, c->tol, r.msg);
}
END_TEST

/* ---- (c) conv2d against a naive direct convolution ---------------------------------------- */

typedef struct {
    int64_t B, C, H, W, O, kh, kw;
    int     stride, pad;
    bool    bias;
} conv_cfg;

static const conv_cfg ref_cfgs[] = {
    { 2, 3, 7, 9, 4, 3, 5, 2, 1, true },   /* the general case: strided, padded, 3x5 */
    { 2, 3, 5, 6, 4, 1, 1, 1, 0, true },   /* 1x1 direct path (no im2col)            */
    { 1, 2, 5, 5, 3, 2, 2, 3, 2, false },  /* pad >= kernel, stride > kernel         */
    { 2, 2, 4, 5, 3, 4, 5, 1, 0, true },   /* kernel covers the input: 1x1 output    */
    { 1, 1, 1, 1, 2, 3, 3, 1, 1, true },   /* 1x1 input, 3x3 kernel, pad 1           */
    { 2, 3, 9, 7, 4, 3, 3, 1, 0, true },   /* dx by the flipped kernel, its pad 2    */
    { 2, 3, 9, 7, 4, 5, 5, 1, 2, true },   /* the same with a 5x5 kernel             */
    { 3, 8, 20, 64, 5, 3, 3, 1, 1, true }, /* several row bands per image            */
    { 5, 16, 12, 40, 4, 3, 3, 1, 1, false },/* bands, more images than threads       */
    { 3, 6, 21, 33, 5, 3, 3, 2, 1, true }, /* strided: col2im with a whole image     */
    { 2, 3, 7, 9, 5, 3, 5, 1, 1, true },   /* direct, 3x5: a pad per axis for dx     */
    { 2, 5, 3, 4, 7, 3, 3, 1, 3, true },   /* direct, pad > k - 1: dx by col2im      */
    { 3, 16, 32, 32, 16, 3, 3, 1, 1, false },/* ResNet stage 1: full direct tiles      */
    { 2, 9, 8, 8, 13, 3, 3, 1, 1, true },  /* 8 wide: tiles span rows; 13 = 3 blocks + 1 */
    { 2, 6, 14, 14, 16, 5, 5, 1, 0, true },/* LeNet conv2: unpadded 5x5 (two dW tap groups) */
    { 2, 1, 28, 28, 6, 5, 5, 1, 2, true }, /* LeNet conv1: dx of 1 channel in wide tiles   */
    { 2, 2, 10, 12, 1, 3, 3, 1, 1, true }, /* 1 output channel (wide forward), 2-channel dx */
    { 2, 16, 32, 32, 32, 3, 3, 2, 1, false },/* ResNet's stride-2 3x3: the phase layout    */
    { 2, 16, 16, 16, 32, 1, 1, 2, 0, true },/* ResNet's 1x1 stride-2 shortcut              */
    { 2, 3, 8, 11, 5, 2, 4, 2, 0, true },  /* stride 2, even kernel, odd width, no pad    */
    /* channels last (16 outputs, a fifth of the padded width wasted): rows of 14 outputs in
     * tiles of 5, 5, 4 and dW's 35 (j, c) indices in calls of 6 x 5 and 5; padded */
    { 2, 7, 9, 16, 16, 5, 5, 1, 1, true },
    { 3, 2, 6, 6, 16, 3, 3, 1, 0, false }, /* channels last: one tile per row, 3x3 */
};

/* Each reference case runs on this many threads in turn (images split unevenly, partial dW
 * sums combined across threads), with the AVX2 kernels and with the portable ones. */
static const int ref_threads[] = { 1, 3 };

static int64_t in_index(const conv_cfg *k, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return ((n * k->C + c) * k->H + h) * k->W + w;
}

START_TEST(test_conv2d_vs_naive)
{
    const conv_cfg *k = &ref_cfgs[_i / 4];
    ck_assert_int_eq(lb_parallel_set_threads(ref_threads[_i % 2], NULL), LB_OK);
    lb_conv2d_force_portable(_i / 2 % 2); /* the AVX2 kernels, then the portable ones */
    const int64_t Ho = (k->H + 2 * k->pad - k->kh) / k->stride + 1;
    const int64_t Wo = (k->W + 2 * k->pad - k->kw) / k->stride + 1;
    const int64_t nx = k->B * k->C * k->H * k->W, nw = k->O * k->C * k->kh * k->kw;
    const int64_t ny = k->B * k->O * Ho * Wo;
    float *xs = malloc((size_t)nx * sizeof(float)), *ws = malloc((size_t)nw * sizeof(float));
    float *bs = malloc((size_t)k->O * sizeof(float)), *rs = malloc((size_t)ny * sizeof(float));
    float *y_ref = calloc((size_t)ny, sizeof(float));
    float *dx_ref = calloc((size_t)nx, sizeof(float)), *dw_ref = calloc((size_t)nw, sizeof(float));
    float *db_ref = calloc((size_t)k->O, sizeof(float));
    ck_assert(xs && ws && bs && rs && y_ref && dx_ref && dw_ref && db_ref);
    lb_rng rng = lb_rng_make(77 + (uint64_t)(_i / 4));
    for (int64_t i = 0; i < nx; i++) xs[i] = lb_rng_normal(&rng);
    for (int64_t i = 0; i < nw; i++) ws[i] = lb_rng_normal(&rng);
    for (int64_t i = 0; i < k->O; i++) bs[i] = lb_rng_normal(&rng);
    for (int64_t i = 0; i < ny; i++) rs[i] = lb_rng_normal(&rng);

    /* reference: y = b + sum_{c,i,j} w[o][c][i][j] x[c][oh*s - p + i][ow*s - p + j], and for
     * loss = sum(y * r) the gradients dx, dw, db by the same index map, in double */
    for (int64_t n = 0; n < k->B; n++)
        for (int64_t o = 0; o < k->O; o++)
            for (int64_t oh = 0; oh < Ho; oh++)
                for (int64_t ow = 0; ow < Wo; ow++) {
                    const int64_t yi = ((n * k->O + o) * Ho + oh) * Wo + ow;
                    double acc = k->bias ? bs[o] : 0.0;
                    for (int64_t c = 0; c < k->C; c++)
                        for (int64_t i = 0; i < k->kh; i++)
                            for (int64_t j = 0; j < k->kw; j++) {
                                const int64_t ih = oh * k->stride - k->pad + i;
                                const int64_t iw = ow * k->stride - k->pad + j;
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                const int64_t xi = in_index(k, n, c, ih, iw);
                                const int64_t wi = ((o * k->C + c) * k->kh + i) * k->kw + j;
                                acc += (double)ws[wi] * xs[xi];
                                dx_ref[xi] += ws[wi] * rs[yi];
                                dw_ref[wi] += xs[xi] * rs[yi];
                            }
                    y_ref[yi] = (float)acc;
                    db_ref[o] += rs[yi];
                }

    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = leaf(g, xs, (int64_t[]){ k->B, k->C, k->H, k->W }, 4, true);
    lb_tensor *w = leaf(g, ws, (int64_t[]){ k->O, k->C, k->kh, k->kw }, 4, true);
    lb_tensor *b = k->bias ? leaf(g, bs, (int64_t[]){ k->O }, 1, true) : NULL;
    lb_tensor *y = lb_conv2d(g, x, w, b, k->stride, k->pad);
    ck_assert_ptr_nonnull(y);
    expect_shape4(y, k->B, k->O, Ho, Wo);
    /* float sums of n terms of size ~1 drift by ~sqrt(n) ulps, here and in the reference
     * (which adds dw and db in float too): they sum B*Ho*Wo terms */
    const double tol_w = 3e-5 * fmax(1.0, sqrt((double)(k->B * Ho * Wo) / 64.0));
    /* y and dx sum C*kh*kw (resp. O*kh*kw) float products of size ~1 in some order: the
     * rounding error grows like the square root of that count */
    const double tol_y = 1e-5 * fmax(1.0, sqrt((double)(k->C * k->kh * k->kw) / 36.0));
    const double tol_x = 1e-5 * fmax(1.0, sqrt((double)(k->O * k->kh * k->kw) / 36.0));
    expect_near("y", y->data, y_ref, ny, tol_y);
    backward_weighted(g, y, rs);
    expect_near("dx", x->grad, dx_ref, nx, tol_x);
    expect_near("dw", w->grad, dw_ref, nw, tol_w);
    if (b) expect_near("db", b->grad, db_ref, k->O, tol_w);

    lb_graph_free(g);
    free(xs);
    free(ws);
    free(bs);
    free(rs);
    free(y_ref);
    free(dx_ref);
    free(dw_ref);
    free(db_ref);
    lb_conv2d_force_portable(false);
    ck_assert_int_eq(lb_parallel_set_threads(1, NULL), LB_OK);
}
END_TEST

/* lb_conv2d_maxpool2 against lb_conv2d then lb_maxpool2d on the same inputs: the same y
 * and winners bit for bit, so the same dx, dw and db bit for bit (the same dy per image, the
 * same kernels, db's sums in the same lanes and order). LeNet-5's two
 * convolutions (6 and 16 outputs: a two-channel last block), an odd output (a row and column
 * no window covers), a pooled width under 4 (the scalar rows), on 1 and 3 threads, AVX2 and
 * portable kernels, and with x an op's output (its gradient written, not added). */
static const conv_cfg pool_cfgs[] = {
    { 3, 1, 28, 28, 6, 5, 5, 1, 2, true },
    { 3, 6, 14, 14, 16, 5, 5, 1, 0, true },
    { 2, 3, 9, 11, 5, 3, 3, 1, 0, false },
    { 2, 2, 6, 5, 4, 3, 3, 1, 1, true },
    { 2, 3, 9, 16, 16, 5, 5, 1, 1, true }, /* channels last, padded, 7 rows (odd) */
};

/* Random normal inputs of a case with at most 32 outputs, drawn in the order x, w,
 * b, r: x, w, the bias b, and r (ny values) that weights y in the loss. */
typedef struct {
    float  *x, *w, *r, b[32];
    int64_t nx, nw, ny;
} conv_data;

static conv_data conv_data_make(const conv_cfg *k, int64_t ny, uint64_t seed)
{
    conv_data d = { .nx = k->B * k->C * k->H * k->W, .nw = k->O * k->C * k->kh * k->kw,
                    .ny = ny };
    d.x = malloc((size_t)d.nx * sizeof(float));
    d.w = malloc((size_t)d.nw * sizeof(float));
    d.r = malloc((size_t)ny * sizeof(float));
    ck_assert(d.x && d.w && d.r && k->O <= 32);
    lb_rng rng = lb_rng_make(seed);
    for (int64_t i = 0; i < d.nx; i++) d.x[i] = lb_rng_normal(&rng);
    for (int64_t i = 0; i < d.nw; i++) d.w[i] = lb_rng_normal(&rng);
    for (int64_t i = 0; i < k->O; i++) d.b[i] = lb_rng_normal(&rng);
    for (int64_t i = 0; i < ny; i++) d.r[i] = lb_rng_normal(&rng);
    return d;
}

static void conv_data_free(conv_data *d)
{
    free(d->x);
    free(d->w);
    free(d->r);
}

START_TEST(test_conv2d_maxpool2_matches)
{
    const conv_cfg *k = &pool_cfgs[_i / 8];
    ck_assert_int_eq(lb_parallel_set_threads(ref_threads[_i % 2], NULL), LB_OK);
    lb_conv2d_force_portable(_i / 2 % 2);
    const bool via_op = _i / 4 % 2;
    const int64_t Ho = (k->H + 2 * k->pad - k->kh) + 1, Wo = (k->W + 2 * k->pad - k->kw) + 1;
    conv_data d = conv_data_make(k, k->B * k->O * (Ho / 2) * (Wo / 2), 91 + (uint64_t)_i);
    lb_graph *gs[2];
    lb_tensor *xv[2], *wv[2], *bv[2], *yv[2];
    for (int f = 0; f < 2; f++) {
        lb_graph *g = gs[f] = lb_graph_new(0);
        xv[f] = leaf(g, d.x, (int64_t[]){ k->B, k->C, k->H, k->W }, 4, true);
        wv[f] = leaf(g, d.w, (int64_t[]){ k->O, k->C, k->kh, k->kw }, 4, true);
        bv[f] = k->bias ? leaf(g, d.b, (int64_t[]){ k->O }, 1, true) : NULL;
        lb_tensor *xin = via_op ? lb_reshape(g, xv[f], xv[f]->shape, 4) : xv[f];
        yv[f] = f ? lb_conv2d_maxpool2(g, xin, wv[f], bv[f], 1, k->pad)
                  : lb_maxpool2d(g, lb_conv2d(g, xin, wv[f], bv[f], 1, k->pad), 2, 2, 0);
        ck_assert_ptr_nonnull(yv[f]);
        expect_shape4(yv[f], k->B, k->O, Ho / 2, Wo / 2);
        backward_weighted(g, yv[f], d.r);
    }
    ck_assert_str_eq(yv[1]->op->name, "conv2d_maxpool2"); /* fused, not the fallback */
    ck_assert_mem_eq(yv[1]->data, yv[0]->data, (size_t)d.ny * sizeof(float));
    ck_assert_mem_eq(xv[1]->grad, xv[0]->grad, (size_t)d.nx * sizeof(float));
    ck_assert_mem_eq(wv[1]->grad, wv[0]->grad, (size_t)d.nw * sizeof(float));
    if (k->bias) ck_assert_mem_eq(bv[1]->grad, bv[0]->grad, (size_t)k->O * sizeof(float));
    for (int f = 0; f < 2; f++) lb_graph_free(gs[f]);
    conv_data_free(&d);
    lb_conv2d_force_portable(false);
    ck_assert_int_eq(lb_parallel_set_threads(1, NULL), LB_OK);
}
END_TEST

/* Frozen weights: dx and db without dW, whose image groups otherwise hold the channels-last
 * dy (it then goes in the dx scratch), and the direct path's the same way: the same dx and
 * db bit for bit as with dW computed. LeNet's conv2 (channels last) and conv1, plain and
 * pooled, AVX2 and portable kernels. */
START_TEST(test_conv2d_frozen_weights)
{
    const conv_cfg *k = _i / 4 ? &ref_cfgs[15] : &ref_cfgs[14]; /* LeNet conv1, conv2 */
    const bool pool = _i % 2;
    lb_conv2d_force_portable(_i / 2 % 2);
    const int64_t Ho = k->H + 2 * k->pad - k->kh + 1, Wo = k->W + 2 * k->pad - k->kw + 1;
    conv_data d = conv_data_make(k, k->B * k->O * (pool ? (Ho / 2) * (Wo / 2) : Ho * Wo),
                                 123 + (uint64_t)_i);
    lb_graph *gs[2];
    lb_tensor *xv[2], *bv[2];
    for (int f = 0; f < 2; f++) { /* f = 1: w frozen */
        lb_graph *g = gs[f] = lb_graph_new(0);
        xv[f] = leaf(g, d.x, (int64_t[]){ k->B, k->C, k->H, k->W }, 4, true);
        lb_tensor *w = leaf(g, d.w, (int64_t[]){ k->O, k->C, k->kh, k->kw }, 4, f == 0);
        bv[f] = leaf(g, d.b, (int64_t[]){ k->O }, 1, true);
        lb_tensor *y = pool ? lb_conv2d_maxpool2(g, xv[f], w, bv[f], 1, k->pad)
                            : lb_conv2d(g, xv[f], w, bv[f], 1, k->pad);
        ck_assert_ptr_nonnull(y);
        backward_weighted(g, y, d.r);
        ck_assert(f == 0 ? w->grad != NULL : w->grad == NULL);
    }
    ck_assert_mem_eq(xv[1]->grad, xv[0]->grad, (size_t)d.nx * sizeof(float));
    ck_assert_mem_eq(bv[1]->grad, bv[0]->grad, (size_t)k->O * sizeof(float));
    for (int f = 0; f < 2; f++) lb_graph_free(gs[f]);
    conv_data_free(&d);
    lb_conv2d_force_portable(false);
}
END_TEST

/* dx shared out on several threads: the dx of an image does not depend on the thread that
 * computes it, so with every image's dx left to a thread other than its dW's, or every dx
 * left until after the dW (lb_conv2d_force_steal 1 and 2), dx is the same bit for bit as on
 * 1 thread and as on 3 as timing goes, and dW and db the same as on 3 threads. Every
 * reference case, plain and pooled (the pooled cases' dy unpooled again by the thread that
 * takes the dx), with w trained and frozen. */
START_TEST(test_conv2d_shared_dx)
{
    const int n_ref = (int)(sizeof ref_cfgs / sizeof ref_cfgs[0]);
    const int c = _i / 2;
    const bool pool = c >= n_ref, frozen = _i % 2;
    const conv_cfg *k = pool ? &pool_cfgs[c - n_ref] : &ref_cfgs[c];
    const int64_t Ho = (k->H + 2 * k->pad - k->kh) / k->stride + 1;
    const int64_t Wo = (k->W + 2 * k->pad - k->kw) / k->stride + 1;
    conv_data d = conv_data_make(k, k->B * k->O * (pool ? (Ho / 2) * (Wo / 2) : Ho * Wo),
                                 211 + (uint64_t)_i);
    lb_graph *gs[4];
    lb_tensor *xv[4], *wv[4], *bv[4];
    for (int f = 0; f < 4; f++) { /* 1 thread; 3; 3 with dx to others; 3 with dx after dW */
        ck_assert_int_eq(lb_parallel_set_threads(f ? 3 : 1, NULL), LB_OK);
        lb_conv2d_force_steal(f < 2 ? 0 : f - 1);
        lb_graph *g = gs[f] = lb_graph_new(0);
        xv[f] = leaf(g, d.x, (int64_t[]){ k->B, k->C, k->H, k->W }, 4, true);
        wv[f] = leaf(g, d.w, (int64_t[]){ k->O, k->C, k->kh, k->kw }, 4, !frozen);
        bv[f] = k->bias ? leaf(g, d.b, (int64_t[]){ k->O }, 1, true) : NULL;
        lb_tensor *y = pool ? lb_conv2d_maxpool2(g, xv[f], wv[f], bv[f], 1, k->pad)
                            : lb_conv2d(g, xv[f], wv[f], bv[f], k->stride, k->pad);
        ck_assert_ptr_nonnull(y);
        backward_weighted(g, y, d.r);
    }
    lb_conv2d_force_steal(0);
    ck_assert_int_eq(lb_parallel_set_threads(1, NULL), LB_OK);
    for (int f = 1; f < 4; f++) {
        ck_assert_mem_eq(xv[f]->grad, xv[0]->grad, (size_t)d.nx * sizeof(float));
        if (f < 2) continue;
        if (!frozen) ck_assert_mem_eq(wv[f]->grad, wv[1]->grad, (size_t)d.nw * sizeof(float));
        if (k->bias) ck_assert_mem_eq(bv[f]->grad, bv[1]->grad, (size_t)k->O * sizeof(float));
    }
    for (int f = 0; f < 4; f++) lb_graph_free(gs[f]);
    conv_data_free(&d);
}
END_TEST

/* ---- (d) batch-norm running statistics against the formula ------------------------------- */

START_TEST(test_batchnorm_running_stats)
{
    const int64_t B = 3, C = 4, H = 2, W = 5, S = H * W, N = B * S;
    const float momentum = 0.2f, eps = 1e-3f;
    float xs[3 * 4 * 2 * 5], gs[4], bs[4], rm0[4], rv0[4];
    lb_rng rng = lb_rng_make(5);
    for (int64_t i = 0; i < B * C * S; i++) xs[i] = 3.0f + 2.0f * lb_rng_normal(&rng);
    for (int64_t c = 0; c < C; c++) {
        gs[c] = 0.5f + lb_rng_uniform(&rng);
        bs[c] = lb_rng_normal(&rng);
        rm0[c] = lb_rng_normal(&rng);
        rv0[c] = 0.5f + lb_rng_uniform(&rng);
    }
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = leaf(g, xs, (int64_t[]){ B, C, H, W }, 4, false);
    const bn_leaves v = bn_vectors(g, C, gs, bs, rm0, rv0, false);
    lb_tensor *gamma = v.gamma, *beta = v.beta, *rm = v.rm, *rv = v.rv;
    lb_tensor *y = lb_batchnorm(g, x, gamma, beta, rm, rv, momentum, eps);
    ck_assert_ptr_nonnull(y);
    double mean[4] = { 0 }, var[4] = { 0 };
    for (int64_t c = 0; c < C; c++) {
        double ymean = 0.0, yvar = 0.0;
        for (int64_t n = 0; n < B; n++)
            for (int64_t s = 0; s < S; s++) mean[c] += xs[(n * C + c) * S + s];
        mean[c] /= (double)N;
        for (int64_t n = 0; n < B; n++)
            for (int64_t s = 0; s < S; s++) {
                const double d = xs[(n * C + c) * S + s] - mean[c];
                var[c] += d * d;
                ymean += y->data[(n * C + c) * S + s];
            }
        var[c] /= (double)N; /* biased */
        ymean /= (double)N;
        for (int64_t n = 0; n < B; n++)
            for (int64_t s = 0; s < S; s++) {
                const double d = y->data[(n * C + c) * S + s] - ymean;
                yvar += d * d;
            }
        yvar /= (double)N;
        /* running = (1 - momentum) running + momentum batch, unbiased variance */
        const double unbiased = var[c] * (double)N / (double)(N - 1);
        ck_assert_double_eq_tol(rm->data[c], (1.0 - momentum) * rm0[c] + momentum * mean[c], 1e-5);
        ck_assert_double_eq_tol(rv->data[c], (1.0 - momentum) * rv0[c] + momentum * unbiased, 1e-5);
        /* the output has mean beta and variance gamma^2 var / (var + eps) per channel */
        ck_assert_double_eq_tol(ymean, bs[c], 1e-5);
        ck_assert_double_eq_tol(yvar, (double)gs[c] * gs[c] * var[c] / (var[c] + eps), 1e-4);
    }

    /* a second training step on the same batch moves them again from their new values */
    float rm1[4], rv1[4];
    memcpy(rm1, rm->data, sizeof rm1);
    memcpy(rv1, rv->data, sizeof rv1);
    ck_assert_ptr_nonnull(lb_batchnorm(g, x, gamma, beta, rm, rv, momentum, eps));
    for (int64_t c = 0; c < C; c++) {
        const double unbiased = var[c] * (double)N / (double)(N - 1);
        ck_assert_double_eq_tol(rm->data[c], (1.0 - momentum) * rm1[c] + momentum * mean[c], 1e-5);
        ck_assert_double_eq_tol(rv->data[c], (1.0 - momentum) * rv1[c] + momentum * unbiased, 1e-5);
    }
    lb_graph_free(g);
}
END_TEST

/* Rows of 32 or more values take the one-row-at-a-time statistics (row_stats_merge): the
 * batch mean and variance still match the double-precision formula when |mean| >> std
 * (channel 1: 10^4 + 0.5 N(0, 1), where one pass of sum and sum of squares in float would
 * lose the variance), with rows whose length is not a multiple of 8. momentum 1: the
 * running statistics are the batch's. */
START_TEST(test_batchnorm_row_stats)
{
    const int64_t B = 5, C = 2, H = 7, W = 9, S = H * W, N = B * S;
    float *xs = malloc((size_t)(B * C * S) * sizeof(float));
    ck_assert_ptr_nonnull(xs);
    lb_rng rng = lb_rng_make(11);
    for (int64_t n = 0; n < B; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++)
                xs[(n * C + c) * S + s] = (c ? 1e4f : -3.0f) + 0.5f * lb_rng_normal(&rng);
    const float gs[2] = { 1.5f, 0.75f }, bs[2] = { 0.25f, -2.0f }, z[2] = { 0, 0 }, o[2] = { 1, 1 };
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = leaf(g, xs, (int64_t[]){ B, C, H, W }, 4, false);
    const bn_leaves v = bn_vectors(g, C, gs, bs, z, o, false);
    lb_tensor *gamma = v.gamma, *beta = v.beta, *rm = v.rm, *rv = v.rv;
    lb_tensor *y = lb_batchnorm(g, x, gamma, beta, rm, rv, 1.0f, 1e-5f);
    ck_assert_ptr_nonnull(y);
    for (int64_t c = 0; c < C; c++) {
        double mean = 0.0, var = 0.0, ymean = 0.0;
        for (int64_t n = 0; n < B; n++)
            for (int64_t s = 0; s < S; s++) mean += xs[(n * C + c) * S + s];
        mean /= (double)N;
        for (int64_t n = 0; n < B; n++)
            for (int64_t s = 0; s < S; s++) {
                const double d = xs[(n * C + c) * S + s] - mean;
                var += d * d;
                ymean += y->data[(n * C + c) * S + s];
            }
        const double unbiased = var / (double)(N - 1);
        ymean /= (double)N;
        ck_assert_msg(fabs(rm->data[c] - mean) <= 1e-6 * fabs(mean) + 1e-6,
                      "channel %lld: mean %.9g, want %.9g", (long long)c, rm->data[c], mean);
        ck_assert_msg(fabs(rv->data[c] - unbiased) <= 1e-5 * unbiased,
                      "channel %lld: variance %.9g, want %.9g", (long long)c, rv->data[c], unbiased);
        ck_assert_double_eq_tol(ymean, bs[c], 1e-3);
    }
    lb_graph_free(g);
    free(xs);
}
END_TEST

/* batchnorm (plain, with relu, with add and relu) gives the same bits with its AVX2 kernels
 * and with the portable ones, forward and backward, for rows shorter than a block, with a
 * partial last group of 32 lanes, whole groups, and a tail: both fold the same lanes in the
 * same order, and the normalisation with its ReLU mask in one pass matches the two. */
START_TEST(test_batchnorm_portable_bits)
{
    static const int64_t sizes[][2] = { { 1, 5 }, { 5, 8 }, { 7, 9 }, { 8, 8 }, { 1, 1031 } };
    const int64_t B = 3, C = 2;
    const int64_t H = sizes[_i / 3][0], W = sizes[_i / 3][1], S = H * W, n = B * C * S;
    const int variant = _i % 3; /* batchnorm, batchnorm_relu, batchnorm_add_relu */
    const bool relu = variant > 0;
    float *xs = malloc((size_t)n * sizeof(float)), *rs = malloc((size_t)n * sizeof(float));
    float *out[2][7];
    const int n_out = variant == 2 ? 7 : 6;
    ck_assert(xs && rs);
    lb_rng rng = lb_rng_make(17 + (uint64_t)_i);
    for (int64_t i = 0; i < n; i++) {
        xs[i] = 0.5f + lb_rng_normal(&rng);
        rs[i] = lb_rng_normal(&rng);
    }
    const float gs[2] = { 1.25f, -0.5f }, bs[2] = { 0.1f, 0.3f }, z[2] = { 0, 0 }, o[2] = { 1, 1 };
    for (int pass = 0; pass < 2; pass++) {
        lb_batchnorm_force_portable(pass == 1);
        lb_graph *g = lb_graph_new(0);
        lb_tensor *x = leaf(g, xs, (int64_t[]){ B, C, H, W }, 4, true);
        const bn_leaves v = bn_vectors(g, C, gs, bs, z, o, true);
        lb_tensor *gamma = v.gamma, *beta = v.beta, *rm = v.rm, *rv = v.rv;
        /* the skip: the loss weights again (standard normal values) */
        lb_tensor *skip = variant == 2 ? leaf(g, rs, (int64_t[]){ B, C, H, W }, 4, true) : NULL;
        lb_tensor *y = variant == 2 ? lb_batchnorm_add_relu(g, x, skip, gamma, beta, rm, rv, 0.1f,
                                                            1e-5f)
                       : (relu ? lb_batchnorm_relu : lb_batchnorm)(g, x, gamma, beta, rm, rv,
                                                                   0.1f, 1e-5f);
        ck_assert_ptr_nonnull(y);
        float *ys = malloc((size_t)n * sizeof(float));
        ck_assert_ptr_nonnull(ys);
        memcpy(ys, y->data, (size_t)n * sizeof(float)); /* backward may reuse y's memory */
        backward_weighted(g, y, rs);
        const lb_tensor *t[5] = { x, gamma, beta, rm, rv };
        out[pass][0] = ys;
        for (int k = 0; k < 5; k++) {
            const int64_t m = k ? C : n;
            const float *src = k < 3 ? t[k]->grad : t[k]->data;
            out[pass][k + 1] = malloc((size_t)m * sizeof(float));
            ck_assert_ptr_nonnull(out[pass][k + 1]);
            memcpy(out[pass][k + 1], src, (size_t)m * sizeof(float));
        }
        if (skip) {
            out[pass][6] = malloc((size_t)n * sizeof(float));
            ck_assert_ptr_nonnull(out[pass][6]);
            memcpy(out[pass][6], skip->grad, (size_t)n * sizeof(float));
        }
        lb_graph_free(g);
    }
    lb_batchnorm_force_portable(false);
    static const char *what[7] = { "y",           "dx",          "dgamma", "dbeta",
                                   "running_mean", "running_var", "dskip" };
    for (int k = 0; k < n_out; k++) {
        const int64_t m = k == 0 || k == 1 || k == 6 ? n : C;
        ck_assert_msg(memcmp(out[0][k], out[1][k], (size_t)m * sizeof(float)) == 0,
                      "%s differs between the AVX2 and portable kernels (S %lld, variant %d)",
                      what[k], (long long)S, variant);
        free(out[0][k]);
        free(out[1][k]);
    }
    free(xs);
    free(rs);
}
END_TEST

/* ---- (e) shape and argument errors --------------------------------------------------------- */

/* y must be NULL, and g must hold the sticky status `want` with a message naming op. */
static void expect_fail(lb_graph *g, const lb_tensor *y, lb_status want, const char *op)
{
    lb_error err = { 0 };
    ck_assert_msg(y == NULL, "%s: expected a NULL result", op);
    ck_assert_int_eq(lb_graph_status(g, &err), want);
    ck_assert_msg(strstr(err.msg, op) != NULL, "message does not name %s: %s", op, err.msg);
    lb_graph_reset(g);
}

START_TEST(test_conv2d_errors)
{
    lb_graph *g = lb_graph_new(0);
    const int64_t xs[4] = { 2, 3, 8, 8 }, ws[4] = { 4, 3, 3, 3 };
    /* x not 4-d */
    expect_fail(g, lb_conv2d(g, zeros(g, (int64_t[]){ 3, 8, 8 }, 3), zeros(g, ws, 4), NULL, 1, 0),
                LB_ERR_SHAPE, "conv2d");
    /* channel mismatch */
    expect_fail(g, lb_conv2d(g, zeros(g, xs, 4), zeros(g, (int64_t[]){ 4, 2, 3, 3 }, 4), NULL, 1,
                             0), LB_ERR_SHAPE, "conv2d");
    /* bias of the wrong size, and a 2-d bias */
    expect_fail(g, lb_conv2d(g, zeros(g, xs, 4), zeros(g, ws, 4), zeros(g, (int64_t[]){ 3 }, 1),
                             1, 0), LB_ERR_SHAPE, "conv2d");
    expect_fail(g, lb_conv2d(g, zeros(g, xs, 4), zeros(g, ws, 4),
                             zeros(g, (int64_t[]){ 4, 1 }, 2), 1, 0), LB_ERR_SHAPE, "conv2d");
    /* empty output: a 5x5 kernel over 2x2 padded by 1 */
    expect_fail(g, lb_conv2d(g, zeros(g, (int64_t[]){ 1, 3, 2, 2 }, 4),
                             zeros(g, (int64_t[]){ 4, 3, 5, 5 }, 4), NULL, 1, 1),
                LB_ERR_SHAPE, "conv2d");
    /* bad stride and pad are argument errors */
    expect_fail(g, lb_conv2d(g, zeros(g, xs, 4), zeros(g, ws, 4), NULL, 0, 0), LB_ERR_ARG,
                "conv2d");
    expect_fail(g, lb_conv2d(g, zeros(g, xs, 4), zeros(g, ws, 4), NULL, 1, -1), LB_ERR_ARG,
                "conv2d");

    /* sticky: after a failure every op returns NULL and the first message is kept */
    lb_error first = { 0 }, later = { 0 };
    lb_tensor *x = zeros(g, xs, 4), *w = zeros(g, ws, 4);
    ck_assert_ptr_null(lb_conv2d(g, x, zeros(g, (int64_t[]){ 4, 2, 3, 3 }, 4), NULL, 1, 0));
    lb_graph_status(g, &first);
    ck_assert_ptr_null(lb_conv2d(g, x, w, NULL, 1, 1));
    ck_assert_ptr_null(lb_maxpool2d(g, x, 2, 2, 0));
    ck_assert_ptr_null(lb_batchnorm(g, x, w, w, w, w, 0.1f, 1e-5f));
    ck_assert_int_eq(lb_graph_status(g, &later), LB_ERR_SHAPE);
    ck_assert_str_eq(first.msg, later.msg);

    /* a NULL input returns NULL without failing the graph */
    lb_graph_reset(g);
    ck_assert_ptr_null(lb_conv2d(g, NULL, zeros(g, ws, 4), NULL, 1, 0));
    ck_assert_ptr_null(lb_conv2d(g, zeros(g, xs, 4), NULL, NULL, 1, 0));
    ck_assert_int_eq(lb_graph_status(g, NULL), LB_OK);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_pool_errors)
{
    lb_graph *g = lb_graph_new(0);
    const int64_t xs[4] = { 2, 3, 4, 4 };
    expect_fail(g, lb_maxpool2d(g, zeros(g, (int64_t[]){ 2, 16 }, 2), 2, 2, 0), LB_ERR_SHAPE,
                "maxpool2d");
    expect_fail(g, lb_maxpool2d(g, zeros(g, (int64_t[]){ 1, 1, 2, 2 }, 4), 4, 1, 0), LB_ERR_SHAPE,
                "maxpool2d");
    expect_fail(g, lb_maxpool2d(g, zeros(g, xs, 4), 3, 1, 2), LB_ERR_ARG, "maxpool2d");
    expect_fail(g, lb_maxpool2d(g, zeros(g, xs, 4), 0, 1, 0), LB_ERR_ARG, "maxpool2d");
    expect_fail(g, lb_maxpool2d(g, zeros(g, xs, 4), 2, 0, 0), LB_ERR_ARG, "maxpool2d");
    expect_fail(g, lb_avgpool2d(g, zeros(g, (int64_t[]){ 2, 3, 4 }, 3), 2, 2, 0), LB_ERR_SHAPE,
                "avgpool2d");
    expect_fail(g, lb_avgpool2d(g, zeros(g, (int64_t[]){ 1, 1, 3, 5 }, 4), 4, 1, 0), LB_ERR_SHAPE,
                "avgpool2d");
    expect_fail(g, lb_avgpool2d(g, zeros(g, xs, 4), 2, 2, 2), LB_ERR_ARG, "avgpool2d");
    expect_fail(g, lb_global_avgpool(g, zeros(g, (int64_t[]){ 2, 3 }, 2)), LB_ERR_SHAPE,
                "global_avgpool");
    ck_assert_ptr_null(lb_maxpool2d(g, NULL, 2, 2, 0));
    ck_assert_ptr_null(lb_avgpool2d(g, NULL, 2, 2, 0));
    ck_assert_ptr_null(lb_global_avgpool(g, NULL));
    ck_assert_int_eq(lb_graph_status(g, NULL), LB_OK);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_batchnorm_errors)
{
    lb_graph *g = lb_graph_new(0);
    const int64_t xs[4] = { 2, 3, 2, 2 }, cs[1] = { 3 };
#define BN(x, gm, bt, rm, rv, m, e) \
    lb_batchnorm(g, (x), (gm), (bt), (rm), (rv), (m), (e))
    /* 3-d x */
    expect_fail(g, BN(zeros(g, (int64_t[]){ 2, 3, 4 }, 3), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), zeros(g, cs, 1), 0.1f, 1e-5f), LB_ERR_SHAPE, "batchnorm");
    /* gamma of the wrong size; running_var of the wrong rank */
    expect_fail(g, BN(zeros(g, xs, 4), zeros(g, (int64_t[]){ 2 }, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), zeros(g, cs, 1), 0.1f, 1e-5f), LB_ERR_SHAPE, "gamma");
    expect_fail(g, BN(zeros(g, xs, 4), zeros(g, cs, 1), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, (int64_t[]){ 1, 3 }, 2), 0.1f, 1e-5f), LB_ERR_SHAPE,
                "running_var");
    /* batchnorm_add_relu: skip of another shape */
    expect_fail(g, lb_batchnorm_add_relu(g, zeros(g, xs, 4), zeros(g, (int64_t[]){ 2, 3, 2, 3 }, 4),
                                         zeros(g, cs, 1), zeros(g, cs, 1), zeros(g, cs, 1),
                                         zeros(g, cs, 1), 0.1f, 1e-5f),
                LB_ERR_SHAPE, "batchnorm_add_relu: skip (2, 3, 2, 3)");
    /* training mode needs at least 2 values per channel; eval mode does not */
    expect_fail(g, BN(zeros(g, (int64_t[]){ 1, 3 }, 2), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), zeros(g, cs, 1), 0.1f, 1e-5f), LB_ERR_SHAPE, "batchnorm");
    lb_graph_set_training(g, false);
    lb_tensor *y = BN(zeros(g, (int64_t[]){ 1, 3 }, 2), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), zeros(g, cs, 1), 0.1f, 1e-5f);
    ck_assert_ptr_nonnull(y);
    lb_graph_set_training(g, true);
    /* momentum outside [0, 1], eps <= 0 or NaN */
    expect_fail(g, BN(zeros(g, xs, 4), zeros(g, cs, 1), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), 1.5f, 1e-5f), LB_ERR_ARG, "batchnorm");
    expect_fail(g, BN(zeros(g, xs, 4), zeros(g, cs, 1), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), 0.1f, 0.0f), LB_ERR_ARG, "batchnorm");
    expect_fail(g, BN(zeros(g, xs, 4), zeros(g, cs, 1), zeros(g, cs, 1), zeros(g, cs, 1),
                      zeros(g, cs, 1), 0.1f, NAN), LB_ERR_ARG, "batchnorm");
    ck_assert_ptr_null(BN(zeros(g, xs, 4), NULL, zeros(g, cs, 1), zeros(g, cs, 1),
                          zeros(g, cs, 1), 0.1f, 1e-5f));
    ck_assert_int_eq(lb_graph_status(g, NULL), LB_OK);
#undef BN
    lb_graph_free(g);
}
END_TEST

Suite *autograd_conv_suite(void)
{
    Suite *s = suite_create("autograd_conv");

    TCase *tc = tcase_create("forward_values");
    tcase_add_test(tc, test_conv2d_forward_3x3);
    tcase_add_test(tc, test_conv2d_forward_1x1);
    tcase_add_test(tc, test_maxpool_forward);
    tcase_add_test(tc, test_maxpool_k2_rows);
    tcase_add_test(tc, test_avgpool_forward);
    tcase_add_test(tc, test_global_avgpool_forward);
    tcase_add_test(tc, test_batchnorm_forward);
    suite_add_tcase(s, tc);

    tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 120); /* sanitizer builds are ~10x slower */
    tcase_add_loop_test(tc, test_gradient, 0, (int)(sizeof grad_rows / sizeof grad_rows[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_conv2d_vs_naive, 0,
                        4 * (int)(sizeof ref_cfgs / sizeof ref_cfgs[0]));
    tcase_add_loop_test(tc, test_conv2d_maxpool2_matches, 0,
                        8 * (int)(sizeof pool_cfgs / sizeof pool_cfgs[0]));
    tcase_add_loop_test(tc, test_conv2d_frozen_weights, 0, 8);
    tcase_add_loop_test(tc, test_conv2d_shared_dx, 0,
                        2 * (int)(sizeof ref_cfgs / sizeof ref_cfgs[0]
                                  + sizeof pool_cfgs / sizeof pool_cfgs[0]));
    tcase_add_test(tc, test_batchnorm_running_stats);
    tcase_add_test(tc, test_batchnorm_row_stats);
    tcase_add_loop_test(tc, test_batchnorm_portable_bits, 0, 15);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_conv2d_errors);
    tcase_add_test(tc, test_pool_errors);
    tcase_add_test(tc, test_batchnorm_errors);
    suite_add_tcase(s, tc);
    return s;
}
