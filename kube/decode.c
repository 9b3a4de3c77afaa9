/*
 * decode.c - Kubernetes API objects (jansson JSON) into model structs.
 *
 * Everything here distrusts its input: the JSON may come from a manifest a
 * person wrote, not only from an API server that validated it. Every field is
 * type and range checked and an error names the object and the field path.
 * Absent and JSON null fields take their Kubernetes defaults. Nothing is left
 * allocated on failure: elements of arrays are built in locals and only
 * counted into the struct once complete, so model_obj_free can free any
 * partially built object.
 */
#define _DEFAULT_SOURCE /* timegm */

#include "kube.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define KUBE_MAX_CONDITIONS 256
#define KUBE_MAX_ADDRESSES 100 /* addresses of one endpoint (API server limit) */

#define TD_ANNOTATION "networking.istio.io/traffic-distribution"
#define SVC_NAME_LABEL "kubernetes.io/service-name"

/* Decoding context: where errors go and which object they are about. */
typedef struct kube_dctx {
    char *err;
    size_t errlen;
    char what[192]; /* "Service default/web": prefix of every error */
} kube_dctx_t;

static int kube_fail(kube_dctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int kube_fail(kube_dctx_t *c, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return -1;
    size_t off = 0;
    if (c->what[0]) {
        int n = snprintf(c->err, c->errlen, "%s: ", c->what);
        off = n < 0 ? 0 : (size_t)n >= c->errlen ? c->errlen - 1 : (size_t)n;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + off, c->errlen - off, fmt, ap);
    va_end(ap);
    return -1;
}

static int kube_oom(kube_dctx_t *c)
{
    return kube_fail(c, "out of memory");
}

static const char *kube_jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* "path.key"; "key" at the top, "path" for the value itself (key ""). */
static void kube_path(char *buf, size_t len, const char *path, const char *key)
{
    snprintf(buf, len, "%s%s%s", path, path[0] && key[0] ? "." : "", key);
}

/* The member key of o; NULL when o is NULL, the member absent or JSON null
 * (Kubernetes treats null as absent). */
static json_t *kube_member(const json_t *o, const char *key)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

static int kube_want(kube_dctx_t *c, const json_t *v, json_type t, const char *path,
                     const char *key)
{
    if (json_typeof(v) == t || (t == JSON_TRUE && json_is_boolean(v)))
        return 0;
    char p[256];
    kube_path(p, sizeof(p), path, key);
    static const char *names[] = {"an object", "an array",  "a string",  "an integer",
                                  "a number",  "a boolean", "a boolean", "null"};
    return kube_fail(c, "%s: expected %s, got %s", p, names[t], kube_jtype(v));
}

/* Typed getters: an absent field leaves *out NULL/unset and is no error. */
static int kube_get_str(kube_dctx_t *c, const json_t *o, const char *path, const char *key,
                        const char **out)
{
    json_t *v = kube_member(o, key);
    *out = NULL;
    if (!v)
        return 0;
    if (kube_want(c, v, JSON_STRING, path, key) < 0)
        return -1;
    *out = json_string_value(v);
    return 0;
}

static int kube_get_obj(kube_dctx_t *c, const json_t *o, const char *path, const char *key,
                        const json_t **out)
{
    json_t *v = kube_member(o, key);
    *out = v;
    return v ? kube_want(c, v, JSON_OBJECT, path, key) : 0;
}

static int kube_get_arr(kube_dctx_t *c, const json_t *o, const char *path, const char *key,
                        size_t max, const json_t **out)
{
    json_t *v = kube_member(o, key);
    *out = v;
    if (!v)
        return 0;
    if (kube_want(c, v, JSON_ARRAY, path, key) < 0)
        return -1;
    if (json_array_size(v) > max) {
        char p[256];
        kube_path(p, sizeof(p), path, key);
        return kube_fail(c, "%s: %zu entries, more than the limit of %zu", p, json_array_size(v),
                         max);
    }
    return 0;
}

/* *out: 1 true, 0 false, -1 absent. */
static int kube_get_bool(kube_dctx_t *c, const json_t *o, const char *path, const char *key,
                         int *out)
{
    json_t *v = kube_member(o, key);
    *out = -1;
    if (!v)
        return 0;
    if (kube_want(c, v, JSON_TRUE, path, key) < 0)
        return -1;
    *out = json_is_true(v);
    return 0;
}

/* A port number in 1..65535; *out stays 0 when absent (an error if required). */
static int kube_get_port(kube_dctx_t *c, const json_t *o, const char *path, const char *key,
                         bool required, uint16_t *out)
{
    json_t *v = kube_member(o, key);
    char p[256];
    kube_path(p, sizeof(p), path, key);
    *out = 0;
    if (!v)
        return required ? kube_fail(c, "%s: missing", p) : 0;
    if (kube_want(c, v, JSON_INTEGER, path, key) < 0)
        return -1;
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > 65535)
        return kube_fail(c, "%s: port %lld out of range 1-65535", p, (long long)n);
    *out = (uint16_t)n;
    return 0;
}

/* Copies s (NULL stays NULL). */
static int kube_dup(kube_dctx_t *c, const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return 0;
    *out = strdup(s);
    return *out ? 0 : kube_oom(c);
}

