/* onnx.c: lb_model -> ONNX ModelProto, QDQ style (docs/FORMAT.md, "ONNX export").
 * The messages are protoc-c's structs for Debian's onnx.proto, generated at build time
 * (runtime/export/CMakeLists.txt). Every message, string and array of one export lives in one
 * arena, freed after packing, so nothing is freed piece by piece and a failed allocation only
 * sets a sticky flag that is checked once. Integer weights and activation grids come from
 * export_impl.h, the readers the .lbm exporter uses. Not here: any numerics of its own; the
 * graph states the framework's computation and ONNX Runtime (or any other) carries it out. */
#include "runtime/export/onnx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/arena.h"
#include "onnx.pb-c.h"
#include "runtime/export/export_impl.h"

/* TensorProto.DataType values. INT4 and UINT4 (ONNX 1.16) postdate Debian's onnx.proto 1.12,
 * but data_type and elem_type are plain int32 fields, so they are written by number. */
enum { DT_FLOAT = 1, DT_UINT8 = 2, DT_INT8 = 3, DT_UINT4 = 21, DT_INT4 = 22 };

/* ---- building messages in an arena ------------------------------------------------------ */

typedef struct {
    lb_arena            a;
    bool                oom;       /* sticky: some allocation failed                    */
    Onnx__NodeProto   **node;      /* (cap) graph nodes in execution order              */
    size_t              n_node, cap;
    Onnx__TensorProto **init;      /* (cap) initializers                                */
    size_t              n_init;
} builder;

/* Zeroed arena memory, or NULL (and the builder failed). */
static void *balloc(builder *b, size_t bytes)
{
    void *p = b->oom ? NULL : lb_arena_alloc(&b->a, bytes ? bytes : 1);
    if (!p) {
        b->oom = true;
        return NULL;
    }
    memset(p, 0, bytes ? bytes : 1);
    return p;
}

