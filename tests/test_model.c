/*
 * test_model.c - the multicluster model: scope, merge, views, snapshots, deltas.
 */
#include "model.h"
#include "model_int.h" /* model_res_equal, to compare two models */
#include "testcheck.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- object builders ---------- */

/* A slice whose endpoints are pods p<i> with IPs base.<i>; ready given per pod. */
static model_endpointslice_t *mk_slice(const char *ns, const char *name, const char *svc,
                                       const char *ipbase, int n, const bool *ready)
{
    model_endpointslice_t *s = calloc(1, sizeof(*s));
    s->ns = strdup(ns);
    s->name = strdup(name);
    s->service = strdup(svc);
    s->ports = calloc(1, sizeof(model_ep_port_t));
    s->ports[0].name = strdup("http");
    s->ports[0].port = 8080;
    s->nports = 1;
    s->endpoints = calloc((size_t)n + 1, sizeof(model_endpoint_t));
    s->nendpoints = (size_t)n;
    for (int i = 0; i < n; i++) {
        char ip[64], pod[64];
        snprintf(ip, sizeof(ip), "%s.%d", ipbase, i + 1);
        snprintf(pod, sizeof(pod), "%s-%d", svc, i);
        ck_assert_int_eq(model_ip_parse(ip, &s->endpoints[i].ip), 0);
        s->endpoints[i].ready = ready ? ready[i] : true;
        s->endpoints[i].pod = strdup(pod);
    }
    return s;
}

/* Pods "<svc>-<i>" with IPs ipbase.<i+1>, their slice, and the service. */
static void add_service(model_t *m, const char *cluster, const char *ns, const char *name,
                        const char *vip, const char *const *kv, const char *ipbase, int n)
{
    if (!model_object(m, cluster, MODEL_KIND_NAMESPACE, ns))
        apply(m, cluster, MODEL_KIND_NAMESPACE, new_ns(ns, NULL));
    apply(m, cluster, MODEL_KIND_SERVICE, new_svc(ns, name, vip, kv, 80));
    for (int i = 0; i < n; i++) {
        char ip[64], pod[64];
        snprintf(ip, sizeof(ip), "%s.%d", ipbase, i + 1);
        snprintf(pod, sizeof(pod), "%s-%d", name, i);
        apply(m, cluster, MODEL_KIND_POD, new_pod(ns, pod, ip, NULL, NULL));
    }
    char slice[128];
    snprintf(slice, sizeof(slice), "%s-abc", name);
    apply(m, cluster, MODEL_KIND_ENDPOINTSLICE, mk_slice(ns, slice, name, ipbase, n, NULL));
}

static const char *const GLOBAL[] = {"istio.io/global", "true", NULL};

/* A mesh: c1 and c2 in networks n1 and n2, each with a gateway. */
static model_t *mesh(void)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c2", "n2", "192.0.2.2");
    return m;
}

static const model_view_t V1 = {"c1", "n1"}, V2 = {"c2", "n2"};

static const model_out_workload_t *wl(const model_snapshot_t *s, const model_view_t *v,
                                      const char *uid)
{
    const model_res_t *r = model_snapshot_get(s, v, uid);
    return r ? model_res_workload(r) : NULL;
}

static const model_out_service_t *svc(const model_snapshot_t *s, const model_view_t *v,
                                      const char *key)
{
    const model_res_t *r = model_snapshot_get(s, v, key);
    return r ? model_res_service(r) : NULL;
}

#define SH(net, gwip, ns, host)                                                                    \
    net "/SplitHorizonWorkload/istio-system/istio-eastwest/" gwip "/" ns "/" host

/* ---------- scope ---------- */

START_TEST(default_rule_global_label)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 2);
    add_service(m, "c1", "ns", "b", "10.96.0.2", NULL, "10.1.1", 2);
    model_snapshot_t *s = model_commit(m);
    /* a is global: c2 sees it, b is local: only c1 does */
    ck_assert_ptr_nonnull(svc(s, &V2, "ns/a.ns.svc.cluster.local"));
    ck_assert_ptr_null(svc(s, &V2, "ns/b.ns.svc.cluster.local"));
    ck_assert_ptr_nonnull(svc(s, &V1, "ns/b.ns.svc.cluster.local"));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

static model_selector_t *sel(const char *key, model_selop_t op, const char *value)
{
    model_selector_t *s = model_selector_new();
    char err[MODEL_ERRLEN];
    const char *vals[] = {value};
    ck_assert_int_eq(model_selector_add_expr(s, key, op, vals, value ? 1 : 0, err, sizeof(err)), 0);
    return s;
}

/* rule 0: ns team=a AND svc tier=web -> GLOBAL; rule 1: svc export=yes -> GLOBAL */
static model_scope_rules_t *and_or_rules(void)
{
    model_scope_rules_t *r = model_scope_rules_new();
    model_scope_rule_t r0 = {strdup("r0"), sel("team", MODEL_SELOP_IN, "a"),
                             sel("tier", MODEL_SELOP_IN, "web"), MODEL_SCOPE_GLOBAL};
    model_scope_rule_t r1 = {strdup("r1"), NULL, sel("export", MODEL_SELOP_IN, "yes"),
                             MODEL_SCOPE_GLOBAL};
    ck_assert_int_eq(model_scope_rules_add(r, r0), 0);
    ck_assert_int_eq(model_scope_rules_add(r, r1), 0);
    return r;
}

