/*
 * auth.c - client authentication of xDS streams (docs/security.md).
 *
 * When the server has an authenticator, the first request of a stream (the
 * one that names the node) hands the stream's bearer token to it, with the
 * cluster it is to be verified against: the "clusterid" metadata that
 * ztunnel sends with its token (as istiod reads it), else the node's claimed
 * CLUSTER_ID. The check is a network call (a TokenReview), so it is
 * asynchronous: the stream sends nothing and reads no further request until
 * the answer arrives, then either serves the view of the cluster the token
 * was proven for, or closes with UNAUTHENTICATED / PERMISSION_DENIED.
 *
 * The answer may come after the stream is gone (cancelled meanwhile): the
 * request object is shared, the stream cuts its pointer when it is freed,
 * and the server waits for every outstanding answer before it is freed.
 */
#include "xds_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XDS_MAX_TOKEN 16384 /* projected service-account JWTs are ~1-2 KiB */

struct xds_auth_req {
    xds_server_t *srv;
    xds_stream_t *st; /* NULL once the stream is gone */
    bool answered;    /* answered from inside the authenticate call */
    xds_auth_result_t result;
    char *identity, *msg, *pod_name, *pod_uid;
};

/* Set while this thread is inside authenticate (holding tl_srv->mu): an
 * answer given there must not take the lock again. */
static _Thread_local xds_server_t *tl_srv;
static _Thread_local xds_auth_req_t *tl_req;

/* A metadata value as a new string (at most max bytes), or NULL. */
static char *md_dup(const grpc_metadata_array *md, const char *key, size_t max)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key, *v = &md->metadata[i].value;
        if (GRPC_SLICE_LENGTH(*k) == n && memcmp(GRPC_SLICE_START_PTR(*k), key, n) == 0 &&
            GRPC_SLICE_LENGTH(*v) > 0 && GRPC_SLICE_LENGTH(*v) <= max)
            return strndup((const char *)GRPC_SLICE_START_PTR(*v), GRPC_SLICE_LENGTH(*v));
    }
    return NULL;
}

/* The token of "authorization: Bearer <token>", or NULL. */
static char *bearer_token(const grpc_metadata_array *md)
{
    char *h = md_dup(md, "authorization", XDS_MAX_TOKEN + 7);
    char *tok = NULL;
    if (h && strncasecmp(h, "Bearer ", 7) == 0 && h[7])
        tok = strdup(h + 7);
    if (h) {
        memset(h, 0, strlen(h)); /* secrets do not linger in freed memory */
        free(h);
    }
    return tok;
}

static void req_release(xds_auth_req_t *q)
{
    xds_server_t *s = q->srv;
    free(q->identity);
    free(q->msg);
    free(q->pod_name);
    free(q->pod_uid);
    free(q);
    if (--s->auth_inflight == 0)
        pthread_cond_broadcast(&s->auth_cv);
}

/* A CreateCertificate call's answer: its outcome is counted as a CA
 * request, not as an xDS stream's authentication. */
static void finish_ca(xds_stream_t *st, const xds_auth_answer_t *a)
{
    char full[1500];
    snprintf(full, sizeof(full), "ca: %s", a->msg && *a->msg ? a->msg : "authentication failed");
    switch (a->result) {
    case XDS_AUTH_OK:
        st->authed = true;
        st->identity = strdup(a->identity ? a->identity : "");
        st->pod_name = a->pod_name ? strdup(a->pod_name) : NULL;
        st->pod_uid = a->pod_uid ? strdup(a->pod_uid) : NULL;
        xds_ca_call_authed(st);
        return;
    case XDS_AUTH_UNAUTHENTICATED:
        xds_ca_call_fail(st, XDS_CA_RESULT_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED, full);
        return;
    case XDS_AUTH_DENIED:
        xds_ca_call_fail(st, XDS_CA_RESULT_DENIED, GRPC_STATUS_PERMISSION_DENIED, full);
        return;
    case XDS_AUTH_UNAVAILABLE:
        xds_ca_call_fail(st, XDS_CA_RESULT_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE, full);
        return;
    }
}

/* Applies an answer to a live stream. resume: reading was held back and the
 * stream is idle (an answer from another thread); else the caller (the
 * first request's handling) reads and pumps on. */
