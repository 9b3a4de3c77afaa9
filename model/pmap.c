/*
 * pmap.c - persistent hash array mapped trie behind the model's snapshots.
 *
 * Three node kinds. A branch has a 32-bit bitmap and one child pointer per
 * set bit (array sized by popcount), consuming 5 hash bits per level. A leaf
 * holds one key, its 64-bit hash and its value; leaves are shared between
 * versions like any node. A collision node holds the leaves whose full hashes
 * are equal. A branch left with a single leaf or collision child is replaced
 * by that child, so leaves sit as high as their hash prefixes allow.
 *
 * Every node is refcounted atomically, because versions are dropped from any
 * thread. A node also carries the id of the edit that created it: that edit
 * may mutate it in place, nobody else may; ids are cleared at finish, so a
 * published node is never written again.
 */
#include "pmap.h"
#include "base.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PM_BITS 5
#define PM_MASK 31u

enum { KIND_LEAF = 0, KIND_BRANCH = 1, KIND_COLL = 2 };

typedef struct node {
    _Atomic uint32_t refs;
    uint32_t tag; /* kind in the low 2 bits, owning edit id above (0 = frozen) */
} node_t;

typedef struct leaf {
    node_t h;
    uint64_t hash;
    void *val;
    const char *key; /* own, or the value's (ops->key_of) */
    char own[];
} leaf_t;

typedef struct branch {
    node_t h;
    uint32_t bitmap;
    uint32_t cap; /* slots allocated; more than popcount only after in-place edits */
    node_t *kids[];
} branch_t;

typedef struct coll {
    node_t h;
    uint32_t n, cap;
    uint64_t hash;
    node_t *leaves[]; /* all KIND_LEAF */
} coll_t;

struct model_pmap {
    _Atomic uint32_t refs;
    model_pmap_ops_t ops;
    node_t *root;
    size_t count;
};

#define EDIT_PATHS 64

struct model_pmap_edit {
    model_pmap_t *src; /* the version we started from; one ref */
    model_pmap_t *out; /* preallocated so that finish cannot fail */
    node_t *root;      /* one ref */
    size_t count;
    uint32_t id;
    uint32_t nputs;              /* changing puts so far */
    uint64_t hashes[EDIT_PATHS]; /* of the first puts, for freezing */
};

static uint64_t (*test_hash)(const char *key);
static _Atomic uint32_t next_edit_id;

void model_pmap_set_test_hash(uint64_t (*hash)(const char *key))
{
    test_hash = hash;
}

static uint64_t hash_key(const char *key)
{
    return test_hash ? test_hash(key) : base_hash_str(key);
}

/* ---------- nodes ---------- */

static inline unsigned kind_of(const node_t *n)
{
    return n->tag & 3u;
}

static inline bool owned(const node_t *n, uint32_t id)
{
    return (n->tag >> 2) == id;
}

