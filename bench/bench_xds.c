/*
 * bench_xds.c - how the xDS server scales, and how far it is from the floor:
 * a mesh of 100,000 endpoints (2 clusters on 2 networks, 2,000 services,
 * half of them global), 1,000 ztunnel-like Delta ADS streams in view of
 * cluster c0, then one-endpoint changes one at a time.
 *
 * The floor is a minimal grpc-core server (the end of this file) that keeps
 * no model, computes no diff and holds nothing per stream but the call and
 * how far it has sent. After meshfed has gone it pushes the very responses
 * meshfed sent (stream 0's, captured by the clients) to as many new streams,
 * measured the same way: what meshfed costs above it is the price of the
 * model, the diffs and its per-stream state.
 *
 * The clients run in a child forked before grpc_init, so the server's RSS and
 * CPU are measured alone. Both processes stamp CLOCK_MONOTONIC, which is
 * shared, and talk over two pipes: the parent sends the snapshot version to
 * wait for, the child answers with the time the last stream received a
 * response of at least that version (clients ACK every response at once).
 *
 * Prints, for meshfed and then the floor: initial push time and bytes/s,
 * server memory per idle stream (RSS delta), p50/p99 time from publish to the
 * last stream having a one-endpoint change and server CPU per change; then
 * meshfed/floor ratios next to the targets (p99 <= 1.3x the floor, <= 32 KiB
 * per idle stream), printed, not asserted.
 * Usage: bench_xds [streams] [endpoints] [services] [changes] [gap-ms]
 * gap-ms: a pause before each change (default 0: the next change is
 * published as soon as every stream has the last, often before the server
 * has read their ACKs).
 */
#include "model.h"
#include "testlib.h"
#include "xds.h"
#include "xds_int.h"

#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STEP_TIMEOUT_MS 30000
#define PUSH_TIMEOUT_MS 600000

static void die(const char *msg)
{
    fprintf(stderr, "bench_xds: %s\n", msg);
    exit(1);
}

/* ---------- the clients (child process) ---------- */

typedef struct clients {
    tl_streams_t ss; /* first: reach gets it */
    pthread_mutex_t mu;
    uint64_t target; /* version the parent waits for */
    int reached;     /* streams at >= target */
    bool reported;
    int out_fd;
    int cap_fd; /* stream 0's responses go here (capture) */
} clients_t;

static void reach(tl_streams_t *ss, tl_stream_t *s, uint64_t v, uint64_t t)
{
    clients_t *c = (clients_t *)ss;
    pthread_mutex_lock(&c->mu);
    uint64_t old = s->version;
    s->version = v;
    if (c->target && old < c->target && v >= c->target && ++c->reached == c->ss.n && !c->reported) {
        c->reported = true;
        tl_pipe_put(c->out_fd, t);
    }
    pthread_mutex_unlock(&c->mu);
}

static void write_all(int fd, const void *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            die("writing the captured responses");
        p = (const char *)p + w;
        len -= (size_t)w;
    }
}

/* Stream 0's responses, as (version, length, bytes), for the floor to send. */
static void capture(tl_streams_t *ss, tl_stream_t *s, grpc_byte_buffer *b, uint64_t v)
{
    if (s != &ss->st[0])
        return;
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, b);
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    uint64_t head[2] = {v, GRPC_SLICE_LENGTH(sl)};
    write_all(((clients_t *)ss)->cap_fd, head, sizeof(head));
    write_all(((clients_t *)ss)->cap_fd, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
}

/* Waits for the next target from the parent; 0 (or EOF) ends the run. */
static void set_target(clients_t *c, uint64_t v)
{
    pthread_mutex_lock(&c->mu);
    c->target = v;
    c->reported = false;
    c->reached = 0;
    for (int i = 0; i < c->ss.n; i++)
        if (c->ss.st[i].version >= v)
            c->reached++;
    if (c->reached == c->ss.n) {
        c->reported = true;
        tl_pipe_put(c->out_fd, tl_now_ns());
    }
    pthread_mutex_unlock(&c->mu);
}

/* One server's run: its port and first version, then versions to wait for
 * until 0; answers with the bytes received. cap_fd >= 0 captures stream 0's
 * responses. */
