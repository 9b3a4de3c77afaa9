/*
 * bench_xds.c - how the xDS server scales: a mesh of 100,000 endpoints
 * (2 clusters on 2 networks, 2,000 services, half of them global), 1,000
 * ztunnel-like Delta ADS streams in view of cluster c0, then one-endpoint
 * changes one at a time.
 *
 * The clients run in a child forked before grpc_init, so the server's RSS is
 * measured alone. Both processes stamp CLOCK_MONOTONIC, which is shared, and
 * talk over two pipes: the parent sends the snapshot version to wait for, the
 * child answers with the time the last stream received a response of at
 * least that version (clients ACK every response at once).
 *
 * Prints: initial push time and bytes, p50/p99 time from publish to the last
 * stream having a one-endpoint change, bytes per change, server memory per
 * idle stream (RSS and heap deltas).
 * Usage: bench_xds [streams] [endpoints] [services] [changes]
 */
#include "model/model.h"
#include "xds/xds.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define NCQ 2
#define STEP_TIMEOUT_MS 30000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "bench_xds: %s\n", msg);
    exit(1);
}

static void xwrite(int fd, uint64_t v)
{
    if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        die("pipe write");
}

/* false on timeout or EOF */
static bool xread(int fd, uint64_t *v, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return false;
    return read(fd, v, sizeof(*v)) == (ssize_t)sizeof(*v);
}

/* ---------- the mesh (as in bench_model.c) ---------- */

static void ip_of(model_ip_t *ip, int cluster, int n)
{
    ip->len = 4;
    ip->b[0] = 10;
    ip->b[1] = (uint8_t)(cluster * 16 + n / 65536);
    ip->b[2] = (uint8_t)(n / 256);
    ip->b[3] = (uint8_t)(n % 256);
}

static void apply(model_t *m, const char *cluster, model_kind_t k, void *obj)
{
    char err[MODEL_ERRLEN];
    if (model_apply(m, cluster, k, MODEL_OP_UPSERT, obj, err, sizeof(err)) < 0)
        die(err);
}

static model_endpointslice_t *slice(int c, int s, int per, int not_ready)
{
    model_endpointslice_t *sl = calloc(1, sizeof(*sl));
    char name[64];
    sl->ns = strdup("bench");
    snprintf(name, sizeof(name), "svc%d-abcde", s);
    sl->name = strdup(name);
    snprintf(name, sizeof(name), "svc%d", s);
    sl->service = strdup(name);
    sl->ports = calloc(1, sizeof(*sl->ports));
    sl->ports[0].name = strdup("http");
    sl->ports[0].port = 8080;
    sl->nports = 1;
    sl->endpoints = calloc((size_t)per, sizeof(*sl->endpoints));
    sl->nendpoints = (size_t)per;
    for (int e = 0; e < per; e++) {
        model_endpoint_t *ep = &sl->endpoints[e];
        ip_of(&ep->ip, c, s * per + e);
        ep->ready = e != not_ready;
        ep->serving = true;
        snprintf(name, sizeof(name), "svc%d-7d9f8-%05d", s, e);
        ep->pod = strdup(name);
        ep->node = strdup("node-1");
        ep->zone = strdup("zone-a");
    }
    return sl;
}

static model_service_t *service(int s)
{
    model_service_t *sv = calloc(1, sizeof(*sv));
    char name[64];
    sv->ns = strdup("bench");
    snprintf(name, sizeof(name), "svc%d", s);
    sv->name = strdup(name);
    model_labels_set(&sv->labels, "app", name);
    if (s % 2 == 0)
        model_labels_set(&sv->labels, "istio.io/global", "true");
    sv->cluster_ips = calloc(1, sizeof(model_ip_t));
    ip_of(&sv->cluster_ips[0], 14, s);
    sv->ncluster_ips = 1;
    sv->ports = calloc(1, sizeof(*sv->ports));
    sv->ports[0].name = strdup("http");
    sv->ports[0].port = 80;
    sv->ports[0].target_port = 8080;
    sv->nports = 1;
    return sv;
}

