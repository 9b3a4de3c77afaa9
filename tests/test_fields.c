/*
 * test_fields.c - every field of the Address resources reaches equality,
 * the xDS encoding and the debug JSON.
 *
 * The three are generated from MODEL_WORKLOAD_FIELDS and
 * MODEL_SERVICE_FIELDS (model.h); so is this test. It changes one field at a
 * time in a copy of a fully populated resource and expects model_res_equal
 * to say so, and the encoding and the JSON to differ. A kind without a
 * mutation here does not compile; a helper that drops a field (or a part of
 * one) fails.
 */
#include "ctl_int.h" /* ctl_res_json */
#include "model.h"
#include "model_int.h" /* model_res_new, model_res_equal */
#include "xds.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

enum { DIFF_EQ = 1, DIFF_ENC = 2, DIFF_JSON = 4, DIFF_ALL = 7 };

static model_res_t *res_of(model_res_kind_t kind, const void *content)
{
    model_res_t *r = model_res_new(kind, "r", 0);
    if (kind == MODEL_RES_WORKLOAD)
        r->u.wl = *(const model_out_workload_t *)content;
    else
        r->u.svc = *(const model_out_service_t *)content;
    return r;
}

/* The content is the test's own (static, not shared strings): the resource
 * must not drop references on it. */
static void res_free(model_res_t *r)
{
    memset(&r->u, 0, sizeof(r->u));
    model_res_unref(r);
}

/* Which of equality, encoding and JSON tell a from b. */
static int diffs(model_res_kind_t kind, const void *a, const void *b)
{
    model_res_t *ra = res_of(kind, a), *rb = res_of(kind, b);
    int d = 0;
    if (!model_res_equal(ra, rb))
        d |= DIFF_EQ;
    size_t na = 0, nb = 0;
    const uint8_t *ea = xds_encode_address(ra, &na), *eb = xds_encode_address(rb, &nb);
    ck_assert_ptr_nonnull(ea);
    ck_assert_ptr_nonnull(eb);
    if (na != nb || memcmp(ea, eb, na) != 0)
        d |= DIFF_ENC;
    json_t *ja = ctl_res_json(ra), *jb = ctl_res_json(rb);
    if (!json_equal(ja, jb))
        d |= DIFF_JSON;
    json_decref(ja);
    json_decref(jb);
    res_free(ra);
    res_free(rb);
    return d;
}

static void expect(model_res_kind_t kind, const void *a, const void *b, const char *what, int want)
{
    int d = diffs(kind, a, b);
    if (d != want)
        ck_abort_msg("%s: equality %s, encoding %s, JSON %s", what,
                     d & DIFF_EQ ? "differs" : "same", d & DIFF_ENC ? "differs" : "same",
                     d & DIFF_JSON ? "differs" : "same");
}

static model_ip_t ips_a[] = {{4, {10, 0, 0, 1}}, {16, {0x20, 0x01, 0x0d, 0xb8, [15] = 1}}};
static model_ip_t ips_b[] = {{4, {10, 0, 0, 1}}, {16, {0x20, 0x01, 0x0d, 0xb8, [15] = 2}}};

static model_port_pair_t ports_a[] = {{80, 8080, 1}, {443, 8443, 5}};
/* each differs from ports_a in one member */
static model_port_pair_t ports_alt[][2] = {
    {{81, 8080, 1}, {443, 8443, 5}},
    {{80, 8081, 1}, {443, 8443, 5}},
    {{80, 8080, 2}, {443, 8443, 5}},
};

/* ---------- workloads ---------- */

static const model_wl_service_t svcs_a[] = {{"ns/a.ns.svc.cluster.local", ports_a, 2},
                                            {"ns/b.ns.svc.cluster.local", ports_a, 1}};
static const model_wl_service_t svcs_alt[][2] = {
    {{"ns/a.ns.svc.cluster.local", ports_a, 2}, {"ns/c.ns.svc.cluster.local", ports_a, 1}},
    {{"ns/a.ns.svc.cluster.local", ports_a, 2}, {"ns/b.ns.svc.cluster.local", ports_a, 2}},
    {{"ns/a.ns.svc.cluster.local", ports_alt[0], 2}, {"ns/b.ns.svc.cluster.local", ports_a, 1}},
    {{"ns/a.ns.svc.cluster.local", ports_alt[1], 2}, {"ns/b.ns.svc.cluster.local", ports_a, 1}},
    {{"ns/a.ns.svc.cluster.local", ports_alt[2], 2}, {"ns/b.ns.svc.cluster.local", ports_a, 1}},
};

