/*
 * One hexadecimal digit's value, shared by the parsers that decode %XX,
 * chunk sizes and \uXXXX escapes (http.c, redact.c, model.c, jscan.c).
 */
#ifndef CAPSEM_MITM_HEX_H
#define CAPSEM_MITM_HEX_H

/* The value of hex digit c (either case), or -1 when c is not one. */
static inline int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
