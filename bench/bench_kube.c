/*
 * bench_kube.c - initial sync throughput of the Kubernetes watcher.
 *
 * Serves 100,000 EndpointSlices and 100,000 Pods (pre-rendered list pages of
 * 500, as the API server pages them) from a minimal in-process HTTP server,
 * so that the figure is the client's: curl, JSON parsing, the informer's
 * cache and kube_obj_decode into model objects. Prints objects/s from the
 * start until both informers report SYNCED, and the resident memory after
 * sync. Twice: with compact objects (only what meshfed reads), and with
 * objects the size `kubectl get -o json` shows for a typical Deployment's
 * pod (containers, probes, volumes, managedFields: about 4 KiB).
 * Each shape is synced over plain HTTP/1.1 and then, when node is installed,
 * over TLS with HTTP/2 as real API servers serve it (bench/h2pages.js with
 * the test CA of tests/lib/fakekube.c; libcurl picks h2 by ALPN and carries
 * both lists and watches on one connection), next to each other.
 * Usage: bench_kube [objects-per-kind]
 */
#include "kube.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 500

typedef struct pages {
    char **body;
    size_t n;
} pages_t;

static pages_t slices, pods;
static int listen_fd;
static atomic_int stop_server;

static char *item_slice(int i)
{
    char *s = malloc(1024);
    snprintf(s, 1024,
             "{\"metadata\":{\"name\":\"svc%d-abcde\",\"namespace\":\"ns%d\",\"resourceVersion\":"
             "\"%d\",\"labels\":{\"kubernetes.io/service-name\":\"svc%d\"}},\"addressType\":"
             "\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],"
             "\"endpoints\":[{\"addresses\":[\"10.%d.%d.%d\"],\"conditions\":{\"ready\":true},"
             "\"nodeName\":\"node-%d\",\"zone\":\"zone-a\",\"targetRef\":{\"kind\":\"Pod\","
             "\"name\":\"pod%d\",\"namespace\":\"ns%d\"}}]}",
             i, i % 50, i + 10, i, (i >> 16) & 255, (i >> 8) & 255, i & 255, i % 100, i, i % 50);
    return s;
}

static char *item_pod(int i)
{
    char *s = malloc(1024);
    snprintf(s, 1024,
             "{\"metadata\":{\"name\":\"pod%d\",\"namespace\":\"ns%d\",\"uid\":\"u-%d\","
             "\"resourceVersion\":\"%d\",\"labels\":{\"app\":\"svc%d\",\"pod-template-hash\":"
             "\"7d9f8\"}},\"spec\":{\"nodeName\":\"node-%d\",\"serviceAccountName\":\"sa%d\"},"
             "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.%d.%d.%d\",\"podIPs\":[{\"ip\":"
             "\"10.%d.%d.%d\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
             i, i % 50, i, i + 10, i, i % 100, i % 50, (i >> 16) & 255, (i >> 8) & 255, i & 255,
             (i >> 16) & 255, (i >> 8) & 255, i & 255);
    return s;
}

/* What a real API server sends for a Deployment's pod and its slice:
 * everything meshfed skips over (managedFields, containers, volumes). */
