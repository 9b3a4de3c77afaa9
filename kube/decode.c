/*
 * decode.c - Kubernetes API objects (JSON) into model structs.
 *
 * Everything here distrusts its input: the JSON may come from a manifest a
 * person wrote, not only from an API server that validated it. Every field is
 * type and range checked and an error names the object and the field path.
 * Absent and JSON null fields take their Kubernetes defaults. Nothing is left
 * allocated on failure: elements of arrays are built in locals and only
 * counted into the struct once complete, so model_obj_free can free any
 * partially built object.
 *
 * The decoders read the watcher's parsed values (jv.h) directly; jansson
 * values (manifests, config files, tests) are first copied into the same
 * slots by kube_jfrom_json, their strings borrowed, no text between. The error
 * context (object, field path) is kept as pointers and only formatted when
 * an error happens: the watcher decodes every object of every list.
 */
#define _DEFAULT_SOURCE /* timegm */

#include "kube_int.h"

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
#define CANARY_WEIGHT_ANNOTATION "istio.io/use-waypoint-canary-weight"
#define AMBIENT_ANNOTATION "ambient.istio.io/redirection"
#define SVC_NAME_LABEL "kubernetes.io/service-name"

typedef kube_jv_t jv_t;

size_t kube_path_fmt(char *buf, size_t len, const kube_path_t *p)
{
    if (!p)
        return 0;
    size_t n = kube_path_fmt(buf, len, p->up);
    int w = 0;
    if (n < len && p->key)
        w = snprintf(buf + n, len - n, "%s%s", n && p->key[0] ? "." : "", p->key);
    else if (n < len)
        w = snprintf(buf + n, len - n, "[%zu]", p->idx);
    return w > 0 ? n + (size_t)w : n;
}

/* "<what>: <path>: <message>"; path may be NULL. */
int kube_fail(kube_dctx_t *c, const kube_path_t *p, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return -1;
    char path[256] = "";
    int n;
    kube_path_fmt(path, sizeof(path), p);
    if (c->ns)
        n = snprintf(c->err, c->errlen, "%s %.80s/%.80s: ", c->kind, c->ns, c->name);
    else if (c->name)
        n = snprintf(c->err, c->errlen, "%s %.160s: ", c->kind, c->name);
    else if (c->kind)
        n = snprintf(c->err, c->errlen, "%.160s: ", c->kind);
    else
        n = 0;
    size_t off = n < 0 ? 0 : (size_t)n >= c->errlen ? c->errlen - 1 : (size_t)n;
    if (path[0]) {
        n = snprintf(c->err + off, c->errlen - off, "%s: ", path);
        off = n < 0 ? off : off + (size_t)n >= c->errlen ? c->errlen - 1 : off + (size_t)n;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + off, c->errlen - off, fmt, ap);
    va_end(ap);
    return -1;
}

int kube_oom(kube_dctx_t *c)
{
    return kube_fail(c, NULL, "out of memory");
}

/* The member key of o; NULL when o is NULL, the member absent or JSON null
 * (Kubernetes treats null as absent). */
const jv_t *kube_member(const jv_t *o, const char *key)
{
    const jv_t *v = kube_jget(o, key);
    return v && v->type != KUBE_J_NULL ? v : NULL;
}

/* Checks that v (at p) has type t; KUBE_J_TRUE stands for either boolean. */
int kube_want(kube_dctx_t *c, const jv_t *v, kube_jtype_t t, const kube_path_t *p)
{
    if (v->type == t || (t == KUBE_J_TRUE && v->type == KUBE_J_FALSE))
        return 0;
    static const char *const names[] = {"null",     "a boolean", "a boolean", "an integer",
                                        "a number", "a string",  "an array",  "an object"};
    return kube_fail(c, p, "expected %s, got %s", names[t], kube_jtype_name(v));
}

/* Typed getters of member key of o (path p): an absent field leaves *out
 * NULL/unset and is no error. */
int kube_get(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *key, kube_jtype_t t,
             const jv_t **out)
{
    const jv_t *v = kube_member(o, key);
    *out = NULL;
    if (!v)
        return 0;
    kube_path_t at = {p, key, 0};
    if (kube_want(c, v, t, &at) < 0)
        return -1;
    *out = v;
    return 0;
}

int kube_get_str(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *key,
                 const char **out)
{
    const jv_t *v;
    int rc = kube_get(c, o, p, key, KUBE_J_STRING, &v);
    *out = v ? v->v.s : NULL;
    return rc;
}

int kube_get_obj(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *key,
                 const jv_t **out)
{
    return kube_get(c, o, p, key, KUBE_J_OBJECT, out);
}

int kube_get_arr(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *key, size_t max,
                 const jv_t **out)
{
    if (kube_get(c, o, p, key, KUBE_J_ARRAY, out) < 0)
        return -1;
    if (*out && (*out)->len > max) {
        kube_path_t at = {p, key, 0};
        return kube_fail(c, &at, "%u entries, more than the limit of %zu", (*out)->len, max);
    }
    return 0;
}

/* *out: 1 true, 0 false, -1 absent. */
static int kube_get_bool(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *key,
                         int *out)
{
    const jv_t *v;
    int rc = kube_get(c, o, p, key, KUBE_J_TRUE, &v);
    *out = v ? v->type == KUBE_J_TRUE : -1;
    return rc;
}

