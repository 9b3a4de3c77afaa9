/*
 * listen_check.c - noticing an xDS listener that grpc core stopped serving.
 *
 * grpc core 1.51 (Debian 12's) gives a listening port up for good when
 * accept4() fails with anything but EAGAIN, EINTR or ECONNABORTED: after one
 * EMFILE (a flood of connections, too low a file limit) the port still
 * listens in the kernel, connections queue in its backlog, and nothing ever
 * takes them, while every other part of meshfed looks healthy.
 *
 * Every XDS_PROBE_US the CQ thread connects to each of its ports over
 * loopback and closes at once (a live listener accepts that and drops it),
 * then reads the port's accept queue from /proc/net/tcp{,6}. A queue that
 * is never empty and never shorter at any probe for XDS_STALL_US, while no
 * stream is accepted, is a dead listener (a busy one, as in a reconnect
 * storm, takes some): it is logged, and /ready and /healthz fail, so that
 * Kubernetes stops sending proxies to this replica and restarts it. An
 * accept queue that empties again clears it.
 */
#include "xds_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

/* The accept queue of the listening TCP sockets on port in one
 * /proc/net/tcp file: added to *q; false when the file has none. */
static bool queue_in(const char *path, int port, unsigned long *q)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    if (!fgets(line, sizeof(line), f)) { /* the header */
        fclose(f);
        return false;
    }
    while (fgets(line, sizeof(line), f)) {
        char local[64];
        unsigned st, lport;
        unsigned long tx, rx;
        if (sscanf(line, " %*d: %63s %*s %x %lx:%lx", local, &st, &tx, &rx) != 4)
            continue;
        const char *colon = strrchr(local, ':');
        if (st != 0x0A || !colon || sscanf(colon + 1, "%x", &lport) != 1 || (int)lport != port)
            continue; /* 0x0A: LISTEN, whose rx_queue is its accept queue */
        *q += rx;
        found = true;
    }
    fclose(f);
    return found;
}

int xds_accept_queue(int port, unsigned long *q)
{
    *q = 0;
    bool v4 = queue_in("/proc/net/tcp", port, q);
    bool v6 = queue_in("/proc/net/tcp6", port, q);
    return v4 || v6 ? 0 : -1;
}

/* A connection to port over loopback, closed at once (non-blocking: a
 * full backlog must not hold the CQ thread). */
static void knock(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS) {
        /* the handshake completes in the kernel; wait a moment for it so
         * that the connection reaches the accept queue before the close */
        struct timeval tv = {0, 100000};
        fd_set w;
        FD_ZERO(&w);
        FD_SET(fd, &w);
        select(fd + 1, NULL, &w, NULL, &tv);
    }
    close(fd);
}

static void probe_port(xds_server_t *s, xds_listen_check_t *lc, int port, uint64_t now,
                       bool accepted)
{
    unsigned long q = 0;
    if (port <= 0 || xds_accept_queue(port, &q) < 0) {
        lc->busy_since = 0; /* cannot tell: say nothing */
        return;
    }
    bool moved = accepted || q < lc->last_q;
    lc->last_q = q;
    if (q == 0) {
        lc->busy_since = 0;
        atomic_store(&lc->stalled, false);
        knock(port); /* for the next probe to see taken, or not */
        return;
    }
    if (!lc->busy_since || moved)
        lc->busy_since = now;
    if (now - lc->busy_since >= XDS_STALL_US && !atomic_load(&lc->stalled)) {
        atomic_store(&lc->stalled, true);
        char msg[300];
        snprintf(msg, sizeof(msg),
                 "xds: the listener on port %d takes no connections (%lu waiting for %d s): grpc "
                 "core stops accepting on a port after accept fails, as when meshfed runs out of "
                 "file descriptors; /ready and /healthz now fail so that this replica is replaced",
                 port, q, (int)((now - lc->busy_since) / 1000000));
        pthread_mutex_lock(&s->mu);
        xds_log(s, true, "%s", msg);
        pthread_mutex_unlock(&s->mu);
    }
}

void xds_listen_probe(xds_server_t *s)
{
    uint64_t now = xds_now_us();
    if (atomic_exchange(&s->probing, true))
        return; /* another CQ thread is at it */
    if (now - s->probed_us >= XDS_PROBE_US) {
        s->probed_us = now;
        pthread_mutex_lock(&s->mu);
        uint64_t streams = s->stats.streams_total;
        pthread_mutex_unlock(&s->mu);
        bool accepted = streams != s->probed_streams;
        s->probed_streams = streams;
        probe_port(s, &s->check[0], s->port, now, accepted);
        probe_port(s, &s->check[1], s->tls_port, now, accepted);
    }
    atomic_store(&s->probing, false);
}

bool xds_server_listening(xds_server_t *s, char *why, size_t whylen)
{
    for (int i = 0; i < 2; i++)
        if (atomic_load(&s->check[i].stalled)) {
            snprintf(why, whylen, "the xDS listener on port %d stopped taking connections",
                     i ? s->tls_port : s->port);
            return false;
        }
    return true;
}
