/*
 * envoy.c - model endpoints resources to serialized Envoy v3 Listener,
 * RouteConfiguration, Cluster and ClusterLoadAssignment messages (see
 * envoy.h for the names and shapes).
 *
 * An endpoints variant is immutable and belongs to one viewing cluster, so
 * all its encodings (every port, every type, client and gateway flavours)
 * are built once, on first use, and cached on the resource. The resource's
 * cache slot is free for this: encode.c only uses it on Address kinds.
 */
#include "envoy.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager hcm_t;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter hfilter_t;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__Rds rds_t;
typedef Envoy__Config__Endpoint__V3__LocalityLbEndpoints lle_t;
typedef Envoy__Config__Endpoint__V3__LbEndpoint lbe_t;

#define ENV_MAGIC 0x656e766fu /* "envo": what the cache slot holds */
#define CONNECT_TIMEOUT_S 10

/* All encodings of one endpoints variant. The gateway's are NULL for local
 * services (a gateway serves only global ones). */
typedef struct env_cache {
    model_res_cache_hdr_t hdr; /* first: see model_res_cache_set */
    uint32_t magic;
    size_t nports;
    xds_envoy_item_t (*it)[XDS_ENVOY_NTYPES]; /* per port: what clients get */
    xds_envoy_item_t *gw_cds;                 /* per port: the gateway's cluster */
    xds_envoy_item_t *gw_eds;                 /* ... and its endpoints */
} env_cache_t;

static const char *const type_urls[XDS_ENVOY_NTYPES] = {XDS_TYPE_LISTENER, XDS_TYPE_ROUTE,
                                                        XDS_TYPE_CLUSTER, XDS_TYPE_ENDPOINT};

int xds_envoy_type(const char *type_url)
{
    for (int i = 0; type_url && i < XDS_ENVOY_NTYPES; i++)
        if (strcmp(type_url, type_urls[i]) == 0)
            return i;
    return -1;
}

const char *xds_envoy_type_url(xds_envoy_type_t t)
{
    return type_urls[t];
}

void xds_envoy_version(uint64_t h, char *buf)
{
    snprintf(buf, 17, "%016" PRIx64, h);
}

/* splitmix64 finalizer: spreads item digests before they are summed. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(m, buf);
    return buf;
}

static void item_free(xds_envoy_item_t *it);

int xds_envoy_item_set(xds_envoy_item_t *it, const char *name, const void *m)
{
    it->name = strdup(name);
    it->buf = pack(m, &it->len);
    if (!it->name || !it->buf) {
        item_free(it);
        it->name = NULL;
        it->buf = NULL;
        return -1;
    }
    it->hash = base_hash(it->buf, it->len) ^ mix(base_hash(name, strlen(name)));
    return 0;
}

static void item_free(xds_envoy_item_t *it)
{
    free(it->name);
    free(it->buf);
}

/* ---------- Listener and RouteConfiguration ---------- */

static void ads_source(Envoy__Config__Core__V3__ConfigSource *cs,
                       Envoy__Config__Core__V3__AggregatedConfigSource *ads)
{
    envoy__config__core__v3__aggregated_config_source__init(ads);
    envoy__config__core__v3__config_source__init(cs);
    cs->config_source_specifier_case =
        ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS;
    cs->ads = ads;
    cs->resource_api_version = ENVOY__CONFIG__CORE__V3__API_VERSION__V3;
}

/* HttpConnectionManager{rds over ADS, router}, packed into out. 0 or -1. */
static int hcm_any(Google__Protobuf__Any *out, const char *rds_name)
{
    Envoy__Config__Core__V3__AggregatedConfigSource ads;
    Envoy__Config__Core__V3__ConfigSource cs;
    ads_source(&cs, &ads);
    rds_t rds;
    envoy__extensions__filters__network__http_connection_manager__v3__rds__init(&rds);
    rds.config_source = &cs;
    rds.route_config_name = (char *)rds_name;

    Envoy__Extensions__Filters__Http__Router__V3__Router router;
    envoy__extensions__filters__http__router__v3__router__init(&router);
    Google__Protobuf__Any router_any = GOOGLE__PROTOBUF__ANY__INIT;
    router_any.type_url = (char *)XDS_TYPE_ROUTER; /* Router{} packs to nothing */
    hfilter_t f, *fp = &f;
    envoy__extensions__filters__network__http_connection_manager__v3__http_filter__init(&f);
    f.name = (char *)"envoy.filters.http.router";
    f.config_type_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__CONFIG_TYPE_TYPED_CONFIG;
    f.typed_config = &router_any;

    hcm_t h;
    envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__init(
        &h);
    h.stat_prefix = (char *)rds_name;
    h.route_specifier_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_RDS;
    h.rds = &rds;
    h.n_http_filters = 1;
    h.http_filters = &fp;
    google__protobuf__any__init(out);
    out->type_url = (char *)XDS_TYPE_HCM;
    out->value.data = pack(&h.base, &out->value.len);
    return out->value.data ? 0 : -1;
}

