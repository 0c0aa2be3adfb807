/*
 * Default paths by who runs popfetchd: see confpath.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "confpath.h"

static const char *
absolute_or_null(const char *s)
{
	return s != NULL && s[0] == '/' ? s : NULL;
}

void
confpath_env_get(struct confpath_env *env)
{
	env->root = getuid() == 0;
	env->home = absolute_or_null(getenv("HOME"));
	env->xdg_config_home = absolute_or_null(getenv("XDG_CONFIG_HOME"));
	env->xdg_state_home = absolute_or_null(getenv("XDG_STATE_HOME"));
	env->state_directory = absolute_or_null(getenv("STATE_DIRECTORY"));
}

/* DIR/TAIL into BUF; false when it does not fit. */
static bool
join(char *buf, size_t len, const char *dir, const char *tail)
{
	size_t n = strlen(dir);
	int w;

	/* "/" and "/home/a/" must not give a double slash. */
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1 && dir[0] == '/')
		n = 0;
	w = snprintf(buf, len, "%.*s/%s", (int)n, dir, tail);
	return w >= 0 && (size_t)w < len;
}

const char *
confpath_user_config(const struct confpath_env *env, char *buf, size_t len)
{
	const char *xdg = absolute_or_null(env->xdg_config_home);
	const char *home = absolute_or_null(env->home);

	if (env->root)
		return NULL;
	if (xdg != NULL)
		return join(buf, len, xdg, "popfetchd/popfetchd.conf")
			   ? "$XDG_CONFIG_HOME"
			   : NULL;
	if (home != NULL)
		return join(buf, len, home, ".config/popfetchd/popfetchd.conf")
			   ? "~/.config"
			   : NULL;
	return NULL;
}

/* The first of the colon-separated $STATE_DIRECTORY into BUF. */
static bool
first_state_directory(const char *sd, char *buf, size_t len)
{
	size_t n = strcspn(sd, ":");

	if (sd[0] != '/' || n >= len)
		return false;
	memcpy(buf, sd, n);
	buf[n] = '\0';
	return true;
}

const char *
confpath_state_dir(const struct confpath_env *env, char *buf, size_t len)
{
	const char *xdg = absolute_or_null(env->xdg_state_home);
	const char *home = absolute_or_null(env->home);

	if (env->state_directory != NULL &&
	    first_state_directory(env->state_directory, buf, len))
		return "$STATE_DIRECTORY";
	if (!env->root && xdg != NULL && join(buf, len, xdg, "popfetchd"))
		return "$XDG_STATE_HOME";
	if (!env->root && xdg == NULL && home != NULL &&
	    join(buf, len, home, ".local/state/popfetchd"))
		return "~/.local/state";
	snprintf(buf, len, "%s", CONFPATH_SYSTEM_STATE);
	return "the built-in default";
}
