/*
 * test_envoy.c - the Envoy v3 resources for proxyless gRPC clients and
 * east-west gateways: every served resource is decoded and checked
 * (listener -> HCM -> RDS, route -> cluster, EDS cluster, the localities,
 * priorities and weights of a ClusterLoadAssignment), then the LDS/RDS/CDS/EDS
 * flow over a real grpc core ADS stream.
 */
#include "model/model.h"
#include "tests/lib/testcheck.h"
#include "xds/envoy.h"
#include "xds/xds.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <check.h>
#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOST_A "a.ns.svc.cluster.local"
#define CL_A "outbound|80||a.ns.svc.cluster.local"

typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment cla_t;
typedef Envoy__Config__Endpoint__V3__LocalityLbEndpoints lle_t;

/* ---------- the mesh ---------- */

static const char *const GLOBAL[] = {"istio.io/global", "true", NULL};
static const model_view_t V1 = {"c1", "n1"}, V4 = {"c4", "n1"};

static void apply(model_t *m, const char *cluster, model_kind_t k, void *obj)
{
    char err[MODEL_ERRLEN];
    ck_assert_msg(model_apply(m, cluster, k, MODEL_OP_UPSERT, obj, err, sizeof(err)) == 0, "%s",
                  err);
}

static void add_cluster(model_t *m, const char *id, const char *network, const char *gw)
{
    model_cluster_t c = {.id = id, .network = network};
    if (gw)
        ck_assert_int_eq(model_ip_parse(gw, &c.gateway), 0);
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(model_cluster_set(m, &c, err, sizeof(err)), 0);
}

static model_service_t *mk_svc(const char *name, bool global, model_traffic_dist_t td)
{
    model_service_t *s = calloc(1, sizeof(*s));
    s->ns = strdup("ns");
    s->name = strdup(name);
    for (const char *const *kv = global ? GLOBAL : NULL; kv && kv[0]; kv += 2)
        ck_assert_int_eq(model_labels_set(&s->labels, kv[0], kv[1]), 0);
    s->ports = calloc(1, sizeof(model_svc_port_t));
    s->ports[0].name = strdup("grpc");
    s->ports[0].port = 80;
    s->ports[0].target_port = 8080;
    s->nports = 1;
    s->traffic_dist = td;
    return s;
}

/* Service name in cluster with n endpoints ipbase.<i+1>:8080, the first
 * nready ready. */
static void add_svc(model_t *m, const char *cluster, const char *name, bool global,
                    model_traffic_dist_t td, const char *ipbase, int n, int nready)
{
    apply(m, cluster, MODEL_KIND_SERVICE, mk_svc(name, global, td));
    if (!n)
        return;
    model_endpointslice_t *s = tl_slice("ns", name, "grpc", 8080, ipbase, n, nready, false);
    ck_assert_ptr_nonnull(s);
    apply(m, cluster, MODEL_KIND_ENDPOINTSLICE, s);
}

/* c1, c3, c4 on n1 (c4 with no endpoints of its own), c2 on n2 behind
 * 192.0.2.2. a: global, PreferClose; b: global, no trafficDistribution;
 * l: local to c1. */
static model_snapshot_t *mesh(model_t **mp)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c2", "n2", "192.0.2.2");
    add_cluster(m, "c3", "n1", NULL);
    add_cluster(m, "c4", "n1", NULL);
    add_svc(m, "c1", "a", true, MODEL_TD_PREFER_CLOSE, "10.1.0", 3, 2);
    add_svc(m, "c3", "a", true, MODEL_TD_PREFER_CLOSE, "10.3.0", 1, 1);
    add_svc(m, "c2", "a", true, MODEL_TD_PREFER_CLOSE, "10.2.0", 4, 3);
    add_svc(m, "c1", "b", true, MODEL_TD_NONE, "10.1.1", 1, 1);
    add_svc(m, "c2", "b", true, MODEL_TD_NONE, "10.2.1", 2, 2);
    add_svc(m, "c1", "l", false, MODEL_TD_NONE, "10.1.2", 1, 1);
    *mp = m;
    return model_commit(m);
}

/* ---------- helpers ---------- */

static const xds_envoy_item_t *find(const xds_envoy_set_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0)
            return &s->items[i];
    return NULL;
}

