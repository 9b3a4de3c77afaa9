/*
 * map.c - a small chained string hash map for per-stream state (names a
 * proxy subscribed to or holds). Not thread-safe: one stream, one thread.
 */
#include "xds_int.h"

#include <stdlib.h>
#include <string.h>

static size_t slot(const xds_map_t *m, const char *key)
{
    return (size_t)(base_hash(key, strlen(key)) & (m->nb - 1));
}

static xds_map_entry_t *find(const xds_map_t *m, const char *key)
{
    if (!m->nb)
        return NULL;
    for (xds_map_entry_t *e = m->b[slot(m, key)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static int grow(xds_map_t *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    xds_map_entry_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    xds_map_t t = {b, nb, m->n};
    for (size_t i = 0; i < m->nb; i++) {
        for (xds_map_entry_t *e = m->b[i], *next; e; e = next) {
            next = e->next;
            size_t k = slot(&t, e->key);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->b);
    *m = t;
    return 0;
}

int xds_map_put(xds_map_t *m, const char *key, const char *val)
{
    xds_map_entry_t *e = find(m, key);
    char *v = val ? strdup(val) : NULL;
    if (val && !v)
        return -1;
    if (e) {
        free(e->val);
        e->val = v;
        return 0;
    }
    if ((m->n + 1 > m->nb * 2 || !m->nb) && grow(m) < 0)
        goto fail;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        goto fail;
    }
    e->val = v;
    size_t k = slot(m, key);
    e->next = m->b[k];
    m->b[k] = e;
    m->n++;
    return 0;
fail:
    free(v);
    return -1;
}

bool xds_map_has(const xds_map_t *m, const char *key)
{
    return find(m, key) != NULL;
}

const char *xds_map_get(const xds_map_t *m, const char *key)
{
    xds_map_entry_t *e = find(m, key);
    return e ? e->val : NULL;
}

bool xds_map_del(xds_map_t *m, const char *key)
{
    if (!m->nb)
        return false;
    for (xds_map_entry_t **pp = &m->b[slot(m, key)]; *pp; pp = &(*pp)->next) {
        xds_map_entry_t *e = *pp;
        if (strcmp(e->key, key) == 0) {
            *pp = e->next;
            free(e->key);
            free(e->val);
            free(e);
            m->n--;
            return true;
        }
    }
    return false;
}

void xds_map_clear(xds_map_t *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        for (xds_map_entry_t *e = m->b[i], *next; e; e = next) {
            next = e->next;
            free(e->key);
            free(e->val);
            free(e);
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

void xds_map_each(const xds_map_t *m, xds_map_fn fn, void *arg)
{
    for (size_t i = 0; i < m->nb; i++)
        for (xds_map_entry_t *e = m->b[i]; e; e = e->next)
            fn(e->key, e->val, arg);
}

void xds_names_add(xds_names_t *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    if ((l->v[l->n] = strdup(name)))
        l->n++;
}

void xds_names_free(xds_names_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}
