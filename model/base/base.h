/*
 * base.h - the building blocks every module links (meshfed_base): one hash
 * function and one string-keyed hash map.
 *
 * The map is plain and mutable, for one thread at a time: the model thread's
 * indexes, the watcher's caches, a stream's subscriptions. Data shared
 * between threads lives in the persistent map (model/pmap.h) instead. Keys
 * are copied; values are borrowed and never NULL, so a set stores
 * BASE_MAP_SET as every value.
 */
#ifndef MESHFED_BASE_H
#define MESHFED_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An entry and its key are one allocation; the index keeps the low half of
 * the hash, which leaves a short key room in a smaller size class. */
typedef struct base_map_ent {
    struct base_map_ent *next;
    void *val;
    uint32_t hash;
    char key[];
} base_map_ent_t;

typedef struct base_map {
    base_map_ent_t **b;
    size_t nb;
    size_t n; /* entries */
} base_map_t;

/* The value of a set's entries: not NULL, never dereferenced, never freed
 * (base_map_destroy skips it). */
extern const char base_map_set_mark;
#define BASE_MAP_SET ((void *)&base_map_set_mark)

/* FNV-1a 64 with a final avalanche, so that the low bits are usable as a
 * table index. Stable across runs and builds: xDS versions are made of it and
 * clients hand them back after a restart. base_hash_str(s) equals
 * base_hash(s, strlen(s)). */
uint64_t base_hash(const void *p, size_t n);
uint64_t base_hash_str(const char *s);
/* The hash of several pieces: h is the hash of the pieces before (0 for
 * none), so base_hash_more(0, p, n) equals base_hash(p, n). */
uint64_t base_hash_more(uint64_t h, const void *p, size_t n);
void base_map_init(base_map_t *h);
/* Frees the table and leaves an empty map, ready for reuse; calls free_fn
 * (when not NULL) on each value other than BASE_MAP_SET. */
void base_map_destroy(base_map_t *h, void (*free_fn)(void *));
void *base_map_get(const base_map_t *h, const char *key);
/* The map's own copy of key (valid until key is deleted), or NULL. */
const char *base_map_key(const base_map_t *h, const char *key);
/* Where key's value is stored (valid until the map changes), or NULL. */
void **base_map_slot(const base_map_t *h, const char *key);
/* Stores val under key and returns the previous value (or NULL). val must not
 * be NULL. On allocation failure returns val itself and stores nothing. */
void *base_map_put(base_map_t *h, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *base_map_del(base_map_t *h, const char *key);
/* Empties the map, then calls fn on each entry it had, freeing the entry
 * right after: fn may add to the (new, empty) map. */
void base_map_take(base_map_t *h, void (*fn)(const char *key, void *val, void *arg), void *arg);

/* Removes each entry for which fn returns true; fn then owns its value. fn
 * sees every entry once and must not change the map. */
void base_map_sweep(base_map_t *h, bool (*fn)(const char *key, void *val, void *arg), void *arg);

/* Iteration: for (e = first; e; e = next(h, e)). Do not modify while iterating. */
base_map_ent_t *base_map_first(const base_map_t *h);
base_map_ent_t *base_map_next(const base_map_t *h, const base_map_ent_t *e);

#endif
