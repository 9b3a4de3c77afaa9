/*
 * labels.c - Kubernetes label sets.
 *
 * A label set is an array of key/value pairs kept sorted by key (strcmp
 * order) so that lookups are a binary search and two sets compare equal
 * with one linear pass. Label sets are small (a handful of pairs), so the
 * array grows one slot at a time instead of carrying a capacity field.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Binary search for key. Returns true when found; *pos is then its index,
 * otherwise the index where it would be inserted. */
static bool labels_find(const model_labels_t *l, const char *key, size_t *pos)
{
    size_t lo = 0, hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->kv[mid].key, key);
        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return false;
}

int model_labels_set(model_labels_t *l, const char *key, const char *value)
{
    size_t pos;

    if (labels_find(l, key, &pos)) {
        /* Copy first so the old value survives an allocation failure. */
        char *v = strdup(value);
        if (!v)
            return -1;
        free(l->kv[pos].value);
        l->kv[pos].value = v;
        return 0;
    }

    char *k = strdup(key);
    char *v = strdup(value);
    model_label_t *kv = (k && v) ? realloc(l->kv, (l->n + 1) * sizeof(*kv)) : NULL;
    if (!kv) {
        free(k);
        free(v);
        return -1;
    }
    memmove(&kv[pos + 1], &kv[pos], (l->n - pos) * sizeof(*kv));
    kv[pos].key = k;
    kv[pos].value = v;
    l->kv = kv;
    l->n++;
    return 0;
}

const char *model_labels_get(const model_labels_t *l, const char *key)
{
    size_t pos;

    if (!l || !labels_find(l, key, &pos))
        return NULL;
    return l->kv[pos].value;
}

void model_labels_clear(model_labels_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->kv[i].key);
        free(l->kv[i].value);
    }
    free(l->kv);
    l->kv = NULL;
    l->n = 0;
}

/* Both sets are sorted with unique keys, so equal sets are equal pairwise. */
bool model_labels_equal(const model_labels_t *a, const model_labels_t *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0;

    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a->kv[i].key, b->kv[i].key) != 0 || strcmp(a->kv[i].value, b->kv[i].value) != 0)
            return false;
    }
    return true;
}
