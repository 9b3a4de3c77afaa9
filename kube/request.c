/*
 * request.c - kube_request: one synchronous API request on its own curl easy
 * handle, for writes and small reads (leases, status updates). The watcher's
 * multi handle is not involved, so a slow write never holds up the watches
 * and callers can block on the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_int.h"

typedef struct kube_rbuf {
    char *p;
    size_t len, cap;
    bool toobig;
} kube_rbuf_t;

static size_t kube_req_write(char *data, size_t size, size_t nmemb, void *ud)
{
    kube_rbuf_t *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > KUBE_MAX_RESPONSE) {
        b->toobig = true;
        return 0; /* aborts the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* Aborts the transfer once the owner asked to stop, so that stopping a lease
 * does not wait for a hanging API server. */
static int kube_req_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load((const atomic_bool *)ud) ? 1 : 0;
}

/* Method and body options: curl's POST machinery carries the body, and
 * CUSTOMREQUEST renames it for PUT/PATCH/DELETE. */
static void kube_req_method(CURL *e, const char *method, const char *body)
{
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    }
    if (strcmp(method, body ? "POST" : "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
}

int kube_request_ex(const kube_conn_t *c, const char *method, const char *path,
                    const char *content_type, const char *body, long timeout_ms,
                    const atomic_bool *cancel, long *status, char **resp_body, char *err,
                    size_t errlen)
{
    char *base = NULL, ctype[256], errbuf[CURL_ERROR_SIZE];
    struct curl_slist *connect_to = NULL, *hdrs = NULL;
    kube_rbuf_t b = {0};
    int rc = -1;
    *status = 0;
    *resp_body = NULL;
    err[0] = '\0';
    if (!c || !c->server || !method || !path || path[0] != '/') {
        snprintf(err, errlen, "kube_request: bad arguments");
        return -1;
    }
    snprintf(ctype, sizeof(ctype), "Content-Type: %s",
             content_type ? content_type : "application/json");
    CURL *e = curl_easy_init();
    if (!e || kube_base_url(c, &base, &connect_to, err, errlen) < 0 ||
        kube_easy_setup(e, c, base, connect_to, path, body ? ctype : NULL, &hdrs, errbuf, err,
                        errlen) < 0) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    kube_req_method(e, method, body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, kube_req_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    if (timeout_ms < 10000)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    if (cancel) {
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, kube_req_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)cancel);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    }
    CURLcode cc = curl_easy_perform(e);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s %s: %s%s%s", method, path,
                 b.toobig ? "response too large" : curl_easy_strerror(cc),
                 errbuf[0] && !b.toobig ? ": " : "", b.toobig ? "" : errbuf);
        goto out;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    if (*status == 401)
        kube_exec_invalidate(c->exec); /* the next request runs the plugin again */
    *resp_body = b.p ? b.p : strdup("");
    b.p = NULL;
    rc = *resp_body ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
out:
    free(b.p);
    free(base);
    curl_slist_free_all(connect_to);
    curl_slist_free_all(hdrs);
    if (e)
        curl_easy_cleanup(e);
    return rc;
}

int kube_request(const kube_conn_t *c, const char *method, const char *path,
                 const char *content_type, const char *body, long *status, char **resp_body,
                 char *err, size_t errlen)
{
    return kube_request_ex(c, method, path, content_type, body, KUBE_REQUEST_TIMEOUT_MS, NULL,
                           status, resp_body, err, errlen);
}
