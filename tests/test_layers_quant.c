/* test_layers_quant.c: quantizers wired into models: per-layer bits, first/last overrides,
 * signed/unsigned activation grids, weight memory, BN folding, calibration, and quantized
 * checkpoints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layers/model.h"
#include "train/checkpoint.h"
#include "tests/suites.h"

static lb_model *build(const char *zoo_name, const char *qspec)
{
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_error err = { 0 };
    ck_assert_msg(lb_qconfig_parse_spec(qspec, qc, &err) == LB_OK, "%s", err.msg);
    lb_model *m = NULL;
    ck_assert_msg(lb_model_build_zoo(zoo_name, 1, 28, 28, 10, qc, &m, &err) == LB_OK, "%s", err.msg);
    free(qc);
    lb_model_init_weights(m, 3);
    return m;
}

static const lb_node *node(const lb_model *m, const char *name)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (!strcmp(m->nodes[i].name, name)) return &m->nodes[i];
    ck_abort_msg("no node %s", name);
    return NULL;
}

/* Runs one forward pass of B images of noise; returns logits copied into out (B*10). */
static void run(lb_model *m, bool training, int B, float *out)
{
    lb_graph *g = lb_graph_new(0);
    lb_graph_set_training(g, training);
    lb_rng r = lb_rng_make(17);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ B, m->in_c, m->in_h, m->in_w }, 4, false);
    for (int64_t i = 0; i < lb_numel(x); i++) x->data[i] = lb_rng_normal(&r);
    lb_tensor *y = lb_model_forward(m, g, x, &r);
    lb_error err = { 0 };
    ck_assert_msg(y != NULL, "forward: %s", (lb_graph_status(g, &err), err.msg));
    if (out) memcpy(out, y->data, (size_t)lb_numel(y) * sizeof(float));
    lb_graph_free(g);
}

START_TEST(test_bits_first_last)
{
    lb_model *m = build("lenet5", "w4a4,first=8,last=8");
    ck_assert_int_eq(node(m, "conv1")->wq.bits, 8);
    ck_assert_int_eq(node(m, "conv1")->aq.bits, 8);
    ck_assert_int_eq(node(m, "conv2")->wq.bits, 4);
    ck_assert_int_eq(node(m, "fc2")->aq.bits, 4);
    ck_assert_int_eq(node(m, "fc3")->wq.bits, 8);
    /* the image input is signed; inputs after ReLU (and pooling/flatten) are unsigned */
    ck_assert_int_eq(node(m, "conv1")->aq.scheme, LB_QSCHEME_SYMMETRIC);
    ck_assert_int_eq(node(m, "conv2")->aq.scheme, LB_QSCHEME_UNSIGNED);
    ck_assert_int_eq(node(m, "fc1")->aq.scheme, LB_QSCHEME_UNSIGNED);
    ck_assert_int_eq(node(m, "conv2")->aq.qmin, 0);
    ck_assert_int_eq(node(m, "conv2")->aq.qmax, 15);
    ck_assert_int_eq(node(m, "conv2")->wq.qmin, -8);
    ck_assert_int_eq(node(m, "conv2")->wq.qmax, 7);
    /* LSQ steps are trainable parameters; ranges are buffers, both named after the layer */
    ck_assert_ptr_nonnull(lb_params_find(m->params, "conv2.wq.step"));
    ck_assert_ptr_nonnull(lb_params_find(m->params, "conv2.aq.range"));
    ck_assert_int_eq(lb_numel(lb_params_find(m->params, "conv2.wq.step")), 16); /* per channel */
    float out[4 * 10];
    run(m, true, 4, out);
    for (int i = 0; i < 40; i++) ck_assert(isfinite(out[i]));
    lb_model_free(m);
}
END_TEST

START_TEST(test_unknown_layer_in_config)
{
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_error err = { 0 };
    ck_assert_int_eq(lb_qconfig_parse_text("default w=4 a=4\nlayer conv9 w=2\n", "q.txt", qc, &err),
                     LB_OK);
    lb_model *m = (lb_model *)1;
    ck_assert_int_ne(lb_model_build_zoo("lenet5", 1, 28, 28, 10, qc, &m, &err), LB_OK);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(err.msg, "conv9"));
    free(qc);
}
END_TEST

