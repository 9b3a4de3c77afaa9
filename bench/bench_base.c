/*
 * bench_base.c - what the one string hash map (model/base) costs: put, get
 * and del of N keys shaped like object keys ("ns/name-123456"), in operations
 * per second, and resident bytes per entry (entry, key and bucket array,
 * allocator overhead included; values are borrowed and not counted).
 * Usage: bench_base [keys]   (default 1,000,000)
 */
#include "base.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    if (n == 0)
        return 2;
    /* the keys are made up front, so that the timings are the map's alone */
    char(*keys)[32] = malloc(n * sizeof(*keys));
    if (!keys)
        return 1;
    for (size_t i = 0; i < n; i++)
        snprintf(keys[i], sizeof(keys[i]), "ns/name-%06zu", i);
    static int val;
    base_map_t m;
    base_map_init(&m);

    size_t rss0 = (size_t)tl_rss_kb() * 1024;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        if (base_map_put(&m, keys[i], &val) != NULL)
            return 1;
    double t1 = now_s();
    size_t rss1 = (size_t)tl_rss_kb() * 1024;
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        found += base_map_get(&m, keys[(i * 7919) % n]) != NULL;
    double t2 = now_s();
    for (size_t i = 0; i < n; i++)
        if (base_map_del(&m, keys[i]) == NULL)
            return 1;
    double t3 = now_s();
    if (found != n || m.n != 0)
        return 1;

    printf("base_map, %zu keys like \"%s\": put %.1f M/s, get %.1f M/s, del %.1f M/s, "
           "%.0f bytes per entry\n",
           n, keys[n - 1], (double)n / (t1 - t0) / 1e6, (double)n / (t2 - t1) / 1e6,
           (double)n / (t3 - t2) / 1e6, (double)(rss1 - rss0) / (double)n);
    base_map_destroy(&m, NULL);
    free(keys);
    return 0;
}
