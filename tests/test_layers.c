/* test_layers.c: layers, the model description parser and the zoo; main() of test_layers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layers/model.h"
#include "train/optim.h"
#include "tests/suites.h"

static lb_model *zoo(const char *name, int c, int h, int w)
{
    lb_model *m = NULL;
    lb_error err = { 0 };
    lb_status st = lb_model_build_zoo(name, c, h, w, 10, NULL, &m, &err);
    ck_assert_msg(st == LB_OK, "%s: %s", name, err.msg);
    return m;
}

/* Runs a forward pass on zeros and returns the logits' shape via out. */
static void forward_shape(lb_model *m, int64_t B, int64_t out[2])
{
    lb_graph *g = lb_graph_new(0);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ B, m->in_c, m->in_h, m->in_w }, 4, false);
    memset(x->data, 0, (size_t)lb_numel(x) * sizeof(float));
    lb_rng rng = lb_rng_make(1);
    lb_tensor *y = lb_model_forward(m, g, x, &rng);
    lb_error err = { 0 };
    ck_assert_msg(y != NULL, "forward failed: %s", (lb_graph_status(g, &err), err.msg));
    out[0] = y->shape[0];
    out[1] = y->shape[1];
    lb_graph_free(g);
}

START_TEST(test_zoo_param_counts)
{
    struct { const char *name; int c, h, w; int64_t params; } rows[] = {
        /* 784*256+256 + 256*256+256 + 256*10+10 */
        { "mlp", 1, 28, 28, 269322 },
        /* conv1 6*25+6, conv2 16*6*25+16, fc 400*120+120, 120*84+84, 84*10+10 */
        { "lenet5", 1, 28, 28, 61706 },
        { "lenet5", 3, 32, 32, 62006 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lb_model *m = zoo(rows[i].name, rows[i].c, rows[i].h, rows[i].w);
        ck_assert_int_eq(lb_params_count(m->params), rows[i].params);
        int64_t shp[2];
        forward_shape(m, 3, shp);
        ck_assert_int_eq(shp[0], 3);
        ck_assert_int_eq(shp[1], 10);
        lb_model_free(m);
    }
}
END_TEST

START_TEST(test_resnet20_structure)
{
    lb_model *m = zoo("resnet20", 3, 32, 32);
    /* 19 3x3 convs + 2 projection convs (1x1) + fc; He et al. quote ~0.27M */
    int convs = 0, adds = 0, bns = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        convs += m->nodes[i].kind == LB_NODE_CONV;
        adds += m->nodes[i].kind == LB_NODE_ADD;
        bns += m->nodes[i].kind == LB_NODE_BN;
    }
    ck_assert_int_eq(convs, 21);
    ck_assert_int_eq(adds, 9);
    ck_assert_int_eq(bns, 21);
    const int64_t n = lb_params_count(m->params);
    ck_assert_msg(n > 265000 && n < 280000, "resnet20 has %lld parameters", (long long)n);
    ck_assert_ptr_nonnull(lb_params_find(m->params, "s3b1.down.weight"));
    ck_assert_ptr_nonnull(lb_params_find(m->params, "s2b3.bn2.running_var"));
    int64_t shp[2];
    forward_shape(m, 2, shp);
    ck_assert_int_eq(shp[1], 10);
    lb_model_free(m);
    m = zoo("vgg-small", 3, 32, 32);
    forward_shape(m, 2, shp);
    ck_assert_int_eq(shp[1], 10);
    lb_model_free(m);
}
END_TEST

START_TEST(test_init_seeded)
{
    lb_model *a = zoo("lenet5", 1, 28, 28), *b = zoo("lenet5", 1, 28, 28);
    lb_model_init_weights(a, 7);
    lb_model_init_weights(b, 7);
    const size_t bytes = (size_t)a->params->total * sizeof(float);
    ck_assert_int_eq(memcmp(a->params->values, b->params->values, bytes), 0);
    lb_model_init_weights(b, 8);
    ck_assert_int_ne(memcmp(a->params->values, b->params->values, bytes), 0);
    /* Kaiming normal: fc1 weight std ~ sqrt(2/400) */
    const lb_tensor *w = lb_params_find(a->params, "fc1.weight");
    double s2 = 0;
    for (int64_t i = 0; i < lb_numel(w); i++) s2 += (double)w->data[i] * w->data[i];
    ck_assert_double_eq_tol(sqrt(s2 / (double)lb_numel(w)), sqrt(2.0 / 400.0), 0.003);
    ck_assert_float_eq(lb_params_find(a->params, "fc1.bias")->data[0], 0.0f);
    lb_model_free(a);
    lb_model_free(b);
}
END_TEST

