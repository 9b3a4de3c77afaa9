/*
 * envoy_gw.c - what an east-west gateway (istio-proxy) gets besides its
 * per-service clusters and endpoints: the three listeners and four fixed
 * clusters istiod builds for it (docs/gateway.md has the shapes and the
 * upstream files they follow).
 *
 * The messages nest deeply and carry packed Any configs inside packed Any
 * configs, so they are built in a gw_mem_t: every struct, string and packed
 * buffer of one call is allocated there and freed together. An allocation
 * failure marks the gw_mem_t and yields NULL; constructors take NULL children
 * and return NULL, so one check at the end decides.
 */
#include "envoy.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/common/set_filter_state/v3/value.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.pb-c.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb-c.h"
#include "envoy/extensions/matching/common_inputs/network/v3/network_inputs.pb-c.h"
#include "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.pb-c.h"
#include "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.pb-c.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "xds/type/matcher/v3/ip.pb-c.h"
#include "xds/type/matcher/v3/matcher.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TU "type.googleapis.com/"
#define AUTHORITY_KEY "io.istio.connect_authority"
#define BLACKHOLE "BlackHoleCluster"
#define BLACKHOLE_CHAIN "virtualInbound-blackhole"
#define CONNECT_TIMEOUT_S 10
#define SDS_CLUSTER "sds-grpc" /* istio-agent's SDS, a bootstrap cluster */

typedef Envoy__Config__Listener__V3__Listener listener_t;
typedef Envoy__Config__Listener__V3__FilterChain chain_t;
typedef Envoy__Config__Listener__V3__Filter filter_t;
typedef Envoy__Config__Cluster__V3__Cluster cluster_t;
typedef Envoy__Config__Core__V3__TransportSocket tsock_t;
typedef Envoy__Config__Core__V3__ConfigSource csrc_t;
typedef Envoy__Extensions__TransportSockets__Tls__V3__SdsSecretConfig sds_t;
typedef Envoy__Extensions__Filters__Common__SetFilterState__V3__FilterStateValue fsv_t;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager hcm_t;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter hfilter_t;
typedef Xds__Type__Matcher__V3__Matcher matcher_t;
typedef Xds__Type__Matcher__V3__Matcher__OnMatch onmatch_t;
typedef Xds__Type__Matcher__V3__Matcher__MatcherTree__MatchMap__MapEntry mapent_t;
typedef Xds__Type__Matcher__V3__IPMatcher__IPRangeMatcher iprange_t;
typedef Xds__Core__V3__TypedExtensionConfig tec_t;
typedef Google__Protobuf__Any any_t;

/* ---------- the per-call allocator ---------- */

typedef struct gw_mem {
    void **p;
    size_t n, cap;
    bool oom;
} gw_mem_t;

static void *gw_alloc(gw_mem_t *m, size_t size)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        void **np = realloc(m->p, cap * sizeof(*np));
        if (!np) {
            m->oom = true;
            return NULL;
        }
        m->p = np;
        m->cap = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        m->oom = true;
        return NULL;
    }
    return m->p[m->n++] = p;
}

static void gw_mem_free(gw_mem_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->p[i]);
    free(m->p);
    memset(m, 0, sizeof(*m));
}

/* A message of type d, initialized (its defaults set). */
static void *gw_msg(gw_mem_t *m, const ProtobufCMessageDescriptor *d)
{
    void *p = gw_alloc(m, d->sizeof_message);
    if (p)
        protobuf_c_message_init(d, p);
    return p;
}

#define NEW(m, T, d) ((T *)gw_msg((m), &(d)))

