/* fuzz_image.c: libFuzzer target for PNG and JPEG decoding (datasets/image.c,
 * lb__image_decode, and lb__image_resize on what it decodes).
 *
 * Input: one byte choosing the channels asked for (byte % 3: 0 keep, 1 gray, 2 RGB), then the
 * image file (PNG or JPEG, told by its magic bytes, as the image-folder loader does).
 * Oracles: a failure has an error status, a message naming the path, and *pix NULL; a success
 * has the channels asked for (1 or 3 when kept), 1 <= h, w <= LB__IMAGE_MAX_SIDE, and h*w*c
 * readable pixels (ASan checks the size); resizing them to a small size (chosen by the first
 * byte) reads only inside the image and writes only inside the result.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets_impl.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const path = "fuzz/input.img";
    if (size < 1) return 0;
    static const int want[3] = { 0, 1, 3 };
    const int        want_c  = want[data[0] % 3];
    uint8_t         *pix     = (uint8_t *)1; /* the decoder must set it */
    int              c = -1, h = -1, w = -1;
    lb_error         err = { 0 };
    const lb_status  st  = lb__image_decode(path, data + 1, size - 1, want_c, &pix, &c, &h, &w,
                                            &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, path);
        if (pix) __builtin_trap();
        return 0;
    }
    if (!pix || (want_c ? c != want_c : c != 1 && c != 3) || h < 1 || w < 1 ||
        h > LB__IMAGE_MAX_SIDE || w > LB__IMAGE_MAX_SIDE)
        __builtin_trap();
    const size_t n   = (size_t)h * (size_t)w * (size_t)c;
    unsigned     sum = 0; /* reads every pixel */
    for (size_t i = 0; i < n; i++) sum += pix[i];
    volatile unsigned sink = sum;
    (void)sink;
    const int dh = 1 + (data[0] / 3) % 7, dw = 1 + (data[0] / 21) % 7;
    uint8_t   small[7 * 7 * 3];
    lb__image_resize(pix, c, h, w, small, dh, dw);
    for (int i = 0; i < dh * dw * c; i++) sum += small[i];
    sink = sum;
    free(pix);
    return 0;
}
