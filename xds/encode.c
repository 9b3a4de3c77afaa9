/*
 * encode.c - model resources to serialized istio.workload.Address bytes.
 *
 * Each resource variant is immutable, so it is encoded once and the bytes
 * (with their xDS version string) are cached on the resource itself and
 * shared by every stream that sends it.
 */
#include "xds.h"
#include "xds_int.h"

#include "base.h"

#include "workload.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One allocation holds the Resource entry of a DeltaDiscoveryResponse
 * (field 2: version, name, then the Any last), so that its tail is the Any
 * entry of a DiscoveryResponse (also field 2) and the tail of that is the
 * Address itself. Every stream sends these bytes as they are. */
typedef struct xds_enc {
    model_res_cache_hdr_t hdr; /* first: see model_res_cache_set */
    uint8_t *buf;
    size_t len;
    size_t any_off; /* SotW entry: buf + any_off */
    size_t val_off; /* the Address: buf + val_off */
    char version[17];
} xds_enc_t;

/* protobuf-c wants char *, never NULL, for string fields. */
static char *s(const char *p)
{
    return p ? (char *)p : (char *)"";
}

static Istio__Workload__Port *ports_new(const model_port_pair_t *pp, size_t n)
{
    Istio__Workload__Port *p = calloc(n ? n : 1, sizeof(*p));
    for (size_t i = 0; p && i < n; i++) {
        istio__workload__port__init(&p[i]);
        p[i].service_port = pp[i].service_port;
        p[i].target_port = pp[i].target_port;
        p[i].app_protocol = (Istio__Workload__AppProtocol)pp[i].app_protocol;
    }
    return p;
}

static Istio__Workload__Port **ptrs(Istio__Workload__Port *p, size_t n)
{
    Istio__Workload__Port **v = calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; v && i < n; i++)
        v[i] = &p[i];
    return v;
}

/* Everything a Workload or a Service message points at, freed together
 * after packing. */
typedef struct parts {
    ProtobufCBinaryData *addrs;
    Istio__Workload__Workload__ServicesEntry *ents, **entp;
    Istio__Workload__PortList *lists;
    Istio__Workload__Port **ports; /* per service: contiguous Port array */
    Istio__Workload__Port ***portp;
    size_t nsvc;
    Istio__Workload__Locality loc;
    Istio__Workload__GatewayAddress gw;
    Istio__Workload__NetworkAddress gwa;
    Istio__Workload__NamespacedHostname gwh;
    Istio__Workload__WeightedWaypoint ww[2], *wwp[2];
    Istio__Workload__GatewayAddress wgw[2];
    Istio__Workload__NetworkAddress wgwa[2];
    Istio__Workload__NamespacedHostname wgwh[2];
    Google__Protobuf__UInt32Value cap;
    Istio__Workload__NetworkAddress *na, **nap;
    Istio__Workload__Port *sports, **sportp;
    Istio__Workload__LoadBalancing lb;
    Istio__Workload__LoadBalancing__Scope prefs[6];
    char *keys; /* a KEYS field's copy, split in place */
    char **keyp;
} parts_t;

static void parts_free(parts_t *p)
{
    for (size_t i = 0; i < p->nsvc; i++) {
        if (p->ports)
            free(p->ports[i]);
        if (p->portp)
            free(p->portp[i]);
    }
    free(p->ports);
    free(p->portp);
    free(p->addrs);
    free(p->ents);
    free(p->entp);
    free(p->lists);
    free(p->na);
    free(p->nap);
    free(p->sports);
    free(p->sportp);
    free(p->keys);
    free(p->keyp);
}

/* A KEYS field ('\n'-separated names) as a repeated string. */
static int wl_keys(const char *joined, size_t *np, char ***out, parts_t *p)
{
    if (!joined)
        return 0;
    size_t n = 1;
    for (const char *c = joined; *c; c++)
        n += *c == '\n';
    p->keys = strdup(joined);
    p->keyp = calloc(n, sizeof(*p->keyp));
    if (!p->keys || !p->keyp)
        return -1;
    size_t k = 0;
    for (char *c = p->keys, *save = NULL; (c = strtok_r(c, "\n", &save)); c = NULL)
        p->keyp[k++] = c;
    *np = k;
    *out = p->keyp;
    return 0;
}

