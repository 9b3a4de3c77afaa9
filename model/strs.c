/*
 * strs.c - shared, refcounted copies of the strings that repeat across
 * resources: cluster ids, networks, namespaces, nodes, service accounts,
 * service keys; and of workloads' service lists, which the pods of one
 * Deployment have in common. A workload points at these instead of carrying
 * its own copies, which would be most of its size.
 *
 * The model thread looks strings up and takes references; resources drop
 * theirs from whichever thread frees them. The table keeps one reference of
 * its own, and only the model thread adds references, so a string whose
 * count is 1 is held by nobody else and can be swept without a lock.
 */
#include "model_int.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct model_str {
    _Atomic uint32_t refs;
    char s[];
} model_str_t;

static model_str_t *str_of(const char *s)
{
    return (model_str_t *)(void *)(s - offsetof(model_str_t, s));
}

/* A shared service list: the services, then their ports. */
typedef struct model_svcs {
    _Atomic uint32_t refs;
    uint32_t n;
    model_wl_service_t v[];
} model_svcs_t;

static model_svcs_t *svcs_of(const model_wl_service_t *v)
{
    return (model_svcs_t *)(void *)((const char *)v - offsetof(model_svcs_t, v));
}

void model_strs_init(model_strs_t *t)
{
    base_map_init(&t->map);
    base_map_init(&t->svcs);
    t->swept = 0;
    t->svcs_swept = 0;
}

const char *model_str(model_strs_t *t, const char *s)
{
    if (!s)
        return NULL;
    model_str_t *e = base_map_get(&t->map, s);
    if (!e) {
        size_t n = strlen(s) + 1;
        e = malloc(sizeof(*e) + n);
        if (!e)
            abort(); /* the model cannot continue half-built; see DESIGN.md */
        atomic_init(&e->refs, 1);
        memcpy(e->s, s, n);
        if (base_map_put(&t->map, s, e) == e)
            abort();
    }
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e->s;
}

const char *model_str_ref(const char *s)
{
    if (s)
        atomic_fetch_add_explicit(&str_of(s)->refs, 1, memory_order_relaxed);
    return s;
}

void model_str_unref(const char *s)
{
    if (!s)
        return;
    model_str_t *e = str_of(s);
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

static char *put_port(char *p, uint16_t v)
{
    char d[5];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n)
        *p++ = d[--n];
    return p;
}

/* What identifies a service list in the table: keys and ports (with their
 * protocols), in order.
 * Built once per pod, so no printf. */
static char *svcs_key(const model_wl_service_t *v, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i].key) + 2 + v[i].nports * 18;
    char *k = malloc(len), *p = k;
    if (!k)
        abort();
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(v[i].key);
        memcpy(p, v[i].key, kl);
        p += kl;
        *p++ = '\x1f';
        for (size_t j = 0; j < v[i].nports; j++) {
            p = put_port(p, v[i].ports[j].service_port);
            *p++ = ':';
            p = put_port(p, v[i].ports[j].target_port);
            if (v[i].ports[j].app_protocol) {
                *p++ = '/';
                p = put_port(p, v[i].ports[j].app_protocol);
            }
            *p++ = ',';
        }
        *p++ = '\x1e';
    }
    *p = '\0';
    return k;
}

const model_wl_service_t *model_svcs(model_strs_t *t, const model_wl_service_t *v, size_t n)
{
    if (n == 0)
        return NULL;
    char *k = svcs_key(v, n);
    model_svcs_t *s = base_map_get(&t->svcs, k);
    if (!s) {
        size_t size = sizeof(*s) + n * sizeof(s->v[0]);
        for (size_t i = 0; i < n; i++)
            size += v[i].nports * sizeof(model_port_pair_t);
        s = malloc(size);
        if (!s)
            abort();
        atomic_init(&s->refs, 1);
        s->n = (uint32_t)n;
        model_port_pair_t *ports = (model_port_pair_t *)(void *)&s->v[n];
        for (size_t i = 0; i < n; i++) {
            s->v[i].key = model_str(t, v[i].key);
            s->v[i].ports = ports;
            s->v[i].nports = v[i].nports;
            memcpy(ports, v[i].ports, v[i].nports * sizeof(*ports));
            ports += v[i].nports;
        }
        if (base_map_put(&t->svcs, k, s) == s)
            abort();
    }
    free(k);
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s->v;
}

void model_svcs_unref(const model_wl_service_t *v)
{
    if (!v)
        return;
    model_svcs_t *s = svcs_of(v);
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        model_str_unref(s->v[i].key);
    free(s);
}

/* Drops the entries of h that only the table holds; refs_of gives an
 * entry's count, drop frees it. */
static void sweep(base_map_t *h, size_t *swept, _Atomic uint32_t *(*refs_of)(void *),
                  void (*drop)(void *))
{
    /* amortized: only once the table has doubled since the last sweep */
    if (h->n < 2 * *swept + 256)
        return;
    size_t n = 0;
    base_map_ent_t **dead = malloc(h->n * sizeof(*dead));
    if (!dead)
        abort();
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e))
        if (atomic_load_explicit(refs_of(e->val), memory_order_acquire) == 1)
            dead[n++] = e;
    for (size_t i = 0; i < n; i++) {
        drop(dead[i]->val);
        base_map_del(h, dead[i]->key);
    }
    free(dead);
    *swept = h->n;
}

static _Atomic uint32_t *str_refs(void *p)
{
    return &((model_str_t *)p)->refs;
}

static _Atomic uint32_t *svcs_refs(void *p)
{
    return &((model_svcs_t *)p)->refs;
}

static void drop_str(void *p)
{
    model_str_unref(((model_str_t *)p)->s);
}

static void drop_svcs(void *p)
{
    model_svcs_unref(((model_svcs_t *)p)->v);
}

void model_strs_sweep(model_strs_t *t)
{
    /* service lists first: dropping one releases its strings */
    sweep(&t->svcs, &t->svcs_swept, svcs_refs, drop_svcs);
    sweep(&t->map, &t->swept, str_refs, drop_str);
}

void model_strs_free(model_strs_t *t)
{
    base_map_destroy(&t->svcs, drop_svcs);
    base_map_destroy(&t->map, drop_str);
    t->swept = 0;
    t->svcs_swept = 0;
}
