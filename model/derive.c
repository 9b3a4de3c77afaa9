/*
 * derive.c - from objects to resources: what model_commit() rebuilds.
 *
 * For each dirty service name: its scope in every cluster that has it, the
 * LOCAL copies (one per cluster, seen only there), the merged GLOBAL service
 * and one split-horizon workload per network that serves it through its
 * east-west gateway. For each dirty pod: its workload as its own cluster sees
 * it, and as the other clusters of its network see it (global services only).
 * Then the network gateways, then the Authorization resources of each dirty
 * policy name (policy.c). A rebuilt variant equal to the published one is
 * kept as is, so unchanged resources never look changed to a diff.
 */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct build {
    model_t *m;
    model_pmap_edit_t *edit;  /* Address resources */
    model_pmap_edit_t *eedit; /* Endpoints resources */
    model_pmap_edit_t *aedit; /* Authorization resources */
} build_t;

/* n zeroed elements of size (at least one): the model has no way to report
 * running out of memory half way through a commit. */
static void *zalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        abort();
    return p;
}

/* ---------- publishing one name ---------- */

static const model_res_t *find_equal(const model_entry_t *old, const model_res_t *r)
{
    for (size_t i = 0; i < model_entry_count(old); i++)
        if (model_res_equal(model_entry_at(old, i), r))
            return model_entry_at(old, i);
    return NULL;
}

/* Publishes name with variants v (takes their references) into edit; n 0
 * removes it. */
static void publish_to(build_t *b, model_pmap_edit_t *edit, const char *name, model_res_t **v,
                       size_t n)
{
    const model_entry_t *old = model_pmap_edit_get(edit, name);
    bool same = model_entry_count(old) == n;
    for (size_t i = 0; i < n; i++) {
        const model_res_t *eq = find_equal(old, v[i]);
        if (eq) {
            model_res_unref(v[i]);
            v[i] = (model_res_t *)eq;
            model_res_ref(v[i]);
        } else {
            v[i]->version = b->m->version;
            same = false;
        }
    }
    if (same) {
        for (size_t i = 0; i < n; i++)
            model_res_unref(v[i]);
        return;
    }
    b->m->changes++;
    if (model_pmap_put(edit, name, n ? model_entry_new(v, n) : NULL) < 0)
        abort();
    if (n == 1) /* the map holds the resource itself */
        model_res_unref(v[0]);
}

static void publish(build_t *b, const char *name, model_res_t **v, size_t n)
{
    publish_to(b, b->edit, name, v, n);
}

/* ---------- helpers ---------- */

static const char *ns_of(const char *key, char *buf, size_t len)
{
    const char *slash = strchr(key, '/');
    size_t n = (size_t)(slash - key);
    if (n >= len)
        n = len - 1;
    memcpy(buf, key, n);
    buf[n] = '\0';
    return buf;
}

static char *hostname(const model_t *m, const char *ns, const char *name)
{
    size_t len = strlen(name) + strlen(ns) + strlen(m->domain_suffix) + 7;
    char *h = malloc(len);
    if (!h)
        abort();
    snprintf(h, len, "%s.%s.svc.%s", name, ns, m->domain_suffix);
    return h;
}

/* "ns/host"; caller frees. */
static char *key_of(const char *ns, const char *host)
{
    size_t len = strlen(ns) + strlen(host) + 2;
    char *k = malloc(len);
    if (!k)
        abort();
    snprintf(k, len, "%s/%s", ns, host);
    return k;
}

static const char *trust_domain(const model_t *m)
{
    /* istiod leaves the default trust domain out of the resources */
    return strcmp(m->trust_domain, "cluster.local") == 0 ? "" : m->trust_domain;
}

static bool port_name_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* istiod's load balancing for a Service (ambient services.go): an
 * internalTrafficPolicy of Local pins traffic to the node; else the
 * trafficDistribution (spec, then annotation, then the namespace's) fails
 * over by network, region, zone (and subzone, node for PreferSameNode);
 * publishNotReadyAddresses lets ztunnel use endpoints that are not ready.
 * With prefer_cluster, CLUSTER follows NETWORK. */
/* istio.workload.AppProtocol of a Service port, as istiod derives it
 * (kube ConvertProtocol): UDP is unknown; appProtocol, else the port name
 * up to its first '-', names the protocol; well-known TCP ports default to
 * TCP. */
static uint16_t app_protocol(const model_svc_port_t *p)
{
    enum { UNKNOWN, HTTP11, HTTP2, GRPC, TCP, TLS };
    static const struct {
        const char *name;
        uint16_t proto;
    } names[] = {{"http", HTTP11},   {"http2", HTTP2},   {"grpc", GRPC},         {"https", TLS},
                 {"tls", TLS},       {"tcp", TCP},       {"udp", UNKNOWN},       {"mongo", UNKNOWN},
                 {"redis", UNKNOWN}, {"mysql", UNKNOWN}, {"http_proxy", UNKNOWN}};
    if (p->protocol == MODEL_PROTO_UDP)
        return UNKNOWN;
    const char *n = p->app_protocol ? p->app_protocol : p->name ? p->name : "";
    if (strcmp(n, "kubernetes.io/h2c") == 0)
        return HTTP2;
    if (strcmp(n, "kubernetes.io/ws") == 0)
        return HTTP11;
    if (strcmp(n, "kubernetes.io/wss") == 0)
        return TLS;
    if (strncasecmp(n, "grpc-web", 8) == 0)
        return UNKNOWN;
    size_t len = strcspn(n, "-");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == len && strncasecmp(n, names[i].name, len) == 0)
            return names[i].proto;
    static const uint16_t well_known[] = {25, 53, 3306, 27017};
    for (size_t i = 0; i < sizeof(well_known) / sizeof(well_known[0]); i++)
        if (p->port == well_known[i])
            return TCP;
    return UNKNOWN;
}

static void set_lb(const model_t *m, model_out_service_t *o, const model_service_t *s,
                   model_traffic_dist_t td)
{
    model_lb_scope_t *p = o->lb_prefs;
    size_t n = 0;
    o->lb_mode = MODEL_LB_UNSPECIFIED;
    if (s->itp_local) {
        p[n++] = MODEL_LB_SCOPE_NODE;
        o->lb_mode = MODEL_LB_STRICT;
    } else if (td == MODEL_TD_PREFER_CLOSE || td == MODEL_TD_PREFER_SAME_NODE) {
        p[n++] = MODEL_LB_SCOPE_NETWORK;
        if (m->prefer_cluster)
            p[n++] = MODEL_LB_SCOPE_CLUSTER;
        p[n++] = MODEL_LB_SCOPE_REGION;
        p[n++] = MODEL_LB_SCOPE_ZONE;
        if (td == MODEL_TD_PREFER_SAME_NODE) {
            p[n++] = MODEL_LB_SCOPE_SUBZONE;
            p[n++] = MODEL_LB_SCOPE_NODE;
        }
        o->lb_mode = MODEL_LB_FAILOVER;
    }
    o->nlb_prefs = n;
    o->lb_allow_all = s->publish_not_ready;
}

/* A Service's own trafficDistribution, else its namespace's. */
static model_traffic_dist_t traffic_dist(const model_service_t *s, const model_namespace_t *ns)
{
    return s->traffic_dist != MODEL_TD_NONE ? s->traffic_dist
           : ns                             ? ns->traffic_dist
                                            : MODEL_TD_NONE;
}

/* ---------- services ---------- */

typedef struct svc_in {
    model_cluster_int_t *c;
    model_service_t *svc;
    model_scope_result_t scope;
    model_traffic_dist_t td; /* resolved with the namespace's */
} svc_in_t;

/* istiod's order of a merged service's VIPs: by the text "<network>/<ip>"
 * (so "n-2/..." sorts before "n/..." and "10.0.0.10" before "10.0.0.9"). */
static int netaddr_cmp(const void *a, const void *b)
{
    const model_net_addr_t *x = a, *y = b;
    char ia[64], ib[64], ka[384], kb[384];
    snprintf(ka, sizeof(ka), "%s/%s", x->network, model_ip_format(&x->ip, ia, sizeof(ia)));
    snprintf(kb, sizeof(kb), "%s/%s", y->network, model_ip_format(&y->ip, ib, sizeof(ib)));
    return strcmp(ka, kb);
}

