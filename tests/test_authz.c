/*
 * test_authz.c - ambient authorization: decoding AuthorizationPolicy and
 * PeerAuthentication (kube/decode_sec.c), istiod's translation into
 * istio.security.Authorization and the per-workload policy list
 * (model/authz.c), and the wire encoding (xds/encode_authz.c). The cases
 * follow istiod's own tests (authorization_test.go, TestRBACConvert,
 * ambientindex_test.go); outputs are compared in a compact notation:
 *   G[...] a group, C[...] a clause, {...} a match whose fields are
 *   ns nns p np sip nsip dip ndip dp ndp sa nsa (proto order), string
 *   matches as "x" (exact), "pre:x", "suf:x", "*" (presence).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authorization.pb-c.h"
#include "kube.h"
#include "model.h"
#include "xds.h"

#define ROOT "istio-system"

/* ---------- helpers ---------- */

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    ck_assert_msg(j != NULL, "bad test JSON: %s: %s", je.text, text);
    return j;
}

/* An AuthorizationPolicy ns/name with the given spec (JSON text). */
static model_authz_policy_t *ap_full(const char *ns, const char *name, const char *annotations,
                                     const char *spec)
{
    char text[8192], err[MODEL_ERRLEN];
    snprintf(text, sizeof(text),
             "{\"kind\":\"AuthorizationPolicy\",\"metadata\":{\"namespace\":\"%s\",\"name\":\"%s\","
             "\"creationTimestamp\":\"2024-01-01T00:00:00Z\",\"annotations\":%s},\"spec\":%s}",
             ns, name, annotations ? annotations : "{}", spec);
    json_t *j = parse(text);
    model_authz_policy_t *p = NULL;
    int rc = kube_decode_authz(j, &p, err, sizeof(err));
    json_decref(j);
    ck_assert_msg(rc == 0, "%s: %s", spec, err);
    return p;
}

static model_authz_policy_t *ap(const char *ns, const char *name, const char *spec)
{
    return ap_full(ns, name, NULL, spec);
}

static void put_sm(FILE *f, const model_strmatch_t *m)
{
    static const char *const pre[] = {"", "pre:", "suf:", "*"};
    fprintf(f, "%s%s", pre[m->kind], m->kind == MODEL_SM_PRESENCE ? "" : m->value);
}

static void put_cidr(FILE *f, const model_cidr_t *c)
{
    char buf[64];
    fprintf(f, "%s/%u", model_ip_format(&c->ip, buf, sizeof(buf)), c->length);
}

static void put_port(FILE *f, const uint32_t *p)
{
    fprintf(f, "%u", *p);
}

static void put_sa(FILE *f, const model_sa_match_t *s)
{
    fprintf(f, "%s/%s", s->ns, s->sa);
}

#define PUT_SM put_sm
#define PUT_CIDR put_cidr
#define PUT_PORT put_port
#define PUT_SA put_sa

static const char *const short_names[] = {"ns",  "nns",  "p",  "np",  "sip", "nsip",
                                          "dip", "ndip", "dp", "ndp", "sa",  "nsa"};

#define PUT_FIELD(kind, m)                                                                         \
    if (x->n_##m > 0) {                                                                            \
        fprintf(f, "%s%s:", first ? "" : " ", short_names[field]);                                 \
        for (size_t i = 0; i < x->n_##m; i++) {                                                    \
            if (i > 0)                                                                             \
                fputc(',', f);                                                                     \
            PUT_##kind(f, &x->m[i]);                                                               \
        }                                                                                          \
        first = false;                                                                             \
    }                                                                                              \
    field++;

static void put_match(FILE *f, const model_authz_match_t *x)
{
    bool first = true;
    size_t field = 0;
    fputc('{', f);
    MODEL_AUTHZ_MATCH_FIELDS(PUT_FIELD)
    fputc('}', f);
}

/* The groups of a in the notation above; caller frees. */
static char *render(const model_out_authz_t *a)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (size_t g = 0; g < a->ngroups; g++) {
        fprintf(f, "%sG[", g ? " " : "");
        for (size_t c = 0; c < a->groups[g].nclauses; c++) {
            const model_authz_clause_t *cl = &a->groups[g].clauses[c];
            fprintf(f, "%sC[", c ? " " : "");
            for (size_t m = 0; m < cl->nmatches; m++) {
                if (m)
                    fputc(' ', f);
                put_match(f, &cl->matches[m]);
            }
            fputc(']', f);
        }
        fputc(']', f);
    }
    fclose(f);
    return buf;
}

static void assert_render(const model_out_authz_t *a, const char *want, const char *what)
{
    ck_assert_msg(a != NULL, "%s: nothing sent", what);
    char *got = render(a);
    ck_assert_msg(strcmp(got, want) == 0, "%s:\n got  %s\n want %s", what, got, want);
    free(got);
}

static model_out_authz_t *convert(const model_authz_policy_t *p, const char *root, bool dry,
                                  model_authz_status_t *st)
{
    model_authz_opts_t o = {root, dry};
    model_out_authz_t *a = NULL;
    ck_assert_int_eq(model_authz_convert(p, &o, &a, st), 0);
    return a;
}

/* ---------- AuthorizationPolicy status (authorization_test.go) ---------- */

#define HTTP_PRE "ztunnel does not support HTTP attributes (found: "
#define HTTP_MID ". In ambient mode you must use a waypoint proxy to enforce HTTP rules. "
#define TAIL_ALLOW                                                                                 \
    "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more "       \
    "restrictive than requested."
#define TAIL_NOOP                                                                                  \
    "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at "    \
    "ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce "     \
    "this policy."
#define TAIL_DENY                                                                                  \
    "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more "      \
    "restrictive than requested."

static const struct status_case {
    const char *name;
    const char *spec;
    bool sent;
    const char *msg; /* NULL: no warning */
    int effective;   /* -1: not checked */
    const char *groups;
} status_cases[] = {
    {"target_ref_nothing_no_status",
     "{\"targetRef\":{\"kind\":\"Service\",\"name\":\"test-svc\"},\"rules\":[]}", false, NULL, -1,
     NULL},
    {"named_port_dropped_silently",
     "{\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"trust/ns/echo-1234/\"]}}],"
     "\"to\":[{\"operation\":{\"ports\":[\"http\"]}}]}]}",
     true, NULL, -1, "G[C[{}] C[{p:trust/ns/echo-1234/}]]"},
    {"audit_unsupported",
     "{\"action\":\"AUDIT\",\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"a\"]}}]}]}", false,
     "ztunnel does not support the AUDIT action", -1, NULL},
    {"custom_unsupported", "{\"action\":\"CUSTOM\",\"provider\":{\"name\":\"x\"}}", false,
     "ztunnel does not support the CUSTOM action", -1, NULL},
    {"allow_l7_rule_dropped",
     "{\"rules\":[{\"from\":[{\"source\":{\"requestPrincipals\":[\"example.com/sub-1\"]}}],"
     "\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}],"
     "\"when\":[{\"key\":\"request.auth.presenter\",\"values\":[\"x\"]}]}]}",
     true, HTTP_PRE "methods, request.auth.presenter, requestPrincipals)" HTTP_MID TAIL_ALLOW, 0,
     ""},
    {"deny_l4_no_status",
     "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"cluster.local/ns/"
     "foo/sa/bar\"]}}]}]}",
     true, NULL, 1, "G[C[{p:cluster.local/ns/foo/sa/bar}]]"},
    {"deny_only_l7_no_effect",
     "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"notRequestPrincipals\":[\"*\"]}}]}]"
     "}",
     true, HTTP_PRE "notRequestPrincipals)" HTTP_MID TAIL_NOOP, 0, "G[C[{}]]"},
    {"deny_mixed_source_enforced",
     "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"a\"],"
     "\"notRequestPrincipals\":[\"*\"]}}]}]}",
     true, HTTP_PRE "notRequestPrincipals)" HTTP_MID TAIL_DENY, 1, "G[C[{p:a}]]"},
    {"deny_l7_rule_and_l4_rule",
     "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"notRequestPrincipals\":[\"*\"]}}]},"
     "{\"from\":[{\"source\":{\"principals\":[\"a\"]}}]}]}",
     true, HTTP_PRE "notRequestPrincipals)" HTTP_MID TAIL_DENY, 1, "G[C[{}]] G[C[{p:a}]]"},
    {"deny_empty_rule_is_effective",
     "{\"action\":\"DENY\",\"rules\":[{},{\"from\":[{\"source\":{\"notRequestPrincipals\":[\"*\"]}}"
     "]}]}",
     true, HTTP_PRE "notRequestPrincipals)" HTTP_MID TAIL_DENY, 1, "G[] G[C[{}]]"},
    {"deny_l7_when_makes_rule_noop",
     "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"a\"]}}],"
     "\"when\":[{\"key\":\"request.headers[x-token]\",\"values\":[\"secret\"]}]}]}",
     true, HTTP_PRE "request.headers[x-token])" HTTP_MID TAIL_NOOP, 0, "G[C[{p:a}] C[{}]]"},
    {"deny_l7_to_makes_rule_noop",
     "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"a\"]}}],"
     "\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}]}]}",
     true, HTTP_PRE "methods)" HTTP_MID TAIL_NOOP, 0, "G[C[{}] C[{p:a}]]"},
};

