/*
 * Port I/O devices behind KVM_EXIT_IO: the 16550A registers Linux's 8250
 * driver uses (divisor latch, IER, IIR with the THRE interrupt and its
 * clearing, LSR always ready, MSR loopback, scratch), transmitted bytes
 * reaching the log fd (which a flood restarts instead of growing past its
 * cap), teardown never blocking on a stdout pipe nobody drains, the i8042 commands of Linux's probe
 * and the 0xFE reset, CMOS reading zeros, and unknown ports: reads see all ones, writes are
 * dropped, nothing fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "pio.h"
#include "serial.h"

struct events {
    int resets;
    int irqs[16];
    int serial_irqs;
};

static void on_reset(void *opaque)
{
    ((struct events *)opaque)->resets++;
}

static void on_irq(void *opaque, uint32_t irq)
{
    ((struct events *)opaque)->irqs[irq & 15]++;
}

static void on_serial_irq(void *opaque)
{
    ((struct events *)opaque)->serial_irqs++;
}

static uint8_t in8(struct vmm_pio *p, uint16_t port)
{
    uint8_t v = 0x5a;
    vmm_pio_dispatch(p, port, &v, 1, 1, false);
    return v;
}

static void out8(struct vmm_pio *p, uint16_t port, uint8_t v)
{
    vmm_pio_dispatch(p, port, &v, 1, 1, true);
}

struct rig {
    struct events ev;
    struct vmm_serial *serial;
    struct vmm_pio pio;
    int pipe_rd;
};

static void rig_init(struct rig *r)
{
    int fds[2];
    memset(r, 0, sizeof(*r));
    assert_int_equal(pipe(fds), 0);
    r->pipe_rd = fds[0];
    assert_int_equal(
        vmm_serial_create(&r->serial, fds[1], VMM_SERIAL_LOG_MAX, false, on_serial_irq, &r->ev), 0);
    vmm_pio_init(&r->pio, r->serial, on_reset, on_irq, &r->ev);
}

static void rig_fini(struct rig *r)
{
    vmm_pio_fini(&r->pio);
    vmm_serial_destroy(r->serial); /* closes the pipe's write end */
    close(r->pipe_rd);
}

static void test_vmm_serial_io_transmit(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    const char *msg = "hello\n";
    /* string I/O (rep outsb): count bytes in one exit */
    vmm_pio_dispatch(&r.pio, 0x3f8, (uint8_t *)msg, 1, 6, true);
    char buf[16] = {0};
    assert_int_equal(read(r.pipe_rd, buf, sizeof(buf)), 6); /* a newline flushes */
    assert_string_equal(buf, "hello\n");
    assert_int_equal(r.ev.serial_irqs, 0); /* THRE interrupt not enabled */
    /* line status: transmitter always empty */
    assert_int_equal(in8(&r.pio, 0x3fd) & 0x60, 0x60);
    /* bytes without a newline come out at flush/destroy */
    out8(&r.pio, 0x3f8, 'x');
    vmm_serial_flush(r.serial);
    assert_int_equal(read(r.pipe_rd, buf, sizeof(buf)), 1);
    rig_fini(&r);
}

static void test_vmm_serial_io_thre_interrupt(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    assert_int_equal(in8(&r.pio, 0x3fa) & 0x0f, 0x01); /* no interrupt pending */
    out8(&r.pio, 0x3f9, 0x02);                         /* enable THRE interrupt */
    assert_int_equal(r.ev.serial_irqs, 1);             /* fires at once: THR is empty */
    assert_int_equal(in8(&r.pio, 0x3f9), 0x02);
    assert_int_equal(in8(&r.pio, 0x3fa) & 0x0f, 0x02); /* THRE pending */
    assert_int_equal(in8(&r.pio, 0x3fa) & 0x0f, 0x01); /* reading IIR cleared it */
    out8(&r.pio, 0x3f8, 'a');                          /* transmit: pending again */
    assert_int_equal(r.ev.serial_irqs, 2);
    assert_int_equal(in8(&r.pio, 0x3fa) & 0x0f, 0x02);
    out8(&r.pio, 0x3f9, 0x00); /* disabled: never reported */
    out8(&r.pio, 0x3f8, 'b');
    assert_int_equal(in8(&r.pio, 0x3fa) & 0x0f, 0x01);
    assert_int_equal(r.ev.serial_irqs, 2);
    /* IER keeps only its 4 defined bits (Linux's autoconfig checks this) */
    out8(&r.pio, 0x3f9, 0xff);
    assert_int_equal(in8(&r.pio, 0x3f9), 0x0f);
    /* FIFO enabled shows in IIR's top bits (16550A detection) */
    out8(&r.pio, 0x3fa, 0x01);
    assert_int_equal(in8(&r.pio, 0x3fa) & 0xc0, 0xc0);
    rig_fini(&r);
}

