/*
 * tls.c - server TLS credentials from a PEM certificate chain and key on
 * disk, reloaded when the files change, or held in memory and replaced by
 * the caller (a serving certificate meshfed's own CA issues and renews).
 *
 * grpc core asks a certificate-config fetcher for the current config at every
 * new TLS handshake, so rotation needs no timer: the fetcher stats both files
 * and re-reads them only when one changed (mtime, ctime, size or inode; the
 * last two catch a rename-over within one timestamp tick). Existing
 * connections keep the certificate they were made with. If a changed file
 * cannot be read (mid-rotation), the previous pair keeps being served.
 */
#include "xds_int.h"

#include <grpc/grpc_security.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define XDS_TLS_MAX_PEM (1u << 20) /* a certificate chain is kilobytes */

typedef struct xds_stamp {
    struct timespec mtime, ctime;
    off_t size;
    ino_t ino;
} xds_stamp_t;

struct xds_tls {
    char *cert_file, *key_file; /* NULL: the pair in memory */
    char *mem_cert, *mem_key;
    uint64_t mem_gen, mem_served; /* replaced / served generation */
    pthread_mutex_t mu;           /* the fetcher runs on grpc's threads */
    bool loaded;
    xds_stamp_t cert_st, key_st;
    atomic_uint_fast64_t loads;
};

static int stamp_of(const char *path, xds_stamp_t *out)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    out->mtime = sb.st_mtim;
    out->ctime = sb.st_ctim;
    out->size = sb.st_size;
    out->ino = sb.st_ino;
    return 0;
}

static bool stamp_eq(const xds_stamp_t *a, const xds_stamp_t *b)
{
    return a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec &&
           a->size == b->size && a->ino == b->ino;
}

/* The whole file, NUL-terminated, or NULL. Caller frees. */
static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(XDS_TLS_MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, XDS_TLS_MAX_PEM + 1, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n > XDS_TLS_MAX_PEM || !strstr(buf, "-----BEGIN")) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Reads both files into a new grpc config; NULL when either is unusable. */
static grpc_ssl_server_certificate_config *load(xds_tls_t *t)
{
    char *cert = read_pem(t->cert_file), *key = read_pem(t->key_file);
    grpc_ssl_server_certificate_config *cfg = NULL;
    if (cert && key) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        /* grpc 1.51 asserts non-NULL roots when a fetcher replaces the config,
         * although clients are never asked for a certificate: pass our own chain */
        cfg = grpc_ssl_server_certificate_config_create(cert, &pair, 1); /* copies */
    }
    if (key)
        memset(key, 0, strlen(key)); /* do not leave key material in freed heap */
    free(cert);
    free(key);
    return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch(void *arg,
                                                       grpc_ssl_server_certificate_config **out)
{
    xds_tls_t *t = arg;
    grpc_ssl_certificate_config_reload_status rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&t->mu);
    if (!t->cert_file) {
        if (t->loaded && t->mem_served == t->mem_gen)
            goto out;
        grpc_ssl_pem_key_cert_pair pair = {.private_key = t->mem_key, .cert_chain = t->mem_cert};
        grpc_ssl_server_certificate_config *mc =
            grpc_ssl_server_certificate_config_create(t->mem_cert, &pair, 1);
        if (!mc) {
            if (!t->loaded)
                rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
            goto out;
        }
        *out = mc;
        t->mem_served = t->mem_gen;
        t->loaded = true;
        atomic_fetch_add(&t->loads, 1);
        rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        goto out;
    }
    xds_stamp_t cs, ks;
    bool have = stamp_of(t->cert_file, &cs) == 0 && stamp_of(t->key_file, &ks) == 0;
    if (have && t->loaded && stamp_eq(&cs, &t->cert_st) && stamp_eq(&ks, &t->key_st))
        goto out;
    grpc_ssl_server_certificate_config *cfg = have ? load(t) : NULL;
    if (!cfg) {
        if (!t->loaded)
            rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        goto out; /* mid-rotation: keep serving the previous pair */
    }
    *out = cfg;
    t->cert_st = cs;
    t->key_st = ks;
    t->loaded = true;
    atomic_fetch_add(&t->loads, 1);
    rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

xds_tls_t *xds_tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    if (!cert_file || !key_file) {
        snprintf(err, errlen, "xds: TLS listener needs a certificate and a key file");
        return NULL;
    }
    /* fail at startup, not at the first handshake */
    grpc_ssl_server_certificate_config *probe = NULL;
    xds_tls_t *t = calloc(1, sizeof(*t));
    if (t) {
        t->cert_file = strdup(cert_file);
        t->key_file = strdup(key_file);
        pthread_mutex_init(&t->mu, NULL);
    }
    if (!t || !t->cert_file || !t->key_file || !(probe = load(t))) {
        snprintf(err, errlen, "xds: cannot read PEM from %s and %s", cert_file, key_file);
        xds_tls_free(t);
        return NULL;
    }
    grpc_ssl_server_certificate_config_destroy(probe);
    return t;
}

/* Replaces the in-memory pair: 0, or -1 (no memory; the old pair stays). */
static int set_pem(xds_tls_t *t, const char *cert, const char *key)
{
    char *c = strstr(cert, "-----BEGIN") ? strdup(cert) : NULL;
    char *k = c && strstr(key, "-----BEGIN") ? strdup(key) : NULL;
    if (!k) {
        free(c);
        return -1;
    }
    pthread_mutex_lock(&t->mu);
    free(t->mem_cert);
    if (t->mem_key)
        memset(t->mem_key, 0, strlen(t->mem_key));
    free(t->mem_key);
    t->mem_cert = c;
    t->mem_key = k;
    t->mem_gen++;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

xds_tls_t *xds_tls_new_pem(const char *cert, const char *key, char *err, size_t errlen)
{
    xds_tls_t *t = calloc(1, sizeof(*t));
    if (t)
        pthread_mutex_init(&t->mu, NULL);
    if (!t || !cert || !key || set_pem(t, cert, key) < 0) {
        snprintf(err, errlen, "xds: no PEM serving certificate and key");
        xds_tls_free(t);
        return NULL;
    }
    return t;
}

int xds_tls_set_pem(xds_tls_t *t, const char *cert, const char *key)
{
    if (!t || t->cert_file)
        return -1;
    return set_pem(t, cert, key);
}

grpc_server_credentials *xds_tls_creds(xds_tls_t *t)
{
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, fetch, t);
    return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

uint64_t xds_tls_loads(xds_tls_t *t)
{
    return t ? atomic_load(&t->loads) : 0;
}

void xds_tls_free(xds_tls_t *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->cert_file);
    free(t->key_file);
    free(t->mem_cert);
    if (t->mem_key)
        memset(t->mem_key, 0, strlen(t->mem_key));
    free(t->mem_key);
    free(t);
}
