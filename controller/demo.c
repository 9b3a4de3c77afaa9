/*
 * demo.c - file-backed clusters for the embedded demo and for trying meshfed
 * without a cluster.
 *
 * Each subdirectory of the demo directory is one cluster, named after it; its
 * *.yaml, *.yml and *.json files hold plain Kubernetes objects. A thread
 * polls the files; when a directory changes (and then stays unchanged for
 * one poll, so that a file being written is not read half-way) it is
 * reloaded the way an informer relists: drop every kind, apply what the
 * files say now. The model turns that into the exact difference, so clients
 * see only what changed.
 *
 * A file that does not parse keeps its last good documents, as an informer
 * keeps its last list when a new one is malformed: one bad edit must not
 * take a cluster's services away. The log, /debug/clusterz (fileErrors) and
 * meshfed_demo_file_errors_total say so.
 */
#include "base.h"
#include "ctl_int.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CLUSTERS 64

typedef struct demo_cluster {
    char *id;
    uint64_t sig;     /* changes when any file of the directory changes */
    uint64_t pending; /* a new signature seen once: reload when it holds */
    json_t *good;     /* file name -> array of its last documents that parsed */
} demo_cluster_t;

struct ctl_demo {
    ctl_t *ctl;
    char *dir;
    demo_cluster_t clusters[MAX_CLUSTERS];
    size_t n;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    ctl_ratelog_t *log; /* invalid objects, per cluster, file and kind */
};

/* dir/name into path; false (and path "") when it does not fit. */
static bool join(char *path, size_t len, const char *dir, const char *name)
{
    int n = snprintf(path, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        path[0] = '\0';
        return false;
    }
    return true;
}

