/*
 * rootcert.c - publishes the CA's root as the ConfigMap istio-ca-root-cert
 * (key root-cert.pem) in every namespace of the local cluster, as istiod's
 * namespace controller does: workloads and ztunnels read it to trust
 * certificates the CA signs (docs/ca.md).
 *
 * What exists comes from watches, never from reads of our own: the local
 * cluster's Namespaces and its ConfigMaps named istio-ca-root-cert (one
 * list+watch with a field selector). A pass compares them with the root in
 * memory, so it sends nothing when everything is up to date. It runs every
 * two seconds or when something changed, once both watches listed and
 * only while this replica holds the lease. A missing ConfigMap is created
 * (labelled istio.io/config=true), one with other data in root-cert.pem is
 * replaced (its other keys and labels kept, with its resourceVersion, so a
 * concurrent change gets 409 and the next pass sees it), a deleted one
 * comes back. Like istiod, kube-public, kube-node-lease and
 * local-path-storage are left alone (kube-system is not: ztunnel may run
 * there), and a namespace going away (404, or 403 NamespaceTerminating) is
 * skipped quietly.
 */
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RC_NAME "istio-ca-root-cert"
#define RC_KEY "root-cert.pem"
#define RC_PERIOD_S 2
#define RC_FORBIDDEN_RETRY_S 300

struct ctl_rootcert {
    ctl_status_t *leader; /* borrowed: whose lease says who writes */
    kube_conn_t conn;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, kick;
    char *root;         /* the PEM to publish; NULL until the CA is loaded */
    json_int_t gen;     /* counts root changes */
    json_t *namespaces; /* name -> true */
    json_t *cms;        /* namespace -> the ConfigMap as last seen */
    json_t *refused;    /* namespace -> gen: not retried until a change */
    bool ns_synced, cm_synced;
    json_int_t forbidden_gen; /* a 403 for this root: stop until it changes */
    time_t forbidden_at;
    ctl_ratelog_t *errlog;
};

bool ctl_rootcert_skipped(const char *ns)
{
    static const char *const skip[] = {"kube-public", "kube-node-lease", "local-path-storage"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (strcmp(ns, skip[i]) == 0)
            return true;
    return false;
}

json_t *ctl_rootcert_desired(const json_t *cm, const char *ns, const char *root)
{
    if (!cm)
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
                         "ConfigMap", "metadata", "name", RC_NAME, "namespace", ns, "labels",
                         "istio.io/config", "true", "data", RC_KEY, root);
    json_t *data = json_object_get(cm, "data");
    const char *cur = json_string_value(json_object_get(data, RC_KEY));
    if (cur && strcmp(cur, root) == 0)
        return NULL;
    json_t *out = json_deep_copy(cm);
    if (!out)
        return NULL;
    if (!json_is_object(json_object_get(out, "data")))
        json_object_set_new(out, "data", json_object());
    json_object_set_new(json_object_get(out, "data"), RC_KEY, json_string(root));
    json_object_set_new(out, "apiVersion", json_string("v1"));
    json_object_set_new(out, "kind", json_string("ConfigMap"));
    return out;
}

static void kick_locked(ctl_rootcert_t *r)
{
    r->kick = true;
    pthread_cond_signal(&r->cond);
}

void ctl_rootcert_namespace(ctl_rootcert_t *r, const char *ns, bool deleted)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    if (deleted) {
        json_object_del(r->namespaces, ns);
        json_object_del(r->cms, ns);
        json_object_del(r->refused, ns);
    } else if (!json_object_get(r->namespaces, ns)) {
        json_object_set_new(r->namespaces, ns, json_true());
        json_object_del(r->refused, ns);
        kick_locked(r);
    }
    pthread_mutex_unlock(&r->lock);
}

void ctl_rootcert_configmap(ctl_rootcert_t *r, const char *ns, const json_t *cm)
{
    if (!r || !ns)
        return;
    pthread_mutex_lock(&r->lock);
    if (cm)
        json_object_set_new(r->cms, ns, json_deep_copy(cm));
    else
        json_object_del(r->cms, ns);
    json_object_del(r->refused, ns);
    kick_locked(r);
    pthread_mutex_unlock(&r->lock);
}

