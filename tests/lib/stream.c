/*
 * stream.c - an asynchronous ztunnel-like Delta ADS stream, many of which
 * share a few completion queues (the benches' clients): the tag of each
 * operation, requests, ACKs, receives, re-opening a call the server dropped,
 * and reading a response's version and nonce without decoding it.
 */
#include "testlib.h"
#include "xds.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *tl_stream_tag(tl_stream_t *s, int op)
{
    return (void *)((uintptr_t)s | (uintptr_t)op);
}

tl_stream_t *tl_stream_of(void *tag, int *op)
{
    *op = (int)((uintptr_t)tag & 7);
    return (tl_stream_t *)((uintptr_t)tag & ~(uintptr_t)7);
}

bool tl_stream_start(tl_stream_t *s, grpc_op *ops, size_t n, int op)
{
    return grpc_call_start_batch(s->call, ops, n, tl_stream_tag(s, op), NULL) == GRPC_CALL_OK;
}

bool tl_stream_send_req(tl_stream_t *s, Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq,
                        bool first)
{
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(rq);
    uint8_t small[512], *buf = len <= sizeof(small) ? small : malloc(len);
    if (!buf)
        return false;
    envoy__service__discovery__v3__delta_discovery_request__pack(rq, buf);
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    if (buf != small)
        free(buf);
    s->sbuf = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (first) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        if (s->wait_for_ready)
            ops[n].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY |
                           GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->sbuf;
    s->sending = true;
    return tl_stream_start(s, ops, n, TL_OP_SEND);
}

bool tl_stream_send_first(tl_stream_t *s)
{
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    Google__Protobuf__Struct md = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry e[2], *ep[2] = {&e[0], &e[1]};
    Google__Protobuf__Value v[2];
    const char *keys[2] = {"CLUSTER_ID", "NETWORK"}, *vals[2] = {"c0", "n0"};
    for (int i = 0; i < 2; i++) {
        google__protobuf__struct__fields_entry__init(&e[i]);
        google__protobuf__value__init(&v[i]);
        v[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v[i].string_value = (char *)vals[i];
        e[i].key = (char *)keys[i];
        e[i].value = &v[i];
    }
    md.n_fields = 2;
    md.fields = ep;
    node.id = (char *)"ztunnel~10.0.0.1~ztunnel-bench.istio-system~istio-system.svc.cluster.local";
    node.metadata = &md;
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = &node;
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    return tl_stream_send_req(s, &rq, true);
}

bool tl_stream_send_ack(tl_stream_t *s, const char *nonce)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    rq.response_nonce = (char *)nonce;
    return tl_stream_send_req(s, &rq, false);
}

bool tl_stream_start_recv(tl_stream_t *s)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!s->got_imd) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
        s->got_imd = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->rbuf;
    s->recving = true;
    return tl_stream_start(s, ops, n, TL_OP_RECV);
}

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

bool tl_scan_response(const uint8_t *p, size_t len, uint64_t *version, char *nonce, size_t nlen)
{
    const uint8_t *end = p + len;
    bool have_v = false;
    nonce[0] = '\0';
    while (p < end) {
        uint64_t key, n;
        if (!varint(&p, end, &key))
            return false;
        if ((key & 7) == 0) {
            if (!varint(&p, end, &n))
                return false;
            continue;
        }
        if ((key & 7) != 2 || !varint(&p, end, &n))
            return false;
        if (n > (uint64_t)(end - p)) /* runs past what we read */
            break;
        if (key >> 3 == 1 && n < 24) {
            char num[24];
            memcpy(num, p, n);
            num[n] = '\0';
            *version = strtoull(num, NULL, 10);
            have_v = true;
        } else if (key >> 3 == 5 && n < nlen) {
            memcpy(nonce, p, n);
            nonce[n] = '\0';
        }
        p += n;
        if (have_v && nonce[0])
            break;
    }
    return have_v && nonce[0];
}

/* The server puts version and nonce before the resources: read only the
 * first few KB instead of copying megabytes per response. */
static bool scan_rbuf(tl_stream_t *s, uint64_t *v, char *nonce, size_t nlen)
{
    uint8_t head[4096];
    size_t hlen = 0;
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, s->rbuf);
    grpc_slice sl;
    while (hlen < sizeof(head) && grpc_byte_buffer_reader_next(&rd, &sl)) {
        size_t n = GRPC_SLICE_LENGTH(sl) < sizeof(head) - hlen ? GRPC_SLICE_LENGTH(sl)
                                                               : sizeof(head) - hlen;
        memcpy(head + hlen, GRPC_SLICE_START_PTR(sl), n);
        hlen += n;
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&rd);
    if (tl_scan_response(head, hlen, v, nonce, nlen))
        return true;
    /* a server that puts them last (protobuf-c field order): read it all */
    grpc_byte_buffer_reader_init(&rd, s->rbuf);
    sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    bool ok = tl_scan_response(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), v, nonce, nlen);
    grpc_slice_unref(sl);
    return ok;
}

static void ack(tl_streams_t *ss, tl_stream_t *s, const char *nonce)
{
    if (!tl_stream_send_ack(s, nonce))
        ss->fail("send_ack");
}

