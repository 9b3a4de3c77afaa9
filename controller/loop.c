/*
 * loop.c - the model thread: a bounded event queue in, snapshots out.
 *
 * Sources (watchers, demo files) push typed events. The model thread applies
 * them in batches: after the first event of a burst it waits for the queue to
 * stay quiet for the debounce time (at most ten times that in all), then
 * commits once and hands the snapshot to the xDS server. A source blocks
 * while the queue is full, which shows in the queue_full counter.
 */
#include "base.h"
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_CAP 65536

ctl_metrics_t ctl_metrics;

typedef struct scope_src {
    char *source;
    model_scope_rules_t *rules;
} scope_src_t;

struct ctl {
    ctl_config_t cfg;
    model_t *model;
    pthread_mutex_t model_lock; /* model_t: model thread writes, debug reads */
    pthread_mutex_t qlock;
    pthread_cond_t qcond; /* queue not empty / not full / idle */
    ctl_event_t *q;
    size_t qhead, qlen;
    bool busy;              /* a batch is being applied */
    atomic_int debounce_ms; /* SIGHUP may change it */
    bool stopping;
    pthread_t thread;
    bool started;
    pthread_mutex_t snap_lock;
    model_snapshot_t *snap;
    xds_server_t *xds;
    ctl_kube_t *kube;
    scope_src_t *scopes; /* rules by source, combined in source order */
    size_t nscopes;
    pthread_mutex_t net_lock; /* cluster -> network, for proxies that send none */
    base_map_t networks;      /* cluster -> its network: a key of interned */
    base_map_t interned;      /* a set of every network name seen; never shrinks */
    pthread_mutex_t notes_lock;
    base_map_t notes;       /* cluster -> json_t {key: value}: what sources say of it (clusterz) */
    ctl_ratelog_t *rejects; /* per (cluster, kind): one bad source must not flood the log */
};

static const ctl_config_t *cfg_of(const ctl_t *c)
{
    return &c->cfg;
}

const ctl_config_t *ctl_config(const ctl_t *c)
{
    return cfg_of(c);
}

ctl_t *ctl_new(const ctl_config_t *cfg, char *err, size_t errlen)
{
    ctl_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    atomic_init(&c->debounce_ms, cfg->debounce_ms);
    model_config_t mc = {cfg->trust_domain, cfg->domain_suffix, cfg->prefer_cluster,
                         cfg->root_namespace, cfg->authz_dry_run};
    c->model = model_new(&mc);
    c->q = calloc(QUEUE_CAP, sizeof(*c->q));
    if (!c->model || !c->q) {
        snprintf(err, errlen, "out of memory");
        model_free(c->model);
        free(c->q);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->model_lock, NULL);
    pthread_mutex_init(&c->qlock, NULL);
    pthread_mutex_init(&c->snap_lock, NULL);
    pthread_mutex_init(&c->net_lock, NULL);
    pthread_cond_init(&c->qcond, NULL);
    base_map_init(&c->networks);
    base_map_init(&c->interned);
    pthread_mutex_init(&c->notes_lock, NULL);
    base_map_init(&c->notes);
    c->rejects = ctl_ratelog_new(60, 256);
    return c;
}

void ctl_cluster_info_gateway(model_cluster_t *c, const ctl_gateway_t *g, const char *ns,
                              const char *problem)
{
    free((char *)c->gateway_ns);
    free((char *)c->gateway_name);
    free((char *)c->gateway_sa);
    free((char *)c->gateway_hostname);
    free((char *)c->gateway_problem);
    memset(&c->gateway, 0, sizeof(c->gateway));
    c->gateway_port = g ? g->port : 0;
    c->gateway_ns = g || ns ? strdup(g ? g->ns : ns) : NULL;
    c->gateway_name = g ? strdup(g->name) : NULL;
    c->gateway_sa = g ? strdup(g->sa) : NULL;
    c->gateway_hostname = g && g->hostname[0] ? strdup(g->hostname) : NULL;
    c->gateway_problem = problem && *problem ? strdup(problem) : NULL;
    if (g)
        c->gateway = g->ip;
}

