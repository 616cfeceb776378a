/*-------------------------------------------------------------------------
 * outbox.c
 *		Writing and reading rows of taskevents.outbox.
 *
 * The capture trigger inserts straight into the heap and its indexes, as
 * CatalogTupleInsert does, instead of going through SPI and the executor:
 * this is the writer's hot path.  The outbox belongs to the extension, so no
 * permission check applies (application roles cannot touch it directly), and
 * it has no triggers, rules or constraints beyond NOT NULL, which the caller
 * guarantees.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "outbox.h"

/* Look up a relation of the taskevents schema, or fail clearly. */
static Oid
ob_relid(const char *name)
{
	Oid			nsp = get_namespace_oid("taskevents", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("taskevents: relation taskevents.%s does not exist", name),
				 errhint("Reinstall the extension: DROP EXTENSION taskevents; CREATE EXTENSION taskevents;")));
	return relid;
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
					 errmsg("taskevents: index \"%s\" on taskevents.outbox has expressions or a predicate",
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

/* Append one change to the outbox in the current transaction; sets c->seq. */
void
te_outbox_insert(TeChange *c)
{
	Relation	rel = table_open(ob_relid("outbox"), RowExclusiveLock);
	Datum		values[Natts_outbox];
	bool		nulls[Natts_outbox];
	HeapTuple	tuple;

	if (RelationGetDescr(rel)->natts != Natts_outbox)
		elog(ERROR, "taskevents: taskevents.outbox does not have the expected columns");

	c->seq = nextval_internal(ob_relid("outbox_seq"), false);

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
	table_close(rel, RowExclusiveLock);
}

/* A text column as a C string, or NULL. */
static char *
ob_text(HeapTuple tuple, TupleDesc desc, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Read an outbox row (or a row starting with the outbox's columns). */
void
te_outbox_read(HeapTuple tuple, TupleDesc desc, TeChange *c)
{
	bool		isnull;
	Datum		d;

	c->seq = DatumGetInt64(heap_getattr(tuple, Anum_outbox_seq, desc, &isnull));
	c->event_id = *DatumGetUUIDP(heap_getattr(tuple, Anum_outbox_event_id, desc, &isnull));
	c->events = DatumGetInt32(heap_getattr(tuple, Anum_outbox_events, desc, &isnull));
	c->changed_at = DatumGetTimestampTz(heap_getattr(tuple, Anum_outbox_changed_at, desc, &isnull));
	c->task_id = ob_text(tuple, desc, Anum_outbox_task_id);
	c->user_id = ob_text(tuple, desc, Anum_outbox_user_id);
	c->title = ob_text(tuple, desc, Anum_outbox_title);
	d = heap_getattr(tuple, Anum_outbox_completed, desc, &c->completed_null);
	c->completed = c->completed_null ? false : DatumGetBool(d);
	d = heap_getattr(tuple, Anum_outbox_due_date, desc, &c->due_date_null);
	c->due_date = c->due_date_null ? 0 : DatumGetTimestampTz(d);
	c->changes = ob_text(tuple, desc, Anum_outbox_changes);
	c->trace_id = ob_text(tuple, desc, Anum_outbox_trace_id);
	c->traceparent = ob_text(tuple, desc, Anum_outbox_traceparent);
}