START_TEST(scope_and_within_rule_or_across_rules)
{
    model_scope_rules_t *r = and_or_rules();
    model_labels_t ns_a = {0}, ns_b = {0}, web = {0}, exp = {0}, none = {0};
    model_labels_set(&ns_a, "team", "a");
    model_labels_set(&ns_b, "team", "b");
    model_labels_set(&web, "tier", "web");
    model_labels_set(&exp, "export", "yes");
    ck_assert_int_eq(model_scope_eval(r, &ns_a, &web).scope, MODEL_SCOPE_GLOBAL);
    ck_assert_int_eq(model_scope_eval(r, &ns_a, &web).rule, 0);
    ck_assert_int_eq(model_scope_eval(r, &ns_b, &web).scope, MODEL_SCOPE_LOCAL); /* AND */
    ck_assert_int_eq(model_scope_eval(r, &ns_a, &none).scope, MODEL_SCOPE_LOCAL);
    ck_assert_int_eq(model_scope_eval(r, &ns_b, &exp).scope, MODEL_SCOPE_GLOBAL); /* OR */
    ck_assert_int_eq(model_scope_eval(r, &ns_b, &exp).rule, 1);
    ck_assert_int_eq(model_scope_eval(r, NULL, &web).scope, MODEL_SCOPE_LOCAL);
    model_labels_clear(&ns_a);
    model_labels_clear(&ns_b);
    model_labels_clear(&web);
    model_labels_clear(&exp);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(scope_local_rule_does_not_override_global)
{
    model_scope_rules_t *r = model_scope_rules_new();
    model_scope_rule_t local = {strdup("l"), NULL, sel("tier", MODEL_SELOP_EXISTS, NULL),
                                MODEL_SCOPE_LOCAL};
    model_scope_rule_t global = {strdup("g"), NULL, sel("tier", MODEL_SELOP_IN, "web"),
                                 MODEL_SCOPE_GLOBAL};
    model_scope_rules_add(r, local);
    model_scope_rules_add(r, global);
    model_labels_t web = {0}, db = {0};
    model_labels_set(&web, "tier", "web");
    model_labels_set(&db, "tier", "db");
    model_scope_result_t res = model_scope_eval(r, NULL, &web);
    ck_assert_int_eq(res.scope, MODEL_SCOPE_GLOBAL);
    ck_assert_int_eq(res.rule, 1);
    res = model_scope_eval(r, NULL, &db);
    ck_assert_int_eq(res.scope, MODEL_SCOPE_LOCAL);
    ck_assert_int_eq(res.rule, 0); /* the LOCAL rule is the recorded reason */
    model_labels_clear(&web);
    model_labels_clear(&db);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(scope_empty_rules_make_everything_local)
{
    model_scope_rules_t *r = model_scope_rules_new();
    model_labels_t g = {0};
    model_labels_set(&g, "istio.io/global", "true");
    ck_assert_int_eq(model_scope_eval(r, NULL, &g).scope, MODEL_SCOPE_LOCAL);
    model_scope_rules_free(r);
    r = model_scope_rules_default();
    ck_assert_int_eq(model_scope_eval(r, NULL, &g).scope, MODEL_SCOPE_GLOBAL);
    model_labels_clear(&g);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(namespace_label_flips_scope)
{
    model_t *m = mesh();
    model_scope_set(m, and_or_rules());
    const char *const web[] = {"tier", "web", NULL};
    const char *const team_b[] = {"team", "b", NULL};
    const char *const team_a[] = {"team", "a", NULL};
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", team_b));
    add_service(m, "c1", "ns", "web", "10.96.0.1", web, "10.1.0", 2);
    model_snapshot_t *s1 = model_commit(m);
    ck_assert_ptr_null(svc(s1, &V2, "ns/web.ns.svc.cluster.local"));
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", team_a));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_nonnull(svc(s2, &V2, "ns/web.ns.svc.cluster.local"));
    ck_assert_ptr_nonnull(wl(s2, &V2, SH("n1", "192.0.2.1", "ns", "web.ns.svc.cluster.local")));
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", team_b));
    model_snapshot_t *s3 = model_commit(m);
    ck_assert_ptr_null(svc(s3, &V2, "ns/web.ns.svc.cluster.local"));
    ck_assert_ptr_null(wl(s3, &V2, SH("n1", "192.0.2.1", "ns", "web.ns.svc.cluster.local")));
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_free(m);
}
END_TEST

/* ---------- merge and views ---------- */

START_TEST(global_service_merges_vips_across_clusters)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 2);
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 3);
    model_snapshot_t *s = model_commit(m);
    const model_out_service_t *o = svc(s, &V1, "ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(o->naddrs, 2);
    ck_assert_str_eq(o->addrs[0].network, "n1");
    ck_assert_str_eq(o->addrs[1].network, "n2");
    ck_assert_ptr_eq(model_snapshot_get(s, &V1, "ns/a.ns.svc.cluster.local"),
                     model_snapshot_get(s, &V2, "ns/a.ns.svc.cluster.local"));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(remote_network_reached_through_gateway_with_capacity)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 1);
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 3);
    model_snapshot_t *s = model_commit(m);
    /* c1 sees its own pod, not c2's pod IPs, and one workload for n2 */
    ck_assert_ptr_nonnull(wl(s, &V1, "c1//Pod/ns/a-0"));
    ck_assert_ptr_null(wl(s, &V1, "c2//Pod/ns/a-0"));
    const model_out_workload_t *w =
        wl(s, &V1, SH("n2", "192.0.2.2", "ns", "a.ns.svc.cluster.local"));
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->gateway->capacity, 3);
    ck_assert(w->gateway);
    ck_assert_uint_eq(w->gateway->hbone_port, 15008);
    ck_assert_uint_eq(w->naddrs, 0);
    ck_assert_str_eq(w->services[0].key, "ns/a.ns.svc.cluster.local");
    /* c1 does not see the split-horizon workload of its own network */
    ck_assert_ptr_null(wl(s, &V1, SH("n1", "192.0.2.1", "ns", "a.ns.svc.cluster.local")));
    ck_assert_ptr_nonnull(wl(s, &V2, SH("n1", "192.0.2.1", "ns", "a.ns.svc.cluster.local")));
    /* the gateways themselves */
    ck_assert_ptr_nonnull(wl(s, &V1, "NetworkGateway/n2/192.0.2.2/0"));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* A pod of svc in cluster with a service account of its own. */
static void set_sa(model_t *m, const char *cluster, const char *ns, const char *pod, const char *ip,
                   const char *sa)
{
    model_pod_t *p = new_pod(ns, pod, ip, NULL, NULL);
    free(p->service_account);
    p->service_account = strdup(sa);
    apply(m, cluster, MODEL_KIND_POD, p);
}

static bool has_san(const model_out_service_t *o, const char *san)
{
    for (size_t i = 0; i < o->nsans; i++)
        if (strcmp(o->sans[i], san) == 0)
            return true;
    return false;
}

START_TEST(service_sans_name_other_networks_pods)
{
    model_config_t cfg = {.trust_domain = "example.org"};
    model_t *m = model_new(&cfg);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c2", "n2", "192.0.2.2");
    add_cluster(m, "c3", "n2", NULL);
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 1);
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 2);
    set_sa(m, "c1", "ns", "a-0", "10.1.0.1", "front");
    set_sa(m, "c2", "ns", "a-0", "10.2.0.1", "zeta");
    set_sa(m, "c2", "ns", "a-1", "10.2.0.2", "back");
    model_snapshot_t *s = model_commit(m);
    /* n1 sees n2's identities, sorted, each once; n2 (both clusters) sees n1's */
    const model_out_service_t *o1 = svc(s, &V1, "ns/a.ns.svc.cluster.local");
    ck_assert_uint_eq(o1->nsans, 2);
    ck_assert_str_eq(o1->sans[0], "spiffe://example.org/ns/ns/sa/back");
    ck_assert_str_eq(o1->sans[1], "spiffe://example.org/ns/ns/sa/zeta");
    const model_view_t v3 = {"c3", "n2"};
    const model_out_service_t *o2 = svc(s, &V2, "ns/a.ns.svc.cluster.local");
    ck_assert_uint_eq(o2->nsans, 1);
    ck_assert_str_eq(o2->sans[0], "spiffe://example.org/ns/ns/sa/front");
    ck_assert_ptr_eq(model_snapshot_get(s, &V2, "ns/a.ns.svc.cluster.local"),
                     model_snapshot_get(s, &v3, "ns/a.ns.svc.cluster.local"));
    /* a LOCAL service carries none */
    add_service(m, "c1", "ns", "l", "10.96.0.2", NULL, "10.1.1", 1);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_uint_eq(svc(s2, &V1, "ns/l.ns.svc.cluster.local")->nsans, 0);
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(service_sans_follow_service_account_changes_only)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 1);
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 1);
    add_service(m, "c2", "ns", "b", "10.97.0.2", GLOBAL, "10.2.1", 1);
    model_snapshot_t *s1 = model_commit(m);
    const char *key = "ns/a.ns.svc.cluster.local", *bkey = "ns/b.ns.svc.cluster.local";
    ck_assert(has_san(svc(s1, &V1, key), "spiffe://cluster.local/ns/ns/sa/default"));
    /* readiness moves: the service is not re-sent */
    model_pod_t *p = new_pod("ns", "a-0", "10.2.0.1", NULL, NULL);
    p->ready = false;
    apply(m, "c2", MODEL_KIND_POD, p);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_eq(model_snapshot_get(s1, &V1, key), model_snapshot_get(s2, &V1, key));
    /* its service account changes: only the service it is behind moves */
    set_sa(m, "c2", "ns", "a-0", "10.2.0.1", "reviews");
    model_snapshot_t *s3 = model_commit(m);
    const model_out_service_t *o = svc(s3, &V1, key);
    ck_assert_uint_eq(o->nsans, 1);
    ck_assert_str_eq(o->sans[0], "spiffe://cluster.local/ns/ns/sa/reviews");
    ck_assert_str_eq(svc(s3, &V2, key)->sans[0], "spiffe://cluster.local/ns/ns/sa/default");
    ck_assert_ptr_ne(model_snapshot_get(s2, &V1, key), model_snapshot_get(s3, &V1, key));
    ck_assert_ptr_eq(model_snapshot_get(s2, &V1, bkey), model_snapshot_get(s3, &V1, bkey));
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_free(m);
}
END_TEST

