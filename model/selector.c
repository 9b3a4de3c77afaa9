/*
 * selector.c - Kubernetes label selectors (metav1.LabelSelector).
 *
 * Mirrors k8s.io/apimachinery: metav1.LabelSelectorAsSelector turns each
 * matchLabels entry into an "equals" requirement and each matchExpressions
 * entry into an In/NotIn/Exists/DoesNotExist requirement, validates them like
 * labels.NewRequirement, and ANDs them. The requirements are kept sorted by
 * key as labels.Selector does, so model_selector_string() gives the same
 * canonical text as Selector.String().
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define LABEL_NAME_MAX 63    /* name part of a key, and a value */
#define LABEL_PREFIX_MAX 253 /* DNS-1123 subdomain */
#define QUOTE_MAX 64         /* bytes of a key or value shown in errors */

/* Internal operators: the public ones plus matchLabels' equality. */
typedef enum req_op {
    REQ_EQUALS,
    REQ_IN,
    REQ_NOT_IN,
    REQ_EXISTS,
    REQ_NOT_EXISTS,
} req_op_t;

typedef struct req {
    char *key;
    req_op_t op;
    char **values; /* sorted, duplicates kept as given */
    size_t nvalues;
} req_t;

struct model_selector {
    req_t *reqs; /* sorted by key; see req_insert_pos() */
    size_t n;
};

/* ---------- error text ---------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Quotes s for an error message. Long strings are cut (a 254-byte key would
 * crowd the reason out of a MODEL_ERRLEN buffer) and bytes that are not
 * printable ASCII become '?', so hostile input cannot garble a log line. */
