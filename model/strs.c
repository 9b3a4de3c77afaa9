/*
 * strs.c - shared, refcounted copies of the strings that repeat across
 * resources: cluster ids, networks, namespaces, nodes, service accounts,
 * service keys. A workload points at these instead of carrying its own
 * copies, which would be most of its size.
 *
 * The model thread looks strings up and takes references; resources drop
 * theirs from whichever thread frees them. The table keeps one reference of
 * its own, and only the model thread adds references, so a string whose
 * count is 1 is held by nobody else and can be swept without a lock.
 */
#include "internal.h"

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

void model_strs_init(model_strs_t *t)
{
    model_hmap_init(&t->map);
    t->swept = 0;
}

const char *model_str(model_strs_t *t, const char *s)
{
    if (!s)
        return NULL;
    model_str_t *e = model_hmap_get(&t->map, s);
    if (!e) {
        size_t n = strlen(s) + 1;
        e = malloc(sizeof(*e) + n);
        if (!e)
            abort(); /* the model cannot continue half-built; see DESIGN.md */
        atomic_init(&e->refs, 1);
        memcpy(e->s, s, n);
        if (model_hmap_put(&t->map, s, e) == e)
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

void model_strs_sweep(model_strs_t *t)
{
    /* amortized: only once the table has doubled since the last sweep */
    if (t->map.n < 2 * t->swept + 256)
        return;
    size_t n = 0;
    char **dead = malloc(t->map.n * sizeof(char *));
    if (!dead)
        abort();
    for (model_hmap_ent_t *e = model_hmap_first(&t->map); e; e = model_hmap_next(&t->map, e)) {
        model_str_t *s = e->val;
        if (atomic_load_explicit(&s->refs, memory_order_acquire) == 1)
            dead[n++] = s->s;
    }
    for (size_t i = 0; i < n; i++) {
        model_hmap_del(&t->map, dead[i]);
        free(str_of(dead[i]));
    }
    free(dead);
    t->swept = t->map.n;
}

static void drop_table_ref(void *p)
{
    model_str_unref(((model_str_t *)p)->s);
}

void model_strs_free(model_strs_t *t)
{
    model_hmap_destroy(&t->map, drop_table_ref);
    t->swept = 0;
}