/* Weight memory: parameters x bits / 8 plus one float scale per channel. */
START_TEST(test_weight_bytes)
{
    lb_model *m = build("mlp", "w4a8,wq=minmax,aq=minmax,gran=channel");
    int64_t qb, fb;
    lb_model_weight_bytes(m, &qb, &fb);
    ck_assert_int_eq(fb, 269322 * 4);
    const int64_t weights = 784 * 256 + 256 * 256 + 256 * 10, biases = 256 + 256 + 10;
    const int64_t scales = 256 + 256 + 10;
    ck_assert_int_eq(qb, weights / 2 + biases * 4 + scales * 4);
    lb_model_free(m);
}
END_TEST

/* min/max 2-bit per-channel weights: every output channel's effective weights take at most
 * 4 values, all multiples of that channel's scale. Checked through a linear model: logits
 * of one-hot inputs expose the quantized weights. */
START_TEST(test_weights_on_grid)
{
    lb_error err = { 0 };
    lb_qconfig qc;
    ck_assert_int_eq(lb_qconfig_parse_spec("w2,wq=minmax", &qc, &err), LB_OK);
    lb_model *m;
    ck_assert_msg(lb_model_build("input 1 2 2\nflatten\nlinear name=fc out=3 bias=0\n", "t", &qc, &m,
                                 &err) == LB_OK, "%s", err.msg);
    lb_model_init_weights(m, 5);
    lb_graph *g = lb_graph_new(0);
    float eye[16] = { 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1 };
    lb_tensor *x = lb_leaf_from(g, eye, (int64_t[]){ 4, 1, 2, 2 }, 4, false);
    lb_tensor *y = lb_model_forward(m, g, x, NULL); /* y[k][o] = wq[o][k] */
    ck_assert_ptr_nonnull(y);
    const lb_tensor *w = lb_params_find(m->params, "fc.weight");
    for (int o = 0; o < 3; o++) {
        float amax = 0;
        for (int k = 0; k < 4; k++) amax = fmaxf(amax, fabsf(w->data[o * 4 + k]));
        const float s = amax / 1.0f; /* symmetric 2-bit: q in [-2, 1], s = max|w| / 1 */
        for (int k = 0; k < 4; k++) {
            const float q = y->data[k * 3 + o] / s;
            ck_assert_float_eq_tol(q, nearbyintf(q), 1e-5f);
            ck_assert(q >= -2.0f && q <= 1.0f);
        }
    }
    lb_graph_free(g);
    lb_model_free(m);
}
END_TEST

/* Folding BN into the conv gives the same eval outputs as conv followed by BN. */
START_TEST(test_bn_fold_matches)
{
    lb_error err = { 0 };
    lb_model *m;
    const char *spec = "input 2 6 6\nconv name=c out=4 k=3 pad=1\nbn name=b\nrelu\n"
                       "conv name=c2 out=3 k=3 bias=0\nbn name=b2\ngap\nlinear out=5\n";
    ck_assert_msg(lb_model_build(spec, "t", NULL, &m, &err) == LB_OK, "%s", err.msg);
    lb_model_init_weights(m, 7);
    lb_rng r = lb_rng_make(1);
    const char *bns[2] = { "b", "b2" };
    for (int k = 0; k < 2; k++) {
        const lb_batchnorm_layer *bn = &node(m, bns[k])->u.bn;
        for (int c = 0; c < bn->c; c++) {
            bn->gamma->data[c] = 0.5f + lb_rng_uniform(&r);
            bn->beta->data[c] = lb_rng_normal(&r);
            bn->running_mean->data[c] = lb_rng_normal(&r);
            bn->running_var->data[c] = 0.2f + lb_rng_uniform(&r);
        }
    }
    ck_assert_int_eq(node(m, "c")->fold, 1);
    float a[3 * 5], b[3 * 5];
    run(m, false, 3, a);
    ck_assert_int_eq(lb_model_fold_bn(m), 2);
    run(m, false, 3, b);
    for (int i = 0; i < 15; i++) ck_assert_float_eq_tol(a[i], b[i], 1e-4f);
    lb_model_free(m);
}
END_TEST

