/*
 * Split virtqueue tests: the test writes rings into a plain buffer used as
 * guest RAM and checks what vmm_vq_pop()/vmm_vq_push() make of them. Every
 * malformed-chain kind must come back as its named error, with the chain
 * consumed (chain-level) or the queue marked broken (queue-level), and no
 * access outside the buffer (ASan builds check the last part).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "queue.h"
#include "virtio_guest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RAM_SIZE (1u << 20)
#define QBASE 0x1000u
#define QSIZE 16u
#define DATA 0x10000u

struct fx {
    uint8_t *ram;
    struct vmm_mem mem;
    struct tq tq;
    struct vq q;
    struct vq_chain *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(f->ram);
    memset(f->ram, 0, RAM_SIZE);
    f->c = malloc(sizeof(*f->c));
    assert_non_null(f->c);
    vmm_mem_init_buffer(&f->mem, f->ram, RAM_SIZE);
    tq_init(&f->tq, QBASE, QSIZE);
    assert_int_equal(vmm_vq_bind(&f->q, &f->mem, QSIZE, f->tq.desc, f->tq.avail, f->tq.used, false),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    free(f->c);
    free(f->ram);
    free(f);
    return 0;
}

static void rebind(struct fx *f, bool event_idx)
{
    assert_int_equal(
        vmm_vq_bind(&f->q, &f->mem, QSIZE, f->tq.desc, f->tq.avail, f->tq.used, event_idx), 0);
}

static void test_vmm_vq_bind_rejects_bad_rings(void **state)
{
    struct fx *f = *state;
    struct vq q;

    /* Ring past the end of RAM. */
    assert_int_equal(vmm_vq_bind(&q, &f->mem, QSIZE, RAM_SIZE - 16, f->tq.avail, f->tq.used, 0),
                     -EINVAL);
    assert_int_equal(q.err, VQ_ERR_RING_ADDR);
    /* Misaligned descriptor table and used ring. */
    assert_int_equal(vmm_vq_bind(&q, &f->mem, QSIZE, QBASE + 8, f->tq.avail, f->tq.used, 0),
                     -EINVAL);
    assert_int_equal(vmm_vq_bind(&q, &f->mem, QSIZE, f->tq.desc, f->tq.avail, f->tq.used + 2, 0),
                     -EINVAL);
    /* Sizes that are zero, not a power of two or too big. */
    assert_int_equal(vmm_vq_bind(&q, &f->mem, 0, f->tq.desc, f->tq.avail, f->tq.used, 0), -EINVAL);
    assert_int_equal(vmm_vq_bind(&q, &f->mem, 12, f->tq.desc, f->tq.avail, f->tq.used, 0), -EINVAL);
    assert_false(q.ready);
    /* An unbound queue pops nothing. */
    assert_int_equal(vmm_vq_pop(&q, f->c, 0), 0);
    assert_int_equal(vmm_vq_push(&q, 0, 0), -EINVAL);
}

static void test_vmm_vq_pop_empty_ring(void **state)
{
    struct fx *f = *state;

    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 0);
    assert_false(vmm_vq_has_avail(&f->q));
}

static void test_vmm_vq_pop_simple_chain(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    memcpy(f->ram + DATA, "hello", 5);
    tq_desc(f->ram, &f->tq, 3, DATA, 5, VRING_DESC_F_NEXT, 7);
    tq_desc(f->ram, &f->tq, 7, DATA + 0x100, 64, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->tq, 3);
    assert_true(vmm_vq_has_avail(&f->q));
    assert_int_equal(vmm_vq_pop(&f->q, f->c, VQ_POP_READ_BEFORE_WRITE), 1);
    assert_int_equal(f->c->head, 3);
    assert_int_equal(f->c->nrd, 1);
    assert_int_equal(f->c->nwr, 1);
    assert_int_equal(f->c->rd_len, 5);
    assert_int_equal(f->c->wr_len, 64);
    assert_ptr_equal(f->c->rd[0].iov_base, f->ram + DATA);
    assert_ptr_equal(f->c->wr[0].iov_base, f->ram + DATA + 0x100);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 0);

    assert_int_equal(vmm_vq_push(&f->q, 3, 17), 0);
    assert_true(tq_take_used(f->ram, &f->tq, &id, &len));
    assert_int_equal(id, 3);
    assert_int_equal(len, 17);
    assert_false(tq_take_used(f->ram, &f->tq, &id, &len));
}

