/* gen_corpus.c: writes the fuzz targets' seed corpora, one folder per target:
 *   OUTDIR/lbm/         three small valid .lbm models that together use every op kind, every
 *                       weight width and every dtype
 *   OUTDIR/idx/         image+label file pairs in fuzz_idx's input layout: plain and gzip,
 *                       ubyte and int32 labels
 *   OUTDIR/model/       model descriptions: zoo models, a residual net, every layer kind and
 *                       key, with "#q SPEC" lines for quantized builds
 *   OUTDIR/qconfig/     quantization configuration files and short specs
 *   OUTDIR/checkpoint/  checkpoints of a small model: float, with moments, quantized, folded
 *   OUTDIR/cifar/       CIFAR-10 binary batches of 1 to 3 records
 *   OUTDIR/image/       a channel byte then a small PNG (gray, low-bit gray, gray+alpha, RGB,
 *                       RGBA, palette with tRNS, 16-bit, interlaced) or JPEG (gray, RGB,
 *                       subsampled RGB, progressive)
 *   OUTDIR/lbds/        decoded dataset caches (lb__cache_write) of tiny gray and RGB datasets
 *   OUTDIR/archive/     small tar archives of folders and files (pax and ustar, plain and gzip)
 * so that mutations start from deep inside each format. Not a test itself: the CTest
 * fuzz_corpus_current checks that tests/fuzz/corpus is what this writes. After a format
 * change:   build/tests/fuzz/fuzz_gen_corpus tests/fuzz/corpus
 * Only this program (an experiment-style tool) exits on failure.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "datasets/datasets_impl.h"
#include "layers/model.h"
#include "runtime/lbm_write.h"
#include "train/checkpoint.h"

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, detail);
    exit(1);
}

static void write_bytes(const char *dir, const char *name, const void *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fail(path, strerror(errno));
    printf("%s: %zu bytes\n", path, size);
}

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
    if (lbm_writer_finish(w, in, out, &file, &size) != LBM_OK) fail(name, "lbm_writer_finish");
    write_bytes(dir, name, file, size);
    free(file);
    lbm_writer_free(w);
}

/* ---- .lbm ---------------------------------------------------------------------------- */

static void gen_lbm(const char *dir)
{
    lbm_writer w;

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
}

/* ---- IDX ------------------------------------------------------------------------------ */

static size_t put_be32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (24 - 8 * k));
    return 4;
}

/* gzip (not zlib) framing of src, as the .gz files of MNIST are. */
static size_t gzip_bytes(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        fail("gzip", "deflateInit2");
    z.next_in   = (Bytef *)src;
    z.avail_in  = (uInt)n;
    z.next_out  = dst;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) fail("gzip", "output too large");
    const size_t out = z.total_out;
    deflateEnd(&z);
    return out;
}

/* One fuzz_idx input: u16 LE length of the image file, the image file, the label file. */
static void idx_pair(const char *dir, const char *name, uint32_t n, uint32_t rows, uint32_t cols,
                     bool int32_labels, bool gz)
{
    static uint8_t img[4096], lab[1024], zi[4096], zl[1024], out[8192];
    size_t         ni = 0, nl = 0;
    ni += put_be32(img + ni, 0x00000803u);
    ni += put_be32(img + ni, n);
    ni += put_be32(img + ni, rows);
    ni += put_be32(img + ni, cols);
    for (uint32_t i = 0; i < n * rows * cols; i++) img[ni++] = (uint8_t)(i * 37 % 256);
    nl += put_be32(lab + nl, int32_labels ? 0x00000C01u : 0x00000801u);
    nl += put_be32(lab + nl, n);
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t y = int32_labels ? 300 + i : i % 10; /* > 256 classes needs int32 */
        if (int32_labels) nl += put_be32(lab + nl, y);
        else lab[nl++] = (uint8_t)y;
    }
    const uint8_t *pi = img, *pl = lab;
    if (gz) {
        ni = gzip_bytes(img, ni, zi, sizeof zi), pi = zi;
        nl = gzip_bytes(lab, nl, zl, sizeof zl), pl = zl;
    }
    out[0] = (uint8_t)ni, out[1] = (uint8_t)(ni >> 8);
    memcpy(out + 2, pi, ni);
    memcpy(out + 2 + ni, pl, nl);
    write_bytes(dir, name, out, 2 + ni + nl);
}

