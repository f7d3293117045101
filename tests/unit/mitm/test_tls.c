/*
 * unit.mitm.tls: the local CA (created with private modes in a temporary
 * CAPSEM_HOME, reloaded identically, and each kind of bad file refused with
 * its path and nothing changed on disk), leaf certificates (verified against
 * the CA with X509_verify_cert, SAN for names and IPv4 literals, bad hosts
 * refused without minting, LRU eviction and hits proven by the minted
 * count, concurrent minting from four threads), and real handshakes over a
 * socketpair: SNI, the fallback name, neither, ALPN, and the upstream client
 * context refusing a wrong name or an untrusted CA.
 */
#include "tls.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"

struct fixture {
    char home[64];
    char dir[96];  /* home/ca */
    char dir2[96]; /* home/other-ca, a second, independent CA */
    char key[128];
    char crt[128];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->home, sizeof(f->home), "/tmp/capsem-tls-XXXXXX");
    assert_non_null(mkdtemp(f->home));
    setenv("CAPSEM_HOME", f->home, 1);
    snprintf(f->dir, sizeof(f->dir), "%s/ca", f->home);
    snprintf(f->dir2, sizeof(f->dir2), "%s/other-ca", f->home);
    snprintf(f->key, sizeof(f->key), "%s/ca.key", f->dir);
    snprintf(f->crt, sizeof(f->crt), "%s/ca.crt", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- small helpers ---- */

static struct mitm_ca *open_ca(const char *dir)
{
    struct mitm_ca *ca = NULL;
    char err[512] = "";
    int rc = mitm_ca_open(dir, &ca, err, sizeof(err));
    if (rc != 0)
        fail_msg("mitm_ca_open(%s) = %d: %s", dir, rc, err);
    return ca;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void spit(const char *path, const char *data, size_t len, mode_t mode)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
    assert_int_equal(chmod(path, mode), 0);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    size_t len;
    char *d = slurp(from, &len);
    spit(to, d, len, mode);
    free(d);
}

static X509 *pem_to_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    assert_non_null(b);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

/* The CA must refuse with -EINVAL, name `path` and say `why`; the files stay as they were. */
static void expect_refused(const struct fixture *f, const char *path, const char *why)
{
    size_t kl0, cl0;
    char *k0 = slurp(f->key, &kl0), *c0 = slurp(f->crt, &cl0);
    struct mitm_ca *ca = NULL;
    char err[512] = "";
    assert_int_equal(mitm_ca_open(f->dir, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    if (!strstr(err, path) || !strstr(err, why))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err, path, why);
    size_t kl1, cl1;
    char *k1 = slurp(f->key, &kl1), *c1 = slurp(f->crt, &cl1);
    assert_int_equal(kl0, kl1);
    assert_int_equal(cl0, cl1);
    assert_memory_equal(k0, k1, kl0);
    assert_memory_equal(c0, c1, cl0);
    free(k0);
    free(k1);
    free(c0);
    free(c1);
}

static int verify_leaf(X509 *ca_cert, X509 *leaf)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(sc);
    assert_int_equal(X509_STORE_add_cert(store, ca_cert), 1);
    assert_int_equal(X509_STORE_CTX_init(sc, store, leaf, NULL), 1);
    X509_STORE_CTX_set_purpose(sc, X509_PURPOSE_SSL_SERVER);
    int ok = X509_verify_cert(sc);
    if (ok != 1)
        print_message("verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
    X509_STORE_CTX_free(sc);
    X509_STORE_free(store);
    return ok;
}

/* ---- CA ---- */

static void test_mitm_ca_open_creates_private_files(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    assert_non_null(ca);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(f->key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal(stat(f->crt, &st), 0);
    assert_int_equal(st.st_mode & 077, 044);

    /* the PEM handed out is the file's certificate */
    char *crt = slurp(f->crt, NULL);
    assert_string_equal(mitm_ca_pem(ca), crt);
    free(crt);

    X509 *x = pem_to_x509(mitm_ca_pem(ca));
    char cn[128] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_memory_equal(cn, "Capsem local CA ", 16);
    assert_int_equal(strlen(cn), 16 + 8);
    assert_int_equal(X509_check_ca(x), 1);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    uint32_t ku = X509_get_key_usage(x);
    assert_true(ku & KU_KEY_CERT_SIGN);
    assert_true(ku & KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(x));
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_in_range(days, 3649, 3651);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    assert_true(EVP_PKEY_is_a(pub, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(pub), 256);
    X509_free(x);
    mitm_ca_free(ca);
}

static void test_mitm_ca_open_reopen_loads_same(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *a = open_ca(f->dir);
    char *pem = strdup(mitm_ca_pem(a));
    mitm_ca_free(a);
    struct mitm_ca *b = open_ca(f->dir);
    assert_string_equal(pem, mitm_ca_pem(b));
    mitm_ca_free(b);
    free(pem);
    /* a second directory makes a different CA */
    struct mitm_ca *c = open_ca(f->dir2);
    assert_non_null(c);
    struct mitm_ca *d = open_ca(f->dir);
    assert_string_not_equal(mitm_ca_pem(c), mitm_ca_pem(d));
    mitm_ca_free(c);
    mitm_ca_free(d);
}

static void test_mitm_ca_open_group_readable_key_refused(void **state)
{
    struct fixture *f = *state;
    mitm_ca_free(open_ca(f->dir));
    assert_int_equal(chmod(f->key, 0640), 0);
    expect_refused(f, f->key, "group or others");
    assert_int_equal(chmod(f->key, 0604), 0);
    expect_refused(f, f->key, "group or others");
    assert_int_equal(chmod(f->key, 0600), 0);
    mitm_ca_free(open_ca(f->dir)); /* fixed: loads again */
}

static void test_mitm_ca_open_mismatched_pair_refused(void **state)
{
    struct fixture *f = *state;
    mitm_ca_free(open_ca(f->dir));
    mitm_ca_free(open_ca(f->dir2));
    char other[160];
    snprintf(other, sizeof(other), "%s/ca.crt", f->dir2);
    copy_file(other, f->crt, 0644);
    expect_refused(f, f->crt, "does not match");
}

static void test_mitm_ca_open_garbage_refused(void **state)
{
    struct fixture *f = *state;
    mitm_ca_free(open_ca(f->dir));
    size_t kl, cl;
    char *key = slurp(f->key, &kl), *crt = slurp(f->crt, &cl);

    spit(f->key, "not a key\n", 10, 0600);
    expect_refused(f, f->key, "not a PEM private key");
    spit(f->key, "", 0, 0600);
    expect_refused(f, f->key, "empty");
    /* a truncated PEM */
    spit(f->key, key, kl / 2, 0600);
    expect_refused(f, f->key, "not a PEM private key");
    /* a key of a type leaves cannot be signed with */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, ed, NULL, NULL, 0, NULL, NULL), 1);
    char *edp = NULL;
    long edl = BIO_get_mem_data(b, &edp);
    spit(f->key, edp, (size_t)edl, 0600);
    BIO_free(b);
    EVP_PKEY_free(ed);
    expect_refused(f, f->key, "must be EC or RSA");
    spit(f->key, key, kl, 0600);

    spit(f->crt, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 60, 0644);
    expect_refused(f, f->crt, "not a PEM certificate");
    /* a key where the certificate should be */
    spit(f->crt, key, kl, 0644);
    expect_refused(f, f->crt, "not a PEM certificate");
    spit(f->crt, crt, cl, 0644);
    mitm_ca_free(open_ca(f->dir));
    free(key);
    free(crt);
}

static void test_mitm_ca_open_half_pair_or_symlink_refused(void **state)
{
    struct fixture *f = *state;
    mitm_ca_free(open_ca(f->dir));
    char moved[160];
    snprintf(moved, sizeof(moved), "%s/moved.crt", f->home);
    assert_int_equal(rename(f->crt, moved), 0);
    struct mitm_ca *ca = NULL;
    char err[512] = "";
    /* a key without a certificate: refused, the key is never replaced */
    assert_int_equal(mitm_ca_open(f->dir, &ca, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, f->crt));
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(access(f->crt, F_OK), -1);
    assert_int_equal(rename(moved, f->crt), 0);

    /* the key as a symlink (to a 0600 file) is refused too */
    char real[160];
    snprintf(real, sizeof(real), "%s/real.key", f->home);
    assert_int_equal(rename(f->key, real), 0);
    assert_int_equal(symlink(real, f->key), 0);
    assert_int_equal(mitm_ca_open(f->dir, &ca, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, f->key));
    assert_non_null(strstr(err, "symbolic link"));
    assert_null(ca);

    /* NULL arguments */
    assert_int_equal(mitm_ca_open(NULL, &ca, err, sizeof(err)), -EINVAL);
    mitm_ca_free(NULL);
}

/* ---- leaves ---- */

static void test_mitm_certs_get_leaf_verifies(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    assert_int_equal(mitm_certs_get(c, "API.Test", &leaf, &key), 0);
    X509 *cax = pem_to_x509(mitm_ca_pem(ca));
    assert_int_equal(verify_leaf(cax, leaf), 1);
    assert_int_equal(X509_check_host(leaf, "api.test", 0, 0, NULL), 1);
    assert_int_not_equal(X509_check_host(leaf, "other.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_private_key(leaf, key), 1);
    assert_true(EVP_PKEY_is_a(key, "EC"));
    assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    assert_non_null(X509_get0_authority_key_id(leaf));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf), X509_get0_subject_key_id(cax)), 0);
    assert_int_equal(X509_check_ca(leaf), 0);
    /* validity: from about an hour ago to seven days from now */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notBefore(leaf)), 1);
    assert_int_equal(days, 0);
    assert_in_range(-secs, 3590, 3610);
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)), 1);
    assert_int_equal(days, 7);
    /* a 128-bit serial */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    assert_int_equal(ASN1_STRING_length(serial), 16);

    /* another host: same key pair, different serial */
    X509 *leaf2 = NULL;
    EVP_PKEY *key2 = NULL;
    assert_int_equal(mitm_certs_get(c, "www.example.com", &leaf2, &key2), 0);
    assert_int_equal(EVP_PKEY_eq(key, key2), 1);
    assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(leaf2)), 0);
    assert_int_equal(X509_check_host(leaf2, "www.example.com", 0, 0, NULL), 1);

    /* a 253-char name (longer than a CN may be) still gets a verifying leaf */
    char longname[254];
    memset(longname, 'a', 253);
    longname[253] = '\0';
    for (int i = 63; i < 253; i += 64)
        longname[i] = '.';
    X509 *leaf3 = NULL;
    EVP_PKEY *key3 = NULL;
    assert_int_equal(mitm_certs_get(c, longname, &leaf3, &key3), 0);
    assert_int_equal(verify_leaf(cax, leaf3), 1);
    assert_int_equal(X509_check_host(leaf3, longname, 0, 0, NULL), 1);

    X509_free(leaf3);
    EVP_PKEY_free(key3);
    X509_free(leaf2);
    EVP_PKEY_free(key2);
    X509_free(cax);
    X509_free(leaf);
    EVP_PKEY_free(key);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