static model_pod_t *pod(int c, int s, int per, int e)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    char name[64];
    p->ns = strdup("bench");
    snprintf(name, sizeof(name), "svc%d-7d9f8-%05d", s, e);
    p->name = strdup(name);
    p->ips = calloc(1, sizeof(model_ip_t));
    ip_of(&p->ips[0], c, s * per + e);
    p->nips = 1;
    p->node = strdup("node-1");
    p->service_account = strdup("default");
    p->ready = true;
    snprintf(name, sizeof(name), "svc%d", s);
    model_labels_set(&p->labels, "app", name);
    return p;
}

static model_t *build(int nservices, int per)
{
    model_t *m = model_new(NULL);
    char err[MODEL_ERRLEN];
    for (int c = 0; c < 2; c++) {
        char id[16], net[16];
        snprintf(id, sizeof(id), "c%d", c);
        snprintf(net, sizeof(net), "n%d", c);
        model_cluster_t ci = {.id = id, .network = net};
        ip_of(&ci.gateway, 15, c);
        if (model_cluster_set(m, &ci, err, sizeof(err)) < 0)
            die(err);
        for (int s = 0; s < nservices; s++) {
            apply(m, id, MODEL_KIND_SERVICE, service(s));
            for (int e = 0; e < per; e++)
                apply(m, id, MODEL_KIND_POD, pod(c, s, per, e));
            apply(m, id, MODEL_KIND_ENDPOINTSLICE, slice(c, s, per, -1));
        }
    }
    return m;
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    if (f)
        fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---------- the clients (child process) ---------- */

enum { OP_SEND = 1, OP_RECV = 2, OP_STATUS = 3 };

typedef struct cstream {
    grpc_channel *ch;
    grpc_call *call;
    int cq;
    grpc_byte_buffer *rbuf, *sbuf;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
    bool sending, got_imd, done;
    char pending_nonce[32];    /* ACK waiting for the send in flight */
    uint64_t version;          /* of the last response */
} cstream_t;

typedef struct clients {
    cstream_t *st;
    int n;
    grpc_completion_queue *cq[NCQ];
    pthread_mutex_t mu;
    uint64_t target;           /* version the parent waits for */
    int reached;               /* streams at >= target */
    bool reported;
    uint64_t bytes;            /* response bytes received */
    int out_fd;
} clients_t;

static void *tag_of(cstream_t *s, int op)
{
    return (void *)((uintptr_t)s | (uintptr_t)op);
}

static void start(cstream_t *s, grpc_op *ops, size_t n, int op)
{
    if (grpc_call_start_batch(s->call, ops, n, tag_of(s, op), NULL) != GRPC_CALL_OK)
        die("start_batch");
}

static void send_req(cstream_t *s, Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq,
                     bool first)
{
    size_t len = envoy__service__discovery__v3__delta_discovery_request__get_packed_size(rq);
    uint8_t buf[512];
    if (len > sizeof(buf))
        die("request too big");
    envoy__service__discovery__v3__delta_discovery_request__pack(rq, buf);
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    s->sbuf = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (first)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->sbuf;
    s->sending = true;
    start(s, ops, n, OP_SEND);
}

static void send_first(cstream_t *s)
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
    send_req(s, &rq, true);
}

static void send_ack(cstream_t *s, const char *nonce)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.type_url = (char *)XDS_TYPE_ADDRESS;
    rq.response_nonce = (char *)nonce;
    send_req(s, &rq, false);
}

static void start_recv(cstream_t *s)
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
    start(s, ops, n, OP_RECV);
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

/* system_version_info (1) and nonce (5) of a DeltaDiscoveryResponse without
 * decoding its resources: the clients must not be the bottleneck. */
static bool scan_response(const uint8_t *p, size_t len, uint64_t *version, char *nonce,
                          size_t nlen)
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

