/*
 * remote_secret.c - `meshfed create-remote-secret`: prints the Secret that
 * lets the meshfed of other clusters watch this one (like istioctl
 * create-remote-secret).
 *
 * The kubeconfig inside carries a token of a ServiceAccount of this cluster
 * (minted with the TokenRequest API) and the cluster's CA, never the user's
 * own credentials unless --use-user-credentials says so.
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rs_opts {
    const char *kubeconfig, *context, *name, *ns, *sa, *server;
    long duration;
    bool user_creds;
} rs_opts_t;

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
           "  --token-duration SECONDS  token lifetime (default 31536000, one year)\n"
           "  --use-user-credentials    embed the kubeconfig's own credentials instead of a\n"
           "                            ServiceAccount token (not recommended)\n");
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
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (rs_opts_t){.ns = "istio-system", .sa = "meshfed", .duration = 31536000};
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
    if (!o->name || !*o->name || strchr(o->name, '/') || strchr(o->name, '\n')) {
        snprintf(err, errlen, "--name: the cluster ID is required (no '/')");
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

/* A ServiceAccount token from the TokenRequest API. Caller frees. */
static char *sa_token(const kube_conn_t *conn, const rs_opts_t *o, char *err, size_t errlen)
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
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    const char *tok = json_string_value(json_object_get(json_object_get(j, "status"), "token"));
    char *out = code / 100 == 2 && tok ? strdup(tok) : NULL;
    if (!out && code == 404)
        snprintf(err, errlen,
                 "ServiceAccount %s/%s not found: install meshfed in this cluster first (its "
                 "chart creates it) or name another with --service-account",
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
                         const char *ca)
{
    /* JSON strings are valid YAML double-quoted scalars */
    json_t *q = json_pack("[s, s, s, s]", o->server ? o->server : conn->server, o->name,
                          token ? token : "", ca ? ca : "");
    char *server = json_dumps(json_array_get(q, 0), JSON_ENCODE_ANY);
    char *name = json_dumps(json_array_get(q, 1), JSON_ENCODE_ANY);
    char *tok = json_dumps(json_array_get(q, 2), JSON_ENCODE_ANY);
    char *cab = json_dumps(json_array_get(q, 3), JSON_ENCODE_ANY);
    printf("# Apply in every other cluster running meshfed: kubectl apply -f -\n"
           "apiVersion: v1\nkind: Secret\nmetadata:\n  name: istio-remote-secret-%s\n"
           "  namespace: %s\n  labels:\n    istio/multiCluster: \"true\"\n  annotations:\n"
           "    networking.istio.io/cluster: %s\ntype: Opaque\nstringData:\n  %s: |\n"
           "    apiVersion: v1\n    kind: Config\n    current-context: %s\n    clusters:\n"
           "    - name: %s\n      cluster:\n        server: %s\n",
           o->name, o->ns, name, name, name, name, server);
    if (ca)
        printf("        certificate-authority-data: %s\n", cab);
    else if (conn->insecure)
        printf("        insecure-skip-tls-verify: true\n");
    if (conn->tls_server_name)
        printf("        tls-server-name: \"%s\"\n", conn->tls_server_name);
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
    char *token = NULL, *ca = NULL;
    if (rc == 0 && !o.user_creds) {
        token = sa_token(&conn, &o, err, sizeof(err));
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
        print_secret(&o, &conn, token, ca);
    } else {
        fprintf(stderr, "meshfed create-remote-secret: %s\n", err);
    }
    free(token);
    free(ca);
    kube_conn_free(&conn);
    return rc == 0 ? 0 : 1;
}
