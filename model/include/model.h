/*
 * model.h - the pure multicluster model of meshfed.
 *
 * The model takes typed Kubernetes objects from many clusters (already decoded
 * by kube/), evaluates ServiceScope rules, merges global services across
 * clusters by namespace sameness and publishes immutable, refcounted snapshots
 * of the resources that proxies receive. It does no I/O, starts no threads and
 * reads no clock: everything it knows is passed in.
 *
 * Ownership: objects passed to model_apply() are owned by the model from then
 * on, even when the call fails. Snapshots are refcounted and immutable; they
 * may be read from any thread. A model_t itself is used by one thread.
 */
#ifndef MESHFED_MODEL_H
#define MESHFED_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MODEL_ERRLEN 256

/* ---------- labels ---------- */

typedef struct model_label {
    char *key;
    char *value;
} model_label_t;

/* A label set: pairs sorted by key, keys unique. */
typedef struct model_labels {
    model_label_t *kv;
    size_t n;
} model_labels_t;

/* Adds or replaces key=value, keeping the set sorted. 0 or -1 (no memory). */
int model_labels_set(model_labels_t *l, const char *key, const char *value);
/* The value of key, or NULL when absent. Borrowed. */
const char *model_labels_get(const model_labels_t *l, const char *key);
void model_labels_clear(model_labels_t *l);
bool model_labels_equal(const model_labels_t *a, const model_labels_t *b);

/* ---------- label selectors (Kubernetes metav1.LabelSelector) ---------- */

typedef enum model_selop {
    MODEL_SELOP_IN,
    MODEL_SELOP_NOT_IN,
    MODEL_SELOP_EXISTS,
    MODEL_SELOP_DOES_NOT_EXIST,
} model_selop_t;

typedef struct model_selector model_selector_t;

/* An empty selector, which matches every label set. Caller owns. */
model_selector_t *model_selector_new(void);
void model_selector_free(model_selector_t *s);
/* A deep copy (NULL when out of memory). Caller owns. */
model_selector_t *model_selector_copy(const model_selector_t *s);
/* Parses "In", "NotIn", "Exists", "DoesNotExist" (exact case). 0 or -1. */
int model_selop_parse(const char *s, model_selop_t *op);
const char *model_selop_name(model_selop_t op);
/* A matchLabels entry: key must equal value. 0, or -1 with a reason in err. */
int model_selector_add_label(model_selector_t *s, const char *key, const char *value, char *err,
                             size_t errlen);
/* A matchExpressions entry. Validates the key, the values and their count for
 * the operator (In/NotIn need at least one value, Exists/DoesNotExist none).
 * 0, or -1 with a reason in err; the selector is unchanged on failure. */
int model_selector_add_expr(model_selector_t *s, const char *key, model_selop_t op,
                            const char *const *values, size_t nvalues, char *err, size_t errlen);
/* All requirements ANDed; an empty selector matches everything. */
bool model_selector_matches(const model_selector_t *s, const model_labels_t *labels);
bool model_selector_empty(const model_selector_t *s);
/* Kubernetes string form ("app=a,env in (x,y),!gone"); caller frees. */
char *model_selector_string(const model_selector_t *s);
/* Label key and value syntax checks, as the API server applies them. */
bool model_label_key_valid(const char *key, char *err, size_t errlen);
bool model_label_value_valid(const char *value, char *err, size_t errlen);

/* ---------- ServiceScope ---------- */

typedef enum model_scope { MODEL_SCOPE_LOCAL = 0, MODEL_SCOPE_GLOBAL = 1 } model_scope_t;

typedef struct model_scope_rule {
    char *origin;                    /* e.g. "ServiceScope/default[0]", for /debug */
    model_selector_t *namespace_sel; /* NULL matches every namespace */
    model_selector_t *service_sel;   /* NULL matches every service */
    model_scope_t scope;
} model_scope_rule_t;

typedef struct model_scope_rules model_scope_rules_t;

/* An empty rule set. Caller owns. */
model_scope_rules_t *model_scope_rules_new(void);
/* Appends a rule; takes ownership of its fields (also on failure). */
int model_scope_rules_add(model_scope_rules_t *r, model_scope_rule_t rule);
/* The default rule set: services labelled istio.io/global=true are GLOBAL. */
model_scope_rules_t *model_scope_rules_default(void);
void model_scope_rules_free(model_scope_rules_t *r);
size_t model_scope_rules_count(const model_scope_rules_t *r);
/* Same rules, in the same order, with the same origins. */
bool model_scope_rules_equal(const model_scope_rules_t *a, const model_scope_rules_t *b);
const model_scope_rule_t *model_scope_rules_at(const model_scope_rules_t *r, size_t i);

/* Why a service got its scope: the deciding rule index or -1 (no rule matched). */
typedef struct model_scope_result {
    model_scope_t scope;
    int rule;
} model_scope_result_t;

/* Evaluates the rules for a service with the given labels in a namespace with
 * the given labels (NULL namespace labels: namespace unknown, no labels). */
model_scope_result_t model_scope_eval(const model_scope_rules_t *r, const model_labels_t *ns_labels,
                                      const model_labels_t *svc_labels);

/* ---------- input objects (decoded by kube/, owned by the model) ---------- */

typedef enum model_kind {
    MODEL_KIND_NAMESPACE,
    MODEL_KIND_SERVICE,
    MODEL_KIND_ENDPOINTSLICE,
    MODEL_KIND_POD,
    MODEL_KIND_NODE,
    MODEL_KIND_AUTHZ_POLICY, /* security.istio.io AuthorizationPolicy (model_authz_policy_t) */
    MODEL_KIND_PEER_AUTHN,   /* security.istio.io PeerAuthentication (model_peer_authn_t) */
    MODEL_KIND_GATEWAY, /* gateway.networking.k8s.io Gateway, as a waypoint (model_gateway_t) */
    MODEL_KIND__COUNT
} model_kind_t;

const char *model_kind_name(model_kind_t k);

typedef enum model_op { MODEL_OP_UPSERT, MODEL_OP_DELETE } model_op_t;

typedef enum model_proto { MODEL_PROTO_TCP, MODEL_PROTO_UDP, MODEL_PROTO_SCTP } model_proto_t;

