/*
 * authorize: `popfetchd --authorize NAME`, the one-time OAuth2
 * authorisation of an account, run from a shell. The device authorization
 * grant (RFC 8628) where the provider has it (Microsoft), else the
 * authorization code grant with PKCE (RFC 7636) and a loopback redirect
 * (RFC 8252) (Google). Prints what the user must open, waits on its own
 * loop, and stores the refresh token in the account's token file.
 */
#ifndef POPFETCHD_AUTHORIZE_H
#define POPFETCHD_AUTHORIZE_H

struct account;

/*
 * Authorises ACCOUNT (which has an oauth2 group). Instructions go to
 * stdout, errors to the log. Returns a sysexits code: EX_OK once the
 * tokens are stored, EX_NOPERM when the user or provider refused,
 * EX_TEMPFAIL when the endpoint could not be reached or the user took
 * too long, EX_CONFIG when the account cannot be authorised as set up,
 * EX_IOERR when the token file cannot be written.
 */
int authorize_run(const struct account *a);

#endif
