/*
 * informer.c - one list/watch loop for one resource of one cluster.
 *
 * An informer lists (paginated), then watches from the list's
 * resourceVersion, decoding the newline-delimited watch stream as it
 * arrives. It keeps only key -> resourceVersion and content hash of what it
 * has told the callback (a base map), which is enough to turn a relist
 * (after 410 Gone) into the exact difference and to drop duplicates. It is
 * driven by the I/O thread in client.c and never blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_int.h"

typedef struct kube_resdef {
    const char *name, *prefix, *plural, *api_version, *kind, *query;
    bool in_system_ns;
    bool optional; /* a 404 (CRD not installed) or 403 lists as empty; retried slowly */
} kube_resdef_t;

static const kube_resdef_t kube_resdefs[KUBE_RES__COUNT] = {
    [KUBE_RES_NAMESPACES] = {"namespaces", "/api/v1", "namespaces", "v1", "Namespace", NULL, 0},
    [KUBE_RES_SERVICES] = {"services", "/api/v1", "services", "v1", "Service", NULL, 0},
    [KUBE_RES_ENDPOINTSLICES] = {"endpointslices", "/apis/discovery.k8s.io/v1", "endpointslices",
                                 "discovery.k8s.io/v1", "EndpointSlice", NULL, 0},
    [KUBE_RES_PODS] = {"pods", "/api/v1", "pods", "v1", "Pod", NULL, 0},
    [KUBE_RES_NODES] = {"nodes", "/api/v1", "nodes", "v1", "Node", NULL, 0},
    [KUBE_RES_SERVICESCOPES] = {"servicescopes", "/apis/meshfed.io/v1alpha1", "servicescopes",
                                "meshfed.io/v1alpha1", "ServiceScope", NULL, 0},
    [KUBE_RES_SECRETS] = {"secrets", "/api/v1", "secrets", "v1", "Secret",
                          "labelSelector=istio%2FmultiCluster%3Dtrue", 1},
    [KUBE_RES_CONFIGMAPS] = {"configmaps", "/api/v1", "configmaps", "v1", "ConfigMap",
                             "fieldSelector=metadata.name%3Distio", 1},
    [KUBE_RES_GATEWAYS] = {"gateways", "/apis/gateway.networking.k8s.io/v1", "gateways",
                           "gateway.networking.k8s.io/v1", "Gateway", NULL, 0, 1},
    [KUBE_RES_AUTHZ_POLICIES] = {"authorizationpolicies", "/apis/security.istio.io/v1",
                                 "authorizationpolicies", "security.istio.io/v1",
                                 "AuthorizationPolicy", NULL, 0, 1},
    [KUBE_RES_PEER_AUTHNS] = {"peerauthentications", "/apis/security.istio.io/v1",
                              "peerauthentications", "security.istio.io/v1", "PeerAuthentication",
                              NULL, 0, 1},
    [KUBE_RES_ROOT_CERTS] = {"rootcertconfigmaps", "/api/v1", "configmaps", "v1", "ConfigMap",
                             "fieldSelector=metadata.name%3Distio-ca-root-cert", 0, 1},
};

const char *kube_res_name(kube_res_t r)
{
    return (unsigned)r < KUBE_RES__COUNT ? kube_resdefs[r].name : "cluster";
}

const char *kube_ev_name(kube_ev_t e)
{
    static const char *const names[] = {"ADDED", "MODIFIED",  "DELETED", "SYNCED",
                                        "STALE", "RECOVERED", "ERROR",   "RELISTED"};
    return (unsigned)e <= KUBE_EV_RELISTED ? names[e] : "?";
}

kube_informer_t *kube_inf_new(kube_cluster_t *cl, kube_res_t res)
{
    kube_informer_t *inf = calloc(1, sizeof(*inf));
    if (!inf)
        return NULL;
    inf->cl = cl;
    inf->res = res;
    inf->seed = (unsigned)kube_now_ms() ^ (unsigned)(uintptr_t)inf;
    inf->easy = curl_easy_init();
    base_map_init(&inf->cache);
    if (!inf->easy) {
        kube_inf_free(inf);
        return NULL;
    }
    return inf;
}

/* Forgets the pages of an unfinished list. */
static void kube_list_discard(kube_informer_t *inf)
{
    for (size_t i = 0; i < inf->npages; i++)
        free(inf->pages[i]);
    free(inf->pages);
    free(inf->page_len);
    inf->pages = NULL;
    inf->page_len = NULL;
    inf->npages = inf->pages_cap = 0;
    inf->list_objs = 0;
}

/* The caller has taken easy out of the multi handle. */
void kube_inf_free(kube_informer_t *inf)
{
    if (!inf)
        return;
    kube_list_discard(inf);
    if (inf->easy)
        curl_easy_cleanup(inf->easy);
    curl_slist_free_all(inf->hdrs);
    base_map_destroy(&inf->cache, free);
    free(inf->rv);
    free(inf->cont);
    free(inf->buf);
    kube_jdoc_clear(&inf->doc);
    free(inf);
}

void kube_inf_reset(kube_informer_t *inf)
{
    inf->relist_why = "the cluster reconnected";
    inf->phase = KUBE_PH_LIST;
    free(inf->cont);
    inf->cont = NULL;
    inf->synced = false;
    inf->backoff_ms = 0;
    inf->due_ms = 0;
}

static void kube_set(char **dst, const char *s)
{
    char *d = s ? strdup(s) : NULL;
    free(*dst);
    *dst = d;
}

