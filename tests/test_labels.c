/*
 * test_labels.c - label sets, IP addresses, kind/state names and freeing of
 * fully populated input objects (leaks show up under ASan).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* ---------- labels ---------- */

START_TEST(test_labels_set_get)
{
    model_labels_t l = {0};

    ck_assert_int_eq(model_labels_set(&l, "b", "2"), 0);
    ck_assert_int_eq(model_labels_set(&l, "a", "1"), 0);
    ck_assert_int_eq(model_labels_set(&l, "c", "3"), 0);
    ck_assert_int_eq(model_labels_set(&l, "app.kubernetes.io/name", "x"), 0);
    ck_assert_uint_eq(l.n, 4);
    /* sorted by key, bytewise */
    ck_assert_str_eq(l.kv[0].key, "a");
    ck_assert_str_eq(l.kv[1].key, "app.kubernetes.io/name");
    ck_assert_str_eq(l.kv[2].key, "b");
    ck_assert_str_eq(l.kv[3].key, "c");
    ck_assert_str_eq(model_labels_get(&l, "a"), "1");
    ck_assert_str_eq(model_labels_get(&l, "c"), "3");
    ck_assert_str_eq(model_labels_get(&l, "app.kubernetes.io/name"), "x");
    ck_assert_ptr_null(model_labels_get(&l, "d"));
    ck_assert_ptr_null(model_labels_get(&l, ""));
    ck_assert_ptr_null(model_labels_get(NULL, "a"));
    model_labels_clear(&l);
    ck_assert_uint_eq(l.n, 0);
    ck_assert_ptr_null(l.kv);
    ck_assert_ptr_null(model_labels_get(&l, "a"));
}
END_TEST

