/* tiny_model.h: a small quantized model for the export tests (test_export, test_onnx): a
 * LeNet-like net on 1x12x12 inputs with random weights, non-trivial batch-norm statistics
 * and quantizers calibrated on random MNIST-normalised batches. Aborts the current Check test
 * on any failure. */
#ifndef LB_TESTS_TINY_MODEL_H
#define LB_TESTS_TINY_MODEL_H

#include <stdbool.h>

#include "layers/model.h"

/* conv-bn-relu-maxpool, conv-relu, flatten, linear 16, linear 5 */
extern const char *const tiny_net;

/* Builds spec under qspec (lowbit's short quant spec), sets BN statistics, folds BN when fold,
 * and calibrates every quantizer on 4 batches of 16 random images. Caller frees. */
lb_model *tiny_model_calibrated(const char *spec, const char *qspec, bool fold);

#endif