/* Exponential backoff with jitter: the next try in [b/2, b). */
static void kube_backoff(kube_informer_t *inf)
{
    unsigned b = inf->backoff_ms ? inf->backoff_ms * 2 : KUBE_BACKOFF_MIN_MS;
    if (b > KUBE_BACKOFF_MAX_MS)
        b = KUBE_BACKOFF_MAX_MS;
    inf->backoff_ms = b;
    inf->due_ms = kube_now_ms() + b / 2 + (unsigned)rand_r(&inf->seed) % (b / 2 + 1);
}

static int kube_timeout_s(const kube_informer_t *inf)
{
    int s = inf->cl->w->stale_after_s;
    if (s <= 0)
        return 300;
    s /= 2; /* an idle watch must end (a success) well before it could look stale */
    return s < 1 ? 1 : s > 300 ? 300 : s;
}

/* path?query for the next request. */
static int kube_inf_url(kube_informer_t *inf, char *out, size_t outlen)
{
    const kube_resdef_t *d = &kube_resdefs[inf->res];
    char ns[300] = "", q[2048];
    if (d->in_system_ns)
        snprintf(ns, sizeof(ns), "/namespaces/%s", inf->cl->w->system_namespace);
    if (inf->phase == KUBE_PH_LIST) {
        char *c = inf->cont ? curl_easy_escape(inf->easy, inf->cont, 0) : NULL;
        snprintf(q, sizeof(q), "limit=%d%s%s", KUBE_LIST_LIMIT, c ? "&continue=" : "", c ? c : "");
        curl_free(c);
    } else {
        char *r = curl_easy_escape(inf->easy, inf->rv ? inf->rv : "", 0);
        snprintf(q, sizeof(q),
                 "watch=1&allowWatchBookmarks=true&resourceVersion=%s"
                 "&timeoutSeconds=%d",
                 r ? r : "", kube_timeout_s(inf));
        curl_free(r);
    }
    int n = snprintf(out, outlen, "%s%s/%s?%s%s%s", d->prefix, ns, d->plural,
                     d->query ? d->query : "", d->query ? "&" : "", q);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* ---------- objects ---------- */

const char *kube_obj_name(const kube_obj_t *o)
{
    return o->name;
}

const char *kube_obj_namespace(const kube_obj_t *o)
{
    return o->ns;
}

const char *kube_obj_resource_version(const kube_obj_t *o)
{
    return o->rv;
}

const char *kube_obj_label(const kube_obj_t *o, const char *key)
{
    const kube_jv_t *v = kube_member(kube_member(kube_member(o->v, "metadata"), "labels"), key);
    return v && v->type == KUBE_J_STRING ? v->v.s : NULL;
}

int64_t kube_obj_generation(const kube_obj_t *o)
{
    const kube_jv_t *v = kube_member(kube_member(o->v, "metadata"), "generation");
    return v && v->type == KUBE_J_INT ? (int64_t)v->v.i : 0;
}

int kube_obj_decode(model_kind_t kind, const kube_obj_t *o, void **out, char *err, size_t errlen)
{
    if (!o->v) {
        *out = NULL;
        snprintf(err, errlen, "%s %s%s%s: only its name is known (deleted)", kube_res_name(o->res),
                 o->ns ? o->ns : "", o->ns ? "/" : "", o->name);
        return -1;
    }
    return kube_decode_jv(kind, o->v, out, err, errlen);
}

/* Lists leave kind and apiVersion out of items; consumers need them. A stub
 * is {apiVersion, kind, metadata{name, namespace, resourceVersion}}. */
json_t *kube_obj_json(const kube_obj_t *o)
{
    const kube_resdef_t *d = &kube_resdefs[o->res];
    json_t *j = o->v ? kube_jto_json(o->v) : json_pack("{s:{s:s}}", "metadata", "name", o->name);
    if (!j)
        return NULL;
    json_t *md = json_object_get(j, "metadata");
    if (!o->v && o->ns)
        json_object_set_new(md, "namespace", json_string(o->ns));
    if (!o->v && o->rv)
        json_object_set_new(md, "resourceVersion", json_string(o->rv));
    if (!json_object_get(j, "kind"))
        json_object_set_new(j, "kind", json_string(d->kind));
    if (!json_object_get(j, "apiVersion"))
        json_object_set_new(j, "apiVersion", json_string(d->api_version));
    return j;
}

/* Reads v's identity into o; "namespace/name" or "name" into key. */
static int kube_obj_init(kube_informer_t *inf, const kube_jv_t *v, kube_obj_t *o, char *key,
                         size_t keylen)
{
    const kube_jv_t *md = kube_jget(v, "metadata");
    const kube_jv_t *name = kube_jget(md, "name"), *ns = kube_jget(md, "namespace"),
                    *rv = kube_jget(md, "resourceVersion");
    *o = (kube_obj_t){.v = v, .res = inf->res};
    if (!kube_jis(name, KUBE_J_STRING) || name->len == 0)
        return -1;
    o->name = name->v.s;
    o->ns = kube_jis(ns, KUBE_J_STRING) && ns->len ? ns->v.s : NULL;
    o->rv = kube_jis(rv, KUBE_J_STRING) ? rv->v.s : NULL;
    int n = o->ns ? snprintf(key, keylen, "%s/%s", o->ns, o->name)
                  : snprintf(key, keylen, "%s", o->name);
    return n > 0 && (size_t)n < keylen ? 0 : -1;
}

/* The hash of the values of v's subtree: what an object holds, so that a
 * relist notices new content under an unchanged resourceVersion. */
static uint64_t kube_jhash_tree(uint64_t h, const kube_jv_t *v)
{
    for (const kube_jv_t *x = v, *end = kube_jnext(v); x < end; x++) {
        uint64_t w[2] = {(uint64_t)x->type << 32 | x->len, 0};
        if (x->type == KUBE_J_INT)
            w[1] = (uint64_t)x->v.i;
        else if (x->type == KUBE_J_REAL)
            memcpy(&w[1], &x->v.d, sizeof(w[1]));
        h = base_hash_more(h, w, sizeof(w));
        if (x->type == KUBE_J_STRING)
            h = base_hash_more(h, x->v.s, x->len);
    }
    return h;
}

/* The object's hash without kind and apiVersion, which list items leave
 * out and watch events carry. */
static uint64_t kube_jhash(const kube_jv_t *o)
{
    uint64_t h = 0;
    const kube_jv_t *k;
    size_t i;
    KUBE_JOBJECT_FOREACH(o, i, k)
    {
        if ((k->len == 4 && !memcmp(k->v.s, "kind", 4)) ||
            (k->len == 10 && !memcmp(k->v.s, "apiVersion", 10)))
            continue;
        h = kube_jhash_tree(h, k);
        h = kube_jhash_tree(h, k + 1);
    }
    return h;
}

/* A cache value: what the callback was told of an object ("rv\nhash"), and
 * the generation of the list that last saw it, so that a relist finds what
 * disappeared in one sweep without a second set. */
typedef struct kube_seen {
    unsigned gen;
    char val[];
} kube_seen_t;

static const char *kube_seen_get(const kube_informer_t *inf, const char *key)
{
    const kube_seen_t *s = base_map_get(&inf->cache, key);
    return s ? s->val : NULL;
}

/* Sets key to val, seen by this generation. 0, or -1 when out of memory. */
static int kube_seen_put(kube_informer_t *inf, const char *key, const char *val)
{
    size_t n = strlen(val) + 1;
    kube_seen_t *s = malloc(sizeof(*s) + n);
    if (!s)
        return -1;
    s->gen = inf->gen;
    memcpy(s->val, val, n);
    void *old = base_map_put(&inf->cache, key, s);
    if (old == s) {
        free(s);
        return -1;
    }
    free(old);
    return 0;
}

/* Whether cached value c ("rv\nhash") has resourceVersion rv. */
static bool kube_same_rv(const char *c, const char *rv)
{
    size_t n = strlen(rv);
    return strncmp(c, rv, n) == 0 && c[n] == '\n';
}

/* Records obj as seen and tells the callback, unless it already saw this
 * exact object (a resumed watch or a relist of an unchanged object). The
 * same resourceVersion is not enough: a recreated or restored cluster (a
 * fresh etcd replaying the same writes, a Secret re-pointed at another
 * cluster) reuses resourceVersions for new objects, new UIDs and new
 * ClusterIPs; the content decides. */
static void kube_inf_upsert(kube_informer_t *inf, const kube_obj_t *obj, const char *key)
{
    const char *prev = kube_seen_get(inf, key);
    bool seen = prev != NULL;
    const char *rv = obj->rv ? obj->rv : "";
    size_t n = strlen(rv) + 18;
    char small[128], *val = n <= sizeof(small) ? small : malloc(n);
    if (!val) {
        kube_emit_error(inf->cl, inf->res, "cluster %s: %s: out of memory", inf->cl->id,
                        kube_res_name(inf->res));
        return;
    }
    snprintf(val, n, "%s\n%016llx", rv, (unsigned long long)kube_jhash(obj->v));
    bool same = prev && obj->rv && strcmp(prev, val) == 0;
    bool samerv = prev && obj->rv && !same && kube_same_rv(prev, obj->rv);
    int rc = kube_seen_put(inf, key, val); /* prev is gone */
    if (val != small)
        free(val);
    if (rc < 0) {
        kube_emit_error(inf->cl, inf->res, "cluster %s: %s: out of memory", inf->cl->id,
                        kube_res_name(inf->res));
        return;
    }
    if (same)
        return;
    if (inf->phase == KUBE_PH_LIST) {
        inf->n_added += !seen;
        inf->n_modified += seen;
        inf->n_samerv += samerv;
    }
    kube_emit(inf->cl, inf->res, seen ? KUBE_EV_MODIFIED : KUBE_EV_ADDED, obj);
}

/* An object holding a number out of range or a repeated key is refused
 * alone: reported and counted, and what the callback saw of it before
 * stays (kept from a relist's sweep), as a malformed list keeps the
 * previous state. True when v was refused. */
static bool kube_inf_refuse(kube_informer_t *inf, const kube_jv_t *v, const char *op)
{
    char why[300], key[1024];
    if (kube_jbad(v, why, sizeof(why)) == 0)
        return false;
    kube_obj_t obj;
    bool named = kube_obj_init(inf, v, &obj, key, sizeof(key)) == 0;
    kube_seen_t *prev = named ? base_map_get(&inf->cache, key) : NULL;
    if (prev)
        prev->gen = inf->gen;
    kube_count(inf->cl->w, KUBE_ST_BAD_OBJECTS);
    kube_emit_error(inf->cl, inf->res, "cluster %s: %s %s: %s %s refused: %s%s", inf->cl->id, op,
                    kube_res_name(inf->res), kube_resdefs[inf->res].kind, named ? key : "(unnamed)",
                    why, prev ? "; its previous version stays" : "");
    return true;
}

static void kube_inf_delete(kube_informer_t *inf, const kube_obj_t *obj, const char *key)
{
    kube_seen_t *s = base_map_del(&inf->cache, key);
    if (!s)
        return; /* never seen, or already deleted */
    free(s);
    kube_emit(inf->cl, inf->res, KUBE_EV_DELETED, obj);
}

/* The relist sweep: an entry this list did not see is gone, and the callback
 * gets a stub. */
static bool kube_inf_gone(const char *key, void *val, void *arg)
{
    kube_informer_t *inf = arg;
    kube_seen_t *s = val;
    if (s->gen == inf->gen)
        return false;
    char ns[512], rv[256];
    const char *slash = strchr(key, '/');
    snprintf(rv, sizeof(rv), "%.*s", (int)strcspn(s->val, "\n"), s->val);
    kube_obj_t o = {.name = key, .rv = rv, .res = inf->res};
    inf->n_deleted++;
    if (slash && (size_t)(slash - key) < sizeof(ns)) {
        memcpy(ns, key, (size_t)(slash - key));
        ns[slash - key] = '\0';
        o.ns = ns;
        o.name = slash + 1;
    }
    kube_emit(inf->cl, inf->res, KUBE_EV_DELETED, &o);
    free(s);
    return true;
}

/* ---------- the watch stream ---------- */

static void kube_decode_error(kube_informer_t *inf, const char *what, const char *detail)
{
    kube_count(inf->cl->w, KUBE_ST_DECODE);
    kube_emit_error(inf->cl, inf->res, "cluster %s: watch %s: %s%s%s", inf->cl->id,
                    kube_res_name(inf->res), what, detail ? ": " : "", detail ? detail : "");
}

static void kube_watch_object(kube_informer_t *inf, const char *type, const kube_jv_t *v)
{
    char key[1024];
    kube_obj_t obj;
    if (kube_obj_init(inf, v, &obj, key, sizeof(key)) < 0) {
        kube_decode_error(inf, "event object without metadata.name", type);
        return;
    }
    if (strcmp(type, "DELETED") == 0)
        kube_inf_delete(inf, &obj, key);
    else
        kube_inf_upsert(inf, &obj, key);
    if (obj.rv && *obj.rv)
        kube_set(&inf->rv, obj.rv);
}

/* An ERROR event: 410 means relist, anything else restarts the watch. */
static int kube_watch_error(kube_informer_t *inf, const kube_jv_t *obj)
{
    const kube_jv_t *code = kube_jget(obj, "code"), *msg = kube_jget(obj, "message");
    if (kube_jis(code, KUBE_J_INT) && code->v.i == 410) {
        inf->gone = true;
        return -1;
    }
    inf->stream_err = true;
    kube_emit_error(inf->cl, inf->res, "cluster %s: watch %s: error event %lld: %s", inf->cl->id,
                    kube_res_name(inf->res),
                    kube_jis(code, KUBE_J_INT) ? (long long)code->v.i : 0LL,
                    kube_jis(msg, KUBE_J_STRING) ? msg->v.s : "?");
    return -1;
}

/* One complete line (parsed in place). -1 stops the stream. */
static int kube_watch_line(kube_informer_t *inf, char *line, size_t n)
{
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\r' || line[i] == '\t'))
        i++;
    if (i == n)
        return 0;
    if (kube_jparse_ex(&inf->doc, line, n, KUBE_JP_MARK) < 0) {
        kube_decode_error(inf, "malformed event", inf->doc.err);
        return 0;
    }
    const kube_jv_t *ev = kube_jroot(&inf->doc), *t = kube_jget(ev, "type"),
                    *obj = kube_jget(ev, "object");
    const char *type = kube_jis(t, KUBE_J_STRING) ? t->v.s : NULL;
    int rc = 0;
    if (inf->doc.nbad) {
        char why[300];
        size_t inobj = kube_jis(obj, KUBE_J_OBJECT) ? kube_jbad(obj, why, sizeof(why)) : 0;
        if (inobj < inf->doc.nbad) {
            kube_jbad(ev, why, sizeof(why));
            kube_decode_error(inf, "malformed event", why);
            return 0;
        }
        /* a deletion needs only the name */
        if (type && (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED"))) {
            const kube_jv_t *rv = kube_jget(kube_jget(obj, "metadata"), "resourceVersion");
            inf->got_data = true;
            kube_inf_refuse(inf, obj, "watch");
            if (kube_jis(rv, KUBE_J_STRING) && rv->len)
                kube_set(&inf->rv, rv->v.s);
            kube_cluster_ok(inf->cl);
            return 0;
        }
    }
    if (type && kube_jis(obj, KUBE_J_OBJECT) && strcmp(type, "ERROR") != 0)
        inf->got_data = true;
    if (!type || !kube_jis(obj, KUBE_J_OBJECT)) {
        kube_decode_error(inf, "event without type or object", NULL);
    } else if (strcmp(type, "ERROR") == 0) {
        rc = kube_watch_error(inf, obj);
    } else if (strcmp(type, "BOOKMARK") == 0) {
        const kube_jv_t *rv = kube_jget(kube_jget(obj, "metadata"), "resourceVersion");
        kube_count(inf->cl->w, KUBE_ST_BOOKMARKS);
        if (kube_jis(rv, KUBE_J_STRING) && rv->len)
            kube_set(&inf->rv, rv->v.s);
    } else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") || !strcmp(type, "DELETED")) {
        kube_watch_object(inf, type, obj);
    } else {
        kube_decode_error(inf, "unknown event type", type);
    }
    if (rc == 0)
        kube_cluster_ok(inf->cl);
    return rc;
}

static int kube_buf_append(kube_informer_t *inf, const char *p, size_t n)
{
    if (inf->len + n + 1 > inf->cap) {
        size_t cap = inf->cap ? inf->cap : 4096;
        while (cap < inf->len + n + 1)
            cap *= 2;
        char *b = realloc(inf->buf, cap);
        if (!b)
            return -1;
        inf->buf = b;
        inf->cap = cap;
    }
    memcpy(inf->buf + inf->len, p, n);
    inf->len += n;
    return 0;
}

/* Splits the stream into lines; oversized lines are dropped whole. */
static int kube_watch_feed(kube_informer_t *inf, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        if (!inf->skipping && inf->len + seg > KUBE_MAX_LINE) {
            kube_decode_error(inf, "event larger than 16 MiB dropped", NULL);
            inf->skipping = true;
            inf->len = 0;
        }
        if (!inf->skipping && kube_buf_append(inf, p, seg) < 0)
            return -1;
        if (nl) {
            if (!inf->skipping && kube_watch_line(inf, inf->buf, inf->len) < 0)
                return -1;
            inf->skipping = false;
            inf->len = 0;
            seg++;
        }
        p += seg;
        n -= seg;
    }
    return 0;
}

