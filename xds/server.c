/*
 * server.c - the gRPC side of the xDS server: listener, completion-queue
 * thread, call lifecycle and the send/close primitives. Protocol logic
 * (what to send) lives in stream.c.
 *
 * CQ threads handle grpc events (several, because grpc does its socket I/O
 * inside completion_queue_next: one thread would serialize all of it) and
 * one push thread fans new snapshots out to the streams; each holds srv->mu
 * while it works on streams, so
 * publish/stats/each_proxy from other threads see consistent state. Optional
 * second listener with TLS (tls.c).
 */
#include "xds_int.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DELTA_METHOD                                                                               \
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define SOTW_METHOD                                                                                \
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

const char *xds_push_kind_name(xds_push_kind_t k)
{
    static const char *const names[XDS_PUSH_KINDS] = {"wds", "authorization", "lds",  "rds",
                                                      "cds", "eds",           "debug"};
    return (unsigned)k < XDS_PUSH_KINDS ? names[k] : "?";
}

uint64_t xds_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void xds_log(xds_server_t *s, bool warn, const char *fmt, ...)
{
    if (!s->log)
        return;
    uint64_t sec = xds_now_us() / 1000000u;
    if (sec == s->log_sec && s->log_sec) {
        s->log_suppressed++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->log_suppressed && n >= 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, " (%u more such lines dropped)",
                 s->log_suppressed);
    s->log_sec = sec;
    s->log_suppressed = 0;
    s->log(s->log_arg, warn, msg);
}

/* "host:port" with a port of 0-65535 in digits (gRPC would take 70000 as
 * 4464), an IPv6 host in brackets. NULL, or why not. */
static const char *listen_problem(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr)
        return "want host:port";
    if (addr[0] == '[' && colon[-1] != ']')
        return "an IPv6 host needs brackets: [addr]:port";
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p) || atoi(p) > 65535)
        return "the port must be a number from 0 to 65535";
    return NULL;
}

/* Why binding addr fails, asked of the kernel the way gRPC would bind it
 * (gRPC says only that it failed); NULL when it would not fail. */
static const char *bind_problem(const char *addr, char *buf, size_t len)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[') {
        addr++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return "host too long";
    memcpy(host, addr, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int rc = getaddrinfo(hl ? host : NULL, colon + 1, &hints, &ai);
    if (rc != 0) {
        snprintf(buf, len, "%s", gai_strerror(rc));
        return buf;
    }
    const char *why = NULL;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0), one = 1;
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)) {
        snprintf(buf, len, "%s", strerror(errno));
        why = buf;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return why;
}

