/*
 * test_ctl_auth.c - the pure parts of xDS client authentication (auth.c):
 * which service accounts --xds-allowed-identities lets in, which pattern
 * lists it refuses at start, what a TokenReview's username and audiences say.
 */
#include "ctl_int.h"

#include <check.h>
#include <string.h>

START_TEST(identity_empty_or_null_list_allows_everyone)
{
    ck_assert(ctl_auth_identity_allowed(NULL, "ns", "sa"));
    ck_assert(ctl_auth_identity_allowed("", "ns", "sa"));
}
END_TEST

START_TEST(identity_exact_pattern_matches_only_that_account)
{
    ck_assert(ctl_auth_identity_allowed("istio-system/ztunnel", "istio-system", "ztunnel"));
    ck_assert(!ctl_auth_identity_allowed("istio-system/ztunnel", "istio-system", "ztunnel2"));
    ck_assert(!ctl_auth_identity_allowed("istio-system/ztunnel", "istio-system", "ztunne"));
    ck_assert(!ctl_auth_identity_allowed("istio-system/ztunnel", "istio", "ztunnel"));
    ck_assert(!ctl_auth_identity_allowed("istio-system/ztunnel", "default", "ztunnel"));
}
END_TEST

START_TEST(identity_star_matches_either_side_whole)
{
    ck_assert(ctl_auth_identity_allowed("*/ztunnel", "any", "ztunnel"));
    ck_assert(!ctl_auth_identity_allowed("*/ztunnel", "any", "other"));
    ck_assert(ctl_auth_identity_allowed("istio-system/*", "istio-system", "x"));
    ck_assert(!ctl_auth_identity_allowed("istio-system/*", "default", "x"));
    ck_assert(ctl_auth_identity_allowed("*/*", "a", "b"));
    /* "*" is a whole side, not a glob */
    ck_assert(!ctl_auth_identity_allowed("istio-*/ztunnel", "istio-system", "ztunnel"));
}
END_TEST

START_TEST(identity_list_separated_by_commas_and_spaces)
{
    const char *l = " a/x,, b/y  c/z ,";
    ck_assert(ctl_auth_identity_allowed(l, "a", "x"));
    ck_assert(ctl_auth_identity_allowed(l, "b", "y"));
    ck_assert(ctl_auth_identity_allowed(l, "c", "z"));
    ck_assert(!ctl_auth_identity_allowed(l, "a", "y"));
    /* a list of only separators allows nobody: it is not empty */
    ck_assert(!ctl_auth_identity_allowed(" , ", "a", "x"));
}
END_TEST

START_TEST(identity_malformed_pattern_matches_nobody)
{
    ck_assert(!ctl_auth_identity_allowed("noslash", "noslash", ""));
    ck_assert(!ctl_auth_identity_allowed("ns", "ns", "sa"));
}
END_TEST

START_TEST(check_patterns_accepts_well_formed_lists)
{
    char err[CTL_ERRLEN] = "";
    ck_assert_int_eq(ctl_auth_check_patterns(NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(ctl_auth_check_patterns("", err, sizeof(err)), 0);
    ck_assert_int_eq(ctl_auth_check_patterns("a/b, */c,d/*  */*", err, sizeof(err)), 0);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(check_patterns_names_the_bad_pattern)
{
    const char *bad[] = {"noslash", "/sa", "ns/", "a/b/c", "/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char list[64], err[CTL_ERRLEN] = "", want[64];
        snprintf(list, sizeof(list), "ok/ok, %s ,x/y", bad[i]);
        ck_assert_int_eq(ctl_auth_check_patterns(list, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "\"%s\" is not namespace/serviceaccount", bad[i]);
        ck_assert_msg(strstr(err, want), "%s: %s", bad[i], err);
    }
}
END_TEST

START_TEST(service_account_username_splits_into_ns_and_sa)
{
    char ns[16] = "", sa[16] = "";
    ck_assert(ctl_auth_service_account("system:serviceaccount:istio-system:ztunnel", ns, sizeof(ns),
                                       sa, sizeof(sa)));
    ck_assert_str_eq(ns, "istio-system");
    ck_assert_str_eq(sa, "ztunnel");
}
END_TEST

START_TEST(service_account_rejects_other_and_malformed_usernames)
{
    const char *bad[] = {
        NULL,
        "",
        "admin",
        "system:node:worker-1",
        "system:serviceaccount:",
        "system:serviceaccount:ns",
        "system:serviceaccount:ns:",
        "system:serviceaccount::sa",
        "system:serviceaccount:ns:sa:extra",
        "System:ServiceAccount:ns:sa",
        "system:serviceaccount:a-namespace-too-long:sa", /* ns does not fit 16 */
        "system:serviceaccount:ns:a-name-far-too-long",  /* sa does not fit 16 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char ns[16] = "x", sa[16] = "y";
        ck_assert_msg(!ctl_auth_service_account(bad[i], ns, sizeof(ns), sa, sizeof(sa)), "%s",
                      bad[i] ? bad[i] : "(null)");
        ck_assert_str_eq(ns, "x");
        ck_assert_str_eq(sa, "y");
    }
}
END_TEST

static bool audience(const char *wanted, const char *status)
{
    json_t *w = json_loads(wanted, 0, NULL), *s = json_loads(status, 0, NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(s);
    bool ok = ctl_auth_audience_ok(w, s);
    json_decref(w);
    json_decref(s);
    return ok;
}

START_TEST(audience_intersection_must_not_be_empty)
{
    ck_assert(audience("[\"istio-ca\"]", "{\"audiences\": [\"istio-ca\"]}"));
    ck_assert(audience("[\"a\", \"istio-ca\"]", "{\"audiences\": [\"x\", \"istio-ca\"]}"));
    ck_assert(!audience("[\"istio-ca\"]", "{\"audiences\": [\"kubernetes\"]}"));
    ck_assert(!audience("[\"istio-ca\"]", "{\"audiences\": []}"));
    /* not strings that equal: no match */
    ck_assert(!audience("[\"1\"]", "{\"audiences\": [1]}"));
}
END_TEST

START_TEST(audience_unchecked_by_older_servers_is_accepted)
{
    ck_assert(audience("[\"istio-ca\"]", "{}"));
    ck_assert(audience("[\"istio-ca\"]", "{\"audiences\": null}"));
    ck_assert(audience("[\"istio-ca\"]", "{\"audiences\": \"istio-ca\"}"));
    ck_assert(ctl_auth_audience_ok(NULL, NULL));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl_auth");
    TCase *t = tcase_create("identities");
    tcase_add_test(t, identity_empty_or_null_list_allows_everyone);
    tcase_add_test(t, identity_exact_pattern_matches_only_that_account);
    tcase_add_test(t, identity_star_matches_either_side_whole);
    tcase_add_test(t, identity_list_separated_by_commas_and_spaces);
    tcase_add_test(t, identity_malformed_pattern_matches_nobody);
    tcase_add_test(t, check_patterns_accepts_well_formed_lists);
    tcase_add_test(t, check_patterns_names_the_bad_pattern);
    suite_add_tcase(s, t);
    TCase *r = tcase_create("tokenreview");
    tcase_add_test(r, service_account_username_splits_into_ns_and_sa);
    tcase_add_test(r, service_account_rejects_other_and_malformed_usernames);
    tcase_add_test(r, audience_intersection_must_not_be_empty);
    tcase_add_test(r, audience_unchecked_by_older_servers_is_accepted);
    suite_add_tcase(s, r);
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
