/*
 * A 16550A UART at COM1 (0x3f8, IRQ 4), enough for Linux's 8250 driver and
 * early console: transmit only. Output goes to a log file and optionally to
 * stdout; input reads as empty. The THR-empty interrupt is raised through a
 * callback that pulses the IRQ line (edge on the IOAPIC).
 */
#ifndef CAPSEM_VMM_SERIAL_H
#define CAPSEM_VMM_SERIAL_H

#include <stdbool.h>
#include <stdint.h>

#define VMM_SERIAL_BASE 0x3f8
#define VMM_SERIAL_IRQ 4

struct vmm_serial;

/* Pulse the UART's interrupt line. Called on a vCPU thread. */
typedef void (*vmm_serial_irq_fn)(void *opaque);

/* Default cap of the serial log file (see vmm_serial_create). */
#define VMM_SERIAL_LOG_MAX (64ull << 20)

/*
 * Create the UART. `log_fd` (owned, -1 for none; a regular file opened with
 * O_APPEND) receives every byte the guest transmits; with `to_stdout` they
 * also go to fd 1. When the log would pass `log_max` bytes it is truncated
 * and restarted with a marker line, so a chatty guest cannot fill the disk
 * and the end of the file always holds the latest output. `irq` may be
 * NULL. 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int vmm_serial_create(struct vmm_serial **out, int log_fd,
                                                          uint64_t log_max, bool to_stdout,
                                                          vmm_serial_irq_fn irq, void *opaque);
/* Flush pending output, close the log fd, free. Accepts NULL. */
void vmm_serial_destroy(struct vmm_serial *s);

/* One-byte register access at `offset` (0..7) from the base port. vCPU threads; thread-safe. */
void vmm_serial_io(struct vmm_serial *s, uint16_t offset, uint8_t *data, bool is_write);

/* Write out buffered output. Thread-safe. */
void vmm_serial_flush(struct vmm_serial *s);

/*
 * The VM is stopping: from now on output that cannot be written within
 * 100 ms (stdout is a pipe nobody drains) is dropped, and a write blocked on
 * a vCPU thread gives up when that thread is kicked. Any thread.
 */
void vmm_serial_stop(struct vmm_serial *s);

#endif
