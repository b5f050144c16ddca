/* optim.c: SGD, Adam and AdamW over the flat parameter store.
 *
 * Each update is a flat loop per tensor over ps->values/grads/m/v, written in the same order
 * of float operations as PyTorch 1.13's single-tensor (foreach=False) path, so golden tests
 * against torch.optim agree to float rounding. Scalars that PyTorch computes in Python
 * (bias corrections, step size, 1 - lr*wd) are computed in double here too.
 * Not here: learning-rate schedules (schedule.c), AMSGrad, dampening, gradient clipping.
 */
#include "train/optim.h"

#include "autograd/parallel.h"
#include "autograd/simd.h"

#include <math.h>
#include <string.h>

#define DEFAULT_BETA1 0.9f
#define DEFAULT_BETA2 0.999f
#define DEFAULT_EPS   1e-8f

static const char *const kind_names[] = {
    [LB_OPTIM_SGD] = "sgd",
    [LB_OPTIM_ADAM] = "adam",
    [LB_OPTIM_ADAMW] = "adamw",
};
#define N_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

/* ---- configuration ------------------------------------------------------------------ */

/* x in [0, 1); false for NaN. */
static bool in_unit_interval(float x)
{
    return x >= 0.0f && x < 1.0f;
}

lb_status lb_optim_init(lb_optim *o, lb_optim_cfg cfg, lb_params *ps, lb_error *err)
{
    LB_ASSERT(o && ps);
    LB_ASSERT(ps->finalized);   /* moments must match the final layout of values/grads */

    /* 0 means "use PyTorch's default" for the Adam hyper-parameters. */
    if (cfg.beta1 == 0.0f) cfg.beta1 = DEFAULT_BETA1;
    if (cfg.beta2 == 0.0f) cfg.beta2 = DEFAULT_BETA2;
    if (cfg.eps == 0.0f) cfg.eps = DEFAULT_EPS;

    if ((int)cfg.kind < 0 || (int)cfg.kind >= N_KINDS)
        return lb_errorf(err, LB_ERR_ARG, "optimizer: kind = %d is not sgd, adam or adamw",
                         (int)cfg.kind);
    if (!in_unit_interval(cfg.momentum))
        return lb_errorf(err, LB_ERR_ARG, "optimizer: momentum = %g is out of range "
                         "(expected 0 <= momentum < 1)", (double)cfg.momentum);
    if (cfg.nesterov && !(cfg.momentum > 0.0f))
        return lb_errorf(err, LB_ERR_ARG, "optimizer: nesterov requires momentum > 0 "
                         "(got momentum = %g)", (double)cfg.momentum);
    if (!(cfg.weight_decay >= 0.0f) || isinf(cfg.weight_decay))
        return lb_errorf(err, LB_ERR_ARG, "optimizer: weight_decay = %g is out of range "
                         "(expected a finite value >= 0)", (double)cfg.weight_decay);
    if (!in_unit_interval(cfg.beta1))
        return lb_errorf(err, LB_ERR_ARG, "optimizer: beta1 = %g is out of range "
                         "(expected 0 <= beta1 < 1; 0 selects 0.9)", (double)cfg.beta1);
    if (!in_unit_interval(cfg.beta2))
        return lb_errorf(err, LB_ERR_ARG, "optimizer: beta2 = %g is out of range "
                         "(expected 0 <= beta2 < 1; 0 selects 0.999)", (double)cfg.beta2);
    if (!(cfg.eps > 0.0f) || isinf(cfg.eps))
        return lb_errorf(err, LB_ERR_ARG, "optimizer: eps = %g is out of range "
                         "(expected a finite value > 0; 0 selects 1e-8)", (double)cfg.eps);

    lb_status st = lb_params_alloc_moments(ps, err);
    if (st != LB_OK) return st;
    o->cfg = cfg;
    o->t = 0;
    return LB_OK;
}

lb_status lb_optim_parse_kind(const char *s, lb_optim_kind *out, lb_error *err)
{
    for (int k = 0; s && k < N_KINDS; k++) {
        if (strcmp(s, kind_names[k]) == 0) {
            *out = (lb_optim_kind)k;
            return LB_OK;
        }
    }
    return lb_errorf(err, LB_ERR_ARG, "unknown optimizer '%s' (expected sgd, adam or adamw)",
                     s ? s : "(null)");
}

const char *lb_optim_kind_name(lb_optim_kind k)
{
    return ((int)k >= 0 && (int)k < N_KINDS) ? kind_names[k] : "unknown";
}

/* ---- updates (one tensor of n floats each) ------------------------------------------ */

/* torch.optim.SGD, dampening 0. buf is ps->m; first says this is the optimizer's first step,
 * where PyTorch creates the buffer as a copy of g. One loop per case, without branches or
 * possible aliasing inside, so that each vectorizes (the AVX2 clone rounds as the baseline:
 * no FMA). */
