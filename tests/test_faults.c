/*
 * test_faults.c - xDS fault injection against a real server in-process on
 * 127.0.0.1:0: a client that never ACKs, clients that vanish mid-push, a
 * half-closed stream and a shutdown mid-push, a reconnect storm (afresh, then
 * with initial_resource_versions) while the model churns, and a reconnect
 * with initial_resource_versions after churn. Every client state is a map
 * name -> version, compared with what a freshly connected wildcard client gets.
 *
 * FAULTS_STORM=N sets the number of streams of the storm (default 1000: about
 * 10 s for the whole file under ASan on 2 CPUs).
 */
/* Failure messages are cut to their buffers on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "base.h"
#include "model.h"
#include "testcheck.h"
#include "xds.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#include <check.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DELTA TL_DELTA
#define NSVC 20
#define NEXTRA 40

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------- the mesh: c1/n1 and c2/n2, NSVC global services in both ---------- */

static model_service_t *mk_svc(const char *name, int cl, int idx)
{
    model_service_t *s = calloc(1, sizeof(*s));
    s->ns = strdup("ns");
    s->name = strdup(name);
    model_labels_set(&s->labels, "istio.io/global", "true");
    s->cluster_ips = calloc(1, sizeof(model_ip_t));
    s->cluster_ips[0].len = 4;
    s->cluster_ips[0].b[0] = 10;
    s->cluster_ips[0].b[1] = (uint8_t)(96 + cl);
    s->cluster_ips[0].b[2] = 0;
    s->cluster_ips[0].b[3] = (uint8_t)(idx + 1);
    s->ncluster_ips = 1;
    s->ports = calloc(1, sizeof(model_svc_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = 80;
    s->ports[0].target_port = 8080;
    s->nports = 1;
    return s;
}

static void pod_ip(model_ip_t *ip, int cl, int svc, int i)
{
    ip->len = 4;
    ip->b[0] = 10;
    ip->b[1] = (uint8_t)cl;
    ip->b[2] = (uint8_t)svc;
    ip->b[3] = (uint8_t)(i + 1);
}

static model_pod_t *mk_pod(const char *name, int cl, int svc, int i)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    p->ns = strdup("ns");
    p->name = strdup(name);
    p->ips = calloc(1, sizeof(model_ip_t));
    pod_ip(&p->ips[0], cl, svc, i);
    p->nips = 1;
    p->service_account = strdup("default");
    p->ambient = true; /* enrolled: istio-cni annotated it */
    p->node = strdup("node-1");
    p->ready = true;
    return p;
}

/* Service s<svc>'s slice in cluster cl: n endpoints (pods s<svc>-0..n-1), the
 * first nready ready. */
static model_endpointslice_t *mk_slice(int cl, int svc, int n, int nready)
{
    model_endpointslice_t *s = calloc(1, sizeof(*s));
    char name[64];
    s->ns = strdup("ns");
    snprintf(name, sizeof(name), "s%d-abc", svc);
    s->name = strdup(name);
    snprintf(name, sizeof(name), "s%d", svc);
    s->service = strdup(name);
    s->ports = calloc(1, sizeof(model_ep_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = 8080;
    s->nports = 1;
    s->endpoints = calloc((size_t)(n ? n : 1), sizeof(model_endpoint_t));
    s->nendpoints = (size_t)n;
    for (int i = 0; i < n; i++) {
        pod_ip(&s->endpoints[i].ip, cl, svc, i);
        s->endpoints[i].ready = i < nready;
        s->endpoints[i].serving = true;
        snprintf(name, sizeof(name), "s%d-%d", svc, i);
        s->endpoints[i].pod = strdup(name);
    }
    return s;
}

/* An extra pod (no service) in c1: a workload c1's view has or loses. */
static void extra_pod(model_t *m, int k, bool present)
{
    char name[64];
    snprintf(name, sizeof(name), "extra-%d", k);
    if (present) {
        apply(m, "c1", MODEL_KIND_POD, mk_pod(name, 1, 200 + k / 250, k % 250));
    } else {
        model_pod_t *p = calloc(1, sizeof(*p));
        p->ns = strdup("ns");
        p->name = strdup(name);
        apply_op(m, "c1", MODEL_KIND_POD, MODEL_OP_DELETE, p);
    }
}

typedef struct env {
    model_t *m;
    xds_server_t *s;
    int port;
    unsigned seed;
    bool extra[NEXTRA];
    uint64_t version; /* last published */
} env_t;

static void env_publish(env_t *e)
{
    model_snapshot_t *snap = model_commit(e->m);
    e->version = model_snapshot_version(snap);
    xds_server_publish(e->s, snap);
    model_snapshot_unref(snap);
}

/* nbig extra pods in c1 make the initial state big. */
static env_t *env_new(int nbig)
{
    env_t *e = calloc(1, sizeof(*e));
    e->seed = 12345;
    e->m = model_new(NULL);
    char err[MODEL_ERRLEN];
    for (int c = 1; c <= 2; c++) {
        char id[8], net[8];
        snprintf(id, sizeof(id), "c%d", c);
        snprintf(net, sizeof(net), "n%d", c);
        model_cluster_t ci = {.id = id, .network = net};
        ck_assert_int_eq(model_ip_parse(c == 1 ? "192.0.2.1" : "192.0.2.2", &ci.gateway), 0);
        ck_assert_int_eq(model_cluster_set(e->m, &ci, err, sizeof(err)), 0);
        for (int s = 0; s < NSVC; s++) {
            char name[32];
            snprintf(name, sizeof(name), "s%d", s);
            tl_ensure_namespace(e->m, id, "ns");
            apply(e->m, id, MODEL_KIND_SERVICE, mk_svc(name, c, s));
            for (int i = 0; i < 5; i++) {
                snprintf(name, sizeof(name), "s%d-%d", s, i);
                apply(e->m, id, MODEL_KIND_POD, mk_pod(name, c, s, i));
            }
            apply(e->m, id, MODEL_KIND_ENDPOINTSLICE, mk_slice(c, s, 3, 3));
        }
    }
    for (int k = 0; k < NEXTRA / 2; k++) {
        extra_pod(e->m, k, true);
        e->extra[k] = true;
    }
    for (int k = 0; k < nbig; k++) {
        char name[64];
        snprintf(name, sizeof(name), "big-%d-with-a-rather-long-name-to-make-it-heavier", k);
        apply(e->m, "c1", MODEL_KIND_POD, mk_pod(name, 1, 100 + k / 250, k % 250));
    }
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = 5000};
    e->s = xds_server_new(&cfg, err, sizeof(err));
    ck_assert_msg(e->s != NULL, "%s", err);
    e->port = xds_server_port(e->s);
    ck_assert_int_gt(e->port, 0);
    ck_assert_int_eq(xds_server_start(e->s), 0);
    env_publish(e);
    return e;
}

/* One random endpoint change (not published): a slice's size or readiness in
 * either cluster, or an extra pod in c1 coming or going. */
static void env_random_change(env_t *e)
{
    int r = rand_r(&e->seed) % 4;
    if (r == 3) {
        int k = rand_r(&e->seed) % NEXTRA;
        e->extra[k] = !e->extra[k];
        extra_pod(e->m, k, e->extra[k]);
        return;
    }
    int cl = 1 + rand_r(&e->seed) % 2, svc = rand_r(&e->seed) % NSVC;
    int n = 1 + rand_r(&e->seed) % 5, nready = rand_r(&e->seed) % (n + 1);
    apply(e->m, cl == 1 ? "c1" : "c2", MODEL_KIND_ENDPOINTSLICE, mk_slice(cl, svc, n, nready));
}

/* A change that every c1 view sees: an extra pod comes or goes. */
static void env_visible_change(env_t *e)
{
    int k = rand_r(&e->seed) % NEXTRA;
    e->extra[k] = !e->extra[k];
    extra_pod(e->m, k, e->extra[k]);
}

static void env_free(env_t *e)
{
    xds_server_shutdown(e->s, 100);
    xds_server_free(e->s);
    model_free(e->m);
    free(e);
}

static uint64_t streams_open(env_t *e)
{
    xds_stats_t st;
    xds_server_stats(e->s, &st);
    return st.streams_open;
}

static bool wait_streams_open(env_t *e, uint64_t n, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (streams_open(e) != n) {
        if (now_ms() > end)
            return false;
        sleep_ms(10);
    }
    return true;
}

/* ---------- client state: name -> version ---------- */

/* A base map of name -> malloc'd version. */
typedef base_map_t smap_t;

static const char *smap_get(const smap_t *m, const char *k)
{
    return base_map_get(m, k);
}

static void smap_set(smap_t *m, const char *k, const char *v)
{
    char *c = strdup(v);
    ck_assert_ptr_nonnull(c);
    void *old = base_map_put(m, k, c);
    ck_assert_ptr_ne(old, c);
    free(old);
}

static void smap_del(smap_t *m, const char *k)
{
    free(base_map_del(m, k));
}

static void smap_clear(smap_t *m)
{
    base_map_destroy(m, free);
}

/* The first difference of a from b in msg, or false when equal. */
static bool smap_diff(const smap_t *a, const smap_t *b, char *msg, size_t len)
{
    for (const base_map_ent_t *e = base_map_first(a); e; e = base_map_next(a, e)) {
        const char *v = smap_get(b, e->key);
        if (!v || strcmp(v, e->val) != 0) {
            snprintf(msg, len, "%s: %s vs %s", e->key, (const char *)e->val, v ? v : "(absent)");
            return true;
        }
    }
    if (a->n != b->n) {
        snprintf(msg, len, "%zu names vs %zu", a->n, b->n);
        return true;
    }
    return false;
}

static bool smap_equal(const smap_t *a, const smap_t *b)
{
    char msg[8];
    return !smap_diff(a, b, msg, sizeof(msg));
}

/* ---------- a grpc core client: tests/lib ---------- */

static void apply_resp(smap_t *m, const dresp_t *r)
{
    for (size_t i = 0; i < r->n_resources; i++)
        smap_set(m, r->resources[i]->name, r->resources[i]->version);
    for (size_t i = 0; i < r->n_removed_resources; i++)
        smap_del(m, r->removed_resources[i]);
}

/* A fresh wildcard c1/n1 client's state (and the snapshot version it is of). */
static uint64_t fresh_state(env_t *e, smap_t *out)
{
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 10000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_removed_resources, 0);
    smap_clear(out);
    apply_resp(out, r);
    uint64_t v = strtoull(r->system_version_info, NULL, 10);
    tl_delta_free(r);
    tl_client_close(c);
    return v;
}

/* ---------- (a) a client that never ACKs ---------- */

START_TEST(no_ack_gets_one_response_until_it_acks)
{
    env_t *e = env_new(0);
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    smap_t st = {0};
    apply_resp(&st, r);
    ck_assert_uint_gt(st.n, 40);
    char nonce[128];
    snprintf(nonce, sizeof(nonce), "%s", r->nonce);
    tl_delta_free(r);
    /* 50 published changes, never ACKed: nothing more arrives */
    for (int i = 0; i < 50; i++) {
        env_random_change(e);
        env_publish(e);
        if (i % 10 == 0)
            ck_assert_ptr_null(recv_delta(c, 50));
    }
    ck_assert_ptr_null(recv_delta(c, 1000));
    send_ack(c, XDS_TYPE_ADDRESS, "not-a-nonce-we-sent", NULL); /* a stale nonce ACKs nothing */
    ck_assert_ptr_null(recv_delta(c, 500));
    smap_t want = {0};
    uint64_t v = fresh_state(e, &want);
    ck_assert_uint_eq(v, e->version);
    xds_stats_t s0;
    xds_server_stats(e->s, &s0);
    /* one ACK: exactly one response, which brings it to the current state */
    send_ack(c, XDS_TYPE_ADDRESS, nonce, NULL);
    r = recv_delta(c, 5000);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(strtoull(r->system_version_info, NULL, 10), e->version);
    apply_resp(&st, r);
    tl_delta_free(r);
    char msg[512];
    ck_assert_msg(!smap_diff(&st, &want, msg, sizeof(msg)), "after the ACK: %s", msg);
    ck_assert_ptr_null(recv_delta(c, 500)); /* and nothing after it (not ACKed yet) */
    xds_stats_t s1;
    xds_server_stats(e->s, &s1);
    ck_assert_uint_eq(s1.pushes - s0.pushes, 1);
    smap_clear(&st);
    smap_clear(&want);
    tl_client_close(c);
    env_free(e);
}
END_TEST

/* ---------- (b) clients that disconnect mid-push ---------- */

/* A good client: connected, ACKed, state kept. */
static tl_client_t *open_acked(env_t *e, smap_t *st)
{
    tl_client_t *c = client_open(e->port, DELTA);
    send_first(c, XDS_TYPE_ADDRESS, NULL, 0);
    dresp_t *r = recv_delta(c, 10000);
    ck_assert_ptr_nonnull(r);
    apply_resp(st, r);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    return c;
}

/* Receives until its state is at version v (ACKing all); false on timeout. */
static bool follow(tl_client_t *c, smap_t *st, uint64_t v, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        int left = (int)(end - now_ms());
        if (left <= 0)
            return false;
        dresp_t *r = recv_delta(c, left);
        if (!r)
            return false;
        apply_resp(st, r);
        uint64_t got = strtoull(r->system_version_info, NULL, 10);
        send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
        tl_delta_free(r);
        if (got >= v)
            return true;
    }
}

