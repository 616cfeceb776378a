/*-------------------------------------------------------------------------
 * inflight.c
 *		Which sequence numbers of the queue are held by transactions still
 *		in flight (inflight.h).
 *
 * One slot per backend, written by that backend only, under a spinlock:
 * before a capture takes a number it marks itself taking (the number is
 * not known yet: every number counts as in flight), then notes the number,
 * in a few ranges (a transaction that writes now and then covers little
 * more than its own numbers).
 * The slot is cleared once the transaction has ended, after its commit is
 * visible to new snapshots (xact callbacks run after the proc array is
 * updated).  So the worker, reading the last number given out, then the
 * slots, then taking its snapshot, knows that a number up to that last one
 * which no slot covers and which the snapshot does not show was rolled back.
 *
 * A prepared transaction leaves its backend: at PREPARE its range moves to
 * a table of its own, kept until the transaction is no longer in progress.
 * That table is lost in a restart, which prepared transactions survive: the
 * worker then takes every number given out before it started as possibly
 * theirs while they last (queue.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "compat.h"
#include "inflight.h"

/* The numbers a transaction took, as a few ranges (closest ones merged: te_ranges_add()). */
#define IN_RANGES 8
typedef struct InRanges
{
	int			n;
	TeRange		r[IN_RANGES];	/* in order, apart */
} InRanges;

typedef struct InSlot
{
	slock_t		mutex;
	Oid			dboid;			/* InvalidOid: holds no number */
	bool		taking;			/* taking a number now */
	InRanges	took;
} InSlot;

typedef struct InPrepared
{
	Oid			dboid;
	TransactionId xid;			/* InvalidTransactionId: free */
	InRanges	took;
} InPrepared;

typedef struct InShared
{
	slock_t		prepared_mutex; /* protects prepared[] */
	int			nslots;
	int			nprepared;
	InSlot	   *slots;
	InPrepared *prepared;
} InShared;

static InShared *in_shared = NULL;
static bool in_holding = false; /* this backend's slot holds a range */

#define IN_MAX_PREPARED() Max(max_prepared_xacts, 1)

Size
te_inflight_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(InShared));

	size = add_size(size, mul_size(MaxBackends, sizeof(InSlot)));
	return add_size(size, mul_size(IN_MAX_PREPARED(), sizeof(InPrepared)));
}

void
te_inflight_shmem_init(void *mem, bool found)
{
	in_shared = mem;
	if (found)
		return;
	memset(mem, 0, te_inflight_shmem_size());
	SpinLockInit(&in_shared->prepared_mutex);
	in_shared->nslots = MaxBackends;
	in_shared->nprepared = IN_MAX_PREPARED();
	in_shared->slots = (InSlot *) ((char *) mem + MAXALIGN(sizeof(InShared)));
	in_shared->prepared = (InPrepared *) (in_shared->slots + MaxBackends);
	for (int i = 0; i < MaxBackends; i++)
		SpinLockInit(&in_shared->slots[i].mutex);
}

/* This backend's slot, or NULL (not preloaded: there is no worker to tell). */
static InSlot *
in_my_slot(void)
{
	int			n = TE_PROC_NUMBER();

	if (in_shared == NULL)
		return NULL;
	if (n < 0 || n >= in_shared->nslots)
		elog(ERROR, "taskevents: process number %d has no in-flight slot", n);
	return &in_shared->slots[n];
}

/* A capture is about to take a number. */
void
te_inflight_taking(void)
{
	InSlot	   *s = in_my_slot();

	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	s->dboid = MyDatabaseId;
	s->taking = true;
	SpinLockRelease(&s->mutex);
	in_holding = true;
}

/* ... and took seq (0: none, nextval failed). */
void
te_inflight_took(int64 seq)
{
	InSlot	   *s = in_my_slot();

	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	if (seq > 0)
		s->took.n = te_ranges_add(s->took.r, s->took.n, IN_RANGES, seq);
	s->taking = false;
	SpinLockRelease(&s->mutex);
}

static void
in_clear(void)
{
	InSlot	   *s = in_my_slot();

	SpinLockAcquire(&s->mutex);
	s->dboid = InvalidOid;
	s->taking = false;
	s->took.n = 0;
	SpinLockRelease(&s->mutex);
	in_holding = false;
}

