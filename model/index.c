/*
 * index.c - the model's input side: clusters and their objects.
 *
 * Each cluster keeps its objects by kind, plus two derived indexes that make
 * an event cost proportional to what it touches: EndpointSlices by service
 * and by pod. Every event marks the outputs it may change as dirty; the next
 * model_commit() rebuilds just those (derive.c).
 */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *key2(const char *ns, const char *name)
{
    size_t a = strlen(ns), b = strlen(name);
    char *k = malloc(a + b + 2);
    if (!k)
        abort();
    memcpy(k, ns, a);
    k[a] = '/';
    memcpy(k + a + 1, name, b + 1);
    return k;
}

char *model_obj_key(model_kind_t kind, const void *obj)
{
    switch (kind) {
    case MODEL_KIND_NAMESPACE:
        return strdup(((const model_namespace_t *)obj)->name);
    case MODEL_KIND_NODE:
        return strdup(((const model_node_t *)obj)->name);
    case MODEL_KIND_SERVICE:
        return key2(((const model_service_t *)obj)->ns, ((const model_service_t *)obj)->name);
    case MODEL_KIND_ENDPOINTSLICE:
        return key2(((const model_endpointslice_t *)obj)->ns,
                    ((const model_endpointslice_t *)obj)->name);
    case MODEL_KIND_POD:
        return key2(((const model_pod_t *)obj)->ns, ((const model_pod_t *)obj)->name);
    case MODEL_KIND_AUTHZ_POLICY:
        return key2(((const model_authz_policy_t *)obj)->ns,
                    ((const model_authz_policy_t *)obj)->name);
    case MODEL_KIND_PEER_AUTHN:
        return key2(((const model_peer_authn_t *)obj)->ns, ((const model_peer_authn_t *)obj)->name);
    case MODEL_KIND_GATEWAY:
        return key2(((const model_gateway_t *)obj)->ns, ((const model_gateway_t *)obj)->name);
    default:
        return NULL;
    }
}

/* ---------- small pointer sets (slices of a service, slices of a pod) ---------- */

static model_ptrs_t *ptrs_of(void *v)
{
    return (uintptr_t)v & 1u ? (model_ptrs_t *)((uintptr_t)v & ~(uintptr_t)1u) : NULL;
}

size_t model_ptrs_get(const base_map_t *h, const char *key, void *const **p)
{
    void **v = base_map_slot(h, key);
    if (!v)
        return 0;
    model_ptrs_t *s = ptrs_of(*v);
    *p = s ? s->p : v;
    return s ? s->n : 1;
}

static void ptrset_add(base_map_t *h, const char *key, void *p)
{
    void **v = base_map_slot(h, key);
    if (!v) {
        base_map_put(h, key, p);
        return;
    }
    model_ptrs_t *s = ptrs_of(*v);
    if (!s) {
        if (*v == p)
            return;
        s = calloc(1, sizeof(*s));
        if (!s || !(s->p = malloc(sizeof(void *))))
            abort();
        s->p[s->n++] = *v;
        *v = (void *)((uintptr_t)s | 1u);
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->p[i] == p)
            return;
    void **np = realloc(s->p, (s->n + 1) * sizeof(void *));
    if (!np)
        abort();
    s->p = np;
    s->p[s->n++] = p;
}

static void ptrset_del(base_map_t *h, const char *key, void *p)
{
    void **v = base_map_slot(h, key);
    if (!v)
        return;
    model_ptrs_t *s = ptrs_of(*v);
    if (!s) {
        if (*v == p)
            base_map_del(h, key);
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->p[i] == p) {
            s->p[i] = s->p[--s->n];
            break;
        }
    }
    if (s->n == 1) {
        *v = s->p[0];
        model_ptrs_free((void *)((uintptr_t)s | 1u));
    }
}

void model_ptrs_free(void *v)
{
    model_ptrs_t *s = ptrs_of(v);
    if (s)
        free(s->p);
    free(s);
}

/* ---------- shared strings of stored objects ---------- */

/* A stored pod or slice points at shared copies (strs.c) of the strings that
 * repeat across pods and endpoints: namespace, node, service account, label
 * keys and values, zone. Own copies of these were a fifth of a pod's
 * memory. Stored objects are freed with obj_free(), which drops them. */
static void share(model_strs_t *t, char **s)
{
    if (!*s)
        return;
    const char *c = model_str(t, *s);
    free(*s);
    *s = (char *)c;
}

