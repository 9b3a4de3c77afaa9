/*
 * gateway.c - recognising a network's east-west gateway.
 *
 * Istio 1.27 ambient declares it as a Gateway API Gateway of class
 * istio-east-west labelled topology.istio.io/network, with an HBONE listener
 * and its address in status. Clusters set up before that (and the demo) use
 * a Service in the system namespace with the same label and a load-balancer
 * IP; both are read here, the Gateway winning when a cluster has both.
 */
#include "ctl.h"

#include <stdio.h>
#include <string.h>

#define NETWORK_LABEL "topology.istio.io/network"

static void copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

bool ctl_gateway_from_json(const json_t *obj, ctl_gateway_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *md = json_object_get(obj, "metadata");
    const char *cls = json_string_value(json_object_get(json_object_get(obj, "spec"),
                                                        "gatewayClassName"));
    const char *net =
        json_string_value(json_object_get(json_object_get(md, "labels"), NETWORK_LABEL));
    if (!cls || strcmp(cls, "istio-east-west") != 0 || !net)
        return false;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(json_object_get(obj, "status"), "addresses"), i, a)
    {
        const char *v = json_string_value(json_object_get(a, "value"));
        if (v && model_ip_parse(v, &out->ip) == 0)
            break; /* hostnames cannot be a NetworkAddress; skip them */
    }
    if (!out->ip.len)
        return false;
    out->port = 15008;
    json_t *l;
    json_array_foreach(json_object_get(json_object_get(obj, "spec"), "listeners"), i, l)
    {
        const char *proto = json_string_value(json_object_get(l, "protocol"));
        json_int_t port = json_integer_value(json_object_get(l, "port"));
        if (proto && strcmp(proto, "HBONE") == 0 && port > 0 && port < 65536) {
            out->port = (uint16_t)port;
            break;
        }
    }
    copy(out->network, sizeof(out->network), net);
    copy(out->ns, sizeof(out->ns), json_string_value(json_object_get(md, "namespace")));
    copy(out->name, sizeof(out->name), json_string_value(json_object_get(md, "name")));
    return true;
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
    return true;
}
