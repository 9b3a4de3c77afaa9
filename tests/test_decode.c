/*
 * test_decode.c - kube/ decoding of API objects, ServiceScope rules and
 * YAML/JSON manifests. Fixtures live in $MESHFED_TESTDATA/decode. Leaks are
 * caught by running under ASan with CK_FORK=no.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube.h"

/* ---------- helpers ---------- */

static const char *data_path(const char *name)
{
    static char buf[1024];
    const char *dir = getenv("MESHFED_TESTDATA");
    snprintf(buf, sizeof(buf), "%s/decode/%s", dir ? dir : "tests/data", name);
    return buf;
}

static json_t *load_json(const char *name)
{
    json_error_t je;
    json_t *j = json_load_file(data_path(name), 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", name, je.text);
    return j;
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    ck_assert_msg(j != NULL, "bad test JSON: %s: %s", je.text, text);
    return j;
}

/* Decodes a fixture that must decode. */
static void *decode_file(model_kind_t kind, const char *name)
{
    char err[MODEL_ERRLEN];
    void *obj = NULL;
    json_t *j = load_json(name);
    int rc = kube_decode(kind, j, &obj, err, sizeof(err));
    json_decref(j);
    ck_assert_msg(rc == 0, "%s: %s", name, err);
    ck_assert_ptr_nonnull(obj);
    return obj;
}

static void *decode_text(model_kind_t kind, const char *text)
{
    char err[MODEL_ERRLEN];
    void *obj = NULL;
    json_t *j = parse(text);
    int rc = kube_decode(kind, j, &obj, err, sizeof(err));
    json_decref(j);
    ck_assert_msg(rc == 0, "%s: %s", text, err);
    return obj;
}

/* Decoding text must fail with an error containing want. */
static void expect_decode_error(model_kind_t kind, const char *text, const char *want)
{
    char err[MODEL_ERRLEN] = "";
    void *obj = (void *)1;
    json_t *j = parse(text);
    int rc = kube_decode(kind, j, &obj, err, sizeof(err));
    json_decref(j);
    ck_assert_msg(rc == -1, "decoded but should not: %s", text);
    ck_assert_ptr_null(obj);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\" (input %s)", err, want,
                  text);
}

static char *ipstr(const model_ip_t *ip)
{
    static char buf[64];
    return (char *)model_ip_format(ip, buf, sizeof(buf));
}

/* ---------- Service ---------- */

START_TEST(decode_service_named_target_port)
{
    model_service_t *s = decode_file(MODEL_KIND_SERVICE, "service.json");
    ck_assert_str_eq(s->ns, "bookinfo");
    ck_assert_str_eq(s->name, "reviews");
    ck_assert_str_eq(s->uid, "5c7b3e0a-8f0e-4c5e-9d7a-2b1f3c4d5e6f");
    ck_assert_int_eq(s->created, 1714564800);
    ck_assert_uint_eq(s->labels.n, 3);
    ck_assert_str_eq(model_labels_get(&s->labels, "istio.io/global"), "true");
    ck_assert(!s->headless);
    ck_assert_uint_eq(s->ncluster_ips, 2);
    ck_assert_str_eq(ipstr(&s->cluster_ips[0]), "10.96.12.34");
    ck_assert_int_eq(s->cluster_ips[1].len, 16);
    ck_assert_uint_eq(s->nports, 2);
    ck_assert_str_eq(s->ports[0].name, "http");
    ck_assert_int_eq(s->ports[0].port, 9080);
    ck_assert_int_eq(s->ports[0].target_port, 0);
    ck_assert_str_eq(s->ports[0].target_port_name, "http-web");
    ck_assert_int_eq(s->ports[0].protocol, MODEL_PROTO_TCP);
    ck_assert_ptr_null(s->ports[0].app_protocol);
    ck_assert_str_eq(s->ports[1].name, "grpc");
    ck_assert_int_eq(s->ports[1].port, 9090);
    ck_assert_int_eq(s->ports[1].target_port, 19090);
    ck_assert_ptr_null(s->ports[1].target_port_name);
    ck_assert_str_eq(s->ports[1].app_protocol, "grpc");
    ck_assert_int_eq(s->traffic_dist, MODEL_TD_PREFER_CLOSE);
    ck_assert_uint_eq(s->nlb_ips, 0);
    model_obj_free(MODEL_KIND_SERVICE, s);
}
END_TEST

START_TEST(decode_service_lb_ingress_ips_skip_hostnames)
{
    model_service_t *s = decode_file(MODEL_KIND_SERVICE, "service-eastwest.json");
    ck_assert_int_eq(s->created, 1714566615); /* 14:30:15+02:00 is 12:30:15Z */
    ck_assert_uint_eq(s->nports, 3);
    ck_assert_uint_eq(s->nlb_ips, 2);
    ck_assert_str_eq(ipstr(&s->lb_ips[0]), "172.18.255.10");
    ck_assert_str_eq(ipstr(&s->lb_ips[1]), "2001:db8::10");
    ck_assert_int_eq(s->traffic_dist, MODEL_TD_NONE);
    model_obj_free(MODEL_KIND_SERVICE, s);
}
END_TEST

START_TEST(decode_service_headless_unnamed_port_defaults)
{
    model_service_t *s = decode_file(MODEL_KIND_SERVICE, "service-headless.json");
    ck_assert(s->headless);
    ck_assert_uint_eq(s->ncluster_ips, 0);
    ck_assert_int_eq(s->created, 0);
    ck_assert_uint_eq(s->nports, 1);
    ck_assert_str_eq(s->ports[0].name, "");
    ck_assert_int_eq(s->ports[0].target_port, 9042); /* API default: the port */
    ck_assert_int_eq(s->ports[0].protocol, MODEL_PROTO_TCP);
    model_obj_free(MODEL_KIND_SERVICE, s);
}
END_TEST

START_TEST(decode_service_cluster_ip_fallback)
{
    model_service_t *s = decode_text(
        MODEL_KIND_SERVICE,
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"},"
        "\"spec\":{\"clusterIP\":\"10.0.0.7\",\"ports\":[{\"port\":53,\"protocol\":\"UDP\"}]}}");
    ck_assert_uint_eq(s->ncluster_ips, 1);
    ck_assert_str_eq(ipstr(&s->cluster_ips[0]), "10.0.0.7");
    ck_assert_int_eq(s->ports[0].protocol, MODEL_PROTO_UDP);
    ck_assert_ptr_null(s->uid);
    model_obj_free(MODEL_KIND_SERVICE, s);

    /* A manifest asking for allocation: "" is no address, not an error. */
    s = decode_text(
        MODEL_KIND_SERVICE,
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"},\"spec\":{\"clusterIP\":\"\"}}");
    ck_assert_uint_eq(s->ncluster_ips, 0);
    ck_assert(!s->headless);
    model_obj_free(MODEL_KIND_SERVICE, s);
}
END_TEST

START_TEST(decode_service_traffic_distribution_spec_wins)
{
    static const struct {
        const char *spec, *ann;
        model_traffic_dist_t want;
    } cases[] = {
        {NULL, NULL, MODEL_TD_NONE},
        {"PreferClose", NULL, MODEL_TD_PREFER_CLOSE},
        {"PreferSameZone", NULL, MODEL_TD_PREFER_CLOSE},
        {"PreferSameNode", NULL, MODEL_TD_PREFER_SAME_NODE},
        {"SomethingNew", NULL, MODEL_TD_NONE},
        {NULL, "PreferClose", MODEL_TD_PREFER_CLOSE},
        {NULL, "PreferSameZone", MODEL_TD_PREFER_CLOSE},
        {NULL, "PreferSameNode", MODEL_TD_PREFER_SAME_NODE},
        {NULL, "Any", MODEL_TD_ANY},
        {NULL, "preferclose", MODEL_TD_PREFER_CLOSE},  /* Istio matches without case */
        {"PreferClose", "Any", MODEL_TD_PREFER_CLOSE}, /* the spec field wins, as in istiod */
        {"PreferSameNode", "PreferClose", MODEL_TD_PREFER_SAME_NODE},
        {"PreferClose", "PreferSameNode", MODEL_TD_PREFER_CLOSE},
        {"SomethingNew", "PreferSameNode",
         MODEL_TD_PREFER_SAME_NODE},                            /* unknown spec: annotation */
        {"PreferSameNode", "bogus", MODEL_TD_PREFER_SAME_NODE}, /* unknown: ignored */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = json_pack("{s:{s:s,s:s,s:{}},s:{}}", "metadata", "name", "a", "namespace", "n",
                              "annotations", "spec");
        if (cases[i].spec)
            json_object_set_new(json_object_get(j, "spec"), "trafficDistribution",
                                json_string(cases[i].spec));
        if (cases[i].ann)
            json_object_set_new(json_object_get(json_object_get(j, "metadata"), "annotations"),
                                "networking.istio.io/traffic-distribution",
                                json_string(cases[i].ann));
        char err[MODEL_ERRLEN];
        model_service_t *s = NULL;
        ck_assert_int_eq(kube_decode(MODEL_KIND_SERVICE, j, (void **)&s, err, sizeof(err)), 0);
        ck_assert_msg(s->traffic_dist == cases[i].want, "case %zu (spec %s, annotation %s): %d", i,
                      cases[i].spec, cases[i].ann, (int)s->traffic_dist);
        model_obj_free(MODEL_KIND_SERVICE, s);
        json_decref(j);
    }
}
END_TEST

