/* Output and exit status over Arm semihosting (QEMU -semihosting-config). */
#ifndef SEMIHOST_H
#define SEMIHOST_H

/* Prints a NUL-terminated string on the host's standard output. */
void sh_puts(const char *s);
/* Prints an unsigned or signed integer in decimal. */
void sh_put_uint(unsigned long v);
void sh_put_int(long v);
/* Prints v with the given number of decimals (|v| below about 4e9 / 10^d). */
void sh_put_fixed(float v, int decimals);
/* Ends the emulation: QEMU exits with 0 when status is 0, with 1 otherwise. */
__attribute__((noreturn)) void sh_exit(int status);

#endif