/* Binds addr on s with creds; the port, or 0 with the reason in err. */
static int add_port(xds_server_t *s, const char *addr, grpc_server_credentials *creds,
                    const char *what, char *err, size_t errlen)
{
    const char *bad = listen_problem(addr);
    int port = bad ? 0 : grpc_server_add_http2_port(s->server, addr, creds);
    if (port <= 0 && err && errlen) {
        char buf[256];
        if (!bad)
            bad = bind_problem(addr, buf, sizeof(buf));
        snprintf(err, errlen, "xds: cannot listen%s on %s: %s", what, addr,
                 bad ? bad : "refused by gRPC");
    }
    return port > 0 ? port : 0;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* Transport settings. Keepalive: a dead ztunnel behind a vanished node or a
 * silent NAT must not hold a stream (and its snapshot) for hours, so the
 * server pings idle connections every 30 s and drops them after 10 s of
 * silence; xDS streams carry no data for long stretches, hence unlimited
 * pings without data. Clients may ping us every 10 s (Envoy and tonic
 * defaults are well above that; istiod enforces 15 s). Streams per
 * connection: a proxy uses one or a few; the cap only bounds what a single
 * misbehaving client can take from max_streams. */
#define XDS_KEEPALIVE_TIME_MS 30000
#define XDS_KEEPALIVE_TIMEOUT_MS 10000
#define XDS_MIN_CLIENT_PING_MS 10000
#define XDS_STREAMS_PER_CONN 256

static void arg_int(grpc_arg *a, const char *key, int v)
{
    a->type = GRPC_ARG_INTEGER;
    a->key = (char *)key;
    a->value.integer = v;
}

static grpc_server *server_create(size_t max_msg, int max_age_ms, int max_age_grace_ms)
{
    grpc_arg args[12];
    arg_int(&args[0], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
            (int)(max_msg > 0x7fffffff ? 0x7fffffff : max_msg));
    arg_int(&args[1], GRPC_ARG_KEEPALIVE_TIME_MS, XDS_KEEPALIVE_TIME_MS);
    arg_int(&args[2], GRPC_ARG_KEEPALIVE_TIMEOUT_MS, XDS_KEEPALIVE_TIMEOUT_MS);
    arg_int(&args[3], GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    arg_int(&args[4], GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
            XDS_MIN_CLIENT_PING_MS);
    arg_int(&args[5], GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    arg_int(&args[6], GRPC_ARG_MAX_CONCURRENT_STREAMS, XDS_STREAMS_PER_CONN);
    /* a second meshfed on the same port must fail, not split the proxies */
    arg_int(&args[7], GRPC_ARG_ALLOW_REUSEPORT, 0);
    arg_int(&args[8], GRPC_ARG_ENABLE_DEADLINE_CHECKS, 0);
    arg_int(&args[9], GRPC_ARG_ENABLE_CHANNELZ, 0);
    /* grpc core adds the jitter to the age itself (max_age filter) */
    arg_int(&args[10], GRPC_ARG_MAX_CONNECTION_AGE_MS, max_age_ms);
    arg_int(&args[11], GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, max_age_grace_ms);
    grpc_channel_args ca = {max_age_ms > 0 ? 12 : 10, args};
    return grpc_server_create(&ca, NULL);
}

/* The TLS port, when configured. 0 or -1 with err set. */
static int add_tls_port(xds_server_t *s, const xds_config_t *cfg, char *err, size_t errlen)
{
    char buf[256];
    if (!cfg->tls_listen)
        return 0;
    s->tls = cfg->tls_cert_pem
                 ? xds_tls_new_pem(cfg->tls_cert_pem, cfg->tls_key_pem, buf, sizeof(buf))
                 : xds_tls_new(cfg->tls_cert_file, cfg->tls_key_file, buf, sizeof(buf));
    if (!s->tls) {
        set_err(err, errlen, buf);
        return -1;
    }
    grpc_server_credentials *creds = xds_tls_creds(s->tls);
    s->tls_port = creds ? add_port(s, cfg->tls_listen, creds, " (TLS)", err, errlen) : 0;
    if (creds)
        grpc_server_credentials_release(creds);
    else
        set_err(err, errlen, "xds: no TLS credentials");
    return s->tls_port > 0 ? 0 : -1;
}

xds_server_t *xds_server_new(const xds_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->listen) {
        set_err(err, errlen, "xds: no listen address");
        return NULL;
    }
    xds_server_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->listen = strdup(cfg->listen)) ||
        !(s->trust_domain = strdup(cfg->trust_domain ? cfg->trust_domain : "cluster.local"))) {
        if (s)
            free(s->listen);
        free(s);
        xds_ca_free(cfg->ca); /* the server's, as if it had been made */
        set_err(err, errlen, "xds: out of memory");
        return NULL;
    }
    s->max_msg = cfg->max_message_bytes ? cfg->max_message_bytes : 16u << 20;
    s->max_streams = cfg->max_streams ? cfg->max_streams : 10000;
    s->max_names = cfg->max_names ? cfg->max_names : 10000;
    s->max_name_bytes = cfg->max_name_bytes ? cfg->max_name_bytes : 1u << 20;
    s->max_name_bytes_total =
        cfg->max_name_bytes_total ? cfg->max_name_bytes_total : (size_t)128 << 20;
    s->log = cfg->log;
    s->control_plane = strdup(cfg->control_plane ? cfg->control_plane : "{}");
    s->local_cluster = strdup(cfg->local_cluster ? cfg->local_cluster : "");
    s->log_arg = cfg->log_arg;
    s->network_of = cfg->network_of;
    s->network_of_arg = cfg->network_of_arg;
    s->authenticate = cfg->authenticate;
    s->authenticate_arg = cfg->authenticate_arg;
    s->ca = cfg->ca;
    s->node_authorize = cfg->node_authorize;
    s->node_authorize_arg = cfg->node_authorize_arg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->push_cv, NULL);
    pthread_cond_init(&s->auth_cv, NULL);
    s->t_shutdown.kind = XDS_TAG_SHUTDOWN;
    grpc_init();
    s->server =
        server_create(s->max_msg, cfg->max_connection_age_ms,
                      cfg->max_connection_age_grace_ms < 0 ? 0 : cfg->max_connection_age_grace_ms);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = add_port(s, s->listen, creds, "", err, errlen);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        xds_server_free(s);
        return NULL;
    }
    if (add_tls_port(s, cfg, err, errlen) < 0) {
        xds_server_free(s);
        return NULL;
    }
    return s;
}

