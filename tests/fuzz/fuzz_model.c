/* fuzz_model.c: libFuzzer target for model descriptions (layers/model.c, lb_model_build),
 * with the quantizers a configuration gives each layer.
 *
 * Input: description text (cut at the first NUL, as lb_read_text_file rejects NULs). When it
 * starts with "#q SPEC" (a comment to the model parser), SPEC is parsed as a quantization
 * spec (quant/qconfig.h) and, if valid, the model is built quantized that way.
 * Oracles: a failure has an error status and a message naming the origin ("fuzz.txt");
 * a model that builds must also run: when it is small enough for a fuzzing iteration, one
 * training step (forward, loss, backward) and one evaluation forward on a batch of 2, then
 * batch-norm folding and another evaluation, all without error and with logits of shape
 * (2, n_classes). A description the parser accepts but the engine cannot run is a bug of the
 * parser's shape inference.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/blas.h"
#include "layers/model.h"
#include "quant/qconfig.h"
#include "tests/fuzz/fuzz_util.h"

#define ORIGIN     "fuzz.txt"
#define MAX_PARAMS 200000.0   /* parameters initialised and stepped                      */
#define MAX_ACTS   400000.0   /* activation floats per sample, summed over the nodes       */
#define MAX_MACS   4000000.0  /* multiply-accumulates per sample                           */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Per-sample cost of a forward pass, from the shapes the parser inferred. */
static void cost(const lb_model *m, double *acts, double *macs)
{
    *acts = (double)m->in_c * m->in_h * m->in_w;
    *macs = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const lb_node *nd  = &m->nodes[i];
        double         out = 1;
        for (int d = 0; d < nd->n_dims; d++) out *= (double)nd->shape[d];
        *acts += out;
        if (nd->kind == LB_NODE_CONV)
            *macs += out * nd->u.conv.in_c * nd->u.conv.kh * nd->u.conv.kw;
        else if (nd->kind == LB_NODE_LINEAR)
            *macs += out * (double)nd->u.linear.in;
        else if (nd->kind == LB_NODE_MAXPOOL || nd->kind == LB_NODE_AVGPOOL)
            *macs += out * nd->u.pool.k * nd->u.pool.k;
        else
            *macs += 2 * out;
    }
}

/* A model the parser accepted failed to run: say why, then trap. */
static void fail(const char *what, const lb_error *err)
{
    fprintf(stderr, "fuzz_model: %s: %s\n", what, err ? err->msg : "");
    __builtin_trap();
}

/* Forward (and, when training, backward) of a batch of 2; traps on any failure. */
static void run(lb_model *m, lb_graph *g, bool training)
{
    lb_graph_reset(g);
    lb_graph_set_training(g, training);
    lb_graph_set_grad_enabled(g, training);
    lb_tensor *x = lb_leaf(g, (int64_t[]){ 2, m->in_c, m->in_h, m->in_w }, 4, false);
    if (x)
        for (int64_t i = 0; i < lb_numel(x); i++) x->data[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
    lb_rng     rng    = lb_rng_make(3);
    lb_tensor *logits = lb_model_forward(m, g, x, &rng);
    int32_t    y[2]   = { 0, m->n_classes - 1 };
    lb_tensor *loss   = lb_softmax_ce(g, logits, y);
    lb_error   err    = { 0 };
    if (!loss || lb_graph_status(g, &err) != LB_OK) fail("forward", &err);
    if (logits->n_dims != 2 || logits->shape[0] != 2 || logits->shape[1] != m->n_classes)
        fail("logits shape", NULL);
    if (training) {
        lb_params_zero_grad(m->params);
        if (lb_backward(g, loss, &err) != LB_OK) fail("backward", &err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    if (!once) {
        lb_blas_set_threads(1);
        once = true;
    }
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;

    lb_qconfig *qc = NULL;
    if (!strncmp(text, "#q ", 3)) {
        char   spec[256];
        size_t k = 0;
        for (const char *s = text + 3; *s && *s != '\n' && k + 1 < sizeof spec; s++) spec[k++] = *s;
        spec[k] = 0;
        lb_error e = { 0 };
        qc = malloc(sizeof *qc);
        if (qc && lb_qconfig_parse_spec(spec, qc, &e) != LB_OK) {
            free(qc);
            qc = NULL;
        }
    }

    lb_model *m   = NULL;
    lb_error  err = { 0 };
    const lb_status st = lb_model_build(text, ORIGIN, qc, &m, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, ORIGIN);
        if (m) __builtin_trap();
    } else {
        if (!m || m->n_nodes < 1 || m->n_classes < 1 || !m->spec || strcmp(m->spec, text))
            __builtin_trap();
        int64_t qb, fb;
        lb_model_weight_bytes(m, &qb, &fb);
        if (qb < 0 || fb < 0 || lb_model_param_count(m) < 0) __builtin_trap();
        double acts, macs;
        cost(m, &acts, &macs);
        if ((double)m->params->total <= MAX_PARAMS && acts <= MAX_ACTS && macs <= MAX_MACS) {
            lb_graph *g = lb_graph_new(0);
            if (!g) __builtin_trap();
            lb_model_init_weights(m, 1);
            run(m, g, true);
            run(m, g, false);
            lb_model_fold_bn(m);
            run(m, g, false);
            lb_graph_free(g);
        }
    }
    lb_model_free(m);
    free(qc);
    free(text);
    return 0;
}
