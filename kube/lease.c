/*
 * lease.c - leader election on a coordination.k8s.io/v1 Lease, with
 * client-go's semantics (tryAcquireOrRenew, ReleaseOnCancel).
 *
 * One thread per candidate loops: GET the lease (create it when absent),
 * take it with a PUT carrying the resourceVersion it read when it is free,
 * expired or already ours, so that of two candidates racing only one PUT
 * succeeds (the other gets 409 Conflict). Expiry is judged by the local
 * monotonic time at which the record was last seen to change, which needs
 * no clock agreement between candidates.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube_int.h"

#define KUBE_LEASE_JITTER 1.2 /* client-go's JitterFactor for acquire retries */

typedef enum { KUBE_TRY_FAIL, KUBE_TRY_OURS, KUBE_TRY_OTHER } kube_try_t;

struct kube_lease {
    kube_conn_t conn;
    char *path; /* .../namespaces/NS/leases/NAME */
    char *coll; /* .../namespaces/NS/leases */
    char *name, *identity;
    int lease_ms, renew_ms, retry_ms;
    kube_lease_fn fn;
    void *arg;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool leading;
    pthread_mutex_t mu; /* stop wake-ups */
    pthread_cond_t cv;
    /* lease thread only */
    json_t *observed;     /* the lease as last read or written */
    char *observed_spec;  /* its spec, serialized with sorted keys */
    uint64_t observed_ms; /* when observed_spec last changed */
    uint64_t last_ok_ms;  /* when the last successful acquire/renew was sent */
    unsigned seed;
};

/* RFC 3339 with microseconds, as metav1.MicroTime marshals. */
static void kube_micro_time(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%06ldZ", day, ts.tv_nsec / 1000);
}

/* ---------- one try ---------- */

/* The request timeout: the time left until deadline_ms (0: the default). */
static long kube_lease_timeout(uint64_t deadline_ms)
{
    if (!deadline_ms)
        return KUBE_REQUEST_TIMEOUT_MS;
    uint64_t now = kube_now_ms();
    if (now >= deadline_ms)
        return 1;
    uint64_t left = deadline_ms - now;
    return left < KUBE_REQUEST_TIMEOUT_MS ? (long)left : KUBE_REQUEST_TIMEOUT_MS;
}

/* A request whose response is parsed into *obj (NULL if not JSON). Returns
 * the HTTP status, or 0 on transport failure. */
static long kube_lease_call(kube_lease_t *l, const char *method, const char *path,
                            const json_t *body, uint64_t deadline_ms, bool cancellable,
                            json_t **obj)
{
    char err[512], *resp = NULL, *data = NULL;
    long status = 0;
    *obj = NULL;
    if (body && !(data = json_dumps(body, JSON_COMPACT)))
        return 0;
    if (kube_request_ex(&l->conn, method, path, NULL, data, kube_lease_timeout(deadline_ms),
                        cancellable ? &l->stop : NULL, &status, &resp, err, sizeof(err)) == 0)
        *obj = json_loads(resp, 0, NULL);
    else
        status = 0;
    free(data);
    free(resp);
    return status;
}

/* The spec this candidate writes; acquire_time NULL means now. */
static json_t *kube_lease_spec(const char *holder, int dur_s, const char *acquire_time,
                               json_int_t transitions)
{
    char now[64];
    kube_micro_time(now, sizeof(now));
    return json_pack("{s:s, s:i, s:s, s:s, s:I}", "holderIdentity", holder, "leaseDurationSeconds",
                     dur_s, "acquireTime", acquire_time ? acquire_time : now, "renewTime", now,
                     "leaseTransitions", transitions);
}

/* Records what the server said the lease now is. observed_ms moves only when
 * the spec changed: a holder that keeps renewing keeps its lease alive. */
