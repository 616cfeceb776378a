/*-------------------------------------------------------------------------
 * worker.c
 *		The delivery worker of one database: queue -> CloudEvents -> Dapr.
 *
 * Each round:
 *	1. claim (queue.c), in a short transaction: changes due for a retry, new
 *	   changes, and dead letters an operator re-queued;
 *	2. build their CloudEvents, each change on its own: one that cannot be
 *	   built or sent becomes dead letters with the reason, the others go on;
 *	3. flush WAL, so every claimed commit is durable (and, with
 *	   taskevents.standby_slots, wait until those standbys have it too);
 *	4. send, with no transaction open: each task's events form a chain sent
 *	   one after another (per-task order); up to taskevents.concurrency
 *	   chains are in flight at once;
 *	5. record the outcomes (queue.c) in another short transaction.
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
 * resets the memory, which is also reset after every step.  Events sent but
 * not recorded when the worker stops are sent again later, with their ids.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "backfill.h"
#include "cloudevent.h"
#include "compat.h"
#include "dapr.h"
#include "queue.h"
#include "settings.h"
#include "shared.h"

PGDLLEXPORT void taskevents_worker_main(Datum arg);

/* One event to send: of a claimed change, or a re-queued dead letter. */
typedef struct WkEvent
{
	QuChange   *change;			/* NULL for a re-queued dead letter */
	QuResend   *resend;
	TeEvent		ev;
	pg_uuid_t	id;
	const char *type;
	const char *topic;
	const char *task_id;
	char	   *body;			/* server encoding: what dead letters keep */
	TeRequest	req;			/* body and partition key in UTF-8 */
	int			attempt;		/* this attempt's number */
	struct WkEvent *next;		/* next event of the same task */
} WkEvent;

/* The last event so far of each task's chain in a round. */
typedef struct WkTail
{
	uint64		key;			/* hash of the task id */
	WkEvent    *tail;
} WkTail;

/* Events free to go, FIFO: one queue per topic, one for re-queued dead letters. */
#define WK_NQUEUES (TE_TOPIC_REMINDERS + 2)
#define WK_RESENT_QUEUE (WK_NQUEUES - 1)

typedef struct WkQueue
{
	WkEvent   **items;
	int			head;
	int			tail;
} WkQueue;

/* One bulk publish request and the events it carries. */
typedef struct WkBulk
{
	TeRequest	req;
	WkEvent   **events;
	int			n;
} WkBulk;

/* Most entries in one bulk publish request; fewest when there are more. */
#define WK_BULK_MAX 500
#define WK_BULK_MIN 100

/* No answer for this long: the round says it is waiting. */
#define WK_SLOW_MS 10000

/* How long changes gather after a round that sent something, at most. */
#define WK_GATHER_MS 5

/* What the round's memory keeps between rounds. */
#define WK_ROUND_KEEP (4 * 1024 * 1024)

/* About how many bytes of titles and changes one round reads at most. */
#define WK_ROUND_BYTES (16 * 1024 * 1024)

/* The stages of a round, timed for its DEBUG1 line. */
typedef enum WkStage
{
	WK_CLAIM,
	WK_BUILD,
	WK_DURABLE,
	WK_SEND,
	WK_RECORD,
	WK_NSTAGES
} WkStage;

/* Everything one round works on, allocated in wk_cxt. */
typedef struct WkRound
{
	QuRound		q;
	WkQueue		ready[WK_NQUEUES];
	int			nready;
	int			next_queue;		/* round robin over the queues */
	List	   *failed;			/* events that failed and may be retried */
	int			answered;		/* got an HTTP answer */
	int			unanswered;		/* refused, reset, timed out */
	TimestampTz last_answer;	/* when a request last came back */
	bool		slow_logged;
	uint64		published;
	uint64		retried;
	uint64		ndead;
	int			requests;		/* HTTP requests started */
	double		in_flight_us;	/* requests in flight x microseconds waited */
	TimestampTz stage_end;		/* when the last stage timed ended */
	long		stage_us[WK_NSTAGES];
} WkRound;

static MemoryContext wk_cxt;
static TeDbSlot *wk_slot;
static bool wk_ready = false;	/* the extension's objects are this library's */
static bool wk_was_off = true;	/* delivery was off in the last step */
static bool wk_paused = false;	/* waiting for the readiness probe */
static bool wk_sent = false;	/* the last round sent something */
static bool wk_outage = false;	/* from the first pause to the first answer */
static TimestampTz wk_outage_since;
static TimestampTz wk_outage_logged;
static TimestampTz wk_last_probe;
static bool wk_mode_known = false;	/* taskevents.bulk = auto has chosen */
static bool wk_mode_logged = false;
static char wk_mode_reason[TE_DAPR_ERROR_LEN];	/* the answer it chose on */
static bool wk_bulk_now = false;	/* its choice */