START_TEST(disconnect_mid_push_does_not_disturb_others)
{
    env_t *e = env_new(3000);
    smap_t good_st = {0}, want = {0};
    tl_client_t *good = open_acked(e, &good_st);
    ck_assert_uint_gt(good_st.n, 3000);
    for (int round = 0; round < 10; round++) {
        /* cancel right after the first response arrives */
        tl_client_t *a = client_open(e->port, DELTA);
        send_first(a, XDS_TYPE_ADDRESS, NULL, 0);
        dresp_t *r = recv_delta(a, 10000);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->n_resources, good_st.n); /* the good client is current */
        tl_delta_free(r);
        tl_client_close(a);
        /* close the channel while the server sends the large initial state */
        grpc_channel *ch = tl_insecure_channel(e->port);
        tl_client_t *b = client_on(ch, false, DELTA, NULL, 0);
        send_first(b, XDS_TYPE_ADDRESS, NULL, 0);
        grpc_slice sl;
        if (tl_client_recv(b, 1 + round, &sl))
            grpc_slice_unref(sl);
        grpc_channel_destroy(ch); /* the connection goes with the call in flight */
        tl_client_close(b);
        /* a model change meanwhile: the good client gets exactly it */
        env_random_change(e);
        env_visible_change(e);
        env_publish(e);
        ck_assert_msg(follow(good, &good_st, e->version, 10000), "round %d: good client stuck",
                      round);
    }
    /* every vanished stream is gone from the server; the good one remains */
    ck_assert_msg(wait_streams_open(e, 1, 10000), "streams_open %llu, want 1",
                  (unsigned long long)streams_open(e));
    fresh_state(e, &want);
    char msg[512];
    ck_assert_msg(!smap_diff(&good_st, &want, msg, sizeof(msg)), "good client: %s", msg);
    ck_assert_ptr_null(recv_delta(good, 300));
    ck_assert(wait_streams_open(e, 1, 5000));
    smap_clear(&good_st);
    smap_clear(&want);
    tl_client_close(good);
    env_free(e);
}
END_TEST

