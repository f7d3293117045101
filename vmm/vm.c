/*
 * VM assembly and lifetime. Setup order: /dev/kvm and its API version, the
 * VM with TSS and identity-map addresses, in-kernel IRQ chip and PIT, memory
 * slots, serial and legacy ports, virtio-mmio devices (each with an irqfd on
 * its GSI and ioeventfds for queue notifications), the kernel, initrd, zero
 * page, MP table and boot tables, then vCPUs. The first reason to end
 * (reset, crash, error, signal) fixes the exit status.
 */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "boot.h"
#include "cmdline.h"
#include "cpu.h"
#include "isolate.h"
#include "log.h"
#include "loop.h"
#include "memory.h"
#include "mmio.h"
#include "pio.h"
#include "serial.h"
#include "vcpu.h"
#include "virtio.h"

#define KVM_API 12
#define TSS_ADDR 0xfffbd000ull
#define IDENTITY_MAP_ADDR 0xfffbc000ull
#define MAX_VIRTIO 8

struct vmm_vm {
    int kvm_fd;
    int vm_fd;
    int sig_fd;
    struct vmm_mem mem;
    struct loop *loop;
    struct vmm_mmio_bus bus;
    struct vmm_serial *serial;
    struct vmm_pio pio;
    bool pio_init;
    struct virtio_host vhost;
    struct virtio_mmio *virtio[MAX_VIRTIO];
    unsigned nvirtio;
    uint32_t virtio_irqs[MAX_VIRTIO];
    struct kvm_cpuid2 *cpuid;
    struct vmm_vcpu_env env;
    struct vmm_vcpu *vcpus;
    unsigned nvcpus;
    atomic_int status; /* -1 while running */
    struct vmm_cmdline cmdline;
};

static void vm_end(void *opaque, int status)
{
    struct vmm_vm *vm = opaque;
    int expected = -1;
    atomic_compare_exchange_strong(&vm->status, &expected, status);
    atomic_store(&vm->env.stop, true);
    loop_stop(vm->loop);
}

static void on_reset(void *opaque)
{
    LOG_INFO("msg=\"guest requested reset through the i8042 (VM ends)\"");
    vm_end(opaque, VMM_EXIT_GUEST_OFF);
}

static void pulse_irq(void *opaque, uint32_t irq)
{
    struct vmm_vm *vm = opaque;
    struct kvm_irq_level lvl = {.irq = irq, .level = 1};
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &lvl) == 0) {
        lvl.level = 0;
        if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &lvl) == 0)
            return;
    }
    LOG_WARN("msg=\"KVM_IRQ_LINE failed\" irq=%u errno=%d", irq, errno);
}

static void serial_irq(void *opaque)
{
    pulse_irq(opaque, VMM_SERIAL_IRQ);
}

static int add_ioeventfd(void *opaque, uint64_t addr, uint32_t datamatch, int fd)
{
    struct vmm_vm *vm = opaque;
    struct kvm_ioeventfd io = {
        .datamatch = datamatch,
        .addr = addr,
        .len = 4,
        .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
    };
    if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
        int ret = -errno;
        LOG_ERR("msg=\"KVM_IOEVENTFD failed\" addr=0x%llx errno=%d", (unsigned long long)addr,
                -ret);
        return ret;
    }
    return 0;
}

