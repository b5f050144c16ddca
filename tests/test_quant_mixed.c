/* test_quant_mixed.c: quant/mixed.c: the knapsack solver against brute force, Hutchinson's
 * estimator on quadratics whose Hessian trace is known, and the MSE-optimal weight grid. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "quant/mixed.h"
#include "tests/suites.h"

/* ---- knapsack ---------------------------------------------------------------------------- */

/* Least objective over all C^L assignments within the budget; INFINITY when none fits. */
static double brute(int L, int C, const int64_t *cost, const double *obj, int64_t budget)
{
    int idx[8] = { 0 };
    double best = INFINITY;
    for (;;) {
        int64_t c = 0;
        double v = 0.0;
        for (int l = 0; l < L; l++) c += cost[l * C + idx[l]], v += obj[l * C + idx[l]];
        if (c <= budget && v < best) best = v;
        int l = 0;
        while (l < L && ++idx[l] == C) idx[l++] = 0;
        if (l == L) return best;
    }
}

START_TEST(test_solve_vs_brute_force)
{
    lb_rng r = lb_rng_make(7);
    for (int trial = 0; trial < 300; trial++) {
        const int L = 1 + (int)lb_rng_below(&r, 6), C = 1 + (int)lb_rng_below(&r, 4);
        int64_t cost[32];
        double obj[32];
        /* costs shaped like bits: a layer size times a bit-width, sometimes arbitrary */
        for (int l = 0; l < L; l++) {
            const int64_t size = 1 + (int64_t)lb_rng_below(&r, 50);
            for (int c = 0; c < C; c++) {
                cost[l * C + c] = trial % 3 ? size * (int64_t)(1 + lb_rng_below(&r, 8))
                                            : (int64_t)lb_rng_below(&r, 100);
                obj[l * C + c] = trial % 5 ? lb_rng_uniform(&r) : (double)lb_rng_below(&r, 3);
            }
        }
        int64_t lo = 0, hi = 0;
        for (int l = 0; l < L; l++) {
            int64_t a = INT64_MAX, b = 0;
            for (int c = 0; c < C; c++) {
                a = cost[l * C + c] < a ? cost[l * C + c] : a;
                b = cost[l * C + c] > b ? cost[l * C + c] : b;
            }
            lo += a, hi += b;
        }
        const int64_t budget = lo + (int64_t)lb_rng_below(&r, (uint64_t)(hi - lo + 10));
        int choice[8];
        double best;
        int64_t used;
        lb_error err = { 0 };
        ck_assert_msg(lb_mixed_solve(L, C, cost, obj, budget, choice, &best, &used, &err) == LB_OK,
                      "%s", err.msg);
        const double want = brute(L, C, cost, obj, budget);
        ck_assert_msg(fabs(best - want) < 1e-9, "trial %d: dp %g, brute force %g", trial, best, want);
        /* the reported choices are the solution: their cost and objective */
        int64_t c = 0;
        double v = 0.0;
        for (int l = 0; l < L; l++) {
            ck_assert(choice[l] >= 0 && choice[l] < C);
            c += cost[l * C + choice[l]];
            v += obj[l * C + choice[l]];
        }
        ck_assert_int_le(c, budget);
        ck_assert_int_eq(c, used);
        ck_assert(fabs(v - best) < 1e-9);
    }
}
END_TEST