static int run_clients(int n, int in_fd, int out_fd, int cap_fd)
{
    uint64_t port, v;
    if (!tl_pipe_get(in_fd, &port, sizeof(port), PUSH_TIMEOUT_MS) ||
        !tl_pipe_get(in_fd, &v, sizeof(v), 1000))
        _exit(1);
    grpc_init();
    clients_t c = {.out_fd = out_fd, .cap_fd = cap_fd};
    pthread_mutex_init(&c.mu, NULL);
    tl_streams_init(&c.ss, n, reach, die);
    if (cap_fd >= 0)
        c.ss.capture = capture;
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", (int)port);
    tl_pipe_put(out_fd, tl_now_ns()); /* the start of the initial push */
    set_target(&c, v);
    for (int i = 0; i < n; i++)
        tl_streams_open(&c.ss, i, target);
    while (tl_pipe_get(in_fd, &v, sizeof(v), PUSH_TIMEOUT_MS) && v)
        set_target(&c, v);
    tl_pipe_put(out_fd, __atomic_load_n(&c.ss.bytes, __ATOMIC_RELAXED));
    _exit(0); /* the parent measured what it needed; skip the teardown */
}

/* ---------- measuring (parent) ---------- */

static double cpu_s(void) /* this process: the server alone */
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* What either server measured. */
typedef struct figures {
    double push_s, push_bytes; /* the initial push to every stream */
    double idle_kib;           /* RSS per idle stream */
    double heap_kib;           /* allocated heap per idle stream */
    double p50, p99, max;      /* ms from publish to every stream having the change */
    double cpu_ms, bytes;      /* per change */
    int done;                  /* changes measured */
} figures_t;

/* A client process: one per server, so that each meets fresh clients. */
typedef struct client_proc {
    pid_t pid;
    int to, from;
} client_proc_t;

typedef struct bench {
    client_proc_t cl[2];      /* meshfed's clients, the floor's */
    int to_child, from_child; /* of the run under way */
    int nstreams, per;
    int gap_ms;         /* before each change */
    uint64_t v0, *vers; /* the first snapshot's version, each change's */
} bench_t;

static void gap(const bench_t *b)
{
    struct timespec ts = {b->gap_ms / 1000, (long)(b->gap_ms % 1000) * 1000000L};
    if (b->gap_ms > 0)
        nanosleep(&ts, NULL);
}

/* Tells the clients to wait for version v; ms from t0 until the last stream
 * had it, or -1 after STEP_TIMEOUT_MS. */
static double await(bench_t *b, uint64_t v, uint64_t t0)
{
    uint64_t t1;
    tl_pipe_put(b->to_child, v);
    if (!tl_pipe_get(b->from_child, &t1, sizeof(t1), STEP_TIMEOUT_MS))
        return -1;
    return (double)(t1 - t0) / 1e6;
}

/* Hands the clients port and the first version; the seconds until every
 * stream had it, or -1. */
static double initial_push(bench_t *b, int port, uint64_t v)
{
    uint64_t t_start, t_done;
    tl_pipe_put(b->to_child, (uint64_t)port);
    tl_pipe_put(b->to_child, v);
    if (!tl_pipe_get(b->from_child, &t_start, sizeof(t_start), 60000) ||
        !tl_pipe_get(b->from_child, &t_done, sizeof(t_done), PUSH_TIMEOUT_MS))
        return -1;
    return (double)(t_done - t_start) / 1e9;
}

/* BENCH_IDLE_EXIT=meshfed (or 1) or =floor: that server exits once its
 * streams are idle, for heap profilers (what is live then shows as leaked). */
static bool idle_exit(const char *server)
{
    const char *e = getenv("BENCH_IDLE_EXIT");
    if (!e)
        return false;
    bool floor = strcmp(e, "floor") == 0;
    return floor == (strcmp(server, "floor") == 0);
}

/* Bytes the allocator has handed out and not got back: jemalloc's
 * stats.allocated when the bench is linked with it, else glibc's count.
 * RSS also holds what the allocator keeps around its live blocks. */
typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static mallctl_fn jemalloc_ctl(void)
{
    return (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
}

static size_t heap_bytes(void)
{
    mallctl_fn ctl = jemalloc_ctl();
    if (ctl) {
        uint64_t epoch = 1;
        size_t alloc = 0, len = sizeof(epoch);
        ctl("epoch", &epoch, &len, &epoch, len);
        len = sizeof(alloc);
        if (ctl("stats.allocated", &alloc, &len, NULL, 0) == 0)
            return alloc;
    }
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Free pages back to the system, so that RSS counts what is live: glibc's
 * trim, jemalloc's purge of every arena (4096: MALLCTL_ARENAS_ALL). */
static void give_back(void)
{
    malloc_trim(0);
    mallctl_fn ctl = jemalloc_ctl();
    if (ctl)
        ctl("arena.4096.purge", NULL, NULL, NULL, 0);
}

/* RSS once the last sends are done and their buffers gone. */
static long settled_rss_kb(void)
{
    /* meshfed drops its full-state bodies XDS_FULL_KEEP_US after the last full send */
    struct timespec settle = {XDS_FULL_KEEP_US / 1000000 + 1, 0};
    nanosleep(&settle, NULL);
    give_back();
    return tl_rss_kb();
}

/* Ends a server's run: the clients' byte count. */
static uint64_t end_run(bench_t *b)
{
    uint64_t bytes = 0;
    tl_pipe_put(b->to_child, 0);
    tl_pipe_get(b->from_child, &bytes, sizeof(bytes), 10000);
    return bytes;
}

static void percentiles(double *lat, figures_t *f)
{
    if (!f->done)
        return;
    qsort(lat, (size_t)f->done, sizeof(double), tl_cmp_double);
    f->p50 = lat[f->done / 2];
    f->p99 = lat[(f->done * 99 + 99) / 100 - 1]; /* nearest rank */
    f->max = lat[f->done - 1];
}

/* Printed as soon as measured: a profiler can tell the phases apart. */
static void print_push(const char *who, const bench_t *b, const figures_t *f)
{
    printf("%s: initial push to %d streams %.2f s, %.1f MB (%.0f MB/s); per idle stream %.1f KiB "
           "RSS, %.1f KiB heap\n",
           who, b->nstreams, f->push_s, f->push_bytes / 1e6, f->push_bytes / 1e6 / f->push_s,
           f->idle_kib, f->heap_kib);
    fflush(stdout);
}

static void print_changes(const char *who, const figures_t *f)
{
    if (f->done)
        printf("%s: one-endpoint change to every stream (%d changes): p50 %.2f ms, p99 %.2f ms, "
               "max %.2f ms; %.1f ms server CPU and %.0f bytes sent per change\n",
               who, f->done, f->p50, f->p99, f->max, f->cpu_ms, f->bytes);
    fflush(stdout);
}

/* ---------- meshfed (parent) ---------- */

static void warm_cb(const model_res_t *r, void *arg)
{
    size_t len;
    (void)arg;
    xds_encode_address(r, &len);
}

static void meshfed_changes(bench_t *b, model_t *m, xds_server_t *s, int nservices, int nchanges,
                            figures_t *f)
{
    double *lat = calloc((size_t)nchanges, sizeof(double));
    xds_stats_t s0, s1;
    xds_server_stats(s, &s0);
    double cpu0 = cpu_s();
    for (int i = 0; i < nchanges; i++) {
        gap(b);
        /* c1's slice of a global service: one endpoint not ready changes the
         * capacity of the one workload c0 sees for it behind n1's gateway */
        int half = nservices / 2 > 0 ? nservices / 2 : 1;
        int svc = (i % half) * 2, not_ready = (i / half) % b->per; /* never a no-op */
        tl_bench_apply(m, "c1", MODEL_KIND_ENDPOINTSLICE,
                       tl_bench_slice(1, svc, b->per, not_ready));
        model_snapshot_t *snap = model_commit(m);
        xds_server_publish(s, snap);
        uint64_t t0 = tl_now_ns();
        b->vers[i] = model_snapshot_version(snap);
        model_snapshot_unref(snap);
        double ms = await(b, b->vers[i], t0);
        if (ms < 0) {
            fprintf(stderr, "change %d: not every stream got it within %d ms\n", i,
                    STEP_TIMEOUT_MS);
            break;
        }
        lat[f->done++] = ms;
    }
    xds_server_stats(s, &s1);
    if (f->done) {
        f->cpu_ms = (cpu_s() - cpu0) * 1e3 / f->done;
        f->bytes = (double)(s1.bytes_sent - s0.bytes_sent) / f->done;
        printf("meshfed per change: %.1f responses, %.1f resources\n",
               (double)(s1.pushes - s0.pushes) / f->done,
               (double)(s1.resources_sent - s0.resources_sent) / f->done);
    }
    percentiles(lat, f);
    free(lat);
}

static bool run_meshfed(bench_t *b, int nservices, int nchanges, figures_t *f)
{
    uint64_t t = tl_now_ns();
    char err[256];
    model_t *m = tl_bench_mesh(2, nservices, b->per, false, err, sizeof(err));
    if (!m)
        die(err);
    model_snapshot_t *snap = model_commit(m);
    printf("mesh: 2 clusters, %d services (half global), %d endpoints; built in %.2f s\n",
           nservices, 2 * nservices * b->per, (double)(tl_now_ns() - t) / 1e9);
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = b->nstreams + 16};
    xds_server_t *s = xds_server_new(&cfg, err, sizeof(err));
    if (!s || xds_server_start(s) < 0)
        die(err);
    xds_server_publish(s, snap);
    /* the encodings are cached on the resources and shared by all streams:
     * build them first so that the per-stream figure is per stream */
    long rss_enc = tl_rss_kb();
    t = tl_now_ns();
    model_view_t view = {.cluster = "c0", .network = "n0"};
    model_snapshot_each(snap, &view, warm_cb, NULL);
    printf("encoding the view of c0: %.2f s, %.1f MB RSS of shared cache\n",
           (double)(tl_now_ns() - t) / 1e9, (double)(tl_rss_kb() - rss_enc) / 1024.0);
    give_back();
    long rss0 = tl_rss_kb();
    size_t heap0 = heap_bytes();
    uint64_t v0 = b->v0 = model_snapshot_version(snap);
    model_snapshot_unref(snap);
    xds_stats_t st;
    f->push_s = initial_push(b, xds_server_port(s), v0);
    xds_server_stats(s, &st);
    if (f->push_s < 0) {
        fprintf(stderr,
                "initial push incomplete after %d s: %llu streams open, %llu pushes, "
                "%.1f MB sent\n",
                PUSH_TIMEOUT_MS / 1000, (unsigned long long)st.streams_open,
                (unsigned long long)st.pushes, (double)st.bytes_sent / 1e6);
        return false;
    }
    f->push_bytes = (double)st.bytes_sent;
    printf("meshfed initial push: %.0f KB per stream, %llu resources each\n",
           (double)st.bytes_sent / 1e3 / b->nstreams,
           (unsigned long long)(st.resources_sent / (uint64_t)b->nstreams));
    f->idle_kib = (double)(settled_rss_kb() - rss0) / b->nstreams;
    f->heap_kib = ((double)heap_bytes() - (double)heap0) / 1024.0 / b->nstreams;
    print_push("meshfed", b, f);
    if (idle_exit("meshfed")) { /* for heap profilers: what is live now leaks */
        kill(b->cl[0].pid, SIGKILL);
        kill(b->cl[1].pid, SIGKILL);
        exit(0);
    }
    meshfed_changes(b, m, s, nservices, nchanges, f);
    uint64_t bytes = end_run(b);
    print_changes("meshfed", f);
    printf("meshfed: clients received %.1f MB in all\n", (double)bytes / 1e6);
    xds_server_shutdown(s, 100);
    xds_server_free(s);
    model_free(m);
    return true;
}

/* ---------- the floor (parent) ---------- */

/* What stream 0 received from meshfed, in order. */
typedef struct xlog {
    grpc_slice *msg;
    uint64_t *ver;
    size_t n;
} xlog_t;

static void log_read(int fd, xlog_t *l)
{
    off_t off = 0;
    uint64_t head[2];
    size_t cap = 0;
    while (pread(fd, head, sizeof(head), off) == (ssize_t)sizeof(head)) {
        char *buf = malloc(head[1] ? head[1] : 1);
        if (!buf || pread(fd, buf, head[1], off + (off_t)sizeof(head)) != (ssize_t)head[1])
            die("reading the captured responses");
        if (l->n == cap) {
            cap = cap ? 2 * cap : 64;
            l->msg = realloc(l->msg, cap * sizeof(*l->msg));
            l->ver = realloc(l->ver, cap * sizeof(*l->ver));
            if (!l->msg || !l->ver)
                die("no memory");
        }
        l->msg[l->n] = grpc_slice_from_copied_buffer(buf, head[1]);
        l->ver[l->n++] = head[0];
        free(buf);
        off += (off_t)(sizeof(head) + head[1]);
    }
}

/* How many of the log's messages a stream is sent to have version v: all
 * those of v, should a response have come in parts. */
static size_t log_upto(const xlog_t *l, uint64_t v)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->ver[i] > v)
            return i;
    return l->n;
}

