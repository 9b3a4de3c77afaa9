/*
 * remote_secret.c - `meshfed create-remote-secret`: prints the Secret that
 * lets the meshfed of other clusters watch this one (like istioctl
 * create-remote-secret).
 *
 * The kubeconfig inside carries a token of a ServiceAccount of this cluster
 * (minted with the TokenRequest API) and the cluster's CA, never the user's
 * own credentials unless --use-user-credentials says so.
 *
 * The Secret is named meshfed-remote-secret-<id>, not istioctl's
 * istio-remote-secret-<id>, so that applying it never replaces a Secret
 * istiod reads; meshfed still watches both, by their istio/multiCluster label.
 */
#include "ctl_int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rs_opts {
    const char *kubeconfig, *context, *name, *ns, *sa, *server, *tls_server_name;
    long duration;
    bool user_creds, create_sa;
} rs_opts_t;

#define RS_PREFIX "meshfed-remote-secret-"
#define RS_READER "meshfed-remote-reader"

/* The ClusterRole a created ServiceAccount is bound to: the cluster-wide
 * reads of the chart's ClusterRole, and the TokenReviews that verify that
 * cluster's ztunnels: all a remote meshfed does there. */
static const char RS_READER_ROLE[] =
    "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\","
    "\"metadata\":{\"name\":\"" RS_READER "\"},\"rules\":["
    "{\"apiGroups\":[\"\"],\"resources\":[\"namespaces\",\"services\",\"pods\",\"nodes\"],"
    "\"verbs\":[\"get\",\"list\",\"watch\"]},"
    "{\"apiGroups\":[\"discovery.k8s.io\"],\"resources\":[\"endpointslices\"],"
    "\"verbs\":[\"get\",\"list\",\"watch\"]},"
    "{\"apiGroups\":[\"meshfed.io\"],\"resources\":[\"servicescopes\"],"
    "\"verbs\":[\"get\",\"list\",\"watch\"]},"
    "{\"apiGroups\":[\"gateway.networking.k8s.io\"],\"resources\":[\"gateways\"],"
    "\"verbs\":[\"get\",\"list\",\"watch\"]},"
    /* the cluster's ztunnels' tokens are verified against it (--xds-auth jwt) */
    "{\"apiGroups\":[\"authentication.k8s.io\"],\"resources\":[\"tokenreviews\"],"
    "\"verbs\":[\"create\"]}]}";

static void rs_usage(void)
{
    printf("usage: meshfed create-remote-secret --name CLUSTER_ID [flags] > secret.yaml\n\n"
           "Prints a Secret to apply in every other cluster's meshfed namespace, so that\n"
           "their meshfed watches this cluster. Flags:\n"
           "  --name ID                 cluster ID of this cluster (required)\n"
           "  --kubeconfig FILE         kubeconfig of this cluster (default $KUBECONFIG,\n"
           "                            then ~/.kube/config)\n"
           "  --context NAME            context in it (default: current-context)\n"
           "  --namespace NS            namespace of the Secret and of the ServiceAccount\n"
           "                            (default istio-system)\n"
           "  --service-account NAME    ServiceAccount whose token is used (default meshfed)\n"
           "  --server URL              API server URL other clusters use (default: the\n"
           "                            kubeconfig's)\n"
           "  --tls-server-name NAME    name to verify the API server's certificate against\n"
           "                            when --server is an address it was not issued for\n"
           "                            (default: the kubeconfig's tls-server-name)\n"
           "  --create-service-account[=false]\n"
           "                            create the ServiceAccount, and a ClusterRole\n"
           "                            " RS_READER " bound to it, if it is missing\n"
           "                            (default true, as istioctl)\n"
           "  --token-duration SECONDS  token lifetime (default 31536000, one year)\n"
           "  --use-user-credentials    embed the kubeconfig's own credentials instead of a\n"
           "                            ServiceAccount token (not recommended)\n\n"
           "The Secret is named " RS_PREFIX "ID; the token's expiry is printed on\n"
           "stderr and kept in the Secret's meshfed.io/token-expiration annotation.\n");
}

/* The Secret's name, RS_PREFIX + id, must be a DNS-1123 subdomain (253
 * characters at most); the id is also the kubeconfig's key in its data. */
