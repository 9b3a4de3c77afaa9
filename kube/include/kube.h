/*
 * kube.h - the Kubernetes side of meshfed: decoding API objects into model
 * structs, loading YAML/JSON manifests, connection settings (kubeconfig,
 * in-cluster, exec credential plugins), the watcher (one I/O thread listing
 * and watching every cluster), single requests and Lease leader election.
 *
 * Decoding is strict about types and lenient about absent fields: every field
 * that is present must have the type and range Kubernetes gives it, fields that
 * are absent (or JSON null) take their Kubernetes defaults. Errors name the
 * object, the field path and what was wrong, e.g.
 *   "Service default/web: spec.ports[1].port: expected an integer, got string".
 *
 * Two JSON representations, one per kind of path:
 *  - Hot: the watcher parses every list page and watch event with its own
 *    in-place parser (jv, internal) and hands objects out as kube_obj_t;
 *    kube_obj_decode reads them without building a jansson tree. A list of
 *    500 Pods costs one buffer and one slot array, not a tree of 100,000
 *    small allocations.
 *  - Cold: manifests (kube_manifest_fn), config files and MeshConfig
 *    (kube_decode_scope_configs), the few objects the controller keeps
 *    whole (Secrets, ConfigMaps, ServiceScopes, Gateways: kube_obj_json,
 *    kube_decode_servicescope), status writes and debug output take and
 *    give jansson json_t, which the rest of meshfed builds, edits and
 *    serialises. kube_decode and the other json_t
 *    decoders copy the tree into the watcher's slots (strings borrowed, no
 *    text in between) and run the same decoders, so a manifest and a watch
 *    event decode by one set of rules.
 */
#ifndef MESHFED_KUBE_H
#define MESHFED_KUBE_H

#include <stddef.h>

#include <jansson.h>

#include "model.h"

/* ---------- decoding ---------- */

/* Sanity limits: objects beyond these are rejected, not truncated. */
#define KUBE_MAX_PORTS 1000           /* service or slice ports */
#define KUBE_MAX_ENDPOINTS 10000      /* endpoints in one slice */
#define KUBE_MAX_IPS 16               /* clusterIPs, podIPs, LB ingress entries */
#define KUBE_MAX_LABELS 4096          /* labels on one object */
#define KUBE_MAX_RULES 1000           /* ServiceScope rules in one object */
#define KUBE_MAX_SELECTOR_VALUES 1000 /* values of one matchExpression */

/* Decodes one object of kind into a newly allocated model struct (caller
 * owns, free with model_obj_free). 0, or -1 with a reason in err naming the
 * field and what was wrong; nothing is allocated on failure.
 *
 * Notes on the mapping (see decode.c for the details):
 *  - metadata.name is required; metadata.namespace is required for Service,
 *    EndpointSlice and Pod (no "default" guessing).
 *  - Service: clusterIPs (fallback clusterIP), "None" means headless; a port
 *    without targetPort gets targetPort = port (the API server default); port
 *    names absent are "". spec.trafficDistribution wins; the
 *    networking.istio.io/traffic-distribution annotation (case-insensitive)
 *    applies when it is unset or unknown (as istiod); unknown values of
 *    either are ignored.
 *  - EndpointSlice: the kubernetes.io/service-name label is required; FQDN
 *    slices decode with 0 endpoints; an absent port is 0 (all ports).
 *  - Pod: ready = phase Running and condition Ready "True";
 *    serviceAccountName defaults to "default". */
int kube_decode(model_kind_t kind, const json_t *obj, void **out, char *err, size_t errlen);

/* Which model kind an apiVersion/kind pair names: Namespace v1, Service v1,
 * EndpointSlice discovery.k8s.io/v1, Pod v1, Node v1, AuthorizationPolicy
 * and PeerAuthentication security.istio.io/v1 (or v1beta1, the same
 * schema). 0, or -1 if none. */
int kube_kind_lookup(const char *api_version, const char *kind, model_kind_t *out);

/* Appends the rules of one ServiceScope object (apiVersion meshfed.io/v1alpha1,
 * kind ServiceScope, spec.rules[] each {namespaceSelector, servicesSelector,
 * scope: "GLOBAL"|"LOCAL"}) to r, with origin "ServiceScope/<name>[i]".
 * Selectors are metav1.LabelSelector JSON (matchLabels, matchExpressions
 * [{key, operator, values}]); an absent selector is NULL (matches everything).
 * Unknown fields in rules and selectors are rejected (a misspelt selector
 * must not silently match everything). 0, or -1 with a reason in err and r
 * unchanged (barring running out of memory half way). */