static void reach(clients_t *c, cstream_t *s, uint64_t v, uint64_t t)
{
    pthread_mutex_lock(&c->mu);
    uint64_t old = s->version;
    s->version = v;
    if (c->target && old < c->target && v >= c->target && ++c->reached == c->n &&
        !c->reported) {
        c->reported = true;
        xwrite(c->out_fd, t);
    }
    pthread_mutex_unlock(&c->mu);
}

static void on_recv(clients_t *c, cstream_t *s)
{
    uint64_t t = now_ns();
    if (!s->rbuf) {
        s->done = true;
        return;
    }
    /* the server puts version and nonce before the resources: read only the
     * first few KB instead of copying megabytes per response */
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
    uint64_t v = 0;
    char nonce[32];
    if (!scan_response(head, hlen, &v, nonce, sizeof(nonce))) {
        /* a server that puts them last (protobuf-c field order): read it all */
        grpc_byte_buffer_reader_init(&rd, s->rbuf);
        sl = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        bool ok = scan_response(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), &v, nonce,
                                sizeof(nonce));
        grpc_slice_unref(sl);
        if (!ok)
            die("bad response");
    }
    __atomic_add_fetch(&c->bytes, grpc_byte_buffer_length(s->rbuf), __ATOMIC_RELAXED);
    grpc_byte_buffer_destroy(s->rbuf);
    s->rbuf = NULL;
    if (s->sending)
        snprintf(s->pending_nonce, sizeof(s->pending_nonce), "%s", nonce);
    else
        send_ack(s, nonce);
    start_recv(s);
    reach(c, s, v, t);
}

static void on_event(clients_t *c, grpc_event ev)
{
    cstream_t *s = (cstream_t *)((uintptr_t)ev.tag & ~(uintptr_t)7);
    switch ((uintptr_t)ev.tag & 7) {
    case OP_SEND:
        grpc_byte_buffer_destroy(s->sbuf);
        s->sbuf = NULL;
        s->sending = false;
        if (s->pending_nonce[0] && ev.success) {
            char nonce[32];
            memcpy(nonce, s->pending_nonce, sizeof(nonce));
            s->pending_nonce[0] = '\0';
            send_ack(s, nonce);
        }
        break;
    case OP_RECV:
        if (ev.success)
            on_recv(c, s);
        else
            s->done = true;
        break;
    case OP_STATUS:
        s->done = true;
        break;
    }
}

typedef struct cq_arg {
    clients_t *c;
    int i;
} cq_arg_t;

static void *client_thread(void *arg)
{
    cq_arg_t *a = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(a->c->cq[a->i],
                                                   gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(a->c, ev);
    }
    return NULL;
}

static void open_stream(clients_t *c, int i, const char *target)
{
    cstream_t *s = &c->st[i];
    grpc_arg args[3];
    args[0].type = GRPC_ARG_INTEGER; /* one connection per stream, like ztunnels */
    args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)"meshfed.bench.client";
    args[2].value.integer = i;
    grpc_channel_args ca = {3, args};
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    s->ch = grpc_channel_create(target, cr, &ca);
    grpc_channel_credentials_release(cr);
    s->cq = i % NCQ;
    s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq[s->cq],
                                       grpc_slice_from_static_string(DELTA), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->details;
    op.data.recv_status_on_client.trailing_metadata = &s->tmd;
    start(s, &op, 1, OP_STATUS);
    send_first(s);
    start_recv(s);
}

/* Waits for the next target from the parent; 0 (or EOF) ends the run. */
static void set_target(clients_t *c, uint64_t v)
{
    pthread_mutex_lock(&c->mu);
    c->target = v;
    c->reported = false;
    c->reached = 0;
    for (int i = 0; i < c->n; i++)
        if (c->st[i].version >= v)
            c->reached++;
    if (c->reached == c->n) {
        c->reported = true;
        xwrite(c->out_fd, now_ns());
    }
    pthread_mutex_unlock(&c->mu);
}

