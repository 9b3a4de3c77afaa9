/*
 * exec.c - kubeconfig exec credential plugins (client.authentication.k8s.io
 * ExecCredential), as `aws eks get-token` or `gke-gcloud-auth-plugin` are.
 *
 * Only a kubeconfig the operator passes (--kubeconfig, create-remote-secret)
 * may name a plugin: one read from a remote-cluster Secret could make
 * meshfed run any program, so those are refused where they are parsed.
 *
 * The plugin runs when a request needs a credential and none is cached, the
 * cached one has expired (status.expirationTimestamp, 10 s early), or the
 * API server answered 401 since. It runs without a terminal, its stdout
 * (an ExecCredential) and stderr captured, for at most 30 s; the thread that
 * asked waits for it. A token or a client certificate and key come back.
 */
#define _GNU_SOURCE /* pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kube_int.h"

extern char **environ;

#define KUBE_EXEC_TIMEOUT_MS 30000
#define KUBE_EXEC_MAX_OUT (1u << 20)
#define KUBE_EXEC_EARLY_S 10 /* renew this long before expirationTimestamp */

struct kube_exec {
    char **argv; /* command, args..., NULL */
    char **env;  /* NAME=value pairs from the kubeconfig, NULL terminated */
    char *api_version;
    char *info; /* KUBERNETES_EXEC_INFO=... */
    pthread_mutex_t mu;
    kube_cred_t cached;
    bool have;
    int64_t expires; /* epoch seconds; 0: until a 401 */
};

static void kube_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static char **kube_strv_copy(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **c = calloc(n + 1, sizeof(*c));
    for (size_t i = 0; c && i < n; i++) {
        if (!(c[i] = strdup(v[i]))) {
            kube_strv_free(c);
            return NULL;
        }
    }
    return c;
}

void kube_cred_clear(kube_cred_t *c)
{
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    free(c->token);
    free(c->cert);
    if (c->key)
        memset(c->key, 0, c->key_len);
    free(c->key);
    memset(c, 0, sizeof(*c));
}

static int kube_cred_copy(kube_cred_t *dst, const kube_cred_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->cert_len = src->cert_len;
    dst->key_len = src->key_len;
    if ((src->token && !(dst->token = strdup(src->token))) ||
        (src->cert && !(dst->cert = strdup(src->cert))) ||
        (src->key && !(dst->key = strdup(src->key)))) {
        kube_cred_clear(dst);
        return -1;
    }
    return 0;
}

static kube_exec_t *kube_exec_alloc(void)
{
    kube_exec_t *x = calloc(1, sizeof(*x));
    if (x)
        pthread_mutex_init(&x->mu, NULL);
    return x;
}