/* A port number in 1..65535; *out stays 0 when absent (an error if required). */
static int kube_get_port(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *key,
                         bool required, uint16_t *out)
{
    const jv_t *v;
    kube_path_t at = {p, key, 0};
    *out = 0;
    if (kube_get(c, o, p, key, KUBE_J_INT, &v) < 0)
        return -1;
    if (!v)
        return required ? kube_fail(c, &at, "missing") : 0;
    if (v->v.i < 1 || v->v.i > 65535)
        return kube_fail(c, &at, "port %lld out of range 1-65535", (long long)v->v.i);
    *out = (uint16_t)v->v.i;
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

/* An IP address (value v at p) of the given family (0 any, 4 or 16 bytes). */
static int kube_parse_ip(kube_dctx_t *c, const jv_t *v, const kube_path_t *p, int family,
                         model_ip_t *ip)
{
    if (kube_want(c, v, KUBE_J_STRING, p) < 0)
        return -1;
    const char *s = v->v.s;
    if (model_ip_parse(s, ip) < 0)
        return kube_fail(c, p, "invalid IP address \"%.64s\"", s);
    if (family && ip->len != family)
        return kube_fail(c, p, "\"%.64s\" is not an IPv%d address", s, family == 4 ? 4 : 6);
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
int kube_parse_rfc3339(const char *s, int64_t *out)
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

static const kube_path_t kube_p_metadata = {NULL, "metadata", 0};
static const kube_path_t kube_p_spec = {NULL, "spec", 0};
static const kube_path_t kube_p_status = {NULL, "status", 0};
static const kube_path_t kube_p_labels = {&kube_p_metadata, "labels", 0};
static const kube_path_t kube_p_annotations = {&kube_p_metadata, "annotations", 0};

static int kube_meta_time(kube_dctx_t *c, const jv_t *md, const char *key, int64_t *t, bool *set)
{
    const char *s;
    if (kube_get_str(c, md, &kube_p_metadata, key, &s) < 0)
        return -1;
    *set = s != NULL;
    if (s && kube_parse_rfc3339(s, t) < 0) {
        kube_path_t at = {&kube_p_metadata, key, 0};
        return kube_fail(c, &at, "\"%.64s\" is not an RFC 3339 time", s);
    }
    return 0;
}

/* Checks that labels (at p) is an object of strings of sane size. */
static int kube_check_labels(kube_dctx_t *c, const jv_t *labels, const kube_path_t *p)
{
    if (labels->len > KUBE_MAX_LABELS)
        return kube_fail(c, p, "%u entries, more than the limit of %d", labels->len,
                         KUBE_MAX_LABELS);
    size_t i;
    const jv_t *k;
    KUBE_JOBJECT_FOREACH(labels, i, k)
    {
        if (k[1].type != KUBE_J_STRING) {
            char path[128];
            kube_path_fmt(path, sizeof(path), p);
            return kube_fail(c, NULL, "%s[%.64s]: expected a string, got %s", path, k->v.s,
                             kube_jtype_name(k + 1));
        }
    }
    return 0;
}

/* Reads the object's metadata, checks kind if the object names one, and sets
 * the error context. */
int kube_meta(kube_dctx_t *c, const char *kind, const jv_t *obj, bool namespaced, kube_meta_t *m)
{
    const jv_t *md;
    const char *k;
    memset(m, 0, sizeof(*m));
    c->kind = kind;
    if (!kube_jis(obj, KUBE_J_OBJECT))
        return kube_fail(c, NULL, "expected an object, got %s", kube_jtype_name(obj));
    if (kube_get_str(c, obj, NULL, "kind", &k) < 0)
        return -1;
    if (k && strcmp(k, kind) != 0)
        return kube_fail(c, NULL, "kind: \"%.64s\", expected \"%s\"", k, kind);
    if (kube_get_obj(c, obj, NULL, "metadata", &md) < 0)
        return -1;
    if (!md)
        return kube_fail(c, &kube_p_metadata, "missing");
    if (kube_get_str(c, md, &kube_p_metadata, "name", &m->name) < 0 ||
        kube_get_str(c, md, &kube_p_metadata, "namespace", &m->ns) < 0)
        return -1;
    if (!m->name || !m->name[0])
        return kube_fail(c, NULL, "metadata.name: missing");
    if (namespaced && (!m->ns || !m->ns[0]))
        return kube_fail(c, NULL, "metadata.namespace: missing (%s %.64s)", kind, m->name);
    c->name = m->name;
    c->ns = namespaced ? m->ns : NULL;
    bool created_set;
    if (kube_get_str(c, md, &kube_p_metadata, "uid", &m->uid) < 0 ||
        kube_get_obj(c, md, &kube_p_metadata, "labels", &m->labels) < 0 ||
        kube_get_obj(c, md, &kube_p_metadata, "annotations", &m->annotations) < 0 ||
        kube_meta_time(c, md, "creationTimestamp", &m->created, &created_set) < 0)
        return -1;
    int64_t deleted;
    if (kube_meta_time(c, md, "deletionTimestamp", &deleted, &m->deleting) < 0)
        return -1;
    if (m->labels && kube_check_labels(c, m->labels, &kube_p_labels) < 0)
        return -1;
    return 0;
}

/* Labels were type-checked by kube_meta: only memory can fail here. */
int kube_copy_labels(kube_dctx_t *c, const jv_t *labels, model_labels_t *out)
{
    size_t i;
    const jv_t *k;
    KUBE_JOBJECT_FOREACH(labels, i, k)
    {
        if (model_labels_set(out, k->v.s, k[1].v.s) < 0)
            return kube_oom(c);
    }
    return 0;
}

/* ---------- Service ---------- */

static int kube_parse_proto(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, model_proto_t *out)
{
    const char *s;
    *out = MODEL_PROTO_TCP;
    if (kube_get_str(c, o, p, "protocol", &s) < 0)
        return -1;
    if (!s || strcmp(s, "TCP") == 0)
        return 0;
    if (strcmp(s, "UDP") == 0) {
        *out = MODEL_PROTO_UDP;
    } else if (strcmp(s, "SCTP") == 0) {
        *out = MODEL_PROTO_SCTP;
    } else {
        kube_path_t at = {p, "protocol", 0};
        return kube_fail(c, &at, "unknown protocol \"%.32s\" (want TCP, UDP or SCTP)", s);
    }
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
static int kube_target_port(kube_dctx_t *c, const jv_t *o, const kube_path_t *p,
                            model_svc_port_t *sp)
{
    const jv_t *v = kube_member(o, "targetPort");
    kube_path_t at = {p, "targetPort", 0};
    if (!v) {
        sp->target_port = sp->port;
        return 0;
    }
    if (v->type == KUBE_J_INT)
        return kube_get_port(c, o, p, "targetPort", true, &sp->target_port);
    if (v->type != KUBE_J_STRING)
        return kube_fail(c, &at, "expected an integer or a string, got %s", kube_jtype_name(v));
    if (!kube_port_name_valid(v->v.s))
        return kube_fail(c, &at, "\"%.32s\" is not a valid port name", v->v.s);
    return kube_dup(c, v->v.s, &sp->target_port_name);
}

static int kube_svc_port(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, model_svc_port_t *sp)
{
    const char *name, *app;
    if (kube_want(c, o, KUBE_J_OBJECT, p) < 0)
        return -1;
    if (kube_get_str(c, o, p, "name", &name) < 0 ||
        kube_get_port(c, o, p, "port", true, &sp->port) < 0 || kube_target_port(c, o, p, sp) < 0 ||
        kube_parse_proto(c, o, p, &sp->protocol) < 0 ||
        kube_get_str(c, o, p, "appProtocol", &app) < 0)
        return -1;
    if (kube_dup(c, name ? name : "", &sp->name) < 0 || kube_dup(c, app, &sp->app_protocol) < 0)
        return -1;
    return 0;
}

static int kube_svc_ports(kube_dctx_t *c, const jv_t *spec, model_service_t *s)
{
    const jv_t *arr, *v;
    if (kube_get_arr(c, spec, &kube_p_spec, "ports", KUBE_MAX_PORTS, &arr) < 0)
        return -1;
    if (!arr || arr->len == 0)
        return 0;
    s->ports = calloc(arr->len, sizeof(*s->ports));
    if (!s->ports)
        return kube_oom(c);
    kube_path_t ports = {&kube_p_spec, "ports", 0};
    size_t i;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&ports, NULL, i};
        model_svc_port_t sp = {0};
        if (kube_svc_port(c, v, &at, &sp) < 0) {
            kube_svc_port_clear(&sp);
            return -1;
        }
        s->ports[s->nports++] = sp;
    }
    return 0;
}

/* One entry of spec.clusterIPs (or spec.clusterIP), at p. */
static int kube_svc_cluster_ip(kube_dctx_t *c, const jv_t *v, const kube_path_t *p,
                               model_service_t *s)
{
    if (v->type == KUBE_J_STRING && strcmp(v->v.s, "None") == 0) {
        s->headless = true;
        return 0;
    }
    if (v->type == KUBE_J_STRING && v->v.s[0] == '\0')
        return 0;
    if (kube_parse_ip(c, v, p, 0, &s->cluster_ips[s->ncluster_ips]) < 0)
        return -1;
    s->ncluster_ips++;
    return 0;
}

/* spec.clusterIPs, or the older spec.clusterIP; "None" means headless and ""
 * (a manifest asking for allocation) means no address yet. */
static int kube_svc_cluster_ips(kube_dctx_t *c, const jv_t *spec, model_service_t *s)
{
    const jv_t *arr, *one = NULL, *v;
    kube_path_t field = {&kube_p_spec, "clusterIPs", 0};
    if (kube_get_arr(c, spec, &kube_p_spec, "clusterIPs", KUBE_MAX_IPS, &arr) < 0)
        return -1;
    if (!arr || arr->len == 0) {
        if (kube_get(c, spec, &kube_p_spec, "clusterIP", KUBE_J_STRING, &one) < 0)
            return -1;
        if (!one)
            return 0;
        field.key = "clusterIP";
    }
    s->cluster_ips = calloc(one ? 1 : arr->len, sizeof(*s->cluster_ips));
    if (!s->cluster_ips)
        return kube_oom(c);
    if (one) {
        if (kube_svc_cluster_ip(c, one, &field, s) < 0)
            return -1;
    } else {
        size_t i;
        KUBE_JARRAY_FOREACH(arr, i, v)
        {
            kube_path_t at = {&field, NULL, i};
            if (kube_svc_cluster_ip(c, v, &at, s) < 0)
                return -1;
        }
    }
    if (s->headless && s->ncluster_ips)
        return kube_fail(c, &field, "\"None\" mixed with addresses");
    return 0;
}

/* Istio's annotation values, matched without regard to case as Istio does
 * (model.GetTrafficDistribution); any other non-empty value is "Any", which
 * also stops a Service from inheriting its namespace's. */
static model_traffic_dist_t kube_td_annotation(const char *v)
{
    if (!v || !*v)
        return MODEL_TD_NONE;
    if (strcasecmp(v, "PreferClose") == 0 || strcasecmp(v, "PreferSameZone") == 0)
        return MODEL_TD_PREFER_CLOSE;
    if (strcasecmp(v, "PreferSameNode") == 0)
        return MODEL_TD_PREFER_SAME_NODE;
    return MODEL_TD_ANY;
}

/* A Service's or Namespace's weighted waypoint canary share. */
static int kube_canary_weight(kube_dctx_t *c, const kube_meta_t *m, uint8_t *out)
{
    const char *w;
    if (kube_get_str(c, m->annotations, &kube_p_annotations, CANARY_WEIGHT_ANNOTATION, &w) < 0)
        return -1;
    *out = model_canary_weight(w);
    return 0;
}

/* The spec field first; the annotation only when the spec field is unset or
 * unknown, as istiod reads them. Unknown values are ignored: Kubernetes adds
 * new ones over time and a new value must not make a service undecodable. */
static int kube_svc_td(kube_dctx_t *c, const jv_t *spec, const kube_meta_t *m, model_service_t *s)
{
    const char *ann, *v;
    if (kube_get_str(c, m->annotations, &kube_p_annotations, TD_ANNOTATION, &ann) < 0 ||
        kube_get_str(c, spec, &kube_p_spec, "trafficDistribution", &v) < 0)
        return -1;
    s->traffic_dist = MODEL_TD_NONE;
    if (v && (strcmp(v, "PreferClose") == 0 || strcmp(v, "PreferSameZone") == 0))
        s->traffic_dist = MODEL_TD_PREFER_CLOSE;
    else if (v && strcmp(v, "PreferSameNode") == 0)
        s->traffic_dist = MODEL_TD_PREFER_SAME_NODE;
    else
        s->traffic_dist = kube_td_annotation(ann);
    return 0;
}

/* spec.type, internalTrafficPolicy, publishNotReadyAddresses and
 * ipFamilies, the parts of a Service istiod's load balancing and address
 * families come from. Unknown values are ignored like unset ones. */
static int kube_svc_policy(kube_dctx_t *c, const jv_t *spec, model_service_t *s)
{
    static const kube_path_t famp = {&kube_p_spec, "ipFamilies", 0};
    const char *type, *itp;
    int pnra;
    const jv_t *fams, *v;
    if (kube_get_str(c, spec, &kube_p_spec, "type", &type) < 0 ||
        kube_get_str(c, spec, &kube_p_spec, "internalTrafficPolicy", &itp) < 0 ||
        kube_get_bool(c, spec, &kube_p_spec, "publishNotReadyAddresses", &pnra) < 0 ||
        kube_get_arr(c, spec, &kube_p_spec, "ipFamilies", 2, &fams) < 0)
        return -1;
    s->external_name = type && strcmp(type, "ExternalName") == 0;
    s->itp_local = itp && strcmp(itp, "Local") == 0;
    s->publish_not_ready = pnra == 1;
    s->ip_families = MODEL_IPF_AUTOMATIC;
    size_t i;
    if (!fams)
        return 0;
    KUBE_JARRAY_FOREACH(fams, i, v)
    {
        kube_path_t at = {&famp, NULL, i};
        if (kube_want(c, v, KUBE_J_STRING, &at) < 0)
            return -1;
        model_ip_families_t f = strcmp(v->v.s, "IPv4") == 0 ? MODEL_IPF_V4 : MODEL_IPF_V6;
        s->ip_families = i == 0 ? f : MODEL_IPF_DUAL;
    }
    return 0;
}

/* status.loadBalancer.ingress[].ip; hostname-only entries are skipped. */
static int kube_svc_lb_ips(kube_dctx_t *c, const jv_t *obj, model_service_t *s)
{
    static const kube_path_t lbp = {&kube_p_status, "loadBalancer", 0};
    static const kube_path_t ingp = {&lbp, "ingress", 0};
    const jv_t *st, *lb, *arr, *v;
    if (kube_get_obj(c, obj, NULL, "status", &st) < 0 ||
        kube_get_obj(c, st, &kube_p_status, "loadBalancer", &lb) < 0 ||
        kube_get_arr(c, lb, &lbp, "ingress", KUBE_MAX_IPS, &arr) < 0)
        return -1;
    if (!arr || arr->len == 0)
        return 0;
    s->lb_ips = calloc(arr->len, sizeof(*s->lb_ips));
    if (!s->lb_ips)
        return kube_oom(c);
    size_t i;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&ingp, NULL, i}, ipp = {&at, "ip", 0};
        if (kube_want(c, v, KUBE_J_OBJECT, &at) < 0)
            return -1;
        const jv_t *ip = kube_member(v, "ip");
        if (ip && kube_parse_ip(c, ip, &ipp, 0, &s->lb_ips[s->nlb_ips]) < 0)
            return -1;
        s->nlb_ips += ip != NULL;
    }
    return 0;
}

