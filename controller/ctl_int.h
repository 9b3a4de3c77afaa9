/*
 * ctl_int.h - what the controller's files share with each other (and the
 * white-box tests) and nobody else: files, rate-limited logging, metrics,
 * the event queue, cluster notes, leader election, east-west gateways.
 */
#ifndef MESHFED_CTL_INT_H
#define MESHFED_CTL_INT_H

#include "ctl.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>

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
    atomic_ulong policy_errors; /* AuthorizationPolicies, PeerAuthentications that did not decode */
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
    atomic_ulong auth_reviews;      /* TokenReviews sent */
    atomic_ulong auth_errors;       /* TokenReviews that failed (transport, HTTP) */
    atomic_ulong auth_cache_hits;   /* answers from the cache */
    atomic_ulong ca_loads;          /* cacerts loaded (ca.c) */
    atomic_ulong ca_load_errors;    /* cacerts changes that did not load */
    atomic_ulong ca_serving_errors; /* renewals of the xDS serving certificate that failed */
    atomic_ulong root_cert_writes;  /* istio-ca-root-cert ConfigMaps created or updated */
    atomic_ulong root_cert_errors;  /* writes of them that failed */
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

/* Queues an event for the model thread; takes ownership of ev's contents.
 * Blocks while the queue is full (counted in queue_full). */
void ctl_push(ctl_t *c, ctl_event_t *ev);
ctl_kube_t *ctl_kube_of(ctl_t *c);
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

/* ---------- live clusters (kube/ watcher) ---------- */

void ctl_kube_stats(ctl_kube_t *k, kube_stats_t *out);
/* Adds to out (a /debug/clusterz entry) what the watcher knows of cluster
 * id: "forbidden" and "absent", the optional resources it cannot read (403:
 * RBAC; 404: CRD not installed). Thread-safe. */
void ctl_kube_cluster_conditions(ctl_kube_t *k, const char *id, json_t *out);
/* The model kind of a watched resource (the model-fed ones only). */
model_kind_t ctl_kube_kind_of(kube_res_t r);
/* A deleted object needs only its identity; the stub the API sends may not
 * decode as a whole object. The object of kind named by obj (caller frees
 * with model_obj_free), or NULL when a namespaced kind has no namespace. */
void *ctl_kube_identity_of(model_kind_t kind, const kube_obj_t *obj);
/* Which API server a kubeconfig reaches: another server, CA or TLS name may
 * be another cluster (or a recreated one) with the same resourceVersions. */
uint64_t ctl_kube_endpoint_of(const kube_conn_t *c);

/* ---------- xDS client authentication ---------- */

/* Whether ns/sa matches a comma list of "ns/sa" patterns ("*" for either
 * side); an empty or NULL list allows everyone. */
bool ctl_auth_identity_allowed(const char *patterns, const char *ns, const char *sa);
/* 0, or -1 with err naming the bad pattern. */
int ctl_auth_check_patterns(const char *patterns, char *err, size_t errlen);
/* Whether a TokenReview status says the token is for one of the wanted
 * audiences (a JSON array): the API server answers status.audiences with
 * the intersection; without it (older servers) it did not check: true. */
bool ctl_auth_audience_ok(const json_t *wanted, const json_t *status);
/* The namespace and name of a service account's username
 * "system:serviceaccount:<ns>:<sa>" into ns and sa; false (and nothing
 * written) for any other username, an empty part, or one that does not fit. */
bool ctl_auth_service_account(const char *user, char *ns, size_t nslen, char *sa, size_t salen);

/* Whether a policy labelled istio.io/rev = label (NULL: unlabelled) is read
 * by a meshfed of revision rev: unlabelled always, any when rev is empty,
 * else only its own (istiod's inRevision). */
bool ctl_in_revision(const char *label, const char *rev);

