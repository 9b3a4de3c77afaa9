/*
 * test_ctl_gateway.c - recognising a network's east-west gateway
 * (gateway.c): an Istio east-west Gateway API Gateway, or the older
 * labelled load-balancer Service, and what a cluster records of it.
 */
#include "ctl_int.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* A usable east-west Gateway; tests break one part of it at a time. */
static const char *const GW =
    "{\"apiVersion\": \"gateway.networking.k8s.io/v1\", \"kind\": \"Gateway\","
    " \"metadata\": {\"namespace\": \"istio-system\", \"name\": \"istio-eastwest\","
    "   \"labels\": {\"topology.istio.io/network\": \"network-east\"}},"
    " \"spec\": {\"gatewayClassName\": \"istio-east-west\", \"listeners\": ["
    "   {\"name\": \"mesh\", \"port\": 15008, \"protocol\": \"HBONE\","
    "    \"tls\": {\"mode\": \"Terminate\"}}]},"
    " \"status\": {\"addresses\": [{\"type\": \"IPAddress\", \"value\": \"192.0.2.10\"}]}}";

static json_t *gw(void)
{
    json_t *o = json_loads(GW, 0, NULL);
    ck_assert_ptr_nonnull(o);
    return o;
}

static json_t *at(json_t *o, const char *a, const char *b)
{
    return json_object_get(json_object_get(o, a), b);
}

static json_t *listener(json_t *o)
{
    return json_array_get(at(o, "spec", "listeners"), 0);
}

static int from(json_t *o, ctl_gateway_t *g)
{
    int rc = ctl_gateway_from_json(o, g);
    json_decref(o);
    return rc;
}

START_TEST(gateway_east_west_with_ip_is_usable)
{
    ctl_gateway_t g;
    ck_assert_int_eq(from(gw(), &g), 1);
    ck_assert_str_eq(g.network, "network-east");
    ck_assert_str_eq(g.ns, "istio-system");
    ck_assert_str_eq(g.name, "istio-eastwest");
    ck_assert_str_eq(g.sa, "istio-eastwest");
    ck_assert_int_eq(g.port, 15008);
    char ip[64];
    ck_assert_str_eq(model_ip_format(&g.ip, ip, sizeof(ip)), "192.0.2.10");
    ck_assert_str_eq(g.hostname, "");
    ck_assert_str_eq(g.problem, "");
}
END_TEST

START_TEST(gateway_service_account_annotation_overrides_name)
{
    json_t *o = gw();
    json_object_set_new(json_object_get(o, "metadata"), "annotations",
                        json_pack("{s:s}", "gateway.istio.io/service-account", "ew-sa"));
    ctl_gateway_t g;
    ck_assert_int_eq(from(o, &g), 1);
    ck_assert_str_eq(g.sa, "ew-sa");
}
END_TEST

START_TEST(gateway_other_class_or_no_class_is_not_east_west)
{
    ctl_gateway_t g;
    json_t *o = gw();
    json_object_set_new(json_object_get(o, "spec"), "gatewayClassName", json_string("istio"));
    ck_assert_int_eq(from(o, &g), 0);
    o = gw();
    json_object_del(json_object_get(o, "spec"), "gatewayClassName");
    ck_assert_int_eq(from(o, &g), 0);
    o = gw();
    json_object_set_new(json_object_get(o, "spec"), "gatewayClassName", json_integer(1));
    ck_assert_int_eq(from(o, &g), 0);
}
END_TEST

START_TEST(gateway_malformed_objects_are_not_gateways)
{
    ctl_gateway_t g;
    ck_assert_int_eq(from(json_string("Gateway"), &g), 0);
    ck_assert_int_eq(from(json_array(), &g), 0);
    ck_assert_int_eq(from(json_object(), &g), 0);
    ck_assert_int_eq(ctl_gateway_from_json(NULL, &g), 0);
}
END_TEST

START_TEST(gateway_without_network_label_says_so)
{
    json_t *o = gw();
    json_object_clear(at(o, "metadata", "labels"));
    ctl_gateway_t g;
    ck_assert_int_eq(from(o, &g), -1);
    ck_assert_str_eq(g.problem,
                     "Gateway istio-system/istio-eastwest has no topology.istio.io/network label");
    ck_assert_str_eq(g.name, "istio-eastwest");
    o = gw();
    json_object_set_new(at(o, "metadata", "labels"), "topology.istio.io/network", json_string(""));
    ck_assert_int_eq(from(o, &g), -1);
}
END_TEST

START_TEST(gateway_without_namespace_or_name_says_so)
{
    json_t *o = gw();
    json_object_del(json_object_get(o, "metadata"), "name");
    ctl_gateway_t g;
    ck_assert_int_eq(from(o, &g), -1);
    ck_assert_str_eq(g.problem, "Gateway without namespace or name");
    o = gw();
    json_object_set_new(json_object_get(o, "metadata"), "namespace", json_integer(3));
    ck_assert_int_eq(from(o, &g), -1);
    ck_assert_str_eq(g.problem, "Gateway without namespace or name");
}
END_TEST

