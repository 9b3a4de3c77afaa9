/*
 * test_waypoint.c - istio.io/use-waypoint on Namespaces, Services and Pods
 * gives Service.waypoint and Workload.waypoint as istiod does (waypoint.c,
 * derive.c), and a global service's clusters that disagree are reported.
 */
#include "model.h"
#include "testcheck.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USE "istio.io/use-waypoint"
#define USE_NS "istio.io/use-waypoint-namespace"
#define SVC_A "ns/a.ns.svc.cluster.local"
#define POD_A "c1//Pod/ns/a-0"

static const model_view_t V1 = {"c1", "n1"}, V2 = {"c2", "n2"};

/* Gateway ns/name with address addr (an IP, or a hostname when it has a
 * letter; NULL: no address yet) and label istio.io/waypoint-for. */
static model_gateway_t *mk_gw(const char *ns, const char *name, const char *addr, model_wp_for_t wf)
{
    model_gateway_t *g = calloc(1, sizeof(*g));
    g->ns = strdup(ns);
    g->name = strdup(name);
    g->waypoint_for = wf;
    g->ready = addr != NULL;
    if (addr && model_ip_parse(addr, &g->ip) < 0)
        g->hostname = strdup(addr);
    return g;
}

static model_t *mesh(void)
{
    model_t *m = model_new(NULL);
    add_cluster(m, "c1", "n1", "192.0.2.1");
    add_cluster(m, "c2", "n2", "192.0.2.2");
    return m;
}

static const model_out_service_t *svc(const model_snapshot_t *s, const model_view_t *v,
                                      const char *key)
{
    const model_res_t *r = model_snapshot_get(s, v, key);
    ck_assert_ptr_nonnull(r);
    return model_res_service(r);
}

static const model_out_workload_t *wl(const model_snapshot_t *s, const model_view_t *v,
                                      const char *uid)
{
    const model_res_t *r = model_snapshot_get(s, v, uid);
    ck_assert_ptr_nonnull(r);
    return model_res_workload(r);
}

/* The waypoint of a Workload: its GW member when marked so. */
static const model_gw_addr_t *wl_wp(const model_out_workload_t *w)
{
    return w->gateway && w->gateway->waypoint ? w->gateway : NULL;
}

static void expect_ip(const model_gw_addr_t *g, const char *net, const char *ip)
{
    ck_assert_ptr_nonnull(g);
    model_ip_t want;
    ck_assert_int_eq(model_ip_parse(ip, &want), 0);
    ck_assert(model_ip_equal(&g->ip, &want));
    ck_assert_str_eq(g->network, net);
    ck_assert_ptr_null(g->hostname);
    ck_assert_uint_eq(g->hbone_port, 15008);
}

/* Namespace ns (labels nskv) in c1 with Service a (svckv) and its pod a-0
 * (podkv), and Gateways ns/wp (service) and ns/wl (workload). */
static model_t *setup(const char *const *nskv, const char *const *svckv, const char *const *podkv)
{
    model_t *m = mesh();
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", nskv));
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "a", "10.96.0.1", svckv, 80));
    apply(m, "c1", MODEL_KIND_POD, new_pod("ns", "a-0", "10.1.0.1", NULL, podkv));
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wp", "10.0.9.1", MODEL_WP_SERVICE));
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wl", "10.0.9.2", MODEL_WP_WORKLOAD));
    return m;
}

