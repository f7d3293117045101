/*
 * Logging implementation: formats one line per call into a stack buffer and
 * writes it with a single fputs under a mutex, so lines from threads never
 * interleave.
 */
#include "log.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

static const char *component = "capsem";
static enum log_level current_level = LOG_INFO;
static FILE *log_file;
static char session_id[64];
/* Guards log_file and session_id and serialises output. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"ERR", "WARN", "INFO", "DEBUG"};

void log_init(const char *name, enum log_level level)
{
    if (name)
        component = name;
    current_level = level;
}

void log_set_file(FILE *f)
{
    pthread_mutex_lock(&log_lock);
    log_file = f;
    pthread_mutex_unlock(&log_lock);
}

void log_set_session(const char *id)
{
    pthread_mutex_lock(&log_lock);
    if (id)
        snprintf(session_id, sizeof(session_id), "%s", id);
    else
        session_id[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

int log_level_parse(const char *s)
{
    static const char *const names[] = {"err", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

enum log_level log_get_level(void)
{
    return current_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], component);
    if (n < 0)
        return;
    pthread_mutex_lock(&log_lock);
    if (session_id[0] && (size_t)n < sizeof(line)) {
        int m = snprintf(line + n, sizeof(line) - (size_t)n, "session=%s ", session_id);
        if (m > 0)
            n += m;
    }
    if ((size_t)n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n] = '\n';
    line[n + 1] = '\0';
    FILE *f = log_file ? log_file : stderr;
    fputs(line, f);
    fflush(f);
    pthread_mutex_unlock(&log_lock);
}

char *log_escape(char *out, size_t out_size, const char *in, size_t in_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (out_size == 0)
        return out;
    for (size_t i = 0; i < in_len; i++) {
        unsigned char c = (unsigned char)in[i];
        char tmp[4];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            tmp[k++] = '\\';
            tmp[k++] = 'x';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
        } else {
            tmp[k++] = (char)c;
        }
        if (o + k + 4 > out_size) {
            size_t dots = out_size - 1 - o < 3 ? out_size - 1 - o : 3;
            memset(out + o, '.', dots);
            o += dots;
            break;
        }
        memcpy(out + o, tmp, k);
        o += k;
    }
    out[o] = '\0';
    return out;
}