static void test_mitm_certs_get_ip_literal_san(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    assert_int_equal(mitm_certs_get(c, "10.1.2.3", &leaf, &key), 0);
    X509 *cax = pem_to_x509(mitm_ca_pem(ca));
    assert_int_equal(verify_leaf(cax, leaf), 1);
    assert_int_equal(X509_check_ip_asc(leaf, "10.1.2.3", 0), 1);
    assert_int_not_equal(X509_check_ip_asc(leaf, "10.1.2.4", 0), 1);
    assert_int_not_equal(
        X509_check_host(leaf, "10.1.2.3", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL),
        1); /* no DNS SAN */
    X509_free(cax);
    X509_free(leaf);
    EVP_PKEY_free(key);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

static void test_mitm_certs_get_bad_host_refused(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    char too_long[300], long_label[80];
    memset(too_long, 'a', sizeof(too_long));
    for (int i = 50; i < 254; i += 51)
        too_long[i] = '.';
    too_long[254] = '\0'; /* 254 chars */
    memset(long_label, 'b', sizeof(long_label));
    memcpy(long_label + 64, ".com", 5); /* a 64-char label */
    const char *bad[] = {"",         ".",         "a.",        ".a",          "a..b",    "-a.com",
                         "a-.com",   "a.-b",      "a_b.com",   "a b.com",     "a/b",     "a:443",
                         "1.2.3",    "300.1.1.1", "1.2.3.4.5", "\xc3\xa9.fr", "a.com\n", too_long,
                         long_label, "*.wild.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        X509 *x = NULL;
        EVP_PKEY *k = NULL;
        int rc = mitm_certs_get(c, bad[i], &x, &k);
        if (rc != -EINVAL)
            fail_msg("host #%zu \"%.40s\": got %d, want -EINVAL", i, bad[i], rc);
        assert_null(x);
        assert_null(k);
    }
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    assert_int_equal(mitm_certs_get(c, NULL, &x, &k), -EINVAL);
    size_t entries = 99;
    unsigned long minted = 99;
    mitm_certs_stats(c, &entries, &minted);
    assert_int_equal(entries, 0);
    assert_int_equal(minted, 0);
    /* the edge cases that are fine */
    const char *good[] = {"a", "localhost", "x-1.a-b.com", "0.0.0.0", "1.example"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(mitm_certs_get(c, good[i], &x, &k), 0);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    assert_int_equal(mitm_certs_create(ca, 0, &c), -EINVAL);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

static void get_and_drop(struct mitm_certs *c, const char *host)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    assert_int_equal(mitm_certs_get(c, host, &x, &k), 0);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void expect_stats(struct mitm_certs *c, size_t entries, unsigned long minted)
{
    size_t e = 0;
    unsigned long m = 0;
    mitm_certs_stats(c, &e, &m);
    assert_int_equal(e, entries);
    assert_int_equal(m, minted);
}

static void test_mitm_certs_get_lru_evicts_least_recent(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 2, &c), 0);
    get_and_drop(c, "a.test");
    get_and_drop(c, "b.test");
    expect_stats(c, 2, 2);
    get_and_drop(c, "A.TEST"); /* hit, case-insensitive: no mint, a is now most recent */
    expect_stats(c, 2, 2);
    get_and_drop(c, "c.test"); /* evicts b */
    expect_stats(c, 2, 3);
    get_and_drop(c, "a.test"); /* still cached */
    expect_stats(c, 2, 3);
    get_and_drop(c, "c.test");
    expect_stats(c, 2, 3);
    get_and_drop(c, "b.test"); /* was evicted: minted again, evicts a */
    expect_stats(c, 2, 4);
    get_and_drop(c, "a.test");
    expect_stats(c, 2, 5);

    /* a certificate handed out outlives its eviction */
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    assert_int_equal(mitm_certs_get(c, "kept.test", &x, &k), 0);
    get_and_drop(c, "d.test");
    get_and_drop(c, "e.test");
    assert_int_equal(X509_check_host(x, "kept.test", 0, 0, NULL), 1);
    X509_free(x);
    EVP_PKEY_free(k);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

/* Test seam in tls.c (not in tls.h): the clock for leaf validity and refresh. */
void mitm_certs_set_clock(struct mitm_certs *c, time_t (*now)(void));

static time_t fake_now;

static time_t fake_clock(void)
{
    return fake_now;
}

static void test_mitm_certs_get_refreshes_near_expiry(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 4, &c), 0);
    mitm_certs_set_clock(c, fake_clock);
    fake_now = time(NULL);
    X509 *a = NULL, *b = NULL;
    EVP_PKEY *ka = NULL, *kb = NULL;
    assert_int_equal(mitm_certs_get(c, "api.test", &a, &ka), 0);
    expect_stats(c, 1, 1);
    /* 5 days 23 hours later: more than a day left, still served from the cache */
    fake_now += 6 * 86400 - 3600;
    assert_int_equal(mitm_certs_get(c, "api.test", &b, &kb), 0);
    expect_stats(c, 1, 1);
    assert_ptr_equal(a, b);
    X509_free(b);
    EVP_PKEY_free(kb);
    /* one more hour and a second: within a day of expiry, minted again for 7 days */
    fake_now += 3601;
    assert_int_equal(mitm_certs_get(c, "api.test", &b, &kb), 0);
    expect_stats(c, 1, 2);
    assert_ptr_not_equal(a, b);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notAfter(a), X509_get0_notAfter(b)), 1);
    assert_int_equal(days, 6);
    assert_int_equal(X509_cmp_time(X509_get0_notAfter(b), &fake_now), 1);
    assert_int_equal(X509_check_host(b, "api.test", 0, 0, NULL), 1);
    X509_free(b);
    EVP_PKEY_free(kb);
    X509_free(a);
    EVP_PKEY_free(ka);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

