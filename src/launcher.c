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
 * server restarts.  A worker that dies is started again after a second, or
 * later when it keeps dying young; the launcher reads pg_database again
 * first, so a dropped database gets no worker.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE need a database to themselves: a ProcessUtility hook
 * stops its worker first and holds it off for a few seconds, but only for a
 * role the command's own privilege checks will let through.  DROP EXTENSION
 * stops the worker when it commits (an object access hook).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

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
/* A worker that dies younger than this is restarted later each time, up to LN_BACKOFF_MAX_S. */
#define LN_YOUNG_MS		10000
#define LN_BACKOFF_MAX_S 60

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access = NULL;

/* Launcher-local, per slot: the worker's handle, when it started, how often it died young. */
typedef struct LnWorker
{
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	int			young_deaths;
} LnWorker;

static LnWorker *ln_workers;
static List *ln_absent = NIL;	/* databases without the extension */
static List *ln_reported = NIL; /* databases already reported (invalid, no slot) */
static List *ln_invalid = NIL;	/* databases found invalid, not reported yet */
static bool ln_worker_died = false; /* since pg_database was last read */
static TimestampTz ln_reprobed = 0; /* when ln_absent was last forgotten */

/* Log a line about a database once per launcher lifetime. */
static bool
ln_first_report(Oid dboid)
{
	MemoryContext old;

	if (list_member_oid(ln_reported, dboid))
		return false;
	old = MemoryContextSwitchTo(TopMemoryContext);
	ln_reported = lappend_oid(ln_reported, dboid);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Can a worker connect to this database?  An invalid one (DROP DATABASE
 * marks it so while it runs; left so when interrupted) is reported the
 * second time it is seen invalid.
 */
static bool
ln_connectable(Form_pg_database db)
{
	if (!db->datallowconn || db->datistemplate)
		return false;
#ifdef DATCONNLIMIT_INVALID_DB
	if (database_is_invalid_form(db))
	{
		MemoryContext old;

		if (!list_member_oid(ln_invalid, db->oid))
		{
			old = MemoryContextSwitchTo(TopMemoryContext);
			ln_invalid = lappend_oid(ln_invalid, db->oid);
			MemoryContextSwitchTo(old);
		}
		else if (ln_first_report(db->oid))
			ereport(LOG,
					(errmsg("taskevents: database \"%s\" is invalid (an interrupted DROP DATABASE); it gets no delivery worker",
							NameStr(db->datname)),
					 errhint("Drop it: DROP DATABASE %s;", quote_identifier(NameStr(db->datname)))));
		return false;
	}
#endif
	return true;
}

/* The databases a worker can connect to. */
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

		if (ln_connectable(db))
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

	ln_workers[i].started = GetCurrentTimestamp();
	if (!RegisterDynamicBackgroundWorker(&w, &ln_workers[i].handle))
	{
		ln_workers[i].handle = NULL;
		if (ln_first_report(slot->dboid))
			ereport(LOG,
					(errmsg("taskevents: no background worker slot for database %u; trying again", slot->dboid),
					 errhint("Raise max_worker_processes.")));
		slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LN_RESCAN_MS / 3);
	}
}

/*
 * Is a worker running (or about to) for slot i?  When one has ended, hold
 * the next start off: a second, doubling while workers die young.
 */
static bool
ln_running(int i)
{
	LnWorker   *w = &ln_workers[i];
	TeDbSlot   *slot = &te_shared->slots[i];
	pid_t		pid;
	TimestampTz now;
	int			backoff_s;

	if (slot->pid != 0)
		return true;
	if (w->handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(w->handle, &pid) != BGWH_STOPPED)
		return true;

	pfree(w->handle);
	w->handle = NULL;
	ln_worker_died = true;
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(w->started, now, LN_YOUNG_MS))
		w->young_deaths = 0;
	else
		w->young_deaths = Min(w->young_deaths + 1, 6);
	backoff_s = Min(1 << w->young_deaths, LN_BACKOFF_MAX_S);
	slot->hold_until = Max(slot->hold_until, TimestampTzPlusMilliseconds(now, backoff_s * 1000));
	return false;
}

