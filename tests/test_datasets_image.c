/* test_datasets_image.c: tests of the CIFAR-10 binary loader, PNG/JPEG decoding, the image-folder
 * loader and its decoded cache, archive unpacking, augmentation and the prefetching batcher.
 *
 * Every fixture (binary batches, PNG files written with libpng, JPEG files written with
 * libjpeg, tar archives written with libarchive) is made by the test itself in a mkdtemp
 * folder that the unchecked fixture removes; the cache folder is set per test through
 * lb_dataset_opts.cache_dir, so nothing outside it is touched. The last test compares all
 * 70,000 images of the mnist-png archive with the MNIST IDX files when both are present.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "datasets/dataset.h"
#include "datasets/datasets_impl.h"
#include "tests/suites.h"

#define P 512

static char parent[64], tmp[128];

/* Unchecked (once per TCase, in the parent process): the folder that holds every test's
 * folder, removed even when a test fails (a failed test's own teardown does not run). */
static void parent_setup(void)
{
    snprintf(parent, sizeof parent, "/tmp/lb_test_dsimg.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(parent));
}

static void parent_teardown(void)
{
    lb__remove_tree(parent);
}

/* Checked (around each test, in its child): a fresh folder of its own. */
static void setup(void)
{
    snprintf(tmp, sizeof tmp, "%s/t.XXXXXX", parent);
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void)
{
    lb__remove_tree(tmp);
}

/* tmp/<a> (or tmp/<a>/<b>) into out. */
static const char *path2(char *out, const char *a, const char *b)
{
    const int len = snprintf(out, P, "%s/%s%s%s", tmp, a, b ? "/" : "", b ? b : "");
    ck_assert(len > 0 && len < P);
    return out;
}

static void mkdirs(const char *rel)
{
    char p[P], e[P];
    lb_error err = { 0 };
    ck_assert_msg(lb__make_dirs(path2(p, rel, NULL), &err) == LB_OK, "%s", err.msg);
    (void)e;
}

static void write_bytes(const char *rel, const void *buf, size_t n)
{
    char  p[P];
    FILE *f = fopen(path2(p, rel, NULL), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static lb_dataset_opts opts_here(void)
{
    lb_dataset_opts o = lb_dataset_opts_default();
    static char     cache[P];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    o.cache_dir = cache;
    return o;
}

/* ---------------------------------------------------------------- CIFAR-10 binary */

static uint8_t cifar_pix(int rec, int k) { return (uint8_t)(rec * 7 + k * 3 + 1); }

/* Writes tmp/bin/<name> with n records; labels rec % 10 except bad_label at record 1. */
static void write_cifar(const char *name, int first, int n, int bad_label, size_t cut)
{
    size_t   len = (size_t)n * 3073;
    uint8_t *b   = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(b);
    for (int r = 0; r < n; r++) {
        b[(size_t)r * 3073] = (uint8_t)((first + r) % 10);
        if (r == 1 && bad_label >= 0) b[(size_t)r * 3073] = (uint8_t)bad_label;
        for (int k = 0; k < 3072; k++) b[(size_t)r * 3073 + 1 + k] = cifar_pix(first + r, k);
    }
    char rel[P];
    snprintf(rel, sizeof rel, "bin/%s", name);
    write_bytes(rel, b, cut ? cut : len);
    free(b);
}

static void write_cifar_train(void)
{
    mkdirs("bin");
    for (int f = 1; f <= 5; f++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", f);
        write_cifar(name, (f - 1) * 2, 2, -1, 0);
    }
    write_cifar("test_batch.bin", 100, 3, -1, 0);
}

/* _i = 0: in memory, 1: streamed (the pixels read back through lb_dataset_pixels) */
START_TEST(test_cifar_bin_good)
{
    write_cifar_train();
    char       dir[P];
    lb_dataset ds;
    lb_error   err = { 0 };
    uint8_t    px[3072];
    ck_assert_msg(lb_cifar10_bin_load(path2(dir, "bin", NULL), LB_SPLIT_TRAIN, _i, &ds, &err) ==
                  LB_OK, "%s", err.msg);
    ck_assert_int_eq(lb_dataset_streams(&ds), _i);
    ck_assert_int_eq(ds.n_files, _i ? 5 : 0);
    ck_assert_int_eq(ds.n, 10);
    ck_assert_int_eq(ds.c, 3);
    ck_assert_int_eq(ds.h, 32);
    ck_assert_int_eq(ds.n_classes, 10);
    ck_assert_str_eq(ds.name, "cifar10");
    ck_assert_str_eq(ds.class_names + 0 * LB_CLASS_NAME_MAX, "airplane");
    ck_assert_str_eq(ds.class_names + 9 * LB_CLASS_NAME_MAX, "truck");
    for (int r = 0; r < 10; r++) {
        ck_assert_int_eq(ds.labels[r], r % 10);
        /* planar R, G, B: pixel (ch, y, x) is byte ch*1024 + y*32 + x of the record */
        const uint8_t *pix = lb_dataset_pixels(&ds, r, px, &err);
        ck_assert_msg(pix != NULL, "%s", err.msg);
        for (int k = 0; k < 3072; k += 101) ck_assert_uint_eq(pix[k], cifar_pix(r, k));
    }
    ck_assert_float_eq_tol(ds.mean[0], 0.4914f, 1e-6f);
    ck_assert_float_eq_tol(ds.std[2], 0.2616f, 1e-6f);
    lb_dataset_free(&ds);
    ck_assert_msg(lb_cifar10_bin_load(dir, LB_SPLIT_TEST, _i, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 3);
    ck_assert_uint_eq(lb_dataset_pixels(&ds, 1, px, &err)[5], cifar_pix(101, 5));
    lb_dataset_free(&ds);
}
END_TEST

/* 0 truncated, 1 label 10, 2 empty, 3 missing file */
START_TEST(test_cifar_bin_bad)
{
    write_cifar_train();
    char        dir[P], file[P];
    const char *name = "data_batch_3.bin";
    lb_status   want = LB_ERR_FORMAT;
    const char *needle = NULL;
    switch (_i) {
    case 0: write_cifar(name, 4, 2, -1, 3073 + 100), needle = "truncated"; break;
    case 1: write_cifar(name, 4, 2, 10, 0), needle = "label 10"; break;
    case 2: write_cifar(name, 4, 0, -1, 0), needle = "empty"; break;
    case 3: unlink(path2(file, "bin", name)), want = LB_ERR_IO; break;
    }
    for (int stream = 0; stream < 2; stream++) { /* the same checks before streaming */
        lb_dataset ds;
        lb_error   err = { 0 };
        lb_status  st  = lb_cifar10_bin_load(path2(dir, "bin", NULL), LB_SPLIT_TRAIN, stream, &ds,
                                             &err);
        ck_assert_msg(st == want, "case %d: %s", _i, err.msg);
        ck_assert_msg(strstr(err.msg, path2(file, "bin", name)), "case %d: %s", _i, err.msg);
        if (needle) ck_assert_msg(strstr(err.msg, needle), "case %d: %s", _i, err.msg);
        ck_assert_ptr_null(ds.images);
        ck_assert_ptr_null(ds.class_names);
        ck_assert_ptr_null(ds.files);
    }
}
END_TEST

/* ---------------------------------------------------------------- PNG and JPEG writers */

/* The reference 8-bit RGB image: pixel (y, x) channel k. */
static uint8_t ref_px(int y, int x, int k) { return (uint8_t)(y * 50 + x * 20 + k * 70 + 3); }

/* Writes a W x H PNG of the given libpng colour type and bit depth, with pixels derived from
 * ref_px: gray takes channel 0, 16-bit stores v*257+k (high byte v), alpha is 128 + x. */
static void write_png_trns(const char *rel, int W, int H, int type, int depth, bool trns);

static void write_png(const char *rel, int W, int H, int type, int depth)
{
    write_png_trns(rel, W, H, type, depth, false);
}

/* trns: add a tRNS chunk (palette: entries 0..3 half transparent; gray/RGB: one colour). */
static void write_png_trns(const char *rel, int W, int H, int type, int depth, bool trns)
{
    char  p[P];
    FILE *f = fopen(path2(p, rel, NULL), "wb");
    ck_assert_ptr_nonnull(f);
    png_structp png  = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop   info = png_create_info_struct(png);
    ck_assert(png && info);
    ck_assert_int_eq(setjmp(png_jmpbuf(png)), 0);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, depth, type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color pal[256];
    if (type == PNG_COLOR_TYPE_PALETTE) { /* entry y*W+x holds pixel (y, x) */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                pal[y * W + x] = (png_color){ ref_px(y, x, 0), ref_px(y, x, 1), ref_px(y, x, 2) };
        png_set_PLTE(png, info, pal, W * H);
    }
    if (trns) {
        png_byte      alpha[4] = { 128, 128, 128, 128 };
        png_color_16  key      = { 0, ref_px(0, 0, 0), ref_px(0, 0, 1), ref_px(0, 0, 2),
                                   ref_px(0, 0, 0) };
        if (type == PNG_COLOR_TYPE_PALETTE) png_set_tRNS(png, info, alpha, 4, NULL);
        else png_set_tRNS(png, info, NULL, 0, &key);
    }
    png_write_info(png, info);
    const int ch = type == PNG_COLOR_TYPE_GRAY ? 1 : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                 : type == PNG_COLOR_TYPE_RGB ? 3 : type == PNG_COLOR_TYPE_RGBA ? 4 : 1;
    const int bps = depth / 8;
    uint8_t  *row = malloc((size_t)W * ch * 2);
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            for (int k = 0; k < ch; k++) {
                int v;
                if (type == PNG_COLOR_TYPE_PALETTE) v = y * W + x;
                else if ((ch == 2 && k == 1) || (ch == 4 && k == 3)) v = 128 + x; /* alpha */
                else v = ref_px(y, x, k);
                uint8_t *o = row + ((size_t)x * ch + k) * bps;
                if (bps == 2) {
                    const int v16 = v * 256 + (k + 1) * 37; /* the low byte must not matter */
                    o[0] = (uint8_t)(v16 >> 8), o[1] = (uint8_t)v16;
                } else {
                    o[0] = (uint8_t)v;
                }
            }
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    ck_assert_int_eq(fclose(f), 0);
}

/* A smooth image for JPEG, which is lossy on sharp edges. */
static uint8_t jpg_px(int y, int x, int k) { return (uint8_t)(y * 20 + x * 10 + k * 30 + 3); }

static void write_jpeg(const char *rel, int W, int H, int C)
{
    char  p[P];
    FILE *f = fopen(path2(p, rel, NULL), "wb");
    ck_assert_ptr_nonnull(f);
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr       jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width      = (JDIMENSION)W;
    cinfo.image_height     = (JDIMENSION)H;
    cinfo.input_components = C;
    cinfo.in_color_space   = C == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 100, TRUE);
    for (int k = 0; k < cinfo.num_components; k++) /* no chroma subsampling */
        cinfo.comp_info[k].h_samp_factor = cinfo.comp_info[k].v_samp_factor = 1;
    jpeg_start_compress(&cinfo, TRUE);
    uint8_t *row = malloc((size_t)W * C);
    while (cinfo.next_scanline < cinfo.image_height) {
        const int y = (int)cinfo.next_scanline;
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++) row[x * C + k] = jpg_px(y, x, k);
        JSAMPROW r = row;
        jpeg_write_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    ck_assert_int_eq(fclose(f), 0);
}

static lb_status decode_rel(const char *rel, int want_c, uint8_t **pix, int *c, int *h, int *w,
                            lb_error *err)
{
    char      p[P];
    uint8_t  *data;
    size_t    size;
    lb_status st = lb__read_file(path2(p, rel, NULL), LB__IMAGE_MAX_FILE, &data, &size, err);
    if (st) return st;
    st = lb__image_decode(p, data, size, want_c, pix, c, h, w, err);
    free(data);
    return st;
}

/* ---------------------------------------------------------------- decoding */

START_TEST(test_png_variants)
{
    static const struct { int type, depth, native_c; bool trns; } v[] = {
        { PNG_COLOR_TYPE_GRAY, 8, 1, false },    { PNG_COLOR_TYPE_RGB, 8, 3, false },
        { PNG_COLOR_TYPE_PALETTE, 8, 3, false }, { PNG_COLOR_TYPE_RGB, 16, 3, false },
        { PNG_COLOR_TYPE_RGBA, 8, 3, false },    { PNG_COLOR_TYPE_GRAY_ALPHA, 8, 1, false },
        { PNG_COLOR_TYPE_GRAY, 16, 1, false },   { PNG_COLOR_TYPE_RGBA, 16, 3, false },
        { PNG_COLOR_TYPE_PALETTE, 8, 3, true },  { PNG_COLOR_TYPE_RGB, 8, 3, true },
        { PNG_COLOR_TYPE_GRAY, 8, 1, true },
    };
    const int W = 4, H = 3;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "v%zu.png", i);
        write_png_trns(rel, W, H, v[i].type, v[i].depth, v[i].trns);
        uint8_t *pix;
        int      c, h, w;
        lb_error err = { 0 };
        ck_assert_msg(decode_rel(rel, 0, &pix, &c, &h, &w, &err) == LB_OK, "%s", err.msg);
        ck_assert_int_eq(c, v[i].native_c);
        ck_assert_int_eq(h, H);
        ck_assert_int_eq(w, W);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int k = 0; k < c; k++)
                    ck_assert_msg(pix[(y * W + x) * c + k] == ref_px(y, x, k),
                                  "variant %zu (%d,%d,%d): %d vs %d", i, y, x, k,
                                  pix[(y * W + x) * c + k], ref_px(y, x, k));
        free(pix);
        /* converted: gray to 3 channels copies, colour to 1 channel is the luminance */
        ck_assert_msg(decode_rel(rel, v[i].native_c == 1 ? 3 : 1, &pix, &c, &h, &w, &err) == LB_OK,
                      "%s", err.msg);
        if (v[i].native_c == 1) {
            ck_assert_int_eq(c, 3);
            ck_assert_uint_eq(pix[5 * 3 + 2], ref_px(1, 1, 0));
        } else {
            ck_assert_int_eq(c, 1);
            const double lum = 0.299 * ref_px(1, 1, 0) + 0.587 * ref_px(1, 1, 1) +
                               0.114 * ref_px(1, 1, 2);
            ck_assert_msg(abs((int)pix[5] - (int)(lum + 0.5)) <= 1, "%d vs %f", pix[5], lum);
        }
        free(pix);
    }
}
END_TEST

