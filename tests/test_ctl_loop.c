/*
 * test_ctl_loop.c - the model thread's bookkeeping besides the model
 * (loop.c): each cluster's network as the xDS server asks for it, and the
 * notes sources keep about clusters for /debug/clusterz.
 */
#include "ctl_int.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static ctl_config_t cfg;

static ctl_t *ctl(void)
{
    char *argv[] = {"meshfed", "--debounce-ms", "1", NULL};
    char err[CTL_ERRLEN] = "";
    unsetenv("MESHFED_CONFIG");
    ck_assert_msg(ctl_config_load(&cfg, 3, argv, err, sizeof(err)) == 0, "%s", err);
    ctl_t *c = ctl_new(&cfg, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

static void done(ctl_t *c)
{
    ctl_free(c);
    ctl_config_free(&cfg);
}

static void cluster_set(ctl_t *c, const char *id, const char *network)
{
    ctl_event_t ev = {.type = CTL_EV_CLUSTER_SET};
    ev.info.id = strdup(id);
    ev.info.network = strdup(network);
    ctl_push(c, &ev);
}

static void cluster_remove(ctl_t *c, const char *id)
{
    ctl_event_t ev = {.type = CTL_EV_CLUSTER_REMOVE, .cluster = strdup(id)};
    ctl_push(c, &ev);
}

START_TEST(network_of_follows_cluster_set_and_remove)
{
    ctl_t *c = ctl();
    ck_assert_int_eq(ctl_start(c), 0);
    ck_assert_ptr_null(ctl_network_of(c, "east"));
    cluster_set(c, "east", "net-1");
    cluster_set(c, "west", "net-2");
    ctl_flush(c);
    ck_assert_str_eq(ctl_network_of(c, "east"), "net-1");
    ck_assert_str_eq(ctl_network_of(c, "west"), "net-2");
    ck_assert_ptr_null(ctl_network_of(c, "north"));
    cluster_set(c, "east", "net-2");
    ctl_flush(c);
    ck_assert_str_eq(ctl_network_of(c, "east"), "net-2");
    cluster_remove(c, "west");
    ctl_flush(c);
    ck_assert_ptr_null(ctl_network_of(c, "west"));
    ck_assert_str_eq(ctl_network_of(c, "east"), "net-2");
    done(c);
}
END_TEST

START_TEST(network_of_string_outlives_its_cluster)
{
    ctl_t *c = ctl();
    ck_assert_int_eq(ctl_start(c), 0);
    cluster_set(c, "east", "net-1");
    ctl_flush(c);
    /* the xDS server keeps this pointer after the lock is released */
    const char *n = ctl_network_of(c, "east");
    cluster_set(c, "west", "net-1");
    ctl_flush(c);
    ck_assert_ptr_eq(ctl_network_of(c, "west"), n); /* interned: one copy per name */
    cluster_set(c, "east", "net-9");
    cluster_remove(c, "west");
    ctl_flush(c);
    ck_assert_str_eq(n, "net-1");
    done(c);
}
END_TEST

START_TEST(notes_set_replace_and_copy)
{
    ctl_t *c = ctl();
    ck_assert_ptr_null(ctl_cluster_notes(c, "east"));
    ctl_cluster_note(c, "east", "lists", json_string("pending"));
    ctl_cluster_note(c, "east", "secret", json_string("istio-system/remote-east"));
    ctl_cluster_note(c, "east", "lists", json_string("synced"));
    json_t *n = ctl_cluster_notes(c, "east");
    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(json_object_size(n), 2);
    ck_assert_str_eq(json_string_value(json_object_get(n, "lists")), "synced");
    /* a copy: changing it changes nothing kept */
    json_object_clear(n);
    json_decref(n);
    n = ctl_cluster_notes(c, "east");
    ck_assert_int_eq(json_object_size(n), 2);
    json_decref(n);
    ck_assert_ptr_null(ctl_cluster_notes(c, "west"));
    done(c);
}
END_TEST

START_TEST(notes_removing_last_key_or_null_key_forgets_cluster)
{
    ctl_t *c = ctl();
    ctl_cluster_note(c, "east", "a", json_true());
    ctl_cluster_note(c, "east", "b", json_true());
    ctl_cluster_note(c, "east", "a", NULL);
    json_t *n = ctl_cluster_notes(c, "east");
    ck_assert_int_eq(json_object_size(n), 1);
    ck_assert_ptr_nonnull(json_object_get(n, "b"));
    json_decref(n);
    ctl_cluster_note(c, "east", "b", NULL);
    ck_assert_ptr_null(ctl_cluster_notes(c, "east"));
    /* removing what is not there changes nothing */
    ctl_cluster_note(c, "east", "b", NULL);
    ctl_cluster_note(c, "west", "x", json_integer(1));
    ctl_cluster_note(c, "west", "y", json_integer(2));
    ctl_cluster_note(c, "west", NULL, json_integer(3)); /* val is taken even so */
    ck_assert_ptr_null(ctl_cluster_notes(c, "west"));
    ctl_cluster_note(c, "north", "kept", json_string("at free"));
    done(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ctl_loop");
    TCase *t = tcase_create("networks");
    tcase_add_test(t, network_of_follows_cluster_set_and_remove);
    tcase_add_test(t, network_of_string_outlives_its_cluster);
    suite_add_tcase(s, t);
    TCase *n = tcase_create("notes");
    tcase_add_test(n, notes_set_replace_and_copy);
    tcase_add_test(n, notes_removing_last_key_or_null_key_forgets_cluster);
    suite_add_tcase(s, n);
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
