/*
 * x86 vCPU setup through KVM ioctls. Values follow the Linux 64-bit boot
 * protocol and what Firecracker programs for the same entry path.
 */
#include "cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot.h"
#include "log.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define MISC_ENABLE_FAST_STRING 1ull
#define MTRR_ENABLE (1ull << 11)
#define MTRR_TYPE_WB 6ull

#define CR0_PE 0x1ull
#define CR0_ET 0x10ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4u
#define APIC_MODE_EXTINT 0x7u

int x86_cpuid_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
    for (unsigned nent = 128; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            return -ENOMEM;
        c->nent = nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            *out = c;
            return 0;
        }
        int err = errno;
        free(c);
        if (err != E2BIG)
            return -err;
    }
    return -E2BIG;
}

void x86_cpuid_patch(struct kvm_cpuid2 *c, unsigned apic_id, unsigned ncpus, bool tsc_deadline)
{
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffu) | ((apic_id & 0xffu) << 24) | ((ncpus & 0xffu) << 16);
            e->ecx |= 1u << 31; /* running under a hypervisor */
            /* Without it Linux calibrates the LAPIC timer against the PIT, which fails
             * when the host's clock is irregular, and loses high-resolution timers. */
            if (tsc_deadline)
                e->ecx |= 1u << 24;
            if (ncpus > 1)
                e->edx |= 1u << 28; /* HTT: the logical count field is valid */
            break;
        case 0xb:
            e->edx = apic_id;
            break;
        default:
            break;
        }
    }
}

uint32_t x86_cpuid_signature(const struct kvm_cpuid2 *c)
{
    for (unsigned i = 0; c && i < c->nent; i++)
        if (c->entries[i].function == 1)
            return c->entries[i].eax;
    return 0;
}

