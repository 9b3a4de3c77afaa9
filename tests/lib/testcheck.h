/*
 * testcheck.h - the tests' asserting forms of testlib.h's blocking client
 * and model builders (check.h; for tests/test_*.c only: nothing of it is in meshfed_testlib,
 * which the benches link).
 */
#ifndef MESHFED_TESTCHECK_H
#define MESHFED_TESTCHECK_H

#include "testlib.h"

#include <check.h>

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

#endif