static char *bstr(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *bstr(builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? balloc(b, (size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static Onnx__AttributeProto *attr_new(builder *b, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = balloc(b, sizeof *a);
    char *nm = bstr(b, "%s", name);
    if (!a || !nm) return NULL;
    onnx__attribute_proto__init(a);
    a->name = nm;
    a->has_type = 1;
    a->type = type;
    return a;
}

static Onnx__AttributeProto *attr_int(builder *b, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr_new(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(builder *b, const char *name, float v)
{
    Onnx__AttributeProto *a = attr_new(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
    return a;
}

/* An INTS attribute holding v[0..n). */
static Onnx__AttributeProto *attr_ints(builder *b, const char *name, size_t n, const int64_t *v)
{
    Onnx__AttributeProto *a = attr_new(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *vals = balloc(b, n * sizeof *vals);
    if (!a || !vals) return NULL;
    memcpy(vals, v, n * sizeof *vals);
    a->n_ints = n;
    a->ints = vals;
    return a;
}

/* Appends node `name`: op(in[0..n_in)) -> out, with n_attr attributes. Any NULL argument (a
 * failed allocation before) fails the builder. Returns out, so calls chain. */
static const char *node(builder *b, const char *op, const char *name, size_t n_in,
                        const char *const *in, const char *out, size_t n_attr,
                        Onnx__AttributeProto *const *attr)
{
    Onnx__NodeProto *nd = balloc(b, sizeof *nd);
    char **ins = balloc(b, n_in * sizeof *ins);
    char **outs = balloc(b, sizeof *outs);
    Onnx__AttributeProto **at = balloc(b, n_attr * sizeof *at);
    char *op_s = bstr(b, "%s", op), *name_s = name ? bstr(b, "%s", name) : NULL;
    bool ok = nd && ins && outs && at && op_s && name_s && out;
    for (size_t i = 0; ok && i < n_in; i++) ok = in[i] && (ins[i] = bstr(b, "%s", in[i]));
    for (size_t i = 0; ok && i < n_attr; i++) ok = (at[i] = attr[i]) != NULL;
    if (!ok || !(outs[0] = bstr(b, "%s", out))) {
        b->oom = true;
        return NULL;
    }
    LB_ASSERT(b->n_node < b->cap); /* cap is an upper bound computed from the model */
    onnx__node_proto__init(nd);
    nd->op_type = op_s;
    nd->name = name_s;
    nd->n_input = n_in;
    nd->input = ins;
    nd->n_output = 1;
    nd->output = outs;
    nd->n_attribute = n_attr;
    nd->attribute = at;
    b->node[b->n_node++] = nd;
    return outs[0];
}

/* A new initializer with n_dims dims; returns its raw_data (bytes, zeroed) to fill, or NULL. */
static uint8_t *tensor_new(builder *b, const char *name, int32_t dtype, size_t n_dims,
                           const int64_t *dims, size_t bytes)
{
    Onnx__TensorProto *t = balloc(b, sizeof *t);
    int64_t *d = balloc(b, n_dims * sizeof *d);
    uint8_t *raw = balloc(b, bytes);
    char *nm = name ? bstr(b, "%s", name) : NULL;
    if (!t || !d || !raw || !nm) {
        b->oom = true;
        return NULL;
    }
    LB_ASSERT(b->n_init < b->cap);
    onnx__tensor_proto__init(t);
    if (n_dims) memcpy(d, dims, n_dims * sizeof *d);
    t->n_dims = n_dims;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->name = nm;
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = raw;
    b->init[b->n_init++] = t;
    return raw;
}

static int64_t numel(size_t n_dims, const int64_t *dims)
{
    int64_t n = 1;
    for (size_t i = 0; i < n_dims; i++) n *= dims[i];
    return n;
}

/* A FLOAT initializer (raw_data is little-endian IEEE binary32, whatever the host). */
static const char *floats(builder *b, const char *name, size_t n_dims, const int64_t *dims,
                          const float *v)
{
    const int64_t n = numel(n_dims, dims);
    uint8_t *raw = tensor_new(b, name, DT_FLOAT, n_dims, dims, (size_t)n * 4);
    if (!raw) return NULL;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) raw[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    return name;
}

static const char *scalar(builder *b, const char *name, float v)
{
    return floats(b, name, 0, NULL, &v);
}

/* An integer initializer of type dt (INT8, UINT8, INT4, UINT4) holding q (values within the
 * type's range). 4-bit types pack two per byte, element 2t in the low nibble, as ONNX says. */
static const char *ints(builder *b, const char *name, int32_t dt, size_t n_dims,
                        const int64_t *dims, const int8_t *q)
{
    const int64_t n = numel(n_dims, dims);
    const bool nibbles = dt == DT_INT4 || dt == DT_UINT4;
    uint8_t *raw = tensor_new(b, name, dt, n_dims, dims, (size_t)(nibbles ? (n + 1) / 2 : n));
    if (!raw) return NULL;
    for (int64_t i = 0; i < n; i++) {
        if (nibbles) raw[i / 2] |= (uint8_t)(((unsigned)q[i] & 0xFu) << (4 * (i & 1)));
        else raw[i] = (uint8_t)q[i];
    }
    return name;
}

/* Graph input or output: a tensor of elem type dt, dims[0] the free batch size "N". */
static Onnx__ValueInfoProto *value_info(builder *b, const char *name, int32_t dt, size_t n_dims,
                                        const int64_t *dims)
{
    Onnx__ValueInfoProto *vi = balloc(b, sizeof *vi);
    Onnx__TypeProto *tp = balloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = balloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = balloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dim = balloc(b, n_dims * sizeof *dim);
    char *nm = bstr(b, "%s", name), *batch = bstr(b, "N");
    if (!vi || !tp || !tt || !sh || !dim || !nm || !batch) return NULL;
    for (size_t i = 0; i < n_dims; i++) {
        if (!(dim[i] = balloc(b, sizeof *dim[i]))) return NULL;
        onnx__tensor_shape_proto__dimension__init(dim[i]);
        if (i == 0) {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim[i]->dim_param = batch;
        } else {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim[i]->dim_value = dims[i];
        }
    }
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = n_dims;
    sh->dim = dim;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = dt;
    tt->shape = sh;
    onnx__type_proto__init(tp);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    onnx__value_info_proto__init(vi);
    vi->name = nm;
    vi->type = tp;
    return vi;
}

/* ---- the model -------------------------------------------------------------------------- */

/* Scratch for one layer's weights, sized for the largest layer. */
typedef struct {
    int8_t *q;    /* (O * K) integer weights                  */
    double *s, *b; /* (O) per-channel scales, effective biases */
    float  *f;    /* (O) the same as float, for initializers  */
} scratch;

/* conv/linear nd reading tensor x, writing tensor y:
 *   [Clip] -> QuantizeLinear -> DequantizeLinear   input, on its quantizer's grid
 *   DequantizeLinear(int weights, per-channel scales, axis 0)
 *   Conv or Gemm(transB), then Add(float bias) (BN folded into both when the model is folded)
 * The integers and scales are lb__export_layer_weights', so the .lbm file has the same. */
static lb_status emit_layer(builder *b, lb_model *m, lb_node *nd, const char *x, const char *y,
                            scratch *sc, lb_error *err)
{
    const bool conv = nd->kind == LB_NODE_CONV;
    const lb_tensor *w = conv ? nd->u.conv.weight : nd->u.linear.weight;
    const bool has_bias = (conv ? nd->u.conv.bias : nd->u.linear.bias) != NULL ||
                          (m->bn_folded && nd->fold >= 0);
    const int64_t O = w->shape[0];
    const char *n = nd->name;
    lb__act_grid g;
    int wbits;
    lb_status st;
    if ((st = lb__export_act_grid(nd, &g, err))) return st;
    if ((st = lb__export_layer_weights(m, nd, sc->q, sc->s, sc->b, &wbits, err))) return st;
    /* 1. the input: 4-bit containers up to 4 bits, else 8; a grid narrower than its
     *    container (1-3 or 5-7 bits) is clipped to its range in float first, which is the
     *    same as clamping the rounded integer, since x / s is monotone in x */
    const bool sgn = g.qmin < 0, nib = nd->aq.bits <= 4;
    const int32_t adt = nib ? (sgn ? DT_INT4 : DT_UINT4) : (sgn ? DT_INT8 : DT_UINT8);
    const int32_t lo = sgn ? (nib ? -8 : -128) : 0, hi = sgn ? (nib ? 7 : 127) : (nib ? 15 : 255);
    if (g.qmin != lo || g.qmax != hi) {
        const char *mn = scalar(b, bstr(b, "%s.x_min", n), (float)g.qmin * g.scale);
        const char *mx = scalar(b, bstr(b, "%s.x_max", n), (float)g.qmax * g.scale);
        x = node(b, "Clip", bstr(b, "%s/x_clip", n), 3, (const char *[]){ x, mn, mx },
                 bstr(b, "%s.x_clipped", n), 0, NULL);
    }
    const char *xs = scalar(b, bstr(b, "%s.x_scale", n), g.scale);
    const char *xz = ints(b, bstr(b, "%s.x_zero_point", n), adt, 0, NULL, (const int8_t[]){ 0 });
    x = node(b, "QuantizeLinear", bstr(b, "%s/x_quantize", n), 3, (const char *[]){ x, xs, xz },
             bstr(b, "%s.x_q", n), 0, NULL);
    x = node(b, "DequantizeLinear", bstr(b, "%s/x_dequantize", n), 3,
             (const char *[]){ x, xs, xz }, bstr(b, "%s.x_dq", n), 0, NULL);
    /* 2. the weights: int4 when the integers fit (4 bits or fewer, 2-bit and binary and
     *    ternary included), else int8 */
    const int32_t wdt = wbits <= 4 && nd->wq.bits <= 4 ? DT_INT4 : DT_INT8;
    for (int64_t o = 0; o < O; o++) sc->f[o] = (float)sc->s[o];
    const char *wq = ints(b, bstr(b, "%s.weight_q", n), wdt, (size_t)w->n_dims, w->shape, sc->q);
    const char *ws = floats(b, bstr(b, "%s.weight_scale", n), 1, (const int64_t[]){ O }, sc->f);
    const char *wd = node(b, "DequantizeLinear", bstr(b, "%s/weight_dequantize", n), 2,
                          (const char *[]){ wq, ws }, bstr(b, "%s.weight_dq", n), 1,
                          (Onnx__AttributeProto *[]){ attr_int(b, "axis", 0) });
    /* 3. the product, then the bias in a separate Add: a float bias inside Conv/Gemm would be
     *    rounded to int32 at scale x_scale * w_scale by ONNX Runtime's level-1 ("basic")
     *    WeightBiasQuantization, which then disagrees with the framework near rounding ties */
    const char *in[2] = { x, wd }, *p_out = has_bias ? bstr(b, "%s.product", n) : y;
    if (conv) {
        const lb_conv2d_layer *c = &nd->u.conv;
        const int64_t p = c->pad, st2 = c->stride;
        Onnx__AttributeProto *at[3] = {
            attr_ints(b, "kernel_shape", 2, (const int64_t[]){ c->kh, c->kw }),
            attr_ints(b, "strides", 2, (const int64_t[]){ st2, st2 }),
            attr_ints(b, "pads", 4, (const int64_t[]){ p, p, p, p }) };
        node(b, "Conv", n, 2, in, p_out, 3, at);
    } else {
        node(b, "Gemm", n, 2, in, p_out, 1, (Onnx__AttributeProto *[]){ attr_int(b, "transB", 1) });
    }
    if (has_bias) { /* (O, 1, 1) against (N, O, H, W); (O) against (N, O) */
        for (int64_t o = 0; o < O; o++) sc->f[o] = (float)sc->b[o];
        const char *bias = floats(b, bstr(b, "%s.bias", n), conv ? 3 : 1,
                                  (const int64_t[]){ O, 1, 1 }, sc->f);
        node(b, "Add", bstr(b, "%s/bias", n), 2, (const char *[]){ p_out, bias }, y, 0, NULL);
    }
    return LB_OK;
}

/* Unfolded batch-norm nd on x: BatchNormalization with the running statistics (eval form). */
static const char *emit_bn(builder *b, const lb_node *nd, const char *x, const char *y)
{
    const lb_batchnorm_layer *bn = &nd->u.bn;
    const int64_t C = bn->c;
    const char *n = nd->name;
    const char *in[5] = { x, floats(b, bstr(b, "%s.gamma", n), 1, &C, bn->gamma->data),
                          floats(b, bstr(b, "%s.beta", n), 1, &C, bn->beta->data),
                          floats(b, bstr(b, "%s.running_mean", n), 1, &C, bn->running_mean->data),
                          floats(b, bstr(b, "%s.running_var", n), 1, &C, bn->running_var->data) };
    return node(b, "BatchNormalization", n, 5, in, y, 1,
                (Onnx__AttributeProto *[]){ attr_float(b, "epsilon", bn->eps) });
}

static const char *emit_pool(builder *b, const lb_node *nd, const char *x, const char *y)
{
    const lb_pool_cfg *c = &nd->u.pool;
    const int64_t k = c->k, s = c->stride, p = c->pad;
    Onnx__AttributeProto *at[4] = { attr_ints(b, "kernel_shape", 2, (const int64_t[]){ k, k }),
                                    attr_ints(b, "strides", 2, (const int64_t[]){ s, s }),
                                    attr_ints(b, "pads", 4, (const int64_t[]){ p, p, p, p }),
                                    attr_int(b, "count_include_pad", 1) };
    /* max pooling: padding never wins (ONNX pads with -inf); average pooling: padding counts
     * as a zero in the divisor k*k, as the framework's (PyTorch's count_include_pad) */
    if (nd->kind == LB_NODE_MAXPOOL) return node(b, "MaxPool", nd->name, 1, &x, y, 3, at);
    return node(b, "AveragePool", nd->name, 1, &x, y, 4, at);
}

/* Metadata as in the .lbm META section (docs/FORMAT.md section 2). */
static Onnx__StringStringEntryProto *meta(builder *b, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *e = balloc(b, sizeof *e);
    char *k = bstr(b, "%s", key), *v = bstr(b, "%s", value);
    if (!e || !k || !v) return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = k;
    e->value = v;
    return e;
}

lb_status lb_export_onnx(lb_model *m, const lb_export_opts *o, uint8_t **file, size_t *size,
                         lb_error *err)
{
    *file = NULL;
    *size = 0;
    if (m->in_c > 3)
        return lb_errorf(err, LB_ERR_ARG, "export: %d input channels (at most 3)", m->in_c);
    if (m->n_nodes < 1) return lb_errorf(err, LB_ERR_ARG, "export: the model has no layers");
    builder b = { 0 };
    lb_arena_init(&b.a, 0);
    lb_status st = LB_OK;
    /* at most 5 graph nodes (Clip, Q, DQ, DQ, Conv) and 7 initializers per model node, plus
     * the input's 4 nodes and 3 initializers and a final Identity */
    b.cap = 8 * (size_t)m->n_nodes + 16;
    b.node = balloc(&b, b.cap * sizeof *b.node);
    b.init = balloc(&b, b.cap * sizeof *b.init);
    const char **out = balloc(&b, (size_t)m->n_nodes * sizeof *out);
    int64_t max_w = 1, max_o = 1;
    for (int i = 0; i < m->n_nodes; i++)
        if (lb__export_is_layer(&m->nodes[i])) {
            const lb_node *nd = &m->nodes[i];
            const lb_tensor *w = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
            max_w = lb_numel(w) > max_w ? lb_numel(w) : max_w;
            max_o = w->shape[0] > max_o ? w->shape[0] : max_o;
        }
    scratch sc = { .q = malloc((size_t)max_w), .s = malloc(2 * (size_t)max_o * sizeof(double)),
                   .f = malloc((size_t)max_o * sizeof(float)) };
    if (!sc.q || !sc.s || !sc.f || b.oom) {
        st = lb_errorf(err, LB_ERR_NOMEM, "export: out of memory");
        goto done;
    }
    sc.b = sc.s + max_o;
    /* 1. raw pixels -> the framework's normalisation, ((float)p / 255 - mean) / std, in the
     *    same float operations as lb_dataset_get */
    const int64_t C = m->in_c, in_dims[4] = { -1, C, m->in_h, m->in_w };
    const int64_t bc[4] = { 1, C, 1, 1 };
    const char *x = node(&b, "Cast", "input/cast", 1, (const char *[]){ "pixels" }, "input.float",
                         1, (Onnx__AttributeProto *[]){ attr_int(&b, "to", DT_FLOAT) });
    x = node(&b, "Div", "input/div255", 2, (const char *[]){ x, scalar(&b, "input.255", 255.0f) },
             "input.unit", 0, NULL);
    x = node(&b, "Sub", "input/sub_mean", 2,
             (const char *[]){ x, floats(&b, "input.mean", 4, bc, o->mean) }, "input.centered", 0,
             NULL);
    x = node(&b, "Div", "input/div_std", 2,
             (const char *[]){ x, floats(&b, "input.std", 4, bc, o->std) }, "input.normalized",
             0, NULL);
    /* 2. the framework's nodes, in order; the last one's output is "logits" */
    for (int i = 0; i < m->n_nodes && !b.oom; i++) {
        lb_node *nd = &m->nodes[i];
        const char *a = nd->in[0] < 0 ? x : out[nd->in[0]];
        const char *y = i == m->n_nodes - 1 ? "logits" : nd->name;
        switch (nd->kind) {
        case LB_NODE_CONV:
        case LB_NODE_LINEAR:
            if ((st = emit_layer(&b, m, nd, a, y, &sc, err))) goto done;
            break;
        case LB_NODE_BN:
            if (m->bn_folded && nd->fold >= 0) y = a; /* in the layer's weights and bias */
            else emit_bn(&b, nd, a, y);
            break;
        case LB_NODE_RELU: node(&b, "Relu", nd->name, 1, &a, y, 0, NULL); break;
        case LB_NODE_MAXPOOL:
        case LB_NODE_AVGPOOL: emit_pool(&b, nd, a, y); break;
        case LB_NODE_GAP: /* (N, C, H, W) -> (N, C, 1, 1) -> (N, C) */
            a = node(&b, "GlobalAveragePool", nd->name, 1, &a, bstr(&b, "%s.pooled", nd->name),
                     0, NULL);
            node(&b, "Flatten", bstr(&b, "%s/flatten", nd->name), 1, &a, y, 1,
                 (Onnx__AttributeProto *[]){ attr_int(&b, "axis", 1) });
            break;
        case LB_NODE_FLATTEN:
            node(&b, "Flatten", nd->name, 1, &a, y, 1,
                 (Onnx__AttributeProto *[]){ attr_int(&b, "axis", 1) });
            break;
        case LB_NODE_DROPOUT: y = a; break; /* identity in evaluation */
        case LB_NODE_ADD:
            node(&b, "Add", nd->name, 2,
                 (const char *[]){ a, nd->in[1] < 0 ? x : out[nd->in[1]] }, y, 0, NULL);
            break;
        case LB_NODE_KIND_COUNT: break;
        }
        out[i] = y;
    }
    const char *last = b.oom ? NULL : out[m->n_nodes - 1];
    if (last && strcmp(last, "logits") != 0) /* the model ends in a folded BN or a dropout */
        node(&b, "Identity", "output/identity", 1, &last, "logits", 0, NULL);
    /* 3. graph, model, metadata */
    char qd[200], created[32], num[64], dims[64];
    lb_qlayer_cfg_str(&m->qcfg.deflt, qd, sizeof qd);
    const time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    snprintf(dims, sizeof dims, "%d,%d,%d", m->in_c, m->in_h, m->in_w);
    snprintf(num, sizeof num, "%d", m->n_classes);
    Onnx__StringStringEntryProto *props[8];
    size_t n_props = 0;
    props[n_props++] = meta(&b, "model", m->name);
    if (o->dataset) props[n_props++] = meta(&b, "dataset", o->dataset);
    props[n_props++] = meta(&b, "quant", qd);
    props[n_props++] = meta(&b, "created", created);
    props[n_props++] = meta(&b, "lowbit", "0.1.0");
    props[n_props++] = meta(&b, "input", dims);
    props[n_props++] = meta(&b, "classes", num);
    char acc[32];
    if (o->test_acc >= 0) {
        snprintf(acc, sizeof acc, "%.6f", o->test_acc);
        props[n_props++] = meta(&b, "test_acc", acc);
    }
    Onnx__StringStringEntryProto **pp = balloc(&b, sizeof props);
    Onnx__ValueInfoProto **gin = balloc(&b, sizeof *gin), **gout = balloc(&b, sizeof *gout);
    Onnx__GraphProto *graph = balloc(&b, sizeof *graph);
    Onnx__OperatorSetIdProto *opset = balloc(&b, sizeof *opset);
    Onnx__OperatorSetIdProto **opsets = balloc(&b, sizeof *opsets);
    char *gname = bstr(&b, "%s", m->name), *domain = bstr(&b, "%s", ""),
         *producer = bstr(&b, "lowbit"), *version = bstr(&b, "0.1.0"),
         *doc = bstr(&b, "%s quantized by lowbit (%s). Input: raw uint8 pixels [N, %s] (NCHW), "
                         "normalised inside the graph; output: float logits [N, %d].",
                     m->name, qd, dims, m->n_classes);
    if (gin) gin[0] = value_info(&b, "pixels", DT_UINT8, 4, in_dims);
    if (gout) gout[0] = value_info(&b, "logits", DT_FLOAT, 2, 
                                   (const int64_t[]){ -1, m->n_classes });
    for (size_t k = 0; pp && k < n_props; k++) b.oom |= !(pp[k] = props[k]);
    if (b.oom || !gin[0] || !gout[0] || !gname || !domain || !producer || !version || !doc) {
        st = lb_errorf(err, LB_ERR_NOMEM, "export: out of memory");
        goto done;
    }
    onnx__graph_proto__init(graph);
    graph->name = gname;
    graph->n_node = b.n_node;
    graph->node = b.node;
    graph->n_initializer = b.n_init;
    graph->initializer = b.init;
    graph->n_input = 1;
    graph->input = gin;
    graph->n_output = 1;
    graph->output = gout;
    onnx__operator_set_id_proto__init(opset);
    opset->domain = domain;
    opset->has_version = 1;
    opset->version = LB_ONNX_OPSET;
    opsets[0] = opset;
    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = LB_ONNX_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = producer;
    model.producer_version = version;
    model.doc_string = doc;
    model.graph = graph;
    model.n_metadata_props = n_props;
    model.metadata_props = pp;
    const size_t n = onnx__model_proto__get_packed_size(&model);
    if (!(*file = malloc(n ? n : 1))) {
        st = lb_errorf(err, LB_ERR_NOMEM, "export: out of memory for %zu bytes", n);
        goto done;
    }
    *size = onnx__model_proto__pack(&model, *file);
done:
    free(sc.q);
    free(sc.s);
    free(sc.f);
    lb_arena_free(&b.a);
    return st;
}

lb_status lb_export_onnx_file(lb_model *m, const lb_export_opts *o, const char *path,
                              size_t *size, lb_error *err)
{
    uint8_t *file;
    lb_status st = lb_export_onnx(m, o, &file, size, err);
    if (st) return st;
    st = lb__export_write_file(path, file, *size, err);
    free(file);
    return st;
}
