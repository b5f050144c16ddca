/* linear.c: the fully connected layer (one sgemm forward through lb_matmul_nt). */
#include "layers/linear.h"

#include <math.h>

lb_status lb_linear_init(lb_linear *l, lb_params *ps, const char *name, int64_t in, int64_t out,
                         bool bias, lb_error *err)
{
    char pname[LB_NAME_LEN + 16];
    *l = (lb_linear){ .in = in, .out = out };
    if (in < 1 || out < 1)
        return lb_errorf(err, LB_ERR_ARG, "linear %s: in=%lld out=%lld (both must be >= 1)", name,
                         (long long)in, (long long)out);
    snprintf(pname, sizeof pname, "%s.weight", name);
    if (!(l->weight = lb_params_add(ps, pname, (int64_t[]){ out, in }, 2, 0, err)))
        return err ? err->status : LB_ERR_ARG;
    if (bias) {
        snprintf(pname, sizeof pname, "%s.bias", name);
        if (!(l->bias = lb_params_add(ps, pname, (int64_t[]){ out }, 1, LB_PARAM_NO_DECAY, err)))
            return err ? err->status : LB_ERR_ARG;
    }
    return LB_OK;
}

void lb_linear_reset(lb_linear *l, lb_rng *rng)
{
    const float std = sqrtf(2.0f / (float)l->in);
    for (int64_t i = 0, n = lb_numel(l->weight); i < n; i++)
        l->weight->data[i] = std * lb_rng_normal(rng);
    if (l->bias)
        for (int64_t i = 0; i < l->out; i++) l->bias->data[i] = 0.0f;
}

lb_tensor *lb_linear_forward(const lb_linear *l, lb_graph *g, lb_tensor *x)
{
    lb_tensor *y = lb_matmul_nt(g, x, l->weight);
    return l->bias ? lb_add_bias(g, y, l->bias) : y;
}
