/*
 * test_xds.c - the xDS server end to end: a grpc core client talks delta and
 * SotW ADS to a server fed with snapshots of a two-network mesh, and every
 * test decodes what came back.
 */
#include "model.h"
#include "testcheck.h"
#include "testlib.h"
#include "xds.h"
#include "xds_int.h"

#include "citadel.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#include <check.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DELTA TL_DELTA
#define SOTW TL_SOTW
#define SH_A_N2                                                                                    \
    "n2/SplitHorizonWorkload/istio-system/istio-eastwest/192.0.2.2/ns/a.ns.svc.cluster.local"

/* ---------- the mesh (as in test_model.c) ---------- */

static model_service_t *mk_svc(const char *ns, const char *name, const char *vip, bool global)
{
    model_service_t *s = calloc(1, sizeof(*s));
    s->ns = strdup(ns);
    s->name = strdup(name);
    if (global)
        model_labels_set(&s->labels, "istio.io/global", "true");
    s->cluster_ips = calloc(1, sizeof(model_ip_t));
    ck_assert_int_eq(model_ip_parse(vip, &s->cluster_ips[0]), 0);
    s->ncluster_ips = 1;
    s->ip_families = MODEL_IPF_V4; /* what the API server fills in */
    s->ports = calloc(1, sizeof(model_svc_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = 80;
    s->ports[0].target_port = 8080;
    s->nports = 1;
    return s;
}

static model_endpointslice_t *mk_slice(const char *svc, const char *ipbase, int n, int nready)
{
    model_endpointslice_t *s = tl_slice("ns", svc, "http", 8080, ipbase, n, nready, true);
    ck_assert_ptr_nonnull(s);
    return s;
}

static model_pod_t *mk_pod(const char *name, const char *ip)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    p->ns = strdup("ns");
    p->name = strdup(name);
    p->ips = calloc(1, sizeof(model_ip_t));
    ck_assert_int_eq(model_ip_parse(ip, &p->ips[0]), 0);
    p->nips = 1;
    p->service_account = strdup("default");
    p->ambient = true; /* enrolled: istio-cni annotated it */
    p->ready = true;
    return p;
}

static void add_service(model_t *m, const char *cluster, const char *name, const char *vip,
                        bool global, const char *ipbase, int n)
{
    tl_ensure_namespace(m, cluster, "ns");
    apply(m, cluster, MODEL_KIND_SERVICE, mk_svc("ns", name, vip, global));
    for (int i = 0; i < n; i++) {
        char ip[64], pod[64];
        snprintf(ip, sizeof(ip), "%s.%d", ipbase, i + 1);
        snprintf(pod, sizeof(pod), "%s-%d", name, i);
        apply(m, cluster, MODEL_KIND_POD, mk_pod(pod, ip));
    }
    apply(m, cluster, MODEL_KIND_ENDPOINTSLICE, mk_slice(name, ipbase, n, n));
}

/* A test environment: the model, a server on 127.0.0.1:0 with its first snapshot. */
typedef struct env {
    model_t *m;
    xds_server_t *s;
    int port;
} env_t;

static env_t *env_new_cfg(xds_config_t *cfg)
{
    env_t *e = calloc(1, sizeof(*e));
    e->m = model_new(NULL);
    add_cluster(e->m, "c1", "n1", "192.0.2.1");
    add_cluster(e->m, "c2", "n2", "192.0.2.2");
    add_service(e->m, "c1", "a", "10.96.0.1", true, "10.1.0", 1);
    add_service(e->m, "c2", "a", "10.97.0.1", true, "10.2.0", 3);
    add_service(e->m, "c1", "b", "10.96.0.2", false, "10.1.1", 1);
    add_service(e->m, "c2", "private", "10.97.0.9", false, "10.2.9", 2);
    char err[256];
    e->s = xds_server_new(cfg, err, sizeof(err));
    ck_assert_msg(e->s != NULL, "%s", err);
    e->port = xds_server_port(e->s);
    ck_assert_int_gt(e->port, 0);
    ck_assert_int_eq(xds_server_start(e->s), 0);
    model_snapshot_t *snap = model_commit(e->m);
    xds_server_publish(e->s, snap);
    model_snapshot_unref(snap);
    return e;
}

static env_t *env_new(void)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0"};
    return env_new_cfg(&cfg);
}

/* c2's slice for a: only nready of 3 ready, which changes one resource for c1. */
static void env_change_capacity(env_t *e, int nready)
{
    apply(e->m, "c2", MODEL_KIND_ENDPOINTSLICE, mk_slice("a", "10.2.0", 3, nready));
    model_snapshot_t *snap = model_commit(e->m);
    xds_server_publish(e->s, snap);
    model_snapshot_unref(snap);
}

static void env_free(env_t *e)
{
    xds_server_shutdown(e->s, 100);
    xds_server_free(e->s);
    model_free(e->m);
    free(e);
}

/* ---------- a grpc core client (tests/lib) ---------- */

static grpc_status_code client_status(tl_client_t *c, char *msg, size_t len)
{
    grpc_slice sl; /* status arrives once the receive side is drained */
    while (tl_client_recv(c, 5000, &sl))
        grpc_slice_unref(sl);
    ck_assert(tl_wait_tag(c, TL_T_STATUS, 5000) == 1);
    snprintf(msg, len, "%.*s", (int)GRPC_SLICE_LENGTH(c->details),
             (const char *)GRPC_SLICE_START_PTR(c->details));
    return c->status;
}

static Istio__Workload__Address *decode(const Google__Protobuf__Any *any)
{
    ck_assert_str_eq(any->type_url, XDS_TYPE_ADDRESS);
    Istio__Workload__Address *a =
        istio__workload__address__unpack(NULL, any->value.len, any->value.data);
    ck_assert_ptr_nonnull(a);
    return a;
}

/* The decoded Address of resource name in r, or NULL. Caller frees. */
static Istio__Workload__Address *find(const dresp_t *r, const char *name)
{
    for (size_t i = 0; i < r->n_resources; i++)
        if (strcmp(r->resources[i]->name, name) == 0)
            return decode(r->resources[i]->resource);
    return NULL;
}

static bool removed(const dresp_t *r, const char *name)
{
    for (size_t i = 0; i < r->n_removed_resources; i++)
        if (strcmp(r->removed_resources[i], name) == 0)
            return true;
    return false;
}

static void addr_free(Istio__Workload__Address *a)
{
    istio__workload__address__free_unpacked(a, NULL);
}

static bool ip_is(const ProtobufCBinaryData *b, const char *ip)
{
    model_ip_t x;
    ck_assert_int_eq(model_ip_parse(ip, &x), 0);
    return b->len == x.len && memcmp(b->data, x.b, x.len) == 0;
}

/* ---------- tests ---------- */