/* A bad description gives LB_ERR_FORMAT naming origin and line. */
static const struct { const char *spec, *want; } bad_specs[] = {
    { "input 1 8 8\nfrobnicate\n", "t.txt:2: unknown layer 'frobnicate'" },
    { "input 1 8 8\nconv out=4 k=3 colour=red\n", "t.txt:2: conv: unknown key 'colour'" },
    { "input 1 8 8\nconv out=4 k=abc\n", "t.txt:2: k=abc" },
    { "input 1 8 8\nconv out=4 k=9\n", "t.txt:2: conv kernel 9x9 does not fit" },
    { "conv out=4 k=3\n", "t.txt:1: the description must start with 'input C H W'" },
    { "input 1 8 8\n\n# c\nlinear out=3\n", "t.txt:4: linear needs a flat input" },
    { "input 1 8 8\nflatten\nlinear out=3 in=nope\n", "t.txt:3: in=nope" },
    { "input 1 8 8\nconv name=a out=2 k=1\nconv name=b out=3 k=1\nadd in=a,b\nflatten\nlinear out=2\n",
      "t.txt:4: add: inputs have different shapes" },
    { "input 1 8 8\nconv out=2 k=3\n", "the last layer must give a flat vector" },
    { "input 1 8 8\nflatten name=x\nrelu name=x\n", "t.txt:3: name 'x' already used" },
    { "input 0 8 8\n", "t.txt:1: C=0" },
    { "input 1 8 8\nconv out=4 k=3 out=5\n", "t.txt:2: key 'out' given twice" },
    { "input 1 8 8\ndropout p=1.5\n", "t.txt:2: p=1.5" },
    { "input 1 8 8\nflatten\nlinear bias=1\n", "t.txt:3: linear needs out=" },
    /* found by fuzzing (tests/fuzz/regress/model/no-parameters.txt): accepted, then training
     * failed at its first backward pass ("loss does not depend on any parameter") */
    { "model mlp\ninput 1 8 8\nflatten\n", "no layer with trainable parameters" },
    { "input 4096 8192 8192\nflatten\n", "class scores (at most 16777216" },
    /* huge dimensions, run through fuzz_model (tests/fuzz/regress/model): the parameter count
     * overflowed int64 (UBSan), calloc's size overflowed, or 4 GiB were allocated; now each
     * is refused before allocating (LB_PARAMS_MAX) */
    { "input 4096 8192 8192\nflatten name=f\nlinear name=a out=16777216 in=f\n"
      "linear name=b out=16777216 in=f\nadd in=a,b\n",
      "t.txt:3: parameter a.weight: 4611686018427387904 more values would exceed the limit" },
    { "input 1 8 8\nflatten\nlinear out=16777216\n",
      "t.txt:3: parameter linear1.weight: 1073741824 more values would exceed the limit of "
      "268435456 parameters" },
};

START_TEST(test_spec_errors)
{
    lb_model *m = (lb_model *)1;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_model_build(bad_specs[_i].spec, "t.txt", NULL, &m, &err), LB_ERR_FORMAT);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, bad_specs[_i].want) != NULL, "case %d: message '%s' lacks '%s'", _i,
                  err.msg, bad_specs[_i].want);
}
END_TEST