static char *gw_printf(gw_mem_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *gw_printf(gw_mem_t *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? gw_alloc(m, (size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* An array of n pointers. */
static void **gw_ptrs(gw_mem_t *m, size_t n)
{
    return gw_alloc(m, (n ? n : 1) * sizeof(void *));
}

/* msg packed into an Any of type_url (TU + the message's full name). */
static any_t *gw_any(gw_mem_t *m, const void *msg)
{
    const ProtobufCMessage *pm = msg;
    any_t *a = NEW(m, any_t, google__protobuf__any__descriptor);
    if (!a || !pm)
        return NULL;
    a->type_url = gw_printf(m, TU "%s", pm->descriptor->name);
    a->value.len = protobuf_c_message_get_packed_size(pm);
    a->value.data = gw_alloc(m, a->value.len);
    if (!a->type_url || !a->value.data)
        return NULL;
    protobuf_c_message_pack(pm, a->value.data);
    return a;
}

static Google__Protobuf__Duration *gw_secs(gw_mem_t *m, int64_t s)
{
    Google__Protobuf__Duration *d =
        NEW(m, Google__Protobuf__Duration, google__protobuf__duration__descriptor);
    if (d)
        d->seconds = s;
    return d;
}

static Google__Protobuf__BoolValue *gw_bool(gw_mem_t *m, bool v)
{
    Google__Protobuf__BoolValue *b =
        NEW(m, Google__Protobuf__BoolValue, google__protobuf__bool_value__descriptor);
    if (b)
        b->value = v;
    return b;
}

static Google__Protobuf__UInt32Value *gw_u32(gw_mem_t *m, uint32_t v)
{
    Google__Protobuf__UInt32Value *u =
        NEW(m, Google__Protobuf__UInt32Value, google__protobuf__uint32_value__descriptor);
    if (u)
        u->value = v;
    return u;
}

/* The packed message as one more owned item of set (when names wants it). */
static int gw_emit(xds_envoy_set_t *set, const base_map_t *names, gw_mem_t *m, const char *name,
                   const void *msg)
{
    if (names && !base_map_get(names, name))
        return 0;
    if (m->oom || !msg)
        return -1;
    xds_envoy_item_t it;
    if (xds_envoy_item_set(&it, name, msg) < 0)
        return -1;
    return xds_envoy_set_add_owned(set, &it);
}

/* ---------- building blocks ---------- */

static filter_t *net_filter(gw_mem_t *m, const char *name, any_t *cfg)
{
    filter_t *f = NEW(m, filter_t, envoy__config__listener__v3__filter__descriptor);
    if (!f || !cfg)
        return NULL;
    f->name = (char *)name;
    f->config_type_case = ENVOY__CONFIG__LISTENER__V3__FILTER__CONFIG_TYPE_TYPED_CONFIG;
    f->typed_config = cfg;
    return f;
}

/* tcp_proxy to cluster, its stats under the same name (istiod's choice). */
static filter_t *tcp_proxy(gw_mem_t *m, const char *cluster)
{
    Envoy__Extensions__Filters__Network__TcpProxy__V3__TcpProxy *tp =
        NEW(m, Envoy__Extensions__Filters__Network__TcpProxy__V3__TcpProxy,
            envoy__extensions__filters__network__tcp_proxy__v3__tcp_proxy__descriptor);
    if (!tp)
        return NULL;
    tp->stat_prefix = (char *)cluster;
    tp->cluster_specifier_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__TCP_PROXY__V3__TCP_PROXY__CLUSTER_SPECIFIER_CLUSTER;
    tp->cluster = (char *)cluster;
    return net_filter(m, "envoy.filters.network.tcp_proxy", gw_any(m, tp));
}

/* One filter chain holding filter f. */
static chain_t *chain_of(gw_mem_t *m, const char *name, filter_t *f)
{
    chain_t *c = NEW(m, chain_t, envoy__config__listener__v3__filter_chain__descriptor);
    filter_t **fs = (filter_t **)gw_ptrs(m, 1);
    if (!c || !fs || !f)
        return NULL;
    fs[0] = f;
    c->name = (char *)name;
    c->n_filters = 1;
    c->filters = fs;
    return c;
}

/* An internal listener whose destination the original_dst listener filter
 * restores (from filter state, or the metadata passed through). */
static listener_t *internal_listener(gw_mem_t *m, const char *name)
{
    listener_t *l = NEW(m, listener_t, envoy__config__listener__v3__listener__descriptor);
    Envoy__Config__Listener__V3__ListenerFilter *lf =
        NEW(m, Envoy__Config__Listener__V3__ListenerFilter,
            envoy__config__listener__v3__listener_filter__descriptor);
    Envoy__Config__Listener__V3__ListenerFilter **lfp = (void *)gw_ptrs(m, 1);
    any_t *od = gw_any(
        m, NEW(m, Envoy__Extensions__Filters__Listener__OriginalDst__V3__OriginalDst,
               envoy__extensions__filters__listener__original_dst__v3__original_dst__descriptor));
    Envoy__Config__Listener__V3__Listener__InternalListenerConfig *il =
        NEW(m, Envoy__Config__Listener__V3__Listener__InternalListenerConfig,
            envoy__config__listener__v3__listener__internal_listener_config__descriptor);
    if (!l || !lf || !lfp || !od || !il)
        return NULL;
    lf->name = (char *)XDS_ORIG_DST;
    lf->config_type_case = ENVOY__CONFIG__LISTENER__V3__LISTENER_FILTER__CONFIG_TYPE_TYPED_CONFIG;
    lf->typed_config = od;
    lfp[0] = lf;
    l->name = (char *)name;
    l->listener_specifier_case =
        ENVOY__CONFIG__LISTENER__V3__LISTENER__LISTENER_SPECIFIER_INTERNAL_LISTENER;
    l->internal_listener = il;
    l->n_listener_filters = 1;
    l->listener_filters = lfp;
    return l;
}

/* internal_upstream over raw_buffer; with passthrough, the host's
 * original_dst metadata (the pod address) and the istio metadata travel to
 * the internal listener, as istiod's FullMetadataPassthrough socket does. */
static tsock_t *internal_upstream(gw_mem_t *m, const char *name, bool passthrough)
{
    typedef Envoy__Extensions__TransportSockets__InternalUpstream__V3__InternalUpstreamTransport
        iu_t;
    typedef Envoy__Extensions__TransportSockets__InternalUpstream__V3__InternalUpstreamTransport__MetadataValueSource
        mvs_t;
    iu_t *iu = NEW(
        m, iu_t,
        envoy__extensions__transport_sockets__internal_upstream__v3__internal_upstream_transport__descriptor);
    tsock_t *raw = NEW(m, tsock_t, envoy__config__core__v3__transport_socket__descriptor);
    tsock_t *t = NEW(m, tsock_t, envoy__config__core__v3__transport_socket__descriptor);
    mvs_t **src = (mvs_t **)gw_ptrs(m, 3);
    if (!iu || !raw || !t || !src)
        return NULL;
    static const struct {
        const char *name;
        bool host;
    } pass[3] = {{XDS_ORIG_DST, true}, {"istio", false}, {"istio", true}};
    for (size_t i = 0; passthrough && i < 3; i++) {
        src[i] = NEW(
            m, mvs_t,
            envoy__extensions__transport_sockets__internal_upstream__v3__internal_upstream_transport__metadata_value_source__descriptor);
        Envoy__Type__Metadata__V3__MetadataKind *k =
            NEW(m, Envoy__Type__Metadata__V3__MetadataKind,
                envoy__type__metadata__v3__metadata_kind__descriptor);
        if (!src[i] || !k)
            return NULL;
        if (pass[i].host) {
            k->kind_case = ENVOY__TYPE__METADATA__V3__METADATA_KIND__KIND_HOST;
            k->host = NEW(m, Envoy__Type__Metadata__V3__MetadataKind__Host,
                          envoy__type__metadata__v3__metadata_kind__host__descriptor);
        } else {
            k->kind_case = ENVOY__TYPE__METADATA__V3__METADATA_KIND__KIND_CLUSTER;
            k->cluster = NEW(m, Envoy__Type__Metadata__V3__MetadataKind__Cluster,
                             envoy__type__metadata__v3__metadata_kind__cluster__descriptor);
        }
        src[i]->kind = k;
        src[i]->name = (char *)pass[i].name;
    }
    iu->n_passthrough_metadata = passthrough ? 3 : 0;
    iu->passthrough_metadata = src;
    raw->name = (char *)"raw_buffer";
    raw->config_type_case = ENVOY__CONFIG__CORE__V3__TRANSPORT_SOCKET__CONFIG_TYPE_TYPED_CONFIG;
    raw->typed_config = gw_any(
        m, NEW(m, Envoy__Extensions__TransportSockets__RawBuffer__V3__RawBuffer,
               envoy__extensions__transport_sockets__raw_buffer__v3__raw_buffer__descriptor));
    iu->transport_socket = raw;
    t->name = (char *)name;
    t->config_type_case = ENVOY__CONFIG__CORE__V3__TRANSPORT_SOCKET__CONFIG_TYPE_TYPED_CONFIG;
    t->typed_config = gw_any(m, iu);
    return raw->typed_config ? t : NULL;
}

/* ---------- connect_terminate ---------- */

/* istio-agent's SDS: a gRPC config source of its own, the cluster
 * "sds-grpc" from the bootstrap (not ADS: the agent serves the secrets). */
static sds_t *sds_secret(gw_mem_t *m, const char *name)
{
    sds_t *s =
        NEW(m, sds_t, envoy__extensions__transport_sockets__tls__v3__sds_secret_config__descriptor);
    csrc_t *cs = NEW(m, csrc_t, envoy__config__core__v3__config_source__descriptor);
    Envoy__Config__Core__V3__ApiConfigSource *api =
        NEW(m, Envoy__Config__Core__V3__ApiConfigSource,
            envoy__config__core__v3__api_config_source__descriptor);
    Envoy__Config__Core__V3__GrpcService *gs = NEW(
        m, Envoy__Config__Core__V3__GrpcService, envoy__config__core__v3__grpc_service__descriptor);
    Envoy__Config__Core__V3__GrpcService__EnvoyGrpc *eg =
        NEW(m, Envoy__Config__Core__V3__GrpcService__EnvoyGrpc,
            envoy__config__core__v3__grpc_service__envoy_grpc__descriptor);
    Envoy__Config__Core__V3__GrpcService **gsp = (void *)gw_ptrs(m, 1);
    if (!s || !cs || !api || !gs || !eg || !gsp)
        return NULL;
    eg->cluster_name = (char *)SDS_CLUSTER;
    gs->target_specifier_case = ENVOY__CONFIG__CORE__V3__GRPC_SERVICE__TARGET_SPECIFIER_ENVOY_GRPC;
    gs->envoy_grpc = eg;
    gsp[0] = gs;
    api->api_type = ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__GRPC;
    api->set_node_on_first_message_only = true;
    api->transport_api_version = ENVOY__CONFIG__CORE__V3__API_VERSION__V3;
    api->n_grpc_services = 1;
    api->grpc_services = gsp;
    cs->config_source_specifier_case =
        ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_API_CONFIG_SOURCE;
    cs->api_config_source = api;
    cs->initial_fetch_timeout = gw_secs(m, 0);
    cs->resource_api_version = ENVOY__CONFIG__CORE__V3__API_VERSION__V3;
    s->name = (char *)name;
    s->sds_config = cs;
    return s;
}

/* Peers must present a SPIFFE id of the mesh's trust domain. */
static Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext *
san_validation(gw_mem_t *m, const char *td)
{
    typedef Envoy__Extensions__TransportSockets__Tls__V3__SubjectAltNameMatcher san_t;
    Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext *v = NEW(
        m, Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext,
        envoy__extensions__transport_sockets__tls__v3__certificate_validation_context__descriptor);
    san_t *san =
        NEW(m, san_t,
            envoy__extensions__transport_sockets__tls__v3__subject_alt_name_matcher__descriptor);
    Envoy__Type__Matcher__V3__StringMatcher *sm =
        NEW(m, Envoy__Type__Matcher__V3__StringMatcher,
            envoy__type__matcher__v3__string_matcher__descriptor);
    san_t **sp = (san_t **)gw_ptrs(m, 1);
    if (!v || !san || !sm || !sp)
        return NULL;
    sm->match_pattern_case = ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX;
    sm->prefix = gw_printf(m, "spiffe://%s/", td);
    san->san_type =
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SUBJECT_ALT_NAME_MATCHER__SAN_TYPE__URI;
    san->matcher = sm;
    sp[0] = san;
    v->n_match_typed_subject_alt_names = 1;
    v->match_typed_subject_alt_names = sp;
    return v;
}

/* mTLS with istio-agent's certificate, HTTP/2 only, TLS 1.3 only. */
static tsock_t *hbone_tls(gw_mem_t *m, const char *td)
{
    typedef Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext ctx_t;
    Envoy__Extensions__TransportSockets__Tls__V3__DownstreamTlsContext *d =
        NEW(m, Envoy__Extensions__TransportSockets__Tls__V3__DownstreamTlsContext,
            envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__descriptor);
    ctx_t *c = NEW(m, ctx_t,
                   envoy__extensions__transport_sockets__tls__v3__common_tls_context__descriptor);
    Envoy__Extensions__TransportSockets__Tls__V3__TlsParameters *p =
        NEW(m, Envoy__Extensions__TransportSockets__Tls__V3__TlsParameters,
            envoy__extensions__transport_sockets__tls__v3__tls_parameters__descriptor);
    Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext__CombinedCertificateValidationContext
        *cv;
    cv = NEW(
        m,
        Envoy__Extensions__TransportSockets__Tls__V3__CommonTlsContext__CombinedCertificateValidationContext,
        envoy__extensions__transport_sockets__tls__v3__common_tls_context__combined_certificate_validation_context__descriptor);
    sds_t **certs = (sds_t **)gw_ptrs(m, 1);
    char **alpn = (char **)gw_ptrs(m, 1);
    tsock_t *t = NEW(m, tsock_t, envoy__config__core__v3__transport_socket__descriptor);
    if (!d || !c || !p || !cv || !certs || !alpn || !t)
        return NULL;
    p->tls_minimum_protocol_version =
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__TLS_PARAMETERS__TLS_PROTOCOL__TLSv1_3;
    p->tls_maximum_protocol_version =
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__TLS_PARAMETERS__TLS_PROTOCOL__TLSv1_3;
    certs[0] = sds_secret(m, "default");
    cv->default_validation_context = san_validation(m, td);
    cv->validation_context_sds_secret_config = sds_secret(m, "ROOTCA");
    alpn[0] = (char *)"h2";
    c->tls_params = p;
    c->n_tls_certificate_sds_secret_configs = 1;
    c->tls_certificate_sds_secret_configs = certs;
    c->validation_context_type_case =
        ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__COMMON_TLS_CONTEXT__VALIDATION_CONTEXT_TYPE_COMBINED_VALIDATION_CONTEXT;
    c->combined_validation_context = cv;
    c->n_alpn_protocols = 1;
    c->alpn_protocols = alpn;
    d->common_tls_context = c;
    d->require_client_certificate = gw_bool(m, true);
    t->name = (char *)"tls";
    t->config_type_case = ENVOY__CONFIG__CORE__V3__TRANSPORT_SOCKET__CONFIG_TYPE_TYPED_CONFIG;
    t->typed_config = gw_any(m, d);
    return t->typed_config ? t : NULL;
}

static hfilter_t *http_filter(gw_mem_t *m, const char *name, any_t *cfg)
{
    hfilter_t *f = NEW(
        m, hfilter_t,
        envoy__extensions__filters__network__http_connection_manager__v3__http_filter__descriptor);
    if (!f || !cfg)
        return NULL;
    f->name = (char *)name;
    f->config_type_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__CONFIG_TYPE_TYPED_CONFIG;
    f->typed_config = cfg;
    return f;
}

/* One filter state value set from a format string, shared once with the
 * internal connection to main_internal (whose matcher and original_dst
 * filter read it). */
static fsv_t *state_value(gw_mem_t *m, const char *key, const char *factory, const char *format)
{
    fsv_t *v = NEW(
        m, fsv_t,
        envoy__extensions__filters__common__set_filter_state__v3__filter_state_value__descriptor);
    Envoy__Config__Core__V3__SubstitutionFormatString *f =
        NEW(m, Envoy__Config__Core__V3__SubstitutionFormatString,
            envoy__config__core__v3__substitution_format_string__descriptor);
    Envoy__Config__Core__V3__DataSource *ds = NEW(m, Envoy__Config__Core__V3__DataSource,
                                                  envoy__config__core__v3__data_source__descriptor);
    if (!v || !f || !ds)
        return NULL;
    ds->specifier_case = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING;
    ds->inline_string = (char *)format;
    f->format_case = ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT_SOURCE;
    f->text_format_source = ds;
    v->key_case =
        ENVOY__EXTENSIONS__FILTERS__COMMON__SET_FILTER_STATE__V3__FILTER_STATE_VALUE__KEY_OBJECT_KEY;
    v->object_key = (char *)key;
    v->factory_key = (char *)(factory ? factory : "");
    v->value_case =
        ENVOY__EXTENSIONS__FILTERS__COMMON__SET_FILTER_STATE__V3__FILTER_STATE_VALUE__VALUE_FORMAT_STRING;
    v->format_string = f;
    v->shared_with_upstream =
        ENVOY__EXTENSIONS__FILTERS__COMMON__SET_FILTER_STATE__V3__FILTER_STATE_VALUE__SHARED_WITH_UPSTREAM__ONCE;
    return v;
}

/* "connect_authority": the CONNECT :authority ("H:P" of the service) picks
 * main_internal's chain and, as original_dst's local_ip, its destination.
 * "envoy.string" is what istiod 1.29.0 gives every proxy (newer istiods
 * give >= 1.29.2 proxies istio.hashable_string, which older ones reject). */
static hfilter_t *connect_authority(gw_mem_t *m)
{
    static const char *const kv[5][3] = {
        {XDS_ORIG_DST ".local_ip", NULL, "%REQ(:AUTHORITY)%"},
        {AUTHORITY_KEY, "envoy.string", "%REQ(:AUTHORITY)%"},
        {XDS_ORIG_DST ".remote_ip", NULL, "%DOWNSTREAM_REMOTE_ADDRESS%"},
        {"io.istio.peer_principal", NULL, "%DOWNSTREAM_PEER_URI_SAN%"},
        {"io.istio.local_principal", NULL, "%DOWNSTREAM_LOCAL_URI_SAN%"},
    };
    Envoy__Extensions__Filters__Http__SetFilterState__V3__Config *c =
        NEW(m, Envoy__Extensions__Filters__Http__SetFilterState__V3__Config,
            envoy__extensions__filters__http__set_filter_state__v3__config__descriptor);
    fsv_t **vs = (fsv_t **)gw_ptrs(m, 5);
    if (!c || !vs)
        return NULL;
    for (size_t i = 0; i < 5; i++)
        vs[i] = state_value(m, kv[i][0], kv[i][1], kv[i][2]);
    c->n_on_request_headers = 5;
    c->on_request_headers = vs;
    return http_filter(m, "connect_authority", gw_any(m, c));
}

/* Route config "default": every CONNECT goes to main_internal, terminated
 * (connect_config), its payload a plain stream to the internal listener. */
static Envoy__Config__Route__V3__RouteConfiguration *connect_routes(gw_mem_t *m)
{
    typedef Envoy__Config__Route__V3__RouteAction__UpgradeConfig rup_t;
    Envoy__Config__Route__V3__RouteConfiguration *rc =
        NEW(m, Envoy__Config__Route__V3__RouteConfiguration,
            envoy__config__route__v3__route_configuration__descriptor);
    Envoy__Config__Route__V3__VirtualHost *vh =
        NEW(m, Envoy__Config__Route__V3__VirtualHost,
            envoy__config__route__v3__virtual_host__descriptor);
    Envoy__Config__Route__V3__Route *r =
        NEW(m, Envoy__Config__Route__V3__Route, envoy__config__route__v3__route__descriptor);
    Envoy__Config__Route__V3__RouteMatch *rm = NEW(
        m, Envoy__Config__Route__V3__RouteMatch, envoy__config__route__v3__route_match__descriptor);
    Envoy__Config__Route__V3__RouteAction *ra =
        NEW(m, Envoy__Config__Route__V3__RouteAction,
            envoy__config__route__v3__route_action__descriptor);
    rup_t *up = NEW(m, rup_t, envoy__config__route__v3__route_action__upgrade_config__descriptor);
    void **vhp = gw_ptrs(m, 1), **rp = gw_ptrs(m, 1), **upp = gw_ptrs(m, 1);
    char **dom = (char **)gw_ptrs(m, 1);
    if (!rc || !vh || !r || !rm || !ra || !up || !vhp || !rp || !upp || !dom)
        return NULL;
    up->upgrade_type = (char *)"CONNECT";
    up->connect_config =
        NEW(m, Envoy__Config__Route__V3__RouteAction__UpgradeConfig__ConnectConfig,
            envoy__config__route__v3__route_action__upgrade_config__connect_config__descriptor);
    upp[0] = up;
    ra->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER;
    ra->cluster = (char *)XDS_GW_MAIN_INTERNAL;
    ra->n_upgrade_configs = 1;
    ra->upgrade_configs = (rup_t **)upp;
    rm->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_CONNECT_MATCHER;
    rm->connect_matcher = NEW(m, Envoy__Config__Route__V3__RouteMatch__ConnectMatcher,
                              envoy__config__route__v3__route_match__connect_matcher__descriptor);
    r->match = rm;
    r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE;
    r->route = ra;
    rp[0] = r;
    dom[0] = (char *)"*";
    vh->name = (char *)"default";
    vh->n_domains = 1;
    vh->domains = dom;
    vh->n_routes = 1;
    vh->routes = (Envoy__Config__Route__V3__Route **)rp;
    vhp[0] = vh;
    rc->name = (char *)"default";
    rc->n_virtual_hosts = 1;
    rc->virtual_hosts = (Envoy__Config__Route__V3__VirtualHost **)vhp;
    return rc;
}

static Envoy__Config__Core__V3__Http2ProtocolOptions *hbone_h2(gw_mem_t *m)
{
    Envoy__Config__Core__V3__Http2ProtocolOptions *h2 =
        NEW(m, Envoy__Config__Core__V3__Http2ProtocolOptions,
            envoy__config__core__v3__http2_protocol_options__descriptor);
    Envoy__Config__Core__V3__KeepaliveSettings *ka =
        NEW(m, Envoy__Config__Core__V3__KeepaliveSettings,
            envoy__config__core__v3__keepalive_settings__descriptor);
    if (!h2 || !ka)
        return NULL;
    ka->interval = gw_secs(m, 10);
    ka->timeout = gw_secs(m, 20);
    h2->allow_connect = true;
    h2->max_concurrent_streams = gw_u32(m, 100);
    h2->connection_keepalive = ka;
    return h2;
}

static any_t *connect_hcm(gw_mem_t *m)
{
    typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager__UpgradeConfig
        up_t;
    typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager__SetCurrentClientCertDetails
        cert_t;
    hcm_t *h = NEW(
        m, hcm_t,
        envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor);
    up_t *up = NEW(
        m, up_t,
        envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__upgrade_config__descriptor);
    cert_t *cd = NEW(
        m, cert_t,
        envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__set_current_client_cert_details__descriptor);
    hfilter_t **fs = (hfilter_t **)gw_ptrs(m, 2);
    up_t **upp = (up_t **)gw_ptrs(m, 1);
    if (!h || !up || !cd || !fs || !upp)
        return NULL;
    fs[0] = connect_authority(m);
    fs[1] = http_filter(
        m, "envoy.filters.http.router",
        gw_any(m, NEW(m, Envoy__Extensions__Filters__Http__Router__V3__Router,
                      envoy__extensions__filters__http__router__v3__router__descriptor)));
    up->upgrade_type = (char *)"CONNECT";
    upp[0] = up;
    cd->subject = gw_bool(m, true);
    cd->dns = true;
    cd->uri = true;
    h->stat_prefix = (char *)XDS_GW_CONNECT_TERMINATE;
    h->route_specifier_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG;
    h->route_config = connect_routes(m);
    h->n_http_filters = 2;
    h->http_filters = fs;
    h->n_upgrade_configs = 1;
    h->upgrade_configs = upp;
    h->http2_protocol_options = hbone_h2(m);
    h->stream_idle_timeout = gw_secs(m, 0);
    h->use_remote_address = gw_bool(m, false);
    h->set_current_client_cert_details = cd;
    return gw_any(m, h);
}

/* The real socket: HBONE (mTLS, HTTP/2 CONNECT) on 0.0.0.0:15008. */
static listener_t *connect_terminate(gw_mem_t *m, const char *td)
{
    listener_t *l = NEW(m, listener_t, envoy__config__listener__v3__listener__descriptor);
    Envoy__Config__Core__V3__Address *a =
        NEW(m, Envoy__Config__Core__V3__Address, envoy__config__core__v3__address__descriptor);
    Envoy__Config__Core__V3__SocketAddress *sa =
        NEW(m, Envoy__Config__Core__V3__SocketAddress,
            envoy__config__core__v3__socket_address__descriptor);
    Envoy__Config__Listener__V3__Listener__ConnectionBalanceConfig *cb =
        NEW(m, Envoy__Config__Listener__V3__Listener__ConnectionBalanceConfig,
            envoy__config__listener__v3__listener__connection_balance_config__descriptor);
    chain_t *c =
        chain_of(m, "default",
                 net_filter(m, "envoy.filters.network.http_connection_manager", connect_hcm(m)));
    chain_t **cp = (chain_t **)gw_ptrs(m, 1);
    if (!l || !a || !sa || !cb || !c || !cp)
        return NULL;
    sa->address = (char *)"0.0.0.0";
    sa->port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    sa->port_value = XDS_GW_PORT;
    a->address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    a->socket_address = sa;
    cb->balance_type_case =
        ENVOY__CONFIG__LISTENER__V3__LISTENER__CONNECTION_BALANCE_CONFIG__BALANCE_TYPE_EXACT_BALANCE;
    cb->exact_balance = NEW(
        m, Envoy__Config__Listener__V3__Listener__ConnectionBalanceConfig__ExactBalance,
        envoy__config__listener__v3__listener__connection_balance_config__exact_balance__descriptor);
    c->transport_socket = hbone_tls(m, td);
    cp[0] = c;
    l->name = (char *)XDS_GW_CONNECT_TERMINATE;
    l->address = a;
    l->connection_balance_config = cb;
    l->n_filter_chains = 1;
    l->filter_chains = cp;
    return c->transport_socket ? l : NULL;
}

/* ---------- main_internal ---------- */

/* A global service as the gateway serves it: its endpoints variant and its
 * VIPs on the gateway's network. */
typedef struct gw_svc {
    const model_out_endpoints_t *o;
    const model_net_addr_t *vips;
    size_t nvips;
} gw_svc_t;

typedef struct gw_svcs {
    gw_svc_t *v;
    size_t n, cap;
    const model_snapshot_t *snap;
    const model_view_t *view;
    bool oom;
} gw_svcs_t;

static bool net_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void svc_cb(const model_res_t *r, void *arg)
{
    gw_svcs_t *s = arg;
    const model_out_endpoints_t *o = model_res_endpoints(r);
    if (!o || !o->global || !o->nports)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        gw_svc_t *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv) {
            s->oom = true;
            return;
        }
        s->v = nv;
        s->cap = cap;
    }
    gw_svc_t *g = &s->v[s->n++];
    memset(g, 0, sizeof(*g));
    g->o = o;
    const model_res_t *sr = model_snapshot_get(s->snap, s->view, model_res_name(r));
    const model_out_service_t *os =
        sr && model_res_kind(sr) == MODEL_RES_SERVICE ? model_res_service(sr) : NULL;
    /* addrs are sorted by network: the gateway's are one run */
    for (size_t i = 0; os && i < os->naddrs; i++) {
        if (!net_eq(os->addrs[i].network, s->view->network))
            continue;
        if (!g->nvips)
            g->vips = &os->addrs[i];
        g->nvips++;
    }
}

static int svc_cmp(const void *a, const void *b)
{
    return strcmp(((const gw_svc_t *)a)->o->hostname, ((const gw_svc_t *)b)->o->hostname);
}

/* The global services of v in snap, by hostname (a stable encoding). */
static int gw_services(gw_svcs_t *s, const model_snapshot_t *snap, const model_view_t *v)
{
    memset(s, 0, sizeof(*s));
    s->snap = snap;
    s->view = v;
    model_snapshot_each_endpoints(snap, v, svc_cb, s);
    if (s->oom)
        return -1;
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), svc_cmp);
    return 0;
}

