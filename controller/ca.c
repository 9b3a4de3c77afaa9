/*
 * ca.c - meshfed's workload CA as the program runs it (docs/ca.md): loads
 * --cacerts-dir (or makes a self-signed root, loudly), reloads the directory
 * when its files change, and answers the xDS server's node authorization
 * from the model's pods.
 *
 * A mounted Secret changes by an atomic swap of a symlink, so the files are
 * compared by what stat() sees through them (inode, size, mtime); a change
 * is loaded once it stayed the same for one poll, so a directory caught
 * half-written is not read. A cacerts that does not load keeps the old CA.
 */
#include "base.h"
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CA_POLL_MS 1000
#define CA_SELF_SIGNED_TTL_S (10LL * 365 * 86400) /* istiod's self-signed root: 10 years */

static const char *const cacerts_files[] = {"ca-cert.pem", "ca-key.pem", "cert-chain.pem",
                                            "root-cert.pem"};

struct ctl_ca {
    ctl_t *ctl;
    char *dir;      /* NULL: self-signed, nothing to watch */
    char *accounts; /* --ca-node-accounts */
    xds_ca_opts_t opts;
    xds_server_t *xds;
    uint64_t seen; /* signature of the files loaded (or last failed) */
    pthread_t thr;
    bool started, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* What stat() sees of the four files, hashed; 0 when one is missing. */
static uint64_t dir_signature(const char *dir)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof(cacerts_files) / sizeof(cacerts_files[0]); i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, cacerts_files[i]);
        if (stat(path, &st) != 0)
            return 0;
        uint64_t v[4] = {(uint64_t)st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
                         (uint64_t)st.st_mtim.tv_nsec};
        h = base_hash_more(h, v, sizeof(v));
    }
    return h ? h : 1;
}

static xds_ca_t *load(ctl_ca_t *a, char *err, size_t errlen)
{
    xds_ca_t *ca = NULL;
    char buf[CTL_ERRLEN / 2]; /* room left in err for the directory */
    int rc = xds_ca_load_dir(a->dir, &a->opts, &ca, buf, sizeof(buf));
    if (rc != XDS_CA_OK) {
        snprintf(err, errlen, "cacerts-dir %s: %s: %s", a->dir, xds_ca_strerror(rc), buf);
        return NULL;
    }
    atomic_fetch_add(&ctl_metrics.ca_loads, 1);
    return ca;
}

static void *watcher(void *arg)
{
    ctl_ca_t *a = arg;
    uint64_t pending = a->seen;
    pthread_mutex_lock(&a->mu);
    while (!a->quit) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += CA_POLL_MS / 1000;
        pthread_cond_timedwait(&a->cv, &a->mu, &dl);
        if (a->quit)
            break;
        pthread_mutex_unlock(&a->mu);
        uint64_t sig = dir_signature(a->dir);
        if (sig && sig != a->seen && sig == pending) { /* changed, then stayed */
            char err[CTL_ERRLEN];
            xds_ca_t *ca = load(a, err, sizeof(err));
            a->seen = sig;
            if (ca) {
                xds_server_set_ca(a->xds, ca);
                ctl_log(CTL_INFO, "cacerts-dir %s reloaded: new certificates sign with it", a->dir);
            } else {
                atomic_fetch_add(&ctl_metrics.ca_load_errors, 1);
                ctl_log(CTL_ERROR, "%s; the previous CA keeps signing", err);
            }
        }
        pending = sig;
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

ctl_ca_t *ctl_ca_new(ctl_t *c, const ctl_config_t *cfg, xds_ca_t **first, char *err, size_t errlen)
{
    ctl_ca_t *a = calloc(1, sizeof(*a));
    if (!a || !(a->accounts = strdup(cfg->ca_node_accounts ? cfg->ca_node_accounts : "")) ||
        (cfg->cacerts_dir && !(a->dir = strdup(cfg->cacerts_dir)))) {
        snprintf(err, errlen, "ca: out of memory");
        ctl_ca_free(a);
        return NULL;
    }
    a->ctl = c;
    a->opts = (xds_ca_opts_t){cfg->ca_default_ttl_s, cfg->ca_max_ttl_s};
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    char buf[CTL_ERRLEN];
    if (a->dir) {
        a->seen = dir_signature(a->dir);
        *first = load(a, err, errlen);
    } else {
        int rc = xds_ca_new_self_signed(cfg->trust_domain, CA_SELF_SIGNED_TTL_S, &a->opts, first,
                                        buf, sizeof(buf));
        if (rc != XDS_CA_OK)
            snprintf(err, errlen, "ca: cannot make a self-signed root: %s", buf);
        else
            ctl_log(CTL_WARN,
                    "CA: no --cacerts-dir: signing workload certificates with a SELF-SIGNED "
                    "root made at start. No other cluster (and no other meshfed replica, and "
                    "not this one after a restart) trusts it: for a multicluster mesh give "
                    "every cluster the same root (docs/ca.md)");
    }
    if (!*first) {
        ctl_ca_free(a);
        return NULL;
    }
    return a;
}

int ctl_ca_watch(ctl_ca_t *a, xds_server_t *x)
{
    a->xds = x;
    if (!a->dir)
        return 0;
    if (pthread_create(&a->thr, NULL, watcher, a) != 0)
        return -1;
    a->started = true;
    return 0;
}

void ctl_ca_free(ctl_ca_t *a)
{
    if (!a)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->quit = true;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thr, NULL);
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
    }
    free(a->dir);
    free(a->accounts);
    free(a);
}