/* ---------- EndpointSlice ---------- */

START_TEST(decode_endpointslice_ready_unready_terminating)
{
    model_endpointslice_t *es = decode_file(MODEL_KIND_ENDPOINTSLICE, "endpointslice.json");
    ck_assert_str_eq(es->ns, "bookinfo");
    ck_assert_str_eq(es->name, "reviews-x7k2p");
    ck_assert_str_eq(es->service, "reviews");
    ck_assert_uint_eq(es->nports, 2);
    ck_assert_str_eq(es->ports[1].name, "grpc");
    ck_assert_int_eq(es->ports[1].port, 19090);
    ck_assert_uint_eq(es->nendpoints, 4);
    model_endpoint_t *e = es->endpoints;
    ck_assert_str_eq(ipstr(&e[0].ip), "10.244.1.17");
    ck_assert(e[0].ready && e[0].serving && !e[0].terminating);
    ck_assert_str_eq(e[0].node, "kind-worker");
    ck_assert_str_eq(e[0].zone, "eu-west-1a");
    ck_assert_str_eq(e[0].pod, "reviews-v1-6c6f9d8b7-abcde");
    ck_assert(!e[1].ready && !e[1].serving && !e[1].terminating);
    ck_assert(!e[2].ready && e[2].serving && e[2].terminating);
    ck_assert_str_eq(e[2].pod, "reviews-v3-8e9f0a1b2-klmno");
    /* not a pod, no node, empty conditions */
    ck_assert_ptr_null(e[3].pod);
    ck_assert_ptr_null(e[3].node);
    ck_assert_ptr_null(e[3].zone);
    ck_assert(e[3].ready && e[3].serving && !e[3].terminating);
    model_obj_free(MODEL_KIND_ENDPOINTSLICE, es);
}
END_TEST

START_TEST(decode_endpointslice_condition_defaults)
{
    static const struct {
        const char *cond;
        bool ready, serving, terminating;
    } cases[] = {
        {"", true, true, false},
        {",\"conditions\":null", true, true, false},
        {",\"conditions\":{\"ready\":false}", false, false, false},
        {",\"conditions\":{\"ready\":false,\"serving\":true}", false, true, false},
        {",\"conditions\":{\"terminating\":true}", true, true, true},
        {",\"conditions\":{\"ready\":null,\"serving\":false}", true, false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\",\"labels\":"
                 "{\"kubernetes.io/service-name\":\"svc\"}},\"addressType\":\"IPv6\","
                 "\"endpoints\":[{\"addresses\":[\"fd00::1\",\"fd00::2\"]%s}]}",
                 cases[i].cond);
        model_endpointslice_t *es = decode_text(MODEL_KIND_ENDPOINTSLICE, text);
        ck_assert_uint_eq(es->nendpoints, 1);
        ck_assert_str_eq(ipstr(&es->endpoints[0].ip), "fd00::1");
        ck_assert_msg(es->endpoints[0].ready == cases[i].ready &&
                          es->endpoints[0].serving == cases[i].serving &&
                          es->endpoints[0].terminating == cases[i].terminating,
                      "case %zu %s", i, cases[i].cond);
        model_obj_free(MODEL_KIND_ENDPOINTSLICE, es);
    }
}
END_TEST

START_TEST(decode_endpointslice_fqdn_has_no_endpoints)
{
    model_endpointslice_t *es = decode_text(
        MODEL_KIND_ENDPOINTSLICE,
        "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\",\"labels\":"
        "{\"kubernetes.io/service-name\":\"ext\"}},\"addressType\":\"FQDN\","
        "\"ports\":[{\"port\":443}],\"endpoints\":[{\"addresses\":[\"example.com\"]}]}");
    ck_assert_uint_eq(es->nendpoints, 0);
    ck_assert_uint_eq(es->nports, 1);
    model_obj_free(MODEL_KIND_ENDPOINTSLICE, es);
}
END_TEST

START_TEST(decode_endpointslice_port_name_and_number_optional)
{
    model_endpointslice_t *es = decode_text(
        MODEL_KIND_ENDPOINTSLICE,
        "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\",\"labels\":"
        "{\"kubernetes.io/service-name\":\"dns\"}},\"addressType\":\"IPv4\","
        "\"ports\":[{},{\"port\":53,\"protocol\":\"UDP\",\"name\":null}],\"endpoints\":[]}");
    ck_assert_uint_eq(es->nports, 2);
    ck_assert_str_eq(es->ports[0].name, "");
    ck_assert_int_eq(es->ports[0].port, 0);
    ck_assert_int_eq(es->ports[0].protocol, MODEL_PROTO_TCP);
    ck_assert_str_eq(es->ports[1].name, "");
    ck_assert_int_eq(es->ports[1].port, 53);
    ck_assert_int_eq(es->ports[1].protocol, MODEL_PROTO_UDP);
    ck_assert_uint_eq(es->nendpoints, 0);
    model_obj_free(MODEL_KIND_ENDPOINTSLICE, es);
}
END_TEST

/* ---------- Pod, Node, Namespace ---------- */

START_TEST(decode_pod_ready_with_dual_stack_ips)
{
    model_pod_t *p = decode_file(MODEL_KIND_POD, "pod.json");
    ck_assert_str_eq(p->ns, "bookinfo");
    ck_assert_str_eq(p->name, "reviews-v1-6c6f9d8b7-abcde");
    ck_assert_str_eq(p->uid, "a0000000-0000-4000-8000-000000000001");
    ck_assert_uint_eq(p->labels.n, 5);
    ck_assert_uint_eq(p->nips, 2);
    ck_assert_str_eq(ipstr(&p->ips[0]), "10.244.1.17");
    ck_assert_str_eq(ipstr(&p->ips[1]), "fd00:10:244:1::11");
    ck_assert_str_eq(p->node, "kind-worker");
    ck_assert_str_eq(p->service_account, "bookinfo-reviews");
    ck_assert(p->ready);
    ck_assert(!p->terminating);
    model_obj_free(MODEL_KIND_POD, p);
}
END_TEST

START_TEST(decode_pod_terminating_default_service_account)
{
    model_pod_t *p = decode_file(MODEL_KIND_POD, "pod-terminating.json");
    ck_assert(p->terminating);
    ck_assert(!p->ready);
    ck_assert_str_eq(p->service_account, "default");
    ck_assert_uint_eq(p->nips, 1); /* from status.podIP */
    ck_assert_str_eq(ipstr(&p->ips[0]), "10.244.2.40");
    ck_assert_uint_eq(p->labels.n, 0);
    model_obj_free(MODEL_KIND_POD, p);
}
END_TEST

