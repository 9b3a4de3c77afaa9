/*
 * ca.c - meshfed's workload CA as the program runs it (docs/ca.md): loads
 * --cacerts-dir, else istiod's self-signed root from the Secret
 * istio-ca-secret (made and stored there when missing, loudly), reloads the
 * directory when its files change, and answers the xDS server's node
 * authorization from the model's pods.
 *
 * A mounted Secret changes by an atomic swap of a symlink, so the files are
 * compared by what stat() sees through them (inode, size, mtime); a change
 * is loaded once it stayed the same for one poll, so a directory caught
 * half-written is not read. A cacerts that does not load keeps the old CA.
 */
#include "base.h"
#include "ctl_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An error message in err, cut at errlen: the CA's messages nest others
 * (xds_ca's, the API server's), and a cut one still says what failed. */
__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t errlen, const char *fmt,
                                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#define CA_POLL_MS 1000
#define CA_SELF_SIGNED_TTL_S (10LL * 365 * 86400) /* istiod's self-signed root: 10 years */
#define CA_SECRET "istio-ca-secret"               /* where istiod keeps it */
#define CA_SECRET_TYPE "istio.io/ca-root"
#define CA_SECRET_TRIES 30 /* 2 s apart: a minute for the API server to answer */
#define CA_SECRET_RETRY_S 2
#define CA_SECRET_POLL_S 5           /* a cacerts Secret is looked at (one GET) this often */
#define CA_SERVING_TTL_S (24 * 3600) /* meshfed's own serving certificate, renewed at half */
#define CA_SERVING_RETRY_S 60        /* after a renewal failed */
#define CA_MAX_DNS 16

static const char *const cacerts_files[] = {"ca-cert.pem", "ca-key.pem", "cert-chain.pem",
                                            "root-cert.pem"};

struct ctl_ca {
    ctl_t *ctl;
    char *dir;    /* NULL: no cacerts directory to watch */
    char *secret; /* without dir and with an API server: the cacerts Secret, polled */
    char secret_where[300];
    char *secret_rv; /* its resourceVersion loaded (or refused) last; NULL: none */
    bool secret_gone;
    kube_conn_t conn; /* the local cluster's, when have_conn */
    bool have_conn;
    char *dns[CA_MAX_DNS]; /* the serving certificate's names, when serving */
    size_t ndns;
    bool serving;    /* the TLS listener's certificate is ours to renew */
    time_t renew_at; /* when it is due */
    bool ca_changed; /* a new CA signs: renew now */
    char *accounts;  /* --ca-node-accounts */
    xds_ca_opts_t opts;
    xds_server_t *xds;
    uint64_t seen; /* signature of the files loaded (or last failed) */
    pthread_t thr;
    bool started, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static const char *const tls_files[] = {"tls.crt", "tls.key", "ca.crt"};

/* What stat() sees of the cacerts files (the tls layout when tls.crt
 * exists, as istiod picks it), hashed; 0 when one is missing. */
static uint64_t dir_signature(const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/tls.crt", dir);
    bool tls = stat(path, &st) == 0;
    const char *const *files = tls ? tls_files : cacerts_files;
    size_t n = tls ? 3 : 4;
    uint64_t h = tls ? 1099511628211ULL : 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (stat(path, &st) != 0)
            return 0;
        uint64_t v[4] = {(uint64_t)st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
                         (uint64_t)st.st_mtim.tv_nsec};
        h = base_hash_more(h, v, sizeof(v));
    }
    return h ? h : 1;
}

static xds_ca_t *load(ctl_ca_t *a, char *err, size_t errlen)
{
    xds_ca_t *ca = NULL;
    char buf[CTL_ERRLEN / 2]; /* room left in err for the directory */
    int rc = xds_ca_load_dir(a->dir, &a->opts, &ca, buf, sizeof(buf));
    if (rc != XDS_CA_OK) {
        errf(err, errlen, "cacerts-dir %s: %s: %s", a->dir, xds_ca_strerror(rc), buf);
        return NULL;
    }
    atomic_fetch_add(&ctl_metrics.ca_loads, 1);
    return ca;
}