START_TEST(delta_wildcard_gets_view)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_ADDRESS);
    ck_assert_str_ne(r->nonce, "");
    for (size_t i = 0; i < r->n_resources; i++) { /* every resource decodes */
        ck_assert_uint_eq(strlen(r->resources[i]->version), 16);
        addr_free(decode(r->resources[i]->resource));
    }
    Istio__Workload__Address *a = find(r, "c1//Pod/ns/a-0");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->type_case, ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD);
    ck_assert_str_eq(a->workload->uid, "c1//Pod/ns/a-0");
    ck_assert_str_eq(a->workload->cluster_id, "c1");
    ck_assert_str_eq(a->workload->network, "n1");
    ck_assert_uint_eq(a->workload->n_addresses, 1);
    ck_assert(ip_is(&a->workload->addresses[0], "10.1.0.1"));
    ck_assert_int_eq(a->workload->tunnel_protocol, ISTIO__WORKLOAD__TUNNEL_PROTOCOL__HBONE);
    ck_assert_uint_eq(a->workload->n_services, 1);
    ck_assert_str_eq(a->workload->services[0]->key, "ns/a.ns.svc.cluster.local");
    ck_assert_uint_eq(a->workload->services[0]->value->ports[0]->service_port, 80);
    addr_free(a);
    a = find(r, SH_A_N2);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(a->workload->capacity);
    ck_assert_uint_eq(a->workload->capacity->value, 3);
    ck_assert_ptr_nonnull(a->workload->network_gateway);
    ck_assert_uint_eq(a->workload->network_gateway->hbone_mtls_port, 15008);
    ck_assert_int_eq(a->workload->network_gateway->destination_case,
                     ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_ADDRESS);
    ck_assert_str_eq(a->workload->network_gateway->address->network, "n2");
    ck_assert(ip_is(&a->workload->network_gateway->address->address, "192.0.2.2"));
    addr_free(a);
    a = find(r, "ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->type_case, ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE);
    ck_assert_str_eq(a->service->hostname, "a.ns.svc.cluster.local");
    ck_assert_uint_eq(a->service->n_addresses, 2);
    ck_assert(ip_is(&a->service->addresses[0]->address, "10.96.0.1"));
    ck_assert(ip_is(&a->service->addresses[1]->address, "10.97.0.1"));
    ck_assert_int_eq(a->service->ip_families, ISTIO__WORKLOAD__IPFAMILIES__IPV4_ONLY);
    ck_assert_uint_eq(a->service->ports[0]->target_port, 8080);
    /* the inner HBONE through n2's gateway is verified against these */
    ck_assert_uint_eq(a->service->n_subject_alt_names, 1);
    ck_assert_str_eq(a->service->subject_alt_names[0], "spiffe://cluster.local/ns/ns/sa/default");
    addr_free(a);
    /* n2's gateway, to verify the outer HBONE: no tunnel, no cluster */
    a = find(r, "NetworkGateway/n2/192.0.2.2/0");
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->workload->name, "NetworkGateway/n2/192.0.2.2/0");
    ck_assert_str_eq(a->workload->namespace_, "istio-system");
    ck_assert_str_eq(a->workload->service_account, "istio-eastwest");
    ck_assert_str_eq(a->workload->network, "n2");
    ck_assert_str_eq(a->workload->cluster_id, "");
    ck_assert_int_eq(a->workload->tunnel_protocol, ISTIO__WORKLOAD__TUNNEL_PROTOCOL__NONE);
    ck_assert_uint_eq(a->workload->n_addresses, 1);
    ck_assert(ip_is(&a->workload->addresses[0], "192.0.2.2"));
    addr_free(a);
    ck_assert_ptr_null(find(r, "NetworkGateway/n1/192.0.2.1/0"));
    a = find(r, "ns/b.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    ck_assert_ptr_null(find(r, "ns/private.ns.svc.cluster.local"));
    ck_assert_ptr_null(find(r, "c2//Pod/ns/a-0"));
    ck_assert_ptr_null(find(r, "c2//Pod/ns/private-0"));
    tl_delta_free(r);
    tl_client_close(c);
    env_free(e);
}
END_TEST

START_TEST(delta_ack_then_push_only_changes)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_uint_gt(r->n_resources, 4);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    char first_nonce[64];
    snprintf(first_nonce, sizeof(first_nonce), "%s", r->nonce);
    tl_delta_free(r);
    env_change_capacity(e, 2);
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_uint_eq(r->n_removed_resources, 0);
    ck_assert_str_ne(r->nonce, first_nonce);
    ck_assert_str_eq(r->resources[0]->name, SH_A_N2);
    Istio__Workload__Address *a = decode(r->resources[0]->resource);
    ck_assert_uint_eq(a->workload->capacity->value, 2);
    addr_free(a);
    tl_delta_free(r);
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_ge(st.acks, 1);
    ck_assert_uint_ge(st.pushes, 2);
    tl_client_close(c);
    env_free(e);
}
END_TEST

static void proxy_cb(const xds_proxy_info_t *p, void *arg)
{
    char *out = arg;
    snprintf(out, 128, "%s|%s|%s|%llu", p->cluster, p->network, p->last_nack ? p->last_nack : "",
             (unsigned long long)p->nacks);
}

START_TEST(delta_nack_counted_and_no_resend)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, "rejected: bad workload");
    tl_delta_free(r);
    ck_assert_ptr_null(recv_delta(c, 300)); /* no resend loop */
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.nacks, 1);
    char info[128] = "";
    xds_server_each_proxy(e->s, proxy_cb, info);
    ck_assert_str_eq(info, "c1|n1|rejected: bad workload|1");
    env_change_capacity(e, 1); /* a later change still flows, as a diff */
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_str_eq(r->resources[0]->name, SH_A_N2);
    tl_delta_free(r);
    tl_client_close(c);
    env_free(e);
}
END_TEST

START_TEST(delta_reconnect_initial_versions_skips_unchanged)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    size_t n = r->n_resources;
    ck_assert_uint_gt(n, 2);
    /* reconnect claiming everything, one stale version and one gone name */
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry *ent =
        calloc(n + 1, sizeof(*ent));
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry **entp =
        calloc(n + 1, sizeof(*entp));
    const char *stale = NULL;
    for (size_t i = 0; i < n; i++) {
        envoy__service__discovery__v3__delta_discovery_request__initial_resource_versions_entry__init(
            &ent[i]);
        ent[i].key = r->resources[i]->name;
        ent[i].value = r->resources[i]->version;
        if (strcmp(ent[i].key, "ns/b.ns.svc.cluster.local") == 0) {
            ent[i].value = (char *)"0000000000000000";
            stale = ent[i].key;
        }
        entp[i] = &ent[i];
    }
    ck_assert_ptr_nonnull(stale);
    envoy__service__discovery__v3__delta_discovery_request__initial_resource_versions_entry__init(
        &ent[n]);
    ent[n].key = (char *)"ns/gone.ns.svc.cluster.local";
    ent[n].value = (char *)"1234";
    entp[n] = &ent[n];
    tl_client_t *c2 = client_open(e->port, DELTA);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    rq.initial_resource_versions = entp;
    rq.n_initial_resource_versions = n + 1;
    send_delta(c2, &rq);
    dresp_t *r2 = recv_delta(c2, 5000);
    ck_assert_ptr_nonnull(r2);
    ck_assert_uint_eq(r2->n_resources, 1);
    ck_assert_str_eq(r2->resources[0]->name, "ns/b.ns.svc.cluster.local");
    ck_assert_uint_eq(r2->n_removed_resources, 1);
    ck_assert(removed(r2, "ns/gone.ns.svc.cluster.local"));
    tl_delta_free(r2);
    free(ent);
    free(entp);
    tl_delta_free(r);
    tl_client_close(c2);
    tl_client_close(c);
    env_free(e);
}
END_TEST

START_TEST(delta_on_demand_subscribe_by_name_and_network_ip)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, DELTA);
    char *subs[] = {(char *)"c1//Pod/ns/b-0"};
    send_first(c, XDS_TYPE_ADDRESS, subs, 1);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_uint_eq(r->n_resources, 1);
    Istio__Workload__Address *a = find(r, "c1//Pod/ns/b-0");
    ck_assert_ptr_nonnull(a);
    ck_assert(ip_is(&a->workload->addresses[0], "10.1.1.1"));
    addr_free(a);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    /* by network/IP: a pod IP and a service VIP; and a name that does not exist */
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    char *more[] = {(char *)"n1/10.1.0.1", (char *)"n1/10.96.0.1",
                    (char *)"ns/nope.ns.svc.cluster.local"};
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    rq.resource_names_subscribe = more;
    rq.n_resource_names_subscribe = 3;
    send_delta(c, &rq);
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 2);
    a = find(r, "c1//Pod/ns/a-0");
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    a = find(r, "ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->service->name, "a");
    addr_free(a);
    ck_assert(removed(r, "ns/nope.ns.svc.cluster.local"));
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    /* unsubscribed names stop flowing; the SH workload was never asked for */
    dreq_t un = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    char *gone[] = {(char *)"c1//Pod/ns/b-0"};
    un.type_url = (char *)XDS_TYPE_ADDRESS;
    un.resource_names_unsubscribe = gone;
    un.n_resource_names_unsubscribe = 1;
    send_delta(c, &un);
    env_change_capacity(e, 2);
    ck_assert_ptr_null(recv_delta(c, 300));
    tl_client_close(c);
    env_free(e);
}
END_TEST

