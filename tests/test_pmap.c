/*
 * test_pmap.c - tests for the persistent hash trie (model/pmap.c): lookups,
 * immutability of versions, structural diff against a naive diff, full hash
 * collisions, retain/release balance and concurrent unref.
 */
#include "pmap.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* check reports every passing ck_assert through a pipe, which dominates the
 * randomized tests; CHECK only calls into check when it fails. */
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            ck_abort_msg("%s:%d: check failed: %s", __FILE__, __LINE__, #x);                       \
    } while (0)

/* ---------- values that count their retains and releases ---------- */

typedef struct tval {
    _Atomic int held; /* retains minus releases */
    int id;
} tval_t;

static _Atomic long n_retain, n_release;

static void tval_retain(void *v)
{
    atomic_fetch_add(&((tval_t *)v)->held, 1);
    atomic_fetch_add(&n_retain, 1);
}

static void tval_release(void *v)
{
    int before = atomic_fetch_sub(&((tval_t *)v)->held, 1);
    CHECK(before > 0); /* never released more than retained */
    atomic_fetch_add(&n_release, 1);
}

static const model_pmap_ops_t tval_ops = {tval_retain, tval_release, NULL};

#define NVALS 8
static tval_t vals[NVALS];

static void reset_counts(void)
{
    for (int i = 0; i < NVALS; i++) {
        atomic_store(&vals[i].held, 0);
        vals[i].id = i;
    }
    atomic_store(&n_retain, 0);
    atomic_store(&n_release, 0);
}

static void assert_all_released(void)
{
    for (int i = 0; i < NVALS; i++)
        CHECK(atomic_load(&vals[i].held) == 0);
    CHECK(atomic_load(&n_retain) == atomic_load(&n_release));
}

static void key_of(char *buf, size_t len, int i)
{
    snprintf(buf, len, "k%d.ns-%d/svc", i, i % 37);
}

static int id_of(const char *key)
{
    return atoi(key + 1);
}

/* ---------- collecting entries and diffs ---------- */

typedef struct ent {
    int key;
    void *a, *b;
} ent_t;

typedef struct ents {
    ent_t *v;
    size_t n, cap;
} ents_t;

static void ents_add(ents_t *s, int key, void *a, void *b)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        CHECK(s->v);
    }
    s->v[s->n++] = (ent_t){key, a, b};
}

static int ent_cmp(const void *x, const void *y)
{
    const ent_t *a = x, *b = y;
    return (a->key > b->key) - (a->key < b->key);
}

static void ents_sort(ents_t *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), ent_cmp);
}

static void each_collect(const char *key, void *val, void *arg)
{
    ents_add(arg, id_of(key), val, NULL);
}

static void diff_collect(const char *key, void *a, void *b, void *arg)
{
    CHECK(a != b);
    ents_add(arg, id_of(key), a, b);
}

/* The entries of a version, sorted by key. */
static ents_t entries(const model_pmap_t *m)
{
    ents_t s = {0};
    model_pmap_each(m, each_collect, &s);
    ents_sort(&s);
    return s;
}

/* The diff computed the slow way, from the full contents of both. */
static ents_t naive_diff(const model_pmap_t *a, const model_pmap_t *b)
{
    ents_t ea = entries(a), eb = entries(b), d = {0};
    size_t i = 0, j = 0;
    while (i < ea.n || j < eb.n) {
        if (j == eb.n || (i < ea.n && ea.v[i].key < eb.v[j].key)) {
            ents_add(&d, ea.v[i].key, ea.v[i].a, NULL);
            i++;
        } else if (i == ea.n || eb.v[j].key < ea.v[i].key) {
            ents_add(&d, eb.v[j].key, NULL, eb.v[j].a);
            j++;
        } else {
            if (ea.v[i].a != eb.v[j].a)
                ents_add(&d, ea.v[i].key, ea.v[i].a, eb.v[j].a);
            i++;
            j++;
        }
    }
    free(ea.v);
    free(eb.v);
    return d;
}

