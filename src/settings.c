/*-------------------------------------------------------------------------
 * settings.c
 *		The taskevents.* configuration parameters.
 *
 * Delivery settings are PGC_SIGHUP: the worker and the preview function see
 * the same values, and a writer cannot change where its events go.  The
 * settings that name the endpoint (host, port, pubsub, token file) are
 * readable by superusers only (and pg_read_all_settings).  trace_id and
 * traceparent are per-session (SET LOCAL) so a writer can tag its
 * transaction.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <stdlib.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "settings.h"
#include "url.h"

bool		te_enabled = true;
bool		te_dapr_enabled = true;
char	   *te_host = NULL;
int			te_port = 3500;
char	   *te_pubsub = NULL;
char	   *te_topic_task_events = NULL;
char	   *te_topic_task_updates = NULL;
char	   *te_topic_reminders = NULL;
char	   *te_source = NULL;
int			te_timeout_ms = 2000;
int			te_concurrency = 16;
int			te_batch_size = 4000;
int			te_backoff_min_ms = 500;
int			te_backoff_max_ms = 60000;
int			te_max_attempts = 20;
int			te_max_age_s = 86400;
int			te_retention_s = 0;
int			te_poll_interval_ms = 1000;
int			te_max_body_kb = 4096;
int			te_bulk = TE_BULK_AUTO;

/* every boolean spelling too: taskevents.bulk was a boolean before auto */
static const struct config_enum_entry bulk_options[] = {
	{"auto", TE_BULK_AUTO, false},
	{"on", TE_BULK_ON, false},
	{"off", TE_BULK_OFF, false},
	{"true", TE_BULK_ON, true},
	{"false", TE_BULK_OFF, true},
	{"yes", TE_BULK_ON, true},
	{"no", TE_BULK_OFF, true},
	{"1", TE_BULK_ON, true},
	{"0", TE_BULK_OFF, true},
	{NULL, 0, false}
};
int			te_max_databases = 32;
char	   *te_standby_slots = NULL;
char	   *te_trace_id = NULL;
char	   *te_traceparent = NULL;

static char *te_api_token_file = NULL;

/* DAPR_API_TOKEN, taken out of the server's environment at preload. */
static char *te_env_token = NULL;

/* A W3C trace context: 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero. */
static bool
check_traceparent(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;
	static const int field_len[] = {2, 32, 16, 2};
	int			pos = 0;

	if (s == NULL || s[0] == '\0')
		return true;
	for (int f = 0; f < 4; f++)
	{
		bool		all_zero = true;

		for (int i = 0; i < field_len[f]; i++, pos++)
		{
			char		c = s[pos];

			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
				goto bad;
			if (c != '0')
				all_zero = false;
		}
		if ((f == 1 || f == 2) && all_zero)
			goto bad;
		if (f < 3 && s[pos++] != '-')
			goto bad;
	}
	if (s[pos] == '\0' && strncmp(s, "ff", 2) != 0)
		return true;
bad:
	GUC_check_errdetail("taskevents.traceparent must be a W3C trace context: 00-<32 hex digits>-<16 hex digits>-<2 hex digits>, lower case.");
	return false;
}

/* A non-empty string without spaces or slashes: used in URL paths. */
static bool
check_path_segment(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;

	if (s == NULL || s[0] == '\0' || strcspn(s, "/?# %\t\r\n") != strlen(s))
	{
		GUC_check_errdetail("The value must be non-empty and may not contain '/', '?', '#', '%%' or white space.");
		return false;
	}
	return true;
}

/* A host name, an IPv4 address or an IPv6 address: what a URL can be built on. */
static bool
check_host(char **newval, void **extra, GucSource source)
{
	char		url[TE_BASE_URL_LEN];

	if (te_base_url(*newval, 1, url))
		return true;
	GUC_check_errdetail("taskevents.host must be a host name, an IPv4 address or an IPv6 address, without a port or a scheme (the port is taskevents.port).");
	return false;
}

/* A list of replication slot names (lower-case letters, digits, underscores). */
static bool
check_slot_list(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;
	ListCell   *lc;
	bool		ok = SplitIdentifierString(copy, ',', &names);

	foreach(lc, ok ? names : NIL)
	{
		const char *name = lfirst(lc);

		ok = ok && strlen(name) > 0 && strlen(name) < NAMEDATALEN &&
			strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(name);
	}
	list_free(names);
	pfree(copy);
	if (!ok)
		GUC_check_errdetail("taskevents.standby_slots must be a comma-separated list of replication slot names.");
	return ok;
}

/*
 * The Dapr port: DAPR_HTTP_PORT, which the Dapr injector sets for every
 * container of the pod, else Dapr's default 3500.
 */
static int
default_port(void)
{
	const char *env = getenv("DAPR_HTTP_PORT");

	if (env != NULL)
	{
		char	   *end;
		long		v = strtol(env, &end, 10);

		if (*env != '\0' && *end == '\0' && v > 0 && v < 65536)
			return (int) v;
	}
	return 3500;
}

/*
 * Take DAPR_API_TOKEN out of the server's environment (called in the
 * postmaster while preloading): every process started afterwards inherits
 * the environment, and any code in a backend could read it there.
 */
static void
take_env_token(void)
{
	const char *env = getenv("DAPR_API_TOKEN");

	if (env == NULL)
		return;
	if (env[0] != '\0')
		te_env_token = strdup(env);
	unsetenv("DAPR_API_TOKEN");
}

/*
 * The Dapr API token, palloc'd, or NULL: the contents of the file named by
 * taskevents.api_token_file (a mounted Secret), else DAPR_API_TOKEN as the
 * server had it at start.  The token itself is never a setting: PostgreSQL
 * logs a setting's new value on reload.
 */
