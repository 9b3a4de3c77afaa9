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

/* Everything a Workload message points at, freed together after packing. */
typedef struct wl_parts {
    ProtobufCBinaryData *addrs;
    Istio__Workload__Workload__ServicesEntry *ents, **entp;
    Istio__Workload__PortList *lists;
    Istio__Workload__Port **ports; /* per service: contiguous Port array */
    Istio__Workload__Port ***portp;
    size_t nsvc;
} wl_parts_t;

static void wl_parts_free(wl_parts_t *p)
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
}

static int wl_services(const model_out_workload_t *w, Istio__Workload__Workload *m, wl_parts_t *p)
{
    size_t n = w->nservices;
    p->nsvc = n;
    p->ents = calloc(n + 1, sizeof(*p->ents));
    p->entp = calloc(n + 1, sizeof(*p->entp));
    p->lists = calloc(n + 1, sizeof(*p->lists));
    p->ports = calloc(n + 1, sizeof(*p->ports));
    p->portp = calloc(n + 1, sizeof(*p->portp));
    if (!p->ents || !p->entp || !p->lists || !p->ports || !p->portp)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const model_wl_service_t *ws = &w->services[i];
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
    m->n_services = n;
    m->services = p->entp;
    return 0;
}

static uint8_t *pack_address(Istio__Workload__Address *a, size_t *len)
{
    *len = istio__workload__address__get_packed_size(a);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        istio__workload__address__pack(a, buf);
    return buf;
}

static uint8_t *encode_workload(const model_out_workload_t *w, size_t *len)
{
    Istio__Workload__Workload m = ISTIO__WORKLOAD__WORKLOAD__INIT;
    Istio__Workload__Locality loc = ISTIO__WORKLOAD__LOCALITY__INIT;
    Istio__Workload__GatewayAddress gw = ISTIO__WORKLOAD__GATEWAY_ADDRESS__INIT;
    Istio__Workload__NetworkAddress gwa = ISTIO__WORKLOAD__NETWORK_ADDRESS__INIT;
    Istio__Workload__NamespacedHostname gwh = ISTIO__WORKLOAD__NAMESPACED_HOSTNAME__INIT;
    Google__Protobuf__UInt32Value cap = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
    wl_parts_t p = {0};
    uint8_t *buf = NULL;

    m.uid = s(w->uid);
    m.name = s(w->name);
    m.namespace_ = s(w->ns);
    m.network = s(w->network);
    m.trust_domain = s(w->trust_domain);
    m.service_account = s(w->service_account);
    m.node = s(w->node);
    m.cluster_id = s(w->cluster_id);
    m.canonical_name = s(w->canonical_name);
    m.canonical_revision = s(w->canonical_revision);
    m.workload_name = s(w->workload_name);
    m.workload_type = (Istio__Workload__WorkloadType)w->workload_type;
    m.status = w->healthy ? ISTIO__WORKLOAD__WORKLOAD_STATUS__HEALTHY
                          : ISTIO__WORKLOAD__WORKLOAD_STATUS__UNHEALTHY;
    m.tunnel_protocol = (Istio__Workload__TunnelProtocol)w->tunnel;
    m.native_tunnel = w->native_tunnel;
    m.network_mode = w->host_network ? ISTIO__WORKLOAD__NETWORK_MODE__HOST_NETWORK
                                     : ISTIO__WORKLOAD__NETWORK_MODE__STANDARD;
    m.hostname = s(w->hostname);
    p.addrs = calloc(w->naddrs + 1, sizeof(*p.addrs));
    if (!p.addrs)
        goto out;
    for (size_t i = 0; i < w->naddrs; i++) {
        p.addrs[i].data = (uint8_t *)w->addrs[i].b;
        p.addrs[i].len = w->addrs[i].len;
    }
    m.n_addresses = w->naddrs;
    m.addresses = p.addrs;
    if (w->region || w->zone || w->subzone) {
        loc.region = s(w->region);
        loc.zone = s(w->zone);
        loc.subzone = s(w->subzone);
        m.locality = &loc;
    }
    if (w->gateway && w->gateway->hostname) {
        gwh.namespace_ = s(w->gateway->ns);
        gwh.hostname = s(w->gateway->hostname);
        gw.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME;
        gw.hostname = &gwh;
    } else if (w->gateway) {
        gwa.network = s(w->gateway->network);
        gwa.address.data = (uint8_t *)w->gateway->ip.b;
        gwa.address.len = w->gateway->ip.len;
        gw.destination_case = ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_ADDRESS;
        gw.address = &gwa;
    }
    if (w->gateway) {
        gw.hbone_mtls_port = w->gateway->hbone_port ? w->gateway->hbone_port : 15008;
        m.network_gateway = &gw;
    }
    if (w->gateway && w->gateway->capacity) {
        cap.value = w->gateway->capacity;
        m.capacity = &cap;
    }
    if (wl_services(w, &m, &p) == 0) {
        Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
        a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD;
        a.workload = &m;
        buf = pack_address(&a, len);
    }
out:
    wl_parts_free(&p);
    return buf;
}