START_TEST(test_jpeg_gray_and_rgb)
{
    for (int C = 1; C <= 3; C += 2) {
        const char *rel = C == 1 ? "g.jpg" : "c.jpg";
        write_jpeg(rel, 8, 6, C);
        uint8_t *pix;
        int      c, h, w, maxd = 0;
        lb_error err = { 0 };
        ck_assert_msg(decode_rel(rel, 0, &pix, &c, &h, &w, &err) == LB_OK, "%s", err.msg);
        ck_assert_int_eq(c, C);
        ck_assert_int_eq(h, 6);
        ck_assert_int_eq(w, 8);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 8; x++)
                for (int k = 0; k < C; k++) {
                    int d = abs((int)pix[(y * 8 + x) * C + k] - (int)jpg_px(y, x, k));
                    maxd  = d > maxd ? d : maxd;
                }
        ck_assert_msg(maxd <= 8, "JPEG q100 off by %d", maxd); /* lossy, but close */
        free(pix);
    }
}
END_TEST

START_TEST(test_decode_corrupt)
{
    write_png("ok.png", 4, 3, PNG_COLOR_TYPE_RGB, 8);
    write_jpeg("ok.jpg", 16, 16, 3);
    uint8_t *data;
    size_t   size;
    char     p[P];
    lb_error err = { 0 };
    /* cut each file in half, and flip bytes inside the PNG's image data */
    const char *src[2] = { "ok.png", "ok.jpg" }, *dst[2] = { "cut.png", "cut.jpg" };
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(lb__read_file(path2(p, src[i], NULL), 1 << 20, &data, &size, &err), LB_OK);
        write_bytes(dst[i], data, size / 2);
        if (i == 0) {
            for (size_t k = 40; k < size - 12; k++) data[k] ^= 0x5A;
            write_bytes("flip.png", data, size);
        }
        free(data);
    }
    write_bytes("garbage.png", "hello, world", 12);
    write_bytes("empty.jpg", "", 0);
    /* a header claiming 16000 x 16000 RGB pixels (768 MB) with a valid CRC, in a file of
     * under 100 bytes: refused before anything that size is allocated */
    ck_assert_int_eq(lb__read_file(path2(p, "ok.png", NULL), 1 << 20, &data, &size, &err), LB_OK);
    const uint8_t side[4] = { 0, 0, 0x3e, 0x80 }; /* 16000, big-endian */
    memcpy(data + 16, side, 4);                   /* IHDR width  */
    memcpy(data + 20, side, 4);                   /* IHDR height */
    const uint32_t crc = (uint32_t)crc32(0, data + 12, 17); /* "IHDR" and its 13 bytes */
    const uint8_t be[4] = { (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                            (uint8_t)crc };
    memcpy(data + 29, be, 4);
    write_bytes("huge.png", data, size);
    free(data);
    const char *bad[] = { "cut.png", "cut.jpg", "flip.png", "garbage.png", "empty.jpg", "huge.png" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *pix = (uint8_t *)1;
        int      c, h, w;
        lb_status st = decode_rel(bad[i], 0, &pix, &c, &h, &w, &err);
        ck_assert_msg(st == LB_ERR_FORMAT, "%s: %s", bad[i], err.msg);
        ck_assert_ptr_null(pix);
        ck_assert_msg(strstr(err.msg, path2(p, bad[i], NULL)), "%s", err.msg);
    }
    uint8_t *pix;
    int      c, h, w;
    ck_assert_int_eq(decode_rel("huge.png", 0, &pix, &c, &h, &w, &err), LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "claims 16000x16000"), "%s", err.msg);
}
END_TEST