struct mint_thread {
    struct mitm_certs *c;
    pthread_barrier_t *start;
    int id;
    int failures;
};

#define MINT_ROUNDS 40

static void get_checked(struct mint_thread *t, const char *host)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    if (mitm_certs_get(t->c, host, &x, &k) != 0 || X509_check_host(x, host, 0, 0, NULL) != 1 ||
        X509_check_private_key(x, k) != 1)
        t->failures++;
    X509_free(x);
    EVP_PKEY_free(k);
}

static void *mint_worker(void *arg)
{
    struct mint_thread *t = arg;
    char host[32];
    for (int round = 0; round < MINT_ROUNDS; round++) {
        /* all four ask for the same new host at the same moment, then each for its own */
        pthread_barrier_wait(t->start);
        snprintf(host, sizeof(host), "same%d.test", round);
        get_checked(t, host);
        snprintf(host, sizeof(host), "t%d-%d.test", t->id, round);
        get_checked(t, host);
        get_checked(t, host); /* a hit */
    }
    return NULL;
}

static void test_mitm_certs_get_concurrent_threads(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 4 * MINT_ROUNDS * 5, &c), 0);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 4), 0);
    pthread_t th[4];
    struct mint_thread t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct mint_thread){.c = c, .start = &start, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, mint_worker, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].failures, 0);
    }
    pthread_barrier_destroy(&start);
    /* each shared host minted once although four threads asked at once, plus one per
     * thread and round */
    expect_stats(c, MINT_ROUNDS * 5, MINT_ROUNDS * 5);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

