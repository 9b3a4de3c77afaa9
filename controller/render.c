/*
 * render.c - resources as JSON, with the field names of the istio.workload
 * and istio.security protos (proto3 JSON style, Authorization with istio's
 * names: groups, rules, matches), for /debug/config_dump and --once.
 */
#include "ctl_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const lb_scopes[] = {"UNSPECIFIED_SCOPE", "REGION", "ZONE", "SUBZONE", "NODE",
                                        "CLUSTER",           "NETWORK"};

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v && *v)
        json_object_set_new(o, k, json_string(v));
}

static json_t *ip_json(const model_ip_t *ip)
{
    char buf[64];
    return json_string(model_ip_format(ip, buf, sizeof(buf)));
}

static json_t *netaddr_json(const model_net_addr_t *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "network", json_string(a->network ? a->network : ""));
    json_object_set_new(o, "address", ip_json(&a->ip));
    return o;
}

static json_t *ports_json(const model_port_pair_t *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        static const char *const protos[] = {"UNKNOWN", "HTTP11", "HTTP2", "GRPC", "TCP", "TLS"};
        json_t *o = json_pack("{s:i, s:i}", "servicePort", (int)p[i].service_port, "targetPort",
                              (int)p[i].target_port);
        if (p[i].app_protocol && p[i].app_protocol < 6)
            json_object_set_new(o, "appProtocol", json_string(protos[p[i].app_protocol]));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *ips_json(const model_ip_t *ips, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, ip_json(&ips[i]));
    return a;
}

/* The locality object, added to o by the first of its fields that is set. */
static json_t *loc_json(json_t *o, json_t *loc, const char *k, const char *v)
{
    if (!v)
        return loc;
    if (!loc) {
        loc = json_object();
        json_object_set_new(o, "locality", loc);
    }
    set_str(loc, k, v);
    return loc;
}

/* A GatewayAddress as member k (networkGateway, waypoint), and the capacity
 * that only gateway-reached workloads carry. */
static void gw_json(json_t *o, const char *k, const model_gw_addr_t *gw)
{
    if (!gw)
        return;
    json_t *g = json_object();
    if (gw->hostname)
        json_object_set_new(
            g, "hostname",
            json_pack("{s:s, s:s}", "namespace", gw->ns ? gw->ns : "", "hostname", gw->hostname));
    else
        json_object_set_new(g, "address", netaddr_json(&(model_net_addr_t){gw->network, gw->ip}));
    json_object_set_new(g, "hboneMtlsPort", json_integer(gw->hbone_port));
    json_object_set_new(o, k, g);
    if (gw->capacity)
        json_object_set_new(o, "capacity", json_integer(gw->capacity));
}

/* weighted_waypoints: the primary with the rest of the share, the canary. */
static json_t *weighted_json(const model_gw_addr_t *primary, const model_gw_addr_t *canary,
                             unsigned weight)
{
    json_t *a = json_array(), *d;
    const model_gw_addr_t *g[2] = {primary, canary};
    for (int i = 0; i < 2; i++) {
        d = json_object();
        gw_json(d, "destination", g[i]);
        json_object_set_new(d, "weight", json_integer(i ? weight : 100 - weight));
        json_array_append_new(a, d);
    }
    return a;
}

static json_t *svcs_json(const model_wl_service_t *svcs, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, svcs[i].key,
                            json_pack("{s:o}", "ports", ports_json(svcs[i].ports, svcs[i].nports)));
    return o;
}

/* A KEYS field ('\n'-separated names) as an array; absent when empty. */
static void keys_json(json_t *o, const char *k, const char *joined)
{
    if (!joined)
        return;
    json_t *a = json_array();
    for (const char *s = joined; *s;) {
        size_t n = strcspn(s, "\n");
        json_array_append_new(a, json_stringn(s, n));
        s += n + (s[n] == '\n');
    }
    json_object_set_new(o, k, a);
}

static const char *const wl_types[] = {"DEPLOYMENT", "CRONJOB", "POD", "JOB"};

/* Field f of w as member k of o, as its kind says (see MODEL_WORKLOAD_FIELDS). */
#define WL_JSON(kind, f, pb, k) WL_JSON_##kind(f, k)
#define WL_JSON_STR(f, k) set_str(o, k, w->f);
#define WL_JSON_SSTR(f, k) set_str(o, k, w->f);
#define WL_JSON_LOC(f, k) loc = loc_json(o, loc, k, w->f);
#define WL_JSON_IPS(f, k) json_object_set_new(o, k, ips_json(w->f, w->n##f));
#define WL_JSON_SVCS(f, k) json_object_set_new(o, k, svcs_json(w->f, w->n##f));
#define WL_JSON_GW(f, k)                                                                           \
    if (w->f && !w->f->waypoint)                                                                   \
        gw_json(o, k, w->f);
