/*
 * ca.c - the certificate authority behind Istio's CreateCertificate: signs
 * workload CSRs with a cluster's intermediate CA (Istio's cacerts) or a
 * generated self-signed root, with OpenSSL.
 *
 * The leaf is built as istiod builds it (/work/notes/ca_spec.md): empty
 * subject, one critical URI SAN with the caller's SPIFFE identity (the
 * CSR's own subject and SANs are ignored), a random 128-bit serial,
 * NotBefore two minutes back for clock skew, NotAfter never past the CA's,
 * digitalSignature+keyEncipherment, serverAuth+clientAuth, CA:FALSE. Only
 * the CSR's public key is used, after its signature is checked.
 *
 * Everything a sign needs is parsed at load, so a CA is read-only and
 * signs from any thread. Each public function clears OpenSSL's per-thread
 * error queue on the way out, so no stale error reaches other code.
 */
#include "xds.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CA_DEFAULT_TTL_S (24 * 3600)
#define CA_CLOCK_SKEW_S 120     /* istiod's ClockSkewGracePeriod */
#define CA_MAX_PEM (1u << 20)   /* a cacerts file is kilobytes */
#define CA_MAX_CSR (64u * 1024) /* an RSA 8192 CSR is under 3 KiB */
#define CA_MIN_RSA_BITS 2048
#define CA_MAX_RSA_BITS 8192 /* bounds the cost of checking a CSR */
#define CA_MAX_NAME 253

struct xds_ca {
    X509 *cert; /* signs */
    EVP_PKEY *key;
    const EVP_MD *md;
    time_t not_after; /* cert's; leaves never outlive it */
    char **chain;     /* cert-chain.pem, one PEM certificate each */
    size_t nchain;
    char *root; /* root-cert.pem as given */
    int64_t default_ttl_s, max_ttl_s;
};

const char *xds_ca_strerror(int code)
{
    switch (code) {
    case XDS_CA_OK:
        return "ok";
    case XDS_CA_ERR_IO:
        return "cacerts file unreadable";
    case XDS_CA_ERR_CACERTS:
        return "invalid cacerts";
    case XDS_CA_ERR_KEY_MISMATCH:
        return "CA key does not match CA certificate";
    case XDS_CA_ERR_NOT_CA:
        return "CA certificate may not sign certificates";
    case XDS_CA_ERR_CSR:
        return "invalid CSR";
    case XDS_CA_ERR_KEY_TYPE:
        return "unsupported CSR key";
    case XDS_CA_ERR_TTL:
        return "requested TTL above the maximum";
    case XDS_CA_ERR_IDENTITY:
        return "invalid identity";
    case XDS_CA_ERR_EXPIRED:
        return "CA certificate expired";
    case XDS_CA_ERR_INTERNAL:
        return "internal CA error";
    }
    return "unknown CA error";
}

/* Fills err with the message, then OpenSSL's most recent reason if it has
 * one; empties OpenSSL's error queue; returns code. */
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        unsigned long e = ERR_peek_last_error();
        size_t used = strlen(err);
        if (e && used + 3 < errlen) {
            const char *why = ERR_reason_error_string(e);
            snprintf(err + used, errlen - used, ": %s", why ? why : "openssl error");
        }
    }
    ERR_clear_error();
    return code;
}

/* All certificates of a PEM text, in order; NULL if one does not parse.
 * Zero certificates is not an error here. */
static STACK_OF(X509) * pem_certs(const char *pem)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!sk || !b)
        goto bad;
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!x)
            break;
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto bad;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
        goto bad;
    ERR_clear_error();
    BIO_free(b);
    return sk;
bad:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

/* What a memory BIO holds, as a malloc'ed string; frees b. NULL when the
 * write into it failed (ok false) or out of memory. */
