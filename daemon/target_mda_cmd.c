/*
 * The MDA's command line, split and expanded (target_mda.h); pure, so
 * that conf.c checks commands with the same code that runs them.
 */
#include <sys/wait.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "target_mda.h"

/* A growing string. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
put(struct sbuf *b, const char *s, size_t n)
{
	char *np;
	size_t cap;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap == 0 ? 64 : b->cap;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* A placeholder's value written out; under a shell, single-quoted. */
static void
put_value(struct sbuf *b, const char *val, bool shell)
{
	const char *q;

	if (val == NULL)
		val = "";
	if (!shell) {
		put(b, val, strlen(val));
		return;
	}
	put(b, "'", 1);
	for (; (q = strchr(val, '\'')) != NULL; val = q + 1) {
		put(b, val, (size_t)(q - val));
		put(b, "'\\''", 4);
	}
	put(b, val, strlen(val));
	put(b, "'", 1);
}

/*
 * Expands the placeholder %C into B, or only checks it when V is NULL.
 * -1 for an unknown one.
 */
static int
placeholder(struct sbuf *b, char c, const struct mda_vars *v, bool shell)
{
	const char *val;

	switch (c) {
	case '%':
		if (v != NULL)
			put(b, "%", 1);
		return 0;
	case 'u':
		val = v != NULL ? v->user : NULL;
		break;
	case 'a':
		val = v != NULL ? v->account : NULL;
		break;
	case 'r':
		val = v == NULL		     ? NULL
		      : v->recipient != NULL ? v->recipient
					     : v->user;
		break;
	default:
		return -1;
	}
	if (v != NULL)
		put_value(b, val, shell);
	return 0;
}

struct words {
	char **w;
	size_t n, cap;
	bool oom;
};

static void
add_word(struct words *ws, struct sbuf *b)
{
	char **nw;

	if (ws->oom || b->oom) {
		ws->oom = true;
		free(b->p);
		*b = (struct sbuf){0};
		return;
	}
	if (ws->n + 2 > ws->cap) {
		ws->cap = ws->cap == 0 ? 8 : ws->cap * 2;
		if ((nw = reallocarray(ws->w, ws->cap, sizeof(*nw))) == NULL) {
			ws->oom = true;
			free(b->p);
			*b = (struct sbuf){0};
			return;
		}
		ws->w = nw;
	}
	if (b->p == NULL)
		put(b, "", 0);
	ws->w[ws->n++] = b->p;
	ws->w[ws->n] = NULL;
	*b = (struct sbuf){0};
}

/*
 * The number of words the walk ends with; under the shell the whole line
 * is its one argument, after /bin/sh -c.
 */
static size_t
end_words(
    const char *cmd, bool shell, bool inword, struct words *ws, size_t words)
{
	struct sbuf sh = {0}, c = {0};

	if (!shell)
		return inword ? words + 1 : words;
	if (ws != NULL) {
		put(&sh, "/bin/sh", 7);
		add_word(ws, &sh);
		put(&c, "-c", 2);
		add_word(ws, &c);
	}
	return inword && strspn(cmd, " \t") != strlen(cmd) ? 1 : 0;
}

/*
 * Splits and expands CMD (V NULL: checks only); the words go to WS
 * unless it is NULL. 0, or -1 with *WHY.
 */
static int
walk(const char *cmd, bool shell, const struct mda_vars *v, struct words *ws,
    const char **why)
{
	struct sbuf b = {0};
	bool inword = false, quoted = false;
	size_t words = 0;
	const char *p;

	for (p = cmd; *p != '\0'; p++) {
		if (*p == '%') {
			if (placeholder(&b, p[1], v, shell) == -1) {
				*why =
				    p[1] == '\0'
					? "a '%' ends the command (write %% for a percent sign)"
					: "unknown placeholder (known: %u, %a, %r, %%)";
				goto fail;
			}
			p++;
			inword = true;
		} else if (shell) {
			put(&b, p, 1);
			inword = true;
		} else if (*p == '"') {
			quoted = !quoted;
			inword = true;
		} else if (quoted && *p == '\\' &&
			   (p[1] == '"' || p[1] == '\\')) {
			put(&b, ++p, 1);
		} else if (!quoted && (*p == ' ' || *p == '\t')) {
			if (inword) {
				words++;
				if (ws != NULL)
					add_word(ws, &b);
			}
			inword = false;
		} else {
			put(&b, p, 1);
			inword = true;
		}
	}
	if (quoted) {
		*why = "a double quote is not closed";
		goto fail;
	}
	words = end_words(cmd, shell, inword, ws, words);
	if (words == 0) {
		*why = "the command is empty";
		goto fail;
	}
	if (ws != NULL && (inword || shell))
		add_word(ws, &b);
	else
		free(b.p);
	if (ws != NULL && ws->oom) {
		*why = "out of memory";
		return -1;
	}
	return 0;
fail:
	free(b.p);
	return -1;
}

int
mda_cmd_check(const char *cmd, bool shell, const char **why)
{
	return walk(cmd, shell, NULL, NULL, why);
}

char **
mda_argv(
    const char *cmd, bool shell, const struct mda_vars *v, const char **why)
{
	struct words ws = {0};
	static const struct mda_vars none = {0};

	if (walk(cmd, shell, v != NULL ? v : &none, &ws, why) == -1) {
		if (ws.w != NULL)
			mda_argv_free(ws.w);
		return NULL;
	}
	return ws.w;
}

void
mda_argv_free(char **argv)
{
	char **p;

	if (argv == NULL)
		return;
	for (p = argv; *p != NULL; p++)
		free(*p);
	free(argv);
}

enum target_verdict
mda_verdict_of(int status)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return TARGET_DELIVERED;
	if (WIFEXITED(status) && WEXITSTATUS(status) != 75)
		return TARGET_PERMFAIL;
	return TARGET_TEMPFAIL;
}
