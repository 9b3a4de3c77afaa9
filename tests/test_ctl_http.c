/*
 * test_ctl_http.c - the pure parts of the debug endpoint (http.c): which
 * query values it accepts, how --debug-listen and --probe-listen parse.
 */
#include "ctl_int.h"

#include <arpa/inet.h>
#include <check.h>
#include <string.h>

START_TEST(query_accepts_printable_values_up_to_512_bytes)
{
    char v[514];
    ck_assert(ctl_http_valid_query("shop/checkout"));
    ck_assert(ctl_http_valid_query("ä ü \x7f"));
    memset(v, 'a', 512);
    v[512] = '\0';
    ck_assert(ctl_http_valid_query(v));
    v[512] = 'a';
    v[513] = '\0';
    ck_assert(!ctl_http_valid_query(v));
}
END_TEST

START_TEST(query_rejects_absent_empty_and_control_characters)
{
    ck_assert(!ctl_http_valid_query(NULL));
    ck_assert(!ctl_http_valid_query(""));
    ck_assert(!ctl_http_valid_query("a\nb"));
    ck_assert(!ctl_http_valid_query("a\rb"));
    ck_assert(!ctl_http_valid_query("\x1b[31m"));
    ck_assert(!ctl_http_valid_query("tab\there"));
}
END_TEST

static const char *addr(const struct sockaddr_in *sa, char *buf)
{
    return inet_ntop(AF_INET, &sa->sin_addr, buf, INET_ADDRSTRLEN);
}

START_TEST(listen_parses_host_and_port)
{
    struct sockaddr_in sa;
    char err[CTL_ERRLEN] = "", a[INET_ADDRSTRLEN];
    ck_assert_int_eq(ctl_http_parse_listen("debug-listen", "10.1.2.3:15014", &sa, err, sizeof(err)),
                     0);
    ck_assert_int_eq(sa.sin_family, AF_INET);
    ck_assert_str_eq(addr(&sa, a), "10.1.2.3");
    ck_assert_int_eq(ntohs(sa.sin_port), 15014);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(listen_localhost_is_loopback_and_empty_host_any)
{
    struct sockaddr_in sa;
    char err[CTL_ERRLEN], a[INET_ADDRSTRLEN];
    ck_assert_int_eq(ctl_http_parse_listen("x", "localhost:0", &sa, err, sizeof(err)), 0);
    ck_assert_str_eq(addr(&sa, a), "127.0.0.1");
    ck_assert_int_eq(ntohs(sa.sin_port), 0);
    ck_assert_int_eq(ctl_http_parse_listen("x", ":65535", &sa, err, sizeof(err)), 0);
    ck_assert_str_eq(addr(&sa, a), "0.0.0.0");
    ck_assert_int_eq(ntohs(sa.sin_port), 65535);
}
END_TEST

START_TEST(listen_malformed_port_names_the_setting)
{
    const char *bad[] = {"127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:80x",
                         "127.0.0.1:8 0",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sockaddr_in sa;
        char err[CTL_ERRLEN] = "", want[64];
        ck_assert_msg(ctl_http_parse_listen("probe-listen", bad[i], &sa, err, sizeof(err)) == -1,
                      "%s", bad[i]);
        snprintf(want, sizeof(want), "probe-listen: \"%s\" is not host:port", bad[i]);
        ck_assert_msg(strcmp(err, want) == 0, "%s: %s", bad[i], err);
    }
}
END_TEST

START_TEST(listen_host_must_be_ipv4)
{
    const char *bad[] = {"example.com:80", "[::1]:80", "::1:80", "1.2.3.256:80", "1.2.3:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sockaddr_in sa;
        char err[CTL_ERRLEN] = "";
        ck_assert_int_eq(ctl_http_parse_listen("debug-listen", bad[i], &sa, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "is not an IPv4 address"), "%s: %s", bad[i], err);
    }
}
END_TEST

START_TEST(listen_host_too_long_is_refused)
{
    char listen[400], err[CTL_ERRLEN] = "";
    struct sockaddr_in sa;
    memset(listen, '1', 300);
    snprintf(listen + 300, sizeof(listen) - 300, ":80");
    ck_assert_int_eq(ctl_http_parse_listen("debug-listen", listen, &sa, err, sizeof(err)), -1);
    ck_assert(strstr(err, "is not host:port"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl_http");
    TCase *q = tcase_create("query");
    tcase_add_test(q, query_accepts_printable_values_up_to_512_bytes);
    tcase_add_test(q, query_rejects_absent_empty_and_control_characters);
    suite_add_tcase(s, q);
    TCase *l = tcase_create("listen");
    tcase_add_test(l, listen_parses_host_and_port);
    tcase_add_test(l, listen_localhost_is_loopback_and_empty_host_any);
    tcase_add_test(l, listen_malformed_port_names_the_setting);
    tcase_add_test(l, listen_host_must_be_ipv4);
    tcase_add_test(l, listen_host_too_long_is_refused);
    suite_add_tcase(s, l);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
