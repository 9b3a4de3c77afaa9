/*
 * stream.c - the xDS protocol on one stream: parse requests (delta and SotW),
 * track subscriptions, ACK/NACK and flow control, and build responses from
 * snapshot diffs. Runs on the server threads with srv->mu held.
 */
#include "envoy.h"
#include "xds_int.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <grpc/slice.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void xds_type_state_clear(xds_type_state_t *ts)
{
    if (ts->base)
        model_snapshot_unref(ts->base);
    ts->base = NULL;
    base_map_destroy(&ts->subs, NULL);
    base_map_destroy(&ts->pending, NULL);
    base_map_destroy(&ts->have, free);
    base_map_destroy(&ts->initial, free);
}

int xds_ver_put(base_map_t *m, const char *name, const char *ver)
{
    void *v = ver ? strdup(ver) : BASE_MAP_SET;
    if (!v)
        return -1;
    void **slot = base_map_slot(m, name);
    if (slot) {
        if (*slot != BASE_MAP_SET)
            free(*slot);
        *slot = v;
        return 0;
    }
    if (base_map_put(m, name, v) == v) {
        if (v != BASE_MAP_SET)
            free(v);
        return -1;
    }
    return 0;
}

const char *xds_ver_get(const base_map_t *m, const char *name)
{
    void *v = base_map_get(m, name);
    return v == BASE_MAP_SET ? NULL : v;
}

void xds_ver_del(base_map_t *m, const char *name)
{
    void *v = base_map_del(m, name);
    if (v != BASE_MAP_SET)
        free(v);
}

void xds_names_add(xds_names_t *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    if ((l->v[l->n] = strdup(name)))
        l->n++;
}