static size_t kube_inf_write(char *p, size_t size, size_t nmemb, void *ud)
{
    kube_informer_t *inf = ud;
    size_t n = size * nmemb;
    if (!inf->status)
        curl_easy_getinfo(inf->easy, CURLINFO_RESPONSE_CODE, &inf->status);
    if (inf->status != 200) { /* keep the start of an error body for the message */
        size_t room = inf->len < KUBE_MAX_ERRBODY ? KUBE_MAX_ERRBODY - inf->len : 0;
        kube_buf_append(inf, p, n < room ? n : room);
        return n;
    }
    if (inf->phase == KUBE_PH_WATCH) {
        return kube_watch_feed(inf, p, n) < 0 ? 0 : n;
    }
    if (inf->len + n > KUBE_MAX_BODY) {
        inf->toobig = true;
        return 0;
    }
    return kube_buf_append(inf, p, n) < 0 ? 0 : n;
}

/* ---------- lists ---------- */

static void kube_inf_list_done(kube_informer_t *inf)
{
    kube_cluster_t *cl = inf->cl;
    kube_watcher_t *w = cl->w;
    pthread_mutex_lock(&w->mu);
    if (inf->phase == KUBE_PH_WATCH) { /* a real list: the resource is readable */
        cl->forbidden &= ~KUBE_RES_BIT(inf->res);
        cl->absent &= ~KUBE_RES_BIT(inf->res);
    }
    inf->synced = true;
    bool all = true;
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        if (cl->inf[r] && !cl->inf[r]->synced)
            all = false;
    cl->synced = all;
    pthread_mutex_unlock(&w->mu);
    kube_emit(cl, inf->res, KUBE_EV_SYNCED, NULL);
}

