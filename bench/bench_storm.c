/*
 * bench_storm.c - a reconnect storm (issue #19): every ztunnel stream
 * reconnects at once because meshfed restarted.
 *
 * The real meshfed binary serves --demo on a generated directory of two
 * clusters on two networks (c0 on n0, the config cluster, and c1 on n1), the
 * objects as an API server lists them: Namespaces, Nodes, Services (half of
 * them istio.io/global, made global by a ServiceScope), Pods and
 * EndpointSlices. A client process (forked before anything starts grpc, as
 * in bench_xds.c) opens N ztunnel-like Delta ADS streams in view of c0, one
 * connection each, ACKing every response; a stream the server drops opens a
 * new call on its channel at once (wait-for-ready, reconnect backoff from
 * 100 ms to 1 s), as a ztunnel does.
 *
 * Then meshfed is killed (SIGKILL, as a crash; then SIGTERM, a rollout) and
 * a new one started on the same ports at once. Measured from the restart:
 * when /ready first answers 200, when every stream has its full view again
 * (every stream re-opened, at the version the new meshfed publishes once its
 * commits have stopped), meshfed's peak memory (VmHWM) and settled RSS per
 * stream next to the size of one full state (a per-stream copy of it would
 * show), its CPU; and throughout, /ready and /metrics polled every 50 ms
 * (libcurl, each from its own thread): answers, the slowest, and failures.
 * What does not complete is printed, not asserted.
 *
 * Usage: bench_storm [streams=10000] [endpoints=10000] [services=500]
 *                    [signals=kill,term] [meshfed=<this dir>/../meshfed]
 */
#include "testlib.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECONNECT_MS 100    /* the clients' first reconnect backoff (at most 10x) */
#define PROBE_EVERY_MS 50   /* /ready and /metrics */
#define SETTLE_MS 1000      /* no commit for this long: meshfed has loaded everything */
#define ROUND_TIMEOUT_S 600 /* a round that has not completed by then is reported */
#define NNS 10              /* namespaces team-<k> */
#define NNODES 16           /* nodes per cluster */
#define SLICE_MAX 100       /* endpoints per EndpointSlice, as the controller caps them */
#define PODS_PER_FILE 1000  /* demo files stay well under meshfed's 16 MiB */
#define MAX_ROUNDS 8        /* the initial connect and up to 7 restarts */
/* what the probes of round r are recorded as: while the old meshfed stops,
 * until the new one's /ready first answers 200, then until every stream has
 * its full view */
#define PH_STOP(r) (3 * (r))
#define PH_START(r) (3 * (r) + 1)
#define PH_STORM(r) (3 * (r) + 2)
#define NPHASE (3 * MAX_ROUNDS)
#define NSTATUS 18 /* grpc status codes 0-16, and any other */

/* meshfed and the client process, which die() takes down too (the parent's) */
static pid_t running[2];

static void die(const char *msg)
{
    fprintf(stderr, "bench_storm: %s\n", msg);
    for (int i = 0; i < 2; i++)
        if (running[i] > 0 && running[i] != getpid())
            kill(running[i], SIGKILL);
    exit(1);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------- the demo directory: two clusters as an API server lists them ---------- */

typedef struct gen {
    const char *dir;
    int c; /* cluster */
    int nsvc, per;
} gen_t;

static FILE *gen_open(const gen_t *g, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/c%d/%s", g->dir, g->c, name);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write the demo directory");
    return f;
}

static void gen_close(FILE *f)
{
    if (ferror(f) || fclose(f) != 0)
        die("writing the demo directory");
}

static void pod_ip(char *buf, size_t len, int c, int n)
{
    snprintf(buf, len, "10.%d.%d.%d", c * 16 + n / 65536, (n / 256) % 256, n % 256);
}

static void gen_namespaces(const gen_t *g)
{
    FILE *f = gen_open(g, "namespaces.json");
    fprintf(f, "{\"kind\":\"NamespaceList\",\"apiVersion\":\"v1\",\"metadata\":{"
               "\"resourceVersion\":\"1000\"},\"items\":[");
    fprintf(f,
            "{\"metadata\":{\"name\":\"istio-system\",\"uid\":\"00000000-0000-4000-8000-%012d\","
            "\"resourceVersion\":\"10\",\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"labels\":"
            "{\"kubernetes.io/metadata.name\":\"istio-system\",\"topology.istio.io/network\":"
            "\"n%d\"}},\"spec\":{\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":"
            "\"Active\"}}",
            g->c, g->c);
    for (int k = 0; k < NNS; k++)
        fprintf(f,
                ",{\"metadata\":{\"name\":\"team-%d\",\"uid\":\"00000000-0001-4000-8000-%012d\","
                "\"resourceVersion\":\"%d\",\"creationTimestamp\":\"2026-01-01T00:00:00Z\","
                "\"labels\":{\"kubernetes.io/metadata.name\":\"team-%d\",\"istio.io/dataplane-"
                "mode\":\"ambient\"}},\"spec\":{\"finalizers\":[\"kubernetes\"]},\"status\":{"
                "\"phase\":\"Active\"}}",
                k, g->c * 100 + k, 20 + k, k);
    fprintf(f, "]}\n");
    gen_close(f);
}

static void gen_nodes(const gen_t *g)
{
    FILE *f = gen_open(g, "nodes.json");
    fprintf(f, "{\"kind\":\"NodeList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":"
               "\"1000\"},\"items\":[");
    for (int k = 0; k < NNODES; k++)
        fprintf(
            f,
            "%s{\"metadata\":{\"name\":\"c%d-node-%d\",\"uid\":\"00000000-0002-4000-8000-%012d\","
            "\"resourceVersion\":\"%d\",\"labels\":{\"kubernetes.io/hostname\":\"c%d-node-%d\","
            "\"kubernetes.io/os\":\"linux\",\"node.kubernetes.io/instance-type\":"
            "\"m6i.xlarge\",\"topology.kubernetes.io/region\":\"region-%d\","
            "\"topology.kubernetes.io/zone\":\"region-%d-%c\"}},\"spec\":{\"providerID\":"
            "\"aws:///region-%d-%c/i-0%015d\"},\"status\":{\"addresses\":[{\"type\":"
            "\"InternalIP\",\"address\":\"192.168.%d.%d\"},{\"type\":\"Hostname\",\"address\":"
            "\"c%d-node-%d\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
            k ? "," : "", g->c, k, g->c * 100 + k, 30 + k, g->c, k, g->c, g->c, 'a' + k % 3, g->c,
            'a' + k % 3, g->c * 100 + k, g->c, k + 1, g->c, k);
    fprintf(f, "]}\n");
    gen_close(f);
}

