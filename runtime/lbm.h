/* lbm.h: lowbit's integer-only inference runtime for .lbm models (docs/FORMAT.md).
 *
 * Portable C99 with no dependency beyond the C library's <stdint.h>, <stddef.h>, <stdarg.h>
 * and <string.h>; no floating point in the inference path, no allocation anywhere: the model is
 * read in place from the caller's buffer and every activation lives in an arena the caller
 * passes, whose size lbm_arena_size reports after loading.
 *
 *     lbm_model m;
 *     char msg[128];
 *     if (lbm_load(&m, file_bytes, file_size, msg, sizeof msg) != LBM_OK) { puts(msg); ... }
 *     static uint8_t arena[64 * 1024];            // >= lbm_arena_size(&m)
 *     int32_t scores[10];
 *     int pred;
 *     lbm_run(&m, pixels, arena, sizeof arena, scores, &pred);   // pixels: C*H*W uint8
 *
 * The buffer must stay alive and unchanged while m is used, and be 4-byte aligned.
 *
 * Arithmetic (FORMAT.md section 4 plus what it leaves open):
 *   - CONV2D/LINEAR accumulate in int32, and t = acc * 2^acc_shift + bias, with
 *     two's-complement wraparound (a hostile file cannot cause undefined behaviour; lowbit's
 *     exporter never produces an overflow).
 *   - requant(a, m, sh) = round_half_up(a * m / 2^(31 + sh)) exactly, for every shift in
 *     -31..62 (a 64-bit multiply and shifts; sh = -31 is the plain product, sh >= 32 gives 0).
 *     INT8/UINT8 outputs clamp to [out_min, out_max]; INT32 outputs saturate to int32.
 *   - ADD wraps like the accumulators; AVGPOOL/GAP round half up (toward +inf at ties).
 * Memory: lbm_load uses about 6 KB of stack (planner tables for LBM_MAX_TENSORS = 1024) and
 * lbm_run about 1 KB (256 bytes of it to unpack a packed weight row; LeNet-5 on a Cortex-M4:
 * experiments/results/mcu_cortex_m4.md). The arena holds the planner's tables (6 bytes per
 * tensor) and the activations, each 4-byte aligned, placed greedily first-fit by liveness;
 * lbm_run recomputes the same plan on every call, so the arena can be reused or shared
 * between models run one after another.
 * Sections of an unknown type (a later minor version may add some) are checked like the
 * others (placement, CRC) and otherwise ignored.
 */
#ifndef LBM_H
#define LBM_H

#include <stddef.h>
#include <stdint.h>

#define LBM_VERSION_MAJOR 1
#define LBM_VERSION_MINOR 0
/* Limits of this build. The format allows up to 1024 tensors and 1024 ops; a microcontroller
 * build may lower LBM_MAX_TENSORS (e.g. -DLBM_MAX_TENSORS=64; runtime/mcu/run.sh does) to
 * shrink lbm_load's stack, which holds 6 bytes of planning tables per tensor of the limit.
 * lbm_load then refuses a model with more tensors, saying so. */
#ifndef LBM_MAX_TENSORS
#define LBM_MAX_TENSORS 1024
#endif
#ifndef LBM_MAX_OPS
#define LBM_MAX_OPS 1024
#endif
#if LBM_MAX_TENSORS < 1 || LBM_MAX_TENSORS > 1024 || LBM_MAX_OPS < 1 || LBM_MAX_OPS > 1024
#error "LBM_MAX_TENSORS and LBM_MAX_OPS must be 1..1024 (the format's limits)"
#endif

typedef enum lbm_status {
    LBM_OK = 0,
    LBM_ERR_ARG,      /* NULL pointer, misaligned buffer, arena too small            */
    LBM_ERR_FORMAT,   /* malformed file: sizes, offsets, counts, shapes, kinds        */
    LBM_ERR_VERSION,  /* unsupported major version                                    */
    LBM_ERR_CRC,      /* a header or section checksum does not match                  */
} lbm_status;

