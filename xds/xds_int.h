/*
 * xds_int.h - helpers shared by the xds/ files, not part of the API.
 */
#ifndef MESHFED_XDS_INT_H
#define MESHFED_XDS_INT_H

#include "base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XDS_MAX_NAME 1024 /* longest resource name a client may send */
#define XDS_MAX_NAME_BUF (XDS_MAX_NAME + 1)

/* The per-stream name maps (xds_type_state_t) are base maps. subs and
 * pending are sets (BASE_MAP_SET); have and initial map a name to a copy of
 * its version, or to BASE_MAP_SET where it has none: put, get and delete
 * those with xds_ver_*, and empty them with base_map_destroy(m, free). */
/* 0, or -1 when out of memory. ver NULL: no version. */
int xds_ver_put(base_map_t *m, const char *name, const char *ver);
/* name's version; NULL when absent or without one. Borrowed. */
const char *xds_ver_get(const base_map_t *m, const char *name);
void xds_ver_del(base_map_t *m, const char *name);

/* A growing list of copied names (a response's removed_resources). */
typedef struct xds_names {
    char **v;
    size_t n, cap;
} xds_names_t;

/* Appends a copy of name; out of memory drops it (the next full state
 * corrects the client). */
void xds_names_add(xds_names_t *l, const char *name);
void xds_names_free(xds_names_t *l);

/* ---------- server internals shared by server.c and stream.c ---------- */

#include "xds.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

typedef enum xds_tag_kind {
    XDS_TAG_NEW_CALL,
    XDS_TAG_RECV,
    XDS_TAG_SEND,
    XDS_TAG_CLOSE,
    XDS_TAG_STATUS,
    XDS_TAG_SHUTDOWN,
} xds_tag_kind_t;

typedef struct xds_stream xds_stream_t;
typedef struct xds_tls xds_tls_t;
typedef struct xds_auth_req xds_auth_req_t;

typedef struct xds_tag {
    xds_tag_kind_t kind;
    xds_stream_t *st;
} xds_tag_t;

#define XDS_NONCE_LEN 24

/* What one stream knows about one resource type. */
typedef struct xds_type_state {
    bool subscribed;
    bool wildcard;
    bool need_push;            /* answer even when nothing changed */
    char nonce[XDS_NONCE_LEN]; /* response in flight, "" when none */
    model_snapshot_t *base;    /* snapshot the client's state was built from */
    uint64_t version_sent, version_acked;
    size_t nsent;       /* SotW: resources in the last response */
    size_t nheld;       /* delta wildcard: about how many it holds */
    base_map_t subs;    /* explicitly subscribed names */
    base_map_t pending; /* subscribed names not answered yet */
    base_map_t have;    /* names the client holds (delta, not wildcard:
                         * a wildcard client holds its base's view, and
                         * a set per stream of the whole mesh would cost
                         * megabytes per ztunnel) */
    base_map_t initial; /* initial_resource_versions, until answered */
} xds_type_state_t;

/* Drops a type state's snapshot and sets. */
void xds_type_state_clear(xds_type_state_t *ts);
/* Makes snap (a reference of its own) what the client's state is built from. */
void xds_type_state_set_base(xds_type_state_t *ts, model_snapshot_t *snap);
/* A fresh nonce in nonce (XDS_NONCE_LEN bytes), unique across the server's
 * streams; the _type_state_ form writes ts->nonce. */
void xds_next_nonce(xds_stream_t *st, char *nonce);
void xds_type_state_next_nonce(xds_stream_t *st, xds_type_state_t *ts);

struct xds_stream {
    xds_server_t *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    bool delta, open, closing, sending, close_pending, initial_md_sent;
    int ops; /* batches in flight; freed at zero */
    grpc_byte_buffer *recv_buf, *send_buf;
    int cancelled;
    grpc_status_code close_code;
    grpc_slice close_msg;
    bool has_close_msg;
    bool full_sending, full_waiting; /* see xds_full_slot() */
    xds_stream_t *wait_next;
    char *node_id, *cluster, *network, *peer;
    model_view_t view;
    xds_type_state_t addr, auth;
    /* LDS, RDS, CDS, EDS (envoy_stream.c): NULL until the stream first asks
     * for one of them, so that a ztunnel's stream does not carry four */
    xds_type_state_t *envoy;
    bool gateway;   /* an east-west gateway (docs/gateway.md) */
    int proxy_kind; /* xds_proxy_kind_t once known, else -1 */
    uint64_t nacks;
    char *last_nack;
    /* authentication (auth.c): pending until the authenticator answers;
     * authed once it accepted. auth_req is the answer's way back, cut
     * (req->st = NULL) when the stream goes first. */
    bool auth_pending, authed;
    char *identity, *auth_cluster;
    xds_auth_req_t *auth_req;
    char *pod_name, *pod_uid; /* the pod its token is bound to, if any */
    /* a CreateCertificate call (ca_call.c): the request until answered */
    bool ca_call;
    char *ca_csr, *ca_impersonate;
    int64_t ca_ttl;
    bool unknown_cluster;            /* its cluster is not one meshfed knows */
    bool net_from_cluster;           /* its network is its cluster's (none in its metadata) */
    bool debug, debug_want;          /* asks for istio.io/debug/syncz; an answer is due */
    char debug_nonce[XDS_NONCE_LEN]; /* (debug.c) */
    char *istio_version;             /* node metadata ISTIO_VERSION, or NULL */
    size_t nnames, name_bytes;       /* what its subscriptions hold (limits) */
    xds_tag_t t_recv, t_send, t_close, t_status;
    xds_stream_t *next, *prev;
};