static inline unsigned popc(uint32_t x)
{
#ifdef __POPCNT__
    return (unsigned)__builtin_popcount(x);
#else
    /* Without -mpopcnt the builtin is a libgcc call; this is inline. */
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (((x + (x >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24;
#endif
}

static inline uint32_t bit_at(uint64_t hash, unsigned shift)
{
    return 1u << ((unsigned)(hash >> shift) & PM_MASK);
}

static inline unsigned pos_of(uint32_t bitmap, uint32_t bit)
{
    return popc(bitmap & (bit - 1));
}

static void node_init(node_t *n, unsigned kind, uint32_t id)
{
    atomic_init(&n->refs, 1);
    n->tag = id << 2 | kind;
}

static node_t *node_ref(node_t *n)
{
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
    return n;
}

static void node_unref(const model_pmap_ops_t *ops, node_t *n);

static void node_free(const model_pmap_ops_t *ops, node_t *n)
{
    if (kind_of(n) == KIND_LEAF) {
        if (ops->release)
            ops->release(((leaf_t *)n)->val);
    } else if (kind_of(n) == KIND_BRANCH) {
        branch_t *b = (branch_t *)n;
        for (unsigned i = 0, k = popc(b->bitmap); i < k; i++)
            node_unref(ops, b->kids[i]);
    } else {
        coll_t *c = (coll_t *)n;
        for (uint32_t i = 0; i < c->n; i++)
            node_unref(ops, c->leaves[i]);
    }
    free(n);
}

static void node_unref(const model_pmap_ops_t *ops, node_t *n)
{
    /* Release so that our writes happen before the free in another thread;
     * acquire (on the last drop only) so that theirs happen before ours. */
    if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_release) != 1)
        return;
    atomic_thread_fence(memory_order_acquire);
    node_free(ops, n);
}

/* The key as val keeps it, when the ops say and it is the same text. */
static const char *borrowed_key(const model_pmap_ops_t *ops, const char *key, const void *val)
{
    const char *k = ops->key_of ? ops->key_of(val) : NULL;
    return k && strcmp(k, key) == 0 ? k : NULL;
}

static leaf_t *leaf_new(const model_pmap_ops_t *ops, uint32_t id, uint64_t hash, const char *key,
                        void *val)
{
    const char *bk = borrowed_key(ops, key, val);
    size_t len = bk ? 0 : strlen(key) + 1;
    leaf_t *l = malloc(sizeof(*l) + len);
    if (!l)
        return NULL;
    node_init(&l->h, KIND_LEAF, id);
    l->hash = hash;
    l->val = val;
    l->key = bk ? bk : memcpy(l->own, key, len);
    if (ops->retain)
        ops->retain(val);
    return l;
}

static branch_t *branch_new(uint32_t cap, uint32_t id)
{
    branch_t *b = malloc(sizeof(*b) + cap * sizeof(node_t *));
    if (!b)
        return NULL;
    node_init(&b->h, KIND_BRANCH, id);
    b->bitmap = 0;
    b->cap = cap;
    return b;
}

static coll_t *coll_new(uint32_t cap, uint32_t id, uint64_t hash)
{
    coll_t *c = malloc(sizeof(*c) + cap * sizeof(node_t *));
    if (!c)
        return NULL;
    node_init(&c->h, KIND_COLL, id);
    c->n = 0;
    c->cap = cap;
    c->hash = hash;
    return c;
}

/* The hash shared by everything in a leaf or collision node. */
static uint64_t flat_hash(const node_t *n)
{
    return kind_of(n) == KIND_LEAF ? ((const leaf_t *)n)->hash : ((const coll_t *)n)->hash;
}

static bool leaf_is(const node_t *n, uint64_t hash, const char *key)
{
    const leaf_t *l = (const leaf_t *)n;
    return l->hash == hash && strcmp(l->key, key) == 0;
}

/* Index of key in a collision node, or -1. */
static int coll_find(const coll_t *c, uint64_t hash, const char *key)
{
    if (c->hash != hash)
        return -1;
    for (uint32_t i = 0; i < c->n; i++)
        if (strcmp(((const leaf_t *)c->leaves[i])->key, key) == 0)
            return (int)i;
    return -1;
}

static leaf_t *find_leaf(const node_t *n, uint64_t hash, const char *key)
{
    unsigned shift = 0;
    while (n) {
        if (kind_of(n) == KIND_LEAF)
            return leaf_is(n, hash, key) ? (leaf_t *)n : NULL;
        if (kind_of(n) == KIND_COLL) {
            const coll_t *c = (const coll_t *)n;
            int i = coll_find(c, hash, key);
            return i < 0 ? NULL : (leaf_t *)c->leaves[i];
        }
        const branch_t *b = (const branch_t *)n;
        uint32_t bit = bit_at(hash, shift);
        if (!(b->bitmap & bit))
            return NULL;
        n = b->kids[pos_of(b->bitmap, bit)];
        shift += PM_BITS;
    }
    return NULL;
}

/* ---------- versions ---------- */

model_pmap_t *model_pmap_new(const model_pmap_ops_t *ops)
{
    model_pmap_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    if (ops)
        m->ops = *ops;
    return m;
}

model_pmap_t *model_pmap_ref(model_pmap_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void model_pmap_unref(model_pmap_t *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_release) != 1)
        return;
    atomic_thread_fence(memory_order_acquire);
    if (m->root)
        node_unref(&m->ops, m->root);
    free(m);
}

void *model_pmap_get(const model_pmap_t *m, const char *key)
{
    if (!m || !m->root)
        return NULL;
    leaf_t *l = find_leaf(m->root, hash_key(key), key);
    return l ? l->val : NULL;
}

size_t model_pmap_count(const model_pmap_t *m)
{
    return m ? m->count : 0;
}

static void each_node(const node_t *n, model_pmap_each_fn fn, void *arg)
{
    if (kind_of(n) == KIND_LEAF) {
        const leaf_t *l = (const leaf_t *)n;
        fn(l->key, l->val, arg);
    } else if (kind_of(n) == KIND_BRANCH) {
        const branch_t *b = (const branch_t *)n;
        for (unsigned i = 0, k = popc(b->bitmap); i < k; i++)
            each_node(b->kids[i], fn, arg);
    } else {
        const coll_t *c = (const coll_t *)n;
        for (uint32_t i = 0; i < c->n; i++)
            each_node(c->leaves[i], fn, arg);
    }
}

void model_pmap_each(const model_pmap_t *m, model_pmap_each_fn fn, void *arg)
{
    if (m && m->root)
        each_node(m->root, fn, arg);
}

/* ---------- diff ---------- */

typedef struct diff_ctx {
    model_pmap_diff_fn fn;
    void *arg;
} diff_ctx_t;

static void diff_node(const diff_ctx_t *dc, const node_t *a, const node_t *b, unsigned shift);

/* Reports every entry under n as present on one side only. */
static void emit_all(const diff_ctx_t *dc, const node_t *n, bool in_a)
{
    if (kind_of(n) == KIND_LEAF) {
        const leaf_t *l = (const leaf_t *)n;
        dc->fn(l->key, in_a ? l->val : NULL, in_a ? NULL : l->val, dc->arg);
    } else if (kind_of(n) == KIND_BRANCH) {
        const branch_t *b = (const branch_t *)n;
        for (unsigned i = 0, k = popc(b->bitmap); i < k; i++)
            emit_all(dc, b->kids[i], in_a);
    } else {
        const coll_t *c = (const coll_t *)n;
        for (uint32_t i = 0; i < c->n; i++)
            emit_all(dc, c->leaves[i], in_a);
    }
}

/* A leaf or collision node seen as an array of leaves. */
static const node_t *const *flat_view(const node_t *const *n, uint32_t *count)
{
    if (kind_of(*n) == KIND_LEAF) {
        *count = 1;
        return n;
    }
    *count = ((const coll_t *)*n)->n;
    return (const node_t *const *)((const coll_t *)*n)->leaves;
}

static const leaf_t *flat_lookup(const node_t *const *v, uint32_t n, const leaf_t *l)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i] == &l->h || leaf_is(v[i], l->hash, l->key))
            return (const leaf_t *)v[i];
    return NULL;
}

