/* fuzz_dataset.h: the checks every dataset-loader target makes on a successful load, after
 * its own checks of the geometry it promises (fuzz_idx.c, fuzz_cifar.c, fuzz_lbds.c).
 *
 * Header-only (static) because fuzz_util.c is linked into every target, and most of them do
 * not link lb_datasets. A failed check is __builtin_trap(), as in fuzz_util.h.
 */
#ifndef LB_FUZZ_DATASET_H
#define LB_FUZZ_DATASET_H

#include <stdint.h>
#include <stdlib.h>

#include "datasets/dataset.h"

/* Reads every pixel, from memory or (streaming) from the file (ASan catches a buffer shorter
 * than the geometry claims; a file too short is a failed read), checks every
 * label is in [0, n_classes), then (batch > 0) runs one shuffled epoch of the batcher with
 * augmentation aug and checks it serves every sample once, each with a label in range. */
static void fuzz_check_dataset(const lb_dataset *ds, unsigned batch, lb_augment aug)
{
    if (ds->n < 1 || ds->n_classes < 1 || !(ds->images || lb_dataset_streams(ds)) ||
        !ds->labels)
        __builtin_trap();
    const int64_t per     = (int64_t)ds->c * ds->h * ds->w;
    unsigned      sum     = 0;
    uint8_t      *scratch = malloc((size_t)per);
    lb_error      e       = { 0 };
    if (!scratch) __builtin_trap();
    for (int64_t i = 0; i < ds->n; i++) { /* a streamed file was checked to hold them all */
        const uint8_t *pix = lb_dataset_pixels(ds, i, scratch, &e);
        if (!pix) __builtin_trap();
        for (int64_t k = 0; k < per; k++) sum += pix[k];
    }
    free(scratch);
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->n_classes) __builtin_trap();
    volatile unsigned sink = sum;
    (void)sink;
    if (batch == 0) return;

    lb_batcher b;
    lb_error   err = { 0 };
    float     *x   = malloc((size_t)(batch * per) * sizeof *x);
    int32_t   *y   = malloc(batch * sizeof *y);
    if (!x || !y || lb_batcher_init(&b, ds, batch, true, 7, &err) != LB_OK) __builtin_trap();
    b.augment = aug;
    int64_t seen = 0, k;
    while ((k = lb_batcher_next(&b, x, y)) > 0) {
        for (int64_t j = 0; j < k; j++)
            if (y[j] < 0 || y[j] >= ds->n_classes) __builtin_trap();
        seen += k;
    }
    if (seen != ds->n) __builtin_trap();
    lb_batcher_free(&b);
    free(x);
    free(y);
}

#endif
