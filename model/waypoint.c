/*
 * waypoint.c - which waypoint a Service or a pod uses, as istiod decides it
 * (pilot ambient waypoints.go, fetchWaypointForTarget).
 *
 * The object's label istio.io/use-waypoint names a Gateway (in the
 * namespace of istio.io/use-waypoint-namespace, else its own); `none` means
 * no waypoint, and the namespace is then not consulted. Without the label,
 * the same labels on the Namespace decide. A binding to a Gateway that does
 * not exist, has no address yet, does not take the object's namespace
 * (allowedRoutes of its HBONE listener) or does not take the traffic type
 * gives no waypoint, and nothing falls back to the namespace. A pod is an
 * instance of a waypoint, and has none, when the Gateway its label
 * gateway.networking.k8s.io/gateway-name names exists with a status address.
 * A Service with a waypoint may name a canary (istio.io/use-waypoint-canary)
 * that takes a share of its traffic (buildWeightedWaypoints).
 */
#include "model_int.h"

#include <stdio.h>
#include <string.h>

#define USE_WAYPOINT "istio.io/use-waypoint"
#define USE_WAYPOINT_NS "istio.io/use-waypoint-namespace"
#define USE_CANARY "istio.io/use-waypoint-canary"
#define USE_CANARY_NS "istio.io/use-waypoint-canary-namespace"
#define INGRESS_USE_WAYPOINT "istio.io/ingress-use-waypoint"
#define MANAGED "gateway.istio.io/managed"
#define GATEWAY_NAME "gateway.networking.k8s.io/gateway-name"

bool model_waypoint_labelled(const model_labels_t *l)
{
    return model_labels_get(l, USE_WAYPOINT) || model_labels_get(l, USE_WAYPOINT_NS) ||
           model_labels_get(l, INGRESS_USE_WAYPOINT) || model_labels_get(l, USE_CANARY);
}

static const model_labels_t *ns_labels(const model_cluster_int_t *c, const char *ns)
{
    const model_namespace_t *n = base_map_get(&c->objs[MODEL_KIND_NAMESPACE], ns);
    return n ? &n->labels : NULL;
}

bool model_waypoint_binding(const model_cluster_int_t *c, const char *ns, const model_labels_t *l,
                            char *key, size_t len)
{
    const model_labels_t *src = l;
    const char *v = model_labels_get(l, USE_WAYPOINT);
    if (!v) {
        src = ns_labels(c, ns);
        v = src ? model_labels_get(src, USE_WAYPOINT) : NULL;
    }
    if (!v || strcmp(v, "none") == 0)
        return false;
    const char *wns = model_labels_get(src, USE_WAYPOINT_NS);
    snprintf(key, len, "%s/%s", wns ? wns : ns, v);
    return true;
}

/* Whether g takes objects of namespace ns (istiod's
 * AllowsAttachmentFromNamespace); a namespace the cluster does not have has
 * no labels. */
static bool attachable(const model_cluster_int_t *c, const model_gateway_t *g, const char *ns)
{
    static const model_labels_t none;
    const model_labels_t *nl;
    switch (g->from) {
    case MODEL_WP_FROM_ALL:
        return true;
    case MODEL_WP_FROM_SELECTOR:
        nl = ns_labels(c, ns);
        return g->from_sel && model_selector_matches(g->from_sel, nl ? nl : &none);
    case MODEL_WP_FROM_SAME:
        break;
    }
    return strcmp(g->ns, ns) == 0;
}

/* Whether a pod in ns with labels l is an instance of a waypoint. */
static bool instance(const model_cluster_int_t *c, const char *ns, const model_labels_t *l)
{
    const char *gw = model_labels_get(l, GATEWAY_NAME);
    if (!gw || !*gw)
        return false;
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", ns, gw);
    const model_gateway_t *g = base_map_get(&c->objs[MODEL_KIND_GATEWAY], key);
    return g && g->ready;
}

const model_gateway_t *model_waypoint_of(const model_cluster_int_t *c, const char *ns,
                                         const model_labels_t *l, bool workload)
{
    if (workload && instance(c, ns, l))
        return NULL; /* a waypoint's own pods */
    const char *managed = model_labels_get(l, MANAGED);
    if (!workload && managed &&
        (strcmp(managed, "istio.io-mesh-controller") == 0 ||
         strcmp(managed, "istio.io-eastwest-controller") == 0))
        return NULL;
    char key[512];
    if (!model_waypoint_binding(c, ns, l, key, sizeof(key)))
        return NULL;
    const model_gateway_t *g = base_map_get(&c->objs[MODEL_KIND_GATEWAY], key);
    if (!g || (!g->hostname && !g->ip.len) || !attachable(c, g, ns))
        return NULL;
    model_wp_for_t want = workload ? MODEL_WP_WORKLOAD : MODEL_WP_SERVICE;
    return g->waypoint_for == want || g->waypoint_for == MODEL_WP_ALL ? g : NULL;
}

/* Go's strconv.ParseBool; anything else is false, as istiod takes it. */
static bool parse_bool(const char *v)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
    for (size_t i = 0; v && i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strcmp(v, yes[i]) == 0)
            return true;
    return false;
}

