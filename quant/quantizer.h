/* quantizer.h: one quantizer of one layer (its weights or its input activations), built
 * from an lb_qlayer_cfg: the glue between configuration, state and the fake-quant ops.
 *
 * State lives in the model's lb_params so that checkpoints carry it: LSQ steps and PACT
 * clipping levels are trainable tensors ("<name>.step", "<name>.alpha"); observed ranges
 * are buffers ("<name>.range": min[n], max[n], count).
 *
 * Modes: in training mode observers update and learned scales train; in calibration mode
 * observers update but nothing trains (post-training quantization); in eval mode everything
 * is frozen. LSQ steps and PACT levels are initialised from the first batch they see (LSQ:
 * 2 mean|x| / sqrt(qmax) when training, the observed range when calibrating).
 *
 *     lb_quantizer wq;
 *     lb_quantizer_init(&wq, ps, "conv1.wq", &cfg, true, w->shape, 4, false, &err);
 *     ...after lb_params_finalize...
 *     lb_tensor *w_fq = lb_quantizer_forward(&wq, g, w, LB_QMODE_TRAIN);
 */
#ifndef LB_QUANTIZER_H
#define LB_QUANTIZER_H

#include "quant/fake_quant.h"
#include "quant/observer.h"
#include "quant/qconfig.h"

typedef enum lb_qmode { LB_QMODE_EVAL = 0, LB_QMODE_TRAIN, LB_QMODE_CALIB } lb_qmode;

/* How calibration (LB_QMODE_CALIB) sets activation ranges. */
typedef enum lb_calib {
    LB_CALIB_MINMAX = 0,  /* the observed min/max over all calibration batches           */
    LB_CALIB_PERCENTILE,  /* mean over batches of the p-th percentile of |x|             */
    LB_CALIB_MSE,         /* mean over batches of the MSE-optimal clip (observer.h)      */
} lb_calib;

typedef struct lb_quantizer {
    int        bits;          /* 0: the quantizer is off and forward returns x            */
    lb_qmethod method;
    lb_qgran   gran;
    int64_t    group;
    lb_ste     ste;
    lb_qscheme scheme;        /* weights: symmetric; activations: unsigned after ReLU      */
    bool       weight;        /* quantizes weights (else activations)                      */
    int32_t    qmin, qmax;
    int64_t    n;             /* scales                                                   */
    int64_t    per_scale;     /* elements per scale (LSQ gradient scaling)                 */
    lb_tensor *step;          /* LSQ step (n) or PACT alpha (1), trainable; else NULL     */
    lb_tensor *range;         /* (2n + 1) buffer: min[n], max[n], count; NULL if unused   */
    int64_t    ema_freeze;    /* observers freeze after this many updates (0: never)      */
    lb_calib   calib;         /* calibration rule for activation ranges                   */
    float      calib_pct;     /* percentile for LB_CALIB_PERCENTILE, e.g. 99.99           */
} lb_quantizer;

/* Declares the quantizer's state in ps for a tensor of the given shape (weights: the
 * parameter's shape; activations: one sample's shape, batch excluded). nonneg: the
 * activations are known to be >= 0 (after ReLU), so an unsigned grid is used. */
lb_status lb_quantizer_init(lb_quantizer *q, lb_params *ps, const char *name,
                            const lb_qlayer_cfg *cfg, bool weight, const int64_t *shape,
                            int n_dims, bool nonneg, lb_error *err);
/* Fake-quantizes x (records ops on g), updating state as the mode says. Returns x itself
 * when bits == 0; NULL when the graph failed. */
lb_tensor *lb_quantizer_forward(lb_quantizer *q, lb_graph *g, lb_tensor *x, lb_qmode mode);
/* Current scales (n floats) for export and inspection; false when the quantizer has no
 * fixed-point scale (off, DoReFa) or has not been initialised yet. */
bool lb_quantizer_scales(const lb_quantizer *q, const lb_tensor *x, float *scale, float *zero);
/* Bytes this quantizer adds to stored weights (its scales), for weight-memory reports. */
int64_t lb_quantizer_scale_bytes(const lb_quantizer *q);

#endif
