/* mcu.h: what the benchmark firmware (bench.c) needs from the platform it runs on, and what a
 * model backend (bench_lbm.c: lowbit's integer runtime; lenet5_f32.c: the float reference)
 * provides to it.
 *
 * Platform (startup.c on the Cortex-M4, host.c on the build machine, where the counters are
 * 0): an instruction counter and a stack high-water mark around one inference.
 *
 *     mcu_count_start();   mcu_stack_paint();
 *     bench_run(pixels, scores, &n, &pred);
 *     uint32_t ticks = mcu_count_stop();   uint32_t stack = mcu_stack_used();
 *
 * Nothing here allocates; the backends keep their buffers in static storage.
 */
#ifndef LB_MCU_H
#define LB_MCU_H

#include <stddef.h>
#include <stdint.h>

/* ---- platform ---------------------------------------------------------------------------- */

/* Virtual nanoseconds per counter tick: the SysTick runs from the 25 MHz system clock of
 * mps2-an386, so one tick is 40 ns, and under qemu -icount shift=0 one ns is one executed
 * instruction. 0 on the host (no counter). */
extern const uint32_t mcu_ns_per_tick;
/* Restarts the counter (24-bit SysTick, 0.67 s of virtual time before it wraps). */
void mcu_count_start(void);
/* Ticks since mcu_count_start; UINT32_MAX when the counter wrapped (the measurement is void). */
uint32_t mcu_count_stop(void);
/* Ticks taken by a loop of exactly n_iter * 2 instructions (subs + bne), to check the
 * instructions-per-tick factor against a known count. */
uint32_t mcu_count_calibrate(uint32_t n_iter);
/* Paints the unused stack below the caller's frame with a pattern; mcu_stack_used then tells
 * how many bytes below that point were written since (the stack depth of what the caller
 * ran in between). Call both from the same function. 0 on the host. */
void mcu_stack_paint(void);
uint32_t mcu_stack_used(void);
/* Bytes of .data + .bss (static RAM) of the whole firmware; 0 on the host. */
uint32_t mcu_static_ram(void);

/* ---- model backend ----------------------------------------------------------------------- */

/* Prepares the model (validates it); on failure writes a message and returns nonzero. */
int bench_init(char *msg, size_t msg_cap);
/* One-line description, e.g. "lbm 6.1 KB" (static string). */
const char *bench_name(void);
/* Pixels per input image (C*H*W uint8). */
uint32_t bench_input_bytes(void);
/* Bytes of the model's parameters (the .lbm file, or the float weights). */
uint32_t bench_model_bytes(void);
/* Bytes of RAM the backend uses for activations (lbm_arena_size, or the float buffers). */
uint32_t bench_arena_bytes(void);
/* Runs one image: writes *n_scores (<= 16) scores as int32 (for the float model: the bit
 * patterns of the float logits, so that comparisons are exact) and the predicted class.
 * Returns nonzero on failure. */
int bench_run(const uint8_t *pixels, int32_t *scores, uint32_t *n_scores, int *pred);

#endif
