/*-------------------------------------------------------------------------
 * worker.c
 *		The delivery worker of one database: queue -> CloudEvents -> Dapr.
 *
 * Each round:
 *	1. claim (queue.c), in a short transaction: changes due for a retry, new
 *	   changes, and dead letters an operator re-queued;
 *	2. build their CloudEvents (round.c), each change on its own: one that
 *	   cannot be built or sent becomes dead letters with the reason, the
 *	   others go on;
 *	3. flush WAL, so every claimed commit is durable (durable.c; with
 *	   taskevents.standby_slots the round is held until those standbys have
 *	   it too, the worker's loop asking again every 100 ms);
 *	4. send (round.c), with no transaction open: each task's events form a
 *	   chain sent one after another (per-task order); up to
 *	   taskevents.concurrency requests are in flight at once;
 *	5. record the outcomes (queue.c) in another short transaction.
 *
 * The worker's slot in shared memory (state, last error, counters) is
 * status.c's.  It waits in one place, te_dapr_wait() (dapr.c): on the latch
 * when nothing is in flight, else in curl's poll of the sidecar's sockets,
 * which SIGTERM and procsignals (through the handlers below) and the
 * postmaster's death end at once as the latch would.
 *
 * When a round gets no HTTP answer at all (refused, reset, timed out), the
 * worker asks the sidecar's readiness endpoint at once.  No answer there
 * either: the sidecar is away, which is no event's fault, so the round is
 * forgotten (no attempt charged), the worker pauses, probes every second and
 * resumes as soon as the probe succeeds.  A publish waits for daprd's answer
 * up to taskevents.timeout (minutes): one given up may still be published.
 *
 * The worker runs as a superuser in a database that other roles own, so it
 * pins every setting that could steer or stop it, whatever the database and
 * role settings say.  No ERROR escapes the loop: each step runs inside
 * PG_TRY, and the catch reports, aborts the transaction, drops transfers and
 * resets the memory, which is also reset after every step (but a round held
 * for the standbys keeps its own).  Events sent but not recorded when the
 * worker stops are sent again later, with their ids.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/procsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "backfill.h"
#include "dapr.h"
#include "durable.h"
#include "queue.h"
#include "round.h"
#include "settings.h"
#include "spiutil.h"
#include "status.h"

PGDLLEXPORT void taskevents_worker_main(Datum arg);

/* How long changes gather after a round that sent something, at most. */
#define WK_GATHER_MS 5

/* What the round's memory keeps between rounds. */
#define WK_ROUND_KEEP (4 * 1024 * 1024)

/* How often a round held for the standbys asks whether they have it. */
#define WK_STANDBY_POLL_MS 100

/* While the sidecar is away, a summary line this often. */
#define WK_OUTAGE_SUMMARY_MS 60000

static MemoryContext wk_cxt;
static bool wk_ready = false;	/* the extension's objects are this library's */
static bool wk_was_off = true;	/* delivery was off in the last step */
static bool wk_paused = false;	/* waiting for the readiness probe */
static bool wk_sent = false;	/* the last round sent something */
static RdRound *wk_held = NULL; /* a round waiting for the standbys, in wk_cxt */
static XLogRecPtr wk_held_lsn;	/* what they must have flushed */
static bool wk_outage = false;	/* from the first pause to the first answer */
static TimestampTz wk_outage_since;
static TimestampTz wk_outage_logged;
static TimestampTz wk_last_probe;
static bool wk_mode_known = false;	/* taskevents.bulk = auto has chosen */
static bool wk_mode_logged = false;
static char wk_mode_reason[TE_DAPR_ERROR_LEN];	/* the answer it chose on */
static bool wk_bulk_now = false;	/* its choice */

/* The database's name (looked up at start). */
static char wk_dbname[NAMEDATALEN];

/*
 * Pin what the worker runs with, whatever ALTER DATABASE / ALTER ROLE set
 * (a database owner may set any of these for its database): its own
 * superuser identity, a search_path no other role can add to, transactions
 * that can write and are never cut short, triggers firing as usual, errors
 * that stay errors, plans made once.
 */
