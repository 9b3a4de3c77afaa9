/*
 * hmap.c - chained string hash map for the model thread's indexes.
 *
 * Power-of-two bucket array, grows at load factor 1, never shrinks: the model
 * keeps its indexes for the life of the process, and clusters come back.
 */
#include "hmap.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

uint64_t model_hash(const char *s)
{
    /* FNV-1a with a final avalanche so that the low bits are usable. */
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void model_hmap_init(model_hmap_t *h)
{
    memset(h, 0, sizeof(*h));
}

void model_hmap_destroy(model_hmap_t *h, void (*free_fn)(void *))
{
    for (size_t i = 0; i < h->nb; i++) {
        model_hmap_ent_t *e = h->b[i];
        while (e) {
            model_hmap_ent_t *next = e->next;
            if (free_fn)
                free_fn(e->val);
            free(e);
            e = next;
        }
    }
    free(h->b);
    model_hmap_init(h);
}

static model_hmap_ent_t **slot(const model_hmap_t *h, const char *key, uint32_t hash)
{
    model_hmap_ent_t **p = &h->b[hash & (h->nb - 1)];
    while (*p && ((*p)->hash != hash || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

void *model_hmap_get(const model_hmap_t *h, const char *key)
{
    void **v = model_hmap_slot(h, key);
    return v ? *v : NULL;
}

void **model_hmap_slot(const model_hmap_t *h, const char *key)
{
    if (h->n == 0)
        return NULL;
    model_hmap_ent_t *e = *slot(h, key, (uint32_t)model_hash(key));
    return e ? &e->val : NULL;
}

static int grow(model_hmap_t *h)
{
    size_t nb = h->nb ? h->nb * 2 : 16;
    model_hmap_ent_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < h->nb; i++) {
        model_hmap_ent_t *e = h->b[i];
        while (e) {
            model_hmap_ent_t *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(h->b);
    h->b = b;
    h->nb = nb;
    return 0;
}

const char *model_hmap_key(const model_hmap_t *h, const char *key)
{
    if (h->n == 0)
        return NULL;
    model_hmap_ent_t *e = *slot(h, key, (uint32_t)model_hash(key));
    return e ? e->key : NULL;
}

void *model_hmap_put(model_hmap_t *h, const char *key, void *val)
{
    if (h->n >= h->nb && grow(h) < 0)
        return val;
    uint32_t hash = (uint32_t)model_hash(key);
    model_hmap_ent_t **p = slot(h, key, hash);
    if (*p) {
        void *old = (*p)->val;
        (*p)->val = val;
        return old;
    }
    size_t len = strlen(key) + 1;
    model_hmap_ent_t *e = malloc(offsetof(model_hmap_ent_t, key) + len);
    if (!e)
        return val;
    e->next = NULL;
    e->hash = hash;
    e->val = val;
    memcpy(e->key, key, len);
    *p = e;
    h->n++;
    return NULL;
}

void *model_hmap_del(model_hmap_t *h, const char *key)
{
    if (h->n == 0)
        return NULL;
    model_hmap_ent_t **p = slot(h, key, (uint32_t)model_hash(key));
    model_hmap_ent_t *e = *p;
    if (!e)
        return NULL;
    void *val = e->val;
    *p = e->next;
    free(e);
    h->n--;
    return val;
}

void model_hmap_take(model_hmap_t *h, void (*fn)(const char *key, void *val, void *arg), void *arg)
{
    model_hmap_t t = *h;
    model_hmap_init(h);
    for (size_t i = 0; i < t.nb; i++) {
        model_hmap_ent_t *e = t.b[i];
        while (e) {
            model_hmap_ent_t *next = e->next;
            fn(e->key, e->val, arg);
            free(e);
            e = next;
        }
    }
    free(t.b);
}

model_hmap_ent_t *model_hmap_first(const model_hmap_t *h)
{
    for (size_t i = 0; i < h->nb; i++)
        if (h->b[i])
            return h->b[i];
    return NULL;
}

model_hmap_ent_t *model_hmap_next(const model_hmap_t *h, const model_hmap_ent_t *e)
{
    if (e->next)
        return e->next;
    for (size_t i = (e->hash & (h->nb - 1)) + 1; i < h->nb; i++)
        if (h->b[i])
            return h->b[i];
    return NULL;
}