LB_CLONES
static void sgd_update(float *restrict p, const float *restrict grad, float *restrict buf,
                       int64_t n, float lr, float wd, float mu, bool nesterov, bool first)
{
    /* g = grad + wd*p;  buf = first ? g : mu*buf + g;  g = nesterov ? g + mu*buf : buf;
     * p -= lr*g */
    if (mu == 0.0f) {
        for (int64_t j = 0; j < n; j++) p[j] += -lr * (grad[j] + wd * p[j]);
    } else if (first && nesterov) {
        for (int64_t j = 0; j < n; j++) {
            const float g = grad[j] + wd * p[j];
            buf[j] = g;
            p[j] += -lr * (g + mu * g);
        }
    } else if (first) {
        for (int64_t j = 0; j < n; j++) {
            const float g = grad[j] + wd * p[j];
            buf[j] = g;
            p[j] += -lr * g;
        }
    } else if (nesterov) {
        for (int64_t j = 0; j < n; j++) {
            const float g = grad[j] + wd * p[j], b = mu * buf[j] + g;
            buf[j] = b;
            p[j] += -lr * (g + mu * b);
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            const float b = mu * buf[j] + (grad[j] + wd * p[j]);
            buf[j] = b;
            p[j] += -lr * b;
        }
    }
}

/* torch.optim.Adam's update after any decoupled decay; wd here is the L2 term (0 for AdamW).
 * step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) come from the caller. */
static void adam_update(float *p, const float *grad, float *m, float *v, int64_t n, float wd,
                        float b1, float b2, float eps, float step_size, float bc2_sqrt)
{
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    /* g = grad + wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
     * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
     *    = lr * mhat / (sqrt(vhat) + eps),  mhat = m/(1-b1^t), vhat = v/(1-b2^t) */
    for (int64_t j = 0; j < n; j++) {
        const float g = grad[j] + wd * p[j];
        m[j] = b1 * m[j] + c1 * g;
        v[j] = b2 * v[j] + c2 * (g * g);
        const float denom = sqrtf(v[j]) / bc2_sqrt + eps;
        p[j] += -step_size * (m[j] / denom);
    }
}

/* One update of parameter tensor i's elements [j0, j1). */
typedef struct {
    const lb_optim *o;
    lb_params      *ps;
    int             i;
    float           lr;
    bool            first;
    double          step_size, bc2_sqrt;
} step_job;

static void update_range(const step_job *s, int64_t j0, int64_t j1)
{
    const lb_optim_cfg *c = &s->o->cfg;
    const lb_params *ps = s->ps;
    const int i = s->i;
    const float wd = (ps->flags[i] & LB_PARAM_NO_DECAY) && !c->decay_all ? 0.0f : c->weight_decay;
    const int64_t off = ps->offset[i] + j0, n = j1 - j0;
    float *p = ps->values + off, *g = ps->grads + off, *m = ps->m + off, *v = ps->v + off;
    switch (c->kind) {
    case LB_OPTIM_SGD:
        sgd_update(p, g, m, n, s->lr, wd, c->momentum, c->nesterov, s->first);
        break;
    case LB_OPTIM_ADAM:
        adam_update(p, g, m, v, n, wd, c->beta1, c->beta2, c->eps, (float)s->step_size,
                    (float)s->bc2_sqrt);
        break;
    case LB_OPTIM_ADAMW: {
        /* decoupled decay first: p *= 1 - lr*wd; then Adam without the L2 term */
        const float keep = (float)(1.0 - (double)s->lr * (double)wd);
        for (int64_t j = 0; j < n; j++) p[j] *= keep;
        adam_update(p, g, m, v, n, 0.0f, c->beta1, c->beta2, c->eps, (float)s->step_size,
                    (float)s->bc2_sqrt);
        break;
    }
    }
}

static void update_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    update_range(ctx, lo, hi);
}

void lb_optim_step(lb_optim *o, lb_params *ps, float lr)
{
    LB_ASSERT(o && ps && ps->finalized && ps->m && ps->v);   /* lb_optim_init was called */
    const lb_optim_cfg *c = &o->cfg;
    const bool first = o->t == 0;
    o->t++;

    /* Python-side scalars of torch.optim.Adam, in double as PyTorch computes them. */
    const double t = (double)o->t;
    step_job s = { o, ps, 0, lr, first, (double)lr / (1.0 - pow((double)c->beta1, t)),
                   sqrt(1.0 - pow((double)c->beta2, t)) };
    /* elementwise, so splitting a large tensor over the pool changes no result */
    for (int i = 0; i < ps->n; i++) {
        if (ps->flags[i] & LB_PARAM_BUFFER) continue;              /* never trained */
        s.i = i;
        lb_parallel_for_dyn(lb_numel(ps->t[i]), 32768, update_part, &s);
    }
}