static void gen_services(const gen_t *g)
{
    FILE *f = gen_open(g, "services.json");
    fprintf(f, "{\"kind\":\"ServiceList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":"
               "\"1000\"},\"items\":[");
    /* the east-west gateway, as Istio's labelled Service form declares it */
    fprintf(f,
            "{\"metadata\":{\"name\":\"istio-eastwest\",\"namespace\":\"istio-system\",\"uid\":"
            "\"00000000-0003-4000-8000-%012d\",\"resourceVersion\":\"40\",\"creationTimestamp\":"
            "\"2026-01-01T00:00:00Z\",\"labels\":{\"istio.io/gateway-name\":\"istio-eastwest\","
            "\"topology.istio.io/network\":\"n%d\"}},\"spec\":{\"type\":\"LoadBalancer\","
            "\"clusterIP\":\"10.%d.250.1\",\"clusterIPs\":[\"10.%d.250.1\"],\"ports\":[{\"name\":"
            "\"tls-hbone\",\"port\":15008,\"targetPort\":15008,\"protocol\":\"TCP\"}],"
            "\"selector\":{\"app\":\"istio-eastwest\"}},\"status\":{\"loadBalancer\":{"
            "\"ingress\":[{\"ip\":\"192.0.2.%d\"}]}}}",
            g->c, g->c, 96 + g->c, 96 + g->c, 10 + g->c);
    for (int s = 0; s < g->nsvc; s++)
        fprintf(f,
                ",{\"metadata\":{\"name\":\"svc%d\",\"namespace\":\"team-%d\",\"uid\":"
                "\"00000000-0004-4000-8000-%012d\",\"resourceVersion\":\"%d\","
                "\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"labels\":{\"app\":\"svc%d\"%s},"
                "\"annotations\":{\"meta.helm.sh/release-name\":\"team-%d\"}},\"spec\":{"
                "\"clusterIP\":\"10.%d.%d.%d\",\"clusterIPs\":[\"10.%d.%d.%d\"],\"ipFamilies\":["
                "\"IPv4\"],\"ipFamilyPolicy\":\"SingleStack\",\"internalTrafficPolicy\":"
                "\"Cluster\",\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\","
                "\"targetPort\":8080}],\"selector\":{\"app\":\"svc%d\"},\"sessionAffinity\":"
                "\"None\",\"type\":\"ClusterIP\"},\"status\":{\"loadBalancer\":{}}}",
                s, s % NNS, g->c * 1000000 + s, 1000 + s, s,
                s % 2 == 0 ? ",\"istio.io/global\":\"true\"" : "", s % NNS, 96 + g->c,
                (s + 1) / 256, (s + 1) % 256, 96 + g->c, (s + 1) / 256, (s + 1) % 256, s);
    fprintf(f, "]}\n");
    gen_close(f);
}

/* Pod e of svc<s>: what `kubectl get pod -o json` shows for a Deployment's
 * pod, managedFields and all (about 3 KB). */
static void gen_pod(FILE *f, const gen_t *g, int s, int e, bool first)
{
    int n = s * g->per + e, node = n % NNODES;
    char ip[32];
    pod_ip(ip, sizeof(ip), g->c, n);
    fprintf(
        f,
        "%s{\"metadata\":{\"name\":\"svc%d-6f%05x-p%04x\",\"generateName\":\"svc%d-6f%05x-\","
        "\"namespace\":\"team-%d\",\"uid\":\"5f1e2d3c-4b5a-4978-8a9b-%012d\",\"resourceVersion\":"
        "\"%d\",\"creationTimestamp\":\"2026-11-20T10:11:12Z\",\"labels\":{\"app\":\"svc%d\","
        "\"pod-template-hash\":\"6f%05x\",\"service.istio.io/canonical-name\":\"svc%d\","
        "\"service.istio.io/canonical-revision\":\"v1\",\"version\":\"v1\"},\"annotations\":{"
        "\"ambient.istio.io/redirection\":\"enabled\",\"kubectl.kubernetes.io/restartedAt\":"
        "\"2026-11-20T10:00:00Z\",\"prometheus.io/port\":\"9090\",\"prometheus.io/scrape\":"
        "\"true\"},\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
        "\"name\":\"svc%d-6f%05x\",\"uid\":\"0a1b2c3d-4e5f-4071-8293-%012d\",\"controller\":true,"
        "\"blockOwnerDeletion\":true}],\"managedFields\":[{\"manager\":\"kube-controller-manager\","
        "\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":\"2026-11-20T10:11:12Z\","
        "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{\"f:generateName\":{},"
        "\"f:labels\":{\".\":{},\"f:app\":{},\"f:pod-template-hash\":{},\"f:version\":{}},"
        "\"f:ownerReferences\":{}},\"f:spec\":{\"f:containers\":{},\"f:dnsPolicy\":{},"
        "\"f:restartPolicy\":{}}}},{\"manager\":\"kubelet\",\"operation\":\"Update\","
        "\"apiVersion\":\"v1\",\"time\":\"2026-11-20T10:11:20Z\",\"fieldsType\":\"FieldsV1\","
        "\"fieldsV1\":{\"f:status\":{\"f:conditions\":{},\"f:containerStatuses\":{},"
        "\"f:hostIP\":{},\"f:phase\":{},\"f:podIP\":{},\"f:podIPs\":{},\"f:startTime\":{}}},"
        "\"subresource\":\"status\"}]},\"spec\":{\"volumes\":[{\"name\":\"kube-api-access-x7k2p\","
        "\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"expirationSeconds\":3607,"
        "\"path\":\"token\"}},{\"configMap\":{\"name\":\"kube-root-ca.crt\",\"items\":[{\"key\":"
        "\"ca.crt\",\"path\":\"ca.crt\"}]}}],\"defaultMode\":420}}],\"containers\":[{\"name\":"
        "\"app\",\"image\":\"registry.example.com/team/svc%d:1.24.3\",\"ports\":[{\"name\":"
        "\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"},{\"name\":\"metrics\","
        "\"containerPort\":9090,\"protocol\":\"TCP\"}],\"resources\":{\"limits\":{\"memory\":"
        "\"512Mi\"},\"requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}},\"volumeMounts\":[{"
        "\"name\":\"kube-api-access-x7k2p\",\"readOnly\":true,\"mountPath\":"
        "\"/var/run/secrets/kubernetes.io/serviceaccount\"}],\"readinessProbe\":{\"httpGet\":{"
        "\"path\":\"/ready\",\"port\":8080,\"scheme\":\"HTTP\"},\"periodSeconds\":10},"
        "\"terminationMessagePath\":\"/dev/termination-log\",\"imagePullPolicy\":"
        "\"IfNotPresent\"}],\"restartPolicy\":\"Always\",\"terminationGracePeriodSeconds\":30,"
        "\"dnsPolicy\":\"ClusterFirst\",\"serviceAccountName\":\"svc%d\",\"serviceAccount\":"
        "\"svc%d\",\"nodeName\":\"c%d-node-%d\",\"schedulerName\":\"default-scheduler\","
        "\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\","
        "\"effect\":\"NoExecute\",\"tolerationSeconds\":300}],\"enableServiceLinks\":true},"
        "\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Initialized\",\"status\":"
        "\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-11-20T10:11:12Z\"},{"
        "\"type\":\"Ready\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":"
        "\"2026-11-20T10:11:20Z\"},{\"type\":\"ContainersReady\",\"status\":\"True\","
        "\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-11-20T10:11:20Z\"},{\"type\":"
        "\"PodScheduled\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":"
        "\"2026-11-20T10:11:12Z\"}],\"hostIP\":\"192.168.%d.%d\",\"hostIPs\":[{\"ip\":"
        "\"192.168.%d.%d\"}],\"podIP\":\"%s\",\"podIPs\":[{\"ip\":\"%s\"}],\"startTime\":"
        "\"2026-11-20T10:11:12Z\",\"containerStatuses\":[{\"name\":\"app\",\"state\":{"
        "\"running\":{\"startedAt\":\"2026-11-20T10:11:15Z\"}},\"lastState\":{},\"ready\":true,"
        "\"restartCount\":0,\"image\":\"registry.example.com/team/svc%d:1.24.3\",\"imageID\":"
        "\"registry.example.com/team/svc%d@sha256:"
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"containerID\":"
        "\"containerd://4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b%05x\","
        "\"started\":true}],\"qosClass\":\"Burstable\"}}",
        first ? "" : ",", s, s, e, s, s, s % NNS, g->c * 1000000 + n, 5000 + n, s, s, s, s, s,
        g->c * 1000000 + s, s, s, s, g->c, node, g->c, node + 1, g->c, node + 1, ip, ip, s, s,
        n & 0xfffff);
}

