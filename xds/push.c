/*
 * push.c - building and sending responses for one stream: delta pushes are
 * the diff from the snapshot the client last got to the newest one (never a
 * backlog), SotW pushes are the full state of the view. At most one response
 * per type is unacknowledged at a time.
 */
#include "xds_internal.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/any.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out_res {
    const model_res_t *r;
    const char *alias; /* the on-demand "network/IP" name that found it, or NULL */
} out_res_t;

/* One response being assembled. */
typedef struct push {
    xds_stream_t *st;
    xds_type_state_t *ts;
    const model_snapshot_t *snap;
    out_res_t *res;
    size_t nres, capres;
    char **removed;
    size_t nrem, caprem;
    xds_map_t added;
    const char *want_net; /* network/IP lookup */
    model_ip_t want_ip;
    const char *want_name;
} push_t;

static void add_res(push_t *p, const model_res_t *r, const char *alias)
{
    const char *name = model_res_name(r);
    if (xds_map_has(&p->added, name) || xds_map_put(&p->added, name, NULL) < 0)
        return;
    if (p->nres == p->capres) {
        size_t cap = p->capres ? p->capres * 2 : 16;
        out_res_t *n = realloc(p->res, cap * sizeof(*n));
        if (!n)
            return;
        p->res = n;
        p->capres = cap;
    }
    p->res[p->nres++] = (out_res_t){r, alias};
}

static void add_removed(push_t *p, const char *name)
{
    if (xds_map_has(&p->added, name) || xds_map_put(&p->added, name, NULL) < 0)
        return;
    if (p->nrem == p->caprem) {
        size_t cap = p->caprem ? p->caprem * 2 : 16;
        char **n = realloc(p->removed, cap * sizeof(*n));
        if (!n)
            return;
        p->removed = n;
        p->caprem = cap;
    }
    if ((p->removed[p->nrem] = strdup(name)))
        p->nrem++;
}

static void push_free(push_t *p)
{
    for (size_t i = 0; i < p->nrem; i++)
        free(p->removed[i]);
    free(p->removed);
    free(p->res);
    xds_map_clear(&p->added);
}

static void next_nonce(xds_stream_t *st, xds_type_state_t *ts)
{
    uint64_t n = atomic_fetch_add(&st->srv->nonce_ctr, 1) + 1;
    snprintf(ts->nonce, sizeof(ts->nonce), "%" PRIx64, n);
}

static void diff_cb(const char *name, const model_res_t *old_r, const model_res_t *new_r,
                    void *arg)
{
    push_t *p = arg;
    xds_type_state_t *ts = p->ts;
    (void)old_r;
    if (!ts->wildcard && !xds_map_has(&ts->subs, name))
        return;
    if (new_r) {
        const char *iv = xds_map_get(&ts->initial, name);
        const char *v = xds_address_version(new_r);
        if (iv && v && strcmp(iv, v) == 0)
            return; /* the client already has exactly this */
        add_res(p, new_r, NULL);
    } else if (xds_map_has(&ts->have, name)) {
        add_removed(p, name);
    }
}

static bool res_has_addr(const model_res_t *r, const char *net, const model_ip_t *ip)
{
    if (model_res_kind(r) == MODEL_RES_WORKLOAD) {
        const model_out_workload_t *w = model_res_workload(r);
        if (strcmp(w->network ? w->network : "", net) != 0)
            return false;
        for (size_t i = 0; i < w->naddrs; i++)
            if (model_ip_equal(&w->addrs[i], ip))
                return true;
        return false;
    }
    const model_out_service_t *o = model_res_service(r);
    for (size_t i = 0; i < o->naddrs; i++)
        if (strcmp(o->addrs[i].network ? o->addrs[i].network : "", net) == 0 &&
            model_ip_equal(&o->addrs[i].ip, ip))
            return true;
    return false;
}

static void ip_scan_cb(const model_res_t *r, void *arg)
{
    push_t *p = arg;
    if (!res_has_addr(r, p->want_net, &p->want_ip))
        return;
    add_res(p, r, p->want_name);
    /* follow it from now on, as if subscribed by its own name */
    xds_map_put(&p->ts->subs, model_res_name(r), NULL);
}

