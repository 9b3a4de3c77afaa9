/*
 * ctl.h - the meshfed program: configuration, logging, the model thread, its
 * sources (file-backed demo clusters or live Kubernetes clusters), xDS client
 * authentication and the debug HTTP endpoint. This is the only place that
 * wires kube/, model/ and xds/; what the controller files share with each
 * other is in ctl_int.h.
 */
#ifndef MESHFED_CTL_H
#define MESHFED_CTL_H

#include "kube.h"
#include "model.h"
#include "xds.h"

#include <jansson.h>
#include <stdbool.h>

#define CTL_ERRLEN 512

/* ---------- configuration: flags > environment > config file > defaults ---------- */

typedef struct ctl_config {
    char *cluster_id;             /* --cluster-id, CLUSTER_ID */
    char *network;                /* --network, NETWORK ("" = from the system namespace label) */
    char *system_namespace;       /* --system-namespace, MESHFED_SYSTEM_NAMESPACE */
    char *kubeconfig;             /* --kubeconfig, KUBECONFIG */
    char *context;                /* --context: of kubeconfig; NULL: current-context */
    char *demo_dir;               /* --demo DIR: file-backed clusters, one per subdirectory */
    char *xds_listen;             /* --xds-listen */
    char *xds_tls_listen;         /* --xds-tls-listen */
    int xds_conn_age_ms;          /* --xds-max-connection-age, 0: off */
    int xds_conn_age_grace_ms;    /* --xds-max-connection-age-grace */
    char *tls_cert;               /* --tls-cert */
    char *tls_key;                /* --tls-key */
    char *debug_listen;           /* --debug-listen */
    char *probe_listen;           /* --probe-listen: /healthz and /ready only, or NULL */
    char *debug_token_file;       /* --debug-token-file */
    char *trust_domain;           /* --trust-domain */
    char *domain_suffix;          /* --domain-suffix */
    char *root_namespace;         /* --root-namespace */
    bool authz_dry_run;           /* --authz-dry-run */
    char *revision;               /* --revision, REVISION: istio.io/rev of the policies read */
    char *config_file;            /* --config */
    char *xds_auth;               /* --xds-auth: "none" or "jwt" */
    char *xds_auth_audiences;     /* --xds-auth-audiences: comma list */
    char *xds_allowed_identities; /* --xds-allowed-identities: ns/sa patterns, "" = any */
    char *ca;                     /* --ca: "on", "off" or "auto" (on with xds-auth jwt) */
    char *cacerts_dir;            /* --cacerts-dir, NULL: cacerts_secret or self-signed */
    char *cacerts_secret;         /* --cacerts-secret, "": none */
    char *tls_dns_names;          /* --tls-dns-names, NULL: meshfed.<system ns>.svc */
    char *ca_node_accounts;       /* --ca-node-accounts: ns/sa patterns, "" = none */
    int ca_max_ttl_s;             /* --ca-max-ttl */
    int ca_default_ttl_s;         /* --ca-default-ttl */
    bool ca_enabled;              /* --ca resolved */
    int debounce_ms;              /* --debounce-ms */
    int stale_after_s;            /* --stale-after */
    int sync_warn_after_s;        /* --sync-warn-after */
    int kube_max_list_pages;      /* --kube-max-list-pages */
    int kube_max_list_objects;    /* --kube-max-list-objects */
    int log_level;                /* --log-level: 0 debug, 1 info, 2 warn, 3 error */
    bool log_json;                /* --log-format json */
    bool once;                    /* --once: build, print the views, exit */
    bool prefer_cluster;          /* --prefer-local-cluster: CLUSTER after NETWORK */
} ctl_config_t;

/* 0; 1 when --help or --version was printed; -1 with a reason naming the
 * setting. Call ctl_config_free in every case. */
int ctl_config_load(ctl_config_t *c, int argc, char **argv, char *err, size_t errlen);
void ctl_config_free(ctl_config_t *c);

/* ---------- logging ---------- */

enum { CTL_DEBUG, CTL_INFO, CTL_WARN, CTL_ERROR };
void ctl_log_setup(int level, bool json);
void ctl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------- the model thread ---------- */

typedef struct ctl ctl_t;
typedef struct ctl_kube ctl_kube_t;

/* cfg is borrowed for the life of the ctl_t. */
ctl_t *ctl_new(const ctl_config_t *cfg, char *err, size_t errlen);
void ctl_free(ctl_t *c);
/* Starts the model thread. */
int ctl_start(ctl_t *c);
/* Waits until the queue is empty and the last batch is published. */
void ctl_flush(ctl_t *c);
void ctl_stop(ctl_t *c);
void ctl_set_xds(ctl_t *c, xds_server_t *x);
void ctl_set_kube(ctl_t *c, ctl_kube_t *k);
/* Changes the debounce time of the next batches (SIGHUP). */
void ctl_set_debounce(ctl_t *c, int ms);
/* The network of a cluster (xds_config_t.network_of), or NULL if unknown.
 * The string stays valid for the life of c. */
