/*
 * test_base.c - tests for the building blocks (model/base): the hash
 * function against independently computed values, and the string hash map:
 * replace and delete, growth, the map's own key copy, slots, take with
 * re-insertion, iteration, sweep and the set mark.
 */
#include "base.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* check reports every passing ck_assert through a pipe, which dominates the
 * loops over many keys; CHECK only calls into check when it fails. */
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            ck_abort_msg("%s:%d: check failed: %s", __FILE__, __LINE__, #x);                       \
    } while (0)

/* Values are borrowed: the tests point them into this array. */
static int vals[8];

static void key_of(char *buf, size_t len, unsigned i)
{
    snprintf(buf, len, "ns/name-%u", i);
}

/* Expected values from an implementation written apart from map.c, in
 * Python:
 *   def fnv(b):
 *       h = 0xcbf29ce484222325
 *       for c in b: h = ((h ^ c) * 0x100000001b3) & (2**64 - 1)
 *       return h
 *   def avalanche(h):
 *       h ^= h >> 33; h = (h * 0xff51afd7ed558ccd) & (2**64 - 1)
 *       return h ^ (h >> 33)
 * fnv(b"a") = 0xaf63dc4c8601ec8c and fnv(b"foobar") = 0x85944171f73967e8
 * are the published FNV-1a 64 test vectors. */
START_TEST(hash_known_values)
{
    ck_assert_uint_eq(base_hash("", 0), 0xecba3df2c3383c52ULL);
    ck_assert_uint_eq(base_hash("a", 1), 0xed8170de1919a24dULL);
    ck_assert_uint_eq(base_hash("foobar", 6), 0x6916ce8b48d4bc55ULL);
    ck_assert_uint_eq(base_hash("ns/name-123456", 14), 0x7febba82e0f87e0aULL);
    ck_assert_uint_eq(base_hash("a\0b", 3), 0x234b9f53ca31740fULL);
    ck_assert_uint_eq(base_hash_str(""), 0xecba3df2c3383c52ULL);
    ck_assert_uint_eq(base_hash_str("foobar"), 0x6916ce8b48d4bc55ULL);
    ck_assert_uint_eq(base_hash_str("ns/name-123456"), 0x7febba82e0f87e0aULL);
}
END_TEST

START_TEST(hash_str_is_hash_of_the_bytes)
{
    char key[64];
    for (unsigned i = 0; i < 1000; i++) {
        key_of(key, sizeof(key), i * 7919u);
        CHECK(base_hash_str(key) == base_hash(key, strlen(key)));
    }
}
END_TEST

/* Pieces chain: "foo" then "bar" hashes, with the Python above extended
 * by fnv(b, h) starting from h, to
 *   avalanche(fnv(b"bar", avalanche(fnv(b"foo")) ^ 0xcbf29ce484222325))
 * which is neither the hash of "foobar" nor that of "bar". */
START_TEST(hash_more_chains_pieces)
{
    ck_assert_uint_eq(base_hash_more(0, "foobar", 6), base_hash("foobar", 6));
    uint64_t h = base_hash_more(base_hash("foo", 3), "bar", 3);
    ck_assert_uint_eq(h, 0x6095cd836a744437ULL);
    ck_assert_uint_ne(h, base_hash("foobar", 6));
    ck_assert_uint_ne(h, base_hash("bar", 3));
}
END_TEST

START_TEST(map_put_get_replace_del)
{
    base_map_t m;
    base_map_init(&m);
    ck_assert_ptr_null(base_map_get(&m, "a"));
    ck_assert_ptr_null(base_map_del(&m, "a"));
    ck_assert_ptr_null(base_map_put(&m, "a", &vals[0]));
    ck_assert_ptr_null(base_map_put(&m, "b", &vals[1]));
    ck_assert_uint_eq(m.n, 2);
    ck_assert_ptr_eq(base_map_get(&m, "a"), &vals[0]);
    ck_assert_ptr_eq(base_map_get(&m, "b"), &vals[1]);
    ck_assert_ptr_eq(base_map_put(&m, "a", &vals[2]), &vals[0]); /* the old value back */
    ck_assert_uint_eq(m.n, 2);
    ck_assert_ptr_eq(base_map_get(&m, "a"), &vals[2]);
    ck_assert_ptr_eq(base_map_del(&m, "a"), &vals[2]);
    ck_assert_ptr_null(base_map_get(&m, "a"));
    ck_assert_ptr_null(base_map_del(&m, "a"));
    ck_assert_ptr_eq(base_map_get(&m, "b"), &vals[1]);
    ck_assert_uint_eq(m.n, 1);
    base_map_destroy(&m, NULL);
    ck_assert_uint_eq(m.n, 0);
    ck_assert_ptr_null(base_map_get(&m, "b"));
    /* destroyed is empty and usable again */
    ck_assert_ptr_null(base_map_put(&m, "b", &vals[3]));
    ck_assert_ptr_eq(base_map_get(&m, "b"), &vals[3]);
    base_map_destroy(&m, NULL);
}
END_TEST