START_TEST(test_resize_bilinear)
{
    const uint8_t src[2 * 2] = { 0, 100, 200, 40 };
    uint8_t       dst[4 * 4];
    lb__image_resize(src, 1, 2, 2, dst, 4, 4);
    /* corners replicate, the centre 2x2 blends 3/4-1/4 (half-pixel centres) */
    ck_assert_uint_eq(dst[0], 0);
    ck_assert_uint_eq(dst[3], 100);
    ck_assert_uint_eq(dst[12], 200);
    ck_assert_uint_eq(dst[15], 40);
    /* dst(1,1) = .75*.75*0 + .75*.25*100 + .25*.75*200 + .25*.25*40 = 18.75+37.5+2.5 = 58.75 */
    ck_assert_uint_eq(dst[5], 59);
    uint8_t same[4];
    lb__image_resize(src, 1, 2, 2, same, 2, 2);
    ck_assert_mem_eq(same, src, 4);
}
END_TEST

/* ---------------------------------------------------------------- image folders */

/* root/b/{10,2}.png, root/a/{x.png, y.jpg... } */
static void make_folder(const char *root)
{
    char d[P];
    snprintf(d, sizeof d, "%s/zebra", root), mkdirs(d);
    snprintf(d, sizeof d, "%s/ant", root), mkdirs(d);
    snprintf(d, sizeof d, "%s/Moose", root), mkdirs(d); /* 'M' < 'a' in strcmp */
    snprintf(d, sizeof d, "%s/.hidden", root), mkdirs(d);
    snprintf(d, sizeof d, "%s/zebra/10.png", root), write_png(d, 4, 3, PNG_COLOR_TYPE_RGB, 8);
    snprintf(d, sizeof d, "%s/zebra/2.png", root), write_png(d, 4, 3, PNG_COLOR_TYPE_GRAY, 8);
    snprintf(d, sizeof d, "%s/ant/b.JPG", root), write_jpeg(d, 4, 3, 3);
    snprintf(d, sizeof d, "%s/ant/a.png", root), write_png(d, 4, 3, PNG_COLOR_TYPE_PALETTE, 8);
    snprintf(d, sizeof d, "%s/ant/notes.txt", root), write_bytes(d, "x", 1);
    snprintf(d, sizeof d, "%s/Moose/m.png", root), write_png(d, 4, 3, PNG_COLOR_TYPE_RGBA, 8);
    snprintf(d, sizeof d, "%s/.hidden/h.png", root), write_png(d, 4, 3, PNG_COLOR_TYPE_RGB, 8);
    snprintf(d, sizeof d, "%s/README", root), write_bytes(d, "x", 1);
}

START_TEST(test_folder_sorted_classes)
{
    make_folder("f");
    char            root[P];
    lb_dataset      ds;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    o.use_cache         = false;
    ck_assert_msg(lb_folder_load(path2(root, "f", NULL), "f", NULL, &o, &ds, &err) == LB_OK, "%s",
                  err.msg);
    ck_assert_int_eq(ds.n_classes, 3);
    ck_assert_str_eq(ds.class_names, "Moose");
    ck_assert_str_eq(ds.class_names + LB_CLASS_NAME_MAX, "ant");
    ck_assert_str_eq(ds.class_names + 2 * LB_CLASS_NAME_MAX, "zebra");
    ck_assert_int_eq(ds.n, 5);
    /* Moose/m, ant/a, ant/b, zebra/10, zebra/2 */
    static const int32_t labels[5] = { 0, 1, 1, 2, 2 };
    for (int i = 0; i < 5; i++) ck_assert_int_eq(ds.labels[i], labels[i]);
    ck_assert_int_eq(ds.c, 3); /* the first image (Moose/m.png, RGBA) decides: colour */
    ck_assert_int_eq(ds.h, 3);
    ck_assert_int_eq(ds.w, 4);
    /* planar: image 1 (ant/a.png, palette) channel 2 at (y=2, x=1) */
    ck_assert_uint_eq(ds.images[1 * 36 + 2 * 12 + 2 * 4 + 1], ref_px(2, 1, 2));
    /* zebra/2.png is gray: copied to all three channels */
    ck_assert_uint_eq(ds.images[4 * 36 + 0 * 12 + 5], ref_px(1, 1, 0));
    ck_assert_uint_eq(ds.images[4 * 36 + 2 * 12 + 5], ref_px(1, 1, 0));
    ck_assert(!ds.from_cache);
    lb_dataset_free(&ds);
    /* one channel on request */
    o.channels = 1;
    ck_assert_int_eq(lb_folder_load(root, "f", NULL, &o, &ds, &err), LB_OK);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_uint_eq(ds.images[4 * 12 + 5], ref_px(1, 1, 0));
    lb_dataset_free(&ds);
}
END_TEST

START_TEST(test_folder_wrong_size)
{
    make_folder("f");
    char d[P], root[P];
    snprintf(d, sizeof d, "f/zebra/3.png"), write_png(d, 5, 3, PNG_COLOR_TYPE_RGB, 8);
    lb_dataset      ds;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    o.use_cache         = false;
    ck_assert_int_eq(lb_folder_load(path2(root, "f", NULL), "f", NULL, &o, &ds, &err),
                     LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, path2(d, "f/zebra/3.png", NULL)) && strstr(err.msg, "5x3"),
                  "%s", err.msg);
    ck_assert_ptr_null(ds.images);
    o.resize = true;
    ck_assert_msg(lb_folder_load(root, "f", NULL, &o, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 6);
    ck_assert_int_eq(ds.w, 4);
    lb_dataset_free(&ds);
    /* an explicit size: every image is checked against it */
    o.resize = false, o.height = 3, o.width = 5;
    ck_assert_int_eq(lb_folder_load(root, "f", NULL, &o, &ds, &err), LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "Moose/m.png"), "%s", err.msg);
}
END_TEST

START_TEST(test_folder_corrupt_stop_or_skip)
{
    make_folder("f");
    char d[P], root[P];
    write_bytes("f/ant/c.png", "\x89PNG\r\n\x1a\n broken", 15);
    lb_dataset      ds;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    o.use_cache         = false;
    ck_assert_int_eq(lb_folder_load(path2(root, "f", NULL), "f", NULL, &o, &ds, &err),
                     LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, path2(d, "f/ant/c.png", NULL)), "%s", err.msg);
    ck_assert_ptr_null(ds.images);
    o.skip_corrupt = true;
    ck_assert_msg(lb_folder_load(root, "f", NULL, &o, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 5);
    ck_assert_int_eq(ds.n_skipped, 1);
    ck_assert_int_eq(ds.labels[3], 2); /* the labels stay with their images */
    lb_dataset_free(&ds);
    /* a corrupt first image: skipped as well, the next one decides the geometry */
    write_bytes("f/Moose/a.png", "junk", 4);
    ck_assert_msg(lb_folder_load(root, "f", NULL, &o, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n_skipped, 2);
    ck_assert_int_eq(ds.n, 5);
    lb_dataset_free(&ds);
}
END_TEST

START_TEST(test_folder_errors)
{
    char            root[P];
    lb_dataset      ds;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    ck_assert_int_eq(lb_folder_load(path2(root, "missing", NULL), "m", "m", &o, &ds, &err),
                     LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, root), "%s", err.msg);
    mkdirs("empty");
    ck_assert_int_eq(lb_folder_load(path2(root, "empty", NULL), "e", "e", &o, &ds, &err),
                     LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "no class folders"), "%s", err.msg);
    mkdirs("noimg/a");
    ck_assert_int_eq(lb_folder_load(path2(root, "noimg", NULL), "e", "e", &o, &ds, &err),
                     LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "no .png"), "%s", err.msg);
}
END_TEST

/* Every sample of a and b has the same pixels (either may be streamed). */
static void assert_same_pixels(const lb_dataset *a, const lb_dataset *b)
{
    ck_assert_int_eq(a->n, b->n);
    ck_assert(a->c == b->c && a->h == b->h && a->w == b->w);
    const size_t chw = (size_t)a->c * a->h * a->w;
    uint8_t     *sa = malloc(chw), *sb = malloc(chw);
    lb_error     err = { 0 };
    for (int64_t i = 0; i < a->n; i++) {
        const uint8_t *pa = lb_dataset_pixels(a, i, sa, &err);
        ck_assert_msg(pa != NULL, "%s", err.msg);
        const uint8_t *pb = lb_dataset_pixels(b, i, sb, &err);
        ck_assert_msg(pb != NULL, "%s", err.msg);
        ck_assert_msg(!memcmp(pa, pb, chw), "sample %lld differs", (long long)i);
    }
    free(sa), free(sb);
}