static void expect_rejected(env_t *e, const uint8_t *buf, size_t len, grpc_status_code want,
                            const char *needle)
{
    tl_client_t *c = client_open(e->port, DELTA);
    client_send(c, buf, len);
    char msg[512];
    ck_assert_int_eq(client_status(c, msg, sizeof(msg)), want);
    ck_assert_msg(strstr(msg, needle) != NULL, "status message \"%s\" lacks \"%s\"", msg, needle);
    tl_client_close(c);
}

static void expect_delta_rejected(env_t *e, dreq_t *rq, const char *needle)
{
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(rq);
    uint8_t *buf = malloc(len + 1);
    envoy__service__discovery__v3__delta_discovery_request__pack(rq, buf);
    expect_rejected(e, buf, len, GRPC_STATUS_INVALID_ARGUMENT, needle);
    free(buf);
}

START_TEST(delta_missing_node_rejected)
{
    env_t *e = env_new();
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    expect_delta_rejected(e, &rq, "no node");
    tl_node_buf_t nb;
    rq.node = tl_node(&nb, NULL, "n1");
    expect_delta_rejected(e, &rq, "CLUSTER_ID");
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.bad_requests, 2);
    env_free(e);
}
END_TEST

START_TEST(delta_unknown_type_url_rejected)
{
    env_t *e = env_new();
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)"type.googleapis.com/envoy.config.cluster.v3.Bogus";
    expect_delta_rejected(e, &rq, "envoy.config.cluster.v3.Bogus");
    char longname[1100];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    char *subs[] = {longname};
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    rq.resource_names_subscribe = subs;
    rq.n_resource_names_subscribe = 1;
    expect_delta_rejected(e, &rq, "longer than 1024");
    env_free(e);
}
END_TEST

START_TEST(delta_malformed_request_rejected)
{
    env_t *e = env_new();
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99, 0x01};
    expect_rejected(e, junk, sizeof(junk), GRPC_STATUS_INVALID_ARGUMENT, "malformed");
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.bad_requests, 1);
    env_free(e);
}
END_TEST

START_TEST(authorization_type_empty_set)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_AUTHORIZATION, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_AUTHORIZATION);
    ck_assert_uint_eq(r->n_resources, 0);
    ck_assert_uint_eq(r->n_removed_resources, 0);
    ck_assert_str_ne(r->nonce, "");
    ck_assert_str_ne(r->system_version_info, "");
    send_ack(c, XDS_TYPE_AUTHORIZATION, r->nonce, NULL);
    tl_delta_free(r);
    /* the same stream then asks for addresses */
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    send_delta(c, &rq);
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_ADDRESS);
    Istio__Workload__Address *a = find(r, "c1//Pod/ns/a-0");
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    tl_delta_free(r);
    tl_client_close(c);
    env_free(e);
}
END_TEST

typedef Envoy__Service__Discovery__V3__DiscoveryResponse sresp_t;

static sresp_t *recv_sotw(tl_client_t *c)
{
    grpc_slice sl;
    if (!tl_client_recv(c, 5000, &sl))
        return NULL;
    sresp_t *r = envoy__service__discovery__v3__discovery_response__unpack(
        NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return r;
}

static void send_sotw(tl_client_t *c, bool node, const char *nonce)
{
    tl_node_buf_t nb;
    Envoy__Service__Discovery__V3__DiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    if (node)
        rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    if (nonce)
        rq.response_nonce = (char *)nonce;
    size_t len = envoy__service__discovery__v3__discovery_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len + 1);
    envoy__service__discovery__v3__discovery_request__pack(&rq, buf);
    client_send(c, buf, len);
    free(buf);
}

static int sotw_count(const sresp_t *r, const char *uid, uint32_t *capacity)
{
    int found = 0;
    for (size_t i = 0; i < r->n_resources; i++) {
        Istio__Workload__Address *a = decode(r->resources[i]);
        if (a->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD &&
            strcmp(a->workload->uid, uid) == 0) {
            found++;
            if (capacity && a->workload->capacity)
                *capacity = a->workload->capacity->value;
        }
        addr_free(a);
    }
    return found;
}

START_TEST(sotw_full_state)
{
    env_t *e = env_new();
    tl_client_t *c = client_open(e->port, SOTW);
    send_sotw(c, true, NULL);
    sresp_t *r = recv_sotw(c);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->type_url, XDS_TYPE_ADDRESS);
    ck_assert_str_ne(r->version_info, "");
    size_t n = r->n_resources;
    uint32_t cap = 0;
    ck_assert_int_eq(sotw_count(r, SH_A_N2, &cap), 1);
    ck_assert_uint_eq(cap, 3);
    ck_assert_int_eq(sotw_count(r, "c2//Pod/ns/private-0", NULL), 0);
    char v1[32];
    snprintf(v1, sizeof(v1), "%s", r->version_info);
    send_sotw(c, false, r->nonce);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    env_change_capacity(e, 2);
    r = recv_sotw(c);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, n); /* full state again, not a diff */
    ck_assert_str_ne(r->version_info, v1);
    ck_assert_int_eq(sotw_count(r, SH_A_N2, &cap), 1);
    ck_assert_uint_eq(cap, 2);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    tl_client_close(c);
    env_free(e);
}
END_TEST

START_TEST(bad_stream_does_not_disturb_good_one)
{
    env_t *e = env_new();
    tl_client_t *good = client_open(e->port, DELTA);
    send_first(good, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(good, 5000);
    send_ack(good, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    const uint8_t junk[] = {0x0a, 0xff, 0x01};
    expect_rejected(e, junk, sizeof(junk), GRPC_STATUS_INVALID_ARGUMENT, "malformed");
    tl_client_t *odd = client_open(e->port, "/some.Other/Method");
    char msg[256];
    ck_assert_int_eq(client_status(odd, msg, sizeof(msg)), GRPC_STATUS_UNIMPLEMENTED);
    tl_client_close(odd);
    env_change_capacity(e, 2);
    r = recv_delta(good, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_str_eq(r->resources[0]->name, SH_A_N2);
    tl_delta_free(r);
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.bad_requests, 1);
    ck_assert_uint_eq(st.streams_open, 1);
    tl_client_close(good);
    env_free(e);
}
END_TEST

/* ---------- node metadata as real clients send it ---------- */

static const char *net_of(void *arg, const char *cluster)
{
    (void)arg;
    return strcmp(cluster, "c1") == 0 ? "n1" : strcmp(cluster, "c2") == 0 ? "n2" : NULL;
}

/* ztunnel: no CLUSTER_ID/NETWORK metadata, cluster in the clusterid header,
 * network from the server's network_of hook. */
START_TEST(node_ztunnel_clusterid_header_and_network_hook)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0", .network_of = net_of};
    env_t *e = env_new_cfg(&cfg);
    grpc_metadata md[1];
    memset(md, 0, sizeof(md));
    md[0].key = grpc_slice_from_static_string("clusterid");
    md[0].value = grpc_slice_from_static_string("c1");
    tl_client_t *c = client_on(tl_insecure_channel(e->port), true, DELTA, md, 1);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node_keys(&nb, "NAME", "ztunnel-abc", "NODE_NAME", "node-1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    send_delta(c, &rq);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    Istio__Workload__Address *a = find(r, "c1//Pod/ns/a-0"); /* c1's view... */
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    a = find(r, SH_A_N2); /* ...from network n1: n2 is behind its gateway */
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    tl_delta_free(r);
    char info[128] = "";
    xds_server_each_proxy(e->s, proxy_cb, info);
    ck_assert_str_eq(info, "c1|n1||0");
    tl_client_close(c);
    env_free(e);
}
END_TEST

/* Clients that forward the env unstripped. A known cluster's network wins
 * over the node's (istiod serves a cluster's proxies its network's view);
 * the node's counts only for a cluster the hook does not know. */
START_TEST(node_istio_meta_prefixed_keys)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0", .network_of = net_of};
    env_t *e = env_new_cfg(&cfg);
    tl_client_t *c = client_open(e->port, DELTA);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node_keys(&nb, "ISTIO_META_CLUSTER_ID", "c2", "ISTIO_META_NETWORK", "n9");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    send_delta(c, &rq);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    tl_delta_free(r);
    char info[128] = "";
    xds_server_each_proxy(e->s, proxy_cb, info);
    ck_assert_str_eq(info, "c2|n2||0");
    tl_client_close(c);
    c = client_open(e->port, DELTA);
    rq.node = tl_node_keys(&nb, "ISTIO_META_CLUSTER_ID", "c7", "ISTIO_META_NETWORK", "n9");
    send_delta(c, &rq);
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    tl_delta_free(r);
    info[0] = '\0';
    xds_server_each_proxy(e->s, proxy_cb, info);
    ck_assert_str_eq(info, "c7|n9||0");
    tl_client_close(c);
    env_free(e);
}
END_TEST

/* ---------- TLS ---------- */

static void gen_cert(const char *dir, const char *cn)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s/key.tmp -out %s/cert.tmp -days 1 -subj /CN=%s "
             "-addext subjectAltName=DNS:%s >/dev/null 2>&1 && "
             "mv %s/key.tmp %s/key.pem && mv %s/cert.tmp %s/cert.pem",
             dir, dir, cn, cn, dir, dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    ck_assert_uint_gt(n, 0);
    fclose(f);
    return buf;
}

