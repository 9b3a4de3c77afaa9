/*
 * test_ca.c - the workload CA (xds/ca.c): loading Istio cacerts, signing
 * CSRs and what the leaf holds. The CAs and CSRs come from the openssl CLI
 * (tests/make_cacerts.sh) and every signed chain is checked with
 * `openssl verify`, so the checks do not rest on meshfed's own OpenSSL use.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "testlib.h"
#include "xds.h"

#define DAY (24 * 3600)

static char dir[64] = "/tmp/meshfed-ca-XXXXXX";
static const xds_ca_identity_t ident = {"cluster.local", "bookinfo", "reviews"};
#define IDENT_URI "spiffe://cluster.local/ns/bookinfo/sa/reviews"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void spit(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    fputs(s, f);
    fclose(f);
}

static xds_ca_t *load(const char *sub, const xds_ca_opts_t *o)
{
    char path[256], err[512] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    xds_ca_t *ca = NULL;
    int rc = xds_ca_load_dir(path, o, &ca, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", sub, err);
    return ca;
}

/* xds_ca_load_dir's code for sub, which must fail; its message in err. */
static int load_fails(const char *sub, char *err, size_t errlen)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    xds_ca_t *ca = (xds_ca_t *)1;
    int rc = xds_ca_load_dir(path, NULL, &ca, err, errlen);
    ck_assert_msg(rc < 0, "%s loaded", sub);
    ck_assert_ptr_null(ca);
    ck_assert(err[0] != '\0');
    return rc;
}

/* Signs csr/<name>.csr for ident. */
static int sign(const xds_ca_t *ca, const char *name, int64_t ttl, xds_ca_chain_t *out, char *err,
                size_t errlen)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/csr/%s.csr", dir, name);
    char *csr = slurp(path);
    int rc = xds_ca_sign(ca, csr, strlen(csr), &ident, ttl, out, err, errlen);
    free(csr);
    return rc;
}

static X509 *parse(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ck_assert_ptr_nonnull(x);
    return x;
}

/* `openssl verify` of the leaf against root with c's middle elements as
 * the untrusted intermediates. */
static bool openssl_verifies(const xds_ca_chain_t *c, const char *root)
{
    char leaf[128], mid[128];
    snprintf(leaf, sizeof(leaf), "%s/leaf.pem", dir);
    snprintf(mid, sizeof(mid), "%s/mid.pem", dir);
    spit(leaf, c->pem[0]);
    FILE *f = fopen(mid, "wb");
    ck_assert(f != NULL);
    for (size_t i = 1; i + 1 < c->n; i++)
        fputs(c->pem[i], f);
    fclose(f);
    return tl_sh("openssl verify -purpose sslclient -CAfile %s %s %s %s >/dev/null", root,
                 c->n > 2 ? "-untrusted" : "", c->n > 2 ? mid : "", leaf);
}

static long secs_from_now(const ASN1_TIME *t)
{
    int days, secs;
    ck_assert(ASN1_TIME_diff(&days, &secs, NULL, t));
    return (long)days * DAY + secs;
}

static bool ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    ck_assert_msg(i >= 0, "no extension %s", OBJ_nid2sn(nid));
    return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

START_TEST(test_sign_rsa2048_chain_verifies)
{
    xds_ca_t *ca = load("good", NULL);
    xds_ca_chain_t c;
    char err[512] = "", root[128];
    ck_assert_msg(sign(ca, "rsa2048", 3600, &c, err, sizeof(err)) == 0, "%s", err);
    /* leaf, cert-chain.pem's intermediate and root, root-cert.pem */
    ck_assert_uint_eq(c.n, 4);
    char *want_root = slurp(strcat(strcpy(root, dir), "/root.pem"));
    char *want_mid = slurp(strcat(strcpy(root, dir), "/good/ca-cert.pem"));
    ck_assert_str_eq(c.pem[1], want_mid);
    ck_assert_str_eq(c.pem[2], want_root);
    ck_assert_str_eq(c.pem[3], want_root);
    ck_assert_str_eq(xds_ca_root_pem(ca), want_root);
    snprintf(root, sizeof(root), "%s/root.pem", dir);
    ck_assert(openssl_verifies(&c, root));
    free(want_root);
    free(want_mid);
    xds_ca_chain_free(&c);
    ck_assert_ptr_null(c.pem);
    xds_ca_free(ca);
}
END_TEST