static void
wk_pin_environment(void)
{
	static const char *const pins[][2] = {
		{"role", "none"},
		{"search_path", "pg_catalog, pg_temp"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_deferrable", "off"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"idle_session_timeout", "0"},
#if PG_VERSION_NUM >= 170000
		{"transaction_timeout", "0"},
#endif
#if PG_VERSION_NUM >= 160000
		{"debug_parallel_query", "off"},
#else
		{"force_parallel_mode", "off"},
#endif
		{"max_parallel_workers_per_gather", "0"},
		{"session_replication_role", "origin"},
		{"exit_on_error", "off"},
		{"zero_damaged_pages", "off"},
		{"temp_tablespaces", ""},
		{"default_tablespace", ""},
		{"jit", "off"},
		/* planned once: every statement reads by index in key order, whatever its values */
		{"plan_cache_mode", "force_generic_plan"},
	};

	MemoryContext caller = te_xact_begin();

	SetConfigOption("session_authorization", GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false),
					PGC_SUSET, PGC_S_OVERRIDE);
	for (int i = 0; i < lengthof(pins); i++)
		SetConfigOption(pins[i][0], pins[i][1], PGC_SUSET, PGC_S_OVERRIDE);
	te_xact_commit(caller);
}

/*
 * Look at the extension: deliver when its objects are this library's, idle
 * until ALTER EXTENSION ... UPDATE when they are older, exit when it is gone.
 */
static void
wk_open(void)
{
	switch (qu_open())
	{
		case QU_READY:
			if (!wk_ready)
				ereport(LOG, (errmsg("taskevents: delivering the events of database \"%s\"",
									 wk_dbname)));
			wk_ready = true;
			break;
		case QU_NEEDS_UPDATE:
			if (st_state() != TE_WORKER_NEEDS_UPDATE)
				ereport(LOG,
						(errmsg("taskevents: the extension's objects in database \"%s\" are older than its library; changes are captured but not delivered",
								wk_dbname),
						 errhint("Run ALTER EXTENSION taskevents UPDATE in that database.")));
			st_set_state_keep(TE_WORKER_NEEDS_UPDATE);
			break;
		case QU_ABSENT:
			st_exit_absent();
	}
}

/* Note the database's name, and find how to convert its text to UTF-8. */
static void
wk_init_database(void)
{
	MemoryContext caller = te_xact_begin();

	strlcpy(wk_dbname, get_database_name(MyDatabaseId), sizeof(wk_dbname));
	rd_init_encoding();
	te_xact_commit(caller);
}

/* Ask the sidecar something (req->quick) and wait for its answer; the caller releases req. */
static void
wk_ask(TeRequest *req)
{
	TeRequest  *done[1];

	req->quick = true;
	te_dapr_start(req);
	while (req->handle != NULL)
	{
		(void) te_dapr_wait(done, 1, te_timeout_ms);	/* curl gives it up sooner */
		st_check_alive();
	}
}

/* Ask the sidecar whether it is ready (GET /v1.0/healthz/outbound). */
static bool
wk_probe(void)
{
	TeRequest	req = {0};

	req.probe = true;
	wk_ask(&req);
	wk_last_probe = GetCurrentTimestamp();
	if (req.outcome != TE_OUTCOME_OK)
		st_set_error(req.error);
	return req.outcome == TE_OUTCOME_OK;
}

/*
 * Publish in bulk?  With taskevents.bulk = auto, as the sidecar's bulk
 * publish API answers a request of no entries: 2xx, it has it (Dapr 1.17
 * or later, the publish API allowed); 404 from no component, it has not.
 * Asked again after a reload or an outage (daprd may have changed); the
 * choice is logged when it or its reason changes.  Other answers (the
 * component still loading, say) leave the question for the next round.
 */
static bool
wk_use_bulk(void)
{
	TeRequest	req = {0};
	bool		bulk;

	if (te_bulk != TE_BULK_AUTO || !te_dapr_enabled)
		return te_bulk == TE_BULK_ON && te_dapr_enabled;
	if (wk_mode_known)
		return wk_bulk_now;
	req.bulk = true;
	req.topic = te_topic_task_events;
	req.body = "[]";
	req.body_len = 2;
	wk_ask(&req);
	te_dapr_release(&req);
	bulk = req.outcome == TE_OUTCOME_OK;
	if (!bulk && !(req.status == 404 && req.outcome == TE_OUTCOME_PERMANENT))
		return false;
	wk_mode_known = true;
	if (bulk != wk_bulk_now || !wk_mode_logged || strcmp(req.error, wk_mode_reason) != 0)
		ereport(LOG,
				(errmsg("taskevents: publishing %s: the Dapr sidecar at %s %s",
						bulk ? "in bulk" : "one event per request", te_dapr_endpoint(),
						bulk ? "has the bulk publish API" :
						psprintf("has no bulk publish API (%s), which needs Dapr 1.17 or later with the publish API allowed", req.error)),
				 errhint("taskevents.bulk = auto chose this; set it to on or off to choose.")));
	wk_mode_logged = true;
	strlcpy(wk_mode_reason, req.error, sizeof(wk_mode_reason));
	wk_bulk_now = bulk;
	return bulk;
}