static char *item_pod_full(int i)
{
    char *s = malloc(8192);
    int a = (i >> 16) & 255, b = (i >> 8) & 255, c = i & 255;
    snprintf(
        s, 8192,
        "{\"metadata\":{\"name\":\"web-7d9f8c6b5-pod%d\",\"generateName\":\"web-7d9f8c6b5-\","
        "\"namespace\":\"ns%d\",\"uid\":\"5f1e2d3c-4b5a-6978-8a9b-%012d\",\"resourceVersion\":"
        "\"%d\",\"creationTimestamp\":\"2026-11-20T10:11:12Z\",\"labels\":{\"app\":\"svc%d\","
        "\"pod-template-hash\":\"7d9f8c6b5\",\"service.istio.io/canonical-name\":\"svc%d\","
        "\"service.istio.io/canonical-revision\":\"v1\",\"version\":\"v1\"},\"annotations\":{"
        "\"ambient.istio.io/redirection\":\"enabled\",\"kubectl.kubernetes.io/restartedAt\":"
        "\"2026-11-20T10:00:00Z\",\"prometheus.io/port\":\"9090\",\"prometheus.io/scrape\":"
        "\"true\"},\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
        "\"name\":\"web-7d9f8c6b5\",\"uid\":\"0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\","
        "\"controller\":true,\"blockOwnerDeletion\":true}],\"managedFields\":[{\"manager\":"
        "\"kube-controller-manager\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":"
        "\"2026-11-20T10:11:12Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{"
        "\"f:generateName\":{},\"f:labels\":{\".\":{},\"f:app\":{},\"f:pod-template-hash\":{},"
        "\"f:version\":{}},\"f:ownerReferences\":{\".\":{},\"k:{\\\"uid\\\":\\\"0a1b2c3d\\\"}\""
        ":{}}},\"f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":\\\"app\\\"}\":{\".\":{},"
        "\"f:image\":{},\"f:imagePullPolicy\":{},\"f:name\":{},\"f:ports\":{},\"f:resources\":{}"
        "}},\"f:dnsPolicy\":{},\"f:enableServiceLinks\":{},\"f:restartPolicy\":{}}}},{\"manager\":"
        "\"kubelet\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":"
        "\"2026-11-20T10:11:20Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:status\":{"
        "\"f:conditions\":{},\"f:containerStatuses\":{},\"f:hostIP\":{},\"f:phase\":{},"
        "\"f:podIP\":{},\"f:podIPs\":{},\"f:startTime\":{}}},\"subresource\":\"status\"}]},"
        "\"spec\":{\"volumes\":[{\"name\":\"kube-api-access-x7k2p\",\"projected\":{\"sources\":"
        "[{\"serviceAccountToken\":{\"expirationSeconds\":3607,\"path\":\"token\"}},"
        "{\"configMap\":{\"name\":\"kube-root-ca.crt\",\"items\":[{\"key\":\"ca.crt\",\"path\":"
        "\"ca.crt\"}]}},{\"downwardAPI\":{\"items\":[{\"path\":\"namespace\",\"fieldRef\":{"
        "\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.namespace\"}}]}}],\"defaultMode\":420}}],"
        "\"containers\":[{\"name\":\"app\",\"image\":\"registry.example.com/team/web:1.24.3\","
        "\"args\":[\"--port=8080\",\"--log-level=info\"],\"ports\":[{\"name\":\"http\","
        "\"containerPort\":8080,\"protocol\":\"TCP\"},{\"name\":\"metrics\",\"containerPort\":"
        "9090,\"protocol\":\"TCP\"}],\"env\":[{\"name\":\"POD_NAME\",\"valueFrom\":{"
        "\"fieldRef\":{\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.name\"}}},{\"name\":"
        "\"GOMAXPROCS\",\"value\":\"2\"}],\"resources\":{\"limits\":{\"cpu\":\"1\",\"memory\":"
        "\"512Mi\"},\"requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}},\"volumeMounts\":[{"
        "\"name\":\"kube-api-access-x7k2p\",\"readOnly\":true,\"mountPath\":"
        "\"/var/run/secrets/kubernetes.io/serviceaccount\"}],\"readinessProbe\":{\"httpGet\":{"
        "\"path\":\"/ready\",\"port\":8080,\"scheme\":\"HTTP\"},\"periodSeconds\":10,"
        "\"timeoutSeconds\":1,\"successThreshold\":1,\"failureThreshold\":3},"
        "\"terminationMessagePath\":"
        "\"/dev/termination-log\",\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":"
        "\"IfNotPresent\"}],\"restartPolicy\":\"Always\",\"terminationGracePeriodSeconds\":30,"
        "\"dnsPolicy\":\"ClusterFirst\",\"serviceAccountName\":\"sa%d\",\"serviceAccount\":\"sa%"
        "d\","
        "\"nodeName\":\"node-%d\",\"securityContext\":{},\"schedulerName\":\"default-scheduler\","
        "\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\","
        "\"effect\":\"NoExecute\",\"tolerationSeconds\":300},{\"key\":"
        "\"node.kubernetes.io/unreachable\",\"operator\":\"Exists\",\"effect\":\"NoExecute\","
        "\"tolerationSeconds\":300}],\"priority\":0,\"enableServiceLinks\":true,"
        "\"preemptionPolicy\":\"PreemptLowerPriority\"},\"status\":{\"phase\":\"Running\","
        "\"conditions\":[{\"type\":\"PodReadyToStartContainers\",\"status\":\"True\","
        "\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-11-20T10:11:14Z\"},{\"type\":"
        "\"Initialized\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":"
        "\"2026-11-20T10:11:12Z\"},{\"type\":\"Ready\",\"status\":\"True\",\"lastProbeTime\":"
        "null,\"lastTransitionTime\":\"2026-11-20T10:11:20Z\"},{\"type\":\"ContainersReady\","
        "\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":"
        "\"2026-11-20T10:11:20Z\"},{\"type\":\"PodScheduled\",\"status\":\"True\","
        "\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-11-20T10:11:12Z\"}],\"hostIP\":"
        "\"192.168.%d.%d\",\"hostIPs\":[{\"ip\":\"192.168.%d.%d\"}],\"podIP\":\"10.%d.%d.%d\","
        "\"podIPs\":[{\"ip\":\"10.%d.%d.%d\"}],\"startTime\":\"2026-11-20T10:11:12Z\","
        "\"containerStatuses\":[{\"name\":\"app\",\"state\":{\"running\":{\"startedAt\":"
        "\"2026-11-20T10:11:15Z\"}},\"lastState\":{},\"ready\":true,\"restartCount\":0,"
        "\"image\":\"registry.example.com/team/web:1.24.3\",\"imageID\":"
        "\"registry.example.com/team/"
        "web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
        "\"containerID\":\"containerd://"
        "4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce\","
        "\"started\":true}],\"qosClass\":\"Burstable\"}}",
        i, i % 50, i, i + 10, i % 2000, i % 2000, i % 50, i % 50, i % 100, (i % 100) / 250, i % 100,
        (i % 100) / 250, i % 100, a, b, c, a, b, c);
    return s;
}