static int kube_decode_service(kube_dctx_t *c, const jv_t *obj, void **out)
{
    kube_meta_t m;
    const jv_t *spec;
    if (kube_meta(c, "Service", obj, true, &m) < 0 || kube_get_obj(c, obj, NULL, "spec", &spec) < 0)
        return -1;
    model_service_t *s = calloc(1, sizeof(*s));
    if (!s)
        return kube_oom(c);
    s->created = m.created;
    if (kube_dup(c, m.ns, &s->ns) < 0 || kube_dup(c, m.name, &s->name) < 0 ||
        kube_dup(c, m.uid, &s->uid) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &s->labels) < 0) ||
        kube_svc_cluster_ips(c, spec, s) < 0 || kube_svc_ports(c, spec, s) < 0 ||
        kube_svc_td(c, spec, &m, s) < 0 || kube_canary_weight(c, &m, &s->canary_weight) < 0 ||
        kube_svc_policy(c, spec, s) < 0 || kube_svc_lb_ips(c, obj, s) < 0) {
        model_obj_free(MODEL_KIND_SERVICE, s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---------- EndpointSlice ---------- */

static int kube_ep_ports(kube_dctx_t *c, const jv_t *obj, model_endpointslice_t *es)
{
    static const kube_path_t ports = {NULL, "ports", 0};
    const jv_t *arr, *v;
    if (kube_get_arr(c, obj, NULL, "ports", KUBE_MAX_PORTS, &arr) < 0)
        return -1;
    if (!arr || arr->len == 0)
        return 0;
    es->ports = calloc(arr->len, sizeof(*es->ports));
    if (!es->ports)
        return kube_oom(c);
    size_t i;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&ports, NULL, i};
        const char *name;
        model_ep_port_t p = {0};
        if (kube_want(c, v, KUBE_J_OBJECT, &at) < 0 || kube_get_str(c, v, &at, "name", &name) < 0 ||
            kube_get_port(c, v, &at, "port", false, &p.port) < 0 ||
            kube_parse_proto(c, v, &at, &p.protocol) < 0 ||
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
static int kube_ep_conditions(kube_dctx_t *c, const jv_t *ep, const kube_path_t *p,
                              model_endpoint_t *e)
{
    const jv_t *cond;
    kube_path_t cp = {p, "conditions", 0};
    int ready, serving, term;
    if (kube_get_obj(c, ep, p, "conditions", &cond) < 0 ||
        kube_get_bool(c, cond, &cp, "ready", &ready) < 0 ||
        kube_get_bool(c, cond, &cp, "serving", &serving) < 0 ||
        kube_get_bool(c, cond, &cp, "terminating", &term) < 0)
        return -1;
    e->ready = ready != 0;
    e->serving = serving < 0 ? e->ready : serving != 0;
    e->terminating = term > 0;
    return 0;
}

static int kube_endpoint(kube_dctx_t *c, const jv_t *ep, const kube_path_t *p, int family,
                         model_endpoint_t *e)
{
    const jv_t *addrs, *ref;
    const char *node, *zone, *rkind = NULL, *rname = NULL;
    kube_path_t ap = {p, "addresses", 0}, a0 = {&ap, NULL, 0}, rp = {p, "targetRef", 0};
    if (kube_want(c, ep, KUBE_J_OBJECT, p) < 0 ||
        kube_get_arr(c, ep, p, "addresses", KUBE_MAX_ADDRESSES, &addrs) < 0)
        return -1;
    if (!addrs || addrs->len == 0)
        return kube_fail(c, &ap, "missing or empty");
    if (kube_parse_ip(c, addrs + 1, &a0, family, &e->ip) < 0)
        return -1;
    if (kube_ep_conditions(c, ep, p, e) < 0 || kube_get_str(c, ep, p, "nodeName", &node) < 0 ||
        kube_get_str(c, ep, p, "zone", &zone) < 0 ||
        kube_get_obj(c, ep, p, "targetRef", &ref) < 0 ||
        kube_get_str(c, ref, &rp, "kind", &rkind) < 0 ||
        kube_get_str(c, ref, &rp, "name", &rname) < 0)
        return -1;
    if (kube_dup(c, node, &e->node) < 0 || kube_dup(c, zone, &e->zone) < 0)
        return -1;
    if (rkind && rname && strcmp(rkind, "Pod") == 0 && kube_dup(c, rname, &e->pod) < 0)
        return -1;
    return 0;
}

static int kube_ep_endpoints(kube_dctx_t *c, const jv_t *obj, int family, model_endpointslice_t *es)
{
    static const kube_path_t eps = {NULL, "endpoints", 0};
    const jv_t *arr, *v;
    if (kube_get_arr(c, obj, NULL, "endpoints", KUBE_MAX_ENDPOINTS, &arr) < 0)
        return -1;
    if (!arr || arr->len == 0 || family == 0)
        return 0;
    es->endpoints = calloc(arr->len, sizeof(*es->endpoints));
    if (!es->endpoints)
        return kube_oom(c);
    size_t i;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&eps, NULL, i};
        model_endpoint_t e = {0};
        if (kube_endpoint(c, v, &at, family, &e) < 0) {
            kube_endpoint_clear(&e);
            return -1;
        }
        es->endpoints[es->nendpoints++] = e;
    }
    return 0;
}

/* addressType as the byte length of its addresses; 0 for FQDN (skipped). */
static int kube_ep_family(kube_dctx_t *c, const jv_t *obj, int *family)
{
    static const kube_path_t at = {NULL, "addressType", 0};
    const char *t;
    if (kube_get_str(c, obj, NULL, "addressType", &t) < 0)
        return -1;
    if (!t)
        return kube_fail(c, &at, "missing");
    if (strcmp(t, "IPv4") == 0)
        *family = 4;
    else if (strcmp(t, "IPv6") == 0)
        *family = 16;
    else if (strcmp(t, "FQDN") == 0)
        *family = 0;
    else
        return kube_fail(c, &at, "unknown type \"%.32s\" (want IPv4, IPv6 or FQDN)", t);
    return 0;
}

static int kube_decode_endpointslice(kube_dctx_t *c, const jv_t *obj, void **out)
{
    kube_meta_t m;
    const char *svc = NULL;
    int family = 0;
    if (kube_meta(c, "EndpointSlice", obj, true, &m) < 0 ||
        kube_get_str(c, m.labels, &kube_p_labels, SVC_NAME_LABEL, &svc) < 0 ||
        kube_ep_family(c, obj, &family) < 0)
        return -1;
    if (!svc || !svc[0])
        return kube_fail(c, NULL, "metadata.labels." SVC_NAME_LABEL ": missing");
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
static int kube_pod_ips(kube_dctx_t *c, const jv_t *st, model_pod_t *p)
{
    static const kube_path_t ipsp = {&kube_p_status, "podIPs", 0};
    static const kube_path_t onep = {&kube_p_status, "podIP", 0};
    const jv_t *arr, *one, *v;
    if (kube_get_arr(c, st, &kube_p_status, "podIPs", KUBE_MAX_IPS, &arr) < 0 ||
        kube_get(c, st, &kube_p_status, "podIP", KUBE_J_STRING, &one) < 0)
        return -1;
    size_t n = arr ? arr->len : 0;
    if (n == 0 && (!one || !one->v.s[0]))
        return 0;
    p->ips = calloc(n ? n : 1, sizeof(*p->ips));
    if (!p->ips)
        return kube_oom(c);
    if (n == 0)
        return kube_parse_ip(c, one, &onep, 0, &p->ips[p->nips++]);
    size_t i;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&ipsp, NULL, i}, ipp = {&at, "ip", 0};
        const jv_t *ip;
        if (kube_want(c, v, KUBE_J_OBJECT, &at) < 0 ||
            kube_get(c, v, &at, "ip", KUBE_J_STRING, &ip) < 0)
            return -1;
        if (!ip)
            return kube_fail(c, &ipp, "missing");
        if (kube_parse_ip(c, ip, &ipp, 0, &p->ips[p->nips]) < 0)
            return -1;
        p->nips++;
    }
    return 0;
}