START_TEST(namespace_label_binds_its_services)
{
    static const char *const nskv[] = {USE, "wp", NULL};
    model_t *m = setup(nskv, NULL, NULL);
    model_snapshot_t *s = model_commit(m);
    const model_out_service_t *o = svc(s, &V1, SVC_A);
    expect_ip(o->waypoint, "n1", "10.0.9.1");
    ck_assert(!o->ingress_use_waypoint);
    /* a service-only waypoint: the pod has none */
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(service_label_overrides_namespace)
{
    static const char *const nskv[] = {USE, "other", NULL};
    static const char *const svckv[] = {USE, "wp", NULL};
    model_t *m = setup(nskv, svckv, NULL);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "other", "10.0.9.3", MODEL_WP_SERVICE));
    model_snapshot_t *s = model_commit(m);
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.1");
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(none_on_service_blocks_namespace)
{
    static const char *const nskv[] = {USE, "wp", NULL};
    static const char *const svckv[] = {USE, "none", NULL};
    model_t *m = setup(nskv, svckv, NULL);
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(use_waypoint_namespace_names_the_gateways_namespace)
{
    static const char *const svckv[] = {USE, "shared", USE_NS, "istio-waypoints", NULL};
    model_t *m = setup(NULL, svckv, NULL);
    model_gateway_t *shared = mk_gw("istio-waypoints", "shared", "wp.example.com", MODEL_WP_ALL);
    shared->from = MODEL_WP_FROM_ALL;
    apply(m, "c1", MODEL_KIND_GATEWAY, shared);
    model_snapshot_t *s = model_commit(m);
    const model_gw_addr_t *g = svc(s, &V1, SVC_A)->waypoint;
    ck_assert_ptr_nonnull(g);
    /* a hostname address: NamespacedHostname in the Gateway's namespace */
    ck_assert_str_eq(g->hostname, "wp.example.com");
    ck_assert_str_eq(g->ns, "istio-waypoints");
    ck_assert_uint_eq(g->hbone_port, 15008);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(hostname_wins_over_ip_and_ip_is_the_clusters_network)
{
    static const char *const svckv[] = {USE, "wp", NULL};
    model_t *m = setup(NULL, svckv, NULL);
    model_snapshot_t *s1 = model_commit(m);
    expect_ip(svc(s1, &V1, SVC_A)->waypoint, "n1", "10.0.9.1");
    model_gateway_t *g = mk_gw("ns", "wp", "wp.ns.example.com", MODEL_WP_SERVICE);
    ck_assert_int_eq(model_ip_parse("10.0.9.1", &g->ip), 0);
    apply(m, "c1", MODEL_KIND_GATEWAY, g);
    model_snapshot_t *s2 = model_commit(m);
    const model_gw_addr_t *w = svc(s2, &V1, SVC_A)->waypoint;
    ck_assert_ptr_nonnull(w);
    ck_assert_str_eq(w->hostname, "wp.ns.example.com");
    ck_assert_str_eq(w->ns, "ns");
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(waypoint_for_gates_services_and_workloads)
{
    /* the namespace binds wl (workload only): pods get it, services not */
    static const char *const nskv[] = {USE, "wl", NULL};
    model_t *m = setup(nskv, NULL, NULL);
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    const model_out_workload_t *w = wl(s, &V1, POD_A);
    expect_ip(wl_wp(w), "n1", "10.0.9.2");
    /* a waypoint is never the pod's network gateway */
    ck_assert(w->gateway->waypoint);
    model_snapshot_unref(s);
    /* all takes both; none and unknown values take neither */
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wl", "10.0.9.2", MODEL_WP_ALL));
    s = model_commit(m);
    ck_assert_ptr_nonnull(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_nonnull(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wl", "10.0.9.2", MODEL_WP_NONE));
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(service_waypoint_never_reaches_its_pods)
{
    static const char *const svckv[] = {USE, "wl", NULL};
    model_t *m = setup(NULL, svckv, NULL);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wl", "10.0.9.2", MODEL_WP_ALL));
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_nonnull(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(waypoint_service_and_instances_get_none)
{
    static const char *const nskv[] = {USE, "wl", NULL};
    static const char *const managed_kv[] = {"gateway.istio.io/managed", "istio.io-mesh-controller",
                                             NULL};
    static const char *const inst_kv[] = {"gateway.networking.k8s.io/gateway-name", "wl", NULL};
    model_t *m = setup(nskv, NULL, NULL);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wl", "10.0.9.2", MODEL_WP_ALL));
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "wl", "10.96.0.9", managed_kv, 80));
    apply(m, "c1", MODEL_KIND_POD, new_pod("ns", "wl-0", "10.1.0.9", NULL, inst_kv));
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_nonnull(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_null(svc(s, &V1, "ns/wl.ns.svc.cluster.local")->waypoint);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, "c1//Pod/ns/wl-0")));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(ingress_use_waypoint_only_with_a_waypoint)
{
    static const char *const nskv[] = {"istio.io/ingress-use-waypoint", "true", NULL};
    static const char *const svckv[] = {USE, "wp", NULL};
    model_t *m = setup(nskv, svckv, NULL);
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "b", "10.96.0.2", NULL, 80));
    model_snapshot_t *s = model_commit(m);
    ck_assert(svc(s, &V1, SVC_A)->ingress_use_waypoint);
    ck_assert(!svc(s, &V1, "ns/b.ns.svc.cluster.local")->ingress_use_waypoint);
    model_snapshot_unref(s);
    /* the Service's own label wins; ParseBool takes "0" as false */
    static const char *const off[] = {USE, "wp", "istio.io/ingress-use-waypoint", "0", NULL};
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "a", "10.96.0.1", off, 80));
    s = model_commit(m);
    ck_assert(!svc(s, &V1, SVC_A)->ingress_use_waypoint);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(missing_or_unready_waypoint_is_none)
{
    static const char *const nskv[] = {USE, "wp", NULL};
    static const char *const svckv[] = {USE, "absent", NULL};
    model_t *m = setup(nskv, svckv, NULL);
    model_snapshot_t *s = model_commit(m);
    /* a binding to a Gateway that does not exist: none, no fallback */
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    model_snapshot_unref(s);
    /* it appears without an address, then gets one */
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "absent", NULL, MODEL_WP_SERVICE));
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    model_snapshot_unref(s);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "absent", "10.0.9.7", MODEL_WP_SERVICE));
    s = model_commit(m);
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.7");
    model_snapshot_unref(s);
    /* and goes */
    apply_op(m, "c1", MODEL_KIND_GATEWAY, MODEL_OP_DELETE, mk_gw("ns", "absent", NULL, 0));
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