enum { FL_NEW = 1, FL_RECV = 2, FL_SEND = 3, FL_CLOSE = 4, FL_DOWN = 5 };

/* As meshfed bounds its full-state sends (XDS_MAX_FULL_SENDS): without it a
 * thousand 16 MB messages at once cost the clients gigabytes and both sides
 * time, and the floor would not be one. */
#define FL_MAX_FULL_SENDS 64

typedef struct floor_call {
    grpc_call *call;
    grpc_byte_buffer *rbuf, *sbuf;
    size_t next; /* the log's next message for this stream */
    struct floor_call *wait_next;
    int cancelled;
    bool started, sending, closed, full_slot, waiting;
} floor_call_t;

typedef struct floor_srv {
    grpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t thr;
    pthread_mutex_t mu;
    const xlog_t *log;
    size_t published; /* every stream is to have log messages [0, published) */
    size_t initial;   /* the initial push: log messages [0, initial) */
    int full_inflight;
    floor_call_t *wait_head, *wait_tail; /* streams waiting for a full-send slot */
    floor_call_t **calls;
    size_t ncalls, cap;
    floor_call_t *pending; /* the call being requested */
    grpc_call_details details;
    grpc_metadata_array md;
    uint64_t bytes_sent;
    atomic_bool down;
} floor_srv_t;