int kube_decode_servicescope(const json_t *obj, model_scope_rules_t *r, char *err, size_t errlen);

/* Same for MeshConfig serviceScopeConfigs: a JSON array of the same rule
 * objects, origins "<origin>[i]" (origin NULL means "MeshConfig"). A NULL or
 * JSON null arr adds nothing. */
int kube_decode_scope_configs(const json_t *arr, const char *origin, model_scope_rules_t *r,
                              char *err, size_t errlen);

/* ---------- manifests ---------- */

/* Called for each document; doc is borrowed (incref to keep it). Return
 * nonzero to stop loading. */
typedef int (*kube_manifest_fn)(json_t *doc, void *arg);

/* Parses a multi-document YAML (or JSON) file into JSON values, calling fn for
 * each non-empty document in order. A document whose kind is "List" (or
 * "<Kind>List" with items, as the API returns lists) is expanded into its
 * items; items of a "<Kind>List" that lack kind/apiVersion get them from the
 * list. Every document (and item) must be a mapping.
 *
 * Scalars follow the YAML 1.2 core schema: plain scalars that look like ints,
 * floats, true/false or null become those JSON types; quoted and block
 * scalars stay strings ("yes"/"on" are strings too). The !!str, !!int,
 * !!float, !!bool and !!null tags are honoured. Aliases, duplicate mapping
 * keys, non-scalar keys and non-finite floats are rejected.
 *
 * Returns 0; or -1 with "file:line:col: reason" in err (documents before the
 * bad one have already been passed to fn); or, when fn stops the load, the
 * value fn returned, with err "". */
int kube_manifest_load_file(const char *path, kube_manifest_fn fn, void *arg, char *err,
                            size_t errlen);
/* Same for text in memory; errors are reported against the name "<string>". */
int kube_manifest_load_string(const char *text, size_t len, kube_manifest_fn fn, void *arg,
                              char *err, size_t errlen);

/* ---------- connection config (kubeconfig.c) ---------- */

/* How to reach one API server. All strings are owned by the struct (free with
 * kube_conn_free); NULL means unset. *_data fields hold PEM bytes (already
 * base64-decoded from kubeconfig *-data fields) and win over the *_file ones. */
typedef struct kube_conn {
    char *server; /* "https://host:port", no trailing path needed */
    char *ca_file;
    char *ca_data;
    size_t ca_len;
    bool insecure; /* insecure-skip-tls-verify */
    char *token;
    char *token_file; /* re-read at every (re)connect, so rotation works */
    char *cert_file;
    char *cert_data;
    size_t cert_len;
    char *key_file;
    char *key_data;
    size_t key_len;
    char *tls_server_name;  /* name to verify (and send as SNI) instead of the URL host */
    struct kube_exec *exec; /* credential plugin (KUBE_KC_EXEC), or NULL */
} kube_conn_t;

/* Parses kubeconfig YAML for context (NULL: current-context) into out (zeroed
 * first; caller frees with kube_conn_free, also on failure). Relative file
 * paths are kept as written. Exec (see _ex) and auth-provider plugins are
 * rejected.
 * 0, or -1 with a reason in err. */
int kube_conn_from_kubeconfig(const char *text, size_t len, const char *context, kube_conn_t *out,
                              char *err, size_t errlen);
/* With KUBE_KC_EXEC, a user's exec credential plugin (client.authentication
 * .k8s.io v1 or v1beta1 ExecCredential) is run when a request needs a
 * credential: only for a kubeconfig the operator gave (--kubeconfig,
 * create-remote-secret), never one read from a Secret, which could make
 * meshfed run any program. The plugin runs without a terminal (so
 * interactiveMode Always is refused) for at most 30 s; its token or client
 * certificate is cached until its expirationTimestamp or a 401. */
#define KUBE_KC_EXEC 1u
int kube_conn_from_kubeconfig_ex(const char *text, size_t len, const char *context, unsigned flags,
                                 kube_conn_t *out, char *err, size_t errlen);
/* The in-cluster config: KUBERNETES_SERVICE_HOST/PORT and the service account
 * directory (/var/run/secrets/kubernetes.io/serviceaccount, or
 * $MESHFED_SA_DIR) token (as token_file) and ca.crt. 0, or -1 with err. */
int kube_conn_in_cluster(kube_conn_t *out, char *err, size_t errlen);
/* Decodes standard base64 (padding required, whitespace skipped), as in
 * kubeconfig *-data fields and Secret data. Returns a NUL-terminated buffer
 * (caller frees) with its length in *len, or NULL on bad input / no memory. */