static cla_t *get_cla(const model_snapshot_t *snap, const model_view_t *v, xds_envoy_role_t role,
                      const char *name)
{
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, v, role, XDS_EDS, NULL), 0);
    const xds_envoy_item_t *it = find(&s, name);
    ck_assert_msg(it != NULL, "no EDS %s", name);
    cla_t *c = envoy__config__endpoint__v3__cluster_load_assignment__unpack(NULL, it->len, it->buf);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->cluster_name, name);
    xds_envoy_set_free(&s);
    return c;
}

static uint32_t lle_weight(const lle_t *l)
{
    ck_assert_ptr_nonnull(l->load_balancing_weight);
    return l->load_balancing_weight->value;
}

/* The locality of c whose first endpoint has address ip. */
static const lle_t *lle_with(const cla_t *c, const char *ip)
{
    for (size_t i = 0; i < c->n_endpoints; i++)
        for (size_t j = 0; j < c->endpoints[i]->n_lb_endpoints; j++)
            if (strcmp(c->endpoints[i]->lb_endpoints[j]->endpoint->address->socket_address->address,
                       ip) == 0)
                return c->endpoints[i];
    ck_abort_msg("no endpoint %s", ip);
    return NULL;
}

/* ---------- encoding ---------- */

START_TEST(listener_route_cluster_chain)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, XDS_LDS, NULL), 0);
    ck_assert_uint_eq(s.n, 3); /* a, b, l */
    const xds_envoy_item_t *it = find(&s, HOST_A ":80");
    ck_assert_ptr_nonnull(it);
    Envoy__Config__Listener__V3__Listener *l =
        envoy__config__listener__v3__listener__unpack(NULL, it->len, it->buf);
    ck_assert_ptr_nonnull(l);
    ck_assert_str_eq(l->name, HOST_A ":80");
    ck_assert_ptr_nonnull(l->api_listener);
    ck_assert_str_eq(l->api_listener->api_listener->type_url, XDS_TYPE_HCM);
    Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager *h =
        envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__unpack(
            NULL, l->api_listener->api_listener->value.len,
            l->api_listener->api_listener->value.data);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(h->rds);
    ck_assert_str_eq(h->rds->route_config_name, HOST_A ":80");
    ck_assert_int_eq(h->rds->config_source->config_source_specifier_case,
                     ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS);
    ck_assert_int_eq(h->rds->config_source->resource_api_version,
                     ENVOY__CONFIG__CORE__V3__API_VERSION__V3);
    ck_assert_uint_eq(h->n_http_filters, 1);
    ck_assert_str_eq(h->http_filters[0]->typed_config->type_url, XDS_TYPE_ROUTER);
    envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__free_unpacked(
        h, NULL);
    envoy__config__listener__v3__listener__free_unpacked(l, NULL);
    xds_envoy_set_free(&s);

    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, XDS_RDS, NULL), 0);
    it = find(&s, HOST_A ":80");
    Envoy__Config__Route__V3__RouteConfiguration *rc =
        envoy__config__route__v3__route_configuration__unpack(NULL, it->len, it->buf);
    ck_assert_ptr_nonnull(rc);
    ck_assert_uint_eq(rc->n_virtual_hosts, 1);
    Envoy__Config__Route__V3__VirtualHost *vh = rc->virtual_hosts[0];
    ck_assert_str_eq(vh->domains[0], HOST_A ":80");
    bool short_name = false;
    for (size_t i = 0; i < vh->n_domains; i++)
        short_name |= strcmp(vh->domains[i], "a.ns:80") == 0;
    ck_assert(short_name);
    ck_assert_str_eq(vh->routes[0]->match->prefix, "/");
    ck_assert_str_eq(vh->routes[0]->route->cluster, CL_A);
    envoy__config__route__v3__route_configuration__free_unpacked(rc, NULL);
    xds_envoy_set_free(&s);

    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, XDS_CDS, NULL), 0);
    it = find(&s, CL_A);
    Envoy__Config__Cluster__V3__Cluster *c =
        envoy__config__cluster__v3__cluster__unpack(NULL, it->len, it->buf);
    ck_assert_int_eq(c->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS);
    ck_assert_str_eq(c->eds_cluster_config->service_name, CL_A);
    ck_assert_ptr_nonnull(c->eds_cluster_config->eds_config->ads);
    ck_assert_int_eq(c->lb_policy, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__ROUND_ROBIN);
    ck_assert_int_gt(c->connect_timeout->seconds, 0);
    envoy__config__cluster__v3__cluster__free_unpacked(c, NULL);
    xds_envoy_set_free(&s);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* PreferClose from c1: its own pods first; c3's pods (same network) and
 * n2's gateway (weight = its ready endpoints) only on failover. */
