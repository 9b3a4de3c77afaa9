/*
 * log.c - one line per event on stderr, as text or as JSON.
 */
#include "ctl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int min_level = CTL_INFO;
static bool as_json;

void ctl_log_setup(int level, bool json)
{
    min_level = level;
    as_json = json;
}

void ctl_xds_log(void *arg, const char *msg)
{
    (void)arg;
    ctl_log(CTL_WARN, "%s", msg);
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
        json_t *o = json_pack("{s:s, s:s, s:s}", "time", ts, "level", names[level], "msg", msg);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s)
            fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(o);
    } else {
        fprintf(stderr, "%s %-5s %s\n", ts, names[level], msg);
    }
}
