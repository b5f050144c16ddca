/* fuzz_checkpoint.c: libFuzzer target for checkpoints (train/checkpoint.c,
 * lb_checkpoint_load), which also runs the quantization-config and model-description parsers
 * on the texts a checkpoint carries.
 *
 * Each input is tried twice: as is, and with its trailing CRC32 repaired (random mutations
 * almost never keep the CRC right, and the loader checks it before anything else, so without
 * the repair the fuzzer would not get past it). The bytes go to an in-memory file.
 * Oracles: a failure has an error status and a message naming the file, and no model; a
 * success gives a model whose parameter block is fully readable (ASan checks its size) and,
 * when moments were stored, moment blocks of the same size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "train/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_one(const uint8_t *data, size_t size, int fix)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    if (size) memcpy(buf, data, size);
    if (fix) {
        if (size < 8) {
            free(buf);
            return;
        }
        fuzz_put32(buf + size - 4, (uint32_t)crc32(crc32(0, NULL, 0), buf, (uInt)(size - 4)));
    }
    const char  *path = fuzz_file(0, buf, size);
    lb_model    *m    = NULL;
    lb_ckpt_meta meta;
    lb_error     err = { 0 };
    const lb_status st = lb_checkpoint_load(path, &m, &meta, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, path);
        if (m) __builtin_trap();
    } else {
        const lb_params *ps = m->params;
        float            s  = 0;
        for (int64_t i = 0; i < ps->total; i++) s += ps->values[i] * 0.0f;
        if (ps->m)
            for (int64_t i = 0; i < ps->total; i++) s += ps->m[i] * 0.0f + ps->v[i] * 0.0f;
        volatile float sink = s;
        (void)sink;
        if (m->n_classes < 1 || meta.epoch < 0 || meta.step < 0 || meta.epoch_step < 0)
            __builtin_trap();
        lb_model_free(m);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_one(data, size, 0);
    try_one(data, size, 1);
    return 0;
}