/* ---------- the self-signed root, kept in istio-ca-secret ---------- */

/* data[key] of a Secret, base64-decoded, as a C string; NULL with err. */
static char *secret_pem(const json_t *secret, const char *key, const char *where, char *err,
                        size_t errlen)
{
    const char *b64 = json_string_value(json_object_get(json_object_get(secret, "data"), key));
    size_t n = 0;
    char *pem = b64 ? kube_base64_decode(b64, &n) : NULL;
    if (!pem || strlen(pem) != n) {
        errf(err, errlen, "%s: data.%s %s", where, key,
             !b64  ? "missing"
             : pem ? "holds a NUL byte"
                   : "is not base64");
        free(pem);
        return NULL;
    }
    return pem;
}

/* The CA of istio-ca-secret's ca-cert.pem and ca-key.pem (the root signs
 * directly, as istiod's self-signed CA does); NULL with err. */
static xds_ca_t *secret_ca(ctl_ca_t *a, const json_t *secret, const char *where, char *err,
                           size_t errlen)
{
    char buf[CTL_ERRLEN];
    xds_ca_t *ca = NULL;
    char *cert = secret_pem(secret, "ca-cert.pem", where, err, errlen);
    char *key = cert ? secret_pem(secret, "ca-key.pem", where, err, errlen) : NULL;
    if (key) {
        int rc = xds_ca_new(cert, key, "", cert, &a->opts, &ca, buf, sizeof(buf));
        if (rc != XDS_CA_OK)
            errf(err, errlen, "%s: %s: %s", where, xds_ca_strerror(rc), buf);
    }
    free(cert);
    free(key);
    return ca;
}

/* POSTs a new root as istio-ca-secret: 201 (*ca set), 409 (another replica
 * was first), another status, or -1 with err. */
static long create_secret(ctl_ca_t *a, const kube_conn_t *conn, const char *ns, xds_ca_t **ca,
                          char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL, buf[CTL_ERRLEN], path[512];
    int rc = xds_ca_self_signed_pem(ctl_config(a->ctl)->trust_domain, CA_SELF_SIGNED_TTL_S, &cert,
                                    &key, buf, sizeof(buf));
    if (rc != XDS_CA_OK) {
        errf(err, errlen, "cannot make a self-signed root: %s", buf);
        return -1;
    }
    char *c64 = kube_base64_encode(cert, strlen(cert));
    char *k64 = kube_base64_encode(key, strlen(key));
    /* istiod's layout: the root is ca-cert.pem and root-cert.pem, the two
     * workload keys stay empty */
    json_t *sec =
        c64 && k64
            ? json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:{s:s, s:s, s:s, s:s, s:s}}", "apiVersion",
                        "v1", "kind", "Secret", "metadata", "name", CA_SECRET, "namespace", ns,
                        "type", CA_SECRET_TYPE, "data", "ca-cert.pem", c64, "ca-key.pem", k64,
                        "root-cert.pem", c64, "cert-chain.pem", "", "key.pem", "")
            : NULL;
    char *body = sec ? json_dumps(sec, JSON_COMPACT) : NULL;
    json_decref(sec);
    free(c64);
    free(k64);
    long code = -1;
    char *resp = NULL;
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets", ns);
    if (!body)
        errf(err, errlen, "out of memory");
    else if (kube_request(conn, "POST", path, NULL, body, &code, &resp, err, errlen) < 0)
        code = -1;
    if (code == 201 &&
        xds_ca_new(cert, key, "", cert, &a->opts, ca, buf, sizeof(buf)) != XDS_CA_OK) {
        errf(err, errlen, "the root just made does not load: %s", buf);
        code = -1;
    }
    if (body)
        memset(body, 0, strlen(body)); /* it held the key */
    free(body);
    free(resp);
    if (key)
        memset(key, 0, strlen(key));
    free(cert);
    free(key);
    return code;
}