#define RS_ID_MAX (253 - (sizeof(RS_PREFIX) - 1))

static bool valid_cluster_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > RS_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || i == n - 1 || (c != '-' && c != '.')))
            return false;
        if (c == '.' && (id[i - 1] == '.' || id[i - 1] == '-' || id[i + 1] == '-'))
            return false;
    }
    return true;
}

static int rs_parse(int argc, char **argv, rs_opts_t *o, char *err, size_t errlen)
{
    static const struct option opts[] = {{"name", required_argument, NULL, 'n'},
                                         {"kubeconfig", required_argument, NULL, 'k'},
                                         {"context", required_argument, NULL, 'c'},
                                         {"namespace", required_argument, NULL, 's'},
                                         {"service-account", required_argument, NULL, 'a'},
                                         {"server", required_argument, NULL, 'u'},
                                         {"token-duration", required_argument, NULL, 'd'},
                                         {"use-user-credentials", no_argument, NULL, 'U'},
                                         {"tls-server-name", required_argument, NULL, 't'},
                                         {"create-service-account", optional_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o =
        (rs_opts_t){.ns = "istio-system", .sa = "meshfed", .duration = 31536000, .create_sa = true};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o->name = optarg;
            break;
        case 'k':
            o->kubeconfig = optarg;
            break;
        case 'c':
            o->context = optarg;
            break;
        case 's':
            o->ns = optarg;
            break;
        case 'a':
            o->sa = optarg;
            break;
        case 'u':
            o->server = optarg;
            break;
        case 'U':
            o->user_creds = true;
            break;
        case 't':
            o->tls_server_name = optarg;
            break;
        case 'C':
            if (!optarg || strcmp(optarg, "true") == 0) {
                o->create_sa = true;
            } else if (strcmp(optarg, "false") == 0) {
                o->create_sa = false;
            } else {
                snprintf(err, errlen, "--create-service-account: \"%s\" is not true or false",
                         optarg);
                return -1;
            }
            break;
        case 'd': {
            char *end;
            o->duration = strtol(optarg, &end, 10);
            if (*end || o->duration < 600) {
                snprintf(err, errlen, "--token-duration: \"%s\" is not a number of seconds >= 600",
                         optarg);
                return -1;
            }
            break;
        }
        case 'h':
            rs_usage();
            return 1;
        default:
            snprintf(err, errlen, "unknown or incomplete flag \"%s\" (see --help)",
                     argv[optind - 1]);
            return -1;
        }
    }
    if (!o->name) {
        snprintf(err, errlen, "--name: the cluster ID is required");
        return -1;
    }
    if (!valid_cluster_id(o->name)) {
        snprintf(err, errlen,
                 "--name: \"%s\" is not a valid cluster ID: lower-case letters, digits, '-' "
                 "and '.', starting and ending with a letter or digit, at most %zu characters "
                 "(it names the Secret " RS_PREFIX "ID)",
                 o->name, RS_ID_MAX);
        return -1;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    char err[CTL_ERRLEN];
    char *text = ctl_read_file(path, CTL_MAX_MANIFEST, len, err, sizeof(err));
    if (!text)
        fprintf(stderr, "meshfed create-remote-secret: %s\n", err);
    return text;
}

/* POSTs one object; one that already exists is fine. */
static int rs_create(const kube_conn_t *conn, const char *path, const char *what, const char *body,
                     char *err, size_t errlen)
{
    long code = 0;
    char *resp = NULL;
    if (kube_request(conn, "POST", path, NULL, body, &code, &resp, err, errlen) < 0)
        return -1;
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    int rc = code / 100 == 2 || code == 409 ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "creating %s: HTTP %ld: %s", what, code, msg ? msg : "no message");
    else if (code != 409)
        fprintf(stderr, "meshfed create-remote-secret: created %s\n", what);
    json_decref(j);
    free(resp);
    return rc;
}

/* The ServiceAccount, the reader ClusterRole and their binding, as
 * istioctl's --create-service-account does for istio-reader. */
