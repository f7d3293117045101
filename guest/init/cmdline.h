/*
 * Kernel command line lookup for capsem-init: finds `key=value` words in the
 * text of /proc/cmdline. Plain parsing, no I/O, so it is unit-tested on the host.
 */
#ifndef CAPSEM_GUEST_CMDLINE_H
#define CAPSEM_GUEST_CMDLINE_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Look up `key` (NUL-terminated) in `cmdline[0..len)`: words are separated by
 * blanks; a word `key=value` yields `value`, a bare `key` yields an empty
 * value; the last occurrence wins, like the kernel's own parameters. Double
 * quotes around a word (`key="a b"`) are honoured and not part of the value.
 * Returns true and *val (borrowing `cmdline`) when found.
 */
bool cmdline_get(const char *cmdline, size_t len, const char *key, struct slice *val);

/* True when `key` is present with value `want` (NUL-terminated). */
bool cmdline_is(const char *cmdline, size_t len, const char *key, const char *want);

#endif