static void assert_diff_is_naive(const model_pmap_t *a, const model_pmap_t *b)
{
    ents_t want = naive_diff(a, b), got = {0};
    model_pmap_diff(a, b, diff_collect, &got);
    ents_sort(&got);
    CHECK(got.n == want.n);
    for (size_t i = 0; i < got.n; i++) {
        CHECK(got.v[i].key == want.v[i].key);
        CHECK(got.v[i].a == want.v[i].a);
        CHECK(got.v[i].b == want.v[i].b);
    }
    free(want.v);
    free(got.v);
}

/* A version holds exactly ref[0..nkeys). */
static void assert_holds(const model_pmap_t *m, void *const *ref, int nkeys)
{
    size_t count = 0;
    char key[64];
    for (int i = 0; i < nkeys; i++) {
        key_of(key, sizeof(key), i);
        CHECK(model_pmap_get(m, key) == ref[i]);
        count += ref[i] != NULL;
    }
    CHECK(model_pmap_count(m) == count);
    ents_t e = entries(m);
    CHECK(e.n == count);
    for (size_t i = 0; i < e.n; i++)
        CHECK(e.v[i].a == ref[e.v[i].key]);
    free(e.v);
}

/* ---------- the randomized driver ---------- */

/* nops random puts/removes over nkeys keys, finishing a version every few
 * ops; checks contents, immutability of every version and diffs against the
 * naive diff. */
static void run_random(unsigned seed, int nops, int nkeys, int max_per_version)
{
    model_pmap_t **ver = NULL;
    void **snap = NULL; /* the expected contents of every version */
    void **ref = calloc((size_t)nkeys, sizeof(*ref));
    char key[64];
    int nv = 0, maxv = 0;
    srand(seed);
    reset_counts();
    for (int op = 0; op < nops || nv == 0;) {
        if (nv == maxv) {
            maxv = maxv ? maxv * 2 : 16;
            ver = realloc(ver, (size_t)maxv * sizeof(*ver));
            snap = realloc(snap, (size_t)maxv * (size_t)nkeys * sizeof(*snap));
            CHECK(ver && snap);
        }
        if (nv == 0) {
            ver[nv++] = model_pmap_new(&tval_ops);
            memset(snap, 0, (size_t)nkeys * sizeof(*snap));
            continue;
        }
        model_pmap_edit_t *e = model_pmap_edit(ver[nv - 1]);
        CHECK(e);
        for (int k = 1 + rand() % max_per_version; k > 0 && op < nops; k--, op++) {
            int i = rand() % nkeys;
            void *v = rand() % 10 < 3 ? NULL : &vals[rand() % NVALS];
            key_of(key, sizeof(key), i);
            CHECK(model_pmap_put(e, key, v) == 0);
            ref[i] = v;
            CHECK(model_pmap_edit_get(e, key) == v);
        }
        ver[nv] = model_pmap_finish(e);
        memcpy(&snap[(size_t)nv * (size_t)nkeys], ref, (size_t)nkeys * sizeof(*ref));
        assert_holds(ver[nv], ref, nkeys);
        assert_diff_is_naive(ver[nv - 1], ver[nv]);
        int old = rand() % nv;
        assert_diff_is_naive(ver[old], ver[nv]);
        assert_diff_is_naive(ver[nv], ver[old]);
        nv++;
    }
    assert_diff_is_naive(NULL, ver[nv - 1]);
    assert_diff_is_naive(ver[nv - 1], NULL);
    for (int v = 0; v < nv; v++)
        assert_holds(ver[v], &snap[(size_t)v * (size_t)nkeys], nkeys);
    for (int v = 0; v < nv; v++)
        model_pmap_unref(ver[v]);
    assert_all_released();
    free(ver);
    free(snap);
    free(ref);
}

/* ---------- tests ---------- */

