/*-------------------------------------------------------------------------
 * capture.c
 *		The capture triggers: each change of an attached task table becomes
 *		one queue row in the writing transaction.
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
 *
 * Nothing a row holds makes the writer fail: a null task id, or changes too
 * big to hold, are recorded as such, and the worker dead-letters the events
 * concerned with the reason (cloudevent.c, te_event_unsendable()).
 *
 * A cross-partition UPDATE reaches the triggers as a DELETE from one
 * partition and, right after it, an INSERT into another.  The DELETE half is
 * recognisable (its old tuple is marked as moved to another partition): it
 * is held back, and the INSERT half that follows becomes one UPDATE of the
 * task.  A moved row that arrives nowhere attached is a deletion.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/pg_prng.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
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
PG_FUNCTION_INFO_V1(taskevents_wake_at_commit);

/* Where the task shape lives in one table's row type. */
typedef struct CapMap
{
	AttrNumber	id;
	AttrNumber	user_id;
	AttrNumber	title;
	AttrNumber	completed;
	AttrNumber	due_date;		/* 0: the table has no due date */
	bool	   *ignored;		/* by attnum - 1: bookkeeping columns */
} CapMap;

/* One version of a row, with what is needed to read it. */
typedef struct CapRow
{
	HeapTuple	tuple;
	TupleDesc	desc;
	CapMap		map;
	const char *relname;
} CapRow;

/* Set by a capture, read at commit: wake the worker of this database. */
static bool cap_wake_pending = false;

/* The per-transaction correlation id when taskevents.trace_id is empty. */
static LocalTransactionId cap_trace_lxid = InvalidLocalTransactionId;
static char cap_trace_id[37];

/*
 * The old version of a row a cross-partition UPDATE moved out of an attached
 * partition, until its INSERT half arrives (in TopTransactionContext).
 */
static struct
{
	bool		pending;
	CapRow		old;
	Oid			root;			/* the partitioned table it belongs to */
	char	   *task_id;
	SubTransactionId subxid;
} cap_moved;

/*
 * Find the mapped columns by name, with a clear error when one is missing or
 * has the wrong type (a column renamed or dropped since attach).
 */
static void
cap_resolve_map(Trigger *trigger, TupleDesc desc, const char *relname, CapMap *map)
{
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
							trigger->tgargs[r], role[r], relname),
					 errhint("Attach the table again with taskevents.attach() and the right column names.")));
	}
	if (TupleDescAttr(desc, found[3] - 1)->atttypid != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("taskevents: column \"%s\" (the task's completed) of table \"%s\" is not boolean",
						trigger->tgargs[3], relname)));
	if (found[4] != 0)
	{
		Oid			t = TupleDescAttr(desc, found[4] - 1)->atttypid;

		if (t != TIMESTAMPTZOID && t != TIMESTAMPOID && t != DATEOID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("taskevents: column \"%s\" (the task's due_date) of table \"%s\" is not a timestamptz, timestamp or date",
							trigger->tgargs[4], relname)));
	}

	map->id = found[0];
	map->user_id = found[1];
	map->title = found[2];
	map->completed = found[3];
	map->due_date = found[4];
}