static char *item_slice_full(int i)
{
    char *s = malloc(4096);
    snprintf(
        s, 4096,
        "{\"metadata\":{\"name\":\"svc%d-x7k2p\",\"generateName\":\"svc%d-\",\"namespace\":"
        "\"ns%d\",\"uid\":\"7c6b5a49-3827-1605-f4e3-%012d\",\"resourceVersion\":\"%d\","
        "\"generation\":3,\"creationTimestamp\":\"2026-11-20T10:11:12Z\",\"labels\":{"
        "\"app\":\"svc%d\",\"endpointslice.kubernetes.io/managed-by\":"
        "\"endpointslice-controller.k8s.io\",\"kubernetes.io/service-name\":\"svc%d\"},"
        "\"annotations\":{\"endpoints.kubernetes.io/last-change-trigger-time\":"
        "\"2026-11-20T10:11:20Z\"},\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":"
        "\"Service\",\"name\":\"svc%d\",\"uid\":\"1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901\","
        "\"controller\":true,\"blockOwnerDeletion\":true}],\"managedFields\":[{\"manager\":"
        "\"kube-controller-manager\",\"operation\":\"Update\",\"apiVersion\":"
        "\"discovery.k8s.io/v1\",\"time\":\"2026-11-20T10:11:20Z\",\"fieldsType\":\"FieldsV1\","
        "\"fieldsV1\":{\"f:addressType\":{},\"f:endpoints\":{},\"f:metadata\":{"
        "\"f:annotations\":{},\"f:generateName\":{},\"f:labels\":{},\"f:ownerReferences\":{}},"
        "\"f:ports\":{}}}]},\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":["
        "\"10.%d.%d.%d\"],\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":"
        "false},\"nodeName\":\"node-%d\",\"zone\":\"zone-a\",\"targetRef\":{\"kind\":\"Pod\","
        "\"namespace\":\"ns%d\",\"name\":\"web-7d9f8c6b5-pod%d\",\"uid\":"
        "\"5f1e2d3c-4b5a-6978-8a9b-%012d\"}}],\"ports\":[{\"name\":\"http\",\"protocol\":"
        "\"TCP\",\"port\":8080},{\"name\":\"metrics\",\"protocol\":\"TCP\",\"port\":9090}]}",
        i, i, i % 50, i, i + 10, i % 2000, i, i, (i >> 16) & 255, (i >> 8) & 255, i & 255, i % 100,
        i % 50, i, i);
    return s;
}

static void pages_free(pages_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->body[i]);
    free(p->body);
    p->body = NULL;
    p->n = 0;
}

