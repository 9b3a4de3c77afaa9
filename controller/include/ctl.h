/*
 * ctl.h - the meshfed program: configuration, logging, the event queue that
 * feeds the model thread, file-backed demo clusters, the debug HTTP endpoint
 * and metrics. This is the only place that wires kube/, model/ and xds/.
 */
#ifndef MESHFED_CTL_H
#define MESHFED_CTL_H

#include "kube.h"
#include "model.h"
#include "xds.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

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
    char *tls_cert;               /* --tls-cert */
    char *tls_key;                /* --tls-key */
    char *debug_listen;           /* --debug-listen */
    char *probe_listen;           /* --probe-listen: /healthz and /ready only, or NULL */
    char *debug_token_file;       /* --debug-token-file */
    char *trust_domain;           /* --trust-domain */
    char *domain_suffix;          /* --domain-suffix */
    char *config_file;            /* --config */
    char *xds_auth;               /* --xds-auth: "none" or "jwt" */
    char *xds_auth_audiences;     /* --xds-auth-audiences: comma list */
    char *xds_allowed_identities; /* --xds-allowed-identities: ns/sa patterns, "" = any */
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
 * setting. */
int ctl_config_load(ctl_config_t *c, int argc, char **argv, char *err, size_t errlen);
void ctl_config_free(ctl_config_t *c);

/* ---------- logging ---------- */

enum { CTL_DEBUG, CTL_INFO, CTL_WARN, CTL_ERROR };
void ctl_log_setup(int level, bool json);
void ctl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* in as valid UTF-8 into out (always terminated): each byte that is not part
 * of a valid sequence becomes the text \xNN; cut only between characters,
 * with "…" when cut. Returns the length written. */
size_t ctl_utf8_clean(const char *in, char *out, size_t outlen);

/* ---------- files (file.c) ---------- */

#define CTL_MAX_MANIFEST (16u << 20) /* a demo manifest, the config file, a kubeconfig */
/* The content of path, NUL-terminated (caller frees), its length in *len;
 * NULL with err naming path when it is not a regular file, is larger than
 * max bytes or cannot be read. Never blocks on a FIFO. */
char *ctl_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);
/* kube_manifest_load_file through ctl_read_file (CTL_MAX_MANIFEST). */
int ctl_manifest_load_file(const char *path, kube_manifest_fn fn, void *arg, char *err,
                           size_t errlen);

/* ---------- rate-limited logging (ratelog.c) ---------- */

/* One window of window_s seconds per key (at most max_keys keys; beyond
 * that they share one). Thread-safe. A NULL ctl_ratelog_t (out of memory)
 * logs every line. */
typedef struct ctl_ratelog ctl_ratelog_t;
ctl_ratelog_t *ctl_ratelog_new(int window_s, size_t max_keys);
/* Reports what is still suppressed, then frees. */
void ctl_ratelog_free(ctl_ratelog_t *r);
/* Logs msg unless key already logged in its current window (then counts it
 * and keeps it as the last one). True when logged. */
bool ctl_ratelog(ctl_ratelog_t *r, time_t now, int level, const char *key, const char *msg);
/* Ends the windows older than window_s at now ((time_t)-1: all), logging
 * for each what it suppressed; returns how many such lines were logged. */
size_t ctl_ratelog_flush(ctl_ratelog_t *r, time_t now);
/* Lines of key suppressed in its current window. */
unsigned long ctl_ratelog_suppressed(ctl_ratelog_t *r, const char *key);

/* ---------- metrics: plain counters, rendered by /metrics ---------- */

typedef struct ctl_metrics {
    atomic_ulong events_applied;
    atomic_ulong events_rejected;
    atomic_ulong commits;
    atomic_ulong queue_full;
    atomic_ulong decode_errors;
    atomic_ulong scope_errors;
    atomic_ulong gateway_errors; /* east-west Gateways that cannot be used */
    atomic_ulong http_requests;
    atomic_ulong http_bad_requests;
    atomic_ulong http_unauthorized;
    atomic_ulong http_refused_full;   /* debug connections refused: table full */
    atomic_ulong http_refused_per_ip; /* refused: one address holds too many */
    atomic_ulong http_slow_closed;    /* cut: no complete request / answer not taken in time */
    atomic_ulong demo_reloads;
    atomic_ulong demo_file_errors; /* demo manifests that did not parse (last good kept) */
    atomic_ulong sync_slow;        /* clusters not synced within sync-warn-after */
    atomic_ulong commit_us_sum;
    atomic_long queue_depth;
    atomic_ulong status_writes;
    atomic_ulong status_errors;
    atomic_int leader;
    atomic_ulong auth_ok;              /* xDS clients authenticated (auth.c) */
    atomic_ulong auth_unauthenticated; /* no/invalid token, unknown cluster */
    atomic_ulong auth_denied;          /* not a service account, not allowed */
    atomic_ulong auth_unavailable;     /* could not verify (API server down, shutdown) */
    atomic_ulong auth_reviews;         /* TokenReviews sent */
    atomic_ulong auth_errors;          /* TokenReviews that failed (transport, HTTP) */
    atomic_ulong auth_cache_hits;      /* answers from the cache */
} ctl_metrics_t;