int xds_server_port(const xds_server_t *s)
{
    return s->port;
}

int xds_server_set_tls_pem(xds_server_t *s, const char *cert_chain, const char *key)
{
    return xds_tls_set_pem(s->tls, cert_chain, key);
}

int xds_server_renew_tls(xds_server_t *s, const char *const *dns, size_t ndns, int64_t ttl_s,
                         int64_t *not_after, char *err, size_t errlen)
{
    char *chain = NULL, *key = NULL;
    pthread_mutex_lock(&s->mu); /* keeps the CA alive, as for every signature */
    int rc =
        s->ca ? xds_ca_issue_server(s->ca, dns, ndns, ttl_s, &chain, &key, not_after, err, errlen)
              : XDS_CA_ERR_INTERNAL;
    pthread_mutex_unlock(&s->mu);
    if (!s->ca)
        snprintf(err, errlen, "no CA");
    if (rc == XDS_CA_OK && xds_tls_set_pem(s->tls, chain, key) < 0) {
        snprintf(err, errlen, "the TLS listener does not serve an issued certificate");
        rc = XDS_CA_ERR_INTERNAL;
    }
    if (key)
        memset(key, 0, strlen(key));
    free(key);
    free(chain);
    return rc;
}

int xds_server_tls_port(const xds_server_t *s)
{
    return s->tls_port;
}

/* Asks grpc for the next incoming call; the stream object waits for it. */
static void request_call(xds_server_t *s)
{
    xds_stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        return; /* no memory: stop accepting rather than crash */
    st->srv = s;
    st->proxy_kind = -1;
    st->t_recv = (xds_tag_t){XDS_TAG_RECV, st};
    st->t_send = (xds_tag_t){XDS_TAG_SEND, st};
    st->t_close = (xds_tag_t){XDS_TAG_CLOSE, st};
    st->t_status = (xds_tag_t){XDS_TAG_STATUS, st};
    grpc_call_details_init(&st->details);
    grpc_metadata_array_init(&st->md);
    s->pending_call = st;
    /* t_status doubles as the NEW_CALL tag until the call arrives */
    st->t_status.kind = XDS_TAG_NEW_CALL;
    grpc_call_error e = grpc_server_request_call(s->server, &st->call, &st->details, &st->md, s->cq,
                                                 s->cq, &st->t_status);
    if (e != GRPC_CALL_OK) {
        s->pending_call = NULL;
        grpc_call_details_destroy(&st->details);
        grpc_metadata_array_destroy(&st->md);
        free(st);
    }
}

bool xds_full_slot(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    if (st->full_sending)
        return true;
    if (s->full_inflight < XDS_MAX_FULL_SENDS && !s->wait_head) {
        s->full_inflight++;
        s->full_used_us = xds_now_us();
        st->full_sending = true;
        return true;
    }
    if (!st->full_waiting) {
        st->full_waiting = true;
        st->wait_next = NULL;
        if (s->wait_tail)
            s->wait_tail->wait_next = st;
        else
            s->wait_head = st;
        s->wait_tail = st;
    }
    return false;
}

