/*
 * test_selector.c - label selectors against Kubernetes semantics: matching
 * (a table of labels x selector -> match), validation (a table of invalid
 * requirements), key/value syntax and the canonical string form.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* One requirement of a table row. op NULL: a matchLabels entry whose value
 * is values[0]; otherwise an operator name for model_selop_parse(). */
typedef struct req_row {
    const char *key;
    const char *op;
    const char *values[4]; /* NULL-terminated */
} req_row_t;

#define MAXREQ 6

static size_t count_values(const req_row_t *r)
{
    size_t n = 0;
    while (n < 4 && r->values[n])
        n++;
    return n;
}

/* Adds one row to s. Returns what the model returned, or -2 when the
 * operator name does not parse (so no model call was made). */
static int add_row(model_selector_t *s, const req_row_t *r, char *err, size_t errlen)
{
    model_selop_t op;

    if (!r->op)
        return model_selector_add_label(s, r->key, r->values[0], err, errlen);
    if (model_selop_parse(r->op, &op) < 0)
        return -2;
    return model_selector_add_expr(s, r->key, op, r->values, count_values(r), err, errlen);
}

static model_selector_t *build(const req_row_t *reqs)
{
    model_selector_t *s = model_selector_new();
    char err[MODEL_ERRLEN];

    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < MAXREQ && reqs[i].key; i++) {
        err[0] = '\0';
        ck_assert_msg(add_row(s, &reqs[i], err, sizeof(err)) == 0, "requirement %zu: %s", i, err);
    }
    return s;
}

/* labels: "k=v" strings, NULL-terminated. */
static void build_labels(model_labels_t *l, const char *const *kv)
{
    for (size_t i = 0; kv[i]; i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", kv[i]);
        char *eq = strchr(buf, '=');
        ck_assert_ptr_nonnull(eq);
        *eq = '\0';
        ck_assert_int_eq(model_labels_set(l, buf, eq + 1), 0);
    }
}

/* ---------- matching table ---------- */

typedef struct match_case {
    const char *name;
    const char *labels[6];
    req_row_t reqs[MAXREQ];
    bool want;
} match_case_t;

/* A selector exercising every operator, ANDed. */
#define AND_REQS                                                                                   \
    {                                                                                              \
        {"app", NULL, {"web"}}, {"env", "In", {"prod", "staging"}}, {"tier", "NotIn", {"db"}},     \
            {"legacy", "DoesNotExist", {NULL}}, {"version", "Exists", {NULL}},                     \
    }

