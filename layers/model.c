/* model.c: the layer graph: description parser, shape inference, weight init and forward.
 * The parser is strict: unknown layers or keys, bad numbers and shape mismatches are errors
 * that name the origin and line. It does not know about quantization yet. */
#include "layers/model.h"

#include "autograd/fileio.h"
#include "quant/bn_fold.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[LB_NODE_KIND_COUNT] = {
    [LB_NODE_CONV] = "conv",       [LB_NODE_LINEAR] = "linear",   [LB_NODE_BN] = "bn",
    [LB_NODE_RELU] = "relu",       [LB_NODE_MAXPOOL] = "maxpool", [LB_NODE_AVGPOOL] = "avgpool",
    [LB_NODE_GAP] = "gap",         [LB_NODE_FLATTEN] = "flatten", [LB_NODE_DROPOUT] = "dropout",
    [LB_NODE_ADD] = "add",
};

/* Keys each kind accepts besides name= and in= (space separated). */
static const char *const kind_keys[LB_NODE_KIND_COUNT] = {
    [LB_NODE_CONV] = "out k kh kw stride pad bias",
    [LB_NODE_LINEAR] = "out bias",
    [LB_NODE_BN] = "eps momentum",
    [LB_NODE_RELU] = "",
    [LB_NODE_MAXPOOL] = "k stride pad",
    [LB_NODE_AVGPOOL] = "k stride pad",
    [LB_NODE_GAP] = "",
    [LB_NODE_FLATTEN] = "",
    [LB_NODE_DROPOUT] = "p",
    [LB_NODE_ADD] = "",
};

const char *lb_node_kind_name(lb_node_kind k)
{
    return (k >= 0 && k < LB_NODE_KIND_COUNT) ? kind_names[k] : "?";
}

/* ---- parsing helpers ------------------------------------------------------------------- */

typedef struct {
    const char *origin;
    int         line;
    lb_error   *err;
} pctx;

static lb_status perr(const pctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static lb_status perr(const pctx *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_errorf(p->err, LB_ERR_FORMAT, "%s:%d: %s", p->origin, p->line, msg);
}

static lb_status parse_int(const pctx *p, const char *key, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return perr(p, "%s=%s: expected an integer in [%ld, %ld]", key, s, lo, hi);
    *out = (int)v;
    return LB_OK;
}

static lb_status parse_float(const pctx *p, const char *key, const char *s, float lo, float hi,
                             float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return perr(p, "%s=%s: expected a number in [%g, %g]", key, s, lo, hi);
    *out = v;
    return LB_OK;
}

static bool key_allowed(lb_node_kind k, const char *key)
{
    if (!strcmp(key, "name") || !strcmp(key, "in")) return true;
    const char *list = kind_keys[k];
    size_t n = strlen(key);
    for (const char *s = list; *s;) {
        const char *e = strchr(s, ' ');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && !strncmp(s, key, n)) return true;
        s += len + (e ? 1 : 0);
    }
    return false;
}

static int find_node(const lb_model *m, const char *name)
{
    if (!strcmp(name, "input")) return -1;
    for (int i = m->n_nodes - 1; i >= 0; i--)
        if (!strcmp(m->nodes[i].name, name)) return i;
    return -2;
}

/* Per-sample shape of node i's output, or the model input for i == -1. */
static void node_shape(const lb_model *m, int i, int64_t shape[3], int *n_dims)
{
    if (i < 0) {
        shape[0] = m->in_c;
        shape[1] = m->in_h;
        shape[2] = m->in_w;
        *n_dims = 3;
    } else {
        memcpy(shape, m->nodes[i].shape, sizeof m->nodes[i].shape);
        *n_dims = m->nodes[i].n_dims;
    }
}

#define MAX_TOKENS 16

typedef struct {
    char *key[MAX_TOKENS], *val[MAX_TOKENS];
    int   n;
} kvlist;

static const char *kv_get(const kvlist *kv, const char *key)
{
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->key[i], key)) return kv->val[i];
    return NULL;
}

static lb_status int_opt(const pctx *p, const kvlist *kv, const char *key, long lo, long hi,
                         int def, int *out)
{
    const char *s = kv_get(kv, key);
    *out = def;
    return s ? parse_int(p, key, s, lo, hi, out) : LB_OK;
}