static const model_gw_addr_t gw_a = {"net2", {4, {192, 0, 2, 1}}, false, 15009, 3, NULL, NULL};
/* each differs from gw_a in what the gateway's encoding carries */
static const model_gw_addr_t gw_alt[] = {
    {"net3", {4, {192, 0, 2, 1}}, false, 15009, 3, NULL, NULL},
    {"net2", {4, {192, 0, 2, 2}}, false, 15009, 3, NULL, NULL},
    {"net2", {4, {192, 0, 2, 1}}, false, 15010, 3, NULL, NULL},
    {"net2", {4, {192, 0, 2, 1}}, false, 15009, 4, NULL, NULL},
    {"net2", {4, {192, 0, 2, 1}}, false, 15009, 0, NULL, NULL},
    {"net2", {0}, false, 15009, 3, "ew.example.com", "istio-system"},
};
static const model_gw_addr_t gw_host = {"net2",           {0},           false, 15009, 3,
                                        "ew.example.com", "istio-system"};
static const model_gw_addr_t gw_host_alt[] = {
    {"net2", {0}, false, 15009, 3, "ew2.example.com", "istio-system"},
    {"net2", {0}, false, 15009, 3, "ew.example.com", "gw"},
};

/* Waypoints (a Workload's shares the network gateway's member; a Service's
 * has its own): each of wp_alt differs from wp_a in what the encoding
 * carries, the last two as hostnames. */
static const model_gw_addr_t wp_a = {"net1", {4, {10, 0, 9, 1}}, true, 15008, 0, NULL, NULL};
static const model_gw_addr_t wp_alt[] = {
    {"net2", {4, {10, 0, 9, 1}}, true, 15008, 0, NULL, NULL},
    {"net1", {4, {10, 0, 9, 2}}, true, 15008, 0, NULL, NULL},
    {"net1", {4, {10, 0, 9, 1}}, true, 15009, 0, NULL, NULL},
    {"net1", {0}, true, 15008, 0, "wp.example.com", "ns"},
};
static const model_gw_addr_t wp_host = {"net1", {0}, true, 15008, 0, "wp.example.com", "ns"};
static const model_gw_addr_t wp_host_alt[] = {
    {"net1", {0}, true, 15008, 0, "wp2.example.com", "ns"},
    {"net1", {0}, true, 15008, 0, "wp.example.com", "other"},
};
static const model_gw_addr_t svc_wp_a = {"net1", {4, {10, 0, 9, 1}}, false, 15008, 0, NULL, NULL};
static const model_gw_addr_t svc_wp_alt[] = {
    {"net2", {4, {10, 0, 9, 1}}, false, 15008, 0, NULL, NULL},
    {"net1", {4, {10, 0, 9, 2}}, false, 15008, 0, NULL, NULL},
    {"net1", {4, {10, 0, 9, 1}}, false, 15009, 0, NULL, NULL},
    {"net1", {0}, false, 15008, 0, "wp.example.com", "ns"},
};

/* Every field set, none to its proto default. */
static model_out_workload_t full_workload(void)
{
    model_out_workload_t w = {0};
#define WL_SET(kind, f, pb, json) WL_SET_##kind(f)
#define WL_SET_STR(f) w.f = #f "-value";
#define WL_SET_SSTR(f) WL_SET_STR(f)
#define WL_SET_LOC(f) WL_SET_STR(f)
#define WL_SET_IPS(f) (w.f = ips_a, w.n##f = 2);
#define WL_SET_SVCS(f) (w.f = svcs_a, w.n##f = 2);
#define WL_SET_GW(f) w.f = &gw_a;
#define WL_SET_WP(f) /* the GW member holds gw_a: see WL_MUT_WP */
#define WL_SET_TUNNEL(f) w.f = MODEL_TUNNEL_HBONE;
#define WL_SET_FLAG(f) w.f = 1;
#define WL_SET_NETMODE(f) w.f = 1;
#define WL_SET_WLTYPE(f) w.f = 2;
#define WL_SET_STATUS(f) w.f = true;
#define WL_SET_KEYS(f) w.f = "istio-system/a\nns/b";
    MODEL_WORKLOAD_FIELDS(WL_SET)
#undef WL_SET
    return w;
}