/* The fields istiod's ambient index reads beyond the basics. */
START_TEST(decode_istiod_inputs)
{
    model_pod_t *p = decode_text(
        MODEL_KIND_POD,
        "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"annotations\":"
        "{\"ambient.istio.io/redirection\":\"enabled\"}},\"spec\":{\"hostNetwork\":true},"
        "\"status\":{}}");
    ck_assert(p->ambient);
    ck_assert(p->host_network);
    model_obj_free(MODEL_KIND_POD, p);
    p = decode_text(MODEL_KIND_POD,
                    "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"annotations\":"
                    "{\"ambient.istio.io/redirection\":\"pending\"}},\"spec\":{},\"status\":{}}");
    ck_assert(!p->ambient);
    ck_assert(!p->host_network);
    ck_assert_ptr_null(p->owner); /* no generateName: its own name counts */
    model_obj_free(MODEL_KIND_POD, p);
    p = decode_text(MODEL_KIND_POD,
                    "{\"metadata\":{\"name\":\"d-7d9f8-x1\",\"namespace\":\"n\",\"generateName\":"
                    "\"d-7d9f8-\",\"ownerReferences\":[{\"kind\":\"Node\",\"name\":\"n1\"},"
                    "{\"kind\":\"ReplicaSet\",\"name\":\"d-7d9f8\",\"controller\":true}]},"
                    "\"spec\":{},\"status\":{}}");
    ck_assert_str_eq(p->owner, "ReplicaSet/d-7d9f8"); /* the controller, not the first */
    model_obj_free(MODEL_KIND_POD, p);
    model_service_t *s = decode_text(
        MODEL_KIND_SERVICE,
        "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\",\"annotations\":"
        "{\"networking.istio.io/traffic-distribution\":\"Sideways\"}},\"spec\":{\"type\":"
        "\"ExternalName\",\"internalTrafficPolicy\":\"Local\",\"publishNotReadyAddresses\":true,"
        "\"ipFamilies\":[\"IPv6\",\"IPv4\"]}}");
    ck_assert(s->external_name);
    ck_assert(s->itp_local);
    ck_assert(s->publish_not_ready);
    ck_assert_int_eq(s->ip_families, MODEL_IPF_DUAL);
    ck_assert_int_eq(s->traffic_dist, MODEL_TD_ANY); /* unknown: Any, no inheritance */
    model_obj_free(MODEL_KIND_SERVICE, s);
    s = decode_text(MODEL_KIND_SERVICE,
                    "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\"},\"spec\":{\"ipFamilies\":"
                    "[\"IPv6\"]}}");
    ck_assert(!s->external_name && !s->itp_local && !s->publish_not_ready);
    ck_assert_int_eq(s->ip_families, MODEL_IPF_V6);
    ck_assert_int_eq(s->traffic_dist, MODEL_TD_NONE);
    model_obj_free(MODEL_KIND_SERVICE, s);
    model_namespace_t *ns =
        decode_text(MODEL_KIND_NAMESPACE,
                    "{\"metadata\":{\"name\":\"n\",\"annotations\":"
                    "{\"networking.istio.io/traffic-distribution\":\"prefersamenode\"}}}");
    ck_assert_int_eq(ns->traffic_dist, MODEL_TD_PREFER_SAME_NODE);
    model_obj_free(MODEL_KIND_NAMESPACE, ns);
}
END_TEST

START_TEST(decode_pod_ready_from_condition_terminal_from_phase)
{
    static const struct {
        const char *status;
        bool ready, terminal;
    } cases[] = {
        {"{\"phase\":\"Pending\"}", false, false},
        {"{\"phase\":\"Running\"}", false, false},
        {"{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}]}",
         false, false},
        {"{\"phase\":\"Succeeded\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
         true, true},
        {"{\"phase\":\"Failed\"}", false, true},
        {"{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}", true,
         false},
        {"{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}", true,
         false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\"},\"spec\":{},\"status\":%s}",
                 cases[i].status);
        model_pod_t *p = decode_text(MODEL_KIND_POD, text);
        ck_assert_msg(p->ready == cases[i].ready, "case %zu", i);
        ck_assert_msg(p->terminal == cases[i].terminal, "case %zu terminal", i);
        ck_assert_uint_eq(p->nips, 0); /* no IP yet is fine */
        ck_assert_ptr_null(p->node);
        model_obj_free(MODEL_KIND_POD, p);
    }
}
END_TEST

START_TEST(decode_node_topology_labels)
{
    model_node_t *n = decode_file(MODEL_KIND_NODE, "node.json");
    ck_assert_str_eq(n->name, "kind-worker");
    ck_assert_uint_eq(n->labels.n, 8);
    ck_assert_str_eq(model_labels_get(&n->labels, "topology.kubernetes.io/region"), "eu-west-1");
    ck_assert_str_eq(model_labels_get(&n->labels, "topology.kubernetes.io/zone"), "eu-west-1a");
    ck_assert_str_eq(model_labels_get(&n->labels, "topology.istio.io/subzone"), "rack-7");
    model_obj_free(MODEL_KIND_NODE, n);
}
END_TEST

START_TEST(decode_namespace_labels)
{
    model_namespace_t *ns = decode_file(MODEL_KIND_NAMESPACE, "namespace.json");
    ck_assert_str_eq(ns->name, "bookinfo");
    ck_assert_uint_eq(ns->labels.n, 3);
    ck_assert_str_eq(model_labels_get(&ns->labels, "topology.istio.io/network"), "network-west");
    model_obj_free(MODEL_KIND_NAMESPACE, ns);
}
END_TEST

/* A waypoint Gateway: which namespaces its HBONE listener on 15008 takes
 * (from Same when absent or unknown, All, Selector with or without a
 * selector), whether its status has an address at all, and the address. */
START_TEST(decode_gateway_allowed_routes_and_status)
{
    static const char *const gws[] = {
        "{\"metadata\":{\"name\":\"w\",\"namespace\":\"ns\"},\"spec\":{\"listeners\":["
        "{\"name\":\"http\",\"port\":80,\"protocol\":\"HTTP\","
        "\"allowedRoutes\":{\"namespaces\":{\"from\":\"All\"}}},"
        "{\"name\":\"mesh\",\"port\":15008,\"protocol\":\"HBONE\"}]},"
        "\"status\":{\"addresses\":[{\"type\":\"IPAddress\",\"value\":\"not-an-ip\"}]}}",
        "{\"metadata\":{\"name\":\"w\",\"namespace\":\"ns\"},\"spec\":{\"listeners\":["
        "{\"name\":\"mesh\",\"port\":15008,\"protocol\":\"HBONE\","
        "\"allowedRoutes\":{\"namespaces\":{\"from\":\"All\"}}}]},"
        "\"status\":{\"addresses\":[{\"type\":\"IPAddress\",\"value\":\"10.0.0.1\"},"
        "{\"type\":\"Hostname\",\"value\":\"w.ns.svc\"}]}}",
        "{\"metadata\":{\"name\":\"w\",\"namespace\":\"ns\"},\"spec\":{\"listeners\":["
        "{\"name\":\"mesh\",\"port\":15008,\"protocol\":\"HBONE\",\"allowedRoutes\":{"
        "\"namespaces\":"
        "{\"from\":\"Selector\",\"selector\":{\"matchLabels\":{\"team\":\"a\"}}}}}]}}",
        "{\"metadata\":{\"name\":\"w\",\"namespace\":\"ns\"},\"spec\":{\"listeners\":["
        "{\"name\":\"mesh\",\"port\":15008,\"protocol\":\"HBONE\","
        "\"allowedRoutes\":{\"namespaces\":{\"from\":\"Selector\"}}}]}}",
        "{\"metadata\":{\"name\":\"w\",\"namespace\":\"ns\"},\"spec\":{\"listeners\":["
        "{\"name\":\"mesh\",\"port\":15008,\"protocol\":\"HBONE\","
        "\"allowedRoutes\":{\"namespaces\":{\"from\":\"None\"}}}]}}",
    };
    model_gateway_t *g = decode_text(MODEL_KIND_GATEWAY, gws[0]);
    ck_assert_int_eq(g->from, MODEL_WP_FROM_SAME); /* the HTTP listener's All is not read */
    ck_assert(g->ready);                           /* an address, though not a usable one */
    ck_assert_uint_eq(g->ip.len, 0);
    ck_assert_ptr_null(g->hostname);
    model_obj_free(MODEL_KIND_GATEWAY, g);

    g = decode_text(MODEL_KIND_GATEWAY, gws[1]);
    ck_assert_int_eq(g->from, MODEL_WP_FROM_ALL);
    ck_assert(g->ready);
    ck_assert_str_eq(g->hostname, "w.ns.svc");
    ck_assert_uint_eq(g->ip.len, 0);
    model_obj_free(MODEL_KIND_GATEWAY, g);

    g = decode_text(MODEL_KIND_GATEWAY, gws[2]);
    ck_assert_int_eq(g->from, MODEL_WP_FROM_SELECTOR);
    ck_assert(!g->ready);
    ck_assert_ptr_nonnull(g->from_sel);
    model_labels_t l = {0};
    ck_assert_int_eq(model_labels_set(&l, "team", "a"), 0);
    ck_assert(model_selector_matches(g->from_sel, &l));
    model_labels_clear(&l);
    ck_assert(!model_selector_matches(g->from_sel, &l));
    model_obj_free(MODEL_KIND_GATEWAY, g);

    g = decode_text(MODEL_KIND_GATEWAY, gws[3]);
    ck_assert_int_eq(g->from, MODEL_WP_FROM_SELECTOR);
    ck_assert_ptr_null(g->from_sel); /* takes no namespace */
    model_obj_free(MODEL_KIND_GATEWAY, g);

    g = decode_text(MODEL_KIND_GATEWAY, gws[4]);
    ck_assert_int_eq(g->from, MODEL_WP_FROM_SAME);
    model_obj_free(MODEL_KIND_GATEWAY, g);
}
END_TEST