/* Without an API server (--demo) or the RBAC to keep it: a root in memory. */
static xds_ca_t *ephemeral(ctl_ca_t *a, const char *why, char *err, size_t errlen)
{
    char buf[CTL_ERRLEN];
    xds_ca_t *ca = NULL;
    int rc = xds_ca_new_self_signed(ctl_config(a->ctl)->trust_domain, CA_SELF_SIGNED_TTL_S,
                                    &a->opts, &ca, buf, sizeof(buf));
    if (rc != XDS_CA_OK) {
        errf(err, errlen, "ca: cannot make a self-signed root: %s", buf);
        return NULL;
    }
    ctl_log(CTL_WARN,
            "CA: no --cacerts-dir and %s: signing workload certificates with a SELF-SIGNED root "
            "made at start and kept nowhere. No other cluster (and no other meshfed replica, and "
            "not this one after a restart) trusts it: for a multicluster mesh give every cluster "
            "the same root (docs/ca.md)",
            why);
    return ca;
}

/* GET of Secret name in the system namespace, again every 2 s for a minute
 * while the API server does not answer (transport, 429, 5xx): the HTTP
 * status (*out the Secret when 200, caller frees), or -1 with err. */
static long fetch_secret(ctl_ca_t *a, const char *name, json_t **out, char *err, size_t errlen)
{
    const char *ns = ctl_config(a->ctl)->system_namespace;
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", ns, name);
    *out = NULL;
    for (int i = 0; i < CA_SECRET_TRIES; i++) {
        if (i)
            sleep(CA_SECRET_RETRY_S);
        long code = 0;
        char *resp = NULL;
        if (kube_request(&a->conn, "GET", path, NULL, NULL, &code, &resp, err, errlen) < 0)
            code = -1;
        else if (code == 200 && !(*out = json_loads(resp, 0, NULL)))
            code = -1, errf(err, errlen, "the answer is not JSON");
        free(resp);
        if (code == 200 || (code >= 400 && code < 500 && code != 429))
            return code;
        if (code > 0)
            errf(err, errlen, "HTTP %ld", code);
        ctl_log(CTL_WARN, "CA: Secret %s/%s: %s; trying again", ns, name, err);
    }
    return -1;
}

/* istiod's self-signed CA: the root in Secret istio-ca-secret of the system
 * namespace, read back when it exists (a restart, another replica), made
 * and stored when it does not. A Secret that does not load stops the start:
 * signing with another root would split the mesh. */
static xds_ca_t *self_signed(ctl_ca_t *a, char *err, size_t errlen)
{
    const ctl_config_t *cfg = ctl_config(a->ctl);
    if (!a->have_conn)
        return ephemeral(a, "no Kubernetes API", err, errlen);
    char where[600], why[CTL_ERRLEN] = "";
    snprintf(where, sizeof(where), "Secret %s/%s", cfg->system_namespace, CA_SECRET);
    xds_ca_t *ca = NULL;
    json_t *sec = NULL;
    long code = fetch_secret(a, CA_SECRET, &sec, why, sizeof(why));
    bool created = false;
    if (code == 404) {
        code = create_secret(a, &a->conn, cfg->system_namespace, &ca, why, sizeof(why));
        created = code == 201;
        if (code == 409) /* another replica made it first: use that one */
            code = fetch_secret(a, CA_SECRET, &sec, why, sizeof(why));
    }
    if (code == 200) {
        ca = secret_ca(a, sec, where, why, sizeof(why));
        if (!ca) {
            atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
            errf(err, errlen,
                 "ca: %s; fix it, or delete it for a new root (every workload certificate "
                 "then changes root)",
                 why);
        }
    } else if (code == 403) {
        atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
        ctl_log(CTL_ERROR,
                "CA: %s: forbidden (does meshfed's Role grant secrets get and create in %s?)",
                where, cfg->system_namespace);
        ca = ephemeral(a, "no access to istio-ca-secret", err, errlen);
    } else if (!created && code > 0) {
        errf(err, errlen, "ca: %s: refused by the API server (HTTP %ld)", where, code);
    } else if (!created) {
        errf(err, errlen, "ca: %s: %s", where, why);
    }
    json_decref(sec);
    if (ca && code != 403)
        ctl_log(CTL_WARN,
                "CA: no cacerts: signing workload certificates with the SELF-SIGNED root %s %s. "
                "No other cluster trusts it: for a multicluster mesh give every cluster the same "
                "root (docs/ca.md)",
                created ? "made now and stored in" : "of", where);
    return ca;
}