static void test_vmm_vq_pop_zero_length_descriptor_skipped(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, 0, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->tq, 1, DATA, 8, 0, 0);
    tq_avail(f->ram, &f->tq, 0);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(f->c->nrd, 1);
    assert_int_equal(f->c->rd_len, 8);
}

static void test_vmm_vq_pop_indirect_table(void **state)
{
    struct fx *f = *state;
    uint64_t table = DATA + 0x1000;

    tg_desc_at(f->ram, table, 0, DATA, 10, VRING_DESC_F_NEXT, 2);
    tg_desc_at(f->ram, table, 2, DATA + 10, 20, VRING_DESC_F_NEXT, 1);
    tg_desc_at(f->ram, table, 1, DATA + 0x200, 30, VRING_DESC_F_WRITE, 0);
    tq_desc(f->ram, &f->tq, 5, table, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    tq_avail(f->ram, &f->tq, 5);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, VQ_POP_READ_BEFORE_WRITE), 1);
    assert_int_equal(f->c->head, 5);
    assert_int_equal(f->c->nrd, 2);
    assert_int_equal(f->c->rd_len, 30);
    assert_int_equal(f->c->nwr, 1);
    assert_int_equal(f->c->wr_len, 30);
}

static void test_vmm_vq_pop_indices_wrap(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    /* Device and driver indices near the top of the free-running u16 range. */
    f->tq.avail_idx = 65530;
    f->tq.used_seen = 65530;
    tg_w16(f->ram, f->tq.avail + 2, 65530);
    tg_w16(f->ram, f->tq.used + 2, 65530);
    rebind(f, false);
    f->q.last_avail = 65530;
    f->q.used_idx = 65530;
    for (unsigned i = 0; i < 40; i++) {
        uint16_t head = (uint16_t)(i % QSIZE);

        tq_desc(f->ram, &f->tq, head, DATA + i, 1, 0, 0);
        tq_avail(f->ram, &f->tq, head);
        assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
        assert_int_equal(f->c->head, head);
        assert_ptr_equal(f->c->rd[0].iov_base, f->ram + DATA + i);
        assert_int_equal(vmm_vq_push(&f->q, head, i), 0);
        assert_true(tq_take_used(f->ram, &f->tq, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, i);
    }
    assert_int_equal(tq_used_idx(f->ram, &f->tq), (uint16_t)(65530 + 40));
}

static void test_vmm_vq_unpop_returns_chain(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 2, DATA, 4, 0, 0);
    tq_avail(f->ram, &f->tq, 2);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    vmm_vq_unpop(&f->q);
    assert_true(vmm_vq_has_avail(&f->q));
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(f->c->head, 2);
}

static void test_vmm_vq_should_interrupt_event_idx(void **state)
{
    struct fx *f = *state;

    rebind(f, true);
    for (unsigned i = 0; i < 4; i++) {
        tq_desc(f->ram, &f->tq, (uint16_t)i, DATA, 4, 0, 0);
        tq_avail(f->ram, &f->tq, (uint16_t)i);
    }
    /* The guest wants an interrupt once used idx passes 2 (used_event = 2). */
    tq_set_used_event(f->ram, &f->tq, 2);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(vmm_vq_push(&f->q, f->c->head, 0), 0); /* used idx 1 */
    assert_true(vmm_vq_should_interrupt(&f->q));            /* first ever: signal */
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(vmm_vq_push(&f->q, f->c->head, 0), 0); /* used idx 2 */
    assert_false(vmm_vq_should_interrupt(&f->q));           /* 2 not yet passed */
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(vmm_vq_push(&f->q, f->c->head, 0), 0); /* used idx 3: passed 2 */
    assert_true(vmm_vq_should_interrupt(&f->q));
    /* Nothing new pushed: no interrupt. */
    assert_false(vmm_vq_should_interrupt(&f->q));
    /* Guest moves used_event far ahead: suppressed. */
    tq_set_used_event(f->ram, &f->tq, 100);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(vmm_vq_push(&f->q, f->c->head, 0), 0);
    assert_false(vmm_vq_should_interrupt(&f->q));
}