static tec_t *tec(gw_mem_t *m, const char *name, any_t *cfg)
{
    tec_t *t = NEW(m, tec_t, xds__core__v3__typed_extension_config__descriptor);
    if (!t || !cfg)
        return NULL;
    t->name = (char *)name;
    t->typed_config = cfg;
    return t;
}

/* The action istiod's matchers use: the chain named, its name again as a
 * StringValue. */
static onmatch_t *to_chain(gw_mem_t *m, const char *chain)
{
    onmatch_t *om = NEW(m, onmatch_t, xds__type__matcher__v3__matcher__on_match__descriptor);
    Google__Protobuf__StringValue *sv =
        NEW(m, Google__Protobuf__StringValue, google__protobuf__string_value__descriptor);
    if (!om || !sv)
        return NULL;
    sv->value = (char *)chain;
    om->on_match_case = XDS__TYPE__MATCHER__V3__MATCHER__ON_MATCH__ON_MATCH_ACTION;
    om->action = tec(m, chain, gw_any(m, sv));
    return om->action ? om : NULL;
}

static onmatch_t *to_matcher(gw_mem_t *m, matcher_t *next)
{
    onmatch_t *om = NEW(m, onmatch_t, xds__type__matcher__v3__matcher__on_match__descriptor);
    if (!om || !next)
        return NULL;
    om->on_match_case = XDS__TYPE__MATCHER__V3__MATCHER__ON_MATCH__ON_MATCH_MATCHER;
    om->matcher = next;
    return om;
}

