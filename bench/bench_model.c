/*
 * bench_model.c - how the model scales: build a mesh of 3 clusters x 2,000
 * services x 50,000 endpoints each, then change one endpoint at a time.
 *
 * Prints: build time, one-endpoint change time (apply + commit, p50/p99 over
 * many changes), resident bytes per endpoint, snapshot size. Twice, each in
 * its own process (resident memory is per process): with short names, and
 * with names as long as real clusters have them (Deployment pod names, pod
 * uids, cloud node names), which cost memory in every copy and key. Then
 * incremental against full rebuild as the mesh grows: the same mesh at a
 * tenth, a third and all of its size, one row each (short names).
 * Usage: bench_model [clusters] [services] [endpoints-per-cluster]
 */
#include "model.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Resident bytes: what the process really holds, allocator overhead and
 * fragmentation included (the figure does not depend on the allocator). */
static size_t heap(void)
{
    return (size_t)tl_rss_kb() * 1024;
}

typedef struct figures {
    double build_s, p50_us, p99_us, bytes_per_ep;
    size_t endpoints;
} figures_t;

static figures_t run(int nclusters, int nservices, int neps, bool quiet)
{
    figures_t f;
    int per = neps / nservices;
    size_t h0 = heap();
    double t0 = tl_now();
    char err[MODEL_ERRLEN];
    model_t *m = tl_bench_mesh(nclusters, nservices, per, true, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "apply: %s\n", err);
        exit(1);
    }
    size_t h_in = heap();
    double t_in = tl_now();
    model_snapshot_t *snap = model_commit(m);
    double t1 = tl_now();
    size_t h1 = heap();
    size_t total_eps = (size_t)nclusters * (size_t)nservices * (size_t)per;
    f.endpoints = total_eps;
    f.build_s = t1 - t0;
    f.bytes_per_ep = (double)(h1 - h0) / (double)total_eps;
    if (!quiet) {
        printf("mesh: %d clusters x %d services x %d endpoints per cluster = %zu endpoints\n",
               nclusters, nservices, per * nservices, total_eps);
        printf("build (apply + first commit): %.2f s (%.0f endpoints/s)\n", t1 - t0,
               (double)total_eps / (t1 - t0));
        printf("resources in snapshot: %zu names\n", model_snapshot_size(snap));
        printf("  of which apply %.2f s, first commit %.2f s\n", t_in - t0, t1 - t_in);
        printf("memory: %.0f bytes per endpoint (%.0f inputs and indexes, %.0f published "
               "resources)\n",
               (double)(h1 - h0) / (double)total_eps, (double)(h_in - h0) / (double)total_eps,
               (double)(h1 - h_in) / (double)total_eps);
    }

    /* one endpoint flips readiness per change, each in its own commit */
    enum { CHANGES = 2000 };
    double *lat = malloc(CHANGES * sizeof(double));
    for (int i = 0; i < CHANGES; i++) {
        int c = i % nclusters, s = (i * 7) % nservices;
        model_endpointslice_t *sl = tl_bench_slice(c, s, per, i % per);
        char id[32];
        tl_bench_cluster_id(c, id, sizeof(id));
        double a = tl_now();
        tl_bench_apply(m, id, MODEL_KIND_ENDPOINTSLICE, sl);
        model_snapshot_t *s2 = model_commit(m);
        lat[i] = tl_now() - a;
        model_snapshot_unref(snap);
        snap = s2;
    }
    qsort(lat, CHANGES, sizeof(double), tl_cmp_double);
    f.p50_us = lat[CHANGES / 2] * 1e6;
    f.p99_us = lat[CHANGES * 99 / 100] * 1e6;
    if (!quiet)
        printf("one-endpoint change (apply + commit, %d-endpoint slice): p50 %.1f us, p99 %.1f "
               "us\n",
               per, f.p50_us, f.p99_us);
    free(lat);
    model_snapshot_unref(snap);
    model_free(m);
    return f;
}

/* fn(arg) in a child process, so that resident memory is its own. */
static bool in_child(void (*fn)(void *), void *arg)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    return pid >= 0 && waitpid(pid, &st, 0) >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

typedef struct args {
    int nclusters, nservices, neps;
    bool real, row;
} args_t;

static void one(void *p)
{
    const args_t *a = p;
    tl_bench_names(a->real);
    figures_t f = run(a->nclusters, a->nservices, a->neps, a->row);
    if (a->row)
        printf("%10zu %12.0f %11.1f %11.1f %13.0f %15.0f\n", f.endpoints, f.build_s * 1e3, f.p50_us,
               f.p99_us, f.bytes_per_ep, f.build_s * 1e6 / f.p50_us);
}

int main(int argc, char **argv)
{
    int nclusters = argc > 1 ? atoi(argv[1]) : 3;
    int nservices = argc > 2 ? atoi(argv[2]) : 2000;
    int neps = argc > 3 ? atoi(argv[3]) : 50000;
    for (int real = 0; real < 2; real++) {
        printf("%s\n", real ? "-- names as long as real clusters have them (cluster-0, "
                              "bookinfo-prod, svc1-v1-7d9f8c6b5-00001, pod uids)"
                            : "-- short names (c0, bench, svc1-7d9f8-00001)");
        args_t a = {nclusters, nservices, neps, real, false};
        if (!in_child(one, &a))
            return 1;
    }
    printf("-- incremental vs full rebuild as the mesh grows (short names)\n"
           "%10s %12s %11s %11s %13s %15s\n",
           "endpoints", "rebuild ms", "change p50", "change p99", "bytes/endpt", "rebuild/change");
    static const int div[] = {10, 3, 1};
    for (size_t i = 0; i < sizeof(div) / sizeof(div[0]); i++) {
        args_t a = {nclusters, nservices / div[i], neps / div[i], false, true};
        if (!in_child(one, &a))
            return 1;
    }
    return 0;
}