static void on_signal(void *opaque, uint32_t events)
{
    struct vmm_vm *vm = opaque;
    struct signalfd_siginfo si;
    (void)events;
    if (read(vm->sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    LOG_INFO("msg=\"stopping on signal\" signal=%u", si.ssi_signo);
    vm_end(vm, VMM_EXIT_SIGNAL);
}

static int kvm_ioctl_step(int fd, unsigned long req, unsigned long arg, const char *what)
{
    if (ioctl(fd, req, arg) < 0) {
        int ret = -errno;
        LOG_ERR("msg=\"KVM setup failed\" step=%s errno=%d error=\"%s\"", what, -ret,
                strerror(-ret));
        return ret;
    }
    return 0;
}

static int setup_kvm(struct vmm_vm *vm, uint64_t mem_bytes)
{
    int ret;
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        ret = -errno;
        LOG_ERR("msg=\"cannot open /dev/kvm\" errno=%d error=\"%s\"", -ret, strerror(-ret));
        return ret;
    }
    int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API) {
        LOG_ERR("msg=\"unsupported KVM API version\" version=%d want=%d", api, KVM_API);
        return -ENOTSUP;
    }
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        {KVM_CAP_IRQCHIP, "irqchip"},     {KVM_CAP_IRQFD, "irqfd"},
        {KVM_CAP_IOEVENTFD, "ioeventfd"}, {KVM_CAP_PIT2, "pit2"},
        {KVM_CAP_EXT_CPUID, "cpuid2"},    {KVM_CAP_IMMEDIATE_EXIT, "immediate_exit"},
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
            LOG_ERR("msg=\"KVM lacks a required capability\" cap=%s", caps[i].name);
            return -ENOTSUP;
        }
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        ret = -errno;
        LOG_ERR("msg=\"KVM_CREATE_VM failed\" errno=%d error=\"%s\"", -ret, strerror(-ret));
        return ret;
    }
    if ((ret = kvm_ioctl_step(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR, "set_tss_addr")))
        return ret;
    uint64_t ident = IDENTITY_MAP_ADDR;
    if ((ret = kvm_ioctl_step(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, (unsigned long)&ident,
                              "set_identity_map_addr")))
        return ret;
    if ((ret = kvm_ioctl_step(vm->vm_fd, KVM_CREATE_IRQCHIP, 0, "create_irqchip")))
        return ret;
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if ((ret = kvm_ioctl_step(vm->vm_fd, KVM_CREATE_PIT2, (unsigned long)&pit, "create_pit2")))
        return ret;

    ret = vmm_mem_init(&vm->mem, mem_bytes);
    if (ret) {
        LOG_ERR("msg=\"cannot map guest memory\" bytes=%llu errno=%d",
                (unsigned long long)mem_bytes, -ret);
        return ret;
    }
    for (unsigned i = 0; i < vm->mem.nregions; i++) {
        struct kvm_userspace_memory_region r = {
            .slot = i,
            .guest_phys_addr = vm->mem.regions[i].gpa,
            .memory_size = vm->mem.regions[i].size,
            .userspace_addr = (uint64_t)(uintptr_t)vm->mem.regions[i].host,
        };
        if ((ret = kvm_ioctl_step(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, (unsigned long)&r,
                                  "set_user_memory_region")))
            return ret;
    }
    return 0;
}

/* Wrap `dev` (owned) in the next virtio-mmio slot. */
static int add_virtio(struct vmm_vm *vm, struct virtio_dev *dev, const char *name)
{
    int ret = 0;
    int irqfd = -1;
    if (vm->nvirtio >= MAX_VIRTIO) {
        ret = -ENOSPC;
        goto out;
    }
    uint32_t irq = VMM_VIRTIO_IRQ_BASE + vm->nvirtio;
    uint64_t base = VMM_VIRTIO_MMIO_BASE + (uint64_t)vm->nvirtio * VIRTIO_MMIO_WINDOW;
    irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (irqfd < 0) {
        ret = -errno;
        goto out;
    }
    struct kvm_irqfd kirq = {.fd = (uint32_t)irqfd, .gsi = irq};
    if (ioctl(vm->vm_fd, KVM_IRQFD, &kirq) < 0) {
        ret = -errno;
        goto out;
    }
    struct virtio_mmio *t = NULL;
    ret = virtio_mmio_create(&t, &vm->vhost, dev, base, irq, irqfd);
    dev = NULL;
    irqfd = -1; /* owned by the transport from here, also on failure */
    if (ret)
        goto out;
    vm->virtio[vm->nvirtio] = t;
    vm->virtio_irqs[vm->nvirtio] = irq;
    vm->nvirtio++;
    ret = vmm_mmio_register(&vm->bus, base, VIRTIO_MMIO_WINDOW, virtio_mmio_access, t);
    if (ret)
        goto out;
    char piece[128];
    int n = virtio_mmio_cmdline(t, piece, sizeof(piece));
    if (n < 0) {
        ret = n;
        goto out;
    }
    ret = vmm_cmdline_append(&vm->cmdline, piece);
    if (ret)
        goto out;
    LOG_INFO("msg=\"virtio device\" type=%s base=0x%llx irq=%u", name, (unsigned long long)base,
             irq);
out:
    if (ret)
        LOG_ERR("msg=\"cannot add virtio device\" type=%s errno=%d error=\"%s\"", name, -ret,
                strerror(-ret));
    if (irqfd >= 0)
        close(irqfd);
    (void)dev; /* a device not yet handed to the transport has no destructor of its own */
    return ret;
}

