/*
 * main.c - the meshfed program: load settings, start the model thread, the
 * sources, the xDS server and the debug endpoint; stop cleanly on SIGTERM.
 */
#include "ctl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static volatile sig_atomic_t got_signal;
static volatile sig_atomic_t got_hup;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_signal = sig;
}

/* SIGHUP: read flags, environment and config file again and apply what can
 * change while running (log level and format, debounce). The rest needs a
 * restart, which the log says. TLS files are watched by the xDS server. */
static void reload(ctl_t *c, const ctl_config_t *cur, int argc, char **argv)
{
    ctl_config_t n;
    char err[CTL_ERRLEN] = "";
    if (ctl_config_load(&n, argc, argv, err, sizeof(err)) != 0) {
        ctl_log(CTL_ERROR, "SIGHUP: configuration not reloaded: %s", err);
        ctl_config_free(&n);
        return;
    }
    ctl_log_setup(n.log_level, n.log_json);
    ctl_set_debounce(c, n.debounce_ms);
    const char *const restart[][2] = {
        {cur->cluster_id, n.cluster_id},     {cur->xds_listen, n.xds_listen},
        {cur->debug_listen, n.debug_listen}, {cur->kubeconfig, n.kubeconfig},
        {cur->demo_dir, n.demo_dir},         {cur->system_namespace, n.system_namespace},
        {cur->probe_listen, n.probe_listen},
    };
    for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++) {
        const char *a = restart[i][0] ? restart[i][0] : "", *b = restart[i][1] ? restart[i][1] : "";
        if (strcmp(a, b) != 0)
            ctl_log(CTL_WARN, "SIGHUP: \"%s\" -> \"%s\" takes effect after a restart", a, b);
    }
    ctl_log(CTL_INFO, "SIGHUP: reloaded (log level %d, debounce %d ms)", n.log_level,
            n.debounce_ms);
    ctl_config_free(&n);
}

typedef struct print_ctx {
    json_t *views;
    model_snapshot_t *snap;
} print_ctx_t;

static void print_cluster(const model_cluster_info_t *ci, void *arg)
{
    print_ctx_t *p = arg;
    model_view_t v = {ci->id, ci->network};
    json_object_set_new(p->views, ci->id, ctl_view_json(p->snap, &v));
}

static void print_views(const model_t *m, void *arg)
{
    model_each_cluster(m, print_cluster, arg);
}