/* The pod's controller, "Kind/name", as istiod reads it for the workload
 * name (kube GetWorkloadMetaFromPod): only for a pod its controller named
 * (generateName set) and only the ownerReference marked controller. */
static int kube_pod_owner(kube_dctx_t *c, const jv_t *obj, model_pod_t *p)
{
    static const kube_path_t ownp = {&kube_p_metadata, "ownerReferences", 0};
    const jv_t *md, *owners, *v;
    const char *gen;
    if (kube_get_obj(c, obj, NULL, "metadata", &md) < 0 ||
        kube_get_str(c, md, &kube_p_metadata, "generateName", &gen) < 0 ||
        kube_get_arr(c, md, &kube_p_metadata, "ownerReferences", KUBE_MAX_LABELS, &owners) < 0)
        return -1;
    if (!gen || !*gen || !owners)
        return 0;
    size_t i;
    KUBE_JARRAY_FOREACH(owners, i, v)
    {
        kube_path_t at = {&ownp, NULL, i};
        const char *kind, *name;
        int ctl;
        if (kube_want(c, v, KUBE_J_OBJECT, &at) < 0 || kube_get_str(c, v, &at, "kind", &kind) < 0 ||
            kube_get_str(c, v, &at, "name", &name) < 0 ||
            kube_get_bool(c, v, &at, "controller", &ctl) < 0)
            return -1;
        if (ctl != 1 || !kind || !name || !*kind || !*name)
            continue;
        size_t n = strlen(kind) + strlen(name) + 2;
        if (!(p->owner = malloc(n)))
            return kube_oom(c);
        snprintf(p->owner, n, "%s/%s", kind, name);
        return 0;
    }
    return 0;
}

