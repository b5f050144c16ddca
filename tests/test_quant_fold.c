/* test_quant_fold.c: the BN-folding ops: forward values and finite-difference gradients. */
#include <math.h>

#include "quant/bn_fold.h"
#include "tests/gradcheck.h"
#include "tests/suites.h"

/* var must stay positive: it is built from a fixed positive vector, not a checked input */
static lb_tensor *const_var(lb_graph *g, int64_t O)
{
    lb_tensor *v = lb_leaf(g, (int64_t[]){ O }, 1, false);
    for (int64_t o = 0; o < O; o++) v->data[o] = 0.3f + 0.25f * (float)o;
    return v;
}

static lb_tensor *b_fold_weight(lb_graph *g, lb_tensor **in)
{
    return lb_fold_weight(g, in[0], in[1], const_var(g, 3), 1e-5f);
}
static lb_tensor *b_fold_bias(lb_graph *g, lb_tensor **in)
{
    return lb_fold_bias(g, in[0], in[1], in[2], in[3], const_var(g, 3), 1e-5f);
}
static lb_tensor *b_fold_bias_nob(lb_graph *g, lb_tensor **in)
{
    return lb_fold_bias(g, NULL, in[0], in[1], in[2], const_var(g, 3), 1e-5f);
}

static const gradcheck_case cases[] = {
    { "fold_weight", 2, { { 3, 2, 2, 2 }, { 3 } }, { 4, 1 }, b_fold_weight, 1e-2, 2e-3, GC_NORMAL, 0 },
    { "fold_bias", 4, { { 3 }, { 3 }, { 3 }, { 3 } }, { 1, 1, 1, 1 }, b_fold_bias, 1e-2, 2e-3,
      GC_NORMAL, 1u << 3 /* the running mean gets no gradient */ },
    { "fold_bias_nob", 3, { { 3 }, { 3 }, { 3 } }, { 1, 1, 1 }, b_fold_bias_nob, 1e-2, 2e-3,
      GC_NORMAL, 1u << 2 },
};

START_TEST(test_fold_gradient)
{
    gradcheck_result r = gradcheck_run(&cases[_i], 99u + (unsigned)_i);
    ck_assert_msg(r.status == LB_OK, "%s: %s", cases[_i].name, r.msg);
    ck_assert_msg(r.max_err <= cases[_i].tol, "%s: err %.3g (%s)", cases[_i].name, r.max_err, r.msg);
}
END_TEST

START_TEST(test_fold_values)
{
    lb_graph *g = lb_graph_new(0);
    const float w[4] = { 1, 2, 3, 4 }, gm[2] = { 2, 0.5f }, be[2] = { 1, -1 }, mu[2] = { 0.5f, 2 },
                va[2] = { 4, 0.25f }, b[2] = { 1.5f, 1 };
    lb_tensor *tw = lb_leaf_from(g, w, (int64_t[]){ 2, 2 }, 2, false);
    lb_tensor *tg = lb_leaf_from(g, gm, (int64_t[]){ 2 }, 1, false);
    lb_tensor *tb = lb_leaf_from(g, be, (int64_t[]){ 2 }, 1, false);
    lb_tensor *tm = lb_leaf_from(g, mu, (int64_t[]){ 2 }, 1, false);
    lb_tensor *tv = lb_leaf_from(g, va, (int64_t[]){ 2 }, 1, false);
    lb_tensor *tbias = lb_leaf_from(g, b, (int64_t[]){ 2 }, 1, false);
    lb_tensor *wf = lb_fold_weight(g, tw, tg, tv, 1e-12f);
    lb_tensor *bf = lb_fold_bias(g, tbias, tg, tb, tm, tv, 1e-12f);
    /* both rows: gamma / sqrt(var) = 2/2 = 0.5/0.5 = 1, so w_f = w and b_f = beta + b - mu */
    ck_assert_float_eq_tol(wf->data[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(wf->data[3], 4.0f, 1e-6f);
    ck_assert_float_eq_tol(bf->data[0], 1.0f + (1.5f - 0.5f) * 1.0f, 1e-6f);
    ck_assert_float_eq_tol(bf->data[1], -1.0f + (1.0f - 2.0f) * 1.0f, 1e-6f);
    lb_graph_free(g);
}
END_TEST

Suite *quant_fold_suite(void)
{
    Suite *s = suite_create("quant_fold");
    TCase *tc = tcase_create("bn_fold");
    tcase_add_loop_test(tc, test_fold_gradient, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_fold_values);
    suite_add_tcase(s, tc);
    return s;
}
