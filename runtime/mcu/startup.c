/* startup.c: reset, vector table, fault reports, counters and stack painting for the
 * benchmark firmware on an Arm Cortex-M4 (QEMU's mps2-an386, mps2_an386.ld).
 *
 * Reset enables the FPU (the float reference uses it), copies .data from flash, zeroes .bss,
 * turns on the trap for division by zero, opens newlib's semihosting streams (rdimon) and
 * calls main. While the instruction counter runs (one inference), the trap for unaligned
 * accesses is on too: the Cortex-M4 allows unaligned LDR/STR, but the runtime must not need
 * them (a Cortex-M0 faults on them, and so does LDRD/LDM on any Cortex-M), so it is made to
 * fault instead of passing by luck. It stays off elsewhere because newlib's printf does
 * unaligned stores. A fault prints its registers through semihosting and stops QEMU with a failure.
 * It does not use rdimon-crt0.o: the stack and heap come from the linker script, not from the
 * debugger's SYS_HEAPINFO answer.
 */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/mcu/mcu.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define SYST_CSR   0xE000E010u   /* SysTick control and status */
#define SYST_RVR   0xE000E014u   /* reload value               */
#define SYST_CVR   0xE000E018u   /* current value (counts down) */
#define SCB_ICSR   0xE000ED04u
#define SCB_CCR    0xE000ED14u
#define SCB_SHCSR  0xE000ED24u
#define SCB_CFSR   0xE000ED28u
#define SCB_HFSR   0xE000ED2Cu
#define SCB_MMFAR  0xE000ED34u
#define SCB_BFAR   0xE000ED38u
#define SCB_CPACR  0xE000ED88u
#define STACK_PAINT 0xC0FFEE11u

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__, __stack_limit__;
extern int main(void);
extern void initialise_monitor_handles(void);

/* newlib's exit path may call these (crti/crtn are not linked) */
void _init(void) {}
void _fini(void) {}

/* ---- semihosting without the C library (for fault reports) ------------------------------- */

static void semi_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

static void semi_puts(const char *s) { semi_call(0x04u, s); }   /* SYS_WRITE0 */

static void semi_hex(uint32_t v)
{
    char buf[11] = "0x";
    for (int k = 0; k < 8; k++) buf[2 + k] = "0123456789abcdef"[(v >> (28 - 4 * k)) & 15u];
    buf[10] = '\0';
    semi_puts(buf);
}

/* SYS_EXIT with ADP_Stopped_RunTimeErrorUnknown: QEMU exits with status 1 */
static void semi_fail(void)
{
    semi_call(0x18u, (const void *)0x20023u);
    for (;;) {}
}

/* ---- faults ------------------------------------------------------------------------------ */

/* frame: the stacked r0-r3, r12, lr, pc, xpsr of the faulting code */
void fault_report(const uint32_t *frame)
{
    static const char *const names[16] = { "", "", "NMI", "HardFault", "MemManage", "BusFault",
                                           "UsageFault" };
    const uint32_t n = REG(SCB_ICSR) & 0x1FFu;
    REG(SCB_CCR) &= ~(1u << 3);   /* the report itself may store unaligned (GCC's choice) */
    semi_puts("\nFAULT: ");
    semi_puts(n < 16 && names[n] && names[n][0] ? names[n] : "exception");
    semi_puts(" pc=");    semi_hex(frame[6]);
    semi_puts(" lr=");    semi_hex(frame[5]);
    semi_puts(" cfsr=");  semi_hex(REG(SCB_CFSR));
    semi_puts(" hfsr=");  semi_hex(REG(SCB_HFSR));
    semi_puts(" mmfar="); semi_hex(REG(SCB_MMFAR));
    semi_puts(" bfar=");  semi_hex(REG(SCB_BFAR));
    semi_puts(" (cfsr 0x01000000: unaligned access, 0x02000000: division by zero)\n");
    semi_fail();
}

__attribute__((naked)) void Fault_Handler(void)
{
    __asm__ volatile("tst lr, #4\n"
                     "ite eq\n"
                     "mrseq r0, msp\n"
                     "mrsne r0, psp\n"
                     "b fault_report\n");
}

/* ---- reset ------------------------------------------------------------------------------- */

void Reset_Handler(void)
{
    REG(SCB_CPACR) |= 0xFu << 20;   /* CP10, CP11: full access to the FPU */
    __asm__ volatile("dsb\nisb" ::: "memory");
    for (uint32_t *s = &__data_load__, *d = &__data_start__; d < &__data_end__;) *d++ = *s++;
    for (uint32_t *d = &__bss_start__; d < &__bss_end__;) *d++ = 0;
    REG(SCB_CCR) |= 1u << 4;                          /* DIV_0_TRP */
    REG(SCB_SHCSR) |= 1u << 16 | 1u << 17 | 1u << 18; /* MemManage, BusFault, UsageFault */
    initialise_monitor_handles();
    exit(main());
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top__,
    Reset_Handler,
    Fault_Handler,   /* NMI        */
    Fault_Handler,   /* HardFault  */
    Fault_Handler,   /* MemManage  */
    Fault_Handler,   /* BusFault   */
    Fault_Handler,   /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler,   /* SVCall     */
    Fault_Handler,   /* DebugMon   */
    0,
    Fault_Handler,   /* PendSV     */
    Fault_Handler,   /* SysTick: never enabled as an interrupt */
};

/* ---- counters ---------------------------------------------------------------------------- */

/* mps2-an386 clocks the core (and so SysTick with CLKSOURCE=1) at 25 MHz */
const uint32_t mcu_ns_per_tick = 40;

void mcu_count_start(void)
{
    REG(SCB_CCR) |= 1u << 3;      /* UNALIGN_TRP, until mcu_count_stop */
    __asm__ volatile("dsb\nisb" ::: "memory");
    REG(SYST_CSR) = 0;
    REG(SYST_RVR) = 0xFFFFFFu;
    REG(SYST_CVR) = 0;            /* any write clears the count and COUNTFLAG */
    REG(SYST_CSR) = 1u | 1u << 2; /* ENABLE, processor clock, no interrupt */
    /* the counter starts from the reload value at the next tick */
}

uint32_t mcu_count_stop(void)
{
    const uint32_t now = REG(SYST_CVR), csr = REG(SYST_CSR);
    REG(SYST_CSR) = 0;
    REG(SCB_CCR) &= ~(1u << 3);
    if (csr & 1u << 16) return UINT32_MAX;   /* COUNTFLAG: it wrapped past zero */
    return 0xFFFFFFu - now;
}

uint32_t mcu_count_calibrate(uint32_t n_iter)
{
    mcu_count_start();
    __asm__ volatile("1: subs %0, %0, #1\n"
                     "   bne 1b\n"
                     : "+r"(n_iter)::"cc");
    return mcu_count_stop();
}

/* ---- stack ------------------------------------------------------------------------------- */

static uint32_t *paint_top;

static inline uint32_t *stack_pointer(void)
{
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* A leaf function: its stack pointer is the caller's, and it paints 32 bytes below it on */
void mcu_stack_paint(void)
{
    paint_top = stack_pointer() - 8;
    for (uint32_t *p = &__stack_limit__; p < paint_top; p++) *(volatile uint32_t *)p = STACK_PAINT;
}

uint32_t mcu_stack_used(void)
{
    const uint32_t *p = &__stack_limit__;
    while (p < paint_top && *p == STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)(paint_top + 8) - (uintptr_t)p);
}

uint32_t mcu_static_ram(void)
{
    return (uint32_t)((uintptr_t)&__bss_end__ - (uintptr_t)&__data_start__);
}
