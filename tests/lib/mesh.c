/*
 * mesh.c - the benches' mesh: services, pods and endpoint slices in
 * namespace bench, with IPs numbered per cluster. tl_bench_names(true)
 * switches to names as long as real clusters have them.
 */
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool bench_real; /* see tl_bench_names */

void tl_bench_names(bool realistic)
{
    bench_real = realistic;
}

void tl_bench_cluster_id(int c, char *buf, size_t len)
{
    snprintf(buf, len, bench_real ? "cluster-%d" : "c%d", c);
}

static char *bench_ns(void)
{
    return strdup(bench_real ? "bookinfo-prod" : "bench");
}

/* A Deployment's pod: <svc>-<replicaset hash>-<5 characters>. */
static void bench_pod_name(char *buf, size_t len, int s, int e)
{
    snprintf(buf, len, bench_real ? "svc%d-v1-7d9f8c6b5-%05d" : "svc%d-7d9f8-%05d", s, e);
}

void tl_bench_apply(model_t *m, const char *cluster, model_kind_t k, void *obj)
{
    char err[MODEL_ERRLEN];
    if (model_apply(m, cluster, k, MODEL_OP_UPSERT, obj, err, sizeof(err)) < 0) {
        fprintf(stderr, "apply: %s\n", err);
        exit(1);
    }
}

void tl_ensure_namespace(model_t *m, const char *cluster, const char *ns)
{
    if (model_object(m, cluster, MODEL_KIND_NAMESPACE, ns))
        return;
    model_namespace_t *n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strdup(ns))) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    tl_bench_apply(m, cluster, MODEL_KIND_NAMESPACE, n);
}

int tl_add_cluster(model_t *m, const char *id, const char *network, const char *gw, char *err,
                   size_t errlen)
{
    model_cluster_t c = {.id = id, .network = network};
    if (gw && model_ip_parse(gw, &c.gateway) != 0) {
        snprintf(err, errlen, "gateway \"%s\" is not an IP address", gw);
        return -1;
    }
    return model_cluster_set(m, &c, err, errlen);
}

void tl_bench_ip(model_ip_t *ip, int cluster, int n)
{
    ip->len = 4;
    ip->b[0] = 10;
    ip->b[1] = (uint8_t)(cluster * 16 + n / 65536);
    ip->b[2] = (uint8_t)(n / 256);
    ip->b[3] = (uint8_t)(n % 256);
}

model_service_t *tl_bench_service(int s)
{
    model_service_t *sv = calloc(1, sizeof(*sv));
    char name[64];
    sv->ns = bench_ns();
    snprintf(name, sizeof(name), "svc%d", s);
    sv->name = strdup(name);
    model_labels_set(&sv->labels, "app", name);
    if (s % 2 == 0)
        model_labels_set(&sv->labels, "istio.io/global", "true");
    sv->cluster_ips = calloc(1, sizeof(model_ip_t));
    tl_bench_ip(&sv->cluster_ips[0], 14, s);
    sv->ncluster_ips = 1;
    sv->ports = calloc(1, sizeof(*sv->ports));
    sv->ports[0].name = strdup("http");
    sv->ports[0].port = 80;
    sv->ports[0].target_port = 8080;
    sv->nports = 1;
    return sv;
}

model_pod_t *tl_bench_pod(int c, int s, int per, int e)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    char name[64];
    p->ns = bench_ns();
    bench_pod_name(name, sizeof(name), s, e);
    p->name = strdup(name);
    if (bench_real) {
        snprintf(name, sizeof(name), "5f1e2d3c-4b5a-6978-%04x-%012d", c, s * per + e);
        p->uid = strdup(name);
    }
    p->ips = calloc(1, sizeof(model_ip_t));
    tl_bench_ip(&p->ips[0], c, s * per + e);
    p->nips = 1;
    p->node = strdup(bench_real ? "ip-10-0-12-34.ec2.internal" : "node-1");
    p->service_account = strdup("default");
    p->ambient = true; /* enrolled: istio-cni annotated it */
    p->ready = true;
    snprintf(name, sizeof(name), "svc%d", s);
    model_labels_set(&p->labels, "app", name);
    return p;
}

