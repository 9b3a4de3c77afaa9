/*
 * fuzz_model_events.c - the input is a little program of model operations
 * (clusters, object upserts/deletes with small names and label values,
 * ServiceScope changes, commits). After each commit, for 3 views and both
 * resource families, the diff from the previous snapshot applied to the
 * previous view's contents must give exactly the new view's contents, and a
 * diff's "old" must be present exactly when the name was. At the end, the
 * same program replayed on a fresh model with a single commit must produce
 * equal resources (model_res_equal, from model/model_int.h: no dirty mark was
 * missed by the incremental path). Any mismatch aborts.
 */
#include "model.h"
#include "model_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n, i;
} rd_t;

static unsigned rb(rd_t *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

static char *dupf(const char *fmt, unsigned a, unsigned b)
{
    char buf[64];
    snprintf(buf, sizeof(buf), fmt, a, b);
    return strdup(buf);
}

static bool skip_known(void);

static const char *const CLUSTERS[] = {"c1", "c2", "c3"};
static const char *const NETS[] = {"n1", "n2"};
static const char *const NSS[] = {"ns", "other"};
static const char *const LKEYS[] = {"istio.io/global",
                                    "mesh",
                                    "tier",
                                    "app",
                                    "topology.kubernetes.io/region",
                                    "topology.kubernetes.io/zone"};
static const char *const LVALS[] = {"true", "false", "global", "frontend", "r1", "z1", "", "api"};
static const model_view_t VIEWS[] = {{"c1", "n1"}, {"c2", "n2"}, {"c3", "n1"}};
#define NVIEWS 3

static void labels(rd_t *r, model_labels_t *l)
{
    unsigned n = rb(r) % 4;
    for (unsigned i = 0; i < n; i++) {
        unsigned b = rb(r);
        model_labels_set(l, LKEYS[b % 6], LVALS[(b >> 3) % 8]);
    }
}

static void ip(model_ip_t *out, unsigned a, unsigned b, unsigned c)
{
    char buf[48];
    if (a & 0x80)
        snprintf(buf, sizeof(buf), "fd00::%x:%x:%x", a & 0x7f, b, c);
    else
        snprintf(buf, sizeof(buf), "10.%u.%u.%u", a & 0x7f, b, c);
    if (model_ip_parse(buf, out) < 0)
        abort();
}

static model_selector_t *selector(rd_t *r)
{
    unsigned b = rb(r);
    if (b % 3 == 0)
        return NULL;
    model_selector_t *s = model_selector_new();
    char err[MODEL_ERRLEN];
    unsigned n = 1 + (b >> 2) % 2;
    for (unsigned i = 0; i < n; i++) {
        unsigned x = rb(r);
        const char *key = LKEYS[x % 6];
        const char *vals[2] = {LVALS[(x >> 3) % 8], LVALS[(x >> 5) % 8]};
        if ((x >> 6) == 0)
            model_selector_add_label(s, key, vals[0], err, sizeof(err));
        else
            model_selector_add_expr(s, key, (model_selop_t)(rb(r) % 4), vals,
                                    ((x >> 6) == 1) ? 0 : (x >> 6) - 1, err, sizeof(err));
    }
    return s;
}

static void apply(model_t *m, const char *c, model_kind_t k, model_op_t op, void *obj)
{
    char err[MODEL_ERRLEN];
    (void)model_apply(m, c, k, op, obj, err, sizeof(err));
}

/* Runs one operation; returns true for a commit. */
static bool step(model_t *m, rd_t *r)
{
    unsigned op = rb(r) % 16;
    unsigned ci = rb(r) % 3;
    const char *c = CLUSTERS[ci];
    unsigned si = rb(r);
    const char *ns = NSS[si & 1];
    unsigned s = (si >> 1) % 3;
    char err[MODEL_ERRLEN];
    switch (op) {
    case 0: { /* cluster set */
        unsigned b = rb(r);
        model_cluster_t cl = {.id = c, .network = NETS[b & 1]};
        if (b & 2)
            ip(&cl.gateway, 0x40 + ci, 0, 1 + ((b >> 2) & 1));
        if (b & 8)
            cl.gateway_port = 15009;
        if (b & 16) {
            cl.gateway_ns = "gw";
            cl.gateway_name = "ew";
        }
        (void)model_cluster_set(m, &cl, err, sizeof(err));
        break;
    }
    case 1:
        (void)model_cluster_remove(m, c);
        break;
    case 2: {
        model_namespace_t *o = calloc(1, sizeof(*o));
        o->name = strdup(ns);
        labels(r, &o->labels);
        apply(m, c, MODEL_KIND_NAMESPACE, MODEL_OP_UPSERT, o);
        break;
    }
    case 3: {
        model_namespace_t *o = calloc(1, sizeof(*o));
        o->name = strdup(ns);
        apply(m, c, MODEL_KIND_NAMESPACE, MODEL_OP_DELETE, o);
        break;
    }
    case 4:
    case 5: {
        unsigned b = rb(r);
        model_service_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        o->name = dupf("s%u", s, 0);
        o->uid = dupf("uid-%u-%u", s, ci);
        o->created = b & 3;
        if (op == 4) {
            labels(r, &o->labels);
            o->headless = (b & 4) != 0;
            if (!o->headless) {
                o->ncluster_ips = 1 + ((b >> 3) & 1);
                o->cluster_ips = calloc(o->ncluster_ips, sizeof(model_ip_t));
                for (size_t i = 0; i < o->ncluster_ips; i++)
                    ip(&o->cluster_ips[i], (i ? 0x80 : 0) | 96, ci, s + 1);
            }
            o->nports = 1 + ((b >> 4) & 1);
            o->ports = calloc(o->nports, sizeof(model_svc_port_t));
            for (size_t i = 0; i < o->nports; i++) {
                o->ports[i].name = dupf("p%u", (unsigned)i, 0);
                o->ports[i].port = (uint16_t)(80 + i);
                unsigned t = rb(r);
                if (t & 1)
                    o->ports[i].target_port_name = strdup(t & 2 ? "http" : "grpc");
                else
                    o->ports[i].target_port = (uint16_t)(8080 + (t >> 2) % 3);
            }
            o->traffic_dist = (model_traffic_dist_t)((b >> 5) % 4);
            if (b & 0x80) {
                o->nlb_ips = 1;
                o->lb_ips = calloc(1, sizeof(model_ip_t));
                ip(&o->lb_ips[0], 0x40 + ci, 0, 1);
            }
        }
        apply(m, c, MODEL_KIND_SERVICE, op == 4 ? MODEL_OP_UPSERT : MODEL_OP_DELETE, o);
        break;
    }
    case 6:
    case 7: {
        model_endpointslice_t *o = calloc(1, sizeof(*o));
        o->ns = strdup(ns);
        unsigned b = rb(r);
        o->name = dupf("s%u-%u", s, b & 1);
        o->service = dupf("s%u", (b & 2) ? (s + 1) % 3 : s, 0);
        if (op == 6) {
            o->nports = (b >> 2) % 3;
            o->ports = calloc(o->nports ? o->nports : 1, sizeof(model_ep_port_t));
            for (size_t i = 0; i < o->nports; i++) {
                o->ports[i].name = strdup(i ? "grpc" : "http");
                o->ports[i].port = (uint16_t)(8080 + i);
            }
            o->nendpoints = (b >> 4) % 4;
            o->endpoints = calloc(o->nendpoints ? o->nendpoints : 1, sizeof(model_endpoint_t));
            for (size_t i = 0; i < o->nendpoints; i++) {
                model_endpoint_t *e = &o->endpoints[i];
                unsigned x = rb(r);
                ip(&e->ip, (x & 0x80) | ci, s, 1 + (x & 3));
                e->ready = !(x & 4);
                e->serving = !(x & 8);
                e->terminating = (x & 16) != 0;
                if (x & 32)
                    e->node = dupf("node%u", x & 1, 0);
                if (x & 64)
                    e->zone = strdup("z1");
                if (!(x & 0x40))
                    e->pod = dupf("s%u-%u", s, x & 3);
            }
        }
        apply(m, c, MODEL_KIND_ENDPOINTSLICE, op == 6 ? MODEL_OP_UPSERT : MODEL_OP_DELETE, o);
        break;
    }
    case 8:
    case 9: {
        model_pod_t *o = calloc(1, sizeof(*o));
        unsigned b = rb(r);
        o->ns = strdup(ns);
        o->name = dupf("s%u-%u", s, b & 3);
        o->uid = dupf("pod-%u-%u", s * 4 + (b & 3), ci);
        if (op == 8) {
            labels(r, &o->labels);
            o->nips = (b >> 2) % 3;
            o->ips = calloc(o->nips ? o->nips : 1, sizeof(model_ip_t));
            for (size_t i = 0; i < o->nips; i++)
                ip(&o->ips[i], (i ? 0x80 : 0) | ci, s, 1 + (b & 3));
            if (b & 16)
                o->node = dupf("node%u", (b >> 5) & 1, 0);
            o->service_account = strdup("default");
            o->ready = (b & 64) != 0;
            o->terminating = (b & 128) != 0;
        }
        apply(m, c, MODEL_KIND_POD, op == 8 ? MODEL_OP_UPSERT : MODEL_OP_DELETE, o);
        break;
    }
    case 10:
    case 11: {
        model_node_t *o = calloc(1, sizeof(*o));
        o->name = dupf("node%u", s & 1, 0);
        if (op == 10)
            labels(r, &o->labels);
        apply(m, c, MODEL_KIND_NODE, op == 10 ? MODEL_OP_UPSERT : MODEL_OP_DELETE, o);
        break;
    }
    case 12: { /* scope rules */
        unsigned b = rb(r);
        if (b & 1) {
            model_scope_set(m, NULL);
            break;
        }
        model_scope_rules_t *rules = model_scope_rules_new();
        unsigned n = (b >> 1) % 4;
        for (unsigned i = 0; i < n; i++) {
            model_scope_rule_t ru = {0};
            ru.origin = dupf("fuzz[%u]", i, 0);
            ru.namespace_sel = selector(r);
            ru.service_sel = selector(r);
            ru.scope = (rb(r) & 1) ? MODEL_SCOPE_GLOBAL : MODEL_SCOPE_LOCAL;
            model_scope_rules_add(rules, ru);
        }
        model_scope_set(m, rules);
        break;
    }
    case 13:
        (void)model_cluster_set_state(m, c, (model_cluster_state_t)(si % 3));
        break;
    case 14:
        (void)model_cluster_clear_kind(m, c, (model_kind_t)(si % MODEL_KIND__COUNT));
        break;
    case 15:
        return true;
    }
    return false;
}

/* A view's contents as "name" -> resource pointer. */
typedef struct {
    char **names;
    const model_res_t **res;
    size_t n, cap;
} vstate_t;

static void vs_add(vstate_t *v, const char *name, const model_res_t *r)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->names = realloc(v->names, v->cap * sizeof(char *));
        v->res = realloc(v->res, v->cap * sizeof(*v->res));
    }
    v->names[v->n] = strdup(name);
    v->res[v->n++] = r;
}

