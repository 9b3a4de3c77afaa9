/*
 * decode_sec.c - Istio security objects (security.istio.io
 * AuthorizationPolicy and PeerAuthentication) into model structs.
 *
 * The same rules as decode.c: every present field is type checked, absent
 * and null fields take their defaults, errors name the field path. Unknown
 * fields inside the spec are refused: a misspelt "principal" must not turn
 * a rule into one that matches everyone. Values are kept as written; which
 * of them istiod would drop (named ports, bad CIDRs) is the model's call.
 * Arrays are allocated zeroed at their full length before they are filled,
 * so the model's free functions can free a half-built object.
 */
#include "kube_int.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define SEC_MAX_RULES 10000  /* rules, from, to or when entries of one list */
#define SEC_MAX_VALUES 10000 /* strings of one list */

#define DRY_RUN_ANNOTATION "istio.io/dry-run"

static const kube_path_t p_spec = {NULL, "spec", 0};

/* An array of n zeroed elements of size sz (n may be 0). */
static int sec_alloc(kube_dctx_t *c, void *out, size_t n, size_t sz)
{
    void **p = out;
    *p = n ? calloc(n, sz) : NULL;
    return n && !*p ? kube_oom(c) : 0;
}

static int sec_strlist(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p, const char *key,
                       model_strlist_t *out)
{
    const kube_jv_t *arr, *v;
    kube_path_t ap = {p, key, 0};
    size_t i;
    if (kube_get_arr(c, o, p, key, SEC_MAX_VALUES, &arr) < 0)
        return -1;
    if (!arr)
        return 0;
    if (sec_alloc(c, &out->v, arr->len, sizeof(*out->v)) < 0)
        return -1;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&ap, NULL, i};
        if (kube_want(c, v, KUBE_J_STRING, &at) < 0)
            return -1;
        if (!(out->v[out->n] = strdup(v->v.s)))
            return kube_oom(c);
        out->n++;
    }
    return 0;
}

/* A source or an operation: its string lists, from the model's field list. */
typedef struct sec_field {
    const char *json;
    size_t off;
} sec_field_t;

#define SEC_NAME(m, json, layer) json,
#define SEC_SRC(m, json, layer) {json, offsetof(model_ap_source_t, m)},
#define SEC_OP(m, json, layer) {json, offsetof(model_ap_operation_t, m)},

static const char *const source_names[] = {MODEL_AP_SOURCE_FIELDS(SEC_NAME) NULL};
static const sec_field_t source_fields[] = {MODEL_AP_SOURCE_FIELDS(SEC_SRC){NULL, 0}};
static const char *const operation_names[] = {MODEL_AP_OPERATION_FIELDS(SEC_NAME) NULL};
static const sec_field_t operation_fields[] = {MODEL_AP_OPERATION_FIELDS(SEC_OP){NULL, 0}};

/* from[i].source or to[i].operation (member key of entry e at p) into out;
 * an absent one stays empty. */
static int sec_lists(kube_dctx_t *c, const kube_jv_t *e, const kube_path_t *p, const char *key,
                     const char *const *names, const sec_field_t *fields, void *out)
{
    static const char *const source_only[] = {"source", NULL};
    static const char *const operation_only[] = {"operation", NULL};
    const kube_jv_t *o;
    kube_path_t op = {p, key, 0};
    if (kube_want(c, e, KUBE_J_OBJECT, p) < 0 ||
        kube_only_fields(c, e, p, strcmp(key, "source") == 0 ? source_only : operation_only) < 0 ||
        kube_get_obj(c, e, p, key, &o) < 0)
        return -1;
    if (!o)
        return 0;
    if (kube_only_fields(c, o, &op, names) < 0)
        return -1;
    for (const sec_field_t *f = fields; f->json; f++)
        if (sec_strlist(c, o, &op, f->json, (model_strlist_t *)((char *)out + f->off)) < 0)
            return -1;
    return 0;
}

static int sec_condition(kube_dctx_t *c, const kube_jv_t *w, const kube_path_t *p,
                         model_ap_condition_t *out)
{
    static const char *const fields[] = {"key", "values", "notValues", NULL};
    const char *key;
    kube_path_t kp = {p, "key", 0};
    if (kube_want(c, w, KUBE_J_OBJECT, p) < 0 || kube_only_fields(c, w, p, fields) < 0 ||
        kube_get_str(c, w, p, "key", &key) < 0)
        return -1;
    if (!key || !key[0])
        return kube_fail(c, &kp, "missing");
    if (!(out->key = strdup(key)))
        return kube_oom(c);
    return sec_strlist(c, w, p, "values", &out->values) < 0 ||
                   sec_strlist(c, w, p, "notValues", &out->not_values) < 0
               ? -1
               : 0;
}