/* A client that half-closes its side, and a server shut down while it sends
 * large initial states to many streams: nothing hangs, nothing leaks. */
START_TEST(half_close_and_shutdown_mid_push)
{
    env_t *e = env_new(3000);
    smap_t st = {0}, hs = {0};
    tl_client_t *good = open_acked(e, &st);
    tl_client_t *h = open_acked(e, &hs);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ck_assert(tl_batch(h, &op, 1, TL_T_SEND));
    ck_assert(tl_wait_tag(h, TL_T_SEND, 5000) == 1);
    env_random_change(e);
    env_visible_change(e);
    env_publish(e);
    smap_t gs = {0};
    fresh_state(e, &gs);
    ck_assert(follow(good, &st, e->version, 5000));
    char msg[512];
    ck_assert_msg(!smap_diff(&st, &gs, msg, sizeof(msg)), "beside a half-closed stream: %s", msg);
    grpc_slice sl;
    if (tl_client_recv(h, 2000, &sl)) /* a push or the end of the stream; either is fine */
        grpc_slice_unref(sl);
    tl_client_close(h);
    ck_assert_msg(wait_streams_open(e, 1, 10000), "streams_open %llu after a half-close, want 1",
                  (unsigned long long)streams_open(e));
    /* 20 streams mid-way through a ~1 MB initial state, then shutdown */
    tl_client_t *c[20];
    for (int i = 0; i < 20; i++) {
        c[i] = client_open(e->port, DELTA);
        send_first(c[i], XDS_TYPE_ADDRESS, NULL, 0);
    }
    sleep_ms(20);
    uint64_t t0 = now_ms();
    xds_server_shutdown(e->s, 100);
    uint64_t took = now_ms() - t0;
    ck_assert_msg(took < 5000, "shutdown took %llu ms", (unsigned long long)took);
    for (int i = 0; i < 20; i++)
        tl_client_close(c[i]);
    tl_client_close(good);
    xds_server_free(e->s);
    model_free(e->m);
    free(e);
    smap_clear(&st);
    smap_clear(&hs);
    smap_clear(&gs);
}
END_TEST