/* --once: every cluster's view, as its ztunnels would receive it. */
static int run_once(ctl_t *c)
{
    print_ctx_t p = {json_object(), ctl_snapshot(c)};
    if (!p.snap) {
        fprintf(stderr, "meshfed: nothing was loaded\n");
        json_decref(p.views);
        return 1;
    }
    ctl_with_model(c, print_views, &p);
    json_dumpf(p.views, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
    json_decref(p.views);
    model_snapshot_unref(p.snap);
    return 0;
}

static void banner(const ctl_config_t *cfg, xds_server_t *x, ctl_http_t *h)
{
    int dport = ctl_http_port(h);
    ctl_log(CTL_INFO, "meshfed %s serving xDS on port %d, debug on port %d", MESHFED_VERSION,
            xds_server_port(x), dport);
    if (ctl_http_probe_port(h))
        ctl_log(CTL_INFO, "probes (/healthz, /ready) also on port %d", ctl_http_probe_port(h));
    if (!cfg->demo_dir || cfg->log_json) /* JSON logs: every line must stay JSON */
        return;
    fprintf(stderr,
            "\nmeshfed demo is running with the clusters in %s. Try:\n"
            "  curl -s localhost:%d/debug/clusterz?pretty\n"
            "  curl -s localhost:%d/debug/servicescopez?pretty\n"
            "  curl -s 'localhost:%d/debug/servicescopez?service=shop/checkout&pretty'\n"
            "  curl -s 'localhost:%d/debug/endpointz?service=bookinfo/reviews&pretty'\n"
            "  curl -s 'localhost:%d/debug/config_dump?cluster=west&network=network-west&pretty'\n"
            "  curl -s localhost:%d/metrics\n"
            "Edit a label in %s/*/cluster.yaml (e.g. istio.io/global on a Service) and\n"
            "watch the service change scope. Ctrl-C stops.\n\n",
            cfg->demo_dir, dport, dport, dport, dport, dport, dport, cfg->demo_dir);
}

/* Every start-up failure and the end after a signal leave through out:,
 * which stops whatever was started, in the order the parts depend on each
 * other (the stop and free functions take NULL). */
/* Every proxy is a connection and a file: take the soft file limit up to
 * the hard one (as Go does for istiod), since grpc core stops accepting on
 * a port for good when accept runs out of them (listen_check.c). */
static void raise_file_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return;
    rlim_t was = r.rlim_cur;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0)
            r.rlim_cur = was;
    }
    ctl_log(r.rlim_cur < 4096 ? CTL_WARN : CTL_INFO,
            "file limit %llu (was %llu): each xDS connection takes one",
            (unsigned long long)r.rlim_cur, (unsigned long long)was);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "create-remote-secret") == 0)
        return ctl_create_remote_secret(argc - 1, argv + 1);
    ctl_config_t cfg;
    char err[CTL_ERRLEN] = "";
    ctl_t *c = NULL;
    ctl_demo_t *demo = NULL;
    ctl_kube_t *kube = NULL;
    ctl_auth_t *auth = NULL;
    ctl_ca_t *ca = NULL;
    xds_ca_t *first_ca = NULL;
    xds_server_t *x = NULL;
    ctl_http_t *h = NULL;
    int rc = ctl_config_load(&cfg, argc, argv, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "meshfed: %s\n", err);
        rc = rc < 0 ? 2 : 0;
        goto out;
    }
    ctl_log_setup(cfg.log_level, cfg.log_json);
    raise_file_limit();
    /* Block the signals before any thread starts (threads inherit the mask):
     * only the main thread takes them, inside sigsuspend, so none is lost
     * between the check and the wait. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    if (cfg.once && !cfg.demo_dir) {
        fprintf(stderr, "meshfed: --once needs --demo DIR\n");
        rc = 2;
        goto out;
    }
    c = ctl_new(&cfg, err, sizeof(err));
    if (!c || ctl_start(c) < 0) {
        fprintf(stderr, "meshfed: %s\n", err);
        rc = 1;
        goto out;
    }
    if (cfg.demo_dir)
        demo = ctl_demo_start(c, cfg.demo_dir, err, sizeof(err));
    else
        kube = ctl_kube_start(c, err, sizeof(err));
    if (!demo && !kube) {
        fprintf(stderr, "meshfed: %s\n", err);
        rc = 2;
        goto out;
    }
    ctl_set_kube(c, kube);
    ctl_flush(c);
    if (cfg.once) {
        rc = run_once(c);
        goto out;
    }
    if (strcmp(cfg.xds_auth, "jwt") == 0 &&
        !(auth = kube ? ctl_auth_new(&cfg, ctl_kube_conn, kube, err, sizeof(err)) : NULL)) {
        fprintf(stderr, "meshfed: %s\n",
                kube ? err : "xds-auth jwt needs Kubernetes clusters (not --demo)");
        rc = 2;
        goto out;
    }
    if (cfg.ca_enabled && !(ca = ctl_ca_new(c, &cfg, &first_ca, err, sizeof(err)))) {
        fprintf(stderr, "meshfed: %s\n", err);
        rc = 2;
        goto out;
    }
    char *serving_chain = NULL, *serving_key = NULL;
    if (ca && cfg.xds_tls_listen && !cfg.tls_cert &&
        ctl_ca_serving(ca, first_ca, &serving_chain, &serving_key, err, sizeof(err)) < 0) {
        fprintf(stderr, "meshfed: %s\n", err);
        rc = 2;
        goto out;
    }
    if (cfg.ca_enabled && !cfg.xds_tls_listen)
        ctl_log(CTL_WARN, "CA on without xds-tls-listen: tokens and certificates cross the "
                          "network in clear");
    if (!auth && !cfg.demo_dir)
        ctl_log(CTL_WARN, "xDS clients are not authenticated (--xds-auth none): any client that "
                          "reaches the xDS port can read any cluster's view");
    /* what istioctl proxy-status shows as this replica (istiod's shape:
     * component, instance, version) */
    char host[256] = "", cp[512];
    const char *pod = getenv("POD_NAME");
    if (!pod || !*pod)
        pod = gethostname(host, sizeof(host) - 1) == 0 ? host : "";
    json_t *cpj = json_pack("{s:s, s:s, s:{s:s}}", "Component", "meshfed", "ID", pod, "Info",
                            "version", MESHFED_VERSION);
    char *cps = cpj ? json_dumps(cpj, JSON_COMPACT) : NULL;
    snprintf(cp, sizeof(cp), "%s", cps ? cps : "{}");
    free(cps);
    json_decref(cpj);
    xds_config_t xc = {.listen = cfg.xds_listen,
                       .tls_listen = cfg.xds_tls_listen,
                       .tls_cert_file = cfg.tls_cert,
                       .tls_key_file = cfg.tls_key,
                       .tls_cert_pem = serving_chain,
                       .tls_key_pem = serving_key,
                       .network_of = ctl_network_of,
                       .network_of_arg = c,
                       .authenticate = auth ? ctl_auth_authenticate : NULL,
                       .authenticate_arg = auth,
                       .trust_domain = cfg.trust_domain,
                       .log = ctl_xds_log,
                       .control_plane = cp,
                       .local_cluster = cfg.cluster_id,
                       .ca = first_ca,
                       .node_authorize = ca ? ctl_ca_node_authorize : NULL,
                       .node_authorize_arg = ca,
                       .max_connection_age_ms = cfg.xds_conn_age_ms,
                       .max_connection_age_grace_ms = cfg.xds_conn_age_grace_ms};
    x = xds_server_new(&xc, err, sizeof(err));
    first_ca = NULL; /* the server's now, even when it failed */
    if (serving_key)
        memset(serving_key, 0, strlen(serving_key));
    free(serving_key);
    free(serving_chain);
    h = x ? ctl_http_start(c, cfg.debug_listen, err, sizeof(err)) : NULL;
    if (!x || !h || xds_server_start(x) < 0 || (ca && ctl_ca_watch(ca, x) < 0)) {
        fprintf(stderr, "meshfed: %s\n", err);
        rc = 1;
        goto out;
    }
    ctl_set_xds(c, x);
    model_snapshot_t *s = ctl_snapshot(c);
    if (s)
        xds_server_publish(x, s);
    model_snapshot_unref(s);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    banner(&cfg, x, h);
    while (!got_signal) {
        sigsuspend(&old);
        if (got_hup) {
            got_hup = 0;
            reload(c, &cfg, argc, argv);
        }
    }
    ctl_log(CTL_INFO, "signal %d: draining xDS streams and stopping", (int)got_signal);
    rc = 0;
out:
    ctl_auth_stop(auth); /* before the clusters' connections go */
    ctl_ca_stop(ca);     /* it swaps x's CA and feeds the clusters' root publisher */
    ctl_demo_stop(demo);
    if (c) {
        ctl_set_kube(c, NULL);
        ctl_kube_stop(kube);
        ctl_stop(c);
        ctl_set_xds(c, NULL);
    }
    xds_ca_free(first_ca);
    if (x)
        xds_server_shutdown(x, 5000);
    ctl_http_stop(h);
    xds_server_free(x);
    ctl_ca_free(ca); /* its node authorization served x's calls */
    ctl_auth_free(auth);
    ctl_free(c);
    ctl_config_free(&cfg);
    return rc;
}