START_TEST(prefer_close_priorities)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    cla_t *c = get_cla(snap, &V1, XDS_ROLE_CLIENT, CL_A);
    ck_assert_uint_eq(c->n_endpoints, 3);
    const lle_t *own = lle_with(c, "10.1.0.1");
    ck_assert_uint_eq(own->priority, 0);
    ck_assert_uint_eq(own->n_lb_endpoints, 3);
    ck_assert_uint_eq(lle_weight(own), 3);
    int healthy = 0;
    for (size_t i = 0; i < own->n_lb_endpoints; i++) {
        const Envoy__Config__Endpoint__V3__LbEndpoint *e = own->lb_endpoints[i];
        ck_assert_uint_eq(e->endpoint->address->socket_address->port_value, 8080);
        ck_assert_uint_eq(e->load_balancing_weight->value, 1);
        healthy += e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY;
        if (e->health_status != ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY)
            ck_assert_int_eq(e->health_status, ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNHEALTHY);
    }
    ck_assert_int_eq(healthy, 2);
    const lle_t *peer = lle_with(c, "10.3.0.1");
    ck_assert_uint_eq(peer->priority, 1);
    ck_assert_uint_eq(peer->lb_endpoints[0]->endpoint->address->socket_address->port_value, 8080);
    const lle_t *gw = lle_with(c, "192.0.2.2");
    ck_assert_uint_eq(gw->priority, 1);
    ck_assert_uint_eq(gw->n_lb_endpoints, 1);
    ck_assert_uint_eq(gw->lb_endpoints[0]->endpoint->address->socket_address->port_value, 15008);
    ck_assert_uint_eq(gw->lb_endpoints[0]->load_balancing_weight->value, 3);
    ck_assert_uint_eq(lle_weight(gw), 3);
    /* two priority-1 localities without zones: kept apart by cluster */
    ck_assert_str_ne(peer->locality->sub_zone, gw->locality->sub_zone);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(c, NULL);

    /* c4 has no pods of its own: everything is failover, renumbered to 0 */
    c = get_cla(snap, &V4, XDS_ROLE_CLIENT, CL_A);
    for (size_t i = 0; i < c->n_endpoints; i++)
        ck_assert_uint_eq(c->endpoints[i]->priority, 0);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(c, NULL);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

START_TEST(no_traffic_distribution_one_priority)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    cla_t *c = get_cla(snap, &V1, XDS_ROLE_CLIENT, "outbound|80||b.ns.svc.cluster.local");
    ck_assert_uint_eq(c->n_endpoints, 2);
    for (size_t i = 0; i < c->n_endpoints; i++)
        ck_assert_uint_eq(c->endpoints[i]->priority, 0);
    ck_assert_uint_eq(lle_weight(lle_with(c, "192.0.2.2")), 2);
    ck_assert_uint_eq(lle_weight(lle_with(c, "10.1.1.1")), 1);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(c, NULL);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

START_TEST(by_name_and_cached)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    xds_map_t names = {0};
    xds_map_put(&names, CL_A, NULL);
    xds_map_put(&names, "outbound|81||a.ns.svc.cluster.local", NULL);
    xds_map_put(&names, "outbound|80||nope.ns.svc.cluster.local", NULL);
    xds_map_put(&names, "garbage", NULL);
    xds_envoy_set_t s, s2;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, XDS_EDS, &names), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_str_eq(s.items[0].name, CL_A);
    ck_assert_int_eq(xds_envoy_collect(&s2, snap, &V1, XDS_ROLE_CLIENT, XDS_EDS, &names), 0);
    ck_assert_ptr_eq(s.items[0].buf, s2.items[0].buf); /* encoded once */
    ck_assert_uint_eq(s.hash, s2.hash);
    xds_envoy_set_free(&s2);
    /* the local service is invisible from c2 */
    xds_map_clear(&names);
    xds_map_put(&names, "l.ns.svc.cluster.local:80", NULL);
    const model_view_t v2 = {"c2", "n2"};
    ck_assert_int_eq(xds_envoy_collect(&s2, snap, &v2, XDS_ROLE_CLIENT, XDS_LDS, &names), 0);
    ck_assert_uint_eq(s2.n, 0);
    xds_envoy_set_free(&s2);
    ck_assert_int_eq(xds_envoy_collect(&s2, snap, &V1, XDS_ROLE_CLIENT, XDS_LDS, &names), 0);
    ck_assert_uint_eq(s2.n, 1);
    xds_envoy_set_free(&s2);
    xds_envoy_set_free(&s);
    xds_map_clear(&names);
    ck_assert_int_eq(xds_envoy_type(XDS_TYPE_ENDPOINT), XDS_EDS);
    ck_assert_int_eq(xds_envoy_type(XDS_TYPE_ADDRESS), -1);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* A gateway of c1: global services only, c1's own pods only, one priority,
 * and the HBONE listener on 15008 with a virtual host per global port. */