static void render(pages_t *p, int n, const char *kind, const char *api, char *(*item)(int))
{
    p->n = (size_t)(n + PAGE - 1) / PAGE;
    p->body = calloc(p->n, sizeof(char *));
    for (size_t pg = 0; pg < p->n; pg++) {
        size_t cap = PAGE * 8300 + 512, len = 0;
        char *b = malloc(cap);
        len += (size_t)snprintf(b, cap,
                                "{\"kind\":\"%sList\",\"apiVersion\":\"%s\",\"metadata\":{"
                                "\"resourceVersion\":\"%d\"",
                                kind, api, n + 100);
        if (pg + 1 < p->n)
            len += (size_t)snprintf(b + len, cap - len, ",\"continue\":\"%zu\"", pg + 1);
        len += (size_t)snprintf(b + len, cap - len, "},\"items\":[");
        for (int i = (int)pg * PAGE; i < n && i < (int)(pg + 1) * PAGE; i++) {
            char *it = item(i);
            len += (size_t)snprintf(b + len, cap - len, "%s%s", i % PAGE ? "," : "", it);
            free(it);
        }
        snprintf(b + len, cap - len, "]}");
        p->body[pg] = realloc(b, len + 3);
    }
}

static void send_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* One connection: answer list pages; hold watches open with no events. */
static void *conn_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192];
    for (;;) {
        size_t n = 0;
        while (n < sizeof(req) - 1) {
            ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);
            if (r <= 0)
                goto out;
            n += (size_t)r;
            req[n] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        char path[4096] = "";
        sscanf(req, "GET %4095s", path);
        if (strstr(path, "watch=")) {
            const char *h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n";
            send_all(fd, h, strlen(h));
            while (!atomic_load(&stop_server))
                usleep(100000);
            goto out;
        }
        pages_t *p = strstr(path, "endpointslices") ? &slices
                     : strstr(path, "/pods")        ? &pods
                                                    : NULL;
        const char *c = strstr(path, "continue=");
        size_t pg = c ? (size_t)atoi(c + 9) : 0;
        const char *body = p && pg < p->n ? p->body[pg]
                                          : "{\"kind\":\"List\",\"apiVersion\":\"v1\",\"metadata\":"
                                            "{\"resourceVersion\":\"1\"},\"items\":[]}";
        char h[256];
        snprintf(h, sizeof(h),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 strlen(body));
        send_all(fd, h, strlen(h));
        send_all(fd, body, strlen(body));
    }
out:
    close(fd);
    return NULL;
}

