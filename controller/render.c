/*
 * render.c - resources as JSON, with the field names of the istio.workload
 * protos (proto3 JSON style), for /debug/config_dump and --once.
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

static json_t *workload_json(const model_out_workload_t *w)
{
    json_t *o = json_object();
    set_str(o, "uid", w->uid);
    set_str(o, "name", w->name);
    set_str(o, "namespace", w->ns);
    json_t *addrs = json_array();
    for (size_t i = 0; i < w->naddrs; i++)
        json_array_append_new(addrs, ip_json(&w->addrs[i]));
    json_object_set_new(o, "addresses", addrs);
    set_str(o, "network", w->network);
    json_object_set_new(o, "tunnelProtocol",
                        json_string(w->tunnel == MODEL_TUNNEL_HBONE ? "HBONE" : "NONE"));
    set_str(o, "hostname", w->hostname);
    if (w->native_tunnel)
        json_object_set_new(o, "nativeTunnel", json_true());
    if (w->host_network)
        json_object_set_new(o, "networkMode", json_string("HOST_NETWORK"));
    set_str(o, "trustDomain", w->trust_domain);
    set_str(o, "serviceAccount", w->service_account);
    set_str(o, "node", w->node);
    set_str(o, "clusterId", w->cluster_id);
    set_str(o, "workloadName", w->workload_name);
    set_str(o, "canonicalName", w->canonical_name);
    set_str(o, "canonicalRevision", w->canonical_revision);
    static const char *const types[] = {"DEPLOYMENT", "CRONJOB", "POD", "JOB"};
    json_object_set_new(o, "workloadType",
                        json_string(w->workload_type < 4 ? types[w->workload_type] : "UNKNOWN"));
    json_object_set_new(o, "status", json_string(w->healthy ? "HEALTHY" : "UNHEALTHY"));
    if (w->region || w->zone || w->subzone) {
        json_t *l = json_object();
        set_str(l, "region", w->region);
        set_str(l, "zone", w->zone);
        set_str(l, "subzone", w->subzone);
        json_object_set_new(o, "locality", l);
    }
    if (w->gateway) {
        json_t *g = json_object();
        if (w->gateway->hostname)
            json_object_set_new(g, "hostname",
                                json_pack("{s:s, s:s}", "namespace",
                                          w->gateway->ns ? w->gateway->ns : "", "hostname",
                                          w->gateway->hostname));
        else
            json_object_set_new(
                g, "address",
                netaddr_json(&(model_net_addr_t){w->gateway->network, w->gateway->ip}));
        json_object_set_new(g, "hboneMtlsPort", json_integer(w->gateway->hbone_port));
        json_object_set_new(o, "networkGateway", g);
    }
    if (w->gateway && w->gateway->capacity)
        json_object_set_new(o, "capacity", json_integer(w->gateway->capacity));
    json_t *svcs = json_object();
    for (size_t i = 0; i < w->nservices; i++)
        json_object_set_new(
            svcs, w->services[i].key,
            json_pack("{s:o}", "ports", ports_json(w->services[i].ports, w->services[i].nports)));
    json_object_set_new(o, "services", svcs);
    return o;
}

static json_t *service_json(const model_out_service_t *s)
{
    json_t *o = json_object();
    set_str(o, "name", s->name);
    set_str(o, "namespace", s->ns);
    set_str(o, "hostname", s->hostname);
    json_object_set_new(o, "canonical", json_true());
    json_t *addrs = json_array();
    for (size_t i = 0; i < s->naddrs; i++)
        json_array_append_new(addrs, netaddr_json(&s->addrs[i]));
    json_object_set_new(o, "addresses", addrs);
    json_object_set_new(o, "ports", ports_json(s->ports, s->nports));
    if (s->nsans) {
        json_t *sans = json_array();
        for (size_t i = 0; i < s->nsans; i++)
            json_array_append_new(sans, json_string(s->sans[i]));
        json_object_set_new(o, "subjectAltNames", sans);
    }
    if (s->lb_mode != MODEL_LB_UNSPECIFIED || s->lb_allow_all) {
        static const char *const modes[] = {"UNSPECIFIED_MODE", "STRICT", "FAILOVER"};
        json_t *prefs = json_array();
        for (size_t i = 0; i < s->nlb_prefs; i++)
            json_array_append_new(prefs, json_string(lb_scopes[s->lb_prefs[i]]));
        json_t *lb = json_pack("{s:o, s:s}", "routingPreference", prefs, "mode",
                               modes[s->lb_mode <= MODEL_LB_FAILOVER ? s->lb_mode : 0]);
        if (s->lb_allow_all)
            json_object_set_new(lb, "healthPolicy", json_string("ALLOW_ALL"));
        json_object_set_new(o, "loadBalancing", lb);
    }
    static const char *const fams[] = {"AUTOMATIC", "IPV4_ONLY", "IPV6_ONLY", "DUAL"};
    if (s->ip_families != MODEL_IPF_AUTOMATIC)
        json_object_set_new(o, "ipFamilies", json_string(fams[s->ip_families & 3]));
    return o;
}

json_t *ctl_res_json(const model_res_t *r)
{
    const model_out_workload_t *w = model_res_workload(r);
    if (w)
        return json_pack("{s:o}", "workload", workload_json(w));
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
