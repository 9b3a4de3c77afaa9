/*
 * test_lease.c - kube_request and Lease leader election against
 * tests/fakekube/fakekube.py (one HTTPS cluster, test CA made here with the
 * openssl CLI). Durations are short (lease 2 s, renew deadline 1.5 s, retry
 * 0.3 s) and every wait is on a condition with a timeout.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kube.h"
#include "testlib.h"

#define LEASE_MS 2000
#define RENEW_MS 1500
#define RETRY_MS 300
#define LEASE_PATH "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/meshfed"

static tl_fakekube_t fx;

/* POST /fake/<what>. */
static void ctl(const char *what, const char *body)
{
    ck_assert_int_eq(tl_fk_ctl(&fx, 0, what, body), 200);
}

static void conn_with(kube_conn_t *c, const char *token)
{
    tl_fk_conn(&fx, 0, c, "ca.crt", token);
}

static uint64_t now_ms(void)
{
    return tl_now_ns() / 1000000;
}

/* ---------- kube_request ---------- */

/* One request with token tok-admin (never forbidden); returns the status, the body parsed in *out
 * (NULL: not wanted). */
static long req(const char *method, const char *path, const char *ctype, const char *body,
                json_t **out)
{
    kube_conn_t c;
    conn_with(&c, "tok-admin");
    long st = -1;
    char *resp = NULL, err[512];
    int rc = kube_request(&c, method, path, ctype, body, &st, &resp, err, sizeof(err));
    kube_conn_free(&c);
    ck_assert_msg(rc == 0, "%s %s: %s", method, path, err);
    json_t *j = json_loads(resp, 0, NULL);
    free(resp);
    if (out)
        *out = j;
    else
        json_decref(j);
    return st;
}

static const char *str_at(json_t *o, const char *a, const char *b)
{
    json_t *x = json_object_get(o, a);
    return json_string_value(b ? json_object_get(x, b) : x);
}

START_TEST(test_request_crud)
{
    json_t *o;
    ck_assert_int_eq(req("GET", LEASE_PATH, NULL, NULL, &o), 404);
    ck_assert_str_eq(str_at(o, "kind", NULL), "Status");
    ck_assert_str_eq(str_at(o, "reason", NULL), "NotFound");
    json_decref(o);

    const char *create = "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                         "\"metadata\":{\"name\":\"meshfed\"},\"spec\":{\"holderIdentity\":\"x\"}}";
    const char *coll = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    ck_assert_int_eq(req("POST", coll, NULL, create, &o), 201);
    ck_assert_str_eq(str_at(o, "metadata", "namespace"), "kube-system");
    char rv1[32];
    snprintf(rv1, sizeof(rv1), "%s", str_at(o, "metadata", "resourceVersion"));
    json_decref(o);
    ck_assert_int_eq(req("POST", coll, NULL, create, &o), 409);
    ck_assert_str_eq(str_at(o, "reason", NULL), "AlreadyExists");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "code")), 409);
    json_decref(o);

    ck_assert_int_eq(req("GET", LEASE_PATH, NULL, NULL, &o), 200);
    ck_assert_str_eq(str_at(o, "metadata", "resourceVersion"), rv1);
    json_t *spec = json_object_get(o, "spec");
    json_object_set_new(spec, "holderIdentity", json_string("y"));
    char *put = json_dumps(o, 0);
    json_decref(o);
    ck_assert_int_eq(req("PUT", LEASE_PATH, NULL, put, &o), 200); /* rv1 is current */
    char rv2[32];
    snprintf(rv2, sizeof(rv2), "%s", str_at(o, "metadata", "resourceVersion"));
    ck_assert_str_ne(rv2, rv1);
    json_decref(o);
    ck_assert_int_eq(req("PUT", LEASE_PATH, NULL, put, &o), 409); /* rv1 is stale now */
    ck_assert_str_eq(str_at(o, "reason", NULL), "Conflict");
    ck_assert_str_eq(str_at(o, "status", NULL), "Failure");
    json_decref(o);
    free(put);

    ck_assert_int_eq(req("PATCH", LEASE_PATH, "application/merge-patch+json",
                         "{\"metadata\":{\"labels\":{\"a\":\"b\"}},\"spec\":{\"holderIdentity\":"
                         "null}}",
                         &o),
                     200);
    ck_assert_str_eq(str_at(o, "metadata", "labels") ? "" : "labels", "labels");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(o, "metadata"), "labels"), "a")),
                     "b");
    ck_assert_ptr_null(json_object_get(json_object_get(o, "spec"), "holderIdentity"));
    json_decref(o);
    ck_assert_int_eq(req("PATCH", LEASE_PATH, "application/json", "{}", NULL), 415);
    ck_assert_int_eq(req("PATCH", LEASE_PATH "x", "application/merge-patch+json", "{}", NULL), 404);
    ck_assert_int_eq(req("PUT", LEASE_PATH "x", NULL,
                         "{\"metadata\":{\"name\":\"meshfedx\"},\"spec\":{}}", NULL),
                     404);

    ck_assert_int_eq(req("DELETE", LEASE_PATH, NULL, NULL, NULL), 200);
    ck_assert_int_eq(req("DELETE", LEASE_PATH, NULL, NULL, NULL), 404);
    ck_assert_int_eq(req("GET", LEASE_PATH, NULL, NULL, NULL), 404);
}
END_TEST