static void unshare(char **s)
{
    model_str_unref(*s);
    *s = NULL;
}

static void obj_share(model_t *m, model_kind_t kind, void *obj)
{
    if (kind == MODEL_KIND_POD) {
        model_pod_t *p = obj;
        /* a workload's uid is cluster//Pod/ns/name: the Kubernetes uid (36
         * bytes in 48) is never read */
        free(p->uid);
        p->uid = NULL;
        share(&m->strs, &p->ns);
        share(&m->strs, &p->node);
        share(&m->strs, &p->service_account);
        share(&m->strs, &p->owner);
        /* the decoder's array had room for every label; few are kept */
        model_label_t *kv = p->labels.n ? realloc(p->labels.kv, p->labels.n * sizeof(*kv)) : NULL;
        if (kv)
            p->labels.kv = kv;
        for (size_t i = 0; i < p->labels.n; i++) {
            share(&m->strs, &p->labels.kv[i].key);
            share(&m->strs, &p->labels.kv[i].value);
        }
    } else if (kind == MODEL_KIND_ENDPOINTSLICE) {
        model_endpointslice_t *s = obj;
        for (size_t i = 0; i < s->nendpoints; i++) {
            share(&m->strs, &s->endpoints[i].node);
            share(&m->strs, &s->endpoints[i].zone);
        }
    }
}

/* A stored pod's name is the tail of its index key (model_obj_key: "ns/name"),
 * which lives exactly as long as the pod is stored: one copy fewer of a
 * string unique to each pod. obj_free() lets go of it without freeing. */
static void pod_borrow_name(model_pod_t *p, const char *key)
{
    if (!key)
        abort(); /* the pod was just stored under it */
    free(p->name);
    p->name = (char *)key + strlen(p->ns) + 1;
}

static void obj_free(model_kind_t kind, void *obj)
{
    if (!obj)
        return;
    if (kind == MODEL_KIND_POD) {
        model_pod_t *p = obj;
        p->name = NULL; /* borrowed: pod_borrow_name */
        unshare(&p->ns);
        unshare(&p->node);
        unshare(&p->service_account);
        unshare(&p->owner);
        for (size_t i = 0; i < p->labels.n; i++) {
            unshare(&p->labels.kv[i].key);
            unshare(&p->labels.kv[i].value);
        }
    } else if (kind == MODEL_KIND_ENDPOINTSLICE) {
        model_endpointslice_t *s = obj;
        for (size_t i = 0; i < s->nendpoints; i++) {
            unshare(&s->endpoints[i].node);
            unshare(&s->endpoints[i].zone);
        }
    }
    model_obj_free(kind, obj);
}

/* ---------- dirty marks ---------- */

void model_mark_service(model_t *m, const char *ns, const char *name)
{
    char *k = key2(ns, name);
    if (!base_map_get(&m->dirty_svcs, k))
        base_map_put(&m->dirty_svcs, k, m);
    free(k);
}

/* cluster ids cannot contain '\n', so "cluster\nns/name" is unambiguous */
static void mark_in(base_map_t *h, const model_cluster_int_t *c, const char *ns, const char *name)
{
    size_t a = strlen(c->id), b = strlen(ns), d = strlen(name);
    char *k = malloc(a + b + d + 3);
    if (!k)
        abort();
    sprintf(k, "%s\n%s/%s", c->id, ns, name);
    if (!base_map_get(h, k))
        base_map_put(h, k, h);
    free(k);
}

void model_mark_pod(model_t *m, const model_cluster_int_t *c, const char *ns, const char *name)
{
    mark_in(&m->dirty_pods, c, ns, name);
}

void model_mark_slice(model_t *m, const model_cluster_int_t *c, const char *ns, const char *name)
{
    mark_in(&m->dirty_slices, c, ns, name);
}

void model_mark_authz(model_t *m, const char *key)
{
    if (!base_map_get(&m->dirty_authz, key))
        base_map_put(&m->dirty_authz, key, m);
}

/* The names a cluster's PeerAuthentications make: each one's converted
 * policy (whether or not it has one: their levels decide) and the static
 * strict policy. */