#define WL_TRY(change, what, want)                                                                 \
    do {                                                                                           \
        model_out_workload_t x = base;                                                             \
        change;                                                                                    \
        expect(MODEL_RES_WORKLOAD, &base, &x, what, want);                                         \
    } while (0)

/* The changes of each kind, every one of which all three must see. */
#define WL_MUT(kind, f, pb, json) WL_MUT_##kind(f)
#define WL_MUT_STR(f)                                                                              \
    WL_TRY(x.f = "other", #f, DIFF_ALL);                                                           \
    WL_TRY(x.f = NULL, #f " unset", DIFF_ALL);
#define WL_MUT_SSTR(f) WL_MUT_STR(f)
#define WL_MUT_LOC(f) WL_MUT_STR(f)
#define WL_MUT_IPS(f)                                                                              \
    WL_TRY(x.f = ips_b, #f, DIFF_ALL);                                                             \
    WL_TRY(x.n##f = 1, #f " count", DIFF_ALL);
#define WL_MUT_SVCS(f)                                                                             \
    for (size_t i = 0; i < sizeof(svcs_alt) / sizeof(svcs_alt[0]); i++)                            \
        WL_TRY(x.f = svcs_alt[i], #f " entry", DIFF_ALL);                                          \
    WL_TRY(x.n##f = 1, #f " count", DIFF_ALL);
#define WL_MUT_GW(f)                                                                               \
    WL_TRY(x.f = NULL, #f " unset", DIFF_ALL);                                                     \
    for (size_t i = 0; i < sizeof(gw_alt) / sizeof(gw_alt[0]); i++)                                \
        WL_TRY(x.f = &gw_alt[i], #f " part", DIFF_ALL);                                            \
    for (size_t i = 0; i < sizeof(gw_host_alt) / sizeof(gw_host_alt[0]); i++) {                    \
        model_out_workload_t hb = base;                                                            \
        hb.f = &gw_host;                                                                           \
        model_out_workload_t hx = hb;                                                              \
        hx.f = &gw_host_alt[i];                                                                    \
        expect(MODEL_RES_WORKLOAD, &hb, &hx, #f " hostname part", DIFF_ALL);                       \
    }
/* a waypoint in place of the network gateway, then each part of it */
#define WL_MUT_WP(f)                                                                               \
    WL_TRY(x.f = &wp_a, "waypoint in " #f, DIFF_ALL);                                              \
    for (size_t i = 0; i < sizeof(wp_alt) / sizeof(wp_alt[0]); i++) {                              \
        model_out_workload_t wb = base;                                                            \
        wb.f = &wp_a;                                                                              \
        model_out_workload_t wx = wb;                                                              \
        wx.f = &wp_alt[i];                                                                         \
        expect(MODEL_RES_WORKLOAD, &wb, &wx, "waypoint part", DIFF_ALL);                           \
    }                                                                                              \
    for (size_t i = 0; i < sizeof(wp_host_alt) / sizeof(wp_host_alt[0]); i++) {                    \
        model_out_workload_t wb = base;                                                            \
        wb.f = &wp_host;                                                                           \
        model_out_workload_t wx = wb;                                                              \
        wx.f = &wp_host_alt[i];                                                                    \
        expect(MODEL_RES_WORKLOAD, &wb, &wx, "waypoint hostname part", DIFF_ALL);                  \
    }
#define WL_MUT_VAL(f) WL_TRY(x.f = !x.f, #f, DIFF_ALL);
#define WL_MUT_TUNNEL(f) WL_MUT_VAL(f)
#define WL_MUT_FLAG(f) WL_MUT_VAL(f)
#define WL_MUT_NETMODE(f) WL_MUT_VAL(f)
#define WL_MUT_WLTYPE(f) WL_MUT_VAL(f)
#define WL_MUT_STATUS(f) WL_MUT_VAL(f)
#define WL_MUT_KEYS(f)                                                                             \
    WL_TRY(x.f = "istio-system/a\nns/c", #f " entry", DIFF_ALL);                                   \
    WL_TRY(x.f = "istio-system/a", #f " count", DIFF_ALL);                                         \
    WL_TRY(x.f = NULL, #f " unset", DIFF_ALL);

START_TEST(workload_copy_is_equal_encoded_and_rendered_alike)
{
    model_out_workload_t base = full_workload(), x = base;
    expect(MODEL_RES_WORKLOAD, &base, &x, "copy", 0);
}
END_TEST

START_TEST(each_workload_field_reaches_equality_encoding_and_json)
{
    model_out_workload_t base = full_workload();
    MODEL_WORKLOAD_FIELDS(WL_MUT)
}
END_TEST

/* ---------- services ---------- */

static model_net_addr_t netaddrs_a[] = {{"net1", {4, {10, 96, 0, 1}}},
                                        {"net2", {4, {10, 96, 0, 2}}}};
static model_net_addr_t netaddrs_alt[][2] = {
    {{"net1", {4, {10, 96, 0, 1}}}, {"net3", {4, {10, 96, 0, 2}}}},
    {{"net1", {4, {10, 96, 0, 1}}}, {"net2", {4, {10, 96, 0, 3}}}},
};
static const char *names_a[] = {"http", "https"}, *names_b[] = {"http", "tls"};
static const char *sans_a[] = {"spiffe://td/ns/a/sa/a", "spiffe://td/ns/b/sa/b"};
static const char *sans_b[] = {"spiffe://td/ns/a/sa/a", "spiffe://td/ns/b/sa/c"};

static model_out_service_t full_service(void)
{
    model_out_service_t o = {0};
#define SVC_SET(kind, f, pb, json) SVC_SET_##kind(f)
#define SVC_SET_TRUE(f)
#define SVC_SET_NETADDRS(f) (o.f = netaddrs_a, o.n##f = 2);
#define SVC_SET_PORTS(f) (o.f = ports_a, o.n##f = 2);
#define SVC_SET_PORT_NAMES(f) o.f = names_a;
#define SVC_SET_SANS(f) (o.f = sans_a, o.n##f = 2);
#define SVC_SET_LB(f)                                                                              \
    o.f##_mode = MODEL_LB_FAILOVER;                                                                \
    o.f##_prefs[0] = MODEL_LB_SCOPE_NETWORK;                                                       \
    o.f##_prefs[1] = MODEL_LB_SCOPE_REGION;                                                        \
    o.n##f##_prefs = 2;                                                                            \
    o.f##_allow_all = true;
#define SVC_SET_IPF(f) o.f = MODEL_IPF_DUAL;
#define SVC_SET_STR(f) o.f = #f "-value";
#define SVC_SET_GW(f) o.f = &svc_wp_a;
#define SVC_SET_CANARY(f) (o.f = &svc_wp_alt[3], o.f##_weight = 5);
#define SVC_SET_FLAG(f) o.f = 1;
    MODEL_SERVICE_FIELDS(SVC_SET)
#undef SVC_SET
    return o;
}

#define SVC_TRY(change, what, want)                                                                \
    do {                                                                                           \
        model_out_service_t x = base;                                                              \
        change;                                                                                    \
        expect(MODEL_RES_SERVICE, &base, &x, what, want);                                          \
    } while (0)

#define SVC_MUT(kind, f, pb, json) SVC_MUT_##kind(f)
#define SVC_MUT_STR(f)                                                                             \
    SVC_TRY(x.f = "other", #f, DIFF_ALL);                                                          \
    SVC_TRY(x.f = NULL, #f " unset", DIFF_ALL);
#define SVC_MUT_TRUE(f) /* no member: always sent */
#define SVC_MUT_NETADDRS(f)                                                                        \
    for (size_t i = 0; i < sizeof(netaddrs_alt) / sizeof(netaddrs_alt[0]); i++)                    \
        SVC_TRY(x.f = netaddrs_alt[i], #f " part", DIFF_ALL);                                      \
    SVC_TRY(x.n##f = 1, #f " count", DIFF_ALL);
#define SVC_MUT_PORTS(f)                                                                           \
    for (size_t i = 0; i < sizeof(ports_alt) / sizeof(ports_alt[0]); i++)                          \
        SVC_TRY(x.f = ports_alt[i], #f " part", DIFF_ALL);                                         \
    SVC_TRY(x.n##f = 1, #f " count", DIFF_ALL);
/* for EDS only: not part of an istio.workload.Service */
#define SVC_MUT_PORT_NAMES(f) SVC_TRY(x.f = names_b, #f, DIFF_EQ);
#define SVC_MUT_SANS(f)                                                                            \
    SVC_TRY(x.f = sans_b, #f, DIFF_ALL);                                                           \
    SVC_TRY(x.n##f = 1, #f " count", DIFF_ALL);
#define SVC_MUT_LB(f)                                                                              \
    SVC_TRY(x.f##_mode = MODEL_LB_STRICT, #f " mode", DIFF_ALL);                                   \
    SVC_TRY(x.f##_prefs[1] = MODEL_LB_SCOPE_ZONE, #f " preference", DIFF_ALL);                     \
    SVC_TRY(x.n##f##_prefs = 1, #f " preferences", DIFF_ALL);                                      \
    SVC_TRY(x.f##_allow_all = false, #f " health policy", DIFF_ALL);                               \
    SVC_TRY((x.f##_mode = MODEL_LB_UNSPECIFIED, x.f##_allow_all = false), #f " unset", DIFF_ALL);
#define SVC_MUT_IPF(f) SVC_TRY(x.f = MODEL_IPF_V4, #f, DIFF_ALL);
#define SVC_MUT_GW(f)                                                                              \
    SVC_TRY(x.f = NULL, #f " unset", DIFF_ALL);                                                    \
    for (size_t i = 0; i < sizeof(svc_wp_alt) / sizeof(svc_wp_alt[0]); i++)                        \
        SVC_TRY(x.f = &svc_wp_alt[i], #f " part", DIFF_ALL);
#define SVC_MUT_CANARY(f)                                                                          \
    SVC_TRY(x.f = NULL, #f " unset", DIFF_ALL);                                                    \
    SVC_TRY(x.f##_weight = 6, #f " weight", DIFF_ALL);                                             \
    SVC_TRY(x.f##_weight = 0, #f " weight 0", DIFF_ALL);                                           \
    for (size_t i = 0; i < sizeof(svc_wp_alt) / sizeof(svc_wp_alt[0]) - 1; i++)                    \
        SVC_TRY(x.f = &svc_wp_alt[i], #f " part", DIFF_ALL);
#define SVC_MUT_FLAG(f) SVC_TRY(x.f = !x.f, #f, DIFF_ALL);

START_TEST(service_copy_is_equal_encoded_and_rendered_alike)
{
    model_out_service_t base = full_service(), x = base;
    expect(MODEL_RES_SERVICE, &base, &x, "copy", 0);
}
END_TEST

START_TEST(each_service_field_reaches_equality_encoding_and_json)
{
    model_out_service_t base = full_service();
    MODEL_SERVICE_FIELDS(SVC_MUT)
}
END_TEST

/* A pod's Workload and its resource fit the 320-byte malloc class with
 * what derive.c puts in its arena (bench_model's long names). The Workload
 * was 152 bytes until authorization_policies took one pointer (a shared
 * string, no count); the resource gave back the 8 bytes of its cache's
 * free function, which now travels in the cached value. */
START_TEST(pod_workload_stays_compact)
{
    ck_assert_uint_le(sizeof(model_out_workload_t), 160);
    ck_assert_uint_le(sizeof(model_res_t), 240);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fields");
    TCase *t = tcase_create("core");
    tcase_add_test(t, workload_copy_is_equal_encoded_and_rendered_alike);
    tcase_add_test(t, each_workload_field_reaches_equality_encoding_and_json);
    tcase_add_test(t, service_copy_is_equal_encoded_and_rendered_alike);
    tcase_add_test(t, each_service_field_reaches_equality_encoding_and_json);
    tcase_add_test(t, pod_workload_stays_compact);
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
