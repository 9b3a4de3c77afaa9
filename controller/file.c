/*
 * file.c - reading the files an operator or a demo directory names.
 *
 * Only regular files, and only up to a size limit: a FIFO, a device or a
 * directory where a manifest, the config file, a kubeconfig or the debug
 * token was expected must give a clear error, never block a thread (a FIFO
 * opened for reading waits for a writer; reading /dev/zero never ends).
 */
#include "ctl_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *ctl_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    /* O_NONBLOCK: open() of a FIFO returns at once instead of waiting */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (%s)", path,
                 S_ISFIFO(st.st_mode)   ? "a FIFO"
                 : S_ISDIR(st.st_mode)  ? "a directory"
                 : S_ISCHR(st.st_mode)  ? "a character device"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "not readable as a file");
        close(fd);
        return NULL;
    }
    if ((unsigned long long)st.st_size > max) {
        snprintf(err, errlen, "%s: %lld bytes, more than the limit of %zu", path,
                 (long long)st.st_size, max);
        close(fd);
        return NULL;
    }
    /* the size may change while we read (a non-atomic rewrite): read up to
     * the limit plus one byte to notice a file that grew past it */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "%s: out of memory", path);
            close(fd);
            return NULL;
        }
        if (n == cap) {
            if (cap > max) {
                snprintf(err, errlen, "%s: grew past the limit of %zu bytes while read", path, max);
                free(buf);
                close(fd);
                return NULL;
            }
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *b = realloc(buf, cap + 1);
            if (!b)
                free(buf);
            buf = b;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        snprintf(err, errlen, "%s: grew past the limit of %zu bytes while read", path, max);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int ctl_manifest_load_file(const char *path, kube_manifest_fn fn, void *arg, char *err,
                           size_t errlen)
{
    size_t len;
    char *text = ctl_read_file(path, CTL_MAX_MANIFEST, &len, err, errlen);
    if (!text)
        return -1;
    char lerr[CTL_ERRLEN] = "";
    int rc = kube_manifest_load_string(text, len, fn, arg, lerr, sizeof(lerr));
    free(text);
    if (rc < 0) {
        /* the parser names "<string>": name the file */
        const char *rest = strncmp(lerr, "<string>", 8) == 0 ? lerr + 8 : lerr;
        snprintf(err, errlen, "%s%s%s", path, rest == lerr ? ": " : "", rest);
    } else if (rc > 0) {
        err[0] = '\0';
    }
    return rc;
}