START_TEST(status_cases_as_istiod)
{
    const struct status_case *tc = &status_cases[_i];
    model_authz_policy_t *p = ap("ns", "p", tc->spec);
    model_authz_status_t st;
    model_out_authz_t *a = convert(p, "test-system", false, &st);
    ck_assert_msg((a != NULL) == tc->sent, "%s: sent %d", tc->name, a != NULL);
    if (tc->msg) {
        ck_assert_msg(st.message && strcmp(st.message, tc->msg) == 0, "%s:\n got  %s\n want %s",
                      tc->name, st.message ? st.message : "(none)", tc->msg);
        ck_assert_str_eq(st.reason, "UnsupportedValue");
    } else {
        ck_assert_msg(st.reason == NULL && st.message == NULL, "%s: unexpected status %s", tc->name,
                      st.message);
    }
    if (tc->effective >= 0)
        ck_assert_msg(model_out_authz_effective(a) == (tc->effective == 1), "%s: effective",
                      tc->name);
    if (tc->groups)
        assert_render(a, tc->groups, tc->name);
    model_authz_status_clear(&st);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

START_TEST(dry_run_needs_flag)
{
    static const char *const msg =
        "found policy \"ns1/dry\" using dry-run annotation, but support for ambient dry-run "
        "authorizationPolicies isn't enabled";
    model_authz_status_t st;
    model_authz_policy_t *p = ap_full("ns1", "dry", "{\"istio.io/dry-run\":\"true\"}", "{}");
    model_out_authz_t *a = convert(p, ROOT, false, &st);
    ck_assert_ptr_null(a);
    ck_assert_str_eq(st.message, msg);
    model_authz_status_clear(&st);
    a = convert(p, ROOT, true, &st);
    ck_assert_ptr_nonnull(a);
    ck_assert(a->dry_run);
    ck_assert_ptr_null(st.message);
    model_out_authz_free(a);
    model_authz_policy_free(p);

    /* targetRef comes after dry run: the dry-run status still applies */
    p = ap_full("ns1", "dry", "{\"istio.io/dry-run\":\"T\"}",
                "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"s\"}]}");
    a = convert(p, ROOT, false, &st);
    ck_assert_ptr_null(a);
    ck_assert_str_eq(st.message, msg);
    model_authz_status_clear(&st);
    model_authz_policy_free(p);

    /* not a ParseBool spelling: enforced as a normal policy */
    p = ap_full("ns1", "dry", "{\"istio.io/dry-run\":\"yes\"}", "{}");
    a = convert(p, ROOT, false, &st);
    ck_assert_ptr_nonnull(a);
    ck_assert(!a->dry_run);
    ck_assert_ptr_null(st.message);
    model_out_authz_free(a);
    model_authz_policy_free(p);

    p = ap_full("ns1", "dry", "{\"istio.io/dry-run\":\"False\"}", "{}");
    a = convert(p, ROOT, false, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert(!a->dry_run);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

START_TEST(scope_from_selector_and_root)
{
    static const struct {
        const char *ns, *spec;
        model_authz_scope_t scope;
    } cases[] = {
        {ROOT, "{}", MODEL_AUTHZ_GLOBAL},
        {"ns1", "{}", MODEL_AUTHZ_NAMESPACE},
        {ROOT, "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}}}", MODEL_AUTHZ_WORKLOAD_SELECTOR},
        {"ns1", "{\"selector\":{}}", MODEL_AUTHZ_WORKLOAD_SELECTOR},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        model_authz_policy_t *p = ap(cases[i].ns, "p", cases[i].spec);
        model_out_authz_t *a = convert(p, ROOT, false, NULL);
        ck_assert_int_eq(a->scope, cases[i].scope);
        ck_assert_int_eq(a->action, MODEL_AUTHZ_ALLOW);
        ck_assert_str_eq(a->name, "p");
        ck_assert_str_eq(a->ns, cases[i].ns);
        ck_assert_uint_eq(a->ngroups, 0);
        model_out_authz_free(a);
        model_authz_policy_free(p);
    }
}
END_TEST

START_TEST(value_conversions)
{
    model_authz_policy_t *p =
        ap("ns1", "p",
           "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{"
           "\"principals\":[\"*\",\"*a*\",\"b*\",\"\",\"spiffe://td/ns/x/sa/y\"],"
           "\"ipBlocks\":[\"10.1.2.3/24\",\"::1\",\"\",\"bad\",\"1.2.3.4/33\",\"1.2.3.4/08\","
           "\"fe80::1%eth0\",\"0.0.0.0/0\"],"
           "\"serviceAccounts\":[\"a/b/c\",\"bare\"]}}],"
           "\"to\":[{\"operation\":{\"ports\":[\"0\",\"65535\",\"65536\",\"http\",\"-1\",\"080\","
           "\" 1\"]}}]}]}");
    model_out_authz_t *a = convert(p, ROOT, false, NULL);
    assert_render(a,
                  "G[C[{dp:0,65535,80}] C[{p:*,suf:a*,pre:b,,spiffe://td/ns/x/sa/y "
                  "sip:10.1.2.3/24,::1/128,fe80::1/128,0.0.0.0/0 sa:a/b/c,ns1/bare}]]",
                  "conversions");
    ck_assert_int_eq(a->action, MODEL_AUTHZ_DENY);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

/* ---------- TestRBACConvert goldens ---------- */

static const char *const allow_full_spec =
    "{\"rules\":["
    "{\"from\":[{\"source\":{\"principals\":[\"principal\",\"principal-prefix-*\","
    "\"*-suffix-principal\",\"*\"],\"notPrincipals\":[\"not-principal\",\"not-principal-prefix-*\","
    "\"*-not-suffix-principal\",\"*\"]}}]},"
    "{\"from\":[{\"source\":{\"serviceAccounts\":[\"ns/sa\",\"sa-only\"],"
    "\"notServiceAccounts\":[\"ns/sa-not\",\"sa-not-only\"]}}]},"
    "{\"from\":[{\"source\":{\"namespaces\":[\"namespace\",\"namespace-prefix-*\","
    "\"*-namespace-suffix\",\"*\"],\"notNamespaces\":[\"not-namespace\",\"not-namespace-prefix-*\","
    "\"*-not-namespace-suffix\",\"*\"]}}]},"
    "{\"from\":[{\"source\":{\"ipBlocks\":[\"1.2.3.4\",\"5.6.0.0/16\"],"
    "\"notIpBlocks\":[\"2.2.3.4\",\"6.6.0.0/16\"]}}]},"
    "{\"to\":[{\"operation\":{\"ports\":[\"80\",\"90\"],\"notPorts\":[\"800\",\"900\"]}}]},"
    "{\"when\":[{\"key\":\"source.ip\",\"values\":[\"10.10.10.10\",\"192.168.10.0/24\"],"
    "\"notValues\":[\"90.10.10.10\",\"90.168.10.0/24\"]}]},"
    "{\"when\":[{\"key\":\"source.namespace\",\"values\":[\"ns\"],\"notValues\":[\"not-ns\"]}]},"
    "{\"when\":[{\"key\":\"source.principal\",\"values\":[\"principal\"],"
    "\"notValues\":[\"not-principal\"]}]},"
    "{\"when\":[{\"key\":\"destination.ip\",\"values\":[\"10.10.10.10\",\"192.168.10.0/24\"],"
    "\"notValues\":[\"90.10.10.10\",\"90.168.10.0/24\"]}]},"
    "{\"when\":[{\"key\":\"destination.port\",\"values\":[\"91\",\"92\"],"
    "\"notValues\":[\"9001\",\"9002\"]}]},"
    "{\"from\":[{\"source\":{\"requestPrincipals\":[\"id-1\"]}}]},"
    "{\"from\":[{\"source\":{\"remoteIpBlocks\":[\"1.2.3.4\"]}}]},"
    "{\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}]},"
    "{\"to\":[{\"operation\":{\"hosts\":[\"example.com\"]}}]},"
    "{\"to\":[{\"operation\":{\"paths\":[\"/x\"]}}]},"
    "{\"when\":[{\"key\":\"request.headers[X-header]\",\"values\":[\"h\"]}]},"
    "{\"when\":[{\"key\":\"remote.ip\",\"values\":[\"10.0.0.1\"]}]},"
    "{\"when\":[{\"key\":\"request.auth.claims[iss]\",\"values\":[\"i\"]}]},"
    "{\"when\":[{\"key\":\"connection.sni\",\"values\":[\"sni\"]}]},"
    "{\"when\":[{\"key\":\"experimental.envoy.filters.a.b[c]\",\"values\":[\"e\"]}]}]}";

START_TEST(rbac_allow_full)
{
    model_authz_policy_t *p = ap("cfg", "allow-full", allow_full_spec);
    model_authz_status_t st;
    model_out_authz_t *a = convert(p, ROOT, false, &st);
    ck_assert_int_eq(a->scope, MODEL_AUTHZ_NAMESPACE);
    assert_render(a,
                  "G[C[{p:principal,pre:principal-prefix-,suf:-suffix-principal,* "
                  "np:not-principal,pre:not-principal-prefix-,suf:-not-suffix-principal,*}]] "
                  "G[C[{sa:ns/sa,cfg/sa-only nsa:ns/sa-not,cfg/sa-not-only}]] "
                  "G[C[{ns:namespace,pre:namespace-prefix-,suf:-namespace-suffix,* "
                  "nns:not-namespace,pre:not-namespace-prefix-,suf:-not-namespace-suffix,*}]] "
                  "G[C[{sip:1.2.3.4/32,5.6.0.0/16 nsip:2.2.3.4/32,6.6.0.0/16}]] "
                  "G[C[{dp:80,90 ndp:800,900}]] "
                  "G[C[{sip:10.10.10.10/32,192.168.10.0/24 nsip:90.10.10.10/32,90.168.10.0/24}]] "
                  "G[C[{ns:ns nns:not-ns}]] "
                  "G[C[{p:principal np:not-principal}]] "
                  "G[C[{dip:10.10.10.10/32,192.168.10.0/24 ndip:90.10.10.10/32,90.168.10.0/24}]] "
                  "G[C[{dp:91,92 ndp:9001,9002}]]",
                  "allow-full");
    ck_assert_str_eq(st.message, HTTP_PRE
                     "connection.sni, experimental.envoy.filters.a.b[c], hosts, methods, paths, "
                     "remote.ip, remoteIpBlocks, request.auth.claims[iss], "
                     "request.headers[X-header], requestPrincipals)" HTTP_MID TAIL_ALLOW);
    model_authz_status_clear(&st);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

static const char *groups_spec(const char *action)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"action\":\"%s\",\"rules\":["
             "{\"to\":[{\"operation\":{\"ports\":[\"80\"]}}],\"from\":[{\"source\":{\"namespaces\":"
             "[\"from-mix-ns\"],\"principals\":[\"from-mix-principal\"],\"requestPrincipals\":"
             "[\"rp\"]}}]},"
             "{\"from\":[{\"source\":{\"namespaces\":[\"to-mix-ns\"],\"principals\":"
             "[\"to-mix-principal\"]}}],\"to\":[{\"operation\":{\"ports\":[\"80\"],\"methods\":"
             "[\"GET\"]}}]},"
             "{\"to\":[{\"operation\":{\"ports\":[\"80\"]}}],\"from\":[{\"source\":{\"namespaces\":"
             "[\"only-l4-ns\"],\"principals\":[\"only-l4-principals\"]}}]},"
             "{\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}],\"from\":[{\"source\":"
             "{\"requestPrincipals\":[\"rp\"]}}]},"
             "{\"when\":[{\"key\":\"source.namespace\",\"values\":[\"when-l4-l7-ns\"]},"
             "{\"key\":\"request.headers[x]\",\"values\":[\"y\"]}]},"
             "{\"when\":[{\"key\":\"source.namespace\",\"values\":[\"when-l4-ns\"]},"
             "{\"key\":\"source.ip\",\"values\":[\"10.10.10.10\"],\"notValues\":"
             "[\"20.20.20.20\"]}]},"
             "{\"when\":[{\"key\":\"request.headers[a]\",\"values\":[\"b\"]},"
             "{\"key\":\"request.auth.principal\",\"values\":[\"c\"]}]}]}",
             action);
    return buf;
}

START_TEST(rbac_allow_groups_drop_l7_rules)
{
    model_authz_policy_t *p = ap("ns1", "groups", groups_spec("ALLOW"));
    model_out_authz_t *a = convert(p, ROOT, false, NULL);
    assert_render(a,
                  "G[C[{dp:80}] C[{ns:only-l4-ns p:only-l4-principals}]] "
                  "G[C[{ns:when-l4-ns}] C[{sip:10.10.10.10/32 nsip:20.20.20.20/32}]]",
                  "allow-groups");
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

START_TEST(rbac_deny_groups_keep_l4_part)
{
    model_authz_policy_t *p = ap("ns1", "groups-deny", groups_spec("DENY"));
    model_authz_status_t st;
    model_out_authz_t *a = convert(p, ROOT, false, &st);
    assert_render(a,
                  "G[C[{dp:80}] C[{ns:from-mix-ns p:from-mix-principal}]] "
                  "G[C[{dp:80}] C[{ns:to-mix-ns p:to-mix-principal}]] "
                  "G[C[{dp:80}] C[{ns:only-l4-ns p:only-l4-principals}]] "
                  "G[C[{}] C[{}]] "
                  "G[C[{ns:when-l4-l7-ns}] C[{}]] "
                  "G[C[{ns:when-l4-ns}] C[{sip:10.10.10.10/32 nsip:20.20.20.20/32}]] "
                  "G[C[{}] C[{}]]",
                  "deny-groups");
    ck_assert_str_eq(st.message,
                     HTTP_PRE "methods, request.auth.principal, request.headers[a], "
                              "request.headers[x], requestPrincipals)" HTTP_MID TAIL_DENY);
    model_authz_status_clear(&st);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

/* ---------- PeerAuthentication ---------- */

static int pa_port_cmp(const void *a, const void *b)
{
    const model_pa_port_t *x = a, *y = b;
    return x->port < y->port ? -1 : x->port > y->port;
}

static model_mtls_t mode_of(char c)
{
    return c == 'S'   ? MODEL_MTLS_STRICT
           : c == 'P' ? MODEL_MTLS_PERMISSIVE
           : c == 'D' ? MODEL_MTLS_DISABLE
                      : MODEL_MTLS_UNSET;
}

/* sel "app=a" or NULL (no selector); mode U/D/P/S; ports "9090S,8080P". */
static model_peer_authn_t *pa_new(const char *ns, const char *name, int64_t created,
                                  const char *sel, char mode, const char *ports)
{
    model_peer_authn_t *p = calloc(1, sizeof(*p));
    p->ns = strdup(ns);
    p->name = strdup(name);
    p->created = created;
    p->mode = mode_of(mode);
    if (sel) {
        char k[64], v[64];
        p->selector.set = p->selector.has_labels = true;
        ck_assert_int_eq(sscanf(sel, "%63[^=]=%63s", k, v), 2);
        model_labels_set(&p->selector.labels, k, v);
    }
    for (const char *s = ports; s && *s;) {
        char *end;
        p->ports = realloc(p->ports, (p->nports + 1) * sizeof(*p->ports));
        p->ports[p->nports].port = (uint32_t)strtoul(s, &end, 10);
        p->ports[p->nports++].mode = mode_of(*end);
        s = end[1] == ',' ? end + 2 : end + 1;
    }
    if (p->nports > 1)
        qsort(p->ports, p->nports, sizeof(*p->ports), pa_port_cmp);
    return p;
}

static const struct pa_case {
    const char *name;
    const char *sel;
    char mode;
    const char *ports;
    char ns_mode, root_mode; /* 0: no such policy */
    const char *want;        /* NULL: nothing */
} pa_cases[] = {
    {"peer-authn-disable", NULL, 'D', NULL, 0, 0, NULL},
    {"peer-authn-permissive", NULL, 'P', NULL, 0, 0, NULL},
    {"peer-authn-strict", NULL, 'S', NULL, 0, 0, NULL},
    {"peer-authn-strict-workload", "app=a", 'S', NULL, 0, 0, NULL},
    {"peer-authn-strict-and-strict-port-mtls", "app=a", 'S', "8080S", 0, 0, NULL},
    {"peer-authn-disable-port-mtls-strict", "app=a", 'D', "9090S", 0, 0, "G[C[{np:* dp:9090}]]"},
    {"peer-authn-permissive-port-mtls-strict", "app=a", 'P', "9090S", 0, 0, "G[C[{np:* dp:9090}]]"},
    {"peer-authn-permissive-port-mtls-strict-and-permissive", "app=a", 'P', "9090S,8080P", 0, 0,
     "G[C[{np:* dp:9090}]]"},
    {"peer-authn-unset-port-mtls-strict", "app=a", 'U', "8080S", 0, 0, "G[C[{np:* dp:8080}]]"},
    {"peer-authn-strict-and-permissive-port-mtls", "app=a", 'S', "9090P", 0, 0,
     "G[C[{np:*}] C[{ndp:9090}]]"},
    {"peer-authn-strict-and-disable-port-mtls", "app=a", 'S', "9090D", 0, 0,
     "G[C[{np:*}] C[{ndp:9090}]]"},
    {"peer-authn-strict-port-mtls-strict-and-permissive", "app=a", 'S', "9090S,8080P", 0, 0,
     "G[C[{np:*}] C[{ndp:8080}]]"},
    {"peer-authn-permissive-root-permissive-workload", "app=a", 'U', "9090P", 0, 'P', NULL},
    {"peer-authn-permissive-root-strict-namespace-permissive-workload", "app=a", 'U', "9090P", 'S',
     'P', "G[C[{ndp:9090}] C[{np:*}]]"},
    {"peer-authn-permissive-root-permissive-namespace-strict-workload-ports", "app=a", 'U',
     "9090S,8080S", 'P', 'P', "G[C[{np:* dp:8080}]] G[C[{np:* dp:9090}]]"},
    {"peer-authn-permissive-root-unset-namespace-mixed-workload-ports", "app=a", 'U', "9090S,8080P",
     'U', 'P', "G[C[{np:* dp:9090}]]"},
    {"peer-authn-strict-root-permissive-namespace-strict-workload", "app=a", 'U', "9090S", 'P', 'S',
     "G[C[{np:* dp:9090}]]"},
    {"peer-authn-strict-root-permissive-workload", "app=a", 'U', "9090P", 0, 'S',
     "G[C[{ndp:9090}] C[{np:*}]]"},
    {"peer-authn-strict-root-unset-workload-port-mtls-strict-and-permissive", "app=a", 'U',
     "9090P,8080S", 0, 'S', "G[C[{ndp:9090}] C[{np:*}]]"},
    /* Q1: a PERMISSIVE workload's STRICT port under a STRICT root is skipped */
    {"quirk_q1_permissive_workload_strict_root", "app=a", 'P', "9090S", 0, 'S', NULL},
    /* Q2: an explicit UNSET namespace policy counts as not strict here */
    {"quirk_q2_unset_namespace_strict_root", "app=a", 'U', "9090P", 'U', 'S', NULL},
};

START_TEST(peer_authn_goldens)
{
    const struct pa_case *tc = &pa_cases[_i];
    model_peer_authn_t *pa = pa_new("foo", "pa", 3, tc->sel, tc->mode, tc->ports);
    model_peer_authn_t *nsp = tc->ns_mode ? pa_new("foo", "ns", 1, NULL, tc->ns_mode, NULL) : NULL;
    model_peer_authn_t *rootp =
        tc->root_mode ? pa_new(ROOT, "r", 1, NULL, tc->root_mode, NULL) : NULL;
    model_out_authz_t *a = NULL;
    ck_assert_int_eq(model_authz_convert_pa(pa, nsp, rootp, ROOT, &a), 0);
    if (!tc->want) {
        ck_assert_msg(a == NULL, "%s: sent %s", tc->name, a ? render(a) : "");
    } else {
        assert_render(a, tc->want, tc->name);
        ck_assert_str_eq(a->name, "converted_peer_authentication_pa");
        ck_assert_str_eq(a->ns, "foo");
        ck_assert_int_eq(a->scope, MODEL_AUTHZ_WORKLOAD_SELECTOR);
        ck_assert_int_eq(a->action, MODEL_AUTHZ_DENY);
    }
    model_out_authz_free(a);
    model_peer_authn_free(pa);
    model_peer_authn_free(nsp);
    model_peer_authn_free(rootp);
}
END_TEST

START_TEST(peer_authn_root_namespace_not_converted)
{
    model_peer_authn_t *pa = pa_new(ROOT, "pa", 1, "app=a", 'P', "9090S");
    model_out_authz_t *a = NULL;
    ck_assert_int_eq(model_authz_convert_pa(pa, NULL, NULL, ROOT, &a), 0);
    ck_assert_ptr_null(a);
    model_peer_authn_free(pa);
}
END_TEST

START_TEST(static_strict_policy)
{
    model_out_authz_t *a = model_authz_static_strict(ROOT);
    ck_assert_str_eq(a->name, "istio_converted_static_strict");
    ck_assert_str_eq(a->ns, ROOT);
    ck_assert_int_eq(a->scope, MODEL_AUTHZ_WORKLOAD_SELECTOR);
    ck_assert_int_eq(a->action, MODEL_AUTHZ_DENY);
    assert_render(a, "G[C[{np:*}]]", "static");
    model_out_authz_free(a);
}
END_TEST

START_TEST(oldest_level_policy_wins)
{
    model_peer_authn_t *a = pa_new("ns1", "b", 5, NULL, 'S', NULL);
    model_peer_authn_t *b = pa_new("ns1", "a", 5, NULL, 'P', NULL);
    model_peer_authn_t *c = pa_new("ns1", "c", 9, NULL, 'P', NULL);
    model_peer_authn_t *d = pa_new("ns1", "d", 1, "app=x", 'P', NULL);
    const model_peer_authn_t *all[] = {a, b, c, d};
    ck_assert_ptr_eq(model_pa_oldest_level(all, 4, "ns1"), b);
    ck_assert_ptr_null(model_pa_oldest_level(all, 4, "ns2"));
    model_peer_authn_free(a);
    model_peer_authn_free(b);
    model_peer_authn_free(c);
    model_peer_authn_free(d);
}
END_TEST

/* ---------- per-workload policy list (ambientindex_test.go) ---------- */

/* A mutable policy set: replace or delete by ns/name. */
typedef struct pset {
    model_authz_policy_t *aps[16];
    model_peer_authn_t *pas[16];
    size_t naps, npas;
} pset_t;

static void pset_pa(pset_t *s, model_peer_authn_t *p)
{
    for (size_t i = 0; i < s->npas; i++) {
        if (strcmp(s->pas[i]->ns, p->ns) == 0 && strcmp(s->pas[i]->name, p->name) == 0) {
            model_peer_authn_free(s->pas[i]);
            s->pas[i] = p;
            return;
        }
    }
    s->pas[s->npas++] = p;
}

static void pset_del_pa(pset_t *s, const char *ns, const char *name)
{
    for (size_t i = 0; i < s->npas; i++) {
        if (strcmp(s->pas[i]->ns, ns) == 0 && strcmp(s->pas[i]->name, name) == 0) {
            model_peer_authn_free(s->pas[i]);
            s->pas[i] = s->pas[--s->npas];
            return;
        }
    }
    ck_abort_msg("no PA %s/%s", ns, name);
}

static void pset_ap(pset_t *s, model_authz_policy_t *p)
{
    for (size_t i = 0; i < s->naps; i++) {
        if (strcmp(s->aps[i]->ns, p->ns) == 0 && strcmp(s->aps[i]->name, p->name) == 0) {
            model_authz_policy_free(s->aps[i]);
            s->aps[i] = p;
            return;
        }
    }
    s->aps[s->naps++] = p;
}

static void pset_del_ap(pset_t *s, const char *ns, const char *name)
{
    for (size_t i = 0; i < s->naps; i++) {
        if (strcmp(s->aps[i]->ns, ns) == 0 && strcmp(s->aps[i]->name, name) == 0) {
            model_authz_policy_free(s->aps[i]);
            s->aps[i] = s->aps[--s->naps];
            return;
        }
    }
    ck_abort_msg("no AP %s/%s", ns, name);
}

static void pset_clear(pset_t *s)
{
    while (s->npas)
        model_peer_authn_free(s->pas[--s->npas]);
    while (s->naps)
        model_authz_policy_free(s->aps[--s->naps]);
}

/* The keys of a workload in ns with label app=app (NULL: nil labels),
 * joined by ","; the caller's line for the message. */
static void expect_keys(const pset_t *s, const char *ns, const char *app, const char *want,
                        int line)
{
    model_authz_set_t set = {(const model_authz_policy_t *const *)s->aps,
                             s->naps,
                             (const model_peer_authn_t *const *)s->pas,
                             s->npas,
                             {ROOT, false}};
    model_labels_t labels = {0};
    if (app)
        model_labels_set(&labels, "app", app);
    model_strlist_t keys;
    ck_assert_int_eq(model_authz_workload_policies(&set, ns, app ? &labels : NULL, &keys), 0);
    char got[1024] = "";
    for (size_t i = 0; i < keys.n; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "," : "", keys.v[i]);
    ck_assert_msg(strcmp(got, want) == 0, "line %d:\n got  %s\n want %s", line, got, want);
    model_strlist_clear(&keys);
    model_labels_clear(&labels);
}

#define EXPECT(s, ns, app, want) expect_keys(s, ns, app, want, __LINE__)
#define STATIC ROOT "/istio_converted_static_strict"
#define CONV_SELECTOR "ns1/converted_peer_authentication_selector"

/* Whether the converted policy of PA ns1/name exists with the set's
 * namespace and root level policies. */
static bool converted_exists(const pset_t *s, const char *name)
{
    const model_peer_authn_t *const *all = (const model_peer_authn_t *const *)s->pas;
    const model_peer_authn_t *pa = NULL;
    for (size_t i = 0; i < s->npas; i++)
        if (strcmp(s->pas[i]->name, name) == 0 && strcmp(s->pas[i]->ns, "ns1") == 0)
            pa = s->pas[i];
    ck_assert_ptr_nonnull(pa);
    model_out_authz_t *a = NULL;
    ck_assert_int_eq(model_authz_convert_pa(pa, model_pa_oldest_level(all, s->npas, "ns1"),
                                            model_pa_oldest_level(all, s->npas, ROOT), ROOT, &a),
                     0);
    bool ok = a != NULL;
    model_out_authz_free(a);
    return ok;
}

START_TEST(peer_authn_keys_sequence)
{
    pset_t s = {0};
    pset_pa(&s, pa_new(ROOT, "global", 1, NULL, 'P', NULL));
    EXPECT(&s, "ns1", "a", "");
    pset_pa(&s, pa_new("ns1", "namespace", 2, NULL, 'S', NULL));
    EXPECT(&s, "ns1", "a", STATIC);
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'S', NULL));
    EXPECT(&s, "ns1", "a", STATIC);
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'P', NULL));
    EXPECT(&s, "ns1", "a", "");
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'P', "9090S"));
    EXPECT(&s, "ns1", "a", CONV_SELECTOR);
    ck_assert(converted_exists(&s, "selector"));
    EXPECT(&s, "ns1", "not-a", STATIC);
    pset_pa(&s, pa_new(ROOT, "global-selector", 4, "app=a", 'S', NULL));
    EXPECT(&s, "ns1", "a", CONV_SELECTOR);
    pset_del_pa(&s, ROOT, "global-selector");
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'P', "9090P"));
    EXPECT(&s, "ns1", "a", "");
    ck_assert(!converted_exists(&s, "selector"));
    pset_pa(&s, pa_new("ns1", "namespace", 2, NULL, 'P', NULL));
    EXPECT(&s, "ns1", "a", "");
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'S', NULL));
    EXPECT(&s, "ns1", "a", STATIC);
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'S', "9090P"));
    EXPECT(&s, "ns1", "a", CONV_SELECTOR);
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'U', "9090S"));
    EXPECT(&s, "ns1", "a", CONV_SELECTOR);
    pset_pa(&s, pa_new("ns1", "namespace", 2, NULL, 'S', NULL));
    EXPECT(&s, "ns1", "a", STATIC);
    ck_assert(!converted_exists(&s, "selector"));
    pset_pa(&s, pa_new("ns1", "selector", 3, "app=a", 'U', "9090P"));
    EXPECT(&s, "ns1", "a", CONV_SELECTOR);
    ck_assert(converted_exists(&s, "selector"));
    pset_del_pa(&s, "ns1", "selector");
    EXPECT(&s, "ns1", "a", STATIC);
    pset_del_pa(&s, "ns1", "namespace");
    pset_del_pa(&s, ROOT, "global");
    EXPECT(&s, "ns1", "a", "");
    pset_clear(&s);
}
END_TEST

