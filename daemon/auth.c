/* Credential encodings for POP3 authentication. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"

int
auth_base64(const void *in, size_t len, char *out, size_t outlen)
{
	if (len > 3 * ((size_t)-1 / 8) || outlen < 4 * ((len + 2) / 3) + 1)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int
auth_plain(const char *user, const char *pass, char *out, size_t outlen)
{
	size_t ul = strlen(user), pl = strlen(pass), n = ul + pl + 2;
	unsigned char buf[1024];
	int r;

	if (n > sizeof(buf))
		return -1;
	/* authzid empty: act as the user we authenticate as. */
	buf[0] = '\0';
	memcpy(buf + 1, user, ul);
	buf[1 + ul] = '\0';
	memcpy(buf + 2 + ul, pass, pl);
	r = auth_base64(buf, n, out, outlen);
	auth_wipe(buf, sizeof(buf));
	return r;
}

int
auth_apop(const char *timestamp, const char *secret, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;
	EVP_MD_CTX *ctx;
	int ok;

	if (outlen < 33 || (ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
	     EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[32] = '\0';
	return 0;
}

void
auth_wipe(void *p, size_t len)
{
	OPENSSL_cleanse(p, len);
}
