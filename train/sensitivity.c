/* sensitivity.c: see sensitivity.h. Quantize-one-layer measurements, per-layer Hessian
 * traces through the model's own gradients, and the knapsack over the model's layers. */
#include "train/sensitivity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/mixed.h"
#include "train/loop.h"

lb_sens_cfg lb_sens_cfg_default(void)
{
    return (lb_sens_cfg){ .bits = { 2, 4, 8 }, .n_bits = 3, .batch = 500, .hutch_samples = 32,
                          .hutch_eps = 1e-2f, .measure_loss = true, .seed = 42 };
}

lb_status lb_sens_parse_bits(const char *s, lb_sens_cfg *cfg, lb_error *err)
{
    int bits[LB_SENS_MAX_BITS], n = 0;
    const char *p = s;
    if (!*p) return lb_errorf(err, LB_ERR_ARG, "bits '': expected a list such as 2,4,8");
    for (;;) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 8 || (*end && *end != ','))
            return lb_errorf(err, LB_ERR_ARG, "bits '%s': expected bit-widths 1..8 separated by "
                             "commas, e.g. 2,4,8", s);
        for (int i = 0; i < n; i++)
            if (bits[i] == v) return lb_errorf(err, LB_ERR_ARG, "bits '%s': %ld given twice", s, v);
        if (n == LB_SENS_MAX_BITS)
            return lb_errorf(err, LB_ERR_ARG, "bits '%s': at most %d bit-widths", s, LB_SENS_MAX_BITS);
        bits[n++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    for (int i = 1; i < n; i++) /* insertion sort, ascending */
        for (int j = i; j > 0 && bits[j - 1] > bits[j]; j--) {
            const int t = bits[j];
            bits[j] = bits[j - 1];
            bits[j - 1] = t;
        }
    memcpy(cfg->bits, bits, sizeof bits);
    cfg->n_bits = n;
    return LB_OK;
}

bool lb_calib_spread(const lb_dataset *ds)
{
    for (int64_t i = 1; i < ds->n; i++)
        if (ds->labels[i] < ds->labels[i - 1]) return false;
    return ds->n > 1 && ds->labels[0] != ds->labels[ds->n - 1];
}

lb_status lb_calib_split(const lb_dataset *train, int64_t n, lb_dataset *calib, lb_error *err)
{
    memset(calib, 0, sizeof *calib);
    if (n < 1 || n >= train->n)
        return lb_errorf(err, LB_ERR_ARG, "calibration split of %lld images: expected 1..%lld "
                         "(fewer than the %lld training images)", (long long)n,
                         (long long)train->n - 1, (long long)train->n);
    const size_t px = (size_t)train->c * (size_t)train->h * (size_t)train->w;
    const bool spread = lb_calib_spread(train);
    uint8_t *img = malloc((size_t)n * px);
    int32_t *lab = malloc((size_t)n * sizeof *lab);
    if (!img || !lab) {
        free(img), free(lab);
        return lb_errorf(err, LB_ERR_NOMEM, "out of memory for a calibration split of %lld "
                         "images", (long long)n);
    }
    for (int64_t k = 0; k < n; k++) {
        const int64_t i = spread ? (2 * k + 1) * train->n / (2 * n)
                                 : train->n - n + k;
        uint8_t *dst = img + (size_t)k * px;
        const uint8_t *p = lb_dataset_pixels(train, i, dst, err);
        if (!p) {
            free(img), free(lab);
            return LB_ERR_IO;
        }
        if (p != dst) memcpy(dst, p, px);
        lab[k] = train->labels[i];
    }
    *calib = *train;
    calib->images = img, calib->labels = lab, calib->n = n;
    calib->class_names = NULL, calib->files = NULL, calib->n_files = 0, calib->file_base = 0;
    return LB_OK;
}

static lb_tensor *layer_weight(lb_node *nd)
{
    return nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
}

/* ---- gradients of the calibration loss (for Hutchinson) ---------------------------------- */

typedef struct grad_ctx {
    lb_model         *m;
    const lb_dataset *ds;
    lb_graph         *g;
    int64_t           batch;
    int32_t          *y;
} grad_ctx;

/* Resets the graph and puts the next calibration batch on it as the leaf *x; returns its
 * size, 0 at the end of the split or when x cannot be allocated (sticky graph error), -1 when
 * a streamed sample cannot be read (lb_batcher_status). */
