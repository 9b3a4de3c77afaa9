/*
 * map.c - the hash function and the chained string hash map of base.h.
 *
 * Power-of-two bucket array, grows at load factor 1, never shrinks: the
 * model keeps its indexes for the life of the process, and clusters come back.
 */
#include "base.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

/* FNV-1a alone leaves the low bits weak for similar keys ("ns/name-1",
 * "ns/name-2"); the murmur3 finalizer's first half spreads them. */
static uint64_t avalanche(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

uint64_t base_hash_more(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    h ^= FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    return avalanche(h);
}

uint64_t base_hash(const void *p, size_t n)
{
    return base_hash_more(0, p, n);
}

uint64_t base_hash_str(const char *s)
{
    uint64_t h = FNV_OFFSET;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * FNV_PRIME;
    return avalanche(h);
}

const char base_map_set_mark = 0;

void base_map_init(base_map_t *h)
{
    memset(h, 0, sizeof(*h));
}

void base_map_destroy(base_map_t *h, void (*free_fn)(void *))
{
    for (size_t i = 0; i < h->nb; i++) {
        base_map_ent_t *e = h->b[i];
        while (e) {
            base_map_ent_t *next = e->next;
            if (free_fn && e->val != BASE_MAP_SET)
                free_fn(e->val);
            free(e);
            e = next;
        }
    }
    free(h->b);
    base_map_init(h);
}

static base_map_ent_t **slot(const base_map_t *h, const char *key, uint32_t hash)
{
    base_map_ent_t **p = &h->b[hash & (h->nb - 1)];
    while (*p && ((*p)->hash != hash || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

void *base_map_get(const base_map_t *h, const char *key)
{
    void **v = base_map_slot(h, key);
    return v ? *v : NULL;
}

void **base_map_slot(const base_map_t *h, const char *key)
{
    if (h->n == 0)
        return NULL;
    base_map_ent_t *e = *slot(h, key, (uint32_t)base_hash_str(key));
    return e ? &e->val : NULL;
}

static int grow(base_map_t *h)
{
    size_t nb = h->nb ? h->nb * 2 : 16;
    base_map_ent_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < h->nb; i++) {
        base_map_ent_t *e = h->b[i];
        while (e) {
            base_map_ent_t *next = e->next;
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

const char *base_map_key(const base_map_t *h, const char *key)
{
    if (h->n == 0)
        return NULL;
    base_map_ent_t *e = *slot(h, key, (uint32_t)base_hash_str(key));
    return e ? e->key : NULL;
}

void *base_map_put(base_map_t *h, const char *key, void *val)
{
    if (h->n >= h->nb && grow(h) < 0)
        return val;
    uint32_t hash = (uint32_t)base_hash_str(key);
    base_map_ent_t **p = slot(h, key, hash);
    if (*p) {
        void *old = (*p)->val;
        (*p)->val = val;
        return old;
    }
    size_t len = strlen(key) + 1;
    base_map_ent_t *e = malloc(offsetof(base_map_ent_t, key) + len);
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

void *base_map_del(base_map_t *h, const char *key)
{
    if (h->n == 0)
        return NULL;
    base_map_ent_t **p = slot(h, key, (uint32_t)base_hash_str(key));
    base_map_ent_t *e = *p;
    if (!e)
        return NULL;
    void *val = e->val;
    *p = e->next;
    free(e);
    h->n--;
    return val;
}

void base_map_take(base_map_t *h, void (*fn)(const char *key, void *val, void *arg), void *arg)
{
    base_map_t t = *h;
    base_map_init(h);
    for (size_t i = 0; i < t.nb; i++) {
        base_map_ent_t *e = t.b[i];
        while (e) {
            base_map_ent_t *next = e->next;
            fn(e->key, e->val, arg);
            free(e);
            e = next;
        }
    }
    free(t.b);
}

void base_map_sweep(base_map_t *h, bool (*fn)(const char *key, void *val, void *arg), void *arg)
{
    for (size_t i = 0; i < h->nb; i++) {
        base_map_ent_t **p = &h->b[i];
        while (*p) {
            base_map_ent_t *e = *p;
            if (!fn(e->key, e->val, arg)) {
                p = &e->next;
                continue;
            }
            *p = e->next;
            free(e);
            h->n--;
        }
    }
}

base_map_ent_t *base_map_first(const base_map_t *h)
{
    for (size_t i = 0; i < h->nb; i++)
        if (h->b[i])
            return h->b[i];
    return NULL;
}

base_map_ent_t *base_map_next(const base_map_t *h, const base_map_ent_t *e)
{
    if (e->next)
        return e->next;
    for (size_t i = (e->hash & (h->nb - 1)) + 1; i < h->nb; i++)
        if (h->b[i])
            return h->b[i];
    return NULL;
}