static void kube_lease_observe(kube_lease_t *l, json_t *obj, uint64_t now)
{
    char *spec =
        json_dumps(json_object_get(obj, "spec"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!spec || !l->observed_spec || strcmp(spec, l->observed_spec) != 0) {
        free(l->observed_spec);
        l->observed_spec = spec;
        l->observed_ms = now;
    } else {
        free(spec);
    }
    json_decref(l->observed);
    l->observed = json_incref(obj);
}

static int kube_lease_dur_s(kube_lease_t *l)
{
    return (l->lease_ms + 999) / 1000; /* the field is whole seconds */
}

/* The lease is absent: create it. */
static kube_try_t kube_lease_create(kube_lease_t *l, uint64_t now, uint64_t deadline_ms)
{
    json_t *obj = json_pack("{s:s, s:s, s:{s:s}, s:o}", "apiVersion", "coordination.k8s.io/v1",
                            "kind", "Lease", "metadata", "name", l->name, "spec",
                            kube_lease_spec(l->identity, kube_lease_dur_s(l), NULL, 0));
    json_t *resp = NULL;
    long st = obj ? kube_lease_call(l, "POST", l->coll, obj, deadline_ms, true, &resp) : 0;
    json_decref(obj);
    kube_try_t r = KUBE_TRY_FAIL; /* 409: another candidate created it first */
    if ((st == 200 || st == 201) && json_is_object(resp)) {
        kube_lease_observe(l, resp, now);
        r = KUBE_TRY_OURS;
    }
    json_decref(resp);
    return r;
}

/* client-go's tryAcquireOrRenew. now is when the try started. */
static kube_try_t kube_lease_try(kube_lease_t *l, uint64_t deadline_ms)
{
    uint64_t now = kube_now_ms();
    json_t *cur = NULL, *resp = NULL;
    long st = kube_lease_call(l, "GET", l->path, NULL, deadline_ms, true, &cur);
    if (st == 404) {
        json_decref(cur);
        return kube_lease_create(l, now, deadline_ms);
    }
    if (st != 200 || !json_is_object(cur)) {
        json_decref(cur);
        return KUBE_TRY_FAIL;
    }
    kube_lease_observe(l, cur, now);
    json_t *spec = json_object_get(cur, "spec");
    const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
    json_int_t dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    json_int_t trans = json_integer_value(json_object_get(spec, "leaseTransitions"));
    bool ours = holder && strcmp(holder, l->identity) == 0;
    if (dur <= 0)
        dur = kube_lease_dur_s(l);
    if (holder && *holder && !ours && l->observed_ms + (uint64_t)dur * 1000 > now) {
        json_decref(cur);
        return KUBE_TRY_OTHER;
    }
    const char *acq = json_string_value(json_object_get(spec, "acquireTime"));
    json_t *ns = kube_lease_spec(l->identity, kube_lease_dur_s(l), ours ? acq : NULL,
                                 ours ? trans : trans + 1);
    json_t *put = json_deep_copy(cur); /* keeps metadata.resourceVersion */
    kube_try_t r = KUBE_TRY_FAIL;      /* 409: another candidate won the race */
    if (ns && put && json_object_set_new(put, "spec", ns) == 0) {
        ns = NULL;
        st = kube_lease_call(l, "PUT", l->path, put, deadline_ms, true, &resp);
        if (st == 200 && json_is_object(resp)) {
            kube_lease_observe(l, resp, now);
            r = KUBE_TRY_OURS;
        }
    }
    json_decref(ns);
    json_decref(put);
    json_decref(resp);
    json_decref(cur);
    return r;
}

/* ReleaseOnCancel: hand the lease back if the last record we saw is ours.
 * The stop may have cut short a renewal the server had already applied, so
 * on 409 the lease is read again and released from that record if it is
 * still ours; a 409 from someone else holding it is fine. */
static void kube_lease_release(kube_lease_t *l)
{
    uint64_t deadline = kube_now_ms() + (uint64_t)l->renew_ms;
    json_t *rec = json_incref(l->observed);
    for (int attempt = 0; attempt < 2 && rec; attempt++) {
        json_t *spec = json_object_get(rec, "spec");
        const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
        if (!holder || strcmp(holder, l->identity) != 0)
            break;
        json_int_t trans = json_integer_value(json_object_get(spec, "leaseTransitions"));
        json_t *put = json_deep_copy(rec), *resp = NULL;
        long st = 0;
        if (put && json_object_set_new(put, "spec", kube_lease_spec("", 1, NULL, trans)) == 0)
            st = kube_lease_call(l, "PUT", l->path, put, deadline, false, &resp);
        json_decref(put);
        json_decref(resp);
        json_decref(rec);
        rec = NULL;
        if (st == 409)
            kube_lease_call(l, "GET", l->path, NULL, deadline, false, &rec);
    }
    json_decref(rec);
}

/* ---------- the thread ---------- */

/* Sleeps ms unless stopped first. Returns whether to go on. */
static bool kube_lease_sleep(kube_lease_t *l, uint64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&l->mu);
    while (!atomic_load(&l->stop) && pthread_cond_timedwait(&l->cv, &l->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&l->mu);
    return !atomic_load(&l->stop);
}

static void kube_lease_set(kube_lease_t *l, bool leading)
{
    if (atomic_load(&l->leading) == leading)
        return;
    atomic_store(&l->leading, leading);
    l->fn(l->arg, leading);
}

/* One round: try, update leadership, return how long to wait. A leader
 * retries every retry period until renew_deadline after its last good
 * renewal; a follower waits a jittered retry period, so candidates do not
 * keep colliding. */
static uint64_t kube_lease_round(kube_lease_t *l)
{
    bool leading = atomic_load(&l->leading);
    uint64_t deadline = leading ? l->last_ok_ms + (uint64_t)l->renew_ms : 0;
    uint64_t sent = kube_now_ms();
    if (leading && sent >= deadline) {
        kube_lease_set(l, false);
        return 0;
    }
    kube_try_t r = kube_lease_try(l, deadline);
    if (atomic_load(&l->stop))
        return 0; /* an aborted request says nothing about the lease */
    if (r == KUBE_TRY_OURS) {
        l->last_ok_ms = sent;
        kube_lease_set(l, true);
        return (uint64_t)l->retry_ms;
    }
    uint64_t now = kube_now_ms();
    if (leading && (r == KUBE_TRY_OTHER || now >= deadline)) {
        kube_lease_set(l, false); /* someone else holds it, or we ran out of time */
        leading = false;
    }
    if (leading)
        return deadline - now < (uint64_t)l->retry_ms ? deadline - now : (uint64_t)l->retry_ms;
    double f = (double)rand_r(&l->seed) / RAND_MAX;
    return (uint64_t)(l->retry_ms * (1.0 + f * KUBE_LEASE_JITTER));
}

static void *kube_lease_main(void *arg)
{
    kube_lease_t *l = arg;
    while (!atomic_load(&l->stop) && kube_lease_sleep(l, kube_lease_round(l)))
        ;
    /* stop acting as leader before anyone else can take over */
    kube_lease_set(l, false);
    kube_lease_release(l);
    return NULL;
}

/* ---------- public API ---------- */

static char *kube_lease_fmt(const char *ns, const char *name)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", ns,
                     name ? "/" : "", name ? name : "");
    return n > 0 && (size_t)n < sizeof(buf) ? strdup(buf) : NULL;
}

