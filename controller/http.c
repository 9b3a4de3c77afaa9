/*
 * http.c - the debug HTTP endpoint (libmicrohttpd): health, readiness,
 * Prometheus metrics and /debug pages that show what meshfed knows and why.
 *
 * Every page is JSON with stable field names (?pretty indents it). Pages read
 * the model under the controller's lock, build the whole body, then answer:
 * no lock is held while a client reads.
 *
 * The probes share the connection table with every other client, so a client
 * may hold a slot only while it makes progress towards an answer: a request
 * must be complete within HTTP_REQUEST_DEADLINE_S of connecting (or of the
 * previous answer), an answer must be taken within HTTP_ANSWER_DEADLINE_S,
 * and one address holds at most HTTP_PER_IP slots. A trickle of bytes does
 * not extend either deadline (it does extend libmicrohttpd's idle timeout).
 * With --probe-listen the probes also get a listener of their own, which
 * serves nothing else and has its own small table.
 */
#include "ctl_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_MAX_CONNS 256u
#define HTTP_PER_IP 32u
#define HTTP_REQUEST_DEADLINE_S 10
#define HTTP_ANSWER_DEADLINE_S 60
/* the probe listener: a kubelet sends one request at a time per probe */
#define PROBE_MAX_CONNS 16u
#define PROBE_PER_IP 8u
#define PROBE_REQUEST_DEADLINE_S 5
#define PROBE_ANSWER_DEADLINE_S 10

/* One open connection, from accept to close (libmicrohttpd's socket
 * context). */
typedef struct hconn {
    struct hconn *next, *prev;
    int fd;
    char ip[INET6_ADDRSTRLEN];
    time_t since; /* start of the current deadline */
    bool busy;    /* a request is being answered */
    bool cut;
} hconn_t;

/* One listening address with its own connection table and limits. */
typedef struct listener {
    ctl_http_t *h;
    const char *name; /* "debug" or "probe" */
    struct MHD_Daemon *d;
    int port;
    bool probes_only;
    unsigned max_conns, per_ip;
    int request_deadline_s, answer_deadline_s;
    hconn_t *conns; /* under h->lock: libmicrohttpd's thread and the sweeper */
    unsigned nconns;
} listener_t;

struct ctl_http {
    ctl_t *ctl;
    listener_t main, probe; /* probe.d NULL: no --probe-listen */
    char *token_file;       /* when set, /debug and /metrics need "Bearer <its content>" */
    pthread_mutex_t lock;
    pthread_t sweeper;
    pthread_cond_t cond;
    bool sweeper_started, stop;
    ctl_ratelog_t *log;
};

typedef struct reply {
    int status;
    char *body;
    const char *type;
} reply_t;

static reply_t json_reply(int status, json_t *j, bool pretty)
{
    char *s = j ? json_dumps(j, pretty ? JSON_INDENT(2) | JSON_SORT_KEYS : JSON_COMPACT) : NULL;
    if (!s) { /* never an empty body: say that the answer could not be built */
        status = 500;
        s = strdup("{\"error\":\"the answer could not be encoded as JSON\"}");
    }
    json_decref(j);
    size_t n = s ? strlen(s) : 0;
    char *body = malloc(n + 2);
    if (body) {
        memcpy(body, s ? s : "", n);
        body[n] = '\n';
        body[n + 1] = '\0';
    }
    free(s);
    return (reply_t){status, body, "application/json"};
}

/* The message with arg (a client's bytes: any encoding, any length) made
 * valid UTF-8 and cut between characters, so the JSON can always be built. */
static reply_t error_reply(int status, const char *fmt, const char *arg)
{
    char clean_arg[1024], full[2048], msg[768];
    ctl_utf8_clean(arg ? arg : "", clean_arg, sizeof(clean_arg));
    snprintf(full, sizeof(full), fmt, clean_arg);
    ctl_utf8_clean(full, msg, sizeof(msg));
    if (status == 400)
        atomic_fetch_add(&ctl_metrics.http_bad_requests, 1);
    return json_reply(status, json_pack("{s:s}", "error", msg), false);
}

static reply_t text_reply(int status, char *body, const char *type)
{
    return (reply_t){status, body, type};
}

/* ---------- /debug/clusterz ---------- */

typedef struct clusterz_ctx {
    ctl_t *ctl;
    json_t *out;
} clusterz_ctx_t;

static void cluster_one(const model_cluster_info_t *ci, void *carg)
{
    clusterz_ctx_t *cz = carg;
    json_t *arg = cz->out;
    char gw[256] = "";
    if (ci->gateway.len)
        model_ip_format(&ci->gateway, gw, sizeof(gw));
    else if (ci->gateway_hostname)
        snprintf(gw, sizeof(gw), "%s", ci->gateway_hostname);
    json_t *objs = json_object();
    for (int k = 0; k < MODEL_KIND__COUNT; k++)
        json_object_set_new(objs, model_kind_name((model_kind_t)k),
                            json_integer((json_int_t)ci->objects[k]));
    json_array_append_new(arg, json_pack("{s:s, s:s, s:s, s:i, s:s, s:o}", "id", ci->id, "network",
                                         ci->network, "gateway", gw, "gatewayPort",
                                         (int)ci->gateway_port, "state",
                                         model_cluster_state_name(ci->state), "objects", objs));
    json_t *o = json_array_get(arg, json_array_size(arg) - 1);
    if (ci->gateway_problem)
        json_object_set_new(o, "gatewayProblem", json_string(ci->gateway_problem));
    if (ctl_kube_of(cz->ctl))
        ctl_kube_cluster_conditions(ctl_kube_of(cz->ctl), ci->id, o);
    json_t *notes = ctl_cluster_notes(cz->ctl, ci->id);
    json_object_set_new(o, "local",
                        json_boolean(strcmp(ci->id, ctl_config(cz->ctl)->cluster_id) == 0));
    if (notes)
        json_object_update(o, notes);
    json_decref(notes);
}

static void clusterz(const model_t *m, void *arg)
{
    model_each_cluster(m, cluster_one, arg);
}

/* ---------- /debug/authorizationz ---------- */

typedef struct authz_ctx {
    const char *cluster; /* only this one, or NULL */
    const model_t *m;
    json_t *out;      /* cluster -> {policies} */
    json_t *policies; /* of the cluster being listed */
} authz_ctx_t;