START_TEST(policy_keys_sequence)
{
    pset_t s = {0};
    pset_ap(&s, ap(ROOT, "global", "{}"));
    pset_ap(&s, ap("ns1", "namespace", "{}"));
    EXPECT(&s, "ns1", "a", "");
    pset_ap(&s, ap("ns1", "selector", "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}}}"));
    EXPECT(&s, "ns1", "a", "ns1/selector");
    EXPECT(&s, "ns1", "not-a", "");
    EXPECT(&s, "ns2", "a", "");
    pset_ap(&s, ap(ROOT, "global-selector", "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}}}"));
    EXPECT(&s, "ns1", "a", ROOT "/global-selector,ns1/selector");
    EXPECT(&s, "ns2", "a", ROOT "/global-selector");
    pset_ap(&s,
            ap(ROOT, "global-selector", "{\"selector\":{\"matchLabels\":{\"app\":\"not-a\"}}}"));
    EXPECT(&s, "ns1", "a", "ns1/selector");
    pset_pa(&s, pa_new(ROOT, "strict", 1, NULL, 'S', NULL));
    EXPECT(&s, "ns1", "a", "ns1/selector," STATIC);
    pset_pa(&s, pa_new("ns1", "selector-strict", 2, "app=a", 'S', NULL));
    EXPECT(&s, "ns1", "a", "ns1/selector," STATIC);
    pset_pa(&s, pa_new("ns1", "selector-strict", 2, "app=a", 'P', NULL));
    EXPECT(&s, "ns1", "a", "ns1/selector");
    pset_pa(&s, pa_new("ns1", "selector-strict", 2, "app=a", 'D', NULL));
    EXPECT(&s, "ns1", "a", "ns1/selector");
    pset_pa(&s, pa_new("ns1", "selector-strict", 2, "app=a", 'S', "9090P"));
    EXPECT(&s, "ns1", "a", "ns1/selector,ns1/converted_peer_authentication_selector-strict");
    pset_del_ap(&s, "ns1", "selector");
    EXPECT(&s, "ns1", "a", "ns1/converted_peer_authentication_selector-strict");
    pset_del_pa(&s, "ns1", "selector-strict");
    EXPECT(&s, "ns1", "a", STATIC);
    pset_del_pa(&s, ROOT, "strict");
    EXPECT(&s, "ns1", "a", "");
    /* waypoint policies are never attached to workloads */
    pset_ap(&s, ap("ns1", "gateway-targeted",
                   "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}},\"targetRef\":{\"kind\":"
                   "\"Gateway\",\"group\":\"gateway.networking.k8s.io\",\"name\":\"w\"}}"));
    EXPECT(&s, "ns1", "a", "");
    pset_clear(&s);
}
END_TEST

