/*
 * One microVM: the KVM VM, its memory, legacy devices, virtio-mmio devices,
 * vCPUs and the event loop. vmm_vm_create() does all setup (kernel loaded,
 * devices listening) without running guest code; vmm_vm_run() starts the
 * vCPUs and serves devices until the guest resets or crashes, a fatal error
 * happens, or SIGTERM/SIGINT arrives.
 */
#ifndef CAPSEM_VMM_VM_H
#define CAPSEM_VMM_VM_H

#include "config.h"

struct vmm_vm;

/* First IRQ and MMIO address handed to virtio devices. */
#define VMM_VIRTIO_IRQ_BASE 5u
#define VMM_VIRTIO_MMIO_BASE 0xd0000000ull

/*
 * Build the VM described by `cfg` (borrowed for the call only). On error
 * logs one line saying what failed and returns -errno.
 */
__attribute__((warn_unused_result)) int vmm_vm_create(struct vmm_vm **out,
                                                      const struct vmm_config *cfg);

/*
 * Run the VM on the calling thread (which becomes the loop thread). With
 * `seccomp`, the allowlist is installed on all threads before any guest code
 * runs. Returns the process exit status (VMM_EXIT_* in vcpu.h).
 */
int vmm_vm_run(struct vmm_vm *vm, bool seccomp);

/* Stop everything still running and free the VM. Accepts NULL. */
void vmm_vm_destroy(struct vmm_vm *vm);

#endif