void xds_names_free(xds_names_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void xds_type_state_set_base(xds_type_state_t *ts, model_snapshot_t *snap)
{
    if (ts->base == snap)
        return;
    if (ts->base)
        model_snapshot_unref(ts->base);
    ts->base = snap ? model_snapshot_ref(snap) : NULL;
}

void xds_next_nonce(xds_stream_t *st, char *nonce)
{
    uint64_t n = atomic_fetch_add(&st->srv->nonce_ctr, 1) + 1;
    snprintf(nonce, XDS_NONCE_LEN, "%" PRIx64, n);
}

void xds_type_state_next_nonce(xds_stream_t *st, xds_type_state_t *ts)
{
    xds_next_nonce(st, ts->nonce);
}

void xds_stream_state_free(xds_stream_t *st)
{
    st->srv->name_bytes -= st->name_bytes;
    st->name_bytes = 0;
    xds_type_state_clear(&st->addr);
    xds_type_state_clear(&st->auth);
    xds_envoy_state_free(st);
    free(st->istio_version);
    free(st->node_id);
    free(st->cluster);
    free(st->network);
    free(st->peer);
    free(st->last_nack);
    free(st->identity);
    free(st->auth_cluster);
    free(st->pod_name);
    free(st->pod_uid);
    free(st->ca_csr);
    free(st->ca_impersonate);
}

static void reject(xds_stream_t *st, grpc_status_code code, const char *fmt, const char *arg)
{
    char msg[1200];
    snprintf(msg, sizeof(msg), fmt, arg);
    st->srv->stats.bad_requests++;
    xds_stream_close(st, code, msg);
}

static const char *meta_string(const Google__Protobuf__Struct *md, const char *key)
{
    for (size_t i = 0; md && i < md->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = md->fields[i];
        if (e->key && strcmp(e->key, key) == 0 && e->value &&
            e->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
            return e->value->string_value;
    }
    return NULL;
}

/* The string value of key in the Struct value of outer (the node's LABELS
 * holds the pod's labels), or NULL. */
static const char *meta_nested(const Google__Protobuf__Struct *md, const char *outer,
                               const char *key)
{
    for (size_t i = 0; md && i < md->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = md->fields[i];
        if (e->key && strcmp(e->key, outer) == 0 && e->value &&
            e->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
            return meta_string(e->value->struct_value, key);
    }
    return NULL;
}

/* The first of keys present in the node metadata, or NULL. */
static const char *meta_any(const Google__Protobuf__Struct *md, const char *const *keys)
{
    for (; *keys; keys++) {
        const char *v = meta_string(md, *keys);
        if (v && *v)
            return v;
    }
    return NULL;
}

/* A request header (e.g. "clusterid") as a new string, or NULL. */
static char *header_dup(const grpc_metadata_array *md, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key, *v = &md->metadata[i].value;
        if (GRPC_SLICE_LENGTH(*k) == n && memcmp(GRPC_SLICE_START_PTR(*k), key, n) == 0 &&
            GRPC_SLICE_LENGTH(*v) > 0 && GRPC_SLICE_LENGTH(*v) <= XDS_MAX_NAME)
            return strndup((const char *)GRPC_SLICE_START_PTR(*v), GRPC_SLICE_LENGTH(*v));
    }
    return NULL;
}

/* Where the cluster and network come from. istiod's NodeMetadata names them
 * CLUSTER_ID and NETWORK (pilot-agent strips ISTIO_META_ from its env).
 * ztunnel puts in its metadata only NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME
 * and its ISTIO_META_* env with the prefix stripped (so CLUSTER_ID/NETWORK
 * only when ISTIO_META_CLUSTER_ID/ISTIO_META_NETWORK are set); with token
 * auth it always sends its cluster as the "clusterid" request header, which
 * istiod's JWT authenticator reads. Its NETWORK env is not sent at all: then
 * the network is the cluster's (config.network_of). The unstripped names are
 * accepted too, for clients that forward the env as is. */
static const char *const CLUSTER_KEYS[] = {"CLUSTER_ID", "ISTIO_META_CLUSTER_ID", NULL};
static const char *const NETWORK_KEYS[] = {"NETWORK", "ISTIO_META_NETWORK", NULL};

/* The first request names the proxy: node id, cluster and network. 0 or -1. */
static int take_node(xds_stream_t *st, const Envoy__Config__Core__V3__Node *node,
                     const char *type_url)
{
    if (st->node_id)
        return 0;
    if (!node) {
        reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: first request has no node%s", "");
        return -1;
    }
    const char *id = node->id ? node->id : "";
    if (strlen(id) > XDS_MAX_NAME) {
        reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: node id longer than %s bytes", "1024");
        return -1;
    }
    const char *cluster = meta_any(node->metadata, CLUSTER_KEYS);
    char *hdr = cluster ? NULL : header_dup(&st->md, "clusterid");
    st->debug = xds_debug_is_type(type_url);
    if (!cluster && !hdr && st->debug) /* istioctl names none: it asks this replica */
        cluster = st->srv->local_cluster;
    if (!cluster && !(cluster = hdr)) {
        reject(st, GRPC_STATUS_INVALID_ARGUMENT,
               "xds: node %s has no CLUSTER_ID in its metadata nor a clusterid header", id);
        return -1;
    }
    /* A known cluster's network wins over what the node says, as istiod
     * serves every proxy of its cluster its local network's view: a NETWORK
     * left over from before a relabel must not hide the cluster's pods. */
    const char *network = meta_any(node->metadata, NETWORK_KEYS);
    const char *cluster_net =
        st->srv->network_of ? st->srv->network_of(st->srv->network_of_arg, cluster) : NULL;
    if (cluster_net) {
        if (network && strcmp(network, cluster_net) != 0)
            xds_log(st->srv, false,
                    "xds: node %.200s says NETWORK \"%.100s\" but cluster %.200s is on \"%.100s\": "
                    "serving the cluster's",
                    id, network, cluster, cluster_net);
        network = cluster_net;
        st->net_from_cluster = true;
    }
    if (!cluster_net && st->srv->network_of && !st->debug) {
        /* served (its view is simply empty of its own cluster), but an
         * operator should know: a typo in CLUSTER_ID looks like this */
        st->unknown_cluster = true;
        st->srv->stats.unknown_cluster++;
        xds_log(st->srv, true,
                "xds: node %.200s names cluster \"%.200s\", which meshfed does not know", id,
                cluster);
    }
    if (strlen(cluster) > XDS_MAX_NAME || (network && strlen(network) > XDS_MAX_NAME)) {
        free(hdr);
        reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: node %s: cluster or network too long", id);
        return -1;
    }
    st->node_id = strdup(id);
    const char *iv = meta_string(node->metadata, "ISTIO_VERSION");
    st->istio_version = iv && strlen(iv) <= XDS_MAX_NAME ? strdup(iv) : NULL;
    st->cluster = strdup(cluster);
    st->network = strdup(network ? network : "");
    free(hdr);
    st->view.cluster = st->cluster;
    st->view.network = st->network;
    st->gateway =
        xds_envoy_is_gateway(st->node_id, meta_string(node->metadata, XDS_GW_ROLE_KEY),
                             meta_nested(node->metadata, XDS_GW_LABELS_KEY, XDS_GW_MANAGED_LABEL));
    int rc = xds_auth_start(st);
    /* the headers are read (token and clusterid copied): an idle stream
     * need not keep the array grpc filled in */
    grpc_metadata_array_destroy(&st->md);
    grpc_metadata_array_init(&st->md);
    return rc;
}

bool xds_stream_network_moved(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    if (!st->net_from_cluster || !s->network_of || st->closing)
        return false;
    const char *now = s->network_of(s->network_of_arg, st->cluster);
    if (!now || strcmp(now, st->network) == 0)
        return false;
    xds_log(s, false,
            "xds: node %.200s: cluster %.200s moved from network \"%.100s\" to \"%.100s\"; "
            "stream closed so that it reconnects to its new view",
            st->node_id, st->cluster, st->network, now);
    xds_stream_close(st, GRPC_STATUS_UNAVAILABLE, "xds: the cluster's network changed; reconnect");
    return true;
}

/* What kind of proxy a stream serves is known from the first type it asks
 * for; counted while the stream is open (server.c uncounts it). */
static void note_kind(xds_stream_t *st, xds_proxy_kind_t k)
{
    if (st->proxy_kind >= 0)
        return;
    st->proxy_kind = (int)k;
    st->srv->stats.proxies[k]++;
}

static xds_type_state_t *type_state(xds_stream_t *st, const char *type_url)
{
    if (type_url && strcmp(type_url, XDS_TYPE_ADDRESS) == 0) {
        note_kind(st, XDS_PROXY_ZTUNNEL);
        return &st->addr;
    }
    if (type_url && strcmp(type_url, XDS_TYPE_AUTHORIZATION) == 0)
        return &st->auth;
    int et = xds_envoy_type(type_url);
    if (et >= 0) {
        note_kind(st, st->gateway ? XDS_PROXY_GATEWAY : XDS_PROXY_GRPC);
        if (!st->envoy && !(st->envoy = calloc(XDS_ENVOY_NTYPES, sizeof(*st->envoy)))) {
            reject(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "xds: out of memory%s", "");
            return NULL;
        }
        return &st->envoy[et];
    }
    reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: unknown type_url \"%s\"",
           type_url ? type_url : "");
    return NULL;
}

static int check_names(xds_stream_t *st, char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(names[i]) > XDS_MAX_NAME) {
            reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: resource name longer than %s bytes",
                   "1024");
            return -1;
        }
    }
    return 0;
}

