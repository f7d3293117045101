/*
 * Split virtqueue, device side. The guest owns the rings and may change them
 * at any moment, so every value read from them is validated before use:
 * descriptors are copied out once, indices are range-checked, buffer
 * addresses go through vmm_mem_ptr(), and every walk is bounded by the queue
 * or table size. Ring indices are read with acquire and published with
 * release ordering, as the virtio memory model asks.
 */
#include "queue.h"

#include "buf.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#define DESC_SIZE 16u

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static uint16_t ld16(const uint8_t *p)
{
    return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED));
}

static uint16_t ld16_acquire(const uint8_t *p)
{
    return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE));
}

static void st16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELAXED);
}

static void st16_release(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELEASE);
}

static void st32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)p, htole32(v), __ATOMIC_RELAXED);
}

static void load_desc(const uint8_t *table, uint32_t idx, struct desc *d)
{
    uint8_t raw[DESC_SIZE];

    memcpy(raw, table + (size_t)idx * DESC_SIZE, sizeof(raw));
    memcpy(&d->addr, raw, 8);
    memcpy(&d->len, raw + 8, 4);
    memcpy(&d->flags, raw + 12, 2);
    memcpy(&d->next, raw + 14, 2);
    d->addr = le64toh(d->addr);
    d->len = le32toh(d->len);
    d->flags = le16toh(d->flags);
    d->next = le16toh(d->next);
}

static const char *const err_names[VQ_ERR_COUNT] = {
    [VQ_OK] = "ok",
    [VQ_ERR_DESC_INDEX] = "descriptor index out of range",
    [VQ_ERR_LOOP] = "descriptor chain longer than the queue (loop)",
    [VQ_ERR_NESTED_INDIRECT] = "indirect descriptor inside an indirect table",
    [VQ_ERR_INDIRECT_NEXT] = "indirect descriptor with the next flag",
    [VQ_ERR_INDIRECT_LEN] = "bad indirect table length",
    [VQ_ERR_ADDR] = "buffer outside guest RAM",
    [VQ_ERR_LEN_OVERFLOW] = "buffer address plus length overflows",
    [VQ_ERR_TOTAL_LEN] = "chain describes too many bytes",
    [VQ_ERR_WRITE_BEFORE_READ] = "readable descriptor after a writable one",
    [VQ_ERR_AVAIL_IDX] = "avail index moved more than the queue size",
    [VQ_ERR_RING_ADDR] = "ring outside guest RAM or misaligned",
    [VQ_ERR_NOT_READY] = "queue not ready",
};

const char *vmm_vq_err_str(enum vq_err e)
{
    if ((unsigned)e >= VQ_ERR_COUNT)
        return "unknown";
    return err_names[e];
}

static uint8_t *ring_ptr(const struct vmm_mem *mem, uint64_t gpa, uint64_t len, uint64_t align)
{
    if (gpa & (align - 1))
        return NULL;
    return vmm_mem_ptr(mem, gpa, len);
}

int vmm_vq_bind(struct vq *q, const struct vmm_mem *mem, uint16_t size, uint64_t desc,
                uint64_t avail, uint64_t used, bool event_idx)
{
    uint8_t *d, *a, *u;

    memset(q, 0, sizeof(*q));
    if (size == 0 || size > VQ_MAX_SIZE || (size & (size - 1))) {
        q->err = VQ_ERR_RING_ADDR;
        return -EINVAL;
    }
    d = ring_ptr(mem, desc, (uint64_t)size * DESC_SIZE, 16);
    a = ring_ptr(mem, avail, 6 + 2 * (uint64_t)size, 2);
    u = ring_ptr(mem, used, 6 + 8 * (uint64_t)size, 4);
    if (!d || !a || !u) {
        q->err = VQ_ERR_RING_ADDR;
        return -EINVAL;
    }
    q->mem = mem;
    q->size = size;
    q->desc = d;
    q->avail = a;
    q->used = u;
    q->event_idx = event_idx;
    /* A freshly set up queue starts at index 0 (the driver may already have posted buffers). */
    q->last_avail = 0;
    q->used_idx = 0;
    q->ready = true;
    return 0;
}

void vmm_vq_unbind(struct vq *q)
{
    memset(q, 0, sizeof(*q));
}

static int chain_fail(struct vq_chain *c, enum vq_err e)
{
    c->err = e;
    return -EIO;
}

static int queue_fail(struct vq *q, enum vq_err e)
{
    q->broken = true;
    q->err = e;
    return -EPROTO;
}

