/*
 * The vCPU run loop. A thread leaves its loop when the shared stop flag is
 * set; the kick signal (SIGUSR1, empty handler, no SA_RESTART) together with
 * kvm_run.immediate_exit makes KVM_RUN return -EINTR even if the signal
 * lands just before the thread enters the kernel.
 */
#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu.h"
#include "log.h"

#define KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
    (void)sig;
}

int vmm_vcpu_signals_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

int vmm_vcpu_init(struct vmm_vcpu *v, int vm_fd, unsigned id, size_t run_size,
                  struct vmm_vcpu_env *env)
{
    int ret = 0;
    memset(v, 0, sizeof(*v));
    v->fd = -1;
    v->id = id;
    v->env = env;
    v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        ret = -errno;
        goto out;
    }
    void *p = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        goto out;
    }
    v->run = p;
    v->run_size = run_size;
out:
    if (ret)
        vmm_vcpu_fini(v);
    return ret;
}

void vmm_vcpu_fini(struct vmm_vcpu *v)
{
    if (v->run)
        munmap(v->run, v->run_size);
    if (v->fd >= 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
}

static void end(struct vmm_vcpu *v, int status)
{
    v->env->end(v->env->opaque, status);
}

/* Handle one exit; returns false when this thread should stop. */
static bool handle_exit(struct vmm_vcpu *v, bool *mmio_warned)
{
    struct kvm_run *run = v->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint64_t bytes = (uint64_t)run->io.size * run->io.count;
        if (run->io.data_offset >= v->run_size || bytes > v->run_size - run->io.data_offset)
            return true; /* cannot happen with a sane KVM; never write outside the page */
        vmm_pio_dispatch(v->env->pio, run->io.port, (uint8_t *)run + run->io.data_offset,
                         run->io.size, run->io.count, run->io.direction == KVM_EXIT_IO_OUT);
        return true;
    }
    case KVM_EXIT_MMIO: {
        uint32_t len = run->mmio.len <= 8 ? run->mmio.len : 8;
        if (!vmm_mmio_dispatch(v->env->bus, run->mmio.phys_addr, run->mmio.data, len,
                               run->mmio.is_write) &&
            !*mmio_warned) {
            *mmio_warned = true;
            LOG_INFO("msg=\"guest accessed unclaimed MMIO (ignored; logged once per vCPU)\" "
                     "vcpu=%u addr=0x%llx len=%u write=%d",
                     v->id, (unsigned long long)run->mmio.phys_addr, len, run->mmio.is_write);
        }
        return true;
    }
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        LOG_INFO("msg=\"guest halted\" vcpu=%u", v->id);
        end(v, VMM_EXIT_GUEST_OFF);
        return false;
    case KVM_EXIT_SHUTDOWN:
        LOG_ERR("msg=\"guest crashed: triple fault\" vcpu=%u", v->id);
        x86_vcpu_dump(v->fd, v->id);
        end(v, VMM_EXIT_GUEST_CRASH);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        LOG_ERR("msg=\"guest crashed: VM entry failed\" vcpu=%u reason=0x%llx", v->id,
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        x86_vcpu_dump(v->fd, v->id);
        end(v, VMM_EXIT_GUEST_CRASH);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        LOG_ERR("msg=\"guest crashed: KVM internal error\" vcpu=%u suberror=%u", v->id,
                run->internal.suberror);
        x86_vcpu_dump(v->fd, v->id);
        end(v, VMM_EXIT_GUEST_CRASH);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) {
            LOG_ERR("msg=\"guest crashed: system event\" vcpu=%u", v->id);
            end(v, VMM_EXIT_GUEST_CRASH);
        } else {
            LOG_INFO("msg=\"guest reset or powered off\" vcpu=%u type=%u", v->id,
                     run->system_event.type);
            end(v, VMM_EXIT_GUEST_OFF);
        }
        return false;
    default:
        LOG_ERR("msg=\"unexpected KVM exit\" vcpu=%u reason=%u", v->id, run->exit_reason);
        end(v, VMM_EXIT_VMM_ERROR);
        return false;
    }
}

static void *thread_main(void *arg)
{
    struct vmm_vcpu *v = arg;
    struct vmm_vcpu_env *env = v->env;
    bool mmio_warned = false;

    /* Only the kick signal reaches vCPU threads; SIGTERM/SIGINT go to the loop's signalfd. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    pthread_mutex_lock(&env->gate_lock);
    env->at_gate++;
    pthread_cond_broadcast(&env->gate_cond);
    while (!env->gate_open && !atomic_load(&env->stop))
        pthread_cond_wait(&env->gate_cond, &env->gate_lock);
    pthread_mutex_unlock(&env->gate_lock);

    while (!atomic_load(&env->stop)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN) {
                v->run->immediate_exit = 0;
                continue;
            }
            LOG_ERR("msg=\"KVM_RUN failed\" vcpu=%u errno=%d", v->id, err);
            end(v, VMM_EXIT_VMM_ERROR);
            break;
        }
        if (!handle_exit(v, &mmio_warned))
            break;
    }
    return NULL;
}

int vmm_vcpu_start(struct vmm_vcpu *v)
{
    int ret = pthread_create(&v->thread, NULL, thread_main, v);
    if (ret)
        return -ret;
    v->started = true;
    return 0;
}

void vmm_vcpu_kick(struct vmm_vcpu *v)
{
    if (!v->started)
        return;
    if (v->run)
        v->run->immediate_exit = 1;
    pthread_kill(v->thread, KICK_SIGNAL);
}

void vmm_vcpu_join(struct vmm_vcpu *v)
{
    if (!v->started)
        return;
    pthread_join(v->thread, NULL);
    v->started = false;
}