/* Flips one byte of file p at offset off from the end. */
static void damage(const char *p, long off)
{
    FILE *f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, -off, SEEK_END), 0);
    int c = fgetc(f);
    ck_assert_int_eq(fseek(f, -off, SEEK_END), 0);
    fputc(c ^ 0xFF, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* _i = 0: in memory, 1: streamed from the cache (the same checks before trusting it) */
START_TEST(test_folder_cache)
{
    make_folder("f");
    char            root[P], cpath[P];
    lb_dataset      a, b;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    o.stream            = _i;
    path2(root, "f", NULL);
    path2(cpath, "cache/f-train.lbds", NULL);
    ck_assert_msg(lb_folder_load(root, "f", "f-train", &o, &a, &err) == LB_OK, "%s", err.msg);
    ck_assert(!a.from_cache);
    ck_assert_int_eq(access(cpath, F_OK), 0);
    /* hit: same pixels, labels, names */
    ck_assert_msg(lb_folder_load(root, "f", "f-train", &o, &b, &err) == LB_OK, "%s", err.msg);
    ck_assert(b.from_cache);
    ck_assert_int_eq(lb_dataset_streams(&a), _i); /* the fresh cache is streamed at once */
    ck_assert_int_eq(lb_dataset_streams(&b), _i);
    ck_assert_int_eq(b.n, a.n);
    ck_assert_int_eq(b.c, a.c);
    assert_same_pixels(&a, &b);
    ck_assert_mem_eq(b.labels, a.labels, (size_t)a.n * sizeof *a.labels);
    ck_assert_mem_eq(b.class_names, a.class_names, (size_t)a.n_classes * LB_CLASS_NAME_MAX);
    ck_assert_str_eq(b.name, "f");
    lb_dataset_free(&b);
    /* other options: miss */
    o.channels = 1;
    ck_assert_int_eq(lb_folder_load(root, "f", "f-train", &o, &b, &err), LB_OK);
    ck_assert(!b.from_cache);
    ck_assert_int_eq(b.c, 1);
    lb_dataset_free(&b);
    o.channels = 0;
    ck_assert_int_eq(lb_folder_load(root, "f", "f-train", &o, &b, &err), LB_OK);
    ck_assert(!b.from_cache); /* the gray cache replaced the colour one */
    lb_dataset_free(&b);
    /* a new file: miss, then hit */
    write_png("f/ant/z.png", 4, 3, PNG_COLOR_TYPE_RGB, 8);
    ck_assert_int_eq(lb_folder_load(root, "f", "f-train", &o, &b, &err), LB_OK);
    ck_assert(!b.from_cache);
    ck_assert_int_eq(b.n, a.n + 1);
    lb_dataset_free(&b);
    ck_assert_int_eq(lb_folder_load(root, "f", "f-train", &o, &b, &err), LB_OK);
    ck_assert(b.from_cache);
    lb_dataset_free(&b);
    /* a damaged cache (pixels, then the CRC, then cut short) is rebuilt, not trusted */
    for (int k = 0; k < 3; k++) {
        if (k < 2) damage(cpath, k == 0 ? 40 : 2);
        else ck_assert_int_eq(truncate(cpath, 30), 0);
        ck_assert_int_eq(lb_folder_load(root, "f", "f-train", &o, &b, &err), LB_OK);
        ck_assert_msg(!b.from_cache, "damage %d went unnoticed", k);
        ck_assert_int_eq(b.n, a.n + 1);
        lb_dataset_free(&b);
    }
    ck_assert_int_eq(lb_folder_load(root, "f", "f-train", &o, &b, &err), LB_OK);
    ck_assert(b.from_cache);
    lb_dataset_free(&b);
    /* a cache of another folder with the same name is not used */
    char copy[P];
    ck_assert_int_eq(rename(root, path2(copy, "g", NULL)), 0);
    ck_assert_int_eq(lb_folder_load(copy, "f", "f-train", &o, &b, &err), LB_OK);
    ck_assert(!b.from_cache);
    lb_dataset_free(&b);
    lb_dataset_free(&a);
}
END_TEST

/* ---------------------------------------------------------------- archives */

typedef struct { const char *path; int type; const char *target; } tar_entry;

static void write_tar(const char *rel, const tar_entry *e, int n)
{
    char            p[P];
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
    ck_assert_int_eq(archive_write_open_filename(a, path2(p, rel, NULL)), ARCHIVE_OK);
    for (int i = 0; i < n; i++) {
        struct archive_entry *en = archive_entry_new();
        archive_entry_set_pathname(en, e[i].path);
        archive_entry_set_filetype(en, (unsigned)e[i].type);
        archive_entry_set_perm(en, 0644);
        const char *body = "content";
        if (e[i].type == AE_IFLNK) archive_entry_set_symlink(en, e[i].target);
        archive_entry_set_size(en, e[i].type == AE_IFREG ? 7 : 0);
        ck_assert_int_eq(archive_write_header(a, en), ARCHIVE_OK);
        if (e[i].type == AE_IFREG) ck_assert_int_eq(archive_write_data(a, body, 7), 7);
        archive_entry_free(en);
    }
    ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

START_TEST(test_unpack_good_once)
{
    const tar_entry e[] = { { "train/", AE_IFDIR, NULL }, { "./train/a/1.txt", AE_IFREG, NULL },
                            { "test/b/2.txt", AE_IFREG, NULL } };
    write_tar("ok.tar.gz", e, 3);
    char     arc[P], dest[P], f[P];
    lb_error err = { 0 };
    path2(arc, "ok.tar.gz", NULL), path2(dest, "cache/ok", NULL);
    /* the temporary folder of an unpack whose process died is cleaned up */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    ck_assert_int_gt(dead, 0);
    ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
    char stale[64];
    snprintf(stale, sizeof stale, "cache/ok.tmp-%ld/train", (long)dead);
    mkdirs(stale);
    ck_assert_msg(lb_archive_unpack(arc, dest, NULL, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(access(path2(f, "cache/ok/train/a/1.txt", NULL), F_OK), 0);
    ck_assert_int_eq(access(path2(f, "cache/ok/test/b/2.txt", NULL), F_OK), 0);
    /* once: a second call leaves the folder alone (a file removed stays removed) */
    unlink(path2(f, "cache/ok/test/b/2.txt", NULL));
    ck_assert_int_eq(lb_archive_unpack(arc, dest, NULL, &err), LB_OK);
    ck_assert_int_eq(access(f, F_OK), -1);
    /* an interrupted unpack (no stamp) is redone */
    unlink(path2(f, "cache/ok/.lowbit-unpacked", NULL));
    ck_assert_int_eq(lb_archive_unpack(arc, dest, NULL, &err), LB_OK);
    ck_assert_int_eq(access(path2(f, "cache/ok/test/b/2.txt", NULL), F_OK), 0);
    ck_assert_int_eq(count_entries(path2(f, "cache", NULL)), 1); /* no temporary left */
    ck_assert_int_eq(access(path2(f, "cache/ok/.lowbit-unpacked", NULL), F_OK), 0);
}
END_TEST

/* 0 "../", 1 absolute path, 2 symbolic link, 3 ".." in the middle, 4 not an archive */
START_TEST(test_unpack_rejects)
{
    char     arc[P], dest[P], f[P];
    lb_error err = { 0 };
    path2(arc, "bad.tar.gz", NULL), path2(dest, "cache/bad", NULL);
    mkdirs("cache");
    const char *needle = "rejected";
    if (_i == 0) {
        const tar_entry e[] = { { "train/a.txt", AE_IFREG, NULL },
                                { "../evil.txt", AE_IFREG, NULL } };
        write_tar("bad.tar.gz", e, 2);
    } else if (_i == 1) {
        char abs[P];
        path2(abs, "abs-evil.txt", NULL);
        const tar_entry e[] = { { abs, AE_IFREG, NULL } };
        write_tar("bad.tar.gz", e, 1);
    } else if (_i == 2) {
        const tar_entry e[] = { { "train/link", AE_IFLNK, "/etc/passwd" } };
        write_tar("bad.tar.gz", e, 1);
    } else if (_i == 3) {
        const tar_entry e[] = { { "train/../../evil.txt", AE_IFREG, NULL } };
        write_tar("bad.tar.gz", e, 1);
    } else {
        write_bytes("bad.tar.gz", "this is not a tar archive at all, not even close........", 56);
        needle = NULL;
    }
    lb_status st = lb_archive_unpack(arc, dest, NULL, &err);
    ck_assert_msg(st == LB_ERR_FORMAT, "case %d: %s", _i, err.msg);
    ck_assert_msg(strstr(err.msg, arc), "%s", err.msg);
    if (needle) ck_assert_msg(strstr(err.msg, needle), "%s", err.msg);
    ck_assert_int_eq(access(dest, F_OK), -1);
    ck_assert_int_eq(access(path2(f, "evil.txt", NULL), F_OK), -1);
    ck_assert_int_eq(access(path2(f, "abs-evil.txt", NULL), F_OK), -1);
    ck_assert_int_eq(count_entries(path2(f, "cache", NULL)), 0); /* temporary removed */
}
END_TEST

/* --data PATH: an image folder with train/ and test/, its own normalisation and cache. */
START_TEST(test_load_ex_path)
{
    make_folder("set/train");
    make_folder("set/test");
    write_jpeg("set/test/ant/c.jpg", 4, 3, 1); /* test/ alone would have other statistics */
    char            root[P];
    lb_dataset      ds;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    ck_assert_msg(lb_dataset_load_ex(path2(root, "set", NULL), NULL, LB_SPLIT_TEST, &o, &ds,
                                     &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 6);
    ck_assert_str_eq(ds.name, "set");
    ck_assert(ds.mean[0] > 0.0f && ds.std[0] > 0.0f && ds.std[0] != 1.0f);
    lb_dataset tr;
    ck_assert_int_eq(lb_dataset_load_ex(root, NULL, LB_SPLIT_TRAIN, &o, &tr, &err), LB_OK);
    ck_assert_mem_eq(ds.mean, tr.mean, sizeof ds.mean); /* test uses train/'s statistics */
    ck_assert_mem_eq(ds.std, tr.std, sizeof ds.std);
    lb_dataset_free(&tr);
    lb_dataset_free(&ds);
    ck_assert_int_eq(lb_dataset_load_ex("folder", root, LB_SPLIT_TRAIN, &o, &ds, &err), LB_OK);
    ck_assert_int_eq(ds.n, 5);
    lb_dataset_free(&ds);
    ck_assert_int_eq(lb_dataset_load_ex("folder", NULL, LB_SPLIT_TRAIN, &o, &ds, &err), LB_ERR_ARG);
    /* a known archive name found nowhere: LB_ERR_IO listing the root */
    ck_assert_int_eq(lb_dataset_load_ex("cifar10", root, LB_SPLIT_TRAIN, &o, &ds, &err), LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, root) && strstr(err.msg, "cifar10-jpeg.tar.gz"), "%s", err.msg);
}
END_TEST

/* Adds the file at tmp/<rel> to the archive as <name>. */
static void tar_add_file(struct archive *a, const char *rel, const char *name)
{
    char     p[P];
    uint8_t *data;
    size_t   size;
    lb_error err = { 0 };
    ck_assert_int_eq(lb__read_file(path2(p, rel, NULL), 1 << 20, &data, &size, &err), LB_OK);
    struct archive_entry *en = archive_entry_new();
    archive_entry_set_pathname(en, name);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, 0644);
    archive_entry_set_size(en, (la_int64_t)size);
    ck_assert_int_eq(archive_write_header(a, en), ARCHIVE_OK);
    ck_assert_int_eq(archive_write_data(a, data, size), (la_ssize_t)size);
    archive_entry_free(en);
    free(data);
}

/* --data cifar10 with a data dir holding cifar10-jpeg.tar.gz: unpacked into the cache, read as
 * an image folder with the CIFAR-10 normalisation; the binary folder wins when both exist. */
START_TEST(test_load_ex_cifar10_sources)
{
    write_jpeg("img.jpg", 32, 32, 3);
    mkdirs("data");
    char            p[P], data[P];
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
    ck_assert_int_eq(archive_write_open_filename(a, path2(p, "data/cifar10-jpeg.tar.gz", NULL)),
                     ARCHIVE_OK);
    tar_add_file(a, "img.jpg", "train/bird/0000.jpg");
    tar_add_file(a, "img.jpg", "train/airplane/0000.jpg");
    tar_add_file(a, "img.jpg", "train/airplane/0001.jpg");
    tar_add_file(a, "img.jpg", "test/cat/0000.jpg");
    ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    lb_dataset      ds;
    lb_error        err = { 0 };
    lb_dataset_opts o   = opts_here();
    path2(data, "data", NULL);
    ck_assert_msg(lb_dataset_load_ex("cifar10", data, LB_SPLIT_TRAIN, &o, &ds, &err) == LB_OK,
                  "%s", err.msg);
    ck_assert_int_eq(ds.n, 3);
    ck_assert_int_eq(ds.c, 3);
    ck_assert_str_eq(ds.name, "cifar10");
    ck_assert_str_eq(ds.class_names, "airplane");
    ck_assert_int_eq(ds.labels[2], 1); /* bird */
    ck_assert_float_eq_tol(ds.mean[1], 0.4822f, 1e-6f);
    ck_assert(!ds.from_cache);
    ck_assert_int_eq(access(path2(p, "cache/cifar10-jpeg/train/bird/0000.jpg", NULL), F_OK), 0);
    ck_assert_int_eq(access(path2(p, "cache/cifar10-train.lbds", NULL), F_OK), 0);
    lb_dataset_free(&ds);
    ck_assert_int_eq(lb_dataset_load_ex("cifar-10", data, LB_SPLIT_TRAIN, &o, &ds, &err), LB_OK);
    ck_assert(ds.from_cache); /* second time: no unpack, no decode */
    lb_dataset_free(&ds);
    /* the official binary batches next to the archive are preferred */
    mkdirs("data/cifar-10-batches-bin");
    mkdirs("bin");
    for (int f = 1; f <= 5; f++) {
        char name[64];
        snprintf(name, sizeof name, "../data/cifar-10-batches-bin/data_batch_%d.bin", f);
        write_cifar(name, 0, 1, -1, 0); /* write_cifar writes under tmp/bin/ */
    }
    ck_assert_msg(lb_dataset_load_ex("cifar10", data, LB_SPLIT_TRAIN, &o, &ds, &err) == LB_OK,
                  "%s", err.msg);
    ck_assert_int_eq(ds.n, 5);
    ck_assert_ptr_nonnull(strstr(ds.source, "cifar-10-batches-bin"));
    lb_dataset_free(&ds);
}
END_TEST

/* ---------------------------------------------------------------- augmentation */

/* A tiny (n=2, c=2, h=3, w=4) dataset with distinct pixels, mean 0.5, std 0.25. */
static void tiny(lb_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    ds->n = 2, ds->c = 2, ds->h = 3, ds->w = 4, ds->n_classes = 2;
    ds->images = malloc(2 * 24);
    ds->labels = malloc(2 * sizeof *ds->labels);
    for (int k = 0; k < 48; k++) ds->images[k] = (uint8_t)(10 + 5 * k);
    ds->labels[0] = 0, ds->labels[1] = 1;
    for (int c = 0; c < 3; c++) ds->mean[c] = 0.5f, ds->std[c] = 0.25f;
}

START_TEST(test_augment_crop_flip_exact)
{
    lb_dataset ds;
    tiny(&ds);
    bool seen_dy[9] = { 0 }, seen_dx[9] = { 0 }, seen_flip[2] = { 0 };
    for (uint64_t seed = 0; seed < 400; seed++) {
        lb_rng r = lb_rng_make(seed), q = r;
        float  out[24];
        lb_augment_pixels(&ds, ds.images + 24, LB_AUGMENT_CROP_FLIP, &r, out);
        /* the same draws, in the documented order */
        const int  dy   = (int)lb_rng_below(&q, 9) - 4, dx = (int)lb_rng_below(&q, 9) - 4;
        const bool flip = lb_rng_below(&q, 2) == 1;
        seen_dy[dy + 4] = seen_dx[dx + 4] = seen_flip[flip] = true;
        for (int c = 0; c < 2; c++)
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 4; x++) {
                    /* padded image (raw 0 outside), cropped at (dy+4, dx+4), then flipped */
                    const int xs = flip ? 3 - x : x;
                    const int sy = y + dy, sx = xs + dx;
                    const int raw = sy >= 0 && sy < 3 && sx >= 0 && sx < 4
                                        ? ds.images[24 + c * 12 + sy * 4 + sx] : 0;
                    const float want = ((float)raw / 255.0f - 0.5f) / 0.25f;
                    ck_assert_float_eq_tol(out[c * 12 + y * 4 + x], want, 1e-6f);
                }
    }
    for (int k = 0; k < 9; k++) ck_assert(seen_dy[k] && seen_dx[k]);
    ck_assert(seen_flip[0] && seen_flip[1]);
    /* a hand-checked case: the padding value is raw 0 normalised, (0 - 0.5) / 0.25 = -2 */
    lb_rng r;
    float  out[24];
    for (uint64_t seed = 0;; seed++) { /* find draws dy=-4 (all padding in row 0..), no flip */
        r = lb_rng_make(seed);
        lb_rng q = r;
        if (lb_rng_below(&q, 9) == 0 && lb_rng_below(&q, 9) == 4 && lb_rng_below(&q, 2) == 0) break;
    }
    lb_augment_pixels(&ds, ds.images, LB_AUGMENT_CROP_FLIP, &r, out); /* dy = -4: all padding */
    for (int k = 0; k < 24; k++) ck_assert_float_eq_tol(out[k], -2.0f, 1e-6f);
    lb_dataset_free(&ds);
}
END_TEST

/* Cutout: the square the documented draws give, clipped at the border, is 0 in every channel
 * and nothing else changes; centres near every edge are seen. */
START_TEST(test_cutout_exact)
{
    lb_dataset ds;
    tiny(&ds); /* 2 channels of 3 x 4 */
    bool clipped_top = false, clipped_right = false, inside = false;
    for (uint64_t seed = 0; seed < 200; seed++) {
        for (int size = 1; size <= 5; size++) {
            lb_rng r = lb_rng_make(seed), q = r;
            float  out[24];
            for (int k = 0; k < 24; k++) out[k] = 1.0f + (float)k;
            lb_cutout_pixels(&ds, size, &r, out);
            const int cy = (int)lb_rng_below(&q, 3), cx = (int)lb_rng_below(&q, 4);
            const int y0 = cy - size / 2, x0 = cx - size / 2;
            clipped_top |= y0 < 0, clipped_right |= x0 + size > 4;
            inside |= y0 >= 0 && x0 >= 0 && y0 + size <= 3 && x0 + size <= 4 && size == 2;
            for (int c = 0; c < 2; c++)
                for (int y = 0; y < 3; y++)
                    for (int x = 0; x < 4; x++) {
                        const bool in = y >= y0 && y < y0 + size && x >= x0 && x < x0 + size;
                        const int  k = c * 12 + y * 4 + x;
                        ck_assert_float_eq(out[k], in ? 0.0f : 1.0f + (float)k);
                    }
        }
    }
    ck_assert(clipped_top && clipped_right && inside);
    lb_dataset_free(&ds);
}
END_TEST

/* All the samples of one epoch as a batcher serves them. */
static void epoch_batches(lb_batcher *b, lb_prefetch *p, int64_t skip, float *x, int32_t *y,
                          int64_t max_batches)
{
    const int64_t chw = (int64_t)b->ds->c * b->ds->h * b->ds->w;
    if (p) lb_prefetch_start_epoch(p, skip);
    else {
        lb_batcher_start_epoch(b);
        b->pos = skip;
    }
    int64_t got = 0, n, k = 0;
    while (k++ < max_batches && (n = p ? lb_prefetch_next(p, x + got * chw, y + got)
                                       : lb_batcher_next(b, x + got * chw, y + got)) > 0)
        got += n;
}

static void seq_dataset(lb_dataset *ds, int64_t n)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n, ds->c = 3, ds->h = 6, ds->w = 5, ds->n_classes = 10;
    ds->images = malloc((size_t)n * 90);
    ds->labels = malloc((size_t)n * sizeof *ds->labels);
    for (int64_t k = 0; k < n * 90; k++) ds->images[k] = (uint8_t)(k * 7 + k / 90);
    for (int64_t i = 0; i < n; i++) ds->labels[i] = (int32_t)(i % 10);
    for (int c = 0; c < 3; c++) ds->mean[c] = 0.4f, ds->std[c] = 0.2f;
}

START_TEST(test_augment_deterministic)
{
    lb_dataset ds;
    seq_dataset(&ds, 37);
    lb_batcher a, b;
    lb_error   err = { 0 };
    ck_assert_int_eq(lb_batcher_init(&a, &ds, 8, true, 5, &err), LB_OK);
    ck_assert_int_eq(lb_batcher_init(&b, &ds, 8, true, 5, &err), LB_OK);
    a.augment = b.augment = LB_AUGMENT_CROP_FLIP;
    const size_t nx = 37 * 90;
    float  *xa = calloc(nx, sizeof *xa), *xb = calloc(nx, sizeof *xb), *x0 = calloc(nx, sizeof *x0);
    int32_t ya[37], yb[37];
    epoch_batches(&a, NULL, 0, x0, ya, 100);
    epoch_batches(&a, NULL, 0, xa, ya, 100);  /* epoch 2 */
    /* resuming: replay epoch 1's shuffle, then epoch 2 from sample 16 (after 2 batches) */
    lb_batcher_start_epoch(&b);
    epoch_batches(&b, NULL, 16, xb + 16 * 90, yb + 16, 100);
    ck_assert_mem_eq(xb + 16 * 90, xa + 16 * 90, (nx - 16 * 90) * sizeof *xa);
    ck_assert_mem_eq(yb + 16, ya + 16, (37 - 16) * sizeof *ya);
    ck_assert(memcmp(x0, xa, nx * sizeof *xa) != 0); /* epochs differ */
    /* cutout draws after crop-flip: epoch 2 again with a 2x2 cutout differs from xa only by
     * zeros, in at most 2x2 pixels of each of a sample's 3 channels, in some sample */
    lb_batcher c;
    ck_assert_int_eq(lb_batcher_init(&c, &ds, 8, true, 5, &err), LB_OK);
    c.augment = LB_AUGMENT_CROP_FLIP;
    c.cutout = 2;
    epoch_batches(&c, NULL, 0, x0, ya, 100);
    epoch_batches(&c, NULL, 0, xb, yb, 100);
    int64_t cut_total = 0;
    for (int64_t i = 0; i < 37; i++) {
        int cut = 0;
        for (int k = 0; k < 90; k++)
            if (xb[i * 90 + k] != xa[i * 90 + k]) {
                ck_assert_float_eq(xb[i * 90 + k], 0.0f);
                cut++;
            }
        ck_assert_int_le(cut, 12);
        cut_total += cut;
    }
    ck_assert_int_gt(cut_total, 37 * 3); /* more than one pixel per sample on average */
    lb_batcher_free(&c);
    /* none: exactly lb_dataset_get */
    a.augment = LB_AUGMENT_NONE;
    epoch_batches(&a, NULL, 0, xa, ya, 100);
    float one[90];
    ck_assert_int_eq(lb_dataset_get(&ds, a.order[3], one, NULL), LB_OK);
    ck_assert_mem_eq(xa + 3 * 90, one, sizeof one);
    lb_batcher_free(&a);
    lb_batcher_free(&b);
    free(xa), free(xb), free(x0);
    lb_dataset_free(&ds);
    lb_augment aug;
    ck_assert_int_eq(lb_augment_parse("crop-flip", &aug, &err), LB_OK);
    ck_assert_int_eq(aug, LB_AUGMENT_CROP_FLIP);
    ck_assert_int_eq(lb_augment_parse("flip", &aug, &err), LB_ERR_ARG);
}
END_TEST

/* ---------------------------------------------------------------- prefetch */

START_TEST(test_prefetch_same_batches)
{
    lb_dataset ds;
    seq_dataset(&ds, 45);
    lb_error err = { 0 };
    for (int aug = 0; aug < 3; aug++) { /* none, crop-flip, cutout 3 alone */
        lb_batcher a, b;
        ck_assert_int_eq(lb_batcher_init(&a, &ds, 4, true, 77, &err), LB_OK);
        ck_assert_int_eq(lb_batcher_init(&b, &ds, 4, true, 77, &err), LB_OK);
        a.drop_last = b.drop_last = true;
        a.augment = b.augment = aug == 1 ? LB_AUGMENT_CROP_FLIP : LB_AUGMENT_NONE;
        a.cutout = b.cutout = aug == 2 ? 3 : 0;
        lb_prefetch *p = lb_prefetch_new(&b, true, &err);
        ck_assert_ptr_nonnull(p);
        const size_t nx = 45 * 90;
        float  *xa = calloc(nx, sizeof *xa), *xb = calloc(nx, sizeof *xb);
        int32_t ya[45], yb[45];
        /* full epochs, an epoch cut short (max steps), a resumed one starting at sample 12 */
        const int64_t skip[5] = { 0, 0, 0, 12, 0 }, maxb[5] = { 100, 3, 100, 100, 1 };
        for (int e = 0; e < 5; e++) {
            memset(xa, 0, nx * sizeof *xa), memset(xb, 0, nx * sizeof *xb);
            memset(ya, 0, sizeof ya), memset(yb, 0, sizeof yb);
            epoch_batches(&a, NULL, skip[e], xa, ya, maxb[e]);
            epoch_batches(&b, p, skip[e], xb, yb, maxb[e]);
            ck_assert_mem_eq(xa, xb, nx * sizeof *xa);
            ck_assert_mem_eq(ya, yb, sizeof ya);
        }
        float   x[4 * 90];
        int32_t y[4];
        lb_prefetch_start_epoch(p, 0);
        int64_t n, total = 0;
        while ((n = lb_prefetch_next(p, x, y)) > 0) total += n;
        ck_assert_int_eq(total, 44); /* drop_last: 11 batches of 4 */
        ck_assert_int_eq(lb_prefetch_next(p, x, y), 0); /* stays at the end */
        lb_prefetch_free(p);
        /* the synchronous mode is the same code path for callers */
        p = lb_prefetch_new(&a, false, &err);
        lb_prefetch_start_epoch(p, 0);
        ck_assert_int_eq(lb_prefetch_next(p, x, y), 4);
        lb_prefetch_free(p);
        lb_prefetch_free(NULL);
        free(xa), free(xb);
        lb_batcher_free(&a);
        lb_batcher_free(&b);
    }
    lb_dataset_free(&ds);
}
END_TEST

/* ---------------------------------------------------------------- streaming */

/* A W x H RGB PNG whose pixels depend on seed, so every image of a folder differs. */
static void write_png_seeded(const char *rel, int W, int H, unsigned seed)
{
    char      p[P];
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)W, img.height = (png_uint_32)H, img.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc((size_t)W * H * 3);
    for (int k = 0; k < W * H * 3; k++) buf[k] = (uint8_t)(k * 37 + seed * 101 + (k * k) % 13);
    ck_assert(png_image_write_to_file(&img, path2(p, rel, NULL), 0, buf, 0, NULL));
    free(buf);
}