typedef enum model_traffic_dist {
    MODEL_TD_NONE = 0,
    MODEL_TD_PREFER_CLOSE,     /* PreferClose (and PreferSameZone, its newer name) */
    MODEL_TD_PREFER_SAME_NODE, /* PreferSameNode */
    MODEL_TD_ANY,              /* an annotation naming none of these: even spread */
} model_traffic_dist_t;

/* A binary IP address: 4 or 16 bytes. */
typedef struct model_ip {
    uint8_t len;
    uint8_t b[16];
} model_ip_t;

/* Parses dotted IPv4 or textual IPv6. 0 or -1. */
int model_ip_parse(const char *s, model_ip_t *ip);
/* Formats into buf (at least 46 bytes). */
const char *model_ip_format(const model_ip_t *ip, char *buf, size_t len);
bool model_ip_equal(const model_ip_t *a, const model_ip_t *b);

typedef struct model_namespace {
    char *name;
    model_labels_t labels;
    /* annotation networking.istio.io/traffic-distribution, inherited by its
     * Services that set none */
    model_traffic_dist_t traffic_dist;
    /* annotation istio.io/use-waypoint-canary-weight (model_canary_weight) */
    uint8_t canary_weight;
} model_namespace_t;

/* Annotation istio.io/use-waypoint-canary-weight as istiod parses it (Go's
 * strconv.Atoi, then 0-100): MODEL_CANARY_ABSENT (0, so that a zeroed
 * object has none), 1 + the percentage, or MODEL_CANARY_INVALID. */
enum { MODEL_CANARY_ABSENT = 0, MODEL_CANARY_INVALID = 255 };
uint8_t model_canary_weight(const char *annotation);

/* Values of istio.workload.IPFamilies. */
typedef enum model_ip_families {
    MODEL_IPF_AUTOMATIC = 0,
    MODEL_IPF_V4 = 1,
    MODEL_IPF_V6 = 2,
    MODEL_IPF_DUAL = 3,
} model_ip_families_t;

typedef struct model_svc_port {
    char *name;
    uint16_t port;
    uint16_t target_port;   /* 0 when target port is named or absent */
    char *target_port_name; /* named target port, or NULL */
    model_proto_t protocol;
    char *app_protocol; /* or NULL */
} model_svc_port_t;

typedef struct model_service {
    char *ns;
    char *name;
    char *uid;
    int64_t created; /* creationTimestamp, seconds since the epoch */
    model_labels_t labels;
    model_ip_t *cluster_ips; /* empty for headless services */
    size_t ncluster_ips;
    bool headless;
    model_svc_port_t *ports;
    size_t nports;
    model_traffic_dist_t traffic_dist; /* NONE: unset, inherit the namespace's */
    bool external_name;                /* type ExternalName: not in the mesh */
    bool itp_local;                    /* internalTrafficPolicy Local */
    bool publish_not_ready;            /* publishNotReadyAddresses */
    model_ip_families_t ip_families;   /* from spec.ipFamilies */
    uint8_t canary_weight;             /* model_canary_weight of its annotation */
    /* status.loadBalancer.ingress addresses (east-west gateway discovery) */
    model_ip_t *lb_ips;
    size_t nlb_ips;
} model_service_t;

typedef struct model_ep_port {
    char *name;
    uint16_t port;
    model_proto_t protocol;
} model_ep_port_t;

typedef struct model_endpoint {
    model_ip_t ip; /* first address of the endpoint */
    bool ready;    /* conditions.ready (absent = true) */
    bool serving;
    bool terminating;
    char *node; /* nodeName or NULL */
    char *zone; /* zone or NULL */
    char *pod;  /* targetRef name when kind is Pod, or NULL */
} model_endpoint_t;

typedef struct model_endpointslice {
    char *ns;
    char *name;
    char *service; /* label kubernetes.io/service-name */
    model_ep_port_t *ports;
    size_t nports;
    model_endpoint_t *endpoints;
    size_t nendpoints;
} model_endpointslice_t;

typedef struct model_pod {
    char *ns;
    char *name;
    char *uid;
    model_labels_t labels;
    model_ip_t *ips;
    size_t nips;
    char *node;
    char *service_account;
    bool ready;        /* condition Ready=True */
    bool terminating;  /* deletionTimestamp set */
    bool terminal;     /* phase Succeeded or Failed: it runs no more */
    bool ambient;      /* annotation ambient.istio.io/redirection=enabled */
    bool host_network; /* spec.hostNetwork */
    /* from the decoder: its controller "Kind/name" (when generateName is
     * set), or NULL; the model turns it into the workload name on apply */
    char *owner;
} model_pod_t;

typedef struct model_node {
    char *name;
    model_labels_t labels; /* region, zone, subzone come from these */
} model_node_t;

/* Label istio.io/waypoint-for of a Gateway: what may use it as a waypoint. */
typedef enum model_wp_for {
    MODEL_WP_SERVICE = 0, /* the default */
    MODEL_WP_WORKLOAD,
    MODEL_WP_ALL,
    MODEL_WP_NONE,
    MODEL_WP_OTHER, /* any other value: matches nothing, as in istiod */
} model_wp_for_t;

/* allowedRoutes.namespaces.from of a Gateway's HBONE listener (port 15008):
 * which namespaces' objects may use it as their waypoint. */
typedef enum model_wp_from {
    MODEL_WP_FROM_SAME = 0, /* the default, and what any other value means */
    MODEL_WP_FROM_ALL,
    MODEL_WP_FROM_SELECTOR,
} model_wp_from_t;

/* A Gateway API Gateway of any class: a waypoint for whatever names it
 * with istio.io/use-waypoint, once its status has an address. */
typedef struct model_gateway {
    char *ns;
    char *name;
    model_wp_for_t waypoint_for;
    /* status.addresses has an entry: istiod's Waypoint exists, and pods
     * labelled with its name are its instances, even without a usable
     * address below */
    bool ready;
    /* the first Hostname of status.addresses, or NULL; else the first
     * IPAddress (len 0: none, and the Gateway is no waypoint yet) */
    char *hostname;
    model_ip_t ip;
    model_wp_from_t from;
    /* MODEL_WP_FROM_SELECTOR: the namespaces' labels it takes; NULL (no
     * selector) takes none, as an absent metav1.LabelSelector does */
    model_selector_t *from_sel;
} model_gateway_t;