START_TEST(network_gateway_workload_as_istiod_builds_it)
{
    model_config_t cfg = {.trust_domain = "example.org"};
    model_t *m = model_new(&cfg);
    model_cluster_t c1 = {.id = "c1",
                          .network = "n1",
                          .gateway_ns = "gw-ns",
                          .gateway_name = "eastwest",
                          .gateway_sa = "ew-sa"};
    ck_assert_int_eq(model_ip_parse("192.0.2.1", &c1.gateway), 0);
    model_cluster_t c2 = {.id = "c2",
                          .network = "n2",
                          .gateway_name = "eastwest",
                          .gateway_hostname = "ew.example.com"};
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(model_cluster_set(m, &c1, err, sizeof(err)), 0);
    ck_assert_int_eq(model_cluster_set(m, &c2, err, sizeof(err)), 0);
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 1);
    model_snapshot_t *s = model_commit(m);
    const model_out_workload_t *g = wl(s, &V2, "NetworkGateway/n1/192.0.2.1/0");
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq(g->name, "NetworkGateway/n1/192.0.2.1/0");
    ck_assert_str_eq(g->ns, "gw-ns");
    ck_assert_str_eq(g->service_account, "ew-sa");
    ck_assert_str_eq(g->trust_domain, "example.org");
    ck_assert_str_eq(g->network, "n1");
    ck_assert_uint_eq(g->naddrs, 1);
    ck_assert_ptr_null(g->cluster_id);
    ck_assert_uint_eq(g->tunnel, MODEL_TUNNEL_NONE);
    ck_assert_uint_eq(g->workload_type, 0);
    /* a cluster's own gateway is no network gateway to it */
    ck_assert_ptr_null(wl(s, &V1, "NetworkGateway/n1/192.0.2.1/0"));
    /* a hostname gateway: its name, no address; the split-horizon workload
     * names it with the Gateway's namespace; the default service account is
     * the Gateway's name */
    const model_out_workload_t *h = wl(s, &V1, "NetworkGateway/n2/ew.example.com/0");
    ck_assert_ptr_nonnull(h);
    ck_assert_uint_eq(h->naddrs, 0);
    ck_assert_str_eq(h->hostname, "ew.example.com");
    ck_assert_str_eq(h->service_account, "eastwest");
    ck_assert_str_eq(h->ns, "istio-system");
    const model_out_workload_t *sh = wl(
        s, &V1,
        "n2/SplitHorizonWorkload/istio-system/eastwest/ew.example.com/ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(sh);
    ck_assert_str_eq(sh->gateway->hostname, "ew.example.com");
    ck_assert_str_eq(sh->gateway->ns, "istio-system");
    ck_assert_uint_eq(sh->gateway->ip.len, 0);
    ck_assert_uint_eq(sh->tunnel, MODEL_TUNNEL_HBONE);
    ck_assert_str_eq(sh->trust_domain, "example.org");
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(podless_endpoints_become_slice_workloads)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c3", "n1", NULL);
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "ext", "10.96.0.9", NULL, 443));
    model_endpointslice_t *s = mk_slice("ns", "ext-1", "ext", "172.18.0", 2, (bool[]){true, false});
    free(s->endpoints[0].pod);
    free(s->endpoints[1].pod);
    s->endpoints[0].pod = s->endpoints[1].pod = NULL;
    s->ports[0].port = 6443;
    apply(m, "c1", MODEL_KIND_ENDPOINTSLICE, s);
    model_snapshot_t *s1 = model_commit(m);
    const char *uid = "c1/discovery.k8s.io/EndpointSlice/ns/ext-1/172.18.0.1";
    const model_out_workload_t *w = wl(s1, &V1, uid);
    ck_assert_ptr_nonnull(w);
    ck_assert_str_eq(w->name, "ext-1");
    ck_assert_str_eq(w->ns, "ns");
    ck_assert_str_eq(w->cluster_id, "c1");
    ck_assert(w->host_network);
    ck_assert_uint_eq(w->tunnel, MODEL_TUNNEL_NONE);
    ck_assert_uint_eq(w->workload_type, 0);
    ck_assert_ptr_null(w->service_account);
    ck_assert(w->healthy);
    ck_assert_uint_eq(w->nservices, 1);
    ck_assert_str_eq(w->services[0].key, "ns/ext.ns.svc.cluster.local");
    ck_assert_uint_eq(w->services[0].ports[0].service_port, 443);
    ck_assert_uint_eq(w->services[0].ports[0].target_port, 6443);
    ck_assert(!wl(s1, &V1, "c1/discovery.k8s.io/EndpointSlice/ns/ext-1/172.18.0.2")->healthy);
    /* LOCAL: the other cluster of the network does not get it */
    ck_assert_ptr_null(wl(s1, &(model_view_t){"c3", "n1"}, uid));
    /* the slice goes: so do its workloads */
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(model_apply(m, "c1", MODEL_KIND_ENDPOINTSLICE, MODEL_OP_DELETE,
                                 mk_slice("ns", "ext-1", "ext", "172.18.0", 0, NULL), err,
                                 sizeof(err)),
                     0);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(wl(s2, &V1, uid));
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(capacity_counts_ready_endpoints_only)
{
    model_t *m = mesh();
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 3);
    const bool ready[] = {true, false, false};
    apply(m, "c2", MODEL_KIND_ENDPOINTSLICE, mk_slice("ns", "a-abc", "a", "10.2.0", 3, ready));
    model_snapshot_t *s = model_commit(m);
    const char *uid = SH("n2", "192.0.2.2", "ns", "a.ns.svc.cluster.local");
    ck_assert_uint_eq(wl(s, &V1, uid)->gateway->capacity, 1);
    const bool none[] = {false, false, false};
    apply(m, "c2", MODEL_KIND_ENDPOINTSLICE, mk_slice("ns", "a-abc", "a", "10.2.0", 3, none));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(wl(s2, &V1, uid)); /* nothing healthy there: no route */
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(local_service_of_other_cluster_invisible)
{
    model_t *m = mesh();
    add_service(m, "c2", "ns", "private", "10.97.0.9", NULL, "10.2.9", 2);
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, "ns/private.ns.svc.cluster.local"));
    ck_assert_ptr_null(wl(s, &V1, "c2//Pod/ns/private-0"));
    ck_assert_ptr_null(wl(s, &V1, SH("n2", "192.0.2.2", "ns", "private.ns.svc.cluster.local")));
    ck_assert_ptr_nonnull(svc(s, &V2, "ns/private.ns.svc.cluster.local"));
    ck_assert_ptr_nonnull(wl(s, &V2, "c2//Pod/ns/private-0"));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(same_network_peer_sees_pods_directly)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c3", "n1", NULL);
    add_service(m, "c3", "ns", "a", "10.98.0.1", GLOBAL, "10.3.0", 2);
    add_service(m, "c3", "ns", "b", "10.98.0.2", NULL, "10.3.1", 1);
    model_snapshot_t *s = model_commit(m);
    const model_view_t v1 = {"c1", "n1"};
    const model_out_workload_t *w = wl(s, &v1, "c3//Pod/ns/a-0");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->naddrs, 1);
    ck_assert_uint_eq(w->nservices, 1);
    /* a pod behind a LOCAL service only is still reachable by its network
     * (ztunnel can use mTLS to it), without that service */
    w = wl(s, &v1, "c3//Pod/ns/b-0");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->nservices, 0);
    ck_assert_uint_eq(wl(s, &(model_view_t){"c3", "n1"}, "c3//Pod/ns/b-0")->nservices, 1);
    ck_assert_ptr_null(wl(s, &v1, SH("n1", "192.0.2.1", "ns", "a.ns.svc.cluster.local")));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(conflicting_ports_oldest_definition_wins)
{
    model_t *m = mesh();
    model_service_t *a1 = new_svc("ns", "a", "10.96.0.1", GLOBAL, 80);
    model_service_t *a2 = new_svc("ns", "a", "10.97.0.1", GLOBAL, 9090);
    a1->created = 2000;
    a2->created = 1000;
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c2", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c1", MODEL_KIND_SERVICE, a1);
    apply(m, "c2", MODEL_KIND_SERVICE, a2);
    model_snapshot_t *s = model_commit(m);
    const model_out_service_t *o = svc(s, &V1, "ns/a.ns.svc.cluster.local");
    ck_assert_uint_eq(o->ports[0].service_port, 9090);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(cluster_removal_drops_its_contribution)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 1);
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 2);
    model_snapshot_t *s1 = model_commit(m);
    ck_assert_int_eq(model_cluster_remove(m, "c2"), 0);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(wl(s2, &V1, SH("n2", "192.0.2.2", "ns", "a.ns.svc.cluster.local")));
    ck_assert_ptr_null(wl(s2, &V1, "NetworkGateway/n2/192.0.2.2/0"));
    ck_assert_uint_eq(svc(s2, &V1, "ns/a.ns.svc.cluster.local")->naddrs, 1);
    ck_assert_ptr_null(wl(s2, &V2, "c2//Pod/ns/a-0"));
    /* the old snapshot is untouched */
    ck_assert_ptr_nonnull(wl(s1, &V1, SH("n2", "192.0.2.2", "ns", "a.ns.svc.cluster.local")));
    ck_assert_int_eq(model_cluster_remove(m, "c2"), -1);
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(service_port_change_rebuilds_pod_workloads)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", NULL, "10.1.0", 1);
    model_snapshot_t *s1 = model_commit(m);
    ck_assert_uint_eq(wl(s1, &V1, "c1//Pod/ns/a-0")->services[0].ports[0].service_port, 80);
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "a", "10.96.0.1", NULL, 9090));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_uint_eq(wl(s2, &V1, "c1//Pod/ns/a-0")->services[0].ports[0].service_port, 9090);
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(cluster_removal_drops_its_view_everywhere)
{
    model_t *m = mesh();
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 1);
    model_snapshot_t *s1 = model_commit(m);
    ck_assert_ptr_nonnull(model_snapshot_get_endpoints(s1, &V1, "ns/a.ns.svc.cluster.local"));
    ck_assert_int_eq(model_cluster_remove(m, "c1"), 0);
    model_snapshot_t *s2 = model_commit(m);
    /* c1 is gone: no variant is kept for it as a viewer */
    ck_assert_ptr_null(model_snapshot_get_endpoints(s2, &V1, "ns/a.ns.svc.cluster.local"));
    ck_assert_ptr_nonnull(model_snapshot_get_endpoints(s2, &V2, "ns/a.ns.svc.cluster.local"));
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(cluster_removal_drops_split_horizon_through_its_gateway)
{
    model_t *m = mesh();
    add_service(m, "c1", "ns", "a", "10.96.0.1", GLOBAL, "10.1.0", 1);
    add_cluster(m, "c1", "n2", NULL); /* c1 joins n2, whose gateway is c2's */
    add_cluster(m, "c3", "n3", NULL);
    model_snapshot_t *s1 = model_commit(m);
    const model_view_t v3 = {"c3", "n3"};
    const char *uid = SH("n2", "192.0.2.2", "ns", "a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(wl(s1, &v3, uid));
    ck_assert_int_eq(model_cluster_remove(m, "c2"), 0);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(wl(s2, &v3, uid)); /* n2 has no gateway any more */
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(traffic_distribution_sets_failover)
{
    model_t *m = mesh();
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    model_service_t *a = new_svc("ns", "a", "10.96.0.1", GLOBAL, 80);
    a->traffic_dist = MODEL_TD_PREFER_CLOSE;
    apply(m, "c1", MODEL_KIND_SERVICE, a);
    model_service_t *b = new_svc("ns", "b", "10.96.0.2", GLOBAL, 80);
    b->traffic_dist = MODEL_TD_PREFER_SAME_NODE;
    apply(m, "c1", MODEL_KIND_SERVICE, b);
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "c", "10.96.0.3", GLOBAL, 80));
    model_snapshot_t *s = model_commit(m);
    /* istiod's presets: NETWORK, REGION, ZONE (then SUBZONE, NODE) */
    const model_out_service_t *o = svc(s, &V2, "ns/a.ns.svc.cluster.local");
    ck_assert_int_eq(o->lb_mode, MODEL_LB_FAILOVER);
    ck_assert_uint_eq(o->nlb_prefs, 3);
    ck_assert_int_eq(o->lb_prefs[0], MODEL_LB_SCOPE_NETWORK);
    ck_assert_int_eq(o->lb_prefs[1], MODEL_LB_SCOPE_REGION);
    ck_assert_int_eq(o->lb_prefs[2], MODEL_LB_SCOPE_ZONE);
    o = svc(s, &V2, "ns/b.ns.svc.cluster.local");
    ck_assert_uint_eq(o->nlb_prefs, 5);
    ck_assert_int_eq(o->lb_prefs[3], MODEL_LB_SCOPE_SUBZONE);
    ck_assert_int_eq(o->lb_prefs[4], MODEL_LB_SCOPE_NODE);
    o = svc(s, &V2, "ns/c.ns.svc.cluster.local");
    ck_assert_int_eq(o->lb_mode, MODEL_LB_UNSPECIFIED);
    ck_assert_uint_eq(o->nlb_prefs, 0);
    ck_assert(!o->lb_allow_all);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(traffic_policy_namespace_and_opt_in_cluster)
{
    model_config_t cfg = {.prefer_cluster = true};
    model_t *m = model_new(&cfg);
    add_cluster(m, "c1", "n1", NULL);
    model_namespace_t *ns = new_ns("ns", NULL);
    ns->traffic_dist = MODEL_TD_PREFER_CLOSE;
    apply(m, "c1", MODEL_KIND_NAMESPACE, ns);
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "inherits", "10.96.0.1", NULL, 80));
    model_service_t *any = new_svc("ns", "any", "10.96.0.2", NULL, 80);
    any->traffic_dist = MODEL_TD_ANY; /* an annotation istiod does not know */
    apply(m, "c1", MODEL_KIND_SERVICE, any);
    model_service_t *local = new_svc("ns", "local", "10.96.0.3", NULL, 80);
    local->itp_local = true;
    local->traffic_dist = MODEL_TD_PREFER_SAME_NODE;
    local->publish_not_ready = true;
    local->ip_families = MODEL_IPF_DUAL;
    apply(m, "c1", MODEL_KIND_SERVICE, local);
    model_snapshot_t *s = model_commit(m);
    const model_out_service_t *o = svc(s, &V1, "ns/inherits.ns.svc.cluster.local");
    ck_assert_uint_eq(o->nlb_prefs, 4); /* CLUSTER after NETWORK: opted in */
    ck_assert_int_eq(o->lb_prefs[1], MODEL_LB_SCOPE_CLUSTER);
    ck_assert_uint_eq(svc(s, &V1, "ns/any.ns.svc.cluster.local")->nlb_prefs, 0);
    o = svc(s, &V1, "ns/local.ns.svc.cluster.local");
    ck_assert_int_eq(o->lb_mode, MODEL_LB_STRICT); /* internalTrafficPolicy Local wins */
    ck_assert_uint_eq(o->nlb_prefs, 1);
    ck_assert_int_eq(o->lb_prefs[0], MODEL_LB_SCOPE_NODE);
    ck_assert(o->lb_allow_all);
    ck_assert_int_eq(o->ip_families, MODEL_IPF_DUAL);
    /* the namespace's annotation changes: its services follow */
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_uint_eq(svc(s2, &V1, "ns/inherits.ns.svc.cluster.local")->nlb_prefs, 0);
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(pod_tunnel_network_mode_and_phase_as_istiod)
{
    model_t *m = mesh();
    model_pod_t *sidecar = new_pod("ns", "sidecar", "10.1.0.1", NULL, NULL);
    sidecar->ambient = false;
    apply(m, "c1", MODEL_KIND_POD, sidecar);
    model_pod_t *native = new_pod("ns", "native", "10.1.0.2", NULL, NULL);
    native->ambient = false;
    model_labels_set(&native->labels, "networking.istio.io/tunnel", "h2,http");
    apply(m, "c1", MODEL_KIND_POD, native);
    model_pod_t *host = new_pod("ns", "host", "10.0.0.5", NULL, NULL);
    host->ambient = false;
    host->host_network = true;
    apply(m, "c1", MODEL_KIND_POD, host);
    model_pod_t *done = new_pod("ns", "done", "10.1.0.3", NULL, NULL);
    done->terminal = true;
    apply(m, "c1", MODEL_KIND_POD, done);
    model_pod_t *going = new_pod("ns", "going", "10.1.0.4", NULL, NULL);
    going->terminating = true;
    apply(m, "c1", MODEL_KIND_POD, going);
    model_snapshot_t *s = model_commit(m);
    ck_assert_uint_eq(wl(s, &V1, "c1//Pod/ns/sidecar")->tunnel, MODEL_TUNNEL_NONE);
    const model_out_workload_t *w = wl(s, &V1, "c1//Pod/ns/native");
    ck_assert_uint_eq(w->tunnel, MODEL_TUNNEL_HBONE);
    ck_assert(w->native_tunnel);
    w = wl(s, &V1, "c1//Pod/ns/host");
    ck_assert(w->host_network);
    ck_assert_uint_eq(w->tunnel, MODEL_TUNNEL_NONE);
    ck_assert_ptr_null(wl(s, &V1, "c1//Pod/ns/done")); /* Succeeded or Failed: gone */
    w = wl(s, &V1, "c1//Pod/ns/going");
    ck_assert(!w->healthy); /* terminating pods stay, unhealthy */
    ck_assert_uint_eq(w->tunnel, MODEL_TUNNEL_HBONE);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(scope_needs_the_namespace_and_external_name_is_out)
{
    model_t *m = mesh();
    /* no Namespace object: no rule can match, as in istiod */
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("orphan", "a", "10.96.0.1", GLOBAL, 80));
    model_service_t *ext = new_svc("ns", "ext", NULL, GLOBAL, 80);
    ext->external_name = true;
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c1", MODEL_KIND_SERVICE, ext);
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_nonnull(svc(s, &V1, "orphan/a.orphan.svc.cluster.local"));
    ck_assert_ptr_null(svc(s, &V2, "orphan/a.orphan.svc.cluster.local"));
    ck_assert_ptr_null(svc(s, &V1, "ns/ext.ns.svc.cluster.local"));
    /* the namespace arrives: the service becomes global */
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("orphan", NULL));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_nonnull(svc(s2, &V2, "orphan/a.orphan.svc.cluster.local"));
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(endpoints_prefer_local_priorities)
{
    model_t *m = mesh();
    add_cluster(m, "c3", "n1", NULL);
    model_service_t *a = new_svc("ns", "a", "10.96.0.1", GLOBAL, 80);
    a->traffic_dist = MODEL_TD_PREFER_CLOSE;
    apply(m, "c1", MODEL_KIND_SERVICE, a);
    apply(m, "c1", MODEL_KIND_ENDPOINTSLICE, mk_slice("ns", "a-abc", "a", "10.1.0", 2, NULL));
    add_service(m, "c2", "ns", "a", "10.97.0.1", GLOBAL, "10.2.0", 3);
    add_service(m, "c3", "ns", "a", "10.98.0.1", GLOBAL, "10.3.0", 1);
    add_service(m, "c1", "ns", "b", "10.96.0.2", NULL, "10.1.1", 1);
    model_snapshot_t *s = model_commit(m);
    const model_res_t *r = model_snapshot_get_endpoints(s, &V1, "ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(r);
    const model_out_endpoints_t *e = model_res_endpoints(r);
    ck_assert(e->global && e->prefer_local);
    ck_assert_uint_eq(e->neps, 4); /* 2 own, 1 in c3 (same network), 1 gateway for n2 */
    int p0 = 0, gw = 0;
    for (size_t i = 0; i < e->neps; i++) {
        p0 += e->eps[i].priority == 0;
        if (e->eps[i].via_gateway) {
            gw++;
            ck_assert_uint_eq(e->eps[i].weight, 3);
            ck_assert_uint_eq(e->eps[i].ports[0], 15008);
            ck_assert_str_eq(e->eps[i].loc->network, "n2");
        } else {
            ck_assert_uint_eq(e->eps[i].ports[0], 8080);
            ck_assert_uint_eq(e->eps[i].priority, strcmp(e->eps[i].loc->cluster, "c1") != 0);
        }
    }
    ck_assert_int_eq(p0, 2);
    ck_assert_int_eq(gw, 1);
    /* a local service: its own cluster only, and nobody else sees it */
    e = model_res_endpoints(model_snapshot_get_endpoints(s, &V1, "ns/b.ns.svc.cluster.local"));
    ck_assert_uint_eq(e->neps, 1);
    ck_assert(!e->global);
    ck_assert_ptr_null(model_snapshot_get_endpoints(s, &V2, "ns/b.ns.svc.cluster.local"));
    /* Address lookups never return the endpoints family */
    ck_assert_int_ne(model_res_kind(model_snapshot_get(s, &V1, "ns/a.ns.svc.cluster.local")),
                     MODEL_RES_ENDPOINTS);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* Pods s<k>-<i> of services s0..s2 in c1, each with its own service
 * account and node named after round r. */
static void shared_strings_round(model_t *m, int r, model_op_t op)
{
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 200; i++) {
            char name[32], ip[32], node[32];
            snprintf(name, sizeof(name), "s%d-%d", k, i);
            snprintf(ip, sizeof(ip), "10.1.%d.%d", k, i + 1);
            snprintf(node, sizeof(node), "node-%d-%d-%d", r, k, i);
            model_pod_t *p = new_pod("ns", name, ip, node, NULL);
            free(p->service_account);
            p->service_account = strdup(node + 2); /* "de-<r>-<k>-<i>" */
            char err[MODEL_ERRLEN];
            ck_assert_int_eq(model_apply(m, "c1", MODEL_KIND_POD, op, p, err, sizeof(err)), 0);
        }
    }
}

