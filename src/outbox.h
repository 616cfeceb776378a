/*-------------------------------------------------------------------------
 * outbox.h
 *		The queue of captured changes: one lean row per change.
 *
 * Changes go into three tables, taskevents.queue_0 .. queue_2, in runs of
 * TE_QUEUE_RUN sequence numbers: seq s lives in table (s / TE_QUEUE_RUN) %
 * TE_QUEUE_TABLES (cursor.h).  Rows are never updated or deleted; the
 * worker empties a table with TRUNCATE once every change in it is delivered
 * and writers have moved on (see queue.c).  So a transaction that pins the xmin horizon leaves
 * no dead rows for anyone to walk.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_OUTBOX_H
#define TASKEVENTS_OUTBOX_H

#include "access/htup.h"
#include "access/tupdesc.h"

#include "cloudevent.h"
#include "cursor.h"				/* TE_QUEUE_TABLES, TE_QUEUE_RUN */

/* Columns of a queue table (and of 1.0's taskevents.outbox), in order. */
#define Anum_outbox_seq			1
#define Anum_outbox_event_id	2
#define Anum_outbox_events		3
#define Anum_outbox_changed_at	4
#define Anum_outbox_task_id		5
#define Anum_outbox_user_id		6
#define Anum_outbox_title		7
#define Anum_outbox_completed	8
#define Anum_outbox_due_date	9
#define Anum_outbox_changes		10
#define Anum_outbox_trace_id	11
#define Anum_outbox_traceparent	12
#define Natts_outbox			12

extern void te_outbox_insert(TeChange *c);
extern void te_outbox_read(HeapTuple tuple, TupleDesc desc, TeChange *c);
extern Oid	te_outbox_relid(const char *name, bool missing_ok);

#endif							/* TASKEVENTS_OUTBOX_H */
