/*
 * ratelog.c - rate-limited log lines, one budget per kind of problem.
 *
 * A source that fails over and over (an API server down, a stream of bad
 * objects) must not flood the log, yet no kind of error may hide another:
 * each key (say "cluster west, list pods, HTTP 403") gets its own window.
 * The first line of a window is logged; the others are counted, and when the
 * window ends one line says how many were suppressed and what the last one
 * said. A key whose window ended quietly is forgotten, so a new outage logs
 * at once.
 */
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYLEN 160
#define MSGLEN 512

typedef struct rl_entry {
    char key[KEYLEN];
    int level;
    time_t start;
    unsigned long suppressed;
    char last[MSGLEN]; /* the newest suppressed line */
} rl_entry_t;

struct ctl_ratelog {
    pthread_mutex_t lock;
    int window_s;
    size_t max;
    rl_entry_t *v;
    size_t n;
    rl_entry_t other; /* shared by every key once the table is full */
};

ctl_ratelog_t *ctl_ratelog_new(int window_s, size_t max_keys)
{
    ctl_ratelog_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->v = calloc(max_keys ? max_keys : 1, sizeof(*r->v));
    if (!r->v) {
        free(r);
        return NULL;
    }
    r->window_s = window_s;
    r->max = max_keys ? max_keys : 1;
    snprintf(r->other.key, sizeof(r->other.key), "(other kinds of errors: too many to track)");
    r->other.start = (time_t)-1;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void ctl_ratelog_free(ctl_ratelog_t *r)
{
    if (!r)
        return;
    ctl_ratelog_flush(r, (time_t)-1);
    pthread_mutex_destroy(&r->lock);
    free(r->v);
    free(r);
}

static void report(const rl_entry_t *e, int window_s)
{
    ctl_log(e->level, "%s: %lu more like this in the last %d s (suppressed); the last: %s", e->key,
            e->suppressed, window_s, e->last);
}

bool ctl_ratelog(ctl_ratelog_t *r, time_t now, int level, const char *key, const char *msg)
{
    if (!r) { /* could not be allocated: log everything rather than nothing */
        ctl_log(level, "%s", msg);
        return true;
    }
    pthread_mutex_lock(&r->lock);
    rl_entry_t *e = NULL;
    for (size_t i = 0; i < r->n && !e; i++)
        if (strncmp(r->v[i].key, key, KEYLEN - 1) == 0)
            e = &r->v[i];
    bool fresh = !e && r->n < r->max;
    if (!e && !fresh)
        e = &r->other;
    if (e && e->start != (time_t)-1 && now - e->start < r->window_s) {
        e->suppressed++;
        snprintf(e->last, sizeof(e->last), "%s", msg);
        pthread_mutex_unlock(&r->lock);
        return false;
    }
    if (e && e->suppressed)
        report(e, r->window_s);
    if (fresh) {
        e = &r->v[r->n++];
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    e->level = level;
    e->start = now;
    e->suppressed = 0;
    e->last[0] = '\0';
    pthread_mutex_unlock(&r->lock);
    ctl_log(level, "%s", msg);
    return true;
}

size_t ctl_ratelog_flush(ctl_ratelog_t *r, time_t now)
{
    size_t reported = 0;
    if (!r)
        return 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n;) {
        rl_entry_t *e = &r->v[i];
        if (now != (time_t)-1 && now - e->start < r->window_s) {
            i++;
            continue;
        }
        if (e->suppressed) {
            report(e, r->window_s);
            reported++;
        }
        r->v[i] = r->v[--r->n];
    }
    rl_entry_t *o = &r->other;
    if (o->start != (time_t)-1 && (now == (time_t)-1 || now - o->start >= r->window_s)) {
        if (o->suppressed) {
            report(o, r->window_s);
            reported++;
        }
        o->start = (time_t)-1;
        o->suppressed = 0;
    }
    pthread_mutex_unlock(&r->lock);
    return reported;
}

unsigned long ctl_ratelog_suppressed(ctl_ratelog_t *r, const char *key)
{
    unsigned long n = 0;
    if (!r)
        return 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++)
        if (strncmp(r->v[i].key, key, KEYLEN - 1) == 0)
            n = r->v[i].suppressed;
    pthread_mutex_unlock(&r->lock);
    return n;
}
