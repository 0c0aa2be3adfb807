/*
 * oauth2: an account's OAuth2 access token, kept fresh by the daemon.
 *
 * oauth2.c keeps the token of each account: the cached access token while
 * it is valid (with a margin), else a refresh (RFC 6749 section 6) over
 * HTTPS on the caller's loop, the rotated refresh token stored durably
 * before the new access token is handed out. oauth2_wire.c holds the pure
 * parts (provider presets, token responses, form encoding, PKCE) and
 * oauth2_store.c the token file. Knows nothing of POP3: secret.c asks it
 * for the token as it would read a password.
 */
#ifndef POPFETCHD_OAUTH2_H
#define POPFETCHD_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct account;
struct event_base;
struct oauth2_req;

/*
 * An access token is refreshed once it has less than this left: a poll
 * that starts with a token about to expire must still log in with it,
 * after a slow connect and TLS handshake.
 */
#define OAUTH2_MARGIN 300
/*
 * A token endpoint's answer is a few KiB (Microsoft's tokens run to 2-3
 * KiB each); more is not a token response, and is not read further.
 */
#define OAUTH2_BODY_MAX (64 * 1024)
/* Each token is shorter than this; longer ones are refused, not cut. */
#define OAUTH2_TOKEN_MAX 16384
/*
 * Warn this long before a known expiry of the refresh token (Google's
 * "testing" applications issue refresh tokens that last 7 days): time
 * enough for somebody to run --authorize before mail stops.
 */
#define OAUTH2_WARN_SECS (3 * 24 * 3600)

/* A provider's endpoints and defaults, so the user gives only a client. */
struct oauth2_provider {
	const char *name;
	const char *authorization_endpoint;
	const char *token_endpoint;
	const char *device_endpoint; /* NULL: no device authorization */
	const char *scope;
	const char *flow; /* the --authorize flow: "device" or "loopback" */
};

/* The preset called NAME ("microsoft", "gmail"), or NULL. */
const struct oauth2_provider *oauth2_provider(const char *name);

/*
 * ACCOUNT's endpoints, scope and flow: its own settings, else its
 * provider's. Fields may be NULL (no device endpoint, say). Borrowed from
 * the account and the preset table.
 */
void oauth2_settings(const struct account *a, struct oauth2_provider *out);

/* A token set, as the token file and the endpoint's answers hold it. */
struct oauth2_token {
	char *access;		 /* NULL: none */
	char *refresh;		 /* NULL: none (an answer without rotation) */
	time_t access_expires;	 /* 0: unknown, treated as expired */
	time_t access_obtained;	 /* when the endpoint issued it */
	time_t refresh_obtained; /* when the refresh token was issued */
	time_t refresh_expires;	 /* 0: the provider did not say */
};

/* Wipes and frees the tokens in T and zeroes it. */
void oauth2_token_clear(struct oauth2_token *t);

/* Whether T's access token can still be used at NOW (OAUTH2_MARGIN). */
bool oauth2_token_fresh(const struct oauth2_token *t, time_t now);

/* What a token endpoint's answer means for the caller. */
enum oauth2_status {
	OAUTH2_OK,
	OAUTH2_DENIED,	  /* the grant or client was refused: a person acts */
	OAUTH2_PENDING,	  /* device flow: not authorised yet, ask again */
	OAUTH2_SLOW_DOWN, /* device flow: ask again, less often */
	OAUTH2_TEMPORARY, /* endpoint trouble: retry later */
};

/*
 * Parses a token endpoint's answer: HTTP status STATUS and LEN bytes of
 * BODY (JSON, RFC 6749 5.1 and 5.2). On OAUTH2_OK, OUT holds the access
 * token, its expiry counted from NOW, and the new refresh token if the
 * endpoint rotated it (else OUT->refresh is NULL). Otherwise ERR says
 * why, with the endpoint's error code and description (escaped, never a
 * token). A malformed answer is OAUTH2_TEMPORARY: a broken endpoint may
 * mend, and the grant is not known to be bad.
 */
enum oauth2_status oauth2_parse_token(int status, const char *body, size_t len,
    time_t now, struct oauth2_token *out, char *err, size_t errlen);

/* A device authorization response (RFC 8628 3.2). */
struct oauth2_device {
	char *device_code;
	char *user_code;
	char *verification_uri;
	char *verification_uri_complete; /* NULL if not given */
	long expires_in;
	long interval; /* seconds; 5 when not given */
};