static void *fl_tag(void *p, int op)
{
    return (void *)((uintptr_t)p | (uintptr_t)op);
}

static void fl_request(floor_srv_t *fl)
{
    fl->pending = calloc(1, sizeof(*fl->pending));
    if (!fl->pending)
        die("no memory");
    grpc_call_details_init(&fl->details);
    grpc_metadata_array_init(&fl->md);
    if (grpc_server_request_call(fl->srv, &fl->pending->call, &fl->details, &fl->md, fl->cq, fl->cq,
                                 fl_tag(fl->pending, FL_NEW)) != GRPC_CALL_OK)
        die("request_call");
}

/* The next message, if the stream has asked and has none in flight; mu held. */
static void fl_try_send(floor_srv_t *fl, floor_call_t *c)
{
    if (!c->started || c->sending || c->closed || c->next >= fl->published)
        return;
    if (c->next < fl->initial && !c->full_slot) {
        /* slots free only where the queue is pumped: no one jumps it */
        if (fl->full_inflight >= FL_MAX_FULL_SENDS) {
            if (!c->waiting) {
                c->waiting = true;
                c->wait_next = NULL;
                if (fl->wait_tail)
                    fl->wait_tail->wait_next = c;
                else
                    fl->wait_head = c;
                fl->wait_tail = c;
            }
            return;
        }
        fl->full_inflight++;
        c->full_slot = true;
    }
    c->sbuf = grpc_raw_byte_buffer_create(&fl->log->msg[c->next], 1);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = c->sbuf;
    if (grpc_call_start_batch(c->call, &op, 1, fl_tag(c, FL_SEND), NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(c->sbuf);
        c->closed = true;
        return;
    }
    c->sending = true;
    c->next++;
}

static void fl_start_recv(floor_call_t *c, bool first)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (first)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->rbuf;
    if (grpc_call_start_batch(c->call, ops, n, fl_tag(c, FL_RECV), NULL) != GRPC_CALL_OK)
        die("start_batch");
}

