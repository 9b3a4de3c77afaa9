/*
 * envoy_stream.c - LDS/RDS/CDS/EDS on an ADS stream (SotW and Delta), for
 * proxyless gRPC clients and east-west gateways. Runs on the server threads
 * with srv->mu held, like stream.c and push.c, and keeps its per-type state in
 * st->envoy[] (xds_type_state_t, used as follows).
 *
 * SotW: subs are the names of the last request (empty or "*" = wildcard);
 * each response carries every subscribed resource that exists, with
 * version_info = the digest of them all (version_sent), so a new snapshot
 * that changes nothing this proxy holds sends nothing. Delta: have maps each
 * name the client holds to its version; a push sends what differs and
 * removes what is gone. One response per type is in flight at a time.
 */
#include "envoy.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/any.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool xds_envoy_is_gateway(const char *node_id, const char *role, const char *managed)
{
    return (role && strcmp(role, XDS_GW_ROLE_VALUE) == 0) ||
           (node_id && strncmp(node_id, "waypoint~", 9) == 0 && managed &&
            strcmp(managed, XDS_GW_MANAGED_VALUE) == 0);
}

void xds_envoy_state_free(xds_stream_t *st)
{
    for (int t = 0; st->envoy && t < XDS_ENVOY_NTYPES; t++)
        xds_type_state_clear(&st->envoy[t]);
    free(st->envoy);
    st->envoy = NULL;
}

static void ack(xds_stream_t *st, xds_type_state_t *ts, const char *nonce, bool nack,
                const char *msg)
{
    if (!nonce || !*nonce || strcmp(nonce, ts->nonce) != 0)
        return; /* stale: an answer to something already superseded */
    ts->nonce[0] = '\0';
    if (!nack) {
        st->srv->stats.acks++;
        ts->version_acked = ts->version_sent;
        return;
    }
    /* the client keeps what it had; the same content is not resent */
    st->srv->stats.nacks++;
    st->nacks++;
    free(st->last_nack);
    st->last_nack = strdup(msg ? msg : "");
}

/* Whether names differ from the subscription in ts (names are unique). */
static bool subs_differ(const xds_type_state_t *ts, bool wildcard, char **names, size_t n)
{
    if (wildcard != ts->wildcard)
        return true;
    if (wildcard)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!base_map_get(&ts->subs, names[i]))
            return true;
        k++;
    }
    return k != ts->subs.n;
}

void xds_envoy_on_sotw(xds_stream_t *st, xds_type_state_t *ts, char **names, size_t n,
                       const char *nonce, bool nack, const char *msg)
{
    bool wildcard = n == 0;
    for (size_t i = 0; i < n; i++)
        wildcard |= strcmp(names[i], "*") == 0;
    ack(st, ts, nonce, nack, msg);
    /* a request without nonce (first, or after a reconnect) wants it all,
     * and so does a changed subscription, whatever its nonce */
    if (!nonce || !*nonce || !ts->subscribed || subs_differ(ts, wildcard, names, n))
        ts->need_push = true;
    ts->subscribed = true;
    ts->wildcard = wildcard;
    base_map_destroy(&ts->subs, NULL);
    for (size_t i = 0; i < n && !wildcard; i++)
        base_map_put(&ts->subs, names[i], BASE_MAP_SET);
}

static xds_envoy_role_t role_of(const xds_stream_t *st)
{
    return st->gateway ? XDS_ROLE_GATEWAY : XDS_ROLE_CLIENT;
}

static void send_sotw(xds_stream_t *st, xds_type_state_t *ts, int t, const xds_envoy_set_t *s)
{
    Google__Protobuf__Any *any = calloc(s->n + 1, sizeof(*any));
    Google__Protobuf__Any **anyp = calloc(s->n + 1, sizeof(*anyp));
    uint8_t *buf = NULL;
    if (!any || !anyp)
        goto out;
    for (size_t i = 0; i < s->n; i++) {
        google__protobuf__any__init(&any[i]);
        any[i].type_url = (char *)xds_envoy_type_url(t);
        any[i].value.data = s->items[i].buf;
        any[i].value.len = s->items[i].len;
        anyp[i] = &any[i];
    }
    Envoy__Service__Discovery__V3__DiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    char ver[17];
    xds_envoy_version(s->hash, ver);
    xds_type_state_next_nonce(st, ts);
    r.version_info = ver;
    r.type_url = (char *)xds_envoy_type_url(t);
    r.nonce = ts->nonce;
    r.n_resources = s->n;
    r.resources = anyp;
    size_t len = envoy__service__discovery__v3__discovery_response__get_packed_size(&r);
    if (!(buf = malloc(len ? len : 1))) {
        ts->nonce[0] = '\0';
        goto out;
    }
    envoy__service__discovery__v3__discovery_response__pack(&r, buf);
    st->srv->stats.resources_sent += s->n;
    ts->nsent = s->n;
    st->srv->stats.pushes_by_kind[XDS_PUSH_LDS + t]++;
    xds_stream_send(st, buf, len);
out:
    free(any);
    free(anyp);
}

