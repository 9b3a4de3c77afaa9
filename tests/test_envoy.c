/*
 * test_envoy.c - the Envoy v3 resources for proxyless gRPC clients and
 * east-west gateways: every served resource is decoded and checked
 * (listener -> HCM -> RDS, route -> cluster, EDS cluster, the localities,
 * priorities and weights of a ClusterLoadAssignment), then the LDS/RDS/CDS/EDS
 * flow over a real grpc core ADS stream.
 */
#include "envoy.h"
#include "model.h"
#include "testcheck.h"
#include "xds.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.pb-c.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb-c.h"
#include "envoy/extensions/matching/common_inputs/network/v3/network_inputs.pb-c.h"
#include "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.pb-c.h"
#include "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.pb-c.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "xds/type/matcher/v3/ip.pb-c.h"
#include "xds/type/matcher/v3/matcher.pb-c.h"

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
#define VIP_A "inbound-vip|80|tcp|a.ns.svc.cluster.local"
#define VIP_B "inbound-vip|80|tcp|b.ns.svc.cluster.local"
#define ORIG_DST "envoy.filters.listener.original_dst"

typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment cla_t;
typedef Envoy__Config__Endpoint__V3__LocalityLbEndpoints lle_t;

/* ---------- the mesh ---------- */

static const char *const GLOBAL[] = {"istio.io/global", "true", NULL};
static const model_view_t V1 = {"c1", "n1"}, V4 = {"c4", "n1"};

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
    /* a VIP per name: 10.96.0.<first letter - 'a' + 1> */
    s->cluster_ips = calloc(1, sizeof(model_ip_t));
    char vip[32];
    snprintf(vip, sizeof(vip), "10.96.0.%d", name[0] - 'a' + 1);
    ck_assert_int_eq(model_ip_parse(vip, &s->cluster_ips[0]), 0);
    s->ncluster_ips = 1;
    return s;
}

/* Service name in cluster with n endpoints ipbase.<i+1>:8080, the first
 * nready ready. */
static void add_svc(model_t *m, const char *cluster, const char *name, bool global,
                    model_traffic_dist_t td, const char *ipbase, int n, int nready)
{
    tl_ensure_namespace(m, cluster, "ns");
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
    ck_assert_int_eq(xds_envoy_collect(&s, snap, v, role, NULL, XDS_EDS, NULL), 0);
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
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, NULL, XDS_LDS, NULL), 0);
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

    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, NULL, XDS_RDS, NULL), 0);
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

    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, NULL, XDS_CDS, NULL), 0);
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
    base_map_t names = {0};
    base_map_put(&names, CL_A, BASE_MAP_SET);
    base_map_put(&names, "outbound|81||a.ns.svc.cluster.local", BASE_MAP_SET);
    base_map_put(&names, "outbound|80||nope.ns.svc.cluster.local", BASE_MAP_SET);
    base_map_put(&names, "garbage", BASE_MAP_SET);
    xds_envoy_set_t s, s2;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_CLIENT, NULL, XDS_EDS, &names), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_str_eq(s.items[0].name, CL_A);
    ck_assert_int_eq(xds_envoy_collect(&s2, snap, &V1, XDS_ROLE_CLIENT, NULL, XDS_EDS, &names), 0);
    ck_assert_ptr_eq(s.items[0].buf, s2.items[0].buf); /* encoded once */
    ck_assert_uint_eq(s.hash, s2.hash);
    xds_envoy_set_free(&s2);
    /* the local service is invisible from c2 */
    base_map_destroy(&names, NULL);
    base_map_put(&names, "l.ns.svc.cluster.local:80", BASE_MAP_SET);
    const model_view_t v2 = {"c2", "n2"};
    ck_assert_int_eq(xds_envoy_collect(&s2, snap, &v2, XDS_ROLE_CLIENT, NULL, XDS_LDS, &names), 0);
    ck_assert_uint_eq(s2.n, 0);
    xds_envoy_set_free(&s2);
    ck_assert_int_eq(xds_envoy_collect(&s2, snap, &V1, XDS_ROLE_CLIENT, NULL, XDS_LDS, &names), 0);
    ck_assert_uint_eq(s2.n, 1);
    xds_envoy_set_free(&s2);
    xds_envoy_set_free(&s);
    base_map_destroy(&names, NULL);
    ck_assert_int_eq(xds_envoy_type(XDS_TYPE_ENDPOINT), XDS_EDS);
    ck_assert_int_eq(xds_envoy_type(XDS_TYPE_ADDRESS), -1);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* ---------- the east-west gateway ---------- */

