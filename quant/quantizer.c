/* quantizer.c: configuration -> state -> fake-quant op, for one weight or activation tensor.
 * Weight min/max scales come from the current weights at every step (PyTorch's default for
 * weight fake-quant); activation ranges come from observers kept in the "<name>.range" buffer. */
#include "quant/quantizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

lb_status lb_quantizer_init(lb_quantizer *q, lb_params *ps, const char *name,
                            const lb_qlayer_cfg *cfg, bool weight, const int64_t *shape,
                            int n_dims, bool nonneg, lb_error *err)
{
    memset(q, 0, sizeof *q);
    q->weight = weight;
    q->bits = weight ? cfg->w_bits : cfg->a_bits;
    if (q->bits == 0) return LB_OK;
    q->method = weight ? cfg->w_method : cfg->a_method;
    q->gran = weight ? cfg->w_gran : LB_QG_TENSOR;
    q->group = cfg->w_group;
    q->ste = cfg->ste;
    q->scheme = weight || !nonneg ? LB_QSCHEME_SYMMETRIC : LB_QSCHEME_UNSIGNED;
    if (q->method == LB_QM_BINARY) q->bits = 1;
    if (q->method == LB_QM_DOREFA || q->method == LB_QM_TERNARY) q->gran = weight ? q->gran : LB_QG_TENSOR;
    if (q->method == LB_QM_PACT) q->scheme = LB_QSCHEME_UNSIGNED; /* PACT clips at 0 */
    lb_qrange(q->bits, q->scheme, &q->qmin, &q->qmax);
    const int64_t numel = lb_shape_numel(shape, n_dims);
    const int64_t rows = weight ? shape[0] : 1, K = numel / (rows ? rows : 1);
    switch (weight ? q->gran : LB_QG_TENSOR) {
    case LB_QG_TENSOR: q->n = 1; break;
    case LB_QG_CHANNEL: q->n = rows; break;
    case LB_QG_GROUP:
        if (q->group < 1)
            return lb_errorf(err, LB_ERR_ARG, "%s: group size %lld (expected >= 1)", name,
                             (long long)q->group);
        q->n = rows * ceil_div(K, q->group);
        break;
    }
    q->per_scale = numel / q->n;
    char pname[LB_NAME_LEN + 16];
    if (q->method == LB_QM_LSQ || q->method == LB_QM_PACT) {
        snprintf(pname, sizeof pname, "%s.%s", name, q->method == LB_QM_LSQ ? "step" : "alpha");
        q->step = lb_params_add(ps, pname, (int64_t[]){ q->method == LB_QM_LSQ ? q->n : 1 }, 1,
                                LB_PARAM_NO_DECAY, err);
        if (!q->step) return err ? err->status : LB_ERR_ARG;
    }
    snprintf(pname, sizeof pname, "%s.range", name);
    q->range = lb_params_add(ps, pname, (int64_t[]){ 2 * q->n + 1 }, 1, LB_PARAM_BUFFER, err);
    if (!q->range) return err ? err->status : LB_ERR_ARG;
    return LB_OK;
}

/* Per-scale max|x| (weights: over each layout cell of x). */
static void absmax_layout(const lb_quantizer *q, const lb_tensor *x, float *out)
{
    const int64_t numel = lb_numel(x);
    for (int64_t i = 0; i < q->n; i++) out[i] = 0.0f;
    if (q->gran == LB_QG_TENSOR) {
        float m = 0.0f;
        for (int64_t i = 0; i < numel; i++) m = fmaxf(m, fabsf(x->data[i]));
        out[0] = m;
        return;
    }
    const int64_t rows = x->shape[0], K = numel / rows;
    const int64_t G = q->gran == LB_QG_GROUP ? q->group : K, per_row = ceil_div(K, G);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            float *o = out + r * per_row + k / G;
            *o = fmaxf(*o, fabsf(x->data[r * K + k]));
        }
}

/* Keeps learned step sizes positive (a projection after each optimizer update). */
static void floor_steps(lb_quantizer *q)
{
    for (int64_t i = 0; i < lb_numel(q->step); i++)
        if (!(q->step->data[i] >= 1e-8f)) q->step->data[i] = 1e-8f;
}

