/* test_quant_ops.c: tests of the fake-quantization ops (quant/fake_quant.h).
 *
 * Forward values on hand-computed cases (ties to even, clamping, zero points, per-channel and
 * per-group scales with a partial last group, 2/4/8 bits), exact gradient masks for the
 * straight-through estimators (no finite differences through rounding), the LSQ and DoReFa
 * gradients against their formulas computed here in double, finite differences only where the
 * op really is differentiable (clamped LSQ elements, PACT's alpha above the clip), errors,
 * idempotence, and a bit-exact golden comparison with PyTorch 1.13's fake_quantize_* ops
 * (tests/data/fake_quant_golden.txt, written by tests/data/gen/gen_quant_golden.py).
 */
#include <math.h>
#include <string.h>

#include "quant/fake_quant.h"
#include "tests/gradcheck.h"
#include "tests/suites.h"

#ifndef LB_TEST_DATA_DIR
#define LB_TEST_DATA_DIR "tests/data" /* when built by hand from the repository root */
#endif

/* ---- helpers ------------------------------------------------------------------------- */

/* loss = sum(y * r) for a constant r, so the op under test sees dy = r exactly. */
static lb_tensor *weighted_sum(lb_graph *g, lb_tensor *y, const float *r)
{
    if (!y) return NULL;
    lb_tensor *rt = lb_leaf_from(g, r, y->shape, y->n_dims, false);
    return lb_sum(g, lb_mul(g, y, rt));
}

static void backward_ok(lb_graph *g, lb_tensor *loss)
{
    lb_error err = { 0 };
    lb_graph_status(g, &err);
    ck_assert_msg(loss != NULL, "graph failed: %s", err.msg);
    ck_assert_msg(lb_backward(g, loss, &err) == LB_OK, "backward: %s", err.msg);
}

static lb_qparams qparams(lb_qgran gran, int64_t group, int32_t qmin, int32_t qmax, int64_t n,
                          const float *scale, const float *zero)
{
    return (lb_qparams){ .gran = gran, .group = group, .qmin = qmin, .qmax = qmax, .n = n,
                         .scale = scale, .zero_point = zero };
}

/* The scale index of element i, straight from the definition in fake_quant.h (written
 * independently of the library's run-based loops). */
static int64_t ref_index(const int64_t *shape, int n_dims, lb_qgran gran, int64_t G, int64_t i)
{
    const int64_t numel = lb_shape_numel(shape, n_dims), K = numel / shape[0];
    switch (gran) {
    case LB_QG_TENSOR: return 0;
    case LB_QG_CHANNEL: return i / K;
    case LB_QG_GROUP: return (i / K) * ((K + G - 1) / G) + (i % K) / G;
    }
    return -1;
}

/* One element of y = s * (clamp(round(x / s) + z, qmin, qmax) - z). */
static float ref_fake_quant(float x, float s, float z, int32_t qmin, int32_t qmax)
{
    float q = nearbyintf(x / s) + z;
    if (q < (float)qmin) q = (float)qmin;
    if (q > (float)qmax) q = (float)qmax;
    return (q - z) * s;
}

/* Layouts exercised by the table-driven tests: shape, gran, G. */
typedef struct {
    const char *name;
    int64_t     shape[LB_MAX_DIMS];
    int         n_dims;
    lb_qgran    gran;
    int64_t     group;
} layout_case;

static const layout_case layouts[] = {
    { "tensor", { 3, 2, 5 }, 3, LB_QG_TENSOR, 0 },
    { "channel", { 3, 2, 5 }, 3, LB_QG_CHANNEL, 0 },
    { "group_exact", { 3, 12 }, 2, LB_QG_GROUP, 4 },          /* 3 full groups per row   */
    { "group_partial", { 2, 3, 2, 2 }, 4, LB_QG_GROUP, 5 },  /* K = 12: runs 5, 5, 2    */
    { "group_wide", { 2, 7 }, 2, LB_QG_GROUP, 100 },         /* one partial group a row */
};
#define N_LAYOUTS ((int)(sizeof layouts / sizeof layouts[0]))

/* Fills v[0..n) with k * N(0, 1). */
static void fill_normal(float *v, int64_t n, float k, uint64_t seed)
{
    lb_rng r = lb_rng_make(seed);
    for (int64_t i = 0; i < n; i++) v[i] = k * lb_rng_normal(&r);
}

/* Fills v[0..n) uniformly from [lo, hi). */
static void fill_uniform(float *v, int64_t n, float lo, float hi, uint64_t seed)
{
    lb_rng r = lb_rng_make(seed);
    for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * lb_rng_uniform(&r);
}

enum { MAXN = 64 }; /* elements of the largest test tensor */

/* ---- fake_quant: forward values ------------------------------------------------------ */

/* Signed 4-bit, s = 0.5: ties go to the even integer, the range clamps at -8 and 7. */
START_TEST(test_fq_tensor_sym4_ties)
{
    lb_graph *g = lb_graph_new(0);
    const float s = 0.5f;
    const float v[] = { 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.49f, 7, 7.5f, 8, 100,
                        -8, -8.5f, -9, -100, 0.49f, -0.51f };
    const float q[] = { 0, 2, 2, 0, -2, -2, 3, 7, 7, 7, 7, -8, -8, -8, -8, 0, -1 };
    enum { N = sizeof v / sizeof v[0] };
    float xs[N];
    for (int i = 0; i < N; i++) xs[i] = s * v[i]; /* exact: x / s == v */
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ N }, 1, false);
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, -8, 7, 1, &s, NULL);
    lb_tensor *y = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < N; i++)
        ck_assert_msg(y->data[i] == q[i] * s, "x/s = %g: y = %g, want %g", (double)v[i],
                      (double)y->data[i], (double)(q[i] * s));
    /* round(-0.5) is -0, but adding the zero point gives +0, as in PyTorch */
    ck_assert(!signbit(y->data[3]));
    lb_graph_free(g);
}
END_TEST

/* Unsigned 4-bit with a zero point: y = s * (clamp(round(x/s) + z, 0, 15) - z). */
START_TEST(test_fq_asym_zero_point)
{
    lb_graph *g = lb_graph_new(0);
    const float s = 0.25f, z = 3;
    /*                x/s: -3     -4     12    13     0.5     1.5     -1.5    2.5   */
    const float xs[] = { -0.75f, -1.0f, 3.0f, 3.25f, 0.125f, 0.375f, -0.375f, 0.625f };
    /*                q:    0      -1->0  15    16->15  0+3    2+3     -2+3    2+3   */
    const float want[] = { -0.75f, -0.75f, 3.0f, 3.0f, 0.0f, 0.5f, -0.5f, 0.5f };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 8 }, 1, false);
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, 0, 15, 1, &s, &z);
    lb_tensor *y = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 8; i++) ck_assert_float_eq(y->data[i], want[i]);
    lb_graph_free(g);
}
END_TEST

