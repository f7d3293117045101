/*
 * TLS for the proxy (mitm/tls.h). Three parts:
 *
 * - The local CA: an EC P-256 key and a self-signed CA certificate in
 *   <dir>/ca.key (0600) and <dir>/ca.crt, created on first use under an
 *   flock on the directory, each file written to a temporary name and
 *   renamed into place. Existing files are checked before use (owner and
 *   mode of the key, parsable PEM, a CA certificate matching the key) and
 *   refused with "<path>: <reason>"; nothing is ever overwritten.
 * - Leaf certificates: one P-256 key pair made at mitm_certs_create() and
 *   shared by every leaf, a certificate per host minted on demand and kept in
 *   an LRU cache keyed by the lower-cased host. One mutex guards the cache;
 *   minting runs outside it, and a host being minted is marked pending so a
 *   second thread asking for it waits instead of minting it twice.
 * - The guest-facing SSL_CTX (one per mitm_certs; its client-hello callback
 *   picks the leaf from SNI or from the fallback name stored on the SSL) and
 *   the upstream client SSL_CTX.
 *
 * Upstream resumption: the client context caches nothing by itself
 * (OpenSSL's client-side cache only stores sessions the caller hands back).
 * The proxy resumes by keeping, per upstream host and port, the SSL_SESSION
 * from SSL_get1_session() after the first read of a connection (TLS 1.3
 * tickets arrive after the handshake) and passing it to SSL_set_session()
 * on the next connection to the same host, before SSL_connect; a session is
 * only worth keeping when SSL_SESSION_is_resumable() says so, which needs
 * SSL_shutdown() before SSL_free() (an SSL freed without it marks its
 * session not resumable).
 */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"

#define HOST_MAX 253
#define CA_FILE_MAX (1u << 20)
#define CA_VALID_DAYS 3650
#define LEAF_VALID_SECS (7L * 86400)
#define LEAF_BACKDATE_SECS 3600L
#define LEAF_REFRESH_SECS 86400L

struct mitm_ca {
    EVP_PKEY *key;
    X509 *cert;
    char *pem;
};

/* ---- errors ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The oldest queued OpenSSL error as text (clears the queue), for messages. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(buf, len, "unknown OpenSSL error");
    } else {
        ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

/* ---- host names ---- */

/*
 * Lower-case and check `in` as a host: an IPv4 literal (written back in
 * canonical form, *is_ip set) or a DNS name of 1-253 chars of [a-z0-9.-]
 * with labels of 1-63 chars that neither start nor end with '-', and a last
 * label that is not all digits. `out` has HOST_MAX + 1 bytes.
 */
static int host_normalize(const char *in, char *out, bool *is_ip)
{
    if (!in)
        return -EINVAL;
    size_t len = strnlen(in, HOST_MAX + 1);
    if (len == 0 || len > HOST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
            return -EINVAL;
        out[i] = ch;
    }
    out[len] = '\0';

    struct in_addr a;
    if (inet_pton(AF_INET, out, &a) == 1) {
        if (!inet_ntop(AF_INET, &a, out, HOST_MAX + 1))
            return -EINVAL;
        *is_ip = true;
        return 0;
    }

    size_t start = 0;
    bool all_digits = true;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && out[i] != '.') {
            if (out[i] < '0' || out[i] > '9')
                all_digits = false;
            continue;
        }
        size_t llen = i - start;
        if (llen == 0 || llen > 63)
            return -EINVAL;
        if (out[start] == '-' || out[i - 1] == '-')
            return -EINVAL;
        if (i == len && all_digits)
            return -EINVAL; /* "1.2.3" or "300.1.1.1": not an address, not a name */
        all_digits = true;
        start = i + 1;
    }
    *is_ip = false;
    return 0;
}

/* ---- certificate building blocks ---- */

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
    if (!ext)
        return -EINVAL;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -ENOMEM;
}