static ssize_t vs_find(const vstate_t *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->names[i], name) == 0)
            return (ssize_t)i;
    return -1;
}

static void vs_free(vstate_t *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->names[i]);
    free(v->names);
    free(v->res);
    memset(v, 0, sizeof(*v));
}

static void diff_cb(const char *name, const model_res_t *old_r, const model_res_t *new_r, void *arg)
{
    vstate_t *v = arg;
    if (!name || (!old_r && !new_r))
        abort();
    if (new_r && strcmp(model_res_name(new_r), name) != 0)
        abort();
    ssize_t i = vs_find(v, name);
    if ((i >= 0) != (old_r != NULL))
        abort(); /* "old" must be what the client holds */
    if (i >= 0) {
        if (v->res[i] != old_r)
            abort();
        free(v->names[i]);
        v->names[i] = v->names[v->n - 1];
        v->res[i] = v->res[v->n - 1];
        v->n--;
    }
    if (new_r)
        vs_add(v, name, new_r);
}

typedef struct {
    vstate_t *v;
    size_t seen;
    const model_snapshot_t *s;
    const model_view_t *view;
    bool eps;
} chk_t;

static void full_cb(const model_res_t *r, void *arg)
{
    chk_t *c = arg;
    const char *name = model_res_name(r);
    ssize_t i = vs_find(c->v, name);
    if (i < 0 || c->v->res[i] != r)
        abort(); /* the diff missed an addition or a change */
    if (!model_res_visible(r, c->view))
        abort();
    const model_res_t *g = c->eps ? model_snapshot_get_endpoints(c->s, c->view, name)
                                  : model_snapshot_get(c->s, c->view, name);
    if (g != r)
        abort();
    if (c->eps ? model_res_kind(r) != MODEL_RES_ENDPOINTS
               : model_res_kind(r) == MODEL_RES_ENDPOINTS)
        abort();
    c->seen++;
}

