/*
 * test_exec.c - kube/exec.c, kubeconfig exec credential plugins: parsed only
 * where allowed, run with the kubeconfig's env and KUBERNETES_EXEC_INFO, the
 * token cached until it expires or the API server says 401, client
 * certificates from the plugin, and every way a plugin can fail reported
 * with its reason. Against tests/fakekube over TLS; the plugin is a shell
 * script whose behaviour the test steers through files next to it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "kube.h"
#include "testlib.h"

static tl_fakekube_t fx;

static const char *PLUGIN = "#!/bin/sh\n"
                            "d=$(dirname \"$0\")\n"
                            "echo run >> \"$d/runs\"\n"
                            "printf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$d/info\"\n"
                            "printf '%s' \"$MESHFED_TEST_VAR\" > \"$d/var\"\n"
                            "if [ -f \"$d/fail\" ]; then echo 'plugin says no' >&2; exit 3; fi\n"
                            "if [ -f \"$d/garbage\" ]; then echo 'not json'; exit 0; fi\n"
                            "if [ -f \"$d/cert\" ]; then cat \"$d/cert\"; exit 0; fi\n"
                            "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
                            "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\","
                            "\"expirationTimestamp\":\"%s\"}}' \"$(cat \"$d/token\")\" "
                            "\"$(cat \"$d/exp\")\"\n";

static char *path_of(const char *name)
{
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", fx.dir, name);
    return p;
}

static void put(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The file's content (caller frees), or NULL. */
static char *get(const char *name)
{
    FILE *f = fopen(path_of(name), "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int runs(void)
{
    char *s = get("runs");
    int n = 0;
    for (char *p = s; p && (p = strstr(p, "run")); p += 3)
        n++;
    free(s);
    return n;
}

/* A kubeconfig for cluster 0 whose user runs the plugin (extra: more YAML
 * under exec:). */
static char *kubeconfig(const char *extra)
{
    char *kc = malloc(4096);
    snprintf(kc, 4096,
             "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
             "clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:%d\n"
             "    certificate-authority: %s\n"
             "users:\n- name: u\n  user:\n    exec:\n"
             "      apiVersion: client.authentication.k8s.io/v1\n"
             "      command: %s\n      args: [\"--cluster\", \"k\"]\n"
             "      env:\n      - name: MESHFED_TEST_VAR\n        value: from-kubeconfig\n"
             "      provideClusterInfo: true\n%s"
             "contexts:\n- name: c\n  context: {cluster: k, user: u}\n",
             fx.port[0], path_of("ca.crt"), path_of("plugin.sh"), extra ? extra : "");
    return kc;
}

static int parse(const char *extra, unsigned flags, kube_conn_t *c, char *err, size_t errlen)
{
    char *kc = kubeconfig(extra);
    int rc = kube_conn_from_kubeconfig_ex(kc, strlen(kc), NULL, flags, c, err, errlen);
    free(kc);
    return rc;
}

/* GET of the namespaces list: the HTTP status, or -1 with err. */
static long list(kube_conn_t *c, char *err, size_t errlen)
{
    long st = -1;
    char *body = NULL;
    int rc = kube_request(c, "GET", "/api/v1/namespaces", NULL, NULL, &st, &body, err, errlen);
    free(body);
    return rc < 0 ? -1 : st;
}

static void setup(void)
{
    static const char *const clusters[] = {"a"};
    ck_assert(tl_fk_make_certs(&fx));
    ck_assert(tl_fk_start(&fx, "tok-1", true, clusters, 1));
    put("plugin.sh", PLUGIN);
    ck_assert_int_eq(chmod(path_of("plugin.sh"), 0700), 0);
}

static void reset(const char *token, const char *exp)
{
    remove(path_of("runs"));
    remove(path_of("fail"));
    remove(path_of("garbage"));
    remove(path_of("cert"));
    put("token", token);
    put("exp", exp);
}

START_TEST(exec_only_where_allowed)
{
    kube_conn_t c;
    char err[512];
    ck_assert_int_eq(parse(NULL, 0, &c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "exec credential plugin") &&
                      strstr(err, "never for one from a Secret"),
                  "%s", err);
    ck_assert_int_eq(parse(NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(c.exec);
    kube_conn_free(&c);
    ck_assert_int_eq(parse("      interactiveMode: Always\n", KUBE_KC_EXEC, &c, err, sizeof(err)),
                     -1);
    ck_assert_msg(strstr(err, "interactiveMode Always"), "%s", err);
    char *kc = kubeconfig(NULL);
    char *v = strstr(kc, "client.authentication.k8s.io/v1\n");
    memcpy(v + strlen("client.authentication.k8s.io/"), "v9", 2);
    ck_assert_int_eq(
        kube_conn_from_kubeconfig_ex(kc, strlen(kc), NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "apiVersion"), "%s", err);
    free(kc);
}
END_TEST

/* The token is cached while valid; the plugin gets its env and exec info. */
START_TEST(exec_token_cached_with_env_and_info)
{
    kube_conn_t c;
    char err[512];
    reset("tok-1", "2099-01-01T00:00:00Z");
    ck_assert_int_eq(parse(NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), 0);
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    ck_assert_int_eq(runs(), 1);
    char *var = get("var"), *info = get("info");
    ck_assert_str_eq(var, "from-kubeconfig");
    json_t *j = json_loads(info, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "kind")), "ExecCredential");
    ck_assert(json_is_false(json_object_get(json_object_get(j, "spec"), "interactive")));
    const char *server = json_string_value(
        json_object_get(json_object_get(json_object_get(j, "spec"), "cluster"), "server"));
    ck_assert_ptr_nonnull(server);
    ck_assert(strncmp(server, "https://127.0.0.1:", 18) == 0);
    json_decref(j);
    free(var);
    free(info);
    /* a copy (as the watcher keeps) has the plugin, not the cache */
    kube_conn_t copy;
    ck_assert_int_eq(kube_conn_copy(&copy, &c), 0);
    ck_assert_int_eq(list(&copy, err, sizeof(err)), 200);
    ck_assert_int_eq(runs(), 2);
    kube_conn_free(&copy);
    kube_conn_free(&c);
}
END_TEST

/* An expired token is renewed before use; a 401 makes the next request
 * run the plugin again. */
START_TEST(exec_token_renewed_on_expiry_and_401)
{
    kube_conn_t c;
    char err[512];
    reset("tok-1", "2020-01-01T00:00:00Z");
    ck_assert_int_eq(parse(NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), 0);
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    ck_assert_int_eq(runs(), 2); /* expired at once: run for every request */
    reset("tok-1", "2099-01-01T00:00:00Z");
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    ck_assert_int_eq(runs(), 1);
    /* the server moves to tok-2 before the cached token expires */
    ck_assert_int_eq(tl_fk_ctl(&fx, 0, "token", "{\"token\":\"tok-2\"}"), 200);
    put("token", "tok-2");
    ck_assert_int_eq(list(&c, err, sizeof(err)), 401);
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    ck_assert_int_eq(runs(), 2);
    ck_assert_int_eq(tl_fk_ctl(&fx, 0, "token", "{\"token\":\"tok-1\"}"), 200);
    kube_conn_free(&c);
}
END_TEST

/* A client certificate and key from the plugin authenticate over TLS. */
START_TEST(exec_client_certificate)
{
    kube_conn_t c;
    char err[512];
    reset("nobody", "2099-01-01T00:00:00Z");
    char *cert = get("client.crt"), *key = get("client.key");
    ck_assert_ptr_nonnull(cert);
    ck_assert_ptr_nonnull(key);
    json_t *cred = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion",
                             "client.authentication.k8s.io/v1", "kind", "ExecCredential", "status",
                             "clientCertificateData", cert, "clientKeyData", key);
    char *text = json_dumps(cred, JSON_COMPACT);
    put("cert", text);
    free(text);
    json_decref(cred);
    free(cert);
    free(key);
    ck_assert_int_eq(parse(NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), 0);
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200);
    kube_conn_free(&c);
}
END_TEST

