/* hist.c: per-layer weight histograms before and after quantization (`lowbit hist`, and the
 * hist.png of each quantized ablation run), one panel per conv/linear layer in one PNG.
 *
 * With a fixed-point scale (min/max, LSQ; per tensor, channel or group) each weight is shown
 * in units of its own step, w / s, so layers with per-channel scales still show one grid:
 * the float weights as a histogram (left axis) and the integer codes the quantizer gives
 * them as impulses (right axis) at -2^(b-1) .. 2^(b-1)-1. Quantizers without such a scale
 * (DoReFa, binary, ternary) are shown on the weight axis, the dequantized values as impulses.
 * BN folding is not applied: the panels show the stored weights. */
#define _POSIX_C_SOURCE 200809L
#include "ablate.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/plot.h"
#include "layers/model.h"
#include "quant/qconfig.h"
#include "train/checkpoint.h"

#define N_BINS 60

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Scale index of element i of a (rows, K) weight under q's granularity. */
static int64_t scale_index(const lb_quantizer *q, int64_t i, int64_t K)
{
    switch (q->gran) {
    case LB_QG_TENSOR: return 0;
    case LB_QG_CHANNEL: return i / K;
    case LB_QG_GROUP: {
        const int64_t per_row = (K + q->group - 1) / q->group;
        return (i / K) * per_row + (i % K) / q->group;
    }
    }
    return 0;
}

/* One panel: writes its data blocks and plot command. */
static lb_status panel(lb_plot *p, lb_node *nd, int idx, lb_graph *g, lb_qmode mode,
                       lb_error *err)
{
    lb_tensor *w = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
    lb_quantizer *q = &nd->wq;
    const int64_t n = lb_numel(w), K = n / w->shape[0];
    lb_graph_reset(g);
    lb_tensor *wq = lb_quantizer_forward(q, g, w, mode);
    if (lb_graph_status(g, err)) return err->status;
    float *scale = malloc((size_t)q->n * 2 * sizeof(float));
    float *x = malloc((size_t)n * sizeof(float)), *v = malloc((size_t)n * sizeof(float));
    lb_status st = LB_OK;
    if (!scale || !x || !v) {
        st = lb_errorf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    const bool scaled = lb_quantizer_scales(q, w, scale, scale + q->n);
    for (int64_t i = 0; i < n; i++) {
        const float s = scaled ? scale[scale_index(q, i, K)] : 1.0f;
        x[i] = w->data[i] / (s > 0 ? s : 1.0f);
        v[i] = scaled ? nearbyintf(wq->data[i] / (s > 0 ? s : 1.0f)) : wq->data[i];
    }
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (scaled && q->bits <= 4) { /* the whole (small) grid, even where no weight reaches */
        lo = fminf(lo, (float)q->qmin - 0.5f);
        hi = fmaxf(hi, (float)q->qmax + 0.5f);
    }
    if (hi <= lo) hi = lo + 1.0f;
    const double bw = (hi - lo) / N_BINS;
    int64_t counts[N_BINS] = { 0 };
    for (int64_t i = 0; i < n; i++) {
        int b = (int)((x[i] - lo) / bw);
        counts[b < 0 ? 0 : b >= N_BINS ? N_BINS - 1 : b]++;
    }
    FILE *f = p->f;
    char name[32];
    snprintf(name, sizeof name, "h%d", idx);
    lb_plot_data_begin(p, name);
    for (int b = 0; b < N_BINS; b++) fprintf(f, "%.6g %lld\n", lo + (b + 0.5) * bw, (long long)counts[b]);
    lb_plot_data_end(p);
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    snprintf(name, sizeof name, "q%d", idx);
    lb_plot_data_begin(p, name);
    int n_levels = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && v[j] == v[i]) j++;
        fprintf(f, "%.6g %lld\n", v[i], (long long)(j - i));
        n_levels++;
        i = j;
    }
    lb_plot_data_end(p);
    char qdesc[96], title[200];
    snprintf(qdesc, sizeof qdesc, "%s %d-bit%s", lb_qmethod_name(q->method), q->bits,
             q->method == LB_QM_DOREFA ? " (tanh-normalised, in [-1, 1])"
             : q->gran == LB_QG_TENSOR ? " per tensor" : q->gran == LB_QG_CHANNEL ? " per channel"
                                                                                  : " per group");
    snprintf(title, sizeof title, "%s (%lld weights): %s, %d levels used", nd->name,
             (long long)n, qdesc, n_levels);
    fprintf(f, "set title ");
    lb_plot_quote(f, title);
    fprintf(f, "\nset xlabel ");
    lb_plot_quote(f, scaled ? "weight / step (the step of its channel or group)" : "weight value");
    fprintf(f, "\nset ylabel 'float weights (count)'\nset y2label 'quantized weights (count)'\n"
               "set ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\n"
               "set boxwidth %.6g absolute\n", bw * 0.95);
    fprintf(f, "plot $h%d using 1:2 with boxes fs solid 0.45 noborder lc rgb '#7f7f7f' "
               "title 'float', $q%d using 1:2 axes x1y2 with impulses lw 2.5 lc rgb '#d62728' "
               "title 'quantized'\n", idx, idx);
