/*
 * KVM speed probe. A throwaway VM with 64 KiB of RAM runs, in real mode at
 * GPA 0x1000, the loop `dec ecx; jnz .-2; hlt` with ECX set by the host, so
 * every KVM_RUN is one timed countdown ending in a HLT exit. Runs grow
 * geometrically until one lasts long enough to time well, or until the next
 * one is predicted to overrun the budget, so the probe stays well under a
 * second even where each guest instruction is trapped and emulated; the
 * final size is repeated and the fastest run counts, so a busy machine
 * (preempted vCPU threads) does not look like a slow KVM.
 *
 * Figures behind the threshold (10M-iteration reference, measured with this
 * code): hardware KVM a few ms; inside the QEMU TCG test bed ~20x that; the
 * build machines' nested KVM that emulates ring 0 several orders of
 * magnitude more. VMM_KVM_PROBE_SLOW_MS sits between the bed and the slow
 * case with a wide margin either way (see docs/testing.md for the numbers).
 */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define GUEST_MEM_SIZE 0x10000u
#define CODE_GPA 0x1000u
#define TSS_ADDR 0xfffbd000u
/* Total guest run time the probe allows itself, and the run length it aims for. */
#define BUDGET_NS 250000000.0
#define TARGET_NS 10000000.0
/* Timed repeats at the final size: the fastest counts (others were preempted). */
#define REPEATS 5
#define FIRST_ITERS 64u
#define MAX_ITERS 0x7fffffffu

/* 66 49: dec ecx (16-bit code, operand-size prefix); 75 fc: jnz back to it; f4: hlt. */
static const uint8_t probe_code[] = {0x66, 0x49, 0x75, 0xfc, 0xf4};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void set_reason(struct vmm_kvm_probe_result *r, const char *what, int err)
{
    if (err)
        snprintf(r->reason, sizeof(r->reason), "%s: %s", what, strerror(err));
    else
        snprintf(r->reason, sizeof(r->reason), "%s", what);
}

/* One countdown of `iters` iterations; its wall time in *ns. 0 or -errno (reason set). */
static int run_once(int vcpu, struct kvm_run *run, uint32_t iters, double *ns,
                    struct vmm_kvm_probe_result *r)
{
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = CODE_GPA;
    regs.rcx = iters;
    regs.rflags = 0x2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
        int err = errno;
        set_reason(r, "KVM_SET_REGS", err);
        return -err;
    }
    double t0 = now_ns();
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN)
                continue;
            set_reason(r, "KVM_RUN", err);
            return -err;
        }
        if (run->exit_reason == KVM_EXIT_HLT)
            break;
        if (run->exit_reason == KVM_EXIT_INTR)
            continue;
        snprintf(r->reason, sizeof(r->reason), "guest code did not run (KVM exit reason %u)",
                 run->exit_reason);
        return -EIO;
    }
    *ns = now_ns() - t0;
    return 0;
}

/* Real-mode segment with base 0. */
static void flat_real_segment(struct kvm_segment *s)
{
    s->base = 0;
    s->selector = 0;
    s->limit = 0xffff;
}