START_TEST(policy_keys_selector_edges)
{
    pset_t s = {0};
    /* selector without matchLabels: nil map, attached to nothing */
    pset_ap(&s, ap("ns1", "nil-labels", "{\"selector\":{}}"));
    /* empty matchLabels: every workload of its namespace */
    pset_ap(&s, ap("ns1", "empty-labels", "{\"selector\":{\"matchLabels\":{}}}"));
    pset_ap(&s, ap("ns1", "b", "{\"selector\":{\"matchLabels\":{\"app\":\"b\"}}}"));
    pset_ap(&s, ap("ns1", "audit", "{\"action\":\"AUDIT\",\"selector\":{\"matchLabels\":{}}}"));
    pset_ap(&s, ap_full("ns1", "dry", "{\"istio.io/dry-run\":\"true\"}",
                        "{\"selector\":{\"matchLabels\":{}}}"));
    EXPECT(&s, "ns1", "a", "ns1/empty-labels");
    /* Q3: nil workload labels match every selector */
    EXPECT(&s, "ns1", NULL, "ns1/b,ns1/empty-labels");
    pset_clear(&s);
}
END_TEST

/* ---------- decoding ---------- */

START_TEST(decode_full_policy)
{
    model_authz_policy_t *p = ap_full(
        "ns1", "p", "{\"istio.io/dry-run\":\"true\"}",
        "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}},\"action\":\"DENY\",\"rules\":[{\"from\":"
        "[{\"source\":{\"principals\":[\"x\"],\"notRequestPrincipals\":[\"y\",\"z\"]}},{}],"
        "\"to\":[{\"operation\":{\"ports\":[\"80\"],\"notPaths\":[\"/a\"]}}],"
        "\"when\":[{\"key\":\"k\",\"values\":[\"v\"],\"notValues\":[\"n\"]}]}]}");
    ck_assert_str_eq(p->ns, "ns1");
    ck_assert_str_eq(p->name, "p");
    ck_assert_int_eq(p->created, 1704067200);
    ck_assert_str_eq(p->dry_run, "true");
    ck_assert(p->selector.set && p->selector.has_labels);
    ck_assert_str_eq(model_labels_get(&p->selector.labels, "app"), "a");
    ck_assert(!p->target_ref);
    ck_assert_int_eq(p->action, MODEL_AP_DENY);
    ck_assert_uint_eq(p->nrules, 1);
    const model_ap_rule_t *r = &p->rules[0];
    ck_assert_uint_eq(r->nfrom, 2);
    ck_assert_str_eq(r->from[0].principals.v[0], "x");
    ck_assert_uint_eq(r->from[0].not_request_principals.n, 2);
    ck_assert_uint_eq(r->from[1].principals.n, 0);
    ck_assert_str_eq(r->to[0].ports.v[0], "80");
    ck_assert_str_eq(r->to[0].not_paths.v[0], "/a");
    ck_assert_str_eq(r->when[0].key, "k");
    ck_assert_str_eq(r->when[0].not_values.v[0], "n");
    model_authz_policy_free(p);
}
END_TEST