/* An IP address of the given family (0 any, 4 or 16 bytes). */
static int kube_parse_ip(kube_dctx_t *c, const json_t *v, const char *path, int family,
                         model_ip_t *ip)
{
    if (kube_want(c, v, JSON_STRING, path, "") < 0)
        return -1;
    const char *s = json_string_value(v);
    if (model_ip_parse(s, ip) < 0)
        return kube_fail(c, "%s: invalid IP address \"%.64s\"", path, s);
    if (family && ip->len != family)
        return kube_fail(c, "%s: \"%.64s\" is not an IPv%d address", path, s, family == 4 ? 4 : 6);
    return 0;
}

/* ---------- metadata ---------- */

/* n decimal digits at s, or -1. */
static int kube_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* RFC 3339 ("2024-05-01T12:00:00Z", optional fraction and offset) to epoch
 * seconds. Calendar-checked: timegm would silently roll Feb 30 over. */
static int kube_parse_time(const char *s, int64_t *out)
{
    if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || !strchr("Tt ", s[10]) || s[13] != ':' ||
        s[16] != ':')
        return -1;
    int y = kube_digits(s, 4), mo = kube_digits(s + 5, 2), d = kube_digits(s + 8, 2);
    int h = kube_digits(s + 11, 2), mi = kube_digits(s + 14, 2), sec = kube_digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        sec < 0 || sec > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = kube_digits(p + 1, 2), om = kube_digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec == 60 ? 59 : sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d || tm.tm_mon != mo - 1)
        return -1;
    *out = (int64_t)t + (sec == 60) - off;
    return 0;
}

typedef struct kube_meta {
    const char *name, *ns, *uid;
    const json_t *labels, *annotations;
    int64_t created; /* 0 when absent */
    bool deleting;   /* deletionTimestamp set */
} kube_meta_t;

static int kube_meta_time(kube_dctx_t *c, const json_t *md, const char *key, int64_t *t, bool *set)
{
    const char *s;
    if (kube_get_str(c, md, "metadata", key, &s) < 0)
        return -1;
    *set = s != NULL;
    if (s && kube_parse_time(s, t) < 0)
        return kube_fail(c, "metadata.%s: \"%.64s\" is not an RFC 3339 time", key, s);
    return 0;
}

/* Checks that labels is an object of strings of sane size. */
static int kube_check_labels(kube_dctx_t *c, const json_t *labels, const char *path)
{
    if (json_object_size(labels) > KUBE_MAX_LABELS)
        return kube_fail(c, "%s: %zu entries, more than the limit of %d", path,
                         json_object_size(labels), KUBE_MAX_LABELS);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (!json_is_string(v))
            return kube_fail(c, "%s[%.64s]: expected a string, got %s", path, k, kube_jtype(v));
    }
    return 0;
}

/* Reads the object's metadata, checks kind if the object names one, and sets
 * c->what for later errors. */
static int kube_meta(kube_dctx_t *c, const char *kind, const json_t *obj, bool namespaced,
                     kube_meta_t *m)
{
    const json_t *md;
    const char *k;
    memset(m, 0, sizeof(*m));
    snprintf(c->what, sizeof(c->what), "%s", kind);
    if (!json_is_object(obj))
        return kube_fail(c, "expected an object, got %s", obj ? kube_jtype(obj) : "nothing");
    if (kube_get_str(c, obj, "", "kind", &k) < 0)
        return -1;
    if (k && strcmp(k, kind) != 0)
        return kube_fail(c, "kind: \"%.64s\", expected \"%s\"", k, kind);
    if (kube_get_obj(c, obj, "", "metadata", &md) < 0)
        return -1;
    if (!md)
        return kube_fail(c, "metadata: missing");
    if (kube_get_str(c, md, "metadata", "name", &m->name) < 0 ||
        kube_get_str(c, md, "metadata", "namespace", &m->ns) < 0)
        return -1;
    if (!m->name || !m->name[0])
        return kube_fail(c, "metadata.name: missing");
    if (namespaced && (!m->ns || !m->ns[0]))
        return kube_fail(c, "metadata.namespace: missing (%s %.64s)", kind, m->name);
    if (namespaced)
        snprintf(c->what, sizeof(c->what), "%s %.80s/%.80s", kind, m->ns, m->name);
    else
        snprintf(c->what, sizeof(c->what), "%s %.160s", kind, m->name);
    bool created_set;
    if (kube_get_str(c, md, "metadata", "uid", &m->uid) < 0 ||
        kube_get_obj(c, md, "metadata", "labels", &m->labels) < 0 ||
        kube_get_obj(c, md, "metadata", "annotations", &m->annotations) < 0 ||
        kube_meta_time(c, md, "creationTimestamp", &m->created, &created_set) < 0)
        return -1;
    int64_t deleted;
    if (kube_meta_time(c, md, "deletionTimestamp", &deleted, &m->deleting) < 0)
        return -1;
    if (m->labels && kube_check_labels(c, m->labels, "metadata.labels") < 0)
        return -1;
    return 0;
}

/* Labels were type-checked by kube_meta: only memory can fail here. */
static int kube_copy_labels(kube_dctx_t *c, const json_t *labels, model_labels_t *out)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (model_labels_set(out, k, json_string_value(v)) < 0)
            return kube_oom(c);
    }
    return 0;
}

/* ---------- Service ---------- */