static grpc_channel *tls_channel(int port, const char *root_file, const char *host)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    char *root = slurp(root_file);
    grpc_channel_credentials *cr = grpc_ssl_credentials_create(root, NULL, NULL, NULL);
    free(root);
    grpc_arg args[2];
    args[0].type = GRPC_ARG_STRING;
    args[0].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[0].value.string = (char *)host;
    args[1].type = GRPC_ARG_INTEGER; /* a fresh connection, a fresh handshake */
    args[1].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[1].value.integer = 1;
    grpc_channel_args ca = {2, args};
    grpc_channel *ch = grpc_channel_create(target, cr, &ca);
    grpc_channel_credentials_release(cr);
    return ch;
}

static void expect_tls_view(int port, const char *root_file, const char *host)
{
    tl_client_t *c = client_on(tls_channel(port, root_file, host), true, DELTA, NULL, 0);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    Istio__Workload__Address *a = find(r, "c1//Pod/ns/a-0");
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    tl_delta_free(r);
    tl_client_close(c);
}

START_TEST(tls_listener_serves_and_reloads)
{
    char dir[] = "/tmp/meshfed-xds-tls-XXXXXX", cert[128], key[128], old_root[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    gen_cert(dir, "xds-one.meshfed.test");
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(old_root, sizeof(old_root), "%s/root-one.pem", dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s %s", cert, old_root);
    ck_assert_int_eq(system(cmd), 0);
    xds_config_t cfg = {.listen = "127.0.0.1:0",
                        .tls_listen = "127.0.0.1:0",
                        .tls_cert_file = cert,
                        .tls_key_file = key};
    env_t *e = env_new_cfg(&cfg);
    int tport = xds_server_tls_port(e->s);
    ck_assert_int_gt(tport, 0);
    ck_assert_int_ne(tport, e->port);
    expect_tls_view(tport, cert, "xds-one.meshfed.test");
    /* rotate: a new key and name; new connections get the new certificate */
    gen_cert(dir, "xds-two.meshfed.test");
    expect_tls_view(tport, cert, "xds-two.meshfed.test");
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.tls_loads, 2);
    /* the old root no longer verifies the server */
    tl_client_t *c =
        client_on(tls_channel(tport, old_root, "xds-one.meshfed.test"), true, DELTA, NULL, 0);
    char msg[256];
    ck_assert_int_eq(client_status(c, msg, sizeof(msg)), GRPC_STATUS_UNAVAILABLE);
    tl_client_close(c);
    env_free(e);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(tls_missing_files_fail_at_start)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0",
                        .tls_listen = "127.0.0.1:0",
                        .tls_cert_file = "/nonexistent/cert.pem",
                        .tls_key_file = "/nonexistent/key.pem"};
    char err[256] = "";
    ck_assert_ptr_null(xds_server_new(&cfg, err, sizeof(err)));
    ck_assert_msg(strstr(err, "/nonexistent/cert.pem") != NULL, "%s", err);
}
END_TEST

/* ---------- limits ---------- */

/* A wildcard delta stream that got its view and ACKed it. */
static tl_client_t *open_acked(grpc_channel *ch, int port)
{
    tl_client_t *c = ch ? client_on(ch, false, DELTA, NULL, 0) : client_open(port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_gt(r->n_resources, 4);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    return c;
}

/* How many full-state bodies the server caches now. */
static int full_cached(xds_server_t *s)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < XDS_NFULL; i++)
        n += s->full[i].snap != NULL;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Soon after its full state is out (XDS_FULL_KEEP_US), an idle server keeps
 * no body; the next stream to connect gets the same full state, built again. */
START_TEST(full_body_dropped_when_idle)
{
    env_t *e = env_new();
    tl_client_t *c1 = client_open(e->port, DELTA);
    send_first(c1, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r1 = recv_delta(c1, 5000);
    ck_assert_ptr_nonnull(r1);
    send_ack(c1, XDS_TYPE_ADDRESS, r1->nonce, NULL);
    int cached = 1;
    for (int i = 0; i < 600 && (cached = full_cached(e->s)); i++)
        usleep(10000);
    ck_assert_int_eq(cached, 0);
    tl_client_t *c2 = client_open(e->port, DELTA);
    send_first(c2, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r2 = recv_delta(c2, 5000);
    ck_assert_ptr_nonnull(r2);
    ck_assert_uint_gt(r1->n_resources, 4);
    ck_assert_uint_eq(r2->n_resources, r1->n_resources);
    for (size_t i = 0; i < r1->n_resources; i++)
        ck_assert_str_eq(r2->resources[i]->name, r1->resources[i]->name);
    tl_delta_free(r1);
    tl_delta_free(r2);
    tl_client_close(c1);
    tl_client_close(c2);
    env_free(e);
}
END_TEST

static void expect_one_change(tl_client_t *c)
{
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, 1);
    ck_assert_str_eq(r->resources[0]->name, SH_A_N2);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
}

START_TEST(limit_max_streams)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = 3};
    env_t *e = env_new_cfg(&cfg);
    tl_client_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = open_acked(NULL, e->port);
    tl_client_t *extra = client_open(e->port, DELTA);
    char msg[256];
    ck_assert_int_eq(client_status(extra, msg, sizeof(msg)), GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_msg(strstr(msg, "too many streams") != NULL, "%s", msg);
    tl_client_close(extra);
    env_change_capacity(e, 2); /* the admitted ones are undisturbed */
    for (int i = 0; i < 3; i++)
        expect_one_change(c[i]);
    tl_client_close(c[0]); /* a freed slot admits a new stream */
    for (int i = 0; i < 100; i++) {
        xds_stats_t st;
        xds_server_stats(e->s, &st);
        if (st.streams_open == 2)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    c[0] = open_acked(NULL, e->port);
    for (int i = 0; i < 3; i++)
        tl_client_close(c[i]);
    env_free(e);
}
END_TEST

/* Subscribing to ever more names (none of which exist) ends the stream at
 * the limit, as RESOURCE_EXHAUSTED, counted and logged; the next stream of
 * the same client is served as usual. */
static int nlogged;
static char lastlog[512];
static void test_log(void *arg, bool warn, const char *msg)
{
    (void)arg;
    (void)warn;
    nlogged++;
    snprintf(lastlog, sizeof(lastlog), "%s", msg);
}

START_TEST(limit_subscribed_names_per_stream)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_names = 100, .log = test_log};
    env_t *e = env_new_cfg(&cfg);
    nlogged = 0;
    tl_client_t *c = client_open(e->port, DELTA);
    tl_node_buf_t nb;
    char names[40][32], *subs[40];
    grpc_status_code st = GRPC_STATUS_OK;
    for (int round = 0; round < 5 && st == GRPC_STATUS_OK; round++) {
        dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
        rq.node = round ? NULL : tl_node(&nb, "c1", "n1");
        rq.type_url = (char *)XDS_TYPE_ADDRESS;
        for (int i = 0; i < 40; i++) {
            snprintf(names[i], sizeof(names[i]), "missing-%d-%d", round, i);
            subs[i] = names[i];
        }
        rq.resource_names_subscribe = subs;
        rq.n_resource_names_subscribe = 40;
        ck_assert(tl_send_delta(c, &rq));
        if (round == 2) { /* 120 names: over the limit */
            char msg[256];
            st = client_status(c, msg, sizeof(msg));
            ck_assert_int_eq(st, GRPC_STATUS_RESOURCE_EXHAUSTED);
            ck_assert_ptr_nonnull(strstr(msg, "too many subscribed resource names"));
        }
    }
    tl_client_close(c);
    xds_stats_t s;
    xds_server_stats(e->s, &s);
    ck_assert_uint_eq(s.limit_names, 1);
    ck_assert_int_ge(nlogged, 1);
    ck_assert_ptr_nonnull(strstr(lastlog, "more names than allowed"));
    /* a fresh stream of the same client is served */
    c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    tl_delta_free(r);
    tl_client_close(c);
    env_free(e);
}
END_TEST