static void gen_idx(const char *dir)
{
    idx_pair(dir, "u8.idx", 3, 4, 5, false, false);
    idx_pair(dir, "u8-gz.idx", 4, 6, 6, false, true);
    idx_pair(dir, "i32.idx", 2, 3, 3, true, false);
    idx_pair(dir, "i32-gz.idx", 2, 2, 7, true, true);
    idx_pair(dir, "mnist-shape.idx", 1, 28, 28, false, false);
}

/* ---- model descriptions --------------------------------------------------------------- */

static const char *const toy_spec =
    "model toy\ninput 1 8 8\nconv name=c1 out=4 k=3 pad=1\nbn name=bn1\nrelu\nmaxpool k=2\n"
    "flatten\ndropout p=0.1\nlinear name=fc out=4\n";

static const char *const residual_spec =
    "model tiny-resnet              # optional name\n"
    "input 1 8 8\n"
    "conv name=c1 out=4 k=3 pad=1\n"
    "bn eps=1e-5 momentum=0.1\n"
    "relu name=r1\n"
    "conv out=4 kh=3 kw=1 pad=1 bias=0 stride=1\n"
    "conv out=4 kh=1 kw=3 bias=0\n"
    "bn name=b2\n"
    "add in=b2,r1\n"
    "relu\n"
    "avgpool k=3 stride=2 pad=1\n"
    "maxpool k=2 stride=1\n"
    "gap\n"
    "dropout p=0.2\n"
    "linear out=3 bias=0\n";

static void write_text(const char *dir, const char *name, const char *prefix, const char *text)
{
    char buf[8192];
    const int n = snprintf(buf, sizeof buf, "%s%s", prefix, text);
    if (n < 0 || (size_t)n >= sizeof buf) fail(name, "text too long");
    write_bytes(dir, name, buf, (size_t)n);
}

static void gen_model(const char *dir)
{
    static const struct { const char *zoo; int c, h, w, classes; } zoo[] = {
        { "mlp", 1, 8, 8, 10 }, { "lenet5", 1, 28, 28, 10 }, { "resnet20", 3, 8, 8, 10 },
    };
    lb_error err = { 0 };
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0]; i++) {
        char *spec = lb_zoo_spec(zoo[i].zoo, zoo[i].c, zoo[i].h, zoo[i].w, zoo[i].classes, &err);
        if (!spec) fail(zoo[i].zoo, err.msg);
        char name[64];
        snprintf(name, sizeof name, "%s.txt", zoo[i].zoo);
        write_text(dir, name, "", spec);
        free(spec);
    }
    write_text(dir, "toy.txt", "", toy_spec);
    write_text(dir, "residual.txt", "", residual_spec);
    write_text(dir, "toy-w4a4-group.txt", "#q w4a4,gran=group:4\n", toy_spec);
    write_text(dir, "residual-w2a2.txt", "#q w2a2,first=8,last=8,wq=minmax,aq=ema,ste=plain\n",
               residual_spec);
    write_text(dir, "toy-binary.txt", "#q w1a8,aq=pact,gran=tensor\n", toy_spec);
    write_text(dir, "residual-ternary.txt", "#q wta4,aq=lsq\n", residual_spec);
    write_text(dir, "residual-dorefa.txt", "#q w3a4,wq=dorefa,gran=group:5\n", residual_spec);
}

/* ---- quantization configurations ------------------------------------------------------ */

static void gen_qconfig(const char *dir)
{
    write_text(dir, "header-example.q", "",
               "default w=4 a=4 wq=lsq aq=lsq gran=channel ste=clipped\n"
               "first   w=8 a=8\n"
               "last    w=8 a=8\n"
               "layer conv2 w=2 a=4 wq=minmax\n");
    write_text(dir, "lenet5-mixed.q", "",
               "# 8-bit first and last layers, fc1 at 2 bits\n"
               "default w=4 a=4 wq=lsq aq=lsq gran=channel\r\n"
               "first   w=8 a=8\nlast    w=8 a=8\nlayer fc1 w=2 a=4\n");
    write_text(dir, "methods.q", "",
               "default w=1 a=8 aq=pact\n"
               "layer c1 wq=ternary gran=tensor\n"
               "layer c2 w=3 wq=dorefa gran=group:16 ste=plain\n"
               "layer c3 w=8 wq=ema aq=minmax\n"
               "layer c3 a=0\n"
               "first w=0 a=0\n");
    write_text(dir, "spec-w4a4.q", "", "w4a4,first=8,last=8\n");
    write_text(dir, "spec-methods.q", "", " w2a4 , wq=minmax, aq=ema, gran=group:32, ste=plain\n");
    write_text(dir, "spec-binary.q", "", "w1a8,aq=pact,gran=channel\n");
    write_text(dir, "spec-ternary.q", "", "wta4,first=0\n");
    write_text(dir, "spec-fp32.q", "", "fp32");
}

