/*
 * test_jv.c - kube/jv.c, the watcher's in-place JSON parser: the values it
 * builds, agreement with jansson on valid and invalid text, the limits, and
 * that errors say where. (tests/fuzz/fuzz_json.c checks the same agreement
 * on random input.)
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"

static kube_jdoc_t doc;
static char *text;

/* Parses a copy of s (jv writes into its input); 0 or -1. */
static int parse(const char *s)
{
    free(text);
    text = strdup(s);
    return kube_jparse(&doc, text, strlen(text));
}

static void teardown(void)
{
    kube_jdoc_clear(&doc);
    free(text);
    text = NULL;
}

START_TEST(jv_values_and_lookup)
{
    ck_assert_int_eq(parse(" {\"metadata\": {\"name\": \"web\", \"labels\": {\"app\": \"x\"}},"
                           " \"n\": -42, \"r\": 2.5e1, \"t\": true, \"f\": false, \"z\": null,"
                           " \"a\": [1, [2, 3], {\"k\": \"v\"}, \"s\"]}\r\n"),
                     0);
    const kube_jv_t *root = kube_jroot(&doc);
    ck_assert_int_eq(root->type, KUBE_J_OBJECT);
    ck_assert_uint_eq(root->len, 7);
    ck_assert_uint_eq(root->size, doc.n);
    const kube_jv_t *md = kube_jget(root, "metadata");
    ck_assert_str_eq(kube_jget(md, "name")->v.s, "web");
    ck_assert_uint_eq(kube_jget(md, "name")->len, 3);
    ck_assert_str_eq(kube_jget(kube_jget(md, "labels"), "app")->v.s, "x");
    ck_assert_int_eq(kube_jget(root, "n")->v.i, -42);
    ck_assert_int_eq(kube_jget(root, "n")->type, KUBE_J_INT);
    ck_assert_double_eq(kube_jget(root, "r")->v.d, 25.0);
    ck_assert_int_eq(kube_jget(root, "t")->type, KUBE_J_TRUE);
    ck_assert_int_eq(kube_jget(root, "f")->type, KUBE_J_FALSE);
    ck_assert_int_eq(kube_jget(root, "z")->type, KUBE_J_NULL);
    ck_assert_ptr_null(kube_jget(root, "missing"));
    ck_assert_ptr_null(kube_jget(root, "metadat")); /* prefixes do not match */
    ck_assert_ptr_null(kube_jget(kube_jget(root, "n"), "x"));
    ck_assert_ptr_null(kube_jget(NULL, "x"));
    const kube_jv_t *a = kube_jget(root, "a");
    ck_assert_uint_eq(a->len, 4);
    ck_assert_int_eq(kube_jat(a, 0)->v.i, 1);
    ck_assert_int_eq(kube_jat(kube_jat(a, 1), 1)->v.i, 3);
    ck_assert_str_eq(kube_jget(kube_jat(a, 2), "k")->v.s, "v");
    ck_assert_str_eq(kube_jat(a, 3)->v.s, "s");
    ck_assert_ptr_null(kube_jat(a, 4));
    ck_assert_ptr_null(kube_jat(md, 0));
    /* iteration visits each element once, in order, skipping subtrees */
    size_t i, n = 0;
    const kube_jv_t *el;
    KUBE_JARRAY_FOREACH(a, i, el)
    {
        ck_assert_ptr_eq(el, kube_jat(a, i));
        n++;
    }
    ck_assert_uint_eq(n, 4);
    const kube_jv_t *k;
    const char *keys[] = {"metadata", "n", "r", "t", "f", "z", "a"};
    KUBE_JOBJECT_FOREACH(root, i, k)
    {
        ck_assert_str_eq(k->v.s, keys[i]);
        ck_assert_ptr_eq(k + 1, kube_jget(root, keys[i]));
    }
}
END_TEST