int vmm_kvm_probe_path(const char *dev, struct vmm_kvm_probe_result *r)
{
    int ret = 0;
    int kvm = -1, vm = -1, vcpu = -1;
    void *mem = MAP_FAILED;
    struct kvm_run *run = MAP_FAILED;
    size_t run_size = 0;
    struct vmm_kvm_probe_result res;

    if (!r || !dev)
        return -EINVAL;
    memset(&res, 0, sizeof(res));
    res.speed = VMM_KVM_UNAVAILABLE;

    kvm = open(dev, O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        set_reason(&res, dev, errno);
        goto out;
    }
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        snprintf(res.reason, sizeof(res.reason), "%s is not a usable KVM device (API %d)", dev,
                 api);
        goto out;
    }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        set_reason(&res, "KVM_CREATE_VM", errno);
        goto out;
    }
    /* Intel without unrestricted guest needs a TSS area for real mode; harmless elsewhere. */
    (void)ioctl(vm, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR);

    mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        ret = -errno;
        set_reason(&res, "mmap guest memory", -ret);
        goto out;
    }
    memcpy((uint8_t *)mem + CODE_GPA, probe_code, sizeof(probe_code));
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = GUEST_MEM_SIZE,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        set_reason(&res, "KVM_SET_USER_MEMORY_REGION", errno);
        goto out;
    }
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) {
        set_reason(&res, "KVM_CREATE_VCPU", errno);
        goto out;
    }
    int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        set_reason(&res, "KVM_GET_VCPU_MMAP_SIZE", mmap_size < 0 ? errno : EINVAL);
        goto out;
    }
    run_size = (size_t)mmap_size;
    run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) {
        set_reason(&res, "mmap kvm_run", errno);
        goto out;
    }
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
        set_reason(&res, "KVM_GET_SREGS", errno);
        goto out;
    }
    flat_real_segment(&sregs.cs);
    flat_real_segment(&sregs.ds);
    flat_real_segment(&sregs.es);
    flat_real_segment(&sregs.ss);
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) {
        set_reason(&res, "KVM_SET_SREGS", errno);
        goto out;
    }

    /*
     * The first entry into a new VM costs far more than later ones (page
     * tables, code translation in an emulator), and every run pays a fixed
     * entry/exit cost: a warm-up run first, then a one-iteration run
     * measures that fixed cost so it can be taken out of the estimates.
     */
    double total = 0, ns = 0, overhead = 0;
    for (int i = 0; i < 2; i++) {
        if (run_once(vcpu, run, 1, &ns, &res) != 0)
            goto out;
        total += ns;
        res.iterations += 1;
    }
    overhead = ns;

    /*
     * Grow the run until it lasts TARGET_NS, or stop when the next one,
     * predicted from the last, would take the total past BUDGET_NS.
     */
    uint32_t iters = FIRST_ITERS;
    double per_iter = 0;
    for (;;) {
        if (run_once(vcpu, run, iters, &ns, &res) != 0)
            goto out;
        total += ns;
        res.iterations += iters;
        per_iter = (ns > overhead ? ns - overhead : ns) / (double)iters;
        if (ns >= TARGET_NS || iters == MAX_ITERS)
            break;
        double next = per_iter > 0 ? (TARGET_NS * 1.2) / per_iter : (double)iters * 64.0;
        if (next > (double)iters * 64.0)
            next = (double)iters * 64.0;
        if (next < (double)iters * 2.0)
            next = (double)iters * 2.0;
        if (next > (double)MAX_ITERS)
            next = (double)MAX_ITERS;
        if (total + overhead + per_iter * next > BUDGET_NS)
            break;
        iters = (uint32_t)next;
    }
    /*
     * Wall time includes any moment the vCPU thread (or, in an emulator,
     * the emulated CPU) was not running: repeat the final run and keep the
     * fastest, within the budget.
     */
    double best = per_iter;
    for (int i = 1; i < REPEATS && total + overhead + per_iter * (double)iters <= BUDGET_NS; i++) {
        if (run_once(vcpu, run, iters, &ns, &res) != 0)
            goto out;
        total += ns;
        res.iterations += iters;
        per_iter = (ns > overhead ? ns - overhead : ns) / (double)iters;
        if (per_iter < best)
            best = per_iter;
    }
    per_iter = best;
    res.elapsed_ms = total / 1e6;
    res.ns_per_iter = per_iter;
    res.ref_ms = per_iter * (double)VMM_KVM_PROBE_REF_ITERS / 1e6;
    res.speed = vmm_kvm_probe_classify(res.ref_ms);
out:
    if (run != MAP_FAILED)
        munmap(run, run_size);
    if (vcpu >= 0)
        close(vcpu);
    if (mem != MAP_FAILED)
        munmap(mem, GUEST_MEM_SIZE);
    if (vm >= 0)
        close(vm);
    if (kvm >= 0)
        close(kvm);
    if (ret == 0)
        *r = res;
    return ret;
}

int vmm_kvm_probe(struct vmm_kvm_probe_result *r)
{
    return vmm_kvm_probe_path("/dev/kvm", r);
}

enum vmm_kvm_speed vmm_kvm_probe_classify(double ref_ms)
{
    if (!(ref_ms >= 0) || isinf(ref_ms))
        return VMM_KVM_UNAVAILABLE;
    return ref_ms < VMM_KVM_PROBE_SLOW_MS ? VMM_KVM_NATIVE : VMM_KVM_SLOW;
}

/* Milliseconds with one decimal below 100, whole above. */
static void format_ms(double ms, char *buf, size_t size)
{
    if (ms < 100.0)
        snprintf(buf, size, "%.1f ms", ms);
    else
        snprintf(buf, size, "%.0f ms", ms);
}

int vmm_kvm_probe_format(int ret, const struct vmm_kvm_probe_result *r, char *buf, size_t size)
{
    char ms[32];

    if (!buf || size == 0)
        return 2;
    if (ret != 0 || !r) {
        snprintf(buf, size, "kvm: unavailable: probe failed: %s",
                 strerror(ret < 0 ? -ret : EINVAL));
        return 2;
    }
    switch (r->speed) {
    case VMM_KVM_NATIVE:
        format_ms(r->ref_ms, ms, sizeof(ms));
        snprintf(buf, size, "kvm: native %s", ms);
        return 0;
    case VMM_KVM_SLOW:
        format_ms(r->ref_ms, ms, sizeof(ms));
        snprintf(buf, size, "kvm: slow %s (nested KVM emulating guest ring 0)", ms);
        return 1;
    case VMM_KVM_UNAVAILABLE:
        break;
    }
    snprintf(buf, size, "kvm: unavailable: %s", r->reason[0] ? r->reason : "unknown reason");
    return 2;
}

int vmm_kvm_probe_print(int ret, const struct vmm_kvm_probe_result *r)
{
    char line[256];
    int code = vmm_kvm_probe_format(ret, r, line, sizeof(line));
    printf("%s\n", line);
    fflush(stdout);
    return code;
}