static int setup_devices(struct vmm_vm *vm, const struct vmm_config *cfg)
{
    int ret = 0;
    int log_fd = -1;
    if (cfg->serial_log) {
        log_fd = open(cfg->serial_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0640);
        if (log_fd < 0) {
            ret = -errno;
            LOG_ERR("msg=\"cannot open serial log\" errno=%d error=\"%s\"", -ret, strerror(-ret));
            return ret;
        }
    }
    ret = vmm_serial_create(&vm->serial, log_fd, VMM_SERIAL_LOG_MAX, cfg->serial_stdout, serial_irq,
                            vm);
    if (ret)
        return ret;
    vmm_pio_init(&vm->pio, vm->serial, on_reset, pulse_irq, vm);
    vm->pio_init = true;

    vm->vhost = (struct virtio_host){
        .mem = &vm->mem,
        .loop = vm->loop,
        .add_ioeventfd = add_ioeventfd,
        .opaque = vm,
    };
    if (cfg->vsock) {
        struct virtio_dev *dev = NULL;
        ret = virtio_vsock_create(&dev, cfg->vsock_cid, cfg->vsock_uds);
        if (ret) {
            LOG_ERR("msg=\"cannot create vsock device\" uds=%s errno=%d error=\"%s\"",
                    cfg->vsock_uds, -ret, strerror(-ret));
            return ret;
        }
        if ((ret = add_virtio(vm, dev, "vsock")))
            return ret;
    }
    if (cfg->rng) {
        struct virtio_dev *dev = NULL;
        ret = virtio_rng_create(&dev);
        if (ret) {
            LOG_ERR("msg=\"cannot create rng device\" errno=%d", -ret);
            return ret;
        }
        if ((ret = add_virtio(vm, dev, "rng")))
            return ret;
    }
    if (cfg->fs_dir) {
        struct virtio_dev *dev = NULL;
        const char *tag = cfg->fs_tag ? cfg->fs_tag : "capsem-workspace";
        ret = virtio_fs_create(&dev, cfg->fs_dir, tag, cfg->fs_events);
        if (ret) {
            LOG_ERR("msg=\"cannot share directory\" path=%s tag=%s errno=%d error=\"%s\"",
                    cfg->fs_dir, tag, -ret, strerror(-ret));
            return ret;
        }
        if ((ret = add_virtio(vm, dev, "fs")))
            return ret;
    }
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        struct virtio_dev *dev = NULL;
        ret = virtio_blk_create(&dev, cfg->disks[i].path, cfg->disks[i].read_only);
        if (ret) {
            LOG_ERR("msg=\"cannot open disk\" path=%s errno=%d error=\"%s\"", cfg->disks[i].path,
                    -ret, ret == -EINVAL ? "not a regular file" : strerror(-ret));
            return ret;
        }
        if ((ret = add_virtio(vm, dev, cfg->disks[i].read_only ? "blk-ro" : "blk")))
            return ret;
    }
    return 0;
}