/* Member key of rule r (at p): an array whose elements go through one. */
typedef int (*sec_elem_fn)(kube_dctx_t *c, const kube_jv_t *e, const kube_path_t *p, void *out);

static int sec_array(kube_dctx_t *c, const kube_jv_t *r, const kube_path_t *p, const char *key,
                     size_t sz, sec_elem_fn fn, void *arr, size_t *n)
{
    const kube_jv_t *a, *e;
    kube_path_t ap = {p, key, 0};
    size_t i;
    if (kube_get_arr(c, r, p, key, SEC_MAX_RULES, &a) < 0)
        return -1;
    if (!a)
        return 0;
    if (sec_alloc(c, arr, a->len, sz) < 0)
        return -1;
    *n = a->len;
    KUBE_JARRAY_FOREACH(a, i, e)
    {
        kube_path_t at = {&ap, NULL, i};
        if (fn(c, e, &at, *(char **)arr + i * sz) < 0)
            return -1;
    }
    return 0;
}

static int sec_from(kube_dctx_t *c, const kube_jv_t *e, const kube_path_t *p, void *out)
{
    return sec_lists(c, e, p, "source", source_names, source_fields, out);
}

static int sec_to(kube_dctx_t *c, const kube_jv_t *e, const kube_path_t *p, void *out)
{
    return sec_lists(c, e, p, "operation", operation_names, operation_fields, out);
}

static int sec_when(kube_dctx_t *c, const kube_jv_t *e, const kube_path_t *p, void *out)
{
    return sec_condition(c, e, p, out);
}

static int sec_rule(kube_dctx_t *c, const kube_jv_t *r, const kube_path_t *p, void *out)
{
    static const char *const fields[] = {"from", "to", "when", NULL};
    model_ap_rule_t *x = out;
    if (kube_want(c, r, KUBE_J_OBJECT, p) < 0 || kube_only_fields(c, r, p, fields) < 0)
        return -1;
    return sec_array(c, r, p, "from", sizeof(*x->from), sec_from, &x->from, &x->nfrom) < 0 ||
                   sec_array(c, r, p, "to", sizeof(*x->to), sec_to, &x->to, &x->nto) < 0 ||
                   sec_array(c, r, p, "when", sizeof(*x->when), sec_when, &x->when, &x->nwhen) < 0
               ? -1
               : 0;
}

/* spec.selector: istio's WorkloadSelector, matchLabels only. */
static int sec_selector(kube_dctx_t *c, const kube_jv_t *spec, model_wl_selector_t *out)
{
    static const char *const fields[] = {"matchLabels", NULL};
    static const kube_path_t sp = {&p_spec, "selector", 0};
    static const kube_path_t mp = {&sp, "matchLabels", 0};
    const kube_jv_t *sel, *ml, *k;
    size_t i;
    if (kube_get_obj(c, spec, &p_spec, "selector", &sel) < 0)
        return -1;
    if (!sel)
        return 0;
    out->set = true;
    if (kube_only_fields(c, sel, &sp, fields) < 0 ||
        kube_get_obj(c, sel, &sp, "matchLabels", &ml) < 0)
        return -1;
    if (!ml)
        return 0;
    out->has_labels = true;
    if (ml->len > KUBE_MAX_LABELS)
        return kube_fail(c, &mp, "%u entries, more than the limit of %d", ml->len, KUBE_MAX_LABELS);
    KUBE_JOBJECT_FOREACH(ml, i, k)
    {
        kube_path_t at = {&mp, k->v.s, 0};
        if (kube_want(c, k + 1, KUBE_J_STRING, &at) < 0)
            return -1;
    }
    return kube_copy_labels(c, ml, &out->labels);
}

static int sec_action(kube_dctx_t *c, const kube_jv_t *spec, model_ap_action_t *out)
{
    static const char *const names[] = {"ALLOW", "DENY", "AUDIT", "CUSTOM"};
    static const kube_path_t ap = {&p_spec, "action", 0};
    const char *s;
    *out = MODEL_AP_ALLOW;
    if (kube_get_str(c, spec, &p_spec, "action", &s) < 0)
        return -1;
    if (!s)
        return 0;
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (model_ap_action_t)i;
            return 0;
        }
    }
    return kube_fail(c, &ap, "unknown action \"%.32s\" (want ALLOW, DENY, AUDIT or CUSTOM)", s);
}

