/*
 * authz.c - AuthorizationPolicy and PeerAuthentication into the
 * istio.security.Authorization resources ztunnel enforces, the way istiod
 * translates them (pilot/pkg/serviceregistry/ambient): the same scopes,
 * clause order, dropped values, status messages and quirks, so that a
 * ztunnel behaves the same under meshfed as under istiod.
 *
 * ztunnel enforces only L4 attributes. An ALLOW rule naming any HTTP
 * attribute is dropped whole (less is allowed); a DENY rule loses just those
 * attributes, which can leave empty matches that ztunnel skips.
 */
#define _GNU_SOURCE /* vasprintf */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define AZ_UNSUPPORTED "UnsupportedValue"

/* ---------- freeing ---------- */

void model_strlist_clear(model_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

#define AP_CLEAR(m, json, layer) model_strlist_clear(&x->m);

static void ap_source_clear(model_ap_source_t *x)
{
    MODEL_AP_SOURCE_FIELDS(AP_CLEAR)
}

static void ap_operation_clear(model_ap_operation_t *x)
{
    MODEL_AP_OPERATION_FIELDS(AP_CLEAR)
}

static void ap_rule_clear(model_ap_rule_t *r)
{
    for (size_t i = 0; i < r->nfrom; i++)
        ap_source_clear(&r->from[i]);
    for (size_t i = 0; i < r->nto; i++)
        ap_operation_clear(&r->to[i]);
    for (size_t i = 0; i < r->nwhen; i++) {
        free(r->when[i].key);
        model_strlist_clear(&r->when[i].values);
        model_strlist_clear(&r->when[i].not_values);
    }
    free(r->from);
    free(r->to);
    free(r->when);
}

void model_authz_policy_free(model_authz_policy_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nrules; i++)
        ap_rule_clear(&p->rules[i]);
    free(p->rules);
    free(p->ns);
    free(p->name);
    free(p->dry_run);
    free(p->invalid);
    model_labels_clear(&p->selector.labels);
    free(p);
}

void model_peer_authn_free(model_peer_authn_t *p)
{
    if (!p)
        return;
    free(p->ns);
    free(p->name);
    model_labels_clear(&p->selector.labels);
    free(p->ports);
    free(p);
}

static void sm_free(model_strmatch_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].value);
}

static void sa_free(model_sa_match_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].ns);
        free(v[i].sa);
    }
}

#define FREE_SM(m) sm_free(x->m, x->n_##m);
#define FREE_SA(m) sa_free(x->m, x->n_##m);
#define FREE_CIDR(m)
#define FREE_PORT(m)
#define MATCH_FREE(kind, m)                                                                        \
    FREE_##kind(m);                                                                                \
    free(x->m);

static void match_clear(model_authz_match_t *x)
{
    MODEL_AUTHZ_MATCH_FIELDS(MATCH_FREE)
}

static void clause_clear(model_authz_clause_t *c)
{
    for (size_t i = 0; i < c->nmatches; i++)
        match_clear(&c->matches[i]);
    free(c->matches);
}

static void group_clear(model_authz_group_t *g)
{
    for (size_t i = 0; i < g->nclauses; i++)
        clause_clear(&g->clauses[i]);
    free(g->clauses);
}

void model_out_authz_free(model_out_authz_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->ngroups; i++)
        group_clear(&a->groups[i]);
    free(a->groups);
    free(a->name);
    free(a->ns);
    free(a);
}

void model_authz_status_clear(model_authz_status_t *st)
{
    free(st->message);
    st->message = NULL;
    st->reason = NULL;
}

#define MATCH_HAS(kind, m) || x->n_##m > 0

bool model_authz_match_empty(const model_authz_match_t *x)
{
    return !(false MODEL_AUTHZ_MATCH_FIELDS(MATCH_HAS));
}

bool model_out_authz_effective(const model_out_authz_t *a)
{
    for (size_t g = 0; g < a->ngroups; g++) {
        bool all = true;
        for (size_t c = 0; c < a->groups[g].nclauses && all; c++) {
            const model_authz_clause_t *cl = &a->groups[g].clauses[c];
            bool some = false;
            for (size_t m = 0; m < cl->nmatches && !some; m++)
                some = !model_authz_match_empty(&cl->matches[m]);
            all = some;
        }
        if (all)
            return true;
    }
    return false;
}

/* ---------- equality ---------- */

static bool text_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool sm_eq(const model_strmatch_t *a, const model_strmatch_t *b)
{
    return a->kind == b->kind && (a->kind == MODEL_SM_PRESENCE || text_eq(a->value, b->value));
}

static bool cidr_eq(const model_cidr_t *a, const model_cidr_t *b)
{
    return a->length == b->length && model_ip_equal(&a->ip, &b->ip);
}

static bool port_eq(const uint32_t *a, const uint32_t *b)
{
    return *a == *b;
}

static bool sa_eq(const model_sa_match_t *a, const model_sa_match_t *b)
{
    return text_eq(a->ns, b->ns) && text_eq(a->sa, b->sa);
}

