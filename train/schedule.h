/* schedule.h: learning-rate schedules with linear warm-up.
 *
 * lr(step) for step in [0, total): during the first `warmup` steps lr rises linearly,
 * lr = lr_max * (step+1)/warmup, so step 0 gives lr_max/warmup and step warmup-1 gives exactly
 * lr_max. Afterwards, with p = (step-warmup)/(total-warmup):
 *   constant: lr_max
 *   cosine:   lr_min + (lr_max - lr_min) * (1 + cos(pi * p)) / 2
 *   step:     lr_max * gamma^floor((step - warmup) / step_size)
 *   onecycle: linear warm-up is the first phase; then cosine annealing down to lr_min
 *             (warmup defaults to 30% of total when 0 is given for onecycle)
 * Steps >= total give the final value (the formula at step == total: lr_min for cosine and
 * onecycle). When total <= warmup nothing is left to anneal: lr stays at lr_max after the
 * warm-up. Negative steps count as step 0. These are not PyTorch's LR schedulers (its OneCycleLR
 * starts at lr_max/25, for example); the formulas above are the definition.
 *
 *     lb_schedule s = { .kind = LB_SCHED_COSINE, .lr_max = 0.05f, .total = 4690, .warmup = 100 };
 *     if (lb_schedule_validate(&s, &err) != LB_OK) ...;
 *     float lr = lb_schedule_lr(&s, step);
 */
#ifndef LB_SCHEDULE_H
#define LB_SCHEDULE_H

#include <stdint.h>

#include "autograd/status.h"

typedef enum {
    LB_SCHED_CONSTANT = 0,
    LB_SCHED_COSINE,
    LB_SCHED_STEP,
    LB_SCHED_ONECYCLE,
} lb_sched_kind;

typedef struct lb_schedule {
    lb_sched_kind kind;
    float   lr_max, lr_min;
    int64_t total;      /* total steps of the run                  */
    int64_t warmup;     /* warm-up steps                           */
    int64_t step_size;  /* step schedule: steps between decays     */
    float   gamma;      /* step schedule: decay factor             */
} lb_schedule;

/* Learning rate at `step` (0-based) as defined above. Pure; never fails. A schedule that
 * lb_schedule_validate rejects still gives a finite value (a step schedule with step_size <= 0
 * never decays), but not necessarily a useful one. */
float lb_schedule_lr(const lb_schedule *s, int64_t step);
/* Checks the fields a configuration can get wrong: a known kind, finite lr_max > 0,
 * 0 <= lr_min <= lr_max, total >= 0, warmup >= 0, and for the step schedule step_size > 0 and
 * a finite gamma >= 0. Returns LB_ERR_ARG with err naming the field and its value. */
lb_status lb_schedule_validate(const lb_schedule *s, lb_error *err);
/* Parses "constant", "cosine", "step" or "onecycle"; LB_ERR_ARG otherwise. */
lb_status lb_schedule_parse_kind(const char *str, lb_sched_kind *out, lb_error *err);
/* "constant", "cosine", "step", "onecycle", or "unknown" for a value outside the enum. */
const char *lb_schedule_kind_name(lb_sched_kind k);

#endif