/* Two leaf/collision nodes: small sets, compared pairwise. */
static void diff_flat(const diff_ctx_t *dc, const node_t *a, const node_t *b)
{
    uint32_t na, nb;
    const node_t *const *va = flat_view(&a, &na);
    const node_t *const *vb = flat_view(&b, &nb);
    for (uint32_t i = 0; i < na; i++) {
        const leaf_t *la = (const leaf_t *)va[i];
        const leaf_t *lb = flat_lookup(vb, nb, la);
        if (!lb || lb->val != la->val)
            dc->fn(la->key, la->val, lb ? lb->val : NULL, dc->arg);
    }
    for (uint32_t i = 0; i < nb; i++) {
        const leaf_t *lb = (const leaf_t *)vb[i];
        if (!flat_lookup(va, na, lb))
            dc->fn(lb->key, NULL, lb->val, dc->arg);
    }
}

static const node_t *kid_at(const branch_t *b, uint32_t bit)
{
    return (b->bitmap & bit) ? b->kids[pos_of(b->bitmap, bit)] : NULL;
}

static void diff_branches(const diff_ctx_t *dc, const branch_t *a, const branch_t *b,
                          unsigned shift)
{
    for (uint32_t all = a->bitmap | b->bitmap; all; all &= all - 1) {
        uint32_t bit = all & -all;
        diff_node(dc, kid_at(a, bit), kid_at(b, bit), shift + PM_BITS);
    }
}