/* What "xds:///H:P" resolves to: an API listener whose HCM asks RDS "H:P". */
static int listener_item(xds_envoy_item_t *it, const char *name)
{
    Google__Protobuf__Any any;
    if (hcm_any(&any, name) < 0)
        return -1;
    Envoy__Config__Listener__V3__ApiListener api;
    envoy__config__listener__v3__api_listener__init(&api);
    api.api_listener = &any;
    Envoy__Config__Listener__V3__Listener l;
    envoy__config__listener__v3__listener__init(&l);
    l.name = (char *)name;
    l.api_listener = &api;
    int rc = xds_envoy_item_set(it, name, &l.base);
    free(any.value.data);
    return rc;
}

/* One virtual host "H:P": domains, and every path to cluster. */
static void vhost_init(Envoy__Config__Route__V3__VirtualHost *vh,
                       Envoy__Config__Route__V3__Route *r, Envoy__Config__Route__V3__Route **rp,
                       Envoy__Config__Route__V3__RouteMatch *m,
                       Envoy__Config__Route__V3__RouteAction *a, const char *name, char **domains,
                       size_t ndomains, const char *cluster)
{
    envoy__config__route__v3__route_match__init(m);
    m->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PREFIX;
    m->prefix = (char *)"/"; /* every gRPC method path starts with '/' */
    envoy__config__route__v3__route_action__init(a);
    a->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER;
    a->cluster = (char *)cluster;
    envoy__config__route__v3__route__init(r);
    r->name = (char *)"default";
    r->match = m;
    r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE;
    r->route = a;
    *rp = r;
    envoy__config__route__v3__virtual_host__init(vh);
    vh->name = (char *)name;
    vh->n_domains = ndomains;
    vh->domains = domains;
    vh->n_routes = 1;
    vh->routes = rp;
}

/* Domains a client may use for H:P: "H:P", "H", and for
 * "name.ns.svc.<suffix>" also "name.ns.svc", "name.ns" (with and without
 * the port), the short forms Kubernetes DNS resolves. Into buf. */
static size_t domains_of(const char *host, uint16_t port, char *buf, size_t buflen, char **out)
{
    size_t n = 0, off = 0;
    const char *svc = strstr(host, ".svc.");
    size_t cuts[3] = {strlen(host), svc ? (size_t)(svc - host) + 4 : 0,
                      svc ? (size_t)(svc - host) : 0};
    for (size_t c = 0; c < 3; c++) {
        if (!cuts[c])
            continue;
        for (int withport = 1; withport >= 0; withport--) {
            int w = withport
                        ? snprintf(buf + off, buflen - off, "%.*s:%u", (int)cuts[c], host, port)
                        : snprintf(buf + off, buflen - off, "%.*s", (int)cuts[c], host);
            if (w < 0 || (size_t)w >= buflen - off)
                return n;
            out[n++] = buf + off;
            off += (size_t)w + 1;
        }
    }
    return n;
}

static int route_item(xds_envoy_item_t *it, const char *name, const char *host, uint16_t port,
                      const char *cluster)
{
    char buf[4 * XDS_MAX_NAME_BUF];
    char *domains[6];
    size_t nd = domains_of(host, port, buf, sizeof(buf), domains);
    Envoy__Config__Route__V3__VirtualHost vh, *vhp = &vh;
    Envoy__Config__Route__V3__Route r, *rp;
    Envoy__Config__Route__V3__RouteMatch m;
    Envoy__Config__Route__V3__RouteAction a;
    vhost_init(&vh, &r, &rp, &m, &a, name, domains, nd, cluster);
    Envoy__Config__Route__V3__RouteConfiguration rc;
    envoy__config__route__v3__route_configuration__init(&rc);
    rc.name = (char *)name;
    rc.n_virtual_hosts = 1;
    rc.virtual_hosts = &vhp;
    return xds_envoy_item_set(it, name, &rc.base);
}