static void gen_pods(const gen_t *g)
{
    int total = g->nsvc * g->per, files = (total + PODS_PER_FILE - 1) / PODS_PER_FILE;
    for (int k = 0; k < files; k++) {
        char name[64];
        snprintf(name, sizeof(name), "pods-%03d.json", k);
        FILE *f = gen_open(g, name);
        fprintf(f, "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{"
                   "\"resourceVersion\":\"100000\"},\"items\":[");
        int hi = (k + 1) * PODS_PER_FILE < total ? (k + 1) * PODS_PER_FILE : total;
        for (int n = k * PODS_PER_FILE; n < hi; n++)
            gen_pod(f, g, n / g->per, n % g->per, n == k * PODS_PER_FILE);
        fprintf(f, "]}\n");
        gen_close(f);
    }
}

/* svc<s>'s slices: SLICE_MAX endpoints each, as the EndpointSlice controller
 * splits them. */
static void gen_slices(const gen_t *g)
{
    FILE *f = gen_open(g, "endpointslices.json");
    fprintf(f, "{\"kind\":\"EndpointSliceList\",\"apiVersion\":\"discovery.k8s.io/v1\","
               "\"metadata\":{\"resourceVersion\":\"100000\"},\"items\":[");
    bool first = true;
    for (int s = 0; s < g->nsvc; s++)
        for (int lo = 0; lo < g->per; lo += SLICE_MAX) {
            fprintf(
                f,
                "%s{\"metadata\":{\"name\":\"svc%d-%05x\",\"generateName\":\"svc%d-\","
                "\"namespace\":\"team-%d\",\"uid\":\"7c6b5a49-3827-4605-84e3-%012d\","
                "\"resourceVersion\":\"%d\",\"generation\":3,\"creationTimestamp\":"
                "\"2026-11-20T10:11:12Z\",\"labels\":{\"app\":\"svc%d\","
                "\"endpointslice.kubernetes.io/managed-by\":\"endpointslice-controller.k8s.io\","
                "\"kubernetes.io/service-name\":\"svc%d\"},\"annotations\":{"
                "\"endpoints.kubernetes.io/last-change-trigger-time\":"
                "\"2026-11-20T10:11:20Z\"},\"ownerReferences\":[{\"apiVersion\":\"v1\","
                "\"kind\":\"Service\",\"name\":\"svc%d\",\"uid\":"
                "\"00000000-0004-4000-8000-%012d\",\"controller\":true,\"blockOwnerDeletion\":"
                "true}]},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"protocol\":"
                "\"TCP\",\"port\":8080}],\"endpoints\":[",
                first ? "" : ",", s, lo, s, s % NNS, g->c * 1000000 + s * 100 + lo / SLICE_MAX,
                200000 + s, s, s, s, g->c * 1000000 + s);
            first = false;
            int hi = lo + SLICE_MAX < g->per ? lo + SLICE_MAX : g->per;
            for (int e = lo; e < hi; e++) {
                int n = s * g->per + e;
                char ip[32];
                pod_ip(ip, sizeof(ip), g->c, n);
                fprintf(f,
                        "%s{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true,\"serving\":true,"
                        "\"terminating\":false},\"nodeName\":\"c%d-node-%d\",\"zone\":"
                        "\"region-%d-%c\",\"targetRef\":{\"kind\":\"Pod\",\"namespace\":"
                        "\"team-%d\",\"name\":\"svc%d-6f%05x-p%04x\",\"uid\":"
                        "\"5f1e2d3c-4b5a-4978-8a9b-%012d\"}}",
                        e > lo ? "," : "", ip, g->c, n % NNODES, g->c, 'a' + (n % NNODES) % 3,
                        s % NNS, s, s, e, g->c * 1000000 + n);
            }
            fprintf(f, "]}");
        }
    fprintf(f, "]}\n");
    gen_close(f);
}

static void gen_scope(const gen_t *g)
{
    FILE *f = gen_open(g, "servicescope.yaml");
    fprintf(f, "apiVersion: meshfed.io/v1alpha1\nkind: ServiceScope\nmetadata:\n  name: default\n"
               "spec:\n  rules:\n  - servicesSelector:\n      matchExpressions:\n"
               "      - key: istio.io/global\n        operator: In\n        values:\n"
               "        - 'true'\n    scope: GLOBAL\n");
    gen_close(f);
}

/* The bytes of dir's files. */
static long long gen_cluster(const char *dir, int c, int nsvc, int per)
{
    gen_t g = {dir, c, nsvc, per};
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/c%d", dir, c);
    if (mkdir(path, 0755) != 0)
        die("mkdir");
    gen_namespaces(&g);
    gen_nodes(&g);
    gen_services(&g);
    gen_pods(&g);
    gen_slices(&g);
    if (c == 0)
        gen_scope(&g);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "du -sb '%s'", path);
    FILE *p = popen(cmd, "r");
    long long bytes = 0;
    if (p) {
        if (fscanf(p, "%lld", &bytes) != 1)
            bytes = 0;
        pclose(p);
    }
    return bytes;
}

/* ---------- the clients (child process) ---------- */

