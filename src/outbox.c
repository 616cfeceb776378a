/*-------------------------------------------------------------------------
 * outbox.c
 *		Writing and reading rows of the queue tables (outbox.h).
 *
 * The capture trigger inserts straight into the heap and its indexes, as
 * CatalogTupleInsert does, instead of going through SPI and the executor:
 * this is the writer's hot path.  The tables belong to the extension, so no
 * permission check applies (application roles cannot touch them directly),
 * and they have no triggers, rules or constraints beyond NOT NULL, which the
 * caller guarantees.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "replication/origin.h"
#include "replication/worker_internal.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "inflight.h"
#include "outbox.h"

/* A relation of the taskevents schema, or InvalidOid (or an ERROR) when missing. */
Oid
te_outbox_relid(const char *name, bool missing_ok)
{
	Oid			nsp = get_namespace_oid("taskevents", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("taskevents: relation taskevents.%s does not exist", name),
				 errhint("Reinstall the extension: DROP EXTENSION taskevents; CREATE EXTENSION taskevents;")));
	return relid;
}

/*
 * Open a table of the taskevents schema by name for inserting, or return
 * NULL when there is no such plain table.  The name is looked up without
 * the writer's privileges (it has none on the schema); looked up again once
 * the lock is held, it sees what a concurrent ALTER EXTENSION UPDATE left.
 */
static Relation
ob_open(const char *name)
{
	for (;;)
	{
		Oid			relid = te_outbox_relid(name, true);

		if (!OidIsValid(relid))
			return NULL;
		LockRelationOid(relid, RowExclusiveLock);
		if (te_outbox_relid(name, true) == relid)
		{
			if (get_rel_relkind(relid) == RELKIND_RELATION)
				return table_open(relid, NoLock);
			UnlockRelationOid(relid, RowExclusiveLock);
			return NULL;
		}
		UnlockRelationOid(relid, RowExclusiveLock);
	}
}

/* Insert the tuple's entries into every index of the outbox. */
static void
ob_index_insert(Relation rel, HeapTuple tuple)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(idx);
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("taskevents: index \"%s\" on a queue table has expressions or a predicate",
							RelationGetRelationName(idx)),
					 errhint("Only plain column indexes are maintained by the capture trigger; drop this one.")));
		for (int i = 0; i < info->ii_NumIndexAttrs; i++)
			values[i] = heap_getattr(tuple, info->ii_IndexAttrNumbers[i],
									 RelationGetDescr(rel), &isnull[i]);
		index_insert(idx, values, isnull, &tuple->t_self, rel,
					 idx->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, info);
		index_close(idx, RowExclusiveLock);
	}
	list_free(indexes);
}

/* Take the next number, noted as in flight until the transaction ends. */
static int64
ob_nextval(Oid seqid)
{
	volatile int64 seq;

	te_inflight_taking();
	PG_TRY();
	{
		seq = nextval_internal(seqid, false);
	}
	PG_CATCH();
	{
		te_inflight_took(0);	/* none given out; a savepoint may carry on */
		PG_RE_THROW();
	}
	PG_END_TRY();
	te_inflight_took(seq);
	if (seq < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("taskevents: taskevents.outbox_seq gave " INT64_FORMAT ", below 1", seq),
				 errhint("Run ALTER SEQUENCE taskevents.outbox_seq MINVALUE 1 RESTART WITH the highest number in the queue plus one.")));
	return seq;
}

/*
 * The table a new change goes to, locked, and its sequence number: the queue
 * table of the number, or with 1.0's objects still installed (the library
 * was upgraded, ALTER EXTENSION taskevents UPDATE not yet run) 1.0's outbox.
 */
static Relation
ob_target(int64 *seq)
{
	static const char *const names[TE_QUEUE_TABLES] = {"queue_0", "queue_1", "queue_2"};
	Oid			seqid = te_outbox_relid("outbox_seq", false);

	/*
	 * Have a transaction id before taking a number: a prepared transaction
	 * is known by it (inflight.c).  A row change has one already; a
	 * TRUNCATE's trigger runs before TRUNCATE takes one.
	 */
	(void) GetTopTransactionId();

	/* A second look sees what a concurrent ALTER EXTENSION UPDATE left. */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		Relation	rel;

		if (OidIsValid(te_outbox_relid(names[0], true)))
		{
			*seq = ob_nextval(seqid);
			rel = ob_open(names[TE_QUEUE_TABLE_OF(*seq)]);
		}
		else if ((rel = ob_open("outbox")) != NULL)
			*seq = ob_nextval(seqid);
		if (rel != NULL)
			return rel;
		AcceptInvalidationMessages();
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("taskevents: the queue tables of the extension are missing"),
			 errhint("Reinstall the extension: DROP EXTENSION taskevents; CREATE EXTENSION taskevents;")));
	return NULL;				/* keep compiler quiet */
}

