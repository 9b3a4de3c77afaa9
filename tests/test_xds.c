/*
 * test_xds.c - the xDS server end to end: a grpc core client talks delta and
 * SotW ADS to a server fed with snapshots of a two-network mesh, and every
 * test decodes what came back.
 */
#include "model/model.h"
#include "xds/xds.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#include <check.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define SOTW "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
#define SH_A_N2 "n2/SplitHorizonWorkload/istio-system/istio-eastwest/192.0.2.2/ns/a.ns.svc.cluster.local"

/* ---------- the mesh (as in test_model.c) ---------- */

static void apply(model_t *m, const char *cluster, model_kind_t k, void *obj)
{
    char err[MODEL_ERRLEN];
    ck_assert_msg(model_apply(m, cluster, k, MODEL_OP_UPSERT, obj, err, sizeof(err)) == 0, "%s",
                  err);
}

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
    s->ports = calloc(1, sizeof(model_svc_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = 80;
    s->ports[0].target_port = 8080;
    s->nports = 1;
    return s;
}

static model_endpointslice_t *mk_slice(const char *svc, const char *ipbase, int n, int nready)
{
    model_endpointslice_t *s = calloc(1, sizeof(*s));
    s->ns = strdup("ns");
    char name[64];
    snprintf(name, sizeof(name), "%s-abc", svc);
    s->name = strdup(name);
    s->service = strdup(svc);
    s->ports = calloc(1, sizeof(model_ep_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = 8080;
    s->nports = 1;
    s->endpoints = calloc((size_t)n, sizeof(model_endpoint_t));
    s->nendpoints = (size_t)n;
    for (int i = 0; i < n; i++) {
        char ip[64], pod[64];
        snprintf(ip, sizeof(ip), "%s.%d", ipbase, i + 1);
        snprintf(pod, sizeof(pod), "%s-%d", svc, i);
        ck_assert_int_eq(model_ip_parse(ip, &s->endpoints[i].ip), 0);
        s->endpoints[i].ready = i < nready;
        s->endpoints[i].pod = strdup(pod);
    }
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
    p->ready = true;
    return p;
}

static void add_service(model_t *m, const char *cluster, const char *name, const char *vip,
                        bool global, const char *ipbase, int n)
{
    apply(m, cluster, MODEL_KIND_SERVICE, mk_svc("ns", name, vip, global));
    for (int i = 0; i < n; i++) {
        char ip[64], pod[64];
        snprintf(ip, sizeof(ip), "%s.%d", ipbase, i + 1);
        snprintf(pod, sizeof(pod), "%s-%d", name, i);
        apply(m, cluster, MODEL_KIND_POD, mk_pod(pod, ip));
    }
    apply(m, cluster, MODEL_KIND_ENDPOINTSLICE, mk_slice(name, ipbase, n, n));
}

static void add_cluster(model_t *m, const char *id, const char *network, const char *gw)
{
    model_cluster_t c = {.id = id, .network = network};
    ck_assert_int_eq(model_ip_parse(gw, &c.gateway), 0);
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(model_cluster_set(m, &c, err, sizeof(err)), 0);
}

/* A test environment: the model, a server on 127.0.0.1:0 with its first snapshot. */
typedef struct env {
    model_t *m;
    xds_server_t *s;
    int port;
} env_t;

static env_t *env_new(void)
{
    env_t *e = calloc(1, sizeof(*e));
    e->m = model_new(NULL);
    add_cluster(e->m, "c1", "n1", "192.0.2.1");
    add_cluster(e->m, "c2", "n2", "192.0.2.2");
    add_service(e->m, "c1", "a", "10.96.0.1", true, "10.1.0", 1);
    add_service(e->m, "c2", "a", "10.97.0.1", true, "10.2.0", 3);
    add_service(e->m, "c1", "b", "10.96.0.2", false, "10.1.1", 1);
    add_service(e->m, "c2", "private", "10.97.0.9", false, "10.2.9", 2);
    xds_config_t cfg = {.listen = "127.0.0.1:0"};
    char err[256];
    e->s = xds_server_new(&cfg, err, sizeof(err));
    ck_assert_msg(e->s != NULL, "%s", err);
    e->port = xds_server_port(e->s);
    ck_assert_int_gt(e->port, 0);
    ck_assert_int_eq(xds_server_start(e->s), 0);
    model_snapshot_t *snap = model_commit(e->m);
    xds_server_publish(e->s, snap);
    model_snapshot_unref(snap);
    return e;
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

/* ---------- a grpc core client ---------- */

enum { T_SEND = 1, T_RECV, T_STATUS };

typedef struct client {
    grpc_channel *ch;
    grpc_completion_queue *cq;
    grpc_call *call;
    bool done[4], pending[4];
    int okv[4];
    grpc_byte_buffer *rbuf;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
} client_t;

/* Waits for tag; other completions are recorded. false on timeout. */
static bool wait_tag(client_t *c, int tag, int ms)
{
    gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
    while (!c->done[tag]) {
        grpc_event ev = grpc_completion_queue_next(c->cq, dl, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return false;
        ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
        int t = (int)(intptr_t)ev.tag;
        c->done[t] = true;
        c->pending[t] = false;
        c->okv[t] = ev.success;
    }
    c->done[tag] = false;
    return true;
}

static void batch(client_t *c, grpc_op *ops, size_t n, int tag)
{
    c->pending[tag] = true;
    ck_assert_int_eq(grpc_call_start_batch(c->call, ops, n, (void *)(intptr_t)tag, NULL),
                     GRPC_CALL_OK);
}

static client_t *client_open(int port, const char *method)
{
    client_t *c = calloc(1, sizeof(*c));
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, cr, NULL);
    grpc_channel_credentials_release(cr);
    c->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice m = grpc_slice_from_static_string(method);
    c->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&c->imd);
    grpc_metadata_array_init(&c->tmd);
    grpc_op ops[2] = {0};
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.status = &c->status;
    ops[1].data.recv_status_on_client.status_details = &c->details;
    ops[1].data.recv_status_on_client.trailing_metadata = &c->tmd;
    batch(c, ops, 1, T_SEND);
    ck_assert(wait_tag(c, T_SEND, 5000));
    batch(c, &ops[1], 1, T_STATUS);
    return c;
}

static void client_send(client_t *c, const uint8_t *buf, size_t len)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op op = {0};
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    batch(c, &op, 1, T_SEND);
    ck_assert(wait_tag(c, T_SEND, 5000));
    grpc_byte_buffer_destroy(bb);
}

/* The next message as a slice, or an empty slice on timeout / end of stream. */
static bool client_recv(client_t *c, int ms, grpc_slice *out)
{
    if (!c->pending[T_RECV] && !c->done[T_RECV]) {
        grpc_op ops[2] = {0};
        size_t n = 0;
        static bool dummy;
        (void)dummy;
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &c->rbuf;
        batch(c, ops, n, T_RECV);
    }
    if (!wait_tag(c, T_RECV, ms))
        return false;
    if (!c->rbuf)
        return false;
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, c->rbuf);
    *out = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(c->rbuf);
    c->rbuf = NULL;
    return true;
}

static grpc_status_code client_status(client_t *c, char *msg, size_t len)
{
    ck_assert(wait_tag(c, T_STATUS, 5000));
    snprintf(msg, len, "%.*s", (int)GRPC_SLICE_LENGTH(c->details),
             (const char *)GRPC_SLICE_START_PTR(c->details));
    return c->status;
}

static void client_close(client_t *c)
{
    grpc_call_cancel(c->call, NULL);
    for (int t = 1; t < 4; t++)
        if (c->pending[t])
            wait_tag(c, t, 5000);
    if (c->rbuf)
        grpc_byte_buffer_destroy(c->rbuf);
    grpc_call_unref(c->call);
    grpc_channel_destroy(c->ch);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
    grpc_metadata_array_destroy(&c->imd);
    grpc_metadata_array_destroy(&c->tmd);
    grpc_slice_unref(c->details);
    free(c);
}

/* ---------- requests ---------- */

typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest dreq_t;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryResponse dresp_t;

/* Node with CLUSTER_ID / NETWORK metadata (either may be NULL). */
typedef struct node_buf {
    Envoy__Config__Core__V3__Node node;
    Google__Protobuf__Struct md;
    Google__Protobuf__Struct__FieldsEntry e[2], *ep[2];
    Google__Protobuf__Value v[2];
} node_buf_t;

static Envoy__Config__Core__V3__Node *mk_node(node_buf_t *b, const char *cluster,
                                              const char *network)
{
    envoy__config__core__v3__node__init(&b->node);
    google__protobuf__struct__init(&b->md);
    b->node.id = (char *)"ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local";
    b->node.metadata = &b->md;
    const char *keys[2] = {"CLUSTER_ID", "NETWORK"}, *vals[2] = {cluster, network};
    for (int i = 0; i < 2; i++) {
        if (!vals[i])
            continue;
        google__protobuf__struct__fields_entry__init(&b->e[i]);
        google__protobuf__value__init(&b->v[i]);
        b->v[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        b->v[i].string_value = (char *)vals[i];
        b->e[i].key = (char *)keys[i];
        b->e[i].value = &b->v[i];
        b->ep[b->md.n_fields++] = &b->e[i];
    }
    b->md.fields = b->ep;
    return &b->node;
}

static void send_delta(client_t *c, dreq_t *rq)
{
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(rq);
    uint8_t *buf = malloc(len + 1);
    envoy__service__discovery__v3__delta_discovery_request__pack(rq, buf);
    client_send(c, buf, len);
    free(buf);
}

/* First request of a c1/n1 ztunnel for type, with optional subscriptions. */
static void send_first(client_t *c, const char *type, char **subs, size_t nsubs)
{
    node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = mk_node(&nb, "c1", "n1");
    rq.type_url = (char *)type;
    rq.resource_names_subscribe = subs;
    rq.n_resource_names_subscribe = nsubs;
    send_delta(c, &rq);
}

static void send_ack(client_t *c, const char *type, const char *nonce, const char *nack)
{
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    rq.type_url = (char *)type;
    rq.response_nonce = (char *)nonce;
    if (nack) {
        st.code = 3;
        st.message = (char *)nack;
        rq.error_detail = &st;
    }
    send_delta(c, &rq);
}

static dresp_t *recv_delta(client_t *c, int ms)
{
    grpc_slice sl;
    if (!client_recv(c, ms, &sl))
        return NULL;
    dresp_t *r = envoy__service__discovery__v3__delta_discovery_response__unpack(
        NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    ck_assert_ptr_nonnull(r);
    return r;
}

static void dresp_free(dresp_t *r)
{
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
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