/* What the client process answers when asked about the streams. */
typedef struct storm_status {
    int fresh;  /* streams whose last call ended after the time asked about */
    int at_max; /* streams whose last response is of version vmax */
    int silent; /* streams without a response on their current call */
    uint64_t vmin, vmax;
    /* the time of each stream's last response, over the streams: the first,
     * median, 99th percentile, last */
    uint64_t t_first, t_p50, t_p99, t_last;
    uint64_t bytes_min, bytes_max, bytes_sum; /* received per stream on its current call */
    uint64_t calls_ended;                     /* ever */
    uint64_t status_n[NSTATUS];               /* calls ended, by status code, ever */
    int last_code;                            /* of the last call ended with a code but 14 */
    char last_detail[120];
} storm_status_t;

typedef struct clients {
    tl_streams_t ss; /* first: the callbacks get it */
    pthread_mutex_t mu;
    uint64_t *ver, *last_t, *bytes, *ended_at; /* per stream, current call */
    uint64_t calls_ended, status_n[NSTATUS];
    int last_code;
    char last_detail[120];
} clients_t;

static void capture(tl_streams_t *ss, tl_stream_t *s, grpc_byte_buffer *b, uint64_t v)
{
    clients_t *c = (clients_t *)ss;
    (void)v;
    pthread_mutex_lock(&c->mu);
    c->bytes[s - ss->st] += grpc_byte_buffer_length(b);
    pthread_mutex_unlock(&c->mu);
}

static void reach(tl_streams_t *ss, tl_stream_t *s, uint64_t v, uint64_t t)
{
    clients_t *c = (clients_t *)ss;
    pthread_mutex_lock(&c->mu);
    c->ver[s - ss->st] = v;
    c->last_t[s - ss->st] = t;
    pthread_mutex_unlock(&c->mu);
}

static void ended(tl_streams_t *ss, tl_stream_t *s)
{
    clients_t *c = (clients_t *)ss;
    long i = s - ss->st;
    pthread_mutex_lock(&c->mu);
    c->ver[i] = c->last_t[i] = c->bytes[i] = 0;
    c->ended_at[i] = tl_now_ns();
    c->calls_ended++;
    int code = (int)s->status;
    c->status_n[code >= 0 && code < NSTATUS - 1 ? code : NSTATUS - 1]++;
    if (code != GRPC_STATUS_UNAVAILABLE) {
        c->last_code = code;
        size_t n = GRPC_SLICE_LENGTH(s->details);
        if (n >= sizeof(c->last_detail))
            n = sizeof(c->last_detail) - 1;
        memcpy(c->last_detail, GRPC_SLICE_START_PTR(s->details), n);
        c->last_detail[n] = '\0';
    }
    pthread_mutex_unlock(&c->mu);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void status_of(clients_t *c, uint64_t since, uint64_t *times, storm_status_t *st)
{
    memset(st, 0, sizeof(*st));
    int n = c->ss.n, nt = 0;
    st->vmin = UINT64_MAX;
    st->bytes_min = UINT64_MAX;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++) {
        if (c->ended_at[i] > since)
            st->fresh++;
        if (!c->last_t[i])
            st->silent++;
        else
            times[nt++] = c->last_t[i];
        st->vmin = c->ver[i] < st->vmin ? c->ver[i] : st->vmin;
        st->vmax = c->ver[i] > st->vmax ? c->ver[i] : st->vmax;
        st->bytes_min = c->bytes[i] < st->bytes_min ? c->bytes[i] : st->bytes_min;
        st->bytes_max = c->bytes[i] > st->bytes_max ? c->bytes[i] : st->bytes_max;
        st->bytes_sum += c->bytes[i];
    }
    for (int i = 0; i < n; i++)
        st->at_max += c->ver[i] == st->vmax;
    st->calls_ended = c->calls_ended;
    memcpy(st->status_n, c->status_n, sizeof(st->status_n));
    st->last_code = c->last_code;
    memcpy(st->last_detail, c->last_detail, sizeof(st->last_detail));
    pthread_mutex_unlock(&c->mu);
    if (nt) {
        qsort(times, (size_t)nt, sizeof(uint64_t), cmp_u64);
        st->t_first = times[0];
        st->t_p50 = times[nt / 2];
        st->t_p99 = times[(nt * 99 + 99) / 100 - 1];
        st->t_last = times[nt - 1];
    }
}

/* STORM_CONNECT_TIMEOUT_MS: the clients abandon a connection attempt after
 * this long (default grpc's 20 s). A short one makes each slow handshake a
 * new connection: a way to see what meshfed does when it runs out of files. */
static int connect_timeout_ms(void)
{
    const char *e = getenv("STORM_CONNECT_TIMEOUT_MS");
    return e ? atoi(e) : 0;
}

typedef struct opener {
    clients_t *c;
    char target[64];
} opener_t;

/* Opening 10,000 channels takes a while: the status is answered meanwhile. */
static void *open_all(void *arg)
{
    opener_t *o = arg;
    for (int i = 0; i < o->c->ss.n; i++)
        tl_streams_open(&o->c->ss, i, o->target);
    return NULL;
}

/* Reads the port, opens the streams, and answers each time asked about
 * (a nonzero uint64) with a storm_status_t, until 0 or EOF. */
static void run_clients(int n, int in_fd, int out_fd)
{
    running[0] = running[1] = 0; /* not this process's to kill */
    uint64_t port, since;
    if (!tl_pipe_get(in_fd, &port, sizeof(port), 3600 * 1000))
        _exit(1);
    grpc_init();
    clients_t c = {0};
    pthread_mutex_init(&c.mu, NULL);
    c.ver = calloc((size_t)n, sizeof(uint64_t));
    c.last_t = calloc((size_t)n, sizeof(uint64_t));
    c.bytes = calloc((size_t)n, sizeof(uint64_t));
    c.ended_at = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *times = calloc((size_t)n, sizeof(uint64_t));
    if (!c.ver || !c.last_t || !c.bytes || !c.ended_at || !times)
        die("no memory");
    tl_streams_init(&c.ss, n, reach, die);
    c.ss.capture = capture;
    c.ss.ended = ended;
    c.ss.reconnect_ms = RECONNECT_MS;
    c.ss.connect_timeout_ms = connect_timeout_ms();
    opener_t o = {.c = &c};
    snprintf(o.target, sizeof(o.target), "127.0.0.1:%d", (int)port);
    pthread_t thr;
    if (pthread_create(&thr, NULL, open_all, &o) != 0)
        die("pthread_create");
    while (tl_pipe_get(in_fd, &since, sizeof(since), 3600 * 1000) && since) {
        storm_status_t st;
        status_of(&c, since, times, &st);
        if (write(out_fd, &st, sizeof(st)) != (ssize_t)sizeof(st))
            _exit(1);
    }
    _exit(0); /* skip the teardown of 10,000 channels */
}

