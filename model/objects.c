/*
 * objects.c - names of kinds and cluster states, and freeing of the input
 * objects that kube/ decodes and hands to the model.
 *
 * Every pointer field of an input object is owned by the object, so freeing
 * an object frees each string and array declared in model.h, then the
 * struct. Optional fields are NULL when absent, which free() accepts.
 */
#include <stdlib.h>

#include "model.h"

const char *model_kind_name(model_kind_t k)
{
    switch (k) {
    case MODEL_KIND_NAMESPACE:
        return "Namespace";
    case MODEL_KIND_SERVICE:
        return "Service";
    case MODEL_KIND_ENDPOINTSLICE:
        return "EndpointSlice";
    case MODEL_KIND_POD:
        return "Pod";
    case MODEL_KIND_NODE:
        return "Node";
    case MODEL_KIND_AUTHZ_POLICY:
        return "AuthorizationPolicy";
    case MODEL_KIND_PEER_AUTHN:
        return "PeerAuthentication";
    case MODEL_KIND_GATEWAY:
        return "Gateway";
    case MODEL_KIND__COUNT:
        break;
    }
    return "Unknown";
}

const char *model_cluster_state_name(model_cluster_state_t s)
{
    switch (s) {
    case MODEL_CLUSTER_SYNCING:
        return "syncing";
    case MODEL_CLUSTER_SYNCED:
        return "synced";
    case MODEL_CLUSTER_STALE:
        return "stale";
    }
    return "unknown";
}

static void namespace_free(model_namespace_t *o)
{
    free(o->name);
    model_labels_clear(&o->labels);
    free(o);
}

static void service_free(model_service_t *o)
{
    free(o->ns);
    free(o->name);
    free(o->uid);
    model_labels_clear(&o->labels);
    free(o->cluster_ips);
    for (size_t i = 0; i < o->nports; i++) {
        free(o->ports[i].name);
        free(o->ports[i].target_port_name);
        free(o->ports[i].app_protocol);
    }
    free(o->ports);
    free(o->lb_ips);
    free(o);
}

static void endpointslice_free(model_endpointslice_t *o)
{
    free(o->ns);
    free(o->name);
    free(o->service);
    for (size_t i = 0; i < o->nports; i++)
        free(o->ports[i].name);
    free(o->ports);
    for (size_t i = 0; i < o->nendpoints; i++) {
        free(o->endpoints[i].node);
        free(o->endpoints[i].zone);
        free(o->endpoints[i].pod);
    }
    free(o->endpoints);
    free(o);
}

static void pod_free(model_pod_t *o)
{
    free(o->ns);
    free(o->name);
    free(o->uid);
    model_labels_clear(&o->labels);
    free(o->ips);
    free(o->node);
    free(o->service_account);
    free(o->owner);
    free(o);
}

static void node_free(model_node_t *o)
{
    free(o->name);
    model_labels_clear(&o->labels);
    free(o);
}

void model_obj_free(model_kind_t kind, void *obj)
{
    if (!obj)
        return;
    switch (kind) {
    case MODEL_KIND_NAMESPACE:
        namespace_free(obj);
        break;
    case MODEL_KIND_SERVICE:
        service_free(obj);
        break;
    case MODEL_KIND_ENDPOINTSLICE:
        endpointslice_free(obj);
        break;
    case MODEL_KIND_POD:
        pod_free(obj);
        break;
    case MODEL_KIND_NODE:
        node_free(obj);
        break;
    case MODEL_KIND_AUTHZ_POLICY:
        model_authz_policy_free(obj);
        break;
    case MODEL_KIND_PEER_AUTHN:
        model_peer_authn_free(obj);
        break;
    case MODEL_KIND_GATEWAY: {
        model_gateway_t *g = obj;
        free(g->ns);
        free(g->name);
        free(g->hostname);
        model_selector_free(g->from_sel);
        free(g);
        break;
    }
    case MODEL_KIND__COUNT:
        break; /* not a kind: we cannot know its layout */
    }
}
