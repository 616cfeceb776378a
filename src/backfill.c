/*-------------------------------------------------------------------------
 * backfill.c
 *		Backfills (taskevents.backfill()): the worker queues the current
 *		state of every matching task, a chunk at a time.
 *
 * A chunk is one short transaction: the next rows by id after the last key,
 * read FOR SHARE, each queued as task.snapshot (+ sync.task, and
 * reminder.scheduled with a due date) through the capture's own path, and
 * the backfill's progress written in the same transaction.  The row locks
 * make the snapshots and live changes agree: a writer of a row in the chunk
 * waits for it (at most one chunk), so its change is numbered after the
 * snapshot, and a change that committed before is in the snapshot and
 * numbered before it.  A consumer applying each task's events in order ends
 * with the table's state.  A crash or restart loses at most the chunk in
 * flight, which is done again; progress is a table row, so pg_dump and a
 * failover keep it.
 *
 * The chunk runs as the role that started the backfill, in a restricted
 * security context, with the worker's pinned settings (search_path
 * pg_catalog): its filter and the table are that role's, not the worker's.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "parser/parse_relation.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "backfill.h"
#include "capture.h"
#include "outbox.h"
#include "spiutil.h"

#define BF_CHUNK	1000		/* rows a chunk reads at most */
#define BF_LOOK_MS	1000		/* with none running, look again after this */

static TimestampTz bf_next = 0; /* when the next chunk (or look) is due */

/* A running backfill, as its row says. */
typedef struct BfJob
{
	int64		id;
	Oid			relid;
	char	   *filter;			/* NULL: every row */
	Oid			owner;
	int			rate;			/* rows a second; 0: as fast as it goes */
	char	   *last_key;		/* NULL: from the start */
} BfJob;

/* The oldest running backfill, locked; false when there is none. */
static bool
bf_running(BfJob *job)
{
	bool		isnull;

	if (SPI_execute("SELECT id, tbl, filter, owner, rate, last_key FROM taskevents.backfill"
					" WHERE state OPERATOR(pg_catalog.=) 'running' ORDER BY id LIMIT 1 FOR UPDATE",
					false, 1) != SPI_OK_SELECT)
		elog(ERROR, "taskevents: reading taskevents.backfill failed");
	if (SPI_processed == 0)
		return false;
	job->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	job->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	job->filter = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	job->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	job->rate = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	job->last_key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
	return true;
}

