/*-------------------------------------------------------------------------
 * worker.c
 *		The delivery worker of one database: outbox -> CloudEvents -> Dapr.
 *
 * Each round:
 *	1. claim, in a short transaction: the oldest changes whose task has no
 *	   event waiting for a retry, plus dead letters an operator re-queued;
 *	2. flush WAL, so every claimed commit is durable before anything is sent
 *	   (with synchronous_commit = off a crash could otherwise un-commit a
 *	   published change);
 *	3. send, with no transaction open: each task's events form a chain sent
 *	   one after another (per-task order); up to taskevents.concurrency
 *	   chains are in flight at once;
 *	4. record outcomes in another short transaction: delivered changes leave
 *	   the outbox, failures get a backoff in taskevents.retry, events that
 *	   cannot be delivered go to taskevents.dead_letter.
 *
 * When every request of a round fails without an answer (refused, reset,
 * timed out), the sidecar is away: the round's failures are forgotten (no
 * attempt is charged), the worker pauses, probes readiness every second and
 * resumes as soon as the probe succeeds.
 *
 * No ERROR escapes the loop: a round runs inside PG_TRY, and the catch
 * reports, aborts the transaction, drops transfers and resets the memory.
 * Events sent but not yet recorded when the worker stops are sent again
 * later, with the same ids.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "cloudevent.h"
#include "compat.h"
#include "dapr.h"
#include "outbox.h"
#include "settings.h"
#include "shared.h"

PGDLLEXPORT void taskevents_worker_main(Datum arg);

/* A claimed change and its delivery state. */
typedef struct WkRow
{
	TeChange	c;
	int			slots;			/* slots of the change's events */
	int			done;			/* slots delivered or dead-lettered */
	int			attempts;		/* failed attempts of its next event */
	bool		in_retry;		/* has a row in taskevents.retry */
	bool		dirty;			/* state changed: record it */
	TimestampTz next_attempt_at;
	long		last_status;
	char	   *last_error;
} WkRow;

