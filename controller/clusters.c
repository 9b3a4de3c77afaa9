/*
 * clusters.c - live clusters: the local one (kubeconfig or in-cluster) and
 * the remote ones its istio/multiCluster=true Secrets name, all watched by
 * one kube/ watcher and turned into model events.
 *
 * Runs on the watcher's I/O thread: decode, push to the model thread's
 * queue, never block on anything else. Per cluster it remembers just enough
 * to say where the cluster's network and east-west gateway are.
 */
#include "base.h"
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REMOTES 256
#define NETWORK_LABEL "topology.istio.io/network"

/* What a cluster says about itself, from its objects. */
typedef struct topo {
    char id[254];
    char network[254];
    ctl_gateway_t gw;     /* gw.name "": none */
    char gw_problem[256]; /* why an east-west Gateway cannot be used, or "" */
    unsigned synced;      /* bit per kube_res_t that finished its list */
    bool gw_from_gateway; /* the gateway came from a Gateway object */
    time_t since;         /* when it was added (its initial lists started) */
    bool slow_warned;     /* "not synced after N s" was said */
    char last_error[256]; /* the newest error of its informers, for the slow-sync line */
} topo_t;

/* A remote cluster and the Secret that declared it. */
typedef struct remote {
    char *id;
    char *secret;
    uint64_t endpoint; /* hash of server, CA and TLS name: a change starts it from scratch */
    char *server;
} remote_t;

struct ctl_kube {
    ctl_t *ctl;
    kube_watcher_t *w;
    topo_t topo[MAX_REMOTES + 1];
    size_t ntopo;
    remote_t remotes[MAX_REMOTES];
    size_t nremotes;
    json_t *scopes; /* ServiceScope name -> object */
    ctl_status_t *status;
    ctl_rootcert_t *rootcert; /* with --ca */
    unsigned local_res;       /* what the local cluster is watched for */
    ctl_ratelog_t *errlog;    /* per (cluster, resource, kind of error) */
    /* the watcher's callbacks and the reporter take it: topo and remotes */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t reporter; /* slow syncs, ended error windows: needs a clock, not events */
    bool reporter_started, stop;
};

static const unsigned MODEL_RES =
    KUBE_RES_BIT(KUBE_RES_NAMESPACES) | KUBE_RES_BIT(KUBE_RES_SERVICES) |
    KUBE_RES_BIT(KUBE_RES_ENDPOINTSLICES) | KUBE_RES_BIT(KUBE_RES_PODS) |
    KUBE_RES_BIT(KUBE_RES_NODES) | KUBE_RES_BIT(KUBE_RES_AUTHZ_POLICIES) |
    KUBE_RES_BIT(KUBE_RES_PEER_AUTHNS);
/* what a remote cluster is watched for: its objects and its gateway */
static const unsigned REMOTE_RES = MODEL_RES | KUBE_RES_BIT(KUBE_RES_GATEWAYS);

/* The cluster's entry, or NULL when it is not (or no longer) watched. */
static topo_t *topo_of(ctl_kube_t *k, const char *id)
{
    for (size_t i = 0; i < k->ntopo; i++)
        if (strcmp(k->topo[i].id, id) == 0)
            return &k->topo[i];
    return NULL;
}

/* A new entry, when the cluster starts being watched. */
static topo_t *topo_add(ctl_kube_t *k, const char *id)
{
    topo_t *t = topo_of(k, id);
    if (t)
        return t;
    if (k->ntopo == MAX_REMOTES + 1)
        return NULL;
    t = &k->topo[k->ntopo++];
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->since = time(NULL);
    snprintf(t->gw.ns, sizeof(t->gw.ns), "%s", ctl_config(k->ctl)->system_namespace);
    return t;
}

static void forget_topo(ctl_kube_t *k, const char *id)
{
    for (size_t i = 0; i < k->ntopo; i++)
        if (strcmp(k->topo[i].id, id) == 0)
            k->topo[i] = k->topo[--k->ntopo];
}

static void push_cluster(ctl_kube_t *k, const topo_t *t)
{
    const ctl_config_t *cfg = ctl_config(k->ctl);
    bool local = strcmp(t->id, cfg->cluster_id) == 0;
    const char *net = local && cfg->network && *cfg->network ? cfg->network : t->network;
    ctl_event_t ev = {.type = CTL_EV_CLUSTER_SET};
    ev.info.id = strdup(t->id);
    ev.info.network = strdup(net);
    ctl_cluster_info_gateway(&ev.info, t->gw.name[0] ? &t->gw : NULL, t->gw.ns, t->gw_problem);
    ctl_push(k->ctl, &ev);
}