/* ---------- the status subresource, seen through a watch ---------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int modified;
    char status_x[64];
} ev;

static void on_event(void *arg, const char *cluster, kube_res_t res, kube_ev_t e,
                     const kube_obj_t *o, const char *msg)
{
    (void)arg, (void)cluster, (void)res, (void)msg;
    if (e != KUBE_EV_MODIFIED)
        return;
    json_t *obj = kube_obj_json(o);
    pthread_mutex_lock(&ev.mu);
    ev.modified++;
    snprintf(ev.status_x, sizeof(ev.status_x), "%s",
             json_string_value(json_object_get(json_object_get(obj, "status"), "x")) ?: "");
    json_decref(obj);
    pthread_cond_broadcast(&ev.cv);
    pthread_mutex_unlock(&ev.mu);
}

static bool wait_modified(int want, int ms)
{
    struct timespec dl;
    tl_deadline(&dl, ms);
    pthread_mutex_lock(&ev.mu);
    while (ev.modified < want && pthread_cond_timedwait(&ev.cv, &ev.mu, &dl) != ETIMEDOUT)
        ;
    bool ok = ev.modified >= want;
    pthread_mutex_unlock(&ev.mu);
    return ok;
}

#define SS "/apis/meshfed.io/v1alpha1/servicescopes"

START_TEST(test_request_status)
{
    pthread_mutex_init(&ev.mu, NULL);
    pthread_cond_init(&ev.cv, NULL);
    json_t *o;
    ck_assert_int_eq(req("POST", SS, NULL,
                         "{\"metadata\":{\"name\":\"s\"},\"spec\":{\"rules\":[]},"
                         "\"status\":{\"x\":\"dropped\"}}",
                         &o),
                     201);
    ck_assert_ptr_null(json_object_get(o, "status")); /* create ignores status */
    json_decref(o);

    kube_watcher_t *w = kube_watcher_new(on_event, NULL, "istio-system", 0);
    kube_conn_t c;
    char err[256];
    conn_with(&c, "tok-admin");
    ck_assert_int_eq(kube_watcher_add_cluster(w, "a", &c, KUBE_RES_BIT(KUBE_RES_SERVICESCOPES), err,
                                              sizeof(err)),
                     0);
    kube_conn_free(&c);
    ck_assert_int_eq(kube_watcher_start(w), 0);
    bool synced = false, stale;
    for (uint64_t end = now_ms() + 10000; !synced && now_ms() < end; usleep(20000))
        if (kube_watcher_cluster_status(w, "a", &synced, &stale) < 0)
            synced = false;
    ck_assert(synced);

    /* PUT .../status: only status changes, even if spec differs */
    ck_assert_int_eq(req("PUT", SS "/s/status", NULL,
                         "{\"metadata\":{\"name\":\"s\"},\"spec\":{\"rules\":null},"
                         "\"status\":{\"x\":\"one\"}}",
                         &o),
                     200);
    ck_assert_str_eq(str_at(o, "status", "x"), "one");
    ck_assert(json_is_array(json_object_get(json_object_get(o, "spec"), "rules")));
    json_decref(o);
    ck_assert(wait_modified(1, 5000));
    pthread_mutex_lock(&ev.mu);
    ck_assert_str_eq(ev.status_x, "one");
    pthread_mutex_unlock(&ev.mu);

    /* PATCH .../status */
    ck_assert_int_eq(req("PATCH", SS "/s/status", "application/merge-patch+json",
                         "{\"status\":{\"x\":\"two\"},\"spec\":{\"y\":1}}", &o),
                     200);
    ck_assert_ptr_null(json_object_get(json_object_get(o, "spec"), "y"));
    json_decref(o);
    ck_assert(wait_modified(2, 5000));
    pthread_mutex_lock(&ev.mu);
    ck_assert_str_eq(ev.status_x, "two");
    pthread_mutex_unlock(&ev.mu);

    /* the main resource ignores status */
    ck_assert_int_eq(req("PATCH", SS "/s", "application/merge-patch+json",
                         "{\"status\":{\"x\":\"three\"},\"spec\":{\"y\":1}}", &o),
                     200);
    ck_assert_str_eq(str_at(o, "status", "x"), "two");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "spec"), "y")), 1);
    json_decref(o);
    ck_assert_int_eq(
        req("PUT", SS "/nope/status", NULL, "{\"metadata\":{\"name\":\"nope\"}}", NULL), 404);
    kube_watcher_free(w);
}
END_TEST