/* A Service's waypoint g of cluster c, its strings in a. */
static model_gw_addr_t *arena_waypoint(model_arena_t *a, const model_cluster_int_t *c,
                                       const model_gateway_t *wp)
{
    model_gw_addr_t *g = model_arena_alloc(a, sizeof(*g));
    model_waypoint_addr(c, wp, g);
    g->waypoint = false; /* a Service's has a member of its own */
    g->network = model_arena_strdup(a, g->network);
    g->hostname = model_arena_strdup(a, g->hostname);
    g->ns = model_arena_strdup(a, g->ns);
    return g;
}

/* The waypoint (and ingress_use_waypoint) of x's Service, as its cluster
 * binds it, into o; its strings in a. */
static void set_service_waypoint(model_out_service_t *o, model_arena_t *a, const svc_in_t *x)
{
    const model_service_t *s = x->svc;
    const model_gateway_t *wp = model_waypoint_of(x->c, s->ns, &s->labels, false);
    o->waypoint = NULL;
    o->canary = NULL;
    o->canary_weight = 0;
    o->ingress_use_waypoint = 0;
    if (!wp)
        return;
    o->waypoint = arena_waypoint(a, x->c, wp);
    o->ingress_use_waypoint = model_waypoint_ingress(x->c, s->ns, &s->labels);
    unsigned w;
    const model_gateway_t *canary = model_waypoint_canary(x->c, s, wp, &w);
    if (canary) {
        o->canary = arena_waypoint(a, x->c, canary);
        o->canary_weight = (uint8_t)w;
    }
}

/* Whether Gateways wa of x's cluster and wb of base's give the same
 * address. */
static bool same_gateway(const svc_in_t *x, const model_gateway_t *wa, const svc_in_t *base,
                         const model_gateway_t *wb)
{
    if (!wa || !wb)
        return wa == wb;
    model_gw_addr_t ga, gb;
    model_waypoint_addr(x->c, wa, &ga);
    model_waypoint_addr(base->c, wb, &gb);
    bool ha = ga.hostname != NULL, hb = gb.hostname != NULL;
    return ha == hb && (ha ? strcmp(ga.hostname, gb.hostname) == 0 && strcmp(ga.ns, gb.ns) == 0
                           : strcmp(ga.network, gb.network) == 0 && model_ip_equal(&ga.ip, &gb.ip));
}

/* Whether x's cluster binds its Service to the same waypoint (and canary)
 * as base's. */
static bool same_waypoint(const svc_in_t *x, const svc_in_t *base)
{
    const model_service_t *a = x->svc, *b = base->svc;
    const model_gateway_t *wa = model_waypoint_of(x->c, a->ns, &a->labels, false);
    const model_gateway_t *wb = model_waypoint_of(base->c, b->ns, &b->labels, false);
    unsigned pa = 0, pb = 0;
    const model_gateway_t *ca = model_waypoint_canary(x->c, a, wa, &pa);
    const model_gateway_t *cb = model_waypoint_canary(base->c, b, wb, &pb);
    if (!same_gateway(x, wa, base, wb) || !same_gateway(x, ca, base, cb) || (ca && pa != pb))
        return false;
    if (!wa)
        return true;
    return model_waypoint_ingress(x->c, a->ns, &a->labels) ==
           model_waypoint_ingress(base->c, b->ns, &b->labels);
}

static model_res_t *build_service(const model_t *m, const char *key, const char *host,
                                  const svc_in_t *in, size_t nin, const svc_in_t *base)
{
    model_res_t *r = model_res_new(MODEL_RES_SERVICE, key, 256);
    model_arena_t *a = &r->arena;
    model_out_service_t *o = &r->u.svc;
    o->name = model_arena_strdup(a, base->svc->name);
    o->ns = model_arena_strdup(a, base->svc->ns);
    o->hostname = model_arena_strdup(a, host);
    size_t naddr = 0;
    for (size_t i = 0; i < nin; i++)
        naddr += in[i].svc->ncluster_ips;
    o->addrs = model_arena_alloc(a, (naddr ? naddr : 1) * sizeof(*o->addrs));
    for (size_t i = 0; i < nin; i++) {
        for (size_t j = 0; j < in[i].svc->ncluster_ips; j++) {
            model_net_addr_t na = {model_arena_strdup(a, in[i].c->network),
                                   in[i].svc->cluster_ips[j]};
            bool dup = false;
            for (size_t k = 0; k < o->naddrs && !dup; k++)
                dup = netaddr_cmp(&o->addrs[k], &na) == 0;
            if (!dup)
                o->addrs[o->naddrs++] = na;
        }
    }
    qsort(o->addrs, o->naddrs, sizeof(*o->addrs), netaddr_cmp);
    const model_service_t *s = base->svc;
    o->nports = s->nports;
    o->ports = model_arena_alloc(a, (s->nports ? s->nports : 1) * sizeof(*o->ports));
    o->port_names = model_arena_alloc(a, (s->nports ? s->nports : 1) * sizeof(char *));
    for (size_t i = 0; i < s->nports; i++) {
        o->ports[i] = (model_port_pair_t){s->ports[i].port, s->ports[i].target_port,
                                          app_protocol(&s->ports[i])};
        o->port_names[i] = model_arena_strdup(a, s->ports[i].name ? s->ports[i].name : "");
    }
    set_lb(m, o, s, base->td);
    o->ip_families = s->ip_families;
    /* the base cluster's binding; global_variants gives the clusters that
     * bind it otherwise their own */
    set_service_waypoint(o, a, base);
    return r;
}

static bool same_ports(const model_service_t *a, const model_service_t *b)
{
    if (a->nports != b->nports)
        return false;
    for (size_t i = 0; i < a->nports; i++)
        if (a->ports[i].port != b->ports[i].port ||
            a->ports[i].target_port != b->ports[i].target_port ||
            a->ports[i].protocol != b->ports[i].protocol ||
            !port_name_eq(a->ports[i].name, b->ports[i].name))
            return false;
    return true;
}

/* The definition a global service takes when clusters disagree: the oldest
 * Service wins (as for Kubernetes MCS), then the smallest cluster id. */
static const svc_in_t *pick_base(const svc_in_t *in, size_t n)
{
    const svc_in_t *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (in[i].scope.scope != MODEL_SCOPE_GLOBAL)
            continue;
        if (!best || in[i].svc->created < best->svc->created)
            best = &in[i];
    }
    return best;
}

static uint32_t ready_endpoints(const model_cluster_int_t *c, const char *key)
{
    void *const *slices;
    size_t ns = model_ptrs_get(&c->slices_by_svc, key, &slices);
    uint32_t n = 0;
    for (size_t i = 0; i < ns; i++) {
        const model_endpointslice_t *s = slices[i];
        for (size_t j = 0; j < s->nendpoints; j++)
            n += s->endpoints[j].ready;
    }
    return n;
}

static bool has_gateway(const model_cluster_int_t *c)
{
    return c->gw.len || c->gw_host;
}

/* "<ip>" or the hostname of c's gateway, into buf. */
static const char *gateway_addr(const model_cluster_int_t *c, char *buf, size_t len)
{
    if (c->gw_host)
        snprintf(buf, len, "%s", c->gw_host);
    else
        model_ip_format(&c->gw, buf, len);
    return buf;
}

static const model_cluster_int_t *network_gateway(const model_t *m, const char *network)
{
    for (size_t i = 0; i < m->nclusters; i++)
        if (has_gateway(m->clusters[i]) && strcmp(m->clusters[i]->network, network) == 0)
            return m->clusters[i];
    return NULL;
}