/* ---------- Cluster ---------- */

static int cluster_item(xds_envoy_item_t *it, const char *name)
{
    Envoy__Config__Core__V3__AggregatedConfigSource ads;
    Envoy__Config__Core__V3__ConfigSource cs;
    ads_source(&cs, &ads);
    Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig eds;
    envoy__config__cluster__v3__cluster__eds_cluster_config__init(&eds);
    eds.eds_config = &cs;
    eds.service_name = (char *)name;
    Google__Protobuf__Duration ct = GOOGLE__PROTOBUF__DURATION__INIT;
    ct.seconds = CONNECT_TIMEOUT_S;
    Envoy__Config__Cluster__V3__Cluster c;
    envoy__config__cluster__v3__cluster__init(&c);
    c.name = (char *)name;
    c.cluster_discovery_type_case =
        ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE;
    c.type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS;
    c.eds_cluster_config = &eds;
    c.connect_timeout = &ct;
    c.lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__ROUND_ROBIN;
    return xds_envoy_item_set(it, name, &c.base);
}

/* ---------- ClusterLoadAssignment ---------- */

typedef struct cla_ep {
    lbe_t lb;
    Envoy__Config__Endpoint__V3__Endpoint e;
    Envoy__Config__Core__V3__Address a;
    Envoy__Config__Core__V3__SocketAddress sa;
    Google__Protobuf__UInt32Value w;
    char ip[64];
    /* a gateway's: forward_inner_connect, told the pod address "ip:port" */
    Envoy__Config__Core__V3__EnvoyInternalAddress ia;
    Envoy__Config__Core__V3__Metadata md;
    Envoy__Config__Core__V3__Metadata__FilterMetadataEntry fme, *fmep;
    Google__Protobuf__Struct st;
    Google__Protobuf__Struct__FieldsEntry fe, *fep;
    Google__Protobuf__Value val;
    char hostport[72];
} cla_ep_t;

/* One locality: endpoints sharing priority, cluster and region/zone/subzone. */
typedef struct cla_grp {
    lle_t l;
    Envoy__Config__Core__V3__Locality loc;
    Google__Protobuf__UInt32Value w;
    const model_out_endpoint_t *key; /* first endpoint: the group's key */
    lbe_t **eps;
    char *sub; /* sub_zone made unique, or NULL */
} cla_grp_t;

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_locality(const model_out_endpoint_t *a, const model_out_endpoint_t *b)
{
    return str_eq(a->loc->region, b->loc->region) && str_eq(a->loc->zone, b->loc->zone) &&
           str_eq(a->loc->subzone, b->loc->subzone);
}

static bool same_group(const model_out_endpoint_t *a, const model_out_endpoint_t *b, bool gw)
{
    return (gw || a->priority == b->priority) && str_eq(a->loc->cluster, b->loc->cluster) &&
           str_eq(a->loc->network, b->loc->network) && a->via_gateway == b->via_gateway &&
           same_locality(a, b);
}

/* Whether e goes into port pi's assignment: served on that port, not a
 * duplicate address (gRPC rejects those), and for a gateway (own != NULL)
 * one of its own cluster's ready pods (istiod's filter: an unhealthy host
 * would still get traffic in Envoy's panic mode). */
static bool cla_wants(const model_out_endpoints_t *o, size_t i, size_t pi, const char *own)
{
    const model_out_endpoint_t *e = &o->eps[i];
    if (!e->ports[pi] || (own && (e->via_gateway || !e->healthy || !str_eq(e->loc->cluster, own))))
        return false;
    for (size_t j = 0; j < i; j++)
        if (o->eps[j].ports[pi] == e->ports[pi] && model_ip_equal(&o->eps[j].ip, &e->ip) &&
            (!own ||
             (!o->eps[j].via_gateway && o->eps[j].healthy && str_eq(o->eps[j].loc->cluster, own))))
            return false;
    return true;
}

/* The gateway's endpoint: an internal address of forward_inner_connect
 * whose original_dst filter takes "podIP:port" from the host metadata the
 * inbound-vip cluster's transport socket passes through (istiod's shape).
 * endpoint_id keeps the hosts of one listener apart. */