static void authz_one(const model_authz_info_t *i, void *arg)
{
    authz_ctx_t *c = arg;
    json_t *o = json_pack("{s:s, s:b}", "kind", model_kind_name(i->kind), "sent", i->out != NULL);
    json_t *sel = json_array();
    for (size_t k = 0; k < i->nselects; k++)
        json_array_append_new(sel, json_string(i->selects[k]));
    if (i->out)
        json_object_set_new(o, "authorization", ctl_authz_json(i->out));
    json_object_set_new(o, "selects", sel);
    if (i->message)
        json_object_set_new(
            o, "status",
            json_pack("{s:s, s:s}", "reason", i->reason ? i->reason : "", "message", i->message));
    json_object_set_new(c->policies, i->key, o);
}

static void authz_cluster(const model_cluster_info_t *ci, void *arg)
{
    authz_ctx_t *c = arg;
    if (c->cluster && strcmp(c->cluster, ci->id) != 0)
        return;
    c->policies = json_object();
    model_each_authz(c->m, ci->id, authz_one, c);
    json_object_set_new(c->out, ci->id, c->policies);
}

static void authorizationz(const model_t *m, void *arg)
{
    authz_ctx_t *c = arg;
    c->m = m;
    json_object_set_new(c->out, "rootNamespace", json_string(model_root_namespace(m)));
    json_t *all = c->out;
    c->out = json_object();
    model_each_cluster(m, authz_cluster, c);
    json_object_set_new(all, "clusters", c->out);
    c->out = all;
}

/* ---------- services and scopes ---------- */

static json_t *scope_json(const model_t *m, const model_service_info_t *si)
{
    json_t *per = json_array();
    bool global = false;
    for (size_t i = 0; i < si->nclusters; i++) {
        const model_scope_result_t *r = &si->scopes[i];
        const model_scope_rule_t *rule = model_scope_rules_at(model_rules(m), (size_t)r->rule);
        char why[512];
        if (r->scope == MODEL_SCOPE_GLOBAL)
            snprintf(why, sizeof(why), "GLOBAL: selected by rule %d (%s)", r->rule,
                     rule ? rule->origin : "?");
        else if (rule)
            snprintf(why, sizeof(why), "LOCAL: no GLOBAL rule matches; LOCAL rule %d (%s) matches",
                     r->rule, rule->origin);
        else
            snprintf(why, sizeof(why), "LOCAL: no rule matches");
        global |= r->scope == MODEL_SCOPE_GLOBAL;
        json_array_append_new(per, json_pack("{s:s, s:s, s:i, s:s}", "cluster", si->clusters[i],
                                             "scope", r->scope ? "GLOBAL" : "LOCAL", "rule",
                                             r->rule, "reason", why));
    }
    json_t *o = json_pack("{s:s, s:s, s:o}", "service", si->key, "scope",
                          global ? "GLOBAL" : "LOCAL", "clusters", per);
    if (si->base_cluster)
        json_object_set_new(o, "definitionFrom", json_string(si->base_cluster));
    if (si->conflict)
        json_object_set_new(o, "conflict", json_string(si->conflict));
    return o;
}

typedef struct svc_ctx {
    const model_t *m;
    json_t *out;
    const char *key;
    bool found;
    json_t *rule_sel; /* array per rule of selected services */
} svc_ctx_t;

static void service_one(const model_service_info_t *si, void *arg)
{
    svc_ctx_t *c = arg;
    json_array_append_new(c->out, scope_json(c->m, si));
    for (size_t i = 0; c->rule_sel && i < si->nclusters; i++) {
        if (si->scopes[i].rule < 0)
            continue;
        json_t *sel = json_array_get(c->rule_sel, (size_t)si->scopes[i].rule);
        char entry[600];
        snprintf(entry, sizeof(entry), "%s/%s", si->clusters[i], si->key);
        if (sel)
            json_array_append_new(sel, json_string(entry));
    }
}

static int cmp_service(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "service"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "service"));
    return strcmp(x ? x : "", y ? y : "");
}

static json_t *sorted(json_t *arr)
{
    size_t n = json_array_size(arr);
    json_t **v = calloc(n + 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof(*v), cmp_service);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, v[i]);
    free(v);
    json_decref(arr);
    return out;
}

static void servicez(const model_t *m, void *arg)
{
    svc_ctx_t *c = arg;
    c->m = m;
    if (c->key) {
        model_service_info_t si;
        c->found = model_service_info(m, c->key, &si);
        if (c->found)
            c->out = scope_json(m, &si);
        return;
    }
    model_each_service(m, service_one, c);
}

static void scopez(const model_t *m, void *arg)
{
    svc_ctx_t *c = arg;
    const model_scope_rules_t *r = model_rules(m);
    c->rule_sel = json_array();
    for (size_t i = 0; i < model_scope_rules_count(r); i++)
        json_array_append_new(c->rule_sel, json_array());
    servicez(m, c);
    json_t *rules = json_array();
    for (size_t i = 0; i < model_scope_rules_count(r); i++) {
        const model_scope_rule_t *rule = model_scope_rules_at(r, i);
        char *ns = rule->namespace_sel ? model_selector_string(rule->namespace_sel) : NULL;
        char *sv = rule->service_sel ? model_selector_string(rule->service_sel) : NULL;
        json_array_append_new(rules, json_pack("{s:i, s:s, s:s, s:s?, s:s?, s:O}", "index", (int)i,
                                               "origin", rule->origin, "scope",
                                               rule->scope ? "GLOBAL" : "LOCAL",
                                               "namespaceSelector", ns, "servicesSelector", sv,
                                               "matches", json_array_get(c->rule_sel, i)));
        free(ns);
        free(sv);
    }
    json_decref(c->rule_sel);
    c->rule_sel = rules;
}

/* ---------- /debug/endpointz ---------- */

typedef struct ep_ctx {
    const char *ns, *name;
    json_t *eps;
} ep_ctx_t;

static void slice_one(const void *obj, void *arg)
{
    const model_endpointslice_t *s = obj;
    ep_ctx_t *c = arg;
    if (strcmp(s->ns, c->ns) != 0 || !s->service || strcmp(s->service, c->name) != 0)
        return;
    for (size_t i = 0; i < s->nendpoints; i++) {
        const model_endpoint_t *e = &s->endpoints[i];
        char ip[64];
        model_ip_format(&e->ip, ip, sizeof(ip));
        json_array_append_new(c->eps, json_pack("{s:s, s:b, s:s?, s:s?, s:s?, s:s}", "address", ip,
                                                "ready", e->ready, "pod", e->pod, "node", e->node,
                                                "zone", e->zone, "slice", s->name));
    }
}

