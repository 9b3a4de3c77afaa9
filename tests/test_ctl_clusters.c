/*
 * test_ctl_clusters.c - the pure parts of the live clusters' watcher glue
 * (clusters.c): which model kind a resource feeds, what a deleted object's
 * stub becomes, and when a remote kubeconfig reaches another API server.
 */
#include "ctl_int.h"
#include "kube_int.h" /* struct kube_obj, to build the stubs a relist sends */

#include <check.h>
#include <stdlib.h>
#include <string.h>

START_TEST(kind_of_maps_each_model_resource)
{
    ck_assert_int_eq(ctl_kube_kind_of(KUBE_RES_NAMESPACES), MODEL_KIND_NAMESPACE);
    ck_assert_int_eq(ctl_kube_kind_of(KUBE_RES_SERVICES), MODEL_KIND_SERVICE);
    ck_assert_int_eq(ctl_kube_kind_of(KUBE_RES_ENDPOINTSLICES), MODEL_KIND_ENDPOINTSLICE);
    ck_assert_int_eq(ctl_kube_kind_of(KUBE_RES_PODS), MODEL_KIND_POD);
    ck_assert_int_eq(ctl_kube_kind_of(KUBE_RES_NODES), MODEL_KIND_NODE);
}
END_TEST

START_TEST(identity_of_namespaced_kinds_keeps_ns_and_name)
{
    kube_obj_t stub = {.name = "reviews", .ns = "bookinfo"};
    model_service_t *s = ctl_kube_identity_of(MODEL_KIND_SERVICE, &stub);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->ns, "bookinfo");
    ck_assert_str_eq(s->name, "reviews");
    ck_assert_int_eq(s->nports, 0);
    model_obj_free(MODEL_KIND_SERVICE, s);
    model_endpointslice_t *e = ctl_kube_identity_of(MODEL_KIND_ENDPOINTSLICE, &stub);
    ck_assert_str_eq(e->ns, "bookinfo");
    ck_assert_str_eq(e->name, "reviews");
    model_obj_free(MODEL_KIND_ENDPOINTSLICE, e);
    model_pod_t *p = ctl_kube_identity_of(MODEL_KIND_POD, &stub);
    ck_assert_str_eq(p->ns, "bookinfo");
    ck_assert_str_eq(p->name, "reviews");
    model_obj_free(MODEL_KIND_POD, p);
}
END_TEST

START_TEST(identity_of_cluster_scoped_kinds_needs_no_namespace)
{
    kube_obj_t stub = {.name = "worker-1"};
    model_node_t *n = ctl_kube_identity_of(MODEL_KIND_NODE, &stub);
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n->name, "worker-1");
    model_obj_free(MODEL_KIND_NODE, n);
    stub.name = "bookinfo";
    model_namespace_t *ns = ctl_kube_identity_of(MODEL_KIND_NAMESPACE, &stub);
    ck_assert_ptr_nonnull(ns);
    ck_assert_str_eq(ns->name, "bookinfo");
    model_obj_free(MODEL_KIND_NAMESPACE, ns);
}
END_TEST

START_TEST(identity_of_namespaced_kind_without_namespace_is_dropped)
{
    kube_obj_t stub = {.name = "reviews"};
    ck_assert_ptr_null(ctl_kube_identity_of(MODEL_KIND_SERVICE, &stub));
    ck_assert_ptr_null(ctl_kube_identity_of(MODEL_KIND_ENDPOINTSLICE, &stub));
    ck_assert_ptr_null(ctl_kube_identity_of(MODEL_KIND_POD, &stub));
}
END_TEST

START_TEST(endpoint_of_same_server_ca_and_name_is_equal)
{
    kube_conn_t a = {.server = "https://10.0.0.1:6443", .ca_data = "CA", .ca_len = 2};
    kube_conn_t b = a;
    b.token = "another token"; /* credentials do not change which server it is */
    b.cert_file = "/other/cert";
    ck_assert_uint_eq(ctl_kube_endpoint_of(&a), ctl_kube_endpoint_of(&b));
    kube_conn_t empty = {0};
    ck_assert_uint_eq(ctl_kube_endpoint_of(&empty), ctl_kube_endpoint_of(&empty));
}
END_TEST

START_TEST(endpoint_of_differs_on_server_ca_tls_name_or_insecure)
{
    kube_conn_t a = {.server = "https://10.0.0.1:6443", .ca_data = "CA", .ca_len = 2};
    uint64_t h = ctl_kube_endpoint_of(&a);
    kube_conn_t b = a;
    b.server = "https://10.0.0.2:6443";
    ck_assert_uint_ne(ctl_kube_endpoint_of(&b), h);
    b = a;
    b.ca_data = "CB";
    ck_assert_uint_ne(ctl_kube_endpoint_of(&b), h);
    b = a;
    b.ca_data = NULL;
    b.ca_file = "CA"; /* the same bytes as a file name are not the same CA */
    ck_assert_uint_ne(ctl_kube_endpoint_of(&b), h);
    b = a;
    b.tls_server_name = "kubernetes";
    ck_assert_uint_ne(ctl_kube_endpoint_of(&b), h);
    b = a;
    b.insecure = true;
    ck_assert_uint_ne(ctl_kube_endpoint_of(&b), h);
    /* field boundaries count: the server's tail is not the CA's head */
    kube_conn_t c = {.server = "https://x", .ca_data = "y", .ca_len = 1};
    kube_conn_t d = {.server = "https://xy", .ca_data = "", .ca_len = 0};
    ck_assert_uint_ne(ctl_kube_endpoint_of(&c), ctl_kube_endpoint_of(&d));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl_clusters");
    TCase *t = tcase_create("objects");
    tcase_add_test(t, kind_of_maps_each_model_resource);
    tcase_add_test(t, identity_of_namespaced_kinds_keeps_ns_and_name);
    tcase_add_test(t, identity_of_cluster_scoped_kinds_needs_no_namespace);
    tcase_add_test(t, identity_of_namespaced_kind_without_namespace_is_dropped);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("endpoints");
    tcase_add_test(e, endpoint_of_same_server_ca_and_name_is_equal);
    tcase_add_test(e, endpoint_of_differs_on_server_ca_tls_name_or_insecure);
    suite_add_tcase(s, e);
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
