/*
 * ca_call.c - istio.v1.auth.IstioCertificateService/CreateCertificate on the
 * xDS ports: one request, one answer (docs/ca.md).
 *
 * The caller proves who it is with the same bearer token and TokenReview
 * as an xDS stream (auth.c), against the cluster of its "clusterid"
 * metadata, else the local cluster, as istiod does. The certificate is for
 * that identity, never for what the CSR says; a node agent (ztunnel) may
 * instead name a workload in the ImpersonatedIdentity metadata, which the
 * node authorizer must accept: the workload runs on the agent's node.
 *
 * Signing runs on the thread that applies the authentication answer, with
 * the server's lock held: it is about a millisecond, and the lock is what
 * keeps the CA alive while it signs (xds_server_set_ca frees the old one
 * only under it).
 */
#include "citadel.pb-c.h"
#include "xds_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SA_PREFIX "system:serviceaccount:"
#define IMPERSONATED_KEY "ImpersonatedIdentity"

const char *xds_ca_result_name(xds_ca_result_t r)
{
    static const char *const names[XDS_CA_RESULTS] = {"ok",      "unauthenticated", "denied",
                                                      "invalid", "unavailable",     "internal"};
    return (unsigned)r < XDS_CA_RESULTS ? names[r] : "?";
}

void xds_ca_call_fail(xds_stream_t *st, xds_ca_result_t r, grpc_status_code code, const char *msg)
{
    st->srv->stats.ca_requests[r]++;
    xds_log(st->srv, r != XDS_CA_RESULT_UNAVAILABLE, "CreateCertificate from %s refused: %s",
            st->peer ? st->peer : "?", msg);
    xds_stream_close(st, code, msg);
}