/* One scale (and zero point) per row of x (3, 4), signed 4-bit. */
START_TEST(test_fq_per_channel)
{
    lb_graph *g = lb_graph_new(0);
    const float scale[] = { 0.5f, 0.25f, 2.0f }, zero[] = { 0, 1, -2 };
    const float xs[] = {
        0.25f, -1.3f, 3.9f, -5,     /* s 0.5,  z 0:  0.5, -2.6, 7.8, -10    -> 0, -3, 7, -8 */
        0.25f, -2.2f, 1.5f, 2,      /* s 0.25, z 1:  1, -8.8, 6, 8  (+1)   -> 2, -8, 7, 7  */
        3, -13, 17, 5,              /* s 2,    z -2: 1.5, -6.5, 8.5, 2.5 (-2) -> 0, -8, 6, 0 */
    };
    const float want[] = { 0, -1.5f, 3.5f, -4, 0.25f, -2.25f, 1.5f, 1.5f, 4, -12, 16, 4 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 3, 4 }, 2, false);
    const lb_qparams qp = qparams(LB_QG_CHANNEL, 0, -8, 7, 3, scale, zero);
    lb_tensor *y = lb_fake_quant(g, x, &qp, LB_STE_PLAIN);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 12; i++) ck_assert_float_eq(y->data[i], want[i]);
    lb_graph_free(g);
}
END_TEST

/* Groups of G = 3 along rows of K = 7: runs 3, 3, 1 per row (the last group is partial). */
START_TEST(test_fq_per_group)
{
    lb_graph *g = lb_graph_new(0);
    const float scale[] = { 0.5f, 1, 0.25f, 2, 0.125f, 4 };
    const float xs[] = {
        0.75f, -0.3f, 9,   2.5f, -7.6f, 0.4f,   0.625f,   /* 1.5 -0.6 18 | 2.5 -7.6 .4 | 2.5 */
        3, -20, 5.2f,      0.0625f, 1, -1.0625f,  -6,     /* 1.5 -10 2.6 | .5 8 -8.5  | -1.5 */
    };
    const float want[] = { 1, -0.5f, 3.5f, 2, -8, 0, 0.5f, 4, -16, 6, 0, 0.875f, -1, -8 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, 7 }, 2, false);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_GROUP, 3), 6);
    const lb_qparams qp = qparams(LB_QG_GROUP, 3, -8, 7, 6, scale, NULL);
    lb_tensor *y = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 14; i++) ck_assert_float_eq(y->data[i], want[i]);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_qgran_count)
{
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ 2, 7 }, 2, false);
    lb_tensor *w = lb_leaf(g, (int64_t[]){ 8, 3, 3, 3 }, 4, false);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_TENSOR, 0), 1);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_CHANNEL, 0), 2);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_GROUP, 1), 14);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_GROUP, 7), 2);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_GROUP, 100), 2);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_GROUP, 0), -1);
    ck_assert_int_eq(lb_qgran_count(x, LB_QG_GROUP, -3), -1);
    ck_assert_int_eq(lb_qgran_count(w, LB_QG_CHANNEL, 0), 8);
    ck_assert_int_eq(lb_qgran_count(w, LB_QG_GROUP, 8), 8 * 4); /* K = 27: 8, 8, 8, 3 */
    ck_assert_int_eq(lb_qgran_count(NULL, LB_QG_TENSOR, 0), -1);
    lb_graph_free(g);
}
END_TEST

/* Every layout against the per-element index formula, forward and clipped mask, bit-exact. */
START_TEST(test_fq_layout_index)                /* _i indexes layouts */
{
    const layout_case *c = &layouts[_i];
    lb_graph *g = lb_graph_new(0);
    const int64_t n = lb_shape_numel(c->shape, c->n_dims);
    float xs[MAXN], r[MAXN], scale[MAXN], zero[MAXN];
    fill_normal(xs, n, 2.0f, 11u + (unsigned)_i);
    fill_normal(r, n, 1.0f, 21u + (unsigned)_i);
    lb_tensor *x = lb_leaf_from(g, xs, c->shape, c->n_dims, true);
    const int64_t ns = lb_qgran_count(x, c->gran, c->group);
    ck_assert_int_gt(ns, 0);
    fill_uniform(scale, ns, 0.2f, 0.6f, 31u + (unsigned)_i);
    for (int64_t s = 0; s < ns; s++) zero[s] = (float)(s % 5) - 2.0f; /* -2..2 */
    const lb_qparams qp = qparams(c->gran, c->group, -8, 7, ns, scale, zero);
    lb_tensor *y = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    backward_ok(g, weighted_sum(g, y, r));
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = ref_index(c->shape, c->n_dims, c->gran, c->group, i);
        const float s = scale[k], z = zero[k];
        ck_assert_msg(y->data[i] == ref_fake_quant(xs[i], s, z, -8, 7), "%s: y[%lld]", c->name,
                      (long long)i);
        const bool inside = xs[i] >= s * (-8 - z) && xs[i] <= s * (7 - z);
        ck_assert_msg(x->grad[i] == (inside ? r[i] : 0.0f), "%s: dx[%lld]", c->name,
                      (long long)i);
    }
    lb_graph_free(g);
}
END_TEST

/* 2 bits (-2..1) and 8 bits (-128..127). */
START_TEST(test_fq_bits_2_and_8)
{
    lb_graph *g = lb_graph_new(0);
    const float s2 = 1.0f;
    const float x2[] = { -3, -2, -1.5f, -0.5f, 0.5f, 1, 1.5f, 2 };
    const float w2[] = { -2, -2, -2, 0, 0, 1, 1, 1 };
    lb_tensor *a = lb_leaf_from(g, x2, (int64_t[]){ 8 }, 1, false);
    const lb_qparams q2 = qparams(LB_QG_TENSOR, 0, -2, 1, 1, &s2, NULL);
    lb_tensor *ya = lb_fake_quant(g, a, &q2, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(ya);
    for (int i = 0; i < 8; i++) ck_assert_float_eq(ya->data[i], w2[i]);

    const float s8 = 0.1f;
    const float x8[] = { 12.7f, 13, -12.8f, -20, 0.26f, -0.34f };
    const float k8[] = { 127, 127, -128, -128, 3, -3 };   /* round(x / 0.1), clamped */
    lb_tensor *b = lb_leaf_from(g, x8, (int64_t[]){ 6 }, 1, false);
    const lb_qparams q8 = qparams(LB_QG_TENSOR, 0, -128, 127, 1, &s8, NULL);
    lb_tensor *yb = lb_fake_quant(g, b, &q8, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(yb);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(yb->data[i], k8[i] * s8);
    lb_graph_free(g);
}
END_TEST

/* ---- fake_quant: straight-through estimators ---------------------------------------- */

/* s = 0.5, q in [-4, 3]: x range [-2, 1.5], ends inside. x is quantized twice and the results
 * added, so dx = 2 * mask * dy proves that backward accumulates. 1.6 (x/s = 3.2 rounds to 3,
 * inside the grid) is outside the x range and gets no gradient under CLIPPED; PyTorch's
 * fake_quantize, which masks on the rounded value, would pass it. */
START_TEST(test_fq_ste_masks)                   /* _i: lb_ste */
{
    const lb_ste ste = (lb_ste)_i;
    lb_graph *g = lb_graph_new(0);
    const float s = 0.5f;
    const float xs[] = { -3, -2.25f, -2, -1, 0.2f, 1.5f, 1.6f, 1.75f, 3 };
    const float clip[] = { 0, 0, 1, 1, 1, 1, 0, 0, 0 };
    const float r[] = { 1, -2, 3, -4, 5, -6, 7, -8, 9 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 9 }, 1, true);
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, -4, 3, 1, &s, NULL);
    lb_tensor *y = lb_add(g, lb_fake_quant(g, x, &qp, ste), lb_fake_quant(g, x, &qp, ste));
    backward_ok(g, weighted_sum(g, y, r));
    for (int i = 0; i < 9; i++) {
        const float mask = ste == LB_STE_PLAIN ? 1.0f : clip[i];
        ck_assert_msg(x->grad[i] == 2.0f * mask * r[i], "ste %d: dx[%d] = %g, want %g", _i, i,
                      (double)x->grad[i], (double)(2.0f * mask * r[i]));
    }
    lb_graph_free(g);
}
END_TEST