START_TEST(test_sign_ec_p256_chain_verifies)
{
    xds_ca_t *ca = load("good", NULL);
    xds_ca_chain_t c;
    char err[512] = "", root[128];
    ck_assert_msg(sign(ca, "ec256", 0, &c, err, sizeof(err)) == 0, "%s", err);
    snprintf(root, sizeof(root), "%s/root.pem", dir);
    ck_assert(openssl_verifies(&c, root));
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
}
END_TEST

/* The identity is the caller's: the CSR's CN and SANs are dropped. */
START_TEST(test_san_from_identity_not_csr)
{
    xds_ca_t *ca = load("good", NULL);
    xds_ca_chain_t c;
    char err[512] = "";
    ck_assert_msg(sign(ca, "rsa2048", 3600, &c, err, sizeof(err)) == 0, "%s", err);
    X509 *x = parse(c.pem[0]);
    ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    ck_assert_ptr_nonnull(gens);
    ck_assert_int_eq(crit, 1);
    ck_assert_int_eq(sk_GENERAL_NAME_num(gens), 1);
    int type;
    ASN1_STRING *v = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, 0), &type);
    ck_assert_int_eq(type, GEN_URI);
    ck_assert_str_eq((const char *)ASN1_STRING_get0_data(v), IDENT_URI);
    GENERAL_NAMES_free(gens);
    X509_free(x);
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
}
END_TEST

/* Fields as istiod sets them on a workload leaf. */
START_TEST(test_leaf_fields_as_istiod)
{
    xds_ca_t *ca = load("good", NULL);
    xds_ca_chain_t c;
    char err[512] = "";
    ck_assert_msg(sign(ca, "ec256", 7200, &c, err, sizeof(err)) == 0, "%s", err);
    X509 *x = parse(c.pem[0]);
    X509 *mid = parse(c.pem[1]);
    ck_assert_int_eq(X509_get_version(x), X509_VERSION_3);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(mid)), 0);
    ck_assert(!(X509_get_extension_flags(x) & EXFLAG_CA));
    ck_assert(ext_critical(x, NID_basic_constraints));
    ck_assert_uint_eq(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    ck_assert(ext_critical(x, NID_key_usage));
    ck_assert_uint_eq(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    ck_assert_int_eq(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(mid)), 0);
    /* NotBefore two minutes back (clock skew), NotAfter the requested TTL on */
    long nb = secs_from_now(X509_get0_notBefore(x));
    long na = secs_from_now(X509_get0_notAfter(x));
    ck_assert_msg(nb <= -115 && nb >= -130, "notBefore %ld", nb);
    ck_assert_msg(na <= 7200 && na >= 7190, "notAfter %ld", na);
    /* a random 128-bit serial, different each time */
    const ASN1_INTEGER *s1 = X509_get0_serialNumber(x);
    ck_assert_int_ge(ASN1_STRING_length(s1), 12);
    xds_ca_chain_t c2;
    ck_assert(sign(ca, "ec256", 7200, &c2, err, sizeof(err)) == 0);
    X509 *x2 = parse(c2.pem[0]);
    ck_assert_int_ne(ASN1_INTEGER_cmp(s1, X509_get0_serialNumber(x2)), 0);
    X509_free(x2);
    X509_free(mid);
    X509_free(x);
    xds_ca_chain_free(&c2);
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
}
END_TEST

START_TEST(test_ttl_default_max_and_refusal)
{
    xds_ca_opts_t o = {.default_ttl_s = 3600, .max_ttl_s = 2 * 3600};
    xds_ca_t *ca = load("good", &o);
    xds_ca_chain_t c;
    char err[512] = "";
    ck_assert(sign(ca, "ec256", 0, &c, err, sizeof(err)) == 0);
    X509 *x = parse(c.pem[0]);
    long na = secs_from_now(X509_get0_notAfter(x));
    ck_assert_msg(na <= 3600 && na >= 3590, "default TTL gave %ld", na);
    X509_free(x);
    xds_ca_chain_free(&c);
    ck_assert(sign(ca, "ec256", 2 * 3600, &c, err, sizeof(err)) == 0);
    xds_ca_chain_free(&c);
    /* above the maximum: refused, as istiod does, not clamped */
    ck_assert_int_eq(sign(ca, "ec256", 2 * 3600 + 1, &c, err, sizeof(err)), XDS_CA_ERR_TTL);
    ck_assert_ptr_null(c.pem);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_ptr_nonnull(strstr(err, "max allowed TTL"));
    xds_ca_free(ca);
    /* unset options: 24h both */
    ca = load("good", NULL);
    ck_assert(sign(ca, "ec256", DAY, &c, err, sizeof(err)) == 0);
    xds_ca_chain_free(&c);
    ck_assert_int_eq(sign(ca, "ec256", DAY + 1, &c, err, sizeof(err)), XDS_CA_ERR_TTL);
    xds_ca_free(ca);
}
END_TEST