static const char *known_net(void *arg, const char *cluster)
{
    (void)arg;
    return strcmp(cluster, "c1") == 0 ? "n1" : strcmp(cluster, "c2") == 0 ? "n2" : NULL;
}

static void info_cb(const xds_proxy_info_t *p, void *arg)
{
    if (strcmp(p->cluster, "nope") == 0)
        *(int *)arg = p->unknown_cluster ? 1 : 2;
}

START_TEST(node_unknown_cluster_served_counted_flagged)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0", .network_of = known_net, .log = test_log};
    env_t *e = env_new_cfg(&cfg);
    nlogged = 0;
    tl_client_t *c = client_open(e->port, DELTA);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "nope", "n1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    ck_assert(tl_send_delta(c, &rq));
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r); /* served: an empty view of its own cluster */
    tl_delta_free(r);
    xds_stats_t s;
    xds_server_stats(e->s, &s);
    ck_assert_uint_eq(s.unknown_cluster, 1);
    int flagged = 0;
    xds_server_each_proxy(e->s, info_cb, &flagged);
    ck_assert_int_eq(flagged, 1);
    ck_assert_ptr_nonnull(strstr(lastlog, "\"nope\", which meshfed does not know"));
    tl_client_close(c);
    env_free(e);
}
END_TEST

/* c1's network as the test says it is now */
static const char *c1_net = "n1";
static const char *moving_net(void *arg, const char *cluster)
{
    (void)arg;
    return strcmp(cluster, "c1") == 0 ? c1_net : strcmp(cluster, "c2") == 0 ? "n2" : NULL;
}

static tl_client_t *open_node(int port, const char *cluster, const char *network)
{
    tl_client_t *c = client_open(port, DELTA);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, cluster, network);
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    ck_assert(tl_send_delta(c, &rq));
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    return c;
}

/* A proxy's network is its cluster's: when that network changes its view
 * moved, so the stream ends UNAVAILABLE and ztunnel reconnects to the new
 * view, whatever NETWORK it named; another cluster's proxy keeps its stream. */
START_TEST(cluster_network_change_ends_streams_that_followed_it)
{
    c1_net = "n1";
    xds_config_t cfg = {.listen = "127.0.0.1:0", .network_of = moving_net, .log = test_log};
    env_t *e = env_new_cfg(&cfg);
    tl_client_t *follows = open_node(e->port, "c1", NULL), *names = open_node(e->port, "c1", "n1");
    tl_client_t *other = open_node(e->port, "c2", NULL);
    c1_net = "n9";
    xds_server_networks_changed(e->s);
    env_change_capacity(e, 2); /* a publish */
    char msg[256];
    ck_assert_int_eq(client_status(follows, msg, sizeof(msg)), GRPC_STATUS_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(msg, "network changed"));
    ck_assert_int_eq(client_status(names, msg, sizeof(msg)), GRPC_STATUS_UNAVAILABLE);
    /* c2's proxy stays; the ended streams leave the list on the server's
     * thread, which may come after their clients saw the status */
    char info[128] = "";
    xds_stats_t st = {0};
    for (int i = 0; i < 500 && (xds_server_stats(e->s, &st), st.streams_open > 1); i++)
        usleep(10000);
    xds_server_each_proxy(e->s, proxy_cb, info);
    ck_assert_str_eq(info, "c2|n2||0");
    tl_client_close(follows);
    tl_client_close(names);
    tl_client_close(other);
    env_free(e);
}
END_TEST

START_TEST(listen_refuses_bad_port_and_taken_port)
{
    char err[256];
    xds_config_t cfg = {.listen = "127.0.0.1:70000"};
    ck_assert_ptr_null(xds_server_new(&cfg, err, sizeof(err)));
    ck_assert_msg(strstr(err, "0 to 65535"), "%s", err);
    cfg.listen = "127.0.0.1:0";
    xds_server_t *a = xds_server_new(&cfg, err, sizeof(err));
    ck_assert_ptr_nonnull(a);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", xds_server_port(a));
    cfg.listen = addr; /* a second server on a taken port must fail, not share it */
    ck_assert_ptr_null(xds_server_new(&cfg, err, sizeof(err)));
    ck_assert_msg(strstr(err, "in use"), "%s", err);
    xds_server_free(a);
}
END_TEST

/* A NUL inside the node id would make the proxy known by another name. */
START_TEST(node_id_with_nul_rejected)
{
    env_t *e = env_new();
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    nb.node.id = (char *)"ztunnel~10.0.0.1~evilXname";
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len);
    envoy__service__discovery__v3__delta_discovery_request__pack(&rq, buf);
    uint8_t *x = NULL;
    for (size_t i = 0; !x && i + 9 <= len; i++)
        if (memcmp(buf + i, "evilXname", 9) == 0)
            x = buf + i;
    ck_assert_ptr_nonnull(x);
    x[4] = '\0'; /* "evil\0name" on the wire */
    expect_rejected(e, buf, len, GRPC_STATUS_INVALID_ARGUMENT, "NUL");
    free(buf);
    env_free(e);
}
END_TEST

START_TEST(limit_huge_names_rejected)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_message_bytes = 64 * 1024};
    env_t *e = env_new_cfg(&cfg);
    size_t big = 48 * 1024; /* under the message limit, far over the name limit */
    char *name = malloc(big + 1);
    memset(name, 'n', big);
    name[big] = '\0';
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    char *subs[] = {name};
    rq.resource_names_subscribe = subs;
    rq.n_resource_names_subscribe = 1;
    expect_delta_rejected(e, &rq, "longer than 1024");
    rq.n_resource_names_subscribe = 0;
    nb.node.id = name; /* a huge node id */
    expect_delta_rejected(e, &rq, "node id longer than 1024");
    /* over max_message_bytes: grpc refuses it before we parse anything */
    char *huge = realloc(name, 128 * 1024 + 1);
    memset(huge, 'h', 128 * 1024);
    huge[128 * 1024] = '\0';
    nb.node.id = (char *)"ztunnel~10.0.0.1~z.istio-system~istio-system.svc.cluster.local";
    subs[0] = huge;
    rq.n_resource_names_subscribe = 1;
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len);
    envoy__service__discovery__v3__delta_discovery_request__pack(&rq, buf);
    expect_rejected(e, buf, len, GRPC_STATUS_RESOURCE_EXHAUSTED, "");
    free(buf);
    free(huge);
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.bad_requests, 2);
    env_free(e);
}
END_TEST

