/*
 * test_ctl.c - the controller's settings: flags over environment over config
 * file over defaults, and clear errors that name the setting.
 */
#include "ctl_int.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int load(ctl_config_t *c, char *err, int argc, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, argc);
    argv[0] = "meshfed";
    for (int i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc + 1] = NULL;
    return ctl_config_load(c, argc + 1, argv, err, CTL_ERRLEN);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/meshfed-test-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void clear_env(void)
{
    unsetenv("CLUSTER_ID");
    unsetenv("MESHFED_DEBOUNCE_MS");
    unsetenv("MESHFED_LOG_LEVEL");
    unsetenv("MESHFED_CONFIG");
}

START_TEST(config_defaults)
{
    clear_env();
    ctl_config_t c;
    char err[CTL_ERRLEN];
    ck_assert_int_eq(load(&c, err, 0), 0);
    ck_assert_str_eq(c.cluster_id, "Kubernetes");
    ck_assert_str_eq(c.system_namespace, "istio-system");
    ck_assert_str_eq(c.xds_listen, "127.0.0.1:15010");
    ck_assert_str_eq(c.debug_listen, "127.0.0.1:15014");
    ck_assert_int_eq(c.debounce_ms, 100);
    ck_assert_int_eq(c.log_level, CTL_INFO);
    ck_assert(!c.log_json);
    ck_assert(!c.prefer_cluster);
    ck_assert_int_eq(c.kube_max_list_pages, 10000);
    ck_assert_int_eq(c.kube_max_list_objects, 1000000);
    ctl_config_free(&c);
}
END_TEST

/* The chart's values are camelCase: a config file may use those names too. */
START_TEST(config_file_accepts_chart_camel_case)
{
    clear_env();
    char *file = write_tmp("clusterId: camel\nstaleAfter: 42\nsystem-namespace: kebab\n");
    ctl_config_t c;
    char err[CTL_ERRLEN];
    ck_assert_msg(load(&c, err, 2, "--config", file) == 0, "%s", err);
    ck_assert_str_eq(c.cluster_id, "camel");
    ck_assert_int_eq(c.stale_after_s, 42);
    ck_assert_str_eq(c.system_namespace, "kebab");
    ctl_config_free(&c);
    unlink(file);
    free(file);
}
END_TEST

START_TEST(config_flag_beats_env_beats_file)
{
    clear_env();
    char *file = write_tmp("cluster-id: from-file\ndebounce-ms: 7\nlog-level: warn\n"
                           "log-format: json\n");
    setenv("CLUSTER_ID", "from-env", 1);
    setenv("MESHFED_DEBOUNCE_MS", "9", 1);
    ctl_config_t c;
    char err[CTL_ERRLEN];
    ck_assert_msg(load(&c, err, 3, "--config", file, "--cluster-id=from-flag") == 0, "%s", err);
    ck_assert_str_eq(c.cluster_id, "from-flag");
    ck_assert_int_eq(c.debounce_ms, 9);      /* env over file */
    ck_assert_int_eq(c.log_level, CTL_WARN); /* file over default */
    ck_assert(c.log_json);
    ctl_config_free(&c);
    clear_env();
    unlink(file);
    free(file);
}
END_TEST

START_TEST(revision_filter_as_istiod)
{
    ck_assert(ctl_in_revision(NULL, "canary"));
    ck_assert(ctl_in_revision("canary", "canary"));
    ck_assert(!ctl_in_revision("stable", "canary"));
    ck_assert(!ctl_in_revision("", "canary"));
    ck_assert(ctl_in_revision("stable", ""));
    ck_assert(ctl_in_revision("stable", NULL));
}
END_TEST

