/*
 * xds.h - the xDS server: gRPC (grpc core C API) ADS streams for ztunnels,
 * east-west gateways and proxyless gRPC clients.
 *
 * The server only reads published model snapshots: controller/ hands it each
 * new one with xds_server_publish(), and every stream sends its proxy the
 * difference between what it last acknowledged and the newest snapshot, for
 * that proxy's view (cluster and network from its node metadata).
 */
#ifndef MESHFED_XDS_H
#define MESHFED_XDS_H

#include "model.h"

#include <stddef.h>
#include <stdint.h>

#define XDS_TYPE_ADDRESS "type.googleapis.com/istio.workload.Address"
#define XDS_TYPE_AUTHORIZATION "type.googleapis.com/istio.security.Authorization"

/* Client authentication (docs/security.md). The result of one check: */
typedef enum xds_auth_result {
    XDS_AUTH_OK,
    XDS_AUTH_UNAUTHENTICATED, /* no, invalid or unverifiable token */
    XDS_AUTH_DENIED,          /* a valid identity that may not connect */
    XDS_AUTH_UNAVAILABLE,     /* the verifier could not be reached: retry */
} xds_auth_result_t;

/* What an authenticator proved. */
typedef struct xds_auth_answer {
    xds_auth_result_t result;
    const char *identity; /* with XDS_AUTH_OK: "system:serviceaccount:<ns>:<sa>" */
    const char *msg;      /* why not (sent to the client: never the token) */
    /* the pod the token is bound to (TokenReview user.extra
     * authentication.kubernetes.io/pod-name and pod-uid), NULL if unbound */
    const char *pod_name, *pod_uid;
} xds_auth_answer_t;

/* Completes one authenticate call. Strings are copied. Call exactly once
 * per accepted authenticate call, from any thread (also from inside
 * authenticate), without holding locks that authenticate takes. */
typedef void (*xds_auth_done_fn)(void *done_arg, const xds_auth_answer_t *a);

/* Who asks: an xDS stream (the identity must also be one allowed to read
 * xDS) or a CreateCertificate call (any service account may ask for its own
 * certificate). */
typedef enum xds_auth_purpose { XDS_AUTH_FOR_XDS, XDS_AUTH_FOR_CA } xds_auth_purpose_t;

/* Verifies token (the "authorization: Bearer" value) against cluster's API
 * server. Called on a server thread with the server's lock held: must not
 * block (queue the work) nor call into the server. 0: done will be called;
 * -1: it will not (the call is closed UNAVAILABLE). */
typedef int (*xds_authenticate_fn)(void *arg, const char *cluster, const char *token,
                                   xds_auth_purpose_t purpose, xds_auth_done_fn done,
                                   void *done_arg);

/* Node authorization of an impersonating caller (a ztunnel asking for a
 * certificate of a workload on its node), as istiod checks it: caller_sa is
 * a trusted node account, the caller's pod caller_ns/caller_pod (uid
 * caller_uid) exists in cluster with service account caller_sa, and a
 * pod of service account sa in namespace ns runs on the caller pod's node.
 * true when allowed, else false with why filled. Called on a server thread
 * with the server's lock held: thread-safe, no calls into the server. */
typedef bool (*xds_node_authorize_fn)(void *arg, const char *cluster, const char *caller_ns,
                                      const char *caller_pod, const char *caller_uid,
                                      const char *caller_sa, const char *ns, const char *sa,
                                      char *why, size_t whylen);

typedef struct xds_ca xds_ca_t;