/* Fills node nd (kind, inputs, name already set) from kv: configuration, parameters, shape. */
static lb_status build_node(lb_model *m, lb_node *nd, const kvlist *kv, const pctx *p)
{
    int64_t in[3];
    int in_dims;
    lb_status st = LB_OK;
    node_shape(m, nd->in[0], in, &in_dims);
    lb_error *err = p->err;
    switch (nd->kind) {
    case LB_NODE_CONV: {
        int out, k, kh, kw, stride, pad, bias;
        if (in_dims != 3) return perr(p, "conv needs a (C, H, W) input; got a flat vector");
        if ((st = int_opt(p, kv, "out", 1, 1 << 16, 0, &out)) || (st = int_opt(p, kv, "k", 1, 64, 0, &k)) ||
            (st = int_opt(p, kv, "kh", 1, 64, k, &kh)) || (st = int_opt(p, kv, "kw", 1, 64, k, &kw)) ||
            (st = int_opt(p, kv, "stride", 1, 64, 1, &stride)) ||
            (st = int_opt(p, kv, "pad", 0, 64, 0, &pad)) || (st = int_opt(p, kv, "bias", 0, 1, 1, &bias)))
            return st;
        if (!out) return perr(p, "conv needs out=");
        if (!kh || !kw) return perr(p, "conv needs k= (or kh= and kw=)");
        int64_t ho = lb_conv2d_out_size(in[1], kh, stride, pad);
        int64_t wo = lb_conv2d_out_size(in[2], kw, stride, pad);
        if (ho < 1 || wo < 1)
            return perr(p, "conv kernel %dx%d does not fit a %lldx%lld input with pad %d", kh, kw,
                        (long long)in[1], (long long)in[2], pad);
        if (lb_conv2d_init(&nd->u.conv, m->params, nd->name, (int)in[0], out, kh, kw, stride, pad,
                           bias, err))
            return perr(p, "%s", err ? err->msg : "conv");
        nd->shape[0] = out, nd->shape[1] = ho, nd->shape[2] = wo, nd->n_dims = 3;
        break;
    }
    case LB_NODE_LINEAR: {
        int out, bias;
        if (in_dims != 1) return perr(p, "linear needs a flat input; add a flatten or gap line before it");
        if ((st = int_opt(p, kv, "out", 1, 1 << 24, 0, &out)) || (st = int_opt(p, kv, "bias", 0, 1, 1, &bias)))
            return st;
        if (!out) return perr(p, "linear needs out=");
        if (lb_linear_init(&nd->u.linear, m->params, nd->name, in[0], out, bias, err))
            return perr(p, "%s", err ? err->msg : "linear");
        nd->shape[0] = out, nd->n_dims = 1;
        break;
    }
    case LB_NODE_BN: {
        float eps = 1e-5f, mom = 0.1f;
        const char *s;
        if ((s = kv_get(kv, "eps")) && (st = parse_float(p, "eps", s, 1e-12f, 1.0f, &eps))) return st;
        if ((s = kv_get(kv, "momentum")) && (st = parse_float(p, "momentum", s, 0.0f, 1.0f, &mom)))
            return st;
        if (lb_batchnorm_init(&nd->u.bn, m->params, nd->name, (int)in[0], mom, eps, err))
            return perr(p, "%s", err ? err->msg : "bn");
        memcpy(nd->shape, in, sizeof in), nd->n_dims = in_dims;
        break;
    }
    case LB_NODE_MAXPOOL:
    case LB_NODE_AVGPOOL: {
        lb_pool_cfg *c = &nd->u.pool;
        if (in_dims != 3) return perr(p, "%s needs a (C, H, W) input", kind_names[nd->kind]);
        if ((st = int_opt(p, kv, "k", 1, 64, 0, &c->k))) return st;
        if (!c->k) return perr(p, "%s needs k=", kind_names[nd->kind]);
        if ((st = int_opt(p, kv, "stride", 1, 64, c->k, &c->stride)) ||
            (st = int_opt(p, kv, "pad", 0, 64, 0, &c->pad)))
            return st;
        if (2 * c->pad > c->k) return perr(p, "pad=%d larger than half of k=%d", c->pad, c->k);
        int64_t ho = lb_conv2d_out_size(in[1], c->k, c->stride, c->pad);
        int64_t wo = lb_conv2d_out_size(in[2], c->k, c->stride, c->pad);
        if (ho < 1 || wo < 1)
            return perr(p, "pool window %d does not fit a %lldx%lld input", c->k, (long long)in[1],
                        (long long)in[2]);
        nd->shape[0] = in[0], nd->shape[1] = ho, nd->shape[2] = wo, nd->n_dims = 3;
        break;
    }
    case LB_NODE_GAP:
        if (in_dims != 3) return perr(p, "gap needs a (C, H, W) input");
        nd->shape[0] = in[0], nd->n_dims = 1;
        break;
    case LB_NODE_FLATTEN:
        nd->shape[0] = in_dims == 3 ? in[0] * in[1] * in[2] : in[0], nd->n_dims = 1;
        break;
    case LB_NODE_DROPOUT: {
        const char *s = kv_get(kv, "p");
        nd->u.dropout_p = 0.5f;
        if (s && (st = parse_float(p, "p", s, 0.0f, 0.99f, &nd->u.dropout_p))) return st;
        memcpy(nd->shape, in, sizeof in), nd->n_dims = in_dims;
        break;
    }
    case LB_NODE_RELU:
        memcpy(nd->shape, in, sizeof in), nd->n_dims = in_dims;
        break;
    case LB_NODE_ADD: {
        int64_t b[3];
        int b_dims;
        if (nd->n_in != 2) return perr(p, "add needs in=A,B (two node names)");
        node_shape(m, nd->in[1], b, &b_dims);
        if (b_dims != in_dims || memcmp(b, in, (size_t)in_dims * sizeof *b))
            return perr(p, "add: inputs have different shapes");
        memcpy(nd->shape, in, sizeof in), nd->n_dims = in_dims;
        break;
    }
    case LB_NODE_KIND_COUNT: break;
    }
    /* which outputs are >= 0: activations quantized after them use an unsigned grid */
    const bool in_nonneg = nd->in[0] >= 0 && m->nodes[nd->in[0]].nonneg;
    switch (nd->kind) {
    case LB_NODE_RELU: nd->nonneg = true; break;
    case LB_NODE_MAXPOOL: case LB_NODE_AVGPOOL: case LB_NODE_GAP: case LB_NODE_FLATTEN:
    case LB_NODE_DROPOUT: nd->nonneg = in_nonneg; break;
    case LB_NODE_ADD: nd->nonneg = in_nonneg && nd->in[1] >= 0 && m->nodes[nd->in[1]].nonneg; break;
    default: nd->nonneg = false; break;
    }
    return LB_OK;
}