/* Frees an object of the given kind (and the struct itself). NULL is fine. */
void model_obj_free(model_kind_t kind, void *obj);

/* ---------- clusters ---------- */

typedef enum model_cluster_state {
    MODEL_CLUSTER_SYNCING,
    MODEL_CLUSTER_SYNCED,
    MODEL_CLUSTER_STALE,
} model_cluster_state_t;

const char *model_cluster_state_name(model_cluster_state_t s);

typedef struct model_cluster {
    const char *id;
    const char *network;      /* topology.istio.io/network; "" is a network too */
    model_ip_t gateway;       /* east-west gateway address; len 0 = none */
    uint16_t gateway_port;    /* HBONE port, 15008 when 0 */
    const char *gateway_ns;   /* gateway's namespace, "istio-system" when NULL */
    const char *gateway_name; /* gateway's name, "istio-eastwest" when NULL */
    const char *gateway_sa;   /* gateway's service account, gateway_name when NULL */
    /* a load-balancer hostname instead of an IP (gateway.len 0), or NULL */
    const char *gateway_hostname;
    const char *gateway_problem; /* why it has no usable gateway, or NULL (for /debug) */
} model_cluster_t;

/* ---------- the model ---------- */

typedef struct model_config {
    const char *trust_domain;  /* "cluster.local" when NULL */
    const char *domain_suffix; /* "cluster.local" when NULL */
    /* trafficDistribution keeps traffic in the viewer's cluster before
     * other clusters of its network (CLUSTER after NETWORK); istiod does not */
    bool prefer_cluster;
    /* meshConfig.rootNamespace: its selector-less AuthorizationPolicies
     * apply mesh-wide; "istio-system" when NULL */
    const char *root_namespace;
    /* AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY: a policy annotated
     * istio.io/dry-run is sent with dry_run set (ztunnel logs what it would
     * do); off, as in istiod, it is not sent */
    bool authz_dry_run;
} model_config_t;

typedef struct model model_t;

model_t *model_new(const model_config_t *cfg);
void model_free(model_t *m);

/* Adds a cluster or updates its network and gateway. Copies the strings. */
int model_cluster_set(model_t *m, const model_cluster_t *c, char *err, size_t errlen);
/* Removes a cluster and everything it contributed. 0, or -1 if unknown. */
int model_cluster_remove(model_t *m, const char *id);
int model_cluster_set_state(model_t *m, const char *id, model_cluster_state_t st);
/* Drops every object of one kind in a cluster (before a relist). */
int model_cluster_clear_kind(model_t *m, const char *id, model_kind_t kind);

/* Applies one object event. For MODEL_OP_DELETE only the identity fields of
 * obj (ns, name) are read. Takes ownership of obj. 0, or -1 with err set. */
int model_apply(model_t *m, const char *cluster, model_kind_t kind, model_op_t op, void *obj,
                char *err, size_t errlen);

/* Replaces the ServiceScope rules (NULL = the default rules); takes ownership. */
void model_scope_set(model_t *m, model_scope_rules_t *rules);

/* ---------- introspection (for /debug; same thread as the model) ---------- */

typedef struct model_cluster_info {
    const char *id;
    const char *network;
    model_ip_t gateway;
    const char *gateway_hostname; /* or NULL */
    const char *gateway_problem;  /* or NULL */
    uint16_t gateway_port;
    model_cluster_state_t state;
    size_t objects[MODEL_KIND__COUNT];
} model_cluster_info_t;

typedef struct model_service_info {
    const char *key; /* "ns/name" */
    size_t nclusters;
    const char *const *clusters;        /* clusters that have the Service, sorted */
    const model_scope_result_t *scopes; /* parallel to clusters */
    const char *base_cluster;           /* whose definition the global service uses, or NULL */
    const char *conflict;               /* how the clusters disagree, or NULL */
} model_service_info_t;

typedef void (*model_cluster_fn)(const model_cluster_info_t *c, void *arg);
typedef void (*model_service_fn)(const model_service_info_t *s, void *arg);

void model_each_cluster(const model_t *m, model_cluster_fn fn, void *arg);
/* Services as of the last commit, in no particular order. */
void model_each_service(const model_t *m, model_service_fn fn, void *arg);
/* One service ("ns/name") as of the last commit; false if unknown. */
bool model_service_info(const model_t *m, const char *key, model_service_info_t *out);
/* fn for each service whose conflict became a new one in the commits since
 * the last call (once per change, to log it once); then forgets them. */
void model_each_new_conflict(model_t *m, model_service_fn fn, void *arg);
const model_scope_rules_t *model_rules(const model_t *m);
/* Objects of one kind in one cluster: fn(obj) for each (borrowed). */
void model_each_object(const model_t *m, const char *cluster, model_kind_t kind,
                       void (*fn)(const void *obj, void *arg), void *arg);
/* The object stored under key ("ns/name" or name), or NULL. Borrowed. */
const void *model_object(const model_t *m, const char *cluster, model_kind_t kind, const char *key);
uint64_t model_events(const model_t *m);
/* ServiceScope evaluations done (one per service per cluster rebuilt). */
uint64_t model_scope_evaluations(const model_t *m);

/* ---------- output resources ---------- */

typedef enum model_res_kind {
    MODEL_RES_WORKLOAD,  /* istio.workload.Workload */
    MODEL_RES_SERVICE,   /* istio.workload.Service */
    MODEL_RES_ENDPOINTS, /* a service's endpoints for Envoy-style clients (EDS) */
    MODEL_RES_AUTHZ,     /* istio.security.Authorization, seen by its own cluster only */
} model_res_kind_t;

/* Who may see a resource variant. */
typedef enum model_vis_mode {
    MODEL_VIS_CLUSTER,        /* only proxies of vis_cluster */
    MODEL_VIS_NETWORK_PEERS,  /* proxies of vis_network, except those of vis_cluster */
    MODEL_VIS_NETWORK,        /* every proxy of vis_network */
    MODEL_VIS_OTHER_NETWORKS, /* proxies of every network but vis_network */
    MODEL_VIS_ALL,            /* everyone */
} model_vis_mode_t;