#define EQ_FN_SM sm_eq
#define EQ_FN_CIDR cidr_eq
#define EQ_FN_PORT port_eq
#define EQ_FN_SA sa_eq
#define MATCH_EQ(kind, m)                                                                          \
    if (a->n_##m != b->n_##m)                                                                      \
        return false;                                                                              \
    for (size_t i = 0; i < a->n_##m; i++)                                                          \
        if (!EQ_FN_##kind(&a->m[i], &b->m[i]))                                                     \
            return false;

static bool match_eq(const model_authz_match_t *a, const model_authz_match_t *b)
{
    MODEL_AUTHZ_MATCH_FIELDS(MATCH_EQ)
    return true;
}

static bool clause_eq(const model_authz_clause_t *a, const model_authz_clause_t *b)
{
    if (a->nmatches != b->nmatches)
        return false;
    for (size_t i = 0; i < a->nmatches; i++)
        if (!match_eq(&a->matches[i], &b->matches[i]))
            return false;
    return true;
}

static bool group_eq(const model_authz_group_t *a, const model_authz_group_t *b)
{
    if (a->nclauses != b->nclauses)
        return false;
    for (size_t i = 0; i < a->nclauses; i++)
        if (!clause_eq(&a->clauses[i], &b->clauses[i]))
            return false;
    return true;
}

bool model_out_authz_equal(const model_out_authz_t *a, const model_out_authz_t *b)
{
    if (!a || !b)
        return a == b;
    if (!text_eq(a->name, b->name) || !text_eq(a->ns, b->ns) || a->scope != b->scope ||
        a->action != b->action || a->dry_run != b->dry_run || a->ngroups != b->ngroups)
        return false;
    for (size_t i = 0; i < a->ngroups; i++)
        if (!group_eq(&a->groups[i], &b->groups[i]))
            return false;
    return true;
}

/* ---------- building ---------- */

/* Appends one zeroed element of size sz to *arr (count *n); NULL when out
 * of memory (the array is unchanged). */
static void *push(void *arr, size_t *n, size_t sz)
{
    void **a = arr;
    char *p = realloc(*a, (*n + 1) * sz);
    if (!p)
        return NULL;
    *a = p;
    memset(p + *n * sz, 0, sz);
    return p + (*n)++ * sz;
}

static int strlist_add(model_strlist_t *l, const char *s)
{
    char *d = strdup(s);
    char **slot = d ? push(&l->v, &l->n, sizeof(*l->v)) : NULL;
    if (!slot) {
        free(d);
        return -1;
    }
    *slot = d;
    return 0;
}

/* "*" is presence; a leading '*' wins over a trailing one ("*a*" is suffix
 * "a*"); "" stays an exact match on "". */
static int sm_add(model_strmatch_t **v, size_t *n, const char *s)
{
    size_t len = strlen(s);
    model_strmatch_t m = {MODEL_SM_EXACT, NULL};
    if (strcmp(s, "*") == 0)
        m.kind = MODEL_SM_PRESENCE;
    else if (s[0] == '*')
        m = (model_strmatch_t){MODEL_SM_SUFFIX, strdup(s + 1)};
    else if (len > 0 && s[len - 1] == '*')
        m = (model_strmatch_t){MODEL_SM_PREFIX, strndup(s, len - 1)};
    else
        m.value = strdup(s);
    model_strmatch_t *slot = NULL;
    if ((m.value || m.kind == MODEL_SM_PRESENCE) && (slot = push(v, n, sizeof(**v))))
        *slot = m;
    else
        free(m.value);
    return slot ? 0 : -1;
}

static int sms_add(model_strmatch_t **v, size_t *n, const model_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (sm_add(v, n, l->v[i]) < 0)
            return -1;
    return 0;
}

static int presence_add(model_strmatch_t **v, size_t *n)
{
    return sm_add(v, n, "*");
}

/* Go's strconv.ParseUint(s, 10, 32) and then the 65535 bound: anything
 * else (a named port, a sign, blanks) is dropped without a word (Q4). */
static bool port_parse(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > 65535)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

static int port_add(uint32_t **v, size_t *n, uint32_t port)
{
    uint32_t *slot = push(v, n, sizeof(**v));
    if (slot)
        *slot = port;
    return slot ? 0 : -1;
}

static int ports_add(uint32_t **v, size_t *n, const model_strlist_t *l)
{
    uint32_t port;
    for (size_t i = 0; i < l->n; i++)
        if (port_parse(l->v[i], &port) && port_add(v, n, port) < 0)
            return -1;
    return 0;
}

/* Go's netip.ParseAddr: IPv6 may carry a zone, which is not part of the
 * address bytes. */
static bool addr_parse(const char *s, size_t len, model_ip_t *ip)
{
    char buf[64];
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *zone = strchr(buf, '%');
    if (zone) {
        if (!strchr(buf, ':') || !zone[1])
            return false;
        *zone = '\0';
    }
    return model_ip_parse(buf, ip) == 0;
}

/* A CIDR as netip.ParsePrefix reads it (no zone, prefix length without sign
 * or leading zero, host bits kept), or an address with the full length. */
static bool cidr_parse(const char *s, model_cidr_t *out)
{
    const char *slash = strrchr(s, '/');
    if (!slash) {
        if (!addr_parse(s, strlen(s), &out->ip))
            return false;
        out->length = (uint8_t)(out->ip.len * 8);
        return true;
    }
    if (memchr(s, '%', (size_t)(slash - s)) || !addr_parse(s, (size_t)(slash - s), &out->ip))
        return false;
    const char *b = slash + 1;
    size_t blen = strlen(b);
    if (blen == 0 || blen > 3 || (blen > 1 && b[0] == '0'))
        return false;
    unsigned bits = 0;
    for (; *b; b++) {
        if (*b < '0' || *b > '9')
            return false;
        bits = bits * 10 + (unsigned)(*b - '0');
    }
    if (bits > out->ip.len * 8u)
        return false;
    out->length = (uint8_t)bits;
    return true;
}

/* Empty and unparseable values are dropped silently, as istiod does. */
static int cidrs_add(model_cidr_t **v, size_t *n, const model_strlist_t *l)
{
    model_cidr_t c;
    for (size_t i = 0; i < l->n; i++) {
        if (!l->v[i][0] || !cidr_parse(l->v[i], &c))
            continue;
        model_cidr_t *slot = push(v, n, sizeof(**v));
        if (!slot)
            return -1;
        *slot = c;
    }
    return 0;
}

/* ---------- values istiod drops where dropping opens ----------
 *
 * istiod drops an IP, CIDR or port it cannot parse, trusting its validating
 * webhook to keep such values out. Dropping from an ALLOW's ipBlocks or
 * ports, or a DENY's notIpBlocks or notPorts, only narrows what is let
 * through; dropping from a DENY's ipBlocks or ports, or an ALLOW's
 * notIpBlocks or notPorts, lets through what the policy was written to
 * stop (a DENY whose only CIDR is dropped denies nothing). meshfed has no
 * webhook, so those are refused. */

typedef struct check_ctx {
    const model_authz_policy_t *p;
    char *err;
    size_t errlen;
} check_ctx_t;

/* l at spec.<where>: every value an IP or CIDR (ip), or a port. */
static int check_list(check_ctx_t *c, const char *where, const model_strlist_t *l, bool ip)
{
    model_cidr_t cidr;
    uint32_t port;
    for (size_t i = 0; i < l->n; i++) {
        const char *v = l->v[i];
        if (ip ? !v[0] || cidr_parse(v, &cidr) : port_parse(v, &port))
            continue;
        snprintf(c->err, c->errlen,
                 "AuthorizationPolicy %s/%s: spec.%s[%zu]: bad %s \"%.64s\" (istiod would drop "
                 "it, which lets through what this %s was written to stop)",
                 c->p->ns ? c->p->ns : "", c->p->name ? c->p->name : "", where, i,
                 ip ? "IP address or CIDR range" : "port", v,
                 c->p->action == MODEL_AP_DENY ? "DENY" : "ALLOW");
        return -1;
    }
    return 0;
}

/* The when keys whose values istiod parses: 1 IP, 2 port, 0 neither. */
static int when_parsed(const char *key)
{
    if (strcmp(key, "source.ip") == 0 || strcmp(key, "destination.ip") == 0)
        return 1;
    return strcmp(key, "destination.port") == 0 ? 2 : 0;
}

int model_authz_policy_check(const model_authz_policy_t *p, char *err, size_t errlen)
{
    check_ctx_t c = {p, err, errlen};
    char at[160];
    bool deny = p->action == MODEL_AP_DENY;
    if (p->action != MODEL_AP_ALLOW && !deny)
        return 0;
    for (size_t r = 0; r < p->nrules; r++) {
        const model_ap_rule_t *x = &p->rules[r];
        for (size_t i = 0; i < x->nfrom; i++) {
            const model_ap_source_t *s = &x->from[i];
            snprintf(at, sizeof(at), "rules[%zu].from[%zu].source.%s", r, i,
                     deny ? "ipBlocks" : "notIpBlocks");
            if (check_list(&c, at, deny ? &s->ip_blocks : &s->not_ip_blocks, true) < 0)
                return -1;
        }
        for (size_t i = 0; i < x->nto; i++) {
            const model_ap_operation_t *o = &x->to[i];
            snprintf(at, sizeof(at), "rules[%zu].to[%zu].operation.%s", r, i,
                     deny ? "ports" : "notPorts");
            if (check_list(&c, at, deny ? &o->ports : &o->not_ports, false) < 0)
                return -1;
        }
        for (size_t i = 0; i < x->nwhen; i++) {
            const model_ap_condition_t *w = &x->when[i];
            int k = when_parsed(w->key);
            snprintf(at, sizeof(at), "rules[%zu].when[%zu].%s", r, i,
                     deny ? "values" : "notValues");
            if (k && check_list(&c, at, deny ? &w->values : &w->not_values, k == 1) < 0)
                return -1;
        }
    }
    return 0;
}

/* "ns/sa" splits at the first '/'; a bare "sa" is in the policy's namespace. */
static int sas_add(model_sa_match_t **v, size_t *n, const model_strlist_t *l, const char *ns)
{
    for (size_t i = 0; i < l->n; i++) {
        const char *s = l->v[i], *slash = strchr(s, '/');
        model_sa_match_t m;
        m.ns = slash ? strndup(s, (size_t)(slash - s)) : strdup(ns ? ns : "");
        m.sa = strdup(slash ? slash + 1 : s);
        model_sa_match_t *slot = m.ns && m.sa ? push(v, n, sizeof(**v)) : NULL;
        if (!slot) {
            free(m.ns);
            free(m.sa);
            return -1;
        }
        *slot = m;
    }
    return 0;
}

/* ---------- AuthorizationPolicy ---------- */

#define L7_RECORD_L4(m, json)
#define L7_RECORD_L7(m, json)                                                                      \
    if (x->m.n > 0 && strlist_add(found, json) < 0)                                                \
        return -1;
#define L7_RECORD(m, json, layer) L7_RECORD_##layer(m, json)

static int source_l7(const model_ap_source_t *x, model_strlist_t *found)
{
    MODEL_AP_SOURCE_FIELDS(L7_RECORD)
    return 0;
}

static int operation_l7(const model_ap_operation_t *x, model_strlist_t *found)
{
    MODEL_AP_OPERATION_FIELDS(L7_RECORD)
    return 0;
}

static bool when_l4(const char *key)
{
    static const char *const keys[] = {"source.ip", "source.namespace", "source.principal",
                                       "destination.ip", "destination.port"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

/* Adds the HTTP attribute names of r to found. */
static int rule_l7(const model_ap_rule_t *r, model_strlist_t *found)
{
    for (size_t i = 0; i < r->nto; i++)
        if (operation_l7(&r->to[i], found) < 0)
            return -1;
    for (size_t i = 0; i < r->nfrom; i++)
        if (source_l7(&r->from[i], found) < 0)
            return -1;
    for (size_t i = 0; i < r->nwhen; i++)
        if (!when_l4(r->when[i].key) && strlist_add(found, r->when[i].key) < 0)
            return -1;
    return 0;
}

static model_authz_clause_t *clause_add(model_authz_group_t *g)
{
    return push(&g->clauses, &g->nclauses, sizeof(*g->clauses));
}

static model_authz_match_t *match_add(model_authz_clause_t *c)
{
    return push(&c->matches, &c->nmatches, sizeof(*c->matches));
}

static int source_match(const model_ap_source_t *s, const char *ns, model_authz_match_t *m)
{
    return sms_add(&m->principals, &m->n_principals, &s->principals) < 0 ||
                   sms_add(&m->not_principals, &m->n_not_principals, &s->not_principals) < 0 ||
                   sms_add(&m->namespaces, &m->n_namespaces, &s->namespaces) < 0 ||
                   sms_add(&m->not_namespaces, &m->n_not_namespaces, &s->not_namespaces) < 0 ||
                   cidrs_add(&m->source_ips, &m->n_source_ips, &s->ip_blocks) < 0 ||
                   cidrs_add(&m->not_source_ips, &m->n_not_source_ips, &s->not_ip_blocks) < 0 ||
                   sas_add(&m->service_accounts, &m->n_service_accounts, &s->service_accounts, ns) <
                       0 ||
                   sas_add(&m->not_service_accounts, &m->n_not_service_accounts,
                           &s->not_service_accounts, ns) < 0
               ? -1
               : 0;
}

/* One when[] condition: values and notValues of an L4 key share one match;
 * any other key leaves the match empty. */
static int when_match(const model_ap_condition_t *w, model_authz_match_t *m)
{
    const model_strlist_t *v = &w->values, *nv = &w->not_values;
    if (strcmp(w->key, "source.ip") == 0)
        return cidrs_add(&m->source_ips, &m->n_source_ips, v) < 0 ||
                       cidrs_add(&m->not_source_ips, &m->n_not_source_ips, nv) < 0
                   ? -1
                   : 0;
    if (strcmp(w->key, "source.namespace") == 0)
        return sms_add(&m->namespaces, &m->n_namespaces, v) < 0 ||
                       sms_add(&m->not_namespaces, &m->n_not_namespaces, nv) < 0
                   ? -1
                   : 0;
    if (strcmp(w->key, "source.principal") == 0)
        return sms_add(&m->principals, &m->n_principals, v) < 0 ||
                       sms_add(&m->not_principals, &m->n_not_principals, nv) < 0
                   ? -1
                   : 0;
    if (strcmp(w->key, "destination.ip") == 0)
        return cidrs_add(&m->destination_ips, &m->n_destination_ips, v) < 0 ||
                       cidrs_add(&m->not_destination_ips, &m->n_not_destination_ips, nv) < 0
                   ? -1
                   : 0;
    if (strcmp(w->key, "destination.port") == 0)
        return ports_add(&m->destination_ports, &m->n_destination_ports, v) < 0 ||
                       ports_add(&m->not_destination_ports, &m->n_not_destination_ports, nv) < 0
                   ? -1
                   : 0;
    return 0;
}

/* One group from rule r, clauses in istiod's fixed order: to, from, then
 * one per when[]. HTTP attributes are left out. */
static int rule_group(const model_ap_rule_t *r, const char *ns, model_authz_group_t *g)
{
    model_authz_clause_t *c;
    model_authz_match_t *m;
    if (r->nto > 0) {
        if (!(c = clause_add(g)))
            return -1;
        for (size_t i = 0; i < r->nto; i++) {
            const model_ap_operation_t *op = &r->to[i];
            if (!(m = match_add(c)) ||
                ports_add(&m->destination_ports, &m->n_destination_ports, &op->ports) < 0 ||
                ports_add(&m->not_destination_ports, &m->n_not_destination_ports, &op->not_ports) <
                    0)
                return -1;
        }
    }
    if (r->nfrom > 0) {
        if (!(c = clause_add(g)))
            return -1;
        for (size_t i = 0; i < r->nfrom; i++)
            if (!(m = match_add(c)) || source_match(&r->from[i], ns, m) < 0)
                return -1;
    }
    for (size_t i = 0; i < r->nwhen; i++)
        if (!(c = clause_add(g)) || !(m = match_add(c)) || when_match(&r->when[i], m) < 0)
            return -1;
    return 0;
}

/* Go's strconv.ParseBool; -1 when s is none of its spellings. */
static int parse_bool(const char *s)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0)
            return 1;
        if (strcmp(s, f[i]) == 0)
            return 0;
    }
    return -1;
}

static bool policy_dry_run(const model_authz_policy_t *p)
{
    return p->dry_run && parse_bool(p->dry_run) == 1;
}

bool model_authz_policy_sent(const model_authz_policy_t *p, const model_authz_opts_t *o)
{
    if (policy_dry_run(p) && !o->dry_run_enabled)
        return false;
    return !p->target_ref && (p->action == MODEL_AP_ALLOW || p->action == MODEL_AP_DENY);
}

static int status_set(model_authz_status_t *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An UnsupportedValue warning; nothing when st is NULL. 0, or -1. */
static int status_set(model_authz_status_t *st, const char *fmt, ...)
{
    va_list ap;
    if (!st)
        return 0;
    va_start(ap, fmt);
    int rc = vasprintf(&st->message, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        st->message = NULL;
        return -1;
    }
    st->reason = AZ_UNSUPPORTED;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The L7 warning: found's names sorted, unique, joined by ", ". */
static int status_l7(model_authz_status_t *st, model_strlist_t *found, const model_out_authz_t *a)
{
    static const char *const allow_tail =
        "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more "
        "restrictive than requested.";
    static const char *const noop_tail =
        "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at "
        "ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce "
        "this policy.";
    static const char *const deny_tail =
        "DENY policy with HTTP attributes is enforced without the "
        "HTTP rules. This will be more restrictive than requested.";
    qsort(found->v, found->n, sizeof(*found->v), cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < found->n; i++)
        len += strlen(found->v[i]) + 2;
    char *list = malloc(len), *p = list;
    if (!list)
        return -1;
    *p = '\0';
    for (size_t i = 0; i < found->n; i++) {
        if (i > 0 && strcmp(found->v[i], found->v[i - 1]) == 0)
            continue;
        p += sprintf(p, "%s%s", p == list ? "" : ", ", found->v[i]);
    }
    const char *tail = a->action == MODEL_AUTHZ_ALLOW ? allow_tail
                       : model_out_authz_effective(a) ? deny_tail
                                                      : noop_tail;
    int rc = status_set(st,
                        "ztunnel does not support HTTP attributes (found: %s). In ambient mode "
                        "you must use a waypoint proxy to enforce HTTP rules. %s",
                        list, tail);
    free(list);
    return rc;
}

/* The status of a fail-closed stand-in: why the object was refused and
 * what ztunnel enforces in its place. */
static int status_invalid(model_authz_status_t *st, const model_authz_policy_t *p,
                          const model_out_authz_t *a)
{
    model_authz_status_clear(st);
    if (asprintf(&st->message, "%s; ztunnel enforces %s in its place (fail closed)", p->invalid,
                 a->action == MODEL_AUTHZ_DENY
                     ? "a DENY of every connection in the policy's scope"
                     : "an ALLOW that matches nothing, so the workloads in its scope accept only "
                       "what other ALLOW policies allow") < 0) {
        st->message = NULL;
        return -1;
    }
    st->reason = MODEL_AUTHZ_INVALID_REASON;
    return 0;
}

static model_out_authz_t *authz_new(const char *name, const char *ns, model_authz_scope_t scope,
                                    model_authz_action_t action)
{
    model_out_authz_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->name = strdup(name ? name : "");
    a->ns = strdup(ns ? ns : "");
    a->scope = scope;
    a->action = action;
    if (!a->name || !a->ns) {
        model_out_authz_free(a);
        return NULL;
    }
    return a;
}

/* Builds the groups of p into a, collecting HTTP attribute names in found. */
static int policy_groups(const model_authz_policy_t *p, model_out_authz_t *a,
                         model_strlist_t *found)
{
    for (size_t i = 0; i < p->nrules; i++) {
        size_t before = found->n;
        if (rule_l7(&p->rules[i], found) < 0)
            return -1;
        if (a->action == MODEL_AUTHZ_ALLOW && found->n > before)
            continue;
        model_authz_group_t *g = push(&a->groups, &a->ngroups, sizeof(*a->groups));
        if (!g || rule_group(&p->rules[i], p->ns, g) < 0)
            return -1;
    }
    return 0;
}

int model_authz_convert(const model_authz_policy_t *p, const model_authz_opts_t *o,
                        model_out_authz_t **out, model_authz_status_t *st)
{
    *out = NULL;
    if (st)
        *st = (model_authz_status_t){0};
    bool dry = policy_dry_run(p);
    if (dry && !o->dry_run_enabled)
        return status_set(st,
                          "found policy \"%s/%s\" using dry-run annotation, but support for "
                          "ambient dry-run authorizationPolicies isn't enabled",
                          p->ns ? p->ns : "", p->name ? p->name : "");
    /* targetRef policies are for waypoints; their status is written there */
    if (p->target_ref)
        return 0;
    if (p->action == MODEL_AP_AUDIT || p->action == MODEL_AP_CUSTOM)
        return status_set(st, "ztunnel does not support the %s action",
                          p->action == MODEL_AP_AUDIT ? "AUDIT" : "CUSTOM");
    /* No trust domain aliases here: istiod does not expand them either. */
    model_authz_scope_t scope = p->selector.set ? MODEL_AUTHZ_WORKLOAD_SELECTOR
                                : o->root_ns && p->ns && strcmp(p->ns, o->root_ns) == 0
                                    ? MODEL_AUTHZ_GLOBAL
                                    : MODEL_AUTHZ_NAMESPACE;
    model_out_authz_t *a = authz_new(
        p->name, p->ns, scope, p->action == MODEL_AP_DENY ? MODEL_AUTHZ_DENY : MODEL_AUTHZ_ALLOW);
    model_strlist_t found = {0};
    if (!a)
        return -1;
    a->dry_run = dry;
    if (policy_groups(p, a, &found) < 0 || (found.n > 0 && status_l7(st, &found, a) < 0)) {
        model_strlist_clear(&found);
        model_out_authz_free(a);
        if (st)
            model_authz_status_clear(st);
        return -1;
    }
    model_strlist_clear(&found);
    if (p->invalid && st && status_invalid(st, p, a) < 0) {
        model_out_authz_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

/* ---------- PeerAuthentication ---------- */

/* A group of one clause of one match: [{not_principals:[presence]}]. */
static model_authz_match_t *group_one(model_out_authz_t *a, model_authz_group_t **gp)
{
    model_authz_group_t *g = push(&a->groups, &a->ngroups, sizeof(*a->groups));
    model_authz_clause_t *c = g ? clause_add(g) : NULL;
    if (gp)
        *gp = g;
    return c ? match_add(c) : NULL;
}

model_out_authz_t *model_authz_static_strict(const char *root_ns)
{
    model_out_authz_t *a = authz_new(MODEL_AUTHZ_STATIC_STRICT, root_ns,
                                     MODEL_AUTHZ_WORKLOAD_SELECTOR, MODEL_AUTHZ_DENY);
    model_authz_match_t *m = a ? group_one(a, NULL) : NULL;
    if (!m || presence_add(&m->not_principals, &m->n_not_principals) < 0) {
        model_out_authz_free(a);
        return NULL;
    }
    return a;
}

/* Older by creationTimestamp, then by name. */
static const model_peer_authn_t *pa_older(const model_peer_authn_t *a, const model_peer_authn_t *b)
{
    if (!a)
        return b;
    if (b->created != a->created)
        return b->created < a->created ? b : a;
    return strcmp(b->name ? b->name : "", a->name ? a->name : "") < 0 ? b : a;
}

static bool pa_level(const model_peer_authn_t *p)
{
    return p->selector.labels.n == 0;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

const model_peer_authn_t *model_pa_oldest_level(const model_peer_authn_t *const *pas, size_t n,
                                                const char *ns)
{
    const model_peer_authn_t *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (str_eq(pas[i]->ns, ns) && pa_level(pas[i]))
            best = pa_older(best, pas[i]);
    return best;
}

static bool mode_is(const model_peer_authn_t *p, model_mtls_t m)
{
    return p && p->mode == m;
}

static bool unset_or_nil(const model_peer_authn_t *p)
{
    return !p || p->mode == MODEL_MTLS_UNSET;
}

/* A STRICT port needs no rule of its own when the workload is strict anyway.
 * (quirk Q1) istiod's condition reads "wl STRICT || wl UNSET && ns STRICT ||
 * ns unset && root STRICT"; Go binds && tighter than ||, so the last term
 * holds whatever the workload's own mode is: a PERMISSIVE workload with a
 * STRICT port under a STRICT root gets no rule for that port. */
static bool strict_port_skipped(model_mtls_t mode, const model_peer_authn_t *ns_pol,
                                const model_peer_authn_t *root_pol)
{
    return mode == MODEL_MTLS_STRICT ||
           (mode == MODEL_MTLS_UNSET && mode_is(ns_pol, MODEL_MTLS_STRICT)) ||
           (unset_or_nil(ns_pol) && mode_is(root_pol, MODEL_MTLS_STRICT));
}

/* A PERMISSIVE or DISABLE port needs an exemption only when the workload
 * would be strict. (quirk Q2) An explicit namespace policy with mode UNSET
 * counts as "not strict" here, though it inherits the root's mode
 * elsewhere. */
static bool loose_port_skipped(model_mtls_t mode, const model_peer_authn_t *ns_pol,
                               const model_peer_authn_t *root_pol)
{
    if (mode == MODEL_MTLS_PERMISSIVE || mode == MODEL_MTLS_DISABLE)
        return true;
    if (mode != MODEL_MTLS_UNSET)
        return false;
    if (ns_pol)
        return ns_pol->mode != MODEL_MTLS_STRICT;
    return !root_pol || root_pol->mode != MODEL_MTLS_STRICT;
}

static int np_presence_clause(model_authz_group_t *g)
{
    model_authz_clause_t *c = clause_add(g);
    model_authz_match_t *m = c ? match_add(c) : NULL;
    return m ? presence_add(&m->not_principals, &m->n_not_principals) : -1;
}

/* Builds the converted policy into a; *any false when there is none. */
static int pa_build(const model_peer_authn_t *pa, const model_peer_authn_t *ns_pol,
                    const model_peer_authn_t *root_pol, model_out_authz_t *a, bool *any)
{
    model_authz_group_t rules = {0}; /* clauses of the one merged group */
    bool non_strict = false;
    *any = false;
    if (pa->mode == MODEL_MTLS_STRICT && np_presence_clause(&rules) < 0)
        goto oom;
    for (size_t i = 0; i < pa->nports; i++) {
        uint32_t port = pa->ports[i].port;
        model_authz_match_t *m;
        model_authz_clause_t *c;
        switch (pa->ports[i].mode) {
        case MODEL_MTLS_STRICT:
            if (strict_port_skipped(pa->mode, ns_pol, root_pol))
                break;
            if (!(m = group_one(a, NULL)) ||
                presence_add(&m->not_principals, &m->n_not_principals) < 0 ||
                port_add(&m->destination_ports, &m->n_destination_ports, port) < 0)
                goto oom;
            break;
        case MODEL_MTLS_PERMISSIVE:
        case MODEL_MTLS_DISABLE:
            if (loose_port_skipped(pa->mode, ns_pol, root_pol))
                break;
            non_strict = true;
            if (!(c = clause_add(&rules)) || !(m = match_add(c)) ||
                port_add(&m->not_destination_ports, &m->n_not_destination_ports, port) < 0)
                goto oom;
            break;
        case MODEL_MTLS_UNSET:
            break;
        }
    }
    /* A STRICT workload with no exempted port: the static policy covers it. */
    if ((pa->mode == MODEL_MTLS_STRICT && !non_strict) || (rules.nclauses == 0 && a->ngroups == 0))
        goto none;
    bool merge_strict = (mode_is(root_pol, MODEL_MTLS_STRICT) &&
                         (unset_or_nil(ns_pol) || ns_pol->mode == MODEL_MTLS_STRICT)) ||
                        mode_is(ns_pol, MODEL_MTLS_STRICT);
    if (merge_strict && non_strict && np_presence_clause(&rules) < 0)
        goto oom;
    if (rules.nclauses > 0) {
        model_authz_group_t *g = push(&a->groups, &a->ngroups, sizeof(*a->groups));
        if (!g)
            goto oom;
        *g = rules;
    }
    *any = true;
    return 0;
none:
    group_clear(&rules);
    return 0;
oom:
    group_clear(&rules);
    return -1;
}

int model_authz_convert_pa(const model_peer_authn_t *pa, const model_peer_authn_t *ns_pol,
                           const model_peer_authn_t *root_pol, const char *root_ns,
                           model_out_authz_t **out)
{
    *out = NULL;
    if (str_eq(pa->ns, root_ns) || !pa->selector.set || pa->nports == 0)
        return 0;
    size_t nlen = strlen(MODEL_AUTHZ_PA_PREFIX) + strlen(pa->name ? pa->name : "") + 1;
    char *name = malloc(nlen);
    if (!name)
        return -1;
    snprintf(name, nlen, "%s%s", MODEL_AUTHZ_PA_PREFIX, pa->name ? pa->name : "");
    model_out_authz_t *a = authz_new(name, pa->ns, MODEL_AUTHZ_WORKLOAD_SELECTOR, MODEL_AUTHZ_DENY);
    free(name);
    bool any;
    if (!a || pa_build(pa, ns_pol, root_pol, a, &any) < 0) {
        model_out_authz_free(a);
        return -1;
    }
    if (any)
        *out = a;
    else
        model_out_authz_free(a);
    return 0;
}

/* ---------- attachment to workloads ---------- */

/* Whether want's labels are all in have; a nil have (NULL) matches
 * everything (quirk Q3: istiod turns label filtering off for it). */
static bool labels_subset(const model_labels_t *want, const model_labels_t *have)
{
    if (!have)
        return true;
    for (size_t i = 0; i < want->n; i++) {
        const char *v = model_labels_get(have, want->kv[i].key);
        if (!v || strcmp(v, want->kv[i].value) != 0)
            return false;
    }
    return true;
}

static int key_add(model_strlist_t *keys, const char *ns, const char *name)
{
    size_t len = strlen(ns ? ns : "") + strlen(name ? name : "") + 2;
    char *k = malloc(len);
    char **slot = k ? push(&keys->v, &keys->n, sizeof(*keys->v)) : NULL;
    if (!slot) {
        free(k);
        return -1;
    }
    snprintf(k, len, "%s/%s", ns ? ns : "", name ? name : "");
    *slot = k;
    return 0;
}

static int ap_keys(const model_authz_set_t *set, const char *ns, const model_labels_t *labels,
                   model_strlist_t *keys)
{
    for (size_t i = 0; i < set->naps; i++) {
        const model_authz_policy_t *p = set->aps[i];
        if (!model_authz_policy_sent(p, &set->opts) || !p->selector.has_labels ||
            !(str_eq(p->ns, ns) || str_eq(p->ns, set->opts.root_ns)) ||
            !labels_subset(&p->selector.labels, labels))
            continue;
        if (key_add(keys, p->ns, p->name) < 0)
            return -1;
    }
    if (keys->n > 1)
        qsort(keys->v, keys->n, sizeof(*keys->v), cmp_str);
    return 0;
}

static bool any_port(const model_peer_authn_t *p, model_mtls_t a, model_mtls_t b)
{
    for (size_t i = 0; i < p->nports; i++)
        if (p->ports[i].mode == a || p->ports[i].mode == b)
            return true;
    return false;
}

/* The PeerAuthentications that apply to a workload in ns: the oldest of
 * each level (mesh, namespace, workload). The root namespace's selector
 * policies never apply to workloads, even to those in the root namespace. */
typedef struct pa_levels {
    const model_peer_authn_t *mesh, *ns, *wl;
} pa_levels_t;

static pa_levels_t pa_pick(const model_authz_set_t *set, const char *ns,
                           const model_labels_t *labels)
{
    const char *root = set->opts.root_ns;
    pa_levels_t l = {NULL, NULL, NULL};
    for (size_t i = 0; i < set->npas; i++) {
        const model_peer_authn_t *p = set->pas[i];
        if (str_eq(p->ns, root) && pa_level(p))
            l.mesh = pa_older(l.mesh, p);
        else if (str_eq(p->ns, root) || !str_eq(p->ns, ns))
            continue;
        else if (pa_level(p))
            l.ns = pa_older(l.ns, p);
        else if (labels_subset(&p->selector.labels, labels))
            l.wl = pa_older(l.wl, p);
    }
    return l;
}

/* Whether the workload ends up strict, and whether its workload policy's
 * ports differ from that (*port_key: the converted policy is listed). */
static bool pa_strict(const pa_levels_t *l, bool *port_key)
{
    const model_peer_authn_t *wl = l->wl;
    bool strict = mode_is(l->mesh, MODEL_MTLS_STRICT);
    *port_key = false;
    if (!unset_or_nil(l->ns))
        strict = l->ns->mode == MODEL_MTLS_STRICT;
    if (!wl)
        return strict;
    if (wl->mode == MODEL_MTLS_STRICT)
        strict = true;
    else if (wl->mode != MODEL_MTLS_UNSET)
        strict = false;
    if (wl->nports == 0)
        return strict;
    switch (wl->mode) {
    case MODEL_MTLS_STRICT:
        *port_key = any_port(wl, MODEL_MTLS_PERMISSIVE, MODEL_MTLS_DISABLE);
        return !*port_key;
    case MODEL_MTLS_PERMISSIVE:
    case MODEL_MTLS_DISABLE:
        *port_key = any_port(wl, MODEL_MTLS_STRICT, MODEL_MTLS_STRICT);
        return strict;
    case MODEL_MTLS_UNSET:
        break;
    }
    /* inheriting strict, istiod looks only for PERMISSIVE ports, not DISABLE */
    if (strict) {
        *port_key = any_port(wl, MODEL_MTLS_PERMISSIVE, MODEL_MTLS_PERMISSIVE);
        return !*port_key;
    }
    *port_key = any_port(wl, MODEL_MTLS_STRICT, MODEL_MTLS_STRICT);
    return false;
}

/* The PeerAuthentication keys, sorted: the static strict policy when the
 * workload ends up strict, and its workload policy's converted one. */
static int pa_keys(const model_authz_set_t *set, const char *ns, const model_labels_t *labels,
                   model_strlist_t *keys)
{
    pa_levels_t l = pa_pick(set, ns, labels);
    bool port_key;
    bool strict = pa_strict(&l, &port_key);
    model_strlist_t pk = {0};
    int rc = 0;
    if (strict)
        rc = key_add(&pk, set->opts.root_ns, MODEL_AUTHZ_STATIC_STRICT);
    if (rc == 0 && port_key) {
        size_t len = strlen(MODEL_AUTHZ_PA_PREFIX) + strlen(l.wl->name) + 1;
        char *name = malloc(len);
        if (name)
            snprintf(name, len, "%s%s", MODEL_AUTHZ_PA_PREFIX, l.wl->name);
        rc = name ? key_add(&pk, l.wl->ns, name) : -1;
        free(name);
    }
    if (rc == 0 && pk.n > 1)
        qsort(pk.v, pk.n, sizeof(*pk.v), cmp_str);
    for (size_t i = 0; rc == 0 && i < pk.n; i++)
        rc = strlist_add(keys, pk.v[i]);
    model_strlist_clear(&pk);
    return rc;
}

int model_authz_workload_policies(const model_authz_set_t *set, const char *ns,
                                  const model_labels_t *labels, model_strlist_t *keys)
{
    *keys = (model_strlist_t){0};
    if (ap_keys(set, ns, labels, keys) < 0 || pa_keys(set, ns, labels, keys) < 0) {
        model_strlist_clear(keys);
        return -1;
    }
    return 0;
}