/* tmp/<root>/train and test: 3 classes of 7 (train) or 2 (test) distinct 6x5 RGB images. */
static void make_seeded_folder(const char *root)
{
    static const char *const cls[3] = { "cat", "dog", "eel" };
    for (int sp = 0; sp < 2; sp++)
        for (int c = 0; c < 3; c++) {
            char d[P];
            snprintf(d, sizeof d, "%s/%s/%s", root, sp ? "test" : "train", cls[c]);
            mkdirs(d);
            for (int k = 0; k < (sp ? 2 : 7); k++) {
                char f[P + 16];
                snprintf(f, sizeof f, "%s/%d.png", d, k);
                write_png_seeded(f, 6, 5, (unsigned)(sp * 1000 + c * 10 + k));
            }
        }
}

/* mem (in memory) and st (streamed) hold the same data, and serve bit-identical batches:
 * the batcher on mem synchronously, the one on st through the prefetching thread; three
 * shuffled epochs with crop-flip (one resumed mid-epoch), one without augmentation, and
 * lb_dataset_get of every sample. */
static void assert_same_batches(const lb_dataset *mem, const lb_dataset *st)
{
    ck_assert(!lb_dataset_streams(mem) && mem->images);
    ck_assert(lb_dataset_streams(st) && !st->images);
    ck_assert_int_eq(st->n, mem->n);
    ck_assert(st->c == mem->c && st->h == mem->h && st->w == mem->w);
    ck_assert_int_eq(st->n_classes, mem->n_classes);
    ck_assert_mem_eq(st->labels, mem->labels, (size_t)mem->n * sizeof *mem->labels);
    ck_assert_mem_eq(st->mean, mem->mean, sizeof mem->mean); /* incl. computed statistics */
    ck_assert_mem_eq(st->std, mem->std, sizeof mem->std);
    const int64_t chw = (int64_t)mem->c * mem->h * mem->w, n = mem->n;
    float        *xa = calloc((size_t)(n * chw), sizeof *xa), *xb = calloc((size_t)(n * chw), 4);
    int32_t      *ya = calloc((size_t)n, sizeof *ya), *yb = calloc((size_t)n, sizeof *yb);
    lb_batcher    a, b;
    lb_error      err = { 0 };
    ck_assert_int_eq(lb_batcher_init(&a, mem, 4, true, 11, &err), LB_OK);
    ck_assert_msg(lb_batcher_init(&b, st, 4, true, 11, &err) == LB_OK, "%s", err.msg);
    ck_assert_ptr_null(a.pix);
    ck_assert_ptr_nonnull(b.pix);
    lb_prefetch *p = lb_prefetch_new(&b, true, &err);
    ck_assert_ptr_nonnull(p);
    const int64_t skip[4] = { 0, 0, 8, 0 };
    for (int e = 0; e < 4; e++) {
        a.augment = b.augment = e < 3 ? LB_AUGMENT_CROP_FLIP : LB_AUGMENT_NONE;
        memset(xa, 0, (size_t)(n * chw) * 4), memset(xb, 0, (size_t)(n * chw) * 4);
        epoch_batches(&a, NULL, skip[e], xa, ya, 1000);
        epoch_batches(&b, p, skip[e], xb, yb, 1000);
        ck_assert_msg(!memcmp(xa, xb, (size_t)(n * chw) * sizeof *xa), "epoch %d differs", e);
        ck_assert_mem_eq(ya, yb, (size_t)n * sizeof *ya);
    }
    ck_assert_int_eq(lb_prefetch_status(p, &err), LB_OK);
    lb_prefetch_free(p);
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(lb_dataset_get(mem, i, xa, &err), LB_OK);
        ck_assert_msg(lb_dataset_get(st, i, xb, &err) == LB_OK, "%s", err.msg);
        ck_assert_msg(!memcmp(xa, xb, (size_t)chw * sizeof *xa), "sample %lld", (long long)i);
    }
    lb_batcher_free(&a);
    lb_batcher_free(&b);
    free(xa), free(xb), free(ya), free(yb);
}