START_TEST(decode_peer_authn)
{
    char err[MODEL_ERRLEN];
    json_t *j = parse("{\"kind\":\"PeerAuthentication\",\"metadata\":{\"namespace\":\"ns1\","
                      "\"name\":\"pa\"},\"spec\":{\"selector\":{\"matchLabels\":{\"app\":\"a\"}},"
                      "\"mtls\":{\"mode\":\"STRICT\"},\"portLevelMtls\":{\"9090\":{\"mode\":"
                      "\"PERMISSIVE\"},\"80\":{\"mode\":\"DISABLE\"},\"81\":{}}}}");
    model_peer_authn_t *p = NULL;
    ck_assert_msg(kube_decode_peer_authn(j, &p, err, sizeof(err)) == 0, "%s", err);
    json_decref(j);
    ck_assert_int_eq(p->mode, MODEL_MTLS_STRICT);
    ck_assert_uint_eq(p->nports, 3);
    ck_assert_uint_eq(p->ports[0].port, 80);
    ck_assert_int_eq(p->ports[0].mode, MODEL_MTLS_DISABLE);
    ck_assert_uint_eq(p->ports[1].port, 81);
    ck_assert_int_eq(p->ports[1].mode, MODEL_MTLS_UNSET);
    ck_assert_uint_eq(p->ports[2].port, 9090);
    ck_assert_int_eq(p->ports[2].mode, MODEL_MTLS_PERMISSIVE);
    ck_assert(p->selector.set);
    model_peer_authn_free(p);
}
END_TEST

static const struct bad_case {
    bool pa;
    const char *json;
    const char *want;
} bad_cases[] = {
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"action\":\"ALLOWED\"}}",
     "AuthorizationPolicy ns1/p: spec.action: unknown action \"ALLOWED\" (want ALLOW, DENY, AUDIT "
     "or CUSTOM)"},
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"rules\":[{\"from\":[{},"
     "{\"source\":{\"ipBlocks\":[\"1.2.3.4\",\"5.6.7.8\",5]}}]}]}}",
     "AuthorizationPolicy ns1/p: spec.rules[0].from[1].source.ipBlocks[2]: expected a string, got "
     "integer"},
    {false, "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"rules\":{}}}",
     "AuthorizationPolicy ns1/p: spec.rules: expected an array, got object"},
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"rules\":[{\"from\":[{"
     "\"source\":{\"principal\":[\"a\"]}}]}]}}",
     "AuthorizationPolicy ns1/p: spec.rules[0].from[0].source: unknown field \"principal\""},
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"rules\":[{\"when\":[{"
     "\"values\":[\"a\"]}]}]}}",
     "AuthorizationPolicy ns1/p: spec.rules[0].when[0].key: missing"},
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"rules\":[{\"to\":[{"
     "\"operation\":{\"ports\":[80]}}]}]}}",
     "AuthorizationPolicy ns1/p: spec.rules[0].to[0].operation.ports[0]: expected a string, got "
     "integer"},
    {false, "{\"metadata\":{\"name\":\"p\"}}", "metadata.namespace: missing"},
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"selector\":{"
     "\"matchLabels\":{\"app\":1}}}}",
     "AuthorizationPolicy ns1/p: spec.selector.matchLabels.app: expected a string, got integer"},
    {false,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\",\"annotations\":{\"istio.io/dry-run\":"
     "true}}}",
     "istio.io/dry-run: expected a string, got boolean"},
    {false, "{\"kind\":\"PeerAuthentication\",\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"}}",
     "kind: \"PeerAuthentication\", expected \"AuthorizationPolicy\""},
    {false, "[]", "expected an object, got array"},
    {false, "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"rules\":[7]}}",
     "spec.rules[0]: expected an object, got integer"},
    {true,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"mtls\":{\"mode\":"
     "\"STRICTER\"}}}",
     "PeerAuthentication ns1/p: spec.mtls.mode: unknown mode \"STRICTER\""},
    {true,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"portLevelMtls\":{"
     "\"http\":{\"mode\":\"STRICT\"}}}}",
     "PeerAuthentication ns1/p: spec.portLevelMtls: \"http\": not a port number in 1-65535"},
    {true,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"portLevelMtls\":{"
     "\"0\":{\"mode\":\"STRICT\"}}}}",
     "spec.portLevelMtls: \"0\": not a port number in 1-65535"},
    {true,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"portLevelMtls\":{"
     "\"80\":{\"mode\":\"STRICT\"},\"080\":{}}}}",
     "spec.portLevelMtls: port 80 given twice"},
    {true,
     "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"portLevelMtls\":{"
     "\"80\":\"STRICT\"}}}",
     "spec.portLevelMtls.80: expected an object, got string"},
    {true, "{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"mtls\":[]}}",
     "spec.mtls: expected an object, got array"},
};

START_TEST(decode_errors_name_the_field)
{
    const struct bad_case *tc = &bad_cases[_i];
    char err[MODEL_ERRLEN];
    json_t *j = parse(tc->json);
    void *out = (void *)1;
    int rc;
    if (tc->pa)
        rc = kube_decode_peer_authn(j, (model_peer_authn_t **)&out, err, sizeof(err));
    else
        rc = kube_decode_authz(j, (model_authz_policy_t **)&out, err, sizeof(err));
    json_decref(j);
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err, tc->want) != NULL, "%s:\n got  %s\n want %s", tc->json, err,
                  tc->want);
}
END_TEST

/* An object the decoder refuses is replaced by a stand-in that enforces at
 * least what it could have: a DENY (or an unreadable action) denies every
 * connection in its scope, an ALLOW matches nothing, an unreadable selector
 * widens the scope to the namespace; the status says why. */
static const struct failsafe_case {
    const char *spec;
    int scope;          /* model_authz_scope_t, or -1: nothing sent */
    int action;         /* model_authz_action_t */
    const char *groups; /* rendered, or NULL */
} failsafe_cases[] = {
    {"{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"ipBlocks\":[5]}}]}]}",
     MODEL_AUTHZ_NAMESPACE, MODEL_AUTHZ_DENY, "G[]"},
    {"{\"action\":\"DENIED\",\"rules\":[{}]}", MODEL_AUTHZ_NAMESPACE, MODEL_AUTHZ_DENY, "G[]"},
    {"{\"action\":7}", MODEL_AUTHZ_NAMESPACE, MODEL_AUTHZ_DENY, "G[]"},
    {"{\"action\":\"DENY\",\"selector\":{\"matchLabels\":{\"app\":\"a\"}},"
     "\"rules\":[{\"from\":[{\"source\":{\"principal\":[\"a\"]}}]}]}",
     MODEL_AUTHZ_WORKLOAD_SELECTOR, MODEL_AUTHZ_DENY, "G[]"},
    {"{\"action\":\"DENY\",\"selector\":{\"matchLabels\":{\"app\":1}}}", MODEL_AUTHZ_NAMESPACE,
     MODEL_AUTHZ_DENY, "G[]"},
    {"{\"action\":\"ALLOW\",\"rules\":[{\"to\":[{\"operation\":{\"ports\":[80]}}]}]}",
     MODEL_AUTHZ_NAMESPACE, MODEL_AUTHZ_ALLOW, ""},
    {"{\"rules\":{}}", MODEL_AUTHZ_NAMESPACE, MODEL_AUTHZ_ALLOW, ""},
    {"{\"action\":\"AUDIT\",\"rules\":7}", -1, 0, NULL},
    {"[\"DENY\"]", MODEL_AUTHZ_NAMESPACE, MODEL_AUTHZ_DENY, "G[]"},
    {"{\"action\":\"DENY\",\"targetRefs\":\"gw\",\"rules\":7}", MODEL_AUTHZ_NAMESPACE,
     MODEL_AUTHZ_DENY, "G[]"},
};

START_TEST(decode_failure_fails_closed)
{
    const struct failsafe_case *tc = &failsafe_cases[_i];
    char text[4096], err[MODEL_ERRLEN];
    snprintf(text, sizeof(text),
             "{\"kind\":\"AuthorizationPolicy\",\"metadata\":{\"namespace\":\"ns1\","
             "\"name\":\"p\"},\"spec\":%s}",
             tc->spec);
    json_t *j = parse(text);
    model_authz_policy_t *p = NULL;
    ck_assert_int_eq(kube_decode_authz(j, &p, err, sizeof(err)), -1);
    ck_assert_int_eq(kube_decode_failsafe(MODEL_KIND_AUTHZ_POLICY, j, err, (void **)&p), 0);
    json_decref(j);
    model_authz_status_t st;
    model_out_authz_t *a = convert(p, ROOT, false, &st);
    if (tc->scope < 0) {
        ck_assert_ptr_null(a);
    } else {
        assert_render(a, tc->groups, tc->spec);
        ck_assert_int_eq(a->scope, tc->scope);
        ck_assert_int_eq(a->action, tc->action);
        ck_assert_str_eq(st.reason, MODEL_AUTHZ_INVALID_REASON);
        ck_assert_msg(strstr(st.message, err) == st.message && strstr(st.message, "fail closed"),
                      "%s", st.message);
    }
    model_out_authz_free(a);
    model_authz_status_clear(&st);
    model_authz_policy_free(p);
}
END_TEST

/* A value istiod drops where dropping lets through what the policy was
 * written to stop is refused; where dropping only narrows, it is dropped as
 * istiod does. The caller then treats the policy as one that does not
 * decode. */
static const struct check_case {
    const char *action;
    const char *rule;
    const char *want; /* NULL: valid */
} check_cases[] = {
    {"DENY",
     "{\"from\":[{\"source\":{\"ipBlocks\":[\"10.0.0.0/8\",\"10.1.2.3\",\"::1/128\"],"
     "\"notIpBlocks\":[\"bad\"]}}],\"to\":[{\"operation\":{\"ports\":[\"0\",\"65535\"],"
     "\"notPorts\":[\"http\"]}}],"
     "\"when\":[{\"key\":\"destination.port\",\"values\":[\"80\"],\"notValues\":[\"x\"]},"
     "{\"key\":\"remote.ip\",\"values\":[\"bad\"]}]}",
     NULL},
    {"ALLOW",
     "{\"from\":[{\"source\":{\"ipBlocks\":[\"bad\"]}}],"
     "\"to\":[{\"operation\":{\"ports\":[\"http\"]}}]}",
     NULL},
    {"AUDIT", "{\"to\":[{\"operation\":{\"ports\":[\"http\"]}}]}", NULL},
    {"DENY", "{\"from\":[{\"source\":{\"ipBlocks\":[\"10.0.0.0/8\",\"10.0.0.0/33\"]}}]}",
     "AuthorizationPolicy ns1/p: spec.rules[0].from[0].source.ipBlocks[1]: bad IP address or "
     "CIDR range \"10.0.0.0/33\" (istiod would drop it, which lets through what this DENY was "
     "written to stop)"},
    {"DENY", "{\"to\":[{\"operation\":{\"ports\":[\"http\"]}}]}",
     "spec.rules[0].to[0].operation.ports[0]: bad port \"http\""},
    {"DENY", "{\"when\":[{\"key\":\"source.ip\",\"values\":[\"1.2.3\"]}]}",
     "spec.rules[0].when[0].values[0]: bad IP address or CIDR range \"1.2.3\""},
    {"ALLOW", "{\"from\":[{\"source\":{\"notIpBlocks\":[\"bad\"]}}]}",
     "spec.rules[0].from[0].source.notIpBlocks[0]: bad IP address or CIDR range \"bad\" "
     "(istiod would drop it, which lets through what this ALLOW was written to stop)"},
    {"ALLOW", "{\"to\":[{\"operation\":{\"notPorts\":[\"65536\"]}}]}",
     "spec.rules[0].to[0].operation.notPorts[0]: bad port \"65536\""},
    {"ALLOW", "{\"when\":[{\"key\":\"destination.port\",\"notValues\":[\"http\"]}]}",
     "spec.rules[0].when[0].notValues[0]: bad port \"http\""},
};