/* The network label of the system namespace; the east-west gateway (see
 * gateway.c: a Gateway of class istio-east-west wins over a Service). */
static void set_gateway(ctl_kube_t *k, topo_t *t, const ctl_gateway_t *g, bool from_gateway)
{
    if (t->gw_from_gateway && !from_gateway)
        return;
    t->gw = *g;
    t->gw_problem[0] = '\0';
    t->gw_from_gateway = from_gateway;
    push_cluster(k, t);
}

static void clear_gateway(ctl_kube_t *k, topo_t *t, const char *ns, const char *name,
                          bool from_gateway)
{
    if (t->gw_from_gateway != from_gateway || strcmp(t->gw.name, name) != 0 ||
        strcmp(t->gw.ns, ns) != 0)
        return;
    memset(&t->gw.ip, 0, sizeof(t->gw.ip));
    t->gw.hostname[0] = '\0';
    t->gw.name[0] = '\0';
    t->gw_from_gateway = false;
    push_cluster(k, t);
}

static void note_topology(ctl_kube_t *k, topo_t *t, model_kind_t kind, const void *obj,
                          bool deleted)
{
    const char *sysns = ctl_config(k->ctl)->system_namespace;
    if (kind == MODEL_KIND_NAMESPACE) {
        const model_namespace_t *ns = obj;
        const char *net = deleted ? "" : model_labels_get(&ns->labels, NETWORK_LABEL);
        if (strcmp(ns->name, sysns) != 0 || strcmp(t->network, net ? net : "") == 0)
            return;
        snprintf(t->network, sizeof(t->network), "%s", net ? net : "");
        push_cluster(k, t);
    } else if (kind == MODEL_KIND_SERVICE) {
        const model_service_t *s = obj;
        ctl_gateway_t g;
        if (!deleted && ctl_gateway_from_service(s, sysns, &g))
            set_gateway(k, t, &g, false);
        else
            clear_gateway(k, t, s->ns, s->name, false);
    }
}

/* Every Gateway, of any class, may be a waypoint: the model keeps it. */
static void push_waypoint(ctl_kube_t *k, const char *cluster, kube_ev_t ev, const json_t *obj)
{
    char err[CTL_ERRLEN];
    void *o = NULL;
    if (kube_decode(MODEL_KIND_GATEWAY, obj, &o, err, sizeof(err)) < 0) {
        char key[160], msg[CTL_ERRLEN + 100];
        atomic_fetch_add(&ctl_metrics.decode_errors, 1);
        snprintf(key, sizeof(key), "cluster %.60s: invalid Gateway objects", cluster);
        snprintf(msg, sizeof(msg), "cluster %s: %s", cluster, err);
        ctl_ratelog(k->errlog, time(NULL), CTL_WARN, key, msg);
        return;
    }
    ctl_event_t e = {.type = CTL_EV_OBJECT,
                     .cluster = strdup(cluster),
                     .kind = MODEL_KIND_GATEWAY,
                     .op = ev == KUBE_EV_DELETED ? MODEL_OP_DELETE : MODEL_OP_UPSERT,
                     .obj = o};
    ctl_push(k->ctl, &e);
}

static void on_gateway(ctl_kube_t *k, const char *cluster, kube_ev_t ev, json_t *obj)
{
    push_waypoint(k, cluster, ev, obj);
    topo_t *t = topo_of(k, cluster);
    json_t *md = json_object_get(obj, "metadata");
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    const char *name = json_string_value(json_object_get(md, "name"));
    if (!t || !ns || !name)
        return;
    ctl_gateway_t g;
    int rc = ev != KUBE_EV_DELETED ? ctl_gateway_from_json(obj, &g) : 0;
    if (rc > 0 && t->network[0] && strcmp(t->network, g.network) != 0) {
        snprintf(g.problem, sizeof(g.problem),
                 "Gateway %.40s/%.40s is labelled network %.40s "
                 "but the cluster is on %.40s",
                 ns, name, g.network, t->network);
        rc = -1;
    }
    if (rc > 0) {
        set_gateway(k, t, &g, true);
        return;
    }
    clear_gateway(k, t, ns, name, true);
    if (rc < 0 && strcmp(t->gw_problem, g.problem) != 0) {
        atomic_fetch_add(&ctl_metrics.gateway_errors, 1);
        ctl_log(CTL_WARN, "cluster %s: %s; its network is not reachable from others until fixed",
                cluster, g.problem);
        snprintf(t->gw_problem, sizeof(t->gw_problem), "%s", g.problem);
        push_cluster(k, t);
    }
}

