/*
 * A minimal virtio driver for unit tests: guest RAM is a plain buffer, and
 * the test plays the guest by writing descriptors and the avail ring,
 * poking transport registers through virtio_mmio_access() and reading the
 * used ring back. Header-only so each test binary stays one .c file.
 */
#ifndef CAPSEM_TESTS_VIRTIO_GUEST_H
#define CAPSEM_TESTS_VIRTIO_GUEST_H

#include "memory.h"
#include "virtio.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tq {
    uint64_t desc, avail, used;
    uint16_t size;
    uint16_t avail_idx; /* next avail idx the guest publishes */
    uint16_t used_seen; /* used entries already consumed by the test */
};

static inline void tg_w16(uint8_t *ram, uint64_t gpa, uint16_t v)
{
    __atomic_store_n((uint16_t *)(ram + gpa), v, __ATOMIC_RELEASE);
}

static inline uint16_t tg_r16(const uint8_t *ram, uint64_t gpa)
{
    return __atomic_load_n((const uint16_t *)(ram + gpa), __ATOMIC_ACQUIRE);
}

static inline uint32_t tg_r32(const uint8_t *ram, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, ram + gpa, 4);
    return v;
}

/* Lay out a queue of `size` entries at `base` (desc, avail, used, 4 KiB apart per ring). */
static inline void tq_init(struct tq *q, uint64_t base, uint16_t size)
{
    memset(q, 0, sizeof(*q));
    q->size = size;
    q->desc = base;
    q->avail = base + 16u * size;
    q->used = (q->avail + 6 + 2u * size + 3) & ~3ull;
}

/* Bytes of RAM the queue occupies from its base. */
static inline uint64_t tq_span(const struct tq *q)
{
    return q->used + 6 + 8u * q->size - q->desc;
}

static inline void tq_desc(uint8_t *ram, const struct tq *q, uint16_t i, uint64_t addr,
                           uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *d = ram + q->desc + 16u * i;
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

/* Write a descriptor into a table at `table` (for indirect tables). */
static inline void tg_desc_at(uint8_t *ram, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                              uint16_t flags, uint16_t next)
{
    uint8_t *d = ram + table + 16u * i;
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

/* Make chain `head` available and publish the avail index. */
static inline void tq_avail(uint8_t *ram, struct tq *q, uint16_t head)
{
    tg_w16(ram, q->avail + 4 + 2u * (q->avail_idx % q->size), head);
    q->avail_idx++;
    tg_w16(ram, q->avail + 2, q->avail_idx);
}

static inline uint16_t tq_used_idx(const uint8_t *ram, const struct tq *q)
{
    return tg_r16(ram, q->used + 2);
}

/* Take the next used element; false when there is none. */
static inline bool tq_take_used(const uint8_t *ram, struct tq *q, uint32_t *id, uint32_t *len)
{
    uint64_t e;

    if (tq_used_idx(ram, q) == q->used_seen)
        return false;
    e = q->used + 4 + 8u * (q->used_seen % q->size);
    *id = tg_r32(ram, e);
    *len = tg_r32(ram, e + 4);
    q->used_seen++;
    return true;
}

/* used_event lives after the avail ring, avail_event after the used ring. */
static inline void tq_set_used_event(uint8_t *ram, const struct tq *q, uint16_t v)
{
    tg_w16(ram, q->avail + 4 + 2u * q->size, v);
}

static inline uint16_t tq_avail_event(const uint8_t *ram, const struct tq *q)
{
    return tg_r16(ram, q->used + 4 + 8u * q->size);
}

/* ---- transport registers ---- */

static inline uint32_t mmio_rd(struct virtio_mmio *t, uint64_t off)
{
    uint8_t b[4];
    uint32_t v;
    virtio_mmio_access(t, off, b, 4, false);
    memcpy(&v, b, 4);
    return v;
}

static inline void mmio_wr(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    memcpy(b, &v, 4);
    virtio_mmio_access(t, off, b, 4, true);
}

/* Driver bring-up (virtio 1.1 section 3.1.1) with `features` and the given queues. */
static inline void tg_driver_init(struct virtio_mmio *t, uint64_t features, struct tq *qs,
                                  unsigned nq)
{
    mmio_wr(t, 0x70, 0);
    mmio_wr(t, 0x70, 1);
    mmio_wr(t, 0x70, 1 | 2);
    mmio_wr(t, 0x24, 0);
    mmio_wr(t, 0x20, (uint32_t)features);
    mmio_wr(t, 0x24, 1);
    mmio_wr(t, 0x20, (uint32_t)(features >> 32));
    mmio_wr(t, 0x70, 1 | 2 | 8);
    for (unsigned i = 0; i < nq; i++) {
        mmio_wr(t, 0x30, i);
        mmio_wr(t, 0x38, qs[i].size);
        mmio_wr(t, 0x80, (uint32_t)qs[i].desc);
        mmio_wr(t, 0x84, (uint32_t)(qs[i].desc >> 32));
        mmio_wr(t, 0x90, (uint32_t)qs[i].avail);
        mmio_wr(t, 0x94, (uint32_t)(qs[i].avail >> 32));
        mmio_wr(t, 0xa0, (uint32_t)qs[i].used);
        mmio_wr(t, 0xa4, (uint32_t)(qs[i].used >> 32));
        mmio_wr(t, 0x44, 1);
    }
    mmio_wr(t, 0x70, 1 | 2 | 8 | 4);
}

#define TG_F_VERSION_1 (1ull << 32)
#define TG_F_INDIRECT (1ull << 28)
#define TG_F_EVENT_IDX (1ull << 29)

#endif
