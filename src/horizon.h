/*-------------------------------------------------------------------------
 * horizon.h
 *		Has every snapshot that may predate a transaction gone?  What the
 *		worker asks before it empties a queue table (queue.c).
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_HORIZON_H
#define TASKEVENTS_HORIZON_H

#include "storage/lock.h"

/* A committed transaction, and the ones whose snapshot may not see it. */
typedef struct TeHorizon
{
	TransactionId xid;			/* every snapshot must see this one */
	VirtualTransactionId *older;	/* transactions whose snapshot may be older */
	int			nolder;
	bool		again;			/* note them again once these have ended */
} TeHorizon;

extern void te_horizon_note(TeHorizon *h, TransactionId xid);
extern bool te_horizon_passed(TeHorizon *h);

#endif							/* TASKEVENTS_HORIZON_H */