typedef Envoy__Config__Listener__V3__Listener listener_t;
typedef Envoy__Config__Cluster__V3__Cluster cluster_t;
typedef Xds__Type__Matcher__V3__Matcher matcher_t;

/* Decoded messages of one test, freed by gc_free(). */
static ProtobufCMessage *gc[256];
static size_t ngc;

static void *keep(void *m)
{
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_lt(ngc, 256);
    gc[ngc++] = m;
    return m;
}

static void gc_free(void)
{
    while (ngc)
        protobuf_c_message_free_unpacked(gc[--ngc], NULL);
}

/* The message of type d in a, whose type URL must say so. */
static void *any_as(const Google__Protobuf__Any *a, const ProtobufCMessageDescriptor *d)
{
    char url[256];
    ck_assert_ptr_nonnull(a);
    snprintf(url, sizeof(url), "type.googleapis.com/%s", d->name);
    ck_assert_str_eq(a->type_url, url);
    return keep(protobuf_c_message_unpack(d, NULL, a->value.len, a->value.data));
}

/* Resource name of type t in the gateway's view V1 (trust domain
 * example.org), decoded as d; the set's names in *names if asked. */
static void *gw_get(const model_snapshot_t *snap, xds_envoy_type_t t, const char *name,
                    const ProtobufCMessageDescriptor *d)
{
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, "example.org", t, NULL), 0);
    const xds_envoy_item_t *it = find(&s, name);
    ck_assert_msg(it != NULL, "no %s", name);
    void *m = keep(protobuf_c_message_unpack(d, NULL, it->len, it->buf));
    xds_envoy_set_free(&s);
    return m;
}

static void check_sds(const Envoy__Extensions__TransportSockets__Tls__V3__SdsSecretConfig *s,
                      const char *name)
{
    ck_assert_str_eq(s->name, name);
    const Envoy__Config__Core__V3__ApiConfigSource *api = s->sds_config->api_config_source;
    ck_assert_ptr_nonnull(api);
    ck_assert_int_eq(api->api_type, ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__GRPC);
    ck_assert_int_eq(api->transport_api_version, ENVOY__CONFIG__CORE__V3__API_VERSION__V3);
    ck_assert(api->set_node_on_first_message_only);
    ck_assert_uint_eq(api->n_grpc_services, 1);
    ck_assert_str_eq(api->grpc_services[0]->envoy_grpc->cluster_name, "sds-grpc");
    ck_assert_int_eq(s->sds_config->resource_api_version, ENVOY__CONFIG__CORE__V3__API_VERSION__V3);
    ck_assert_ptr_nonnull(s->sds_config->initial_fetch_timeout);
}

/* mTLS: client certificate required, istio-agent's secrets, h2, TLS 1.3,
 * peers of the trust domain only. */
static void check_hbone_tls(const Envoy__Config__Core__V3__TransportSocket *ts)
{
    ck_assert_str_eq(ts->name, "tls");
    Envoy__Extensions__TransportSockets__Tls__V3__DownstreamTlsContext *d =
        any_as(ts->typed_config,
               &envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__descriptor);
    ck_assert(d->require_client_certificate && d->require_client_certificate->value);
    const Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext *c = d->common_tls_context;
    ck_assert_uint_eq(c->n_tls_certificate_sds_secret_configs, 1);
    check_sds(c->tls_certificate_sds_secret_configs[0], "default");
    check_sds(c->combined_validation_context->validation_context_sds_secret_config, "ROOTCA");
    const Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext *v =
        c->combined_validation_context->default_validation_context;
    ck_assert_uint_eq(v->n_match_typed_subject_alt_names, 1);
    ck_assert_int_eq(
        v->match_typed_subject_alt_names[0]->san_type,
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SUBJECT_ALT_NAME_MATCHER__SAN_TYPE__URI);
    ck_assert_str_eq(v->match_typed_subject_alt_names[0]->matcher->prefix, "spiffe://example.org/");
    ck_assert_uint_eq(c->n_alpn_protocols, 1);
    ck_assert_str_eq(c->alpn_protocols[0], "h2");
    ck_assert_int_eq(
        c->tls_params->tls_minimum_protocol_version,
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__TLS_PARAMETERS__TLS_PROTOCOL__TLSv1_3);
    ck_assert_int_eq(
        c->tls_params->tls_maximum_protocol_version,
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__TLS_PARAMETERS__TLS_PROTOCOL__TLSv1_3);
}

