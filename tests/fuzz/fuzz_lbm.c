/* fuzz_lbm.c: libFuzzer target for the .lbm loader and the runtime (runtime/lbm.c; built by
 * tools/fuzz.sh, see tests/fuzz/CMakeLists.txt).
 *
 * Each input is tried twice: as is, and with its file_size field and every CRC repaired
 * (random mutations almost never keep the CRCs right, so without the repair the fuzzer would
 * not get past the checksums). Each try copies the bytes into an exact-size heap buffer
 * (aligned, and ASan flags any read past its end), loads it, and when the load succeeds runs
 * the model once on an all-zero image in an arena of exactly the reported size. It traps
 * when a load fails without a message or a loaded model fails to run. Models whose arena or
 * arithmetic is too big for a fuzzing iteration (valid, just slow) are loaded but not run,
 * so that libFuzzer's timeouts and RSS limit mean real bugs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lbm.h"

#define MAX_ARENA (64u << 20)
#define MAX_WORK  20000000.0   /* multiply-accumulates (and window reads) per run */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static double numel(const lbm_model *m, uint32_t t)
{
    const uint8_t *r = m->graph + 16 + 32 * (size_t)t;
    double         n = 1;
    for (int k = 0; k < r[1]; k++) n *= u32(r + 4 + 4 * k);
    return n;
}

/* An upper bound of a run's inner-loop iterations, from the (validated) op records. */
static double work(const lbm_model *m)
{
    double w = 0;
    for (uint32_t i = 0; i < m->n_ops; i++) {
        const uint8_t *r   = m->graph + 16 + 32 * (size_t)m->n_tensors + 64 * (size_t)i;
        const uint32_t in  = u32(r + 4), out = u32(r + 12), kind = r[0];
        const double   k   = (double)u32(r + 24);   /* attr[0]: O or a pool's k */
        if (kind == LBM_OP_CONV2D)   /* out x C x kh x kw */
            w += numel(m, out) * u32(m->graph + 16 + 32 * (size_t)in + 4) * u32(r + 28) *
                 u32(r + 32);
        else if (kind == LBM_OP_LINEAR) w += numel(m, out) * numel(m, in);
        else if (kind == LBM_OP_MAXPOOL || kind == LBM_OP_AVGPOOL) w += numel(m, out) * k * k;
        else w += numel(m, out) + numel(m, in);
    }
    return w;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* file_size, the CRC of every section the table places inside the file, the header CRC. */
static void repair(uint8_t *f, size_t size)
{
    if (size < 64) return;
    put32(f + 16, (uint32_t)size);
    for (uint32_t s = 0; s < u32(f + 12) && s < 16 && 64 + 16 * (size_t)(s + 1) <= size; s++) {
        uint8_t *r = f + 64 + 16 * s;
        if ((uint64_t)u32(r + 4) + u32(r + 8) <= size)
            put32(r + 12, lbm_crc32(0, f + u32(r + 4), u32(r + 8)));
    }
    put32(f + 60, lbm_crc32(0, f, 60));
}

static void try_one(const uint8_t *data, size_t size, int fix)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    if (size) memcpy(buf, data, size);
    if (fix) repair(buf, size);
    lbm_model m;
    char      msg[160];
    if (lbm_load(&m, buf, size, msg, sizeof msg) != LBM_OK) {
        if (msg[0] == '\0') __builtin_trap();   /* every failure names its reason */
    } else if (lbm_arena_size(&m) <= MAX_ARENA && work(&m) <= MAX_WORK) {
        const size_t n      = lbm_arena_size(&m);
        void        *arena  = malloc(n ? n : 1);
        uint8_t     *pixels = calloc(m.input_bytes, 1);
        int32_t     *scores = malloc(4 * (size_t)m.n_classes);
        int          pred   = -1;
        if (arena && pixels && scores) {
            if (lbm_run(&m, pixels, arena, n, scores, &pred) != LBM_OK) __builtin_trap();
            if (pred < 0 || (uint32_t)pred >= m.n_classes) __builtin_trap();
        }
        free(arena), free(pixels), free(scores);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_one(data, size, 0);
    try_one(data, size, 1);
    return 0;
}