/* ---- checkpoints ---------------------------------------------------------------------- */

static void save_ckpt(const char *dir, const char *name, const char *spec, const char *qspec,
                      bool moments, bool fold)
{
    lb_error   err = { 0 };
    lb_qconfig qc  = lb_qconfig_float();
    if (qspec && lb_qconfig_parse_spec(qspec, &qc, &err)) fail(qspec, err.msg);
    lb_model *m;
    if (lb_model_build(spec, name, &qc, &m, &err)) fail(name, err.msg);
    lb_model_init_weights(m, 11);
    if (fold) lb_model_fold_bn(m);
    if (moments) {
        if (lb_params_alloc_moments(m->params, &err)) fail(name, err.msg);
        for (int64_t i = 0; i < m->params->total; i++) {
            m->params->m[i] = (float)(i % 7) * 0.01f;
            m->params->v[i] = (float)(i % 5) * 0.001f;
        }
    }
    lb_ckpt_meta meta = { .epoch = 2, .step = 50, .optim_t = 50, .seed = 42, .test_acc = 0.5,
                          .train_loss = 1.25, .rng_dropout = 12345, .epoch_step = 3 };
    snprintf(meta.dataset, sizeof meta.dataset, "toy");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (lb_checkpoint_save(path, m, &meta, moments, &err)) fail(path, err.msg);
    printf("%s\n", path);
    lb_model_free(m);
}

static void gen_checkpoint(const char *dir)
{
    save_ckpt(dir, "float.ckpt", toy_spec, NULL, false, false);
    save_ckpt(dir, "moments.ckpt", toy_spec, NULL, true, false);
    save_ckpt(dir, "w4a4.ckpt", toy_spec, "w4a4,first=8,last=8,gran=group:4", false, false);
    save_ckpt(dir, "w2a2-folded.ckpt", residual_spec, "w2a2,wq=minmax,aq=pact", true, true);
}

/* ---- CIFAR-10 binary batches ---------------------------------------------------------- */

static void gen_cifar(const char *dir)
{
    static uint8_t buf[3 * 3073];
    for (int n = 1; n <= 3; n++) {
        for (int r = 0; r < n; r++) {
            uint8_t *rec = buf + (size_t)r * 3073;
            rec[0]       = (uint8_t)(r * 4 + n) % 10;
            for (int k = 0; k < 3072; k++) rec[1 + k] = (uint8_t)(k * 7 + r * 31 + n);
        }
        char name[32];
        snprintf(name, sizeof name, "batch-%d.bin", n);
        write_bytes(dir, name, buf, (size_t)n * 3073);
    }
}

/* ---- PNG and JPEG images -------------------------------------------------------------- */

typedef struct { uint8_t *p; size_t n, cap; } membuf;

static void mem_put(membuf *m, const void *p, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        if (!(m->p = realloc(m->p, m->cap))) fail("image", "out of memory");
    }
    memcpy(m->p + m->n, p, n);
    m->n += n;
}

static void png_mem_write(png_structp png, png_bytep p, size_t n)
{
    mem_put(png_get_io_ptr(png), p, n);
}

static void png_mem_flush(png_structp png) { (void)png; }