static model_res_t *build_split_horizon(build_t *b, const model_cluster_int_t *gw,
                                        const model_service_t *base, const char *host,
                                        uint32_t capacity)
{
    char ip[256];
    gateway_addr(gw, ip, sizeof(ip));
    size_t len = strlen(gw->network) + strlen(gw->gw_ns) + strlen(gw->gw_name) + strlen(ip) +
                 strlen(base->ns) + strlen(host) + 32;
    char *uid = malloc(len);
    if (!uid)
        abort();
    snprintf(uid, len, "%s/SplitHorizonWorkload/%s/%s/%s/%s/%s", gw->network, gw->gw_ns,
             gw->gw_name, ip, base->ns, host);
    model_res_t *r = model_res_new(MODEL_RES_WORKLOAD, uid, 256);
    free(uid);
    model_strs_t *t = &b->m->strs;
    model_arena_t *a = &r->arena;
    model_out_workload_t *w = &r->u.wl;
    w->uid = r->name;
    w->name = r->name;
    w->ns = model_str(t, base->ns);
    w->network = model_str(t, gw->network);
    w->cluster_id = model_str(t, gw->id);
    w->trust_domain = model_str(t, trust_domain(b->m));
    w->healthy = true;
    w->workload_type = 2; /* POD, as istiod sends it */
    w->tunnel = MODEL_TUNNEL_HBONE;
    model_gw_addr_t *gwa = model_arena_alloc(a, sizeof(*gwa));
    memset(gwa, 0, sizeof(*gwa));
    gwa->network = model_str(t, gw->network);
    gwa->ip = gw->gw;
    gwa->hbone_port = gw->gw_port;
    gwa->capacity = capacity;
    if (gw->gw_host) {
        gwa->hostname = model_str(t, gw->gw_host);
        gwa->ns = model_str(t, gw->gw_ns);
    }
    w->gateway = gwa;
    model_wl_service_t ws = {key_of(base->ns, host), NULL, base->nports};
    ws.ports = malloc((base->nports ? base->nports : 1) * sizeof(model_port_pair_t));
    if (!ws.ports)
        abort();
    for (size_t i = 0; i < base->nports; i++)
        ws.ports[i] = (model_port_pair_t){base->ports[i].port, base->ports[i].target_port,
                                          app_protocol(&base->ports[i])};
    w->services = model_svcs(t, &ws, 1);
    w->nservices = 1;
    free((char *)ws.key);
    free(ws.ports);
    return r;
}

static void set_vis(model_t *m, model_res_t *r, model_vis_mode_t mode, const char *cluster,
                    const char *network, char *const *exclude, size_t nexclude)
{
    r->vis.mode = mode;
    r->vis.cluster = model_str(&m->strs, cluster);
    r->vis.network = model_str(&m->strs, network);
    if (nexclude) {
        const char **v = model_arena_alloc(&r->arena, nexclude * sizeof(*v));
        for (size_t i = 0; i < nexclude; i++)
            v[i] = model_str(&m->strs, exclude[i]);
        r->vis.exclude = v;
    }
    r->vis.nexclude = (uint32_t)nexclude;
}

/* ---------- endpoints for Envoy-style clients ---------- */

static const char *node_label(const model_cluster_int_t *c, const char *node, const char *key)
{
    const model_node_t *n = node ? base_map_get(&c->objs[MODEL_KIND_NODE], node) : NULL;
    return n ? model_labels_get(&n->labels, key) : NULL;
}

/* s copied into the arena, or prev when it holds the same text: endpoints of
 * one cluster share their cluster, network and locality strings. */
static const char *arena_same(model_arena_t *a, const char *s, const char *prev)
{
    if (!s)
        return NULL;
    return prev && strcmp(prev, s) == 0 ? prev : model_arena_strdup(a, s);
}