static char *bio_text(BIO *b, bool ok)
{
    char *out = NULL, *p;
    long n = b && ok ? BIO_get_mem_data(b, &p) : -1;
    if (n >= 0 && (out = malloc((size_t)n + 1))) {
        memcpy(out, p, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    return bio_text(b, b && PEM_write_bio_X509(b, x));
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

/* The digest istiod (Go) signs with for this CA key; NULL: unsupported. */
static const EVP_MD *sign_md(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "RSA"))
        return EVP_sha256();
    if (!EVP_PKEY_is_a(k, "EC"))
        return NULL;
    int bits = EVP_PKEY_get_bits(k);
    return bits > 384 ? EVP_sha512() : bits > 256 ? EVP_sha384() : EVP_sha256();
}

void xds_ca_free(xds_ca_t *ca)
{
    if (!ca)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    for (size_t i = 0; i < ca->nchain; i++)
        free(ca->chain[i]);
    free(ca->chain);
    free(ca->root);
    free(ca);
}

static int set_opts(xds_ca_t *ca, const xds_ca_opts_t *o, char *err, size_t errlen)
{
    ca->default_ttl_s = o && o->default_ttl_s > 0 ? o->default_ttl_s : CA_DEFAULT_TTL_S;
    ca->max_ttl_s = o && o->max_ttl_s > 0 ? o->max_ttl_s : CA_DEFAULT_TTL_S;
    if (ca->default_ttl_s > ca->max_ttl_s)
        return fail(err, errlen, XDS_CA_ERR_TTL, "default TTL %llds above maximum %llds",
                    (long long)ca->default_ttl_s, (long long)ca->max_ttl_s);
    return 0;
}

/* Does ca-cert lead to a root: verified through the chain, and either a
 * root itself or the chain's first certificate (else the chain handed to
 * workloads would miss it)? */
static int check_chain(X509 *cert, STACK_OF(X509) * chain, STACK_OF(X509) * roots, char *err,
                       size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = 0;
    if (!st || !ctx) {
        rc = fail(err, errlen, XDS_CA_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (int i = 0; i < sk_X509_num(roots); i++)
        if (!X509_STORE_add_cert(st, sk_X509_value(roots, i))) {
            rc = fail(err, errlen, XDS_CA_ERR_CACERTS, "root-cert.pem");
            goto out;
        }
    if (!X509_STORE_CTX_init(ctx, st, cert, chain)) {
        rc = fail(err, errlen, XDS_CA_ERR_INTERNAL, "verify context");
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        int v = X509_STORE_CTX_get_error(ctx);
        rc = fail(err, errlen,
                  v == X509_V_ERR_CERT_HAS_EXPIRED ? XDS_CA_ERR_EXPIRED : XDS_CA_ERR_CACERTS,
                  "ca-cert.pem does not verify against root-cert.pem through cert-chain.pem: %s",
                  X509_verify_cert_error_string(v));
        goto out;
    }
    bool is_root = false;
    for (int i = 0; i < sk_X509_num(roots); i++)
        is_root = is_root || X509_cmp(cert, sk_X509_value(roots, i)) == 0;
    if (!is_root && (sk_X509_num(chain) == 0 || X509_cmp(cert, sk_X509_value(chain, 0)) != 0))
        rc = fail(err, errlen, XDS_CA_ERR_CACERTS,
                  "cert-chain.pem must start with ca-cert.pem (then its issuers)");
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return rc;
}

/* Takes cert, key and chain (freed on failure too) into a new CA. */
static int ca_make(X509 *cert, EVP_PKEY *key, STACK_OF(X509) * chain, const char *root,
                   const xds_ca_opts_t *opts, xds_ca_t **out, char *err, size_t errlen)
{
    int rc;
    xds_ca_t *ca = calloc(1, sizeof(*ca));
    if (!ca) {
        X509_free(cert);
        EVP_PKEY_free(key);
        sk_X509_pop_free(chain, X509_free);
        return fail(err, errlen, XDS_CA_ERR_INTERNAL, "out of memory");
    }
    ca->cert = cert;
    ca->key = key;
    if ((rc = set_opts(ca, opts, err, errlen)) < 0)
        goto bad;
    ca->md = sign_md(key);
    if (!ca->md) {
        rc = fail(err, errlen, XDS_CA_ERR_CACERTS, "ca-key.pem: only RSA and EC keys can sign");
        goto bad;
    }
    ca->not_after = asn1_time(X509_get0_notAfter(cert));
    size_t n = (size_t)sk_X509_num(chain);
    ca->chain = calloc(n ? n : 1, sizeof(char *));
    ca->root = strdup(root);
    if (!ca->chain || !ca->root) {
        rc = fail(err, errlen, XDS_CA_ERR_INTERNAL, "out of memory");
        goto bad;
    }
    for (; ca->nchain < n; ca->nchain++) {
        ca->chain[ca->nchain] = cert_pem(sk_X509_value(chain, (int)ca->nchain));
        if (!ca->chain[ca->nchain]) {
            rc = fail(err, errlen, XDS_CA_ERR_INTERNAL, "out of memory");
            goto bad;
        }
    }
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    *out = ca;
    return 0;
bad:
    sk_X509_pop_free(chain, X509_free);
    xds_ca_free(ca);
    return rc;
}

int xds_ca_new(const char *ca_cert, const char *ca_key, const char *cert_chain,
               const char *root_cert, const xds_ca_opts_t *opts, xds_ca_t **out, char *err,
               size_t errlen)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL, *roots = NULL, *certs = NULL;
    int rc;
    *out = NULL;
    ERR_clear_error();
    if (!(certs = pem_certs(ca_cert)) || sk_X509_num(certs) == 0) {
        rc = fail(err, errlen, XDS_CA_ERR_CACERTS, "ca-cert.pem: no PEM certificate");
        goto out;
    }
    cert = sk_X509_shift(certs);
    BIO *b = BIO_new_mem_buf(ca_key, -1);
    key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!key) {
        rc = fail(err, errlen, XDS_CA_ERR_CACERTS, "ca-key.pem: no PEM private key");
        goto out;
    }
    if (!(chain = pem_certs(cert_chain))) {
        rc = fail(err, errlen, XDS_CA_ERR_CACERTS, "cert-chain.pem does not parse");
        goto out;
    }
    if (!(roots = pem_certs(root_cert)) || sk_X509_num(roots) == 0) {
        rc = fail(err, errlen, XDS_CA_ERR_CACERTS, "root-cert.pem: no PEM certificate");
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        rc = fail(err, errlen, XDS_CA_ERR_KEY_MISMATCH,
                  "ca-key.pem is not the private key of ca-cert.pem");
        goto out;
    }
    if (!(X509_get_extension_flags(cert) & EXFLAG_CA) ||
        !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN)) {
        rc = fail(err, errlen, XDS_CA_ERR_NOT_CA,
                  "ca-cert.pem is not a CA certificate (basicConstraints CA:TRUE, keyCertSign)");
        goto out;
    }
    if ((rc = check_chain(cert, chain, roots, err, errlen)) < 0)
        goto out;
    rc = ca_make(cert, key, chain, root_cert, opts, out, err, errlen);
    cert = NULL;
    key = NULL;
    chain = NULL;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return rc;
}