/* One connection carrying many streams (a gateway, or a test client). */
START_TEST(limit_many_streams_one_client)
{
    enum { N = 100 };
    env_t *e = env_new();
    grpc_channel *ch = tl_insecure_channel(e->port);
    tl_client_t **c = calloc(N, sizeof(*c));
    for (int i = 0; i < N; i++)
        c[i] = open_acked(ch, 0);
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.streams_open, N);
    env_change_capacity(e, 2);
    for (int i = 0; i < N; i++)
        expect_one_change(c[i]);
    for (int i = 0; i < N; i++)
        tl_client_close(c[i]);
    free(c);
    grpc_channel_destroy(ch);
    env_free(e);
}
END_TEST

/* ---------- a gateway known by hostname ---------- */

START_TEST(hostname_gateway_encoded_as_namespaced_hostname)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    model_cluster_t c2 = {.id = "c2",
                          .network = "n2",
                          .gateway_ns = "gw",
                          .gateway_name = "ew",
                          .gateway_hostname = "ew.example.com"};
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(model_cluster_set(m, &c2, err, sizeof(err)), 0);
    add_service(m, "c2", "a", "10.97.0.1", true, "10.2.0", 2);
    model_snapshot_t *snap = model_commit(m);
    model_view_t v = {.cluster = "c1", .network = "n1"};
    size_t len;
    const model_res_t *r = model_snapshot_get(
        snap, &v, "n2/SplitHorizonWorkload/gw/ew/ew.example.com/ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(r);
    const uint8_t *b = xds_encode_address(r, &len);
    Istio__Workload__Address *a = istio__workload__address__unpack(NULL, len, b);
    ck_assert_ptr_nonnull(a);
    const Istio__Workload__GatewayAddress *g = a->workload->network_gateway;
    ck_assert_int_eq(g->destination_case, ISTIO__WORKLOAD__GATEWAY_ADDRESS__DESTINATION_HOSTNAME);
    ck_assert_str_eq(g->hostname->namespace_, "gw");
    ck_assert_str_eq(g->hostname->hostname, "ew.example.com");
    ck_assert_uint_eq(g->hbone_mtls_port, 15008);
    istio__workload__address__free_unpacked(a, NULL);
    r = model_snapshot_get(snap, &v, "NetworkGateway/n2/ew.example.com/0");
    ck_assert_ptr_nonnull(r);
    b = xds_encode_address(r, &len);
    a = istio__workload__address__unpack(NULL, len, b);
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->workload->hostname, "ew.example.com");
    ck_assert_uint_eq(a->workload->n_addresses, 0);
    ck_assert_str_eq(a->workload->service_account, "ew");
    istio__workload__address__free_unpacked(a, NULL);
    model_snapshot_unref(snap);
    model_free(m);
}
END_TEST

/* ---------- only Workloads and Services go on the Address stream ---------- */

static void count_cb(const model_res_t *r, void *arg)
{
    (void)r;
    (*(size_t *)arg)++;
}