static int kube_parse_proto(kube_dctx_t *c, const json_t *o, const char *path, model_proto_t *out)
{
    const char *s;
    *out = MODEL_PROTO_TCP;
    if (kube_get_str(c, o, path, "protocol", &s) < 0)
        return -1;
    if (!s || strcmp(s, "TCP") == 0)
        return 0;
    if (strcmp(s, "UDP") == 0)
        *out = MODEL_PROTO_UDP;
    else if (strcmp(s, "SCTP") == 0)
        *out = MODEL_PROTO_SCTP;
    else
        return kube_fail(c, "%s.protocol: unknown protocol \"%.32s\" (want TCP, UDP or SCTP)", path,
                         s);
    return 0;
}

/* IANA_SVC_NAME, as the API server checks a named targetPort. */
static bool kube_port_name_valid(const char *s)
{
    size_t n = strlen(s);
    bool letter = false;
    if (n < 1 || n > 15 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (islower((unsigned char)s[i]))
            letter = true;
        else if (!isdigit((unsigned char)s[i]) && s[i] != '-')
            return false;
    }
    return letter;
}

static void kube_svc_port_clear(model_svc_port_t *p)
{
    free(p->name);
    free(p->target_port_name);
    free(p->app_protocol);
}

/* targetPort: an integer, a port name, or absent (then the port itself). */
static int kube_target_port(kube_dctx_t *c, const json_t *o, const char *path, model_svc_port_t *p)
{
    json_t *v = kube_member(o, "targetPort");
    if (!v) {
        p->target_port = p->port;
        return 0;
    }
    if (json_is_integer(v))
        return kube_get_port(c, o, path, "targetPort", true, &p->target_port);
    if (!json_is_string(v))
        return kube_fail(c, "%s.targetPort: expected an integer or a string, got %s", path,
                         kube_jtype(v));
    const char *s = json_string_value(v);
    if (!kube_port_name_valid(s))
        return kube_fail(c, "%s.targetPort: \"%.32s\" is not a valid port name", path, s);
    return kube_dup(c, s, &p->target_port_name);
}

static int kube_svc_port(kube_dctx_t *c, const json_t *o, const char *path, model_svc_port_t *p)
{
    const char *name, *app;
    if (kube_want(c, o, JSON_OBJECT, path, "") < 0)
        return -1;
    if (kube_get_str(c, o, path, "name", &name) < 0 ||
        kube_get_port(c, o, path, "port", true, &p->port) < 0 ||
        kube_target_port(c, o, path, p) < 0 || kube_parse_proto(c, o, path, &p->protocol) < 0 ||
        kube_get_str(c, o, path, "appProtocol", &app) < 0)
        return -1;
    if (kube_dup(c, name ? name : "", &p->name) < 0 || kube_dup(c, app, &p->app_protocol) < 0)
        return -1;
    return 0;
}

static int kube_svc_ports(kube_dctx_t *c, const json_t *spec, model_service_t *s)
{
    const json_t *arr;
    if (kube_get_arr(c, spec, "spec", "ports", KUBE_MAX_PORTS, &arr) < 0)
        return -1;
    if (!arr || json_array_size(arr) == 0)
        return 0;
    s->ports = calloc(json_array_size(arr), sizeof(*s->ports));
    if (!s->ports)
        return kube_oom(c);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[64];
        model_svc_port_t p = {0};
        snprintf(path, sizeof(path), "spec.ports[%zu]", i);
        if (kube_svc_port(c, v, path, &p) < 0) {
            kube_svc_port_clear(&p);
            return -1;
        }
        s->ports[s->nports++] = p;
    }
    return 0;
}

/* spec.clusterIPs, or the older spec.clusterIP; "None" means headless and ""
 * (a manifest asking for allocation) means no address yet. */
static int kube_svc_cluster_ips(kube_dctx_t *c, const json_t *spec, model_service_t *s)
{
    const json_t *arr;
    json_t *one = NULL;
    const char *field = "spec.clusterIPs";
    if (kube_get_arr(c, spec, "spec", "clusterIPs", KUBE_MAX_IPS, &arr) < 0)
        return -1;
    if (!arr || json_array_size(arr) == 0) {
        const char *ip;
        if (kube_get_str(c, spec, "spec", "clusterIP", &ip) < 0)
            return -1;
        if (!ip)
            return 0;
        arr = one = json_pack("[s]", ip);
        field = "spec.clusterIP";
        if (!one)
            return kube_oom(c);
    }
    int rc = -1;
    s->cluster_ips = calloc(json_array_size(arr), sizeof(*s->cluster_ips));
    if (!s->cluster_ips) {
        kube_oom(c);
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[64];
        snprintf(path, sizeof(path), one ? "%s" : "%s[%zu]", field, i);
        if (json_is_string(v) && strcmp(json_string_value(v), "None") == 0) {
            s->headless = true;
            continue;
        }
        if (json_is_string(v) && json_string_value(v)[0] == '\0')
            continue;
        if (kube_parse_ip(c, v, path, 0, &s->cluster_ips[s->ncluster_ips]) < 0)
            goto out;
        s->ncluster_ips++;
    }
    if (s->headless && s->ncluster_ips) {
        kube_fail(c, "%s: \"None\" mixed with addresses", field);
        goto out;
    }
    rc = 0;
out:
    json_decref(one);
    return rc;
}

/* Istio's annotation values, matched without regard to case as Istio does.
 * PreferNetwork is the model's default behaviour, so it maps to NONE. */