/* initial_resource_versions from a state (borrowing its strings). */
typedef struct irv {
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry *ent;
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry **entp;
    size_t n;
} irv_t;

static void irv_of(const smap_t *m, irv_t *out)
{
    out->ent = calloc(m->n + 1, sizeof(*out->ent));
    out->entp = calloc(m->n + 1, sizeof(*out->entp));
    out->n = 0;
    for (const base_map_ent_t *e = base_map_first(m); e; e = base_map_next(m, e)) {
        envoy__service__discovery__v3__delta_discovery_request__initial_resource_versions_entry__init(
            &out->ent[out->n]);
        out->ent[out->n].key = (char *)e->key;
        out->ent[out->n].value = e->val;
        out->entp[out->n] = &out->ent[out->n];
        out->n++;
    }
}

/* ---------- (c) a reconnect storm while the model churns ---------- */

/* A benches' stream (tests/lib/stream.c) that also decodes what it gets
 * into st; io first, so a completion tag leads back to it. */
typedef struct astream {
    tl_stream_t io;
    int responses;
    smap_t st;
} astream_t;

typedef struct storm {
    astream_t *s;
    int n;
    grpc_completion_queue *cq;
    pthread_mutex_t mu;
    int outstanding; /* batches started, not completed */
    int ended;       /* streams whose status or receive ended */
    bool bad;        /* a response that did not decode */
} storm_t;

