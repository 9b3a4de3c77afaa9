/*
 * bench_model.c - how the model scales: build a mesh of 3 clusters x 2,000
 * services x 50,000 endpoints each, then change one endpoint at a time.
 *
 * Prints: build time, one-endpoint change time (apply + commit, p50/p99 over
 * many changes), resident bytes per endpoint, snapshot size.
 * Usage: bench_model [clusters] [services] [endpoints-per-cluster]
 */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident bytes: what the process really holds, allocator overhead and
 * fragmentation included (the figure does not depend on the allocator). */
static size_t heap(void)
{
    long total = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &total, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

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
    if (model_apply(m, cluster, k, MODEL_OP_UPSERT, obj, err, sizeof(err)) < 0) {
        fprintf(stderr, "apply: %s\n", err);
        exit(1);
    }
}

static model_endpointslice_t *slice(int c, int s, int per, int first, int ready_mask)
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
        ip_of(&ep->ip, c, first + e);
        ep->ready = e != ready_mask;
        ep->serving = true;
        snprintf(name, sizeof(name), "svc%d-7d9f8-%05d", s, e);
        ep->pod = strdup(name);
        ep->node = strdup("node-1");
        ep->zone = strdup("zone-a");
    }
    return sl;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int nclusters = argc > 1 ? atoi(argv[1]) : 3;
    int nservices = argc > 2 ? atoi(argv[2]) : 2000;
    int neps = argc > 3 ? atoi(argv[3]) : 50000;
    int per = neps / nservices;
    size_t h0 = heap();
    double t0 = now();
    model_t *m = model_new(NULL);
    char err[MODEL_ERRLEN];
    for (int c = 0; c < nclusters; c++) {
        char id[16], net[16];
        snprintf(id, sizeof(id), "c%d", c);
        snprintf(net, sizeof(net), "n%d", c);
        model_cluster_t ci = {.id = id, .network = net};
        ip_of(&ci.gateway, 15, c);
        model_cluster_set(m, &ci, err, sizeof(err));
        for (int s = 0; s < nservices; s++) {
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
            apply(m, id, MODEL_KIND_SERVICE, sv);
            for (int e = 0; e < per; e++) {
                model_pod_t *p = calloc(1, sizeof(*p));
                p->ns = strdup("bench");
                snprintf(name, sizeof(name), "svc%d-7d9f8-%05d", s, e);
                p->name = strdup(name);
                p->ips = calloc(1, sizeof(model_ip_t));
                ip_of(&p->ips[0], c, s * per + e);
                p->nips = 1;
                p->node = strdup("node-1");
                p->service_account = strdup("default");
                p->ready = true;
                model_labels_set(&p->labels, "app", sv->name);
                model_labels_set(&p->labels, "pod-template-hash", "7d9f8");
                apply(m, id, MODEL_KIND_POD, p);
            }
            apply(m, id, MODEL_KIND_ENDPOINTSLICE, slice(c, s, per, s * per, -1));
        }
    }
    size_t h_in = heap();
    double t_in = now();
    model_snapshot_t *snap = model_commit(m);
    double t1 = now();
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
        model_endpointslice_t *sl = slice(c, s, per, s * per, i % per);
        char id[16];
        snprintf(id, sizeof(id), "c%d", c);
        double a = now();
        apply(m, id, MODEL_KIND_ENDPOINTSLICE, sl);
        model_snapshot_t *s2 = model_commit(m);
        lat[i] = now() - a;
        model_snapshot_unref(snap);
        snap = s2;
    }
    qsort(lat, CHANGES, sizeof(double), cmpd);
    printf("one-endpoint change (apply + commit, %d-endpoint slice): p50 %.1f us, p99 %.1f us\n",
           per, lat[CHANGES / 2] * 1e6, lat[CHANGES * 99 / 100] * 1e6);
    free(lat);
    model_snapshot_unref(snap);
    model_free(m);
    return 0;
}