/* The same batches from memory and from the file: _i = 0 an image folder of unknown origin
 * (its statistics computed by reading the cache file through), 1 the CIFAR-10 binary batches
 * (ten samples over five files). */
START_TEST(test_stream_same_batches)
{
    lb_dataset_opts o = opts_here();
    char            root[P];
    const char     *name = _i == 0 ? path2(root, "set", NULL) : "cifar10";
    const char     *dir  = _i == 0 ? NULL : path2(root, "data", NULL);
    if (_i == 0) {
        make_seeded_folder("set");
    } else {
        mkdirs("data/cifar-10-batches-bin");
        mkdirs("bin"); /* write_cifar writes under tmp/bin/ */
        for (int f = 1; f <= 5; f++) {
            char fname[64];
            snprintf(fname, sizeof fname, "../data/cifar-10-batches-bin/data_batch_%d.bin", f);
            write_cifar(fname, (f - 1) * 2, 2, -1, 0);
        }
        write_cifar("../data/cifar-10-batches-bin/test_batch.bin", 100, 3, -1, 0);
    }
    for (int sp = 0; sp < 2; sp++) {
        const lb_split split = sp ? LB_SPLIT_TEST : LB_SPLIT_TRAIN;
        lb_dataset     st, mem, st2;
        lb_error       err = { 0 };
        o.stream = true; /* first: decodes, writes the cache, streams it */
        ck_assert_msg(lb_dataset_load_ex(name, dir, split, &o, &st, &err) == LB_OK, "%s", err.msg);
        o.stream = false;
        ck_assert_msg(lb_dataset_load_ex(name, dir, split, &o, &mem, &err) == LB_OK, "%s", err.msg);
        o.stream = true; /* then: straight from the cache */
        ck_assert_msg(lb_dataset_load_ex(name, dir, split, &o, &st2, &err) == LB_OK, "%s",
                      err.msg);
        ck_assert_int_eq(mem.n, _i == 0 ? (sp ? 6 : 21) : (sp ? 3 : 10));
        ck_assert_int_eq(st2.n_files, _i == 1 && !sp ? 5 : 1);
        if (_i == 0) ck_assert(st2.from_cache && !st.from_cache);
        assert_same_batches(&mem, &st);
        assert_same_batches(&mem, &st2);
        lb_dataset_free(&st);
        lb_dataset_free(&st2);
        lb_dataset_free(&mem);
        ck_assert_ptr_null(st.files);
        ck_assert_int_eq(st.n_files, 0);
    }
}
END_TEST

