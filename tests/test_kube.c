/*
 * test_kube.c - kubeconfig parsing and the list/watch client, against
 * tests/fakekube/fakekube.py serving three clusters over HTTPS with a test CA
 * generated here with the openssl CLI.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kube.h"
#include "testlib.h"

/* ---------- event collection ---------- */

typedef struct rec {
    char cluster[32];
    kube_res_t res;
    kube_ev_t ev;
    char key[256];
    char rv[32];
    char uid[64];
    char ip[64]; /* spec.clusterIP */
    char msg[512];
} rec_t;

typedef struct col {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec_t *r;
    size_t n, cap;
} col_t;

static void on_event(void *arg, const char *cluster, kube_res_t res, kube_ev_t ev,
                     const kube_obj_t *obj, const char *msg)
{
    col_t *c = arg;
    rec_t r = {.res = res, .ev = ev};
    snprintf(r.cluster, sizeof(r.cluster), "%s", cluster);
    if (obj) {
        const char *ns = kube_obj_namespace(obj), *name = kube_obj_name(obj);
        snprintf(r.key, sizeof(r.key), "%s%s%s", ns ? ns : "", ns ? "/" : "", name);
        snprintf(r.rv, sizeof(r.rv), "%s", kube_obj_resource_version(obj) ?: "");
        /* the jansson view agrees with the accessors and names the kind */
        json_t *j = kube_obj_json(obj);
        json_t *md = json_object_get(j, "metadata");
        ck_assert_ptr_nonnull(json_object_get(j, "kind"));
        ck_assert_ptr_nonnull(json_object_get(j, "apiVersion"));
        ck_assert_str_eq(json_string_value(json_object_get(md, "name")), name);
        ck_assert_pstr_eq(json_string_value(json_object_get(md, "namespace")), ns);
        snprintf(r.uid, sizeof(r.uid), "%s", json_string_value(json_object_get(md, "uid")) ?: "");
        snprintf(r.ip, sizeof(r.ip), "%s",
                 json_string_value(json_object_get(json_object_get(j, "spec"), "clusterIP")) ?: "");
        json_decref(j);
    }
    snprintf(r.msg, sizeof(r.msg), "%s", msg ? msg : "");
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        c->r = realloc(c->r, c->cap * sizeof(*c->r));
    }
    c->r[c->n++] = r;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static size_t col_mark(col_t *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Events since from matching (cluster, res or -1, ev, key or NULL, msg substring or NULL). */
static size_t col_count_locked(col_t *c, size_t from, const char *cl, int res, kube_ev_t ev,
                               const char *key, const char *msg)
{
    size_t k = 0;
    for (size_t i = from; i < c->n; i++) {
        rec_t *r = &c->r[i];
        if (strcmp(r->cluster, cl) == 0 && (res < 0 || (int)r->res == res) && r->ev == ev &&
            (!key || strcmp(r->key, key) == 0) && (!msg || strstr(r->msg, msg)))
            k++;
    }
    return k;
}

static size_t col_count(col_t *c, size_t from, const char *cl, int res, kube_ev_t ev,
                        const char *key, const char *msg)
{
    pthread_mutex_lock(&c->mu);
    size_t k = col_count_locked(c, from, cl, res, ev, key, msg);
    pthread_mutex_unlock(&c->mu);
    return k;
}

/* Waits up to ms for at least want matching events. */
static bool col_wait(col_t *c, size_t from, const char *cl, int res, kube_ev_t ev, const char *key,
                     const char *msg, size_t want, int ms)
{
    struct timespec dl;
    tl_deadline(&dl, ms);
    pthread_mutex_lock(&c->mu);
    bool ok;
    while (!(ok = col_count_locked(c, from, cl, res, ev, key, msg) >= want))
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT) {
            ok = col_count_locked(c, from, cl, res, ev, key, msg) >= want;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void col_dump(col_t *c, size_t from)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = from; i < c->n; i++)
        fprintf(stderr, "  %s %s %s %s rv=%s %s\n", c->r[i].cluster, kube_res_name(c->r[i].res),
                kube_ev_name(c->r[i].ev), c->r[i].key, c->r[i].rv, c->r[i].msg);
    pthread_mutex_unlock(&c->mu);
}

/* ---------- the fixture: certificates, fakekube, a watcher ---------- */

static tl_fakekube_t fx;
static col_t col;
static kube_watcher_t *watcher;

/* POST /fake/<what> on cluster i (0 a, 1 b, 2 c). */
static void ctl(int i, const char *what, const char *body)
{
    ck_assert_int_eq(tl_fk_ctl(&fx, i, what, body), 200);
}

static void svc(int i, const char *name, const char *label)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"default\",\"labels\":{\"v\":\"%s\"}},\"spec\":{}}",
             name, label);
    ctl(i, "apply", body);
}

static void del_svc(int i, const char *name)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Service\",\"namespace\":\"default\","
             "\"name\":\"%s\"}",
             name);
    ctl(i, "delete", body);
}

