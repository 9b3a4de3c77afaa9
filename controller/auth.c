/*
 * auth.c - authenticates xDS clients the way istiod does for ztunnel: the
 * proxy's Kubernetes service-account token is checked with a TokenReview on
 * the API server of the cluster it claims (the local one or a remote one
 * from the remote Secrets), and status.user.username
 * ("system:serviceaccount:<ns>:<sa>") is its identity. See docs/security.md.
 *
 * The xDS server calls ctl_auth_authenticate on its own threads with its
 * lock held, so nothing here blocks there: reviews are queued for a couple
 * of worker threads. Answers are cached (60 s, failures 5 s) so that a
 * reconnecting fleet costs the API servers one review per token, not per
 * stream. Tokens never reach a log line nor an error message.
 */
#include "base.h"
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define AUTH_THREADS 2
#define AUTH_MAX_QUEUE 4096
#define AUTH_CACHE_SLOTS 4096
#define AUTH_TTL_OK_MS 60000
#define AUTH_TTL_FAIL_MS 5000
#define SA_PREFIX "system:serviceaccount:"

typedef struct job {
    struct job *next;
    char *cluster, *token;
    xds_auth_purpose_t purpose;
    xds_auth_done_fn done;
    void *done_arg;
    uint64_t h;
} job_t;

/* One cached answer. The token itself is kept (and compared in constant
 * time): a 64-bit hash alone could be collided into someone else's entry. */
typedef struct centry {
    uint64_t h, expires_ms;
    char *cluster, *token;
    xds_auth_result_t r;
    char *identity, *msg, *pod_name, *pod_uid;
} centry_t;