/* ---------- cacerts from a Secret (--cacerts-secret) ---------- */

/* The CA of a cacerts Secret, checked as a cacerts directory: Istio's four
 * keys, or the kubernetes.io/tls layout when it has tls.crt (as istiod). */
static xds_ca_t *cacerts_ca(ctl_ca_t *a, const json_t *sec, const char *where, char *err,
                            size_t errlen)
{
    bool tls = json_object_get(json_object_get(sec, "data"), "tls.crt") != NULL;
    const char *const *keys = tls ? tls_files : cacerts_files;
    int n = tls ? 3 : 4;
    char *pem[4] = {0}, buf[CTL_ERRLEN];
    xds_ca_t *ca = NULL;
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = (pem[i] = secret_pem(sec, keys[i], where, err, errlen)) != NULL;
    if (ok) {
        int rc = tls ? xds_ca_new_tls(pem[0], pem[1], pem[2], &a->opts, &ca, buf, sizeof(buf))
                     : xds_ca_new(pem[0], pem[1], pem[2], pem[3], &a->opts, &ca, buf, sizeof(buf));
        if (rc != XDS_CA_OK)
            errf(err, errlen, "%s: %s: %s", where, xds_ca_strerror(rc), buf);
    }
    for (int i = 0; i < 4; i++) {
        if (pem[i])
            memset(pem[i], 0, strlen(pem[i])); /* one is a key */
        free(pem[i]);
    }
    return ca;
}

static void remember_rv(ctl_ca_t *a, const json_t *sec)
{
    const char *rv =
        json_string_value(json_object_get(json_object_get(sec, "metadata"), "resourceVersion"));
    free(a->secret_rv);
    a->secret_rv = strdup(rv ? rv : "");
}

/* At start: the cacerts Secret's CA; NULL with *absent when there is none
 * (or no access), NULL with err when it does not load or cannot be read. */
static xds_ca_t *cacerts_secret(ctl_ca_t *a, bool *absent, char *err, size_t errlen)
{
    char why[CTL_ERRLEN] = "";
    json_t *sec = NULL;
    xds_ca_t *ca = NULL;
    *absent = false;
    long code = fetch_secret(a, a->secret, &sec, why, sizeof(why));
    if (code == 200) {
        remember_rv(a, sec);
        ca = cacerts_ca(a, sec, a->secret_where, why, sizeof(why));
        if (ca) {
            atomic_fetch_add(&ctl_metrics.ca_loads, 1);
            ctl_log(CTL_INFO, "CA: signing with the cacerts of %s", a->secret_where);
        } else {
            atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
            errf(err, errlen, "ca: %s", why);
        }
    } else if (code == 404 || code == 403) {
        if (code == 403) {
            atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
            ctl_log(CTL_ERROR, "CA: %s: forbidden (does meshfed's Role grant secrets get?)",
                    a->secret_where);
        }
        *absent = true;
    } else if (code > 0) {
        errf(err, errlen, "ca: %s: refused by the API server (HTTP %ld)", a->secret_where, code);
    } else {
        errf(err, errlen, "ca: %s: %s", a->secret_where, why);
    }
    json_decref(sec);
    return ca;
}

/* One look at the cacerts Secret from the watcher: a new resourceVersion
 * is loaded (or refused, once); a deletion keeps the CA loaded last. */