START_TEST(shared_strings_outlive_sweeps_while_held)
{
    model_t *m = mesh();
    for (int k = 0; k < 3; k++) {
        char name[16], base[16];
        snprintf(name, sizeof(name), "s%d", k);
        snprintf(base, sizeof(base), "10.1.%d", k);
        add_service(m, "c1", "ns", name, NULL, NULL, base, 200);
    }
    shared_strings_round(m, 0, MODEL_OP_UPSERT);
    model_snapshot_t *held = model_commit(m);
    const model_out_workload_t *w = wl(held, &V1, "c1//Pod/ns/s2-199");
    ck_assert_ptr_nonnull(w);
    ck_assert_str_eq(w->node, "node-0-2-199");
    /* Rounds of new strings while the old ones are only held by 'held':
     * the commits sweep the shared table, which must spare them. */
    size_t most = 0;
    for (int r = 1; r < 8; r++) {
        shared_strings_round(m, r - 1, MODEL_OP_DELETE);
        shared_strings_round(m, r, MODEL_OP_UPSERT);
        model_snapshot_t *s = model_commit(m);
        const model_out_workload_t *x = wl(s, &V1, "c1//Pod/ns/s1-7");
        char want[32];
        snprintf(want, sizeof(want), "de-%d-1-7", r);
        ck_assert_str_eq(x->service_account, want);
        model_snapshot_unref(s);
        most = m->strs.map.n > most ? m->strs.map.n : most;
    }
    ck_assert_uint_lt(most, 7 * 1200); /* swept: not every round's strings stayed */
    ck_assert_str_eq(w->node, "node-0-2-199");
    ck_assert_str_eq(w->service_account, "de-0-2-199");
    model_snapshot_unref(held);
    model_free(m);
}
END_TEST

