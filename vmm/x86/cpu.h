/*
 * Per-vCPU x86 state for the direct 64-bit Linux boot: CPUID (KVM's
 * supported set with the APIC id and hypervisor bit fixed up, KVM's
 * paravirtual leaves kept), boot MSRs, FPU, LAPIC LINT0/LINT1 wiring and, for
 * the BSP only, long-mode registers pointing at the kernel entry.
 */
#ifndef CAPSEM_VMM_X86_CPU_H
#define CAPSEM_VMM_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

/* KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd; *out is malloc'ed (caller frees). 0 or -errno. */
__attribute__((warn_unused_result)) int x86_cpuid_supported(int kvm_fd, struct kvm_cpuid2 **out);

/*
 * Fix a CPUID table up for vCPU `apic_id` of `ncpus`: initial APIC id and
 * logical count in leaf 1, hypervisor bit, x2APIC id in leaf 0xB, and the
 * TSC-deadline timer bit when KVM emulates it (`tsc_deadline`; KVM does not
 * report it in its supported table). Pure.
 */
void x86_cpuid_patch(struct kvm_cpuid2 *c, unsigned apic_id, unsigned ncpus, bool tsc_deadline);

/* Segment register for GDT `entry` loaded through `selector`. Pure. */
void x86_segment_from_gdt(uint64_t entry, uint16_t selector, struct kvm_segment *seg);

/*
 * Configure vCPU `id` (fd `vcpu_fd`) of `ncpus`. `cpuid` is the supported
 * table (borrowed, not modified). The BSP (id 0) also gets registers for the
 * 64-bit entry at `entry` with RSI = zero page; APs stay waiting for SIPI.
 * `tsc_deadline`: KVM emulates the TSC-deadline timer (advertise it).
 * 0 or -errno.
 */
__attribute__((warn_unused_result)) int x86_vcpu_setup(int vcpu_fd, const struct kvm_cpuid2 *cpuid,
                                                       unsigned id, unsigned ncpus,
                                                       bool tsc_deadline, uint64_t entry);

/* Log the vCPU's registers once at ERR level (crash report). */
void x86_vcpu_dump(int vcpu_fd, unsigned id);

/* CPUID leaf 1 EAX (family/model/stepping) from the supported table, 0 if absent. */
uint32_t x86_cpuid_signature(const struct kvm_cpuid2 *c);

#endif
