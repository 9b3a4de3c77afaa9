/*
 * config.c - meshfed's settings from flags, environment and a config file.
 *
 * One table names every setting once: its flag, its environment variable,
 * the key in the config file (the flag name) and its default. Precedence is
 * flag, then environment, then file, then default. A bad value stops the
 * program at start with the setting's name in the message.
 */
#include "ctl_int.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_LEVEL, T_FORMAT, T_BOOL, T_DUR, T_MS } type_t;

typedef struct setting {
    const char *flag;
    const char *env;
    type_t type;
    size_t off;
    const char *def;
    const char *help;
} setting_t;

/* The range each integer setting accepts. */
static const struct {
    const char *flag;
    long min, max;
} int_ranges[] = {{"debounce-ms", 0, 10000},
                  {"stale-after", 1, 86400},
                  {"sync-warn-after", 1, 86400},
                  {"kube-max-list-pages", 1, 1000000},
                  {"kube-max-list-objects", 1, 100000000}};

/* The range each millisecond duration accepts (0: off, where allowed): grpc
 * core takes them as an int of milliseconds, so at most 24 days. */
#define MS_MAX (24L * 86400 * 1000)
static const struct {
    const char *flag;
    long min, max;
    bool zero_off;
} ms_ranges[] = {{"xds-max-connection-age", 1000, MS_MAX, true},
                 {"xds-max-connection-age-grace", 0, MS_MAX, false}};

#define OFF(f) offsetof(ctl_config_t, f)