/* ---------- probing the debug port (parent) ---------- */

typedef struct body {
    char *p;
    size_t len, cap;
} body_t;

static size_t on_body(char *d, size_t sz, size_t nm, void *arg)
{
    body_t *b = arg;
    size_t n = sz * nm;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* GET url: the HTTP status, or -1 (err set) when there was no answer. */
static long http_get(CURL *h, const char *url, bool fresh_conn, body_t *b, double *ms, char *err,
                     size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    b->len = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, fresh_conn ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    uint64_t t0 = tl_now_ns();
    CURLcode rc = curl_easy_perform(h);
    *ms = (double)(tl_now_ns() - t0) / 1e6;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return -1;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

typedef struct probe_stats {
    int n, ok, bad_http, failed; /* answers 200, other answers, no answer */
    double max_ms, sum_ms;       /* of the answers */
    char last_err[160];
} probe_stats_t;

struct bench;

typedef struct poller {
    struct bench *b;
    const char *path;
    bool fresh_conn; /* a new connection per request, as the kubelet's probes */
    pthread_t thr;
    probe_stats_t st[NPHASE];
} poller_t;

typedef struct bench {
    int nstreams, nsvc, per;
    char dir[64];
    const char *meshfed;
    int xds_port, debug_port;
    pid_t pid; /* meshfed's */
    int starts;
    int to_child, from_child;
    pid_t child;
    pthread_mutex_t mu;
    /* the phase the pollers record into (PH_START is followed by PH_STORM
     * when /ready first answers 200, set by the /ready poller), -1 none */
    int phase;
    uint64_t ready_at[MAX_ROUNDS];
    double commits;                   /* meshfed_commits_total, -1 until read from this process */
    double connected, accepted, sent; /* its xDS streams open, accepted, bytes sent */
    uint64_t commit_changed;          /* when commits last changed */
    atomic_bool stop;
    poller_t ready, metrics;
} bench_t;

/* The value of metric name (unlabelled) in a Prometheus text body, or -1. */
static double metric_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void *poll_thread(void *arg)
{
    poller_t *pl = arg;
    bench_t *b = pl->b;
    CURL *h = curl_easy_init();
    body_t body = {0};
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", b->debug_port, pl->path);
    bool is_ready = strcmp(pl->path, "/ready") == 0;
    while (!atomic_load(&b->stop)) {
        uint64_t t0 = tl_now_ns();
        double ms;
        char err[160] = "";
        pthread_mutex_lock(&b->mu);
        int ph0 = b->phase;
        pthread_mutex_unlock(&b->mu);
        long code = http_get(h, url, pl->fresh_conn, &body, &ms, err, sizeof(err));
        pthread_mutex_lock(&b->mu);
        int ph = b->phase;
        if (ph >= 0) {
            probe_stats_t *st = &pl->st[ph];
            st->n++;
            if (code == 200) {
                st->ok++;
            } else if (code > 0) {
                st->bad_http++;
                snprintf(st->last_err, sizeof(st->last_err), "HTTP %ld: %.100s", code,
                         body.p ? body.p : "");
            } else {
                st->failed++;
                snprintf(st->last_err, sizeof(st->last_err), "%s", err);
            }
            if (code > 0) {
                st->sum_ms += ms;
                st->max_ms = ms > st->max_ms ? ms : st->max_ms;
            }
            /* asked of the new meshfed, not of the old one stopping */
            if (is_ready && code == 200 && ph % 3 == 1 && ph0 == ph) {
                b->ready_at[ph / 3] = tl_now_ns();
                b->phase = ph + 1;
            }
        }
        if (!is_ready && code == 200 && body.p) {
            double v = metric_value(body.p, "meshfed_commits_total");
            if (v != b->commits) {
                b->commits = v;
                b->commit_changed = tl_now_ns();
            }
            b->connected = metric_value(body.p, "meshfed_xds_connected");
            b->accepted = metric_value(body.p, "meshfed_xds_streams_total");
            b->sent = metric_value(body.p, "meshfed_xds_bytes_sent_total");
        }
        pthread_mutex_unlock(&b->mu);
        uint64_t next = t0 + PROBE_EVERY_MS * 1000000ull, now = tl_now_ns();
        if (next > now)
            sleep_ms((int)((next - now) / 1000000));
    }
    free(body.p);
    curl_easy_cleanup(h);
    return NULL;
}

static void probes_print(const char *what, const probe_stats_t *st)
{
    printf("  %s: %d answers, max %.1f ms, mean %.1f ms; %d not 200, %d failed%s%s\n", what,
           st->ok + st->bad_http, st->max_ms,
           st->ok + st->bad_http ? st->sum_ms / (st->ok + st->bad_http) : 0.0, st->bad_http,
           st->failed, st->last_err[0] ? "; last: " : "", st->last_err);
}

/* ---------- meshfed (parent) ---------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("no free port");
    close(fd);
    return ntohs(a.sin_port);
}

static void start_meshfed(bench_t *b)
{
    char xds[64], dbg[64], log[PATH_MAX];
    snprintf(xds, sizeof(xds), "127.0.0.1:%d", b->xds_port);
    snprintf(dbg, sizeof(dbg), "127.0.0.1:%d", b->debug_port);
    snprintf(log, sizeof(log), "%s/meshfed-%d.log", b->dir, ++b->starts);
    char *argv[] = {(char *)b->meshfed,
                    "--demo",
                    b->dir,
                    "--cluster-id",
                    "c0",
                    "--xds-listen",
                    xds,
                    "--debug-listen",
                    dbg,
                    "--log-level",
                    "warn",
                    "--log-format",
                    "json",
                    NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(b->meshfed, argv);
        _exit(127);
    }
    b->pid = running[0] = pid;
}

/* kB of key ("VmHWM:", "VmRSS:") in /proc/pid/status, -1 unknown. */
static long proc_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0)
            kb = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* CPU seconds (user + system) of pid. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after the name: state, then fields 4-13, then utime (14) and stime (15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* What meshfed logged (warnings and errors only, and grpc's own): how many
 * lines, and the first few. */
static void log_report(const bench_t *b)
{
    char path[PATH_MAX], line[4096];
    snprintf(path, sizeof(path), "%s/meshfed-%d.log", b->dir, b->starts);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (n++ < 3)
            printf("  meshfed logged: %.240s%s", line, strchr(line, '\n') ? "" : "\n");
    }
    if (f)
        fclose(f);
    printf("  meshfed logged %d lines (warnings, errors) in all\n", n);
}

static void show_log(const bench_t *b)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "tail -n 20 '%s/meshfed-%d.log' >&2", b->dir, b->starts);
    fprintf(stderr, "meshfed's log (the last lines):\n");
    if (system(cmd) != 0)
        fprintf(stderr, "(none)\n");
}

/* The version and resource count of c0/n0's view in /debug/config_dump; false
 * when it does not answer. */