/* With a zero point the clipped range moves: z = 2, q in [-4, 3] -> x in [s*(-6), s*1]. */
START_TEST(test_fq_ste_zero_point)
{
    lb_graph *g = lb_graph_new(0);
    const float s = 0.5f, z = 2;
    const float xs[] = { -3.25f, -3, 0.5f, 0.75f }, want[] = { 0, 1, 1, 0 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 4 }, 1, true);
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, -4, 3, 1, &s, &z);
    backward_ok(g, lb_sum(g, lb_fake_quant(g, x, &qp, LB_STE_CLIPPED)));
    for (int i = 0; i < 4; i++) ck_assert_float_eq(x->grad[i], want[i]);
    lb_graph_free(g);
}
END_TEST

/* ---- LSQ ------------------------------------------------------------------------------ */

/* LSQ's forward is fake_quant with z = 0 and scale = step: equal values (LSQ may give -0
 * where fake_quant's + z gives +0). */
START_TEST(test_lsq_forward_equals_fake_quant)  /* _i indexes layouts */
{
    const layout_case *c = &layouts[_i];
    lb_graph *g = lb_graph_new(0);
    const int64_t n = lb_shape_numel(c->shape, c->n_dims);
    float xs[MAXN], steps[MAXN];
    fill_normal(xs, n, 1.5f, 41u + (unsigned)_i);
    lb_tensor *x = lb_leaf_from(g, xs, c->shape, c->n_dims, false);
    const int64_t ns = lb_qgran_count(x, c->gran, c->group);
    fill_uniform(steps, ns, 0.1f, 0.5f, 51u + (unsigned)_i);
    lb_tensor *step = lb_leaf_from(g, steps, (int64_t[]){ ns }, 1, false);
    lb_tensor *y1 = lb_fake_quant_lsq(g, x, step, c->gran, c->group, -4, 3, 1.0f);
    const lb_qparams qp = qparams(c->gran, c->group, -4, 3, ns, steps, NULL);
    lb_tensor *y2 = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(y1);
    ck_assert_ptr_nonnull(y2);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(y1->data[i] == y2->data[i], "%s: y[%lld]: lsq %.9g, fake_quant %.9g",
                      c->name, (long long)i, (double)y1->data[i], (double)y2->data[i]);
    lb_graph_free(g);
}
END_TEST

/* dx mask exact; ds against the LSQ formula evaluated here in double, per scale:
 *   ds = gs * sum dy * { round(v) - v inside, qmin below, qmax above },  v = x / s
 * The step is a parameter whose gradient already holds 0.25: backward must add to it. */
START_TEST(test_lsq_grad_formula)               /* _i indexes layouts */
{
    const layout_case *c = &layouts[_i];
    const int32_t qmin = -4, qmax = 3;
    const float gs = 0.37f, prior = 0.25f;
    lb_error err = { 0 };
    lb_graph *g = lb_graph_new(0);
    const int64_t n = lb_shape_numel(c->shape, c->n_dims);
    float xs[MAXN], r[MAXN];
    fill_normal(xs, n, 1.5f, 61u + (unsigned)_i);
    fill_normal(r, n, 1.0f, 71u + (unsigned)_i);
    lb_tensor *x = lb_leaf_from(g, xs, c->shape, c->n_dims, true);
    const int64_t ns = lb_qgran_count(x, c->gran, c->group);

    lb_params *ps = lb_params_new();
    lb_tensor *step = lb_params_add(ps, "q.step", (int64_t[]){ ns }, 1, 0, &err);
    ck_assert_int_eq(lb_params_finalize(ps, &err), LB_OK);
    fill_uniform(step->data, ns, 0.2f, 0.5f, 81u + (unsigned)_i);
    for (int64_t s = 0; s < ns; s++) step->grad[s] = prior;

    lb_tensor *y = lb_fake_quant_lsq(g, x, step, c->gran, c->group, qmin, qmax, gs);
    backward_ok(g, weighted_sum(g, y, r));

    double ds[MAXN] = { 0 };
    int n_in = 0, n_out = 0; /* make sure both branches are exercised */
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = ref_index(c->shape, c->n_dims, c->gran, c->group, i);
        const double v = (double)(xs[i] / step->data[k]); /* x / s as the op divides */
        const bool inside = v >= qmin && v <= qmax;
        ck_assert_msg(x->grad[i] == (inside ? r[i] : 0.0f), "%s: dx[%lld]", c->name,
                      (long long)i);
        ds[k] += r[i] * (inside ? nearbyint(v) - v : (v < qmin ? qmin : qmax));
        n_in += inside;
        n_out += !inside;
    }
    ck_assert_int_gt(n_in, 0);
    ck_assert_int_gt(n_out, 0);
    for (int64_t s = 0; s < ns; s++) {
        const double want = prior + gs * ds[s];
        ck_assert_msg(fabs(step->grad[s] - want) <= 1e-5 * fmax(1.0, fabs(want)),
                      "%s: ds[%lld] = %.8g, want %.8g", c->name, (long long)s,
                      (double)step->grad[s], want);
    }
    lb_params_free(ps);
    lb_graph_free(g);
}
END_TEST

/* loss(s) = sum(r * lsq(x; s)) in double, with every step taken from steps[]. */
static double lsq_loss(const float *xs, const float *r, int64_t n, const float *steps,
                       int32_t qmin, int32_t qmax)
{
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, n / 2 }, 2, false);
    lb_tensor *st = lb_leaf_from(g, steps, (int64_t[]){ 2 }, 1, false);
    lb_tensor *y = lb_fake_quant_lsq(g, x, st, LB_QG_CHANNEL, 0, qmin, qmax, 1.0f);
    ck_assert_ptr_nonnull(y);
    double l = 0.0;
    for (int64_t i = 0; i < n; i++) l += (double)r[i] * y->data[i];
    lb_graph_free(g);
    return l;
}

/* Finite differences of ds, per-channel steps {0.5, 0.25}, q in [-4, 3], gs = 1.
 *
 * LSQ's ds is not the derivative of its forward: at fixed rounding d/ds [s * round(x/s)] =
 * round(x/s), while LSQ uses round(x/s) - x/s for elements inside the range. Only clamped
 * elements agree (d/ds [s * qmax] = qmax exactly). So: (1) with every element clamped,
 * ds == FD; (2) with a mix, ds == FD - sum over inside elements of dy * x/s, which checks the
 * inside term against the formula. Inside elements are x = s * (k + o), |o| <= 0.3, so x/s
 * stays > 0.1 away from any k + 1/2 under s +- eps; clamped ones are >= 1.5 steps outside. */