static int create_sa(const kube_conn_t *conn, const rs_opts_t *o, char *err, size_t errlen)
{
    char path[600], what[600], body[1200];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/serviceaccounts", o->ns);
    snprintf(what, sizeof(what), "ServiceAccount %s/%s", o->ns, o->sa);
    snprintf(body, sizeof(body),
             "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\","
             "\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"}}",
             o->sa, o->ns);
    if (rs_create(conn, path, what, body, err, errlen) < 0)
        return -1;
    if (rs_create(conn, "/apis/rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole " RS_READER,
                  RS_READER_ROLE, err, errlen) < 0)
        return -1;
    snprintf(what, sizeof(what), "ClusterRoleBinding " RS_READER "-%s-%s", o->ns, o->sa);
    snprintf(body, sizeof(body),
             "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\","
             "\"metadata\":{\"name\":\"" RS_READER "-%s-%s\"},"
             "\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\","
             "\"name\":\"" RS_READER "\"},"
             "\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"%s\",\"namespace\":\"%s\"}]}",
             o->ns, o->sa, o->sa, o->ns);
    return rs_create(conn, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", what, body,
                     err, errlen);
}

/* A ServiceAccount token from the TokenRequest API, its expiry (as the API
 * server granted it, which may be shorter than asked) in expiry. Caller
 * frees. */