static lb_observer observer_of(lb_quantizer *q)
{
    return (lb_observer){ .kind = q->method == LB_QM_EMA ? LB_OBS_EMA : LB_OBS_MINMAX,
                          .momentum = 0.01f,
                          .freeze_after = q->ema_freeze,
                          .n = 1,
                          .min = q->range->data,
                          .max = q->range->data + 1,
                          .count = q->range->data + 2 };
}

/* Scales from the observed activation range (n == 1). */
static void scale_from_range(const lb_quantizer *q, float *scale, float *zero)
{
    lb_qparams_from_range(q->range->data, q->range->data + 1, 1, q->bits, q->scheme, scale, zero);
}

static lb_tensor *weight_forward(lb_quantizer *q, lb_graph *g, lb_tensor *x, lb_qmode mode)
{
    switch (q->method) {
    case LB_QM_MINMAX:
    case LB_QM_EMA: {
        float *scale = lb_graph_alloc(g, (size_t)q->n * sizeof(float));
        if (!scale) return NULL;
        absmax_layout(q, x, scale);
        float *rmin = q->range->data, *rmax = q->range->data + q->n;
        for (int64_t i = 0; i < q->n; i++) { /* keep the range for export and inspection */
            rmin[i] = -scale[i];
            rmax[i] = scale[i];
        }
        q->range->data[2 * q->n] += 1.0f;
        float *zero = lb_graph_alloc(g, (size_t)q->n * sizeof(float));
        if (!zero) return NULL;
        lb_qparams_from_range(rmin, rmax, q->n, q->bits, q->scheme, scale, zero);
        const lb_qparams qp = { q->gran, q->group, q->qmin, q->qmax, q->n, scale, NULL };
        return lb_fake_quant(g, x, &qp, q->ste);
    }
    case LB_QM_LSQ: {
        float *count = q->range->data + 2 * q->n;
        if (*count == 0.0f) { /* first use: initialise the step from the weights */
            if (mode == LB_QMODE_TRAIN) {
                lb_lsq_init_step(x, q->gran, q->group, q->qmax, q->step->data);
                floor_steps(q); /* an all-zero row would give step 0 */
            } else {
                absmax_layout(q, x, q->step->data);
                for (int64_t i = 0; i < q->n; i++)
                    q->step->data[i] = fmaxf(q->step->data[i], 1e-8f) / (float)q->qmax;
            }
            *count = 1.0f;
        }
        floor_steps(q); /* projected descent: an optimizer step may push a step size <= 0 */
        const float gs = 1.0f / sqrtf((float)q->per_scale * (float)q->qmax);
        return lb_fake_quant_lsq(g, x, q->step, q->gran, q->group, q->qmin, q->qmax, gs);
    }
    case LB_QM_DOREFA: return lb_dorefa_weight(g, x, q->bits);
    case LB_QM_BINARY: return lb_binary_weight(g, x, q->gran == LB_QG_TENSOR ? LB_QG_TENSOR : LB_QG_CHANNEL);
    case LB_QM_TERNARY:
        return lb_ternary_weight(g, x, q->gran == LB_QG_TENSOR ? LB_QG_TENSOR : LB_QG_CHANNEL, 0.7f);
    case LB_QM_PACT:
    case LB_QM_COUNT: break;
    }
    return lb_graph_fail(g, LB_ERR_ARG, "quantizer: method %s cannot quantize weights",
                         lb_qmethod_name(q->method));
}