static int64_t next_batch(grad_ctx *c, lb_batcher *b, lb_tensor **x)
{
    lb_graph_reset(c->g);
    const lb_dataset *ds = c->ds;
    *x = lb_leaf(c->g, (int64_t[]){ c->batch, ds->c, ds->h, ds->w }, 4, false);
    if (!*x) return 0;
    const int64_t n = lb_batcher_next(b, (*x)->data, c->y);
    if (n > 0) (*x)->shape[0] = n;
    return n;
}

/* g = d(mean loss over ds)/d(params), in eval mode (running BN statistics, no dropout), at
 * the parameter values m->params->values (which lb_hutchinson_trace perturbs in place). */
static lb_status calib_grad(void *vctx, const float *w, float *gout, lb_error *err)
{
    grad_ctx *c = vctx;
    lb_params *ps = c->m->params;
    LB_ASSERT(w == ps->values);
    memset(gout, 0, (size_t)ps->total * sizeof *gout);
    lb_batcher b;
    lb_status st = lb_batcher_init(&b, c->ds, c->batch, false, 0, err);
    if (st) return st;
    lb_graph_set_training(c->g, false);
    lb_graph_set_grad_enabled(c->g, true);
    lb_batcher_start_epoch(&b);
    const double N = (double)c->ds->n;
    for (;;) {
        lb_tensor *x;
        const int64_t n = next_batch(c, &b, &x);
        if (n <= 0) break; /* the end, no memory for x or a read error (checked below) */
        lb_tensor *loss = lb_softmax_ce(c->g, lb_model_forward(c->m, c->g, x, NULL), c->y);
        if ((st = lb_graph_status(c->g, err))) break;
        lb_params_zero_grad(ps);
        if ((st = lb_backward(c->g, loss, err))) break;
        const float k = (float)((double)n / N); /* batch means -> the mean over ds */
        for (int64_t i = 0; i < ps->total; i++) gout[i] += k * ps->grads[i];
    }
    if (!st) st = lb_batcher_status(&b, err);
    if (!st) st = lb_graph_status(c->g, err);
    lb_batcher_free(&b);
    return st;
}

/* The logits of every calibration sample, in order, in eval mode (for the Gauss-Newton
 * traces); w is m->params->values, perturbed in place by lb_hutchinson_gn_trace. */
static lb_status calib_logits(void *vctx, const float *w, float *z, lb_error *err)
{
    grad_ctx *c = vctx;
    LB_ASSERT(w == c->m->params->values);
    lb_batcher b;
    lb_status st = lb_batcher_init(&b, c->ds, c->batch, false, 0, err);
    if (st) return st;
    lb_graph_set_training(c->g, false);
    lb_graph_set_grad_enabled(c->g, false);
    lb_batcher_start_epoch(&b);
    const int64_t C = c->m->n_classes;
    int64_t seen = 0;
    for (;;) {
        lb_tensor *x;
        const int64_t n = next_batch(c, &b, &x);
        if (n <= 0) break; /* the end, no memory for x or a read error (checked below) */
        lb_tensor *logits = lb_model_forward(c->m, c->g, x, NULL);
        if ((st = lb_graph_status(c->g, err))) break;
        memcpy(z + seen * C, logits->data, (size_t)(n * C) * sizeof *z);
        seen += n;
    }
    if (!st) st = lb_batcher_status(&b, err);
    if (!st) st = lb_graph_status(c->g, err);
    lb_graph_set_grad_enabled(c->g, true);
    lb_batcher_free(&b);
    return st;
}

lb_status lb_hess_method_parse(const char *s, lb_hess_method *out, lb_error *err)
{
    if (!strcmp(s, "gn")) *out = LB_HESS_GN;
    else if (!strcmp(s, "fd")) *out = LB_HESS_FD_GRAD;
    else return lb_errorf(err, LB_ERR_ARG, "Hessian method '%s': expected gn or fd", s);
    return LB_OK;
}

/* ---- the run ------------------------------------------------------------------------------ */

