/*
 * status.c - leader election and ServiceScope .status.
 *
 * Every replica serves xDS; only the holder of the Lease meshfed-leader in
 * the system namespace writes status. The writer wakes every two seconds (or
 * when told that something changed), computes each ServiceScope's status
 * (Accepted condition, services selected per rule) and patches those whose
 * status differs from what it last wrote.
 *
 * The local cluster's AuthorizationPolicies get the condition istiod writes
 * for ztunnel: ZtunnelAccepted, True when a translation is sent, with the
 * translation's warning as reason and message (Accepted, "attached to
 * ztunnel" without one). targetRef policies belong to waypoints and get
 * none, as from istiod. Other clusters' policies are their own control
 * plane's to report.
 */
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ctl_status {
    ctl_t *ctl;
    kube_conn_t conn;
    kube_lease_t *lease;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, kick;
    json_t *objects;  /* ServiceScope name -> {generation, accepted, reason} */
    json_t *written;  /* name -> the status last written */
    json_t *policies; /* AuthorizationPolicy "ns/name" -> generation */
    json_t *pwritten; /* "ns/name" -> the condition last written */
    bool pdirty;      /* a policy changed since the last pass: the conditions
                         depend on the policies alone, not on the pods */
};

static void now_rfc3339(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ctl_status_note(ctl_status_t *s, const char *name, json_int_t generation, bool deleted,
                     const char *invalid_reason)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    if (deleted) {
        json_object_del(s->objects, name);
        json_object_del(s->written, name);
    } else {
        json_object_set_new(s->objects, name,
                            json_pack("{s:I, s:b, s:s?}", "generation", generation, "accepted",
                                      !invalid_reason, "reason", invalid_reason));
    }
    s->kick = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void ctl_status_note_policy(ctl_status_t *s, const char *ns, const char *name, int64_t generation,
                            bool deleted)
{
    char key[512];
    if (!s)
        return;
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    pthread_mutex_lock(&s->lock);
    if (deleted) {
        json_object_del(s->policies, key);
        json_object_del(s->pwritten, key);
    } else {
        json_object_set_new(s->policies, key, json_integer(generation));
    }
    s->pdirty = true;
    s->kick = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* ---------- AuthorizationPolicy conditions ---------- */

typedef struct policy_ctx {
    const char *cluster;
    json_t *conds; /* "ns/name" -> {status, reason, message} */
} policy_ctx_t;

static void policy_info(const model_authz_info_t *i, void *arg)
{
    policy_ctx_t *c = arg;
    if (i->kind != MODEL_KIND_AUTHZ_POLICY || (!i->out && !i->reason))
        return;
    json_object_set_new(c->conds, i->key,
                        json_pack("{s:s, s:s, s:s, s:I}", "status", i->out ? "True" : "False",
                                  "reason", i->reason ? i->reason : MODEL_AUTHZ_ACCEPTED_REASON,
                                  "message", i->message ? i->message : MODEL_AUTHZ_ACCEPTED,
                                  "observedGeneration", (json_int_t)i->generation));
}

static void collect_policies(const model_t *m, void *arg)
{
    policy_ctx_t *c = arg;
    model_each_authz(m, c->cluster, policy_info, c);
}

/* Merge-patches {"status": status} at path (a status subresource) and
 * counts the write: 0 when the API server took it (2xx); else -1 with
 * *code, 0 for a transport failure (then err says why). */
static int patch_status(ctl_status_t *s, const char *path, json_t *status, long *code,
                        char err[CTL_ERRLEN])
{
    json_t *patch = json_pack("{s:O}", "status", status);
    char *body = json_dumps(patch, JSON_COMPACT);
    json_decref(patch);
    char *resp = NULL;
    *code = 0;
    int rc = kube_request(&s->conn, "PATCH", path, "application/merge-patch+json", body, code,
                          &resp, err, CTL_ERRLEN);
    free(body);
    free(resp);
    if (rc == 0 && *code / 100 == 2) {
        atomic_fetch_add(&ctl_metrics.status_writes, 1);
        return 0;
    }
    atomic_fetch_add(&ctl_metrics.status_errors, 1);
    if (rc < 0)
        *code = 0;
    else if (*code == 0) /* no status line at all: still a transport failure */
        snprintf(err, CTL_ERRLEN, "no HTTP status");
    return -1;
}

/* PATCH body {"status":{"conditions":[cond]}} on ns/name's status: 1
 * written, 0 refused (not retried until the condition changes: a 403 from
 * an older chart's ClusterRole would otherwise be logged every pass), -1
 * worth retrying (transport, 429, 5xx). */
static int patch_policy(ctl_status_t *s, const char *key, json_t *cond)
{
    char path[600], err[CTL_ERRLEN], ns[256];
    const char *slash = strchr(key, '/');
    if (!slash || (size_t)(slash - key) >= sizeof(ns))
        return 0;
    snprintf(ns, sizeof(ns), "%.*s", (int)(slash - key), key);
    snprintf(path, sizeof(path),
             "/apis/security.istio.io/v1/namespaces/%s/authorizationpolicies/%s/status", ns,
             slash + 1);
    json_t *status = json_pack("{s:[O]}", "conditions", cond);
    long code = 0;
    int rc = patch_status(s, path, status, &code, err);
    json_decref(status);
    if (rc == 0)
        return 1;
    ctl_log(CTL_WARN, "AuthorizationPolicy %s: writing status: %s (HTTP %ld)", key,
            code == 0     ? err
            : code == 404 ? "not found"
            : code == 403 ? "forbidden (does the ClusterRole grant authorizationpolicies/status?)"
                          : "refused by the API server",
            code);
    return code == 0 || code == 429 || code >= 500 ? -1 : 0;
}

static void write_policies(ctl_status_t *s)
{
    policy_ctx_t c = {ctl_config(s->ctl)->cluster_id, json_object()};
    pthread_mutex_lock(&s->lock);
    bool any = s->pdirty && json_object_size(s->policies) > 0;
    s->pdirty = false;
    json_t *policies = json_deep_copy(s->policies);
    json_t *written = json_deep_copy(s->pwritten);
    pthread_mutex_unlock(&s->lock);
    if (any)
        ctl_with_model(s->ctl, collect_policies, &c);
    bool failed = false;
    const char *key;
    json_t *gen;
    json_object_foreach(policies, key, gen)
    {
        json_t *cond = json_object_get(c.conds, key);
        if (!cond)
            continue;
        /* the model's generation, not the newest seen here: a status must
         * describe the translation of the generation it names. Until the
         * model has the newest, pass again later. */
        if (json_integer_value(json_object_get(cond, "observedGeneration")) !=
            json_integer_value(gen))
            failed = true;
        json_object_set_new(cond, "type", json_string("ZtunnelAccepted"));
        json_t *prev = json_object_get(written, key);
        json_t *pt = json_object_get(prev, "lastTransitionTime");
        json_t *cmp = json_deep_copy(prev);
        json_object_del(cmp, "lastTransitionTime");
        if (json_equal(cmp, cond)) {
            json_decref(cmp);
            continue;
        }
        json_decref(cmp);
        /* the transition time moves only when the condition's status does */
        if (pt && json_equal(json_object_get(prev, "status"), json_object_get(cond, "status"))) {
            json_object_set(cond, "lastTransitionTime", pt);
        } else {
            char ts[40];
            now_rfc3339(ts, sizeof(ts));
            json_object_set_new(cond, "lastTransitionTime", json_string(ts));
        }
        int w = patch_policy(s, key, cond);
        if (w >= 0) {
            pthread_mutex_lock(&s->lock);
            if (json_object_get(s->policies, key))
                json_object_set(s->pwritten, key, cond);
            pthread_mutex_unlock(&s->lock);
        } else {
            failed = true;
        }
    }
    if (failed) { /* try again on the next pass (every 2 s) */
        pthread_mutex_lock(&s->lock);
        s->pdirty = true;
        pthread_mutex_unlock(&s->lock);
    }
    json_decref(policies);
    json_decref(written);
    json_decref(c.conds);
}

/* ---------- counting what each rule selects ---------- */

typedef struct count_ctx {
    const model_scope_rules_t *rules;
    json_t *counts; /* origin "ServiceScope/<name>[i]" -> count */
} count_ctx_t;

static void count_service(const model_service_info_t *si, void *arg)
{
    count_ctx_t *c = arg;
    for (size_t i = 0; i < si->nclusters; i++) {
        const model_scope_rule_t *r = model_scope_rules_at(c->rules, (size_t)si->scopes[i].rule);
        if (!r || si->scopes[i].rule < 0)
            continue;
        json_t *n = json_object_get(c->counts, r->origin);
        json_object_set_new(c->counts, r->origin, json_integer(n ? json_integer_value(n) + 1 : 1));
    }
}

static void count_rules(const model_t *m, void *arg)
{
    count_ctx_t *c = arg;
    c->rules = model_rules(m);
    model_each_service(m, count_service, c);
    c->rules = NULL;
}

/* The status of one ServiceScope: selected services per rule, from the
 * rule origins "ServiceScope/<name>[i]" the decoder gave them. */
static json_t *status_of(const char *name, json_t *obj, json_t *counts, json_t *prev)
{
    bool accepted = json_is_true(json_object_get(obj, "accepted"));
    const char *reason = json_string_value(json_object_get(obj, "reason"));
    json_int_t gen = json_integer_value(json_object_get(obj, "generation"));
    json_t *rules = json_array();
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "ServiceScope/%s[", name);
    size_t plen = strlen(prefix);
    const char *origin;
    json_t *n;
    json_object_foreach(counts, origin, n)
    {
        if (strncmp(origin, prefix, plen) == 0)
            json_array_append_new(rules, json_pack("{s:i, s:O}", "index", atoi(origin + plen),
                                                   "selectedServices", n));
    }
    json_t *cond = json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "Accepted", "status",
                             accepted ? "True" : "False", "reason",
                             accepted ? "Valid" : "InvalidRule", "message",
                             accepted ? "all rules are valid"
                             : reason ? reason
                                      : "invalid",
                             "observedGeneration", gen);
    /* the transition time moves only when the condition's status does */
    json_t *pc = json_array_get(json_object_get(prev, "conditions"), 0);
    const char *pt = json_string_value(json_object_get(pc, "lastTransitionTime"));
    if (pt && json_equal(json_object_get(pc, "status"), json_object_get(cond, "status"))) {
        json_object_set_new(cond, "lastTransitionTime", json_string(pt));
    } else {
        char ts[40];
        now_rfc3339(ts, sizeof(ts));
        json_object_set_new(cond, "lastTransitionTime", json_string(ts));
    }
    return json_pack("{s:[o], s:o}", "conditions", cond, "rules", rules);
}

