/*-------------------------------------------------------------------------
 * horizon.c
 *		Has every snapshot that may predate a transaction gone?
 *
 * The worker empties a queue table with TRUNCATE, which is not MVCC-safe:
 * a snapshot older than the record that found the table read (pg_dump's,
 * say) would see the table empty and its changes unread.  So the record's
 * transaction is noted with the transactions of this database that may
 * hold an older snapshot, as CREATE INDEX CONCURRENTLY finds them; the
 * table is emptied once they have ended and no standby's or replication
 * slot's xmin is that old.  Those transactions are noted a second time once
 * they have ended: one of them may have exported its snapshot meanwhile,
 * and an importer holds it (it must import while its exporter runs, so it
 * is running when they have all ended); more times while snapshots are
 * being exported.  Nothing here waits: a check that cannot pass yet says
 * so, and the worker asks again after a later round.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/fd.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/memutils.h"

#include "horizon.h"

/* Is a snapshot exported (pg_export_snapshot(), a replication slot's)? */
static bool
hz_snapshot_exported(void)
{
	DIR		   *dir = AllocateDir("pg_snapshots");
	struct dirent *de;
	bool		found = false;

	while (!found && (de = ReadDir(dir, "pg_snapshots")) != NULL)
		found = de->d_name[0] != '.';
	FreeDir(dir);
	return found;
}

/*
 * Note the transactions of this database that may hold a snapshot taken
 * before h->xid committed (their snapshot's xmin is not past it).
 */
static void
hz_note_older(TeHorizon *h)
{
	VirtualTransactionId *older;

	older = GetCurrentVirtualXIDs(h->xid, true, false, PROC_IN_VACUUM, &h->nolder);
	if (h->older)
		pfree(h->older);
	h->older = MemoryContextAlloc(TopMemoryContext, sizeof(VirtualTransactionId) * (h->nolder + 1));
	memcpy(h->older, older, sizeof(VirtualTransactionId) * h->nolder);
	pfree(older);
}

/* Note a transaction that has committed, and the ones that may not see it. */
void
te_horizon_note(TeHorizon *h, TransactionId xid)
{
	h->xid = xid;
	h->again = true;
	hz_note_older(h);
}

/*
 * The xmin of the snapshots a live standby with hot_standby_feedback, or a
 * replication slot, holds (InvalidTransactionId: none).  A walsender's
 * PGPROC keeps its xmin after it exits: only live walsenders count.
 */
static TransactionId
hz_standby_xmin(void)
{
	TransactionId oldest;
	TransactionId catalog_xmin;

	ProcArrayGetReplicationSlotXmin(&oldest, &catalog_xmin);
	LWLockAcquire(ProcArrayLock, LW_SHARED);
	for (int i = 0; WalSndCtl != NULL && i < max_wal_senders; i++)
	{
		WalSnd	   *w = &WalSndCtl->walsnds[i];
		pid_t		pid;
		PGPROC	   *proc;
		TransactionId xmin;

		SpinLockAcquire(&w->mutex);
		pid = w->pid;
		SpinLockRelease(&w->mutex);
		proc = pid != 0 ? BackendPidGetProcWithLock(pid) : NULL;
		if (proc == NULL || !(proc->statusFlags & PROC_AFFECTS_ALL_HORIZONS))
			continue;
		xmin = *(volatile TransactionId *) &proc->xmin;
		if (TransactionIdIsNormal(xmin) &&
			(!TransactionIdIsNormal(oldest) || TransactionIdPrecedes(xmin, oldest)))
			oldest = xmin;
	}
	LWLockRelease(ProcArrayLock);
	return oldest;
}

/*
 * Has every snapshot that may predate h->xid gone?  The transactions noted
 * have ended (noted again as said above), and no live standby with
 * hot_standby_feedback nor any replication slot holds an xmin up to it
 * (their snapshots cannot be told apart: a long transaction on the primary
 * keeps their xmin back too).
 */
bool
te_horizon_passed(TeHorizon *h)
{
	TransactionId standby = hz_standby_xmin();

	if (TransactionIdIsNormal(standby) && TransactionIdPrecedesOrEquals(standby, h->xid))
		return false;
	for (;;)
	{
		bool		exported = hz_snapshot_exported();

		for (int i = 0; i < h->nolder; i++)
			if (!VirtualXactLock(h->older[i], false))
			{
				h->again |= exported;
				return false;
			}
		if (!h->again)
			return true;
		h->again = exported;
		hz_note_older(h);
		if (h->nolder == 0)
			return true;
	}
}
