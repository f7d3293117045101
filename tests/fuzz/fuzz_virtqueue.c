/*
 * Fuzz target for the split virtqueue: the input is a small header (queue
 * size, feature flags, ring addresses, starting indices) followed by an
 * image of guest RAM. The target binds a queue to those rings and pops,
 * reads, writes and pushes every chain it finds, touching each byte the
 * chain describes so the sanitizers catch any access outside guest RAM.
 * Built as a libFuzzer target with clang, and replayed over the corpus by
 * replay_main.c in the normal test run.
 */
#include "queue.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_RAM (64u * 1024)
#define HDR 10u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct vq_chain chain;
    struct vmm_mem mem;
    struct vq q;
    uint8_t *ram, scratch[256];
    uint16_t qsize;
    unsigned flags;
    size_t n;

    if (size < HDR)
        return 0;
    /* Exactly FUZZ_RAM bytes on the heap: one byte past is an ASan report. */
    ram = calloc(1, FUZZ_RAM);
    if (!ram)
        return 0;
    n = size - HDR < FUZZ_RAM ? size - HDR : FUZZ_RAM;
    memcpy(ram, data + HDR, n);
    vmm_mem_init_buffer(&mem, ram, FUZZ_RAM);

    qsize = (uint16_t)(1u << (data[0] % 9));
    flags = data[1] & 2 ? VQ_POP_READ_BEFORE_WRITE : 0;
    if (vmm_vq_bind(&q, &mem, qsize, (uint64_t)get16(data + 2) * 16, (uint64_t)get16(data + 4) * 2,
                    (uint64_t)get16(data + 6) * 4, data[1] & 1) == 0) {
        q.last_avail = q.used_idx = get16(data + 8);
        /* Bounded: at most two rounds of the ring. */
        for (unsigned i = 0; i < 2u * qsize + 2; i++) {
            int r = vmm_vq_pop(&q, &chain, flags);

            if (r == 0) {
                if (!vmm_vq_enable_notify(&q))
                    break;
                continue;
            }
            if (r == -EPROTO)
                break;
            if (r == 1) {
                for (size_t off = 0; off < chain.rd_len; off += sizeof(scratch))
                    vmm_vq_chain_read(&chain, off, scratch, sizeof(scratch));
                memset(scratch, 0x5a, sizeof(scratch));
                for (size_t off = 0; off < chain.wr_len; off += sizeof(scratch))
                    vmm_vq_chain_write(&chain, off, scratch, sizeof(scratch));
            }
            if (vmm_vq_push(&q, chain.head, (uint32_t)chain.wr_len) < 0)
                break;
            (void)vmm_vq_should_interrupt(&q);
        }
    }
    free(ram);
    return 0;
}