/* Endpoints of key in cluster c; adds the slices they come in to *nslices. */
static size_t count_endpoints(const model_cluster_int_t *c, const char *key, size_t *nslices)
{
    void *const *slices;
    size_t ns = model_ptrs_get(&c->slices_by_svc, key, &slices);
    size_t n = 0;
    for (size_t i = 0; i < ns; i++)
        n += ((const model_endpointslice_t *)slices[i])->nendpoints;
    *nslices += ns;
    return n;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* prev when it is the same place (as it is for most endpoints of one
 * cluster), else a new locality in the arena. */
static const model_locality_t *locality(model_arena_t *a, const model_locality_t *prev,
                                        const model_locality_t *l)
{
    if (prev && same_str(prev->cluster, l->cluster) && same_str(prev->network, l->network) &&
        same_str(prev->region, l->region) && same_str(prev->zone, l->zone) &&
        same_str(prev->subzone, l->subzone))
        return prev;
    model_locality_t *n = model_arena_alloc(a, sizeof(*n));
    n->cluster = arena_same(a, l->cluster, prev ? prev->cluster : NULL);
    n->network = arena_same(a, l->network, prev ? prev->network : NULL);
    n->region = arena_same(a, l->region, prev ? prev->region : NULL);
    n->zone = arena_same(a, l->zone, prev ? prev->zone : NULL);
    n->subzone = arena_same(a, l->subzone, prev ? prev->subzone : NULL);
    return n;
}

/* Appends cluster c's endpoints of key, ports matched by name. */
static void add_direct(model_res_t *r, const model_cluster_int_t *c, const char *key,
                       const model_service_t *base, uint8_t priority)
{
    model_out_endpoints_t *o = &r->u.eps;
    void *const *slices;
    size_t ns = model_ptrs_get(&c->slices_by_svc, key, &slices);
    for (size_t i = 0; i < ns; i++) {
        const model_endpointslice_t *s = slices[i];
        uint16_t *ports = model_arena_alloc(&r->arena, (base->nports ? base->nports : 1) * 2);
        for (size_t j = 0; j < base->nports; j++)
            for (size_t k = 0; k < s->nports; k++)
                if (port_name_eq(s->ports[k].name, base->ports[j].name))
                    ports[j] = s->ports[k].port;
        for (size_t j = 0; j < s->nendpoints; j++) {
            const model_endpoint_t *e = &s->endpoints[j];
            const model_out_endpoint_t *pe = o->neps ? &o->eps[o->neps - 1] : NULL;
            model_out_endpoint_t *oe = &o->eps[o->neps++];
            const char *zone = node_label(c, e->node, "topology.kubernetes.io/zone");
            model_locality_t l = {
                c->id, c->network, node_label(c, e->node, "topology.kubernetes.io/region"),
                zone ? zone : e->zone, node_label(c, e->node, "topology.istio.io/subzone")};
            oe->ip = e->ip;
            oe->ports = ports;
            oe->loc = locality(&r->arena, pe ? pe->loc : NULL, &l);
            oe->weight = 1;
            oe->priority = priority;
            oe->healthy = e->ready;
        }
    }
}

/* What viewer cluster v's Envoy-style clients get for key: see
 * model_out_endpoints_t. exp are the exporting clusters (global), or just v's
 * own copy (local). */
static model_res_t *build_endpoints(build_t *b, const char *hkey, const char *host,
                                    const model_cluster_int_t *v, const svc_in_t *exp, size_t nexp,
                                    const svc_in_t *bin, bool global)
{
    const model_service_t *base = bin->svc;
    char key[600];
    snprintf(key, sizeof(key), "%s/%s", base->ns, base->name);
    /* pods of the viewer's network, one gateway for any other cluster */
    size_t cap = 0, nblocks = 0;
    for (size_t i = 0; i < nexp; i++) {
        if (strcmp(exp[i].c->network, v->network) == 0) {
            cap += count_endpoints(exp[i].c, key, &nblocks);
        } else {
            cap++;
            nblocks++;
        }
    }
    /* an estimate: the arena grows if it is short, wastes if it is long */
    size_t size = cap * sizeof(model_out_endpoint_t) + strlen(base->name) + strlen(base->ns) +
                  strlen(host) + 24 + base->nports * (sizeof(model_port_pair_t) + 24) +
                  nblocks * (((base->nports ? base->nports : 1) * 2 + 7) & ~(size_t)7) +
                  nexp * (sizeof(model_locality_t) + 32);
    model_res_t *r = model_res_new(MODEL_RES_ENDPOINTS, hkey, size);
    model_arena_t *a = &r->arena;
    model_out_endpoints_t *o = &r->u.eps;
    o->name = model_arena_strdup(a, base->name);
    o->ns = model_arena_strdup(a, base->ns);
    o->hostname = model_arena_strdup(a, host);
    o->global = global;
    o->prefer_local = bin->td == MODEL_TD_PREFER_CLOSE || bin->td == MODEL_TD_PREFER_SAME_NODE;
    o->nports = base->nports;
    o->ports = model_arena_alloc(a, (base->nports ? base->nports : 1) * sizeof(*o->ports));
    o->port_names = model_arena_alloc(a, (base->nports ? base->nports : 1) * sizeof(char *));
    for (size_t i = 0; i < base->nports; i++) {
        o->ports[i] = (model_port_pair_t){base->ports[i].port, base->ports[i].target_port, 0};
        o->port_names[i] = model_arena_strdup(a, base->ports[i].name ? base->ports[i].name : "");
    }
    o->eps = model_arena_alloc(a, (cap ? cap : 1) * sizeof(*o->eps));
    for (size_t i = 0; i < nexp; i++) {
        const model_cluster_int_t *c = exp[i].c;
        uint8_t prio = o->prefer_local && c != v ? 1 : 0;
        if (strcmp(c->network, v->network) == 0) {
            add_direct(r, c, key, base, prio);
            continue;
        }
        /* another network: one endpoint, its gateway, weighted by capacity */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(exp[j].c->network, c->network) == 0;
        const model_cluster_int_t *gw = network_gateway(b->m, c->network);
        if (seen || !gw)
            continue;
        uint32_t ready = 0;
        for (size_t j = i; j < nexp; j++)
            if (strcmp(exp[j].c->network, c->network) == 0)
                ready += ready_endpoints(exp[j].c, key);
        if (!ready)
            continue;
        model_out_endpoint_t *oe = &o->eps[o->neps++];
        oe->ip = gw->gw;
        uint16_t *ports = model_arena_alloc(a, (base->nports ? base->nports : 1) * 2);
        for (size_t j = 0; j < base->nports; j++)
            ports[j] = gw->gw_port;
        oe->ports = ports;
        model_locality_t l = {gw->id, gw->network, NULL, NULL, NULL};
        oe->loc = locality(a, NULL, &l);
        oe->weight = ready;
        oe->priority = o->prefer_local ? 1 : 0;
        oe->healthy = true;
        oe->via_gateway = true;
    }
    set_vis(b->m, r, MODEL_VIS_CLUSTER, v->id, NULL, NULL, 0);
    return r;
}

/* One endpoints variant per cluster that can see the service. */
static void derive_endpoints(build_t *b, const char *hkey, const char *host, const svc_in_t *in,
                             size_t nin, const svc_in_t *exp, size_t nexp, const svc_in_t *base)
{
    model_t *m = b->m;
    model_res_t **v = zalloc(m->nclusters, sizeof(*v));
    size_t nv = 0;
    for (size_t i = 0; i < m->nclusters; i++) {
        const model_cluster_int_t *c = m->clusters[i];
        const svc_in_t *own = NULL;
        for (size_t j = 0; j < nin && !own; j++)
            if (in[j].c == c)
                own = &in[j];
        if (own && own->scope.scope == MODEL_SCOPE_LOCAL)
            v[nv++] = build_endpoints(b, hkey, host, c, own, 1, own, false);
        else if (base)
            v[nv++] = build_endpoints(b, hkey, host, c, exp, nexp, base, true);
    }
    publish_to(b, b->eedit, hkey, v, nv);
    free(v);
}

static bool name_in(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void model_svc_state_free(void *p)
{
    model_svc_state_t *st = p;
    if (!st)
        return;
    strv_free(st->names, st->nnames);
    strv_free(st->clusters, st->nclusters);
    free(st->scopes);
    free(st->base_cluster);
    free(st->conflict);
    free(st);
}

static bool scopes_changed(const model_svc_state_t *st, const svc_in_t *in, size_t n)
{
    if (st->nclusters != n)
        return true;
    for (size_t i = 0; i < n; i++)
        if (strcmp(st->clusters[i], in[i].c->id) != 0 || st->scopes[i].scope != in[i].scope.scope)
            return true;
    return false;
}

static void mark_service_pods(model_t *m, const char *key)
{
    for (size_t i = 0; i < m->nclusters; i++) {
        model_cluster_int_t *c = m->clusters[i];
        void *const *slices;
        size_t ns = model_ptrs_get(&c->slices_by_svc, key, &slices);
        for (size_t j = 0; j < ns; j++) {
            const model_endpointslice_t *s = slices[j];
            for (size_t k = 0; k < s->nendpoints; k++)
                if (s->endpoints[k].pod)
                    model_mark_pod(m, c, s->ns, s->endpoints[k].pod);
            model_mark_slice(m, c, s->ns, s->name);
        }
    }
}

/* The waypoint binding of a service in its cluster, as text ("ns/name" or
 * "none"), into buf. */
static const char *binding_of(const svc_in_t *x, char *buf, size_t len)
{
    if (!model_waypoint_binding(x->c, x->svc->ns, &x->svc->labels, buf, len))
        snprintf(buf, len, "none");
    return buf;
}

/* Clusters that disagree with the base on waypoint binding, ports or
 * labels, and those that keep the service LOCAL. The merged service takes
 * the base's definition; only a cluster's own waypoint wins in its own view
 * (global_variants), where the same binding names each cluster's own
 * Gateway, on its own network. */
static char *describe_conflict(const svc_in_t *in, size_t n, const svc_in_t *base)
{
    char buf[768], wb[512], wx[512];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof(buf) - 1; i++) {
        const svc_in_t *x = &in[i];
        if (x == base || x->scope.scope != MODEL_SCOPE_GLOBAL)
            continue;
        if (strcmp(binding_of(x, wx, sizeof(wx)), binding_of(base, wb, sizeof(wb))) != 0)
            off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                    "%swaypoint %s in cluster %s differs from %s in cluster %s "
                                    "(cluster %s sees its own, the others %s)",
                                    off ? "; " : "", wx, x->c->id, wb, base->c->id, x->c->id, wb);
        else if (!same_ports(x->svc, base->svc))
            off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                    "%sports in cluster %s differ from cluster %s", off ? "; " : "",
                                    x->c->id, base->c->id);
        else if (!model_labels_equal(&x->svc->labels, &base->svc->labels))
            off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                    "%slabels in cluster %s differ from cluster %s",
                                    off ? "; " : "", x->c->id, base->c->id);
    }
    for (size_t i = 0; i < n && off < sizeof(buf) - 1; i++)
        if (in[i].scope.scope == MODEL_SCOPE_LOCAL)
            off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                    "%sLOCAL in cluster %s but GLOBAL elsewhere", off ? "; " : "",
                                    in[i].c->id);
    return off ? strdup(buf) : NULL;
}

/* ---------- service SANs ---------- */

typedef struct san {
    const char *network;
    char *id; /* spiffe://<trust domain>/ns/<ns>/sa/<sa> */
} san_t;

typedef struct sans {
    san_t *v;
    size_t n, cap;
} sans_t;

static void sans_add(sans_t *s, const char *network, const char *ns, const char *sa, const char *td)
{
    size_t len = strlen(td) + strlen(ns) + strlen(sa) + 20;
    char *id = malloc(len);
    if (!id)
        abort();
    snprintf(id, len, "spiffe://%s/ns/%s/sa/%s", td, ns, sa);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].network, network) == 0 && strcmp(s->v[i].id, id) == 0) {
            free(id);
            return;
        }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        if (!(s->v = realloc(s->v, s->cap * sizeof(*s->v))))
            abort();
    }
    s->v[s->n++] = (san_t){network, id};
}

static void sans_free(sans_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].id);
    free(s->v);
}

/* The identities of the pods behind service key in the exporting clusters,
 * ready or not (as istiod: a pod that turns ready must not fail the
 * handshake until the next push). A pod without a service account runs as
 * "default", which is also what ztunnel assumes. */