/* Pairs each conv/linear with a BN that is its only consumer (BN folding candidates). */
static void find_fold_pairs(lb_model *m)
{
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].fold = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        lb_node *nd = &m->nodes[i];
        if (nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) continue;
        int uses = 0, bn = -1;
        for (int j = i + 1; j < m->n_nodes; j++)
            for (int k = 0; k < m->nodes[j].n_in; k++)
                if (m->nodes[j].in[k] == i) {
                    uses++;
                    bn = j;
                }
        if (uses == 1 && m->nodes[bn].kind == LB_NODE_BN && m->nodes[bn].n_in == 1) {
            nd->fold = bn;
            m->nodes[bn].fold = i;
        }
    }
}

int lb_model_fold_bn(lb_model *m)
{
    int pairs = 0;
    m->bn_folded = true;
    for (int i = 0; i < m->n_nodes; i++) {
        lb_node *nd = &m->nodes[i];
        if ((nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) || nd->fold < 0) continue;
        pairs++;
        if (nd->wq.bits && nd->wq.range) nd->wq.range->data[2 * nd->wq.n] = 0.0f; /* re-init */
    }
    return pairs;
}

/* Gives every conv/linear node its weight and input quantizers from qc. */
static lb_status setup_quant(lb_model *m, const lb_qconfig *qc, const char *origin, lb_error *err)
{
    int first = -1, last = -1;
    const char **names = malloc((size_t)m->n_nodes * sizeof *names);
    if (!names) return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", origin);
    for (int i = 0; i < m->n_nodes; i++) {
        names[i] = m->nodes[i].name;
        if (m->nodes[i].kind == LB_NODE_CONV || m->nodes[i].kind == LB_NODE_LINEAR) {
            if (first < 0) first = i;
            last = i;
        }
    }
    lb_status st = lb_qconfig_check_names(qc, names, m->n_nodes, err);
    free(names);
    if (st) return st;
    for (int i = 0; i < m->n_nodes; i++) {
        lb_node *nd = &m->nodes[i];
        if (nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) continue;
        const lb_qlayer_cfg c = lb_qconfig_for(qc, nd->name, i == first, i == last);
        const lb_tensor *w = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
        int64_t in_shape[3];
        int in_dims;
        node_shape(m, nd->in[0], in_shape, &in_dims);
        const bool in_nonneg = nd->in[0] >= 0 && m->nodes[nd->in[0]].nonneg;
        char qname[LB_NAME_LEN + 8];
        snprintf(qname, sizeof qname, "%s.wq", nd->name);
        if ((st = lb_quantizer_init(&nd->wq, m->params, qname, &c, true, w->shape, w->n_dims,
                                    false, err)))
            return st;
        snprintf(qname, sizeof qname, "%s.aq", nd->name);
        if ((st = lb_quantizer_init(&nd->aq, m->params, qname, &c, false, in_shape, in_dims,
                                    in_nonneg, err)))
            return st;
    }
    return LB_OK;
}

