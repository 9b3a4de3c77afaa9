/*
 * policy.c - a cluster's AuthorizationPolicies and PeerAuthentications as
 * the Authorization resources its ztunnels get, and the policy list of each
 * of its pods' workloads (authz.c does the translation itself).
 *
 * A resource name ("ns/name") is rebuilt across every cluster that may make
 * it, one variant per cluster, each visible to that cluster only: policies
 * are not merged across clusters, as a ztunnel enforces only the policies
 * of its own cluster's workloads.
 */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

const char *model_root_namespace(const model_t *m)
{
    return m->root_ns;
}

const model_authz_set_t *model_authz_set_of(const model_t *m, model_cluster_int_t *c)
{
    model_authz_set_t *s = &c->azset;
    s->opts.root_ns = m->root_ns;
    s->opts.dry_run_enabled = m->authz_dry_run;
    if (!c->az_stale &&
        (s->aps || s->pas ||
         (!c->objs[MODEL_KIND_AUTHZ_POLICY].n && !c->objs[MODEL_KIND_PEER_AUTHN].n)))
        return s;
    const base_map_t *ah = &c->objs[MODEL_KIND_AUTHZ_POLICY];
    const base_map_t *ph = &c->objs[MODEL_KIND_PEER_AUTHN];
    const model_authz_policy_t **aps = realloc((void *)s->aps, (ah->n + 1) * sizeof(*aps));
    const model_peer_authn_t **pas =
        aps ? realloc((void *)s->pas, (ph->n + 1) * sizeof(*pas)) : NULL;
    if (!aps || !pas)
        abort(); /* as the rest of a commit: see zalloc in derive.c */
    s->naps = s->npas = 0;
    for (base_map_ent_t *e = base_map_first(ah); e; e = base_map_next(ah, e))
        aps[s->naps++] = e->val;
    for (base_map_ent_t *e = base_map_first(ph); e; e = base_map_next(ph, e))
        pas[s->npas++] = e->val;
    s->aps = aps;
    s->pas = pas;
    c->az_stale = false;
    return s;
}

void model_authz_build(const model_t *m, model_cluster_int_t *c, const char *key,
                       model_out_authz_t **out, model_authz_status_t *st)
{
    *out = NULL;
    if (st)
        *st = (model_authz_status_t){0};
    const char *slash = strchr(key, '/');
    if (!slash)
        return;
    size_t nslen = (size_t)(slash - key);
    const char *name = slash + 1;
    bool in_root = strlen(m->root_ns) == nslen && strncmp(key, m->root_ns, nslen) == 0;
    const model_authz_set_t *set = model_authz_set_of(m, c);
    int rc = 0;
    if (in_root && strcmp(name, MODEL_AUTHZ_STATIC_STRICT) == 0) {
        if (set->npas && !(*out = model_authz_static_strict(m->root_ns)))
            rc = -1;
    } else if (strncmp(name, MODEL_AUTHZ_PA_PREFIX, strlen(MODEL_AUTHZ_PA_PREFIX)) == 0) {
        char pkey[512];
        snprintf(pkey, sizeof(pkey), "%.*s/%s", (int)nslen, key,
                 name + strlen(MODEL_AUTHZ_PA_PREFIX));
        const model_peer_authn_t *pa = base_map_get(&c->objs[MODEL_KIND_PEER_AUTHN], pkey);
        if (pa)
            rc = model_authz_convert_pa(pa, model_pa_oldest_level(set->pas, set->npas, pa->ns),
                                        model_pa_oldest_level(set->pas, set->npas, m->root_ns),
                                        m->root_ns, out);
    } else {
        const model_authz_policy_t *ap = base_map_get(&c->objs[MODEL_KIND_AUTHZ_POLICY], key);
        if (ap)
            rc = model_authz_convert(ap, &set->opts, out, st);
    }
    if (rc < 0)
        abort(); /* out of memory half way through a commit */
}

size_t model_authz_variants(model_t *m, const char *key, model_res_t **v)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nclusters; i++) {
        model_cluster_int_t *c = m->clusters[i];
        model_out_authz_t *a;
        model_authz_build(m, c, key, &a, NULL);
        if (!a)
            continue;
        model_res_t *r = model_res_new(MODEL_RES_AUTHZ, key, 0);
        r->u.az = a;
        r->vis.mode = MODEL_VIS_CLUSTER;
        r->vis.cluster = model_str(&m->strs, c->id);
        v[n++] = r;
    }
    return n;
}

static void pod_keys(const model_t *m, model_cluster_int_t *c, const model_pod_t *p,
                     model_strlist_t *keys)
{
    /* a pod without labels has a nil label map: every selector takes it */
    if (model_authz_workload_policies(model_authz_set_of(m, c), p->ns,
                                      p->labels.n ? &p->labels : NULL, keys) < 0)
        abort();
}

