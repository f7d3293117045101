/*
 * virtio-blk tests through the mmio transport over a real image file in
 * $TMPDIR: the test is the guest driver. Reads return the file's bytes,
 * writes land in the file, and every kind of bad request is answered
 * without touching the file: a write to a read-only disk, a range past the
 * end (also one whose end overflows), a length that is not whole sectors and
 * a header shorter than 16 bytes get VIRTIO_BLK_S_IOERR; an unknown type
 * gets VIRTIO_BLK_S_UNSUPP; a request with no writable status byte or a
 * readable buffer after a writable one comes back with used length 0; the
 * queue keeps serving the next request after each of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "device.h"
#include "virtio_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RAM_SIZE (1u << 20)
#define HDR 0x40000u
#define DATA 0x50000u
#define STATUS 0x60000u
#define SECTORS 16u
#define IMG_SIZE (SECTORS * 512u)

struct fx {
    uint8_t *ram;
    struct vmm_mem mem;
    struct virtio_host host;
    struct virtio_mmio *t;
    struct tq q;
    char path[64];
    uint8_t img[IMG_SIZE]; /* what the file held at setup */
};

static uint8_t pattern(size_t off)
{
    return (uint8_t)(off * 7u + off / 512u + 1u);
}

static int setup_disk(void **state, bool ro)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct virtio_dev *d;
    int irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const char *tmp = getenv("TMPDIR");
    int fd;

    assert_non_null(f);
    assert_true(irqfd >= 0);
    snprintf(f->path, sizeof(f->path), "%s/blk-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    for (size_t i = 0; i < IMG_SIZE; i++)
        f->img[i] = pattern(i);
    assert_int_equal(write(fd, f->img, IMG_SIZE), IMG_SIZE);
    close(fd);

    f->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(f->ram);
    memset(f->ram, 0, RAM_SIZE);
    vmm_mem_init_buffer(&f->mem, f->ram, RAM_SIZE);
    f->host = (struct virtio_host){.mem = &f->mem};
    assert_int_equal(virtio_blk_create(&d, f->path, ro), 0);
    assert_int_equal(virtio_mmio_create(&f->t, &f->host, d, 0xd0001000ull, 6, irqfd), 0);
    tq_init(&f->q, 0x1000, 64);
    tg_driver_init(f->t, TG_F_VERSION_1 | TG_F_INDIRECT | TG_F_EVENT_IDX, &f->q, 1);
    *state = f;
    return 0;
}

static int setup_rw(void **state)
{
    return setup_disk(state, false);
}

static int setup_ro(void **state)
{
    return setup_disk(state, true);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    virtio_mmio_destroy(f->t);
    unlink(f->path);
    free(f->ram);
    free(f);
    return 0;
}

/* The file's current bytes. */
static void read_file(const struct fx *f, uint8_t *out)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, IMG_SIZE, 0), IMG_SIZE);
    close(fd);
}

static void assert_file_unchanged(const struct fx *f)
{
    uint8_t now[IMG_SIZE];

    read_file(f, now);
    assert_memory_equal(now, f->img, IMG_SIZE);
}

static void put_hdr(struct fx *f, uint64_t gpa, uint32_t type, uint64_t sector)
{
    uint32_t zero = 0;

    memcpy(f->ram + gpa, &type, 4);
    memcpy(f->ram + gpa + 4, &zero, 4);
    memcpy(f->ram + gpa + 8, &sector, 8);
}

/*
 * Queue the usual three-descriptor request: header, one data buffer of
 * `len` bytes (writable unless `out`), status byte. Run it and return the
 * used length; *status gets the status byte.
 */
static uint32_t run3(struct fx *f, uint32_t type, uint64_t sector, uint32_t len, bool out,
                     uint8_t *status)
{
    uint32_t id = 0, used = 0;

    put_hdr(f, HDR, type, sector);
    f->ram[STATUS] = 0xee;
    tq_desc(f->ram, &f->q, 0, HDR, 16, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, DATA, len, VRING_DESC_F_NEXT | (out ? 0 : VRING_DESC_F_WRITE), 2);
    tq_desc(f->ram, &f->q, 2, STATUS, 1, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &used));
    assert_int_equal(id, 0);
    *status = f->ram[STATUS];
    return used;
}

static void test_blk_create_bad_path(void **state)
{
    struct virtio_dev *d = NULL;

    (void)state;
    assert_int_equal(virtio_blk_create(&d, "/nonexistent/disk.img", true), -ENOENT);
    assert_int_equal(virtio_blk_create(&d, "/", true), -EINVAL);
    assert_null(d);
}

static void test_blk_config_capacity_and_features(void **state)
{
    struct fx *f = *state;

    assert_int_equal(mmio_rd(f->t, 0x08), VIRTIO_ID_BLK);
    assert_int_equal(mmio_rd(f->t, 0x100), SECTORS);
    assert_int_equal(mmio_rd(f->t, 0x104), 0);
    mmio_wr(f->t, 0x14, 0);
    assert_int_equal(mmio_rd(f->t, 0x10) & (1u << 5), 0);     /* not RO */
    assert_int_not_equal(mmio_rd(f->t, 0x10) & (1u << 9), 0); /* FLUSH */
}

