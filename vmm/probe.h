/*
 * KVM speed probe: tells whether /dev/kvm runs guest ring-0 code natively or
 * only emulates it (a nested KVM that traps every guest instruction, far too
 * slow to boot a kernel), or is unavailable. It creates a throwaway VM, runs a
 * hand-written real-mode countdown loop and times it with CLOCK_MONOTONIC.
 * Used by `capsem-vmm --probe`, `capsem-kvm-probe` and the kvm test harness.
 */
#ifndef CAPSEM_VMM_PROBE_H
#define CAPSEM_VMM_PROBE_H

#include <stddef.h>
#include <stdint.h>

enum vmm_kvm_speed {
    VMM_KVM_UNAVAILABLE = 0, /* no /dev/kvm, no permission, or a VM cannot run */
    VMM_KVM_NATIVE = 1,      /* guest code runs at hardware (or near) speed */
    VMM_KVM_SLOW = 2,        /* guest ring-0 code is emulated: unusable for Linux guests */
};

/*
 * The reference workload whose extrapolated duration is reported: this many
 * iterations of the two-instruction loop (a few ms on hardware KVM).
 */
#define VMM_KVM_PROBE_REF_ITERS 10000000ull
/* Extrapolated reference times at or above this are "slow" (see probe.c). */
#define VMM_KVM_PROBE_SLOW_MS 600.0

struct vmm_kvm_probe_result {
    enum vmm_kvm_speed speed;
    double ref_ms;       /* extrapolated time of VMM_KVM_PROBE_REF_ITERS iterations */
    double ns_per_iter;  /* measured cost of one loop iteration */
    uint64_t iterations; /* loop iterations actually run */
    double elapsed_ms;   /* wall time the probe spent running guest code */
    char reason[160];    /* why, when unavailable */
};

/*
 * Probe /dev/kvm. Fills `r` (borrowed) and returns 0 whenever a verdict was
 * reached, "unavailable" included; -EINVAL when r is NULL, -ENOMEM when the
 * probe's own memory cannot be mapped (r is then left untouched). Takes well under
 * a second in every case: the loop grows geometrically and stops before the
 * predicted next run would pass the time budget. Thread-safe: it uses no
 * signals and no global state.
 */
__attribute__((warn_unused_result)) int vmm_kvm_probe(struct vmm_kvm_probe_result *r);

/* As vmm_kvm_probe() on another device node (tests use missing or non-KVM paths). */
__attribute__((warn_unused_result)) int vmm_kvm_probe_path(const char *dev,
                                                           struct vmm_kvm_probe_result *r);

/* Speed class for an extrapolated reference time (ms); negative or NaN is unavailable. */
enum vmm_kvm_speed vmm_kvm_probe_classify(double ref_ms);

/*
 * The one-line verdict, e.g. "kvm: native 3.1 ms", "kvm: slow 1840 ms (nested
 * KVM emulating guest ring 0)" or "kvm: unavailable: <reason>", into `buf`
 * (always NUL-terminated). `ret` is vmm_kvm_probe()'s return value. Returns
 * the exit code that goes with it: 0 native, 1 slow, 2 unavailable.
 */
int vmm_kvm_probe_format(int ret, const struct vmm_kvm_probe_result *r, char *buf, size_t size);

/* Print vmm_kvm_probe_format()'s line on stdout; returns its exit code. */
int vmm_kvm_probe_print(int ret, const struct vmm_kvm_probe_result *r);

#endif