static const match_case_t match_cases[] = {
    {"empty selector, no labels", {NULL}, {{NULL}}, true},
    {"empty selector, some labels", {"a=b", "c=d", NULL}, {{NULL}}, true},
    {"matchLabels equal", {"app=web", NULL}, {{"app", NULL, {"web"}}}, true},
    {"matchLabels other value", {"app=db", NULL}, {{"app", NULL, {"web"}}}, false},
    {"matchLabels key absent", {"other=web", NULL}, {{"app", NULL, {"web"}}}, false},
    {"matchLabels empty value present", {"app=", NULL}, {{"app", NULL, {""}}}, true},
    {"matchLabels empty value absent", {NULL}, {{"app", NULL, {""}}}, false},
    {"matchLabels prefixed key",
     {"istio.io/global=true", NULL},
     {{"istio.io/global", NULL, {"true"}}},
     true},
    {"matchLabels is case sensitive", {"app=Web", NULL}, {{"app", NULL, {"web"}}}, false},
    {"In value in set", {"env=prod", NULL}, {{"env", "In", {"prod", "staging"}}}, true},
    {"In value not in set", {"env=dev", NULL}, {{"env", "In", {"prod", "staging"}}}, false},
    {"In key absent", {"x=prod", NULL}, {{"env", "In", {"prod"}}}, false},
    {"In duplicate values", {"env=prod", NULL}, {{"env", "In", {"prod", "prod"}}}, true},
    {"In empty value", {"env=", NULL}, {{"env", "In", {"", "prod"}}}, true},
    {"NotIn value in set", {"env=prod", NULL}, {{"env", "NotIn", {"prod", "staging"}}}, false},
    {"NotIn value not in set", {"env=dev", NULL}, {{"env", "NotIn", {"prod"}}}, true},
    {"NotIn key absent matches", {"x=prod", NULL}, {{"env", "NotIn", {"prod"}}}, true},
    {"NotIn no labels matches", {NULL}, {{"env", "NotIn", {"prod"}}}, true},
    {"Exists present", {"env=prod", NULL}, {{"env", "Exists", {NULL}}}, true},
    {"Exists present empty value", {"env=", NULL}, {{"env", "Exists", {NULL}}}, true},
    {"Exists absent", {"x=y", NULL}, {{"env", "Exists", {NULL}}}, false},
    {"DoesNotExist absent", {"x=y", NULL}, {{"env", "DoesNotExist", {NULL}}}, true},
    {"DoesNotExist present", {"env=", NULL}, {{"env", "DoesNotExist", {NULL}}}, false},
    {"AND all hold", {"app=web", "env=prod", "version=v1", NULL}, AND_REQS, true},
    {"AND all hold, NotIn other value",
     {"app=web", "env=staging", "tier=fe", "version=2", NULL},
     AND_REQS,
     true},
    {"AND matchLabels fails", {"app=db", "env=prod", "version=v1", NULL}, AND_REQS, false},
    {"AND In fails", {"app=web", "env=dev", "version=v1", NULL}, AND_REQS, false},
    {"AND NotIn fails", {"app=web", "env=prod", "tier=db", "version=v1", NULL}, AND_REQS, false},
    {"AND DoesNotExist fails",
     {"app=web", "env=prod", "legacy=", "version=v1", NULL},
     AND_REQS,
     false},
    {"AND Exists fails", {"app=web", "env=prod", NULL}, AND_REQS, false},
    {"same key twice, both hold",
     {"env=prod", NULL},
     {{"env", "In", {"prod", "dev"}}, {"env", "NotIn", {"dev"}}},
     true},
    {"same key twice, contradictory",
     {"env=prod", NULL},
     {{"env", "In", {"prod"}}, {"env", "NotIn", {"prod"}}},
     false},
};
#define NMATCH (sizeof(match_cases) / sizeof(match_cases[0]))

START_TEST(test_match_table)
{
    const match_case_t *c = &match_cases[_i];
    model_labels_t labels = {0};
    model_selector_t *s = build(c->reqs);

    build_labels(&labels, c->labels);
    ck_assert_msg(model_selector_matches(s, &labels) == c->want, "case \"%s\": want %s", c->name,
                  c->want ? "match" : "no match");
    ck_assert(model_selector_empty(s) == (c->reqs[0].key == NULL));
    model_labels_clear(&labels);
    model_selector_free(s);
}
END_TEST

START_TEST(test_match_null_labels_and_selector)
{
    const req_row_t notin[] = {{"env", "NotIn", {"x"}}, {NULL}};
    const req_row_t in[] = {{"env", "In", {"x"}}, {NULL}};
    model_selector_t *a = build(notin), *b = build(in);
    model_labels_t l = {0};

    /* NULL labels are an empty set: NotIn holds, In does not. */
    ck_assert(model_selector_matches(a, NULL));
    ck_assert(!model_selector_matches(b, NULL));
    /* NULL selector is treated as empty: matches everything. */
    ck_assert(model_selector_matches(NULL, &l));
    ck_assert(model_selector_empty(NULL));
    model_selector_free(a);
    model_selector_free(b);
    model_selector_free(NULL);
}
END_TEST

/* ---------- invalid requirements table ---------- */

static char name63[64], name64[65], value64[65];
static char prefix253_key[253 + 3], prefix254_key[254 + 3];

static void fill(char *buf, size_t n, char c)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

/* The over-long strings cannot be literals in a readable table. */
static void setup_long_strings(void)
{
    fill(name63, 63, 'n');
    fill(name64, 64, 'n');
    fill(value64, 64, 'v');
    fill(prefix253_key, 253, 'p');
    strcat(prefix253_key, "/x");
    fill(prefix254_key, 254, 'p');
    strcat(prefix254_key, "/x");
}

