/*
 * res.c - published resources, the entries that group their variants, and
 * snapshots.
 *
 * A resource is built once by the model thread, then only read: it lives in
 * one arena and is freed when its last reference (held by snapshot map
 * entries) goes. The encoder may hang its bytes on it through the cache slot.
 */
#include "model_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct model_arena_chunk {
    struct model_arena_chunk *next;
    uint64_t data[];
} model_arena_chunk_t;

static char *arena_block(model_arena_t *a)
{
    /* the first block follows the arena in its owner's allocation */
    return a->extra ? (char *)a->extra->data : (char *)(a + 1);
}

void *model_arena_alloc(model_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (a->cap - a->used < n) {
        size_t cap = n > 256 ? n : 256;
        model_arena_chunk_t *c = malloc(sizeof(*c) + cap);
        if (!c)
            abort(); /* the model cannot continue half-built; see DESIGN.md */
        c->next = a->extra;
        a->extra = c;
        a->used = 0;
        a->cap = (uint32_t)cap;
    }
    void *p = arena_block(a) + a->used;
    a->used += (uint32_t)n;
    memset(p, 0, n);
    return p;
}

char *model_arena_strdup(model_arena_t *a, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = model_arena_alloc(a, n);
    memcpy(d, s, n);
    return d;
}

void model_arena_free(model_arena_t *a)
{
    model_arena_chunk_t *c = a->extra;
    while (c) {
        model_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->extra = NULL;
}

model_res_t *model_res_new(model_res_kind_t kind, const char *name, size_t size)
{
    /* Sized by the caller, the first block usually holds everything, and
     * a resource is one allocation with no slack beyond the size class. */
    size += (strlen(name) + 8) & ~(size_t)7;
    model_res_t *r = calloc(1, sizeof(*r) + size);
    if (!r)
        abort();
    r->arena.cap = (uint32_t)size;
    atomic_init(&r->refs, 1);
    r->kind = kind;
    r->name = model_arena_strdup(&r->arena, name);
    return r;
}

void model_res_ref(model_res_t *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

static void drop_gw(const model_gw_addr_t *g)
{
    if (g) {
        model_str_unref(g->network);
        model_str_unref(g->hostname);
        model_str_unref(g->ns);
    }
}

/* What a workload's field of each kind holds a reference to. */
#define DROP_STR(v)
#define DROP_SSTR(v) model_str_unref(v)
#define DROP_LOC(v) model_str_unref(v)
#define DROP_IPS(v)
#define DROP_SVCS(v) model_svcs_unref(v)
#define DROP_GW(v) drop_gw(v)
#define DROP_WP(v) /* the GW member's */
#define DROP_TUNNEL(v)
#define DROP_FLAG(v)
#define DROP_NETMODE(v)
#define DROP_WLTYPE(v)
#define DROP_STATUS(v)
#define DROP_KEYS(v) model_str_unref(v)

/* The shared strings a resource holds (see struct model_res). */
static void drop_strs(model_res_t *r)
{
    model_str_unref(r->vis.cluster);
    model_str_unref(r->vis.network);
    for (size_t i = 0; i < r->vis.nexclude; i++)
        model_str_unref(r->vis.exclude[i]);
    if (r->kind != MODEL_RES_WORKLOAD)
        return;
    const model_out_workload_t *w = &r->u.wl;
#define DROP(kind, f, pb, json) DROP_##kind(w->f);
    MODEL_WORKLOAD_FIELDS(DROP)
#undef DROP
}

void model_res_unref(model_res_t *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    void *c = atomic_load(&r->cache);
    if (c)
        ((model_res_cache_hdr_t *)c)->free_fn(c);
    drop_strs(r);
    if (r->kind == MODEL_RES_AUTHZ)
        model_out_authz_free(r->u.az);
    model_arena_free(&r->arena);
    free(r);
}

model_res_kind_t model_res_kind(const model_res_t *r)
{
    return r->kind;
}

const char *model_res_name(const model_res_t *r)
{
    return r->name;
}

const model_vis_t *model_res_vis(const model_res_t *r)
{
    return &r->vis;
}

const model_out_workload_t *model_res_workload(const model_res_t *r)
{
    return r->kind == MODEL_RES_WORKLOAD ? &r->u.wl : NULL;
}

const model_out_service_t *model_res_service(const model_res_t *r)
{
    return r->kind == MODEL_RES_SERVICE ? &r->u.svc : NULL;
}

const model_out_endpoints_t *model_res_endpoints(const model_res_t *r)
{
    return r->kind == MODEL_RES_ENDPOINTS ? &r->u.eps : NULL;
}

const model_out_authz_t *model_res_authz(const model_res_t *r)
{
    return r->kind == MODEL_RES_AUTHZ ? r->u.az : NULL;
}

uint64_t model_res_version(const model_res_t *r)
{
    return r->version;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == b)
        return true;
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool model_res_visible(const model_res_t *r, const model_view_t *v)
{
    const model_vis_t *vis = &r->vis;
    for (size_t i = 0; i < vis->nexclude; i++)
        if (str_eq(vis->exclude[i], v->cluster))
            return false;
    switch (vis->mode) {
    case MODEL_VIS_CLUSTER:
        return str_eq(vis->cluster, v->cluster);
    case MODEL_VIS_NETWORK_PEERS:
        return str_eq(vis->network, v->network) && !str_eq(vis->cluster, v->cluster);
    case MODEL_VIS_NETWORK:
        return str_eq(vis->network, v->network);
    case MODEL_VIS_OTHER_NETWORKS:
        return !str_eq(vis->network, v->network);
    case MODEL_VIS_ALL:
        return true;
    }
    return false;
}

void *model_res_cache(const model_res_t *r)
{
    return atomic_load_explicit(&((model_res_t *)r)->cache, memory_order_acquire);
}

void *model_res_cache_set(const model_res_t *r, void *p, void (*free_fn)(void *))
{
    model_res_t *w = (model_res_t *)r;
    void *expected = NULL;
    ((model_res_cache_hdr_t *)p)->free_fn = free_fn;
    if (atomic_compare_exchange_strong(&w->cache, &expected, p))
        return p;
    free_fn(p);
    return expected;
}

static bool vis_equal(const model_vis_t *a, const model_vis_t *b)
{
    if (a->mode != b->mode || !str_eq(a->cluster, b->cluster) || !str_eq(a->network, b->network) ||
        a->nexclude != b->nexclude)
        return false;
    for (size_t i = 0; i < a->nexclude; i++)
        if (!str_eq(a->exclude[i], b->exclude[i]))
            return false;
    return true;
}

static bool ports_equal(const model_port_pair_t *a, size_t na, const model_port_pair_t *b,
                        size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

static bool netaddrs_equal(const model_net_addr_t *a, size_t na, const model_net_addr_t *b,
                           size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a[i].network, b[i].network) || !model_ip_equal(&a[i].ip, &b[i].ip))
            return false;
    return true;
}

static bool strs_equal(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a[i], b[i]))
            return false;
    return true;
}