/* A response_nonce: ACK or NACK of the response in flight, if it matches. */
static void take_ack(xds_stream_t *st, xds_type_state_t *ts, const char *nonce,
                     const Google__Rpc__Status *err)
{
    if (!nonce || !*nonce || strcmp(nonce, ts->nonce) != 0)
        return; /* stale or no nonce: nothing in flight is acknowledged */
    ts->nonce[0] = '\0';
    if (err) {
        /* the client keeps its last good state; we do not resend the same
         * thing: the next push is the diff from what we sent */
        st->srv->stats.nacks++;
        st->nacks++;
        free(st->last_nack);
        st->last_nack = strdup(err->message ? err->message : "");
        return;
    }
    st->srv->stats.acks++;
    ts->version_acked = ts->version_sent;
}

static size_t key_bytes(const base_map_t *m)
{
    size_t bytes = 0;
    for (const base_map_ent_t *e = base_map_first(m); e; e = base_map_next(m, e))
        bytes += strlen(e->key) + 1;
    return bytes;
}

/* What one type's subscriptions hold: names and their bytes. */
static void type_names(const xds_type_state_t *ts, size_t *n, size_t *bytes)
{
    *n += ts->subs.n + ts->initial.n;
    *bytes += key_bytes(&ts->subs) + key_bytes(&ts->initial);
}

/* After a request: within the stream's and the server's limits, or the
 * stream is closed RESOURCE_EXHAUSTED (a client that keeps subscribing to
 * names must not grow the server without bound). 0 or -1. */