static uint8_t *encode_service(const model_out_service_t *o, size_t *len)
{
    Istio__Workload__Service m = ISTIO__WORKLOAD__SERVICE__INIT;
    Istio__Workload__LoadBalancing lb = ISTIO__WORKLOAD__LOAD_BALANCING__INIT;
    Istio__Workload__LoadBalancing__Scope prefs[6];
    Istio__Workload__NetworkAddress *na = calloc(o->naddrs + 1, sizeof(*na));
    Istio__Workload__NetworkAddress **nap = calloc(o->naddrs + 1, sizeof(*nap));
    Istio__Workload__Port *ports = ports_new(o->ports, o->nports);
    Istio__Workload__Port **portp = ptrs(ports, o->nports);
    uint8_t *buf = NULL;

    if (!na || !nap || !ports || !portp)
        goto out;
    m.name = s(o->name);
    m.namespace_ = s(o->ns);
    m.hostname = s(o->hostname);
    for (size_t i = 0; i < o->naddrs; i++) {
        istio__workload__network_address__init(&na[i]);
        na[i].network = s(o->addrs[i].network);
        na[i].address.data = (uint8_t *)o->addrs[i].ip.b;
        na[i].address.len = o->addrs[i].ip.len;
        nap[i] = &na[i];
    }
    m.n_addresses = o->naddrs;
    m.addresses = nap;
    m.n_ports = o->nports;
    m.ports = portp;
    m.canonical = 1; /* a Kubernetes Service owns its hostname, as istiod marks it */
    m.n_subject_alt_names = o->nsans;
    m.subject_alt_names = (char **)o->sans;
    if (o->lb_mode != MODEL_LB_UNSPECIFIED || o->lb_allow_all) {
        size_t n = o->nlb_prefs < 6 ? o->nlb_prefs : 6;
        for (size_t i = 0; i < n; i++)
            prefs[i] = (Istio__Workload__LoadBalancing__Scope)o->lb_prefs[i];
        lb.mode = (Istio__Workload__LoadBalancing__Mode)o->lb_mode;
        lb.n_routing_preference = n;
        lb.routing_preference = prefs;
        lb.health_policy = o->lb_allow_all
                               ? ISTIO__WORKLOAD__LOAD_BALANCING__HEALTH_POLICY__ALLOW_ALL
                               : ISTIO__WORKLOAD__LOAD_BALANCING__HEALTH_POLICY__ONLY_HEALTHY;
        m.load_balancing = &lb;
    }
    m.ip_families = (Istio__Workload__IPFamilies)o->ip_families;
    Istio__Workload__Address a = ISTIO__WORKLOAD__ADDRESS__INIT;
    a.type_case = ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE;
    a.service = &m;
    buf = pack_address(&a, len);
out:
    free(na);
    free(nap);
    free(ports);
    free(portp);
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

/* Wraps the Address bytes val (len n) as described at xds_enc_t. */
static int wrap(xds_enc_t *e, const char *name, const uint8_t *val, size_t n)
{
    size_t tlen = strlen(XDS_TYPE_ADDRESS), nlen = strlen(name);
    size_t any = FIELD_LEN(tlen) + FIELD_LEN(n);
    size_t res = FIELD_LEN(16) + FIELD_LEN(nlen) + FIELD_LEN(any);
    e->len = FIELD_LEN(res);
    if (!(e->buf = malloc(e->len)))
        return -1;
    uint8_t *p = put_field(e->buf, 0x12, NULL, res); /* resources = 2 */
    p = put_field(p, 0x0a, e->version, 16);          /* Resource.version = 1 */
    p = put_field(p, 0x1a, name, nlen);              /* Resource.name = 3 */
    e->any_off = (size_t)(p - e->buf);
    p = put_field(p, 0x12, NULL, any);              /* Resource.resource = 2 */
    p = put_field(p, 0x0a, XDS_TYPE_ADDRESS, tlen); /* Any.type_url = 1 */
    p = put_field(p, 0x12, NULL, n);                /* Any.value = 2 */
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
    /* only workloads and services are Addresses; other kinds have their own
     * encoders and may use the cache slot themselves */
    if (!xds_res_is_address(r))
        return NULL;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    size_t n = 0;
    uint8_t *val = model_res_kind(r) == MODEL_RES_WORKLOAD
                       ? encode_workload(model_res_workload(r), &n)
                       : encode_service(model_res_service(r), &n);
    if (val)
        snprintf(e->version, sizeof(e->version), "%016llx", (unsigned long long)base_hash(val, n));
    if (!val || wrap(e, model_res_name(r), val, n) < 0) {
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
