/*
 * testlib.h - helpers shared by the tests (tests/test_*.c) and the benches
 * (bench/bench_*.c), prefix tl_: a blocking grpc core client for one ADS
 * call, an asynchronous ztunnel-like Delta ADS stream for many, small model
 * builders, the fakekube fixture (tests/lib/fakekube.c) and small
 * utilities. Nothing here asserts: failures are returned for the caller to
 * check (the benches link this too, without libcheck).
 */
#ifndef MESHFED_TESTLIB_H
#define MESHFED_TESTLIB_H

#include "kube.h"
#include "model.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define TL_DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define TL_SOTW "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

/* ---------- utilities ---------- */

uint64_t tl_now_ns(void); /* CLOCK_MONOTONIC */
double tl_now(void);      /* CLOCK_MONOTONIC, seconds */
long tl_rss_kb(void);     /* resident set size from /proc/self/statm; 0 when unknown */
/* The soft file limit up to the hard one, for a bench of nstreams
 * connections; says on stderr (as who) when that is still too few. */
void tl_raise_nofile(const char *who, int nstreams);
int tl_cmp_double(const void *a, const void *b); /* for qsort, ascending */
/* A bench and its client process talk over pipes: tl_pipe_put writes v
 * (exits on failure); tl_pipe_get reads len bytes, false on timeout or EOF. */
void tl_pipe_put(int fd, uint64_t v);
bool tl_pipe_get(int fd, void *v, size_t len, int ms);

/* ---------- the benches' mesh: namespace bench, services svc<s> ---------- */

/* Names as long as real clusters have them (cluster-<i>, namespace
 * bookinfo-prod, Deployment pod names, pod uids, cloud node names) instead
 * of the short ones; for the benches that report memory. */
void tl_bench_names(bool realistic);
/* c<i> (or cluster-<i>). */
void tl_bench_cluster_id(int c, char *buf, size_t len);
/* 10.<cluster*16 + n/65536>.<n/256>.<n%256> */
void tl_bench_ip(model_ip_t *ip, int cluster, int n);
/* svc<s>, VIP from cluster 14, port http 80 -> 8080; global when s is even. */
model_service_t *tl_bench_service(int s);
/* Pod e of svc<s> in cluster c, IP s*per+e; ready, on node-1. */
model_pod_t *tl_bench_pod(int c, int s, int per, int e);
/* svc<s>'s slice in cluster c: per endpoints, IPs from s*per, all ready but
 * endpoint not_ready (-1: none). */
model_endpointslice_t *tl_bench_slice(int c, int s, int per, int not_ready);
/* Adds Namespace ns to cluster unless it has it: a Service is scoped only
 * in a namespace its cluster has, as in istiod. */
void tl_ensure_namespace(model_t *m, const char *cluster, const char *ns);
/* model_apply of obj as an upsert; a failure ends the bench with its reason. */
void tl_bench_apply(model_t *m, const char *cluster, model_kind_t k, void *obj);
/* Clusters c<i> on networks n<i> (gateway from cluster 15), each with
 * nservices services of per endpoints, their pods and slices; the pods also
 * labelled pod-template-hash when hash_label. NULL with err on a failure. */
model_t *tl_bench_mesh(int nclusters, int nservices, int per, bool hash_label, char *err,
                       size_t errlen);

/* ---------- the tests' small meshes ---------- */

/* Sets cluster id on network, its east-west gateway at the address gw (NULL:
 * none). 0, or -1 with err (gw does not parse, the model refuses). */
int tl_add_cluster(model_t *m, const char *id, const char *network, const char *gw, char *err,
                   size_t errlen);

/* Slice <svc>-abc of service svc in ns: one port (port_name, port) and n
 * endpoints <ipbase>.<i+1>, the first nready ready, with pod <svc>-<i> when
 * pods. NULL when an address does not parse. */
model_endpointslice_t *tl_slice(const char *ns, const char *svc, const char *port_name, int port,
                                const char *ipbase, int n, int nready, bool pods);

/* ---------- a blocking client: one call on its own completion queue ---------- */

enum { TL_T_SEND = 1, TL_T_RECV, TL_T_STATUS };

typedef struct tl_client {
    grpc_channel *ch;
    bool own_ch;
    grpc_completion_queue *cq;
    grpc_call *call;
    bool done[4], pending[4];
    int okv[4];
    grpc_byte_buffer *rbuf;
    bool got_imd;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
} tl_client_t;