/* Write a backfill's progress (rows more, the last key) or its end. */
static void
bf_update(int64 id, int64 rows, const char *last_key, const char *state, const char *error)
{
	Oid			types[5] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(rows);
	values[2] = last_key ? CStringGetTextDatum(last_key) : (Datum) 0;
	nulls[2] = last_key ? ' ' : 'n';
	values[3] = state ? CStringGetTextDatum(state) : (Datum) 0;
	nulls[3] = state ? ' ' : 'n';
	values[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[4] = error ? ' ' : 'n';
	if (SPI_execute_with_args("UPDATE taskevents.backfill"
							  "   SET rows_done = rows_done OPERATOR(pg_catalog.+) $2,"
							  "       last_key = COALESCE($3, last_key),"
							  "       state = COALESCE($4, state), error = $5,"
							  "       updated_at = pg_catalog.now(),"
							  "       finished_at = CASE WHEN $4 IS NULL THEN NULL ELSE pg_catalog.now() END"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  5, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "taskevents: updating taskevents.backfill failed");
}

/* The table's capture trigger (its column mapping), or NULL when it is not attached. */
static Trigger *
bf_capture_trigger(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	for (int i = 0; td != NULL && i < td->numtriggers; i++)
		if (strcmp(td->triggers[i].tgname, "taskevents_capture") == 0 && td->triggers[i].tgnargs >= 5)
			return &td->triggers[i];
	return NULL;
}

/*
 * One chunk of the job, as its owner: the rows read and queued, and the
 * last key in *last_key.  Errors (a filter that fails, no privilege) are
 * the caller's to catch.
 */
static int
bf_chunk(BfJob *job, Relation rel, Trigger *trigger, int limit, char **last_key)
{
	const char *idcol = trigger->tgargs[0];
	AttrNumber	idnum = attnameAttNum(rel, idcol, false);
	Oid			idtype = idnum > 0 ? TupleDescAttr(RelationGetDescr(rel), idnum - 1)->atttypid : InvalidOid;
	StringInfoData sql;
	Oid			argtype = TEXTOID;
	Datum		arg = job->last_key ? CStringGetTextDatum(job->last_key) : (Datum) 0;
	char		trace_id[40];
	Oid			save_uid;
	int			save_sec;
	int			n;

	if (idnum <= 0)
		ereport(ERROR,
				(errmsg("taskevents: column \"%s\" (the task's id) of %s does not exist", idcol,
						RelationGetRelationName(rel))));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT t.*, (t.%s)::pg_catalog.text FROM ONLY %s t WHERE (%s)",
					 quote_identifier(idcol),
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 job->filter ? job->filter : "true");
	if (job->last_key)
		appendStringInfo(&sql, " AND t.%s OPERATOR(pg_catalog.>) $1::%s", quote_identifier(idcol),
						 format_type_be_qualified(idtype));
	appendStringInfo(&sql, " ORDER BY t.%s LIMIT %d FOR SHARE OF t", quote_identifier(idcol), limit);

	GetUserIdAndSecContext(&save_uid, &save_sec);
	SetUserIdAndSecContext(job->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	if (SPI_execute_with_args(sql.data, job->last_key ? 1 : 0, &argtype, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "taskevents: the backfill's query failed");
	SetUserIdAndSecContext(save_uid, save_sec);

	snprintf(trace_id, sizeof(trace_id), "backfill-" INT64_FORMAT, job->id);
	n = SPI_processed;
	for (int i = 0; i < n; i++)
		te_capture_snapshot(RelationGetRelationName(rel), SPI_tuptable->tupdesc, trigger,
							SPI_tuptable->vals[i], trace_id);
	*last_key = n > 0 ? SPI_getvalue(SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc,
									 SPI_tuptable->tupdesc->natts) : NULL;
	return n;
}

/*
 * Run the job's next chunk in a subtransaction: an error in it (the
 * filter's, a privilege) fails the backfill, with the error, instead of
 * the worker's round.
 */
static void
bf_run(BfJob *job)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Relation	rel;
	Trigger    *trigger;
	int			limit = job->rate > 0 ? Min(BF_CHUNK, job->rate) : BF_CHUNK;
	volatile int n = 0;
	char	   *volatile last_key = NULL;
	ErrorData  *volatile edata = NULL;

	rel = try_relation_open(job->relid, AccessShareLock);
	trigger = rel ? bf_capture_trigger(rel) : NULL;
	if (trigger == NULL)
	{
		bf_update(job->id, 0, NULL, "failed", rel ? "the table is no longer attached" : "the table is gone");
		if (rel)
			relation_close(rel, AccessShareLock);
		return;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		char	   *key = NULL;

		n = bf_chunk(job, rel, trigger, limit, &key);
		last_key = key;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata != NULL)
	{
		ereport(WARNING,
				(errmsg("taskevents: backfill " INT64_FORMAT " of %s failed: %s", job->id,
						RelationGetRelationName(rel), edata->message)));
		bf_update(job->id, 0, NULL, "failed", edata->message);
	}
	else
	{
		bf_update(job->id, n, last_key, n < limit ? "done" : NULL, NULL);
		bf_next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											  job->rate > 0 ? (long) n * 1000 / job->rate : 0);
	}
	relation_close(rel, AccessShareLock);
}

/*
 * If a backfill is running and its next chunk is due, run it, in a
 * transaction of its own.  Returns the milliseconds until the next is due,
 * or -1 when none is running.
 */
long
te_backfill_step(void)
{
	TimestampTz now = GetCurrentTimestamp();
	BfJob		job;
	bool		running;
	MemoryContext caller;

	if (now < bf_next)
		return (bf_next - now + 999) / 1000;
	caller = te_xact_begin();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "taskevents: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	running = OidIsValid(te_outbox_relid("backfill", true)) && bf_running(&job);	/* 1.1's objects: none */
	if (running)
		bf_run(&job);
	else
		bf_next = TimestampTzPlusMilliseconds(now, BF_LOOK_MS);
	SPI_finish();
	PopActiveSnapshot();
	te_xact_commit(caller);
	return running ? 0 : -1;
}