START_TEST(gateway_view)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, XDS_CDS, NULL), 0);
    ck_assert_uint_eq(s.n, 2); /* a, b: not l */
    xds_envoy_set_free(&s);
    cla_t *c = get_cla(snap, &V1, XDS_ROLE_GATEWAY, CL_A);
    ck_assert_uint_eq(c->n_endpoints, 1);
    ck_assert_uint_eq(c->endpoints[0]->priority, 0);
    ck_assert_uint_eq(c->endpoints[0]->n_lb_endpoints, 3);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(c, NULL);

    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, XDS_LDS, NULL), 0);
    ck_assert_uint_eq(s.n, 1);
    Envoy__Config__Listener__V3__Listener *l =
        envoy__config__listener__v3__listener__unpack(NULL, s.items[0].len, s.items[0].buf);
    ck_assert_str_eq(l->name, XDS_GW_LISTENER);
    ck_assert_uint_eq(l->address->socket_address->port_value, XDS_GW_PORT);
    envoy__config__listener__v3__listener__free_unpacked(l, NULL);
    xds_envoy_set_free(&s);
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, XDS_RDS, NULL), 0);
    ck_assert_uint_eq(s.n, 1);
    Envoy__Config__Route__V3__RouteConfiguration *rc =
        envoy__config__route__v3__route_configuration__unpack(NULL, s.items[0].len, s.items[0].buf);
    ck_assert_str_eq(rc->name, XDS_GW_LISTENER);
    ck_assert_uint_eq(rc->n_virtual_hosts, 2);
    envoy__config__route__v3__route_configuration__free_unpacked(rc, NULL);
    xds_envoy_set_free(&s);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* ---------- over a real ADS stream ---------- */

#define SOTW "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
#define DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

typedef Envoy__Service__Discovery__V3__DiscoveryRequest req_t;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse resp_t;

/* Packs m and sends it on c (tests/lib's blocking client). */
static void send_msg(tl_client_t *c, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(m, buf);
    client_send(c, buf, len);
    free(buf);
}

/* A node of c1/n1 (metadata as a grpc-js-xds bootstrap gives it). */
typedef struct node {
    Envoy__Config__Core__V3__Node n;
    Google__Protobuf__Struct md;
    Google__Protobuf__Struct__FieldsEntry e[3], *ep[3];
    Google__Protobuf__Value v[3];
} node_t;

