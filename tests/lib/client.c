/*
 * client.c - a blocking grpc core client for one ADS call (the tests'
 * ztunnel): its own completion queue, a call, send and receive with
 * timeouts, and Delta requests and responses.
 */
#include "testlib.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>

int tl_wait_tag(tl_client_t *c, int tag, int ms)
{
    gpr_timespec dl =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
    while (!c->done[tag]) {
        grpc_event ev = grpc_completion_queue_next(c->cq, dl, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return 0;
        if (ev.type != GRPC_OP_COMPLETE)
            return -1;
        int t = (int)(intptr_t)ev.tag;
        c->done[t] = true;
        c->pending[t] = false;
        c->okv[t] = ev.success;
    }
    c->done[tag] = false;
    return 1;
}

bool tl_batch(tl_client_t *c, grpc_op *ops, size_t n, int tag)
{
    c->pending[tag] = true;
    return grpc_call_start_batch(c->call, ops, n, (void *)(intptr_t)tag, NULL) == GRPC_CALL_OK;
}

tl_client_t *tl_client_on(grpc_channel *ch, bool own, const char *method, grpc_metadata *md,
                          size_t nmd)
{
    tl_client_t *c = calloc(1, sizeof(*c));
    c->ch = ch;
    c->own_ch = own;
    c->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice m = grpc_slice_from_static_string(method);
    c->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&c->imd);
    grpc_metadata_array_init(&c->tmd);
    grpc_op ops[2] = {0};
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = nmd;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.status = &c->status;
    ops[1].data.recv_status_on_client.status_details = &c->details;
    ops[1].data.recv_status_on_client.trailing_metadata = &c->tmd;
    if (!tl_batch(c, ops, 1, TL_T_SEND) || tl_wait_tag(c, TL_T_SEND, 5000) != 1 ||
        !tl_batch(c, &ops[1], 1, TL_T_STATUS)) {
        tl_client_close(c);
        return NULL;
    }
    return c;
}

grpc_channel *tl_insecure_channel(int port)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, cr, NULL);
    grpc_channel_credentials_release(cr);
    return ch;
}

tl_client_t *tl_client_open(int port, const char *method)
{
    return tl_client_on(tl_insecure_channel(port), true, method, NULL, 0);
}

bool tl_client_send(tl_client_t *c, const uint8_t *buf, size_t len)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op op = {0};
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    bool ok = tl_batch(c, &op, 1, TL_T_SEND) && tl_wait_tag(c, TL_T_SEND, 5000) == 1;
    grpc_byte_buffer_destroy(bb);
    return ok;
}

bool tl_client_recv(tl_client_t *c, int ms, grpc_slice *out)
{
    if (!c->pending[TL_T_RECV] && !c->done[TL_T_RECV]) {
        grpc_op ops[2] = {0};
        size_t n = 0;
        if (!c->got_imd) { /* grpc core wants it before the first message */
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n++].data.recv_initial_metadata.recv_initial_metadata = &c->imd;
            c->got_imd = true;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &c->rbuf;
        if (!tl_batch(c, ops, n, TL_T_RECV))
            return false;
    }
    if (tl_wait_tag(c, TL_T_RECV, ms) != 1)
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

void tl_client_close(tl_client_t *c)
{
    grpc_call_cancel(c->call, NULL);
    for (int t = 1; t < 4; t++)
        if (c->pending[t])
            tl_wait_tag(c, t, 5000);
    if (c->rbuf)
        grpc_byte_buffer_destroy(c->rbuf);
    grpc_call_unref(c->call);
    if (c->own_ch)
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

Envoy__Config__Core__V3__Node *tl_node_keys(tl_node_buf_t *b, const char *ckey, const char *cluster,
                                            const char *nkey, const char *network)
{
    envoy__config__core__v3__node__init(&b->node);
    google__protobuf__struct__init(&b->md);
    b->node.id = (char *)"ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local";
    b->node.metadata = &b->md;
    const char *keys[2] = {ckey, nkey}, *vals[2] = {cluster, network};
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

Envoy__Config__Core__V3__Node *tl_node(tl_node_buf_t *b, const char *cluster, const char *network)
{
    return tl_node_keys(b, "CLUSTER_ID", cluster, "NETWORK", network);
}

bool tl_send_delta(tl_client_t *c, Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq)
{
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(rq);
    uint8_t *buf = malloc(len + 1);
    envoy__service__discovery__v3__delta_discovery_request__pack(rq, buf);
    bool ok = tl_client_send(c, buf, len);
    free(buf);
    return ok;
}

bool tl_send_first(tl_client_t *c, const char *type, char **subs, size_t nsubs)
{
    tl_node_buf_t nb;
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)type;
    rq.resource_names_subscribe = subs;
    rq.n_resource_names_subscribe = nsubs;
    return tl_send_delta(c, &rq);
}

bool tl_send_ack(tl_client_t *c, const char *type, const char *nonce, const char *nack)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    rq.type_url = (char *)type;
    rq.response_nonce = (char *)nonce;
    if (nack) {
        st.code = 3;
        st.message = (char *)nack;
        rq.error_detail = &st;
    }
    return tl_send_delta(c, &rq);
}

int tl_recv_delta(tl_client_t *c, int ms,
                  Envoy__Service__Discovery__V3__DeltaDiscoveryResponse **out)
{
    grpc_slice sl;
    *out = NULL;
    if (!tl_client_recv(c, ms, &sl))
        return 0;
    *out = envoy__service__discovery__v3__delta_discovery_response__unpack(
        NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return *out ? 1 : -1;
}

void tl_delta_free(Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r)
{
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
}
