/*
 * testcheck.h - the tests' asserting forms of testlib.h's blocking client
 * and model builders (check.h; for tests/test_*.c only: nothing of it is in meshfed_testlib,
 * which the benches link).
 */
#ifndef MESHFED_TESTCHECK_H
#define MESHFED_TESTCHECK_H

#include "testlib.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest dreq_t;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryResponse dresp_t;

static inline tl_client_t *client_on(grpc_channel *ch, bool own, const char *method,
                                     grpc_metadata *md, size_t nmd)
{
    tl_client_t *c = tl_client_on(ch, own, method, md, nmd);
    ck_assert_ptr_nonnull(c);
    return c;
}

static inline tl_client_t *client_open(int port, const char *method)
{
    return client_on(tl_insecure_channel(port), true, method, NULL, 0);
}

static inline void client_send(tl_client_t *c, const uint8_t *buf, size_t len)
{
    ck_assert(tl_client_send(c, buf, len));
}

static inline void send_delta(tl_client_t *c, dreq_t *rq)
{
    ck_assert(tl_send_delta(c, rq));
}

static inline void send_first(tl_client_t *c, const char *type, char **subs, size_t nsubs)
{
    ck_assert(tl_send_first(c, type, subs, nsubs));
}

static inline void send_ack(tl_client_t *c, const char *type, const char *nonce, const char *nack)
{
    ck_assert(tl_send_ack(c, type, nonce, nack));
}

/* The next response, or NULL when none comes within ms; fails on garbage. */
static inline dresp_t *recv_delta(tl_client_t *c, int ms)
{
    dresp_t *r;
    ck_assert_int_ge(tl_recv_delta(c, ms, &r), 0);
    return r;
}

/* model_apply of obj (taken), failing the test with the model's reason. */
static inline void apply_op(model_t *m, const char *cluster, model_kind_t k, model_op_t op,
                            void *obj)
{
    char err[MODEL_ERRLEN];
    ck_assert_msg(model_apply(m, cluster, k, op, obj, err, sizeof(err)) == 0, "%s", err);
}

static inline void apply(model_t *m, const char *cluster, model_kind_t k, void *obj)
{
    apply_op(m, cluster, k, MODEL_OP_UPSERT, obj);
}

/* tl_add_cluster, failing the test with its reason. */
static inline void add_cluster(model_t *m, const char *id, const char *network, const char *gw)
{
    char err[MODEL_ERRLEN];
    ck_assert_msg(tl_add_cluster(m, id, network, gw, err, sizeof(err)) == 0, "%s", err);
}

/* ---------- model objects for the model's tests ---------- */

/* Labels from a NULL-ended list of key, value pairs (kv may be NULL). */
static inline void set_labels(model_labels_t *l, const char *const *kv)
{
    for (; kv && kv[0]; kv += 2)
        ck_assert_int_eq(model_labels_set(l, kv[0], kv[1]), 0);
}

static inline model_namespace_t *new_ns(const char *name, const char *const *kv)
{
    model_namespace_t *n = calloc(1, sizeof(*n));
    n->name = strdup(name);
    set_labels(&n->labels, kv);
    return n;
}

/* Service ns/name with VIP vip (NULL: none) and one port "http" port -> 8080. */
static inline model_service_t *new_svc(const char *ns, const char *name, const char *vip,
                                       const char *const *kv, uint16_t port)
{
    model_service_t *s = calloc(1, sizeof(*s));
    s->ns = strdup(ns);
    s->name = strdup(name);
    set_labels(&s->labels, kv);
    if (vip) {
        s->cluster_ips = calloc(1, sizeof(model_ip_t));
        ck_assert_int_eq(model_ip_parse(vip, &s->cluster_ips[0]), 0);
        s->ncluster_ips = 1;
    }
    s->ports = calloc(1, sizeof(model_svc_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = port;
    s->ports[0].target_port = 8080;
    s->nports = 1;
    return s;
}

/* A ready, ambient-enrolled pod ns/name of service account default (node
 * and labels may be NULL). */
static inline model_pod_t *new_pod(const char *ns, const char *name, const char *ip,
                                   const char *node, const char *const *kv)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    p->ns = strdup(ns);
    p->name = strdup(name);
    p->ips = calloc(1, sizeof(model_ip_t));
    ck_assert_int_eq(model_ip_parse(ip, &p->ips[0]), 0);
    p->nips = 1;
    p->node = node ? strdup(node) : NULL;
    p->service_account = strdup("default");
    p->ambient = true; /* enrolled: istio-cni annotated it */
    p->ready = true;
    set_labels(&p->labels, kv);
    return p;
}

#endif