/* With role, also MESHFED_ROLE: role. */
static void node_init_role(node_t *nd, const char *id, const char *role)
{
    envoy__config__core__v3__node__init(&nd->n);
    google__protobuf__struct__init(&nd->md);
    const char *kv[3][2] = {{"CLUSTER_ID", "c1"}, {"NETWORK", "n1"}, {XDS_GW_ROLE_KEY, role}};
    int n = role ? 3 : 2;
    for (int i = 0; i < n; i++) {
        google__protobuf__value__init(&nd->v[i]);
        nd->v[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        nd->v[i].string_value = (char *)kv[i][1];
        google__protobuf__struct__fields_entry__init(&nd->e[i]);
        nd->e[i].key = (char *)kv[i][0];
        nd->e[i].value = &nd->v[i];
        nd->ep[i] = &nd->e[i];
    }
    nd->md.n_fields = (size_t)n;
    nd->md.fields = nd->ep;
    nd->n.id = (char *)id;
    nd->n.metadata = &nd->md;
}

static void node_init(node_t *nd, const char *id)
{
    node_init_role(nd, id, NULL);
}

static void sotw_req(tl_client_t *c, node_t *nd, const char *type, const char *name,
                     const char *version, const char *nonce, const char *nack)
{
    req_t r = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    r.node = nd ? &nd->n : NULL;
    r.type_url = (char *)type;
    r.version_info = (char *)(version ? version : "");
    r.response_nonce = (char *)(nonce ? nonce : "");
    char *names[1] = {(char *)name};
    r.n_resource_names = name ? 1 : 0;
    r.resource_names = names;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    if (nack) {
        st.code = 3;
        st.message = (char *)nack;
        r.error_detail = &st;
    }
    send_msg(c, &r.base);
}

static resp_t *sotw_resp(tl_client_t *c, int ms)
{
    grpc_slice sl;
    if (!tl_client_recv(c, ms, &sl))
        return NULL;
    resp_t *r = envoy__service__discovery__v3__discovery_response__unpack(
        NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    ck_assert_ptr_nonnull(r);
    return r;
}

static void publish(xds_server_t *s, model_t *m)
{
    model_snapshot_t *snap = model_commit(m);
    xds_server_publish(s, snap);
    model_snapshot_unref(snap);
}

/* A started xDS server publishing mesh()'s snapshot; the model in *m. */
static xds_server_t *serve_mesh(model_t **m)
{
    model_snapshot_t *snap = mesh(m);
    xds_config_t cfg = {.listen = "127.0.0.1:0"};
    char err[256];
    xds_server_t *s = xds_server_new(&cfg, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert_int_eq(xds_server_start(s), 0);
    xds_server_publish(s, snap);
    model_snapshot_unref(snap);
    return s;
}

static void unserve(xds_server_t *s, model_t *m)
{
    xds_server_shutdown(s, 100);
    xds_server_free(s);
    model_free(m);
}

/* LDS by name, CDS wildcard, EDS by name; ACK, NACK, and a change that
 * touches only EDS pushes only EDS, with a new version. */
START_TEST(sotw_ack_nack_versions)
{
    model_t *m;
    xds_server_t *s = serve_mesh(&m);
    tl_client_t *c = client_open(xds_server_port(s), SOTW);
    node_t nd;
    node_init(&nd, "grpc-client-1");

    sotw_req(c, &nd, XDS_TYPE_LISTENER, HOST_A ":80", NULL, NULL, NULL);
    resp_t *r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_LISTENER);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_str_eq(r->resources[0]->type_url, XDS_TYPE_LISTENER);
    ck_assert(r->nonce[0] && r->version_info[0]);
    sotw_req(c, NULL, XDS_TYPE_LISTENER, HOST_A ":80", r->version_info, r->nonce, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);

    sotw_req(c, NULL, XDS_TYPE_CLUSTER, NULL, NULL, NULL, NULL);
    r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_CLUSTER);
    ck_assert_uint_eq(r->n_resources, 3);
    sotw_req(c, NULL, XDS_TYPE_CLUSTER, NULL, r->version_info, r->nonce, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);

    sotw_req(c, NULL, XDS_TYPE_ENDPOINT, CL_A, NULL, NULL, NULL);
    r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_ENDPOINT);
    ck_assert_uint_eq(r->n_resources, 1);
    char v1[64];
    snprintf(v1, sizeof(v1), "%s", r->version_info);
    /* NACK: nothing is resent until something changes */
    sotw_req(c, NULL, XDS_TYPE_ENDPOINT, CL_A, "", r->nonce, "bad locality");
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    xds_stats_t stats;
    for (int i = 0; i < 100; i++) {
        xds_server_stats(s, &stats);
        if (stats.nacks == 1)
            break;
        usleep(10000);
    }
    ck_assert_uint_eq(stats.nacks, 1);
    ck_assert_uint_eq(stats.acks, 2);

    /* all of c1's endpoints of a become ready: only a's EDS changes */
    add_svc(m, "c1", "a", true, MODEL_TD_PREFER_CLOSE, "10.1.0", 3, 3);
    publish(s, m);
    r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_ENDPOINT);
    ck_assert_str_ne(r->version_info, v1);
    cla_t *cla = envoy__config__endpoint__v3__cluster_load_assignment__unpack(
        NULL, r->resources[0]->value.len, r->resources[0]->value.data);
    const lle_t *own = lle_with(cla, "10.1.0.1");
    for (size_t i = 0; i < own->n_lb_endpoints; i++)
        ck_assert_int_eq(own->lb_endpoints[i]->health_status,
                         ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla, NULL);
    sotw_req(c, NULL, XDS_TYPE_ENDPOINT, CL_A, r->version_info, r->nonce, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    /* neither LDS nor CDS changed: nothing else comes */
    ck_assert_ptr_null(sotw_resp(c, 500));
    tl_client_close(c);
    unserve(s, m);
}
END_TEST

