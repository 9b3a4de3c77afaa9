/*
 * kube_int.h - internals shared by the kube/ files: the watcher (client.c,
 * informer.c), request.c, decode.c on parsed values (jv.h), and
 * exec credential plugins (exec.c). Not part of the public API in kube.h.
 */
#ifndef MESHFED_KUBE_INT_H
#define MESHFED_KUBE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "base.h"
#include "jv.h"
#include "kube.h"

#define KUBE_MAX_LINE (16u << 20)  /* one watch event */
#define KUBE_MAX_BODY (256u << 20) /* one list page */
#define KUBE_MAX_ERRBODY (64u << 10)
#define KUBE_BACKOFF_MIN_MS 100
#define KUBE_BACKOFF_MAX_MS 30000
#define KUBE_RETRY_AFTER_MAX_S 60 /* longest Retry-After honoured */
#define KUBE_LIST_LIMIT 500
/* A watch that ends within KUBE_SHORT_WATCH_MS without delivering anything
 * (a proxy answering with an empty 200) is retried after a backoff, as
 * client-go's reflector does: 800 ms doubling up to 30 s, plus up to 100%
 * jitter. */
#define KUBE_SHORT_WATCH_MS 1000
#define KUBE_SHORT_BACKOFF_MIN_MS 800
#define KUBE_SHORT_BACKOFF_MAX_MS 30000

/* ---------- objects (informer.c) and their decoding (decode.c) ---------- */

struct kube_obj {
    const kube_jv_t *v; /* NULL: a stub naming an object a relist found gone */
    const char *name, *ns, *rv;
    kube_res_t res;
};

/* kube_decode on parsed values; obj NULL decodes as "nothing". */
int kube_decode_jv(model_kind_t kind, const kube_jv_t *obj, void **out, char *err, size_t errlen);

/* RFC 3339 ("2024-05-01T12:00:00Z", fraction and offset allowed) to epoch
 * seconds, calendar-checked (decode.c). 0, or -1. */
int kube_parse_rfc3339(const char *s, int64_t *out);

/* ---------- exec credential plugins (exec.c) ---------- */

typedef struct kube_exec kube_exec_t;

/* A credential: bearer token and/or client certificate and key (PEM). */
typedef struct kube_cred {
    char *token, *cert, *key;
    size_t cert_len, key_len;
} kube_cred_t;

void kube_cred_clear(kube_cred_t *c);
/* users[].user.exec of user, for the cluster conn describes. NULL with err. */
kube_exec_t *kube_exec_parse(const json_t *spec, const char *user, const kube_conn_t *cluster,
                             char *err, size_t errlen);
kube_exec_t *kube_exec_copy(const kube_exec_t *x); /* the spec; not the cached credential */
void kube_exec_free(kube_exec_t *x);
/* The cached credential, or the plugin's new one (it runs, blocking, when
 * none is cached or it expired). *out is the caller's (kube_cred_clear).
 * 0, or -1 with err. Thread-safe. */
int kube_exec_credential(kube_exec_t *x, kube_cred_t *out, char *err, size_t errlen);
/* After a 401: the next kube_exec_credential runs the plugin again. */
void kube_exec_invalidate(kube_exec_t *x);

/* ---------- informers ---------- */

typedef struct kube_cluster kube_cluster_t;

typedef enum kube_phase { KUBE_PH_LIST, KUBE_PH_WATCH } kube_phase_t;

typedef struct kube_informer {
    kube_cluster_t *cl;
    kube_res_t res;
    CURL *easy;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    kube_phase_t phase;
    bool busy;       /* a request is in the multi handle */
    uint64_t due_ms; /* when idle: start the next request at this time */
    unsigned backoff_ms;
    base_map_t cache; /* key -> what the callback has seen (informer.c) */
    unsigned gen;     /* list generation, for the relist sweep */
    bool synced;      /* the initial list finished */
    char *rv;         /* where the watch resumes */
    char *cont;       /* list continue token */
    char *buf;        /* list body, watch partial line, or error body */
    kube_jdoc_t doc;  /* buf parsed (a list page or one watch line) */
    size_t len, cap;
    bool skipping;   /* discarding the rest of an oversized watch line */
    bool gone;       /* the watch stream said 410 */
    bool stream_err; /* the watch stream sent another ERROR (already reported) */
    bool toobig;     /* the list body exceeded KUBE_MAX_BODY */
    unsigned seed;   /* for backoff jitter (rand_r) */
    bool got_data;   /* the watch delivered an event (or a bookmark) */
    uint64_t watch_start_ms;
    char **pages; /* the raw pages of the list so far, applied when it completes */
    size_t *page_len;
    size_t npages, pages_cap;
    size_t list_objs; /* items in the list so far */
    bool listed;      /* a list completed before: the next one is a relist */
    const char *relist_why;
    size_t n_added, n_modified, n_samerv, n_deleted; /* by the list under way */
    unsigned short_ms; /* backoff after watches that end at once without events */
    long status;
} kube_informer_t;

