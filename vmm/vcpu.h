/*
 * vCPU threads. Each thread only runs KVM_RUN and dispatches exits: MMIO to
 * the MMIO bus, port I/O to the legacy devices, and guest reset, crash or a
 * KVM failure to the VM's end callback. Stopping: set the shared stop flag,
 * then vmm_vcpu_kick() makes a thread's KVM_RUN return (immediate_exit plus
 * a signal), and vmm_vcpu_join() waits for it.
 */
#ifndef CAPSEM_VMM_VCPU_H
#define CAPSEM_VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "mmio.h"
#include "pio.h"

/* Exit statuses of capsem-vmm (also documented in vmm/README.md). */
#define VMM_EXIT_GUEST_OFF 0
#define VMM_EXIT_VMM_ERROR 1
#define VMM_EXIT_USAGE 2
#define VMM_EXIT_GUEST_CRASH 3
#define VMM_EXIT_SIGNAL 4

/* What vCPU threads share with the VM (all borrowed). */
struct vmm_vcpu_env {
    const struct vmm_mmio_bus *bus;
    struct vmm_pio *pio;
    /* The VM must end with `status`; called once or more, first call wins. */
    void (*end)(void *opaque, int status);
    void *opaque;
    atomic_bool stop;
    /* Threads wait here until the VM is fully set up (seccomp installed). */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    bool gate_open;
    /* Threads that reached the gate (their start-up syscalls, like rseq, are done). */
    unsigned at_gate;
};

struct vmm_vcpu {
    unsigned id;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool started;
    struct vmm_vcpu_env *env;
};

/* Install the kick signal's handler (process-wide, once, before any vCPU starts). */
__attribute__((warn_unused_result)) int vmm_vcpu_signals_init(void);

/* KVM_CREATE_VCPU `id` on `vm_fd` and map its kvm_run. 0 or -errno. */
__attribute__((warn_unused_result)) int vmm_vcpu_init(struct vmm_vcpu *v, int vm_fd, unsigned id,
                                                      size_t run_size, struct vmm_vcpu_env *env);
/* Close and unmap; the thread must have been joined. Accepts a zeroed or failed one. */
void vmm_vcpu_fini(struct vmm_vcpu *v);

/* Start the thread (it waits on the env gate). 0 or -errno. */
__attribute__((warn_unused_result)) int vmm_vcpu_start(struct vmm_vcpu *v);
/* Make the thread's KVM_RUN return soon. Any thread. */
void vmm_vcpu_kick(struct vmm_vcpu *v);
/* Wait for the thread to end (env->stop must be set). */
void vmm_vcpu_join(struct vmm_vcpu *v);

#endif