static lb_tensor *act_forward(lb_quantizer *q, lb_graph *g, lb_tensor *x, lb_qmode mode)
{
    lb_observer ob = observer_of(q);
    float *count = ob.count;
    const bool fresh = *count == 0.0f;
    /* observers follow the data while training or calibrating; an eval pass through a
     * quantizer that has never seen data initialises it from that data */
    /* learned quantizers use the observer only to start (and in calibration) */
    const bool learned = q->method == LB_QM_LSQ || q->method == LB_QM_PACT;
    if ((mode != LB_QMODE_EVAL || fresh) && !(learned && mode == LB_QMODE_TRAIN && !fresh))
        lb_observer_update(&ob, x);
    if (mode == LB_QMODE_CALIB && q->calib != LB_CALIB_MINMAX) {
        /* replace the min/max by the mean over calibration batches of a tighter clip */
        const int64_t n = lb_numel(x);
        const float c = q->calib == LB_CALIB_PERCENTILE ? lb_calib_percentile(x->data, n, q->calib_pct)
                                                        : lb_calib_mse(x->data, n, q->bits, q->scheme);
        const float k = *count; /* the observer already counted this batch */
        float *clip = q->range->data + 1;
        *clip = k <= 1.0f ? c : *clip + (c - *clip) / k;
        q->range->data[0] = q->scheme == LB_QSCHEME_UNSIGNED ? 0.0f : -*clip;
    }
    switch (q->method) {
    case LB_QM_MINMAX:
    case LB_QM_EMA: {
        float *sz = lb_graph_alloc(g, 2 * sizeof(float));
        if (!sz) return NULL;
        scale_from_range(q, sz, sz + 1);
        const lb_qparams qp = { LB_QG_TENSOR, 0, q->qmin, q->qmax, 1, sz, sz + 1 };
        return lb_fake_quant(g, x, &qp, q->ste);
    }
    case LB_QM_LSQ: {
        if (fresh && mode == LB_QMODE_TRAIN) {
            lb_lsq_init_step(x, LB_QG_TENSOR, 0, q->qmax, q->step->data);
            floor_steps(q);
        } else if (fresh || mode == LB_QMODE_CALIB) { /* calibration: the observed range */
            float z;
            scale_from_range(q, q->step->data, &z);
        }
        floor_steps(q);
        const float gs = 1.0f / sqrtf((float)q->per_scale * (float)q->qmax);
        return lb_fake_quant_lsq(g, x, q->step, LB_QG_TENSOR, 0, q->qmin, q->qmax, gs);
    }
    case LB_QM_PACT:
        if (fresh || mode == LB_QMODE_CALIB) q->step->data[0] = fmaxf(q->range->data[1], 1e-3f);
        if (!(q->step->data[0] >= 1e-3f)) q->step->data[0] = 1e-3f; /* keep alpha > 0 */
        return lb_pact(g, x, q->step, q->bits);
    default: break;
    }
    return lb_graph_fail(g, LB_ERR_ARG, "quantizer: method %s cannot quantize activations",
                         lb_qmethod_name(q->method));
}

lb_tensor *lb_quantizer_forward(lb_quantizer *q, lb_graph *g, lb_tensor *x, lb_qmode mode)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    if (q->bits == 0) return x;
    return q->weight ? weight_forward(q, g, x, mode) : act_forward(q, g, x, mode);
}

bool lb_quantizer_scales(const lb_quantizer *q, const lb_tensor *x, float *scale, float *zero)
{
    if (q->bits == 0) return false;
    for (int64_t i = 0; i < q->n; i++) zero[i] = 0.0f;
    switch (q->method) {
    case LB_QM_LSQ:
        if (q->range->data[2 * q->n] == 0.0f) return false;
        memcpy(scale, q->step->data, (size_t)q->n * sizeof(float));
        return true;
    case LB_QM_PACT:
        scale[0] = q->step->data[0] / (float)((1 << q->bits) - 1);
        return true;
    case LB_QM_MINMAX:
    case LB_QM_EMA:
        if (q->weight) { /* symmetric: the range is +-max|w| of the current weights */
            float *neg = malloc(2 * (size_t)q->n * sizeof(float)), *pos = neg + q->n;
            if (!neg) return false;
            absmax_layout(q, x, pos);
            for (int64_t i = 0; i < q->n; i++) neg[i] = -pos[i];
            lb_qparams_from_range(neg, pos, q->n, q->bits, q->scheme, scale, zero);
            free(neg);
            return true;
        }
        if (q->range->data[2] == 0.0f) return false;
        scale_from_range(q, scale, zero);
        return true;
    default: return false;
    }
}

int64_t lb_quantizer_scale_bytes(const lb_quantizer *q)
{
    if (q->bits == 0 || q->method == LB_QM_DOREFA) return 0;
    return q->n * (int64_t)sizeof(float);
}