/* A leaf never outlives the CA that signed it. */
START_TEST(test_ttl_clamped_to_ca_expiry)
{
    xds_ca_opts_t o = {.max_ttl_s = 30 * DAY};
    xds_ca_t *ca = load("short", &o);
    xds_ca_chain_t c;
    char err[512] = "";
    ck_assert_msg(sign(ca, "ec256", 10 * DAY, &c, err, sizeof(err)) == 0, "%s", err);
    X509 *x = parse(c.pem[0]);
    X509 *mid = parse(c.pem[1]);
    ck_assert_int_eq(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(mid)), 0);
    X509_free(mid);
    X509_free(x);
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
}
END_TEST

START_TEST(test_weak_or_other_keys_refused)
{
    xds_ca_t *ca = load("good", NULL);
    static const char *const bad[] = {"rsa1024", "ec384", "ed25519"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xds_ca_chain_t c;
        char err[512] = "";
        ck_assert_int_eq(sign(ca, bad[i], 0, &c, err, sizeof(err)), XDS_CA_ERR_KEY_TYPE);
        ck_assert_ptr_null(c.pem);
        ck_assert_msg(err[0] != '\0', "%s", bad[i]);
    }
    xds_ca_free(ca);
}
END_TEST

/* csr/ec256.csr with its last DER byte (in the signature) flipped. */
static char *bad_signature_csr(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/csr/ec256.csr", dir);
    char *pem = slurp(path);
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    free(pem);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    ck_assert_int_gt(n, 0);
    X509_REQ_free(req);
    der[n - 1] ^= 0x01;
    const unsigned char *p = der;
    req = d2i_X509_REQ(NULL, &p, n);
    ck_assert_ptr_nonnull(req);
    OPENSSL_free(der);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    X509_REQ_free(req);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)len);
    BIO_free(b);
    return out;
}

START_TEST(test_malformed_csr_refused)
{
    xds_ca_t *ca = load("good", NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/csr/ec256.csr", dir);
    char *good = slurp(path);
    char *truncated = strndup(good, strlen(good) / 2);
    snprintf(path, sizeof(path), "%s/good/ca-cert.pem", dir);
    char *cert = slurp(path);
    char *badsig = bad_signature_csr();
    const char *const bad[] = {"",        "garbage", "-----BEGIN CERTIFICATE REQUEST-----\n!!\n",
                               truncated, cert,      badsig};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xds_ca_chain_t c;
        char err[512] = "";
        int rc = xds_ca_sign(ca, bad[i], strlen(bad[i]), &ident, 0, &c, err, sizeof(err));
        ck_assert_msg(rc == XDS_CA_ERR_CSR, "case %zu: %d %s", i, rc, err);
        ck_assert_ptr_null(c.pem);
    }
    /* not NUL-terminated: only len bytes are read */
    xds_ca_chain_t c;
    char err[512] = "";
    ck_assert_int_eq(xds_ca_sign(ca, good, strlen(good) - 40, &ident, 0, &c, err, sizeof(err)),
                     XDS_CA_ERR_CSR);
    ck_assert_int_eq(xds_ca_sign(ca, good, strlen(good), &ident, 0, &c, err, sizeof(err)), 0);
    xds_ca_chain_free(&c);
    free(badsig);
    free(cert);
    free(truncated);
    free(good);
    xds_ca_free(ca);
}
END_TEST

