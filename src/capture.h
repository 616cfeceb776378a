/*-------------------------------------------------------------------------
 * capture.h
 *		The capture triggers, and the commit-time wake of the worker.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_CAPTURE_H
#define TASKEVENTS_CAPTURE_H

extern void te_capture_init(void);

#endif							/* TASKEVENTS_CAPTURE_H */