START_TEST(test_spec_file_and_residual)
{
    char path[] = "/tmp/lb_spec_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "# a tiny residual net\nmodel tiny\ninput 2 6 6\n"
                       "conv name=c1 out=4 k=3 pad=1\nrelu name=r1\n"
                       "conv name=c2 out=4 k=3 pad=1 bias=0\nbn name=bn2\n"
                       "add in=bn2,r1\nmaxpool k=2\navgpool k=3 stride=3\ngap\nlinear out=5\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    lb_model *m;
    lb_error err = { 0 };
    ck_assert_msg(lb_model_build_file(path, NULL, &m, &err) == LB_OK, "%s", err.msg);
    unlink(path);
    ck_assert_str_eq(m->name, "tiny");
    ck_assert_int_eq(m->n_classes, 5);
    ck_assert_int_eq(m->n_nodes, 9);
    ck_assert_str_eq(m->nodes[4].name, "add1");
    ck_assert_int_eq(m->nodes[4].in[0], 3);    /* bn2 */
    ck_assert_int_eq(m->nodes[4].in[1], 1);    /* r1  */
    ck_assert_int_eq(m->nodes[5].shape[1], 3); /* 6x6 -> maxpool 2 -> 3x3 */
    ck_assert_int_eq(m->nodes[6].shape[1], 1); /* -> avgpool 3 -> 1x1 */
    ck_assert_ptr_nonnull(strstr(m->spec, "add in=bn2,r1"));
    int64_t shp[2];
    lb_model_init_weights(m, 1);
    forward_shape(m, 4, shp);
    ck_assert_int_eq(shp[1], 5);
    lb_model_free(m);
    ck_assert_int_eq(lb_model_build_file("/nonexistent/spec.txt", NULL, &m, &err), LB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/spec.txt"));
}
END_TEST

/* Whether an op named `name` is among the ops that produced t. */
static bool graph_has_op(const lb_tensor *t, const char *name, int depth)
{
    if (!t || !t->op || depth > 64) return false;
    if (!strcmp(t->op->name, name)) return true;
    for (int i = 0; i < LB_MAX_SRC; i++)
        if (graph_has_op(t->src[i], name, depth + 1)) return true;
    return false;
}

/* The number of distinct nodes named `name` among the ops that produced t (seen: n_seen
 * nodes visited so far, up to 256). */
static int count_op(const lb_tensor *t, const char *name, const lb_tensor **seen, int *n_seen)
{
    if (!t || !t->op) return 0;
    for (int k = 0; k < *n_seen; k++)
        if (seen[k] == t) return 0;
    ck_assert_int_lt(*n_seen, 256);
    seen[(*n_seen)++] = t;
    int n = !strcmp(t->op->name, name);
    for (int i = 0; i < LB_MAX_SRC; i++) n += count_op(t->src[i], name, seen, n_seen);
    return n;
}

/* Whether some op of t's graph is a ReLU whose input is a max pooling's output. */
static bool graph_has_pool_then_relu(const lb_tensor *t, int depth)
{
    if (!t || !t->op || depth > 64) return false;
    if (!strncmp(t->op->name, "relu", 4) && t->src[0] && t->src[0]->op
        && !strcmp(t->src[0]->op->name, "maxpool2d"))
        return true;
    for (int i = 0; i < LB_MAX_SRC; i++)
        if (graph_has_pool_then_relu(t->src[i], depth + 1)) return true;
    return false;
}

/* The in-place relu and add, the fused batchnorm_relu and batchnorm_add_relu, the pooling
 * moved before its ReLU and the convolution that pools its own output that lb_model_forward
 * uses (conv -> bn -> relu; bn -> add -> relu, with the add's other operand before the BN
 * and after it, as a shortcut's BN; add -> relu -> maxpool; conv -> relu -> maxpool) give
 * bit-identical logits, loss and parameter gradients to the out-of-place graph of separate
 * ops in spec order, for a residual net in training mode, quantized W4A4 as well. */
START_TEST(test_inplace_forward_matches)
{
    const char *spec = "input 2 8 8\n"
                       "conv name=c1 out=4 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
                       "conv name=c2 out=4 k=3 pad=1 bias=0\nbn name=b2\nrelu\n"
                       "conv name=c3 out=4 k=3 pad=1 bias=0\nbn name=b3\n"
                       "add in=b3,r1\nrelu name=r3\n"
                       "conv name=c5 out=4 k=3 pad=1 bias=0\nbn name=b5\n"
                       "conv name=d5 out=4 k=1 bias=0 in=r3\nbn name=bd5\n"
                       "add in=b5,bd5\nrelu name=r5\n"
                       "add in=r5,r1\nrelu\nmaxpool k=2\n"
                       "conv name=c4 out=5 k=3 pad=1\nrelu\nmaxpool k=2\n"
                       "flatten\nlinear out=8\nrelu\nlinear out=3\n";
    for (int quant = 0; quant < 2; quant++) {
        lb_qconfig qc;
        lb_error err = { 0 };
        if (quant) ck_assert_msg(lb_qconfig_parse_spec("w4a4", &qc, &err) == LB_OK, "%s", err.msg);
        float *grads[2] = { NULL, NULL }, logits[2][6 * 3];
        int64_t n_grad = 0;
        for (int v = 0; v < 2; v++) {
            lb_model *m;
            ck_assert_msg(lb_model_build(spec, "test", quant ? &qc : NULL, &m, &err) == LB_OK,
                          "%s", err.msg);
            lb_model_init_weights(m, 7);
            m->no_inplace = v == 1;
            lb_graph *g = lb_graph_new(0);
            float xs[6 * 2 * 8 * 8];
            lb_rng r = lb_rng_make(11);
            for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) xs[i] = lb_rng_normal(&r);
            const int32_t ys[6] = { 0, 1, 2, 0, 1, 2 };
            lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 6, 2, 8, 8 }, 4, false);
            lb_tensor *z = lb_model_forward(m, g, x, NULL);
            ck_assert_ptr_nonnull(z);
            ck_assert(graph_has_op(z, "batchnorm_relu", 0) == (v == 0)); /* fused by default */
            const lb_tensor *seen[256];
            int n_seen = 0; /* both residual ends: the shortcut's BN before and after */
            ck_assert_int_eq(count_op(z, "batchnorm_add_relu", seen, &n_seen), v == 0 ? 2 : 0);
            ck_assert(graph_has_pool_then_relu(z, 0) == (v == 0));
            ck_assert(graph_has_op(z, "conv2d_maxpool2", 0) == (v == 0)); /* c4 pools itself */
            memcpy(logits[v], z->data, sizeof logits[v]);
            lb_params_zero_grad(m->params);
            ck_assert_int_eq(lb_backward(g, lb_softmax_ce(g, z, ys), &err), LB_OK);
            n_grad = 0;
            for (int i = 0; i < m->params->n; i++)
                if (m->params->t[i]->grad) n_grad += lb_numel(m->params->t[i]);
            grads[v] = malloc((size_t)n_grad * sizeof(float));
            ck_assert_ptr_nonnull(grads[v]);
            int64_t o = 0;
            for (int i = 0; i < m->params->n; i++) {
                const lb_tensor *t = m->params->t[i];
                if (!t->grad) continue;
                memcpy(grads[v] + o, t->grad, (size_t)lb_numel(t) * sizeof(float));
                o += lb_numel(t);
            }
            lb_graph_free(g);
            lb_model_free(m);
        }
        ck_assert_mem_eq(logits[0], logits[1], sizeof logits[0]);
        ck_assert_mem_eq(grads[0], grads[1], (size_t)n_grad * sizeof(float));
        free(grads[0]);
        free(grads[1]);
    }
}
END_TEST

