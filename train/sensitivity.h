/* sensitivity.h: per-layer quantization sensitivity of a float model, and the bit assignment
 * that minimises the summed sensitivity under a weight-memory budget (mixed precision).
 *
 * For every conv/linear layer and every candidate bit-width b, lb_sensitivity_run measures on
 * a calibration set the loss and accuracy change when only that layer's weights are quantized
 * to b bits (quant/mixed.h's MSE-optimal per-channel grid; 1 bit = binary), and estimates the
 * trace of the Hessian of the loss with respect to that layer's weights (Hutchinson, finite
 * differences of gradients, as in HAWQ-V2). Activations stay float throughout: these are
 * weight sensitivities. lb_mixed_assign then solves the knapsack exactly (lb_mixed_solve) and
 * lb_mixed_qconfig turns the answer into a per-layer configuration for `lowbit train --quant`.
 * The pure algorithms live in quant/mixed.h; this file adds the model and the data.
 *
 *     lb_dataset calib;  lb_calib_split(&train, 1000, &calib, &err);   // a copy: lb_dataset_free
 *     lb_sens_cfg cfg = lb_sens_cfg_default();                        // bits 2,4,8
 *     lb_sens_result r;
 *     if (lb_sensitivity_run(model, &calib, &cfg, &r, &err)) ...
 *     int bits[r.n_layers];  lb_mixed_plan plan;
 *     lb_mixed_assign(&r, LB_MIXED_OBJ_HAWQ, budget_bits, choice_bits, n, bits, &plan, &err);
 *     lb_sens_result_free(&r);
 */
#ifndef LB_SENSITIVITY_H
#define LB_SENSITIVITY_H

#include <stdio.h>

#include "datasets/dataset.h"
#include "layers/model.h"

#define LB_SENS_MAX_BITS 8 /* candidate bit-widths per run */

/* How Hessian-vector products are formed (quant/mixed.h). */
typedef enum lb_hess_method {
    LB_HESS_GN = 0,  /* finite differences of the logits and the exact cross-entropy curvature:
                        the Gauss-Newton block, equal a.e. to the Hessian block of one layer of
                        a ReLU network; never negative (default)                              */
    LB_HESS_FD_GRAD, /* finite differences of gradients (the HAWQ-V2 recipe with a numerical
                        HVP); in ReLU/max-pool networks it also measures the kinks crossed by
                        the perturbation and can come out negative                            */
} lb_hess_method;

typedef struct lb_sens_cfg {
    int      bits[LB_SENS_MAX_BITS]; /* candidate weight bits, each 1..8, distinct           */
    int      n_bits;
    int64_t  batch;          /* evaluation and gradient batch                              */
    int      hutch_samples;  /* Rademacher vectors for the traces (0: no Hessian)          */
    float    hutch_eps;      /* finite-difference step relative to each layer's rms(w)     */
    bool     hutch_together; /* LB_HESS_FD_GRAD: perturb every layer at once (cheaper,
                                noisier; mixed.h)                                           */
    lb_hess_method hess;     /* LB_HESS_GN                                                  */
    bool     measure_loss;   /* evaluate quantize-only-this-layer (false: traces only)     */
    uint64_t seed;           /* the Rademacher vectors                                     */
    FILE    *log;            /* progress lines, or NULL                                    */
} lb_sens_cfg;

typedef struct lb_sens_layer {
    char    name[LB_NAME_LEN];
    int     node;             /* index into m->nodes                                        */
    int64_t n_weights;        /* elements of the weight tensor                              */
    int64_t rows;             /* output channels: one float scale each                      */
    double  trace, trace_se;  /* Hutchinson tr(H) w.r.t. the weights, and its standard error */
    double  w_sq;             /* ||w||^2                                                    */
    double  dloss[LB_SENS_MAX_BITS]; /* calibration loss with only this layer quantized,
                                        minus the float model's, per cfg.bits[k]            */
    double  dacc[LB_SENS_MAX_BITS];  /* the same for accuracy (0..1; negative = worse)      */
    double  qerr[LB_SENS_MAX_BITS];  /* ||Q_b(w) - w||^2                                    */
} lb_sens_layer;

typedef struct lb_sens_result {
    int            n_layers;
    lb_sens_layer *layers;    /* malloc'd; lb_sens_result_free                              */
    int            bits[LB_SENS_MAX_BITS];
    int            n_bits;
    double         base_loss, base_acc; /* the float model on the calibration set          */
    int64_t        calib_n;
    int64_t        fixed_bits; /* weight memory that no choice changes: biases, batch-norm  */
    double         seconds;
} lb_sens_result;

/* bits 2, 4, 8; batch 500; 32 samples; eps 1e-2; Gauss-Newton products; loss deltas measured;
 * seed 42; no log. */