/* Cuts sample `cut` of ds's file short (everything after it is gone too). */
static void cut_sample(const lb_dataset *ds, int64_t cut)
{
    const int64_t          chw = (int64_t)ds->c * ds->h * ds->w;
    const lb_dataset_file *f   = NULL;
    for (int k = 0; k < ds->n_files; k++)
        if (cut >= ds->files[k].first && cut < ds->files[k].first + ds->files[k].count)
            f = &ds->files[k];
    ck_assert_ptr_nonnull(f);
    const off_t at = (off_t)(f->offset + (uint64_t)(cut - f->first) * f->stride + (uint64_t)chw / 2);
    ck_assert_int_eq(truncate(f->path, at), 0);
}

/* A file truncated after it was opened: the batcher reports a sticky LB_ERR_IO naming the
 * file (directly and through the prefetch thread), the samples before the cut still read,
 * and nothing crashes. _i = 0 the decoded cache, 1 the CIFAR-10 binary batches. */
START_TEST(test_stream_truncated_after_open)
{
    lb_dataset_opts o = opts_here();
    char            root[P], file[4096];
    lb_dataset      ds;
    lb_error        err = { 0 };
    if (_i == 0) {
        make_seeded_folder("set");
        ck_assert_msg(lb_dataset_load_ex(path2(root, "set", NULL), NULL, LB_SPLIT_TRAIN, &o, &ds,
                                         &err) == LB_OK, "%s", err.msg);
    } else {
        write_cifar_train();
        ck_assert_msg(lb_cifar10_bin_load(path2(root, "bin", NULL), LB_SPLIT_TRAIN, true, &ds,
                                          &err) == LB_OK, "%s", err.msg);
    }
    ck_assert(lb_dataset_streams(&ds));
    const int64_t cut = ds.n - 2; /* 19 of 21 (cache), 8 of 10 (data_batch_5.bin) */
    snprintf(file, sizeof file, "%s", ds.files[ds.n_files - 1].path);
    cut_sample(&ds, cut);
    const int64_t chw = (int64_t)ds.c * ds.h * ds.w;
    float        *x = malloc((size_t)(4 * chw) * sizeof *x);
    int32_t       y[4];
    /* synchronously: batches of 4 in the stored order; the one holding the cut fails */
    lb_batcher b;
    ck_assert_int_eq(lb_batcher_init(&b, &ds, 4, false, 1, &err), LB_OK);
    int64_t n, served = 0;
    while ((n = lb_batcher_next(&b, x, y)) > 0) served += n;
    ck_assert_int_eq(n, -1);
    ck_assert_int_eq(served, cut / 4 * 4);
    ck_assert_int_eq(lb_batcher_next(&b, x, y), -1); /* sticky */
    lb_batcher_start_epoch(&b);
    ck_assert_int_eq(lb_batcher_next(&b, x, y), -1);
    ck_assert_int_eq(lb_batcher_status(&b, &err), LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, file) && strstr(err.msg, "short read"), "%s", err.msg);
    lb_batcher_free(&b);
    /* lb_dataset_get: the cut sample fails, an earlier one still reads */
    err = (lb_error){ 0 };
    ck_assert_int_eq(lb_dataset_get(&ds, cut, x, &err), LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, file), "%s", err.msg);
    ck_assert_int_eq(lb_dataset_get(&ds, 0, x, &err), LB_OK);
    /* through the prefetch thread, shuffled: -1, then the same error */
    ck_assert_int_eq(lb_batcher_init(&b, &ds, 4, true, 3, &err), LB_OK);
    b.augment = LB_AUGMENT_CROP_FLIP;
    lb_prefetch *p = lb_prefetch_new(&b, true, &err);
    ck_assert_ptr_nonnull(p);
    lb_prefetch_start_epoch(p, 0);
    while ((n = lb_prefetch_next(p, x, y)) > 0) {}
    ck_assert_int_eq(n, -1);
    ck_assert_int_eq(lb_prefetch_next(p, x, y), -1);
    err = (lb_error){ 0 };
    ck_assert_int_eq(lb_prefetch_status(p, &err), LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, file), "%s", err.msg);
    lb_prefetch_start_epoch(p, 0); /* a new epoch does not clear it */
    ck_assert_int_eq(lb_prefetch_next(p, x, y), -1);
    lb_prefetch_free(p);
    lb_batcher_free(&b);
    free(x);
    lb_dataset_free(&ds);
    /* opened again: the short file is refused before anything trusts it */
    if (_i == 0) { /* the cache is rebuilt from the folder */
        ck_assert_msg(lb_dataset_load_ex(root, NULL, LB_SPLIT_TRAIN, &o, &ds, &err) == LB_OK,
                      "%s", err.msg);
        ck_assert(!ds.from_cache);
        lb_dataset_free(&ds);
    } else {
        ck_assert_int_eq(lb_cifar10_bin_load(root, LB_SPLIT_TRAIN, true, &ds, &err),
                         LB_ERR_FORMAT);
        ck_assert_msg(strstr(err.msg, file), "%s", err.msg);
    }
}
END_TEST

