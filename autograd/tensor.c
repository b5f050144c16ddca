/* tensor.c: shape helpers and the flat parameter store. */
#include "autograd/tensor.h"
#include "autograd/simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t lb_shape_numel(const int64_t *shape, int n_dims)
{
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

int64_t lb_numel(const lb_tensor *t)
{
    return lb_shape_numel(t->shape, t->n_dims);
}

bool lb_same_shape(const lb_tensor *a, const lb_tensor *b)
{
    if (a->n_dims != b->n_dims) return false;
    for (int i = 0; i < a->n_dims; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *lb_shape_str(const lb_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->n_dims && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

lb_params *lb_params_new(void)
{
    return calloc(1, sizeof(lb_params));
}

void lb_params_free(lb_params *ps)
{
    if (!ps) return;
    for (int i = 0; i < ps->n; i++) free(ps->t[i]);
    free(ps->t);
    free(ps->flags);
    free(ps->offset);
    free(ps->values);
    free(ps->grads);
    free(ps->m);
    free(ps->v);
    free(ps);
}

lb_tensor *lb_params_add(lb_params *ps, const char *name, const int64_t *shape, int n_dims,
                         unsigned flags, lb_error *err)
{
    if (ps->finalized) {
        lb_errorf(err, LB_ERR_ARG, "parameter %s declared after finalize", name);
        return NULL;
    }
    if (n_dims < 1 || n_dims > LB_MAX_DIMS || lb_shape_numel(shape, n_dims) <= 0) {
        lb_errorf(err, LB_ERR_SHAPE, "parameter %s: invalid shape", name);
        return NULL;
    }
    const int64_t numel = lb_shape_numel(shape, n_dims);
    if (numel > LB_PARAMS_MAX - ps->total) { /* before anything is allocated */
        lb_errorf(err, LB_ERR_ARG, "parameter %s: %lld more values would exceed the limit of "
                  "%lld parameters per model", name, (long long)numel, (long long)LB_PARAMS_MAX);
        return NULL;
    }
    if (strlen(name) >= LB_NAME_LEN) {
        lb_errorf(err, LB_ERR_ARG, "parameter name too long (max %d): %s", LB_NAME_LEN - 1, name);
        return NULL;
    }
    if (lb_params_find(ps, name)) {
        lb_errorf(err, LB_ERR_ARG, "duplicate parameter name %s", name);
        return NULL;
    }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 32;
        lb_tensor **t = realloc(ps->t, (size_t)cap * sizeof *t);
        if (t) ps->t = t;
        unsigned *f = realloc(ps->flags, (size_t)cap * sizeof *f);
        if (f) ps->flags = f;
        int64_t *o = realloc(ps->offset, (size_t)cap * sizeof *o);
        if (o) ps->offset = o;
        if (!t || !f || !o) {
            lb_errorf(err, LB_ERR_NOMEM, "out of memory declaring parameter %s", name);
            return NULL;
        }
        ps->cap = cap;
    }
    lb_tensor *x = calloc(1, sizeof *x);
    if (!x) {
        lb_errorf(err, LB_ERR_NOMEM, "out of memory declaring parameter %s", name);
        return NULL;
    }
    memcpy(x->shape, shape, (size_t)n_dims * sizeof *shape);
    x->n_dims = n_dims;
    x->requires_grad = !(flags & LB_PARAM_BUFFER);
    snprintf(x->name, sizeof x->name, "%s", name);
    ps->t[ps->n] = x;
    ps->flags[ps->n] = flags;
    ps->offset[ps->n] = ps->total;
    ps->total += lb_numel(x);
    ps->n++;
    return x;
}

lb_status lb_params_finalize(lb_params *ps, lb_error *err)
{
    if (ps->finalized) return LB_OK;
    size_t n = (size_t)(ps->total ? ps->total : 1);
    ps->values = calloc(n, sizeof(float));
    ps->grads = calloc(n, sizeof(float));
    if (!ps->values || !ps->grads)
        return lb_errorf(err, LB_ERR_NOMEM, "out of memory for %lld parameters",
                         (long long)ps->total);
    for (int i = 0; i < ps->n; i++) {
        ps->t[i]->data = ps->values + ps->offset[i];
        ps->t[i]->grad = (ps->flags[i] & LB_PARAM_BUFFER) ? NULL : ps->grads + ps->offset[i];
    }
    ps->finalized = true;
    return LB_OK;
}

lb_status lb_params_alloc_moments(lb_params *ps, lb_error *err)
{
    size_t n = (size_t)(ps->total ? ps->total : 1);
    if (!ps->m) ps->m = calloc(n, sizeof(float));
    if (!ps->v) ps->v = calloc(n, sizeof(float));
    if (!ps->m || !ps->v) return lb_errorf(err, LB_ERR_NOMEM, "out of memory for optimizer state");
    return LB_OK;
}

void lb_params_zero_grad(lb_params *ps)
{
    if (ps->grads) memset(ps->grads, 0, (size_t)ps->total * sizeof(float));
}

const lb_tensor *lb_params_tensor_at(const lb_params *ps, int64_t i)
{
    if (i < 0 || i >= ps->total) return NULL;
    for (int k = ps->n - 1; k >= 0; k--)
        if (ps->offset[k] <= i) return ps->t[k];
    return NULL;
}

/* Run on every gradient after every step (train/loop.c's NaN guard): the first pass is a
 * branch-free OR over exponent bits, in the AVX2 clone 8 floats at a time. */
LB_CLONES
int64_t lb_find_nonfinite(const float *x, int64_t n)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) { /* an exponent of all ones is Inf or NaN */
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

lb_tensor *lb_params_find(const lb_params *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->t[i]->name, name) == 0) return ps->t[i];
    return NULL;
}

int64_t lb_params_count(const lb_params *ps)
{
    int64_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (!(ps->flags[i] & LB_PARAM_BUFFER)) n += lb_numel(ps->t[i]);
    return n;
}