/* A matcher tree on input, with n exact-map entries (filled by the caller). */
static matcher_t *exact_tree(gw_mem_t *m, tec_t *input, size_t n, mapent_t ***ents)
{
    matcher_t *mt = NEW(m, matcher_t, xds__type__matcher__v3__matcher__descriptor);
    Xds__Type__Matcher__V3__Matcher__MatcherTree *t =
        NEW(m, Xds__Type__Matcher__V3__Matcher__MatcherTree,
            xds__type__matcher__v3__matcher__matcher_tree__descriptor);
    Xds__Type__Matcher__V3__Matcher__MatcherTree__MatchMap *mm =
        NEW(m, Xds__Type__Matcher__V3__Matcher__MatcherTree__MatchMap,
            xds__type__matcher__v3__matcher__matcher_tree__match_map__descriptor);
    mapent_t **e = (mapent_t **)gw_ptrs(m, n);
    if (!mt || !t || !mm || !e || !input)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(e[i] = NEW(
                  m, mapent_t,
                  xds__type__matcher__v3__matcher__matcher_tree__match_map__map_entry__descriptor)))
            return NULL;
    mm->n_map = n;
    mm->map = e;
    t->input = input;
    t->tree_type_case = XDS__TYPE__MATCHER__V3__MATCHER__MATCHER_TREE__TREE_TYPE_EXACT_MATCH_MAP;
    t->exact_match_map = mm;
    mt->matcher_type_case = XDS__TYPE__MATCHER__V3__MATCHER__MATCHER_TYPE_MATCHER_TREE;
    mt->matcher_tree = t;
    *ents = e;
    return mt;
}