/* set_filter_state: key <- format, shared once with main_internal. */
static void check_state(const Envoy__Extensions__Filters__Http__SetFilterState__V3__Config *c,
                        const char *key, const char *format)
{
    for (size_t i = 0; i < c->n_on_request_headers; i++) {
        const Envoy__Extensions__Filters__Common__SetFilterState__V3__FilterStateValue *v =
            c->on_request_headers[i];
        if (strcmp(v->object_key, key) != 0)
            continue;
        ck_assert_str_eq(v->format_string->text_format_source->inline_string, format);
        ck_assert_int_eq(
            v->shared_with_upstream,
            ENVOY__EXTENSIONS__FILTERS__COMMON__SET_FILTER_STATE__V3__FILTER_STATE_VALUE__SHARED_WITH_UPSTREAM__ONCE);
        return;
    }
    ck_abort_msg("no filter state %s", key);
}

static void check_hcm(
    const Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager *h)
{
    ck_assert_str_eq(h->stat_prefix, XDS_GW_CONNECT_TERMINATE);
    const Envoy__Config__Route__V3__RouteConfiguration *rc = h->route_config;
    ck_assert_ptr_nonnull(rc); /* inline: no RDS */
    ck_assert_str_eq(rc->name, "default");
    ck_assert_uint_eq(rc->n_virtual_hosts, 1);
    ck_assert_str_eq(rc->virtual_hosts[0]->name, "default");
    ck_assert_uint_eq(rc->virtual_hosts[0]->n_domains, 1);
    ck_assert_str_eq(rc->virtual_hosts[0]->domains[0], "*");
    ck_assert_uint_eq(rc->virtual_hosts[0]->n_routes, 1);
    const Envoy__Config__Route__V3__Route *r = rc->virtual_hosts[0]->routes[0];
    ck_assert_ptr_nonnull(r->match->connect_matcher);
    ck_assert_str_eq(r->route->cluster, XDS_GW_MAIN_INTERNAL);
    ck_assert_uint_eq(r->route->n_upgrade_configs, 1);
    ck_assert_str_eq(r->route->upgrade_configs[0]->upgrade_type, "CONNECT");
    ck_assert_ptr_nonnull(r->route->upgrade_configs[0]->connect_config);
    ck_assert_uint_eq(h->n_upgrade_configs, 1);
    ck_assert_str_eq(h->upgrade_configs[0]->upgrade_type, "CONNECT");
    ck_assert(h->http2_protocol_options->allow_connect);
    ck_assert_uint_eq(h->http2_protocol_options->max_concurrent_streams->value, 100);
    ck_assert_uint_eq(h->n_http_filters, 2);
    ck_assert_str_eq(h->http_filters[0]->name, "connect_authority");
    Envoy__Extensions__Filters__Http__SetFilterState__V3__Config *sfs =
        any_as(h->http_filters[0]->typed_config,
               &envoy__extensions__filters__http__set_filter_state__v3__config__descriptor);
    check_state(sfs, "io.istio.connect_authority", "%REQ(:AUTHORITY)%");
    check_state(sfs, ORIG_DST ".local_ip", "%REQ(:AUTHORITY)%");
    ck_assert_str_eq(h->http_filters[1]->name, "envoy.filters.http.router");
    ck_assert_str_eq(h->http_filters[1]->typed_config->type_url, XDS_TYPE_ROUTER);
}

static void check_connect_terminate(const listener_t *l)
{
    ck_assert_str_eq(l->address->socket_address->address, "0.0.0.0");
    ck_assert_uint_eq(l->address->socket_address->port_value, 15008);
    ck_assert_ptr_nonnull(l->connection_balance_config->exact_balance);
    ck_assert_uint_eq(l->n_filter_chains, 1);
    const Envoy__Config__Listener__V3__FilterChain *fc = l->filter_chains[0];
    check_hbone_tls(fc->transport_socket);
    ck_assert_uint_eq(fc->n_filters, 1);
    ck_assert_str_eq(fc->filters[0]->name, "envoy.filters.network.http_connection_manager");
    check_hcm(any_as(
        fc->filters[0]->typed_config,
        &envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor));
}

/* An internal listener restoring the destination with original_dst. */
static void check_internal(const listener_t *l)
{
    ck_assert_int_eq(l->listener_specifier_case,
                     ENVOY__CONFIG__LISTENER__V3__LISTENER__LISTENER_SPECIFIER_INTERNAL_LISTENER);
    ck_assert_ptr_null(l->address);
    ck_assert_uint_eq(l->n_listener_filters, 1);
    ck_assert_str_eq(l->listener_filters[0]->name, ORIG_DST);
    any_as(l->listener_filters[0]->typed_config,
           &envoy__extensions__filters__listener__original_dst__v3__original_dst__descriptor);
}