typedef struct model_vis {
    model_vis_mode_t mode;
    uint32_t nexclude;
    const char *const *exclude; /* clusters that never see it (any mode) */
    const char *cluster;
    const char *network;
} model_vis_t;

/* A proxy's view: its cluster and network. */
typedef struct model_view {
    const char *cluster;
    const char *network;
} model_view_t;

typedef enum model_lb_mode {
    MODEL_LB_UNSPECIFIED = 0,
    MODEL_LB_STRICT = 1,
    MODEL_LB_FAILOVER = 2,
} model_lb_mode_t;

/* Values of istio.workload.LoadBalancing.Scope. */
typedef enum model_lb_scope {
    MODEL_LB_SCOPE_UNSPECIFIED = 0,
    MODEL_LB_SCOPE_REGION = 1,
    MODEL_LB_SCOPE_ZONE = 2,
    MODEL_LB_SCOPE_SUBZONE = 3,
    MODEL_LB_SCOPE_NODE = 4,
    MODEL_LB_SCOPE_CLUSTER = 5,
    MODEL_LB_SCOPE_NETWORK = 6,
} model_lb_scope_t;

typedef struct model_net_addr {
    const char *network;
    model_ip_t ip;
} model_net_addr_t;

/* Where a workload of another network is reached: that network's east-west
 * gateway, by IP, or by hostname (ns is then the Gateway's namespace), and
 * what the workload stands for there. Only split-horizon workloads have one,
 * so their capacity lives here rather than in every pod's Workload. The
 * same struct is a waypoint's address (a GatewayAddress too): a pod's
 * Workload, which never has a network gateway, keeps its waypoint in the
 * same member, marked by waypoint, so that it costs a pod no pointer. */
typedef struct model_gw_addr {
    const char *network;
    model_ip_t ip;        /* len 0 when hostname is set */
    bool waypoint;        /* a Workload's waypoint, not its network_gateway */
    uint16_t hbone_port;  /* hbone_mtls_port */
    uint32_t capacity;    /* the workload's capacity; 0 = not set */
    const char *hostname; /* or NULL */
    const char *ns;       /* or NULL */
} model_gw_addr_t;

/* Values of istio.workload.TunnelProtocol. */
typedef enum model_tunnel { MODEL_TUNNEL_NONE = 0, MODEL_TUNNEL_HBONE = 1 } model_tunnel_t;

typedef struct model_port_pair {
    uint16_t service_port;
    uint16_t target_port;
    uint16_t app_protocol; /* istio.workload.AppProtocol; 16 bits: no padding to compare */
} model_port_pair_t;

/* The fields of the two Address resources, each listed once: the struct
 * members, model_res_equal, the xDS encoder and the debug JSON are all
 * generated from these lists, so a field added here reaches all of them (and
 * tests/test_fields.c checks that each one does). An entry is
 * X(kind, member, proto member, JSON name), in the order of the JSON
 * rendering. The kind says what the member is and how it is compared,
 * encoded and rendered; the kinds whose encoding is special (LOC, GW, SVCS,
 * LB...) name one helper in each file. Pointer-sized members are laid out
 * first, then the narrow ones (MODEL_FIELD_WIDE/NARROW), so that the small
 * fields pack together. */
#define MODEL_FIELD_WIDE(kind, m, pb, json) MODEL_WIDE_##kind(m)
#define MODEL_FIELD_NARROW(kind, m, pb, json) MODEL_NARROW_##kind(m)

/* STR: a string the resource owns (its arena); SSTR: a shared string
 * (model_str) it holds a reference to; LOC: a shared string of the
 * locality. */
#define MODEL_WIDE_STR(m) const char *m;
#define MODEL_NARROW_STR(m)
#define MODEL_WIDE_SSTR(m) const char *m;
#define MODEL_NARROW_SSTR(m)
#define MODEL_WIDE_LOC(m) const char *m;
#define MODEL_NARROW_LOC(m)
/* Workload addresses; 16-bit count: a pod's Workload fits 320 bytes. */
#define MODEL_WIDE_IPS(m) model_ip_t *m;
#define MODEL_NARROW_IPS(m) uint16_t n##m;
/* Workload services map, shared (model_svcs); 16-bit count as IPS. */
#define MODEL_WIDE_SVCS(m) const model_wl_service_t *m;
#define MODEL_NARROW_SVCS(m) uint16_t n##m;
/* network_gateway (and capacity) it is reached through, or NULL; a
 * Service's waypoint. */
#define MODEL_WIDE_GW(m) const model_gw_addr_t *m;
#define MODEL_NARROW_GW(m)
/* weighted_waypoints: a Service's canary waypoint, or NULL, and its share
 * in percent; with one, the Service's waypoint (its `waypoint` member, which
 * the encoder reads too) takes the rest. */
#define MODEL_WIDE_CANARY(m) const model_gw_addr_t *m;
#define MODEL_NARROW_CANARY(m) uint8_t m##_weight;
/* A Workload's waypoint: no member of its own, the GW member m when it is
 * marked waypoint (see model_gw_addr_t). */
#define MODEL_WIDE_WP(m)
#define MODEL_NARROW_WP(m)
#define MODEL_WIDE_TUNNEL(m)
#define MODEL_NARROW_TUNNEL(m) uint8_t m : 2; /* model_tunnel_t */
#define MODEL_WIDE_FLAG(m)
#define MODEL_NARROW_FLAG(m) uint8_t m : 1; /* a proto bool */
#define MODEL_WIDE_NETMODE(m)
#define MODEL_NARROW_NETMODE(m) uint8_t m : 1; /* network_mode HOST_NETWORK */
#define MODEL_WIDE_WLTYPE(m)
#define MODEL_NARROW_WLTYPE(m) uint8_t m : 4; /* istio.workload.WorkloadType */
#define MODEL_WIDE_STATUS(m)
#define MODEL_NARROW_STATUS(m) bool m; /* HEALTHY or UNHEALTHY */
/* A proto bool always true, no member: Kubernetes Services own their
 * hostname (canonical), as istiod marks them. */