/* The full state of one view in one snapshot, encoded once (push.c). */
typedef struct xds_full {
    model_snapshot_t *snap; /* NULL: empty slot */
    char *cluster, *network;
    bool delta; /* Resource entries, else Any entries (SotW) */
    grpc_slice body;
    size_t nres;
} xds_full_t;

#define XDS_NFULL 8 /* views cached at once */
/* An idle server drops its full-state bodies this long after the last full
 * send began: megabytes per view not held for nothing, yet not rebuilt for
 * each stream of a ramp of (re)connections */
#define XDS_FULL_KEEP_US 2000000
#define XDS_CQ_THREADS 1 /* 2 measured no faster on 2 cores; raise on big hosts */

void xds_full_drop(xds_full_t *f);

/* One listening port's health (listen_check.c). */
typedef struct xds_listen_check {
    uint64_t busy_since;  /* its accept queue has not been empty since, or 0 */
    unsigned long last_q; /* that queue at the last probe */
    atomic_bool stalled;  /* grpc takes no more connections on it */
} xds_listen_check_t;

#define XDS_PROBE_US 5000000  /* a listener probe this often */
#define XDS_STALL_US 15000000 /* a backlog never empty this long: stalled */

/* On a CQ thread, outside the lock: probes the ports when due. */
void xds_listen_probe(xds_server_t *s);
/* The accept queue of the TCP listeners on port (IPv4 and IPv6), from
 * /proc/net; -1 when none listens there. */
int xds_accept_queue(int port, unsigned long *q);

struct xds_server {
    char *listen;
    size_t max_msg;
    int max_streams;
    int port, tls_port;
    xds_tls_t *tls;
    const char *(*network_of)(void *arg, const char *cluster);
    void *network_of_arg;
    char *trust_domain;  /* never NULL */
    char *control_plane; /* DiscoveryResponse.control_plane identifier */
    char *local_cluster; /* for debug clients that name none */
    size_t max_names, max_name_bytes, max_name_bytes_total;
    size_t name_bytes; /* of every stream's subscriptions */
    void (*log)(void *arg, bool warn, const char *msg);
    void *log_arg;
    uint64_t log_sec;        /* the second of the last log line ... */
    unsigned log_suppressed; /* ... and the lines dropped since */
    xds_authenticate_fn authenticate;
    void *authenticate_arg;
    int auth_inflight; /* answers not yet received; free waits */
    xds_ca_t *ca;      /* NULL: CreateCertificate is not served */
    xds_node_authorize_fn node_authorize;
    void *node_authorize_arg;
    pthread_cond_t auth_cv; /* auth_inflight reached 0 */
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thr[XDS_CQ_THREADS], push_thr;
    int nthr;
    bool cq_shut;
    bool started, joined, push_started;
    pthread_mutex_t mu;     /* everything below; CQ threads hold it per event */
    pthread_cond_t push_cv; /* publish -> push thread */
    bool push_quit;
    model_snapshot_t *snap;
    uint64_t publish_us;
    atomic_uint_fast64_t gen; /* bumped by publish, watched by the push thread */
    atomic_uint_fast64_t nonce_ctr;
    atomic_bool stopping, quit, shutdown_done;
    atomic_bool networks_changed; /* xds_server_networks_changed, not yet checked */
    xds_full_t full[XDS_NFULL];
    size_t full_next;
    int full_inflight;           /* full-state responses being sent */
    uint64_t full_used_us;       /* the last full-state send began */
    xds_listen_check_t check[2]; /* port, tls_port (listen_check.c) */
    atomic_bool probing;
    uint64_t probed_us, probed_streams;
    xds_stream_t *wait_head, *wait_tail; /* streams waiting for a slot, FIFO */
    xds_stream_t *streams;
    size_t nstreams, nopen;
    xds_stream_t *pending_call;
    xds_tag_t t_shutdown;
    xds_stats_t stats;
};

uint64_t xds_now_us(void);
/* A log line through the configured logger, at most one per second; the
 * next line says how many were dropped. Server lock held. */
