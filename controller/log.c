/*
 * log.c - one line per event on stderr, as text or as JSON; and the UTF-8
 * cleaning every text that reaches JSON goes through (a log line, an error
 * body), so that no byte a client or an API server sent can make it vanish.
 */
#include "ctl_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

size_t ctl_utf8_clean(const char *in, char *out, size_t outlen)
{
    static const char ell[] = "\xe2\x80\xa6"; /* U+2026 */
    const unsigned char *start = (const unsigned char *)(in ? in : "");
    if (!outlen)
        return 0;
    size_t total = 0;
    for (const unsigned char *p = start; *p;) {
        size_t n = utf8_seq(p);
        total += n ? n : 4;
        p += n ? n : 1;
    }
    bool cut = total > outlen - 1;
    size_t limit = outlen - 1;
    if (cut)
        limit = limit >= sizeof(ell) - 1 ? limit - (sizeof(ell) - 1) : 0;
    size_t o = 0;
    for (const unsigned char *p = start; *p;) {
        size_t n = utf8_seq(p);
        char esc[5];
        const char *piece = (const char *)p;
        size_t plen = n;
        if (!n) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            piece = esc;
            plen = 4;
        }
        if (o + plen > limit)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        p += n ? n : 1;
    }
    if (cut && o + sizeof(ell) - 1 <= outlen - 1) {
        memcpy(out + o, ell, sizeof(ell) - 1);
        o += sizeof(ell) - 1;
    }
    out[o] = '\0';
    return o;
}

static int min_level = CTL_INFO;
static bool as_json;

void ctl_log_setup(int level, bool json)
{
    min_level = level;
    as_json = json;
}

void ctl_xds_log(void *arg, bool warn, const char *msg)
{
    (void)arg;
    ctl_log(warn ? CTL_WARN : CTL_INFO, "%s", msg);
}

/* The subject a message names in meshfed's own wording, as a field a log
 * pipeline can filter on: "cluster <id>..." and "<id>/<file>: ..." (demo)
 * give cluster, "xds: node <id>..." gives proxy, and "... <cluster>: <res>"
 * style kube errors give resource too. */
static void log_fields(json_t *o, const char *msg)
{
    static const char *const resources[] = {"namespaces", "services",   "endpointslices",
                                            "pods",       "nodes",      "gateways",
                                            "secrets",    "configmaps", "servicescopes"};
    char v[256];
    const char *p = NULL, *key = NULL;
    if (strncmp(msg, "cluster ", 8) == 0)
        p = msg + 8, key = "cluster";
    else if (strncmp(msg, "xds: node ", 10) == 0)
        p = msg + 10, key = "proxy";
    if (p) {
        size_t n = strcspn(p, " :,;()");
        if (n && n < sizeof(v)) {
            memcpy(v, p, n);
            v[n] = '\0';
            json_object_set_new(o, key, json_string(v));
        }
    }
    for (size_t i = 0; i < sizeof(resources) / sizeof(resources[0]); i++) {
        const char *r = strstr(msg, resources[i]);
        size_t n = strlen(resources[i]);
        if (r && (r == msg || r[-1] == ' ') && (r[n] == ':' || r[n] == ' ' || !r[n])) {
            json_object_set_new(o, "resource", json_string(resources[i]));
            break;
        }
    }
}

void ctl_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    char msg[2048], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
    if (as_json) {
        char clean[2048 + 64];
        ctl_utf8_clean(msg, clean, sizeof(clean));
        json_t *o = json_pack("{s:s, s:s, s:s}", "time", ts, "level", names[level], "msg", clean);
        if (o)
            log_fields(o, clean);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s)
            fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(o);
    } else {
        fprintf(stderr, "%s %-5s %s\n", ts, names[level], msg);
    }
}
