/*
 * Process isolation for capsem-vmm: an empty network namespace and a
 * seccomp allowlist installed before guest code runs. Syscalls outside the
 * allowlist fail with EPERM (they do not kill the process): a VMM bug then
 * surfaces as a logged error and an orderly exit, and a compromised VMM gets
 * nothing more from an error code than from a kill.
 */
#ifndef CAPSEM_VMM_ISOLATE_H
#define CAPSEM_VMM_ISOLATE_H

/*
 * Move the process into a new, empty network namespace (as non-root, inside
 * a new user namespace mapping our own uid/gid). Must run before any thread
 * is created. 0 or -errno.
 */
__attribute__((warn_unused_result)) int vmm_isolate_netns(void);

/*
 * Install the seccomp allowlist on every thread of the process (TSYNC).
 * After it: no open/exec/fork, sockets only AF_UNIX, no executable mappings,
 * ioctls only the KVM run-time ones and a few fd ones. 0 or -errno.
 */
__attribute__((warn_unused_result)) int vmm_isolate_seccomp(void);

/*
 * Install the filter and check that forbidden calls (open of a new file,
 * execve, an AF_INET socket, an executable mapping) are refused while
 * allowed ones work. Prints one line per check to stdout. Returns 0 when
 * every check passed, 1 otherwise. Irreversible: call it in a process that
 * exits afterwards.
 */
int vmm_isolate_selftest(void);

#endif
