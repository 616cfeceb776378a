/*-------------------------------------------------------------------------
 * shared.h
 *		Shared memory: one slot per database with a delivery worker.
 *
 * The launcher assigns slots; each worker publishes its state and counters
 * in its slot; writers wake the worker of their database at commit by
 * setting its latch; the status view reads the slots.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_SHARED_H
#define TASKEVENTS_SHARED_H

#include "storage/lwlock.h"
#include "utils/timestamp.h"

typedef enum TeWorkerState
{
	TE_WORKER_STARTING,
	TE_WORKER_DELIVERING,		/* sending, or idle with an empty queue */
	TE_WORKER_PAUSED,			/* the sidecar is away: probing readiness */
	TE_WORKER_DISABLED,			/* taskevents.enabled = off */
	TE_WORKER_STOPPED,
	TE_WORKER_STANDBY_WAIT,		/* waiting for taskevents.standby_slots */
	TE_WORKER_NEEDS_UPDATE,		/* older SQL objects: ALTER EXTENSION ... UPDATE */
	TE_WORKER_HALTED			/* the queue's objects were altered (last_error says how) */
} TeWorkerState;

#define TE_LAST_ERROR_LEN 256

typedef struct TeDbSlot
{
	Oid			dboid;			/* InvalidOid: slot free */
	pid_t		pid;			/* worker's pid, 0 when none */
	int			pgprocno;		/* worker's PGPROC number, -1 when none */
	TeWorkerState state;
	bool		absent;			/* the worker found no extension here */
	bool		wake_me;		/* set its latch at each commit */
	bool		sidecar_reachable;
	TimestampTz hold_until;		/* start no worker before this */
	TimestampTz started_at;
	/* counters since the worker started */
	uint64		published;
	uint64		retried;
	uint64		dead;
	TimestampTz last_error_at;
	char		last_error[TE_LAST_ERROR_LEN];
} TeDbSlot;

typedef struct TeShared
{
	LWLock	   *lock;			/* protects everything below */
	int			launcher_pgprocno;	/* -1 when no launcher */
	bool		reprobe;		/* probe databases found without extension */
	int			nslots;
	TeDbSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} TeShared;

extern TeShared *te_shared;

/* What to do when the current transaction commits. */
#define TE_AT_COMMIT_REPROBE		0x01	/* launcher: look at every database */
#define TE_AT_COMMIT_STOP_WORKER	0x02	/* this database's worker: exit */

extern void te_shared_request(void);
extern void te_shared_wake_worker(Oid dboid);
extern void te_shared_wake_launcher(bool reprobe);
extern void te_shared_at_commit(int actions);
extern TeDbSlot *te_shared_slot(Oid dboid);
extern void te_shared_hold_worker(Oid dboid, int seconds);

#endif							/* TASKEVENTS_SHARED_H */