static void write_one(ctl_status_t *s, const char *name, json_t *status)
{
    char path[512], err[CTL_ERRLEN];
    snprintf(path, sizeof(path), "/apis/meshfed.io/v1alpha1/servicescopes/%s/status", name);
    long code = 0;
    int rc = patch_status(s, path, status, &code, err);
    if (rc == 0) {
        pthread_mutex_lock(&s->lock);
        json_object_set(s->written, name, status);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    ctl_log(CTL_WARN, "ServiceScope %s: writing status: %s", name,
            code == 0     ? err
            : code == 404 ? "not found"
                          : "refused by the API server");
}

static void write_all(ctl_status_t *s)
{
    count_ctx_t c = {NULL, json_object()};
    ctl_with_model(s->ctl, count_rules, &c);
    pthread_mutex_lock(&s->lock);
    json_t *objects = json_deep_copy(s->objects);
    json_t *written = json_deep_copy(s->written);
    pthread_mutex_unlock(&s->lock);
    const char *name;
    json_t *obj;
    json_object_foreach(objects, name, obj)
    {
        json_t *prev = json_object_get(written, name);
        json_t *st = status_of(name, obj, c.counts, prev);
        if (!json_equal(st, prev))
            write_one(s, name, st);
        json_decref(st);
    }
    json_decref(objects);
    json_decref(written);
    json_decref(c.counts);
}

static void *status_thread(void *arg)
{
    ctl_status_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2;
        while (!s->stop && !s->kick && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
            ;
        s->kick = false;
        if (s->stop)
            break;
        bool leading = kube_lease_leading(s->lease);
        pthread_mutex_unlock(&s->lock);
        if (leading) {
            write_all(s);
            write_policies(s);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void on_leading(void *arg, bool leading)
{
    ctl_status_t *s = arg;
    ctl_log(CTL_INFO, leading ? "leading: this replica writes status"
                              : "not leading: another replica writes status");
    atomic_store(&ctl_metrics.leader, leading ? 1 : 0);
    pthread_mutex_lock(&s->lock);
    if (leading) { /* write everything again: the last leader may have differed */
        json_object_clear(s->written);
        json_object_clear(s->pwritten);
        s->pdirty = true;
    }
    s->kick = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

ctl_status_t *ctl_status_start(ctl_t *c, const kube_conn_t *conn, char *err, size_t errlen)
{
    const ctl_config_t *cfg = ctl_config(c);
    char host[256] = "meshfed";
    const char *id = getenv("POD_NAME");
    if (!id || !*id) {
        gethostname(host, sizeof(host) - 1);
        id = host;
    }
    ctl_status_t *s = calloc(1, sizeof(*s));
    if (!s || kube_conn_copy(&s->conn, conn) < 0) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->ctl = c;
    s->objects = json_object();
    s->written = json_object();
    s->policies = json_object();
    s->pwritten = json_object();
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->lease = kube_lease_new(conn, cfg->system_namespace, "meshfed-leader", id, 15, 10, 2);
    if (!s->lease || kube_lease_start(s->lease, on_leading, s) < 0 ||
        pthread_create(&s->thread, NULL, status_thread, s) != 0) {
        snprintf(err, errlen, "cannot start leader election");
        kube_lease_free(s->lease);
        s->lease = NULL;
        ctl_status_stop(s);
        return NULL;
    }
    return s;
}

bool ctl_status_leading(ctl_status_t *s)
{
    return s && kube_lease_leading(s->lease);
}

void ctl_status_stop(ctl_status_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    bool started = s->lease != NULL;
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (started)
        pthread_join(s->thread, NULL);
    kube_lease_free(s->lease); /* releases the lease for the next replica */
    kube_conn_free(&s->conn);
    json_decref(s->objects);
    json_decref(s->written);
    json_decref(s->policies);
    json_decref(s->pwritten);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
