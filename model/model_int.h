/*
 * model_int.h - what model/ files share with each other and nobody else.
 */
#ifndef MESHFED_MODEL_INT_H
#define MESHFED_MODEL_INT_H

#include "base.h"
#include "model.h"
#include "pmap.h"

#include <stdatomic.h>

/* A bump allocator: a resource and everything it points to live in one.
 * It must be the last member of its owner, whose allocation continues with
 * the arena's first block; further blocks are allocated as needed. */
typedef struct model_arena {
    uint32_t used, cap;              /* of the current block */
    struct model_arena_chunk *extra; /* current block when not the first */
} model_arena_t;

void *model_arena_alloc(model_arena_t *a, size_t n);
char *model_arena_strdup(model_arena_t *a, const char *s);
void model_arena_free(model_arena_t *a);

/* ---------- shared strings (strs.c) ---------- */

typedef struct model_strs {
    base_map_t map;  /* text -> its shared copy */
    base_map_t svcs; /* service list, as text -> its shared copy */
    size_t swept;    /* entries left by the last sweep */
    size_t svcs_swept;
} model_strs_t;

void model_strs_init(model_strs_t *t);
/* The shared copy of s with a new reference (NULL for NULL). Model thread. */
const char *model_str(model_strs_t *t, const char *s);
/* Another reference to a shared copy; NULL is fine. Returns s. */
const char *model_str_ref(const char *s);
/* Drops a reference to a shared copy; any thread; NULL is fine. */
void model_str_unref(const char *s);
/* The shared copy of a workload's n services (NULL when n is 0), with a new
 * reference; its keys are shared strings. Model thread. */
const model_wl_service_t *model_svcs(model_strs_t *t, const model_wl_service_t *v, size_t n);
/* Drops a reference to a shared service list; any thread; NULL is fine. */
void model_svcs_unref(const model_wl_service_t *v);
/* Frees the copies nobody else holds, once the table has grown enough. */
void model_strs_sweep(model_strs_t *t);
/* Drops the table's own references. */
void model_strs_free(model_strs_t *t);

/* A resource and its content. Every string of its visibility is a shared
 * copy, and so is every string of a workload but its uid and name, and its
 * service list; the resource holds a reference to each. */
struct model_res {
    atomic_int refs;
    model_res_kind_t kind;
    uint64_t version;
    const char *name;
    model_vis_t vis;
    union {
        model_out_workload_t wl;
        model_out_service_t svc;
        model_out_endpoints_t eps;
        model_out_authz_t *az; /* owned */
    } u;
    _Atomic(void *) cache; /* begins with its model_res_cache_hdr_t */
    model_arena_t arena;   /* last: its first block follows */
};

/* A new resource of kind with one reference; fill it through its arena,
 * whose first block holds the name and size more bytes. */
model_res_t *model_res_new(model_res_kind_t kind, const char *name, size_t size);
void model_res_ref(model_res_t *r);
void model_res_unref(model_res_t *r);
/* Deep equality of content and visibility (not version, not cache). */
bool model_res_equal(const model_res_t *a, const model_res_t *b);

/* The value stored in the snapshot map under a resource name: every variant
 * of that name, at most one visible to any view. Most names have one
 * variant: their entry is that resource's pointer with the low bit set, so
 * it costs no allocation of its own. Read entries through these functions. */
typedef struct model_entry model_entry_t;

extern const model_pmap_ops_t model_entry_ops;
/* Takes over the references in v (n > 0); for one variant the map's own
 * reference is the resource's, so the caller drops v[0]'s once it is put. */
model_entry_t *model_entry_new(model_res_t **v, size_t n);
size_t model_entry_count(const model_entry_t *e); /* NULL: 0 */
model_res_t *model_entry_at(const model_entry_t *e, size_t i);
const model_res_t *model_entry_pick(const model_entry_t *e, const model_view_t *v);

struct model_snapshot {
    atomic_long refs;
    uint64_t version;
    model_pmap_t *map;  /* Address resources */
    model_pmap_t *emap; /* Endpoints resources */
    model_pmap_t *amap; /* Authorization resources */
};

/* Takes over the map references. */
model_snapshot_t *model_snapshot_new(model_pmap_t *map, model_pmap_t *emap, model_pmap_t *amap,
                                     uint64_t version);

/* ---------- the model's own state (model thread only) ---------- */

typedef struct model_ptrs {
    void **p;
    size_t n;
} model_ptrs_t;

/* Pointer sets as index values: one pointer is stored as it is, more in a
 * model_ptrs_t whose pointer is tagged in its low bit. Most pods are in one
 * slice, and this saves them two allocations. */
void model_ptrs_free(void *v);
/* The pointers under key: their count, and *p their array (borrowed until
 * the index changes). */
size_t model_ptrs_get(const base_map_t *h, const char *key, void *const **p);

typedef struct model_cluster_int {
    char *id;
    char *network;
    model_ip_t gw;
    uint16_t gw_port;
    char *gw_ns;
    char *gw_name;
    char *gw_sa;
    char *gw_host;    /* load-balancer hostname, or NULL */
    char *gw_problem; /* for /debug, or NULL */
    model_cluster_state_t state;
    base_map_t objs[MODEL_KIND__COUNT]; /* "ns/name" (or name) -> object */
    base_map_t slices_by_svc;           /* "ns/service" -> slices (model_ptrs_get) */
    base_map_t slices_by_pod;           /* "ns/pod" -> slices (model_ptrs_get) */
    /* its policies as the translation takes them, rebuilt when az_stale */
    model_authz_set_t azset;
    bool az_stale;
} model_cluster_int_t;

