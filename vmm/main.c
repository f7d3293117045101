/*
 * capsem-vmm entry point: parse the config, optionally probe KVM or run the
 * seccomp self-test, otherwise build the VM, enter an empty network
 * namespace and run the guest. The exit status says how the VM ended
 * (see vmm/README.md).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "isolate.h"
#include "log.h"
#include "probe.h"
#include "vcpu.h"
#include "vm.h"

static int do_probe(void)
{
    struct vmm_kvm_probe_result r;
    memset(&r, 0, sizeof(r));
    int ret = vmm_kvm_probe(&r);
    return vmm_kvm_probe_print(ret, &r);
}

static const char *log_level_arg(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--log-level") == 0)
            return argv[i + 1];
    return NULL;
}

int main(int argc, char **argv)
{
    int status = VMM_EXIT_USAGE;
    char err[512] = "";
    struct vmm_config cfg;
    enum vmm_action action = VMM_ACTION_RUN;
    struct vmm_vm *vm = NULL;

    vmm_config_init(&cfg);
    log_init("vmm", LOG_INFO);
    const char *lvl = log_level_arg(argc, argv);
    if (lvl) {
        int l = log_level_parse(lvl);
        if (l < 0) {
            fprintf(stderr, "capsem-vmm: --log-level: expected err, warn, info or debug\n");
            goto out;
        }
        log_init("vmm", (enum log_level)l);
    }
    if (vmm_config_parse_args(&cfg, argc, argv, &action, err, sizeof(err)) != 0) {
        fprintf(stderr, "capsem-vmm: %s\n", err);
        goto out;
    }
    switch (action) {
    case VMM_ACTION_HELP:
        fputs(vmm_config_usage, stdout);
        status = 0;
        goto out;
    case VMM_ACTION_PROBE:
        status = do_probe();
        goto out;
    case VMM_ACTION_SECCOMP_SELFTEST:
        status = vmm_isolate_selftest();
        goto out;
    case VMM_ACTION_RUN:
        break;
    }
    if (vmm_config_validate(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "capsem-vmm: %s\n", err);
        goto out;
    }

    /* A closed stdout pipe or peer socket must be an EPIPE error, never a silent death. */
    signal(SIGPIPE, SIG_IGN);

    /* From here SIGTERM/SIGINT/SIGHUP wait for the VM's signalfd, so a stop during
     * setup still ends with a clean teardown (sockets unlinked) and status 4. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop_signals, NULL);

    status = VMM_EXIT_VMM_ERROR;
    if (vmm_vm_create(&vm, &cfg) != 0)
        goto out;
    if (cfg.netns) {
        int ret = vmm_isolate_netns();
        if (ret) {
            LOG_ERR("msg=\"cannot enter an empty network namespace (netns=false skips it)\" "
                    "errno=%d error=\"%s\"",
                    -ret, strerror(-ret));
            goto out;
        }
    }
    status = vmm_vm_run(vm, cfg.seccomp);
    LOG_INFO("msg=\"vm ended\" status=%d", status);
out:
    vmm_vm_destroy(vm);
    vmm_config_fini(&cfg);
    fflush(stdout);
    return status;
}