/* "network/IP": every resource of the view with that address (linear scan). */
static bool resolve_ip(push_t *p, const char *name)
{
    const char *slash = strrchr(name, '/');
    char net[XDS_MAX_NAME_BUF];
    if (!slash || (size_t)(slash - name) >= sizeof(net) || model_ip_parse(slash + 1, &p->want_ip))
        return false;
    memcpy(net, name, (size_t)(slash - name));
    net[slash - name] = '\0';
    size_t before = p->nres;
    p->want_net = net;
    p->want_name = name;
    model_snapshot_each(p->snap, &p->st->view, ip_scan_cb, p);
    return p->nres > before;
}

static void pending_cb(const char *name, const char *val, void *arg)
{
    push_t *p = arg;
    (void)val;
    const model_res_t *r = p->snap ? model_snapshot_get(p->snap, &p->st->view, name) : NULL;
    if (r)
        add_res(p, r, NULL);
    else if (!p->snap || !resolve_ip(p, name))
        add_removed(p, name); /* subscribed but does not exist */
}

static void initial_cb(const char *name, const char *val, void *arg)
{
    push_t *p = arg;
    (void)val;
    if (!model_snapshot_get(p->snap, &p->st->view, name))
        add_removed(p, name);
}

static void version_str(const model_snapshot_t *snap, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64, snap ? model_snapshot_version(snap) : 0);
}

/* Packs and sends a delta response of p's resources and removals. */
static void send_delta(push_t *p, const char *type_url)
{
    xds_stream_t *st = p->st;
    size_t n = p->nres;
    Envoy__Service__Discovery__V3__Resource *rs = calloc(n + 1, sizeof(*rs));
    Envoy__Service__Discovery__V3__Resource **rsp = calloc(n + 1, sizeof(*rsp));
    Google__Protobuf__Any *any = calloc(n + 1, sizeof(*any));
    size_t k = 0;
    if (!rs || !rsp || !any)
        goto out;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *b = xds_encode_address(p->res[i].r, &len);
        if (!b)
            continue;
        google__protobuf__any__init(&any[k]);
        any[k].type_url = (char *)XDS_TYPE_ADDRESS;
        any[k].value.data = (uint8_t *)b;
        any[k].value.len = len;
        envoy__service__discovery__v3__resource__init(&rs[k]);
        rs[k].name = (char *)model_res_name(p->res[i].r);
        rs[k].version = (char *)xds_address_version(p->res[i].r);
        rs[k].resource = &any[k];
        if (p->res[i].alias) { /* the on-demand name it answers */
            rs[k].n_aliases = 1;
            rs[k].aliases = (char **)&p->res[i].alias;
        }
        rsp[k] = &rs[k];
        k++;
    }
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    char ver[24];
    version_str(p->snap, ver, sizeof(ver));
    next_nonce(st, p->ts);
    r.system_version_info = ver;
    r.type_url = (char *)type_url;
    r.nonce = p->ts->nonce;
    r.n_resources = k;
    r.resources = rsp;
    r.n_removed_resources = p->nrem;
    r.removed_resources = p->removed;
    size_t len = envoy__service__discovery__v3__delta_discovery_response__get_packed_size(&r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        p->ts->nonce[0] = '\0';
        goto out;
    }
    envoy__service__discovery__v3__delta_discovery_response__pack(&r, buf);
    st->srv->stats.resources_sent += k;
    xds_stream_send(st, buf, len);
out:
    free(rs);
    free(rsp);
    free(any);
}

/* After a send: the client now holds what we sent, minus what we removed. */
static void commit_have(push_t *p)
{
    xds_type_state_t *ts = p->ts;
    for (size_t i = 0; i < p->nres; i++)
        xds_map_put(&ts->have, model_res_name(p->res[i].r), NULL);
    for (size_t i = 0; i < p->nrem; i++)
        xds_map_del(&ts->have, p->removed[i]);
}

static void set_base(xds_type_state_t *ts, model_snapshot_t *snap)
{
    if (ts->base == snap)
        return;
    if (ts->base)
        model_snapshot_unref(ts->base);
    ts->base = snap ? model_snapshot_ref(snap) : NULL;
}