lb_sens_cfg lb_sens_cfg_default(void);

/* Parses "2,4,8" into cfg->bits (1..8, distinct, at most LB_SENS_MAX_BITS), sorted ascending.
 * LB_ERR_ARG naming the bad item. */
lb_status lb_sens_parse_bits(const char *s, lb_sens_cfg *cfg, lb_error *err);

/* The calibration split: n samples of train copied into memory (pixels and labels; free it
 * with lb_dataset_free), in train's order. They are the last n, as a held-out split, unless
 * train is stored class by class (its labels never decrease, as image folders are read:
 * CIFAR-10's JPEG copy, MNIST's PNG folder), where the last n would be one class: then n
 * samples spread evenly over it, sample floor((2k + 1) * train->n / (2n)) for k < n, the same
 * number from each class of equal size. LB_ERR_ARG when n < 1 or n >= train->n, LB_ERR_NOMEM,
 * LB_ERR_IO when a streaming train cannot be read (the file named). */
lb_status lb_calib_split(const lb_dataset *train, int64_t n, lb_dataset *calib, lb_error *err);
/* true when lb_calib_split spreads its samples over train: train is stored class by class
 * (labels never decrease, and not all equal). */
bool lb_calib_spread(const lb_dataset *train);

/* "gn" or "fd"; LB_ERR_ARG otherwise. */
lb_status lb_hess_method_parse(const char *s, lb_hess_method *out, lb_error *err);

/* Measures every conv/linear layer of m (a float model; its weights are changed during the
 * call and restored bit for bit). LB_ERR_ARG when m is quantized or has folded batch-norm,
 * or cfg is invalid; LB_ERR_SHAPE when calib does not fit m; evaluation and gradient errors
 * are passed on. On success the caller frees res with lb_sens_result_free. */
lb_status lb_sensitivity_run(lb_model *m, const lb_dataset *calib, const lb_sens_cfg *cfg,
                             lb_sens_result *res, lb_error *err);
void lb_sens_result_free(lb_sens_result *res);

/* What the knapsack minimises, per layer and bit-width. */
typedef enum lb_mixed_objective {
    LB_MIXED_OBJ_HAWQ = 0, /* max(tr H, 0) / n * ||Q_b(w) - w||^2  (HAWQ-V2)               */
    LB_MIXED_OBJ_LOSS,     /* max(measured loss delta, 0) + 1e-6 ||Q_b(w) - w||^2 / ||w||^2
                              (the second term only breaks ties among zero increases)      */
} lb_mixed_objective;

/* "hawq" or "loss"; LB_ERR_ARG otherwise. */
lb_status lb_mixed_objective_parse(const char *s, lb_mixed_objective *out, lb_error *err);
const char *lb_mixed_objective_name(lb_mixed_objective o);

/* The objective of layer l at the k-th measured bit-width (r->bits[k]). */
double lb_mixed_layer_objective(const lb_sens_layer *l, int k, lb_mixed_objective obj);

/* Bits a layer's weights take at b bits, as lb_model_weight_bytes counts them with
 * per-channel scales: n_weights * b + 32 * rows (one float scale per output channel). */
int64_t lb_sens_layer_cost(const lb_sens_layer *l, int bits);

typedef struct lb_mixed_plan {
    double  objective;      /* summed sensitivity of the chosen bits                         */
    int64_t weight_bits;    /* the model's whole weight memory in bits (fixed part included) */
    double  avg_bits;       /* sum n_weights * b / sum n_weights                             */
} lb_mixed_plan;

/* Chooses bits[l] for every layer of r from choices[0..n_choices) (each one of r->bits, so
 * that its sensitivity was measured) minimising the objective under a budget of budget_bits
 * for the whole weight memory (r->fixed_bits plus every layer's cost). Exact (lb_mixed_solve).
 * LB_ERR_ARG for a choice that was not measured, a HAWQ objective without traces, or a budget
 * below every layer at its smallest choice (the message gives the smallest size in KiB). */
lb_status lb_mixed_assign(const lb_sens_result *r, lb_mixed_objective obj, int64_t budget_bits,
                          const int *choices, int n_choices, int *bits, lb_mixed_plan *plan,
                          lb_error *err);

/* The configuration "every conv/linear layer named, with its bits": a default line with
 * weights at 8 bits, activations at abits (0 = float) and LSQ/LSQ per-channel, then one
 * `layer NAME w=B` line per layer (wq=binary for 1 bit). Neither first nor last is set: the
 * assignment decides those layers too. */
void lb_mixed_qconfig(const lb_sens_result *r, const int *bits, int abits, lb_qconfig *out);

#endif
