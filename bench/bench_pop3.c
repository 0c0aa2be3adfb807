/*
 * The POP3 engine alone: how fast it turns a large RETR stream into
 * message data (dot-unstuffing, terminator search), fed in 16 KiB reads
 * as a socket would deliver them.
 *
 *	bench_pop3 [MEGABYTES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pop3.h"

#define READ_SIZE 16384

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One message of LEN bytes on the wire: 76-byte lines, some dot-stuffed. */
static char *
make_stream(size_t len, size_t *outlen)
{
	char *s = malloc(len + 64);
	size_t o = 0, line = 0;

	if (s == NULL)
		exit(1);
	o += (size_t)sprintf(s, "+OK message follows\r\n");
	while (o + 80 < len) {
		size_t i, n = 76;

		if (line++ % 50 == 0) {
			memcpy(s + o, "..", 2);
			o += 2;
			n -= 2;
		}
		for (i = 0; i < n; i++)
			s[o + i] = (char)('A' + (o + i) % 50);
		o += n;
		s[o++] = '\r';
		s[o++] = '\n';
	}
	memcpy(s + o, ".\r\n", 3);
	*outlen = o + 3;
	return s;
}

int
main(int argc, char **argv)
{
	size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	size_t len, off, n, data = 0, events = 0;
	struct pop3_req r = {.cmd = POP3_CMD_RETR, .msgno = 1};
	struct pop3_event ev;
	struct pop3 *p;
	char out[64], *s;
	double t0, t;

	s = make_stream(mb << 20, &len);
	p = pop3_new();
	pop3_feed(p, "+OK\r\n", 5, &ev);
	pop3_request(p, &r, out, sizeof(out));
	t0 = now();
	for (off = 0; off < len;) {
		size_t piece = len - off < READ_SIZE ? len - off : READ_SIZE;
		size_t used = 0;

		while (used < piece) {
			n = pop3_feed(p, s + off + used, piece - used, &ev);
			used += n;
			events++;
			if (ev.type == POP3_EV_DATA)
				data += ev.len;
			if (ev.type == POP3_EV_ERROR) {
				fprintf(stderr, "error: %s\n", ev.text);
				return 1;
			}
		}
		off += piece;
	}
	t = now() - t0;
	printf(
	    "engine: %zu MB RETR stream in %.3f s: %.0f MB/s (%zu events, %zu data bytes)\n",
	    len >> 20, t, (double)len / t / 1e6, events, data);
	pop3_free(&p);
	free(s);
	return 0;
}