/* Ready means condition Ready "True", whatever the phase (istiod's
 * IsPodReady); terminal means phase Succeeded or Failed. */
static int kube_pod_ready(kube_dctx_t *c, const jv_t *st, model_pod_t *p)
{
    static const kube_path_t condp = {&kube_p_status, "conditions", 0};
    const char *phase;
    const jv_t *conds, *v;
    bool cond_ready = false;
    if (kube_get_str(c, st, &kube_p_status, "phase", &phase) < 0 ||
        kube_get_arr(c, st, &kube_p_status, "conditions", KUBE_MAX_CONDITIONS, &conds) < 0)
        return -1;
    size_t i;
    if (conds) {
        KUBE_JARRAY_FOREACH(conds, i, v)
        {
            kube_path_t at = {&condp, NULL, i};
            const char *type, *status;
            if (kube_want(c, v, KUBE_J_OBJECT, &at) < 0 ||
                kube_get_str(c, v, &at, "type", &type) < 0 ||
                kube_get_str(c, v, &at, "status", &status) < 0)
                return -1;
            if (type && strcmp(type, "Ready") == 0)
                cond_ready = status && strcmp(status, "True") == 0;
        }
    }
    p->ready = cond_ready;
    p->terminal = phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
    return 0;
}

static int kube_decode_pod(kube_dctx_t *c, const jv_t *obj, void **out)
{
    kube_meta_t m;
    const jv_t *spec, *st;
    const char *node, *sa, *redir;
    int hostnet;
    if (kube_meta(c, "Pod", obj, true, &m) < 0 || kube_get_obj(c, obj, NULL, "spec", &spec) < 0 ||
        kube_get_obj(c, obj, NULL, "status", &st) < 0 ||
        kube_get_str(c, spec, &kube_p_spec, "nodeName", &node) < 0 ||
        kube_get_str(c, spec, &kube_p_spec, "serviceAccountName", &sa) < 0 ||
        kube_get_bool(c, spec, &kube_p_spec, "hostNetwork", &hostnet) < 0 ||
        kube_get_str(c, m.annotations, &kube_p_annotations, AMBIENT_ANNOTATION, &redir) < 0)
        return -1;
    model_pod_t *p = calloc(1, sizeof(*p));
    if (!p)
        return kube_oom(c);
    p->terminating = m.deleting;
    p->host_network = hostnet == 1;
    /* istio-cni writes it once the pod's traffic is redirected to ztunnel */
    p->ambient = redir && strcmp(redir, "enabled") == 0;
    if (kube_dup(c, m.ns, &p->ns) < 0 || kube_dup(c, m.name, &p->name) < 0 ||
        kube_dup(c, m.uid, &p->uid) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &p->labels) < 0) ||
        kube_dup(c, node && node[0] ? node : NULL, &p->node) < 0 ||
        kube_dup(c, sa && sa[0] ? sa : "default", &p->service_account) < 0 ||
        kube_pod_ips(c, st, p) < 0 || kube_pod_ready(c, st, p) < 0 ||
        kube_pod_owner(c, obj, p) < 0) {
        model_obj_free(MODEL_KIND_POD, p);
        return -1;
    }
    *out = p;
    return 0;
}