static lb_status check_cfg(const lb_sens_cfg *cfg, lb_error *err)
{
    if (cfg->n_bits < 1 || cfg->n_bits > LB_SENS_MAX_BITS)
        return lb_errorf(err, LB_ERR_ARG, "sensitivity: %d bit-widths (expected 1..%d)",
                         cfg->n_bits, LB_SENS_MAX_BITS);
    for (int i = 0; i < cfg->n_bits; i++)
        if (cfg->bits[i] < 1 || cfg->bits[i] > 8)
            return lb_errorf(err, LB_ERR_ARG, "sensitivity: %d bits (expected 1..8)", cfg->bits[i]);
    if (cfg->batch < 1) return lb_errorf(err, LB_ERR_ARG, "sensitivity: batch %lld", (long long)cfg->batch);
    if (cfg->hutch_samples < 0)
        return lb_errorf(err, LB_ERR_ARG, "sensitivity: %d Hutchinson samples", cfg->hutch_samples);
    if (!(cfg->hutch_eps > 0.0f))
        return lb_errorf(err, LB_ERR_ARG, "sensitivity: finite-difference step %g (expected > 0)",
                         (double)cfg->hutch_eps);
    return LB_OK;
}

lb_status lb_sensitivity_run(lb_model *m, const lb_dataset *calib, const lb_sens_cfg *cfg,
                             lb_sens_result *res, lb_error *err)
{
    memset(res, 0, sizeof *res);
    lb_status st = check_cfg(cfg, err);
    if (st) return st;
    if (!lb_qconfig_is_float(&m->qcfg))
        return lb_errorf(err, LB_ERR_ARG, "sensitivity: model %s is quantized; measure its float "
                         "version (rebuild it without --quant)", m->name);
    if (m->bn_folded)
        return lb_errorf(err, LB_ERR_ARG, "sensitivity: model %s has batch-norm folded into its "
                         "layers; measure the checkpoint from before folding", m->name);
    const double t0 = lb_now();
    int L = 0;
    for (int i = 0; i < m->n_nodes; i++)
        L += m->nodes[i].kind == LB_NODE_CONV || m->nodes[i].kind == LB_NODE_LINEAR;
    if (L == 0) return lb_errorf(err, LB_ERR_ARG, "sensitivity: model %s has no conv or linear layer", m->name);
    lb_sens_layer *ls = calloc((size_t)L, sizeof *ls);
    int64_t *off = malloc((size_t)L * sizeof *off), *len = malloc((size_t)L * sizeof *len);
    double *tr = malloc((size_t)L * sizeof *tr), *se = malloc((size_t)L * sizeof *se);
    float *saved = NULL;
    lb_graph *g = NULL;
    int32_t *y = NULL;
    if (!ls || !off || !len || !tr || !se) {
        st = lb_errorf(err, LB_ERR_NOMEM, "sensitivity: out of memory");
        goto fail;
    }
    int64_t max_w = 0, fp_bits = 0;
    for (int i = 0, l = 0; i < m->n_nodes; i++) {
        lb_node *nd = &m->nodes[i];
        fp_bits += lb_node_param_count(nd) * 32;
        if (nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) continue;
        lb_tensor *w = layer_weight(nd);
        lb_sens_layer *x = &ls[l];
        snprintf(x->name, sizeof x->name, "%s", nd->name);
        x->node = i;
        x->n_weights = lb_numel(w);
        x->rows = w->shape[0];
        for (int64_t k = 0; k < x->n_weights; k++) x->w_sq += (double)w->data[k] * w->data[k];
        off[l] = w->data - m->params->values;
        len[l] = x->n_weights;
        fp_bits -= x->n_weights * 32;
        if (x->n_weights > max_w) max_w = x->n_weights;
        l++;
    }
    res->fixed_bits = fp_bits;
    res->n_layers = L;
    res->layers = ls;
    res->n_bits = cfg->n_bits;
    memcpy(res->bits, cfg->bits, sizeof res->bits);
    res->calib_n = calib->n;
    if ((st = lb_evaluate(m, calib, cfg->batch, &res->base_acc, &res->base_loss, err))) goto fail;
    if (cfg->log)
        fprintf(cfg->log, "sensitivity: %d layers, %lld calibration images, float loss %.4f, "
                "accuracy %.2f%%\n", L, (long long)calib->n, res->base_loss, 100.0 * res->base_acc);
    if (!(saved = malloc((size_t)max_w * sizeof *saved))) {
        st = lb_errorf(err, LB_ERR_NOMEM, "sensitivity: out of memory");
        goto fail;
    }
    /* 1. quantize one layer at a time: loss/accuracy deltas and the quantization error */
    for (int l = 0; l < L; l++) {
        lb_sens_layer *x = &ls[l];
        float *w = m->params->values + off[l];
        memcpy(saved, w, (size_t)x->n_weights * sizeof *w);
        for (int k = 0; k < cfg->n_bits; k++) {
            lb_weight_quantize_mse(saved, x->rows, x->n_weights / x->rows, cfg->bits[k], w,
                                   &x->qerr[k]);
            if (cfg->measure_loss) {
                double acc, loss;
                st = lb_evaluate(m, calib, cfg->batch, &acc, &loss, err);
                memcpy(w, saved, (size_t)x->n_weights * sizeof *w);
                if (st) goto fail;
                x->dloss[k] = loss - res->base_loss;
                x->dacc[k] = acc - res->base_acc;
            }
            memcpy(w, saved, (size_t)x->n_weights * sizeof *w);
        }
        if (cfg->log && cfg->measure_loss) {
            fprintf(cfg->log, "  %-12s", x->name);
            for (int k = 0; k < cfg->n_bits; k++)
                fprintf(cfg->log, "  w%d: dloss %+.4f dacc %+.2f%%", cfg->bits[k], x->dloss[k],
                        100.0 * x->dacc[k]);
            fprintf(cfg->log, "\n");
        }
    }
    /* 2. Hessian traces, every layer from the same gradient pairs */
    if (cfg->hutch_samples > 0) {
        g = lb_graph_new(0);
        y = malloc((size_t)cfg->batch * sizeof *y);
        if (!g || !y) {
            st = lb_errorf(err, LB_ERR_NOMEM, "sensitivity: out of memory");
            goto fail;
        }
        grad_ctx ctx = { .m = m, .ds = calib, .g = g, .batch = cfg->batch, .y = y };
        if (cfg->hess == LB_HESS_GN)
            st = lb_hutchinson_gn_trace(calib_logits, &ctx, m->params->values, m->params->total,
                                        calib->n, m->n_classes, off, len, L, cfg->hutch_samples,
                                        cfg->hutch_eps, cfg->seed, tr, se, err);
        else
            st = lb_hutchinson_trace(calib_grad, &ctx, m->params->values, m->params->total, off,
                                     len, L, cfg->hutch_together, cfg->hutch_samples,
                                     cfg->hutch_eps, cfg->seed, tr, se, err);
        lb_params_zero_grad(m->params);
        if (st) goto fail;
        for (int l = 0; l < L; l++) {
            ls[l].trace = tr[l];
            ls[l].trace_se = se[l];
            if (cfg->log)
                fprintf(cfg->log, "  %-12s tr(H) %.4g +- %.2g (%d samples, %s)\n", ls[l].name,
                        tr[l], se[l], cfg->hutch_samples,
                        cfg->hess == LB_HESS_GN ? "Gauss-Newton" : "gradient differences");
        }
    }
    res->seconds = lb_now() - t0;
    goto done;
fail:
    free(ls);
    memset(res, 0, sizeof *res);
done:
    free(off);
    free(len);
    free(tr);
    free(se);
    free(saved);
    free(y);
    lb_graph_free(g);
    return st;
}