START_TEST(gateway_needs_an_hbone_listener_terminating_tls)
{
    const char *want = "Gateway istio-system/istio-eastwest has no HBONE listener with tls.mode "
                       "Terminate";
    ctl_gateway_t g;
    json_t *o = gw();
    json_object_set_new(json_object_get(listener(o), "tls"), "mode", json_string("Passthrough"));
    ck_assert_int_eq(from(o, &g), -1);
    ck_assert_str_eq(g.problem, want);
    o = gw();
    json_object_set_new(listener(o), "protocol", json_string("TLS"));
    ck_assert_int_eq(from(o, &g), -1);
    o = gw();
    json_object_del(listener(o), "tls");
    ck_assert_int_eq(from(o, &g), -1);
    const json_int_t ports[] = {0, -1, 65536};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        o = gw();
        json_object_set_new(listener(o), "port", json_integer(ports[i]));
        ck_assert_int_eq(from(o, &g), -1);
    }
    o = gw();
    json_object_set_new(listener(o), "port", json_string("15008"));
    ck_assert_int_eq(from(o, &g), -1);
    o = gw();
    json_object_set_new(json_object_get(o, "spec"), "listeners", json_object());
    ck_assert_int_eq(from(o, &g), -1);
    ck_assert_str_eq(g.problem, want);
}
END_TEST

START_TEST(gateway_takes_the_first_hbone_listener)
{
    json_t *o = gw();
    json_t *ls = at(o, "spec", "listeners");
    json_array_insert_new(ls, 0, json_pack("{s:i, s:s}", "port", 443, "protocol", "HTTPS"));
    json_array_append_new(ls, json_pack("{s:i, s:s, s:{s:s}}", "port", 15009, "protocol", "HBONE",
                                        "tls", "mode", "Terminate"));
    ctl_gateway_t g;
    ck_assert_int_eq(from(o, &g), 1);
    ck_assert_int_eq(g.port, 15008);
}
END_TEST

START_TEST(gateway_address_first_usable_ip_or_hostname)
{
    ctl_gateway_t g;
    char ip[64];
    /* type absent is IPAddress; empty and unparsable values are skipped */
    json_t *o = gw();
    json_object_set_new(json_object_get(o, "status"), "addresses",
                        json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s}]", "type", "IPAddress", "value",
                                  "", "type", "IPAddress", "value", "not-an-ip", "value",
                                  "2001:db8::1"));
    ck_assert_int_eq(from(o, &g), 1);
    ck_assert_str_eq(model_ip_format(&g.ip, ip, sizeof(ip)), "2001:db8::1");
    o = gw();
    json_object_set_new(json_object_get(o, "status"), "addresses",
                        json_pack("[{s:s, s:s}]", "type", "Hostname", "value", "ew.example.com"));
    ck_assert_int_eq(from(o, &g), 1);
    ck_assert_str_eq(g.hostname, "ew.example.com");
    ck_assert_int_eq(g.ip.len, 0);
}
END_TEST

