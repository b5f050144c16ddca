/* fuzz_cifar.c: libFuzzer target for the CIFAR-10 binary batches (datasets/cifar.c,
 * lb_cifar10_bin_load).
 *
 * lb_cifar10_bin_load takes a folder, so the target makes one temporary folder per process
 * holding test_batch.bin as a symbolic link to an in-memory file (fuzz_file), rewritten with
 * the input on every call, and loads the test split from it.
 * Oracles: a failure has an error status, a message naming test_batch.bin, and leaves the
 * dataset zeroed; a success has n * 3073 == the input's size, a 3x32x32 geometry, 10 classes
 * with names, labels below 10, every pixel readable (ASan checks the size), and one epoch of
 * the batcher with crop-flip augmentation serves every sample once; both in memory and
 * streaming.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_dataset.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], file[96];

static void cleanup(void)
{
    unlink(file);
    rmdir(dir);
}

static void check_dataset(const lb_dataset *ds, size_t size, unsigned batch)
{
    if (ds->n < 1 || (uint64_t)ds->n * 3073 != size || ds->c != 3 || ds->h != 32 ||
        ds->w != 32 || ds->n_classes != 10 || !(ds->images || lb_dataset_streams(ds)) ||
        !ds->labels || !ds->class_names)
        __builtin_trap();
    for (int k = 0; k < 10; k++)
        if (ds->class_names[k * LB_CLASS_NAME_MAX] == '\0') __builtin_trap();
    fuzz_check_dataset(ds, batch, LB_AUGMENT_CROP_FLIP);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *mem = fuzz_file(0, data, size);
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/lowbit-fuzz-cifar-XXXXXX");
        if (!mkdtemp(dir)) __builtin_trap();
        snprintf(file, sizeof file, "%s/test_batch.bin", dir);
        if (symlink(mem, file) != 0) __builtin_trap(); /* the slot's path never changes */
        atexit(cleanup);
    }
    for (int stream = 0; stream < 2; stream++) { /* in memory, then streamed from the file */
        lb_dataset ds;
        lb_error   err = { 0 };
        memset(&ds, 0xAB, sizeof ds); /* the loader must overwrite it */
        const lb_status st = lb_cifar10_bin_load(dir, LB_SPLIT_TEST, stream, &ds, &err);
        if (st != LB_OK) {
            fuzz_check_error(st, &err, file);
            if (ds.images || ds.labels || ds.class_names || ds.files || ds.n != 0)
                __builtin_trap();
            return 0;
        }
        check_dataset(&ds, size, 1 + (unsigned)(size ? data[size - 1] % 5 : 0));
        lb_dataset_free(&ds);
    }
    return 0;
}