static void mark_pa_names(model_t *m, const model_cluster_int_t *c)
{
    char *k = key2(m->root_ns, MODEL_AUTHZ_STATIC_STRICT);
    model_mark_authz(m, k);
    free(k);
    const base_map_t *h = &c->objs[MODEL_KIND_PEER_AUTHN];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e)) {
        const model_peer_authn_t *p = e->val;
        size_t n = strlen(p->ns) + strlen(MODEL_AUTHZ_PA_PREFIX) + strlen(p->name) + 2;
        char *ck = malloc(n);
        if (!ck)
            abort();
        snprintf(ck, n, "%s/%s%s", p->ns, MODEL_AUTHZ_PA_PREFIX, p->name);
        model_mark_authz(m, ck);
        free(ck);
    }
}

static bool labels_within(const model_labels_t *want, const model_labels_t *have)
{
    for (size_t i = 0; i < want->n; i++) {
        const char *v = model_labels_get(have, want->kv[i].key);
        if (!v || strcmp(v, want->kv[i].value) != 0)
            return false;
    }
    return true;
}

/* Pods whose policy lists a policy event may change, by "cluster\nns":
 * every pod of the namespace, or those that some selector takes. Scanning
 * a cluster's pods per event would make a relist of n policies cost n
 * scans; collected here, a commit scans once per namespace touched. */
typedef struct pol_mark {
    bool all;
    model_labels_t *sels; /* copies */
    size_t n;
} pol_mark_t;

static void pol_mark_free(void *v)
{
    pol_mark_t *pm = v;
    for (size_t i = 0; pm && i < pm->n; i++)
        model_labels_clear(&pm->sels[i]);
    if (pm)
        free(pm->sels);
    free(pm);
}

/* The pods of c in ns that sel may select (NULL: all of them). */
static void mark_policy_pods(model_t *m, const model_cluster_int_t *c, const char *ns,
                             const model_wl_selector_t *sel)
{
    size_t a = strlen(c->id), b = strlen(ns);
    char *k = malloc(a + b + 2);
    if (!k)
        abort();
    sprintf(k, "%s\n%s", c->id, ns);
    pol_mark_t *pm = base_map_get(&m->dirty_pol, k);
    if (!pm) {
        if (!(pm = calloc(1, sizeof(*pm))) || base_map_put(&m->dirty_pol, k, pm) == pm)
            abort();
    }
    free(k);
    if (pm->all)
        return;
    if (!sel) {
        pm->all = true;
        return;
    }
    model_labels_t *v = realloc(pm->sels, (pm->n + 1) * sizeof(*v));
    if (!v)
        abort();
    pm->sels = v;
    v[pm->n] = (model_labels_t){0};
    for (size_t i = 0; i < sel->labels.n; i++)
        if (model_labels_set(&v[pm->n], sel->labels.kv[i].key, sel->labels.kv[i].value) < 0)
            abort();
    pm->n++;
}

static bool pol_mark_takes(const pol_mark_t *pm, const model_pod_t *p)
{
    /* a pod without labels is selected by every selector (quirk Q3) */
    if (pm->all || !p->labels.n)
        return true;
    for (size_t i = 0; i < pm->n; i++)
        if (labels_within(&pm->sels[i], &p->labels))
            return true;
    return false;
}

static void mark_pol_one(const char *key, void *val, void *arg)
{
    model_t *m = arg;
    pol_mark_t *pm = val;
    const char *nl = strchr(key, '\n');
    char cid[256];
    snprintf(cid, sizeof(cid), "%.*s", (int)(nl - key), key);
    const char *ns = nl + 1;
    const model_cluster_int_t *c = model_cluster_find(m, cid);
    /* a root namespace policy selects workloads of every namespace */
    bool any_ns = strcmp(ns, m->root_ns) == 0;
    size_t n = strlen(ns);
    const base_map_t *h = c ? &c->objs[MODEL_KIND_POD] : NULL;
    for (base_map_ent_t *e = h ? base_map_first(h) : NULL; e; e = base_map_next(h, e)) {
        const model_pod_t *p = e->val;
        if ((any_ns || (strncmp(e->key, ns, n) == 0 && e->key[n] == '/')) && pol_mark_takes(pm, p))
            model_mark_pod(m, c, p->ns, p->name);
    }
    pol_mark_free(pm);
}

void model_mark_policy_pods(model_t *m)
{
    while (m->dirty_pol.n)
        base_map_take(&m->dirty_pol, mark_pol_one, m);
}

void model_names_free(void *p)
{
    model_names_t *n = p;
    for (size_t i = 0; n && i < n->n; i++)
        free(n->v[i]);
    if (n)
        free(n->v);
    free(n);
}