START_TEST(namespace_label_change_reaches_pods)
{
    model_t *m = setup(NULL, NULL, NULL);
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    static const char *const nskv[] = {USE, "wl", NULL};
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", nskv));
    s = model_commit(m);
    expect_ip(wl_wp(wl(s, &V1, POD_A)), "n1", "10.0.9.2");
    model_snapshot_unref(s);
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    s = model_commit(m);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* A Gateway in another namespace takes an object only as the allowedRoutes
 * of its HBONE listener say (istiod's AllowsAttachmentFromNamespace): Same
 * (the default) refuses it, All takes it, Selector takes the namespaces
 * whose labels match, and no selector takes none. A change of the object's
 * namespace labels moves it. */
START_TEST(cross_namespace_waypoint_needs_allowed_routes)
{
    static const char *const nskv[] = {"team", "a", NULL};
    static const char *const svckv[] = {USE, "shared", USE_NS, "wps", NULL};
    static const char *const podkv[] = {USE, "shared", USE_NS, "wps", NULL};
    model_t *m = setup(nskv, svckv, podkv);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("wps", "shared", "10.0.9.8", MODEL_WP_ALL));
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);

    model_gateway_t *g = mk_gw("wps", "shared", "10.0.9.8", MODEL_WP_ALL);
    g->from = MODEL_WP_FROM_ALL;
    apply(m, "c1", MODEL_KIND_GATEWAY, g);
    s = model_commit(m);
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.8");
    expect_ip(wl_wp(wl(s, &V1, POD_A)), "n1", "10.0.9.8");
    model_snapshot_unref(s);

    char err[128];
    g = mk_gw("wps", "shared", "10.0.9.8", MODEL_WP_ALL);
    g->from = MODEL_WP_FROM_SELECTOR;
    g->from_sel = model_selector_new();
    ck_assert_int_eq(model_selector_add_label(g->from_sel, "team", "b", err, sizeof(err)), 0);
    apply(m, "c1", MODEL_KIND_GATEWAY, g);
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);

    static const char *const nskv_b[] = {"team", "b", NULL};
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", nskv_b));
    s = model_commit(m);
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.8");
    expect_ip(wl_wp(wl(s, &V1, POD_A)), "n1", "10.0.9.8");
    model_snapshot_unref(s);

    /* Selector without a selector: no namespace, not every one */
    g = mk_gw("wps", "shared", "10.0.9.8", MODEL_WP_ALL);
    g->from = MODEL_WP_FROM_SELECTOR;
    apply(m, "c1", MODEL_KIND_GATEWAY, g);
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->waypoint);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* A pod labelled with a waypoint's name is its instance only once that
 * Gateway exists with a status address (istiod's fetchWaypointForInstance);
 * before, it takes its namespace's waypoint like any pod. */
START_TEST(instance_only_of_an_existing_waypoint)
{
    static const char *const nskv[] = {USE, "wl", NULL};
    static const char *const podkv[] = {"gateway.networking.k8s.io/gateway-name", "other", NULL};
    model_t *m = setup(nskv, NULL, podkv);
    model_snapshot_t *s = model_commit(m);
    expect_ip(wl_wp(wl(s, &V1, POD_A)), "n1", "10.0.9.2");
    model_snapshot_unref(s);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "other", NULL, MODEL_WP_SERVICE));
    s = model_commit(m);
    expect_ip(wl_wp(wl(s, &V1, POD_A)), "n1", "10.0.9.2");
    model_snapshot_unref(s);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "other", "10.0.9.4", MODEL_WP_SERVICE));
    s = model_commit(m);
    ck_assert_ptr_null(wl_wp(wl(s, &V1, POD_A)));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