/* One side is a branch, the other a leaf/collision node that sits where the
 * other version has a whole subtree: treat the flat node as a branch with a
 * single child, so only the subtree it falls into is compared with it. */
static void diff_mixed(const diff_ctx_t *dc, const node_t *a, const node_t *b, unsigned shift)
{
    bool a_is_branch = kind_of(a) == KIND_BRANCH;
    const branch_t *br = (const branch_t *)(a_is_branch ? a : b);
    const node_t *flat = a_is_branch ? b : a;
    uint32_t fbit = bit_at(flat_hash(flat), shift);
    for (uint32_t all = br->bitmap | fbit; all; all &= all - 1) {
        uint32_t bit = all & -all;
        const node_t *bk = kid_at(br, bit), *fk = bit == fbit ? flat : NULL;
        if (a_is_branch)
            diff_node(dc, bk, fk, shift + PM_BITS);
        else
            diff_node(dc, fk, bk, shift + PM_BITS);
    }
}

static void diff_node(const diff_ctx_t *dc, const node_t *a, const node_t *b, unsigned shift)
{
    if (a == b)
        return;
    if (!a || !b) {
        emit_all(dc, a ? a : b, a != NULL);
        return;
    }
    bool ab = kind_of(a) == KIND_BRANCH, bb = kind_of(b) == KIND_BRANCH;
    if (ab && bb)
        diff_branches(dc, (const branch_t *)a, (const branch_t *)b, shift);
    else if (!ab && !bb)
        diff_flat(dc, a, b);
    else
        diff_mixed(dc, a, b, shift);
}

void model_pmap_diff(const model_pmap_t *a, const model_pmap_t *b, model_pmap_diff_fn fn, void *arg)
{
    diff_ctx_t dc = {fn, arg};
    diff_node(&dc, a ? a->root : NULL, b ? b->root : NULL, 0);
}

/* ---------- editing ---------- */

typedef struct put_ctx {
    const model_pmap_ops_t *ops;
    uint32_t id;
    uint64_t hash;
    const char *key;
    void *val; /* NULL = remove */
} put_ctx_t;

static leaf_t *put_leaf_new(const put_ctx_t *c)
{
    return leaf_new(c->ops, c->id, c->hash, c->key, c->val);
}

/* A subtree at shift holding a (hash ha) and leaf b; takes over both refs.
 * NULL when out of memory, with a and b untouched. */
static node_t *merge(const put_ctx_t *c, node_t *a, uint64_t ha, leaf_t *b, unsigned shift)
{
    if (ha == b->hash) {
        coll_t *col = coll_new(2, c->id, ha);
        if (!col)
            return NULL;
        col->leaves[0] = a;
        col->leaves[1] = &b->h;
        col->n = 2;
        return &col->h;
    }
    uint32_t bita = bit_at(ha, shift), bitb = bit_at(b->hash, shift);
    branch_t *br = branch_new(bita == bitb ? 1 : 2, c->id);
    if (!br)
        return NULL;
    br->bitmap = bita | bitb;
    if (bita == bitb) {
        /* Hashes differ somewhere below, so this stops by shift 60. */
        node_t *sub = merge(c, a, ha, b, shift + PM_BITS);
        if (!sub) {
            free(br);
            return NULL;
        }
        br->kids[0] = sub;
    } else {
        br->kids[bita < bitb ? 0 : 1] = a;
        br->kids[bita < bitb ? 1 : 0] = &b->h;
    }
    return &br->h;
}