extern ctl_metrics_t ctl_metrics;

/* ---------- the event queue and the model thread ---------- */

typedef enum ctl_ev_type {
    CTL_EV_OBJECT,      /* obj of kind in cluster, upsert or delete */
    CTL_EV_CLUSTER_SET, /* add or update a cluster (network, gateway) */
    CTL_EV_CLUSTER_REMOVE,
    CTL_EV_CLUSTER_STATE,
    CTL_EV_CLEAR_KIND, /* a relist starts: drop kind in cluster */
    CTL_EV_SCOPES,     /* replace the rules of one source (rules may be NULL) */
} ctl_ev_type_t;

typedef struct ctl_event {
    ctl_ev_type_t type;
    char *cluster;
    model_kind_t kind;
    model_op_t op;
    void *obj;
    model_cluster_t info; /* CLUSTER_SET: strings owned by the event */
    model_cluster_state_t state;
    char *source;               /* SCOPES: e.g. "east/servicescope.yaml" */
    model_scope_rules_t *rules; /* SCOPES */
} ctl_event_t;

typedef struct ctl ctl_t;
typedef struct ctl_kube ctl_kube_t;

ctl_t *ctl_new(const ctl_config_t *cfg, char *err, size_t errlen);
void ctl_free(ctl_t *c);
/* Queues an event for the model thread; takes ownership of ev's contents.
 * Blocks while the queue is full (counted in queue_full). */
void ctl_push(ctl_t *c, ctl_event_t *ev);
/* Starts the model thread. */
int ctl_start(ctl_t *c);
/* Waits until the queue is empty and the last batch is published. */
void ctl_flush(ctl_t *c);
void ctl_stop(ctl_t *c);
void ctl_set_xds(ctl_t *c, xds_server_t *x);
void ctl_set_kube(ctl_t *c, ctl_kube_t *k);
/* The network of a cluster (xds_config_t.network_of), or NULL if unknown.
 * The string stays valid for the life of c. */
const char *ctl_network_of(void *arg, const char *cluster);
/* xds_config_t.log: the xDS server's refusals (warnings) and notices. */
void ctl_xds_log(void *arg, bool warn, const char *msg);
/* Changes the debounce time of the next batches (SIGHUP). */
void ctl_set_debounce(ctl_t *c, int ms);
ctl_kube_t *ctl_kube_of(ctl_t *c);

/* Runs fn with the model locked (for reads from other threads). */
void ctl_with_model(ctl_t *c, void (*fn)(const model_t *m, void *arg), void *arg);
/* The newest snapshot (caller unrefs), or NULL before the first commit. */
model_snapshot_t *ctl_snapshot(ctl_t *c);
xds_server_t *ctl_xds(ctl_t *c);
const ctl_config_t *ctl_config(const ctl_t *c);
/* True once the local cluster (--cluster-id) finished its initial sync and
 * a snapshot is published; remote clusters never gate it. Else false with
 * why filled. */
bool ctl_ready(ctl_t *c, char *why, size_t whylen);
/* What a source says about a cluster for /debug/clusterz, as key: val (takes
 * val; NULL val removes key; NULL key removes every note of cluster).
 * Thread-safe. */
void ctl_cluster_note(ctl_t *c, const char *cluster, const char *key, json_t *val);
/* A copy of cluster's notes (caller decrefs), or NULL. */
json_t *ctl_cluster_notes(ctl_t *c, const char *cluster);

/* ---------- file-backed demo clusters ---------- */

typedef struct ctl_demo ctl_demo_t;

/* Loads every subdirectory of dir as a cluster (its name is the cluster id)
 * and watches the files for changes. */
ctl_demo_t *ctl_demo_start(ctl_t *c, const char *dir, char *err, size_t errlen);
void ctl_demo_stop(ctl_demo_t *d);

/* ---------- live clusters (kube/ watcher) ---------- */

/* Watches the local cluster (--kubeconfig, else in-cluster) and every remote
 * cluster its istio/multiCluster=true Secrets name. */
ctl_kube_t *ctl_kube_start(ctl_t *c, char *err, size_t errlen);
void ctl_kube_stats(ctl_kube_t *k, kube_stats_t *out);
/* Adds to out (a /debug/clusterz entry) what the watcher knows of cluster
 * id: "forbidden" and "absent", the optional resources it cannot read (403:
 * RBAC; 404: CRD not installed). Thread-safe. */