START_TEST(test_labels_replace)
{
    model_labels_t l = {0};

    ck_assert_int_eq(model_labels_set(&l, "app", "web"), 0);
    ck_assert_int_eq(model_labels_set(&l, "env", "prod"), 0);
    ck_assert_int_eq(model_labels_set(&l, "app", "db"), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(model_labels_get(&l, "app"), "db");
    ck_assert_int_eq(model_labels_set(&l, "app", ""), 0);
    ck_assert_str_eq(model_labels_get(&l, "app"), "");
    ck_assert_uint_eq(l.n, 2);
    model_labels_clear(&l);
}
END_TEST

/* Many keys in scrambled order: the set stays sorted and searchable. */
START_TEST(test_labels_many)
{
    model_labels_t l = {0};
    char key[16], val[16];

    for (int i = 0; i < 200; i++) {
        int k = (i * 37) % 200;
        snprintf(key, sizeof(key), "k%03d", k);
        snprintf(val, sizeof(val), "v%d", k);
        ck_assert_int_eq(model_labels_set(&l, key, val), 0);
    }
    ck_assert_uint_eq(l.n, 200);
    for (size_t i = 1; i < l.n; i++)
        ck_assert_int_lt(strcmp(l.kv[i - 1].key, l.kv[i].key), 0);
    for (int k = 0; k < 200; k++) {
        snprintf(key, sizeof(key), "k%03d", k);
        snprintf(val, sizeof(val), "v%d", k);
        ck_assert_str_eq(model_labels_get(&l, key), val);
    }
    model_labels_clear(&l);
}
END_TEST

START_TEST(test_labels_equal)
{
    model_labels_t a = {0}, b = {0}, empty = {0};

    ck_assert(model_labels_equal(&empty, &empty));
    ck_assert(model_labels_equal(&empty, NULL));
    model_labels_set(&a, "x", "1");
    model_labels_set(&a, "y", "2");
    model_labels_set(&b, "y", "2");
    ck_assert(!model_labels_equal(&a, &b)); /* different sizes */
    ck_assert(!model_labels_equal(&a, &empty));
    model_labels_set(&b, "x", "1");
    ck_assert(model_labels_equal(&a, &b)); /* insertion order does not matter */
    model_labels_set(&b, "x", "9");
    ck_assert(!model_labels_equal(&a, &b)); /* same keys, other value */
    model_labels_set(&b, "x", "1");
    ck_assert(model_labels_equal(&a, &b));
    model_labels_clear(&b);
    model_labels_set(&b, "x", "1");
    model_labels_set(&b, "z", "2");
    ck_assert(!model_labels_equal(&a, &b)); /* same values, other key */
    model_labels_clear(&a);
    model_labels_clear(&b);
}
END_TEST

/* ---------- IP addresses ---------- */

typedef struct ip_case {
    const char *in;
    int len;          /* 4, 16, or 0: must not parse */
    const char *text; /* canonical form */
} ip_case_t;

static const ip_case_t ip_cases[] = {
    {"10.0.0.1", 4, "10.0.0.1"},
    {"0.0.0.0", 4, "0.0.0.0"},
    {"255.255.255.255", 4, "255.255.255.255"},
    {"::1", 16, "::1"},
    {"::", 16, "::"},
    {"2001:db8::1", 16, "2001:db8::1"},
    {"2001:DB8:0:0:0:0:0:1", 16, "2001:db8::1"},
    {"fd00:10:244:1::5", 16, "fd00:10:244:1::5"},
    {"2001:db8:0:1:0:0:0:1", 16, "2001:db8:0:1::1"},
    {"::ffff:10.1.2.3", 16, "::ffff:10.1.2.3"}, /* IPv4-mapped stays IPv6 */
    {"", 0, NULL},
    {"garbage", 0, NULL},
    {"1.2.3", 0, NULL},
    {"1.2.3.4.5", 0, NULL},
    {"1.2.3.256", 0, NULL},
    {"01.2.3.4", 0, NULL},
    {" 1.2.3.4", 0, NULL},
    {"1.2.3.4 ", 0, NULL},
    {"1.2.3.4/32", 0, NULL},
    {"::g", 0, NULL},
    {"1:2:3:4:5:6:7:8:9", 0, NULL},
    {"2001:db8::1::2", 0, NULL},
    {"fe80::1%eth0", 0, NULL},
};
#define NIP (sizeof(ip_cases) / sizeof(ip_cases[0]))

START_TEST(test_ip_table)
{
    const ip_case_t *c = &ip_cases[_i];
    model_ip_t ip = {.len = 7, .b = {0xaa}};
    char buf[64];

    if (c->len == 0) {
        ck_assert_msg(model_ip_parse(c->in, &ip) == -1, "\"%s\" parsed", c->in);
        ck_assert_int_eq(ip.len, 7); /* untouched on failure */
        ck_assert_int_eq(ip.b[0], 0xaa);
        return;
    }
    ck_assert_msg(model_ip_parse(c->in, &ip) == 0, "\"%s\" did not parse", c->in);
    ck_assert_int_eq(ip.len, c->len);
    ck_assert_str_eq(model_ip_format(&ip, buf, sizeof(buf)), c->text);
    /* the canonical text parses back to the same address */
    model_ip_t again;
    ck_assert_int_eq(model_ip_parse(c->text, &again), 0);
    ck_assert(model_ip_equal(&ip, &again));
}
END_TEST

START_TEST(test_ip_bytes_and_equal)
{
    model_ip_t a, b, m, none = {0};
    char buf[46];

    ck_assert_int_eq(model_ip_parse("192.168.1.2", &a), 0);
    ck_assert_int_eq(a.len, 4);
    ck_assert_mem_eq(a.b, "\xc0\xa8\x01\x02", 4);
    ck_assert_int_eq(model_ip_parse("::ffff:192.168.1.2", &m), 0);
    ck_assert_int_eq(m.len, 16);
    ck_assert(!model_ip_equal(&a, &m)); /* families differ */
    ck_assert_int_eq(model_ip_parse("192.168.1.3", &b), 0);
    ck_assert(!model_ip_equal(&a, &b));
    ck_assert_int_eq(model_ip_parse("192.168.1.2", &b), 0);
    ck_assert(model_ip_equal(&a, &b));
    ck_assert(model_ip_equal(&none, &none));
    ck_assert(!model_ip_equal(&none, &a));
    ck_assert_int_eq(model_ip_parse(NULL, &a), -1);
    /* no address formats as "", as does a buffer too small for it */
    ck_assert_str_eq(model_ip_format(&none, buf, sizeof(buf)), "");
    ck_assert_str_eq(model_ip_format(&m, buf, 8), "");
    ck_assert_int_eq(model_ip_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0", &m), 0);
    ck_assert_str_eq(model_ip_format(&m, buf, sizeof(buf)),
                     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0");
}
END_TEST

/* ---------- names ---------- */

START_TEST(test_names)
{
    ck_assert_str_eq(model_kind_name(MODEL_KIND_NAMESPACE), "Namespace");
    ck_assert_str_eq(model_kind_name(MODEL_KIND_SERVICE), "Service");
    ck_assert_str_eq(model_kind_name(MODEL_KIND_ENDPOINTSLICE), "EndpointSlice");
    ck_assert_str_eq(model_kind_name(MODEL_KIND_POD), "Pod");
    ck_assert_str_eq(model_kind_name(MODEL_KIND_NODE), "Node");
    ck_assert_str_eq(model_kind_name(MODEL_KIND__COUNT), "Unknown");
    ck_assert_str_eq(model_cluster_state_name(MODEL_CLUSTER_SYNCING), "syncing");
    ck_assert_str_eq(model_cluster_state_name(MODEL_CLUSTER_SYNCED), "synced");
    ck_assert_str_eq(model_cluster_state_name(MODEL_CLUSTER_STALE), "stale");
    ck_assert_str_eq(model_cluster_state_name((model_cluster_state_t)99), "unknown");
}
END_TEST

/* ---------- model_obj_free on fully populated objects ---------- */

static char *dup(const char *s)
{
    char *p = strdup(s);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill_labels(model_labels_t *l)
{
    ck_assert_int_eq(model_labels_set(l, "app", "web"), 0);
    ck_assert_int_eq(model_labels_set(l, "topology.kubernetes.io/zone", "z1"), 0);
}

static model_ip_t *ips(size_t n)
{
    model_ip_t *a = calloc(n, sizeof(*a));
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(model_ip_parse(i % 2 ? "fd00::1" : "10.0.0.1", &a[i]), 0);
    return a;
}

START_TEST(test_free_namespace)
{
    model_namespace_t *o = calloc(1, sizeof(*o));
    o->name = dup("default");
    fill_labels(&o->labels);
    model_obj_free(MODEL_KIND_NAMESPACE, o);
}
END_TEST

START_TEST(test_free_service)
{
    model_service_t *o = calloc(1, sizeof(*o));
    o->ns = dup("default");
    o->name = dup("web");
    o->uid = dup("uid-1");
    fill_labels(&o->labels);
    o->cluster_ips = ips(2);
    o->ncluster_ips = 2;
    o->nports = 2;
    o->ports = calloc(o->nports, sizeof(*o->ports));
    o->ports[0] = (model_svc_port_t){dup("http"), 80, 8080, NULL, MODEL_PROTO_TCP, dup("http")};
    o->ports[1] = (model_svc_port_t){
        dup("grpc"), 9000, 0, dup("grpc-port"), MODEL_PROTO_TCP, dup("kubernetes.io/h2c")};
    o->lb_ips = ips(3);
    o->nlb_ips = 3;
    model_obj_free(MODEL_KIND_SERVICE, o);
}
END_TEST

START_TEST(test_free_endpointslice)
{
    model_endpointslice_t *o = calloc(1, sizeof(*o));
    o->ns = dup("default");
    o->name = dup("web-abcde");
    o->service = dup("web");
    o->nports = 2;
    o->ports = calloc(o->nports, sizeof(*o->ports));
    o->ports[0] = (model_ep_port_t){dup("http"), 8080, MODEL_PROTO_TCP};
    o->ports[1] = (model_ep_port_t){NULL, 53, MODEL_PROTO_UDP};
    o->nendpoints = 2;
    o->endpoints = calloc(o->nendpoints, sizeof(*o->endpoints));
    model_ip_parse("10.0.0.5", &o->endpoints[0].ip);
    o->endpoints[0].node = dup("node-1");
    o->endpoints[0].zone = dup("z1");
    o->endpoints[0].pod = dup("web-1");
    model_ip_parse("10.0.0.6", &o->endpoints[1].ip); /* optional fields NULL */
    model_obj_free(MODEL_KIND_ENDPOINTSLICE, o);
}
END_TEST

START_TEST(test_free_pod)
{
    model_pod_t *o = calloc(1, sizeof(*o));
    o->ns = dup("default");
    o->name = dup("web-1");
    o->uid = dup("uid-2");
    fill_labels(&o->labels);
    o->ips = ips(2);
    o->nips = 2;
    o->node = dup("node-1");
    o->service_account = dup("default");
    o->ready = true;
    model_obj_free(MODEL_KIND_POD, o);
}
END_TEST

START_TEST(test_free_node)
{
    model_node_t *o = calloc(1, sizeof(*o));
    o->name = dup("node-1");
    fill_labels(&o->labels);
    model_obj_free(MODEL_KIND_NODE, o);
}
END_TEST

/* Objects as decoded with every optional field absent, and NULL itself. */
START_TEST(test_free_sparse_and_null)
{
    static const size_t size[MODEL_KIND__COUNT] = {
        [MODEL_KIND_NAMESPACE] = sizeof(model_namespace_t),
        [MODEL_KIND_SERVICE] = sizeof(model_service_t),
        [MODEL_KIND_ENDPOINTSLICE] = sizeof(model_endpointslice_t),
        [MODEL_KIND_POD] = sizeof(model_pod_t),
        [MODEL_KIND_NODE] = sizeof(model_node_t),
    };

    for (int k = 0; k < MODEL_KIND__COUNT; k++) {
        model_obj_free((model_kind_t)k, NULL);
        model_obj_free((model_kind_t)k, calloc(1, size[k]));
    }
}
END_TEST

static Suite *labels_suite(void)
{
    Suite *s = suite_create("labels");
    TCase *tc = tcase_create("labels");

    tcase_add_test(tc, test_labels_set_get);
    tcase_add_test(tc, test_labels_replace);
    tcase_add_test(tc, test_labels_many);
    tcase_add_test(tc, test_labels_equal);
    suite_add_tcase(s, tc);

    tc = tcase_create("ip");
    tcase_add_loop_test(tc, test_ip_table, 0, NIP);
    tcase_add_test(tc, test_ip_bytes_and_equal);
    suite_add_tcase(s, tc);

    tc = tcase_create("objects");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_free_namespace);
    tcase_add_test(tc, test_free_service);
    tcase_add_test(tc, test_free_endpointslice);
    tcase_add_test(tc, test_free_pod);
    tcase_add_test(tc, test_free_node);
    tcase_add_test(tc, test_free_sparse_and_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(labels_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