static char *chain_name(gw_mem_t *m, const model_out_endpoints_t *o, size_t pi)
{
    return gw_printf(m, "inbound-vip|%u|tcp|%s", o->ports[pi].service_port, o->hostname);
}

/* Destination port -> chain, for one service reached by VIP. */
static matcher_t *port_matcher(gw_mem_t *m, const model_out_endpoints_t *o)
{
    mapent_t **e;
    any_t *in = gw_any(
        m,
        NEW(m, Envoy__Extensions__Matching__CommonInputs__Network__V3__DestinationPortInput,
            envoy__extensions__matching__common_inputs__network__v3__destination_port_input__descriptor));
    matcher_t *mt = exact_tree(m, tec(m, "port", in), o->nports, &e);
    for (size_t i = 0; mt && i < o->nports; i++) {
        e[i]->key = gw_printf(m, "%u", o->ports[i].service_port);
        e[i]->value = to_chain(m, chain_name(m, o, i));
    }
    return mt;
}

/* One service's VIPs (as /32 or /128) -> its port matcher. */
static iprange_t *range_matcher(gw_mem_t *m, const gw_svc_t *g)
{
    typedef Xds__Core__V3__CidrRange cidr_t;
    iprange_t *rm =
        NEW(m, iprange_t, xds__type__matcher__v3__ipmatcher__iprange_matcher__descriptor);
    cidr_t **rs = (cidr_t **)gw_ptrs(m, g->nvips);
    if (!rm || !rs)
        return NULL;
    for (size_t j = 0; j < g->nvips; j++) {
        char ip[64];
        if (!(rs[j] = NEW(m, cidr_t, xds__core__v3__cidr_range__descriptor)))
            return NULL;
        rs[j]->address_prefix = gw_printf(m, "%s", model_ip_format(&g->vips[j].ip, ip, sizeof(ip)));
        rs[j]->prefix_len = gw_u32(m, g->vips[j].ip.len == 4 ? 32 : 128);
    }
    rm->n_ranges = g->nvips;
    rm->ranges = rs;
    rm->on_match = to_matcher(m, port_matcher(m, g->o));
    return rm;
}