static void wait_unlink(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    xds_stream_t **pp = &s->wait_head, *prev = NULL;
    while (*pp && *pp != st) {
        prev = *pp;
        pp = &(*pp)->wait_next;
    }
    if (!*pp)
        return;
    *pp = st->wait_next;
    if (s->wait_tail == st)
        s->wait_tail = prev;
    st->full_waiting = false;
}

/* Frees st's slot (if it holds one) and lets the longest waiters send. */
static void full_release(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    if (!st->full_sending)
        return;
    st->full_sending = false;
    s->full_inflight--;
    while (s->wait_head && s->full_inflight < XDS_MAX_FULL_SENDS) {
        xds_stream_t *w = s->wait_head;
        wait_unlink(w);
        if (w->closing)
            continue;
        w->full_sending = true; /* the slot, before it pumps */
        s->full_inflight++;
        s->full_used_us = xds_now_us();
        xds_stream_pump(w);
        if (!w->sending && w->full_sending) { /* nothing to send after all */
            w->full_sending = false;
            s->full_inflight--;
        }
    }
}

/* Drops the full-state bodies once no full send has begun for
 * XDS_FULL_KEEP_US and none is under way: the next stream to connect builds
 * its view's body again from the resources' cached encodings. Messages in
 * flight hold their own refs. */
static void full_expire(xds_server_t *s)
{
    if (s->full_inflight || s->wait_head || !s->full_used_us ||
        xds_now_us() - s->full_used_us < XDS_FULL_KEEP_US)
        return;
    for (size_t i = 0; i < XDS_NFULL; i++)
        xds_full_drop(&s->full[i]);
    s->full_used_us = 0;
}

static void stream_free(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    if (st->prev)
        st->prev->next = st->next;
    else if (s->streams == st)
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    s->nstreams--;
    if (st->full_waiting)
        wait_unlink(st);
    xds_auth_detach(st); /* cancelled while authenticating */
    full_release(st);    /* only if it never got to send; wakes the next */
    if (st->open) {
        s->nopen--;
        s->stats.streams_open--;
    }
    if (st->proxy_kind >= 0)
        s->stats.proxies[st->proxy_kind]--;
    xds_stream_state_free(st);
    if (st->recv_buf)
        grpc_byte_buffer_destroy(st->recv_buf);
    if (st->send_buf)
        grpc_byte_buffer_destroy(st->send_buf);
    if (st->has_close_msg)
        grpc_slice_unref(st->close_msg);
    if (st->call)
        grpc_call_unref(st->call);
    grpc_call_details_destroy(&st->details);
    grpc_metadata_array_destroy(&st->md);
    free(st);
}

static void start(xds_stream_t *st, const grpc_op *ops, size_t n, xds_tag_t *tag)
{
    if (grpc_call_start_batch(st->call, ops, n, tag, NULL) == GRPC_CALL_OK)
        st->ops++;
}

static void start_recv(xds_stream_t *st)
{
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &st->recv_buf;
    start(st, &op, 1, &st->t_recv);
}

void xds_stream_recv(xds_stream_t *st)
{
    if (!st->closing)
        start_recv(st);
}

static void add_initial_md(xds_stream_t *st, grpc_op *op, size_t *n)
{
    if (st->initial_md_sent)
        return;
    memset(&op[*n], 0, sizeof(op[*n]));
    op[*n].op = GRPC_OP_SEND_INITIAL_METADATA;
    (*n)++;
    st->initial_md_sent = true;
}

static void send_status(xds_stream_t *st)
{
    grpc_op ops[2];
    size_t n = 0;
    add_initial_md(st, ops, &n);
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = st->close_code;
    ops[n].data.send_status_from_server.status_details = st->has_close_msg ? &st->close_msg : NULL;
    n++;
    start(st, ops, n, &st->t_status);
}

void xds_stream_close(xds_stream_t *st, grpc_status_code code, const char *msg)
{
    if (st->closing)
        return;
    st->closing = true;
    st->close_code = code;
    if (msg) {
        st->close_msg = grpc_slice_from_copied_string(msg);
        st->has_close_msg = true;
    }
    if (st->sending)
        st->close_pending = true; /* one send at a time: status goes after it */
    else
        send_status(st);
}

