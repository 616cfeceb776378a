/*-------------------------------------------------------------------------
 * status.h
 *		The delivery worker's slot in shared memory (status.c).
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_STATUS_H
#define TASKEVENTS_STATUS_H

#include "shared.h"

extern void st_attach(Oid dboid);
extern void st_exit_absent(void);
extern void st_check_alive(void);
extern TeWorkerState st_state(void);
extern bool st_reachable(void);
extern void st_set_state(TeWorkerState state, bool reachable);
extern void st_set_state_keep(TeWorkerState state);
extern const char *st_error_text(const char *utf8);
extern void st_set_error(const char *error);
extern void st_count(uint64 published, uint64 retried, uint64 dead, bool answered);
extern bool st_log_allowed(void);

#endif							/* TASKEVENTS_STATUS_H */