static int run_clients(int n, int in_fd, int out_fd)
{
    uint64_t port, v;
    if (!xread(in_fd, &port, 600000) || !xread(in_fd, &v, 1000))
        return 1;
    grpc_init();
    clients_t c = {.n = n, .out_fd = out_fd};
    c.st = calloc((size_t)n, sizeof(*c.st));
    pthread_mutex_init(&c.mu, NULL);
    pthread_t thr[NCQ];
    cq_arg_t args[NCQ];
    for (int i = 0; i < NCQ; i++) {
        c.cq[i] = grpc_completion_queue_create_for_next(NULL);
        args[i] = (cq_arg_t){&c, i};
        pthread_create(&thr[i], NULL, client_thread, &args[i]);
    }
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", (int)port);
    xwrite(out_fd, now_ns()); /* the start of the initial push */
    set_target(&c, v);
    for (int i = 0; i < n; i++)
        open_stream(&c, i, target);
    while (xread(in_fd, &v, 600000) && v)
        set_target(&c, v);
    uint64_t bytes = __atomic_load_n(&c.bytes, __ATOMIC_RELAXED);
    xwrite(out_fd, bytes);
    for (int i = 0; i < n; i++)
        grpc_call_cancel(c.st[i].call, NULL);
    _exit(0); /* the parent measured what it needed; skip the teardown */
}

/* ---------- the server (parent) ---------- */

static void warm_cb(const model_res_t *r, void *arg)
{
    size_t len;
    (void)arg;
    xds_encode_address(r, &len);
}

static double cpu_s(void) /* this process: the server alone */
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench {
    model_t *m;
    xds_server_t *s;
    int to_child, from_child;
    pid_t child;
    int per;
} bench_t;

static model_snapshot_t *publish(bench_t *b, uint64_t *t)
{
    model_snapshot_t *snap = model_commit(b->m);
    xds_server_publish(b->s, snap);
    *t = now_ns();
    return snap;
}

static void changes(bench_t *b, int nservices, int nchanges)
{
    double *lat = calloc((size_t)nchanges, sizeof(double));
    xds_stats_t s0, s1;
    xds_server_stats(b->s, &s0);
    double cpu0 = cpu_s();
    int done = 0;
    for (int i = 0; i < nchanges; i++) {
        /* c1's slice of a global service: one endpoint not ready changes the
         * capacity of the one workload c0 sees for it behind n1's gateway */
        int half = nservices / 2 > 0 ? nservices / 2 : 1;
        int svc = (i % half) * 2, not_ready = (i / half) % b->per; /* never a no-op */
        apply(b->m, "c1", MODEL_KIND_ENDPOINTSLICE, slice(1, svc, b->per, not_ready));
        uint64_t t0, t1;
        model_snapshot_t *snap = publish(b, &t0);
        xwrite(b->to_child, model_snapshot_version(snap));
        model_snapshot_unref(snap);
        if (!xread(b->from_child, &t1, STEP_TIMEOUT_MS)) {
            fprintf(stderr, "change %d: not every stream got it within %d ms\n", i,
                    STEP_TIMEOUT_MS);
            break;
        }
        lat[done++] = (double)(t1 - t0) / 1e6;
    }
    xds_server_stats(b->s, &s1);
    double cpu = cpu_s() - cpu0;
    if (!done)
        return;
    qsort(lat, (size_t)done, sizeof(double), cmpd);
    printf("one-endpoint change to every stream (%d changes): p50 %.2f ms, p99 %.2f ms, "
           "max %.2f ms\n",
           done, lat[done / 2], lat[(done * 99) / 100 < done ? (done * 99) / 100 : done - 1],
           lat[done - 1]);
    printf("per change: %.0f bytes sent, %.1f responses, %.1f resources, %.1f ms server CPU\n",
           (double)(s1.bytes_sent - s0.bytes_sent) / done,
           (double)(s1.pushes - s0.pushes) / done,
           (double)(s1.resources_sent - s0.resources_sent) / done, cpu * 1e3 / done);
    free(lat);
}