static void fl_accept(floor_srv_t *fl, floor_call_t *c)
{
    grpc_call_details_destroy(&fl->details);
    grpc_metadata_array_destroy(&fl->md);
    pthread_mutex_lock(&fl->mu);
    if (fl->ncalls == fl->cap) {
        fl->cap = fl->cap ? 2 * fl->cap : 1024;
        fl->calls = realloc(fl->calls, fl->cap * sizeof(*fl->calls));
        if (!fl->calls)
            die("no memory");
    }
    fl->calls[fl->ncalls++] = c;
    pthread_mutex_unlock(&fl->mu);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    fl_start_recv(c, true);
    if (grpc_call_start_batch(c->call, &op, 1, fl_tag(c, FL_CLOSE), NULL) != GRPC_CALL_OK)
        die("start_batch");
    fl_request(fl);
}

static void fl_event(floor_srv_t *fl, grpc_event ev)
{
    int op = (int)((uintptr_t)ev.tag & 7);
    floor_call_t *c = (floor_call_t *)((uintptr_t)ev.tag & ~(uintptr_t)7);
    switch (op) {
    case FL_NEW:
        if (ev.success)
            fl_accept(fl, c);
        else
            free(c); /* the server is shutting down */
        break;
    case FL_RECV: /* the first request starts the push; ACKs are read and dropped */
        if (!ev.success || !c->rbuf)
            break;
        grpc_byte_buffer_destroy(c->rbuf);
        c->rbuf = NULL;
        pthread_mutex_lock(&fl->mu);
        c->started = true;
        fl_try_send(fl, c);
        pthread_mutex_unlock(&fl->mu);
        fl_start_recv(c, false);
        break;
    case FL_SEND:
        pthread_mutex_lock(&fl->mu);
        if (ev.success) /* grpc took the buffer's slices: the log has the length */
            fl->bytes_sent += GRPC_SLICE_LENGTH(fl->log->msg[c->next - 1]);
        grpc_byte_buffer_destroy(c->sbuf);
        c->sbuf = NULL;
        c->sending = false;
        if (c->full_slot && (c->next >= fl->initial || !ev.success)) {
            c->full_slot = false;
            fl->full_inflight--;
        }
        if (ev.success)
            fl_try_send(fl, c);
        while (fl->wait_head && fl->full_inflight < FL_MAX_FULL_SENDS) {
            floor_call_t *w = fl->wait_head;
            fl->wait_head = w->wait_next;
            if (!fl->wait_head)
                fl->wait_tail = NULL;
            w->waiting = false;
            fl_try_send(fl, w);
        }
        pthread_mutex_unlock(&fl->mu);
        break;
    case FL_CLOSE:
        pthread_mutex_lock(&fl->mu);
        c->closed = true;
        pthread_mutex_unlock(&fl->mu);
        break;
    case FL_DOWN:
        atomic_store(&fl->down, true);
        break;
    }
}

static void *fl_thread(void *arg)
{
    floor_srv_t *fl = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(fl->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        if (ev.type == GRPC_OP_COMPLETE)
            fl_event(fl, ev);
    }
}

/* Listens on 127.0.0.1 (one queue thread, as meshfed has); the port. */
static int fl_start(floor_srv_t *fl, const xlog_t *log)
{
    fl->log = log;
    pthread_mutex_init(&fl->mu, NULL);
    atomic_init(&fl->down, false);
    fl->cq = grpc_completion_queue_create_for_next(NULL);
    /* what grpc keeps per call without the two filters meshfed leaves out */
    grpc_arg args[2] = {{.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_DEADLINE_CHECKS},
                        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_CHANNELZ}};
    grpc_channel_args ca = {2, args};
    fl->srv = grpc_server_create(&ca, NULL);
    grpc_server_register_completion_queue(fl->srv, fl->cq, NULL);
    grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(fl->srv, "127.0.0.1:0", cr);
    grpc_server_credentials_release(cr);
    if (port <= 0)
        die("floor: no port");
    grpc_server_start(fl->srv);
    fl_request(fl);
    if (pthread_create(&fl->thr, NULL, fl_thread, fl) != 0)
        die("pthread_create");
    return port;
}