void ctl_kube_cluster_conditions(ctl_kube_t *k, const char *id, json_t *out);
void ctl_kube_stop(ctl_kube_t *k);
/* A copy of how to reach cluster's API server (ctl_conn_fn; arg is the
 * ctl_kube_t). Thread-safe. 0, or -1 when the cluster is unknown. */
int ctl_kube_conn(void *arg, const char *cluster, kube_conn_t *out);

/* ---------- xDS client authentication (auth.c, docs/security.md) ---------- */

typedef struct ctl_auth ctl_auth_t;
/* Fills out (caller frees) with the connection of cluster; -1: unknown. */
typedef int (*ctl_conn_fn)(void *arg, const char *cluster, kube_conn_t *out);

/* TokenReviews on worker threads with a cache; audiences and allowed
 * identities from cfg. NULL with err. */
ctl_auth_t *ctl_auth_new(const ctl_config_t *cfg, ctl_conn_fn conn_of, void *conn_arg, char *err,
                         size_t errlen);
/* The xds_config_t.authenticate hook; arg is the ctl_auth_t. */
int ctl_auth_authenticate(void *arg, const char *cluster, const char *token, xds_auth_done_fn done,
                          void *done_arg);
/* Joins the workers (queued checks are answered UNAVAILABLE); later calls
 * answer at once. Call before the clusters' connections go away. */
void ctl_auth_stop(ctl_auth_t *a);
/* After the xDS server is freed. */
void ctl_auth_free(ctl_auth_t *a);
/* Whether ns/sa matches a comma list of "ns/sa" patterns ("*" for either
 * side); an empty or NULL list allows everyone. */
bool ctl_auth_identity_allowed(const char *patterns, const char *ns, const char *sa);
/* 0, or -1 with err naming the bad pattern. */
int ctl_auth_check_patterns(const char *patterns, char *err, size_t errlen);

/* ---------- leader election and ServiceScope status ---------- */

typedef struct ctl_status ctl_status_t;

/* Campaigns for the Lease meshfed-leader in the system namespace; while
 * leading, writes ServiceScope .status. conn is copied. */
ctl_status_t *ctl_status_start(ctl_t *c, const kube_conn_t *conn, char *err, size_t errlen);
/* What the ServiceScope decoder found for one object (deleted, or invalid
 * with a reason, or accepted when reason is NULL). Thread-safe. */
void ctl_status_note(ctl_status_t *s, const char *name, json_int_t generation, bool deleted,
                     const char *invalid_reason);
bool ctl_status_leading(ctl_status_t *s);
/* Stops writing and releases the lease. */
void ctl_status_stop(ctl_status_t *s);

/* ---------- east-west gateways ---------- */

typedef struct ctl_gateway {
    char network[254];
    model_ip_t ip;      /* len 0 when reached by hostname */
    char hostname[254]; /* a Hostname status address, or "" */
    uint16_t port;      /* HBONE */
    char ns[254];
    char name[254];
    char sa[254];      /* annotation gateway.istio.io/service-account, else name */
    char problem[256]; /* why an east-west Gateway cannot be used (yet) */
} ctl_gateway_t;

/* An Istio east-west Gateway (gateway.networking.k8s.io, class
 * istio-east-west, labelled with its network, an HBONE listener with
 * tls.mode Terminate, an IP or hostname in status.addresses). 1: one;
 * 0: not an east-west Gateway; -1: one that cannot be used, out->problem
 * says why (and out->ns, name, network say which). */
int ctl_gateway_from_json(const json_t *obj, ctl_gateway_t *out);
/* Sets c's gateway fields to copies of g's (NULL: no gateway; ns, when
 * given, still names the namespace), freeing what they held; with
 * everything NULL it only frees. */
void ctl_cluster_info_gateway(model_cluster_t *c, const ctl_gateway_t *g, const char *ns,
                              const char *problem);
/* A Service in the system namespace labelled topology.istio.io/network with
 * a load-balancer IP (HBONE port: the port named tls-hbone, else 15008). */
bool ctl_gateway_from_service(const model_service_t *s, const char *system_namespace,
                              ctl_gateway_t *out);

/* ---------- subcommands ---------- */

/* `meshfed create-remote-secret ...` (argv[0] is the subcommand). Exit code. */
int ctl_create_remote_secret(int argc, char **argv);

/* ---------- rendering resources as JSON ---------- */

#include <jansson.h>
json_t *ctl_res_json(const model_res_t *r);
json_t *ctl_view_json(const model_snapshot_t *s, const model_view_t *v);

/* ---------- debug HTTP ---------- */

typedef struct ctl_http ctl_http_t;

ctl_http_t *ctl_http_start(ctl_t *c, const char *listen, char *err, size_t errlen);
int ctl_http_port(const ctl_http_t *h);
/* The probe listener's port (--probe-listen), or 0 when there is none. */
int ctl_http_probe_port(const ctl_http_t *h);
void ctl_http_stop(ctl_http_t *h);

#endif