/* ---- handshakes over a socketpair ---- */

struct client {
    SSL_CTX *ctx;     /* borrowed */
    const char *sni;  /* NULL: send none */
    const char *host; /* SSL_set1_host, NULL: no name check */
    bool alpn;        /* offer http/1.1 */
    int fd;
    int ok;      /* SSL_connect succeeded and "ping" was written */
    long verify; /* SSL_get_verify_result */
    char alpn_got[16];
    SSL_SESSION *resume; /* borrowed: offered for resumption, or NULL */
    SSL_SESSION *saved;  /* the session after the exchange (for the caller to free) */
    int reused;          /* SSL_session_reused */
};

static void *client_main(void *arg)
{
    struct client *cl = arg;
    SSL *ssl = SSL_new(cl->ctx);
    if (!ssl)
        return NULL;
    SSL_set_fd(ssl, cl->fd);
    if (cl->sni)
        SSL_set_tlsext_host_name(ssl, cl->sni);
    if (cl->host)
        SSL_set1_host(ssl, cl->host);
    if (cl->alpn)
        SSL_set_alpn_protos(ssl, (const unsigned char *)"\x08http/1.1", 9);
    if (cl->resume)
        SSL_set_session(ssl, cl->resume);
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, "ping", 4) == 4) {
        cl->ok = 1;
        const unsigned char *p = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(ssl, &p, &len);
        if (p && len < sizeof(cl->alpn_got))
            memcpy(cl->alpn_got, p, len);
        char b[4];
        SSL_read(ssl, b, sizeof(b)); /* wait for the server to finish */
        cl->reused = SSL_session_reused(ssl);
        cl->saved = SSL_get1_session(ssl);
        SSL_shutdown(ssl); /* without it OpenSSL marks the session not resumable */
    }
    cl->verify = SSL_get_verify_result(ssl);
    ERR_clear_error();
    SSL_free(ssl);
    shutdown(cl->fd, SHUT_RDWR);
    return NULL;
}