typedef struct bad_case {
    const char *name;
    req_row_t req;
    const char *why;     /* fragment the error must contain; NULL: op does not parse */
    const char *mention; /* how the key appears in the error; NULL: the key itself */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    /* operators: the API server accepts only the exact spellings */
    {"operator lowercase in", {"env", "in", {"a"}}, NULL, NULL},
    {"operator Equals", {"env", "Equals", {"a"}}, NULL, NULL},
    {"operator exists lowercase", {"env", "exists", {NULL}}, NULL, NULL},
    {"operator empty", {"env", "", {NULL}}, NULL, NULL},
    {"operator Gt", {"env", "Gt", {"1"}}, NULL, NULL},
    /* value counts */
    {"In without values", {"x", "In", {NULL}}, "operator In needs at least one value", NULL},
    {"NotIn without values",
     {"x", "NotIn", {NULL}},
     "operator NotIn needs at least one value",
     NULL},
    {"Exists with values",
     {"x", "Exists", {"a", "b"}},
     "operator Exists takes no values, got 2",
     NULL},
    {"DoesNotExist with values",
     {"x", "DoesNotExist", {"a"}},
     "operator DoesNotExist takes no values, got 1",
     NULL},
    /* keys */
    {"empty key", {"", "Exists", {NULL}}, "name part must not be empty", NULL},
    {"key starts with dash",
     {"-a", "Exists", {NULL}},
     "name part must start and end with an alphanumeric character",
     NULL},
    {"key ends with dash",
     {"a-", "In", {"v"}},
     "name part must start and end with an alphanumeric character",
     NULL},
    {"key ends with dot",
     {"a.", "In", {"v"}},
     "name part must start and end with an alphanumeric character",
     NULL},
    {"uppercase prefix",
     {"A/b", "Exists", {NULL}},
     "prefix part must consist of lower case alphanumeric characters, '-' or '.'",
     NULL},
    {"underscore in prefix",
     {"a_b.io/c", "Exists", {NULL}},
     "prefix part must consist of lower case alphanumeric characters, '-' or '.'",
     NULL},
    {"two slashes", {"a/b/c", "Exists", {NULL}}, "at most one '/'", NULL},
    {"empty prefix", {"/a", "Exists", {NULL}}, "prefix part must not be empty", NULL},
    {"empty name after prefix", {"a.io/", "Exists", {NULL}}, "name part must not be empty", NULL},
    {"prefix with empty label",
     {"a..io/b", "Exists", {NULL}},
     "prefix part must be a DNS subdomain",
     NULL},
    {"prefix label ends with dash",
     {"a-.io/b", "Exists", {NULL}},
     "prefix part must be a DNS subdomain",
     NULL},
    {"prefix starts with dot",
     {".a.io/b", "Exists", {NULL}},
     "prefix part must be a DNS subdomain",
     NULL},
    {"64-char name",
     {name64, "Exists", {NULL}},
     "name part must be no more than 63 characters",
     NULL},
    {"254-char prefix",
     {prefix254_key, "Exists", {NULL}},
     "prefix part must be no more than 253 characters",
     NULL},
    {"space in key",
     {"a b", "Exists", {NULL}},
     "name part must contain only alphanumeric characters, '-', '_' or '.'",
     NULL},
    {"non-ASCII key",
     {"caf\xc3\xa9", "Exists", {NULL}},
     "name part must contain only alphanumeric characters",
     "\"caf??\""},
    {"matchLabels bad key", {"-a", NULL, {"v"}}, "matchLabels: invalid label key \"-a\"", NULL},
    /* values */
    {"value starts with dash",
     {"env", "In", {"ok", "-x"}},
     "invalid label value \"-x\": must start and end with an alphanumeric character",
     NULL},
    {"64-char value", {"env", "NotIn", {value64}}, "must be no more than 63 characters", NULL},
    {"value with space",
     {"env", "In", {"a b"}},
     "must contain only alphanumeric characters, '-', '_' or '.'",
     NULL},
    {"matchLabels value starts with dash",
     {"env", NULL, {"-x"}},
     "invalid label value \"-x\": must start and end",
     NULL},
    {"matchLabels value ends with underscore",
     {"env", NULL, {"x_"}},
     "invalid label value \"x_\": must start and end",
     NULL},
    {"matchLabels 64-char value",
     {"env", NULL, {value64}},
     "must be no more than 63 characters",
     NULL},
};
#define NBAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Each row fails, says why, names the key, and leaves the selector as it was. */
START_TEST(test_invalid_table)
{
    const bad_case_t *c = &bad_cases[_i];
    const req_row_t keep[] = {{"keep", NULL, {"1"}}, {"other", "Exists", {NULL}}, {NULL}};
    model_selector_t *s = build(keep);
    char err[MODEL_ERRLEN] = "", mention[128];
    int rc = add_row(s, &c->req, err, sizeof(err));

    if (!c->why) {
        ck_assert_msg(rc == -2, "case \"%s\": operator \"%s\" parsed", c->name, c->req.op);
    } else {
        ck_assert_msg(rc == -1, "case \"%s\": accepted", c->name);
        ck_assert_msg(err[0] != '\0', "case \"%s\": empty error", c->name);
        /* Long keys are cut to 64 bytes in messages, so look for that much. */
        snprintf(mention, sizeof(mention), "\"%.64s", c->req.key);
        if (c->mention)
            snprintf(mention, sizeof(mention), "%s", c->mention);
        ck_assert_msg(strstr(err, mention), "case \"%s\": key not named in: %s", c->name, err);
        ck_assert_msg(strstr(err, c->why), "case \"%s\": want \"%s\" in: %s", c->name, c->why, err);
    }
    char *str = model_selector_string(s);
    ck_assert_str_eq(str, "keep=1,other");
    free(str);
    model_selector_free(s);
}
END_TEST

