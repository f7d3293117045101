/*
 * virtio-rng tests through the mmio transport: the test is the guest
 * driver. Writable buffers come back full of random bytes with the right
 * used length; readable buffers are never written; a malformed chain is
 * answered with length 0 and the queue keeps working; a corrupt avail ring
 * sets NEEDS_RESET.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "device.h"
#include "virtio_guest.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RAM_SIZE (1u << 20)
#define BUF 0x40000u

struct fx {
    uint8_t *ram;
    struct vmm_mem mem;
    struct virtio_host host;
    struct virtio_mmio *t;
    struct tq q;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct virtio_dev *d;
    int irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    assert_non_null(f);
    assert_true(irqfd >= 0);
    f->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(f->ram);
    memset(f->ram, 0, RAM_SIZE);
    vmm_mem_init_buffer(&f->mem, f->ram, RAM_SIZE);
    f->host = (struct virtio_host){.mem = &f->mem};
    assert_int_equal(virtio_rng_create(&d), 0);
    assert_int_equal(virtio_mmio_create(&f->t, &f->host, d, 0xd0001000ull, 6, irqfd), 0);
    tq_init(&f->q, 0x1000, 64);
    tg_driver_init(f->t, TG_F_VERSION_1 | TG_F_INDIRECT | TG_F_EVENT_IDX, &f->q, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    virtio_mmio_destroy(f->t);
    free(f->ram);
    free(f);
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void test_rng_notify_fills_buffers(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    /* A chain of two writable buffers, 100 + 28 bytes. */
    tq_desc(f->ram, &f->q, 0, BUF, 100, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, BUF + 0x1000, 28, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 0);
    /* A second request of 64 bytes. */
    tq_desc(f->ram, &f->q, 2, BUF + 0x2000, 64, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 2);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);

    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 0);
    assert_int_equal(len, 128);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 2);
    assert_int_equal(len, 64);
    /* 2^-512 odds that a correct fill is all zero. */
    assert_false(all_zero(f->ram + BUF, 100));
    assert_false(all_zero(f->ram + BUF + 0x1000, 28));
    assert_false(all_zero(f->ram + BUF + 0x2000, 64));
    assert_memory_not_equal(f->ram + BUF, f->ram + BUF + 0x2000, 64);
    /* Bytes next to the buffers are untouched. */
    assert_true(all_zero(f->ram + BUF + 100, 0x1000 - 100));
    assert_true(all_zero(f->ram + BUF + 0x1000 + 28, 64));
}

static void test_rng_notify_indirect_chain(void **state)
{
    struct fx *f = *state;
    uint64_t table = 0x30000;
    uint32_t id, len;

    tg_desc_at(f->ram, table, 0, BUF, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    tg_desc_at(f->ram, table, 1, BUF + 16, 16, VRING_DESC_F_WRITE, 0);
    tq_desc(f->ram, &f->q, 5, table, 32, VRING_DESC_F_INDIRECT, 0);
    tq_avail(f->ram, &f->q, 5);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 5);
    assert_int_equal(len, 32);
    assert_false(all_zero(f->ram + BUF, 32));
}

static void test_rng_notify_readable_buffer_untouched(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    tq_desc(f->ram, &f->q, 0, BUF, 64, 0, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(len, 0);
    assert_true(all_zero(f->ram + BUF, 64));
}

static void test_rng_notify_bad_chain_fails_request_only(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    /* Buffer outside RAM: answered with 0 bytes, the next request still served. */
    tq_desc(f->ram, &f->q, 0, RAM_SIZE - 8, 64, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 0);
    tq_desc(f->ram, &f->q, 1, BUF, 8, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 1);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 0);
    assert_int_equal(len, 0);
    assert_true(tq_take_used(f->ram, &f->q, &id, &len));
    assert_int_equal(id, 1);
    assert_int_equal(len, 8);
    assert_int_equal(mmio_rd(f->t, 0x70) & 0x40, 0);
}

static void test_rng_notify_corrupt_ring_needs_reset(void **state)
{
    struct fx *f = *state;

    /* avail idx jumps by more than the queue size. */
    tg_w16(f->ram, f->q.avail + 2, 1000);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_int_equal(tq_used_idx(f->ram, &f->q), 0);
    assert_int_equal(mmio_rd(f->t, 0x70) & 0x40, 0x40);
    assert_int_equal(mmio_rd(f->t, 0x60) & 2, 2);
}

static void test_rng_notify_more_than_queue_size(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;
    unsigned got = 0;

    /* 200 requests through a 64-entry ring, refilled as the device returns them. */
    for (unsigned i = 0; i < 64; i++) {
        tq_desc(f->ram, &f->q, (uint16_t)i, BUF + 16u * i, 16, VRING_DESC_F_WRITE, 0);
        tq_avail(f->ram, &f->q, (uint16_t)i);
    }
    mmio_wr(f->t, 0x50, 0);
    for (unsigned round = 0; round < 100 && got < 200; round++) {
        virtio_mmio_poll(f->t);
        while (tq_take_used(f->ram, &f->q, &id, &len)) {
            assert_int_equal(len, 16);
            if (++got + 64 <= 200) {
                tq_avail(f->ram, &f->q, (uint16_t)id);
                mmio_wr(f->t, 0x50, 0);
            }
        }
    }
    assert_int_equal(got, 200);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_rng_notify_fills_buffers),
        T(test_rng_notify_indirect_chain),
        T(test_rng_notify_readable_buffer_untouched),
        T(test_rng_notify_bad_chain_fails_request_only),
        T(test_rng_notify_corrupt_ring_needs_reset),
        T(test_rng_notify_more_than_queue_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