static void mark_slice_pods(model_t *m, model_cluster_int_t *c, const model_endpointslice_t *s)
{
    for (size_t i = 0; s && i < s->nendpoints; i++)
        if (s->endpoints[i].pod)
            model_mark_pod(m, c, s->ns, s->endpoints[i].pod);
}

/* ---------- clusters ---------- */

model_cluster_int_t *model_cluster_find(const model_t *m, const char *id)
{
    for (size_t i = 0; i < m->nclusters; i++)
        if (strcmp(m->clusters[i]->id, id) == 0)
            return m->clusters[i];
    return NULL;
}

static void mark_cluster_all(model_t *m, model_cluster_int_t *c)
{
    for (base_map_ent_t *e = base_map_first(&c->objs[MODEL_KIND_SERVICE]); e;
         e = base_map_next(&c->objs[MODEL_KIND_SERVICE], e)) {
        model_service_t *s = e->val;
        model_mark_service(m, s->ns, s->name);
    }
    for (base_map_ent_t *e = base_map_first(&c->objs[MODEL_KIND_POD]); e;
         e = base_map_next(&c->objs[MODEL_KIND_POD], e)) {
        model_pod_t *p = e->val;
        model_mark_pod(m, c, p->ns, p->name);
    }
    for (base_map_ent_t *e = base_map_first(&c->objs[MODEL_KIND_ENDPOINTSLICE]); e;
         e = base_map_next(&c->objs[MODEL_KIND_ENDPOINTSLICE], e)) {
        model_endpointslice_t *s = e->val;
        model_mark_slice(m, c, s->ns, s->name);
    }
    const base_map_t *h = &c->objs[MODEL_KIND_AUTHZ_POLICY];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e))
        model_mark_authz(m, e->key);
    mark_pa_names(m, c);
    c->az_stale = true;
    m->dirty_gateways = true;
}

static bool valid_id(const char *id)
{
    if (!id || !*id || strlen(id) > 253)
        return false;
    for (const char *p = id; *p; p++)
        if (*p == '/' || *p == '\n' || (unsigned char)*p < 0x20)
            return false;
    return true;
}

int model_cluster_set(model_t *m, const model_cluster_t *in, char *err, size_t errlen)
{
    if (!valid_id(in->id)) {
        snprintf(err, errlen, "invalid cluster id \"%s\": must be 1-253 characters without '/'",
                 in->id ? in->id : "");
        return -1;
    }
    model_cluster_int_t *c = model_cluster_find(m, in->id);
    if (!c) {
        c = calloc(1, sizeof(*c));
        model_cluster_int_t **nc = realloc(m->clusters, (m->nclusters + 1) * sizeof(*nc));
        if (!c || !nc)
            abort();
        m->clusters = nc;
        /* keep clusters sorted by id: every derived order follows from it */
        size_t i = m->nclusters;
        while (i > 0 && strcmp(m->clusters[i - 1]->id, in->id) > 0) {
            m->clusters[i] = m->clusters[i - 1];
            i--;
        }
        m->clusters[i] = c;
        m->nclusters++;
        c->id = strdup(in->id);
        for (int k = 0; k < MODEL_KIND__COUNT; k++)
            base_map_init(&c->objs[k]);
        base_map_init(&c->slices_by_svc);
        base_map_init(&c->slices_by_pod);
    }
    free(c->network);
    free(c->gw_ns);
    free(c->gw_name);
    free(c->gw_sa);
    free(c->gw_host);
    free(c->gw_problem);
    c->gw_problem = in->gateway_problem ? strdup(in->gateway_problem) : NULL;
    c->network = strdup(in->network ? in->network : "");
    c->gw = in->gateway;
    c->gw_port = in->gateway_port ? in->gateway_port : 15008;
    c->gw_ns = strdup(in->gateway_ns ? in->gateway_ns : "istio-system");
    c->gw_name = strdup(in->gateway_name ? in->gateway_name : "istio-eastwest");
    c->gw_sa = strdup(in->gateway_sa && *in->gateway_sa ? in->gateway_sa : c->gw_name);
    c->gw_host = in->gateway_hostname && *in->gateway_hostname && !in->gateway.len
                     ? strdup(in->gateway_hostname)
                     : NULL;
    /* A network or gateway change moves other clusters' resources too. */
    for (size_t i = 0; i < m->nclusters; i++)
        mark_cluster_all(m, m->clusters[i]);
    return 0;
}