START_TEST(pmap_put_get_remove)
{
    char key[64];
    reset_counts();
    model_pmap_t *m = model_pmap_new(&tval_ops);
    ck_assert_ptr_null(model_pmap_get(m, "absent"));
    ck_assert_uint_eq(model_pmap_count(m), 0);
    model_pmap_edit_t *e = model_pmap_edit(m);
    for (int i = 0; i < 3000; i++) {
        key_of(key, sizeof(key), i);
        ck_assert_int_eq(model_pmap_put(e, key, &vals[i % NVALS]), 0);
    }
    ck_assert_uint_eq(model_pmap_edit_count(e), 3000);
    for (int i = 0; i < 3000; i += 2) { /* remove evens, overwrite some odds */
        key_of(key, sizeof(key), i);
        ck_assert_int_eq(model_pmap_put(e, key, NULL), 0);
        key_of(key, sizeof(key), i + 1);
        ck_assert_int_eq(model_pmap_put(e, key, &vals[(i + 3) % NVALS]), 0);
    }
    ck_assert_int_eq(model_pmap_put(e, "never-there", NULL), 0);
    model_pmap_t *m2 = model_pmap_finish(e);
    ck_assert_uint_eq(model_pmap_count(m2), 1500);
    for (int i = 0; i < 3000; i++) {
        key_of(key, sizeof(key), i);
        void *want = i % 2 ? &vals[(i + 2) % NVALS] : NULL;
        ck_assert_ptr_eq(model_pmap_get(m2, key), want);
    }
    ck_assert_ptr_null(model_pmap_get(m2, "k1"));
    ck_assert_ptr_null(model_pmap_get(m2, ""));
    model_pmap_unref(m2);
    model_pmap_unref(m);
    assert_all_released();
}
END_TEST

START_TEST(pmap_versions_are_immutable)
{
    run_random(7, 3000, 400, 50);
}
END_TEST

START_TEST(pmap_diff_matches_naive_diff)
{
    run_random(12345, 20000, 5000, 300);
}
END_TEST

START_TEST(pmap_diff_of_empty_and_equal_versions_is_empty)
{
    ents_t got = {0};
    model_pmap_t *m = model_pmap_new(NULL);
    model_pmap_diff(NULL, NULL, diff_collect, &got);
    model_pmap_diff(m, m, diff_collect, &got);
    model_pmap_diff(NULL, m, diff_collect, &got);
    model_pmap_edit_t *e = model_pmap_edit(m);
    model_pmap_put(e, "k1", &vals[1]);
    model_pmap_t *m2 = model_pmap_finish(e);
    model_pmap_diff(m2, m2, diff_collect, &got);
    ck_assert_uint_eq(got.n, 0);
    /* Removed then re-added with the same value: a new leaf, yet no diff. */
    e = model_pmap_edit(m2);
    model_pmap_put(e, "k1", NULL);
    model_pmap_put(e, "k2", &vals[2]);
    model_pmap_put(e, "k1", &vals[1]);
    model_pmap_t *m3 = model_pmap_finish(e);
    model_pmap_diff(m2, m3, diff_collect, &got);
    ck_assert_uint_eq(got.n, 1);
    ck_assert_int_eq(got.v[0].key, 2);
    free(got.v);
    model_pmap_unref(m3);
    model_pmap_unref(m2);
    model_pmap_unref(m);
}
END_TEST

/* Evens share all low 60 bits (a branch chain down to the last level, split
 * by the top 4 bits); odds fall into 5 fully colliding classes that share
 * their low 40 bits, so collision nodes get split by other hashes too. */
static uint64_t colliding_hash(const char *key)
{
    uint64_t id = (uint64_t)id_of(key);
    if (id % 2 == 0)
        return 0x0123456789abcdeULL | (id / 2 % 16) << 60;
    return 7 | (id % 5) << 40;
}

/* Puts (val != NULL) or removes key id, returning the new version. */
static model_pmap_t *step(model_pmap_t *m, int id, void *val)
{
    char key[64];
    key_of(key, sizeof(key), id);
    model_pmap_edit_t *e = model_pmap_edit(m);
    ck_assert_int_eq(model_pmap_put(e, key, val), 0);
    model_pmap_t *n = model_pmap_finish(e);
    assert_diff_is_naive(m, n);
    assert_diff_is_naive(n, m);
    model_pmap_unref(m);
    return n;
}

