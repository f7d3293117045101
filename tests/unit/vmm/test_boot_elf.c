/*
 * vmlinux loader and initrd placement. Images are built here: a good
 * two-segment ELF loads at its physical addresses with its bss zeroed; each
 * kind of malformed image is refused with -ENOEXEC (truncated header or
 * program headers, file ranges past the end, overflowing offsets, memsz
 * smaller than filesz, foreign machine, no loadable segment, entry outside
 * the image) and a segment outside guest RAM with -ERANGE.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "boot.h"

#define RAM (32u << 20)
#define IMG 0x3000

static uint8_t *ram;
static uint8_t img[IMG];

static void w16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static void w32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void w64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint8_t *phdr(unsigned i)
{
    return img + 64 + 56 * i;
}

static void set_phdr(unsigned i, uint32_t type, uint64_t off, uint64_t paddr, uint64_t filesz,
                     uint64_t memsz)
{
    uint8_t *p = phdr(i);
    w32(p, type);
    w32(p + 4, 5);
    w64(p + 8, off);
    w64(p + 16, 0xffffffff80000000ull + paddr);
    w64(p + 24, paddr);
    w64(p + 32, filesz);
    w64(p + 40, memsz);
    w64(p + 48, 0x1000);
}

/* A vmlinux-like image: text at 1 MiB (0x1000 bytes from file 0x1000) and
 * data+bss at 2 MiB (0x800 file bytes, 0x2000 in memory). */
static void build_good(void)
{
    memset(img, 0, sizeof(img));
    memcpy(img, "\177ELF", 4);
    img[4] = 2;
    img[5] = 1;
    img[6] = 1;
    w16(img + 16, 2);  /* ET_EXEC */
    w16(img + 18, 62); /* x86-64 */
    w32(img + 20, 1);
    w64(img + 24, 0x100000); /* entry */
    w64(img + 32, 64);       /* phoff */
    w16(img + 52, 64);
    w16(img + 54, 56);
    w16(img + 56, 3);
    set_phdr(0, 1, 0x1000, 0x100000, 0x1000, 0x1000);
    set_phdr(1, 4, 0, 0, 0, 0); /* PT_NOTE: ignored */
    set_phdr(2, 1, 0x2000, 0x200000, 0x800, 0x2000);
    memset(img + 0x1000, 0x90, 0x1000);
    memset(img + 0x2000, 0x42, 0x800);
}

static int setup(void **state)
{
    (void)state;
    ram = malloc(RAM);
    return ram ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(ram);
    return 0;
}

static int load(size_t len, struct x86_kernel *k)
{
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    return x86_elf_load(&m, img, len, k);
}

static void test_x86_elf_load_good(void **state)
{
    (void)state;
    build_good();
    memset(ram, 0xee, RAM); /* bss must come out zeroed */
    struct x86_kernel k;
    assert_int_equal(load(IMG, &k), 0);
    assert_int_equal(k.entry, 0x100000);
    assert_int_equal(k.start, 0x100000);
    assert_int_equal(k.end, 0x202000);
    assert_int_equal(ram[0x100000], 0x90);
    assert_int_equal(ram[0x100fff], 0x90);
    assert_int_equal(ram[0x200000], 0x42);
    assert_int_equal(ram[0x2007ff], 0x42);
    assert_int_equal(ram[0x200800], 0);
    assert_int_equal(ram[0x201fff], 0);
    assert_int_equal(ram[0x202000], 0xee); /* nothing written past memsz */
}

static void test_x86_elf_load_truncated(void **state)
{
    (void)state;
    struct x86_kernel k = {.entry = 7};
    build_good();
    assert_int_equal(load(63, &k), -ENOEXEC);          /* header cut */
    assert_int_equal(load(64 + 56 * 2, &k), -ENOEXEC); /* third phdr cut */
    assert_int_equal(load(0x2400, &k), -ENOEXEC);      /* data segment's bytes cut */
    assert_int_equal(k.entry, 7);                      /* out-param untouched */
}

static void test_x86_elf_load_segment_outside_ram(void **state)
{
    (void)state;
    struct x86_kernel k;
    build_good();
    set_phdr(2, 1, 0x2000, RAM - 0x1000, 0x800, 0x2000); /* bss runs past RAM */
    assert_int_equal(load(IMG, &k), -ERANGE);
    build_good();
    set_phdr(0, 1, 0x1000, 0xd0000000ull, 0x1000, 0x1000); /* in the MMIO hole */
    assert_int_equal(load(IMG, &k), -ERANGE);
}

static void test_x86_elf_load_overflowing_offsets(void **state)
{
    (void)state;
    struct x86_kernel k;
    build_good();
    set_phdr(0, 1, UINT64_MAX - 0x10, 0x100000, 0x1000, 0x1000); /* off+filesz wraps */
    assert_int_equal(load(IMG, &k), -ENOEXEC);
    build_good();
    set_phdr(0, 1, 0x1000, UINT64_MAX - 0x10, 0x1000, 0x1000); /* paddr+memsz wraps */
    assert_int_equal(load(IMG, &k), -ENOEXEC);
    build_good();
    w64(img + 32, UINT64_MAX - 8); /* phoff wraps */
    assert_int_equal(load(IMG, &k), -ENOEXEC);
    build_good();
    set_phdr(0, 1, 0x1000, 0x100000, 0x2000, 0x1000); /* filesz > memsz */
    assert_int_equal(load(IMG, &k), -ENOEXEC);
}

