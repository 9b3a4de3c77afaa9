/*
 * client.c - the watcher: one I/O thread driving every cluster's informers
 * with one libcurl multi handle, plus what requests share (TLS, bearer
 * tokens, the event callback, staleness).
 *
 * Other threads only queue add/remove operations under a mutex and wake the
 * thread; everything else (clusters, informers, curl handles) belongs to the
 * I/O thread, so the callback runs there without locks held.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "kube_int.h"

uint64_t kube_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void kube_count(kube_watcher_t *w, int which)
{
    atomic_fetch_add(&w->st[which], 1);
}

void kube_emit(kube_cluster_t *cl, kube_res_t res, kube_ev_t ev, const kube_obj_t *obj)
{
    if (ev <= KUBE_EV_DELETED)
        kube_count(cl->w, KUBE_ST_EVENTS);
    cl->w->fn(cl->w->arg, cl->id, res, ev, obj, NULL);
}

void kube_emit_error(kube_cluster_t *cl, kube_res_t res, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kube_count(cl->w, KUBE_ST_ERRORS);
    cl->w->fn(cl->w->arg, cl->id, res, KUBE_EV_ERROR, NULL, msg);
}

void kube_emit_msg(kube_cluster_t *cl, kube_res_t res, kube_ev_t ev, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cl->w->fn(cl->w->arg, cl->id, res, ev, NULL, msg);
}

void kube_cluster_ok(kube_cluster_t *cl)
{
    cl->last_success_ms = kube_now_ms();
    if (!cl->stale)
        return;
    pthread_mutex_lock(&cl->w->mu);
    cl->stale = false;
    pthread_mutex_unlock(&cl->w->mu);
    cl->w->fn(cl->w->arg, cl->id, KUBE_RES__COUNT, KUBE_EV_RECOVERED, NULL, NULL);
}

/* ---------- requests ---------- */

/* The bearer token, read from token_file at every (re)connect so that a
 * rotated projected token is picked up. 0 (*out may be NULL), or -1. */