START_TEST(pmap_collision_keys)
{
    model_pmap_set_test_hash(colliding_hash);
    reset_counts();
    /* 1 and 11 collide fully: the root becomes a collision node; 3 has
     * another hash sharing 40 low bits and splits it; removing 3 hoists the
     * collision node back to the root; 2 and 4 differ only in the top bits. */
    model_pmap_t *m = model_pmap_new(&tval_ops);
    m = step(m, 1, &vals[1]);
    m = step(m, 11, &vals[2]);
    m = step(m, 3, &vals[3]);
    m = step(m, 2, &vals[4]);
    m = step(m, 4, &vals[5]);
    void *ref[12] = {NULL, &vals[1], &vals[4], &vals[3], &vals[5], [11] = &vals[2]};
    assert_holds(m, ref, 12);
    m = step(m, 3, NULL);
    m = step(m, 2, NULL);
    m = step(m, 4, NULL);
    m = step(m, 11, &vals[6]);
    ref[2] = ref[3] = ref[4] = NULL;
    ref[11] = &vals[6];
    assert_holds(m, ref, 12);
    m = step(m, 1, NULL);
    m = step(m, 11, NULL);
    ck_assert_uint_eq(model_pmap_count(m), 0);
    model_pmap_unref(m);
    assert_all_released();

    run_random(99, 4000, 300, 40);
    run_random(100, 2000, 40, 5);
    model_pmap_set_test_hash(NULL);
}
END_TEST

START_TEST(pmap_release_called_once)
{
    reset_counts();
    model_pmap_t *v1 = model_pmap_new(&tval_ops);
    model_pmap_edit_t *e = model_pmap_edit(v1);
    model_pmap_put(e, "a", &vals[0]);
    model_pmap_put(e, "b", &vals[1]);
    /* In-place updates inside one edit retain the new value, release the old. */
    model_pmap_put(e, "b", &vals[2]);
    model_pmap_put(e, "b", &vals[1]);
    model_pmap_t *v2 = model_pmap_finish(e);
    ck_assert_int_eq(atomic_load(&vals[0].held), 1);
    ck_assert_int_eq(atomic_load(&vals[1].held), 1);
    ck_assert_int_eq(atomic_load(&vals[2].held), 0);

    e = model_pmap_edit(v2);
    model_pmap_put(e, "a", &vals[3]);
    model_pmap_put(e, "b", NULL);
    model_pmap_t *v3 = model_pmap_finish(e);
    /* v2 still holds a=0 and b=1. */
    ck_assert_int_eq(atomic_load(&vals[0].held), 1);
    ck_assert_int_eq(atomic_load(&vals[1].held), 1);
    ck_assert_int_eq(atomic_load(&vals[3].held), 1);
    model_pmap_unref(v2); /* the last holder of vals[0], vals[1] goes */
    ck_assert_int_eq(atomic_load(&vals[0].held), 0);
    ck_assert_int_eq(atomic_load(&vals[1].held), 0);
    ck_assert_int_eq(atomic_load(&vals[3].held), 1);
    model_pmap_unref(v3);
    model_pmap_unref(v1);
    assert_all_released();
    ck_assert_int_eq(atomic_load(&n_retain), 5);
}
END_TEST

/* Values that keep their own key, which leaves may point at. */
typedef struct kval {
    char key[16];
} kval_t;

static const char *kval_key(const void *v)
{
    return ((const kval_t *)v)->key;
}

static void each_key(const char *key, void *val, void *arg)
{
    (void)val;
    char *out = arg;
    strcat(out, key);
    strcat(out, ";");
}

