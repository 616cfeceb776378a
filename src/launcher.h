/*-------------------------------------------------------------------------
 * launcher.h
 *		The launcher: one delivery worker per database with the extension.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_LAUNCHER_H
#define TASKEVENTS_LAUNCHER_H

extern void te_launcher_init(void);

#endif							/* TASKEVENTS_LAUNCHER_H */
