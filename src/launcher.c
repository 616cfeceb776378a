/*-------------------------------------------------------------------------
 * launcher.c
 *		The launcher: finds the databases and keeps one delivery worker
 *		running in each database where the extension is installed.
 *
 * A static background worker, started once recovery is finished (so never
 * on a standby, and right after promotion).  It reads pg_database, starts a
 * worker per connectable database; a worker that finds no extension says so
 * in its slot and exits, and that database is not tried again until a
 * CREATE EXTENSION or CREATE DATABASE commits (they wake the launcher) or the
 * server restarts.  A worker that dies is started again after a second.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE need a database to themselves: a ProcessUtility hook
 * stops its worker first and holds it off for a few seconds.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "launcher.h"
#include "settings.h"
#include "shared.h"

PGDLLEXPORT void taskevents_launcher_main(Datum arg);

/* How often the launcher looks for new databases without being asked. */
#define LN_RESCAN_MS	30000
/* How often the launcher checks on its workers. */
#define LN_TICK_MS		1000
/* How long a database operation keeps the worker away. */
#define LN_HOLD_S		2

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Launcher-local: the handle of each slot's worker, and databases without the extension. */
static BackgroundWorkerHandle **ln_handles;
static List *ln_absent = NIL;

/* The connectable, non-template databases. */
static List *
ln_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

/* Register a dynamic worker for the database in slot i. */
static void
ln_start_worker(int i)
{
	BackgroundWorker w = {0};
	TeDbSlot   *slot = &te_shared->slots[i];

	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(w.bgw_library_name, "taskevents", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, "taskevents_worker_main", BGW_MAXLEN);
	snprintf(w.bgw_name, BGW_MAXLEN, "taskevents worker for database %u", slot->dboid);
	strlcpy(w.bgw_type, "taskevents worker", BGW_MAXLEN);
	w.bgw_main_arg = ObjectIdGetDatum(slot->dboid);
	w.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&w, &ln_handles[i]))
	{
		ln_handles[i] = NULL;
		ereport(LOG,
				(errmsg("taskevents: no background worker slot for database %u; trying again", slot->dboid),
				 errhint("Raise max_worker_processes.")));
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LN_RESCAN_MS / 3);
	}
}

/* Is a worker running (or about to) for slot i? */
static bool
ln_running(int i)
{
	pid_t		pid;

	if (te_shared->slots[i].pid != 0)
		return true;
	if (ln_handles[i] != NULL &&
		GetBackgroundWorkerPid(ln_handles[i], &pid) != BGWH_STOPPED)
		return true;
	if (ln_handles[i] != NULL)
	{
		pfree(ln_handles[i]);
		ln_handles[i] = NULL;
	}
	return false;
}

/* Bring the slots in line with the databases: free, restart, start. */
static void
ln_reconcile(List *dbs)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	if (te_shared->reprobe)
	{
		list_free(ln_absent);
		ln_absent = NIL;
		te_shared->reprobe = false;
	}

	/*
	 * Free the slots of databases that lack the extension or are gone.  (A
	 * worker that died left its slot with a restart delay in hold_until.)
	 */
	for (int i = 0; i < te_shared->nslots; i++)
	{
		TeDbSlot   *slot = &te_shared->slots[i];

		if (!OidIsValid(slot->dboid) || ln_running(i))
			continue;
		if (slot->absent || !list_member_oid(dbs, slot->dboid))
		{
			if (slot->absent)
			{
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

				ln_absent = list_append_unique_oid(ln_absent, slot->dboid);
				MemoryContextSwitchTo(old);
			}
			memset(slot, 0, sizeof(*slot));
			slot->pgprocno = -1;
		}
	}

	/* Every database not known to lack the extension gets a slot and a worker. */
	foreach(lc, dbs)
	{
		Oid			dboid = lfirst_oid(lc);
		TeDbSlot   *slot;
		int			i;

		if (list_member_oid(ln_absent, dboid))
			continue;
		slot = te_shared_slot(dboid);
		if (slot == NULL)
		{
			slot = te_shared_slot(InvalidOid);
			if (slot == NULL)
			{
				ereport(LOG,
						(errmsg("taskevents: more databases than taskevents.max_databases (%d); database %u waits",
								te_max_databases, dboid)));
				continue;
			}
			slot->dboid = dboid;
			slot->state = TE_WORKER_STOPPED;
		}
		i = slot - te_shared->slots;
		if (!ln_running(i) && slot->hold_until <= now)
			ln_start_worker(i);
	}
	LWLockRelease(te_shared->lock);
}

/* Forget the launcher's latch when it exits. */
static void
ln_detach(int code, Datum arg)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	te_shared->launcher_pgprocno = -1;
	LWLockRelease(te_shared->lock);
}

/* Entry point of the launcher. */
void
taskevents_launcher_main(Datum arg)
{
	List	   *dbs = NIL;
	TimestampTz last_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("taskevents launcher");

	ln_handles = MemoryContextAllocZero(TopMemoryContext,
										sizeof(BackgroundWorkerHandle *) * te_shared->nslots);
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	te_shared->launcher_pgprocno = TE_PROC_NUMBER();
	LWLockRelease(te_shared->lock);
	on_shmem_exit(ln_detach, 0);

	for (;;)
	{
		TimestampTz now;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		if (te_shared->reprobe ||
			TimestampDifferenceExceeds(last_scan, now, LN_RESCAN_MS))
		{
			list_free(dbs);
			dbs = ln_databases();
			last_scan = now;
		}
		ln_reconcile(dbs);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LN_TICK_MS, PG_WAIT_EXTENSION);
	}
}

/* The database named by a utility statement that needs it to itself, or InvalidOid. */
static Oid
ln_exclusive_database(Node *stmt)
{
	const char *name = NULL;
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) stmt)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) stmt)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					name = ((AlterDatabaseStmt *) stmt)->dbname;
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) stmt)->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "template") == 0)
					name = defGetString((DefElem *) lfirst(lc));
			break;
		default:
			break;
	}
	return name ? get_database_oid(name, true) : InvalidOid;
}

/* ProcessUtility hook: make room for database-wide commands. */
static void
ln_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	te_shared_hold_worker(ln_exclusive_database(stmt), LN_HOLD_S);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	/* A new database may come with the extension from its template. */
	if (IsA(stmt, CreatedbStmt))
		te_shared_wake_launcher_at_commit();
}

/* Register the launcher and the hook; called from _PG_init while preloading. */
void
te_launcher_init(void)
{
	BackgroundWorker w = {0};

	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 5;
	strlcpy(w.bgw_library_name, "taskevents", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, "taskevents_launcher_main", BGW_MAXLEN);
	strlcpy(w.bgw_name, "taskevents launcher", BGW_MAXLEN);
	strlcpy(w.bgw_type, "taskevents launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&w);

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ln_process_utility;
}