/* Each starts one batch on s, counted in w->outstanding. */
static void astart(storm_t *w, astream_t *s, grpc_op *ops, size_t n, int op)
{
    w->outstanding++;
    ck_assert(tl_stream_start(&s->io, ops, n, op));
}

static void asend(storm_t *w, astream_t *s, dreq_t *rq, bool first)
{
    w->outstanding++;
    ck_assert(tl_stream_send_req(&s->io, rq, first));
}

static void asend_ack(storm_t *w, astream_t *s, const char *nonce)
{
    w->outstanding++;
    ck_assert(tl_stream_send_ack(&s->io, nonce));
}

static void arecv(storm_t *w, astream_t *s)
{
    w->outstanding++;
    ck_assert(tl_stream_start_recv(&s->io));
}

/* With w->mu held. */
static void aevent(storm_t *w, grpc_event ev)
{
    int op;
    tl_stream_t *io = tl_stream_of(ev.tag, &op);
    astream_t *s = (astream_t *)io;
    w->outstanding--;
    switch (op) {
    case TL_OP_SEND:
        grpc_byte_buffer_destroy(io->sbuf);
        io->sbuf = NULL;
        io->sending = false;
        if (io->pending_nonce[0] && ev.success && !io->done) {
            char nonce[sizeof(io->pending_nonce)];
            memcpy(nonce, io->pending_nonce, sizeof(nonce));
            io->pending_nonce[0] = '\0';
            asend_ack(w, s, nonce);
        }
        break;
    case TL_OP_RECV:
        if (!ev.success || !io->rbuf) {
            if (!io->done)
                w->ended++;
            io->done = true;
            break;
        }
        {
            grpc_byte_buffer_reader rd;
            grpc_byte_buffer_reader_init(&rd, io->rbuf);
            grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
            grpc_byte_buffer_destroy(io->rbuf);
            io->rbuf = NULL;
            dresp_t *r = envoy__service__discovery__v3__delta_discovery_response__unpack(
                NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
            grpc_slice_unref(sl);
            if (!r) {
                w->bad = true;
                break;
            }
            apply_resp(&s->st, r);
            io->version = strtoull(r->system_version_info, NULL, 10);
            s->responses++;
            if (io->sending)
                snprintf(io->pending_nonce, sizeof(io->pending_nonce), "%s", r->nonce);
            else
                asend_ack(w, s, r->nonce);
            tl_delta_free(r);
            arecv(w, s);
        }
        break;
    case TL_OP_STATUS:
        if (!io->done)
            w->ended++;
        io->done = true;
        break;
    }
}

static void *storm_thread(void *arg)
{
    storm_t *w = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        pthread_mutex_lock(&w->mu);
        aevent(w, ev);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

/* Opens stream i; with_state: a reconnect that claims what it holds. */
static void storm_open(storm_t *w, int i, int port, bool with_state)
{
    astream_t *s = &w->s[i];
    tl_stream_t *io = &s->io;
    io->got_imd = io->done = io->sending = false;
    io->pending_nonce[0] = '\0';
    s->responses = 0;
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER; /* one connection per stream, like ztunnels */
    args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    grpc_channel_args ca = {1, args};
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    io->ch = grpc_channel_create(target, cr, &ca);
    grpc_channel_credentials_release(cr);
    io->call = grpc_channel_create_call(io->ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                        grpc_slice_from_static_string(DELTA), NULL,
                                        gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&io->imd);
    grpc_metadata_array_init(&io->tmd);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.status = &io->status;
    op.data.recv_status_on_client.status_details = &io->details;
    op.data.recv_status_on_client.trailing_metadata = &io->tmd;
    pthread_mutex_lock(&w->mu);
    astart(w, s, &op, 1, TL_OP_STATUS);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    irv_t irv = {0};
    if (with_state) {
        irv_of(&s->st, &irv);
        rq.initial_resource_versions = irv.entp;
        rq.n_initial_resource_versions = irv.n;
    }
    asend(w, s, &rq, true);
    free(irv.ent);
    free(irv.entp);
    arecv(w, s);
    pthread_mutex_unlock(&w->mu);
}

/* Cancels every stream and frees its call and channel (the states stay). */
static void storm_close_all(storm_t *w)
{
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->n; i++)
        grpc_call_cancel(w->s[i].io.call, NULL);
    pthread_mutex_unlock(&w->mu);
    uint64_t end = now_ms() + 20000;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        int out = w->outstanding;
        pthread_mutex_unlock(&w->mu);
        if (out == 0 || now_ms() > end)
            break;
        sleep_ms(10);
    }
    ck_assert_int_eq(w->outstanding, 0);
    for (int i = 0; i < w->n; i++) {
        tl_stream_t *io = &w->s[i].io;
        grpc_call_unref(io->call);
        grpc_channel_destroy(io->ch);
        if (io->rbuf)
            grpc_byte_buffer_destroy(io->rbuf);
        io->rbuf = NULL;
        grpc_metadata_array_destroy(&io->imd);
        grpc_metadata_array_destroy(&io->tmd);
        grpc_slice_unref(io->details);
        io->details = grpc_empty_slice();
    }
    w->ended = 0;
}