/* A gateway's listeners are rebuilt from every global service; a new
 * snapshot that changed none of their inputs needs no rebuild (nor a
 * response: the client already holds them). */
static bool gw_listeners_hold(const xds_stream_t *st, int t, xds_type_state_t *ts,
                              model_snapshot_t *snap)
{
    if (!st->gateway || t != XDS_LDS || !ts->base || ts->need_push || ts->pending.n ||
        xds_envoy_gw_listeners_changed(ts->base, snap, &st->view))
        return false;
    xds_type_state_set_base(ts, snap);
    return true;
}

/* 1 when a response went out for type t, else 0. */
static int pump_sotw(xds_stream_t *st, int t)
{
    xds_type_state_t *ts = &st->envoy[t];
    model_snapshot_t *snap = st->srv->snap;
    if (!ts->subscribed || ts->nonce[0] || !snap || (ts->base == snap && !ts->need_push) ||
        gw_listeners_hold(st, t, ts, snap))
        return 0;
    xds_envoy_set_t s;
    if (xds_envoy_collect(&s, snap, &st->view, role_of(st), st->srv->trust_domain, t,
                          ts->wildcard ? NULL : &ts->subs) < 0) {
        xds_envoy_set_free(&s);
        return 0; /* out of memory: try again at the next event */
    }
    int sent = 0;
    if (ts->need_push || s.hash != ts->version_sent) {
        send_sotw(st, ts, t, &s);
        ts->version_sent = s.hash;
        ts->need_push = false;
        sent = 1;
    }
    xds_type_state_set_base(ts, snap);
    xds_envoy_set_free(&s);
    return sent;
}

/* ---------- Delta ---------- */

typedef struct dpush {
    xds_type_state_t *ts;
    const xds_envoy_set_t *set;
    base_map_t cur;               /* name -> version of everything in set */
    const xds_envoy_item_t **res; /* to send */
    size_t nres;
    xds_names_t removed;
} dpush_t;

/* What the client holds (or said it held) that no longer exists. */
static void gone(dpush_t *p, const base_map_t *held)
{
    for (const base_map_ent_t *e = base_map_first(held); e; e = base_map_next(held, e))
        if (!base_map_get(&p->cur, e->key))
            xds_names_add(&p->removed, e->key);
}

/* Subscribed names that do not exist and the client does not hold: it is
 * told so, instead of waiting for its does-not-exist timer. */
static void missing(dpush_t *p)
{
    const base_map_t *m = &p->ts->pending;
    for (const base_map_ent_t *e = base_map_first(m); e; e = base_map_next(m, e))
        if (!base_map_get(&p->cur, e->key) && !base_map_get(&p->ts->have, e->key) &&
            !base_map_get(&p->ts->initial, e->key))
            xds_names_add(&p->removed, e->key);
}

static void dpush_diff(dpush_t *p)
{
    xds_type_state_t *ts = p->ts;
    for (size_t i = 0; i < p->set->n; i++) {
        const xds_envoy_item_t *it = &p->set->items[i];
        char v[17];
        xds_envoy_version(it->hash, v);
        xds_ver_put(&p->cur, it->name, v);
        const char *held = xds_ver_get(&ts->have, it->name);
        if (!held)
            held = xds_ver_get(&ts->initial, it->name);
        if (!held || strcmp(held, v) != 0)
            p->res[p->nres++] = it;
    }
    gone(p, &ts->have);
    gone(p, &ts->initial);
    missing(p);
}

