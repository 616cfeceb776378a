/*-------------------------------------------------------------------------
 * queue.h
 *		The delivery worker's SQL side: what a round claims from the queue,
 *		and how its outcomes are recorded.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_QUEUE_H
#define TASKEVENTS_QUEUE_H

#include "nodes/pg_list.h"
#include "utils/uuid.h"

#include "cloudevent.h"
#include "cursor.h"

/* A claimed change: from the queue tables, or from taskevents.retry. */
typedef struct QuChange
{
	TeChange	c;
	Size		bytes;			/* its title and changes */
	int			slots;			/* its events, a bit per slot */
	int			done;			/* events settled: published or dead-lettered */
	int			attempts;		/* failed attempts of its next event */
	bool		in_retry;		/* read from taskevents.retry */
	bool		blocked;		/* its task waits behind a retry: not sent */
	bool		dirty;			/* state changed this round */
	bool		failed;			/* its next event failed this round: back off */
	TimestampTz next_attempt_at;
	int			last_status;
	const char *last_error;
} QuChange;

/* A dead letter to write, with the exact body (NULL when none was built). */
typedef struct QuDead
{
	pg_uuid_t	id;
	const QuChange *change;
	const char *type;
	const char *topic;
	const char *body;
	int			attempts;
	int			status;
	const char *error;
} QuDead;

/* A dead letter an operator sent again (taskevents.resend()), and its outcome. */
typedef struct QuResend
{
	pg_uuid_t	id;
	const char *type;
	const char *topic;
	const char *task_id;
	const char *body;
	int			attempts;
	bool		published;
	int			status;
	const char *error;
} QuResend;

/*
 * One round's work: what its first claim read, and the claims it made while
 * it was sent (next: qu_claim_more()).
 */
typedef struct QuRound
{
	QuChange   *changes;		/* in sequence order */
	int			nchanges;
	struct QuRound *next;		/* the round's next claim: more changes */
	QuResend   *resends;
	int			nresends;
	List	   *dead;			/* QuDead * */
	long		sleep_ms;		/* until the next retry is due */
	bool		more;			/* cut short: more is waiting */
	QuCursor	cursor;			/* where the queue is read up to after it */
	int64		last_seq;		/* the last sequence number given out, at the last claim */
	const char *halted;			/* why nothing was claimed: the queue's objects were altered */
} QuRound;

typedef enum QuOpen
{
	QU_READY,
	QU_ABSENT,					/* no extension (any more) */
	QU_NEEDS_UPDATE				/* 1.0's objects: ALTER EXTENSION taskevents UPDATE */
} QuOpen;

extern QuOpen qu_open(void);
extern bool qu_claim(QuRound *r, int limit, Size budget);
extern bool qu_claim_more(QuRound *r, QuRound *more, int limit, Size budget);
extern bool qu_record(QuRound *r);

#endif							/* TASKEVENTS_QUEUE_H */