void xds_stream_send_slices(xds_stream_t *st, grpc_slice *sl, size_t n, size_t len)
{
    st->send_buf = grpc_raw_byte_buffer_create(sl, n);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(sl[i]); /* the byte buffer has its own references */
    grpc_op ops[2];
    size_t k = 0;
    add_initial_md(st, ops, &k);
    memset(&ops[k], 0, sizeof(ops[k]));
    ops[k].op = GRPC_OP_SEND_MESSAGE;
    ops[k].data.send_message.send_message = st->send_buf;
    k++;
    st->sending = true;
    st->srv->stats.pushes++;
    st->srv->stats.bytes_sent += len;
    start(st, ops, k, &st->t_send);
}

void xds_stream_send(xds_stream_t *st, uint8_t *buf, size_t len)
{
    grpc_slice sl = grpc_slice_new(buf, len, free);
    xds_stream_send_slices(st, &sl, 1, len);
}

static bool method_is(const grpc_slice *m, const char *name)
{
    size_t n = strlen(name);
    return GRPC_SLICE_LENGTH(*m) == n && memcmp(GRPC_SLICE_START_PTR(*m), name, n) == 0;
}

/* A call arrived: route it by method and start receiving. */
static void on_new_call(xds_server_t *s, xds_stream_t *st)
{
    st->t_status.kind = XDS_TAG_STATUS;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->nstreams++;
    char *peer = grpc_call_get_peer(st->call);
    st->peer = peer ? strdup(peer) : NULL;
    gpr_free(peer);
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &st->cancelled;
    start(st, &op, 1, &st->t_close);
    st->delta = method_is(&st->details.method, DELTA_METHOD);
    if (method_is(&st->details.method, XDS_CA_METHOD)) {
        if (!s->ca) {
            xds_stream_close(st, GRPC_STATUS_UNIMPLEMENTED, "ca: meshfed's CA is off (--ca)");
            return;
        }
        st->ca_call = true; /* not an xDS stream: no stream limit, no stream stats */
        start_recv(st);
        return;
    }
    if (!st->delta && !method_is(&st->details.method, SOTW_METHOD)) {
        xds_stream_close(st, GRPC_STATUS_UNIMPLEMENTED, "xds: unknown method");
        return;
    }
    if (s->nopen >= (size_t)s->max_streams) {
        xds_stream_close(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "xds: too many streams");
        return;
    }
    st->open = true;
    s->nopen++;
    s->stats.streams_open++;
    s->stats.streams_total++;
    start_recv(st);
}

