/*
 * jv.h - the watcher's JSON parser (jv.c): internal to kube/.
 *
 * kube_jparse turns a whole buffer into a flat array of values in one pass,
 * in place: strings are unescaped where they lie and NUL-terminated where
 * their closing quote was, so a value costs one 24-byte slot and no
 * allocation. A container's members follow it; each value knows how many
 * slots its subtree takes, so skipping a subtree is one addition. This is
 * what makes list pages of 500 Pods cheap next to building a jansson tree.
 *
 * The grammar is RFC 8259 and agrees with jansson's json_loadb (no flags):
 * UTF-8 is validated, \u0000 is refused, integers must fit 64 bits, nesting
 * is limited to 2048, and a repeated member name takes the last value.
 *
 * The watcher parses with KUBE_JP_MARK instead, so that one bad object does
 * not cost the whole list page it came in: a number out of range (an
 * integer beyond 64 bits, 1e400) becomes a KUBE_J_BADNUM value and a
 * repeated member name is marked, and kube_jbad says whether (and where) a
 * value holds either; the watcher then refuses that object alone. A real
 * API server never sends duplicate keys, and the manifest loader refuses
 * them too: one rule for both.
 */
#ifndef MESHFED_KUBE_JV_H
#define MESHFED_KUBE_JV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum kube_jtype {
    KUBE_J_NULL,
    KUBE_J_FALSE,
    KUBE_J_TRUE,
    KUBE_J_INT,
    KUBE_J_REAL,
    KUBE_J_STRING,
    KUBE_J_ARRAY,
    KUBE_J_OBJECT,
    KUBE_J_BADNUM, /* KUBE_JP_MARK only: v.s (not NUL-terminated) and len hold its text */
} kube_jtype_t;

typedef struct kube_jv {
    uint8_t type;  /* kube_jtype_t */
    uint8_t dup;   /* KUBE_JP_MARK only: a member name repeated in its object */
    uint32_t len;  /* string: bytes; array: elements; object: members */
    uint32_t size; /* slots of the subtree, this one included */
    union {
        const char *s; /* NUL-terminated, inside the parsed buffer */
        int64_t i;
        double d;
    } v;
} kube_jv_t;

/* Reusable between parses; zero-initialise. */
typedef struct kube_jdoc {
    kube_jv_t *v;
    size_t n, cap;
    uint32_t *stack; /* open containers while parsing */
    size_t depth, stack_cap;
    char err[160];
    size_t nbad; /* KUBE_J_BADNUM values and repeated names (KUBE_JP_MARK) */
} kube_jdoc_t;

#define KUBE_J_MAX_DEPTH 2048
#define KUBE_J_MAX_VALUES (1u << 24) /* 384 MiB of slots: a hostile "[0,0,...]" stops here */

/* Parses buf[0..len) in place (buf is modified). 0, or -1 with d->err
 * ("offset 12: expected ':'"). The values borrow buf. */
int kube_jparse(kube_jdoc_t *d, char *buf, size_t len);
/* Same with flags: KUBE_JP_MARK marks numbers out of range and repeated
 * member names (counted in d->nbad) instead of failing. */
#define KUBE_JP_MARK 1u
int kube_jparse_ex(kube_jdoc_t *d, char *buf, size_t len, unsigned flags);
/* How many marked values v's subtree holds (0: none), with the first
 * described in out, e.g. "spec.ports[0].port: integer out of range:
 * 18446744073709551617" or "metadata: duplicate key \"name\"". */
size_t kube_jbad(const kube_jv_t *v, char *out, size_t outlen);
/* The top value of the last successful parse. */
static inline const kube_jv_t *kube_jroot(const kube_jdoc_t *d)
{
    return d->v;
}
/* Frees what the document holds; it stays usable. */
void kube_jdoc_clear(kube_jdoc_t *d);
/* Frees the slots if more than max are held (after a huge page). */
void kube_jdoc_trim(kube_jdoc_t *d, size_t max);

/* The value after v's subtree: its next sibling inside a container. */
static inline const kube_jv_t *kube_jnext(const kube_jv_t *v)
{
    return v + v->size;
}
static inline int kube_jis(const kube_jv_t *v, kube_jtype_t t)
{
    return v && v->type == t;
}
/* Member key of o; NULL when o is not an object or has no such member. */
const kube_jv_t *kube_jget(const kube_jv_t *o, const char *key);
/* Element i of a; NULL when a is not an array or too short. */
const kube_jv_t *kube_jat(const kube_jv_t *a, size_t i);
/* "object", "array", "string", "integer", "number", "boolean", "null". */
const char *kube_jtype_name(const kube_jv_t *v);

/* Every element v (index i) of array a. */
#define KUBE_JARRAY_FOREACH(a, i, el)                                                              \
    for ((i) = 0, (el) = (a) + 1; (i) < (a)->len; (i)++, (el) = kube_jnext(el))
/* Every member of object o: key k (a string value), value k + 1. */
#define KUBE_JOBJECT_FOREACH(o, i, k)                                                              \
    for ((i) = 0, (k) = (o) + 1; (i) < (o)->len; (i)++, (k) = kube_jnext((k) + 1))

/* A jansson copy of v (new reference); NULL when out of memory. */
json_t *kube_jto_json(const kube_jv_t *v);
/* Copies jansson value j into d without going through text: the same
 * slots kube_jparse gives for json_dumps(j), the strings borrowed from j
 * (keep j until d is done with). The text rules hold: a string or member
 * name with a NUL byte or invalid UTF-8 (which jansson's _nocheck and
 * json_stringn calls let a program build) and nesting beyond
 * KUBE_J_MAX_DEPTH are refused; a number out of range and a repeated
 * member name cannot occur in a json_t. 0, or -1 with d->err. */
int kube_jfrom_json(kube_jdoc_t *d, const json_t *j);

#endif
