/*
 * fuzz_decode.c - kube_decode and the ServiceScope/MeshConfig decoders on
 * arbitrary JSON. Input: one byte choosing the kind, then JSON text.
 *   0..4  Namespace, Service, EndpointSlice, Pod, Node (kube_decode)
 *   5     ServiceScope (kube_decode_servicescope)
 *   6     MeshConfig serviceScopeConfigs (kube_decode_scope_configs; the
 *         document may be the array itself or {serviceScopeConfigs: [...]})
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_err(int rc, const char *err)
{
    /* a failure must say why; the message must be a terminated string */
    if (rc < 0 && (!err[0] || strnlen(err, MODEL_ERRLEN) == MODEL_ERRLEN))
        abort();
}

static void check_rules(const model_scope_rules_t *r, size_t before)
{
    size_t n = model_scope_rules_count(r);
    for (size_t i = before; i < n; i++) {
        const model_scope_rule_t *ru = model_scope_rules_at(r, i);
        if (!ru || !ru->origin)
            abort();
        if (ru->scope != MODEL_SCOPE_LOCAL && ru->scope != MODEL_SCOPE_GLOBAL)
            abort();
        model_selector_t *sels[2] = {ru->namespace_sel, ru->service_sel};
        for (int k = 0; k < 2; k++) {
            if (!sels[k])
                continue;
            char *s = model_selector_string(sels[k]);
            if (!s)
                abort();
            free(s);
        }
    }
    model_labels_t none = {0};
    (void)model_scope_eval(r, NULL, &none);
    (void)model_scope_eval(r, &none, &none);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0] % 7;
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, &jerr);
    if (!doc)
        return 0;
    char err[MODEL_ERRLEN];
    err[0] = '\0';
    if (sel < MODEL_KIND__COUNT) {
        void *obj = NULL;
        int rc = kube_decode((model_kind_t)sel, doc, &obj, err, sizeof(err));
        check_err(rc, err);
        if (rc == 0 && !obj)
            abort();
        if (rc < 0 && obj)
            abort(); /* "nothing is allocated on failure" */
        model_obj_free((model_kind_t)sel, obj);
    } else if (sel == 5) {
        model_scope_rules_t *r = model_scope_rules_new();
        int rc = kube_decode_servicescope(doc, r, err, sizeof(err));
        check_err(rc, err);
        /* an invalid rule is skipped, the valid ones of the same source
         * still apply: whatever was added must be a sound rule */
        check_rules(r, 0);
        model_scope_rules_free(r);
    } else {
        model_scope_rules_t *r = model_scope_rules_default();
        size_t before = model_scope_rules_count(r);
        json_t *arr = json_is_object(doc) ? json_object_get(doc, "serviceScopeConfigs") : doc;
        int rc = kube_decode_scope_configs(arr, (data[0] & 0x80) ? NULL : "MeshConfig", r, err,
                                           sizeof(err));
        check_err(rc, err);
        if (model_scope_rules_count(r) < before)
            abort(); /* the rules already there stay */
        check_rules(r, before);
        model_scope_rules_free(r);
    }
    json_decref(doc);
    return 0;
}