/* The filter chain's one tcp_proxy: stats and cluster both named cluster. */
static void check_tcp_chain(const Envoy__Config__Listener__V3__FilterChain *fc, const char *name,
                            const char *cluster)
{
    if (name)
        ck_assert_str_eq(fc->name, name);
    ck_assert_uint_eq(fc->n_filters, 1);
    ck_assert_str_eq(fc->filters[0]->name, "envoy.filters.network.tcp_proxy");
    Envoy__Extensions__Filters__Network__TcpProxy__V3__TcpProxy *tp =
        any_as(fc->filters[0]->typed_config,
               &envoy__extensions__filters__network__tcp_proxy__v3__tcp_proxy__descriptor);
    ck_assert_str_eq(tp->stat_prefix, cluster);
    ck_assert_str_eq(tp->cluster, cluster);
}

/* The chain an OnMatch names (action name and StringValue agree). */
static const char *chain_of(const Xds__Type__Matcher__V3__Matcher__OnMatch *om)
{
    ck_assert_ptr_nonnull(om->action);
    Google__Protobuf__StringValue *sv =
        any_as(om->action->typed_config, &google__protobuf__string_value__descriptor);
    ck_assert_str_eq(sv->value, om->action->name);
    return om->action->name;
}

static const Xds__Type__Matcher__V3__Matcher__OnMatch *map_get(const matcher_t *m, const char *key)
{
    const Xds__Type__Matcher__V3__Matcher__MatcherTree__MatchMap *mm =
        m->matcher_tree->exact_match_map;
    ck_assert_ptr_nonnull(mm);
    for (size_t i = 0; i < mm->n_map; i++)
        if (strcmp(mm->map[i]->key, key) == 0)
            return mm->map[i]->value;
    ck_abort_msg("no map key %s", key);
    return NULL;
}

/* "H:P" of the CONNECT authority, else VIP then port, to the chain. */
static void check_chain_matcher(const matcher_t *m)
{
    const Xds__Core__V3__TypedExtensionConfig *in = m->matcher_tree->input;
    ck_assert_str_eq(in->name, "authority-filter-state");
    Envoy__Extensions__Matching__CommonInputs__Network__V3__FilterStateInput *fs = any_as(
        in->typed_config,
        &envoy__extensions__matching__common_inputs__network__v3__filter_state_input__descriptor);
    ck_assert_str_eq(fs->key, "io.istio.connect_authority");
    ck_assert_uint_eq(m->matcher_tree->exact_match_map->n_map, 2);
    ck_assert_str_eq(chain_of(map_get(m, HOST_A ":80")), VIP_A);
    ck_assert_str_eq(chain_of(map_get(m, "b.ns.svc.cluster.local:80")), VIP_B);
    const matcher_t *ipm = m->on_no_match->matcher;
    ck_assert_ptr_nonnull(ipm);
    ck_assert_str_eq(ipm->matcher_tree->input->name, "ip");
    any_as(
        ipm->matcher_tree->input->typed_config,
        &envoy__extensions__matching__common_inputs__network__v3__destination_ipinput__descriptor);
    ck_assert_str_eq(ipm->matcher_tree->custom_match->name, "ip");
    Xds__Type__Matcher__V3__IPMatcher *ip = any_as(ipm->matcher_tree->custom_match->typed_config,
                                                   &xds__type__matcher__v3__ipmatcher__descriptor);
    ck_assert_uint_eq(ip->n_range_matchers, 2); /* a, b by hostname */
    const Xds__Type__Matcher__V3__IPMatcher__IPRangeMatcher *ra = ip->range_matchers[0];
    ck_assert_uint_eq(ra->n_ranges, 1);
    ck_assert_str_eq(ra->ranges[0]->address_prefix, "10.96.0.1");
    ck_assert_uint_eq(ra->ranges[0]->prefix_len->value, 32);
    const matcher_t *pm = ra->on_match->matcher;
    ck_assert_str_eq(pm->matcher_tree->input->name, "port");
    any_as(
        pm->matcher_tree->input->typed_config,
        &envoy__extensions__matching__common_inputs__network__v3__destination_port_input__descriptor);
    ck_assert_str_eq(chain_of(map_get(pm, "80")), VIP_A);
    ck_assert_str_eq(ip->range_matchers[1]->ranges[0]->address_prefix, "10.96.0.2");
}