struct result {
    int client_ok;
    int server_ok;
    long verify;
    char client_alpn[16];
    char server_alpn[16];
    char server_name[260];
    SSL_SESSION *saved; /* the client's session; free it */
    int reused;
};

/* Handshake `server` (taken) against a client thread configured by `cl`. */
static struct result handshake_with(SSL *server, struct client cl)
{
    struct result r;
    memset(&r, 0, sizeof(r));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {.tv_sec = 20};
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(sv[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    cl.fd = sv[1];
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_main, &cl), 0);
    SSL_set_fd(server, sv[0]);
    char buf[8] = "";
    if (SSL_accept(server) == 1 && SSL_read(server, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0) {
        r.server_ok = 1;
        SSL_write(server, "pong", 4);
        const unsigned char *p = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(server, &p, &len);
        if (p && len < sizeof(r.server_alpn))
            memcpy(r.server_alpn, p, len);
        const char *n = mitm_tls_server_name(server);
        if (n)
            snprintf(r.server_name, sizeof(r.server_name), "%s", n);
    }
    ERR_clear_error();
    shutdown(sv[0], SHUT_RDWR);
    assert_int_equal(pthread_join(th, NULL), 0);
    r.client_ok = cl.ok;
    r.verify = cl.verify;
    r.saved = cl.saved;
    r.reused = cl.reused;
    memcpy(r.client_alpn, cl.alpn_got, sizeof(r.client_alpn));
    SSL_free(server);
    close(sv[0]);
    close(sv[1]);
    return r;
}

/* Handshake and drop the client's session. */
static struct result handshake(SSL *server, struct client cl)
{
    struct result r = handshake_with(server, cl);
    SSL_SESSION_free(r.saved);
    r.saved = NULL;
    return r;
}

/* A client context trusting only `ca` (no system store). */
static SSL_CTX *trusting_ctx(struct mitm_ca *ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    X509 *x = pem_to_x509(mitm_ca_pem(ca));
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x), 1);
    X509_free(x);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static SSL *server_for(struct mitm_certs *c, const char *fallback)
{
    SSL *s = NULL;
    assert_int_equal(mitm_tls_server_new(c, fallback, &s), 0);
    assert_non_null(s);
    assert_null(mitm_tls_server_name(s));
    return s;
}