/* Every stream is to have the log up to upto: send on each call what it
 * lacks, from this thread, as a server that pushes on publish would. The
 * queue thread waits meanwhile (as meshfed's does for its push thread): the
 * sends go out in one run instead of each meeting an ACK at the lock. */
static void fl_publish(floor_srv_t *fl, size_t upto)
{
    pthread_mutex_lock(&fl->mu);
    fl->published = upto;
    for (size_t i = 0; i < fl->ncalls; i++)
        fl_try_send(fl, fl->calls[i]);
    pthread_mutex_unlock(&fl->mu);
}

static void fl_stop(floor_srv_t *fl)
{
    grpc_server_shutdown_and_notify(fl->srv, fl->cq, fl_tag(fl, FL_DOWN));
    grpc_server_cancel_all_calls(fl->srv);
    while (!atomic_load(&fl->down))
        usleep(1000);
    grpc_server_destroy(fl->srv);
    grpc_completion_queue_shutdown(fl->cq);
    pthread_join(fl->thr, NULL);
    grpc_completion_queue_destroy(fl->cq);
    for (size_t i = 0; i < fl->ncalls; i++) {
        grpc_call_unref(fl->calls[i]->call);
        free(fl->calls[i]);
    }
    free(fl->calls);
}

static bool run_floor(bench_t *b, int cap_fd, int nchanges, figures_t *f)
{
    grpc_init();
    xlog_t log = {0};
    log_read(cap_fd, &log);
    if (!log.n)
        die("no responses captured");
    floor_srv_t fl = {0};
    int port = fl_start(&fl, &log);
    give_back();
    long rss0 = tl_rss_kb();
    size_t heap0 = heap_bytes();
    fl.initial = log_upto(&log, b->v0);
    fl_publish(&fl, fl.initial);
    f->push_s = initial_push(b, port, b->v0);
    if (f->push_s < 0) {
        fprintf(stderr, "floor: initial push incomplete after %d s\n", PUSH_TIMEOUT_MS / 1000);
        return false;
    }
    pthread_mutex_lock(&fl.mu);
    f->push_bytes = (double)fl.bytes_sent;
    pthread_mutex_unlock(&fl.mu);
    f->idle_kib = (double)(settled_rss_kb() - rss0) / b->nstreams;
    f->heap_kib = ((double)heap_bytes() - (double)heap0) / 1024.0 / b->nstreams;
    print_push("floor", b, f);
    if (idle_exit("floor")) {
        kill(b->cl[0].pid, SIGKILL);
        kill(b->cl[1].pid, SIGKILL);
        exit(0);
    }
    double *lat = calloc((size_t)nchanges, sizeof(double));
    double cpu0 = cpu_s();
    double sent0 = f->push_bytes;
    for (int i = 0; i < nchanges; i++) {
        gap(b);
        uint64_t t0 = tl_now_ns();
        fl_publish(&fl, log_upto(&log, b->vers[i]));
        double ms = await(b, b->vers[i], t0);
        if (ms < 0) {
            fprintf(stderr, "floor: change %d not on every stream within %d ms\n", i,
                    STEP_TIMEOUT_MS);
            break;
        }
        lat[f->done++] = ms;
    }
    if (f->done) {
        f->cpu_ms = (cpu_s() - cpu0) * 1e3 / f->done;
        pthread_mutex_lock(&fl.mu);
        f->bytes = ((double)fl.bytes_sent - sent0) / f->done;
        pthread_mutex_unlock(&fl.mu);
    }
    percentiles(lat, f);
    free(lat);
    end_run(b);
    print_changes("floor", f);
    fl_stop(&fl);
    for (size_t i = 0; i < log.n; i++)
        grpc_slice_unref(log.msg[i]);
    free(log.msg);
    free(log.ver);
    grpc_shutdown();
    return true;
}