static void test_blk_config_ro_feature(void **state)
{
    struct fx *f = *state;

    mmio_wr(f->t, 0x14, 0);
    assert_int_not_equal(mmio_rd(f->t, 0x10) & (1u << 5), 0);
}

static void test_blk_in_reads_sectors(void **state)
{
    struct fx *f = *state;
    uint8_t st;

    assert_int_equal(run3(f, VIRTIO_BLK_T_IN, 3, 1024, false, &st), 1025);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
    assert_memory_equal(f->ram + DATA, f->img + 3 * 512, 1024);
    /* The last sector of the disk is in range. */
    assert_int_equal(run3(f, VIRTIO_BLK_T_IN, SECTORS - 1, 512, false, &st), 513);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
    assert_memory_equal(f->ram + DATA, f->img + (SECTORS - 1) * 512, 512);
}

static void test_blk_in_split_buffers(void **state)
{
    struct fx *f = *state;
    uint32_t id = 0, used = 0;

    /* Header split 5 + 11; data 300 + 212 + 512 with the status byte in the last buffer. */
    put_hdr(f, HDR, VIRTIO_BLK_T_IN, 5);
    tq_desc(f->ram, &f->q, 0, HDR, 5, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, HDR + 5, 11, VRING_DESC_F_NEXT, 2);
    tq_desc(f->ram, &f->q, 2, DATA, 300, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
    tq_desc(f->ram, &f->q, 3, DATA + 0x1000, 212, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4);
    tq_desc(f->ram, &f->q, 4, DATA + 0x2000, 513, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &used));
    assert_int_equal(used, 1025);
    assert_int_equal(f->ram[DATA + 0x2000 + 512], VIRTIO_BLK_S_OK);
    assert_memory_equal(f->ram + DATA, f->img + 5 * 512, 300);
    assert_memory_equal(f->ram + DATA + 0x1000, f->img + 5 * 512 + 300, 212);
    assert_memory_equal(f->ram + DATA + 0x2000, f->img + 6 * 512, 512);
}

