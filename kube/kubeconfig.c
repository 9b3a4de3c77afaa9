/*
 * kubeconfig.c - connection settings for one API server: parsing kubeconfig
 * files (clusters/users/contexts) and the in-cluster service account config.
 *
 * Credentials: token, token file, client certificate, and exec plugins
 * (exec.c) where the caller allows them (KUBE_KC_EXEC: a kubeconfig the
 * operator gave, never one from a Secret). auth-provider plugins (removed
 * from kubectl) are rejected with a clear error, not silently ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_int.h"

void kube_conn_free(kube_conn_t *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->ca_file);
    free(c->ca_data);
    free(c->token);
    free(c->token_file);
    free(c->cert_file);
    free(c->cert_data);
    free(c->key_file);
    free(c->key_data);
    free(c->tls_server_name);
    kube_exec_free(c->exec);
    memset(c, 0, sizeof(*c));
}

static int kube_dup(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

static int kube_dupn(char **dst, const char *src, size_t n)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = malloc(n + 1);
    if (!*dst)
        return -1;
    memcpy(*dst, src, n);
    (*dst)[n] = '\0';
    return 0;
}

int kube_conn_copy(kube_conn_t *dst, const kube_conn_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->insecure = src->insecure;
    dst->ca_len = src->ca_len;
    dst->cert_len = src->cert_len;
    dst->key_len = src->key_len;
    if (kube_dup(&dst->server, src->server) || kube_dup(&dst->ca_file, src->ca_file) ||
        kube_dupn(&dst->ca_data, src->ca_data, src->ca_len) || kube_dup(&dst->token, src->token) ||
        kube_dup(&dst->token_file, src->token_file) || kube_dup(&dst->cert_file, src->cert_file) ||
        kube_dupn(&dst->cert_data, src->cert_data, src->cert_len) ||
        kube_dup(&dst->key_file, src->key_file) ||
        kube_dupn(&dst->key_data, src->key_data, src->key_len) ||
        kube_dup(&dst->tls_server_name, src->tls_server_name) ||
        (src->exec && !(dst->exec = kube_exec_copy(src->exec)))) {
        kube_conn_free(dst);
        return -1;
    }
    return 0;
}

/* ---------- base64 (kubeconfig *-data fields) ---------- */

static int kube_b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

char *kube_base64_encode(const char *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    for (size_t i = 0; out && i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        *p++ = tab[v >> 18 & 63];
        *p++ = tab[v >> 12 & 63];
        *p++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? tab[v & 63] : '=';
    }
    if (out)
        *p = '\0';
    return out;
}

/* Standard base64 with padding; whitespace is skipped (YAML folds long
 * values). */
char *kube_base64_decode(const char *in, size_t *outlen)
{
    size_t n = strlen(in), o = 0, q = 0, pad = 0;
    unsigned acc = 0;
    char *out = malloc(n / 4 * 3 + 4);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            acc <<= 6;
            q++;
        } else {
            int v = kube_b64val(c);
            if (v < 0 || pad)
                goto bad;
            acc = (acc << 6) | (unsigned)v;
            q++;
        }
        if (q == 4) {
            if (pad > 2)
                goto bad;
            out[o++] = (char)(acc >> 16);
            if (pad < 2)
                out[o++] = (char)(acc >> 8);
            if (pad < 1)
                out[o++] = (char)acc;
            q = 0;
            acc = 0;
        }
    }
    if (q != 0)
        goto bad;
    out[o] = '\0';
    *outlen = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---------- kubeconfig walking ---------- */

static int kube_first_doc(json_t *doc, void *arg)
{
    json_t **out = arg;
    *out = json_incref(doc);
    return 1; /* only the first document */
}

/* The "field" member of the entry named name in the list key (clusters,
 * users, contexts). NULL with err set when absent or mistyped. */