/* Emits what differs from the cache for the items of one page. */
static void kube_list_items(kube_informer_t *inf, const kube_jv_t *items, bool check)
{
    char key[1024];
    const kube_jv_t *it;
    size_t i;
    if (!kube_jis(items, KUBE_J_ARRAY))
        return;
    KUBE_JARRAY_FOREACH(items, i, it)
    {
        kube_obj_t obj;
        if (check && kube_inf_refuse(inf, it, "list"))
            continue;
        if (!kube_jis(it, KUBE_J_OBJECT) || kube_obj_init(inf, it, &obj, key, sizeof(key)) < 0) {
            kube_count(inf->cl->w, KUBE_ST_DECODE);
            kube_emit_error(inf->cl, inf->res, "cluster %s: list %s: items[%zu] has no name",
                            inf->cl->id, kube_res_name(inf->res), i);
            continue;
        }
        kube_inf_upsert(inf, &obj, key);
    }
}

/* A list went past a limit: nothing of it is applied; it starts again from
 * scratch after a backoff that keeps growing while lists fail. */
static void kube_list_abandon(kube_informer_t *inf, const char *why)
{
    kube_count(inf->cl->w, KUBE_ST_LIST_LIMITS);
    kube_emit_error(inf->cl, inf->res,
                    "cluster %s: list %s: %s (%zu pages, %zu objects so far); list abandoned, "
                    "nothing of it applied, starting again",
                    inf->cl->id, kube_res_name(inf->res), why, inf->npages + 1, inf->list_objs);
    kube_list_discard(inf);
    kube_set(&inf->cont, NULL);
    kube_backoff(inf);
}