static void cla_ep_internal(cla_ep_t *ce, const model_out_endpoint_t *e, uint16_t port)
{
    snprintf(ce->hostport, sizeof(ce->hostport), e->ip.len == 16 ? "[%s]:%u" : "%s:%u", ce->ip,
             port);
    envoy__config__core__v3__envoy_internal_address__init(&ce->ia);
    ce->ia.address_name_specifier_case =
        ENVOY__CONFIG__CORE__V3__ENVOY_INTERNAL_ADDRESS__ADDRESS_NAME_SPECIFIER_SERVER_LISTENER_NAME;
    ce->ia.server_listener_name = (char *)XDS_GW_FORWARD_INNER;
    ce->ia.endpoint_id = ce->hostport;
    ce->a.address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_ENVOY_INTERNAL_ADDRESS;
    ce->a.envoy_internal_address = &ce->ia;
    google__protobuf__value__init(&ce->val);
    ce->val.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    ce->val.string_value = ce->hostport;
    google__protobuf__struct__fields_entry__init(&ce->fe);
    ce->fe.key = (char *)"local";
    ce->fe.value = &ce->val;
    ce->fep = &ce->fe;
    google__protobuf__struct__init(&ce->st);
    ce->st.n_fields = 1;
    ce->st.fields = &ce->fep;
    envoy__config__core__v3__metadata__filter_metadata_entry__init(&ce->fme);
    ce->fme.key = (char *)XDS_ORIG_DST;
    ce->fme.value = &ce->st;
    ce->fmep = &ce->fme;
    envoy__config__core__v3__metadata__init(&ce->md);
    ce->md.n_filter_metadata = 1;
    ce->md.filter_metadata = &ce->fmep;
    ce->lb.metadata = &ce->md;
}

static void cla_ep_init(cla_ep_t *ce, const model_out_endpoint_t *e, uint16_t port, bool gw)
{
    model_ip_format(&e->ip, ce->ip, sizeof(ce->ip));
    envoy__config__core__v3__socket_address__init(&ce->sa);
    ce->sa.address = ce->ip;
    ce->sa.port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    ce->sa.port_value = port;
    envoy__config__core__v3__address__init(&ce->a);
    ce->a.address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    ce->a.socket_address = &ce->sa;
    envoy__config__endpoint__v3__endpoint__init(&ce->e);
    ce->e.address = &ce->a;
    google__protobuf__uint32_value__init(&ce->w);
    ce->w.value = e->weight ? e->weight : 1;
    envoy__config__endpoint__v3__lb_endpoint__init(&ce->lb);
    ce->lb.host_identifier_case =
        ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT;
    ce->lb.endpoint = &ce->e;
    ce->lb.health_status = e->healthy ? ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY
                                      : ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNHEALTHY;
    ce->lb.load_balancing_weight = &ce->w;
    if (gw)
        cla_ep_internal(ce, e, port);
}

/* Priorities as used, renumbered 0..k-1: a client rejects priority N
 * without N-1 (e.g. a viewer with no endpoints of its own). */
static void cla_priorities(cla_grp_t *g, size_t ng, bool gw)
{
    bool used[256] = {false};
    uint32_t map[256];
    for (size_t i = 0; i < ng; i++)
        used[gw ? 0 : g[i].key->priority] = true;
    for (uint32_t p = 0, k = 0; p < 256; p++)
        if (used[p])
            map[p] = k++;
    for (size_t i = 0; i < ng; i++)
        g[i].l.priority = map[gw ? 0 : g[i].key->priority];
}

/* Two groups with the same priority and locality (say two clusters without
 * zone labels) would be rejected as duplicates: tell them apart by adding
 * the cluster to the sub_zone. */
static void cla_localities(cla_grp_t *g, size_t ng)
{
    for (size_t i = 0; i < ng; i++) {
        const model_locality_t *k = g[i].key->loc;
        bool clash = false;
        for (size_t j = 0; j < ng && !clash; j++)
            clash =
                j != i && g[j].l.priority == g[i].l.priority && same_locality(g[i].key, g[j].key);
        envoy__config__core__v3__locality__init(&g[i].loc);
        g[i].loc.region = (char *)(k->region ? k->region : "");
        g[i].loc.zone = (char *)(k->zone ? k->zone : "");
        g[i].loc.sub_zone = (char *)(k->subzone ? k->subzone : "");
        if (clash) {
            size_t n = strlen(g[i].loc.sub_zone) + strlen(k->cluster ? k->cluster : "") + 16;
            if ((g[i].sub = malloc(n))) {
                snprintf(g[i].sub, n, "%s/cluster=%s", g[i].loc.sub_zone,
                         k->cluster ? k->cluster : "");
                g[i].loc.sub_zone = g[i].sub;
            }
        }
        g[i].l.locality = &g[i].loc;
        g[i].l.load_balancing_weight = &g[i].w;
    }
}