char *kube_base64_decode(const char *b64, size_t *len);
/* Standard base64 with padding of n bytes; caller frees; NULL: no memory. */
char *kube_base64_encode(const char *in, size_t n);
/* Deep copy; 0, or -1 when out of memory (dst is then freed). */
int kube_conn_copy(kube_conn_t *dst, const kube_conn_t *src);
void kube_conn_free(kube_conn_t *c);

/* ---------- informers (client.c, informer.c) ---------- */

typedef enum kube_res {
    KUBE_RES_NAMESPACES,
    KUBE_RES_SERVICES,
    KUBE_RES_ENDPOINTSLICES,
    KUBE_RES_PODS,
    KUBE_RES_NODES,
    KUBE_RES_SERVICESCOPES,
    KUBE_RES_SECRETS,    /* istio/multiCluster=true secrets in the system namespace */
    KUBE_RES_CONFIGMAPS, /* the "istio" ConfigMap in the system namespace */
    KUBE_RES_GATEWAYS,   /* gateway.networking.k8s.io/v1 Gateways; optional (CRD may be absent) */
    KUBE_RES_AUTHZ_POLICIES, /* security.istio.io/v1 AuthorizationPolicies; optional */
    KUBE_RES_PEER_AUTHNS,    /* security.istio.io/v1 PeerAuthentications; optional */
    KUBE_RES_ROOT_CERTS,     /* istio-ca-root-cert ConfigMaps of every namespace; optional */
    KUBE_RES__COUNT
} kube_res_t;

#define KUBE_RES_BIT(r) (1u << (r))
#define KUBE_RES_ALL ((1u << KUBE_RES__COUNT) - 1)

typedef enum kube_ev {
    KUBE_EV_ADDED,
    KUBE_EV_MODIFIED,
    KUBE_EV_DELETED,   /* obj may be a stub: name and namespace only */
    KUBE_EV_SYNCED,    /* res finished its initial list (or a relist); obj NULL */
    KUBE_EV_STALE,     /* cluster: no successful request for stale_after_s; res __COUNT */
    KUBE_EV_RECOVERED, /* cluster: a request succeeded again after STALE */
    KUBE_EV_ERROR,     /* obj NULL, msg says what (names the cluster) */
    KUBE_EV_RELISTED,  /* res finished a list that was not its first; obj NULL, msg
                          says why it relisted and what changed (for the log) */
} kube_ev_t;

/* An object as the watcher hands it to the callback: parsed once, in the
 * watcher's own compact form, and borrowed for the duration of the call. */
typedef struct kube_obj kube_obj_t;

/* metadata.name; metadata.namespace (NULL for cluster-scoped objects);
 * metadata.resourceVersion (NULL if absent). Valid while o is. */
const char *kube_obj_name(const kube_obj_t *o);
const char *kube_obj_namespace(const kube_obj_t *o);
const char *kube_obj_resource_version(const kube_obj_t *o);
/* metadata.labels[key] when it is a string, else NULL. Valid while o is. */
const char *kube_obj_label(const kube_obj_t *o, const char *key);
/* metadata.generation, or 0 when absent. */
int64_t kube_obj_generation(const kube_obj_t *o);
/* Decodes o into a model struct exactly as kube_decode does, without going
 * through jansson. A DELETED stub (see KUBE_EV_DELETED) does not decode. */
int kube_obj_decode(model_kind_t kind, const kube_obj_t *o, void **out, char *err, size_t errlen);
/* For an AuthorizationPolicy or PeerAuthentication that kube_obj_decode
 * refused (why: its error): the fail-closed stand-in that takes its place
 * (see decode_sec.c), caller owns. 0, or -1 for another kind, a stub, or
 * out of memory. */
int kube_obj_decode_failsafe(model_kind_t kind, const kube_obj_t *o, const char *why, void **out);
/* The same for a jansson value that kube_decode refused. */
int kube_decode_failsafe(model_kind_t kind, const json_t *obj, const char *why, void **out);
/* o as a new jansson value (caller owns), with kind and apiVersion filled in
 * when the API left them out (list items); NULL when out of memory. For
 * the kinds meshfed keeps whole (Secrets, ServiceScopes, Gateways). */
json_t *kube_obj_json(const kube_obj_t *o);

/* Called on the watcher's I/O thread. obj is borrowed (see kube_obj_t).
 * Must not block for long: every cluster shares the thread. May call
 * kube_watcher_add/remove_cluster. */