START_TEST(jv_strings_unescaped_in_place)
{
    ck_assert_int_eq(
        parse("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u6771\", "
              "\"\\ud83d\\ude00\", \"caf\xc3\xa9 \xe6\x9d\xb1 \xf0\x9f\x98\x80\", \"\"]"),
        0);
    const kube_jv_t *a = kube_jroot(&doc);
    ck_assert_str_eq(kube_jat(a, 0)->v.s, "a\"b\\c/d\b\f\n\r\t");
    ck_assert_uint_eq(kube_jat(a, 0)->len, 12);
    ck_assert_str_eq(kube_jat(a, 1)->v.s, "A\xc3\xa9\xe6\x9d\xb1");
    ck_assert_str_eq(kube_jat(a, 2)->v.s, "\xf0\x9f\x98\x80");
    ck_assert_str_eq(kube_jat(a, 3)->v.s, "caf\xc3\xa9 \xe6\x9d\xb1 \xf0\x9f\x98\x80");
    ck_assert_str_eq(kube_jat(a, 4)->v.s, "");
    /* the values live in the parsed buffer itself */
    ck_assert(kube_jat(a, 0)->v.s > text && kube_jat(a, 0)->v.s < text + strlen("[\"a"));
    /* Go's encoding/json (the API server) escapes <, >, & and U+2028 */
    ck_assert_int_eq(parse("{\"a\":\"\\u003cb\\u003e \\u0026 \\u2028\"}"), 0);
    ck_assert_str_eq(kube_jget(kube_jroot(&doc), "a")->v.s, "<b> & \xe2\x80\xa8");
}
END_TEST

START_TEST(jv_numbers_at_the_limits)
{
    ck_assert_int_eq(parse("[9223372036854775807, -9223372036854775808, 0, -0, 1e2, 1E-2, 0.5,"
                           " 1e-400]"),
                     0);
    const kube_jv_t *a = kube_jroot(&doc);
    ck_assert(kube_jat(a, 0)->v.i == INT64_MAX);
    ck_assert(kube_jat(a, 1)->v.i == INT64_MIN);
    ck_assert_int_eq(kube_jat(a, 3)->type, KUBE_J_INT);
    ck_assert_int_eq(kube_jat(a, 4)->type, KUBE_J_REAL);
    ck_assert_double_eq(kube_jat(a, 4)->v.d, 100.0);
    ck_assert_double_eq(kube_jat(a, 5)->v.d, 0.01);
    ck_assert_double_eq(kube_jat(a, 7)->v.d, 0.0); /* underflow is zero, as in jansson */
    ck_assert_int_eq(parse("9223372036854775808"), -1);
    ck_assert_str_eq(doc.err, "offset 0: integer out of the 64-bit range");
    ck_assert_int_eq(parse("-9223372036854775809"), -1);
    ck_assert_int_eq(parse("1e400"), -1);
}
END_TEST

START_TEST(jv_duplicate_member_last_wins)
{
    ck_assert_int_eq(parse("{\"a\": 1, \"b\": 2, \"a\": 3}"), 0);
    ck_assert_int_eq(kube_jget(kube_jroot(&doc), "a")->v.i, 3);
}
END_TEST

/* The watcher's mode: numbers out of range and repeated names are marked,
 * not fatal, and kube_jbad says where, so that only their object is
 * refused. */
static int parse_marked(const char *s)
{
    free(text);
    text = strdup(s);
    return kube_jparse_ex(&doc, text, strlen(text), KUBE_JP_MARK);
}

START_TEST(jv_marked_numbers_out_of_range)
{
    char why[300];
    ck_assert_int_eq(
        parse_marked("{\"a\": [1, 18446744073709551617], \"b\": {\"c\": -1e400}, \"d\": 2}"), 0);
    ck_assert_uint_eq(doc.nbad, 2);
    const kube_jv_t *r = kube_jroot(&doc);
    ck_assert_int_eq(kube_jget(r, "d")->v.i, 2);
    ck_assert_int_eq(kube_jat(kube_jget(r, "a"), 0)->v.i, 1);
    ck_assert_uint_eq(kube_jbad(r, why, sizeof(why)), 2);
    ck_assert_str_eq(why, "a[1]: number out of range: 18446744073709551617");
    ck_assert_uint_eq(kube_jbad(kube_jget(r, "b"), why, sizeof(why)), 1);
    ck_assert_str_eq(why, "c: number out of range: -1e400");
    ck_assert_uint_eq(kube_jbad(kube_jget(r, "d"), why, sizeof(why)), 0);
    ck_assert_str_eq(kube_jtype_name(kube_jat(kube_jget(r, "a"), 1)), "invalid number");
    /* 1e-400 is 0 (underflow), as jansson reads it: not marked */
    ck_assert_int_eq(parse_marked("[1e-400]"), 0);
    ck_assert_uint_eq(doc.nbad, 0);
    /* the default mode still refuses them, as jansson does */
    ck_assert_int_eq(parse("[18446744073709551617]"), -1);
}
END_TEST