START_TEST(test_request_errors)
{
    kube_conn_t c;
    long st;
    char *resp, err[256];
    conn_with(&c, "wrong");
    ck_assert_int_eq(kube_request(&c, "GET", LEASE_PATH, NULL, NULL, &st, &resp, err, sizeof(err)),
                     0);
    ck_assert_int_eq(st, 401);
    ck_assert_ptr_nonnull(strstr(resp, "Unauthorized"));
    free(resp);
    kube_conn_free(&c);
    /* nothing listens on port 1: a transport failure */
    memset(&c, 0, sizeof(c));
    c.server = strdup("https://127.0.0.1:1");
    c.insecure = true;
    ck_assert_int_eq(kube_request(&c, "GET", LEASE_PATH, NULL, NULL, &st, &resp, err, sizeof(err)),
                     -1);
    ck_assert_ptr_null(resp);
    ck_assert_str_ne(err, "");
    kube_conn_free(&c);
}
END_TEST

/* ---------- leader election ---------- */

typedef struct cand {
    const char *id, *token;
    kube_lease_t *l;
    int ntrue, nfalse;
    bool leading;
    uint64_t changed_ms;
} cand_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cand_t c[2];
    int leaders;  /* candidates whose last callback was true */
    bool overlap; /* two leaders at once, ever */
    int calls;
} le = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_lead(void *arg, bool leading)
{
    cand_t *c = arg;
    pthread_mutex_lock(&le.mu);
    ck_assert(c->leading != leading); /* only changes are reported */
    c->leading = leading;
    c->changed_ms = now_ms();
    if (leading) {
        c->ntrue++;
        if (++le.leaders > 1)
            le.overlap = true;
    } else {
        c->nfalse++;
        le.leaders--;
    }
    le.calls++;
    pthread_cond_broadcast(&le.cv);
    pthread_mutex_unlock(&le.mu);
}

static void cand_start(int i)
{
    kube_conn_t c;
    cand_t *cd = &le.c[i];
    conn_with(&c, cd->token);
    cd->l = kube_lease_new_ms(&c, "kube-system", "meshfed", cd->id, LEASE_MS, RENEW_MS, RETRY_MS);
    kube_conn_free(&c);
    ck_assert_ptr_nonnull(cd->l);
    ck_assert_int_eq(kube_lease_start(cd->l, on_lead, cd), 0);
}

static void cand_stop(int i)
{
    kube_lease_free(le.c[i].l);
    le.c[i].l = NULL;
}