/* ---------- Node, Namespace ---------- */

static int kube_decode_node(kube_dctx_t *c, const jv_t *obj, void **out)
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

static int kube_decode_namespace(kube_dctx_t *c, const jv_t *obj, void **out)
{
    kube_meta_t m;
    if (kube_meta(c, "Namespace", obj, false, &m) < 0)
        return -1;
    model_namespace_t *n = calloc(1, sizeof(*n));
    const char *td;
    if (!n)
        return kube_oom(c);
    if (kube_get_str(c, m.annotations, &kube_p_annotations, TD_ANNOTATION, &td) < 0) {
        free(n);
        return -1;
    }
    n->traffic_dist = kube_td_annotation(td);
    if (kube_canary_weight(c, &m, &n->canary_weight) < 0 || kube_dup(c, m.name, &n->name) < 0 ||
        (m.labels && kube_copy_labels(c, m.labels, &n->labels) < 0)) {
        model_obj_free(MODEL_KIND_NAMESPACE, n);
        return -1;
    }
    *out = n;
    return 0;
}

static int kube_selector(kube_dctx_t *c, const jv_t *rule, const kube_path_t *p, const char *key,
                         model_selector_t **out);

/* Which namespaces may bind to the waypoint: allowedRoutes.namespaces of the
 * HBONE listener on port 15008, as istiod reads it (without a waypoint
 * inbound binding annotation, which meshfed does not read); no such
 * listener, or no allowedRoutes, is Same. A selector that does not parse
 * takes no namespace rather than dropping the Gateway. */
static void kube_gateway_from(const jv_t *obj, model_gateway_t *g)
{
    const jv_t *ls = kube_member(kube_member(obj, "spec"), "listeners"), *l;
    size_t i;
    if (!ls || !kube_jis(ls, KUBE_J_ARRAY))
        return;
    KUBE_JARRAY_FOREACH(ls, i, l)
    {
        const jv_t *proto = kube_member(l, "protocol"), *port = kube_member(l, "port");
        if (!proto || !kube_jis(proto, KUBE_J_STRING) || strcmp(proto->v.s, "HBONE") != 0 ||
            !port || !kube_jis(port, KUBE_J_INT) || port->v.i != 15008)
            continue;
        const jv_t *nss = kube_member(kube_member(l, "allowedRoutes"), "namespaces");
        const jv_t *from = kube_member(nss, "from");
        const char *f = from && kube_jis(from, KUBE_J_STRING) ? from->v.s : "Same";
        if (strcmp(f, "All") == 0) {
            g->from = MODEL_WP_FROM_ALL;
        } else if (strcmp(f, "Selector") == 0) {
            g->from = MODEL_WP_FROM_SELECTOR;
            char err[MODEL_ERRLEN];
            kube_dctx_t sc = {.err = err, .errlen = sizeof(err)};
            (void)kube_selector(&sc, nss, NULL, "selector", &g->from_sel);
        }
        return;
    }
}

/* A Gateway of any class, as a waypoint: its istio.io/waypoint-for label and
 * its first status address of type Hostname, else of type IPAddress (the
 * Gateway API default when type is absent, as for east-west gateways). An
 * entry that is not what it says is skipped, as istiod does: a Gateway's
 * status is the controller's to fix, not a reason to drop the object. */
static int kube_decode_gateway(kube_dctx_t *c, const jv_t *obj, void **out)
{
    kube_meta_t m;
    if (kube_meta(c, "Gateway", obj, true, &m) < 0)
        return -1;
    model_gateway_t *g = calloc(1, sizeof(*g));
    if (!g)
        return kube_oom(c);
    const char *wf = NULL;
    if (kube_get_str(c, m.labels, &kube_p_labels, "istio.io/waypoint-for", &wf) < 0)
        goto fail;
    g->waypoint_for = !wf                           ? MODEL_WP_SERVICE
                      : strcmp(wf, "service") == 0  ? MODEL_WP_SERVICE
                      : strcmp(wf, "workload") == 0 ? MODEL_WP_WORKLOAD
                      : strcmp(wf, "all") == 0      ? MODEL_WP_ALL
                      : strcmp(wf, "none") == 0     ? MODEL_WP_NONE
                                                    : MODEL_WP_OTHER;
    const jv_t *addrs = kube_member(kube_member(obj, "status"), "addresses"), *a;
    const char *host = NULL;
    size_t i;
    if (addrs && kube_jis(addrs, KUBE_J_ARRAY)) {
        g->ready = addrs->len > 0;
        KUBE_JARRAY_FOREACH(addrs, i, a)
        {
            const jv_t *t = kube_member(a, "type"), *v = kube_member(a, "value");
            const char *type = t && kube_jis(t, KUBE_J_STRING) ? t->v.s : NULL;
            const char *val = v && kube_jis(v, KUBE_J_STRING) ? v->v.s : NULL;
            if (!val || !*val)
                continue;
            if (type && strcmp(type, "Hostname") == 0) {
                host = val;
                break;
            }
            if (!g->ip.len && (!type || strcmp(type, "IPAddress") == 0))
                (void)model_ip_parse(val, &g->ip);
        }
    }
    if (host)
        memset(&g->ip, 0, sizeof(g->ip));
    kube_gateway_from(obj, g);
    if (kube_dup(c, m.name, &g->name) < 0 || kube_dup(c, m.ns, &g->ns) < 0 ||
        kube_dup(c, host, &g->hostname) < 0)
        goto fail;
    *out = g;
    return 0;
fail:
    model_obj_free(MODEL_KIND_GATEWAY, g);
    return -1;
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
    {"security.istio.io/v1", "AuthorizationPolicy", MODEL_KIND_AUTHZ_POLICY},
    {"security.istio.io/v1beta1", "AuthorizationPolicy", MODEL_KIND_AUTHZ_POLICY},
    {"security.istio.io/v1", "PeerAuthentication", MODEL_KIND_PEER_AUTHN},
    {"security.istio.io/v1beta1", "PeerAuthentication", MODEL_KIND_PEER_AUTHN},
    {"gateway.networking.k8s.io/v1", "Gateway", MODEL_KIND_GATEWAY},
    {"gateway.networking.k8s.io/v1beta1", "Gateway", MODEL_KIND_GATEWAY},
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

int kube_decode_jv(model_kind_t kind, const kube_jv_t *obj, void **out, char *err, size_t errlen)
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
    case MODEL_KIND_AUTHZ_POLICY:
    case MODEL_KIND_PEER_AUTHN:
        return kube_decode_sec_jv(kind, obj, out, err, errlen);
    case MODEL_KIND_GATEWAY:
        return kube_decode_gateway(&c, obj, out);
    case MODEL_KIND__COUNT:
        break;
    }
    return kube_fail(&c, NULL, "unknown model kind %d", (int)kind);
}