static void test_vmm_vq_should_interrupt_flags(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, 4, 0, 0);
    tq_avail(f->ram, &f->tq, 0);
    tq_avail(f->ram, &f->tq, 0);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(vmm_vq_push(&f->q, 0, 0), 0);
    assert_true(vmm_vq_should_interrupt(&f->q));
    tg_w16(f->ram, f->tq.avail, VRING_AVAIL_F_NO_INTERRUPT);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(vmm_vq_push(&f->q, 0, 0), 0);
    assert_false(vmm_vq_should_interrupt(&f->q));
}

static void test_vmm_vq_enable_notify_writes_avail_event(void **state)
{
    struct fx *f = *state;

    rebind(f, true);
    tq_desc(f->ram, &f->tq, 0, DATA, 4, 0, 0);
    tq_avail(f->ram, &f->tq, 0);
    tq_avail(f->ram, &f->tq, 0);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    /* One chain still waits: enable_notify says so. */
    assert_true(vmm_vq_enable_notify(&f->q));
    assert_int_equal(tq_avail_event(f->ram, &f->tq), 1);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_false(vmm_vq_enable_notify(&f->q));
    assert_int_equal(tq_avail_event(f->ram, &f->tq), 2);
}

/* Pop a chain that must fail with `want`, then check a good chain still works. */
static void expect_chain_error(struct fx *f, uint16_t head, unsigned flags, enum vq_err want)
{
    uint32_t id, len;

    tq_avail(f->ram, &f->tq, head);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, flags), -EIO);
    assert_int_equal(f->c->err, want);
    assert_int_equal(f->c->head, head);
    assert_string_not_equal(vmm_vq_err_str(want), "unknown");
    /* The device fails the request and the queue keeps working. */
    assert_int_equal(vmm_vq_push(&f->q, head, 0), 0);
    assert_true(tq_take_used(f->ram, &f->tq, &id, &len));
    assert_int_equal(id, head);
    tq_desc(f->ram, &f->tq, QSIZE - 1, DATA, 4, 0, 0);
    tq_avail(f->ram, &f->tq, QSIZE - 1);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(f->c->head, QSIZE - 1);
    assert_false(f->q.broken);
}

static void test_vmm_vq_pop_next_index_out_of_range(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, 4, VRING_DESC_F_NEXT, QSIZE);
    expect_chain_error(f, 0, 0, VQ_ERR_DESC_INDEX);
}

static void test_vmm_vq_pop_indirect_next_index_out_of_range(void **state)
{
    struct fx *f = *state;
    uint64_t table = DATA + 0x1000;

    tg_desc_at(f->ram, table, 0, DATA, 4, VRING_DESC_F_NEXT, 2); /* table has 2 entries */
    tq_desc(f->ram, &f->tq, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_DESC_INDEX);
}

static void test_vmm_vq_pop_loop(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, 4, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->tq, 1, DATA, 4, VRING_DESC_F_NEXT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_LOOP);
}

static void test_vmm_vq_pop_self_loop(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 4, DATA, 4, VRING_DESC_F_NEXT, 4);
    expect_chain_error(f, 4, 0, VQ_ERR_LOOP);
}

