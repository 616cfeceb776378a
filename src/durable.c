/*-------------------------------------------------------------------------
 * durable.c
 *		Nothing is sent before its commit is durable: WAL flushed up to
 *		every commit a round claimed, and with taskevents.standby_slots on
 *		those standbys too, so that a standby a failover promotes has every
 *		change whose events consumers saw.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "durable.h"
#include "settings.h"
#include "status.h"

/* Since when the standbys hold delivery back, and whether that was logged. */
static XLogRecPtr du_waited_for = InvalidXLogRecPtr;
static TimestampTz du_since;
static bool du_logged;

/*
 * Flush WAL up to the end of the last record inserted, which covers the
 * commit of every change the claim saw; returns that position.  When that
 * record ended at a page boundary, the insert position points past the next
 * page's header, a page nobody wrote yet: step back to the boundary.
 */
XLogRecPtr
du_flush_wal(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	XLogFlush(lsn);
	return lsn;
}

/*
 * Is a standby of taskevents.standby_slots behind lsn: has it not flushed
 * WAL up to there (its restart_lsn, which a physical slot advances as the
 * standby reports its flush position)?  Then *slot names the first such, and
 * *flushed is how far it is.  A slot that does not exist has flushed nothing.
 * Leaves nothing allocated: a round may be held across many of these checks.
 */
static bool
du_standby_behind(XLogRecPtr lsn, NameData *slot, XLogRecPtr *flushed)
{
	char	   *names = pstrdup(te_standby_slots);
	List	   *list;
	ListCell   *lc;
	bool		behind = false;

	if (!SplitIdentifierString(names, ',', &list))
		list = NIL;				/* the check hook let nothing else in */
	foreach(lc, list)
	{
		char	   *name = lfirst(lc);

		*flushed = InvalidXLogRecPtr;
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		for (int i = 0; i < max_replication_slots; i++)
		{
			ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

			if (s->in_use && strcmp(NameStr(s->data.name), name) == 0)
			{
				SpinLockAcquire(&s->mutex);
				if (!OidIsValid(s->data.database))
					*flushed = s->data.restart_lsn;
				SpinLockRelease(&s->mutex);
			}
		}
		LWLockRelease(ReplicationSlotControlLock);
		if (*flushed < lsn)
		{
			namestrcpy(slot, name);
			behind = true;
			break;
		}
	}
	list_free(list);
	pfree(names);
	return behind;
}

/*
 * Have the standbys of taskevents.standby_slots flushed WAL up to lsn?
 * While they have not, the worker's state says it waits, and after 10 s the
 * log says for which standby; the log says when they caught up.
 */
bool
du_standbys_have(XLogRecPtr lsn)
{
	NameData	slot;
	XLogRecPtr	flushed;

	if (!du_standby_behind(lsn, &slot, &flushed))
	{
		if (du_logged)
			ereport(LOG, (errmsg("taskevents: the standbys of taskevents.standby_slots caught up; delivery goes on")));
		if (!XLogRecPtrIsInvalid(du_waited_for))
			st_set_state_keep(TE_WORKER_DELIVERING);
		du_waited_for = InvalidXLogRecPtr;
		du_logged = false;
		return true;
	}
	if (XLogRecPtrIsInvalid(du_waited_for))
		du_since = GetCurrentTimestamp();
	du_waited_for = lsn;
	st_set_state_keep(TE_WORKER_STANDBY_WAIT);
	if (!du_logged && TimestampDifferenceExceeds(du_since, GetCurrentTimestamp(), 10000))
	{
		du_logged = true;
		ereport(LOG,
				(errmsg("taskevents: delivery waits for the standby of replication slot \"%s\": it has flushed WAL up to %X/%X, the events need %X/%X",
						NameStr(slot), LSN_FORMAT_ARGS(flushed), LSN_FORMAT_ARGS(lsn)),
				 errhint("A slot that does not exist or whose standby is down holds delivery back; remove it from taskevents.standby_slots to go on.")));
	}
	return false;
}