static bool lb_equal(model_lb_mode_t ma, const model_lb_scope_t *pa, size_t na, bool aa,
                     model_lb_mode_t mb, const model_lb_scope_t *pb, size_t nb, bool ab)
{
    return ma == mb && na == nb && memcmp(pa, pb, na * sizeof(pa[0])) == 0 && aa == ab;
}

static bool ips_equal(const model_ip_t *a, size_t na, const model_ip_t *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!model_ip_equal(&a[i], &b[i]))
            return false;
    return true;
}

static bool gw_equal(const model_gw_addr_t *a, const model_gw_addr_t *b)
{
    if (!a || !b)
        return a == b;
    return a->hbone_port == b->hbone_port && a->capacity == b->capacity &&
           a->waypoint == b->waypoint && str_eq(a->network, b->network) &&
           model_ip_equal(&a->ip, &b->ip) && str_eq(a->hostname, b->hostname) &&
           str_eq(a->ns, b->ns);
}

static bool wl_svcs_equal(const model_wl_service_t *a, size_t na, const model_wl_service_t *b,
                          size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; a != b && i < na; i++)
        if (!str_eq(a[i].key, b[i].key) ||
            !ports_equal(a[i].ports, a[i].nports, b[i].ports, b[i].nports))
            return false;
    return true;
}