/* Waits up to ms for candidate i to be (or not be) leading; -1: any one. */
static int wait_leader(int i, bool leading, int ms)
{
    struct timespec dl;
    tl_deadline(&dl, ms);
    pthread_mutex_lock(&le.mu);
    int who = -1;
    for (;;) {
        for (int k = 0; k < 2 && who < 0; k++)
            if ((i < 0 || i == k) && le.c[k].leading == leading)
                who = k;
        if (who >= 0 || pthread_cond_timedwait(&le.cv, &le.mu, &dl) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&le.mu);
    return who;
}

static json_t *lease_spec(void)
{
    json_t *o;
    ck_assert_int_eq(req("GET", LEASE_PATH, NULL, NULL, &o), 200);
    json_t *s = json_incref(json_object_get(o, "spec"));
    json_decref(o);
    return s;
}

START_TEST(test_lease_one_leader)
{
    ctl("token", "{\"tokens\":[\"tok-admin\",\"tok-a\",\"tok-b\"]}");
    le.c[0] = (cand_t){.id = "cand-0", .token = "tok-a"};
    le.c[1] = (cand_t){.id = "cand-1", .token = "tok-b"};
    cand_start(0);
    cand_start(1);
    int who = wait_leader(-1, true, 5000);
    ck_assert_int_ge(who, 0);
    ck_assert(kube_lease_leading(le.c[who].l));
    /* it keeps the lease across several renewals, and the other never leads */
    uint64_t end = now_ms() + 3 * LEASE_MS / 2;
    ck_assert_int_lt(wait_leader(who, false, 3 * LEASE_MS / 2), 0);
    ck_assert(now_ms() >= end - 50);
    ck_assert(!kube_lease_leading(le.c[1 - who].l));
    json_t *s = lease_spec();
    ck_assert_str_eq(json_string_value(json_object_get(s, "holderIdentity")), le.c[who].id);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "leaseDurationSeconds")), 2);
    const char *rt = json_string_value(json_object_get(s, "renewTime"));
    ck_assert_int_eq(strlen(rt), strlen("2006-01-02T15:04:05.000000Z"));
    ck_assert_int_eq(rt[26], 'Z');
    json_decref(s);
    pthread_mutex_lock(&le.mu);
    ck_assert_int_eq(le.c[who].ntrue, 1);
    ck_assert_int_eq(le.c[1 - who].ntrue, 0);
    ck_assert(!le.overlap);
    pthread_mutex_unlock(&le.mu);
}
END_TEST

START_TEST(test_lease_handover)
{
    int who = wait_leader(-1, true, 100);
    ck_assert_int_ge(who, 0);
    json_t *s = lease_spec();
    json_int_t trans = json_integer_value(json_object_get(s, "leaseTransitions"));
    json_decref(s);
    uint64_t t0 = now_ms();
    cand_stop(who);
    pthread_mutex_lock(&le.mu);
    ck_assert_int_eq(le.c[who].nfalse, 1); /* told before stop returned */
    int calls = le.calls;
    pthread_mutex_unlock(&le.mu);
    /* released: the other takes over well before the lease would expire */
    ck_assert_int_eq(wait_leader(1 - who, true, LEASE_MS), 1 - who);
    uint64_t took = le.c[1 - who].changed_ms - t0;
    fprintf(stderr, "handover after stop: %lu ms\n", (unsigned long)took);
    ck_assert_uint_lt(took, LEASE_MS - 200);
    s = lease_spec();
    ck_assert_str_eq(json_string_value(json_object_get(s, "holderIdentity")), le.c[1 - who].id);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "leaseTransitions")), trans + 1);
    json_decref(s);
    pthread_mutex_lock(&le.mu);
    ck_assert_int_eq(le.calls, calls + 1); /* only the new leader's */
    ck_assert(!le.overlap);
    pthread_mutex_unlock(&le.mu);
    cand_start(who); /* back as a follower for the next test */
}
END_TEST

