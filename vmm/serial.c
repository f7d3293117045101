/*
 * 16550A model. Transmission completes instantly, so THRE and TEMT are always
 * set; what matters for Linux is the THRE interrupt: it becomes pending when
 * the guest writes THR or enables it in IER, and is cleared by reading IIR or
 * writing THR, as on real hardware. Each time it becomes pending while
 * enabled the line is pulsed, which the edge-triggered IOAPIC pin latches.
 * Output is buffered per line; one mutex guards all state and the buffer.
 */
#include "serial.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define REG_DATA 0 /* RBR/THR, DLL with DLAB */
#define REG_IER 1  /* DLM with DLAB */
#define REG_IIR 2  /* FCR on write */
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define LCR_DLAB 0x80
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_DCD 0x80

#define OUT_BUF 512

struct vmm_serial {
    pthread_mutex_t lock; /* guards everything below */
    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
    bool thr_int; /* THRE interrupt pending */
    int log_fd;
    uint64_t log_max;
    uint64_t log_len; /* bytes in the log file since it was (re)started */
    bool to_stdout;
    atomic_bool stopping; /* read without the lock by write_all() */
    vmm_serial_irq_fn irq;
    void *opaque;
    uint8_t out[OUT_BUF];
    size_t out_len;
};

int vmm_serial_create(struct vmm_serial **out, int log_fd, uint64_t log_max, bool to_stdout,
                      vmm_serial_irq_fn irq, void *opaque)
{
    struct vmm_serial *s = calloc(1, sizeof(*s));
    if (!s) {
        if (log_fd >= 0)
            close(log_fd);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->log_fd = log_fd;
    s->log_max = log_max;
    atomic_init(&s->stopping, false);
    s->to_stdout = to_stdout;
    s->irq = irq;
    s->opaque = opaque;
    s->dll = 12; /* 9600 baud, as after a BIOS */
    s->lcr = 0x03;
    *out = s;
    return 0;
}

static void write_all(struct vmm_serial *s, int fd, const uint8_t *p, size_t len)
{
    while (len) {
        size_t chunk = len;
        if (atomic_load(&s->stopping)) {
            /* Never block teardown on a reader that went away: wait briefly, then drop. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 100) <= 0 || !(pfd.revents & POLLOUT))
                return;
            if (chunk > PIPE_BUF)
                chunk = PIPE_BUF; /* fits in a pipe that polls writable */
        }
        ssize_t n = write(fd, p, chunk);
        if (n < 0 && errno == EINTR)
            continue; /* a kick: the next round sees `stopping` */
        if (n <= 0)
            return; /* a full disk or closed stdout must not stop the guest */
        p += n;
        len -= (size_t)n;
    }
}

static void flush_locked(struct vmm_serial *s)
{
    if (!s->out_len)
        return;
    if (s->log_fd >= 0) {
        if (s->log_len + s->out_len > s->log_max && ftruncate(s->log_fd, 0) < 0)
            s->log_max = UINT64_MAX; /* not a regular file (a pipe…): nothing to cap */
        if (s->log_len + s->out_len > s->log_max) {
            static const char marker[] = "[capsem-vmm: serial log reached its size limit and "
                                         "was restarted]\n";
            s->log_len = 0;
            write_all(s, s->log_fd, (const uint8_t *)marker, sizeof(marker) - 1);
            s->log_len += sizeof(marker) - 1;
        }
        write_all(s, s->log_fd, s->out, s->out_len);
        s->log_len += s->out_len;
    }
    if (s->to_stdout)
        write_all(s, STDOUT_FILENO, s->out, s->out_len);
    s->out_len = 0;
}

void vmm_serial_flush(struct vmm_serial *s)
{
    pthread_mutex_lock(&s->lock);
    flush_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void vmm_serial_stop(struct vmm_serial *s)
{
    atomic_store(&s->stopping, true);
}

void vmm_serial_destroy(struct vmm_serial *s)
{
    if (!s)
        return;
    vmm_serial_flush(s);
    if (s->log_fd >= 0)
        close(s->log_fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void transmit(struct vmm_serial *s, uint8_t c)
{
    s->out[s->out_len++] = c;
    if (c == '\n' || s->out_len == OUT_BUF)
        flush_locked(s);
}

static uint8_t modem_status(const struct vmm_serial *s)
{
    if (s->mcr & MCR_LOOP) {
        /* Loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
        return (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) | ((s->mcr & 0x04) << 4) |
                         ((s->mcr & 0x08) << 4));
    }
    return MSR_DCD | MSR_DSR | MSR_CTS;
}

void vmm_serial_io(struct vmm_serial *s, uint16_t offset, uint8_t *data, bool is_write)
{
    bool pulse = false;
    pthread_mutex_lock(&s->lock);
    bool dlab = s->lcr & LCR_DLAB;
    if (is_write) {
        uint8_t v = *data;
        switch (offset) {
        case REG_DATA:
            if (dlab) {
                s->dll = v;
            } else {
                if (!(s->mcr & MCR_LOOP))
                    transmit(s, v);
                s->thr_int = true;
                pulse = s->ier & IER_THRI;
            }
            break;
        case REG_IER:
            if (dlab) {
                s->dlm = v;
            } else {
                bool was = s->ier & IER_THRI;
                s->ier = v & 0x0f;
                if (!was && (s->ier & IER_THRI)) {
                    s->thr_int = true; /* THR is empty: the interrupt fires at once */
                    pulse = true;
                }
            }
            break;
        case REG_IIR:
            s->fcr = v;
            break;
        case REG_LCR:
            s->lcr = v;
            break;
        case REG_MCR:
            s->mcr = v & 0x1f;
            break;
        case REG_SCR:
            s->scr = v;
            break;
        default:
            break; /* LSR and MSR are read-only */
        }
    } else {
        uint8_t v = 0;
        switch (offset) {
        case REG_DATA:
            v = dlab ? s->dll : 0;
            break;
        case REG_IER:
            v = dlab ? s->dlm : s->ier;
            break;
        case REG_IIR:
            v = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
            if ((s->ier & IER_THRI) && s->thr_int) {
                v |= IIR_THRI;
                s->thr_int = false;
            } else {
                v |= IIR_NO_INT;
            }
            break;
        case REG_LCR:
            v = s->lcr;
            break;
        case REG_MCR:
            v = s->mcr;
            break;
        case REG_LSR:
            v = LSR_THRE | LSR_TEMT;
            break;
        case REG_MSR:
            v = modem_status(s);
            break;
        case REG_SCR:
            v = s->scr;
            break;
        default:
            break;
        }
        *data = v;
    }
    pthread_mutex_unlock(&s->lock);
    if (pulse && s->irq)
        s->irq(s->opaque);
}
