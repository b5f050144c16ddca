/* batchnorm.c: the batch-norm layer over autograd's lb_batchnorm op. */
#include "layers/batchnorm.h"

#include <math.h>

lb_status lb_batchnorm_init(lb_batchnorm_layer *bn, lb_params *ps, const char *name, int c,
                            float momentum, float eps, lb_error *err)
{
    static const char *suffix[4] = { "weight", "bias", "running_mean", "running_var" };
    static const unsigned flags[4] = { LB_PARAM_NO_DECAY, LB_PARAM_NO_DECAY, LB_PARAM_BUFFER,
                                       LB_PARAM_BUFFER };
    lb_tensor **slot[4] = { &bn->gamma, &bn->beta, &bn->running_mean, &bn->running_var };
    bn->c = c;
    bn->momentum = momentum;
    bn->eps = eps;
    if (c < 1 || !(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f))
        return lb_errorf(err, LB_ERR_ARG, "bn %s: c=%d momentum=%g eps=%g", name, c, momentum, eps);
    for (int i = 0; i < 4; i++) {
        char pname[LB_NAME_LEN + 16];
        snprintf(pname, sizeof pname, "%s.%s", name, suffix[i]);
        if (!(*slot[i] = lb_params_add(ps, pname, (int64_t[]){ c }, 1, flags[i], err)))
            return err ? err->status : LB_ERR_ARG;
    }
    return LB_OK;
}

void lb_batchnorm_reset(lb_batchnorm_layer *bn)
{
    for (int i = 0; i < bn->c; i++) {
        bn->gamma->data[i] = 1.0f;
        bn->beta->data[i] = 0.0f;
        bn->running_mean->data[i] = 0.0f;
        bn->running_var->data[i] = 1.0f;
    }
}

lb_tensor *lb_batchnorm_forward(const lb_batchnorm_layer *bn, lb_graph *g, lb_tensor *x)
{
    return lb_batchnorm(g, x, bn->gamma, bn->beta, bn->running_mean, bn->running_var,
                        bn->momentum, bn->eps);
}
