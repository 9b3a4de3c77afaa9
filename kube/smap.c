/*
 * smap.c - the informer cache: a chained hash map from object key
 * ("namespace/name") to resourceVersion. Each entry carries the generation of
 * the list that last saw it, so a relist can find what disappeared in one
 * sweep without a second set.
 */
#include <stdlib.h>
#include <string.h>

#include "kube_int.h"

typedef struct kube_sent {
    struct kube_sent *next;
    char *rv;
    unsigned gen;
    char key[];
} kube_sent_t;

struct kube_smap {
    kube_sent_t **b;
    size_t nb, n;
};

static size_t kube_shash(const char *s)
{
    size_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

kube_smap_t *kube_smap_new(void)
{
    kube_smap_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nb = 64;
    m->b = calloc(m->nb, sizeof(*m->b));
    if (!m->b) {
        free(m);
        return NULL;
    }
    return m;
}

void kube_smap_free(kube_smap_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        kube_sent_t *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            free(e->rv);
            free(e);
        }
    }
    free(m->b);
    free(m);
}

static kube_sent_t **kube_sfind(kube_smap_t *m, const char *key)
{
    kube_sent_t **p = &m->b[kube_shash(key) & (m->nb - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

const char *kube_smap_get(kube_smap_t *m, const char *key)
{
    kube_sent_t *e = *kube_sfind(m, key);
    return e ? e->rv : NULL;
}

/* Doubles the bucket array; on allocation failure the map just stays denser. */
static void kube_sgrow(kube_smap_t *m)
{
    size_t nb = m->nb * 2;
    kube_sent_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        kube_sent_t *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            size_t j = kube_shash(e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int kube_smap_put(kube_smap_t *m, const char *key, const char *rv, unsigned gen)
{
    kube_sent_t **p = kube_sfind(m, key);
    char *r = strdup(rv ? rv : "");
    if (!r)
        return -1;
    if (*p) {
        free((*p)->rv);
        (*p)->rv = r;
        (*p)->gen = gen;
        return 0;
    }
    size_t kl = strlen(key);
    kube_sent_t *e = malloc(sizeof(*e) + kl + 1);
    if (!e) {
        free(r);
        return -1;
    }
    memcpy(e->key, key, kl + 1);
    e->rv = r;
    e->gen = gen;
    e->next = NULL;
    *p = e;
    if (++m->n > m->nb)
        kube_sgrow(m);
    return 0;
}

void kube_smap_del(kube_smap_t *m, const char *key)
{
    kube_sent_t **p = kube_sfind(m, key), *e = *p;
    if (!e)
        return;
    *p = e->next;
    free(e->rv);
    free(e);
    m->n--;
}

size_t kube_smap_count(const kube_smap_t *m)
{
    return m->n;
}

void kube_smap_sweep(kube_smap_t *m, unsigned gen, kube_smap_fn fn, void *arg)
{
    for (size_t i = 0; i < m->nb; i++) {
        kube_sent_t **p = &m->b[i];
        while (*p) {
            kube_sent_t *e = *p;
            if (e->gen == gen) {
                p = &e->next;
                continue;
            }
            if (fn)
                fn(arg, e->key, e->rv);
            *p = e->next;
            free(e->rv);
            free(e);
            m->n--;
        }
    }
}