static void pump_delta_addr(xds_stream_t *st)
{
    xds_type_state_t *ts = &st->addr;
    model_snapshot_t *snap = st->srv->snap;
    if (!ts->subscribed || ts->nonce[0] || !snap)
        return;
    bool moved = ts->base != snap;
    if (!moved && !ts->need_push && !ts->pending.n)
        return;
    push_t p = {.st = st, .ts = ts, .snap = snap};
    if (moved)
        model_snapshot_diff(ts->base, snap, &st->view, diff_cb, &p);
    if (!ts->base && ts->initial.n)
        xds_map_each(&ts->initial, initial_cb, &p);
    xds_map_each(&ts->pending, pending_cb, &p);
    if (p.nres || p.nrem || ts->need_push) {
        if (moved && st->srv->publish_us) {
            st->srv->stats.push_latency_us_sum += xds_now_us() - st->srv->publish_us;
            st->srv->stats.push_latency_count++;
        }
        send_delta(&p, XDS_TYPE_ADDRESS);
        commit_have(&p);
        ts->version_sent = model_snapshot_version(snap);
        ts->need_push = false;
    }
    /* nothing for this view changed: move on silently */
    set_base(ts, snap);
    xds_map_clear(&ts->pending);
    xds_map_clear(&ts->initial);
    push_free(&p);
}

/* Authorization: we serve no policies, so the correct answer is an empty
 * set; explicitly named policies are reported removed. */
static void pump_delta_auth(xds_stream_t *st)
{
    xds_type_state_t *ts = &st->auth;
    if (!ts->subscribed || ts->nonce[0] || (!ts->need_push && !ts->pending.n))
        return;
    push_t p = {.st = st, .ts = ts, .snap = NULL};
    xds_map_each(&ts->pending, pending_cb, &p);
    p.snap = st->srv->snap;
    send_delta(&p, XDS_TYPE_AUTHORIZATION);
    commit_have(&p);
    ts->need_push = false;
    xds_map_clear(&ts->pending);
    push_free(&p);
}

static void collect_cb(const model_res_t *r, void *arg)
{
    add_res(arg, r, NULL);
}

/* SotW: the whole view every time. */
static void send_sotw(push_t *p, const char *type_url)
{
    xds_stream_t *st = p->st;
    size_t n = p->nres, k = 0;
    Google__Protobuf__Any *any = calloc(n + 1, sizeof(*any));
    Google__Protobuf__Any **anyp = calloc(n + 1, sizeof(*anyp));
    if (!any || !anyp)
        goto out;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *b = xds_encode_address(p->res[i].r, &len);
        if (!b)
            continue;
        google__protobuf__any__init(&any[k]);
        any[k].type_url = (char *)XDS_TYPE_ADDRESS;
        any[k].value.data = (uint8_t *)b;
        any[k].value.len = len;
        anyp[k] = &any[k];
        k++;
    }
    Envoy__Service__Discovery__V3__DiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    char ver[24];
    version_str(p->snap, ver, sizeof(ver));
    next_nonce(st, p->ts);
    r.version_info = ver;
    r.type_url = (char *)type_url;
    r.nonce = p->ts->nonce;
    r.n_resources = k;
    r.resources = anyp;
    size_t len = envoy__service__discovery__v3__discovery_response__get_packed_size(&r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        p->ts->nonce[0] = '\0';
        goto out;
    }
    envoy__service__discovery__v3__discovery_response__pack(&r, buf);
    st->srv->stats.resources_sent += k;
    p->ts->nsent = k;
    xds_stream_send(st, buf, len);
out:
    free(any);
    free(anyp);
}

static void pump_sotw(xds_stream_t *st)
{
    model_snapshot_t *snap = st->srv->snap;
    xds_type_state_t *ts = &st->addr;
    if (ts->subscribed && !ts->nonce[0] && snap &&
        (ts->need_push || ts->version_sent != model_snapshot_version(snap))) {
        push_t p = {.st = st, .ts = ts, .snap = snap};
        model_snapshot_each(snap, &st->view, collect_cb, &p);
        send_sotw(&p, XDS_TYPE_ADDRESS);
        ts->version_sent = model_snapshot_version(snap);
        ts->need_push = false;
        set_base(ts, snap);
        push_free(&p);
        return;
    }
    ts = &st->auth;
    if (ts->subscribed && !ts->nonce[0] && ts->need_push) {
        push_t p = {.st = st, .ts = ts, .snap = snap};
        send_sotw(&p, XDS_TYPE_AUTHORIZATION);
        ts->need_push = false;
        push_free(&p);
    }
}

void xds_stream_pump(xds_stream_t *st)
{
    if (st->closing || st->sending || !st->node_id)
        return;
    if (!st->delta) {
        pump_sotw(st);
        return;
    }
    pump_delta_auth(st);
    if (!st->sending)
        pump_delta_addr(st);
}