static char *read_pem(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, errlen, XDS_CA_ERR_IO, "%s: cannot open", path);
        return NULL;
    }
    char *buf = malloc(CA_MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, CA_MAX_PEM + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > CA_MAX_PEM;
    fclose(f);
    if (bad) {
        free(buf);
        fail(err, errlen, XDS_CA_ERR_IO, "%s: cannot read (or above %u bytes)", path, CA_MAX_PEM);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int xds_ca_new_tls(const char *tls_crt, const char *tls_key, const char *ca_crt,
                   const xds_ca_opts_t *opts, xds_ca_t **out, char *err, size_t errlen)
{
    /* istiod's reading of the layout: tls.crt signs, its chain is tls.crt
     * then ca.crt, ca.crt is the root */
    size_t a = strlen(tls_crt), b = strlen(ca_crt);
    char *chain = malloc(a + b + 2);
    if (!chain) {
        *out = NULL;
        return fail(err, errlen, XDS_CA_ERR_INTERNAL, "out of memory");
    }
    memcpy(chain, tls_crt, a);
    chain[a] = '\n';
    memcpy(chain + a + 1, ca_crt, b + 1);
    int rc = xds_ca_new(tls_crt, tls_key, chain, ca_crt, opts, out, err, errlen);
    free(chain);
    return rc;
}

int xds_ca_load_dir(const char *dir, const xds_ca_opts_t *opts, xds_ca_t **out, char *err,
                    size_t errlen)
{
    static const char *const istio[4] = {"ca-cert.pem", "ca-key.pem", "cert-chain.pem",
                                         "root-cert.pem"};
    static const char *const tls[3] = {"tls.crt", "tls.key", "ca.crt"};
    char path[4096];
    snprintf(path, sizeof(path), "%s/tls.crt", dir);
    bool is_tls = access(path, F_OK) == 0; /* istiod looks for tls.crt first */
    const char *const *names = is_tls ? tls : istio;
    int n = is_tls ? 3 : 4;
    char *pem[4] = {0};
    int rc = 0;
    *out = NULL;
    for (int i = 0; i < n && rc == 0; i++)
        if (!(pem[i] = read_pem(dir, names[i], err, errlen)))
            rc = XDS_CA_ERR_IO;
    if (rc == 0)
        rc = is_tls ? xds_ca_new_tls(pem[0], pem[1], pem[2], opts, out, err, errlen)
                    : xds_ca_new(pem[0], pem[1], pem[2], pem[3], opts, out, err, errlen);
    for (int i = 0; i < 4; i++) {
        if (pem[i])
            memset(pem[i], 0, strlen(pem[i])); /* one is a key */
        free(pem[i]);
    }
    return rc;
}

const char *xds_ca_root_pem(const xds_ca_t *ca)
{
    return ca->root;
}

/* A DNS-1123 name as Kubernetes namespaces and service accounts use (and
 * trust domains, which may also hold '_'): nothing that could change the
 * shape of the URI. */
static bool valid_name(const char *s, bool underscore)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CA_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              (underscore && c == '_')))
            return false;
    }
    return true;
}