/* The canary weight annotation of a Service and of a Namespace. */
START_TEST(decode_canary_weight_annotation)
{
    model_namespace_t *n = decode_text(
        MODEL_KIND_NAMESPACE,
        "{\"metadata\":{\"name\":\"ns\",\"annotations\":{\"istio.io/use-waypoint-canary-weight\":"
        "\"20\"}}}");
    ck_assert_uint_eq(n->canary_weight, 21);
    model_obj_free(MODEL_KIND_NAMESPACE, n);
    model_service_t *s = decode_text(
        MODEL_KIND_SERVICE,
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"annotations\":{\"istio.io/"
        "use-waypoint-canary-weight\":\"x\"}},\"spec\":{\"clusterIP\":\"10.0.0.1\"}}");
    ck_assert_uint_eq(s->canary_weight, MODEL_CANARY_INVALID);
    model_obj_free(MODEL_KIND_SERVICE, s);
    s = decode_text(MODEL_KIND_SERVICE, "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},"
                                        "\"spec\":{\"clusterIP\":\"10.0.0.1\"}}");
    ck_assert_uint_eq(s->canary_weight, MODEL_CANARY_ABSENT);
    model_obj_free(MODEL_KIND_SERVICE, s);
}
END_TEST

START_TEST(decode_missing_name_rejected_for_every_kind)
{
    for (int k = 0; k < MODEL_KIND__COUNT; k++) {
        expect_decode_error(k, "{\"metadata\":{\"namespace\":\"n\"}}", "metadata.name: missing");
        expect_decode_error(k, "{\"metadata\":{\"name\":\"\",\"namespace\":\"n\"}}",
                            "metadata.name: missing");
        expect_decode_error(k, "{\"spec\":{}}", "metadata: missing");
    }
}
END_TEST

START_TEST(decode_kind_mismatch_rejected)
{
    json_t *j = load_json("pod.json");
    char err[MODEL_ERRLEN];
    void *obj = NULL;
    ck_assert_int_eq(kube_decode(MODEL_KIND_SERVICE, j, &obj, err, sizeof(err)), -1);
    ck_assert_ptr_null(obj);
    ck_assert_ptr_nonnull(strstr(err, "kind: \"Pod\", expected \"Service\""));
    ck_assert_int_eq(kube_decode(MODEL_KIND__COUNT, j, &obj, err, sizeof(err)), -1);
    ck_assert_int_eq(kube_decode(MODEL_KIND_POD, NULL, &obj, err, sizeof(err)), -1);
    json_decref(j);
}
END_TEST

START_TEST(kind_lookup_known_and_unknown)
{
    model_kind_t k;
    ck_assert_int_eq(kube_kind_lookup("v1", "Service", &k), 0);
    ck_assert_int_eq(k, MODEL_KIND_SERVICE);
    ck_assert_int_eq(kube_kind_lookup("discovery.k8s.io/v1", "EndpointSlice", &k), 0);
    ck_assert_int_eq(k, MODEL_KIND_ENDPOINTSLICE);
    ck_assert_int_eq(kube_kind_lookup("v1", "Namespace", &k), 0);
    ck_assert_int_eq(k, MODEL_KIND_NAMESPACE);
    ck_assert_int_eq(kube_kind_lookup("v1", "Pod", &k), 0);
    ck_assert_int_eq(k, MODEL_KIND_POD);
    ck_assert_int_eq(kube_kind_lookup("v1", "Node", &k), 0);
    ck_assert_int_eq(k, MODEL_KIND_NODE);
    ck_assert_int_eq(kube_kind_lookup("v1", "EndpointSlice", &k), -1);
    ck_assert_int_eq(kube_kind_lookup("discovery.k8s.io/v1beta1", "EndpointSlice", &k), -1);
    ck_assert_int_eq(kube_kind_lookup("v1", "ConfigMap", &k), -1);
    ck_assert_int_eq(kube_kind_lookup("v1", "service", &k), -1);
    ck_assert_int_eq(kube_kind_lookup(NULL, "Service", &k), -1);
}
END_TEST

/* ---------- malformed inputs ---------- */

#define SVC(spec) "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"},\"spec\":" spec "}"
#define SVCM(md) "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"" md "}}"
#define ES(rest)                                                                                   \
    "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\",\"labels\":{\"kubernetes.io/service-"       \
    "name\":\"x\"}}" rest "}"
#define POD(rest) "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\"}" rest "}"