#define CANARY "istio.io/use-waypoint-canary"

/* A Service with istio.io/use-waypoint-canary gets weighted_waypoints when
 * the canary exists, takes service traffic, is not the primary and the
 * weight annotation is a percentage (absent: 0); otherwise only the primary
 * (istiod's buildWeightedWaypoints). The canary's arrival moves the
 * Service. */
START_TEST(canary_takes_its_share_of_the_primary)
{
    static const char *const svckv[] = {USE, "wp", CANARY, "next", NULL};
    model_t *m = setup(NULL, svckv, NULL);
    model_snapshot_t *s = model_commit(m);
    const model_out_service_t *o = svc(s, &V1, SVC_A);
    expect_ip(o->waypoint, "n1", "10.0.9.1");
    ck_assert_ptr_null(o->canary); /* no Gateway next yet */
    model_snapshot_unref(s);

    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "next", "10.0.9.9", MODEL_WP_SERVICE));
    s = model_commit(m);
    o = svc(s, &V1, SVC_A);
    expect_ip(o->waypoint, "n1", "10.0.9.1");
    expect_ip(o->canary, "n1", "10.0.9.9");
    ck_assert_uint_eq(o->canary_weight, 0); /* no weight annotation: 0% */
    model_snapshot_unref(s);

    model_service_t *a = new_svc("ns", "a", "10.96.0.1", svckv, 80);
    a->canary_weight = model_canary_weight("5");
    apply(m, "c1", MODEL_KIND_SERVICE, a);
    s = model_commit(m);
    ck_assert_uint_eq(svc(s, &V1, SVC_A)->canary_weight, 5);
    model_snapshot_unref(s);

    a = new_svc("ns", "a", "10.96.0.1", svckv, 80);
    a->canary_weight = model_canary_weight("not-a-number");
    apply(m, "c1", MODEL_KIND_SERVICE, a);
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->canary);
    model_snapshot_unref(s);

    /* the canary must take service traffic */
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "a", "10.96.0.1", svckv, 80));
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "next", "10.0.9.9", MODEL_WP_WORKLOAD));
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->canary);
    model_snapshot_unref(s);

    /* and not be the primary */
    static const char *const same[] = {USE, "wp", CANARY, "wp", NULL};
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "a", "10.96.0.1", same, 80));
    s = model_commit(m);
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->canary);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* The namespace's canary label and weight count only for a Service without
 * a use-waypoint label of its own (inherited from the same level as the
 * primary); a Service's own weight wins over the namespace's. */
