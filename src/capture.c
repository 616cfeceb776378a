/*-------------------------------------------------------------------------
 * capture.c
 *		The capture triggers: each change of an attached task table becomes
 *		one outbox row in the writing transaction.
 *
 * taskevents.capture() is an AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW
 * trigger; taskevents.capture_truncate() a BEFORE TRUNCATE statement trigger
 * that records every row about to go as a deletion.  The trigger arguments
 * map the task shape onto the table's columns (see taskevents.attach()):
 *		id, user_id, title, completed, due_date ('' if none), ignored...
 *
 * Task fields are every column except "completed" (which has events of its
 * own) and the ignored bookkeeping columns; an UPDATE becomes a change only
 * when a task field or "completed" differs.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relscan.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/pg_prng.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "capture.h"
#include "cloudevent.h"
#include "compat.h"
#include "outbox.h"
#include "settings.h"
#include "shared.h"

PG_FUNCTION_INFO_V1(taskevents_capture);
PG_FUNCTION_INFO_V1(taskevents_capture_truncate);

/* Where the task shape lives in the triggering table. */
typedef struct CapMap
{
	AttrNumber	id;
	AttrNumber	user_id;
	AttrNumber	title;
	AttrNumber	completed;
	AttrNumber	due_date;		/* 0: the table has no due date */
	bool	   *ignored;		/* by attnum - 1: bookkeeping columns */
} CapMap;

/* Set by a capture, read at commit: wake the worker of this database. */
static bool cap_wake_pending = false;

/* The per-transaction correlation id when taskevents.trace_id is empty. */
static LocalTransactionId cap_trace_lxid = InvalidLocalTransactionId;
static char cap_trace_id[37];

/*
 * Find the mapped columns by name, with a clear error when one is missing or
 * has the wrong type (a column renamed or dropped since attach).
 */
static void
cap_resolve_map(Trigger *trigger, Relation rel, CapMap *map)
{
	TupleDesc	desc = RelationGetDescr(rel);
	static const char *const role[] = {"id", "user_id", "title", "completed", "due_date"};
	AttrNumber	found[5] = {0, 0, 0, 0, 0};

	if (trigger->tgnargs < 5)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents: trigger \"%s\" has the wrong arguments", trigger->tgname),
				 errhint("Attach the table with taskevents.attach().")));

	map->ignored = palloc0(sizeof(bool) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		for (int r = 0; r < 5; r++)
			if (strcmp(name, trigger->tgargs[r]) == 0)
				found[r] = att->attnum;
		for (int a = 5; a < trigger->tgnargs; a++)
			if (strcmp(name, trigger->tgargs[a]) == 0)
				map->ignored[i] = true;
	}

	for (int r = 0; r < 5; r++)
	{
		if (found[r] == 0 && (r < 4 || trigger->tgargs[r][0] != '\0'))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("taskevents: column \"%s\" (the task's %s) of table \"%s\" does not exist",
							trigger->tgargs[r], role[r], RelationGetRelationName(rel)),
					 errhint("Attach the table again with taskevents.attach() and the right column names.")));
	}
	if (TupleDescAttr(desc, found[3] - 1)->atttypid != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("taskevents: column \"%s\" (the task's completed) of table \"%s\" is not boolean",
						trigger->tgargs[3], RelationGetRelationName(rel))));
	if (found[4] != 0)
	{
		Oid			t = TupleDescAttr(desc, found[4] - 1)->atttypid;

		if (t != TIMESTAMPTZOID && t != TIMESTAMPOID && t != DATEOID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("taskevents: column \"%s\" (the task's due_date) of table \"%s\" is not a timestamptz, timestamp or date",
							trigger->tgargs[4], RelationGetRelationName(rel))));
	}

	map->id = found[0];
	map->user_id = found[1];
	map->title = found[2];
	map->completed = found[3];
	map->due_date = found[4];
}

/*
 * A random (version 4) UUID from the backend's PRNG, which PostgreSQL seeds
 * from a strong source at backend start: ids must be unique, not secret, and
 * this costs no system call (libuuid's random UUIDs cost a getrandom() and a
 * srandom() each: a third of the trigger's time).
 */