static int check_limits(xds_stream_t *st)
{
    xds_server_t *s = st->srv;
    size_t n = 0, bytes = 0;
    type_names(&st->addr, &n, &bytes);
    type_names(&st->auth, &n, &bytes);
    for (int t = 0; st->envoy && t < XDS_ENVOY_NTYPES; t++)
        type_names(&st->envoy[t], &n, &bytes);
    s->name_bytes = s->name_bytes - st->name_bytes + bytes;
    st->nnames = n;
    st->name_bytes = bytes;
    const char *what = n > s->max_names                          ? "names"
                       : bytes > s->max_name_bytes               ? "bytes of names"
                       : s->name_bytes > s->max_name_bytes_total ? "bytes of names on all streams"
                                                                 : NULL;
    if (!what)
        return 0;
    s->stats.limit_names++;
    xds_log(s, true,
            "xds: node %.200s (%s) subscribed to %zu names (%zu bytes): more %s than allowed; "
            "stream closed",
            st->node_id ? st->node_id : "?", st->peer ? st->peer : "?", n, bytes, what);
    char msg[160];
    snprintf(msg, sizeof(msg), "xds: too many subscribed resource names (%zu %s)", n, what);
    xds_stream_close(st, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    return -1;
}

bool xds_stream_holds(const xds_type_state_t *ts, const char *name, const model_res_t *old_r)
{
    return (ts->wildcard && old_r) || base_map_get(&ts->have, name);
}

/* Joining the wildcard later: what it holds is no longer described by the
 * base, so send the whole view afresh (from no base). */
static void wildcard_on(xds_type_state_t *ts)
{
    if (!ts->wildcard && ts->base) {
        model_snapshot_unref(ts->base);
        ts->base = NULL;
        ts->need_push = true;
    }
    ts->wildcard = true;
}

/* Leaving it: from now on track by name what it explicitly asked for. */
static void wildcard_off(xds_type_state_t *ts)
{
    if (ts->wildcard && ts->base)
        for (const base_map_ent_t *e = base_map_first(&ts->subs); e;
             e = base_map_next(&ts->subs, e))
            xds_ver_put(&ts->have, e->key, NULL);
    ts->wildcard = false;
}

static void on_delta(xds_stream_t *st, Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq)
{
    if (take_node(st, rq->node, rq->type_url) < 0)
        return;
    xds_type_state_t *ts = type_state(st, rq->type_url);
    if (!ts || check_names(st, rq->resource_names_subscribe, rq->n_resource_names_subscribe) < 0 ||
        check_names(st, rq->resource_names_unsubscribe, rq->n_resource_names_unsubscribe) < 0)
        return;
    take_ack(st, ts, rq->response_nonce, rq->error_detail);
    if (!ts->subscribed) {
        ts->subscribed = true;
        ts->need_push = true;
        ts->wildcard = rq->n_resource_names_subscribe == 0; /* legacy wildcard */
        for (size_t i = 0; i < rq->n_initial_resource_versions; i++) {
            const char *k = rq->initial_resource_versions[i]->key;
            if (strlen(k) > XDS_MAX_NAME) {
                reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: resource name longer than %s bytes",
                       "1024");
                return;
            }
            xds_ver_put(&ts->initial, k, rq->initial_resource_versions[i]->value);
            xds_ver_put(&ts->have, k, NULL);
        }
    }
    for (size_t i = 0; i < rq->n_resource_names_subscribe; i++) {
        const char *n = rq->resource_names_subscribe[i];
        if (strcmp(n, "*") == 0) {
            wildcard_on(ts);
            continue;
        }
        base_map_put(&ts->subs, n, BASE_MAP_SET);
        base_map_put(&ts->pending, n, BASE_MAP_SET);
    }
    for (size_t i = 0; i < rq->n_resource_names_unsubscribe; i++) {
        const char *n = rq->resource_names_unsubscribe[i];
        if (strcmp(n, "*") == 0) {
            wildcard_off(ts);
            continue;
        }
        base_map_del(&ts->subs, n);
        base_map_del(&ts->pending, n);
        if (!ts->wildcard)
            xds_ver_del(&ts->have, n); /* the client forgets it itself */
    }
    check_limits(st);
}