/* Waits (30 s at most) until every stream holds exactly want; how many do. */
static int storm_converge(storm_t *w, const smap_t *want, char *msg, size_t len)
{
    int converged = 0;
    uint64_t end = now_ms() + 30000;
    for (;;) {
        converged = 0;
        int first_bad = -1;
        pthread_mutex_lock(&w->mu);
        for (int i = 0; i < w->n; i++) {
            if (smap_equal(&w->s[i].st, want))
                converged++;
            else if (first_bad < 0)
                first_bad = i;
        }
        if (first_bad >= 0) {
            astream_t *s = &w->s[first_bad];
            int k = snprintf(msg, len, "stream %d (version %llu, %d responses, %s): ", first_bad,
                             (unsigned long long)s->io.version, s->responses,
                             s->io.done ? "ended" : "open");
            smap_diff(&s->st, want, msg + k, len - (size_t)k);
        }
        bool bad = w->bad;
        int ended = w->ended;
        pthread_mutex_unlock(&w->mu);
        ck_assert_msg(!bad, "a response did not decode");
        ck_assert_msg(ended == 0, "%d streams ended", ended);
        if (converged == w->n || now_ms() > end)
            return converged;
        sleep_ms(50);
    }
}

typedef struct churn {
    env_t *e;
    int changes;
} churn_t;