/* Read the configuration file again when told to. */
static void
wk_reload(void)
{
	if (!ConfigReloadPending)
		return;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	te_dapr_configure();
	wk_mode_known = false;
}

/*
 * The sidecar is away: pause.  Only the first pause of an outage is logged;
 * while it lasts a summary follows every minute.
 */
static void
wk_pause(const char *error)
{
	TimestampTz now = GetCurrentTimestamp();

	wk_paused = true;
	wk_mode_known = false;		/* the sidecar that comes back may be another */
	st_set_state(TE_WORKER_PAUSED, false);
	st_set_error(error);
	if (!wk_outage)
	{
		wk_outage = true;
		wk_outage_since = wk_outage_logged = now;
		ereport(LOG,
				(errmsg("taskevents: the Dapr sidecar at %s is unreachable (%s); delivery paused, probing every second",
						te_dapr_endpoint(), error)));
	}
	else if (TimestampDifferenceExceeds(wk_outage_logged, now, WK_OUTAGE_SUMMARY_MS))
	{
		long		secs;
		int			usecs;

		wk_outage_logged = now;
		TimestampDifference(wk_outage_since, now, &secs, &usecs);
		ereport(LOG,
				(errmsg("taskevents: the Dapr sidecar at %s is still unreachable after %ld s (%s); delivery paused",
						te_dapr_endpoint(), secs, error)));
	}
}

/* A round got answers again (or had nothing to send): the outage is over. */
static void
wk_outage_over(void)
{
	long		secs;
	int			usecs;

	if (!wk_outage)
		return;
	wk_outage = false;
	TimestampDifference(wk_outage_since, GetCurrentTimestamp(), &secs, &usecs);
	ereport(LOG,
			(errmsg("taskevents: the Dapr sidecar at %s is back after %ld s; delivery resumed",
					te_dapr_endpoint(), secs)));
}

/* The queue's objects were altered: deliver nothing until they are put right. */
static void
wk_halt(const char *why)
{
	if (st_state() != TE_WORKER_HALTED)
		ereport(WARNING,
				(errmsg("taskevents: delivery in database \"%s\" halted: %s", wk_dbname, why)));
	st_set_state_keep(TE_WORKER_HALTED);
	st_set_error(why);
}

static long wk_send(RdRound *r);

/*
 * One round: claim, build, make durable, send, record.  Returns how long to
 * sleep: 0 when more is waiting.
 */
static long
wk_round(void)
{
	RdRound    *r = rd_claim();
	QuRound    *q = &r->q;

	if (q->halted != NULL)
	{
		wk_halt(q->halted);
		return q->sleep_ms;
	}
	if (st_state() == TE_WORKER_HALTED)
	{
		ereport(LOG, (errmsg("taskevents: the queue's objects are as delivery needs them again; delivery goes on")));
		st_set_state(TE_WORKER_DELIVERING, st_reachable());
	}
	wk_sent = q->nchanges > 0 || q->nresends > 0;
	if (!wk_sent)
	{
		wk_outage_over();
		rd_record(r);			/* the cursor may have closed holes */
		return q->sleep_ms;
	}
	rd_build(r);
	rd_stage(r, RD_BUILD);
	wk_held_lsn = du_flush_wal();
	return wk_send(r);
}

/*
 * Send a round whose commits are durable (and on the standbys named), or
 * hold it until they are: the standby wait is a state of the worker's loop,
 * which asks again every 100 ms.  Returns how long to sleep.
 */
static long
wk_send(RdRound *r)
{
	const char *unanswered;

	wk_held = NULL;
	if (!du_standbys_have(wk_held_lsn))
	{
		wk_held = r;
		return WK_STANDBY_POLL_MS;
	}
	rd_stage(r, RD_DURABLE);
	/* a claim made while sending is not held for the standbys: none then */
	rd_send(r, wk_use_bulk(), te_standby_slots[0] == '\0');

	/*
	 * No answer at all: if the sidecar is not ready either, it is away,
	 * which is no event's fault.  Nothing is recorded: no attempt charged.
	 */
	if ((unanswered = rd_unanswered(r)) != NULL && !wk_probe())
	{
		wk_pause(unanswered);
		return 1000;
	}
	wk_outage_over();
	rd_record(r);
	return r->q.more ? 0 : r->q.sleep_ms;
}