static char *sa_token(const kube_conn_t *conn, const rs_opts_t *o, char *expiry, size_t expirylen,
                      char *err, size_t errlen)
{
    char path[600], body[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/serviceaccounts/%s/token", o->ns, o->sa);
    snprintf(body, sizeof(body),
             "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\","
             "\"spec\":{\"expirationSeconds\":%ld}}",
             o->duration);
    long code = 0;
    char *resp = NULL;
    if (kube_request(conn, "POST", path, NULL, body, &code, &resp, err, errlen) < 0)
        return NULL;
    if (code == 404 && o->create_sa) {
        free(resp);
        resp = NULL;
        if (create_sa(conn, o, err, errlen) < 0 ||
            kube_request(conn, "POST", path, NULL, body, &code, &resp, err, errlen) < 0)
            return NULL;
    }
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    json_t *st = json_object_get(j, "status");
    const char *tok = json_string_value(json_object_get(st, "token"));
    const char *exp = json_string_value(json_object_get(st, "expirationTimestamp"));
    /* an RFC 3339 time, checked as it goes into the YAML as it is */
    if (exp && strspn(exp, "0123456789-:.TZ+") == strlen(exp))
        snprintf(expiry, expirylen, "%s", exp);
    char *out = code / 100 == 2 && tok ? strdup(tok) : NULL;
    if (!out && code == 404)
        snprintf(err, errlen,
                 "ServiceAccount %s/%s not found: install meshfed in this cluster first (its "
                 "chart creates it), name another with --service-account, or leave "
                 "--create-service-account on",
                 o->ns, o->sa);
    else if (!out)
        snprintf(err, errlen, "TokenRequest for %s/%s: HTTP %ld: %s", o->ns, o->sa, code,
                 json_string_value(json_object_get(j, "message"))
                     ? json_string_value(json_object_get(j, "message"))
                     : "no token in the answer");
    json_decref(j);
    free(resp);
    return out;
}

/* The CA as base64 PEM, from the kubeconfig's data or file. */
static char *ca_b64(const kube_conn_t *conn)
{
    if (conn->ca_data)
        return kube_base64_encode(conn->ca_data, conn->ca_len);
    size_t n;
    char *pem = conn->ca_file ? read_file(conn->ca_file, &n) : NULL;
    char *out = pem ? kube_base64_encode(pem, n) : NULL;
    free(pem);
    return out;
}

static void print_secret(const rs_opts_t *o, const kube_conn_t *conn, const char *token,
                         const char *ca, const char *expiry)
{
    /* JSON strings are valid YAML double-quoted scalars */
    const char *sni = o->tls_server_name ? o->tls_server_name : conn->tls_server_name;
    json_t *q = json_pack("[s, s, s, s, s]", o->server ? o->server : conn->server, o->name,
                          token ? token : "", ca ? ca : "", sni ? sni : "");
    char *server = json_dumps(json_array_get(q, 0), JSON_ENCODE_ANY);
    char *name = json_dumps(json_array_get(q, 1), JSON_ENCODE_ANY);
    char *tok = json_dumps(json_array_get(q, 2), JSON_ENCODE_ANY);
    char *cab = json_dumps(json_array_get(q, 3), JSON_ENCODE_ANY);
    char *tsn = json_dumps(json_array_get(q, 4), JSON_ENCODE_ANY);
    printf("# Apply in every other cluster running meshfed: kubectl apply -f -\n"
           "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " RS_PREFIX "%s\n"
           "  namespace: %s\n  labels:\n    istio/multiCluster: \"true\"\n  annotations:\n"
           "    networking.istio.io/cluster: %s\n",
           o->name, o->ns, name);
    if (*expiry)
        printf("    meshfed.io/token-expiration: \"%s\"\n", expiry);
    printf("type: Opaque\nstringData:\n  %s: |\n"
           "    apiVersion: v1\n    kind: Config\n    current-context: %s\n    clusters:\n"
           "    - name: %s\n      cluster:\n        server: %s\n",
           name, name, name, server);
    if (ca)
        printf("        certificate-authority-data: %s\n", cab);
    else if (conn->insecure)
        printf("        insecure-skip-tls-verify: true\n");
    if (sni)
        printf("        tls-server-name: %s\n", tsn);
    printf("    contexts:\n    - name: %s\n      context:\n        cluster: %s\n        user: %s\n"
           "    users:\n    - name: %s\n      user:\n",
           name, name, name, name);
    if (token) {
        printf("        token: %s\n", tok);
    } else {
        char *cert = conn->cert_data ? kube_base64_encode(conn->cert_data, conn->cert_len) : NULL;
        char *key = conn->key_data ? kube_base64_encode(conn->key_data, conn->key_len) : NULL;
        if (cert)
            printf("        client-certificate-data: %s\n", cert);
        if (key)
            printf("        client-key-data: %s\n", key);
        free(cert);
        free(key);
    }
    free(server);
    free(name);
    free(tok);
    free(cab);
    free(tsn);
    json_decref(q);
}

int ctl_create_remote_secret(int argc, char **argv)
{
    rs_opts_t o;
    char err[CTL_ERRLEN] = "";
    int rc = rs_parse(argc, argv, &o, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "meshfed create-remote-secret: %s\n", err);
        return rc < 0 ? 2 : 0;
    }
    char home[4096];
    const char *path = o.kubeconfig ? o.kubeconfig : getenv("KUBECONFIG");
    if (!path && getenv("HOME")) {
        snprintf(home, sizeof(home), "%s/.kube/config", getenv("HOME"));
        path = home;
    }
    size_t len = 0;
    char *text = path ? read_file(path, &len) : NULL;
    if (!text) {
        fprintf(stderr, "meshfed create-remote-secret: cannot read kubeconfig %s\n",
                path ? path : "(none given)");
        return 1;
    }
    kube_conn_t conn;
    memset(&conn, 0, sizeof(conn));
    rc = kube_conn_from_kubeconfig_ex(text, len, o.context, KUBE_KC_EXEC, &conn, err, sizeof(err));
    free(text);
    char *token = NULL, *ca = NULL, expiry[64] = "";
    if (rc == 0 && !o.user_creds) {
        token = sa_token(&conn, &o, expiry, sizeof(expiry), err, sizeof(err));
        rc = token ? 0 : -1;
    } else if (rc == 0 && conn.token) {
        token = strdup(conn.token);
    } else if (rc == 0 && !conn.cert_data) {
        snprintf(err, sizeof(err),
                 "--use-user-credentials needs a token or inline client "
                 "certificate in the kubeconfig");
        rc = -1;
    }
    if (rc == 0) {
        ca = ca_b64(&conn);
        print_secret(&o, &conn, token, ca, expiry);
        if (*expiry)
            fprintf(stderr,
                    "meshfed create-remote-secret: the token of %s/%s expires at %s; run this "
                    "again and re-apply the Secret before then\n",
                    o.ns, o.sa, expiry);
    } else {
        fprintf(stderr, "meshfed create-remote-secret: %s\n", err);
    }
    free(token);
    free(ca);
    kube_conn_free(&conn);
    return rc == 0 ? 0 : 1;
}