START_TEST(test_lsq_ds_finite_difference)
{
    enum { N = 24, HALF = N / 2 };
    const int32_t qmin = -4, qmax = 3;
    const float steps[2] = { 0.5f, 0.25f }, eps = 1.0f / 4096; /* s +- eps exact in float */
    const float offs[] = { -0.3f, -0.1f, 0.0f, 0.2f, 0.3f, -0.25f };
    float xs_clamped[N], xs_mixed[N], r[N];
    fill_normal(r, N, 1.0f, 91);
    for (int i = 0; i < N; i++) {
        const float s = steps[i / HALF], o = offs[i % 6];
        const float far = (i % 2 ? qmax + 1.5f + fabsf(o) : qmin - 1.5f - fabsf(o));
        xs_clamped[i] = s * far;
        xs_mixed[i] = i % 3 == 0 ? s * far : s * ((float)(i % 8 + qmin) + o);
    }
    for (int pass = 0; pass < 2; pass++) {
        const float *xs = pass == 0 ? xs_clamped : xs_mixed;
        lb_graph *g = lb_graph_new(0);
        lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, HALF }, 2, false);
        lb_tensor *st = lb_leaf_from(g, steps, (int64_t[]){ 2 }, 1, true);
        lb_tensor *y = lb_fake_quant_lsq(g, x, st, LB_QG_CHANNEL, 0, qmin, qmax, 1.0f);
        backward_ok(g, weighted_sum(g, y, r));
        for (int c = 0; c < 2; c++) {
            float sp[2] = { steps[0], steps[1] }, sm[2] = { steps[0], steps[1] };
            sp[c] += eps;
            sm[c] -= eps;
            const double fd = (lsq_loss(xs, r, N, sp, qmin, qmax) -
                               lsq_loss(xs, r, N, sm, qmin, qmax)) / ((double)sp[c] - sm[c]);
            double inside_term = 0.0; /* sum of dy * x/s over the inside elements */
            for (int i = c * HALF; i < (c + 1) * HALF; i++) {
                const double v = (double)xs[i] / steps[c];
                if (v >= qmin && v <= qmax) inside_term += r[i] * v;
            }
            if (pass == 0) ck_assert_double_eq(inside_term, 0.0);
            const double want = fd - inside_term;
            ck_assert_msg(fabs(st->grad[c] - want) <= 1e-5 * fmax(1.0, fabs(want)),
                          "pass %d channel %d: ds %.8g, FD %.8g - inside %.8g", pass, c,
                          (double)st->grad[c], fd, inside_term);
        }
        lb_graph_free(g);
    }
}
END_TEST

/* step = 2 mean|x| / sqrt(qmax): with qmax = 4 that is mean|x| exactly. */
START_TEST(test_lsq_init_step)
{
    lb_graph *g = lb_graph_new(0);
    const float xs[] = { 1, -2, 3, -4, 5, -6, 0.5f, 0.5f, -0.5f, 0.5f, 1, -1 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, 6 }, 2, false);
    float st[4];
    lb_lsq_init_step(x, LB_QG_TENSOR, 0, 4, st);
    ck_assert_float_eq(st[0], (float)(25.0 / 12.0));
    lb_lsq_init_step(x, LB_QG_CHANNEL, 0, 4, st);
    ck_assert_float_eq(st[0], 3.5f);
    ck_assert_float_eq(st[1], (float)(4.0 / 6.0));
    lb_lsq_init_step(x, LB_QG_GROUP, 4, 4, st); /* runs: 4, 2 per row */
    const float want[] = { 2.5f, 5.5f, 0.5f, 1.0f };
    for (int k = 0; k < 4; k++) ck_assert_float_eq(st[k], want[k]);
    lb_lsq_init_step(x, LB_QG_TENSOR, 0, 7, st);
    ck_assert_float_eq_tol(st[0], (float)(2.0 * 25.0 / 12.0 / sqrt(7.0)), 1e-6);
    lb_graph_free(g);
}
END_TEST

/* ---- PACT ----------------------------------------------------------------------------- */

/* alpha = 1.5, 2 bits: L = 3, step 0.5, outputs {0, 0.5, 1, 1.5}. */
START_TEST(test_pact_forward)
{
    lb_graph *g = lb_graph_new(0);
    const float a = 1.5f;
    /*                        x/s:       0.4   0.5   1.5    2.4   3    4  20 */
    const float xs[] = { -1, 0, 0.2f, 0.25f, 0.75f, 1.2f, 1.5f, 2, 10 };
    const float want[] = { 0, 0, 0, 0, 1.0f, 1.0f, 1.5f, 1.5f, 1.5f };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 9 }, 1, false);
    lb_tensor *alpha = lb_leaf_from(g, &a, (int64_t[]){ 1 }, 1, false);
    lb_tensor *y = lb_pact(g, x, alpha, 2);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 9; i++) ck_assert_float_eq(y->data[i], want[i]);
    lb_graph_free(g);
}
END_TEST

/* PACT is fake_quant with scale alpha / L on [0, L]: the same values for any x. */
START_TEST(test_pact_equals_fake_quant)
{
    lb_graph *g = lb_graph_new(0);
    const float a = 2.7f;
    float xs[MAXN];
    fill_uniform(xs, MAXN, -1.0f, 4.0f, 101);
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ MAXN }, 1, false);
    lb_tensor *alpha = lb_leaf_from(g, &a, (int64_t[]){ 1 }, 1, false);
    lb_tensor *y1 = lb_pact(g, x, alpha, 4);
    const float s = a / 15.0f;
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, 0, 15, 1, &s, NULL);
    lb_tensor *y2 = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    ck_assert_ptr_nonnull(y1);
    ck_assert_ptr_nonnull(y2);
    for (int i = 0; i < MAXN; i++) ck_assert_float_eq(y1->data[i], y2->data[i]);
    lb_graph_free(g);
}
END_TEST

/* dx = dy where 0 <= x <= alpha (alpha itself inside); dalpha = sum of dy where x > alpha.
 * x feeds two PACT nodes (added), so both gradients are twice the single-node value. */
START_TEST(test_pact_grad)
{
    lb_graph *g = lb_graph_new(0);
    const float a = 1.5f;
    const float xs[] = { -1, 0, 0.5f, 1.5f, 1.75f, 3 };
    const float r[] = { 0.5f, 1, 2, 4, 8, 16 };
    const float mask[] = { 0, 1, 1, 1, 0, 0 };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 6 }, 1, true);
    lb_tensor *alpha = lb_leaf_from(g, &a, (int64_t[]){ 1 }, 1, true);
    lb_tensor *y = lb_add(g, lb_pact(g, x, alpha, 3), lb_pact(g, x, alpha, 3));
    backward_ok(g, weighted_sum(g, y, r));
    for (int i = 0; i < 6; i++) ck_assert_float_eq(x->grad[i], 2.0f * mask[i] * r[i]);
    ck_assert_float_eq(alpha->grad[0], 2.0f * (8 + 16));
    lb_graph_free(g);
}
END_TEST

/* Every x above alpha: y = alpha exactly, so finite differences apply to dalpha (and dx = 0).
 * x = in[0] + 2 in [2.5, 3.5], alpha = in[1] in [0.5, 1.5] (GC_POSITIVE). */
static lb_tensor *b_pact_clipped(lb_graph *g, lb_tensor **in)
{
    float two[12];
    for (int i = 0; i < 12; i++) two[i] = 2.0f;
    lb_tensor *c = lb_leaf_from(g, two, (int64_t[]){ 3, 4 }, 2, false);
    return lb_pact(g, lb_add(g, in[0], c), in[1], 4);
}