static bool view_of(bench_t *b, uint64_t *version, size_t *nres)
{
    CURL *h = curl_easy_init();
    body_t body = {0};
    char url[160], err[160];
    double ms;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/debug/config_dump?cluster=c0&network=n0",
             b->debug_port);
    long code = http_get(h, url, false, &body, &ms, err, sizeof(err));
    curl_easy_cleanup(h);
    json_t *j = code == 200 && body.p ? json_loadb(body.p, body.len, 0, NULL) : NULL;
    free(body.p);
    if (!j)
        return false;
    *version = (uint64_t)json_integer_value(json_object_get(j, "version"));
    *nres = json_object_size(json_object_get(j, "resources"));
    json_decref(j);
    return true;
}

/* Waits until this meshfed's commits have stopped for SETTLE_MS; false
 * after timeout_s. */
static bool settled(bench_t *b)
{
    pthread_mutex_lock(&b->mu);
    bool ok = b->commits >= 0 && tl_now_ns() - b->commit_changed >= SETTLE_MS * 1000000ull;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static bool ready_in(bench_t *b, int r)
{
    pthread_mutex_lock(&b->mu);
    bool ok = b->ready_at[r] != 0;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static void set_phase(bench_t *b, int phase)
{
    pthread_mutex_lock(&b->mu);
    b->phase = phase;
    pthread_mutex_unlock(&b->mu);
}

static void ask(bench_t *b, uint64_t since, storm_status_t *st)
{
    tl_pipe_put(b->to_child, since);
    if (!tl_pipe_get(b->from_child, st, sizeof(*st), 60000))
        die("the client process does not answer");
}

/* ---------- a round: the initial connect, or a restart ---------- */

typedef struct round {
    const char *what;
    uint64_t t0;             /* the restart (or the streams' opening) */
    double down_ms, ready_s; /* old meshfed gone; /ready 200 after t0 */
    double full_s, first_s, p50_s, p99_s;
    bool done;
    storm_status_t st, st0; /* at the end, and at the start */
    uint64_t version;
    size_t nres;
    long hwm_kb, rss_kb, settled_kb;
    double cpu_s;
    double client_cpu0, client_cpu_s; /* the client process's, in the round */
    double accepted, sent;            /* by this meshfed: xDS streams, bytes */
    char load[64];                    /* /proc/loadavg at the end */
} round_t;

static void print_status_codes(const storm_status_t *a, const storm_status_t *z)
{
    printf("  calls ended: %llu (by grpc status:",
           (unsigned long long)(z->calls_ended - a->calls_ended));
    for (int k = 0; k < NSTATUS; k++)
        if (z->status_n[k] != a->status_n[k])
            printf(" %s%d: %llu", k == NSTATUS - 1 ? ">=" : "", k,
                   (unsigned long long)(z->status_n[k] - a->status_n[k]));
    printf(")");
    if (z->last_code)
        printf("; the last not UNAVAILABLE: %d \"%s\"", z->last_code, z->last_detail);
    printf("\n");
}

/* Waits until every stream has re-opened since since (0: opened) and has the
 * version this meshfed publishes once settled; false after ROUND_TIMEOUT_S. */
static bool await_full_view(bench_t *b, uint64_t since, round_t *rd)
{
    uint64_t deadline = tl_now_ns() + ROUND_TIMEOUT_S * 1000000000ull;
    double checked_commits = -2;
    uint64_t dump_version = 0, next_note = tl_now_ns() + 10000000000ull;
    while (tl_now_ns() < deadline) {
        sleep_ms(100);
        ask(b, since ? since : 1, &rd->st);
        const storm_status_t *st = &rd->st;
        if (tl_now_ns() >= next_note) { /* how the storm goes, every 10 s */
            next_note += 10000000000ull;
            pthread_mutex_lock(&b->mu);
            printf("  %3.0f s: meshfed %.0f streams open, %.0f accepted, %.2f GB sent; clients: "
                   "%d re-opened, %d at version %llu, %d without a response, %llu calls ended, "
                   "%.0f s CPU\n",
                   (double)(tl_now_ns() - rd->t0) / 1e9, b->connected, b->accepted, b->sent / 1e9,
                   since ? st->fresh : b->nstreams, st->at_max, (unsigned long long)st->vmax,
                   st->silent, (unsigned long long)(st->calls_ended - rd->st0.calls_ended),
                   proc_cpu_s(b->child) - rd->client_cpu0);
            pthread_mutex_unlock(&b->mu);
            fflush(stdout);
        }
        bool streams = (!since || st->fresh == b->nstreams) && st->silent == 0 &&
                       st->vmin == st->vmax && st->vmin > 0;
        if (!streams || !settled(b))
            continue;
        pthread_mutex_lock(&b->mu);
        double commits = b->commits;
        pthread_mutex_unlock(&b->mu);
        if (commits != checked_commits) { /* the view's version, once per commit */
            size_t nres;
            if (!view_of(b, &dump_version, &nres))
                continue;
            checked_commits = commits;
            rd->nres = nres;
        }
        if (st->vmax == dump_version) {
            rd->version = dump_version;
            return true;
        }
    }
    return false;
}

static void round_figures(bench_t *b, round_t *rd)
{
    const storm_status_t *st = &rd->st;
    rd->full_s = (double)(st->t_last - rd->t0) / 1e9;
    rd->first_s = (double)(st->t_first - rd->t0) / 1e9;
    rd->p50_s = (double)(st->t_p50 - rd->t0) / 1e9;
    rd->p99_s = (double)(st->t_p99 - rd->t0) / 1e9;
    rd->hwm_kb = proc_kb(b->pid, "VmHWM:");
    rd->rss_kb = proc_kb(b->pid, "VmRSS:");
    rd->cpu_s = proc_cpu_s(b->pid);
    rd->client_cpu_s = proc_cpu_s(b->child) - rd->client_cpu0;
    pthread_mutex_lock(&b->mu);
    rd->accepted = b->accepted;
    rd->sent = b->sent;
    pthread_mutex_unlock(&b->mu);
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || !fgets(rd->load, sizeof(rd->load), f))
        snprintf(rd->load, sizeof(rd->load), "?\n");
    if (f)
        fclose(f);
    sleep_ms(2000);
    rd->settled_kb = proc_kb(b->pid, "VmRSS:");
}

/* What was missing when a round did not complete. */
static void print_incomplete(bench_t *b, const round_t *rd, int r)
{
    const storm_status_t *st = &rd->st;
    pthread_mutex_lock(&b->mu);
    double commits = b->commits, connected = b->connected;
    pthread_mutex_unlock(&b->mu);
    uint64_t v = 0;
    size_t nres = 0;
    bool dump = view_of(b, &v, &nres);
    printf("%s: NOT COMPLETE after %d s: %d of %d streams re-opened, %d without a response on "
           "their call, versions %llu..%llu (%d at %llu); meshfed: view version %s%llu, %zu "
           "resources, commits %.0f, %.0f streams connected, /ready %s\n",
           rd->what, ROUND_TIMEOUT_S, st->fresh, b->nstreams, st->silent,
           (unsigned long long)st->vmin, (unsigned long long)st->vmax, st->at_max,
           (unsigned long long)st->vmax, dump ? "" : "(no answer) ", (unsigned long long)v, nres,
           commits, connected, ready_in(b, r) ? "seen 200" : "never 200");
}

static void print_round(const bench_t *b, const round_t *rd, int r)
{
    printf("%s: ", rd->what);
    if (r > 0)
        printf("the old meshfed exited %.0f ms after the signal; ", rd->down_ms);
    printf("/ready 200 %.2f s after the %s\n", rd->ready_s, r > 0 ? "restart" : "start");
    printf(
        "  %d streams %s, full view on all %.2f s after the %s (first %.2f s, p50 %.2f s, "
        "p99 %.2f s); view version %llu, %zu resources, %.0f KB per stream (min %.0f, max %.0f)\n",
        b->nstreams, r > 0 ? "reconnected" : "connected", rd->full_s,
        r > 0 ? "restart" : "streams opened", rd->first_s, rd->p50_s, rd->p99_s,
        (unsigned long long)rd->version, rd->nres, (double)rd->st.bytes_sum / b->nstreams / 1e3,
        (double)rd->st.bytes_min / 1e3, (double)rd->st.bytes_max / 1e3);
    if (r > 0)
        print_status_codes(&rd->st0, &rd->st);
    if (r > 0 && b->ready.st[PH_STOP(r)].n) {
        probes_print("/ready while the old meshfed stopped", &b->ready.st[PH_STOP(r)]);
        probes_print("/metrics while the old meshfed stopped", &b->metrics.st[PH_STOP(r)]);
    }
    printf("  meshfed: peak RSS (VmHWM) %.1f MB, RSS %.1f MB at full view, %.1f MB 2 s later; "
           "CPU %.1f s since it started; %.0f xDS streams accepted, %.2f GB sent (%.1f full "
           "states per stream)\n",
           rd->hwm_kb / 1024.0, rd->rss_kb / 1024.0, rd->settled_kb / 1024.0, rd->cpu_s,
           rd->accepted, rd->sent / 1e9,
           rd->st.bytes_min ? rd->sent / (double)rd->st.bytes_min / b->nstreams : 0.0);
    printf("  client process: %.1f s CPU in the round; load average at the end %s",
           rd->client_cpu_s, rd->load);
    probes_print("/ready until 200", &b->ready.st[PH_START(r)]);
    probes_print("/metrics until /ready 200", &b->metrics.st[PH_START(r)]);
    probes_print("/ready in the storm", &b->ready.st[PH_STORM(r)]);
    probes_print("/metrics in the storm", &b->metrics.st[PH_STORM(r)]);
    log_report(b);
    fflush(stdout);
}

/* Kills meshfed with sig, starts a new one at once on the same ports. */
static bool restart(bench_t *b, int r, int sig, round_t *rd)
{
    ask(b, 1, &rd->st0);
    set_phase(b, PH_STOP(r));
    rd->client_cpu0 = proc_cpu_s(b->child);
    uint64_t t_kill = tl_now_ns();
    kill(b->pid, sig);
    int status;
    for (int i = 0; waitpid(b->pid, &status, WNOHANG) == 0; i++) {
        if (i == 60000) { /* a minute: SIGTERM did not end it */
            printf("%s: meshfed still running 60 s after SIGTERM: killed\n", rd->what);
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &status, 0);
            break;
        }
        usleep(1000);
    }
    pthread_mutex_lock(&b->mu);
    b->phase = PH_START(r);
    b->commits = -1;
    pthread_mutex_unlock(&b->mu);
    rd->t0 = tl_now_ns();
    rd->down_ms = (double)(rd->t0 - t_kill) / 1e6;
    start_meshfed(b);
    bool ok = await_full_view(b, t_kill, rd);
    rd->ready_s = ready_in(b, r) ? (double)(b->ready_at[r] - rd->t0) / 1e9 : -1;
    set_phase(b, -1);
    if (!ok) {
        print_incomplete(b, rd, r);
        show_log(b);
        return false;
    }
    round_figures(b, rd);
    return true;
}