START_TEST(test_solve_infeasible_and_bad_input)
{
    const int64_t cost[4] = { 10, 20, 5, 7 };
    const double obj[4] = { 1, 0, 1, 0 };
    int choice[2];
    lb_error err = { 0 };
    ck_assert_int_eq(lb_mixed_solve(2, 2, cost, obj, 14, choice, NULL, NULL, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "below the smallest possible total 15"));
    ck_assert_int_eq(lb_mixed_solve(2, 2, cost, obj, 15, choice, NULL, NULL, &err), LB_OK);
    ck_assert_int_eq(choice[0], 0);
    ck_assert_int_eq(choice[1], 0);
    ck_assert_int_eq(lb_mixed_solve(2, 2, cost, obj, 27, choice, NULL, NULL, &err), LB_OK);
    ck_assert_int_eq(choice[0], 1); /* 20 + 7 = 27: both at the better choice */
    ck_assert_int_eq(choice[1], 1);
    const int64_t neg[2] = { -1, 3 };
    ck_assert_int_eq(lb_mixed_solve(1, 2, neg, obj, 10, choice, NULL, NULL, &err), LB_ERR_ARG);
    const double nan_obj[2] = { NAN, 0 };
    ck_assert_int_eq(lb_mixed_solve(1, 2, cost, nan_obj, 100, choice, NULL, NULL, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_mixed_solve(0, 2, cost, obj, 100, choice, NULL, NULL, &err), LB_ERR_ARG);
}
END_TEST

/* Bit-sized costs (tens of thousands of weights x bits) stay exact and fast through the gcd. */
START_TEST(test_solve_large_costs)
{
    const int L = 5, C = 5, bits[5] = { 2, 3, 4, 6, 8 };
    const int64_t n[5] = { 150, 2400, 48000, 10080, 840 };
    int64_t cost[25];
    double obj[25];
    for (int l = 0; l < L; l++)
        for (int c = 0; c < C; c++) {
            cost[l * C + c] = n[l] * bits[c] + 32 * 10;
            obj[l * C + c] = (double)(L - l) * pow(4.0, -bits[c]);
        }
    int64_t budget = 0;
    for (int l = 0; l < L; l++) budget += n[l] * 3 + 320;
    int choice[5];
    double best;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_mixed_solve(L, C, cost, obj, budget, choice, &best, NULL, &err), LB_OK);
    ck_assert(fabs(best - brute(L, C, cost, obj, budget)) < 1e-12);
}
END_TEST

/* ---- Hutchinson ---------------------------------------------------------------------------- */

typedef struct {
    int n;
    const double *A; /* (n, n) symmetric: loss = 1/2 w^T A w + w^3/3 terms off */
} quad;

static lb_status quad_grad(void *ctx, const float *w, float *g, lb_error *err)
{
    (void)err;
    const quad *q = ctx;
    for (int i = 0; i < q->n; i++) {
        double s = 0.0;
        for (int j = 0; j < q->n; j++) s += q->A[i * q->n + j] * w[j];
        g[i] = (float)s;
    }
    return LB_OK;
}

/* A diagonal Hessian: every Rademacher sample gives the trace exactly (v_i^2 = 1). */
START_TEST(test_hutchinson_diagonal_exact)
{
    enum { N = 20 };
    double A[N * N] = { 0 };
    float w[N], w0[N];
    lb_rng r = lb_rng_make(3);
    double tr0 = 0.0, tr1 = 0.0;
    for (int i = 0; i < N; i++) {
        A[i * N + i] = 0.5 + 3.0 * lb_rng_uniform(&r);
        *(i < 8 ? &tr0 : &tr1) += A[i * N + i];
        w[i] = w0[i] = lb_rng_normal(&r);
    }
    quad q = { N, A };
    const int64_t off[2] = { 0, 8 }, len[2] = { 8, 12 };
    double tr[2], se[2];
    lb_error err = { 0 };
    ck_assert_int_eq(lb_hutchinson_trace(quad_grad, &q, w, N, off, len, 2, true, 3, 1e-2f, 1, tr,
                                         se, &err), LB_OK);
    ck_assert_double_eq_tol(tr[0], tr0, 1e-3 * tr0);
    ck_assert_double_eq_tol(tr[1], tr1, 1e-3 * tr1);
    ck_assert(memcmp(w, w0, sizeof w) == 0); /* restored bit for bit */
}
END_TEST

/* A dense symmetric Hessian: the estimate converges to the trace of each diagonal block
 * (cross-block terms average out), within a few standard errors. */
START_TEST(test_hutchinson_dense)
{
    enum { N = 12 };
    double A[N * N], B[N * N];
    float w[N];
    lb_rng r = lb_rng_make(5);
    for (int i = 0; i < N * N; i++) B[i] = lb_rng_normal(&r);
    for (int i = 0; i < N; i++) /* A = B B^T / N + I: symmetric positive definite */
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < N; k++) s += B[i * N + k] * B[j * N + k];
            A[i * N + j] = s / N + (i == j);
        }
    for (int i = 0; i < N; i++) w[i] = lb_rng_normal(&r);
    const int64_t off[2] = { 0, 5 }, len[2] = { 5, 7 };
    double want[2] = { 0, 0 };
    for (int i = 0; i < N; i++) want[i < 5 ? 0 : 1] += A[i * N + i];
    quad q = { N, A };
    for (int together = 0; together < 2; together++) {
        double tr[2], se[2];
        lb_error err = { 0 };
        ck_assert_int_eq(lb_hutchinson_trace(quad_grad, &q, w, N, off, len, 2, together, 4000,
                                             1e-2f, 9, tr, se, &err), LB_OK);
        for (int b = 0; b < 2; b++) {
            ck_assert_msg(se[b] > 0.0 && se[b] < 0.05 * want[b], "se %g", se[b]);
            ck_assert_msg(fabs(tr[b] - want[b]) < 4.0 * se[b], "block %d: %g, want %g (se %g)", b,
                          tr[b], want[b], se[b]);
        }
    }
}
END_TEST