static void cluster_free(model_cluster_int_t *c)
{
    for (int k = 0; k < MODEL_KIND__COUNT; k++) {
        for (base_map_ent_t *e = base_map_first(&c->objs[k]); e; e = base_map_next(&c->objs[k], e))
            obj_free((model_kind_t)k, e->val);
        base_map_destroy(&c->objs[k], NULL);
    }
    base_map_destroy(&c->slices_by_svc, model_ptrs_free);
    base_map_destroy(&c->slices_by_pod, model_ptrs_free);
    free((void *)c->azset.aps);
    free((void *)c->azset.pas);
    free(c->id);
    free(c->network);
    free(c->gw_ns);
    free(c->gw_name);
    free(c->gw_sa);
    free(c->gw_host);
    free(c->gw_problem);
    free(c);
}

int model_cluster_remove(model_t *m, const char *id)
{
    for (size_t i = 0; i < m->nclusters; i++) {
        model_cluster_int_t *c = m->clusters[i];
        if (strcmp(c->id, id) != 0)
            continue;
        /* Its pods' and slices' dirty keys find nothing at commit and drop
         * their resources. Every other cluster's services are rebuilt too: they
         * hold endpoints variants for this cluster as a viewer, and
         * split-horizon workloads may have used its gateway. */
        for (size_t j = 0; j < m->nclusters; j++)
            mark_cluster_all(m, m->clusters[j]);
        memmove(&m->clusters[i], &m->clusters[i + 1], (m->nclusters - i - 1) * sizeof(c));
        m->nclusters--;
        cluster_free(c);
        return 0;
    }
    return -1;
}

int model_cluster_set_state(model_t *m, const char *id, model_cluster_state_t st)
{
    model_cluster_int_t *c = model_cluster_find(m, id);
    if (!c)
        return -1;
    c->state = st;
    return 0;
}

/* ---------- object events ---------- */

static void slice_index(model_cluster_int_t *c, model_endpointslice_t *s, bool add)
{
    if (s->service) {
        char *k = key2(s->ns, s->service);
        if (add)
            ptrset_add(&c->slices_by_svc, k, s);
        else
            ptrset_del(&c->slices_by_svc, k, s);
        free(k);
    }
    for (size_t i = 0; i < s->nendpoints; i++) {
        if (!s->endpoints[i].pod)
            continue;
        char *k = key2(s->ns, s->endpoints[i].pod);
        if (add)
            ptrset_add(&c->slices_by_pod, k, s);
        else
            ptrset_del(&c->slices_by_pod, k, s);
        free(k);
    }
}

/* Marks what an object's presence affects, before and after a change. */
static void mark_pods_in(model_t *m, model_cluster_int_t *c, const char *ns)
{
    size_t n = strlen(ns);
    const base_map_t *h = &c->objs[MODEL_KIND_POD];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e))
        if (strncmp(e->key, ns, n) == 0 && e->key[n] == '/')
            model_mark_pod(m, c, ns, e->key + n + 1);
}

