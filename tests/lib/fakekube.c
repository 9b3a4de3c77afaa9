/*
 * fakekube.c - the fakekube fixture: a temporary directory with a test CA and
 * certificates made by the openssl CLI, tests/fakekube/fakekube.py serving
 * clusters over HTTPS from it, and its control POSTs.
 */
#include "testlib.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void tl_deadline(struct timespec *dl, int ms)
{
    clock_gettime(CLOCK_REALTIME, dl);
    dl->tv_sec += ms / 1000;
    dl->tv_nsec += (long)(ms % 1000) * 1000000;
    if (dl->tv_nsec >= 1000000000) {
        dl->tv_sec++;
        dl->tv_nsec -= 1000000000;
    }
}

bool tl_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) == 0)
        return true;
    fprintf(stderr, "failed: %s\n", cmd);
    return false;
}

bool tl_fk_init(tl_fakekube_t *fk, const char *name)
{
    memset(fk, 0, sizeof(*fk));
    fk->to_child = -1;
    snprintf(fk->dir, sizeof(fk->dir), "/tmp/meshfed-%s-XXXXXX", name);
    return mkdtemp(fk->dir) != NULL;
}

bool tl_fk_make_certs(tl_fakekube_t *fk)
{
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    return tl_sh("cd %s && openssl req -x509 %s -keyout ca.key -out ca.crt -days 2 "
                 "-subj /CN=test-ca >/dev/null 2>&1",
                 fk->dir, ec) &&
           tl_sh("cd %s && openssl req -x509 %s -keyout ca2.key -out ca2.crt -days 2 "
                 "-subj /CN=other-ca >/dev/null 2>&1",
                 fk->dir, ec) &&
           tl_sh("cd %s && openssl req %s -keyout server.key -out server.csr -subj /CN=fakekube "
                 ">/dev/null 2>&1 && printf "
                 "'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:kube.test\\n'"
                 " > ext && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
                 "-CAcreateserial -out server.crt -days 2 -extfile ext >/dev/null 2>&1",
                 fk->dir, ec) &&
           tl_sh("cd %s && openssl req %s -keyout client.key -out client.csr -subj /CN=meshfed "
                 ">/dev/null 2>&1 && openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
                 "-CAcreateserial -out client.crt -days 2 >/dev/null 2>&1",
                 fk->dir, ec);
}

bool tl_fk_start(tl_fakekube_t *fk, const char *token, bool client_ca, const char *const *clusters,
                 int n)
{
    char script[1024], cert[128], key[128], ca[128];
    const char *td = getenv("MESHFED_TESTDATA");
    if (!td || n < 1 || n > TL_FK_MAX) {
        fprintf(stderr, "fakekube: MESHFED_TESTDATA unset or %d clusters\n", n);
        return false;
    }
    snprintf(script, sizeof(script), "%s/../fakekube/fakekube.py", td);
    snprintf(cert, sizeof(cert), "%s/server.crt", fk->dir);
    snprintf(key, sizeof(key), "%s/server.key", fk->dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", fk->dir);
    const char *argv[16 + 2 * TL_FK_MAX];
    int a = 0;
    argv[a++] = "python3";
    argv[a++] = script;
    argv[a++] = "--cert";
    argv[a++] = cert;
    argv[a++] = "--key";
    argv[a++] = key;
    argv[a++] = "--token";
    argv[a++] = token;
    if (client_ca) {
        argv[a++] = "--client-ca";
        argv[a++] = ca;
    }
    for (int i = 0; i < n; i++) {
        argv[a++] = "--cluster";
        argv[a++] = clusters[i];
    }
    argv[a] = NULL;
    int in[2], out[2];
    if (pipe(in) != 0)
        return false;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return false;
    }
    fk->pid = fork();
    if (fk->pid < 0)
        return false;
    if (fk->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv("/usr/bin/python3", (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fk->to_child = in[1];
    FILE *f = fdopen(out[0], "r");
    char line[256] = "";
    bool got = f && fgets(line, sizeof(line), f);
    if (f)
        fclose(f);
    /* READY a=<port> b=<port> ..., in the order of the clusters */
    if (!got || strncmp(line, "READY", 5) != 0) {
        fprintf(stderr, "fakekube: no READY line (%s)\n", line);
        return false;
    }
    const char *p = line + 5;
    for (int i = 0; i < n; i++) {
        char want[64];
        int len = snprintf(want, sizeof(want), " %s=", clusters[i]);
        if (strncmp(p, want, (size_t)len) != 0 || sscanf(p + len, "%d", &fk->port[i]) != 1) {
            fprintf(stderr, "fakekube: bad READY line: %s", line);
            return false;
        }
        p = strchr(p + len, ' ');
        if (!p)
            p = "";
    }
    fk->nport = n;
    return true;
}

void tl_fk_stop(tl_fakekube_t *fk)
{
    if (fk->pid <= 0)
        return;
    close(fk->to_child);
    kill(fk->pid, SIGTERM);
    waitpid(fk->pid, NULL, 0);
    fk->pid = 0;
    fk->to_child = -1;
}

bool tl_fk_cleanup(tl_fakekube_t *fk)
{
    tl_fk_stop(fk);
    return fk->dir[0] == '\0' || tl_sh("rm -rf %s", fk->dir);
}

static size_t ctl_write(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

long tl_fk_ctl(const tl_fakekube_t *fk, int i, const char *what, const char *body)
{
    char url[256], ca[128];
    long code = 0;
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/fake/%s", fk->port[i], what);
    snprintf(ca, sizeof(ca), "%s/ca.crt", fk->dir);
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "{}");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_write);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) {
        fprintf(stderr, "fakekube: POST %s: %s\n", url, curl_easy_strerror(rc));
        return -1;
    }
    return code;
}

void tl_fk_conn(const tl_fakekube_t *fk, int i, kube_conn_t *c, const char *ca, const char *token)
{
    char buf[256];
    memset(c, 0, sizeof(*c));
    snprintf(buf, sizeof(buf), "https://127.0.0.1:%d", fk->port[i]);
    c->server = strdup(buf);
    snprintf(buf, sizeof(buf), "%s/%s", fk->dir, ca);
    c->ca_file = strdup(buf);
    if (token)
        c->token = strdup(token);
}