/* A W x H PNG of libpng colour type `type` and bit depth, after the channel byte `want`. */
static void image_png(const char *dir, const char *name, uint8_t want, int W, int H, int type,
                      int depth, bool trns, bool interlace)
{
    membuf      m    = { 0 };
    png_structp png  = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop   info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) fail(name, "libpng");
    mem_put(&m, &want, 1);
    png_set_write_fn(png, &m, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[16];
        for (int k = 0; k < 16; k++)
            pal[k] = (png_color){ (png_byte)(k * 16), (png_byte)(255 - k * 9), (png_byte)(k * 5) };
        png_set_PLTE(png, info, pal, 16);
    }
    if (trns) {
        png_byte     alpha[4] = { 0, 64, 128, 192 };
        png_color_16 key      = { 0, 3, 5, 7, 1 };
        if (type == PNG_COLOR_TYPE_PALETTE) png_set_tRNS(png, info, alpha, 4, NULL);
        else png_set_tRNS(png, info, NULL, 0, &key);
    }
    png_set_compression_level(png, 9);
    png_write_info(png, info);
    const int ch = type == PNG_COLOR_TYPE_GRAY ? 1 : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                 : type == PNG_COLOR_TYPE_RGB ? 3 : type == PNG_COLOR_TYPE_RGBA ? 4 : 1;
    uint8_t row[64 * 4 * 2];
    int     passes = interlace ? png_set_interlace_handling(png) : 1;
    for (int pass = 0; pass < passes; pass++) {
        for (int y = 0; y < H; y++) {
            memset(row, 0, sizeof row);
            for (int x = 0; x < W; x++)
                for (int k = 0; k < ch; k++) {
                    const int v = (y * 50 + x * 20 + k * 70 + 3) & 255;
                    if (depth == 16) {
                        row[((size_t)x * ch + k) * 2]     = (uint8_t)v;
                        row[((size_t)x * ch + k) * 2 + 1] = (uint8_t)(k * 37);
                    } else if (depth == 8) {
                        row[(size_t)x * ch + k] = (uint8_t)v;
                    } else { /* 1, 2, 4 bits: one sample, packed from the high bits */
                        const int per = 8 / depth, s = v & ((1 << depth) - 1);
                        row[x / per] |= (uint8_t)(s << (8 - depth * (x % per + 1)));
                    }
                }
            png_write_row(png, row);
        }
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    write_bytes(dir, name, m.p, m.n);
    free(m.p);
}

/* A W x H JPEG (C = 1 gray, 3 RGB) after the channel byte `want`. */
static void image_jpeg(const char *dir, const char *name, uint8_t want, int W, int H, int C,
                       bool subsample, bool progressive)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr       jerr;
    unsigned char              *out  = NULL;
    unsigned long               size = 0;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, &size);
    cinfo.image_width      = (JDIMENSION)W;
    cinfo.image_height     = (JDIMENSION)H;
    cinfo.input_components = C;
    cinfo.in_color_space   = C == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 75, TRUE);
    if (!subsample)
        for (int k = 0; k < cinfo.num_components; k++)
            cinfo.comp_info[k].h_samp_factor = cinfo.comp_info[k].v_samp_factor = 1;
    if (progressive) jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    uint8_t row[64 * 3];
    while (cinfo.next_scanline < cinfo.image_height) {
        const int y = (int)cinfo.next_scanline;
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++) row[x * C + k] = (uint8_t)(y * 20 + x * 10 + k * 30 + 3);
        JSAMPROW r = row;
        jpeg_write_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    membuf m = { 0 };
    mem_put(&m, &want, 1);
    mem_put(&m, out, size);
    write_bytes(dir, name, m.p, m.n);
    free(m.p);
    free(out);
}

static void gen_image(const char *dir)
{
    /* the channel byte: % 3 picks keep/gray/RGB, / 3 and / 21 the resize target */
    image_png(dir, "gray8.png", 0, 4, 3, PNG_COLOR_TYPE_GRAY, 8, false, false);
    image_png(dir, "gray2-trns.png", 2, 7, 3, PNG_COLOR_TYPE_GRAY, 2, true, false);
    image_png(dir, "gray-alpha.png", 4, 3, 5, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, false);
    image_png(dir, "rgb8.png", 1, 5, 4, PNG_COLOR_TYPE_RGB, 8, false, false);
    image_png(dir, "rgba8.png", 3, 4, 4, PNG_COLOR_TYPE_RGBA, 8, false, false);
    image_png(dir, "palette-trns.png", 5, 6, 2, PNG_COLOR_TYPE_PALETTE, 4, true, false);
    image_png(dir, "rgb16.png", 45, 3, 3, PNG_COLOR_TYPE_RGB, 16, false, false);
    image_png(dir, "rgb8-interlaced.png", 66, 9, 9, PNG_COLOR_TYPE_RGB, 8, false, true);
    image_jpeg(dir, "gray.jpg", 0, 8, 8, 1, false, false);
    image_jpeg(dir, "rgb.jpg", 2, 9, 7, 3, false, false);
    image_jpeg(dir, "rgb-420.jpg", 25, 16, 16, 3, true, false);
    image_jpeg(dir, "rgb-progressive.jpg", 1, 12, 10, 3, true, true);
}

/* ---- decoded dataset caches ----------------------------------------------------------- */

/* fuzz_lbds.c reads with this key and source folder: keep them the same there */
#define FUZZ_LBDS_SOURCE "/data/fuzz-folder/train"
#define FUZZ_LBDS_KEY    { 6, 12345, 1700000000123456789LL, 0x00030001u }

