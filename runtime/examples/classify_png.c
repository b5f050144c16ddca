/* classify_png.c: the smallest complete use of lowbit's runtime: load a .lbm model, read one
 * PNG with libpng, print the predicted class and the scores. It links only the runtime
 * (lb_runtime) and libpng, nothing of the training framework.
 *
 *     classify_png model.lbm digit.png
 */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lbm.h"

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        rewind(f);
        if (size > 0 && size < (64L << 20) && (buf = malloc((size_t)size)) &&
            fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        }
        *n = size > 0 ? (size_t)size : 0;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.lbm IMAGE.png\n", argv[0]);
        return 2;
    }
    size_t size = 0;
    uint8_t *file = read_file(argv[1], &size);
    if (!file) {
        fprintf(stderr, "%s: cannot read\n", argv[1]);
        return 1;
    }
    lbm_model m;
    char msg[200];
    lbm_status st = lbm_load(&m, file, size, msg, sizeof msg);
    if (st != LBM_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], msg);
        free(file);
        return 1;
    }
    /* the model's input geometry is in its META ("input=C,H,W") */
    size_t len;
    const char *in = lbm_meta(&m, "input", &len);
    int c = 0, h = 0, w = 0;
    char geom[32] = "";
    if (in && len < sizeof geom) memcpy(geom, in, len), geom[len] = 0;
    if (sscanf(geom, "%d,%d,%d", &c, &h, &w) != 3 || c * h * w != (int)m.input_bytes) {
        fprintf(stderr, "%s: no usable input geometry in the model\n", argv[1]);
        free(file);
        return 1;
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    uint8_t *pix = NULL, *planar = malloc(m.input_bytes);
    int rc = 1;
    if (!png_image_begin_read_from_file(&img, argv[2])) {
        fprintf(stderr, "%s: %s\n", argv[2], img.message);
        goto done;
    }
    if ((int)img.width != w || (int)img.height != h) {
        fprintf(stderr, "%s: image is %ux%u, the model takes %dx%d\n", argv[2], img.width,
                img.height, w, h);
        goto done;
    }
    img.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    pix = malloc(PNG_IMAGE_SIZE(img));
    if (!pix || !planar || !png_image_finish_read(&img, NULL, pix, 0, NULL)) {
        fprintf(stderr, "%s: decode failed (%s)\n", argv[2], img.message);
        goto done;
    }
    for (int ch = 0; ch < c; ch++) /* interleaved HWC -> planar CHW */
        for (int i = 0; i < h * w; i++) planar[ch * h * w + i] = pix[i * c + ch];
    static uint8_t arena[1 << 20];
    int32_t scores[1024];
    int pred;
    if (lbm_arena_size(&m) > sizeof arena || m.n_classes > 1024) {
        fprintf(stderr, "%s: model needs a larger arena than this example has\n", argv[1]);
        goto done;
    }
    st = lbm_run(&m, planar, arena, sizeof arena, scores, &pred);
    if (st != LBM_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], lbm_status_str(st));
        goto done;
    }
    printf("%s: class %d\nscores:", argv[2], pred);
    for (uint32_t k = 0; k < m.n_classes; k++) printf(" %ld", (long)scores[k]);
    printf("\n");
    rc = 0;
done:
    png_image_free(&img);
    free(pix);
    free(planar);
    free(file);
    return rc;
}
