/*
 * ip.c - binary IP addresses: parsing, formatting, comparison.
 *
 * Addresses are kept as 4 or 16 bytes exactly as written: an IPv4-mapped
 * IPv6 address ("::ffff:1.2.3.4") stays a 16-byte address, because
 * Kubernetes reports the address family a cluster actually uses.
 */
#include <arpa/inet.h>
#include <string.h>

#include "model.h"

int model_ip_parse(const char *s, model_ip_t *ip)
{
    uint8_t b[16];

    if (!s)
        return -1;
    /* A ':' can only appear in IPv6 text; inet_pton rejects the rest
     * (zones, leading zeros in IPv4 octets, surrounding blanks). */
    if (strchr(s, ':')) {
        if (inet_pton(AF_INET6, s, b) != 1)
            return -1;
        ip->len = 16;
    } else {
        if (inet_pton(AF_INET, s, b) != 1)
            return -1;
        ip->len = 4;
    }
    memset(ip->b, 0, sizeof(ip->b));
    memcpy(ip->b, b, ip->len);
    return 0;
}

/* An address of any other length (len 0: "no address") formats as "". */
const char *model_ip_format(const model_ip_t *ip, char *buf, size_t len)
{
    int af = ip->len == 4 ? AF_INET : ip->len == 16 ? AF_INET6 : 0;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (af && !inet_ntop(af, ip->b, buf, (socklen_t)len))
        buf[0] = '\0'; /* buffer too small: never return a partial address */
    return buf;
}

bool model_ip_equal(const model_ip_t *a, const model_ip_t *b)
{
    /* The length bound keeps a corrupt len from reading past b[]. */
    return a->len == b->len && a->len <= sizeof(a->b) && memcmp(a->b, b->b, a->len) == 0;
}
