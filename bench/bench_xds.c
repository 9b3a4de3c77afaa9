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
#include "model.h"
#include "testlib.h"
#include "xds.h"

#include <grpc/grpc.h>
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

#define STEP_TIMEOUT_MS 30000

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

static int run_clients(int n, int in_fd, int out_fd)
{
    uint64_t port, v;
    if (!tl_pipe_get(in_fd, &port, sizeof(port), 600000) ||
        !tl_pipe_get(in_fd, &v, sizeof(v), 1000))
        return 1;
    grpc_init();
    clients_t c = {.out_fd = out_fd};
    pthread_mutex_init(&c.mu, NULL);
    tl_streams_init(&c.ss, n, reach, die);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", (int)port);
    tl_pipe_put(out_fd, tl_now_ns()); /* the start of the initial push */
    set_target(&c, v);
    for (int i = 0; i < n; i++)
        tl_streams_open(&c.ss, i, target);
    while (tl_pipe_get(in_fd, &v, sizeof(v), 600000) && v)
        set_target(&c, v);
    uint64_t bytes = __atomic_load_n(&c.ss.bytes, __ATOMIC_RELAXED);
    tl_pipe_put(out_fd, bytes);
    for (int i = 0; i < n; i++)
        grpc_call_cancel(c.ss.st[i].call, NULL);
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
    *t = tl_now_ns();
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
        tl_bench_apply(b->m, "c1", MODEL_KIND_ENDPOINTSLICE,
                       tl_bench_slice(1, svc, b->per, not_ready));
        uint64_t t0, t1;
        model_snapshot_t *snap = publish(b, &t0);
        tl_pipe_put(b->to_child, model_snapshot_version(snap));
        model_snapshot_unref(snap);
        if (!tl_pipe_get(b->from_child, &t1, sizeof(t1), STEP_TIMEOUT_MS)) {
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
    qsort(lat, (size_t)done, sizeof(double), tl_cmp_double);
    printf("one-endpoint change to every stream (%d changes): p50 %.2f ms, p99 %.2f ms, "
           "max %.2f ms\n",
           done, lat[done / 2], lat[(done * 99) / 100 < done ? (done * 99) / 100 : done - 1],
           lat[done - 1]);
    printf("per change: %.0f bytes sent, %.1f responses, %.1f resources, %.1f ms server CPU\n",
           (double)(s1.bytes_sent - s0.bytes_sent) / done, (double)(s1.pushes - s0.pushes) / done,
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

    uint64_t t = tl_now_ns();
    char err[256];
    b.m = tl_bench_mesh(2, nservices, b.per, false, err, sizeof(err));
    if (!b.m)
        die(err);
    model_snapshot_t *snap = model_commit(b.m);
    printf("mesh: 2 clusters, %d services (half global), %d endpoints; built in %.2f s\n",
           nservices, 2 * nservices * b.per, (double)(tl_now_ns() - t) / 1e9);
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = nstreams + 16};
    b.s = xds_server_new(&cfg, err, sizeof(err));
    if (!b.s || xds_server_start(b.s) < 0)
        die(err);
    xds_server_publish(b.s, snap);
    /* the encodings are cached on the resources and shared by all streams:
     * build them first so that the per-stream figure is per stream */
    long rss_enc = tl_rss_kb();
    t = tl_now_ns();
    model_view_t view = {.cluster = "c0", .network = "n0"};
    model_snapshot_each(snap, &view, warm_cb, NULL);
    printf("encoding the view of c0: %.2f s, %.1f MB RSS of shared cache\n",
           (double)(tl_now_ns() - t) / 1e9, (double)(tl_rss_kb() - rss_enc) / 1024.0);
    malloc_trim(0);
    long rss0 = tl_rss_kb();

    tl_pipe_put(b.to_child, (uint64_t)xds_server_port(b.s));
    tl_pipe_put(b.to_child, model_snapshot_version(snap));
    model_snapshot_unref(snap);
    uint64_t t_start, t_done;
    xds_stats_t st;
    if (!tl_pipe_get(b.from_child, &t_start, sizeof(t_start), 60000) ||
        !tl_pipe_get(b.from_child, &t_done, sizeof(t_done), 120000)) {
        xds_server_stats(b.s, &st);
        fprintf(stderr,
                "initial push incomplete after 120 s: %llu streams open, %llu pushes, "
                "%.1f MB sent\n",
                (unsigned long long)st.streams_open, (unsigned long long)st.pushes,
                (double)st.bytes_sent / 1e6);
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
    long rss1 = tl_rss_kb();
    printf("server memory per idle stream: %.1f KiB RSS (server process alone; includes "
           "the view's shared full-state body, %.1f KiB per stream)\n",
           (double)(rss1 - rss0) / nstreams, (double)st.bytes_sent / nstreams / 1024.0 / nstreams);
    if (getenv("BENCH_IDLE_EXIT")) { /* for heap profilers: what is live now leaks */
        kill(b.child, SIGKILL);
        exit(0);
    }

    changes(&b, nservices, nchanges);
    tl_pipe_put(b.to_child, 0);
    uint64_t bytes = 0;
    if (tl_pipe_get(b.from_child, &bytes, sizeof(bytes), 10000))
        printf("clients received %.1f MB in all\n", (double)bytes / 1e6);
    waitpid(b.child, NULL, 0);
    xds_server_shutdown(b.s, 100);
    xds_server_free(b.s);
    model_free(b.m);
    return 0;
}