kube_lease_t *kube_lease_new_ms(const kube_conn_t *c, const char *ns, const char *name,
                                const char *identity, int lease_duration_ms, int renew_deadline_ms,
                                int retry_period_ms)
{
    if (!c || !c->server || !ns || !*ns || !name || !*name || !identity || !*identity ||
        retry_period_ms <= 0 || renew_deadline_ms <= KUBE_LEASE_JITTER * retry_period_ms ||
        lease_duration_ms <= renew_deadline_ms || strpbrk(ns, "/?#%") || strpbrk(name, "/?#%"))
        return NULL;
    kube_lease_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* paired with the cleanup in kube_lease_free */
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    l->lease_ms = lease_duration_ms;
    l->renew_ms = renew_deadline_ms;
    l->retry_ms = retry_period_ms;
    l->seed = (unsigned)kube_now_ms() ^ (unsigned)(uintptr_t)l;
    l->path = kube_lease_fmt(ns, name);
    l->coll = kube_lease_fmt(ns, NULL);
    l->name = strdup(name);
    l->identity = strdup(identity);
    if (kube_conn_copy(&l->conn, c) < 0 || !l->path || !l->coll || !l->name || !l->identity) {
        kube_lease_free(l);
        return NULL;
    }
    return l;
}

kube_lease_t *kube_lease_new(const kube_conn_t *c, const char *ns, const char *name,
                             const char *identity, int lease_duration_s, int renew_deadline_s,
                             int retry_period_s)
{
    if (lease_duration_s > 1000000 || renew_deadline_s > 1000000 || retry_period_s > 1000000)
        return NULL;
    return kube_lease_new_ms(c, ns, name, identity, lease_duration_s * 1000,
                             renew_deadline_s * 1000, retry_period_s * 1000);
}

int kube_lease_start(kube_lease_t *l, kube_lease_fn fn, void *arg)
{
    if (!l || !fn || l->started)
        return -1;
    l->fn = fn;
    l->arg = arg;
    atomic_store(&l->stop, false);
    if (pthread_create(&l->thread, NULL, kube_lease_main, l) != 0)
        return -1;
    l->started = true;
    return 0;
}

bool kube_lease_leading(kube_lease_t *l)
{
    return l && atomic_load(&l->leading);
}

void kube_lease_stop(kube_lease_t *l)
{
    if (!l || !l->started)
        return;
    pthread_mutex_lock(&l->mu);
    atomic_store(&l->stop, true);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->started = false;
}

void kube_lease_free(kube_lease_t *l)
{
    if (!l)
        return;
    kube_lease_stop(l);
    kube_conn_free(&l->conn);
    json_decref(l->observed);
    free(l->observed_spec);
    free(l->path);
    free(l->coll);
    free(l->name);
    free(l->identity);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
    curl_global_cleanup();
}