/*
 * Free the entries of prepared transactions that have ended; returns a
 * free entry, or NULL.  Called with nothing held.
 */
static InPrepared *
in_prepared_sweep(void)
{
	InPrepared *free_entry = NULL;

	for (int i = 0; i < in_shared->nprepared; i++)
	{
		InPrepared *p = &in_shared->prepared[i];
		TransactionId xid;

		SpinLockAcquire(&in_shared->prepared_mutex);
		xid = p->xid;
		SpinLockRelease(&in_shared->prepared_mutex);
		if (TransactionIdIsValid(xid) && !TransactionIdIsInProgress(xid))
		{
			SpinLockAcquire(&in_shared->prepared_mutex);
			if (p->xid == xid)
				p->xid = InvalidTransactionId;
			SpinLockRelease(&in_shared->prepared_mutex);
		}
		if (!TransactionIdIsValid(p->xid) && free_entry == NULL)
			free_entry = p;
	}
	return free_entry;
}

/* Before PREPARE: the ranges move to the prepared table (the slot is cleared at PREPARE). */
static void
in_prepare(void)
{
	InSlot	   *s = in_my_slot();
	TransactionId xid = GetTopTransactionIdIfAny();
	InRanges	took;
	InPrepared *p;

	SpinLockAcquire(&s->mutex);
	took.n = te_ranges_held(s->took.r, s->took.n, s->taking, took.r);
	SpinLockRelease(&s->mutex);
	for (;;)
	{
		p = in_prepared_sweep();
		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("taskevents: too many prepared transactions hold queue numbers"),
					 errhint("Increase max_prepared_transactions.")));
		SpinLockAcquire(&in_shared->prepared_mutex);
		if (!TransactionIdIsValid(p->xid))
			break;
		SpinLockRelease(&in_shared->prepared_mutex);
	}
	p->dboid = MyDatabaseId;
	p->took = took;
	p->xid = xid;
	SpinLockRelease(&in_shared->prepared_mutex);
}

static void
in_xact_callback(XactEvent event, void *arg)
{
	if (!in_holding)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			in_prepare();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			in_clear();
			break;
		default:
			break;
	}
}

/* Called from _PG_init in every process that loads the library. */
void
te_inflight_init(void)
{
	RegisterXactCallback(in_xact_callback, NULL);
}

/* Does the prepared table know this transaction? */
bool
te_inflight_knows_prepared(TransactionId xid)
{
	bool		known = false;

	if (in_shared == NULL)
		return false;
	SpinLockAcquire(&in_shared->prepared_mutex);
	for (int i = 0; i < in_shared->nprepared; i++)
		known |= in_shared->prepared[i].xid == xid;
	SpinLockRelease(&in_shared->prepared_mutex);
	return known;
}

int
te_inflight_ranges(Oid dboid, TeRange **ranges)
{
	TeRange    *r;
	int			n = 0;

	if (in_shared == NULL)
	{
		*ranges = palloc(sizeof(TeRange));
		return 0;
	}
	r = palloc(sizeof(TeRange) * (in_shared->nslots + in_shared->nprepared + 1) * IN_RANGES);
	for (int i = 0; i < in_shared->nslots; i++)
	{
		InSlot	   *s = &in_shared->slots[i];

		SpinLockAcquire(&s->mutex);
		if (s->dboid == dboid)
			n += te_ranges_held(s->took.r, s->took.n, s->taking, r + n);
		SpinLockRelease(&s->mutex);
	}
	(void) in_prepared_sweep();
	SpinLockAcquire(&in_shared->prepared_mutex);
	for (int i = 0; i < in_shared->nprepared; i++)
	{
		InPrepared *p = &in_shared->prepared[i];

		if (TransactionIdIsValid(p->xid) && p->dboid == dboid)
		{
			memcpy(r + n, p->took.r, sizeof(TeRange) * p->took.n);
			n += p->took.n;
		}
	}
	SpinLockRelease(&in_shared->prepared_mutex);
	*ranges = r;
	return te_ranges_merge(r, n);
}
