/*
 * hmap.h - a plain mutable string-keyed hash map, internal to model/.
 *
 * Used only by the model thread for its indexes; published data lives in the
 * persistent map (pmap.h) instead. Keys are copied; values are borrowed.
 */
#ifndef MESHFED_MODEL_HMAP_H
#define MESHFED_MODEL_HMAP_H

#include <stddef.h>
#include <stdint.h>

/* An entry and its key are one allocation; the index keeps the low half of
 * the hash, which leaves a short key room in a smaller size class. */
typedef struct model_hmap_ent {
    struct model_hmap_ent *next;
    void *val;
    uint32_t hash;
    char key[];
} model_hmap_ent_t;

typedef struct model_hmap {
    model_hmap_ent_t **b;
    size_t nb;
    size_t n;
} model_hmap_t;

uint64_t model_hash(const char *s);
void model_hmap_init(model_hmap_t *h);
/* Frees the table; calls free_fn on each value when not NULL. */
void model_hmap_destroy(model_hmap_t *h, void (*free_fn)(void *));
void *model_hmap_get(const model_hmap_t *h, const char *key);
/* The map's own copy of key (valid until key is deleted), or NULL. */
const char *model_hmap_key(const model_hmap_t *h, const char *key);
/* Where key's value is stored (valid until the map changes), or NULL. */
void **model_hmap_slot(const model_hmap_t *h, const char *key);
/* Stores val under key and returns the previous value (or NULL). val must not
 * be NULL. On allocation failure returns val itself and stores nothing. */
void *model_hmap_put(model_hmap_t *h, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *model_hmap_del(model_hmap_t *h, const char *key);
/* Empties the map, then calls fn on each entry it had, freeing the entry
 * right after: fn may add to the (new, empty) map. */
void model_hmap_take(model_hmap_t *h, void (*fn)(const char *key, void *val, void *arg), void *arg);

/* Iteration: for (e = first; e; e = next(h, e)). Do not modify while iterating. */
model_hmap_ent_t *model_hmap_first(const model_hmap_t *h);
model_hmap_ent_t *model_hmap_next(const model_hmap_t *h, const model_hmap_ent_t *e);

#endif