typedef struct endpointz_ctx {
    const char *key;
    json_t *out;
    bool found;
} endpointz_ctx_t;

static void endpointz(const model_t *m, void *arg)
{
    endpointz_ctx_t *c = arg;
    model_service_info_t si;
    c->found = model_service_info(m, c->key, &si);
    if (!c->found)
        return;
    char ns[256];
    const char *slash = strchr(c->key, '/');
    snprintf(ns, sizeof(ns), "%.*s", (int)(slash - c->key), c->key);
    json_t *clusters = json_object();
    for (size_t i = 0; i < si.nclusters; i++) {
        ep_ctx_t e = {ns, slash + 1, json_array()};
        model_each_object(m, si.clusters[i], MODEL_KIND_ENDPOINTSLICE, slice_one, &e);
        json_object_set_new(clusters, si.clusters[i],
                            json_pack("{s:s, s:o}", "scope",
                                      si.scopes[i].scope ? "GLOBAL" : "LOCAL", "endpoints", e.eps));
    }
    c->out = json_pack("{s:s, s:o}", "service", c->key, "clusters", clusters);
}

/* ---------- /debug/syncz and /debug/config_dump ---------- */

static void proxy_one(const xds_proxy_info_t *p, void *arg)
{
    json_array_append_new(
        arg,
        json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:I, s:I, s:I, s:s?, s:I}", "proxy", p->node_id,
                  "cluster", p->cluster, "network", p->network, "type", p->type_url, "peer",
                  p->peer, "identity", p->identity, "versionSent", (json_int_t)p->version_sent,
                  "versionAcked", (json_int_t)p->version_acked, "nacks", (json_int_t)p->nacks,
                  "lastNack", p->last_nack, "resources", (json_int_t)p->resources));
    json_t *o = json_array_get(arg, json_array_size(arg) - 1);
    json_object_set_new(o, "subscribedNames", json_integer((json_int_t)p->names));
    if (p->unknown_cluster)
        json_object_set_new(o, "unknownCluster", json_true());
}

typedef struct find_proxy {
    const char *id;
    char *cluster, *network;
} find_proxy_t;

static void find_one(const xds_proxy_info_t *p, void *arg)
{
    find_proxy_t *f = arg;
    if (!f->cluster && strcmp(p->node_id, f->id) == 0) {
        f->cluster = strdup(p->cluster);
        f->network = strdup(p->network);
    }
}

bool ctl_http_valid_query(const char *v)
{
    if (!v || !*v || strlen(v) > 512)
        return false;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20)
            return false;
    return true;
}

typedef struct find_cluster {
    const char *id;
    bool found;
} find_cluster_t;

static void cluster_is(const model_cluster_info_t *ci, void *arg)
{
    find_cluster_t *f = arg;
    f->found |= strcmp(ci->id, f->id) == 0;
}

static void find_cluster(const model_t *m, void *arg)
{
    model_each_cluster(m, cluster_is, arg);
}

static reply_t config_dump(ctl_t *ctl, struct MHD_Connection *conn, bool pretty)
{
    const char *proxy = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "proxy");
    const char *cluster = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "cluster");
    const char *network = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "network");
    find_proxy_t f = {proxy, NULL, NULL};
    if (proxy) {
        if (!ctl_http_valid_query(proxy))
            return error_reply(400, "proxy: invalid value", NULL);
        if (ctl_xds(ctl))
            xds_server_each_proxy(ctl_xds(ctl), find_one, &f);
        if (!f.cluster)
            return error_reply(404, "no connected proxy \"%s\" (see /debug/syncz)", proxy);
        cluster = f.cluster;
        network = f.network;
    } else if (!ctl_http_valid_query(cluster)) {
        return error_reply(400, "give ?proxy=ID or ?cluster=ID[&network=NAME]", NULL);
    } else {
        find_cluster_t fc = {cluster, false};
        ctl_with_model(ctl, find_cluster, &fc);
        if (!fc.found)
            return error_reply(404, "no cluster \"%s\" (see /debug/clusterz)", cluster);
    }
    if (network && *network && !ctl_http_valid_query(network))
        return error_reply(400, "network: invalid value", NULL);
    model_snapshot_t *s = ctl_snapshot(ctl);
    json_t *out = json_object();
    model_view_t v = {cluster, network ? network : ""};
    if (s)
        json_object_set_new(out, "version", json_integer((json_int_t)model_snapshot_version(s)));
    char clean[1024];
    ctl_utf8_clean(cluster, clean, sizeof(clean));
    json_object_set_new(out, "cluster", json_string(clean));
    ctl_utf8_clean(v.network, clean, sizeof(clean));
    json_object_set_new(out, "network", json_string(clean));
    json_object_set_new(out, "resources", s ? ctl_view_json(s, &v) : json_object());
    json_object_set_new(out, "authorizations", s ? ctl_authz_view_json(s, &v) : json_object());
    model_snapshot_unref(s);
    free(f.cluster);
    free(f.network);
    return json_reply(200, out, pretty);
}

/* ---------- /metrics ---------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf_t;

static void bprintf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && b->n + (size_t)n < b->cap) {
            b->n += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 8192) + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p)
            return;
        b->p = p;
        b->cap = cap;
    }
}

static void counter(buf_t *b, const char *name, const char *help, unsigned long v)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n", name, help, name, name, v);
}

static void metric_objects(const model_cluster_info_t *ci, void *arg)
{
    buf_t *b = arg;
    for (int k = 0; k < MODEL_KIND__COUNT; k++)
        bprintf(b, "meshfed_objects{cluster=\"%s\",kind=\"%s\"} %zu\n", ci->id,
                model_kind_name((model_kind_t)k), ci->objects[k]);
}

static void metric_state(const model_cluster_info_t *ci, void *arg)
{
    buf_t *b = arg;
    for (int s = 0; s < 3; s++)
        bprintf(b, "meshfed_cluster_state{cluster=\"%s\",state=\"%s\"} %d\n", ci->id,
                model_cluster_state_name((model_cluster_state_t)s), (int)ci->state == s);
}

/* The process_* metrics every Prometheus client library exports, from
 * /proc/self (Linux), so dashboards built for them work unchanged. */
