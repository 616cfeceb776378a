/*-------------------------------------------------------------------------
 * queue.c
 *		The delivery worker's SQL side: claiming a round's changes, and
 *		recording its outcomes, each in one short transaction.
 *
 * The queue tables are append-only (outbox.h), so the worker never deletes
 * a delivered change: it remembers how far it has read, as a cursor.  A
 * sequence number is handed out before its transaction commits, so the
 * changes become visible out of order: the cursor is the highest number read
 * (hi) and the holes below it, numbers not seen yet.  A hole is a change
 * still being written, or one rolled back; each claim reads the rows above
 * hi (up to the last number given out) and the rows in the holes.  A hole
 * closes as soon as no transaction in flight holds its number (inflight.c):
 * holes cost what is in flight, not what rolled back.  The arithmetic of
 * the cursor and of emptying the tables is in cursor.c, apart from SQL.
 *
 * Every record writes the cursor to taskevents.tick (insert only; the newest
 * row wins), in the same transaction as the round's outcomes: after a crash
 * the worker resumes exactly there (events in flight are sent again, with
 * their ids).
 *
 * Changes whose event failed go to taskevents.retry as a whole copy, with
 * their state; so do the later changes of a task waiting behind one (per-task
 * order).  Once every change of a queue table is read and its run of
 * numbers is over, and no snapshot older than the record that found so is
 * left (horizon.c), the table is emptied with TRUNCATE,
 * never waiting for its lock.  TRUNCATE is not MVCC-safe: an older
 * snapshot (say pg_dump's) would see the table empty and its changes still
 * unread.
 *
 * The worker also checks the objects it relies on and halts, saying why,
 * when a superuser has altered them (qu_check_objects()); rows that arrive
 * by another path than the capture (a restore, a setval backwards) are read
 * once and never collide with a writer's number.
 *
 * Every statement names its schemas, operators and functions: the worker
 * runs as a superuser in a database others own.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "cursor.h"
#include "horizon.h"
#include "inflight.h"
#include "outbox.h"
#include "queue.h"
#include "settings.h"
#include "spiutil.h"

/* The extension the worker delivers for: a new install is another worker's. */
static Oid	qu_extension = InvalidOid;

/* The cursor as last recorded (in TopMemoryContext). */
static QuCursor qu_cursor;

/* Prepared transactions of before the worker started, whose numbers are unknown. */
static TransactionId *qu_unknown_xids = NULL;
static int	qu_nunknown = 0;
static int64 qu_unknown_upto = 0;	/* the last number given out when they were found */

/* The run of numbers each queue table was last emptied after (-1: not this time). */
static int64 qu_emptied_run[TE_QUEUE_TABLES] = {-1, -1, -1};

/*
 * The run each queue table is ready to be emptied after, and the record
 * transaction that first found it read: once every snapshot sees that one,
 * none can see the table's changes as unread.
 */
typedef struct QuReady
{
	int64		run;			/* -1: none */
	TeHorizon	horizon;		/* the record that found the table read */
} QuReady;
static QuReady qu_ready[TE_QUEUE_TABLES] = {{-1}, {-1}, {-1}};
static TimestampTz qu_last_prune = 0;

/* Where what a claim reads is kept (SPI's contexts end with its transaction). */
static MemoryContext qu_round_cxt;
static MemoryContext qu_caller_cxt;	/* where qu_commit() returns to */

/* The saved plans. */
enum
{
	PLAN_LAST_SEQ,
	PLAN_CLAIM_RETRY,
	PLAN_CLAIM_HOLES,
	PLAN_CLAIM_ABOVE,
	PLAN_CLAIM_RESEND,
	PLAN_NEXT_DUE,
	PLAN_RETRY_DELETE,
	PLAN_RETRY_UPDATE,
	PLAN_RETRY_INSERT,
	PLAN_RETRY_HEADS,
	PLAN_DEAD,
	PLAN_RESENT_OK,
	PLAN_RESENT_FAILED,
	PLAN_TICK,
	PLAN_TICK_READ,
	PLAN_TICK_PRUNE,
	PLAN_NEWEST_0,
	PLAN_NEWEST_1,
	PLAN_NEWEST_2,
	PLAN_MAX_SEQ,
	PLAN_SETVAL,
	PLAN_PREPARED,
	PLAN_SUBSCRIBED,
	NUM_PLANS
};

#define QU_MAX_ARGS 10

/* The retry state of changes, as arrays $1..$6 (see qu_record_retry()). */
#define QU_RETRY_STATE \
	"ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)," \
	"           pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6))" \
	" AS u(seq, done, attempts, next_attempt_at, last_status, last_error)"
#define QU_RETRY_STATE_TYPES \
	{INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID}