/* Splits a line into whitespace-separated tokens (in place). Returns the count. */
static int tokenize(char *line, char **tok, int max)
{
    int n = 0;
    for (char *s = strtok(line, " \t\r"); s; s = strtok(NULL, " \t\r")) {
        if (n == max) return max + 1;
        tok[n++] = s;
    }
    return n;
}

static lb_status parse_line(lb_model *m, char *line, const pctx *p, int *cap, int *counter)
{
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *tok[MAX_TOKENS + 1];
    int nt = tokenize(line, tok, MAX_TOKENS);
    if (nt == 0) return LB_OK;
    if (nt > MAX_TOKENS) return perr(p, "too many fields (max %d)", MAX_TOKENS);
    lb_status st;
    if (!strcmp(tok[0], "model")) {
        if (nt != 2) return perr(p, "model takes one name");
        snprintf(m->name, sizeof m->name, "%s", tok[1]);
        return LB_OK;
    }
    if (!strcmp(tok[0], "input")) {
        if (m->in_c) return perr(p, "input given twice");
        if (m->n_nodes) return perr(p, "input must come before the first layer");
        if (nt != 4) return perr(p, "input takes C H W (three integers)");
        if ((st = parse_int(p, "C", tok[1], 1, 4096, &m->in_c)) ||
            (st = parse_int(p, "H", tok[2], 1, 8192, &m->in_h)) ||
            (st = parse_int(p, "W", tok[3], 1, 8192, &m->in_w)))
            return st;
        return LB_OK;
    }
    int kind = -1;
    for (int k = 0; k < LB_NODE_KIND_COUNT; k++)
        if (!strcmp(tok[0], kind_names[k])) kind = k;
    if (kind < 0)
        return perr(p, "unknown layer '%s' (known: conv linear bn relu maxpool avgpool gap "
                       "flatten dropout add, and input, model)", tok[0]);
    if (!m->in_c) return perr(p, "the description must start with 'input C H W'");
    kvlist kv = { 0 };
    for (int i = 1; i < nt; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i] || !eq[1]) return perr(p, "'%s': expected key=value", tok[i]);
        *eq = 0;
        if (!key_allowed((lb_node_kind)kind, tok[i]))
            return perr(p, "%s: unknown key '%s'", kind_names[kind], tok[i]);
        if (kv_get(&kv, tok[i])) return perr(p, "key '%s' given twice", tok[i]);
        kv.key[kv.n] = tok[i];
        kv.val[kv.n++] = eq + 1;
    }
    if (m->n_nodes == *cap) {
        int nc = *cap ? *cap * 2 : 32;
        lb_node *nn = realloc(m->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return lb_errorf(p->err, LB_ERR_NOMEM, "%s: out of memory", p->origin);
        m->nodes = nn;
        *cap = nc;
    }
    lb_node *nd = &m->nodes[m->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = (lb_node_kind)kind;
    const char *name = kv_get(&kv, "name");
    if (name) {
        if (strlen(name) >= LB_NAME_LEN - 16) return perr(p, "name '%s' too long", name);
        if (find_node(m, name) != -2) return perr(p, "name '%s' already used", name);
        snprintf(nd->name, sizeof nd->name, "%s", name);
    } else {
        snprintf(nd->name, sizeof nd->name, "%s%d", kind_names[kind], ++counter[kind]);
        if (find_node(m, nd->name) != -2) return perr(p, "automatic name '%s' clashes; give name=", nd->name);
    }
    const char *in = kv_get(&kv, "in");
    if (in) {
        char buf[2 * LB_NAME_LEN + 2];
        snprintf(buf, sizeof buf, "%s", in);
        for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
            if (nd->n_in == 2) return perr(p, "in= takes at most two names");
            int idx = find_node(m, s);
            if (idx == -2) return perr(p, "in=%s: no earlier layer has that name", s);
            nd->in[nd->n_in++] = idx;
        }
    } else {
        nd->in[0] = m->n_nodes - 1;
        nd->n_in = 1;
    }
    if (nd->kind != LB_NODE_ADD && nd->n_in != 1) return perr(p, "%s takes one input", kind_names[kind]);
    if ((st = build_node(m, nd, &kv, p))) return st;
    m->n_nodes++;
    return LB_OK;
}

