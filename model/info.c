/*
 * info.c - read-only views of the model's state for the debug endpoint.
 */
#include "model_int.h"

#include <string.h>

void model_each_cluster(const model_t *m, model_cluster_fn fn, void *arg)
{
    for (size_t i = 0; i < m->nclusters; i++) {
        const model_cluster_int_t *c = m->clusters[i];
        model_cluster_info_t info = {c->id,         c->network, c->gw,    c->gw_host,
                                     c->gw_problem, c->gw_port, c->state, {0}};
        for (int k = 0; k < MODEL_KIND__COUNT; k++)
            info.objects[k] = c->objs[k].n;
        fn(&info, arg);
    }
}

static void fill(const char *key, const model_svc_state_t *st, model_service_info_t *out)
{
    out->key = key;
    out->nclusters = st->nclusters;
    out->clusters = (const char *const *)st->clusters;
    out->scopes = st->scopes;
    out->base_cluster = st->base_cluster;
    out->conflict = st->conflict;
}

void model_each_service(const model_t *m, model_service_fn fn, void *arg)
{
    for (base_map_ent_t *e = base_map_first(&m->svc_state); e;
         e = base_map_next(&m->svc_state, e)) {
        model_service_info_t info;
        fill(e->key, e->val, &info);
        fn(&info, arg);
    }
}

bool model_service_info(const model_t *m, const char *key, model_service_info_t *out)
{
    const model_svc_state_t *st = base_map_get(&m->svc_state, key);
    if (!st)
        return false;
    fill(key, st, out);
    return true;
}

const model_scope_rules_t *model_rules(const model_t *m)
{
    return m->rules;
}

void model_each_object(const model_t *m, const char *cluster, model_kind_t kind,
                       void (*fn)(const void *obj, void *arg), void *arg)
{
    const model_cluster_int_t *c = model_cluster_find(m, cluster);
    if (!c || (unsigned)kind >= MODEL_KIND__COUNT)
        return;
    for (base_map_ent_t *e = base_map_first(&c->objs[kind]); e;
         e = base_map_next(&c->objs[kind], e))
        fn(e->val, arg);
}

const void *model_object(const model_t *m, const char *cluster, model_kind_t kind, const char *key)
{
    const model_cluster_int_t *c = model_cluster_find(m, cluster);
    if (!c || (unsigned)kind >= MODEL_KIND__COUNT)
        return NULL;
    return base_map_get(&c->objs[kind], key);
}

uint64_t model_events(const model_t *m)
{
    return m->events;
}

uint64_t model_scope_evaluations(const model_t *m)
{
    return m->scope_evals;
}

void model_each_new_conflict(model_t *m, model_service_fn fn, void *arg)
{
    for (base_map_ent_t *e = base_map_first(&m->new_conflicts); e;
         e = base_map_next(&m->new_conflicts, e)) {
        model_service_info_t si;
        if (model_service_info(m, e->key, &si) && si.conflict)
            fn(&si, arg);
    }
    base_map_destroy(&m->new_conflicts, NULL);
}
