/*
 * push.c - building and sending responses for one stream: delta pushes are
 * the diff from the snapshot the client last got to the newest one (never a
 * backlog), SotW pushes are the full state of the view. At most one response
 * per type is unacknowledged at a time.
 */
#include "xds_int.h"

const double XDS_LATENCY_BOUNDS_MS[XDS_LATENCY_BUCKETS - 1] = {1,   5,   10,  25,  50,
                                                               100, 250, 500, 1000};

void xds_observe_latency(xds_server_t *s, uint64_t us)
{
    size_t i = 0;
    while (i < XDS_LATENCY_BUCKETS - 1 && (double)us > XDS_LATENCY_BOUNDS_MS[i] * 1000.0)
        i++;
    s->stats.push_latency_buckets[i]++;
    s->stats.push_latency_us_sum += us;
    s->stats.push_latency_count++;
}

const char *xds_proxy_kind_name(xds_proxy_kind_t k)
{
    static const char *const names[] = {"ztunnel", "gateway", "grpc"};
    return (unsigned)k < XDS_PROXY_KINDS ? names[k] : "unknown";
}
#include "envoy.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/any.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The resources one type serves, and where the snapshot keeps them. */
typedef struct fam {
    const char *type_url;
    bool (*mine)(const model_res_t *r);
    void (*each)(const model_snapshot_t *s, const model_view_t *v, model_res_fn fn, void *arg);
    const model_res_t *(*get)(const model_snapshot_t *s, const model_view_t *v, const char *name);
    void (*diff)(const model_snapshot_t *from, const model_snapshot_t *to, const model_view_t *v,
                 model_diff_fn fn, void *arg);
} fam_t;

static bool is_authz(const model_res_t *r)
{
    return model_res_kind(r) == MODEL_RES_AUTHZ;
}

static const fam_t FAM_ADDRESS = {XDS_TYPE_ADDRESS, xds_res_is_address, model_snapshot_each,
                                  model_snapshot_get, model_snapshot_diff};
static const fam_t FAM_AUTHZ = {XDS_TYPE_AUTHORIZATION, is_authz, model_snapshot_each_authz,
                                model_snapshot_get_authz, model_snapshot_diff_authz};

typedef struct out_res {
    const model_res_t *r;
    const char *alias; /* the on-demand "network/IP" name that found it, or NULL */
} out_res_t;

/* One response being assembled. */
typedef struct push {
    const fam_t *fam;
    xds_stream_t *st;
    xds_type_state_t *ts;
    const model_snapshot_t *snap;
    out_res_t *res;
    size_t nres, capres;
    xds_names_t removed;
    base_map_t added;       /* names answered by the named lookups (see seen()) */
    bool track;             /* in a named lookup: record names in added */
    size_t nnew;            /* resources the client did not hold before */
    const xds_full_t *full; /* the whole view, shared (instead of res) */
    const char *want_net;   /* network/IP lookup */
    model_ip_t want_ip;
    const char *want_name;
} push_t;

/* Whether name is already in this response. The named lookups (initial
 * versions, pending subscriptions, network/IP) run first and record their
 * names; the diff, which runs last and yields each name once, only checks
 * them, so an initial push of the whole view costs no per-name bookkeeping. */
static bool seen(push_t *p, const char *name)
{
    if (!p->track)
        return p->added.n && base_map_get(&p->added, name);
    /* put returns its value only when out of memory: name counts as seen */
    return base_map_get(&p->added, name) ||
           base_map_put(&p->added, name, BASE_MAP_SET) == BASE_MAP_SET;
}

static void add_res(push_t *p, const model_res_t *r, const char *alias)
{
    if (seen(p, model_res_name(r)))
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
    if (!seen(p, name))
        xds_names_add(&p->removed, name);
}

static void push_free(push_t *p)
{
    xds_names_free(&p->removed);
    free(p->res);
    base_map_destroy(&p->added, NULL);
}