struct ctl_auth {
    ctl_conn_fn conn_of;
    void *conn_arg;
    json_t *audiences; /* array of strings */
    char *allowed;     /* comma list of ns/sa patterns, NULL: any */
    uint64_t seed;
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t cv;
    job_t *head, *tail;
    size_t njobs;
    bool stopping;
    pthread_t thr[AUTH_THREADS];
    int nthr;
    centry_t cache[AUTH_CACHE_SLOTS];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Keyed hash of cluster and token (the NUL between them a separator): picks
 * a cache slot. */
static uint64_t key_hash(uint64_t seed, const char *cluster, const char *token)
{
    uint64_t h = base_hash_more(seed, cluster, strlen(cluster) + 1);
    return base_hash_more(h, token, strlen(token));
}

static bool ct_equal(const char *a, const char *b)
{
    size_t n = strlen(a);
    if (n != strlen(b))
        return false;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static void centry_clear(centry_t *e)
{
    free(e->cluster);
    wipe_free(e->token);
    free(e->identity);
    free(e->msg);
    free(e->pod_name);
    free(e->pod_uid);
    memset(e, 0, sizeof(*e));
}

static void job_free(job_t *j)
{
    free(j->cluster);
    wipe_free(j->token);
    free(j);
}

/* ---------- identities ---------- */

/* One pattern "ns/sa" (either side may be "*") against ns and sa. */
static bool pattern_matches(const char *p, size_t n, const char *ns, const char *sa)
{
    const char *slash = memchr(p, '/', n);
    if (!slash)
        return false;
    size_t nl = (size_t)(slash - p), sl = n - nl - 1;
    bool ns_ok = (nl == 1 && p[0] == '*') || (strlen(ns) == nl && memcmp(p, ns, nl) == 0);
    bool sa_ok =
        (sl == 1 && slash[1] == '*') || (strlen(sa) == sl && memcmp(slash + 1, sa, sl) == 0);
    return ns_ok && sa_ok;
}

bool ctl_auth_identity_allowed(const char *patterns, const char *ns, const char *sa)
{
    if (!patterns || !*patterns)
        return true;
    for (const char *p = patterns; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n && pattern_matches(p, n, ns, sa))
            return true;
        p += n;
    }
    return false;
}

int ctl_auth_check_patterns(const char *patterns, char *err, size_t errlen)
{
    for (const char *p = patterns ? patterns : ""; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        const char *slash = n ? memchr(p, '/', n) : NULL;
        if (n && (!slash || slash == p || slash == p + n - 1 ||
                  memchr(slash + 1, '/', (size_t)(p + n - slash - 1)))) {
            snprintf(err, errlen, "\"%.*s\" is not namespace/serviceaccount (either may be *)",
                     (int)n, p);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* ---------- the TokenReview ---------- */

/* What a TokenReview proved, for any purpose: whether the identity may
 * also read xDS is decided when answering (xds-allowed-identities). */
typedef struct answer {
    xds_auth_result_t r;
    char identity[512];
    char msg[600];
    char pod_name[254], pod_uid[128]; /* "" when the token is not bound to a pod */
} answer_t;

static void set_answer(answer_t *a, xds_auth_result_t r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_answer(answer_t *a, xds_auth_result_t r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    a->r = r;
    vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
    va_end(ap);
}

static char *review_body(const ctl_auth_t *a, const char *token)
{
    json_t *o = json_pack("{s:s, s:s, s:{s:s, s:O}}", "apiVersion", "authentication.k8s.io/v1",
                          "kind", "TokenReview", "spec", "token", token, "audiences", a->audiences);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o); /* jansson frees the token copy; the dump is wiped by the caller */
    return s;
}

bool ctl_auth_audience_ok(const json_t *wanted, const json_t *status)
{
    json_t *got = json_object_get(status, "audiences");
    if (!json_is_array(got))
        return true;
    size_t i, j;
    json_t *g, *w;
    json_array_foreach(got, i, g)
        json_array_foreach(wanted, j, w) if (json_equal(g, w)) return true;
    return false;
}

bool ctl_auth_service_account(const char *user, char *ns, size_t nslen, char *sa, size_t salen)
{
    const char *rest =
        user && strncmp(user, SA_PREFIX, strlen(SA_PREFIX)) == 0 ? user + strlen(SA_PREFIX) : NULL;
    const char *colon = rest ? strchr(rest, ':') : NULL;
    if (!colon || colon == rest || !colon[1] || (size_t)(colon - rest) >= nslen ||
        strlen(colon + 1) >= salen || strchr(colon + 1, ':'))
        return false;
    snprintf(ns, nslen, "%.*s", (int)(colon - rest), rest);
    snprintf(sa, salen, "%s", colon + 1);
    return true;
}

/* Turns a TokenReview status into an answer. */
static void judge(const ctl_auth_t *a, const char *cluster, const json_t *resp, answer_t *out)
{
    json_t *st = json_object_get(resp, "status");
    if (!json_is_true(json_object_get(st, "authenticated"))) {
        const char *e = json_string_value(json_object_get(st, "error"));
        set_answer(out, XDS_AUTH_UNAUTHENTICATED,
                   "token rejected by the API server of cluster %s%s%.200s", cluster, e ? ": " : "",
                   e ? e : "");
        return;
    }
    if (!ctl_auth_audience_ok(a->audiences, st)) {
        set_answer(out, XDS_AUTH_UNAUTHENTICATED,
                   "token is not for an accepted audience "
                   "(xds-auth-audiences)");
        return;
    }
    const char *user = json_string_value(json_object_get(json_object_get(st, "user"), "username"));
    char ns[254], sa[254];
    if (!ctl_auth_service_account(user, ns, sizeof(ns), sa, sizeof(sa))) {
        set_answer(out, XDS_AUTH_DENIED, "identity %.200s of cluster %s is not a service account",
                   user ? user : "(none)", cluster);
        return;
    }
    out->r = XDS_AUTH_OK;
    snprintf(out->identity, sizeof(out->identity), "%s", user);
    json_t *extra = json_object_get(json_object_get(st, "user"), "extra");
    const char *pod = json_string_value(
        json_array_get(json_object_get(extra, "authentication.kubernetes.io/pod-name"), 0));
    const char *uid = json_string_value(
        json_array_get(json_object_get(extra, "authentication.kubernetes.io/pod-uid"), 0));
    if (pod && uid && strlen(pod) < sizeof(out->pod_name) && strlen(uid) < sizeof(out->pod_uid)) {
        snprintf(out->pod_name, sizeof(out->pod_name), "%s", pod);
        snprintf(out->pod_uid, sizeof(out->pod_uid), "%s", uid);
    }
}

static void review(ctl_auth_t *a, const char *cluster, const char *token, answer_t *out)
{
    kube_conn_t conn;
    if (a->conn_of(a->conn_arg, cluster, &conn) < 0) {
        set_answer(out, XDS_AUTH_UNAUTHENTICATED,
                   "unknown cluster \"%.200s\": no API server to verify the token with", cluster);
        return;
    }
    char *body = review_body(a, token), *resp = NULL, err[256] = "";
    long status = 0;
    int rc = body ? kube_request(&conn, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", NULL,
                                 body, &status, &resp, err, sizeof(err))
                  : -1;
    wipe_free(body);
    kube_conn_free(&conn);
    atomic_fetch_add(&ctl_metrics.auth_reviews, 1);
    json_t *j = rc == 0 && (status == 200 || status == 201) ? json_loads(resp, 0, NULL) : NULL;
    if (!j) {
        atomic_fetch_add(&ctl_metrics.auth_errors, 1);
        /* 401/403: our own credentials for that cluster lack the
         * tokenreviews create permission (system:auth-delegator) */
        ctl_log(CTL_WARN, "cluster %s: TokenReview failed: %s%s", cluster, rc < 0 ? err : "HTTP ",
                rc < 0                             ? ""
                : (status == 401 || status == 403) ? "401/403 (can meshfed create tokenreviews?)"
                                                   : "error or unreadable answer");
        set_answer(out, XDS_AUTH_UNAVAILABLE, "cannot verify the token with cluster %s now",
                   cluster);
    } else {
        judge(a, cluster, j, out);
    }
    json_decref(j);
    wipe_free(resp); /* the answer echoes spec.token */
}

/* ---------- cache ---------- */

/* A fresh cached answer for (cluster, token) copied to out. Under a->mu. */
static bool cache_get(ctl_auth_t *a, uint64_t h, const char *cluster, const char *token,
                      answer_t *out)
{
    centry_t *e = &a->cache[h % AUTH_CACHE_SLOTS];
    if (!e->token || e->h != h || strcmp(e->cluster, cluster) != 0 || !ct_equal(e->token, token))
        return false;
    if (e->expires_ms <= now_ms()) {
        centry_clear(e);
        return false;
    }
    out->r = e->r;
    snprintf(out->identity, sizeof(out->identity), "%s", e->identity ? e->identity : "");
    snprintf(out->msg, sizeof(out->msg), "%s", e->msg ? e->msg : "");
    snprintf(out->pod_name, sizeof(out->pod_name), "%s", e->pod_name ? e->pod_name : "");
    snprintf(out->pod_uid, sizeof(out->pod_uid), "%s", e->pod_uid ? e->pod_uid : "");
    return true;
}

/* Remembers a definite answer (not UNAVAILABLE: that one retries). */
static void cache_put(ctl_auth_t *a, const job_t *j, const answer_t *ans)
{
    if (ans->r == XDS_AUTH_UNAVAILABLE)
        return;
    pthread_mutex_lock(&a->mu);
    centry_t *e = &a->cache[j->h % AUTH_CACHE_SLOTS];
    centry_clear(e);
    e->h = j->h;
    e->expires_ms = now_ms() + (ans->r == XDS_AUTH_OK ? AUTH_TTL_OK_MS : AUTH_TTL_FAIL_MS);
    e->cluster = strdup(j->cluster);
    e->token = strdup(j->token);
    e->r = ans->r;
    e->identity = strdup(ans->identity);
    e->msg = strdup(ans->msg);
    e->pod_name = strdup(ans->pod_name);
    e->pod_uid = strdup(ans->pod_uid);
    if (!e->cluster || !e->token)
        centry_clear(e);
    pthread_mutex_unlock(&a->mu);
}

/* Answers the xDS server; never with a->mu held (it may call back in). An
 * xDS stream's identity must also be one of xds-allowed-identities; any
 * service account may ask the CA for its own certificate. */
static void answer(const ctl_auth_t *a, const char *cluster, xds_auth_purpose_t purpose,
                   xds_auth_done_fn done, void *done_arg, answer_t *ans)
{
    char ns[254], sa[254];
    if (ans->r == XDS_AUTH_OK && purpose == XDS_AUTH_FOR_XDS &&
        ctl_auth_service_account(ans->identity, ns, sizeof(ns), sa, sizeof(sa)) &&
        !ctl_auth_identity_allowed(a->allowed, ns, sa))
        set_answer(ans, XDS_AUTH_DENIED,
                   "service account %s/%s of cluster %s may not connect "
                   "(xds-allowed-identities)",
                   ns, sa, cluster);
    if (ans->r == XDS_AUTH_OK)
        ctl_log(CTL_DEBUG, "%s client authenticated as %s",
                purpose == XDS_AUTH_FOR_CA ? "CA" : "xds", ans->identity);
    else
        ctl_log(CTL_INFO, "%s client rejected: %s", purpose == XDS_AUTH_FOR_CA ? "CA" : "xds",
                ans->msg);
    bool ok = ans->r == XDS_AUTH_OK;
    xds_auth_answer_t out = {.result = ans->r,
                             .identity = ok ? ans->identity : NULL,
                             .msg = ans->msg,
                             .pod_name = ok && ans->pod_name[0] ? ans->pod_name : NULL,
                             .pod_uid = ok && ans->pod_uid[0] ? ans->pod_uid : NULL};
    done(done_arg, &out);
}

/* ---------- workers ---------- */

static void *worker(void *arg)
{
    ctl_auth_t *a = arg;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->head && !a->stopping)
            pthread_cond_wait(&a->cv, &a->mu);
        job_t *j = a->head;
        if (j) {
            a->head = j->next;
            if (!a->head)
                a->tail = NULL;
            a->njobs--;
        }
        bool stopping = a->stopping;
        answer_t ans = {0};
        bool hit = j && cache_get(a, j->h, j->cluster, j->token, &ans); /* a twin was queued */
        pthread_mutex_unlock(&a->mu);
        if (!j)
            return NULL;
        if (stopping && !hit)
            set_answer(&ans, XDS_AUTH_UNAVAILABLE, "meshfed is shutting down");
        else if (!hit) {
            review(a, j->cluster, j->token, &ans);
            cache_put(a, j, &ans);
        }
        answer(a, j->cluster, j->purpose, j->done, j->done_arg, &ans);
        job_free(j);
    }
}

int ctl_auth_authenticate(void *arg, const char *cluster, const char *token,
                          xds_auth_purpose_t purpose, xds_auth_done_fn done, void *done_arg)
{
    ctl_auth_t *a = arg;
    uint64_t h = key_hash(a->seed, cluster, token);
    answer_t ans = {0};
    pthread_mutex_lock(&a->mu);
    bool hit = cache_get(a, h, cluster, token, &ans);
    if (hit)
        atomic_fetch_add(&ctl_metrics.auth_cache_hits, 1);
    else if (a->stopping || a->njobs >= AUTH_MAX_QUEUE)
        set_answer(&ans, XDS_AUTH_UNAVAILABLE, "%s",
                   a->stopping ? "meshfed is shutting down" : "too many authentications pending");
    job_t *j = hit || ans.r != XDS_AUTH_OK ? NULL : calloc(1, sizeof(*j));
    if (j && (!(j->cluster = strdup(cluster)) || !(j->token = strdup(token)))) {
        job_free(j);
        j = NULL;
        set_answer(&ans, XDS_AUTH_UNAVAILABLE, "out of memory");
    }
    if (j) {
        *j = (job_t){NULL, j->cluster, j->token, purpose, done, done_arg, h};
        if (a->tail)
            a->tail->next = j;
        else
            a->head = j;
        a->tail = j;
        a->njobs++;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    if (!j)
        answer(a, cluster, purpose, done, done_arg, &ans); /* synchronously: allowed by xds.h */
    return 0;
}

static json_t *split_list(const char *s)
{
    json_t *arr = json_array();
    for (const char *p = s ? s : ""; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n)
            json_array_append_new(arr, json_stringn(p, n));
        p += n;
    }
    return arr;
}

ctl_auth_t *ctl_auth_new(const ctl_config_t *cfg, ctl_conn_fn conn_of, void *conn_arg, char *err,
                         size_t errlen)
{
    ctl_auth_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "xds-auth: out of memory");
        return NULL;
    }
    a->conn_of = conn_of;
    a->conn_arg = conn_arg;
    a->audiences = split_list(cfg->xds_auth_audiences);
    a->allowed = cfg->xds_allowed_identities && *cfg->xds_allowed_identities
                     ? strdup(cfg->xds_allowed_identities)
                     : NULL;
    if (getrandom(&a->seed, sizeof(a->seed), 0) != sizeof(a->seed))
        a->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)a;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    for (; a->nthr < AUTH_THREADS; a->nthr++)
        if (pthread_create(&a->thr[a->nthr], NULL, worker, a) != 0)
            break;
    if (!a->nthr) {
        snprintf(err, errlen, "xds-auth: cannot start the TokenReview threads");
        ctl_auth_free(a);
        return NULL;
    }
    return a;
}

void ctl_auth_stop(ctl_auth_t *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->nthr; i++)
        pthread_join(a->thr[i], NULL); /* they answer what is queued first */
    a->nthr = 0;
}

void ctl_auth_free(ctl_auth_t *a)
{
    if (!a)
        return;
    ctl_auth_stop(a);
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++)
        centry_clear(&a->cache[i]);
    json_decref(a->audiences);
    free(a->allowed);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