typedef struct xds_config {
    const char *listen;        /* plaintext "host:port", e.g. "127.0.0.1:15010"; port 0 picks one */
    const char *tls_listen;    /* TLS "host:port" or NULL */
    const char *tls_cert_file; /* PEM server certificate chain (with tls_listen) */
    const char *tls_key_file;  /* PEM private key */
    /* Or, instead of the files, a pair in memory (copied), replaced with
     * xds_server_set_tls_pem (a certificate the CA issued and renews). */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    size_t max_message_bytes; /* 0: 16 MiB */
    int max_streams;          /* 0: 10000 */
    /* The network of a cluster (used for a proxy whose node metadata names
     * none: ztunnel sends NETWORK only when ISTIO_META_NETWORK is set), NULL
     * for a cluster meshfed does not know (such proxies are served, counted
     * and flagged in /debug/syncz). Called on a server thread with the
     * server's lock held: it must be thread-safe and must not call into the
     * server. The result is copied. The callback NULL: every cluster is
     * known, on network "". */
    const char *(*network_of)(void *arg, const char *cluster);
    void *network_of_arg;
    /* NULL: streams are not authenticated. Otherwise every stream must send
     * "authorization: Bearer <token>" metadata; the token is verified for
     * the cluster of its "clusterid" metadata (else its node's CLUSTER_ID),
     * which must equal the node's claimed cluster. Nothing is sent (and no
     * further request read) until the check completes. */
    xds_authenticate_fn authenticate;
    void *authenticate_arg;
    /* The mesh trust domain: east-west gateways accept HBONE only from
     * spiffe://<trust_domain>/ peers. NULL: "cluster.local". */
    const char *trust_domain;
    /* Names one stream may subscribe to, of all its types (resource names
     * and initial versions): 0 means 10000 names and 1 MiB. A ztunnel asks
     * for a handful on demand, a gateway for one per global service port;
     * a stream past either limit is closed RESOURCE_EXHAUSTED. */
    size_t max_names;
    size_t max_name_bytes;
    /* All streams together: 0 means 128 MiB of subscribed names. */
    size_t max_name_bytes_total;
    /* Where the server says what it refused and why (warn), or what it did
     * (rate-limited by the server); NULL: nowhere. Called with the server's
     * lock held. */
    void (*log)(void *arg, bool warn, const char *msg);
    void *log_arg;
    /* istio.io/debug/syncz (istioctl proxy-status): the identifier its
     * responses carry as control_plane (istiod's is JSON naming component,
     * instance and version), and the cluster a debug client that names none
     * is taken to be of (its token is checked against it). NULL: "{}", "". */
    const char *control_plane;
    const char *local_cluster;
    /* istio.v1.auth.IstioCertificateService/CreateCertificate on the same
     * ports (docs/ca.md): NULL: not served (UNIMPLEMENTED). The server owns
     * it from then on (xds_server_set_ca swaps it). Needs authenticate. */
    xds_ca_t *ca;
    /* Whether a caller may ask for another identity's certificate (it must
     * be a node agent whose node runs that identity); NULL: every
     * impersonation is refused. */
    xds_node_authorize_fn node_authorize;
    void *node_authorize_arg;
    /* Connection age (grpc core's max_connection_age): after about this many
     * milliseconds (grpc spreads it by +-10% so that connections made together
     * do not end together) the server sends GOAWAY; streams still open
     * max_connection_age_grace_ms later are cut and their clients reconnect,
     * possibly to another replica behind the same Service. 0: connections
     * live as long as their clients keep them. */
    int max_connection_age_ms;
    int max_connection_age_grace_ms;
} xds_config_t;

typedef struct xds_server xds_server_t;

/* Binds the listeners. NULL with a reason in err on failure. */
xds_server_t *xds_server_new(const xds_config_t *cfg, char *err, size_t errlen);
/* The bound plaintext port (useful with port 0). */
int xds_server_port(const xds_server_t *s);
/* Replaces the TLS listener's in-memory pair (tls_cert_pem): handshakes
 * from now on present it, open connections keep theirs. Thread-safe. 0, or
 * -1 when the listener serves files (or none) or out of memory. */
int xds_server_set_tls_pem(xds_server_t *s, const char *cert_chain, const char *key);
/* A new serving certificate from the current CA (xds_ca_issue_server)
 * installed with xds_server_set_tls_pem. 0, or an xds_ca_err_t with err. */
int xds_server_renew_tls(xds_server_t *s, const char *const *dns, size_t ndns, int64_t ttl_s,
                         int64_t *not_after, char *err, size_t errlen);
/* The bound TLS port, 0 without tls_listen. */
int xds_server_tls_port(const xds_server_t *s);
/* false, with why, once grpc has stopped taking connections on one of the
 * server's ports (listen_check.c): /ready and /healthz fail then. */
