/*-------------------------------------------------------------------------
 * dapr.c
 *		The Dapr sidecar client.
 *
 * POST {base}/v1.0/publish/{pubsub}/{topic}?metadata.partitionKey={task id}
 * (each part %-escaped)
 * with Content-Type application/cloudevents+json (structured mode: without
 * it daprd would wrap the body as a string), and dapr-api-token when a token
 * is configured.  Requests run on one curl multi handle whose connection
 * cache keeps up to taskevents.concurrency connections alive.
 *
 * Nothing here raises an ERROR while transfers are live: failures become
 * request outcomes.  te_dapr_wait() is the worker's one wait: on the latch
 * when no transfer runs, else in curl's poll of the transfers' sockets,
 * which the postmaster's death and a signal (te_dapr_wake(), from the
 * worker's handlers) cut short; the caller checks for interrupts after it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>
#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "dapr.h"
#include "settings.h"
#include "url.h"

static CURLM *dp_multi = NULL;
static struct curl_slist *dp_headers = NULL;	/* single publish */
static struct curl_slist *dp_bulk_headers = NULL;
static char dp_base[TE_BASE_URL_LEN];	/* http://host:port */
static int	dp_wake_pipe[2] = {-1, -1};	/* a signal's byte for curl's poll */

/* Transfers in flight, so that error recovery can drop them. */
#define DP_MAX_LIVE (1024 + 1)
static CURL *dp_live[DP_MAX_LIVE];
static int	dp_in_flight = 0;

/* Idle easy handles, reused so their settings and buffers stay warm. */
#define DP_POOL_MAX 1024

/* Time limit of a connection, and of a question about the sidecar itself. */
#define DP_QUICK_MS 2000
static CURL *dp_pool[DP_POOL_MAX];
static int	dp_npool = 0;

/* A request's headers: its Content-Type, no Expect, and the token if any. */
static struct curl_slist *
dp_header_list(struct curl_slist *old, const char *content_type, const char *token)
{
	struct curl_slist *list;

	if (old)
		curl_slist_free_all(old);
	list = curl_slist_append(NULL, content_type);
	/* No "Expect: 100-continue" round trip for large bodies. */
	list = curl_slist_append(list, "Expect:");
	if (token != NULL && token[0] != '\0')
	{
		StringInfoData s;

		initStringInfo(&s);
		appendStringInfo(&s, "dapr-api-token: %s", token);
		list = curl_slist_append(list, s.data);
		explicit_bzero(s.data, s.len);
		pfree(s.data);
	}
	return list;
}

/* (Re)read the settings: base URL, headers, connection limits. */
void
te_dapr_configure(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	char	   *token = te_api_token();

	if (dp_multi == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			elog(ERROR, "taskevents: curl_global_init failed");
		dp_multi = curl_multi_init();
		if (dp_multi == NULL)
			elog(ERROR, "taskevents: curl_multi_init failed");
		if (pipe(dp_wake_pipe) != 0 ||
			fcntl(dp_wake_pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
			fcntl(dp_wake_pipe[1], F_SETFL, O_NONBLOCK) != 0)
			elog(ERROR, "taskevents: could not create a pipe: %m");
	}
	curl_multi_setopt(dp_multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) te_concurrency);
	curl_multi_setopt(dp_multi, CURLMOPT_MAXCONNECTS, (long) te_concurrency);

	if (!te_base_url(te_host, te_port, dp_base))
		elog(ERROR, "taskevents: taskevents.host \"%s\" makes no URL", te_host);

	dp_headers = dp_header_list(dp_headers, "Content-Type: application/cloudevents+json", token);
	dp_bulk_headers = dp_header_list(dp_bulk_headers, "Content-Type: application/json", token);
	if (token != NULL)
	{
		explicit_bzero(token, strlen(token));
		pfree(token);
	}
	MemoryContextSwitchTo(old);
}

/* The sidecar's base URL, for log lines. */
const char *
te_dapr_endpoint(void)
{
	return dp_base;
}

/* Longest answer body kept: daprd's error JSON, or a bulk answer's failed entries. */
#define DP_RESP_MAX (1024 * 1024)