static const struct
{
	const char *sql;
	int			nargs;
	Oid			argtypes[QU_MAX_ARGS];
}			qu_sql[NUM_PLANS] =
{
	[PLAN_LAST_SEQ] = {
		"SELECT pg_catalog.pg_sequence_last_value('taskevents.outbox_seq'::pg_catalog.regclass)",
		0, {0}
	},
	[PLAN_CLAIM_RETRY] = {
		"SELECT r.* FROM taskevents.retry r"
		" WHERE r.task_id OPERATOR(pg_catalog.=) ANY (ARRAY("
		"       SELECT h.task_id FROM taskevents.retry h"
		"        WHERE h.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
		"        ORDER BY h.next_attempt_at LIMIT $1))"
		" ORDER BY r.seq LIMIT $1",
		1, {INT4OID}
	},
	[PLAN_CLAIM_HOLES] = {
		"SELECT q.*, EXISTS (SELECT FROM taskevents.retry b"
		"                     WHERE b.task_id OPERATOR(pg_catalog.=) q.task_id)"
		"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS h(lo, hi),"
		"       LATERAL (SELECT * FROM taskevents.queue c"
		"                 WHERE c.seq OPERATOR(pg_catalog.>=) h.lo AND c.seq OPERATOR(pg_catalog.<=) h.hi"
		"                 ORDER BY c.seq LIMIT $3) q"
		" ORDER BY q.seq LIMIT $3",
		3, {INT8ARRAYOID, INT8ARRAYOID, INT4OID}
	},
	[PLAN_CLAIM_ABOVE] = {
		"SELECT q.*, EXISTS (SELECT FROM taskevents.retry b"
		"                     WHERE b.task_id OPERATOR(pg_catalog.=) q.task_id)"
		"  FROM taskevents.queue q WHERE q.seq OPERATOR(pg_catalog.>) $1"
		"   AND q.seq OPERATOR(pg_catalog.<=) $3"
		" ORDER BY q.seq LIMIT $2",
		3, {INT8OID, INT4OID, INT8OID}
	},
	[PLAN_CLAIM_RESEND] = {
		"SELECT event_id, type, topic, task_id, body, attempts"
		"  FROM taskevents.dead_letter"
		" WHERE requeued_at IS NOT NULL AND body IS NOT NULL"
		" ORDER BY requeued_at, seq,"
		"   CASE WHEN type OPERATOR(pg_catalog.=) 'task.completed' OR type OPERATOR(pg_catalog.=) 'task.uncompleted' THEN 1"
		"   WHEN type OPERATOR(pg_catalog.=) 'sync.task' THEN 2"
		"   WHEN type OPERATOR(pg_catalog.~~) 'reminder.%' THEN 3 ELSE 0 END"
		" LIMIT $1",
		1, {INT4OID}
	},
	[PLAN_NEXT_DUE] = {
		"SELECT pg_catalog.min(next_attempt_at) FROM taskevents.retry",
		0, {0}
	},
	[PLAN_RETRY_DELETE] = {
		"DELETE FROM taskevents.retry WHERE seq OPERATOR(pg_catalog.=) ANY ($1)",
		1, {INT8ARRAYOID}
	},
	[PLAN_RETRY_UPDATE] = {
		"UPDATE taskevents.retry r SET done = u.done, attempts = u.attempts,"
		"       next_attempt_at = u.next_attempt_at, last_status = u.last_status,"
		"       last_error = u.last_error"
		"  FROM " QU_RETRY_STATE
		" WHERE r.seq OPERATOR(pg_catalog.=) u.seq",
		6, QU_RETRY_STATE_TYPES
	},
	[PLAN_RETRY_INSERT] = {
		"INSERT INTO taskevents.retry"
		" SELECT q.*, u.done, u.attempts, u.next_attempt_at, u.last_status, u.last_error"
		"   FROM " QU_RETRY_STATE
		"   JOIN taskevents.queue q ON q.seq OPERATOR(pg_catalog.=) u.seq"
		" ON CONFLICT (seq) DO NOTHING",
		6, QU_RETRY_STATE_TYPES
	},
	[PLAN_RETRY_HEADS] = {
		"UPDATE taskevents.retry r SET next_attempt_at = pg_catalog.now()"
		" WHERE r.next_attempt_at IS NULL AND r.task_id OPERATOR(pg_catalog.=) ANY ($1)"
		"   AND NOT EXISTS (SELECT FROM taskevents.retry e"
		"                    WHERE e.task_id OPERATOR(pg_catalog.=) r.task_id"
		"                      AND e.seq OPERATOR(pg_catalog.<) r.seq)",
		1, {TEXTARRAYOID}
	},
	[PLAN_DEAD] = {
		"INSERT INTO taskevents.dead_letter"
		"       (event_id, seq, type, topic, task_id, body, attempts, last_status, last_error, created_at)"
		" SELECT DISTINCT ON (u.event_id) u.*"
		"   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
		"      pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
		"      pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10))"
		"     AS u(event_id, seq, type, topic, task_id, body, attempts, last_status, last_error, created_at)"
		"  ORDER BY u.event_id, u.seq DESC"	/* a change and its replayed copy, dead in one round */
		" ON CONFLICT (event_id) DO UPDATE SET attempts = excluded.attempts,"
		"   last_status = excluded.last_status, last_error = excluded.last_error,"
		"   failed_at = pg_catalog.now(), requeued_at = NULL",
		10, {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID}
	},
	[PLAN_RESENT_OK] = {
		"DELETE FROM taskevents.dead_letter WHERE event_id OPERATOR(pg_catalog.=) ANY ($1)",
		1, {UUIDARRAYOID}
	},
	[PLAN_RESENT_FAILED] = {
		"UPDATE taskevents.dead_letter d SET requeued_at = NULL, failed_at = pg_catalog.now(),"
		"       attempts = d.attempts OPERATOR(pg_catalog.+) 1, last_status = u.status, last_error = u.error"
		"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(id, status, error)"
		" WHERE d.event_id OPERATOR(pg_catalog.=) u.id",
		3, {UUIDARRAYOID, INT4ARRAYOID, TEXTARRAYOID}
	},
	[PLAN_TICK] = {
		"INSERT INTO taskevents.tick (hi, hole_lo, hole_hi) VALUES ($1, $2, $3)",
		3, {INT8OID, INT8ARRAYOID, INT8ARRAYOID}
	},
	[PLAN_TICK_READ] = {
		"SELECT hi, hole_lo, hole_hi FROM taskevents.tick ORDER BY id DESC LIMIT 1",
		0, {0}
	},
	[PLAN_TICK_PRUNE] = {
		"DELETE FROM taskevents.tick WHERE id OPERATOR(pg_catalog.<)"
		" ((SELECT pg_catalog.max(id) FROM taskevents.tick) OPERATOR(pg_catalog.-) 100)",
		0, {0}
	},
	[PLAN_NEWEST_0] = {
		"SELECT changed_at FROM taskevents.queue_0 ORDER BY seq DESC LIMIT 1", 0, {0}
	},
	[PLAN_NEWEST_1] = {
		"SELECT changed_at FROM taskevents.queue_1 ORDER BY seq DESC LIMIT 1", 0, {0}
	},
	[PLAN_NEWEST_2] = {
		"SELECT changed_at FROM taskevents.queue_2 ORDER BY seq DESC LIMIT 1", 0, {0}
	},
	[PLAN_MAX_SEQ] = {
		"SELECT pg_catalog.max(seq) FROM taskevents.queue", 0, {0}
	},
	[PLAN_SETVAL] = {
		"SELECT pg_catalog.setval($1, $2)", 2, {REGCLASSOID, INT8OID}
	},
	[PLAN_PREPARED] = {
		"SELECT transaction FROM pg_catalog.pg_prepared_xacts"
		" WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database()", 0, {0}
	},
	[PLAN_SUBSCRIBED] = {
		"SELECT s.subname::pg_catalog.text, c.relname::pg_catalog.text FROM pg_catalog.pg_subscription_rel r"
		"  JOIN pg_catalog.pg_subscription s ON s.oid OPERATOR(pg_catalog.=) r.srsubid"
		"  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.srrelid"
		" WHERE c.relnamespace OPERATOR(pg_catalog.=) $1 LIMIT 1",
		1, {OIDOID}
	},
};