void x86_segment_from_gdt(uint64_t entry, uint16_t selector, struct kvm_segment *seg)
{
    memset(seg, 0, sizeof(*seg));
    seg->base = ((entry >> 16) & 0xffffffull) | (((entry >> 56) & 0xff) << 24);
    uint32_t limit = (uint32_t)((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
    seg->g = (entry >> 55) & 1;
    seg->limit = seg->g ? (limit << 12) | 0xfff : limit;
    seg->selector = selector;
    seg->type = (entry >> 40) & 0xf;
    seg->s = (entry >> 44) & 1;
    seg->dpl = (entry >> 45) & 3;
    seg->present = (entry >> 47) & 1;
    seg->avl = (entry >> 52) & 1;
    seg->l = (entry >> 53) & 1;
    seg->db = (entry >> 54) & 1;
    seg->unusable = !seg->present;
}

static int set_cpuid(int fd, const struct kvm_cpuid2 *sup, unsigned id, unsigned ncpus,
                     bool tsc_deadline)
{
    size_t sz = sizeof(*sup) + sup->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c)
        return -ENOMEM;
    memcpy(c, sup, sz);
    x86_cpuid_patch(c, id, ncpus, tsc_deadline);
    int ret = ioctl(fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
    free(c);
    return ret;
}

static int set_msrs(int fd)
{
    static const struct {
        uint32_t index;
        uint64_t data;
    } boot[] = {
        {MSR_IA32_SYSENTER_CS, 0},
        {MSR_IA32_SYSENTER_ESP, 0},
        {MSR_IA32_SYSENTER_EIP, 0},
        {MSR_STAR, 0},
        {MSR_CSTAR, 0},
        {MSR_KERNEL_GS_BASE, 0},
        {MSR_SYSCALL_MASK, 0},
        {MSR_LSTAR, 0},
        {MSR_IA32_TSC, 0},
        {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
        {MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB},
    };
    /* One MSR per call so an MSR this host's KVM lacks is skipped, not fatal. */
    for (size_t i = 0; i < sizeof(boot) / sizeof(boot[0]); i++) {
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } one;
        memset(&one, 0, sizeof(one));
        one.hdr.nmsrs = 1;
        one.e.index = boot[i].index;
        one.e.data = boot[i].data;
        int n = ioctl(fd, KVM_SET_MSRS, &one);
        if (n < 0)
            return -errno;
        if (n != 1)
            LOG_WARN("msg=\"MSR not accepted by KVM\" msr=0x%x", boot[i].index);
    }
    return 0;
}

static int set_fpu(int fd)
{
    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    return ioctl(fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

static uint32_t lvt_mode(uint32_t reg, uint32_t mode)
{
    return (reg & ~0x700u) | (mode << 8);
}

static int set_lapic(int fd)
{
    struct kvm_lapic_state st;
    if (ioctl(fd, KVM_GET_LAPIC, &st) < 0)
        return -errno;
    uint32_t v;
    memcpy(&v, st.regs + APIC_LVT0, 4);
    v = lvt_mode(v, APIC_MODE_EXTINT);
    memcpy(st.regs + APIC_LVT0, &v, 4);
    memcpy(&v, st.regs + APIC_LVT1, 4);
    v = lvt_mode(v, APIC_MODE_NMI);
    memcpy(st.regs + APIC_LVT1, &v, 4);
    return ioctl(fd, KVM_SET_LAPIC, &st) < 0 ? -errno : 0;
}

static int set_bsp_regs(int fd, uint64_t entry)
{
    struct kvm_sregs sregs;
    if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    struct kvm_segment code, data, tss;
    x86_segment_from_gdt(x86_gdt_entry(0xa09b, 0, 0xfffff), X86_BOOT_CS, &code);
    x86_segment_from_gdt(x86_gdt_entry(0xc093, 0, 0xfffff), X86_BOOT_DS, &data);
    x86_segment_from_gdt(x86_gdt_entry(0x808b, 0, 0xfffff), X86_BOOT_TSS, &tss);
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = tss;
    sregs.gdt.base = X86_BOOT_GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = X86_BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cr3 = X86_BOOT_PML4;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;

    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = entry;
    regs.rsp = X86_BOOT_STACK;
    regs.rbp = X86_BOOT_STACK;
    regs.rsi = X86_BOOT_ZERO_PAGE;
    return ioctl(fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
}

int x86_vcpu_setup(int vcpu_fd, const struct kvm_cpuid2 *cpuid, unsigned id, unsigned ncpus,
                   bool tsc_deadline, uint64_t entry)
{
    const char *step = "cpuid";
    int ret = set_cpuid(vcpu_fd, cpuid, id, ncpus, tsc_deadline);
    if (ret)
        goto out;
    step = "msrs";
    ret = set_msrs(vcpu_fd);
    if (ret)
        goto out;
    step = "fpu";
    ret = set_fpu(vcpu_fd);
    if (ret)
        goto out;
    step = "lapic";
    ret = set_lapic(vcpu_fd);
    if (ret)
        goto out;
    if (id == 0) {
        step = "registers";
        ret = set_bsp_regs(vcpu_fd, entry);
    }
out:
    if (ret)
        LOG_ERR("msg=\"vcpu setup failed\" vcpu=%u step=%s errno=%d", id, step, -ret);
    return ret;
}

void x86_vcpu_dump(int vcpu_fd, unsigned id)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0) {
        LOG_ERR("msg=\"cannot read vcpu registers\" vcpu=%u", id);
        return;
    }
    LOG_ERR("msg=\"vcpu registers\" vcpu=%u rip=0x%llx rsp=0x%llx rflags=0x%llx rax=0x%llx "
            "rbx=0x%llx rcx=0x%llx rdx=0x%llx rsi=0x%llx rdi=0x%llx rbp=0x%llx",
            id, (unsigned long long)r.rip, (unsigned long long)r.rsp, (unsigned long long)r.rflags,
            (unsigned long long)r.rax, (unsigned long long)r.rbx, (unsigned long long)r.rcx,
            (unsigned long long)r.rdx, (unsigned long long)r.rsi, (unsigned long long)r.rdi,
            (unsigned long long)r.rbp);
    LOG_ERR("msg=\"vcpu system registers\" vcpu=%u cr0=0x%llx cr2=0x%llx cr3=0x%llx cr4=0x%llx "
            "efer=0x%llx cs=0x%x cs_base=0x%llx",
            id, (unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
            (unsigned long long)s.cr4, (unsigned long long)s.efer, s.cs.selector,
            (unsigned long long)s.cs.base);
}
