/*-------------------------------------------------------------------------
 * capture.h
 *		The capture triggers, and the commit-time wake of the worker.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_CAPTURE_H
#define TASKEVENTS_CAPTURE_H

#include "access/htup.h"
#include "commands/trigger.h"
#include "access/tupdesc.h"

extern void te_capture_init(void);
extern void te_capture_snapshot(const char *relname, TupleDesc desc, Trigger *trigger,
								HeapTuple tuple, const char *trace_id);

#endif							/* TASKEVENTS_CAPTURE_H */