/* The string value of metadata key, or NULL. Borrowed from req. */
static const char *md_string(const Istio__V1__Auth__IstioCertificateRequest *req, const char *key)
{
    if (!req->metadata)
        return NULL;
    for (size_t i = 0; i < req->metadata->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *f = req->metadata->fields[i];
        if (f->key && strcmp(f->key, key) == 0 && f->value &&
            f->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
            return f->value->string_value;
    }
    return NULL;
}

void xds_ca_call_on_message(xds_stream_t *st, const uint8_t *buf, size_t len)
{
    xds_server_t *s = st->srv;
    if (st->ca_csr || st->auth_pending) { /* unary: one request only */
        xds_ca_call_fail(st, XDS_CA_RESULT_INVALID, GRPC_STATUS_INVALID_ARGUMENT,
                         "ca: CreateCertificate takes one request");
        return;
    }
    Istio__V1__Auth__IstioCertificateRequest *req =
        istio__v1__auth__istio_certificate_request__unpack(NULL, len, buf);
    if (!req || !req->csr || !*req->csr) {
        if (req)
            istio__v1__auth__istio_certificate_request__free_unpacked(req, NULL);
        xds_ca_call_fail(st, XDS_CA_RESULT_INVALID, GRPC_STATUS_INVALID_ARGUMENT,
                         req ? "ca: the request has no CSR" : "ca: not an IstioCertificateRequest");
        return;
    }
    const char *imp = md_string(req, IMPERSONATED_KEY);
    bool impersonates = imp && *imp; /* imp goes with req */
    st->ca_csr = strdup(req->csr);
    st->ca_impersonate = impersonates ? strdup(imp) : NULL;
    st->ca_ttl = req->validity_duration;
    istio__v1__auth__istio_certificate_request__free_unpacked(req, NULL);
    if (!st->ca_csr || (impersonates && !st->ca_impersonate)) {
        xds_ca_call_fail(st, XDS_CA_RESULT_INTERNAL, GRPC_STATUS_INTERNAL, "ca: out of memory");
        return;
    }
    if (!s->authenticate) {
        xds_ca_call_fail(st, XDS_CA_RESULT_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED,
                         "ca: meshfed verifies no tokens (--xds-auth none): no certificates");
        return;
    }
    free(st->cluster);
    if (!(st->cluster = strdup(s->local_cluster))) {
        xds_ca_call_fail(st, XDS_CA_RESULT_INTERNAL, GRPC_STATUS_INTERNAL, "ca: out of memory");
        return;
    }
    xds_auth_start(st); /* answers through xds_ca_call_authed or closes */
}

/* "spiffe://<td>/ns/<ns>/sa/<sa>" split into its three names (copies in
 * buffers of 254 bytes). */
static bool parse_spiffe(const char *uri, char *td, char *ns, char *sa)
{
    const char *p = strncmp(uri, "spiffe://", 9) == 0 ? uri + 9 : NULL;
    const char *a = p ? strchr(p, '/') : NULL;
    if (!a || a == p || (size_t)(a - p) >= 254 || strncmp(a, "/ns/", 4) != 0)
        return false;
    const char *b = strchr(a + 4, '/');
    if (!b || b == a + 4 || (size_t)(b - a - 4) >= 254 || strncmp(b, "/sa/", 4) != 0)
        return false;
    const char *c = b + 4;
    if (!*c || strchr(c, '/') || strlen(c) >= 254)
        return false;
    snprintf(td, 254, "%.*s", (int)(a - p), p);
    snprintf(ns, 254, "%.*s", (int)(b - a - 4), a + 4);
    snprintf(sa, 254, "%s", c);
    return true;
}

/* The ns and sa of "system:serviceaccount:<ns>:<sa>". */
static bool parse_sa(const char *user, char *ns, char *sa)
{
    const char *rest =
        strncmp(user, SA_PREFIX, strlen(SA_PREFIX)) == 0 ? user + strlen(SA_PREFIX) : NULL;
    const char *colon = rest ? strchr(rest, ':') : NULL;
    if (!colon || colon == rest || !colon[1] || (size_t)(colon - rest) >= 254 ||
        strlen(colon + 1) >= 254)
        return false;
    snprintf(ns, 254, "%.*s", (int)(colon - rest), rest);
    snprintf(sa, 254, "%s", colon + 1);
    return true;
}

static grpc_status_code sign_status(int rc, xds_ca_result_t *r)
{
    switch (rc) {
    case XDS_CA_ERR_CSR:
    case XDS_CA_ERR_KEY_TYPE:
    case XDS_CA_ERR_TTL:
    case XDS_CA_ERR_IDENTITY:
        *r = XDS_CA_RESULT_INVALID;
        return GRPC_STATUS_INVALID_ARGUMENT;
    default:
        *r = XDS_CA_RESULT_INTERNAL;
        return GRPC_STATUS_INTERNAL;
    }
}

static void send_chain(xds_stream_t *st, const xds_ca_chain_t *chain)
{
    Istio__V1__Auth__IstioCertificateResponse resp =
        ISTIO__V1__AUTH__ISTIO_CERTIFICATE_RESPONSE__INIT;
    resp.n_cert_chain = chain->n;
    resp.cert_chain = chain->pem;
    size_t len = istio__v1__auth__istio_certificate_response__get_packed_size(&resp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        xds_ca_call_fail(st, XDS_CA_RESULT_INTERNAL, GRPC_STATUS_INTERNAL, "ca: out of memory");
        return;
    }
    istio__v1__auth__istio_certificate_response__pack(&resp, buf);
    st->srv->stats.ca_requests[XDS_CA_RESULT_OK]++;
    xds_stream_send(st, buf, len);
    xds_stream_close(st, GRPC_STATUS_OK, NULL); /* after the answer */
}

void xds_ca_call_authed(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    char msg[2048], td[254], ns[254], sa[254], cns[254], csa[254];
    if (!parse_sa(st->identity, cns, csa)) {
        snprintf(msg, sizeof(msg), "ca: %.300s is not a service account", st->identity);
        xds_ca_call_fail(st, XDS_CA_RESULT_DENIED, GRPC_STATUS_PERMISSION_DENIED, msg);
        return;
    }
    xds_ca_identity_t id = {s->trust_domain, cns, csa};
    if (st->ca_impersonate) {
        char why[512] = "no node authorizer";
        if (!parse_spiffe(st->ca_impersonate, td, ns, sa) || strcmp(td, s->trust_domain) != 0) {
            snprintf(msg, sizeof(msg),
                     "ca: ImpersonatedIdentity %.300s is not spiffe://%s/ns/<ns>/sa/<sa>",
                     st->ca_impersonate, s->trust_domain);
            xds_ca_call_fail(st, XDS_CA_RESULT_INVALID, GRPC_STATUS_INVALID_ARGUMENT, msg);
            return;
        }
        if (!st->pod_name || !st->pod_uid)
            snprintf(why, sizeof(why), "its token is not bound to a pod");
        if (!st->pod_name || !st->pod_uid || !s->node_authorize ||
            !s->node_authorize(s->node_authorize_arg, st->cluster, cns, st->pod_name, st->pod_uid,
                               csa, ns, sa, why, sizeof(why))) {
            snprintf(msg, sizeof(msg), "ca: %s/%s of cluster %s may not impersonate %s/%s: %s", cns,
                     csa, st->cluster, ns, sa, why);
            xds_ca_call_fail(st, XDS_CA_RESULT_DENIED, GRPC_STATUS_PERMISSION_DENIED, msg);
            return;
        }
        id.ns = ns;
        id.sa = sa;
    }
    if (!s->ca) {
        xds_ca_call_fail(st, XDS_CA_RESULT_INTERNAL, GRPC_STATUS_INTERNAL, "ca: no CA loaded");
        return;
    }
    xds_ca_chain_t chain = {0};
    char err[512];
    int rc = xds_ca_sign(s->ca, st->ca_csr, strlen(st->ca_csr), &id, st->ca_ttl, &chain, err,
                         sizeof(err));
    if (rc != XDS_CA_OK) {
        xds_ca_result_t r;
        grpc_status_code code = sign_status(rc, &r);
        snprintf(msg, sizeof(msg), "ca: %s: %s", xds_ca_strerror(rc), err);
        xds_ca_call_fail(st, r, code, msg);
        return;
    }
    send_chain(st, &chain);
    xds_ca_chain_free(&chain);
}
