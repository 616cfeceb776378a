/*-------------------------------------------------------------------------
 * inflight.h
 *		Which sequence numbers of the queue are held by transactions still
 *		in flight (shared memory).
 *
 * A number is given out before its transaction commits, so the worker
 * cannot tell a change still being written from one rolled back by looking
 * at the queue alone.  Each backend that takes numbers notes the range it
 * took in a slot of its own until its transaction ends (a prepared
 * transaction's range is kept until it is committed or rolled back); the
 * worker asks which numbers those ranges cover.  A number given out and not
 * seen that no range covers never will be seen: a hole closes as soon as
 * its transaction ends, whatever else runs in the cluster.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_INFLIGHT_H
#define TASKEVENTS_INFLIGHT_H

#include "c.h"

#include "cursor.h"

extern void te_inflight_init(void);
extern Size te_inflight_shmem_size(void);
extern void te_inflight_shmem_init(void *mem, bool found);

/* Around each number a capture takes. */
extern void te_inflight_taking(void);
extern void te_inflight_took(int64 seq);

/* The ranges of this database's numbers still in flight, merged and in order. */
extern int	te_inflight_ranges(Oid dboid, TeRange **ranges);

extern bool te_inflight_knows_prepared(TransactionId xid);

#endif							/* TASKEVENTS_INFLIGHT_H */