START_TEST(pod_keeps_labels_for_policy_selectors)
{
    model_t *m = mesh();
    model_pod_t *p = new_pod("ns", "p-7d9f8-x1", "10.1.0.1", NULL, NULL);
    const char *const kv[] = {
        "app",   "shop", "team", "payments", "version", "v2", "pod-template-hash",
        "7d9f8", "tier", "web",  NULL};
    set_labels(&p->labels, kv);
    p->owner = strdup("ReplicaSet/p-7d9f8"); /* as the decoder reads ownerReferences */
    apply(m, "c1", MODEL_KIND_POD, p);
    model_snapshot_t *s = model_commit(m);
    const model_out_workload_t *w = wl(s, &V1, "c1//Pod/ns/p-7d9f8-x1");
    ck_assert_str_eq(w->canonical_name, "shop");
    ck_assert_str_eq(w->canonical_revision, "v2");
    ck_assert_str_eq(w->workload_name, "p");
    const model_pod_t *kept = model_object(m, "c1", MODEL_KIND_POD, "ns/p-7d9f8-x1");
    /* AuthorizationPolicy and PeerAuthentication selectors may name any */
    ck_assert_uint_eq(kept->labels.n, 5);
    ck_assert_str_eq(model_labels_get(&kept->labels, "team"), "payments");
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* istiod's workload names (kube GetWorkloadMetaFromPod's cases). */
START_TEST(pod_workload_name_from_controller)
{
    static const struct {
        const char *pod, *owner, *label, *value, *want;
    } cases[] = {
        {"rs-xvnqd", "ReplicaSet/rs", NULL, NULL, "rs"},
        {"d-7d9f8-x1", "ReplicaSet/d-7d9f8", "pod-template-hash", "7d9f8", "d"},
        {"name-6dc78b855c-x7k2p", "ReplicaSet/name-6dc78b855c", "rollouts-pod-template-hash",
         "6dc78b855c", "name"},
        {"sec-1234567890-x7k2p", "Job/sec-1234567890", NULL, NULL, "sec"},
        {"min-12345678-x7k2p", "Job/min-12345678", NULL, NULL, "min"},
        {"job-123-x7k2p", "Job/job-123", NULL, NULL, "job-123"},
        {"deploy-rc-x7k2p", "ReplicationController/deploy-rc", "deploymentconfig", "deploy",
         "deploy"},
        {"dep-rc-x7k2p", "ReplicationController/dep-rc", NULL, NULL, "dep-rc"},
        {"sts-0", "StatefulSet/sts", NULL, NULL, "sts"},
        {"lone", NULL, "pod-template-hash", "x", "lone"}, /* no controller: its own name */
        {"p-1", "ReplicaSet/p", "service.istio.io/workload-name", "custom", "custom"},
    };
    model_t *m = mesh();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.1.0.%zu", i + 1);
        model_pod_t *p = new_pod("ns", cases[i].pod, ip, NULL, NULL);
        p->owner = cases[i].owner ? strdup(cases[i].owner) : NULL;
        if (cases[i].label)
            model_labels_set(&p->labels, cases[i].label, cases[i].value);
        apply(m, "c1", MODEL_KIND_POD, p);
    }
    model_snapshot_t *s = model_commit(m);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char uid[128];
        snprintf(uid, sizeof(uid), "c1//Pod/ns/%s", cases[i].pod);
        const model_out_workload_t *w = wl(s, &V1, uid);
        ck_assert_msg(w && strcmp(w->workload_name, cases[i].want) == 0, "%s: %s, want %s",
                      cases[i].pod, w ? w->workload_name : "(none)", cases[i].want);
        ck_assert_str_eq(w->canonical_name, cases[i].want); /* no app label */
    }
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(pod_locality_from_node)
{
    model_t *m = mesh();
    model_node_t *n = calloc(1, sizeof(*n));
    n->name = strdup("node1");
    const char *const kv[] = {"topology.kubernetes.io/region", "eu", "topology.kubernetes.io/zone",
                              "eu-1", NULL};
    set_labels(&n->labels, kv);
    apply(m, "c1", MODEL_KIND_NODE, n);
    apply(m, "c1", MODEL_KIND_POD, new_pod("ns", "p", "10.1.0.1", "node1", NULL));
    model_snapshot_t *s = model_commit(m);
    const model_out_workload_t *w = wl(s, &V1, "c1//Pod/ns/p");
    ck_assert_str_eq(w->region, "eu");
    ck_assert_str_eq(w->zone, "eu-1");
    ck_assert_ptr_null(w->subzone);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(unknown_cluster_rejected_and_object_freed)
{
    model_t *m = mesh();
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(model_apply(m, "nope", MODEL_KIND_POD, MODEL_OP_UPSERT,
                                 new_pod("ns", "p", "10.0.0.1", NULL, NULL), err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "nope"));
    model_cluster_t bad = {.id = "a/b"};
    ck_assert_int_eq(model_cluster_set(m, &bad, err, sizeof(err)), -1);
    model_free(m);
}
END_TEST

/* ---------- snapshots and deltas ---------- */

typedef struct delta {
    char names[4096][160];
    int n;
} delta_t;

static void record(const char *name, const model_res_t *a, const model_res_t *b, void *arg)
{
    (void)a;
    (void)b;
    delta_t *d = arg;
    if (d->n < 4096)
        snprintf(d->names[d->n++], 160, "%s", name);
}

START_TEST(one_endpoint_change_is_a_small_delta)
{
    model_t *m = mesh();
    for (int i = 0; i < 50; i++) {
        char name[32], base[32];
        snprintf(name, sizeof(name), "s%d", i);
        snprintf(base, sizeof(base), "10.2.%d", i);
        add_service(m, "c2", "ns", name, NULL, GLOBAL, base, 4);
    }
    model_snapshot_t *s1 = model_commit(m);
    const bool ready[] = {true, true, false, true};
    apply(m, "c2", MODEL_KIND_ENDPOINTSLICE, mk_slice("ns", "s7-abc", "s7", "10.2.7", 4, ready));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_uint_gt(model_snapshot_version(s2), model_snapshot_version(s1));
    delta_t *d = calloc(1, sizeof(*d));
    model_snapshot_diff(s1, s2, &V1, record, d);
    ck_assert_int_eq(d->n, 1); /* only the capacity of s7's split-horizon workload */
    ck_assert_str_eq(d->names[0], SH("n2", "192.0.2.2", "ns", "s7.ns.svc.cluster.local"));
    d->n = 0;
    model_snapshot_diff(s1, s2, &V2, record, d); /* c2's own pods did not change */
    ck_assert_int_eq(d->n, 0);
    model_snapshot_t *s3 = model_commit(m); /* nothing pending */
    ck_assert_uint_eq(model_snapshot_version(s3), model_snapshot_version(s2));
    free(d);
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_free(m);
}
END_TEST

/* Full view contents as sorted "name=version" lines. */
typedef struct view_dump {
    char **lines;
    size_t n, cap;
} view_dump_t;

static void dump_one(const model_res_t *r, void *arg)
{
    view_dump_t *d = arg;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->lines = realloc(d->lines, d->cap * sizeof(char *));
    }
    char buf[512];
    snprintf(buf, sizeof(buf), "%s=%p", model_res_name(r), (const void *)r);
    d->lines[d->n++] = strdup(buf);
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void dump(const model_snapshot_t *s, const model_view_t *v, view_dump_t *d)
{
    memset(d, 0, sizeof(*d));
    if (s)
        model_snapshot_each(s, v, dump_one, d);
    if (d->n > 1)
        qsort(d->lines, d->n, sizeof(char *), cmpstr);
}

static void dump_free(view_dump_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->lines[i]);
    free(d->lines);
}