/* lb__stream_add checks the file against the layout before trusting it. */
START_TEST(test_stream_add_checks_size)
{
    uint8_t buf[100] = { 0 };
    char    p[P];
    write_bytes("short.bin", buf, sizeof buf);
    path2(p, "short.bin", NULL);
    lb_dataset ds;
    memset(&ds, 0, sizeof ds);
    lb_error err = { 0 };
    /* 5 samples of 20 bytes from offset 0 fit exactly; from offset 1 they do not */
    ck_assert_int_eq(lb__stream_add(&ds, lb__stream_open(p, &err), p, 0, 5, 0, 20, 20, &err),
                     LB_OK);
    ck_assert_int_eq(lb__stream_add(&ds, lb__stream_open(p, &err), p, 5, 5, 1, 20, 20, &err),
                     LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "too short"), "%s", err.msg);
    /* a stride that overflows 64 bits */
    ck_assert_int_eq(lb__stream_add(&ds, lb__stream_open(p, &err), p, 5, 3, 0, UINT64_MAX / 2,
                                    20, &err), LB_ERR_FORMAT);
    ck_assert_int_eq(ds.n_files, 1);
    ck_assert_int_eq(lb__stream_open(path2(p, "missing", NULL), &err), -1);
    ck_assert_int_eq(err.status, LB_ERR_IO);
    lb_dataset_free(&ds);
}
END_TEST

/* ---------------------------------------------------------------- real data */

static bool find_shared(const char *file, char *out)
{
    const char *roots[] = { getenv("LOWBIT_DATA"), LB_SOURCE_DIR "/../shared/datasets",
                            "../shared/datasets" };
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        if (!roots[i]) continue;
        snprintf(out, P, "%s/%s", roots[i], file);
        if (access(out, R_OK) == 0) return true;
    }
    return false;
}

/* Every image of mnist-png.tar.gz ({train,test}/<label>/<index>.png, indices 0..59999 and
 * 60000..69999) equals the IDX image of the same index, pixel for pixel, with the same label. */
START_TEST(test_real_mnist_png_equals_idx)
{
    char arc[P];
    if (!find_shared("mnist-png.tar.gz", arc)) {
        fprintf(stderr, "test_real_mnist_png_equals_idx: mnist-png.tar.gz not found, skipped\n");
        return;
    }
    lb_dataset idx[2];
    lb_error   err = { 0 };
    for (int sp = 0; sp < 2; sp++)
        ck_assert_msg(lb_dataset_load("mnist", NULL, sp ? LB_SPLIT_TEST : LB_SPLIT_TRAIN, &idx[sp],
                                      &err) == LB_OK, "%s", err.msg);
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    ck_assert_int_eq(archive_read_open_filename(a, arc, 1 << 16), ARCHIVE_OK);
    struct archive_entry *e;
    static uint8_t        buf[1 << 16];
    static bool           seen[70000];
    int64_t               compared[2] = { 0, 0 };
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        int         label, index, sp;
        const char *p = archive_entry_pathname(e);
        if (archive_entry_filetype(e) != AE_IFREG) continue;
        if (sscanf(p, "train/%d/%d.png", &label, &index) == 2) sp = 0;
        else if (sscanf(p, "test/%d/%d.png", &label, &index) == 2) sp = 1;
        else continue;
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        ck_assert(n > 0 && n < (la_ssize_t)sizeof buf);
        uint8_t *pix;
        int      c, h, w;
        ck_assert_msg(lb__image_decode(p, buf, (size_t)n, 0, &pix, &c, &h, &w, &err) == LB_OK,
                      "%s", err.msg);
        const int i = sp ? index - 60000 : index;
        ck_assert_msg(i >= 0 && i < idx[sp].n && !seen[index], "%s: bad or repeated index", p);
        seen[index] = true;
        ck_assert_int_eq(c, 1);
        ck_assert_int_eq(h, 28);
        ck_assert_int_eq(w, 28);
        ck_assert_int_eq(idx[sp].labels[i], label);
        ck_assert_msg(!memcmp(pix, idx[sp].images + (size_t)i * 784, 784), "%s differs", p);
        free(pix);
        compared[sp]++;
    }
    archive_read_free(a);
    ck_assert_int_eq(compared[0], 60000);
    ck_assert_int_eq(compared[1], 10000);
    lb_dataset_free(&idx[0]);
    lb_dataset_free(&idx[1]);
}
END_TEST

Suite *datasets_image_suite(void)
{
    Suite *s  = suite_create("datasets_image");
    TCase *tc = tcase_create("cifar_bin");
    tcase_add_unchecked_fixture(tc, parent_setup, parent_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_cifar_bin_good, 0, 2);
    tcase_add_loop_test(tc, test_cifar_bin_bad, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("decode");
    tcase_add_unchecked_fixture(tc, parent_setup, parent_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_png_variants);
    tcase_add_test(tc, test_jpeg_gray_and_rgb);
    tcase_add_test(tc, test_decode_corrupt);
    tcase_add_test(tc, test_resize_bilinear);
    suite_add_tcase(s, tc);

    tc = tcase_create("folder");
    tcase_add_unchecked_fixture(tc, parent_setup, parent_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_folder_sorted_classes);
    tcase_add_test(tc, test_folder_wrong_size);
    tcase_add_test(tc, test_folder_corrupt_stop_or_skip);
    tcase_add_test(tc, test_folder_errors);
    tcase_add_loop_test(tc, test_folder_cache, 0, 2);
    tcase_add_test(tc, test_load_ex_path);
    tcase_add_test(tc, test_load_ex_cifar10_sources);
    suite_add_tcase(s, tc);

    tc = tcase_create("unpack");
    tcase_add_unchecked_fixture(tc, parent_setup, parent_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_unpack_good_once);
    tcase_add_loop_test(tc, test_unpack_rejects, 0, 5);
    suite_add_tcase(s, tc);

    tc = tcase_create("augment_prefetch");
    tcase_add_test(tc, test_augment_crop_flip_exact);
    tcase_add_test(tc, test_cutout_exact);
    tcase_add_test(tc, test_augment_deterministic);
    tcase_add_test(tc, test_prefetch_same_batches);
    suite_add_tcase(s, tc);

    tc = tcase_create("stream");
    tcase_add_unchecked_fixture(tc, parent_setup, parent_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_stream_same_batches, 0, 2);
    tcase_add_loop_test(tc, test_stream_truncated_after_open, 0, 2);
    tcase_add_test(tc, test_stream_add_checks_size);
    suite_add_tcase(s, tc);

    tc = tcase_create("real_png");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_real_mnist_png_equals_idx);
    suite_add_tcase(s, tc);
    return s;
}