static void poll_secret(ctl_ca_t *a)
{
    const char *ns = ctl_config(a->ctl)->system_namespace;
    char path[512], err[CTL_ERRLEN] = "", why[CTL_ERRLEN];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", ns, a->secret);
    long code = 0;
    char *resp = NULL;
    if (kube_request(&a->conn, "GET", path, NULL, NULL, &code, &resp, err, sizeof(err)) < 0)
        code = -1;
    json_t *sec = code == 200 ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    const char *rv =
        json_string_value(json_object_get(json_object_get(sec, "metadata"), "resourceVersion"));
    if (sec && (!a->secret_rv || strcmp(a->secret_rv, rv ? rv : "") != 0)) {
        remember_rv(a, sec);
        a->secret_gone = false;
        xds_ca_t *ca = cacerts_ca(a, sec, a->secret_where, why, sizeof(why));
        if (ca) {
            atomic_fetch_add(&ctl_metrics.ca_loads, 1);
            ctl_kube_set_ca_root(ctl_kube_of(a->ctl), xds_ca_root_pem(ca));
            xds_server_set_ca(a->xds, ca);
            a->ca_changed = true;
            ctl_log(CTL_INFO, "CA: %s loaded: new certificates sign with it", a->secret_where);
        } else {
            atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
            ctl_log(CTL_ERROR, "CA: %s; the previous CA keeps signing", why);
        }
    } else if (code == 404 && a->secret_rv && !a->secret_gone) {
        a->secret_gone = true;
        free(a->secret_rv);
        a->secret_rv = NULL;
        ctl_log(CTL_WARN, "CA: %s was deleted; the CA loaded last keeps signing", a->secret_where);
    }
    json_decref(sec);
}

/* One look at --cacerts-dir: a change that stayed for one poll is loaded. */
static void poll_dir(ctl_ca_t *a, uint64_t *pending)
{
    uint64_t sig = dir_signature(a->dir);
    if (sig && sig != a->seen && sig == *pending) { /* changed, then stayed */
        char err[CTL_ERRLEN];
        xds_ca_t *ca = load(a, err, sizeof(err));
        a->seen = sig;
        if (ca) {
            ctl_kube_set_ca_root(ctl_kube_of(a->ctl), xds_ca_root_pem(ca));
            xds_server_set_ca(a->xds, ca);
            a->ca_changed = true;
            ctl_log(CTL_INFO, "cacerts-dir %s reloaded: new certificates sign with it", a->dir);
        } else {
            atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
            ctl_log(CTL_ERROR, "%s; the previous CA keeps signing", err);
        }
    }
    *pending = sig;
}

/* A new serving certificate from the CA that signs now. */
static void renew_serving(ctl_ca_t *a)
{
    char err[CTL_ERRLEN];
    int64_t not_after = 0;
    int rc = xds_server_renew_tls(a->xds, (const char *const *)a->dns, a->ndns, CA_SERVING_TTL_S,
                                  &not_after, err, sizeof(err));
    time_t now = time(NULL);
    a->ca_changed = false;
    if (rc != XDS_CA_OK) {
        atomic_fetch_add(&ctl_metrics.ca_serving_errors, 1);
        a->renew_at = now + CA_SERVING_RETRY_S;
        ctl_log(CTL_ERROR,
                "CA: renewing the xDS serving certificate: %s: %s; the current one "
                "stays, retried in %d s",
                xds_ca_strerror(rc), err, CA_SERVING_RETRY_S);
        return;
    }
    a->renew_at = now + ((time_t)not_after - now) / 2;
    ctl_log(CTL_INFO, "CA: issued a new xDS serving certificate for %s (valid %lld s)", a->dns[0],
            (long long)((time_t)not_after - now));
}