/* Groups the wanted endpoints into g (ng returned); ce[] backs them. */
static size_t cla_group(const model_out_endpoints_t *o, size_t pi, const char *own, cla_ep_t *ce,
                        cla_grp_t *g, lbe_t **slots)
{
    size_t ng = 0, nslot = 0;
    /* two passes keep each group's endpoints contiguous in slots */
    for (size_t i = 0; i < o->neps; i++) {
        if (!cla_wants(o, i, pi, own))
            continue;
        size_t k = 0;
        while (k < ng && !same_group(g[k].key, &o->eps[i], own != NULL))
            k++;
        if (k == ng) {
            envoy__config__endpoint__v3__locality_lb_endpoints__init(&g[ng].l);
            google__protobuf__uint32_value__init(&g[ng].w);
            g[ng++].key = &o->eps[i];
        }
    }
    for (size_t k = 0; k < ng; k++) {
        g[k].eps = &slots[nslot];
        for (size_t i = 0; i < o->neps; i++) {
            if (!same_group(g[k].key, &o->eps[i], own != NULL) || !cla_wants(o, i, pi, own))
                continue;
            cla_ep_init(&ce[i], &o->eps[i], o->eps[i].ports[pi], own != NULL);
            g[k].eps[g[k].l.n_lb_endpoints++] = &ce[i].lb;
            g[k].w.value += ce[i].w.value;
            nslot++;
        }
        g[k].l.lb_endpoints = g[k].eps;
    }
    return ng;
}

static int cla_item(xds_envoy_item_t *it, const char *name, const model_out_endpoints_t *o,
                    size_t pi, const char *own)
{
    size_t n = o->neps ? o->neps : 1;
    cla_ep_t *ce = calloc(n, sizeof(*ce));
    cla_grp_t *g = calloc(n, sizeof(*g));
    lbe_t **slots = calloc(n, sizeof(*slots));
    lle_t **gp = calloc(n, sizeof(*gp));
    int rc = -1;
    if (!ce || !g || !slots || !gp)
        goto out;
    size_t ng = cla_group(o, pi, own, ce, g, slots);
    cla_priorities(g, ng, own != NULL);
    cla_localities(g, ng);
    for (size_t k = 0; k < ng; k++)
        gp[k] = &g[k].l;
    Envoy__Config__Endpoint__V3__ClusterLoadAssignment cla;
    envoy__config__endpoint__v3__cluster_load_assignment__init(&cla);
    cla.cluster_name = (char *)name;
    cla.n_endpoints = ng;
    cla.endpoints = gp;
    rc = xds_envoy_item_set(it, name, &cla.base);
    for (size_t k = 0; k < ng; k++)
        free(g[k].sub);
out:
    free(ce);
    free(g);
    free(slots);
    free(gp);
    return rc;
}

/* ---------- the per-resource cache ---------- */

static void cache_free(void *p)
{
    env_cache_t *c = p;
    for (size_t i = 0; c && i < c->nports; i++) {
        for (int t = 0; c->it && t < XDS_ENVOY_NTYPES; t++)
            item_free(&c->it[i][t]);
        if (c->gw_eds)
            item_free(&c->gw_eds[i]);
        if (c->gw_cds)
            item_free(&c->gw_cds[i]);
    }
    if (c) {
        free(c->it);
        free(c->gw_eds);
        free(c->gw_cds);
    }
    free(c);
}

static int cache_port(env_cache_t *c, size_t i, const model_out_endpoints_t *o, const char *own)
{
    char lname[XDS_MAX_NAME_BUF], cname[XDS_MAX_NAME_BUF];
    uint16_t port = o->ports[i].service_port;
    snprintf(lname, sizeof(lname), "%s:%u", o->hostname, port);
    snprintf(cname, sizeof(cname), "outbound|%u||%s", port, o->hostname);
    xds_envoy_item_t *it = c->it[i];
    if (listener_item(&it[XDS_LDS], lname) < 0 ||
        route_item(&it[XDS_RDS], lname, o->hostname, port, cname) < 0 ||
        cluster_item(&it[XDS_CDS], cname) < 0 || cla_item(&it[XDS_EDS], cname, o, i, NULL) < 0)
        return -1;
    if (!c->gw_eds)
        return 0;
    snprintf(cname, sizeof(cname), "inbound-vip|%u|tcp|%s", port, o->hostname);
    if (xds_envoy_gw_vip_cluster(&c->gw_cds[i], cname) < 0 ||
        cla_item(&c->gw_eds[i], cname, o, i, own) < 0)
        return -1;
    return 0;
}