/* One event to send: of a claimed change, or a re-queued dead letter. */
typedef struct WkEvent
{
	WkRow	   *row;			/* NULL for a re-queued dead letter */
	TeEvent		ev;
	pg_uuid_t	id;
	const char *type;
	const char *topic;
	const char *task_id;
	char	   *body;			/* server encoding: what dead letters keep */
	TeRequest	req;			/* body in UTF-8 */
	int			attempts;		/* attempts made, for its dead letter */
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

/* Most entries in one bulk publish request. */
#define WK_BULK_MAX 500

/* Everything one round works on, allocated in wk_cxt. */
typedef struct WkRound
{
	WkRow	   *rows;
	int			nrows;
	WkQueue		ready[WK_NQUEUES];
	int			nready;
	int			next_queue;		/* round robin over the queues */
	List	   *failed;			/* events that failed and may be retried */
	List	   *dead;			/* events to dead-letter */
	List	   *resent;			/* re-queued dead letters, whatever their outcome */
	int			sent;
	int			answered;		/* got an HTTP answer */
	int			unanswered;		/* refused, reset or timed out */
	uint64		published;
	uint64		retried;
	uint64		ndead;
} WkRound;

static MemoryContext wk_cxt;
static TeDbSlot *wk_slot;
static bool wk_paused = false;	/* waiting for the readiness probe */
static bool wk_outage = false;	/* from the first pause to the first answer */
static TimestampTz wk_outage_since;
static TimestampTz wk_outage_logged;
static TimestampTz wk_last_probe;
static TimestampTz wk_last_purge;

/* Outcome log lines: at most WK_LOG_BURST per window, then one summary. */
#define WK_LOG_WINDOW_MS	10000
#define WK_LOG_BURST		20
#define WK_OUTAGE_SUMMARY_MS 60000
static TimestampTz wk_log_window;
static int	wk_log_lines;
static int	wk_log_suppressed;

/* The saved plans. */
enum
{
	PLAN_CLAIM,
	PLAN_NEXT_WAKE,
	PLAN_CLAIM_DEAD,
	PLAN_DELETE,
	PLAN_ARCHIVE,
	PLAN_FORGET,
	PLAN_RETRY,
	PLAN_DEAD,
	PLAN_RESENT_OK,
	PLAN_RESENT_FAILED,
	PLAN_PURGE,
	PLAN_UNBLOCK,
	NUM_PLANS
};

static const struct
{
	const char *sql;
	int			nargs;
	Oid			argtypes[10];
}			wk_sql[NUM_PLANS] =
{
	[PLAN_CLAIM] = {
		"SELECT o.*, coalesce(r.done, 0), coalesce(r.attempts, 0)"
		"  FROM taskevents.outbox o"
		"  LEFT JOIN taskevents.retry r ON r.seq = o.seq"
		" WHERE NOT EXISTS (SELECT FROM taskevents.retry b"
		"                    WHERE b.task_id = o.task_id AND b.seq <= o.seq"
		"                      AND b.next_attempt_at > now())"
		" ORDER BY o.seq LIMIT $1",
		1, {INT4OID}
	},
	[PLAN_NEXT_WAKE] = {
		"SELECT ceil(extract(epoch FROM min(next_attempt_at) - now()) * 1000)::int8"
		"  FROM taskevents.retry WHERE next_attempt_at > now()",
		0, {0}
	},
	[PLAN_CLAIM_DEAD] = {
		"SELECT event_id, type, topic, task_id, body, attempts"
		"  FROM taskevents.dead_letter WHERE requeued_at IS NOT NULL"
		" ORDER BY requeued_at, seq, CASE WHEN type IN ('task.completed', 'task.uncompleted') THEN 1"
		"   WHEN type = 'sync.task' THEN 2 WHEN type LIKE 'reminder.%' THEN 3 ELSE 0 END"
		" LIMIT $1",
		1, {INT4OID}
	},
	[PLAN_DELETE] = {
		"DELETE FROM taskevents.outbox WHERE seq = ANY($1)",
		1, {INT8ARRAYOID}
	},
	[PLAN_ARCHIVE] = {
		"WITH gone AS (DELETE FROM taskevents.outbox WHERE seq = ANY($1) RETURNING *)"
		" INSERT INTO taskevents.delivered SELECT gone.*, now() FROM gone",
		1, {INT8ARRAYOID}
	},
	[PLAN_FORGET] = {
		"DELETE FROM taskevents.retry WHERE seq = ANY($1)",
		1, {INT8ARRAYOID}
	},
	[PLAN_RETRY] = {
		"INSERT INTO taskevents.retry AS r"
		"       (seq, task_id, done, attempts, next_attempt_at, last_status, last_error)"
		" SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7)"
		" ON CONFLICT (seq) DO UPDATE SET done = excluded.done, attempts = excluded.attempts,"
		"   next_attempt_at = excluded.next_attempt_at, last_status = excluded.last_status,"
		"   last_error = excluded.last_error",
		7, {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID}
	},
	[PLAN_DEAD] = {
		"INSERT INTO taskevents.dead_letter"
		"       (event_id, seq, type, topic, task_id, body, attempts, last_status, last_error, created_at)"
		" SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
		" ON CONFLICT (event_id) DO UPDATE SET attempts = excluded.attempts,"
		"   last_status = excluded.last_status, last_error = excluded.last_error,"
		"   failed_at = now(), requeued_at = NULL",
		10, {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID}
	},
	[PLAN_RESENT_OK] = {
		"DELETE FROM taskevents.dead_letter WHERE event_id = ANY($1)",
		1, {UUIDARRAYOID}
	},
	[PLAN_RESENT_FAILED] = {
		"UPDATE taskevents.dead_letter d SET requeued_at = NULL, failed_at = now(),"
		"       attempts = d.attempts + 1, last_status = u.status, last_error = u.error"
		"  FROM unnest($1, $2, $3) AS u(id, status, error) WHERE d.event_id = u.id",
		3, {UUIDARRAYOID, INT4ARRAYOID, TEXTARRAYOID}
	},
	[PLAN_PURGE] = {
		"DELETE FROM taskevents.delivered WHERE delivered_at < now() - make_interval(secs => $1)",
		1, {FLOAT8OID}
	},
	[PLAN_UNBLOCK] = {
		"UPDATE taskevents.retry SET next_attempt_at = now()"
		" WHERE last_status = 0 AND next_attempt_at > now()",
		0, {0}
	},
};

static SPIPlanPtr wk_plans[NUM_PLANS];

/* Run a saved plan (prepared on first use); returns SPI_processed. */
static uint64
wk_exec(int plan, Datum *args, int expect)
{
	int			rc;

	if (wk_plans[plan] == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(wk_sql[plan].sql, wk_sql[plan].nargs,
									(Oid *) wk_sql[plan].argtypes);

		if (p == NULL)
			elog(ERROR, "taskevents: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		wk_plans[plan] = p;
	}
	rc = SPI_execute_plan(wk_plans[plan], args, NULL, false, 0);
	if (rc != expect)
		elog(ERROR, "taskevents: SPI_execute_plan returned %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* Start a transaction with SPI and a snapshot. */
static void
wk_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "taskevents: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
wk_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Publish the worker's state in its slot.  Only a delivering worker wants
 * to be woken at each commit: disabled or paused, it would wake for nothing.
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
wk_set_error(const char *error)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	strlcpy(wk_slot->last_error, error, TE_LAST_ERROR_LEN);
	wk_slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(te_shared->lock);
}

/* Leave the slot when the worker exits; the launcher restarts it after a second. */
static void
wk_detach(int code, Datum arg)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	if (wk_slot->pid == MyProcPid)
	{
		TimestampTz again = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);

		wk_slot->pid = 0;
		wk_slot->pgprocno = -1;
		wk_slot->state = TE_WORKER_STOPPED;
		if (wk_slot->hold_until < again)
			wk_slot->hold_until = again;
	}
	LWLockRelease(te_shared->lock);
	te_shared_wake_launcher(false);
}

/* Take this database's slot; exit if another worker has it. */
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

/* Exit (telling the launcher) unless the extension is installed here. */
static void
wk_require_extension(void)
{
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("taskevents", true));
	CommitTransactionCommand();
	if (!present)
		wk_exit_absent();
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
wk_log_outcome(int elevel, const char *outcome, WkEvent *e, int attempt)
{
	StringInfoData id;

	if (!message_level_is_interesting(elevel))
		return;
	if (elevel >= LOG && !wk_log_allowed())
		return;
	initStringInfo(&id);
	te_append_uuid(&id, &e->id);
	ereport(elevel,
			(errmsg("taskevents: outcome=%s event_type=%s topic=%s task_id=%s user_id=%s correlation_id=%s event_id=%s dapr_status=%ld attempt=%d error=\"%s\"",
					outcome, e->type, e->topic, e->task_id,
					e->row && e->row->c.user_id ? e->row->c.user_id : "",
					e->row ? e->row->c.trace_id : "",
					id.data, e->req.status, attempt, e->req.error)));
	pfree(id.data);
}

/* Text in the server encoding as UTF-8 (what is sent); sets *len. */
static const char *
wk_utf8(const char *s, size_t *len)
{
	int			enc = GetDatabaseEncoding();

	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return s;
	s = pg_server_to_any(s, *len, PG_UTF8);
	*len = strlen(s);
	return s;
}

/* Queue an event that is free to go. */
static void
wk_push(WkRound *r, WkEvent *e)
{
	WkQueue    *q = &r->ready[e->row ? (int) e->ev.topic : WK_RESENT_QUEUE];

	q->items[q->tail++] = e;
	r->nready++;
}

/* Fill in the request of an event: body in UTF-8, topic, partition key. */
static void
wk_prepare(WkEvent *e, size_t len)
{
	e->req.body = wk_utf8(e->body, &len);
	e->req.body_len = len;
	e->req.topic = e->topic;
	e->req.partition_key = e->task_id;
	e->req.owner = e;
}

/*
 * Claim: read the changes and re-queued dead letters of this round, build
 * their events and chain them per task.  Returns the number of changes;
 * *sleep_ms gets the time until the next retry is due.
 */
static int
wk_claim(WkRound *r, long *sleep_ms)
{
	Datum		arg = Int32GetDatum(te_batch_size);
	MemoryContext spicxt;
	HASHCTL		hctl;
	HTAB	   *tails;
	uint64		n;
	bool		isnull;

	wk_begin("taskevents: claiming");
	if (!OidIsValid(get_extension_oid("taskevents", true)))
	{
		wk_commit();
		wk_exit_absent();
	}

	if (TimestampDifferenceExceeds(wk_last_purge, GetCurrentTimestamp(), 60000))
	{
		Datum		secs = Float8GetDatum((double) te_retention_s);

		wk_exec(PLAN_PURGE, &secs, SPI_OK_DELETE);
		wk_last_purge = GetCurrentTimestamp();
	}

	n = wk_exec(PLAN_CLAIM, &arg, SPI_OK_SELECT);
	spicxt = MemoryContextSwitchTo(wk_cxt);
	r->nrows = n;
	r->rows = palloc0(sizeof(WkRow) * (n + 1));
	for (int q = 0; q < WK_NQUEUES; q++)
		r->ready[q].items = palloc(sizeof(WkEvent *) * (n * TE_MAX_EVENTS + te_batch_size + 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		WkRow	   *row = &r->rows[i];

		te_outbox_read(tup, desc, &row->c);
		row->done = DatumGetInt32(heap_getattr(tup, Natts_outbox + 1, desc, &isnull));
		row->attempts = DatumGetInt32(heap_getattr(tup, Natts_outbox + 2, desc, &isnull));
		row->in_retry = row->done != 0 || row->attempts != 0;
	}
	MemoryContextSwitchTo(spicxt);

	*sleep_ms = te_poll_interval_ms;
	if (wk_exec(PLAN_NEXT_WAKE, NULL, SPI_OK_SELECT) == 1)
	{
		Datum		d = heap_getattr(SPI_tuptable->vals[0], 1, SPI_tuptable->tupdesc, &isnull);

		if (!isnull && DatumGetInt64(d) < *sleep_ms)
			*sleep_ms = Max(DatumGetInt64(d), 1);
	}

	/*
	 * Re-queued dead letters: sent as they were stored, oldest change first
	 * and, per task, one at a time in that order (each chained behind the
	 * task's previous one), so a consumer sees a task's re-sent events in
	 * commit order.
	 */
	n = wk_exec(PLAN_CLAIM_DEAD, &arg, SPI_OK_SELECT);
	spicxt = MemoryContextSwitchTo(wk_cxt);
	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(uint64);
	hctl.entrysize = sizeof(WkTail);
	hctl.hcxt = wk_cxt;
	tails = hash_create("taskevents re-sent chains", Max(n, 16), &hctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		WkEvent    *e = palloc0(sizeof(WkEvent));
		uint64		key;
		bool		found;
		WkTail	   *ent;

		e->id = *DatumGetUUIDP(heap_getattr(tup, 1, desc, &isnull));
		e->type = TextDatumGetCString(heap_getattr(tup, 2, desc, &isnull));
		e->topic = TextDatumGetCString(heap_getattr(tup, 3, desc, &isnull));
		e->task_id = TextDatumGetCString(heap_getattr(tup, 4, desc, &isnull));
		e->body = TextDatumGetCString(heap_getattr(tup, 5, desc, &isnull));
		e->attempts = DatumGetInt32(heap_getattr(tup, 6, desc, &isnull));
		wk_prepare(e, strlen(e->body));
		r->resent = lappend(r->resent, e);
		key = hash_bytes_extended((const unsigned char *) e->task_id, strlen(e->task_id), 0);
		ent = hash_search(tails, &key, HASH_ENTER, &found);
		if (found)
			ent->tail->next = e;
		else
			wk_push(r, e);
		ent->tail = e;
	}
	MemoryContextSwitchTo(spicxt);
	wk_commit();

	/* Build the events and chain them per task, in order. */
	MemoryContextSwitchTo(wk_cxt);
	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(uint64);
	hctl.entrysize = sizeof(WkTail);
	hctl.hcxt = wk_cxt;
	tails = hash_create("taskevents chains", Max(r->nrows, 16), &hctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < r->nrows; i++)
	{
		WkRow	   *row = &r->rows[i];
		TeEvent		evs[TE_MAX_EVENTS];
		int			nev = te_change_events(&row->c, evs);
		uint64		key = hash_bytes_extended((const unsigned char *) row->c.task_id,
											  strlen(row->c.task_id), 0);

		for (int k = 0; k < nev; k++)
		{
			WkEvent    *e;
			StringInfoData body;
			bool		found;
			WkTail	   *ent;

			row->slots |= 1 << evs[k].slot;
			if (row->done & (1 << evs[k].slot))
				continue;
			e = palloc0(sizeof(WkEvent));
			e->row = row;
			e->ev = evs[k];
			te_event_id(&row->c, evs[k].slot, &e->id);
			e->type = evs[k].type;
			e->topic = te_topic_name(evs[k].topic);
			e->task_id = row->c.task_id;
			initStringInfo(&body);
			te_append_cloudevent(&body, &row->c, &evs[k]);
			e->body = body.data;
			wk_prepare(e, body.len);

			ent = hash_search(tails, &key, HASH_ENTER, &found);
			if (found)
				ent->tail->next = e;
			else
				wk_push(r, e);
			ent->tail = e;
		}
	}
	return r->nrows;
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
	if (e->row == NULL)
		return;
	e->row->done |= 1 << e->ev.slot;
	e->row->attempts = 0;
	e->row->dirty = true;
	if (e->next != NULL)
		wk_push(r, e->next);
}

/* Handle one finished request. */
static void
wk_finished(WkRound *r, WkEvent *e)
{
	if (!e->req.transport)
		r->answered++;
	else
		r->unanswered++;
	if (e->row == NULL)
	{
		if (e->req.outcome == TE_OUTCOME_OK)
			r->published++;
		/* the task's next re-queued dead letter goes once this one is back */
		if (e->next != NULL)
			wk_push(r, e->next);
		return;					/* recorded with r->resent */
	}
	switch (e->req.outcome)
	{
		case TE_OUTCOME_OK:
			r->published++;
			wk_log_outcome(DEBUG1, "published", e, e->row->attempts + 1);
			wk_settled(r, e);
			break;
		case TE_OUTCOME_PERMANENT:
			e->attempts = e->row->attempts + 1;
			r->dead = lappend(r->dead, e);
			wk_settled(r, e);
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
	e->req.transport = false;
	ereport(DEBUG1,
			(errmsg("taskevents: dapr_enabled=off event_type=%s topic=%s task_id=%s event=%s",
					e->type, e->topic, e->task_id, e->body)));
}

/* Send one event on its own (or settle it at once: dapr_enabled off, too big). */
static void
wk_start_one(WkRound *r, WkEvent *e)
{
	r->sent++;
	if (!te_dapr_enabled)
		wk_skip(e);
	else if (e->req.body_len > (size_t) te_max_body_kb * 1024)
	{
		e->req.outcome = TE_OUTCOME_PERMANENT;
		snprintf(e->req.error, sizeof(e->req.error),
				 "event of %zu bytes is over taskevents.max_body_size (%d kB)",
				 e->req.body_len, te_max_body_kb);
	}
	else
	{
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

		e->req.transport = b->req.transport;
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
 */
static void
wk_start_bulk(WkRound *r, WkQueue *q)
{
	WkBulk	   *b = palloc0(sizeof(WkBulk));
	StringInfoData body;
	size_t		limit = (size_t) te_max_body_kb * 1024;
	size_t		len;

	b->events = palloc(sizeof(WkEvent *) * WK_BULK_MAX);
	initStringInfo(&body);
	appendStringInfoChar(&body, '[');
	while (q->head < q->tail && b->n < WK_BULK_MAX)
	{
		WkEvent    *e = q->items[q->head];

		if (e->req.body_len > limit)
		{
			q->head++;
			r->nready--;
			wk_start_one(r, e);		/* a dead letter without sending */
			continue;
		}
		if (b->n > 0 && body.len + e->req.body_len + strlen(e->task_id) + 160 > limit)
			break;
		q->head++;
		r->nready--;
		r->sent++;
		if (b->n > 0)
			appendStringInfoChar(&body, ',');
		appendStringInfoString(&body, "{\"entryId\":\"");
		te_append_uuid(&body, &e->id);
		appendStringInfoString(&body, "\",\"event\":");
		appendStringInfoString(&body, e->body);
		appendStringInfoString(&body, ",\"contentType\":\"application/cloudevents+json\",\"metadata\":{\"partitionKey\":");
		escape_json(&body, e->task_id);
		appendStringInfoString(&body, "}}");
		b->events[b->n++] = e;
	}
	if (b->n == 0)
		return;
	appendStringInfoChar(&body, ']');

	len = body.len;
	b->req.body = wk_utf8(body.data, &len);
	b->req.body_len = len;
	b->req.topic = b->events[0]->topic;
	b->req.bulk = true;
	b->req.owner = b;
	te_dapr_start(&b->req);
	if (b->req.handle == NULL)
		wk_bulk_finished(r, b);
}

/*
 * A request of the round got no answer and none has been answered: the
 * sidecar may be away or frozen.  Start nothing more; if the requests in
 * flight get no answer either, the round ends unsent and the worker pauses
 * (a frozen daprd would keep every request sent into it and publish it
 * when thawed, as a copy of what the worker sends again).
 */
#define WK_STALLED(r) ((r)->answered == 0 && (r)->unanswered > 0)

/* Run the requests of a round to completion, checking for interrupts. */
static void
wk_pump(WkRound *r)
{
	TeRequest  *done[64];

	while ((r->nready > 0 && !WK_STALLED(r)) || te_dapr_in_flight() > 0)
	{
		int			n;

		while (r->nready > 0 && te_dapr_in_flight() < te_concurrency && !WK_STALLED(r))
		{
			int			qi = r->next_queue;
			WkQueue    *q;

			while (r->ready[qi].head == r->ready[qi].tail)
				qi = (qi + 1) % WK_NQUEUES;
			r->next_queue = (qi + 1) % WK_NQUEUES;
			q = &r->ready[qi];
			if (te_bulk && te_dapr_enabled && qi != WK_RESENT_QUEUE)
				wk_start_bulk(r, q);
			else
			{
				r->nready--;
				wk_start_one(r, q->items[q->head++]);
			}
		}
		n = te_dapr_wait(done, lengthof(done), 100);
		for (int i = 0; i < n; i++)
		{
			if (done[i]->bulk)
				wk_bulk_finished(r, (WkBulk *) done[i]->owner);
			else
				wk_finished(r, (WkEvent *) done[i]->owner);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* Ask the sidecar whether it is ready (GET /v1.0/healthz/outbound). */
static bool
wk_probe(void)
{
	TeRequest	req = {0};
	TeRequest  *done[1];

	req.probe = true;
	te_dapr_start(&req);
	while (req.handle != NULL)
	{
		(void) te_dapr_wait(done, 1, 100);
		CHECK_FOR_INTERRUPTS();
	}
	wk_last_probe = GetCurrentTimestamp();
	if (req.outcome != TE_OUTCOME_OK)
		wk_set_error(req.error);
	return req.outcome == TE_OUTCOME_OK;
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
		WkRow	   *row = e->row;
		int			attempt = e->attempts = ++row->attempts;

		row->dirty = true;
		row->last_status = e->req.status;
		row->last_error = pstrdup(e->req.error);
		if ((te_max_attempts > 0 && attempt >= te_max_attempts) ||
			(te_max_age_s > 0 &&
			 TimestampDifferenceExceeds(row->c.changed_at, now, te_max_age_s * 1000L)))
		{
			r->dead = lappend(r->dead, e);
			wk_settled(r, e);
			row->next_attempt_at = now;
			continue;
		}
		row->next_attempt_at = TimestampTzPlusMilliseconds(now, wk_backoff_ms(attempt));
		r->retried++;
		wk_log_outcome(LOG, "retry", e, attempt);
	}
}

/* Build a one-dimensional array of the given element type. */
static Datum
wk_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, elemtype,
											  typlen, typbyval, typalign));
}

/* Record the round's outcomes in one transaction. */
static void
wk_record(WkRound *r)
{
	int			cap = r->nrows + list_length(r->dead) + list_length(r->resent) + 1;
	Datum	   *a[10];
	bool	   *an[10];
	Datum		args[10];
	int			n;
	int			m;
	ListCell   *lc;

	for (int i = 0; i < 10; i++)
	{
		a[i] = palloc(sizeof(Datum) * cap);
		an[i] = palloc0(sizeof(bool) * cap);
	}

	wk_begin("taskevents: recording");

	/* Delivered changes leave the outbox (kept in delivered with retention). */
	n = 0;
	m = 0;
	for (int i = 0; i < r->nrows; i++)
	{
		if (r->rows[i].done != r->rows[i].slots)
			continue;
		a[0][n++] = Int64GetDatum(r->rows[i].c.seq);
		if (r->rows[i].in_retry)
			a[1][m++] = Int64GetDatum(r->rows[i].c.seq);
	}
	if (n > 0)
	{
		args[0] = wk_array(a[0], an[0], n, INT8OID);
		if (te_retention_s > 0)
			wk_exec(PLAN_ARCHIVE, args, SPI_OK_INSERT);
		else
			wk_exec(PLAN_DELETE, args, SPI_OK_DELETE);
	}
	if (m > 0)
	{
		args[0] = wk_array(a[1], an[1], m, INT8OID);
		wk_exec(PLAN_FORGET, args, SPI_OK_DELETE);
	}

	/* Changes partly delivered or waiting for a retry. */
	n = 0;
	for (int i = 0; i < r->nrows; i++)
	{
		WkRow	   *row = &r->rows[i];

		if (!row->dirty || row->done == row->slots)
			continue;
		a[0][n] = Int64GetDatum(row->c.seq);
		a[1][n] = CStringGetTextDatum(row->c.task_id);
		a[2][n] = Int32GetDatum(row->done);
		a[3][n] = Int32GetDatum(row->attempts);
		a[4][n] = TimestampTzGetDatum(row->next_attempt_at ? row->next_attempt_at : GetCurrentTimestamp());
		a[5][n] = Int32GetDatum((int32) row->last_status);
		an[6][n] = row->last_error == NULL;
		a[6][n] = row->last_error ? CStringGetTextDatum(row->last_error) : (Datum) 0;
		n++;
	}
	if (n > 0)
	{
		static const Oid types[] = {INT8OID, TEXTOID, INT4OID, INT4OID, TIMESTAMPTZOID, INT4OID, TEXTOID};

		for (int k = 0; k < 7; k++)
			args[k] = wk_array(a[k], an[k], n, types[k]);
		wk_exec(PLAN_RETRY, args, SPI_OK_INSERT);
	}

	/* Dead letters, with the exact body and the last error. */
	n = 0;
	foreach(lc, r->dead)
	{
		WkEvent    *e = lfirst(lc);

		a[0][n] = UUIDPGetDatum(&e->id);
		a[1][n] = Int64GetDatum(e->row->c.seq);
		a[2][n] = CStringGetTextDatum(e->type);
		a[3][n] = CStringGetTextDatum(e->topic);
		a[4][n] = CStringGetTextDatum(e->task_id);
		a[5][n] = CStringGetTextDatum(e->body);
		a[6][n] = Int32GetDatum(e->attempts);
		a[7][n] = Int32GetDatum((int32) e->req.status);
		a[8][n] = CStringGetTextDatum(e->req.error);
		a[9][n] = TimestampTzGetDatum(e->row->c.changed_at);
		n++;
		r->ndead++;
		wk_log_outcome(WARNING, "dead_letter", e, e->attempts);
	}
	if (n > 0)
	{
		static const Oid types[] = {UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID};

		for (int k = 0; k < 10; k++)
			args[k] = wk_array(a[k], an[k], n, types[k]);
		wk_exec(PLAN_DEAD, args, SPI_OK_INSERT);
	}

	/* Re-queued dead letters: gone when published, dead again otherwise. */
	for (int pass = 0; pass < 2; pass++)
	{
		n = 0;
		foreach(lc, r->resent)
		{
			WkEvent    *e = lfirst(lc);

			if ((e->req.outcome == TE_OUTCOME_OK) != (pass == 0))
				continue;
			a[0][n] = UUIDPGetDatum(&e->id);
			a[1][n] = Int32GetDatum((int32) e->req.status);
			a[2][n] = CStringGetTextDatum(e->req.error);
			n++;
			if (pass == 1)
				wk_log_outcome(WARNING, "dead_letter", e, e->attempts + 1);
		}
		if (n == 0)
			continue;
		args[0] = wk_array(a[0], an[0], n, UUIDOID);
		if (pass == 0)
			wk_exec(PLAN_RESENT_OK, args, SPI_OK_DELETE);
		else
		{
			args[1] = wk_array(a[1], an[1], n, INT4OID);
			args[2] = wk_array(a[2], an[2], n, TEXTOID);
			wk_exec(PLAN_RESENT_FAILED, args, SPI_OK_UPDATE);
		}
	}
	wk_commit();
}

/*
 * The sidecar is away: pause.  Only the first pause of an outage is logged;
 * while it lasts (a sidecar may answer its probe and still refuse to
 * publish) a summary follows every minute.
 */
static void
wk_pause(const char *error)
{
	TimestampTz now = GetCurrentTimestamp();

	wk_paused = true;
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

/* While paused: probe readiness, and resume when the sidecar answers it. */
static bool
wk_try_resume(void)
{
	if (!wk_probe())
		return false;
	wk_paused = false;
	wk_set_state(TE_WORKER_DELIVERING, true);

	/* Events that failed only because the sidecar was away go first. */
	wk_begin("taskevents: resuming");
	wk_exec(PLAN_UNBLOCK, NULL, SPI_OK_UPDATE);
	wk_commit();
	return true;
}

/*
 * Flush WAL up to the end of the last record inserted, which covers the
 * commit of every change the claim saw.  When that record ended at a page
 * boundary, the insert position points past the next page's header, a page
 * nobody wrote yet: step back to the boundary.
 */
static void
wk_flush_wal(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	XLogFlush(lsn);
}

/*
 * One round: claim, send, record.  Returns true when the batch was full
 * (more is probably waiting); *sleep_ms says when a retry is next due.
 */
static bool
wk_round(long *sleep_ms)
{
	WkRound		r = {0};
	int			nrows;

	nrows = wk_claim(&r, sleep_ms);
	if (r.nready == 0 && nrows == 0)
	{
		wk_outage_over();
		return false;
	}

	/* Nothing is sent before its commit is durable. */
	wk_flush_wal();

	wk_pump(&r);

	/*
	 * Every request failed without an answer (refused, reset, timed out):
	 * the sidecar is away, which is no event's fault.  Nothing is recorded,
	 * so no attempt is charged.
	 */
	if (r.answered == 0 && r.failed != NIL && te_dapr_enabled)
	{
		wk_pause(((WkEvent *) linitial(r.failed))->req.error);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(wk_cxt);
		return false;
	}
	if (r.answered > 0)
		wk_outage_over();
	wk_apply_failures(&r);
	wk_record(&r);

	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	wk_slot->published += r.published;
	wk_slot->retried += r.retried;
	wk_slot->dead += r.ndead;
	if (r.answered > 0)
		wk_slot->sidecar_reachable = true;
	LWLockRelease(te_shared->lock);
	if (r.failed != NIL)
		wk_set_error(((WkEvent *) llast(r.failed))->req.error);
	else if (r.dead != NIL)
		wk_set_error(((WkEvent *) llast(r.dead))->req.error);

	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextReset(wk_cxt);
	return nrows >= te_batch_size;
}

/* After an ERROR inside a round: report it, clean up, carry on. */
static void
wk_recover(void)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	te_dapr_abort_all();
	MemoryContextReset(wk_cxt);
	wk_set_error(edata->message);
	FreeErrorData(edata);
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
	pgstat_report_appname("taskevents worker");

	wk_attach(dboid);
	wk_cxt = AllocSetContextCreate(TopMemoryContext, "taskevents round",
								   ALLOCSET_DEFAULT_SIZES);

	/*
	 * Plan each statement for the outbox as it is now: a plan cached while
	 * the outbox was small would scan all of it once it has grown.
	 */
	SetConfigOption("plan_cache_mode", "force_custom_plan", PGC_USERSET, PGC_S_OVERRIDE);
	wk_require_extension();
	te_dapr_configure();
	wk_set_state(TE_WORKER_DELIVERING, false);

	for (;;)
	{
		long		sleep_ms = te_poll_interval_ms;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			te_dapr_configure();
		}

		if (!te_enabled)
		{
			/* idle, but leave when the extension is dropped */
			wk_require_extension();
			if (wk_slot->state != TE_WORKER_DISABLED)
				wk_set_state(TE_WORKER_DISABLED, wk_slot->sidecar_reachable);
		}
		else if (wk_paused)
		{
			long		since = 0;
			int			usecs;

			TimestampDifference(wk_last_probe, GetCurrentTimestamp(), &since, &usecs);
			if (since >= 1 && wk_try_resume())
				continue;
			sleep_ms = 1000;
		}
		else
		{
			volatile bool more = false;

			if (wk_slot->state != TE_WORKER_DELIVERING)
				wk_set_state(TE_WORKER_DELIVERING, wk_slot->sidecar_reachable);
			PG_TRY();
			{
				more = wk_round(&sleep_ms);
			}
			PG_CATCH();
			{
				wk_recover();
				sleep_ms = 1000;
			}
			PG_END_TRY();
			if (more)
				continue;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
	}
}