static void *watcher(void *arg)
{
    ctl_ca_t *a = arg;
    uint64_t pending = a->seen;
    unsigned ticks = 0;
    pthread_mutex_lock(&a->mu);
    while (!a->quit) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += CA_POLL_MS / 1000;
        pthread_cond_timedwait(&a->cv, &a->mu, &dl);
        if (a->quit)
            break;
        pthread_mutex_unlock(&a->mu);
        if (a->dir)
            poll_dir(a, &pending);
        else if (a->secret && ++ticks % (CA_SECRET_POLL_S * 1000 / CA_POLL_MS) == 0)
            poll_secret(a);
        if (a->serving && (a->ca_changed || time(NULL) >= a->renew_at))
            renew_serving(a);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

ctl_ca_t *ctl_ca_new(ctl_t *c, const ctl_config_t *cfg, xds_ca_t **first, char *err, size_t errlen)
{
    ctl_ca_t *a = calloc(1, sizeof(*a));
    if (a) {
        pthread_mutex_init(&a->mu, NULL);
        pthread_cond_init(&a->cv, NULL);
    }
    if (!a || !(a->accounts = strdup(cfg->ca_node_accounts ? cfg->ca_node_accounts : "")) ||
        (cfg->cacerts_dir && !(a->dir = strdup(cfg->cacerts_dir)))) {
        errf(err, errlen, "ca: out of memory");
        ctl_ca_free(a);
        return NULL;
    }
    a->ctl = c;
    a->opts = (xds_ca_opts_t){cfg->ca_default_ttl_s, cfg->ca_max_ttl_s};
    a->have_conn = ctl_kube_conn(ctl_kube_of(c), cfg->cluster_id, &a->conn) == 0;
    if (!a->dir && a->have_conn && cfg->cacerts_secret && *cfg->cacerts_secret &&
        !(a->secret = strdup(cfg->cacerts_secret))) {
        errf(err, errlen, "ca: out of memory");
        ctl_ca_free(a);
        return NULL;
    }
    if (a->secret)
        snprintf(a->secret_where, sizeof(a->secret_where), "Secret %s/%s", cfg->system_namespace,
                 a->secret);
    bool absent = true;
    if (a->dir) {
        a->seen = dir_signature(a->dir);
        *first = load(a, err, errlen);
    } else if (a->secret) {
        *first = cacerts_secret(a, &absent, err, errlen);
    }
    if (!a->dir && absent)
        *first = self_signed(a, err, errlen);
    if (!*first) {
        ctl_ca_free(a);
        return NULL;
    }
    ctl_kube_set_ca_root(ctl_kube_of(c), xds_ca_root_pem(*first));
    return a;
}

/* --tls-dns-names split at commas into a->dns. */
static int parse_dns(ctl_ca_t *a, const ctl_config_t *cfg, char *err, size_t errlen)
{
    char def[512];
    const char *list = cfg->tls_dns_names;
    if (!list || !*list) {
        snprintf(def, sizeof(def), "meshfed.%s.svc", cfg->system_namespace);
        list = def;
    }
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0) {
            if (a->ndns == CA_MAX_DNS) {
                errf(err, errlen, "tls-dns-names: more than %d names", CA_MAX_DNS);
                return -1;
            }
            if (!(a->dns[a->ndns++] = strndup(p, n))) {
                errf(err, errlen, "out of memory");
                return -1;
            }
        }
        p += n + (p[n] == ',');
    }
    if (a->ndns == 0) {
        errf(err, errlen, "tls-dns-names: no name");
        return -1;
    }
    return 0;
}

int ctl_ca_serving(ctl_ca_t *a, const xds_ca_t *first, char **chain, char **key, char *err,
                   size_t errlen)
{
    char buf[CTL_ERRLEN];
    int64_t not_after = 0;
    if (parse_dns(a, ctl_config(a->ctl), buf, sizeof(buf)) < 0) {
        errf(err, errlen, "ca: %s", buf);
        return -1;
    }
    int rc = xds_ca_issue_server(first, (const char *const *)a->dns, a->ndns, CA_SERVING_TTL_S,
                                 chain, key, &not_after, buf, sizeof(buf));
    if (rc != XDS_CA_OK) {
        errf(err, errlen, "ca: the xDS serving certificate: %s: %s", xds_ca_strerror(rc), buf);
        return -1;
    }
    time_t now = time(NULL);
    a->serving = true;
    a->renew_at = now + ((time_t)not_after - now) / 2;
    ctl_log(CTL_INFO,
            "CA: no --tls-cert: the xDS TLS listener serves a certificate for %s%s issued by the "
            "CA, renewed at half its life",
            a->dns[0], a->ndns > 1 ? " (and more)" : "");
    return 0;
}