static json_t *kube_named(json_t *root, const char *key, const char *field, const char *name,
                          char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, key), *it;
    size_t i;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "kubeconfig: %s: expected a list", key);
        return NULL;
    }
    json_array_foreach(arr, i, it)
    {
        const char *n = json_string_value(json_object_get(it, "name"));
        if (!json_is_object(it) || !n) {
            snprintf(err, errlen, "kubeconfig: %s[%zu]: expected a mapping with a name", key, i);
            return NULL;
        }
        if (strcmp(n, name) != 0)
            continue;
        json_t *v = json_object_get(it, field);
        if (!json_is_object(v)) {
            snprintf(err, errlen, "kubeconfig: %s[%zu] (%s): %s: expected a mapping", key, i, name,
                     field);
            return NULL;
        }
        return v;
    }
    snprintf(err, errlen, "kubeconfig: %s \"%s\" not found", field, name);
    return NULL;
}

/* Optional string field: 0 (absent or copied), -1 wrong type / no memory. */
static int kube_str(json_t *obj, const char *what, const char *key, char **dst, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    *dst = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "kubeconfig: %s: %s: expected a string", what, key);
        return -1;
    }
    if (kube_dup(dst, json_string_value(v)) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Optional base64 field into dst/len. */
static int kube_b64(json_t *obj, const char *what, const char *key, char **dst, size_t *len,
                    char *err, size_t errlen)
{
    char *s;
    if (kube_str(obj, what, key, &s, err, errlen) < 0)
        return -1;
    if (!s)
        return 0;
    *dst = kube_base64_decode(s, len);
    free(s);
    if (!*dst) {
        snprintf(err, errlen, "kubeconfig: %s: %s: invalid base64", what, key);
        return -1;
    }
    return 0;
}

static int kube_kc_cluster(json_t *c, const char *name, kube_conn_t *out, char *err, size_t errlen)
{
    char what[300];
    snprintf(what, sizeof(what), "cluster \"%s\"", name);
    json_t *ins = json_object_get(c, "insecure-skip-tls-verify");
    if (ins && !json_is_null(ins) && !json_is_boolean(ins)) {
        snprintf(err, errlen, "kubeconfig: %s: insecure-skip-tls-verify: expected a boolean", what);
        return -1;
    }
    out->insecure = json_is_true(ins);
    if (kube_str(c, what, "server", &out->server, err, errlen) < 0 ||
        kube_str(c, what, "certificate-authority", &out->ca_file, err, errlen) < 0 ||
        kube_b64(c, what, "certificate-authority-data", &out->ca_data, &out->ca_len, err, errlen) <
            0 ||
        kube_str(c, what, "tls-server-name", &out->tls_server_name, err, errlen) < 0)
        return -1;
    if (!out->server || !*out->server) {
        snprintf(err, errlen, "kubeconfig: %s: server is missing", what);
        return -1;
    }
    if (strncmp(out->server, "https://", 8) != 0 && strncmp(out->server, "http://", 7) != 0) {
        snprintf(err, errlen, "kubeconfig: %s: server \"%s\" is not an http(s) URL", what,
                 out->server);
        return -1;
    }
    return 0;
}

static int kube_kc_user(json_t *u, const char *name, unsigned flags, kube_conn_t *out, char *err,
                        size_t errlen)
{
    char what[300];
    snprintf(what, sizeof(what), "user \"%s\"", name);
    json_t *ex = json_object_get(u, "exec");
    if (ex && !json_is_null(ex) && !(flags & KUBE_KC_EXEC)) {
        snprintf(err, errlen,
                 "kubeconfig: user %s uses an exec credential plugin, which meshfed runs only "
                 "for the kubeconfig it is given, never for one from a Secret; use a token or "
                 "client certificate (see docs)",
                 name);
        return -1;
    }
    if (ex && !json_is_null(ex) && !(out->exec = kube_exec_parse(ex, name, out, err, errlen)))
        return -1;
    if (json_object_get(u, "auth-provider")) {
        snprintf(err, errlen,
                 "kubeconfig: user %s uses an auth-provider plugin, which meshfed does not "
                 "run; use a token or client certificate (see docs)",
                 name);
        return -1;
    }
    if (json_object_get(u, "username") || json_object_get(u, "password")) {
        snprintf(err, errlen, "kubeconfig: %s: basic auth is not supported", what);
        return -1;
    }
    return kube_str(u, what, "token", &out->token, err, errlen) < 0 ||
                   kube_str(u, what, "tokenFile", &out->token_file, err, errlen) < 0 ||
                   kube_str(u, what, "client-certificate", &out->cert_file, err, errlen) < 0 ||
                   kube_b64(u, what, "client-certificate-data", &out->cert_data, &out->cert_len,
                            err, errlen) < 0 ||
                   kube_str(u, what, "client-key", &out->key_file, err, errlen) < 0 ||
                   kube_b64(u, what, "client-key-data", &out->key_data, &out->key_len, err,
                            errlen) < 0
               ? -1
               : 0;
}

static int kube_kc_walk(json_t *root, const char *context, unsigned flags, kube_conn_t *out,
                        char *err, size_t errlen)
{
    if (!json_is_object(root)) {
        snprintf(err, errlen, "kubeconfig: not a mapping");
        return -1;
    }
    if (!context) {
        json_t *cc = json_object_get(root, "current-context");
        if (cc && !json_is_string(cc)) {
            snprintf(err, errlen, "kubeconfig: current-context: expected a string");
            return -1;
        }
        context = json_string_value(cc);
        if (!context || !*context) {
            snprintf(err, errlen, "kubeconfig: no context given and current-context is not set");
            return -1;
        }
    }
    json_t *ctx = kube_named(root, "contexts", "context", context, err, errlen);
    if (!ctx)
        return -1;
    const char *cname = json_string_value(json_object_get(ctx, "cluster"));
    const char *uname = json_string_value(json_object_get(ctx, "user"));
    if (!cname) {
        snprintf(err, errlen, "kubeconfig: context \"%s\": cluster: expected a string", context);
        return -1;
    }
    json_t *cl = kube_named(root, "clusters", "cluster", cname, err, errlen);
    if (!cl || kube_kc_cluster(cl, cname, out, err, errlen) < 0)
        return -1;
    json_t *uv = json_object_get(ctx, "user");
    if (!uv || json_is_null(uv))
        return 0; /* a context without a user: anonymous */
    if (!uname) {
        snprintf(err, errlen, "kubeconfig: context \"%s\": user: expected a string", context);
        return -1;
    }
    json_t *u = kube_named(root, "users", "user", uname, err, errlen);
    return u ? kube_kc_user(u, uname, flags, out, err, errlen) : -1;
}

int kube_conn_from_kubeconfig(const char *text, size_t len, const char *context, kube_conn_t *out,
                              char *err, size_t errlen)
{
    return kube_conn_from_kubeconfig_ex(text, len, context, 0, out, err, errlen);
}

int kube_conn_from_kubeconfig_ex(const char *text, size_t len, const char *context, unsigned flags,
                                 kube_conn_t *out, char *err, size_t errlen)
{
    json_t *root = NULL;
    memset(out, 0, sizeof(*out));
    int rc = kube_manifest_load_string(text, len, kube_first_doc, &root, err, errlen);
    if (rc < 0) {
        json_decref(root);
        return -1;
    }
    if (!root) {
        snprintf(err, errlen, "kubeconfig: empty");
        return -1;
    }
    rc = kube_kc_walk(root, context, flags, out, err, errlen);
    json_decref(root);
    if (rc < 0)
        kube_conn_free(out);
    return rc;
}

/* ---------- in-cluster ---------- */

int kube_conn_in_cluster(kube_conn_t *out, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = getenv("MESHFED_SA_DIR");
    char buf[1024];
    memset(out, 0, sizeof(*out));
    if (!dir || !*dir)
        dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    if (!host || !*host || !port || !*port) {
        snprintf(
            err, errlen,
            "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT not set): give --kubeconfig "
            "FILE, or try --demo examples");
        return -1;
    }
    /* An IPv6 service address needs brackets in the URL. */
    snprintf(buf, sizeof(buf), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    if (kube_dup(&out->server, buf) < 0)
        goto oom;
    snprintf(buf, sizeof(buf), "%s/token", dir);
    FILE *f = fopen(buf, "r");
    if (!f) {
        snprintf(err, errlen, "in-cluster config: %s: %s", buf, strerror(errno));
        kube_conn_free(out);
        return -1;
    }
    fclose(f);
    if (kube_dup(&out->token_file, buf) < 0)
        goto oom;
    snprintf(buf, sizeof(buf), "%s/ca.crt", dir);
    if (kube_dup(&out->ca_file, buf) < 0)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    kube_conn_free(out);
    return -1;
}