START_TEST(check_refuses_drops_that_open)
{
    const struct check_case *tc = &check_cases[_i];
    char spec[4096], err[MODEL_ERRLEN] = "";
    snprintf(spec, sizeof(spec), "{\"action\":\"%s\",\"rules\":[%s]}", tc->action, tc->rule);
    model_authz_policy_t *p = ap("ns1", "p", spec);
    int rc = model_authz_policy_check(p, err, sizeof(err));
    model_authz_policy_free(p);
    if (!tc->want) {
        ck_assert_msg(rc == 0, "%s: %s", tc->rule, err);
        return;
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, tc->want) != NULL, "%s:\n got  %s\n want %s", tc->rule, err,
                  tc->want);
}
END_TEST

START_TEST(decode_failure_peer_authn_is_strict)
{
    char err[MODEL_ERRLEN];
    json_t *j = parse("{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"pa\"},\"spec\":{"
                      "\"selector\":{\"matchLabels\":{\"app\":\"a\"}},\"mtls\":{\"mode\":"
                      "\"PERMISIVE\"}}}");
    model_peer_authn_t *pa = NULL;
    ck_assert_int_eq(kube_decode_peer_authn(j, &pa, err, sizeof(err)), -1);
    ck_assert_int_eq(kube_decode_failsafe(MODEL_KIND_PEER_AUTHN, j, err, (void **)&pa), 0);
    ck_assert_int_eq(pa->mode, MODEL_MTLS_STRICT);
    ck_assert(pa->selector.set && pa->selector.has_labels);
    ck_assert_uint_eq(pa->nports, 0);
    model_peer_authn_free(pa);
    json_decref(j);
    /* nothing to name it by: nothing to stand in for */
    j = parse("{\"metadata\":{\"name\":\"pa\"}}");
    ck_assert_int_eq(kube_decode_failsafe(MODEL_KIND_PEER_AUTHN, j, "x", (void **)&pa), -1);
    ck_assert_ptr_null(pa);
    json_decref(j);
}
END_TEST

/* Every value of a policy replaced by each JSON type in turn: the decoder
 * refuses or accepts, and what it accepts converts and encodes, never
 * crashing or leaking (ASan). */
static json_t *nth_replace(json_t *j, size_t *n, json_t *with)
{
    size_t i = 0;
    const char *k;
    json_t *v;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            if ((*n)-- == 0)
                return json_object_set(j, k, with) == 0 ? j : NULL;
            if (nth_replace(v, n, with))
                return j;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            if ((*n)-- == 0)
                return json_array_set(j, i, with) == 0 ? j : NULL;
            if (nth_replace(v, n, with))
                return j;
        }
    }
    return NULL;
}

START_TEST(decode_any_type_anywhere)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "{\"kind\":\"AuthorizationPolicy\",\"metadata\":{\"namespace\":\"cfg\",\"name\":\"p\","
             "\"annotations\":{\"istio.io/dry-run\":\"false\"}},\"spec\":%s}",
             allow_full_spec);
    json_t *orig = parse(text);
    json_t *kinds[] = {json_null(),  json_integer(1), json_string("s"),
                       json_array(), json_object(),   json_true()};
    size_t accepted = 0, refused = 0;
    for (size_t n = 0;; n++) {
        bool found = false;
        for (size_t t = 0; t < sizeof(kinds) / sizeof(kinds[0]); t++) {
            json_t *j = json_deep_copy(orig);
            size_t left = n;
            if (!nth_replace(j, &left, kinds[t])) {
                json_decref(j);
                break;
            }
            found = true;
            char err[MODEL_ERRLEN] = "";
            model_authz_policy_t *p = NULL;
            if (kube_decode_authz(j, &p, err, sizeof(err)) == 0) {
                model_authz_status_t st;
                model_out_authz_t *a = convert(p, ROOT, true, &st);
                size_t len;
                free(a ? xds_encode_authz(a, &len) : NULL);
                model_out_authz_free(a);
                model_authz_status_clear(&st);
                model_authz_policy_free(p);
                accepted++;
            } else {
                ck_assert_ptr_null(p);
                ck_assert_msg(err[0] != '\0', "refused without a reason");
                refused++;
                /* its stand-in converts and encodes too, and is never an
                 * ALLOW with rules */
                if (kube_decode_failsafe(MODEL_KIND_AUTHZ_POLICY, j, err, (void **)&p) == 0) {
                    model_out_authz_t *a = convert(p, ROOT, true, NULL);
                    size_t len;
                    ck_assert(!a || a->action == MODEL_AUTHZ_DENY || a->ngroups == 0);
                    free(a ? xds_encode_authz(a, &len) : NULL);
                    model_out_authz_free(a);
                    model_authz_policy_free(p);
                }
            }
            json_decref(j);
        }
        if (!found)
            break;
    }
    ck_assert_uint_gt(accepted, 0);
    ck_assert_uint_gt(refused, 100);
    for (size_t t = 0; t < sizeof(kinds) / sizeof(kinds[0]); t++)
        json_decref(kinds[t]);
    json_decref(orig);
}
END_TEST

/* ---------- encoding ---------- */

static void assert_bytes(const uint8_t *b, size_t n, const char *hex)
{
    char got[1024] = "";
    for (size_t i = 0; i < n && 2 * i + 2 < sizeof(got); i++)
        sprintf(got + 2 * i, "%02x", b[i]);
    ck_assert_msg(strcmp(got, hex) == 0, "\n got  %s\n want %s", got, hex);
}

START_TEST(encode_static_strict_bytes)
{
    model_out_authz_t *a = model_authz_static_strict(ROOT);
    size_t n;
    uint8_t *b = xds_encode_authz(a, &n);
    /* name, namespace, scope 2, action 1, then one Rule > Clause (field 2)
     * > Match > not_principals > StringMatch{presence (field 4): empty} */
    assert_bytes(b, n,
                 "0a1d"
                 "697374696f5f636f6e7665727465645f7374617469635f737472696374"
                 "120c"
                 "697374696f2d73797374656d"
                 "1802"
                 "2001"
                 "2a08"
                 "0a06"
                 "1204"
                 "2202"
                 "2200");
    free(b);
    model_out_authz_free(a);
}
END_TEST

START_TEST(encode_empty_group_and_match)
{
    model_authz_policy_t *p = ap("n", "p",
                                 "{\"action\":\"DENY\",\"rules\":[{},{\"to\":[{\"operation\":{"
                                 "\"methods\":[\"GET\"]}}]}]}");
    model_out_authz_t *a = convert(p, ROOT, false, NULL);
    size_t n;
    uint8_t *b = xds_encode_authz(a, &n);
    /* scope NAMESPACE; the empty group and the empty match stay on the wire */
    assert_bytes(b, n,
                 "0a0170"
                 "12016e"
                 "1801"
                 "2001"
                 "2a00"
                 "2a04"
                 "0a02"
                 "1200");
    free(b);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

START_TEST(encode_roundtrip_protobuf_c)
{
    model_authz_policy_t *p = ap("cfg", "allow-full", allow_full_spec);
    model_out_authz_t *a = convert(p, ROOT, false, NULL);
    size_t n;
    uint8_t *b = xds_encode_authz(a, &n);
    Istio__Security__Authorization *m = istio__security__authorization__unpack(NULL, n, b);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->name, "allow-full");
    ck_assert_str_eq(m->namespace_, "cfg");
    ck_assert_int_eq(m->scope, ISTIO__SECURITY__SCOPE__NAMESPACE);
    ck_assert_int_eq(m->action, ISTIO__SECURITY__ACTION__ALLOW);
    ck_assert_uint_eq(m->n_rules, 10);
    Istio__Security__Match *m0 = m->rules[0]->clauses[0]->matches[0];
    ck_assert_uint_eq(m0->n_principals, 4);
    ck_assert_int_eq(m0->principals[1]->match_type_case,
                     ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PREFIX);
    ck_assert_str_eq(m0->principals[1]->prefix, "principal-prefix-");
    ck_assert_int_eq(m0->principals[3]->match_type_case,
                     ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PRESENCE);
    Istio__Security__Match *m3 = m->rules[3]->clauses[0]->matches[0];
    ck_assert_uint_eq(m3->source_ips[1]->address.len, 4);
    ck_assert_uint_eq(m3->source_ips[1]->address.data[1], 6);
    ck_assert_uint_eq(m3->source_ips[1]->length, 16);
    Istio__Security__Match *m1 = m->rules[1]->clauses[0]->matches[0];
    ck_assert_str_eq(m1->service_accounts[1]->namespace_, "cfg");
    ck_assert_str_eq(m1->service_accounts[1]->serviceaccount, "sa-only");
    Istio__Security__Match *m9 = m->rules[9]->clauses[0]->matches[0];
    ck_assert_uint_eq(m9->n_not_destination_ports, 2);
    ck_assert_uint_eq(m9->not_destination_ports[1], 9002);
    istio__security__authorization__free_unpacked(m, NULL);
    free(b);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

/* The same bytes read by the Python protobuf runtime (tests/authz_pb.py). */
START_TEST(encode_python_golden)
{
    model_authz_policy_t *p =
        ap("ns1", "p",
           "{\"action\":\"DENY\",\"selector\":{\"matchLabels\":{\"app\":\"a\"}},\"rules\":["
           "{\"to\":[{\"operation\":{\"ports\":[\"80\"],\"notPorts\":[\"8080\"]}}],"
           "\"from\":[{\"source\":{\"principals\":[\"*\",\"a\"],\"ipBlocks\":[\"10.0.0.1/24\"],"
           "\"serviceAccounts\":[\"sa\"],\"notNamespaces\":[\"*-x\"]}}],"
           "\"when\":[{\"key\":\"destination.ip\",\"values\":[\"2001:db8::1/64\"]}]},{}]}");
    model_out_authz_t *a = convert(p, ROOT, false, NULL);
    size_t n;
    uint8_t *b = xds_encode_authz(a, &n);
    char path[] = "/tmp/meshfed-authz-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, b, n), (ssize_t)n);
    close(fd);
    const char *data = getenv("MESHFED_TESTDATA");
    ck_assert_ptr_nonnull(data);
    static const char *const want =
        "{\"name\":\"p\",\"namespace\":\"ns1\",\"scope\":\"WORKLOAD_SELECTOR\",\"action\":\"DENY\","
        "\"rules\":[{\"clauses\":["
        "{\"matches\":[{\"destinationPorts\":[80],\"notDestinationPorts\":[8080]}]},"
        "{\"matches\":[{\"notNamespaces\":[{\"suffix\":\"-x\"}],"
        "\"principals\":[{\"presence\":{}},{\"exact\":\"a\"}],"
        "\"sourceIps\":[{\"address\":\"CgAAAQ==\",\"length\":24}],"
        "\"serviceAccounts\":[{\"namespace\":\"ns1\",\"serviceAccount\":\"sa\"}]}]},"
        "{\"matches\":[{\"destinationIps\":[{\"address\":\"IAENuAAAAAAAAAAAAAAAAQ==\","
        "\"length\":64}]}]}]},{}]}";
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/../authz_pb.py %s/../.. %s '%s'", data, data,
             path, want);
    int rc = system(cmd);
    unlink(path);
    ck_assert_msg(rc == 0, "python decode differs (exit %d)", rc);
    free(b);
    model_out_authz_free(a);
    model_authz_policy_free(p);
}
END_TEST

