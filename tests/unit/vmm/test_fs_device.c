/*
 * virtio-fs through the mmio transport: the test is the guest driver. The
 * device says id 26 with its tag and one request queue; a FUSE request split
 * over several readable descriptors is answered in the writable ones; a
 * chain without writable room, a truncated header, a reply that does not fit
 * and a FORGET on the hiprio queue each get their defined answer (length 0
 * or an error reply) and the queue keeps working.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "device.h"
#include "virtio_guest.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define RAM_SIZE (1u << 20)
#define REQ 0x40000u
#define REP 0x60000u

struct fx {
    char dir[64];
    uint8_t *ram;
    struct vmm_mem mem;
    struct virtio_host host;
    struct virtio_mmio *t;
    struct tq q[2];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct virtio_dev *d;
    int irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    assert_non_null(f);
    assert_true(irqfd >= 0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/capsem-test-fsdev.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(f->ram);
    memset(f->ram, 0, RAM_SIZE);
    vmm_mem_init_buffer(&f->mem, f->ram, RAM_SIZE);
    f->host = (struct virtio_host){.mem = &f->mem};
    assert_int_equal(virtio_fs_create(&d, f->dir, "capsem-workspace", NULL), 0);
    assert_int_equal(virtio_mmio_create(&f->t, &f->host, d, 0xd0001000ull, 6, irqfd), 0);
    tq_init(&f->q[0], 0x1000, 16);
    tq_init(&f->q[1], 0x10000, 16);
    tg_driver_init(f->t, TG_F_VERSION_1 | TG_F_INDIRECT | TG_F_EVENT_IDX, f->q, 2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    virtio_mmio_destroy(f->t);
    rmdir(f->dir);
    free(f->ram);
    free(f);
    return 0;
}

/* Write a request (header + arguments) at REQ; returns its length. */
static size_t put_req(struct fx *f, uint32_t op, uint64_t nodeid, uint64_t unique, const void *arg,
                      size_t arglen)
{
    struct fuse_in_header h = {
        .len = (uint32_t)(sizeof(h) + arglen), .opcode = op, .unique = unique, .nodeid = nodeid};
    memcpy(f->ram + REQ, &h, sizeof(h));
    memcpy(f->ram + REQ + sizeof(h), arg, arglen);
    return sizeof(h) + arglen;
}

static void kick(struct fx *f, unsigned q)
{
    mmio_wr(f->t, 0x50, q);
    virtio_mmio_poll(f->t);
}

static void test_fs_config_id_and_tag(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mmio_rd(f->t, 0x008), 26);
    char tag[37] = {0};
    for (unsigned i = 0; i < 36; i += 4) {
        uint32_t v = mmio_rd(f->t, 0x100 + i);
        memcpy(tag + i, &v, 4);
    }
    assert_string_equal(tag, "capsem-workspace");
    assert_int_equal(mmio_rd(f->t, 0x100 + 36), 1); /* num_request_queues */
}