static void test_vmm_serial_io_registers(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    out8(&r.pio, 0x3fb, 0x83); /* DLAB on */
    out8(&r.pio, 0x3f8, 0x01); /* DLL: not transmitted */
    out8(&r.pio, 0x3f9, 0x00); /* DLM: not IER */
    assert_int_equal(in8(&r.pio, 0x3f8), 0x01);
    assert_int_equal(in8(&r.pio, 0x3f9), 0x00);
    out8(&r.pio, 0x3fb, 0x03); /* DLAB off */
    assert_int_equal(in8(&r.pio, 0x3fb), 0x03);
    assert_int_equal(r.ev.serial_irqs, 0);
    vmm_serial_flush(r.serial);
    char buf[4];
    /* nothing was sent: the pipe is empty (serial_destroy closes it later) */
    out8(&r.pio, 0x3ff, 0xa5); /* scratch */
    assert_int_equal(in8(&r.pio, 0x3ff), 0xa5);
    assert_int_equal(in8(&r.pio, 0x3fe) & 0xb0, 0xb0); /* DCD, DSR, CTS */
    out8(&r.pio, 0x3fc, 0x10 | 0x02);                  /* loopback with RTS */
    assert_int_equal(in8(&r.pio, 0x3fe), 0x10);        /* CTS only */
    out8(&r.pio, 0x3f8, 'z');                          /* loopback: not transmitted */
    assert_int_equal(in8(&r.pio, 0x3f8), 0);           /* no input: RBR reads 0 */
    vmm_pio_fini(&r.pio);
    vmm_serial_destroy(r.serial);
    assert_int_equal(read(r.pipe_rd, buf, sizeof(buf)), 0); /* EOF, nothing written */
    close(r.pipe_rd);
}

static void test_vmm_pio_dispatch_i8042(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    assert_int_equal(in8(&r.pio, 0x64) & 0x01, 0); /* output buffer empty */
    out8(&r.pio, 0x64, 0xaa);                      /* self test */
    assert_int_equal(in8(&r.pio, 0x64) & 0x01, 0x01);
    assert_int_equal(in8(&r.pio, 0x60), 0x55);
    out8(&r.pio, 0x64, 0x20); /* read CTR */
    uint8_t ctr = in8(&r.pio, 0x60);
    out8(&r.pio, 0x64, 0x60); /* write CTR */
    out8(&r.pio, 0x60, (uint8_t)(ctr & ~0x01));
    out8(&r.pio, 0x64, 0x20);
    assert_int_equal(in8(&r.pio, 0x60), ctr & ~0x01);
    /* a byte for the keyboard is acknowledged; no IRQ while CTR has it off */
    out8(&r.pio, 0x60, 0xf2);
    assert_int_equal(in8(&r.pio, 0x60), 0xfa);
    assert_int_equal(in8(&r.pio, 0x60), 0xab);
    assert_int_equal(in8(&r.pio, 0x60), 0x83);
    assert_int_equal(r.ev.irqs[1], 0);
    out8(&r.pio, 0x64, 0x60);
    out8(&r.pio, 0x60, ctr | 0x01);
    out8(&r.pio, 0x60, 0xed);
    assert_int_equal(r.ev.irqs[1], 1);
    assert_int_equal(in8(&r.pio, 0x60), 0xfa);
    assert_int_equal(in8(&r.pio, 0x60), 0); /* empty again */
    /* many bytes without reading: the buffer stays bounded */
    for (int i = 0; i < 100; i++)
        out8(&r.pio, 0x60, 0xff);
    assert_int_equal(r.ev.resets, 0);
    out8(&r.pio, 0x64, 0xfe); /* pulse reset */
    assert_int_equal(r.ev.resets, 1);
    out8(&r.pio, 0x64, 0xd1); /* output port with the reset line low */
    out8(&r.pio, 0x60, 0xfe);
    assert_int_equal(r.ev.resets, 2);
    rig_fini(&r);
}

