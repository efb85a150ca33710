/* Minimal Cortex-M4F start-up for QEMU mps2-an386: the vector table, a reset
 * handler that enables the FPU and initialises .data and .bss, and the
 * semihosting calls the firmware uses for output and its exit status.
 * No C library start-up code, no heap. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_top;
int main(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

void reset_handler(void);
static void fault_handler(void);

/* Initial stack pointer, then the exception handlers. */
struct vector_table {
    uint32_t *initial_sp;
    void (*handlers[15])(void);
};
__attribute__((section(".vector_table"), used)) static const struct vector_table vectors = {
    &_stack_top,
    {
        reset_handler,
        fault_handler, /* NMI */
        fault_handler, /* HardFault */
        fault_handler, /* MemManage */
        fault_handler, /* BusFault */
        fault_handler, /* UsageFault */
        0, 0, 0, 0,
        fault_handler, /* SVCall */
        fault_handler, /* DebugMonitor */
        0,
        fault_handler, /* PendSV */
        fault_handler, /* SysTick */
    },
};

void reset_handler(void) {
    /* Full access to CP10 and CP11 (the FPU) before any float instruction. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    sh_exit(main());
}

static void fault_handler(void) {
    sh_puts("fault: unexpected exception\n");
    sh_exit(1);
}

/* ---- semihosting ---------------------------------------------------------- */

#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUN_TIME_ERROR 0x20023

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_puts(const char *s) { semihost(SYS_WRITE0, s); }

void sh_exit(int status) {
    /* QEMU exits with status 0 for an application exit, 1 otherwise. */
    semihost(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                              : ADP_STOPPED_RUN_TIME_ERROR));
    for (;;) {
    }
}

/* Small formatting helpers: no printf, so no heap and no stdio. */
static char *fmt_uint(char *end, unsigned long v) {
    *--end = '\0';
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

void sh_put_uint(unsigned long v) {
    char buf[24];
    sh_puts(fmt_uint(buf + sizeof buf, v));
}

void sh_put_int(long v) {
    if (v < 0) {
        sh_puts("-");
        sh_put_uint((unsigned long)-v);
    } else {
        sh_put_uint((unsigned long)v);
    }
}

void sh_put_fixed(float v, int decimals) {
    if (v != v) {
        sh_puts("nan");
        return;
    }
    if (v < 0) {
        sh_puts("-");
        v = -v;
    }
    unsigned long scale = 1;
    for (int i = 0; i < decimals; i++) {
        scale *= 10;
    }
    if (v > 4.0e9f / (float)scale) {
        sh_puts("big");
        return;
    }
    unsigned long x = (unsigned long)(v * (float)scale + 0.5f);
    sh_put_uint(x / scale);
    if (decimals > 0) {
        char buf[24];
        char *p = fmt_uint(buf + sizeof buf, x % scale);
        sh_puts(".");
        for (int pad = decimals - (int)(buf + sizeof buf - 1 - p); pad > 0; pad--) {
            sh_puts("0");
        }
        sh_puts(p);
    }
}
