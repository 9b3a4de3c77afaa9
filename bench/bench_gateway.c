/*
 * bench_gateway.c - the east-west gateway's configuration at scale.
 *
 * Two clusters on two networks with 2,000 global services (and 2,000 local
 * ones the gateway must not get), 10 endpoints each per cluster. Prints the
 * time to build the model and encode everything the gateway of cluster c0 is
 * served (LDS, RDS, CDS, EDS), the same again from the shared encodings, the
 * bytes of a full push, and the bytes and time after one endpoint changes.
 * Usage: bench_gateway [global-services]
 */
#include "envoy.h"
#include "model.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t collect_all(const model_snapshot_t *snap, const model_view_t *v, double *secs)
{
    size_t bytes = 0;
    double t0 = tl_now();
    for (int t = 0; t < XDS_ENVOY_NTYPES; t++) {
        xds_envoy_set_t set;
        memset(&set, 0, sizeof(set));
        if (xds_envoy_collect(&set, snap, v, XDS_ROLE_GATEWAY, NULL, (xds_envoy_type_t)t, NULL) <
            0) {
            fprintf(stderr, "collect failed\n");
            exit(1);
        }
        for (size_t i = 0; i < set.n; i++)
            bytes += set.items[i].len;
        xds_envoy_set_free(&set);
    }
    *secs = tl_now() - t0;
    return bytes;
}

int main(int argc, char **argv)
{
    int nglobal = argc > 1 ? atoi(argv[1]) : 2000, per = 10;
    double t0 = tl_now();
    model_t *m = model_new(NULL);
    char err[MODEL_ERRLEN];
    for (int c = 0; c < 2; c++) {
        char id[8], net[8];
        snprintf(id, sizeof(id), "c%d", c);
        snprintf(net, sizeof(net), "n%d", c);
        model_cluster_t ci = {.id = id, .network = net};
        tl_bench_ip(&ci.gateway, 15, c);
        model_cluster_set(m, &ci, err, sizeof(err));
        for (int s = 0; s < 2 * nglobal; s++) {
            model_service_t *sv = tl_bench_service(s); /* global when s is even */
            tl_ensure_namespace(m, id, sv->ns);
            sv->traffic_dist = MODEL_TD_PREFER_CLOSE;
            tl_bench_apply(m, id, MODEL_KIND_SERVICE, sv);
            tl_bench_apply(m, id, MODEL_KIND_ENDPOINTSLICE, tl_bench_slice(c, s, per, -1));
        }
    }
    model_snapshot_t *snap = model_commit(m);
    double t1 = tl_now();
    const model_view_t gw = {"c0", "n0"};
    double enc, cached;
    size_t bytes = collect_all(snap, &gw, &enc);
    collect_all(snap, &gw, &cached);
    printf("mesh: 2 clusters, %d global + %d local services, %d endpoints each per cluster\n",
           nglobal, nglobal, per);
    printf("model build: %.2f s\n", t1 - t0);
    printf("gateway config (LDS+RDS+CDS+EDS, %d services): encode %.1f ms, again from the shared "
           "encodings %.1f ms\n",
           nglobal, enc * 1e3, cached * 1e3);
    printf("bytes per full push: %zu (%.0f per global service)\n", bytes, (double)bytes / nglobal);
    /* one endpoint of a global service turns unready */
    double a = tl_now();
    tl_bench_apply(m, "c0", MODEL_KIND_ENDPOINTSLICE, tl_bench_slice(0, 6, per, 3));
    model_snapshot_t *s2 = model_commit(m);
    double commit = tl_now() - a;
    xds_envoy_set_t set;
    memset(&set, 0, sizeof(set));
    a = tl_now();
    xds_envoy_collect(&set, s2, &gw, XDS_ROLE_GATEWAY, NULL, XDS_EDS, NULL);
    double eds = tl_now() - a;
    size_t changed = 0;
    for (size_t i = 0; i < set.n; i++)
        if (strstr(set.items[i].name, "|svc6."))
            changed += set.items[i].len;
    xds_envoy_set_free(&set);
    printf("one endpoint change: commit %.0f us, EDS collect %.1f ms, changed resource %zu bytes "
           "(SotW resends the EDS set; Delta sends only this)\n",
           commit * 1e6, eds * 1e3, changed);
    model_snapshot_unref(snap);
    model_snapshot_unref(s2);
    model_free(m);
    return 0;
}