/* A random positive 128-bit serial number. */
static int set_random_serial(X509 *x)
{
    unsigned char raw[16];
    int rc = -EIO;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    raw[0] &= 0x7f;
    raw[0] |= 0x40; /* exactly 16 bytes, never zero */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (!bn)
        return -ENOMEM;
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = 0;
    BN_free(bn);
    return rc;
}

static EVP_PKEY *p256_keygen(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* ---- files ---- */

/*
 * Read a whole PEM file. With `private` the file must be owned by us and
 * have no group/other permission bits. *buf is NUL-terminated.
 */
static int read_pem_file(const char *path, bool private, char **buf, size_t *len, char *err,
                         size_t errlen)
{
    int rc = 0;
    char *data = NULL;
    size_t have = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ELOOP) {
            rc = -EINVAL;
            set_err(err, errlen, "%s: is a symbolic link; refused", path);
        } else {
            set_err(err, errlen, "%s: %s", path, strerror(-rc));
        }
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        set_err(err, errlen, "%s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if (private && st.st_uid != geteuid()) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: owned by uid %u, not by us (uid %u)", path, (unsigned)st.st_uid,
                (unsigned)geteuid());
        goto out;
    }
    if (private && (st.st_mode & 077) != 0) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: group or others have access (mode %04o); chmod 600 it", path,
                (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (st.st_size <= 0 || (uint64_t)st.st_size > CA_FILE_MAX) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: %s", path, st.st_size <= 0 ? "empty" : "too large");
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        rc = -ENOMEM;
        set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    while (have < (size_t)st.st_size) {
        ssize_t n = read(fd, data + have, (size_t)st.st_size - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EINVAL;
            set_err(err, errlen, "%s: %s", path, n < 0 ? strerror(-rc) : "shrank while read");
            goto out;
        }
        have += (size_t)n;
    }
    data[have] = '\0';
    *buf = data;
    *len = have;
    data = NULL;
out:
    if (data) {
        OPENSSL_cleanse(data, (size_t)st.st_size + 1);
        free(data);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Refuse to ask for a passphrase: an encrypted key is an error, never a prompt. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/*
 * Write `data` to dir/name through a temporary file in the same directory
 * (created 0600, then set to `mode`), fsync, rename; never replaces an
 * existing file (the caller holds the directory lock and checked).
 */
static int write_atomic(const char *dir, int dirfd, const char *name, const void *data, size_t len,
                        mode_t mode, char *err, size_t errlen)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    int rc = 0;
    int fd = -1;
    bool made = false;
    int n1 = snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name);
    int n2 = snprintf(final, sizeof(final), "%s/%s", dir, name);
    if (n1 < 0 || (size_t)n1 >= sizeof(tmp) || n2 < 0 || (size_t)n2 >= sizeof(final)) {
        set_err(err, errlen, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 from the start */
    if (fd < 0) {
        rc = -errno;
        set_err(err, errlen, "%s: cannot create a temporary file: %s", dir, strerror(-rc));
        goto out;
    }
    made = true;
    if (fchmod(fd, mode) != 0) {
        rc = -errno;
        set_err(err, errlen, "%s: chmod: %s", tmp, strerror(-rc));
        goto out;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            set_err(err, errlen, "%s: write: %s", tmp, strerror(-rc));
            goto out;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        set_err(err, errlen, "%s: fsync: %s", tmp, strerror(-rc));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        set_err(err, errlen, "%s: close: %s", tmp, strerror(-rc));
        goto out;
    }
    fd = -1;
    if (rename(tmp, final) != 0) {
        rc = -errno;
        set_err(err, errlen, "%s: rename: %s", final, strerror(-rc));
        goto out;
    }
    made = false;
    if (fsync(dirfd) != 0) {
        rc = -errno;
        set_err(err, errlen, "%s: fsync: %s", dir, strerror(-rc));
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (made)
        unlink(tmp);
    return rc;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    size_t len = strnlen(dir, sizeof(path));
    if (len == 0 || len >= sizeof(path)) {
        set_err(err, errlen, "%s: bad directory name", dir);
        return -EINVAL;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        char save = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            int rc = -errno;
            set_err(err, errlen, "%s: mkdir: %s", path, strerror(-rc));
            return rc;
        }
        path[i] = save;
    }
    return 0;
}

/* ---- the CA ---- */

void mitm_ca_free(struct mitm_ca *ca)
{
    if (!ca)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca->pem);
    free(ca);
}

const char *mitm_ca_pem(const struct mitm_ca *ca)
{
    return ca ? ca->pem : NULL;
}

/* A new self-signed CA certificate for `key`. */
static int ca_make_cert(EVP_PKEY *key, X509 **out)
{
    int rc = -ENOMEM;
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    unsigned char id[4];
    char cn[64];
    if (!x)
        goto out;
    if (RAND_bytes(id, sizeof(id)) != 1) {
        rc = -EIO;
        goto out;
    }
    snprintf(cn, sizeof(cn), "Capsem local CA %02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    name = X509_NAME_new();
    if (!name ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Capsem", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) || !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key))
        goto out;
    rc = set_random_serial(x);
    if (rc != 0)
        goto out;
    rc = -ENOMEM;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -LEAF_BACKDATE_SECS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), CA_VALID_DAYS, 0, NULL))
        goto out;
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    if ((rc = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE")) != 0 ||
        (rc = add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign")) != 0 ||
        (rc = add_ext(x, &v3, NID_subject_key_identifier, "hash")) != 0)
        goto out;
    rc = -EINVAL;
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto out;
    *out = x;
    x = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

/* Generate a CA and write it to dir (both files absent; directory locked). */
static int ca_create_files(const char *dir, int dirfd, EVP_PKEY **key_out, X509 **cert_out,
                           char *err, size_t errlen)
{
    int rc = -ENOMEM;
    char why[256];
    EVP_PKEY *key = p256_keygen();
    X509 *cert = NULL;
    BIO *kb = BIO_new(BIO_s_secmem());
    BIO *cb = BIO_new(BIO_s_mem());
    if (!key || !kb || !cb) {
        set_err(err, errlen, "%s: cannot generate the CA key: %s", dir,
                ssl_reason(why, sizeof(why)));
        goto out;
    }
    rc = ca_make_cert(key, &cert);
    if (rc != 0) {
        set_err(err, errlen, "%s: cannot make the CA certificate: %s", dir,
                ssl_reason(why, sizeof(why)));
        goto out;
    }
    rc = -ENOMEM;
    if (!PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(cb, cert)) {
        set_err(err, errlen, "%s: cannot encode the CA: %s", dir, ssl_reason(why, sizeof(why)));
        goto out;
    }
    char *kp = NULL, *cp = NULL;
    long kl = BIO_get_mem_data(kb, &kp);
    long cl = BIO_get_mem_data(cb, &cp);
    if (kl <= 0 || cl <= 0) {
        set_err(err, errlen, "%s: cannot encode the CA", dir);
        goto out;
    }
    /* The key goes first: a crash in between leaves a key without a
     * certificate, which mitm_ca_open refuses with a message, never a
     * certificate nobody holds the key of. */
    rc = write_atomic(dir, dirfd, "ca.key", kp, (size_t)kl, 0600, err, errlen);
    if (rc != 0)
        goto out;
    rc = write_atomic(dir, dirfd, "ca.crt", cp, (size_t)cl, 0644, err, errlen);
    if (rc != 0)
        goto out;
    LOG_INFO("msg=\"created local CA\" dir=%s", dir);
    *key_out = key;
    *cert_out = cert;
    key = NULL;
    cert = NULL;
out:
    BIO_free(kb); /* secure memory: wiped on free */
    BIO_free(cb);
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

/* Load and check existing CA files. */
static int ca_load_files(const char *kpath, const char *cpath, EVP_PKEY **key_out, X509 **cert_out,
                         char *err, size_t errlen)
{
    int rc;
    char why[256];
    char *kbuf = NULL, *cbuf = NULL;
    size_t klen = 0, clen = 0;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *b = NULL;

    rc = read_pem_file(kpath, true, &kbuf, &klen, err, errlen);
    if (rc != 0)
        goto out;
    rc = read_pem_file(cpath, false, &cbuf, &clen, err, errlen);
    if (rc != 0)
        goto out;
    rc = -EINVAL;
    b = BIO_new_mem_buf(kbuf, (int)klen);
    if (!b) {
        rc = -ENOMEM;
        goto out;
    }
    key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    b = NULL;
    if (!key) {
        set_err(err, errlen, "%s: not a PEM private key (or encrypted): %s", kpath,
                ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (!EVP_PKEY_is_a(key, "EC") && !EVP_PKEY_is_a(key, "RSA")) {
        set_err(err, errlen, "%s: a %s key; the CA key must be EC or RSA", kpath,
                EVP_PKEY_get0_type_name(key));
        goto out;
    }
    b = BIO_new_mem_buf(cbuf, (int)clen);
    if (!b) {
        rc = -ENOMEM;
        goto out;
    }
    cert = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (!cert) {
        set_err(err, errlen, "%s: not a PEM certificate: %s", cpath, ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (X509_check_ca(cert) != 1) {
        set_err(err, errlen, "%s: not a CA certificate (basicConstraints CA:TRUE missing)", cpath);
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        set_err(err, errlen, "%s: does not match the key in %s", cpath, kpath);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
        LOG_WARN("msg=\"local CA certificate has expired; remove ca.key and ca.crt to make a new "
                 "one\" path=%s",
                 cpath);
    *key_out = key;
    *cert_out = cert;
    key = NULL;
    cert = NULL;
    rc = 0;
out:
    BIO_free(b);
    if (kbuf) {
        OPENSSL_cleanse(kbuf, klen);
        free(kbuf);
    }
    free(cbuf);
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

/* Whether `path` exists (as anything, a dangling symlink included). */
static int file_exists(const char *path, bool *exists, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        *exists = true;
        return 0;
    }
    if (errno == ENOENT) {
        *exists = false;
        return 0;
    }
    int rc = -errno;
    set_err(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}

int mitm_ca_open(const char *dir, struct mitm_ca **out, char *err, size_t errlen)
{
    int rc;
    int dirfd = -1;
    char kpath[PATH_MAX], cpath[PATH_MAX];
    struct mitm_ca *ca = NULL;
    BIO *pb = NULL;

    if (!dir || !out) {
        set_err(err, errlen, "no CA directory given");
        return -EINVAL;
    }
    int n1 = snprintf(kpath, sizeof(kpath), "%s/ca.key", dir);
    int n2 = snprintf(cpath, sizeof(cpath), "%s/ca.crt", dir);
    if (n1 < 0 || (size_t)n1 >= sizeof(kpath) || n2 < 0 || (size_t)n2 >= sizeof(cpath)) {
        set_err(err, errlen, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    rc = make_dirs(dir, err, errlen);
    if (rc != 0)
        goto out;
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = -errno;
        set_err(err, errlen, "%s: %s", dir, strerror(-rc));
        goto out;
    }
    /* Two processes starting at once must not both create a CA. */
    while (flock(dirfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rc = -errno;
            set_err(err, errlen, "%s: flock: %s", dir, strerror(-rc));
            goto out;
        }
    }
    ca = calloc(1, sizeof(*ca));
    if (!ca) {
        rc = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto out;
    }
    bool have_key = false, have_cert = false;
    if ((rc = file_exists(kpath, &have_key, err, errlen)) != 0 ||
        (rc = file_exists(cpath, &have_cert, err, errlen)) != 0)
        goto out;
    if (!have_key && !have_cert) {
        rc = ca_create_files(dir, dirfd, &ca->key, &ca->cert, err, errlen);
    } else if (!have_cert) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: missing while %s exists; remove both to make a new CA", cpath,
                kpath);
    } else if (!have_key) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: missing while %s exists; remove both to make a new CA", kpath,
                cpath);
    } else {
        rc = ca_load_files(kpath, cpath, &ca->key, &ca->cert, err, errlen);
    }
    if (rc != 0)
        goto out;

    pb = BIO_new(BIO_s_mem());
    char *pp = NULL;
    long pl;
    if (!pb || !PEM_write_bio_X509(pb, ca->cert) || (pl = BIO_get_mem_data(pb, &pp)) <= 0) {
        rc = -ENOMEM;
        set_err(err, errlen, "%s: cannot encode the CA certificate", cpath);
        goto out;
    }
    ca->pem = malloc((size_t)pl + 1);
    if (!ca->pem) {
        rc = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto out;
    }
    memcpy(ca->pem, pp, (size_t)pl);
    ca->pem[pl] = '\0';
    *out = ca;
    ca = NULL;
out:
    ERR_clear_error();
    BIO_free(pb);
    if (dirfd >= 0)
        close(dirfd); /* releases the flock */
    mitm_ca_free(ca);
    return rc;
}

/* ---- leaf cache ---- */

struct leaf {
    char host[HOST_MAX + 1];
    X509 *cert;               /* NULL while pending */
    time_t not_after;         /* when cert stops being valid */
    bool pending;             /* one thread is minting it; others wait on `cond` */
    struct leaf *hnext;       /* hash chain */
    struct leaf *prev, *next; /* LRU list (ready leaves only), most recent first */
};

struct mitm_certs {
    struct mitm_ca *ca; /* borrowed */
    EVP_PKEY *leaf_key; /* shared by every leaf */
    SSL_CTX *ctx;       /* guest-facing server context */
    size_t capacity;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* a pending leaf finished (or failed) */
    struct leaf **buckets;
    size_t nbuckets; /* power of two */
    struct leaf lru; /* sentinel: lru.next is the most recent */
    size_t ready;    /* leaves in the LRU list */
    unsigned long minted;
    time_t (*clock)(void); /* set before use by mitm_certs_set_clock only */
};

static time_t real_clock(void)
{
    return time(NULL);
}

/*
 * Test seam, not part of tls.h: replace the clock that decides leaf validity
 * and refresh (NULL restores the real one). Call before any other use of c.
 */
void mitm_certs_set_clock(struct mitm_certs *c, time_t (*now)(void));

void mitm_certs_set_clock(struct mitm_certs *c, time_t (*now)(void))
{
    if (c)
        c->clock = now ? now : real_clock;
}

static size_t host_hash(const char *h)
{
    uint64_t x = 1469598103934665603ull;
    for (; *h; h++) {
        x ^= (unsigned char)*h;
        x *= 1099511628211ull;
    }
    return (size_t)x;
}

static struct leaf **bucket_of(struct mitm_certs *c, const char *host)
{
    return &c->buckets[host_hash(host) & (c->nbuckets - 1)];
}

static struct leaf *leaf_find(struct mitm_certs *c, const char *host)
{
    for (struct leaf *l = *bucket_of(c, host); l; l = l->hnext)
        if (strcmp(l->host, host) == 0)
            return l;
    return NULL;
}

static void leaf_unhash(struct mitm_certs *c, struct leaf *l)
{
    for (struct leaf **pp = bucket_of(c, l->host); *pp; pp = &(*pp)->hnext) {
        if (*pp == l) {
            *pp = l->hnext;
            return;
        }
    }
}

static void lru_unlink(struct mitm_certs *c, struct leaf *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
    c->ready--;
}

static void lru_push_front(struct mitm_certs *c, struct leaf *l)
{
    l->next = c->lru.next;
    l->prev = &c->lru;
    c->lru.next->prev = l;
    c->lru.next = l;
    c->ready++;
}

/* Mint a leaf for a normalized host. Touches no cache state. */
static int leaf_mint(struct mitm_certs *c, const char *host, bool is_ip, time_t now, X509 **out)
{
    int rc = -ENOMEM;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    char san[HOST_MAX + 8];
    if (!x || !name)
        goto out;
    /* CN holds at most 64 chars; the SAN is what clients check anyway. */
    if (strlen(host) <= 64) {
        if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1,
                                        -1, 0))
            goto out;
    } else if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Capsem",
                                           -1, -1, 0)) {
        goto out;
    }
    if (!X509_set_version(x, X509_VERSION_3) || !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, X509_get_subject_name(c->ca->cert)) ||
        !X509_set_pubkey(x, c->leaf_key))
        goto out;
    rc = set_random_serial(x);
    if (rc != 0)
        goto out;
    rc = -ENOMEM;
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -LEAF_BACKDATE_SECS, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, LEAF_VALID_SECS, &now))
        goto out;
    snprintf(san, sizeof(san), "%s:%s", is_ip ? "IP" : "DNS", host);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, c->ca->cert, x, NULL, NULL, 0);
    if ((rc = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
        (rc = add_ext(x, &v3, NID_key_usage, "critical,digitalSignature")) != 0 ||
        (rc = add_ext(x, &v3, NID_ext_key_usage, "serverAuth")) != 0 ||
        (rc = add_ext(x, &v3, NID_subject_alt_name, san)) != 0 ||
        (rc = add_ext(x, &v3, NID_subject_key_identifier, "hash")) != 0 ||
        (rc = add_ext(x, &v3, NID_authority_key_identifier, "keyid")) != 0)
        goto out;
    rc = -EINVAL;
    if (X509_sign(x, c->ca->key, EVP_sha256()) <= 0)
        goto out;
    *out = x;
    x = NULL;
    rc = 0;
out:
    if (rc != 0) {
        char why[256];
        LOG_ERR("msg=\"cannot mint leaf\" host=%s rc=%d reason=\"%s\"", host, rc,
                ssl_reason(why, sizeof(why)));
    }
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

static bool leaf_fresh(const struct leaf *l, time_t now)
{
    return l->not_after - now > LEAF_REFRESH_SECS;
}

int mitm_certs_get(struct mitm_certs *c, const char *host, X509 **cert, EVP_PKEY **key)
{
    char h[HOST_MAX + 1];
    bool is_ip = false;
    if (!c || !cert || !key)
        return -EINVAL;
    int rc = host_normalize(host, h, &is_ip);
    if (rc != 0)
        return rc;

    struct leaf *l;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        l = leaf_find(c, h);
        if (l && l->pending) {
            pthread_cond_wait(&c->cond, &c->lock);
            continue;
        }
        if (l && leaf_fresh(l, c->clock())) {
            lru_unlink(c, l);
            lru_push_front(c, l);
            X509_up_ref(l->cert);
            EVP_PKEY_up_ref(c->leaf_key);
            *cert = l->cert;
            *key = c->leaf_key;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        break;
    }
    if (l) { /* near expiry: mint again in place */
        lru_unlink(c, l);
        X509_free(l->cert);
        l->cert = NULL;
    } else {
        l = calloc(1, sizeof(*l));
        if (!l) {
            pthread_mutex_unlock(&c->lock);
            return -ENOMEM;
        }
        memcpy(l->host, h, sizeof(h));
        struct leaf **b = bucket_of(c, h);
        l->hnext = *b;
        *b = l;
    }
    l->pending = true;
    pthread_mutex_unlock(&c->lock);

    X509 *x = NULL;
    time_t minted_at = c->clock();
    rc = leaf_mint(c, h, is_ip, minted_at, &x);

    pthread_mutex_lock(&c->lock);
    if (rc != 0) {
        leaf_unhash(c, l);
        free(l);
    } else {
        l->cert = x;
        l->not_after = minted_at + LEAF_VALID_SECS;
        l->pending = false;
        lru_push_front(c, l);
        c->minted++;
        while (c->ready > c->capacity) {
            struct leaf *old = c->lru.prev;
            lru_unlink(c, old);
            leaf_unhash(c, old);
            X509_free(old->cert);
            free(old);
        }
        X509_up_ref(x);
        EVP_PKEY_up_ref(c->leaf_key);
        *cert = x;
        *key = c->leaf_key;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void mitm_certs_stats(struct mitm_certs *c, size_t *entries, unsigned long *minted)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (entries)
        *entries = c->ready;
    if (minted)
        *minted = c->minted;
    pthread_mutex_unlock(&c->lock);
}

/* ---- guest-facing server side ---- */

/* Per-SSL state, in ex_data; freed with the SSL. */
struct server_names {
    char fallback[HOST_MAX + 1]; /* "" when none */
    char chosen[HOST_MAX + 1];   /* "" until the client hello picked a leaf */
};

static int names_idx = -1;
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void names_idx_init(void)
{
    names_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, names_free);
}

/*
 * The host_name entry of a ClientHello server_name extension, copied into
 * `out` (HOST_MAX + 1 bytes). 1 found, 0 absent, -EINVAL malformed.
 */
static int hello_sni(SSL *ssl, char *out)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len))
        return 0;
    if (len < 2)
        return -EINVAL;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list != len - 2)
        return -EINVAL;
    p += 2;
    len -= 2;
    while (len >= 3) {
        unsigned type = p[0];
        size_t nlen = ((size_t)p[1] << 8) | p[2];
        if (nlen > len - 3)
            return -EINVAL;
        if (type == TLSEXT_NAMETYPE_host_name) {
            if (nlen == 0 || nlen > HOST_MAX || memchr(p + 3, '\0', nlen))
                return -EINVAL;
            memcpy(out, p + 3, nlen);
            out[nlen] = '\0';
            return 1;
        }
        p += 3 + nlen;
        len -= 3 + nlen;
    }
    return len == 0 ? 0 : -EINVAL;
}

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    struct mitm_certs *c = arg;
    struct server_names *names = SSL_get_ex_data(ssl, names_idx);
    char sni[HOST_MAX + 1];
    const char *want = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    int ret = SSL_CLIENT_HELLO_ERROR;

    *al = SSL_AD_UNRECOGNIZED_NAME;
    if (!names) {
        *al = SSL_AD_INTERNAL_ERROR;
        goto out;
    }
    int found = hello_sni(ssl, sni);
    if (found < 0) {
        *al = SSL_AD_DECODE_ERROR;
        LOG_WARN("msg=\"malformed SNI from guest\"");
        goto out;
    }
    if (found > 0)
        want = sni;
    else if (names->fallback[0])
        want = names->fallback;
    if (!want) {
        LOG_WARN("msg=\"guest TLS without SNI and no fallback name; refused\"");
        goto out;
    }
    int rc = mitm_certs_get(c, want, &cert, &key);
    if (rc != 0) {
        char esc[96];
        LOG_WARN("msg=\"no leaf for guest SNI\" name=\"%s\" rc=%d",
                 log_escape(esc, sizeof(esc), want, strlen(want)), rc);
        *al = rc == -EINVAL ? SSL_AD_UNRECOGNIZED_NAME : SSL_AD_INTERNAL_ERROR;
        goto out;
    }
    if (SSL_use_certificate(ssl, cert) != 1 || SSL_use_PrivateKey(ssl, key) != 1) {
        ERR_clear_error();
        *al = SSL_AD_INTERNAL_ERROR;
        goto out;
    }
    bool dummy;
    if (host_normalize(want, names->chosen, &dummy) != 0)
        names->chosen[0] = '\0';
    ret = SSL_CLIENT_HELLO_SUCCESS;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    return ret;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN; we only speak HTTP/1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int server_ctx_new(struct mitm_certs *c, SSL_CTX **out)
{
    static const unsigned char sid_ctx[] = "capsem-mitm";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return -ENOMEM;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1)) {
        SSL_CTX_free(ctx);
        return -ENOMEM;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, c);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    *out = ctx;
    return 0;
}

