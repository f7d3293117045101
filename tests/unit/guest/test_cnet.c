/*
 * Unit tests for guest/netproxy/cnet.c: the port 5002 header bytes
 * (schemas/vsock-net.md) and /proc/net/tcp parsing. Bad lines (the header
 * line, missing fields, bad hex, an address without its port, a non-numeric
 * inode) give -EINVAL and are skipped by the search; a name over 64 bytes is
 * cut; a too-small header buffer gives -ENOSPC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_cnet_header_encode_fields(void **state)
{
    (void)state;
    uint8_t h[CNET_HDR_MAX];
    int n = cnet_header_encode(h, sizeof(h), 0x01020304, 80, 4242, "curl", 4);
    assert_int_equal(n, 22);
    static const uint8_t want[] = {'C', 'N', 'E', 'T',  1,    4, 0, 80,  1,   2,   3,
                                   4,   0,   0,   0x10, 0x92, 0, 4, 'c', 'u', 'r', 'l'};
    assert_memory_equal(h, want, sizeof(want));
    n = cnet_header_encode(h, sizeof(h), 0xc6120001, 443, 0, NULL, 9);
    assert_int_equal(n, 18);
    assert_int_equal(h[6], 0x01);
    assert_int_equal(h[7], 0xbb);
    assert_int_equal(h[8], 198);
    assert_int_equal(h[16], 0);
    assert_int_equal(h[17], 0);
}

static void test_cnet_header_encode_long_name(void **state)
{
    (void)state;
    uint8_t h[CNET_HDR_MAX];
    char name[100];
    memset(name, 'x', sizeof(name));
    int n = cnet_header_encode(h, sizeof(h), 1, 1, 1, name, sizeof(name));
    assert_int_equal(n, CNET_FIXED_LEN + CNET_NAME_MAX);
    assert_int_equal(h[17], CNET_NAME_MAX);
}

static void test_cnet_header_encode_small_buffer(void **state)
{
    (void)state;
    uint8_t h[CNET_HDR_MAX];
    assert_int_equal(cnet_header_encode(h, 21, 1, 1, 1, "curl", 4), -ENOSPC);
    assert_int_equal(cnet_header_encode(h, 22, 1, 1, 1, "curl", 4), 22);
}

static const char proc_tcp[] =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
    "   0: 0100007F:3AA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "1234 1 0000000000000000 100 0 0 10 0\n"
    "   1: 0F02000A:A1B2 04030201:0050 01 00000000:00000000 00:00000000 00000000     0        0 "
    "56789 1 0000000000000000 20 4 30 10 -1\n"
    "   2: 0100007F:3AA2 0F02000A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 "
    "56790 1 0000000000000000 20 4 30 10 -1\n";

static void test_cnet_tcp_parse_line_fields(void **state)
{
    (void)state;
    const char *l = strchr(proc_tcp, '\n') + 1;
    l = strchr(l, '\n') + 1; /* entry 1 */
    struct cnet_tcp_entry e;
    assert_int_equal(cnet_tcp_parse_line(l, strcspn(l, "\n"), &e), 0);
    assert_int_equal(e.local_ip, 0x0a00020f); /* 10.0.2.15 */
    assert_int_equal(e.local_port, 0xa1b2);
    assert_int_equal(e.remote_ip, 0x01020304);
    assert_int_equal(e.remote_port, 80);
    assert_int_equal(e.inode, 56789);
}

static void test_cnet_tcp_parse_line_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid",
        "",
        "   0:",
        "   0: 0100007F:3AA2",
        "   0: 0100007G:3AA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "   0: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "   0: 0100007F:3A 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "   0: 0100007F:3AA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0",
        "   0: 0100007F:3AA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 x1",
        "   x: 0100007F:3AA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "   0: 0100007F:3AA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 "
        "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cnet_tcp_entry e = {.inode = 7};
        assert_int_equal(cnet_tcp_parse_line(bad[i], strlen(bad[i]), &e), -EINVAL);
        assert_int_equal(e.inode, 7);
    }
}