START_TEST(jv_marked_duplicate_keys)
{
    char why[300], big[8192];
    ck_assert_int_eq(parse_marked("{\"m\": {\"name\": \"a\", \"x\": 1, \"name\": \"b\"}}"), 0);
    ck_assert_uint_eq(doc.nbad, 1);
    ck_assert_uint_eq(kube_jbad(kube_jroot(&doc), why, sizeof(why)), 1);
    ck_assert_str_eq(why, "m: duplicate key \"name\"");
    /* a big object (sorted, not pairwise): one repeat among 200 names */
    size_t n = (size_t)snprintf(big, sizeof(big), "{");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\"k%d\": %d, ", i, i);
    snprintf(big + n, sizeof(big) - n, "\"k117\": 0}");
    ck_assert_int_eq(parse_marked(big), 0);
    ck_assert_uint_eq(doc.nbad, 1);
    ck_assert_uint_eq(kube_jbad(kube_jroot(&doc), why, sizeof(why)), 1);
    ck_assert_str_eq(why, "duplicate key \"k117\"");
    ck_assert_int_eq(parse_marked("{\"a\": 1, \"b\": {\"a\": 2}}"), 0); /* other objects */
    ck_assert_uint_eq(doc.nbad, 0);
}
END_TEST

/* Valid text: jv's value, converted, equals what jansson parses. */
START_TEST(jv_agrees_with_jansson_on_valid_text)
{
    static const char *const ok[] = {
        "{}",
        "[]",
        "\"top-level string\"",
        "12",
        "null",
        " [ 1 , 2 ] ",
        "{\"a\":{\"b\":{\"c\":[true,false,null,{\"d\":\"e\"}]}}}",
        "{\"\":\"empty key\"}",
        "[\"\\u00ff\\u0100\\uffff\"]",
        "[-0.0, 1.5e+3, -1.25E-2, 123456789012]",
        "{\"kind\":\"Status\",\"code\":410,\"message\":\"too old resource version\"}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        json_error_t je;
        json_t *want = json_loads(ok[i], JSON_DECODE_ANY, &je);
        ck_assert_msg(want != NULL, "test text %zu: %s", i, je.text);
        ck_assert_msg(parse(ok[i]) == 0, "%s: %s", ok[i], doc.err);
        json_t *got = kube_jto_json(kube_jroot(&doc));
        ck_assert_msg(json_equal(got, want), "%s differs", ok[i]);
        json_decref(got);
        json_decref(want);
    }
}
END_TEST