static void metrics_process(buf_t *b)
{
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long ut = 0, st = 0, vsize = 0;
    unsigned long long starttime = 0;
    long rss = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* the command may hold spaces */
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                        "%*d %llu %lu %ld",
                        &ut, &st, &starttime, &vsize, &rss) != 5)
            ut = st = 0;
        fclose(f);
    }
    double boot = 0;
    f = fopen("/proc/stat", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "btime %lf", &boot) == 1)
                break;
        fclose(f);
    }
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
        fds += e->d_name[0] != '.';
    if (d) {
        closedir(d);
        fds--; /* the one opendir itself holds */
    }
    bprintf(b,
            "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
            "# HELP process_resident_memory_bytes Resident memory size.\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n"
            "# HELP process_virtual_memory_bytes Virtual memory size.\n"
            "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %lu\n"
            "# HELP process_start_time_seconds Start time since the epoch.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n"
            "# HELP process_open_fds Open file descriptors.\n"
            "# TYPE process_open_fds gauge\nprocess_open_fds %zu\n"
            "# HELP meshfed_build_info The running version (always 1).\n"
            "# TYPE meshfed_build_info gauge\nmeshfed_build_info{version=\"%s\"} 1\n",
            ticks > 0 ? (double)(ut + st) / (double)ticks : 0.0, rss * page, vsize,
            ticks > 0 ? boot + (double)starttime / (double)ticks : 0.0, fds, MESHFED_VERSION);
}

typedef struct gcount {
    size_t global, local;
} gcount_t;

static void count_service(const model_service_info_t *si, void *arg)
{
    gcount_t *g = arg;
    bool global = false;
    for (size_t i = 0; i < si->nclusters; i++)
        global |= si->scopes[i].scope == MODEL_SCOPE_GLOBAL;
    if (global)
        g->global++;
    else
        g->local++;
}

static void metrics_model(const model_t *m, void *arg)
{
    buf_t *b = arg;
    bprintf(b, "# HELP meshfed_objects Objects known, by cluster and kind.\n"
               "# TYPE meshfed_objects gauge\n");
    model_each_cluster(m, metric_objects, b);
    bprintf(b, "# HELP meshfed_cluster_state 1 for the state each cluster is in.\n"
               "# TYPE meshfed_cluster_state gauge\n");
    model_each_cluster(m, metric_state, b);
    gcount_t g = {0, 0};
    model_each_service(m, count_service, &g);
    bprintf(b,
            "# HELP meshfed_services Services by scope.\n# TYPE meshfed_services gauge\n"
            "meshfed_services{scope=\"GLOBAL\"} %zu\nmeshfed_services{scope=\"LOCAL\"} %zu\n",
            g.global, g.local);
    counter(b, "meshfed_model_events_total", "Object events applied to the model.",
            (unsigned long)model_events(m));
    counter(b, "meshfed_scope_evaluations_total", "ServiceScope evaluations (service x cluster).",
            (unsigned long)model_scope_evaluations(m));
}

/* What the rows of the metrics table read from: the process-wide counters
 * always, the watcher's and the xDS server's statistics when they run. */
typedef struct msrc {
    const kube_stats_t *kube;
    const xds_stats_t *xds;
} msrc_t;

/* One metric family of /metrics, in order. A row with get has one sample,
 * "name value"; a row with write writes its samples itself (labelled or not
 * an integer) and, without a name, its own HELP and TYPE lines too. */
typedef struct metric {
    const char *name, *help, *type;
    unsigned long (*get)(const msrc_t *s, size_t off);
    size_t off; /* of the field get reads */
    void (*write)(buf_t *b, const msrc_t *s);
} metric_t;

static unsigned long get_ctl(const msrc_t *s, size_t off)
{
    (void)s;
    return atomic_load((atomic_ulong *)((char *)&ctl_metrics + off));
}

static unsigned long get_kube(const msrc_t *s, size_t off)
{
    return (unsigned long)*(const uint64_t *)((const char *)s->kube + off);
}

static unsigned long get_xds(const msrc_t *s, size_t off)
{
    return (unsigned long)*(const uint64_t *)((const char *)s->xds + off);
}

static unsigned long get_queue_depth(const msrc_t *s, size_t off)
{
    (void)s, (void)off;
    return (unsigned long)atomic_load(&ctl_metrics.queue_depth);
}

static unsigned long get_leader(const msrc_t *s, size_t off)
{
    (void)s, (void)off;
    return (unsigned long)atomic_load(&ctl_metrics.leader);
}

static void write_commit_seconds(buf_t *b, const msrc_t *s)
{
    (void)s;
    bprintf(b, "meshfed_commit_seconds_total %.6f\n",
            (double)atomic_load(&ctl_metrics.commit_us_sum) / 1e6);
}

static void write_process(buf_t *b, const msrc_t *s)
{
    (void)s;
    metrics_process(b);
}