/* RSA 2048..8192 or EC P-256: what ztunnel and istio-proxy generate. */
static int check_key(EVP_PKEY *k, char *err, size_t errlen)
{
    int bits = EVP_PKEY_get_bits(k);
    if (EVP_PKEY_is_a(k, "RSA")) {
        if (bits < CA_MIN_RSA_BITS || bits > CA_MAX_RSA_BITS)
            return fail(err, errlen, XDS_CA_ERR_KEY_TYPE, "RSA key of %d bits (%d to %d accepted)",
                        bits, CA_MIN_RSA_BITS, CA_MAX_RSA_BITS);
        return 0;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[64];
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL) &&
            strcmp(group, "prime256v1") == 0)
            return 0;
        return fail(err, errlen, XDS_CA_ERR_KEY_TYPE, "EC key not on P-256");
    }
    return fail(err, errlen, XDS_CA_ERR_KEY_TYPE, "%s key (RSA or EC P-256 accepted)",
                EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "unknown");
}

/* The CSR's public key once the CSR parses, its key is acceptable and its
 * signature verifies; NULL with err otherwise. */
static EVP_PKEY *csr_key(const char *csr, size_t len, int *rc, char *err, size_t errlen)
{
    if (len == 0 || len > CA_MAX_CSR) {
        *rc = fail(err, errlen, XDS_CA_ERR_CSR, "CSR of %zu bytes (1 to %u accepted)", len,
                   CA_MAX_CSR);
        return NULL;
    }
    BIO *b = BIO_new_mem_buf(csr, (int)len);
    X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!req) {
        *rc = fail(err, errlen, XDS_CA_ERR_CSR, "no PEM certificate request");
        return NULL;
    }
    /* the key is checked first: verifying with an oversized key is the costly part */
    EVP_PKEY *k = X509_REQ_get_pubkey(req);
    if (!k)
        *rc = fail(err, errlen, XDS_CA_ERR_CSR, "CSR public key does not parse");
    else if ((*rc = check_key(k, err, errlen)) == 0 && X509_REQ_verify(req, k) != 1)
        *rc = fail(err, errlen, XDS_CA_ERR_CSR, "CSR signature does not verify");
    X509_REQ_free(req);
    if (*rc < 0) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

static bool push_name(GENERAL_NAMES *gens, int type, const char *v)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (!g || !s || !ASN1_STRING_set(s, v, -1)) {
        GENERAL_NAME_free(g);
        ASN1_IA5STRING_free(s);
        return false;
    }
    GENERAL_NAME_set0_value(g, type, s);
    if (sk_GENERAL_NAME_push(gens, g) <= 0) {
        GENERAL_NAME_free(g);
        return false;
    }
    return true;
}