static const gradcheck_case fd_cases[] = {
    { "pact_alpha", 2, { { 3, 4 }, { 1 } }, { 2, 1 }, b_pact_clipped, 1e-2, 1e-3, GC_POSITIVE, 0 },
};

START_TEST(test_fd_gradient)                    /* _i indexes fd_cases */
{
    const gradcheck_case *c = &fd_cases[_i];
    gradcheck_result r = gradcheck_run(c, 4321u + (unsigned)_i);
    ck_assert_msg(r.status == LB_OK, "%s: %s", c->name, r.msg);
    ck_assert_msg(r.max_err <= c->tol, "%s: max err %.3g at input %d[%lld] > tol %.3g (%s)",
                  c->name, r.max_err, r.worst_input, (long long)r.worst_index, c->tol, r.msg);
}
END_TEST

/* ---- DoReFa --------------------------------------------------------------------------- */

static const float dorefa_w[] = { -2, -0.7f, -0.1f, 0, 0.05f, 0.4f, 1.1f, 1.5f, 0.9f, -1.3f };
#define N_DOREFA ((int)(sizeof dorefa_w / sizeof dorefa_w[0]))

/* The DoReFa forward in double; also asserts the test points are not near a rounding tie
 * (w = 0 is an exact tie, u * L = L / 2, resolved to even in both float and double). */
static void dorefa_ref(int bits, double *y, double *m_out)
{
    const double L = (double)((1 << bits) - 1);
    double m = 0.0;
    for (int i = 0; i < N_DOREFA; i++) m = fmax(m, fabs(tanh((double)dorefa_w[i])));
    for (int i = 0; i < N_DOREFA; i++) {
        const double v = (tanh((double)dorefa_w[i]) / (2.0 * m) + 0.5) * L;
        const double frac = v - floor(v);
        ck_assert(dorefa_w[i] == 0.0f || fabs(frac - 0.5) > 1e-3);
        y[i] = 2.0 * nearbyint(v) / L - 1.0;
    }
    *m_out = m;
}

START_TEST(test_dorefa_forward)
{
    /* by hand from round((tanh(w) / (2 max|tanh|) + 1/2) * L) */
    const double want2[] = { -1, -1.0 / 3, -1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1, 1, 1, -1 };
    const double want4[] = { -1, -0.6, -1.0 / 15, 1.0 / 15, 1.0 / 15, 1.0 / 3,
                             13.0 / 15, 1, 11.0 / 15, -13.0 / 15 };
    for (int bits = 2; bits <= 4; bits += 2) {
        lb_graph *g = lb_graph_new(0);
        lb_tensor *w = lb_leaf_from(g, dorefa_w, (int64_t[]){ 2, 5 }, 2, false);
        lb_tensor *y = lb_dorefa_weight(g, w, bits);
        ck_assert_ptr_nonnull(y);
        double ref[N_DOREFA], m;
        dorefa_ref(bits, ref, &m);
        for (int i = 0; i < N_DOREFA; i++) {
            ck_assert_double_eq_tol(y->data[i], (bits == 2 ? want2 : want4)[i], 1e-6);
            ck_assert_double_eq_tol(y->data[i], ref[i], 1e-6);
        }
        ck_assert_float_eq(y->data[0], -1.0f); /* the extremes map to -1 and 1 exactly */
        ck_assert_float_eq(y->data[7], 1.0f);
        lb_graph_free(g);
    }
}
END_TEST

/* dw = dy * (1 - tanh^2(w)) / max|tanh(w)| (STE through rounding, max held constant). */
START_TEST(test_dorefa_grad)
{
    lb_graph *g = lb_graph_new(0);
    float r[N_DOREFA];
    fill_normal(r, N_DOREFA, 1.0f, 111);
    lb_tensor *w = lb_leaf_from(g, dorefa_w, (int64_t[]){ N_DOREFA }, 1, true);
    backward_ok(g, weighted_sum(g, lb_dorefa_weight(g, w, 4), r));
    double ref[N_DOREFA], m;
    dorefa_ref(4, ref, &m);
    for (int i = 0; i < N_DOREFA; i++) {
        const double t = tanh((double)dorefa_w[i]);
        const double want = r[i] * 2.0 * (1.0 - t * t) / (2.0 * m);
        ck_assert_msg(fabs(w->grad[i] - want) <= 1e-6 * fmax(1.0, fabs(want)),
                      "dw[%d] = %.8g, want %.8g", i, (double)w->grad[i], want);
    }
    lb_graph_free(g);
}
END_TEST

/* All-zero weights: max|tanh| = 0 is replaced by 1, so outputs and gradients stay finite. */
START_TEST(test_dorefa_zero_weights)
{
    lb_graph *g = lb_graph_new(0);
    const float zs[4] = { 0 };
    lb_tensor *w = lb_leaf_from(g, zs, (int64_t[]){ 4 }, 1, true);
    lb_tensor *y = lb_dorefa_weight(g, w, 2);
    backward_ok(g, lb_sum(g, y));
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq_tol(y->data[i], 1.0f / 3.0f, 1e-7); /* round(1.5) = 2: 2*2/3 - 1 */
        ck_assert_float_eq(w->grad[i], 1.0f);
    }
    lb_graph_free(g);
}
END_TEST

/* ---- binary and ternary weights ------------------------------------------------------ */

START_TEST(test_binary_weight)
{
    lb_graph *g = lb_graph_new(0);
    const float ws[] = { 1, -2, 0, -0.5f, 1.25f, -1 };
    const float r[] = { 1, 2, 3, 4, 5, 6 };
    lb_tensor *w = lb_leaf_from(g, ws, (int64_t[]){ 2, 3 }, 2, true);
    /* per channel: a = {1, 0.9166..}; sign(0) = +1 */
    lb_tensor *yc = lb_binary_weight(g, w, LB_QG_CHANNEL);
    ck_assert_ptr_nonnull(yc);
    const float a1 = (float)(2.75 / 3.0);
    const float wc[] = { 1, -1, 1, -a1, a1, -a1 };
    for (int i = 0; i < 6; i++) ck_assert_float_eq(yc->data[i], wc[i]);
    /* per tensor: a = 5.75 / 6 */
    lb_tensor *yt = lb_binary_weight(g, w, LB_QG_TENSOR);
    ck_assert_ptr_nonnull(yt);
    const float at = (float)(5.75 / 6.0);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(yt->data[i], ws[i] < 0 ? -at : at);
    /* clipped STE through both nodes: dw = 2 * dy where |w| <= 1 (1 and -1 inside) */
    backward_ok(g, weighted_sum(g, lb_add(g, yc, yt), r));
    const float mask[] = { 1, 0, 1, 1, 0, 1 };
    for (int i = 0; i < 6; i++) ck_assert_float_eq(w->grad[i], 2.0f * mask[i] * r[i]);
    lb_graph_free(g);
}
END_TEST