static bool kube_td_annotation(const char *v, model_traffic_dist_t *td)
{
    if (strcasecmp(v, "PreferClose") == 0 || strcasecmp(v, "PreferSameZone") == 0)
        *td = MODEL_TD_PREFER_CLOSE;
    else if (strcasecmp(v, "PreferSameNode") == 0)
        *td = MODEL_TD_PREFER_SAME_NODE;
    else if (strcasecmp(v, "PreferNetwork") == 0)
        *td = MODEL_TD_NONE;
    else if (strcasecmp(v, "Any") == 0)
        *td = MODEL_TD_ANY;
    else
        return false;
    return true;
}

/* The spec field first; the annotation only when the spec field is unset or
 * unknown, as istiod reads them. Unknown values are ignored: Kubernetes adds
 * new ones over time and a new value must not make a service undecodable. */
static int kube_svc_td(kube_dctx_t *c, const json_t *spec, const kube_meta_t *m, model_service_t *s)
{
    const char *ann, *v;
    if (kube_get_str(c, m->annotations, "metadata.annotations", TD_ANNOTATION, &ann) < 0 ||
        kube_get_str(c, spec, "spec", "trafficDistribution", &v) < 0)
        return -1;
    s->traffic_dist = MODEL_TD_NONE;
    if (v && (strcmp(v, "PreferClose") == 0 || strcmp(v, "PreferSameZone") == 0))
        s->traffic_dist = MODEL_TD_PREFER_CLOSE;
    else if (v && strcmp(v, "PreferSameNode") == 0)
        s->traffic_dist = MODEL_TD_PREFER_SAME_NODE;
    else if (ann)
        kube_td_annotation(ann, &s->traffic_dist);
    return 0;
}

/* status.loadBalancer.ingress[].ip; hostname-only entries are skipped. */
static int kube_svc_lb_ips(kube_dctx_t *c, const json_t *obj, model_service_t *s)
{
    const json_t *st, *lb, *arr;
    if (kube_get_obj(c, obj, "", "status", &st) < 0 ||
        kube_get_obj(c, st, "status", "loadBalancer", &lb) < 0 ||
        kube_get_arr(c, lb, "status.loadBalancer", "ingress", KUBE_MAX_IPS, &arr) < 0)
        return -1;
    if (!arr || json_array_size(arr) == 0)
        return 0;
    s->lb_ips = calloc(json_array_size(arr), sizeof(*s->lb_ips));
    if (!s->lb_ips)
        return kube_oom(c);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[64];
        snprintf(path, sizeof(path), "status.loadBalancer.ingress[%zu]", i);
        if (kube_want(c, v, JSON_OBJECT, path, "") < 0)
            return -1;
        json_t *ip = kube_member(v, "ip");
        strcat(path, ".ip");
        if (ip && kube_parse_ip(c, ip, path, 0, &s->lb_ips[s->nlb_ips]) < 0)
            return -1;
        s->nlb_ips += ip != NULL;
    }
    return 0;
}