static void mark_effects(model_t *m, model_cluster_int_t *c, model_kind_t kind, const void *obj)
{
    if (!obj)
        return;
    switch (kind) {
    case MODEL_KIND_NAMESPACE: {
        const char *ns = ((const model_namespace_t *)obj)->name;
        size_t n = strlen(ns);
        for (base_map_ent_t *e = base_map_first(&c->objs[MODEL_KIND_SERVICE]); e;
             e = base_map_next(&c->objs[MODEL_KIND_SERVICE], e))
            if (strncmp(e->key, ns, n) == 0 && e->key[n] == '/')
                model_mark_service(m, ns, e->key + n + 1);
        /* its pods inherit its waypoint, and its labels may let them
         * attach to another namespace's */
        if (model_waypoint_labelled(&((const model_namespace_t *)obj)->labels) ||
            model_waypoint_by_selector(c))
            mark_pods_in(m, c, ns);
        break;
    }
    case MODEL_KIND_SERVICE: {
        /* its pods' workloads list the service's ports */
        const model_service_t *s = obj;
        model_mark_service(m, s->ns, s->name);
        char *k = key2(s->ns, s->name);
        void *const *slices;
        size_t n = model_ptrs_get(&c->slices_by_svc, k, &slices);
        for (size_t i = 0; i < n; i++) {
            const model_endpointslice_t *sl = slices[i];
            mark_slice_pods(m, c, sl);
            model_mark_slice(m, c, sl->ns, sl->name);
        }
        free(k);
        break;
    }
    case MODEL_KIND_ENDPOINTSLICE: {
        const model_endpointslice_t *s = obj;
        if (s->service)
            model_mark_service(m, s->ns, s->service);
        mark_slice_pods(m, c, s);
        model_mark_slice(m, c, s->ns, s->name);
        break;
    }
    case MODEL_KIND_POD: {
        const model_pod_t *p = obj;
        model_mark_pod(m, c, p->ns, p->name);
        break;
    }
    case MODEL_KIND_AUTHZ_POLICY: {
        /* only a selector policy is listed on workloads */
        const model_authz_policy_t *p = obj;
        char *k = key2(p->ns, p->name);
        model_mark_authz(m, k);
        free(k);
        c->az_stale = true;
        if (p->selector.has_labels)
            mark_policy_pods(m, c, p->ns, &p->selector);
        break;
    }
    case MODEL_KIND_PEER_AUTHN: {
        /* levels interact: every converted policy of the cluster, and the
         * strictness of every workload the level covers */
        const model_peer_authn_t *p = obj;
        c->az_stale = true;
        mark_pa_names(m, c);
        bool level = !p->selector.set || p->selector.labels.n == 0;
        mark_policy_pods(m, c, p->ns, level ? NULL : &p->selector);
        break;
    }
    case MODEL_KIND_GATEWAY:
        model_waypoint_mark(m, c, obj);
        break;
    case MODEL_KIND_NODE: {
        const char *node = ((const model_node_t *)obj)->name;
        for (base_map_ent_t *e = base_map_first(&c->objs[MODEL_KIND_POD]); e;
             e = base_map_next(&c->objs[MODEL_KIND_POD], e)) {
            model_pod_t *p = e->val;
            if (p->node && strcmp(p->node, node) == 0)
                model_mark_pod(m, c, p->ns, p->name);
        }
        /* endpoint localities come from nodes too; node changes are rare */
        for (base_map_ent_t *e = base_map_first(&c->objs[MODEL_KIND_SERVICE]); e;
             e = base_map_next(&c->objs[MODEL_KIND_SERVICE], e)) {
            model_service_t *s = e->val;
            model_mark_service(m, s->ns, s->name);
        }
        break;
    }
    default:
        break;
    }
}

/* A global service's SANs name the identities of the pods behind it: a pod
 * that comes, goes or changes service account changes them. Other pod
 * changes (readiness, mostly) leave the services alone. */
static void mark_pod_identity(model_t *m, model_cluster_int_t *c, const char *key,
                              const model_pod_t *old, const model_pod_t *nw)
{
    const char *a = old ? old->service_account : NULL, *b = nw ? nw->service_account : NULL;
    if (old && nw && (a == b || (a && b && strcmp(a, b) == 0)))
        return;
    void *const *slices;
    size_t n = model_ptrs_get(&c->slices_by_pod, key, &slices);
    for (size_t i = 0; i < n; i++) {
        const model_endpointslice_t *s = slices[i];
        if (s->service)
            model_mark_service(m, s->ns, s->service);
    }
}

static bool slice_pods_same(const model_endpointslice_t *a, const model_endpointslice_t *b)
{
    if (a->nendpoints != b->nendpoints || a->nports != b->nports)
        return false;
    for (size_t i = 0; i < a->nports; i++)
        if (a->ports[i].port != b->ports[i].port ||
            (a->ports[i].name ? strcmp(a->ports[i].name, b->ports[i].name ? b->ports[i].name : "")
                              : b->ports[i].name != NULL))
            return false;
    for (size_t i = 0; i < a->nendpoints; i++) {
        const char *pa = a->endpoints[i].pod, *pb = b->endpoints[i].pod;
        if ((pa == NULL) != (pb == NULL) || (pa && strcmp(pa, pb) != 0))
            return false;
    }
    return true;
}

