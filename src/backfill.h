/*-------------------------------------------------------------------------
 * backfill.h
 *		Backfills: the current state of every matching task, queued by the
 *		worker a chunk at a time (backfill.c).
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_BACKFILL_H
#define TASKEVENTS_BACKFILL_H

extern long te_backfill_step(void);

#endif							/* TASKEVENTS_BACKFILL_H */