typedef struct applied {
    view_dump_t *state;
} applied_t;

static void apply_delta(const char *name, const model_res_t *a, const model_res_t *b, void *arg)
{
    view_dump_t *st = arg;
    size_t nl = strlen(name);
    for (size_t i = 0; i < st->n; i++) {
        if (strncmp(st->lines[i], name, nl) == 0 && st->lines[i][nl] == '=') {
            ck_assert_ptr_nonnull(a);
            free(st->lines[i]);
            st->lines[i] = st->lines[--st->n];
            break;
        }
    }
    if (b)
        dump_one(b, st);
}

/* Events may name a cluster that a previous event removed: then they fail
 * cleanly, which is part of what this exercises. */
static void try_apply(model_t *m, const char *cluster, model_kind_t k, model_op_t op, void *obj)
{
    char err[MODEL_ERRLEN];
    (void)model_apply(m, cluster, k, op, obj, err, sizeof(err));
}

static void random_event(model_t *m, unsigned *seed)
{
    static const char *const clusters[] = {"c1", "c2", "c3"};
    const char *c = clusters[rand_r(seed) % 3];
    char name[16], base[32], pod[32], ip[32];
    int si = rand_r(seed) % 6;
    snprintf(name, sizeof(name), "s%d", si);
    switch (rand_r(seed) % 7) {
    case 0:
        try_apply(m, c, MODEL_KIND_SERVICE, MODEL_OP_UPSERT,
                  new_svc("ns", name, "10.96.0.1", rand_r(seed) % 2 ? GLOBAL : NULL,
                          (uint16_t)(80 + rand_r(seed) % 2)));
        break;
    case 1: {
        int n = rand_r(seed) % 4;
        bool ready[4];
        for (int i = 0; i < 4; i++)
            ready[i] = rand_r(seed) % 3 != 0;
        snprintf(base, sizeof(base), "10.%d.%d", c[1] - '0', si);
        char slice[32];
        snprintf(slice, sizeof(slice), "%s-abc", name);
        model_endpointslice_t *s = mk_slice("ns", slice, name, base, n, ready);
        if (n && rand_r(seed) % 3 == 0) { /* an endpoint no Pod stands behind */
            free(s->endpoints[0].pod);
            s->endpoints[0].pod = NULL;
        }
        try_apply(m, c, MODEL_KIND_ENDPOINTSLICE, MODEL_OP_UPSERT, s);
        break;
    }
    case 2: {
        int i = rand_r(seed) % 4;
        snprintf(pod, sizeof(pod), "%s-%d", name, i);
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", c[1] - '0', si, i + 1);
        model_pod_t *p = new_pod("ns", pod, ip, NULL, NULL);
        p->ready = rand_r(seed) % 2;
        try_apply(m, c, MODEL_KIND_POD, MODEL_OP_UPSERT, p);
        break;
    }
    case 3:
        snprintf(pod, sizeof(pod), "%s-%d", name, rand_r(seed) % 4);
        try_apply(m, c, MODEL_KIND_POD, MODEL_OP_DELETE,
                  new_pod("ns", pod, "10.0.0.1", NULL, NULL));
        break;
    case 4:
        try_apply(m, c, MODEL_KIND_SERVICE, MODEL_OP_DELETE, new_svc("ns", name, NULL, NULL, 80));
        break;
    case 5: {
        const char *const kv[] = {"istio.io/global", "true", NULL};
        model_namespace_t *ns = new_ns("ns", rand_r(seed) % 2 ? kv : NULL);
        try_apply(m, c, MODEL_KIND_NAMESPACE, MODEL_OP_UPSERT, ns);
        break;
    }
    case 6: {
        static const char *const nets[] = {"n1", "n2"};
        if (rand_r(seed) % 8 == 0) {
            if (model_cluster_remove(m, c) == 0)
                break;
        }
        add_cluster(m, c, nets[rand_r(seed) % 2], rand_r(seed) % 2 ? "192.0.2.9" : NULL);
        break;
    }
    }
}