static void write_file(const char *name, const char *text)
{
    char path[256], tmp[300];
    snprintf(path, sizeof(path), "%s/%s", fx.dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(rename(tmp, path), 0); /* atomic, as kubelet rotates tokens */
}

static void conn_for(int i, kube_conn_t *c, const char *ca)
{
    tl_fk_conn(&fx, i, c, ca, NULL);
}

/* How many watch requests fakekube's cluster i has served. */
static long fk_watch_total(int i)
{
    kube_conn_t c;
    long status = 0, n = -1;
    char *body = NULL, err[256];
    conn_for(i, &c, "ca.crt");
    if (kube_request(&c, "GET", "/fake/state", NULL, NULL, &status, &body, err, sizeof(err)) == 0 &&
        status == 200) {
        json_t *j = json_loads(body, 0, NULL);
        n = (long)json_integer_value(json_object_get(j, "watch_total"));
        json_decref(j);
    }
    free(body);
    kube_conn_free(&c);
    ck_assert_int_ge(n, 0);
    return n;
}

static kube_stats_t stats(void)
{
    kube_stats_t s;
    kube_watcher_stats(watcher, &s);
    return s;
}

/* ---------- kubeconfig ---------- */

static const char *KC_GOOD = "apiVersion: v1\n"
                             "kind: Config\n"
                             "current-context: east\n"
                             "clusters:\n"
                             "- name: east-cluster\n"
                             "  cluster:\n"
                             "    server: https://east.example:6443\n"
                             "    certificate-authority-data: aGVsbG8gY2E=\n"
                             "    tls-server-name: kube.test\n"
                             "- name: west-cluster\n"
                             "  cluster:\n"
                             "    server: https://west.example\n"
                             "    insecure-skip-tls-verify: true\n"
                             "users:\n"
                             "- name: east-user\n"
                             "  user:\n"
                             "    token: s3cret\n"
                             "- name: west-user\n"
                             "  user:\n"
                             "    tokenFile: /var/run/token\n"
                             "    client-certificate-data: Y2VydA==\n"
                             "    client-key: /k.pem\n"
                             "- name: exec-user\n"
                             "  user:\n"
                             "    exec:\n"
                             "      command: aws\n"
                             "contexts:\n"
                             "- name: east\n"
                             "  context: {cluster: east-cluster, user: east-user}\n"
                             "- name: west\n"
                             "  context: {cluster: west-cluster, user: west-user}\n"
                             "- name: ex\n"
                             "  context: {cluster: west-cluster, user: exec-user}\n"
                             "- name: nocluster\n"
                             "  context: {cluster: nope, user: east-user}\n"
                             "- name: nouser\n"
                             "  context: {cluster: east-cluster, user: nope}\n";

static int kc(const char *text, const char *ctx, kube_conn_t *c, char *err)
{
    return kube_conn_from_kubeconfig(text, strlen(text), ctx, c, err, 512);
}

START_TEST(test_kubeconfig_good)
{
    kube_conn_t c, d;
    char err[512];
    ck_assert_int_eq(kc(KC_GOOD, NULL, &c, err), 0);
    ck_assert_str_eq(c.server, "https://east.example:6443");
    ck_assert_uint_eq(c.ca_len, 8);
    ck_assert_str_eq(c.ca_data, "hello ca");
    ck_assert_str_eq(c.token, "s3cret");
    ck_assert_str_eq(c.tls_server_name, "kube.test");
    ck_assert(!c.insecure);
    ck_assert_int_eq(kube_conn_copy(&d, &c), 0);
    ck_assert_str_eq(d.ca_data, "hello ca");
    kube_conn_free(&c);
    kube_conn_free(&d);
    ck_assert_int_eq(kc(KC_GOOD, "west", &c, err), 0);
    ck_assert(c.insecure);
    ck_assert_str_eq(c.token_file, "/var/run/token");
    ck_assert_str_eq(c.cert_data, "cert");
    ck_assert_str_eq(c.key_file, "/k.pem");
    ck_assert_ptr_null(c.token);
    kube_conn_free(&c);
}
END_TEST

START_TEST(test_kubeconfig_bad)
{
    kube_conn_t c;
    char err[512];
    ck_assert_int_eq(kc(KC_GOOD, "ex", &c, err), -1);
    ck_assert_msg(strstr(err, "user exec-user uses an exec credential plugin, which meshfed "
                              "runs only for the kubeconfig it is given, never for one from a "
                              "Secret; use a token or client certificate"),
                  "%s", err);
    ck_assert_int_eq(kc(KC_GOOD, "missing", &c, err), -1);
    ck_assert_msg(strstr(err, "context \"missing\" not found"), "%s", err);
    ck_assert_int_eq(kc(KC_GOOD, "nocluster", &c, err), -1);
    ck_assert_msg(strstr(err, "cluster \"nope\" not found"), "%s", err);
    ck_assert_int_eq(kc(KC_GOOD, "nouser", &c, err), -1);
    ck_assert_msg(strstr(err, "user \"nope\" not found"), "%s", err);
    ck_assert_int_eq(kc("kind: Config\nclusters: []\n", NULL, &c, err), -1);
    ck_assert_msg(strstr(err, "current-context is not set"), "%s", err);
    const char *b64 = "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                      "clusters: [{name: c, cluster: {server: 'https://h', "
                      "certificate-authority-data: 'not*base64'}}]\n";
    ck_assert_int_eq(kc(b64, NULL, &c, err), -1);
    ck_assert_msg(strstr(err, "certificate-authority-data: invalid base64"), "%s", err);
    const char *types = "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                        "clusters: [{name: c, cluster: {server: 42}}]\n";
    ck_assert_int_eq(kc(types, NULL, &c, err), -1);
    ck_assert_msg(strstr(err, "server: expected a string"), "%s", err);
    ck_assert_int_eq(kc("clusters: {a: 1}\ncurrent-context: x\n", NULL, &c, err), -1);
    ck_assert_msg(strstr(err, "contexts: expected a list"), "%s", err);
    ck_assert_int_eq(kc("a: [\n", NULL, &c, err), -1);
    ck_assert_int_eq(kc("", NULL, &c, err), -1);
    const char *ins = "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                      "clusters: [{name: c, cluster: {server: 'https://h', "
                      "insecure-skip-tls-verify: 'yes'}}]\n";
    ck_assert_int_eq(kc(ins, NULL, &c, err), -1);
    ck_assert_msg(strstr(err, "expected a boolean"), "%s", err);
}
END_TEST

START_TEST(test_in_cluster)
{
    kube_conn_t c;
    char err[512];
    write_file("token", "sa-token\n");
    write_file("ca.crt", "x");
    setenv("MESHFED_SA_DIR", fx.dir, 1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    ck_assert_int_eq(kube_conn_in_cluster(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "KUBERNETES_SERVICE_HOST"), "%s", err);
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    ck_assert_int_eq(kube_conn_in_cluster(&c, err, sizeof(err)), 0);
    ck_assert_str_eq(c.server, "https://10.0.0.1:443");
    ck_assert_ptr_nonnull(strstr(c.token_file, "/token"));
    ck_assert_ptr_nonnull(strstr(c.ca_file, "/ca.crt"));
    kube_conn_free(&c);
}
END_TEST

/* ---------- list/watch against fakekube ---------- */

#define WAIT 15000
#define SVC KUBE_RES_SERVICES

static void seed_a(void)
{
    ctl(0, "apply",
        "[{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"default\"}},"
        "{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"istio-system\"}},"
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"remote\",\"namespace\":"
        "\"istio-system\",\"labels\":{\"istio/multiCluster\":\"true\"}}},"
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"other\",\"namespace\":"
        "\"istio-system\"}},"
        "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"istio\",\"namespace\":"
        "\"istio-system\"}},"
        "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"other\",\"namespace\":"
        "\"istio-system\"}},"
        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p1\",\"namespace\":\"default\"}},"
        "{\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\"}},"
        "{\"kind\":\"ServiceScope\",\"metadata\":{\"name\":\"s1\"}},"
        "{\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"web-x\","
        "\"namespace\":\"default\"}}]");
    svc(0, "web", "1");
    svc(0, "db", "1");
    svc(0, "cache", "1");
}

static void seed_b(void)
{
    size_t cap = 1300 * 100, n = 0;
    char *body = malloc(cap);
    n += (size_t)snprintf(body + n, cap - n, "[");
    for (int i = 0; i < 1200; i++)
        n += (size_t)snprintf(body + n, cap - n,
                              "%s{\"kind\":\"Pod\",\"metadata\":{\"name\":"
                              "\"pod-%04d\",\"namespace\":\"ns%d\"}}",
                              i ? "," : "", i, i % 3);
    snprintf(body + n, cap - n, "]");
    ctl(1, "apply", body);
    free(body);
    svc(1, "b-svc", "1");
}

/* The base64 of a file in fx.dir, into out. */
static void b64_of(const char *name, char *out, size_t outlen)
{
    char path[256];
    ck_assert(tl_sh("cd %s && openssl base64 -A -in %s > %s.b64", fx.dir, name, name));
    snprintf(path, sizeof(path), "%s/%s.b64", fx.dir, name);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(out, (int)outlen, f));
    fclose(f);
}

/* Cluster b's connection comes from a kubeconfig with inline CA data. */
static void conn_b(kube_conn_t *c)
{
    char kcfg[8192], b64[4096] = "", err[512];
    b64_of("ca.crt", b64, sizeof(b64));
    snprintf(kcfg, sizeof(kcfg),
             "current-context: b\ncontexts: [{name: b, context: {cluster: b, user: b}}]\n"
             "clusters: [{name: b, cluster: {server: 'https://127.0.0.1:%d', "
             "tls-server-name: kube.test, certificate-authority-data: '%s'}}]\n"
             "users: [{name: b, user: {token: tok-1}}]\n",
             fx.port[1], b64);
    ck_assert_msg(kube_conn_from_kubeconfig(kcfg, strlen(kcfg), NULL, c, err, sizeof(err)) == 0,
                  "%s", err);
}

static void add_a(void)
{
    kube_conn_t c;
    char err[256], path[256];
    conn_for(0, &c, "ca.crt");
    snprintf(path, sizeof(path), "%s/tokfile", fx.dir);
    c.token_file = strdup(path);
    ck_assert_int_eq(kube_watcher_add_cluster(watcher, "a", &c, KUBE_RES_ALL, err, sizeof(err)), 0);
    kube_conn_free(&c);
}

static void add_b(void)
{
    kube_conn_t c;
    char err[256];
    conn_b(&c);
    ck_assert_int_eq(kube_watcher_add_cluster(watcher, "b", &c,
                                              KUBE_RES_BIT(SVC) | KUBE_RES_BIT(KUBE_RES_PODS), err,
                                              sizeof(err)),
                     0);
    kube_conn_free(&c);
}

/* Certificates and fakekube: a test so that failures are reported. */
START_TEST(test_setup)
{
    static const char *const clusters[] = {"a", "b", "c"};
    ck_assert(tl_fk_make_certs(&fx));
    ck_assert(tl_fk_start(&fx, "tok-1", true, clusters, 3));
}
END_TEST

START_TEST(test_initial_sync)
{
    seed_a();
    seed_b();
    write_file("tokfile", "tok-1\n");
    watcher = kube_watcher_new(on_event, &col, "istio-system", 4);
    ck_assert_ptr_nonnull(watcher);
    add_a();
    add_b();
    ck_assert_int_eq(kube_watcher_start(watcher), 0);
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        ck_assert_msg(col_wait(&col, 0, "a", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT),
                      "a %s not synced", kube_res_name((kube_res_t)r));
    ck_assert(col_wait(&col, 0, "b", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert(col_wait(&col, 0, "b", KUBE_RES_PODS, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, 0, "a", SVC, KUBE_EV_ADDED, NULL, NULL), 3);
    ck_assert_uint_eq(col_count(&col, 0, "a", SVC, KUBE_EV_ADDED, "default/web", NULL), 1);
    ck_assert_uint_eq(col_count(&col, 0, "a", KUBE_RES_SECRETS, KUBE_EV_ADDED, NULL, NULL), 1);
    ck_assert_uint_eq(
        col_count(&col, 0, "a", KUBE_RES_SECRETS, KUBE_EV_ADDED, "istio-system/remote", NULL), 1);
    ck_assert_uint_eq(
        col_count(&col, 0, "a", KUBE_RES_CONFIGMAPS, KUBE_EV_ADDED, "istio-system/istio", NULL), 1);
    ck_assert_uint_eq(col_count(&col, 0, "a", KUBE_RES_CONFIGMAPS, KUBE_EV_ADDED, NULL, NULL), 1);
    ck_assert_uint_eq(col_count(&col, 0, "a", KUBE_RES_NODES, KUBE_EV_ADDED, "n1", NULL), 1);
    ck_assert_uint_eq(col_count(&col, 0, "a", KUBE_RES_SERVICESCOPES, KUBE_EV_ADDED, "s1", NULL),
                      1);
    ck_assert_uint_eq(col_count(&col, 0, "a", KUBE_RES_ENDPOINTSLICES, KUBE_EV_ADDED, NULL, NULL),
                      1);
    ck_assert_uint_eq(col_count(&col, 0, "b", KUBE_RES_PODS, KUBE_EV_ADDED, NULL, NULL), 1200);
    ck_assert_uint_eq(col_count(&col, 0, "b", KUBE_RES_PODS, KUBE_EV_ADDED, "ns1/pod-1198", NULL),
                      1);
    ck_assert_uint_eq(col_count(&col, 0, "a", -1, KUBE_EV_ERROR, NULL, NULL), 0);
    ck_assert_uint_ge(stats().lists, KUBE_RES__COUNT + 3 + 1); /* b's pods take 3 pages */
    bool synced, stale;
    ck_assert_int_eq(kube_watcher_cluster_status(watcher, "b", &synced, &stale), 0);
    ck_assert(synced && !stale);
}
END_TEST

START_TEST(test_watch_events)
{
    size_t m = col_mark(&col);
    svc(0, "web", "2");
    svc(0, "new", "1");
    del_svc(0, "cache");
    svc(1, "b-svc", "2");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_MODIFIED, "default/web", NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/new", NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_DELETED, "default/cache", NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "b", SVC, KUBE_EV_MODIFIED, "default/b-svc", NULL, 1, WAIT));
    ck_assert_uint_eq(stats().decode_errors, 0);
}
END_TEST

/* Clients miss changes (paused), history is compacted, watches drop: the
 * relist must emit exactly the difference. */
static void relist_diff(const char *gone_mode, const char *del)
{
    char dkey[64];
    snprintf(dkey, sizeof(dkey), "default/%s", del);
    char cfg[64];
    snprintf(cfg, sizeof(cfg), "{\"gone\":\"%s\"}", gone_mode);
    ctl(0, "config", cfg);
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    ctl(0, "pause", "{\"on\":true}");
    svc(0, "web", gone_mode); /* changed */
    del_svc(0, del);          /* gone */
    svc(0, gone_mode, "1");   /* added */
    svc(0, "tmp", "1");       /* added and deleted while away: nothing */
    del_svc(0, "tmp");
    ctl(0, "compact", "{\"disconnect\":true}");
    ctl(0, "pause", "{\"on\":false}");
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        ck_assert_msg(col_wait(&col, m, "a", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT),
                      "a %s did not relist", kube_res_name((kube_res_t)r));
    char key[64];
    snprintf(key, sizeof(key), "default/%s", gone_mode);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_MODIFIED, "default/web", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_DELETED, dkey, NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, key, NULL), 1);
    size_t objs = 0;
    for (kube_ev_t e = KUBE_EV_ADDED; e <= KUBE_EV_DELETED; e++)
        objs += col_count(&col, m, "a", -1, e, NULL, NULL);
    if (objs != 3)
        col_dump(&col, m);
    ck_assert_uint_eq(objs, 3);
    ck_assert_uint_ge(stats().relists, before.relists + KUBE_RES__COUNT);
    ck_assert_uint_eq(col_count(&col, m, "b", -1, KUBE_EV_SYNCED, NULL, NULL), 0);
    ctl(0, "config", "{\"gone\":\"event\"}");
}

START_TEST(test_relist_after_compact)
{
    relist_diff("event", "new");
    relist_diff("http", "event"); /* deletes what the first round added */
}
END_TEST

/* A continue token expiring half way through b's 3-page pod list restarts
 * the list; the result is still exactly the difference. */
START_TEST(test_relist_continue_expired)
{
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    ctl(1, "config", "{\"expire_continue\":1}");
    ctl(1, "pause", "{\"on\":true}");
    ctl(1, "apply",
        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"pod-0007\","
        "\"namespace\":\"ns1\",\"labels\":{\"x\":\"y\"}}}");
    ctl(1, "delete", "{\"kind\":\"Pod\",\"namespace\":\"ns2\",\"name\":\"pod-1199\"}");
    ctl(1, "compact", "{\"disconnect\":true}");
    ctl(1, "pause", "{\"on\":false}");
    ck_assert(col_wait(&col, m, "b", KUBE_RES_PODS, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "b", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_uint_eq(
        col_count(&col, m, "b", KUBE_RES_PODS, KUBE_EV_MODIFIED, "ns1/pod-0007", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "b", KUBE_RES_PODS, KUBE_EV_DELETED, "ns2/pod-1199", NULL),
                      1);
    size_t objs = 0;
    for (kube_ev_t e = KUBE_EV_ADDED; e <= KUBE_EV_DELETED; e++)
        objs += col_count(&col, m, "b", -1, e, NULL, NULL);
    ck_assert_uint_eq(objs, 2);
    ck_assert_uint_eq(col_count(&col, m, "b", KUBE_RES_PODS, KUBE_EV_SYNCED, NULL, NULL), 1);
    /* services and pods after the watch 410, pods again after the expired continue */
    ck_assert_uint_ge(stats().relists, before.relists + 3);
    ck_assert_uint_eq(col_count(&col, m, "b", -1, KUBE_EV_ERROR, NULL, NULL), 0);
}
END_TEST

/* API Priority and Fairness: a 429 with Retry-After is retried when the
 * server says (here 2 s), not at the exponential backoff's 100 ms, 200 ms...;
 * it is reported and counted, and nothing is lost. */
START_TEST(test_throttled_429_honours_retry_after)
{
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    ctl(1, "config", "{\"throttle\":1000,\"retry_after\":2}");
    ctl(1, "disconnect", NULL);
    ck_assert(col_wait(&col, m, "b", -1, KUBE_EV_ERROR, NULL,
                       "throttled (HTTP 429), retrying in 2 s: Too many requests", 2, WAIT));
    usleep(3000 * 1000);
    uint64_t n = stats().throttled - before.throttled;
    /* two informers (services, pods), tried at 0 s and 2 s each; the
     * backoff alone would have made about ten attempts by now */
    ck_assert_msg(n >= 2 && n <= 5, "%llu throttled requests in 3 s", (unsigned long long)n);
    ctl(1, "config", "{\"throttle\":0}");
    ctl(1, "apply",
        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"pod-0007\","
        "\"namespace\":\"ns1\",\"labels\":{\"x\":\"throttled\"}}}");
    ck_assert(
        col_wait(&col, m, "b", KUBE_RES_PODS, KUBE_EV_MODIFIED, "ns1/pod-0007", NULL, 1, WAIT));
    ck_assert_uint_eq(stats().relists, before.relists);
}
END_TEST

/* A proxy that answers every watch at once with an empty 200: the watches
 * back off as client-go's reflector does (800 ms doubling, jitter) instead
 * of starting again at once, forever; one line per streak, all counted. */
START_TEST(test_watch_empty_200_backs_off)
{
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    long w0 = fk_watch_total(1);
    ctl(1, "config", "{\"empty_watches_s\":5}");
    ctl(1, "disconnect", NULL);
    usleep(5000 * 1000);
    long n = fk_watch_total(1) - w0;
    fprintf(stderr, "empty-200: %ld watches in 5 s (short %llu)\n", n,
            (unsigned long long)(stats().short_watches - before.short_watches));
    /* two informers (services, pods), each at about 0.1 s, then after
     * 0.8-1.6 s, then 1.6-3.2 s later: at most three each */
    ck_assert_msg(n >= 4 && n <= 8, "%ld watches in 5 s", n);
    ck_assert_uint_ge(stats().short_watches, before.short_watches + 4);
    ck_assert_uint_eq(col_count(&col, m, "b", SVC, KUBE_EV_ERROR, NULL, "without any event"), 1);
    ck_assert_uint_eq(
        col_count(&col, m, "b", KUBE_RES_PODS, KUBE_EV_ERROR, NULL, "without any event"), 1);
    svc(1, "b-svc", "hot");
    ctl(1, "apply",
        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"pod-0007\","
        "\"namespace\":\"ns1\",\"labels\":{\"x\":\"hot\"}}}");
    ck_assert(col_wait(&col, m, "b", SVC, KUBE_EV_MODIFIED, "default/b-svc", NULL, 1, 25000));
    ck_assert(
        col_wait(&col, m, "b", KUBE_RES_PODS, KUBE_EV_MODIFIED, "ns1/pod-0007", NULL, 1, 25000));
    ck_assert_uint_eq(stats().relists, before.relists);
    ck_assert_uint_eq(col_count(&col, m, "a", -1, KUBE_EV_ERROR, NULL, NULL), 0);
}
END_TEST

START_TEST(test_disconnect_resumes)
{
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    ctl(0, "pause", "{\"on\":true}");
    svc(0, "r1", "1");
    svc(0, "web", "r");
    ctl(0, "disconnect", NULL);
    ctl(0, "pause", "{\"on\":false}");
    svc(0, "r2", "1");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/r2", NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, "default/r1", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_MODIFIED, "default/web", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", -1, KUBE_EV_SYNCED, NULL, NULL), 0);
    ck_assert_uint_eq(stats().relists, before.relists);
    ck_assert_uint_gt(stats().watch_restarts, before.watch_restarts);
}
END_TEST

/* After a bookmark, every informer's rv is current: compacting history then
 * costs no relist even for resources that had no events. */
START_TEST(test_bookmarks)
{
    size_t m = col_mark(&col);
    ctl(0, "apply", "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p2\",\"namespace\":\"d\"}}");
    ck_assert(col_wait(&col, m, "a", KUBE_RES_PODS, KUBE_EV_ADDED, "d/p2", NULL, 1, WAIT));
    kube_stats_t before = stats();
    ctl(0, "bookmark", NULL);
    for (int i = 0; i < 300 && stats().bookmarks < before.bookmarks + KUBE_RES__COUNT; i++)
        usleep(20000);
    ck_assert_uint_ge(stats().bookmarks, before.bookmarks + KUBE_RES__COUNT);
    m = col_mark(&col);
    ctl(0, "compact", "{\"disconnect\":true}");
    svc(0, "after-bookmark", "1");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/after-bookmark", NULL, 1, WAIT));
    for (int i = 0; i < 100 && stats().watches < before.watches + 2 * KUBE_RES__COUNT; i++)
        usleep(20000);
    ck_assert_uint_eq(stats().relists, before.relists);
    ck_assert_uint_eq(col_count(&col, m, "a", -1, KUBE_EV_SYNCED, NULL, NULL), 0);
}
END_TEST

START_TEST(test_malformed_line)
{
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    ctl(1, "malformed", "{\"line\":\"{this is not json\"}");
    ck_assert(col_wait(&col, m, "b", -1, KUBE_EV_ERROR, NULL, "malformed event", 2, WAIT));
    ctl(1, "malformed", "{\"size\":17825792}"); /* 17 MiB: over the cap */
    ck_assert(col_wait(&col, m, "b", -1, KUBE_EV_ERROR, NULL, "larger than 16 MiB", 2, WAIT));
    /* A non-410 ERROR event restarts the watch (after a backoff), quietly otherwise.
     * The line goes to the watches open at that moment; after the 17 MiB line
     * some may still be reconnecting on a loaded machine, so send it again
     * until two watches have reported it. */
    bool seen = false;
    for (int i = 0; i < 10 && !seen; i++) {
        ctl(1, "malformed",
            "{\"line\":\"{\\\"type\\\":\\\"ERROR\\\",\\\"object\\\":"
            "{\\\"code\\\":500,\\\"message\\\":\\\"boom\\\"}}\"}");
        seen = col_wait(&col, m, "b", -1, KUBE_EV_ERROR, NULL, "error event 500: boom", 2, 3000);
    }
    ck_assert(seen);
    svc(1, "b-after", "1");
    ck_assert(col_wait(&col, m, "b", SVC, KUBE_EV_ADDED, "default/b-after", NULL, 1, WAIT));
    ck_assert_uint_ge(stats().decode_errors, before.decode_errors + 4);
    ck_assert_uint_eq(stats().relists, before.relists);
    ck_assert_uint_eq(col_count(&col, m, "a", -1, KUBE_EV_ERROR, NULL, NULL), 0);
}
END_TEST

/* Cluster a reads its token from a file at every reconnect. */
START_TEST(test_token_rotation)
{
    size_t m = col_mark(&col);
    write_file("tokfile", "tok-2\n");
    ctl(0, "token", "{\"token\":\"tok-2\"}");
    ctl(0, "disconnect", NULL);
    svc(0, "rot1", "1");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/rot1", NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "a", -1, KUBE_EV_ERROR, NULL, NULL), 0);

    /* The server now refuses tok-2 (403) and wants tok-3: errors, then stale. */
    m = col_mark(&col);
    ctl(0, "token", "{\"token\":\"tok-3\",\"forbidden\":[\"tok-2\"]}");
    ctl(0, "disconnect", NULL);
    ck_assert(col_wait(&col, m, "a", -1, KUBE_EV_ERROR, NULL, "HTTP 403", 1, WAIT));
    ck_assert(col_wait(&col, m, "a", KUBE_RES__COUNT, KUBE_EV_STALE, NULL, NULL, 1, WAIT));
    bool synced, stale;
    ck_assert_int_eq(kube_watcher_cluster_status(watcher, "a", &synced, &stale), 0);
    ck_assert(stale);
    ck_assert_uint_eq(col_count(&col, m, "b", -1, KUBE_EV_STALE, NULL, NULL), 0);
    svc(0, "rot2", "1");
    write_file("tokfile", "tok-3\n");
    ck_assert(col_wait(&col, m, "a", KUBE_RES__COUNT, KUBE_EV_RECOVERED, NULL, NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/rot2", NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, "default/rot2", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, "default/rot1", NULL), 0);
}
END_TEST

START_TEST(test_wrong_ca)
{
    kube_conn_t c;
    char err[256];
    size_t m = col_mark(&col);
    conn_for(2, &c, "ca2.crt");
    c.token = strdup("tok-1");
    ck_assert_int_eq(
        kube_watcher_add_cluster(watcher, "c", &c, KUBE_RES_BIT(SVC), err, sizeof(err)), 0);
    kube_conn_free(&c);
    ck_assert(
        col_wait(&col, m, "c", SVC, KUBE_EV_ERROR, NULL, "cluster c: list services: SSL", 1, WAIT));
    col_dump(&col, m);
    svc(1, "b-while-c-broken", "1");
    ck_assert(
        col_wait(&col, m, "b", SVC, KUBE_EV_ADDED, "default/b-while-c-broken", NULL, 1, WAIT));
    /* The right CA, replacing the cluster in place, fixes it. */
    conn_for(2, &c, "ca.crt");
    c.token = strdup("tok-1");
    svc(2, "c-svc", "1");
    ck_assert_int_eq(
        kube_watcher_add_cluster(watcher, "c", &c, KUBE_RES_BIT(SVC), err, sizeof(err)), 0);
    kube_conn_free(&c);
    ck_assert(col_wait(&col, m, "c", SVC, KUBE_EV_ADDED, "default/c-svc", NULL, 1, WAIT));
    ck_assert_int_eq(kube_watcher_remove_cluster(watcher, "c"), 0);
    ck_assert_int_eq(kube_watcher_add_cluster(watcher, "", &c, 1, err, sizeof(err)), -1);
}
END_TEST

/* No token: a client certificate, first inline (kubeconfig data), then files. */
START_TEST(test_client_cert)
{
    char kcfg[16384], ca[4096], crt[4096], key[4096], err[512];
    kube_conn_t c;
    size_t m = col_mark(&col);
    b64_of("ca.crt", ca, sizeof(ca));
    b64_of("client.crt", crt, sizeof(crt));
    b64_of("client.key", key, sizeof(key));
    snprintf(kcfg, sizeof(kcfg),
             "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
             "clusters: [{name: c, cluster: {server: 'https://localhost:%d/', "
             "certificate-authority-data: '%s'}}]\n"
             "users: [{name: u, user: {client-certificate-data: '%s', client-key-data: '%s'}}]\n",
             fx.port[2], ca, crt, key);
    ck_assert_msg(kube_conn_from_kubeconfig(kcfg, strlen(kcfg), NULL, &c, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(
        kube_watcher_add_cluster(watcher, "cert", &c, KUBE_RES_BIT(SVC), err, sizeof(err)), 0);
    kube_conn_free(&c);
    ck_assert(col_wait(&col, m, "cert", SVC, KUBE_EV_ADDED, "default/c-svc", NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "cert", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));

    conn_for(2, &c, "ca.crt");
    snprintf(kcfg, sizeof(kcfg), "%s/client.crt", fx.dir);
    c.cert_file = strdup(kcfg);
    snprintf(kcfg, sizeof(kcfg), "%s/client.key", fx.dir);
    c.key_file = strdup(kcfg);
    ck_assert_int_eq(
        kube_watcher_add_cluster(watcher, "cert", &c, KUBE_RES_BIT(SVC), err, sizeof(err)), 0);
    kube_conn_free(&c);
    ck_assert(col_wait(&col, m, "cert", SVC, KUBE_EV_SYNCED, NULL, NULL, 2, WAIT));
    svc(2, "c-svc2", "1");
    ck_assert(col_wait(&col, m, "cert", SVC, KUBE_EV_ADDED, "default/c-svc2", NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "cert", -1, KUBE_EV_ERROR, NULL, NULL), 0);
    ck_assert_uint_eq(col_count(&col, m, "cert", SVC, KUBE_EV_ADDED, NULL, NULL), 2);
    ck_assert_int_eq(kube_watcher_remove_cluster(watcher, "cert"), 0);
}
END_TEST

START_TEST(test_remove_readd)
{
    size_t m = col_mark(&col);
    ck_assert_int_eq(kube_watcher_remove_cluster(watcher, "b"), 0);
    ck_assert_int_eq(kube_watcher_remove_cluster(watcher, "nope"), -1);
    bool synced, stale;
    for (int i = 0; i < 100 && kube_watcher_cluster_status(watcher, "b", &synced, &stale) == 0; i++)
        usleep(20000);
    ck_assert_int_eq(kube_watcher_cluster_status(watcher, "b", &synced, &stale), -1);
    svc(1, "b-removed", "1");
    svc(0, "a-still", "1");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/a-still", NULL, 1, WAIT));
    ck_assert(!col_wait(&col, m, "b", -1, KUBE_EV_ADDED, NULL, NULL, 1, 500));

    /* Re-added: its caches are gone, so everything is ADDED again. */
    add_b();
    ck_assert(col_wait(&col, m, "b", KUBE_RES_PODS, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "b", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "b", SVC, KUBE_EV_ADDED, "default/b-removed", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "b", KUBE_RES_PODS, KUBE_EV_ADDED, NULL, NULL),
                      1199); /* pod-1199 was deleted above */

    /* Replacing a running cluster keeps its caches: a relist with no changes. */
    m = col_mark(&col);
    add_a();
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        ck_assert(col_wait(&col, m, "a", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    for (kube_ev_t e = KUBE_EV_ADDED; e <= KUBE_EV_DELETED; e++)
        ck_assert_uint_eq(col_count(&col, m, "a", -1, e, NULL, NULL), 0);
}
END_TEST

/* One object with a number out of range or a repeated key is refused alone,
 * in a list page and in a watch event: the rest of the page applies, and a
 * refused object the callback saw before keeps its previous version. */
START_TEST(test_bad_object_refused_alone)
{
    kube_stats_t before = stats();
    size_t m = col_mark(&col);
    ctl(0, "pause", "{\"on\":true}");
    svc(0, "web", "bad-page"); /* a good change on the same page */
    del_svc(0, "db");          /* db is now listed only in its bad form */
    ctl(0, "config",
        "{\"raw\":{\"plural\":\"services\",\"items\":["
        "\"{\\\"metadata\\\":{\\\"name\\\":\\\"bad-port\\\",\\\"namespace\\\":\\\"default\\\","
        "\\\"resourceVersion\\\":\\\"5\\\"},\\\"spec\\\":{\\\"ports\\\":[{\\\"port\\\":"
        "18446744073709551617}]}}\","
        "\"{\\\"metadata\\\":{\\\"name\\\":\\\"dup-key\\\",\\\"namespace\\\":\\\"default\\\","
        "\\\"resourceVersion\\\":\\\"5\\\"},\\\"spec\\\":{\\\"type\\\":\\\"ClusterIP\\\","
        "\\\"type\\\":\\\"NodePort\\\"}}\","
        "\"{\\\"metadata\\\":{\\\"name\\\":\\\"db\\\",\\\"namespace\\\":\\\"default\\\","
        "\\\"resourceVersion\\\":\\\"6\\\"},\\\"spec\\\":{\\\"x\\\":1e400}}\"]}}");
    ctl(0, "compact", "{\"disconnect\":true}");
    ctl(0, "pause", "{\"on\":false}");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_MODIFIED, "default/web", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ERROR, NULL,
                                "list services: Service default/bad-port refused: "
                                "spec.ports[0].port: number out of range: 18446744073709551617"),
                      1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ERROR, NULL,
                                "Service default/dup-key refused: spec: duplicate key \"type\""),
                      1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ERROR, NULL,
                                "Service default/db refused: spec.x: number out of range: 1e400; "
                                "its previous version stays"),
                      1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, "default/bad-port", NULL), 0);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, "default/dup-key", NULL), 0);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_DELETED, "default/db", NULL), 0);
    ck_assert_uint_ge(stats().bad_objects, before.bad_objects + 3);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ERROR, NULL, "malformed"), 0);

    /* the same in a watch event; the watch goes on */
    m = col_mark(&col);
    ctl(0, "malformed",
        "{\"plural\":\"services\",\"line\":\"{\\\"type\\\":\\\"ADDED\\\",\\\"object\\\":{"
        "\\\"metadata\\\":"
        "{\\\"name\\\":\\\"w-bad\\\",\\\"namespace\\\":\\\"default\\\"},"
        "\\\"spec\\\":{\\\"ports\\\":[{\\\"port\\\":1e400}]}}}\"}");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ERROR, NULL,
                       "watch services: Service default/w-bad refused: spec.ports[0].port: "
                       "number out of range: 1e400",
                       1, WAIT));
    ctl(0, "config", "{\"raw\":{\"plural\":\"services\",\"items\":[]}}");
    svc(0, "db", "1");
    svc(0, "after-bad", "1");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/after-bad", NULL, 1, WAIT));
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_MODIFIED, "default/db", NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_ADDED, "default/w-bad", NULL), 0);
}
END_TEST