START_TEST(gateway_without_usable_address_is_not_ready_yet)
{
    const char *want =
        "Gateway istio-system/istio-eastwest has no IPAddress or Hostname in status.addresses yet";
    ctl_gateway_t g;
    json_t *o = gw();
    json_object_del(o, "status");
    ck_assert_int_eq(from(o, &g), -1);
    ck_assert_str_eq(g.problem, want);
    ck_assert_str_eq(g.network, "network-east");
    char longname[300];
    memset(longname, 'h', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *bad[] = {"[{\"type\": \"Hostname\", \"value\": \"\"}]",
                         "[{\"type\": \"NamedAddress\", \"value\": \"x\"}]",
                         "[{\"type\": \"Hostname\", \"value\": 7}]", "{}", "[]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o = gw();
        json_object_set_new(json_object_get(o, "status"), "addresses", json_loads(bad[i], 0, NULL));
        ck_assert_msg(from(o, &g) == -1, "%s", bad[i]);
        ck_assert_str_eq(g.problem, want);
    }
    o = gw(); /* a hostname too long to keep */
    json_object_set_new(json_object_get(o, "status"), "addresses",
                        json_pack("[{s:s, s:s}]", "type", "Hostname", "value", longname));
    ck_assert_int_eq(from(o, &g), -1);
}
END_TEST

/* ---------- the older form: a labelled load-balancer Service ---------- */

static model_label_t NET = {"topology.istio.io/network", "network-west"};
static model_svc_port_t PORTS[] = {{.name = "status-port", .port = 15021},
                                   {.name = "tls-hbone", .port = 15443}};

static model_service_t lb_service(model_ip_t *lb)
{
    ck_assert_int_eq(model_ip_parse("198.51.100.7", lb), 0);
    model_service_t s = {.ns = "istio-system", .name = "istio-eastwestgateway"};
    s.labels = (model_labels_t){&NET, 1};
    s.lb_ips = lb;
    s.nlb_ips = 1;
    return s;
}

START_TEST(service_gateway_defaults_to_port_15008)
{
    model_ip_t lb;
    model_service_t s = lb_service(&lb);
    ctl_gateway_t g;
    ck_assert(ctl_gateway_from_service(&s, "istio-system", &g));
    ck_assert_str_eq(g.network, "network-west");
    ck_assert_str_eq(g.ns, "istio-system");
    ck_assert_str_eq(g.name, "istio-eastwestgateway");
    ck_assert_str_eq(g.sa, "istio-eastwestgateway");
    ck_assert_int_eq(g.port, 15008);
    ck_assert(model_ip_equal(&g.ip, &lb));
}
END_TEST

START_TEST(service_gateway_port_named_tls_hbone_wins)
{
    model_ip_t lb;
    model_service_t s = lb_service(&lb);
    s.ports = PORTS;
    s.nports = 2;
    ctl_gateway_t g;
    ck_assert(ctl_gateway_from_service(&s, "istio-system", &g));
    ck_assert_int_eq(g.port, 15443);
}
END_TEST

START_TEST(service_gateway_needs_system_namespace_label_and_lb_ip)
{
    model_ip_t lb;
    ctl_gateway_t g;
    model_service_t s = lb_service(&lb);
    ck_assert(!ctl_gateway_from_service(&s, "other-system", &g));
    s.nlb_ips = 0;
    ck_assert(!ctl_gateway_from_service(&s, "istio-system", &g));
    s = lb_service(&lb);
    s.labels.n = 0;
    ck_assert(!ctl_gateway_from_service(&s, "istio-system", &g));
}
END_TEST

/* ---------- what a cluster records ---------- */

START_TEST(cluster_info_gateway_copies_and_clears)
{
    ctl_gateway_t g;
    json_t *o = gw();
    json_object_set_new(json_object_get(o, "status"), "addresses",
                        json_pack("[{s:s, s:s}]", "type", "Hostname", "value", "ew.example.com"));
    ck_assert_int_eq(from(o, &g), 1);
    model_cluster_t c = {.id = "east"};
    ctl_cluster_info_gateway(&c, &g, NULL, NULL);
    ck_assert_str_eq(c.gateway_ns, "istio-system");
    ck_assert_str_eq(c.gateway_name, "istio-eastwest");
    ck_assert_str_eq(c.gateway_sa, "istio-eastwest");
    ck_assert_str_eq(c.gateway_hostname, "ew.example.com");
    ck_assert_int_eq(c.gateway_port, 15008);
    ck_assert_ptr_null(c.gateway_problem);
    /* no gateway: only the namespace and the problem remain */
    ctl_cluster_info_gateway(&c, NULL, "istio-system", "no gateway yet");
    ck_assert_str_eq(c.gateway_ns, "istio-system");
    ck_assert_ptr_null(c.gateway_name);
    ck_assert_ptr_null(c.gateway_hostname);
    ck_assert_str_eq(c.gateway_problem, "no gateway yet");
    ck_assert_int_eq(c.gateway.len, 0);
    ck_assert_int_eq(c.gateway_port, 0);
    /* an empty problem is none */
    ctl_cluster_info_gateway(&c, NULL, NULL, "");
    ck_assert_ptr_null(c.gateway_ns);
    ck_assert_ptr_null(c.gateway_problem);
    ctl_cluster_info_gateway(&c, NULL, NULL, NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl_gateway");
    TCase *t = tcase_create("gateway");
    tcase_add_test(t, gateway_east_west_with_ip_is_usable);
    tcase_add_test(t, gateway_service_account_annotation_overrides_name);
    tcase_add_test(t, gateway_other_class_or_no_class_is_not_east_west);
    tcase_add_test(t, gateway_malformed_objects_are_not_gateways);
    tcase_add_test(t, gateway_without_network_label_says_so);
    tcase_add_test(t, gateway_without_namespace_or_name_says_so);
    tcase_add_test(t, gateway_needs_an_hbone_listener_terminating_tls);
    tcase_add_test(t, gateway_takes_the_first_hbone_listener);
    tcase_add_test(t, gateway_address_first_usable_ip_or_hostname);
    tcase_add_test(t, gateway_without_usable_address_is_not_ready_yet);
    suite_add_tcase(s, t);
    TCase *v = tcase_create("service");
    tcase_add_test(v, service_gateway_defaults_to_port_15008);
    tcase_add_test(v, service_gateway_port_named_tls_hbone_wins);
    tcase_add_test(v, service_gateway_needs_system_namespace_label_and_lb_ip);
    suite_add_tcase(s, v);
    TCase *c = tcase_create("cluster");
    tcase_add_test(c, cluster_info_gateway_copies_and_clears);
    suite_add_tcase(s, c);
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
