/* graph.c: tape, sticky errors and the reverse pass. */
#include "autograd/graph.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A released buffer, kept for reuse within the step; the header lives in the buffer. */
typedef struct grad_block {
    struct grad_block *next;
    size_t             bytes;
} grad_block;

/* Two arenas: tensor data and gradients in `data`, everything else (tensor headers, op-saved
 * data) in `arena`. Kept apart, the outputs of consecutive ops lie side by side, so buffers
 * released during backward merge into runs large enough for the (larger) gradients of the
 * layers nearer the input. */
struct lb_graph {
    lb_arena   arena;
    lb_arena   data;
    grad_block *free_grads; /* released buffers, in address order, adjacent ones merged */
    lb_tensor *tape;       /* last recorded node; earlier ones via tape_prev */
    bool       training;
    bool       grad_enabled;
    bool       release;    /* backward reuses dead activations' buffers for gradients */
    int64_t    recomputed; /* ops run again by lb_backward (lb_graph_recomputed) */
    lb_error   err;        /* sticky: err.status != LB_OK once anything failed */
};

lb_graph *lb_graph_new(size_t cap_bytes)
{
    lb_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    lb_arena_init(&g->arena, cap_bytes);
    lb_arena_init(&g->data, cap_bytes);
    g->training = true;
    g->grad_enabled = true;
    return g;
}

void lb_graph_free(lb_graph *g)
{
    if (!g) return;
    lb_arena_free(&g->arena);
    lb_arena_free(&g->data);
    free(g);
}

void lb_graph_reset(lb_graph *g)
{
    lb_arena_reset(&g->arena);
    lb_arena_reset(&g->data);
    g->tape = NULL;
    g->free_grads = NULL;
    g->recomputed = 0;
    g->err.status = LB_OK;
    g->err.msg[0] = 0;
}

void lb_graph_set_training(lb_graph *g, bool training) { g->training = training; }
bool lb_graph_is_training(const lb_graph *g) { return g->training; }
void lb_graph_set_grad_enabled(lb_graph *g, bool on) { g->grad_enabled = on; }
bool lb_graph_grad_enabled(const lb_graph *g) { return g->grad_enabled; }
void lb_graph_set_release_activations(lb_graph *g, bool on) { g->release = on; }
bool lb_graph_ok(const lb_graph *g) { return g && g->err.status == LB_OK; }
const lb_arena *lb_graph_arena(const lb_graph *g) { return &g->arena; }
const lb_arena *lb_graph_data_arena(const lb_graph *g) { return &g->data; }
int64_t lb_graph_recomputed(const lb_graph *g) { return g->recomputed; }

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

static void *arena_alloc(lb_graph *g, lb_arena *a, size_t bytes)
{
    void *p = lb_arena_alloc(a, bytes ? bytes : 1);
    if (!p)
        return lb_graph_fail(g, LB_ERR_NOMEM,
                             "graph arena exhausted: %zu bytes requested, %zu in use, cap %zu "
                             "(hint: lower the batch size)",
                             bytes, a->used, a->cap);
    return p;
}

void *lb_graph_alloc(lb_graph *g, size_t bytes) { return arena_alloc(g, &g->arena, bytes); }

