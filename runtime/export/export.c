/* export.c: lb_model -> .lbm (docs/FORMAT.md section 7).
 * Integer weights come from running each layer's own weight quantizer in eval mode, so they
 * are the framework's values exactly; everything else (LUT, biases, multipliers) is derived
 * from the quantizers' scales in double precision. The readers of a trained model that the ONNX
 * exporter (onnx.c) shares are defined here too (export_impl.h). */
#include "runtime/export/export.h"
#include "runtime/export/export_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quant/bn_fold.h"
#include "runtime/lbm_write.h"

lb_export_opts lb_export_opts_for(const char *dataset)
{
    lb_export_opts o = { .mean = { 0, 0, 0 }, .std = { 1, 1, 1 }, .dataset = dataset, .test_acc = -1 };
    if (dataset && (!strcmp(dataset, "mnist") || !strcmp(dataset, "mnist-png")))
        o.mean[0] = 0.1307f, o.std[0] = 0.3081f;
    if (dataset && (!strcmp(dataset, "cifar10") || !strcmp(dataset, "cifar-10"))) {
        static const float m[3] = { 0.4914f, 0.4822f, 0.4465f }, s[3] = { 0.2470f, 0.2435f, 0.2616f };
        memcpy(o.mean, m, sizeof m);
        memcpy(o.std, s, sizeof s);
    }
    if (dataset && (!strcmp(dataset, "fashion-mnist") || !strcmp(dataset, "fashion")))
        o.mean[0] = 0.2860f, o.std[0] = 0.3530f;
    return o;
}

bool lb__export_is_layer(const lb_node *nd)
{
    return nd->kind == LB_NODE_CONV || nd->kind == LB_NODE_LINEAR;
}

/* The unique consumer of node i (-1 for the model input), or -1 when there is none; -2 when
 * there are several. */
static int consumer(const lb_model *m, int i)
{
    int c = -1;
    for (int j = (i < 0 ? 0 : i + 1); j < m->n_nodes; j++)
        for (int k = 0; k < m->nodes[j].n_in; k++)
            if (m->nodes[j].in[k] == i) {
                if (c >= 0 && c != j) return -2;
                c = j;
            }
    return c;
}

lb_status lb__export_act_grid(const lb_node *nd, lb__act_grid *gr, lb_error *err)
{
    const lb_quantizer *q = &nd->aq;
    float s, z;
    if (q->bits == 0 || q->bits > 8)
        return lb_errorf(err, LB_ERR_ARG, "export: layer %s reads float inputs; export needs every "
                         "conv/linear quantized (e.g. --quant w4a4,first=8,last=8)", nd->name);
    if (!lb_quantizer_scales(q, NULL, &s, &z))
        return lb_errorf(err, LB_ERR_ARG, "export: the input quantizer of %s has no scale yet "
                         "(train or calibrate first)", nd->name);
    if (z != 0.0f)
        return lb_errorf(err, LB_ERR_ARG, "export: %s: zero points are not supported", nd->name);
    gr->scale = s;
    gr->qmin = q->qmin;
    gr->qmax = q->qmax;
    gr->dtype = q->qmin < 0 ? LBM_INT8 : LBM_UINT8;
    return LB_OK;
}

static uint32_t node_tensor(lbm_writer *w, const lb_node *nd, int dtype, float scale)
{
    uint32_t dims[3] = { (uint32_t)nd->shape[0], 0, 0 };
    if (nd->n_dims == 3) dims[1] = (uint32_t)nd->shape[1], dims[2] = (uint32_t)nd->shape[2];
    return lbm_writer_tensor(w, dtype, nd->n_dims, dims, scale, 0);
}