static void event_free(ctl_event_t *ev)
{
    free(ev->cluster);
    if (ev->type == CTL_EV_OBJECT)
        model_obj_free(ev->kind, ev->obj);
    free((char *)ev->info.id);
    free((char *)ev->info.network);
    ctl_cluster_info_gateway(&ev->info, NULL, NULL, NULL);
    free(ev->source);
    model_scope_rules_free(ev->rules);
}

void ctl_push(ctl_t *c, ctl_event_t *ev)
{
    pthread_mutex_lock(&c->qlock);
    if (c->qlen == QUEUE_CAP)
        atomic_fetch_add(&ctl_metrics.queue_full, 1);
    while (c->qlen == QUEUE_CAP && !c->stopping)
        pthread_cond_wait(&c->qcond, &c->qlock);
    if (c->stopping) {
        pthread_mutex_unlock(&c->qlock);
        event_free(ev);
        return;
    }
    c->q[(c->qhead + c->qlen++) % QUEUE_CAP] = *ev;
    atomic_store(&ctl_metrics.queue_depth, (long)c->qlen);
    pthread_cond_broadcast(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
}

/* Rebuilds the combined rule set: every source's rules in source order. No
 * source at all means the default rule. */
static void apply_scopes(ctl_t *c, ctl_event_t *ev)
{
    size_t i = 0;
    while (i < c->nscopes && strcmp(c->scopes[i].source, ev->source) != 0)
        i++;
    if (i == c->nscopes) {
        if (!ev->rules)
            return;
        c->scopes = realloc(c->scopes, (c->nscopes + 1) * sizeof(*c->scopes));
        if (!c->scopes)
            abort();
        c->scopes[c->nscopes++] = (scope_src_t){ev->source, NULL};
        ev->source = NULL;
    }
    model_scope_rules_free(c->scopes[i].rules);
    c->scopes[i].rules = ev->rules;
    ev->rules = NULL;
    if (!c->scopes[i].rules) {
        free(c->scopes[i].source);
        c->scopes[i] = c->scopes[--c->nscopes];
    }
    if (c->nscopes == 0) {
        model_scope_set(c->model, NULL);
        return;
    }
    model_scope_rules_t *all = model_scope_rules_new();
    for (size_t s = 0; s < c->nscopes; s++) {
        const model_scope_rules_t *r = c->scopes[s].rules;
        for (size_t k = 0; k < model_scope_rules_count(r); k++) {
            const model_scope_rule_t *rule = model_scope_rules_at(r, k);
            model_scope_rule_t copy = {strdup(rule->origin), NULL, NULL, rule->scope};
            for (int w = 0; w < 2; w++) {
                const model_selector_t *src = w ? rule->service_sel : rule->namespace_sel;
                model_selector_t *dst = src ? model_selector_copy(src) : NULL;
                if (w)
                    copy.service_sel = dst;
                else
                    copy.namespace_sel = dst;
            }
            model_scope_rules_add(all, copy);
        }
    }
    model_scope_set(c->model, all);
}

/* Network names are interned (the keys of c->interned) and never freed: the
 * xDS server copies the pointer ctl_network_of returns after our lock is
 * released. NULL when out of memory. */
static const char *intern_network(ctl_t *c, const char *network)
{
    const char *n = base_map_key(&c->interned, network);
    if (!n && base_map_put(&c->interned, network, BASE_MAP_SET) == NULL)
        n = base_map_key(&c->interned, network);
    return n;
}

static void note_network(ctl_t *c, const char *cluster, const char *network)
{
    pthread_mutex_lock(&c->net_lock);
    const char *was = base_map_get(&c->networks, cluster);
    if (c->xds && (!was || !network || strcmp(was, network) != 0))
        xds_server_networks_changed(c->xds);
    const char *n = network ? intern_network(c, network) : NULL;
    if (n)
        base_map_put(&c->networks, cluster, (void *)n);
    else
        base_map_del(&c->networks, cluster);
    pthread_mutex_unlock(&c->net_lock);
}

const char *ctl_network_of(void *arg, const char *cluster)
{
    ctl_t *c = arg;
    pthread_mutex_lock(&c->net_lock);
    const char *n = base_map_get(&c->networks, cluster);
    pthread_mutex_unlock(&c->net_lock);
    return n;
}

static void apply_one(ctl_t *c, ctl_event_t *ev)
{
    char err[MODEL_ERRLEN] = "";
    int rc = 0;
    switch (ev->type) {
    case CTL_EV_OBJECT:
        rc = model_apply(c->model, ev->cluster, ev->kind, ev->op, ev->obj, err, sizeof(err));
        ev->obj = NULL;
        break;
    case CTL_EV_CLUSTER_SET:
        rc = model_cluster_set(c->model, &ev->info, err, sizeof(err));
        if (rc == 0)
            note_network(c, ev->info.id, ev->info.network);
        break;
    case CTL_EV_CLUSTER_REMOVE:
        model_cluster_remove(c->model, ev->cluster);
        note_network(c, ev->cluster, NULL);
        break;
    case CTL_EV_CLUSTER_STATE:
        model_cluster_set_state(c->model, ev->cluster, ev->state);
        break;
    case CTL_EV_CLEAR_KIND:
        model_cluster_clear_kind(c->model, ev->cluster, ev->kind);
        break;
    case CTL_EV_SCOPES:
        apply_scopes(c, ev);
        break;
    }
    if (rc < 0) {
        char key[200], msg[MODEL_ERRLEN + 300];
        atomic_fetch_add(&ctl_metrics.events_rejected, 1);
        snprintf(key, sizeof(key), "cluster %.60s: %s events rejected",
                 ev->cluster ? ev->cluster : (ev->info.id ? ev->info.id : "?"),
                 ev->type == CTL_EV_OBJECT ? model_kind_name(ev->kind) : "cluster");
        snprintf(msg, sizeof(msg), "event rejected: %s", err);
        ctl_ratelog(c->rejects, time(NULL), CTL_WARN, key, msg);
    } else {
        atomic_fetch_add(&ctl_metrics.events_applied, 1);
    }
    event_free(ev);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Takes everything queued now; the caller applies it without qlock. */
static size_t take(ctl_t *c, ctl_event_t *out, size_t max)
{
    size_t n = 0;
    while (c->qlen && n < max) {
        out[n++] = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % QUEUE_CAP;
        c->qlen--;
    }
    atomic_store(&ctl_metrics.queue_depth, (long)c->qlen);
    pthread_cond_broadcast(&c->qcond);
    return n;
}

/* Clusters that disagree on a global service (ports, waypoint, scope) are
 * shown in /debug/servicez; each new disagreement is logged once. */
static void log_conflict(const model_service_info_t *si, void *arg)
{
    (void)arg;
    ctl_log(CTL_WARN, "service %s: clusters disagree: %s", si->key, si->conflict);
}

static void commit(ctl_t *c)
{
    uint64_t t0 = now_us();
    pthread_mutex_lock(&c->model_lock);
    model_snapshot_t *s = model_commit(c->model);
    model_each_new_conflict(c->model, log_conflict, NULL);
    pthread_mutex_unlock(&c->model_lock);
    atomic_fetch_add(&ctl_metrics.commits, 1);
    atomic_fetch_add(&ctl_metrics.commit_us_sum, now_us() - t0);
    pthread_mutex_lock(&c->snap_lock);
    bool changed = !c->snap || model_snapshot_version(c->snap) != model_snapshot_version(s);
    model_snapshot_t *old = c->snap;
    c->snap = s;
    pthread_mutex_unlock(&c->snap_lock);
    if (changed && c->xds)
        xds_server_publish(c->xds, s);
    if (changed)
        ctl_log(CTL_DEBUG, "published snapshot version %llu (%zu resources)",
                (unsigned long long)model_snapshot_version(s), model_snapshot_size(s));
    model_snapshot_unref(old);
}

static void *model_thread(void *arg)
{
    ctl_t *c = arg;
    enum { BATCH = 4096 };
    ctl_event_t *batch = malloc(BATCH * sizeof(*batch));
    if (!batch)
        abort();
    pthread_mutex_lock(&c->qlock);
    for (;;) {
        while (!c->qlen && !c->stopping) {
            /* wake once a second to say what a rate-limited window suppressed */
            struct timespec ts;
            deadline_in(&ts, 1000);
            pthread_cond_timedwait(&c->qcond, &c->qlock, &ts);
            ctl_ratelog_flush(c->rejects, time(NULL));
        }
        if (c->stopping)
            break;
        c->busy = true;
        int debounce = atomic_load(&c->debounce_ms);
        uint64_t start = now_us();
        uint64_t limit = start + (uint64_t)debounce * 10000u;
        for (;;) {
            size_t n = take(c, batch, BATCH);
            pthread_mutex_unlock(&c->qlock);
            pthread_mutex_lock(&c->model_lock);
            for (size_t i = 0; i < n; i++)
                apply_one(c, &batch[i]);
            pthread_mutex_unlock(&c->model_lock);
            pthread_mutex_lock(&c->qlock);
            if (c->qlen)
                continue;
            if (debounce == 0 || now_us() >= limit)
                break;
            struct timespec ts;
            deadline_in(&ts, debounce);
            while (!c->qlen && !c->stopping &&
                   pthread_cond_timedwait(&c->qcond, &c->qlock, &ts) == 0)
                ;
            if (!c->qlen || c->stopping)
                break;
        }
        pthread_mutex_unlock(&c->qlock);
        commit(c);
        pthread_mutex_lock(&c->qlock);
        c->busy = false;
        pthread_cond_broadcast(&c->qcond);
    }
    pthread_mutex_unlock(&c->qlock);
    free(batch);
    return NULL;
}

int ctl_start(ctl_t *c)
{
    if (pthread_create(&c->thread, NULL, model_thread, c) != 0)
        return -1;
    c->started = true;
    return 0;
}

void ctl_flush(ctl_t *c)
{
    pthread_mutex_lock(&c->qlock);
    while ((c->qlen || c->busy) && !c->stopping)
        pthread_cond_wait(&c->qcond, &c->qlock);
    pthread_mutex_unlock(&c->qlock);
}

void ctl_stop(ctl_t *c)
{
    pthread_mutex_lock(&c->qlock);
    c->stopping = true;
    pthread_cond_broadcast(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
    if (c->started)
        pthread_join(c->thread, NULL);
    c->started = false;
}

void ctl_set_xds(ctl_t *c, xds_server_t *x)
{
    c->xds = x;
}

void ctl_set_debounce(ctl_t *c, int ms)
{
    atomic_store(&c->debounce_ms, ms);
}

void ctl_set_kube(ctl_t *c, ctl_kube_t *k)
{
    c->kube = k;
}

ctl_kube_t *ctl_kube_of(ctl_t *c)
{
    return c->kube;
}

xds_server_t *ctl_xds(ctl_t *c)
{
    return c->xds;
}

void ctl_with_model(ctl_t *c, void (*fn)(const model_t *m, void *arg), void *arg)
{
    pthread_mutex_lock(&c->model_lock);
    fn(c->model, arg);
    pthread_mutex_unlock(&c->model_lock);
}

model_snapshot_t *ctl_snapshot(ctl_t *c)
{
    pthread_mutex_lock(&c->snap_lock);
    model_snapshot_t *s = c->snap ? model_snapshot_ref(c->snap) : NULL;
    pthread_mutex_unlock(&c->snap_lock);
    return s;
}

typedef struct ready_ctx {
    const char *local;
    bool local_seen, local_syncing, any_syncing;
    size_t n;
} ready_ctx_t;

static void ready_one(const model_cluster_info_t *ci, void *arg)
{
    ready_ctx_t *r = arg;
    r->n++;
    bool syncing = ci->state == MODEL_CLUSTER_SYNCING;
    r->any_syncing |= syncing;
    if (strcmp(ci->id, r->local) == 0) {
        r->local_seen = true;
        r->local_syncing = syncing;
    }
}

static void ready_check(const model_t *m, void *arg)
{
    model_each_cluster(m, ready_one, arg);
}

/* Only what this replica needs to serve its own cluster's proxies: the local
 * cluster listed and a snapshot published. A remote that cannot be reached
 * (or a bad remote Secret) must not take every replica out of its Service;
 * its state is in /debug/clusterz and meshfed_cluster_state. Without a local
 * cluster of that id (a demo directory that names none), every cluster is
 * local files, and all of them gate. */
bool ctl_ready(ctl_t *c, char *why, size_t whylen)
{
    ready_ctx_t r = {.local = c->cfg.cluster_id};
    ctl_with_model(c, ready_check, &r);
    model_snapshot_t *s = ctl_snapshot(c);
    bool published = s != NULL;
    model_snapshot_unref(s);
    if (r.local_seen ? r.local_syncing : (r.any_syncing || r.n == 0))
        snprintf(why, whylen, "local cluster %s still syncing", c->cfg.cluster_id);
    else if (!published)
        snprintf(why, whylen, "no snapshot published yet");
    else
        return true;
    return false;
}

void ctl_cluster_note(ctl_t *c, const char *cluster, const char *key, json_t *val)
{
    pthread_mutex_lock(&c->notes_lock);
    json_t *o = base_map_get(&c->notes, cluster);
    if (!key) {
        json_decref(base_map_del(&c->notes, cluster));
    } else if (val) {
        if (!o && (o = json_object()) && base_map_put(&c->notes, cluster, o) == o) {
            json_decref(o);
            o = NULL;
        }
        if (o) {
            json_object_set_new(o, key, val);
            val = NULL;
        }
    } else if (o) {
        json_object_del(o, key);
        if (json_object_size(o) == 0)
            json_decref(base_map_del(&c->notes, cluster));
    }
    pthread_mutex_unlock(&c->notes_lock);
    json_decref(val);
}

json_t *ctl_cluster_notes(ctl_t *c, const char *cluster)
{
    pthread_mutex_lock(&c->notes_lock);
    json_t *o = json_deep_copy(base_map_get(&c->notes, cluster));
    pthread_mutex_unlock(&c->notes_lock);
    return o;
}

static void note_free(void *o)
{
    json_decref(o);
}

void ctl_free(ctl_t *c)
{
    if (!c)
        return;
    ctl_stop(c);
    while (c->qlen) {
        event_free(&c->q[c->qhead]);
        c->qhead = (c->qhead + 1) % QUEUE_CAP;
        c->qlen--;
    }
    free(c->q);
    for (size_t i = 0; i < c->nscopes; i++) {
        free(c->scopes[i].source);
        model_scope_rules_free(c->scopes[i].rules);
    }
    free(c->scopes);
    model_snapshot_unref(c->snap);
    model_free(c->model);
    pthread_mutex_destroy(&c->model_lock);
    pthread_mutex_destroy(&c->qlock);
    pthread_mutex_destroy(&c->snap_lock);
    pthread_mutex_destroy(&c->net_lock);
    pthread_cond_destroy(&c->qcond);
    base_map_destroy(&c->networks, NULL);
    base_map_destroy(&c->interned, NULL);
    base_map_destroy(&c->notes, note_free);
    ctl_ratelog_free(c->rejects);
    pthread_mutex_destroy(&c->notes_lock);
    free(c);
}