struct kube_watcher;

struct kube_cluster {
    struct kube_watcher *w;
    char *id;
    kube_conn_t conn;
    kube_informer_t *inf[KUBE_RES__COUNT];
    bool synced;                /* written under w->mu */
    bool stale;                 /* written under w->mu */
    unsigned forbidden, absent; /* optional resources answered 403 / 404; under w->mu */
    uint64_t last_success_ms;
    char *base_url;                /* server URL, its host replaced by tls_server_name if set */
    struct curl_slist *connect_to; /* maps tls_server_name back to the real host */
    /* Until one of its requests has ended, a cluster starts one request at a
     * time; its requests wait for a connection to multiplex (PIPEWAIT) only
     * once it is known to speak HTTP/2. curl keeps the requests that wait in
     * one queue for all clusters and wakes one per finished request, so a
     * server that never finishes a handshake would otherwise hold up every
     * other cluster's new requests. I/O thread only. */
    bool answered, h2;
};

typedef enum kube_op_type { KUBE_OP_ADD, KUBE_OP_REMOVE } kube_op_type_t;

typedef struct kube_op {
    struct kube_op *next;
    kube_op_type_t type;
    char *id;
    kube_conn_t conn;
    unsigned mask;
} kube_op_t;

enum {
    KUBE_ST_LISTS,
    KUBE_ST_WATCHES,
    KUBE_ST_RELISTS,
    KUBE_ST_RESTARTS,
    KUBE_ST_BOOKMARKS,
    KUBE_ST_EVENTS,
    KUBE_ST_ERRORS,
    KUBE_ST_DECODE,
    KUBE_ST_THROTTLED,
    KUBE_ST_SHORT_WATCHES,
    KUBE_ST_LIST_LIMITS,
    KUBE_ST_BAD_OBJECTS,
    KUBE_ST_FORBIDDEN,
    KUBE_ST__COUNT
};

struct kube_watcher {
    kube_event_fn fn;
    void *arg;
    char *system_namespace;
    int stale_after_s;
    unsigned max_list_pages; /* set before the thread starts */
    size_t max_list_objects;
    CURLM *multi;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu; /* ops, the cluster list, cluster flags */
    kube_op_t *ops, **ops_tail;
    kube_cluster_t **clusters;
    size_t nclusters;
    _Atomic uint64_t st[KUBE_ST__COUNT]; /* kube_stats_t fields, in order */
};