lb_status lb__export_layer_weights(lb_model *m, lb_node *nd, int8_t *q, double *s, double *b,
                                   int *bits, lb_error *err)
{
    const bool conv = nd->kind == LB_NODE_CONV;
    lb_tensor *w = conv ? nd->u.conv.weight : nd->u.linear.weight;
    lb_tensor *bias = conv ? nd->u.conv.bias : nd->u.linear.bias;
    const int64_t O = w->shape[0], K = lb_numel(w) / O;
    const lb_quantizer *wq = &nd->wq;
    lb_status st = LB_OK;
    if (wq->bits == 0)
        return lb_errorf(err, LB_ERR_ARG, "export: layer %s has float weights; export needs every "
                         "conv/linear quantized", nd->name);
    if (wq->gran == LB_QG_GROUP && wq->method != LB_QM_BINARY && wq->method != LB_QM_TERNARY)
        return lb_errorf(err, LB_ERR_ARG, "export: layer %s: per-group weight scales are not "
                         "supported by the runtime format (use gran=channel)", nd->name);
    lb_graph *g = lb_graph_new(0);
    float *sc = malloc((size_t)O * 2 * sizeof(float));
    if (!g || !sc) {
        st = lb_errorf(err, LB_ERR_NOMEM, "export: out of memory");
        goto done;
    }
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    if (m->bn_folded && nd->fold >= 0) {
        const lb_batchnorm_layer *bn = &m->nodes[nd->fold].u.bn;
        w = lb_fold_weight(g, w, bn->gamma, bn->running_var, bn->eps);
        bias = lb_fold_bias(g, bias, bn->gamma, bn->beta, bn->running_mean, bn->running_var,
                            bn->eps);
    }
    lb_tensor *y = lb_quantizer_forward(&nd->wq, g, w, LB_QMODE_EVAL);
    if (!y || (st = lb_graph_status(g, err))) {
        if (!st) st = lb_graph_status(g, err);
        goto done;
    }
    /* the scale of each channel */
    switch (wq->method) {
    case LB_QM_BINARY:
    case LB_QM_TERNARY:
        for (int64_t o = 0; o < O; o++) {
            float a = 0.0f;
            for (int64_t k = 0; k < K; k++) a = fmaxf(a, fabsf(y->data[o * K + k]));
            s[o] = a > 0.0f ? a : 1.0;
        }
        break;
    case LB_QM_DOREFA:
        for (int64_t o = 0; o < O; o++) s[o] = 1.0 / (double)((1 << wq->bits) - 1);
        break;
    default:
        if (!lb_quantizer_scales(wq, w, sc, sc + O)) {
            st = lb_errorf(err, LB_ERR_ARG, "export: weight quantizer of %s has no scale", nd->name);
            goto done;
        }
        for (int64_t o = 0; o < O; o++) s[o] = sc[wq->n == 1 ? 0 : o];
    }
    /* integers: y = q * s exactly up to float rounding */
    int lo = 0, hi = 0;
    for (int64_t o = 0; o < O; o++)
        for (int64_t k = 0; k < K; k++) {
            const double v = (double)y->data[o * K + k] / s[o];
            const double r = nearbyint(v);
            if (fabs(v - r) > 1e-3 || r < -128 || r > 127) {
                st = lb_errorf(err, LB_ERR_ARG, "export: layer %s: weight %g is not on its grid "
                               "(scale %g)", nd->name, (double)y->data[o * K + k], s[o]);
                goto done;
            }
            q[o * K + k] = (int8_t)r;
            lo = r < lo ? (int)r : lo;
            hi = r > hi ? (int)r : hi;
        }
    *bits = wq->method == LB_QM_BINARY ? 1 : (lo >= -2 && hi <= 1) ? 2 : (lo >= -8 && hi <= 7) ? 4 : 8;
    for (int64_t o = 0; o < O; o++) b[o] = bias ? (double)bias->data[o] : 0.0;
done:
    free(sc);
    lb_graph_free(g);
    return st;
}

/* The requantization of one layer: real output r'[o] = A[o] * acc + B[o]. */
typedef struct {
    double *A, *B;
} affine;