START_TEST(address_stream_only_workloads_and_services)
{
    env_t *e = env_new();
    model_snapshot_t *snap = model_commit(e->m);
    model_view_t v = {.cluster = "c1", .network = "n1"};
    /* an endpoints-family variant shares its service's name; the Address
     * encoder refuses it, so no path can put it in an Address response */
    const model_res_t *ep = model_snapshot_get_endpoints(snap, &v, "ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(ep);
    ck_assert_int_eq(model_res_kind(ep), MODEL_RES_ENDPOINTS);
    size_t len = 99;
    ck_assert_ptr_null(xds_encode_address(ep, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(xds_address_version(ep));
    size_t want = 0;
    model_snapshot_each(snap, &v, count_cb, &want);
    model_snapshot_unref(snap);
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_resources, want);
    for (size_t i = 0; i < r->n_resources; i++) {
        Istio__Workload__Address *a = decode(r->resources[i]->resource);
        ck_assert(a->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_WORKLOAD ||
                  a->type_case == ISTIO__WORKLOAD__ADDRESS__TYPE_SERVICE);
        addr_free(a);
    }
    tl_delta_free(r);
    tl_client_close(c);
    env_free(e);
}
END_TEST

/* ---------- authentication (xds/auth.c) with a fake authenticator ---------- */

/* Tokens "sa:<cluster>:<ns>:<sa>" are valid for <cluster> only; ns
 * "forbidden" is a valid identity that is not allowed; anything else is
 * invalid. Answers come from the fake's own thread (as TokenReviews do),
 * or synchronously from inside the call when sync is set. */
typedef struct fake_job {
    struct fake_job *next;
    char *cluster, *token;
    xds_auth_done_fn done;
    void *arg;
} fake_job_t;

typedef struct fake_auth {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fake_job_t *head;
    bool quit, hold, sync;
    int calls, answered;
    pthread_t thr;
} fake_auth_t;

static void fake_judge(const char *cluster, const char *token, xds_auth_done_fn done, void *arg)
{
    char c[64], ns[64], sa[64], id[256];
    if (sscanf(token, "sa:%63[^:]:%63[^:]:%63s", c, ns, sa) != 3 || strcmp(c, cluster) != 0) {
        done(arg, &(xds_auth_answer_t){.result = XDS_AUTH_UNAUTHENTICATED,
                                       .msg = "token rejected by the fake"});
        return;
    }
    if (strcmp(ns, "forbidden") == 0) {
        done(arg,
             &(xds_auth_answer_t){.result = XDS_AUTH_DENIED, .msg = "not allowed by the fake"});
        return;
    }
    snprintf(id, sizeof(id), "system:serviceaccount:%s:%s", ns, sa);
    done(arg, &(xds_auth_answer_t){.result = XDS_AUTH_OK, .identity = id});
}

static void *fake_thread(void *arg)
{
    fake_auth_t *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->quit && (!f->head || f->hold))
            pthread_cond_wait(&f->cv, &f->mu);
        fake_job_t *j = f->head;
        if (!j)
            break;
        f->head = j->next;
        pthread_mutex_unlock(&f->mu);
        fake_judge(j->cluster, j->token, j->done, j->arg); /* no lock held: xds.h */
        free(j->cluster);
        free(j->token);
        free(j);
        pthread_mutex_lock(&f->mu);
        f->answered++;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static int fake_authenticate(void *arg, const char *cluster, const char *token,
                             xds_auth_purpose_t purpose, xds_auth_done_fn done, void *done_arg)
{
    fake_auth_t *f = arg;
    (void)purpose;
    pthread_mutex_lock(&f->mu);
    f->calls++;
    bool sync = f->sync;
    if (!sync) {
        fake_job_t *j = calloc(1, sizeof(*j));
        *j = (fake_job_t){f->head, strdup(cluster), strdup(token), done, done_arg};
        f->head = j; /* order does not matter here */
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    if (sync)
        fake_judge(cluster, token, done, done_arg);
    return 0;
}

static fake_auth_t *fake_new(void)
{
    fake_auth_t *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pthread_create(&f->thr, NULL, fake_thread, f);
    return f;
}

static void fake_set_hold(fake_auth_t *f, bool hold)
{
    pthread_mutex_lock(&f->mu);
    f->hold = hold;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void fake_free(fake_auth_t *f)
{
    fake_set_hold(f, false);
    pthread_mutex_lock(&f->mu);
    f->quit = true; /* answers what is queued, then ends */
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thr, NULL);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static env_t *env_auth(fake_auth_t *f)
{
    xds_config_t cfg = {.listen = "127.0.0.1:0",
                        .network_of = net_of,
                        .authenticate = fake_authenticate,
                        .authenticate_arg = f};
    return env_new_cfg(&cfg);
}

/* A client with optional token and clusterid metadata; its first request
 * claims CLUSTER_ID node_cluster (NULL: no metadata, header only). */
static tl_client_t *auth_client(env_t *e, const char *token, const char *hdr_cluster,
                                const char *node_cluster)
{
    grpc_metadata md[2];
    memset(md, 0, sizeof(md));
    size_t n = 0;
    char bearer[256];
    if (token) {
        snprintf(bearer, sizeof(bearer), "Bearer %s", token);
        md[n].key = grpc_slice_from_static_string("authorization");
        md[n++].value = grpc_slice_from_copied_string(bearer);
    }
    if (hdr_cluster) {
        md[n].key = grpc_slice_from_static_string("clusterid");
        md[n++].value = grpc_slice_from_copied_string(hdr_cluster);
    }
    tl_client_t *c = client_on(tl_insecure_channel(e->port), true, DELTA, md, n);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(md[i].value);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = node_cluster ? tl_node(&nb, node_cluster, NULL)
                           : tl_node_keys(&nb, "NAME", "ztunnel-abc", NULL, NULL);
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    send_delta(c, &rq);
    return c;
}

static void expect_auth_status(env_t *e, const char *token, const char *hdr, const char *node,
                               grpc_status_code want, const char *needle)
{
    tl_client_t *c = auth_client(e, token, hdr, node);
    char msg[512];
    grpc_status_code got = client_status(c, msg, sizeof(msg));
    ck_assert_msg(got == want, "status %d (%s), want %d", (int)got, msg, (int)want);
    ck_assert_msg(strstr(msg, needle) != NULL, "status message \"%s\" lacks \"%s\"", msg, needle);
    ck_assert_msg(!token || !strstr(msg, token), "the token leaked into \"%s\"", msg);
    tl_client_close(c);
}

START_TEST(auth_missing_or_bad_token_unauthenticated)
{
    fake_auth_t *f = fake_new();
    env_t *e = env_auth(f);
    expect_auth_status(e, NULL, "c1", "c1", GRPC_STATUS_UNAUTHENTICATED, "bearer token");
    ck_assert_int_eq(f->calls, 0); /* nothing to verify: the authenticator is not asked */
    expect_auth_status(e, "junk", "c1", "c1", GRPC_STATUS_UNAUTHENTICATED, "rejected");
    /* a token of c2 presented for c1: c1's API server does not know it */
    expect_auth_status(e, "sa:c2:istio-system:ztunnel", NULL, "c1", GRPC_STATUS_UNAUTHENTICATED,
                       "rejected");
    f->sync = true; /* answered from inside the call */
    expect_auth_status(e, "junk", "c1", "c1", GRPC_STATUS_UNAUTHENTICATED, "rejected");
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.auth_unauthenticated, 4);
    ck_assert_uint_eq(st.auth_ok, 0);
    env_free(e);
    fake_free(f);
}
END_TEST

START_TEST(auth_cluster_mismatch_or_identity_denied)
{
    fake_auth_t *f = fake_new();
    env_t *e = env_auth(f);
    /* a valid c2 token verified with c2, but the node claims c1's view */
    expect_auth_status(e, "sa:c2:istio-system:ztunnel", "c2", "c1", GRPC_STATUS_PERMISSION_DENIED,
                       "claims cluster c1");
    expect_auth_status(e, "sa:c1:forbidden:x", "c1", "c1", GRPC_STATUS_PERMISSION_DENIED,
                       "not allowed");
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.auth_denied, 2);
    env_free(e);
    fake_free(f);
}
END_TEST

/* ---------- CreateCertificate (ca_call.c) ---------- */

/* A PEM CSR of a new P-256 key (caller frees). */
static char *make_csr(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *r = X509_REQ_new();
    ck_assert(k && r && X509_REQ_set_pubkey(r, k) == 1 && X509_REQ_sign(r, k, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    ck_assert(PEM_write_bio_X509_REQ(b, r) == 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(b);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return out;
}

/* Node authorization of the fake: a caller of pod "zt-1" may impersonate
 * anyone in namespace "onnode". */
static bool fake_node_authorize(void *arg, const char *cluster, const char *caller_ns,
                                const char *caller_pod, const char *caller_uid,
                                const char *caller_sa, const char *ns, const char *sa, char *why,
                                size_t whylen)
{
    (void)arg, (void)cluster, (void)caller_ns, (void)caller_uid, (void)caller_sa, (void)sa;
    if (strcmp(caller_pod, "zt-1") == 0 && strcmp(ns, "onnode") == 0)
        return true;
    snprintf(why, whylen, "not on its node");
    return false;
}

static env_t *env_ca(fake_auth_t *f, bool with_ca)
{
    xds_ca_t *ca = NULL;
    char err[256];
    if (with_ca)
        ck_assert_int_eq(xds_ca_new_self_signed("test", 86400, NULL, &ca, err, sizeof(err)), 0);
    xds_config_t cfg = {.listen = "127.0.0.1:0",
                        .network_of = net_of,
                        .authenticate = fake_authenticate,
                        .authenticate_arg = f,
                        .local_cluster = "c1",
                        .ca = ca,
                        .node_authorize = fake_node_authorize};
    return env_new_cfg(&cfg);
}

/* One CreateCertificate call: its status, message and (OK) chain length. */
static grpc_status_code ca_call(env_t *e, const char *token, const char *csr, const char *imp,
                                char *msg, size_t len, size_t *nchain)
{
    grpc_metadata md[1];
    memset(md, 0, sizeof(md));
    char bearer[256];
    snprintf(bearer, sizeof(bearer), "Bearer %s", token ? token : "");
    md[0].key = grpc_slice_from_static_string("authorization");
    md[0].value = grpc_slice_from_copied_string(bearer);
    tl_client_t *c =
        client_on(tl_insecure_channel(e->port), true,
                  "/istio.v1.auth.IstioCertificateService/CreateCertificate", md, token ? 1 : 0);
    grpc_slice_unref(md[0].value);
    Istio__V1__Auth__IstioCertificateRequest rq = ISTIO__V1__AUTH__ISTIO_CERTIFICATE_REQUEST__INIT;
    Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry fe = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT,
                                          *fep = &fe;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    rq.csr = (char *)csr;
    if (imp) {
        v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v.string_value = (char *)imp;
        fe.key = "ImpersonatedIdentity";
        fe.value = &v;
        st.n_fields = 1;
        st.fields = &fep;
        rq.metadata = &st;
    }
    uint8_t buf[4096];
    size_t n = istio__v1__auth__istio_certificate_request__pack(&rq, buf);
    ck_assert(tl_client_send(c, csr ? buf : (const uint8_t *)"\xff\xff", csr ? n : 2));
    *nchain = 0;
    grpc_slice sl;
    while (tl_client_recv(c, 5000, &sl)) {
        Istio__V1__Auth__IstioCertificateResponse *r =
            istio__v1__auth__istio_certificate_response__unpack(NULL, GRPC_SLICE_LENGTH(sl),
                                                                GRPC_SLICE_START_PTR(sl));
        ck_assert_ptr_nonnull(r);
        *nchain = r->n_cert_chain;
        istio__v1__auth__istio_certificate_response__free_unpacked(r, NULL);
        grpc_slice_unref(sl);
    }
    grpc_status_code code = client_status(c, msg, len);
    tl_client_close(c);
    return code;
}

#define CA_EXPECT(e, tok, csr, imp, want, needle)                                                  \
    do {                                                                                           \
        char msg_[512];                                                                            \
        size_t n_;                                                                                 \
        grpc_status_code got_ = ca_call(e, tok, csr, imp, msg_, sizeof(msg_), &n_);                \
        ck_assert_msg(got_ == want, "status %d (%s), want %d", (int)got_, msg_, (int)want);        \
        ck_assert_msg(strstr(msg_, needle), "\"%s\" lacks \"%s\"", msg_, needle);                  \
        ck_assert(want != GRPC_STATUS_OK || n_ == 2); /* leaf, root */                             \
    } while (0)

START_TEST(ca_call_signs_for_the_token_and_refuses_the_rest)
{
    fake_auth_t *f = fake_new();
    env_t *e = env_ca(f, true);
    char *csr = make_csr();
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", csr, NULL, GRPC_STATUS_OK, "");
    f->sync = true; /* a cached answer, from inside the call */
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", csr, NULL, GRPC_STATUS_OK, "");
    f->sync = false;
    CA_EXPECT(e, NULL, csr, NULL, GRPC_STATUS_UNAUTHENTICATED, "bearer token");
    CA_EXPECT(e, "sa:c2:bookinfo:reviews", csr, NULL, GRPC_STATUS_UNAUTHENTICATED, "rejected");
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", "junk", NULL, GRPC_STATUS_INVALID_ARGUMENT, "CSR");
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", NULL, NULL, GRPC_STATUS_INVALID_ARGUMENT,
              "not an IstioCertificateRequest");
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", csr, "spiffe://cluster.local/ns/onnode/sa/x",
              GRPC_STATUS_PERMISSION_DENIED, "not bound to a pod"); /* the fake binds none */
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", csr, "spiffe://other.td/ns/onnode/sa/x",
              GRPC_STATUS_INVALID_ARGUMENT, "ImpersonatedIdentity");
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.ca_requests[XDS_CA_RESULT_OK], 2);
    ck_assert_uint_eq(st.ca_requests[XDS_CA_RESULT_UNAUTHENTICATED], 2);
    ck_assert_uint_eq(st.ca_requests[XDS_CA_RESULT_INVALID], 3);
    ck_assert_uint_eq(st.ca_requests[XDS_CA_RESULT_DENIED], 1);
    ck_assert_uint_eq(st.auth_ok + st.auth_unauthenticated + st.streams_total, 0); /* not xDS */
    xds_ca_t *ca2 = NULL;
    char err[256];
    ck_assert_int_eq(xds_ca_new_self_signed("test2", 86400, NULL, &ca2, err, sizeof(err)), 0);
    xds_server_set_ca(e->s, ca2); /* the old one is freed; the next call signs with ca2 */
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", csr, NULL, GRPC_STATUS_OK, "");
    free(csr);
    env_free(e);
    fake_free(f);
}
END_TEST

START_TEST(ca_call_unimplemented_without_a_ca)
{
    fake_auth_t *f = fake_new();
    env_t *e = env_ca(f, false);
    CA_EXPECT(e, "sa:c1:bookinfo:reviews", "x", NULL, GRPC_STATUS_UNIMPLEMENTED, "CA is off");
    env_free(e);
    fake_free(f);
}
END_TEST

static void identity_cb(const xds_proxy_info_t *p, void *arg)
{
    snprintf(arg, 128, "%s|%s", p->cluster, p->identity ? p->identity : "(null)");
}

/* Nothing is sent before the answer; then the proven cluster's view. */
static void expect_served(env_t *e, fake_auth_t *f, const char *hdr, const char *node)
{
    fake_set_hold(f, true);
    tl_client_t *c = auth_client(e, "sa:c1:istio-system:ztunnel", hdr, node);
    ck_assert_ptr_null(recv_delta(c, 300));
    char info[128] = "";
    xds_server_each_proxy(e->s, identity_cb, info);
    ck_assert_str_eq(info, ""); /* not listed until authenticated */
    fake_set_hold(f, false);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    Istio__Workload__Address *a = find(r, "c1//Pod/ns/a-0");
    ck_assert_ptr_nonnull(a);
    addr_free(a);
    ck_assert_ptr_null(find(r, "c2//Pod/ns/a-0"));
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL); /* reading resumed */
    tl_delta_free(r);
    static int nready = 3; /* a different capacity each time: a change */
    nready = nready == 2 ? 1 : 2;
    env_change_capacity(e, nready);
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    tl_delta_free(r);
    xds_server_each_proxy(e->s, identity_cb, info);
    ck_assert_str_eq(info, "c1|system:serviceaccount:istio-system:ztunnel");
    tl_client_close(c);
}