static const setting_t settings[] = {
    {"cluster-id", "CLUSTER_ID", T_STR, OFF(cluster_id), "Kubernetes",
     "ID of the cluster meshfed runs in"},
    {"network", "NETWORK", T_STR, OFF(network), "",
     "network of the local cluster (default: topology.istio.io/network of the system namespace)"},
    {"system-namespace", "MESHFED_SYSTEM_NAMESPACE", T_STR, OFF(system_namespace), "istio-system",
     "namespace holding remote-cluster Secrets, the network label and the east-west gateway"},
    {"kubeconfig", "KUBECONFIG", T_STR, OFF(kubeconfig), NULL,
     "kubeconfig of the local cluster (default: in-cluster config)"},
    {"context", "MESHFED_CONTEXT", T_STR, OFF(context), NULL,
     "context of --kubeconfig to use (default: its current-context)"},
    {"demo", "MESHFED_DEMO", T_STR, OFF(demo_dir), NULL,
     "serve file-backed clusters: one subdirectory of manifests per cluster"},
    {"xds-listen", "MESHFED_XDS_LISTEN", T_STR, OFF(xds_listen), "127.0.0.1:15010",
     "plaintext xDS address"},
    {"xds-tls-listen", "MESHFED_XDS_TLS_LISTEN", T_STR, OFF(xds_tls_listen), NULL,
     "TLS xDS address (e.g. 0.0.0.0:15012)"},
    {"tls-cert", "MESHFED_TLS_CERT", T_STR, OFF(tls_cert), NULL, "PEM server certificate"},
    {"tls-key", "MESHFED_TLS_KEY", T_STR, OFF(tls_key), NULL, "PEM server key"},
    {"tls-dns-names", "MESHFED_TLS_DNS_NAMES", T_STR, OFF(tls_dns_names), NULL,
     "without tls-cert, with the CA: the DNS names (comma list) of the serving certificate the "
     "CA issues and renews for xds-tls-listen (default: meshfed.<system-namespace>.svc)"},
    {"debug-listen", "MESHFED_DEBUG_LISTEN", T_STR, OFF(debug_listen), "127.0.0.1:15014",
     "debug HTTP address (/ready, /metrics, /debug/...)"},
    {"probe-listen", "MESHFED_PROBE_LISTEN", T_STR, OFF(probe_listen), NULL,
     "an address that serves only /healthz and /ready, with its own small connection table, "
     "for the kubelet's probes (e.g. 0.0.0.0:15021; default: the probes use debug-listen)"},
    {"debug-token-file", "MESHFED_DEBUG_TOKEN_FILE", T_STR, OFF(debug_token_file), NULL,
     "file holding the bearer token /debug and /metrics require (needed when debug-listen "
     "is not a loopback address)"},
    {"xds-auth", "MESHFED_XDS_AUTH", T_STR, OFF(xds_auth), "none",
     "xDS client authentication: none, or jwt (service-account token checked by TokenReview "
     "with the claimed cluster; use jwt in production, with xds-tls-listen)"},
    {"xds-auth-audiences", "MESHFED_XDS_AUTH_AUDIENCES", T_STR, OFF(xds_auth_audiences), "istio-ca",
     "comma list of token audiences accepted with xds-auth jwt"},
    {"xds-allowed-identities", "MESHFED_XDS_ALLOWED_IDENTITIES", T_STR, OFF(xds_allowed_identities),
     "",
     "comma list of namespace/serviceaccount patterns (* for either) that may connect with "
     "xds-auth jwt, e.g. istio-system/ztunnel,*/istio-eastwest (empty: any)"},
    {"ca", "MESHFED_CA", T_STR, OFF(ca), "auto",
     "serve istio.v1.auth.IstioCertificateService/CreateCertificate on the xDS ports: on, off, "
     "or auto (on with xds-auth jwt, which it needs)"},
    {"cacerts-dir", "MESHFED_CACERTS_DIR", T_STR, OFF(cacerts_dir), NULL,
     "Istio cacerts directory (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem), "
     "reloaded when it changes (default: the cacerts-secret, else a self-signed root)"},
    {"cacerts-secret", "MESHFED_CACERTS_SECRET", T_STR, OFF(cacerts_secret), "cacerts",
     "without cacerts-dir: the Secret of the system namespace holding Istio's cacerts, read "
     "through the API and reloaded when it changes; when it does not exist, a self-signed root "
     "kept in the Secret istio-ca-secret, trusted by no other cluster (empty: that root)"},
    {"xds-max-connection-age", "MESHFED_XDS_MAX_CONNECTION_AGE", T_MS, OFF(xds_conn_age_ms), "30m",
     "about how long an xDS connection lives before GOAWAY (+-10% jitter), so that clients "
     "spread over new replicas (1s-24d, e.g. 30m; 0: forever)"},
    {"xds-max-connection-age-grace", "MESHFED_XDS_MAX_CONNECTION_AGE_GRACE", T_MS,
     OFF(xds_conn_age_grace_ms), "10s",
     "how long streams may go on after that GOAWAY before their connection is cut (0-24d)"},
    {"ca-max-ttl", "MESHFED_CA_MAX_TTL", T_DUR, OFF(ca_max_ttl_s), "24h",
     "longest workload certificate lifetime a request may ask for (e.g. 24h, 90m)"},
    {"ca-default-ttl", "MESHFED_CA_DEFAULT_TTL", T_DUR, OFF(ca_default_ttl_s), "24h",
     "workload certificate lifetime when a request asks for none"},
    {"ca-node-accounts", "MESHFED_CA_NODE_ACCOUNTS", T_STR, OFF(ca_node_accounts),
     "istio-system/ztunnel",
     "comma list of namespace/serviceaccount patterns that may ask for certificates of the "
     "workloads on their node (ImpersonatedIdentity); empty: none"},
    {"trust-domain", "TRUST_DOMAIN", T_STR, OFF(trust_domain), "cluster.local", "trust domain"},
    {"domain-suffix", "DOMAIN_SUFFIX", T_STR, OFF(domain_suffix), "cluster.local",
     "cluster DNS domain"},
    {"root-namespace", "MESHFED_ROOT_NAMESPACE", T_STR, OFF(root_namespace), "istio-system",
     "meshConfig.rootNamespace: its AuthorizationPolicies without a selector apply mesh-wide, "
     "its PeerAuthentications without one set the mesh's mTLS mode"},
    {"authz-dry-run", "AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY", T_BOOL, OFF(authz_dry_run),
     "false",
     "send AuthorizationPolicies annotated istio.io/dry-run=true to ztunnel marked dry run (it "
     "logs what it would allow or deny); off, as in istiod, they are not sent"},
    {"revision", "REVISION", T_STR, OFF(revision), "",
     "istio.io/rev: AuthorizationPolicies and PeerAuthentications labelled with another "
     "revision are ignored (unlabelled ones always apply; empty: every revision)"},
    {"prefer-local-cluster", "MESHFED_PREFER_LOCAL_CLUSTER", T_BOOL, OFF(prefer_cluster), "false",
     "with a Service's trafficDistribution, stay in the client's cluster before other clusters "
     "of its network (istiod goes by network, region, zone only)"},
    {"debounce-ms", "MESHFED_DEBOUNCE_MS", T_INT, OFF(debounce_ms), "100",
     "quiet time before a burst of events becomes one push (0-10000)"},
    {"stale-after", "MESHFED_STALE_AFTER", T_INT, OFF(stale_after_s), "60",
     "seconds an unreachable cluster keeps its state before it is marked stale (1-86400)"},
    {"sync-warn-after", "MESHFED_SYNC_WARN_AFTER", T_INT, OFF(sync_warn_after_s), "30",
     "seconds after which a cluster whose lists have not all completed is logged and shown in "
     "/debug/clusterz with why (1-86400)"},
    {"kube-max-list-pages", "MESHFED_KUBE_MAX_LIST_PAGES", T_INT, OFF(kube_max_list_pages), "10000",
     "pages one list may take before it is abandoned as endless (1-1000000)"},
    {"kube-max-list-objects", "MESHFED_KUBE_MAX_LIST_OBJECTS", T_INT, OFF(kube_max_list_objects),
     "1000000", "objects one list may hold before it is abandoned (1-100000000)"},
    {"log-level", "MESHFED_LOG_LEVEL", T_LEVEL, OFF(log_level), "info", "debug|info|warn|error"},
    {"log-format", "MESHFED_LOG_FORMAT", T_FORMAT, OFF(log_json), "text", "text|json"},
    {"once", "MESHFED_ONCE", T_BOOL, OFF(once), "false",
     "load, print every cluster's view as JSON and exit"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static void usage(void)
{
    printf("usage: meshfed [flags]\n       meshfed create-remote-secret --name ID [flags]\n\n"
           "A control plane for Istio ambient multicluster: watches every member cluster,\n"
           "decides which Services are global (ServiceScope) and serves xDS to ztunnels.\n\n"
           "flags (environment variable; also accepted as keys of --config FILE):\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        printf("  --%-18s %s (%s; default %s)\n", settings[i].flag, settings[i].help,
               settings[i].env,
               !settings[i].def   ? "none"
               : *settings[i].def ? settings[i].def
                                  : "empty");
    printf("  --%-18s YAML or JSON file with the settings above\n", "config");
    printf("  --%-18s print the version\n", "version");
}

/* The xds-auth settings, checked together once all sources are read. */
static int check_auth(const ctl_config_t *c, char *err, size_t errlen)
{
    char buf[CTL_ERRLEN];
    if (strcmp(c->xds_auth, "none") != 0 && strcmp(c->xds_auth, "jwt") != 0) {
        snprintf(err, errlen, "xds-auth: \"%s\" is not none or jwt", c->xds_auth);
        return -1;
    }
    if (strspn(c->xds_auth_audiences, ", ") == strlen(c->xds_auth_audiences)) {
        snprintf(err, errlen, "xds-auth-audiences: needs at least one audience");
        return -1;
    }
    if (ctl_auth_check_patterns(c->xds_allowed_identities, buf, sizeof(buf)) < 0) {
        snprintf(err, errlen, "xds-allowed-identities: %s", buf);
        return -1;
    }
    return 0;
}

/* The CA settings (docs/ca.md). */
static int check_ca(ctl_config_t *c, char *err, size_t errlen)
{
    char buf[CTL_ERRLEN];
    bool jwt = strcmp(c->xds_auth, "jwt") == 0;
    if (strcmp(c->ca, "on") && strcmp(c->ca, "off") && strcmp(c->ca, "auto")) {
        snprintf(err, errlen, "ca: \"%s\" is not on, off or auto", c->ca);
        return -1;
    }
    if (strcmp(c->ca, "on") == 0 && !jwt) {
        snprintf(err, errlen,
                 "ca on needs xds-auth jwt: a certificate is for the identity a "
                 "token proves");
        return -1;
    }
    c->ca_enabled = jwt && strcmp(c->ca, "off") != 0;
    if (c->ca_default_ttl_s > c->ca_max_ttl_s) {
        snprintf(err, errlen,
                 "ca-default-ttl: longer than ca-max-ttl (set it too: its "
                 "default is 24h)");
        return -1;
    }
    if (ctl_auth_check_patterns(c->ca_node_accounts, buf, sizeof(buf)) < 0) {
        snprintf(err, errlen, "ca-node-accounts: %s", buf);
        return -1;
    }
    return 0;
}

static int set(ctl_config_t *c, const setting_t *s, const char *v, const char *from, char *err,
               size_t errlen)
{
    char *field = (char *)c + s->off;
    switch (s->type) {
    case T_STR:
        free(*(char **)field);
        *(char **)field = strdup(v);
        return 0;
    case T_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        long min = 1, max = 86400;
        for (size_t i = 0; i < sizeof(int_ranges) / sizeof(int_ranges[0]); i++)
            if (strcmp(int_ranges[i].flag, s->flag) == 0)
                min = int_ranges[i].min, max = int_ranges[i].max;
        if (errno || end == v || *end || n < min || n > max) {
            snprintf(err, errlen, "%s %s: \"%s\" is not an integer in %ld..%ld", from, s->flag, v,
                     min, max);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    case T_DUR: { /* seconds, or a number with s, m, h or d; 1 minute to 10 years */
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        long unit = !*end                   ? 1
                    : strcmp(end, "s") == 0 ? 1
                    : strcmp(end, "m") == 0 ? 60
                    : strcmp(end, "h") == 0 ? 3600
                    : strcmp(end, "d") == 0 ? 86400
                                            : 0;
        if (errno || end == v || !unit || n < 1 || n > 3650L * 86400 / unit || n * unit < 60) {
            snprintf(err, errlen,
                     "%s %s: \"%s\" is not a duration from 1m to 3650d (e.g. 24h, 90m, 3600)", from,
                     s->flag, v);
            return -1;
        }
        *(int *)field = (int)(n * unit);
        return 0;
    }
    case T_MS: { /* a number with ms, s, m, h or d (seconds without) */
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10), min = 0, max = MS_MAX;
        bool zero_off = false;
        for (size_t i = 0; i < sizeof(ms_ranges) / sizeof(ms_ranges[0]); i++)
            if (strcmp(ms_ranges[i].flag, s->flag) == 0)
                min = ms_ranges[i].min, max = ms_ranges[i].max, zero_off = ms_ranges[i].zero_off;
        long unit = strcmp(end, "ms") == 0           ? 1
                    : !*end || strcmp(end, "s") == 0 ? 1000
                    : strcmp(end, "m") == 0          ? 60000
                    : strcmp(end, "h") == 0          ? 3600000
                    : strcmp(end, "d") == 0          ? 86400000
                                                     : 0;
        bool ok = !errno && end != v && unit && n >= 0 && n <= max / unit;
        if (!ok || (n * unit < min && !(zero_off && n == 0))) {
            snprintf(err, errlen,
                     "%s %s: \"%s\" is not a duration from %lds to %ldd%s (e.g. 30m, 90s, 500ms)",
                     from, s->flag, v, min / 1000, max / 86400000,
                     zero_off ? ", or 0 for off" : "");
            return -1;
        }
        *(int *)field = (int)(n * unit);
        return 0;
    }
    case T_LEVEL: {
        static const char *const levels[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++) {
            if (strcmp(v, levels[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        snprintf(err, errlen, "%s %s: \"%s\" is not one of debug, info, warn, error", from, s->flag,
                 v);
        return -1;
    }
    case T_FORMAT:
        if (strcmp(v, "text") && strcmp(v, "json")) {
            snprintf(err, errlen, "%s %s: \"%s\" is not text or json", from, s->flag, v);
            return -1;
        }
        *(bool *)field = strcmp(v, "json") == 0;
        return 0;
    case T_BOOL:
        if (strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "1") && strcmp(v, "0")) {
            snprintf(err, errlen, "%s %s: \"%s\" is not true or false", from, s->flag, v);
            return -1;
        }
        *(bool *)field = strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
        return 0;
    }
    return -1;
}

typedef struct file_ctx {
    ctl_config_t *c;
    const bool *from_flag;
    char *err;
    size_t errlen;
    int rc;
} file_ctx_t;

/* A setting by its flag name, or by the camelCase name the chart's values
 * use for it ("clusterId" for cluster-id); NSETTINGS when neither. */
static size_t setting_of(const char *key)
{
    char kebab[64];
    size_t n = 0;
    for (const char *p = key; *p && n < sizeof(kebab) - 2; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            kebab[n++] = '-';
            kebab[n++] = (char)(*p - 'A' + 'a');
        } else {
            kebab[n++] = *p;
        }
    }
    kebab[n] = '\0';
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].flag, key) == 0 || strcmp(settings[i].flag, kebab) == 0)
            return i;
    return NSETTINGS;
}

static int file_doc(json_t *doc, void *arg)
{
    file_ctx_t *f = arg;
    const char *key;
    json_t *val;
    json_object_foreach(doc, key, val)
    {
        size_t i = setting_of(key);
        if (i == NSETTINGS) {
            snprintf(f->err, f->errlen, "config file: unknown setting \"%s\"", key);
            return f->rc = -1;
        }
        char buf[64];
        const char *v = json_is_string(val) ? json_string_value(val) : NULL;
        if (json_is_integer(val)) {
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(val));
            v = buf;
        } else if (json_is_boolean(val)) {
            v = json_is_true(val) ? "true" : "false";
        }
        if (!v) {
            snprintf(f->err, f->errlen, "config file %s: expected a string, number or boolean",
                     key);
            return f->rc = -1;
        }
        if (!f->from_flag[i] && !getenv(settings[i].env) &&
            set(f->c, &settings[i], v, "config file", f->err, f->errlen) < 0)
            return f->rc = -1;
    }
    return 0;
}