/* The last event for key in cluster cl since from, or NULL. */
static rec_t last_of(size_t from, const char *cl, const char *key)
{
    rec_t r = {0};
    pthread_mutex_lock(&col.mu);
    for (size_t i = from; i < col.n; i++)
        if (strcmp(col.r[i].cluster, cl) == 0 && strcmp(col.r[i].key, key) == 0 &&
            col.r[i].ev <= KUBE_EV_DELETED)
            r = col.r[i];
    pthread_mutex_unlock(&col.mu);
    return r;
}

/* A recreated cluster (a fresh etcd replaying the same writes) has the
 * same resourceVersions with new UIDs and new ClusterIPs: the relist must
 * re-apply them, not drop them as already seen, and say so. */
START_TEST(test_recreated_cluster_relist_applies_new_content)
{
    size_t m = col_mark(&col);
    ctl(0, "apply",
        "{\"kind\":\"Service\",\"metadata\":{\"name\":\"reviews\",\"namespace\":"
        "\"default\"},\"spec\":{\"clusterIP\":\"10.96.0.10\"}}");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_ADDED, "default/reviews", NULL, 1, WAIT));
    rec_t old = last_of(m, "a", "default/reviews");
    ck_assert_str_eq(old.ip, "10.96.0.10");
    m = col_mark(&col);
    ctl(0, "recreate",
        "{\"objects\":[{\"kind\":\"Service\",\"metadata\":{\"name\":\"reviews\","
        "\"namespace\":\"default\"},\"spec\":{\"clusterIP\":\"10.200.7.7\"}}]}");
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        ck_assert_msg(col_wait(&col, m, "a", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT),
                      "a %s did not relist", kube_res_name((kube_res_t)r));
    rec_t now = last_of(m, "a", "default/reviews");
    ck_assert_int_eq(now.ev, KUBE_EV_MODIFIED);
    ck_assert_str_eq(now.rv, old.rv);       /* the same resourceVersion... */
    ck_assert_str_eq(now.ip, "10.200.7.7"); /* ...and the new address */
    ck_assert_str_ne(now.uid, old.uid);
    /* every object has a new UID: all re-applied (the web Service too) */
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_MODIFIED, "default/web", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_RELISTED, NULL,
                                "services relisted (the watch's resourceVersion is too old "
                                "(410 Gone))"),
                      1);
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_RELISTED, NULL,
                                "under an unchanged resourceVersion (new UID or content): "
                                "re-applied"),
                      1);
    /* an unchanged relist still emits nothing */
    ctl(0, "apply", "{\"kind\":\"Node\",\"metadata\":{\"name\":\"n-after\"}}");
    m = col_mark(&col);
    ctl(0, "compact", "{\"disconnect\":true}");
    ck_assert(col_wait(&col, m, "a", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "a", SVC, KUBE_EV_MODIFIED, NULL, NULL), 0);
    ck_assert_uint_eq(
        col_count(&col, m, "a", SVC, KUBE_EV_RELISTED, NULL, "0 added, 0 modified, 0 deleted"), 1);
}
END_TEST

