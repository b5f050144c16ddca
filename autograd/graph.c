/* graph.c: tape, sticky errors and the reverse pass. */
#include "autograd/graph.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A released gradient buffer, kept for reuse within the step; the header lives in the buffer. */
typedef struct grad_block {
    struct grad_block *next;
    size_t             bytes;
} grad_block;

struct lb_graph {
    lb_arena   arena;
    grad_block *free_grads; /* gradient buffers released during this backward pass */
    lb_tensor *tape;       /* last recorded node; earlier ones via tape_prev */
    bool       training;
    bool       grad_enabled;
    lb_error   err;        /* sticky: err.status != LB_OK once anything failed */
};

lb_graph *lb_graph_new(size_t cap_bytes)
{
    lb_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    lb_arena_init(&g->arena, cap_bytes);
    g->training = true;
    g->grad_enabled = true;
    return g;
}

void lb_graph_free(lb_graph *g)
{
    if (!g) return;
    lb_arena_free(&g->arena);
    free(g);
}

void lb_graph_reset(lb_graph *g)
{
    lb_arena_reset(&g->arena);
    g->tape = NULL;
    g->free_grads = NULL;
    g->err.status = LB_OK;
    g->err.msg[0] = 0;
}

void lb_graph_set_training(lb_graph *g, bool training) { g->training = training; }
bool lb_graph_is_training(const lb_graph *g) { return g->training; }
void lb_graph_set_grad_enabled(lb_graph *g, bool on) { g->grad_enabled = on; }
bool lb_graph_grad_enabled(const lb_graph *g) { return g->grad_enabled; }
bool lb_graph_ok(const lb_graph *g) { return g && g->err.status == LB_OK; }
const lb_arena *lb_graph_arena(const lb_graph *g) { return &g->arena; }

lb_status lb_graph_status(const lb_graph *g, lb_error *err)
{
    if (err && g->err.status != LB_OK) *err = g->err;
    return g->err.status;
}

void *lb_graph_fail(lb_graph *g, lb_status s, const char *fmt, ...)
{
    if (g->err.status != LB_OK) return NULL; /* keep the first, root-cause error */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err.msg, sizeof g->err.msg, fmt, ap);
    va_end(ap);
    g->err.status = s;
    return NULL;
}

void *lb_graph_alloc(lb_graph *g, size_t bytes)
{
    void *p = lb_arena_alloc(&g->arena, bytes ? bytes : 1);
    if (!p)
        return lb_graph_fail(g, LB_ERR_NOMEM,
                             "graph arena exhausted: %zu bytes requested, %zu in use, cap %zu "
                             "(hint: lower the batch size)",
                             bytes, g->arena.used, g->arena.cap);
    return p;
}

