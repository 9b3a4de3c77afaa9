/*
 * scope.c - ServiceScope rules: which services are global.
 *
 * A rule matches a service when its namespace selector matches the labels of
 * the service's namespace and its service selector matches the service's own
 * labels (a missing selector matches everything). Rules are ORed: a service
 * matched by any GLOBAL rule is global; everything else is local. A matching
 * LOCAL rule only records why the service is local (see docs/servicescope.md).
 */
#include "model.h"

#include <stdlib.h>
#include <string.h>

struct model_scope_rules {
    model_scope_rule_t *rules;
    size_t n;
};

model_scope_rules_t *model_scope_rules_new(void)
{
    return calloc(1, sizeof(model_scope_rules_t));
}

static void rule_free(model_scope_rule_t *r)
{
    free(r->origin);
    model_selector_free(r->namespace_sel);
    model_selector_free(r->service_sel);
}

int model_scope_rules_add(model_scope_rules_t *r, model_scope_rule_t rule)
{
    model_scope_rule_t *n = realloc(r->rules, (r->n + 1) * sizeof(*n));
    if (!n) {
        rule_free(&rule);
        return -1;
    }
    r->rules = n;
    r->rules[r->n++] = rule;
    return 0;
}

model_scope_rules_t *model_scope_rules_default(void)
{
    model_scope_rules_t *r = model_scope_rules_new();
    model_selector_t *sel = model_selector_new();
    const char *values[] = {"true"};
    char err[MODEL_ERRLEN];
    if (!r || !sel ||
        model_selector_add_expr(sel, "istio.io/global", MODEL_SELOP_IN, values, 1, err,
                                sizeof(err)) < 0) {
        model_selector_free(sel);
        model_scope_rules_free(r);
        return NULL;
    }
    model_scope_rule_t rule = {
        .origin = strdup("default"), .service_sel = sel, .scope = MODEL_SCOPE_GLOBAL};
    if (!rule.origin || model_scope_rules_add(r, rule) < 0) {
        model_scope_rules_free(r);
        return NULL;
    }
    return r;
}

void model_scope_rules_free(model_scope_rules_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        rule_free(&r->rules[i]);
    free(r->rules);
    free(r);
}

size_t model_scope_rules_count(const model_scope_rules_t *r)
{
    return r ? r->n : 0;
}

const model_scope_rule_t *model_scope_rules_at(const model_scope_rules_t *r, size_t i)
{
    return r && i < r->n ? &r->rules[i] : NULL;
}

static bool rule_matches(const model_scope_rule_t *rule, const model_labels_t *ns_labels,
                         const model_labels_t *svc_labels)
{
    static const model_labels_t none;
    if (rule->namespace_sel &&
        !model_selector_matches(rule->namespace_sel, ns_labels ? ns_labels : &none))
        return false;
    return !rule->service_sel || model_selector_matches(rule->service_sel, svc_labels);
}

model_scope_result_t model_scope_eval(const model_scope_rules_t *r, const model_labels_t *ns_labels,
                                      const model_labels_t *svc_labels)
{
    model_scope_result_t res = {MODEL_SCOPE_LOCAL, -1};
    for (size_t i = 0; r && i < r->n; i++) {
        if (!rule_matches(&r->rules[i], ns_labels, svc_labels))
            continue;
        if (r->rules[i].scope == MODEL_SCOPE_GLOBAL)
            return (model_scope_result_t){MODEL_SCOPE_GLOBAL, (int)i};
        if (res.rule < 0)
            res.rule = (int)i;
    }
    return res;
}

static bool selector_equal(const model_selector_t *a, const model_selector_t *b)
{
    if (!a || !b)
        return a == b;
    char *x = model_selector_string(a), *y = model_selector_string(b);
    bool eq = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return eq;
}

bool model_scope_rules_equal(const model_scope_rules_t *a, const model_scope_rules_t *b)
{
    if (model_scope_rules_count(a) != model_scope_rules_count(b))
        return false;
    for (size_t i = 0; i < model_scope_rules_count(a); i++) {
        const model_scope_rule_t *x = &a->rules[i], *y = &b->rules[i];
        if (x->scope != y->scope ||
            strcmp(x->origin ? x->origin : "", y->origin ? y->origin : "") ||
            !selector_equal(x->namespace_sel, y->namespace_sel) ||
            !selector_equal(x->service_sel, y->service_sel))
            return false;
    }
    return true;
}