/* A gateway of c1: istiod's three listeners, and no RDS. */
START_TEST(gateway_listeners)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, NULL, XDS_LDS, NULL), 0);
    ck_assert_uint_eq(s.n, 3);
    xds_envoy_set_free(&s);
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, NULL, XDS_RDS, NULL), 0);
    ck_assert_uint_eq(s.n, 0);
    xds_envoy_set_free(&s);

    const ProtobufCMessageDescriptor *ld = &envoy__config__listener__v3__listener__descriptor;
    check_connect_terminate(gw_get(snap, XDS_LDS, XDS_GW_CONNECT_TERMINATE, ld));

    listener_t *mi = gw_get(snap, XDS_LDS, XDS_GW_MAIN_INTERNAL, ld);
    check_internal(mi);
    ck_assert_int_eq(mi->traffic_direction, ENVOY__CONFIG__CORE__V3__TRAFFIC_DIRECTION__INBOUND);
    ck_assert_uint_eq(mi->n_filter_chains, 2); /* a:80, b:80; not the local l */
    check_tcp_chain(mi->filter_chains[0], VIP_A, VIP_A);
    check_tcp_chain(mi->filter_chains[1], VIP_B, VIP_B);
    check_chain_matcher(mi->filter_chain_matcher);

    listener_t *fw = gw_get(snap, XDS_LDS, XDS_GW_FORWARD_INNER, ld);
    check_internal(fw);
    ck_assert(fw->use_original_dst && !fw->use_original_dst->value);
    ck_assert_uint_eq(fw->n_filter_chains, 1);
    check_tcp_chain(fw->filter_chains[0], NULL, XDS_GW_FORWARD_INNER);
    gc_free();
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* internal_upstream over raw_buffer; with passthrough, the host's
 * original_dst metadata is among what travels. */
static void check_internal_upstream(const Envoy__Config__Core__V3__TransportSocket *ts,
                                    const char *name, bool passthrough)
{
    ck_assert_str_eq(ts->name, name);
    Envoy__Extensions__TransportSockets__InternalUpstream__V3__InternalUpstreamTransport *iu = any_as(
        ts->typed_config,
        &envoy__extensions__transport_sockets__internal_upstream__v3__internal_upstream_transport__descriptor);
    ck_assert_str_eq(iu->transport_socket->name, "raw_buffer");
    any_as(iu->transport_socket->typed_config,
           &envoy__extensions__transport_sockets__raw_buffer__v3__raw_buffer__descriptor);
    ck_assert_uint_eq(iu->n_passthrough_metadata, passthrough ? 3 : 0);
    if (passthrough) {
        ck_assert_str_eq(iu->passthrough_metadata[0]->name, ORIG_DST);
        ck_assert_ptr_nonnull(iu->passthrough_metadata[0]->kind->host);
    }
}

static void check_static_internal(const cluster_t *c, const char *listener)
{
    ck_assert_int_eq(c->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC);
    ck_assert_str_eq(c->load_assignment->cluster_name, c->name);
    const Envoy__Config__Core__V3__Address *a =
        c->load_assignment->endpoints[0]->lb_endpoints[0]->endpoint->address;
    ck_assert_str_eq(a->envoy_internal_address->server_listener_name, listener);
    check_internal_upstream(c->transport_socket, "internal_upstream", false);
}

/* The four fixed clusters and one inbound-vip cluster per global port. */
START_TEST(gateway_clusters)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, NULL, XDS_CDS, NULL), 0);
    ck_assert_uint_eq(s.n, 6); /* 4 fixed, a, b: not l */
    xds_envoy_set_free(&s);
    const ProtobufCMessageDescriptor *cd = &envoy__config__cluster__v3__cluster__descriptor;
    check_static_internal(gw_get(snap, XDS_CDS, "main_internal", cd), "main_internal");
    check_static_internal(gw_get(snap, XDS_CDS, "encap", cd), "forward_inner_connect");
    cluster_t *f = gw_get(snap, XDS_CDS, "forward_inner_connect", cd);
    ck_assert_int_eq(f->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__ORIGINAL_DST);
    ck_assert_int_eq(f->lb_policy,
                     ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__CLUSTER_PROVIDED);
    ck_assert_uint_eq(f->original_dst_lb_config->upstream_port_override->value, 15008);
    ck_assert_str_eq(f->original_dst_lb_config->metadata_key->key, ORIG_DST);
    ck_assert_ptr_null(f->transport_socket); /* the inner HBONE is TLS already */
    cluster_t *bh = gw_get(snap, XDS_CDS, "BlackHoleCluster", cd);
    ck_assert_int_eq(bh->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC);
    ck_assert_ptr_null(bh->load_assignment);
    cluster_t *a = gw_get(snap, XDS_CDS, VIP_A, cd);
    ck_assert_int_eq(a->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS);
    ck_assert_str_eq(a->eds_cluster_config->service_name, VIP_A);
    ck_assert_ptr_nonnull(a->eds_cluster_config->eds_config->ads);
    ck_assert_int_eq(a->lb_policy, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST);
    check_internal_upstream(a->transport_socket, "envoy.transport_sockets.internal_upstream", true);
    gc_free();
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* The value of metadata filter ns, field key, as a string. */
static const char *md_string(const Envoy__Config__Core__V3__Metadata *md, const char *ns,
                             const char *key)
{
    ck_assert_ptr_nonnull(md);
    for (size_t i = 0; i < md->n_filter_metadata; i++) {
        if (strcmp(md->filter_metadata[i]->key, ns) != 0)
            continue;
        const Google__Protobuf__Struct *st = md->filter_metadata[i]->value;
        for (size_t j = 0; j < st->n_fields; j++)
            if (strcmp(st->fields[j]->key, key) == 0)
                return st->fields[j]->value->string_value;
    }
    ck_abort_msg("no metadata %s.%s", ns, key);
    return NULL;
}