static void write_errors(buf_t *b, const msrc_t *s)
{
    (void)s;
    const struct {
        const char *kind;
        atomic_ulong *v;
    } kinds[] = {
        {"decode", &ctl_metrics.decode_errors},
        {"servicescope", &ctl_metrics.scope_errors},
        {"policy", &ctl_metrics.policy_errors},
        {"gateway", &ctl_metrics.gateway_errors},
        {"http", &ctl_metrics.http_bad_requests},
        {"http_unauthorized", &ctl_metrics.http_unauthorized},
        {"http_table_full", &ctl_metrics.http_refused_full},
        {"http_per_ip_limit", &ctl_metrics.http_refused_per_ip},
        {"http_slow_client", &ctl_metrics.http_slow_closed},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        bprintf(b, "meshfed_errors_total{kind=\"%s\"} %lu\n", kinds[i].kind,
                atomic_load(kinds[i].v));
}

static void write_proxies(buf_t *b, const msrc_t *s)
{
    for (int k = 0; k < XDS_PROXY_KINDS; k++)
        bprintf(b, "meshfed_xds_proxies{type=\"%s\"} %llu\n",
                xds_proxy_kind_name((xds_proxy_kind_t)k), (unsigned long long)s->xds->proxies[k]);
}

static void write_push_latency(buf_t *b, const msrc_t *s)
{
    unsigned long long cum = 0;
    for (int i = 0; i < XDS_LATENCY_BUCKETS; i++) {
        cum += s->xds->push_latency_buckets[i];
        if (i < XDS_LATENCY_BUCKETS - 1)
            bprintf(b, "meshfed_xds_push_latency_seconds_bucket{le=\"%g\"} %llu\n",
                    XDS_LATENCY_BOUNDS_MS[i] / 1000.0, cum);
        else
            bprintf(b, "meshfed_xds_push_latency_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    bprintf(b,
            "meshfed_xds_push_latency_seconds_sum %.6f\n"
            "meshfed_xds_push_latency_seconds_count %llu\n",
            (double)s->xds->push_latency_us_sum / 1e6,
            (unsigned long long)s->xds->push_latency_count);
}

static void write_pushes(buf_t *b, const msrc_t *s)
{
    for (int k = 0; k < XDS_PUSH_KINDS; k++)
        bprintf(b, "meshfed_xds_pushes_total{type=\"%s\"} %llu\n",
                xds_push_kind_name((xds_push_kind_t)k),
                (unsigned long long)s->xds->pushes_by_kind[k]);
}

static void write_auth(buf_t *b, const msrc_t *s)
{
    bprintf(b,
            "meshfed_xds_auth_total{result=\"ok\"} %llu\n"
            "meshfed_xds_auth_total{result=\"unauthenticated\"} %llu\n"
            "meshfed_xds_auth_total{result=\"denied\"} %llu\n"
            "meshfed_xds_auth_total{result=\"unavailable\"} %llu\n",
            (unsigned long long)s->xds->auth_ok, (unsigned long long)s->xds->auth_unauthenticated,
            (unsigned long long)s->xds->auth_denied, (unsigned long long)s->xds->auth_unavailable);
}

static void write_ca_requests(buf_t *b, const msrc_t *s)
{
    for (int r = 0; r < XDS_CA_RESULTS; r++)
        bprintf(b, "meshfed_ca_requests_total{result=\"%s\"} %llu\n",
                xds_ca_result_name((xds_ca_result_t)r), (unsigned long long)s->xds->ca_requests[r]);
}

#define CTL(f) get_ctl, offsetof(ctl_metrics_t, f), NULL
#define KUBE(f) get_kube, offsetof(kube_stats_t, f), NULL
#define XDS(f) get_xds, offsetof(xds_stats_t, f), NULL
#define WRITE(fn) NULL, 0, fn

static const metric_t metrics_ctl[] = {
    {"meshfed_events_applied_total", "Queue events applied.", "counter", CTL(events_applied)},
    {"meshfed_events_rejected_total", "Queue events the model rejected.", "counter",
     CTL(events_rejected)},
    {"meshfed_commits_total", "Model commits (debounced batches).", "counter", CTL(commits)},
    {"meshfed_commit_seconds_total", "Time spent committing batches.", "counter",
     WRITE(write_commit_seconds)},
    {NULL, NULL, NULL, WRITE(write_process)},
    {"meshfed_queue_full_total", "Times a source waited on a full event queue.", "counter",
     CTL(queue_full)},
    {"meshfed_queue_depth", "Events waiting.", "gauge", get_queue_depth, 0, NULL},
    {"meshfed_errors_total", "Bad input, by kind.", "counter", WRITE(write_errors)},
    {"meshfed_demo_reloads_total", "Demo cluster directories reloaded.", "counter",
     CTL(demo_reloads)},
    {"meshfed_demo_file_errors_total",
     "Demo manifests that did not parse (their last good state is kept).", "counter",
     CTL(demo_file_errors)},
    {"meshfed_cluster_sync_slow_total",
     "Clusters whose lists had not all completed after sync-warn-after.", "counter",
     CTL(sync_slow)},
};

static const metric_t metrics_kube[] = {
    {"meshfed_leader", "1 while this replica holds the lease and writes status.", "gauge",
     get_leader, 0, NULL},
    {"meshfed_status_writes_total", "ServiceScope and AuthorizationPolicy status updates written.",
     "counter", CTL(status_writes)},
    {"meshfed_status_errors_total",
     "ServiceScope and AuthorizationPolicy status writes that failed.", "counter",
     CTL(status_errors)},
    {"meshfed_kube_lists_total", "List pages received.", "counter", KUBE(lists)},
    {"meshfed_kube_watches_total", "Watch requests started.", "counter", KUBE(watches)},
    {"meshfed_kube_relists_total", "Relists after 410 Gone.", "counter", KUBE(relists)},
    {"meshfed_kube_watch_restarts_total", "Watches resumed after ending.", "counter",
     KUBE(watch_restarts)},
    {"meshfed_kube_bookmarks_total", "Watch bookmarks.", "counter", KUBE(bookmarks)},
    {"meshfed_kube_events_total", "Object events received.", "counter", KUBE(events)},
    {"meshfed_kube_errors_total", "Watch and list errors.", "counter", KUBE(errors)},
    {"meshfed_kube_decode_errors_total", "Malformed watch lines or list bodies.", "counter",
     KUBE(decode_errors)},
    {"meshfed_kube_throttled_total", "Requests the API server throttled (429 with Retry-After).",
     "counter", KUBE(throttled)},
    {"meshfed_kube_short_watches_total",
     "Watches that ended within 1 s without an event (backed off).", "counter",
     KUBE(short_watches)},
    {"meshfed_kube_list_limits_total", "Lists abandoned at the page or object limit.", "counter",
     KUBE(list_limits)},
    {"meshfed_kube_bad_objects_total",
     "Objects dropped alone (an out-of-range number, a duplicate key).", "counter",
     KUBE(bad_objects)},
    {"meshfed_kube_forbidden_total",
     "403 answers on an optional resource (reported, not waited for).", "counter", KUBE(forbidden)},
};

static const metric_t metrics_xds[] = {
    {"meshfed_xds_connected", "Open xDS streams.", "gauge", XDS(streams_open)},
    {"meshfed_xds_proxies", "Open xDS streams by proxy type.", "gauge", WRITE(write_proxies)},
    {"meshfed_xds_push_latency_seconds", "From a snapshot's publication to its send, per push.",
     "histogram", WRITE(write_push_latency)},
    {"meshfed_xds_streams_total", "xDS streams accepted.", "counter", XDS(streams_total)},
    {"meshfed_xds_listeners_stalled",
     "xDS ports grpc stopped accepting connections on (after accept failed, e.g. out of files).",
     "gauge", XDS(listeners_stalled)},
    {"meshfed_xds_pushes_total",
     "xDS responses sent, by what they carried (as istiod's pilot_xds_pushes{type}).", "counter",
     WRITE(write_pushes)},
    {"meshfed_xds_resources_sent_total", "Resources sent.", "counter", XDS(resources_sent)},
    {"meshfed_xds_bytes_sent_total", "Response bytes sent.", "counter", XDS(bytes_sent)},
    {"meshfed_xds_acks_total", "ACKs received.", "counter", XDS(acks)},
    {"meshfed_xds_nacks_total", "NACKs received.", "counter", XDS(nacks)},
    {"meshfed_xds_bad_requests_total", "Requests rejected.", "counter", XDS(bad_requests)},
    {"meshfed_xds_limit_names_total", "Streams closed for subscribing to more names than allowed.",
     "counter", XDS(limit_names)},
    {"meshfed_xds_unknown_cluster_total",
     "Streams of proxies naming a cluster meshfed does not know.", "counter", XDS(unknown_cluster)},
    {"meshfed_xds_auth_total", "xDS client authentication results.", "counter", WRITE(write_auth)},
    {"meshfed_ca_requests_total",
     "CreateCertificate calls by outcome (ok, unauthenticated, denied, invalid, unavailable, "
     "internal).",
     "counter", WRITE(write_ca_requests)},
    {"meshfed_ca_reloads_total", "cacerts loads (1 + reloads of --cacerts-dir).", "counter",
     CTL(ca_loads)},
    {"meshfed_ca_reload_errors_total", "cacerts changes that did not load (the old CA stays).",
     "counter", CTL(ca_load_errors)},
    {"meshfed_ca_serving_cert_errors_total",
     "Renewals of the xDS serving certificate the CA issues that failed (the old one stays).",
     "counter", CTL(ca_serving_errors)},
    {"meshfed_ca_root_cert_writes_total",
     "istio-ca-root-cert ConfigMaps created or updated with the CA's root.", "counter",
     CTL(root_cert_writes)},
    {"meshfed_ca_root_cert_errors_total", "istio-ca-root-cert ConfigMap writes that failed.",
     "counter", CTL(root_cert_errors)},
    {"meshfed_tokenreviews_total", "TokenReviews sent to verify xDS clients.", "counter",
     CTL(auth_reviews)},
    {"meshfed_tokenreview_errors_total", "TokenReviews that failed.", "counter", CTL(auth_errors)},
    {"meshfed_tokenreview_cache_hits_total", "Token checks answered from the cache.", "counter",
     CTL(auth_cache_hits)},
};

static void write_metrics(buf_t *b, const metric_t *t, size_t n, const msrc_t *s)
{
    for (const metric_t *m = t; m < t + n; m++) {
        if (m->name)
            bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
        if (m->get)
            bprintf(b, "%s %lu\n", m->name, m->get(s, m->off));
        else
            m->write(b, s);
    }
}

#define NMETRICS(t) (sizeof(t) / sizeof((t)[0]))

static reply_t metrics(ctl_t *ctl)
{
    buf_t b = {0};
    kube_stats_t k;
    xds_stats_t x;
    msrc_t s = {&k, &x};
    ctl_with_model(ctl, metrics_model, &b);
    write_metrics(&b, metrics_ctl, NMETRICS(metrics_ctl), &s);
    if (ctl_kube_of(ctl)) {
        ctl_kube_stats(ctl_kube_of(ctl), &k);
        write_metrics(&b, metrics_kube, NMETRICS(metrics_kube), &s);
    }
    if (ctl_xds(ctl)) {
        xds_server_stats(ctl_xds(ctl), &x);
        write_metrics(&b, metrics_xds, NMETRICS(metrics_xds), &s);
    }
    return text_reply(200, b.p, "text/plain; version=0.0.4");
}

/* ---------- routing ---------- */

static reply_t route(ctl_http_t *h, struct MHD_Connection *conn, const char *url)
{
    ctl_t *ctl = h->ctl;
    /* a bare ?pretty has no value: ask whether the key is there at all */
    const char *pv = NULL;
    size_t pvlen = 0;
    bool pretty = MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, "pretty", 6, &pv,
                                                &pvlen) == MHD_YES &&
                  !(pv && (strcmp(pv, "0") == 0 || strcmp(pv, "false") == 0));
    char why[300], msg[320];
    xds_server_t *x = ctl_xds(ctl);
    if (strcmp(url, "/healthz") == 0) {
        /* a listener grpc gave up on comes back only with a new process */
        if (!x || xds_server_listening(x, why, sizeof(why)))
            return text_reply(200, strdup("ok\n"), "text/plain");
        snprintf(msg, sizeof(msg), "unhealthy: %s\n", why);
        return text_reply(503, strdup(msg), "text/plain");
    }
    if (strcmp(url, "/ready") == 0) {
        if (ctl_ready(ctl, why, sizeof(why)) && (!x || xds_server_listening(x, why, sizeof(why))))
            return text_reply(200, strdup("ready\n"), "text/plain");
        snprintf(msg, sizeof(msg), "not ready: %s\n", why);
        return text_reply(503, strdup(msg), "text/plain");
    }
    if (strcmp(url, "/metrics") == 0)
        return metrics(ctl);
    if (strcmp(url, "/debug/clusterz") == 0) {
        clusterz_ctx_t cz = {ctl, json_array()};
        ctl_with_model(ctl, clusterz, &cz);
        return json_reply(200, cz.out, pretty);
    }
    if (strcmp(url, "/debug/servicez") == 0 || strcmp(url, "/debug/servicescopez") == 0) {
        const char *key = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "service");
        if (key && (!ctl_http_valid_query(key) || !strchr(key, '/')))
            return error_reply(400, "service: want namespace/name, got \"%s\"", key);
        svc_ctx_t c = {.out = key ? NULL : json_array(), .key = key};
        bool scopes = strcmp(url, "/debug/servicescopez") == 0 && !key;
        ctl_with_model(ctl, scopes ? scopez : servicez, &c);
        if (key && !c.found) {
            json_decref(c.out);
            return error_reply(404, "service \"%s\" is not known in any cluster", key);
        }
        if (scopes)
            return json_reply(
                200, json_pack("{s:o, s:o}", "rules", c.rule_sel, "services", sorted(c.out)),
                pretty);
        return json_reply(200, key ? c.out : sorted(c.out), pretty);
    }
    if (strcmp(url, "/debug/endpointz") == 0) {
        const char *key = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "service");
        if (!ctl_http_valid_query(key) || !strchr(key, '/'))
            return error_reply(400, "service: want ?service=namespace/name", NULL);
        endpointz_ctx_t c = {key, NULL, false};
        ctl_with_model(ctl, endpointz, &c);
        if (!c.found)
            return error_reply(404, "service \"%s\" is not known in any cluster", key);
        return json_reply(200, c.out, pretty);
    }
    if (strcmp(url, "/debug/syncz") == 0) {
        json_t *a = json_array();
        if (ctl_xds(ctl))
            xds_server_each_proxy(ctl_xds(ctl), proxy_one, a);
        return json_reply(200, a, pretty);
    }
    if (strcmp(url, "/debug/config_dump") == 0)
        return config_dump(ctl, conn, pretty);
    if (strcmp(url, "/debug/authorizationz") == 0) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "cluster");
        if (cl && !ctl_http_valid_query(cl))
            return error_reply(400, "cluster: invalid value", NULL);
        authz_ctx_t c = {.cluster = cl, .out = json_object()};
        ctl_with_model(ctl, authorizationz, &c);
        return json_reply(200, c.out, pretty);
    }
    return error_reply(404,
                       "no page %s; try /debug/clusterz, /debug/servicescopez, "
                       "/debug/servicez, /debug/endpointz, /debug/syncz, /debug/config_dump, "
                       "/debug/authorizationz",
                       url);
}

