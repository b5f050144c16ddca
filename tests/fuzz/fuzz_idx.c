/* fuzz_idx.c: libFuzzer target for the IDX loader (datasets/idx.c): an image file and a label
 * file, each plain or gzip-compressed.
 *
 * Input: a little-endian u16 n, then n bytes of image file, then the label file (the rest;
 * n is clipped to what there is). Both go to in-memory files and through lb_idx_load.
 * Oracles: a failure has an error status, a message naming one of the two files, and leaves
 * the dataset zeroed; a success gives a dataset whose geometry, pixels and labels are all
 * readable (ASan checks the sizes) and labels below n_classes, and one epoch of the batcher
 * over it works.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_dataset.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_dataset(const lb_dataset *ds, unsigned batch)
{
    if (ds->n < 1 || ds->c != 1 || ds->h < 1 || ds->w < 1 || ds->n_classes < 1 ||
        ds->n_classes > LB_DATASET_MAX_CLASSES || !ds->images || !ds->labels)
        __builtin_trap();
    fuzz_check_dataset(ds, batch, LB_AUGMENT_NONE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2) n = size - 2;
    /* the paths stay valid until the next call for the same slot */
    const char *images = fuzz_file(0, data + 2, n);
    const char *labels = fuzz_file(1, data + 2 + n, size - 2 - n);
    lb_dataset  ds;
    lb_error    err = { 0 };
    memset(&ds, 0xAB, sizeof ds); /* the loader must overwrite it */
    const lb_status st = lb_idx_load(images, labels, &ds, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, NULL);
        if (!strstr(err.msg, images) && !strstr(err.msg, labels)) __builtin_trap();
        if (ds.images || ds.labels || ds.n != 0) __builtin_trap();
        return 0;
    }
    check_dataset(&ds, 1 + (unsigned)(data[0] % 5));
    lb_dataset_free(&ds);
    return 0;
}