static void send_delta(xds_stream_t *st, int t, dpush_t *p, const model_snapshot_t *snap)
{
    size_t n = p->nres;
    Envoy__Service__Discovery__V3__Resource *rs = calloc(n + 1, sizeof(*rs));
    Envoy__Service__Discovery__V3__Resource **rsp = calloc(n + 1, sizeof(*rsp));
    Google__Protobuf__Any *any = calloc(n + 1, sizeof(*any));
    char(*vers)[17] = calloc(n + 1, sizeof(*vers));
    uint8_t *buf;
    if (!rs || !rsp || !any || !vers)
        goto out;
    for (size_t i = 0; i < n; i++) {
        google__protobuf__any__init(&any[i]);
        any[i].type_url = (char *)xds_envoy_type_url(t);
        any[i].value.data = p->res[i]->buf;
        any[i].value.len = p->res[i]->len;
        xds_envoy_version(p->res[i]->hash, vers[i]);
        envoy__service__discovery__v3__resource__init(&rs[i]);
        rs[i].name = p->res[i]->name;
        rs[i].version = vers[i];
        rs[i].resource = &any[i];
        rsp[i] = &rs[i];
    }
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse r =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    char ver[24];
    snprintf(ver, sizeof(ver), "%" PRIu64, model_snapshot_version(snap));
    xds_type_state_next_nonce(st, p->ts);
    r.system_version_info = ver;
    r.type_url = (char *)xds_envoy_type_url(t);
    r.nonce = p->ts->nonce;
    r.n_resources = n;
    r.resources = rsp;
    r.n_removed_resources = p->removed.n;
    r.removed_resources = p->removed.v;
    size_t len = envoy__service__discovery__v3__delta_discovery_response__get_packed_size(&r);
    if (!(buf = malloc(len ? len : 1))) {
        p->ts->nonce[0] = '\0';
        goto out;
    }
    envoy__service__discovery__v3__delta_discovery_response__pack(&r, buf);
    st->srv->stats.resources_sent += n;
    st->srv->stats.pushes_by_kind[XDS_PUSH_LDS + t]++;
    xds_stream_send(st, buf, len);
out:
    free(rs);
    free(rsp);
    free(any);
    free(vers);
}

/* After a send: the client holds what was sent, minus what was removed. */
static void commit_have(dpush_t *p)
{
    for (size_t i = 0; i < p->nres; i++)
        xds_ver_put(&p->ts->have, p->res[i]->name, xds_ver_get(&p->cur, p->res[i]->name));
    for (size_t i = 0; i < p->removed.n; i++)
        xds_ver_del(&p->ts->have, p->removed.v[i]);
}

static int pump_delta(xds_stream_t *st, int t)
{
    xds_type_state_t *ts = &st->envoy[t];
    model_snapshot_t *snap = st->srv->snap;
    if (!ts->subscribed || ts->nonce[0] || !snap ||
        (ts->base == snap && !ts->need_push && !ts->pending.n) ||
        gw_listeners_hold(st, t, ts, snap))
        return 0;
    xds_envoy_set_t s;
    dpush_t p = {.ts = ts, .set = &s};
    int sent = 0;
    if (xds_envoy_collect(&s, snap, &st->view, role_of(st), st->srv->trust_domain, t,
                          ts->wildcard ? NULL : &ts->subs) < 0 ||
        !(p.res = calloc(s.n + 1, sizeof(*p.res))))
        goto out;
    dpush_diff(&p);
    if (p.nres || p.removed.n || ts->need_push) {
        send_delta(st, t, &p, snap);
        commit_have(&p);
        ts->version_sent = model_snapshot_version(snap);
        ts->need_push = false;
        sent = 1;
    }
    xds_type_state_set_base(ts, snap);
    base_map_destroy(&ts->pending, NULL);
    base_map_destroy(&ts->initial, free);
out:
    xds_names_free(&p.removed);
    free(p.res);
    base_map_destroy(&p.cur, free);
    xds_envoy_set_free(&s);
    return sent;
}

void xds_envoy_pump(xds_stream_t *st)
{
    for (int t = 0; st->envoy && t < XDS_ENVOY_NTYPES && !st->sending && !st->closing; t++)
        if ((st->delta ? pump_delta(st, t) : pump_sotw(st, t)))
            return;
}