bool model_waypoint_ingress(const model_cluster_int_t *c, const char *ns, const model_labels_t *l)
{
    const char *v = model_labels_get(l, INGRESS_USE_WAYPOINT);
    if (!v) {
        const model_labels_t *nl = ns_labels(c, ns);
        v = nl ? model_labels_get(nl, INGRESS_USE_WAYPOINT) : NULL;
    }
    return parse_bool(v);
}

void model_waypoint_addr(const model_cluster_int_t *c, const model_gateway_t *g,
                         model_gw_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    out->network = c->network;
    out->hbone_port = 15008;
    out->waypoint = true;
    if (g->hostname) {
        out->hostname = g->hostname;
        out->ns = g->ns;
    } else {
        out->ip = g->ip;
    }
}

uint8_t model_canary_weight(const char *v)
{
    if (!v)
        return MODEL_CANARY_ABSENT;
    const char *p = v + (*v == '+' || *v == '-');
    bool neg = *v == '-';
    unsigned n = 0;
    if (!*p)
        return MODEL_CANARY_INVALID;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return MODEL_CANARY_INVALID;
        n = n * 10 + (unsigned)(*p - '0');
        if (n > 100)
            return MODEL_CANARY_INVALID;
    }
    return neg && n ? MODEL_CANARY_INVALID : (uint8_t)(n + 1);
}

/* The canary binding ("ns/name", into key) of a Service of namespace ns with
 * labels l and canary weight w, and its share (into weight): istiod's
 * ResolveUseWaypointCanary. The namespace's canary label and weight count
 * only when the Service has no istio.io/use-waypoint of its own. False when
 * none is declared, or the weight is not a percentage. */
static bool canary_binding(const model_cluster_int_t *c, const char *ns, const model_labels_t *l,
                           uint8_t w, char *key, size_t len, unsigned *weight)
{
    const model_namespace_t *n = NULL;
    if (!model_labels_get(l, USE_WAYPOINT) ||
        strcmp(model_labels_get(l, USE_WAYPOINT), "none") == 0)
        n = base_map_get(&c->objs[MODEL_KIND_NAMESPACE], ns);
    const model_labels_t *src = l;
    if (!model_labels_get(l, USE_CANARY) && n && model_labels_get(&n->labels, USE_CANARY))
        src = &n->labels;
    const char *v = model_labels_get(src, USE_CANARY);
    if (!v || !*v || strcmp(v, "none") == 0)
        return false;
    if (w == MODEL_CANARY_ABSENT && n)
        w = n->canary_weight;
    if (w == MODEL_CANARY_INVALID)
        return false;
    const char *cns = model_labels_get(src, USE_CANARY_NS);
    snprintf(key, len, "%s/%s", cns ? cns : ns, v);
    *weight = w == MODEL_CANARY_ABSENT ? 0 : w - 1u;
    return true;
}

const model_gateway_t *model_waypoint_canary(const model_cluster_int_t *c, const model_service_t *s,
                                             const model_gateway_t *primary, unsigned *weight)
{
    char key[512], pkey[512];
    if (!primary ||
        !canary_binding(c, s->ns, &s->labels, s->canary_weight, key, sizeof(key), weight))
        return NULL;
    snprintf(pkey, sizeof(pkey), "%s/%s", primary->ns, primary->name);
    if (strcmp(key, pkey) == 0)
        return NULL;
    const model_gateway_t *g = base_map_get(&c->objs[MODEL_KIND_GATEWAY], key);
    if (!g || (!g->hostname && !g->ip.len) || !attachable(c, g, s->ns))
        return NULL;
    return g->waypoint_for == MODEL_WP_SERVICE || g->waypoint_for == MODEL_WP_ALL ? g : NULL;
}

/* Whether the object named ns/name with labels l is bound to key, as its
 * waypoint or (a Service) its canary. */
static bool bound_to(const model_cluster_int_t *c, const char *ns, const model_labels_t *l,
                     const char *key, bool service)
{
    char k[512];
    unsigned w;
    if (model_waypoint_binding(c, ns, l, k, sizeof(k)) && strcmp(k, key) == 0)
        return true;
    /* any valid weight: whether it is valid does not move the binding */
    return service && canary_binding(c, ns, l, 1, k, sizeof(k), &w) && strcmp(k, key) == 0;
}

void model_waypoint_mark(model_t *m, model_cluster_int_t *c, const model_gateway_t *g)
{
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", g->ns, g->name);
    const base_map_t *h = &c->objs[MODEL_KIND_SERVICE];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e)) {
        const model_service_t *s = e->val;
        if (bound_to(c, s->ns, &s->labels, key, true))
            model_mark_service(m, s->ns, s->name);
    }
    h = &c->objs[MODEL_KIND_POD];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e)) {
        const model_pod_t *p = e->val;
        const char *inst = model_labels_get(&p->labels, GATEWAY_NAME);
        if (bound_to(c, p->ns, &p->labels, key, false) ||
            (inst && strcmp(inst, g->name) == 0 && strcmp(p->ns, g->ns) == 0))
            model_mark_pod(m, c, p->ns, p->name);
    }
}

bool model_waypoint_by_selector(const model_cluster_int_t *c)
{
    const base_map_t *h = &c->objs[MODEL_KIND_GATEWAY];
    for (base_map_ent_t *e = base_map_first(h); e; e = base_map_next(h, e))
        if (((const model_gateway_t *)e->val)->from == MODEL_WP_FROM_SELECTOR)
            return true;
    return false;
}