/* Adds a new leaf for the key below the flat node in *slot. */
static int put_beside(const put_ctx_t *c, node_t **slot, unsigned shift)
{
    leaf_t *nl = put_leaf_new(c);
    if (!nl)
        return -1;
    node_t *m = merge(c, *slot, flat_hash(*slot), nl, shift);
    if (!m) {
        node_unref(c->ops, &nl->h);
        return -1;
    }
    *slot = m;
    return 0;
}

/* *slot is the key's leaf and val is not NULL: updates it. */
static int put_replace(const put_ctx_t *c, node_t **slot)
{
    leaf_t *l = (leaf_t *)*slot;
    /* a leaf that borrows its key needs a new value with the same key */
    const char *bk = l->key != l->own ? borrowed_key(c->ops, c->key, c->val) : NULL;
    if (owned(&l->h, c->id) && (l->key == l->own || bk)) {
        void *old = l->val;
        if (c->ops->retain)
            c->ops->retain(c->val);
        l->val = c->val;
        if (bk)
            l->key = bk;
        if (c->ops->release)
            c->ops->release(old);
        return 0;
    }
    leaf_t *nl = put_leaf_new(c);
    if (!nl)
        return -1;
    *slot = &nl->h;
    node_unref(c->ops, &l->h);
    return 0;
}

static int put_leaf(const put_ctx_t *c, node_t **slot, unsigned shift)
{
    if (!leaf_is(*slot, c->hash, c->key))
        return c->val ? put_beside(c, slot, shift) : 0;
    if (c->val)
        return put_replace(c, slot);
    node_unref(c->ops, *slot);
    *slot = NULL;
    return 0;
}

/* Makes the collision node in *slot writable by this edit, with room for
 * extra more leaves. NULL when out of memory, *slot unchanged. */
static coll_t *coll_own(const put_ctx_t *c, node_t **slot, uint32_t extra)
{
    coll_t *col = (coll_t *)*slot, *nc;
    uint32_t need = col->n + extra;
    if (owned(&col->h, c->id)) {
        if (need <= col->cap)
            return col;
        if (!(nc = realloc(col, sizeof(*col) + need * sizeof(node_t *))))
            return NULL;
        nc->cap = need;
        *slot = &nc->h;
        return nc;
    }
    if (!(nc = coll_new(need, c->id, col->hash)))
        return NULL;
    for (uint32_t i = 0; i < col->n; i++)
        nc->leaves[i] = node_ref(col->leaves[i]);
    nc->n = col->n;
    *slot = &nc->h;
    node_unref(c->ops, &col->h);
    return nc;
}

static int put_coll(const put_ctx_t *c, node_t **slot, unsigned shift)
{
    coll_t *col = (coll_t *)*slot;
    if (col->hash != c->hash)
        return c->val ? put_beside(c, slot, shift) : 0;
    int i = coll_find(col, c->hash, c->key);
    if (i < 0 && !c->val)
        return 0;
    if (!(col = coll_own(c, slot, i < 0 ? 1 : 0)))
        return -1;
    if (i >= 0 && c->val)
        return put_replace(c, &col->leaves[i]);
    if (i < 0) {
        leaf_t *nl = put_leaf_new(c);
        if (!nl)
            return -1;
        col->leaves[col->n++] = &nl->h;
        return 0;
    }
    node_unref(c->ops, col->leaves[i]);
    memmove(&col->leaves[i], &col->leaves[i + 1], (col->n - (uint32_t)i - 1) * sizeof(node_t *));
    if (--col->n == 1) { /* a lone leaf needs no collision node */
        *slot = col->leaves[0];
        free(col);
    }
    return 0;
}

