/* test_onnx.c: trained models -> ONNX -> ONNX Runtime, against the training framework's own
 * quantized evaluation; the layout of the exported graph; the models the exporter refuses.
 * main() of the test_onnx binary.
 *
 * ONNX Runtime runs in a child process, `node tests/onnx/ort_check.mjs` (npm onnxruntime-node,
 * installed by tools/setup.sh into tests/onnx/node_modules). There is no silent skip: without
 * node or the module the ORT tests fail and say how to install them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layers/model.h"
#include "onnx.pb-c.h"
#include "runtime/export/export_impl.h"
#include "runtime/export/onnx.h"
#include "tests/suites.h"
#include "tests/tiny_model.h"

#define net tiny_net /* tests/tiny_model.c */

/* A residual net with what the .lbm exporter refuses: an addition, average pooling, global
 * average pooling, a batch-norm after the addition and a dropout at the end. */
static const char *resnet = "model res\ninput 1 12 12\n"
                            "conv name=c1 out=4 k=3 pad=1\nbn name=b1\nrelu name=r1\n"
                            "conv name=c2 out=4 k=3 pad=1\nadd name=a1 in=c2,r1\nbn name=b2\n"
                            "relu\navgpool k=3 stride=2 pad=1\nconv name=c3 out=8 k=1\nrelu\n"
                            "gap\nlinear name=f1 out=5\ndropout p=0.2\n";

#define N_IMG 300

/* A model under qspec with random weights, BN statistics and calibrated quantizers. With
 * tight, every LSQ activation step is then halved so that many inputs clip, as after LSQ
 * training (calibrated min/max ranges alone hardly ever clip). */
static lb_model *trained(const char *spec, const char *qspec, bool fold, bool tight)
{
    lb_model *m = tiny_model_calibrated(spec, qspec, fold);
    for (int i = 0; tight && i < m->n_nodes; i++)
        if (m->nodes[i].aq.bits && m->nodes[i].aq.method == LB_QM_LSQ)
            m->nodes[i].aq.step->data[0] *= 0.5f;
    return m;
}

static void write_all(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s: cannot create", path);
    ck_assert_msg(fwrite(buf, 1, n, f) == n && fclose(f) == 0, "%s: write failed", path);
}

/* Runs the model in ONNX Runtime on n images of 1x12x12 pixels; logits (n x classes) out. */
static void run_ort(const uint8_t *model, size_t size, const uint8_t *px, int n, int classes,
                    float *logits)
{
    char dir[] = "/tmp/lb_onnx_XXXXXX", mpath[64], ipath[64], lpath[64], cmd[1024];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(mpath, sizeof mpath, "%s/model.onnx", dir);
    snprintf(ipath, sizeof ipath, "%s/images.u8", dir);
    snprintf(lpath, sizeof lpath, "%s/logits.f32", dir);
    write_all(mpath, model, size);
    write_all(ipath, px, (size_t)n * 144);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' --shape %d,1,12,12 --logits '%s' --threads 1",
             LB_NODE, LB_ORT_CHECK, mpath, ipath, n, lpath);
    const int rc = system(cmd);
    const int code = rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
    ck_assert_msg(code != 127, "node (%s) not found: run tools/setup.sh, which installs Node.js "
                  "and onnxruntime-node", LB_NODE);
    ck_assert_msg(code != 3, "onnxruntime-node missing in tests/onnx/node_modules: run "
                  "tools/setup.sh");
    ck_assert_msg(code == 0, "ONNX Runtime failed (exit %d): %s", code, cmd);
    FILE *f = fopen(lpath, "rb");
    ck_assert_msg(f != NULL, "%s: missing", lpath);
    const size_t want = (size_t)n * (size_t)classes;
    ck_assert_msg(fread(logits, sizeof(float), want, f) == want && fgetc(f) == EOF,
                  "%s: expected %zu logits", lpath, want);
    fclose(f);
    unlink(mpath), unlink(ipath), unlink(lpath), rmdir(dir);
}

static int argmax(const float *z, int n)
{
    int best = 0;
    for (int c = 1; c < n; c++)
        if (z[c] > z[best]) best = c;
    return best;
}

/* Exports spec under qspec, runs N_IMG random images through ONNX Runtime and the framework
 * (eval mode, one batch) and checks that top-1 agrees on >= 99% and that >= 85% of the images
 * get logits within 1e-3 (relative to their largest) of the framework's.
 * Why not all: pixels and weights sit on quantization grids, so a pre-activation often lands
 * exactly on a rounding tie of the next activation quantizer in exact arithmetic; in float,
 * which side it falls on depends on the order of the sums, and ONNX Runtime's MLAS and
 * OpenBLAS (per-image products since the threaded conv) add in different orders. One flipped
 * activation moves the logits by one step of that grid. Measured with these random images:
 * 91-100% of images have no flip, depending on the configuration. */
