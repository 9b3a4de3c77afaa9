/*
 * fuzz_json.c - the watcher's in-place JSON parser (kube/jv.c) against
 * jansson on the same bytes. Both must accept or both reject, and what is
 * accepted must be the same value: jv.h promises jansson's grammar (with
 * JSON_DECODE_ANY, as jv takes any top-level value). One known difference
 * is left out: jansson stops at a NUL byte after a value and accepts, jv
 * (like RFC 8259) refuses the NUL; for such inputs only jv runs. The input is copied
 * to a buffer of exactly its size, so that ASan sees any read past it.
 */
#include "jv.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void walk(const kube_jv_t *v)
{
    /* every slot is reachable and sizes add up */
    size_t i, slots = 1;
    const kube_jv_t *x;
    if (v->type == KUBE_J_ARRAY) {
        KUBE_JARRAY_FOREACH(v, i, x)
        {
            if (kube_jat(v, i) != x)
                abort();
            walk(x);
            slots += x->size;
        }
    } else if (v->type == KUBE_J_OBJECT) {
        KUBE_JOBJECT_FOREACH(v, i, x)
        {
            if (x->type != KUBE_J_STRING || strlen(x->v.s) != x->len)
                abort();
            /* kube_jget finds the last member of that name */
            const kube_jv_t *last = kube_jget(v, x->v.s);
            if (!last || last->type > KUBE_J_OBJECT)
                abort();
            walk(x + 1);
            slots += 1 + x[1].size;
        }
    } else if (v->type == KUBE_J_STRING && strlen(v->v.s) != v->len) {
        abort(); /* \u0000 is refused, so strings are C strings */
    }
    if (slots != v->size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    bool nul = memchr(data, 0, size) != NULL;
    json_t *want = nul ? NULL : json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    kube_jdoc_t d = {0};
    int rc = kube_jparse(&d, buf, size);
    if (!nul && (rc == 0) != (want != NULL)) {
        fprintf(stderr, "fuzz_json: jv %s (%s), jansson %s (%s)\n", rc == 0 ? "accepts" : "rejects",
                d.err, want ? "accepts" : "rejects", want ? "" : je.text);
        abort();
    }
    if (rc == 0) {
        if (d.err[0] != 0 || d.n != kube_jroot(&d)->size)
            abort();
        walk(kube_jroot(&d));
        json_t *got = kube_jto_json(kube_jroot(&d));
        if (!got || (!nul && !json_equal(got, want))) {
            char *a = json_dumps(got, JSON_ENCODE_ANY), *b = json_dumps(want, JSON_ENCODE_ANY);
            fprintf(stderr, "fuzz_json: values differ:\n  jv      %s\n  jansson %s\n", a, b);
            abort();
        }
        json_decref(got);
    } else if (strncmp(d.err, "offset ", 7) != 0) {
        abort(); /* every error says where */
    }
    kube_jdoc_clear(&d);
    json_decref(want);
    free(buf);
    return 0;
}