static const struct {
    model_kind_t kind;
    const char *json, *want;
} malformed[] = {
    {MODEL_KIND_SERVICE, "[]", "expected an object, got array"},
    {MODEL_KIND_SERVICE, "{\"metadata\":\"x\"}", "metadata: expected an object, got string"},
    {MODEL_KIND_SERVICE, "{\"metadata\":{\"name\":7,\"namespace\":\"n\"}}",
     "metadata.name: expected a string, got integer"},
    {MODEL_KIND_SERVICE, "{\"metadata\":{\"name\":\"a\"}}", "metadata.namespace: missing"},
    {MODEL_KIND_SERVICE, "{\"metadata\":{\"name\":\"a\",\"namespace\":[]}}",
     "metadata.namespace: expected a string"},
    {MODEL_KIND_SERVICE, SVCM(",\"labels\":[\"app\"]"), "metadata.labels: expected an object"},
    {MODEL_KIND_SERVICE, SVCM(",\"labels\":{\"app\":1}"),
     "Service n/a: metadata.labels[app]: expected a string, got integer"},
    {MODEL_KIND_SERVICE, SVCM(",\"uid\":{}"), "metadata.uid: expected a string"},
    {MODEL_KIND_SERVICE, SVCM(",\"creationTimestamp\":\"yesterday\""), "not an RFC 3339 time"},
    {MODEL_KIND_SERVICE, SVCM(",\"creationTimestamp\":\"2024-02-30T00:00:00Z\""),
     "not an RFC 3339 time"},
    {MODEL_KIND_SERVICE, SVCM(",\"creationTimestamp\":1714564800"),
     "metadata.creationTimestamp: expected a string, got integer"},
    {MODEL_KIND_SERVICE, SVCM(",\"annotations\":{\"networking.istio.io/traffic-distribution\":1}"),
     "traffic-distribution: expected a string"},
    {MODEL_KIND_SERVICE, "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"},\"spec\":[]}",
     "spec: expected an object, got array"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":{}}"), "spec.ports: expected an array, got object"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[\"http\"]}"), "spec.ports[0]: expected an object"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":\"80\"}]}"),
     "spec.ports[0].port: expected an integer, got string"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80.5}]}"),
     "spec.ports[0].port: expected an integer, got number"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80},{\"port\":-1}]}"),
     "spec.ports[1].port: port -1 out of range"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":70000}]}"), "port 70000 out of range"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"name\":\"http\"}]}"), "spec.ports[0].port: missing"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"name\":5,\"port\":80}]}"),
     "spec.ports[0].name: expected a string"},
    {MODEL_KIND_SERVICE,
     SVC("{\"ports\":[{\"name\":\"ok\",\"port\":80,\"appProtocol\":\"http\",\"targetPort\":\"web\"}"
         ","
         "{\"port\":81,\"targetPort\":true}]}"),
     "spec.ports[1].targetPort: expected an integer or a string, got boolean"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80,\"targetPort\":\"8080\"}]}"),
     "not a valid port name"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80,\"targetPort\":\"Http_Web\"}]}"),
     "not a valid port name"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80,\"targetPort\":0}]}"),
     "targetPort: port 0 out of range"},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80,\"protocol\":\"HTTP\"}]}"),
     "spec.ports[0].protocol: unknown protocol \"HTTP\""},
    {MODEL_KIND_SERVICE, SVC("{\"ports\":[{\"port\":80,\"appProtocol\":[]}]}"),
     "appProtocol: expected a string"},
    {MODEL_KIND_SERVICE, SVC("{\"clusterIPs\":[\"10.0.0.300\"]}"),
     "spec.clusterIPs[0]: invalid IP address \"10.0.0.300\""},
    {MODEL_KIND_SERVICE, SVC("{\"clusterIPs\":[\"10.0.0.1\",42]}"),
     "spec.clusterIPs[1]: expected a string, got integer"},
    {MODEL_KIND_SERVICE, SVC("{\"clusterIPs\":\"10.0.0.1\"}"),
     "spec.clusterIPs: expected an array"},
    {MODEL_KIND_SERVICE, SVC("{\"clusterIP\":\"banana\"}"), "spec.clusterIP: invalid IP address"},
    {MODEL_KIND_SERVICE, SVC("{\"clusterIPs\":[\"None\",\"10.0.0.1\"]}"), "\"None\" mixed"},
    {MODEL_KIND_SERVICE, SVC("{\"trafficDistribution\":5}"),
     "spec.trafficDistribution: expected a string"},
    {MODEL_KIND_SERVICE,
     "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"},\"status\":{\"loadBalancer\":"
     "{\"ingress\":[{\"ip\":\"1.2.3.4\"},{\"ip\":\"nope\"}]}}}",
     "status.loadBalancer.ingress[1].ip: invalid IP address"},
    {MODEL_KIND_SERVICE,
     "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"},\"status\":{\"loadBalancer\":[]}}",
     "status.loadBalancer: expected an object"},
    {MODEL_KIND_ENDPOINTSLICE,
     "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\"},"
     "\"addressType\":\"IPv4\"}",
     "kubernetes.io/service-name: missing"},
    {MODEL_KIND_ENDPOINTSLICE,
     "{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\",\"labels\":"
     "{\"kubernetes.io/service-name\":3}},\"addressType\":\"IPv4\"}",
     "metadata.labels[kubernetes.io/service-name]: expected a string"},
    {MODEL_KIND_ENDPOINTSLICE, ES(""), "addressType: missing"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv5\""), "unknown type \"IPv5\""},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":4"), "addressType: expected a string"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv4\",\"endpoints\":{}"),
     "endpoints: expected an array"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[]}]"),
     "endpoints[0].addresses: missing or empty"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv4\",\"endpoints\":[{}]"),
     "endpoints[0].addresses: missing or empty"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"nodeName\":"
        "\"n1\",\"zone\":\"z\",\"targetRef\":{\"kind\":\"Pod\",\"name\":\"p\"}},"
        "{\"addresses\":[\"x\"]}]"),
     "endpoints[1].addresses[0]: invalid IP address \"x\""},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"::1\"]}]"),
     "endpoints[0].addresses[0]: \"::1\" is not an IPv4 address"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[1]}]"),
     "endpoints[0].addresses[0]: expected a string"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],"
        "\"conditions\":{\"ready\":\"yes\"}}]"),
     "endpoints[0].conditions.ready: expected a boolean, got string"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],"
        "\"conditions\":[]}]"),
     "endpoints[0].conditions: expected an object"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"nodeName\":7}]"),
     "endpoints[0].nodeName: expected a string"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"targetRef\":"
        "\"pod/p\"}]"),
     "endpoints[0].targetRef: expected an object"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"targetRef\":"
        "{\"kind\":\"Pod\",\"name\":1}}]"),
     "endpoints[0].targetRef.name: expected a string"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv4\",\"ports\":[{\"port\":\"http\"}]"),
     "ports[0].port: expected an integer, got string"},
    {MODEL_KIND_ENDPOINTSLICE,
     ES(",\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"a\"},{\"port\":0}]"),
     "ports[1].port: port 0 out of range"},
    {MODEL_KIND_ENDPOINTSLICE, ES(",\"addressType\":\"IPv4\",\"ports\":[{\"protocol\":\"tcp\"}]"),
     "unknown protocol \"tcp\""},
    {MODEL_KIND_POD, POD(",\"status\":{\"podIPs\":[{\"ip\":5}]}"),
     "status.podIPs[0].ip: expected a string, got integer"},
    {MODEL_KIND_POD, POD(",\"status\":{\"podIPs\":[{\"ip\":\"10.0.0.1\"},{}]}"),
     "status.podIPs[1].ip: missing"},
    {MODEL_KIND_POD, POD(",\"status\":{\"podIPs\":[\"10.0.0.1\"]}"),
     "status.podIPs[0]: expected an object"},
    {MODEL_KIND_POD, POD(",\"status\":{\"podIP\":\"1.2.3\"}"), "status.podIP: invalid IP address"},
    {MODEL_KIND_POD, POD(",\"status\":{\"conditions\":\"Ready\"}"),
     "status.conditions: expected an array"},
    {MODEL_KIND_POD, POD(",\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":true}]}"),
     "status.conditions[0].status: expected a string, got boolean"},
    {MODEL_KIND_POD, POD(",\"status\":{\"phase\":1}"), "status.phase: expected a string"},
    {MODEL_KIND_POD, POD(",\"spec\":{\"serviceAccountName\":[]}"),
     "spec.serviceAccountName: expected a string"},
    {MODEL_KIND_POD, POD(",\"spec\":{\"nodeName\":{}}"), "spec.nodeName: expected a string"},
    {MODEL_KIND_POD, "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"deletionTimestamp\":0}}",
     "metadata.deletionTimestamp: expected a string"},
    {MODEL_KIND_POD,
     "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"labels\":{\"a\":\"b\"}},"
     "\"status\":{\"podIP\":\"10.0.0.1\",\"phase\":\"Running\",\"conditions\":[7]}}",
     "status.conditions[0]: expected an object"},
    {MODEL_KIND_NODE, "{\"metadata\":{\"name\":\"n\",\"labels\":\"zone=a\"}}",
     "Node n: metadata.labels: expected an object"},
    {MODEL_KIND_NODE, "{\"kind\":7,\"metadata\":{\"name\":\"n\"}}", "kind: expected a string"},
    {MODEL_KIND_NAMESPACE, "{\"metadata\":{\"name\":\"\"}}", "Namespace: metadata.name: missing"},
    {MODEL_KIND_NAMESPACE, "{\"metadata\":{\"name\":\"x\",\"labels\":{\"a\":null}}}",
     "metadata.labels[a]: expected a string, got null"},
};

START_TEST(decode_malformed_inputs_rejected)
{
    expect_decode_error(malformed[_i].kind, malformed[_i].json, malformed[_i].want);
}
END_TEST

START_TEST(decode_oversized_objects_rejected)
{
    json_t *ports = json_array();
    for (int i = 0; i < KUBE_MAX_PORTS + 1; i++)
        json_array_append_new(ports, json_pack("{s:i}", "port", 1 + i % 60000));
    json_t *svc = json_pack("{s:{s:s,s:s},s:{s:o}}", "metadata", "name", "a", "namespace", "n",
                            "spec", "ports", ports);
    char err[MODEL_ERRLEN];
    void *obj = NULL;
    ck_assert_int_eq(kube_decode(MODEL_KIND_SERVICE, svc, &obj, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "spec.ports: 1001 entries, more than the limit of 1000"), "%s", err);
    json_decref(svc);

    json_t *eps = json_array();
    for (int i = 0; i < KUBE_MAX_ENDPOINTS + 1; i++)
        json_array_append_new(eps, json_pack("{s:[s]}", "addresses", "10.0.0.1"));
    json_t *es = json_pack("{s:{s:s,s:s,s:{s:s}},s:s,s:o}", "metadata", "name", "s", "namespace",
                           "n", "labels", "kubernetes.io/service-name", "x", "addressType", "IPv4",
                           "endpoints", eps);
    ck_assert_int_eq(kube_decode(MODEL_KIND_ENDPOINTSLICE, es, &obj, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "endpoints: 10001 entries, more than the limit"), "%s", err);
    /* exactly at the limit is fine */
    json_array_remove(eps, 0);
    ck_assert_int_eq(kube_decode(MODEL_KIND_ENDPOINTSLICE, es, &obj, err, sizeof(err)), 0);
    ck_assert_uint_eq(((model_endpointslice_t *)obj)->nendpoints, KUBE_MAX_ENDPOINTS);
    model_obj_free(MODEL_KIND_ENDPOINTSLICE, obj);
    json_decref(es);
}
END_TEST

START_TEST(decode_short_error_buffer_is_safe)
{
    char err[8];
    void *obj = NULL;
    json_t *j = parse(SVC("{\"ports\":[{\"port\":\"80\"}]}"));
    ck_assert_int_eq(kube_decode(MODEL_KIND_SERVICE, j, &obj, err, sizeof(err)), -1);
    ck_assert_uint_lt(strlen(err), sizeof(err));
    ck_assert_int_eq(kube_decode(MODEL_KIND_SERVICE, j, &obj, NULL, 0), -1);
    json_decref(j);
}
END_TEST

/* ---------- ServiceScope ---------- */

static int keep_first(json_t *doc, void *arg)
{
    json_t **out = arg;
    if (!*out)
        *out = json_incref(doc);
    return 0;
}

