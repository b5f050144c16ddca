/* optim.h: optimizers over the flat parameter store.
 *
 * SGD (momentum, Nesterov, L2 weight decay) follows torch.optim.SGD exactly; Adam follows
 * torch.optim.Adam (L2 decay added to the gradient); AdamW follows torch.optim.AdamW
 * (decoupled decay). Tensors flagged LB_PARAM_NO_DECAY (biases, BN affine, quantizer steps)
 * get no weight decay unless decay_all is set, which decays every trainable tensor as
 * torch.optim.SGD(model.parameters(), weight_decay=wd) does; buffers are never touched. The learning rate is passed to each step so schedules stay separate.
 *
 *     lb_optim opt;
 *     lb_optim_init(&opt, (lb_optim_cfg){ .kind = LB_OPTIM_SGD, .momentum = 0.9f,
 *                   .weight_decay = 5e-4f, .nesterov = true }, ps, &err);
 *     ... lb_backward ...;  lb_optim_step(&opt, ps, lr);  lb_params_zero_grad(ps);
 */
#ifndef LB_OPTIM_H
#define LB_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"

typedef enum { LB_OPTIM_SGD = 0, LB_OPTIM_ADAM, LB_OPTIM_ADAMW } lb_optim_kind;

typedef struct lb_optim_cfg {
    lb_optim_kind kind;
    float momentum;      /* SGD                                             */
    bool  nesterov;      /* SGD; needs momentum > 0                         */
    float weight_decay;
    bool  decay_all;     /* decay LB_PARAM_NO_DECAY tensors too             */
    float beta1, beta2;  /* Adam/AdamW; 0 means the defaults 0.9, 0.999     */
    float eps;           /* Adam/AdamW; 0 means the default 1e-8            */
} lb_optim_cfg;

typedef struct lb_optim {
    lb_optim_cfg cfg;
    int64_t      t;      /* steps taken (Adam bias correction; checkpointed) */
} lb_optim;

/* Validates cfg (LB_ERR_ARG naming the bad field and its value) and allocates the moments in
 * ps (ps->m, ps->v; LB_ERR_NOMEM). beta1/beta2/eps of 0 are replaced by their defaults in
 * o->cfg; o->t starts at 0. ps must be finalized (asserted). Ranges: 0 <= momentum < 1,
 * nesterov needs momentum > 0, weight_decay >= 0, 0 <= beta1, beta2 < 1, eps > 0 (all finite).
 * On error o is left unchanged. */
lb_status lb_optim_init(lb_optim *o, lb_optim_cfg cfg, lb_params *ps, lb_error *err);
/* One update of every trainable tensor in ps from ps->grads with learning rate lr, then
 * o->t += 1. Buffers (LB_PARAM_BUFFER) are skipped, values, moments and all; LB_PARAM_NO_DECAY
 * tensors get weight_decay 0 unless cfg.decay_all. SGD keeps its momentum buffer in ps->m; Adam/AdamW use m and v.
 * Gradients are read, never cleared. */
void lb_optim_step(lb_optim *o, lb_params *ps, float lr);
/* Parses "sgd", "adam" or "adamw"; LB_ERR_ARG otherwise. */
lb_status lb_optim_parse_kind(const char *s, lb_optim_kind *out, lb_error *err);
/* "sgd", "adam", "adamw", or "unknown" for a value outside the enum. Never NULL. */
const char *lb_optim_kind_name(lb_optim_kind k);

#endif
