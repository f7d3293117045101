/*
 * Legacy port I/O devices. The i8042 model answers the controller commands
 * Linux's i8042 driver uses while probing (read/write CTR, self tests,
 * enable/disable), acknowledges bytes sent to the keyboard so atkbd's probe
 * does not wait for timeouts, and turns the pulse-reset command (0xFE) into
 * the end of the VM: with reboot=k that is how our guest powers off.
 */
#include "pio.h"

#include <string.h>

#include "log.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_STR_OBF 0x01
#define I8042_STR_SYS 0x04
#define I8042_STR_CMD 0x08
#define I8042_STR_UNLOCKED 0x10 /* keyboard not inhibited by the keylock */
#define I8042_CTR_KBDINT 0x01
#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71

void vmm_pio_init(struct vmm_pio *p, struct vmm_serial *serial, vmm_pio_reset_fn reset,
                  vmm_pio_irq_fn irq, void *opaque)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    p->serial = serial;
    p->reset = reset;
    p->irq = irq;
    p->opaque = opaque;
    p->kbd_ctr = 0x45; /* keyboard interrupt on, system flag, translation */
}

void vmm_pio_fini(struct vmm_pio *p)
{
    pthread_mutex_destroy(&p->lock);
}

static void kbd_push(struct vmm_pio *p, uint8_t v)
{
    if (p->kbd_out_len < sizeof(p->kbd_out))
        p->kbd_out[p->kbd_out_len++] = v;
}

static uint8_t kbd_pop(struct vmm_pio *p)
{
    if (!p->kbd_out_len)
        return 0;
    uint8_t v = p->kbd_out[0];
    memmove(p->kbd_out, p->kbd_out + 1, --p->kbd_out_len);
    return v;
}

/* Returns true when the guest asked for a reset. Lock held. */
static bool kbd_command(struct vmm_pio *p, uint8_t cmd)
{
    switch (cmd) {
    case 0x20: /* read CTR */
        kbd_push(p, p->kbd_ctr);
        break;
    case 0x60: /* write CTR: data follows */
    case 0xd1: /* write output port: data follows */
        p->kbd_pending = cmd;
        break;
    case 0xaa: /* controller self test */
        kbd_push(p, 0x55);
        break;
    case 0xab: /* keyboard interface test */
        kbd_push(p, 0x00);
        break;
    case 0xfe: /* pulse the reset line */
        return true;
    default:
        break; /* enable/disable keyboard or aux and the rest: accepted, no effect */
    }
    return false;
}

/* Returns true when the guest asked for a reset. Lock held. */
static bool kbd_data(struct vmm_pio *p, uint8_t v, bool *irq)
{
    uint8_t pending = p->kbd_pending;
    p->kbd_pending = 0;
    if (pending == 0x60) {
        p->kbd_ctr = v;
        return false;
    }
    if (pending == 0xd1)
        return !(v & 1); /* bit 0 of the output port is the reset line, active low */
    /* A byte for the keyboard itself: acknowledge, and answer the probes atkbd sends. */
    kbd_push(p, 0xfa);
    if (v == 0xf2) { /* get id: a standard MF2 keyboard */
        kbd_push(p, 0xab);
        kbd_push(p, 0x83);
    } else if (v == 0xff) { /* reset: self test passed */
        kbd_push(p, 0xaa);
    }
    *irq = p->kbd_ctr & I8042_CTR_KBDINT;
    return false;
}

static bool quiet_port(uint16_t port)
{
    static const struct {
        uint16_t lo, hi;
    } quiet[] = {
        {0x20, 0x21},   /* PIC (in-kernel; exits only if misrouted) */
        {0x40, 0x43},   /* PIT (in-kernel) */
        {0x61, 0x61},   /* speaker / NMI status */
        {0x80, 0x80},   /* POST code, used as an I/O delay */
        {0x87, 0x87},   /* DMA page */
        {0x92, 0x92},   /* system control port A */
        {0xa0, 0xa1},   /* slave PIC */
        {0xed, 0xed},   /* alternative I/O delay port */
        {0x2e8, 0x2ef}, /* COM4 */
        {0x2f8, 0x2ff}, /* COM2 */
        {0x3c0, 0x3df}, /* VGA */
        {0x3e8, 0x3ef}, /* COM3 */
        {0x4d0, 0x4d1}, /* ELCR */
        {0xcf8, 0xcff}, /* PCI configuration: no PCI here */
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        if (port >= quiet[i].lo && port <= quiet[i].hi)
            return true;
    return false;
}

static void one(struct vmm_pio *p, uint16_t port, uint8_t *data, uint32_t size, bool is_write)
{
    if (p->serial && port >= VMM_SERIAL_BASE && port < VMM_SERIAL_BASE + 8) {
        /* Wider accesses to the UART are split into byte accesses. */
        for (uint32_t i = 0; i < size && port + i < VMM_SERIAL_BASE + 8; i++)
            vmm_serial_io(p->serial, (uint16_t)(port + i - VMM_SERIAL_BASE), data + i, is_write);
        return;
    }
    bool reset = false, irq = false;
    pthread_mutex_lock(&p->lock);
    switch (port) {
    case I8042_DATA:
        if (is_write) {
            reset = kbd_data(p, data[0], &irq);
        } else {
            memset(data, 0, size);
            data[0] = kbd_pop(p);
        }
        break;
    case I8042_CMD:
        if (is_write) {
            reset = kbd_command(p, data[0]);
        } else {
            memset(data, 0, size);
            data[0] = I8042_STR_SYS | I8042_STR_CMD | I8042_STR_UNLOCKED |
                      (p->kbd_out_len ? I8042_STR_OBF : 0);
        }
        break;
    case CMOS_INDEX:
        if (is_write)
            p->cmos_index = data[0] & 0x7f;
        else
            memset(data, 0, size);
        break;
    case CMOS_DATA:
        if (!is_write)
            memset(data, 0, size); /* no RTC: every CMOS register reads 0 */
        break;
    default:
        if (quiet_port(port)) {
            if (!is_write)
                memset(data, port >= 0xcfc && port <= 0xcff ? 0xff : 0, size);
            break;
        }
        if (!is_write)
            memset(data, 0xff, size);
        if (!(p->seen[port / 8] & (1u << (port % 8)))) {
            p->seen[port / 8] |= (uint8_t)(1u << (port % 8));
            LOG_INFO("msg=\"guest accessed an unknown I/O port (ignored)\" port=0x%x size=%u "
                     "write=%d",
                     port, size, is_write);
        }
        break;
    }
    pthread_mutex_unlock(&p->lock);
    if (irq && p->irq)
        p->irq(p->opaque, VMM_I8042_IRQ);
    if (reset && p->reset)
        p->reset(p->opaque);
}

void vmm_pio_dispatch(struct vmm_pio *p, uint16_t port, uint8_t *data, uint32_t size,
                      uint32_t count, bool is_write)
{
    if (size != 1 && size != 2 && size != 4)
        return;
    for (uint32_t i = 0; i < count; i++)
        one(p, port, data + (size_t)i * size, size, is_write);
}