static void check(const model_snapshot_t *prev, const model_snapshot_t *cur, vstate_t st[2][NVIEWS])
{
    for (int f = 0; f < 2; f++) {
        for (int v = 0; v < NVIEWS; v++) {
            if (f == 0)
                model_snapshot_diff(prev, cur, &VIEWS[v], diff_cb, &st[f][v]);
            else
                model_snapshot_diff_endpoints(prev, cur, &VIEWS[v], diff_cb, &st[f][v]);
            chk_t c = {&st[f][v], 0, cur, &VIEWS[v], f == 1};
            if (f == 0)
                model_snapshot_each(cur, &VIEWS[v], full_cb, &c);
            else
                model_snapshot_each_endpoints(cur, &VIEWS[v], full_cb, &c);
            if (c.seen != st[f][v].n)
                abort(); /* the diff missed a removal */
        }
    }
}

static model_t *mesh(void)
{
    model_t *m = model_new(NULL);
    char err[MODEL_ERRLEN];
    model_cluster_t a = {.id = "c1", .network = "n1"}, b = {.id = "c2", .network = "n2"};
    ip(&a.gateway, 0x40, 0, 1);
    ip(&b.gateway, 0x41, 0, 1);
    model_cluster_set(m, &a, err, sizeof(err));
    model_cluster_set(m, &b, err, sizeof(err));
    return m;
}