/* Whether the decoded AuthorizationPolicy *p holds a value that istiod
 * would drop to its loss (model_authz_policy_check): then it is freed, *p
 * set to NULL and err says why, and the caller treats it as one that did
 * not decode. */
bool ctl_policy_refused(void **p, char *err, size_t errlen);

/* ---------- leader election and ServiceScope status ---------- */

typedef struct ctl_status ctl_status_t;

/* Campaigns for the Lease meshfed-leader in the system namespace; while
 * leading, writes ServiceScope .status. conn is copied. */
ctl_status_t *ctl_status_start(ctl_t *c, const kube_conn_t *conn, char *err, size_t errlen);
/* What the ServiceScope decoder found for one object (deleted, or invalid
 * with a reason, or accepted when reason is NULL). Thread-safe. */
void ctl_status_note(ctl_status_t *s, const char *name, json_int_t generation, bool deleted,
                     const char *invalid_reason);
/* The local cluster's AuthorizationPolicy ns/name changed (generation) or
 * went away; its ZtunnelAccepted condition is written from the model. */
void ctl_status_note_policy(ctl_status_t *s, const char *ns, const char *name, int64_t generation,
                            bool deleted);
bool ctl_status_leading(ctl_status_t *s);
/* Stops writing and releases the lease. */
void ctl_status_stop(ctl_status_t *s);

/* ---------- istio-ca-root-cert ConfigMaps (rootcert.c) ---------- */

typedef struct ctl_rootcert ctl_rootcert_t;

/* Publishes the CA's root in every namespace of the cluster of conn
 * (copied) while leader leads (borrowed; it must outlive the publisher).
 * Fed by the local cluster's watches through the calls below, each
 * thread-safe and a no-op on NULL. NULL with err. */
ctl_rootcert_t *ctl_rootcert_start(const kube_conn_t *conn, ctl_status_t *leader, char *err,
                                   size_t errlen);
void ctl_rootcert_stop(ctl_rootcert_t *r);
void ctl_rootcert_namespace(ctl_rootcert_t *r, const char *ns, bool deleted);
/* The istio-ca-root-cert ConfigMap of ns as the watch saw it (copied), NULL
 * when deleted. */
void ctl_rootcert_configmap(ctl_rootcert_t *r, const char *ns, const json_t *cm);
/* KUBE_RES_NAMESPACES or KUBE_RES_ROOT_CERTS listed: nothing is written before
 * both did. */
void ctl_rootcert_synced(ctl_rootcert_t *r, kube_res_t res);
/* The root-cert.pem to publish (copied), at the CA's load and every reload. */
void ctl_rootcert_set_root(ctl_rootcert_t *r, const char *pem);
/* Whether istiod leaves namespace ns without the ConfigMap. */
bool ctl_rootcert_skipped(const char *ns);
/* What to send for ns so that its ConfigMap cm (NULL: none) carries root:
 * a new ConfigMap, or cm with data root-cert.pem replaced (everything else
 * kept, resourceVersion included); NULL when cm is up to date. Caller owns. */
json_t *ctl_rootcert_desired(const json_t *cm, const char *ns, const char *root);

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

/* ---------- debug HTTP (http.c) ---------- */

/* A query value the debug endpoint accepts: 1 to 512 bytes, no control
 * characters. */
bool ctl_http_valid_query(const char *v);
/* "host:port" of setting (named in err) into sa: host an IPv4 address,
 * "localhost" or empty (any address). 0, or -1 with err. */
int ctl_http_parse_listen(const char *setting, const char *listen, struct sockaddr_in *sa,
                          char *err, size_t errlen);

/* ---------- rendering resources as JSON ---------- */

json_t *ctl_res_json(const model_res_t *r);
/* An istio.security.Authorization as JSON (istio's names). */
json_t *ctl_authz_json(const model_out_authz_t *a);
/* The Authorization resources view v gets: name -> Authorization. */
json_t *ctl_authz_view_json(const model_snapshot_t *s, const model_view_t *v);

#endif