static void on_recv(tl_streams_t *ss, tl_stream_t *s)
{
    uint64_t t = tl_now_ns();
    if (!s->rbuf) {
        s->done = true;
        return;
    }
    uint64_t v = 0;
    char nonce[32];
    if (!scan_rbuf(s, &v, nonce, sizeof(nonce)))
        ss->fail("bad response");
    s->responses++;
    __atomic_add_fetch(&ss->bytes, grpc_byte_buffer_length(s->rbuf), __ATOMIC_RELAXED);
    if (ss->capture)
        ss->capture(ss, s, s->rbuf, v);
    grpc_byte_buffer_destroy(s->rbuf);
    s->rbuf = NULL;
    if (s->sending)
        snprintf(s->pending_nonce, sizeof(s->pending_nonce), "%s", nonce);
    else
        ack(ss, s, nonce);
    if (!tl_stream_start_recv(s))
        ss->fail("start_batch");
    ss->reach(ss, s, v, t);
}

static void open_call(tl_streams_t *ss, tl_stream_t *s)
{
    s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, ss->cq[s->cq],
                                       grpc_slice_from_static_string(TL_DELTA), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->got_imd = s->done = false;
    s->pending_nonce[0] = '\0';
    s->responses = 0;
    s->calls++;
    s->recving = true; /* the call cannot be over before its receive is started */
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->details;
    op.data.recv_status_on_client.trailing_metadata = &s->tmd;
    if (!tl_stream_start(s, &op, 1, TL_OP_STATUS) || !tl_stream_send_first(s) ||
        !tl_stream_start_recv(s))
        ss->fail("start_batch");
}

/* The status has come and no batch is in flight: the call is over. A
 * ztunnel makes a new one; one the server refused before any response waits
 * first, so that a refusal is not retried in a busy loop. */
static void call_over(tl_streams_t *ss, tl_stream_t *s)
{
    s->ended = false;
    if (ss->ended)
        ss->ended(ss, s);
    if (!ss->reconnect_ms)
        return;
    grpc_call_unref(s->call);
    s->call = NULL;
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_slice_unref(s->details);
    if (s->responses) {
        open_call(ss, s);
        return;
    }
    s->due = tl_now_ns() + (uint64_t)ss->reconnect_ms * 1000000u;
    s->later = ss->later[s->cq];
    ss->later[s->cq] = s;
}

/* Re-opens the streams of queue q whose wait is over. */
static void open_due(tl_streams_t *ss, int q)
{
    uint64_t now = tl_now_ns();
    tl_stream_t **pp = &ss->later[q];
    while (*pp) {
        tl_stream_t *s = *pp;
        if (s->due > now) {
            pp = &s->later;
            continue;
        }
        *pp = s->later;
        s->later = NULL;
        open_call(ss, s);
    }
}

static void on_event(tl_streams_t *ss, grpc_event ev)
{
    int op;
    tl_stream_t *s = tl_stream_of(ev.tag, &op);
    switch (op) {
    case TL_OP_SEND:
        grpc_byte_buffer_destroy(s->sbuf);
        s->sbuf = NULL;
        s->sending = false;
        if (s->pending_nonce[0] && ev.success) {
            char nonce[32];
            memcpy(nonce, s->pending_nonce, sizeof(nonce));
            s->pending_nonce[0] = '\0';
            ack(ss, s, nonce);
        }
        break;
    case TL_OP_RECV:
        s->recving = false;
        if (ev.success)
            on_recv(ss, s);
        else
            s->done = true;
        break;
    case TL_OP_STATUS:
        s->done = s->ended = true;
        break;
    }
    if (s->ended && !s->recving && !s->sending)
        call_over(ss, s);
}

static void *cq_thread(void *arg)
{
    tl_streams_t *ss = ((tl_cq_arg_t *)arg)->ss;
    int i = ((tl_cq_arg_t *)arg)->i;
    for (;;) {
        /* wakes now and then for the streams waiting to re-open */
        gpr_timespec dl =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(ss->cq[i], dl, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(ss, ev);
        if (ss->later[i])
            open_due(ss, i);
    }
    return NULL;
}

void tl_streams_init(tl_streams_t *ss, int n,
                     void (*reach)(tl_streams_t *, tl_stream_t *, uint64_t, uint64_t),
                     void (*fail)(const char *))
{
    ss->n = n;
    ss->st = calloc((size_t)n, sizeof(*ss->st));
    ss->reach = reach;
    ss->fail = fail;
    ss->capture = NULL;
    ss->ended = NULL;
    ss->reconnect_ms = ss->connect_timeout_ms = 0;
    for (int i = 0; i < TL_NCQ; i++) {
        ss->later[i] = NULL;
        ss->cq[i] = grpc_completion_queue_create_for_next(NULL);
        ss->arg[i] = (tl_cq_arg_t){ss, i};
        pthread_create(&ss->thr[i], NULL, cq_thread, &ss->arg[i]);
    }
}

void tl_streams_open(tl_streams_t *ss, int i, const char *target)
{
    tl_stream_t *s = &ss->st[i];
    grpc_arg args[6];
    size_t n = 0;
    args[n].type = GRPC_ARG_INTEGER; /* one connection per stream, like ztunnels */
    args[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[n++].value.integer = 1;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = -1;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)"meshfed.bench.client";
    args[n++].value.integer = i;
    if (ss->reconnect_ms > 0) {
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
        args[n++].value.integer = ss->reconnect_ms;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
        args[n++].value.integer = 10 * ss->reconnect_ms;
    }
    if (ss->connect_timeout_ms > 0) {
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
        args[n++].value.integer = ss->connect_timeout_ms;
    }
    grpc_channel_args ca = {n, args};
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    s->ch = grpc_channel_create(target, cr, &ca);
    grpc_channel_credentials_release(cr);
    s->cq = i % TL_NCQ;
    s->wait_for_ready = ss->reconnect_ms > 0;
    open_call(ss, s);
}
