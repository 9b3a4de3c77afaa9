/*
 * envoy.h - the Envoy v3 resources (LDS/RDS/CDS/EDS) served to proxyless
 * gRPC clients and east-west gateways, built from the model's endpoints
 * family (MODEL_RES_ENDPOINTS, one variant per service and viewing cluster).
 *
 * For every service port of hostname H and port P a client sees:
 *   Listener             "H:P"               api_listener -> HCM -> RDS "H:P"
 *   RouteConfiguration   "H:P"               every path -> cluster below
 *   Cluster              "outbound|P||H"     type EDS over ADS, ROUND_ROBIN
 *   ClusterLoadAssignment "outbound|P||H"    localities with priorities
 * An east-west gateway (istio-proxy; docs/gateway.md) gets what istiod gives
 * one, names included: listeners connect_terminate (mTLS HBONE on 15008),
 * main_internal and forward_inner_connect; clusters main_internal, encap,
 * forward_inner_connect, BlackHoleCluster and per global service port
 *   Cluster / ClusterLoadAssignment "inbound-vip|P|tcp|H"
 * whose endpoints are its own cluster's pods, as internal addresses of
 * forward_inner_connect. No RDS: its one route table is inline.
 */
#ifndef MESHFED_XDS_ENVOY_H
#define MESHFED_XDS_ENVOY_H

#include "model.h"
#include "xds_int.h"

#include <stddef.h>
#include <stdint.h>

#define XDS_TYPE_LISTENER "type.googleapis.com/envoy.config.listener.v3.Listener"
#define XDS_TYPE_ROUTE "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
#define XDS_TYPE_CLUSTER "type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define XDS_TYPE_ENDPOINT "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#define XDS_TYPE_HCM                                                                               \
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."             \
    "HttpConnectionManager"
#define XDS_TYPE_ROUTER "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

#define XDS_GW_CONNECT_TERMINATE "connect_terminate" /* istiod's listener names */
#define XDS_GW_MAIN_INTERNAL "main_internal"
#define XDS_GW_FORWARD_INNER "forward_inner_connect"
#define XDS_GW_PORT 15008
/* where original_dst finds the pod address (host metadata, filter state) */
#define XDS_ORIG_DST "envoy.filters.listener.original_dst"
#define XDS_GW_ROLE_KEY "MESHFED_ROLE"       /* node metadata key ... */
#define XDS_GW_ROLE_VALUE "eastwest-gateway" /* ... and value of a gateway */
/* istiod's east-west gateway test: a "waypoint~" node with this label */
#define XDS_GW_LABELS_KEY "LABELS"
#define XDS_GW_MANAGED_LABEL "gateway.istio.io/managed"
#define XDS_GW_MANAGED_VALUE "istio.io-eastwest-controller"

typedef enum xds_envoy_type {
    XDS_LDS,
    XDS_RDS,
    XDS_CDS,
    XDS_EDS,
    XDS_ENVOY_NTYPES,
} xds_envoy_type_t;

typedef enum xds_envoy_role {
    XDS_ROLE_CLIENT,  /* proxyless gRPC (or any Envoy-style client) */
    XDS_ROLE_GATEWAY, /* an east-west gateway of its cluster */
} xds_envoy_role_t;

/* The type for an Envoy type URL, or -1. */
int xds_envoy_type(const char *type_url);
const char *xds_envoy_type_url(xds_envoy_type_t t);

/* One serialized resource; name and bytes owned by the set (or the cache). */
typedef struct xds_envoy_item {
    char *name;
    uint8_t *buf;
    size_t len;
    uint64_t hash; /* of name and bytes: the resource's version */
} xds_envoy_item_t;

/* Resources of one type for one proxy, with an order-independent digest
 * of all of them (the SotW version of the type). */
typedef struct xds_envoy_set {
    xds_envoy_item_t *items;
    size_t n, cap;
    uint8_t **owned; /* per-call encodings (the gateway's route) */
    char **owned_names;
    size_t nowned, capowned;
    uint64_t hash;
} xds_envoy_set_t;

/* Fills set with the resources of type t that a proxy of view v and role
 * sees in snap: all of them when names is NULL (wildcard), else those
 * named in names that exist. td: the mesh trust domain the gateway accepts
 * peers of (NULL: cluster.local). Items borrow from snap's resources: keep
 * snap referenced while using them. 0, or -1 when out of memory. */
int xds_envoy_collect(xds_envoy_set_t *set, const model_snapshot_t *snap, const model_view_t *v,
                      xds_envoy_role_t role, const char *td, xds_envoy_type_t t,
                      const base_map_t *names);
void xds_envoy_set_free(xds_envoy_set_t *set);
/* 16 hex digits of h into buf (17 bytes). */
void xds_envoy_version(uint64_t h, char *buf);

/* For envoy_gw.c: item from packed m (0 or -1), and an item the set owns. */
int xds_envoy_item_set(xds_envoy_item_t *it, const char *name, const void *m);
int xds_envoy_set_add_owned(xds_envoy_set_t *s, xds_envoy_item_t *it);

/* envoy_gw.c: the gateway's listeners (per call, owned by set), its fixed
 * clusters (likewise), and the cluster "inbound-vip|P|tcp|H" named name
 * (cached per endpoints variant by envoy.c). 0 or -1. */
int xds_envoy_gw_listeners(xds_envoy_set_t *set, const model_snapshot_t *snap,
                           const model_view_t *v, const char *td, const base_map_t *names);
int xds_envoy_gw_static_clusters(xds_envoy_set_t *set, const base_map_t *names);
/* Whether the gateway's listeners in view v may differ between the two
 * snapshots (a global service, its ports or a Service's VIPs changed); pod
 * churn alone does not change them. Cost is proportional to the change. */
bool xds_envoy_gw_listeners_changed(const model_snapshot_t *from, const model_snapshot_t *to,
                                    const model_view_t *v);
int xds_envoy_gw_vip_cluster(xds_envoy_item_t *it, const char *name);

/* envoy_stream.c: the four types on an ADS stream, state in st->envoy[]
 * (server threads, srv->mu held). */
/* An east-west gateway, as istiod tells one: a "waypoint~" node id with the
 * label gateway.istio.io/managed=istio.io-eastwest-controller (managed, the
 * value of that label in the node's LABELS, or NULL); or MESHFED_ROLE=
 * eastwest-gateway in its metadata (role). A "router~" node is an ingress
 * gateway, not one of these. */
bool xds_envoy_is_gateway(const char *node_id, const char *role, const char *managed);
/* A SotW request for ts (one of st->envoy): subscription, ACK or NACK. */
void xds_envoy_on_sotw(xds_stream_t *st, xds_type_state_t *ts, char **names, size_t n,
                       const char *nonce, bool nack, const char *msg);
/* Sends at most one response (SotW or delta) if a type needs one. */
void xds_envoy_pump(xds_stream_t *st);
void xds_envoy_state_free(xds_stream_t *st);

#endif
