/*
 * xds_internal.h - helpers shared by the xds/ files, not part of the API.
 */
#ifndef MESHFED_XDS_INTERNAL_H
#define MESHFED_XDS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint64_t xds_hash64(const void *p, size_t n);

#define XDS_MAX_NAME 1024 /* longest resource name a client may send */
#define XDS_MAX_NAME_BUF (XDS_MAX_NAME + 1)

/* A string -> string map (value may be NULL: then it is a set). Keys and
 * values are copied. Chained, grows by doubling; per-stream bookkeeping. */
typedef struct xds_map_entry {
    char *key;
    char *val;
    struct xds_map_entry *next;
} xds_map_entry_t;

typedef struct xds_map {
    xds_map_entry_t **b;
    size_t nb;
    size_t n;
} xds_map_t;

/* 0, or -1 when out of memory. Replaces the value of an existing key. */
int xds_map_put(xds_map_t *m, const char *key, const char *val);
bool xds_map_has(const xds_map_t *m, const char *key);
/* The value (NULL when absent or a set entry). Borrowed. */
const char *xds_map_get(const xds_map_t *m, const char *key);
bool xds_map_del(xds_map_t *m, const char *key);
void xds_map_clear(xds_map_t *m);
typedef void (*xds_map_fn)(const char *key, const char *val, void *arg);
void xds_map_each(const xds_map_t *m, xds_map_fn fn, void *arg);

#endif

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

typedef struct xds_tag {
    xds_tag_kind_t kind;
    xds_stream_t *st;
} xds_tag_t;

/* What one stream knows about one resource type. */
typedef struct xds_type_state {
    bool subscribed;
    bool wildcard;
    bool need_push;            /* answer even when nothing changed */
    char nonce[24];            /* response in flight, "" when none */
    model_snapshot_t *base;    /* snapshot the client's state was built from */
    uint64_t version_sent, version_acked;
    size_t nsent;              /* SotW: resources in the last response */
    xds_map_t subs;            /* explicitly subscribed names */
    xds_map_t pending;         /* subscribed names not answered yet */
    xds_map_t have;            /* names the client holds (delta) */
    xds_map_t initial;         /* initial_resource_versions, until answered */
} xds_type_state_t;

struct xds_stream {
    xds_server_t *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    bool delta, open, closing, sending, close_pending, initial_md_sent;
    int ops;                   /* batches in flight; freed at zero */
    grpc_byte_buffer *recv_buf, *send_buf;
    int cancelled;
    grpc_status_code close_code;
    grpc_slice close_msg;
    bool has_close_msg;
    char *node_id, *cluster, *network, *peer;
    model_view_t view;
    xds_type_state_t addr, auth;
    uint64_t nacks;
    char *last_nack;
    xds_tag_t t_recv, t_send, t_close, t_status;
    xds_stream_t *next, *prev;
};

struct xds_server {
    char *listen;
    size_t max_msg;
    int max_streams;
    int port;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thr;
    bool started, joined;
    pthread_mutex_t mu;        /* everything below; the CQ thread holds it per event */
    model_snapshot_t *snap;
    uint64_t publish_us;
    atomic_uint_fast64_t gen;  /* bumped by publish, polled by the CQ thread */
    atomic_uint_fast64_t nonce_ctr;
    atomic_bool stopping, quit, shutdown_done;
    xds_stream_t *streams;
    size_t nstreams, nopen;
    xds_stream_t *pending_call;
    xds_tag_t t_shutdown;
    xds_stats_t stats;
};

uint64_t xds_now_us(void);
/* stream.c: protocol handling; called by the CQ thread with srv->mu held. */
void xds_stream_on_message(xds_stream_t *st, const uint8_t *buf, size_t len);
void xds_stream_pump(xds_stream_t *st);
void xds_stream_state_free(xds_stream_t *st);
/* server.c: transport primitives used by stream.c. */
void xds_stream_send(xds_stream_t *st, uint8_t *buf, size_t len);
void xds_stream_close(xds_stream_t *st, grpc_status_code code, const char *msg);