model_kind_t ctl_kube_kind_of(kube_res_t r)
{
    switch (r) {
    case KUBE_RES_NAMESPACES:
        return MODEL_KIND_NAMESPACE;
    case KUBE_RES_SERVICES:
        return MODEL_KIND_SERVICE;
    case KUBE_RES_ENDPOINTSLICES:
        return MODEL_KIND_ENDPOINTSLICE;
    case KUBE_RES_PODS:
        return MODEL_KIND_POD;
    case KUBE_RES_AUTHZ_POLICIES:
        return MODEL_KIND_AUTHZ_POLICY;
    case KUBE_RES_PEER_AUTHNS:
        return MODEL_KIND_PEER_AUTHN;
    default:
        return MODEL_KIND_NODE;
    }
}

void *ctl_kube_identity_of(model_kind_t kind, const kube_obj_t *obj)
{
    const char *name = kube_obj_name(obj), *ns = kube_obj_namespace(obj);
    if (!ns && kind != MODEL_KIND_NAMESPACE && kind != MODEL_KIND_NODE)
        return NULL;
    switch (kind) {
    case MODEL_KIND_NAMESPACE: {
        model_namespace_t *o = calloc(1, sizeof(*o));
        o->name = strdup(name);
        return o;
    }
    case MODEL_KIND_NODE: {
        model_node_t *o = calloc(1, sizeof(*o));
        o->name = strdup(name);
        return o;
    }
    case MODEL_KIND_SERVICE: {
        model_service_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        o->name = strdup(name);
        return o;
    }
    case MODEL_KIND_ENDPOINTSLICE: {
        model_endpointslice_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        o->name = strdup(name);
        return o;
    }
    case MODEL_KIND_AUTHZ_POLICY: {
        model_authz_policy_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        o->name = strdup(name);
        return o;
    }
    case MODEL_KIND_PEER_AUTHN: {
        model_peer_authn_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        o->name = strdup(name);
        return o;
    }
    default: {
        model_pod_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        o->name = strdup(name);
        return o;
    }
    }
}

static void on_object(ctl_kube_t *k, const char *cluster, kube_res_t res, kube_ev_t ev,
                      const kube_obj_t *obj)
{
    model_kind_t kind = ctl_kube_kind_of(res);
    char err[CTL_ERRLEN];
    void *o = NULL;
    bool del = ev == KUBE_EV_DELETED;
    bool sec = kind == MODEL_KIND_AUTHZ_POLICY || kind == MODEL_KIND_PEER_AUTHN;
    /* another revision's policy is as good as absent: a label change must
     * take it away */
    if (sec && !del &&
        !ctl_in_revision(kube_obj_label(obj, "istio.io/rev"), ctl_config(k->ctl)->revision))
        del = true;
    if (del) {
        o = ctl_kube_identity_of(kind, obj);
    } else if (kube_obj_decode(kind, obj, &o, err, sizeof(err)) < 0 ||
               (kind == MODEL_KIND_AUTHZ_POLICY && ctl_policy_refused(&o, err, sizeof(err)))) {
        char key[160], msg[CTL_ERRLEN + 300];
        atomic_fetch_add(sec ? &ctl_metrics.policy_errors : &ctl_metrics.decode_errors, 1);
        bool failsafe = sec && kube_obj_decode_failsafe(kind, obj, err, &o) == 0;
        snprintf(key, sizeof(key), "cluster %.60s: invalid %s objects", cluster,
                 kube_res_name(res));
        snprintf(msg, sizeof(msg), "cluster %s: %s%s", cluster, err,
                 failsafe ? " (replaced by its fail-closed stand-in, see docs/security.md)" : "");
        ctl_ratelog(k->errlog, time(NULL), CTL_WARN, key, msg);
        if (!failsafe)
            return;
    }
    if (!o)
        return;
    /* the status's observedGeneration must be the one the model translated */
    if (kind == MODEL_KIND_AUTHZ_POLICY && !del)
        ((model_authz_policy_t *)o)->generation = kube_obj_generation(obj);
    if (kind == MODEL_KIND_AUTHZ_POLICY && strcmp(cluster, ctl_config(k->ctl)->cluster_id) == 0)
        ctl_status_note_policy(k->status, kube_obj_namespace(obj), kube_obj_name(obj),
                               kube_obj_generation(obj), del);
    topo_t *t = topo_of(k, cluster);
    if (t)
        note_topology(k, t, kind, o, del);
    ctl_event_t e = {.type = CTL_EV_OBJECT,
                     .cluster = strdup(cluster),
                     .kind = kind,
                     .op = del ? MODEL_OP_DELETE : MODEL_OP_UPSERT,
                     .obj = o};
    ctl_push(k->ctl, &e);
}