static void on_recv(xds_stream_t *st, bool ok)
{
    grpc_byte_buffer *b = st->recv_buf;
    st->recv_buf = NULL;
    if (!ok || st->closing) {
        if (b)
            grpc_byte_buffer_destroy(b);
        return;
    }
    if (!b && st->ca_call) {
        xds_ca_call_fail(st, XDS_CA_RESULT_INVALID, GRPC_STATUS_INVALID_ARGUMENT, "ca: no request");
        return;
    }
    if (!b) { /* the client half-closed: we are done too */
        xds_stream_close(st, GRPC_STATUS_OK, NULL);
        return;
    }
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, b)) {
        grpc_byte_buffer_destroy(b);
        st->srv->stats.bad_requests++;
        xds_stream_close(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: unreadable message");
        return;
    }
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(b);
    if (st->ca_call) { /* unary: nothing more is read */
        xds_ca_call_on_message(st, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
        grpc_slice_unref(sl);
        return;
    }
    xds_stream_on_message(st, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    if (!st->closing && !st->auth_pending) /* authentication resumes reading */
        start_recv(st);
}

void xds_full_unused(xds_stream_t *st)
{
    if (!st->sending)
        full_release(st);
}

static void on_sent(xds_stream_t *st)
{
    st->sending = false;
    full_release(st);
    grpc_byte_buffer_destroy(st->send_buf);
    st->send_buf = NULL;
    if (st->close_pending) {
        st->close_pending = false;
        send_status(st);
    }
}

static void handle_event(xds_server_t *s, xds_tag_t *tag, bool ok)
{
    xds_stream_t *st = tag->st;
    switch (tag->kind) {
    case XDS_TAG_SHUTDOWN:
        atomic_store(&s->shutdown_done, true);
        return;
    case XDS_TAG_NEW_CALL:
        s->pending_call = NULL;
        if (!ok) { /* server shutting down */
            grpc_call_details_destroy(&st->details);
            grpc_metadata_array_destroy(&st->md);
            free(st);
            return;
        }
        if (!atomic_load(&s->stopping))
            request_call(s);
        on_new_call(s, st);
        break;
    case XDS_TAG_RECV:
        st->ops--;
        on_recv(st, ok);
        break;
    case XDS_TAG_SEND:
        st->ops--;
        on_sent(st);
        break;
    case XDS_TAG_CLOSE:
    case XDS_TAG_STATUS:
        st->ops--;
        break;
    }
    if (st->ops == 0)
        stream_free(st);
    else if (!st->closing)
        xds_stream_pump(st);
}

/* A CQ thread: grpc events. The deadline only bounds how long the
 * shutdown check below can wait; publishes are pushed by push_thread. */
static void *cq_thread(void *arg)
{
    xds_server_t *s = arg;
    for (;;) {
        gpr_timespec dl =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(s->cq, dl, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (!atomic_load(&s->quit))
            xds_listen_probe(s);
        pthread_mutex_lock(&s->mu);
        if (ev.type == GRPC_OP_COMPLETE)
            handle_event(s, ev.tag, ev.success != 0);
        full_expire(s);
        if (atomic_load(&s->quit) && !s->cq_shut && atomic_load(&s->shutdown_done) &&
            !s->nstreams && !s->pending_call) {
            grpc_completion_queue_shutdown(s->cq);
            s->cq_shut = true;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* Fans each new snapshot out to the streams as soon as it is published (a
 * condition variable, not polling: grpc core has no public alarm to wake the
 * CQ thread with). Publishes that arrive during a fan-out coalesce into one.
 * Streams waiting for an ACK are skipped here and pumped by the ACK. */
static void *push_thread(void *arg)
{
    xds_server_t *s = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->push_quit && atomic_load(&s->gen) == seen)
            pthread_cond_wait(&s->push_cv, &s->mu);
        if (s->push_quit)
            break;
        seen = atomic_load(&s->gen);
        /* asking every stream's network costs a lookup each: only after a change */
        bool recheck = atomic_exchange(&s->networks_changed, false);
        for (xds_stream_t *st = s->streams; st; st = st->next)
            if (!st->closing && !(recheck && xds_stream_network_moved(st)))
                xds_stream_pump(st);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void xds_server_networks_changed(xds_server_t *s)
{
    atomic_store(&s->networks_changed, true);
}

int xds_server_start(xds_server_t *s)
{
    if (s->started)
        return -1;
    grpc_server_start(s->server);
    pthread_mutex_lock(&s->mu);
    request_call(s);
    pthread_mutex_unlock(&s->mu);
    if (!s->pending_call)
        return -1;
    for (; s->nthr < XDS_CQ_THREADS; s->nthr++)
        if (pthread_create(&s->thr[s->nthr], NULL, cq_thread, s) != 0)
            break;
    if (!s->nthr)
        return -1;
    s->started = true;
    if (pthread_create(&s->push_thr, NULL, push_thread, s) != 0)
        return -1; /* shutdown stops the CQ threads */
    s->push_started = true;
    return 0;
}

void xds_server_publish(xds_server_t *s, model_snapshot_t *snap)
{
    model_snapshot_t *ref = snap ? model_snapshot_ref(snap) : NULL;
    pthread_mutex_lock(&s->mu);
    model_snapshot_t *old = s->snap;
    xds_full_t stale[XDS_NFULL];
    memcpy(stale, s->full, sizeof(stale)); /* bodies of older snapshots */
    memset(s->full, 0, sizeof(s->full));
    s->snap = ref;
    s->publish_us = xds_now_us();
    atomic_fetch_add(&s->gen, 1);
    pthread_cond_signal(&s->push_cv);
    pthread_mutex_unlock(&s->mu);
    /* old may still be some stream's base: those hold their own refs */
    for (size_t i = 0; i < XDS_NFULL; i++)
        xds_full_drop(&stale[i]);
    if (old)
        model_snapshot_unref(old);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void xds_server_shutdown(xds_server_t *s, int grace_ms)
{
    if (!s->started || s->joined)
        return;
    if (s->push_started) {
        pthread_mutex_lock(&s->mu);
        s->push_quit = true;
        pthread_cond_signal(&s->push_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->push_thr, NULL);
        s->push_started = false;
    }
    atomic_store(&s->stopping, true);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
    for (int waited = 0; waited < grace_ms && !atomic_load(&s->shutdown_done); waited += 5)
        sleep_ms(5);
    if (!atomic_load(&s->shutdown_done))
        grpc_server_cancel_all_calls(s->server);
    atomic_store(&s->quit, true);
    for (int i = 0; i < s->nthr; i++)
        pthread_join(s->thr[i], NULL);
    s->joined = true;
}

/* Shutdown for a server that never started: nothing to cancel, just drain. */
static void shutdown_unstarted(xds_server_t *s)
{
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
    grpc_server_cancel_all_calls(s->server);
    grpc_completion_queue_shutdown(s->cq);
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
}

void xds_server_free(xds_server_t *s)
{
    if (!s)
        return;
    if (s->started)
        xds_server_shutdown(s, 0);
    else
        shutdown_unstarted(s);
    /* answers still owed by the authenticator point at s */
    pthread_mutex_lock(&s->mu);
    while (s->auth_inflight > 0)
        pthread_cond_wait(&s->auth_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
    for (size_t i = 0; i < XDS_NFULL; i++)
        xds_full_drop(&s->full[i]);
    if (s->snap)
        model_snapshot_unref(s->snap);
    xds_tls_free(s->tls); /* the fetcher's data: only after the server is gone */
    xds_ca_free(s->ca);
    pthread_cond_destroy(&s->push_cv);
    pthread_cond_destroy(&s->auth_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->listen);
    free(s->trust_domain);
    free(s->control_plane);
    free(s->local_cluster);
    free(s);
    grpc_shutdown();
}

void xds_server_set_ca(xds_server_t *s, xds_ca_t *ca)
{
    pthread_mutex_lock(&s->mu); /* every signature is made under it */
    xds_ca_t *old = s->ca;
    s->ca = ca;
    pthread_mutex_unlock(&s->mu);
    xds_ca_free(old);
}

void xds_server_stats(xds_server_t *s, xds_stats_t *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
    out->tls_loads = xds_tls_loads(s->tls);
    out->listeners_stalled =
        (uint64_t)atomic_load(&s->check[0].stalled) + (uint64_t)atomic_load(&s->check[1].stalled);
}

void xds_server_each_proxy(xds_server_t *s, xds_proxy_fn fn, void *arg)
{
    pthread_mutex_lock(&s->mu);
    for (xds_stream_t *st = s->streams; st; st = st->next) {
        if (!st->open || !st->node_id || !st->authed || st->debug)
            continue;
        const xds_type_state_t *ts = &st->addr;
        xds_proxy_info_t p = {
            .node_id = st->node_id,
            .cluster = st->cluster,
            .network = st->network,
            .type_url = ts->subscribed ? XDS_TYPE_ADDRESS : XDS_TYPE_AUTHORIZATION,
            .peer = st->peer,
            .version_sent = ts->version_sent,
            .version_acked = ts->version_acked,
            .nacks = st->nacks,
            .last_nack = st->last_nack,
            .resources = !st->delta     ? ts->nsent
                         : ts->wildcard ? ts->nheld
                                        : ts->have.n,
            .identity = st->identity,
            .unknown_cluster = st->unknown_cluster,
            .names = st->nnames,
        };
        fn(&p, arg);
    }
    pthread_mutex_unlock(&s->mu);
}