START_TEST(config_bad_values_name_the_setting)
{
    clear_env();
    static const struct {
        const char *arg, *want;
    } cases[] = {
        {"--debounce-ms=abc", "debounce-ms"},
        {"--debounce-ms=-1", "debounce-ms"},
        {"--stale-after=0", "stale-after"},
        {"--kube-max-list-pages=0", "kube-max-list-pages"},
        {"--kube-max-list-objects=100000001", "kube-max-list-objects"},
        {"--log-level=loud", "log-level"},
        {"--log-format=xml", "log-format"},
        {"--no-such-flag", "no-such-flag"},
        {"--once=maybe", "once"},
        {"--xds-auth=maybe", "xds-auth"},
        {"--ca=maybe", "ca"},
        {"--ca=on", "xds-auth jwt"}, /* a certificate needs a proven identity */
        {"--ca-max-ttl=30s", "ca-max-ttl"},
        {"--ca-max-ttl=1w", "ca-max-ttl"},
        {"--ca-max-ttl=1h", "ca-default-ttl"}, /* the default 24h is now above it */
        {"--ca-node-accounts=ztunnel", "ca-node-accounts"},
        {"--xds-max-connection-age=500ms", "xds-max-connection-age"}, /* under 1s */
        {"--xds-max-connection-age=25d", "xds-max-connection-age"},   /* past grpc's int ms */
        {"--xds-max-connection-age=-5m", "xds-max-connection-age"},
        {"--xds-max-connection-age=30x", "xds-max-connection-age"},
        {"--xds-max-connection-age=", "xds-max-connection-age"},
        {"--xds-max-connection-age=99999999999999999999", "xds-max-connection-age"},
        {"--xds-max-connection-age-grace=1w", "xds-max-connection-age-grace"},
        {"--xds-max-connection-age-grace=-1", "xds-max-connection-age-grace"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl_config_t c;
        char err[CTL_ERRLEN] = "";
        ck_assert_int_eq(load(&c, err, 1, cases[i].arg), -1);
        ck_assert_msg(strstr(err, cases[i].want), "case %s: %s", cases[i].arg, err);
        ctl_config_free(&c);
    }
    setenv("MESHFED_LOG_LEVEL", "verbose", 1);
    ctl_config_t c;
    char err[CTL_ERRLEN] = "";
    ck_assert_int_eq(load(&c, err, 0), -1);
    ck_assert_ptr_nonnull(strstr(err, "log-level"));
    ck_assert_ptr_nonnull(strstr(err, "MESHFED_LOG_LEVEL")); /* what the user set */
    ctl_config_free(&c);
    clear_env();
}
END_TEST

/* The CA follows xds-auth unless told; durations take s, m, h and d. */
START_TEST(config_ca_on_with_jwt_and_durations)
{
    clear_env();
    ctl_config_t c;
    char err[CTL_ERRLEN] = "";
    ck_assert_int_eq(load(&c, err, 0), 0);
    ck_assert(!c.ca_enabled); /* xds-auth none: nothing to certify */
    ck_assert_int_eq(c.ca_max_ttl_s, 86400);
    ck_assert_str_eq(c.ca_node_accounts, "istio-system/ztunnel");
    ctl_config_free(&c);
    ck_assert_int_eq(load(&c, err, 3, "--xds-auth=jwt", "--ca-max-ttl=2d", "--ca-default-ttl=90m"),
                     0);
    ck_assert(c.ca_enabled);
    ck_assert_int_eq(c.ca_max_ttl_s, 2 * 86400);
    ck_assert_int_eq(c.ca_default_ttl_s, 90 * 60);
    ctl_config_free(&c);
    ck_assert_int_eq(load(&c, err, 3, "--xds-auth=jwt", "--ca=off", "--ca-default-ttl=3600"), 0);
    ck_assert(!c.ca_enabled);
    ck_assert_int_eq(c.ca_default_ttl_s, 3600);
    ctl_config_free(&c);
}
END_TEST

/* Without tls-cert the CA issues the TLS listener's certificate; cacerts
 * come from the Secret cacerts unless told otherwise. */
START_TEST(config_tls_from_the_ca_and_cacerts_secret)
{
    clear_env();
    ctl_config_t c;
    char err[CTL_ERRLEN] = "";
    ck_assert_int_eq(load(&c, err, 2, "--xds-auth=jwt", "--xds-tls-listen=0.0.0.0:15012"), 0);
    ck_assert(c.ca_enabled);
    ck_assert_ptr_null(c.tls_cert);
    ck_assert_ptr_null(c.tls_dns_names); /* ca.c's default: meshfed.<system ns>.svc */
    ck_assert_str_eq(c.cacerts_secret, "cacerts");
    ctl_config_free(&c);
    ck_assert_int_eq(load(&c, err, 4, "--xds-auth=jwt", "--xds-tls-listen=0.0.0.0:15012",
                          "--tls-dns-names=mf.istio-system.svc,mf.istio-system",
                          "--cacerts-secret="),
                     0);
    ck_assert_str_eq(c.tls_dns_names, "mf.istio-system.svc,mf.istio-system");
    ck_assert_str_eq(c.cacerts_secret, "");
    ctl_config_free(&c);
    /* no CA (xds-auth none, or --ca=off): nobody to issue it */
    ck_assert_int_eq(load(&c, err, 1, "--xds-tls-listen=0.0.0.0:15012"), -1);
    ck_assert_ptr_nonnull(strstr(err, "xds-tls-listen needs both"));
    ctl_config_free(&c);
    ck_assert_int_eq(
        load(&c, err, 3, "--xds-auth=jwt", "--ca=off", "--xds-tls-listen=0.0.0.0:15012"), -1);
    ctl_config_free(&c);
}
END_TEST

/* Connection age as istiod's chart sets it (30m, grace 10s), in ms for grpc;
 * 0 turns it off; ms, s, m, h and d all parse. */
START_TEST(config_xds_connection_age)
{
    clear_env();
    ctl_config_t c;
    char err[CTL_ERRLEN] = "";
    ck_assert_int_eq(load(&c, err, 0), 0);
    ck_assert_int_eq(c.xds_conn_age_ms, 30 * 60 * 1000);
    ck_assert_int_eq(c.xds_conn_age_grace_ms, 10 * 1000);
    ctl_config_free(&c);
    ck_assert_msg(
        load(&c, err, 2, "--xds-max-connection-age=0", "--xds-max-connection-age-grace=0") == 0,
        "%s", err);
    ck_assert_int_eq(c.xds_conn_age_ms, 0);
    ck_assert_int_eq(c.xds_conn_age_grace_ms, 0);
    ctl_config_free(&c);
    ck_assert_msg(load(&c, err, 2, "--xds-max-connection-age=1500ms",
                       "--xds-max-connection-age-grace=2") == 0,
                  "%s", err);
    ck_assert_int_eq(c.xds_conn_age_ms, 1500);
    ck_assert_int_eq(c.xds_conn_age_grace_ms, 2000);
    ctl_config_free(&c);
    ck_assert_msg(
        load(&c, err, 2, "--xds-max-connection-age=24d", "--xds-max-connection-age-grace=1h") == 0,
        "%s", err);
    ck_assert_int_eq(c.xds_conn_age_ms, 24 * 86400 * 1000);
    ck_assert_int_eq(c.xds_conn_age_grace_ms, 3600 * 1000);
    ctl_config_free(&c);
    char *file = write_tmp("xdsMaxConnectionAge: 45m\n");
    ck_assert_msg(load(&c, err, 2, "--config", file) == 0, "%s", err);
    ck_assert_int_eq(c.xds_conn_age_ms, 45 * 60 * 1000);
    ctl_config_free(&c);
    unlink(file);
    free(file);
}
END_TEST

START_TEST(config_file_errors)
{
    clear_env();
    char *unknown = write_tmp("clusterid: typo\n");
    char *broken = write_tmp("cluster-id: [unclosed\n");
    char *tls = write_tmp("xds-tls-listen: 0.0.0.0:15012\n");
    ctl_config_t c;
    char err[CTL_ERRLEN] = "";
    ck_assert_int_eq(load(&c, err, 2, "--config", unknown), -1);
    ck_assert_ptr_nonnull(strstr(err, "clusterid"));
    ctl_config_free(&c);
    ck_assert_int_eq(load(&c, err, 2, "--config", broken), -1);
    ck_assert_ptr_nonnull(strstr(err, "config file"));
    ctl_config_free(&c);
    ck_assert_int_eq(load(&c, err, 2, "--config", tls), -1);
    ck_assert_ptr_nonnull(strstr(err, "tls"));
    ctl_config_free(&c);
    ck_assert_int_eq(load(&c, err, 2, "--config", "/nonexistent/meshfed.yaml"), -1);
    ck_assert_ptr_nonnull(strstr(err, "config file"));
    ctl_config_free(&c);
    unlink(unknown);
    unlink(broken);
    unlink(tls);
    free(unknown);
    free(broken);
    free(tls);
}
END_TEST

/* Issue 14 item 10: one error of a cluster never hides another kind of
 * error, the window ends by time and says what it suppressed. */
START_TEST(ratelog_per_key_window_reset_by_time)
{
    ctl_log_setup(CTL_ERROR + 1, false); /* quiet */
    ctl_ratelog_t *r = ctl_ratelog_new(60, 4);
    const char *k403 = "cluster west: list pods: HTTP 403";
    const char *kconn = "cluster west: list pods: Couldn't connect";
    ck_assert(ctl_ratelog(r, 1000, CTL_WARN, k403, "403 one"));
    ck_assert(!ctl_ratelog(r, 1001, CTL_WARN, k403, "403 two"));
    ck_assert(!ctl_ratelog(r, 1002, CTL_WARN, k403, "403 three"));
    /* another kind of error of the same cluster and resource is not hidden */
    ck_assert(ctl_ratelog(r, 1003, CTL_WARN, kconn, "connect one"));
    ck_assert_uint_eq(ctl_ratelog_suppressed(r, k403), 2);
    ck_assert_uint_eq(ctl_ratelog_flush(r, 1030), 0); /* windows still open */
    /* the 403 window ends: one summary line; the connect one ended quietly */
    ck_assert_uint_eq(ctl_ratelog_flush(r, 1064), 1);
    ck_assert_uint_eq(ctl_ratelog_suppressed(r, k403), 0);
    /* reset by time: the next one logs at once */
    ck_assert(ctl_ratelog(r, 1065, CTL_WARN, k403, "403 again"));
    /* beyond max_keys, the rest share one window instead of flooding */
    ck_assert(ctl_ratelog(r, 1066, CTL_WARN, "a", "a"));
    ck_assert(ctl_ratelog(r, 1066, CTL_WARN, "b", "b"));
    ck_assert(ctl_ratelog(r, 1066, CTL_WARN, "c", "c"));
    ck_assert(ctl_ratelog(r, 1066, CTL_WARN, "d", "d")); /* first of the shared window */
    ck_assert(!ctl_ratelog(r, 1066, CTL_WARN, "e", "e"));
    ck_assert_uint_eq(ctl_ratelog_flush(r, (time_t)-1), 1);
    ctl_ratelog_free(r);
    ctl_log_setup(CTL_INFO, false);
}
END_TEST

/* Issue 14 item 13: every byte a client sent reaches JSON as valid UTF-8,
 * and a cut never splits a character. */
START_TEST(utf8_clean_escapes_and_cuts_between_characters)
{
    char out[32];
    ck_assert_uint_eq(ctl_utf8_clean("a\xff/x", out, sizeof(out)), 7);
    ck_assert_str_eq(out, "a\\xff/x");
    /* overlong, surrogate, above U+10FFFF, truncated: escaped byte by byte */
    ctl_utf8_clean("\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82", out, sizeof(out));
    ck_assert_ptr_null(strstr(out, "\xc0"));
    ck_assert_ptr_nonnull(strstr(out, "\\xc0\\xaf\\xed"));
    /* valid multi-byte text passes unchanged */
    ctl_utf8_clean("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", out, sizeof(out));
    ck_assert_str_eq(out, "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* 20 x "é" (40 bytes) into 16: whole characters and an ellipsis */
    char in[64] = "";
    for (int i = 0; i < 20; i++)
        strcat(in, "\xc3\xa9");
    char small[16];
    size_t n = ctl_utf8_clean(in, small, sizeof(small));
    ck_assert_uint_le(n, 15);
    ck_assert_str_eq(small + n - 3, "\xe2\x80\xa6");
    for (size_t i = 0; i + 3 < n; i += 2)
        ck_assert(((unsigned char)small[i]) == 0xc3 && ((unsigned char)small[i + 1]) == 0xa9);
    /* exactly fitting text is not cut */
    ck_assert_uint_eq(ctl_utf8_clean("abc", small, 4), 3);
    ck_assert_str_eq(small, "abc");
}
END_TEST

/* Issue 14 item 9: a FIFO, a device or a file too large is refused at once
 * with the reason, never read (a FIFO would block until a writer came). */
START_TEST(read_file_only_regular_and_bounded)
{
    alarm(20); /* a blocking open or read fails the test instead of hanging it */
    char dir[] = "/tmp/meshfed-test-fifo-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char fifo[64];
    snprintf(fifo, sizeof(fifo), "%s/fifo.yaml", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    char err[CTL_ERRLEN];
    size_t len;
    ck_assert_ptr_null(ctl_read_file(fifo, 1024, &len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "not a regular file (a FIFO)"), "%s", err);
    ck_assert_ptr_null(ctl_read_file("/dev/zero", 1024, &len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "character device"), "%s", err);
    ck_assert_ptr_null(ctl_read_file(dir, 1024, &len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "directory"), "%s", err);
    char *big = write_tmp("0123456789abcdef");
    ck_assert_ptr_null(ctl_read_file(big, 8, &len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "limit of 8"), "%s", err);
    char *text = ctl_read_file(big, 16, &len, err, sizeof(err));
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, 16);
    ck_assert_str_eq(text, "0123456789abcdef");
    free(text);
    /* --config naming a FIFO: a clear error at start, no hang */
    clear_env();
    ctl_config_t c;
    ck_assert_int_eq(load(&c, err, 2, "--config", fifo), -1);
    ck_assert_msg(strstr(err, "config file") && strstr(err, "FIFO"), "%s", err);
    ctl_config_free(&c);
    alarm(0);
    unlink(fifo);
    unlink(big);
    free(big);
    rmdir(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl");
    TCase *t = tcase_create("config");
    tcase_add_test(t, config_defaults);
    tcase_add_test(t, revision_filter_as_istiod);
    tcase_add_test(t, config_ca_on_with_jwt_and_durations);
    tcase_add_test(t, config_tls_from_the_ca_and_cacerts_secret);
    tcase_add_test(t, config_flag_beats_env_beats_file);
    tcase_add_test(t, config_file_accepts_chart_camel_case);
    tcase_add_test(t, config_bad_values_name_the_setting);
    tcase_add_test(t, config_file_errors);
    tcase_add_test(t, config_xds_connection_age);
    tcase_add_test(t, read_file_only_regular_and_bounded);
    suite_add_tcase(s, t);
    TCase *l = tcase_create("log");
    tcase_add_test(l, ratelog_per_key_window_reset_by_time);
    tcase_add_test(l, utf8_clean_escapes_and_cuts_between_characters);
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