static void lbds_one(const char *dir, const char *name, int64_t n, int c, int h, int w, int K)
{
    static uint8_t  pix[4096];
    static int32_t  lab[64];
    static char     names[8 * LB_CLASS_NAME_MAX];
    static const char *const cls[8] = { "cat", "dog", "", "zebra", "7", "a-long-class-name",
                                        "x", "y" };
    lb_dataset ds = { .n = n, .c = c, .h = h, .w = w, .n_classes = K, .images = pix,
                      .labels = lab, .class_names = names, .n_skipped = 1 };
    snprintf(ds.source, sizeof ds.source, "%s", FUZZ_LBDS_SOURCE);
    memset(names, 0, sizeof names);
    for (int k = 0; k < K; k++) snprintf(names + k * LB_CLASS_NAME_MAX, LB_CLASS_NAME_MAX, "%s", cls[k]);
    for (int64_t i = 0; i < n * c * h * w; i++) pix[i] = (uint8_t)(i * 13 + 5);
    for (int64_t i = 0; i < n; i++) lab[i] = (int32_t)(i % K);
    const lb__cache_key key = FUZZ_LBDS_KEY;
    char                path[512];
    lb_error            err = { 0 };
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (lb__cache_write(path, &ds, &key, &err) != LB_OK) fail(path, err.msg);
    printf("%s\n", path);
}

static void gen_lbds(const char *dir)
{
    lbds_one(dir, "gray.lbds", 3, 1, 4, 5, 2);
    lbds_one(dir, "rgb.lbds", 2, 3, 3, 3, 4);
    lbds_one(dir, "one.lbds", 1, 1, 1, 1, 1);
    lbds_one(dir, "classes.lbds", 8, 1, 2, 2, 8);
}

/* ---- dataset archives ----------------------------------------------------------------- */

static void archive_tar(const char *dir, const char *name, bool pax, bool gz)
{
    static const struct { const char *path; int type; const char *body; } e[] = {
        { "train/", AE_IFDIR, NULL },         { "./train/0/a.png", AE_IFREG, "\x89PNG" },
        { "train/1/b.jpg", AE_IFREG, "jpeg" }, { "test/", AE_IFDIR, NULL },
        { "test/0/c.png", AE_IFREG, "" },     { "README", AE_IFREG, "a tiny dataset\n" },
    };
    static uint8_t tar[16384], zipped[16384];
    size_t         used = 0;
    struct archive *a   = archive_write_new();
    if (!a) fail(name, "archive_write_new");
    if (pax) archive_write_set_format_pax_restricted(a);
    else archive_write_set_format_ustar(a);
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open_memory(a, tar, sizeof tar, &used) != ARCHIVE_OK) fail(name, "open");
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        struct archive_entry *en = archive_entry_new();
        const size_t          n  = e[i].body ? strlen(e[i].body) : 0;
        archive_entry_set_pathname(en, e[i].path);
        archive_entry_set_filetype(en, (unsigned)e[i].type);
        archive_entry_set_perm(en, e[i].type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_mtime(en, 1700000000, 0);
        archive_entry_set_size(en, (la_int64_t)n);
        if (archive_write_header(a, en) != ARCHIVE_OK) fail(name, archive_error_string(a));
        if (n && archive_write_data(a, e[i].body, n) != (la_ssize_t)n) fail(name, "data");
        archive_entry_free(en);
    }
    if (archive_write_close(a) != ARCHIVE_OK) fail(name, archive_error_string(a));
    archive_write_free(a);
    if (gz) write_bytes(dir, name, zipped, gzip_bytes(tar, used, zipped, sizeof zipped));
    else write_bytes(dir, name, tar, used);
}

static void gen_archive(const char *dir)
{
    archive_tar(dir, "pax.tar", true, false);
    archive_tar(dir, "ustar.tar", false, false);
    archive_tar(dir, "pax.tar.gz", true, true);
}

/* ---- main ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_gen_corpus OUTDIR   (writes OUTDIR/<target>/...)\n");
        return 2;
    }
    static const struct { const char *name; void (*gen)(const char *dir); } targets[] = {
        { "lbm", gen_lbm },     { "idx", gen_idx },         { "model", gen_model },
        { "qconfig", gen_qconfig }, { "checkpoint", gen_checkpoint },
        { "cifar", gen_cifar },     { "image", gen_image },     { "lbds", gen_lbds },
        { "archive", gen_archive },
    };
    if (mkdir(argv[1], 0777) != 0 && errno != EEXIST) fail(argv[1], strerror(errno));
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", argv[1], targets[i].name);
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) fail(dir, strerror(errno));
        targets[i].gen(dir);
    }
    return 0;
}