static int kube_token(const kube_conn_t *c, char *out, size_t outlen, char *err, size_t errlen)
{
    out[0] = '\0';
    if (!c->token_file) {
        if (c->token)
            snprintf(out, outlen, "%s", c->token);
        return 0;
    }
    FILE *f = fopen(c->token_file, "r");
    if (!f) {
        snprintf(err, errlen, "token file %s: %s", c->token_file, strerror(errno));
        return -1;
    }
    size_t n = fread(out, 1, outlen - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    return 0;
}

static void kube_blob(CURL *e, CURLoption opt, const char *data, size_t len)
{
    struct curl_blob b = {.data = (void *)data, .len = len, .flags = CURL_BLOB_COPY};
    curl_easy_setopt(e, opt, &b);
}

static void kube_tls_setup(CURL *e, const kube_conn_t *c)
{
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (c->ca_data) {
        kube_blob(e, CURLOPT_CAINFO_BLOB, c->ca_data, c->ca_len);
    } else if (c->ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    }
    if (c->cert_data) {
        kube_blob(e, CURLOPT_SSLCERT_BLOB, c->cert_data, c->cert_len);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (c->cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    }
    if (c->key_data) {
        kube_blob(e, CURLOPT_SSLKEY_BLOB, c->key_data, c->key_len);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (c->key_file) {
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    }
}

int kube_easy_setup(CURL *e, const kube_conn_t *c, const char *base_url,
                    struct curl_slist *connect_to, const char *path, const char *extra_hdr,
                    struct curl_slist **hdrs, char *errbuf, char *err, size_t errlen)
{
    char tok[8192], hdr[8300];
    kube_cred_t ex = {0}; /* from the exec plugin, which wins over static credentials */
    if (c->exec && kube_exec_credential(c->exec, &ex, err, errlen) < 0)
        return -1;
    if (ex.token)
        snprintf(tok, sizeof(tok), "%s", ex.token);
    else if (kube_token(c, tok, sizeof(tok), err, errlen) < 0)
        return -1;
    size_t n = strlen(base_url) + strlen(path) + 1;
    char *url = malloc(n);
    if (!url) {
        kube_cred_clear(&ex);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(url, n, "%s%s", base_url, path);
    curl_easy_reset(e);
    curl_slist_free_all(*hdrs);
    *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (tok[0]) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", tok);
        *hdrs = curl_slist_append(*hdrs, hdr);
    }
    if (extra_hdr)
        *hdrs = curl_slist_append(*hdrs, extra_hdr);
    errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "meshfed");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
    /* A real API server speaks HTTP/2 (ALPN): wait for the cluster's TLS
     * connection to say whether it multiplexes rather than open one per list
     * and watch. Plain http:// (tests) would only learn it from a response,
     * so there the transfers do not wait. */
    if (strncmp(base_url, "https://", 8) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    if (connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, connect_to);
    kube_tls_setup(e, c);
    if (ex.cert && ex.key) {
        kube_blob(e, CURLOPT_SSLCERT_BLOB, ex.cert, ex.cert_len);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        kube_blob(e, CURLOPT_SSLKEY_BLOB, ex.key, ex.key_len);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    kube_cred_clear(&ex);
    memset(tok, 0, sizeof(tok)); /* do not leave the token on the stack */
    memset(hdr, 0, sizeof(hdr));
    return 0;
}

int kube_http_setup(kube_informer_t *inf, const char *path_query, char *err, size_t errlen)
{
    kube_cluster_t *cl = inf->cl;
    int rc = kube_easy_setup(inf->easy, &cl->conn, cl->base_url, cl->connect_to, path_query, NULL,
                             &inf->hdrs, inf->errbuf, err, errlen);
    if (rc == 0) /* see kube_cluster_t: wait to multiplex only on a known HTTP/2 server */
        curl_easy_setopt(inf->easy, CURLOPT_PIPEWAIT, cl->h2 ? 1L : 0L);
    return rc;
}

/* With tls_server_name, requests go to https://<name>:<port> (so SNI and
 * certificate verification use the name) and CONNECT_TO sends them to the
 * real host. */
int kube_base_url(const kube_conn_t *c, char **base_url, struct curl_slist **connect_to, char *err,
                  size_t errlen)
{
    *base_url = NULL;
    *connect_to = NULL;
    size_t n = strlen(c->server);
    while (n > 0 && c->server[n - 1] == '/')
        n--;
    if (!c->tls_server_name) {
        *base_url = strndup(c->server, n);
        return *base_url ? 0 : -1;
    }
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *url = NULL, map[1024];
    int rc = -1;
    if (!u || curl_url_set(u, CURLUPART_URL, c->server, 0) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ||
        curl_url_set(u, CURLUPART_HOST, c->tls_server_name, 0) ||
        curl_url_get(u, CURLUPART_URL, &url, 0)) {
        snprintf(err, errlen, "server \"%s\" or tls-server-name \"%s\" is not valid", c->server,
                 c->tls_server_name);
        goto out;
    }
    n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    snprintf(map, sizeof(map), "%s:%s:%s:%s", c->tls_server_name, port, host, port);
    *base_url = strndup(url, n);
    *connect_to = curl_slist_append(NULL, map);
    rc = *base_url && *connect_to ? 0 : -1;
out:
    curl_free(host);
    curl_free(port);
    curl_free(url);
    curl_url_cleanup(u);
    return rc;
}

/* ---------- clusters ---------- */

static void kube_cluster_free(kube_cluster_t *cl)
{
    if (!cl)
        return;
    for (int r = 0; r < KUBE_RES__COUNT; r++) {
        kube_informer_t *inf = cl->inf[r];
        if (inf && inf->busy)
            curl_multi_remove_handle(cl->w->multi, inf->easy);
        kube_inf_free(inf);
    }
    kube_conn_free(&cl->conn);
    curl_slist_free_all(cl->connect_to);
    free(cl->base_url);
    free(cl->id);
    free(cl);
}

/* Builds a cluster from an op (taking its conn). NULL when out of memory. */
static kube_cluster_t *kube_cluster_new(kube_watcher_t *w, kube_op_t *op)
{
    char err[256];
    kube_cluster_t *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    cl->w = w;
    cl->id = op->id;
    op->id = NULL;
    cl->conn = op->conn;
    memset(&op->conn, 0, sizeof(op->conn));
    cl->last_success_ms = kube_now_ms();
    if (kube_base_url(&cl->conn, &cl->base_url, &cl->connect_to, err, sizeof(err)) < 0)
        goto fail;
    for (int r = 0; r < KUBE_RES__COUNT; r++)
        if ((op->mask & KUBE_RES_BIT(r)) && !(cl->inf[r] = kube_inf_new(cl, (kube_res_t)r)))
            goto fail;
    return cl;
fail:
    kube_cluster_free(cl);
    return NULL;
}

static ssize_t kube_find(kube_watcher_t *w, const char *id)
{
    for (size_t i = 0; i < w->nclusters; i++)
        if (strcmp(w->clusters[i]->id, id) == 0)
            return (ssize_t)i;
    return -1;
}

/* A replaced cluster keeps its caches, so its relist emits only the
 * difference. */
static void kube_cluster_adopt(kube_cluster_t *cl, kube_cluster_t *old)
{
    for (int r = 0; r < KUBE_RES__COUNT; r++) {
        if (!cl->inf[r] || !old->inf[r])
            continue;
        base_map_t t = cl->inf[r]->cache;
        cl->inf[r]->cache = old->inf[r]->cache;
        cl->inf[r]->gen = old->inf[r]->gen;
        cl->inf[r]->listed = old->inf[r]->listed;
        cl->inf[r]->relist_why = "the cluster's connection was replaced";
        old->inf[r]->cache = t;
    }
}

static void kube_op_add(kube_watcher_t *w, kube_op_t *op)
{
    kube_cluster_t *cl = kube_cluster_new(w, op), *old = NULL;
    if (!cl)
        return; /* out of memory: nothing sensible to report to */
    pthread_mutex_lock(&w->mu);
    ssize_t i = kube_find(w, cl->id);
    if (i >= 0) {
        old = w->clusters[i];
        w->clusters[i] = cl;
    } else {
        kube_cluster_t **a = realloc(w->clusters, (w->nclusters + 1) * sizeof(*a));
        if (a) {
            w->clusters = a;
            w->clusters[w->nclusters++] = cl;
        } else {
            old = cl; /* dropped */
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (old && old != cl)
        kube_cluster_adopt(cl, old);
    kube_cluster_free(old);
}

static void kube_op_remove(kube_watcher_t *w, const char *id)
{
    kube_cluster_t *old = NULL;
    pthread_mutex_lock(&w->mu);
    ssize_t i = kube_find(w, id);
    if (i >= 0) {
        old = w->clusters[i];
        w->clusters[i] = w->clusters[--w->nclusters];
    }
    pthread_mutex_unlock(&w->mu);
    kube_cluster_free(old);
}

static void kube_op_free(kube_op_t *op)
{
    free(op->id);
    kube_conn_free(&op->conn);
    free(op);
}

static void kube_apply_ops(kube_watcher_t *w)
{
    pthread_mutex_lock(&w->mu);
    kube_op_t *op = w->ops, *next;
    w->ops = NULL;
    w->ops_tail = &w->ops;
    pthread_mutex_unlock(&w->mu);
    for (; op; op = next) {
        next = op->next;
        if (op->type == KUBE_OP_ADD)
            kube_op_add(w, op);
        else
            kube_op_remove(w, op->id);
        kube_op_free(op);
    }
}

/* ---------- the I/O thread ---------- */

static void kube_check_stale(kube_watcher_t *w, kube_cluster_t *cl, uint64_t now)
{
    if (w->stale_after_s <= 0 || cl->stale ||
        now - cl->last_success_ms < (uint64_t)w->stale_after_s * 1000)
        return;
    pthread_mutex_lock(&w->mu);
    cl->stale = true;
    pthread_mutex_unlock(&w->mu);
    w->fn(w->arg, cl->id, KUBE_RES__COUNT, KUBE_EV_STALE, NULL, NULL);
}

/* Starts what is due; returns how long until the next thing is due. */
static long kube_start_due(kube_watcher_t *w)
{
    uint64_t now = kube_now_ms();
    long next = 1000;
    for (size_t i = 0; i < w->nclusters; i++) {
        kube_cluster_t *cl = w->clusters[i];
        bool one_busy = false; /* before its first answer: one request at a time */
        for (int r = 0; r < KUBE_RES__COUNT; r++)
            one_busy |= cl->inf[r] && cl->inf[r]->busy;
        for (int r = 0; r < KUBE_RES__COUNT; r++) {
            kube_informer_t *inf = cl->inf[r];
            if (!inf || inf->busy)
                continue;
            if (inf->due_ms <= now && (cl->answered || !one_busy)) {
                kube_inf_start(inf);
                one_busy |= inf->busy;
            }
            if (!inf->busy && inf->due_ms > now && (long)(inf->due_ms - now) < next)
                next = (long)(inf->due_ms - now);
        }
        kube_check_stale(w, cl, now);
    }
    return next;
}

static void kube_drain(kube_watcher_t *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        kube_informer_t *inf = NULL;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result; /* m is invalid after remove_handle */
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&inf);
        if (inf) {
            long v = 0;
            curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &v);
            inf->cl->answered = true;
            inf->cl->h2 |= v >= CURL_HTTP_VERSION_2_0;
        }
        curl_multi_remove_handle(w->multi, e);
        if (inf)
            kube_inf_done(inf, rc);
    }
}

static void *kube_io_main(void *arg)
{
    kube_watcher_t *w = arg;
    int running;
    while (!atomic_load(&w->stop)) {
        kube_apply_ops(w);
        curl_multi_perform(w->multi, &running);
        kube_drain(w);
        long next = kube_start_due(w);
        if (atomic_load(&w->stop))
            break;
        curl_multi_poll(w->multi, NULL, 0, (int)next, NULL);
    }
    return NULL;
}

/* ---------- public API ---------- */

kube_watcher_t *kube_watcher_new(kube_event_fn fn, void *arg, const char *system_namespace,
                                 int stale_after_s)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kube_watcher_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->fn = fn;
    w->arg = arg;
    w->stale_after_s = stale_after_s;
    w->max_list_pages = KUBE_DEFAULT_MAX_LIST_PAGES;
    w->max_list_objects = KUBE_DEFAULT_MAX_LIST_OBJECTS;
    w->system_namespace = strdup(system_namespace ? system_namespace : "istio-system");
    w->multi = curl_multi_init();
    w->ops_tail = &w->ops;
    pthread_mutex_init(&w->mu, NULL);
    if (!w->system_namespace || !w->multi) {
        kube_watcher_free(w);
        return NULL;
    }
    return w;
}

static int kube_queue(kube_watcher_t *w, kube_op_t *op)
{
    pthread_mutex_lock(&w->mu);
    *w->ops_tail = op;
    w->ops_tail = &op->next;
    pthread_mutex_unlock(&w->mu);
    curl_multi_wakeup(w->multi);
    return 0;
}

int kube_watcher_add_cluster(kube_watcher_t *w, const char *id, const kube_conn_t *conn,
                             unsigned res_mask, char *err, size_t errlen)
{
    if (!id || !*id || !conn || !conn->server ||
        (strncmp(conn->server, "https://", 8) && strncmp(conn->server, "http://", 7))) {
        snprintf(err, errlen, "cluster %s: server must be an http(s) URL", id ? id : "?");
        return -1;
    }
    if (!res_mask || (res_mask & ~(unsigned)KUBE_RES_ALL)) {
        snprintf(err, errlen, "cluster %s: bad resource mask 0x%x", id, res_mask);
        return -1;
    }
    kube_op_t *op = calloc(1, sizeof(*op));
    if (!op || !(op->id = strdup(id)) || kube_conn_copy(&op->conn, conn) < 0) {
        if (op)
            free(op->id);
        free(op);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    op->type = KUBE_OP_ADD;
    op->mask = res_mask;
    return kube_queue(w, op);
}

int kube_watcher_remove_cluster(kube_watcher_t *w, const char *id)
{
    pthread_mutex_lock(&w->mu);
    bool known = kube_find(w, id) >= 0;
    for (kube_op_t *o = w->ops; o && !known; o = o->next)
        known = o->type == KUBE_OP_ADD && strcmp(o->id, id) == 0;
    pthread_mutex_unlock(&w->mu);
    if (!known)
        return -1;
    kube_op_t *op = calloc(1, sizeof(*op));
    if (!op || !(op->id = strdup(id))) {
        free(op);
        return -1;
    }
    op->type = KUBE_OP_REMOVE;
    return kube_queue(w, op);
}

int kube_watcher_start(kube_watcher_t *w)
{
    if (w->started)
        return -1;
    atomic_store(&w->stop, false);
    if (pthread_create(&w->thread, NULL, kube_io_main, w) != 0)
        return -1;
    w->started = true;
    return 0;
}

void kube_watcher_stop(kube_watcher_t *w)
{
    if (!w || !w->started)
        return;
    atomic_store(&w->stop, true);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    w->started = false;
}

void kube_watcher_free(kube_watcher_t *w)
{
    if (!w)
        return;
    kube_watcher_stop(w);
    for (size_t i = 0; i < w->nclusters; i++)
        kube_cluster_free(w->clusters[i]);
    free(w->clusters);
    for (kube_op_t *op = w->ops, *next; op; op = next) {
        next = op->next;
        kube_op_free(op);
    }
    if (w->multi)
        curl_multi_cleanup(w->multi);
    pthread_mutex_destroy(&w->mu);
    free(w->system_namespace);
    free(w);
    curl_global_cleanup(); /* pairs with the init in kube_watcher_new */
}

void kube_watcher_set_list_limits(kube_watcher_t *w, unsigned max_pages, size_t max_objects)
{
    if (max_pages)
        w->max_list_pages = max_pages;
    if (max_objects)
        w->max_list_objects = max_objects;
}

void kube_watcher_stats(kube_watcher_t *w, kube_stats_t *out)
{
    out->lists = atomic_load(&w->st[KUBE_ST_LISTS]);
    out->watches = atomic_load(&w->st[KUBE_ST_WATCHES]);
    out->relists = atomic_load(&w->st[KUBE_ST_RELISTS]);
    out->watch_restarts = atomic_load(&w->st[KUBE_ST_RESTARTS]);
    out->bookmarks = atomic_load(&w->st[KUBE_ST_BOOKMARKS]);
    out->events = atomic_load(&w->st[KUBE_ST_EVENTS]);
    out->errors = atomic_load(&w->st[KUBE_ST_ERRORS]);
    out->decode_errors = atomic_load(&w->st[KUBE_ST_DECODE]);
    out->throttled = atomic_load(&w->st[KUBE_ST_THROTTLED]);
    out->short_watches = atomic_load(&w->st[KUBE_ST_SHORT_WATCHES]);
    out->list_limits = atomic_load(&w->st[KUBE_ST_LIST_LIMITS]);
    out->bad_objects = atomic_load(&w->st[KUBE_ST_BAD_OBJECTS]);
    out->forbidden = atomic_load(&w->st[KUBE_ST_FORBIDDEN]);
}

int kube_watcher_cluster_status(kube_watcher_t *w, const char *id, bool *synced, bool *stale)
{
    pthread_mutex_lock(&w->mu);
    ssize_t i = kube_find(w, id);
    if (i >= 0) {
        *synced = w->clusters[i]->synced;
        *stale = w->clusters[i]->stale;
    }
    pthread_mutex_unlock(&w->mu);
    return i >= 0 ? 0 : -1;
}

int kube_watcher_cluster_info(kube_watcher_t *w, const char *id, kube_cluster_info_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->mu);
    ssize_t i = kube_find(w, id);
    if (i >= 0) {
        const kube_cluster_t *cl = w->clusters[i];
        *out = (kube_cluster_info_t){cl->synced, cl->stale, cl->forbidden, cl->absent};
    }
    pthread_mutex_unlock(&w->mu);
    return i >= 0 ? 0 : -1;
}

int kube_watcher_conn(kube_watcher_t *w, const char *id, kube_conn_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc = -1;
    pthread_mutex_lock(&w->mu);
    /* an add not applied yet by the I/O thread is the newest conn */
    ssize_t i = kube_find(w, id);
    const kube_conn_t *c = i >= 0 ? &w->clusters[i]->conn : NULL;
    for (const kube_op_t *op = w->ops; op; op = op->next)
        if (strcmp(op->id, id) == 0)
            c = op->type == KUBE_OP_ADD ? &op->conn : NULL;
    if (c)
        rc = kube_conn_copy(out, c);
    pthread_mutex_unlock(&w->mu);
    return rc;
}