static int setup_boot(struct vmm_vm *vm, const struct vmm_config *cfg)
{
    int ret;
    struct x86_kernel k;
    uint64_t initrd_gpa = 0, initrd_size = 0;
    ret = x86_elf_load_file(&vm->mem, cfg->kernel, &k);
    if (ret) {
        LOG_ERR("msg=\"cannot load kernel\" path=%s error=\"%s\"", cfg->kernel,
                ret == -ENOEXEC  ? "not a valid x86-64 vmlinux ELF"
                : ret == -ERANGE ? "a segment lies outside guest RAM"
                                 : strerror(-ret));
        return ret;
    }
    if (cfg->initrd) {
        ret = x86_initrd_load_file(&vm->mem, cfg->initrd, k.end, &initrd_gpa, &initrd_size);
        if (ret) {
            LOG_ERR("msg=\"cannot load initrd\" path=%s error=\"%s\"", cfg->initrd,
                    ret == -E2BIG ? "does not fit in guest RAM above the kernel" : strerror(-ret));
            return ret;
        }
    }
    if (cfg->cmdline && (ret = vmm_cmdline_append(&vm->cmdline, cfg->cmdline))) {
        LOG_ERR("msg=\"bad kernel command line\" error=\"%s\"",
                ret == -E2BIG ? "longer than 2047 bytes" : "contains a control character");
        return ret;
    }
    ret = x86_boot_params_setup(&vm->mem, vm->cmdline.buf, initrd_gpa, initrd_size);
    if (!ret)
        ret = x86_boot_tables_setup(&vm->mem);
    if (!ret)
        ret = x86_mptable_setup(&vm->mem, vm->nvcpus, vm->virtio_irqs, vm->nvirtio,
                                x86_cpuid_signature(vm->cpuid));
    if (ret) {
        LOG_ERR("msg=\"cannot write boot structures\" errno=%d", -ret);
        return ret;
    }
    LOG_INFO("msg=\"kernel loaded\" entry=0x%llx end=0x%llx initrd=0x%llx initrd_size=%llu",
             (unsigned long long)k.entry, (unsigned long long)k.end, (unsigned long long)initrd_gpa,
             (unsigned long long)initrd_size);
    LOG_INFO("msg=\"kernel command line\" cmdline=\"%s\"", vm->cmdline.buf);

    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) {
        LOG_ERR("msg=\"KVM_GET_VCPU_MMAP_SIZE failed\" errno=%d", errno);
        return -EIO;
    }
    bool tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        ret = vmm_vcpu_init(&vm->vcpus[i], vm->vm_fd, i, (size_t)run_size, &vm->env);
        if (ret) {
            LOG_ERR("msg=\"KVM_CREATE_VCPU failed\" vcpu=%u errno=%d", i, -ret);
            return ret;
        }
        ret = x86_vcpu_setup(vm->vcpus[i].fd, vm->cpuid, i, vm->nvcpus, tsc_deadline, k.entry);
        if (ret)
            return ret;
    }
    return 0;
}

int vmm_vm_create(struct vmm_vm **out, const struct vmm_config *cfg)
{
    int ret = 0;
    struct vmm_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    vm->kvm_fd = vm->vm_fd = vm->sig_fd = -1;
    atomic_init(&vm->status, -1);
    atomic_init(&vm->env.stop, false);
    pthread_mutex_init(&vm->env.gate_lock, NULL);
    pthread_cond_init(&vm->env.gate_cond, NULL);
    vm->env.bus = &vm->bus;
    vm->env.pio = &vm->pio;
    vm->env.end = vm_end;
    vm->env.opaque = vm;
    vm->nvcpus = cfg->vcpus;
    vmm_cmdline_init(&vm->cmdline);
    if ((ret = vmm_cmdline_append(&vm->cmdline, VMM_CMDLINE_BASE)))
        goto out;
    vm->vcpus = calloc(cfg->vcpus, sizeof(*vm->vcpus));
    if (!vm->vcpus) {
        ret = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < cfg->vcpus; i++)
        vm->vcpus[i].fd = -1;
    if ((ret = loop_create(&vm->loop)))
        goto out;
    if ((ret = setup_kvm(vm, cfg->memory_mib << 20)))
        goto out;
    if ((ret = x86_cpuid_supported(vm->kvm_fd, &vm->cpuid))) {
        LOG_ERR("msg=\"KVM_GET_SUPPORTED_CPUID failed\" errno=%d", -ret);
        goto out;
    }
    if ((ret = setup_devices(vm, cfg)))
        goto out;
    if ((ret = setup_boot(vm, cfg)))
        goto out;
    *out = vm;
    vm = NULL;
out:
    vmm_vm_destroy(vm);
    return ret;
}