lb_status lb_export_lbm(lb_model *m, const lb_export_opts *o, uint8_t **file, size_t *size,
                        lb_error *err)
{
    *file = NULL;
    *size = 0;
    lbm_writer w;
    lbm_writer_init(&w);
    lb_status st = LB_OK;
    int8_t *q = NULL;
    uint8_t *packed = NULL;
    double *s = NULL, *b = NULL, *A = NULL, *B = NULL;
    int32_t *blob = NULL;
    int first = -1;
    for (int i = 0; i < m->n_nodes && first < 0; i++)
        if (lb__export_is_layer(&m->nodes[i])) first = i;
    if (first < 0 || m->nodes[first].in[0] != -1 || consumer(m, -1) != first)
        return lb_errorf(err, LB_ERR_ARG, "export: the model input must feed exactly one "
                         "conv/linear layer, its first");
    /* 1. the raw input and the INPUT lookup table into the first layer's grid */
    lb__act_grid gin;
    if ((st = lb__export_act_grid(&m->nodes[first], &gin, err))) goto done;
    const uint32_t t_in = lbm_writer_tensor(&w, LBM_UINT8, 3,
                                            (uint32_t[]){ (uint32_t)m->in_c, (uint32_t)m->in_h,
                                                          (uint32_t)m->in_w }, 1.0f, 0);
    uint32_t t_x = lbm_writer_tensor(&w, gin.dtype, 3,
                                     (uint32_t[]){ (uint32_t)m->in_c, (uint32_t)m->in_h,
                                                   (uint32_t)m->in_w }, gin.scale, 0);
    {
        uint8_t lut[3 * 256];
        for (int c = 0; c < m->in_c && c < 3; c++)
            for (int p = 0; p < 256; p++) { /* the framework's own arithmetic (lb_dataset_get) */
                const float v = ((float)p / 255.0f - o->mean[c]) / o->std[c];
                float qv = nearbyintf(v / gin.scale);
                qv = qv < (float)gin.qmin ? (float)gin.qmin : qv > (float)gin.qmax ? (float)gin.qmax : qv;
                lut[c * 256 + p] = (uint8_t)(int8_t)(int)qv;
            }
        if (m->in_c > 3) {
            st = lb_errorf(err, LB_ERR_ARG, "export: %d input channels (at most 3)", m->in_c);
            goto done;
        }
        const uint32_t off = lbm_writer_data(&w, lut, (uint32_t)(256 * m->in_c));
        lbm_writer_op(&w, LBM_OP_INPUT, 1, (uint32_t[]){ t_in, 0 }, t_x, off,
                      (uint32_t)(256 * m->in_c), NULL);
    }
    /* 2. layer by layer */
    int64_t max_ok = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (lb__export_is_layer(&m->nodes[i])) {
            const lb_tensor *wt = m->nodes[i].kind == LB_NODE_CONV ? m->nodes[i].u.conv.weight
                                                                    : m->nodes[i].u.linear.weight;
            max_ok = lb_numel(wt) > max_ok ? lb_numel(wt) : max_ok;
        }
    q = malloc((size_t)max_ok);
    packed = malloc((size_t)max_ok + 65536); /* rows padded to whole bytes */
    s = malloc(4 * 65536 * sizeof(double));
    blob = malloc(4 * 65536 * sizeof(int32_t));
    if (!q || !packed || !s || !blob) {
        st = lb_errorf(err, LB_ERR_NOMEM, "export: out of memory");
        goto done;
    }
    b = s + 65536, A = s + 2 * 65536, B = s + 3 * 65536;
    uint32_t t_out = 0;
    for (int i = first; i >= 0;) {
        lb_node *nd = &m->nodes[i];
        const bool conv = nd->kind == LB_NODE_CONV;
        const lb_tensor *wt = conv ? nd->u.conv.weight : nd->u.linear.weight;
        const int64_t O = wt->shape[0], K = lb_numel(wt) / O;
        if (O > 65536) {
            st = lb_errorf(err, LB_ERR_ARG, "export: %s has %lld outputs (max 65536)", nd->name,
                           (long long)O);
            goto done;
        }
        lb__act_grid gx;
        int bits = 8;
        if ((st = lb__export_act_grid(nd, &gx, err))) goto done;
        if ((st = lb__export_layer_weights(m, nd, q, s, b, &bits, err))) goto done;
        for (int64_t c = 0; c < O; c++) A[c] = s[c] * gx.scale, B[c] = b[c];
        /* follow the chain to the next layer: bn, relu, maxpool, flatten, dropout */
        int chain[64], n_chain = 0, j = i, next = -1;
        bool relu = false;
        for (;;) {
            const int c = consumer(m, j);
            if (c == -2) {
                st = lb_errorf(err, LB_ERR_ARG, "export: %s feeds several layers; this exporter "
                               "handles chains only", m->nodes[j].name);
                goto done;
            }
            if (c < 0) break;
            const lb_node *cn = &m->nodes[c];
            if (lb__export_is_layer(cn)) {
                next = c;
                break;
            }
            if (cn->kind == LB_NODE_BN) {
                if (m->bn_folded && cn->fold == i) {
                    /* already folded into the weights and bias: identity here */
                } else if (j != i) {
                    st = lb_errorf(err, LB_ERR_ARG, "export: batch-norm %s does not directly "
                                   "follow a conv/linear", cn->name);
                    goto done;
                } else { /* unfolded BN right after the layer: y = a (r - mu) + beta */
                    const lb_batchnorm_layer *bn = &cn->u.bn;
                    for (int64_t c2 = 0; c2 < O; c2++) {
                        const double a = (double)bn->gamma->data[c2] /
                                         sqrt((double)bn->running_var->data[c2] + bn->eps);
                        B[c2] = a * (B[c2] - bn->running_mean->data[c2]) + bn->beta->data[c2];
                        A[c2] *= a;
                    }
                }
            } else if (cn->kind == LB_NODE_RELU) {
                relu = true;
            } else if (cn->kind != LB_NODE_MAXPOOL && cn->kind != LB_NODE_FLATTEN &&
                       cn->kind != LB_NODE_DROPOUT) {
                st = lb_errorf(err, LB_ERR_ARG, "export: %s (%s) between layers is not supported "
                               "by this exporter yet", cn->name, lb_node_kind_name(cn->kind));
                goto done;
            }
            if (n_chain == 64) {
                st = lb_errorf(err, LB_ERR_ARG, "export: chain after %s too long", nd->name);
                goto done;
            }
            chain[n_chain++] = c;
            j = c;
        }
        /* negative effective scales: flip the channel's weights so multipliers stay positive */
        for (int64_t c = 0; c < O; c++)
            if (A[c] < 0) {
                for (int64_t k = 0; k < K; k++) {
                    if (q[c * K + k] == -128) {
                        st = lb_errorf(err, LB_ERR_ARG, "export: %s: cannot negate -128", nd->name);
                        goto done;
                    }
                    q[c * K + k] = (int8_t)-q[c * K + k];
                }
                A[c] = -A[c];
                if (bits == 2) bits = 4;      /* -2 -> 2 needs a wider container; */
                else if (bits == 4) bits = 8; /* +-1 (binary) stays as it is      */
            }
        /* output grid: the next layer's input, or INT32 scores at one common scale */
        lb__act_grid gy = { 0 };
        double s_out = 0;
        if (next >= 0) {
            if ((st = lb__export_act_grid(&m->nodes[next], &gy, err))) goto done;
            if (!relu && gy.qmin == 0) {
                st = lb_errorf(err, LB_ERR_ARG, "export: %s: unsigned input grid without ReLU", m->nodes[next].name);
                goto done;
            }
            s_out = gy.scale;
        } else {
            for (int64_t c = 0; c < O; c++) s_out = A[c] > s_out ? A[c] : s_out;
            s_out = s_out > 0 ? s_out / 256.0 : 1.0;
        }
        /* DATA: weights, bias, multiplier, shift */
        const uint32_t row_bytes = (uint32_t)((K * bits + 7) / 8);
        for (int64_t c = 0; c < O; c++) lbm_pack_row(q + c * K, (uint32_t)K, bits, packed + c * row_bytes);
        const uint32_t w_off = lbm_writer_data(&w, packed, (uint32_t)(O * row_bytes));
        int32_t *bias_i = blob, *mult = blob + O, *shift = blob + 2 * O;
        /* acc_shift: the finest bias resolution for which acc * 2^k + bias cannot overflow */
        int qw_max = 0;
        for (int64_t t = 0; t < O * K; t++) qw_max = abs(q[t]) > qw_max ? abs(q[t]) : qw_max;
        const double qx_max = gx.qmin < 0 ? -(double)gx.qmin : (double)gx.qmax;
        double acc_bound = (double)K * qx_max * qw_max + 1.0, bias_bound = 0.0;
        for (int64_t c = 0; c < O; c++)
            if (A[c] > 0) bias_bound = fmax(bias_bound, fabs(B[c] / A[c]));
        int acc_shift = 0;
        while (acc_shift < 24 &&
               (acc_bound + bias_bound + 1.0) * ldexp(1.0, acc_shift + 1) < 2147483647.0)
            acc_shift++;
        for (int64_t c = 0; c < O; c++) {
            const double bi = A[c] > 0 ? nearbyint(ldexp(B[c] / A[c], acc_shift)) : 0.0;
            if ((acc_bound + fabs(bi / ldexp(1.0, acc_shift))) * ldexp(1.0, acc_shift) >= 2147483647.0) {
                st = lb_errorf(err, LB_ERR_ARG, "export: %s: bias of channel %lld out of range",
                               nd->name, (long long)c);
                goto done;
            }
            bias_i[c] = (int32_t)bi;
            lbm_quantize_multiplier(ldexp(A[c] / s_out, -acc_shift), &mult[c], &shift[c]);
        }
        lbm_writer_data(&w, bias_i, (uint32_t)(4 * O));
        lbm_writer_data(&w, mult, (uint32_t)(4 * O));
        const uint32_t end = lbm_writer_data(&w, shift, (uint32_t)(4 * O)) + (uint32_t)(4 * O);
        const int out_dtype = next >= 0 ? gy.dtype : LBM_INT32;
        uint32_t t_y = node_tensor(&w, nd, out_dtype, (float)s_out);
        int32_t attr[10] = { 0 };
        attr[0] = (int32_t)O;
        attr[5] = bits;
        attr[8] = acc_shift;
        if (next >= 0) {
            attr[6] = relu && gy.qmin < 0 ? 0 : gy.qmin; /* a ReLU into a signed grid: clamp at 0 */
            attr[7] = gy.qmax;
        }
        if (conv) {
            attr[1] = nd->u.conv.kh, attr[2] = nd->u.conv.kw;
            attr[3] = nd->u.conv.stride, attr[4] = nd->u.conv.pad;
        }
        lbm_writer_op(&w, conv ? LBM_OP_CONV2D : LBM_OP_LINEAR, 1, (uint32_t[]){ t_x, 0 }, t_y,
                      w_off, end - w_off, attr);
        /* the chain's shape-changing ops */
        for (int k = 0; k < n_chain; k++) {
            const lb_node *cn = &m->nodes[chain[k]];
            uint32_t t2;
            if (cn->kind == LB_NODE_MAXPOOL) {
                t2 = node_tensor(&w, cn, out_dtype, (float)s_out);
                lbm_writer_op(&w, LBM_OP_MAXPOOL, 1, (uint32_t[]){ t_y, 0 }, t2, 0, 0,
                              (int32_t[10]){ cn->u.pool.k, cn->u.pool.stride, cn->u.pool.pad });
            } else if (cn->kind == LB_NODE_FLATTEN) {
                t2 = node_tensor(&w, cn, out_dtype, (float)s_out);
                lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ t_y, 0 }, t2, 0, 0, NULL);
            } else if (cn->kind == LB_NODE_RELU && next < 0) {
                t2 = node_tensor(&w, cn, out_dtype, (float)s_out);
                lbm_writer_op(&w, LBM_OP_RELU, 1, (uint32_t[]){ t_y, 0 }, t2, 0, 0, NULL);
            } else {
                continue; /* bn, dropout; relu fused into the clamp */
            }
            t_y = t2;
        }
        t_x = t_y;
        t_out = t_y;
        i = next;
    }
    /* 3. META and the file */
    {
        char buf[256];
        lbm_writer_meta(&w, "model", m->name);
        if (o->dataset) lbm_writer_meta(&w, "dataset", o->dataset);
        char qd[200];
        lb_qlayer_cfg_str(&m->qcfg.deflt, qd, sizeof qd);
        lbm_writer_meta(&w, "quant", qd);
        if (o->test_acc >= 0) {
            snprintf(buf, sizeof buf, "%.6f", o->test_acc);
            lbm_writer_meta(&w, "test_acc", buf);
        }
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        lbm_writer_meta(&w, "created", buf);
        lbm_writer_meta(&w, "lowbit", "0.1.0");
        snprintf(buf, sizeof buf, "%d,%d,%d", m->in_c, m->in_h, m->in_w);
        lbm_writer_meta(&w, "input", buf);
        snprintf(buf, sizeof buf, "%d", m->n_classes);
        lbm_writer_meta(&w, "classes", buf);
    }
    if (lbm_writer_finish(&w, t_in, t_out, file, size) != LBM_OK)
        st = lb_errorf(err, LB_ERR_NOMEM, "export: could not lay out the file (out of memory)");
done:
    free(q);
    free(packed);
    free(s);
    free(blob);
    lbm_writer_free(&w);
    return st;
}

lb_status lb__export_write_file(const char *path, const uint8_t *buf, size_t size, lb_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    bool ok = fwrite(buf, 1, size, f) == size;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return lb_errorf(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return LB_OK;
}

lb_status lb_export_lbm_file(lb_model *m, const lb_export_opts *o, const char *path, size_t *size,
                             lb_error *err)
{
    uint8_t *file;
    lb_status st = lb_export_lbm(m, o, &file, size, err);
    if (st) return st;
    st = lb__export_write_file(path, file, *size, err);
    free(file);
    return st;
}