enum { LBM_INT8 = 0, LBM_UINT8 = 1, LBM_INT32 = 2 };
enum {
    LBM_OP_INPUT = 1, LBM_OP_CONV2D, LBM_OP_LINEAR, LBM_OP_MAXPOOL, LBM_OP_AVGPOOL, LBM_OP_GAP,
    LBM_OP_ADD, LBM_OP_RELU, LBM_OP_REQUANT, LBM_OP_FLATTEN
};

/* A validated model: views into the caller's buffer plus what lbm_load computed. */
typedef struct lbm_model {
    const uint8_t *buf;
    uint32_t       size;
    const uint8_t *meta;  uint32_t meta_size;
    const uint8_t *graph; uint32_t graph_size;
    const uint8_t *data;  uint32_t data_size;
    uint32_t       n_tensors, n_ops, input, output;
    uint32_t       input_bytes;  /* C*H*W of the input tensor                           */
    uint32_t       n_classes;    /* elements of the output tensor                       */
    size_t         arena_bytes;  /* what lbm_run needs                                   */
} lbm_model;

/* Validates everything docs/FORMAT.md section 5 lists, then fills m. On failure writes a
 * message (NUL-terminated, truncated to msg_cap; msg may be NULL) naming what is wrong and
 * zeroes m, so lbm_run refuses it. Never reads outside buf[0..size). Beyond section 5 it
 * also requires: zero flags, reserved fields, unused attributes, row padding bits and
 * bytes between sections; pad < k for pools; C*kh*kw <= 2^24; an arena under 4 GiB.
 * LBM_ERR_ARG: NULL pointer or a buffer that is not 4-byte aligned; LBM_ERR_VERSION: major
 * version other than 1; LBM_ERR_CRC: checksum mismatch; LBM_ERR_FORMAT: anything else. */
lbm_status lbm_load(lbm_model *m, const void *buf, size_t size, char *msg, size_t msg_cap);
/* Arena bytes lbm_run needs for this model. */
size_t lbm_arena_size(const lbm_model *m);
/* Runs one sample: input holds input_bytes uint8 pixels (NCHW). Writes n_classes scores (may
 * be NULL) and the predicted class (index of the largest score, first on ties; may be NULL).
 * m must come from a successful lbm_load. No allocation, no floating point.
 * LBM_ERR_ARG when a pointer is NULL, m is not loaded, or the arena is too small or
 * misaligned (needs 4-byte alignment); nothing else can fail once the model is loaded. */
lbm_status lbm_run(const lbm_model *m, const uint8_t *input, void *arena, size_t arena_size,
                   int32_t *scores, int *pred);
/* Value of a META key (the first line "key=..."), not NUL-terminated (its length in *len;
 * len may be NULL), pointing into the model's buffer; NULL when absent. */
const char *lbm_meta(const lbm_model *m, const char *key, size_t *len);
/* One op or tensor record of a loaded model, decoded (for inspection tools). */
typedef struct lbm_op {
    int      kind;            /* LBM_OP_*                                            */
    uint32_t n_in, in[2], out;
    uint32_t data_offset, data_size;
    int32_t  attr[10];
} lbm_op;

typedef struct lbm_tensor {
    int      dtype;           /* LBM_INT8, LBM_UINT8, LBM_INT32                     */
    int      n_dims;
    uint32_t dims[3];
    float    scale;
    int32_t  zero_point;
} lbm_tensor;

/* Decodes op i (< m->n_ops) or tensor i (< m->n_tensors); LBM_ERR_ARG when out of range. */
lbm_status lbm_get_op(const lbm_model *m, uint32_t i, lbm_op *op);
lbm_status lbm_get_tensor(const lbm_model *m, uint32_t i, lbm_tensor *t);
/* "CONV2D", "LINEAR", ...; "?" for an unknown kind. */
const char *lbm_op_name(int kind);

/* CRC-32 (ISO-HDLC, zlib's crc32) of n bytes, continuing from crc (start with 0). */
uint32_t lbm_crc32(uint32_t crc, const void *p, size_t n);
const char *lbm_status_str(lbm_status s);

#endif