static void collect_sans(const model_t *m, const char *key, const svc_in_t *exp, size_t nexp,
                         sans_t *out)
{
    char pkey[512];
    for (size_t i = 0; i < nexp; i++) {
        const model_cluster_int_t *c = exp[i].c;
        void *const *slices;
        size_t ns = model_ptrs_get(&c->slices_by_svc, key, &slices);
        for (size_t j = 0; j < ns; j++) {
            const model_endpointslice_t *sl = slices[j];
            for (size_t k = 0; k < sl->nendpoints; k++) {
                if (!sl->endpoints[k].pod)
                    continue;
                snprintf(pkey, sizeof(pkey), "%s/%s", sl->ns, sl->endpoints[k].pod);
                const model_pod_t *p = base_map_get(&c->objs[MODEL_KIND_POD], pkey);
                if (p && !p->terminal)
                    sans_add(out, c->network, p->ns,
                             p->service_account && *p->service_account ? p->service_account
                                                                       : "default",
                             m->trust_domain);
            }
        }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The SANs a viewer of network net gets: those of every other network,
 * sorted, each once. Into v (room for s->n); returns the count. */
static size_t sans_for(const sans_t *s, const char *net, const char **v)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].network, net) != 0)
            v[n++] = s->v[i].id;
    qsort(v, n, sizeof(*v), cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || strcmp(v[u - 1], v[i]) != 0)
            v[u++] = v[i];
    return u;
}

static void set_sans(model_res_t *r, const char *const *v, size_t n)
{
    model_out_service_t *o = &r->u.svc;
    o->sans = model_arena_alloc(&r->arena, (n ? n : 1) * sizeof(*o->sans));
    for (size_t i = 0; i < n; i++)
        o->sans[i] = model_arena_strdup(&r->arena, v[i]);
    o->nsans = n;
}

static bool strv_equal(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* The merged global service: one variant for everyone when every network
 * gets the same SANs (the usual case: one network has no pods of it, or
 * all do with the same identities), else one per viewing network. Into v
 * (room for one per network); returns how many. */
static size_t global_variants(build_t *b, const char *key, const char *hkey, const char *host,
                              const svc_in_t *exp, size_t nexp, const svc_in_t *base,
                              char *const *local, size_t nlocal, model_res_t **v)
{
    model_t *m = b->m;
    sans_t s = {0};
    collect_sans(m, key, exp, nexp, &s);
    const char **nets = zalloc(m->nclusters, sizeof(*nets));
    size_t nnets = 0;
    for (size_t i = 0; i < m->nclusters; i++) {
        bool seen = false;
        for (size_t j = 0; j < nnets && !seen; j++)
            seen = strcmp(nets[j], m->clusters[i]->network) == 0;
        if (!seen)
            nets[nnets++] = m->clusters[i]->network;
    }
    const char **first = calloc(s.n + 1, sizeof(char *)), **cur = calloc(s.n + 1, sizeof(char *));
    if (!first || !cur)
        abort();
    size_t nfirst = nnets ? sans_for(&s, nets[0], first) : 0;
    bool uniform = true;
    for (size_t i = 1; i < nnets && uniform; i++) {
        size_t n = sans_for(&s, nets[i], cur);
        uniform = strv_equal(first, nfirst, cur, n);
    }
    /* an exporting cluster that binds the service to another waypoint than
     * the base sees its own binding, as its istiod would (it merges onto its
     * local Service); everyone else sees the base's */
    char **excl = zalloc(nlocal + nexp, sizeof(*excl));
    size_t nexcl = nlocal;
    memcpy(excl, local, nlocal * sizeof(*excl));
    for (size_t i = 0; i < nexp; i++)
        if (exp[i].c != base->c && !same_waypoint(&exp[i], base))
            excl[nexcl++] = exp[i].c->id;
    size_t nv = 0;
    for (size_t i = 0; i < (uniform ? 1 : nnets); i++) {
        size_t n = uniform ? nfirst : sans_for(&s, nets[i], cur);
        v[nv] = build_service(m, hkey, host, exp, nexp, base);
        set_sans(v[nv], uniform ? first : cur, n);
        if (uniform)
            set_vis(m, v[nv], MODEL_VIS_ALL, NULL, NULL, excl, nexcl);
        else
            set_vis(m, v[nv], MODEL_VIS_NETWORK, NULL, nets[i], excl, nexcl);
        nv++;
    }
    for (size_t i = 0; i < nexp; i++) {
        if (exp[i].c == base->c || same_waypoint(&exp[i], base))
            continue;
        v[nv] = build_service(m, hkey, host, exp, nexp, base);
        set_service_waypoint(&v[nv]->u.svc, &v[nv]->arena, &exp[i]);
        set_sans(v[nv], cur, sans_for(&s, exp[i].c->network, cur));
        set_vis(m, v[nv++], MODEL_VIS_CLUSTER, exp[i].c->id, NULL, NULL, 0);
    }
    free(excl);
    free(nets);
    free(first);
    free(cur);
    sans_free(&s);
    return nv;
}

/* What derive_service works from: the service in each cluster that has it. */
typedef struct svc_inputs {
    svc_in_t *in; /* in cluster order */
    size_t nin;
    svc_in_t *exp; /* those that export it (GLOBAL) */
    size_t nexp;
    char **local; /* ids of the clusters that keep it LOCAL (borrowed) */
    size_t nlocal;
    const svc_in_t *base; /* whose definition the GLOBAL service takes; NULL: none */
} svc_inputs_t;

/* Phase 1: the service key (in namespace ns) in every cluster, its scope
 * there and its traffic distribution. */
static void collect_inputs(model_t *m, const char *key, const char *ns, svc_inputs_t *si)
{
    si->in = zalloc(m->nclusters, sizeof(*si->in));
    si->exp = zalloc(m->nclusters, sizeof(*si->exp));
    si->local = zalloc(m->nclusters, sizeof(*si->local));
    for (size_t i = 0; i < m->nclusters; i++) {
        model_cluster_int_t *c = m->clusters[i];
        model_service_t *svc = base_map_get(&c->objs[MODEL_KIND_SERVICE], key);
        if (!svc || svc->external_name) /* istiod leaves ExternalName out of the mesh */
            continue;
        const model_namespace_t *nso = base_map_get(&c->objs[MODEL_KIND_NAMESPACE], ns);
        /* a namespace the cluster does not have (yet) matches no rule, as in istiod */
        model_scope_result_t sc = {MODEL_SCOPE_LOCAL, -1};
        if (nso) {
            sc = model_scope_eval(m->rules, &nso->labels, &svc->labels);
            m->scope_evals++;
        }
        si->in[si->nin] = (svc_in_t){c, svc, sc, traffic_dist(svc, nso)};
        if (sc.scope == MODEL_SCOPE_LOCAL)
            si->local[si->nlocal++] = c->id;
        si->nin++;
    }
    for (size_t i = 0; i < si->nin; i++)
        if (si->in[i].scope.scope == MODEL_SCOPE_GLOBAL)
            si->exp[si->nexp++] = si->in[i];
    si->base = pick_base(si->in, si->nin);
}

static void svc_inputs_free(svc_inputs_t *si)
{
    free(si->in);
    free(si->exp);
    free(si->local);
}

/* Phase 2: the service itself under hkey, its LOCAL copies then the merged
 * GLOBAL one, and its endpoints for every cluster. */
static void publish_service(build_t *b, const char *key, const char *hkey, const char *host,
                            const svc_inputs_t *si)
{
    model_t *m = b->m;
    /* a copy per LOCAL cluster, a GLOBAL variant per network at most */
    model_res_t **v = zalloc(si->nlocal + 2 * m->nclusters, sizeof(*v));
    size_t nv = 0;
    for (size_t i = 0; i < si->nin; i++) {
        const svc_in_t *x = &si->in[i];
        if (x->scope.scope != MODEL_SCOPE_LOCAL)
            continue;
        v[nv] = build_service(m, hkey, host, x, 1, x);
        set_vis(m, v[nv++], MODEL_VIS_CLUSTER, x->c->id, NULL, NULL, 0);
    }
    if (si->base)
        nv += global_variants(b, key, hkey, host, si->exp, si->nexp, si->base, si->local,
                              si->nlocal, v + nv);
    publish(b, hkey, v, nv);
    free(v);
    derive_endpoints(b, hkey, host, si->in, si->nin, si->exp, si->nexp, si->base);
}

/* Phase 3: one split-horizon workload per network with ready endpoints of
 * the GLOBAL service and a gateway. Their names are appended to names. */
static void publish_split_horizon(build_t *b, const char *key, const char *host,
                                  const svc_inputs_t *si, char **names, size_t *nnames)
{
    const svc_in_t *exp = si->exp;
    for (size_t i = 0; si->base && i < si->nexp; i++) {
        const char *net = exp[i].c->network;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(exp[j].c->network, net) == 0;
        const model_cluster_int_t *gw = network_gateway(b->m, net);
        if (seen || !gw)
            continue;
        uint32_t cap = 0;
        for (size_t j = i; j < si->nexp; j++)
            if (strcmp(exp[j].c->network, net) == 0)
                cap += ready_endpoints(exp[j].c, key);
        if (!cap)
            continue;
        model_res_t *w = build_split_horizon(b, gw, si->base->svc, host, cap);
        set_vis(b->m, w, MODEL_VIS_OTHER_NETWORKS, NULL, net, si->local, si->nlocal);
        char *wname = strdup(w->name);
        publish(b, wname, &w, 1);
        names[(*nnames)++] = wname;
    }
}

/* Phase 4: what the service published this time (names, taken over) and
 * where it is in scope, for the next commit: names published last time and
 * not now are removed, and a change of scope marks its pods for rebuilding
 * (their workloads list their global services). */
static void record_state(build_t *b, const char *key, const svc_inputs_t *si, char **names,
                         size_t nnames)
{
    model_t *m = b->m;
    model_svc_state_t *st = base_map_get(&m->svc_state, key);
    if (!st) {
        st = calloc(1, sizeof(*st));
        base_map_put(&m->svc_state, key, st);
    }
    for (size_t i = 0; i < st->nnames; i++)
        if (!name_in(names, nnames, st->names[i]))
            publish(b, st->names[i], NULL, 0);
    if (scopes_changed(st, si->in, si->nin))
        mark_service_pods(m, key);
    strv_free(st->names, st->nnames);
    strv_free(st->clusters, st->nclusters);
    free(st->scopes);
    free(st->base_cluster);
    char *was = st->conflict;
    st->names = names;
    st->nnames = nnames;
    st->clusters = calloc(si->nin + 1, sizeof(char *));
    st->scopes = calloc(si->nin + 1, sizeof(*st->scopes));
    st->nclusters = si->nin;
    for (size_t i = 0; i < si->nin; i++) {
        st->clusters[i] = strdup(si->in[i].c->id);
        st->scopes[i] = si->in[i].scope;
    }
    st->base_cluster = si->base ? strdup(si->base->c->id) : NULL;
    st->conflict = si->base ? describe_conflict(si->in, si->nin, si->base) : NULL;
    if (st->conflict && (!was || strcmp(was, st->conflict) != 0) &&
        !base_map_get(&m->new_conflicts, key))
        base_map_put(&m->new_conflicts, key, m);
    free(was);
    if (si->nin == 0) {
        base_map_del(&m->svc_state, key);
        model_svc_state_free(st);
    }
}

static void derive_service(build_t *b, const char *key)
{
    model_t *m = b->m;
    char ns[256], hkey[600];
    ns_of(key, ns, sizeof(ns));
    char *host = hostname(m, ns, key + strlen(ns) + 1);
    snprintf(hkey, sizeof(hkey), "%s/%s", ns, host);
    svc_inputs_t si = {0};
    collect_inputs(m, key, ns, &si);
    publish_service(b, key, hkey, host, &si);
    /* the service, then a split-horizon workload per exporting network */
    char **names = zalloc(si.nexp + 2, sizeof(char *));
    size_t nnames = 0;
    names[nnames++] = strdup(hkey);
    publish_split_horizon(b, key, host, &si, names, &nnames);
    record_state(b, key, &si, names, nnames);
    svc_inputs_free(&si);
    free(host);
}

/* ---------- pods ---------- */

/* Whether another cluster shares c's network (then it sees c's pods). */
static bool network_peers(const model_t *m, const model_cluster_int_t *c)
{
    for (size_t i = 0; i < m->nclusters; i++)
        if (m->clusters[i] != c && strcmp(m->clusters[i]->network, c->network) == 0)
            return true;
    return false;
}

typedef struct pod_svc {
    const model_service_t *svc;
    const model_endpointslice_t *slice;
    bool global;
} pod_svc_t;

static const char *label_first(const model_labels_t *l, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = model_labels_get(l, keys[i]);
        if (v && *v)
            return v;
    }
    return NULL;
}