typedef void (*kube_event_fn)(void *arg, const char *cluster, kube_res_t res, kube_ev_t ev,
                              const kube_obj_t *obj, const char *msg);

typedef struct kube_watcher kube_watcher_t;

typedef struct kube_stats {
    uint64_t lists;          /* list pages received */
    uint64_t watches;        /* watch requests started */
    uint64_t relists;        /* lists after a 410 Gone */
    uint64_t watch_restarts; /* watches that ended (timeout, disconnect) and resumed */
    uint64_t bookmarks;
    uint64_t events;        /* ADDED/MODIFIED/DELETED passed to the callback */
    uint64_t errors;        /* KUBE_EV_ERROR passed to the callback */
    uint64_t decode_errors; /* malformed or oversized watch lines / list bodies */
    uint64_t throttled;     /* 429 (or 503) with Retry-After: retried when it says */
    uint64_t short_watches; /* watches that ended within 1 s without an event: backed off */
    uint64_t list_limits;   /* lists abandoned at the page or object limit */
    uint64_t bad_objects;   /* objects dropped: an out-of-range number or a duplicate key */
    uint64_t forbidden;     /* 403 on an optional resource: reported, not waited for */
} kube_stats_t;

/* A watcher owning one I/O thread for all clusters. system_namespace is
 * copied (used by SECRETS and CONFIGMAPS); stale_after_s <= 0 disables STALE.
 * NULL when out of memory. */
kube_watcher_t *kube_watcher_new(kube_event_fn fn, void *arg, const char *system_namespace,
                                 int stale_after_s);
/* Adds (or replaces: keeps the caches, relists and emits only the
 * difference) cluster id watching the resources in res_mask. conn is copied.
 * Thread-safe, before or after start. 0, or -1 with err (bad conn or mask). */
int kube_watcher_add_cluster(kube_watcher_t *w, const char *id, const kube_conn_t *conn,
                             unsigned res_mask, char *err, size_t errlen);
/* Limits on one list (all its pages together), against an API server (or
 * something posing as one) that never stops paginating: a list is applied
 * only once its last page arrived, so its pages are held until then, and a
 * list going past either limit is abandoned (an error event, counted in
 * list_limits) and started again from scratch after a backoff; what was
 * known before stays. The defaults hold a cluster of a million Pods at the
 * 500 objects per page meshfed asks for, with room for servers that return
 * smaller pages. 0 keeps a limit as it is. Call before kube_watcher_start. */
#define KUBE_DEFAULT_MAX_LIST_PAGES 10000u
#define KUBE_DEFAULT_MAX_LIST_OBJECTS 1000000u
void kube_watcher_set_list_limits(kube_watcher_t *w, unsigned max_pages, size_t max_objects);
/* Stops watching id and forgets its caches (emits nothing). Thread-safe.
 * 0, or -1 when id is unknown. */
int kube_watcher_remove_cluster(kube_watcher_t *w, const char *id);
/* 0, or -1 if the thread could not start (or already runs). */
int kube_watcher_start(kube_watcher_t *w);
/* Stops and joins the thread; no callbacks after it returns. Idempotent. */
void kube_watcher_stop(kube_watcher_t *w);
/* Stops if needed and frees everything. */
void kube_watcher_free(kube_watcher_t *w);
void kube_watcher_stats(kube_watcher_t *w, kube_stats_t *out);
/* Whether every informer of id finished its initial list, and whether it is
 * stale. 0, or -1 when id is not (yet) known to the I/O thread. */
int kube_watcher_cluster_status(kube_watcher_t *w, const char *id, bool *synced, bool *stale);
/* What the I/O thread knows of cluster id: kube_watcher_cluster_status and
 * the optional resources (Gateways, AuthorizationPolicies,
 * PeerAuthentications) it cannot read, each a KUBE_RES_BIT():
 * forbidden when the API server answered 403 (meshfed's identity lacks the
 * RBAC grant), absent when it answered 404 (the CRD is not installed). An
 * optional resource is never waited for: either way it counts as synced
 * (empty), is reported once per change as an error event (403; 404 is
 * silent), counted (403: forbidden in kube_stats_t), and looked at again
 * every 30 s. For /debug/clusterz. 0, or -1 when id is not known. */
