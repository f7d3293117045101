/*
 * The guest kernel command line, built from pieces (base options, one
 * virtio_mmio.device= per device, the user's additions) with a hard limit of
 * Linux's x86 COMMAND_LINE_SIZE.
 */
#ifndef CAPSEM_VMM_CMDLINE_H
#define CAPSEM_VMM_CMDLINE_H

#include <stddef.h>

/* Bytes including the terminating NUL (Linux's x86 COMMAND_LINE_SIZE). */
#define VMM_CMDLINE_MAX 2048u

/*
 * Options every guest gets: serial console, reset via i8042, no slow probes.
 * `quiet` because every console byte costs two or three VM exits (a verbose
 * boot took 7.3 s instead of 3.5 s in the KVM test bed); errors and panics are
 * still printed, and an appended `loglevel=7` brings the full log back.
 * `noreplace-smp`: on a 1-vCPU guest Linux otherwise rewrites every LOCK
 * prefix of its own text to the uniprocessor form, one text_poke (two page
 * table switches and a TLB flush) each; in the KVM test bed that was about a
 * quarter of the kernel's own boot time. The LOCK prefixes simply stay.
 */
#define VMM_CMDLINE_BASE                                                                           \
    "console=ttyS0 reboot=k panic=-1 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.dumbkbd "       \
    "tsc=reliable no_timer_check noreplace-smp quiet"

struct vmm_cmdline {
    char buf[VMM_CMDLINE_MAX];
    size_t len; /* strlen(buf) */
};

/* Start empty. */
void vmm_cmdline_init(struct vmm_cmdline *c);

/*
 * Append `s` (borrowed), separated from what is there by one space. An empty
 * `s` changes nothing. 0; -E2BIG when the result would not fit (the line is
 * left unchanged); -EINVAL when `s` holds a control character (newline…).
 */
__attribute__((warn_unused_result)) int vmm_cmdline_append(struct vmm_cmdline *c, const char *s);

#endif
