/*
 * Default configuration file and state directory by who runs popfetchd
 * (daemon/confpath.c), posing as root and as normal users.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "confpath.h"

static const struct confpath_env user = {
    .root = false,
    .home = "/home/alice",
};

START_TEST(user_config_xdg_then_home)
{
	struct confpath_env env = user;
	char buf[256];

	ck_assert_str_eq(
	    confpath_user_config(&env, buf, sizeof(buf)), "~/.config");
	ck_assert_str_eq(buf, "/home/alice/.config/popfetchd/popfetchd.conf");
	env.xdg_config_home = "/srv/cfg/";
	ck_assert_str_eq(
	    confpath_user_config(&env, buf, sizeof(buf)), "$XDG_CONFIG_HOME");
	ck_assert_str_eq(buf, "/srv/cfg/popfetchd/popfetchd.conf");
	/* The XDG rule: a relative value is as good as unset. */
	env.xdg_config_home = "cfg";
	ck_assert_str_eq(
	    confpath_user_config(&env, buf, sizeof(buf)), "~/.config");
	ck_assert_str_eq(buf, "/home/alice/.config/popfetchd/popfetchd.conf");
}
END_TEST

START_TEST(user_config_none)
{
	struct confpath_env env = user;
	char buf[256], tiny[8];

	env.root = true;
	env.xdg_config_home = "/root/.cfg";
	ck_assert_ptr_null(confpath_user_config(&env, buf, sizeof(buf)));
	env = user;
	env.home = NULL;
	ck_assert_ptr_null(confpath_user_config(&env, buf, sizeof(buf)));
	env.home = "relative";
	ck_assert_ptr_null(confpath_user_config(&env, buf, sizeof(buf)));
	/* Cut short would name another file: none instead. */
	env = user;
	ck_assert_ptr_null(confpath_user_config(&env, tiny, sizeof(tiny)));
}
END_TEST

START_TEST(state_dir_order)
{
	struct confpath_env env = user;
	char buf[256];

	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "~/.local/state");
	ck_assert_str_eq(buf, "/home/alice/.local/state/popfetchd");
	env.xdg_state_home = "/srv/state";
	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "$XDG_STATE_HOME");
	ck_assert_str_eq(buf, "/srv/state/popfetchd");
	/* systemd's word wins, for the user service too. */
	env.state_directory = "/home/alice/.local/state/popfetchd-unit";
	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "$STATE_DIRECTORY");
	ck_assert_str_eq(buf, "/home/alice/.local/state/popfetchd-unit");
}
END_TEST

START_TEST(state_dir_root)
{
	struct confpath_env env = {
	    .root = true, .home = "/root", .xdg_state_home = "/root/.state"};
	char buf[256];

	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "the built-in default");
	ck_assert_str_eq(buf, CONFPATH_SYSTEM_STATE);
	/* A unit with StateDirectory=a b: the first is ours. */
	env.state_directory = "/var/lib/popfetchd:/var/lib/other";
	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "$STATE_DIRECTORY");
	ck_assert_str_eq(buf, "/var/lib/popfetchd");
	env.state_directory = "var/lib/popfetchd";
	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "the built-in default");
	ck_assert_str_eq(buf, CONFPATH_SYSTEM_STATE);
}
END_TEST

START_TEST(state_dir_no_home)
{
	struct confpath_env env = {.root = false};
	char buf[256];

	ck_assert_str_eq(
	    confpath_state_dir(&env, buf, sizeof(buf)), "the built-in default");
	ck_assert_str_eq(buf, CONFPATH_SYSTEM_STATE);
}
END_TEST

START_TEST(env_from_process)
{
	struct confpath_env env;

	setenv("XDG_CONFIG_HOME", "relative/cfg", 1);
	setenv("XDG_STATE_HOME", "/abs/state", 1);
	unsetenv("STATE_DIRECTORY");
	confpath_env_get(&env);
	ck_assert_ptr_null(env.xdg_config_home);
	ck_assert_str_eq(env.xdg_state_home, "/abs/state");
	ck_assert_ptr_null(env.state_directory);
	ck_assert(env.root == (getuid() == 0));
}
END_TEST

static Suite *
confpath_suite(void)
{
	Suite *s = suite_create("confpath");
	TCase *tc = tcase_create("order");

	tcase_add_test(tc, user_config_xdg_then_home);
	tcase_add_test(tc, user_config_none);
	tcase_add_test(tc, state_dir_order);
	tcase_add_test(tc, state_dir_root);
	tcase_add_test(tc, state_dir_no_home);
	tcase_add_test(tc, env_from_process);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(confpath_suite());
}