/* Holds a copy of a page of an unfinished list. 0, or -1 (no memory). */
static int kube_list_hold(kube_informer_t *inf, char *raw, size_t len)
{
    if (inf->npages == inf->pages_cap) {
        size_t cap = inf->pages_cap ? inf->pages_cap * 2 : 8;
        char **p = realloc(inf->pages, cap * sizeof(*p));
        if (p)
            inf->pages = p;
        size_t *l = p ? realloc(inf->page_len, cap * sizeof(*l)) : NULL;
        if (!l)
            return -1;
        inf->page_len = l;
        inf->pages_cap = cap;
    }
    inf->pages[inf->npages] = raw;
    inf->page_len[inf->npages++] = len;
    return 0;
}

/* The last page arrived: applies the held pages and then this one (in
 * inf->doc), sweeps what is gone and switches to watching. */
static void kube_list_complete(kube_informer_t *inf, const kube_jv_t *items)
{
    kube_jdoc_t pd = {0};
    for (size_t i = 0; i < inf->npages; i++) {
        if (kube_jparse_ex(&pd, inf->pages[i], inf->page_len[i], KUBE_JP_MARK) == 0)
            kube_list_items(inf, kube_jget(kube_jroot(&pd), "items"), pd.nbad > 0);
        free(inf->pages[i]);
        inf->pages[i] = NULL;
    }
    kube_jdoc_clear(&pd);
    kube_list_items(inf, items, inf->doc.nbad > 0);
    kube_list_discard(inf);
    base_map_sweep(&inf->cache, kube_inf_gone, inf);
    inf->phase = KUBE_PH_WATCH;
    inf->backoff_ms = 0;
    if (inf->listed)
        kube_emit_msg(inf->cl, inf->res, KUBE_EV_RELISTED,
                      "cluster %s: %s relisted (%s): %zu added, %zu modified%s, %zu deleted",
                      inf->cl->id, kube_res_name(inf->res),
                      inf->relist_why ? inf->relist_why : "its previous list failed", inf->n_added,
                      inf->n_modified,
                      inf->n_samerv ? " (some under an unchanged resourceVersion: new UID or "
                                      "content, a recreated or restored cluster)"
                                    : "",
                      inf->n_deleted);
    if (inf->n_samerv)
        kube_emit_msg(inf->cl, inf->res, KUBE_EV_RELISTED,
                      "cluster %s: %s: %zu objects changed under an unchanged resourceVersion "
                      "(new UID or content): re-applied",
                      inf->cl->id, kube_res_name(inf->res), inf->n_samerv);
    inf->listed = true;
    inf->relist_why = NULL;
    kube_inf_list_done(inf);
}

