/*
 * virtio-mmio transport tests, driven through virtio_mmio_access() exactly
 * as a guest driver would, with virtio-rng as the device behind it and a
 * plain buffer as guest RAM. No loop thread: virtio_mmio_poll() runs the
 * pending loop-thread work. Bad accesses (wrong width, unaligned, outside
 * the window, read-only registers, out-of-range queues) must be ignored
 * and read as zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "device.h"
#include "virtio_guest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RAM_SIZE (1u << 20)
#define BASE 0xd0000000ull
#define F_ALL (TG_F_VERSION_1 | TG_F_INDIRECT | TG_F_EVENT_IDX)

struct fx {
    uint8_t *ram;
    struct vmm_mem mem;
    struct virtio_host host;
    struct virtio_mmio *t;
    struct virtio_dev *dev; /* owned by t */
    int irqfd;              /* our copy; the transport owns the original */
    struct tq q;
    unsigned ioeventfds;
    uint64_t ioevent_addr;
};

static int fake_add_ioeventfd(void *opaque, uint64_t addr, uint32_t datamatch, int fd)
{
    struct fx *f = opaque;

    (void)datamatch;
    assert_true(fd >= 0);
    f->ioeventfds++;
    f->ioevent_addr = addr;
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct virtio_dev *d;
    int irqfd;

    assert_non_null(f);
    f->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(f->ram);
    memset(f->ram, 0, RAM_SIZE);
    vmm_mem_init_buffer(&f->mem, f->ram, RAM_SIZE);
    f->host =
        (struct virtio_host){.mem = &f->mem, .add_ioeventfd = fake_add_ioeventfd, .opaque = f};
    irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(irqfd >= 0);
    f->irqfd = dup(irqfd);
    assert_int_equal(virtio_rng_create(&d), 0);
    assert_int_equal(virtio_mmio_create(&f->t, &f->host, d, BASE, 5, irqfd), 0);
    f->dev = d;
    tq_init(&f->q, 0x1000, 16);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    virtio_mmio_destroy(f->t);
    close(f->irqfd);
    free(f->ram);
    free(f);
    return 0;
}

static uint64_t irq_count(struct fx *f)
{
    uint64_t v = 0;

    if (read(f->irqfd, &v, sizeof(v)) != sizeof(v))
        return 0;
    return v;
}

static void test_virtio_mmio_access_identity_registers(void **state)
{
    struct fx *f = *state;

    assert_int_equal(mmio_rd(f->t, 0x000), 0x74726976);
    assert_int_equal(mmio_rd(f->t, 0x004), 2);
    assert_int_equal(mmio_rd(f->t, 0x008), 4);
    assert_int_not_equal(mmio_rd(f->t, 0x00c), 0);
    /* Feature words: ring bits low, VERSION_1 high, nothing beyond. */
    mmio_wr(f->t, 0x014, 0);
    assert_int_equal(mmio_rd(f->t, 0x010), (uint32_t)(TG_F_INDIRECT | TG_F_EVENT_IDX));
    mmio_wr(f->t, 0x014, 1);
    assert_int_equal(mmio_rd(f->t, 0x010), 1);
    mmio_wr(f->t, 0x014, 2);
    assert_int_equal(mmio_rd(f->t, 0x010), 0);
    /* Queue 0 exists, queue 1 does not. */
    mmio_wr(f->t, 0x030, 0);
    assert_int_equal(mmio_rd(f->t, 0x034), 256);
    mmio_wr(f->t, 0x030, 1);
    assert_int_equal(mmio_rd(f->t, 0x034), 0);
    assert_int_equal(mmio_rd(f->t, 0x0fc), 0);
    /* The host was asked to wire the notify register to an eventfd. */
    assert_int_equal(f->ioeventfds, 1);
    assert_int_equal(f->ioevent_addr, BASE + 0x50);
}