/* Invalid text: both refuse, and jv's error names the offset and why. */
START_TEST(jv_agrees_with_jansson_on_invalid_text)
{
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"", "offset 0: unexpected end of input"},
        {"   ", "offset 3: unexpected end of input"},
        {"{", "offset 1: unexpected end of input"},
        {"{\"a\"}", "offset 4: expected ':'"},
        {"{\"a\":}", "offset 5: invalid token"},
        {"{\"a\":1,}", "offset 7: expected a member name"},
        {"{\"a\":1 \"b\":2}", "offset 7: expected ',' or '}'"},
        {"[1,]", "offset 3: invalid token"},
        {"[1 2]", "offset 3: expected ',' or ']'"},
        {"[1", "offset 2: unexpected end of input"},
        {"{1:2}", "offset 1: expected a member name"},
        {"[01]", "offset 2: expected ',' or ']'"},
        {"[1.]", "offset 1: invalid number"},
        {"[1e]", "offset 1: invalid number"},
        {"[-]", "offset 1: invalid token"},
        {"[+1]", "offset 1: invalid token"},
        {"[tru]", "offset 1: invalid token"},
        {"[True]", "offset 1: invalid token"},
        {"[\"abc]", "offset 6: unterminated string"},
        {"[\"a\tb\"]", "offset 3: control character 0x09 in a string"},
        {"[\"\\x\"]", "offset 2: invalid escape \\x"},
        {"[\"\\u12\"]", "offset 2: invalid \\u escape"},
        {"[\"\\u0000\"]", "offset 2: \\u0000 is not allowed in a string"},
        {"[\"\\ud800\"]", "offset 2: high surrogate \\uD800 without a low one"},
        {"[\"\\udc00\"]", "offset 2: lone low surrogate \\uDC00"},
        {"[\"\xc3\"]", "offset 2: invalid UTF-8 in a string"},
        {"[\"\xc0\x80\"]", "offset 2: invalid UTF-8 in a string"},         /* overlong */
        {"[\"\xed\xa0\x80\"]", "offset 2: invalid UTF-8 in a string"},     /* surrogate */
        {"[\"\xf4\x90\x80\x80\"]", "offset 2: invalid UTF-8 in a string"}, /* > U+10FFFF */
        {"[\xc3\xa9]", "offset 1: invalid token"},
        {"{} {}", "offset 3: unexpected data after the value"},
        {"[] x", "offset 3: unexpected data after the value"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_error_t je;
        json_t *j = json_loads(bad[i].text, JSON_DECODE_ANY, &je);
        ck_assert_msg(j == NULL, "jansson accepts %s", bad[i].text);
        ck_assert_msg(parse(bad[i].text) == -1, "jv accepts %s", bad[i].text);
        ck_assert_str_eq(doc.err, bad[i].err);
    }
}
END_TEST

/* Nesting is bounded (2048 levels, as jansson) on the heap, not the stack. */
START_TEST(jv_nesting_limit)
{
    size_t n = KUBE_J_MAX_DEPTH + 1;
    char *s = malloc(2 * n + 1);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    ck_assert_int_eq(parse(s), -1);
    ck_assert_str_eq(doc.err, "offset 2048: nested deeper than 2048");
    s[n - 1] = ' ';
    s[n] = ' ';
    ck_assert_int_eq(parse(s), 0);
    ck_assert_uint_eq(kube_jroot(&doc)->size, KUBE_J_MAX_DEPTH);
    free(s);
}
END_TEST

/* A body of many tiny values stops at the value limit, not at memory. */
START_TEST(jv_value_limit)
{
    size_t n = KUBE_J_MAX_VALUES; /* the array itself is one more */
    char *s = malloc(2 * n + 2);
    s[0] = '[';
    for (size_t i = 0; i < n; i++) {
        s[1 + 2 * i] = '0';
        s[2 + 2 * i] = i + 1 < n ? ',' : ']';
    }
    s[2 * n + 1] = '\0';
    ck_assert_int_eq(kube_jparse(&doc, s, 2 * n + 1), -1);
    ck_assert_str_eq(doc.err, "offset 33554431: more than 16777216 values");
    s[2 * n - 2] = ']'; /* one element fewer fits */
    ck_assert_int_eq(kube_jparse(&doc, s, 2 * n - 1), 0);
    ck_assert_uint_eq(doc.n, KUBE_J_MAX_VALUES);
    free(s);
}
END_TEST

/* A document is reusable: a failed parse then a good one, and trimming. */
START_TEST(jv_document_reuse_and_trim)
{
    ck_assert_int_eq(parse("[1,2,3,4,5,6,7,8,9,10]"), 0);
    ck_assert_int_eq(parse("[1,2"), -1);
    ck_assert_int_eq(parse("{\"a\":[]}"), 0);
    ck_assert_uint_eq(doc.n, 3);
    ck_assert_str_eq(doc.err, "");
    kube_jdoc_trim(&doc, 1000000);
    ck_assert_ptr_nonnull(doc.v);
    kube_jdoc_trim(&doc, 1);
    ck_assert_ptr_null(doc.v);
    ck_assert_int_eq(parse("[true]"), 0);
    ck_assert_int_eq(kube_jat(kube_jroot(&doc), 0)->type, KUBE_J_TRUE);
}
END_TEST

/* d and the text parse in doc hold the same slots: types, counts, subtree
 * sizes, numbers bit for bit and strings byte for byte. */
