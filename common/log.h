/*
 * Logging: one module for every host and guest program. Lines are
 * `ts level component key=value ...` on stderr (or a file). Text that came
 * from a peer must go through log_escape() before it is logged.
 */
#ifndef CAPSEM_COMMON_LOG_H
#define CAPSEM_COMMON_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set the process-wide component name (borrowed, must outlive the process) and level. */
void log_init(const char *component, enum log_level level);
/* Send log lines to `f` (borrowed) instead of stderr; NULL restores stderr. */
void log_set_file(FILE *f);
/* Set the session id added to every line (copied; NULL clears). */
void log_set_session(const char *id);
/* Parse "err", "warn", "info" or "debug"; returns -1 when unknown. */
int log_level_parse(const char *s);
enum log_level log_get_level(void);

/* Log one line; `fmt` continues the line with key=value pairs. Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Copy up to `in_len` bytes of peer text into `out` (size `out_size`, always
 * NUL-terminated), escaping control bytes, quotes and backslashes and
 * truncating with "..." when it does not fit. Returns `out`.
 */
char *log_escape(char *out, size_t out_size, const char *in, size_t in_len);

#define LOG_ERR(...) log_msg(LOG_ERR, __VA_ARGS__)
#define LOG_WARN(...) log_msg(LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) log_msg(LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