static void fill_services(model_res_t *r, const pod_svc_t *ps, size_t n, bool global_only,
                          model_t *m)
{
    model_wl_service_t *v = zalloc(n, sizeof(*v));
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        if (global_only && !ps[i].global)
            continue;
        const model_service_t *svc = ps[i].svc;
        char *host = hostname(m, svc->ns, svc->name);
        model_wl_service_t *ws = &v[nv++];
        *ws = (model_wl_service_t){key_of(svc->ns, host), NULL, 0};
        free(host);
        ws->ports = malloc((svc->nports ? svc->nports : 1) * sizeof(*ws->ports));
        if (!ws->ports)
            abort();
        for (size_t j = 0; j < svc->nports; j++) {
            uint16_t target = svc->ports[j].target_port;
            /* the slice carries the resolved target port, by port name */
            for (size_t k = 0; k < ps[i].slice->nports; k++)
                if (port_name_eq(ps[i].slice->ports[k].name, svc->ports[j].name))
                    target = ps[i].slice->ports[k].port;
            if (!target)
                continue;
            ws->ports[ws->nports++] = (model_port_pair_t){svc->ports[j].port, target, 0};
        }
    }
    r->u.wl.services = nv ? model_svcs(&m->strs, v, nv) : NULL;
    r->u.wl.nservices = (uint16_t)nv;
    for (size_t i = 0; i < nv; i++) {
        free((char *)v[i].key);
        free(v[i].ports);
    }
    free(v);
}

/* HBONE for pods whose traffic istio-cni redirects to ztunnel, and for pods
 * that terminate HBONE themselves (label networking.istio.io/tunnel with
 * "http" in its comma-separated list: native_tunnel); nothing else can
 * take an HBONE connection. Sidecar pods get NONE, as istiod sends them to
 * ztunnel. */
static void set_tunnel(model_out_workload_t *w, const model_pod_t *p)
{
    const char *t = model_labels_get(&p->labels, "networking.istio.io/tunnel");
    for (const char *s = t; s && *s;) {
        size_t n = strcspn(s, ",");
        if (n == 4 && strncmp(s, "http", 4) == 0) {
            w->tunnel = MODEL_TUNNEL_HBONE;
            w->native_tunnel = 1;
            return;
        }
        s += n + (s[n] == ',');
    }
    w->tunnel = p->ambient ? MODEL_TUNNEL_HBONE : MODEL_TUNNEL_NONE;
}

/* What a pod's workload needs in its arena beyond its name. */
static size_t pod_size(const model_pod_t *p)
{
    return (p->nips * sizeof(model_ip_t) + 7) & ~(size_t)7;
}