int ctl_config_load(ctl_config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].def && set(c, &settings[i], settings[i].def, "default", err, errlen) < 0)
            return -1;
    struct option opts[NSETTINGS + 4];
    for (size_t i = 0; i < NSETTINGS; i++)
        opts[i] = (struct option){
            settings[i].flag, settings[i].type == T_BOOL ? optional_argument : required_argument,
            NULL, (int)(i + 1000)};
    opts[NSETTINGS] = (struct option){"config", required_argument, NULL, 'c'};
    opts[NSETTINGS + 1] = (struct option){"help", no_argument, NULL, 'h'};
    opts[NSETTINGS + 2] = (struct option){"version", no_argument, NULL, 'V'};
    opts[NSETTINGS + 3] = (struct option){NULL, 0, NULL, 0};
    bool from_flag[NSETTINGS] = {false};
    const char *config_file = getenv("MESHFED_CONFIG");
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'h') {
            usage();
            return 1;
        }
        if (o == 'V') {
            printf("meshfed %s\n", MESHFED_VERSION);
            return 1;
        }
        if (o == 'c') {
            config_file = optarg;
            continue;
        }
        if (o < 1000) {
            snprintf(err, errlen, "unknown or incomplete flag \"%s\" (see --help)",
                     argv[optind - 1]);
            return -1;
        }
        size_t i = (size_t)(o - 1000);
        const char *v = optarg ? optarg : "true";
        if (set(c, &settings[i], v, "flag --", err, errlen) < 0)
            return -1;
        from_flag[i] = true;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", argv[optind]);
        return -1;
    }
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        char from[96]; /* the variable's own name: that is what the user set */
        snprintf(from, sizeof(from), "environment variable %s, for", settings[i].env);
        if (!from_flag[i] && v && *v && set(c, &settings[i], v, from, err, errlen) < 0)
            return -1;
    }
    if (config_file) {
        c->config_file = strdup(config_file);
        file_ctx_t f = {c, from_flag, err, errlen, 0};
        char lerr[CTL_ERRLEN];
        int rc = ctl_manifest_load_file(config_file, file_doc, &f, lerr, sizeof(lerr));
        if (rc < 0 && f.rc == 0)
            snprintf(err, errlen, "config file: %s", lerr);
        if (rc != 0)
            return -1;
    }
    if (check_auth(c, err, errlen) < 0 || check_ca(c, err, errlen) < 0)
        return -1;
    if ((c->tls_cert == NULL) != (c->tls_key == NULL) ||
        (c->xds_tls_listen && !c->tls_cert && !c->ca_enabled)) {
        snprintf(err, errlen,
                 "tls-cert and tls-key go together, and xds-tls-listen needs both (or the CA, "
                 "which then issues the serving certificate)");
        return -1;
    }
    return 0;
}

bool ctl_in_revision(const char *label, const char *rev)
{
    return !label || !rev || !rev[0] || strcmp(label, rev) == 0;
}

bool ctl_policy_refused(void **p, char *err, size_t errlen)
{
    if (model_authz_policy_check(*p, err, errlen) == 0)
        return false;
    model_authz_policy_free(*p);
    *p = NULL;
    return true;
}

void ctl_config_free(ctl_config_t *c)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].type == T_STR)
            free(*(char **)((char *)c + settings[i].off));
    free(c->config_file);
}
