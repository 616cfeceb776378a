/*-------------------------------------------------------------------------
 * taskevents.c
 *		Module entry point and the SQL-callable functions of taskevents.
 *
 * Loaded into a session (by the capture trigger), the library defines its
 * settings and the commit hook that wakes the worker.  Preloaded through
 * shared_preload_libraries, it also sets up shared memory, the launcher and
 * the utility hook: that is what delivers.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/tuplestore.h"

#include "capture.h"
#include "cloudevent.h"
#include "inflight.h"
#include "launcher.h"
#include "outbox.h"
#include "settings.h"
#include "shared.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(taskevents_delivery_available);
PG_FUNCTION_INFO_V1(taskevents_workers);
PG_FUNCTION_INFO_V1(taskevents_start_delivery);
PG_FUNCTION_INFO_V1(taskevents_own_trigger);
PG_FUNCTION_INFO_V1(taskevents_cloudevents);
PG_FUNCTION_INFO_V1(taskevents_library_version);
PG_FUNCTION_INFO_V1(taskevents_requeue);

void		_PG_init(void);

/* Define settings and hooks; with preload, also shared memory and the launcher. */
void
_PG_init(void)
{
	te_settings_init();
	te_capture_init();
	te_inflight_init();
	if (process_shared_preload_libraries_in_progress)
	{
		te_shared_request();
		te_launcher_init();
	}
}

/* Is delivery running on this server (the library was preloaded)? */
Datum
taskevents_delivery_available(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(te_shared != NULL);
}

static const char *
te_state_name(TeWorkerState state)
{
	switch (state)
	{
		case TE_WORKER_STARTING:
			return "starting";
		case TE_WORKER_DELIVERING:
			return "delivering";
		case TE_WORKER_PAUSED:
			return "paused: sidecar unreachable";
		case TE_WORKER_DISABLED:
			return "disabled";
		case TE_WORKER_STOPPED:
			return "stopped";
		case TE_WORKER_STANDBY_WAIT:
			return "waiting for taskevents.standby_slots";
		case TE_WORKER_NEEDS_UPDATE:
			return "not delivering: run ALTER EXTENSION taskevents UPDATE";
		case TE_WORKER_HALTED:
			return "halted";
	}
	return "unknown";
}

/* The workers' slots, one row per database (empty without preload). */
Datum
taskevents_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (te_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(te_shared->lock, LW_SHARED);
	for (int i = 0; i < te_shared->nslots; i++)
	{
		TeDbSlot   *s = &te_shared->slots[i];
		Datum		v[10];
		bool		n[10] = {0};

		if (!OidIsValid(s->dboid))
			continue;
		v[0] = ObjectIdGetDatum(s->dboid);
		v[1] = Int32GetDatum(s->pid);
		n[1] = s->pid == 0;
		v[2] = CStringGetTextDatum(te_state_name(s->state));
		v[3] = BoolGetDatum(s->sidecar_reachable);
		v[4] = TimestampTzGetDatum(s->started_at);
		n[4] = s->started_at == 0;
		v[5] = Int64GetDatum((int64) s->published);
		v[6] = Int64GetDatum((int64) s->retried);
		v[7] = Int64GetDatum((int64) s->dead);
		v[8] = CStringGetTextDatum(s->last_error);
		n[8] = s->last_error[0] == '\0';
		v[9] = TimestampTzGetDatum(s->last_error_at);
		n[9] = s->last_error_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	LWLockRelease(te_shared->lock);
	return (Datum) 0;
}

/* Start delivery in this database when the current transaction commits. */
Datum
taskevents_start_delivery(PG_FUNCTION_ARGS)
{
	te_shared_at_commit(TE_AT_COMMIT_REPROBE);
	PG_RETURN_VOID();
}

/*
 * Make the capture trigger of a table go with the extension: DROP EXTENSION
 * then removes it without CASCADE (an automatic dependency).
 */
Datum
taskevents_own_trigger(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *tgname = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ObjectAddress trigger;
	ObjectAddress extension;

	ObjectAddressSet(trigger, TriggerRelationId, get_trigger_oid(relid, tgname, false));
	ObjectAddressSet(extension, ExtensionRelationId, get_extension_oid("taskevents", false));
	recordDependencyOn(&trigger, &extension, DEPENDENCY_AUTO);
	PG_RETURN_VOID();
}

/* The version of the library, which the update script checks is the one loaded. */
Datum
taskevents_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text("1.3"));
}

/* A row of the queue (taskevents.queue, .outbox or a queue table) as a change. */
static void
te_change_of_row(HeapTupleHeader rec, TeChange *c)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
											  HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	if (desc->natts < Natts_outbox)
		elog(ERROR, "taskevents: not an outbox row");
	te_outbox_read(&tuple, desc, c);
	ReleaseTupleDesc(desc);
}

/*
 * Queue a kept change again, under a new number, as it was: same event ids,
 * time, trace and contents, marked as a replayed copy (taskevents.replay()).
 * Returns the new number.
 */
Datum
taskevents_requeue(PG_FUNCTION_ARGS)
{
	TeChange	c;

	te_change_of_row(PG_GETARG_HEAPTUPLEHEADER(0), &c);
	c.events |= TE_F_REPLAYED;
	te_outbox_insert(&c);
	PG_RETURN_INT64(c.seq);
}

/*
 * The CloudEvents of a queued change, exactly as the worker sends them (in
 * the server encoding; null when the change cannot be sent), with whether
 * each was delivered already.
 */
Datum
taskevents_cloudevents(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		done = PG_GETARG_INT32(1);
	TeChange	c;
	TeEvent		evs[TE_MAX_EVENTS];
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	te_change_of_row(PG_GETARG_HEAPTUPLEHEADER(0), &c);

	n = te_change_events(&c, evs);
	for (int i = 0; i < n; i++)
	{
		StringInfoData body;
		Datum		v[5];
		bool		nulls[5] = {0};
		pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

		te_event_id(&c, evs[i].slot, uuid);
		v[0] = UUIDPGetDatum(uuid);
		v[1] = CStringGetTextDatum(evs[i].type);
		v[2] = CStringGetTextDatum(te_topic_name(evs[i].topic));
		v[3] = BoolGetDatum((done & (1 << evs[i].slot)) != 0);
		nulls[4] = te_event_unsendable(&c, &evs[i]) != NULL;
		if (!nulls[4])
		{
			initStringInfo(&body);
			te_append_cloudevent(&body, &c, &evs[i]);
			v[4] = CStringGetTextDatum(body.data);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}
