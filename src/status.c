/*-------------------------------------------------------------------------
 * status.c
 *		The delivery worker's slot in shared memory, what taskevents.status
 *		shows of it: state, last error, counters; and how many outcome lines
 *		the worker may log.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "status.h"

static TeDbSlot *st_slot;

/* Outcome log lines: at most ST_LOG_BURST per window, then one summary. */
#define ST_LOG_WINDOW_MS	10000
#define ST_LOG_BURST		20
static TimestampTz st_log_window;
static int	st_log_lines;
static int	st_log_suppressed;

/* Exit when the postmaster has died; serve interrupts. */
void
st_check_alive(void)
{
	if (!PostmasterIsAlive())
		proc_exit(1);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Publish the worker's state in its slot.  Only a delivering worker wants
 * to be woken at each commit: otherwise it would wake for nothing.
 */
void
st_set_state(TeWorkerState state, bool reachable)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	st_slot->state = state;
	st_slot->sidecar_reachable = reachable;
	st_slot->wake_me = (state == TE_WORKER_DELIVERING);
	LWLockRelease(te_shared->lock);
}

void
st_set_state_keep(TeWorkerState state)
{
	if (st_slot->state != state)
		st_set_state(state, st_slot->sidecar_reachable);
}

/*
 * An error text (UTF-8, perhaps from the sidecar) as text of the database
 * encoding: as it is in UTF-8 and SQL_ASCII databases, else with every
 * character outside ASCII as '?'.
 */
const char *
st_error_text(const char *utf8)
{
	char	   *s;
	int			n = 0;

	if (utf8 == NULL || GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		return utf8;
	s = palloc(strlen(utf8) + 1);
	for (const unsigned char *p = (const unsigned char *) utf8; *p; p++)
	{
		if (*p < 0x80)
			s[n++] = *p;
		else if ((*p & 0xC0) != 0x80)
			s[n++] = '?';
	}
	s[n] = '\0';
	return s;
}

void
st_set_error(const char *error)
{
	const char *text = st_error_text(error);
	int			len = pg_mbcliplen(text, strlen(text), TE_LAST_ERROR_LEN - 1);

	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	memcpy(st_slot->last_error, text, len);
	st_slot->last_error[len] = '\0';
	st_slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(te_shared->lock);
}

/* Leave the slot when the worker exits. */
static void
st_detach(int code, Datum arg)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	if (st_slot->pid == MyProcPid)
	{
		st_slot->pid = 0;
		st_slot->pgprocno = -1;
		st_slot->wake_me = false;
		st_slot->state = TE_WORKER_STOPPED;
	}
	LWLockRelease(te_shared->lock);
	te_shared_wake_launcher(false);
}

/* Take this database's slot (counters start again); exit if another worker has it. */
void
st_attach(Oid dboid)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	st_slot = te_shared_slot(dboid);
	if (st_slot == NULL || (st_slot->pid != 0 && st_slot->pid != MyProcPid))
	{
		LWLockRelease(te_shared->lock);
		proc_exit(0);
	}
	st_slot->pid = MyProcPid;
	st_slot->pgprocno = TE_PROC_NUMBER();
	st_slot->state = TE_WORKER_STARTING;
	st_slot->absent = false;
	st_slot->started_at = GetCurrentTimestamp();
	st_slot->published = st_slot->retried = st_slot->dead = 0;
	LWLockRelease(te_shared->lock);
	on_shmem_exit(st_detach, 0);
}

/* The extension is not (or no longer) here: tell the launcher and exit. */
void
st_exit_absent(void)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	st_slot->absent = true;
	LWLockRelease(te_shared->lock);
	proc_exit(0);
}

/* Should this outcome line be written, or counted into the next summary? */
bool
st_log_allowed(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(st_log_window, now, ST_LOG_WINDOW_MS))
	{
		if (st_log_suppressed > 0)
			ereport(LOG,
					(errmsg("taskevents: %d more failed deliveries in the last %d s were not logged one by one; see taskevents.status",
							st_log_suppressed, ST_LOG_WINDOW_MS / 1000)));
		st_log_window = now;
		st_log_lines = 0;
		st_log_suppressed = 0;
	}
	if (st_log_lines < ST_LOG_BURST)
	{
		st_log_lines++;
		return true;
	}
	st_log_suppressed++;
	return false;
}

/* Count a round's outcomes in the slot. */
void
st_count(uint64 published, uint64 retried, uint64 dead, bool answered)
{
	LWLockAcquire(te_shared->lock, LW_EXCLUSIVE);
	st_slot->published += published;
	st_slot->retried += retried;
	st_slot->dead += dead;
	if (answered)
		st_slot->sidecar_reachable = true;
	LWLockRelease(te_shared->lock);
}

/* The state the worker last published. */
TeWorkerState
st_state(void)
{
	return st_slot->state;
}

/* Did the sidecar answer last time the worker looked? */
bool
st_reachable(void)
{
	return st_slot->sidecar_reachable;
}