/* A jansson value as parsed values borrowing its strings; NULL (with err)
 * when j breaks a rule of the text form (see kube_jfrom_json). */
const kube_jv_t *kube_from_json(kube_jdoc_t *d, const json_t *j, kube_dctx_t *c)
{
    if (kube_jfrom_json(d, j) < 0) {
        kube_fail(c, NULL, "%s", d->err);
        return NULL;
    }
    return kube_jroot(d);
}

int kube_decode(model_kind_t kind, const json_t *obj, void **out, char *err, size_t errlen)
{
    kube_dctx_t c = {.err = err, .errlen = errlen};
    kube_jdoc_t d = {0};
    *out = NULL;
    if (!obj)
        return kube_decode_jv(kind, NULL, out, err, errlen);
    const kube_jv_t *v = kube_from_json(&d, obj, &c);
    int rc = v ? kube_decode_jv(kind, v, out, err, errlen) : -1;
    kube_jdoc_clear(&d);
    return rc;
}

/* ---------- ServiceScope ---------- */

/* Rejects members of o (at p) not in allowed (NULL terminated). */
int kube_only_fields(kube_dctx_t *c, const jv_t *o, const kube_path_t *p,
                     const char *const *allowed)
{
    size_t i;
    const jv_t *k;
    KUBE_JOBJECT_FOREACH(o, i, k)
    {
        size_t a = 0;
        while (allowed[a] && strcmp(allowed[a], k->v.s) != 0)
            a++;
        if (!allowed[a])
            return kube_fail(c, p, "unknown field \"%.64s\"", k->v.s);
    }
    return 0;
}

static int kube_sel_labels(kube_dctx_t *c, const jv_t *sel, const kube_path_t *p,
                           model_selector_t *s)
{
    const jv_t *ml, *k;
    kube_path_t mp = {p, "matchLabels", 0};
    char e[MODEL_ERRLEN], path[160];
    if (kube_get_obj(c, sel, p, "matchLabels", &ml) < 0)
        return -1;
    if (!ml)
        return 0;
    if (ml->len > KUBE_MAX_LABELS)
        return kube_fail(c, &mp, "too many entries");
    kube_path_fmt(path, sizeof(path), &mp);
    size_t i;
    KUBE_JOBJECT_FOREACH(ml, i, k)
    {
        if (k[1].type != KUBE_J_STRING)
            return kube_fail(c, NULL, "%s[%.64s]: expected a string, got %s", path, k->v.s,
                             kube_jtype_name(k + 1));
        if (model_selector_add_label(s, k->v.s, k[1].v.s, e, sizeof(e)) < 0)
            return kube_fail(c, NULL, "%s[%.64s]: %s", path, k->v.s, e);
    }
    return 0;
}

/* The values of a matchExpression, checked against what the operator needs. */
static int kube_sel_values(kube_dctx_t *c, const jv_t *x, const kube_path_t *p, model_selop_t op,
                           const char ***vals, size_t *n)
{
    const jv_t *arr, *v;
    kube_path_t vp = {p, "values", 0};
    *vals = NULL;
    *n = 0;
    if (kube_get_arr(c, x, p, "values", KUBE_MAX_SELECTOR_VALUES, &arr) < 0)
        return -1;
    *n = arr ? arr->len : 0;
    bool want = op == MODEL_SELOP_IN || op == MODEL_SELOP_NOT_IN;
    if (want && *n == 0)
        return kube_fail(c, &vp, "operator %s needs at least one value", model_selop_name(op));
    if (!want && *n > 0)
        return kube_fail(c, &vp, "operator %s takes no values", model_selop_name(op));
    if (*n == 0)
        return 0;
    *vals = calloc(*n, sizeof(**vals));
    if (!*vals)
        return kube_oom(c);
    size_t i;
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        kube_path_t at = {&vp, NULL, i};
        if (kube_want(c, v, KUBE_J_STRING, &at) < 0)
            return -1;
        (*vals)[i] = v->v.s;
    }
    return 0;
}

static int kube_sel_expr(kube_dctx_t *c, const jv_t *x, const kube_path_t *p, model_selector_t *s)
{
    static const char *const fields[] = {"key", "operator", "values", NULL};
    const char *key, *opname, **vals = NULL;
    size_t n = 0;
    model_selop_t op;
    char e[MODEL_ERRLEN];
    kube_path_t kp = {p, "key", 0}, op_p = {p, "operator", 0};
    if (kube_want(c, x, KUBE_J_OBJECT, p) < 0 || kube_only_fields(c, x, p, fields) < 0 ||
        kube_get_str(c, x, p, "key", &key) < 0 || kube_get_str(c, x, p, "operator", &opname) < 0)
        return -1;
    if (!key)
        return kube_fail(c, &kp, "missing");
    if (!opname)
        return kube_fail(c, &op_p, "missing");
    if (model_selop_parse(opname, &op) < 0)
        return kube_fail(c, &op_p,
                         "unknown operator \"%.32s\" (want In, NotIn, Exists or DoesNotExist)",
                         opname);
    int rc = kube_sel_values(c, x, p, op, &vals, &n);
    if (rc == 0 && model_selector_add_expr(s, key, op, vals, n, e, sizeof(e)) < 0)
        rc = kube_fail(c, p, "%s", e);
    free(vals);
    return rc;
}