/*
 * Give a slot back.  A database whose worker found no extension is left
 * alone until the next reprobe, unless a reprobe came since that worker
 * started: it may have looked just before CREATE EXTENSION committed.
 */
static void
ln_free_slot(int i)
{
	TeDbSlot   *slot = &te_shared->slots[i];

	if (slot->absent && ln_workers[i].started > ln_reprobed)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		ln_absent = list_append_unique_oid(ln_absent, slot->dboid);
		MemoryContextSwitchTo(old);
	}
	memset(slot, 0, sizeof(*slot));
	slot->pgprocno = -1;
	memset(&ln_workers[i], 0, sizeof(LnWorker));
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
		ln_reprobed = now;
	}

	/* Free the slots of databases that lack the extension or are gone. */
	for (int i = 0; i < te_shared->nslots; i++)
	{
		TeDbSlot   *slot = &te_shared->slots[i];

		if (OidIsValid(slot->dboid) && !ln_running(i) &&
			(slot->absent || !list_member_oid(dbs, slot->dboid)))
			ln_free_slot(i);
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
				if (ln_first_report(dboid))
					ereport(LOG,
							(errmsg("taskevents: more databases than taskevents.max_databases (%d): database %u gets no delivery worker until a slot is free",
									te_max_databases, dboid),
							 errhint("Raise taskevents.max_databases (a restart).")));
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

	ln_workers = MemoryContextAllocZero(TopMemoryContext, sizeof(LnWorker) * te_shared->nslots);
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

		/* Read pg_database again when asked, every 30 s, and after a worker ended. */
		now = GetCurrentTimestamp();
		if (te_shared->reprobe || ln_worker_died ||
			TimestampDifferenceExceeds(last_scan, now, LN_RESCAN_MS))
		{
			list_free(dbs);
			ln_worker_died = false;
			dbs = ln_databases();
			last_scan = now;
		}
		ln_reconcile(dbs);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LN_TICK_MS, PG_WAIT_EXTENSION);
	}
}

/* Does the current role own the database?  (What each command checks first.) */
static bool
ln_owns(Oid dboid)
{
	return TE_DATABASE_OWNERCHECK(dboid, GetUserId());
}

/* Is the database a template (which any role with CREATEDB may copy)? */
static bool
ln_is_template(Oid dboid)
{
	HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		result = false;

	if (HeapTupleIsValid(tup))
	{
		result = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
		ReleaseSysCache(tup);
	}
	return result;
}

/*
 * The database a utility statement needs to itself, or InvalidOid: none, or
 * the role may not run the statement (it will fail its own privilege check,
 * and must not disturb the worker on the way).
 */
static Oid
ln_exclusive_database(Node *stmt)
{
	const char *name = NULL;
	bool		createdb = false;	/* the command needs CREATEDB too */
	bool		template = false;	/* a template needs no ownership */
	Oid			dboid;
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) stmt)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) stmt)->subname;
			createdb = true;
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
			createdb = template = true;
			break;
		default:
			break;
	}
	if (name == NULL)
		return InvalidOid;
	dboid = get_database_oid(name, true);
	if (!OidIsValid(dboid) ||
		(createdb && !have_createdb_privilege()) ||
		(!ln_owns(dboid) && !(template && ln_is_template(dboid))))
		return InvalidOid;
	return dboid;
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

	/* A new database may come with the extension; a dropped one needs no worker. */
	if (IsA(stmt, CreatedbStmt) || IsA(stmt, DropdbStmt))
		te_shared_at_commit(TE_AT_COMMIT_REPROBE);
}

/* Object access hook: when DROP EXTENSION taskevents commits, the worker goes. */
static void
ln_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == ExtensionRelationId &&
		objectId == get_extension_oid("taskevents", true))
		te_shared_at_commit(TE_AT_COMMIT_STOP_WORKER);
}

/* Register the launcher and the hooks; called from _PG_init while preloading. */
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
	prev_object_access = object_access_hook;
	object_access_hook = ln_object_access;
}