static SPIPlanPtr qu_plans[NUM_PLANS];

/* Run a saved plan (spiutil.c); returns SPI_processed. */
static uint64
qu_exec(int plan, Datum *args, int expect)
{
	return te_spi_exec(&qu_plans[plan], qu_sql[plan].sql, qu_sql[plan].nargs,
					   qu_sql[plan].argtypes, args, expect);
}

/* Run a plan whose arguments are the columns as arrays, when they have rows. */
static void
qu_exec_columns(int plan, TeColumn **cols, int ncols, int expect)
{
	Datum		args[QU_MAX_ARGS];

	if (cols[0]->n == 0)
		return;
	for (int i = 0; i < ncols; i++)
		args[i] = te_column_array(cols[i]);
	(void) qu_exec(plan, args, expect);
}

/*
 * Start a transaction with SPI, holding the extension (DROP EXTENSION waits
 * for the round); false, with nothing started, when the extension the
 * worker began with is gone.
 */
static bool
qu_begin(const char *activity)
{
	qu_caller_cxt = te_xact_begin();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "taskevents: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	LockDatabaseObject(ExtensionRelationId, qu_extension, 0, AccessShareLock);
	if (get_extension_name(qu_extension) != NULL)
		return true;
	SPI_finish();
	PopActiveSnapshot();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(qu_caller_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return false;
}

static void
qu_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	te_xact_commit(qu_caller_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* A cursor from tick columns: hi and the holes' bounds as arrays. */
static void
qu_cursor_from(QuCursor *cur, int64 hi, Datum lo_array, Datum hi_array)
{
	Datum	   *lo,
			   *up;
	int			nlo,
				nup;

	deconstruct_array(DatumGetArrayTypeP(lo_array), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &lo, NULL, &nlo);
	deconstruct_array(DatumGetArrayTypeP(hi_array), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &up, NULL, &nup);
	cur->hi = hi;
	cur->nholes = Min(nlo, nup);
	cur->holes = palloc(sizeof(TeRange) * (cur->nholes + 1));
	for (int i = 0; i < cur->nholes; i++)
	{
		cur->holes[i].lo = DatumGetInt64(lo[i]);
		cur->holes[i].hi = DatumGetInt64(up[i]);
	}
}

/* The holes' bounds as two columns. */
static void
qu_cursor_columns(const QuCursor *cur, TeColumn *lo, TeColumn *hi)
{
	*lo = te_column(INT8OID, cur->nholes + 1);
	*hi = te_column(INT8OID, cur->nholes + 1);
	for (int i = 0; i < cur->nholes; i++)
	{
		te_column_add(lo, Int64GetDatum(cur->holes[i].lo), false);
		te_column_add(hi, Int64GetDatum(cur->holes[i].hi), false);
	}
}

/* Copy a cursor into a memory context. */
static void
qu_cursor_copy(QuCursor *dst, const QuCursor *src, MemoryContext cxt)
{
	dst->hi = src->hi;
	dst->nholes = src->nholes;
	dst->holes = MemoryContextAlloc(cxt, sizeof(TeRange) * (src->nholes + 1));
	memcpy(dst->holes, src->holes, sizeof(TeRange) * src->nholes);
}

/*
 * The last sequence number handed out (0 before the first).  Read under
 * the sequence's buffer lock: a plain SELECT from the sequence reads its
 * page unlocked and can catch nextval() halfway, with the number it logs
 * ahead (32 on) in place of the one it hands out, numbers that the claim
 * would then take for rolled back.
 */
static int64
qu_last_seq(void)
{
	bool		isnull;
	Datum		last;

	if (qu_exec(PLAN_LAST_SEQ, NULL, SPI_OK_SELECT) != 1)
		elog(ERROR, "taskevents: taskevents.outbox_seq has no row");
	last = te_spi_get(0, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(last);
}

/*
 * Prepared transactions the in-flight table does not know (they were
 * prepared before a restart): every number given out so far may be theirs
 * while they last.
 */
static void
qu_find_unknown_prepared(void)
{
	int			n = qu_exec(PLAN_PREPARED, NULL, SPI_OK_SELECT);

	if (qu_unknown_xids == NULL)
		qu_unknown_xids = MemoryContextAlloc(TopMemoryContext, sizeof(TransactionId) * Max(max_prepared_xacts, 1));
	qu_nunknown = 0;
	for (int i = 0; i < n && qu_nunknown < Max(max_prepared_xacts, 1); i++)
	{
		bool		isnull;
		TransactionId xid = DatumGetTransactionId(te_spi_get(i, 1, &isnull));

		if (!te_inflight_knows_prepared(xid))
			qu_unknown_xids[qu_nunknown++] = xid;
	}
	if (qu_nunknown > 0)
		qu_unknown_upto = qu_last_seq();
}

/*
 * Look at the installed extension (in a transaction of its own): ready to
 * deliver, absent, or installed with 1.0's objects (the library is newer).
 * When ready, the cursor is read back from taskevents.tick.
 */
QuOpen
qu_open(void)
{
	QuOpen		result = QU_READY;
	Oid			oid;
	MemoryContext caller = te_xact_begin();

	oid = get_extension_oid("taskevents", true);
	if (!OidIsValid(oid) || (OidIsValid(qu_extension) && oid != qu_extension))
		result = QU_ABSENT;		/* gone, or installed again: another worker's */
	else if (!OidIsValid(te_outbox_relid("queue_0", true)) ||
			 !OidIsValid(te_outbox_relid("tick", true)))
		result = QU_NEEDS_UPDATE;
	te_xact_commit(caller);
	if (result == QU_ABSENT)
		return result;
	qu_extension = oid;
	if (result != QU_READY || !qu_begin("taskevents: starting"))
		return result == QU_READY ? QU_ABSENT : result;

	/* No tick yet: nothing has been read. */
	if (qu_exec(PLAN_TICK_READ, NULL, SPI_OK_SELECT) == 1)
	{
		bool		isnull;
		int64		hi = DatumGetInt64(te_spi_get(0, 1, &isnull));
		Datum		lo = te_spi_get(0, 2, &isnull);
		Datum		up = te_spi_get(0, 3, &isnull);
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		if (qu_cursor.holes)
			pfree(qu_cursor.holes);
		qu_cursor_from(&qu_cursor, hi, lo, up);
		MemoryContextSwitchTo(old);
	}
	else if (qu_cursor.holes == NULL)
		qu_cursor.holes = MemoryContextAllocZero(TopMemoryContext, sizeof(TeRange));
	qu_find_unknown_prepared();
	qu_commit();
	return QU_READY;
}

/*
 * The numbers still in flight, merged and in order: the in-flight table's
 * ranges, and every number up to qu_unknown_upto while a prepared
 * transaction of unknown numbers lasts.
 */
static int
qu_in_flight(TeRange **ranges)
{
	int			n = te_inflight_ranges(MyDatabaseId, ranges);
	int			keep = 0;

	for (int i = 0; i < qu_nunknown; i++)
		if (TransactionIdIsInProgress(qu_unknown_xids[i]))
			qu_unknown_xids[keep++] = qu_unknown_xids[i];
	qu_nunknown = keep;
	if (qu_nunknown == 0)
		return n;
	*ranges = repalloc(*ranges, sizeof(TeRange) * (n + 1));
	(*ranges)[n].lo = 1;
	(*ranges)[n].hi = qu_unknown_upto;
	return te_ranges_merge(*ranges, n + 1);
}

/* The size of a result row's title and changes, without detoasting them. */
static Size
qu_row_bytes(int row)
{
	Size		bytes = 0;
	int			atts[] = {Anum_outbox_title, Anum_outbox_changes};

	for (int i = 0; i < lengthof(atts); i++)
	{
		bool		isnull;
		Datum		d = te_spi_get(row, atts[i], &isnull);

		if (!isnull)
			bytes += toast_raw_datum_size(d);
	}
	return bytes;
}

/* Read a claimed change from a result row (queue columns first). */
static void
qu_read_change(int row, QuChange *ch)
{
	te_outbox_read(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, &ch->c);
	ch->bytes = qu_row_bytes(row);
}

/*
 * How many leading rows of the result fit the round: at most limit, and at
 * most budget bytes of titles and changes, but always one.
 */
static int
qu_fit(int nrows, int limit, Size *budget)
{
	int			n = 0;

	while (n < nrows && n < limit)
	{
		Size		bytes = qu_row_bytes(n);

		if (n > 0 && bytes > *budget)
			break;
		*budget -= Min(bytes, *budget);
		n++;
	}
	return n;
}

/* Read the changes of taskevents.retry whose task is due, into r->changes. */
static int
qu_claim_retry(QuRound *r, int limit, Size *budget)
{
	Datum		arg = Int32GetDatum(limit);
	int			n = qu_exec(PLAN_CLAIM_RETRY, &arg, SPI_OK_SELECT);
	MemoryContext old = MemoryContextSwitchTo(qu_round_cxt);

	n = qu_fit(n, limit, budget);
	for (int i = 0; i < n; i++)
	{
		QuChange   *ch = &r->changes[r->nchanges++];
		bool		isnull;
		Datum		next;

		qu_read_change(i, ch);
		ch->in_retry = true;
		ch->done = te_spi_int4(i, Natts_outbox + 1);
		ch->attempts = te_spi_int4(i, Natts_outbox + 2);
		next = te_spi_get(i, Natts_outbox + 3, &isnull);
		ch->next_attempt_at = isnull ? 0 : DatumGetTimestampTz(next);
		ch->last_status = te_spi_int4(i, Natts_outbox + 4);
		ch->last_error = te_spi_text(i, Natts_outbox + 5);
	}
	MemoryContextSwitchTo(old);
	return n;
}

/* Read the changes of a result (queue columns, then whether blocked), as many as fit. */
static int
qu_read_new(QuRound *r, int nrows, int limit, Size *budget, int64 *seqs)
{
	MemoryContext old = MemoryContextSwitchTo(qu_round_cxt);
	int			n = qu_fit(nrows, limit, budget);

	for (int i = 0; i < n; i++)
	{
		QuChange   *ch = &r->changes[r->nchanges++];
		bool		isnull;

		qu_read_change(i, ch);
		ch->blocked = DatumGetBool(te_spi_get(i, Natts_outbox + 1, &isnull));
		seqs[i] = ch->c.seq;
	}
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * Read the changes in the holes of the cursor from, then those above it (all
 * of the holes' numbers are below the others); propose the next cursor.
 */
static void
qu_claim_new(QuRound *r, const QuCursor *from, int limit, Size *budget, int64 last,
			 const TeRange *flight, int nflight)
{
	TeColumn	lo,
				hi;
	Datum		args[3];
	int64	   *seqs = MemoryContextAlloc(qu_round_cxt, sizeof(int64) * (limit + 1));
	int			nrows;
	int			n;
	int64		looked;

	qu_cursor_columns(from, &lo, &hi);
	args[0] = te_column_array(&lo);
	args[1] = te_column_array(&hi);
	args[2] = Int32GetDatum(limit);
	nrows = qu_exec(PLAN_CLAIM_HOLES, args, SPI_OK_SELECT);
	n = qu_read_new(r, nrows, limit, budget, seqs);
	if (n < nrows || nrows == limit)
		looked = seqs[n - 1];	/* cut short in the holes */
	else if (*budget == 0)
		looked = from->hi;		/* the holes are read, nothing above */
	else
	{
		int			want = limit - n;
		int			got;

		args[0] = Int64GetDatum(from->hi);
		args[1] = Int32GetDatum(want);
		args[2] = Int64GetDatum(last);
		nrows = qu_exec(PLAN_CLAIM_ABOVE, args, SPI_OK_SELECT);
		got = qu_read_new(r, nrows, want, budget, seqs + n);
		n += got;
		looked = (got < nrows || nrows == want) ? seqs[n - 1] : last;
	}
	r->more = r->more || looked != last;
	r->cursor.holes = MemoryContextAlloc(qu_round_cxt,	/* not SPI's: the cursor outlives it */
										 sizeof(TeRange) * qu_advance_size(from, n, nflight));
	qu_advance(from, seqs, n, looked, flight, nflight, &r->cursor);
}

/* Read the dead letters an operator re-queued. */
static void
qu_claim_resends(QuRound *r, int limit)
{
	Datum		arg = Int32GetDatum(limit);
	int			n = qu_exec(PLAN_CLAIM_RESEND, &arg, SPI_OK_SELECT);
	MemoryContext old = MemoryContextSwitchTo(qu_round_cxt);

	r->resends = palloc0(sizeof(QuResend) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		QuResend   *d = &r->resends[r->nresends++];
		bool		isnull;

		d->id = *DatumGetUUIDP(te_spi_get(i, 1, &isnull));
		d->type = te_spi_text(i, 2);
		d->topic = te_spi_text(i, 3);
		d->task_id = te_spi_text(i, 4);
		d->body = te_spi_text(i, 5);
		d->attempts = te_spi_int4(i, 6);
	}
	MemoryContextSwitchTo(old);
}

/* Milliseconds until the next retry is due, at most the poll interval. */
static long
qu_next_due_ms(void)
{
	bool		isnull;
	Datum		d;
	long		ms = te_poll_interval_ms;

	if (qu_exec(PLAN_NEXT_DUE, NULL, SPI_OK_SELECT) == 1)
	{
		d = te_spi_get(0, 1, &isnull);
		if (!isnull)
			ms = qu_due_ms(GetCurrentTimestamp(), DatumGetTimestampTz(d), ms);
	}
	return ms;
}

/* Sort claimed changes by sequence number. */
static int
qu_cmp_seq(const void *a, const void *b)
{
	int64		x = ((const QuChange *) a)->c.seq;
	int64		y = ((const QuChange *) b)->c.seq;

	return (x > y) - (x < y);
}

/*
 * What the queue relies on that a superuser can alter, or NULL when all is
 * as the extension made it: a sequence that gives out one number at a time
 * in order (with a cache, a number given out later may be one the worker
 * already took for rolled back), tables that survive a crash, and tables
 * that no subscription writes into (a publisher's queue would be delivered
 * here too, and its TRUNCATEs empty this one).
 */
static const char *
qu_check_objects(void)
{
	static const char *const logged[] = {"queue_0", "queue_1", "queue_2", "tick", "retry",
	"dead_letter", "outbox_seq", "tick_id_seq"};
	Oid			seqid = te_outbox_relid("outbox_seq", false);
	HeapTuple	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid));
	Datum		arg;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_sequence seq = (Form_pg_sequence) GETSTRUCT(tup);
		bool		altered = seq->seqincrement != 1 || seq->seqcache != 1 || seq->seqcycle ||
			seq->seqmin != 1 || seq->seqmax != PG_INT64_MAX;
		char	   *why = psprintf("taskevents.outbox_seq was altered (INCREMENT " INT64_FORMAT ", CACHE " INT64_FORMAT
								   ", MINVALUE " INT64_FORMAT ", MAXVALUE " INT64_FORMAT "%s): "
								   "the queue needs one number at a time, in order; run ALTER SEQUENCE taskevents.outbox_seq "
								   "INCREMENT 1 CACHE 1 NO CYCLE MINVALUE 1 NO MAXVALUE",
								   seq->seqincrement, seq->seqcache, seq->seqmin, seq->seqmax, seq->seqcycle ? ", CYCLE" : "");

		ReleaseSysCache(tup);
		if (altered)
			return why;
	}
	for (int i = 0; i < lengthof(logged); i++)
	{
		Oid			relid = te_outbox_relid(logged[i], false);

		if (get_rel_persistence(relid) != RELPERSISTENCE_PERMANENT)
			return psprintf("taskevents.%s is unlogged: a crash would empty it; run ALTER %s taskevents.%s SET LOGGED",
							logged[i], get_rel_relkind(relid) == RELKIND_SEQUENCE ? "SEQUENCE" : "TABLE", logged[i]);
	}
	arg = ObjectIdGetDatum(get_namespace_oid("taskevents", false));
	if (qu_exec(PLAN_SUBSCRIBED, &arg, SPI_OK_SELECT) > 0)
		return psprintf("taskevents.%s is written by subscription \"%s\": another database's queue would be delivered here too; "
						"leave the schema taskevents out of the publication",
						te_spi_text(0, 2), te_spi_text(0, 1));
	return NULL;
}

/*
 * qu_check_objects() at most once a second (a superuser's ALTER is seen
 * within a poll or two; a claim costs no catalog query), and at each claim
 * while it found something.
 */
static const char *
qu_check_objects_now(void)
{
	static TimestampTz last_check = 0;
	static bool last_halted = false;
	TimestampTz now = GetCurrentTimestamp();
	const char *why;

	if (!last_halted && !TimestampDifferenceExceeds(last_check, now, 1000))
		return NULL;
	why = qu_check_objects();
	last_check = now;
	last_halted = why != NULL;
	return why;
}

/*
 * The last number given out, moved forward first past every row of the
 * queue and past the cursor from: rows that arrived by another path than the
 * capture (a restore, a setval backwards) are then read once, and no
 * writer is given a number in use.  The sequence is moved under a lock
 * that keeps writers from taking numbers meanwhile (never waiting for it:
 * a later claim moves it), so it never moves back.
 */
static int64
qu_last_seq_covering(const QuCursor *from)
{
	Oid			seqid = te_outbox_relid("outbox_seq", false);
	int64		last = qu_last_seq();
	int64		need = from->hi;
	bool		isnull;
	Datum		d;

	if (qu_exec(PLAN_MAX_SEQ, NULL, SPI_OK_SELECT) == 1)
	{
		d = te_spi_get(0, 1, &isnull);
		if (!isnull)
			need = Max(need, DatumGetInt64(d));
	}
	if (need > last && ConditionalLockRelationOid(seqid, ExclusiveLock) && (last = qu_last_seq()) < need)
	{
		Datum		args[2] = {ObjectIdGetDatum(seqid), Int64GetDatum(need)};

		/* held until the claim commits: no writer takes a number meanwhile */
		ereport(WARNING,
				(errmsg("taskevents: taskevents.outbox_seq is at " INT64_FORMAT ", behind the queue (" INT64_FORMAT "): moved forward",
						last, need),
				 errdetail("Queue rows arrived by another path than the capture trigger, or the sequence was set back.")));
		(void) qu_exec(PLAN_SETVAL, args, SPI_OK_SELECT);
		last = need;
	}
	return last;
}

/*
 * Claim a round, in one transaction: the due changes of taskevents.retry,
 * the changes above the cursor and in its holes, and the re-queued dead
 * letters; at most limit changes and about budget bytes.  False when the
 * extension is gone; r->halted says why nothing was claimed when the
 * queue's objects were altered.
 */
bool
qu_claim(QuRound *r, int limit, Size budget)
{
	int64		last;
	TeRange    *flight;
	int			nflight;
	int			nretry;

	memset(r, 0, sizeof(*r));
	qu_round_cxt = CurrentMemoryContext;
	r->changes = palloc0(sizeof(QuChange) * (limit + 1));
	if (!qu_begin("taskevents: claiming"))
		return false;
	r->halted = qu_check_objects_now();
	if (r->halted != NULL)
	{
		r->halted = MemoryContextStrdup(qu_round_cxt, r->halted);
		qu_commit();
		qu_cursor_copy(&r->cursor, &qu_cursor, qu_round_cxt);
		r->sleep_ms = te_poll_interval_ms;
		return true;
	}

	/*
	 * The last number given out, then what is in flight, then the snapshot:
	 * a number up to last that no transaction in flight holds either shows
	 * in the snapshot or never will (inflight.c).
	 */
	last = qu_last_seq_covering(&qu_cursor);
	nflight = qu_in_flight(&flight);
	PushActiveSnapshot(GetTransactionSnapshot());
	r->last_seq = last;

	nretry = qu_claim_retry(r, limit, &budget);
	if (nretry < limit && budget > 0)
		qu_claim_new(r, &qu_cursor, limit - nretry, &budget, last, flight, nflight);
	else
	{
		r->more = true;
		qu_cursor_copy(&r->cursor, &qu_cursor, qu_round_cxt);
	}
	qu_claim_resends(r, limit);
	r->sleep_ms = qu_next_due_ms();
	PopActiveSnapshot();
	qu_commit();
	qsort(r->changes, r->nchanges, sizeof(QuChange), qu_cmp_seq);
	return true;
}

/*
 * Claim more for a round while it is sent (it was cut short: more is
 * waiting), in a transaction of its own as qu_claim(): the changes in the
 * holes of the cursor the round proposes and above it, at most limit and
 * about budget bytes, into more, which joins the round's claims.  Not the
 * retries nor the re-sent dead letters: a round reads those at its start.
 * The round's cursor, last number and whether more is waiting become this
 * claim's; it is recorded with the round.  False when the extension is gone.
 */
bool
qu_claim_more(QuRound *r, QuRound *more, int limit, Size budget)
{
	int64		last;
	TeRange    *flight;
	int			nflight;
	QuRound   **link = &r->next;

	memset(more, 0, sizeof(*more));
	more->changes = MemoryContextAllocZero(qu_round_cxt, sizeof(QuChange) * (limit + 1));
	if (!qu_begin("taskevents: claiming more"))
		return false;
	last = qu_last_seq_covering(&r->cursor);
	nflight = qu_in_flight(&flight);
	PushActiveSnapshot(GetTransactionSnapshot());
	qu_claim_new(more, &r->cursor, limit, &budget, last, flight, nflight);
	PopActiveSnapshot();
	qu_commit();
	qsort(more->changes, more->nchanges, sizeof(QuChange), qu_cmp_seq);
	while (*link != NULL)
		link = &(*link)->next;
	*link = more;
	r->cursor = more->cursor;
	r->last_seq = last;
	r->more = more->more;
	return true;
}

/* Write the round's dead letters, with the exact body and the last error. */
static void
qu_record_dead(QuRound *r)
{
	int			cap = list_length(r->dead) + 1;
	TeColumn	id = te_column(UUIDOID, cap),
				seq = te_column(INT8OID, cap),
				type = te_column(TEXTOID, cap),
				topic = te_column(TEXTOID, cap),
				task_id = te_column(TEXTOID, cap),
				body = te_column(TEXTOID, cap),
				attempts = te_column(INT4OID, cap),
				status = te_column(INT4OID, cap),
				error = te_column(TEXTOID, cap),
				created_at = te_column(TIMESTAMPTZOID, cap);
	ListCell   *lc;

	foreach(lc, r->dead)
	{
		QuDead	   *d = lfirst(lc);

		te_column_add(&id, UUIDPGetDatum(&d->id), false);
		te_column_add(&seq, Int64GetDatum(d->change->c.seq), false);
		te_column_add_text(&type, d->type);
		te_column_add_text(&topic, d->topic);
		te_column_add_text(&task_id, d->change->c.task_id);
		te_column_add_text(&body, d->body);
		te_column_add(&attempts, Int32GetDatum(d->attempts), false);
		te_column_add(&status, Int32GetDatum(d->status), false);
		te_column_add_text(&error, d->error);
		te_column_add(&created_at, TimestampTzGetDatum(d->change->c.changed_at), false);
	}
	qu_exec_columns(PLAN_DEAD, (TeColumn *[]) {&id, &seq, &type, &topic, &task_id, &body,
		&attempts, &status, &error, &created_at}, 10, SPI_OK_INSERT);
}

/* Re-queued dead letters: gone when published, dead again otherwise. */
static void
qu_record_resends(QuRound *r)
{
	int			cap = r->nresends + 1;
	TeColumn	ok = te_column(UUIDOID, cap),
				failed = te_column(UUIDOID, cap),
				status = te_column(INT4OID, cap),
				error = te_column(TEXTOID, cap);

	for (int i = 0; i < r->nresends; i++)
	{
		QuResend   *d = &r->resends[i];

		if (d->published)
			te_column_add(&ok, UUIDPGetDatum(&d->id), false);
		else
		{
			te_column_add(&failed, UUIDPGetDatum(&d->id), false);
			te_column_add(&status, Int32GetDatum(d->status), false);
			te_column_add_text(&error, d->error);
		}
	}
	qu_exec_columns(PLAN_RESENT_OK, (TeColumn *[]) {&ok}, 1, SPI_OK_DELETE);
	qu_exec_columns(PLAN_RESENT_FAILED, (TeColumn *[]) {&failed, &status, &error}, 3, SPI_OK_UPDATE);
}

/*
 * What taskevents.retry is to do with a change of the round: gone (settled
 * there), updated (its state changed there), inserted (read from the queue,
 * not settled: failed, partly sent, or waiting behind its task); tasks: whose
 * oldest change there is to be due.
 */
static void
qu_retry_add(const QuChange *ch, TeColumn *gone, TeColumn *tasks, TeColumn cols[2][6])
{
	TeColumn   *c = cols[ch->in_retry ? 0 : 1];
	bool		settled = ch->done == ch->slots && !ch->blocked;

	if (ch->in_retry && settled)
	{
		te_column_add(gone, Int64GetDatum(ch->c.seq), false);
		te_column_add_text(tasks, ch->c.task_id);
		return;
	}
	if (settled || (ch->in_retry && !ch->dirty))
		return;
	if (!ch->in_retry && !ch->failed)
		te_column_add_text(tasks, ch->c.task_id);
	te_column_add(&c[0], Int64GetDatum(ch->c.seq), false);
	te_column_add(&c[1], Int32GetDatum(ch->done), false);
	te_column_add(&c[2], Int32GetDatum(ch->attempts), false);
	te_column_add(&c[3], TimestampTzGetDatum(ch->next_attempt_at), !ch->failed);
	te_column_add(&c[4], Int32GetDatum(ch->last_status), false);
	te_column_add_text(&c[5], ch->last_error);
}

/*
 * taskevents.retry after the round (every claim of it): qu_retry_add() for
 * each change, then each task with changes left there has its oldest one due.
 */
static void
qu_record_retry(QuRound *r)
{
	int			cap = 1;
	TeColumn	gone,
				tasks;
	TeColumn	cols[2][6];

	for (QuRound *claim = r; claim != NULL; claim = claim->next)
		cap += claim->nchanges;
	gone = te_column(INT8OID, cap);
	tasks = te_column(TEXTOID, cap);
	for (int k = 0; k < 2; k++)
	{
		cols[k][0] = te_column(INT8OID, cap);
		cols[k][1] = te_column(INT4OID, cap);
		cols[k][2] = te_column(INT4OID, cap);
		cols[k][3] = te_column(TIMESTAMPTZOID, cap);
		cols[k][4] = te_column(INT4OID, cap);
		cols[k][5] = te_column(TEXTOID, cap);
	}
	for (QuRound *claim = r; claim != NULL; claim = claim->next)
		for (int i = 0; i < claim->nchanges; i++)
			qu_retry_add(&claim->changes[i], &gone, &tasks, cols);
	qu_exec_columns(PLAN_RETRY_DELETE, (TeColumn *[]) {&gone}, 1, SPI_OK_DELETE);
	qu_exec_columns(PLAN_RETRY_UPDATE, (TeColumn *[]) {&cols[0][0], &cols[0][1], &cols[0][2],
		&cols[0][3], &cols[0][4], &cols[0][5]}, 6, SPI_OK_UPDATE);
	qu_exec_columns(PLAN_RETRY_INSERT, (TeColumn *[]) {&cols[1][0], &cols[1][1], &cols[1][2],
		&cols[1][3], &cols[1][4], &cols[1][5]}, 6, SPI_OK_INSERT);
	qu_exec_columns(PLAN_RETRY_HEADS, (TeColumn *[]) {&tasks}, 1, SPI_OK_UPDATE);
}

/*
 * Check a cursor before it is written (qu_cursor_bad_hole()).  A cursor
 * that is not so would lose or repeat changes; better an ERROR (the round
 * is not recorded, and is sent again).
 */
static void
qu_cursor_check(const QuCursor *c)
{
	int			i = qu_cursor_bad_hole(c);

	if (i >= 0)
		elog(ERROR, "taskevents: the queue cursor is inconsistent (hole %d: " INT64_FORMAT ".." INT64_FORMAT ", hi " INT64_FORMAT ")",
			 i, c->holes[i].lo, c->holes[i].hi, c->hi);
}

/* Write the cursor, when it moved; now and then drop old ticks. */
static void
qu_record_cursor(const QuRound *r)
{
	const QuCursor *c = &r->cursor;
	TeColumn	lo,
				hi;
	Datum		args[3];

	qu_cursor_check(c);
	if (!qu_cursor_equal(c, &qu_cursor))
	{
		qu_cursor_columns(c, &lo, &hi);
		args[0] = Int64GetDatum(c->hi);
		args[1] = te_column_array(&lo);
		args[2] = te_column_array(&hi);
		(void) qu_exec(PLAN_TICK, args, SPI_OK_INSERT);
	}
	if (TimestampDifferenceExceeds(qu_last_prune, GetCurrentTimestamp(), 60000))
	{
		(void) qu_exec(PLAN_TICK_PRUNE, NULL, SPI_OK_DELETE);
		qu_last_prune = GetCurrentTimestamp();
	}
}

/* Is the newest change of a queue table older than taskevents.retention? */
static bool
qu_retention_over(int table)
{
	bool		isnull;
	TimestampTz newest;

	if (te_retention_s == 0)
		return true;
	if (qu_exec(PLAN_NEWEST_0 + table, NULL, SPI_OK_SELECT) == 0)
		return true;
	newest = DatumGetTimestampTz(te_spi_get(0, 1, &isnull));
	return GetCurrentTimestamp() - newest > (int64) te_retention_s * USECS_PER_SEC;
}

/* Is a table ready to be emptied, and not yet? */
static bool
qu_empty_waiting(void)
{
	for (int t = 0; t < TE_QUEUE_TABLES; t++)
		if (qu_ready[t].run >= 0 && qu_ready[t].run != qu_emptied_run[t])
			return true;
	return false;
}

/*
 * Note the record that found a table read, once it has committed: the
 * table is emptied once every snapshot sees it (horizon.c).
 */
static void
qu_note_ready(int t, int64 run, TransactionId xid)
{
	qu_ready[t].run = run;
	te_horizon_note(&qu_ready[t].horizon, xid);
}

/*
 * Empty the queue tables whose changes are all read and whose run of
 * numbers is over: table t holds runs k with k % 3 == t; once the run being
 * written is a later one and the cursor is past the end of t's last run, no
 * change in t is waiting and none is being written (qu_run_to_empty()).  The record that first
 * finds so is noted (ready); the table is emptied only once every snapshot
 * that can read it sees that record, so none sees its changes unread and
 * the table empty.  The lock is taken without waiting (a reader keeps the
 * table for a later round), and the run is checked again under it: a
 * writer given a number of t's next run waits for the TRUNCATE and writes
 * into the emptied table.  Returns the tables found ready by this record.
 */
static int
qu_empty_tables(const QuRound *r)
{
	int			found_ready = 0;

	for (int t = 0; t < TE_QUEUE_TABLES; t++)
	{
		int64		run = qu_run_to_empty(t, r->last_seq, &r->cursor, qu_emptied_run[t]);
		char		name[16];
		char		sql[64];
		Oid			relid;

		if (run < 0 || !qu_retention_over(t))
			continue;
		if (qu_ready[t].run != run)
		{
			found_ready |= 1 << t;	/* this record is the one every snapshot must see */
			continue;
		}
		if (!te_horizon_passed(&qu_ready[t].horizon))
			continue;
		snprintf(name, sizeof(name), "queue_%d", t);
		relid = te_outbox_relid(name, false);
		if (!ConditionalLockRelationOid(relid, AccessExclusiveLock))
			continue;
		if (qu_run_taken_again(run, qu_last_seq()))
		{
			UnlockRelationOid(relid, AccessExclusiveLock);
			continue;
		}
		snprintf(sql, sizeof(sql), "TRUNCATE taskevents.%s", name);
		if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "taskevents: %s failed", sql);
		qu_emptied_run[t] = run;
	}
	return found_ready;
}

/*
 * Record the round's outcomes and the cursor, in one transaction; false
 * (nothing recorded) when the extension is gone.
 */
bool
qu_record(QuRound *r)
{
	int			ready;
	TransactionId xid;

	/* An idle round that moved nothing records nothing (but empties a table that waits). */
	if (r->nchanges == 0 && r->nresends == 0 && r->dead == NIL && !qu_empty_waiting() &&
		qu_cursor_equal(&r->cursor, &qu_cursor))
		return true;
	if (!qu_begin("taskevents: recording"))
		return false;
	qu_record_retry(r);
	qu_record_dead(r);
	qu_record_resends(r);
	qu_record_cursor(r);
	ready = qu_empty_tables(r);
	xid = ready ? GetTopTransactionId() : InvalidTransactionId;
	qu_commit();
	for (int t = 0; t < TE_QUEUE_TABLES; t++)
		if (ready & (1 << t))
			qu_note_ready(t, qu_last_run(t, r->last_seq), xid);

	/* the round is recorded: its cursor is the worker's */
	pfree(qu_cursor.holes);
	qu_cursor_copy(&qu_cursor, &r->cursor, TopMemoryContext);
	return true;
}