static model_t *random_mesh(void)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c2", "n2", "192.0.2.2");
    add_cluster(m, "c3", "n1", NULL);
    return m;
}

/* The same events, applied in one batch to a fresh model. */
static model_t *replay(int steps)
{
    unsigned seed = 42;
    model_t *m = random_mesh();
    for (int step = 0; step < steps; step++) {
        int burst = 1 + rand_r(&seed) % 5;
        for (int i = 0; i < burst; i++)
            random_event(m, &seed);
    }
    return m;
}

typedef struct cmp_ctx {
    const model_snapshot_t *other;
    const model_view_t *view;
    size_t n;
    bool endpoints;
} cmp_ctx_t;

static void cmp_one(const model_res_t *r, void *arg)
{
    cmp_ctx_t *c = arg;
    const model_res_t *o = c->endpoints
                               ? model_snapshot_get_endpoints(c->other, c->view, model_res_name(r))
                               : model_snapshot_get(c->other, c->view, model_res_name(r));
    ck_assert_msg(o && model_res_equal(r, o), "%s differs from a fresh build", model_res_name(r));
    c->n++;
}

static size_t count_view(const model_snapshot_t *s, const model_view_t *v)
{
    view_dump_t d;
    dump(s, v, &d);
    size_t n = d.n;
    dump_free(&d);
    return n;
}

START_TEST(delta_chain_equals_fresh_build)
{
    unsigned seed = 42;
    model_t *m = random_mesh();
    static const model_view_t views[] = {{"c1", "n1"}, {"c2", "n2"}, {"c3", "n1"}, {"c4", "n9"}};
    view_dump_t state[4], estate[4];
    for (int v = 0; v < 4; v++) {
        memset(&state[v], 0, sizeof(state[v]));
        memset(&estate[v], 0, sizeof(estate[v]));
    }
    model_snapshot_t *prev = NULL;
    for (int step = 0; step < 400; step++) {
        int burst = 1 + rand_r(&seed) % 5;
        for (int i = 0; i < burst; i++)
            random_event(m, &seed);
        model_snapshot_t *s = model_commit(m);
        for (int v = 0; v < 4; v++) {
            model_snapshot_diff(prev, s, &views[v], apply_delta, &state[v]);
            if (state[v].n > 1)
                qsort(state[v].lines, state[v].n, sizeof(char *), cmpstr);
            view_dump_t full;
            dump(s, &views[v], &full);
            ck_assert_uint_eq(state[v].n, full.n);
            for (size_t i = 0; i < full.n; i++)
                ck_assert_str_eq(state[v].lines[i], full.lines[i]);
            dump_free(&full);
            model_snapshot_diff_endpoints(prev, s, &views[v], apply_delta, &estate[v]);
            view_dump_t efull = {0};
            model_snapshot_each_endpoints(s, &views[v], dump_one, &efull);
            ck_assert_uint_eq(estate[v].n, efull.n);
            dump_free(&efull);
        }
        if (step % 40 == 39) {
            /* incremental = from scratch: no dirty mark was missed */
            model_t *fresh = replay(step + 1);
            model_snapshot_t *f = model_commit(fresh);
            for (int v = 0; v < 4; v++) {
                cmp_ctx_t c = {f, &views[v], 0, false};
                model_snapshot_each(s, &views[v], cmp_one, &c);
                ck_assert_uint_eq(c.n, count_view(f, &views[v]));
                cmp_ctx_t e = {f, &views[v], 0, true};
                model_snapshot_each_endpoints(s, &views[v], cmp_one, &e);
            }
            model_snapshot_unref(f);
            model_free(fresh);
        }
        model_snapshot_unref(prev);
        prev = s;
    }
    for (int v = 0; v < 4; v++) {
        dump_free(&state[v]);
        dump_free(&estate[v]);
    }
    model_snapshot_unref(prev);
    model_free(m);
}
END_TEST