bool xds_server_listening(xds_server_t *s, char *why, size_t whylen);
/* Starts serving on its own thread(s). 0 or -1. */
int xds_server_start(xds_server_t *s);
/* A cluster's network changed (config.network_of now answers otherwise): the
 * streams that follow their cluster's network are checked at the next
 * publish, and those whose view moved are closed to reconnect. Thread-safe. */
void xds_server_networks_changed(xds_server_t *s);
/* Hands the server a new snapshot (it takes its own reference). Thread-safe. */
void xds_server_publish(xds_server_t *s, model_snapshot_t *snap);
/* Stops accepting, lets streams finish for up to grace_ms, then cancels them. */
void xds_server_shutdown(xds_server_t *s, int grace_ms);
void xds_server_free(xds_server_t *s);
/* Replaces the CA (a reloaded cacerts): calls that arrive from now on sign
 * with ca; the old one is freed once no call uses it. Takes ownership.
 * Thread-safe. */
void xds_server_set_ca(xds_server_t *s, xds_ca_t *ca);

#define XDS_LATENCY_BUCKETS 10
/* upper bounds of the latency buckets, milliseconds; the last is +Inf */
extern const double XDS_LATENCY_BOUNDS_MS[XDS_LATENCY_BUCKETS - 1];

typedef enum xds_proxy_kind {
    XDS_PROXY_ZTUNNEL, /* asked for istio.workload.Address */
    XDS_PROXY_GATEWAY, /* an east-west gateway asking for Envoy types */
    XDS_PROXY_GRPC,    /* any other Envoy-type client: proxyless gRPC */
    XDS_PROXY_KINDS
} xds_proxy_kind_t;

const char *xds_proxy_kind_name(xds_proxy_kind_t k);

/* What a response carried, as istiod labels pilot_xds_pushes{type}. */
typedef enum xds_push_kind {
    XDS_PUSH_ADDRESS,
    XDS_PUSH_AUTHORIZATION,
    XDS_PUSH_LDS,
    XDS_PUSH_RDS,
    XDS_PUSH_CDS,
    XDS_PUSH_EDS,
    XDS_PUSH_DEBUG,
    XDS_PUSH_KINDS
} xds_push_kind_t;

/* "wds", "authorization", "lds", "rds", "cds", "eds", "debug". */
const char *xds_push_kind_name(xds_push_kind_t k);

/* Outcomes of CreateCertificate calls, by the gRPC status they end with. */
typedef enum xds_ca_result {
    XDS_CA_RESULT_OK,
    XDS_CA_RESULT_UNAUTHENTICATED, /* no or bad token */
    XDS_CA_RESULT_DENIED,          /* impersonation not allowed */
    XDS_CA_RESULT_INVALID,         /* bad CSR, TTL, identity or message */
    XDS_CA_RESULT_UNAVAILABLE,     /* token could not be verified now */
    XDS_CA_RESULT_INTERNAL,        /* the CA failed (expired, out of memory) */
    XDS_CA_RESULTS
} xds_ca_result_t;

/* "ok", "unauthenticated", "denied", "invalid", "unavailable", "internal". */
const char *xds_ca_result_name(xds_ca_result_t r);

typedef struct xds_stats {
    uint64_t streams_open;
    uint64_t listeners_stalled; /* ports grpc no longer accepts on (listen_check.c) */
    uint64_t streams_total;
    uint64_t pushes; /* responses sent */
    uint64_t pushes_by_kind[XDS_PUSH_KINDS];
    uint64_t resources_sent;
    uint64_t bytes_sent;
    uint64_t acks;
    uint64_t nacks;
    uint64_t bad_requests; /* rejected with an error status */
    uint64_t push_latency_us_sum;
    uint64_t push_latency_count;
    /* pushes whose publish-to-send latency was at most XDS_LATENCY_BOUNDS_MS[i]
     * (not cumulative; the last bucket is everything slower) */
    uint64_t push_latency_buckets[XDS_LATENCY_BUCKETS];
    /* open streams by the kind of proxy, as known from its first request */
    uint64_t proxies[XDS_PROXY_KINDS];
    uint64_t tls_loads;            /* certificate pairs loaded (1 + reloads) */
    uint64_t auth_ok;              /* streams authenticated */
    uint64_t auth_unauthenticated; /* no token, bad token, unknown cluster */
    uint64_t auth_denied;          /* identity not allowed or cluster mismatch */
    uint64_t auth_unavailable;     /* the verifier failed */
    uint64_t limit_names;          /* streams closed for subscribing to too many names */
    uint64_t unknown_cluster;      /* streams of a cluster meshfed does not know */
    /* CreateCertificate calls by outcome (meshfed_ca_requests_total) */
    uint64_t ca_requests[XDS_CA_RESULTS];
} xds_stats_t;

