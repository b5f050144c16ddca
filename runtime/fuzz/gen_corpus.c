/* gen_corpus.c: writes the fuzzer's seed corpus (runtime/fuzz/corpus/): three small valid
 * models that together use every op kind, every weight width and every dtype, so that
 * mutations start from deep inside the format. Not a test; run by hand after a format
 * change:   gen_corpus runtime/fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lbm_write.h"

static uint32_t t3(lbm_writer *w, int dtype, uint32_t C, uint32_t H, uint32_t W)
{
    return lbm_writer_tensor(w, dtype, 3, (uint32_t[]){ C, H, W }, 0.5f, 0);
}

static uint32_t t1(lbm_writer *w, int dtype, uint32_t F)
{
    return lbm_writer_tensor(w, dtype, 1, (uint32_t[]){ F }, 0.25f, 0);
}

/* INPUT with a LUT p -> p/2 - 64 (INT8) or p (UINT8). */
static uint32_t input_op(lbm_writer *w, uint32_t in, int dtype, uint32_t C, uint32_t H,
                         uint32_t W)
{
    uint8_t lut[256 * 4];
    for (uint32_t k = 0; k < 256 * C; k++)
        lut[k] = (uint8_t)(dtype == LBM_INT8 ? (int)(k & 255) / 2 - 64 : (int)(k & 255));
    const uint32_t x   = t3(w, dtype, C, H, W);
    const uint32_t off = lbm_writer_data(w, lut, 256 * C);
    lbm_writer_op(w, LBM_OP_INPUT, 1, (uint32_t[]){ in, 0 }, x, off, 256 * C, NULL);
    return x;
}

/* O x i32 little-endian, all v0 + o. */
static uint32_t i32s(lbm_writer *w, uint32_t O, int32_t v0)
{
    uint8_t b[4 * 64];
    for (uint32_t o = 0; o < O; o++)
        for (int k = 0; k < 4; k++)
            b[4 * o + (uint32_t)k] = (uint8_t)((uint32_t)(v0 + (int32_t)o) >> (8 * k));
    return lbm_writer_data(w, b, 4 * O);
}

/* CONV2D/LINEAR with weights (k + o) * 7 % 5 - 2 clipped to the width, bias o, multiplier
 * 2^30 + o, shift sh + o; attr as given (attr[5] = bits). */
static void weighted(lbm_writer *w, int kind, uint32_t x, uint32_t y, uint32_t O, uint32_t K,
                     int32_t sh, const int32_t *attr)
{
    static int8_t  q[4096];
    static uint8_t rows[4096];
    const int      bits = attr[5];
    const int      lo = bits == 1 ? -1 : -(1 << (bits - 1));
    const int      hi = bits == 1 ? 1 : (1 << (bits - 1)) - 1;
    const uint32_t rb = (K * (uint32_t)bits + 7) / 8;
    for (uint32_t o = 0; o < O; o++) {
        for (uint32_t k = 0; k < K; k++) {
            const int v = (int)((k + o) * 7 % 5) - 2;
            q[k] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
        }
        lbm_pack_row(q, K, bits, rows + o * rb);
    }
    const uint32_t off = lbm_writer_data(w, rows, O * rb);
    i32s(w, O, 0);
    i32s(w, O, 1 << 30);
    const uint32_t end = i32s(w, O, sh) + 4 * O;
    lbm_writer_op(w, kind, 1, (uint32_t[]){ x, 0 }, y, off, end - off, attr);
}