START_TEST(canary_inherited_with_the_primary)
{
    static const char *const nskv[] = {USE, "wp", CANARY, "next", NULL};
    model_t *m = setup(nskv, NULL, NULL);
    model_namespace_t *n = new_ns("ns", nskv);
    n->canary_weight = model_canary_weight("20");
    apply(m, "c1", MODEL_KIND_NAMESPACE, n);
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "next", "10.0.9.9", MODEL_WP_ALL));
    model_snapshot_t *s = model_commit(m);
    const model_out_service_t *o = svc(s, &V1, SVC_A);
    expect_ip(o->canary, "n1", "10.0.9.9");
    ck_assert_uint_eq(o->canary_weight, 20);
    model_snapshot_unref(s);

    model_service_t *a = new_svc("ns", "a", "10.96.0.1", NULL, 80);
    a->canary_weight = model_canary_weight("30");
    apply(m, "c1", MODEL_KIND_SERVICE, a);
    s = model_commit(m);
    ck_assert_uint_eq(svc(s, &V1, SVC_A)->canary_weight, 30);
    model_snapshot_unref(s);

    /* its own primary: the namespace's canary is not read */
    static const char *const own[] = {USE, "wp", NULL};
    apply(m, "c1", MODEL_KIND_SERVICE, new_svc("ns", "a", "10.96.0.1", own, 80));
    s = model_commit(m);
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.1");
    ck_assert_ptr_null(svc(s, &V1, SVC_A)->canary);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* Go's strconv.Atoi, then 0-100. */