done:
    free(scale);
    free(x);
    free(v);
    return st;
}

lb_status lb_hist_write(const char *ckpt, const char *quant, const char *png, lb_error *err)
{
    lb_model *m = NULL, *src = NULL;
    lb_graph *g = NULL;
    lb_qconfig *qc = NULL;
    lb_plot p = { 0 };
    lb_status st = lb_checkpoint_load(ckpt, &src, NULL, err);
    if (st) return st;
    if (quant) { /* rebuild the float checkpoint with this quantization */
        qc = malloc(sizeof *qc);
        if (!qc) {
            st = lb_errorf(err, LB_ERR_NOMEM, "out of memory");
            goto done;
        }
        FILE *qf = fopen(quant, "r");
        if (qf) fclose(qf);
        st = qf ? lb_qconfig_parse_file(quant, qc, err) : lb_qconfig_parse_spec(quant, qc, err);
        if (st) goto done;
        st = lb_model_build(src->spec, ckpt, qc, &m, err);
        if (st) goto done;
        lb_model_copy_params(m, src);
    } else {
        m = src;
        src = NULL;
    }
    int n_layers = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const lb_node *nd = &m->nodes[i];
        if ((nd->kind == LB_NODE_CONV || nd->kind == LB_NODE_LINEAR) && nd->wq.bits > 0)
            n_layers++;
    }
    if (n_layers == 0) {
        st = lb_errorf(err, LB_ERR_ARG, "%s: no layer has quantized weights (give --quant)", ckpt);
        goto done;
    }
    g = lb_graph_new(0);
    if (!g) {
        st = lb_errorf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    const int cols = n_layers <= 3 ? n_layers : n_layers == 4 ? 2 : 3;
    const int rows = (n_layers + cols - 1) / cols;
    if ((st = lb_plot_open(&p, png, NULL, NULL, NULL, err))) goto done;
    fprintf(p.f, "set terminal pngcairo size %d,%d font 'DejaVu Sans,10' linewidth 1.2\n"
                 "set output ", 520 * cols, 380 * rows + 40);
    lb_plot_quote(p.f, png);
    const char *mb = strrchr(ckpt, '/');
    char top[600];
    snprintf(top, sizeof top, "%s: weights before (grey) and after (red) quantization", ckpt);
    (void)mb;
    fprintf(p.f, "\nset key top left box opaque font ',9'\nset border 11\nset multiplot layout %d,%d title ",
            rows, cols);
    lb_plot_quote(p.f, top);
    fprintf(p.f, " font ',12'\n");
    int k = 0;
    /* quantized weights as the model uses them: eval mode for a trained or calibrated
     * checkpoint; calibration mode (scales from the weights) for a float one given --quant */
    const lb_qmode mode = quant ? LB_QMODE_CALIB : LB_QMODE_EVAL;
    for (int i = 0; i < m->n_nodes && !st; i++) {
        lb_node *nd = &m->nodes[i];
        if ((nd->kind == LB_NODE_CONV || nd->kind == LB_NODE_LINEAR) && nd->wq.bits > 0)
            st = panel(&p, nd, k++, g, mode, err);
    }
    if (st) {
        lb_plot_abort(&p);
        goto done;
    }
    fprintf(p.f, "unset multiplot\n");
    st = lb_plot_render(&p, err);
    if (st) remove(png); /* gnuplot may leave a blank page; a rerun then makes it again */
done:
    lb_graph_free(g);
    lb_model_free(m);
    lb_model_free(src);
    free(qc);
    return st;
}