static void test_fs_notify_split_request_and_reply(void **state)
{
    struct fx *f = *state;
    struct fuse_init_in in = {.major = 7, .minor = 36, .max_readahead = 65536};
    size_t len = put_req(f, FUSE_INIT, 0, 77, &in, sizeof(in));
    uint32_t id, used;
    /* header in one descriptor, arguments in another; reply over two writable ones */
    tq_desc(f->ram, &f->q[1], 0, REQ, 40, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q[1], 1, REQ + 40, (uint32_t)(len - 40), VRING_DESC_F_NEXT, 2);
    tq_desc(f->ram, &f->q[1], 2, REP, 20, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
    tq_desc(f->ram, &f->q[1], 3, REP + 20, 4096, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q[1], 0);
    kick(f, 1);
    assert_true(tq_take_used(f->ram, &f->q[1], &id, &used));
    assert_int_equal(id, 0);
    struct fuse_out_header oh;
    struct fuse_init_out io;
    assert_int_equal(used, sizeof(oh) + sizeof(io));
    memcpy(&oh, f->ram + REP, sizeof(oh));
    memcpy(&io, f->ram + REP + sizeof(oh), sizeof(io));
    assert_int_equal(oh.error, 0);
    assert_int_equal(oh.unique, 77);
    assert_int_equal(oh.len, used);
    assert_int_equal(io.major, 7);
    assert_int_equal(io.minor, 36);
    assert_int_equal(io.max_readahead, 65536);

    /* GETATTR of the root: a regular request after INIT */
    struct fuse_getattr_in ga = {0};
    len = put_req(f, FUSE_GETATTR, FUSE_ROOT_ID, 78, &ga, sizeof(ga));
    tq_desc(f->ram, &f->q[1], 4, REQ, (uint32_t)len, VRING_DESC_F_NEXT, 5);
    tq_desc(f->ram, &f->q[1], 5, REP, 4096, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q[1], 4);
    kick(f, 1);
    assert_true(tq_take_used(f->ram, &f->q[1], &id, &used));
    assert_int_equal(used, sizeof(oh) + sizeof(struct fuse_attr_out));
    struct fuse_attr_out ao;
    memcpy(&ao, f->ram + REP + sizeof(oh), sizeof(ao));
    assert_true(S_ISDIR(ao.attr.mode));
}

static void test_fs_notify_bad_chains(void **state)
{
    struct fx *f = *state;
    uint32_t id, used;
    struct fuse_out_header oh;
    struct fuse_init_in in = {.major = 7, .minor = 36};
    size_t len = put_req(f, FUSE_INIT, 0, 1, &in, sizeof(in));
    /* no writable part: consumed with length 0 */
    tq_desc(f->ram, &f->q[1], 0, REQ, (uint32_t)len, 0, 0);
    tq_avail(f->ram, &f->q[1], 0);
    kick(f, 1);
    assert_true(tq_take_used(f->ram, &f->q[1], &id, &used));
    assert_int_equal(used, 0);
    /* a header cut to 10 bytes: EINVAL */
    tq_desc(f->ram, &f->q[1], 1, REQ, 10, VRING_DESC_F_NEXT, 2);
    tq_desc(f->ram, &f->q[1], 2, REP, 4096, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q[1], 1);
    kick(f, 1);
    assert_true(tq_take_used(f->ram, &f->q[1], &id, &used));
    assert_int_equal(used, sizeof(oh));
    memcpy(&oh, f->ram + REP, sizeof(oh));
    assert_int_equal(oh.error, -EINVAL);
    /* INIT whose reply does not fit in 20 writable bytes: an error reply that fits */
    tq_desc(f->ram, &f->q[1], 3, REQ, (uint32_t)len, VRING_DESC_F_NEXT, 4);
    tq_desc(f->ram, &f->q[1], 4, REP, 20, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q[1], 3);
    kick(f, 1);
    assert_true(tq_take_used(f->ram, &f->q[1], &id, &used));
    assert_int_equal(used, sizeof(oh));
    memcpy(&oh, f->ram + REP, sizeof(oh));
    assert_int_equal(oh.unique, 1);
    assert_true(oh.error < 0);
    /* FORGET on the hiprio queue: no reply, length 0 */
    struct fuse_forget_in fg = {.nlookup = 1};
    len = put_req(f, FUSE_FORGET, 12345, 2, &fg, sizeof(fg));
    tq_desc(f->ram, &f->q[0], 0, REQ, (uint32_t)len, 0, 0);
    tq_avail(f->ram, &f->q[0], 0);
    kick(f, 0);
    assert_true(tq_take_used(f->ram, &f->q[0], &id, &used));
    assert_int_equal(used, 0);
    /* the request queue still answers */
    tq_desc(f->ram, &f->q[1], 5, REQ, 10, VRING_DESC_F_NEXT, 6);
    tq_desc(f->ram, &f->q[1], 6, REP, 4096, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q[1], 5);
    kick(f, 1);
    assert_true(tq_take_used(f->ram, &f->q[1], &id, &used));
    assert_int_equal(id, 5);
    assert_int_equal(used, sizeof(oh));
}

static void test_fs_create_bad_arguments(void **state)
{
    (void)state;
    struct virtio_dev *d = NULL;
    assert_int_equal(virtio_fs_create(&d, "/nonexistent/capsem", "t", NULL), -ENOENT);
    assert_int_equal(virtio_fs_create(&d, "/tmp", "", NULL), -EINVAL);
    assert_int_equal(virtio_fs_create(&d, "/tmp", "0123456789012345678901234567890123456", NULL),
                     -EINVAL);
    assert_int_equal(virtio_fs_create(&d, "/etc/hostname", "t", NULL), -ENOTDIR);
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fs_config_id_and_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fs_notify_split_request_and_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fs_notify_bad_chains, setup, teardown),
        cmocka_unit_test(test_fs_create_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
