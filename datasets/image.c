/* image.c: PNG (libpng) and JPEG (libjpeg-turbo) decoding from memory, and bilinear resizing.
 *
 * Both libraries report errors by longjmp. Everything allocated after setjmp is held in
 * volatile locals so that the error path frees it; the library state is destroyed on every
 * path. libpng's transforms turn any PNG into 8-bit gray or RGB; libjpeg converts YCbCr and
 * gray itself. A JPEG that libjpeg only warns about (cut short, bad Huffman data) is treated
 * as corrupt, because it would otherwise decode to a silently gray-filled image.
 * It does not read files or know about datasets (folder.c does).
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "datasets/datasets_impl.h"

/* ---------------------------------------------------------------- PNG */

typedef struct {
    const uint8_t *data;
    size_t         size, pos;
    char           msg[200];
} png_src;

static void png_read_mem(png_structp png, png_bytep out, size_t len)
{
    png_src *s = png_get_io_ptr(png);
    if (len > s->size - s->pos) png_error(png, "file is cut short");
    memcpy(out, s->data + s->pos, len);
    s->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg; /* e.g. "iCCP: known incorrect sRGB profile": harmless */
}

static lb_status decode_png(const char *path, const uint8_t *data, size_t size, int want_c,
                            uint8_t **pix, int *c, int *h, int *w, lb_error *err)
{
    png_src      src  = { .data = data, .size = size };
    png_structp  png  = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                               png_on_warning);
    png_infop    info = png ? png_create_info_struct(png) : NULL;
    uint8_t     *volatile out  = NULL;   /* volatile: still valid after longjmp */
    png_bytep   *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory in libpng", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(out);
        png_destroy_read_struct(&png, &info, NULL);
        return lb_errorf(err, LB_ERR_FORMAT, "%s: corrupt PNG (%s)", path, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, LB__IMAGE_MAX_SIDE, LB__IMAGE_MAX_SIDE);
    png_read_info(png, info);
    {
        /* deflate expands at most 1032:1, so a header claiming more pixel bytes (each row
         * plus its filter byte) than the file could hold is corrupt: refused before the
         * pixels are allocated, not after hundreds of MB are reserved for a 100-byte file */
        const double raw = (double)png_get_image_height(png, info) *
                           ((double)png_get_image_width(png, info) * png_get_channels(png, info) *
                                png_get_bit_depth(png, info) / 8.0 + 1.0);
        if (raw > 1032.0 * (double)size + 4096.0) {
            snprintf(src.msg, sizeof src.msg, "header claims %ux%u pixels, more than %zu bytes "
                     "of compressed data can hold", (unsigned)png_get_image_width(png, info),
                     (unsigned)png_get_image_height(png, info), size);
            png_longjmp(png, 1);
        }
    }
    const int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    const int gray = !(type & PNG_COLOR_MASK_COLOR);
    const int C    = want_c ? want_c : gray ? 1 : 3;
    if (depth == 16) png_set_strip_16(png);              /* keep the high byte */
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (gray && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (type & PNG_COLOR_MASK_ALPHA || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);                        /* as PIL's convert("RGB") */
    if (gray && C == 3) png_set_gray_to_rgb(png);
    if (!gray && C == 1) png_set_rgb_to_gray_fixed(png, 1, 29900, 58700); /* 0.299R+0.587G+... */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int H = (int)png_get_image_height(png, info), W = (int)png_get_image_width(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != C || png_get_bit_depth(png, info) != 8 ||
        rowbytes != (size_t)W * (size_t)C) {
        snprintf(src.msg, sizeof src.msg, "unsupported layout after conversion: %d channels, "
                 "%d bits", png_get_channels(png, info), png_get_bit_depth(png, info));
        png_longjmp(png, 1);
    }
    out  = malloc((size_t)H * rowbytes);
    rows = malloc((size_t)H * sizeof *rows);
    if (!out || !rows) {
        snprintf(src.msg, sizeof src.msg, "out of memory for %dx%d pixels", W, H);
        png_longjmp(png, 1);
    }
    for (int y = 0; y < H; y++) rows[y] = out + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *pix = out, *c = C, *h = H, *w = W;
    return LB_OK;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this struct */
    jmp_buf               jb;
    char                  msg[JMSG_LENGTH_MAX];
    int                   warned;
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Level < 0 is a warning about damaged data; keep the first one, print nothing. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level >= 0) return;
    if (!e->warned) (*cinfo->err->format_message)(cinfo, e->msg);
    e->warned = 1;
    cinfo->err->num_warnings++;
}