void xds_server_stats(xds_server_t *s, xds_stats_t *out);

/* One connected proxy, as /debug/syncz shows it. Strings borrowed for the call. */
typedef struct xds_proxy_info {
    const char *node_id;
    const char *cluster;
    const char *network;
    const char *type_url;
    const char *peer;
    uint64_t version_sent; /* snapshot version last sent */
    uint64_t version_acked;
    uint64_t nacks;
    const char *last_nack; /* error detail of the last NACK, or NULL */
    size_t resources;      /* resources the proxy currently holds */
    const char *identity;  /* authenticated identity, NULL without auth */
    bool unknown_cluster;  /* its cluster is none meshfed watches */
    size_t names;          /* names it subscribed to */
} xds_proxy_info_t;

typedef void (*xds_proxy_fn)(const xds_proxy_info_t *p, void *arg);
void xds_server_each_proxy(xds_server_t *s, xds_proxy_fn fn, void *arg);

/* Encodes one resource as the serialized istio.workload.Address message.
 * The bytes are cached on the resource and shared; borrowed. */
const uint8_t *xds_encode_address(const model_res_t *r, size_t *len);
/* The xDS version of a resource: 16 hex digits of a 64-bit hash of its
 * encoding, stable across restarts (for initial_resource_versions). */
const char *xds_address_version(const model_res_t *r);

/* ---------- authorization (encode_authz.c) ---------- */

/* a serialised as an istio.security.Authorization, *len bytes; caller
 * frees. NULL when out of memory. */
uint8_t *xds_encode_authz(const model_out_authz_t *a, size_t *len);

/* ---------- certificate authority (ca.c) ---------- */

/* Istio's CA for workload certificates (what CreateCertificate of
 * istio.v1.auth.IstioCertificateService answers), with OpenSSL: an
 * intermediate CA loaded from Istio's cacerts (or a generated self-signed
 * root) signs a CSR's public key for an identity the caller proved; nothing
 * else is taken from the CSR. Immutable once made: xds_ca_sign may run on
 * several threads at once. */
/* Every xds_ca_ function returns 0 or one of these (xds_ca_strerror names
 * it) and fills err with the details. */
typedef enum xds_ca_err {
    XDS_CA_OK = 0,
    XDS_CA_ERR_IO = -1,           /* a cacerts file cannot be read */
    XDS_CA_ERR_CACERTS = -2,      /* cacerts does not parse, or its chain does not verify */
    XDS_CA_ERR_KEY_MISMATCH = -3, /* ca-key.pem is not the key of ca-cert.pem */
    XDS_CA_ERR_NOT_CA = -4,       /* ca-cert.pem may not sign certificates */
    XDS_CA_ERR_CSR = -5,          /* not a PEM CSR, or its signature does not verify */
    XDS_CA_ERR_KEY_TYPE = -6,     /* CSR key neither RSA 2048..8192 nor EC P-256 */
    XDS_CA_ERR_TTL = -7,          /* requested lifetime above the maximum */
    XDS_CA_ERR_IDENTITY = -8,     /* trust domain, namespace or account not a valid name */
    XDS_CA_ERR_EXPIRED = -9,      /* the CA certificate is no longer valid */
    XDS_CA_ERR_INTERNAL = -10,    /* OpenSSL failed or out of memory */
} xds_ca_err_t;

const char *xds_ca_strerror(int code);

/* Lifetimes of issued certificates, seconds; 0 picks the default (both 24h,
 * as istiod's default TTL; istiod's maximum is 90 days). */
