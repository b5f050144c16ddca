/* fuzz_lbds.c: libFuzzer target for the decoded dataset cache (datasets/cache.c,
 * lb__cache_read).
 *
 * Each input is tried twice: as is, and with its trailing CRC32 repaired (as fuzz_checkpoint
 * does: without it mutations would never get past the CRC). The reader is given the key and
 * source folder the seeds were written with (gen_corpus.c, gen_lbds: FUZZ_LBDS_KEY and
 * FUZZ_LBDS_SOURCE below), so mutations explore past the header.
 * Oracles: a failure has an error status, a message naming the file, and leaves the dataset
 * zeroed; a success has a geometry, class count and sample count within the format's limits
 * whose pixels and labels are all readable (ASan checks the sizes), labels below n_classes,
 * NUL-terminated class names, the source and from_cache set, and one batcher epoch works;
 * both in memory and streaming (the pixels then read back from the file).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "datasets/datasets_impl.h"
#include "tests/fuzz/fuzz_dataset.h"
#include "tests/fuzz/fuzz_util.h"

/* gen_corpus.c writes its seeds with these */
#define FUZZ_LBDS_SOURCE "/data/fuzz-folder/train"
#define FUZZ_LBDS_KEY    { 6, 12345, 1700000000123456789LL, 0x00030001u }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_dataset(const lb_dataset *ds, unsigned batch)
{
    if (ds->n < 1 || (ds->c != 1 && ds->c != 3) || ds->h < 1 || ds->w < 1 ||
        ds->h > LB__IMAGE_MAX_SIDE || ds->w > LB__IMAGE_MAX_SIDE || ds->n_classes < 1 ||
        ds->n_classes > LB_DATASET_MAX_CLASSES || !(ds->images || lb_dataset_streams(ds)) ||
        !ds->labels ||
        !ds->class_names || !ds->from_cache || strcmp(ds->source, FUZZ_LBDS_SOURCE))
        __builtin_trap();
    for (int k = 0; k < ds->n_classes; k++)
        if (!memchr(ds->class_names + (size_t)k * LB_CLASS_NAME_MAX, 0, LB_CLASS_NAME_MAX))
            __builtin_trap();
    /* the size checks are the point: large images skip the batcher (batch 0) */
    fuzz_check_dataset(ds, (int64_t)ds->c * ds->h * ds->w > 4096 ? 0 : batch, LB_AUGMENT_NONE);
}

static void try_one(const uint8_t *data, size_t size, int fix, bool stream)
{
    if (fix && size < 8) return;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    if (size) memcpy(buf, data, size);
    if (fix) fuzz_put32(buf + size - 4, (uint32_t)crc32(crc32(0, NULL, 0), buf, (uInt)(size - 4)));
    const char         *path = fuzz_file(0, buf, size);
    const lb__cache_key key  = FUZZ_LBDS_KEY;
    lb_dataset          ds;
    lb_error            err = { 0 };
    memset(&ds, 0xAB, sizeof ds); /* the reader must overwrite it */
    const lb_status st = lb__cache_read(path, FUZZ_LBDS_SOURCE, &key, stream, &ds, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, path);
        if (ds.images || ds.labels || ds.class_names || ds.files || ds.n != 0) __builtin_trap();
    } else {
        check_dataset(&ds, 1 + (unsigned)(size ? data[0] % 5 : 0));
        lb_dataset_free(&ds);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int stream = 0; stream < 2; stream++) { /* in memory, then streamed from the file */
        try_one(data, size, 0, stream);
        try_one(data, size, 1, stream);
    }
    return 0;
}