void xds_log(xds_server_t *s, bool warn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether r may go on the Address stream (a Workload or a Service); every
 * Address path filters with it so new resource kinds cannot leak there. */
bool xds_res_is_address(const model_res_t *r);
/* r as a ready-made repeated field 2 entry: a Resource of a
 * DeltaDiscoveryResponse (delta) or an Any of a DiscoveryResponse. Cached
 * and shared like xds_encode_address(); NULL when out of memory. */
const uint8_t *xds_encode_entry(const model_res_t *r, bool delta, size_t *len);
/* stream.c: protocol handling; called with srv->mu held. */
void xds_stream_on_message(xds_stream_t *st, const uint8_t *buf, size_t len);
/* Records one push's publish-to-send latency (stats histogram). */
void xds_observe_latency(xds_server_t *s, uint64_t us);
void xds_stream_pump(xds_stream_t *st);
/* A stream whose network is its cluster's, after that network changed: its
 * view moved under it, so it is closed (UNAVAILABLE) to reconnect and get
 * the new view whole. True when it was closed. */
bool xds_stream_network_moved(xds_stream_t *st);
void xds_stream_state_free(xds_stream_t *st);
/* tls.c: TLS credentials reloaded from files when they change. */
xds_tls_t *xds_tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
/* The same from a pair in memory (copied), replaced by xds_tls_set_pem:
 * new handshakes get the new pair. -1 for a file-backed t. */
xds_tls_t *xds_tls_new_pem(const char *cert, const char *key, char *err, size_t errlen);
int xds_tls_set_pem(xds_tls_t *t, const char *cert, const char *key);
grpc_server_credentials *xds_tls_creds(xds_tls_t *t);
uint64_t xds_tls_loads(xds_tls_t *t);
void xds_tls_free(xds_tls_t *t);
/* server.c: transport primitives used by stream.c. */
/* Full-state pushes (a first delta response, every SotW one) are megabytes
 * each: at most XDS_MAX_FULL_SENDS are in flight, so that a thousand proxies
 * reconnecting at once cost the server (and the network) a bounded amount
 * of memory at a time. true: st may send one now (the slot is released when
 * the send completes); false: st is queued and pumped when one frees. */
#define XDS_MAX_FULL_SENDS 64
bool xds_full_slot(xds_stream_t *st);
/* After trying to push with a slot: gives it back if nothing was sent. */
void xds_full_unused(xds_stream_t *st);
void xds_stream_send(xds_stream_t *st, uint8_t *buf, size_t len);
/* Sends one message made of n slices (len bytes in all); takes over the
 * caller's slice references. The bytes must stay valid until the send
 * completes (grpc's byte buffer contract): see push.c. */
void xds_stream_send_slices(xds_stream_t *st, grpc_slice *sl, size_t n, size_t len);
/* Whether a delta client holds name (old_r: its variant in the stream's base,
 * or NULL): a wildcard client holds its base's view, others what is in have. */
bool xds_stream_holds(const xds_type_state_t *ts, const char *name, const model_res_t *old_r);
void xds_stream_close(xds_stream_t *st, grpc_status_code code, const char *msg);
/* Reads the next request (after authentication held reading back). */
void xds_stream_recv(xds_stream_t *st);
/* debug.c: istio.io/debug/syncz (SotW). */
#define XDS_TYPE_DEBUG_SYNCZ "istio.io/debug/syncz"
#define XDS_TYPE_CLIENT_CONFIG "type.googleapis.com/envoy.service.status.v3.ClientConfig"
bool xds_debug_is_type(const char *type_url);
/* A request for the type: one without a nonce asks for an answer. */
void xds_debug_on_sotw(xds_stream_t *st, const char *nonce);
/* Sends the answer if one is due and nothing is being sent. */
void xds_debug_pump(xds_stream_t *st);
/* auth.c: starts authenticating st once its node (and claimed cluster) is
 * known; without an authenticator st is authed at once. 0: pending or
 * accepted; -1: st was closed. */
int xds_auth_start(xds_stream_t *st);
/* stream_free: the stream is gone, a later answer must not touch it. */
void xds_auth_detach(xds_stream_t *st);
/* ca_call.c: CreateCertificate, a unary call on a stream object. */
#define XDS_CA_METHOD "/istio.v1.auth.IstioCertificateService/CreateCertificate"
/* Its one request: parsed, then authenticated. */
void xds_ca_call_on_message(xds_stream_t *st, const uint8_t *buf, size_t len);
/* Authentication accepted the caller (st->identity): authorizes, signs,
 * answers and closes. */
void xds_ca_call_authed(xds_stream_t *st);
/* Closes a call with code and msg and counts its outcome. */
void xds_ca_call_fail(xds_stream_t *st, xds_ca_result_t r, grpc_status_code code, const char *msg);

#endif