static void *server_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        pthread_create(&t, NULL, conn_thread, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

typedef struct counts {
    atomic_long objects, errors;
    atomic_int synced;
} counts_t;

static void on_event(void *arg, const char *cluster, kube_res_t res, kube_ev_t ev,
                     const kube_obj_t *obj, const char *msg)
{
    (void)cluster;
    (void)msg;
    counts_t *c = arg;
    if (ev == KUBE_EV_SYNCED && (res == KUBE_RES_ENDPOINTSLICES || res == KUBE_RES_PODS))
        atomic_fetch_add(&c->synced, 1);
    if (ev != KUBE_EV_ADDED || !obj)
        return;
    model_kind_t k = res == KUBE_RES_PODS ? MODEL_KIND_POD : MODEL_KIND_ENDPOINTSLICE;
    void *o;
    char err[256];
    if (kube_obj_decode(k, obj, &o, err, sizeof(err)) < 0) {
        atomic_fetch_add(&c->errors, 1);
        return;
    }
    model_obj_free(k, o);
    atomic_fetch_add(&c->objects, 1);
}

/* Where a run's pages are served: the in-process HTTP/1.1 server, or, over
 * TLS with HTTP/2, bench/h2pages.js under node with the fakekube test CA. */
typedef struct front {
    tl_fakekube_t fk; /* its dir: the certificates and the pages */
    pid_t pid;
    int to_child, from_child;
    char url[64];
} front_t;

static bool write_pages(const char *dir, const char *kind, const pages_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s.%zu.json", dir, kind, i);
        FILE *f = fopen(path, "w");
        if (!f)
            return false;
        bool ok = fputs(p->body[i], f) >= 0;
        if (fclose(f) != 0 || !ok)
            return false;
    }
    return true;
}

static void remove_pages(const char *dir, const char *kind, const pages_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s.%zu.json", dir, kind, i);
        unlink(path);
    }
}