int vmm_vq_pop(struct vq *q, struct vq_chain *c, unsigned flags)
{
    const uint8_t *table;
    uint32_t table_n, visited = 0, idx;
    uint64_t total = 0;
    bool indirect = false;
    uint16_t avail_idx, pending, head;

    if (!q->ready)
        return 0;
    if (q->broken)
        return -EPROTO;
    avail_idx = ld16_acquire(q->avail + 2);
    pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > q->size)
        return queue_fail(q, VQ_ERR_AVAIL_IDX);
    head = ld16(q->avail + 4 + 2u * (q->last_avail & (q->size - 1)));
    if (head >= q->size)
        return queue_fail(q, VQ_ERR_DESC_INDEX);
    q->last_avail++;

    c->head = head;
    c->err = VQ_OK;
    c->nrd = c->nwr = 0;
    c->rd_len = c->wr_len = 0;
    table = q->desc;
    table_n = q->size;
    idx = head;
    for (;;) {
        struct desc d;
        uint64_t end;
        void *p;

        /* A chain visits each descriptor of a table at most once. */
        if (++visited > table_n)
            return chain_fail(c, VQ_ERR_LOOP);
        load_desc(table, idx, &d);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect)
                return chain_fail(c, VQ_ERR_NESTED_INDIRECT);
            if (d.flags & VRING_DESC_F_NEXT)
                return chain_fail(c, VQ_ERR_INDIRECT_NEXT);
            if (d.len == 0 || d.len % DESC_SIZE || d.len / DESC_SIZE > VQ_MAX_SIZE)
                return chain_fail(c, VQ_ERR_INDIRECT_LEN);
            if (add_overflows_u64(d.addr, d.len, &end))
                return chain_fail(c, VQ_ERR_LEN_OVERFLOW);
            table = vmm_mem_ptr(q->mem, d.addr, d.len);
            if (!table)
                return chain_fail(c, VQ_ERR_ADDR);
            table_n = d.len / DESC_SIZE;
            indirect = true;
            visited = 0;
            idx = 0;
            continue;
        }
        if (add_overflows_u64(d.addr, d.len, &end))
            return chain_fail(c, VQ_ERR_LEN_OVERFLOW);
        p = vmm_mem_ptr(q->mem, d.addr, d.len);
        if (!p)
            return chain_fail(c, VQ_ERR_ADDR);
        total += d.len;
        if (total > VQ_MAX_CHAIN_BYTES)
            return chain_fail(c, VQ_ERR_TOTAL_LEN);
        if (d.flags & VRING_DESC_F_WRITE) {
            if (d.len) {
                if (c->nwr == VQ_MAX_SIZE)
                    return chain_fail(c, VQ_ERR_LOOP);
                c->wr[c->nwr++] = (struct iovec){p, d.len};
                c->wr_len += d.len;
            }
        } else {
            if (c->nwr && (flags & VQ_POP_READ_BEFORE_WRITE))
                return chain_fail(c, VQ_ERR_WRITE_BEFORE_READ);
            if (d.len) {
                if (c->nrd == VQ_MAX_SIZE)
                    return chain_fail(c, VQ_ERR_LOOP);
                c->rd[c->nrd++] = (struct iovec){p, d.len};
                c->rd_len += d.len;
            }
        }
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        idx = d.next;
        if (idx >= table_n)
            return chain_fail(c, VQ_ERR_DESC_INDEX);
    }
    return 1;
}

void vmm_vq_unpop(struct vq *q)
{
    q->last_avail--;
}

int vmm_vq_push(struct vq *q, uint16_t head, uint32_t len)
{
    uint8_t *elem;

    if (!q->ready)
        return -EINVAL;
    elem = q->used + 4 + 8u * (q->used_idx & (q->size - 1));
    st32(elem, head);
    st32(elem + 4, len);
    q->used_idx++;
    st16_release(q->used + 2, q->used_idx);
    return 0;
}

bool vmm_vq_should_interrupt(struct vq *q)
{
    uint16_t old, event;
    bool need;

    if (!q->ready)
        return false;
    if (q->signalled_valid && q->signalled_used == q->used_idx)
        return false;
    /* The used idx store must be visible before we read the guest's wish. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!q->event_idx) {
        need = !(ld16(q->avail) & VRING_AVAIL_F_NO_INTERRUPT);
    } else {
        event = ld16(q->avail + 4 + 2u * q->size);
        old = q->signalled_used;
        need = !q->signalled_valid ||
               (uint16_t)(q->used_idx - event - 1) < (uint16_t)(q->used_idx - old);
    }
    q->signalled_used = q->used_idx;
    q->signalled_valid = true;
    return need;
}

bool vmm_vq_has_avail(struct vq *q)
{
    if (!q->ready || q->broken)
        return false;
    return ld16_acquire(q->avail + 2) != q->last_avail;
}

bool vmm_vq_enable_notify(struct vq *q)
{
    if (!q->ready || q->broken)
        return false;
    if (q->event_idx)
        st16(q->used + 4 + 8u * q->size, q->last_avail);
    else
        st16(q->used, 0);
    /* Publish avail_event before re-reading avail idx, or a notify can be lost. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return vmm_vq_has_avail(q);
}

size_t vmm_vq_chain_read(const struct vq_chain *c, size_t off, void *dst, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < c->nrd && done < len; i++) {
        size_t n;

        if (off >= c->rd[i].iov_len) {
            off -= c->rd[i].iov_len;
            continue;
        }
        n = c->rd[i].iov_len - off;
        if (n > len - done)
            n = len - done;
        memcpy((uint8_t *)dst + done, (const uint8_t *)c->rd[i].iov_base + off, n);
        done += n;
        off = 0;
    }
    return done;
}

size_t vmm_vq_chain_write(const struct vq_chain *c, size_t off, const void *src, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < c->nwr && done < len; i++) {
        size_t n;

        if (off >= c->wr[i].iov_len) {
            off -= c->wr[i].iov_len;
            continue;
        }
        n = c->wr[i].iov_len - off;
        if (n > len - done)
            n = len - done;
        memcpy((uint8_t *)c->wr[i].iov_base + off, (const uint8_t *)src + done, n);
        done += n;
        off = 0;
    }
    return done;
}

unsigned vmm_vq_chain_iov(const struct vq_chain *c, bool writable, size_t off, size_t len,
                          struct iovec *out, unsigned max)
{
    const struct iovec *v = writable ? c->wr : c->rd;
    unsigned nv = writable ? c->nwr : c->nrd, n = 0;

    for (unsigned i = 0; i < nv && len && n < max; i++) {
        size_t take;

        if (off >= v[i].iov_len) {
            off -= v[i].iov_len;
            continue;
        }
        take = v[i].iov_len - off;
        if (take > len)
            take = len;
        out[n++] = (struct iovec){(uint8_t *)v[i].iov_base + off, take};
        len -= take;
        off = 0;
    }
    return n;
}