static void test_blk_out_writes_sectors(void **state)
{
    struct fx *f = *state;
    uint8_t now[IMG_SIZE];
    uint8_t st;

    for (unsigned i = 0; i < 1024; i++)
        f->ram[DATA + i] = (uint8_t)(0xa5 ^ i);
    run3(f, VIRTIO_BLK_T_OUT, 7, 1024, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
    read_file(f, now);
    assert_memory_equal(now + 7 * 512, f->ram + DATA, 1024);
    /* Nothing around the range moved. */
    assert_memory_equal(now, f->img, 7 * 512);
    assert_memory_equal(now + 9 * 512, f->img + 9 * 512, IMG_SIZE - 9 * 512);
    /* FLUSH after it succeeds. */
    run3(f, VIRTIO_BLK_T_FLUSH, 0, 0, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
}

static void test_blk_out_refused_read_only(void **state)
{
    struct fx *f = *state;
    uint8_t st;

    memset(f->ram + DATA, 0x5a, 512);
    run3(f, VIRTIO_BLK_T_OUT, 0, 512, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    assert_file_unchanged(f);
    /* Reads still work. */
    assert_int_equal(run3(f, VIRTIO_BLK_T_IN, 1, 512, false, &st), 513);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
    assert_memory_equal(f->ram + DATA, f->img + 512, 512);
}

static void test_blk_in_out_of_range(void **state)
{
    struct fx *f = *state;
    uint8_t st;

    /* One sector past the end, a range crossing the end, and an overflowing end. */
    memset(f->ram + DATA, 0x77, 1024);
    run3(f, VIRTIO_BLK_T_IN, SECTORS, 512, false, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    run3(f, VIRTIO_BLK_T_IN, SECTORS - 1, 1024, false, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    run3(f, VIRTIO_BLK_T_IN, UINT64_MAX, 512, false, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    run3(f, VIRTIO_BLK_T_OUT, UINT64_MAX - 1, 1024, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    run3(f, VIRTIO_BLK_T_OUT, SECTORS, 512, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    assert_file_unchanged(f);
    /* The guest buffer was not filled either. */
    for (unsigned i = 0; i < 1024; i++)
        assert_int_equal(f->ram[DATA + i], 0x77);
}

static void test_blk_odd_lengths_ioerr(void **state)
{
    struct fx *f = *state;
    uint8_t st;

    run3(f, VIRTIO_BLK_T_IN, 0, 511, false, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    run3(f, VIRTIO_BLK_T_OUT, 0, 700, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_IOERR);
    assert_file_unchanged(f);
}

static void test_blk_short_header_ioerr(void **state)
{
    struct fx *f = *state;
    uint32_t id = 0, used = 0;

    put_hdr(f, HDR, VIRTIO_BLK_T_OUT, 0);
    f->ram[STATUS] = 0xee;
    tq_desc(f->ram, &f->q, 0, HDR, 8, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, STATUS, 1, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &used));
    assert_int_equal(used, 1);
    assert_int_equal(f->ram[STATUS], VIRTIO_BLK_S_IOERR);
    assert_file_unchanged(f);
}

static void test_blk_no_status_byte_used_zero(void **state)
{
    struct fx *f = *state;
    uint32_t id = 0, used = 0;
    uint8_t st;

    /* Only readable buffers (a write without a status byte): not performed. */
    put_hdr(f, HDR, VIRTIO_BLK_T_OUT, 0);
    memset(f->ram + DATA, 0x11, 512);
    tq_desc(f->ram, &f->q, 0, HDR, 16, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, DATA, 512, 0, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &used));
    assert_int_equal(used, 0);
    assert_file_unchanged(f);
    /* The queue still works. */
    assert_int_equal(run3(f, VIRTIO_BLK_T_IN, 0, 512, false, &st), 513);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
}

static void test_blk_readable_after_writable_used_zero(void **state)
{
    struct fx *f = *state;
    uint32_t id = 0, used = 0;

    put_hdr(f, HDR, VIRTIO_BLK_T_OUT, 0);
    memset(f->ram + DATA, 0x22, 512);
    f->ram[STATUS] = 0xee;
    tq_desc(f->ram, &f->q, 0, HDR, 16, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, STATUS, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
    tq_desc(f->ram, &f->q, 2, DATA, 512, 0, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &used));
    assert_int_equal(used, 0);
    assert_int_equal(f->ram[STATUS], 0xee);
    assert_file_unchanged(f);
}

static void test_blk_unknown_type_unsupp(void **state)
{
    struct fx *f = *state;
    uint8_t st;

    run3(f, 11 /* DISCARD, not offered */, 0, 512, true, &st);
    assert_int_equal(st, VIRTIO_BLK_S_UNSUPP);
    run3(f, 0xdeadbeef, 0, 512, false, &st);
    assert_int_equal(st, VIRTIO_BLK_S_UNSUPP);
    assert_file_unchanged(f);
}

static void test_blk_get_id_base_name(void **state)
{
    struct fx *f = *state;
    const char *base = strrchr(f->path, '/') + 1;
    char want[20] = {0};
    uint8_t st;

    /* The id is the base name, zero-padded to 20 bytes. */
    memcpy(want, base, strnlen(base, sizeof(want)));
    memset(f->ram + DATA, 0xff, 32);
    assert_int_equal(run3(f, VIRTIO_BLK_T_GET_ID, 0, 32, false, &st), 21);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
    assert_memory_equal(f->ram + DATA, want, 20);
    assert_int_equal(f->ram[DATA + 20], 0xff);
    /* A buffer shorter than 20 bytes gets the first bytes only. */
    memset(f->ram + DATA, 0xff, 32);
    assert_int_equal(run3(f, VIRTIO_BLK_T_GET_ID, 0, 4, false, &st), 5);
    assert_memory_equal(f->ram + DATA, want, 4);
    assert_int_equal(f->ram[DATA + 4], 0xff);
}

static void test_blk_flush_ok(void **state)
{
    struct fx *f = *state;
    uint32_t id = 0, used = 0;

    put_hdr(f, HDR, VIRTIO_BLK_T_FLUSH, 0);
    f->ram[STATUS] = 0xee;
    tq_desc(f->ram, &f->q, 0, HDR, 16, VRING_DESC_F_NEXT, 1);
    tq_desc(f->ram, &f->q, 1, STATUS, 1, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q, 0);
    mmio_wr(f->t, 0x50, 0);
    virtio_mmio_poll(f->t);
    assert_true(tq_take_used(f->ram, &f->q, &id, &used));
    assert_int_equal(used, 1);
    assert_int_equal(f->ram[STATUS], VIRTIO_BLK_S_OK);
}

#define RW(fn) cmocka_unit_test_setup_teardown(fn, setup_rw, teardown)
#define RO(fn) cmocka_unit_test_setup_teardown(fn, setup_ro, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blk_create_bad_path),
        RW(test_blk_config_capacity_and_features),
        RO(test_blk_config_ro_feature),
        RW(test_blk_in_reads_sectors),
        RO(test_blk_in_reads_sectors),
        RW(test_blk_in_split_buffers),
        RW(test_blk_out_writes_sectors),
        RO(test_blk_out_refused_read_only),
        RW(test_blk_in_out_of_range),
        RW(test_blk_odd_lengths_ioerr),
        RW(test_blk_short_header_ioerr),
        RW(test_blk_no_status_byte_used_zero),
        RW(test_blk_readable_after_writable_used_zero),
        RW(test_blk_unknown_type_unsupp),
        RW(test_blk_get_id_base_name),
        RW(test_blk_flush_ok),
        RO(test_blk_flush_ok),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