static void
cap_random_uuid(pg_uuid_t *u)
{
	uint64		hi = pg_prng_uint64(&pg_global_prng_state);
	uint64		lo = pg_prng_uint64(&pg_global_prng_state);

	memcpy(u->data, &hi, sizeof(hi));
	memcpy(u->data + sizeof(hi), &lo, sizeof(lo));
	u->data[6] = (u->data[6] & 0x0F) | 0x40;	/* version 4 */
	u->data[8] = (u->data[8] & 0x3F) | 0x80;	/* RFC 4122 variant */
}

/* The correlation id: taskevents.trace_id, else one fresh UUID per transaction. */
static char *
cap_correlation_id(void)
{
	if (te_trace_id != NULL && te_trace_id[0] != '\0')
		return te_trace_id;
	if (cap_trace_lxid != TE_CURRENT_LXID())
	{
		pg_uuid_t	u;
		StringInfoData s = {cap_trace_id, 0, sizeof(cap_trace_id), 0};

		cap_random_uuid(&u);
		te_append_uuid(&s, &u);
		cap_trace_lxid = TE_CURRENT_LXID();
	}
	return cap_trace_id;
}

/* The due date as timestamptz; sets *isnull. */
static TimestampTz
cap_due_date(HeapTuple tuple, TupleDesc desc, AttrNumber attnum, bool *isnull)
{
	Datum		d;
	Oid			t;

	if (attnum == 0)
	{
		*isnull = true;
		return 0;
	}
	d = heap_getattr(tuple, attnum, desc, isnull);
	if (*isnull)
		return 0;
	t = TupleDescAttr(desc, attnum - 1)->atttypid;
	if (t == TIMESTAMPOID)
		d = DirectFunctionCall1(timestamp_timestamptz, d);
	else if (t == DATEOID)
		d = DirectFunctionCall1(date_timestamptz, d);
	return DatumGetTimestampTz(d);
}

/* Is the task done in this version of the row?  (null counts as not done) */
static bool
cap_done(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	return !isnull && DatumGetBool(d);
}

/* A mapped column's text, or NULL; *is_number says if it renders as a number. */
static char *
cap_text(HeapTuple tuple, TupleDesc desc, AttrNumber attnum, bool *is_number)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);
	Oid			t = TupleDescAttr(desc, attnum - 1)->atttypid;

	if (is_number)
		*is_number = te_type_is_number(t);
	return isnull ? NULL : te_datum_text(d, t);
}

/* Fill the task's fields of a change from one version of the row. */
static void
cap_describe(TeChange *c, const CapMap *map, Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		num;

	c->task_id = cap_text(tuple, desc, map->id, &num);
	if (c->task_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("taskevents: the task id (column \"%s\") of a row of \"%s\" is null",
						NameStr(TupleDescAttr(desc, map->id - 1)->attname),
						RelationGetRelationName(rel))));
	if (num)
		c->events |= TE_F_TASK_ID_NUMBER;
	c->user_id = cap_text(tuple, desc, map->user_id, &num);
	if (num)
		c->events |= TE_F_USER_ID_NUMBER;
	c->title = cap_text(tuple, desc, map->title, NULL);
	(void) heap_getattr(tuple, map->completed, desc, &c->completed_null);
	c->completed = cap_done(tuple, desc, map->completed);
	c->due_date = cap_due_date(tuple, desc, map->due_date, &c->due_date_null);

	cap_random_uuid(&c->event_id);
	c->changed_at = GetCurrentTimestamp();
	c->trace_id = cap_correlation_id();
	c->traceparent = (te_traceparent != NULL && te_traceparent[0] != '\0') ? te_traceparent : NULL;
}

/*
 * The "changes" object of an UPDATE: every task field whose value differs,
 * as {"column": {"old": ..., "new": ...}}.  NULL when nothing differs.
 */