/* ---------- ServiceScope and MeshConfig (local cluster only) ---------- */

static void push_scopes(ctl_kube_t *k, const char *source, model_scope_rules_t *r)
{
    ctl_event_t ev = {.type = CTL_EV_SCOPES, .source = strdup(source), .rules = r};
    ctl_push(k->ctl, &ev);
}

/* Every valid ServiceScope, in name order; an invalid one is skipped (and
 * logged) so that it never takes the others down with it. */
static void rebuild_servicescopes(ctl_kube_t *k)
{
    const char **names = calloc(json_object_size(k->scopes) + 1, sizeof(char *));
    size_t n = 0;
    const char *name;
    json_t *obj;
    json_object_foreach(k->scopes, name, obj) names[n++] = name;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *tmp = names[j];
            names[j] = names[j - 1];
            names[j - 1] = tmp;
        }
    model_scope_rules_t *r = model_scope_rules_new();
    char err[CTL_ERRLEN];
    for (size_t i = 0; i < n; i++) {
        json_t *so = json_object_get(k->scopes, names[i]);
        json_int_t gen =
            json_integer_value(json_object_get(json_object_get(so, "metadata"), "generation"));
        bool ok = kube_decode_servicescope(so, r, err, sizeof(err)) == 0;
        if (!ok) {
            atomic_fetch_add(&ctl_metrics.scope_errors, 1);
            ctl_log(CTL_WARN, "ServiceScope %s: %s (an invalid rule is skipped, the others apply)",
                    names[i], err);
        }
        ctl_status_note(k->status, names[i], gen, false, ok ? NULL : err);
    }
    free(names);
    if (n == 0) {
        model_scope_rules_free(r);
        r = NULL;
    }
    push_scopes(k, "ServiceScope", r);
}

static int mesh_doc(json_t *doc, void *arg)
{
    json_t **out = arg;
    json_t *arr = json_object_get(doc, "serviceScopeConfigs");
    if (arr)
        *out = json_incref(arr);
    return 0;
}

static void on_configmap(ctl_kube_t *k, kube_ev_t ev, json_t *obj)
{
    const char *mesh = json_string_value(json_object_get(json_object_get(obj, "data"), "mesh"));
    json_t *arr = NULL;
    char err[CTL_ERRLEN];
    if (ev != KUBE_EV_DELETED && mesh &&
        kube_manifest_load_string(mesh, strlen(mesh), mesh_doc, &arr, err, sizeof(err)) < 0) {
        atomic_fetch_add(&ctl_metrics.scope_errors, 1);
        ctl_log(CTL_WARN, "ConfigMap istio data.mesh: %s", err);
        return;
    }
    model_scope_rules_t *r = NULL;
    if (arr) {
        r = model_scope_rules_new();
        if (kube_decode_scope_configs(arr, "MeshConfig", r, err, sizeof(err)) < 0) {
            atomic_fetch_add(&ctl_metrics.scope_errors, 1);
            ctl_log(
                CTL_WARN,
                "MeshConfig serviceScopeConfigs: %s (an invalid rule is skipped, the others apply)",
                err);
        }
        json_decref(arr);
    }
    push_scopes(k, "MeshConfig", r);
}

/* ---------- remote clusters from Secrets ---------- */

static void note_pending(ctl_kube_t *k, const topo_t *t);

static void remove_remote(ctl_kube_t *k, size_t i, const char *why)
{
    remote_t *r = &k->remotes[i];
    ctl_log(CTL_INFO, "cluster %s removed (Secret %s%s)", r->id, r->secret, why);
    kube_watcher_remove_cluster(k->w, r->id);
    forget_topo(k, r->id);
    ctl_cluster_note(k->ctl, r->id, NULL, NULL);
    ctl_event_t ev = {.type = CTL_EV_CLUSTER_REMOVE, .cluster = r->id};
    ctl_push(k->ctl, &ev);
    free(r->secret);
    free(r->server);
    k->remotes[i] = k->remotes[--k->nremotes];
}

/* Each field hashed after its length, so that no two field lists hash
 * alike by moving bytes across a boundary. */
static uint64_t hash_field(uint64_t h, const char *p, size_t n)
{
    h = base_hash_more(h, &n, sizeof(n));
    return base_hash_more(h, p ? p : "", p ? n : 0);
}