/* As oauth2_parse_token, for a device authorization response. */
enum oauth2_status oauth2_parse_device(int status, const char *body, size_t len,
    struct oauth2_device *out, char *err, size_t errlen);
void oauth2_device_clear(struct oauth2_device *d);

/*
 * KV: key, value, key, value, ..., NULL. A pair whose value is NULL is
 * left out. Returns "k=v&k=v" in application/x-www-form-urlencoded form
 * (RFC 6749 appendix B), malloc()ed (wipe and free it: it holds
 * secrets), or NULL when out of memory.
 */
char *oauth2_form(const char *const *kv);

/* Percent-encodes S into a malloc()ed string, as a form value. */
char *oauth2_urlencode(const char *s);

/* The value of form or query field NAME in Q ("a=1&b=2"), decoded. */
char *oauth2_query_get(const char *q, const char *name);

/*
 * PKCE (RFC 7636): a fresh code verifier (43 characters of base64url from
 * 32 random bytes) into OUT, and the S256 challenge of VERIFIER
 * (base64url of its SHA-256, unpadded). OUTLEN >= 44. 0, or -1.
 */
int oauth2_pkce_verifier(char *out, size_t outlen);
int oauth2_pkce_challenge(const char *verifier, char *out, size_t outlen);

/* base64url (unpadded) of LEN random bytes into OUT. 0, or -1. */
int oauth2_random(char *out, size_t outlen, size_t len);

/*
 * The token file: JSON with the refresh token, the cached access token
 * and their times. Load refuses a file accessible by group or others (a
 * token in it is exposed). -1 with ERR on failure; errno is ENOENT when
 * there is no file (not authorised yet).
 */
int oauth2_store_load(
    const char *path, struct oauth2_token *t, char *err, size_t errlen);

/*
 * Writes T to PATH so that a crash leaves either the old file or the new
 * one, whole: a temporary file beside it (mode 0600), fsynced, renamed
 * over PATH, then the directory fsynced. Only then is the new refresh
 * token safe to depend on. 0, or -1 with ERR.
 */
int oauth2_store_save(
    const char *path, const struct oauth2_token *t, char *err, size_t errlen);

/* How a request failed, for the caller's policy. */
enum oauth2_fail {
	OAUTH2_FAIL_NONE,
	OAUTH2_FAIL_AUTH,   /* refused or never authorised: --authorize */
	OAUTH2_FAIL_TEMP,   /* endpoint down, slow or broken: retry */
	OAUTH2_FAIL_LOCAL,  /* token file unwritable */
	OAUTH2_FAIL_CONFIG, /* settings that cannot work (no endpoint) */
};

/*
 * The one answer to oauth2_get(): TOKEN (the access token) on success,
 * else NULL, FAIL and ERR (never containing a token). Both strings are
 * valid during the call only; TOKEN is wiped when it returns.
 */
typedef void (*oauth2_cb)(
    void *arg, const char *token, enum oauth2_fail fail, const char *err);

/*
 * Gets ACCOUNT's access token: the cached one while it is fresh, else a
 * refresh at its token endpoint, CLIENT_SECRET (NULL: none) going with
 * it. A rotated refresh token is stored (oauth2_store_save) before CB
 * sees the new access token; if it cannot be, CB gets OAUTH2_FAIL_LOCAL
 * and the new tokens are kept in memory for the next try. CB runs once,
 * on a later loop turn, unless the request is cancelled. ACCOUNT and
 * CLIENT_SECRET are read during this call only. NULL when out of memory.
 */
struct oauth2_req *oauth2_get(struct event_base *base, const struct account *a,
    const char *client_secret, oauth2_cb cb, void *arg);

/* Abandons *REQ (no callback follows) and sets it to NULL; NULL is fine. */
void oauth2_cancel(struct oauth2_req **req);

/* Drops every cached token and the resolver (before freeing the loop). */
void oauth2_forget(void);

/* What is known of an account's tokens, for its status (no secrets). */
struct oauth2_times {
	time_t refresh_obtained; /* 0: unknown */
	time_t refresh_expires;	 /* 0: the provider did not say */
	time_t access_expires;	 /* 0: none cached */
};

/*
 * The token times of ACCOUNT as its last request saw them (loaded or
 * refreshed); false when no request for it was made since the start.
 */
bool oauth2_times(const char *account, struct oauth2_times *t);

#endif