/* Makes the branch in *slot writable by this edit, with room for extra more
 * children. NULL when out of memory, *slot unchanged. */
static branch_t *branch_own(const put_ctx_t *c, node_t **slot, uint32_t extra)
{
    branch_t *b = (branch_t *)*slot, *nb;
    uint32_t n = popc(b->bitmap), need = n + extra;
    if (owned(&b->h, c->id)) {
        if (need <= b->cap)
            return b;
        if (!(nb = realloc(b, sizeof(*b) + need * sizeof(node_t *))))
            return NULL;
        nb->cap = need;
        *slot = &nb->h;
        return nb;
    }
    if (!(nb = branch_new(need, c->id)))
        return NULL;
    nb->bitmap = b->bitmap;
    for (uint32_t i = 0; i < n; i++)
        nb->kids[i] = node_ref(b->kids[i]);
    *slot = &nb->h;
    node_unref(c->ops, &b->h);
    return nb;
}

/* After a removal below the owned branch in *slot: drops the emptied child,
 * and hoists a lone leaf/collision child into our place, which keeps leaves
 * as high as possible (a child below may just have been hoisted itself). */
static void branch_shrink(node_t **slot, uint32_t bit)
{
    branch_t *b = (branch_t *)*slot;
    unsigned pos = pos_of(b->bitmap, bit), n = popc(b->bitmap);
    if (!b->kids[pos]) {
        memmove(&b->kids[pos], &b->kids[pos + 1], (n - pos - 1) * sizeof(node_t *));
        b->bitmap &= ~bit;
        n--;
    }
    if (n == 0) {
        *slot = NULL;
        free(b);
    } else if (n == 1 && kind_of(b->kids[0]) != KIND_BRANCH) {
        *slot = b->kids[0];
        free(b);
    }
}

static int put_node(const put_ctx_t *c, node_t **slot, unsigned shift);

static int put_branch(const put_ctx_t *c, node_t **slot, unsigned shift)
{
    branch_t *b = (branch_t *)*slot;
    uint32_t bit = bit_at(c->hash, shift);
    unsigned pos = pos_of(b->bitmap, bit);
    if (!(b->bitmap & bit)) {
        if (!c->val)
            return 0;
        leaf_t *nl = put_leaf_new(c);
        if (!nl || !(b = branch_own(c, slot, 1))) {
            if (nl)
                node_unref(c->ops, &nl->h);
            return -1;
        }
        memmove(&b->kids[pos + 1], &b->kids[pos], (popc(b->bitmap) - pos) * sizeof(node_t *));
        b->kids[pos] = &nl->h;
        b->bitmap |= bit;
        return 0;
    }
    if (!(b = branch_own(c, slot, 0)))
        return -1;
    if (put_node(c, &b->kids[pos], shift + PM_BITS) < 0)
        return -1;
    if (!c->val)
        branch_shrink(slot, bit);
    return 0;
}

static int put_node(const put_ctx_t *c, node_t **slot, unsigned shift)
{
    if (!*slot) {
        leaf_t *nl = c->val ? put_leaf_new(c) : NULL;
        if (c->val && !nl)
            return -1;
        *slot = nl ? &nl->h : NULL;
        return 0;
    }
    switch (kind_of(*slot)) {
    case KIND_LEAF:
        return put_leaf(c, slot, shift);
    case KIND_COLL:
        return put_coll(c, slot, shift);
    default:
        return put_branch(c, slot, shift);
    }
}

model_pmap_edit_t *model_pmap_edit(model_pmap_t *m)
{
    model_pmap_edit_t *e = malloc(sizeof(*e));
    model_pmap_t *out = malloc(sizeof(*out));
    if (!e || !out) {
        free(e);
        free(out);
        return NULL;
    }
    e->src = model_pmap_ref(m);
    e->out = out;
    e->root = m->root ? node_ref(m->root) : NULL;
    e->count = m->count;
    e->nputs = 0;
    /* 30-bit ids, never 0 (= frozen). Ids are cleared at finish, so wrapping
     * only matters if a billion edits were open at once. */
    do
        e->id = atomic_fetch_add_explicit(&next_edit_id, 1, memory_order_relaxed) & 0x3fffffffu;
    while (e->id == 0);
    return e;
}