/* The token is read at each request, so that rotating the file (a mounted
 * Secret) takes effect without a restart. Compared in constant time. */
static bool authorized(const ctl_http_t *h, struct MHD_Connection *conn)
{
    const char *hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    char tok[1024] = "", rerr[CTL_ERRLEN];
    size_t n = 0;
    char *content = ctl_read_file(h->token_file, sizeof(tok) - 1, &n, rerr, sizeof(rerr));
    if (content) {
        memcpy(tok, content, n);
        explicit_bzero(content, n);
        free(content);
    } else {
        n = 0;
        ctl_log(CTL_WARN, "debug-token-file: %s: every /debug request is refused", rerr);
    }
    tok[n] = '\0';
    while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        tok[--n] = '\0';
    if (!n || !hdr || strncmp(hdr, "Bearer ", 7) != 0) {
        explicit_bzero(tok, sizeof(tok));
        return false;
    }
    const char *given = hdr + 7;
    size_t glen = strlen(given);
    unsigned char diff = glen != n;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(tok[i] ^ (i < glen ? given[i] : 0));
    explicit_bzero(tok, sizeof(tok));
    return diff == 0;
}

static hconn_t *hconn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_busy(listener_t *l, struct MHD_Connection *conn, bool busy)
{
    hconn_t *hc = hconn_of(conn);
    if (!hc)
        return;
    pthread_mutex_lock(&l->h->lock);
    hc->busy = busy;
    hc->since = time(NULL);
    pthread_mutex_unlock(&l->h->lock);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    listener_t *l = cls;
    ctl_http_t *h = l->h;
    static int first;
    if (!*state) { /* headers only: answer once the (empty) body is in */
        *state = &first;
        set_busy(l, conn, true);
        return MHD_YES;
    }
    atomic_fetch_add(&ctl_metrics.http_requests, 1);
    reply_t r;
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    bool open_page = strcmp(url, "/healthz") == 0 || strcmp(url, "/ready") == 0;
    /* the probe listener also serves /metrics without a token, so that
     * Prometheus can scrape by pod annotation; it never serves /debug */
    bool scrape = l->probes_only && strcmp(url, "/metrics") == 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        r = error_reply(405, "method %s not allowed: pages are read-only", method);
    } else if (l->probes_only && !open_page && !scrape) {
        r = error_reply(404, "%s: the probe listener serves only /healthz, /ready and /metrics",
                        url);
    } else if (h->token_file && !open_page && !scrape && !authorized(h, conn)) {
        atomic_fetch_add(&ctl_metrics.http_unauthorized, 1);
        r = error_reply(401, "this page needs Authorization: Bearer <token>%s", "");
    } else {
        r = route(h, conn, url);
    }
    const char *body = r.body ? r.body : "";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    free(r.body);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", r.type);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void request_done(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode toe)
{
    (void)state;
    (void)toe;
    set_busy(cls, conn, false);
}