lb_status lb_model_build(const char *spec, const char *origin, const lb_qconfig *qc,
                         lb_model **out, lb_error *err)
{
    *out = NULL;
    lb_model *m = calloc(1, sizeof *m);
    char *text = strdup(spec);
    lb_status st = LB_OK;
    int cap = 0, counter[LB_NODE_KIND_COUNT] = { 0 };
    pctx p = { origin, 0, err };
    if (!m || !text || !(m->params = lb_params_new()) || !(m->spec = strdup(spec))) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", origin);
        goto fail;
    }
    snprintf(m->name, sizeof m->name, "custom");
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        p.line++;
        if ((st = parse_line(m, line, &p, &cap, counter))) goto fail;
    }
    p.line++;
    if (!m->in_c) {
        st = perr(&p, "no 'input C H W' line");
        goto fail;
    }
    if (!m->n_nodes) {
        st = perr(&p, "no layers");
        goto fail;
    }
    const lb_node *last = &m->nodes[m->n_nodes - 1];
    if (last->n_dims != 1) {
        st = perr(&p, "the last layer must give a flat vector of class scores (end with linear)");
        goto fail;
    }
    if (last->shape[0] > (1 << 24)) { /* also keeps n_classes an int */
        st = perr(&p, "the last layer gives %lld class scores (at most %d; end with linear)",
                  (long long)last->shape[0], 1 << 24);
        goto fail;
    }
    m->n_classes = (int)last->shape[0];
    if (lb_model_param_count(m) == 0) { /* training would fail at its first backward pass */
        st = perr(&p, "no layer with trainable parameters (conv, linear or bn)");
        goto fail;
    }
    find_fold_pairs(m);
    m->qcfg = qc ? *qc : lb_qconfig_float();
    if ((st = setup_quant(m, &m->qcfg, origin, err)) ||
        (st = lb_params_finalize(m->params, err))) {
        if (err && strncmp(err->msg, origin, strlen(origin))) { /* name the description */
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            lb_errorf(err, st, "%s: %s", origin, msg);
        }
        goto fail;
    }
    free(text);
    *out = m;
    return LB_OK;
fail:
    free(text);
    lb_model_free(m);
    return st;
}

lb_status lb_model_build_file(const char *path, const lb_qconfig *qc, lb_model **out,
                              lb_error *err)
{
    *out = NULL;
    char *buf;
    lb_status st = lb_read_text_file(path, 1 << 20, "a model description", &buf, err);
    if (st) return st;
    st = lb_model_build(buf, path, qc, out, err);
    free(buf);
    return st;
}

void lb_model_free(lb_model *m)
{
    if (!m) return;
    lb_params_free(m->params);
    free(m->nodes);
    free(m->spec);
    free(m);
}

void lb_model_init_weights(lb_model *m, uint64_t seed)
{
    lb_rng rng = lb_rng_make(seed);
    for (int i = 0; i < m->n_nodes; i++) {
        lb_node *nd = &m->nodes[i];
        if (nd->kind == LB_NODE_CONV) lb_conv2d_reset(&nd->u.conv, &rng);
        else if (nd->kind == LB_NODE_LINEAR) lb_linear_reset(&nd->u.linear, &rng);
        else if (nd->kind == LB_NODE_BN) lb_batchnorm_reset(&nd->u.bn);
    }
}

int64_t lb_node_param_count(const lb_node *n)
{
    switch (n->kind) {
    case LB_NODE_CONV:
        return lb_numel(n->u.conv.weight) + (n->u.conv.bias ? n->u.conv.out_c : 0);
    case LB_NODE_LINEAR:
        return lb_numel(n->u.linear.weight) + (n->u.linear.bias ? n->u.linear.out : 0);
    case LB_NODE_BN: return 2 * (int64_t)n->u.bn.c;
    default: return 0;
    }
}