static void assert_same_slots(const kube_jdoc_t *d, const char *what)
{
    ck_assert_msg(d->n == doc.n, "%s: %zu slots, text gives %zu", what, d->n, doc.n);
    for (size_t i = 0; i < doc.n; i++) {
        const kube_jv_t *a = &d->v[i], *b = &doc.v[i];
        ck_assert_msg(a->type == b->type && a->len == b->len && a->size == b->size && !a->dup,
                      "%s: slot %zu: type %d len %u size %u, text gives %d %u %u", what, i, a->type,
                      a->len, a->size, b->type, b->len, b->size);
        if (a->type == KUBE_J_INT)
            ck_assert_msg(a->v.i == b->v.i, "%s: slot %zu", what, i);
        else if (a->type == KUBE_J_REAL)
            ck_assert_msg(memcmp(&a->v.d, &b->v.d, sizeof(double)) == 0,
                          "%s: slot %zu: %.17g %.17g", what, i, a->v.d, b->v.d);
        else if (a->type == KUBE_J_STRING)
            ck_assert_msg(memcmp(a->v.s, b->v.s, a->len) == 0 && a->v.s[a->len] == '\0',
                          "%s: slot %zu: \"%s\", text gives \"%s\"", what, i, a->v.s, b->v.s);
    }
    ck_assert_uint_eq(d->nbad, 0);
}

/* s through jansson then kube_jfrom_json gives what s through kube_jparse
 * gives, and the copy reads back into an equal jansson value. */
static void assert_from_json_as_text(const char *s, const char *what)
{
    json_error_t je;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &je);
    ck_assert_msg(j != NULL, "%s: %s", what, je.text);
    kube_jdoc_t d = {0};
    ck_assert_msg(kube_jfrom_json(&d, j) == 0, "%s: %s", what, d.err);
    ck_assert_msg(parse(s) == 0, "%s: %s", what, doc.err);
    assert_same_slots(&d, what);
    json_t *back = kube_jto_json(kube_jroot(&d));
    ck_assert_msg(json_equal(back, j), "%s: differs after the round trip", what);
    json_decref(back);
    kube_jdoc_clear(&d);
    json_decref(j);
}

START_TEST(jv_from_jansson_same_slots_as_text)
{
    static const char *const cases[] = {
        "{}",
        "[]",
        "\"\"",
        "null",
        "true",
        "-0",
        "[{}, [], \"\", [[]], {\"a\": {}}]",
        "{\"z\": 1, \"a\": 2, \"m\": {\"y\": [], \"b\": {}}}", /* member order kept */
        "{\"metadata\": {\"name\": \"web\", \"labels\": {\"app\": \"x\"}}, \"n\": -42,"
        " \"t\": true, \"f\": false, \"z\": null, \"a\": [1, [2, 3], {\"k\": \"v\"}, \"s\"]}",
        "{\"caf\\u00e9\": \"na\xc3\xafve \\ud83d\\ude00 \xe2\x82\xac\", \"\\n\\t\\\"\\\\/\": "
        "\"\\u0001\\u001f\", \"\xf0\x9f\x98\x80\": [\"\\u2028\"]}",
        "[9223372036854775807, -9223372036854775808, 0, -1, 4294967296]",
        "[0.1, -0.0, 1.0, 2.5E+3, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 1e-400,"
        " 123456789012345678901234567890.5, 0.30000000000000004]",
        "[[[[[[[[[[[[[[[[{\"deep\": [[[{\"x\": [null]}]]]}]]]]]]]]]]]]]]]]",
    };
    char what[32];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(what, sizeof(what), "case %zu", i);
        assert_from_json_as_text(cases[i], what);
    }
    /* and the objects the decoder tests read */
    static const char *const files[] = {
        "endpointslice.json",
        "namespace.json",
        "node.json",
        "pod.json",
        "pod-terminating.json",
        "service.json",
        "service-eastwest.json",
        "service-headless.json",
    };
    const char *dir = getenv("MESHFED_TESTDATA");
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/decode/%s", dir ? dir : "tests/data", files[i]);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "%s", path);
        char buf[65536];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        ck_assert_uint_lt(n, sizeof(buf) - 1);
        buf[n] = '\0';
        assert_from_json_as_text(buf, files[i]);
    }
}
END_TEST