static void on_sotw(xds_stream_t *st, Envoy__Service__Discovery__V3__DiscoveryRequest *rq)
{
    if (take_node(st, rq->node, rq->type_url) < 0)
        return;
    if (xds_debug_is_type(rq->type_url)) {
        st->debug = true;
        xds_debug_on_sotw(st, rq->response_nonce);
        return;
    }
    xds_type_state_t *ts = type_state(st, rq->type_url);
    if (!ts || check_names(st, rq->resource_names, rq->n_resource_names) < 0)
        return;
    if (st->envoy && ts >= st->envoy && ts < st->envoy + XDS_ENVOY_NTYPES) {
        if (rq->n_resource_names > st->srv->max_names) {
            st->srv->stats.limit_names++;
            xds_log(st->srv, true, "xds: node %.200s asked for %zu names at once; stream closed",
                    st->node_id, rq->n_resource_names);
            xds_stream_close(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
                             "xds: too many subscribed resource names");
            return;
        }
        xds_envoy_on_sotw(st, ts, rq->resource_names, rq->n_resource_names, rq->response_nonce,
                          rq->error_detail != NULL,
                          rq->error_detail ? rq->error_detail->message : NULL);
        check_limits(st);
        return;
    }
    if (rq->response_nonce && *rq->response_nonce) {
        take_ack(st, ts, rq->response_nonce, rq->error_detail);
        return;
    }
    /* a request without nonce (first or re-request) wants the full state */
    ts->subscribed = true;
    ts->wildcard = true;
    ts->need_push = true;
}

/* The bytes of the first length-delimited field number f in buf[0..len),
 * or NULL: a walk over the wire format (protobuf-c already accepted it). */
static const uint8_t *wire_field(const uint8_t *buf, size_t len, uint32_t f, size_t *flen)
{
    size_t i = 0;
    while (i < len) {
        uint64_t key = 0, v = 0;
        for (int sh = 0; i < len && sh < 64; sh += 7) {
            key |= (uint64_t)(buf[i] & 0x7f) << sh;
            if (!(buf[i++] & 0x80))
                break;
        }
        unsigned wt = (unsigned)(key & 7);
        if (wt == 0 || wt == 2)
            for (int sh = 0; i < len && sh < 64; sh += 7) {
                v |= (uint64_t)(buf[i] & 0x7f) << sh;
                if (!(buf[i++] & 0x80))
                    break;
            }
        if (wt == 1 || wt == 5)
            v = wt == 1 ? 8 : 4;
        if (wt == 1 || wt == 2 || wt == 5) {
            if (v > len - i)
                return NULL;
            if (wt == 2 && key >> 3 == f) {
                *flen = (size_t)v;
                return buf + i;
            }
            i += (size_t)v;
        } else if (wt != 0) {
            return NULL; /* groups: not in these messages */
        }
    }
    return NULL;
}

/* Whether the request's node id (field 1 of Node, field 1 of both request
 * kinds) holds a NUL byte: protobuf-c would hand us the id cut short at it,
 * and a proxy would be known by another name than it sent. */
static bool node_id_has_nul(const uint8_t *buf, size_t len)
{
    size_t nlen = 0, ilen = 0;
    const uint8_t *node = wire_field(buf, len, 1, &nlen);
    const uint8_t *id = node ? wire_field(node, nlen, 1, &ilen) : NULL;
    return id && memchr(id, 0, ilen) != NULL;
}

void xds_stream_on_message(xds_stream_t *st, const uint8_t *buf, size_t len)
{
    if (!st->node_id && node_id_has_nul(buf, len)) {
        reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: node id holds a NUL byte%s", "");
        return;
    }
    if (st->delta) {
        Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *rq =
            envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, len, buf);
        if (!rq) {
            reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: malformed DeltaDiscoveryRequest (%s)",
                   "protobuf decode failed");
            return;
        }
        on_delta(st, rq);
        envoy__service__discovery__v3__delta_discovery_request__free_unpacked(rq, NULL);
    } else {
        Envoy__Service__Discovery__V3__DiscoveryRequest *rq =
            envoy__service__discovery__v3__discovery_request__unpack(NULL, len, buf);
        if (!rq) {
            reject(st, GRPC_STATUS_INVALID_ARGUMENT, "xds: malformed DiscoveryRequest (%s)",
                   "protobuf decode failed");
            return;
        }
        on_sotw(st, rq);
        envoy__service__discovery__v3__discovery_request__free_unpacked(rq, NULL);
    }
    if (!st->closing)
        xds_stream_pump(st);
}