static void diff_cb(const char *name, const model_res_t *old_r, const model_res_t *new_r, void *arg)
{
    push_t *p = arg;
    xds_type_state_t *ts = p->ts;
    /* variants of other kinds (e.g. EDS endpoints) do not exist for this
     * type: ignore them, and a resource replaced by one is gone */
    if (new_r && !p->fam->mine(new_r))
        new_r = NULL;
    if (old_r && !p->fam->mine(old_r))
        old_r = NULL;
    if (!new_r && !old_r)
        return;
    if (!ts->wildcard && !base_map_get(&ts->subs, name))
        return;
    if (new_r) {
        const char *iv = ts->initial.n ? xds_ver_get(&ts->initial, name) : NULL;
        const char *v = iv ? xds_address_version(new_r) : NULL;
        if (iv && v && strcmp(iv, v) == 0)
            return; /* the client already has exactly this */
        size_t before = p->nres;
        add_res(p, new_r, NULL);
        p->nnew += !old_r && p->nres > before;
    } else if (xds_stream_holds(ts, name, old_r)) {
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
    if (!xds_res_is_address(r) || !res_has_addr(r, p->want_net, &p->want_ip))
        return;
    add_res(p, r, p->want_name);
    /* follow it from now on, as if subscribed by its own name */
    base_map_put(&p->ts->subs, model_res_name(r), BASE_MAP_SET);
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

/* A subscribed name not answered yet. */
static void pending_one(push_t *p, const char *name)
{
    const model_res_t *r = p->snap ? p->fam->get(p->snap, &p->st->view, name) : NULL;
    if (r && p->fam->mine(r))
        add_res(p, r, NULL);
    else if (!p->snap || p->fam != &FAM_ADDRESS || !resolve_ip(p, name))
        add_removed(p, name); /* subscribed but does not exist */
}

/* A name the client said it held when it connected. */
static void initial_one(push_t *p, const char *name)
{
    const model_res_t *r = p->fam->get(p->snap, &p->st->view, name);
    if (!r || !p->fam->mine(r))
        add_removed(p, name);
}

static void version_str(const model_snapshot_t *snap, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64, snap ? model_snapshot_version(snap) : 0);
}

/* A Resource entry answering an on-demand name: the shared entry plus the
 * alias, so built for this response. Caller frees. */
static uint8_t *aliased_entry(const out_res_t *o, size_t *len)
{
    size_t vlen;
    const uint8_t *val = xds_encode_address(o->r, &vlen);
    if (!val)
        return NULL;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = (char *)XDS_TYPE_ADDRESS;
    any.value.data = (uint8_t *)val;
    any.value.len = vlen;
    Envoy__Service__Discovery__V3__Resource rs = ENVOY__SERVICE__DISCOVERY__V3__RESOURCE__INIT;
    rs.name = (char *)model_res_name(o->r);
    rs.version = (char *)xds_address_version(o->r);
    rs.resource = &any;
    rs.n_aliases = 1;
    rs.aliases = (char **)&o->alias;
    size_t n = envoy__service__discovery__v3__resource__get_packed_size(&rs);
    uint8_t *buf = malloc(n + 11);
    if (!buf)
        return NULL;
    size_t h = 0;
    buf[h++] = 0x12; /* DeltaDiscoveryResponse.resources = 2 */
    for (size_t v = n;; v >>= 7) {
        buf[h++] = (uint8_t)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
        if (v < 0x80)
            break;
    }
    envoy__service__discovery__v3__resource__pack(&rs, buf + h);
    *len = h + n;
    return buf;
}

/* The response is a small header message (version, type, nonce, removals)
 * followed by the resources' cached entries, copied as they are: nothing is
 * re-encoded per stream (concatenated protobuf encodings merge, and repeated
 * fields keep their order). One contiguous buffer, not a slice per entry:
 * grpc keeps the slice arrays of a call at their largest size for the call's
 * life, which cost megabytes per idle stream. */
/* A full-state response: this stream's header and the view's shared body. */
static void send_full(push_t *p, const uint8_t *hdr, size_t hlen)
{
    uint8_t *h = malloc(hlen ? hlen : 1);
    if (!h) {
        p->ts->nonce[0] = '\0';
        return;
    }
    memcpy(h, hdr, hlen);
    grpc_slice sl[2] = {grpc_slice_new(h, hlen, free), grpc_slice_ref(p->full->body)};
    p->st->srv->stats.resources_sent += p->full->nres;
    p->ts->nsent = p->full->nres;
    xds_stream_send_slices(p->st, sl, 2, hlen + GRPC_SLICE_LENGTH(p->full->body));
}

static void send_response(push_t *p, const uint8_t *hdr, size_t hlen, bool delta)
{
    size_t total = hlen, k = 0;
    p->st->srv->stats
        .pushes_by_kind[p->ts == &p->st->auth ? XDS_PUSH_AUTHORIZATION : XDS_PUSH_ADDRESS]++;
    if (p->full) {
        send_full(p, hdr, hlen);
        return;
    }
    for (size_t i = 0; i < p->nres; i++) {
        size_t len = 0;
        if (!p->res[i].alias || !delta)
            xds_encode_entry(p->res[i].r, delta, &len);
        total += len;
    }
    size_t used = hlen;
    uint8_t *buf = malloc(total ? total : 1);
    if (!buf) {
        p->ts->nonce[0] = '\0';
        return;
    }
    memcpy(buf, hdr, hlen);
    for (size_t i = 0; i < p->nres; i++) {
        size_t len;
        const uint8_t *b = NULL;
        uint8_t *own = NULL;
        if (delta && p->res[i].alias) /* rare: grow the buffer for it */
            b = own = aliased_entry(&p->res[i], &len);
        else
            b = xds_encode_entry(p->res[i].r, delta, &len);
        uint8_t *nb = own ? realloc(buf, total + len) : buf;
        if (!b || !nb) {
            free(own);
            continue;
        }
        buf = nb;
        total += own ? len : 0;
        memcpy(buf + used, b, len);
        used += len;
        free(own);
        k++;
    }
    p->st->srv->stats.resources_sent += k;
    p->ts->nsent = k;
    xds_stream_send(p->st, buf, used);
}

/* Packs a Delta or SotW response and sends it; with no memory the nonce is
 * forgotten, so the next ACK cannot match a response that was never sent. */
static void send_packed(push_t *p, const ProtobufCMessage *m, bool delta)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        p->ts->nonce[0] = '\0';
        return;
    }
    protobuf_c_message_pack(m, buf);
    send_response(p, buf, len, delta);
    free(buf);
}