typedef struct kube_cluster_info {
    bool synced, stale;
    unsigned forbidden, absent;
} kube_cluster_info_t;
int kube_watcher_cluster_info(kube_watcher_t *w, const char *id, kube_cluster_info_t *out);
/* A deep copy of the connection of cluster id (as last added), for requests
 * of its own (e.g. TokenReviews); caller frees with kube_conn_free.
 * Thread-safe. 0, or -1 when id is unknown (or out of memory). */
int kube_watcher_conn(kube_watcher_t *w, const char *id, kube_conn_t *out);
const char *kube_res_name(kube_res_t r);
const char *kube_ev_name(kube_ev_t e);

/* ---------- requests and leader election (request.c, lease.c) ---------- */

/* One synchronous request (method "GET", "POST", "PUT", "PATCH", "DELETE")
 * of path (starting with "/", query included) on its own curl handle, with
 * conn's TLS and bearer token, 10 s overall timeout. body may be NULL (no
 * body); content_type defaults to application/json (use
 * "application/merge-patch+json" for merge patches). For writes and small
 * reads (responses over 16 MiB fail). Returns 0 when a response arrived,
 * whatever its HTTP status (in *status; the body, NUL-terminated, in
 * *resp_body for the caller to free), or -1 with err on a transport failure
 * (*resp_body NULL). Thread-safe. */
int kube_request(const kube_conn_t *c, const char *method, const char *path,
                 const char *content_type, const char *body, long *status, char **resp_body,
                 char *err, size_t errlen);

/* Leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection with ReleaseOnCancel: candidates take an absent or expired
 * lease, a leader renews it every retry period and gives up when no renewal
 * succeeded for renew_deadline (counted from when the last good renewal was
 * sent, so it stops leading before any other candidate can see the lease
 * expire). Expiry is judged by when this process last saw the lease record
 * change plus its leaseDurationSeconds, never by comparing clocks. */
typedef struct kube_lease kube_lease_t;

/* Called on the lease thread on every change: true when this candidate
 * became leader, false when it stopped being one (lost the lease, a renewal
 * missed the deadline, or kube_lease_stop). Must not call kube_lease_stop. */
typedef void (*kube_lease_fn)(void *arg, bool leading);

/* A candidate for lease ns/name as identity; conn and strings are copied.
 * Durations in seconds must satisfy lease > renew_deadline > 1.2 * retry > 0
 * (client-go's rule). NULL on bad arguments or no memory. */
kube_lease_t *kube_lease_new(const kube_conn_t *c, const char *ns, const char *name,
                             const char *identity, int lease_duration_s, int renew_deadline_s,
                             int retry_period_s);
/* Same with durations in milliseconds (for sub-second periods). */
kube_lease_t *kube_lease_new_ms(const kube_conn_t *c, const char *ns, const char *name,
                                const char *identity, int lease_duration_ms, int renew_deadline_ms,
                                int retry_period_ms);
/* Starts campaigning on a new thread. 0, or -1 (thread failed, or started
 * already). */
int kube_lease_start(kube_lease_t *l, kube_lease_fn fn, void *arg);
/* Whether this candidate currently leads (as last told to the callback). */
bool kube_lease_leading(kube_lease_t *l);
/* Stops the thread: if leading, calls fn(false) and then releases the lease
 * (holderIdentity "", leaseDurationSeconds 1) so another candidate takes
 * over at its next try. No callbacks after it returns. Idempotent. */
void kube_lease_stop(kube_lease_t *l);
/* Stops if needed and frees. */
void kube_lease_free(kube_lease_t *l);

/* ---------- Istio security objects (decode_sec.c) ---------- */

/* Decodes a security.istio.io AuthorizationPolicy (metadata, the
 * istio.io/dry-run annotation, spec.selector.matchLabels, spec.targetRef(s)
 * presence, spec.action ALLOW/DENY/AUDIT/CUSTOM, spec.rules with from,
 * to and when) or a PeerAuthentication (selector, mtls.mode,
 * portLevelMtls). The same strictness as kube_decode: wrong types and
 * unknown enum values are errors naming the field path, e.g.
 * "AuthorizationPolicy ns1/p: spec.rules[0].from[1].source.ipBlocks[2]:
 * expected a string, got integer". Values are kept as written: whether
 * istiod would use them (a named port, a bad CIDR) is the model's call.
 * Caller owns *out (model_authz_policy_free / model_peer_authn_free);
 * 0, or -1 with err and *out NULL. */
int kube_decode_authz(const json_t *obj, model_authz_policy_t **out, char *err, size_t errlen);
int kube_decode_peer_authn(const json_t *obj, model_peer_authn_t **out, char *err, size_t errlen);

#endif
