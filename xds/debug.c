/*
 * debug.c - the debug type istio.io/debug/syncz on a SotW ADS stream: what
 * every proxy connected to this replica holds, per type, as
 * envoy.service.status.v3.ClientConfig resources, which is what
 * `istioctl proxy-status --xds-address` asks istiod for (istio/istio
 * pilot/pkg/xds/statusgen.go). Debug clients are not listed themselves.
 * Runs on the server threads with srv->mu held.
 */
#include "envoy.h"
#include "xds_int.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "envoy/service/status/v3/csds.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Status__V3__ClientConfig client_config_t;
typedef Envoy__Service__Status__V3__ClientConfig__GenericXdsConfig generic_t;

bool xds_debug_is_type(const char *type_url)
{
    return type_url && strcmp(type_url, XDS_TYPE_DEBUG_SYNCZ) == 0;
}

void xds_debug_on_sotw(xds_stream_t *st, const char *nonce)
{
    if (nonce && *nonce)
        return; /* an ACK: the answer is only ever a reply to a question */
    st->debug_want = true;
}

/* istioctl's reading of a type's state (statusgen.go debugSyncStatus). */
static Envoy__Service__Status__V3__ConfigStatus status_of(const xds_type_state_t *ts)
{
    if (ts->nonce[0])
        return ENVOY__SERVICE__STATUS__V3__CONFIG_STATUS__STALE;
    if (!ts->version_sent)
        return ENVOY__SERVICE__STATUS__V3__CONFIG_STATUS__NOT_SENT;
    if (ts->version_acked == ts->version_sent)
        return ENVOY__SERVICE__STATUS__V3__CONFIG_STATUS__SYNCED;
    return ENVOY__SERVICE__STATUS__V3__CONFIG_STATUS__ERROR; /* the last one was NACKed */
}

/* The namespace of a node id "type~ip~pod.ns~ns.svc.domain". */
static void ns_of(const char *id, char *buf, size_t len)
{
    buf[0] = '\0';
    const char *a = strchr(id, '~'), *b = a ? strchr(a + 1, '~') : NULL;
    const char *dot = b ? strchr(b + 1, '.') : NULL, *end = dot ? strchr(dot, '~') : NULL;
    if (dot && end && end > dot + 1)
        snprintf(buf, len, "%.*s", (int)(end - dot - 1), dot + 1);
}

/* One field of the node metadata istioctl parses. */
static void meta_field(Google__Protobuf__Struct__FieldsEntry *e, Google__Protobuf__Value *v,
                       const char *key, const char *val)
{
    google__protobuf__struct__fields_entry__init(e);
    google__protobuf__value__init(v);
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)val;
    e->key = (char *)key;
    e->value = v;
}

/* p's ClientConfig, packed into any (value malloc'ed). 0 or -1. */
static int client_config(const xds_stream_t *p, Google__Protobuf__Any *any)
{
    const xds_type_state_t *ts[2 + XDS_ENVOY_NTYPES] = {&p->addr, &p->auth};
    const char *urls[2 + XDS_ENVOY_NTYPES] = {XDS_TYPE_ADDRESS, XDS_TYPE_AUTHORIZATION};
    static const xds_type_state_t none; /* an Envoy type a ztunnel never asked for */
    for (int t = 0; t < XDS_ENVOY_NTYPES; t++) {
        ts[2 + t] = p->envoy ? &p->envoy[t] : &none;
        urls[2 + t] = xds_envoy_type_url((xds_envoy_type_t)t);
    }
    generic_t g[2 + XDS_ENVOY_NTYPES], *gp[2 + XDS_ENVOY_NTYPES];
    char ver[2 + XDS_ENVOY_NTYPES][24];
    size_t n = 0;
    for (size_t i = 0; i < 2 + XDS_ENVOY_NTYPES; i++) {
        if (!ts[i]->subscribed)
            continue;
        envoy__service__status__v3__client_config__generic_xds_config__init(&g[n]);
        snprintf(ver[n], sizeof(ver[n]), "%" PRIu64, ts[i]->version_sent);
        g[n].type_url = (char *)urls[i];
        g[n].version_info = ver[n];
        g[n].config_status = status_of(ts[i]);
        gp[n] = &g[n];
        n++;
    }
    char ns[256];
    ns_of(p->node_id, ns, sizeof(ns));
    Google__Protobuf__Struct__FieldsEntry f[3], *fp[3] = {&f[0], &f[1], &f[2]};
    Google__Protobuf__Value v[3];
    meta_field(&f[0], &v[0], "CLUSTER_ID", p->cluster);
    meta_field(&f[1], &v[1], "NAMESPACE", ns);
    meta_field(&f[2], &v[2], "ISTIO_VERSION", p->istio_version ? p->istio_version : "");
    Google__Protobuf__Struct md = GOOGLE__PROTOBUF__STRUCT__INIT;
    md.n_fields = 3;
    md.fields = fp;
    Envoy__Config__Core__V3__Node node;
    envoy__config__core__v3__node__init(&node);
    node.id = p->node_id;
    node.metadata = &md;
    client_config_t cc;
    envoy__service__status__v3__client_config__init(&cc);
    cc.node = &node;
    cc.n_generic_xds_configs = n;
    cc.generic_xds_configs = gp;
    google__protobuf__any__init(any);
    any->type_url = (char *)XDS_TYPE_CLIENT_CONFIG;
    any->value.len = envoy__service__status__v3__client_config__get_packed_size(&cc);
    if (!(any->value.data = malloc(any->value.len ? any->value.len : 1)))
        return -1;
    envoy__service__status__v3__client_config__pack(&cc, any->value.data);
    return 0;
}

void xds_debug_pump(xds_stream_t *st)
{
    if (!st->debug_want || st->sending)
        return;
    st->debug_want = false;
    xds_server_t *s = st->srv;
    size_t cap = s->nstreams + 1, n = 0;
    Google__Protobuf__Any *any = calloc(cap, sizeof(*any));
    Google__Protobuf__Any **anyp = calloc(cap, sizeof(*anyp));
    uint8_t *buf = NULL;
    for (xds_stream_t *p = s->streams; any && anyp && p && n < cap; p = p->next) {
        if (p == st || p->debug || !p->open || !p->node_id || !p->authed)
            continue;
        if (client_config(p, &any[n]) == 0) {
            anyp[n] = &any[n];
            n++;
        }
    }
    Envoy__Config__Core__V3__ControlPlane cp;
    envoy__config__core__v3__control_plane__init(&cp);
    cp.identifier = s->control_plane;
    Envoy__Service__Discovery__V3__DiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    char ver[24];
    snprintf(ver, sizeof(ver), "%" PRIu64, s->snap ? model_snapshot_version(s->snap) : 0);
    xds_next_nonce(st, st->debug_nonce);
    r.version_info = ver;
    r.type_url = (char *)XDS_TYPE_DEBUG_SYNCZ;
    r.nonce = st->debug_nonce;
    r.n_resources = n;
    r.resources = anyp;
    r.control_plane = &cp;
    size_t len = envoy__service__discovery__v3__discovery_response__get_packed_size(&r);
    if (any && anyp && (buf = malloc(len ? len : 1))) {
        envoy__service__discovery__v3__discovery_response__pack(&r, buf);
        s->stats.resources_sent += n;
        s->stats.pushes_by_kind[XDS_PUSH_DEBUG]++;
        xds_stream_send(st, buf, len);
    }
    for (size_t i = 0; i < n; i++)
        free(any[i].value.data);
    free(any);
    free(anyp);
}