/* What the model remembers about one service name between commits. */
typedef struct model_svc_state {
    char **names; /* resource names it produced */
    size_t nnames;
    char **clusters;              /* clusters that have the service, sorted */
    model_scope_result_t *scopes; /* parallel to clusters */
    size_t nclusters;
    char *base_cluster; /* whose definition the global service uses */
    char *conflict;     /* why clusters disagree, or NULL */
} model_svc_state_t;

void model_svc_state_free(void *p);

struct model {
    bool prefer_cluster;
    char *trust_domain;
    char *domain_suffix;
    model_cluster_int_t **clusters; /* sorted by id */
    size_t nclusters;
    model_scope_rules_t *rules;
    model_strs_t strs;       /* shared strings of the published resources */
    base_map_t dirty_svcs;   /* "ns/name" */
    base_map_t dirty_pods;   /* "cluster\nns/name" */
    base_map_t dirty_slices; /* "cluster\nns/name" of EndpointSlices */
    base_map_t slice_names;  /* the same keys -> model_names_t they published */
    base_map_t dirty_authz;  /* "ns/name" of Authorization resources */
    base_map_t dirty_pol;    /* "cluster\nns" -> pods a policy event may move (index.c) */
    char *root_ns;
    bool authz_dry_run; /* model_config_t */
    bool dirty_gateways;
    base_map_t svc_state;     /* "ns/name" -> model_svc_state_t */
    base_map_t new_conflicts; /* "ns/name" whose conflict changed (model_each_new_conflict) */
    char **gw_names;
    size_t ngw_names;
    model_pmap_t *map;  /* the last committed resources */
    model_pmap_t *emap; /* and endpoints */
    model_pmap_t *amap; /* and Authorization */
    uint64_t version;
    uint64_t events;
    uint64_t scope_evals;
    size_t changes; /* resource names written in this commit */
};

model_cluster_int_t *model_cluster_find(const model_t *m, const char *id);
char *model_obj_key(model_kind_t kind, const void *obj);
void model_mark_service(model_t *m, const char *ns, const char *name);
void model_mark_pod(model_t *m, const model_cluster_int_t *c, const char *ns, const char *name);
void model_mark_slice(model_t *m, const model_cluster_int_t *c, const char *ns, const char *name);
/* Marks the pods the policy events since the last call may have moved. */
void model_mark_policy_pods(model_t *m);
/* name (an Authorization resource's, "ns/name") to be rebuilt in every cluster. */
void model_mark_authz(model_t *m, const char *key);
/* c's policy set (rebuilt if stale); borrowed until its policies change. */
const model_authz_set_t *model_authz_set_of(const model_t *m, model_cluster_int_t *c);
/* What cluster c makes of Authorization resource name key ("ns/name"):
 * *out NULL when nothing; st (may be NULL) gets the status. */
void model_authz_build(const model_t *m, model_cluster_int_t *c, const char *key,
                       model_out_authz_t **out, model_authz_status_t *st);
/* The variants of Authorization resource key, one per cluster that makes
 * it, into v (room for every cluster); their count. */
size_t model_authz_variants(model_t *m, const char *key, model_res_t **v);
/* A pod's Workload.authorization_policies as a shared string (a new
 * reference), or NULL for none. */
const char *model_pod_policies(model_t *m, model_cluster_int_t *c, const model_pod_t *p);

/* ---------- waypoints (waypoint.c) ---------- */

/* Whether l holds a label that binds a waypoint (or a canary) or asks for
 * ingress through it (a namespace's change then reaches its pods). */
bool model_waypoint_labelled(const model_labels_t *l);
/* The Gateway ("ns/name", into key) an object of namespace ns with labels
 * l is bound to, its own labels first, then its namespace's in c; false
 * when none (or `none`). */
bool model_waypoint_binding(const model_cluster_int_t *c, const char *ns, const model_labels_t *l,
                            char *key, size_t len);
/* The waypoint of a Service (workload false) or a pod: the bound Gateway
 * of c when it exists, has an address, takes objects of ns and takes that
 * traffic; or NULL (also for a pod that is a waypoint's instance). */
const model_gateway_t *model_waypoint_of(const model_cluster_int_t *c, const char *ns,
                                         const model_labels_t *l, bool workload);
/* The canary waypoint of Service s whose waypoint is primary, and its share
 * in percent (into weight): istiod's buildWeightedWaypoints for a canary
 * that is declared, has a valid weight, is not the primary, exists with an
 * address, takes s's namespace and takes service traffic; or NULL. */
const model_gateway_t *model_waypoint_canary(const model_cluster_int_t *c, const model_service_t *s,
                                             const model_gateway_t *primary, unsigned *weight);
/* Label istio.io/ingress-use-waypoint of the object, else of its namespace. */
bool model_waypoint_ingress(const model_cluster_int_t *c, const char *ns, const model_labels_t *l);
/* g's GatewayAddress as c's proxies reach it; its strings are g's and c's. */
void model_waypoint_addr(const model_cluster_int_t *c, const model_gateway_t *g,
                         model_gw_addr_t *out);
/* Marks the services and pods of c bound to g, and g's instances. */
void model_waypoint_mark(model_t *m, model_cluster_int_t *c, const model_gateway_t *g);
/* Whether a Gateway of c takes namespaces by label selector: then any
 * change of a namespace's labels may move its pods' waypoints. */
bool model_waypoint_by_selector(const model_cluster_int_t *c);

/* Resource names something published, to unpublish what it no longer makes. */
typedef struct model_names {
    char **v;
    size_t n;
} model_names_t;

void model_names_free(void *p);

#endif