static env_cache_t *cache_build(const model_res_t *r)
{
    const model_out_endpoints_t *o = model_res_endpoints(r);
    const model_vis_t *vis = model_res_vis(r);
    env_cache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->magic = ENV_MAGIC;
    c->nports = o->nports;
    c->it = calloc(o->nports ? o->nports : 1, sizeof(*c->it));
    if (o->global) {
        c->gw_eds = calloc(o->nports ? o->nports : 1, sizeof(*c->gw_eds));
        c->gw_cds = calloc(o->nports ? o->nports : 1, sizeof(*c->gw_cds));
    }
    if (!c->it || (o->global && (!c->gw_eds || !c->gw_cds)))
        goto fail;
    for (size_t i = 0; i < o->nports; i++)
        if (cache_port(c, i, o, vis && vis->cluster ? vis->cluster : "") < 0)
            goto fail;
    return c;
fail:
    cache_free(c);
    return NULL;
}

/* The encodings of an endpoints variant, built on first use. */
static const env_cache_t *cache_get(const model_res_t *r)
{
    if (model_res_kind(r) != MODEL_RES_ENDPOINTS)
        return NULL;
    env_cache_t *c = model_res_cache(r);
    if (c)
        return c->magic == ENV_MAGIC ? c : NULL;
    if (!(c = cache_build(r)))
        return NULL;
    env_cache_t *got = model_res_cache_set(r, c, cache_free);
    return got && got->magic == ENV_MAGIC ? got : NULL;
}

/* ---------- collecting what one proxy sees ---------- */

static int set_add(xds_envoy_set_t *s, const xds_envoy_item_t *it)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        xds_envoy_item_t *n = realloc(s->items, cap * sizeof(*n));
        if (!n)
            return -1;
        s->items = n;
        s->cap = cap;
    }
    s->items[s->n++] = *it;
    s->hash += mix(it->hash);
    return 0;
}

int xds_envoy_set_add_owned(xds_envoy_set_t *s, xds_envoy_item_t *it)
{
    if (s->nowned == s->capowned) {
        size_t cap = s->capowned ? s->capowned * 2 : 4;
        uint8_t **nb = realloc(s->owned, cap * sizeof(*nb));
        if (nb)
            s->owned = nb;
        char **nn = realloc(s->owned_names, cap * sizeof(*nn));
        if (nn)
            s->owned_names = nn;
        if (!nb || !nn) {
            item_free(it);
            return -1;
        }
        s->capowned = cap;
    }
    s->owned[s->nowned] = it->buf;
    s->owned_names[s->nowned++] = it->name;
    return set_add(s, it);
}

void xds_envoy_set_free(xds_envoy_set_t *s)
{
    for (size_t i = 0; i < s->nowned; i++) {
        free(s->owned[i]);
        free(s->owned_names[i]);
    }
    free(s->owned);
    free(s->owned_names);
    free(s->items);
    memset(s, 0, sizeof(*s));
}

typedef struct collect {
    xds_envoy_set_t *set;
    const model_snapshot_t *snap;
    const model_view_t *v;
    xds_envoy_role_t role;
    xds_envoy_type_t t;
    const char *want_host; /* lookup by hostname */
    const model_res_t *found;
    int rc;
} collect_t;

/* What port pi of r contributes for c's role and type, or NULL. */
static const xds_envoy_item_t *port_item(const collect_t *c, const model_res_t *r, size_t pi)
{
    const env_cache_t *e = cache_get(r);
    if (!e || pi >= e->nports)
        return NULL;
    if (c->role == XDS_ROLE_CLIENT)
        return &e->it[pi][c->t];
    if (!e->gw_eds) /* gateways carry only global services */
        return NULL;
    if (c->t == XDS_CDS)
        return &e->gw_cds[pi];
    if (c->t == XDS_EDS)
        return &e->gw_eds[pi];
    return NULL;
}