START_TEST(test_invalid_operator_value)
{
    model_selector_t *s = model_selector_new();
    char err[MODEL_ERRLEN] = "";
    const char *v[] = {"a"};

    ck_assert_int_eq(model_selector_add_expr(s, "env", (model_selop_t)42, v, 1, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "\"env\""));
    ck_assert_ptr_nonnull(strstr(err, "unknown operator"));
    /* values NULL with a count is refused, not dereferenced */
    ck_assert_int_eq(model_selector_add_expr(s, "env", MODEL_SELOP_IN, NULL, 2, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "\"env\""));
    /* a NULL error buffer is allowed */
    ck_assert_int_eq(model_selector_add_expr(s, "-", MODEL_SELOP_EXISTS, NULL, 0, NULL, 0), -1);
    ck_assert(model_selector_empty(s));
    model_selector_free(s);
}
END_TEST

START_TEST(test_selop_names)
{
    static const char *const names[] = {"In", "NotIn", "Exists", "DoesNotExist"};
    model_selop_t op;

    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(model_selop_parse(names[i], &op), 0);
        ck_assert_int_eq(op, i);
        ck_assert_str_eq(model_selop_name(op), names[i]);
    }
    ck_assert_int_eq(model_selop_parse("notin", &op), -1);
    ck_assert_int_eq(model_selop_parse("In ", &op), -1);
    ck_assert_int_eq(model_selop_parse(NULL, &op), -1);
}
END_TEST

/* ---------- key and value syntax ---------- */

START_TEST(test_valid_keys_and_values)
{
    const char *keys[] = {"a",
                          "A",
                          "0",
                          "a.b_c-d",
                          "MyName",
                          "example.com/MyName",
                          "istio.io/global",
                          "kubernetes.io/service-name",
                          "a-b.c-d/e",
                          "1.2.3/x",
                          name63,
                          prefix253_key};
    const char *values[] = {"", "a", "A", "a.b_c-d", "true", "0", name63};
    char err[MODEL_ERRLEN];

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(model_label_key_valid(keys[i], err, sizeof(err)), "key %s: %s", keys[i], err);
    }
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        ck_assert_msg(model_label_value_valid(values[i], err, sizeof(err)), "value \"%s\": %s",
                      values[i], err);
    ck_assert(!model_label_key_valid(NULL, err, sizeof(err)));
    ck_assert(!model_label_value_valid(NULL, NULL, 0));
    ck_assert(!model_label_value_valid(value64, err, sizeof(err)));
    ck_assert(!model_label_key_valid("-a", err, sizeof(err)));
    ck_assert_str_eq(err,
                     "invalid label key \"-a\": name part must start and end with an alphanumeric "
                     "character");
}
END_TEST