/* A global service in more clusters than derive.c once had room for (64):
 * every cluster's pod and VIP are in, and every cluster gets its view. */
#define MANY_CLUSTERS 70

START_TEST(global_service_in_more_than_64_clusters_keeps_every_cluster)
{
    model_t *m = model_new(NULL);
    char id[16], ipbase[32], vip[32], ip[64];
    for (int i = 0; i < MANY_CLUSTERS; i++) {
        snprintf(id, sizeof(id), "c%03d", i);
        snprintf(ipbase, sizeof(ipbase), "10.%d.0", i);
        snprintf(vip, sizeof(vip), "10.96.%d.1", i);
        add_cluster(m, id, "n1", i == 0 ? "192.0.2.1" : NULL);
        add_service(m, id, "ns", "a", vip, GLOBAL, ipbase, 1);
    }
    add_cluster(m, "remote", "n2", "192.0.2.2");
    model_snapshot_t *s = model_commit(m);
    const model_view_t remote = {"remote", "n2"};
    const model_out_service_t *o = svc(s, &remote, "ns/a.ns.svc.cluster.local");
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(o->naddrs, MANY_CLUSTERS);
    /* the other network reaches all of them through one gateway */
    const model_out_workload_t *w =
        wl(s, &remote, SH("n1", "192.0.2.1", "ns", "a.ns.svc.cluster.local"));
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->gateway->capacity, MANY_CLUSTERS);
    for (int i = 0; i < MANY_CLUSTERS; i++) {
        snprintf(id, sizeof(id), "c%03d", i);
        const model_view_t v = {id, "n1"};
        ck_assert_uint_eq(svc(s, &v, "ns/a.ns.svc.cluster.local")->naddrs, MANY_CLUSTERS);
        const model_res_t *r = model_snapshot_get_endpoints(s, &v, "ns/a.ns.svc.cluster.local");
        ck_assert_msg(r != NULL, "%s has no endpoints", id);
        const model_out_endpoints_t *e = model_res_endpoints(r);
        ck_assert_uint_eq(e->neps, MANY_CLUSTERS);
        /* each cluster's pod, directly: one network */
        for (int j = 0; j < MANY_CLUSTERS; j++) {
            char want[16], cid[16];
            snprintf(want, sizeof(want), "10.%d.0.1", j);
            snprintf(cid, sizeof(cid), "c%03d", j);
            size_t k = 0;
            while (k < e->neps && strcmp(e->eps[k].loc->cluster, cid) != 0)
                k++;
            ck_assert_msg(k < e->neps, "%s: no endpoint of %s", id, cid);
            ck_assert(!e->eps[k].via_gateway);
            ck_assert_str_eq(model_ip_format(&e->eps[k].ip, ip, sizeof(ip)), want);
        }
        snprintf(ip, sizeof(ip), "%s//Pod/ns/a-0", id);
        ck_assert_ptr_nonnull(wl(s, &v, ip));
    }
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* A pod behind more services than derive.c once had room for lists them all. */
START_TEST(pod_in_more_than_64_services_lists_them_all)
{
    model_t *m = mesh();
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c1", MODEL_KIND_POD, new_pod("ns", "p", "10.1.0.1", NULL, NULL));
    for (int i = 0; i < MANY_CLUSTERS; i++) {
        char name[16], slice[32];
        snprintf(name, sizeof(name), "s%d", i);
        snprintf(slice, sizeof(slice), "s%d-abc", i);
        apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", name, NULL, GLOBAL, 80));
        model_endpointslice_t *sl = mk_slice("ns", slice, name, "10.1.0", 1, NULL);
        free(sl->endpoints[0].pod);
        sl->endpoints[0].pod = strdup("p");
        apply(m, "c1", MODEL_KIND_ENDPOINTSLICE, sl);
    }
    model_snapshot_t *s = model_commit(m);
    const model_out_workload_t *w = wl(s, &V1, "c1//Pod/ns/p");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->nservices, MANY_CLUSTERS);
    for (int i = 0; i < MANY_CLUSTERS; i++) {
        char key[64];
        snprintf(key, sizeof(key), "ns/s%d.ns.svc.cluster.local", i);
        size_t k = 0;
        while (k < w->nservices && strcmp(w->services[k].key, key) != 0)
            k++;
        ck_assert_msg(k < w->nservices, "%s missing", key);
    }
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model");
    TCase *t = tcase_create("model");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, default_rule_global_label);
    tcase_add_test(t, scope_and_within_rule_or_across_rules);
    tcase_add_test(t, scope_local_rule_does_not_override_global);
    tcase_add_test(t, scope_empty_rules_make_everything_local);
    tcase_add_test(t, namespace_label_flips_scope);
    tcase_add_test(t, global_service_merges_vips_across_clusters);
    tcase_add_test(t, remote_network_reached_through_gateway_with_capacity);
    tcase_add_test(t, capacity_counts_ready_endpoints_only);
    tcase_add_test(t, local_service_of_other_cluster_invisible);
    tcase_add_test(t, same_network_peer_sees_pods_directly);
    tcase_add_test(t, conflicting_ports_oldest_definition_wins);
    tcase_add_test(t, cluster_removal_drops_its_contribution);
    tcase_add_test(t, service_port_change_rebuilds_pod_workloads);
    tcase_add_test(t, cluster_removal_drops_its_view_everywhere);
    tcase_add_test(t, cluster_removal_drops_split_horizon_through_its_gateway);
    tcase_add_test(t, traffic_distribution_sets_failover);
    tcase_add_test(t, endpoints_prefer_local_priorities);
    tcase_add_test(t, pod_keeps_labels_for_policy_selectors);
    tcase_add_test(t, shared_strings_outlive_sweeps_while_held);
    tcase_add_test(t, pod_locality_from_node);
    tcase_add_test(t, unknown_cluster_rejected_and_object_freed);
    tcase_add_test(t, one_endpoint_change_is_a_small_delta);
    tcase_add_test(t, delta_chain_equals_fresh_build);
    tcase_add_test(t, service_sans_name_other_networks_pods);
    tcase_add_test(t, service_sans_follow_service_account_changes_only);
    tcase_add_test(t, network_gateway_workload_as_istiod_builds_it);
    tcase_add_test(t, traffic_policy_namespace_and_opt_in_cluster);
    tcase_add_test(t, pod_tunnel_network_mode_and_phase_as_istiod);
    tcase_add_test(t, scope_needs_the_namespace_and_external_name_is_out);
    tcase_add_test(t, podless_endpoints_become_slice_workloads);
    tcase_add_test(t, pod_workload_name_from_controller);
    tcase_add_test(t, global_service_in_more_than_64_clusters_keeps_every_cluster);
    tcase_add_test(t, pod_in_more_than_64_services_lists_them_all);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
