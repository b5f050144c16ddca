/* tensor.h: the tensor struct and the parameter store.
 *
 * A tensor is a shape plus float storage owned by an arena (lb_params or lb_graph). Tensors
 * are never freed one by one; their owner is reset or freed. Row-major, contiguous,
 * shape[0] outermost (PyTorch order, NCHW for images).
 *
 * lb_params holds every parameter of a model in contiguous blocks (llm.c style): values,
 * gradients and optimizer moments, so zero_grad is one memset, an optimizer is a flat loop
 * and a checkpoint is a header plus one write per tensor. Layers declare parameters by name
 * and shape in their _init; lb_params_finalize allocates once and binds the pointers.
 *
 *     lb_params *ps = lb_params_new();
 *     lb_tensor *w = lb_params_add(ps, "fc1.weight", (int64_t[]){256, 784}, 2, 0, &err);
 *     lb_params_finalize(ps, &err);          // now w->data and w->grad are valid
 *     ...
 *     lb_params_free(ps);
 */
#ifndef LB_TENSOR_H
#define LB_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/status.h"

#define LB_MAX_DIMS 4
#define LB_MAX_SRC  6
#define LB_NAME_LEN 48

typedef struct lb_op_def lb_op_def;

typedef struct lb_tensor {
    float            *data;              /* lb_numel floats, arena- or params-owned        */
    float            *grad;              /* same size, or NULL when no gradient is needed */
    int64_t           shape[LB_MAX_DIMS];
    int32_t           n_dims;
    bool              requires_grad;     /* a gradient flows back to this tensor          */
    bool              grad_fresh;        /* backward only: grad is uninitialised and the
                                            running op may write it (see lb_op_def)      */
    bool              owns_data;         /* graph nodes: data is this node's own arena
                                            buffer (not an in-place alias of a source's)  */
    bool              recompute;         /* dropped after the forward pass (lb_graph_drop):
                                            backward runs the op's forward again           */
    const lb_op_def  *op;                /* NULL for leaves (inputs, parameters)          */
    struct lb_tensor *src[LB_MAX_SRC];   /* operands, in op-specific order                */
    void             *saved;             /* op-private data kept for backward (arena)     */
    struct lb_tensor *tape_prev;         /* previous node on the graph's tape             */
    char              name[LB_NAME_LEN];
} lb_tensor;

/* Everything the engine needs to know about one op. Defined static const in the op's own .c
 * file; a node points at it, so there is no global op enum. */
struct lb_op_def {
    const char *name;
    void (*forward)(lb_tensor *y);  /* reads y->src[], y->saved; writes y->data              */
    void (*backward)(lb_tensor *y); /* reads y->grad; does src[i]->grad += ... if non-NULL   */
    /* Bit i set: when src[i]->grad_fresh, backward writes every element of src[i]->grad
     * (= instead of +=), which is then uninitialised memory. lb_backward sets grad_fresh only
     * for the first consumer to reach a tensor, and only if the tensor is not also another of
     * its operands; it saves zeroing the buffer first. 0 (the default): grads arrive zeroed. */
    unsigned overwrite;
    /* Its backward does not read y->data (conv, linear, batch-norm: they read their inputs and
     * saved data): with release on, lb_backward hands y's buffer back before running it, so
     * the buffer can hold the gradients that backward creates. 0 (the default): after. */
    bool out_unused;
    /* Optional: writes image n's part of y (the numel / shape[0] floats at n) into dst, from
     * y's sources and saved data, as the forward pass computed it, bit for bit, changing
     * nothing; safe to call from several threads at once. For an output dropped after the
     * forward pass (lb_graph_drop) whose consumer reads it this way (rows_src). */
    void (*rows)(const lb_tensor *y, int64_t n, float *dst);
    /* Bit i set: backward reads src[i]'s data image by image only, through src[i]->op->rows
     * when src[i] was dropped and its op has rows (src[i]->data is then NULL): lb_backward
     * does not run that op's forward again for it. */
    unsigned rows_src;
};

int64_t lb_numel(const lb_tensor *t);
/* Number of elements of a shape; -1 if a dim is < 0 or the product overflows int64. */
int64_t lb_shape_numel(const int64_t *shape, int n_dims);
bool lb_same_shape(const lb_tensor *a, const lb_tensor *b);
/* Writes "(2, 3, 4)" into buf (always NUL-terminated); returns buf. */
char *lb_shape_str(const lb_tensor *t, char *buf, size_t n);

/* ---- parameter store ---------------------------------------------------------------- */

enum {
    LB_PARAM_BUFFER   = 1u << 0, /* saved in checkpoints but not trained (BN running stats) */
    LB_PARAM_NO_DECAY = 1u << 1, /* excluded from weight decay (biases, BN affine)        */
};

/* Values per lb_params (trainable and buffers): 2^28, 1 GiB per block (values, gradients, and
 * each optimizer moment), far above the models lowbit is for (VGG-16 has 138M). Sizes come
 * from model descriptions and checkpoints, so lb_params_add checks this before any block is
 * allocated and before the running total could overflow. */
#define LB_PARAMS_MAX ((int64_t)1 << 28)

typedef struct lb_params {
    int         n;          /* number of tensors                                        */
    int         cap;
    lb_tensor **t;          /* t[i]: stable handles, valid until lb_params_free         */
    unsigned   *flags;      /* LB_PARAM_* per tensor                                    */
    int64_t    *offset;     /* t[i]->data == values + offset[i]                         */
    int64_t     total;      /* floats over all tensors (trainable and buffers)          */
    float      *values;     /* one block each; NULL before finalize                     */
    float      *grads;      /* gradients (zero for buffers)                             */
    float      *m, *v;      /* optimizer moments, allocated by lb_params_alloc_moments  */
    bool        finalized;
} lb_params;

lb_params *lb_params_new(void);
/* Frees every block and handle; accepts NULL. */
void lb_params_free(lb_params *ps);
/* Declares a tensor. Returns a handle whose data/grad pointers are set by finalize, or NULL
 * with err set (duplicate name, bad shape, more than LB_PARAMS_MAX values in all, already
 * finalized, out of memory). */
lb_tensor *lb_params_add(lb_params *ps, const char *name, const int64_t *shape, int n_dims,
                         unsigned flags, lb_error *err);
/* Allocates values (zeroed) and grads once and binds the handles. */
lb_status lb_params_finalize(lb_params *ps, lb_error *err);
/* Allocates zeroed m and v (idempotent). */
lb_status lb_params_alloc_moments(lb_params *ps, lb_error *err);
/* Zeroes every gradient (one memset). */
void lb_params_zero_grad(lb_params *ps);
/* Tensor by exact name, or NULL. */
lb_tensor *lb_params_find(const lb_params *ps, const char *name);
/* Number of trainable scalars (buffers excluded). */
int64_t lb_params_count(const lb_params *ps);
/* The tensor that holds element i of the blocks (values, grads, m, v share offsets), or NULL
 * when i is outside [0, total). */
const lb_tensor *lb_params_tensor_at(const lb_params *ps, int64_t i);

/* Index of the first NaN or Inf in x[0 .. n), or -1 when every value is finite. The common,
 * all-finite case is one branch-free pass over the bits (it vectorises; about a memory read
 * of the block), so the training loop can check every gradient at every step. */
int64_t lb_find_nonfinite(const float *x, int64_t n);

#endif
