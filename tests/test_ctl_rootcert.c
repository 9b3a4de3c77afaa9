/*
 * test_ctl_rootcert.c - what the istio-ca-root-cert publisher (rootcert.c)
 * sends for a namespace: which namespaces istiod leaves alone, a new
 * ConfigMap as istiod makes it, an update that changes only root-cert.pem.
 */
#include "ctl_int.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static const char *const ROOT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

static const char *str_at(const json_t *o, const char *a, const char *b, const char *c)
{
    const json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_string_value(v);
}

START_TEST(skips_the_namespaces_istiod_skips)
{
    ck_assert(ctl_rootcert_skipped("kube-public"));
    ck_assert(ctl_rootcert_skipped("kube-node-lease"));
    ck_assert(ctl_rootcert_skipped("local-path-storage"));
    /* ztunnel may run in kube-system: istiod publishes there */
    ck_assert(!ctl_rootcert_skipped("kube-system"));
    ck_assert(!ctl_rootcert_skipped("istio-system"));
    ck_assert(!ctl_rootcert_skipped("default"));
    ck_assert(!ctl_rootcert_skipped("kube-public2"));
}
END_TEST

START_TEST(missing_configmap_is_created_labelled)
{
    json_t *cm = ctl_rootcert_desired(NULL, "shop", ROOT);
    ck_assert_ptr_nonnull(cm);
    ck_assert_str_eq(str_at(cm, "apiVersion", NULL, NULL), "v1");
    ck_assert_str_eq(str_at(cm, "kind", NULL, NULL), "ConfigMap");
    ck_assert_str_eq(str_at(cm, "metadata", "name", NULL), "istio-ca-root-cert");
    ck_assert_str_eq(str_at(cm, "metadata", "namespace", NULL), "shop");
    ck_assert_str_eq(str_at(cm, "metadata", "labels", "istio.io/config"), "true");
    ck_assert_str_eq(str_at(cm, "data", "root-cert.pem", NULL), ROOT);
    ck_assert_int_eq(json_object_size(json_object_get(cm, "data")), 1);
    json_decref(cm);
}
END_TEST

START_TEST(up_to_date_configmap_needs_nothing)
{
    json_t *have = json_pack("{s:{s:s, s:s, s:s}, s:{s:s, s:s}}", "metadata", "name",
                             "istio-ca-root-cert", "namespace", "shop", "resourceVersion", "7",
                             "data", "root-cert.pem", ROOT, "other", "x");
    ck_assert_ptr_null(ctl_rootcert_desired(have, "shop", ROOT));
    json_decref(have);
}
END_TEST

START_TEST(update_replaces_root_only_keeps_the_rest)
{
    json_t *have = json_pack("{s:{s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:s}}", "metadata", "name",
                             "istio-ca-root-cert", "namespace", "shop", "resourceVersion", "7",
                             "labels", "team", "a", "data", "root-cert.pem", "old", "other", "x");
    json_t *want = ctl_rootcert_desired(have, "shop", ROOT);
    ck_assert_ptr_nonnull(want);
    ck_assert_str_eq(str_at(want, "data", "root-cert.pem", NULL), ROOT);
    ck_assert_str_eq(str_at(want, "data", "other", NULL), "x");
    /* the resourceVersion it was read at: a concurrent write gets 409 */
    ck_assert_str_eq(str_at(want, "metadata", "resourceVersion", NULL), "7");
    ck_assert_str_eq(str_at(want, "metadata", "labels", "team"), "a");
    ck_assert_ptr_null(json_object_get(json_object_get(json_object_get(want, "metadata"), "labels"),
                                       "istio.io/config"));
    ck_assert_str_eq(str_at(want, "kind", NULL, NULL), "ConfigMap");
    /* the cached object is not touched */
    ck_assert_str_eq(str_at(have, "data", "root-cert.pem", NULL), "old");
    json_decref(want);
    json_decref(have);
}
END_TEST

START_TEST(configmap_without_data_or_with_bad_data_gets_it)
{
    json_t *none = json_pack("{s:{s:s, s:s}}", "metadata", "name", "istio-ca-root-cert",
                             "resourceVersion", "3");
    json_t *want = ctl_rootcert_desired(none, "shop", ROOT);
    ck_assert_ptr_nonnull(want);
    ck_assert_str_eq(str_at(want, "data", "root-cert.pem", NULL), ROOT);
    json_decref(want);
    json_decref(none);
    json_t *bad =
        json_pack("{s:{s:s}, s:[i]}", "metadata", "name", "istio-ca-root-cert", "data", 1);
    want = ctl_rootcert_desired(bad, "shop", ROOT);
    ck_assert_ptr_nonnull(want);
    ck_assert_str_eq(str_at(want, "data", "root-cert.pem", NULL), ROOT);
    json_decref(want);
    json_decref(bad);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl_rootcert");
    TCase *t = tcase_create("desired");
    tcase_add_test(t, skips_the_namespaces_istiod_skips);
    tcase_add_test(t, missing_configmap_is_created_labelled);
    tcase_add_test(t, up_to_date_configmap_needs_nothing);
    tcase_add_test(t, update_replaces_root_only_keeps_the_rest);
    tcase_add_test(t, configmap_without_data_or_with_bad_data_gets_it);
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