#define MODEL_WIDE_TRUE(m)
#define MODEL_NARROW_TRUE(m)
#define MODEL_WIDE_NETADDRS(m)                                                                     \
    model_net_addr_t *m;                                                                           \
    size_t n##m;
#define MODEL_NARROW_NETADDRS(m)
#define MODEL_WIDE_PORTS(m)                                                                        \
    model_port_pair_t *m;                                                                          \
    size_t n##m;
#define MODEL_NARROW_PORTS(m)
/* Names parallel to the ports, for the EDS encoder only: not part of an
 * istio.workload.Service. */
#define MODEL_WIDE_PORT_NAMES(m) const char **m;
#define MODEL_NARROW_PORT_NAMES(m)
/* SPIFFE ids of the workloads behind it on networks other than the viewer's,
 * sorted: what ztunnel verifies the inner HBONE against. */
#define MODEL_WIDE_SANS(m)                                                                         \
    const char **m;                                                                                \
    size_t n##m;
#define MODEL_NARROW_SANS(m)
/* load_balancing: mode, routing preferences, and health_policy ALLOW_ALL
 * (publishNotReadyAddresses). */
#define MODEL_WIDE_LB(m)
#define MODEL_NARROW_LB(m)                                                                         \
    model_lb_mode_t m##_mode;                                                                      \
    model_lb_scope_t m##_prefs[6];                                                                 \
    size_t n##m##_prefs;                                                                           \
    bool m##_allow_all;
#define MODEL_WIDE_IPF(m)
#define MODEL_NARROW_IPF(m) model_ip_families_t m;
/* Names ("ns/name") as one shared string (model_str), separated by '\n',
 * or NULL for none: the pods of a Deployment share one copy, and equal lists
 * compare as equal pointers. */
#define MODEL_WIDE_KEYS(m) const char *m;
#define MODEL_NARROW_KEYS(m)

#define MODEL_SERVICE_FIELDS(X)                                                                    \
    X(STR, name, name, "name")                                                                     \
    X(STR, ns, namespace_, "namespace")                                                            \
    X(STR, hostname, hostname, "hostname")                                                         \
    X(TRUE, canonical, canonical, "canonical")                                                     \
    X(NETADDRS, addrs, addresses, "addresses")                                                     \
    X(PORTS, ports, ports, "ports")                                                                \
    X(PORT_NAMES, port_names, -, -)                                                                \
    X(SANS, sans, subject_alt_names, "subjectAltNames")                                            \
    X(LB, lb, load_balancing, "loadBalancing")                                                     \
    X(IPF, ip_families, ip_families, "ipFamilies")                                                 \
    X(GW, waypoint, waypoint, "waypoint")                                                          \
    X(CANARY, canary, weighted_waypoints, "weightedWaypoints")                                     \
    X(FLAG, ingress_use_waypoint, ingress_use_waypoint, "ingressUseWaypoint")

typedef struct model_out_service {
    MODEL_SERVICE_FIELDS(MODEL_FIELD_WIDE)
    MODEL_SERVICE_FIELDS(MODEL_FIELD_NARROW)
} model_out_service_t;

typedef struct model_wl_service {
    const char *key; /* "ns/hostname" */
    model_port_pair_t *ports;
    size_t nports;
} model_wl_service_t;

/* hostname: a workload reached by name (a gateway), or NULL. authz: the
 * WORKLOAD_SELECTOR Authorization policies of its own cluster that apply to
 * it (pods only). */
#define MODEL_WORKLOAD_FIELDS(X)                                                                   \
    X(STR, uid, uid, "uid")                                                                        \
    X(STR, name, name, "name")                                                                     \
    X(SSTR, ns, namespace_, "namespace")                                                           \
    X(IPS, addrs, addresses, "addresses")                                                          \
    X(SSTR, network, network, "network")                                                           \
    X(TUNNEL, tunnel, tunnel_protocol, "tunnelProtocol")                                           \
    X(STR, hostname, hostname, "hostname")                                                         \
    X(FLAG, native_tunnel, native_tunnel, "nativeTunnel")                                          \
    X(NETMODE, host_network, network_mode, "networkMode")                                          \
    X(SSTR, trust_domain, trust_domain, "trustDomain")                                             \
    X(SSTR, service_account, service_account, "serviceAccount")                                    \
    X(SSTR, node, node, "node")                                                                    \
    X(SSTR, cluster_id, cluster_id, "clusterId")                                                   \
    X(SSTR, workload_name, workload_name, "workloadName")                                          \
    X(SSTR, canonical_name, canonical_name, "canonicalName")                                       \
    X(SSTR, canonical_revision, canonical_revision, "canonicalRevision")                           \
    X(WLTYPE, workload_type, workload_type, "workloadType")                                        \
    X(STATUS, healthy, status, "status")                                                           \
    X(LOC, region, region, "region")                                                               \
    X(LOC, zone, zone, "zone")                                                                     \
    X(LOC, subzone, subzone, "subzone")                                                            \
    X(GW, gateway, network_gateway, "networkGateway")                                              \
    X(WP, gateway, waypoint, "waypoint")                                                           \
    X(SVCS, services, services, "services")                                                        \
    X(KEYS, authz, authorization_policies, "authorizationPolicies")

typedef struct model_out_workload {
    MODEL_WORKLOAD_FIELDS(MODEL_FIELD_WIDE)
    MODEL_WORKLOAD_FIELDS(MODEL_FIELD_NARROW)
} model_out_workload_t;

/* Where endpoints run; shared by the endpoints of a resource that have the
 * same one. */
typedef struct model_locality {
    const char *cluster;
    const char *network;
    const char *region, *zone, *subzone;
} model_locality_t;

/* One endpoint as an Envoy-style client (gateway, proxyless gRPC) sees it. */
typedef struct model_out_endpoint {
    model_ip_t ip;
    uint8_t priority; /* 0: preferred; 1: only when priority 0 has none healthy */
    bool healthy;
    bool via_gateway;            /* ip and ports are the remote network's gateway */
    uint32_t weight;             /* 1, or the ready endpoints a gateway stands for */
    const uint16_t *ports;       /* parallel to the service ports; 0 = not served */
    const model_locality_t *loc; /* never NULL */
} model_out_endpoint_t;