/* Waits for tag; other completions are recorded. 1 done, 0 timeout, -1 an
 * event that is not a completion. */
int tl_wait_tag(tl_client_t *c, int tag, int ms);
/* Starts a batch under tag; false when grpc refuses it. */
bool tl_batch(tl_client_t *c, grpc_op *ops, size_t n, int tag);
grpc_channel *tl_insecure_channel(int port);
/* A call of method on ch (owned by the client when own) with optional
 * request headers; NULL when they are not sent within 5 s. */
tl_client_t *tl_client_on(grpc_channel *ch, bool own, const char *method, grpc_metadata *md,
                          size_t nmd);
tl_client_t *tl_client_open(int port, const char *method);
bool tl_client_send(tl_client_t *c, const uint8_t *buf, size_t len);
/* The next message; false on timeout or end of stream. */
bool tl_client_recv(tl_client_t *c, int ms, grpc_slice *out);
void tl_client_close(tl_client_t *c);

/* A ztunnel node with string metadata ckey=cluster and nkey=network (either
 * value may be NULL), in storage b. */
typedef struct tl_node_buf {
    Envoy__Config__Core__V3__Node node;
    Google__Protobuf__Struct md;
    Google__Protobuf__Struct__FieldsEntry e[2], *ep[2];
    Google__Protobuf__Value v[2];
} tl_node_buf_t;

Envoy__Config__Core__V3__Node *tl_node_keys(tl_node_buf_t *b, const char *ckey, const char *cluster,
                                            const char *nkey, const char *network);
Envoy__Config__Core__V3__Node *tl_node(tl_node_buf_t *b, const char *cluster,
                                       const char *network); /* CLUSTER_ID, NETWORK */

bool tl_send_delta(tl_client_t *c, Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq);
/* The first request of a c1/n1 ztunnel for type, with optional subscriptions. */
bool tl_send_first(tl_client_t *c, const char *type, char **subs, size_t nsubs);
/* An ACK of nonce, or a NACK (code 3) with message nack when not NULL. */
bool tl_send_ack(tl_client_t *c, const char *type, const char *nonce, const char *nack);
/* 1 with *out set, 0 nothing within ms (or end of stream), -1 undecodable. */
int tl_recv_delta(tl_client_t *c, int ms,
                  Envoy__Service__Discovery__V3__DeltaDiscoveryResponse **out);
void tl_delta_free(Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r);

/* ---------- an asynchronous Delta ADS stream (the benches' ztunnels) ---------- */

enum { TL_OP_SEND = 1, TL_OP_RECV = 2, TL_OP_STATUS = 3 };

typedef struct tl_stream {
    grpc_channel *ch;
    grpc_call *call;
    int cq;
    grpc_byte_buffer *rbuf, *sbuf;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
    bool sending, got_imd, done;
    char pending_nonce[32]; /* ACK waiting for the send in flight */
    uint64_t version;       /* of the last response */
    /* the first request waits for the channel to connect (wait-for-ready)
     * instead of failing while the server is down */
    bool wait_for_ready;
    /* tl_streams only: a receive in flight, the status received, responses
     * on the current call, calls made (1 + re-opens) */
    bool recving, ended;
    uint64_t responses;
    int calls;
    struct tl_stream *later; /* waiting to be re-opened at due (tl_now_ns) */
    uint64_t due;
} tl_stream_t;

/* The completion-queue tag of op on s, and back (s is 8-byte aligned). */
void *tl_stream_tag(tl_stream_t *s, int op);
tl_stream_t *tl_stream_of(void *tag, int *op);
/* Each false when grpc refuses the batch (or memory runs out). */
bool tl_stream_start(tl_stream_t *s, grpc_op *ops, size_t n, int op);
bool tl_stream_send_req(tl_stream_t *s, Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq,
                        bool first);
/* The first request of a c0/n0 ztunnel for Address resources. */
bool tl_stream_send_first(tl_stream_t *s);
bool tl_stream_send_ack(tl_stream_t *s, const char *nonce);
bool tl_stream_start_recv(tl_stream_t *s);
/* Many streams on TL_NCQ completion queues, each served by a thread: every
 * response is ACKed at once (after the send in flight, if any), its bytes
 * counted, and reach called with its version and receive time. fail is
 * called (from those threads) on an undecodable response or a refused batch. */
#define TL_NCQ 2

