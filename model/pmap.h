/*
 * pmap.h - persistent string-keyed hash map (a hash array mapped trie),
 * internal to model/.
 *
 * The model publishes its snapshots as versions of this map: every version is
 * immutable and refcounted, versions share all unchanged nodes, and the diff
 * of two versions costs in proportion to what changed between them. Versions
 * may be read and unreffed from any thread; an edit is used by one thread.
 *
 * Keys are copied into the map. Values are opaque pointers: the map calls
 * ops->retain when a leaf starts holding a value and ops->release when that
 * leaf goes, from whichever thread drops the last reference to it.
 */
#ifndef MESHFED_MODEL_PMAP_H
#define MESHFED_MODEL_PMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct model_pmap model_pmap_t;

typedef struct model_pmap_ops {
    void (*retain)(void *val);  /* the map starts holding val; may be NULL */
    void (*release)(void *val); /* the last leaf holding val goes; may be NULL */
    /* A copy of the key that val itself keeps while retained, which a leaf
     * then points at instead of copying the key; may be NULL. */
    const char *(*key_of)(const void *val);
} model_pmap_ops_t;

/* An empty map; ops is copied (NULL = no callbacks). Caller owns one ref.
 * NULL when out of memory. */
model_pmap_t *model_pmap_new(const model_pmap_ops_t *ops);
model_pmap_t *model_pmap_ref(model_pmap_t *m);
/* Drops a ref; thread-safe. NULL is allowed. */
void model_pmap_unref(model_pmap_t *m);

/* Lookups on a version. A NULL map reads as empty. The value is borrowed. */
void *model_pmap_get(const model_pmap_t *m, const char *key);
size_t model_pmap_count(const model_pmap_t *m);

typedef void (*model_pmap_each_fn)(const char *key, void *val, void *arg);
/* Calls fn for every entry, in no particular order. */
void model_pmap_each(const model_pmap_t *m, model_pmap_each_fn fn, void *arg);

/* Calls fn(key, a_val, b_val) for every key whose value pointer differs
 * between a and b (a_val NULL = only in b, b_val NULL = only in a). Subtrees
 * that are the same pointer in both are skipped, so the cost is proportional
 * to the change. a or b may be NULL (= empty). No particular order. */
typedef void (*model_pmap_diff_fn)(const char *key, void *a_val, void *b_val, void *arg);
void model_pmap_diff(const model_pmap_t *a, const model_pmap_t *b, model_pmap_diff_fn fn,
                     void *arg);

/* Editing: a transient builder derived from a version. Nodes created by the
 * builder are mutated in place (no garbage per update); nodes shared with
 * older versions are copied on first write. */
typedef struct model_pmap_edit model_pmap_edit_t;

/* A builder starting from m; m stays valid and unchanged (the builder holds
 * its own ref). NULL when out of memory. */
model_pmap_edit_t *model_pmap_edit(model_pmap_t *m);
/* Sets key to val; val NULL removes key. Storing the pointer already stored
 * (or removing an absent key) changes nothing. 0, or -1 when out of memory,
 * in which case the builder still holds its previous contents. */
int model_pmap_put(model_pmap_edit_t *e, const char *key, void *val);
void *model_pmap_edit_get(const model_pmap_edit_t *e, const char *key);
size_t model_pmap_edit_count(const model_pmap_edit_t *e);
/* The new version; caller owns a ref. e is freed. When nothing changed this
 * is the version the edit started from (with a new ref). Never fails. */
model_pmap_t *model_pmap_finish(model_pmap_edit_t *e);

/* Tests only: replaces the key hash (NULL restores the default) so that tests
 * can force full collisions. Call it only while no map exists. */
void model_pmap_set_test_hash(uint64_t (*hash)(const char *key));

#endif
