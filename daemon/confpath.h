/*
 * confpath: where the configuration file and the state directory are when
 * neither -c nor state_dir says. A normal user gets files of their own
 * (as with mpop's $XDG_CONFIG_HOME/mpop/config or getmail's
 * $XDG_CONFIG_HOME/getmail); root and the system service get the system's.
 * The choice is pure: confpath_env_get() reads the process, the rest only
 * the struct it fills, so that tests can pose as any user.
 */
#ifndef POPFETCHD_CONFPATH_H
#define POPFETCHD_CONFPATH_H

#include <stdbool.h>
#include <stddef.h>

#define CONFPATH_SYSTEM_CONFIG "/etc/popfetchd/popfetchd.conf"
#define CONFPATH_SYSTEM_STATE  "/var/lib/popfetchd"

/* What the choice depends on. Strings are borrowed; NULL: not set. */
struct confpath_env {
	bool root; /* real uid 0: only the system's paths */
	const char *home;
	const char *xdg_config_home;
	const char *xdg_state_home;
	const char *state_directory; /* set by systemd's StateDirectory= */
};

/* Fills ENV from the process's real uid and environment. */
void confpath_env_get(struct confpath_env *env);

/*
 * The per-user configuration file of ENV into BUF (LEN bytes):
 * $XDG_CONFIG_HOME/popfetchd/popfetchd.conf, or ~/.config/... when that
 * is unset or not absolute (the XDG rule). Returns where it came from
 * ("$XDG_CONFIG_HOME" or "~/.config"), or NULL when ENV is root's, has no
 * home, or the path does not fit: then only the system file applies.
 * The caller reads it only when it exists.
 */
const char *confpath_user_config(
    const struct confpath_env *env, char *buf, size_t len);

/*
 * The default state directory of ENV into BUF (LEN bytes), first that
 * applies: the first of $STATE_DIRECTORY (colon-separated when a unit
 * names several), $XDG_STATE_HOME/popfetchd or ~/.local/state/popfetchd
 * for a normal user, CONFPATH_SYSTEM_STATE. Returns where it came from,
 * a static string for --check-config to print. Relative values are
 * ignored, as the XDG rule says.
 */
const char *confpath_state_dir(
    const struct confpath_env *env, char *buf, size_t len);

#endif
