/*
 * Port I/O for KVM_EXIT_IO: the COM1 UART, a minimal i8042 keyboard
 * controller (enough for Linux's probe and its 0xFE reset command, which
 * ends the VM), CMOS reading as zeros, and common legacy ports ignored.
 * Unknown ports are ignored too (reads see all ones) and logged once.
 */
#ifndef CAPSEM_VMM_PIO_H
#define CAPSEM_VMM_PIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "serial.h"

#define VMM_I8042_IRQ 1

/* Called on a vCPU thread when the guest asks the i8042 to reset the machine. */
typedef void (*vmm_pio_reset_fn)(void *opaque);
/* Pulse ISA IRQ `irq`. vCPU threads. */
typedef void (*vmm_pio_irq_fn)(void *opaque, uint32_t irq);

struct vmm_pio {
    struct vmm_serial *serial; /* borrowed, may be NULL */
    vmm_pio_reset_fn reset;
    vmm_pio_irq_fn irq;
    void *opaque;
    pthread_mutex_t lock; /* guards the i8042 and CMOS state and `seen` */
    uint8_t kbd_ctr;      /* controller configuration byte */
    uint8_t kbd_pending;  /* command waiting for its data byte, or 0 */
    uint8_t kbd_out[8];   /* output buffer, read through port 0x60 */
    unsigned kbd_out_len;
    uint8_t cmos_index;
    uint8_t seen[65536 / 8]; /* unknown ports already logged */
};

/* Initialise with a borrowed UART (or NULL) and callbacks (irq may be NULL). */
void vmm_pio_init(struct vmm_pio *p, struct vmm_serial *serial, vmm_pio_reset_fn reset,
                  vmm_pio_irq_fn irq, void *opaque);
void vmm_pio_fini(struct vmm_pio *p);

/*
 * Handle `count` accesses of `size` bytes (1, 2 or 4) at `port`; `data`
 * holds size*count bytes (string I/O). Never fails: bad accesses are
 * ignored. vCPU threads.
 */
void vmm_pio_dispatch(struct vmm_pio *p, uint16_t port, uint8_t *data, uint32_t size,
                      uint32_t count, bool is_write);

#endif