/* Destination IP (a service VIP) -> that service's port matcher. */
static matcher_t *ip_matcher(gw_mem_t *m, const gw_svcs_t *s, size_t nwith)
{
    Xds__Type__Matcher__V3__IPMatcher *ipm =
        NEW(m, Xds__Type__Matcher__V3__IPMatcher, xds__type__matcher__v3__ipmatcher__descriptor);
    iprange_t **rms = (iprange_t **)gw_ptrs(m, nwith);
    matcher_t *mt = NEW(m, matcher_t, xds__type__matcher__v3__matcher__descriptor);
    Xds__Type__Matcher__V3__Matcher__MatcherTree *t =
        NEW(m, Xds__Type__Matcher__V3__Matcher__MatcherTree,
            xds__type__matcher__v3__matcher__matcher_tree__descriptor);
    if (!ipm || !rms || !mt || !t)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].nvips)
            rms[k++] = range_matcher(m, &s->v[i]);
    ipm->n_range_matchers = k;
    ipm->range_matchers = rms;
    any_t *in = gw_any(
        m,
        NEW(m, Envoy__Extensions__Matching__CommonInputs__Network__V3__DestinationIPInput,
            envoy__extensions__matching__common_inputs__network__v3__destination_ipinput__descriptor));
    t->input = tec(m, "ip", in);
    t->tree_type_case = XDS__TYPE__MATCHER__V3__MATCHER__MATCHER_TREE__TREE_TYPE_CUSTOM_MATCH;
    t->custom_match = tec(m, "ip", gw_any(m, ipm));
    mt->matcher_type_case = XDS__TYPE__MATCHER__V3__MATCHER__MATCHER_TYPE_MATCHER_TREE;
    mt->matcher_tree = t;
    return mt;
}

/* The CONNECT authority "H:P" -> chain; else the destination VIP and port.
 * Like istiod, only services with a VIP on the gateway's network are
 * reachable (by either). */