#define WL_JSON_WP(f, k)                                                                           \
    if (w->f && w->f->waypoint)                                                                    \
        gw_json(o, k, w->f);
#define WL_JSON_TUNNEL(f, k)                                                                       \
    json_object_set_new(o, k, json_string(w->f == MODEL_TUNNEL_HBONE ? "HBONE" : "NONE"));
#define WL_JSON_FLAG(f, k)                                                                         \
    if (w->f)                                                                                      \
        json_object_set_new(o, k, json_true());
#define WL_JSON_NETMODE(f, k)                                                                      \
    if (w->f)                                                                                      \
        json_object_set_new(o, k, json_string("HOST_NETWORK"));
#define WL_JSON_WLTYPE(f, k)                                                                       \
    json_object_set_new(o, k, json_string(w->f < 4 ? wl_types[w->f] : "UNKNOWN"));
#define WL_JSON_STATUS(f, k) json_object_set_new(o, k, json_string(w->f ? "HEALTHY" : "UNHEALTHY"));
#define WL_JSON_KEYS(f, k) keys_json(o, k, w->f);

static json_t *workload_json(const model_out_workload_t *w)
{
    json_t *o = json_object(), *loc = NULL;
    MODEL_WORKLOAD_FIELDS(WL_JSON)
    return o;
}

static json_t *netaddrs_json(const model_net_addr_t *addrs, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, netaddr_json(&addrs[i]));
    return a;
}

static void sans_json(json_t *o, const char *k, const char *const *sans, size_t n)
{
    if (!n)
        return;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(sans[i]));
    json_object_set_new(o, k, a);
}

static void lb_json(json_t *o, const char *k, model_lb_mode_t mode, const model_lb_scope_t *prefs,
                    size_t nprefs, bool allow_all)
{
    static const char *const modes[] = {"UNSPECIFIED_MODE", "STRICT", "FAILOVER"};
    if (mode == MODEL_LB_UNSPECIFIED && !allow_all)
        return;
    json_t *a = json_array();
    for (size_t i = 0; i < nprefs; i++)
        json_array_append_new(a, json_string(lb_scopes[prefs[i]]));
    json_t *lb = json_pack("{s:o, s:s}", "routingPreference", a, "mode",
                           modes[mode <= MODEL_LB_FAILOVER ? mode : 0]);
    if (allow_all)
        json_object_set_new(lb, "healthPolicy", json_string("ALLOW_ALL"));
    json_object_set_new(o, k, lb);
}

static const char *const ip_fams[] = {"AUTOMATIC", "IPV4_ONLY", "IPV6_ONLY", "DUAL"};