/* The subjectAltName: the URI uri, or the DNS names dns[0..ndns). */
static bool add_sans(X509 *x, const char *uri, const char *const *dns, size_t ndns)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    bool ok = gens != NULL;
    if (ok && uri)
        ok = push_name(gens, GEN_URI, uri);
    for (size_t i = 0; ok && !uri && i < ndns; i++)
        ok = push_name(gens, GEN_DNS, dns[i]);
    /* critical: the subject is empty (RFC 5280 4.2.1.6, as istiod) */
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 1, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok;
}

static bool set_serial(X509 *x)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return false;
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    bool ok = bn && (!BN_is_zero(bn) || BN_one(bn)) &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

/* A leaf for key, issued by ca, valid [now - skew, not_after], for the URI
 * uri or else the DNS names dns. */
static X509 *make_leaf(const xds_ca_t *ca, EVP_PKEY *key, const char *uri, const char *const *dns,
                       size_t ndns, time_t now, time_t not_after)
{
    X509 *x = X509_new();
    bool ok = x && X509_set_version(x, X509_VERSION_3) && set_serial(x) &&
              X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) &&
              ASN1_TIME_set(X509_getm_notBefore(x), now - CA_CLOCK_SKEW_S) &&
              ASN1_TIME_set(X509_getm_notAfter(x), not_after) && X509_set_pubkey(x, key) &&
              add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") &&
              add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
              add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth") &&
              add_ext(x, ca->cert, NID_authority_key_identifier, "keyid") &&
              add_sans(x, uri, dns, ndns) && X509_sign(x, ca->key, ca->md) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

void xds_ca_chain_free(xds_ca_chain_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->pem[i]);
    free(c->pem);
    c->pem = NULL;
    c->n = 0;
}

int xds_ca_sign(const xds_ca_t *ca, const char *csr, size_t len, const xds_ca_identity_t *id,
                int64_t ttl_s, xds_ca_chain_t *out, char *err, size_t errlen)
{
    out->pem = NULL;
    out->n = 0;
    ERR_clear_error();
    if (!valid_name(id->trust_domain, true) || !valid_name(id->ns, false) ||
        !valid_name(id->sa, false))
        return fail(err, errlen, XDS_CA_ERR_IDENTITY,
                    "trust domain, namespace and service account must be DNS names");
    if (ttl_s > ca->max_ttl_s)
        return fail(err, errlen, XDS_CA_ERR_TTL,
                    "requested TTL %llds is greater than the max allowed TTL %llds",
                    (long long)ttl_s, (long long)ca->max_ttl_s);
    time_t now = time(NULL);
    if (now >= ca->not_after)
        return fail(err, errlen, XDS_CA_ERR_EXPIRED, "CA certificate expired");
    int rc = 0;
    EVP_PKEY *key = csr_key(csr, len, &rc, err, errlen);
    if (!key)
        return rc;
    time_t not_after = now + (time_t)(ttl_s > 0 ? ttl_s : ca->default_ttl_s);
    if (not_after > ca->not_after)
        not_after = ca->not_after;
    char uri[3 * CA_MAX_NAME + 32];
    snprintf(uri, sizeof(uri), "spiffe://%s/ns/%s/sa/%s", id->trust_domain, id->ns, id->sa);
    X509 *leaf = make_leaf(ca, key, uri, NULL, 0, now, not_after);
    EVP_PKEY_free(key);
    char **pem = calloc(ca->nchain + 2, sizeof(char *));
    if (!leaf || !pem || !(pem[0] = cert_pem(leaf))) {
        X509_free(leaf);
        free(pem);
        return fail(err, errlen, XDS_CA_ERR_INTERNAL, "signing failed");
    }
    X509_free(leaf);
    out->pem = pem;
    out->n = 1;
    for (size_t i = 0; i < ca->nchain + 1; i++, out->n++) {
        const char *src = i < ca->nchain ? ca->chain[i] : ca->root;
        if (!(pem[out->n] = strdup(src))) {
            xds_ca_chain_free(out);
            return fail(err, errlen, XDS_CA_ERR_INTERNAL, "out of memory");
        }
    }
    ERR_clear_error();
    return 0;
}

static char *key_pem(EVP_PKEY *k);

/* A DNS name: labels of letters, digits and '-', joined by dots. */
static bool valid_dns(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CA_MAX_NAME || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.'))
            return false;
    return true;
}