static matcher_t *chain_matcher(gw_mem_t *m, const gw_svcs_t *s, size_t nwith, size_t nports)
{
    Envoy__Extensions__Matching__CommonInputs__Network__V3__FilterStateInput *fs = NEW(
        m, Envoy__Extensions__Matching__CommonInputs__Network__V3__FilterStateInput,
        envoy__extensions__matching__common_inputs__network__v3__filter_state_input__descriptor);
    if (!fs)
        return NULL;
    fs->key = (char *)AUTHORITY_KEY;
    mapent_t **e;
    matcher_t *mt = exact_tree(m, tec(m, "authority-filter-state", gw_any(m, fs)), nports, &e);
    size_t k = 0;
    for (size_t i = 0; mt && i < s->n; i++) {
        const model_out_endpoints_t *o = s->v[i].o;
        for (size_t pi = 0; s->v[i].nvips && pi < o->nports; pi++, k++) {
            e[k]->key = gw_printf(m, "%s:%u", o->hostname, o->ports[pi].service_port);
            e[k]->value = to_chain(m, chain_name(m, o, pi));
        }
    }
    if (mt)
        mt->on_no_match = to_matcher(m, ip_matcher(m, s, nwith));
    return mt && mt->on_no_match ? mt : NULL;
}

/* Double HBONE arrives here: one TCP chain per global service port, to its
 * inbound-vip cluster; the inner HBONE stays encrypted end to end. */
static listener_t *main_internal(gw_mem_t *m, const gw_svcs_t *s)
{
    listener_t *l = internal_listener(m, XDS_GW_MAIN_INTERNAL);
    size_t nchains = 0, nwith = 0, nreach = 0;
    for (size_t i = 0; i < s->n; i++) {
        nchains += s->v[i].o->nports;
        nwith += s->v[i].nvips ? 1 : 0;
        nreach += s->v[i].nvips ? s->v[i].o->nports : 0;
    }
    /* Envoy rejects an empty match map: with no VIP nothing is reachable,
     * and only the blackhole chain is left, like istiod's empty case */
    if (!nwith)
        nchains = 0;
    chain_t **cs = (chain_t **)gw_ptrs(m, nchains ? nchains : 1);
    if (!l || !cs)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->n && nchains; i++)
        for (size_t pi = 0; pi < s->v[i].o->nports; pi++) {
            char *name = chain_name(m, s->v[i].o, pi);
            cs[k++] = chain_of(m, name, tcp_proxy(m, name));
        }
    if (!nchains)
        cs[k++] = chain_of(m, BLACKHOLE_CHAIN, tcp_proxy(m, BLACKHOLE));
    l->traffic_direction = ENVOY__CONFIG__CORE__V3__TRAFFIC_DIRECTION__INBOUND;
    l->n_filter_chains = k;
    l->filter_chains = cs;
    if (nchains)
        l->filter_chain_matcher = chain_matcher(m, s, nwith, nreach);
    return l;
}

/* Where each endpoint's connection goes: the pod address restored from the
 * endpoint's metadata, forwarded unopened (no tunneling_config). */
static listener_t *forward_inner_connect(gw_mem_t *m)
{
    listener_t *l = internal_listener(m, XDS_GW_FORWARD_INNER);
    chain_t **cs = (chain_t **)gw_ptrs(m, 1);
    if (!l || !cs)
        return NULL;
    cs[0] = chain_of(m, NULL, tcp_proxy(m, XDS_GW_FORWARD_INNER));
    l->use_original_dst = gw_bool(m, false);
    l->n_filter_chains = 1;
    l->filter_chains = cs;
    return l;
}

int xds_envoy_gw_listeners(xds_envoy_set_t *set, const model_snapshot_t *snap,
                           const model_view_t *v, const char *td, const base_map_t *names)
{
    gw_mem_t m = {0};
    gw_svcs_t s;
    int rc = gw_services(&s, snap, v);
    if (rc == 0)
        rc = gw_emit(set, names, &m, XDS_GW_CONNECT_TERMINATE,
                     connect_terminate(&m, td && *td ? td : "cluster.local"));
    if (rc == 0)
        rc = gw_emit(set, names, &m, XDS_GW_MAIN_INTERNAL, main_internal(&m, &s));
    if (rc == 0)
        rc = gw_emit(set, names, &m, XDS_GW_FORWARD_INNER, forward_inner_connect(&m));
    free(s.v);
    gw_mem_free(&m);
    return rc;
}

/* Whether a change of endpoints variant changes a listener: its
 * globalness, hostname or service ports (not its endpoints). */
static bool ports_differ(const model_res_t *a, const model_res_t *b)
{
    const model_out_endpoints_t *x = a ? model_res_endpoints(a) : NULL;
    const model_out_endpoints_t *y = b ? model_res_endpoints(b) : NULL;
    bool gx = x && x->global && x->nports, gy = y && y->global && y->nports;
    if (!gx || !gy)
        return gx != gy;
    if (x->nports != y->nports || strcmp(x->hostname, y->hostname) != 0)
        return true;
    for (size_t i = 0; i < x->nports; i++)
        if (x->ports[i].service_port != y->ports[i].service_port)
            return true;
    return false;
}

static void eps_diff_cb(const char *name, const model_res_t *old_r, const model_res_t *new_r,
                        void *arg)
{
    (void)name;
    *(bool *)arg |= ports_differ(old_r, new_r);
}

/* Any Service (its VIPs) changing: cheaper to rebuild than to compare. */
static void svc_diff_cb(const char *name, const model_res_t *old_r, const model_res_t *new_r,
                        void *arg)
{
    (void)name;
    const model_res_t *r = old_r ? old_r : new_r;
    *(bool *)arg |= r && model_res_kind(r) == MODEL_RES_SERVICE;
}

bool xds_envoy_gw_listeners_changed(const model_snapshot_t *from, const model_snapshot_t *to,
                                    const model_view_t *v)
{
    bool changed = false;
    model_snapshot_diff_endpoints(from, to, v, eps_diff_cb, &changed);
    if (!changed)
        model_snapshot_diff(from, to, v, svc_diff_cb, &changed);
    return changed;
}

/* ---------- clusters ---------- */

static cluster_t *cluster_new(gw_mem_t *m, const char *name)
{
    cluster_t *c = NEW(m, cluster_t, envoy__config__cluster__v3__cluster__descriptor);
    if (!c)
        return NULL;
    c->name = (char *)name;
    c->alt_stat_name = gw_printf(m, "%s;", name);
    c->cluster_discovery_type_case =
        ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE;
    c->connect_timeout = gw_secs(m, CONNECT_TIMEOUT_S);
    return c;
}