/* Keep the answer's body (malloc: no ERROR inside libcurl's callback). */
static size_t
dp_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	TeRequest  *req = (TeRequest *) userdata;
	size_t		n = size * nmemb;
	size_t		take = Min(n, DP_RESP_MAX - req->resp_len);

	if (take == 0)
		return n;
	if (req->resp_len + take + 1 > req->resp_cap)
	{
		size_t		cap = Max(req->resp_cap * 2, req->resp_len + take + 1);
		char	   *p = realloc(req->resp, cap);

		if (p == NULL)
			return n;			/* keep what we have */
		req->resp = p;
		req->resp_cap = cap;
	}
	memcpy(req->resp + req->resp_len, ptr, take);
	req->resp_len += take;
	req->resp[req->resp_len] = '\0';
	return n;
}

/* Free a request's kept answer body. */
void
te_dapr_release(TeRequest *req)
{
	free(req->resp);
	req->resp = NULL;
	req->resp_len = req->resp_cap = 0;
}

/* Append text to a URL, %-escaped (curl_easy_escape: all but unreserved characters). */
static void
dp_append_escaped(CURL *h, StringInfo url, const char *text)
{
	char	   *e = curl_easy_escape(h, text, 0);

	if (e != NULL)
		appendStringInfoString(url, e);
	curl_free(e);
}

/* Start a request; it comes back from te_dapr_wait(). */
void
te_dapr_start(TeRequest *req)
{
	CURL	   *h = dp_npool > 0 ? dp_pool[--dp_npool] : curl_easy_init();
	StringInfoData url;

	req->outcome = TE_OUTCOME_RETRY;
	req->partial = false;
	req->status = 0;
	req->error[0] = '\0';
	req->resp = NULL;
	req->resp_len = req->resp_cap = 0;
	req->handle = h;
	if (h == NULL)
	{
		strlcpy(req->error, "curl_easy_init failed", sizeof(req->error));
		return;
	}

	initStringInfo(&url);
	appendStringInfoString(&url, dp_base);
	if (req->probe)
	{
		appendStringInfoString(&url, "/v1.0/healthz/outbound");
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	else
	{
		/* Dapr's bulk publish (stable since 1.17): entries carry their own partitionKey */
		appendStringInfoString(&url, req->bulk ? "/v1.0/publish/bulk/" : "/v1.0/publish/");
		dp_append_escaped(h, &url, te_pubsub);
		appendStringInfoChar(&url, '/');
		dp_append_escaped(h, &url, req->topic);
		if (!req->bulk)
		{
			appendStringInfoString(&url, "?metadata.partitionKey=");
			dp_append_escaped(h, &url, req->partition_key);
		}
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	curl_easy_setopt(h, CURLOPT_URL, url.data);
	pfree(url.data);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, req->bulk ? dp_bulk_headers : dp_headers);
	/*
	 * A publish waits for daprd's answer: one abandoned may still reach
	 * Kafka, and sending it again would publish a copy.  A connection not
	 * made, or a question about the sidecar itself, is soon given up.
	 */
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
					 (long) (req->quick ? Min(te_timeout_ms, DP_QUICK_MS) : te_timeout_ms));
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(te_timeout_ms, DP_QUICK_MS));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* straight to the sidecar: no proxy, whatever http_proxy the server's environment has */
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, dp_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(h, CURLOPT_PRIVATE, req);

	if (dp_in_flight >= DP_MAX_LIVE || curl_multi_add_handle(dp_multi, h) != CURLM_OK)
	{
		curl_easy_cleanup(h);
		req->handle = NULL;
		strlcpy(req->error, "curl_multi_add_handle failed", sizeof(req->error));
		return;
	}
	dp_live[dp_in_flight++] = h;
}

/*
 * The string value of a top-level key of daprd's error JSON, such as
 * "errorCode" or "message"; "" when absent.  Escapes are kept as they are.
 */
static void
dp_json_string(const char *body, const char *key, char *out, size_t outlen)
{
	char		pattern[64];
	const char *p;
	size_t		n = 0;

	out[0] = '\0';
	snprintf(pattern, sizeof(pattern), "\"%s\"", key);
	p = strstr(body, pattern);
	if (p == NULL)
		return;
	p += strlen(pattern);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != ':')
		return;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != '"')
		return;
	while (*p && *p != '"' && n + 1 < outlen)
	{
		if (*p == '\\' && p[1] != '\0')
			out[n++] = *p++;
		if (n + 1 < outlen)
			out[n++] = *p++;
	}
	out[n] = '\0';
}