int ctl_ca_watch(ctl_ca_t *a, xds_server_t *x)
{
    a->xds = x;
    if (!a->dir && !a->secret && !a->serving)
        return 0;
    if (pthread_create(&a->thr, NULL, watcher, a) != 0)
        return -1;
    a->started = true;
    return 0;
}

void ctl_ca_stop(ctl_ca_t *a)
{
    if (!a || !a->started)
        return;
    pthread_mutex_lock(&a->mu);
    a->quit = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thr, NULL);
    a->started = false;
}

void ctl_ca_free(ctl_ca_t *a)
{
    if (!a)
        return;
    ctl_ca_stop(a);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a->dir);
    free(a->secret);
    free(a->secret_rv);
    for (size_t i = 0; i < a->ndns; i++)
        free(a->dns[i]);
    if (a->have_conn)
        kube_conn_free(&a->conn);
    free(a->accounts);
    free(a);
}

/* ---------- node authorization ---------- */

typedef struct node_q {
    const char *cluster, *caller_ns, *caller_pod, *caller_uid, *caller_sa, *ns, *sa;
    char *why;
    size_t whylen;
    const char *node; /* the caller pod's, borrowed under the model lock */
    bool found;
} node_q_t;

static void find_on_node(const void *obj, void *arg)
{
    const model_pod_t *p = obj;
    node_q_t *q = arg;
    if (!q->found && !p->terminal && p->node && strcmp(p->node, q->node) == 0 && p->ns &&
        strcmp(p->ns, q->ns) == 0 && p->service_account && strcmp(p->service_account, q->sa) == 0)
        q->found = true;
}

static void node_check(const model_t *m, void *arg)
{
    node_q_t *q = arg;
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", q->caller_ns, q->caller_pod);
    const model_pod_t *caller = model_object(m, q->cluster, MODEL_KIND_POD, key);
    if (!caller) {
        snprintf(q->why, q->whylen, "its pod %s is not known in cluster %s", key, q->cluster);
        return;
    }
    /* the model keeps no pod uid (memory): the API server already refuses a
     * pod-bound token whose pod is gone or was recreated, which is what
     * istiod's uid comparison guards against */
    if (caller->uid && strcmp(caller->uid, q->caller_uid) != 0) {
        snprintf(q->why, q->whylen, "its pod %s has another uid (recreated): retry", key);
        return;
    }
    if (!caller->service_account || strcmp(caller->service_account, q->caller_sa) != 0) {
        snprintf(q->why, q->whylen, "its pod %s runs as another service account", key);
        return;
    }
    if (!caller->node) {
        snprintf(q->why, q->whylen, "its pod %s is on no node", key);
        return;
    }
    q->node = caller->node;
    model_each_object(m, q->cluster, MODEL_KIND_POD, find_on_node, q);
    if (!q->found)
        snprintf(q->why, q->whylen, "no pod of %s/%s runs on its node %s", q->ns, q->sa, q->node);
}

bool ctl_ca_node_authorize(void *arg, const char *cluster, const char *caller_ns,
                           const char *caller_pod, const char *caller_uid, const char *caller_sa,
                           const char *ns, const char *sa, char *why, size_t whylen)
{
    ctl_ca_t *a = arg;
    if (!*a->accounts || !ctl_auth_identity_allowed(a->accounts, caller_ns, caller_sa)) {
        snprintf(why, whylen, "not a node agent (ca-node-accounts)");
        return false;
    }
    node_q_t q = {cluster, caller_ns, caller_pod, caller_uid, caller_sa, ns,
                  sa,      why,       whylen,     NULL,       false};
    ctl_with_model(a->ctl, node_check, &q);
    return q.found;
}