START_TEST(test_bad_identity_refused)
{
    xds_ca_t *ca = load("good", NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/csr/ec256.csr", dir);
    char *csr = slurp(path);
    const xds_ca_identity_t bad[] = {
        {"cluster.local", "", "sa"},
        {"cluster.local", "ns", NULL},
        {"cluster.local", "ns/x", "sa"},
        {"cluster.local", "ns", "sa,URI:spiffe://evil"},
        {"evil/ns/kube-system/sa/admin?", "ns", "sa"},
        {"Cluster.Local", "ns", "sa"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xds_ca_chain_t c;
        char err[512] = "";
        ck_assert_int_eq(xds_ca_sign(ca, csr, strlen(csr), &bad[i], 0, &c, err, sizeof(err)),
                         XDS_CA_ERR_IDENTITY);
        ck_assert_ptr_null(c.pem);
    }
    free(csr);
    xds_ca_free(ca);
}
END_TEST

START_TEST(test_bad_cacerts_refused)
{
    char err[512] = "";
    ck_assert_int_eq(load_fails("mismatch", err, sizeof(err)), XDS_CA_ERR_KEY_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err, "ca-key.pem"));
    err[0] = '\0';
    ck_assert_int_eq(load_fails("notca", err, sizeof(err)), XDS_CA_ERR_NOT_CA);
    err[0] = '\0';
    ck_assert_int_eq(load_fails("otherroot", err, sizeof(err)), XDS_CA_ERR_CACERTS);
    ck_assert_ptr_nonnull(strstr(err, "root-cert.pem"));
    err[0] = '\0';
    ck_assert_int_eq(load_fails("nochain", err, sizeof(err)), XDS_CA_ERR_CACERTS);
    ck_assert_ptr_nonnull(strstr(err, "cert-chain.pem"));
    err[0] = '\0';
    ck_assert_int_eq(load_fails("csr", err, sizeof(err)), XDS_CA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "ca-cert.pem"));
    /* a key that is no PEM, a certificate that is none */
    char cert[128], key[128], chain[128], rootp[128];
    snprintf(cert, sizeof(cert), "%s/good/ca-cert.pem", dir);
    snprintf(key, sizeof(key), "%s/good/ca-key.pem", dir);
    snprintf(chain, sizeof(chain), "%s/good/cert-chain.pem", dir);
    snprintf(rootp, sizeof(rootp), "%s/good/root-cert.pem", dir);
    char *c = slurp(cert), *k = slurp(key), *ch = slurp(chain), *r = slurp(rootp);
    xds_ca_t *ca = NULL;
    ck_assert_int_eq(xds_ca_new(c, "nokey", ch, r, NULL, &ca, err, sizeof(err)),
                     XDS_CA_ERR_CACERTS);
    ck_assert_int_eq(xds_ca_new(k, k, ch, r, NULL, &ca, err, sizeof(err)), XDS_CA_ERR_CACERTS);
    ck_assert_int_eq(xds_ca_new(c, k, ch, "", NULL, &ca, err, sizeof(err)), XDS_CA_ERR_CACERTS);
    /* default TTL above the maximum */
    xds_ca_opts_t o = {.default_ttl_s = 2 * DAY, .max_ttl_s = DAY};
    ck_assert_int_eq(xds_ca_new(c, k, ch, r, &o, &ca, err, sizeof(err)), XDS_CA_ERR_TTL);
    ck_assert_ptr_null(ca);
    ck_assert_int_eq(xds_ca_new(c, k, ch, r, NULL, &ca, err, sizeof(err)), 0);
    xds_ca_free(ca);
    free(c);
    free(k);
    free(ch);
    free(r);
}
END_TEST

