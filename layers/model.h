/* model.h: a model is a small graph of layer nodes that export and inspection can walk.
 *
 * Every model, whether from the zoo or from a description file, is built from the same text
 * description (the zoo just generates that text), and the text is kept in the model so that
 * a checkpoint can rebuild the exact architecture. Nodes are stored in execution order; each
 * reads the previous node's output or named earlier nodes (`in=`), which is how residual
 * connections are written.
 *
 * The description, one layer per line ('#' starts a comment):
 *
 *     input 1 28 28                      # C H W of one sample (required, first)
 *     conv name=conv1 out=6 k=5 pad=2    # also: kh= kw= stride=1 bias=1 in=NODE
 *     relu
 *     maxpool k=2                        # also: stride=k pad=0 ; avgpool likewise
 *     bn                                 # also: eps=1e-5 momentum=0.1
 *     flatten
 *     linear out=10                      # also: bias=1
 *     dropout p=0.5
 *     gap                                # global average pool (B,C,H,W) -> (B,C)
 *     add in=a,b                         # elementwise sum of two nodes of equal shape
 *
 * Every node can take name= (default: kind plus a counter, e.g. relu3). Unknown layers, keys
 * and bad values are errors naming the file and line.
 *
 *     lb_model *m;
 *     if (lb_model_build_zoo("lenet5", 1, 28, 28, 10, &m, &err) != LB_OK) ...
 *     lb_model_init_weights(m, 42);
 *     lb_tensor *logits = lb_model_forward(m, g, x, &rng);
 *     lb_model_free(m);
 */
#ifndef LB_MODEL_H
#define LB_MODEL_H

#include "autograd/ops.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "quant/qconfig.h"
#include "quant/quantizer.h"

typedef enum lb_node_kind {
    LB_NODE_CONV = 0,
    LB_NODE_LINEAR,
    LB_NODE_BN,
    LB_NODE_RELU,
    LB_NODE_MAXPOOL,
    LB_NODE_AVGPOOL,
    LB_NODE_GAP,
    LB_NODE_FLATTEN,
    LB_NODE_DROPOUT,
    LB_NODE_ADD,
    LB_NODE_KIND_COUNT
} lb_node_kind;

typedef struct lb_pool_cfg {
    int k, stride, pad;
} lb_pool_cfg;

typedef struct lb_node {
    lb_node_kind kind;
    char         name[LB_NAME_LEN];
    int          in[2];             /* input node indices; -1 is the model input           */
    int          n_in;
    int64_t      shape[3];          /* per-sample output shape: (C, H, W) or (F)           */
    int          n_dims;            /* 3 or 1                                              */
    bool         nonneg;            /* output is >= 0 (after ReLU): unsigned activations   */
    lb_quantizer wq, aq;            /* conv/linear: weight and input quantizers (bits 0 =
                                       float)                                              */
    int          fold;              /* conv/linear: the BN node that is its only consumer
                                       (foldable), else -1; BN: the layer it folds into    */
    union {
        lb_conv2d_layer    conv;
        lb_linear    linear;
        lb_batchnorm_layer bn;
        lb_pool_cfg  pool;
        float        dropout_p;
    } u;
} lb_node;

typedef struct lb_model {
    char      name[64];
    int       in_c, in_h, in_w;     /* one input sample                                    */
    int       n_classes;            /* output features of the last node                    */
    int       n_nodes;
    lb_node  *nodes;
    lb_params *params;              /* finalized: every weight and buffer                  */
    char     *spec;                 /* the description text this model was built from      */
    lb_qconfig qcfg;                /* quantization of every conv/linear (all float: none)  */
    bool      calibrating;          /* eval-mode forwards update observers (PTQ)           */
    bool      bn_folded;            /* BN folded into the preceding conv/linear, with frozen
                                       statistics (quant/bn_fold.h)                        */
    bool      no_inplace;           /* record every relu and add out of place (by default a
                                       relu or add overwrites an input only it reads, to
                                       save activation memory; tests compare the two)      */
} lb_model;

/* Builds a model from description text, quantized as qc says (NULL: all float). origin
 * names the text in error messages (a file name, or "zoo:lenet5"). Every conv and linear
 * layer gets a weight quantizer and an input-activation quantizer from lb_qconfig_for (the
 * first and last such layers are "first" and "last"); a qc naming an unknown layer is an
 * error. On success *out owns finalized (zeroed) parameters; call lb_model_init_weights or
 * load a checkpoint. On error *out is NULL and err says "<origin>:<line>: <problem>". */
lb_status lb_model_build(const char *spec, const char *origin, const lb_qconfig *qc,
                         lb_model **out, lb_error *err);
/* Reads a description file and builds it. */
lb_status lb_model_build_file(const char *path, const lb_qconfig *qc, lb_model **out,
                              lb_error *err);
/* Generates the zoo description for name ("mlp", "lenet5", "vgg-small", "resnet20") for
 * inputs of c x h x w and n_classes, and builds it. */
lb_status lb_model_build_zoo(const char *name, int c, int h, int w, int n_classes,
                             const lb_qconfig *qc, lb_model **out, lb_error *err);
/* Copies every tensor that src and dst both have (same name and shape) from src to dst, e.g.
 * FP32 weights into a quantized model of the same architecture. Returns the number copied. */
int lb_model_copy_params(lb_model *dst, const lb_model *src);
/* Folds every foldable BN into its conv/linear from now on (statistics frozen) and makes
 * LSQ weight steps re-initialise from the folded weights. Returns the number of pairs. */
int lb_model_fold_bn(lb_model *m);
/* Sets every activation quantizer's calibration rule (PTQ) and percentile. */
void lb_model_set_calibration(lb_model *m, lb_calib calib, float pct);
/* Observers of every quantizer stop updating after `steps` updates (0: never). */
void lb_model_set_observer_freeze(lb_model *m, int64_t steps);
/* Weight memory in bytes at the configured bits (scales included) and at FP32. */
void lb_model_weight_bytes(const lb_model *m, int64_t *quant_bytes, int64_t *fp32_bytes);
/* The zoo description text (malloc'd, caller frees) or NULL with err set. */
char *lb_zoo_spec(const char *name, int c, int h, int w, int n_classes, lb_error *err);
/* Names of the zoo models, NULL-terminated. */
const char *const *lb_zoo_names(void);

/* Kaiming-normal conv/linear weights, zero biases, BN identity, from a generator seeded seed. */
void lb_model_init_weights(lb_model *m, uint64_t seed);
/* x (B, in_c, in_h, in_w) -> logits (B, n_classes). rng drives dropout (may be NULL when the
 * model has none). NULL when the graph failed. */
lb_tensor *lb_model_forward(lb_model *m, lb_graph *g, lb_tensor *x, lb_rng *rng);
void lb_model_free(lb_model *m);

const char *lb_node_kind_name(lb_node_kind k);
/* Trainable parameter count of one node (quantizer steps excluded). */
int64_t lb_node_param_count(const lb_node *n);
/* Sum of lb_node_param_count over the model: the architecture's parameters. */
int64_t lb_model_param_count(const lb_model *m);

#endif