/* A version of a row of the trigger's table. */
static CapRow
cap_row(TriggerData *td, HeapTuple tuple)
{
	CapRow		row;

	row.tuple = tuple;
	row.desc = RelationGetDescr(td->tg_relation);
	row.relname = RelationGetRelationName(td->tg_relation);
	cap_resolve_map(td->tg_trigger, row.desc, row.relname, &row.map);
	return row;
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

/*
 * The due date as timestamptz; sets *isnull.  A date or timestamp beyond
 * timestamptz's range (or one the session's time zone pushes out of it)
 * becomes infinity rather than an error in the writer.
 */
static TimestampTz
cap_due_date(const CapRow *row, bool *isnull)
{
	Datum		d;
	int			overflow = 0;
	TimestampTz ts;

	if (row->map.due_date == 0)
	{
		*isnull = true;
		return 0;
	}
	d = heap_getattr(row->tuple, row->map.due_date, row->desc, isnull);
	if (*isnull)
		return 0;
	switch (TupleDescAttr(row->desc, row->map.due_date - 1)->atttypid)
	{
		case TIMESTAMPOID:
			ts = timestamp2timestamptz_opt_overflow(DatumGetTimestamp(d), &overflow);
			break;
		case DATEOID:
			ts = date2timestamptz_opt_overflow(DatumGetDateADT(d), &overflow);
			break;
		default:
			return DatumGetTimestampTz(d);
	}
	if (overflow > 0)
		TIMESTAMP_NOEND(ts);
	else if (overflow < 0)
		TIMESTAMP_NOBEGIN(ts);
	return ts;
}

/* Is the task done in this version of the row?  (null counts as not done) */
static bool
cap_done(const CapRow *row)
{
	bool		isnull;
	Datum		d = heap_getattr(row->tuple, row->map.completed, row->desc, &isnull);

	return !isnull && DatumGetBool(d);
}

/* A mapped column's text, or NULL; *is_number says if its type renders as a number. */
static char *
cap_text(const CapRow *row, AttrNumber attnum, bool *is_number)
{
	bool		isnull;
	Datum		d = heap_getattr(row->tuple, attnum, row->desc, &isnull);
	Oid			t = TupleDescAttr(row->desc, attnum - 1)->atttypid;

	if (is_number)
		*is_number = te_type_is_number(t);
	return isnull ? NULL : te_datum_text(d, t);
}

/* The size of a column's value, without detoasting it. */
static Size
cap_value_size(const CapRow *row, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(row->desc, attnum - 1);
	bool		isnull;
	Datum		d = heap_getattr(row->tuple, attnum, row->desc, &isnull);

	if (isnull)
		return 0;
	if (att->attlen == -1)
		return toast_raw_datum_size(d);
	return att->attlen > 0 ? att->attlen : strlen(DatumGetCString(d));
}

/*
 * The most a change's "changes" may hold (old and new values together): the
 * JSON of a bigger one could pass PostgreSQL's 1 GB limit and fail the
 * writer.  Over it, the change keeps no "changes" and its task.updated is a
 * dead letter saying why.
 */
#define CAP_CHANGES_MAX ((Size) 64 * 1024 * 1024)

/* Fill the task's fields of a change from one version of the row. */
static void
cap_describe(TeChange *c, const CapRow *row)
{
	bool		num;

	c->task_id = cap_text(row, row->map.id, &num);
	if (c->task_id == NULL)
	{
		c->task_id = "";
		c->events |= TE_F_NO_TASK_ID;
	}
	if (num)
		c->events |= TE_F_TASK_ID_NUMBER;
	c->user_id = cap_text(row, row->map.user_id, &num);
	if (num)
		c->events |= TE_F_USER_ID_NUMBER;
	c->title = cap_text(row, row->map.title, NULL);
	(void) heap_getattr(row->tuple, row->map.completed, row->desc, &c->completed_null);
	c->completed = cap_done(row);
	c->due_date = cap_due_date(row, &c->due_date_null);

	cap_random_uuid(&c->event_id);
	c->changed_at = GetCurrentTimestamp();
	c->trace_id = cap_correlation_id();
	c->traceparent = (te_traceparent != NULL && te_traceparent[0] != '\0') ? te_traceparent : NULL;
}

/* The attribute of the same name in another row type, or 0. */
static AttrNumber
cap_same_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return 0;
}

/*
 * The "changes" object of an UPDATE: every task field whose value differs,
 * as {"column": {"old": ..., "new": ...}}.  Columns are matched by name (the
 * two versions may come from different partitions).  Returns NULL when no
 * task field differs; sets *too_big (and builds nothing) when the values
 * are over CAP_CHANGES_MAX.
 */