void kube_exec_free(kube_exec_t *x)
{
    if (!x)
        return;
    kube_strv_free(x->argv);
    kube_strv_free(x->env);
    free(x->api_version);
    free(x->info);
    kube_cred_clear(&x->cached);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

kube_exec_t *kube_exec_copy(const kube_exec_t *x)
{
    kube_exec_t *c = x ? kube_exec_alloc() : NULL;
    if (!c)
        return NULL;
    c->argv = kube_strv_copy(x->argv);
    c->env = kube_strv_copy(x->env);
    c->api_version = strdup(x->api_version);
    c->info = strdup(x->info);
    if (!c->argv || !c->env || !c->api_version || !c->info) {
        kube_exec_free(c);
        return NULL;
    }
    return c;
}

/* ---------- the kubeconfig's users[].user.exec ---------- */

static int kube_exec_fail(char *err, size_t errlen, const char *user, const char *msg)
{
    snprintf(err, errlen, "kubeconfig: user \"%s\": exec: %s", user, msg);
    return -1;
}

static int kube_exec_args(kube_exec_t *x, const json_t *spec, const char *user, char *err,
                          size_t errlen)
{
    const char *cmd = json_string_value(json_object_get(spec, "command"));
    const json_t *args = json_object_get(spec, "args");
    if (!cmd || !*cmd)
        return kube_exec_fail(err, errlen, user, "command: missing");
    if (args && !json_is_array(args) && !json_is_null(args))
        return kube_exec_fail(err, errlen, user, "args: expected a list");
    size_t n = json_array_size(args);
    x->argv = calloc(n + 2, sizeof(char *));
    if (!x->argv || !(x->argv[0] = strdup(cmd)))
        return kube_exec_fail(err, errlen, user, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *a = json_string_value(json_array_get(args, i));
        if (!a)
            return kube_exec_fail(err, errlen, user, "args: expected strings");
        if (!(x->argv[i + 1] = strdup(a)))
            return kube_exec_fail(err, errlen, user, "out of memory");
    }
    return 0;
}

static int kube_exec_env(kube_exec_t *x, const json_t *spec, const char *user, char *err,
                         size_t errlen)
{
    const json_t *env = json_object_get(spec, "env");
    if (env && !json_is_array(env) && !json_is_null(env))
        return kube_exec_fail(err, errlen, user, "env: expected a list of {name, value}");
    size_t n = json_array_size(env);
    x->env = calloc(n + 1, sizeof(char *));
    if (!x->env)
        return kube_exec_fail(err, errlen, user, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(env, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *value = json_string_value(json_object_get(e, "value"));
        if (!name || !*name || strchr(name, '=') || !value)
            return kube_exec_fail(err, errlen, user, "env: each entry needs a name and a value");
        size_t len = strlen(name) + strlen(value) + 2;
        if (!(x->env[i] = malloc(len)))
            return kube_exec_fail(err, errlen, user, "out of memory");
        snprintf(x->env[i], len, "%s=%s", name, value);
    }
    return 0;
}

/* KUBERNETES_EXEC_INFO: never interactive; the cluster when asked for. */
static int kube_exec_info(kube_exec_t *x, const json_t *spec, const kube_conn_t *cl,
                          const char *user, char *err, size_t errlen)
{
    json_t *s = json_pack("{s:b}", "interactive", 0);
    if (s && json_is_true(json_object_get(spec, "provideClusterInfo"))) {
        json_t *c =
            json_pack("{s:s, s:b}", "server", cl->server, "insecure-skip-tls-verify", cl->insecure);
        if (c && cl->tls_server_name)
            json_object_set_new(c, "tls-server-name", json_string(cl->tls_server_name));
        if (c && cl->ca_data) {
            char *b64 = kube_base64_encode(cl->ca_data, cl->ca_len);
            json_object_set_new(c, "certificate-authority-data", json_string(b64 ? b64 : ""));
            free(b64);
        }
        json_object_set_new(s, "cluster", c);
    }
    json_t *info = s ? json_pack("{s:s, s:s, s:o}", "apiVersion", x->api_version, "kind",
                                 "ExecCredential", "spec", s)
                     : NULL;
    char *text = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    size_t len = text ? strlen(text) + sizeof("KUBERNETES_EXEC_INFO=") : 0;
    x->info = text ? malloc(len) : NULL;
    if (x->info)
        snprintf(x->info, len, "KUBERNETES_EXEC_INFO=%s", text);
    free(text);
    return x->info ? 0 : kube_exec_fail(err, errlen, user, "out of memory");
}

kube_exec_t *kube_exec_parse(const json_t *spec, const char *user, const kube_conn_t *cluster,
                             char *err, size_t errlen)
{
    const char *av = json_string_value(json_object_get(spec, "apiVersion"));
    const char *mode = json_string_value(json_object_get(spec, "interactiveMode"));
    if (!json_is_object(spec)) {
        kube_exec_fail(err, errlen, user, "expected a mapping");
        return NULL;
    }
    if (!av || (strcmp(av, "client.authentication.k8s.io/v1") != 0 &&
                strcmp(av, "client.authentication.k8s.io/v1beta1") != 0)) {
        kube_exec_fail(err, errlen, user,
                       "apiVersion: want client.authentication.k8s.io/v1 or v1beta1");
        return NULL;
    }
    if (mode && strcmp(mode, "Always") == 0) {
        kube_exec_fail(err, errlen, user,
                       "interactiveMode Always: meshfed runs plugins without a terminal");
        return NULL;
    }
    kube_exec_t *x = kube_exec_alloc();
    if (!x || !(x->api_version = strdup(av)) || kube_exec_args(x, spec, user, err, errlen) < 0 ||
        kube_exec_env(x, spec, user, err, errlen) < 0 ||
        kube_exec_info(x, spec, cluster, user, err, errlen) < 0) {
        if (!x || !x->api_version)
            kube_exec_fail(err, errlen, user, "out of memory");
        kube_exec_free(x);
        return NULL;
    }
    return x;
}

/* ---------- running it ---------- */

/* meshfed's environment, then the kubeconfig's pairs (which win), then
 * KUBERNETES_EXEC_INFO. */
static char **kube_exec_envp(const kube_exec_t *x)
{
    size_t n = 0, m = 0, k = 0;
    while (environ && environ[n])
        n++;
    while (x->env[m])
        m++;
    char **v = calloc(n + m + 2, sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) + 1 : 0;
        bool overridden = !eq || strncmp(environ[i], "KUBERNETES_EXEC_INFO=", nl) == 0;
        for (size_t j = 0; j < m && !overridden; j++)
            overridden = strncmp(environ[i], x->env[j], nl) == 0;
        if (!overridden)
            v[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        v[k++] = x->env[j];
    v[k] = x->info;
    return v;
}

typedef struct kube_outbuf {
    char *p;
    size_t len;
    bool full;
} kube_outbuf_t;

static void kube_outbuf_read(int fd, kube_outbuf_t *b, bool *open)
{
    char tmp[4096];
    ssize_t r = read(fd, tmp, sizeof(tmp));
    if (r <= 0) {
        if (r == 0 || (errno != EINTR && errno != EAGAIN))
            *open = false;
        return;
    }
    size_t room = KUBE_EXEC_MAX_OUT - b->len;
    size_t n = (size_t)r < room ? (size_t)r : room;
    b->full |= (size_t)r > room;
    char *p = realloc(b->p, b->len + n + 1);
    if (!p) {
        b->full = true;
        return;
    }
    b->p = p;
    memcpy(b->p + b->len, tmp, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Runs the plugin; its stdout in *out (caller frees). 0, or -1 with err. */
static int kube_exec_run(const kube_exec_t *x, char **out, char *err, size_t errlen)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc = -1;
    kube_outbuf_t so = {0}, se = {0};
    char **envp = kube_exec_envp(x);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    *out = NULL;
    if (!envp || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "exec plugin \"%s\": %s", x->argv[0], strerror(errno));
        goto done;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    pid_t pid;
    int e = posix_spawnp(&pid, x->argv[0], &fa, NULL, x->argv, envp);
    if (e != 0) {
        snprintf(err, errlen, "exec plugin \"%s\": cannot run it: %s", x->argv[0], strerror(e));
        goto done;
    }
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    bool oopen = true, eopen = true, timed_out = false;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (oopen || eopen) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = KUBE_EXEC_TIMEOUT_MS -
                    ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) {
            timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd fds[2] = {{.fd = oopen ? po[0] : -1, .events = POLLIN},
                                {.fd = eopen ? pe[0] : -1, .events = POLLIN}};
        if (poll(fds, 2, (int)left) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            kube_outbuf_read(po[0], &so, &oopen);
        if (fds[1].revents)
            kube_outbuf_read(pe[0], &se, &eopen);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    const char *why = se.p ? se.p : "";
    if (timed_out) {
        snprintf(err, errlen, "exec plugin \"%s\": did not finish in %d s", x->argv[0],
                 KUBE_EXEC_TIMEOUT_MS / 1000);
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errlen, "exec plugin \"%s\": %s %d: %.300s", x->argv[0],
                 WIFEXITED(st) ? "exit status" : "killed by signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), why);
    } else if (so.full) {
        snprintf(err, errlen, "exec plugin \"%s\": output larger than %u KiB", x->argv[0],
                 KUBE_EXEC_MAX_OUT >> 10);
    } else {
        *out = so.p ? so.p : strdup("");
        so.p = NULL;
        rc = *out ? 0 : -1;
    }
done:
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    free(so.p);
    free(se.p);
    free(envp);
    return rc;
}

/* The plugin's stdout as a credential and its expiry (0: none). */
static int kube_exec_parse_output(const kube_exec_t *x, const char *text, kube_cred_t *c,
                                  int64_t *expires, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    const json_t *st = json_object_get(j, "status");
    const char *av = json_string_value(json_object_get(j, "apiVersion"));
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *tok = json_string_value(json_object_get(st, "token"));
    const char *cert = json_string_value(json_object_get(st, "clientCertificateData"));
    const char *key = json_string_value(json_object_get(st, "clientKeyData"));
    const char *exp = json_string_value(json_object_get(st, "expirationTimestamp"));
    const char *why = NULL;
    memset(c, 0, sizeof(*c));
    *expires = 0;
    if (!j)
        why = je.text;
    else if (!kind || strcmp(kind, "ExecCredential") != 0)
        why = "kind is not ExecCredential";
    else if (!av || strcmp(av, x->api_version) != 0)
        why = "apiVersion differs from the kubeconfig's";
    else if (!json_is_object(st))
        why = "no status";
    else if (!tok && (!cert || !key))
        why = "status has neither a token nor clientCertificateData and clientKeyData";
    else if ((cert != NULL) != (key != NULL))
        why = "status has only one of clientCertificateData and clientKeyData";
    else if (exp && kube_parse_rfc3339(exp, expires) < 0)
        why = "status.expirationTimestamp is not an RFC 3339 time";
    if (!why && ((tok && !(c->token = strdup(tok))) || (cert && !(c->cert = strdup(cert))) ||
                 (key && !(c->key = strdup(key)))))
        why = "out of memory";
    c->cert_len = cert ? strlen(cert) : 0;
    c->key_len = key ? strlen(key) : 0;
    json_decref(j);
    if (!why)
        return 0;
    kube_cred_clear(c);
    snprintf(err, errlen, "exec plugin \"%s\": output is not a usable ExecCredential: %s",
             x->argv[0], why);
    return -1;
}

int kube_exec_credential(kube_exec_t *x, kube_cred_t *out, char *err, size_t errlen)
{
    pthread_mutex_lock(&x->mu);
    int64_t now = (int64_t)time(NULL);
    int rc = 0;
    if (!x->have || (x->expires && now >= x->expires - KUBE_EXEC_EARLY_S)) {
        char *text = NULL;
        kube_cred_t c;
        int64_t expires;
        rc = kube_exec_run(x, &text, err, errlen);
        if (rc == 0)
            rc = kube_exec_parse_output(x, text, &c, &expires, err, errlen);
        if (text)
            memset(text, 0, strlen(text));
        free(text);
        if (rc == 0) {
            kube_cred_clear(&x->cached);
            x->cached = c;
            x->expires = expires;
            x->have = true;
        }
    }
    if (rc == 0 && kube_cred_copy(out, &x->cached) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    pthread_mutex_unlock(&x->mu);
    return rc;
}

void kube_exec_invalidate(kube_exec_t *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->mu);
    x->have = false;
    pthread_mutex_unlock(&x->mu);
}
