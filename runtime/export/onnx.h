/* onnx.h: trained lowbit models -> ONNX (opset 21) with QuantizeLinear/DequantizeLinear.
 *
 * The graph reproduces the training framework's quantized evaluation (lb_model_forward in
 * eval mode) node by node, in QDQ form: raw uint8 pixels in (NCHW, batch size free), the
 * dataset's normalisation inside the model, each conv/linear reading its input through a
 * QuantizeLinear/DequantizeLinear pair on its input quantizer's grid and its weights as
 * int4/int8 initializers through a per-channel DequantizeLinear; float logits out. The layout
 * and the 2-bit rule are in docs/FORMAT.md, "ONNX export". Unlike the .lbm exporter it
 * handles every node kind of the framework (residual additions, average pooling, unfolded
 * batch-norm anywhere), because ONNX Runtime computes the float parts. What it does not do:
 * per-group weight scales, float (unquantized) layers, zero points; those are errors.
 *
 *     lb_export_opts o = lb_export_opts_for("mnist");
 *     if (lb_export_onnx_file(model, &o, "lenet5.onnx", &size, &err)) ...
 *     // then, in any ONNX runtime: input "pixels" uint8 [N, C, H, W] -> "logits" [N, classes]
 */
#ifndef LB_EXPORT_ONNX_H
#define LB_EXPORT_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "layers/model.h"
#include "runtime/export/export.h"

/* The ONNX opset and IR version written (INT4/UINT4 need IR 10, opset 21). */
#define LB_ONNX_OPSET 21
#define LB_ONNX_IR_VERSION 10

/* Builds the serialized ModelProto in memory (*file malloc'd, caller frees; *file NULL and
 * *size 0 on error). o gives the normalisation (mean, std) and the metadata. LB_ERR_ARG naming
 * the layer when the model cannot be exported (a float layer, per-group scales, a quantizer
 * that was never trained or calibrated), LB_ERR_NOMEM. m is not const: a quantizer that has
 * never seen data initialises itself in eval mode, as lb_model_forward would. */
lb_status lb_export_onnx(lb_model *m, const lb_export_opts *o, uint8_t **file, size_t *size,
                         lb_error *err);
/* Same, written atomically to path (temporary file, fsync, rename). */
lb_status lb_export_onnx_file(lb_model *m, const lb_export_opts *o, const char *path,
                              size_t *size, lb_error *err);

#endif