/* The database's name, and how to convert its text to UTF-8 (looked up at start). */
static char wk_dbname[NAMEDATALEN];
static FmgrInfo wk_conv;
static bool wk_conv_ok = false;

/* Outcome log lines: at most WK_LOG_BURST per window, then one summary. */
#define WK_LOG_WINDOW_MS	10000
#define WK_LOG_BURST		20
#define WK_OUTAGE_SUMMARY_MS 60000
static TimestampTz wk_log_window;
static int	wk_log_lines;
static int	wk_log_suppressed;

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

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SetConfigOption("session_authorization", GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false),
					PGC_SUSET, PGC_S_OVERRIDE);
	for (int i = 0; i < lengthof(pins); i++)
		SetConfigOption(pins[i][0], pins[i][1], PGC_SUSET, PGC_S_OVERRIDE);
	CommitTransactionCommand();
}

/* Exit when the postmaster has died; serve interrupts. */
static void
wk_check_alive(void)
{
	if (!PostmasterIsAlive())
		proc_exit(1);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Publish the worker's state in its slot.  Only a delivering worker wants
 * to be woken at each commit: otherwise it would wake for nothing.
 */
static void
wk_set_state(TeWorkerState state, bool reachable)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	wk_slot->state = state;
	wk_slot->sidecar_reachable = reachable;
	wk_slot->wake_me = (state == TE_WORKER_DELIVERING);
	LWLockRelease(te_shared->lock);
}

static void
wk_set_state_keep(TeWorkerState state)
{
	if (wk_slot->state != state)
		wk_set_state(state, wk_slot->sidecar_reachable);
}

/*
 * An error text (UTF-8, perhaps from the sidecar) as text of the database
 * encoding: as it is in UTF-8 and SQL_ASCII databases, else with every
 * character outside ASCII as '?'.
 */
static const char *
wk_error_text(const char *utf8)
{
	char	   *s;
	int			n = 0;

	if (utf8 == NULL || GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		return utf8;
	s = palloc(strlen(utf8) + 1);
	for (const unsigned char *p = (const unsigned char *) utf8; *p; p++)
	{
		if (*p < 0x80)
			s[n++] = *p;
		else if ((*p & 0xC0) != 0x80)
			s[n++] = '?';
	}
	s[n] = '\0';
	return s;
}

static void
wk_set_error(const char *error)
{
	const char *text = wk_error_text(error);
	int			len = pg_mbcliplen(text, strlen(text), TE_LAST_ERROR_LEN - 1);

	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	memcpy(wk_slot->last_error, text, len);
	wk_slot->last_error[len] = '\0';
	wk_slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(te_shared->lock);
}

/* Leave the slot when the worker exits. */
static void
wk_detach(int code, Datum arg)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	if (wk_slot->pid == MyProcPid)
	{
		wk_slot->pid = 0;
		wk_slot->pgprocno = -1;
		wk_slot->wake_me = false;
		wk_slot->state = TE_WORKER_STOPPED;
	}
	LWLockRelease(te_shared->lock);
	te_shared_wake_launcher(false);
}

/* Take this database's slot (counters start again); exit if another worker has it. */
static void
wk_attach(Oid dboid)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	wk_slot = te_shared_slot(dboid);
	if (wk_slot == NULL || (wk_slot->pid != 0 && wk_slot->pid != MyProcPid))
	{
		LWLockRelease(te_shared->lock);
		proc_exit(0);
	}
	wk_slot->pid = MyProcPid;
	wk_slot->pgprocno = TE_PROC_NUMBER();
	wk_slot->state = TE_WORKER_STARTING;
	wk_slot->absent = false;
	wk_slot->started_at = GetCurrentTimestamp();
	wk_slot->published = wk_slot->retried = wk_slot->dead = 0;
	LWLockRelease(te_shared->lock);
	on_shmem_exit(wk_detach, 0);
}

/* The extension is not (or no longer) here: tell the launcher and exit. */
static void
wk_exit_absent(void)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	wk_slot->absent = true;
	LWLockRelease(te_shared->lock);
	proc_exit(0);
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
			if (wk_slot->state != TE_WORKER_NEEDS_UPDATE)
				ereport(LOG,
						(errmsg("taskevents: the extension's objects in database \"%s\" are older than its library; changes are captured but not delivered",
								wk_dbname),
						 errhint("Run ALTER EXTENSION taskevents UPDATE in that database.")));
			wk_set_state_keep(TE_WORKER_NEEDS_UPDATE);
			break;
		case QU_ABSENT:
			wk_exit_absent();
	}
}

/* Note the database's name, and find how to convert its text to UTF-8. */
static void
wk_init_database(void)
{
	int			enc = GetDatabaseEncoding();
	Oid			proc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	strlcpy(wk_dbname, get_database_name(MyDatabaseId), sizeof(wk_dbname));
	if (enc != PG_UTF8 && enc != PG_SQL_ASCII)
	{
		proc = FindDefaultConversionProc(enc, PG_UTF8);
		if (OidIsValid(proc))
		{
			fmgr_info_cxt(proc, &wk_conv, TopMemoryContext);
			wk_conv_ok = true;
		}
	}
	CommitTransactionCommand();
}