void lb_sens_result_free(lb_sens_result *res)
{
    if (!res) return;
    free(res->layers);
    memset(res, 0, sizeof *res);
}

/* ---- the assignment ----------------------------------------------------------------------- */

lb_status lb_mixed_objective_parse(const char *s, lb_mixed_objective *out, lb_error *err)
{
    if (!strcmp(s, "hawq")) *out = LB_MIXED_OBJ_HAWQ;
    else if (!strcmp(s, "loss")) *out = LB_MIXED_OBJ_LOSS;
    else return lb_errorf(err, LB_ERR_ARG, "objective '%s': expected hawq or loss", s);
    return LB_OK;
}

const char *lb_mixed_objective_name(lb_mixed_objective o)
{
    return o == LB_MIXED_OBJ_HAWQ ? "hawq" : o == LB_MIXED_OBJ_LOSS ? "loss" : "?";
}

int64_t lb_sens_layer_cost(const lb_sens_layer *l, int bits)
{
    return l->n_weights * bits + 32 * l->rows;
}

double lb_mixed_layer_objective(const lb_sens_layer *l, int k, lb_mixed_objective obj)
{
    if (obj == LB_MIXED_OBJ_LOSS) /* + a tie-breaker: zero increases still prefer more bits */
        return (l->dloss[k] > 0.0 ? l->dloss[k] : 0.0) +
               1e-6 * (l->w_sq > 0.0 ? l->qerr[k] / l->w_sq : 0.0);
    const double t = l->trace > 0.0 ? l->trace : 0.0; /* a negative estimate is noise */
    return t / (double)l->n_weights * l->qerr[k];
}

