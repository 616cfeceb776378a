/*-------------------------------------------------------------------------
 * compat.h
 *		The one place for differences between PostgreSQL major versions.
 *
 * taskevents is built and tested on PostgreSQL 15, 17 and 18
 * (test/pgversions.sh); each macro here names what changed in a later
 * release, so that the rest of the code reads the same on every version.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_COMPAT_H
#define TASKEVENTS_COMPAT_H

#include "storage/proc.h"

#if PG_VERSION_NUM < 150000
#error "taskevents needs PostgreSQL 15 or later"
#endif

/* Local transaction id of this backend's current top-level transaction. */
#if PG_VERSION_NUM >= 170000
#define TE_CURRENT_LXID() (MyProc->vxid.lxid)
#else
#define TE_CURRENT_LXID() (MyProc->lxid)
#endif

/* This backend's PGPROC number, to find its latch from another process. */
#if PG_VERSION_NUM >= 170000
#define TE_PROC_NUMBER() (MyProcNumber)
#else
#define TE_PROC_NUMBER() (MyProc->pgprocno)
#endif

/* Does the role own the database?  (16 made ownership checks generic.) */
#if PG_VERSION_NUM >= 160000
#define TE_DATABASE_OWNERCHECK(dboid, role) \
	object_ownercheck(DatabaseRelationId, (dboid), (role))
#else
#define TE_DATABASE_OWNERCHECK(dboid, role) pg_database_ownercheck((dboid), (role))
#endif

#endif							/* TASKEVENTS_COMPAT_H */