START_TEST(test_ternary_weight)
{
    lb_graph *g = lb_graph_new(0);
    const float ws[] = { 1, -0.2f, 0.5f, -1.5f,   0.1f, 0.2f, -0.3f, 0.4f,   0, 0, 0, 0 };
    const float r[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    lb_tensor *w = lb_leaf_from(g, ws, (int64_t[]){ 3, 4 }, 2, true);
    /* per channel, thresh 0.7:
     *   row 0: mean|w| 0.8,  d 0.56,  kept {1, -1.5}       a 1.25
     *   row 1: mean|w| 0.25, d 0.175, kept {0.2, -0.3, 0.4} a 0.3
     *   row 2: all zero: nothing kept, a = 0 (no NaN) */
    lb_tensor *yc = lb_ternary_weight(g, w, LB_QG_CHANNEL, 0.7f);
    ck_assert_ptr_nonnull(yc);
    const float wc[] = { 1.25f, 0, 0, -1.25f, 0, 0.3f, -0.3f, 0.3f, 0, 0, 0, 0 };
    for (int i = 0; i < 12; i++) ck_assert_float_eq_tol(yc->data[i], wc[i], 1e-7);
    /* per tensor: mean|w| 4.2 / 12 = 0.35, d 0.245, kept {1, .5, -1.5, -.3, .4}, a 3.7 / 5 */
    lb_tensor *yt = lb_ternary_weight(g, w, LB_QG_TENSOR, 0.7f);
    ck_assert_ptr_nonnull(yt);
    const float at = 0.74f;
    const float wt[] = { at, 0, at, -at, 0, 0, -at, at, 0, 0, 0, 0 };
    for (int i = 0; i < 12; i++) ck_assert_float_eq_tol(yt->data[i], wt[i], 1e-6);
    /* plain STE through both nodes */
    backward_ok(g, weighted_sum(g, lb_add(g, yc, yt), r));
    for (int i = 0; i < 12; i++) ck_assert_float_eq(w->grad[i], 2.0f * r[i]);
    lb_graph_free(g);
}
END_TEST

/* ---- errors and NULL propagation ------------------------------------------------------ */

static const float one = 1.0f, zero_f = 0.0f, two_f[2] = { 1, 1 }, three_f[3] = { 1, 1, 1 };
static const float half_z = 0.5f, bad_scales[2] = { 1.0f, -0.5f };

static lb_tensor *fq(lb_graph *g, lb_tensor *x, lb_qgran gran, int64_t G, int32_t qmin,
                     int32_t qmax, int64_t n, const float *s, const float *z)
{
    const lb_qparams qp = qparams(gran, G, qmin, qmax, n, s, z);
    return lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
}
static lb_tensor *e_scale0(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_TENSOR, 0, -8, 7, 1, &zero_f, NULL); }
static lb_tensor *e_scale_nan(lb_graph *g, lb_tensor *x)
{ const float s = NAN; return fq(g, x, LB_QG_TENSOR, 0, -8, 7, 1, &s, NULL); }
static lb_tensor *e_scale_inf(lb_graph *g, lb_tensor *x)
{ const float s = INFINITY; return fq(g, x, LB_QG_TENSOR, 0, -8, 7, 1, &s, NULL); }
static lb_tensor *e_scale_neg(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_CHANNEL, 0, -8, 7, 2, bad_scales, NULL); }
static lb_tensor *e_scale_null(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_TENSOR, 0, -8, 7, 1, NULL, NULL); }
static lb_tensor *e_n_channel(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_CHANNEL, 0, -8, 7, 3, three_f, NULL); }
static lb_tensor *e_n_tensor(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_TENSOR, 0, -8, 7, 2, two_f, NULL); }
static lb_tensor *e_n_group(lb_graph *g, lb_tensor *x)  /* (2, 3), G = 2: needs 4 */
{ return fq(g, x, LB_QG_GROUP, 2, -8, 7, 2, two_f, NULL); }
static lb_tensor *e_group0(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_GROUP, 0, -8, 7, 1, &one, NULL); }
static lb_tensor *e_gran(lb_graph *g, lb_tensor *x)
{ return fq(g, x, (lb_qgran)9, 0, -8, 7, 1, &one, NULL); }
static lb_tensor *e_qmin_eq(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_TENSOR, 0, 3, 3, 1, &one, NULL); }
static lb_tensor *e_qmin_gt(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_TENSOR, 0, 7, -8, 1, &one, NULL); }
static lb_tensor *e_zero_frac(lb_graph *g, lb_tensor *x)
{ return fq(g, x, LB_QG_TENSOR, 0, 0, 15, 1, &one, &half_z); }
static lb_tensor *e_qp_null(lb_graph *g, lb_tensor *x)
{ return lb_fake_quant(g, x, NULL, LB_STE_PLAIN); }
static lb_tensor *e_ste(lb_graph *g, lb_tensor *x)
{
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, -8, 7, 1, &one, NULL);
    return lb_fake_quant(g, x, &qp, (lb_ste)5);
}
static lb_tensor *lsq(lb_graph *g, lb_tensor *x, const float *st, int64_t n, lb_qgran gran,
                      int64_t G, int32_t qmin, int32_t qmax, float gs)
{
    lb_tensor *step = lb_leaf_from(g, st, (int64_t[]){ n }, 1, true);
    return lb_fake_quant_lsq(g, x, step, gran, G, qmin, qmax, gs);
}
static lb_tensor *e_lsq_shape(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, three_f, 3, LB_QG_CHANNEL, 0, -4, 3, 1.0f); }
static lb_tensor *e_lsq_shape_group(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, &one, 1, LB_QG_GROUP, 2, -4, 3, 1.0f); }
static lb_tensor *e_lsq_step0(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, &zero_f, 1, LB_QG_TENSOR, 0, -4, 3, 1.0f); }
static lb_tensor *e_lsq_step_neg(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, bad_scales, 2, LB_QG_CHANNEL, 0, -4, 3, 1.0f); }
static lb_tensor *e_lsq_range(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, &one, 1, LB_QG_TENSOR, 0, 3, -4, 1.0f); }
static lb_tensor *e_lsq_group(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, &one, 1, LB_QG_GROUP, -1, -4, 3, 1.0f); }
static lb_tensor *e_lsq_gs(lb_graph *g, lb_tensor *x)
{ return lsq(g, x, &one, 1, LB_QG_TENSOR, 0, -4, 3, NAN); }
static lb_tensor *pact(lb_graph *g, lb_tensor *x, const float *a, int64_t n, int bits)
{
    return lb_pact(g, x, lb_leaf_from(g, a, (int64_t[]){ n }, 1, true), bits);
}
static lb_tensor *e_pact_bits0(lb_graph *g, lb_tensor *x) { return pact(g, x, &one, 1, 0); }
static lb_tensor *e_pact_bits17(lb_graph *g, lb_tensor *x) { return pact(g, x, &one, 1, 17); }
static lb_tensor *e_pact_shape(lb_graph *g, lb_tensor *x) { return pact(g, x, two_f, 2, 4); }
static lb_tensor *e_pact_alpha0(lb_graph *g, lb_tensor *x) { return pact(g, x, &zero_f, 1, 4); }
static lb_tensor *e_dorefa_bits0(lb_graph *g, lb_tensor *x) { return lb_dorefa_weight(g, x, 0); }
static lb_tensor *e_dorefa_bits17(lb_graph *g, lb_tensor *x) { return lb_dorefa_weight(g, x, 17); }
static lb_tensor *e_binary_group(lb_graph *g, lb_tensor *x)
{ return lb_binary_weight(g, x, LB_QG_GROUP); }
static lb_tensor *e_ternary_group(lb_graph *g, lb_tensor *x)
{ return lb_ternary_weight(g, x, LB_QG_GROUP, 0.7f); }
static lb_tensor *e_ternary_neg(lb_graph *g, lb_tensor *x)
{ return lb_ternary_weight(g, x, LB_QG_CHANNEL, -0.1f); }
static lb_tensor *e_ternary_nan(lb_graph *g, lb_tensor *x)
{ return lb_ternary_weight(g, x, LB_QG_TENSOR, NAN); }