/*
 * Text of the database encoding as UTF-8, what is sent: *out and *outlen.
 * Returns why it cannot be, or NULL.  Never raises an ERROR for the text.
 */
static const char *
wk_utf8(const char *s, size_t len, const char **out, size_t *outlen)
{
	int			enc = GetDatabaseEncoding();
	char	   *dst;
	int			done;

	*out = s;
	*outlen = len;
	if (enc == PG_UTF8)
		return NULL;
	if (enc == PG_SQL_ASCII)
		return pg_verify_mbstr(PG_UTF8, s, len, true) ? NULL :
			"the event is not valid UTF-8 (the database encoding is SQL_ASCII)";
	if (!wk_conv_ok)
		return "the database encoding has no conversion to UTF-8";
	dst = MemoryContextAllocHuge(CurrentMemoryContext, len * MAX_CONVERSION_GROWTH + 1);
	done = DatumGetInt32(FunctionCall6(&wk_conv, Int32GetDatum(enc), Int32GetDatum(PG_UTF8),
									   CStringGetDatum(s), CStringGetDatum(dst),
									   Int32GetDatum(len), BoolGetDatum(true)));
	if (done < len)
		return "a character of the event has no equivalent in UTF-8";
	*out = dst;
	*outlen = strlen(dst);
	return NULL;
}

/* Should this outcome line be written, or counted into the next summary? */
static bool
wk_log_allowed(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(wk_log_window, now, WK_LOG_WINDOW_MS))
	{
		if (wk_log_suppressed > 0)
			ereport(LOG,
					(errmsg("taskevents: %d more failed deliveries in the last %d s were not logged one by one; see taskevents.status",
							wk_log_suppressed, WK_LOG_WINDOW_MS / 1000)));
		wk_log_window = now;
		wk_log_lines = 0;
		wk_log_suppressed = 0;
	}
	if (wk_log_lines < WK_LOG_BURST)
	{
		wk_log_lines++;
		return true;
	}
	wk_log_suppressed++;
	return false;
}

/* One structured log line for an event's outcome. */
static void
wk_log_outcome(int elevel, const char *outcome, const WkEvent *e, int attempt,
			   long status, const char *error)
{
	StringInfoData id;
	const TeChange *c = e->change ? &e->change->c : NULL;

	if (!message_level_is_interesting(elevel))
		return;
	if (elevel >= LOG && !wk_log_allowed())
		return;
	initStringInfo(&id);
	te_append_uuid(&id, &e->id);
	ereport(elevel,
			(errmsg("taskevents: outcome=%s event_type=%s topic=%s task_id=%s user_id=%s correlation_id=%s event_id=%s dapr_status=%ld attempt=%d error=\"%s\"",
					outcome, e->type, e->topic, e->task_id,
					c && c->user_id ? c->user_id : "", c ? c->trace_id : "",
					id.data, status, attempt, wk_error_text(error))));
	pfree(id.data);
}

/* Queue an event that is free to go. */
static void
wk_push(WkRound *r, WkEvent *e)
{
	WkQueue    *q = &r->ready[e->change ? (int) e->ev.topic : WK_RESENT_QUEUE];

	q->items[q->tail++] = e;
	r->nready++;
}

/* Dead-letter an event, with its number of attempts and last outcome. */
static void
wk_dead(WkRound *r, WkEvent *e, int attempts, long status, const char *error)
{
	QuDead	   *d = palloc0(sizeof(QuDead));

	d->id = e->id;
	d->change = e->change;
	d->type = e->type;
	d->topic = e->topic;
	d->body = e->body;
	d->attempts = attempts;
	d->status = (int) status;
	d->error = wk_error_text(error);
	r->q.dead = lappend(r->q.dead, d);
	r->ndead++;
	wk_log_outcome(WARNING, "dead_letter", e, attempts, status, error);
}

/* Dead-letter an event that was never sent; its chain goes on. */
static void
wk_dead_unsent(WkRound *r, WkEvent *e, const char *why)
{
	wk_dead(r, e, e->change->attempts + 1, 0, why);
	e->change->done |= 1 << e->ev.slot;
	e->change->attempts = 0;
	e->change->dirty = true;
}

/*
 * Fill in an event's request: body and partition key in UTF-8.  Returns why
 * it cannot be sent, or NULL.
 */
static const char *
wk_prepare(WkEvent *e)
{
	const char *why;
	size_t		len;

	why = wk_utf8(e->body, strlen(e->body), &e->req.body, &e->req.body_len);
	if (why == NULL)
		why = wk_utf8(e->task_id, strlen(e->task_id), &e->req.partition_key, &len);
	if (why == NULL && e->req.body_len > (size_t) te_max_body_kb * 1024)
		why = psprintf("event of %zu bytes is over taskevents.max_body_size (%d kB)",
					   e->req.body_len, te_max_body_kb);
	e->req.topic = e->topic;
	e->req.owner = e;
	return why;
}