lb_status lb_mixed_assign(const lb_sens_result *r, lb_mixed_objective obj, int64_t budget_bits,
                          const int *choices, int n_choices, int *bits, lb_mixed_plan *plan,
                          lb_error *err)
{
    const int L = r->n_layers, C = n_choices;
    if (C < 1 || C > LB_SENS_MAX_BITS) return lb_errorf(err, LB_ERR_ARG, "mixed: %d bit choices", C);
    int kidx[LB_SENS_MAX_BITS];
    for (int c = 0; c < C; c++) {
        kidx[c] = -1;
        for (int k = 0; k < r->n_bits; k++)
            if (r->bits[k] == choices[c]) kidx[c] = k;
        if (kidx[c] < 0)
            return lb_errorf(err, LB_ERR_ARG, "mixed: %d bits is a choice but its sensitivity "
                             "was not measured (measure it too: --bits)", choices[c]);
    }
    if (obj == LB_MIXED_OBJ_HAWQ) {
        bool any = false;
        for (int l = 0; l < L; l++) any |= r->layers[l].trace != 0.0;
        if (!any) return lb_errorf(err, LB_ERR_ARG, "mixed: the hawq objective needs Hessian "
                                   "traces (Hutchinson samples > 0), or use the loss objective");
    }
    lb_status st = LB_OK;
    int64_t *cost = malloc((size_t)L * C * sizeof *cost);
    double *val = malloc((size_t)L * C * sizeof *val);
    int *pick = malloc((size_t)L * sizeof *pick);
    if (!cost || !val || !pick) {
        st = lb_errorf(err, LB_ERR_NOMEM, "mixed: out of memory");
        goto done;
    }
    int64_t min_bits = r->fixed_bits;
    for (int l = 0; l < L; l++) {
        int64_t lo = INT64_MAX;
        for (int c = 0; c < C; c++) {
            cost[l * C + c] = lb_sens_layer_cost(&r->layers[l], choices[c]);
            val[l * C + c] = lb_mixed_layer_objective(&r->layers[l], kidx[c], obj);
            if (cost[l * C + c] < lo) lo = cost[l * C + c];
        }
        min_bits += lo;
    }
    if (budget_bits < min_bits) {
        st = lb_errorf(err, LB_ERR_ARG, "mixed: a budget of %.2f KiB is infeasible: with every "
                       "layer at its fewest bits the weights need %.2f KiB", budget_bits / 8192.0,
                       min_bits / 8192.0);
        goto done;
    }
    double best;
    int64_t used;
    if ((st = lb_mixed_solve(L, C, cost, val, budget_bits - r->fixed_bits, pick, &best, &used, err)))
        goto done;
    int64_t wsum = 0, nsum = 0;
    for (int l = 0; l < L; l++) {
        bits[l] = choices[pick[l]];
        wsum += r->layers[l].n_weights * bits[l];
        nsum += r->layers[l].n_weights;
    }
    if (plan) {
        plan->objective = best;
        plan->weight_bits = r->fixed_bits + used;
        plan->avg_bits = nsum ? (double)wsum / (double)nsum : 0.0;
    }
done:
    free(cost);
    free(val);
    free(pick);
    return st;
}

void lb_mixed_qconfig(const lb_sens_result *r, const int *bits, int abits, lb_qconfig *out)
{
    *out = lb_qconfig_float();
    out->deflt = (lb_qlayer_cfg){ .w_bits = 8, .a_bits = abits, .w_method = LB_QM_LSQ,
                                  .a_method = LB_QM_LSQ, .w_gran = LB_QG_CHANNEL,
                                  .ste = LB_STE_CLIPPED };
    for (int l = 0; l < r->n_layers && l < LB_QCONFIG_MAX_LAYERS; l++) {
        lb_qoverride *o = &out->layers[out->n_layers++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", r->layers[l].name);
        o->cfg = out->deflt;
        o->cfg.w_bits = bits[l];
        o->set = LB_QSET_W_BITS;
        if (bits[l] == 1) {
            o->cfg.w_method = LB_QM_BINARY;
            o->set |= LB_QSET_W_METHOD;
        }
    }
}