static char *
cap_changes(const CapMap *map, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData buf;
	bool		any = false;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		oldnull,
					newnull;
		Datum		oldval,
					newval;

		if (att->attisdropped || map->ignored[i] || att->attnum == map->completed)
			continue;
		oldval = heap_getattr(oldtup, att->attnum, desc, &oldnull);
		newval = heap_getattr(newtup, att->attnum, desc, &newnull);
		if (oldnull && newnull)
			continue;
		if (!oldnull && !newnull &&
			datum_image_eq(oldval, newval, att->attbyval, att->attlen))
			continue;

		if (any)
			appendStringInfoChar(&buf, ',');
		any = true;
		escape_json(&buf, NameStr(att->attname));
		appendStringInfoString(&buf, ":{\"old\":");
		te_append_json_value(&buf, oldval, att->atttypid, oldnull);
		appendStringInfoString(&buf, ",\"new\":");
		te_append_json_value(&buf, newval, att->atttypid, newnull);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, '}');
	if (!any)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/* Record a deletion of the row (DELETE, and each row a TRUNCATE removes). */
static void
cap_record_delete(const CapMap *map, Relation rel, HeapTuple oldtup)
{
	TeChange	c = {0};

	c.events = TE_EV_DELETED;
	cap_describe(&c, map, rel, oldtup);
	te_outbox_insert(&c);
	cap_wake_pending = true;
}

/* The row trigger. */
Datum
taskevents_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	CapMap		map;
	TeChange	c = {0};

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.capture() must be fired AFTER ... FOR EACH ROW"),
				 errhint("Attach the table with taskevents.attach().")));
	rel = td->tg_relation;
	cap_resolve_map(td->tg_trigger, rel, &map);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		c.events = TE_EV_CREATED;
		cap_describe(&c, &map, rel, td->tg_trigtuple);
		if (!c.due_date_null)
			c.events |= TE_EV_REM_SCHEDULED;
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		cap_record_delete(&map, rel, td->tg_trigtuple);
		return PointerGetDatum(NULL);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;
		TupleDesc	desc = RelationGetDescr(rel);
		bool		old_due_null;
		TimestampTz old_due = cap_due_date(oldtup, desc, map.due_date, &old_due_null);
		bool		was_done = cap_done(oldtup, desc, map.completed);
		bool		is_done = cap_done(newtup, desc, map.completed);

		c.changes = cap_changes(&map, rel, oldtup, newtup);
		if (c.changes != NULL)
			c.events |= TE_EV_UPDATED;
		if (!was_done && is_done)
			c.events |= TE_EV_COMPLETED;
		else if (was_done && !is_done)
			c.events |= TE_EV_UNCOMPLETED;
		if (c.events == 0)
			return PointerGetDatum(NULL);	/* nothing a consumer would see */

		cap_describe(&c, &map, rel, newtup);
		if (old_due_null && !c.due_date_null)
			c.events |= TE_EV_REM_SCHEDULED;
		else if (!old_due_null && c.due_date_null)
			c.events |= TE_EV_REM_CANCELLED;
		else if (!old_due_null && old_due != c.due_date)
			c.events |= TE_EV_REM_RESCHEDULED;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.capture() fired for an unexpected event")));

	te_outbox_insert(&c);
	cap_wake_pending = true;
	return PointerGetDatum(NULL);
}

/*
 * The TRUNCATE trigger: a TRUNCATE removes rows without row triggers, so
 * record each row it is about to remove as a deletion.  TRUNCATE holds an
 * ACCESS EXCLUSIVE lock, so the rows seen here are exactly the rows removed.
 */
Datum
taskevents_capture_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	CapMap		map;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext rowcxt,
				oldcxt;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.capture_truncate() must be fired BEFORE TRUNCATE"),
				 errhint("Attach the table with taskevents.attach().")));
	rel = td->tg_relation;
	cap_resolve_map(td->tg_trigger, rel, &map);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "taskevents truncate row",
								   ALLOCSET_DEFAULT_SIZES);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		should_free;
		HeapTuple	tuple;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(rowcxt);
		tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
		cap_record_delete(&map, rel, tuple);
		if (should_free)
			heap_freetuple(tuple);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	return PointerGetDatum(NULL);
}

/* At commit, wake the worker that delivers this database's events. */
static void
cap_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (cap_wake_pending)
				te_shared_wake_worker(MyDatabaseId);
			cap_wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			cap_wake_pending = false;
			break;
		default:
			break;
	}
}

/* Called from _PG_init in every process that loads the library. */
void
te_capture_init(void)
{
	RegisterXactCallback(cap_xact_callback, NULL);
}