/*
 * Make an error text safe to keep and show: valid UTF-8 (a byte that starts
 * no valid character becomes '?', a character cut at the end of the buffer
 * goes), no control characters.  It may hold what the sidecar answered.
 */
static void
dp_clean_error(char *s)
{
	unsigned char *p = (unsigned char *) s;
	size_t		left = strlen(s);

	while (left > 0)
	{
		int			n = *p < 0x80 ? 1 : pg_utf_mblen(p);

		if (n > 1 && (size_t) n > left)
		{
			*p = '\0';			/* a character cut short */
			return;
		}
		if (n == 1 || !pg_utf8_islegal(p, n))
		{
			if (*p < 0x20 || *p == 0x7f)
				*p = ' ';
			else if (*p >= 0x80)
				*p = '?';
			n = 1;
		}
		p += n;
		left -= n;
	}
}

/*
 * Does daprd's error text say that Kafka refused the record for its size?
 * The component's producer refuses a record over its maxMessageBytes
 * ("Attempt to produce message larger than configured
 * Producer.MaxMessageBytes"), the broker one over its message.max.bytes
 * ("Message was too large"); both come as ERR_PUBSUB_PUBLISH_MESSAGE, like a
 * broker outage, but sending the same event again cannot succeed.
 */
static bool
dp_record_too_large(const char *text)
{
	return strstr(text, "larger than configured Producer.MaxMessageBytes") != NULL ||
		strstr(text, "Message was too large") != NULL;
}

/*
 * Decide on daprd's answer (SPEC §4): retry what can heal (the broker, a
 * component still loading), dead-letter what cannot (bad request, token,
 * ACL, serialization, a record too large for Kafka).  Writes a one-line
 * reason into error.
 */
TeOutcome
te_dapr_classify(long status, const char *body, char *error)
{
	char		code[64];
	char		message[TE_DAPR_ERROR_LEN];
	TeOutcome	outcome;

	if (status >= 200 && status < 300)
	{
		error[0] = '\0';
		return TE_OUTCOME_OK;
	}
	dp_json_string(body, "errorCode", code, sizeof(code));
	dp_json_string(body, "message", message, sizeof(message));
	if ((status == 400 || status == 404) && strcmp(code, "ERR_PUBSUB_NOT_FOUND") == 0)
		outcome = TE_OUTCOME_RETRY;
	else if (status >= 500 && strcmp(code, "ERR_PUBSUB_CLOUD_EVENTS_SER") == 0)
		outcome = TE_OUTCOME_PERMANENT;
	/* daprd's body limit reads as a publish error ending "stream too large" */
	else if (strstr(message, "stream too large") != NULL || dp_record_too_large(message))
		outcome = TE_OUTCOME_PERMANENT;
	else if (status >= 500 || status == 408 || status == 429)
		outcome = TE_OUTCOME_RETRY;
	else
		outcome = TE_OUTCOME_PERMANENT;

	if (code[0] != '\0')
		snprintf(error, TE_DAPR_ERROR_LEN, "HTTP %ld %s: %s", status, code, message);
	else
		snprintf(error, TE_DAPR_ERROR_LEN, "HTTP %ld: %.200s", status, body);
	dp_clean_error(error);
	return outcome;
}

/* Detach a finished transfer and fill in its outcome. */
static TeRequest *
dp_finish(CURL *h, CURLcode result)
{
	TeRequest  *req;

	curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **) &req);
	curl_multi_remove_handle(dp_multi, h);
	for (int i = 0; i < dp_in_flight; i++)
	{
		if (dp_live[i] == h)
		{
			dp_live[i] = dp_live[--dp_in_flight];
			break;
		}
	}
	if (dp_npool < DP_POOL_MAX)
		dp_pool[dp_npool++] = h;
	else
		curl_easy_cleanup(h);
	req->handle = NULL;

	if (result != CURLE_OK)
	{
		/* no HTTP answer: the worker asks the sidecar's readiness whose fault it is */
		te_dapr_release(req);
		req->outcome = TE_OUTCOME_RETRY;
		snprintf(req->error, sizeof(req->error), "%s (%s)",
				 curl_easy_strerror(result), dp_base);
		return req;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &req->status);
	req->outcome = te_dapr_classify(req->status, req->resp ? req->resp : "", req->error);
	/* a bulk answer listing failed entries: the others were published */
	req->partial = req->bulk && req->resp != NULL && req->status >= 500 &&
		strstr(req->resp, "\"failedEntries\"") != NULL;
	if (!req->bulk)
		te_dapr_release(req);
	return req;
}