/* The first meshfed, settled before any stream; then the streams open. */
static bool first_connect(bench_t *b, round_t *rd, long *base_kb, long *base_hwm_kb)
{
    set_phase(b, PH_START(0));
    uint64_t t_start = tl_now_ns();
    start_meshfed(b);
    for (int i = 0; !(ready_in(b, 0) && settled(b)); i++) {
        int st;
        if (i == 3000 || waitpid(b->pid, &st, WNOHANG) != 0) {
            printf("meshfed did not become ready and settled within 300 s\n");
            show_log(b);
            return false;
        }
        sleep_ms(100);
    }
    set_phase(b, -1);
    sleep_ms(1000);
    *base_kb = proc_kb(b->pid, "VmRSS:");
    *base_hwm_kb = proc_kb(b->pid, "VmHWM:");
    printf("meshfed before any stream: ready %.2f s after its start, RSS %.1f MB (peak %.1f MB "
           "while loading), CPU %.1f s\n",
           (double)(b->ready_at[0] - t_start) / 1e9, *base_kb / 1024.0, *base_hwm_kb / 1024.0,
           proc_cpu_s(b->pid));
    rd->ready_s = (double)(b->ready_at[0] - t_start) / 1e9;
    pthread_mutex_lock(&b->mu); /* the storm's probes: from the streams' opening */
    memset(&b->ready.st[PH_STORM(0)], 0, sizeof(b->ready.st[0]));
    memset(&b->metrics.st[PH_STORM(0)], 0, sizeof(b->metrics.st[0]));
    b->phase = PH_STORM(0);
    pthread_mutex_unlock(&b->mu);
    rd->client_cpu0 = proc_cpu_s(b->child);
    rd->t0 = tl_now_ns();
    tl_pipe_put(b->to_child, (uint64_t)b->xds_port);
    bool ok = await_full_view(b, 0, rd);
    set_phase(b, -1);
    if (!ok) {
        print_incomplete(b, rd, 0);
        show_log(b);
        return false;
    }
    round_figures(b, rd);
    return true;
}

/* ---------- main ---------- */

/* meshfed next to the bench's directory (build/bench/.. -> build/meshfed). */
static const char *default_meshfed(void)
{
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
    if (n <= 0)
        return "meshfed";
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (slash)
        *slash = '\0';
    slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, 16, "meshfed");
    return path;
}

