/*
 * bench_soak.c - the xDS server under steady churn for a bounded time: a mesh
 * of ~20,000 endpoints (2 clusters on 2 networks, 1,000 services of 10
 * endpoints, half global), N ztunnel-like Delta ADS streams in view of c0,
 * and endpoint changes at a fixed rate (50 per second: 5 commits per second
 * of 10 readiness flips each, in c1's global services, so that every commit
 * changes every stream's view).
 *
 * The clients run in a child forked before grpc_init (as in bench_xds.c), so
 * the server's RSS is its own. The parent sends the child each published
 * snapshot version; the child answers (version, time) once every stream got a
 * response of at least that version (clients ACK every response at once).
 * Both stamp CLOCK_MONOTONIC.
 *
 * Every 10 s: elapsed, server RSS, publish -> last stream latency p50/p99 of
 * that window, responses and bytes sent in it. At the end: RSS growth from
 * the first window to the last, and of the live heap (jemalloc's
 * stats.allocated, or mallinfo2), which tells a leak from allocator noise.
 * Usage: bench_soak [seconds=120] [streams=200]
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
#include <dlfcn.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DELTA "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define NCQ 2
#define NSVC 1000
#define PER 10
#define COMMITS_PER_S 5
#define CHANGES_PER_COMMIT 10
#define WINDOW_S 10

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "bench_soak: %s\n", msg);
    exit(1);
}

static void xwrite(int fd, uint64_t v)
{
    if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        die("pipe write");
}

/* false on timeout or EOF */
static bool xread(int fd, void *v, size_t len, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return false;
    return read(fd, v, len) == (ssize_t)len;
}

/* ---------- the mesh ---------- */

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

/* not_ready: a bit per endpoint */
static model_endpointslice_t *slice(int c, int s, unsigned not_ready)
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
    sl->endpoints = calloc(PER, sizeof(*sl->endpoints));
    sl->nendpoints = PER;
    for (int e = 0; e < PER; e++) {
        model_endpoint_t *ep = &sl->endpoints[e];
        ip_of(&ep->ip, c, s * PER + e);
        ep->ready = !(not_ready & (1u << e));
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

static model_pod_t *pod(int c, int s, int e)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    char name[64];
    p->ns = strdup("bench");
    snprintf(name, sizeof(name), "svc%d-7d9f8-%05d", s, e);
    p->name = strdup(name);
    p->ips = calloc(1, sizeof(model_ip_t));
    ip_of(&p->ips[0], c, s * PER + e);
    p->nips = 1;
    p->node = strdup("node-1");
    p->service_account = strdup("default");
    p->ready = true;
    snprintf(name, sizeof(name), "svc%d", s);
    model_labels_set(&p->labels, "app", name);
    return p;
}