static void test_vmm_vq_pop_indirect_loop(void **state)
{
    struct fx *f = *state;
    uint64_t table = DATA + 0x1000;

    tg_desc_at(f->ram, table, 0, DATA, 4, VRING_DESC_F_NEXT, 1);
    tg_desc_at(f->ram, table, 1, DATA, 4, VRING_DESC_F_NEXT, 0);
    tq_desc(f->ram, &f->tq, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_LOOP);
}

static void test_vmm_vq_pop_nested_indirect(void **state)
{
    struct fx *f = *state;
    uint64_t table = DATA + 0x1000;

    tg_desc_at(f->ram, table, 0, DATA + 0x2000, 16, VRING_DESC_F_INDIRECT, 0);
    tq_desc(f->ram, &f->tq, 0, table, 16, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_NESTED_INDIRECT);
}

static void test_vmm_vq_pop_indirect_with_next(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA + 0x1000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    expect_chain_error(f, 0, 0, VQ_ERR_INDIRECT_NEXT);
}

static void test_vmm_vq_pop_indirect_len_zero(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA + 0x1000, 0, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_INDIRECT_LEN);
}

static void test_vmm_vq_pop_indirect_len_not_multiple(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA + 0x1000, 17, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_INDIRECT_LEN);
}

static void test_vmm_vq_pop_indirect_len_too_large(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, (VQ_MAX_SIZE + 1) * 16, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_INDIRECT_LEN);
}

static void test_vmm_vq_pop_indirect_table_outside_ram(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, RAM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_ADDR);
}

static void test_vmm_vq_pop_buffer_outside_ram(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, 4, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->tq, 1, RAM_SIZE - 2, 4, VRING_DESC_F_WRITE, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_ADDR);
}

static void test_vmm_vq_pop_buffer_in_hole(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, 0xd0000000ull, 4, 0, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_ADDR);
}

static void test_vmm_vq_pop_length_overflow(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, UINT64_MAX - 10, 100, 0, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_LEN_OVERFLOW);
}

static void test_vmm_vq_pop_indirect_length_overflow(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, UINT64_MAX - 15, 32, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_LEN_OVERFLOW);
}

static void test_vmm_vq_pop_total_length_huge(void **state)
{
    struct fx *f = *state;
    uint64_t table = DATA + 0x1000;
    unsigned n = VQ_MAX_CHAIN_BYTES / (RAM_SIZE / 2) + 1;

    /* Each entry names the same half of RAM: legal alone, too much together. */
    for (unsigned i = 0; i < n; i++)
        tg_desc_at(f->ram, table, (uint16_t)i, 0, RAM_SIZE / 2, i + 1 < n ? VRING_DESC_F_NEXT : 0,
                   (uint16_t)(i + 1));
    tq_desc(f->ram, &f->tq, 0, table, n * 16, VRING_DESC_F_INDIRECT, 0);
    expect_chain_error(f, 0, 0, VQ_ERR_TOTAL_LEN);
}

static void test_vmm_vq_pop_write_before_read(void **state)
{
    struct fx *f = *state;

    tq_desc(f->ram, &f->tq, 0, DATA, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->tq, 1, DATA, 4, 0, 0);
    expect_chain_error(f, 0, VQ_POP_READ_BEFORE_WRITE, VQ_ERR_WRITE_BEFORE_READ);
    /* Without the flag the same chain is accepted. */
    tq_avail(f->ram, &f->tq, 0);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);
    assert_int_equal(f->c->nrd, 1);
    assert_int_equal(f->c->nwr, 1);
}

static void test_vmm_vq_pop_head_out_of_range_breaks_queue(void **state)
{
    struct fx *f = *state;

    tq_avail(f->ram, &f->tq, QSIZE + 3);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), -EPROTO);
    assert_true(f->q.broken);
    assert_int_equal(f->q.err, VQ_ERR_DESC_INDEX);
    /* A broken queue stays broken until rebound (device reset). */
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), -EPROTO);
    assert_false(vmm_vq_has_avail(&f->q));
}