static int sec_meta(kube_dctx_t *c, const char *kind, const kube_jv_t *obj, kube_meta_t *m,
                    char **ns, char **name, int64_t *created)
{
    if (kube_meta(c, kind, obj, true, m) < 0)
        return -1;
    *created = m->created;
    if (!(*ns = strdup(m->ns)) || !(*name = strdup(m->name)))
        return kube_oom(c);
    return 0;
}

static int sec_authz(kube_dctx_t *c, const kube_jv_t *obj, model_authz_policy_t *p)
{
    static const char *const fields[] = {"selector", "targetRef", "targetRefs", "action",
                                         "provider", "rules",     NULL};
    static const kube_path_t ann = {NULL, "metadata.annotations", 0};
    static const kube_path_t rp = {&p_spec, "rules", 0};
    kube_meta_t m;
    const kube_jv_t *spec, *ref, *refs, *rules, *r;
    const char *dry;
    size_t i;
    if (sec_meta(c, "AuthorizationPolicy", obj, &m, &p->ns, &p->name, &p->created) < 0 ||
        kube_get_str(c, m.annotations, &ann, DRY_RUN_ANNOTATION, &dry) < 0)
        return -1;
    if (dry && !(p->dry_run = strdup(dry)))
        return kube_oom(c);
    if (kube_get_obj(c, obj, NULL, "spec", &spec) < 0)
        return -1;
    if (!spec)
        return 0;
    if (kube_only_fields(c, spec, &p_spec, fields) < 0 || sec_selector(c, spec, &p->selector) < 0 ||
        sec_action(c, spec, &p->action) < 0 ||
        kube_get_obj(c, spec, &p_spec, "targetRef", &ref) < 0 ||
        kube_get_arr(c, spec, &p_spec, "targetRefs", SEC_MAX_RULES, &refs) < 0 ||
        kube_get_arr(c, spec, &p_spec, "rules", SEC_MAX_RULES, &rules) < 0)
        return -1;
    p->target_ref = ref || (refs && refs->len > 0);
    if (!rules)
        return 0;
    if (sec_alloc(c, &p->rules, rules->len, sizeof(*p->rules)) < 0)
        return -1;
    p->nrules = rules->len;
    KUBE_JARRAY_FOREACH(rules, i, r)
    {
        kube_path_t at = {&rp, NULL, i};
        if (sec_rule(c, r, &at, &p->rules[i]) < 0)
            return -1;
    }
    return 0;
}

static int sec_mode(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p, model_mtls_t *out)
{
    static const char *const fields[] = {"mode", NULL};
    static const char *const names[] = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"};
    const char *s;
    kube_path_t mp = {p, "mode", 0};
    *out = MODEL_MTLS_UNSET;
    if (kube_want(c, o, KUBE_J_OBJECT, p) < 0 || kube_only_fields(c, o, p, fields) < 0 ||
        kube_get_str(c, o, p, "mode", &s) < 0)
        return -1;
    if (!s)
        return 0;
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (model_mtls_t)i;
            return 0;
        }
    }
    return kube_fail(c, &mp, "unknown mode \"%.32s\" (want UNSET, DISABLE, PERMISSIVE or STRICT)",
                     s);
}

static int port_cmp(const void *a, const void *b)
{
    uint32_t x = ((const model_pa_port_t *)a)->port, y = ((const model_pa_port_t *)b)->port;
    return x < y ? -1 : x > y;
}

/* portLevelMtls: {"<port>": {mode}}, sorted by port. */
static int sec_ports(kube_dctx_t *c, const kube_jv_t *spec, model_peer_authn_t *pa)
{
    static const kube_path_t pp = {&p_spec, "portLevelMtls", 0};
    const kube_jv_t *ports, *k;
    size_t i;
    if (kube_get_obj(c, spec, &p_spec, "portLevelMtls", &ports) < 0)
        return -1;
    if (!ports)
        return 0;
    if (ports->len > KUBE_MAX_PORTS)
        return kube_fail(c, &pp, "%u entries, more than the limit of %d", ports->len,
                         KUBE_MAX_PORTS);
    if (sec_alloc(c, &pa->ports, ports->len, sizeof(*pa->ports)) < 0)
        return -1;
    KUBE_JOBJECT_FOREACH(ports, i, k)
    {
        kube_path_t at = {&pp, k->v.s, 0};
        const char *s = k->v.s;
        unsigned long v = 0;
        for (; *s >= '0' && *s <= '9' && v <= 65535; s++)
            v = v * 10 + (unsigned long)(*s - '0');
        if (*s || !k->v.s[0] || v < 1 || v > 65535)
            return kube_fail(c, &pp, "\"%.32s\": not a port number in 1-65535", k->v.s);
        pa->ports[i].port = (uint32_t)v;
        if (k[1].type != KUBE_J_NULL && sec_mode(c, k + 1, &at, &pa->ports[i].mode) < 0)
            return -1;
    }
    pa->nports = ports->len;
    if (pa->nports > 1)
        qsort(pa->ports, pa->nports, sizeof(*pa->ports), port_cmp);
    for (i = 1; i < pa->nports; i++)
        if (pa->ports[i].port == pa->ports[i - 1].port)
            return kube_fail(c, &pp, "port %u given twice", pa->ports[i].port);
    return 0;
}