static void check_ort(const char *spec, const char *qspec, bool fold, bool tight)
{
    lb_model *m = trained(spec, qspec, fold, tight);
    lb_export_opts o = lb_export_opts_for("mnist");
    uint8_t *file;
    size_t size;
    lb_error err = { 0 };
    ck_assert_msg(lb_export_onnx(m, &o, &file, &size, &err) == LB_OK, "%s: %s", qspec, err.msg);
    const int K = m->n_classes;
    uint8_t *px = malloc((size_t)N_IMG * 144);
    float *ort = malloc((size_t)N_IMG * (size_t)K * sizeof(float));
    ck_assert(px && ort);
    lb_rng r = lb_rng_make(99);
    for (int i = 0; i < N_IMG * 144; i++) px[i] = (uint8_t)lb_rng_below(&r, 256);
    run_ort(file, size, px, N_IMG, K, ort);
    lb_graph *g = lb_graph_new(0);
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ N_IMG, 1, 12, 12 }, 4, false);
    for (int i = 0; i < N_IMG * 144; i++) x->data[i] = ((float)px[i] / 255.0f - 0.1307f) / 0.3081f;
    lb_tensor *z = lb_model_forward(m, g, x, NULL);
    ck_assert_msg(z != NULL && z->shape[1] == K, "framework forward failed");
    int same = 0, close = 0;
    double worst = 0;
    for (int i = 0; i < N_IMG; i++) {
        const float *a = z->data + (size_t)i * K, *b = ort + (size_t)i * K;
        double mag = 1e-6, diff = 0;
        for (int c = 0; c < K; c++) {
            mag = fmax(mag, fabs(a[c]));
            diff = fmax(diff, fabs((double)a[c] - b[c]));
        }
        same += argmax(a, K) == argmax(b, K);
        close += diff <= 1e-3 * mag;
        worst = fmax(worst, diff / mag);
    }
    ck_assert_msg(same >= 0.99 * N_IMG, "%s%s: ONNX Runtime agrees on %d of %d images only",
                  qspec, fold ? " (folded)" : "", same, N_IMG);
    ck_assert_msg(close >= 0.85 * N_IMG, "%s%s: logits close on %d of %d images only (worst "
                  "relative difference %g)", qspec, fold ? " (folded)" : "", close, N_IMG, worst);
    lb_graph_free(g);
    free(px);
    free(ort);
    free(file);
    lb_model_free(m);
}

START_TEST(test_onnx_w8a8) { check_ort(net, "w8a8", false, true); }
END_TEST
START_TEST(test_onnx_w4a4) { check_ort(net, "w4a4", false, true); }
END_TEST
START_TEST(test_onnx_w4a4_minmax)
{
    check_ort(net, "w4a4,wq=minmax,aq=minmax,first=8,last=8", false, false);
}
END_TEST
START_TEST(test_onnx_w2a2_folded) { check_ort(net, "w2a2,first=8,last=8", true, true); }
END_TEST
START_TEST(test_onnx_w2a2_all) { check_ort(net, "w2a2", false, true); }
END_TEST
START_TEST(test_onnx_w6a6) { check_ort(net, "w6a6", false, true); } /* int8 containers, clipped */
END_TEST
START_TEST(test_onnx_binary) { check_ort(net, "w1a8", false, false); }
END_TEST
START_TEST(test_onnx_ternary_pact) { check_ort(net, "wta4,aq=pact,first=8", false, false); }
END_TEST
START_TEST(test_onnx_residual) { check_ort(resnet, "w4a8", false, true); }
END_TEST