static void test_mitm_tls_server_new_sni_handshake(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    SSL_CTX *ctx = trusting_ctx(ca);

    struct result r =
        handshake(server_for(c, "fallback.test"),
                  (struct client){.ctx = ctx, .sni = "api.test", .host = "api.test", .alpn = true});
    assert_int_equal(r.server_ok, 1);
    assert_int_equal(r.client_ok, 1);
    assert_int_equal(r.verify, X509_V_OK);
    assert_string_equal(r.client_alpn, "http/1.1");
    assert_string_equal(r.server_alpn, "http/1.1");
    assert_string_equal(r.server_name, "api.test"); /* SNI wins over the fallback */

    /* no ALPN offered: still fine, none selected */
    r = handshake(server_for(c, NULL),
                  (struct client){.ctx = ctx, .sni = "API.test", .host = "api.test"});
    assert_int_equal(r.server_ok, 1);
    assert_int_equal(r.client_ok, 1);
    assert_string_equal(r.client_alpn, "");
    assert_string_equal(r.server_alpn, "");
    assert_string_equal(r.server_name, "api.test");
    expect_stats(c, 1, 1); /* the second handshake used the cached leaf */

    /* TLS 1.2 only client works as well */
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    r = handshake(server_for(c, NULL),
                  (struct client){.ctx = ctx, .sni = "api.test", .host = "api.test", .alpn = true});
    assert_int_equal(r.server_ok, 1);
    assert_int_equal(r.client_ok, 1);
    assert_string_equal(r.client_alpn, "http/1.1");

    SSL_CTX_free(ctx);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

static void test_mitm_tls_server_new_fallback_name(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    SSL_CTX *ctx = trusting_ctx(ca);

    /* no SNI, fallback set: the leaf is for the fallback */
    struct result r =
        handshake(server_for(c, "Pool.Example.com"),
                  (struct client){.ctx = ctx, .host = "pool.example.com", .alpn = true});
    assert_int_equal(r.server_ok, 1);
    assert_int_equal(r.client_ok, 1);
    assert_int_equal(r.verify, X509_V_OK);
    assert_string_equal(r.server_name, "pool.example.com");

    /* no SNI, no fallback: both sides fail, nothing minted */
    r = handshake(server_for(c, NULL), (struct client){.ctx = ctx, .alpn = true});
    assert_int_equal(r.server_ok, 0);
    assert_int_equal(r.client_ok, 0);
    expect_stats(c, 1, 1);

    /* an SNI that is not a valid host: refused (the fallback is not used for it) */
    r = handshake(server_for(c, "pool.example.com"),
                  (struct client){.ctx = ctx, .sni = "bad_name.test", .alpn = true});
    assert_int_equal(r.server_ok, 0);
    assert_int_equal(r.client_ok, 0);

    /* a bad fallback name is refused up front */
    SSL *s = NULL;
    assert_int_equal(mitm_tls_server_new(c, "bad name", &s), -EINVAL);
    assert_null(s);

    SSL_CTX_free(ctx);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

static void test_mitm_tls_client_ctx_verifies_upstream(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_ca *other = open_ca(f->dir2);
    struct mitm_certs *c = NULL, *oc = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    assert_int_equal(mitm_certs_create(other, 8, &oc), 0);
    char cafile[160];
    snprintf(cafile, sizeof(cafile), "%s/extra-ca.pem", f->home);
    spit(cafile, mitm_ca_pem(ca), strlen(mitm_ca_pem(ca)), 0644);

    SSL_CTX *ctx = NULL;
    char err[512] = "";
    assert_int_equal(mitm_tls_client_ctx(cafile, &ctx, err, sizeof(err)), 0);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER, SSL_VERIFY_PEER);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);

    /* accepted: a server from the extra CA, for the right name, ALPN from the context */
    struct result r = handshake(server_for(c, NULL),
                                (struct client){.ctx = ctx, .sni = "api.test", .host = "api.test"});
    assert_int_equal(r.client_ok, 1);
    assert_int_equal(r.server_ok, 1);
    assert_int_equal(r.verify, X509_V_OK);
    assert_string_equal(r.client_alpn, "http/1.1");

    /* refused: the certificate is for another name */
    r = handshake(server_for(c, NULL),
                  (struct client){.ctx = ctx, .sni = "other.test", .host = "api.test"});
    assert_int_equal(r.client_ok, 0);
    assert_int_equal(r.server_ok, 0);
    assert_int_equal(r.verify, X509_V_ERR_HOSTNAME_MISMATCH);

    /* refused: an untrusted CA */
    r = handshake(server_for(oc, NULL),
                  (struct client){.ctx = ctx, .sni = "api.test", .host = "api.test"});
    assert_int_equal(r.client_ok, 0);
    assert_int_equal(r.server_ok, 0);
    assert_int_not_equal(r.verify, X509_V_OK);
    SSL_CTX_free(ctx);

    /* without the extra file our CA is not trusted */
    ctx = NULL;
    assert_int_equal(mitm_tls_client_ctx(NULL, &ctx, err, sizeof(err)), 0);
    r = handshake(server_for(c, NULL),
                  (struct client){.ctx = ctx, .sni = "api.test", .host = "api.test"});
    assert_int_equal(r.client_ok, 0);
    assert_int_not_equal(r.verify, X509_V_OK);
    SSL_CTX_free(ctx);

    /* a missing or garbage extra file: -EINVAL naming it */
    ctx = NULL;
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope.pem", f->home);
    assert_int_equal(mitm_tls_client_ctx(missing, &ctx, err, sizeof(err)), -EINVAL);
    assert_null(ctx);
    assert_non_null(strstr(err, missing));
    spit(cafile, "garbage\n", 8, 0644);
    assert_int_equal(mitm_tls_client_ctx(cafile, &ctx, err, sizeof(err)), -EINVAL);
    assert_null(ctx);
    assert_non_null(strstr(err, cafile));

    mitm_certs_free(oc);
    mitm_certs_free(c);
    mitm_ca_free(other);
    mitm_ca_free(ca);
}

