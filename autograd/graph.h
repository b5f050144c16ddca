/* graph.h: the eager tape in a per-step arena.
 *
 * An op constructor validates its inputs, allocates its output in the graph's arena, runs
 * the forward kernel at once and appends the node to the tape. lb_backward walks the tape
 * in reverse (recording order is a topological order). lb_graph_reset forgets every node
 * and reuses the memory, so a steady-state training step does no malloc.
 *
 * Errors are sticky: the first failing constructor records a message and returns NULL,
 * every later constructor given NULL or a failed graph returns NULL at once, and the
 * caller checks lb_graph_status once at the end of the forward pass.
 *
 *     lb_graph *g = lb_graph_new(0);
 *     for (each step) {
 *         lb_graph_reset(g);
 *         lb_tensor *x = lb_leaf_from(g, batch, (int64_t[]){B, 784}, 2, false);
 *         lb_tensor *loss = lb_softmax_ce(g, lb_matmul_nt(g, x, w), labels);
 *         if (lb_graph_status(g, &err) != LB_OK || lb_backward(g, loss, &err) != LB_OK) ...
 *     }
 *     lb_graph_free(g);
 */
#ifndef LB_GRAPH_H
#define LB_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "autograd/arena.h"
#include "autograd/status.h"
#include "autograd/tensor.h"

typedef struct lb_graph lb_graph;

/* cap_bytes bounds each of the graph's two arenas (0: 8 GiB). Returns NULL only when malloc
 * fails. */
lb_graph *lb_graph_new(size_t cap_bytes);
void lb_graph_free(lb_graph *g);
/* Forgets the tape, the arena contents and any sticky error; keeps mode flags. */
void lb_graph_reset(lb_graph *g);

/* Training mode: batch-norm uses batch statistics and updates running ones, dropout drops.
 * Default: true. */
void lb_graph_set_training(lb_graph *g, bool training);
bool lb_graph_is_training(const lb_graph *g);
/* With gradients disabled no node requires a gradient (evaluation). Default: true. */
void lb_graph_set_grad_enabled(lb_graph *g, bool on);
bool lb_graph_grad_enabled(const lb_graph *g);
/* With release on, lb_backward reuses each node's output buffer for later gradients once the
 * node's backward has run (PyTorch frees saved tensors the same way), so a training step
 * needs little memory beyond its forward pass. Op outputs then have data == NULL after
 * lb_backward: read the logits (accuracy) before it. The loss keeps its value. Default: off. */
void lb_graph_set_release_activations(lb_graph *g, bool on);
/* With release on: t's readers have all run their forward, so its buffer is released now
 * for the rest of the forward pass to reuse; if a backward needs t, lb_backward runs t's op
 * forward again first (into fresh memory), after t's own sources if they were dropped too.
 * Only for a node whose op forward is pure (reads its sources and saved data, writes its
 * output) and cheap, such as a fake-quantized activation feeding one conv, or a
 * batch-norm (its second run reuses the first one's statistics and leaves the running ones).
 * Without release, or for a leaf or an in-place alias: no-op. */
void lb_graph_drop(lb_graph *g, lb_tensor *t);
/* With release on: t's buffer is released now, for good. Only when no later forward and no
 * backward reads t's data (the caller knows the graph: a batchnorm_relu output whose one
 * reader is a max pooling, whose backward reads its winners, not its input, while
 * batchnorm_relu's own backward reads its bit mask). Otherwise a no-op, as lb_graph_drop. */
void lb_graph_discard(lb_graph *g, lb_tensor *t);

bool lb_graph_ok(const lb_graph *g);
/* Returns the sticky status and copies its message into err. */
lb_status lb_graph_status(const lb_graph *g, lb_error *err);
/* Records the first error (later ones are ignored) and returns NULL for `return lb_graph_fail(...)`. */
void *lb_graph_fail(lb_graph *g, lb_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Arena memory for op-private data; NULL (and a sticky LB_ERR_NOMEM) when exhausted. */
void *lb_graph_alloc(lb_graph *g, size_t bytes);
/* Same, zero-filled. */
void *lb_graph_calloc(lb_graph *g, size_t bytes);
/* The arenas, for statistics (high-water mark, block mallocs): op-private data and tensor
 * headers; tensor data and gradients. */
const lb_arena *lb_graph_arena(const lb_graph *g);
const lb_arena *lb_graph_data_arena(const lb_graph *g);
/* Ops run again by lb_backward since the last reset (outputs dropped after the forward pass
 * and needed again): the compute that lb_graph_drop trades for memory. */
int64_t lb_graph_recomputed(const lb_graph *g);

/* A leaf tensor in the arena with uninitialised data (requires_grad: allocate a gradient). */
lb_tensor *lb_leaf(lb_graph *g, const int64_t *shape, int n_dims, bool requires_grad);
/* A leaf holding a copy of data. */
lb_tensor *lb_leaf_from(lb_graph *g, const float *data, const int64_t *shape, int n_dims,
                        bool requires_grad);
/* Puts a persistent tensor (a parameter) on the tape as a leaf; it is returned as is. */
lb_tensor *lb_param(lb_graph *g, lb_tensor *p);
/* For a backward whose gradient to x is y's gradient itself (add, reshape, bias add): when
 * x's gradient is fresh and the tensors are not tiny (a tiny y may be the loss, whose
 * gradient callers read), swaps the two gradient buffers, since lb_backward releases y's
 * right after, and returns true; otherwise returns false and the op copies or adds. */
bool lb_grad_take(lb_tensor *y, lb_tensor *x);
/* The copy or add that follows when lb_grad_take declines: d[lo, hi) = dy[lo, hi) when fresh,
 * else d[lo, hi) += dy[lo, hi). Inline, so that an op's LB_CLONES part vectorizes it for each
 * target. */
static inline void lb_grad_pass(float *restrict d, const float *restrict dy, int64_t lo,
                                int64_t hi, bool fresh)
{
    if (fresh) memcpy(d + lo, dy + lo, (size_t)(hi - lo) * sizeof(float));
    else
        for (int64_t i = lo; i < hi; i++) d[i] += dy[i];
}

/* For op constructors: allocates the output y of the given shape, links src[0..n_src), sets
 * requires_grad from the sources, runs def->forward(y) and appends y to the tape. */
lb_tensor *lb_graph_record(lb_graph *g, const lb_op_def *def, const int64_t *shape, int n_dims,
                           lb_tensor *const *src, int n_src, void *saved);

/* The same for an op whose output overwrites its first source (same shape and buffer):
 * src[0]'s values are gone once the node is recorded, so only for a src[0] that nothing else
 * reads later, forward or backward (the caller knows the graph; see lb_relu_inplace). */
lb_tensor *lb_graph_record_inplace(lb_graph *g, const lb_op_def *def, lb_tensor *const *src,
                                   int n_src, void *saved);

/* Reverse pass from a scalar loss: seeds dloss = 1 and calls each node's backward in reverse
 * tape order. Parameter gradients accumulate into lb_params' grads (zero them before each
 * step); leaves made with requires_grad get a gradient that stays readable until the next
 * reset. Gradients of op outputs exist only during the pass: each is zeroed when first
 * needed and its buffer reused once that node's backward has run (t->grad is NULL after). */
lb_status lb_backward(lb_graph *g, lb_tensor *loss, lb_error *err);

#endif
