/* Password sources. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "secret.h"

/*
 * Reads the first line of PATH into BUF. A secret file readable by group
 * or others is refused, as ssh refuses such a key: the secret in it is
 * already exposed, and quietly using it would hide that.
 */
static int
read_first_line(
    const char *path, char *buf, size_t len, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(
		    err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
		    "%s is accessible by group or others (chmod 600 it)", path);
		close(fd);
		return -1;
	}
	while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "cannot read %s: %s", path,
			    strerror(errno));
			close(fd);
			auth_wipe(buf, len);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		snprintf(err, errlen, "%s: no secret on its first line", path);
		return -1;
	}
	return 0;
}

int
secret_get(
    const struct account *a, char *buf, size_t len, char *err, size_t errlen)
{
	const char *dir;
	char path[PATH_MAX];

	if (a->password != NULL) {
		if (strlen(a->password) >= len) {
			snprintf(err, errlen, "password too long");
			return -1;
		}
		strcpy(buf, a->password);
		return 0;
	}
	if (a->password_file != NULL)
		return read_first_line(a->password_file, buf, len, err, errlen);
	if (a->password_credential != NULL) {
		if ((dir = getenv("CREDENTIALS_DIRECTORY")) == NULL) {
			snprintf(err, errlen,
			    "password_credential needs $CREDENTIALS_DIRECTORY "
			    "(LoadCredential= in the unit)");
			return -1;
		}
		snprintf(
		    path, sizeof(path), "%s/%s", dir, a->password_credential);
		return read_first_line(path, buf, len, err, errlen);
	}
	if (a->password_command != NULL) {
		snprintf(err, errlen,
		    "password_command is not supported by this version");
		return -1;
	}
	snprintf(err, errlen, "no password configured");
	return -1;
}