static void addr_string(const struct sockaddr *sa, char *out, size_t len)
{
    out[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

static void refused(listener_t *l, const char *why, const char *ip)
{
    char key[64], msg[512];
    snprintf(key, sizeof(key), "%s HTTP: %s", l->name, why);
    if (strcmp(why, "table full") == 0)
        snprintf(msg, sizeof(msg),
                 "%s HTTP: connection table full (%u connections): refused one from %s; "
                 "a client that sends no complete request within %d s is cut",
                 l->name, l->max_conns, ip, l->request_deadline_s);
    else
        snprintf(msg, sizeof(msg), "%s HTTP: %s already holds %u connections: refused another",
                 l->name, ip, l->per_ip);
    ctl_ratelog(l->h->log, time(NULL), CTL_WARN, key, msg);
}

/* Before libmicrohttpd takes a connection: the table and per-address limits,
 * each refusal logged (rate-limited) and counted. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    listener_t *l = cls;
    char ip[INET6_ADDRSTRLEN];
    addr_string(addr, ip, sizeof(ip));
    pthread_mutex_lock(&l->h->lock);
    unsigned total = l->nconns, same = 0;
    for (hconn_t *c = l->conns; c; c = c->next)
        same += strcmp(c->ip, ip) == 0;
    pthread_mutex_unlock(&l->h->lock);
    if (total >= l->max_conns) {
        atomic_fetch_add(&ctl_metrics.http_refused_full, 1);
        refused(l, "table full", ip);
        return MHD_NO;
    }
    if (same >= l->per_ip) {
        atomic_fetch_add(&ctl_metrics.http_refused_per_ip, 1);
        refused(l, "per-address limit", ip);
        return MHD_NO;
    }
    return MHD_YES;
}

static void notify_conn(void *cls, struct MHD_Connection *conn, void **ctx,
                        enum MHD_ConnectionNotificationCode code)
{
    listener_t *l = cls;
    ctl_http_t *h = l->h;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        hconn_t *hc = calloc(1, sizeof(*hc));
        if (!hc)
            return;
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ca =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        hc->fd = fd ? fd->connect_fd : -1;
        addr_string(ca ? ca->client_addr : NULL, hc->ip, sizeof(hc->ip));
        hc->since = time(NULL);
        pthread_mutex_lock(&h->lock);
        hc->next = l->conns;
        if (l->conns)
            l->conns->prev = hc;
        l->conns = hc;
        l->nconns++;
        pthread_mutex_unlock(&h->lock);
        *ctx = hc;
        return;
    }
    hconn_t *hc = *ctx;
    if (!hc)
        return;
    /* called before libmicrohttpd closes the socket: once unlinked, the
     * sweeper can no longer touch a descriptor number that may be reused */
    pthread_mutex_lock(&h->lock);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        l->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    l->nconns--;
    pthread_mutex_unlock(&h->lock);
    free(hc);
    *ctx = NULL;
}

/* Cuts the connections past their deadline: shutdown() makes
 * libmicrohttpd's own loop see the end and free the slot. h->lock held. */
static void sweep(listener_t *l, time_t now)
{
    for (hconn_t *c = l->conns; c; c = c->next) {
        int limit = c->busy ? l->answer_deadline_s : l->request_deadline_s;
        if (c->cut || c->fd < 0 || now - c->since < limit)
            continue;
        c->cut = true;
        shutdown(c->fd, SHUT_RDWR);
        atomic_fetch_add(&ctl_metrics.http_slow_closed, 1);
        char key[64], msg[256];
        snprintf(key, sizeof(key), "%s HTTP: slow clients cut", l->name);
        snprintf(msg, sizeof(msg), "%s HTTP: cut a connection from %s: %s within %d s", l->name,
                 c->ip, c->busy ? "its answer was not taken" : "no complete request", limit);
        ctl_ratelog(l->h->log, now, CTL_WARN, key, msg);
    }
}

static void *sweeper_main(void *arg)
{
    ctl_http_t *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cond, &h->lock, &ts);
        time_t now = time(NULL);
        sweep(&h->main, now);
        sweep(&h->probe, now);
        ctl_ratelog_flush(h->log, now);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static bool loopback(const struct sockaddr_in *sa)
{
    return (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
}

int ctl_http_parse_listen(const char *setting, const char *listen, struct sockaddr_in *sa,
                          char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || (size_t)(colon - listen) >= sizeof(host) || port < 0 || port > 65535 || *end ||
        end == colon + 1) {
        snprintf(err, errlen, "%s: \"%s\" is not host:port", setting, listen);
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, *host ? host : "0.0.0.0", &sa->sin_addr) != 1) {
        snprintf(err, errlen, "%s: \"%s\" is not an IPv4 address", setting, host);
        return -1;
    }
    sa->sin_port = htons((uint16_t)port);
    return 0;
}