static int sec_peer_authn(kube_dctx_t *c, const kube_jv_t *obj, model_peer_authn_t *pa)
{
    static const char *const fields[] = {"selector", "mtls", "portLevelMtls", NULL};
    static const kube_path_t mp = {&p_spec, "mtls", 0};
    kube_meta_t m;
    const kube_jv_t *spec, *mtls;
    if (sec_meta(c, "PeerAuthentication", obj, &m, &pa->ns, &pa->name, &pa->created) < 0 ||
        kube_get_obj(c, obj, NULL, "spec", &spec) < 0)
        return -1;
    if (!spec)
        return 0;
    if (kube_only_fields(c, spec, &p_spec, fields) < 0 ||
        sec_selector(c, spec, &pa->selector) < 0 ||
        kube_get_obj(c, spec, &p_spec, "mtls", &mtls) < 0 ||
        (mtls && sec_mode(c, mtls, &mp, &pa->mode) < 0))
        return -1;
    return sec_ports(c, spec, pa);
}

static const char *sec_kind(model_kind_t kind)
{
    return kind == MODEL_KIND_AUTHZ_POLICY ? "AuthorizationPolicy" : "PeerAuthentication";
}

int kube_decode_sec_jv(model_kind_t kind, const kube_jv_t *obj, void **out, char *err,
                       size_t errlen)
{
    bool authz = kind == MODEL_KIND_AUTHZ_POLICY;
    kube_dctx_t c = {.err = err, .errlen = errlen, .kind = sec_kind(kind)};
    if (err && errlen)
        err[0] = '\0';
    *out = authz ? calloc(1, sizeof(model_authz_policy_t)) : calloc(1, sizeof(model_peer_authn_t));
    if (!*out)
        return kube_oom(&c);
    if ((authz ? sec_authz(&c, obj, *out) : sec_peer_authn(&c, obj, *out)) < 0) {
        model_obj_free(kind, *out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* ---------- fail-closed stand-ins ----------
 *
 * An object that does not decode is not dropped: dropping a DENY, or a
 * STRICT PeerAuthentication, would let through what it was written to stop.
 * The stand-in keeps what can still be read (name, action, selector) and
 * enforces at least as much as the object could have:
 *  - AuthorizationPolicy, action DENY, unknown or unreadable (a spec that
 *    is not an object too): a DENY with one empty rule, which denies every
 *    connection in its scope;
 *  - action ALLOW (or absent): an ALLOW with no rules, which matches
 *    nothing, so its workloads accept only what other ALLOWs allow;
 *  - AUDIT or CUSTOM: kept, so nothing is sent (as for a valid one);
 *  - an unreadable selector widens the scope to the namespace (or the
 *    whole cluster, in the root namespace);
 *  - PeerAuthentication: mode STRICT, no port exceptions. */

/* spec's member key when it is a string, else NULL. */
static const char *spec_str(const kube_jv_t *spec, const char *key)
{
    const kube_jv_t *v = kube_member(spec, key);
    return v && v->type == KUBE_J_STRING ? v->v.s : NULL;
}

/* spec.selector as sec_selector reads it, or unset when it does not read. */
static int failsafe_selector(const kube_jv_t *spec, model_wl_selector_t *out)
{
    char err[MODEL_ERRLEN] = "";
    kube_dctx_t c = {.err = err, .errlen = sizeof(err)};
    if (kube_jis(spec, KUBE_J_OBJECT) && sec_selector(&c, spec, out) == 0)
        return 0;
    model_labels_clear(&out->labels);
    *out = (model_wl_selector_t){0};
    return strstr(err, "out of memory") ? -1 : 0;
}

static void *failsafe_authz(const char *ns, const char *name, const kube_jv_t *spec,
                            const char *why)
{
    static const char *const names[] = {"ALLOW", "DENY", "AUDIT", "CUSTOM"};
    model_authz_policy_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->ns = strdup(ns)) || !(p->name = strdup(name)) || !(p->invalid = strdup(why)) ||
        failsafe_selector(spec, &p->selector) < 0)
        goto oom;
    const char *action = spec_str(spec, "action");
    /* an absent action is ALLOW; one that cannot be read (or a spec that is
     * not an object) may have been DENY */
    bool unreadable = kube_member(spec, "action") || (spec && !kube_jis(spec, KUBE_J_OBJECT));
    p->action = unreadable ? MODEL_AP_DENY : MODEL_AP_ALLOW;
    for (size_t i = 0; action && i < 4; i++)
        if (strcmp(action, names[i]) == 0)
            p->action = (model_ap_action_t)i;
    /* only a readable targetRef makes it a waypoint's policy */
    const kube_jv_t *refs = kube_member(spec, "targetRefs");
    p->target_ref = kube_jis(kube_member(spec, "targetRef"), KUBE_J_OBJECT) ||
                    (kube_jis(refs, KUBE_J_ARRAY) && refs->len > 0);
    if (p->action == MODEL_AP_DENY) {
        if (!(p->rules = calloc(1, sizeof(*p->rules))))
            goto oom;
        p->nrules = 1;
    }
    return p;
oom:
    model_authz_policy_free(p);
    return NULL;
}

static void *failsafe_peer_authn(const char *ns, const char *name, const kube_jv_t *spec)
{
    model_peer_authn_t *pa = calloc(1, sizeof(*pa));
    if (!pa || !(pa->ns = strdup(ns)) || !(pa->name = strdup(name)) ||
        failsafe_selector(spec, &pa->selector) < 0) {
        model_peer_authn_free(pa);
        return NULL;
    }
    pa->mode = MODEL_MTLS_STRICT;
    return pa;
}

static int failsafe(model_kind_t kind, const kube_jv_t *v, const char *ns, const char *name,
                    const char *why, void **out)
{
    *out = NULL;
    if (!v || !ns || !name || !ns[0] || !name[0])
        return -1;
    const kube_jv_t *spec = kube_member(v, "spec");
    if (kind == MODEL_KIND_AUTHZ_POLICY)
        *out = failsafe_authz(ns, name, spec, why);
    else if (kind == MODEL_KIND_PEER_AUTHN)
        *out = failsafe_peer_authn(ns, name, spec);
    else
        return -1;
    return *out ? 0 : -1;
}

int kube_obj_decode_failsafe(model_kind_t kind, const kube_obj_t *o, const char *why, void **out)
{
    return failsafe(kind, o->v, o->ns, o->name, why, out);
}

int kube_decode_failsafe(model_kind_t kind, const json_t *obj, const char *why, void **out)
{
    char err[MODEL_ERRLEN];
    kube_dctx_t c = {.err = err, .errlen = sizeof(err)};
    kube_jdoc_t d = {0};
    *out = NULL;
    const kube_jv_t *v = obj ? kube_from_json(&d, obj, &c) : NULL;
    const kube_jv_t *md = kube_member(v, "metadata");
    const kube_jv_t *ns = kube_member(md, "namespace"), *name = kube_member(md, "name");
    int rc = ns && name && ns->type == KUBE_J_STRING && name->type == KUBE_J_STRING
                 ? failsafe(kind, v, ns->v.s, name->v.s, why, out)
                 : -1;
    kube_jdoc_clear(&d);
    return rc;
}

/* The decoder of kind on the parsed form of a jansson value. */
static int sec_from_json(model_kind_t kind, const json_t *obj, void **out, char *err, size_t errlen)
{
    kube_dctx_t c = {.err = err, .errlen = errlen, .kind = sec_kind(kind)};
    kube_jdoc_t d = {0};
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    const kube_jv_t *v = obj ? kube_from_json(&d, obj, &c) : NULL;
    int rc = v     ? kube_decode_sec_jv(kind, v, out, err, errlen)
             : obj ? -1
                   : kube_fail(&c, NULL, "no object");
    kube_jdoc_clear(&d);
    return rc;
}

int kube_decode_authz(const json_t *obj, model_authz_policy_t **out, char *err, size_t errlen)
{
    void *p;
    int rc = sec_from_json(MODEL_KIND_AUTHZ_POLICY, obj, &p, err, errlen);
    *out = p;
    return rc;
}

int kube_decode_peer_authn(const json_t *obj, model_peer_authn_t **out, char *err, size_t errlen)
{
    void *p;
    int rc = sec_from_json(MODEL_KIND_PEER_AUTHN, obj, &p, err, errlen);
    *out = p;
    return rc;
}
