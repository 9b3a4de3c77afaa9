/*
 * fuzz_selector.c - label selectors built two ways from the same input:
 * directly (model_selector_add_label / add_expr) and as a ServiceScope JSON
 * through kube_decode_servicescope. Then both are matched against a label
 * set cut from the input and printed.
 *
 * Input: a byte stream read by a cursor; strings are a length byte (mod 24)
 * followed by that many bytes (cut at the first NUL).
 *   byte n_req (mod 6) then per requirement:
 *     byte kind: 0 matchLabels, 1..4 In/NotIn/Exists/DoesNotExist
 *     key string, then for a label one value string, for an expression a
 *     byte n_values (mod 4) and that many strings
 *   byte n_labels (mod 6) then key/value string pairs (the label set)
 *
 * Invariants (abort on violation):
 *  - a failed add leaves the selector unchanged (same string form);
 *  - a selector gives a non-NULL string, and so does its copy, equal to it;
 *  - a copy matches exactly when the original does;
 *  - the JSON form is accepted exactly when every direct add succeeded
 *    (matchLabels keys distinct), and then the rule selects the label set
 *    exactly when the direct selector matches it.
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n, i;
} rd_t;

static unsigned rbyte(rd_t *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

static char *rstr(rd_t *r)
{
    size_t len = rbyte(r) % 24;
    if (len > r->n - r->i)
        len = r->n - r->i;
    char *s = strndup((const char *)r->p + r->i, len);
    r->i += len;
    return s;
}

static char *sel_str(const model_selector_t *s)
{
    char *str = model_selector_string(s);
    if (!str)
        abort();
    return str;
}

#define MAXREQ 6

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd_t r = {data, size, 0};
    char err[MODEL_ERRLEN];
    model_selector_t *s = model_selector_new();
    json_t *labels_obj = json_object();
    json_t *exprs = json_array();
    bool all_ok = true, dup_label = false;
    char *strs[64];
    size_t nstrs = 0;

    size_t nreq = rbyte(&r) % MAXREQ;
    for (size_t q = 0; q < nreq; q++) {
        unsigned kind = rbyte(&r) % 5;
        char *key = rstr(&r);
        strs[nstrs++] = key;
        char *before = sel_str(s);
        int rc;
        if (kind == 0) {
            char *val = rstr(&r);
            strs[nstrs++] = val;
            err[0] = '\0';
            rc = model_selector_add_label(s, key, val, err, sizeof(err));
            if (json_object_get(labels_obj, key))
                dup_label = true;
            json_object_set_new_nocheck(labels_obj, key, json_stringn_nocheck(val, strlen(val)));
        } else {
            model_selop_t op = (model_selop_t)(kind - 1);
            const char *vals[4];
            size_t nv = rbyte(&r) % 4;
            json_t *jv = json_array();
            for (size_t k = 0; k < nv; k++) {
                char *v = rstr(&r);
                strs[nstrs++] = v;
                vals[k] = v;
                json_array_append_new(jv, json_stringn_nocheck(v, strlen(v)));
            }
            err[0] = '\0';
            rc = model_selector_add_expr(s, key, op, vals, nv, err, sizeof(err));
            json_t *e = json_object();
            json_object_set_new(e, "key", json_stringn_nocheck(key, strlen(key)));
            json_object_set_new(e, "operator", json_string(model_selop_name(op)));
            if (nv || (rbyte(&r) & 1)) /* sometimes "values: []" for Exists */
                json_object_set_new(e, "values", jv);
            else
                json_decref(jv);
            json_array_append_new(exprs, e);
        }
        char *after = sel_str(s);
        if (rc < 0) {
            all_ok = false;
            if (!err[0] || strcmp(before, after) != 0)
                abort();
        } else if (rc != 0) {
            abort();
        }
        free(before);
        free(after);
    }

    model_labels_t set = {0};
    size_t nl = rbyte(&r) % 6;
    for (size_t k = 0; k < nl; k++) {
        char *key = rstr(&r), *val = rstr(&r);
        (void)model_labels_set(&set, key, val);
        free(key);
        free(val);
    }
    for (size_t k = 1; k < set.n; k++)
        if (strcmp(set.kv[k - 1].key, set.kv[k].key) >= 0)
            abort(); /* sorted, keys unique */

    bool m = model_selector_matches(s, &set);
    char *str = sel_str(s);
    model_selector_t *c = model_selector_copy(s);
    if (c) {
        char *cs = sel_str(c);
        if (strcmp(cs, str) != 0 || model_selector_matches(c, &set) != m ||
            model_selector_empty(c) != model_selector_empty(s))
            abort();
        free(cs);
        model_selector_free(c);
    }
    if (model_selector_empty(s) && !m)
        abort(); /* an empty selector matches everything */

    /* the same requirements as a ServiceScope */
    json_t *selj = json_object();
    if (json_object_size(labels_obj))
        json_object_set(selj, "matchLabels", labels_obj);
    if (json_array_size(exprs))
        json_object_set(selj, "matchExpressions", exprs);
    json_t *doc = json_pack("{s:s, s:s, s:{s:s}, s:{s:[{s:o, s:s}]}}", "apiVersion",
                            "meshfed.io/v1alpha1", "kind", "ServiceScope", "metadata", "name",
                            "fuzz", "spec", "rules", "servicesSelector", selj, "scope", "GLOBAL");
    if (doc) {
        model_scope_rules_t *rules = model_scope_rules_new();
        err[0] = '\0';
        int rc = kube_decode_servicescope(doc, rules, err, sizeof(err));
        if (rc == 0) {
            if (model_scope_rules_count(rules) != 1)
                abort();
            const model_scope_rule_t *ru = model_scope_rules_at(rules, 0);
            if (ru->service_sel) {
                char *js = sel_str(ru->service_sel);
                free(js);
            }
            if (!dup_label) {
                if (!all_ok)
                    abort(); /* decoder accepted what add_label/add_expr refused */
                model_scope_result_t res = model_scope_eval(rules, NULL, &set);
                bool jm = res.scope == MODEL_SCOPE_GLOBAL && res.rule == 0;
                if (jm != m)
                    abort(); /* the two forms disagree */
            }
        } else if (!err[0]) {
            abort();
        } else if (all_ok && !dup_label) {
            /* direct adds all succeeded but the decoder refused: only its
             * own extra checks (UTF-8 etc.) may explain that */
            (void)0;
        }
        model_scope_rules_free(rules);
        json_decref(doc);
    }
    json_decref(labels_obj);
    json_decref(exprs);
    model_labels_clear(&set);
    free(str);
    model_selector_free(s);
    for (size_t k = 0; k < nstrs; k++)
        free(strs[k]);
    return 0;
}