void lb_model_set_calibration(lb_model *m, lb_calib calib, float pct)
{
    for (int i = 0; i < m->n_nodes; i++) {
        m->nodes[i].aq.calib = calib;
        m->nodes[i].aq.calib_pct = pct;
    }
}

void lb_model_set_observer_freeze(lb_model *m, int64_t steps)
{
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].aq.ema_freeze = steps;
}

int64_t lb_model_param_count(const lb_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_nodes; i++) n += lb_node_param_count(&m->nodes[i]);
    return n;
}

/* Whether node src's output may be overwritten by its one consumer (an in-place relu or
 * add): nothing else reads it, and its own op's backward does not read its output (conv and
 * linear with their bias, BN, add; a folded BN passes its conv's output through). */
static bool overwritable(const lb_model *m, const int *users, int src)
{
    if (m->no_inplace || src < 0 || users[src] != 1) return false; /* the input is the caller's */
    const lb_node_kind k = m->nodes[src].kind;
    return k == LB_NODE_CONV || k == LB_NODE_LINEAR || k == LB_NODE_BN || k == LB_NODE_ADD;
}

/* Whether conv node i is followed by a 2x2 stride-2 max pooling (no padding) that alone reads
 * it, directly (1) or through a ReLU that alone reads it (2): lb_conv2d_maxpool2 then pools the
 * convolution's output itself (and the ReLU, moved after the pooling, runs in place on a
 * quarter of the elements); 0 otherwise, and always with no_inplace. */
static int conv_pool_next(const lb_model *m, const int *users, int i)
{
    if (m->no_inplace || users[i] != 1 || i + 1 >= m->n_nodes) return 0;
    int k = i + 1;
    if (m->nodes[k].kind == LB_NODE_RELU) {
        if (m->nodes[k].in[0] != i || users[k] != 1 || k + 1 >= m->n_nodes) return 0;
        k++;
    }
    const lb_node *pn = &m->nodes[k];
    if (pn->kind != LB_NODE_MAXPOOL || pn->in[0] != k - 1 || pn->u.pool.k != 2
        || pn->u.pool.stride != 2 || pn->u.pool.pad != 0)
        return 0;
    return k - i;
}

/* Whether BN node i ends a residual block: it is the first operand of an add that alone
 * reads it, whose only reader is the ReLU right after the add. lb_batchnorm_add_relu then
 * makes all three at the add (whose other operand, a shortcut's batch-norm, may come after
 * node i); false otherwise, and always with no_inplace or when the BN is folded. */
static bool bn_add_relu_next(const lb_model *m, const int *users, int i)
{
    if (m->no_inplace || users[i] != 1 || (m->bn_folded && m->nodes[i].fold >= 0)) return false;
    for (int j = i + 1; j + 1 < m->n_nodes; j++) {
        const lb_node *a = &m->nodes[j];
        if (a->kind != LB_NODE_ADD || (a->in[0] != i && a->in[1] != i)) continue;
        return a->in[0] == i && a->in[1] != i && users[j] == 1
               && m->nodes[j + 1].kind == LB_NODE_RELU && m->nodes[j + 1].in[0] == j;
    }
    return false;
}