/* Every key stays found across each doubling, and deleting half leaves
 * exactly the other half. */
START_TEST(map_grows_keeping_every_key)
{
    enum { N = 1 << 17 };
    base_map_t m;
    base_map_init(&m);
    char key[64];
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), i);
        CHECK(base_map_put(&m, key, &vals[i % 8]) == NULL);
        if ((i & (i + 1)) == 0) /* i + 1 is a power of two: check all so far */
            for (unsigned j = 0; j <= i; j++) {
                key_of(key, sizeof(key), j);
                CHECK(base_map_get(&m, key) == &vals[j % 8]);
            }
    }
    ck_assert_uint_eq(m.n, N);
    for (unsigned i = 0; i < N; i += 2) {
        key_of(key, sizeof(key), i);
        CHECK(base_map_del(&m, key) == &vals[i % 8]);
    }
    ck_assert_uint_eq(m.n, N / 2);
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), i);
        CHECK(base_map_get(&m, key) == (i % 2 ? &vals[i % 8] : NULL));
    }
    base_map_destroy(&m, NULL);
}
END_TEST

START_TEST(map_key_returns_the_maps_copy)
{
    base_map_t m;
    base_map_init(&m);
    char key[] = "ns/name";
    base_map_put(&m, key, &vals[0]);
    const char *k = base_map_key(&m, "ns/name");
    ck_assert_ptr_nonnull(k);
    ck_assert_ptr_ne(k, key);
    ck_assert_str_eq(k, "ns/name");
    key[0] = 'X'; /* the caller's buffer is not the key */
    ck_assert_str_eq(base_map_key(&m, "ns/name"), "ns/name");
    ck_assert_ptr_eq(base_map_get(&m, "ns/name"), &vals[0]);
    ck_assert_ptr_null(base_map_key(&m, key));
    base_map_destroy(&m, NULL);
}
END_TEST

START_TEST(map_slot_writes_in_place)
{
    base_map_t m;
    base_map_init(&m);
    ck_assert_ptr_null(base_map_slot(&m, "a"));
    base_map_put(&m, "a", &vals[0]);
    void **s = base_map_slot(&m, "a");
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_eq(*s, &vals[0]);
    *s = &vals[1];
    ck_assert_ptr_eq(base_map_get(&m, "a"), &vals[1]);
    ck_assert_ptr_null(base_map_slot(&m, "b"));
    ck_assert_uint_eq(m.n, 1);
    base_map_destroy(&m, NULL);
}
END_TEST

typedef struct take_ctx {
    base_map_t *m;
    unsigned seen;
} take_ctx_t;

/* Puts every other key back, under its key with a suffix. */
static void take_cb(const char *key, void *val, void *arg)
{
    take_ctx_t *c = arg;
    unsigned i = (unsigned)((int *)val - vals);
    c->seen++;
    if (i % 2 == 0) {
        char k[80];
        snprintf(k, sizeof(k), "%s/again", key);
        CHECK(base_map_put(c->m, k, val) == NULL);
    }
}

START_TEST(map_take_allows_reinsertion)
{
    base_map_t m;
    base_map_init(&m);
    char key[64];
    for (unsigned i = 0; i < 8; i++) {
        key_of(key, sizeof(key), i);
        base_map_put(&m, key, &vals[i]);
    }
    take_ctx_t c = {&m, 0};
    base_map_take(&m, take_cb, &c);
    ck_assert_uint_eq(c.seen, 8);
    ck_assert_uint_eq(m.n, 4);
    for (unsigned i = 0; i < 8; i++) {
        key_of(key, sizeof(key), i);
        ck_assert_ptr_null(base_map_get(&m, key));
        strcat(key, "/again");
        ck_assert_ptr_eq(base_map_get(&m, key), i % 2 ? NULL : &vals[i]);
    }
    base_map_destroy(&m, NULL);
}
END_TEST