/* A new event of a change (slot k of its events). */
static WkEvent *
wk_event(QuChange *ch, const TeEvent *ev)
{
	WkEvent    *e = palloc0(sizeof(WkEvent));

	e->change = ch;
	e->ev = *ev;
	te_event_id(&ch->c, ev->slot, &e->id);
	e->type = ev->type;
	e->topic = te_topic_name(ev->topic);
	e->task_id = ch->c.task_id;
	return e;
}

/* Chain an event behind the last one of its task (key) in the round, or queue it. */
static void
wk_chain(WkRound *r, HTAB *tails, uint64 key, WkEvent *e)
{
	bool		found;
	WkTail	   *ent = hash_search(tails, &key, HASH_ENTER, &found);

	if (found)
		ent->tail->next = e;
	else
		wk_push(r, e);
	ent->tail = e;
}

/*
 * Build the events of one change that are still to go and chain them behind
 * its task's; an event that cannot be built or sent is dead-lettered.
 */
static void
wk_build_change(WkRound *r, QuChange *ch, HTAB *tails)
{
	TeEvent		evs[TE_MAX_EVENTS];
	int			nev = te_change_events(&ch->c, evs);
	uint64		key = hash_bytes_extended((const unsigned char *) ch->c.task_id,
										  strlen(ch->c.task_id), 0);

	for (int k = 0; k < nev; k++)
	{
		WkEvent    *e;
		StringInfoData body;
		const char *why = te_event_unsendable(&ch->c, &evs[k]);

		if (ch->done & (1 << evs[k].slot))
			continue;
		e = wk_event(ch, &evs[k]);
		if (why == NULL)
		{
			initStringInfo(&body);
			te_append_cloudevent(&body, &ch->c, &evs[k]);
			e->body = body.data;
			why = wk_prepare(e);
		}
		if (why != NULL)
			wk_dead_unsent(r, e, why);
		else
			wk_chain(r, tails, key, e);
	}
}

/* Dead-letter whatever of a change is not settled: its events could not be built. */
static void
wk_build_failed(WkRound *r, QuChange *ch, const char *why)
{
	TeEvent		evs[TE_MAX_EVENTS];
	int			nev = te_change_events(&ch->c, evs);

	for (int k = 0; k < nev; k++)
		if (!(ch->done & (1 << evs[k].slot)))
			wk_dead_unsent(r, wk_event(ch, &evs[k]), why);
}

/*
 * A re-queued dead letter, sent as it was stored: per task one at a time,
 * in the order the claim read them (capture order), chained like a task's
 * events.
 */
static void
wk_build_resend(WkRound *r, QuResend *d, HTAB *tails)
{
	WkEvent    *e = palloc0(sizeof(WkEvent));
	const char *why;

	e->resend = d;
	e->id = d->id;
	e->type = d->type;
	e->topic = d->topic;
	e->task_id = d->task_id;
	e->body = (char *) d->body;
	e->attempt = d->attempts + 1;
	why = wk_prepare(e);
	if (why != NULL)
	{
		d->published = false;
		d->error = why;
		return;
	}
	/* a key of their own: re-sent dead letters wait only behind each other */
	wk_chain(r, tails, hash_bytes_extended((const unsigned char *) d->task_id, strlen(d->task_id), 1), e);
}

/*
 * Build every event of the round: changes in sequence order, each task's
 * events chained in that order.  A change whose events cannot be built (an
 * error, say out of memory) becomes dead letters; the others go on.
 */