/* LeNet-5 memorises 8 random images within 60 Adam steps (cheap llm.c-style trajectory check). */
START_TEST(test_lenet5_overfits)
{
    lb_model *m = zoo("lenet5", 1, 28, 28);
    lb_model_init_weights(m, 3);
    lb_optim opt;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_optim_init(&opt, (lb_optim_cfg){ .kind = LB_OPTIM_ADAM }, m->params, &err), LB_OK);
    lb_graph *g = lb_graph_new(0);
    lb_rng rng = lb_rng_make(11);
    float xs[8 * 784];
    int32_t ys[8];
    for (int i = 0; i < 8 * 784; i++) xs[i] = lb_rng_normal(&rng);
    for (int i = 0; i < 8; i++) ys[i] = i % 10;
    float first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 8, 1, 28, 28 }, 4, false);
        lb_tensor *loss = lb_softmax_ce(g, lb_model_forward(m, g, x, &rng), ys);
        ck_assert_ptr_nonnull(loss);
        lb_params_zero_grad(m->params);
        ck_assert_int_eq(lb_backward(g, loss, &err), LB_OK);
        lb_optim_step(&opt, m->params, 2e-3f);
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
    }
    ck_assert_msg(first > 1.5f && last < 0.05f, "loss %g -> %g", first, last);
    lb_graph_free(g);
    lb_model_free(m);
}
END_TEST

Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_zoo_param_counts);
    tcase_add_test(tc, test_resnet20_structure);
    tcase_add_test(tc, test_inplace_forward_matches);
    tcase_add_test(tc, test_init_seeded);
    tcase_add_loop_test(tc, test_spec_errors, 0, (int)(sizeof bad_specs / sizeof bad_specs[0]));
    tcase_add_test(tc, test_spec_file_and_residual);
    tcase_add_test(tc, test_lenet5_overfits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { layers_suite(), layers_quant_suite() };
    return lb_run_suites(suites, 2);
}