/* The graph's interface and initializers, read back with protobuf-c (no ONNX Runtime). */
START_TEST(test_onnx_layout)
{
    lb_model *m = trained(net, "w2a2,first=8,last=4", true, false);
    lb_export_opts o = lb_export_opts_for("mnist");
    uint8_t *file;
    size_t size;
    lb_error err = { 0 };
    ck_assert_msg(lb_export_onnx(m, &o, &file, &size, &err) == LB_OK, "%s", err.msg);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, file);
    ck_assert_ptr_nonnull(mp);
    ck_assert_int_eq(mp->ir_version, LB_ONNX_IR_VERSION);
    ck_assert_uint_eq(mp->n_opset_import, 1);
    ck_assert_int_eq(mp->opset_import[0]->version, 21);
    const Onnx__GraphProto *gp = mp->graph;
    ck_assert_uint_eq(gp->n_input, 1);
    ck_assert_str_eq(gp->input[0]->name, "pixels");
    const Onnx__TypeProto__Tensor *it = gp->input[0]->type->tensor_type;
    ck_assert_int_eq(it->elem_type, 2); /* UINT8 */
    ck_assert_uint_eq(it->shape->n_dim, 4);
    ck_assert_str_eq(it->shape->dim[0]->dim_param, "N");
    ck_assert_int_eq(it->shape->dim[3]->dim_value, 12);
    ck_assert_str_eq(gp->output[0]->name, "logits");
    ck_assert_int_eq(gp->output[0]->type->tensor_type->elem_type, 1); /* FLOAT */
    /* every conv/linear: weights int4 (2 and 4 bits) or int8 (8 bits), packed low nibble
     * first, equal to the framework's integers; the activation grid's container type */
    const struct { const char *layer; int w_type, x_type; } want[] = {
        { "c1", 3, 3 }, { "c2", 22, 21 }, { "f1", 22, 21 }, { "f2", 22, 21 } };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        int ni = -1;
        for (int i = 0; i < m->n_nodes; i++)
            if (!strcmp(m->nodes[i].name, want[k].layer)) ni = i;
        ck_assert_int_ge(ni, 0);
        lb_node *nd = &m->nodes[ni];
        const lb_tensor *w = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
        const int64_t n = lb_numel(w), O = w->shape[0];
        int8_t *q = malloc((size_t)n);
        double *s = malloc(2 * (size_t)O * sizeof(double));
        int bits;
        ck_assert(q && s);
        ck_assert_int_eq(lb__export_layer_weights(m, nd, q, s, s + O, &bits, &err), LB_OK);
        char wname[64], zname[64];
        snprintf(wname, sizeof wname, "%s.weight_q", want[k].layer);
        snprintf(zname, sizeof zname, "%s.x_zero_point", want[k].layer);
        const Onnx__TensorProto *wt = NULL, *zt = NULL;
        for (size_t i = 0; i < gp->n_initializer; i++) {
            if (!strcmp(gp->initializer[i]->name, wname)) wt = gp->initializer[i];
            if (!strcmp(gp->initializer[i]->name, zname)) zt = gp->initializer[i];
        }
        ck_assert_msg(wt && zt, "%s: initializers missing", want[k].layer);
        ck_assert_int_eq(wt->data_type, want[k].w_type);
        ck_assert_int_eq(zt->data_type, want[k].x_type);
        ck_assert_uint_eq(wt->n_dims, (size_t)w->n_dims);
        const bool nib = wt->data_type == 22;
        ck_assert_uint_eq(wt->raw_data.len, (size_t)(nib ? (n + 1) / 2 : n));
        for (int64_t i = 0; i < n; i++) {
            int v = nib ? (wt->raw_data.data[i / 2] >> (4 * (i & 1))) & 0xF
                        : (int)(int8_t)wt->raw_data.data[i];
            if (nib && v > 7) v -= 16;
            ck_assert_int_eq(v, q[i]);
            if (nd->wq.bits == 2) ck_assert(v >= -2 && v <= 1);
        }
        free(q);
        free(s);
    }
    /* the 2-bit grids are clipped to their range before QuantizeLinear */
    int clips = 0, bns = 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *nd = gp->node[i];
        clips += !strcmp(nd->op_type, "Clip");
        bns += !strcmp(nd->op_type, "BatchNormalization");
        /* biases are separate Adds: ONNX Runtime's "basic" level would requantize a bias
         * inside Conv/Gemm to int32 and move results off the framework's */
        if (!strcmp(nd->op_type, "Conv") || !strcmp(nd->op_type, "Gemm"))
            ck_assert_msg(nd->n_input == 2, "%s has a bias input", nd->name);
    }
    ck_assert_int_eq(clips, 2); /* c2 and f1 read 2-bit activations; f2 reads 4 bits */
    ck_assert_int_eq(bns, 0);   /* folded into c1 */
    onnx__model_proto__free_unpacked(mp, NULL);
    free(file);
    lb_model_free(m);
}
END_TEST

START_TEST(test_onnx_refuses)
{
    lb_error err = { 0 };
    uint8_t *file;
    size_t size;
    lb_export_opts o = lb_export_opts_for("mnist");
    lb_model *m = trained(net, "w4a4,last=0", false, false); /* a float layer */
    ck_assert_int_eq(lb_export_onnx(m, &o, &file, &size, &err), LB_ERR_ARG);
    ck_assert_ptr_null(file);
    ck_assert_msg(strstr(err.msg, "f2") != NULL, "%s", err.msg);
    lb_model_free(m);
    m = trained(net, "w4a4,gran=group:4", false, false); /* per-group weight scales */
    ck_assert_int_eq(lb_export_onnx(m, &o, &file, &size, &err), LB_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "per-group") != NULL, "%s", err.msg);
    lb_model_free(m);
}
END_TEST

Suite *onnx_suite(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("ort");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_onnx_w8a8);
    tcase_add_test(tc, test_onnx_w4a4);
    tcase_add_test(tc, test_onnx_w4a4_minmax);
    tcase_add_test(tc, test_onnx_w2a2_folded);
    tcase_add_test(tc, test_onnx_w2a2_all);
    tcase_add_test(tc, test_onnx_w6a6);
    tcase_add_test(tc, test_onnx_binary);
    tcase_add_test(tc, test_onnx_ternary_pact);
    tcase_add_test(tc, test_onnx_residual);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("layout");
    tcase_add_test(tl, test_onnx_layout);
    tcase_add_test(tl, test_onnx_refuses);
    suite_add_tcase(s, tl);
    return s;
}

int main(void)
{
    Suite *suites[] = { onnx_suite() };
    return lb_run_suites(suites, 1);
}