static int kube_decode_service(kube_dctx_t *c, const json_t *obj, void **out)
{
    kube_meta_t m;
    const json_t *spec;
    if (kube_meta(c, "Service", obj, true, &m) < 0 || kube_get_obj(c, obj, "", "spec", &spec) < 0)
        return -1;
    model_service_t *s = calloc(1, sizeof(*s));
    if (!s)
        return kube_oom(c);
    s->created = m.created;
    if (kube_dup(c, m.ns, &s->ns) < 0 || kube_dup(c, m.name, &s->name) < 0 ||
        kube_dup(c, m.uid, &s->uid) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &s->labels) < 0) ||
        kube_svc_cluster_ips(c, spec, s) < 0 || kube_svc_ports(c, spec, s) < 0 ||
        kube_svc_td(c, spec, &m, s) < 0 || kube_svc_lb_ips(c, obj, s) < 0) {
        model_obj_free(MODEL_KIND_SERVICE, s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---------- EndpointSlice ---------- */

static int kube_ep_ports(kube_dctx_t *c, const json_t *obj, model_endpointslice_t *es)
{
    const json_t *arr;
    if (kube_get_arr(c, obj, "", "ports", KUBE_MAX_PORTS, &arr) < 0)
        return -1;
    if (!arr || json_array_size(arr) == 0)
        return 0;
    es->ports = calloc(json_array_size(arr), sizeof(*es->ports));
    if (!es->ports)
        return kube_oom(c);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[32];
        const char *name;
        model_ep_port_t p = {0};
        snprintf(path, sizeof(path), "ports[%zu]", i);
        if (kube_want(c, v, JSON_OBJECT, path, "") < 0 ||
            kube_get_str(c, v, path, "name", &name) < 0 ||
            kube_get_port(c, v, path, "port", false, &p.port) < 0 ||
            kube_parse_proto(c, v, path, &p.protocol) < 0 ||
            kube_dup(c, name ? name : "", &p.name) < 0)
            return -1;
        es->ports[es->nports++] = p;
    }
    return 0;
}

static void kube_endpoint_clear(model_endpoint_t *e)
{
    free(e->node);
    free(e->zone);
    free(e->pod);
}

/* Conditions with the defaults of the API: ready absent means ready,
 * serving absent means whatever ready is, terminating absent means not. */
static int kube_ep_conditions(kube_dctx_t *c, const json_t *ep, const char *path,
                              model_endpoint_t *e)
{
    const json_t *cond;
    char p[64];
    int ready, serving, term;
    snprintf(p, sizeof(p), "%s.conditions", path);
    if (kube_get_obj(c, ep, path, "conditions", &cond) < 0 ||
        kube_get_bool(c, cond, p, "ready", &ready) < 0 ||
        kube_get_bool(c, cond, p, "serving", &serving) < 0 ||
        kube_get_bool(c, cond, p, "terminating", &term) < 0)
        return -1;
    e->ready = ready != 0;
    e->serving = serving < 0 ? e->ready : serving != 0;
    e->terminating = term > 0;
    return 0;
}

static int kube_endpoint(kube_dctx_t *c, const json_t *ep, const char *path, int family,
                         model_endpoint_t *e)
{
    const json_t *addrs, *ref;
    const char *node, *zone, *rkind = NULL, *rname = NULL;
    char p[96];
    if (kube_want(c, ep, JSON_OBJECT, path, "") < 0 ||
        kube_get_arr(c, ep, path, "addresses", KUBE_MAX_ADDRESSES, &addrs) < 0)
        return -1;
    if (!addrs || json_array_size(addrs) == 0)
        return kube_fail(c, "%s.addresses: missing or empty", path);
    snprintf(p, sizeof(p), "%s.addresses[0]", path);
    if (kube_parse_ip(c, json_array_get(addrs, 0), p, family, &e->ip) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s.targetRef", path);
    if (kube_ep_conditions(c, ep, path, e) < 0 ||
        kube_get_str(c, ep, path, "nodeName", &node) < 0 ||
        kube_get_str(c, ep, path, "zone", &zone) < 0 ||
        kube_get_obj(c, ep, path, "targetRef", &ref) < 0 ||
        kube_get_str(c, ref, p, "kind", &rkind) < 0 || kube_get_str(c, ref, p, "name", &rname) < 0)
        return -1;
    if (kube_dup(c, node, &e->node) < 0 || kube_dup(c, zone, &e->zone) < 0)
        return -1;
    if (rkind && rname && strcmp(rkind, "Pod") == 0 && kube_dup(c, rname, &e->pod) < 0)
        return -1;
    return 0;
}

static int kube_ep_endpoints(kube_dctx_t *c, const json_t *obj, int family,
                             model_endpointslice_t *es)
{
    const json_t *arr;
    if (kube_get_arr(c, obj, "", "endpoints", KUBE_MAX_ENDPOINTS, &arr) < 0)
        return -1;
    if (!arr || json_array_size(arr) == 0 || family == 0)
        return 0;
    es->endpoints = calloc(json_array_size(arr), sizeof(*es->endpoints));
    if (!es->endpoints)
        return kube_oom(c);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[32];
        model_endpoint_t e = {0};
        snprintf(path, sizeof(path), "endpoints[%zu]", i);
        if (kube_endpoint(c, v, path, family, &e) < 0) {
            kube_endpoint_clear(&e);
            return -1;
        }
        es->endpoints[es->nendpoints++] = e;
    }
    return 0;
}

/* addressType as the byte length of its addresses; 0 for FQDN (skipped). */
static int kube_ep_family(kube_dctx_t *c, const json_t *obj, int *family)
{
    const char *t;
    if (kube_get_str(c, obj, "", "addressType", &t) < 0)
        return -1;
    if (!t)
        return kube_fail(c, "addressType: missing");
    if (strcmp(t, "IPv4") == 0)
        *family = 4;
    else if (strcmp(t, "IPv6") == 0)
        *family = 16;
    else if (strcmp(t, "FQDN") == 0)
        *family = 0;
    else
        return kube_fail(c, "addressType: unknown type \"%.32s\" (want IPv4, IPv6 or FQDN)", t);
    return 0;
}

static int kube_decode_endpointslice(kube_dctx_t *c, const json_t *obj, void **out)
{
    kube_meta_t m;
    const char *svc = NULL;
    int family = 0;
    if (kube_meta(c, "EndpointSlice", obj, true, &m) < 0 ||
        kube_get_str(c, m.labels, "metadata.labels", SVC_NAME_LABEL, &svc) < 0 ||
        kube_ep_family(c, obj, &family) < 0)
        return -1;
    if (!svc || !svc[0])
        return kube_fail(c, "metadata.labels." SVC_NAME_LABEL ": missing");
    model_endpointslice_t *es = calloc(1, sizeof(*es));
    if (!es)
        return kube_oom(c);
    if (kube_dup(c, m.ns, &es->ns) < 0 || kube_dup(c, m.name, &es->name) < 0 ||
        kube_dup(c, svc, &es->service) < 0 || kube_ep_ports(c, obj, es) < 0 ||
        kube_ep_endpoints(c, obj, family, es) < 0) {
        model_obj_free(MODEL_KIND_ENDPOINTSLICE, es);
        return -1;
    }
    *out = es;
    return 0;
}

/* ---------- Pod ---------- */

/* status.podIPs[].ip, or the older status.podIP. A pending pod has none. */
static int kube_pod_ips(kube_dctx_t *c, const json_t *st, model_pod_t *p)
{
    const json_t *arr;
    const char *one;
    if (kube_get_arr(c, st, "status", "podIPs", KUBE_MAX_IPS, &arr) < 0 ||
        kube_get_str(c, st, "status", "podIP", &one) < 0)
        return -1;
    size_t n = arr ? json_array_size(arr) : 0;
    if (n == 0 && (!one || !one[0]))
        return 0;
    p->ips = calloc(n ? n : 1, sizeof(*p->ips));
    if (!p->ips)
        return kube_oom(c);
    if (n == 0)
        return kube_parse_ip(c, json_object_get(st, "podIP"), "status.podIP", 0,
                             &p->ips[p->nips++]);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[48];
        const char *ip;
        snprintf(path, sizeof(path), "status.podIPs[%zu]", i);
        if (kube_want(c, v, JSON_OBJECT, path, "") < 0 || kube_get_str(c, v, path, "ip", &ip) < 0)
            return -1;
        if (!ip)
            return kube_fail(c, "%s.ip: missing", path);
        strcat(path, ".ip");
        if (kube_parse_ip(c, json_object_get(v, "ip"), path, 0, &p->ips[p->nips]) < 0)
            return -1;
        p->nips++;
    }
    return 0;
}

