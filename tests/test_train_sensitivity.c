/* test_train_sensitivity.c: train/sensitivity.c: per-layer sensitivities of a small trained
 * model, the Hessian trace of a softmax regression against its closed form, and the bit
 * assignment written as a configuration that the qconfig parser and the model builder accept
 * with the chosen bits and within the budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/datasets_impl.h"
#include "train/loop.h"
#include "train/sensitivity.h"
#include "tests/quadrants.h"
#include "tests/suites.h"

/* The quadrants toy problem (tests/quadrants.h), noise 120, quadrant +110. */
static void quad_dataset(lb_dataset *ds, int64_t n, uint64_t seed)
{
    quadrants_dataset(ds, "quadrants", n, seed, 120, 110);
}

static const char *net_spec = "model net\ninput 1 8 8\nconv name=c1 out=4 k=3 pad=1\nrelu\n"
                              "maxpool k=2\nflatten\nlinear name=fc1 out=32\nrelu\n"
                              "linear name=fc2 out=4\n";

/* The small net, trained for a few epochs on the first part of ds. */
static lb_model *trained_net(lb_dataset *ds)
{
    lb_model *m;
    lb_error err = { 0 };
    ck_assert_msg(lb_model_build(net_spec, "net", NULL, &m, &err) == LB_OK, "%s", err.msg);
    lb_model_init_weights(m, 1);
    lb_train_cfg cfg = lb_train_cfg_default();
    cfg.epochs = 4;
    cfg.batch = 32;
    cfg.prefetch = false;
    lb_train_result res;
    ck_assert_msg(lb_train(m, ds, ds, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert(res.test_acc > 0.9);
    return m;
}

START_TEST(test_sensitivity_ordering)
{
    lb_dataset ds, calib;
    quad_dataset(&ds, 1200, 3);
    lb_model *m = trained_net(&ds);
    lb_error err = { 0 };
    ck_assert_int_eq(lb_calib_split(&ds, 400, &calib, &err), LB_OK);
    ck_assert_int_eq(calib.n, 400);
    ck_assert(!lb_calib_spread(&ds)); /* the quadrants come in random order: the last 400 */
    ck_assert_mem_eq(calib.labels, ds.labels + 800, 400 * sizeof(int32_t));
    ck_assert_mem_eq(calib.images, ds.images + 800 * 64, 400 * 64);
    float *before = malloc((size_t)m->params->total * sizeof *before);
    memcpy(before, m->params->values, (size_t)m->params->total * sizeof *before);
    lb_sens_cfg cfg = lb_sens_cfg_default();
    ck_assert_int_eq(lb_sens_parse_bits("8,1,2,4", &cfg, &err), LB_OK);
    ck_assert_int_eq(cfg.n_bits, 4);
    ck_assert_int_eq(cfg.bits[0], 1);
    ck_assert_int_eq(cfg.bits[3], 8);
    cfg.batch = 100;
    cfg.hutch_samples = 16;
    lb_sens_result r;
    ck_assert_msg(lb_sensitivity_run(m, &calib, &cfg, &r, &err) == LB_OK, "%s", err.msg);
    /* weights restored bit for bit */
    ck_assert(!memcmp(before, m->params->values, (size_t)m->params->total * sizeof *before));
    ck_assert_int_eq(r.n_layers, 3);
    ck_assert_str_eq(r.layers[0].name, "c1");
    ck_assert_str_eq(r.layers[2].name, "fc2");
    ck_assert_int_eq(r.layers[1].n_weights, 32 * 64);
    ck_assert_int_eq(r.layers[1].rows, 32);
    ck_assert_int_eq(r.fixed_bits, (4 + 32 + 4) * 32); /* the biases */
    for (int l = 0; l < 3; l++) {
        const lb_sens_layer *x = &r.layers[l];
        for (int k = 1; k < 4; k++) ck_assert(x->qerr[k] < x->qerr[k - 1]);
        /* 8 bits barely moves the loss; 1 bit moves it more than 8 */
        ck_assert_msg(fabs(x->dloss[3]) < 0.01, "%s: 8-bit dloss %g", x->name, x->dloss[3]);
        ck_assert_msg(x->dloss[0] > x->dloss[3], "%s: 1-bit %g, 8-bit %g", x->name, x->dloss[0],
                      x->dloss[3]);
        ck_assert(x->trace > 0.0 && x->trace_se >= 0.0); /* Gauss-Newton: never negative */
    }
    lb_sens_result_free(&r);
    free(before);
    lb_model_free(m);
    lb_dataset_free(&calib);
    lb_dataset_free(&ds);
}
END_TEST

/* Softmax regression z = W x: the Hessian of the mean cross-entropy with respect to W is
 * mean_n (diag(p_n) - p_n p_n^T) (x) x_n x_n^T, so tr H = mean_n ||x_n||^2 sum_c p_nc (1 - p_nc). */
START_TEST(test_hutchinson_softmax_regression)
{
    lb_dataset ds, calib;
    quad_dataset(&ds, 300, 5);
    lb_model *m;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_model_build("input 1 8 8\nflatten\nlinear name=fc out=4 bias=0\n", "lin",
                                    NULL, &m, &err), LB_OK);
    lb_model_init_weights(m, 2);
    ck_assert_int_eq(lb_calib_split(&ds, 200, &calib, &err), LB_OK);
    const float *W = m->nodes[1].u.linear.weight->data; /* (4, 64) */
    double want = 0.0;
    for (int64_t n = 0; n < calib.n; n++) {
        float x[64];
        ck_assert_int_eq(lb_dataset_get(&calib, n, x, NULL), LB_OK);
        double z[4], zmax = -INFINITY, zs = 0.0, xx = 0.0;
        for (int c = 0; c < 4; c++) {
            z[c] = 0.0;
            for (int k = 0; k < 64; k++) z[c] += (double)W[c * 64 + k] * x[k];
            zmax = fmax(zmax, z[c]);
        }
        for (int c = 0; c < 4; c++) zs += exp(z[c] - zmax);
        for (int k = 0; k < 64; k++) xx += (double)x[k] * x[k];
        double s = 0.0;
        for (int c = 0; c < 4; c++) {
            const double p = exp(z[c] - zmax) / zs;
            s += p * (1.0 - p);
        }
        want += xx * s / (double)calib.n;
    }
    for (int method = 0; method < 2; method++) { /* Gauss-Newton, then gradient differences */
        lb_sens_cfg cfg = lb_sens_cfg_default();
        cfg.n_bits = 1;
        cfg.bits[0] = 4;
        cfg.measure_loss = false;
        cfg.hutch_samples = 300;
        cfg.batch = 64;
        cfg.hess = (lb_hess_method)method;
        lb_sens_result r;
        ck_assert_msg(lb_sensitivity_run(m, &calib, &cfg, &r, &err) == LB_OK, "%s", err.msg);
        ck_assert_int_eq(r.n_layers, 1);
        const double got = r.layers[0].trace, se = r.layers[0].trace_se;
        ck_assert_msg(se < 0.1 * want, "standard error %g for a trace of %g", se, want);
        ck_assert_msg(fabs(got - want) < 4.0 * se + 1e-3 * want, "method %d: Hutchinson %g +- %g, "
                      "exact %g", method, got, se, want);
        lb_sens_result_free(&r);
    }
    lb_model_free(m);
    lb_dataset_free(&calib);
    lb_dataset_free(&ds);
}
END_TEST

/* A fake result with known sensitivities, for the assignment tests. */
static void fake_result(lb_sens_result *r)
{
    static lb_sens_layer ls[3];
    memset(r, 0, sizeof *r);
    memset(ls, 0, sizeof ls);
    const char *names[3] = { "c1", "fc1", "fc2" };
    const int64_t n[3] = { 36, 2048, 128 }, rows[3] = { 4, 32, 4 };
    for (int l = 0; l < 3; l++) {
        snprintf(ls[l].name, sizeof ls[l].name, "%s", names[l]);
        ls[l].n_weights = n[l];
        ls[l].rows = rows[l];
        ls[l].trace = l == 1 ? 1.0 : 50.0; /* the big layer is the least sensitive */
        for (int k = 0; k < 5; k++) {
            ls[l].qerr[k] = (double)n[l] * pow(4.0, -(double)(k + 1));
            ls[l].dloss[k] = ls[l].trace * pow(4.0, -(double)(k + 1));
        }
    }
    r->layers = ls;
    r->n_layers = 3;
    r->n_bits = 5;
    for (int k = 0; k < 5; k++) r->bits[k] = (int[]){ 1, 2, 3, 4, 8 }[k];
    r->fixed_bits = (4 + 32 + 4) * 32;
}

START_TEST(test_assignment_config_round_trip)
{
    lb_sens_result r;
    fake_result(&r);
    lb_error err = { 0 };
    lb_model *u3 = NULL, *mm = NULL;
    lb_qconfig *qc = malloc(sizeof *qc), *back = malloc(sizeof *back);
    /* the budget: the weight memory of the net at uniform 3 bits, as the model counts it */
    ck_assert_int_eq(lb_qconfig_parse_spec("w3a8", qc, &err), LB_OK);
    ck_assert_int_eq(lb_model_build(net_spec, "net", qc, &u3, &err), LB_OK);
    int64_t u3_bytes, fp;
    lb_model_weight_bytes(u3, &u3_bytes, &fp);
    const int choices[5] = { 1, 2, 3, 4, 8 };
    int bits[3];
    lb_mixed_plan plan;
    for (int obj = 0; obj < 2; obj++) {
        ck_assert_msg(lb_mixed_assign(&r, (lb_mixed_objective)obj, u3_bytes * 8, choices, 5, bits,
                                      &plan, &err) == LB_OK, "%s", err.msg);
        ck_assert_int_le(plan.weight_bits, u3_bytes * 8);
        ck_assert_int_lt(bits[1], bits[0]); /* the insensitive layer gets fewer bits */
        ck_assert_int_lt(bits[1], bits[2]);
        ck_assert(plan.avg_bits <= 3.0 + 1e-9);
    }
    bits[1] = 1; /* binary weights are written with their quantizer */
    lb_mixed_qconfig(&r, bits, 8, qc);
    char text[4096];
    ck_assert_int_gt(lb_qconfig_to_text(qc, text, sizeof text), 0);
    ck_assert_ptr_nonnull(strstr(text, "layer fc1 w=1 wq=binary"));
    ck_assert_msg(lb_qconfig_parse_text(text, "mixed.q", back, &err) == LB_OK, "%s\n%s", err.msg,
                  text);
    ck_assert_msg(lb_model_build(net_spec, "net", back, &mm, &err) == LB_OK, "%s", err.msg);
    for (int l = 0, i = 0; i < mm->n_nodes; i++) {
        const lb_node *nd = &mm->nodes[i];
        if (nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) continue;
        ck_assert_int_eq(nd->wq.bits, bits[l]);
        ck_assert_int_eq(nd->aq.bits, 8);
        ck_assert_int_eq(nd->wq.method, bits[l] == 1 ? LB_QM_BINARY : LB_QM_LSQ);
        l++;
    }
    /* the plan's size is what the model reports */
    int64_t mb;
    lb_mixed_assign(&r, LB_MIXED_OBJ_HAWQ, u3_bytes * 8, choices, 5, bits, &plan, &err);
    lb_mixed_qconfig(&r, bits, 8, qc);
    lb_model_free(mm);
    ck_assert_int_eq(lb_model_build(net_spec, "net", qc, &mm, &err), LB_OK);
    lb_model_weight_bytes(mm, &mb, &fp);
    ck_assert_int_eq(mb, (plan.weight_bits + 7) / 8);
    ck_assert_int_le(mb, u3_bytes);
    lb_model_free(mm);
    lb_model_free(u3);
    free(qc);
    free(back);
}
END_TEST

START_TEST(test_assignment_errors)
{
    lb_sens_result r;
    fake_result(&r);
    lb_error err = { 0 };
    int bits[3];
    /* below every layer at 2 bits */
    const int64_t min2 = r.fixed_bits + (36 + 2048 + 128) * 2 + 32 * 40;
    ck_assert_int_eq(lb_mixed_assign(&r, LB_MIXED_OBJ_HAWQ, min2 - 1, (int[]){ 2, 4 }, 2, bits,
                                     NULL, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "infeasible"));
    ck_assert_int_eq(lb_mixed_assign(&r, LB_MIXED_OBJ_HAWQ, min2, (int[]){ 2, 4 }, 2, bits, NULL,
                                     &err), LB_OK);
    for (int l = 0; l < 3; l++) ck_assert_int_eq(bits[l], 2);
    /* a choice that was not measured */
    ck_assert_int_eq(lb_mixed_assign(&r, LB_MIXED_OBJ_LOSS, min2 * 4, (int[]){ 2, 6 }, 2, bits,
                                     NULL, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "6 bits"));
    /* bad bit lists */
    lb_sens_cfg cfg = lb_sens_cfg_default();
    ck_assert_int_eq(lb_sens_parse_bits("2,,4", &cfg, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_sens_parse_bits("2,9", &cfg, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_sens_parse_bits("4,4", &cfg, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_sens_parse_bits("", &cfg, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_sens_parse_bits("x", &cfg, &err), LB_ERR_ARG);
    /* a quantized model and a bad split */
    lb_dataset ds, calib;
    quad_dataset(&ds, 50, 1);
    ck_assert_int_eq(lb_calib_split(&ds, 50, &calib, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_calib_split(&ds, 0, &calib, &err), LB_ERR_ARG);
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_model *m;
    ck_assert_int_eq(lb_qconfig_parse_spec("w4a4", qc, &err), LB_OK);
    ck_assert_int_eq(lb_model_build(net_spec, "net", qc, &m, &err), LB_OK);
    ck_assert_int_eq(lb_calib_split(&ds, 20, &calib, &err), LB_OK);
    lb_sens_result res;
    ck_assert_int_eq(lb_sensitivity_run(m, &calib, &cfg, &res, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "quantized"));
    lb_model_free(m);
    free(qc);
    lb_dataset_free(&calib);
    lb_dataset_free(&ds);
}
END_TEST

/* A training set stored class by class (as image folders are read): the split spreads over
 * it, the same number of each class, in order, each sample a copy of the one it was taken
 * from; a set in random order keeps its last samples. */
START_TEST(test_calib_split_class_sorted)
{
    lb_dataset ds, calib;
    lb_error err = { 0 };
    quad_dataset(&ds, 400, 7);
    /* sort by class, stably (a counting sort of the samples) */
    uint8_t *img = malloc(400 * 64);
    int32_t *lab = malloc(400 * sizeof *lab);
    int64_t k = 0, count[4] = { 0 };
    for (int c = 0; c < 4; c++)
        for (int64_t i = 0; i < 400; i++)
            if (ds.labels[i] == c) {
                memcpy(img + k * 64, ds.images + i * 64, 64);
                lab[k++] = c;
            }
    free(ds.images), free(ds.labels);
    ds.images = img, ds.labels = lab;
    for (int64_t i = 0; i < 400; i++) count[lab[i]]++;
    ck_assert(lb_calib_spread(&ds));
    ck_assert_int_eq(lb_calib_split(&ds, 40, &calib, &err), LB_OK);
    ck_assert_int_eq(calib.n, 40);
    int64_t got[4] = { 0 };
    for (int64_t j = 0; j < 40; j++) {
        const int64_t i = (2 * j + 1) * 400 / 80; /* 5, 15, ..., 395 */
        ck_assert_int_eq(calib.labels[j], lab[i]);
        ck_assert_mem_eq(calib.images + j * 64, img + i * 64, 64);
        got[calib.labels[j]]++;
        if (j) ck_assert_int_ge(calib.labels[j], calib.labels[j - 1]);
    }
    for (int c = 0; c < 4; c++) /* in proportion to the class sizes, to within one */
        ck_assert_msg(llabs(got[c] * 400 - count[c] * 40) <= 400, "class %d: %lld of %lld", c,
                      (long long)got[c], (long long)count[c]);
    lb_dataset_free(&calib);
    /* one class only: not "sorted by class", the last samples */
    for (int64_t i = 0; i < 400; i++) lab[i] = 2;
    ck_assert(!lb_calib_spread(&ds));
    ck_assert_int_eq(lb_calib_split(&ds, 40, &calib, &err), LB_OK);
    ck_assert_mem_eq(calib.images, img + 360 * 64, 40 * 64);
    lb_dataset_free(&calib);
    lb_dataset_free(&ds);
}
END_TEST

/* The calibration split of a streamed training set holds the same last samples as the
 * in-memory one's, and the sensitivities measured on it are the same, bit for bit. */
START_TEST(test_calib_split_streamed)
{
    lb_dataset ds, st, ca, cb;
    lb_error err = { 0 };
    quad_dataset(&ds, 300, 3);
    char dir[] = "/tmp/lb_sens_XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/quad.lbds", dir);
    const lb__cache_key key = { 1, 2, 3, 4 };
    ck_assert_msg(lb__cache_write(path, &ds, &key, &err) == LB_OK, "%s", err.msg);
    ck_assert_msg(lb__cache_read(path, ds.source, &key, true, &st, &err) == LB_OK, "%s", err.msg);
    memcpy(st.mean, ds.mean, sizeof st.mean), memcpy(st.std, ds.std, sizeof st.std);
    ck_assert_int_eq(lb_calib_split(&ds, 120, &ca, &err), LB_OK);
    ck_assert_int_eq(lb_calib_split(&st, 120, &cb, &err), LB_OK);
    ck_assert(lb_dataset_streams(&st) && !lb_dataset_streams(&cb));
    for (int64_t i = 0; i < 120; i++) {
        float a[64], b[64];
        ck_assert_int_eq(lb_dataset_get(&ca, i, a, &err), LB_OK);
        ck_assert_msg(lb_dataset_get(&cb, i, b, &err) == LB_OK, "%s", err.msg);
        ck_assert_mem_eq(a, b, sizeof a);
        ck_assert_int_eq(ca.labels[i], cb.labels[i]);
    }
    lb_model *m = trained_net(&ds);
    lb_sens_cfg cfg = lb_sens_cfg_default();
    cfg.hutch_samples = 2, cfg.batch = 50;
    lb_sens_result ra, rb;
    ck_assert_msg(lb_sensitivity_run(m, &ca, &cfg, &ra, &err) == LB_OK, "%s", err.msg);
    ck_assert_msg(lb_sensitivity_run(m, &cb, &cfg, &rb, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ra.n_layers, rb.n_layers);
    ck_assert(ra.base_loss == rb.base_loss && ra.base_acc == rb.base_acc);
    for (int l = 0; l < ra.n_layers; l++) {
        ck_assert(ra.layers[l].trace == rb.layers[l].trace);
        for (int k = 0; k < cfg.n_bits; k++)
            ck_assert(ra.layers[l].dloss[k] == rb.layers[l].dloss[k]);
    }
    lb_sens_result_free(&ra);
    lb_sens_result_free(&rb);
    lb_model_free(m);
    lb_dataset_free(&ca);
    lb_dataset_free(&cb);
    lb_dataset_free(&st);
    lb_dataset_free(&ds);
    unlink(path);
    rmdir(dir);
}
END_TEST

Suite *train_sensitivity_suite(void)
{
    Suite *s = suite_create("train_sensitivity");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sensitivity_ordering);
    tcase_add_test(tc, test_hutchinson_softmax_regression);
    tcase_add_test(tc, test_assignment_config_round_trip);
    tcase_add_test(tc, test_assignment_errors);
    tcase_add_test(tc, test_calib_split_streamed);
    tcase_add_test(tc, test_calib_split_class_sorted);
    suite_add_tcase(s, tc);
    return s;
}