lb_tensor *lb_model_forward(lb_model *m, lb_graph *g, lb_tensor *x, lb_rng *rng)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    if (x->n_dims != 4 || x->shape[1] != m->in_c || x->shape[2] != m->in_h || x->shape[3] != m->in_w) {
        char s[64];
        return lb_graph_fail(g, LB_ERR_SHAPE, "model %s: input %s, expected (B, %d, %d, %d)", m->name,
                             lb_shape_str(x, s, sizeof s), m->in_c, m->in_h, m->in_w);
    }
    lb_tensor **outs = lb_graph_alloc(g, (size_t)m->n_nodes * sizeof *outs);
    if (!outs) return NULL;
    const lb_qmode mode = lb_graph_is_training(g) ? LB_QMODE_TRAIN
                          : m->calibrating        ? LB_QMODE_CALIB
                                                  : LB_QMODE_EVAL;
    /* consumers of each node: a relu may overwrite an input that only it reads */
    int *users = lb_graph_calloc(g, (size_t)m->n_nodes * sizeof *users);
    /* nodes whose output is a fused BN-ReLU's (whose backward needs only its bit mask) */
    bool *bnrelu = lb_graph_calloc(g, (size_t)m->n_nodes * sizeof *bnrelu);
    /* BN nodes left for their add (bn_add_relu_next): no output until then */
    bool *bnadd = lb_graph_calloc(g, (size_t)m->n_nodes * sizeof *bnadd);
    if (!users || !bnrelu || !bnadd) return NULL;
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_in; k++)
            if (m->nodes[i].in[k] >= 0) users[m->nodes[i].in[k]]++;
    lb_tensor *y = NULL;
    for (int i = 0; i < m->n_nodes; i++) {
        lb_node *nd = &m->nodes[i];
        lb_tensor *a = nd->in[0] < 0 ? x : outs[nd->in[0]];
        switch (nd->kind) {
        case LB_NODE_CONV:
        case LB_NODE_LINEAR: {
            const bool conv = nd->kind == LB_NODE_CONV;
            lb_tensor *w = conv ? nd->u.conv.weight : nd->u.linear.weight;
            lb_tensor *b = conv ? nd->u.conv.bias : nd->u.linear.bias;
            if (m->bn_folded && nd->fold >= 0) { /* w_f, b_f from the frozen BN statistics */
                const lb_batchnorm_layer *bn = &m->nodes[nd->fold].u.bn;
                w = lb_fold_weight(g, w, bn->gamma, bn->running_var, bn->eps);
                b = lb_fold_bias(g, b, bn->gamma, bn->beta, bn->running_mean, bn->running_var,
                                 bn->eps);
            }
            w = lb_quantizer_forward(&nd->wq, g, w, mode);
            lb_tensor *xq = lb_quantizer_forward(&nd->aq, g, a, mode);
            const int np = conv ? conv_pool_next(m, users, i) : 0;
            if (np) { /* conv [relu] maxpool: the pooling node takes the result */
                y = lb_conv2d_maxpool2(g, xq, w, b, nd->u.conv.stride, nd->u.conv.pad);
                if (y && np == 2) y = lb_relu_inplace(g, y);
                if (y && xq != a) lb_graph_drop(g, xq);
                if (!y) return NULL;
                for (int k = 0; k < np; k++) outs[i++] = y;
                break;
            }
            if (conv) {
                y = lb_conv2d(g, xq, w, b, nd->u.conv.stride, nd->u.conv.pad);
            } else {
                y = lb_matmul_nt(g, xq, w);
                if (y && b) y = lb_add_bias(g, y, b);
            }
            /* the fake-quantized input has no other reader: recomputed if backward needs it */
            if (y && xq != a) lb_graph_drop(g, xq);
            /* so has a fused BN-ReLU output read only by this layer: recomputed from the BN's
             * input and statistics (one elementwise pass) rather than held through the
             * forward pass (a quarter to a half of a CNN's activations) */
            if (y && nd->in[0] >= 0 && bnrelu[nd->in[0]] && users[nd->in[0]] == 1)
                lb_graph_drop(g, a);
            break;
        }
        case LB_NODE_BN:
            if (m->bn_folded && nd->fold >= 0) {
                y = a;
            } else if (bn_add_relu_next(m, users, i)) {
                bnadd[i] = true; /* made by its add, with the add and the ReLU after it */
                outs[i] = NULL;
                continue;
            } else if (!m->no_inplace && users[i] == 1 && i + 1 < m->n_nodes
                       && m->nodes[i + 1].kind == LB_NODE_RELU && m->nodes[i + 1].in[0] == i) {
                /* BN then ReLU, its only reader: one op, the ReLU node takes its output */
                const lb_batchnorm_layer *bn = &nd->u.bn;
                y = lb_batchnorm_relu(g, a, bn->gamma, bn->beta, bn->running_mean,
                                      bn->running_var, bn->momentum, bn->eps);
                if (!y) return NULL;
                outs[i] = y;
                bnrelu[i] = bnrelu[i + 1] = true;
                i++;
            } else {
                y = lb_batchnorm_forward(&nd->u.bn, g, a);
            }
            break;
        case LB_NODE_RELU:
            if (!m->no_inplace && users[i] == 1 && i + 1 < m->n_nodes
                && m->nodes[i + 1].kind == LB_NODE_MAXPOOL
                && m->nodes[i + 1].in[0] == i && m->nodes[i + 1].u.pool.pad == 0) {
                /* ReLU then a max pooling, its only reader: pooled first, then the ReLU on a
                 * quarter of the elements (2x2). The same values and gradients: ReLU is
                 * monotone, so the max of ReLUs is the ReLU of the max, from the same window
                 * cell; where a window's max is <= 0 both give 0 and no gradient. (Not for
                 * NaNs: a NaN wins a pooling window, and ReLU makes it 0 either way, so a
                 * window holding one gives 0 here and the max of its other cells in the
                 * other order; neither passes the NaN on.)
                 * The ReLU node takes the result. */
                const lb_node *pn = &m->nodes[i + 1];
                y = lb_maxpool2d(g, a, pn->u.pool.k, pn->u.pool.stride, 0);
                if (y) y = lb_relu_inplace(g, y);
                if (!y) return NULL;
                outs[i++] = y;
                break;
            }
            y = overwritable(m, users, nd->in[0]) ? lb_relu_inplace(g, a) : lb_relu(g, a);
            break;
        case LB_NODE_MAXPOOL:
            y = lb_maxpool2d(g, a, nd->u.pool.k, nd->u.pool.stride, nd->u.pool.pad);
            /* a BN-ReLU output only this pooling reads: neither backward needs it */
            if (y && nd->in[0] >= 0 && users[nd->in[0]] == 1 && bnrelu[nd->in[0]])
                lb_graph_discard(g, a);
            break;
        case LB_NODE_AVGPOOL:
            y = lb_avgpool2d(g, a, nd->u.pool.k, nd->u.pool.stride, nd->u.pool.pad);
            break;
        case LB_NODE_GAP: y = lb_global_avgpool(g, a); break;
        case LB_NODE_FLATTEN: y = lb_flatten(g, a); break;
        case LB_NODE_DROPOUT: y = lb_dropout(g, a, nd->u.dropout_p, rng); break;
        case LB_NODE_ADD: {
            lb_tensor *b = nd->in[1] < 0 ? x : outs[nd->in[1]];
            if (nd->in[0] >= 0 && bnadd[nd->in[0]]) { /* relu(bn(.) + b): one op, see above */
                const lb_node *bn_nd = &m->nodes[nd->in[0]];
                const lb_batchnorm_layer *bn = &bn_nd->u.bn;
                y = lb_batchnorm_add_relu(g, bn_nd->in[0] < 0 ? x : outs[bn_nd->in[0]], b,
                                          bn->gamma, bn->beta, bn->running_mean,
                                          bn->running_var, bn->momentum, bn->eps);
                if (!y) return NULL;
                outs[i++] = y; /* the ReLU node takes it */
            } else if (overwritable(m, users, nd->in[0]) && nd->in[1] != nd->in[0]) {
                y = lb_add_inplace(g, a, b);
            } else if (overwritable(m, users, nd->in[1]) && nd->in[1] != nd->in[0]) {
                y = lb_add_inplace(g, b, a);
            } else {
                y = lb_add(g, a, b);
            }
            break;
        }
        case LB_NODE_KIND_COUNT: y = NULL; break;
        }
        if (!y) return NULL;
        outs[i] = y;
    }
    return y;
}