/* STATIC, one endpoint: the internal listener of that name. */
static cluster_t *internal_cluster(gw_mem_t *m, const char *name, const char *listener)
{
    cluster_t *c = cluster_new(m, name);
    Envoy__Config__Endpoint__V3__ClusterLoadAssignment *la =
        NEW(m, Envoy__Config__Endpoint__V3__ClusterLoadAssignment,
            envoy__config__endpoint__v3__cluster_load_assignment__descriptor);
    Envoy__Config__Endpoint__V3__LocalityLbEndpoints *lle =
        NEW(m, Envoy__Config__Endpoint__V3__LocalityLbEndpoints,
            envoy__config__endpoint__v3__locality_lb_endpoints__descriptor);
    Envoy__Config__Endpoint__V3__LbEndpoint *lbe =
        NEW(m, Envoy__Config__Endpoint__V3__LbEndpoint,
            envoy__config__endpoint__v3__lb_endpoint__descriptor);
    Envoy__Config__Endpoint__V3__Endpoint *ep =
        NEW(m, Envoy__Config__Endpoint__V3__Endpoint,
            envoy__config__endpoint__v3__endpoint__descriptor);
    Envoy__Config__Core__V3__Address *a =
        NEW(m, Envoy__Config__Core__V3__Address, envoy__config__core__v3__address__descriptor);
    Envoy__Config__Core__V3__EnvoyInternalAddress *ia =
        NEW(m, Envoy__Config__Core__V3__EnvoyInternalAddress,
            envoy__config__core__v3__envoy_internal_address__descriptor);
    void **llep = gw_ptrs(m, 1), **lbep = gw_ptrs(m, 1);
    if (!c || !la || !lle || !lbe || !ep || !a || !ia || !llep || !lbep)
        return NULL;
    ia->address_name_specifier_case =
        ENVOY__CONFIG__CORE__V3__ENVOY_INTERNAL_ADDRESS__ADDRESS_NAME_SPECIFIER_SERVER_LISTENER_NAME;
    ia->server_listener_name = (char *)listener;
    a->address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_ENVOY_INTERNAL_ADDRESS;
    a->envoy_internal_address = ia;
    ep->address = a;
    lbe->host_identifier_case = ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT;
    lbe->endpoint = ep;
    lbep[0] = lbe;
    lle->n_lb_endpoints = 1;
    lle->lb_endpoints = (Envoy__Config__Endpoint__V3__LbEndpoint **)lbep;
    llep[0] = lle;
    la->cluster_name = (char *)name;
    la->n_endpoints = 1;
    la->endpoints = (Envoy__Config__Endpoint__V3__LocalityLbEndpoints **)llep;
    c->type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC;
    c->load_assignment = la;
    c->transport_socket = internal_upstream(m, "internal_upstream", false);
    return c->transport_socket ? c : NULL;
}

/* The pod address the original_dst filter restored, port set to 15008
 * (the remote ztunnel's HBONE port). */
static cluster_t *forward_cluster(gw_mem_t *m)
{
    typedef Envoy__Config__Cluster__V3__Cluster__OriginalDstLbConfig odc_t;
    typedef Envoy__Type__Metadata__V3__MetadataKey__PathSegment seg_t;
    cluster_t *c = cluster_new(m, XDS_GW_FORWARD_INNER);
    odc_t *od =
        NEW(m, odc_t, envoy__config__cluster__v3__cluster__original_dst_lb_config__descriptor);
    Envoy__Type__Metadata__V3__MetadataKey *mk =
        NEW(m, Envoy__Type__Metadata__V3__MetadataKey,
            envoy__type__metadata__v3__metadata_key__descriptor);
    seg_t *seg = NEW(m, seg_t, envoy__type__metadata__v3__metadata_key__path_segment__descriptor);
    seg_t **segp = (seg_t **)gw_ptrs(m, 1);
    if (!c || !od || !mk || !seg || !segp)
        return NULL;
    seg->segment_case = ENVOY__TYPE__METADATA__V3__METADATA_KEY__PATH_SEGMENT__SEGMENT_KEY;
    seg->key = (char *)"waypoint";
    segp[0] = seg;
    mk->key = (char *)XDS_ORIG_DST;
    mk->n_path = 1;
    mk->path = segp;
    od->upstream_port_override = gw_u32(m, XDS_GW_PORT);
    od->metadata_key = mk;
    c->type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__ORIGINAL_DST;
    c->lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__CLUSTER_PROVIDED;
    c->cleanup_interval = gw_secs(m, 60);
    c->lb_config_case = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_ORIGINAL_DST_LB_CONFIG;
    c->original_dst_lb_config = od;
    return c;
}

static cluster_t *blackhole_cluster(gw_mem_t *m)
{
    cluster_t *c = cluster_new(m, BLACKHOLE);
    if (c) {
        c->type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC;
        c->alt_stat_name = NULL; /* istiod gives its blackhole none */
    }
    return c;
}

int xds_envoy_gw_static_clusters(xds_envoy_set_t *set, const base_map_t *names)
{
    gw_mem_t m = {0};
    int rc = gw_emit(set, names, &m, XDS_GW_MAIN_INTERNAL,
                     internal_cluster(&m, XDS_GW_MAIN_INTERNAL, XDS_GW_MAIN_INTERNAL));
    if (rc == 0)
        rc = gw_emit(set, names, &m, "encap", internal_cluster(&m, "encap", XDS_GW_FORWARD_INNER));
    if (rc == 0)
        rc = gw_emit(set, names, &m, XDS_GW_FORWARD_INNER, forward_cluster(&m));
    if (rc == 0)
        rc = gw_emit(set, names, &m, BLACKHOLE, blackhole_cluster(&m));
    gw_mem_free(&m);
    return rc;
}

int xds_envoy_gw_vip_cluster(xds_envoy_item_t *it, const char *name)
{
    gw_mem_t m = {0};
    cluster_t *c = cluster_new(&m, name);
    Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig *eds =
        NEW(&m, Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig,
            envoy__config__cluster__v3__cluster__eds_cluster_config__descriptor);
    csrc_t *cs = NEW(&m, csrc_t, envoy__config__core__v3__config_source__descriptor);
    int rc = -1;
    if (c && eds && cs) {
        cs->config_source_specifier_case =
            ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS;
        cs->ads = NEW(&m, Envoy__Config__Core__V3__AggregatedConfigSource,
                      envoy__config__core__v3__aggregated_config_source__descriptor);
        cs->initial_fetch_timeout = gw_secs(&m, 0);
        cs->resource_api_version = ENVOY__CONFIG__CORE__V3__API_VERSION__V3;
        eds->eds_config = cs;
        eds->service_name = (char *)name;
        c->type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS;
        c->eds_cluster_config = eds;
        c->lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST;
        c->transport_socket =
            internal_upstream(&m, "envoy.transport_sockets.internal_upstream", true);
        if (!m.oom)
            rc = xds_envoy_item_set(it, name, c);
    }
    gw_mem_free(&m);
    return rc;
}
