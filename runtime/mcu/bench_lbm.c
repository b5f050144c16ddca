/* bench_lbm.c: the benchmark backend (mcu.h) for a model exported with
 * `lowbit export CKPT --format c --out NAME`: the .lbm bytes as a const array, run by
 * lowbit's integer-only runtime (runtime/lbm.c) in a static arena.
 * Build with -DMODEL_LBM=NAME_lbm -DMODEL_LBM_SIZE=NAME_lbm_size (run.sh does), and
 * -DMCU_ARENA_BYTES=N to size the arena (default 64 KB).
 */
#include "runtime/lbm.h"
#include "runtime/mcu/mcu.h"

#ifndef MODEL_LBM
#define MODEL_LBM      model_lbm
#define MODEL_LBM_SIZE model_lbm_size
#endif
#ifndef MCU_ARENA_BYTES
#define MCU_ARENA_BYTES (64 * 1024)
#endif

extern const uint8_t MODEL_LBM[];
extern const size_t  MODEL_LBM_SIZE;

static lbm_model model;
static uint32_t  arena[MCU_ARENA_BYTES / 4];   /* uint32_t: 4-byte aligned, as lbm_run needs */

int bench_init(char *msg, size_t msg_cap)
{
    if (lbm_load(&model, MODEL_LBM, MODEL_LBM_SIZE, msg, msg_cap) != LBM_OK) return 1;
    if (lbm_arena_size(&model) > sizeof arena) {
        /* a plain copy: the backend does not use stdio */
        const char *t = "the model needs a larger arena: rebuild with -DMCU_ARENA_BYTES=N";
        size_t k = 0;
        for (; msg && k + 1 < msg_cap && t[k]; k++) msg[k] = t[k];
        if (msg && msg_cap) msg[k] = '\0';
        return 1;
    }
    return 0;
}

const char *bench_name(void) { return "lbm"; }
uint32_t bench_input_bytes(void) { return model.input_bytes; }
uint32_t bench_model_bytes(void) { return (uint32_t)MODEL_LBM_SIZE; }
uint32_t bench_arena_bytes(void) { return (uint32_t)lbm_arena_size(&model); }

int bench_run(const uint8_t *pixels, int32_t *scores, uint32_t *n_scores, int *pred)
{
    if (model.n_classes > 16) return 1;
    *n_scores = model.n_classes;
    return lbm_run(&model, pixels, arena, sizeof arena, scores, pred) != LBM_OK;
}