static void test_virtio_mmio_access_bad_offsets_and_widths_ignored(void **state)
{
    struct fx *f = *state;
    uint8_t b[8];

    /* 2-byte, 1-byte and 8-byte register reads: ignored, zero. */
    memset(b, 0xaa, sizeof(b));
    virtio_mmio_access(f->t, 0x000, b, 2, false);
    assert_int_equal(b[0] | b[1], 0);
    memset(b, 0xaa, sizeof(b));
    virtio_mmio_access(f->t, 0x000, b, 8, false);
    for (int i = 0; i < 8; i++)
        assert_int_equal(b[i], 0);
    /* Unaligned 4-byte read. */
    memset(b, 0xaa, sizeof(b));
    virtio_mmio_access(f->t, 0x002, b, 4, false);
    assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
    /* Outside the window, and a silly length. */
    memset(b, 0xaa, sizeof(b));
    virtio_mmio_access(f->t, 0x1000, b, 4, false);
    assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
    virtio_mmio_access(f->t, 0x10, b, 0, false);
    virtio_mmio_access(f->t, 0x10, b, 16, false);
    /* rng has no config space: reads there are zero. */
    memset(b, 0xaa, sizeof(b));
    virtio_mmio_access(f->t, 0x100, b, 4, false);
    assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
    /* A 1-byte status write is ignored; read-only registers do not change. */
    b[0] = 1;
    virtio_mmio_access(f->t, 0x070, b, 1, true);
    assert_int_equal(mmio_rd(f->t, 0x070), 0);
    mmio_wr(f->t, 0x000, 0);
    assert_int_equal(mmio_rd(f->t, 0x000), 0x74726976);
    mmio_wr(f->t, 0x0f0, 0x1234); /* unknown register */
    mmio_wr(f->t, 0x100, 0x1234); /* config write to a device without config */
    /* A notify for a queue that does not exist does nothing. */
    mmio_wr(f->t, 0x050, 7);
    virtio_mmio_poll(f->t);
    assert_int_equal(irq_count(f), 0);
}

static void test_virtio_mmio_access_feature_negotiation(void **state)
{
    struct fx *f = *state;

    mmio_wr(f->t, 0x070, 1 | 2);
    /* Legacy driver (no VERSION_1): FEATURES_OK does not stick. */
    mmio_wr(f->t, 0x024, 0);
    mmio_wr(f->t, 0x020, (uint32_t)TG_F_INDIRECT);
    mmio_wr(f->t, 0x024, 1);
    mmio_wr(f->t, 0x020, 0);
    mmio_wr(f->t, 0x070, 1 | 2 | 8);
    assert_int_equal(mmio_rd(f->t, 0x070) & 8, 0);
    /* A bit we never offered: refused too. */
    mmio_wr(f->t, 0x024, 1);
    mmio_wr(f->t, 0x020, 1 | 4);
    mmio_wr(f->t, 0x070, 1 | 2 | 8);
    assert_int_equal(mmio_rd(f->t, 0x070) & 8, 0);
    /* DRIVER_OK without FEATURES_OK is not accepted. */
    mmio_wr(f->t, 0x070, 1 | 2 | 4);
    assert_int_equal(mmio_rd(f->t, 0x070) & 4, 0);
    /* Proper modern set: accepted, and then frozen. */
    mmio_wr(f->t, 0x020, 1);
    mmio_wr(f->t, 0x070, 1 | 2 | 8);
    assert_int_equal(mmio_rd(f->t, 0x070), 1 | 2 | 8);
    mmio_wr(f->t, 0x024, 1);
    mmio_wr(f->t, 0x020, 0);
    mmio_wr(f->t, 0x070, 1 | 2 | 8 | 4);
    assert_int_equal(mmio_rd(f->t, 0x070), 1 | 2 | 8 | 4);
}

static void test_virtio_mmio_access_queue_setup(void **state)
{
    struct fx *f = *state;

    mmio_wr(f->t, 0x030, 0);
    /* Sizes 0, 3 and 512 (> QueueNumMax) cannot be made ready. */
    mmio_wr(f->t, 0x038, 0);
    mmio_wr(f->t, 0x044, 1);
    assert_int_equal(mmio_rd(f->t, 0x044), 0);
    mmio_wr(f->t, 0x038, 3);
    mmio_wr(f->t, 0x044, 1);
    assert_int_equal(mmio_rd(f->t, 0x044), 0);
    mmio_wr(f->t, 0x038, 512);
    mmio_wr(f->t, 0x044, 1);
    assert_int_equal(mmio_rd(f->t, 0x044), 0);
    mmio_wr(f->t, 0x038, 16);
    mmio_wr(f->t, 0x044, 1);
    assert_int_equal(mmio_rd(f->t, 0x044), 1);
    /* QueueReady of a missing queue reads 0 and cannot be set. */
    mmio_wr(f->t, 0x030, 3);
    mmio_wr(f->t, 0x038, 16);
    mmio_wr(f->t, 0x044, 1);
    assert_int_equal(mmio_rd(f->t, 0x044), 0);
}

/* Post one writable 32-byte buffer and notify. */
static void post_request(struct fx *f, uint16_t head)
{
    tq_desc(f->ram, &f->q, head, 0x20000 + 64u * head, 32, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, head);
    mmio_wr(f->t, 0x050, 0);
}

static void test_virtio_mmio_access_request_and_interrupt(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    tg_driver_init(f->t, TG_F_VERSION_1, &f->q, 1);
    assert_int_equal(mmio_rd(f->t, 0x070), 0xf);
    post_request(f, 2);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 2);
    assert_int_equal(len, 32);
    assert_int_equal(mmio_rd(f->t, 0x060), 1);
    assert_int_equal(irq_count(f), 1);
    mmio_wr(f->t, 0x064, 1);
    assert_int_equal(mmio_rd(f->t, 0x060), 0);
}

