/* test_export.c: trained models -> .lbm -> the integer runtime, against the training
 * framework's own quantized evaluation; and the models the exporter must refuse. main() of
 * the test_export binary. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "layers/model.h"
#include "runtime/export/export.h"
#include "runtime/lbm.h"
#include "tests/suites.h"
#include "tests/tiny_model.h"

static lb_model *trained(const char *qspec, bool fold)
{
    return tiny_model_calibrated(tiny_net, qspec, fold);
}

/* Runs both on n random images; returns the fraction of equal predictions. */
static double agreement(lb_model *m, const uint8_t *file, size_t size, int n)
{
    lbm_model lm;
    char msg[160];
    uint8_t *copy = aligned_alloc(16, (size + 15) / 16 * 16);
    memcpy(copy, file, size);
    ck_assert_msg(lbm_load(&lm, copy, size, msg, sizeof msg) == LBM_OK, "%s", msg);
    ck_assert_uint_eq(lm.input_bytes, 144);
    ck_assert_uint_eq(lm.n_classes, 5);
    void *arena = aligned_alloc(16, (lbm_arena_size(&lm) + 15) / 16 * 16 + 16);
    lb_graph *g = lb_graph_new(0);
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    lb_rng r = lb_rng_make(99);
    int same = 0;
    for (int t = 0; t < n; t++) {
        uint8_t px[144];
        for (int i = 0; i < 144; i++) px[i] = (uint8_t)lb_rng_below(&r, 256);
        int pred;
        int32_t scores[5];
        ck_assert_int_eq(lbm_run(&lm, px, arena, lbm_arena_size(&lm), scores, &pred), LBM_OK);
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf(g, (int64_t[]){ 1, 1, 12, 12 }, 4, false);
        for (int i = 0; i < 144; i++) x->data[i] = ((float)px[i] / 255.0f - 0.1307f) / 0.3081f;
        lb_tensor *z = lb_model_forward(m, g, x, NULL);
        int best = 0;
        for (int c = 1; c < 5; c++)
            if (z->data[c] > z->data[best]) best = c;
        same += best == pred;
    }
    lb_graph_free(g);
    free(arena);
    free(copy);
    return (double)same / n;
}

static void check_export(const char *qspec, bool fold)
{
    lb_model *m = trained(qspec, fold);
    lb_export_opts o = lb_export_opts_for("mnist");
    uint8_t *file;
    size_t size;
    lb_error err = { 0 };
    ck_assert_msg(lb_export_lbm(m, &o, &file, &size, &err) == LB_OK, "%s: %s", qspec, err.msg);
    const double a = agreement(m, file, size, 400);
    ck_assert_msg(a >= 0.98, "%s%s: runtime agrees with the framework on %.1f%% only", qspec,
                  fold ? " (folded)" : "", 100 * a);
    free(file);
    lb_model_free(m);
}

START_TEST(test_export_w8a8) { check_export("w8a8", false); }
END_TEST
START_TEST(test_export_w4a4_minmax) { check_export("w4a4,wq=minmax,aq=minmax,first=8,last=8", false); }
END_TEST
START_TEST(test_export_w2a2_folded) { check_export("w2a2,first=8,last=8", true); }
END_TEST
START_TEST(test_export_binary) { check_export("w1a8", false); }
END_TEST
START_TEST(test_export_ternary_pact) { check_export("wta4,aq=pact,first=8", false); }
END_TEST

START_TEST(test_export_refuses)
{
    lb_error err = { 0 };
    uint8_t *file;
    size_t size;
    lb_export_opts o = lb_export_opts_for("mnist");
    /* a float layer */
    lb_model *m = trained("w4a4,last=0", false);
    ck_assert_int_eq(lb_export_lbm(m, &o, &file, &size, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "f2"));
    lb_model_free(m);
    /* a residual graph (not supported yet): the message names the layer */
    lb_qconfig qc;
    ck_assert_int_eq(lb_qconfig_parse_spec("w8a8", &qc, &err), LB_OK);
    ck_assert_int_eq(lb_model_build("input 1 4 4\nconv name=a out=2 k=1\nrelu name=r\n"
                                    "conv name=b out=2 k=1\nadd in=b,r\nflatten\nlinear out=2\n",
                                    "res", &qc, &m, &err), LB_OK);
    lb_model_init_weights(m, 1);
    lb_graph *g = lb_graph_new(0);
    lb_graph_set_training(g, false);
    m->calibrating = true;
    lb_tensor *x = lb_leaf(g, (int64_t[]){ 2, 1, 4, 4 }, 4, false);
    for (int i = 0; i < 32; i++) x->data[i] = (float)(i % 7) - 3.0f;
    ck_assert_ptr_nonnull(lb_model_forward(m, g, x, NULL));
    lb_graph_free(g);
    ck_assert_int_eq(lb_export_lbm(m, &o, &file, &size, &err), LB_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "r feeds several layers") != NULL, "%s", err.msg);
    lb_model_free(m);
}
END_TEST

/* The example program (runtime/examples/classify_png.c) on a PNG written here predicts what
 * the runtime predicts on the same pixels. */
START_TEST(test_classify_png_example)
{
    lb_model *m = trained("w4a4,first=8,last=8", false);
    lb_export_opts o = lb_export_opts_for("mnist");
    char dir[] = "/tmp/lb_png_XXXXXX", model[64], image[64], cmd[512], line[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(model, sizeof model, "%s/m.lbm", dir);
    snprintf(image, sizeof image, "%s/x.png", dir);
    size_t size;
    lb_error err = { 0 };
    ck_assert_msg(lb_export_lbm_file(m, &o, model, &size, &err) == LB_OK, "%s", err.msg);
    uint8_t px[144];
    lb_rng r = lb_rng_make(3);
    for (int i = 0; i < 144; i++) px[i] = (uint8_t)lb_rng_below(&r, 256);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = img.height = 12;
    img.format = PNG_FORMAT_GRAY;
    ck_assert(png_image_write_to_file(&img, image, 0, px, 0, NULL));
    /* the runtime directly */
    uint8_t *file = malloc(size);
    FILE *f = fopen(model, "rb");
    ck_assert_uint_eq(fread(file, 1, size, f), size);
    fclose(f);
    lbm_model lm;
    char msg[128];
    ck_assert_int_eq(lbm_load(&lm, file, size, msg, sizeof msg), LBM_OK);
    static uint8_t arena[1 << 16];
    int pred = -1;
    ck_assert_int_eq(lbm_run(&lm, px, arena, sizeof arena, NULL, &pred), LBM_OK);
    /* the example program */
    snprintf(cmd, sizeof cmd, "%s %s %s", LB_CLASSIFY_PNG, model, image);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int got = -2;
    while (fgets(line, sizeof line, p)) {
        const char *c = strstr(line, ": class ");
        if (c) got = atoi(c + 8);
    }
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_int_eq(got, pred);
    unlink(model);
    unlink(image);
    rmdir(dir);
    free(file);
    lb_model_free(m);
}
END_TEST

Suite *export_suite(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("lbm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_export_w8a8);
    tcase_add_test(tc, test_export_w4a4_minmax);
    tcase_add_test(tc, test_export_w2a2_folded);
    tcase_add_test(tc, test_export_binary);
    tcase_add_test(tc, test_export_ternary_pact);
    tcase_add_test(tc, test_export_refuses);
    tcase_add_test(tc, test_classify_png_example);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { export_suite() };
    return lb_run_suites(suites, 1);
}