/* Starts l on sa; false when it cannot listen. */
static bool listener_start(listener_t *l, const struct sockaddr_in *sa)
{
    l->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, ntohs(sa->sin_port),
                            accept_policy, l, handle, l, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_CONNECTION_LIMIT, l->max_conns + 1,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)l->request_deadline_s,
                            MHD_OPTION_NOTIFY_CONNECTION, notify_conn, l,
                            MHD_OPTION_NOTIFY_COMPLETED, request_done, l, MHD_OPTION_END);
    if (!l->d)
        return false;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_BIND_PORT);
    l->port = info ? info->port : ntohs(sa->sin_port);
    return true;
}

ctl_http_t *ctl_http_start(ctl_t *c, const char *listen, char *err, size_t errlen)
{
    struct sockaddr_in sa, probe_sa;
    const char *probe_listen = ctl_config(c)->probe_listen;
    bool with_probe = probe_listen && *probe_listen;
    if (ctl_http_parse_listen("debug-listen", listen, &sa, err, errlen) < 0 ||
        (with_probe &&
         ctl_http_parse_listen("probe-listen", probe_listen, &probe_sa, err, errlen) < 0))
        return NULL;
    const char *token_file = ctl_config(c)->debug_token_file;
    if (!loopback(&sa) && !token_file) {
        snprintf(err, errlen,
                 "debug-listen: %s is reachable from outside this host: set debug-token-file "
                 "(a bearer token /debug and /metrics will require)",
                 listen);
        return NULL;
    }
    if (token_file) {
        char rerr[CTL_ERRLEN];
        size_t n;
        char *content = ctl_read_file(token_file, 1023, &n, rerr, sizeof(rerr));
        if (!content) {
            snprintf(err, errlen, "debug-token-file: %s", rerr);
            return NULL;
        }
        explicit_bzero(content, n);
        free(content);
    }
    ctl_http_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->ctl = c;
    h->token_file = token_file ? strdup(token_file) : NULL;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->log = ctl_ratelog_new(60, 8);
    h->main = (listener_t){.h = h,
                           .name = "debug",
                           .max_conns = HTTP_MAX_CONNS,
                           .per_ip = HTTP_PER_IP,
                           .request_deadline_s = HTTP_REQUEST_DEADLINE_S,
                           .answer_deadline_s = HTTP_ANSWER_DEADLINE_S};
    h->probe = (listener_t){.h = h,
                            .name = "probe",
                            .probes_only = true,
                            .max_conns = PROBE_MAX_CONNS,
                            .per_ip = PROBE_PER_IP,
                            .request_deadline_s = PROBE_REQUEST_DEADLINE_S,
                            .answer_deadline_s = PROBE_ANSWER_DEADLINE_S};
    if (!h->log || !listener_start(&h->main, &sa)) {
        snprintf(err, errlen, "debug-listen: cannot listen on %s", listen);
        ctl_http_stop(h);
        return NULL;
    }
    if (with_probe && !listener_start(&h->probe, &probe_sa)) {
        snprintf(err, errlen, "probe-listen: cannot listen on %s", probe_listen);
        ctl_http_stop(h);
        return NULL;
    }
    h->sweeper_started = pthread_create(&h->sweeper, NULL, sweeper_main, h) == 0;
    if (!h->sweeper_started) {
        snprintf(err, errlen, "debug HTTP: cannot start its sweeper thread");
        ctl_http_stop(h);
        return NULL;
    }
    return h;
}

int ctl_http_port(const ctl_http_t *h)
{
    return h->main.port;
}

int ctl_http_probe_port(const ctl_http_t *h)
{
    return h->probe.d ? h->probe.port : 0;
}

void ctl_http_stop(ctl_http_t *h)
{
    if (!h)
        return;
    if (h->sweeper_started) {
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->sweeper, NULL);
    }
    if (h->main.d)
        MHD_stop_daemon(h->main.d);
    if (h->probe.d)
        MHD_stop_daemon(h->probe.d);
    ctl_ratelog_free(h->log);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h->token_file);
    free(h);
}