char *
te_api_token(void)
{
	char		buf[4096];
	size_t		len;
	FILE	   *f;

	if (te_api_token_file == NULL || te_api_token_file[0] == '\0')
		return te_env_token != NULL ? pstrdup(te_env_token) : NULL;

	f = AllocateFile(te_api_token_file, "r");
	if (f == NULL)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("taskevents: could not read taskevents.api_token_file \"%s\": %m",
						te_api_token_file)));
		return NULL;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	FreeFile(f);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	for (size_t i = 0; i < len; i++)
	{
		if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
		{
			ereport(WARNING,
					(errmsg("taskevents: taskevents.api_token_file \"%s\" holds a control character; no token is sent",
							te_api_token_file)));
			return NULL;
		}
	}
	return len > 0 ? pstrdup(buf) : NULL;
}

/* Define every parameter; called once from _PG_init. */
void
te_settings_init(void)
{
	DefineCustomStringVariable("taskevents.trace_id",
							   "Correlation id (CloudEvent traceid) for the events of this transaction.",
							   "Set it once per request with SET LOCAL; when empty, each transaction gets a fresh UUID.",
							   &te_trace_id, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("taskevents.traceparent",
							   "W3C trace context to attach (CloudEvent traceparent) to the events of this transaction.",
							   NULL, &te_traceparent, "", PGC_USERSET, 0,
							   check_traceparent, NULL, NULL);

	DefineCustomBoolVariable("taskevents.enabled",
							 "Delivers queued events when on; when off the worker idles and events wait.",
							 NULL, &te_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("taskevents.dapr_enabled",
							 "Publishes through Dapr when on; when off events are logged at DEBUG1 and marked done.",
							 NULL, &te_dapr_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("taskevents.host",
							   "Host of the Dapr sidecar's HTTP API.",
							   NULL, &te_host, "127.0.0.1", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_host, NULL, NULL);
	DefineCustomIntVariable("taskevents.port",
							"Port of the Dapr sidecar's HTTP API (default: DAPR_HTTP_PORT, else 3500).",
							NULL, &te_port, default_port(), 1, 65535, PGC_SIGHUP,
							GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("taskevents.pubsub",
							   "Name of the Dapr pub/sub component.",
							   NULL, &te_pubsub, "pubsub-kafka", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_path_segment, NULL, NULL);
	DefineCustomStringVariable("taskevents.api_token_file",
							   "File holding the Dapr API token (dapr-api-token header); when empty, DAPR_API_TOKEN is used.",
							   NULL, &te_api_token_file, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("taskevents.topic_task_events",
							   "Topic of task.* events.",
							   NULL, &te_topic_task_events, "task-events", PGC_SIGHUP, 0,
							   check_path_segment, NULL, NULL);
	DefineCustomStringVariable("taskevents.topic_task_updates",
							   "Topic of sync.task events.",
							   NULL, &te_topic_task_updates, "task-updates", PGC_SIGHUP, 0,
							   check_path_segment, NULL, NULL);
	DefineCustomStringVariable("taskevents.topic_reminders",
							   "Topic of reminder.* events.",
							   NULL, &te_topic_reminders, "reminders", PGC_SIGHUP, 0,
							   check_path_segment, NULL, NULL);
	DefineCustomStringVariable("taskevents.source",
							   "CloudEvent source attribute.",
							   NULL, &te_source, "pakaura/api", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.timeout",
							"How long a publish request waits for the sidecar's answer.",
							"Longer than daprd may take while its Kafka producer retries: a request given up may still be published, and its events would be sent again.",
							&te_timeout_ms, 300000, 10, 600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.concurrency",
							"Requests in flight at once, each on its own kept-alive connection.",
							NULL, &te_concurrency, 16, 1, 1024, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.batch_size",
							"Changes claimed from the outbox per round.",
							NULL, &te_batch_size, 4000, 1, 100000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.backoff_min",
							"First retry delay; it doubles (with jitter) on each failure.",
							NULL, &te_backoff_min_ms, 500, 1, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.backoff_max",
							"Ceiling of the retry delay.",
							NULL, &te_backoff_max_ms, 60000, 1, 86400000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.max_attempts",
							"Failed attempts after which an event moves to the dead letters (0: no limit).",
							NULL, &te_max_attempts, 20, 0, INT_MAX, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.max_age",
							"Age after which a failing event moves to the dead letters (0: no limit).",
							NULL, &te_max_age_s, 86400, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.retention",
							"How long delivered changes are kept in taskevents.delivered (0: deleted at once).",
							NULL, &te_retention_s, 0, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.poll_interval",
							"How often the worker looks at the outbox when no commit woke it.",
							NULL, &te_poll_interval_ms, 1000, 10, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("taskevents.max_body_size",
							"Largest event body sent; larger events go to the dead letters (the sidecar's --max-body-size).",
							NULL, &te_max_body_kb, 4096, 1, 1024 * 1024, PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("taskevents.bulk",
							 "Publishes with Dapr's bulk publish API, up to 500 events a request.",
							 "auto: when the sidecar's metadata says Dapr 1.17 or later; on: always; off: one event a request.",
							 &te_bulk, TE_BULK_AUTO, bulk_options, PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("taskevents.standby_slots",
							   "Physical replication slots whose standbys must have flushed a change before its events are published.",
							   "Name the slots of the standbys a failover may promote; empty: publish once the change is flushed locally.",
							   &te_standby_slots, "", PGC_SIGHUP, GUC_LIST_INPUT,
							   check_slot_list, NULL, NULL);

	/* A postmaster setting can only be defined while preloading. */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("taskevents.max_databases",
								"Databases that can run a delivery worker at once.",
								NULL, &te_max_databases, 32, 1, 1024, PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		take_env_token();
	}

	MarkGUCPrefixReserved("taskevents");
}