/* Ready means phase Running and condition Ready "True". */
static int kube_pod_ready(kube_dctx_t *c, const json_t *st, bool *ready)
{
    const char *phase;
    const json_t *conds;
    bool cond_ready = false;
    *ready = false;
    if (kube_get_str(c, st, "status", "phase", &phase) < 0 ||
        kube_get_arr(c, st, "status", "conditions", KUBE_MAX_CONDITIONS, &conds) < 0)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(conds, i, v)
    {
        char path[48];
        const char *type, *status;
        snprintf(path, sizeof(path), "status.conditions[%zu]", i);
        if (kube_want(c, v, JSON_OBJECT, path, "") < 0 ||
            kube_get_str(c, v, path, "type", &type) < 0 ||
            kube_get_str(c, v, path, "status", &status) < 0)
            return -1;
        if (type && strcmp(type, "Ready") == 0)
            cond_ready = status && strcmp(status, "True") == 0;
    }
    *ready = phase && strcmp(phase, "Running") == 0 && cond_ready;
    return 0;
}

static int kube_decode_pod(kube_dctx_t *c, const json_t *obj, void **out)
{
    kube_meta_t m;
    const json_t *spec, *st;
    const char *node, *sa;
    if (kube_meta(c, "Pod", obj, true, &m) < 0 || kube_get_obj(c, obj, "", "spec", &spec) < 0 ||
        kube_get_obj(c, obj, "", "status", &st) < 0 ||
        kube_get_str(c, spec, "spec", "nodeName", &node) < 0 ||
        kube_get_str(c, spec, "spec", "serviceAccountName", &sa) < 0)
        return -1;
    model_pod_t *p = calloc(1, sizeof(*p));
    if (!p)
        return kube_oom(c);
    p->terminating = m.deleting;
    if (kube_dup(c, m.ns, &p->ns) < 0 || kube_dup(c, m.name, &p->name) < 0 ||
        kube_dup(c, m.uid, &p->uid) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &p->labels) < 0) ||
        kube_dup(c, node && node[0] ? node : NULL, &p->node) < 0 ||
        kube_dup(c, sa && sa[0] ? sa : "default", &p->service_account) < 0 ||
        kube_pod_ips(c, st, p) < 0 || kube_pod_ready(c, st, &p->ready) < 0) {
        model_obj_free(MODEL_KIND_POD, p);
        return -1;
    }
    *out = p;
    return 0;
}

/* ---------- Node, Namespace ---------- */

static int kube_decode_node(kube_dctx_t *c, const json_t *obj, void **out)
{
    kube_meta_t m;
    if (kube_meta(c, "Node", obj, false, &m) < 0)
        return -1;
    model_node_t *n = calloc(1, sizeof(*n));
    if (!n)
        return kube_oom(c);
    if (kube_dup(c, m.name, &n->name) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &n->labels) < 0)) {
        model_obj_free(MODEL_KIND_NODE, n);
        return -1;
    }
    *out = n;
    return 0;
}

static int kube_decode_namespace(kube_dctx_t *c, const json_t *obj, void **out)
{
    kube_meta_t m;
    if (kube_meta(c, "Namespace", obj, false, &m) < 0)
        return -1;
    model_namespace_t *n = calloc(1, sizeof(*n));
    if (!n)
        return kube_oom(c);
    if (kube_dup(c, m.name, &n->name) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &n->labels) < 0)) {
        model_obj_free(MODEL_KIND_NAMESPACE, n);
        return -1;
    }
    *out = n;
    return 0;
}

/* ---------- kinds ---------- */

static const struct {
    const char *api_version, *kind;
    model_kind_t k;
} kube_kinds[] = {
    {"v1", "Namespace", MODEL_KIND_NAMESPACE},
    {"v1", "Service", MODEL_KIND_SERVICE},
    {"discovery.k8s.io/v1", "EndpointSlice", MODEL_KIND_ENDPOINTSLICE},
    {"v1", "Pod", MODEL_KIND_POD},
    {"v1", "Node", MODEL_KIND_NODE},
};

int kube_kind_lookup(const char *api_version, const char *kind, model_kind_t *out)
{
    if (!api_version || !kind)
        return -1;
    for (size_t i = 0; i < sizeof(kube_kinds) / sizeof(kube_kinds[0]); i++) {
        if (strcmp(kube_kinds[i].api_version, api_version) == 0 &&
            strcmp(kube_kinds[i].kind, kind) == 0) {
            if (out)
                *out = kube_kinds[i].k;
            return 0;
        }
    }
    return -1;
}