static json_t *load_yaml(const char *name)
{
    char err[MODEL_ERRLEN];
    json_t *doc = NULL;
    int rc = kube_manifest_load_file(data_path(name), keep_first, &doc, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_ptr_nonnull(doc);
    return doc;
}

static model_labels_t labels_of(const char *k1, const char *v1, const char *k2, const char *v2)
{
    model_labels_t l = {0};
    if (k1)
        model_labels_set(&l, k1, v1);
    if (k2)
        model_labels_set(&l, k2, v2);
    return l;
}

static model_scope_t eval(const model_scope_rules_t *r, model_labels_t ns, model_labels_t svc)
{
    model_scope_t s = model_scope_eval(r, &ns, &svc).scope;
    model_labels_clear(&ns);
    model_labels_clear(&svc);
    return s;
}

START_TEST(servicescope_and_or_rules)
{
    json_t *doc = load_yaml("servicescope.yaml");
    model_scope_rules_t *r = model_scope_rules_new();
    char err[MODEL_ERRLEN];
    ck_assert_msg(kube_decode_servicescope(doc, r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(model_scope_rules_count(r), 3);
    ck_assert_str_eq(model_scope_rules_at(r, 0)->origin, "ServiceScope/default[0]");
    ck_assert_str_eq(model_scope_rules_at(r, 2)->origin, "ServiceScope/default[2]");
    ck_assert_int_eq(model_scope_rules_at(r, 0)->scope, MODEL_SCOPE_GLOBAL);
    ck_assert_int_eq(model_scope_rules_at(r, 2)->scope, MODEL_SCOPE_LOCAL);
    ck_assert_ptr_nonnull(model_scope_rules_at(r, 0)->namespace_sel);
    ck_assert_ptr_null(model_scope_rules_at(r, 1)->namespace_sel); /* absent: matches all */

    /* rule 0 ANDs its namespace and service selectors */
    ck_assert_int_eq(
        eval(r, labels_of("mesh", "global", NULL, NULL), labels_of("tier", "api", NULL, NULL)),
        MODEL_SCOPE_GLOBAL);
    ck_assert_int_eq(
        eval(r, labels_of("mesh", "global", NULL, NULL), labels_of("tier", "db", NULL, NULL)),
        MODEL_SCOPE_LOCAL);
    ck_assert_int_eq(
        eval(r, labels_of("mesh", "other", NULL, NULL), labels_of("tier", "api", NULL, NULL)),
        MODEL_SCOPE_LOCAL);
    /* rules are ORed: rule 1 alone makes exported services global anywhere */
    ck_assert_int_eq(
        eval(r, labels_of(NULL, NULL, NULL, NULL), labels_of("exported", "true", "tier", "db")),
        MODEL_SCOPE_GLOBAL);
    ck_assert_int_eq(
        eval(r, labels_of(NULL, NULL, NULL, NULL), labels_of("exported", "false", NULL, NULL)),
        MODEL_SCOPE_LOCAL);
    model_scope_rules_free(r);
    json_decref(doc);
}
END_TEST

#define SCOPE(rules)                                                                               \
    "{\"apiVersion\":\"meshfed.io/v1alpha1\",\"kind\":\"ServiceScope\",\"metadata\":{\"name\":"    \
    "\"s\"},\"spec\":{\"rules\":" rules "}}"
#define GOOD_RULE "{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchLabels\":{\"a\":\"b\"}}}"

static const struct {
    const char *json, *want;
} bad_scopes[] = {
    {SCOPE("[{\"scope\":\"global2\"}]"), "spec.rules[0].scope: unknown scope \"global2\""},
    {SCOPE("[{\"scope\":\"global\"}]"), "unknown scope \"global\""},
    {SCOPE("[" GOOD_RULE ",{\"namespaceSelector\":{}}]"), "spec.rules[1].scope: missing"},
    {SCOPE("[{\"scope\":1}]"), "spec.rules[0].scope: expected a string, got integer"},
    {SCOPE("[" GOOD_RULE ",{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchExpressions\":"
           "[{\"key\":\"tier\",\"operator\":\"Equals\",\"values\":[\"a\"]}]}}]"),
     "ServiceScope s: spec.rules[1].servicesSelector.matchExpressions[0].operator: unknown "
     "operator \"Equals\""},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchExpressions\":"
           "[{\"key\":\"tier\",\"operator\":\"in\",\"values\":[\"a\"]}]}}]"),
     "unknown operator \"in\""},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchExpressions\":"
           "[{\"key\":\"tier\",\"operator\":\"In\"}]}}]"),
     "matchExpressions[0].values: operator In needs at least one value"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"key\":\"tier\",\"operator\":\"NotIn\",\"values\":[]}]}}]"),
     "operator NotIn needs at least one value"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"key\":\"tier\",\"operator\":\"Exists\",\"values\":[\"x\"]}]}}]"),
     "operator Exists takes no values"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"operator\":\"Exists\"}]}}]"),
     "matchExpressions[0].key: missing"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"key\":\"a\"}]}}]"),
     "matchExpressions[0].operator: missing"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"key\":1,\"operator\":\"Exists\"}]}}]"),
     "matchExpressions[0].key: expected a string, got integer"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"key\":\"a\",\"operator\":\"In\",\"values\":\"x\"}]}}]"),
     "matchExpressions[0].values: expected an array, got string"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
           "[{\"key\":\"a\",\"operator\":\"In\",\"values\":[\"x\",2]}]}}]"),
     "matchExpressions[0].values[1]: expected a string, got integer"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":{}}}]"),
     "namespaceSelector.matchExpressions: expected an array, got object"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":[\"a=b\"]}}]"),
     "namespaceSelector.matchExpressions[0]: expected an object, got string"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchLabels\":[\"a\"]}}]"),
     "spec.rules[0].namespaceSelector.matchLabels: expected an object, got array"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchLabels\":{\"a\":true}}}]"),
     "namespaceSelector.matchLabels[a]: expected a string, got boolean"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchLabels\":{\"bad key!\":\"x\"}}}]"),
     "namespaceSelector.matchLabels[bad key!]: "},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":\"mesh=global\"}]"),
     "spec.rules[0].namespaceSelector: expected an object, got string"},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"serviceSelector\":{\"matchLabels\":{\"a\":\"b\"}}}]"),
     "spec.rules[0]: unknown field \"serviceSelector\""},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchlabels\":{\"a\":\"b\"}}}]"),
     "servicesSelector: unknown field \"matchlabels\""},
    {SCOPE("[{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchExpressions\":"
           "[{\"key\":\"a\",\"operator\":\"Exists\",\"value\":[]}]}}]"),
     "unknown field \"value\""},
    {SCOPE("[\"GLOBAL\"]"), "spec.rules[0]: expected an object, got string"},
    {SCOPE("{}"), "spec.rules: expected an array, got object"},
    {"{\"apiVersion\":\"meshfed.io/v1\",\"kind\":\"ServiceScope\",\"metadata\":{\"name\":\"s\"}}",
     "apiVersion: \"meshfed.io/v1\", expected \"meshfed.io/v1alpha1\""},
    {"{\"kind\":\"Service\",\"metadata\":{\"name\":\"s\"}}", "kind: \"Service\""},
    {"{\"kind\":\"ServiceScope\",\"spec\":{\"rules\":[]}}", "ServiceScope: metadata.name: missing"},
    {"[]", "expected an object, got array"},
};

