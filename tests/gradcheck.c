/* gradcheck.c: central differences against lb_backward. */
#include "tests/gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const gradcheck_case *c;
    float *x[GC_MAX_IN];   /* input values (host copies, perturbed in place) */
    float *r;              /* fixed random weights of the scalar reduction    */
    int64_t n_out;
} gc_state;

/* Builds the graph from the host inputs; returns the scalar loss node or NULL. */
static lb_tensor *eval(lb_graph *g, gc_state *s, lb_tensor **in, double *loss)
{
    lb_graph_reset(g);
    for (int i = 0; i < s->c->n_in; i++)
        in[i] = lb_leaf_from(g, s->x[i], s->c->shapes[i], s->c->n_dims[i],
                             !(s->c->no_grad_mask & (1u << i)));
    lb_tensor *y = s->c->build(g, in);
    if (!y) return NULL;
    if (!s->r) {
        s->n_out = lb_numel(y);
        s->r = malloc((size_t)s->n_out * sizeof(float));
        lb_rng rr = lb_rng_make(99);
        for (int64_t k = 0; k < s->n_out; k++) s->r[k] = lb_rng_normal(&rr);
    }
    LB_ASSERT(lb_numel(y) == s->n_out);
    double acc = 0.0;
    for (int64_t k = 0; k < s->n_out; k++) acc += (double)y->data[k] * s->r[k];
    *loss = acc;
    lb_tensor *r = lb_leaf_from(g, s->r, y->shape, y->n_dims, false);
    return lb_sum(g, lb_mul(g, y, r));
}

gradcheck_result gradcheck_run(const gradcheck_case *c, uint64_t seed)
{
    gradcheck_result res = { .status = LB_OK };
    gc_state s = { .c = c };
    lb_graph *g = lb_graph_new(0);
    lb_rng rng = lb_rng_make(seed);
    float *analytic[GC_MAX_IN] = { 0 };
    lb_tensor *in[GC_MAX_IN];
    lb_error err = { 0 };

    for (int i = 0; i < c->n_in; i++) {
        int64_t n = lb_shape_numel(c->shapes[i], c->n_dims[i]);
        s.x[i] = malloc((size_t)n * sizeof(float));
        analytic[i] = calloc((size_t)n, sizeof(float));
        for (int64_t k = 0; k < n; k++) {
            float u = lb_rng_uniform(&rng);
            float sign = lb_rng_uniform(&rng) < 0.5f ? -1.0f : 1.0f;
            s.x[i][k] = c->init == GC_NORMAL          ? lb_rng_normal(&rng)
                        : c->init == GC_AWAY_FROM_ZERO ? sign * (0.2f + u)
                                                       : 0.5f + u;
        }
    }
    /* 1. analytic gradients */
    double l0;
    lb_tensor *loss = eval(g, &s, in, &l0);
    if (!loss || lb_backward(g, loss, &err) != LB_OK) {
        lb_graph_status(g, &err);
        res.status = err.status ? err.status : LB_ERR_ARG;
        snprintf(res.msg, sizeof res.msg, "%s: build/backward failed: %.200s", c->name, err.msg);
        goto done;
    }
    for (int i = 0; i < c->n_in; i++)
        if (in[i]->grad)
            memcpy(analytic[i], in[i]->grad, (size_t)lb_numel(in[i]) * sizeof(float));
    /* 2. numeric gradients, one element at a time */
    for (int i = 0; i < c->n_in; i++) {
        if (c->no_grad_mask & (1u << i)) continue;
        int64_t n = lb_shape_numel(c->shapes[i], c->n_dims[i]);
        for (int64_t k = 0; k < n; k++) {
            const float x0 = s.x[i][k];
            double lp, lm;
            s.x[i][k] = x0 + (float)c->eps;
            eval(g, &s, in, &lp);
            s.x[i][k] = x0 - (float)c->eps;
            eval(g, &s, in, &lm);
            s.x[i][k] = x0;
            double num = (lp - lm) / (2.0 * c->eps);
            double a = analytic[i][k];
            double scale = fmax(1.0, fmax(fabs(a), fabs(num)));
            double e = fabs(a - num) / scale;
            if (!(e <= res.max_err)) { /* also catches NaN */
                res.max_err = isnan(e) ? INFINITY : e;
                res.worst_input = i;
                res.worst_index = k;
                snprintf(res.msg, sizeof res.msg, "analytic %.6g numeric %.6g", a, num);
            }
        }
    }
done:
    for (int i = 0; i < c->n_in; i++) {
        free(s.x[i]);
        free(analytic[i]);
    }
    free(s.r);
    lb_graph_free(g);
    return res;
}