static bool manifest_name(const char *n)
{
    size_t l = strlen(n);
    return n[0] != '.' && ((l > 5 && strcmp(n + l - 5, ".yaml") == 0) ||
                           (l > 4 && strcmp(n + l - 4, ".yml") == 0) ||
                           (l > 5 && strcmp(n + l - 5, ".json") == 0));
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entries of dir accepted by keep(); caller frees. */
static size_t list_dir(const char *dir, bool (*keep)(const char *dir, const char *name),
                       char ***out)
{
    DIR *d = opendir(dir);
    char **v = NULL;
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!keep(dir, e->d_name))
            continue;
        char **nv = realloc(v, (n + 1) * sizeof(char *));
        if (!nv)
            break;
        v = nv;
        v[n++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    if (n > 1)
        qsort(v, n, sizeof(char *), cmp_names);
    *out = v;
    return n;
}

static bool keep_manifest(const char *dir, const char *name)
{
    (void)dir;
    return manifest_name(name);
}

static bool keep_subdir(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    join(path, sizeof(path), dir, name);
    return name[0] != '.' && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static uint64_t dir_signature(const char *dir)
{
    char **files;
    size_t n = list_dir(dir, keep_manifest, &files);
    uint64_t sig = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        join(path, sizeof(path), dir, files[i]);
        if (stat(path, &st) != 0)
            continue;
        uint64_t parts[3] = {(uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec,
                             (uint64_t)st.st_size};
        sig = base_hash_more(sig, parts, sizeof(parts));
        sig = base_hash_more(sig, files[i], strlen(files[i]));
    }
    free_names(files, n);
    return sig;
}

/* ---------- loading one cluster ---------- */

typedef struct load_ctx {
    ctl_demo_t *d;
    const char *cluster;
    const char *file;
    bool local;                 /* the config cluster: its ServiceScopes count */
    model_scope_rules_t *rules; /* ServiceScopes found */
    model_cluster_t info;       /* network and gateway found */
    bool gw_from_gateway;
    ctl_event_t *objs;
    size_t nobjs, cap;
} load_ctx_t;

static void add_obj(load_ctx_t *l, model_kind_t kind, void *obj)
{
    if (l->nobjs == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->objs = realloc(l->objs, l->cap * sizeof(*l->objs));
        if (!l->objs)
            abort();
    }
    l->objs[l->nobjs++] = (ctl_event_t){.type = CTL_EV_OBJECT,
                                        .cluster = strdup(l->cluster),
                                        .kind = kind,
                                        .op = MODEL_OP_UPSERT,
                                        .obj = obj};
}

/* The network label of the system namespace; the east-west gateway is a
 * Service there labelled with the network and holding a load-balancer IP. */
static void use_gateway(load_ctx_t *l, const ctl_gateway_t *g, bool from_gateway)
{
    if (l->gw_from_gateway && !from_gateway)
        return; /* a Gateway object wins over a labelled Service */
    l->gw_from_gateway = from_gateway;
    ctl_cluster_info_gateway(&l->info, g, NULL, NULL);
}

static void note_topology(load_ctx_t *l, model_kind_t kind, const void *obj)
{
    const ctl_config_t *cfg = ctl_config(l->d->ctl);
    ctl_gateway_t g;
    if (kind == MODEL_KIND_NAMESPACE) {
        const model_namespace_t *ns = obj;
        const char *net = model_labels_get(&ns->labels, "topology.istio.io/network");
        if (strcmp(ns->name, cfg->system_namespace) == 0 && net) {
            free((char *)l->info.network);
            l->info.network = strdup(net);
        }
    } else if (kind == MODEL_KIND_SERVICE &&
               ctl_gateway_from_service(obj, cfg->system_namespace, &g)) {
        use_gateway(l, &g, false);
    }
}

static int mesh_doc(json_t *doc, void *arg)
{
    load_ctx_t *l = arg;
    char err[CTL_ERRLEN];
    json_t *arr = json_object_get(doc, "serviceScopeConfigs");
    if (arr && kube_decode_scope_configs(arr, "MeshConfig", l->rules, err, sizeof(err)) < 0) {
        atomic_fetch_add(&ctl_metrics.scope_errors, 1);
        ctl_log(CTL_WARN, "%s/%s: ConfigMap istio: %s", l->cluster, l->file, err);
    }
    return 0;
}

/* MeshConfig's serviceScopeConfigs, from the "mesh" key of the istio ConfigMap
 * in the system namespace, as istiod reads it. */
static void load_meshconfig(load_ctx_t *l, json_t *doc)
{
    json_t *meta = json_object_get(doc, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    const char *mesh = json_string_value(json_object_get(json_object_get(doc, "data"), "mesh"));
    if (!name || !ns || !mesh || strcmp(name, "istio") != 0 ||
        strcmp(ns, ctl_config(l->d->ctl)->system_namespace) != 0)
        return;
    char err[CTL_ERRLEN];
    if (kube_manifest_load_string(mesh, strlen(mesh), mesh_doc, l, err, sizeof(err)) < 0) {
        atomic_fetch_add(&ctl_metrics.scope_errors, 1);
        ctl_log(CTL_WARN, "%s/%s: ConfigMap istio data.mesh: %s", l->cluster, l->file, err);
    }
}

/* An object that does not decode: a file may hold thousands, so one line per
 * (cluster, file, kind) a minute, then how many more (counters count all). */
static void invalid(load_ctx_t *l, const char *kind, const char *err)
{
    char key[300], msg[CTL_ERRLEN + 300];
    snprintf(key, sizeof(key), "%.60s/%.120s: invalid %.60s objects", l->cluster, l->file, kind);
    snprintf(msg, sizeof(msg), "%s/%s: %s", l->cluster, l->file, err);
    ctl_ratelog(l->d->log, time(NULL), CTL_WARN, key, msg);
}

static int load_doc(json_t *doc, void *arg)
{
    load_ctx_t *l = arg;
    const char *api = json_string_value(json_object_get(doc, "apiVersion"));
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    char err[CTL_ERRLEN];
    model_kind_t k;
    if (api && kind && strcmp(kind, "ServiceScope") == 0) {
        if (!l->local) {
            ctl_log(CTL_WARN, "%s/%s: ServiceScope ignored: only the config cluster's count",
                    l->cluster, l->file);
            return 0;
        }
        if (kube_decode_servicescope(doc, l->rules, err, sizeof(err)) < 0) {
            atomic_fetch_add(&ctl_metrics.scope_errors, 1);
            invalid(l, kind, err);
        }
        return 0;
    }
    /* an east-west Gateway is also kept as a possible waypoint, as every
     * Gateway is on a live cluster (clusters.c on_gateway) */
    ctl_gateway_t g;
    int gw = kind && strcmp(kind, "Gateway") == 0 ? ctl_gateway_from_json(doc, &g) : 0;
    if (gw > 0)
        use_gateway(l, &g, true);
    if (gw < 0) {
        atomic_fetch_add(&ctl_metrics.gateway_errors, 1);
        ctl_log(CTL_WARN, "%s/%s: %s; its network is not reachable from others until fixed",
                l->cluster, l->file, g.problem);
        if (!l->gw_from_gateway)
            ctl_cluster_info_gateway(&l->info, NULL, NULL, g.problem);
    }
    if (l->local && api && kind && strcmp(api, "v1") == 0 && strcmp(kind, "ConfigMap") == 0) {
        load_meshconfig(l, doc);
        return 0;
    }
    if (!api || !kind || kube_kind_lookup(api, kind, &k) < 0) {
        ctl_log(CTL_DEBUG, "%s/%s: skipping %s %s", l->cluster, l->file, api ? api : "?",
                kind ? kind : "?");
        return 0;
    }
    void *obj;
    const char *rev = json_string_value(json_object_get(
        json_object_get(json_object_get(doc, "metadata"), "labels"), "istio.io/rev"));
    if ((k == MODEL_KIND_AUTHZ_POLICY || k == MODEL_KIND_PEER_AUTHN) &&
        !ctl_in_revision(rev, ctl_config(l->d->ctl)->revision))
        return 0;
    if (kube_decode(k, doc, &obj, err, sizeof(err)) < 0 ||
        (k == MODEL_KIND_AUTHZ_POLICY && ctl_policy_refused(&obj, err, sizeof(err)))) {
        bool sec = k == MODEL_KIND_AUTHZ_POLICY || k == MODEL_KIND_PEER_AUTHN;
        atomic_fetch_add(sec ? &ctl_metrics.policy_errors : &ctl_metrics.decode_errors, 1);
        invalid(l, kind, err);
        /* as on a live cluster: fail closed (see kube_obj_decode_failsafe) */
        if (!sec || kube_decode_failsafe(k, doc, err, &obj) < 0)
            return 0;
    }
    note_topology(l, k, obj);
    add_obj(l, k, obj);
    return 0;
}

static int collect_doc(json_t *doc, void *arg)
{
    json_array_append(arg, doc);
    return 0;
}

/* The documents of file: what it holds now, or, when it does not parse, its
 * last good ones (reported in bad). New reference. */
static json_t *file_docs(demo_cluster_t *dc, const char *path, const char *file, json_t *bad)
{
    char err[CTL_ERRLEN];
    json_t *docs = json_array();
    if (ctl_manifest_load_file(path, collect_doc, docs, err, sizeof(err)) == 0)
        return docs;
    json_decref(docs);
    atomic_fetch_add(&ctl_metrics.decode_errors, 1);
    atomic_fetch_add(&ctl_metrics.demo_file_errors, 1);
    json_t *prev = json_object_get(dc->good, file);
    if (json_array_size(prev) == 0)
        prev = NULL;
    char clean[CTL_ERRLEN];
    ctl_utf8_clean(err, clean, sizeof(clean));
    if (prev)
        ctl_log(CTL_WARN, "%s; cluster %s keeps this file's last good state (%zu documents)", err,
                dc->id, json_array_size(prev));
    else
        ctl_log(CTL_WARN, "%s; nothing loaded from it (no earlier good state)", err);
    json_array_append_new(bad, json_pack("{s:s, s:s, s:b}", "file", file, "error", clean,
                                         "keptLastGood", prev != NULL));
    return prev ? json_incref(prev) : json_array();
}

static void push_cluster(ctl_demo_t *d, demo_cluster_t *dc, bool reload)
{
    const char *id = dc->id;
    const ctl_config_t *cfg = ctl_config(d->ctl);
    char dir[4096];
    join(dir, sizeof(dir), d->dir, id);
    load_ctx_t l = {.d = d, .cluster = id, .rules = model_scope_rules_new()};
    l.local = strcmp(id, cfg->cluster_id) == 0 ||
              (d->n && strcmp(id, d->clusters[0].id) == 0 && !keep_subdir(d->dir, cfg->cluster_id));
    char **files;
    size_t nfiles = list_dir(dir, keep_manifest, &files);
    json_t *good = json_object(), *bad = json_array();
    for (size_t i = 0; i < nfiles; i++) {
        char path[8192];
        join(path, sizeof(path), dir, files[i]);
        l.file = files[i];
        json_t *docs = file_docs(dc, path, files[i], bad);
        size_t k;
        json_t *doc;
        json_array_foreach(docs, k, doc) load_doc(doc, &l);
        json_object_set_new(good, files[i], docs);
    }
    free_names(files, nfiles);
    json_decref(dc->good); /* files that went away take their documents with them */
    dc->good = good;
    ctl_cluster_note(d->ctl, id, "fileErrors", json_array_size(bad) ? json_incref(bad) : NULL);
    json_decref(bad);
    if (l.local && cfg->network && *cfg->network) {
        free((char *)l.info.network);
        l.info.network = strdup(cfg->network);
    }
    ctl_event_t ev = {.type = CTL_EV_CLUSTER_SET, .info = l.info};
    ev.info.id = strdup(id);
    if (!ev.info.network)
        ev.info.network = strdup("");
    ctl_push(d->ctl, &ev);
    for (int k = 0; reload && k < MODEL_KIND__COUNT; k++) {
        ctl_event_t clr = {
            .type = CTL_EV_CLEAR_KIND, .cluster = strdup(id), .kind = (model_kind_t)k};
        ctl_push(d->ctl, &clr);
    }
    for (size_t i = 0; i < l.nobjs; i++)
        ctl_push(d->ctl, &l.objs[i]);
    free(l.objs);
    if (l.local) {
        char src[300];
        snprintf(src, sizeof(src), "%s/ServiceScope", id);
        bool none = model_scope_rules_count(l.rules) == 0;
        ctl_event_t sc = {
            .type = CTL_EV_SCOPES, .source = strdup(src), .rules = none ? NULL : l.rules};
        if (none)
            model_scope_rules_free(l.rules);
        ctl_push(d->ctl, &sc);
    } else {
        model_scope_rules_free(l.rules);
    }
    ctl_event_t st = {
        .type = CTL_EV_CLUSTER_STATE, .cluster = strdup(id), .state = MODEL_CLUSTER_SYNCED};
    ctl_push(d->ctl, &st);
    ctl_log(CTL_INFO, "cluster %s %s from %s (%zu objects)", id, reload ? "reloaded" : "loaded",
            dir, l.nobjs);
}

/* ---------- watching ---------- */

static void scan(ctl_demo_t *d)
{
    char **dirs;
    size_t n = list_dir(d->dir, keep_subdir, &dirs);
    /* clusters whose directory went away */
    for (size_t i = 0; i < d->n;) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = strcmp(dirs[j], d->clusters[i].id) == 0;
        if (found) {
            i++;
            continue;
        }
        ctl_event_t ev = {.type = CTL_EV_CLUSTER_REMOVE, .cluster = d->clusters[i].id};
        ctl_log(CTL_INFO, "cluster %s removed", d->clusters[i].id);
        ctl_cluster_note(d->ctl, d->clusters[i].id, NULL, NULL);
        json_decref(d->clusters[i].good);
        ctl_push(d->ctl, &ev);
        d->clusters[i] = d->clusters[--d->n];
    }
    for (size_t j = 0; j < n; j++) {
        char path[4096];
        join(path, sizeof(path), d->dir, dirs[j]);
        uint64_t sig = dir_signature(path);
        size_t i = 0;
        while (i < d->n && strcmp(d->clusters[i].id, dirs[j]) != 0)
            i++;
        if (i == d->n) {
            if (d->n == MAX_CLUSTERS)
                continue;
            d->clusters[d->n] = (demo_cluster_t){strdup(dirs[j]), sig, sig, json_object()};
            push_cluster(d, &d->clusters[d->n++], false);
        } else if (d->clusters[i].sig != sig && d->clusters[i].pending != sig) {
            d->clusters[i].pending = sig; /* maybe being written: wait one poll */
        } else if (d->clusters[i].sig != sig) {
            d->clusters[i].sig = sig;
            atomic_fetch_add(&ctl_metrics.demo_reloads, 1);
            push_cluster(d, &d->clusters[i], true);
        }
    }
    free_names(dirs, n);
}

static void *watch_thread(void *arg)
{
    ctl_demo_t *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 500000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
        if (d->stop)
            break;
        pthread_mutex_unlock(&d->lock);
        scan(d);
        ctl_ratelog_flush(d->log, time(NULL));
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

ctl_demo_t *ctl_demo_start(ctl_t *c, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "demo: \"%s\" is not a directory", dir);
        return NULL;
    }
    ctl_demo_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->ctl = c;
    d->dir = strdup(dir);
    d->log = ctl_ratelog_new(60, 256);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    scan(d);
    if (d->n == 0) {
        snprintf(err, errlen, "demo: \"%s\" has no cluster subdirectories", dir);
        ctl_demo_stop(d);
        return NULL;
    }
    if (pthread_create(&d->thread, NULL, watch_thread, d) != 0) {
        snprintf(err, errlen, "demo: cannot start the watcher thread");
        d->thread = 0;
        ctl_demo_stop(d);
        return NULL;
    }
    return d;
}

void ctl_demo_stop(ctl_demo_t *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->thread)
        pthread_join(d->thread, NULL);
    for (size_t i = 0; i < d->n; i++) {
        free(d->clusters[i].id);
        json_decref(d->clusters[i].good);
    }
    free(d->dir);
    ctl_ratelog_free(d->log);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d);
}