static model_res_t *build_pod(model_t *m, const model_cluster_int_t *c, const model_pod_t *p,
                              const char *uid, size_t size)
{
    static const char *const cn_keys[] = {"service.istio.io/canonical-name",
                                          "app.kubernetes.io/name", "app"};
    static const char *const cr_keys[] = {"service.istio.io/canonical-revision",
                                          "app.kubernetes.io/version", "version"};
    model_res_t *r = model_res_new(MODEL_RES_WORKLOAD, uid, size);
    model_arena_t *a = &r->arena;
    model_strs_t *t = &m->strs;
    model_out_workload_t *w = &r->u.wl;
    w->uid = r->name;
    /* the uid ends with the pod's name, unless it was cut short */
    size_t ulen = strlen(r->name), nlen = strlen(p->name);
    w->name = ulen >= nlen && strcmp(r->name + ulen - nlen, p->name) == 0
                  ? r->name + ulen - nlen
                  : model_arena_strdup(a, p->name);
    w->ns = model_str(t, p->ns);
    w->cluster_id = model_str(t, c->id);
    w->network = model_str(t, c->network);
    w->node = model_str(t, p->node);
    w->service_account = model_str(t, p->service_account);
    w->trust_domain = model_str(t, trust_domain(m));
    /* index.c put istiod's workload name in owner (NULL: the pod's) */
    w->workload_name = model_str(t, p->owner ? p->owner : p->name);
    const char *cn = label_first(&p->labels, cn_keys, 3);
    w->canonical_name = cn ? model_str(t, cn) : model_str_ref(w->workload_name);
    const char *cr = label_first(&p->labels, cr_keys, 3);
    w->canonical_revision = model_str(t, cr ? cr : "latest");
    const model_node_t *node = p->node ? base_map_get(&c->objs[MODEL_KIND_NODE], p->node) : NULL;
    if (node) {
        w->region = model_str(t, model_labels_get(&node->labels, "topology.kubernetes.io/region"));
        w->zone = model_str(t, model_labels_get(&node->labels, "topology.kubernetes.io/zone"));
        w->subzone = model_str(t, model_labels_get(&node->labels, "topology.istio.io/subzone"));
    }
    w->addrs = model_arena_alloc(a, p->nips * sizeof(*w->addrs));
    memcpy(w->addrs, p->ips, p->nips * sizeof(*w->addrs));
    w->naddrs = (uint16_t)p->nips;
    w->healthy = p->ready && !p->terminating;
    w->workload_type = 2;
    set_tunnel(w, p);
    w->host_network = p->host_network;
    return r;
}

/* The pod's waypoint, in the member its network gateway would take (a pod
 * has none); its strings shared, as every string of a workload. */
static void set_waypoint(model_t *m, const model_cluster_int_t *c, model_res_t *r,
                         const model_gateway_t *wp)
{
    if (!wp)
        return;
    model_gw_addr_t *g = model_arena_alloc(&r->arena, sizeof(*g));
    model_waypoint_addr(c, wp, g);
    g->network = model_str(&m->strs, g->network);
    g->hostname = model_str(&m->strs, g->hostname);
    g->ns = model_str(&m->strs, g->ns);
    r->u.wl.gateway = g;
}

/* A dirty key "cluster\nns/name": the cluster id into cid, and the object's
 * key returned. */
static const char *split_dkey(const char *dkey, char *cid, size_t len)
{
    const char *nl = strchr(dkey, '\n');
    size_t clen = (size_t)(nl - dkey) < len - 1 ? (size_t)(nl - dkey) : len - 1;
    memcpy(cid, dkey, clen);
    cid[clen] = '\0';
    return nl + 1;
}

static void derive_pod(build_t *b, const char *dkey)
{
    model_t *m = b->m;
    char cid[256];
    const char *key = split_dkey(dkey, cid, sizeof(cid));
    char uid[768];
    char ns[256];
    ns_of(key, ns, sizeof(ns));
    snprintf(uid, sizeof(uid), "%s//Pod/%s", cid, key);
    model_cluster_int_t *c = model_cluster_find(m, cid);
    const model_pod_t *p = c ? base_map_get(&c->objs[MODEL_KIND_POD], key) : NULL;
    if (!p || p->nips == 0 || p->terminal) {
        publish(b, uid, NULL, 0);
        return;
    }
    void *const *slices;
    size_t nslices = model_ptrs_get(&c->slices_by_pod, key, &slices);
    pod_svc_t *ps = zalloc(nslices, sizeof(*ps)); /* a service per slice at most */
    size_t nps = 0, nglobal = 0;
    for (size_t i = 0; i < nslices; i++) {
        const model_endpointslice_t *s = slices[i];
        char skey[512];
        snprintf(skey, sizeof(skey), "%s/%s", s->ns, s->service ? s->service : "");
        const model_service_t *svc = base_map_get(&c->objs[MODEL_KIND_SERVICE], skey);
        bool dup = false;
        for (size_t j = 0; j < nps && !dup; j++)
            dup = ps[j].svc == svc;
        if (!svc || dup || svc->external_name)
            continue;
        const model_svc_state_t *st = base_map_get(&m->svc_state, skey);
        bool global = false;
        for (size_t j = 0; st && j < st->nclusters; j++)
            if (strcmp(st->clusters[j], c->id) == 0)
                global = st->scopes[j].scope == MODEL_SCOPE_GLOBAL;
        nglobal += global;
        ps[nps++] = (pod_svc_t){svc, s, global};
    }
    /* Every proxy of the pod's network may reach it directly, as istiod
     * sends it: its own cluster with all its services, the others with
     * those that are global in its cluster (the rest are not theirs to
     * reach through it). */
    model_res_t *v[2];
    const model_gateway_t *wp = model_waypoint_of(c, p->ns, &p->labels, true);
    size_t size = pod_size(p) + (wp ? sizeof(model_gw_addr_t) : 0);
    v[0] = build_pod(m, c, p, uid, size);
    set_waypoint(m, c, v[0], wp);
    fill_services(v[0], ps, nps, false, m);
    v[0]->u.wl.authz = model_pod_policies(m, c, p);
    size_t nv = 1;
    if (nglobal == nps || !network_peers(m, c)) {
        set_vis(m, v[0], MODEL_VIS_NETWORK, c->id, c->network, NULL, 0);
    } else {
        set_vis(m, v[0], MODEL_VIS_CLUSTER, c->id, NULL, NULL, 0);
        v[1] = build_pod(m, c, p, uid, size);
        set_waypoint(m, c, v[1], wp);
        fill_services(v[1], ps, nps, true, m);
        v[1]->u.wl.authz = model_str_ref(v[0]->u.wl.authz);
        set_vis(m, v[1], MODEL_VIS_NETWORK_PEERS, c->id, c->network, NULL, 0);
        nv = 2;
    }
    free(ps);
    publish(b, uid, v, nv);
}

/* ---------- endpoints that are no pod ---------- */

/* The ports of a slice's workload: each named TCP port of the slice whose
 * name is a port of the Service, as service port -> the slice's port. */
static model_wl_service_t slice_ports(const model_t *m, const model_endpointslice_t *s,
                                      const model_service_t *svc)
{
    char *host = hostname(m, svc->ns, svc->name);
    model_wl_service_t ws = {key_of(svc->ns, host), NULL, 0};
    free(host);
    ws.ports = malloc((s->nports ? s->nports : 1) * sizeof(*ws.ports));
    if (!ws.ports)
        abort();
    for (size_t i = 0; i < s->nports; i++) {
        if (s->ports[i].protocol != MODEL_PROTO_TCP || !s->ports[i].port)
            continue;
        for (size_t j = 0; j < svc->nports; j++)
            if (port_name_eq(svc->ports[j].name, s->ports[i].name)) {
                ws.ports[ws.nports++] =
                    (model_port_pair_t){svc->ports[j].port, s->ports[i].port, 0};
                break;
            }
    }
    return ws;
}

/* A workload for an endpoint no Pod stands behind (a Service without a
 * selector, filled by hand or by a controller), as istiod builds it: named
 * after the slice, an address shared with who knows what (HOST_NETWORK), no
 * identity, no tunnel; healthy unless the endpoint says it is not ready. */
static model_res_t *build_slice_workload(model_t *m, const model_cluster_int_t *c,
                                         const model_endpointslice_t *s, const model_endpoint_t *e,
                                         const char *uid, const model_wl_service_t *ws)
{
    model_strs_t *t = &m->strs;
    model_res_t *r = model_res_new(MODEL_RES_WORKLOAD, uid, 64 + strlen(s->name));
    model_out_workload_t *w = &r->u.wl;
    w->uid = r->name;
    w->name = model_arena_strdup(&r->arena, s->name);
    w->ns = model_str(t, s->ns);
    w->cluster_id = model_str(t, c->id);
    w->network = model_str(t, c->network);
    w->trust_domain = model_str(t, trust_domain(m));
    w->addrs = model_arena_alloc(&r->arena, sizeof(*w->addrs));
    w->addrs[0] = e->ip;
    w->naddrs = 1;
    w->host_network = 1;
    w->healthy = e->ready;
    w->services = model_svcs(t, ws, 1);
    w->nservices = 1;
    return r;
}

