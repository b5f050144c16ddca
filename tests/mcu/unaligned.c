/* unaligned.c: a benchmark backend (runtime/mcu/mcu.h) that is not a model: it makes one
 * unaligned 32-bit load per image. test_mcu builds the firmware with it and expects QEMU to
 * stop on a UsageFault (CFSR.UNALIGNED), which shows that the firmware really traps unaligned
 * accesses while it measures an inference, so the runtime's clean runs mean something. */
#include "runtime/mcu/mcu.h"

int bench_init(char *msg, size_t msg_cap)
{
    if (msg && msg_cap) msg[0] = '\0';
    return 0;
}

const char *bench_name(void) { return "unaligned"; }
uint32_t bench_input_bytes(void) { return 144; }
uint32_t bench_model_bytes(void) { return 0; }
uint32_t bench_arena_bytes(void) { return 0; }

int bench_run(const uint8_t *pixels, int32_t *scores, uint32_t *n_scores, int *pred)
{
    /* the images are 16-byte aligned and 144 bytes each: pixels + 1 is odd. A volatile
     * 32-bit load is one LDR, allowed by the Cortex-M4 unless UNALIGN_TRP is set. */
    const volatile uint32_t *p = (const volatile uint32_t *)(const void *)(pixels + 1);
    scores[0] = (int32_t)*p;
    *n_scores = 1;
    *pred = 0;
    return 0;
}