/* A service's endpoints for one viewing cluster: its own cluster's and its
 * network's pods directly, other networks through their gateways. With a
 * trafficDistribution, everything outside the viewer's cluster has
 * priority 1. */
typedef struct model_out_endpoints {
    const char *name;
    const char *ns;
    const char *hostname;
    model_port_pair_t *ports;
    const char **port_names;
    size_t nports;
    model_out_endpoint_t *eps;
    size_t neps;
    bool global;
    bool prefer_local; /* trafficDistribution set */
} model_out_endpoints_t;

/* One resource variant: immutable once published. */
typedef struct model_res model_res_t;

model_res_kind_t model_res_kind(const model_res_t *r);
/* The xDS resource name (workload uid, or "ns/hostname"). Borrowed. */
const char *model_res_name(const model_res_t *r);
const model_vis_t *model_res_vis(const model_res_t *r);
const model_out_workload_t *model_res_workload(const model_res_t *r);
const model_out_service_t *model_res_service(const model_res_t *r);
const model_out_endpoints_t *model_res_endpoints(const model_res_t *r);
/* The model version at which this variant was built. */
uint64_t model_res_version(const model_res_t *r);
bool model_res_visible(const model_res_t *r, const model_view_t *v);
/* A slot for the encoder: set once (atomically), freed with the resource.
 * p must begin with a model_res_cache_hdr_t, which this fills with free_fn:
 * the function travels with the value, so the resource holds one pointer.
 * Returns the value now in the slot (yours, or one set first by another;
 * yours is then freed with free_fn). */
typedef struct model_res_cache_hdr {
    void (*free_fn)(void *);
} model_res_cache_hdr_t;
void *model_res_cache(const model_res_t *r);
void *model_res_cache_set(const model_res_t *r, void *p, void (*free_fn)(void *));

/* ---------- snapshots ---------- */

typedef struct model_snapshot model_snapshot_t;

/* Applies all pending events and returns the current snapshot (a new
 * reference, caller unrefs). Cost is proportional to what changed. */
model_snapshot_t *model_commit(model_t *m);
model_snapshot_t *model_snapshot_ref(model_snapshot_t *s);
void model_snapshot_unref(model_snapshot_t *s);
uint64_t model_snapshot_version(const model_snapshot_t *s);
size_t model_snapshot_size(const model_snapshot_t *s); /* names, all views */

typedef void (*model_res_fn)(const model_res_t *r, void *arg);
/* Calls fn for each resource visible in view. */
void model_snapshot_each(const model_snapshot_t *s, const model_view_t *v, model_res_fn fn,
                         void *arg);
/* The variant of name visible in view, or NULL. Borrowed from s. */
const model_res_t *model_snapshot_get(const model_snapshot_t *s, const model_view_t *v,
                                      const char *name);

/* For a view, what changed from 'from' to 'to': fn(name, old, new) with old
 * NULL for added, new NULL for removed. 'from' NULL means empty. Cost is
 * proportional to the change, not to the size of the snapshots. */
typedef void (*model_diff_fn)(const char *name, const model_res_t *old_r, const model_res_t *new_r,
                              void *arg);
void model_snapshot_diff(const model_snapshot_t *from, const model_snapshot_t *to,
                         const model_view_t *v, model_diff_fn fn, void *arg);

/* The same three for the endpoints family (MODEL_RES_ENDPOINTS), named
 * "ns/hostname" like the services they belong to. */
void model_snapshot_each_endpoints(const model_snapshot_t *s, const model_view_t *v,
                                   model_res_fn fn, void *arg);
const model_res_t *model_snapshot_get_endpoints(const model_snapshot_t *s, const model_view_t *v,
                                                const char *name);
void model_snapshot_diff_endpoints(const model_snapshot_t *from, const model_snapshot_t *to,
                                   const model_view_t *v, model_diff_fn fn, void *arg);

/* ---------- ambient authorization (authz.c) ----------
 *
 * Istio AuthorizationPolicy and PeerAuthentication objects (decoded by kube/)
 * and the istio.security.Authorization resources istiod derives from them for
 * ztunnel. The translation is pure: the caller passes the root namespace and
 * the policy sets. */

/* A list of strings, each owned. */
typedef struct model_strlist {
    char **v;
    size_t n;
} model_strlist_t;

void model_strlist_clear(model_strlist_t *l);

/* The fields of an AuthorizationPolicy rules[].from[].source and
 * rules[].to[].operation, each listed once: X(member, JSON name, L4 or L7).
 * The decoder, the L7 detection and the status message ("found: ...") are
 * generated from these lists. */
#define MODEL_AP_SOURCE_FIELDS(X)                                                                  \
    X(principals, "principals", L4)                                                                \
    X(not_principals, "notPrincipals", L4)                                                         \
    X(namespaces, "namespaces", L4)                                                                \
    X(not_namespaces, "notNamespaces", L4)                                                         \
    X(ip_blocks, "ipBlocks", L4)                                                                   \
    X(not_ip_blocks, "notIpBlocks", L4)                                                            \
    X(service_accounts, "serviceAccounts", L4)                                                     \
    X(not_service_accounts, "notServiceAccounts", L4)                                              \
    X(remote_ip_blocks, "remoteIpBlocks", L7)                                                      \
    X(not_remote_ip_blocks, "notRemoteIpBlocks", L7)                                               \
    X(request_principals, "requestPrincipals", L7)                                                 \
    X(not_request_principals, "notRequestPrincipals", L7)

#define MODEL_AP_OPERATION_FIELDS(X)                                                               \
    X(ports, "ports", L4)                                                                          \
    X(not_ports, "notPorts", L4)                                                                   \
    X(hosts, "hosts", L7)                                                                          \
    X(not_hosts, "notHosts", L7)                                                                   \
    X(methods, "methods", L7)                                                                      \
    X(not_methods, "notMethods", L7)                                                               \
    X(paths, "paths", L7)                                                                          \
    X(not_paths, "notPaths", L7)

#define MODEL_AP_MEMBER(m, json, layer) model_strlist_t m;