/* Sends a delta response of p's resources and removals. */
static void send_delta(push_t *p, const char *type_url)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    char ver[24];
    version_str(p->snap, ver, sizeof(ver));
    xds_type_state_next_nonce(p->st, p->ts);
    r.system_version_info = ver;
    r.type_url = (char *)type_url;
    r.nonce = p->ts->nonce;
    r.n_removed_resources = p->removed.n;
    r.removed_resources = p->removed.v;
    send_packed(p, &r.base, true);
}

/* After a send: the client now holds what we sent, minus what we removed. */
static void commit_have(push_t *p)
{
    xds_type_state_t *ts = p->ts;
    if (ts->wildcard) { /* what it holds is its base's view: keep only a count */
        ts->nheld = (ts->base ? ts->nheld : 0) + p->nnew;
        ts->nheld = ts->nheld > p->removed.n ? ts->nheld - p->removed.n : 0;
        base_map_destroy(&ts->have, free);
        return;
    }
    for (size_t i = 0; i < p->nres; i++)
        xds_ver_put(&ts->have, model_res_name(p->res[i].r), NULL);
    for (size_t i = 0; i < p->removed.n; i++)
        xds_ver_del(&ts->have, p->removed.v[i]);
}

/* ---------- full state per view, shared by the streams of that view ----------
 * A thousand ztunnels of one cluster that (re)connect all get the same
 * thousands of resources: build that body once per view and snapshot and
 * send it to each as one refcounted slice, instead of walking the snapshot
 * and copying megabytes per stream. Entries of older snapshots are dropped
 * at publish. */