typedef struct xds_ca_opts {
    int64_t default_ttl_s; /* when the request asks for 0 or less */
    int64_t max_ttl_s;     /* a request above it is refused, not clamped */
} xds_ca_opts_t;

/* The CA of an Istio cacerts: PEM texts of ca-cert.pem (the signing cert),
 * ca-key.pem, cert-chain.pem (ca-cert then its issuers) and root-cert.pem.
 * Checked: the key is the cert's, the cert is a CA, it verifies up to a
 * root through the chain, and the chain starts with it (unless it is a root
 * itself). opts NULL: defaults. *out owned by the caller (xds_ca_free). */
int xds_ca_new(const char *ca_cert, const char *ca_key, const char *cert_chain,
               const char *root_cert, const xds_ca_opts_t *opts, xds_ca_t **out, char *err,
               size_t errlen);
/* The same from the kubernetes.io/tls layout istiod also reads (as
 * cert-manager writes it): tls.crt signs (its chain: tls.crt then ca.crt),
 * tls.key, ca.crt the root. */
int xds_ca_new_tls(const char *tls_crt, const char *tls_key, const char *ca_crt,
                   const xds_ca_opts_t *opts, xds_ca_t **out, char *err, size_t errlen);
/* Same, the files read from directory dir (a mounted cacerts Secret): the
 * tls layout when tls.crt exists (as istiod), else Istio's four files. */
int xds_ca_load_dir(const char *dir, const xds_ca_opts_t *opts, xds_ca_t **out, char *err,
                    size_t errlen);
/* A new self-signed root (RSA 2048, organisation org, valid ttl_s seconds)
 * that signs directly, as istiod does without cacerts. */
int xds_ca_new_self_signed(const char *org, int64_t ttl_s, const xds_ca_opts_t *opts,
                           xds_ca_t **out, char *err, size_t errlen);
/* The same root as PEM texts, to keep (istiod's istio-ca-secret holds them
 * as ca-cert.pem and ca-key.pem): *cert and *key, caller frees; reloaded by
 * xds_ca_new(cert, key, "", cert, ...). */
int xds_ca_self_signed_pem(const char *org, int64_t ttl_s, char **cert, char **key, char *err,
                           size_t errlen);
void xds_ca_free(xds_ca_t *ca);

/* A serving certificate for the DNS names dns[0..ndns) (lower case, as
 * Kubernetes Service names), a new EC P-256 key, valid ttl_s seconds (never
 * past the CA's expiry, in *not_after), serverAuth and clientAuth: *chain
 * the leaf then cert-chain.pem, *key its key, PEM, caller frees. */
int xds_ca_issue_server(const xds_ca_t *ca, const char *const *dns, size_t ndns, int64_t ttl_s,
                        char **chain, char **key, int64_t *not_after, char *err, size_t errlen);

/* root-cert.pem's text (what istio-ca-root-cert publishes); borrowed for
 * the life of ca. */
const char *xds_ca_root_pem(const xds_ca_t *ca);

/* The workload identity spiffe://<trust_domain>/ns/<ns>/sa/<sa>, from the
 * caller's authentication, never from the CSR. */
typedef struct xds_ca_identity {
    const char *trust_domain;
    const char *ns;
    const char *sa;
} xds_ca_identity_t;

/* A signed chain as CreateCertificate returns it: pem[0] the leaf, then
 * cert-chain.pem one certificate per element, root-cert.pem last. */
typedef struct xds_ca_chain {
    char **pem;
    size_t n;
} xds_ca_chain_t;

/* Signs the PEM CSR csr (len bytes, need not end in NUL) for id, valid
 * ttl_s seconds (0 or less: the default; never past the CA's own expiry).
 * On success *out holds the chain (caller frees with xds_ca_chain_free);
 * on failure *out is empty. */
int xds_ca_sign(const xds_ca_t *ca, const char *csr, size_t len, const xds_ca_identity_t *id,
                int64_t ttl_s, xds_ca_chain_t *out, char *err, size_t errlen);
void xds_ca_chain_free(xds_ca_chain_t *c);

#endif