uint64_t ctl_kube_endpoint_of(const kube_conn_t *c)
{
    uint64_t h = hash_field(0, c->server, c->server ? strlen(c->server) : 0);
    h = hash_field(h, c->ca_data, c->ca_data ? c->ca_len : 0);
    h = hash_field(h, c->ca_file, c->ca_file ? strlen(c->ca_file) : 0);
    h = hash_field(h, c->tls_server_name, c->tls_server_name ? strlen(c->tls_server_name) : 0);
    return base_hash_more(h, &c->insecure, sizeof(c->insecure));
}

/* Parses the kubeconfig of cluster id; 0 with conn filled, or -1 (logged,
 * counted). */
static int remote_conn(ctl_kube_t *k, const char *secret, const char *id, const char *b64,
                       kube_conn_t *conn)
{
    char err[CTL_ERRLEN];
    size_t len;
    char *text = kube_base64_decode(b64, &len);
    memset(conn, 0, sizeof(*conn));
    int rc = text ? kube_conn_from_kubeconfig(text, len, NULL, conn, err, sizeof(err)) : -1;
    if (!text)
        snprintf(err, sizeof(err), "value is not base64");
    if (rc == 0 && strcmp(id, ctl_config(k->ctl)->cluster_id) == 0) {
        snprintf(err, sizeof(err), "names the local cluster");
        rc = -1;
    }
    free(text);
    if (rc < 0) {
        kube_conn_free(conn);
        atomic_fetch_add(&ctl_metrics.decode_errors, 1);
        ctl_log(CTL_WARN, "Secret %s, cluster %s: %s", secret, id, err);
    }
    return rc;
}

static bool add_remote(ctl_kube_t *k, const char *secret, const char *id, const kube_conn_t *conn)
{
    char err[CTL_ERRLEN];
    if (kube_watcher_add_cluster(k->w, id, conn, REMOTE_RES, err, sizeof(err)) < 0) {
        atomic_fetch_add(&ctl_metrics.decode_errors, 1);
        ctl_log(CTL_WARN, "Secret %s, cluster %s: %s", secret, id, err);
        return false;
    }
    topo_t *t = topo_add(k, id);
    if (t) {
        push_cluster(k, t);
        note_pending(k, t);
    }
    return true;
}

static void on_secret(ctl_kube_t *k, kube_ev_t ev, json_t *obj)
{
    const char *secret =
        json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    json_t *data = ev == KUBE_EV_DELETED ? NULL : json_object_get(obj, "data");
    if (!secret)
        return;
    /* clusters this Secret no longer names */
    for (size_t i = 0; i < k->nremotes;) {
        if (strcmp(k->remotes[i].secret, secret) == 0 && !json_object_get(data, k->remotes[i].id))
            remove_remote(k, i, "");
        else
            i++;
    }
    const char *id;
    json_t *val;
    json_object_foreach(data, id, val)
    {
        if (!json_is_string(val) || k->nremotes == MAX_REMOTES)
            continue;
        size_t i = 0;
        while (i < k->nremotes && strcmp(k->remotes[i].id, id) != 0)
            i++;
        if (i < k->nremotes && strcmp(k->remotes[i].secret, secret) != 0) {
            ctl_log(CTL_WARN, "Secret %s names cluster %s, already declared by Secret %s", secret,
                    id, k->remotes[i].secret);
            continue;
        }
        kube_conn_t conn;
        if (remote_conn(k, secret, id, json_string_value(val), &conn) < 0)
            continue;
        uint64_t endpoint = ctl_kube_endpoint_of(&conn);
        if (i < k->nremotes && k->remotes[i].endpoint != endpoint) {
            /* Another API server (or CA): its resourceVersions say nothing
             * about what we cached, so, as istiod does, drop the cluster and
             * list it again from nothing. */
            char why[600];
            snprintf(why, sizeof(why),
                     ": it now points at %.250s%s, was %.250s; its informers start from scratch",
                     conn.server ? conn.server : "?",
                     k->remotes[i].server && conn.server &&
                             strcmp(k->remotes[i].server, conn.server) == 0
                         ? " with another CA or TLS name"
                         : "",
                     k->remotes[i].server ? k->remotes[i].server : "?");
            remove_remote(k, i, why);
            i = k->nremotes;
        }
        /* the same server again: reconnect with the new credentials, keeping the caches */
        if (add_remote(k, secret, id, &conn) && i == k->nremotes) {
            k->remotes[k->nremotes++] = (remote_t){strdup(id), strdup(secret), endpoint,
                                                   strdup(conn.server ? conn.server : "")};
            ctl_log(CTL_INFO, "cluster %s added (Secret %s, server %s)", id, secret,
                    conn.server ? conn.server : "?");
        }
        kube_conn_free(&conn);
    }
}

/* ---------- the watcher callback ---------- */