/* Field f of a and b compared as its kind says (see MODEL_WORKLOAD_FIELDS). */
#define EQ(kind, f, pb, json) &&EQ_##kind(f)
#define EQ_VAL(f) (a->f == b->f)
#define EQ_STR(f) str_eq(a->f, b->f)
#define EQ_SSTR(f) EQ_STR(f)
#define EQ_LOC(f) EQ_STR(f)
#define EQ_TUNNEL(f) EQ_VAL(f)
#define EQ_FLAG(f) EQ_VAL(f)
#define EQ_NETMODE(f) EQ_VAL(f)
#define EQ_WLTYPE(f) EQ_VAL(f)
#define EQ_STATUS(f) EQ_VAL(f)
#define EQ_IPF(f) EQ_VAL(f)
#define EQ_TRUE(f) true
#define EQ_IPS(f) ips_equal(a->f, a->n##f, b->f, b->n##f)
#define EQ_SVCS(f) wl_svcs_equal(a->f, a->n##f, b->f, b->n##f)
#define EQ_GW(f) gw_equal(a->f, b->f)
#define EQ_CANARY(f) (gw_equal(a->f, b->f) && a->f##_weight == b->f##_weight)
#define EQ_WP(f) true /* compared as the GW member it shares */
#define EQ_NETADDRS(f) netaddrs_equal(a->f, a->n##f, b->f, b->n##f)
#define EQ_PORTS(f) ports_equal(a->f, a->n##f, b->f, b->n##f)
#define EQ_PORT_NAMES(f) strs_equal(a->f, a->nports, b->f, b->nports)
#define EQ_SANS(f) strs_equal(a->f, a->n##f, b->f, b->n##f)
#define EQ_KEYS(f) EQ_STR(f)
#define EQ_LB(f)                                                                                   \
    lb_equal(a->f##_mode, a->f##_prefs, a->n##f##_prefs, a->f##_allow_all, b->f##_mode,            \
             b->f##_prefs, b->n##f##_prefs, b->f##_allow_all)

static bool service_equal(const model_out_service_t *a, const model_out_service_t *b)
{
    return true MODEL_SERVICE_FIELDS(EQ);
}

static bool workload_equal(const model_out_workload_t *a, const model_out_workload_t *b)
{
    return true MODEL_WORKLOAD_FIELDS(EQ);
}

static bool locality_equal(const model_locality_t *a, const model_locality_t *b)
{
    return a == b || (str_eq(a->cluster, b->cluster) && str_eq(a->network, b->network) &&
                      str_eq(a->region, b->region) && str_eq(a->zone, b->zone) &&
                      str_eq(a->subzone, b->subzone));
}

static bool endpoint_equal(const model_out_endpoint_t *a, const model_out_endpoint_t *b,
                           size_t nports)
{
    return model_ip_equal(&a->ip, &b->ip) && locality_equal(a->loc, b->loc) &&
           a->weight == b->weight && a->priority == b->priority && a->healthy == b->healthy &&
           a->via_gateway == b->via_gateway &&
           (nports == 0 || memcmp(a->ports, b->ports, nports * sizeof(uint16_t)) == 0);
}

static bool endpoints_equal(const model_out_endpoints_t *a, const model_out_endpoints_t *b)
{
    if (!str_eq(a->name, b->name) || !str_eq(a->ns, b->ns) || !str_eq(a->hostname, b->hostname) ||
        !ports_equal(a->ports, a->nports, b->ports, b->nports) || a->neps != b->neps ||
        a->global != b->global || a->prefer_local != b->prefer_local)
        return false;
    for (size_t i = 0; i < a->nports; i++)
        if (!str_eq(a->port_names[i], b->port_names[i]))
            return false;
    for (size_t i = 0; i < a->neps; i++)
        if (!endpoint_equal(&a->eps[i], &b->eps[i], a->nports))
            return false;
    return true;
}

bool model_res_equal(const model_res_t *a, const model_res_t *b)
{
    if (a->kind != b->kind || !str_eq(a->name, b->name) || !vis_equal(&a->vis, &b->vis))
        return false;
    switch (a->kind) {
    case MODEL_RES_WORKLOAD:
        return workload_equal(&a->u.wl, &b->u.wl);
    case MODEL_RES_SERVICE:
        return service_equal(&a->u.svc, &b->u.svc);
    case MODEL_RES_ENDPOINTS:
        return endpoints_equal(&a->u.eps, &b->u.eps);
    case MODEL_RES_AUTHZ:
        return model_out_authz_equal(a->u.az, b->u.az);
    }
    return false;
}

/* ---------- entries ---------- */

struct model_entry {
    atomic_long refs;
    size_t n;
    model_res_t *v[];
};

static bool entry_single(const model_entry_t *e)
{
    return (uintptr_t)e & 1u;
}

model_entry_t *model_entry_new(model_res_t **v, size_t n)
{
    if (n == 1)
        return (model_entry_t *)((uintptr_t)v[0] | 1u);
    model_entry_t *e = malloc(sizeof(*e) + n * sizeof(e->v[0]));
    if (!e)
        abort();
    atomic_init(&e->refs, 0);
    e->n = n;
    memcpy(e->v, v, n * sizeof(e->v[0]));
    return e;
}

size_t model_entry_count(const model_entry_t *e)
{
    return !e ? 0 : entry_single(e) ? 1 : e->n;
}

model_res_t *model_entry_at(const model_entry_t *e, size_t i)
{
    return entry_single(e) ? (model_res_t *)((uintptr_t)e & ~(uintptr_t)1u) : e->v[i];
}

static void entry_retain(void *p)
{
    model_entry_t *e = p;
    if (entry_single(e))
        model_res_ref(model_entry_at(e, 0));
    else
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void entry_release(void *p)
{
    model_entry_t *e = p;
    if (entry_single(e)) {
        model_res_unref(model_entry_at(e, 0));
        return;
    }
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < e->n; i++)
        model_res_unref(e->v[i]);
    free(e);
}

static const char *entry_key(const void *p)
{
    return model_entry_at(p, 0)->name;
}

const model_pmap_ops_t model_entry_ops = {entry_retain, entry_release, entry_key};

const model_res_t *model_entry_pick(const model_entry_t *e, const model_view_t *v)
{
    size_t n = model_entry_count(e);
    for (size_t i = 0; i < n; i++)
        if (model_res_visible(model_entry_at(e, i), v))
            return model_entry_at(e, i);
    return NULL;
}

/* ---------- snapshots ---------- */

model_snapshot_t *model_snapshot_new(model_pmap_t *map, model_pmap_t *emap, model_pmap_t *amap,
                                     uint64_t version)
{
    model_snapshot_t *s = malloc(sizeof(*s));
    if (!s)
        abort();
    atomic_init(&s->refs, 1);
    s->version = version;
    s->map = map;
    s->emap = emap;
    s->amap = amap;
    return s;
}

model_snapshot_t *model_snapshot_ref(model_snapshot_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void model_snapshot_unref(model_snapshot_t *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    model_pmap_unref(s->map);
    model_pmap_unref(s->emap);
    model_pmap_unref(s->amap);
    free(s);
}

uint64_t model_snapshot_version(const model_snapshot_t *s)
{
    return s->version;
}

size_t model_snapshot_size(const model_snapshot_t *s)
{
    return model_pmap_count(s->map);
}

typedef struct each_ctx {
    const model_view_t *view;
    model_res_fn fn;
    void *arg;
} each_ctx_t;

static void each_one(const char *key, void *val, void *arg)
{
    (void)key;
    each_ctx_t *c = arg;
    const model_res_t *r = model_entry_pick(val, c->view);
    if (r)
        c->fn(r, c->arg);
}

void model_snapshot_each(const model_snapshot_t *s, const model_view_t *v, model_res_fn fn,
                         void *arg)
{
    each_ctx_t c = {v, fn, arg};
    model_pmap_each(s->map, each_one, &c);
}

void model_snapshot_each_endpoints(const model_snapshot_t *s, const model_view_t *v,
                                   model_res_fn fn, void *arg)
{
    each_ctx_t c = {v, fn, arg};
    model_pmap_each(s->emap, each_one, &c);
}

const model_res_t *model_snapshot_get(const model_snapshot_t *s, const model_view_t *v,
                                      const char *name)
{
    return model_entry_pick(model_pmap_get(s->map, name), v);
}

const model_res_t *model_snapshot_get_endpoints(const model_snapshot_t *s, const model_view_t *v,
                                                const char *name)
{
    return model_entry_pick(model_pmap_get(s->emap, name), v);
}

typedef struct diff_ctx {
    const model_view_t *view;
    model_diff_fn fn;
    void *arg;
} diff_ctx_t;

static void diff_one(const char *key, void *a, void *b, void *arg)
{
    diff_ctx_t *c = arg;
    const model_res_t *ra = model_entry_pick(a, c->view);
    const model_res_t *rb = model_entry_pick(b, c->view);
    if (ra != rb)
        c->fn(key, ra, rb, c->arg);
}

void model_snapshot_diff(const model_snapshot_t *from, const model_snapshot_t *to,
                         const model_view_t *v, model_diff_fn fn, void *arg)
{
    diff_ctx_t c = {v, fn, arg};
    model_pmap_diff(from ? from->map : NULL, to->map, diff_one, &c);
}

void model_snapshot_diff_endpoints(const model_snapshot_t *from, const model_snapshot_t *to,
                                   const model_view_t *v, model_diff_fn fn, void *arg)
{
    diff_ctx_t c = {v, fn, arg};
    model_pmap_diff(from ? from->emap : NULL, to->emap, diff_one, &c);
}

void model_snapshot_each_authz(const model_snapshot_t *s, const model_view_t *v, model_res_fn fn,
                               void *arg)
{
    each_ctx_t c = {v, fn, arg};
    model_pmap_each(s->amap, each_one, &c);
}

const model_res_t *model_snapshot_get_authz(const model_snapshot_t *s, const model_view_t *v,
                                            const char *name)
{
    return model_entry_pick(model_pmap_get(s->amap, name), v);
}

void model_snapshot_diff_authz(const model_snapshot_t *from, const model_snapshot_t *to,
                               const model_view_t *v, model_diff_fn fn, void *arg)
{
    diff_ctx_t c = {v, fn, arg};
    model_pmap_diff(from ? from->amap : NULL, to->amap, diff_one, &c);
}