/* ---------- string form ---------- */

typedef struct string_case {
    const char *name;
    req_row_t reqs[MAXREQ];
    const char *want;
} string_case_t;

static const string_case_t string_cases[] = {
    {"empty selector means everything", {{NULL}}, ""},
    {"matchLabels", {{"app", NULL, {"web"}}}, "app=web"},
    {"matchLabels empty value", {{"app", NULL, {""}}}, "app="},
    {"In one value", {{"env", "In", {"prod"}}}, "env in (prod)"},
    {"In values sorted", {{"env", "In", {"staging", "prod", "dev"}}}, "env in (dev,prod,staging)"},
    {"In duplicates kept", {{"env", "In", {"b", "a", "b"}}}, "env in (a,b,b)"},
    {"NotIn", {{"tier", "NotIn", {"db"}}}, "tier notin (db)"},
    {"Exists", {{"version", "Exists", {NULL}}}, "version"},
    {"DoesNotExist", {{"legacy", "DoesNotExist", {NULL}}}, "!legacy"},
    {"sorted by key",
     {{"z", "Exists", {NULL}},
      {"app", NULL, {"web"}},
      {"tier", "NotIn", {"db"}},
      {"legacy", "DoesNotExist", {NULL}},
      {"env", "In", {"staging", "prod"}},
      {"a", NULL, {"1"}}},
     "a=1,app=web,env in (prod,staging),!legacy,tier notin (db),z"},
    {"prefixed keys sort bytewise",
     {{"istio.io/global", NULL, {"true"}}, {"app", "Exists", {NULL}}, {"Z", "Exists", {NULL}}},
     "Z,app,istio.io/global=true"},
    {"same key: matchLabels first, then expressions as added",
     {{"app", "NotIn", {"x"}}, {"app", "In", {"y"}}, {"app", NULL, {"web"}}},
     "app=web,app notin (x),app in (y)"},
    {"matchLabels key added twice: last value wins",
     {{"app", NULL, {"a"}}, {"app", NULL, {"b"}}},
     "app=b"},
};
#define NSTRING (sizeof(string_cases) / sizeof(string_cases[0]))

START_TEST(test_string_table)
{
    const string_case_t *c = &string_cases[_i];
    model_selector_t *s = build(c->reqs);
    char *str = model_selector_string(s);

    ck_assert_ptr_nonnull(str);
    ck_assert_msg(strcmp(str, c->want) == 0, "case \"%s\": got \"%s\", want \"%s\"", c->name, str,
                  c->want);
    free(str);
    model_selector_free(s);
}
END_TEST

START_TEST(test_string_null_selector)
{
    char *str = model_selector_string(NULL);
    ck_assert_str_eq(str, "");
    free(str);
}
END_TEST

static Suite *selector_suite(void)
{
    Suite *s = suite_create("selector");
    TCase *tc = tcase_create("match");

    tcase_add_loop_test(tc, test_match_table, 0, NMATCH);
    tcase_add_test(tc, test_match_null_labels_and_selector);
    suite_add_tcase(s, tc);

    tc = tcase_create("validation");
    tcase_add_loop_test(tc, test_invalid_table, 0, NBAD);
    tcase_add_test(tc, test_invalid_operator_value);
    tcase_add_test(tc, test_selop_names);
    tcase_add_test(tc, test_valid_keys_and_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("string");
    tcase_add_loop_test(tc, test_string_table, 0, NSTRING);
    tcase_add_test(tc, test_string_null_selector);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(selector_suite());
    int failed;

    setup_long_strings();
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