/* A failing, silent or wrong plugin: the request fails with the reason. */
START_TEST(exec_failures_say_why)
{
    kube_conn_t c;
    char err[512];
    reset("tok-1", "2099-01-01T00:00:00Z");
    ck_assert_int_eq(parse(NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), 0);
    put("fail", "");
    ck_assert_int_eq(list(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "exit status 3: plugin says no"), "%s", err);
    remove(path_of("fail"));
    put("garbage", "");
    ck_assert_int_eq(list(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "not a usable ExecCredential"), "%s", err);
    remove(path_of("garbage"));
    put("cert", "{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\","
                "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"x\"}}");
    ck_assert_int_eq(list(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "apiVersion differs"), "%s", err);
    put("cert", "{\"apiVersion\":\"client.authentication.k8s.io/v1\","
                "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"x\","
                "\"expirationTimestamp\":\"tomorrow\"}}");
    ck_assert_int_eq(list(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "expirationTimestamp"), "%s", err);
    remove(path_of("cert"));
    ck_assert_int_eq(list(&c, err, sizeof(err)), 200); /* and it recovers */
    kube_conn_free(&c);
    char *kc = kubeconfig(NULL);
    char *cmd = strstr(kc, "plugin.sh");
    memcpy(cmd, "nothere", 7);
    ck_assert_int_eq(
        kube_conn_from_kubeconfig_ex(kc, strlen(kc), NULL, KUBE_KC_EXEC, &c, err, sizeof(err)), 0);
    free(kc);
    ck_assert_int_eq(list(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "cannot run it"), "%s", err);
    kube_conn_free(&c);
}
END_TEST

int main(void)
{
    if (!tl_fk_init(&fx, "exec"))
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("exec");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_test(tc, exec_only_where_allowed);
    tcase_add_test(tc, exec_token_cached_with_env_and_info);
    tcase_add_test(tc, exec_token_renewed_on_expiry_and_401);
    tcase_add_test(tc, exec_client_certificate);
    tcase_add_test(tc, exec_failures_say_why);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    if (!tl_fk_cleanup(&fx))
        return 1;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
