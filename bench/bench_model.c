/*
 * bench_model.c - how the model scales: build a mesh of 3 clusters x 2,000
 * services x 50,000 endpoints each, then change one endpoint at a time.
 *
 * Prints: build time, one-endpoint change time (apply + commit, p50/p99 over
 * many changes), resident bytes per endpoint, snapshot size. Twice, each in
 * its own process (resident memory is per process): with short names, and
 * with names as long as real clusters have them (Deployment pod names, pod
 * uids, cloud node names), which cost memory in every copy and key.
 * Usage: bench_model [clusters] [services] [endpoints-per-cluster]
 */
#include "model/model.h"
#include "tests/lib/testlib.h"

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

static void apply(model_t *m, const char *cluster, model_kind_t k, void *obj)
{
    char err[MODEL_ERRLEN];
    if (model_apply(m, cluster, k, MODEL_OP_UPSERT, obj, err, sizeof(err)) < 0) {
        fprintf(stderr, "apply: %s\n", err);
        exit(1);
    }
}

static void run(int nclusters, int nservices, int neps)
{
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

    /* one endpoint flips readiness per change, each in its own commit */
    enum { CHANGES = 2000 };
    double *lat = malloc(CHANGES * sizeof(double));
    for (int i = 0; i < CHANGES; i++) {
        int c = i % nclusters, s = (i * 7) % nservices;
        model_endpointslice_t *sl = tl_bench_slice(c, s, per, i % per);
        char id[32];
        tl_bench_cluster_id(c, id, sizeof(id));
        double a = tl_now();
        apply(m, id, MODEL_KIND_ENDPOINTSLICE, sl);
        model_snapshot_t *s2 = model_commit(m);
        lat[i] = tl_now() - a;
        model_snapshot_unref(snap);
        snap = s2;
    }
    qsort(lat, CHANGES, sizeof(double), tl_cmp_double);
    printf("one-endpoint change (apply + commit, %d-endpoint slice): p50 %.1f us, p99 %.1f us\n",
           per, lat[CHANGES / 2] * 1e6, lat[CHANGES * 99 / 100] * 1e6);
    free(lat);
    model_snapshot_unref(snap);
    model_free(m);
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
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            tl_bench_names(real);
            run(nclusters, nservices, neps);
            fflush(stdout);
            _exit(0);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    return 0;
}