START_TEST(test_hutchinson_bad_args)
{
    float w[4] = { 0 };
    double A[16] = { 0 }, tr[1];
    quad q = { 4, A };
    lb_error err = { 0 };
    const int64_t off[1] = { 2 }, len[1] = { 3 }, len0[1] = { 0 };
    ck_assert_int_eq(lb_hutchinson_trace(quad_grad, &q, w, 4, off, len, 1, false, 1, 1e-2f, 1, tr, NULL,
                                         &err), LB_ERR_ARG); /* block past the end */
    ck_assert_int_eq(lb_hutchinson_trace(quad_grad, &q, w, 4, off, len0, 1, false, 1, 1e-2f, 1, tr, NULL,
                                         &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_hutchinson_trace(quad_grad, &q, w, 4, (int64_t[]){ 0 }, len, 1, false, 0, 1e-2f, 1,
                                         tr, NULL, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_hutchinson_trace(quad_grad, &q, w, 4, (int64_t[]){ 0 }, len, 1, false, 1, 0.0f, 1,
                                         tr, NULL, &err), LB_ERR_ARG);
}
END_TEST

/* ---- the weight grid ------------------------------------------------------------------------ */

START_TEST(test_weight_quantize_mse)
{
    enum { R = 4, K = 300 };
    float w[R * K], q[R * K];
    lb_rng r = lb_rng_make(11);
    for (int i = 0; i < R * K; i++) w[i] = 0.1f * lb_rng_normal(&r);
    double prev = INFINITY;
    for (int b = 1; b <= 8; b++) {
        double e;
        lb_weight_quantize_mse(w, R, K, b, q, &e);
        ck_assert_msg(e < prev, "%d bits: error %g not below %g", b, e, prev);
        prev = e;
        if (b == 1) {
            for (int i = 0; i < R; i++) /* two values per row: +-mean|w| */
                for (int k = 0; k < K; k++) ck_assert_float_eq(fabsf(q[i * K + k]), fabsf(q[i * K]));
            continue;
        }
        /* at most 2^b levels per row, and no worse than the max|w| scale */
        const int qmax = (1 << (b - 1)) - 1;
        for (int i = 0; i < R; i++) {
            float amax = 0.0f;
            for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(w[i * K + k]));
            const float s = amax / (float)qmax;
            double e_max = 0.0, e_row = 0.0;
            for (int k = 0; k < K; k++) {
                float v = fminf(fmaxf(nearbyintf(w[i * K + k] / s), (float)(-qmax - 1)), (float)qmax) * s;
                e_max += ((double)v - w[i * K + k]) * ((double)v - w[i * K + k]);
                e_row += ((double)q[i * K + k] - w[i * K + k]) * ((double)q[i * K + k] - w[i * K + k]);
            }
            ck_assert(e_row <= e_max + 1e-12);
        }
    }
    /* 2 bits: the MSE-optimal clip lies well inside max|w| for Gaussian weights */
    double e2;
    lb_weight_quantize_mse(w, R, K, 2, q, &e2);
    float qm = 0.0f, wm = 0.0f;
    for (int k = 0; k < K; k++) qm = fmaxf(qm, fabsf(q[k])), wm = fmaxf(wm, fabsf(w[k]));
    ck_assert(qm < 0.8f * wm);
}
END_TEST

Suite *quant_mixed_suite(void)
{
    Suite *s = suite_create("quant_mixed");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_solve_vs_brute_force);
    tcase_add_test(tc, test_solve_infeasible_and_bad_input);
    tcase_add_test(tc, test_solve_large_costs);
    tcase_add_test(tc, test_hutchinson_diagonal_exact);
    tcase_add_test(tc, test_hutchinson_dense);
    tcase_add_test(tc, test_hutchinson_bad_args);
    tcase_add_test(tc, test_weight_quantize_mse);
    suite_add_tcase(s, tc);
    return s;
}