START_TEST(test_lease_lost_access)
{
    int who = wait_leader(-1, true, 100);
    ck_assert_int_ge(who, 0);
    cand_t *a = &le.c[who], *b = &le.c[1 - who];
    char body[256];
    snprintf(body, sizeof(body), "{\"tokens\":[\"tok-admin\",\"%s\"],\"forbidden\":[\"%s\"]}",
             b->token, a->token);
    uint64_t t0 = now_ms();
    ctl("token", body);
    /* a's renewals fail with 403: it gives up within the renew deadline */
    ck_assert_int_eq(wait_leader(who, false, RENEW_MS + 1500), who);
    uint64_t lost = a->changed_ms - t0;
    ck_assert_uint_le(lost, RENEW_MS + 200);
    /* b takes over once the lease expired (2 s after b last saw it renewed) */
    ck_assert_int_eq(wait_leader(1 - who, true, LEASE_MS + 3000), 1 - who);
    uint64_t took = b->changed_ms - t0;
    fprintf(stderr, "lost after %lu ms, taken over after %lu ms\n", (unsigned long)lost,
            (unsigned long)took);
    ck_assert_uint_ge(b->changed_ms, a->changed_ms);
    ck_assert_uint_ge(took, LEASE_MS - 2 * RETRY_MS); /* not (much) before expiry */
    pthread_mutex_lock(&le.mu);
    ck_assert(!le.overlap);
    pthread_mutex_unlock(&le.mu);
    ck_assert(!kube_lease_leading(a->l));
    ck_assert(kube_lease_leading(b->l));
}
END_TEST

START_TEST(test_lease_no_callbacks_after_stop)
{
    cand_stop(0);
    cand_stop(1);
    pthread_mutex_lock(&le.mu);
    int calls = le.calls;
    ck_assert_int_eq(le.leaders, 0);
    ck_assert(!le.overlap);
    pthread_mutex_unlock(&le.mu);
    /* with the threads joined nothing can call back; give a stray one the
     * chance of several retry periods to show up anyway */
    ck_assert_int_lt(wait_leader(-1, true, 4 * RETRY_MS), 0);
    pthread_mutex_lock(&le.mu);
    ck_assert_int_eq(le.calls, calls);
    pthread_mutex_unlock(&le.mu);
    /* the leader (b, with the good token) released the lease on stop */
    json_t *s = lease_spec();
    ck_assert_str_eq(json_string_value(json_object_get(s, "holderIdentity")), "");
    ck_assert_int_eq(json_integer_value(json_object_get(s, "leaseDurationSeconds")), 1);
    json_decref(s);
}
END_TEST

START_TEST(test_lease_bad_args)
{
    kube_conn_t c;
    conn_with(&c, "tok-a");
    ck_assert_ptr_null(kube_lease_new(&c, "ns", "n", "id", 15, 15, 2));  /* renew !< lease */
    ck_assert_ptr_null(kube_lease_new(&c, "ns", "n", "id", 15, 10, 10)); /* retry too long */
    ck_assert_ptr_null(kube_lease_new(&c, "ns", "n", "", 15, 10, 2));
    ck_assert_ptr_null(kube_lease_new(&c, "ns", "a/b", "id", 15, 10, 2));
    kube_lease_t *l = kube_lease_new(&c, "ns", "n", "id", 15, 10, 2);
    ck_assert_ptr_nonnull(l);
    ck_assert(!kube_lease_leading(l));
    kube_lease_stop(l); /* never started: a no-op */
    kube_lease_free(l);
    kube_conn_free(&c);
}
END_TEST

static void setup(void)
{
    static const char *const clusters[] = {"a"};
    ck_assert(tl_fk_make_certs(&fx));
    ck_assert(tl_fk_start(&fx, "tok-admin", false, clusters, 1));
}

int main(void)
{
    if (!tl_fk_init(&fx, "lease"))
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lease");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_request_crud);
    tcase_add_test(tc, test_request_status);
    tcase_add_test(tc, test_request_errors);
    tcase_add_test(tc, test_lease_bad_args);
    tcase_add_test(tc, test_lease_one_leader);
    tcase_add_test(tc, test_lease_handover);
    tcase_add_test(tc, test_lease_lost_access);
    tcase_add_test(tc, test_lease_no_callbacks_after_stop);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    for (int i = 0; i < 2; i++)
        kube_lease_free(le.c[i].l);
    if (!tl_fk_cleanup(&fx))
        failed++;
    curl_global_cleanup();
    return failed ? 1 : 0;
}