START_TEST(servicescope_invalid_rules_rejected)
{
    model_scope_rules_t *r = model_scope_rules_default();
    size_t before = model_scope_rules_count(r);
    char err[MODEL_ERRLEN] = "";
    json_t *j = parse(bad_scopes[_i].json);
    ck_assert_int_eq(kube_decode_servicescope(j, r, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, bad_scopes[_i].want), "error \"%s\" lacks \"%s\"", err,
                  bad_scopes[_i].want);
    size_t good = 0; /* the valid rules next to the bad one still apply */
    for (const char *q = bad_scopes[_i].json; (q = strstr(q, GOOD_RULE)); q++)
        good++;
    ck_assert_uint_eq(model_scope_rules_count(r), before + good);
    json_decref(j);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(servicescope_invalid_operator_rejected)
{
    /* the named case of the table above, with its exact message */
    model_scope_rules_t *r = model_scope_rules_new();
    char err[MODEL_ERRLEN];
    json_t *j = parse(SCOPE("[{\"scope\":\"LOCAL\",\"namespaceSelector\":{\"matchExpressions\":"
                            "[{\"key\":\"k\",\"operator\":\"Equals\",\"values\":[\"v\"]}]}}]"));
    ck_assert_int_eq(kube_decode_servicescope(j, r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "ServiceScope s: spec.rules[0].namespaceSelector.matchExpressions[0]."
                          "operator: unknown operator \"Equals\" (want In, NotIn, Exists or "
                          "DoesNotExist)");
    ck_assert_uint_eq(model_scope_rules_count(r), 0);
    json_decref(j);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(servicescope_invalid_rule_skipped_others_apply)
{
    /* as istiod reads serviceScopeConfigs: one bad rule costs only itself */
    model_scope_rules_t *r = model_scope_rules_new();
    char err[MODEL_ERRLEN];
    json_t *j = parse(
        SCOPE("[{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchLabels\":{\"a\":\"1\"}}},"
              "{\"scope\":\"SOMETIMES\"},"
              "{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchExpressions\":"
              "[{\"key\":\"k\",\"operator\":\"Equals\",\"values\":[\"v\"]}]}},"
              "{\"scope\":\"GLOBAL\",\"servicesSelector\":{\"matchLabels\":{\"b\":\"2\"}}}]"));
    ck_assert_int_eq(kube_decode_servicescope(j, r, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "spec.rules[1].scope"), "first reason reported: %s", err);
    ck_assert_uint_eq(model_scope_rules_count(r), 2);
    ck_assert_str_eq(model_scope_rules_at(r, 0)->origin, "ServiceScope/s[0]");
    ck_assert_str_eq(model_scope_rules_at(r, 1)->origin, "ServiceScope/s[3]");
    json_decref(j);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(servicescope_empty_and_missing_rules_add_nothing)
{
    model_scope_rules_t *r = model_scope_rules_new();
    char err[MODEL_ERRLEN];
    json_t *j = parse(SCOPE("[]"));
    ck_assert_int_eq(kube_decode_servicescope(j, r, err, sizeof(err)), 0);
    json_decref(j);
    j = parse("{\"kind\":\"ServiceScope\",\"metadata\":{\"name\":\"x\"}}");
    ck_assert_int_eq(kube_decode_servicescope(j, r, err, sizeof(err)), 0);
    json_decref(j);
    ck_assert_uint_eq(model_scope_rules_count(r), 0);
    model_scope_rules_free(r);
}
END_TEST

START_TEST(scope_configs_meshconfig_origins_and_errors)
{
    model_scope_rules_t *r = model_scope_rules_new();
    char err[MODEL_ERRLEN];
    json_t *arr = parse("[{\"scope\":\"GLOBAL\",\"namespaceSelector\":{\"matchLabels\":"
                        "{\"mesh\":\"on\"}}},{\"scope\":\"LOCAL\",\"servicesSelector\":{}}]");
    ck_assert_msg(kube_decode_scope_configs(arr, NULL, r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(model_scope_rules_count(r), 2);
    ck_assert_str_eq(model_scope_rules_at(r, 0)->origin, "MeshConfig[0]");
    ck_assert_str_eq(model_scope_rules_at(r, 1)->origin, "MeshConfig[1]");
    ck_assert_ptr_nonnull(model_scope_rules_at(r, 1)->service_sel); /* {} is empty, not NULL */
    json_decref(arr);

    arr = parse("[{\"scope\":\"GLOBAL\"},{\"scope\":\"EVERYWHERE\"}]");
    ck_assert_int_eq(kube_decode_scope_configs(arr, "mesh-config-cm", r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "mesh-config-cm: serviceScopeConfigs[1].scope: unknown scope "
                          "\"EVERYWHERE\" (want GLOBAL or LOCAL)");
    ck_assert_uint_eq(model_scope_rules_count(r), 3); /* [0] applies, [1] is skipped */
    json_decref(arr);

    arr = parse("{\"scope\":\"GLOBAL\"}");
    ck_assert_int_eq(kube_decode_scope_configs(arr, NULL, r, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "expected an array"));
    json_decref(arr);
    ck_assert_int_eq(kube_decode_scope_configs(NULL, NULL, r, err, sizeof(err)), 0);
    ck_assert_int_eq(kube_decode_scope_configs(json_null(), NULL, r, err, sizeof(err)), 0);
    ck_assert_uint_eq(model_scope_rules_count(r), 3);
    model_scope_rules_free(r);
}
END_TEST

/* ---------- manifests ---------- */

typedef struct docs {
    json_t *all; /* array of the documents seen */
    int stop_at; /* return nonzero on this call (1-based), 0 never */
} docs_t;

static int collect(json_t *doc, void *arg)
{
    docs_t *d = arg;
    json_array_append(d->all, doc);
    return d->stop_at && (int)json_array_size(d->all) == d->stop_at ? 7 : 0;
}

static json_t *load_all_file(const char *name)
{
    docs_t d = {.all = json_array()};
    char err[MODEL_ERRLEN];
    int rc = kube_manifest_load_file(data_path(name), collect, &d, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    return d.all;
}

static json_t *load_all_string(const char *text)
{
    docs_t d = {.all = json_array()};
    char err[MODEL_ERRLEN];
    int rc = kube_manifest_load_string(text, strlen(text), collect, &d, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    return d.all;
}

static void expect_yaml_error(const char *text, const char *want)
{
    docs_t d = {.all = json_array()};
    char err[MODEL_ERRLEN] = "";
    int rc = kube_manifest_load_string(text, strlen(text), collect, &d, err, sizeof(err));
    ck_assert_msg(rc == -1, "loaded but should not: %s", text);
    ck_assert_msg(strstr(err, want), "error \"%s\" lacks \"%s\"", err, want);
    json_decref(d.all);
}

static const char *kind_of(const json_t *docs, size_t i)
{
    return json_string_value(json_object_get(json_array_get(docs, i), "kind"));
}

START_TEST(manifest_multi_doc_list_expanded_empty_skipped)
{
    json_t *docs = load_all_file("multi.yaml");
    ck_assert_uint_eq(json_array_size(docs), 4);
    ck_assert_str_eq(kind_of(docs, 0), "Namespace");
    ck_assert_str_eq(kind_of(docs, 1), "Service");
    ck_assert_str_eq(kind_of(docs, 2), "Service");
    ck_assert_str_eq(kind_of(docs, 3), "ConfigMap");
    json_decref(docs);
}
END_TEST

START_TEST(manifest_quoted_true_stays_string)
{
    json_t *docs = load_all_file("multi.yaml");
    json_t *labels =
        json_object_get(json_object_get(json_array_get(docs, 0), "metadata"), "labels");
    ck_assert(json_is_string(json_object_get(labels, "quoted-true")));
    ck_assert_str_eq(json_string_value(json_object_get(labels, "quoted-true")), "true");
    ck_assert_str_eq(json_string_value(json_object_get(labels, "plain-number")), "42");
    json_t *v = json_object_get(json_array_get(docs, 3), "values");
    ck_assert(json_is_true(json_object_get(v, "plain_true")));
    ck_assert(json_is_string(json_object_get(v, "quoted_true")));
    ck_assert_str_eq(json_string_value(json_object_get(v, "single_quoted")), "false");
    json_decref(docs);
}
END_TEST

START_TEST(manifest_scalars_follow_yaml12_core_schema)
{
    json_t *docs = load_all_file("multi.yaml");
    json_t *cm = json_array_get(docs, 3);
    json_t *v = json_object_get(cm, "values");
    ck_assert(json_is_null(json_object_get(cm, "data")));
    ck_assert_int_eq(json_integer_value(json_object_get(v, "int")), 42);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "negative")), -17);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "hex")), 31);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "octal")), 15);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "leading_zero")),
                     12); /* not 1.1 octal */
    ck_assert(json_is_real(json_object_get(v, "float")));
    ck_assert_double_eq(json_real_value(json_object_get(v, "float")), 3.25);
    ck_assert_double_eq(json_real_value(json_object_get(v, "exp")), 1000.0);
    ck_assert(json_is_null(json_object_get(v, "null_tilde")));
    ck_assert(json_is_null(json_object_get(v, "empty")));
    ck_assert_str_eq(json_string_value(json_object_get(v, "yes_is_string")), "yes");
    ck_assert_str_eq(json_string_value(json_object_get(v, "on_is_string")), "on");
    ck_assert_str_eq(json_string_value(json_object_get(v, "version")), "1.20.2");
    ck_assert_str_eq(json_string_value(json_object_get(v, "str_tag")), "123");
    ck_assert_str_eq(json_string_value(json_object_get(v, "block")), "line one\nline two\n");
    json_decref(docs);
}
END_TEST