typedef struct {
    const model_snapshot_t *other;
    const model_view_t *view;
    size_t n;
    bool eps;
} eq_t;

static void show(const char *what, const model_res_t *r)
{
    if (!r) {
        fprintf(stderr, "  %s: (none)\n", what);
        return;
    }
    const model_vis_t *v = model_res_vis(r);
    fprintf(stderr, "  %s: kind %d vis mode %d cluster %s network %s nexclude %zu", what,
            (int)model_res_kind(r), (int)v->mode, v->cluster ? v->cluster : "-",
            v->network ? v->network : "-", (size_t)v->nexclude);
    for (size_t i = 0; i < v->nexclude; i++)
        fprintf(stderr, " [%s]", v->exclude[i]);
    if (model_res_kind(r) == MODEL_RES_ENDPOINTS) {
        const model_out_endpoints_t *e = model_res_endpoints(r);
        fprintf(stderr, " global %d neps %zu:", e->global, e->neps);
        for (size_t i = 0; i < e->neps; i++) {
            char buf[64];
            fprintf(stderr, " {%s %s %s gw=%d prio=%u w=%u}",
                    model_ip_format(&e->eps[i].ip, buf, sizeof(buf)),
                    e->eps[i].loc->cluster ? e->eps[i].loc->cluster : "-",
                    e->eps[i].loc->network ? e->eps[i].loc->network : "-", e->eps[i].via_gateway,
                    e->eps[i].priority, e->eps[i].weight);
        }
    } else if (model_res_kind(r) == MODEL_RES_WORKLOAD) {
        const model_out_workload_t *w = model_res_workload(r);
        fprintf(stderr,
                " uid %s cluster %s network %s node %s region %s zone %s healthy %d gw %d"
                " naddrs %u nservices %u:",
                w->uid, w->cluster_id, w->network, w->node ? w->node : "-",
                w->region ? w->region : "-", w->zone ? w->zone : "-", w->healthy,
                w->gateway != NULL, w->naddrs, w->nservices);
        for (size_t i = 0; i < w->nservices; i++) {
            fprintf(stderr, " {%s", w->services[i].key);
            for (size_t k = 0; k < w->services[i].nports; k++)
                fprintf(stderr, " %u->%u", w->services[i].ports[k].service_port,
                        w->services[i].ports[k].target_port);
            fprintf(stderr, "}");
        }
    } else if (model_res_kind(r) == MODEL_RES_SERVICE) {
        const model_out_service_t *sv = model_res_service(r);
        fprintf(stderr, " naddrs %zu nports %zu", sv->naddrs, sv->nports);
    }
    fprintf(stderr, "\n");
}

