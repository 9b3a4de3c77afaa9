/*
 * jv.c - the watcher's in-place JSON parser (see jv.h for why it exists).
 *
 * One loop over the input with an explicit stack of open containers, so that
 * deep nesting costs heap, not C stack. Every error names the byte offset.
 */
#include "jv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kube_jp {
    kube_jdoc_t *d;
    char *buf, *p, *end;
    unsigned flags;
} kube_jp_t;

static int kube_jfail(kube_jp_t *jp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A message naming the byte offset when there is text (there is none when
 * copying a jansson tree). */
static int kube_jfail(kube_jp_t *jp, const char *fmt, ...)
{
    int n = jp->buf ? snprintf(jp->d->err, sizeof(jp->d->err),
                               "offset %zu: ", (size_t)(jp->p - jp->buf))
                    : 0;
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof(jp->d->err))
        vsnprintf(jp->d->err + n, sizeof(jp->d->err) - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void kube_jws(kube_jp_t *jp)
{
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\n' || *jp->p == '\r' || *jp->p == '\t'))
        jp->p++;
}

/* a (of *cap elements of size sz) doubled, or min elements at first; NULL
 * (a untouched) when out of memory. */
static void *kube_jgrow(kube_jp_t *jp, void *a, size_t *cap, size_t sz, size_t min)
{
    size_t n = *cap ? *cap * 2 : min;
    void *p = realloc(a, n * sz);
    if (!p) {
        kube_jfail(jp, "out of memory");
        return NULL;
    }
    *cap = n;
    return p;
}

/* A new slot; its index in *idx. */
static int kube_jslot(kube_jp_t *jp, kube_jtype_t t, size_t *idx)
{
    kube_jdoc_t *d = jp->d;
    if (d->n == KUBE_J_MAX_VALUES)
        return kube_jfail(jp, "more than %u values", KUBE_J_MAX_VALUES);
    if (d->n == d->cap) {
        kube_jv_t *v = kube_jgrow(jp, d->v, &d->cap, sizeof(*v), 256);
        if (!v)
            return -1;
        d->v = v;
    }
    *idx = d->n++;
    d->v[*idx] = (kube_jv_t){.type = (uint8_t)t, .size = 1};
    return 0;
}

static int kube_jhex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *kube_jput_utf8(char *w, unsigned cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* Length of the valid UTF-8 sequence at s (lead byte >= 0x80), or 0. */
static size_t kube_jutf8(const unsigned char *s, const unsigned char *end)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0; /* overlong */
    else if (c == 0xED)
        hi = 0x9F; /* surrogates */
    else if (c == 0xF0)
        lo = 0x90; /* overlong */
    else if (c == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    if ((size_t)(end - s) < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* One \uXXXX escape (or a surrogate pair) at *r (just past the backslash
 * and 'u'), written as UTF-8 at *w. */
static int kube_jescape_u(kube_jp_t *jp, char **r, char **w)
{
    unsigned cp, lo;
    if (jp->end - *r < 4 || kube_jhex4(*r, &cp) < 0)
        return kube_jfail(jp, "invalid \\u escape");
    *r += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return kube_jfail(jp, "lone low surrogate \\u%04X", cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (jp->end - *r < 6 || (*r)[0] != '\\' || (*r)[1] != 'u' || kube_jhex4(*r + 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return kube_jfail(jp, "high surrogate \\u%04X without a low one", cp);
        *r += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0)
        return kube_jfail(jp, "\\u0000 is not allowed in a string");
    *w = kube_jput_utf8(*w, cp);
    return 0;
}

/* The string whose opening quote is at jp->p, unescaped in place. */
static int kube_jstring(kube_jp_t *jp, size_t idx)
{
    char *start = ++jp->p, *r = start, *w;
    /* the common case: printable ASCII, no escapes */
    while (r < jp->end && (unsigned char)*r >= 0x20 && (unsigned char)*r < 0x80 && *r != '"' &&
           *r != '\\')
        r++;
    w = r;
    for (;;) {
        if (r >= jp->end) {
            jp->p = r;
            return kube_jfail(jp, "unterminated string");
        }
        unsigned char c = (unsigned char)*r;
        if (c == '"')
            break;
        if (c < 0x20) {
            jp->p = r;
            return kube_jfail(jp, "control character 0x%02x in a string", c);
        }
        if (c >= 0x80) {
            size_t n = kube_jutf8((const unsigned char *)r, (const unsigned char *)jp->end);
            if (n == 0) {
                jp->p = r;
                return kube_jfail(jp, "invalid UTF-8 in a string");
            }
            memmove(w, r, n);
            w += n;
            r += n;
            continue;
        }
        if (c != '\\') {
            *w++ = *r++;
            continue;
        }
        jp->p = r;
        if (++r >= jp->end)
            return kube_jfail(jp, "unterminated string");
        char e = *r++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *w++ = e;
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u':
            if (kube_jescape_u(jp, &r, &w) < 0)
                return -1;
            break;
        default:
            return kube_jfail(jp, "invalid escape \\%c", e);
        }
    }
    *w = '\0';
    jp->p = r + 1;
    kube_jv_t *v = &jp->d->v[idx];
    v->type = KUBE_J_STRING;
    v->len = (uint32_t)(w - start);
    v->v.s = start;
    return 0;
}

/* A number out of range: an error, or with KUBE_JP_MARK a marked value. */
static int kube_jbadnum(kube_jp_t *jp, kube_jv_t *v, char *s, char *q, const char *why)
{
    if (!(jp->flags & KUBE_JP_MARK))
        return kube_jfail(jp, "%s", why);
    v->type = KUBE_J_BADNUM;
    v->v.s = s;
    v->len = (size_t)(q - s) > UINT32_MAX ? UINT32_MAX : (uint32_t)(q - s);
    jp->d->nbad++;
    jp->p = q;
    return 0;
}

static int kube_jnumber(kube_jp_t *jp, size_t idx)
{
    char *s = jp->p, *q = s;
    bool neg = *q == '-', real = false;
    if (neg)
        q++;
    if (q >= jp->end || *q < '0' || *q > '9')
        return kube_jfail(jp, "invalid token");
    if (*q == '0')
        q++;
    else
        while (q < jp->end && *q >= '0' && *q <= '9')
            q++;
    if (q < jp->end && *q == '.') {
        real = true;
        if (++q >= jp->end || *q < '0' || *q > '9')
            return kube_jfail(jp, "invalid number");
        while (q < jp->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < jp->end && (*q == 'e' || *q == 'E')) {
        real = true;
        if (++q < jp->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= jp->end || *q < '0' || *q > '9')
            return kube_jfail(jp, "invalid number");
        while (q < jp->end && *q >= '0' && *q <= '9')
            q++;
    }
    kube_jv_t *v = &jp->d->v[idx];
    if (!real) {
        uint64_t u = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (const char *c = s + neg; c < q; c++) {
            unsigned dig = (unsigned)(*c - '0');
            if (u > (lim - dig) / 10)
                return kube_jbadnum(jp, v, s, q, "integer out of the 64-bit range");
            u = u * 10 + dig;
        }
        v->type = KUBE_J_INT;
        v->v.i = neg ? (int64_t)(0 - u) : (int64_t)u;
    } else {
        size_t n = (size_t)(q - s);
        char small[64], *tmp = n < sizeof(small) ? small : malloc(n + 1);
        if (!tmp)
            return kube_jfail(jp, "out of memory");
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        errno = 0;
        double d = strtod(tmp, NULL);
        int range = errno;
        if (tmp != small)
            free(tmp);
        if (range == ERANGE && (d > 1.0 || d < -1.0))
            return kube_jbadnum(jp, v, s, q, "number out of range");
        v->type = KUBE_J_REAL;
        v->v.d = d;
    }
    jp->p = q;
    return 0;
}

static int kube_jword(kube_jp_t *jp, const char *word, size_t n, kube_jtype_t t, size_t idx)
{
    if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n) != 0)
        return kube_jfail(jp, "invalid token");
    jp->p += n;
    jp->d->v[idx].type = (uint8_t)t;
    return 0;
}

static int kube_jopen(kube_jp_t *jp, size_t idx)
{
    kube_jdoc_t *d = jp->d;
    if (d->depth == KUBE_J_MAX_DEPTH)
        return kube_jfail(jp, "nested deeper than %d", KUBE_J_MAX_DEPTH);
    if (d->depth == d->stack_cap) {
        uint32_t *st = kube_jgrow(jp, d->stack, &d->stack_cap, sizeof(*st), 32);
        if (!st)
            return -1;
        d->stack = st;
    }
    d->stack[d->depth++] = (uint32_t)idx;
    jp->p++;
    return 0;
}

static int kube_jkeycmp(const void *a, const void *b)
{
    const kube_jv_t *x = *(const kube_jv_t *const *)a, *y = *(const kube_jv_t *const *)b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    int c = memcmp(x->v.s, y->v.s, x->len);
    return c ? c : x < y ? -1 : x > y; /* the later one is the repeat */
}

/* Marks the repeated member names of object o (KUBE_JP_MARK): pairwise for
 * small objects, sorted for big ones so a hostile object stays n log n. */
static int kube_jmark_dups(kube_jp_t *jp, kube_jv_t *o)
{
    const kube_jv_t *k;
    size_t i, n = o->len;
    if (n < 2)
        return 0;
    if (n <= 16) {
        kube_jv_t *a = o + 1;
        for (i = 0; i < n; i++, a = (kube_jv_t *)kube_jnext(a + 1)) {
            for (k = o + 1; k != a; k = kube_jnext(k + 1))
                if (k->len == a->len && memcmp(k->v.s, a->v.s, a->len) == 0) {
                    a->dup = 1;
                    jp->d->nbad++;
                    break;
                }
        }
        return 0;
    }
    kube_jv_t **keys = malloc(n * sizeof(*keys));
    if (!keys)
        return kube_jfail(jp, "out of memory");
    KUBE_JOBJECT_FOREACH(o, i, k)
    keys[i] = (kube_jv_t *)k;
    qsort(keys, n, sizeof(*keys), kube_jkeycmp);
    for (i = 1; i < n; i++)
        if (keys[i]->len == keys[i - 1]->len &&
            memcmp(keys[i]->v.s, keys[i - 1]->v.s, keys[i]->len) == 0) {
            keys[i]->dup = 1;
            jp->d->nbad++;
        }
    free(keys);
    return 0;
}

static int kube_jclose(kube_jp_t *jp)
{
    kube_jdoc_t *d = jp->d;
    size_t idx = d->stack[--d->depth];
    d->v[idx].size = (uint32_t)(d->n - idx);
    jp->p++;
    if ((jp->flags & KUBE_JP_MARK) && d->v[idx].type == KUBE_J_OBJECT)
        return kube_jmark_dups(jp, &d->v[idx]);
    return 0;
}

/* A value starting at jp->p (whitespace skipped). A container is opened
 * and left on the stack for the loop in kube_jparse to fill. */
static int kube_jvalue(kube_jp_t *jp)
{
    size_t idx = 0;
    if (jp->p >= jp->end)
        return kube_jfail(jp, "unexpected end of input");
    if (kube_jslot(jp, KUBE_J_NULL, &idx) < 0)
        return -1;
    switch (*jp->p) {
    case '{':
        jp->d->v[idx].type = KUBE_J_OBJECT;
        return kube_jopen(jp, idx);
    case '[':
        jp->d->v[idx].type = KUBE_J_ARRAY;
        return kube_jopen(jp, idx);
    case '"':
        return kube_jstring(jp, idx);
    case 't':
        return kube_jword(jp, "true", 4, KUBE_J_TRUE, idx);
    case 'f':
        return kube_jword(jp, "false", 5, KUBE_J_FALSE, idx);
    case 'n':
        return kube_jword(jp, "null", 4, KUBE_J_NULL, idx);
    default:
        return kube_jnumber(jp, idx);
    }
}

/* A member name and its colon; the value follows. */
static int kube_jkey(kube_jp_t *jp)
{
    size_t idx = 0;
    kube_jws(jp);
    if (jp->p >= jp->end || *jp->p != '"')
        return kube_jfail(jp, "expected a member name");
    if (kube_jslot(jp, KUBE_J_STRING, &idx) < 0 || kube_jstring(jp, idx) < 0)
        return -1;
    kube_jws(jp);
    if (jp->p >= jp->end || *jp->p != ':')
        return kube_jfail(jp, "expected ':'");
    jp->p++;
    return 0;
}

int kube_jparse(kube_jdoc_t *d, char *buf, size_t len)
{
    return kube_jparse_ex(d, buf, len, 0);
}

int kube_jparse_ex(kube_jdoc_t *d, char *buf, size_t len, unsigned flags)
{
    kube_jp_t jp = {.d = d, .buf = buf, .p = buf, .end = buf + len, .flags = flags};
    d->n = 0;
    d->nbad = 0;
    d->depth = 0;
    d->err[0] = '\0';
    kube_jws(&jp);
    if (kube_jvalue(&jp) < 0)
        return -1;
    while (d->depth > 0) {
        kube_jv_t *top = &d->v[d->stack[d->depth - 1]];
        bool obj = top->type == KUBE_J_OBJECT;
        kube_jws(&jp);
        if (jp.p >= jp.end)
            return kube_jfail(&jp, "unexpected end of input");
        char c = *jp.p;
        if (c == (obj ? '}' : ']')) {
            if (kube_jclose(&jp) < 0)
                return -1;
            continue;
        }
        if (top->len > 0) {
            if (c != ',')
                return kube_jfail(&jp, obj ? "expected ',' or '}'" : "expected ',' or ']'");
            jp.p++;
        }
        top->len++;
        if (obj && kube_jkey(&jp) < 0)
            return -1;
        kube_jws(&jp);
        if (kube_jvalue(&jp) < 0)
            return -1;
    }
    kube_jws(&jp);
    if (jp.p != jp.end)
        return kube_jfail(&jp, "unexpected data after the value");
    return 0;
}

void kube_jdoc_clear(kube_jdoc_t *d)
{
    free(d->v);
    free(d->stack);
    d->v = NULL;
    d->stack = NULL;
    d->n = d->cap = d->depth = d->stack_cap = 0;
}

void kube_jdoc_trim(kube_jdoc_t *d, size_t max)
{
    if (d->cap > max)
        kube_jdoc_clear(d);
}

const kube_jv_t *kube_jget(const kube_jv_t *o, const char *key)
{
    if (!kube_jis(o, KUBE_J_OBJECT))
        return NULL;
    size_t n = strlen(key), i;
    const kube_jv_t *k, *found = NULL;
    KUBE_JOBJECT_FOREACH(o, i, k)
    {
        if (k->len == n && memcmp(k->v.s, key, n) == 0)
            found = k + 1;
    }
    return found;
}

const kube_jv_t *kube_jat(const kube_jv_t *a, size_t i)
{
    if (!kube_jis(a, KUBE_J_ARRAY) || i >= a->len)
        return NULL;
    const kube_jv_t *v = a + 1;
    while (i--)
        v = kube_jnext(v);
    return v;
}

const char *kube_jtype_name(const kube_jv_t *v)
{
    static const char *const names[] = {"null",   "boolean", "boolean", "integer",       "number",
                                        "string", "array",   "object",  "invalid number"};
    return v ? names[v->type] : "nothing";
}

json_t *kube_jto_json(const kube_jv_t *v)
{
    size_t i;
    const kube_jv_t *x;
    json_t *j = NULL;
    switch ((kube_jtype_t)v->type) {
    case KUBE_J_NULL:
        return json_null();
    case KUBE_J_FALSE:
        return json_false();
    case KUBE_J_TRUE:
        return json_true();
    case KUBE_J_INT:
        return json_integer(v->v.i);
    case KUBE_J_REAL:
        return json_real(v->v.d);
    case KUBE_J_STRING:
        return json_stringn_nocheck(v->v.s, v->len);
    case KUBE_J_ARRAY:
        j = json_array();
        KUBE_JARRAY_FOREACH(v, i, x)
        {
            if (!j || json_array_append_new(j, kube_jto_json(x)) < 0)
                goto oom;
        }
        return j;
    case KUBE_J_BADNUM: /* never reaches a consumer: its object is refused */
        return json_null();
    case KUBE_J_OBJECT:
        j = json_object();
        KUBE_JOBJECT_FOREACH(v, i, x)
        {
            if (!j || json_object_setn_new_nocheck(j, x->v.s, x->len, kube_jto_json(x + 1)) < 0)
                goto oom;
        }
        return j;
    }
oom:
    json_decref(j);
    return NULL;
}

/* path holds plen bytes naming v; the first finding goes to out. */
static size_t kube_jbad_walk(const kube_jv_t *v, char *path, size_t plen, size_t pcap, char *out,
                             size_t outlen)
{
    const kube_jv_t *x;
    size_t i, n = 0;
    const char *sep = plen ? ": " : "";
    if (v->type == KUBE_J_BADNUM) {
        if (!out[0])
            snprintf(out, outlen, "%s%snumber out of range: %.*s", path, sep,
                     (int)(v->len > 64 ? 64 : v->len), v->v.s);
        return 1;
    }
    if (v->type == KUBE_J_ARRAY) {
        KUBE_JARRAY_FOREACH(v, i, x)
        {
            snprintf(path + plen, pcap - plen, "[%zu]", i);
            n += kube_jbad_walk(x, path, strlen(path), pcap, out, outlen);
            path[plen] = '\0';
        }
    } else if (v->type == KUBE_J_OBJECT) {
        KUBE_JOBJECT_FOREACH(v, i, x)
        {
            if (x->dup) {
                if (!out[0])
                    snprintf(out, outlen, "%s%sduplicate key \"%.64s\"", path, sep, x->v.s);
                n++;
            }
            snprintf(path + plen, pcap - plen, "%s%s", plen ? "." : "", x->v.s);
            n += kube_jbad_walk(x + 1, path, strlen(path), pcap, out, outlen);
            path[plen] = '\0';
        }
    }
    return n;
}

size_t kube_jbad(const kube_jv_t *v, char *out, size_t outlen)
{
    char path[256] = "";
    out[0] = '\0';
    return v ? kube_jbad_walk(v, path, 0, sizeof(path), out, outlen) : 0;
}

/* A jansson string (or member name) s of n bytes into slot idx, borrowed:
 * the rules of kube_jstring, since jansson lets a program build strings
 * that no JSON text parses to (a NUL byte, invalid UTF-8). */
static int kube_jfrom_string(kube_jp_t *jp, size_t idx, const char *s, size_t n)
{
    const unsigned char *c = (const unsigned char *)s, *end = c + n;
    if (n > UINT32_MAX)
        return kube_jfail(jp, "string longer than %u bytes", UINT32_MAX);
    while (c < end) {
        size_t len = 1;
        if (*c == '\0')
            return kube_jfail(jp, "\\u0000 is not allowed in a string");
        if (*c >= 0x80 && (len = kube_jutf8(c, end)) == 0)
            return kube_jfail(jp, "invalid UTF-8 in a string");
        c += len;
    }
    kube_jv_t *v = &jp->d->v[idx];
    v->len = (uint32_t)n;
    v->v.s = s;
    return 0;
}

/* j and its subtree into slots, in the order json_dumps writes them;
 * depth counts the containers j is inside. */
static int kube_jfrom(kube_jp_t *jp, const json_t *j, size_t depth)
{
    size_t idx = 0, i, k = 0;
    const char *key;
    json_t *x;
    if (kube_jslot(jp, KUBE_J_NULL, &idx) < 0)
        return -1;
    kube_jv_t *v = &jp->d->v[idx];
    switch (json_typeof(j)) {
    case JSON_NULL:
        return 0;
    case JSON_FALSE:
        v->type = KUBE_J_FALSE;
        return 0;
    case JSON_TRUE:
        v->type = KUBE_J_TRUE;
        return 0;
    case JSON_INTEGER:
        v->type = KUBE_J_INT;
        v->v.i = json_integer_value(j);
        return 0;
    case JSON_REAL: /* jansson refuses NaN and infinities */
        v->type = KUBE_J_REAL;
        v->v.d = json_real_value(j);
        return 0;
    case JSON_STRING:
        v->type = KUBE_J_STRING;
        return kube_jfrom_string(jp, idx, json_string_value(j), json_string_length(j));
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    }
    if (depth == KUBE_J_MAX_DEPTH)
        return kube_jfail(jp, "nested deeper than %d", KUBE_J_MAX_DEPTH);
    if (json_is_array(j)) {
        v->type = KUBE_J_ARRAY;
        json_array_foreach(j, i, x)
        {
            if (kube_jfrom(jp, x, depth + 1) < 0)
                return -1;
        }
        i = json_array_size(j);
    } else {
        v->type = KUBE_J_OBJECT;
        /* jansson's iteration is insertion order, as json_dumps writes it */
        json_object_keylen_foreach((json_t *)j, key, k, x)
        {
            size_t kidx = 0;
            if (kube_jslot(jp, KUBE_J_STRING, &kidx) < 0 ||
                kube_jfrom_string(jp, kidx, key, k) < 0 || kube_jfrom(jp, x, depth + 1) < 0)
                return -1;
        }
        i = json_object_size(j);
    }
    v = &jp->d->v[idx]; /* the slots may have moved */
    v->len = (uint32_t)i;
    v->size = (uint32_t)(jp->d->n - idx);
    return 0;
}

int kube_jfrom_json(kube_jdoc_t *d, const json_t *j)
{
    kube_jp_t jp = {.d = d};
    d->n = 0;
    d->nbad = 0;
    d->depth = 0;
    d->err[0] = '\0';
    if (!j)
        return kube_jfail(&jp, "no value");
    return kube_jfrom(&jp, j, 0);
}