/* ---------- the model: policies per cluster, Authorization resources ---------- */

static const model_view_t VA = {"a", "net"}, VB = {"b", "net"};

static model_t *two_clusters(const char *root)
{
    model_config_t cfg = {.root_namespace = root};
    model_t *m = model_new(&cfg);
    char err[MODEL_ERRLEN];
    ck_assert_int_eq(
        model_cluster_set(m, &(model_cluster_t){.id = "a", .network = "net"}, err, sizeof(err)), 0);
    ck_assert_int_eq(
        model_cluster_set(m, &(model_cluster_t){.id = "b", .network = "net"}, err, sizeof(err)), 0);
    return m;
}

static void put(model_t *m, const char *cluster, model_kind_t kind, void *obj)
{
    char err[MODEL_ERRLEN];
    ck_assert_msg(model_apply(m, cluster, kind, MODEL_OP_UPSERT, obj, err, sizeof(err)) == 0, "%s",
                  err);
}

static void del(model_t *m, const char *cluster, model_kind_t kind, void *stub)
{
    char err[MODEL_ERRLEN];
    ck_assert_msg(model_apply(m, cluster, kind, MODEL_OP_DELETE, stub, err, sizeof(err)) == 0, "%s",
                  err);
}

static model_authz_policy_t *ap_stub(const char *ns, const char *name)
{
    model_authz_policy_t *p = calloc(1, sizeof(*p));
    p->ns = strdup(ns);
    p->name = strdup(name);
    return p;
}

/* A pod ns/name with IP ip and label app=<app> (NULL: no labels). */
static model_pod_t *pod(const char *ns, const char *name, const char *ip, const char *app)
{
    model_pod_t *p = calloc(1, sizeof(*p));
    p->ns = strdup(ns);
    p->name = strdup(name);
    p->ips = calloc(1, sizeof(model_ip_t));
    ck_assert_int_eq(model_ip_parse(ip, &p->ips[0]), 0);
    p->nips = 1;
    p->service_account = strdup("default");
    p->ambient = p->ready = true;
    if (app)
        model_labels_set(&p->labels, "app", app);
    return p;
}

static const model_out_authz_t *policy(const model_snapshot_t *s, const model_view_t *v,
                                       const char *name)
{
    const model_res_t *r = model_snapshot_get_authz(s, v, name);
    return r ? model_res_authz(r) : NULL;
}

/* The workload's authorization_policies, "" for none. */
static const char *policies_of(const model_snapshot_t *s, const model_view_t *v, const char *uid)
{
    const model_res_t *r = model_snapshot_get(s, v, uid);
    ck_assert_msg(r != NULL, "no workload %s", uid);
    const char *k = model_res_workload(r)->authz;
    return k ? k : "";
}

static void count_res(const model_res_t *r, void *arg)
{
    (void)r;
    ++*(size_t *)arg;
}

static const char *const SEL_A = "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}}}";

START_TEST(model_policy_seen_by_its_cluster_only)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "p", "{\"action\":\"DENY\",\"rules\":[{}]}"));
    put(m, "b", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "p", "{\"rules\":[{}]}"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "only-a", "{}"));
    model_snapshot_t *s = model_commit(m);
    ck_assert_int_eq(policy(s, &VA, "ns1/p")->action, MODEL_AUTHZ_DENY);
    ck_assert_int_eq(policy(s, &VB, "ns1/p")->action, MODEL_AUTHZ_ALLOW);
    ck_assert_int_eq(policy(s, &VA, "ns1/p")->scope, MODEL_AUTHZ_NAMESPACE);
    ck_assert_ptr_nonnull(policy(s, &VA, "ns1/only-a"));
    ck_assert_ptr_null(policy(s, &VB, "ns1/only-a"));
    /* Authorizations are no Addresses, and the other way round */
    ck_assert_ptr_null(model_snapshot_get(s, &VA, "ns1/p"));
    size_t n = 0;
    model_snapshot_each_authz(s, &VB, count_res, &n);
    ck_assert_uint_eq(n, 1);
    /* a targetRef policy is for waypoints: nothing for ztunnel */
    put(m, "a", MODEL_KIND_AUTHZ_POLICY,
        ap("ns1", "wp", "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"s\"}]}"));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(policy(s2, &VA, "ns1/wp"));
    del(m, "a", MODEL_KIND_AUTHZ_POLICY, ap_stub("ns1", "p"));
    model_snapshot_t *s3 = model_commit(m);
    ck_assert_ptr_null(policy(s3, &VA, "ns1/p"));
    ck_assert_ptr_nonnull(policy(s3, &VB, "ns1/p"));
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_free(m);
}
END_TEST

START_TEST(model_static_strict_while_cluster_has_peer_authn)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "perm", 1, NULL, 'P', NULL));
    model_snapshot_t *s = model_commit(m);
    const model_out_authz_t *st = policy(s, &VA, ROOT "/" MODEL_AUTHZ_STATIC_STRICT);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(st->scope, MODEL_AUTHZ_WORKLOAD_SELECTOR);
    ck_assert_int_eq(st->action, MODEL_AUTHZ_DENY);
    assert_render(st, "G[C[{np:*}]]", "static");
    ck_assert_ptr_null(policy(s, &VB, ROOT "/" MODEL_AUTHZ_STATIC_STRICT));
    del(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "perm", 0, NULL, 'U', NULL));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(policy(s2, &VA, ROOT "/" MODEL_AUTHZ_STATIC_STRICT));
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

/* A relist that empties the kind marks every PeerAuthentication's names
 * before any of them is freed (marking one reads all of them). */
START_TEST(model_clear_kind_drops_every_peer_authn_and_the_static_policy)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "one", 1, NULL, 'P', NULL));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns2", "two", 2, NULL, 'S', NULL));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns3", "three", 3, NULL, 'D', NULL));
    model_snapshot_t *s = model_commit(m);
    ck_assert_ptr_nonnull(policy(s, &VA, ROOT "/" MODEL_AUTHZ_STATIC_STRICT));
    ck_assert_int_eq(model_cluster_clear_kind(m, "a", MODEL_KIND_PEER_AUTHN), 0);
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_ptr_null(policy(s2, &VA, ROOT "/" MODEL_AUTHZ_STATIC_STRICT));
    size_t n = 0;
    model_snapshot_each_authz(s2, &VA, count_res, &n);
    ck_assert_uint_eq(n, 0);
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

START_TEST(model_workload_lists_its_cluster_policies)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pa", "10.0.0.1", "a"));
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pb", "10.0.0.2", "b"));
    put(m, "b", MODEL_KIND_POD, pod("ns1", "pa", "10.1.0.1", "a"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "selector", SEL_A));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap(ROOT, "global-selector", SEL_A));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "namespace", "{}"));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new(ROOT, "strict", 1, NULL, 'S', NULL));
    model_snapshot_t *s = model_commit(m);
    ck_assert_str_eq(policies_of(s, &VA, "a//Pod/ns1/pa"),
                     "istio-system/global-selector\nns1/selector\n"
                     "istio-system/istio_converted_static_strict");
    ck_assert_str_eq(policies_of(s, &VA, "a//Pod/ns1/pb"),
                     "istio-system/istio_converted_static_strict");
    /* cluster b has no policies: its pod lists none, in any view */
    ck_assert_str_eq(policies_of(s, &VB, "b//Pod/ns1/pa"), "");
    ck_assert_str_eq(policies_of(s, &VA, "b//Pod/ns1/pa"), "");
    /* a workload PeerAuthentication with a PERMISSIVE port: its converted
     * policy replaces the static one on the pods it selects */
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "wl", 2, "app=a", 'U', "9090P"));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_str_eq(policies_of(s2, &VA, "a//Pod/ns1/pa"),
                     "istio-system/global-selector\nns1/selector\n"
                     "ns1/converted_peer_authentication_wl");
    assert_render(policy(s2, &VA, "ns1/converted_peer_authentication_wl"),
                  "G[C[{ndp:9090}] C[{np:*}]]", "converted");
    model_snapshot_unref(s);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

typedef struct changes {
    char names[16][64];
    size_t n;
} changes_t;

static void note_change(const char *name, const model_res_t *o, const model_res_t *n, void *arg)
{
    (void)o;
    (void)n;
    changes_t *c = arg;
    if (c->n < 16)
        snprintf(c->names[c->n++], sizeof(c->names[0]), "%s", name);
}

static changes_t addr_changes(const model_snapshot_t *a, const model_snapshot_t *b)
{
    changes_t c = {0};
    model_snapshot_diff(a, b, &VA, note_change, &c);
    return c;
}

static changes_t authz_changes(const model_snapshot_t *a, const model_snapshot_t *b)
{
    changes_t c = {0};
    model_snapshot_diff_authz(a, b, &VA, note_change, &c);
    return c;
}