int lb_model_copy_params(lb_model *dst, const lb_model *src)
{
    int copied = 0;
    for (int i = 0; i < dst->params->n; i++) {
        lb_tensor *d = dst->params->t[i];
        const lb_tensor *s = lb_params_find(src->params, d->name);
        if (!s || !lb_same_shape(s, d)) continue;
        memcpy(d->data, s->data, (size_t)lb_numel(d) * sizeof(float));
        copied++;
    }
    return copied;
}

void lb_model_weight_bytes(const lb_model *m, int64_t *quant_bytes, int64_t *fp32_bytes)
{
    int64_t qb = 0, fb = 0; /* bits, then bytes */
    for (int i = 0; i < m->n_nodes; i++) {
        const lb_node *nd = &m->nodes[i];
        const int64_t pc = lb_node_param_count(nd);
        fb += pc * 32;
        if (nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) {
            qb += pc * 32; /* batch-norm stays float */
            continue;
        }
        const lb_tensor *w = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
        const int64_t nw = lb_numel(w);
        qb += nw * (nd->wq.bits ? nd->wq.bits : 32) + (pc - nw) * 32; /* biases stay float */
        qb += 8 * lb_quantizer_scale_bytes(&nd->wq);
    }
    *quant_bytes = (qb + 7) / 8;
    *fp32_bytes = fb / 8;
}