/* One page of a list: a page with more to come is held; the last one
 * applies the whole list. */
static void kube_list_page(kube_informer_t *inf)
{
    kube_watcher_t *w = inf->cl->w;
    kube_count(w, KUBE_ST_LISTS);
    /* the parse below works in place: keep the raw page in case more follow */
    char *raw = malloc(inf->len + 1);
    if (!raw) {
        kube_emit_error(inf->cl, inf->res, "cluster %s: list %s: out of memory", inf->cl->id,
                        kube_res_name(inf->res));
        kube_backoff(inf);
        return;
    }
    memcpy(raw, inf->buf ? inf->buf : "", inf->len);
    size_t rawlen = inf->len;
    int prc =
        kube_jparse_ex(&inf->doc, inf->buf ? inf->buf : "", inf->buf ? inf->len : 0, KUBE_JP_MARK);
    const kube_jv_t *root = prc == 0 ? kube_jroot(&inf->doc) : NULL;
    const kube_jv_t *md = kube_jget(root, "metadata"), *items = kube_jget(root, "items");
    const kube_jv_t *rv = kube_jget(md, "resourceVersion"), *cont = kube_jget(md, "continue");
    char bad[300] = "";
    /* a bad value inside an item costs that item (when the list applies);
     * one outside the items makes the page unreadable */
    if (root && inf->doc.nbad &&
        (kube_jis(items, KUBE_J_ARRAY) ? kube_jbad(items, bad, sizeof(bad)) : 0) < inf->doc.nbad)
        kube_jbad(root, bad, sizeof(bad));
    else
        bad[0] = '\0';
    if (!kube_jis(root, KUBE_J_OBJECT) ||
        (items && !kube_jis(items, KUBE_J_ARRAY) && !kube_jis(items, KUBE_J_NULL)) ||
        !kube_jis(rv, KUBE_J_STRING) || bad[0]) {
        free(raw);
        kube_count(w, KUBE_ST_DECODE);
        kube_emit_error(inf->cl, inf->res, "cluster %s: list %s: malformed list: %s", inf->cl->id,
                        kube_res_name(inf->res),
                        !root    ? inf->doc.err
                        : bad[0] ? bad
                                 : "not a list with metadata.resourceVersion");
        kube_set(&inf->cont, NULL);
        kube_backoff(inf);
        return;
    }
    char why[128];
    inf->list_objs += kube_jis(items, KUBE_J_ARRAY) ? items->len : 0;
    bool more = kube_jis(cont, KUBE_J_STRING) && cont->len;
    if (inf->list_objs > w->max_list_objects) {
        free(raw);
        snprintf(why, sizeof(why), "more than %zu objects", w->max_list_objects);
        kube_list_abandon(inf, why);
        return;
    }
    if (more && inf->npages + 1 >= w->max_list_pages) {
        free(raw);
        snprintf(why, sizeof(why), "more than %u pages", w->max_list_pages);
        kube_list_abandon(inf, why);
        return;
    }
    inf->due_ms = 0;
    if (more) {
        if (kube_list_hold(inf, raw, rawlen) < 0) {
            free(raw);
            kube_emit_error(inf->cl, inf->res, "cluster %s: list %s: out of memory", inf->cl->id,
                            kube_res_name(inf->res));
            kube_list_discard(inf);
            kube_set(&inf->cont, NULL);
            kube_backoff(inf);
            return;
        }
        kube_set(&inf->cont, cont->v.s);
        return;
    }
    free(raw);
    kube_set(&inf->cont, NULL);
    kube_set(&inf->rv, rv->v.s);
    kube_list_complete(inf, items);
}

/* ---------- requests ---------- */

