/*
 * The token file: one small JSON object per account, replaced whole and
 * durably, readable by the service user only. Providers rotate refresh
 * tokens (Microsoft on every use): the one in this file must be the last
 * one issued, or the account is locked out until somebody authorises it
 * again.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "fsutil.h"
#include "oauth2.h"
#include "testhook.h"
#include "wipe.h"

/* The file holds two tokens and four numbers: anything bigger is not ours. */
#define STORE_FILE_MAX (4 * OAUTH2_TOKEN_MAX)

static int read_all(int fd, char *buf, size_t cap, size_t *len);
static int take_string(json_object *o, const char *key, char **out);
static time_t take_time(json_object *o, const char *key);
static char *render(const struct oauth2_token *t);
static int open_dir(const char *path);

static int
read_all(int fd, char *buf, size_t cap, size_t *len)
{
	ssize_t n;

	*len = 0;
	for (;;) {
		n = read(fd, buf + *len, cap - *len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			return 0;
		*len += (size_t)n;
		if (*len == cap) {
			errno = EFBIG;
			return -1;
		}
	}
}

/* A string member, copied; absent is fine, another type is not. */
static int
take_string(json_object *o, const char *key, char **out)
{
	json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) >= OAUTH2_TOKEN_MAX)
		return -1;
	if ((*out = strdup(json_object_get_string(v))) == NULL)
		return -1;
	return 0;
}

static time_t
take_time(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return 0;
	return (time_t)json_object_get_int64(v);
}

/* The tokens of the token file's text BUF (PATH names it in errors). */
static int
parse_store(const char *buf, const char *path, struct oauth2_token *t,
    char *err, size_t errlen)
{
	json_object *o;
	int rc = -1;

	if ((o = json_tokener_parse(buf)) == NULL ||
	    !json_object_is_type(o, json_type_object) ||
	    take_string(o, "refresh_token", &t->refresh) == -1 ||
	    take_string(o, "access_token", &t->access) == -1)
		snprintf(err, errlen, "%s is not a token file", path);
	else if (t->refresh == NULL)
		snprintf(err, errlen, "%s holds no refresh token", path);
	else {
		t->access_expires = take_time(o, "access_expires");
		t->access_obtained = take_time(o, "access_obtained");
		t->refresh_obtained = take_time(o, "refresh_obtained");
		t->refresh_expires = take_time(o, "refresh_expires");
		rc = 0;
	}
	if (o != NULL)
		json_object_put(o);
	return rc;
}

int
oauth2_store_load(
    const char *path, struct oauth2_token *t, char *err, size_t errlen)
{
	char *buf = NULL;
	struct stat st;
	size_t len;
	int fd, rc = -1, saved = 0;

	memset(t, 0, sizeof(*t));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1) {
		saved = errno;
		snprintf(
		    err, errlen, "cannot read %s: %s", path, strerror(errno));
		errno = saved;
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
		    "%s is accessible by group or others (chmod 600 it)", path);
		goto out;
	}
	if ((buf = malloc(STORE_FILE_MAX)) == NULL ||
	    read_all(fd, buf, STORE_FILE_MAX, &len) == -1) {
		snprintf(
		    err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	/* read_all() leaves room for the NUL. */
	buf[len] = '\0';
	rc = parse_store(buf, path, t, err, errlen);
out:
	if (rc == -1)
		oauth2_token_clear(t);
	if (buf != NULL) {
		wipe(buf, STORE_FILE_MAX);
		free(buf);
	}
	close(fd);
	/* ENOENT stays for "no file"; anything else is not that. */
	errno = rc == -1 ? EINVAL : 0;
	return rc;
}

/* T as the file's text, malloc()ed; the caller wipes and frees it. */
static char *
render(const struct oauth2_token *t)
{
	json_object *o;
	const char *s;
	char *text = NULL;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "refresh_token",
	    t->refresh != NULL ? json_object_new_string(t->refresh) : NULL);
	json_object_object_add(o, "access_token",
	    t->access != NULL ? json_object_new_string(t->access) : NULL);
	json_object_object_add(o, "access_expires",
	    json_object_new_int64((int64_t)t->access_expires));
	json_object_object_add(o, "access_obtained",
	    json_object_new_int64((int64_t)t->access_obtained));
	json_object_object_add(o, "refresh_obtained",
	    json_object_new_int64((int64_t)t->refresh_obtained));
	json_object_object_add(o, "refresh_expires",
	    json_object_new_int64((int64_t)t->refresh_expires));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	if (s != NULL && asprintf(&text, "%s\n", s) == -1)
		text = NULL;
	/* json-c's own copies of the tokens are freed unwiped: out of reach. */
	json_object_put(o);
	return text;
}

/* The directory holding PATH, opened for fsync. */
static int
open_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int
oauth2_store_save(
    const char *path, const struct oauth2_token *t, char *err, size_t errlen)
{
	char tmp[PATH_MAX], *text;
	int fd = -1, dfd = -1, rc = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	if ((text = render(t)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* A temporary file a crash left behind is ours to replace. */
	unlink(tmp);
	if ((fd = open(tmp,
		 O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) ==
		-1 ||
	    TESTHOOK_FAIL("oauth2 store write") ||
	    fsutil_write_all(fd, text, strlen(text)) == -1 ||
	    fsutil_fsync(fd) == -1) {
		snprintf(
		    err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) == -1) {
		fd = -1;
		snprintf(
		    err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path,
		    strerror(errno));
		goto out;
	}
	/* The rename is durable only once the directory is. */
	if ((dfd = open_dir(path)) == -1 || fsutil_fsync(dfd) == -1) {
		snprintf(err, errlen, "cannot sync the directory of %s: %s",
		    path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	if (rc == -1)
		unlink(tmp);
	wipe(text, strlen(text));
	free(text);
	return rc;
}