static void test_mitm_tls_client_ctx_resumes_saved_session(void **state)
{
    struct fixture *f = *state;
    struct mitm_ca *ca = open_ca(f->dir);
    struct mitm_certs *c = NULL;
    assert_int_equal(mitm_certs_create(ca, 8, &c), 0);
    char cafile[160];
    snprintf(cafile, sizeof(cafile), "%s/extra-ca.pem", f->home);
    spit(cafile, mitm_ca_pem(ca), strlen(mitm_ca_pem(ca)), 0644);
    SSL_CTX *ctx = NULL;
    char err[512] = "";
    assert_int_equal(mitm_tls_client_ctx(cafile, &ctx, err, sizeof(err)), 0);

    /* what tls.h tells the proxy to do: keep the session after the first read, offer it next */
    struct client cl = {.ctx = ctx, .sni = "api.test", .host = "api.test"};
    struct result first = handshake_with(server_for(c, NULL), cl);
    assert_int_equal(first.client_ok, 1);
    assert_int_equal(first.reused, 0);
    assert_non_null(first.saved);
    assert_int_equal(SSL_SESSION_is_resumable(first.saved), 1);
    cl.resume = first.saved;
    struct result second = handshake_with(server_for(c, NULL), cl);
    assert_int_equal(second.client_ok, 1);
    assert_int_equal(second.server_ok, 1);
    assert_int_equal(second.reused, 1);
    assert_int_equal(second.verify, X509_V_OK);
    assert_string_equal(second.server_name, "api.test");
    SSL_SESSION_free(second.saved);
    SSL_SESSION_free(first.saved);
    SSL_CTX_free(ctx);
    mitm_certs_free(c);
    mitm_ca_free(ca);
}

static void test_mitm_ca_open_foreign_owner_refused(void **state)
{
    struct fixture *f = *state;
    if (geteuid() != 0) {
        skip(); /* only root can give a file away */
        return;
    }
    mitm_ca_free(open_ca(f->dir));
    assert_int_equal(chown(f->key, 65534, (gid_t)-1), 0);
    expect_refused(f, f->key, "owned by uid 65534");
    assert_int_equal(chown(f->key, 0, (gid_t)-1), 0);
    mitm_ca_free(open_ca(f->dir));
}

int main(void)
{
    log_init("test", LOG_ERR);
    signal(SIGPIPE, SIG_IGN); /* a side writing after its peer gave up gets EPIPE, not killed */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_creates_private_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_reopen_loads_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_group_readable_key_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_mismatched_pair_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_garbage_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_foreign_owner_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_ca_open_half_pair_or_symlink_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mitm_certs_get_leaf_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_certs_get_ip_literal_san, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_certs_get_bad_host_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_certs_get_lru_evicts_least_recent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mitm_certs_get_refreshes_near_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_certs_get_concurrent_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_tls_server_new_sni_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_tls_server_new_fallback_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mitm_tls_client_ctx_verifies_upstream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mitm_tls_client_ctx_resumes_saved_session, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
