/*
 * test_labels.c - label sets, IP addresses, kind/state names and freeing of
 * fully populated input objects (every byte returned).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---------- model_obj_free on fully populated objects ----------
 *
 * Each test builds an object, frees it and checks that the heap holds what
 * it held before: a field model_obj_free forgets fails the test in the
 * default build. The count is glibc's (mallinfo2); under ASan, which keeps
 * its own heap, LeakSanitizer checks the same at exit instead. */

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_COUNTED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_COUNTED 0
#endif
#endif
#ifndef HEAP_COUNTED
#define HEAP_COUNTED 1
#include <malloc.h>
#endif

/* Bytes in use from malloc. */
static size_t heap_in_use(void)
{
#if HEAP_COUNTED
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

/* glibc counts the blocks in its per-thread cache (tcache) as in use, so
 * that a freed block would look held: the tests run without the cache,
 * which only a tunable set before the process starts turns off. Re-executes
 * the test with it; 0 when there is nothing to do (or it cannot). */
static int heap_exact(char **argv)
{
    static const char tunable[] = "glibc.malloc.tcache_count=0";
    const char *old = getenv("GLIBC_TUNABLES");
    char buf[1024];
    if (!HEAP_COUNTED || (old && strstr(old, tunable)))
        return 0;
    snprintf(buf, sizeof(buf), "%s%s%s", old ? old : "", old ? ":" : "", tunable);
    if (setenv("GLIBC_TUNABLES", buf, 1) < 0)
        return -1;
    execv("/proc/self/exe", argv);
    return -1;
}

/* Builds an object of kind with build, frees it, and checks the heap is
 * back where it was and that the object did take memory (so the check
 * measures something). */
static void assert_free_returns_all(model_kind_t kind, void *(*build)(void))
{
    size_t before = heap_in_use();
    void *o = build();
    size_t built = heap_in_use();
    model_obj_free(kind, o);
    size_t after = heap_in_use();
    if (HEAP_COUNTED) {
        ck_assert_uint_gt(built, before);
        ck_assert_msg(after == before, "%s: %zu bytes left after model_obj_free",
                      model_kind_name(kind), after - before);
    }
}

static char *xstrdup(const char *s)
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

static void *full_namespace(void)
{
    model_namespace_t *o = calloc(1, sizeof(*o));
    o->name = xstrdup("default");
    fill_labels(&o->labels);
    return o;
}

START_TEST(test_free_namespace)
{
    assert_free_returns_all(MODEL_KIND_NAMESPACE, full_namespace);
}
END_TEST

static void *full_service(void)
{
    model_service_t *o = calloc(1, sizeof(*o));
    o->ns = xstrdup("default");
    o->name = xstrdup("web");
    o->uid = xstrdup("uid-1");
    fill_labels(&o->labels);
    o->cluster_ips = ips(2);
    o->ncluster_ips = 2;
    o->nports = 2;
    o->ports = calloc(o->nports, sizeof(*o->ports));
    o->ports[0] =
        (model_svc_port_t){xstrdup("http"), 80, 8080, NULL, MODEL_PROTO_TCP, xstrdup("http")};
    o->ports[1] = (model_svc_port_t){xstrdup("grpc"),
                                     9000,
                                     0,
                                     xstrdup("grpc-port"),
                                     MODEL_PROTO_TCP,
                                     xstrdup("kubernetes.io/h2c")};
    o->lb_ips = ips(3);
    o->nlb_ips = 3;
    return o;
}

START_TEST(test_free_service)
{
    assert_free_returns_all(MODEL_KIND_SERVICE, full_service);
}
END_TEST

static void *full_endpointslice(void)
{
    model_endpointslice_t *o = calloc(1, sizeof(*o));
    o->ns = xstrdup("default");
    o->name = xstrdup("web-abcde");
    o->service = xstrdup("web");
    o->nports = 2;
    o->ports = calloc(o->nports, sizeof(*o->ports));
    o->ports[0] = (model_ep_port_t){xstrdup("http"), 8080, MODEL_PROTO_TCP};
    o->ports[1] = (model_ep_port_t){NULL, 53, MODEL_PROTO_UDP};
    o->nendpoints = 2;
    o->endpoints = calloc(o->nendpoints, sizeof(*o->endpoints));
    model_ip_parse("10.0.0.5", &o->endpoints[0].ip);
    o->endpoints[0].node = xstrdup("node-1");
    o->endpoints[0].zone = xstrdup("z1");
    o->endpoints[0].pod = xstrdup("web-1");
    model_ip_parse("10.0.0.6", &o->endpoints[1].ip); /* optional fields NULL */
    return o;
}

START_TEST(test_free_endpointslice)
{
    assert_free_returns_all(MODEL_KIND_ENDPOINTSLICE, full_endpointslice);
}
END_TEST

static void *full_pod(void)
{
    model_pod_t *o = calloc(1, sizeof(*o));
    o->ns = xstrdup("default");
    o->name = xstrdup("web-1");
    o->uid = xstrdup("uid-2");
    fill_labels(&o->labels);
    o->ips = ips(2);
    o->nips = 2;
    o->node = xstrdup("node-1");
    o->service_account = xstrdup("default");
    o->owner = xstrdup("ReplicaSet/web-5d8f");
    o->ready = true;
    return o;
}

START_TEST(test_free_pod)
{
    assert_free_returns_all(MODEL_KIND_POD, full_pod);
}
END_TEST

static void *full_node(void)
{
    model_node_t *o = calloc(1, sizeof(*o));
    o->name = xstrdup("node-1");
    fill_labels(&o->labels);
    return o;
}

START_TEST(test_free_node)
{
    assert_free_returns_all(MODEL_KIND_NODE, full_node);
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
        [MODEL_KIND_AUTHZ_POLICY] = sizeof(model_authz_policy_t),
        [MODEL_KIND_PEER_AUTHN] = sizeof(model_peer_authn_t),
        [MODEL_KIND_GATEWAY] = sizeof(model_gateway_t),
    };

    size_t before = heap_in_use();
    for (int k = 0; k < MODEL_KIND__COUNT; k++) {
        model_obj_free((model_kind_t)k, NULL);
        model_obj_free((model_kind_t)k, calloc(1, size[k]));
    }
    ck_assert_uint_eq(heap_in_use(), before);
}
END_TEST

/* A label set cleared is empty and takes new labels like a new one. */
START_TEST(test_free_labels_clear_and_reuse)
{
    model_labels_t l = {0};
    fill_labels(&l);
    size_t held = heap_in_use();
    model_labels_clear(&l);
    ck_assert_ptr_null(l.kv);
    ck_assert_uint_eq(l.n, 0);
    ck_assert_ptr_null(model_labels_get(&l, "app"));
    if (HEAP_COUNTED)
        ck_assert_uint_lt(heap_in_use(), held);
    model_labels_clear(&l); /* twice is fine */
    ck_assert_int_eq(model_labels_set(&l, "b", "2"), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(model_labels_get(&l, "b"), "2");
    model_labels_clear(&l);
    ck_assert_uint_eq(l.n, 0);
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
    tcase_add_test(tc, test_free_labels_clear_and_reuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    (void)argc;
    if (heap_exact(argv) < 0) {
        perror("test_labels: re-executing without glibc's tcache");
        return 1;
    }
    SRunner *sr = srunner_create(labels_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
