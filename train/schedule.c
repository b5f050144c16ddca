/* schedule.c: learning rate as a pure function of the step (see schedule.h for the formulas).
 *
 * Arithmetic is in double and rounded to float once at the end, so the warm-up reaches
 * exactly lr_max and the cosine end point is exactly lr_min. No state: resuming a run only
 * needs the step counter. Not here: the optimizer (optim.c), per-group learning rates.
 */
#include "train/schedule.h"

#include <math.h>
#include <string.h>

static const char *const kind_names[] = {
    [LB_SCHED_CONSTANT] = "constant",
    [LB_SCHED_COSINE] = "cosine",
    [LB_SCHED_STEP] = "step",
    [LB_SCHED_ONECYCLE] = "onecycle",
};
#define N_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

static const double PI = 3.14159265358979323846;

/* Warm-up steps in effect: onecycle with warmup == 0 warms up over 30% of total. */
static int64_t effective_warmup(const lb_schedule *s)
{
    if (s->kind == LB_SCHED_ONECYCLE && s->warmup == 0) return s->total * 3 / 10;
    return s->warmup > 0 ? s->warmup : 0;
}

float lb_schedule_lr(const lb_schedule *s, int64_t step)
{
    const double  lr_max = s->lr_max, lr_min = s->lr_min;
    const int64_t warmup = effective_warmup(s);

    if (step < 0) step = 0;
    /* linear warm-up: lr = lr_max * (step+1)/warmup, exactly lr_max at step warmup-1 */
    if (step < warmup) return (float)(lr_max * (double)(step + 1) / (double)warmup);
    if (s->total <= warmup) return s->lr_max;                  /* nothing left to anneal */
    if (step > s->total) step = s->total;                      /* hold the final value    */

    const int64_t since = step - warmup;                       /* >= 0 from here on       */
    switch (s->kind) {
    case LB_SCHED_CONSTANT:
        return s->lr_max;
    case LB_SCHED_COSINE:
    case LB_SCHED_ONECYCLE: {
        /* lr = lr_min + (lr_max - lr_min) * (1 + cos(pi*p)) / 2,  p = since/(total-warmup) */
        const double p = (double)since / (double)(s->total - warmup);
        if (p >= 1.0) return s->lr_min;                        /* exact end point         */
        return (float)(lr_min + (lr_max - lr_min) * (1.0 + cos(PI * p)) / 2.0);
    }
    case LB_SCHED_STEP: {
        /* lr = lr_max * gamma^floor(since / step_size) */
        if (s->step_size <= 0) return s->lr_max;               /* invalid: never decays   */
        return (float)(lr_max * pow((double)s->gamma, (double)(since / s->step_size)));
    }
    }
    return s->lr_max;                                          /* kind outside the enum   */
}

lb_status lb_schedule_validate(const lb_schedule *s, lb_error *err)
{
    if ((int)s->kind < 0 || (int)s->kind >= N_KINDS)
        return lb_errorf(err, LB_ERR_ARG, "schedule: kind = %d is not constant, cosine, step "
                         "or onecycle", (int)s->kind);
    if (!(s->lr_max > 0.0f) || isinf(s->lr_max))
        return lb_errorf(err, LB_ERR_ARG, "schedule: lr_max = %g is out of range "
                         "(expected a finite value > 0)", (double)s->lr_max);
    if (!(s->lr_min >= 0.0f && s->lr_min <= s->lr_max))
        return lb_errorf(err, LB_ERR_ARG, "schedule: lr_min = %g is out of range "
                         "(expected 0 <= lr_min <= lr_max = %g)", (double)s->lr_min,
                         (double)s->lr_max);
    if (s->total < 0)
        return lb_errorf(err, LB_ERR_ARG, "schedule: total = %lld is negative",
                         (long long)s->total);
    if (s->warmup < 0)
        return lb_errorf(err, LB_ERR_ARG, "schedule: warmup = %lld is negative",
                         (long long)s->warmup);
    if (s->kind == LB_SCHED_STEP && s->step_size <= 0)
        return lb_errorf(err, LB_ERR_ARG, "schedule: step_size = %lld must be > 0 for the step "
                         "schedule", (long long)s->step_size);
    if (s->kind == LB_SCHED_STEP && (!(s->gamma >= 0.0f) || isinf(s->gamma)))
        return lb_errorf(err, LB_ERR_ARG, "schedule: gamma = %g must be a finite value >= 0 for "
                         "the step schedule", (double)s->gamma);
    return LB_OK;
}

lb_status lb_schedule_parse_kind(const char *str, lb_sched_kind *out, lb_error *err)
{
    for (int k = 0; str && k < N_KINDS; k++) {
        if (strcmp(str, kind_names[k]) == 0) {
            *out = (lb_sched_kind)k;
            return LB_OK;
        }
    }
    return lb_errorf(err, LB_ERR_ARG, "unknown schedule '%s' (expected constant, cosine, step "
                     "or onecycle)", str ? str : "(null)");
}

const char *lb_schedule_kind_name(lb_sched_kind k)
{
    return ((int)k >= 0 && (int)k < N_KINDS) ? kind_names[k] : "unknown";
}