static void finish(xds_stream_t *st, const xds_auth_answer_t *a, bool resume)
{
    xds_server_t *s = st->srv;
    char buf[1400];
    xds_auth_result_t r = a->result;
    const char *msg = a->msg;
    st->auth_pending = false;
    if (st->closing)
        return;
    if (st->ca_call) {
        finish_ca(st, a);
        return;
    }
    if (r == XDS_AUTH_OK && strcmp(st->auth_cluster, st->cluster) != 0) {
        r = XDS_AUTH_DENIED;
        snprintf(buf, sizeof(buf), "token verified for cluster %s, but the node claims cluster %s",
                 st->auth_cluster, st->cluster);
        msg = buf;
    }
    grpc_status_code code = GRPC_STATUS_UNAUTHENTICATED;
    switch (r) {
    case XDS_AUTH_OK:
        s->stats.auth_ok++;
        st->authed = true;
        st->identity = strdup(a->identity ? a->identity : "");
        if (resume) {
            xds_stream_recv(st);
            xds_stream_pump(st);
        }
        return;
    case XDS_AUTH_UNAUTHENTICATED:
        s->stats.auth_unauthenticated++;
        break;
    case XDS_AUTH_DENIED:
        s->stats.auth_denied++;
        code = GRPC_STATUS_PERMISSION_DENIED;
        break;
    case XDS_AUTH_UNAVAILABLE:
        s->stats.auth_unavailable++;
        code = GRPC_STATUS_UNAVAILABLE;
        break;
    }
    char full[1500];
    snprintf(full, sizeof(full), "xds: %s", msg && *msg ? msg : "authentication failed");
    xds_stream_close(st, code, full);
}

/* The authenticator's answer (xds_auth_done_fn). */
static void auth_done(void *arg, const xds_auth_answer_t *a)
{
    xds_auth_req_t *q = arg;
    if (q == tl_req) { /* inside authenticate: xds_auth_start applies it */
        q->answered = true;
        q->result = a->result;
        q->identity = a->identity ? strdup(a->identity) : NULL;
        q->msg = a->msg ? strdup(a->msg) : NULL;
        q->pod_name = a->pod_name ? strdup(a->pod_name) : NULL;
        q->pod_uid = a->pod_uid ? strdup(a->pod_uid) : NULL;
        return;
    }
    xds_server_t *s = q->srv;
    bool locked = tl_srv == s;
    if (!locked)
        pthread_mutex_lock(&s->mu);
    if (q->st) {
        q->st->auth_req = NULL;
        finish(q->st, a, true);
    }
    req_release(q);
    if (!locked)
        pthread_mutex_unlock(&s->mu);
}

static int fail(xds_stream_t *st, grpc_status_code code, const char *msg)
{
    if (st->ca_call) {
        xds_ca_call_fail(st,
                         code == GRPC_STATUS_UNAUTHENTICATED ? XDS_CA_RESULT_UNAUTHENTICATED
                                                             : XDS_CA_RESULT_UNAVAILABLE,
                         code, msg);
        return -1;
    }
    if (code == GRPC_STATUS_UNAUTHENTICATED)
        st->srv->stats.auth_unauthenticated++;
    else
        st->srv->stats.auth_unavailable++;
    xds_stream_close(st, code, msg);
    return -1;
}

int xds_auth_start(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    if (!s->authenticate) {
        st->authed = true;
        return 0;
    }
    char *token = bearer_token(&st->md);
    if (!token)
        return fail(st, GRPC_STATUS_UNAUTHENTICATED,
                    "xds: no bearer token (send \"authorization: Bearer <service account "
                    "token>\" metadata)");
    char *hdr = md_dup(&st->md, "clusterid", XDS_MAX_NAME);
    st->auth_cluster = hdr ? hdr : strdup(st->cluster);
    xds_auth_req_t *q = calloc(1, sizeof(*q));
    if (!q || !st->auth_cluster) {
        free(q);
        free(token);
        return fail(st, GRPC_STATUS_UNAVAILABLE, "xds: out of memory");
    }
    q->srv = s;
    q->st = st;
    st->auth_req = q;
    st->auth_pending = true;
    s->auth_inflight++;
    tl_srv = s;
    tl_req = q;
    int rc = s->authenticate(s->authenticate_arg, st->auth_cluster, token,
                             st->ca_call ? XDS_AUTH_FOR_CA : XDS_AUTH_FOR_XDS, auth_done, q);
    tl_srv = NULL;
    tl_req = NULL;
    memset(token, 0, strlen(token));
    free(token);
    if (rc != 0 || q->answered) {
        st->auth_req = NULL;
        if (rc != 0) {
            st->auth_pending = false;
            fail(st, GRPC_STATUS_UNAVAILABLE, "xds: the authenticator is unavailable");
        } else {
            xds_auth_answer_t a = {q->result, q->identity, q->msg, q->pod_name, q->pod_uid};
            finish(st, &a, false);
        }
        req_release(q);
    }
    return st->closing ? -1 : 0;
}

void xds_auth_detach(xds_stream_t *st)
{
    if (st->auth_req) {
        st->auth_req->st = NULL;
        st->auth_req = NULL;
    }
}
