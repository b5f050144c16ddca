/* export.h: trained lowbit models -> .lbm files for the integer-only runtime.
 *
 * Walks the model graph and writes what docs/FORMAT.md section 7 describes: the first
 * layer's input grid as a pixel lookup table, each conv/linear's integer weights (from its
 * own weight quantizer, so they are exactly the values the framework's quantized evaluation
 * uses), int32 biases and fixed-point requantization multipliers into the next layer's input
 * grid, with batch-norm, ReLU, max pooling and flatten in between handled as the format says.
 * Not supported yet (an error naming the layer): a layer whose output has several consumers,
 * or reaches the next layer through average pooling or an addition (ResNet-style graphs).
 *
 *     lb_export_opts o = lb_export_opts_for("mnist");
 *     if (lb_export_lbm_file(model, &o, "lenet5.lbm", &size, &err)) ...
 */
#ifndef LB_EXPORT_H
#define LB_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "layers/model.h"

typedef struct lb_export_opts {
    float       mean[3], std[3]; /* the input normalisation the model was trained with     */
    const char *dataset;         /* recorded in META                                      */
    double      test_acc;        /* the framework's accuracy at export (META), or < 0     */
} lb_export_opts;

/* Normalisation of a dataset by name (as datasets/ applies it). */
lb_export_opts lb_export_opts_for(const char *dataset);

/* Builds the .lbm file in memory (*file malloc'd, caller frees). LB_ERR_ARG naming the layer
 * when the model cannot be exported (a float layer, an unsupported graph). */
lb_status lb_export_lbm(lb_model *m, const lb_export_opts *o, uint8_t **file, size_t *size,
                        lb_error *err);
/* Same, written atomically to path. */
lb_status lb_export_lbm_file(lb_model *m, const lb_export_opts *o, const char *path,
                             size_t *size, lb_error *err);

#endif