void *lb_graph_calloc(lb_graph *g, size_t bytes)
{
    void *p = lb_graph_alloc(g, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static lb_tensor *new_node_data(lb_graph *g, const int64_t *shape, int n_dims, float *alias);

static lb_tensor *new_node(lb_graph *g, const int64_t *shape, int n_dims)
{
    return new_node_data(g, shape, n_dims, NULL);
}

/* A tensor node; its data is alias when non-NULL, else fresh arena memory. */
static lb_tensor *new_node_data(lb_graph *g, const int64_t *shape, int n_dims, float *alias)
{
    if (n_dims < 0 || n_dims > LB_MAX_DIMS)
        return lb_graph_fail(g, LB_ERR_SHAPE, "tensor with %d dims (max %d)", n_dims, LB_MAX_DIMS);
    int64_t n = lb_shape_numel(shape, n_dims);
    if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(float))
        return lb_graph_fail(g, LB_ERR_SHAPE, "tensor shape overflows");
    lb_tensor *t = lb_graph_calloc(g, sizeof *t);
    if (!t) return NULL;
    t->data = alias ? alias : lb_graph_alloc(g, (size_t)n * sizeof(float));
    if (!t->data) return NULL;
    memcpy(t->shape, shape, (size_t)n_dims * sizeof *shape);
    t->n_dims = n_dims;
    return t;
}

lb_tensor *lb_leaf(lb_graph *g, const int64_t *shape, int n_dims, bool requires_grad)
{
    if (!lb_graph_ok(g)) return NULL;
    lb_tensor *t = new_node(g, shape, n_dims);
    if (!t) return NULL;
    t->requires_grad = requires_grad && g->grad_enabled;
    t->tape_prev = g->tape;
    g->tape = t;
    return t;
}

lb_tensor *lb_leaf_from(lb_graph *g, const float *data, const int64_t *shape, int n_dims,
                        bool requires_grad)
{
    lb_tensor *t = lb_leaf(g, shape, n_dims, requires_grad);
    if (t) memcpy(t->data, data, (size_t)lb_numel(t) * sizeof(float));
    return t;
}

lb_tensor *lb_param(lb_graph *g, lb_tensor *p)
{
    (void)g; /* parameters live in lb_params; they are leaves and need no tape entry */
    return p;
}

static lb_tensor *record(lb_graph *g, const lb_op_def *def, const int64_t *shape, int n_dims,
                         lb_tensor *const *src, int n_src, void *saved, float *alias)
{
    if (!lb_graph_ok(g)) return NULL;
    LB_ASSERT(n_src >= 0 && n_src <= LB_MAX_SRC);
    lb_tensor *y = new_node_data(g, shape, n_dims, alias);
    if (!y) return NULL;
    y->op = def;
    y->saved = saved;
    for (int i = 0; i < n_src; i++) {
        LB_ASSERT(src[i] != NULL);
        y->src[i] = src[i];
        if (src[i]->requires_grad) y->requires_grad = g->grad_enabled;
    }
    snprintf(y->name, sizeof y->name, "%s", def->name);
    def->forward(y);
    y->tape_prev = g->tape;
    g->tape = y;
    return y;
}

lb_tensor *lb_graph_record(lb_graph *g, const lb_op_def *def, const int64_t *shape, int n_dims,
                           lb_tensor *const *src, int n_src, void *saved)
{
    return record(g, def, shape, n_dims, src, n_src, saved, NULL);
}

lb_tensor *lb_graph_record_inplace(lb_graph *g, const lb_op_def *def, lb_tensor *const *src,
                                   int n_src, void *saved)
{
    LB_ASSERT(n_src >= 1 && src[0] != NULL);
    return record(g, def, src[0]->shape, src[0]->n_dims, src, n_src, saved, src[0]->data);
}

/* A gradient buffer for n floats, zeroed unless the caller will overwrite it: the smallest
 * released one that fits, else new arena memory. Buffers are multiples of 64 bytes, so a
 * released one can hold its header. */
static float *grad_get(lb_graph *g, int64_t n, bool zero)
{
    const size_t bytes = ((size_t)n * sizeof(float) + 63) & ~(size_t)63;
    grad_block **best = NULL;
    for (grad_block **b = &g->free_grads; *b; b = &(*b)->next)
        if ((*b)->bytes >= bytes && (!best || (*b)->bytes < (*best)->bytes)) best = b;
    void *p;
    if (best) {
        p = *best;
        *best = (*best)->next;
    } else {
        p = lb_graph_alloc(g, bytes);
        if (!p) return NULL;
    }
    if (zero) memset(p, 0, bytes);
    return p;
}

bool lb_grad_take(lb_tensor *y, lb_tensor *x)
{
    if (!x->grad || !x->grad_fresh || lb_numel(y) < 1024 || lb_numel(x) != lb_numel(y))
        return false;
    float *t = x->grad;
    x->grad = y->grad;
    y->grad = t;
    return true;
}

static void grad_put(lb_graph *g, lb_tensor *t)
{
    grad_block *b = (grad_block *)(void *)t->grad;
    b->bytes = ((size_t)lb_numel(t) * sizeof(float) + 63) & ~(size_t)63;
    b->next = g->free_grads;
    g->free_grads = b;
    t->grad = NULL;
}

lb_status lb_backward(lb_graph *g, lb_tensor *loss, lb_error *err)
{
    if (!loss || !lb_graph_ok(g)) {
        if (g->err.status != LB_OK) return lb_graph_status(g, err);
        return lb_errorf(err, LB_ERR_ARG, "backward: no loss tensor");
    }
    if (lb_numel(loss) != 1)
        return lb_errorf(err, LB_ERR_SHAPE, "backward: loss must be a scalar, has %lld elements",
                         (long long)lb_numel(loss));
    if (!loss->requires_grad)
        return lb_errorf(err, LB_ERR_ARG, "backward: loss does not depend on any parameter");
    /* Gradients of op outputs live only while needed: a node's buffer is taken (zeroed) just
     * before the first consumer's backward adds into it and released right after the node's
     * own backward, for the next one to reuse; so the pass holds a few gradients at a time,
     * not one per activation. Leaves keep theirs (callers read them); parameters own theirs.
     * A node no consumer reached has a zero gradient: its backward is skipped. */
    if (!loss->grad && !(loss->grad = grad_get(g, 1, true))) return lb_graph_status(g, err);
    loss->grad[0] += 1.0f;
    for (lb_tensor *t = g->tape; t; t = t->tape_prev) {
        if (!t->op || !t->requires_grad || !t->grad) continue;
        for (int i = 0; i < LB_MAX_SRC; i++) {
            lb_tensor *s = t->src[i];
            if (!s || !s->requires_grad || s->grad) continue;
            /* the op overwrites s's fresh gradient, unless s is also another of its operands */
            bool write = s->op && (t->op->overwrite >> i & 1u);
            for (int k = 0; k < LB_MAX_SRC && write; k++) write = k == i || t->src[k] != s;
            s->grad = s->op ? grad_get(g, lb_numel(s), !write)
                            : lb_graph_calloc(g, (size_t)lb_numel(s) * sizeof(float));
            if (!s->grad) return lb_graph_status(g, err);
            s->grad_fresh = write;
        }
        t->op->backward(t);
        for (int i = 0; i < LB_MAX_SRC; i++)
            if (t->src[i]) t->src[i]->grad_fresh = false;
        if (t != loss) grad_put(g, t);
    }
    return LB_OK;
}