int mitm_certs_create(struct mitm_ca *ca, size_t capacity, struct mitm_certs **out)
{
    int rc = -ENOMEM;
    if (!ca || !out || capacity == 0)
        return -EINVAL;
    pthread_once(&names_once, names_idx_init);
    if (names_idx < 0)
        return -ENOMEM;
    struct mitm_certs *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->ca = ca;
    c->capacity = capacity;
    c->clock = real_clock;
    c->lru.next = c->lru.prev = &c->lru;
    size_t nb = 16;
    while (nb < capacity && nb < (1u << 16))
        nb <<= 1;
    c->nbuckets = nb;
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->leaf_key = p256_keygen();
    if (!c->leaf_key)
        goto out;
    rc = server_ctx_new(c, &c->ctx);
    if (rc != 0)
        goto out;
    *out = c;
    c = NULL;
out:
    ERR_clear_error();
    mitm_certs_free(c);
    return rc;
}

void mitm_certs_free(struct mitm_certs *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct leaf *l = c->buckets[i];
        while (l) {
            struct leaf *next = l->hnext;
            X509_free(l->cert);
            free(l);
            l = next;
        }
    }
    free(c->buckets);
    EVP_PKEY_free(c->leaf_key);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int mitm_tls_server_new(struct mitm_certs *c, const char *fallback_name, SSL **out)
{
    int rc = -ENOMEM;
    SSL *ssl = NULL;
    if (!c || !out)
        return -EINVAL;
    struct server_names *names = calloc(1, sizeof(*names));
    if (!names)
        return -ENOMEM;
    if (fallback_name) {
        bool dummy;
        if (host_normalize(fallback_name, names->fallback, &dummy) != 0) {
            rc = -EINVAL;
            goto out;
        }
    }
    ssl = SSL_new(c->ctx);
    if (!ssl)
        goto out;
    if (!SSL_set_ex_data(ssl, names_idx, names))
        goto out;
    names = NULL; /* owned by the SSL now */
    *out = ssl;
    ssl = NULL;
    rc = 0;
out:
    ERR_clear_error();
    free(names);
    SSL_free(ssl);
    return rc;
}

