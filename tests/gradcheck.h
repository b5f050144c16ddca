/* gradcheck.h: finite-difference gradient check, reusable by every test binary (KANN's
 * kad_check_grad as a routine).
 *
 * A case names its inputs' shapes and a build function that applies the op under test to
 * leaves holding those inputs. The harness reduces the op's output to a scalar with fixed
 * random weights (loss = sum(y * r)), runs lb_backward, then perturbs every input element by
 * +-eps (central differences, the loss accumulated in double) and reports the worst error
 * |analytic - numeric| / max(1, |analytic|, |numeric|).
 *
 *     static lb_tensor *build_relu(lb_graph *g, lb_tensor **in) { return lb_relu(g, in[0]); }
 *     gradcheck_case c = { "relu", 1, {{3, 4}}, {2}, build_relu, 1e-3, 1e-3, GC_AWAY_FROM_ZERO };
 *     gradcheck_result r = gradcheck_run(&c, 1234);
 */
#ifndef LB_TESTS_GRADCHECK_H
#define LB_TESTS_GRADCHECK_H

#include <stdint.h>

#include "autograd/ops.h"

#define GC_MAX_IN 4

typedef enum {
    GC_NORMAL = 0,        /* inputs ~ N(0, 1)                                  */
    GC_AWAY_FROM_ZERO,    /* |x| in [0.2, 1.2], random sign: keeps ReLU off its kink */
    GC_POSITIVE,          /* x in [0.5, 1.5]                                   */
} gradcheck_init;

/* Applies the op(s) under test to in[0..n_in); returns the output (any shape) or NULL. */
typedef lb_tensor *(*gradcheck_build)(lb_graph *g, lb_tensor **in);

typedef struct gradcheck_case {
    const char     *name;
    int             n_in;
    int64_t         shapes[GC_MAX_IN][LB_MAX_DIMS];
    int             n_dims[GC_MAX_IN];
    gradcheck_build build;
    double          eps, tol;
    gradcheck_init  init;
    unsigned        no_grad_mask; /* bit i set: input i gets no gradient (e.g. labels) */
} gradcheck_case;

typedef struct gradcheck_result {
    lb_status status;
    char      msg[256];
    double    max_err;
    int       worst_input;
    int64_t   worst_index;
} gradcheck_result;

gradcheck_result gradcheck_run(const gradcheck_case *c, uint64_t seed);

#endif
