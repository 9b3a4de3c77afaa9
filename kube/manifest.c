/*
 * manifest.c - multi-document YAML (and JSON) manifests into JSON values.
 *
 * libyaml's event parser drives a small recursive builder. Scalars are typed
 * with the YAML 1.2 core schema, so "true" quoted stays a string while a plain
 * true is a boolean, and 1.1 oddities (yes, on, 010 as octal) do not apply.
 * We refuse what would silently change meaning once in JSON: aliases,
 * duplicate keys, non-scalar keys and floats JSON cannot hold.
 */
#include "kube.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define KUBE_YAML_MAX_DEPTH 100
#define KUBE_YAML_MAX_FILE (64u << 20)

#define YTAG "tag:yaml.org,2002:"

typedef struct kube_mctx {
    yaml_parser_t parser;
    const char *file;
    char *err;
    size_t errlen;
    kube_manifest_fn fn;
    void *arg;
    int stop_rc; /* what fn returned when it stopped us */
} kube_mctx_t;

static int kube_yfail(kube_mctx_t *m, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int kube_yfail(kube_mctx_t *m, yaml_mark_t mark, const char *fmt, ...)
{
    if (!m->err || m->errlen == 0)
        return -1;
    int n = snprintf(m->err, m->errlen, "%s:%zu:%zu: ", m->file, mark.line + 1, mark.column + 1);
    size_t off = n < 0 ? 0 : (size_t)n >= m->errlen ? m->errlen - 1 : (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err + off, m->errlen - off, fmt, ap);
    va_end(ap);
    return -1;
}

/* The next event, or -1 with libyaml's own diagnosis. */
static int kube_ynext(kube_mctx_t *m, yaml_event_t *ev)
{
    if (yaml_parser_parse(&m->parser, ev))
        return 0;
    yaml_parser_t *p = &m->parser;
    const char *what = p->problem ? p->problem : "invalid YAML";
    if (p->context)
        return kube_yfail(m, p->problem_mark, "%s (%s at line %zu)", what, p->context,
                          p->context_mark.line + 1);
    return kube_yfail(m, p->problem_mark, "%s", what);
}

/* ---------- scalars (YAML 1.2 core schema) ---------- */

static bool kube_yeq(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

static bool kube_yall(const char *s, const char *set)
{
    return *s && strspn(s, set) == strlen(s);
}

/* [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE][-+]?[0-9]+ )? */
static bool kube_yfloat_syntax(const char *s)
{
    size_t d = 0;
    if (*s == '-' || *s == '+')
        s++;
    while (*s >= '0' && *s <= '9')
        s++, d++;
    if (*s == '.') {
        s++;
        size_t f = 0;
        while (*s >= '0' && *s <= '9')
            s++, f++;
        if (d == 0 && f == 0)
            return false;
    } else if (d == 0) {
        return false;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static json_t *kube_yint(const char *s)
{
    const char *digits = s + (*s == '-' || *s == '+');
    int base = 10;
    if (strncmp(s, "0x", 2) == 0 && kube_yall(s + 2, "0123456789abcdefABCDEF"))
        base = 16, digits = s + 2;
    else if (strncmp(s, "0o", 2) == 0 && kube_yall(s + 2, "01234567"))
        base = 8, digits = s + 2;
    else if (!kube_yall(digits, "0123456789"))
        return NULL;
    errno = 0;
    long long v = strtoll(base == 10 ? s : digits, NULL, base);
    if (errno == ERANGE) /* beyond 64 bits: a float, as Go's YAML would give */
        return json_real(strtod(s, NULL));
    return json_integer(v);
}

/* Resolves a plain scalar; *bad is set for a float JSON cannot hold. */
static json_t *kube_yplain(const char *s, bool *bad)
{
    *bad = false;
    if (!*s || strcmp(s, "~") == 0 || kube_yeq(s, "null", "Null", "NULL"))
        return json_null();
    if (kube_yeq(s, "true", "True", "TRUE"))
        return json_true();
    if (kube_yeq(s, "false", "False", "FALSE"))
        return json_false();
    json_t *v = kube_yint(s);
    if (v)
        return v;
    const char *u = s + (*s == '-' || *s == '+');
    if (kube_yeq(u, ".inf", ".Inf", ".INF") || kube_yeq(s, ".nan", ".NaN", ".NAN")) {
        *bad = true;
        return NULL;
    }
    if (kube_yfloat_syntax(s)) {
        double d = strtod(s, NULL);
        if (!isfinite(d)) {
            *bad = true;
            return NULL;
        }
        return json_real(d);
    }
    return json_string(s);
}

/* A scalar event as JSON: plain scalars resolved, others strings, core tags
 * honoured. NULL with err set on failure. */
static json_t *kube_yscalar(kube_mctx_t *m, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    size_t len = ev->data.scalar.length;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, bad = false;
    json_t *v;
    if (tag && strcmp(tag, "!") == 0)
        tag = NULL, plain = false; /* "!" forces a string */
    if ((!tag && !plain) || (tag && strcmp(tag, YTAG "str") == 0)) {
        v = json_stringn(s, len);
        if (!v)
            kube_yfail(m, ev->start_mark, "string is not valid UTF-8");
        return v;
    }
    if (strlen(s) != len) {
        kube_yfail(m, ev->start_mark, "NUL byte in a scalar");
        return NULL;
    }
    v = kube_yplain(s, &bad);
    if (bad) {
        kube_yfail(m, ev->start_mark, "\"%.32s\": infinite or NaN numbers cannot be JSON", s);
        return NULL;
    }
    if (!v) {
        kube_yfail(m, ev->start_mark, "out of memory");
        return NULL;
    }
    if (!tag)
        return v;
    bool ok = (strcmp(tag, YTAG "int") == 0 && json_is_integer(v)) ||
              (strcmp(tag, YTAG "float") == 0 && json_is_number(v)) ||
              (strcmp(tag, YTAG "bool") == 0 && json_is_boolean(v)) ||
              (strcmp(tag, YTAG "null") == 0 && json_is_null(v));
    if (!ok) {
        json_decref(v);
        kube_yfail(m, ev->start_mark, "\"%.32s\" cannot have tag %.64s", s, tag);
        return NULL;
    }
    return v;
}

/* ---------- collections ---------- */

static json_t *kube_ynode(kube_mctx_t *m, yaml_event_t *ev, int depth);

static json_t *kube_yseq(kube_mctx_t *m, int depth)
{
    json_t *arr = json_array();
    yaml_event_t ev;
    if (!arr)
        return NULL;
    for (;;) {
        if (kube_ynext(m, &ev) < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return arr;
        }
        json_t *v = kube_ynode(m, &ev, depth);
        if (!v || json_array_append_new(arr, v) < 0)
            goto fail;
    }
fail:
    json_decref(arr);
    return NULL;
}

/* Reads one key; keys are always strings, whatever they look like. */
static int kube_ykey(kube_mctx_t *m, const json_t *obj, yaml_event_t *ev, char **key)
{
    int rc = -1;
    *key = NULL;
    if (ev->type == YAML_ALIAS_EVENT)
        kube_yfail(m, ev->start_mark, "aliases are not supported");
    else if (ev->type != YAML_SCALAR_EVENT)
        kube_yfail(m, ev->start_mark, "mapping keys must be scalars");
    else if (strlen((char *)ev->data.scalar.value) != ev->data.scalar.length)
        kube_yfail(m, ev->start_mark, "NUL byte in a key");
    else if (json_object_get(obj, (char *)ev->data.scalar.value))
        kube_yfail(m, ev->start_mark, "duplicate key \"%.64s\"", ev->data.scalar.value);
    else if (!(*key = strdup((char *)ev->data.scalar.value)))
        kube_yfail(m, ev->start_mark, "out of memory");
    else
        rc = 0;
    yaml_event_delete(ev);
    return rc;
}

static json_t *kube_ymap(kube_mctx_t *m, int depth)
{
    json_t *obj = json_object();
    yaml_event_t ev;
    char *key = NULL;
    if (!obj)
        return NULL;
    for (;;) {
        if (kube_ynext(m, &ev) < 0)
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return obj;
        }
        if (kube_ykey(m, obj, &ev, &key) < 0 || kube_ynext(m, &ev) < 0)
            goto fail;
        json_t *v = kube_ynode(m, &ev, depth);
        if (!v || json_object_set_new(obj, key, v) < 0)
            goto fail;
        free(key);
        key = NULL;
    }
fail:
    free(key);
    json_decref(obj);
    return NULL;
}

/* Builds the node that starts with ev (consumed). NULL with err set. */
static json_t *kube_ynode(kube_mctx_t *m, yaml_event_t *ev, int depth)
{
    json_t *v = NULL;
    yaml_mark_t mark = ev->start_mark;
    if (depth >= KUBE_YAML_MAX_DEPTH) {
        kube_yfail(m, mark, "nested more than %d levels deep", KUBE_YAML_MAX_DEPTH);
        yaml_event_delete(ev);
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        v = kube_yscalar(m, ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        v = kube_yseq(m, depth + 1);
        break;
    case YAML_MAPPING_START_EVENT:
        v = kube_ymap(m, depth + 1);
        break;
    case YAML_ALIAS_EVENT:
        kube_yfail(m, mark, "aliases are not supported");
        break;
    default:
        kube_yfail(m, mark, "unexpected YAML event %d", (int)ev->type);
        break;
    }
    yaml_event_delete(ev);
    if (!v && m->err && m->errlen && !m->err[0])
        kube_yfail(m, mark, "out of memory");
    return v;
}

/* ---------- documents ---------- */

static int kube_ycall(kube_mctx_t *m, json_t *doc)
{
    int rc = m->fn(doc, m->arg);
    if (rc != 0)
        m->stop_rc = rc;
    return rc != 0;
}

/* "List", or "<Kind>List" with items as the API returns lists: passes each
 * item on, filling in the kind and apiVersion that typed lists leave out. */
static int kube_ylist(kube_mctx_t *m, json_t *doc, const char *kind, yaml_mark_t mark)
{
    json_t *items = json_object_get(doc, "items");
    json_t *av = json_object_get(doc, "apiVersion");
    size_t klen = strlen(kind) - 4, i;
    json_t *it;
    if (items && !json_is_null(items) && !json_is_array(items))
        return kube_yfail(m, mark, "%s: items is not a sequence", kind);
    json_array_foreach(items, i, it)
    {
        if (!json_is_object(it))
            return kube_yfail(m, mark, "%s: items[%zu] is not a mapping", kind, i);
        if (klen > 0 && !json_object_get(it, "kind") &&
            json_object_set_new(it, "kind", json_stringn(kind, klen)) < 0)
            return kube_yfail(m, mark, "out of memory");
        if (klen > 0 && json_is_string(av) && !json_object_get(it, "apiVersion") &&
            json_object_set(it, "apiVersion", av) < 0)
            return kube_yfail(m, mark, "out of memory");
        if (kube_ycall(m, it))
            return 1;
    }
    return 0;
}

/* 0 go on, 1 stopped by fn, -1 error. */
static int kube_ydoc(kube_mctx_t *m, json_t *doc, yaml_mark_t mark)
{
    if (json_is_null(doc))
        return 0; /* empty document */
    if (!json_is_object(doc))
        return kube_yfail(m, mark, "document is not a mapping");
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    size_t n = kind ? strlen(kind) : 0;
    if (kind && n >= 4 && strcmp(kind + n - 4, "List") == 0 &&
        (n == 4 || json_is_array(json_object_get(doc, "items"))))
        return kube_ylist(m, doc, kind, mark);
    return kube_ycall(m, doc);
}

/* One document, its start event already read. */
static int kube_ydocument(kube_mctx_t *m)
{
    yaml_event_t ev;
    if (kube_ynext(m, &ev) < 0)
        return -1;
    yaml_mark_t mark = ev.start_mark;
    json_t *doc = kube_ynode(m, &ev, 0);
    if (!doc)
        return -1;
    if (kube_ynext(m, &ev) < 0) { /* the document end */
        json_decref(doc);
        return -1;
    }
    yaml_event_delete(&ev);
    int rc = kube_ydoc(m, doc, mark);
    json_decref(doc);
    return rc;
}

static int kube_ystream(kube_mctx_t *m)
{
    yaml_event_t ev;
    for (;;) {
        if (kube_ynext(m, &ev) < 0)
            return -1;
        yaml_event_type_t t = ev.type;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            return 0;
        if (t != YAML_DOCUMENT_START_EVENT)
            continue; /* the stream start */
        int rc = kube_ydocument(m);
        if (rc != 0)
            return rc < 0 ? -1 : m->stop_rc;
    }
}

static int kube_yload(const char *name, const char *text, size_t len, kube_manifest_fn fn,
                      void *arg, char *err, size_t errlen)
{
    kube_mctx_t m = {.file = name, .err = err, .errlen = errlen, .fn = fn, .arg = arg};
    if (err && errlen)
        err[0] = '\0';
    if (!yaml_parser_initialize(&m.parser)) {
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    yaml_parser_set_input_string(&m.parser, (const unsigned char *)(text ? text : ""),
                                 text ? len : 0);
    int rc = kube_ystream(&m);
    yaml_parser_delete(&m.parser);
    return rc;
}

int kube_manifest_load_string(const char *text, size_t len, kube_manifest_fn fn, void *arg,
                              char *err, size_t errlen)
{
    return kube_yload("<string>", text, len, fn, arg, err, errlen);
}

/* The whole file in memory: manifests are small, and a size cap is simpler
 * to state than a streaming one. */
static char *kube_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *nb = cap < KUBE_YAML_MAX_FILE ? realloc(buf, cap ? cap * 2 : 65536) : NULL;
            if (!nb) {
                snprintf(err, errlen, "%s: %s", path,
                         cap < KUBE_YAML_MAX_FILE ? "out of memory" : "larger than 64 MiB");
                goto fail;
            }
            buf = nb;
            cap = cap ? cap * 2 : 65536;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    *len = n;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

int kube_manifest_load_file(const char *path, kube_manifest_fn fn, void *arg, char *err,
                            size_t errlen)
{
    char dummy[8];
    size_t len;
    if (!err || errlen == 0)
        err = dummy, errlen = sizeof(dummy);
    char *text = kube_read_file(path, &len, err, errlen);
    if (!text)
        return -1;
    int rc = kube_yload(path, text, len, fn, arg, err, errlen);
    free(text);
    return rc;
}
