/*
 * fuzz_ca_csr.c - CSRs from the wire signed by the workload CA (xds/ca.c),
 * with a self-signed root made once.
 *
 * Input: one mode byte, then the CSR. Mode bit 0 clear: the rest is the
 * PEM text as a client sends it. Bit 0 set: the rest is DER, wrapped here
 * in PEM, so that mutations reach the ASN.1 parser instead of breaking the
 * base64. Bits 1-2 pick the requested TTL (0, one hour, the maximum, one
 * second above it).
 *
 * Invariants (abort on violation):
 *  - a refusal leaves the chain empty, names its code and says why;
 *  - a TTL above the maximum is always refused;
 *  - a success gives leaf then root; the leaf parses, verifies with the
 *    root's key, has an empty subject and exactly one SAN, the identity's
 *    URI, whatever the CSR asked for.
 */
#include "xds.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TTL 7200
#define URI "spiffe://cluster.local/ns/fuzz/sa/default"

static xds_ca_t *ca;
static EVP_PKEY *root_key;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    xds_ca_opts_t o = {.default_ttl_s = 3600, .max_ttl_s = MAX_TTL};
    if (xds_ca_new_self_signed("cluster.local", 86400, &o, &ca, err, sizeof(err)) != 0)
        abort();
    BIO *b = BIO_new_mem_buf(xds_ca_root_pem(ca), -1);
    X509 *root = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!root || !(root_key = X509_get_pubkey(root)))
        abort();
    X509_free(root);
    return 0;
}

/* DER as a PEM CERTIFICATE REQUEST; caller frees. */
static char *wrap(const uint8_t *der, size_t n, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        abort();
    if (n > 0 && !PEM_write_bio(b, "CERTIFICATE REQUEST", "", der, (long)n))
        abort();
    char *p;
    long l = BIO_get_mem_data(b, &p);
    char *out = malloc((size_t)l + 1);
    if (l > 0)
        memcpy(out, p, (size_t)l);
    out[l] = '\0';
    *len = (size_t)l;
    BIO_free(b);
    return out;
}

static void check_leaf(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!x || X509_verify(x, root_key) != 1)
        abort();
    if (X509_NAME_entry_count(X509_get_subject_name(x)) != 0)
        abort();
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (!gens || sk_GENERAL_NAME_num(gens) != 1)
        abort();
    int type;
    ASN1_STRING *v = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, 0), &type);
    if (type != GEN_URI || strcmp((const char *)ASN1_STRING_get0_data(v), URI) != 0)
        abort();
    GENERAL_NAMES_free(gens);
    X509_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t ttls[4] = {0, 3600, MAX_TTL, MAX_TTL + 1};
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    int64_t ttl = ttls[(mode >> 1) & 3];
    size_t len = size - 1;
    char *csr = malloc(len ? len : 1);
    memcpy(csr, data + 1, len);
    if (mode & 1) {
        char *pem = wrap(data + 1, len, &len);
        free(csr);
        csr = pem;
    }
    static const xds_ca_identity_t id = {"cluster.local", "fuzz", "default"};
    xds_ca_chain_t c;
    char err[256] = "";
    int rc = xds_ca_sign(ca, csr, len, &id, ttl, &c, err, sizeof(err));
    free(csr);
    if (rc != 0) {
        if (c.pem || c.n || !err[0] || strcmp(xds_ca_strerror(rc), "unknown CA error") == 0)
            abort();
        if (ttl > MAX_TTL && rc != XDS_CA_ERR_TTL)
            abort();
        return 0;
    }
    if (ttl > MAX_TTL || c.n != 2 || strcmp(c.pem[1], xds_ca_root_pem(ca)) != 0)
        abort();
    check_leaf(c.pem[0]);
    xds_ca_chain_free(&c);
    return 0;
}