model_endpointslice_t *tl_bench_slice(int c, int s, int per, int not_ready)
{
    model_endpointslice_t *sl = calloc(1, sizeof(*sl));
    char name[64];
    sl->ns = bench_ns();
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
        tl_bench_ip(&ep->ip, c, s * per + e);
        ep->ready = e != not_ready;
        ep->serving = true;
        bench_pod_name(name, sizeof(name), s, e);
        ep->pod = strdup(name);
        ep->node = strdup(bench_real ? "ip-10-0-12-34.ec2.internal" : "node-1");
        ep->zone = strdup("zone-a");
    }
    return sl;
}

model_t *tl_bench_mesh(int nclusters, int nservices, int per, bool hash_label, char *err,
                       size_t errlen)
{
    model_t *m = model_new(NULL);
    for (int c = 0; c < nclusters; c++) {
        char id[32], net[32];
        tl_bench_cluster_id(c, id, sizeof(id));
        snprintf(net, sizeof(net), bench_real ? "network-%d" : "n%d", c);
        model_cluster_t ci = {.id = id, .network = net};
        tl_bench_ip(&ci.gateway, 15, c);
        if (model_cluster_set(m, &ci, err, errlen) < 0)
            goto fail;
        for (int s = 0; s < nservices; s++) {
            if (s == 0) {
                model_service_t *first = tl_bench_service(0);
                tl_ensure_namespace(m, id, first->ns);
                model_obj_free(MODEL_KIND_SERVICE, first);
            }
            if (model_apply(m, id, MODEL_KIND_SERVICE, MODEL_OP_UPSERT, tl_bench_service(s), err,
                            errlen) < 0)
                goto fail;
            for (int e = 0; e < per; e++) {
                model_pod_t *p = tl_bench_pod(c, s, per, e);
                if (hash_label) { /* a Deployment's pod, as the API server has it */
                    const char *h = bench_real ? "7d9f8c6b5" : "7d9f8";
                    char rs[96];
                    snprintf(rs, sizeof(rs),
                             bench_real ? "ReplicaSet/svc%d-v1-%s" : "ReplicaSet/svc%d-%s", s, h);
                    model_labels_set(&p->labels, "pod-template-hash", h);
                    p->owner = strdup(rs);
                }
                if (model_apply(m, id, MODEL_KIND_POD, MODEL_OP_UPSERT, p, err, errlen) < 0)
                    goto fail;
            }
            if (model_apply(m, id, MODEL_KIND_ENDPOINTSLICE, MODEL_OP_UPSERT,
                            tl_bench_slice(c, s, per, -1), err, errlen) < 0)
                goto fail;
        }
    }
    return m;
fail:
    model_free(m);
    return NULL;
}

model_endpointslice_t *tl_slice(const char *ns, const char *svc, const char *port_name, int port,
                                const char *ipbase, int n, int nready, bool pods)
{
    model_endpointslice_t *s = calloc(1, sizeof(*s));
    char name[64];
    s->ns = strdup(ns);
    snprintf(name, sizeof(name), "%s-abc", svc);
    s->name = strdup(name);
    s->service = strdup(svc);
    s->ports = calloc(1, sizeof(model_ep_port_t));
    s->ports[0].name = strdup(port_name);
    s->ports[0].port = (uint16_t)port;
    s->nports = 1;
    s->endpoints = calloc((size_t)n, sizeof(model_endpoint_t));
    s->nendpoints = (size_t)n;
    for (int i = 0; i < n; i++) {
        char ip[64];
        snprintf(ip, sizeof(ip), "%s.%d", ipbase, i + 1);
        if (model_ip_parse(ip, &s->endpoints[i].ip) != 0) {
            model_obj_free(MODEL_KIND_ENDPOINTSLICE, s);
            return NULL;
        }
        s->endpoints[i].ready = i < nready;
        if (pods) {
            snprintf(name, sizeof(name), "%s-%d", svc, i);
            s->endpoints[i].pod = strdup(name);
        }
    }
    return s;
}