static void eq_cb(const model_res_t *r, void *arg)
{
    eq_t *e = arg;
    const model_res_t *o = e->eps
                               ? model_snapshot_get_endpoints(e->other, e->view, model_res_name(r))
                               : model_snapshot_get(e->other, e->view, model_res_name(r));
    bool same_enough =
        o && ((skip_known() && model_res_kind(r) == MODEL_RES_WORKLOAD) || model_res_equal(r, o));
    if (!same_enough) { /* o NULL: only the incremental model has it */
        fprintf(stderr, "fuzz_model_events: %s differs from a fresh build (view %s)\n",
                model_res_name(r), e->view->cluster);
        show("incremental", r);
        show("fresh", o);
        abort();
    }
    e->n++;
}

/* FUZZ_SKIP_KNOWN=1 lets a long run look past the known findings (off by
 * default; the regressions fail until they are fixed):
 *  - regressions/fuzz_model_events-1: a removed cluster's per-viewer
 *    endpoints variants linger: skip views whose cluster is gone;
 *  - regressions/fuzz_model_events-2: a Service's port change does not
 *    re-derive the workloads of its pods: skip comparing workloads. */
static bool skip_known(void)
{
    static int skip = -1;
    if (skip < 0) {
        const char *e = getenv("FUZZ_SKIP_KNOWN");
        skip = e && *e == '1';
    }
    return skip;
}

static bool cluster_present;
static const char *present_id;
static void present_cb(const model_cluster_info_t *c, void *arg)
{
    (void)arg;
    if (strcmp(c->id, present_id) == 0)
        cluster_present = true;
}

static bool skip_view(const model_t *m, const model_view_t *v)
{
    if (!skip_known())
        return false;
    cluster_present = false;
    present_id = v->cluster;
    model_each_cluster(m, present_cb, NULL);
    return !cluster_present;
}

static size_t count_cb_n;
static void count_cb(const model_res_t *r, void *arg)
{
    (void)r;
    (void)arg;
    count_cb_n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    model_t *m = mesh();
    vstate_t st[2][NVIEWS];
    memset(st, 0, sizeof(st));
    model_snapshot_t *prev = NULL;
    rd_t r = {data, size, 0};
    while (r.i < r.n) {
        if (step(m, &r)) {
            model_snapshot_t *cur = model_commit(m);
            if (!cur)
                abort();
            if (prev && model_snapshot_version(cur) < model_snapshot_version(prev))
                abort();
            check(prev, cur, st);
            model_snapshot_unref(prev);
            prev = cur;
        }
    }
    model_snapshot_t *cur = model_commit(m);
    check(prev, cur, st);
    model_snapshot_unref(prev);

    /* the same program on a fresh model, one commit at the end */
    model_t *fresh = mesh();
    rd_t r2 = {data, size, 0};
    while (r2.i < r2.n)
        (void)step(fresh, &r2);
    model_snapshot_t *f = model_commit(fresh);
    for (int fam = 0; fam < 2; fam++) {
        for (int v = 0; v < NVIEWS; v++) {
            if (skip_view(fresh, &VIEWS[v]))
                continue;
            eq_t e = {f, &VIEWS[v], 0, fam == 1};
            if (fam == 0)
                model_snapshot_each(cur, &VIEWS[v], eq_cb, &e);
            else
                model_snapshot_each_endpoints(cur, &VIEWS[v], eq_cb, &e);
            count_cb_n = 0;
            if (fam == 0)
                model_snapshot_each(f, &VIEWS[v], count_cb, NULL);
            else
                model_snapshot_each_endpoints(f, &VIEWS[v], count_cb, NULL);
            if (count_cb_n != e.n) {
                fprintf(stderr,
                        "fuzz_model_events: fresh build has %zu resources in view %s, "
                        "incremental %zu\n",
                        count_cb_n, VIEWS[v].cluster, e.n);
                abort();
            }
        }
    }
    model_snapshot_unref(f);
    model_free(fresh);

    for (int fam = 0; fam < 2; fam++)
        for (int v = 0; v < NVIEWS; v++)
            vs_free(&st[fam][v]);
    model_snapshot_unref(cur);
    model_free(m);
    return 0;
}