static int wl_addrs(const model_ip_t *ips, size_t n, size_t *np, ProtobufCBinaryData **out,
                    parts_t *p)
{
    if (!(p->addrs = calloc(n + 1, sizeof(*p->addrs))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        p->addrs[i].data = (uint8_t *)ips[i].b;
        p->addrs[i].len = ips[i].len;
    }
    *np = n;
    *out = p->addrs;
    return 0;
}

static int wl_services(const model_wl_service_t *svcs, size_t n, size_t *np,
                       Istio__Workload__Workload__ServicesEntry ***out, parts_t *p)
{
    p->nsvc = n;
    p->ents = calloc(n + 1, sizeof(*p->ents));
    p->entp = calloc(n + 1, sizeof(*p->entp));
    p->lists = calloc(n + 1, sizeof(*p->lists));
    p->ports = calloc(n + 1, sizeof(*p->ports));
    p->portp = calloc(n + 1, sizeof(*p->portp));
    if (!p->ents || !p->entp || !p->lists || !p->ports || !p->portp)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const model_wl_service_t *ws = &svcs[i];
        istio__workload__workload__services_entry__init(&p->ents[i]);
        istio__workload__port_list__init(&p->lists[i]);
        p->ports[i] = ports_new(ws->ports, ws->nports);
        p->portp[i] = ptrs(p->ports[i], ws->nports);
        if (!p->ports[i] || !p->portp[i])
            return -1;
        p->lists[i].n_ports = ws->nports;
        p->lists[i].ports = p->portp[i];
        p->ents[i].key = s(ws->key);
        p->ents[i].value = &p->lists[i];
        p->entp[i] = &p->ents[i];
    }
    *np = n;
    *out = p->entp;
    return 0;
}

/* A GatewayAddress: a network gateway's or a waypoint's; NULL for none. */
/* g as a GatewayAddress in the storage given. */
static Istio__Workload__GatewayAddress *gw_fill(const model_gw_addr_t *g,
                                                Istio__Workload__GatewayAddress *gw,
                                                Istio__Workload__NamespacedHostname *gwh,
                                                Istio__Workload__NetworkAddress *gwa)
{
    istio__workload__gateway_address__init(gw);
    if (g->hostname) {
        istio__workload__namespaced_hostname__init(gwh);
        gwh->namespace_ = s(g->ns);
        gwh->hostname = s(g->hostname);
        gw->destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME;
        gw->hostname = gwh;
    } else {
        istio__workload__network_address__init(gwa);
        gwa->network = s(g->network);
        gwa->address.data = (uint8_t *)g->ip.b;
        gwa->address.len = g->ip.len;
        gw->destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_ADDRESS;
        gw->address = gwa;
    }
    gw->hbone_mtls_port = g->hbone_port ? g->hbone_port : 15008;
    return gw;
}

static Istio__Workload__GatewayAddress *gw_address(const model_gw_addr_t *g, parts_t *p)
{
    return g ? gw_fill(g, &p->gw, &p->gwh, &p->gwa) : NULL;
}

/* weighted_waypoints: the primary with the rest of the share, then the
 * canary; none without a canary. */
static size_t svc_weighted(const model_gw_addr_t *primary, const model_gw_addr_t *canary,
                           unsigned weight, Istio__Workload__WeightedWaypoint ***out, parts_t *p)
{
    if (!primary || !canary)
        return 0;
    const model_gw_addr_t *g[2] = {primary, canary};
    for (int i = 0; i < 2; i++) {
        istio__workload__weighted_waypoint__init(&p->ww[i]);
        p->ww[i].destination = gw_fill(g[i], &p->wgw[i], &p->wgwh[i], &p->wgwa[i]);
        p->ww[i].weight = i ? weight : 100 - weight;
        p->wwp[i] = &p->ww[i];
    }
    *out = p->wwp;
    return 2;
}