static void mark_slice_change(model_t *m, model_cluster_int_t *c, const model_endpointslice_t *old,
                              const model_endpointslice_t *nw)
{
    if (old && nw && slice_pods_same(old, nw) &&
        (old->service ? nw->service && strcmp(old->service, nw->service) == 0 : !nw->service)) {
        /* Same pods, same ports: only readiness or topology moved. Pods'
         * resources do not depend on those; the service's counts and the
         * slice's own workloads do. */
        if (nw->service)
            model_mark_service(m, nw->ns, nw->service);
        model_mark_slice(m, c, nw->ns, nw->name);
        return;
    }
    mark_effects(m, c, MODEL_KIND_ENDPOINTSLICE, old);
    mark_effects(m, c, MODEL_KIND_ENDPOINTSLICE, nw);
}

/* Whether s ends with "-" digits{8,10} (a CronJob's Job); its length
 * without them in *n. */
static bool cron_suffix(const char *s, size_t *n)
{
    size_t len = strlen(s), d = 0;
    while (d < len && d <= 10 && s[len - 1 - d] >= '0' && s[len - 1 - d] <= '9')
        d++;
    if (d < 8 || d > 10 || len < d + 2 || s[len - 1 - d] != '-')
        return false;
    *n = len - d - 1;
    return true;
}

/* The workload name istiod gives a pod (kube GetWorkloadMetaFromPod): the
 * label service.istio.io/workload-name; else for a pod its controller named,
 * the controller's name, a Deployment's (or Argo Rollout's) without the
 * template hash, an OpenShift DeploymentConfig's, a CronJob's without the
 * Job's timestamp; else the pod's own. NULL when it is the pod's name;
 * otherwise caller frees. owner is "Kind/name" or NULL. */
static char *pod_workload_name(const model_pod_t *p, const char *owner)
{
    const char *wn = model_labels_get(&p->labels, "service.istio.io/workload-name");
    if (wn)
        return strcmp(wn, p->name) ? strdup(wn) : NULL;
    const char *slash = owner ? strchr(owner, '/') : NULL;
    if (!slash)
        return NULL;
    size_t kl = (size_t)(slash - owner);
    const char *name = slash + 1;
    size_t n = strlen(name);
    const char *hash = model_labels_get(&p->labels, "pod-template-hash");
    const char *rhash = model_labels_get(&p->labels, "rollouts-pod-template-hash");
    const char *dc = model_labels_get(&p->labels, "deploymentconfig");
    bool rs = kl == 10 && strncmp(owner, "ReplicaSet", 10) == 0;
    const char *h = rs && hash && *hash ? hash : rs && rhash && *rhash ? rhash : NULL;
    size_t hl = h ? strlen(h) : 0;
    if (h && n > hl && strcmp(name + n - hl, h) == 0 && name[n - hl - 1] == '-')
        n -= hl + 1;
    else if (kl == 21 && strncmp(owner, "ReplicationController", 21) == 0 && dc && *dc)
        name = dc, n = strlen(dc);
    else if (kl == 3 && strncmp(owner, "Job", 3) == 0)
        cron_suffix(name, &n);
    if (strlen(p->name) == n && strncmp(p->name, name, n) == 0)
        return NULL;
    return strndup(name, n);
}

int model_apply(model_t *m, const char *cluster, model_kind_t kind, model_op_t op, void *obj,
                char *err, size_t errlen)
{
    model_cluster_int_t *c = cluster ? model_cluster_find(m, cluster) : NULL;
    char *key = NULL;
    if (!c) {
        snprintf(err, errlen, "unknown cluster \"%s\"", cluster ? cluster : "");
        goto fail;
    }
    if ((unsigned)kind >= MODEL_KIND__COUNT || !obj) {
        snprintf(err, errlen, "invalid object kind %d", (int)kind);
        goto fail;
    }
    key = model_obj_key(kind, obj);
    if (!key || !*key || key[0] == '/' || key[strlen(key) - 1] == '/') {
        snprintf(err, errlen, "%s without namespace or name", model_kind_name(kind));
        goto fail;
    }
    m->events++;
    void *old = base_map_get(&c->objs[kind], key);
    if (kind == MODEL_KIND_ENDPOINTSLICE)
        mark_slice_change(m, c, old, op == MODEL_OP_UPSERT ? obj : NULL);
    else
        mark_effects(m, c, kind, old);
    if (kind == MODEL_KIND_POD)
        mark_pod_identity(m, c, key, old, op == MODEL_OP_UPSERT ? obj : NULL);
    if (old && kind == MODEL_KIND_ENDPOINTSLICE)
        slice_index(c, old, false);
    if (op == MODEL_OP_DELETE) {
        base_map_del(&c->objs[kind], key);
        obj_free(kind, old);
        model_obj_free(kind, obj);
        free(key);
        return 0;
    }
    if (kind == MODEL_KIND_POD) {
        model_pod_t *p = obj;
        char *wn = pod_workload_name(p, p->owner);
        free(p->owner);
        p->owner = wn; /* from now on: the workload name, NULL for the pod's */
    }
    obj_share(m, kind, obj);
    base_map_put(&c->objs[kind], key, obj);
    if (kind == MODEL_KIND_POD)
        pod_borrow_name(obj, base_map_key(&c->objs[kind], key));
    obj_free(kind, old);
    if (kind == MODEL_KIND_ENDPOINTSLICE)
        slice_index(c, obj, true);
    else
        mark_effects(m, c, kind, obj);
    free(key);
    return 0;
fail:
    free(key);
    model_obj_free(kind, obj);
    return -1;
}