int model_pmap_put(model_pmap_edit_t *e, const char *key, void *val)
{
    put_ctx_t c = {&e->src->ops, e->id, hash_key(key), key, val};
    /* Look first: an unchanged value must not copy the path. */
    leaf_t *old = e->root ? find_leaf(e->root, c.hash, key) : NULL;
    if ((old ? old->val : NULL) == val)
        return 0;
    if (put_node(&c, &e->root, 0) < 0)
        return -1;
    if (!old)
        e->count++;
    else if (!val)
        e->count--;
    if (e->nputs < EDIT_PATHS)
        e->hashes[e->nputs] = c.hash;
    e->nputs++;
    return 0;
}

void *model_pmap_edit_get(const model_pmap_edit_t *e, const char *key)
{
    leaf_t *l = e->root ? find_leaf(e->root, hash_key(key), key) : NULL;
    return l ? l->val : NULL;
}

size_t model_pmap_edit_count(const model_pmap_edit_t *e)
{
    return e->count;
}

/* Clears this edit's id from its nodes. They form a subtree hanging from the
 * root: changing any node copied (and so owned) every ancestor. */
static void freeze_all(node_t *n, uint32_t id)
{
    if (!n || !owned(n, id))
        return;
    n->tag = kind_of(n);
    if (kind_of(n) == KIND_BRANCH) {
        branch_t *b = (branch_t *)n;
        for (unsigned i = 0, k = popc(b->bitmap); i < k; i++)
            freeze_all(b->kids[i], id);
    } else if (kind_of(n) == KIND_COLL) {
        coll_t *c = (coll_t *)n;
        for (uint32_t i = 0; i < c->n; i++)
            freeze_all(c->leaves[i], id);
    }
}

/* Same as freeze_all for an edit of a few keys, without reading every child
 * of every owned branch (a cache miss each): each owned node lies on the hash
 * path of some key this edit put, as nodes only move along their own path. */
static void freeze_path(node_t *n, uint64_t hash, uint32_t id)
{
    /* Walk to the end even past frozen nodes: an earlier path of this same
     * edit may have cleared the ancestors already. */
    for (unsigned shift = 0; n; shift += PM_BITS) {
        if (owned(n, id))
            n->tag = kind_of(n);
        if (kind_of(n) == KIND_COLL) {
            coll_t *c = (coll_t *)n;
            for (uint32_t i = 0; i < c->n; i++)
                if (owned(c->leaves[i], id))
                    c->leaves[i]->tag = KIND_LEAF;
        }
        if (kind_of(n) != KIND_BRANCH)
            return;
        const branch_t *b = (const branch_t *)n;
        uint32_t bit = bit_at(hash, shift);
        n = (b->bitmap & bit) ? b->kids[pos_of(b->bitmap, bit)] : NULL;
    }
}

static void freeze(model_pmap_edit_t *e)
{
    if (e->nputs > EDIT_PATHS) {
        freeze_all(e->root, e->id);
        return;
    }
    for (uint32_t i = 0; i < e->nputs; i++)
        freeze_path(e->root, e->hashes[i], e->id);
}

model_pmap_t *model_pmap_finish(model_pmap_edit_t *e)
{
    model_pmap_t *src = e->src, *out = e->out;
    if (e->root == src->root) {
        /* Nothing changed (src keeps its root alive, so the address was not
         * reused): hand back the source version with the edit's ref. */
        if (e->root)
            node_unref(&src->ops, e->root);
        free(out);
        free(e);
        return src;
    }
    freeze(e);
    atomic_init(&out->refs, 1);
    out->ops = src->ops;
    out->root = e->root;
    out->count = e->count;
    model_pmap_unref(src);
    free(e);
    return out;
}