/* The workloads of one slice's pod-less endpoints: its own cluster sees
 * them; its network's other clusters too when the Service is global there,
 * as istiod sends every workload of its network. */
static void derive_slice(build_t *b, const char *dkey)
{
    model_t *m = b->m;
    char cid[256];
    const char *key = split_dkey(dkey, cid, sizeof(cid));
    const model_cluster_int_t *c = model_cluster_find(m, cid);
    const model_endpointslice_t *s =
        c ? base_map_get(&c->objs[MODEL_KIND_ENDPOINTSLICE], key) : NULL;
    const model_service_t *svc = NULL;
    char skey[512];
    if (s && s->service) {
        snprintf(skey, sizeof(skey), "%s/%s", s->ns, s->service);
        svc = base_map_get(&c->objs[MODEL_KIND_SERVICE], skey);
    }
    model_names_t *now = calloc(1, sizeof(*now));
    if (!now)
        abort();
    if (svc && !svc->external_name && s->nendpoints) {
        const model_svc_state_t *st = base_map_get(&m->svc_state, skey);
        bool global = false;
        for (size_t j = 0; st && j < st->nclusters; j++)
            if (strcmp(st->clusters[j], c->id) == 0)
                global = st->scopes[j].scope == MODEL_SCOPE_GLOBAL;
        model_wl_service_t ws = slice_ports(m, s, svc);
        now->v = calloc(s->nendpoints, sizeof(char *));
        if (!now->v)
            abort();
        for (size_t i = 0; i < s->nendpoints; i++) {
            const model_endpoint_t *e = &s->endpoints[i];
            char ip[64], uid[1024];
            if (e->pod || !e->ip.len)
                continue;
            model_ip_format(&e->ip, ip, sizeof(ip));
            snprintf(uid, sizeof(uid), "%s/discovery.k8s.io/EndpointSlice/%s/%s/%s", c->id, s->ns,
                     s->name, ip);
            if (name_in(now->v, now->n, uid))
                continue; /* the same address twice: istiod keeps the first */
            model_res_t *r = build_slice_workload(m, c, s, e, uid, &ws);
            if (global)
                set_vis(m, r, MODEL_VIS_NETWORK, c->id, c->network, NULL, 0);
            else
                set_vis(m, r, MODEL_VIS_CLUSTER, c->id, NULL, NULL, 0);
            now->v[now->n++] = strdup(uid);
            publish(b, uid, &r, 1);
        }
        free((char *)ws.key);
        free(ws.ports);
    }
    model_names_t *was = base_map_get(&m->slice_names, dkey);
    for (size_t i = 0; was && i < was->n; i++)
        if (!name_in(now->v, now->n, was->v[i]))
            publish(b, was->v[i], NULL, 0);
    if (was) {
        base_map_del(&m->slice_names, dkey);
        model_names_free(was);
    }
    if (now->n)
        base_map_put(&m->slice_names, dkey, now);
    else
        model_names_free(now);
}

/* ---------- network gateways ---------- */

/* One workload per east-west gateway, as istiod's ambient index makes them
 * for the Gateways of its remote clusters: uid and name
 * "NetworkGateway/<network>/<address>/0" (a remote Gateway's HBONE port is
 * never recorded there), the Gateway's namespace and service account, the
 * trust domain; an IP as its address, a hostname as its hostname; no
 * cluster, tunnel or workload type. ztunnel finds it by network and address
 * and verifies the outer HBONE against its identity. A cluster's own
 * gateway is not a network gateway to it, so its cluster does not see it. */
static model_res_t *build_gateway(model_t *m, const model_cluster_int_t *c, const char *uid)
{
    model_strs_t *t = &m->strs;
    model_res_t *r = model_res_new(MODEL_RES_WORKLOAD, uid, 64);
    model_out_workload_t *w = &r->u.wl;
    w->uid = r->name;
    w->name = r->name;
    w->ns = model_str(t, c->gw_ns);
    w->service_account = model_str(t, c->gw_sa);
    w->network = model_str(t, c->network);
    w->trust_domain = model_str(t, trust_domain(m));
    if (c->gw_host) {
        w->hostname = model_arena_strdup(&r->arena, c->gw_host);
    } else {
        w->addrs = model_arena_alloc(&r->arena, sizeof(*w->addrs));
        w->addrs[0] = c->gw;
        w->naddrs = 1;
    }
    w->healthy = true;
    char *own[1] = {c->id};
    set_vis(m, r, MODEL_VIS_ALL, NULL, NULL, own, 1);
    return r;
}

static void derive_gateways(build_t *b)
{
    model_t *m = b->m;
    char **names = calloc(m->nclusters + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < m->nclusters; i++) {
        const model_cluster_int_t *c = m->clusters[i];
        if (!has_gateway(c))
            continue;
        char addr[256], uid[768];
        snprintf(uid, sizeof(uid), "NetworkGateway/%s/%s/0", c->network,
                 gateway_addr(c, addr, sizeof(addr)));
        if (name_in(names, n, uid))
            continue; /* two clusters naming one gateway: it is one workload */
        model_res_t *r = build_gateway(m, c, uid);
        names[n++] = strdup(uid);
        publish(b, uid, &r, 1);
    }
    for (size_t i = 0; i < m->ngw_names; i++)
        if (!name_in(names, n, m->gw_names[i]))
            publish(b, m->gw_names[i], NULL, 0);
    strv_free(m->gw_names, m->ngw_names);
    m->gw_names = names;
    m->ngw_names = n;
}

/* ---------- Authorization (policy.c) ---------- */

static void derive_authz(build_t *b, const char *key)
{
    model_res_t **v = zalloc(b->m->nclusters, sizeof(*v));
    size_t n = model_authz_variants(b->m, key, v);
    publish_to(b, b->aedit, key, v, n);
    free(v);
}

/* ---------- commit ---------- */

typedef struct drain_ctx {
    build_t *b;
    void (*fn)(build_t *, const char *);
} drain_ctx_t;

static void drain_one(const char *key, void *val, void *arg)
{
    (void)val;
    drain_ctx_t *d = arg;
    d->fn(d->b, key);
}

/* Rebuilds every dirty key. Taking the keys out first keeps this linear, and
 * lets a rebuild mark further keys (a service marks its pods). Each mark is
 * freed as soon as it is done, so the resources built next reuse its memory
 * instead of leaving a commit-sized hole in the heap. */
static void drain(base_map_t *h, build_t *b, void (*fn)(build_t *, const char *))
{
    drain_ctx_t d = {b, fn};
    while (h->n)
        base_map_take(h, drain_one, &d);
}

model_snapshot_t *model_commit(model_t *m)
{
    build_t b = {m, model_pmap_edit(m->map), model_pmap_edit(m->emap), model_pmap_edit(m->amap)};
    m->version++;
    m->changes = 0;
    model_mark_policy_pods(m);
    /* services first: pods read the scopes they record */
    drain(&m->dirty_svcs, &b, derive_service);
    drain(&m->dirty_pods, &b, derive_pod);
    drain(&m->dirty_slices, &b, derive_slice);
    drain(&m->dirty_authz, &b, derive_authz);
    if (m->dirty_gateways)
        derive_gateways(&b);
    m->dirty_gateways = false;
    model_strs_sweep(&m->strs);
    model_pmap_t *map = model_pmap_finish(b.edit);
    model_pmap_t *emap = model_pmap_finish(b.eedit);
    model_pmap_t *amap = model_pmap_finish(b.aedit);
    if (m->changes == 0)
        m->version--;
    model_pmap_unref(m->map);
    model_pmap_unref(m->emap);
    model_pmap_unref(m->amap);
    m->map = map;
    m->emap = emap;
    m->amap = amap;
    return model_snapshot_new(model_pmap_ref(map), model_pmap_ref(emap), model_pmap_ref(amap),
                              m->version);
}