static void test_cnet_tcp_find_inode_match(void **state)
{
    (void)state;
    uint64_t ino = 0;
    /* The client's end of the redirected connection: local 10.0.2.15:0xa1b2. */
    assert_true(cnet_tcp_find_inode(proc_tcp, strlen(proc_tcp), 0x0a00020f, 0xa1b2, &ino));
    assert_int_equal(ino, 56789);
    assert_true(cnet_tcp_find_inode(proc_tcp, strlen(proc_tcp), 0x7f000001, 0x3aa2, &ino));
    assert_int_equal(ino, 1234);
    assert_false(cnet_tcp_find_inode(proc_tcp, strlen(proc_tcp), 0x0a00020f, 0xa1b3, &ino));
    /* Garbage and a truncated text are skipped, not overread. */
    const char junk[] = "garbage\n\n   1: 0F02000A:A1B2 04030201:0050 01 0";
    assert_false(cnet_tcp_find_inode(junk, sizeof(junk) - 1, 0x0a00020f, 0xa1b2, &ino));
    assert_false(cnet_tcp_find_inode(proc_tcp, 0, 0x0a00020f, 0xa1b2, &ino));
}

/* The real kernel text: a loopback connection's client socket is found by its address. */
static void test_cnet_tcp_find_inode_real_proc(void **state)
{
    (void)state;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    struct sockaddr_in peer;
    sl = sizeof(peer);
    assert_int_equal(getpeername(a, (struct sockaddr *)&peer, &sl), 0);

    static char text[1 << 20];
    int fd = open("/proc/net/tcp", O_RDONLY);
    assert_true(fd >= 0);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, text + len, sizeof(text) - len)) > 0)
        len += (size_t)n;
    close(fd);
    uint64_t ino = 0;
    assert_true(
        cnet_tcp_find_inode(text, len, ntohl(peer.sin_addr.s_addr), ntohs(peer.sin_port), &ino));
    struct stat st;
    assert_int_equal(fstat(c, &st), 0);
    assert_int_equal(ino, (uint64_t)st.st_ino);
    char link[64], path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", c);
    n = readlink(path, link, sizeof(link));
    assert_true(n > 0);
    assert_true(cnet_link_is_socket(link, (size_t)n, ino));
    close(a);
    close(c);
    close(l);
}

static void test_cnet_link_is_socket_forms(void **state)
{
    (void)state;
    assert_true(cnet_link_is_socket("socket:[56789]", 14, 56789));
    assert_false(cnet_link_is_socket("socket:[56789]", 14, 5678));
    assert_false(cnet_link_is_socket("socket:[]", 9, 0));
    assert_false(cnet_link_is_socket("socket:[5a]", 11, 5));
    assert_false(cnet_link_is_socket("pipe:[56789]", 12, 56789));
    assert_false(cnet_link_is_socket("socket:[56789", 13, 56789));
    assert_false(cnet_link_is_socket("/dev/null", 9, 0));
}

static void test_cnet_comm_trim_newline(void **state)
{
    (void)state;
    assert_int_equal(cnet_comm_trim("curl\n", 5), 4);
    assert_int_equal(cnet_comm_trim("curl", 4), 4);
    assert_int_equal(cnet_comm_trim("\n", 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnet_header_encode_fields),
        cmocka_unit_test(test_cnet_header_encode_long_name),
        cmocka_unit_test(test_cnet_header_encode_small_buffer),
        cmocka_unit_test(test_cnet_tcp_parse_line_fields),
        cmocka_unit_test(test_cnet_tcp_parse_line_bad),
        cmocka_unit_test(test_cnet_tcp_find_inode_match),
        cmocka_unit_test(test_cnet_tcp_find_inode_real_proc),
        cmocka_unit_test(test_cnet_link_is_socket_forms),
        cmocka_unit_test(test_cnet_comm_trim_newline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