int kube_inf_start(kube_informer_t *inf)
{
    char path[4096], err[512];
    if (inf->phase == KUBE_PH_LIST && !inf->cont) {
        inf->gen++; /* a fresh list: entries it does not touch are gone */
        kube_list_discard(inf);
        inf->n_added = inf->n_modified = inf->n_samerv = inf->n_deleted = 0;
    }
    if (inf->phase == KUBE_PH_WATCH) {
        /* a list is done: do not keep its big page buffers around (kept
         * between pages, where they would only grow back) */
        if (inf->cap > (1u << 20)) {
            free(inf->buf);
            inf->buf = NULL;
            inf->cap = 0;
        }
        kube_jdoc_trim(&inf->doc, 1u << 14);
    }
    inf->len = 0;
    inf->status = 0;
    inf->skipping = inf->gone = inf->stream_err = inf->toobig = inf->got_data = false;
    if (kube_inf_url(inf, path, sizeof(path)) < 0) {
        kube_emit_error(inf->cl, inf->res, "cluster %s: %s: request URL too long", inf->cl->id,
                        kube_res_name(inf->res));
        kube_backoff(inf);
        return -1;
    }
    if (kube_http_setup(inf, path, err, sizeof(err)) < 0) {
        kube_emit_error(inf->cl, inf->res, "cluster %s: %s: %s", inf->cl->id,
                        kube_res_name(inf->res), err);
        kube_backoff(inf);
        return -1;
    }
    curl_easy_setopt(inf->easy, CURLOPT_WRITEFUNCTION, kube_inf_write);
    curl_easy_setopt(inf->easy, CURLOPT_WRITEDATA, inf);
    curl_easy_setopt(inf->easy, CURLOPT_PRIVATE, inf);
    curl_easy_setopt(inf->easy, CURLOPT_TIMEOUT,
                     inf->phase == KUBE_PH_WATCH ? (long)kube_timeout_s(inf) + 30 : 300L);
    if (curl_multi_add_handle(inf->cl->w->multi, inf->easy) != CURLM_OK) {
        kube_backoff(inf);
        return -1;
    }
    inf->busy = true;
    if (inf->phase == KUBE_PH_WATCH) {
        inf->watch_start_ms = kube_now_ms();
        kube_count(inf->cl->w, KUBE_ST_WATCHES);
    }
    return 0;
}

/* The message of a Kubernetes Status body, or the start of the body. */
static void kube_status_msg(kube_informer_t *inf, char *out, size_t outlen)
{
    json_t *st = json_loadb(inf->buf ? inf->buf : "", inf->len, 0, NULL);
    const char *m = json_string_value(json_object_get(st, "message"));
    if (m)
        snprintf(out, outlen, "%s", m);
    else
        snprintf(out, outlen, "%.*s", (int)(inf->len < 200 ? inf->len : 200),
                 inf->buf ? inf->buf : "");
    json_decref(st);
}

static void kube_inf_relist(kube_informer_t *inf)
{
    kube_count(inf->cl->w, KUBE_ST_RELISTS);
    inf->relist_why = inf->phase == KUBE_PH_LIST
                          ? "its list's continue token expired (410 Gone)"
                          : "the watch's resourceVersion is too old (410 Gone)";
    inf->phase = KUBE_PH_LIST;
    kube_set(&inf->cont, NULL);
    inf->due_ms = 0;
}

/* The server ended a watch: resume at once, unless it ended within KUBE_SHORT_WATCH_MS without
 * delivering anything, which a server or proxy answering every watch with an empty 200 would turn
 * into a hot loop. Those back off as client-go's reflector does; the second of a streak is reported
 * (a single one is a disconnect at a bad moment), the rest only counted. */
static void kube_watch_ended(kube_informer_t *inf)
{
    uint64_t lasted = kube_now_ms() - inf->watch_start_ms;
    kube_count(inf->cl->w, KUBE_ST_RESTARTS);
    inf->backoff_ms = 0;
    if (inf->got_data || lasted >= KUBE_SHORT_WATCH_MS) {
        inf->short_ms = 0;
        inf->due_ms = 0;
        return;
    }
    kube_count(inf->cl->w, KUBE_ST_SHORT_WATCHES);
    unsigned b = inf->short_ms ? inf->short_ms * 2 : KUBE_SHORT_BACKOFF_MIN_MS;
    if (b > KUBE_SHORT_BACKOFF_MAX_MS)
        b = KUBE_SHORT_BACKOFF_MAX_MS;
    if (inf->short_ms == KUBE_SHORT_BACKOFF_MIN_MS) /* one alone is a disconnect */
        kube_emit_error(inf->cl, inf->res,
                        "cluster %s: watch %s: watches end after %llu ms without any event; "
                        "backing off (%u ms doubling up to %u ms) until a watch delivers one",
                        inf->cl->id, kube_res_name(inf->res), (unsigned long long)lasted,
                        KUBE_SHORT_BACKOFF_MIN_MS, KUBE_SHORT_BACKOFF_MAX_MS);
    inf->short_ms = b;
    inf->due_ms = kube_now_ms() + b + (unsigned)rand_r(&inf->seed) % (b + 1);
}

/* A transport failure: a broken watch stream resumes quietly, the rest is
 * an error with curl's reason. */
static void kube_inf_failed(kube_informer_t *inf, CURLcode rc)
{
    const char *op = inf->phase == KUBE_PH_LIST ? "list" : "watch";
    if (inf->toobig) {
        kube_count(inf->cl->w, KUBE_ST_DECODE);
        kube_emit_error(inf->cl, inf->res, "cluster %s: list %s: response larger than %u MiB",
                        inf->cl->id, kube_res_name(inf->res), KUBE_MAX_BODY >> 20);
    } else if (inf->phase == KUBE_PH_WATCH && inf->status == 200) {
        /* a broken stream resumes soon; one broken again before it
         * delivered anything backs off further */
        kube_count(inf->cl->w, KUBE_ST_RESTARTS);
        if (inf->got_data)
            inf->backoff_ms = 0;
    } else {
        kube_emit_error(inf->cl, inf->res, "cluster %s: %s %s: %s%s%s", inf->cl->id, op,
                        kube_res_name(inf->res), curl_easy_strerror(rc), inf->errbuf[0] ? ": " : "",
                        inf->errbuf);
    }
    kube_backoff(inf);
}

