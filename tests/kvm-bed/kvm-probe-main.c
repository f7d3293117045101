/*
 * capsem-kvm-probe: prints the KVM speed verdict in one line (the same as
 * `capsem-vmm --probe`) and exits 0 when /dev/kvm runs guest code natively,
 * 1 when it is a slow nested KVM emulating guest ring 0, 2 when unavailable.
 * With -v it adds the measured figures on a second line (stderr).
 */
#include <stdio.h>
#include <string.h>

#include "probe.h"

int main(int argc, char **argv)
{
    struct vmm_kvm_probe_result r;
    int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;

    if (argc > 2 || (argc == 2 && !verbose)) {
        fprintf(stderr, "usage: capsem-kvm-probe [-v]\n");
        return 2;
    }
    memset(&r, 0, sizeof(r));
    int ret = vmm_kvm_probe(&r);
    int code = vmm_kvm_probe_print(ret, &r);
    if (verbose && ret == 0)
        fprintf(stderr, "kvm-probe: %.3f ns/iteration, %llu iterations in %.1f ms of guest time\n",
                r.ns_per_iter, (unsigned long long)r.iterations, r.elapsed_ms);
    return code;
}