typedef struct body_buf {
    uint8_t *b;
    size_t len, cap, n;
    bool delta, oom;
} body_buf_t;

static void body_cb(const model_res_t *r, void *arg)
{
    body_buf_t *bb = arg;
    size_t len;
    const uint8_t *e = xds_res_is_address(r) ? xds_encode_entry(r, bb->delta, &len) : NULL;
    if (!e || bb->oom)
        return;
    if (bb->len + len > bb->cap) {
        size_t cap = bb->cap ? bb->cap * 2 : 64 * 1024;
        while (cap < bb->len + len)
            cap *= 2;
        uint8_t *nb = realloc(bb->b, cap);
        if (!nb) {
            bb->oom = true;
            return;
        }
        bb->b = nb;
        bb->cap = cap;
    }
    memcpy(bb->b + bb->len, e, len);
    bb->len += len;
    bb->n++;
}

void xds_full_drop(xds_full_t *f)
{
    if (!f->snap)
        return;
    model_snapshot_unref(f->snap);
    free(f->cluster);
    free(f->network);
    grpc_slice_unref(f->body); /* in-flight messages keep their own refs */
    memset(f, 0, sizeof(*f));
}

static bool full_is(const xds_full_t *f, const model_snapshot_t *snap, const model_view_t *v,
                    bool delta)
{
    return f->snap == snap && f->delta == delta && strcmp(f->cluster, v->cluster) == 0 &&
           strcmp(f->network, v->network) == 0;
}

/* The full state of view v in snap, or NULL when out of memory. */
static const xds_full_t *full_get(xds_server_t *s, model_snapshot_t *snap, const model_view_t *v,
                                  bool delta)
{
    for (size_t i = 0; i < XDS_NFULL; i++)
        if (s->full[i].snap && full_is(&s->full[i], snap, v, delta))
            return &s->full[i];
    body_buf_t bb = {.delta = delta};
    model_snapshot_each(snap, v, body_cb, &bb);
    xds_full_t *f = &s->full[s->full_next++ % XDS_NFULL];
    xds_full_drop(f);
    f->cluster = strdup(v->cluster);
    f->network = strdup(v->network);
    if (bb.oom || !f->cluster || !f->network) {
        free(bb.b);
        free(f->cluster);
        free(f->network);
        memset(f, 0, sizeof(*f));
        return NULL;
    }
    f->snap = model_snapshot_ref(snap);
    f->delta = delta;
    f->nres = bb.n;
    f->body = bb.b ? grpc_slice_new(bb.b, bb.len, free) : grpc_empty_slice();
    return f;
}

/* Delta: what changed in the family since the client's base. Addresses
 * of a whole view are built once and shared (full_get); Authorizations are
 * few, each encoded once and shared as every resource is. */
static void pump_delta(xds_stream_t *st, xds_type_state_t *ts, const fam_t *fam)
{
    model_snapshot_t *snap = st->srv->snap;
    bool addr = fam == &FAM_ADDRESS;
    if (!ts->subscribed || ts->nonce[0] || !snap)
        return;
    bool moved = ts->base != snap;
    if (!moved && !ts->need_push && !ts->pending.n)
        return;
    if (addr && !ts->base && ts->wildcard && !xds_full_slot(st))
        return; /* queued: pumped again when a slot frees */
    push_t p = {.fam = fam, .st = st, .ts = ts, .snap = snap, .track = true};
    if (addr && ts->wildcard && !ts->base && !ts->initial.n && !ts->pending.n &&
        (p.full = full_get(st->srv, snap, &st->view, true))) {
        p.nnew = p.full->nres; /* the whole view, as the diff from nothing */
        moved = false;
        ts->need_push = true;
    }
    if (!ts->base)
        for (const base_map_ent_t *e = base_map_first(&ts->initial); e;
             e = base_map_next(&ts->initial, e))
            initial_one(&p, e->key);
    for (const base_map_ent_t *e = base_map_first(&ts->pending); e;
         e = base_map_next(&ts->pending, e))
        pending_one(&p, e->key);
    p.track = false;
    if (moved)
        fam->diff(ts->base, snap, &st->view, diff_cb, &p);
    if (p.nres || p.removed.n || ts->need_push) {
        if (addr && moved && st->srv->publish_us)
            xds_observe_latency(st->srv, xds_now_us() - st->srv->publish_us);
        send_delta(&p, fam->type_url);
        commit_have(&p); /* before set_base: it reads whether there was one */
        ts->version_sent = model_snapshot_version(snap);
        ts->need_push = false;
    }
    /* nothing for this view changed: move on silently */
    xds_type_state_set_base(ts, snap);
    base_map_destroy(&ts->pending, NULL);
    base_map_destroy(&ts->initial, free);
    push_free(&p);
    if (addr)
        xds_full_unused(st);
}