/* The response's Retry-After in seconds (1 to KUBE_RETRY_AFTER_MAX_S);
 * false when it has none. */
static bool kube_retry_after(kube_informer_t *inf, long *secs)
{
    curl_off_t ra = 0;
    if (curl_easy_getinfo(inf->easy, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
        return false;
    *secs = ra > KUBE_RETRY_AFTER_MAX_S ? KUBE_RETRY_AFTER_MAX_S : (long)ra;
    return true;
}

/* An optional API the cluster does not serve (404: its CRD is not
 * installed) or does not let meshfed read (403: RBAC), in a list or a
 * watch: treated the same way every time. Nothing to watch now: it counts
 * as synced (readiness must not wait for it), the condition is recorded for
 * kube_watcher_cluster_info, a 403 is reported once per change and counted
 * every time, and the resource is looked at again in a while. */
static void kube_inf_unavailable(kube_informer_t *inf)
{
    char msg[512];
    kube_cluster_t *cl = inf->cl;
    bool forbidden = inf->status == 403;
    unsigned bit = KUBE_RES_BIT(inf->res);
    kube_status_msg(inf, msg, sizeof(msg));
    inf->len = 0;
    pthread_mutex_lock(&cl->w->mu);
    bool changed = !((forbidden ? cl->forbidden : cl->absent) & bit);
    cl->forbidden = forbidden ? cl->forbidden | bit : cl->forbidden & ~bit;
    cl->absent = forbidden ? cl->absent & ~bit : cl->absent | bit;
    pthread_mutex_unlock(&cl->w->mu);
    if (forbidden) {
        kube_count(cl->w, KUBE_ST_FORBIDDEN);
        if (changed)
            kube_emit_error(cl, inf->res,
                            "cluster %s: %s %s: forbidden (HTTP 403): %s; optional, so not "
                            "waited for and served as empty (grant get, list and watch on "
                            "%s of %s); looking again every %d s",
                            cl->id, inf->phase == KUBE_PH_LIST ? "list" : "watch",
                            kube_res_name(inf->res), msg, kube_resdefs[inf->res].plural,
                            kube_resdefs[inf->res].api_version, KUBE_BACKOFF_MAX_MS / 1000);
    }
    inf->phase = KUBE_PH_LIST;
    kube_set(&inf->cont, NULL);
    if (!inf->synced)
        kube_inf_list_done(inf);
    inf->backoff_ms = KUBE_BACKOFF_MAX_MS;
    inf->due_ms = kube_now_ms() + KUBE_BACKOFF_MAX_MS;
}

void kube_inf_done(kube_informer_t *inf, CURLcode rc)
{
    char msg[512];
    long secs;
    inf->busy = false;
    if (!inf->status)
        curl_easy_getinfo(inf->easy, CURLINFO_RESPONSE_CODE, &inf->status);
    if (inf->gone || inf->status == 410) {
        kube_inf_relist(inf);
    } else if (inf->stream_err) {
        kube_backoff(inf);
    } else if (rc != CURLE_OK) {
        kube_inf_failed(inf, rc);
    } else if ((inf->status == 404 || inf->status == 403) && kube_resdefs[inf->res].optional) {
        kube_inf_unavailable(inf);
    } else if ((inf->status == 429 || inf->status == 503) && kube_retry_after(inf, &secs)) {
        /* API Priority and Fairness: the server says when to come back */
        kube_count(inf->cl->w, KUBE_ST_THROTTLED);
        kube_status_msg(inf, msg, sizeof(msg));
        kube_emit_error(inf->cl, inf->res,
                        "cluster %s: %s %s: throttled (HTTP %ld), retrying in %ld s: %s",
                        inf->cl->id, inf->phase == KUBE_PH_LIST ? "list" : "watch",
                        kube_res_name(inf->res), inf->status, secs, msg);
        inf->due_ms = kube_now_ms() + (uint64_t)secs * 1000 +
                      (unsigned)rand_r(&inf->seed) % ((unsigned)secs * 100 + 1);
    } else if (inf->status != 200) {
        if (inf->status == 401)
            kube_exec_invalidate(inf->cl->conn.exec); /* a plugin's token ran out early */
        kube_status_msg(inf, msg, sizeof(msg));
        kube_emit_error(inf->cl, inf->res, "cluster %s: %s %s: HTTP %ld: %s", inf->cl->id,
                        inf->phase == KUBE_PH_LIST ? "list" : "watch", kube_res_name(inf->res),
                        inf->status, msg);
        kube_backoff(inf);
    } else if (inf->phase == KUBE_PH_LIST) {
        kube_cluster_ok(inf->cl);
        kube_list_page(inf);
    } else {
        /* The server ended the watch (timeoutSeconds): resume quietly. */
        if (inf->len > 0 && !inf->skipping && kube_watch_line(inf, inf->buf, inf->len) < 0) {
            inf->len = 0;
            if (inf->gone)
                kube_inf_relist(inf);
            else
                kube_backoff(inf);
            return;
        }
        inf->len = 0;
        kube_cluster_ok(inf->cl);
        kube_watch_ended(inf);
    }
}