/* A metav1.LabelSelector; absent gives NULL, which matches everything. */
static int kube_selector(kube_dctx_t *c, const jv_t *rule, const kube_path_t *p, const char *key,
                         model_selector_t **out)
{
    static const char *const fields[] = {"matchLabels", "matchExpressions", NULL};
    const jv_t *sel, *exprs, *x;
    kube_path_t sp = {p, key, 0}, xs = {&sp, "matchExpressions", 0};
    *out = NULL;
    if (kube_get_obj(c, rule, p, key, &sel) < 0)
        return -1;
    if (!sel)
        return 0;
    if (kube_only_fields(c, sel, &sp, fields) < 0 ||
        kube_get_arr(c, sel, &sp, "matchExpressions", KUBE_MAX_RULES, &exprs) < 0)
        return -1;
    model_selector_t *s = model_selector_new();
    if (!s)
        return kube_oom(c);
    if (kube_sel_labels(c, sel, &sp, s) < 0)
        goto fail;
    size_t i;
    if (exprs) {
        KUBE_JARRAY_FOREACH(exprs, i, x)
        {
            kube_path_t at = {&xs, NULL, i};
            if (kube_sel_expr(c, x, &at, s) < 0)
                goto fail;
        }
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

static int kube_rule(kube_dctx_t *c, const jv_t *o, const kube_path_t *p, const char *origin,
                     model_scope_rule_t *r)
{
    static const char *const fields[] = {"namespaceSelector", "servicesSelector", "scope", NULL};
    const char *scope;
    kube_path_t sp = {p, "scope", 0};
    if (kube_want(c, o, KUBE_J_OBJECT, p) < 0 || kube_only_fields(c, o, p, fields) < 0 ||
        kube_get_str(c, o, p, "scope", &scope) < 0)
        return -1;
    if (!scope)
        return kube_fail(c, &sp, "missing");
    if (strcmp(scope, "GLOBAL") == 0)
        r->scope = MODEL_SCOPE_GLOBAL;
    else if (strcmp(scope, "LOCAL") == 0)
        r->scope = MODEL_SCOPE_LOCAL;
    else
        return kube_fail(c, &sp, "unknown scope \"%.32s\" (want GLOBAL or LOCAL)", scope);
    if (kube_selector(c, o, p, "namespaceSelector", &r->namespace_sel) < 0 ||
        kube_selector(c, o, p, "servicesSelector", &r->service_sel) < 0)
        return -1;
    return kube_dup(c, origin, &r->origin);
}

/* Appends every valid rule of arr (at p) to r. An invalid rule is skipped,
 * as istiod skips a serviceScopeConfigs entry it cannot read, and the first
 * one's reason is the error (-1) while the others still apply. */
static int kube_rules(kube_dctx_t *c, const jv_t *arr, const kube_path_t *p, const char *origin,
                      model_scope_rules_t *r)
{
    size_t n = arr ? arr->len : 0, i;
    const jv_t *v;
    if (n == 0)
        return 0;
    if (n > KUBE_MAX_RULES)
        return kube_fail(c, p, "%zu rules, more than the limit of %d", n, KUBE_MAX_RULES);
    model_scope_rule_t *tmp = calloc(n, sizeof(*tmp));
    if (!tmp)
        return kube_oom(c);
    int rc = 0;
    bool *bad = calloc(n, sizeof(*bad));
    if (!bad) {
        free(tmp);
        return kube_oom(c);
    }
    char scratch[256];
    kube_dctx_t later = *c; /* the first reason is the one reported */
    later.err = scratch;
    later.errlen = sizeof(scratch);
    KUBE_JARRAY_FOREACH(arr, i, v)
    {
        char o[256];
        kube_path_t at = {p, NULL, i};
        snprintf(o, sizeof(o), "%s[%zu]", origin, i);
        if (kube_rule(rc == 0 ? c : &later, v, &at, o, &tmp[i]) < 0) {
            bad[i] = true;
            rc = -1;
        }
    }
    for (i = 0; i < n; i++) {
        if (bad[i])
            kube_rule_clear(&tmp[i]);
        else if (model_scope_rules_add(r, tmp[i]) < 0)
            rc = kube_oom(c); /* add freed tmp[i] */
    }
    free(bad);
    free(tmp);
    return rc;
}

static int kube_servicescope(kube_dctx_t *c, const jv_t *obj, model_scope_rules_t *r)
{
    static const kube_path_t rules_p = {&kube_p_spec, "rules", 0};
    const jv_t *md, *spec, *rules;
    const char *av, *kind, *name;
    char origin[192];
    c->kind = "ServiceScope";
    if (!kube_jis(obj, KUBE_J_OBJECT))
        return kube_fail(c, NULL, "expected an object, got %s", kube_jtype_name(obj));
    if (kube_get_str(c, obj, NULL, "apiVersion", &av) < 0 ||
        kube_get_str(c, obj, NULL, "kind", &kind) < 0)
        return -1;
    if (av && strcmp(av, "meshfed.io/v1alpha1") != 0)
        return kube_fail(c, NULL, "apiVersion: \"%.64s\", expected \"meshfed.io/v1alpha1\"", av);
    if (kind && strcmp(kind, "ServiceScope") != 0)
        return kube_fail(c, NULL, "kind: \"%.64s\", expected \"ServiceScope\"", kind);
    if (kube_get_obj(c, obj, NULL, "metadata", &md) < 0 ||
        kube_get_str(c, md, &kube_p_metadata, "name", &name) < 0)
        return -1;
    if (!name || !name[0])
        return kube_fail(c, NULL, "metadata.name: missing");
    c->name = name;
    snprintf(origin, sizeof(origin), "ServiceScope/%.160s", name);
    if (kube_get_obj(c, obj, NULL, "spec", &spec) < 0 ||
        kube_get_arr(c, spec, &kube_p_spec, "rules", SIZE_MAX, &rules) < 0)
        return -1;
    return kube_rules(c, rules, &rules_p, origin, r);
}

int kube_decode_servicescope(const json_t *obj, model_scope_rules_t *r, char *err, size_t errlen)
{
    kube_dctx_t c = {.err = err, .errlen = errlen, .kind = "ServiceScope"};
    kube_jdoc_t d = {0};
    if (err && errlen)
        err[0] = '\0';
    const kube_jv_t *v = obj ? kube_from_json(&d, obj, &c) : NULL;
    int rc = v || !obj ? kube_servicescope(&c, v, r) : -1;
    kube_jdoc_clear(&d);
    return rc;
}

int kube_decode_scope_configs(const json_t *arr, const char *origin, model_scope_rules_t *r,
                              char *err, size_t errlen)
{
    static const kube_path_t cfg_p = {NULL, "serviceScopeConfigs", 0};
    kube_dctx_t c = {.err = err, .errlen = errlen, .kind = origin ? origin : "MeshConfig"};
    kube_jdoc_t d = {0};
    if (err && errlen)
        err[0] = '\0';
    if (!arr || json_is_null(arr))
        return 0;
    const kube_jv_t *v = kube_from_json(&d, arr, &c);
    int rc = v && kube_want(&c, v, KUBE_J_ARRAY, &cfg_p) == 0 ? kube_rules(&c, v, &cfg_p, c.kind, r)
                                                              : -1;
    kube_jdoc_clear(&d);
    return rc;
}