static char *
cap_changes(const CapRow *old, const CapRow *new, bool *too_big)
{
	TupleDesc	desc = new->desc;
	AttrNumber *oldatt = palloc(sizeof(AttrNumber) * desc->natts);
	AttrNumber *newatt = palloc(sizeof(AttrNumber) * desc->natts);
	int			n = 0;
	Size		size = 0;
	StringInfoData buf;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		AttrNumber	oa;
		bool		oldnull,
					newnull;
		Datum		oldval,
					newval;

		if (att->attisdropped || new->map.ignored[i] || att->attnum == new->map.completed)
			continue;
		oa = old->desc == new->desc ? att->attnum : cap_same_column(old->desc, NameStr(att->attname));
		oldval = oa == 0 ? (Datum) 0 : heap_getattr(old->tuple, oa, old->desc, &oldnull);
		newval = heap_getattr(new->tuple, att->attnum, desc, &newnull);
		if (oa == 0)
			oldnull = true;
		if (oldnull && newnull)
			continue;
		if (!oldnull && !newnull &&
			datum_image_eq(oldval, newval, att->attbyval, att->attlen))
			continue;
		oldatt[n] = oa;
		newatt[n++] = att->attnum;
		size += (oa ? cap_value_size(old, oa) : 0) + cap_value_size(new, att->attnum);
	}
	*too_big = size > CAP_CHANGES_MAX;
	if (n == 0 || *too_big)
		return NULL;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int k = 0; k < n; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, newatt[k] - 1);
		Oid			oldtype = att->atttypid;
		bool		oldnull = true,
					newnull;
		Datum		v = (Datum) 0;
		int			start = buf.len,
					old_at,
					old_len,
					new_at;

		if (start > 1)
			appendStringInfoChar(&buf, ',');
		te_append_json_string(&buf, NameStr(att->attname));
		appendStringInfoString(&buf, ":{\"old\":");
		if (oldatt[k] != 0)
		{
			v = heap_getattr(old->tuple, oldatt[k], old->desc, &oldnull);
			oldtype = TupleDescAttr(old->desc, oldatt[k] - 1)->atttypid;
		}
		old_at = buf.len;
		te_append_json_value(&buf, v, oldtype, oldnull);
		old_len = buf.len - old_at;
		appendStringInfoString(&buf, ",\"new\":");
		new_at = buf.len;
		v = heap_getattr(new->tuple, newatt[k], desc, &newnull);
		te_append_json_value(&buf, v, att->atttypid, newnull);

		/*
		 * Two values of other bits that read the same (NaNs with and without
		 * the sign bit) are no change; SQL NULL and a json null are.
		 */
		if (!oldnull && !newnull && buf.len - new_at == old_len &&
			memcmp(buf.data + old_at, buf.data + new_at, old_len) == 0)
		{
			buf.len = start;
			buf.data[start] = '\0';
			continue;
		}
		appendStringInfoChar(&buf, '}');
	}
	if (buf.len == 1)
		return NULL;
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Queue the change and wake the worker at commit. */
static void
cap_record(TeChange *c)
{
	te_outbox_insert(c);
	cap_wake_pending = true;
}

/* Record a deletion of the row (DELETE, each row a TRUNCATE removes, a row moved away). */
static void
cap_record_delete(const CapRow *row)
{
	TeChange	c = {0};

	c.events = TE_EV_DELETED;
	cap_describe(&c, row);
	cap_record(&c);
}

/* Record an UPDATE from one version of the task to the next, if a consumer would see it. */
static void
cap_record_update(const CapRow *old, const CapRow *new)
{
	TeChange	c = {0};
	bool		old_due_null;
	TimestampTz old_due = cap_due_date(old, &old_due_null);
	bool		was_done = cap_done(old);
	bool		is_done = cap_done(new);
	bool		too_big;

	c.changes = cap_changes(old, new, &too_big);
	if (c.changes != NULL || too_big)
		c.events |= TE_EV_UPDATED;
	if (too_big)
		c.events |= TE_F_TOO_BIG;
	if (!was_done && is_done)
		c.events |= TE_EV_COMPLETED;
	else if (was_done && !is_done)
		c.events |= TE_EV_UNCOMPLETED;
	if ((c.events & (TE_EV_UPDATED | TE_EV_COMPLETED | TE_EV_UNCOMPLETED)) == 0)
		return;					/* nothing a consumer would see */

	cap_describe(&c, new);
	if (old_due_null && !c.due_date_null)
		c.events |= TE_EV_REM_SCHEDULED;
	else if (!old_due_null && c.due_date_null)
		c.events |= TE_EV_REM_CANCELLED;
	else if (!old_due_null && old_due != c.due_date)
		c.events |= TE_EV_REM_RESCHEDULED;
	cap_record(&c);
}

/* Forget a held-back moved row. */
static void
cap_moved_forget(void)
{
	cap_moved.pending = false;
}

/* A held-back moved row whose INSERT half never came is a deletion. */
static void
cap_moved_flush(void)
{
	if (!cap_moved.pending)
		return;
	cap_moved_forget();
	cap_record_delete(&cap_moved.old);
}

/* The partitioned table a partition belongs to, at the top. */
static Oid
cap_partition_root(Relation rel)
{
	List	   *ancestors;

	if (!rel->rd_rel->relispartition)
		return InvalidOid;
	ancestors = get_partition_ancestors(RelationGetRelid(rel));
	return ancestors ? llast_oid(ancestors) : InvalidOid;
}

/* Hold back the DELETE half of a cross-partition UPDATE (see the file header). */
static void
cap_moved_hold(TriggerData *td)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	CapRow		row = cap_row(td, heap_copytuple(td->tg_trigtuple));

	row.desc = CreateTupleDescCopy(row.desc);
	row.relname = pstrdup(row.relname);
	cap_moved.old = row;
	cap_moved.task_id = cap_text(&row, row.map.id, NULL);
	cap_moved.root = cap_partition_root(td->tg_relation);
	cap_moved.subxid = GetCurrentSubTransactionId();
	cap_moved.pending = true;
	MemoryContextSwitchTo(old);
}

