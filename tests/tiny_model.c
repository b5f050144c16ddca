/* tiny_model.c: the shared fixture of tiny_model.h. */
#include "tests/tiny_model.h"

#include <check.h>

const char *const tiny_net = "model tiny\ninput 1 12 12\n"
                             "conv name=c1 out=4 k=3 pad=1\nbn name=b1\nrelu\nmaxpool k=2\n"
                             "conv name=c2 out=6 k=3\nrelu\nflatten\n"
                             "linear name=f1 out=16\nrelu\nlinear name=f2 out=5\n";

lb_model *tiny_model_calibrated(const char *spec, const char *qspec, bool fold)
{
    lb_qconfig qc;
    lb_error err = { 0 };
    ck_assert_msg(lb_qconfig_parse_spec(qspec, &qc, &err) == LB_OK, "%s", err.msg);
    lb_model *m;
    ck_assert_msg(lb_model_build(spec, "tiny", &qc, &m, &err) == LB_OK, "%s", err.msg);
    lb_model_init_weights(m, 11);
    lb_rng r = lb_rng_make(5);
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == LB_NODE_BN) { /* non-trivial statistics to fold */
            const lb_batchnorm_layer *bn = &m->nodes[i].u.bn;
            for (int c = 0; c < bn->c; c++) {
                bn->gamma->data[c] = 0.5f + lb_rng_uniform(&r);
                bn->beta->data[c] = 0.3f * lb_rng_normal(&r);
                bn->running_mean->data[c] = 0.2f * lb_rng_normal(&r);
                bn->running_var->data[c] = 0.5f + lb_rng_uniform(&r);
            }
        }
    if (fold) lb_model_fold_bn(m);
    lb_graph *g = lb_graph_new(0); /* calibrate the quantizers on a few random batches */
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    m->calibrating = true;
    for (int k = 0; k < 4; k++) {
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf(g, (int64_t[]){ 16, 1, 12, 12 }, 4, false);
        for (int64_t i = 0; i < lb_numel(x); i++)
            x->data[i] = ((float)lb_rng_below(&r, 256) / 255.0f - 0.1307f) / 0.3081f;
        ck_assert_ptr_nonnull(lb_model_forward(m, g, x, NULL));
    }
    m->calibrating = false;
    lb_graph_free(g);
    return m;
}