/* The copy's strings are the json_t's own, not copies. */
START_TEST(jv_from_jansson_borrows_strings)
{
    json_t *j = json_pack("{s:s, s:[s]}", "name", "web", "v", "x");
    ck_assert_int_eq(kube_jfrom_json(&doc, j), 0);
    const kube_jv_t *root = kube_jroot(&doc);
    ck_assert_ptr_eq(kube_jget(root, "name")->v.s, json_string_value(json_object_get(j, "name")));
    ck_assert_ptr_eq(kube_jat(kube_jget(root, "v"), 0)->v.s,
                     json_string_value(json_array_get(json_object_get(j, "v"), 0)));
    json_decref(j);
}
END_TEST

/* What jansson lets a program build but no JSON text parses to is refused,
 * with the text parser's words; the document stays usable. */
START_TEST(jv_from_jansson_refuses_what_text_cannot_hold)
{
    json_t *j = json_pack("{s:o}", "s", json_stringn("a\0b", 3));
    ck_assert_int_eq(kube_jfrom_json(&doc, j), -1);
    ck_assert_str_eq(doc.err, "\\u0000 is not allowed in a string");
    json_decref(j);

    j = json_object();
    json_object_setn_new(j, "k\0ey", 4, json_null());
    ck_assert_int_eq(kube_jfrom_json(&doc, j), -1);
    ck_assert_str_eq(doc.err, "\\u0000 is not allowed in a string");
    json_decref(j);

    j = json_pack("[o]", json_stringn_nocheck("ok\xed\xa0\x80", 5)); /* a surrogate */
    ck_assert_int_eq(kube_jfrom_json(&doc, j), -1);
    ck_assert_str_eq(doc.err, "invalid UTF-8 in a string");
    json_decref(j);

    ck_assert_int_eq(kube_jfrom_json(&doc, NULL), -1);
    ck_assert_str_eq(doc.err, "no value");

    /* nesting: as deep as text may go, and no deeper */
    json_t *deep = json_array();
    for (int i = 1; i < KUBE_J_MAX_DEPTH; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, deep);
        deep = outer;
    }
    ck_assert_int_eq(kube_jfrom_json(&doc, deep), 0);
    ck_assert_uint_eq(doc.n, KUBE_J_MAX_DEPTH);
    json_t *deeper = json_pack("{s:o}", "a", deep);
    ck_assert_int_eq(kube_jfrom_json(&doc, deeper), -1);
    ck_assert_str_eq(doc.err, "nested deeper than 2048");
    json_decref(deeper);

    j = json_pack("{s:[i]}", "a", 1);
    ck_assert_int_eq(kube_jfrom_json(&doc, j), 0);
    ck_assert_str_eq(doc.err, "");
    ck_assert_int_eq(kube_jat(kube_jget(kube_jroot(&doc), "a"), 0)->v.i, 1);
    json_decref(j);
}
END_TEST

static Suite *jv_suite(void)
{
    Suite *s = suite_create("jv");
    TCase *tc = tcase_create("jv");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120); /* jv_value_limit parses 16M values under ASan */
    tcase_add_test(tc, jv_values_and_lookup);
    tcase_add_test(tc, jv_strings_unescaped_in_place);
    tcase_add_test(tc, jv_numbers_at_the_limits);
    tcase_add_test(tc, jv_duplicate_member_last_wins);
    tcase_add_test(tc, jv_marked_numbers_out_of_range);
    tcase_add_test(tc, jv_marked_duplicate_keys);
    tcase_add_test(tc, jv_agrees_with_jansson_on_valid_text);
    tcase_add_test(tc, jv_agrees_with_jansson_on_invalid_text);
    tcase_add_test(tc, jv_nesting_limit);
    tcase_add_test(tc, jv_value_limit);
    tcase_add_test(tc, jv_document_reuse_and_trim);
    tcase_add_test(tc, jv_from_jansson_same_slots_as_text);
    tcase_add_test(tc, jv_from_jansson_borrows_strings);
    tcase_add_test(tc, jv_from_jansson_refuses_what_text_cannot_hold);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
