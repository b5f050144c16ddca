/* lbm_write.h: building .lbm files (docs/FORMAT.md) in memory. Used by lowbit's exporter and
 * by tests that make models (and broken models) by hand. C99, libc only; allocates with
 * malloc/realloc (unlike the runtime, the writer runs on the host).
 *
 *     lbm_writer w;  lbm_writer_init(&w);
 *     uint32_t in  = lbm_writer_tensor(&w, LBM_UINT8, 3, (uint32_t[]){1, 28, 28}, 1.0f, 0);
 *     uint32_t x   = lbm_writer_tensor(&w, LBM_INT8, 3, (uint32_t[]){1, 28, 28}, s, 0);
 *     uint32_t off = lbm_writer_data(&w, lut, 256);                // returns the data offset
 *     lbm_writer_op(&w, LBM_OP_INPUT, 1, (uint32_t[]){in, 0}, x, off, 256, NULL);
 *     ...
 *     lbm_writer_meta(&w, "model", "lenet5");
 *     uint8_t *file; size_t size;
 *     lbm_writer_finish(&w, in, out, &file, &size);   // caller frees file
 *     lbm_writer_free(&w);
 */
#ifndef LBM_WRITE_H
#define LBM_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/lbm.h"

typedef struct lbm_writer {
    uint8_t *tensors; uint32_t n_tensors, cap_tensors;   /* 32-byte records */
    uint8_t *ops;     uint32_t n_ops, cap_ops;           /* 64-byte records */
    uint8_t *data;    uint32_t data_size, cap_data;
    char    *meta;    uint32_t meta_size, cap_meta;
    int      failed;  /* an allocation failed; finish reports it */
} lbm_writer;

void lbm_writer_init(lbm_writer *w);
void lbm_writer_free(lbm_writer *w);
/* Adds a tensor record; returns its index. dims: n_dims values (1 or 3). */
uint32_t lbm_writer_tensor(lbm_writer *w, int dtype, int n_dims, const uint32_t *dims,
                           float scale, int32_t zero_point);
/* Appends bytes to DATA at the next multiple of 4 (zero padding); returns their offset
 * within DATA. p may be NULL for n zero bytes. */
uint32_t lbm_writer_data(lbm_writer *w, const void *p, uint32_t n);
/* Adds an op record; attr may be NULL (all zero) or point to 10 values. */
void lbm_writer_op(lbm_writer *w, int kind, int n_in, const uint32_t *in, uint32_t out,
                   uint32_t data_offset, uint32_t data_size, const int32_t *attr);
/* Adds "key=value\n" to META. */
void lbm_writer_meta(lbm_writer *w, const char *key, const char *value);
/* Lays out header, section table (META, GRAPH, DATA) and the sections, each 16-aligned with
 * zero padding, with CRCs; the file ends with DATA. *file is malloc'd (caller frees). Does
 * not validate the model: load the result with lbm_load for that. LBM_ERR_ARG (and *file =
 * NULL) when an earlier call failed to allocate or the file would exceed 4 GiB. */
lbm_status lbm_writer_finish(lbm_writer *w, uint32_t input, uint32_t output, uint8_t **file,
                             size_t *size);

/* Packs K integer weights at bits (1, 2, 4, 8) into ceil(K*bits/8) bytes as FORMAT.md says
 * (for bits 1: q > 0 -> 1, else 0). Padding bits of the last byte are zero; values outside a
 * width's range keep only their low bits. Other widths write nothing. */
void lbm_pack_row(const int8_t *q, uint32_t K, int bits, uint8_t *out);
/* Fixed-point form of a positive real multiplier: m in [2^30, 2^31), shift in [-31, 62], such
 * that real ~= m * 2^-(31 + shift) (relative error at most 2^-31; m rounds half away from
 * zero, as TFLite's QuantizeMultiplier). Returns 1 on success. A real below 2^-63 gives
 * m = shift = 0 and returns 1 (the runtime's result is then exactly the rounded product, 0).
 * Returns 0 (and m = shift = 0) for real <= 0, NaN, or real too large (rounds to >= 2^31). */
int lbm_quantize_multiplier(double real, int32_t *m, int32_t *shift);

#endif