static void collect_cb(const model_res_t *r, void *arg)
{
    push_t *p = arg;
    if (p->fam->mine(r))
        add_res(p, r, NULL);
}

static void any_cb(const char *name, const model_res_t *old_r, const model_res_t *new_r, void *arg)
{
    (void)name;
    if ((old_r && is_authz(old_r)) || (new_r && is_authz(new_r)))
        *(bool *)arg = true;
}

/* SotW: the whole view every time. */
static void send_sotw(push_t *p, const char *type_url)
{
    Envoy__Service__Discovery__V3__DiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    char ver[24];
    version_str(p->snap, ver, sizeof(ver));
    xds_type_state_next_nonce(p->st, p->ts);
    r.version_info = ver;
    r.type_url = (char *)type_url;
    r.nonce = p->ts->nonce;
    send_packed(p, &r.base, false);
}

static void pump_sotw(xds_stream_t *st)
{
    model_snapshot_t *snap = st->srv->snap;
    xds_type_state_t *ts = &st->addr;
    if (ts->subscribed && !ts->nonce[0] && snap &&
        (ts->need_push || ts->version_sent != model_snapshot_version(snap))) {
        if (!xds_full_slot(st))
            return; /* queued: pumped again when a slot frees */
        push_t p = {.fam = &FAM_ADDRESS, .st = st, .ts = ts, .snap = snap};
        if (!(p.full = full_get(st->srv, snap, &st->view, false)))
            model_snapshot_each(snap, &st->view, collect_cb, &p);
        send_sotw(&p, XDS_TYPE_ADDRESS);
        ts->version_sent = model_snapshot_version(snap);
        ts->need_push = false;
        xds_type_state_set_base(ts, snap);
        push_free(&p);
        xds_full_unused(st);
        return;
    }
    /* Authorization: the whole set again when any policy of the view
     * changed (the diff of the few policies, not of the Addresses) */
    ts = &st->auth;
    if (!ts->subscribed || ts->nonce[0] || !snap)
        return;
    bool changed = false;
    if (ts->base != snap)
        model_snapshot_diff_authz(ts->base, snap, &st->view, any_cb, &changed);
    if (ts->need_push || changed) {
        push_t p = {.fam = &FAM_AUTHZ, .st = st, .ts = ts, .snap = snap};
        model_snapshot_each_authz(snap, &st->view, collect_cb, &p);
        send_sotw(&p, XDS_TYPE_AUTHORIZATION);
        ts->version_sent = model_snapshot_version(snap);
        ts->need_push = false;
        push_free(&p);
    }
    xds_type_state_set_base(ts, snap);
}

void xds_stream_pump(xds_stream_t *st)
{
    if (st->closing || st->sending || !st->node_id || !st->authed)
        return;
    if (!st->delta) {
        xds_debug_pump(st);
        if (!st->sending)
            pump_sotw(st);
        if (!st->sending)
            xds_envoy_pump(st);
        return;
    }
    pump_delta(st, &st->auth, &FAM_AUTHZ);
    if (!st->sending)
        pump_delta(st, &st->addr, &FAM_ADDRESS);
    if (!st->sending)
        xds_envoy_pump(st);
}