/* network_gateway, and the capacity that only gateway-reached workloads
 * carry; NULL without a gateway (or when the member holds a waypoint). */
static Istio__Workload__GatewayAddress *wl_gateway(const model_gw_addr_t *g,
                                                   Google__Protobuf__UInt32Value **cap, parts_t *p)
{
    if (!g || g->waypoint)
        return NULL;
    if (g->capacity) {
        google__protobuf__uint32_value__init(&p->cap);
        p->cap.value = g->capacity;
        *cap = &p->cap;
    }
    return gw_address(g, p);
}

static uint8_t *pack_address(Istio__Workload__Address *a, size_t *len)
{
    *len = istio__workload__address__get_packed_size(a);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        istio__workload__address__pack(a, buf);
    return buf;
}

/* Field f of w into member pb of the Workload m, as its kind says (see
 * MODEL_WORKLOAD_FIELDS); the helpers' allocations go to p. */
#define WL_ENC(kind, f, pb, json) WL_ENC_##kind(f, pb)
#define WL_ENC_STR(f, pb) m.pb = s(w->f);
#define WL_ENC_SSTR(f, pb) m.pb = s(w->f);
#define WL_ENC_LOC(f, pb)                                                                          \
    if (w->f) {                                                                                    \
        p.loc.pb = (char *)w->f;                                                                   \
        m.locality = &p.loc;                                                                       \
    }