/* client.c */
uint64_t kube_now_ms(void);
void kube_count(struct kube_watcher *w, int which);
/* An error event: formats msg, counts it, calls back. */
void kube_emit_error(kube_cluster_t *cl, kube_res_t res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kube_emit(kube_cluster_t *cl, kube_res_t res, kube_ev_t ev, const kube_obj_t *obj);
/* An event with a message and no object (KUBE_EV_RELISTED). */
void kube_emit_msg(kube_cluster_t *cl, kube_res_t res, kube_ev_t ev, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void kube_cluster_ok(kube_cluster_t *cl);
/* Resets e and prepares it for a request of path (with query) on conn: URL,
 * TLS, bearer token (token_file re-read), timeouts for connecting, common
 * headers. *hdrs is freed and rebuilt (Accept, Authorization, extra_hdr if
 * not NULL) and must outlive the transfer, as must errbuf
 * (CURL_ERROR_SIZE). 0, or -1 with err. */
int kube_easy_setup(CURL *e, const kube_conn_t *c, const char *base_url,
                    struct curl_slist *connect_to, const char *path, const char *extra_hdr,
                    struct curl_slist **hdrs, char *errbuf, char *err, size_t errlen);
/* The URL prefix requests to c use and, with tls_server_name, the
 * CONNECT_TO mapping to the real host (NULL otherwise); caller frees both
 * (also on failure). 0, or -1 with err (err may be empty: out of memory). */
int kube_base_url(const kube_conn_t *c, char **base_url, struct curl_slist **connect_to, char *err,
                  size_t errlen);
/* Prepares inf->easy for GET path_query on its cluster (TLS, auth, headers).
 * 0, or -1 with err. */
int kube_http_setup(kube_informer_t *inf, const char *path_query, char *err, size_t errlen);

/* request.c */
#define KUBE_REQUEST_TIMEOUT_MS 10000
#define KUBE_MAX_RESPONSE (16u << 20) /* one kube_request response body */
/* kube_request with a whole-request timeout (ms, > 0) and, if cancel is not
 * NULL, aborted (as a transport failure) soon after *cancel turns true. */
int kube_request_ex(const kube_conn_t *c, const char *method, const char *path,
                    const char *content_type, const char *body, long timeout_ms,
                    const atomic_bool *cancel, long *status, char **resp_body, char *err,
                    size_t errlen);

/* informer.c */
kube_informer_t *kube_inf_new(kube_cluster_t *cl, kube_res_t res);
void kube_inf_free(kube_informer_t *inf);
/* Starts the next request (list page or watch). 0, or -1 (retry scheduled). */
int kube_inf_start(kube_informer_t *inf);
/* The request finished with rc. */
void kube_inf_done(kube_informer_t *inf, CURLcode rc);
/* Re-lists (after a reconnect of the cluster): keeps the cache. */
void kube_inf_reset(kube_informer_t *inf);

/* ---------- decoding helpers (decode.c), shared with decode_sec.c ---------- */

/* Decoding context: where errors go and which object they are about
 * ("Service default/web", "ServiceScope s1", or kind alone). */
typedef struct kube_dctx {
    char *err;
    size_t errlen;
    const char *kind, *ns, *name;
} kube_dctx_t;

/* A field path, built on the stack as the decoders descend: a member (key)
 * or an element (key NULL, idx) of up. NULL is the object itself. */
typedef struct kube_path {
    const struct kube_path *up;
    const char *key;
    size_t idx;
} kube_path_t;

typedef struct kube_meta {
    const char *name, *ns, *uid;
    const kube_jv_t *labels, *annotations;
    int64_t created; /* 0 when absent */
    bool deleting;   /* deletionTimestamp set */
} kube_meta_t;

size_t kube_path_fmt(char *buf, size_t len, const kube_path_t *p);
/* "<what>: <path>: <message>" into c->err; path may be NULL. Returns -1. */
int kube_fail(kube_dctx_t *c, const kube_path_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kube_oom(kube_dctx_t *c);
/* Member key of o; NULL when o is NULL, the member absent or JSON null. */
const kube_jv_t *kube_member(const kube_jv_t *o, const char *key);
/* Checks that v (at p) has type t; KUBE_J_TRUE stands for either boolean. */
int kube_want(kube_dctx_t *c, const kube_jv_t *v, kube_jtype_t t, const kube_path_t *p);
/* Typed getters of member key of o (at p): absent leaves *out NULL. */
int kube_get(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p, const char *key,
             kube_jtype_t t, const kube_jv_t **out);
int kube_get_str(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p, const char *key,
                 const char **out);
int kube_get_obj(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p, const char *key,
                 const kube_jv_t **out);
int kube_get_arr(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p, const char *key,
                 size_t max, const kube_jv_t **out);
/* Rejects members of o (at p) not in allowed (NULL terminated). */
int kube_only_fields(kube_dctx_t *c, const kube_jv_t *o, const kube_path_t *p,
                     const char *const *allowed);
/* Reads metadata (name, namespace if namespaced, labels, annotations,
 * creationTimestamp), checks kind when the object names one, and sets the
 * error context. */
int kube_meta(kube_dctx_t *c, const char *kind, const kube_jv_t *obj, bool namespaced,
              kube_meta_t *m);
/* Copies labels that kube_meta (or the caller) type-checked. */
int kube_copy_labels(kube_dctx_t *c, const kube_jv_t *labels, model_labels_t *out);
/* A jansson value as parsed values borrowing its strings; NULL (with c's
 * error) when j breaks a rule of the text form (see kube_jfrom_json). */
const kube_jv_t *kube_from_json(kube_jdoc_t *d, const json_t *j, kube_dctx_t *c);

/* An AuthorizationPolicy or PeerAuthentication (kind) on parsed values
 * (decode_sec.c). */
int kube_decode_sec_jv(model_kind_t kind, const kube_jv_t *obj, void **out, char *err,
                       size_t errlen);

#endif