typedef struct tl_streams tl_streams_t;
typedef struct tl_cq_arg {
    tl_streams_t *ss;
    int i;
} tl_cq_arg_t;
struct tl_streams {
    tl_stream_t *st;
    int n;
    grpc_completion_queue *cq[TL_NCQ];
    pthread_t thr[TL_NCQ];
    tl_cq_arg_t arg[TL_NCQ];
    uint64_t bytes; /* response bytes received, atomically */
    void (*reach)(tl_streams_t *ss, tl_stream_t *s, uint64_t v, uint64_t t);
    void (*fail)(const char *msg);
    /* NULL, or called with each response before reach (its bytes borrowed) */
    void (*capture)(tl_streams_t *ss, tl_stream_t *s, grpc_byte_buffer *b, uint64_t v);
    /* NULL, or called (from the queue threads) when a stream's call is over,
     * its status and details still set */
    void (*ended)(tl_streams_t *ss, tl_stream_t *s);
    /* 0: a call the server ends stays ended. Otherwise, set before
     * tl_streams_open: each stream is a ztunnel that re-opens its call on the
     * same channel when the server drops it (at once when the call had a
     * response, else after reconnect_ms), its first request wait-for-ready;
     * the channel reconnects with backoff from reconnect_ms (at most 10x). */
    int reconnect_ms;
    /* 0: grpc's 20 s. Otherwise how long a connection attempt may take
     * (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, which grpc also uses as the
     * connect timeout) before the channel abandons it and tries again. */
    int connect_timeout_ms;
    tl_stream_t *later[TL_NCQ]; /* streams waiting to re-open, per queue */
};

/* n streams (not yet open) and the queue threads; call after grpc_init. */
void tl_streams_init(tl_streams_t *ss, int n,
                     void (*reach)(tl_streams_t *, tl_stream_t *, uint64_t, uint64_t),
                     void (*fail)(const char *));
/* Opens stream i to target (one connection per stream, like ztunnels) and
 * sends its first request. */
void tl_streams_open(tl_streams_t *ss, int i, const char *target);

/* system_version_info (1) and nonce (5) of a DeltaDiscoveryResponse without
 * decoding its resources: the clients must not be the bottleneck. */
bool tl_scan_response(const uint8_t *p, size_t len, uint64_t *version, char *nonce, size_t nlen);

/* ---------- fakekube: tests/fakekube/fakekube.py over HTTPS, a test CA ---------- */

/* dl = now (CLOCK_REALTIME, for pthread_cond_timedwait) + ms. */
void tl_deadline(struct timespec *dl, int ms);
/* Runs a shell command; false (and the command on stderr) when it fails. */
bool tl_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TL_FK_MAX 4

typedef struct tl_fakekube {
    char dir[64]; /* temporary directory with the certificates */
    pid_t pid;
    int to_child;        /* fakekube exits when this closes */
    int port[TL_FK_MAX]; /* of each cluster, in order */
    int nport;
} tl_fakekube_t;

/* Makes the directory /tmp/meshfed-<name>-XXXXXX; false on failure. */
bool tl_fk_init(tl_fakekube_t *fk, const char *name);
/* In fk->dir: ca.crt/key (CN test-ca), ca2.crt/key (CN other-ca), server.crt/key
 * signed by ca (localhost, 127.0.0.1, kube.test), client.crt/key (CN meshfed)
 * signed by ca. */
bool tl_fk_make_certs(tl_fakekube_t *fk);
/* Starts fakekube with server.crt, token, clusters[0..n) and, when client_ca,
 * ca.crt for client certificates; reads its READY line into fk->port. */
bool tl_fk_start(tl_fakekube_t *fk, const char *token, bool client_ca, const char *const *clusters,
                 int n);
void tl_fk_stop(tl_fakekube_t *fk); /* a no-op when not started */
/* Stops fakekube and removes fk->dir; false when the removal fails. */
bool tl_fk_cleanup(tl_fakekube_t *fk);
/* POST /fake/<what> (body NULL: {}) on cluster i: the HTTP status, -1 on a
 * transport failure. */
long tl_fk_ctl(const tl_fakekube_t *fk, int i, const char *what, const char *body);
/* A connection to cluster i trusting fk->dir/<ca>, with token (NULL: none). */
void tl_fk_conn(const tl_fakekube_t *fk, int i, kube_conn_t *c, const char *ca, const char *token);

#endif