static void *churn_thread(void *arg)
{
    churn_t *c = arg;
    for (int i = 0; i < c->changes; i++) {
        env_random_change(c->e);
        env_publish(c->e);
        sleep_ms(2);
    }
    return NULL;
}

START_TEST(reconnect_storm_converges)
{
    const char *envn = getenv("FAULTS_STORM");
    int n = envn ? atoi(envn) : 1000;
    env_t *e = env_new(0);
    storm_t w = {.n = n};
    w.s = calloc((size_t)n, sizeof(*w.s));
    w.cq = grpc_completion_queue_create_for_next(NULL);
    pthread_mutex_init(&w.mu, NULL);
    pthread_t thr, chr;
    pthread_create(&thr, NULL, storm_thread, &w);
    smap_t want = {0};
    char msg[512] = "";
    /* phase 1: everyone connects afresh at once; phase 2: everyone reconnects
     * at once claiming what it holds (initial_resource_versions); the model
     * churns meanwhile both times */
    for (int phase = 1; phase <= 2; phase++) {
        churn_t ch = {.e = e, .changes = phase == 1 ? 200 : 100};
        uint64_t t0 = now_ms();
        pthread_create(&chr, NULL, churn_thread, &ch);
        for (int i = 0; i < n; i++)
            storm_open(&w, i, e->port, phase == 2);
        pthread_join(chr, NULL);
        uint64_t t_churn = now_ms();
        uint64_t v = fresh_state(e, &want);
        ck_assert_uint_eq(v, e->version);
        int converged = storm_converge(&w, &want, msg, sizeof(msg));
        fprintf(stderr,
                "storm phase %d: %d streams, churn %llu ms, converged %llu ms after "
                "churn (%d/%d)\n",
                phase, n, (unsigned long long)(t_churn - t0),
                (unsigned long long)(now_ms() - t_churn), converged, n);
        ck_assert_msg(converged == n, "phase %d: %d of %d streams converged; %s", phase, converged,
                      n, msg);
        ck_assert_uint_eq(streams_open(e), (uint64_t)n);
        /* the same state everywhere, so no more pushes are due */
        xds_stats_t s0, s1;
        xds_server_stats(e->s, &s0);
        sleep_ms(300);
        xds_server_stats(e->s, &s1);
        ck_assert_uint_eq(s1.pushes, s0.pushes);
        storm_close_all(&w);
        ck_assert(wait_streams_open(e, 0, 10000));
    }
    for (int i = 0; i < n; i++)
        smap_clear(&w.s[i].st);
    grpc_completion_queue_shutdown(w.cq);
    pthread_join(thr, NULL);
    grpc_completion_queue_destroy(w.cq);
    pthread_mutex_destroy(&w.mu);
    free(w.s);
    smap_clear(&want);
    env_free(e);
}
END_TEST

/* ---------- (d) reconnect with initial_resource_versions after churn ---------- */