static void print_ratios(const bench_t *b, const figures_t *m, const figures_t *fl)
{
    double mb = m->push_bytes / 1e6 / m->push_s, fb = fl->push_bytes / 1e6 / fl->push_s;
    printf("meshfed vs floor at %d streams:\n", b->nstreams);
    printf("  initial push %.0f MB/s vs %.0f MB/s: %.2fx the floor's bytes/s\n", mb, fb, mb / fb);
    if (m->done && fl->done) {
        printf("  change p50 %.2f ms vs %.2f ms: %.2fx\n", m->p50, fl->p50, m->p50 / fl->p50);
        printf("  change p99 %.2f ms vs %.2f ms: %.2fx (target <= 1.30x)\n", m->p99, fl->p99,
               m->p99 / fl->p99);
        printf("  server CPU per change %.1f ms vs %.1f ms: %.2fx\n", m->cpu_ms, fl->cpu_ms,
               m->cpu_ms / fl->cpu_ms);
    }
    printf("  memory per idle stream %.1f KiB vs %.1f KiB RSS (target <= 32 KiB), %.1f KiB vs "
           "%.1f KiB heap\n",
           m->idle_kib, fl->idle_kib, m->heap_kib, fl->heap_kib);
}

/* ---------- main ---------- */

/* Forks the two client processes before any grpc_init: a child's grpc is
 * its own. The first captures what meshfed sends into cap_fd. */
static void spawn_clients(bench_t *b, int cap_fd)
{
    int fds[2][4];
    for (int k = 0; k < 2; k++)
        if (pipe(&fds[k][0]) < 0 || pipe(&fds[k][2]) < 0)
            die("pipe");
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        b->cl[k].pid = fork();
        if (b->cl[k].pid < 0)
            die("fork");
        if (b->cl[k].pid == 0) {
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < 4; e++)
                    if (j != k || e == 1 || e == 2)
                        close(fds[j][e]);
            run_clients(b->nstreams, fds[k][0], fds[k][3], k == 0 ? cap_fd : -1);
        }
        b->cl[k].to = fds[k][1];
        b->cl[k].from = fds[k][2];
        close(fds[k][0]);
        close(fds[k][3]);
    }
}

static void use_clients(bench_t *b, int k)
{
    b->to_child = b->cl[k].to;
    b->from_child = b->cl[k].from;
}

int main(int argc, char **argv)
{
    bench_t b = {.nstreams = argc > 1 ? atoi(argv[1]) : 1000};
    int neps = argc > 2 ? atoi(argv[2]) : 100000;
    int nservices = argc > 3 ? atoi(argv[3]) : 2000;
    int nchanges = argc > 4 ? atoi(argv[4]) : 50;
    b.gap_ms = argc > 5 ? atoi(argv[5]) : 0;
    b.per = nservices > 0 ? neps / 2 / nservices : 0;
    if (b.per < 1 || b.nstreams < 1 || nchanges < 0)
        die("usage: bench_xds [streams] [endpoints] [services] [changes] [gap-ms]");
    tl_raise_nofile("bench_xds", b.nstreams); /* one connection per stream on each side */
    b.vers = calloc((size_t)nchanges + 1, sizeof(uint64_t));
    FILE *cap = tmpfile(); /* shared with the first client process, which writes it */
    if (!b.vers || !cap)
        die("no memory");
    spawn_clients(&b, fileno(cap));
    signal(SIGPIPE, SIG_IGN);

    figures_t m = {0}, fl = {0};
    use_clients(&b, 0);
    bool ok = run_meshfed(&b, nservices, nchanges, &m);
    waitpid(b.cl[0].pid, NULL, 0); /* its memory back before the floor runs */
    fflush(stdout);
    use_clients(&b, 1);
    ok = ok && run_floor(&b, fileno(cap), m.done, &fl);
    if (ok)
        print_ratios(&b, &m, &fl);
    for (int k = 0; k < 2; k++) {
        if (!ok)
            kill(b.cl[k].pid, SIGKILL);
        close(b.cl[k].to);
        waitpid(b.cl[k].pid, NULL, 0);
    }
    fclose(cap);
    free(b.vers);
    return ok ? 0 : 1;
}
