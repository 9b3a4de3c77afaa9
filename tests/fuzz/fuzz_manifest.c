/*
 * fuzz_manifest.c - kube_manifest_load_string on arbitrary YAML/JSON text,
 * then every document it yields through kube_kind_lookup and kube_decode.
 */
#include "kube.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t docs;
    int stop_at;
} ctx_t;

static int on_doc(json_t *doc, void *arg)
{
    ctx_t *c = arg;
    if (!json_is_object(doc))
        abort(); /* "every document (and item) must be a mapping" */
    c->docs++;
    /* documents round-trip through jansson */
    char *s = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
        json_error_t je;
        json_t *back = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!back || !json_equal(back, doc)) {
            fprintf(stderr, "fuzz_manifest: document does not round-trip through JSON: %s\n%s\n",
                    back ? "differs" : je.text, s);
            abort();
        }
        json_decref(back);
        free(s);
    }
    model_kind_t k;
    const char *av = json_string_value(json_object_get(doc, "apiVersion"));
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    char err[MODEL_ERRLEN];
    if (av && kind && kube_kind_lookup(av, kind, &k) == 0) {
        void *obj = NULL;
        if (kube_decode(k, doc, &obj, err, sizeof(err)) == 0)
            model_obj_free(k, obj);
    } else if (kind && strcmp(kind, "ServiceScope") == 0) {
        model_scope_rules_t *r = model_scope_rules_new();
        (void)kube_decode_servicescope(doc, r, err, sizeof(err));
        model_scope_rules_free(r);
    }
    if (c->stop_at > 0 && (int)c->docs == c->stop_at)
        return 7;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[MODEL_ERRLEN];
    err[0] = 'x';
    ctx_t c = {0, 0};
    int rc = kube_manifest_load_string((const char *)data, size, on_doc, &c, err, sizeof(err));
    if (rc != 0 && rc != -1)
        abort(); /* fn never stops this run */
    if (rc == -1 && (!err[0] || strnlen(err, sizeof(err)) == sizeof(err)))
        abort();
    if (rc == 0 && c.docs > 0) {
        /* again, stopping at the first document: must return fn's value */
        ctx_t c2 = {0, 1};
        rc = kube_manifest_load_string((const char *)data, size, on_doc, &c2, err, sizeof(err));
        if (rc != 7 || err[0] != '\0' || c2.docs != 1)
            abort();
    }
    return 0;
}