const char *mitm_tls_server_name(SSL *ssl)
{
    if (!ssl || names_idx < 0)
        return NULL;
    struct server_names *names = SSL_get_ex_data(ssl, names_idx);
    return names && names->chosen[0] ? names->chosen : NULL;
}

/* ---- upstream client side ---- */

int mitm_tls_client_ctx(const char *extra_ca_file, SSL_CTX **out, char *err, size_t errlen)
{
    static const unsigned char http11[] = "\x08http/1.1";
    char why[256];
    int rc = -ENOMEM;
    if (!out) {
        set_err(err, errlen, "no output");
        return -EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        set_err(err, errlen, "SSL_CTX_new: %s", ssl_reason(why, sizeof(why)));
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        set_err(err, errlen, "cannot set TLS 1.2 minimum: %s", ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        /* No system store is not fatal for tests with an extra CA; log it. */
        LOG_WARN("msg=\"cannot load the system trust store\" reason=\"%s\"",
                 ssl_reason(why, sizeof(why)));
    }
    if (extra_ca_file && SSL_CTX_load_verify_file(ctx, extra_ca_file) != 1) {
        rc = -EINVAL;
        set_err(err, errlen, "%s: cannot load as a CA file: %s", extra_ca_file,
                ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_set_alpn_protos(ctx, http11, sizeof(http11) - 1) != 0) { /* 0 is success */
        set_err(err, errlen, "cannot set ALPN: %s", ssl_reason(why, sizeof(why)));
        goto out;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}