START_TEST(pmap_leaf_keys_borrowed_from_values)
{
    static const model_pmap_ops_t ops = {NULL, NULL, kval_key};
    kval_t a = {"a"}, a2 = {"a"}, other = {"not-a"};
    model_pmap_t *m = model_pmap_new(&ops);
    model_pmap_edit_t *e = model_pmap_edit(m);
    model_pmap_put(e, "a", &a);
    model_pmap_put(e, "a", &a2);    /* in place: the leaf now points at a2's key */
    model_pmap_put(e, "b", &other); /* other's key is not "b": copied */
    model_pmap_t *v1 = model_pmap_finish(e);
    strcpy(a.key, "x"); /* no longer held by any version */
    ck_assert_ptr_eq(model_pmap_get(v1, "a"), &a2);
    ck_assert_ptr_eq(model_pmap_get(v1, "b"), &other);
    ck_assert_ptr_null(model_pmap_get(v1, "x"));

    e = model_pmap_edit(v1);
    model_pmap_put(e, "a", &other); /* v1's leaf is shared: a new one, key copied */
    model_pmap_t *v2 = model_pmap_finish(e);
    ck_assert_ptr_eq(model_pmap_get(v2, "a"), &other);
    ck_assert_ptr_eq(model_pmap_get(v1, "a"), &a2);
    char keys[64] = "";
    model_pmap_each(v2, each_key, keys);
    ck_assert(strcmp(keys, "a;b;") == 0 || strcmp(keys, "b;a;") == 0);
    model_pmap_unref(v2);
    model_pmap_unref(v1);
    model_pmap_unref(m);
}
END_TEST

static void each_fail(const char *key, void *val, void *arg)
{
    (void)key, (void)val, (void)arg;
    ck_abort_msg("unexpected entry");
}

START_TEST(pmap_edit_does_not_touch_source)
{
    char key[64];
    void *ref[1000] = {0};
    reset_counts();
    model_pmap_t *empty = model_pmap_new(&tval_ops);
    model_pmap_edit_t *e = model_pmap_edit(empty);
    for (int i = 0; i < 1000; i++) {
        key_of(key, sizeof(key), i);
        model_pmap_put(e, key, ref[i] = &vals[i % NVALS]);
    }
    model_pmap_t *m = model_pmap_finish(e);
    model_pmap_each(empty, each_fail, NULL);
    ck_assert_uint_eq(model_pmap_count(empty), 0);

    e = model_pmap_edit(m);
    for (int i = 0; i < 1000; i += 3) {
        key_of(key, sizeof(key), i);
        model_pmap_put(e, key, i % 2 ? NULL : &vals[(i + 1) % NVALS]);
        ck_assert_ptr_eq(model_pmap_edit_get(e, key), i % 2 ? NULL : &vals[(i + 1) % NVALS]);
        assert_holds(m, ref, 1000); /* the source during the edit */
    }
    model_pmap_t *m2 = model_pmap_finish(e);
    assert_holds(m, ref, 1000);
    ck_assert_ptr_ne(m2, m);

    /* No change at all, or only same-pointer puts: the same version back. */
    e = model_pmap_edit(m2);
    key_of(key, sizeof(key), 1);
    model_pmap_put(e, key, model_pmap_get(m2, key));
    model_pmap_put(e, "absent", NULL);
    model_pmap_t *m3 = model_pmap_finish(e);
    ck_assert_ptr_eq(m3, m2);
    model_pmap_unref(m3);

    /* The source may be dropped while an edit of it is open. */
    e = model_pmap_edit(m);
    model_pmap_unref(m);
    model_pmap_put(e, "extra", &vals[0]);
    m = model_pmap_finish(e);
    ck_assert_uint_eq(model_pmap_count(m), 1001);
    model_pmap_unref(m);
    model_pmap_unref(m2);
    model_pmap_unref(empty);
    assert_all_released();
}
END_TEST

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void each_count(const char *key, void *val, void *arg)
{
    (void)key, (void)val;
    ++*(size_t *)arg;
}