/* Delta: EDS by name with a version; a change sends the new version; an
 * unknown name is reported removed. */
START_TEST(delta_eds)
{
    model_t *m;
    xds_server_t *s = serve_mesh(&m);
    tl_client_t *c = client_open(xds_server_port(s), DELTA);
    node_t nd;
    node_init(&nd, "grpc-client-2");
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    char *names[2] = {(char *)CL_A, (char *)"outbound|80||nope.ns.svc.cluster.local"};
    rq.node = &nd.n;
    rq.type_url = (char *)XDS_TYPE_ENDPOINT;
    rq.n_resource_names_subscribe = 2;
    rq.resource_names_subscribe = names;
    send_msg(c, &rq.base);
    grpc_slice sl;
    ck_assert(tl_client_recv(c, 5000, &sl));
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r =
        envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, GRPC_SLICE_LENGTH(sl),
                                                                        GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_str_eq(r->resources[0]->name, CL_A);
    ck_assert_uint_eq(r->n_removed_resources, 1);
    char v1[64];
    snprintf(v1, sizeof(v1), "%s", r->resources[0]->version);
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest ackq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    ackq.type_url = (char *)XDS_TYPE_ENDPOINT;
    ackq.response_nonce = r->nonce;
    send_msg(c, &ackq.base);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);

    add_svc(m, "c1", "a", true, MODEL_TD_PREFER_CLOSE, "10.1.0", 3, 3);
    publish(s, m);
    ck_assert(tl_client_recv(c, 5000, &sl));
    r = envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, GRPC_SLICE_LENGTH(sl),
                                                                        GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_str_ne(r->resources[0]->version, v1);
    ck_assert_uint_eq(r->n_removed_resources, 0);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    tl_client_close(c);
    unserve(s, m);
}
END_TEST

/* A gateway node (MESHFED_ROLE) gets the HBONE listener and its own
 * cluster's endpoints only. */
START_TEST(gateway_node)
{
    model_t *m;
    xds_server_t *s = serve_mesh(&m);
    tl_client_t *c = client_open(xds_server_port(s), SOTW);
    node_t nd;
    node_init_role(&nd, "istio-eastwest-1", XDS_GW_ROLE_VALUE);
    sotw_req(c, &nd, XDS_TYPE_LISTENER, NULL, NULL, NULL, NULL);
    resp_t *r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    Envoy__Config__Listener__V3__Listener *l = envoy__config__listener__v3__listener__unpack(
        NULL, r->resources[0]->value.len, r->resources[0]->value.data);
    ck_assert_str_eq(l->name, XDS_GW_LISTENER);
    envoy__config__listener__v3__listener__free_unpacked(l, NULL);
    sotw_req(c, NULL, XDS_TYPE_LISTENER, NULL, r->version_info, r->nonce, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    sotw_req(c, NULL, XDS_TYPE_ENDPOINT, CL_A, NULL, NULL, NULL);
    r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    cla_t *cla = envoy__config__endpoint__v3__cluster_load_assignment__unpack(
        NULL, r->resources[0]->value.len, r->resources[0]->value.data);
    ck_assert_uint_eq(cla->n_endpoints, 1);
    ck_assert_uint_eq(cla->endpoints[0]->n_lb_endpoints, 3); /* c1's pods only */
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    tl_client_close(c);
    unserve(s, m);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("envoy");
    TCase *t = tcase_create("encode");
    tcase_add_test(t, listener_route_cluster_chain);
    tcase_add_test(t, prefer_close_priorities);
    tcase_add_test(t, no_traffic_distribution_one_priority);
    tcase_add_test(t, by_name_and_cached);
    tcase_add_test(t, gateway_view);
    suite_add_tcase(su, t);
    t = tcase_create("stream");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, sotw_ack_nack_versions);
    tcase_add_test(t, delta_eds);
    tcase_add_test(t, gateway_node);
    suite_add_tcase(su, t);
    return su;
}

int main(void)
{
    grpc_init();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    grpc_shutdown();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