/* Starts node on the pages rendered now; false (with a reason) if it cannot. */
static bool front_start(front_t *fr)
{
    char cert[128], key[128], line[128] = "";
    snprintf(cert, sizeof(cert), "%s/server.crt", fr->fk.dir);
    snprintf(key, sizeof(key), "%s/server.key", fr->fk.dir);
    if (!write_pages(fr->fk.dir, "endpointslices", &slices) ||
        !write_pages(fr->fk.dir, "pods", &pods)) {
        fprintf(stderr, "bench_kube: writing the pages to %s failed\n", fr->fk.dir);
        return false;
    }
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        return false;
    fr->pid = fork();
    if (fr->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execlp("node", "node", MESHFED_BENCH_DIR "/h2pages.js", cert, key, fr->fk.dir, (char *)0);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fr->to_child = in[1];
    fr->from_child = out[0];
    int port = 0;
    for (size_t n = 0; fr->pid > 0 && n < sizeof(line) - 1;) {
        struct pollfd p = {.fd = fr->from_child, .events = POLLIN};
        if (poll(&p, 1, 30000) != 1 || read(fr->from_child, line + n, 1) != 1)
            break;
        if (line[n++] == '\n' && sscanf(line, "port %d", &port) == 1)
            break;
    }
    if (port <= 0) {
        fprintf(stderr, "bench_kube: h2pages.js did not start\n");
        return false;
    }
    snprintf(fr->url, sizeof(fr->url), "https://127.0.0.1:%d", port);
    return true;
}

/* Stops node; its "sessions S streams T" line into stats. */
static void front_stop(front_t *fr, char *stats, size_t len)
{
    close(fr->to_child);
    FILE *f = fdopen(fr->from_child, "r");
    stats[0] = '\0';
    if (f && fgets(stats, (int)len, f))
        stats[strcspn(stats, "\n")] = '\0';
    if (f)
        fclose(f);
    waitpid(fr->pid, NULL, 0);
    remove_pages(fr->fk.dir, "endpointslices", &slices);
    remove_pages(fr->fk.dir, "pods", &pods);
}

/* One initial sync of the rendered pages; objects/s, or -1 on failure. */
static double run(const char *what, int n, const kube_conn_t *conn)
{
    size_t bytes = 0;
    for (size_t i = 0; i < slices.n; i++)
        bytes += strlen(slices.body[i]) + strlen(pods.body[i]);
    counts_t c;
    atomic_init(&c.objects, 0);
    atomic_init(&c.errors, 0);
    atomic_init(&c.synced, 0);
    long rss0 = tl_rss_kb();
    kube_watcher_t *w = kube_watcher_new(on_event, &c, "istio-system", 0);
    char err[256];
    if (kube_watcher_add_cluster(
            w, "bench", conn, KUBE_RES_BIT(KUBE_RES_ENDPOINTSLICES) | KUBE_RES_BIT(KUBE_RES_PODS),
            err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    double t0 = tl_now();
    kube_watcher_start(w);
    while (atomic_load(&c.synced) < 2 && tl_now() - t0 < 120)
        usleep(1000);
    double t1 = tl_now();
    long rss1 = tl_rss_kb();
    long objs = atomic_load(&c.objects);
    printf("%s objects (%.0f bytes of JSON each on average):\n", what, (double)bytes / (2.0 * n));
    printf("  initial sync: %ld objects (%d EndpointSlices + %d Pods) in %.2f s = %.0f objects/s, "
           "%.0f MB/s (list, parse, cache, decode; one I/O thread)\n",
           objs, n, n, t1 - t0, (double)objs / (t1 - t0), (double)bytes / 1e6 / (t1 - t0));
    printf("  decode errors: %ld\n", atomic_load(&c.errors));
    printf("  resident memory added by the watcher after sync: %.1f MiB (%.0f bytes per object; "
           "the informer keeps key -> resourceVersion)\n",
           (double)(rss1 - rss0) / 1024.0, (double)(rss1 - rss0) * 1024.0 / (double)objs);
    kube_watcher_free(w);
    bool ok = objs == 2L * n && atomic_load(&c.errors) == 0;
    return ok ? (double)objs / (t1 - t0) : -1;
}

/* The same objects over plain HTTP/1.1 and then, when node is there, over
 * TLS with HTTP/2; false if a sync fell short. */
static bool shape(const char *what, int n, const char *plain_url, front_t *fr, char *(*slice)(int),
                  char *(*pod)(int))
{
    render(&slices, n, "EndpointSlice", "discovery.k8s.io/v1", slice);
    render(&pods, n, "Pod", "v1", pod);
    char label[128];
    snprintf(label, sizeof(label), "%s, HTTP/1.1,", what);
    kube_conn_t plain = {.server = (char *)plain_url, .token = "bench"};
    double h1 = run(label, n, &plain), h2 = 0;
    bool ok = h1 > 0;
    if (!fr)
        printf("  %s over TLS + HTTP/2: skipped (node is not installed)\n", what);
    else if (front_start(fr)) {
        char ca[128], stats[128];
        snprintf(ca, sizeof(ca), "%s/ca.crt", fr->fk.dir);
        kube_conn_t tls = {.server = fr->url, .token = "bench", .ca_file = ca};
        snprintf(label, sizeof(label), "%s, TLS + HTTP/2 (node front),", what);
        h2 = run(label, n, &tls);
        front_stop(fr, stats, sizeof(stats));
        printf("  h2 front: %s\n", stats);
        ok = h2 > 0 && ok;
    } else
        ok = false;
    if (h1 > 0 && h2 > 0)
        printf("  %s: TLS + HTTP/2 %.0f objects/s vs HTTP/1.1 %.0f objects/s = %.2fx\n", what, h2,
               h1, h2 / h1);
    pages_free(&slices);
    pages_free(&pods);
    return ok;
}

static bool have_node(void)
{
    return system("node --version >/dev/null 2>&1") == 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 64) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("listen");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    pthread_t srv;
    pthread_create(&srv, NULL, server_thread, NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    front_t fr, *front = NULL;
    if (have_node()) {
        if (!tl_fk_init(&fr.fk, "bench-kube") || !tl_fk_make_certs(&fr.fk)) {
            fprintf(stderr, "bench_kube: making the test CA failed\n");
            return 1;
        }
        front = &fr;
    }
    bool ok = shape("compact", n, url, front, item_slice, item_pod);
    ok = shape("kubectl-sized", n, url, front, item_slice_full, item_pod_full) && ok;
    if (front)
        tl_fk_cleanup(&fr.fk);
    atomic_store(&stop_server, 1);
    shutdown(listen_fd, SHUT_RDWR);
    close(listen_fd);
    pthread_join(srv, NULL);
    return ok ? 0 : 1;
}
