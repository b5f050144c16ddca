/* lbm.h: lowbit's integer-only inference runtime for .lbm models (docs/FORMAT.md).
 *
 * Portable C99 with no dependency beyond the C library's <stdint.h>, <stddef.h> and
 * <string.h>; no floating point in the inference path, no allocation anywhere: the model is
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
 */
#ifndef LBM_H
#define LBM_H

#include <stddef.h>
#include <stdint.h>

#define LBM_VERSION_MAJOR 1
#define LBM_VERSION_MINOR 0
#define LBM_MAX_TENSORS 1024
#define LBM_MAX_OPS 1024

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
 * message (NUL-terminated, truncated to msg_cap) naming what is wrong. Never reads outside
 * buf[0..size). */
lbm_status lbm_load(lbm_model *m, const void *buf, size_t size, char *msg, size_t msg_cap);
/* Arena bytes lbm_run needs for this model. */
size_t lbm_arena_size(const lbm_model *m);
/* Runs one sample: input holds input_bytes uint8 pixels (NCHW). Writes n_classes scores (may
 * be NULL) and the predicted class (index of the largest score, first on ties; may be NULL).
 * LBM_ERR_ARG when the arena is too small or misaligned (needs 4-byte alignment). */
lbm_status lbm_run(const lbm_model *m, const uint8_t *input, void *arena, size_t arena_size,
                   int32_t *scores, int *pred);
/* Value of a META key, not NUL-terminated (its length in *len), or NULL when absent. */
const char *lbm_meta(const lbm_model *m, const char *key, size_t *len);
/* CRC-32 (ISO-HDLC, zlib's crc32) of n bytes, continuing from crc (start with 0). */
uint32_t lbm_crc32(uint32_t crc, const void *p, size_t n);
const char *lbm_status_str(lbm_status s);

#endif