START_TEST(auth_good_token_serves_view)
{
    fake_auth_t *f = fake_new();
    env_t *e = env_auth(f);
    expect_served(e, f, "c1", NULL); /* ztunnel: header only */
    expect_served(e, f, NULL, "c1"); /* metadata only */
    expect_served(e, f, "c1", "c1");
    f->sync = true;
    tl_client_t *c = auth_client(e, "sa:c1:istio-system:ztunnel", "c1", "c1");
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    tl_delta_free(r);
    tl_client_close(c);
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    ck_assert_uint_eq(st.auth_ok, 4);
    env_free(e);
    fake_free(f);
}
END_TEST

static void wait_streams_gone(env_t *e)
{
    xds_stats_t st;
    for (int i = 0; i < 500; i++) {
        xds_server_stats(e->s, &st);
        if (st.streams_open == 0)
            return;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("streams still open");
}

/* The client goes away while its check is pending: the late answer finds
 * no stream (ASan watches), and the server still frees cleanly. */
START_TEST(auth_cancelled_while_pending)
{
    fake_auth_t *f = fake_new();
    env_t *e = env_auth(f);
    fake_set_hold(f, true);
    for (int i = 0; i < 3; i++) {
        tl_client_t *c = auth_client(e, i ? "sa:c1:istio-system:ztunnel" : "junk", "c1", "c1");
        for (int k = 0; k < 200 && f->calls < i + 1; k++) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        tl_client_close(c);
    }
    ck_assert_int_eq(f->calls, 3);
    wait_streams_gone(e);
    fake_set_hold(f, false);
    pthread_mutex_lock(&f->mu);
    while (f->answered < 3)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    /* one more pending at shutdown: free waits for its answer */
    fake_set_hold(f, true);
    tl_client_t *c = auth_client(e, "sa:c1:istio-system:ztunnel", "c1", "c1");
    for (int k = 0; k < 200 && f->calls < 4; k++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    tl_client_close(c);
    xds_server_shutdown(e->s, 100);
    fake_set_hold(f, false);
    env_free(e);
    fake_free(f);
}
END_TEST

int main(void)
{
    grpc_init(); /* the client side's own reference, across servers */
    Suite *s = suite_create("xds");
    TCase *t = tcase_create("xds");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, delta_wildcard_gets_view);
    tcase_add_test(t, delta_ack_then_push_only_changes);
    tcase_add_test(t, delta_nack_counted_and_no_resend);
    tcase_add_test(t, delta_reconnect_initial_versions_skips_unchanged);
    tcase_add_test(t, delta_on_demand_subscribe_by_name_and_network_ip);
    tcase_add_test(t, delta_missing_node_rejected);
    tcase_add_test(t, delta_unknown_type_url_rejected);
    tcase_add_test(t, delta_malformed_request_rejected);
    tcase_add_test(t, authorization_type_empty_set);
    tcase_add_test(t, sotw_full_state);
    tcase_add_test(t, full_body_dropped_when_idle);
    tcase_add_test(t, bad_stream_does_not_disturb_good_one);
    tcase_add_test(t, node_ztunnel_clusterid_header_and_network_hook);
    tcase_add_test(t, node_istio_meta_prefixed_keys);
    tcase_add_test(t, tls_listener_serves_and_reloads);
    tcase_add_test(t, tls_missing_files_fail_at_start);
    tcase_add_test(t, limit_max_streams);
    tcase_add_test(t, limit_huge_names_rejected);
    tcase_add_test(t, node_id_with_nul_rejected);
    tcase_add_test(t, limit_subscribed_names_per_stream);
    tcase_add_test(t, node_unknown_cluster_served_counted_flagged);
    tcase_add_test(t, listen_refuses_bad_port_and_taken_port);
    tcase_add_test(t, cluster_network_change_ends_streams_that_followed_it);
    tcase_add_test(t, limit_many_streams_one_client);
    tcase_add_test(t, address_stream_only_workloads_and_services);
    tcase_add_test(t, hostname_gateway_encoded_as_namespaced_hostname);
    tcase_add_test(t, auth_missing_or_bad_token_unauthenticated);
    tcase_add_test(t, auth_cluster_mismatch_or_identity_denied);
    tcase_add_test(t, ca_call_signs_for_the_token_and_refuses_the_rest);
    tcase_add_test(t, ca_call_unimplemented_without_a_ca);
    tcase_add_test(t, auth_good_token_serves_view);
    tcase_add_test(t, auth_cancelled_while_pending);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    grpc_shutdown();
    return failed != 0;
}