/* While paused: probe readiness every second, resume when the sidecar answers. */
static long
wk_paused_step(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(wk_last_probe, now, 1000))
		return 1000 - (now - wk_last_probe) / 1000;
	if (!wk_probe())
		return 1000;
	wk_paused = false;
	st_set_state(TE_WORKER_DELIVERING, true);
	return 0;
}

/* One step of the worker's loop; returns how long to sleep. */
static long
wk_step(void)
{
	long		sleep_ms;
	long		backfill_ms;

	/*
	 * Until delivery is on, and in its first step, the extension is looked
	 * at afresh: the cursor read while delivery was off (during a restore,
	 * say) may have changed since.
	 */
	if (!wk_ready || wk_was_off || wk_paused)
	{
		wk_open();				/* exits when the extension is gone */
		if (!wk_ready)
			return te_poll_interval_ms;
	}
	wk_was_off = !te_enabled;
	if (!te_enabled)
	{
		wk_held = NULL;			/* left for later: claimed again */
		st_set_state_keep(TE_WORKER_DISABLED);
		return te_poll_interval_ms;
	}
	if (wk_paused)
		return wk_paused_step();
	if (wk_held != NULL)
		return wk_send(wk_held);
	if (st_state() != TE_WORKER_HALTED)
		st_set_state_keep(TE_WORKER_DELIVERING);
	sleep_ms = wk_round();
	if (st_state() == TE_WORKER_DELIVERING && (backfill_ms = te_backfill_step()) >= 0)
		sleep_ms = Min(sleep_ms, backfill_ms);
	return sleep_ms;
}

/*
 * After an ERROR inside a step: report it, clean up, carry on; shaped like
 * the error paths of bgwriter.c and autovacuum.c.  Interrupts are held
 * while cleaning up; what a transaction would release is released here too,
 * for an error raised with none open (in the send, say).
 */
static void
wk_recover(void)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(wk_cxt);	/* reset before the next step */
	edata = CopyErrorData();
	EmitErrorReport();
	te_spi_abort();
	te_dapr_abort_all();
	wk_held = NULL;
	MemoryContextSwitchTo(wk_cxt);
	st_set_error(edata->message);
	RESUME_INTERRUPTS();
}

/*
 * PostgreSQL's handlers for SIGTERM and for procsignals (a barrier, say), then
 * a wake for the wait in curl's poll, which the latch does not end.
 */
static void
wk_die(SIGNAL_ARGS)
{
	die(postgres_signal_arg);
	te_dapr_wake();
}

static void
wk_procsignal(SIGNAL_ARGS)
{
	procsignal_sigusr1_handler(postgres_signal_arg);
	te_dapr_wake();
}

/* Entry point of a database's delivery worker. */
void
taskevents_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, wk_die);
	pqsignal(SIGUSR1, wk_procsignal);
	/*
	 * No query of ours to cancel: a cancel (a script cancelling long
	 * queries, say) would drop the round being sent, whose published events
	 * would then be sent again.  pg_terminate_backend() stops the worker.
	 */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	wk_pin_environment();
	pgstat_report_appname("taskevents worker");

	st_attach(dboid);
	/* a round's memory is reset, not freed: its first 4 MB stay, warm */
	wk_cxt = AllocSetContextCreate(TopMemoryContext, "taskevents round",
								   WK_ROUND_KEEP, WK_ROUND_KEEP, ALLOCSET_DEFAULT_MAXSIZE);
	wk_init_database();
	te_dapr_configure();

	for (;;)
	{
		volatile long sleep_ms = 1000;

		MemoryContextSwitchTo(TopMemoryContext);
		if (wk_held == NULL)
			MemoryContextReset(wk_cxt);
		ResetLatch(MyLatch);
		st_check_alive();
		wk_reload();

		PG_TRY();
		{
			MemoryContextSwitchTo(wk_cxt);
			sleep_ms = wk_step();
		}
		PG_CATCH();
		{
			wk_recover();
		}
		PG_END_TRY();

		MemoryContextSwitchTo(TopMemoryContext);

		/*
		 * After a round that sent something, let changes gather a moment
		 * before the next (commits do not cut this short): under load,
		 * fewer and larger rounds cost the worker less per event.
		 */
		if (wk_sent && sleep_ms > 0)
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(sleep_ms, WK_GATHER_MS), PG_WAIT_EXTENSION);
		if (sleep_ms > 0)
			(void) te_dapr_wait(NULL, 0, sleep_ms);
	}
}