int xds_ca_issue_server(const xds_ca_t *ca, const char *const *dns, size_t ndns, int64_t ttl_s,
                        char **chain, char **key, int64_t *not_after, char *err, size_t errlen)
{
    *chain = *key = NULL;
    ERR_clear_error();
    if (ndns == 0 || ttl_s <= 0)
        return fail(err, errlen, XDS_CA_ERR_IDENTITY, "a serving certificate needs DNS names");
    for (size_t i = 0; i < ndns; i++)
        if (!valid_dns(dns[i]))
            return fail(err, errlen, XDS_CA_ERR_IDENTITY, "%.300s is not a DNS name", dns[i]);
    time_t now = time(NULL);
    if (now >= ca->not_after)
        return fail(err, errlen, XDS_CA_ERR_EXPIRED, "CA certificate expired");
    time_t na = now + (time_t)ttl_s;
    if (na > ca->not_after)
        na = ca->not_after;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *leaf = k ? make_leaf(ca, k, NULL, dns, ndns, now, na) : NULL;
    char *lp = leaf ? cert_pem(leaf) : NULL;
    *key = lp ? key_pem(k) : NULL;
    size_t len = lp ? strlen(lp) : 0;
    for (size_t i = 0; i < ca->nchain; i++)
        len += strlen(ca->chain[i]);
    *chain = *key ? malloc(len + 1) : NULL;
    if (*chain) {
        /* the leaf, then its issuers as cert-chain.pem has them */
        strcpy(*chain, lp);
        for (size_t i = 0; i < ca->nchain; i++)
            strcat(*chain, ca->chain[i]);
    }
    EVP_PKEY_free(k);
    X509_free(leaf);
    free(lp);
    if (!*chain) {
        if (*key)
            memset(*key, 0, strlen(*key));
        free(*key);
        *key = NULL;
        return fail(err, errlen, XDS_CA_ERR_INTERNAL, "issuing a serving certificate");
    }
    *not_after = (int64_t)na;
    ERR_clear_error();
    return 0;
}

/* A self-signed root for org, as istiod makes one without cacerts. */
static X509 *make_root(EVP_PKEY *key, const char *org, int64_t ttl_s)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    time_t now = time(NULL);
    bool ok = x && name &&
              X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1,
                                         -1, 0) &&
              X509_set_version(x, X509_VERSION_3) && set_serial(x) &&
              X509_set_subject_name(x, name) && X509_set_issuer_name(x, name) &&
              ASN1_TIME_set(X509_getm_notBefore(x), now - CA_CLOCK_SKEW_S) &&
              ASN1_TIME_set(X509_getm_notAfter(x), now + (time_t)ttl_s) &&
              X509_set_pubkey(x, key) && add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
              add_ext(x, x, NID_key_usage, "critical,keyCertSign") &&
              add_ext(x, x, NID_subject_key_identifier, "hash") &&
              X509_sign(x, key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    /* the traditional form ("RSA PRIVATE KEY"), as istiod writes it */
    return bio_text(b, b && PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL));
}

int xds_ca_self_signed_pem(const char *org, int64_t ttl_s, char **cert, char **key, char *err,
                           size_t errlen)
{
    *cert = *key = NULL;
    ERR_clear_error();
    if (!org || !*org || ttl_s <= 0)
        return fail(err, errlen, XDS_CA_ERR_CACERTS, "self-signed root needs an org and a TTL");
    EVP_PKEY *k = EVP_RSA_gen(2048);
    X509 *root = k ? make_root(k, org, ttl_s) : NULL;
    *cert = root ? cert_pem(root) : NULL;
    *key = root ? key_pem(k) : NULL;
    EVP_PKEY_free(k);
    X509_free(root);
    if (!*cert || !*key) {
        free(*cert);
        free(*key);
        *cert = *key = NULL;
        return fail(err, errlen, XDS_CA_ERR_INTERNAL, "generating a root");
    }
    ERR_clear_error();
    return 0;
}

int xds_ca_new_self_signed(const char *org, int64_t ttl_s, const xds_ca_opts_t *opts,
                           xds_ca_t **out, char *err, size_t errlen)
{
    char *cert, *key;
    *out = NULL;
    int rc = xds_ca_self_signed_pem(org, ttl_s, &cert, &key, err, errlen);
    if (rc == 0)
        rc = xds_ca_new(cert, key, "", cert, opts, out, err, errlen);
    free(cert);
    free(key);
    return rc;
}