int kube_decode(model_kind_t kind, const json_t *obj, void **out, char *err, size_t errlen)
{
    kube_dctx_t c = {.err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    *out = NULL;
    switch (kind) {
    case MODEL_KIND_NAMESPACE:
        return kube_decode_namespace(&c, obj, out);
    case MODEL_KIND_SERVICE:
        return kube_decode_service(&c, obj, out);
    case MODEL_KIND_ENDPOINTSLICE:
        return kube_decode_endpointslice(&c, obj, out);
    case MODEL_KIND_POD:
        return kube_decode_pod(&c, obj, out);
    case MODEL_KIND_NODE:
        return kube_decode_node(&c, obj, out);
    case MODEL_KIND__COUNT:
        break;
    }
    return kube_fail(&c, "unknown model kind %d", (int)kind);
}

/* ---------- ServiceScope ---------- */

/* Rejects members of o not in allowed (NULL terminated). */
static int kube_only_fields(kube_dctx_t *c, const json_t *o, const char *path,
                            const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], k) != 0)
            i++;
        if (!allowed[i])
            return kube_fail(c, "%s: unknown field \"%.64s\"", path, k);
    }
    return 0;
}

static int kube_sel_labels(kube_dctx_t *c, const json_t *sel, const char *path, model_selector_t *s)
{
    const json_t *ml;
    const char *k;
    json_t *v;
    char e[MODEL_ERRLEN];
    if (kube_get_obj(c, sel, path, "matchLabels", &ml) < 0)
        return -1;
    if (ml && json_object_size(ml) > KUBE_MAX_LABELS)
        return kube_fail(c, "%s.matchLabels: too many entries", path);
    json_object_foreach((json_t *)ml, k, v)
    {
        if (!json_is_string(v))
            return kube_fail(c, "%s.matchLabels[%.64s]: expected a string, got %s", path, k,
                             kube_jtype(v));
        if (model_selector_add_label(s, k, json_string_value(v), e, sizeof(e)) < 0)
            return kube_fail(c, "%s.matchLabels[%.64s]: %s", path, k, e);
    }
    return 0;
}

/* The values of a matchExpression, checked against what the operator needs. */
static int kube_sel_values(kube_dctx_t *c, const json_t *x, const char *path, model_selop_t op,
                           const char ***vals, size_t *n)
{
    const json_t *arr;
    *vals = NULL;
    *n = 0;
    if (kube_get_arr(c, x, path, "values", KUBE_MAX_SELECTOR_VALUES, &arr) < 0)
        return -1;
    *n = arr ? json_array_size(arr) : 0;
    bool want = op == MODEL_SELOP_IN || op == MODEL_SELOP_NOT_IN;
    if (want && *n == 0)
        return kube_fail(c, "%s.values: operator %s needs at least one value", path,
                         model_selop_name(op));
    if (!want && *n > 0)
        return kube_fail(c, "%s.values: operator %s takes no values", path, model_selop_name(op));
    if (*n == 0)
        return 0;
    *vals = calloc(*n, sizeof(**vals));
    if (!*vals)
        return kube_oom(c);
    for (size_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return kube_fail(c, "%s.values[%zu]: expected a string, got %s", path, i,
                             kube_jtype(v));
        (*vals)[i] = json_string_value(v);
    }
    return 0;
}

static int kube_sel_expr(kube_dctx_t *c, const json_t *x, const char *path, model_selector_t *s)
{
    static const char *const fields[] = {"key", "operator", "values", NULL};
    const char *key, *opname, **vals = NULL;
    size_t n = 0;
    model_selop_t op;
    char e[MODEL_ERRLEN];
    if (kube_want(c, x, JSON_OBJECT, path, "") < 0 || kube_only_fields(c, x, path, fields) < 0 ||
        kube_get_str(c, x, path, "key", &key) < 0 ||
        kube_get_str(c, x, path, "operator", &opname) < 0)
        return -1;
    if (!key)
        return kube_fail(c, "%s.key: missing", path);
    if (!opname)
        return kube_fail(c, "%s.operator: missing", path);
    if (model_selop_parse(opname, &op) < 0)
        return kube_fail(c,
                         "%s.operator: unknown operator \"%.32s\" (want In, NotIn, Exists "
                         "or DoesNotExist)",
                         path, opname);
    int rc = kube_sel_values(c, x, path, op, &vals, &n);
    if (rc == 0 && model_selector_add_expr(s, key, op, vals, n, e, sizeof(e)) < 0)
        rc = kube_fail(c, "%s: %s", path, e);
    free(vals);
    return rc;
}

/* A metav1.LabelSelector; absent gives NULL, which matches everything. */
static int kube_selector(kube_dctx_t *c, const json_t *rule, const char *path, const char *key,
                         model_selector_t **out)
{
    static const char *const fields[] = {"matchLabels", "matchExpressions", NULL};
    const json_t *sel, *exprs;
    char p[96], xp[160];
    *out = NULL;
    kube_path(p, sizeof(p), path, key);
    if (kube_get_obj(c, rule, path, key, &sel) < 0)
        return -1;
    if (!sel)
        return 0;
    if (kube_only_fields(c, sel, p, fields) < 0 ||
        kube_get_arr(c, sel, p, "matchExpressions", KUBE_MAX_RULES, &exprs) < 0)
        return -1;
    model_selector_t *s = model_selector_new();
    if (!s)
        return kube_oom(c);
    if (kube_sel_labels(c, sel, p, s) < 0)
        goto fail;
    size_t i;
    json_t *x;
    json_array_foreach(exprs, i, x)
    {
        snprintf(xp, sizeof(xp), "%s.matchExpressions[%zu]", p, i);
        if (kube_sel_expr(c, x, xp, s) < 0)
            goto fail;
    }
    *out = s;
    return 0;
fail:
    model_selector_free(s);
    return -1;
}