const char *ctl_network_of(void *arg, const char *cluster);
/* xds_config_t.log: the xDS server's refusals (warnings) and notices. */
void ctl_xds_log(void *arg, bool warn, const char *msg);
/* Runs fn with the model locked (for reads from other threads). */
void ctl_with_model(ctl_t *c, void (*fn)(const model_t *m, void *arg), void *arg);
/* The newest snapshot (caller unrefs), or NULL before the first commit. */
model_snapshot_t *ctl_snapshot(ctl_t *c);
/* A view as the JSON of /debug/config_dump (caller decrefs). */
json_t *ctl_view_json(const model_snapshot_t *s, const model_view_t *v);

/* ---------- sources: file-backed demo clusters or live clusters ---------- */

typedef struct ctl_demo ctl_demo_t;

/* Loads every subdirectory of dir as a cluster (its name is the cluster id)
 * and watches the files for changes. */
ctl_demo_t *ctl_demo_start(ctl_t *c, const char *dir, char *err, size_t errlen);
void ctl_demo_stop(ctl_demo_t *d);

/* Watches the local cluster (--kubeconfig, else in-cluster) and every remote
 * cluster its istio/multiCluster=true Secrets name. */
ctl_kube_t *ctl_kube_start(ctl_t *c, char *err, size_t errlen);
void ctl_kube_stop(ctl_kube_t *k);
/* A copy of how to reach cluster's API server (ctl_conn_fn; arg is the
 * ctl_kube_t). Thread-safe. 0, or -1 when the cluster is unknown. */
int ctl_kube_conn(void *arg, const char *cluster, kube_conn_t *out);
/* The CA's root-cert.pem (copied), published as the ConfigMap
 * istio-ca-root-cert in every namespace of the local cluster (with --ca
 * only; k NULL: nothing). Thread-safe. */
void ctl_kube_set_ca_root(ctl_kube_t *k, const char *pem);

/* ---------- xDS client authentication (auth.c, docs/security.md) ---------- */

typedef struct ctl_auth ctl_auth_t;
/* Fills out (caller frees) with the connection of cluster; -1: unknown. */
typedef int (*ctl_conn_fn)(void *arg, const char *cluster, kube_conn_t *out);

/* TokenReviews on worker threads with a cache; audiences and allowed
 * identities from cfg. NULL with err. */
ctl_auth_t *ctl_auth_new(const ctl_config_t *cfg, ctl_conn_fn conn_of, void *conn_arg, char *err,
                         size_t errlen);
/* The xds_config_t.authenticate hook; arg is the ctl_auth_t. */
int ctl_auth_authenticate(void *arg, const char *cluster, const char *token,
                          xds_auth_purpose_t purpose, xds_auth_done_fn done, void *done_arg);
/* Joins the workers (queued checks are answered UNAVAILABLE); later calls
 * answer at once. Call before the clusters' connections go away. */
void ctl_auth_stop(ctl_auth_t *a);
/* After the xDS server is freed. */
void ctl_auth_free(ctl_auth_t *a);

/* ---------- the workload CA (ca.c, docs/ca.md) ---------- */

typedef struct ctl_ca ctl_ca_t;

/* The CA of cfg: --cacerts-dir loaded, else the --cacerts-secret Secret,
 * else the self-signed root of istio-ca-secret (with a warning). *first is the CA to give the xDS
 * server (xds_config_t.ca). NULL with err when it cannot be made. */
ctl_ca_t *ctl_ca_new(ctl_t *c, const ctl_config_t *cfg, xds_ca_t **first, char *err, size_t errlen);
/* The first serving certificate for xds-tls-listen without --tls-cert,
 * issued by first (the CA ctl_ca_new made) for --tls-dns-names: *chain and
 * *key PEM, caller frees (xds_config_t.tls_cert_pem). ctl_ca_watch renews
 * it at half its life and when the CA changes. 0, or -1 with err. */
int ctl_ca_serving(ctl_ca_t *a, const xds_ca_t *first, char **chain, char **key, char *err,
                   size_t errlen);
/* Reloads --cacerts-dir (or the --cacerts-secret Secret) into x when it
 * changes, and renews the serving certificate (a thread). 0 or -1. */
int ctl_ca_watch(ctl_ca_t *a, xds_server_t *x);
/* Stops watching: before the clusters (ctl_kube_stop), whose root
 * publisher it feeds, and before x is freed. */
void ctl_ca_stop(ctl_ca_t *a);
/* After the xDS server is freed: node authorization runs on its calls. */
void ctl_ca_free(ctl_ca_t *a);
/* xds_config_t.node_authorize (arg: the ctl_ca_t): the caller is one of
 * --ca-node-accounts and the model has its pod (same uid and service
 * account) and a pod of ns/sa on that pod's node, in cluster. */
bool ctl_ca_node_authorize(void *arg, const char *cluster, const char *caller_ns,
                           const char *caller_pod, const char *caller_uid, const char *caller_sa,
                           const char *ns, const char *sa, char *why, size_t whylen);

/* ---------- debug HTTP ---------- */

typedef struct ctl_http ctl_http_t;

ctl_http_t *ctl_http_start(ctl_t *c, const char *listen, char *err, size_t errlen);
int ctl_http_port(const ctl_http_t *h);
/* The probe listener's port (--probe-listen), or 0 when there is none. */
int ctl_http_probe_port(const ctl_http_t *h);
void ctl_http_stop(ctl_http_t *h);

/* ---------- subcommands ---------- */

/* `meshfed create-remote-secret ...` (argv[0] is the subcommand). Exit code. */
int ctl_create_remote_secret(int argc, char **argv);

#endif
