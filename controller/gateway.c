/*
 * gateway.c - recognising a network's east-west gateway.
 *
 * Istio 1.27+ ambient declares it as a Gateway API Gateway of class
 * istio-east-west labelled topology.istio.io/network, with an HBONE listener
 * that terminates TLS and its address (IP or hostname) in status; istiod
 * reads remote clusters' Gateways this way (ambient networks.go). Clusters
 * set up before that (and the demo) use a Service in the system namespace
 * with the same label and a load-balancer IP; both are read here, the
 * Gateway winning when a cluster has both.
 */
#include "ctl_int.h"

#include <stdio.h>
#include <string.h>

#define NETWORK_LABEL "topology.istio.io/network"
#define SA_ANNOTATION "gateway.istio.io/service-account"

static void copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static const char *str_at(const json_t *o, const char *a, const char *b)
{
    return json_string_value(json_object_get(json_object_get(o, a), b));
}

/* The first HBONE listener that terminates TLS: its port, or 0. */
static uint16_t hbone_port(const json_t *spec)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(spec, "listeners"), i, l)
    {
        const char *proto = json_string_value(json_object_get(l, "protocol"));
        const char *mode = str_at(l, "tls", "mode");
        json_int_t port = json_integer_value(json_object_get(l, "port"));
        if (proto && strcmp(proto, "HBONE") == 0 && mode && strcmp(mode, "Terminate") == 0 &&
            port > 0 && port < 65536)
            return (uint16_t)port;
    }
    return 0;
}

/* The first usable status address: type IPAddress (the Gateway API
 * default when absent) parsed into out->ip, or type Hostname. */
static bool status_address(const json_t *obj, ctl_gateway_t *out)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(json_object_get(obj, "status"), "addresses"), i, a)
    {
        const char *type = json_string_value(json_object_get(a, "type"));
        const char *v = json_string_value(json_object_get(a, "value"));
        if (!v || !*v)
            continue;
        if ((!type || strcmp(type, "IPAddress") == 0) && model_ip_parse(v, &out->ip) == 0)
            return true;
        if (type && strcmp(type, "Hostname") == 0 && strlen(v) < sizeof(out->hostname)) {
            copy(out->hostname, sizeof(out->hostname), v);
            return true;
        }
    }
    return false;
}

int ctl_gateway_from_json(const json_t *obj, ctl_gateway_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *md = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
    const char *cls = json_string_value(json_object_get(spec, "gatewayClassName"));
    if (!cls || strcmp(cls, "istio-east-west") != 0)
        return 0;
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    const char *name = json_string_value(json_object_get(md, "name"));
    const char *net = str_at(md, "labels", NETWORK_LABEL);
    const char *sa = str_at(md, "annotations", SA_ANNOTATION);
    copy(out->ns, sizeof(out->ns), ns);
    copy(out->name, sizeof(out->name), name);
    /* istio-east-west gateways are deployed under their own name */
    copy(out->sa, sizeof(out->sa), sa && *sa ? sa : name);
    copy(out->network, sizeof(out->network), net);
    if (!ns || !name)
        snprintf(out->problem, sizeof(out->problem), "Gateway without namespace or name");
    else if (!net || !*net)
        snprintf(out->problem, sizeof(out->problem), "Gateway %s/%s has no " NETWORK_LABEL " label",
                 ns, name);
    else if (!(out->port = hbone_port(spec)))
        snprintf(out->problem, sizeof(out->problem),
                 "Gateway %s/%s has no HBONE listener with tls.mode Terminate", ns, name);
    else if (!status_address(obj, out))
        snprintf(out->problem, sizeof(out->problem),
                 "Gateway %s/%s has no IPAddress or Hostname in status.addresses yet", ns, name);
    return out->problem[0] ? -1 : 1;
}

bool ctl_gateway_from_service(const model_service_t *s, const char *system_namespace,
                              ctl_gateway_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *net = model_labels_get(&s->labels, NETWORK_LABEL);
    if (strcmp(s->ns, system_namespace) != 0 || !s->nlb_ips || !net)
        return false;
    out->ip = s->lb_ips[0];
    out->port = 15008;
    for (size_t i = 0; i < s->nports; i++)
        if (s->ports[i].name && strcmp(s->ports[i].name, "tls-hbone") == 0)
            out->port = s->ports[i].port;
    copy(out->network, sizeof(out->network), net);
    copy(out->ns, sizeof(out->ns), s->ns);
    copy(out->name, sizeof(out->name), s->name);
    copy(out->sa, sizeof(out->sa), s->name);
    return true;
}
