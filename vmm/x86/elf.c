/*
 * Loader for the uncompressed kernel (vmlinux, ELF64 x86-64) and the initrd.
 * Every header field is treated as hostile: offsets and sizes are checked
 * against the file length with overflow checks, and destinations go through
 * vmm_mem_ptr().
 */
#include "boot.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define EHDR_SIZE 64
#define PHDR_SIZE 56
#define PT_LOAD 1
#define EM_X86_64 62
#define ET_EXEC 2
#define MAX_IMAGE (512ull << 20)
#define PAGE 0x1000ull

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int x86_elf_load(const struct vmm_mem *m, const uint8_t *img, size_t len, struct x86_kernel *out)
{
    if (len < EHDR_SIZE || memcmp(img, "\177ELF", 4) != 0)
        return -ENOEXEC;
    if (img[4] != 2 || img[5] != 1 || get16(img + 16) != ET_EXEC || get16(img + 18) != EM_X86_64 ||
        get16(img + 54) != PHDR_SIZE)
        return -ENOEXEC;
    uint64_t entry = get64(img + 24);
    uint64_t phoff = get64(img + 32);
    uint16_t phnum = get16(img + 56);
    uint64_t phend;
    if (phnum == 0 || add_overflows_u64(phoff, (uint64_t)phnum * PHDR_SIZE, &phend) || phend > len)
        return -ENOEXEC;

    uint64_t lo = UINT64_MAX, hi = 0;
    unsigned loads = 0;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = img + phoff + (uint64_t)i * PHDR_SIZE;
        if (get32(ph) != PT_LOAD)
            continue;
        uint64_t off = get64(ph + 8), paddr = get64(ph + 24);
        uint64_t filesz = get64(ph + 32), memsz = get64(ph + 40);
        uint64_t fend, mend;
        if (filesz > memsz || add_overflows_u64(off, filesz, &fend) || fend > len ||
            add_overflows_u64(paddr, memsz, &mend))
            return -ENOEXEC;
        uint8_t *dst = vmm_mem_ptr(m, paddr, memsz);
        if (!dst)
            return -ERANGE;
        memcpy(dst, img + off, filesz);
        memset(dst + filesz, 0, memsz - filesz);
        if (paddr < lo)
            lo = paddr;
        if (mend > hi)
            hi = mend;
        loads++;
    }
    if (loads == 0 || entry < lo || entry >= hi)
        return -ENOEXEC;
    *out = (struct x86_kernel){.entry = entry, .start = lo, .end = hi};
    return 0;
}

int x86_elf_load_file(const struct vmm_mem *m, const char *path, struct x86_kernel *out)
{
    int ret = 0;
    void *img = MAP_FAILED;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < EHDR_SIZE || (uint64_t)st.st_size > MAX_IMAGE) {
        ret = -ENOEXEC;
        goto out;
    }
    img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (img == MAP_FAILED) {
        ret = -errno;
        goto out;
    }
    ret = x86_elf_load(m, img, (size_t)st.st_size, out);
out:
    if (img != MAP_FAILED)
        munmap(img, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return ret;
}

int x86_initrd_place(const struct vmm_mem *m, uint64_t kernel_end, uint64_t size, uint64_t *gpa)
{
    const struct vmm_mem_region *low = &m->regions[0];
    uint64_t top = low->size < X86_BOOT_INITRD_MAX ? low->size : X86_BOOT_INITRD_MAX;
    uint64_t floor = (kernel_end + PAGE - 1) & ~(PAGE - 1);
    if (m->nregions == 0 || size == 0 || size > top || floor < kernel_end)
        return -E2BIG;
    uint64_t start = (top - size) & ~(PAGE - 1);
    if (start < floor || start < X86_BOOT_HIMEM)
        return -E2BIG;
    *gpa = start;
    return 0;
}

int x86_initrd_load_file(const struct vmm_mem *m, const char *path, uint64_t kernel_end,
                         uint64_t *gpa, uint64_t *size)
{
    int ret = 0;
    struct stat st;
    uint64_t at = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
        ret = -EINVAL;
        goto out;
    }
    ret = x86_initrd_place(m, kernel_end, (uint64_t)st.st_size, &at);
    if (ret)
        goto out;
    uint8_t *dst = vmm_mem_ptr(m, at, (uint64_t)st.st_size);
    if (!dst) {
        ret = -E2BIG;
        goto out;
    }
    uint64_t done = 0;
    while (done < (uint64_t)st.st_size) {
        ssize_t n = read(fd, dst + done, (size_t)((uint64_t)st.st_size - done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            goto out;
        }
        if (n == 0) {
            ret = -EIO; /* the file shrank while we read it */
            goto out;
        }
        done += (uint64_t)n;
    }
    *gpa = at;
    *size = (uint64_t)st.st_size;
out:
    if (fd >= 0)
        close(fd);
    return ret;
}
