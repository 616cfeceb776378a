/*-------------------------------------------------------------------------
 * cloudevent.h
 *		One captured change, the events it becomes, and their CloudEvent JSON.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_CLOUDEVENT_H
#define TASKEVENTS_CLOUDEVENT_H

#include "lib/stringinfo.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* What a change is: the outbox column "events" holds these bits. */
#define TE_EV_CREATED			0x0001
#define TE_EV_UPDATED			0x0002
#define TE_EV_DELETED			0x0004
#define TE_EV_COMPLETED			0x0008
#define TE_EV_UNCOMPLETED		0x0010
#define TE_EV_REM_SCHEDULED		0x0020
#define TE_EV_REM_RESCHEDULED	0x0040
#define TE_EV_REM_CANCELLED		0x0080
#define TE_EV_SNAPSHOT			0x0100	/* a backfill: the task as it is */
/* How the ids render in data: numbers rather than strings. */
#define TE_F_TASK_ID_NUMBER		0x1000
#define TE_F_USER_ID_NUMBER		0x2000
/* Changes whose events cannot be sent: dead letters at once, with the reason. */
#define TE_F_NO_TASK_ID			0x4000	/* the task id was null */
#define TE_F_TOO_BIG			0x8000	/* changes over 64 MB: not kept */
/* A copy queued by taskevents.replay(): the same events, ids and contents. */
#define TE_F_REPLAYED			0x10000

/*
 * A change has up to four events, each in a fixed slot: the slot orders them
 * (this is the publishing order), names the bit of the "done" mask, and
 * derives the event id from the change's base id.
 */
#define TE_SLOT_TASK		0		/* task.created / updated / deleted */
#define TE_SLOT_COMPLETION	1		/* task.completed / uncompleted */
#define TE_SLOT_SYNC		2		/* sync.task */
#define TE_SLOT_REMINDER	3		/* reminder.* */
#define TE_MAX_EVENTS		4
#define TE_ALL_SLOTS		0x0F

typedef enum TeTopic
{
	TE_TOPIC_TASK_EVENTS,
	TE_TOPIC_TASK_UPDATES,
	TE_TOPIC_REMINDERS
} TeTopic;

/* One row of taskevents.outbox. */
typedef struct TeChange
{
	int64		seq;
	pg_uuid_t	event_id;		/* base id; each event's id derives from it */
	int32		events;			/* TE_EV_* and TE_F_* bits */
	TimestampTz changed_at;
	char	   *task_id;
	char	   *user_id;		/* NULL: SQL null */
	char	   *title;			/* NULL: SQL null */
	bool		completed;
	bool		completed_null;
	bool		due_date_null;
	TimestampTz due_date;
	char	   *changes;		/* JSON object of changed fields, or NULL */
	char	   *trace_id;
	char	   *traceparent;	/* NULL: none */
} TeChange;

/* One event of a change. */
typedef struct TeEvent
{
	int			slot;
	const char *type;			/* "task.created", ... */
	const char *action;			/* "created", ... */
	TeTopic		topic;
} TeEvent;

extern int	te_change_events(const TeChange *c, TeEvent *out);
extern void te_event_id(const TeChange *c, int slot, pg_uuid_t *out);
extern const char *te_topic_name(TeTopic topic);
extern void te_append_cloudevent(StringInfo buf, const TeChange *c, const TeEvent *ev);

extern void te_append_json_string(StringInfo buf, const char *s);
extern void te_append_uuid(StringInfo buf, const pg_uuid_t *uuid);
extern void te_append_timestamp(StringInfo buf, TimestampTz ts);
extern void te_append_json_value(StringInfo buf, Datum value, Oid typid, bool isnull);
extern char *te_datum_text(Datum value, Oid typid);
extern bool te_type_is_number(Oid typid);
extern bool te_is_json_number(const char *s);
extern const char *te_event_unsendable(const TeChange *c, const TeEvent *ev);

#endif							/* TASKEVENTS_CLOUDEVENT_H */