typedef struct {
    const char *name;
    lb_tensor *(*build)(lb_graph *g, lb_tensor *x); /* x is (2, 3) */
    lb_status   status;
    const char *msg; /* must appear in the message */
} error_case;

static const error_case error_cases[] = {
    { "scale 0", e_scale0, LB_ERR_ARG, "fake_quant" },
    { "scale NaN", e_scale_nan, LB_ERR_ARG, "scale[0]" },
    { "scale Inf", e_scale_inf, LB_ERR_ARG, "scale[0]" },
    { "scale negative", e_scale_neg, LB_ERR_ARG, "scale[1]" },
    { "scale NULL", e_scale_null, LB_ERR_ARG, "fake_quant" },
    { "n for channel", e_n_channel, LB_ERR_ARG, "expected 2" },
    { "n for tensor", e_n_tensor, LB_ERR_ARG, "expected 1" },
    { "n for group", e_n_group, LB_ERR_ARG, "expected 4" },
    { "group 0", e_group0, LB_ERR_ARG, "group" },
    { "unknown gran", e_gran, LB_ERR_ARG, "layout" },
    { "qmin == qmax", e_qmin_eq, LB_ERR_ARG, "[3, 3]" },
    { "qmin > qmax", e_qmin_gt, LB_ERR_ARG, "fake_quant" },
    { "zero point 0.5", e_zero_frac, LB_ERR_ARG, "zero_point" },
    { "qparams NULL", e_qp_null, LB_ERR_ARG, "fake_quant" },
    { "unknown ste", e_ste, LB_ERR_ARG, "STE" },
    { "lsq step shape", e_lsq_shape, LB_ERR_SHAPE, "fake_quant_lsq" },
    { "lsq step shape group", e_lsq_shape_group, LB_ERR_SHAPE, "expected 4" },
    { "lsq step 0", e_lsq_step0, LB_ERR_ARG, "step[0]" },
    { "lsq step negative", e_lsq_step_neg, LB_ERR_ARG, "step[1]" },
    { "lsq qmin > qmax", e_lsq_range, LB_ERR_ARG, "fake_quant_lsq" },
    { "lsq group -1", e_lsq_group, LB_ERR_ARG, "group" },
    { "lsq grad_scale NaN", e_lsq_gs, LB_ERR_ARG, "grad_scale" },
    { "pact bits 0", e_pact_bits0, LB_ERR_ARG, "pact" },
    { "pact bits 17", e_pact_bits17, LB_ERR_ARG, "bits" },
    { "pact alpha shape", e_pact_shape, LB_ERR_SHAPE, "alpha" },
    { "pact alpha 0", e_pact_alpha0, LB_ERR_ARG, "alpha" },
    { "dorefa bits 0", e_dorefa_bits0, LB_ERR_ARG, "dorefa_weight" },
    { "dorefa bits 17", e_dorefa_bits17, LB_ERR_ARG, "bits" },
    { "binary group", e_binary_group, LB_ERR_ARG, "binary_weight" },
    { "ternary group", e_ternary_group, LB_ERR_ARG, "ternary_weight" },
    { "ternary thresh < 0", e_ternary_neg, LB_ERR_ARG, "thresh" },
    { "ternary thresh NaN", e_ternary_nan, LB_ERR_ARG, "thresh" },
};
#define N_ERRORS ((int)(sizeof error_cases / sizeof error_cases[0]))

/* Each bad input: NULL, the expected sticky status with a message naming the op/field, and
 * every later constructor returns NULL while the first message is kept. */
START_TEST(test_errors)                         /* _i indexes error_cases */
{
    const error_case *c = &error_cases[_i];
    lb_graph *g = lb_graph_new(0);
    const float xs[6] = { 0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f };
    lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, 3 }, 2, true);
    ck_assert_msg(c->build(g, x) == NULL, "%s: expected NULL", c->name);
    lb_error err = { 0 };
    ck_assert_msg(lb_graph_status(g, &err) == c->status, "%s: status %d (%s)", c->name,
                  (int)err.status, err.msg);
    ck_assert_msg(strstr(err.msg, c->msg) != NULL, "%s: message '%s' lacks '%s'", c->name,
                  err.msg, c->msg);
    char first[sizeof err.msg];
    memcpy(first, err.msg, sizeof first);
    const float s = 0.5f;
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, -8, 7, 1, &s, NULL);
    ck_assert_ptr_null(lb_fake_quant(g, x, &qp, LB_STE_CLIPPED));  /* sticky */
    ck_assert_ptr_null(lb_dorefa_weight(g, x, 4));
    lb_graph_status(g, &err);
    ck_assert_str_eq(err.msg, first);
    lb_graph_free(g);
}
END_TEST

/* A NULL input returns NULL without failing the graph (the failure is already recorded
 * wherever that NULL came from). */
START_TEST(test_null_propagation)
{
    lb_graph *g = lb_graph_new(0);
    const float s = 0.5f;
    lb_tensor *x = lb_leaf_from(g, &s, (int64_t[]){ 1 }, 1, false);
    const lb_qparams qp = qparams(LB_QG_TENSOR, 0, -8, 7, 1, &s, NULL);
    ck_assert_ptr_null(lb_fake_quant(g, NULL, &qp, LB_STE_CLIPPED));
    ck_assert_ptr_null(lb_fake_quant_lsq(g, NULL, x, LB_QG_TENSOR, 0, -8, 7, 1.0f));
    ck_assert_ptr_null(lb_fake_quant_lsq(g, x, NULL, LB_QG_TENSOR, 0, -8, 7, 1.0f));
    ck_assert_ptr_null(lb_pact(g, NULL, x, 4));
    ck_assert_ptr_null(lb_pact(g, x, NULL, 4));
    ck_assert_ptr_null(lb_dorefa_weight(g, NULL, 4));
    ck_assert_ptr_null(lb_binary_weight(g, NULL, LB_QG_TENSOR));
    ck_assert_ptr_null(lb_ternary_weight(g, NULL, LB_QG_TENSOR, 0.7f));
    ck_assert(lb_graph_ok(g));
    ck_assert_ptr_null(lb_fake_quant(NULL, x, &qp, LB_STE_CLIPPED)); /* no graph at all */
    ck_assert_ptr_nonnull(lb_fake_quant(g, x, &qp, LB_STE_CLIPPED));
    lb_graph_free(g);
}
END_TEST

/* ---- properties ----------------------------------------------------------------------- */

/* fake_quant(fake_quant(x)) == fake_quant(x) bit for bit, and every output is s * (k - z) for
 * an integer k in [qmin, qmax]; the same for LSQ (z = 0). Asymmetric unsigned 4-bit. */