/* Forks the client process before anything starts grpc: its grpc is its own. */
static void spawn_clients(bench_t *b)
{
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        die("pipe");
    fflush(stdout);
    b->child = fork();
    if (b->child < 0)
        die("fork");
    if (b->child == 0) {
        close(in[1]);
        close(out[0]);
        run_clients(b->nstreams, in[0], out[1]);
    }
    running[1] = b->child;
    close(in[0]);
    close(out[1]);
    b->to_child = in[1];
    b->from_child = out[0];
    /* meshfed, started later, must not hold them */
    fcntl(b->to_child, F_SETFD, FD_CLOEXEC);
    fcntl(b->from_child, F_SETFD, FD_CLOEXEC);
}

static void summary(const bench_t *b, const round_t *rd, int r, long base_kb, double state_kb)
{
    printf("storm (%s): %d streams, full view on all in %.2f s; peak RSS %.1f MB (%.1f KiB per "
           "stream over the idle %.1f MB; full state %.0f KB); settled %.1f KiB per stream; "
           "/ready max latency %.1f ms, %d failures; /metrics max %.1f ms, %d failures\n",
           rd->what, b->nstreams, rd->full_s, rd->hwm_kb / 1024.0,
           (double)(rd->hwm_kb - base_kb) / b->nstreams, base_kb / 1024.0, state_kb,
           (double)(rd->settled_kb - base_kb) / b->nstreams, b->ready.st[PH_STORM(r)].max_ms,
           b->ready.st[PH_STORM(r)].failed + b->ready.st[PH_STORM(r)].bad_http,
           b->metrics.st[PH_STORM(r)].max_ms,
           b->metrics.st[PH_STORM(r)].failed + b->metrics.st[PH_STORM(r)].bad_http);
}

int main(int argc, char **argv)
{
    bench_t b = {.nstreams = argc > 1 ? atoi(argv[1]) : 10000};
    int neps = argc > 2 ? atoi(argv[2]) : 10000;
    b.nsvc = argc > 3 ? atoi(argv[3]) : 500;
    const char *signals = argc > 4 ? argv[4] : "kill,term";
    b.meshfed = argc > 5 ? argv[5] : default_meshfed();
    b.per = b.nsvc > 0 ? neps / 2 / b.nsvc : 0;
    if (b.per < 1 || b.nstreams < 1)
        die("usage: bench_storm [streams] [endpoints] [services] [signals=kill,term] [meshfed]");
    if (access(b.meshfed, X_OK) != 0) {
        fprintf(stderr, "bench_storm: no meshfed at %s (give its path)\n", b.meshfed);
        return 1;
    }
    int sigs[MAX_ROUNDS - 1], nsig = 0;
    for (const char *p = signals; *p && nsig < MAX_ROUNDS - 1;) {
        size_t n = strcspn(p, ",");
        if (n == 4 && strncmp(p, "kill", 4) == 0)
            sigs[nsig++] = SIGKILL;
        else if (n == 4 && strncmp(p, "term", 4) == 0)
            sigs[nsig++] = SIGTERM;
        else
            die("signals: a comma list of kill and term");
        p += n + (p[n] == ',');
    }
    tl_raise_nofile("bench_storm", b.nstreams); /* meshfed inherits it */
    snprintf(b.dir, sizeof(b.dir), "/tmp/meshfed-storm-XXXXXX");
    if (!mkdtemp(b.dir))
        die("mkdtemp");
    uint64_t t = tl_now_ns();
    long long bytes = gen_cluster(b.dir, 0, b.nsvc, b.per) + gen_cluster(b.dir, 1, b.nsvc, b.per);
    printf("demo: 2 clusters on 2 networks, %d services each (half global), %d endpoints (pods "
           "and EndpointSlices as listed by an API server): %.1f MB of JSON in %s, written in "
           "%.1f s\n",
           b.nsvc, 2 * b.nsvc * b.per, (double)bytes / 1e6, b.dir, (double)(tl_now_ns() - t) / 1e9);
    spawn_clients(&b);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    b.xds_port = free_port();
    b.debug_port = free_port();
    while (b.debug_port == b.xds_port)
        b.debug_port = free_port();
    pthread_mutex_init(&b.mu, NULL);
    b.phase = -1;
    b.commits = -1;
    atomic_init(&b.stop, false);
    b.ready = (poller_t){.b = &b, .path = "/ready", .fresh_conn = true};
    b.metrics = (poller_t){.b = &b, .path = "/metrics"};
    if (pthread_create(&b.ready.thr, NULL, poll_thread, &b.ready) != 0 ||
        pthread_create(&b.metrics.thr, NULL, poll_thread, &b.metrics) != 0)
        die("pthread_create");
    printf("meshfed %s: xDS on 127.0.0.1:%d, debug on 127.0.0.1:%d; %d streams in view of c0, "
           "reconnect backoff %d ms to %d ms, connect timeout %d ms; probes every %d ms\n",
           b.meshfed, b.xds_port, b.debug_port, b.nstreams, RECONNECT_MS, 10 * RECONNECT_MS,
           connect_timeout_ms() ? connect_timeout_ms() : 20000, PROBE_EVERY_MS);
    fflush(stdout);

    round_t rounds[MAX_ROUNDS] = {{.what = "initial connect"}};
    long base_kb = 0, base_hwm_kb = 0;
    bool ok = first_connect(&b, &rounds[0], &base_kb, &base_hwm_kb);
    double state_kb = 0;
    if (ok) {
        state_kb = (double)rounds[0].st.bytes_sum / b.nstreams / 1e3;
        print_round(&b, &rounds[0], 0);
        printf("  per idle stream: %.1f KiB of meshfed RSS (settled, over the idle process); one "
               "full state is %.0f KB\n",
               (double)(rounds[0].settled_kb - base_kb) / b.nstreams, state_kb);
    }
    int done = ok ? 1 : 0;
    for (int i = 0; ok && i < nsig; i++) {
        round_t *rd = &rounds[i + 1];
        rd->what = sigs[i] == SIGKILL ? "restart after SIGKILL" : "restart after SIGTERM";
        ok = restart(&b, i + 1, sigs[i], rd);
        if (ok) {
            print_round(&b, rd, i + 1);
            done++;
        }
    }
    for (int r = 0; r < done; r++)
        summary(&b, &rounds[r], r, base_kb, state_kb);
    if (!ok)
        printf("storm: did not complete (see above)\n");

    atomic_store(&b.stop, true);
    pthread_join(b.ready.thr, NULL);
    pthread_join(b.metrics.thr, NULL);
    kill(b.pid, SIGTERM);
    waitpid(b.pid, NULL, 0);
    tl_pipe_put(b.to_child, 0);
    close(b.to_child);
    waitpid(b.child, NULL, 0);
    curl_global_cleanup();
    if (!getenv("BENCH_KEEP_DIR"))
        tl_sh("rm -rf '%s'", b.dir);
    return ok ? 0 : 1;
}
