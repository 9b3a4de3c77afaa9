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
#include "model.h"
#include "testlib.h"
#include "xds.h"

#include <dlfcn.h>
#include <grpc/grpc.h>
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

#define NSVC 1000
#define PER 10
#define COMMITS_PER_S 5
#define CHANGES_PER_COMMIT 10
#define WINDOW_S 10

static void die(const char *msg)
{
    fprintf(stderr, "bench_soak: %s\n", msg);
    exit(1);
}

/* ---------- the mesh ---------- */

/* svc<s>'s slice in cluster c; not_ready: a bit per endpoint */
static model_endpointslice_t *slice(int c, int s, unsigned not_ready)
{
    model_endpointslice_t *sl = tl_bench_slice(c, s, PER, -1);
    for (int e = 0; e < PER; e++)
        sl->endpoints[e].ready = !(not_ready & (1u << e));
    return sl;
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

#define MAXQ 4096
typedef struct clients {
    tl_streams_t ss; /* first: reach gets it */
    pthread_mutex_t mu;
    uint64_t q[MAXQ]; /* versions the parent waits for, ascending */
    int qhead, qtail;
    int out_fd;
} clients_t;

/* With c->mu held: reports every waited-for version that all streams have. */
static void report(clients_t *c, uint64_t t)
{
    if (c->qhead == c->qtail)
        return;
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < c->ss.n; i++)
        if (c->ss.st[i].version < min)
            min = c->ss.st[i].version;
    while (c->qhead != c->qtail && c->q[c->qhead % MAXQ] <= min) {
        uint64_t rec[2] = {c->q[c->qhead % MAXQ], t};
        if (write(c->out_fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
            die("pipe write");
        c->qhead++;
    }
}

static void reach(tl_streams_t *ss, tl_stream_t *s, uint64_t v, uint64_t t)
{
    clients_t *c = (clients_t *)ss;
    pthread_mutex_lock(&c->mu);
    s->version = v;
    report(c, t);
    pthread_mutex_unlock(&c->mu);
}

/* Reads targets from the parent until 0 or EOF. */
static int run_clients(int n, int in_fd, int out_fd)
{
    uint64_t port, v;
    if (!tl_pipe_get(in_fd, &port, sizeof(port), 600000))
        return 1;
    grpc_init();
    clients_t c = {.out_fd = out_fd};
    pthread_mutex_init(&c.mu, NULL);
    tl_streams_init(&c.ss, n, reach, die);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", (int)port);
    for (int i = 0; i < n; i++)
        tl_streams_open(&c.ss, i, target);
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
        report(&c, tl_now_ns());
        pthread_mutex_unlock(&c.mu);
    }
    uint64_t rec[2] = {0, __atomic_load_n(&c.ss.bytes, __ATOMIC_RELAXED)};
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
    double *lat; /* this window's latencies, ms */
    int nlat, cap;
    uint64_t client_bytes;
    bool child_done;
    int from_child;
    uint64_t initial_done; /* time the initial version was reached */
    uint64_t initial_v;
} soak_t;

static void *reader(void *arg)
{
    soak_t *k = arg;
    uint64_t rec[2];
    while (tl_pipe_get(k->from_child, rec, sizeof(rec), 600000)) {
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

    uint64_t t = tl_now_ns();
    char err[256];
    model_t *m = tl_bench_mesh(2, NSVC, PER, false, err, sizeof(err));
    if (!m)
        die(err);
    model_snapshot_t *snap = model_commit(m);
    printf("mesh: 2 clusters, %d services (half global), %d endpoints; built in %.2f s\n", NSVC,
           2 * NSVC * PER, (double)(tl_now_ns() - t) / 1e9);
    xds_config_t cfg = {.listen = "127.0.0.1:0", .max_streams = nstreams + 16};
    xds_server_t *s = xds_server_new(&cfg, err, sizeof(err));
    if (!s || xds_server_start(s) < 0)
        die(err);
    xds_server_publish(s, snap);
    soak_t k = {.from_child = up[0], .initial_v = model_snapshot_version(snap)};
    pthread_mutex_init(&k.mu, NULL);
    k.pend_v[0] = k.initial_v;
    k.pend_t[0] = tl_now_ns();
    k.npend = 1;
    model_snapshot_unref(snap);
    pthread_t rd;
    pthread_create(&rd, NULL, reader, &k);
    tl_pipe_put(down[1], (uint64_t)xds_server_port(s));
    tl_pipe_put(down[1], k.initial_v);
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
    printf("%8s %8s %8s %9s %9s %9s %8s %9s\n", "elapsed", "rss_MB", "heap_MB", "p50_ms", "p99_ms",
           "max_ms", "pushes", "bytes_MB");
    unsigned *not_ready = calloc(NSVC, sizeof(unsigned));
    unsigned seed = 42;
    uint64_t start = tl_now_ns(), period = 1000000000u / COMMITS_PER_S, next = start + period;
    uint64_t next_win = start + (uint64_t)WINDOW_S * 1000000000u;
    xds_stats_t w0, w1;
    xds_server_stats(s, &w0);
    long rss_first = -1, rss_last = 0;
    double heap_first = 0, heap_last = 0;
    int windows = 0, late = 0;
    uint64_t commits = 0;
    while (tl_now_ns() < start + (uint64_t)seconds * 1000000000u) {
        for (int i = 0; i < CHANGES_PER_COMMIT; i++) {
            /* c1's global services: a readiness flip changes c0's view */
            int svc = (rand_r(&seed) % (NSVC / 2)) * 2;
            not_ready[svc] ^= 1u << (rand_r(&seed) % PER);
            if (not_ready[svc] == (1u << PER) - 1) /* keep at least one ready */
                not_ready[svc] = 0;
            tl_bench_apply(m, "c1", MODEL_KIND_ENDPOINTSLICE, slice(1, svc, not_ready[svc]));
        }
        snap = model_commit(m);
        xds_server_publish(s, snap);
        uint64_t v = model_snapshot_version(snap), t0 = tl_now_ns();
        model_snapshot_unref(snap);
        commits++;
        pthread_mutex_lock(&k.mu);
        if (k.npend < MAXPEND) {
            k.pend_v[k.npend] = v;
            k.pend_t[k.npend++] = t0;
        }
        pthread_mutex_unlock(&k.mu);
        tl_pipe_put(down[1], v);
        uint64_t now = tl_now_ns();
        if (now < next) {
            uint64_t d = next - now;
            struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
            nanosleep(&ts, NULL);
        } else {
            late++;
        }
        next += period;
        if (tl_now_ns() >= next_win) {
            xds_server_stats(s, &w1);
            long rss = tl_rss_kb();
            double heap = heap_mb();
            pthread_mutex_lock(&k.mu);
            int n = k.nlat;
            double p50 = 0, p99 = 0, mx = 0;
            if (n) {
                qsort(k.lat, (size_t)n, sizeof(double), tl_cmp_double);
                p50 = k.lat[n / 2];
                p99 = k.lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
                mx = k.lat[n - 1];
            }
            int pend = k.npend;
            k.nlat = 0;
            pthread_mutex_unlock(&k.mu);
            printf("%7.0fs %8.1f %8.1f %9.2f %9.2f %9.2f %8llu %9.1f   (%d reached, %d pending)\n",
                   (double)(tl_now_ns() - start) / 1e9, (double)rss / 1024.0, heap, p50, p99, mx,
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
    tl_pipe_put(down[1], 0);
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