START_TEST(model_policy_change_resends_only_what_it_changes)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pa", "10.0.0.1", "a"));
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pb", "10.0.0.2", "b"));
    put(m, "a", MODEL_KIND_POD, pod("ns2", "pc", "10.0.0.3", "a"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "sel", SEL_A));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "other", "{}"));
    model_snapshot_t *s1 = model_commit(m);
    /* new rules, same selector: the policy alone */
    put(m, "a", MODEL_KIND_AUTHZ_POLICY,
        ap("ns1", "sel",
           "{\"selector\":{\"matchLabels\":{\"app\":\"a\"}},\"rules\":[{\"from\":[{\"source\":"
           "{\"principals\":[\"cluster.local/ns/ns1/sa/sa1\"]}}]}]}"));
    model_snapshot_t *s2 = model_commit(m);
    changes_t c = authz_changes(s1, s2);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_str_eq(c.names[0], "ns1/sel");
    ck_assert_uint_eq(addr_changes(s1, s2).n, 0);
    /* another selector: the policy, and the two pods whose lists changed */
    put(m, "a", MODEL_KIND_AUTHZ_POLICY,
        ap("ns1", "sel", "{\"selector\":{\"matchLabels\":{\"app\":\"b\"}}}"));
    model_snapshot_t *s3 = model_commit(m);
    c = authz_changes(s2, s3);
    ck_assert_uint_eq(c.n, 1);
    c = addr_changes(s2, s3);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_str_eq(policies_of(s3, &VA, "a//Pod/ns1/pb"), "ns1/sel");
    ck_assert_str_eq(policies_of(s3, &VA, "a//Pod/ns1/pa"), "");
    /* a relist of the same policies changes nothing */
    ck_assert_int_eq(model_cluster_clear_kind(m, "a", MODEL_KIND_AUTHZ_POLICY), 0);
    put(m, "a", MODEL_KIND_AUTHZ_POLICY,
        ap("ns1", "sel", "{\"selector\":{\"matchLabels\":{\"app\":\"b\"}}}"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "other", "{}"));
    model_snapshot_t *s4 = model_commit(m);
    ck_assert_uint_eq(authz_changes(s3, s4).n, 0);
    ck_assert_uint_eq(addr_changes(s3, s4).n, 0);
    ck_assert_uint_eq(model_snapshot_version(s4), model_snapshot_version(s3));
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_snapshot_unref(s4);
    model_free(m);
}
END_TEST

/* ambientindex_test.go TestAmbientIndex_PeerAuthenticationNamespacePolicyChange,
 * as increments of one model: the namespace level moves the converted
 * policy and the pod's list with it. */
START_TEST(model_namespace_peer_authn_change_moves_converted_policy)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pod1", "10.0.0.1", "a"));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "namespace", 1, NULL, 'S', NULL));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "selector", 2, "app=a", 'U', "9090P"));
    model_snapshot_t *s1 = model_commit(m);
    ck_assert_str_eq(policies_of(s1, &VA, "a//Pod/ns1/pod1"),
                     "ns1/converted_peer_authentication_selector");
    ck_assert_ptr_nonnull(policy(s1, &VA, "ns1/converted_peer_authentication_selector"));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "namespace", 1, NULL, 'P', NULL));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_str_eq(policies_of(s2, &VA, "a//Pod/ns1/pod1"), "");
    ck_assert_ptr_null(policy(s2, &VA, "ns1/converted_peer_authentication_selector"));
    ck_assert_ptr_nonnull(policy(s2, &VA, ROOT "/" MODEL_AUTHZ_STATIC_STRICT));
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_free(m);
}
END_TEST

/* A root namespace selector policy selects in every namespace: changing
 * it moves the lists of pods elsewhere, and only theirs. */
START_TEST(model_root_selector_change_reaches_every_namespace)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pa", "10.0.0.1", "a"));
    put(m, "a", MODEL_KIND_POD, pod("ns2", "pb", "10.0.0.2", "b"));
    put(m, "a", MODEL_KIND_POD, pod("ns3", "pc", "10.0.0.3", "c"));
    model_snapshot_t *s1 = model_commit(m);
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap(ROOT, "g", SEL_A));
    model_snapshot_t *s2 = model_commit(m);
    ck_assert_str_eq(policies_of(s2, &VA, "a//Pod/ns1/pa"), "istio-system/g");
    changes_t c = addr_changes(s1, s2);
    ck_assert_uint_eq(c.n, 1);
    put(m, "a", MODEL_KIND_AUTHZ_POLICY,
        ap(ROOT, "g", "{\"selector\":{\"matchLabels\":{\"app\":\"b\"}}}"));
    model_snapshot_t *s3 = model_commit(m);
    ck_assert_str_eq(policies_of(s3, &VA, "a//Pod/ns1/pa"), "");
    ck_assert_str_eq(policies_of(s3, &VA, "a//Pod/ns2/pb"), "istio-system/g");
    ck_assert_uint_eq(addr_changes(s2, s3).n, 2);
    model_snapshot_unref(s1);
    model_snapshot_unref(s2);
    model_snapshot_unref(s3);
    model_free(m);
}
END_TEST

START_TEST(model_root_namespace_from_config)
{
    model_t *m = two_clusters("mesh-root");
    ck_assert_str_eq(model_root_namespace(m), "mesh-root");
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("mesh-root", "g", "{}"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap(ROOT, "n", "{}"));
    put(m, "a", MODEL_KIND_PEER_AUTHN, pa_new("ns1", "x", 1, NULL, 'S', NULL));
    model_snapshot_t *s = model_commit(m);
    ck_assert_int_eq(policy(s, &VA, "mesh-root/g")->scope, MODEL_AUTHZ_GLOBAL);
    ck_assert_int_eq(policy(s, &VA, ROOT "/n")->scope, MODEL_AUTHZ_NAMESPACE);
    ck_assert_ptr_nonnull(policy(s, &VA, "mesh-root/" MODEL_AUTHZ_STATIC_STRICT));
    model_snapshot_unref(s);
    model_free(m);
}
END_TEST

/* --authz-dry-run (model_config_t.authz_dry_run): a dry-run policy is
 * sent marked dry_run; without it, as istiod by default, not at all. */
START_TEST(model_dry_run_from_config)
{
    for (int on = 0; on < 2; on++) {
        model_config_t cfg = {.authz_dry_run = on};
        model_t *m = model_new(&cfg);
        char err[MODEL_ERRLEN];
        ck_assert_int_eq(
            model_cluster_set(m, &(model_cluster_t){.id = "a", .network = "net"}, err, sizeof(err)),
            0);
        put(m, "a", MODEL_KIND_AUTHZ_POLICY,
            ap_full("ns1", "dry", "{\"istio.io/dry-run\":\"true\"}",
                    "{\"action\":\"DENY\",\"rules\":[{}]}"));
        put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "real", "{\"rules\":[{}]}"));
        model_snapshot_t *s = model_commit(m);
        const model_out_authz_t *a = policy(s, &VA, "ns1/dry");
        if (on) {
            ck_assert_ptr_nonnull(a);
            ck_assert(a->dry_run);
            ck_assert_int_eq(a->action, MODEL_AUTHZ_DENY);
        } else {
            ck_assert_ptr_null(a);
        }
        ck_assert(!policy(s, &VA, "ns1/real")->dry_run);
        model_snapshot_unref(s);
        model_free(m);
    }
}
END_TEST

typedef struct seen_info {
    char text[1024];
} seen_info_t;

static void info_cb(const model_authz_info_t *i, void *arg)
{
    seen_info_t *s = arg;
    size_t n = strlen(s->text);
    n += (size_t)snprintf(s->text + n, sizeof(s->text) - n, "%s:%s:%s[", i->key,
                          i->out ? "sent" : "none", i->message ? i->message : "");
    for (size_t k = 0; k < i->nselects; k++)
        n +=
            (size_t)snprintf(s->text + n, sizeof(s->text) - n, "%s%s", k ? "," : "", i->selects[k]);
    snprintf(s->text + n, sizeof(s->text) - n, "] ");
}

START_TEST(model_authz_info_for_debug)
{
    model_t *m = two_clusters(NULL);
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pa", "10.0.0.1", "a"));
    put(m, "a", MODEL_KIND_POD, pod("ns1", "pb", "10.0.0.2", "b"));
    put(m, "a", MODEL_KIND_POD, pod("ns2", "pc", "10.0.0.3", "a"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "sel", SEL_A));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap("ns1", "audit", "{\"action\":\"AUDIT\"}"));
    put(m, "a", MODEL_KIND_AUTHZ_POLICY, ap(ROOT, "all", "{}"));
    model_snapshot_unref(model_commit(m));
    seen_info_t s = {""};
    model_each_authz(m, "a", info_cb, &s);
    ck_assert_str_eq(s.text, "istio-system/all:sent:[ns1/pa,ns1/pb,ns2/pc] "
                             "ns1/audit:none:ztunnel does not support the AUDIT action[] "
                             "ns1/sel:sent:[ns1/pa] ");
    seen_info_t sb = {""};
    model_each_authz(m, "b", info_cb, &sb);
    ck_assert_str_eq(sb.text, "");
    model_free(m);
}
END_TEST

static Suite *authz_suite(void)
{
    Suite *s = suite_create("authz");
    TCase *tc = tcase_create("convert");
    tcase_add_loop_test(tc, status_cases_as_istiod, 0,
                        (int)(sizeof(status_cases) / sizeof(status_cases[0])));
    tcase_add_test(tc, dry_run_needs_flag);
    tcase_add_test(tc, scope_from_selector_and_root);
    tcase_add_test(tc, value_conversions);
    tcase_add_test(tc, rbac_allow_full);
    tcase_add_test(tc, rbac_allow_groups_drop_l7_rules);
    tcase_add_test(tc, rbac_deny_groups_keep_l4_part);
    suite_add_tcase(s, tc);

    tc = tcase_create("peer_authn");
    tcase_add_loop_test(tc, peer_authn_goldens, 0, (int)(sizeof(pa_cases) / sizeof(pa_cases[0])));
    tcase_add_test(tc, peer_authn_root_namespace_not_converted);
    tcase_add_test(tc, static_strict_policy);
    tcase_add_test(tc, oldest_level_policy_wins);
    suite_add_tcase(s, tc);

    tc = tcase_create("attach");
    tcase_add_test(tc, peer_authn_keys_sequence);
    tcase_add_test(tc, policy_keys_sequence);
    tcase_add_test(tc, policy_keys_selector_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("decode");
    tcase_add_test(tc, decode_full_policy);
    tcase_add_test(tc, decode_peer_authn);
    tcase_add_loop_test(tc, decode_errors_name_the_field, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, decode_any_type_anywhere);
    tcase_add_loop_test(tc, decode_failure_fails_closed, 0,
                        (int)(sizeof(failsafe_cases) / sizeof(failsafe_cases[0])));
    tcase_add_test(tc, decode_failure_peer_authn_is_strict);
    tcase_add_loop_test(tc, check_refuses_drops_that_open, 0,
                        (int)(sizeof(check_cases) / sizeof(check_cases[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("model");
    tcase_add_test(tc, model_policy_seen_by_its_cluster_only);
    tcase_add_test(tc, model_static_strict_while_cluster_has_peer_authn);
    tcase_add_test(tc, model_clear_kind_drops_every_peer_authn_and_the_static_policy);
    tcase_add_test(tc, model_workload_lists_its_cluster_policies);
    tcase_add_test(tc, model_policy_change_resends_only_what_it_changes);
    tcase_add_test(tc, model_namespace_peer_authn_change_moves_converted_policy);
    tcase_add_test(tc, model_root_selector_change_reaches_every_namespace);
    tcase_add_test(tc, model_root_namespace_from_config);
    tcase_add_test(tc, model_dry_run_from_config);
    tcase_add_test(tc, model_authz_info_for_debug);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, encode_static_strict_bytes);
    tcase_add_test(tc, encode_empty_group_and_match);
    tcase_add_test(tc, encode_roundtrip_protobuf_c);
    tcase_add_test(tc, encode_python_golden);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(authz_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