/* c1's own ready pods only (10.1.0.3 is not ready), one priority, each an
 * internal address of forward_inner_connect told its pod address. */
START_TEST(gateway_endpoints)
{
    model_t *m;
    model_snapshot_t *snap = mesh(&m);
    cla_t *c = gw_get(snap, XDS_EDS, VIP_A,
                      &envoy__config__endpoint__v3__cluster_load_assignment__descriptor);
    ck_assert_str_eq(c->cluster_name, VIP_A);
    ck_assert_uint_eq(c->n_endpoints, 1);
    ck_assert_uint_eq(c->endpoints[0]->priority, 0);
    ck_assert_uint_eq(c->endpoints[0]->n_lb_endpoints, 2);
    for (size_t i = 0; i < 2; i++) {
        const Envoy__Config__Endpoint__V3__LbEndpoint *lb = c->endpoints[0]->lb_endpoints[i];
        const Envoy__Config__Core__V3__EnvoyInternalAddress *ia =
            lb->endpoint->address->envoy_internal_address;
        ck_assert_ptr_nonnull(ia);
        ck_assert_str_eq(ia->server_listener_name, XDS_GW_FORWARD_INNER);
        char want[32];
        snprintf(want, sizeof(want), "10.1.0.%zu:8080", i + 1);
        ck_assert_str_eq(ia->endpoint_id, want);
        ck_assert_str_eq(md_string(lb->metadata, ORIG_DST, "local"), want);
    }
    /* by name too, and the client's name is not the gateway's */
    base_map_t names = {0};
    base_map_put(&names, VIP_B, BASE_MAP_SET);
    base_map_put(&names, CL_A, BASE_MAP_SET);
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, NULL, XDS_EDS, &names), 0);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_str_eq(s.items[0].name, VIP_B);
    xds_envoy_set_free(&s);
    base_map_destroy(&names, NULL);
    gc_free();
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* VIPs only on another network: nothing is reachable through this
 * gateway, and main_internal keeps only istiod's blackhole chain (Envoy
 * rejects an empty match map). By name, LDS sends only what is asked. */