/* Field f of s as member k of o (see MODEL_SERVICE_FIELDS). */
#define SVC_JSON(kind, f, pb, k) SVC_JSON_##kind(f, k)
#define SVC_JSON_STR(f, k) set_str(o, k, s->f);
#define SVC_JSON_TRUE(f, k) json_object_set_new(o, k, json_true());
#define SVC_JSON_NETADDRS(f, k) json_object_set_new(o, k, netaddrs_json(s->f, s->n##f));
#define SVC_JSON_PORTS(f, k) json_object_set_new(o, k, ports_json(s->f, s->n##f));
#define SVC_JSON_PORT_NAMES(f, k)
#define SVC_JSON_SANS(f, k) sans_json(o, k, s->f, s->n##f);
#define SVC_JSON_LB(f, k)                                                                          \
    lb_json(o, k, s->f##_mode, s->f##_prefs, s->n##f##_prefs, s->f##_allow_all);
#define SVC_JSON_IPF(f, k)                                                                         \
    if (s->f != MODEL_IPF_AUTOMATIC)                                                               \
        json_object_set_new(o, k, json_string(ip_fams[s->f & 3]));
#define SVC_JSON_GW(f, k) gw_json(o, k, s->f);
#define SVC_JSON_CANARY(f, k)                                                                      \
    if (s->waypoint && s->f)                                                                       \
        json_object_set_new(o, k, weighted_json(s->waypoint, s->f, s->f##_weight));
#define SVC_JSON_FLAG(f, k)                                                                        \
    if (s->f)                                                                                      \
        json_object_set_new(o, k, json_true());

static json_t *service_json(const model_out_service_t *s)
{
    json_t *o = json_object();
    MODEL_SERVICE_FIELDS(SVC_JSON)
    return o;
}

/* ---------- Authorization ---------- */

static json_t *sm_json(const model_strmatch_t *m)
{
    static const char *const kinds[] = {"exact", "prefix", "suffix"};
    if (m->kind == MODEL_SM_PRESENCE)
        return json_pack("{s:{}}", "presence");
    return json_pack("{s:s}", kinds[m->kind], m->value ? m->value : "");
}

static json_t *cidr_json(const model_cidr_t *c)
{
    return json_pack("{s:o, s:i}", "address", ip_json(&c->ip), "length", (int)c->length);
}

static json_t *port_json(const uint32_t *p)
{
    return json_integer(*p);
}

static json_t *sa_json(const model_sa_match_t *m)
{
    return json_pack("{s:s, s:s}", "namespace", m->ns ? m->ns : "", "serviceAccount",
                     m->sa ? m->sa : "");
}

#define AZ_JSON_SM sm_json
#define AZ_JSON_CIDR cidr_json
#define AZ_JSON_PORT port_json
#define AZ_JSON_SA sa_json
/* the proto3 JSON name of each match field, in MODEL_AUTHZ_MATCH_FIELDS order */
static const char *const match_names[] = {
    "namespaces",       "notNamespaces",       "principals",      "notPrincipals",
    "sourceIps",        "notSourceIps",        "destinationIps",  "notDestinationIps",
    "destinationPorts", "notDestinationPorts", "serviceAccounts", "notServiceAccounts"};
#define MATCH_JSON(kind, m)                                                                        \
    if (x->n_##m) {                                                                                \
        json_t *a = json_array();                                                                  \
        for (size_t i = 0; i < x->n_##m; i++)                                                      \
            json_array_append_new(a, AZ_JSON_##kind(&x->m[i]));                                    \
        json_object_set_new(o, match_names[k], a);                                                 \
    }                                                                                              \
    k++;

static json_t *match_json(const model_authz_match_t *x)
{
    json_t *o = json_object();
    size_t k = 0;
    MODEL_AUTHZ_MATCH_FIELDS(MATCH_JSON)
    return o;
}

json_t *ctl_authz_json(const model_out_authz_t *a)
{
    static const char *const scopes[] = {"GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR"};
    json_t *groups = json_array();
    for (size_t g = 0; g < a->ngroups; g++) {
        json_t *rules = json_array();
        for (size_t c = 0; c < a->groups[g].nclauses; c++) {
            const model_authz_clause_t *cl = &a->groups[g].clauses[c];
            json_t *matches = json_array();
            for (size_t i = 0; i < cl->nmatches; i++)
                json_array_append_new(matches, match_json(&cl->matches[i]));
            json_array_append_new(rules, json_pack("{s:o}", "matches", matches));
        }
        json_array_append_new(groups, json_pack("{s:o}", "rules", rules));
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", a->name ? a->name : "", "namespace",
                  a->ns ? a->ns : "", "scope",
                  scopes[a->scope <= MODEL_AUTHZ_WORKLOAD_SELECTOR ? a->scope : 0], "action",
                  a->action == MODEL_AUTHZ_DENY ? "DENY" : "ALLOW", "groups", groups);
    if (a->dry_run)
        json_object_set_new(o, "dryRun", json_true());
    return o;
}

json_t *ctl_res_json(const model_res_t *r)
{
    const model_out_workload_t *w = model_res_workload(r);
    if (w)
        return json_pack("{s:o}", "workload", workload_json(w));
    const model_out_authz_t *a = model_res_authz(r);
    if (a)
        return json_pack("{s:o}", "authorization", ctl_authz_json(a));
    return json_pack("{s:o}", "service", service_json(model_res_service(r)));
}

static void add_one(const model_res_t *r, void *arg)
{
    json_object_set_new(arg, model_res_name(r), ctl_res_json(r));
}

json_t *ctl_view_json(const model_snapshot_t *s, const model_view_t *v)
{
    json_t *o = json_object();
    model_snapshot_each(s, v, add_one, o);
    return o;
}

static void add_authz(const model_res_t *r, void *arg)
{
    json_object_set_new(arg, model_res_name(r), ctl_authz_json(model_res_authz(r)));
}

json_t *ctl_authz_view_json(const model_snapshot_t *s, const model_view_t *v)
{
    json_t *o = json_object();
    model_snapshot_each_authz(s, v, add_authz, o);
    return o;
}