void ctl_rootcert_synced(ctl_rootcert_t *r, kube_res_t res)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    if (res == KUBE_RES_NAMESPACES)
        r->ns_synced = true;
    else if (res == KUBE_RES_ROOT_CERTS)
        r->cm_synced = true;
    kick_locked(r);
    pthread_mutex_unlock(&r->lock);
}

void ctl_rootcert_set_root(ctl_rootcert_t *r, const char *pem)
{
    if (!r || !pem)
        return;
    pthread_mutex_lock(&r->lock);
    if (!r->root || strcmp(r->root, pem) != 0) {
        char *p = strdup(pem);
        if (p) {
            free(r->root);
            r->root = p;
            r->gen++;
            kick_locked(r);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* The namespaces whose ConfigMap differs from what it should be: an array
 * of [namespace, object to send, whether it is new]. Under the lock. */
static json_t *plan_locked(ctl_rootcert_t *r)
{
    json_t *work = json_array();
    const char *ns;
    json_t *v;
    json_object_foreach(r->namespaces, ns, v)
    {
        if (ctl_rootcert_skipped(ns))
            continue;
        json_t *refused = json_object_get(r->refused, ns);
        if (refused && json_integer_value(refused) == r->gen)
            continue;
        json_t *cm = json_object_get(r->cms, ns);
        json_t *want = ctl_rootcert_desired(cm, ns, r->root);
        if (want)
            json_array_append_new(work, json_pack("[s, o, b]", ns, want, cm == NULL));
    }
    return work;
}

/* Whether a 403 Status says the namespace is being deleted (a cause's type
 * is its "reason" on the wire). */
static bool terminating(const json_t *status)
{
    json_t *causes = json_object_get(json_object_get(status, "details"), "causes");
    size_t i;
    json_t *c;
    json_array_foreach(causes, i, c)
    {
        const char *t = json_string_value(json_object_get(c, "reason"));
        if (t && strcmp(t, "NamespaceTerminating") == 0)
            return true;
    }
    return false;
}

typedef enum rc_outcome {
    RC_WRITTEN,
    RC_GONE,      /* namespace (or ConfigMap) going away, or exists already: wait for the watch */
    RC_RETRY,     /* transport, 409 Conflict, 429, 5xx: next pass */
    RC_REFUSED,   /* other 4xx: not retried until something changes */
    RC_FORBIDDEN, /* RBAC: stop writing */
} rc_outcome_t;

static rc_outcome_t write_one(ctl_rootcert_t *r, const char *ns, json_t *obj, bool create,
                              json_t **stored)
{
    char path[512], err[CTL_ERRLEN] = "";
    if (create)
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", ns);
    else
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns, RC_NAME);
    char *body = json_dumps(obj, JSON_COMPACT);
    char *resp = NULL;
    long code = 0;
    int rc = body ? kube_request(&r->conn, create ? "POST" : "PUT", path, NULL, body, &code, &resp,
                                 err, sizeof(err))
                  : -1;
    free(body);
    json_t *answer = resp ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    rc_outcome_t out;
    if (rc == 0 && code / 100 == 2) {
        atomic_fetch_add(&ctl_metrics.root_cert_writes, 1);
        *stored = answer;
        return RC_WRITTEN;
    }
    if (rc == 0 && (code == 404 || (code == 409 && create) || (code == 403 && terminating(answer))))
        out = RC_GONE;
    else if (rc < 0 || code == 409 || code == 429 || code >= 500 || code == 0)
        out = RC_RETRY;
    else if (code == 403)
        out = RC_FORBIDDEN;
    else
        out = RC_REFUSED;
    if (out != RC_GONE) {
        char key[64], msg[CTL_ERRLEN + 600];
        const char *why = json_string_value(json_object_get(answer, "message"));
        atomic_fetch_add(&ctl_metrics.root_cert_errors, 1);
        snprintf(key, sizeof(key), "rootcert %ld", rc < 0 ? 0L : code);
        if (rc < 0)
            snprintf(msg, sizeof(msg), "ConfigMap %s/%s: %s: %s", ns, RC_NAME,
                     create ? "create" : "update", err);
        else
            snprintf(msg, sizeof(msg), "ConfigMap %s/%s: %s: HTTP %ld: %.400s%s", ns, RC_NAME,
                     create ? "create" : "update", code, why ? why : "refused",
                     out == RC_FORBIDDEN ? " (does meshfed's ClusterRole grant configmaps create "
                                           "and update? not retried for 5 minutes)"
                                         : "");
        ctl_ratelog(r->errlog, time(NULL), CTL_WARN, key, msg);
    }
    json_decref(answer);
    return out;
}

static const char *rv_of(const json_t *cm)
{
    return json_string_value(json_object_get(json_object_get(cm, "metadata"), "resourceVersion"));
}

/* Whether the cached ConfigMap is still the one a write started from
 * (none for a create). */
static bool same_version(const json_t *cached, const json_t *sent)
{
    const char *a = rv_of(cached), *b = rv_of(sent);
    if (!cached)
        return !b;
    return a && b && strcmp(a, b) == 0;
}

static void pass(ctl_rootcert_t *r, json_t *work, json_int_t gen)
{
    int created = 0, updated = 0;
    size_t i;
    json_t *w;
    json_array_foreach(work, i, w)
    {
        const char *ns = json_string_value(json_array_get(w, 0));
        bool create = json_is_true(json_array_get(w, 2));
        json_t *stored = NULL;
        rc_outcome_t o = write_one(r, ns, json_array_get(w, 1), create, &stored);
        pthread_mutex_lock(&r->lock);
        bool stop = r->stop;
        if (o == RC_WRITTEN) {
            /* until the watch brings it, the answer is what exists; unless
             * the watch already brought a later version */
            if (json_object_get(r->namespaces, ns) && json_is_object(stored) &&
                same_version(json_object_get(r->cms, ns), json_array_get(w, 1)))
                json_object_set(r->cms, ns, stored);
            if (create)
                created++;
            else
                updated++;
        } else if (o == RC_GONE || o == RC_REFUSED) {
            json_object_set_new(r->refused, ns, json_integer(gen));
        } else if (o == RC_FORBIDDEN) {
            r->forbidden_gen = gen;
            r->forbidden_at = time(NULL);
            stop = true;
        }
        pthread_mutex_unlock(&r->lock);
        json_decref(stored);
        if (stop)
            break;
    }
    if (created || updated)
        ctl_log(CTL_INFO, "ConfigMaps %s: %d created, %d updated with the CA's root", RC_NAME,
                created, updated);
}

static void *rootcert_thread(void *arg)
{
    ctl_rootcert_t *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += RC_PERIOD_S;
        while (!r->stop && !r->kick && pthread_cond_timedwait(&r->cond, &r->lock, &ts) == 0)
            ;
        r->kick = false;
        if (r->stop)
            break;
        if (r->forbidden_gen == r->gen && time(NULL) - r->forbidden_at < RC_FORBIDDEN_RETRY_S)
            continue;
        if (!r->root || !r->ns_synced || !r->cm_synced || !ctl_status_leading(r->leader))
            continue;
        json_t *work = plan_locked(r);
        json_int_t gen = r->gen;
        pthread_mutex_unlock(&r->lock);
        if (json_array_size(work) > 0)
            pass(r, work, gen);
        json_decref(work);
        ctl_ratelog_flush(r->errlog, time(NULL));
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

ctl_rootcert_t *ctl_rootcert_start(const kube_conn_t *conn, ctl_status_t *leader, char *err,
                                   size_t errlen)
{
    ctl_rootcert_t *r = calloc(1, sizeof(*r));
    if (!r || kube_conn_copy(&r->conn, conn) < 0) {
        snprintf(err, errlen, "out of memory");
        free(r);
        return NULL;
    }
    r->leader = leader;
    r->namespaces = json_object();
    r->cms = json_object();
    r->refused = json_object();
    r->errlog = ctl_ratelog_new(60, 64);
    r->forbidden_gen = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (!r->namespaces || !r->cms || !r->refused ||
        pthread_create(&r->thread, NULL, rootcert_thread, r) != 0) {
        snprintf(err, errlen, "cannot start the %s publisher", RC_NAME);
        ctl_rootcert_stop(r);
        return NULL;
    }
    r->started = true;
    return r;
}

void ctl_rootcert_stop(ctl_rootcert_t *r)
{
    if (!r)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->lock);
        r->stop = true;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
    }
    kube_conn_free(&r->conn);
    free(r->root);
    json_decref(r->namespaces);
    json_decref(r->cms);
    json_decref(r->refused);
    ctl_ratelog_free(r->errlog);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}