START_TEST(test_self_signed_root_signs)
{
    xds_ca_t *ca = NULL;
    char err[512] = "";
    ck_assert_msg(
        xds_ca_new_self_signed("cluster.local", 365L * DAY, NULL, &ca, err, sizeof(err)) == 0, "%s",
        err);
    char root[128];
    snprintf(root, sizeof(root), "%s/self-root.pem", dir);
    spit(root, xds_ca_root_pem(ca));
    ck_assert(tl_sh("openssl x509 -in %s -noout -subject | grep -q 'O = cluster.local'", root));
    xds_ca_chain_t c;
    ck_assert_msg(sign(ca, "ec256", 0, &c, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_str_eq(c.pem[1], xds_ca_root_pem(ca));
    ck_assert(openssl_verifies(&c, root));
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
    ck_assert_int_eq(xds_ca_new_self_signed("", DAY, NULL, &ca, err, sizeof(err)),
                     XDS_CA_ERR_CACERTS);
}
END_TEST

START_TEST(test_self_signed_pem_reloads_as_the_same_root)
{
    char *cert = NULL, *key = NULL, *cert2 = NULL, *key2 = NULL, err[512] = "";
    ck_assert_msg(xds_ca_self_signed_pem("cluster.local", 10L * 365 * DAY, &cert, &key, err,
                                         sizeof(err)) == 0,
                  "%s", err);
    ck_assert_ptr_nonnull(strstr(key, "-----BEGIN RSA PRIVATE KEY-----"));
    char root[128];
    snprintf(root, sizeof(root), "%s/kept-root.pem", dir);
    spit(root, cert);
    ck_assert(tl_sh("openssl x509 -in %s -noout -text | grep -q 'CA:TRUE'", root));
    ck_assert(tl_sh("openssl x509 -in %s -noout -checkend %ld", root, 9L * 365 * DAY));
    /* what a restart (or another replica) makes of istio-ca-secret */
    xds_ca_t *ca = NULL;
    ck_assert_msg(xds_ca_new(cert, key, "", cert, NULL, &ca, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(xds_ca_root_pem(ca), cert);
    xds_ca_chain_t c;
    ck_assert_msg(sign(ca, "rsa2048", 0, &c, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.n, 2);
    ck_assert(openssl_verifies(&c, root));
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
    /* another root's key does not go with this certificate */
    ck_assert_int_eq(xds_ca_self_signed_pem("cluster.local", DAY, &cert2, &key2, err, sizeof(err)),
                     0);
    ck_assert_int_eq(xds_ca_new(cert, key2, "", cert, NULL, &ca, err, sizeof(err)),
                     XDS_CA_ERR_KEY_MISMATCH);
    ck_assert_ptr_null(ca);
    ck_assert_int_eq(xds_ca_new("not pem", key, "", "not pem", NULL, &ca, err, sizeof(err)),
                     XDS_CA_ERR_CACERTS);
    free(cert2);
    free(key2);
    ck_assert_int_eq(xds_ca_self_signed_pem(NULL, DAY, &cert2, &key2, err, sizeof(err)),
                     XDS_CA_ERR_CACERTS);
    ck_assert_ptr_null(cert2);
    free(cert);
    free(key);
}
END_TEST

START_TEST(test_serving_certificate_for_dns_names)
{
    xds_ca_t *ca = load("good", NULL);
    const char *const dns[] = {"meshfed.istio-system.svc",
                               "meshfed.istio-system.svc.cluster.local"};
    char *chain = NULL, *key = NULL, err[512] = "";
    int64_t not_after = 0;
    ck_assert_msg(
        xds_ca_issue_server(ca, dns, 2, 7 * DAY, &chain, &key, &not_after, err, sizeof(err)) == 0,
        "%s", err);
    ck_assert_int_ge(not_after, (int64_t)time(NULL) + 7 * DAY - 5);
    char cp[128], kp[128], root[128];
    snprintf(cp, sizeof(cp), "%s/serving.pem", dir);
    snprintf(kp, sizeof(kp), "%s/serving.key", dir);
    snprintf(root, sizeof(root), "%s/root.pem", dir);
    spit(cp, chain);
    spit(kp, key);
    /* the chain file verifies as a TLS server for its first name, the key is the leaf's */
    ck_assert(tl_sh("openssl verify -purpose sslserver -verify_hostname meshfed.istio-system.svc "
                    "-CAfile %s -untrusted %s %s >/dev/null",
                    root, cp, cp));
    ck_assert(tl_sh("test \"$(openssl x509 -in %s -noout -pubkey)\" = \"$(openssl pkey -in %s "
                    "-pubout)\"",
                    cp, kp));
    X509 *x = parse(chain);
    ck_assert(ext_critical(x, NID_subject_alt_name));
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    ck_assert_int_eq(sk_GENERAL_NAME_num(gens), 2);
    ck_assert_int_eq(sk_GENERAL_NAME_value(gens, 1)->type, GEN_DNS);
    GENERAL_NAMES_free(gens);
    ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    X509_free(x);
    memset(key, 0, strlen(key));
    free(chain);
    free(key);
    const char *const bad[] = {"Meshfed.svc"}, *const dotted[] = {"a..b"};
    ck_assert_int_eq(
        xds_ca_issue_server(ca, bad, 1, DAY, &chain, &key, &not_after, err, sizeof(err)),
        XDS_CA_ERR_IDENTITY);
    ck_assert_int_eq(
        xds_ca_issue_server(ca, dotted, 1, DAY, &chain, &key, &not_after, err, sizeof(err)),
        XDS_CA_ERR_IDENTITY);
    ck_assert_int_eq(
        xds_ca_issue_server(ca, dns, 0, DAY, &chain, &key, &not_after, err, sizeof(err)),
        XDS_CA_ERR_IDENTITY);
    ck_assert_ptr_null(chain);
    xds_ca_free(ca);
}
END_TEST

/* cert-manager's layout, as istiod reads it: tls.crt, tls.key, ca.crt. */
START_TEST(test_tls_secret_layout_loads)
{
    ck_assert(tl_sh("mkdir -p %s/tlsl && cp %s/good/ca-cert.pem %s/tlsl/tls.crt && "
                    "cp %s/good/ca-key.pem %s/tlsl/tls.key && cp %s/root.pem %s/tlsl/ca.crt",
                    dir, dir, dir, dir, dir, dir, dir));
    xds_ca_t *ca = load("tlsl", NULL);
    char root[128], err[512] = "";
    snprintf(root, sizeof(root), "%s/root.pem", dir);
    xds_ca_chain_t c;
    ck_assert_msg(sign(ca, "ec256", 0, &c, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.n, 4); /* leaf, tls.crt, ca.crt (its chain), ca.crt (the root) */
    ck_assert(openssl_verifies(&c, root));
    xds_ca_chain_free(&c);
    xds_ca_free(ca);
    /* tls.crt wins over Istio's files, as in istiod; its key must match */
    ck_assert(tl_sh("cp %s/mismatch/ca-key.pem %s/tlsl/tls.key", dir, dir));
    ck_assert_int_eq(load_fails("tlsl", err, sizeof(err)), XDS_CA_ERR_KEY_MISMATCH);
    ck_assert(tl_sh("rm %s/tlsl/ca.crt", dir));
    ck_assert_int_eq(load_fails("tlsl", err, sizeof(err)), XDS_CA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "ca.crt"));
}
END_TEST

START_TEST(test_strerror_names_every_code)
{
    for (int code = XDS_CA_OK; code >= XDS_CA_ERR_INTERNAL; code--)
        ck_assert_str_ne(xds_ca_strerror(code), "unknown CA error");
    ck_assert_str_eq(xds_ca_strerror(-99), "unknown CA error");
}
END_TEST

static void setup(void)
{
    const char *data = getenv("MESHFED_TESTDATA");
    ck_assert_ptr_nonnull(data);
    ck_assert(tl_sh("sh %s/../make_cacerts.sh %s", data, dir));
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    Suite *s = suite_create("ca");
    TCase *tc = tcase_create("ca");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_sign_rsa2048_chain_verifies);
    tcase_add_test(tc, test_sign_ec_p256_chain_verifies);
    tcase_add_test(tc, test_san_from_identity_not_csr);
    tcase_add_test(tc, test_leaf_fields_as_istiod);
    tcase_add_test(tc, test_ttl_default_max_and_refusal);
    tcase_add_test(tc, test_ttl_clamped_to_ca_expiry);
    tcase_add_test(tc, test_weak_or_other_keys_refused);
    tcase_add_test(tc, test_malformed_csr_refused);
    tcase_add_test(tc, test_bad_identity_refused);
    tcase_add_test(tc, test_bad_cacerts_refused);
    tcase_add_test(tc, test_self_signed_root_signs);
    tcase_add_test(tc, test_self_signed_pem_reloads_as_the_same_root);
    tcase_add_test(tc, test_serving_certificate_for_dns_names);
    tcase_add_test(tc, test_tls_secret_layout_loads);
    tcase_add_test(tc, test_strerror_names_every_code);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!tl_sh("rm -rf %s", dir))
        failed++;
    return failed ? 1 : 0;
}