static lb_status decode_jpeg(const char *path, const uint8_t *data, size_t size, int want_c,
                             uint8_t **pix, int *c, int *h, int *w, lb_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err         jerr;
    uint8_t *volatile out = NULL;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err               = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit     = jpeg_on_error;
    jerr.pub.emit_message   = jpeg_on_message;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        return lb_errorf(err, LB_ERR_FORMAT, "%s: corrupt JPEG (%s)", path, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space != JCS_GRAYSCALE && cinfo.jpeg_color_space != JCS_YCbCr &&
        cinfo.jpeg_color_space != JCS_RGB) {
        snprintf(jerr.msg, sizeof jerr.msg, "unsupported colour space %d (CMYK?)",
                 (int)cinfo.jpeg_color_space);
        longjmp(jerr.jb, 1);
    }
    if (cinfo.image_width > LB__IMAGE_MAX_SIDE || cinfo.image_height > LB__IMAGE_MAX_SIDE) {
        snprintf(jerr.msg, sizeof jerr.msg, "%ux%u pixels is too large", cinfo.image_width,
                 cinfo.image_height);
        longjmp(jerr.jb, 1);
    }
    const int C = want_c ? want_c : cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
    cinfo.out_color_space = C == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const int H = (int)cinfo.output_height, W = (int)cinfo.output_width;
    if (cinfo.output_components != C) {
        snprintf(jerr.msg, sizeof jerr.msg, "decoded to %d channels, expected %d",
                 cinfo.output_components, C);
        longjmp(jerr.jb, 1);
    }
    out = malloc((size_t)H * (size_t)W * (size_t)C);
    if (!out) {
        snprintf(jerr.msg, sizeof jerr.msg, "out of memory for %dx%d pixels", W, H);
        longjmp(jerr.jb, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * (size_t)W * (size_t)C;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    if (jerr.warned) longjmp(jerr.jb, 1); /* damaged data libjpeg papered over */
    jpeg_destroy_decompress(&cinfo);
    *pix = out, *c = C, *h = H, *w = W;
    return LB_OK;
}

/* ---------------------------------------------------------------- public (internal) */

lb_status lb__image_decode(const char *path, const uint8_t *data, size_t size, int want_c,
                           uint8_t **pix, int *c, int *h, int *w, lb_error *err)
{
    static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    *pix = NULL;
    if (want_c != 0 && want_c != 1 && want_c != 3)
        return lb_errorf(err, LB_ERR_ARG, "%s: cannot decode to %d channels (1 or 3)", path,
                         want_c);
    if (size >= 8 && !memcmp(data, png_magic, 8))
        return decode_png(path, data, size, want_c, pix, c, h, w, err);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(path, data, size, want_c, pix, c, h, w, err);
    return lb_errorf(err, LB_ERR_FORMAT, "%s: neither PNG nor JPEG (%zu bytes%s)", path, size,
                     size == 0 ? ", empty" : "");
}

void lb__image_resize(const uint8_t *src, int c, int sh, int sw, uint8_t *dst, int dh, int dw)
{
    const float sy = (float)sh / (float)dh, sx = (float)sw / (float)dw;
    for (int y = 0; y < dh; y++) {
        float fy = ((float)y + 0.5f) * sy - 0.5f;
        if (fy < 0) fy = 0;
        int   y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
        float ay = fy - (float)y0;
        for (int x = 0; x < dw; x++) {
            float fx = ((float)x + 0.5f) * sx - 0.5f;
            if (fx < 0) fx = 0;
            int   x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
            float ax = fx - (float)x0;
            for (int k = 0; k < c; k++) {
                const float p00 = src[((size_t)y0 * sw + x0) * c + k];
                const float p01 = src[((size_t)y0 * sw + x1) * c + k];
                const float p10 = src[((size_t)y1 * sw + x0) * c + k];
                const float p11 = src[((size_t)y1 * sw + x1) * c + k];
                const float v   = (1 - ay) * ((1 - ax) * p00 + ax * p01) +
                                ay * ((1 - ax) * p10 + ax * p11);
                dst[((size_t)y * dw + x) * c + k] = (uint8_t)(v + 0.5f);
            }
        }
    }
}