START_TEST(map_iteration_visits_each_entry_once)
{
    enum { N = 5000 };
    base_map_t m;
    base_map_init(&m);
    ck_assert_ptr_null(base_map_first(&m));
    unsigned *ids = malloc(N * sizeof(*ids));
    unsigned char *hits = calloc(N, 1);
    ck_assert_ptr_nonnull(ids);
    ck_assert_ptr_nonnull(hits);
    char key[64];
    for (unsigned i = 0; i < N; i++) {
        ids[i] = i;
        key_of(key, sizeof(key), i);
        base_map_put(&m, key, &ids[i]);
    }
    size_t n = 0;
    for (const base_map_ent_t *e = base_map_first(&m); e; e = base_map_next(&m, e)) {
        unsigned i = *(unsigned *)e->val;
        key_of(key, sizeof(key), i);
        CHECK(strcmp(e->key, key) == 0);
        CHECK(hits[i]++ == 0);
        n++;
    }
    ck_assert_uint_eq(n, N);
    base_map_destroy(&m, NULL);
    free(ids);
    free(hits);
}
END_TEST

static bool drop_odd(const char *key, void *val, void *arg)
{
    (void)key;
    unsigned *dropped = arg;
    unsigned i = *(unsigned *)val;
    if (i % 2 == 0)
        return false;
    (*dropped)++;
    free(val);
    return true;
}

START_TEST(map_sweep_removes_what_fn_chooses)
{
    enum { N = 1000 };
    base_map_t m;
    base_map_init(&m);
    char key[64];
    for (unsigned i = 0; i < N; i++) {
        unsigned *v = malloc(sizeof(*v));
        ck_assert_ptr_nonnull(v);
        *v = i;
        key_of(key, sizeof(key), i);
        base_map_put(&m, key, v);
    }
    unsigned dropped = 0;
    base_map_sweep(&m, drop_odd, &dropped);
    ck_assert_uint_eq(dropped, N / 2);
    ck_assert_uint_eq(m.n, N / 2);
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), i);
        unsigned *v = base_map_get(&m, key);
        CHECK(i % 2 ? v == NULL : v && *v == i);
    }
    base_map_destroy(&m, free);
}
END_TEST

static unsigned n_freed;

static void count_free(void *v)
{
    CHECK(v != BASE_MAP_SET);
    n_freed++;
}

START_TEST(map_destroy_frees_values_but_not_the_set_mark)
{
    base_map_t m;
    base_map_init(&m);
    base_map_put(&m, "a", BASE_MAP_SET);
    base_map_put(&m, "b", &vals[0]);
    base_map_put(&m, "c", BASE_MAP_SET);
    ck_assert_ptr_eq(base_map_get(&m, "a"), BASE_MAP_SET);
    ck_assert_ptr_nonnull(BASE_MAP_SET);
    n_freed = 0;
    base_map_destroy(&m, count_free);
    ck_assert_uint_eq(n_freed, 1);
    ck_assert_uint_eq(m.n, 0);
}
END_TEST

START_TEST(map_empty_and_long_keys)
{
    base_map_t m;
    base_map_init(&m);
    size_t len = 100000;
    char *a = malloc(len + 1), *b = malloc(len + 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    memset(a, 'x', len);
    a[len] = '\0';
    memcpy(b, a, len + 1);
    b[len - 1] = 'y'; /* differs in the last byte only */
    base_map_put(&m, "", &vals[0]);
    base_map_put(&m, a, &vals[1]);
    base_map_put(&m, b, &vals[2]);
    ck_assert_uint_eq(m.n, 3);
    ck_assert_ptr_eq(base_map_get(&m, ""), &vals[0]);
    ck_assert_ptr_eq(base_map_get(&m, a), &vals[1]);
    ck_assert_ptr_eq(base_map_get(&m, b), &vals[2]);
    ck_assert_str_eq(base_map_key(&m, b), b);
    a[len - 1] = '\0'; /* a prefix of both is a different key */
    ck_assert_ptr_null(base_map_get(&m, a));
    ck_assert_ptr_eq(base_map_del(&m, ""), &vals[0]);
    ck_assert_ptr_null(base_map_get(&m, ""));
    ck_assert_ptr_eq(base_map_get(&m, b), &vals[2]);
    base_map_destroy(&m, NULL);
    free(a);
    free(b);
}
END_TEST

static Suite *base_suite(void)
{
    Suite *s = suite_create("base");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, hash_known_values);
    tcase_add_test(tc, hash_str_is_hash_of_the_bytes);
    tcase_add_test(tc, hash_more_chains_pieces);
    tcase_add_test(tc, map_put_get_replace_del);
    tcase_add_test(tc, map_grows_keeping_every_key);
    tcase_add_test(tc, map_key_returns_the_maps_copy);
    tcase_add_test(tc, map_slot_writes_in_place);
    tcase_add_test(tc, map_take_allows_reinsertion);
    tcase_add_test(tc, map_iteration_visits_each_entry_once);
    tcase_add_test(tc, map_sweep_removes_what_fn_chooses);
    tcase_add_test(tc, map_destroy_frees_values_but_not_the_set_mark);
    tcase_add_test(tc, map_empty_and_long_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(base_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