int model_cluster_clear_kind(model_t *m, const char *id, model_kind_t kind)
{
    model_cluster_int_t *c = model_cluster_find(m, id);
    if (!c || (unsigned)kind >= MODEL_KIND__COUNT)
        return -1;
    base_map_t *h = &c->objs[kind];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e)) {
        if (kind == MODEL_KIND_ENDPOINTSLICE) {
            mark_slice_change(m, c, e->val, NULL);
            slice_index(c, e->val, false);
        } else {
            mark_effects(m, c, kind, e->val);
        }
    }
    /* freed apart: marking a PeerAuthentication reads all of its kind */
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e))
        obj_free(kind, e->val);
    base_map_destroy(h, NULL);
    return 0;
}

/* ---------- life cycle ---------- */

model_t *model_new(const model_config_t *cfg)
{
    model_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->trust_domain = strdup(cfg && cfg->trust_domain ? cfg->trust_domain : "cluster.local");
    m->domain_suffix = strdup(cfg && cfg->domain_suffix ? cfg->domain_suffix : "cluster.local");
    m->prefer_cluster = cfg && cfg->prefer_cluster;
    m->authz_dry_run = cfg && cfg->authz_dry_run;
    m->root_ns = strdup(cfg && cfg->root_namespace && *cfg->root_namespace ? cfg->root_namespace
                                                                           : "istio-system");
    m->rules = model_scope_rules_default();
    model_strs_init(&m->strs);
    base_map_init(&m->dirty_svcs);
    base_map_init(&m->dirty_pods);
    base_map_init(&m->dirty_slices);
    base_map_init(&m->slice_names);
    base_map_init(&m->dirty_authz);
    base_map_init(&m->dirty_pol);
    base_map_init(&m->svc_state);
    base_map_init(&m->new_conflicts);
    m->map = model_pmap_new(&model_entry_ops);
    m->emap = model_pmap_new(&model_entry_ops);
    m->amap = model_pmap_new(&model_entry_ops);
    return m;
}

void model_scope_set(model_t *m, model_scope_rules_t *rules)
{
    if (!rules)
        rules = model_scope_rules_default();
    if (model_scope_rules_equal(m->rules, rules)) { /* nothing to re-evaluate */
        model_scope_rules_free(rules);
        return;
    }
    model_scope_rules_free(m->rules);
    m->rules = rules;
    for (size_t i = 0; i < m->nclusters; i++)
        mark_cluster_all(m, m->clusters[i]);
}

void model_free(model_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nclusters; i++)
        cluster_free(m->clusters[i]);
    free(m->clusters);
    base_map_destroy(&m->dirty_svcs, NULL);
    base_map_destroy(&m->dirty_pods, NULL);
    base_map_destroy(&m->dirty_slices, NULL);
    base_map_destroy(&m->slice_names, model_names_free);
    base_map_destroy(&m->dirty_authz, NULL);
    base_map_destroy(&m->dirty_pol, pol_mark_free);
    base_map_destroy(&m->svc_state, model_svc_state_free);
    base_map_destroy(&m->new_conflicts, NULL);
    for (size_t i = 0; i < m->ngw_names; i++)
        free(m->gw_names[i]);
    free(m->gw_names);
    model_scope_rules_free(m->rules);
    model_pmap_unref(m->map);
    model_pmap_unref(m->emap);
    model_pmap_unref(m->amap);
    model_strs_free(&m->strs);
    free(m->root_ns);
    free(m->trust_domain);
    free(m->domain_suffix);
    free(m);
}