static void test_virtio_mmio_access_status_reset(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    tg_driver_init(f->t, TG_F_VERSION_1, &f->q, 1);
    post_request(f, 1);
    virtio_mmio_poll(f->t);
    assert_int_not_equal(mmio_rd(f->t, 0x060), 0);
    mmio_wr(f->t, 0x070, 0);
    assert_int_equal(mmio_rd(f->t, 0x070), 0);
    assert_int_equal(mmio_rd(f->t, 0x060), 0);
    mmio_wr(f->t, 0x030, 0);
    assert_int_equal(mmio_rd(f->t, 0x044), 0);
    /* After reset a notify does nothing: the queue is gone. */
    irq_count(f);
    post_request(f, 3);
    virtio_mmio_poll(f->t);
    assert_int_equal(tq_used_idx(f->ram, &f->q), 1);
    assert_int_equal(irq_count(f), 0);
    /* Re-initialise on fresh rings: works again. */
    memset(f->ram + 0x1000, 0, tq_span(&f->q));
    tq_init(&f->q, 0x1000, 16);
    tg_driver_init(f->t, TG_F_VERSION_1, &f->q, 1);
    post_request(f, 4);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 4);
}

static void test_virtio_mmio_access_bad_ring_sets_needs_reset(void **state)
{
    struct fx *f = *state;

    /* Descriptor table beyond the end of RAM. */
    f->q.desc = RAM_SIZE - 64;
    tg_driver_init(f->t, TG_F_VERSION_1, &f->q, 1);
    mmio_wr(f->t, 0x050, 0);
    virtio_mmio_poll(f->t);
    assert_int_equal(mmio_rd(f->t, 0x070) & 0x40, 0x40);
    assert_int_equal(mmio_rd(f->t, 0x060) & 2, 2);
    assert_true(irq_count(f) >= 1);
    /* Reset clears NEEDS_RESET. */
    mmio_wr(f->t, 0x070, 0);
    assert_int_equal(mmio_rd(f->t, 0x070), 0);
}

static void test_virtio_mmio_access_event_idx_suppresses_interrupts(void **state)
{
    struct fx *f = *state;

    tg_driver_init(f->t, F_ALL, &f->q, 1);
    /* The guest asks for an interrupt only after the 3rd used entry. */
    tq_set_used_event(f->ram, &f->q, 2);
    post_request(f, 0);
    virtio_mmio_poll(f->t);
    assert_int_equal(irq_count(f), 1); /* the first one always goes out */
    post_request(f, 1);
    virtio_mmio_poll(f->t);
    assert_int_equal(irq_count(f), 0);
    post_request(f, 2);
    virtio_mmio_poll(f->t);
    assert_int_equal(irq_count(f), 1);
    /* The device asked to be notified at the next avail entry. */
    assert_int_equal(tq_avail_event(f->ram, &f->q), 3);
}

static void test_virtio_dev_config_changed_interrupt(void **state)
{
    struct fx *f = *state;

    assert_int_equal(mmio_rd(f->t, 0x0fc), 0);
    virtio_dev_config_changed(f->dev);
    assert_int_equal(mmio_rd(f->t, 0x0fc), 1);
    assert_int_equal(mmio_rd(f->t, 0x060), 2);
    assert_int_equal(irq_count(f), 1);
    mmio_wr(f->t, 0x064, 2);
    assert_int_equal(mmio_rd(f->t, 0x060), 0);
}

static void test_virtio_mmio_cmdline_format(void **state)
{
    struct fx *f = *state;
    char buf[64];

    assert_int_equal(virtio_mmio_cmdline(f->t, buf, sizeof(buf)),
                     (int)strlen("virtio_mmio.device=4K@0xd0000000:5"));
    assert_string_equal(buf, "virtio_mmio.device=4K@0xd0000000:5");
    assert_int_equal(virtio_mmio_cmdline(f->t, buf, 10), -ENOSPC);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_virtio_mmio_access_identity_registers),
        T(test_virtio_mmio_access_bad_offsets_and_widths_ignored),
        T(test_virtio_mmio_access_feature_negotiation),
        T(test_virtio_mmio_access_queue_setup),
        T(test_virtio_mmio_access_request_and_interrupt),
        T(test_virtio_mmio_access_status_reset),
        T(test_virtio_mmio_access_bad_ring_sets_needs_reset),
        T(test_virtio_mmio_access_event_idx_suppresses_interrupts),
        T(test_virtio_dev_config_changed_interrupt),
        T(test_virtio_mmio_cmdline_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
