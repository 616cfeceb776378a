/*-------------------------------------------------------------------------
 * shared.c
 *		Shared memory of taskevents, and the latches that wake its processes.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "inflight.h"
#include "settings.h"
#include "shared.h"

TeShared   *te_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
sh_size(void)
{
	return add_size(offsetof(TeShared, slots),
					mul_size(te_max_databases, sizeof(TeDbSlot)));
}

static void
sh_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sh_size());
	RequestAddinShmemSpace(te_inflight_shmem_size());
	RequestNamedLWLockTranche("taskevents", 1);
}

static void
sh_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	te_shared = ShmemInitStruct("taskevents", sh_size(), &found);
	if (!found)
	{
		memset(te_shared, 0, sh_size());
		te_shared->lock = &(GetNamedLWLockTranche("taskevents"))->lock;
		te_shared->launcher_pgprocno = -1;
		te_shared->nslots = te_max_databases;
		for (int i = 0; i < te_shared->nslots; i++)
			te_shared->slots[i].pgprocno = -1;
	}
	te_inflight_shmem_init(ShmemInitStruct("taskevents inflight", te_inflight_shmem_size(), &found),
						   found);
	LWLockRelease(AddinShmemInitLock);
}

/* Ask for shared memory; called from _PG_init while preloading. */
void
te_shared_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sh_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sh_startup;
}

/* The slot of a database, or NULL.  Caller holds the lock. */
TeDbSlot *
te_shared_slot(Oid dboid)
{
	for (int i = 0; i < te_shared->nslots; i++)
		if (te_shared->slots[i].dboid == dboid)
			return &te_shared->slots[i];
	return NULL;
}

/*
 * Wake the worker of a database (at commit, so no lock and no error): a
 * stale read at worst sets some other process's latch, which every latch user
 * tolerates.
 */
void
te_shared_wake_worker(Oid dboid)
{
	if (te_shared == NULL)
		return;
	for (int i = 0; i < te_shared->nslots; i++)
	{
		volatile TeDbSlot *slot = &te_shared->slots[i];
		int			procno = slot->pgprocno;

		if (slot->dboid == dboid)
		{
			if (procno >= 0 && slot->wake_me)
				SetLatch(&ProcGlobal->allProcs[procno].procLatch);
			return;
		}
	}
}

/* Wake the launcher; with reprobe, it looks again at every database. */
void
te_shared_wake_launcher(bool reprobe)
{
	int			procno;

	if (te_shared == NULL)
		return;
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	if (reprobe)
		te_shared->reprobe = true;
	procno = te_shared->launcher_pgprocno;
	LWLockRelease(te_shared->lock);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

static int	sh_at_commit = 0;

static void
sh_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT)
	{
		if (sh_at_commit & TE_AT_COMMIT_STOP_WORKER)
			te_shared_hold_worker(MyDatabaseId, 1);
		if (sh_at_commit & TE_AT_COMMIT_REPROBE)
			te_shared_wake_launcher(true);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		sh_at_commit = 0;
}

/*
 * Act once the current transaction commits (before, the launcher would not
 * see a new extension or database, and a worker would go on delivering a
 * dropped extension's queue).
 */
void
te_shared_at_commit(int actions)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(sh_xact_callback, NULL);
		registered = true;
	}
	sh_at_commit |= actions;
}

/*
 * Stop the worker of a database and start none there for a while, so that
 * DROP DATABASE and friends, which need the database to themselves, go
 * through (their own wait for other sessions to leave covers the exit).
 */
void
te_shared_hold_worker(Oid dboid, int seconds)
{
	TeDbSlot   *slot;
	pid_t		pid = 0;

	if (te_shared == NULL || !OidIsValid(dboid))
		return;
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	slot = te_shared_slot(dboid);
	if (slot != NULL)
	{
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), seconds * 1000);
		pid = slot->pid;
	}
	LWLockRelease(te_shared->lock);
	if (pid > 0)
		kill(pid, SIGTERM);
}