START_TEST(manifest_documents_decode_into_models)
{
    json_t *docs = load_all_file("multi.yaml");
    char err[MODEL_ERRLEN];
    for (size_t i = 0; i < 3; i++) {
        json_t *d = json_array_get(docs, i);
        model_kind_t k;
        ck_assert_int_eq(kube_kind_lookup(json_string_value(json_object_get(d, "apiVersion")),
                                          kind_of(docs, i), &k),
                         0);
        void *obj = NULL;
        ck_assert_msg(kube_decode(k, d, &obj, err, sizeof(err)) == 0, "doc %zu: %s", i, err);
        if (i == 1) {
            model_service_t *s = obj;
            ck_assert_str_eq(s->ports[0].target_port_name, "http-web");
        }
        if (i == 2) {
            model_service_t *s = obj;
            ck_assert_int_eq(s->ports[0].target_port, 9080);
            ck_assert_str_eq(ipstr(&s->cluster_ips[0]), "10.96.0.20");
        }
        model_obj_free(k, obj);
    }
    json_decref(docs);
}
END_TEST

START_TEST(manifest_malformed_yaml_reports_line)
{
    char err[MODEL_ERRLEN] = "";
    docs_t d = {.all = json_array()};
    const char *path = data_path("malformed.yaml");
    char want[1100];
    ck_assert_int_eq(kube_manifest_load_file(path, collect, &d, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:7:", path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error \"%s\" does not start with %s", err,
                  want);
    ck_assert_uint_eq(json_array_size(d.all), 0);
    json_decref(d.all);

    expect_yaml_error("a: 1\nb: \"unterminated\n", "<string>:");
    expect_yaml_error("a: [1, 2\n", "<string>:");
    expect_yaml_error("kind: A\n---\nkey: value\n\tbad: tab\n", "<string>:4:");
}
END_TEST

START_TEST(manifest_rejects_aliases_duplicates_and_non_mappings)
{
    expect_yaml_error("a: &x {b: 1}\nc: *x\n", "<string>:2:4: aliases are not supported");
    expect_yaml_error("metadata:\n  name: a\n  name: b\n", "<string>:3:3: duplicate key \"name\"");
    /* JSON manifests too: the same rule (and words) as the watcher's */
    expect_yaml_error("{\"metadata\": {\"name\": \"a\", \"name\": \"b\"}}",
                      "duplicate key \"name\"");
    expect_yaml_error("? [a, b]\n: c\n", "mapping keys must be scalars");
    expect_yaml_error("- a\n- b\n", "<string>:1:1: document is not a mapping");
    expect_yaml_error("just a string\n", "document is not a mapping");
    expect_yaml_error("x: .inf\n", "infinite or NaN");
    expect_yaml_error("x: .nan\n", "infinite or NaN");
    expect_yaml_error("x: !!int abc\n", "cannot have tag");
    expect_yaml_error("kind: List\nitems: [1]\n", "List: items[0] is not a mapping");
    expect_yaml_error("kind: List\nitems: {a: 1}\n", "items is not a sequence");
}
END_TEST

START_TEST(manifest_json_input_and_empty_streams)
{
    json_t *docs = load_all_string("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
                                   "{\"name\":\"x\",\"labels\":{\"a\":\"true\"}},\"n\":[1,2.5,"
                                   "true,null]}");
    ck_assert_uint_eq(json_array_size(docs), 1);
    json_t *d = json_array_get(docs, 0);
    ck_assert(json_is_string(
        json_object_get(json_object_get(json_object_get(d, "metadata"), "labels"), "a")));
    json_t *n = json_object_get(d, "n");
    ck_assert(json_is_integer(json_array_get(n, 0)));
    ck_assert(json_is_real(json_array_get(n, 1)));
    ck_assert(json_is_true(json_array_get(n, 2)));
    ck_assert(json_is_null(json_array_get(n, 3)));
    json_decref(docs);

    const char *empties[] = {"", "# only a comment\n", "---\n---\n...\n", "--- ~\n", "null\n"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        docs = load_all_string(empties[i]);
        ck_assert_msg(json_array_size(docs) == 0, "case %zu", i);
        json_decref(docs);
    }
}
END_TEST

START_TEST(manifest_typed_list_items_get_kind)
{
    json_t *docs = load_all_string("apiVersion: v1\nkind: ServiceList\nmetadata: {}\nitems:\n"
                                   "- metadata: {name: a, namespace: n}\n"
                                   "- metadata: {name: b, namespace: n}\n  kind: Service\n");
    ck_assert_uint_eq(json_array_size(docs), 2);
    ck_assert_str_eq(kind_of(docs, 0), "Service");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(docs, 0), "apiVersion")),
                     "v1");
    json_decref(docs);
    /* a kind merely ending in List, without items, is an ordinary document */
    docs = load_all_string("kind: AllowList\nspec: {}\n");
    ck_assert_uint_eq(json_array_size(docs), 1);
    json_decref(docs);
}
END_TEST

START_TEST(manifest_callback_can_stop)
{
    docs_t d = {.all = json_array(), .stop_at = 2};
    char err[MODEL_ERRLEN];
    const char *text = "a: 1\n---\nb: 2\n---\nc: 3\n---\nbroken: [\n";
    ck_assert_int_eq(kube_manifest_load_string(text, strlen(text), collect, &d, err, sizeof(err)),
                     7);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(json_array_size(d.all), 2);
    json_decref(d.all);
}
END_TEST

START_TEST(manifest_missing_file_reported)
{
    docs_t d = {.all = json_array()};
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(kube_manifest_load_file("/nonexistent/x.yaml", collect, &d, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/x.yaml: "));
    json_decref(d.all);
}
END_TEST

START_TEST(manifest_deep_nesting_rejected)
{
    char text[1024] = "";
    for (int i = 0; i < 150; i++)
        strcat(text, "[");
    expect_yaml_error(text, "nested more than");
}
END_TEST

/* ---------- suite ---------- */

static Suite *decode_suite(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, decode_service_named_target_port);
    tcase_add_test(tc, decode_service_lb_ingress_ips_skip_hostnames);
    tcase_add_test(tc, decode_service_headless_unnamed_port_defaults);
    tcase_add_test(tc, decode_service_cluster_ip_fallback);
    tcase_add_test(tc, decode_service_traffic_distribution_spec_wins);
    tcase_add_test(tc, decode_endpointslice_ready_unready_terminating);
    tcase_add_test(tc, decode_endpointslice_condition_defaults);
    tcase_add_test(tc, decode_endpointslice_fqdn_has_no_endpoints);
    tcase_add_test(tc, decode_endpointslice_port_name_and_number_optional);
    tcase_add_test(tc, decode_pod_ready_with_dual_stack_ips);
    tcase_add_test(tc, decode_pod_terminating_default_service_account);
    tcase_add_test(tc, decode_pod_ready_from_condition_terminal_from_phase);
    tcase_add_test(tc, decode_istiod_inputs);
    tcase_add_test(tc, decode_node_topology_labels);
    tcase_add_test(tc, decode_namespace_labels);
    tcase_add_test(tc, decode_gateway_allowed_routes_and_status);
    tcase_add_test(tc, decode_canary_weight_annotation);
    tcase_add_test(tc, decode_missing_name_rejected_for_every_kind);
    tcase_add_test(tc, decode_kind_mismatch_rejected);
    tcase_add_test(tc, kind_lookup_known_and_unknown);
    tcase_add_loop_test(tc, decode_malformed_inputs_rejected, 0,
                        sizeof(malformed) / sizeof(malformed[0]));
    tcase_add_test(tc, decode_oversized_objects_rejected);
    tcase_add_test(tc, decode_short_error_buffer_is_safe);
    suite_add_tcase(s, tc);

    tc = tcase_create("servicescope");
    tcase_add_test(tc, servicescope_and_or_rules);
    tcase_add_loop_test(tc, servicescope_invalid_rules_rejected, 0,
                        sizeof(bad_scopes) / sizeof(bad_scopes[0]));
    tcase_add_test(tc, servicescope_invalid_operator_rejected);
    tcase_add_test(tc, servicescope_empty_and_missing_rules_add_nothing);
    tcase_add_test(tc, servicescope_invalid_rule_skipped_others_apply);
    tcase_add_test(tc, scope_configs_meshconfig_origins_and_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("manifest");
    tcase_add_test(tc, manifest_multi_doc_list_expanded_empty_skipped);
    tcase_add_test(tc, manifest_quoted_true_stays_string);
    tcase_add_test(tc, manifest_scalars_follow_yaml12_core_schema);
    tcase_add_test(tc, manifest_documents_decode_into_models);
    tcase_add_test(tc, manifest_malformed_yaml_reports_line);
    tcase_add_test(tc, manifest_rejects_aliases_duplicates_and_non_mappings);
    tcase_add_test(tc, manifest_json_input_and_empty_streams);
    tcase_add_test(tc, manifest_typed_list_items_get_kind);
    tcase_add_test(tc, manifest_callback_can_stop);
    tcase_add_test(tc, manifest_missing_file_reported);
    tcase_add_test(tc, manifest_deep_nesting_rejected);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(decode_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures != 0;
}