/* A watcher of its own on cluster c, every resource, with token tok. */
static kube_watcher_t *rbac_watcher(const char *id, const char *tok)
{
    kube_conn_t c;
    char err[256];
    kube_watcher_t *w = kube_watcher_new(on_event, &col, "istio-system", 0);
    ck_assert_ptr_nonnull(w);
    conn_for(2, &c, "ca.crt");
    c.token = strdup(tok);
    ck_assert_int_eq(kube_watcher_add_cluster(w, id, &c, KUBE_RES_ALL, err, sizeof(err)), 0);
    kube_conn_free(&c);
    ck_assert_int_eq(kube_watcher_start(w), 0);
    return w;
}

/* With the chart's own RBAC (fakekube authorizes as a real API server,
 * 403 before 404), every resource meshfed lists is readable; a 403 on the
 * optional Gateways (a chart that did not grant them) is a reported
 * condition and never blocks the sync, the same way on every start; a 404
 * (no Gateway CRD) likewise, silently. */
START_TEST(test_rbac_chart_roles_and_optional_403)
{
    kube_cluster_info_t info;
    ctl(2, "token",
        "{\"tokens\":[\"tok-1\"],\"rbac\":{\"chart-old\":\"chart-without-gateways\","
        "\"chart\":\"chart\"}}");
    ctl(2, "config", "{\"absent\":[\"gateways\"]}");
    for (int round = 0; round < 2; round++) {
        size_t m = col_mark(&col);
        kube_watcher_t *w = rbac_watcher("c-rbac-old", "chart-old");
        for (int r = 0; r < KUBE_RES__COUNT; r++)
            ck_assert_msg(col_wait(&col, m, "c-rbac-old", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT),
                          "round %d: %s not synced", round, kube_res_name((kube_res_t)r));
        ck_assert_int_eq(kube_watcher_cluster_info(w, "c-rbac-old", &info), 0);
        ck_assert(info.synced);
        ck_assert_uint_eq(info.forbidden, KUBE_RES_BIT(KUBE_RES_GATEWAYS));
        ck_assert_uint_eq(info.absent, 0);
        /* the authorizer answered before the missing CRD's 404 */
        ck_assert_uint_eq(col_count(&col, m, "c-rbac-old", KUBE_RES_GATEWAYS, KUBE_EV_ERROR, NULL,
                                    "list gateways: forbidden (HTTP 403): gateways."
                                    "gateway.networking.k8s.io is forbidden"),
                          1);
        ck_assert_uint_eq(col_count(&col, m, "c-rbac-old", -1, KUBE_EV_ERROR, NULL, NULL), 1);
        kube_stats_t st;
        kube_watcher_stats(w, &st);
        ck_assert_uint_eq(st.forbidden, 1);
        kube_watcher_free(w);
    }
    /* the chart as it is: the missing CRD is a silent, non-blocking 404 */
    size_t m = col_mark(&col);
    kube_watcher_t *w = rbac_watcher("c-rbac", "chart");
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        ck_assert(col_wait(&col, m, "c-rbac", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_int_eq(kube_watcher_cluster_info(w, "c-rbac", &info), 0);
    ck_assert(info.synced && info.forbidden == 0);
    ck_assert_uint_eq(info.absent, KUBE_RES_BIT(KUBE_RES_GATEWAYS));
    ck_assert_uint_eq(col_count(&col, m, "c-rbac", -1, KUBE_EV_ERROR, NULL, NULL), 0);
    kube_watcher_free(w);
    /* with the CRD installed: every resource meshfed lists, Gateways too,
     * is readable with the chart's roles */
    ctl(2, "config", "{\"absent\":[]}");
    m = col_mark(&col);
    w = rbac_watcher("c-rbac", "chart");
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        ck_assert(col_wait(&col, m, "c-rbac", r, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_int_eq(kube_watcher_cluster_info(w, "c-rbac", &info), 0);
    ck_assert(info.synced && info.forbidden == 0 && info.absent == 0);
    ck_assert_uint_eq(col_count(&col, m, "c-rbac", -1, KUBE_EV_ERROR, NULL, NULL), 0);
    kube_watcher_free(w);
    ctl(2, "token", "{\"tokens\":[\"tok-1\"]}");
}
END_TEST

/* A watcher of its own on cluster c's services with the given list limits. */
static kube_watcher_t *limited_watcher(const char *id, unsigned pages, size_t objects)
{
    kube_conn_t c;
    char err[256];
    kube_watcher_t *w = kube_watcher_new(on_event, &col, "istio-system", 0);
    ck_assert_ptr_nonnull(w);
    kube_watcher_set_list_limits(w, pages, objects);
    conn_for(2, &c, "ca.crt");
    c.token = strdup("tok-1");
    ck_assert_int_eq(kube_watcher_add_cluster(w, id, &c, KUBE_RES_BIT(SVC), err, sizeof(err)), 0);
    kube_conn_free(&c);
    ck_assert_int_eq(kube_watcher_start(w), 0);
    return w;
}

/* A list that never stops paginating is abandoned at the object or page
 * limit with a clear error and a count; nothing of it is applied (no
 * half-listed objects, not synced) until a list completes. */
START_TEST(test_endless_list_abandoned)
{
    size_t m = col_mark(&col);
    kube_stats_t st;
    bool synced, stale;
    ctl(2, "config", "{\"endless\":[\"services\"]}");
    kube_watcher_t *w = limited_watcher("c-objs", 0, 5000);
    ck_assert(col_wait(&col, m, "c-objs", SVC, KUBE_EV_ERROR, NULL,
                       "more than 5000 objects (10 pages, 500", 2, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "c-objs", SVC, KUBE_EV_ADDED, NULL, NULL), 0);
    ck_assert_uint_eq(col_count(&col, m, "c-objs", SVC, KUBE_EV_SYNCED, NULL, NULL), 0);
    ck_assert_int_eq(kube_watcher_cluster_status(w, "c-objs", &synced, &stale), 0);
    ck_assert(!synced);
    kube_watcher_stats(w, &st);
    ck_assert_uint_ge(st.list_limits, 2);
    /* the server comes to its senses: the next list completes and applies */
    ctl(2, "config", "{\"endless\":[]}");
    ck_assert(col_wait(&col, m, "c-objs", SVC, KUBE_EV_SYNCED, NULL, NULL, 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "c-objs", SVC, KUBE_EV_ADDED, "default/c-svc", NULL), 1);
    ck_assert_uint_eq(col_count(&col, m, "c-objs", SVC, KUBE_EV_ADDED, "default/endless-0-0", NULL),
                      0);
    kube_watcher_free(w);

    ctl(2, "config", "{\"endless\":[\"services\"]}");
    w = limited_watcher("c-pages", 5, 0);
    ck_assert(col_wait(&col, m, "c-pages", SVC, KUBE_EV_ERROR, NULL,
                       "more than 5 pages (5 pages, 250", 1, WAIT));
    ck_assert_uint_eq(col_count(&col, m, "c-pages", SVC, KUBE_EV_ADDED, NULL, NULL), 0);
    kube_watcher_free(w);
    ctl(2, "config", "{\"endless\":[]}");
}
END_TEST

START_TEST(test_stop)
{
    kube_stats_t s = stats();
    fprintf(stderr,
            "stats: lists %lu watches %lu relists %lu restarts %lu bookmarks %lu "
            "events %lu errors %lu decode_errors %lu\n",
            (unsigned long)s.lists, (unsigned long)s.watches, (unsigned long)s.relists,
            (unsigned long)s.watch_restarts, (unsigned long)s.bookmarks, (unsigned long)s.events,
            (unsigned long)s.errors, (unsigned long)s.decode_errors);
    kube_watcher_stop(watcher);
    size_t m = col_mark(&col);
    svc(0, "after-stop", "1");
    usleep(300000);
    ck_assert_uint_eq(col_mark(&col), m);
    kube_watcher_free(watcher);
    watcher = NULL;
}
END_TEST

int main(void)
{
    if (!tl_fk_init(&fx, "kube"))
        return 1;
    pthread_mutex_init(&col.mu, NULL);
    pthread_cond_init(&col.cv, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    Suite *s = suite_create("kube");
    TCase *tc = tcase_create("kubeconfig");
    tcase_add_test(tc, test_kubeconfig_good);
    tcase_add_test(tc, test_kubeconfig_bad);
    tcase_add_test(tc, test_in_cluster);
    suite_add_tcase(s, tc);
    tc = tcase_create("watch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_setup);
    tcase_add_test(tc, test_initial_sync);
    tcase_add_test(tc, test_watch_events);
    tcase_add_test(tc, test_relist_after_compact);
    tcase_add_test(tc, test_relist_continue_expired);
    tcase_add_test(tc, test_disconnect_resumes);
    tcase_add_test(tc, test_throttled_429_honours_retry_after);
    tcase_add_test(tc, test_watch_empty_200_backs_off);
    tcase_add_test(tc, test_bookmarks);
    tcase_add_test(tc, test_malformed_line);
    tcase_add_test(tc, test_token_rotation);
    tcase_add_test(tc, test_wrong_ca);
    tcase_add_test(tc, test_client_cert);
    tcase_add_test(tc, test_remove_readd);
    tcase_add_test(tc, test_bad_object_refused_alone);
    tcase_add_test(tc, test_recreated_cluster_relist_applies_new_content);
    tcase_add_test(tc, test_endless_list_abandoned);
    tcase_add_test(tc, test_rbac_chart_roles_and_optional_403);
    tcase_add_test(tc, test_stop);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    if (watcher)
        kube_watcher_free(watcher);
    if (!tl_fk_cleanup(&fx))
        failed++;
    free(col.r);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