int main(int argc, char **argv)
{
    int nstreams = argc > 1 ? atoi(argv[1]) : 1000;
    int neps = argc > 2 ? atoi(argv[2]) : 100000;
    int nservices = argc > 3 ? atoi(argv[3]) : 2000;
    int nchanges = argc > 4 ? atoi(argv[4]) : 50;
    bench_t b = {.per = neps / 2 / nservices};
    if (b.per < 1 || nstreams < 1)
        die("usage: bench_xds [streams] [endpoints] [services] [changes]");
    int down[2], up[2];
    if (pipe(down) < 0 || pipe(up) < 0)
        die("pipe");
    fflush(stdout);
    b.child = fork(); /* before any grpc_init: the child's grpc is its own */
    if (b.child < 0)
        die("fork");
    if (b.child == 0) {
        close(down[1]);
        close(up[0]);
        return run_clients(nstreams, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    b.to_child = down[1];
    b.from_child = up[0];
    signal(SIGPIPE, SIG_IGN);

    uint64_t t = now_ns();
    b.m = build(nservices, b.per);
    model_snapshot_t *snap = model_commit(b.m);
    printf("mesh: 2 clusters, %d services (half global), %d endpoints; built in %.2f s\n",
           nservices, 2 * nservices * b.per, (double)(now_ns() - t) / 1e9);
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = nstreams + 16};
    char err[256];
    b.s = xds_server_new(&cfg, err, sizeof(err));
    if (!b.s || xds_server_start(b.s) < 0)
        die(err);
    xds_server_publish(b.s, snap);
    /* the encodings are cached on the resources and shared by all streams:
     * build them first so that the per-stream figure is per stream */
    long rss_enc = rss_kb();
    t = now_ns();
    model_view_t view = {.cluster = "c0", .network = "n0"};
    model_snapshot_each(snap, &view, warm_cb, NULL);
    printf("encoding the view of c0: %.2f s, %.1f MB RSS of shared cache\n",
           (double)(now_ns() - t) / 1e9, (double)(rss_kb() - rss_enc) / 1024.0);
    malloc_trim(0);
    long rss0 = rss_kb();

    xwrite(b.to_child, (uint64_t)xds_server_port(b.s));
    xwrite(b.to_child, model_snapshot_version(snap));
    model_snapshot_unref(snap);
    uint64_t t_start, t_done;
    xds_stats_t st;
    if (!xread(b.from_child, &t_start, 60000) || !xread(b.from_child, &t_done, 120000)) {
        xds_server_stats(b.s, &st);
        fprintf(stderr, "initial push incomplete after 120 s: %llu streams open, %llu pushes, "
                "%.1f MB sent\n", (unsigned long long)st.streams_open,
                (unsigned long long)st.pushes, (double)st.bytes_sent / 1e6);
        kill(b.child, SIGKILL);
        return 1;
    }
    xds_server_stats(b.s, &st);
    printf("initial push to %d streams: %.2f s, %.1f MB sent (%.0f KB per stream, %llu "
           "resources each)\n",
           nstreams, (double)(t_done - t_start) / 1e9, (double)st.bytes_sent / 1e6,
           (double)st.bytes_sent / 1e3 / nstreams,
           (unsigned long long)(st.resources_sent / (uint64_t)nstreams));
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL); /* let the last sends complete and buffers go */
    malloc_trim(0);
    long rss1 = rss_kb();
    printf("server memory per idle stream: %.1f KiB RSS (server process alone; includes "
           "the view's shared full-state body, %.1f KiB per stream)\n",
           (double)(rss1 - rss0) / nstreams, (double)st.bytes_sent / nstreams / 1024.0 / nstreams);
    if (getenv("BENCH_IDLE_EXIT")) { /* for heap profilers: what is live now leaks */
        kill(b.child, SIGKILL);
        exit(0);
    }

    changes(&b, nservices, nchanges);
    xwrite(b.to_child, 0);
    uint64_t bytes = 0;
    if (xread(b.from_child, &bytes, 10000))
        printf("clients received %.1f MB in all\n", (double)bytes / 1e6);
    waitpid(b.child, NULL, 0);
    xds_server_shutdown(b.s, 100);
    xds_server_free(b.s);
    model_free(b.m);
    return 0;
}