static void stop_vcpus(struct vmm_vm *vm)
{
    if (vm->serial)
        vmm_serial_stop(vm->serial);
    pthread_mutex_lock(&vm->env.gate_lock);
    atomic_store(&vm->env.stop, true);
    pthread_cond_broadcast(&vm->env.gate_cond);
    pthread_mutex_unlock(&vm->env.gate_lock);
    for (unsigned i = 0; i < vm->nvcpus; i++)
        vmm_vcpu_kick(&vm->vcpus[i]);
    for (unsigned i = 0; i < vm->nvcpus; i++)
        vmm_vcpu_join(&vm->vcpus[i]);
}

int vmm_vm_run(struct vmm_vm *vm, bool seccomp)
{
    int ret;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Blocked before any thread exists, so only the signalfd sees them. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 || vmm_vcpu_signals_init() != 0) {
        LOG_ERR("msg=\"cannot set up signals\"");
        return VMM_EXIT_VMM_ERROR;
    }
    vm->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (vm->sig_fd < 0 || loop_add(vm->loop, vm->sig_fd, 0x001 /* EPOLLIN */, on_signal, vm)) {
        LOG_ERR("msg=\"cannot watch signals\" errno=%d", errno);
        return VMM_EXIT_VMM_ERROR;
    }
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        ret = vmm_vcpu_start(&vm->vcpus[i]);
        if (ret) {
            LOG_ERR("msg=\"cannot start vcpu thread\" vcpu=%u errno=%d", i, -ret);
            vm_end(vm, VMM_EXIT_VMM_ERROR);
            goto stop;
        }
    }
    /* The filter must not land while a new thread is still in its libc start-up. */
    pthread_mutex_lock(&vm->env.gate_lock);
    while (vm->env.at_gate < vm->nvcpus)
        pthread_cond_wait(&vm->env.gate_cond, &vm->env.gate_lock);
    pthread_mutex_unlock(&vm->env.gate_lock);
    if (seccomp) {
        ret = vmm_isolate_seccomp();
        if (ret) {
            LOG_ERR("msg=\"cannot install seccomp filter\" errno=%d error=\"%s\"", -ret,
                    strerror(-ret));
            vm_end(vm, VMM_EXIT_VMM_ERROR);
            goto stop;
        }
    }
    LOG_INFO("msg=\"starting guest\" vcpus=%u seccomp=%d", vm->nvcpus, seccomp);
    pthread_mutex_lock(&vm->env.gate_lock);
    vm->env.gate_open = true;
    pthread_cond_broadcast(&vm->env.gate_cond);
    pthread_mutex_unlock(&vm->env.gate_lock);

    /* A stop requested before the loop started (early crash) still ends it at once. */
    if (atomic_load(&vm->status) < 0) {
        ret = loop_run(vm->loop);
        if (ret)
            vm_end(vm, VMM_EXIT_VMM_ERROR);
    }
stop:
    stop_vcpus(vm);
    if (vm->serial)
        vmm_serial_flush(vm->serial);
    int status = atomic_load(&vm->status);
    return status < 0 ? VMM_EXIT_VMM_ERROR : status;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
    if (!vm)
        return;
    stop_vcpus(vm);
    for (unsigned i = 0; i < vm->nvirtio; i++)
        virtio_mmio_destroy(vm->virtio[i]);
    for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++)
        vmm_vcpu_fini(&vm->vcpus[i]);
    free(vm->vcpus);
    if (vm->pio_init)
        vmm_pio_fini(&vm->pio);
    vmm_serial_destroy(vm->serial);
    if (vm->sig_fd >= 0) {
        loop_del(vm->loop, vm->sig_fd);
        close(vm->sig_fd);
    }
    loop_destroy(vm->loop);
    free(vm->cpuid);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vmm_mem_fini(&vm->mem);
    pthread_mutex_destroy(&vm->env.gate_lock);
    pthread_cond_destroy(&vm->env.gate_cond);
    free(vm);
}