/* The lists a cluster still waits for, as "pods, services" (or ""). */
static void pending_lists(const ctl_kube_t *k, const topo_t *t, char *out, size_t len)
{
    bool local = strcmp(t->id, ctl_config(k->ctl)->cluster_id) == 0;
    unsigned want = local ? k->local_res : REMOTE_RES;
    size_t n = 0;
    out[0] = '\0';
    for (int r = 0; r < KUBE_RES__COUNT; r++) {
        if (!(want & KUBE_RES_BIT(r)) || (t->synced & KUBE_RES_BIT(r)))
            continue;
        int w = snprintf(out + n, len - n, "%s%s", n ? ", " : "", kube_res_name((kube_res_t)r));
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
}

static bool fully_synced(const ctl_kube_t *k, const topo_t *t)
{
    bool local = strcmp(t->id, ctl_config(k->ctl)->cluster_id) == 0;
    unsigned want = local ? k->local_res : REMOTE_RES;
    return (t->synced & want) == want;
}

static void note_pending(ctl_kube_t *k, const topo_t *t)
{
    char pending[512];
    pending_lists(k, t, pending, sizeof(pending));
    ctl_cluster_note(k->ctl, t->id, "pendingLists", *pending ? json_string(pending) : NULL);
}

/* While an API server is down every informer retries with backoff and each
 * failure is reported: one line per (cluster, resource, kind of error) a
 * minute, then how many were suppressed (the metrics count them all). The
 * kind is the message up to its detail: "cluster west: list pods: HTTP 403"
 * from "cluster west: list pods: HTTP 403: pods is forbidden ...". */
static void log_error(ctl_kube_t *k, const char *cluster, kube_res_t res, const char *msg)
{
    char key[160];
    const char *m = msg ? msg : "watch error";
    const char *cut = m;
    for (int colons = 0; colons < 3 && cut; colons++)
        cut = strstr(cut + (colons ? 2 : 0), ": ");
    int klen = cut ? (int)(cut - m) : (int)strlen(m);
    snprintf(key, sizeof(key), "%.*s [%s]", klen > 120 ? 120 : klen, m,
             res < KUBE_RES__COUNT ? kube_res_name(res) : "cluster");
    ctl_ratelog(k->errlog, time(NULL), CTL_WARN, key, m);
    topo_t *t = topo_of(k, cluster);
    if (t) {
        snprintf(t->last_error, sizeof(t->last_error), "%s", m);
        ctl_cluster_note(k->ctl, cluster, "lastError", json_string(t->last_error));
    }
}

/* A cluster whose lists have not all completed after sync-warn-after: say
 * which and why (an API server that accepts and never answers reports no
 * error at all, and would otherwise be seen only when it turns stale). */
static void check_slow(ctl_kube_t *k, topo_t *t, time_t now)
{
    int after = ctl_config(k->ctl)->sync_warn_after_s;
    if (t->slow_warned || fully_synced(k, t) || now - t->since < after)
        return;
    t->slow_warned = true;
    atomic_fetch_add(&ctl_metrics.sync_slow, 1);
    bool local = strcmp(t->id, ctl_config(k->ctl)->cluster_id) == 0;
    char pending[512], problem[1024];
    pending_lists(k, t, pending, sizeof(pending));
    snprintf(problem, sizeof(problem),
             "not synced after %lld s: the lists of %s have not completed (%s)",
             (long long)(now - t->since), pending,
             t->last_error[0] ? t->last_error : "no error: the API server has not answered");
    ctl_log(CTL_WARN, "cluster %s: %s; %s", t->id, problem,
            local ? "this replica is not ready until they do"
                  : "a remote cluster does not gate readiness; its objects are served once listed");
    ctl_cluster_note(k->ctl, t->id, "problem", json_string(problem));
}

static void *reporter_main(void *arg)
{
    ctl_kube_t *k = arg;
    pthread_mutex_lock(&k->lock);
    while (!k->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&k->cond, &k->lock, &ts);
        if (k->stop)
            break;
        time_t now = time(NULL);
        for (size_t i = 0; i < k->ntopo; i++)
            check_slow(k, &k->topo[i], now);
        ctl_ratelog_flush(k->errlog, now);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

static void on_servicescope(ctl_kube_t *k, kube_ev_t ev, json_t *obj)
{
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    if (!name)
        return;
    json_t *old = json_object_get(k->scopes, name);
    /* our own status writes come back as MODIFIED: only a new spec
     * changes the rules */
    if (ev != KUBE_EV_DELETED && old &&
        json_equal(json_object_get(old, "spec"), json_object_get(obj, "spec")))
        return;
    if (ev == KUBE_EV_DELETED) {
        json_object_del(k->scopes, name);
        ctl_status_note(k->status, name, 0, true, NULL);
    } else {
        json_object_set(k->scopes, name, obj);
    }
    rebuild_servicescopes(k);
}

static void on_event_locked(ctl_kube_t *k, const char *cluster, kube_res_t res, kube_ev_t ev,
                            const kube_obj_t *o, const char *msg)
{
    bool local = strcmp(cluster, ctl_config(k->ctl)->cluster_id) == 0;
    ctl_event_t st = {.type = CTL_EV_CLUSTER_STATE, .cluster = NULL};
    switch (ev) {
    case KUBE_EV_ERROR:
        log_error(k, cluster, res, msg);
        return;
    case KUBE_EV_RELISTED:
        /* new content under an unchanged resourceVersion means the cluster
         * behind the API server was recreated or restored: worth a warning */
        ctl_log(msg && strstr(msg, "unchanged resourceVersion") ? CTL_WARN : CTL_INFO, "%s",
                msg ? msg : "relisted");
        return;
    case KUBE_EV_STALE:
    case KUBE_EV_RECOVERED: {
        topo_t *t = topo_of(k, cluster);
        char problem[600] = "";
        if (ev == KUBE_EV_STALE) {
            snprintf(problem, sizeof(problem),
                     "stale: no request succeeded for %d s (%.400s); its last known state is kept",
                     ctl_config(k->ctl)->stale_after_s,
                     t && t->last_error[0] ? t->last_error
                                           : "no error: the API server has not answered");
            ctl_log(CTL_WARN, "cluster %s is %s", cluster, problem);
        } else {
            ctl_log(CTL_INFO, "cluster %s is back", cluster);
        }
        ctl_cluster_note(k->ctl, cluster, "problem", *problem ? json_string(problem) : NULL);
        st.cluster = strdup(cluster);
        st.state = ev == KUBE_EV_STALE ? MODEL_CLUSTER_STALE : MODEL_CLUSTER_SYNCED;
        ctl_push(k->ctl, &st);
        return;
    }
    case KUBE_EV_SYNCED: {
        topo_t *t = topo_of(k, cluster);
        if (!t)
            return;
        bool was = fully_synced(k, t);
        t->synced |= KUBE_RES_BIT(res);
        if (local)
            ctl_rootcert_synced(k->rootcert, res);
        note_pending(k, t);
        if (fully_synced(k, t)) {
            if (!was) {
                ctl_log(CTL_INFO, "cluster %s synced (%s, %lld s)", cluster,
                        local ? "local" : "remote", (long long)(time(NULL) - t->since));
                ctl_cluster_note(k->ctl, cluster, "problem", NULL);
            }
            st.cluster = strdup(cluster);
            st.state = MODEL_CLUSTER_SYNCED;
            ctl_push(k->ctl, &st);
        }
        return;
    }
    default:
        break;
    }
    if (!o)
        return;
    if (local && res == KUBE_RES_NAMESPACES)
        ctl_rootcert_namespace(k->rootcert, kube_obj_name(o), ev == KUBE_EV_DELETED);
    if (MODEL_RES & KUBE_RES_BIT(res)) {
        on_object(k, cluster, res, ev, o);
        return;
    }
    json_t *obj = kube_obj_json(o);
    if (!obj) {
        ctl_log(CTL_WARN, "cluster %s: %s: out of memory", cluster, kube_res_name(res));
        return;
    }
    if (res == KUBE_RES_GATEWAYS)
        on_gateway(k, cluster, ev, obj);
    else if (res == KUBE_RES_SECRETS && local)
        on_secret(k, ev, obj);
    else if (res == KUBE_RES_CONFIGMAPS && local)
        on_configmap(k, ev, obj);
    else if (res == KUBE_RES_SERVICESCOPES && local)
        on_servicescope(k, ev, obj);
    else if (res == KUBE_RES_ROOT_CERTS && local)
        ctl_rootcert_configmap(k->rootcert, kube_obj_namespace(o),
                               ev == KUBE_EV_DELETED ? NULL : obj);
    json_decref(obj);
}

static void on_event(void *arg, const char *cluster, kube_res_t res, kube_ev_t ev,
                     const kube_obj_t *o, const char *msg)
{
    ctl_kube_t *k = arg;
    pthread_mutex_lock(&k->lock);
    /* a cluster just removed may still deliver what its informers had
     * read: it must not come back into the model */
    if (topo_of(k, cluster))
        on_event_locked(k, cluster, res, ev, o, msg);
    pthread_mutex_unlock(&k->lock);
}

ctl_kube_t *ctl_kube_start(ctl_t *c, char *err, size_t errlen)
{
    const ctl_config_t *cfg = ctl_config(c);
    kube_conn_t conn;
    memset(&conn, 0, sizeof(conn));
    int rc;
    if (cfg->kubeconfig) {
        char rerr[CTL_ERRLEN];
        size_t len = 0;
        char *text = ctl_read_file(cfg->kubeconfig, CTL_MAX_MANIFEST, &len, rerr, sizeof(rerr));
        if (!text) {
            snprintf(err, errlen, "kubeconfig: %s", rerr);
            return NULL;
        }
        rc =
            kube_conn_from_kubeconfig_ex(text, len, cfg->context, KUBE_KC_EXEC, &conn, err, errlen);
        free(text);
    } else {
        rc = kube_conn_in_cluster(&conn, err, errlen);
    }
    ctl_kube_t *k = rc == 0 ? calloc(1, sizeof(*k)) : NULL;
    if (!k) {
        kube_conn_free(&conn);
        return NULL;
    }
    k->ctl = c;
    k->scopes = json_object();
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    k->errlog = ctl_ratelog_new(60, 1024);
    k->local_res = KUBE_RES_ALL;
    if (!cfg->ca_enabled)
        k->local_res &= ~KUBE_RES_BIT(KUBE_RES_ROOT_CERTS);
    k->status = ctl_status_start(c, &conn, err, errlen);
    if (k->status && cfg->ca_enabled)
        k->rootcert = ctl_rootcert_start(&conn, k->status, err, errlen);
    if (!k->status || (cfg->ca_enabled && !k->rootcert)) {
        kube_conn_free(&conn);
        ctl_kube_stop(k);
        return NULL;
    }
    k->w = kube_watcher_new(on_event, k, cfg->system_namespace, cfg->stale_after_s);
    if (k->w)
        kube_watcher_set_list_limits(k->w, (unsigned)cfg->kube_max_list_pages,
                                     (size_t)cfg->kube_max_list_objects);
    topo_t *t = topo_add(k, cfg->cluster_id);
    push_cluster(k, t);
    note_pending(k, t);
    k->reporter_started = pthread_create(&k->reporter, NULL, reporter_main, k) == 0;
    if (!k->w || !k->errlog || !k->reporter_started ||
        kube_watcher_add_cluster(k->w, cfg->cluster_id, &conn, k->local_res, err, errlen) < 0 ||
        kube_watcher_start(k->w) < 0) {
        if (!*err)
            snprintf(err, errlen, "cannot start the Kubernetes watcher");
        kube_conn_free(&conn);
        ctl_kube_stop(k);
        return NULL;
    }
    kube_conn_free(&conn);
    return k;
}

int ctl_kube_conn(void *arg, const char *cluster, kube_conn_t *out)
{
    ctl_kube_t *k = arg;
    return k && k->w ? kube_watcher_conn(k->w, cluster, out) : -1;
}

void ctl_kube_set_ca_root(ctl_kube_t *k, const char *pem)
{
    if (k)
        ctl_rootcert_set_root(k->rootcert, pem);
}

void ctl_kube_stats(ctl_kube_t *k, kube_stats_t *out)
{
    kube_watcher_stats(k->w, out);
}

static json_t *res_names(unsigned bits)
{
    json_t *a = json_array();
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        if (bits & KUBE_RES_BIT(r))
            json_array_append_new(a, json_string(kube_res_name((kube_res_t)r)));
    return a;
}

void ctl_kube_cluster_conditions(ctl_kube_t *k, const char *id, json_t *out)
{
    kube_cluster_info_t info;
    if (!k || !k->w || kube_watcher_cluster_info(k->w, id, &info) < 0)
        return;
    if (info.forbidden)
        json_object_set_new(out, "forbidden", res_names(info.forbidden));
    if (info.absent)
        json_object_set_new(out, "absent", res_names(info.absent));
}

void ctl_kube_stop(ctl_kube_t *k)
{
    if (!k)
        return;
    kube_watcher_free(k->w);
    if (k->reporter_started) {
        pthread_mutex_lock(&k->lock);
        k->stop = true;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
        pthread_join(k->reporter, NULL);
    }
    ctl_rootcert_stop(k->rootcert); /* before the lease it asks */
    ctl_status_stop(k->status);
    for (size_t i = 0; i < k->nremotes; i++) {
        free(k->remotes[i].id);
        free(k->remotes[i].secret);
        free(k->remotes[i].server);
    }
    json_decref(k->scopes);
    ctl_ratelog_free(k->errlog);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->cond);
    free(k);
}