const char *model_pod_policies(model_t *m, model_cluster_int_t *c, const model_pod_t *p)
{
    if (!c->objs[MODEL_KIND_AUTHZ_POLICY].n && !c->objs[MODEL_KIND_PEER_AUTHN].n)
        return NULL;
    model_strlist_t keys;
    pod_keys(m, c, p, &keys);
    if (!keys.n)
        return NULL;
    size_t len = 0;
    for (size_t i = 0; i < keys.n; i++)
        len += strlen(keys.v[i]) + 1;
    char *joined = malloc(len);
    if (!joined)
        abort();
    char *w = joined;
    for (size_t i = 0; i < keys.n; i++) {
        size_t n = strlen(keys.v[i]);
        memcpy(w, keys.v[i], n);
        w += n;
        *w++ = i + 1 < keys.n ? '\n' : '\0';
    }
    model_strlist_clear(&keys);
    const char *s = model_str(&m->strs, joined);
    free(joined);
    return s;
}

/* ---------- /debug ---------- */

typedef struct az_entry {
    model_kind_t kind;
    char *key;
} az_entry_t;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const az_entry_t *)a)->key, ((const az_entry_t *)b)->key);
}

static int cstr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *join_key(const char *ns, const char *prefix, const char *name)
{
    size_t n = strlen(ns) + strlen(prefix) + strlen(name) + 2;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s/%s%s", ns, prefix, name);
    return k;
}

/* Whether the pod's policy list (or its scope) takes the policy. */
static bool pod_takes(model_t *m, model_cluster_int_t *c, const model_pod_t *p, const char *key,
                      const model_out_authz_t *a)
{
    if (a->scope == MODEL_AUTHZ_GLOBAL)
        return true;
    if (a->scope == MODEL_AUTHZ_NAMESPACE)
        return str_eq(p->ns, a->ns);
    model_strlist_t keys;
    pod_keys(m, c, p, &keys);
    bool found = false;
    for (size_t i = 0; i < keys.n && !found; i++)
        found = strcmp(keys.v[i], key) == 0;
    model_strlist_clear(&keys);
    return found;
}

static void each_info(model_t *m, model_cluster_int_t *c, const az_entry_t *e,
                      void (*fn)(const model_authz_info_t *i, void *arg), void *arg)
{
    model_out_authz_t *a;
    model_authz_status_t st;
    model_authz_build(m, c, e->key, &a, &st);
    model_authz_info_t info = {e->kind, e->key, a, st.reason, st.message, 0, NULL, 0};
    if (e->kind == MODEL_KIND_AUTHZ_POLICY) {
        const model_authz_policy_t *p = base_map_get(&c->objs[MODEL_KIND_AUTHZ_POLICY], e->key);
        info.generation = p ? p->generation : 0;
    }
    const char **sel = NULL;
    size_t nsel = 0;
    const base_map_t *ph = &c->objs[MODEL_KIND_POD];
    if (a && ph->n && (sel = malloc(ph->n * sizeof(*sel))))
        for (base_map_ent_t *pe = base_map_first(ph); pe; pe = base_map_next(ph, pe))
            if (pod_takes(m, c, pe->val, e->key, a))
                sel[nsel++] = pe->key;
    if (nsel > 1)
        qsort(sel, nsel, sizeof(*sel), cstr_cmp);
    info.selects = sel;
    info.nselects = nsel;
    fn(&info, arg);
    free(sel);
    model_out_authz_free(a);
    model_authz_status_clear(&st);
}

void model_each_authz(const model_t *cm, const char *cluster,
                      void (*fn)(const model_authz_info_t *i, void *arg), void *arg)
{
    /* the translation caches the cluster's policy set: logically const */
    model_t *m = (model_t *)cm;
    model_cluster_int_t *c = model_cluster_find(m, cluster);
    if (!c)
        return;
    const base_map_t *ah = &c->objs[MODEL_KIND_AUTHZ_POLICY];
    const base_map_t *ph = &c->objs[MODEL_KIND_PEER_AUTHN];
    az_entry_t *v = calloc(ah->n + ph->n + 1, sizeof(*v));
    size_t n = 0;
    if (!v)
        return;
    for (base_map_ent_t *e = base_map_first(ah); e; e = base_map_next(ah, e))
        v[n++] = (az_entry_t){MODEL_KIND_AUTHZ_POLICY, strdup(e->key)};
    for (base_map_ent_t *e = base_map_first(ph); e; e = base_map_next(ph, e)) {
        const model_peer_authn_t *p = e->val;
        v[n++] =
            (az_entry_t){MODEL_KIND_PEER_AUTHN, join_key(p->ns, MODEL_AUTHZ_PA_PREFIX, p->name)};
    }
    if (ph->n)
        v[n++] = (az_entry_t){MODEL_KIND_PEER_AUTHN,
                              join_key(m->root_ns, "", MODEL_AUTHZ_STATIC_STRICT)};
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].key)
            v[ok++] = v[i];
    qsort(v, ok, sizeof(*v), entry_cmp);
    for (size_t i = 0; i < ok; i++)
        each_info(m, c, &v[i], fn, arg);
    for (size_t i = 0; i < ok; i++)
        free(v[i].key);
    free(v);
}
