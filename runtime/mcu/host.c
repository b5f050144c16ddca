/* host.c: the platform functions of mcu.h for the build machine, where the benchmark firmware
 * (bench.c) is also compiled natively to give the reference answers. There is no instruction
 * counter or stack painting here: every figure is 0. */
#include "runtime/mcu/mcu.h"

const uint32_t mcu_ns_per_tick = 0;

void mcu_count_start(void) {}
uint32_t mcu_count_stop(void) { return 0; }
uint32_t mcu_count_calibrate(uint32_t n_iter) { return n_iter - n_iter; }
void mcu_stack_paint(void) {}
uint32_t mcu_stack_used(void) { return 0; }
uint32_t mcu_static_ram(void) { return 0; }