static void test_x86_elf_load_foreign(void **state)
{
    (void)state;
    struct x86_kernel k;
    build_good();
    img[0] = 'X';
    assert_int_equal(load(IMG, &k), -ENOEXEC); /* not ELF */
    build_good();
    img[4] = 1;
    assert_int_equal(load(IMG, &k), -ENOEXEC); /* 32-bit */
    build_good();
    w16(img + 18, 183);
    assert_int_equal(load(IMG, &k), -ENOEXEC); /* aarch64 */
    build_good();
    w16(img + 54, 32);
    assert_int_equal(load(IMG, &k), -ENOEXEC); /* odd phdr size */
    build_good();
    set_phdr(0, 4, 0, 0, 0, 0);
    set_phdr(2, 4, 0, 0, 0, 0);
    assert_int_equal(load(IMG, &k), -ENOEXEC); /* nothing to load */
    build_good();
    w64(img + 24, 0x500000);
    assert_int_equal(load(IMG, &k), -ENOEXEC); /* entry outside the image */
}

/* Header fields flipped at random (fixed seed): never a crash or a write outside RAM (the
 * sanitizer build checks the latter), and any accepted image lies inside guest RAM. */
static void test_x86_elf_load_mutated_headers(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    unsigned accepted = 0;
    for (int round = 0; round < 20000; round++) {
        build_good();
        int flips = 1 + round % 4;
        for (int f = 0; f < flips; f++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(seed >> 33) % (64 + 56 * 3);
            img[at] = (uint8_t)(seed >> 13);
        }
        struct x86_kernel k;
        if (load(IMG, &k) == 0) {
            accepted++;
            assert_true(k.start <= k.entry && k.entry < k.end && k.end <= RAM);
        }
    }
    /* flips in unused fields (p_vaddr, p_align, e_flags…) keep the image valid */
    assert_true(accepted > 0);
}

static void test_x86_elf_load_file_missing(void **state)
{
    (void)state;
    struct vmm_mem m;
    struct x86_kernel k;
    vmm_mem_init_buffer(&m, ram, RAM);
    assert_int_equal(x86_elf_load_file(&m, "/nonexistent/vmlinux", &k), -ENOENT);
    assert_int_equal(x86_elf_load_file(&m, "/", &k), -ENOEXEC); /* a directory */
}

static void test_x86_initrd_place_high(void **state)
{
    (void)state;
    struct vmm_mem m;
    uint64_t gpa = 0;
    vmm_mem_init_buffer(&m, ram, RAM);
    assert_int_equal(x86_initrd_place(&m, 0x202000, 0x123456, &gpa), 0);
    assert_int_equal(gpa & 0xfff, 0);
    assert_true(gpa + 0x123456 <= RAM);
    assert_true(RAM - (gpa + 0x123456) < 0x1000); /* as high as it goes */
    assert_true(gpa >= 0x202000);
}

static void test_x86_initrd_place_too_big(void **state)
{
    (void)state;
    struct vmm_mem m;
    uint64_t gpa = 99;
    vmm_mem_init_buffer(&m, ram, RAM);
    assert_int_equal(x86_initrd_place(&m, 0x202000, RAM, &gpa), -E2BIG);
    /* would overlap the kernel */
    assert_int_equal(x86_initrd_place(&m, 0x1000000, RAM - 0x1000000 + 1, &gpa), -E2BIG);
    assert_int_equal(x86_initrd_place(&m, 0x202000, 0, &gpa), -E2BIG);
    assert_int_equal(gpa, 99);
}

static void test_x86_initrd_place_below_2g(void **state)
{
    (void)state;
    /* Layout only, with a fake base: 3 GiB guests keep the initrd under 2 GiB. */
    struct vmm_mem m;
    uint64_t gpa = 0;
    vmm_mem_init_buffer(&m, (void *)(uintptr_t)0x10000000ull, 3ull << 30);
    assert_int_equal(x86_initrd_place(&m, 0x2000000, 0x100000, &gpa), 0);
    assert_int_equal(gpa, X86_BOOT_INITRD_MAX - 0x100000);
}

static void test_x86_initrd_load_file_contents(void **state)
{
    (void)state;
    char path[] = "/tmp/test-initrd-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t data[5000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    assert_int_equal(write(fd, data, sizeof(data)), sizeof(data));
    close(fd);
    struct vmm_mem m;
    uint64_t gpa = 0, size = 0;
    vmm_mem_init_buffer(&m, ram, RAM);
    assert_int_equal(x86_initrd_load_file(&m, path, 0x202000, &gpa, &size), 0);
    assert_int_equal(size, sizeof(data));
    assert_memory_equal(ram + gpa, data, sizeof(data));
    /* an empty file is refused */
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    assert_int_equal(x86_initrd_load_file(&m, path, 0x202000, &gpa, &size), -EINVAL);
    unlink(path);
    assert_int_equal(x86_initrd_load_file(&m, path, 0x202000, &gpa, &size), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x86_elf_load_good),
        cmocka_unit_test(test_x86_elf_load_truncated),
        cmocka_unit_test(test_x86_elf_load_segment_outside_ram),
        cmocka_unit_test(test_x86_elf_load_overflowing_offsets),
        cmocka_unit_test(test_x86_elf_load_foreign),
        cmocka_unit_test(test_x86_elf_load_mutated_headers),
        cmocka_unit_test(test_x86_elf_load_file_missing),
        cmocka_unit_test(test_x86_initrd_place_high),
        cmocka_unit_test(test_x86_initrd_place_too_big),
        cmocka_unit_test(test_x86_initrd_place_below_2g),
        cmocka_unit_test(test_x86_initrd_load_file_contents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
