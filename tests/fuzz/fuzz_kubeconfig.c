/*
 * fuzz_kubeconfig.c - kube_conn_from_kubeconfig on arbitrary text, for the
 * current context and for a context named by the input's first line; a
 * successful parse is deep-copied and freed. Exec plugins are allowed
 * (KUBE_KC_EXEC) when the input is of even length: parsed, never run.
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void one(const char *text, size_t len, const char *context)
{
    kube_conn_t c;
    char err[MODEL_ERRLEN];
    err[0] = '\0';
    int rc = kube_conn_from_kubeconfig_ex(text, len, context, len % 2 ? 0 : KUBE_KC_EXEC, &c, err,
                                          sizeof(err));
    if (rc == 0) {
        kube_conn_t d;
        memset(&d, 0, sizeof(d));
        if (kube_conn_copy(&d, &c) == 0)
            kube_conn_free(&d);
    } else if (rc != -1 || !err[0] || strnlen(err, sizeof(err)) == sizeof(err)) {
        abort();
    }
    kube_conn_free(&c); /* also on failure */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size heap copy so ASan sees any read past len */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    one(text, size, NULL);
    const char *nl = memchr(data, '\n', size < 64 ? size : 64);
    if (nl) {
        char ctx[65];
        size_t n = (size_t)(nl - (const char *)data);
        memcpy(ctx, data, n);
        ctx[n] = '\0';
        if (ctx[0] == '#' && n > 1)
            one(text, size, ctx + 1); /* "#name" first line names a context */
    }
    free(text);

    /* base64 decoder on the same bytes */
    char *b = malloc(size + 1);
    memcpy(b, data, size);
    b[size] = '\0';
    size_t out = 0;
    char *dec = kube_base64_decode(b, &out);
    if (dec) {
        if (dec[out] != '\0' || out > size)
            abort();
        free(dec);
    }
    free(b);
    return 0;
}