static void test_vmm_vq_pop_avail_idx_jump_breaks_queue(void **state)
{
    struct fx *f = *state;

    tg_w16(f->ram, f->tq.avail + 2, QSIZE + 1);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), -EPROTO);
    assert_int_equal(f->q.err, VQ_ERR_AVAIL_IDX);
    assert_true(f->q.broken);
}

static void test_vmm_vq_chain_copy_helpers(void **state)
{
    struct fx *f = *state;
    struct iovec iov[4];
    uint8_t out[10];
    unsigned n;

    memcpy(f->ram + DATA, "abc", 3);
    memcpy(f->ram + DATA + 0x100, "defgh", 5);
    tq_desc(f->ram, &f->tq, 0, DATA, 3, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->tq, 1, DATA + 0x100, 5, VRING_DESC_F_NEXT, 2);
    tq_desc(f->ram, &f->tq, 2, DATA + 0x200, 2, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
    tq_desc(f->ram, &f->tq, 3, DATA + 0x300, 6, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->tq, 0);
    assert_int_equal(vmm_vq_pop(&f->q, f->c, 0), 1);

    assert_int_equal(vmm_vq_chain_read(f->c, 2, out, sizeof(out)), 6);
    assert_memory_equal(out, "cdefgh", 6);
    assert_int_equal(vmm_vq_chain_write(f->c, 1, "WXYZ", 4), 4);
    assert_memory_equal(f->ram + DATA + 0x201, "W", 1);
    assert_memory_equal(f->ram + DATA + 0x300, "XYZ", 3);
    /* Writes past the writable part are clipped. */
    assert_int_equal(vmm_vq_chain_write(f->c, 6, "123456", 6), 2);

    n = vmm_vq_chain_iov(f->c, false, 1, 5, iov, 4);
    assert_int_equal(n, 2);
    assert_ptr_equal(iov[0].iov_base, f->ram + DATA + 1);
    assert_int_equal(iov[0].iov_len, 2);
    assert_int_equal(iov[1].iov_len, 3);
    n = vmm_vq_chain_iov(f->c, true, 0, 100, iov, 1);
    assert_int_equal(n, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_vmm_vq_bind_rejects_bad_rings),
        T(test_vmm_vq_pop_empty_ring),
        T(test_vmm_vq_pop_simple_chain),
        T(test_vmm_vq_pop_zero_length_descriptor_skipped),
        T(test_vmm_vq_pop_indirect_table),
        T(test_vmm_vq_pop_indices_wrap),
        T(test_vmm_vq_unpop_returns_chain),
        T(test_vmm_vq_should_interrupt_event_idx),
        T(test_vmm_vq_should_interrupt_flags),
        T(test_vmm_vq_enable_notify_writes_avail_event),
        T(test_vmm_vq_pop_next_index_out_of_range),
        T(test_vmm_vq_pop_indirect_next_index_out_of_range),
        T(test_vmm_vq_pop_loop),
        T(test_vmm_vq_pop_self_loop),
        T(test_vmm_vq_pop_indirect_loop),
        T(test_vmm_vq_pop_nested_indirect),
        T(test_vmm_vq_pop_indirect_with_next),
        T(test_vmm_vq_pop_indirect_len_zero),
        T(test_vmm_vq_pop_indirect_len_not_multiple),
        T(test_vmm_vq_pop_indirect_len_too_large),
        T(test_vmm_vq_pop_indirect_table_outside_ram),
        T(test_vmm_vq_pop_buffer_outside_ram),
        T(test_vmm_vq_pop_buffer_in_hole),
        T(test_vmm_vq_pop_length_overflow),
        T(test_vmm_vq_pop_indirect_length_overflow),
        T(test_vmm_vq_pop_total_length_huge),
        T(test_vmm_vq_pop_write_before_read),
        T(test_vmm_vq_pop_head_out_of_range_breaks_queue),
        T(test_vmm_vq_pop_avail_idx_jump_breaks_queue),
        T(test_vmm_vq_chain_copy_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