/* Append one change to the queue in the current transaction; sets c->seq. */
void
te_outbox_insert(TeChange *c)
{
	Relation	rel = ob_target(&c->seq);
	Datum		values[Natts_outbox];
	bool		nulls[Natts_outbox];
	HeapTuple	tuple;

	if (RelationGetDescr(rel)->natts != Natts_outbox)
		elog(ERROR, "taskevents: taskevents.outbox does not have the expected columns");

	memset(nulls, false, sizeof(nulls));
	values[Anum_outbox_seq - 1] = Int64GetDatum(c->seq);
	values[Anum_outbox_event_id - 1] = UUIDPGetDatum(&c->event_id);
	values[Anum_outbox_events - 1] = Int32GetDatum(c->events);
	values[Anum_outbox_changed_at - 1] = TimestampTzGetDatum(c->changed_at);
	values[Anum_outbox_task_id - 1] = CStringGetTextDatum(c->task_id);
	if (c->user_id != NULL)
		values[Anum_outbox_user_id - 1] = CStringGetTextDatum(c->user_id);
	else
		nulls[Anum_outbox_user_id - 1] = true;
	if (c->title != NULL)
		values[Anum_outbox_title - 1] = CStringGetTextDatum(c->title);
	else
		nulls[Anum_outbox_title - 1] = true;
	values[Anum_outbox_completed - 1] = BoolGetDatum(c->completed);
	nulls[Anum_outbox_completed - 1] = c->completed_null;
	values[Anum_outbox_due_date - 1] = TimestampTzGetDatum(c->due_date);
	nulls[Anum_outbox_due_date - 1] = c->due_date_null;
	if (c->changes != NULL)
		values[Anum_outbox_changes - 1] = CStringGetTextDatum(c->changes);
	else
		nulls[Anum_outbox_changes - 1] = true;
	values[Anum_outbox_trace_id - 1] = CStringGetTextDatum(c->trace_id);
	if (c->traceparent != NULL)
		values[Anum_outbox_traceparent - 1] = CStringGetTextDatum(c->traceparent);
	else
		nulls[Anum_outbox_traceparent - 1] = true;

	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	simple_heap_insert(rel, tuple);
	ob_index_insert(rel, tuple);
	heap_freetuple(tuple);
	table_close(rel, NoLock);	/* locked until the writer's transaction ends */
}

/* A text column as a C string, or NULL. */
static char *
ob_text(Datum *values, bool *nulls, int attnum)
{
	return nulls[attnum - 1] ? NULL : TextDatumGetCString(values[attnum - 1]);
}

/* Read a queue row (or a row starting with the queue's columns). */
void
te_outbox_read(HeapTuple tuple, TupleDesc desc, TeChange *c)
{
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	heap_deform_tuple(tuple, desc, values, nulls);
	c->seq = DatumGetInt64(values[Anum_outbox_seq - 1]);
	c->event_id = *DatumGetUUIDP(values[Anum_outbox_event_id - 1]);
	c->events = DatumGetInt32(values[Anum_outbox_events - 1]);
	c->changed_at = DatumGetTimestampTz(values[Anum_outbox_changed_at - 1]);
	c->task_id = ob_text(values, nulls, Anum_outbox_task_id);
	c->user_id = ob_text(values, nulls, Anum_outbox_user_id);
	c->title = ob_text(values, nulls, Anum_outbox_title);
	c->completed_null = nulls[Anum_outbox_completed - 1];
	c->completed = c->completed_null ? false : DatumGetBool(values[Anum_outbox_completed - 1]);
	c->due_date_null = nulls[Anum_outbox_due_date - 1];
	c->due_date = c->due_date_null ? 0 : DatumGetTimestampTz(values[Anum_outbox_due_date - 1]);
	c->changes = ob_text(values, nulls, Anum_outbox_changes);
	c->trace_id = ob_text(values, nulls, Anum_outbox_trace_id);
	c->traceparent = ob_text(values, nulls, Anum_outbox_traceparent);
	pfree(values);
	pfree(nulls);
}

PG_FUNCTION_INFO_V1(taskevents_replicated);

/*
 * The trigger on the queue, cursor, retry and dead-letter tables (enabled
 * for replica sessions, and acting only on replication): a row change that
 * logical replication brings from another database is dropped (this
 * database's queue is its own: another's would be delivered twice and
 * collide with its numbers), and a replicated TRUNCATE of a table that
 * holds rows of this database is refused.  Anything else passes.
 */
Datum
taskevents_replicated(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		replicated = MyLogicalRepWorker != NULL || replorigin_session_origin != InvalidRepOriginId;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "taskevents: taskevents._replicated() is a trigger");
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		Relation	rel = td->tg_relation;
		TableScanDesc scan;
		bool		empty;

		if (!replicated)
			return PointerGetDatum(NULL);
		scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
		empty = heap_getnext(scan, ForwardScanDirection) == NULL;
		table_endscan(scan);
		if (!empty)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("taskevents: a replicated TRUNCATE of taskevents.%s is refused: it holds this database's changes",
							RelationGetRelationName(rel)),
					 errhint("Leave the schema taskevents out of the publication (publish the application's schemas instead of FOR ALL TABLES).")));
		return PointerGetDatum(NULL);
	}
	if (replicated)
		return PointerGetDatum(NULL);	/* dropped */
	return PointerGetDatum(TRIGGER_FIRED_BY_DELETE(td->tg_event) ? td->tg_trigtuple :
						   TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
}
