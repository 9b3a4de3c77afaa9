/*
 * internal.h - what model/ files share with each other and nobody else.
 */
#ifndef MESHFED_MODEL_INTERNAL_H
#define MESHFED_MODEL_INTERNAL_H

#include "hmap.h"
#include "model.h"
#include "pmap.h"

#include <stdatomic.h>

/* A bump allocator: a resource and everything it points to live in one. */
typedef struct model_arena {
    struct model_arena_chunk *head;
} model_arena_t;

void *model_arena_alloc(model_arena_t *a, size_t n);
char *model_arena_strdup(model_arena_t *a, const char *s);
void model_arena_free(model_arena_t *a);

struct model_res {
    atomic_long refs;
    model_res_kind_t kind;
    uint64_t version;
    const char *name;
    model_vis_t vis;
    union {
        model_out_workload_t wl;
        model_out_service_t svc;
        model_out_endpoints_t eps;
    } u;
    _Atomic(void *) cache;
    void (*cache_free)(void *);
    model_arena_t arena;
};

/* A new resource of kind with one reference; fill it through its arena. */
model_res_t *model_res_new(model_res_kind_t kind, const char *name);
void model_res_ref(model_res_t *r);
void model_res_unref(model_res_t *r);
/* Deep equality of content and visibility (not version, not cache). */
bool model_res_equal(const model_res_t *a, const model_res_t *b);

/* The value stored in the snapshot map under a resource name: every variant
 * of that name, at most one visible to any view. */
typedef struct model_entry {
    atomic_long refs;
    size_t n;
    model_res_t *v[];
} model_entry_t;

extern const model_pmap_ops_t model_entry_ops;
/* Takes over the references in v. */
model_entry_t *model_entry_new(model_res_t **v, size_t n);
const model_res_t *model_entry_pick(const model_entry_t *e, const model_view_t *v);

struct model_snapshot {
    atomic_long refs;
    uint64_t version;
    model_pmap_t *map;  /* Address resources */
    model_pmap_t *emap; /* Endpoints resources */
};

/* Takes over both map references. */
model_snapshot_t *model_snapshot_new(model_pmap_t *map, model_pmap_t *emap, uint64_t version);

/* ---------- the model's own state (model thread only) ---------- */

typedef struct model_ptrs {
    void **p;
    size_t n;
} model_ptrs_t;

void model_ptrs_free(void *p);

typedef struct model_cluster_int {
    char *id;
    char *network;
    model_ip_t gw;
    uint16_t gw_port;
    char *gw_ns;
    char *gw_name;
    model_cluster_state_t state;
    model_hmap_t objs[MODEL_KIND__COUNT]; /* "ns/name" (or name) -> object */
    model_hmap_t slices_by_svc;           /* "ns/service" -> model_ptrs_t of slices */
    model_hmap_t slices_by_pod;           /* "ns/pod" -> model_ptrs_t of slices */
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
    char *trust_domain;
    char *domain_suffix;
    model_cluster_int_t **clusters; /* sorted by id */
    size_t nclusters;
    model_scope_rules_t *rules;
    model_hmap_t dirty_svcs; /* "ns/name" */
    model_hmap_t dirty_pods; /* "cluster\nns/name" */
    bool dirty_gateways;
    model_hmap_t svc_state; /* "ns/name" -> model_svc_state_t */
    char **gw_names;
    size_t ngw_names;
    model_pmap_t *map;  /* the last committed resources */
    model_pmap_t *emap; /* and endpoints */
    uint64_t version;
    uint64_t events;
    uint64_t scope_evals;
    size_t changes; /* resource names written in this commit */
};

model_cluster_int_t *model_cluster_find(const model_t *m, const char *id);
char *model_obj_key(model_kind_t kind, const void *obj);
void model_mark_service(model_t *m, const char *ns, const char *name);
void model_mark_pod(model_t *m, const model_cluster_int_t *c, const char *ns, const char *name);

#endif