static const char *quote(const char *s, char *buf, size_t buflen)
{
    size_t n = 0, len = strlen(s);
    size_t show = len > QUOTE_MAX ? QUOTE_MAX : len;

    buf[n++] = '"';
    for (size_t i = 0; i < show && n + 5 < buflen; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (show < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

#define QBUF (QUOTE_MAX + 8)

/* ---------- syntax of keys and values ---------- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* The qualified-name rule shared by key names and values: at most 63 bytes
 * of [A-Za-z0-9_.-], alphanumeric at both ends. NULL when s[0..len) obeys. */
static const char *name_problem(const char *s, size_t len)
{
    if (len > LABEL_NAME_MAX)
        return "must be no more than 63 characters";
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return "must contain only alphanumeric characters, '-', '_' or '.'";
    }
    if (len > 0 && (!is_alnum(s[0]) || !is_alnum(s[len - 1])))
        return "must start and end with an alphanumeric character";
    return NULL;
}

/* The DNS-1123 subdomain rule for a key prefix: lowercase alphanumeric
 * labels with '-' inside them, joined by single dots. NULL when it obeys. */
static const char *prefix_problem(const char *s, size_t len)
{
    if (len == 0)
        return "must not be empty";
    if (len > LABEL_PREFIX_MAX)
        return "must be no more than 253 characters";
    for (size_t i = 0; i < len; i++) {
        if (!is_lower_alnum(s[i]) && s[i] != '-' && s[i] != '.')
            return "must consist of lower case alphanumeric characters, '-' or '.'";
    }
    /* First and last byte of each dot-separated label must be alphanumeric;
     * this also rejects empty labels ("a..b", ".a", "a."). */
    for (size_t i = 0; i < len; i++) {
        bool starts = i == 0 || s[i - 1] == '.';
        bool ends = i == len - 1 || s[i + 1] == '.';
        if ((starts || ends) && !is_lower_alnum(s[i]))
            return "must be a DNS subdomain: each '.'-separated part must start and end "
                   "with an alphanumeric character";
    }
    return NULL;
}

/* Why key is not a valid label key, or NULL when it is; *part names the
 * part of the key at fault ("prefix part ", "name part " or ""). */
static const char *key_problem(const char *key, const char **part)
{
    const char *slash = strchr(key, '/');
    const char *name = key, *why;

    *part = "";
    if (slash) {
        if (strchr(slash + 1, '/'))
            return "must contain at most one '/' (an optional DNS subdomain prefix and a name)";
        *part = "prefix part ";
        if ((why = prefix_problem(key, (size_t)(slash - key))) != NULL)
            return why;
        name = slash + 1;
    }
    *part = "name part ";
    if (name[0] == '\0')
        return "must not be empty";
    return name_problem(name, strlen(name));
}

bool model_label_key_valid(const char *key, char *err, size_t errlen)
{
    char q[QBUF];
    const char *why;

    if (!key) {
        seterr(err, errlen, "invalid label key: missing (NULL)");
        return false;
    }
    const char *part;
    if ((why = key_problem(key, &part)) == NULL)
        return true;
    seterr(err, errlen, "invalid label key %s: %s%s", quote(key, q, sizeof(q)), part, why);
    return false;
}

bool model_label_value_valid(const char *value, char *err, size_t errlen)
{
    char q[QBUF];
    const char *why;

    if (!value) {
        seterr(err, errlen, "invalid label value: missing (NULL)");
        return false;
    }
    if ((why = name_problem(value, strlen(value))) == NULL)
        return true;
    seterr(err, errlen, "invalid label value %s: %s", quote(value, q, sizeof(q)), why);
    return false;
}

/* ---------- operators ---------- */

static const char *const selop_names[] = {
    [MODEL_SELOP_IN] = "In",
    [MODEL_SELOP_NOT_IN] = "NotIn",
    [MODEL_SELOP_EXISTS] = "Exists",
    [MODEL_SELOP_DOES_NOT_EXIST] = "DoesNotExist",
};
#define NSELOPS (sizeof(selop_names) / sizeof(selop_names[0]))

/* Exact case, as the API server accepts only these spellings. */
int model_selop_parse(const char *s, model_selop_t *op)
{
    for (size_t i = 0; s && i < NSELOPS; i++) {
        if (strcmp(s, selop_names[i]) == 0) {
            *op = (model_selop_t)i;
            return 0;
        }
    }
    return -1;
}

const char *model_selop_name(model_selop_t op)
{
    return (size_t)op < NSELOPS ? selop_names[op] : "Unknown";
}

static req_op_t req_op_of(model_selop_t op)
{
    switch (op) {
    case MODEL_SELOP_IN:
        return REQ_IN;
    case MODEL_SELOP_NOT_IN:
        return REQ_NOT_IN;
    case MODEL_SELOP_EXISTS:
        return REQ_EXISTS;
    case MODEL_SELOP_DOES_NOT_EXIST:
        return REQ_NOT_EXISTS;
    }
    return REQ_EXISTS; /* unreachable: callers check op first */
}

/* ---------- requirements ---------- */

static void req_free(req_t *r)
{
    free(r->key);
    for (size_t i = 0; i < r->nvalues; i++)
        free(r->values[i]);
    free(r->values);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copies key and values into r, values sorted (strcmp order is Go's string
 * order, which Selector.String() sorts by). 0, or -1 with r empty. */
static int req_init(req_t *r, const char *key, req_op_t op, const char *const *values,
                    size_t nvalues)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->key = strdup(key);
    r->values = nvalues ? calloc(nvalues, sizeof(char *)) : NULL;
    if (!r->key || (nvalues && !r->values))
        goto oom;
    for (; r->nvalues < nvalues; r->nvalues++) {
        if (!(r->values[r->nvalues] = strdup(values[r->nvalues])))
            goto oom;
    }
    if (nvalues > 1)
        qsort(r->values, nvalues, sizeof(char *), cmp_str);
    return 0;
oom:
    req_free(r);
    memset(r, 0, sizeof(*r));
    return -1;
}

/* Where a new requirement goes: after every requirement with a smaller key,
 * and among equal keys matchLabels first, then in the order added. That is
 * the order LabelSelectorAsSelector yields for selectors of ordinary size. */
static size_t req_insert_pos(const model_selector_t *s, const char *key, req_op_t op)
{
    size_t i = 0;

    for (; i < s->n; i++) {
        int c = strcmp(s->reqs[i].key, key);
        if (c > 0 || (c == 0 && op == REQ_EQUALS && s->reqs[i].op != REQ_EQUALS))
            break;
    }
    return i;
}

/* Adds a validated requirement, copying its strings. 0 or -1 (no memory). */
static int selector_add(model_selector_t *s, const char *key, req_op_t op,
                        const char *const *values, size_t nvalues)
{
    req_t r;
    req_t *reqs = realloc(s->reqs, (s->n + 1) * sizeof(*reqs));

    if (!reqs)
        return -1;
    s->reqs = reqs;
    if (req_init(&r, key, op, values, nvalues) < 0)
        return -1;
    size_t pos = req_insert_pos(s, key, op);
    memmove(&reqs[pos + 1], &reqs[pos], (s->n - pos) * sizeof(*reqs));
    reqs[pos] = r;
    s->n++;
    return 0;
}

/* ---------- selectors ---------- */

model_selector_t *model_selector_new(void)
{
    return calloc(1, sizeof(model_selector_t));
}

void model_selector_free(model_selector_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        req_free(&s->reqs[i]);
    free(s->reqs);
    free(s);
}

model_selector_t *model_selector_copy(const model_selector_t *src)
{
    model_selector_t *s = model_selector_new();
    for (size_t i = 0; s && i < src->n; i++) {
        const req_t *r = &src->reqs[i];
        if (selector_add(s, r->key, r->op, (const char *const *)r->values, r->nvalues) < 0) {
            model_selector_free(s);
            return NULL;
        }
    }
    return s;
}

/* matchLabels is a map, so adding a key again replaces its value. */
int model_selector_add_label(model_selector_t *s, const char *key, const char *value, char *err,
                             size_t errlen)
{
    char why[MODEL_ERRLEN], q[QBUF];

    if (!model_label_key_valid(key, why, sizeof(why))) {
        seterr(err, errlen, "matchLabels: %s", why);
        return -1;
    }
    if (!model_label_value_valid(value, why, sizeof(why))) {
        seterr(err, errlen, "matchLabels key %s: %s", quote(key, q, sizeof(q)), why);
        return -1;
    }
    for (size_t i = 0; i < s->n; i++) {
        req_t *r = &s->reqs[i];
        if (r->op != REQ_EQUALS || strcmp(r->key, key) != 0)
            continue;
        char *v = strdup(value);
        if (!v)
            goto oom;
        free(r->values[0]);
        r->values[0] = v;
        return 0;
    }
    if (selector_add(s, key, REQ_EQUALS, &value, 1) == 0)
        return 0;
oom:
    seterr(err, errlen, "matchLabels key %s: out of memory", quote(key, q, sizeof(q)));
    return -1;
}

/* The value count rule of labels.NewRequirement: In and NotIn need values,
 * Exists and DoesNotExist take none. 0, or -1 with err set. */
static int check_count(model_selop_t op, size_t n, const char *qkey, char *err, size_t errlen)
{
    bool wants_values = op == MODEL_SELOP_IN || op == MODEL_SELOP_NOT_IN;

    if (wants_values && n == 0) {
        seterr(err, errlen, "matchExpressions key %s: operator %s needs at least one value", qkey,
               selop_names[op]);
        return -1;
    }
    if (!wants_values && n > 0) {
        seterr(err, errlen, "matchExpressions key %s: operator %s takes no values, got %zu", qkey,
               selop_names[op], n);
        return -1;
    }
    return 0;
}

/* Checks in the order labels.NewRequirement does: key, count, values. */
int model_selector_add_expr(model_selector_t *s, const char *key, model_selop_t op,
                            const char *const *values, size_t nvalues, char *err, size_t errlen)
{
    char why[MODEL_ERRLEN], q[QBUF];

    if (!model_label_key_valid(key, why, sizeof(why))) {
        seterr(err, errlen, "matchExpressions: %s", why);
        return -1;
    }
    quote(key, q, sizeof(q));
    if ((size_t)op >= NSELOPS) {
        seterr(err, errlen, "matchExpressions key %s: unknown operator %d", q, (int)op);
        return -1;
    }
    if (check_count(op, nvalues, q, err, errlen) < 0)
        return -1;
    if (nvalues > 0 && !values) {
        seterr(err, errlen, "matchExpressions key %s: %zu values but no array", q, nvalues);
        return -1;
    }
    for (size_t i = 0; i < nvalues; i++) {
        if (!model_label_value_valid(values[i], why, sizeof(why))) {
            seterr(err, errlen, "matchExpressions key %s: values[%zu]: %s", q, i, why);
            return -1;
        }
    }
    if (selector_add(s, key, req_op_of(op), values, nvalues) < 0) {
        seterr(err, errlen, "matchExpressions key %s: out of memory", q);
        return -1;
    }
    return 0;
}

static bool req_has_value(const req_t *r, const char *v)
{
    for (size_t i = 0; i < r->nvalues; i++) {
        if (strcmp(r->values[i], v) == 0)
            return true;
    }
    return false;
}

/* labels.Requirement.Matches: note NotIn matches when the label is absent. */
static bool req_matches(const req_t *r, const model_labels_t *labels)
{
    const char *v = labels ? model_labels_get(labels, r->key) : NULL;

    switch (r->op) {
    case REQ_EQUALS:
    case REQ_IN:
        return v && req_has_value(r, v);
    case REQ_NOT_IN:
        return !v || !req_has_value(r, v);
    case REQ_EXISTS:
        return v != NULL;
    case REQ_NOT_EXISTS:
        return v == NULL;
    }
    return false;
}

/* A NULL selector is treated as empty (matches everything), the convention
 * model.h uses for optional selectors such as the scope rules' ones. */
bool model_selector_matches(const model_selector_t *s, const model_labels_t *labels)
{
    for (size_t i = 0; s && i < s->n; i++) {
        if (!req_matches(&s->reqs[i], labels))
            return false;
    }
    return true;
}

bool model_selector_empty(const model_selector_t *s)
{
    return !s || s->n == 0;
}

/* Appends src to *p and advances *p. The caller has sized the buffer. */
static void put(char **p, const char *src)
{
    size_t n = strlen(src);
    memcpy(*p, src, n);
    *p += n;
}

static const char *const req_infix[] = {
    [REQ_EQUALS] = "=", [REQ_IN] = " in (",    [REQ_NOT_IN] = " notin (",
    [REQ_EXISTS] = "",  [REQ_NOT_EXISTS] = "",
};

/* Writes one requirement as labels.Requirement.String() does. With p NULL
 * only returns the length it would write. */
static size_t req_string(const req_t *r, char *p)
{
    char *start = p;
    size_t len = strlen(r->key) + strlen(req_infix[r->op]) + 2; /* "!" or ")" */

    for (size_t i = 0; i < r->nvalues; i++)
        len += strlen(r->values[i]) + 1;
    if (!p)
        return len;
    if (r->op == REQ_NOT_EXISTS)
        put(&p, "!");
    put(&p, r->key);
    put(&p, req_infix[r->op]);
    for (size_t i = 0; i < r->nvalues; i++) {
        if (i > 0)
            put(&p, ",");
        put(&p, r->values[i]);
    }
    if (r->op == REQ_IN || r->op == REQ_NOT_IN)
        put(&p, ")");
    return (size_t)(p - start);
}

/* Requirements joined by ','. The empty selector gives "", which (as with
 * labels.Everything().String()) means "matches everything". NULL: no memory. */
char *model_selector_string(const model_selector_t *s)
{
    size_t cap = 1;
    char *out, *p;

    for (size_t i = 0; s && i < s->n; i++)
        cap += req_string(&s->reqs[i], NULL) + 1;
    if (!(out = malloc(cap)))
        return NULL;
    p = out;
    for (size_t i = 0; s && i < s->n; i++) {
        if (i > 0)
            *p++ = ',';
        p += req_string(&s->reqs[i], p);
    }
    *p = '\0';
    return out;
}