/*
 * Wake te_dapr_wait() out of curl's poll: for a signal handler (a write to
 * a pipe, the self-pipe trick), so that an interrupt is seen at once.
 */
void
te_dapr_wake(void)
{
	int			save_errno = errno;

	if (dp_wake_pipe[1] >= 0 && write(dp_wake_pipe[1], "", 1) < 0)
	{
		/* full (EAGAIN): a wake is pending already */
	}
	errno = save_errno;
}

/*
 * Wait in curl's poll for the transfers' sockets, the wake pipe or the
 * postmaster's death (its pipe ends), at most timeout_ms.
 */
static void
dp_poll(int timeout_ms)
{
	struct curl_waitfd extra[2] = {
		{.fd = dp_wake_pipe[0],.events = CURL_WAIT_POLLIN},
		{.fd = postmaster_alive_fds[POSTMASTER_FD_WATCH],.events = CURL_WAIT_POLLIN},
	};
	char		buf[64];

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	curl_multi_poll(dp_multi, extra, lengthof(extra), timeout_ms, NULL);
	pgstat_report_wait_end();
	if (extra[0].revents != 0)
		while (read(dp_wake_pipe[0], buf, sizeof(buf)) > 0)
			;
}

/*
 * The worker's one wait, at most timeout_ms: with no transfer running, on
 * the latch (and the postmaster's death); else until a transfer has
 * something to do, a signal or the postmaster's death.  Moves transfers
 * along; returns how many requests finished, into done[].
 */
int
te_dapr_wait(TeRequest **done, int max_done, int timeout_ms)
{
	int			running;
	int			ndone = 0;
	int			pending;
	CURLMsg    *msg;

	if (dp_in_flight == 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		return 0;
	}
	curl_multi_perform(dp_multi, &running);
	if (running == dp_in_flight)
	{
		dp_poll(timeout_ms);
		curl_multi_perform(dp_multi, &running);
	}
	while (ndone < max_done && (msg = curl_multi_info_read(dp_multi, &pending)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE)
			done[ndone++] = dp_finish(msg->easy_handle, msg->data.result);
	}
	return ndone;
}

/*
 * This entry's outcome in a partially failed bulk request: OK when daprd
 * does not list it as failed; else error gets daprd's reason, and the entry
 * is retried unless Kafka refused it for its size.
 */
TeOutcome
te_dapr_entry_outcome(const TeRequest *req, const char *entry_id, char *error)
{
	const char *list = req->resp ? strstr(req->resp, "\"failedEntries\"") : NULL;
	const char *at = list ? strstr(list, entry_id) : NULL;
	char		reason[TE_DAPR_ERROR_LEN - 64];

	if (at == NULL)
		return TE_OUTCOME_OK;
	dp_json_string(at, "error", reason, sizeof(reason));
	snprintf(error, TE_DAPR_ERROR_LEN, "HTTP %ld bulk entry failed: %s", req->status, reason);
	dp_clean_error(error);
	return dp_record_too_large(reason) ? TE_OUTCOME_PERMANENT : TE_OUTCOME_RETRY;
}

/* Requests started and not yet returned. */
int
te_dapr_in_flight(void)
{
	return dp_in_flight;
}

/* Drop every transfer (error recovery): their requests are forgotten. */
void
te_dapr_abort_all(void)
{
	for (int i = 0; i < dp_in_flight; i++)
	{
		TeRequest  *req;

		curl_easy_getinfo(dp_live[i], CURLINFO_PRIVATE, (char **) &req);
		te_dapr_release(req);
		curl_multi_remove_handle(dp_multi, dp_live[i]);
		curl_easy_cleanup(dp_live[i]);
	}
	dp_in_flight = 0;
}