static void kube_rule_clear(model_scope_rule_t *r)
{
    free(r->origin);
    model_selector_free(r->namespace_sel);
    model_selector_free(r->service_sel);
}

static int kube_rule(kube_dctx_t *c, const json_t *o, const char *path, const char *origin,
                     model_scope_rule_t *r)
{
    static const char *const fields[] = {"namespaceSelector", "servicesSelector", "scope", NULL};
    const char *scope;
    if (kube_want(c, o, JSON_OBJECT, path, "") < 0 || kube_only_fields(c, o, path, fields) < 0 ||
        kube_get_str(c, o, path, "scope", &scope) < 0)
        return -1;
    if (!scope)
        return kube_fail(c, "%s.scope: missing", path);
    if (strcmp(scope, "GLOBAL") == 0)
        r->scope = MODEL_SCOPE_GLOBAL;
    else if (strcmp(scope, "LOCAL") == 0)
        r->scope = MODEL_SCOPE_LOCAL;
    else
        return kube_fail(c, "%s.scope: unknown scope \"%.32s\" (want GLOBAL or LOCAL)", path,
                         scope);
    if (kube_selector(c, o, path, "namespaceSelector", &r->namespace_sel) < 0 ||
        kube_selector(c, o, path, "servicesSelector", &r->service_sel) < 0)
        return -1;
    return kube_dup(c, origin, &r->origin);
}

/* Decodes every rule of arr first and only then appends them, so that an
 * invalid rule leaves r as it was. */
static int kube_rules(kube_dctx_t *c, const json_t *arr, const char *path, const char *origin,
                      model_scope_rules_t *r)
{
    size_t n = json_array_size(arr), i;
    if (n == 0)
        return 0;
    if (n > KUBE_MAX_RULES)
        return kube_fail(c, "%s: %zu rules, more than the limit of %d", path, n, KUBE_MAX_RULES);
    model_scope_rule_t *tmp = calloc(n, sizeof(*tmp));
    if (!tmp)
        return kube_oom(c);
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        char p[64], o[256];
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        snprintf(o, sizeof(o), "%s[%zu]", origin, i);
        rc = kube_rule(c, json_array_get(arr, i), p, o, &tmp[i]);
    }
    for (i = 0; i < n; i++) {
        if (rc == 0 && model_scope_rules_add(r, tmp[i]) < 0)
            rc = kube_oom(c); /* add freed tmp[i]; the rest are freed below */
        else if (rc != 0)
            kube_rule_clear(&tmp[i]);
    }
    free(tmp);
    return rc;
}

int kube_decode_servicescope(const json_t *obj, model_scope_rules_t *r, char *err, size_t errlen)
{
    kube_dctx_t c = {.err = err, .errlen = errlen};
    const json_t *md, *spec, *rules;
    const char *av, *kind, *name;
    char origin[192];
    if (err && errlen)
        err[0] = '\0';
    snprintf(c.what, sizeof(c.what), "ServiceScope");
    if (!json_is_object(obj))
        return kube_fail(&c, "expected an object, got %s", obj ? kube_jtype(obj) : "nothing");
    if (kube_get_str(&c, obj, "", "apiVersion", &av) < 0 ||
        kube_get_str(&c, obj, "", "kind", &kind) < 0)
        return -1;
    if (av && strcmp(av, "meshfed.io/v1alpha1") != 0)
        return kube_fail(&c, "apiVersion: \"%.64s\", expected \"meshfed.io/v1alpha1\"", av);
    if (kind && strcmp(kind, "ServiceScope") != 0)
        return kube_fail(&c, "kind: \"%.64s\", expected \"ServiceScope\"", kind);
    if (kube_get_obj(&c, obj, "", "metadata", &md) < 0 ||
        kube_get_str(&c, md, "metadata", "name", &name) < 0)
        return -1;
    if (!name || !name[0])
        return kube_fail(&c, "metadata.name: missing");
    snprintf(c.what, sizeof(c.what), "ServiceScope %.160s", name);
    snprintf(origin, sizeof(origin), "ServiceScope/%.160s", name);
    if (kube_get_obj(&c, obj, "", "spec", &spec) < 0 ||
        kube_get_arr(&c, spec, "spec", "rules", SIZE_MAX, &rules) < 0)
        return -1;
    return kube_rules(&c, rules, "spec.rules", origin, r);
}

int kube_decode_scope_configs(const json_t *arr, const char *origin, model_scope_rules_t *r,
                              char *err, size_t errlen)
{
    kube_dctx_t c = {.err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    if (!origin)
        origin = "MeshConfig";
    snprintf(c.what, sizeof(c.what), "%.160s", origin);
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return kube_fail(&c, "serviceScopeConfigs: expected an array, got %s", kube_jtype(arr));
    return kube_rules(&c, arr, "serviceScopeConfigs", origin, r);
}