START_TEST(test_idempotent)                     /* _i indexes layouts */
{
    const layout_case *c = &layouts[_i];
    lb_graph *g = lb_graph_new(0);
    const int64_t n = lb_shape_numel(c->shape, c->n_dims);
    float xs[MAXN], scale[MAXN], zero[MAXN];
    fill_normal(xs, n, 3.0f, 121u + (unsigned)_i);
    lb_tensor *x = lb_leaf_from(g, xs, c->shape, c->n_dims, false);
    const int64_t ns = lb_qgran_count(x, c->gran, c->group);
    fill_uniform(scale, ns, 0.05f, 0.7f, 131u + (unsigned)_i);
    for (int64_t s = 0; s < ns; s++) zero[s] = (float)(3 + s % 9);
    const lb_qparams qp = qparams(c->gran, c->group, 0, 15, ns, scale, zero);
    lb_tensor *y1 = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
    lb_tensor *y2 = lb_fake_quant(g, y1, &qp, LB_STE_CLIPPED);
    lb_tensor *step = lb_leaf_from(g, scale, (int64_t[]){ ns }, 1, false);
    lb_tensor *l1 = lb_fake_quant_lsq(g, x, step, c->gran, c->group, -8, 7, 1.0f);
    lb_tensor *l2 = lb_fake_quant_lsq(g, l1, step, c->gran, c->group, -8, 7, 1.0f);
    ck_assert_ptr_nonnull(y2);
    ck_assert_ptr_nonnull(l2);
    ck_assert_mem_eq(y1->data, y2->data, (size_t)n * sizeof(float));
    ck_assert_mem_eq(l1->data, l2->data, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = ref_index(c->shape, c->n_dims, c->gran, c->group, i);
        const float s = scale[k], z = zero[k];
        const float q = nearbyintf(y1->data[i] / s) + z, ql = nearbyintf(l1->data[i] / s);
        ck_assert(q >= 0 && q <= 15);
        ck_assert(ql >= -8 && ql <= 7);
        ck_assert_float_eq(y1->data[i], (q - z) * s);
        ck_assert_float_eq(l1->data[i], ql * s);
    }
    lb_graph_free(g);
}
END_TEST

/* ---- golden: PyTorch 1.13 fake_quantize_per_{tensor,channel}_affine -------------------- */

#define GOLDEN_CASES 7

/* Parses the next whitespace-separated number at *s (advancing it); false when none. */
static bool next_num(char **s, double *v)
{
    char *end;
    *v = strtod(*s, &end);
    if (end == *s) return false;
    *s = end;
    return true;
}

START_TEST(test_golden_pytorch)
{
    const char *path = LB_TEST_DATA_DIR "/fake_quant_golden.txt";
    FILE *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "%s: cannot open; run tests/data/gen/gen_quant_golden.py", path);
    static char line[16384];
    int n_cases = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[64], layout[32];
        int used = 0;
        ck_assert_msg(sscanf(line, "%63s %31s%n", name, layout, &used) == 2, "%s: bad line",
                      path);
        char *s = line + used;
        double v;
        int64_t shape[LB_MAX_DIMS] = { 0 }, G = 0;
        lb_qgran gran = LB_QG_TENSOR;
        if (strcmp(layout, "channel") == 0) gran = LB_QG_CHANNEL;
        if (strncmp(layout, "group:", 6) == 0) {
            gran = LB_QG_GROUP;
            G = strtol(layout + 6, NULL, 10);
        }
        ck_assert(next_num(&s, &v));
        const int32_t qmin = (int32_t)v;
        ck_assert(next_num(&s, &v));
        const int32_t qmax = (int32_t)v;
        ck_assert(next_num(&s, &v));
        const int n_dims = (int)v;
        ck_assert(n_dims >= 1 && n_dims <= LB_MAX_DIMS);
        for (int d = 0; d < n_dims; d++) {
            ck_assert(next_num(&s, &v));
            shape[d] = (int64_t)v;
        }
        const int64_t n = lb_shape_numel(shape, n_dims);
        ck_assert(next_num(&s, &v));
        const int64_t ns = (int64_t)v;
        ck_assert(n <= MAXN && ns <= MAXN);
        float scale[MAXN], zero[MAXN], xs[MAXN], want[MAXN];
        float *arrays[4] = { scale, zero, xs, want };
        const int64_t counts[4] = { ns, ns, n, n };
        for (int a = 0; a < 4; a++)
            for (int64_t k = 0; k < counts[a]; k++) {
                ck_assert_msg(next_num(&s, &v), "%s: %s: value missing", path, name);
                arrays[a][k] = (float)v; /* %.9g round-trips float32 exactly */
            }

        lb_graph *g = lb_graph_new(0);
        lb_tensor *x = lb_leaf_from(g, xs, shape, n_dims, false);
        const lb_qparams qp = qparams(gran, G, qmin, qmax, ns, scale, zero);
        lb_tensor *y = lb_fake_quant(g, x, &qp, LB_STE_CLIPPED);
        lb_error err = { 0 };
        lb_graph_status(g, &err);
        ck_assert_msg(y != NULL, "%s: %s", name, err.msg);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(y->data[i] == want[i], "%s: y[%lld] = %.9g, PyTorch %.9g (x %.9g)",
                          name, (long long)i, (double)y->data[i], (double)want[i],
                          (double)xs[i]);
        lb_graph_free(g);
        n_cases++;
    }
    fclose(fp);
    ck_assert_int_eq(n_cases, GOLDEN_CASES);
}
END_TEST

Suite *quant_ops_suite(void)
{
    Suite *s = suite_create("quant_ops");
    TCase *fwd = tcase_create("forward");
    tcase_add_test(fwd, test_fq_tensor_sym4_ties);
    tcase_add_test(fwd, test_fq_asym_zero_point);
    tcase_add_test(fwd, test_fq_per_channel);
    tcase_add_test(fwd, test_fq_per_group);
    tcase_add_test(fwd, test_qgran_count);
    tcase_add_loop_test(fwd, test_fq_layout_index, 0, N_LAYOUTS);
    tcase_add_test(fwd, test_fq_bits_2_and_8);
    tcase_add_test(fwd, test_pact_forward);
    tcase_add_test(fwd, test_pact_equals_fake_quant);
    tcase_add_test(fwd, test_dorefa_forward);
    tcase_add_test(fwd, test_dorefa_zero_weights);
    tcase_add_test(fwd, test_binary_weight);
    tcase_add_test(fwd, test_ternary_weight);
    tcase_add_test(fwd, test_lsq_init_step);
    tcase_add_loop_test(fwd, test_lsq_forward_equals_fake_quant, 0, N_LAYOUTS);
    suite_add_tcase(s, fwd);
    TCase *grad = tcase_create("gradients");
    tcase_add_loop_test(grad, test_fq_ste_masks, LB_STE_PLAIN, LB_STE_CLIPPED + 1);
    tcase_add_test(grad, test_fq_ste_zero_point);
    tcase_add_loop_test(grad, test_lsq_grad_formula, 0, N_LAYOUTS);
    tcase_add_test(grad, test_lsq_ds_finite_difference);
    tcase_add_test(grad, test_pact_grad);
    tcase_add_loop_test(grad, test_fd_gradient, 0, (int)(sizeof fd_cases / sizeof fd_cases[0]));
    tcase_add_test(grad, test_dorefa_grad);
    suite_add_tcase(s, grad);
    TCase *err = tcase_create("errors");
    tcase_add_loop_test(err, test_errors, 0, N_ERRORS);
    tcase_add_test(err, test_null_propagation);
    suite_add_tcase(s, err);
    TCase *prop = tcase_create("properties");
    tcase_add_loop_test(prop, test_idempotent, 0, N_LAYOUTS);
    tcase_add_test(prop, test_golden_pytorch);
    suite_add_tcase(s, prop);
    return s;
}