static void test_vmm_pio_dispatch_other_ports(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    out8(&r.pio, 0x70, 0x0a);
    assert_int_equal(in8(&r.pio, 0x71), 0);  /* CMOS */
    assert_int_equal(in8(&r.pio, 0x80), 0);  /* POST port: quiet */
    assert_int_equal(in8(&r.pio, 0x2f8), 0); /* other COM ports: absent, quiet */
    uint32_t v = 0;
    vmm_pio_dispatch(&r.pio, 0xcfc, (uint8_t *)&v, 4, 1, false);
    assert_int_equal(v, 0xffffffffu);            /* no PCI */
    assert_int_equal(in8(&r.pio, 0x1234), 0xff); /* unknown: all ones */
    out8(&r.pio, 0x1234, 1);                     /* unknown write: dropped */
    /* bad sizes are ignored without touching data */
    uint8_t d[8];
    memset(d, 0x11, sizeof(d));
    vmm_pio_dispatch(&r.pio, 0x1234, d, 3, 1, false);
    vmm_pio_dispatch(&r.pio, 0x1234, d, 8, 1, false);
    assert_int_equal(d[0], 0x11);
    assert_int_equal(r.ev.resets, 0);
    rig_fini(&r);
}

static void test_vmm_serial_io_log_cap(void **state)
{
    (void)state;
    char path[] = "/tmp/test-serial-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    struct vmm_serial *s = NULL;
    assert_int_equal(vmm_serial_create(&s, fd, 4096, false, NULL, NULL), 0);
    /* 100 lines of 100 bytes: far past the 4 KiB cap */
    for (int line = 0; line < 100; line++) {
        for (int i = 0; i < 99; i++) {
            uint8_t c = (uint8_t)('0' + line % 10);
            vmm_serial_io(s, 0, &c, true);
        }
        uint8_t nl = '\n';
        vmm_serial_io(s, 0, &nl, true);
    }
    vmm_serial_destroy(s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 4096); /* never past the cap */
    char buf[8192];
    fd = open(path, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "size limit")); /* the restart is marked */
    /* the newest line survived at the end */
    assert_int_equal(buf[n - 1], '\n');
    assert_int_equal(buf[n - 2], '9');
    unlink(path);
}

/* A pipe whose buffer is full and that nobody reads. Returns the write end. */
static int full_pipe(int *rd)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int fl = fcntl(fds[1], F_GETFL);
    fcntl(fds[1], F_SETFL, fl | O_NONBLOCK);
    char junk[4096];
    memset(junk, 'j', sizeof(junk));
    while (write(fds[1], junk, sizeof(junk)) > 0) {
    }
    fcntl(fds[1], F_SETFL, fl);
    *rd = fds[0];
    return fds[1];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_vmm_serial_stop_full_pipe(void **state)
{
    (void)state;
    int rd;
    int wr = full_pipe(&rd);
    struct vmm_serial *s = NULL;
    assert_int_equal(vmm_serial_create(&s, wr, VMM_SERIAL_LOG_MAX, false, NULL, NULL), 0);
    vmm_serial_stop(s);
    double t0 = now_s();
    const char *msg = "late output\n";
    for (const char *c = msg; *c; c++) {
        uint8_t b = (uint8_t)*c;
        vmm_serial_io(s, 0, &b, true); /* the newline flushes into the full pipe */
    }
    vmm_serial_destroy(s);
    assert_true(now_s() - t0 < 2.0); /* dropped after a short wait, not blocked */
    close(rd);
}

static void on_kick(int sig)
{
    (void)sig;
}

static void *blocked_writer(void *arg)
{
    struct vmm_serial *s = arg;
    uint8_t b = '\n';
    vmm_serial_io(s, 0, &b, true); /* blocks: the pipe is full */
    return NULL;
}

static void test_vmm_serial_stop_unblocks_writer(void **state)
{
    (void)state;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_kick; /* no SA_RESTART: the write returns EINTR */
    assert_int_equal(sigaction(SIGUSR2, &sa, NULL), 0);
    int rd;
    int wr = full_pipe(&rd);
    struct vmm_serial *s = NULL;
    assert_int_equal(vmm_serial_create(&s, wr, VMM_SERIAL_LOG_MAX, false, NULL, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, blocked_writer, s), 0);
    usleep(100000);
    double t0 = now_s();
    vmm_serial_stop(s);
    pthread_kill(t, SIGUSR2);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(now_s() - t0 < 2.0);
    vmm_serial_destroy(s);
    close(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_serial_io_transmit),
        cmocka_unit_test(test_vmm_serial_io_thre_interrupt),
        cmocka_unit_test(test_vmm_serial_io_registers),
        cmocka_unit_test(test_vmm_serial_io_log_cap),
        cmocka_unit_test(test_vmm_serial_stop_full_pipe),
        cmocka_unit_test(test_vmm_serial_stop_unblocks_writer),
        cmocka_unit_test(test_vmm_pio_dispatch_i8042),
        cmocka_unit_test(test_vmm_pio_dispatch_other_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