/* Is this INSERT the second half of the held-back cross-partition UPDATE? */
static bool
cap_moved_arrives(TriggerData *td, const CapRow *new)
{
	char	   *id;

	if (!cap_moved.pending || cap_moved.root != cap_partition_root(td->tg_relation))
		return false;
	id = cap_text(new, new->map.id, NULL);
	return id != NULL && cap_moved.task_id != NULL && strcmp(id, cap_moved.task_id) == 0;
}

/* The row trigger. */
Datum
taskevents_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CapRow		row;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.capture() must be fired AFTER ... FOR EACH ROW"),
				 errhint("Attach the table with taskevents.attach().")));

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		row = cap_row(td, td->tg_trigtuple);
		if (cap_moved_arrives(td, &row))
		{
			cap_moved_forget();
			cap_record_update(&cap_moved.old, &row);
		}
		else
		{
			TeChange	c = {0};

			cap_moved_flush();
			c.events = TE_EV_CREATED;
			cap_describe(&c, &row);
			if (!c.due_date_null)
				c.events |= TE_EV_REM_SCHEDULED;
			cap_record(&c);
		}
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		cap_moved_flush();
		if (HeapTupleHeaderIndicatesMovedPartitions(td->tg_trigtuple->t_data))
			cap_moved_hold(td);
		else
		{
			row = cap_row(td, td->tg_trigtuple);
			cap_record_delete(&row);
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		CapRow		new = cap_row(td, td->tg_newtuple);

		cap_moved_flush();
		row = new;
		row.tuple = td->tg_trigtuple;
		cap_record_update(&row, &new);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.capture() fired for an unexpected event")));
	return PointerGetDatum(NULL);
}

/*
 * The TRUNCATE trigger: a TRUNCATE removes rows without row triggers, so
 * record each row it is about to remove as a deletion.  TRUNCATE holds an
 * ACCESS EXCLUSIVE lock by now, so a fresh snapshot sees exactly the rows it
 * removes: the statement's own snapshot was taken before the lock was
 * granted (and a REPEATABLE READ one at the transaction's start), and would
 * miss rows committed meanwhile.
 */
Datum
taskevents_capture_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CapRow		row;
	Snapshot	snapshot;
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
	cap_moved_flush();
	row = cap_row(td, NULL);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "taskevents truncate row",
								   ALLOCSET_DEFAULT_SIZES);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(td->tg_relation, NULL);
	scan = table_beginscan(td->tg_relation, snapshot, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		should_free;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(rowcxt);
		row.tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
		cap_record_delete(&row);
		if (should_free)
			heap_freetuple(row.tuple);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	return PointerGetDatum(NULL);
}

/*
 * Before commit, a held-back moved row is a deletion; at commit, wake the
 * worker that delivers this database's events.
 */
static void
cap_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			cap_moved_flush();
			break;
		case XACT_EVENT_COMMIT:
			if (cap_wake_pending)
				te_shared_wake_worker(MyDatabaseId);
			cap_wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			cap_wake_pending = false;
			cap_moved_forget();
			break;
		case XACT_EVENT_PRE_PREPARE:
			cap_moved_flush();
			break;
		default:
			break;
	}
}

/* taskevents._wake_at_commit(): wake the worker when this transaction commits. */
Datum
taskevents_wake_at_commit(PG_FUNCTION_ARGS)
{
	cap_wake_pending = true;
	PG_RETURN_VOID();
}

/* A held-back moved row of a rolled-back subtransaction never happened. */
static void
cap_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && cap_moved.pending && cap_moved.subxid == mySubid)
		cap_moved_forget();
}

/*
 * Queue the task as it is, for a backfill (backfill.c): task.snapshot and
 * sync.task, and reminder.scheduled when it has a due date.  trigger is the
 * table's capture trigger (its column mapping, found by name in desc).
 */
void
te_capture_snapshot(const char *relname, TupleDesc desc, Trigger *trigger, HeapTuple tuple,
					const char *trace_id)
{
	TeChange	c = {0};
	CapRow		row;

	row.tuple = tuple;
	row.desc = desc;
	row.relname = relname;
	cap_resolve_map(trigger, row.desc, row.relname, &row.map);
	c.events = TE_EV_SNAPSHOT;
	cap_describe(&c, &row);
	if (!c.due_date_null)
		c.events |= TE_EV_REM_SCHEDULED;
	c.trace_id = pstrdup(trace_id);
	c.traceparent = NULL;
	cap_record(&c);
}

/* Called from _PG_init in every process that loads the library. */
void
te_capture_init(void)
{
	RegisterXactCallback(cap_xact_callback, NULL);
	RegisterSubXactCallback(cap_subxact_callback, NULL);
}