/* Calibration updates activation observers in eval mode; eval alone then leaves them fixed. */
START_TEST(test_calibration_observers)
{
    lb_model *m = build("lenet5", "w8a8,wq=minmax,aq=minmax");
    const lb_tensor *range = lb_params_find(m->params, "fc1.aq.range");
    m->calibrating = true;
    run(m, false, 8, NULL);
    const float count = range->data[2], hi = range->data[1];
    ck_assert_float_eq(count, 1.0f);
    ck_assert(hi > 0.0f);
    m->calibrating = false;
    run(m, false, 8, NULL);
    ck_assert_float_eq(range->data[2], count);
    lb_model_free(m);
}
END_TEST

/* Percentile and MSE calibration clip tighter than min/max on the same batches. */
START_TEST(test_calibration_methods)
{
    float hi[3];
    const lb_calib kinds[3] = { LB_CALIB_MINMAX, LB_CALIB_PERCENTILE, LB_CALIB_MSE };
    for (int k = 0; k < 3; k++) {
        lb_model *m = build("lenet5", "w2a2,wq=minmax,aq=minmax");
        lb_model_set_calibration(m, kinds[k], 99.0f);
        m->calibrating = true;
        run(m, false, 8, NULL);
        run(m, false, 8, NULL);
        const lb_tensor *range = lb_params_find(m->params, "fc1.aq.range");
        ck_assert_float_eq(range->data[2], 2.0f);
        ck_assert_float_eq(range->data[0], 0.0f); /* unsigned: the range starts at 0 */
        hi[k] = range->data[1];
        lb_model_free(m);
    }
    ck_assert_msg(hi[1] < hi[0] && hi[2] < hi[0], "minmax %g percentile %g mse %g", hi[0], hi[1],
                  hi[2]);
}
END_TEST

/* An optimizer step that pushes an LSQ step size below zero is projected back, not an error. */
START_TEST(test_lsq_step_stays_positive)
{
    lb_model *m = build("lenet5", "w4a4");
    run(m, true, 4, NULL); /* initialises the steps */
    lb_tensor *st = lb_params_find(m->params, "conv2.wq.step");
    st->data[3] = -0.01f;
    lb_tensor *as = lb_params_find(m->params, "fc1.aq.step");
    as->data[0] = 0.0f;
    run(m, true, 4, NULL);
    ck_assert(st->data[3] > 0.0f);
    ck_assert(as->data[0] > 0.0f);
    lb_model_free(m);
}
END_TEST

/* A quantized checkpoint reloads with its configuration and gives identical outputs. */
START_TEST(test_quant_checkpoint_roundtrip)
{
    lb_model *m = build("lenet5", "w2a2,first=8,last=8");
    float a[4 * 10], b[4 * 10];
    run(m, true, 4, NULL); /* initialises LSQ steps from data */
    run(m, false, 4, a);
    char path[] = "/tmp/lb_qckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    lb_ckpt_meta meta = { .epoch = 1 };
    lb_error err = { 0 };
    ck_assert_msg(lb_checkpoint_save(path, m, &meta, false, &err) == LB_OK, "%s", err.msg);
    lb_model *back;
    ck_assert_msg(lb_checkpoint_load(path, &back, NULL, &err) == LB_OK, "%s", err.msg);
    unlink(path);
    ck_assert_int_eq(node(back, "conv2")->wq.bits, 2);
    ck_assert_int_eq(node(back, "conv1")->wq.bits, 8);
    run(back, false, 4, b);
    for (int i = 0; i < 40; i++) ck_assert_float_eq(a[i], b[i]);
    lb_model_free(back);
    lb_model_free(m);
}
END_TEST

Suite *layers_quant_suite(void)
{
    Suite *s = suite_create("layers_quant");
    TCase *tc = tcase_create("quantized models");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bits_first_last);
    tcase_add_test(tc, test_unknown_layer_in_config);
    tcase_add_test(tc, test_weight_bytes);
    tcase_add_test(tc, test_weights_on_grid);
    tcase_add_test(tc, test_bn_fold_matches);
    tcase_add_test(tc, test_calibration_observers);
    tcase_add_test(tc, test_calibration_methods);
    tcase_add_test(tc, test_lsq_step_stays_positive);
    tcase_add_test(tc, test_quant_checkpoint_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}
