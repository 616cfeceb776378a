/*-------------------------------------------------------------------------
 * durable.h
 *		A round's commits durable before it sends (durable.c).
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_DURABLE_H
#define TASKEVENTS_DURABLE_H

#include "access/xlogdefs.h"

extern XLogRecPtr du_flush_wal(void);
extern bool du_standbys_have(XLogRecPtr lsn);

#endif							/* TASKEVENTS_DURABLE_H */
