/* export_impl.h: internals shared by the exporters of runtime/export/ (export.c writes .lbm,
 * onnx.c writes ONNX). Both read a trained model the same way: an activation quantizer's grid
 * and a layer's integer weights come from here, so the two formats cannot drift apart.
 * Not a public interface (lb__ prefix, STYLE.md 2.3): callers are the files of runtime/export only.
 */
#ifndef LB_EXPORT_IMPL_H
#define LB_EXPORT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "layers/model.h"

/* The integer grid of an activation quantizer: real value = scale * q, q in [qmin, qmax]
 * (zero point 0), and the .lbm tensor dtype that holds it (LBM_INT8 when qmin < 0, else
 * LBM_UINT8). */
typedef struct lb__act_grid {
    float   scale;
    int32_t qmin, qmax;
    int     dtype;
} lb__act_grid;

/* True for the nodes that carry quantized weights (conv, linear). */
bool lb__export_is_layer(const lb_node *nd);

/* The grid of nd's input quantizer. LB_ERR_ARG naming the layer when its inputs are float or
 * wider than 8 bits, the quantizer has no scale yet (never trained or calibrated), or the
 * grid has a zero point. */
lb_status lb__export_act_grid(const lb_node *nd, lb__act_grid *gr, lb_error *err);

/* Integer weights q (O x K, row o = output channel o in PyTorch order), per-channel scales
 * s (O) and the effective float bias b (O; 0 when the layer has none) of conv/linear nd, from
 * its own weight quantizer run in eval mode after BN folding when the model is folded, so
 * that s[o] * q[o][k] is the framework's fake-quantized weight up to float rounding. *bits is
 * the narrowest container of the integers: 1 (binary +-1), 2 (-2..1), 4 (-8..7) or 8.
 * The caller provides q (O * K bytes), s and b (O doubles each). LB_ERR_ARG naming the layer
 * for float weights, per-group scales, or integers off the grid; LB_ERR_NOMEM. */
lb_status lb__export_layer_weights(lb_model *m, lb_node *nd, int8_t *q, double *s, double *b,
                                   int *bits, lb_error *err);

/* Writes size bytes to path atomically: a temporary file path.tmp, fsync, rename. On failure
 * the temporary file is removed and LB_ERR_IO names the path. */
lb_status lb__export_write_file(const char *path, const uint8_t *buf, size_t size, lb_error *err);

#endif