typedef struct model_ap_source {
    MODEL_AP_SOURCE_FIELDS(MODEL_AP_MEMBER)
} model_ap_source_t;

typedef struct model_ap_operation {
    MODEL_AP_OPERATION_FIELDS(MODEL_AP_MEMBER)
} model_ap_operation_t;

typedef struct model_ap_condition {
    char *key;
    model_strlist_t values;
    model_strlist_t not_values;
} model_ap_condition_t;

/* One rules[] entry. A from[] or to[] entry without its source or operation
 * decodes as an empty one. */
typedef struct model_ap_rule {
    model_ap_source_t *from;
    size_t nfrom;
    model_ap_operation_t *to;
    size_t nto;
    model_ap_condition_t *when;
    size_t nwhen;
} model_ap_rule_t;

typedef enum model_ap_action {
    MODEL_AP_ALLOW, /* also when spec.action is absent */
    MODEL_AP_DENY,
    MODEL_AP_AUDIT,
    MODEL_AP_CUSTOM,
} model_ap_action_t;

/* A workload selector (spec.selector) as istiod tells its states apart:
 * absent; present with matchLabels absent (nil: it selects nothing); or
 * present with matchLabels, possibly empty (selects every workload). */
typedef struct model_wl_selector {
    bool set;        /* spec.selector present */
    bool has_labels; /* spec.selector.matchLabels present */
    model_labels_t labels;
} model_wl_selector_t;

/* A security.istio.io/v1 AuthorizationPolicy. */
typedef struct model_authz_policy {
    char *ns;
    char *name;
    int64_t created;
    int64_t generation; /* metadata.generation: what a status observed */
    char *dry_run;      /* annotation istio.io/dry-run as written, or NULL */
    model_wl_selector_t selector;
    bool target_ref; /* spec.targetRef set or spec.targetRefs non-empty */
    model_ap_action_t action;
    model_ap_rule_t *rules;
    size_t nrules;
    /* Why the object could not be read, or NULL. Set on the fail-closed
     * stand-in kube_obj_decode_failsafe builds, which goes out with status
     * reason MODEL_AUTHZ_INVALID_REASON. */
    char *invalid;
} model_authz_policy_t;

void model_authz_policy_free(model_authz_policy_t *p);

typedef enum model_mtls {
    MODEL_MTLS_UNSET, /* also when mtls is absent */
    MODEL_MTLS_DISABLE,
    MODEL_MTLS_PERMISSIVE,
    MODEL_MTLS_STRICT,
} model_mtls_t;

typedef struct model_pa_port {
    uint32_t port;
    model_mtls_t mode;
} model_pa_port_t;

/* A security.istio.io/v1 PeerAuthentication. */
typedef struct model_peer_authn {
    char *ns;
    char *name;
    int64_t created;
    model_wl_selector_t selector;
    model_mtls_t mode;
    model_pa_port_t *ports; /* portLevelMtls, sorted by port, ports unique */
    size_t nports;
} model_peer_authn_t;

void model_peer_authn_free(model_peer_authn_t *p);

/* Output: istio.security.Authorization. The Match fields, each listed once
 * as X(kind, member); the members are also the protobuf-c names. */
typedef enum model_sm_kind {
    MODEL_SM_EXACT,
    MODEL_SM_PREFIX,
    MODEL_SM_SUFFIX,
    MODEL_SM_PRESENCE, /* value unused */
} model_sm_kind_t;

typedef struct model_strmatch {
    model_sm_kind_t kind;
    char *value;
} model_strmatch_t;

typedef struct model_cidr {
    model_ip_t ip;  /* as written: host bits are kept */
    uint8_t length; /* prefix length */
} model_cidr_t;

typedef struct model_sa_match {
    char *ns;
    char *sa;
} model_sa_match_t;

#define MODEL_AZ_TYPE_SM model_strmatch_t
#define MODEL_AZ_TYPE_CIDR model_cidr_t
#define MODEL_AZ_TYPE_PORT uint32_t
#define MODEL_AZ_TYPE_SA model_sa_match_t

#define MODEL_AUTHZ_MATCH_FIELDS(X)                                                                \
    X(SM, namespaces)                                                                              \
    X(SM, not_namespaces)                                                                          \
    X(SM, principals)                                                                              \
    X(SM, not_principals)                                                                          \
    X(CIDR, source_ips)                                                                            \
    X(CIDR, not_source_ips)                                                                        \
    X(CIDR, destination_ips)                                                                       \
    X(CIDR, not_destination_ips)                                                                   \
    X(PORT, destination_ports)                                                                     \
    X(PORT, not_destination_ports)                                                                 \
    X(SA, service_accounts)                                                                        \
    X(SA, not_service_accounts)

#define MODEL_AZ_MEMBER(kind, m)                                                                   \
    MODEL_AZ_TYPE_##kind *m;                                                                       \
    size_t n_##m;

typedef struct model_authz_match {
    MODEL_AUTHZ_MATCH_FIELDS(MODEL_AZ_MEMBER)
} model_authz_match_t;

/* Matches are ORed; clauses ANDed; groups ORed. */
typedef struct model_authz_clause {
    model_authz_match_t *matches;
    size_t nmatches;
} model_authz_clause_t;

typedef struct model_authz_group {
    model_authz_clause_t *clauses;
    size_t nclauses;
} model_authz_group_t;

typedef enum model_authz_scope {
    MODEL_AUTHZ_GLOBAL = 0,
    MODEL_AUTHZ_NAMESPACE = 1,
    MODEL_AUTHZ_WORKLOAD_SELECTOR = 2,
} model_authz_scope_t;

typedef enum model_authz_action {
    MODEL_AUTHZ_ALLOW = 0,
    MODEL_AUTHZ_DENY = 1
} model_authz_action_t;

typedef struct model_out_authz {
    char *name;
    char *ns;
    model_authz_scope_t scope;
    model_authz_action_t action;
    bool dry_run;
    model_authz_group_t *groups;
    size_t ngroups;
} model_out_authz_t;