#define WL_ENC_IPS(f, pb)                                                                          \
    if (wl_addrs(w->f, w->n##f, &m.n_##pb, &m.pb, &p) < 0)                                         \
        goto out;
#define WL_ENC_SVCS(f, pb)                                                                         \
    if (wl_services(w->f, w->n##f, &m.n_##pb, &m.pb, &p) < 0)                                      \
        goto out;
#define WL_ENC_GW(f, pb) m.pb = wl_gateway(w->f, &m.capacity, &p);
#define WL_ENC_WP(f, pb) m.pb = w->f && w->f->waypoint ? gw_address(w->f, &p) : NULL;
#define WL_ENC_TUNNEL(f, pb) m.pb = (Istio__Workload__TunnelProtocol)w->f;
#define WL_ENC_FLAG(f, pb) m.pb = w->f;
#define WL_ENC_NETMODE(f, pb)                                                                      \
    m.pb = w->f ? ISTIO__WORKLOAD__NETWORK_MODE__HOST_NETWORK                                      \
                : ISTIO__WORKLOAD__NETWORK_MODE__STANDARD;
#define WL_ENC_WLTYPE(f, pb) m.pb = (Istio__Workload__WorkloadType)w->f;
#define WL_ENC_STATUS(f, pb)                                                                       \
    m.pb = w->f ? ISTIO__WORKLOAD__WORKLOAD_STATUS__HEALTHY                                        \
                : ISTIO__WORKLOAD__WORKLOAD_STATUS__UNHEALTHY;
#define WL_ENC_KEYS(f, pb)                                                                         \
    if (wl_keys(w->f, &m.n_##pb, &m.pb, &p) < 0)                                                   \
        goto out;

static uint8_t *encode_workload(const model_out_workload_t *w, size_t *len)
{
    Istio__Workload__Workload m = ISTIO__WORKLOAD__WORKLOAD__INIT;
    parts_t p = {.loc = ISTIO__WORKLOAD__LOCALITY__INIT};
    uint8_t *buf = NULL;

    MODEL_WORKLOAD_FIELDS(WL_ENC)
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
    a.workload = &m;
    buf = pack_address(&a, len);
out:
    parts_free(&p);
    return buf;
}

static int svc_addrs(const model_net_addr_t *addrs, size_t n, size_t *np,
                     Istio__Workload__NetworkAddress ***out, parts_t *p)
{
    p->na = calloc(n + 1, sizeof(*p->na));
    p->nap = calloc(n + 1, sizeof(*p->nap));
    if (!p->na || !p->nap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        istio__workload__network_address__init(&p->na[i]);
        p->na[i].network = s(addrs[i].network);
        p->na[i].address.data = (uint8_t *)addrs[i].ip.b;
        p->na[i].address.len = addrs[i].ip.len;
        p->nap[i] = &p->na[i];
    }
    *np = n;
    *out = p->nap;
    return 0;
}

static int svc_ports(const model_port_pair_t *ports, size_t n, size_t *np,
                     Istio__Workload__Port ***out, parts_t *p)
{
    p->sports = ports_new(ports, n);
    p->sportp = ptrs(p->sports, n);
    if (!p->sports || !p->sportp)
        return -1;
    *np = n;
    *out = p->sportp;
    return 0;
}

/* load_balancing, NULL when nothing in it differs from the default. */
static Istio__Workload__LoadBalancing *svc_lb(model_lb_mode_t mode, const model_lb_scope_t *prefs,
                                              size_t nprefs, bool allow_all, parts_t *p)
{
    if (mode == MODEL_LB_UNSPECIFIED && !allow_all)
        return NULL;
    size_t n = nprefs < 6 ? nprefs : 6;
    istio__workload__load_balancing__init(&p->lb);
    for (size_t i = 0; i < n; i++)
        p->prefs[i] = (Istio__Workload__LoadBalancing__Scope)prefs[i];
    p->lb.mode = (Istio__Workload__LoadBalancing__Mode)mode;
    p->lb.n_routing_preference = n;
    p->lb.routing_preference = p->prefs;
    p->lb.health_policy = allow_all ? ISTIO__WORKLOAD__LOAD_BALANCING__HEALTH_POLICY__ALLOW_ALL
                                    : ISTIO__WORKLOAD__LOAD_BALANCING__HEALTH_POLICY__ONLY_HEALTHY;
    return &p->lb;
}

/* Field f of o into member pb of the Service m (see MODEL_SERVICE_FIELDS). */
#define SVC_ENC(kind, f, pb, json) SVC_ENC_##kind(f, pb)
#define SVC_ENC_STR(f, pb) m.pb = s(o->f);
#define SVC_ENC_TRUE(f, pb) m.pb = 1;
#define SVC_ENC_NETADDRS(f, pb)                                                                    \
    if (svc_addrs(o->f, o->n##f, &m.n_##pb, &m.pb, &p) < 0)                                        \
        goto out;
#define SVC_ENC_PORTS(f, pb)                                                                       \
    if (svc_ports(o->f, o->n##f, &m.n_##pb, &m.pb, &p) < 0)                                        \
        goto out;
#define SVC_ENC_PORT_NAMES(f, pb)
#define SVC_ENC_SANS(f, pb)                                                                        \
    m.n_##pb = o->n##f;                                                                            \
    m.pb = (char **)o->f;
#define SVC_ENC_LB(f, pb)                                                                          \
    m.pb = svc_lb(o->f##_mode, o->f##_prefs, o->n##f##_prefs, o->f##_allow_all, &p);
#define SVC_ENC_IPF(f, pb) m.pb = (Istio__Workload__IPFamilies)o->f;
#define SVC_ENC_GW(f, pb) m.pb = gw_address(o->f, &p);
/* the primary is the Service's waypoint member */
#define SVC_ENC_CANARY(f, pb) m.n_##pb = svc_weighted(o->waypoint, o->f, o->f##_weight, &m.pb, &p);
#define SVC_ENC_FLAG(f, pb) m.pb = o->f;

static uint8_t *encode_service(const model_out_service_t *o, size_t *len)
{
    Istio__Workload__Service m = ISTIO__WORKLOAD__SERVICE__INIT;
    parts_t p = {0};
    uint8_t *buf = NULL;

    MODEL_SERVICE_FIELDS(SVC_ENC)
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE;
    a.service = &m;
    buf = pack_address(&a, len);
out:
    parts_free(&p);
    return buf;
}

static void enc_free(void *p)
{
    xds_enc_t *e = p;
    if (e)
        free(e->buf);
    free(e);
}

static size_t varint_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A length-delimited field: tag byte, length, and the bytes (NULL: just the
 * header, the caller writes the body). */
static uint8_t *put_field(uint8_t *p, uint8_t tag, const void *b, size_t n)
{
    *p++ = tag;
    p = put_varint(p, n);
    if (b) {
        memcpy(p, b, n);
        p += n;
    }
    return p;
}

#define FIELD_LEN(n) (1 + varint_len(n) + (n))

/* Wraps the resource bytes val (len n) of type_url as described at
 * xds_enc_t. */
static int wrap(xds_enc_t *e, const char *type_url, const char *name, const uint8_t *val, size_t n)
{
    size_t tlen = strlen(type_url), nlen = strlen(name);
    size_t any = FIELD_LEN(tlen) + FIELD_LEN(n);
    size_t res = FIELD_LEN(16) + FIELD_LEN(nlen) + FIELD_LEN(any);
    e->len = FIELD_LEN(res);
    if (!(e->buf = malloc(e->len)))
        return -1;
    uint8_t *p = put_field(e->buf, 0x12, NULL, res); /* resources = 2 */
    p = put_field(p, 0x0a, e->version, 16);          /* Resource.version = 1 */
    p = put_field(p, 0x1a, name, nlen);              /* Resource.name = 3 */
    e->any_off = (size_t)(p - e->buf);
    p = put_field(p, 0x12, NULL, any);      /* Resource.resource = 2 */
    p = put_field(p, 0x0a, type_url, tlen); /* Any.type_url = 1 */
    p = put_field(p, 0x12, NULL, n);        /* Any.value = 2 */
    e->val_off = (size_t)(p - e->buf);
    memcpy(p, val, n);
    return 0;
}

/* The cached encoding of r, building it on first use. NULL: out of memory. */
static const xds_enc_t *enc_get(const model_res_t *r)
{
    xds_enc_t *e = model_res_cache(r);
    if (e)
        return e;
    /* workloads and services are Addresses, and Authorizations have their
     * own type; other kinds have their own encoders and may use the cache
     * slot themselves */
    bool authz = model_res_kind(r) == MODEL_RES_AUTHZ;
    if (!xds_res_is_address(r) && !authz)
        return NULL;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    size_t n = 0;
    uint8_t *val = authz ? xds_encode_authz(model_res_authz(r), &n)
                   : model_res_kind(r) == MODEL_RES_WORKLOAD
                       ? encode_workload(model_res_workload(r), &n)
                       : encode_service(model_res_service(r), &n);
    if (val)
        snprintf(e->version, sizeof(e->version), "%016llx", (unsigned long long)base_hash(val, n));
    if (!val ||
        wrap(e, authz ? XDS_TYPE_AUTHORIZATION : XDS_TYPE_ADDRESS, model_res_name(r), val, n) < 0) {
        free(val);
        free(e);
        return NULL;
    }
    free(val);
    /* another thread may have won the race: use whichever is in the slot */
    return model_res_cache_set(r, e, enc_free);
}

bool xds_res_is_address(const model_res_t *r)
{
    model_res_kind_t k = model_res_kind(r);
    return k == MODEL_RES_WORKLOAD || k == MODEL_RES_SERVICE;
}

const uint8_t *xds_encode_address(const model_res_t *r, size_t *len)
{
    const xds_enc_t *e = enc_get(r);
    *len = e ? e->len - e->val_off : 0;
    return e ? e->buf + e->val_off : NULL;
}

const uint8_t *xds_encode_entry(const model_res_t *r, bool delta, size_t *len)
{
    const xds_enc_t *e = enc_get(r);
    size_t off = e ? (delta ? 0 : e->any_off) : 0;
    *len = e ? e->len - off : 0;
    return e ? e->buf + off : NULL;
}

const char *xds_address_version(const model_res_t *r)
{
    const xds_enc_t *e = enc_get(r);
    return e ? e->version : NULL;
}
