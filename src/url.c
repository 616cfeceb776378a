/*-------------------------------------------------------------------------
 * url.c
 *		The sidecar's base URL from taskevents.host and taskevents.port:
 *		checked when the host is set (settings.c), used by the client
 *		(dapr.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "url.h"

/* Is the text a host name: dot-separated labels of letters, digits and '-'? */
static bool
url_host_name(const char *host)
{
	size_t		len = strlen(host);
	const char *label = host;

	if (len == 0 || len > 253)
		return false;
	for (const char *p = host;; p++)
	{
		if (*p == '.' || *p == '\0')
		{
			size_t		n = p - label;

			if (n == 0 || n > 63 || label[0] == '-' || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = p + 1;
		}
		else if (!isalnum((unsigned char) *p) && *p != '-')
			return false;
	}
}

/*
 * The sidecar's base URL, http://host:port, into url (TE_BASE_URL_LEN):
 * an IPv6 address goes in brackets.  Returns false, with url empty, when
 * the host is neither a host name nor an IP address, or when libcurl would
 * not take the URL.
 */
bool
te_base_url(const char *host, int port, char *url)
{
	char		v6[64];
	struct in6_addr addr;
	size_t		len = host ? strlen(host) : 0;
	CURLU	   *u;
	bool		ok;

	url[0] = '\0';
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(v6))
	{
		memcpy(v6, host + 1, len - 2);
		v6[len - 2] = '\0';
	}
	else if (len < sizeof(v6))
		strlcpy(v6, host ? host : "", sizeof(v6));
	else
		v6[0] = '\0';

	if (inet_pton(AF_INET6, v6, &addr) == 1)
		snprintf(url, TE_BASE_URL_LEN, "http://[%s]:%d", v6, port);
	else if (host != NULL && url_host_name(host))
		snprintf(url, TE_BASE_URL_LEN, "http://%s:%d", host, port);
	else
		return false;

	u = curl_url();
	ok = u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK;
	if (u)
		curl_url_cleanup(u);
	if (!ok)
		url[0] = '\0';
	return ok;
}