void model_out_authz_free(model_out_authz_t *a);
/* Whether a match has no field at all ({}: ztunnel skips it). */
bool model_authz_match_empty(const model_authz_match_t *m);
/* Whether some group can match: one with no clauses, or one whose every
 * clause has a non-empty match. */
bool model_out_authz_effective(const model_out_authz_t *a);

typedef struct model_authz_opts {
    const char *root_ns;  /* meshConfig.rootNamespace */
    bool dry_run_enabled; /* AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY */
} model_authz_opts_t;

/* The ZtunnelAccepted condition of a policy: reason NULL means no warning
 * (the status writer then reports MODEL_AUTHZ_ACCEPTED). message is owned. */
#define MODEL_AUTHZ_ACCEPTED_REASON "Accepted"
#define MODEL_AUTHZ_ACCEPTED "attached to ztunnel"
#define MODEL_AUTHZ_INVALID_REASON "InvalidPolicy"
typedef struct model_authz_status {
    const char *reason; /* "UnsupportedValue", or NULL */
    char *message;
} model_authz_status_t;

void model_authz_status_clear(model_authz_status_t *st);

/* Whether istiod sends p to ztunnel at all: not a disabled dry run, not
 * targetRef-bound, action ALLOW or DENY. */
bool model_authz_policy_sent(const model_authz_policy_t *p, const model_authz_opts_t *o);
/* Translates p as istiod does. *out NULL means nothing is sent; st (may be
 * NULL) gets the status warning. Caller owns both. 0, or -1 when out of
 * memory (*out NULL, st cleared). */
int model_authz_convert(const model_authz_policy_t *p, const model_authz_opts_t *o,
                        model_out_authz_t **out, model_authz_status_t *st);

/* The first IP, CIDR or port of p that istiod would drop (it cannot parse
 * it) where dropping lets through what p was written to stop: a DENY's
 * ipBlocks, ports and their when keys, an ALLOW's notIpBlocks, notPorts and
 * their when notValues. err gets "<what>: spec.<path>[i]: bad ...". istiod
 * relies on its validating webhook to keep these out; meshfed has none, so
 * its callers treat such a policy as one that does not decode (see
 * kube_obj_decode_failsafe). 0 valid, -1 not. */
int model_authz_policy_check(const model_authz_policy_t *p, char *err, size_t errlen);

/* PeerAuthentication. The static policy "<root>/istio_converted_static_strict"
 * exists iff any PeerAuthentication does. */
#define MODEL_AUTHZ_STATIC_STRICT "istio_converted_static_strict"
#define MODEL_AUTHZ_PA_PREFIX "converted_peer_authentication_"
/* Caller owns; NULL when out of memory. */
model_out_authz_t *model_authz_static_strict(const char *root_ns);
/* The oldest PeerAuthentication of ns without selector labels (by
 * creationTimestamp, then name), or NULL. Borrowed from pas. */
const model_peer_authn_t *model_pa_oldest_level(const model_peer_authn_t *const *pas, size_t n,
                                                const char *ns);
/* The per-workload DENY derived from a selector PeerAuthentication with
 * port-level mTLS, given the namespace and root level ones (NULL: none).
 * *out NULL when there is none. 0, or -1 when out of memory. */
int model_authz_convert_pa(const model_peer_authn_t *pa, const model_peer_authn_t *ns_pol,
                           const model_peer_authn_t *root_pol, const char *root_ns,
                           model_out_authz_t **out);

/* Every policy known, for attaching them to workloads. */
typedef struct model_authz_set {
    const model_authz_policy_t *const *aps;
    size_t naps;
    const model_peer_authn_t *const *pas;
    size_t npas;
    model_authz_opts_t opts;
} model_authz_set_t;

/* Workload.authorization_policies of a workload in ns with labels (NULL: a
 * nil label map, which every selector matches): the sorted "ns/name" of
 * the selector AuthorizationPolicies of ns and the root namespace that
 * select it, then the PeerAuthentication keys, sorted. Caller owns *keys
 * (model_strlist_clear). 0, or -1 when out of memory. */
int model_authz_workload_policies(const model_authz_set_t *set, const char *ns,
                                  const model_labels_t *labels, model_strlist_t *keys);

/* ---------- Authorization resources (derive.c, info.c) ----------
 *
 * Each cluster's AuthorizationPolicies and PeerAuthentications become
 * MODEL_RES_AUTHZ resources named "ns/name" (the AuthorizationPolicy's,
 * "ns/converted_peer_authentication_<name>", "<root>/istio_converted_static_strict"
 * while the cluster has any PeerAuthentication), each visible only to its
 * own cluster: a ztunnel enforces the policies of its cluster's workloads. */

/* r's Authorization, or NULL for another kind. Borrowed from r. */
const model_out_authz_t *model_res_authz(const model_res_t *r);
/* Deep equality of two translations. */
bool model_out_authz_equal(const model_out_authz_t *a, const model_out_authz_t *b);

void model_snapshot_each_authz(const model_snapshot_t *s, const model_view_t *v, model_res_fn fn,
                               void *arg);
const model_res_t *model_snapshot_get_authz(const model_snapshot_t *s, const model_view_t *v,
                                            const char *name);
void model_snapshot_diff_authz(const model_snapshot_t *from, const model_snapshot_t *to,
                               const model_view_t *v, model_diff_fn fn, void *arg);

/* One policy of one cluster as of now, for /debug. */
typedef struct model_authz_info {
    model_kind_t kind;            /* AUTHZ_POLICY, or PEER_AUTHN (also for the static policy) */
    const char *key;              /* resource name "ns/name" */
    const model_out_authz_t *out; /* what ztunnel gets, or NULL: nothing */
    const char *reason;           /* status reason, or NULL: accepted or no status */
    const char *message;          /* status message, or NULL */
    int64_t generation;           /* AUTHZ_POLICY: the generation out and reason come from */
    /* the workloads it applies to ("ns/name" of pods), sorted */
    const char *const *selects;
    size_t nselects;
} model_authz_info_t;

/* fn for each policy of cluster, in resource name order. Same thread as
 * the model. */
void model_each_authz(const model_t *m, const char *cluster,
                      void (*fn)(const model_authz_info_t *i, void *arg), void *arg);
const char *model_root_namespace(const model_t *m);

#endif