/* ---------- node authorization ---------- */

typedef struct node_q {
    const char *cluster, *caller_ns, *caller_pod, *caller_uid, *caller_sa, *ns, *sa;
    char *why;
    size_t whylen;
    const char *node; /* the caller pod's, borrowed under the model lock */
    bool found;
} node_q_t;

static void find_on_node(const void *obj, void *arg)
{
    const model_pod_t *p = obj;
    node_q_t *q = arg;
    if (!q->found && !p->terminal && p->node && strcmp(p->node, q->node) == 0 && p->ns &&
        strcmp(p->ns, q->ns) == 0 && p->service_account && strcmp(p->service_account, q->sa) == 0)
        q->found = true;
}

static void node_check(const model_t *m, void *arg)
{
    node_q_t *q = arg;
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", q->caller_ns, q->caller_pod);
    const model_pod_t *caller = model_object(m, q->cluster, MODEL_KIND_POD, key);
    if (!caller) {
        snprintf(q->why, q->whylen, "its pod %s is not known in cluster %s", key, q->cluster);
        return;
    }
    /* the model keeps no pod uid (memory): the API server already refuses a
     * pod-bound token whose pod is gone or was recreated, which is what
     * istiod's uid comparison guards against */
    if (caller->uid && strcmp(caller->uid, q->caller_uid) != 0) {
        snprintf(q->why, q->whylen, "its pod %s has another uid (recreated): retry", key);
        return;
    }
    if (!caller->service_account || strcmp(caller->service_account, q->caller_sa) != 0) {
        snprintf(q->why, q->whylen, "its pod %s runs as another service account", key);
        return;
    }
    if (!caller->node) {
        snprintf(q->why, q->whylen, "its pod %s is on no node", key);
        return;
    }
    q->node = caller->node;
    model_each_object(m, q->cluster, MODEL_KIND_POD, find_on_node, q);
    if (!q->found)
        snprintf(q->why, q->whylen, "no pod of %s/%s runs on its node %s", q->ns, q->sa, q->node);
}

bool ctl_ca_node_authorize(void *arg, const char *cluster, const char *caller_ns,
                           const char *caller_pod, const char *caller_uid, const char *caller_sa,
                           const char *ns, const char *sa, char *why, size_t whylen)
{
    ctl_ca_t *a = arg;
    if (!*a->accounts || !ctl_auth_identity_allowed(a->accounts, caller_ns, caller_sa)) {
        snprintf(why, whylen, "not a node agent (ca-node-accounts)");
        return false;
    }
    node_q_t q = {cluster, caller_ns, caller_pod, caller_uid, caller_sa, ns,
                  sa,      why,       whylen,     NULL,       false};
    ctl_with_model(a->ctl, node_check, &q);
    return q.found;
}
