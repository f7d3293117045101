/*
 * Kernel command line builder: appends pieces all-or-nothing under the
 * COMMAND_LINE_SIZE limit, so a too-long line is an error, never a silently
 * truncated one.
 */
#include "cmdline.h"

#include <errno.h>
#include <string.h>

void vmm_cmdline_init(struct vmm_cmdline *c)
{
    c->buf[0] = '\0';
    c->len = 0;
}

int vmm_cmdline_append(struct vmm_cmdline *c, const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -EINVAL;
    size_t sep = c->len ? 1 : 0;
    if (n >= VMM_CMDLINE_MAX || c->len + sep + n >= VMM_CMDLINE_MAX)
        return -E2BIG;
    if (sep)
        c->buf[c->len++] = ' ';
    memcpy(c->buf + c->len, s, n);
    c->len += n;
    c->buf[c->len] = '\0';
    return 0;
}