START_TEST(reconnect_initial_versions_gets_exact_difference)
{
    env_t *e = env_new(0);
    smap_t old = {0}, want = {0};
    tl_client_t *c = open_acked(e, &old);
    tl_client_close(c);
    /* churn while it is away, including removals and additions */
    for (int k = 0; k < NEXTRA; k++)
        if (k % 7 == 0) {
            e->extra[k] = !e->extra[k];
            extra_pod(e->m, k, e->extra[k]);
        }
    for (int i = 0; i < 60; i++) {
        env_random_change(e);
        if (i % 5 == 0)
            env_publish(e);
    }
    env_publish(e);
    fresh_state(e, &want);
    /* the expected difference */
    smap_t upd = {0}, rem = {0};
    size_t same = 0;
    for (const base_map_ent_t *x = base_map_first(&want); x; x = base_map_next(&want, x)) {
        const char *ov = smap_get(&old, x->key);
        if (!ov || strcmp(ov, x->val) != 0)
            smap_set(&upd, x->key, x->val);
        else
            same++;
    }
    for (const base_map_ent_t *x = base_map_first(&old); x; x = base_map_next(&old, x))
        if (!smap_get(&want, x->key))
            smap_set(&rem, x->key, "");
    ck_assert_uint_gt(upd.n, 0);
    ck_assert_uint_gt(rem.n, 0);
    ck_assert_uint_gt(same, 0);
    irv_t irv;
    irv_of(&old, &irv);
    c = client_open(e->port, DELTA);
    tl_node_buf_t nb;
    dreq_t rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = tl_node(&nb, "c1", "n1");
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    rq.initial_resource_versions = irv.entp;
    rq.n_initial_resource_versions = irv.n;
    send_delta(c, &rq);
    dresp_t *r = recv_delta(c, 10000);
    ck_assert_ptr_nonnull(r);
    /* exactly the changed and new names, with the current versions */
    smap_t got = {0}, gotrem = {0};
    for (size_t i = 0; i < r->n_resources; i++)
        smap_set(&got, r->resources[i]->name, r->resources[i]->version);
    for (size_t i = 0; i < r->n_removed_resources; i++)
        smap_set(&gotrem, r->removed_resources[i], "");
    ck_assert_uint_eq(got.n, r->n_resources); /* no name twice */
    ck_assert_uint_eq(gotrem.n, r->n_removed_resources);
    char msg[512];
    ck_assert_msg(!smap_diff(&got, &upd, msg, sizeof(msg)), "updated: %s (%zu sent, %zu due)", msg,
                  got.n, upd.n);
    ck_assert_msg(!smap_diff(&gotrem, &rem, msg, sizeof(msg)), "removed: %s (%zu sent, %zu due)",
                  msg, gotrem.n, rem.n);
    /* and old + difference = fresh */
    apply_resp(&old, r);
    ck_assert_msg(!smap_diff(&old, &want, msg, sizeof(msg)), "applied: %s", msg);
    send_ack(c, XDS_TYPE_ADDRESS, r->nonce, NULL);
    tl_delta_free(r);
    ck_assert_ptr_null(recv_delta(c, 300));
    /* the next change is a plain diff on top */
    env_random_change(e);
    env_visible_change(e);
    env_publish(e);
    ck_assert(follow(c, &old, e->version, 5000));
    fresh_state(e, &want);
    ck_assert_msg(!smap_diff(&old, &want, msg, sizeof(msg)), "after a change: %s", msg);
    free(irv.ent);
    free(irv.entp);
    smap_clear(&old);
    smap_clear(&want);
    smap_clear(&upd);
    smap_clear(&rem);
    smap_clear(&got);
    smap_clear(&gotrem);
    tl_client_close(c);
    env_free(e);
}
END_TEST

int main(void)
{
    grpc_init();
    Suite *s = suite_create("faults");
    TCase *t = tcase_create("faults");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, no_ack_gets_one_response_until_it_acks);
    tcase_add_test(t, disconnect_mid_push_does_not_disturb_others);
    tcase_add_test(t, half_close_and_shutdown_mid_push);
    tcase_add_test(t, reconnect_storm_converges);
    tcase_add_test(t, reconnect_initial_versions_gets_exact_difference);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    grpc_shutdown();
    return failed != 0;
}