static void
wk_build(WkRound *r)
{
	HASHCTL		hctl = {0};
	HTAB	   *tails;
	int			cap = r->q.nchanges * TE_MAX_EVENTS + r->q.nresends + 1;

	for (int q = 0; q < WK_NQUEUES; q++)
		r->ready[q].items = palloc(sizeof(WkEvent *) * cap);
	hctl.keysize = sizeof(uint64);
	hctl.entrysize = sizeof(WkTail);
	hctl.hcxt = wk_cxt;
	tails = hash_create("taskevents chains", Max(r->q.nchanges, 16), &hctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (int i = 0; i < r->q.nchanges; i++)
	{
		QuChange   *ch = &r->q.changes[i];
		TeEvent		evs[TE_MAX_EVENTS];
		int			nev = te_change_events(&ch->c, evs);

		for (int k = 0; k < nev; k++)
			ch->slots |= 1 << evs[k].slot;
		if (ch->blocked)
			continue;
		PG_TRY();
		{
			wk_build_change(r, ch, tails);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(wk_cxt);
			edata = CopyErrorData();
			FlushErrorState();
			wk_build_failed(r, ch, psprintf("the event could not be built: %s", edata->message));
		}
		PG_END_TRY();
	}
	for (int i = 0; i < r->q.nresends; i++)
		wk_build_resend(r, &r->q.resends[i], tails);
}

/* The backoff before attempt n+1: doubling from backoff_min, capped, with jitter. */
static long
wk_backoff_ms(int attempts)
{
	double		ms = te_backoff_min_ms;

	for (int i = 1; i < attempts && ms < te_backoff_max_ms; i++)
		ms *= 2;
	if (ms > te_backoff_max_ms)
		ms = te_backoff_max_ms;
	return (long) (ms * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

/* An event is settled (published or dead-lettered): mark it, free its chain's next. */
static void
wk_settled(WkRound *r, WkEvent *e)
{
	e->change->done |= 1 << e->ev.slot;
	e->change->attempts = 0;
	e->change->dirty = true;
	if (e->next != NULL)
		wk_push(r, e->next);
}

/* A dead letter of an event that was sent. */
static void
wk_dead_sent(WkRound *r, WkEvent *e)
{
	wk_dead(r, e, e->attempt, e->req.status, e->req.error);
	wk_settled(r, e);
}

/* Handle one finished request. */
static void
wk_finished(WkRound *r, WkEvent *e)
{
	if (e->req.status > 0)
		r->answered++;
	else if (e->req.outcome != TE_OUTCOME_OK)
		r->unanswered++;
	if (e->resend != NULL)
	{
		QuResend   *d = e->resend;

		if (e->next != NULL)	/* the task's next re-sent dead letter */
			wk_push(r, e->next);
		d->published = e->req.outcome == TE_OUTCOME_OK;
		d->status = e->req.status;
		d->error = wk_error_text(e->req.error);
		if (d->published)
			r->published++;
		else
			wk_log_outcome(WARNING, "dead_letter", e, e->attempt, d->status, e->req.error);
		return;
	}
	e->attempt = e->change->attempts + 1;
	switch (e->req.outcome)
	{
		case TE_OUTCOME_OK:
			r->published++;
			wk_log_outcome(DEBUG2, "published", e, e->attempt, e->req.status, "");
			wk_settled(r, e);
			break;
		case TE_OUTCOME_PERMANENT:
			wk_dead_sent(r, e);
			break;
		case TE_OUTCOME_RETRY:
			r->failed = lappend(r->failed, e);
			break;
	}
}

/* With taskevents.dapr_enabled = off: log the event and count it done. */
static void
wk_skip(WkEvent *e)
{
	e->req.outcome = TE_OUTCOME_OK;
	ereport(DEBUG1,
			(errmsg("taskevents: dapr_enabled=off event_type=%s topic=%s task_id=%s event=%s",
					e->type, e->topic, e->task_id, e->body)));
}

/* Send one event on its own (or settle it at once: dapr_enabled off). */
static void
wk_start_one(WkRound *r, WkEvent *e)
{
	if (!te_dapr_enabled)
		wk_skip(e);
	else
	{
		r->requests++;
		te_dapr_start(&e->req);
		if (e->req.handle != NULL)
			return;
	}
	wk_finished(r, e);
}

/* A bulk request is back: each entry's outcome, then as for single events. */
static void
wk_bulk_finished(WkRound *r, WkBulk *b)
{
	for (int i = 0; i < b->n; i++)
	{
		WkEvent    *e = b->events[i];

		e->req.status = b->req.status;
		e->req.outcome = b->req.outcome;
		strlcpy(e->req.error, b->req.error, sizeof(e->req.error));
		if (b->req.partial)
		{
			StringInfoData id;

			initStringInfo(&id);
			te_append_uuid(&id, &e->id);
			e->req.outcome = te_dapr_entry_outcome(&b->req, id.data, e->req.error);
			if (e->req.outcome == TE_OUTCOME_OK)
				e->req.error[0] = '\0';
		}
		wk_finished(r, e);
	}
	te_dapr_release(&b->req);
}

/*
 * Send the head of a topic's queue with Dapr's bulk publish: up to
 * WK_BULK_MAX entries within taskevents.max_body_size, each with the task id
 * as its partitionKey.  The queue holds at most one event per task, so a
 * task's events never share a request and per-task order holds.
 *
 * The events ready are shared out over the requests that may still start,
 * so that as many are in flight as taskevents.concurrency allows: the first
 * events of 4,000 tasks go as 16 requests of 250, not as 8 of 500 with the
 * other 8 waiting for those tasks' next events.  Below WK_BULK_MIN entries
 * more requests cost daprd more than they gain.
 */
static void
wk_start_bulk(WkRound *r, WkQueue *q)
{
	WkBulk	   *b = palloc0(sizeof(WkBulk));
	StringInfoData body;
	size_t		limit = (size_t) te_max_body_kb * 1024;
	size_t		size = 2;
	int			slots = Max(te_concurrency - te_dapr_in_flight(), 1);
	int			max = Min(Max((r->nready + slots - 1) / slots, WK_BULK_MIN), WK_BULK_MAX);

	/* the body's size at once: growing it by doubling copies it over and over */
	for (int i = q->head; i < q->tail && i - q->head < max && size < limit; i++)
		size += q->items[i]->req.body_len + strlen(q->items[i]->req.partition_key) + 160;
	b->events = palloc(sizeof(WkEvent *) * max);
	initStringInfo(&body);
	enlargeStringInfo(&body, Min(size, limit));
	appendStringInfoChar(&body, '[');
	while (q->head < q->tail && b->n < max)
	{
		WkEvent    *e = q->items[q->head];

		if (b->n > 0 && body.len + e->req.body_len + strlen(e->req.partition_key) + 160 > limit)
			break;
		q->head++;
		r->nready--;
		if (b->n > 0)
			appendStringInfoChar(&body, ',');
		appendStringInfoString(&body, "{\"entryId\":\"");
		te_append_uuid(&body, &e->id);
		appendStringInfoString(&body, "\",\"event\":");
		appendBinaryStringInfo(&body, e->req.body, e->req.body_len);
		appendStringInfoString(&body, ",\"contentType\":\"application/cloudevents+json\",\"metadata\":{\"partitionKey\":");
		te_append_json_string(&body, e->req.partition_key);
		appendStringInfoString(&body, "}}");
		b->events[b->n++] = e;
	}
	appendStringInfoChar(&body, ']');

	b->req.body = body.data;
	b->req.body_len = body.len;
	b->req.topic = b->events[0]->topic;
	b->req.bulk = true;
	b->req.owner = b;
	r->requests++;
	te_dapr_start(&b->req);
	if (b->req.handle == NULL)
		wk_bulk_finished(r, b);
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
		(void) te_dapr_wait(done, 1, 100);
		wk_check_alive();
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
		wk_set_error(req.error);
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
 * Requests of the round got no answer and none has been answered: the
 * sidecar may be away or frozen.  Start nothing more: a frozen daprd keeps
 * what is sent into it and publishes it when thawed, as copies of what the
 * worker sends again; the round ends with the requests in flight.
 */
#define WK_STALLED(r) ((r)->answered == 0 && (r)->unanswered > 0)

/*
 * Requests in flight and none back for a while: daprd is slow (its Kafka
 * producer retrying, say).  Waiting is right, as what it publishes late
 * would be published twice if sent again; say so once a round.
 */
static void
wk_note_slow(WkRound *r)
{
	char		msg[TE_DAPR_ERROR_LEN];

	if (r->slow_logged || te_dapr_in_flight() == 0 ||
		!TimestampDifferenceExceeds(r->last_answer, GetCurrentTimestamp(), WK_SLOW_MS))
		return;
	r->slow_logged = true;
	snprintf(msg, sizeof(msg),
			 "the Dapr sidecar at %s has not answered %d requests for %d s; waiting for its answers up to taskevents.timeout",
			 te_dapr_endpoint(), te_dapr_in_flight(), WK_SLOW_MS / 1000);
	wk_set_error(msg);
	ereport(LOG, (errmsg("taskevents: %s", msg),
				  errdetail("A request given up may still be published; its events would then be published twice.")));
}

/* A stage of the round has ended: note how long it took. */
static void
wk_stage(WkRound *r, WkStage stage)
{
	TimestampTz now = GetCurrentTimestamp();

	r->stage_us[stage] = now - r->stage_end;
	r->stage_end = now;
}

/* Where a round's time went (DEBUG1): what taskevents.status cannot say. */
static void
wk_log_round(WkRound *r)
{
	double		send_us = Max(r->stage_us[WK_SEND], 1);

	ereport(DEBUG1,
			(errmsg_internal("taskevents: round of %d changes, %d requests: claim %.1f ms, build %.1f ms, durable %.1f ms, send %.1f ms (%.1f requests in flight on average), record %.1f ms",
							 r->q.nchanges + r->q.nresends, r->requests,
							 r->stage_us[WK_CLAIM] / 1000.0, r->stage_us[WK_BUILD] / 1000.0,
							 r->stage_us[WK_DURABLE] / 1000.0, send_us / 1000.0,
							 r->in_flight_us / send_us, r->stage_us[WK_RECORD] / 1000.0)));
}

/* Run the requests of a round to completion, checking for interrupts. */
static void
wk_pump(WkRound *r)
{
	TeRequest  *done[64];
	bool		bulk = wk_use_bulk();

	r->last_answer = GetCurrentTimestamp();
	while ((r->nready > 0 && !WK_STALLED(r)) || te_dapr_in_flight() > 0)
	{
		int			n;
		int			in_flight;
		TimestampTz waited;
		TimestampTz now;

		while (r->nready > 0 && te_dapr_in_flight() < te_concurrency && !WK_STALLED(r))
		{
			int			qi = r->next_queue;
			WkQueue    *q;

			while (r->ready[qi].head == r->ready[qi].tail)
				qi = (qi + 1) % WK_NQUEUES;
			r->next_queue = (qi + 1) % WK_NQUEUES;
			q = &r->ready[qi];
			if (bulk && qi != WK_RESENT_QUEUE)
				wk_start_bulk(r, q);
			else
			{
				r->nready--;
				wk_start_one(r, q->items[q->head++]);
			}
		}
		in_flight = te_dapr_in_flight();
		waited = GetCurrentTimestamp();
		n = te_dapr_wait(done, lengthof(done), 100);
		now = GetCurrentTimestamp();
		r->in_flight_us += (double) in_flight * (now - waited);
		if (n > 0)
			r->last_answer = now;
		else
			wk_note_slow(r);
		for (int i = 0; i < n; i++)
		{
			if (done[i]->bulk)
				wk_bulk_finished(r, (WkBulk *) done[i]->owner);
			else
				wk_finished(r, (WkEvent *) done[i]->owner);
		}
		wk_check_alive();
	}
}

/* Failures of the round that may heal: back off, or dead-letter when too old or tried too often. */
static void
wk_apply_failures(WkRound *r)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, r->failed)
	{
		WkEvent    *e = lfirst(lc);
		QuChange   *ch = e->change;

		ch->attempts = e->attempt;
		ch->dirty = true;
		ch->failed = true;
		ch->last_status = e->req.status;
		ch->last_error = wk_error_text(e->req.error);
		if ((te_max_attempts > 0 && e->attempt >= te_max_attempts) ||
			(te_max_age_s > 0 && now - ch->c.changed_at > (int64) te_max_age_s * USECS_PER_SEC))
		{
			/* dead: the change's next event is due at once */
			wk_dead_sent(r, e);
			ch->next_attempt_at = now;
			continue;
		}
		ch->next_attempt_at = TimestampTzPlusMilliseconds(now, wk_backoff_ms(e->attempt));
		r->retried++;
		wk_log_outcome(LOG, "retry", e, e->attempt, e->req.status, e->req.error);
	}
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
	wk_set_state(TE_WORKER_PAUSED, false);
	wk_set_error(error);
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

/*
 * Flush WAL up to the end of the last record inserted, which covers the
 * commit of every change the claim saw; returns that position.  When that
 * record ended at a page boundary, the insert position points past the next
 * page's header, a page nobody wrote yet: step back to the boundary.
 */
static XLogRecPtr
wk_flush_wal(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	XLogFlush(lsn);
	return lsn;
}

/*
 * The first slot of taskevents.standby_slots whose standby has not flushed
 * WAL up to lsn (its restart_lsn, which a physical slot advances as the
 * standby reports its flush position), or NULL when all have.  A slot that
 * does not exist has flushed nothing.
 */
static char *
wk_standby_behind(XLogRecPtr lsn, XLogRecPtr *flushed)
{
	char	   *names = pstrdup(te_standby_slots);
	List	   *list;
	ListCell   *lc;

	if (!SplitIdentifierString(names, ',', &list))
		return NULL;			/* the check hook let nothing else in */
	foreach(lc, list)
	{
		char	   *name = lfirst(lc);

		*flushed = InvalidXLogRecPtr;
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		for (int i = 0; i < max_replication_slots; i++)
		{
			ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

			if (s->in_use && strcmp(NameStr(s->data.name), name) == 0)
			{
				SpinLockAcquire(&s->mutex);
				if (!OidIsValid(s->data.database))
					*flushed = s->data.restart_lsn;
				SpinLockRelease(&s->mutex);
			}
		}
		LWLockRelease(ReplicationSlotControlLock);
		if (*flushed < lsn)
			return name;
	}
	return NULL;
}

/*
 * With taskevents.standby_slots: wait until each of those standbys has
 * flushed WAL up to lsn, so that a standby a failover promotes has every
 * change whose events consumers saw.  False when delivery was turned off
 * meanwhile: the round is left for later.
 */
static bool
wk_wait_standbys(XLogRecPtr lsn)
{
	TimestampTz since = GetCurrentTimestamp();
	bool		logged = false;
	char	   *slot;
	XLogRecPtr	flushed;

	while ((slot = wk_standby_behind(lsn, &flushed)) != NULL)
	{
		wk_set_state_keep(TE_WORKER_STANDBY_WAIT);
		if (!logged && TimestampDifferenceExceeds(since, GetCurrentTimestamp(), 10000))
		{
			logged = true;
			ereport(LOG,
					(errmsg("taskevents: delivery waits for the standby of replication slot \"%s\": it has flushed WAL up to %X/%X, the events need %X/%X",
							slot, LSN_FORMAT_ARGS(flushed), LSN_FORMAT_ARGS(lsn)),
					 errhint("A slot that does not exist or whose standby is down holds delivery back; remove it from taskevents.standby_slots to go on.")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		wk_reload();
		if (!te_enabled)
			return false;
	}
	if (logged)
		ereport(LOG, (errmsg("taskevents: the standbys of taskevents.standby_slots caught up; delivery goes on")));
	wk_set_state_keep(TE_WORKER_DELIVERING);
	return true;
}

/* Count the round's outcomes in the slot; note its last error. */
static void
wk_count(WkRound *r)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	wk_slot->published += r->published;
	wk_slot->retried += r->retried;
	wk_slot->dead += r->ndead;
	if (r->answered > 0)
		wk_slot->sidecar_reachable = true;
	LWLockRelease(te_shared->lock);
	if (r->failed != NIL)
		wk_set_error(((WkEvent *) llast(r->failed))->req.error);
	else if (r->q.dead != NIL)
		wk_set_error(((QuDead *) llast(r->q.dead))->error);
}

/* The queue's objects were altered: deliver nothing until they are put right. */
static void
wk_halt(const char *why)
{
	if (wk_slot->state != TE_WORKER_HALTED)
		ereport(WARNING,
				(errmsg("taskevents: delivery in database \"%s\" halted: %s", wk_dbname, why)));
	wk_set_state_keep(TE_WORKER_HALTED);
	wk_set_error(why);
}

/*
 * One round: claim, build, send, record.  Returns how long to sleep: 0 when
 * more is waiting.
 */
static long
wk_round(void)
{
	WkRound    *r = palloc0(sizeof(WkRound));

	r->stage_end = GetCurrentTimestamp();
	if (!qu_claim(&r->q, te_batch_size, WK_ROUND_BYTES))
		wk_exit_absent();
	if (r->q.halted != NULL)
	{
		wk_halt(r->q.halted);
		return r->q.sleep_ms;
	}
	if (wk_slot->state == TE_WORKER_HALTED)
	{
		ereport(LOG, (errmsg("taskevents: the queue's objects are as delivery needs them again; delivery goes on")));
		wk_set_state(TE_WORKER_DELIVERING, wk_slot->sidecar_reachable);
	}
	wk_sent = r->q.nchanges > 0 || r->q.nresends > 0;
	if (!wk_sent)
	{
		wk_outage_over();
		if (!qu_record(&r->q))	/* the cursor may have closed holes */
			wk_exit_absent();
		return r->q.sleep_ms;
	}
	wk_stage(r, WK_CLAIM);
	wk_build(r);
	wk_stage(r, WK_BUILD);

	/* Nothing is sent before its commit is durable (and on the standbys named). */
	if (!wk_wait_standbys(wk_flush_wal()))
		return 0;
	wk_stage(r, WK_DURABLE);
	wk_pump(r);
	wk_stage(r, WK_SEND);

	/*
	 * No answer at all: if the sidecar is not ready either, it is away,
	 * which is no event's fault.  Nothing is recorded: no attempt charged.
	 */
	if (r->failed != NIL && r->answered == 0 && !wk_probe())
	{
		wk_pause(((WkEvent *) linitial(r->failed))->req.error);
		return 1000;
	}
	wk_outage_over();
	wk_apply_failures(r);
	if (!qu_record(&r->q))
		wk_exit_absent();
	wk_count(r);
	wk_stage(r, WK_RECORD);
	wk_log_round(r);
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
	wk_set_state(TE_WORKER_DELIVERING, true);
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
		wk_set_state_keep(TE_WORKER_DISABLED);
		return te_poll_interval_ms;
	}
	if (wk_paused)
		return wk_paused_step();
	if (wk_slot->state != TE_WORKER_HALTED)
		wk_set_state_keep(TE_WORKER_DELIVERING);
	sleep_ms = wk_round();
	if (wk_slot->state == TE_WORKER_DELIVERING && (backfill_ms = te_backfill_step()) >= 0)
		sleep_ms = Min(sleep_ms, backfill_ms);
	return sleep_ms;
}

/* After an ERROR inside a step: report it, clean up, carry on. */
static void
wk_recover(void)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(wk_cxt);	/* reset before the next step */
	edata = CopyErrorData();
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	te_dapr_abort_all();
	MemoryContextSwitchTo(wk_cxt);
	wk_set_error(edata->message);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Entry point of a database's delivery worker. */
void
taskevents_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	wk_pin_environment();
	pgstat_report_appname("taskevents worker");

	wk_attach(dboid);
	/* a round's memory is reset, not freed: its first 4 MB stay, warm */
	wk_cxt = AllocSetContextCreate(TopMemoryContext, "taskevents round",
								   WK_ROUND_KEEP, WK_ROUND_KEEP, ALLOCSET_DEFAULT_MAXSIZE);
	wk_init_database();
	te_dapr_configure();

	for (;;)
	{
		volatile long sleep_ms = 1000;

		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(wk_cxt);
		ResetLatch(MyLatch);
		wk_check_alive();
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
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
	}
}