START_TEST(canary_weight_parses_as_istiod)
{
    ck_assert_uint_eq(model_canary_weight(NULL), MODEL_CANARY_ABSENT);
    ck_assert_uint_eq(model_canary_weight("0"), 1);
    ck_assert_uint_eq(model_canary_weight("+7"), 8);
    ck_assert_uint_eq(model_canary_weight("-0"), 1);
    ck_assert_uint_eq(model_canary_weight("007"), 8);
    ck_assert_uint_eq(model_canary_weight("100"), 101);
    static const char *const bad[] = {"",   "101", "-1", " 5",
                                      "5%", "1e1", "+",  "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_uint_eq(model_canary_weight(bad[i]), MODEL_CANARY_INVALID);
}
END_TEST

static void count_conflict(const model_service_info_t *si, void *arg)
{
    ck_assert_str_eq(si->key, "ns/a");
    (*(int *)arg)++;
}

/* c1 and c2 export ns/a bound to different waypoints: each sees its own
 * (istiod merges onto its local Service), c3, which has no ns/a, the base
 * cluster's (the older Service, then the smaller id), and the service info
 * says how they disagree. */
START_TEST(multicluster_disagreement_is_a_conflict)
{
    static const char *const kv1[] = {"istio.io/global", "true", USE, "wp", NULL};
    static const char *const kv2[] = {"istio.io/global", "true", USE, "other", NULL};
    model_t *m = mesh();
    add_cluster(m, "c3", "n2", "192.0.2.3");
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c2", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    apply(m, "c1", MODEL_KIND_GATEWAY, mk_gw("ns", "wp", "10.0.9.1", MODEL_WP_SERVICE));
    apply(m, "c2", MODEL_KIND_GATEWAY, mk_gw("ns", "other", "10.0.9.5", MODEL_WP_SERVICE));
    model_service_t *a2 = new_svc("ns", "a", "10.96.1.1", kv2, 80);
    a2->created = 200;
    model_service_t *a1 = new_svc("ns", "a", "10.96.0.1", kv1, 80);
    a1->created = 100;
    apply(m, "c2", MODEL_KIND_SERVICE, a2);
    apply(m, "c1", MODEL_KIND_SERVICE, a1);
    model_snapshot_t *s = model_commit(m);
    /* each exporting cluster sees its own binding; a third cluster the base's */
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.1");
    expect_ip(svc(s, &V2, SVC_A)->waypoint, "n2", "10.0.9.5");
    const model_view_t v3 = {"c3", "n2"};
    expect_ip(svc(s, &v3, SVC_A)->waypoint, "n1", "10.0.9.1");
    /* the rest of the merged service is the same in every view */
    ck_assert_uint_eq(svc(s, &V2, SVC_A)->naddrs, 2);
    ck_assert_uint_eq(svc(s, &v3, SVC_A)->naddrs, 2);
    model_service_info_t si;
    ck_assert(model_service_info(m, "ns/a", &si));
    ck_assert_str_eq(si.base_cluster, "c1");
    ck_assert_ptr_nonnull(si.conflict);
    ck_assert_msg(strstr(si.conflict, "waypoint ns/other in cluster c2 differs from ns/wp in "
                                      "cluster c1 (cluster c2 sees its own, the others ns/wp)"),
                  "%s", si.conflict);
    /* reported once, for the log */
    int n = 0;
    model_each_new_conflict(m, count_conflict, &n);
    ck_assert_int_eq(n, 1);
    model_snapshot_unref(s);
    apply(m, "c1", MODEL_KIND_NAMESPACE, new_ns("ns", NULL));
    s = model_commit(m);
    model_each_new_conflict(m, count_conflict, &n);
    ck_assert_int_eq(n, 1);
    model_snapshot_unref(s);
    /* agreeing again: no conflict */
    static const char *const kv2b[] = {"istio.io/global", "true", USE, "wp", NULL};
    model_service_t *a2b = new_svc("ns", "a", "10.96.1.1", kv2b, 80);
    a2b->created = 200;
    apply(m, "c2", MODEL_KIND_SERVICE, a2b);
    s = model_commit(m);
    ck_assert(model_service_info(m, "ns/a", &si));
    ck_assert_ptr_null(si.conflict);
    /* the same binding names each cluster's own Gateway, on its network */
    expect_ip(svc(s, &V1, SVC_A)->waypoint, "n1", "10.0.9.1");
    ck_assert_ptr_null(svc(s, &V2, SVC_A)->waypoint); /* c2 has no ns/wp */
    model_snapshot_unref(s);
    apply(m, "c2", MODEL_KIND_GATEWAY, mk_gw("ns", "wp", "10.0.9.6", MODEL_WP_SERVICE));
    s = model_commit(m);
    expect_ip(svc(s, &V2, SVC_A)->waypoint, "n2", "10.0.9.6");
    expect_ip(svc(s, &v3, SVC_A)->waypoint, "n1", "10.0.9.1");
    ck_assert(model_service_info(m, "ns/a", &si));
    ck_assert_ptr_null(si.conflict);
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("waypoint");
    TCase *t = tcase_create("core");
    tcase_add_test(t, namespace_label_binds_its_services);
    tcase_add_test(t, service_label_overrides_namespace);
    tcase_add_test(t, none_on_service_blocks_namespace);
    tcase_add_test(t, use_waypoint_namespace_names_the_gateways_namespace);
    tcase_add_test(t, hostname_wins_over_ip_and_ip_is_the_clusters_network);
    tcase_add_test(t, waypoint_for_gates_services_and_workloads);
    tcase_add_test(t, service_waypoint_never_reaches_its_pods);
    tcase_add_test(t, waypoint_service_and_instances_get_none);
    tcase_add_test(t, ingress_use_waypoint_only_with_a_waypoint);
    tcase_add_test(t, missing_or_unready_waypoint_is_none);
    tcase_add_test(t, namespace_label_change_reaches_pods);
    tcase_add_test(t, multicluster_disagreement_is_a_conflict);
    tcase_add_test(t, cross_namespace_waypoint_needs_allowed_routes);
    tcase_add_test(t, instance_only_of_an_existing_waypoint);
    tcase_add_test(t, canary_takes_its_share_of_the_primary);
    tcase_add_test(t, canary_inherited_with_the_primary);
    tcase_add_test(t, canary_weight_parses_as_istiod);
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