START_TEST(gateway_without_vips)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c2", "n2", "192.0.2.2");
    add_svc(m, "c2", "a", true, MODEL_TD_NONE, "10.2.0", 1, 1);
    model_snapshot_t *snap = model_commit(m);
    base_map_t names = {0};
    base_map_put(&names, XDS_GW_MAIN_INTERNAL, BASE_MAP_SET);
    xds_envoy_set_t s;
    ck_assert_int_eq(xds_envoy_collect(&s, snap, &V1, XDS_ROLE_GATEWAY, NULL, XDS_LDS, &names), 0);
    ck_assert_uint_eq(s.n, 1);
    listener_t *l =
        keep(envoy__config__listener__v3__listener__unpack(NULL, s.items[0].len, s.items[0].buf));
    xds_envoy_set_free(&s);
    base_map_destroy(&names, NULL);
    ck_assert_str_eq(l->name, XDS_GW_MAIN_INTERNAL);
    ck_assert_uint_eq(l->n_filter_chains, 1);
    check_tcp_chain(l->filter_chains[0], "virtualInbound-blackhole", "BlackHoleCluster");
    ck_assert_ptr_null(l->filter_chain_matcher);
    gc_free();
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* Pod churn does not touch the gateway's listeners; a new global service
 * (or a Service's VIPs) does. */
START_TEST(gateway_listeners_changed)
{
    model_t *m;
    model_snapshot_t *s1 = mesh(&m);
    add_svc(m, "c1", "a", true, MODEL_TD_PREFER_CLOSE, "10.1.0", 3, 3);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert(!xds_envoy_gw_listeners_changed(s1, s2, &V1));
    add_svc(m, "c1", "c", true, MODEL_TD_NONE, "10.1.3", 1, 1);
    model_snapshot_t *s3 = model_commit(m);
    ck_assert(xds_envoy_gw_listeners_changed(s2, s3, &V1));
    add_svc(m, "c1", "d", false, MODEL_TD_NONE, "10.1.4", 1, 1);
    model_snapshot_t *s4 = model_commit(m);
    ck_assert(xds_envoy_gw_listeners_changed(s3, s4, &V1)); /* its Service is new */
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_snapshot_unref(s4);
    model_free(m);
}
END_TEST

/* istiod's test: a waypoint~ node labelled by the east-west controller;
 * MESHFED_ROLE overrides; a router~ node is an ingress gateway. */
START_TEST(gateway_detection)
{
    const char *ew = XDS_GW_MANAGED_VALUE;
    ck_assert(xds_envoy_is_gateway(
        "waypoint~10.0.0.9~gw.istio-system~istio-system.svc.cluster.local", NULL, ew));
    ck_assert(!xds_envoy_is_gateway("waypoint~10.0.0.9~wp.ns~ns.svc.cluster.local", NULL, NULL));
    ck_assert(!xds_envoy_is_gateway("waypoint~10.0.0.9~wp.ns~ns.svc.cluster.local", NULL,
                                    "istio.io-mesh-controller"));
    ck_assert(!xds_envoy_is_gateway("sidecar~10.0.0.9~p.ns~ns.svc.cluster.local", NULL, ew));
    ck_assert(!xds_envoy_is_gateway("router~10.0.0.9~gw.ns~ns.svc.cluster.local", NULL, NULL));
    ck_assert(!xds_envoy_is_gateway("grpc-client-1", NULL, NULL));
    ck_assert(xds_envoy_is_gateway("anything", XDS_GW_ROLE_VALUE, NULL));
    ck_assert(!xds_envoy_is_gateway(NULL, NULL, ew));
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
    Google__Protobuf__Struct md, labels;
    Google__Protobuf__Struct__FieldsEntry e[3], *ep[3], le, *lep;
    Google__Protobuf__Value v[3], lv;
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

/* As istio-proxy starts an east-west gateway: its pod labels in LABELS
 * (replacing the third metadata entry). */
static void node_init_labels(node_t *nd, const char *id, const char *managed)
{
    node_init_role(nd, id, "x");
    google__protobuf__value__init(&nd->lv);
    nd->lv.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    nd->lv.string_value = (char *)managed;
    google__protobuf__struct__fields_entry__init(&nd->le);
    nd->le.key = (char *)XDS_GW_MANAGED_LABEL;
    nd->le.value = &nd->lv;
    nd->lep = &nd->le;
    google__protobuf__struct__init(&nd->labels);
    nd->labels.n_fields = 1;
    nd->labels.fields = &nd->lep;
    nd->e[2].key = (char *)XDS_GW_LABELS_KEY;
    nd->v[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    nd->v[2].struct_value = &nd->labels;
}

/* The names of the listeners a node of id (LABELS managed, or none) gets
 * for a wildcard LDS request, sorted, comma-separated into buf. */
static void listeners_of(xds_server_t *s, const char *id, const char *managed, char *buf,
                         size_t len)
{
    tl_client_t *c = client_open(xds_server_port(s), SOTW);
    node_t nd;
    if (managed)
        node_init_labels(&nd, id, managed);
    else
        node_init(&nd, id);
    sotw_req(c, &nd, XDS_TYPE_LISTENER, NULL, NULL, NULL, NULL);
    resp_t *r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    const char *names[8];
    size_t n = r->n_resources < 8 ? r->n_resources : 8;
    for (size_t i = 0; i < n; i++) {
        Envoy__Config__Listener__V3__Listener *l =
            keep(envoy__config__listener__v3__listener__unpack(NULL, r->resources[i]->value.len,
                                                               r->resources[i]->value.data));
        size_t k = i;
        for (; k > 0 && strcmp(names[k - 1], l->name) > 0; k--)
            names[k] = names[k - 1];
        names[k] = l->name;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", names[i]);
    gc_free();
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    tl_client_close(c);
}

/* An istio-proxy east-west gateway (waypoint~ id, labelled by the
 * east-west controller) gets istiod's gateway listeners and its own
 * cluster's endpoints as internal addresses; a proxyless gRPC client and
 * an ordinary waypoint get the client's listeners. */
START_TEST(gateway_node)
{
    model_t *m;
    xds_server_t *s = serve_mesh(&m);
    char got[512];
    const char *ew =
        "waypoint~10.0.0.9~istio-eastwest-abc.istio-system~istio-system.svc.cluster.local";
    const char *client =
        "a.ns.svc.cluster.local:80,b.ns.svc.cluster.local:80,l.ns.svc.cluster.local:80";
    listeners_of(s, ew, XDS_GW_MANAGED_VALUE, got, sizeof(got));
    ck_assert_str_eq(got, "connect_terminate,forward_inner_connect,main_internal");
    listeners_of(s, "grpc-client-1", NULL, got, sizeof(got));
    ck_assert_str_eq(got, client);
    listeners_of(s, "waypoint~10.0.0.8~wp.ns~ns.svc.cluster.local", NULL, got, sizeof(got));
    ck_assert_str_eq(got, client);
    listeners_of(s, "waypoint~10.0.0.8~wp.ns~ns.svc.cluster.local", "istio.io-mesh-controller", got,
                 sizeof(got));
    ck_assert_str_eq(got, client);
    listeners_of(s, "router~10.0.0.7~ingress.istio-system~istio-system.svc.cluster.local", NULL,
                 got, sizeof(got));
    ck_assert_str_eq(got, client);

    tl_client_t *c = client_open(xds_server_port(s), SOTW);
    node_t nd;
    node_init_labels(&nd, ew, XDS_GW_MANAGED_VALUE);
    sotw_req(c, &nd, XDS_TYPE_ENDPOINT, VIP_A, NULL, NULL, NULL);
    resp_t *r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    cla_t *cla = envoy__config__endpoint__v3__cluster_load_assignment__unpack(
        NULL, r->resources[0]->value.len, r->resources[0]->value.data);
    ck_assert_uint_eq(cla->n_endpoints, 1);
    ck_assert_uint_eq(cla->endpoints[0]->n_lb_endpoints, 2); /* c1's ready pods only */
    ck_assert_str_eq(
        cla->endpoints[0]->lb_endpoints[0]->endpoint->address->envoy_internal_address->endpoint_id,
        "10.1.0.1:8080");
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    tl_client_close(c);
    unserve(s, m);
}
END_TEST

/* Over a stream: pod churn sends the gateway no listeners; a new global
 * service sends main_internal with its chain. */
START_TEST(gateway_listeners_follow_services)
{
    model_t *m;
    xds_server_t *s = serve_mesh(&m);
    tl_client_t *c = client_open(xds_server_port(s), SOTW);
    node_t nd;
    node_init_labels(
        &nd, "waypoint~10.0.0.9~istio-eastwest-abc.istio-system~istio-system.svc.cluster.local",
        XDS_GW_MANAGED_VALUE);
    sotw_req(c, &nd, XDS_TYPE_LISTENER, NULL, NULL, NULL, NULL);
    resp_t *r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    sotw_req(c, NULL, XDS_TYPE_LISTENER, NULL, r->version_info, r->nonce, NULL);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    add_svc(m, "c1", "a", true, MODEL_TD_PREFER_CLOSE, "10.1.0", 3, 3);
    publish(s, m);
    ck_assert_ptr_null(sotw_resp(c, 300));
    add_svc(m, "c1", "c", true, MODEL_TD_NONE, "10.1.3", 1, 1);
    publish(s, m);
    r = sotw_resp(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 3);
    bool found = false;
    for (size_t i = 0; i < r->n_resources; i++) {
        listener_t *l = keep(envoy__config__listener__v3__listener__unpack(
            NULL, r->resources[i]->value.len, r->resources[i]->value.data));
        for (size_t j = 0; j < l->n_filter_chains && !strcmp(l->name, XDS_GW_MAIN_INTERNAL); j++)
            found |=
                strcmp(l->filter_chains[j]->name, "inbound-vip|80|tcp|c.ns.svc.cluster.local") == 0;
    }
    ck_assert(found);
    gc_free();
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
    tcase_add_test(t, gateway_listeners);
    tcase_add_test(t, gateway_clusters);
    tcase_add_test(t, gateway_endpoints);
    tcase_add_test(t, gateway_detection);
    tcase_add_test(t, gateway_listeners_changed);
    tcase_add_test(t, gateway_without_vips);
    suite_add_tcase(su, t);
    t = tcase_create("stream");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, sotw_ack_nack_versions);
    tcase_add_test(t, delta_eds);
    tcase_add_test(t, gateway_node);
    tcase_add_test(t, gateway_listeners_follow_services);
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
