/*
 * Fuzz target for dns_answer(): the input is one DNS message as the guest's
 * DNS stub would send it. It is answered by a fixed policy (a few allow,
 * log and block rules, default allow so addresses get assigned) into a heap
 * buffer of exactly DNS_ANSWER_MAX bytes, so the sanitizers catch any access
 * past it, and the answer is checked: dropped only below two bytes, otherwise
 * 12..DNS_ANSWER_MAX bytes carrying the query's id with QR set. Built as a
 * libFuzzer target with clang, and replayed over the corpus by replay_main.c
 * in the normal test run.
 */
#include "dns.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dns_pool *pool;
static struct policy *pol;

static void setup(void)
{
    const char *text = "{\"network\":{\"default\":\"allow\",\"rules\":["
                       "{\"domain\":\"blocked.test\",\"action\":\"block\"},"
                       "{\"domain\":\"*.log.test\",\"action\":\"log\"},"
                       "{\"domain\":\"api.test\",\"methods\":[\"GET\"],\"action\":\"block\"}]}}";
    json_t *j = json_loads(text, 0, NULL);
    char err[256];
    if (!j || dns_pool_create(&pool) != 0 ||
        policy_build(NULL, NULL, j, "fuzz", &pol, err, sizeof(err)) != 0)
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pool)
        setup();
    uint8_t *q = malloc(size ? size : 1); /* exactly the input: one byte past is a report */
    uint8_t *out = malloc(DNS_ANSWER_MAX);
    if (!q || !out)
        abort();
    memcpy(q, data, size);
    long n = dns_answer(pool, pol, NULL, q, size, out, DNS_ANSWER_MAX);
    if (n == -EBADMSG) {
        if (size >= 2)
            abort(); /* the id was readable: FORMERR was due */
    } else if (n < 12 || n > DNS_ANSWER_MAX || memcmp(out, q, 2) != 0 || !(out[2] & 0x80)) {
        abort();
    }
    free(q);
    free(out);
    return 0;
}
