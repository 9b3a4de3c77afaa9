/*
 * encode_authz.c - model_out_authz_t into istio.security.Authorization bytes.
 *
 * The protobuf-c messages borrow the model's strings and live in one arena
 * that is dropped once packed. protobuf-c writes fields in field-number
 * order and, like Go, leaves out default scalars and empty repeated fields
 * while still writing an empty Rule, an empty Match and a presence Empty as
 * zero-length submessages: ztunnel needs those ("{}" matches all or never).
 */
#include <stdlib.h>
#include <string.h>

#include "authorization.pb-c.h"
#include "xds.h"

/* Every allocation of one encoding, freed together. */
typedef struct az_arena {
    void **p;
    size_t n, cap;
    bool oom;
} az_arena_t;

static void *az_alloc(az_arena_t *a, size_t n, size_t sz)
{
    if (a->oom || n == 0)
        return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        void **p = realloc(a->p, cap * sizeof(*p));
        if (!p) {
            a->oom = true;
            return NULL;
        }
        a->p = p;
        a->cap = cap;
    }
    void *m = calloc(n, sz);
    if (!m)
        a->oom = true;
    else
        a->p[a->n++] = m;
    return m;
}

static void az_arena_free(az_arena_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->p[i]);
    free(a->p);
}

static Google__Protobuf__Empty az_empty = GOOGLE__PROTOBUF__EMPTY__INIT;

static Istio__Security__StringMatch **enc_SM(az_arena_t *a, const model_strmatch_t *v, size_t n)
{
    Istio__Security__StringMatch **out = az_alloc(a, n, sizeof(*out));
    Istio__Security__StringMatch *m = az_alloc(a, n, sizeof(*m));
    if (!out || !m)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        istio__security__string_match__init(&m[i]);
        char *s = v[i].value;
        switch (v[i].kind) {
        case MODEL_SM_EXACT:
            m[i].match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_EXACT;
            m[i].exact = s;
            break;
        case MODEL_SM_PREFIX:
            m[i].match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PREFIX;
            m[i].prefix = s;
            break;
        case MODEL_SM_SUFFIX:
            m[i].match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_SUFFIX;
            m[i].suffix = s;
            break;
        case MODEL_SM_PRESENCE:
            m[i].match_type_case = ISTIO__SECURITY__STRING_MATCH__MATCH_TYPE_PRESENCE;
            m[i].presence = &az_empty;
            break;
        }
        out[i] = &m[i];
    }
    return out;
}

static Istio__Security__Address **enc_CIDR(az_arena_t *a, const model_cidr_t *v, size_t n)
{
    Istio__Security__Address **out = az_alloc(a, n, sizeof(*out));
    Istio__Security__Address *m = az_alloc(a, n, sizeof(*m));
    if (!out || !m)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        istio__security__address__init(&m[i]);
        m[i].address.len = v[i].ip.len;
        m[i].address.data = (uint8_t *)v[i].ip.b;
        m[i].length = v[i].length;
        out[i] = &m[i];
    }
    return out;
}

/* Ports are borrowed: the model's array is already uint32. */
static uint32_t *enc_PORT(az_arena_t *a, const uint32_t *v, size_t n)
{
    (void)a;
    (void)n;
    return (uint32_t *)v;
}

static Istio__Security__ServiceAccountMatch **enc_SA(az_arena_t *a, const model_sa_match_t *v,
                                                     size_t n)
{
    Istio__Security__ServiceAccountMatch **out = az_alloc(a, n, sizeof(*out));
    Istio__Security__ServiceAccountMatch *m = az_alloc(a, n, sizeof(*m));
    if (!out || !m)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        istio__security__service_account_match__init(&m[i]);
        m[i].namespace_ = v[i].ns;
        m[i].serviceaccount = v[i].sa;
        out[i] = &m[i];
    }
    return out;
}

#define ENC_FIELD(kind, f)                                                                         \
    if (x->n_##f > 0) {                                                                            \
        m->n_##f = x->n_##f;                                                                       \
        m->f = enc_##kind(a, x->f, x->n_##f);                                                      \
    }

static void enc_match(az_arena_t *a, const model_authz_match_t *x, Istio__Security__Match *m)
{
    istio__security__match__init(m);
    MODEL_AUTHZ_MATCH_FIELDS(ENC_FIELD)
}

static void enc_clause(az_arena_t *a, const model_authz_clause_t *x, Istio__Security__Clause *c)
{
    istio__security__clause__init(c);
    c->n_matches = x->nmatches;
    c->matches = az_alloc(a, x->nmatches, sizeof(*c->matches));
    Istio__Security__Match *m = az_alloc(a, x->nmatches, sizeof(*m));
    for (size_t i = 0; m && c->matches && i < x->nmatches; i++) {
        enc_match(a, &x->matches[i], &m[i]);
        c->matches[i] = &m[i];
    }
}

static void enc_rule(az_arena_t *a, const model_authz_group_t *x, Istio__Security__Rule *r)
{
    istio__security__rule__init(r);
    r->n_clauses = x->nclauses;
    r->clauses = az_alloc(a, x->nclauses, sizeof(*r->clauses));
    Istio__Security__Clause *c = az_alloc(a, x->nclauses, sizeof(*c));
    for (size_t i = 0; c && r->clauses && i < x->nclauses; i++) {
        enc_clause(a, &x->clauses[i], &c[i]);
        r->clauses[i] = &c[i];
    }
}

uint8_t *xds_encode_authz(const model_out_authz_t *x, size_t *len)
{
    az_arena_t a = {0};
    Istio__Security__Authorization m = ISTIO__SECURITY__AUTHORIZATION__INIT;
    m.name = x->name;
    m.namespace_ = x->ns;
    m.scope = (Istio__Security__Scope)x->scope;
    m.action = (Istio__Security__Action)x->action;
    m.dry_run = x->dry_run;
    m.n_rules = x->ngroups;
    m.rules = az_alloc(&a, x->ngroups, sizeof(*m.rules));
    Istio__Security__Rule *r = az_alloc(&a, x->ngroups, sizeof(*r));
    for (size_t i = 0; r && m.rules && i < x->ngroups; i++) {
        enc_rule(&a, &x->groups[i], &r[i]);
        m.rules[i] = &r[i];
    }
    uint8_t *buf = NULL;
    if (!a.oom) {
        *len = istio__security__authorization__get_packed_size(&m);
        buf = malloc(*len ? *len : 1);
        if (buf)
            istio__security__authorization__pack(&m, buf);
    }
    az_arena_free(&a);
    return buf;
}