void *lb_graph_calloc(lb_graph *g, size_t bytes)
{
    void *p = lb_graph_alloc(g, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static lb_tensor *new_node_data(lb_graph *g, const int64_t *shape, int n_dims, float *alias);
static float *data_get(lb_graph *g, int64_t n);

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
    /* own buffers are whole multiples of 64 bytes, so backward can reuse them for gradients */
    t->data = alias ? alias : data_get(g, n);
    if (!t->data) return NULL;
    t->owns_data = !alias;
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

/* A released buffer of at least `bytes` (a multiple of 64), carved from the start of the
 * smallest released run that fits (the rest stays released), or NULL. */
static void *pool_take(lb_graph *g, size_t bytes)
{
    grad_block **best = NULL;
    for (grad_block **b = &g->free_grads; *b; b = &(*b)->next)
        if ((*b)->bytes >= bytes && (!best || (*b)->bytes < (*best)->bytes)) best = b;
    if (!best) return NULL;
    grad_block *b = *best;
    if (b->bytes - bytes >= 64) { /* keep the tail released, in b's place in the order */
        grad_block *rest = (grad_block *)(void *)((char *)b + bytes);
        rest->bytes = b->bytes - bytes;
        rest->next = b->next;
        *best = rest;
    } else {
        *best = b->next;
    }
    return b;
}

/* A data buffer for n floats: released memory when some fits, else new data-arena memory. */
static float *data_get(lb_graph *g, int64_t n)
{
    const size_t bytes = ((size_t)n * sizeof(float) + 63) & ~(size_t)63;
    void *p = pool_take(g, bytes);
    return p ? p : arena_alloc(g, &g->data, bytes);
}

/* A gradient buffer for n floats, zeroed unless the caller will overwrite it. */
static float *grad_get(lb_graph *g, int64_t n, bool zero)
{
    float *p = data_get(g, n);
    if (p && zero) memset(p, 0, ((size_t)n * sizeof(float) + 63) & ~(size_t)63);
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

/* The released run that ends where the data arena's current block ends, if any, goes back to
 * the arena: the next buffer larger than any released run then starts there instead of past
 * it. Buffers are mostly released last-made-first (the backward pass walks the forward pass
 * back), so without this each stage's larger gradients would land above the smaller,
 * released ones of the stage after it. */
static void pool_trim(lb_graph *g)
{
    const char *top = lb_arena_top(&g->data);
    for (grad_block **b = &g->free_grads; *b; b = &(*b)->next) /* (blocks: any address order) */
        if ((char *)*b + (*b)->bytes == top) {
            if (lb_arena_trim(&g->data, *b)) *b = (*b)->next;
            return;
        }
}

/* Releases a data-arena buffer of n floats (a multiple of 64 bytes once rounded up) for
 * grad_get, merging it with released neighbours: the list is kept in address order. Buffers
 * of different arena blocks never touch (each block starts with its header). */
static void pool_insert(lb_graph *g, float *p, int64_t n)
{
    const size_t bytes = ((size_t)n * sizeof(float) + 63) & ~(size_t)63;
    if (bytes < sizeof(grad_block)) return; /* an empty tensor's 1-byte buffer */
    char *c = (char *)p;
    grad_block **at = &g->free_grads, *prev = NULL;
    while (*at && (char *)*at < c) {
        prev = *at;
        at = &(*at)->next;
    }
    grad_block *next = *at;
    if (prev && (char *)prev + prev->bytes == c) { /* extends prev */
        prev->bytes += bytes;
        if (next && c + bytes == (char *)next) {
            prev->bytes += next->bytes;
            prev->next = next->next;
        }
        return;
    }
    grad_block *b = (grad_block *)(void *)c;
    b->bytes = bytes;
    if (next && c + bytes == (char *)next) {
        b->bytes += next->bytes;
        b->next = next->next;
    } else {
        b->next = next;
    }
    *at = b;
}

static void block_put(lb_graph *g, float *p, int64_t n)
{
    pool_insert(g, p, n);
    pool_trim(g);
}

static void grad_put(lb_graph *g, lb_tensor *t)
{
    block_put(g, t->grad, lb_numel(t));
    t->grad = NULL;
}

void lb_graph_discard(lb_graph *g, lb_tensor *t)
{
    if (!g->release || !t || !t->op || !t->owns_data || !t->data) return;
    block_put(g, t->data, lb_numel(t));
    t->data = NULL;
}

void lb_graph_drop(lb_graph *g, lb_tensor *t)
{
    if (!g->release || !t || !t->op || !t->owns_data || !t->data) return;
    lb_graph_discard(g, t);
    t->recompute = true;
}

/* s's op can give its output image by image (lb_op_def.rows): it has rows and its own
 * sources are alive. */
static bool rows_readable(const lb_tensor *s)
{
    if (!s || !s->op || !s->op->rows) return false;
    for (int k = 0; k < LB_MAX_SRC; k++)
        if (s->src[k] && s->src[k]->recompute && !s->src[k]->data) return false;
    return true;
}

/* Brings back the output of s if it was dropped after the forward pass: runs its op's forward
 * again, after its own sources if they were dropped too (a fake-quantized input computed from
 * a dropped batch-norm output). Its other sources are alive: a node's buffer is released only
 * after its own backward, which comes later on the tape than its readers'. */
static bool recompute(lb_graph *g, lb_tensor *s)
{
    if (!s || !s->recompute || s->data) return true;
    for (int k = 0; k < LB_MAX_SRC; k++)
        if (!recompute(g, s->src[k])) return false;
    if (!(s->data = data_get(g, lb_numel(s)))) return false;
    s->op->forward(s);
    g->recomputed++;
    return true;
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
     * A node no consumer reached has a zero gradient: its backward is skipped.
     * With release on, a node's own output buffer joins the pool after its backward too:
     * every reader of it (the node itself, its consumers, in-place aliases of it) is later
     * on the tape and has run already. */
    if (!loss->grad && !(loss->grad = grad_get(g, 1, true))) return lb_graph_status(g, err);
    loss->grad[0] += 1.0f;
    for (lb_tensor *t = g->tape; t; t = t->tape_prev) {
        if (!t->op || !t->requires_grad || !t->grad) continue;
        if (g->release && t->op->out_unused && t != loss && t->owns_data && t->data) {
            block_put(g, t->data, lb_numel(t)); /* its readers have run; its backward does not */
            t->data = NULL;
        }
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
        for (int i = -1; i < LB_MAX_SRC; i++) { /* t or operands dropped after the forward */
            lb_tensor *s = i < 0 ? t : t->src[i];
            if (i < 0 && t->op->out_unused) continue; /* its backward does not read it */
            if (i >= 0 && (t->op->rows_src >> i & 1u) && rows_readable(s))
                continue; /* read image by image (lb_op_def.rows) */
            if (!recompute(g, s)) return lb_graph_status(g, err);
        }
        t->op->backward(t);
        for (int i = 0; i < LB_MAX_SRC; i++)
            if (t->src[i]) t->src[i]->grad_fresh = false;
        if (t != loss) {
            grad_put(g, t);
            if (g->release && t->owns_data && t->data) { /* not discarded */
                block_put(g, t->data, lb_numel(t));
                t->data = NULL; /* a use after release is a crash, not a silent wrong value */
            }
        }
    }
    return LB_OK;
}
