/*-------------------------------------------------------------------------
 * outbox.h
 *		taskevents.outbox: one lean row per captured change.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_OUTBOX_H
#define TASKEVENTS_OUTBOX_H

#include "access/htup.h"
#include "access/tupdesc.h"

#include "cloudevent.h"

/* Columns of taskevents.outbox, in order (see sql/taskevents--1.0.sql). */
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

#endif							/* TASKEVENTS_OUTBOX_H */