START_TEST(pmap_diff_cost_follows_change)
{
    char key[64];
    model_pmap_t *m = model_pmap_new(NULL);
    model_pmap_edit_t *e = model_pmap_edit(m);
    for (int i = 0; i < 100000; i++) {
        key_of(key, sizeof(key), i);
        model_pmap_put(e, key, &vals[i % NVALS]);
    }
    model_pmap_t *a = model_pmap_finish(e);
    e = model_pmap_edit(a);
    key_of(key, sizeof(key), 77);
    model_pmap_put(e, key, NULL);
    model_pmap_t *b = model_pmap_finish(e);

    size_t n = 0;
    double t0 = now_sec();
    model_pmap_each(a, each_count, &n);
    double t_each = now_sec() - t0;
    ck_assert_uint_eq(n, 100000);
    ents_t got = {0};
    t0 = now_sec();
    for (int r = 0; r < 100; r++)
        model_pmap_diff(a, b, diff_collect, &got);
    double t_diff = now_sec() - t0;
    ck_assert_uint_eq(got.n, 100);
    ck_assert_int_eq(got.v[0].key, 77);
    /* 100 diffs of one change are still well under one full walk. */
    ck_assert_msg(t_diff < t_each, "100 diffs %.6fs, one walk %.6fs", t_diff, t_each);
    free(got.v);
    model_pmap_unref(b);
    model_pmap_unref(a);
    model_pmap_unref(m);
}
END_TEST

/* Readers on other threads read and drop versions while main drops its own. */
typedef struct reader {
    model_pmap_t **ver;
    int nver;
    unsigned seed;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    char key[64];
    for (int v = r->nver - 1; v >= 0; v--) {
        int i = (int)(rand_r(&r->seed) % 500);
        key_of(key, sizeof(key), i);
        (void)model_pmap_get(r->ver[v], key);
        model_pmap_unref(r->ver[v]);
    }
    return NULL;
}

START_TEST(pmap_versions_dropped_from_many_threads)
{
    enum { NVER = 200, NTHR = 4 };
    char key[64];
    static model_pmap_t *ver[NVER], *held[NTHR][NVER];
    reset_counts();
    ver[0] = model_pmap_new(&tval_ops);
    for (int v = 1; v < NVER; v++) {
        model_pmap_edit_t *e = model_pmap_edit(ver[v - 1]);
        for (int k = 0; k < 20; k++) {
            key_of(key, sizeof(key), (v * 31 + k * 17) % 500);
            model_pmap_put(e, key, k % 5 ? &vals[(v + k) % NVALS] : NULL);
        }
        ver[v] = model_pmap_finish(e);
    }
    pthread_t th[NTHR];
    reader_t rd[NTHR];
    for (int t = 0; t < NTHR; t++) {
        for (int v = 0; v < NVER; v++)
            held[t][v] = model_pmap_ref(ver[v]);
        rd[t] = (reader_t){held[t], NVER, (unsigned)t + 1};
        ck_assert_int_eq(pthread_create(&th[t], NULL, reader_main, &rd[t]), 0);
    }
    for (int v = 0; v < NVER; v++)
        model_pmap_unref(ver[v]);
    for (int t = 0; t < NTHR; t++)
        pthread_join(th[t], NULL);
    assert_all_released();
}
END_TEST

static Suite *pmap_suite(void)
{
    Suite *s = suite_create("pmap");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pmap_put_get_remove);
    tcase_add_test(tc, pmap_versions_are_immutable);
    tcase_add_test(tc, pmap_diff_matches_naive_diff);
    tcase_add_test(tc, pmap_diff_of_empty_and_equal_versions_is_empty);
    tcase_add_test(tc, pmap_collision_keys);
    tcase_add_test(tc, pmap_release_called_once);
    tcase_add_test(tc, pmap_leaf_keys_borrowed_from_values);
    tcase_add_test(tc, pmap_edit_does_not_touch_source);
    tcase_add_test(tc, pmap_diff_cost_follows_change);
    tcase_add_test(tc, pmap_versions_dropped_from_many_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pmap_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