static void write_file(const char *dir, const char *name, lbm_writer *w, uint32_t in,
                       uint32_t out)
{
    uint8_t *file;
    size_t   size;
    char     path[512];
    if (lbm_writer_finish(w, in, out, &file, &size) != LBM_OK) exit(1);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(file, 1, size, f) != size || fclose(f) != 0) exit(1);
    printf("%s: %zu bytes\n", path, size);
    free(file);
    lbm_writer_free(w);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    lbm_writer  w;

    /* chain: INPUT -> CONV2D 4-bit UINT8 -> MAXPOOL -> FLATTEN -> LINEAR 2-bit INT32 */
    lbm_writer_init(&w);
    uint32_t in = t3(&w, LBM_UINT8, 1, 8, 8), x = input_op(&w, in, LBM_INT8, 1, 8, 8);
    uint32_t y  = t3(&w, LBM_UINT8, 3, 8, 8);
    weighted(&w, LBM_OP_CONV2D, x, y, 3, 9, 0, (const int32_t[10]){ 3, 3, 3, 1, 1, 4, 0, 255, 1 });
    uint32_t p = t3(&w, LBM_UINT8, 3, 4, 4);
    lbm_writer_op(&w, LBM_OP_MAXPOOL, 1, (uint32_t[]){ y, 0 }, p, 0, 0,
                  (const int32_t[10]){ 2, 2 });
    uint32_t f = t1(&w, LBM_UINT8, 48), z = t1(&w, LBM_INT32, 10);
    lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ p, 0 }, f, 0, 0, NULL);
    weighted(&w, LBM_OP_LINEAR, f, z, 10, 48, -1, (const int32_t[10]){ 10, 0, 0, 0, 0, 2 });
    lbm_writer_meta(&w, "model", "chain");
    lbm_writer_meta(&w, "input", "1,8,8");
    write_file(dir, "chain.lbm", &w, in, z);

    /* residual: INPUT -> CONV2D 8-bit INT32 a -> RELU b -> ADD(a, b) -> AVGPOOL -> REQUANT
     * INT8 -> RELU -> CONV2D 1-bit s2 INT32 -> GAP */
    lbm_writer_init(&w);
    in = t3(&w, LBM_UINT8, 2, 6, 6), x = input_op(&w, in, LBM_INT8, 2, 6, 6);
    uint32_t a = t3(&w, LBM_INT32, 4, 6, 6), b = t3(&w, LBM_INT32, 4, 6, 6);
    weighted(&w, LBM_OP_CONV2D, x, a, 4, 18, -1, (const int32_t[10]){ 4, 3, 3, 1, 1, 8 });
    lbm_writer_op(&w, LBM_OP_RELU, 1, (uint32_t[]){ a, 0 }, b, 0, 0, NULL);
    uint32_t c = t3(&w, LBM_INT32, 4, 6, 6), d = t3(&w, LBM_INT32, 4, 3, 3);
    lbm_writer_op(&w, LBM_OP_ADD, 2, (uint32_t[]){ a, b }, c, 0, 0, NULL);
    lbm_writer_op(&w, LBM_OP_AVGPOOL, 1, (uint32_t[]){ c, 0 }, d, 0, 0,
                  (const int32_t[10]){ 3, 2, 1 });
    uint32_t e = t3(&w, LBM_INT8, 4, 3, 3), g = t3(&w, LBM_INT8, 4, 3, 3);
    lbm_writer_op(&w, LBM_OP_REQUANT, 1, (uint32_t[]){ d, 0 }, e, 0, 0,
                  (const int32_t[10]){ 1 << 30, -2, 0, 0, 0, 0, -128, 127 });
    lbm_writer_op(&w, LBM_OP_RELU, 1, (uint32_t[]){ e, 0 }, g, 0, 0, NULL);
    uint32_t h = t3(&w, LBM_INT32, 5, 2, 2), o = t1(&w, LBM_INT32, 5);
    weighted(&w, LBM_OP_CONV2D, g, h, 5, 16, 0, (const int32_t[10]){ 5, 2, 2, 2, 1, 1 });
    lbm_writer_op(&w, LBM_OP_GAP, 1, (uint32_t[]){ h, 0 }, o, 0, 0, NULL);
    lbm_writer_meta(&w, "model", "residual");
    write_file(dir, "residual.lbm", &w, in, o);

    /* tiny: UINT8 INPUT -> FLATTEN -> LINEAR 8-bit INT8 -> LINEAR 4-bit INT32 */
    lbm_writer_init(&w);
    in = t3(&w, LBM_UINT8, 3, 2, 2), x = input_op(&w, in, LBM_UINT8, 3, 2, 2);
    f = t1(&w, LBM_UINT8, 12);
    lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ x, 0 }, f, 0, 0, NULL);
    uint32_t l = t1(&w, LBM_INT8, 6);
    z = t1(&w, LBM_INT32, 3);
    weighted(&w, LBM_OP_LINEAR, f, l, 6, 12, 3, (const int32_t[10]){ 6, 0, 0, 0, 0, 8, -128, 127 });
    weighted(&w, LBM_OP_LINEAR, l, z, 3, 6, -1, (const int32_t[10]){ 3, 0, 0, 0, 0, 4 });
    write_file(dir, "tiny.lbm", &w, in, z);
    return 0;
}