static model_t *build(void)
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
        for (int s = 0; s < NSVC; s++) {
            apply(m, id, MODEL_KIND_SERVICE, service(s));
            for (int e = 0; e < PER; e++)
                apply(m, id, MODEL_KIND_POD, pod(c, s, e));
            apply(m, id, MODEL_KIND_ENDPOINTSLICE, slice(c, s, 0));
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

/* Live heap bytes: jemalloc's stats.allocated when linked with it (looked up
 * at run time), else glibc's mallinfo2; 0 when neither knows (sanitizers). */
static double heap_mb(void)
{
    typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
    mallctl_fn mc = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
    if (mc) {
        uint64_t epoch = 1;
        size_t allocated = 0, sz = sizeof(allocated);
        mc("epoch", NULL, NULL, &epoch, sizeof(epoch));
        if (mc("stats.allocated", &allocated, &sz, NULL, 0) == 0)
            return (double)allocated / (1024.0 * 1024.0);
    }
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.uordblks / (1024.0 * 1024.0);
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

#define MAXQ 4096
typedef struct clients {
    cstream_t *st;
    int n;
    grpc_completion_queue *cq[NCQ];
    pthread_mutex_t mu;
    uint64_t q[MAXQ];          /* versions the parent waits for, ascending */
    int qhead, qtail;
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

/* With c->mu held: reports every waited-for version that all streams have. */
static void report(clients_t *c, uint64_t t)
{
    if (c->qhead == c->qtail)
        return;
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < c->n; i++)
        if (c->st[i].version < min)
            min = c->st[i].version;
    while (c->qhead != c->qtail && c->q[c->qhead % MAXQ] <= min) {
        uint64_t rec[2] = {c->q[c->qhead % MAXQ], t};
        if (write(c->out_fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
            die("pipe write");
        c->qhead++;
    }
}

static void reach(clients_t *c, cstream_t *s, uint64_t v, uint64_t t)
{
    pthread_mutex_lock(&c->mu);
    s->version = v;
    report(c, t);
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

/* Reads targets from the parent until 0 or EOF. */
static int run_clients(int n, int in_fd, int out_fd)
{
    uint64_t port, v;
    if (!xread(in_fd, &port, sizeof(port), 600000))
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
    for (int i = 0; i < n; i++)
        open_stream(&c, i, target);
    for (;;) {
        struct pollfd p = {.fd = in_fd, .events = POLLIN};
        int r = poll(&p, 1, 1000);
        if (r == 0)
            continue;
        if (r < 0 || read(in_fd, &v, sizeof(v)) != (ssize_t)sizeof(v) || v == 0)
            break;
        pthread_mutex_lock(&c.mu);
        if (c.qtail - c.qhead < MAXQ)
            c.q[c.qtail++ % MAXQ] = v;
        report(&c, now_ns());
        pthread_mutex_unlock(&c.mu);
    }
    uint64_t rec[2] = {0, __atomic_load_n(&c.bytes, __ATOMIC_RELAXED)};
    if (write(out_fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
        _exit(1);
    _exit(0); /* the parent measured what it needed; skip the teardown */
}

/* ---------- the server (parent) ---------- */

#define MAXPEND 4096

typedef struct soak {
    pthread_mutex_t mu;
    uint64_t pend_v[MAXPEND], pend_t[MAXPEND]; /* published, not yet reached */
    int npend;
    double *lat;                               /* this window's latencies, ms */
    int nlat, cap;
    uint64_t client_bytes;
    bool child_done;
    int from_child;
    uint64_t initial_done;                     /* time the initial version was reached */
    uint64_t initial_v;
} soak_t;

static void *reader(void *arg)
{
    soak_t *k = arg;
    uint64_t rec[2];
    while (xread(k->from_child, rec, sizeof(rec), 600000)) {
        pthread_mutex_lock(&k->mu);
        if (rec[0] == 0) {
            k->client_bytes = rec[1];
            k->child_done = true;
            pthread_mutex_unlock(&k->mu);
            break;
        }
        if (rec[0] == k->initial_v)
            k->initial_done = rec[1];
        for (int i = 0; i < k->npend;) {
            if (k->pend_v[i] <= rec[0]) {
                if (k->nlat == k->cap) {
                    k->cap = k->cap ? k->cap * 2 : 256;
                    k->lat = realloc(k->lat, (size_t)k->cap * sizeof(double));
                }
                k->lat[k->nlat++] = (double)(rec[1] - k->pend_t[i]) / 1e6;
                k->pend_v[i] = k->pend_v[k->npend - 1];
                k->pend_t[i] = k->pend_t[k->npend - 1];
                k->npend--;
            } else {
                i++;
            }
        }
        pthread_mutex_unlock(&k->mu);
    }
    return NULL;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 120;
    int nstreams = argc > 2 ? atoi(argv[2]) : 200;
    if (seconds < 1 || nstreams < 1)
        die("usage: bench_soak [seconds] [streams]");
    int down[2], up[2];
    if (pipe(down) < 0 || pipe(up) < 0)
        die("pipe");
    fflush(stdout);
    pid_t child = fork(); /* before any grpc_init: the child's grpc is its own */
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        return run_clients(nstreams, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    uint64_t t = now_ns();
    model_t *m = build();
    model_snapshot_t *snap = model_commit(m);
    printf("mesh: 2 clusters, %d services (half global), %d endpoints; built in %.2f s\n", NSVC,
           2 * NSVC * PER, (double)(now_ns() - t) / 1e9);
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = nstreams + 16};
    char err[256];
    xds_server_t *s = xds_server_new(&cfg, err, sizeof(err));
    if (!s || xds_server_start(s) < 0)
        die(err);
    xds_server_publish(s, snap);
    soak_t k = {.from_child = up[0], .initial_v = model_snapshot_version(snap)};
    pthread_mutex_init(&k.mu, NULL);
    k.pend_v[0] = k.initial_v;
    k.pend_t[0] = now_ns();
    k.npend = 1;
    model_snapshot_unref(snap);
    pthread_t rd;
    pthread_create(&rd, NULL, reader, &k);
    xwrite(down[1], (uint64_t)xds_server_port(s));
    xwrite(down[1], k.initial_v);
    for (int i = 0; i < 1200; i++) { /* the initial push, bounded */
        pthread_mutex_lock(&k.mu);
        uint64_t done = k.initial_done;
        pthread_mutex_unlock(&k.mu);
        if (done) {
            xds_stats_t st;
            xds_server_stats(s, &st);
            printf("initial push to %d streams: %.2f s, %.1f MB\n", nstreams,
                   (double)(done - k.pend_t[0]) / 1e9, (double)st.bytes_sent / 1e6);
            break;
        }
        if (i == 1199)
            die("initial push incomplete after 120 s");
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&k.mu);
    k.nlat = 0; /* the initial push is not a window figure */
    pthread_mutex_unlock(&k.mu);

    printf("churn: %d endpoint changes/s (%d commits/s of %d) for %d s, %d streams\n",
           COMMITS_PER_S * CHANGES_PER_COMMIT, COMMITS_PER_S, CHANGES_PER_COMMIT, seconds,
           nstreams);
    printf("%8s %8s %8s %9s %9s %9s %8s %9s\n", "elapsed", "rss_MB", "heap_MB", "p50_ms",
           "p99_ms", "max_ms", "pushes", "bytes_MB");
    unsigned *not_ready = calloc(NSVC, sizeof(unsigned));
    unsigned seed = 42;
    uint64_t start = now_ns(), period = 1000000000u / COMMITS_PER_S, next = start + period;
    uint64_t next_win = start + (uint64_t)WINDOW_S * 1000000000u;
    xds_stats_t w0, w1;
    xds_server_stats(s, &w0);
    long rss_first = -1, rss_last = 0;
    double heap_first = 0, heap_last = 0;
    int windows = 0, late = 0;
    uint64_t commits = 0;
    while (now_ns() < start + (uint64_t)seconds * 1000000000u) {
        for (int i = 0; i < CHANGES_PER_COMMIT; i++) {
            /* c1's global services: a readiness flip changes c0's view */
            int svc = (rand_r(&seed) % (NSVC / 2)) * 2;
            not_ready[svc] ^= 1u << (rand_r(&seed) % PER);
            if (not_ready[svc] == (1u << PER) - 1) /* keep at least one ready */
                not_ready[svc] = 0;
            apply(m, "c1", MODEL_KIND_ENDPOINTSLICE, slice(1, svc, not_ready[svc]));
        }
        snap = model_commit(m);
        xds_server_publish(s, snap);
        uint64_t v = model_snapshot_version(snap), t0 = now_ns();
        model_snapshot_unref(snap);
        commits++;
        pthread_mutex_lock(&k.mu);
        if (k.npend < MAXPEND) {
            k.pend_v[k.npend] = v;
            k.pend_t[k.npend++] = t0;
        }
        pthread_mutex_unlock(&k.mu);
        xwrite(down[1], v);
        uint64_t now = now_ns();
        if (now < next) {
            uint64_t d = next - now;
            struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
            nanosleep(&ts, NULL);
        } else {
            late++;
        }
        next += period;
        if (now_ns() >= next_win) {
            xds_server_stats(s, &w1);
            long rss = rss_kb();
            double heap = heap_mb();
            pthread_mutex_lock(&k.mu);
            int n = k.nlat;
            double p50 = 0, p99 = 0, mx = 0;
            if (n) {
                qsort(k.lat, (size_t)n, sizeof(double), cmpd);
                p50 = k.lat[n / 2];
                p99 = k.lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
                mx = k.lat[n - 1];
            }
            int pend = k.npend;
            k.nlat = 0;
            pthread_mutex_unlock(&k.mu);
            printf("%7.0fs %8.1f %8.1f %9.2f %9.2f %9.2f %8llu %9.1f   (%d reached, %d pending)\n",
                   (double)(now_ns() - start) / 1e9, (double)rss / 1024.0, heap, p50, p99, mx,
                   (unsigned long long)(w1.pushes - w0.pushes),
                   (double)(w1.bytes_sent - w0.bytes_sent) / 1e6, n, pend);
            if (rss_first < 0) {
                rss_first = rss;
                heap_first = heap;
            }
            rss_last = rss;
            heap_last = heap;
            windows++;
            w0 = w1;
            next_win += (uint64_t)WINDOW_S * 1000000000u;
        }
    }
    xwrite(down[1], 0);
    pthread_join(rd, NULL);
    xds_stats_t st;
    xds_server_stats(s, &st);
    printf("commits: %llu (%d late), pending at the end: %d; clients received %.1f MB; "
           "server sent %llu responses, %.1f MB, %llu NACKs\n",
           (unsigned long long)commits, late, k.npend, (double)k.client_bytes / 1e6,
           (unsigned long long)st.pushes, (double)st.bytes_sent / 1e6,
           (unsigned long long)st.nacks);
    if (windows >= 2)
        printf("RSS growth from the first window to the last (%d windows): %+.1f MB "
               "(%.1f -> %.1f MB)\n",
               windows, (double)(rss_last - rss_first) / 1024.0, (double)rss_first / 1024.0,
               (double)rss_last / 1024.0);
    if (windows >= 2)
        printf("live heap growth from the first window to the last: %+.2f MB (%.2f -> %.2f MB)\n",
               heap_last - heap_first, heap_first, heap_last);
    waitpid(child, NULL, 0);
    xds_server_shutdown(s, 100);
    xds_server_free(s);
    model_free(m);
    free(not_ready);
    free(k.lat);
    return 0;
}