static void all_cb(const model_res_t *r, void *arg)
{
    collect_t *c = arg;
    const env_cache_t *e = cache_get(r);
    for (size_t i = 0; e && i < e->nports; i++) {
        const xds_envoy_item_t *it = port_item(c, r, i);
        if (it && set_add(c->set, it) < 0)
            c->rc = -1;
    }
}

static void host_cb(const model_res_t *r, void *arg)
{
    collect_t *c = arg;
    const model_out_endpoints_t *o = model_res_endpoints(r);
    if (!c->found && o && strcmp(o->hostname, c->want_host) == 0)
        c->found = r;
}

/* The endpoints variant of hostname host in c's view: "ns/host" when host
 * is "name.ns....", else a scan of the view. */
static const model_res_t *find_host(collect_t *c, const char *host)
{
    const char *dot = strchr(host, '.');
    char key[2 * XDS_MAX_NAME_BUF];
    if (dot) {
        const char *end = strchr(dot + 1, '.');
        size_t nslen = end ? (size_t)(end - dot - 1) : strlen(dot + 1);
        snprintf(key, sizeof(key), "%.*s/%s", (int)nslen, dot + 1, host);
        const model_res_t *r = model_snapshot_get_endpoints(c->snap, c->v, key);
        const model_out_endpoints_t *o = r ? model_res_endpoints(r) : NULL;
        if (o && strcmp(o->hostname, host) == 0)
            return r;
    }
    c->want_host = host;
    c->found = NULL;
    model_snapshot_each_endpoints(c->snap, c->v, host_cb, c);
    return c->found;
}

/* Splits "H:P" (listener, route), "outbound|P||H" (a client's cluster and
 * EDS) or "inbound-vip|P|tcp|H" (a gateway's). */
static bool parse_name(xds_envoy_type_t t, const char *name, char *host, size_t hlen,
                       unsigned *port)
{
    const char *h, *p;
    size_t n;
    if (t == XDS_LDS || t == XDS_RDS) {
        const char *colon = strrchr(name, ':');
        if (!colon)
            return false;
        h = name, n = (size_t)(colon - name), p = colon + 1;
    } else if (strncmp(name, "outbound|", 9) == 0 && (h = strstr(name + 9, "||"))) {
        p = name + 9, h += 2, n = strlen(h);
    } else if (strncmp(name, "inbound-vip|", 12) == 0 && (h = strstr(name + 12, "|tcp|"))) {
        p = name + 12, h += 5, n = strlen(h);
    } else {
        return false;
    }
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p || (*end && *end != '|') || v == 0 || v > 65535 || n == 0 || n >= hlen)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (unsigned)v;
    return true;
}

static void collect_named(collect_t *c, const char *name)
{
    char host[XDS_MAX_NAME_BUF];
    unsigned port;
    if (!parse_name(c->t, name, host, sizeof(host), &port))
        return;
    const model_res_t *r = find_host(c, host);
    const model_out_endpoints_t *o = r ? model_res_endpoints(r) : NULL;
    for (size_t i = 0; o && i < o->nports; i++) {
        const xds_envoy_item_t *it = o->ports[i].service_port == port ? port_item(c, r, i) : NULL;
        if (it && strcmp(it->name, name) == 0 && set_add(c->set, it) < 0)
            c->rc = -1;
    }
}

int xds_envoy_collect(xds_envoy_set_t *set, const model_snapshot_t *snap, const model_view_t *v,
                      xds_envoy_role_t role, const char *td, xds_envoy_type_t t,
                      const base_map_t *names)
{
    memset(set, 0, sizeof(*set));
    if (!snap || (int)t < 0 || t >= XDS_ENVOY_NTYPES)
        return 0;
    collect_t c = {.set = set, .snap = snap, .v = v, .role = role, .t = t};
    if (role == XDS_ROLE_GATEWAY && t == XDS_LDS)
        return xds_envoy_gw_listeners(set, snap, v, td, names);
    if (role == XDS_ROLE_GATEWAY && t == XDS_RDS)
        return 0; /* its one route table is inline in connect_terminate */
    if (role == XDS_ROLE_GATEWAY && t == XDS_CDS && xds_envoy_gw_static_clusters(set, names) < 0)
        return -1;
    if (!names) {
        model_snapshot_each_endpoints(snap, v, all_cb, &c);
        return c.rc;
    }
    for (const base_map_ent_t *e = base_map_first(names); e; e = base_map_next(names, e))
        collect_named(&c, e->key);
    return c.rc;
}
