/*-------------------------------------------------------------------------
 * round.h
 *		One round of the delivery worker: build, send, record (round.c).
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_ROUND_H
#define TASKEVENTS_ROUND_H

#include "utils/hsearch.h"

#include "cloudevent.h"
#include "dapr.h"
#include "queue.h"

/* Events free to go, FIFO: one queue per topic, one for re-queued dead letters. */
#define RD_NQUEUES (TE_TOPIC_REMINDERS + 2)
#define RD_RESENT_QUEUE (RD_NQUEUES - 1)

/* One event to send: of a claimed change, or a re-queued dead letter. */
typedef struct RdEvent
{
	QuChange   *change;			/* NULL for a re-queued dead letter */
	QuResend   *resend;
	TeEvent		ev;
	pg_uuid_t	id;
	const char *type;
	const char *topic;
	const char *task_id;
	char	   *body;			/* server encoding: what dead letters keep */
	TeRequest	req;			/* body and partition key in UTF-8 */
	int			attempt;		/* this attempt's number */
	uint64		key;			/* its task's in the round's chains */
	struct RdEvent *next;		/* next event of the same task */
} RdEvent;

/* A FIFO of events free to go. */
typedef struct RdQueue
{
	RdEvent   **items;
	int			head;
	int			tail;
} RdQueue;

/* The stages of a round, timed for its DEBUG1 line. */
typedef enum RdStage
{
	RD_CLAIM,
	RD_BUILD,
	RD_DURABLE,
	RD_SEND,
	RD_RECORD,
	RD_NSTAGES
} RdStage;

/* Everything one round works on, in the memory of the step that claimed it. */
typedef struct RdRound
{
	QuRound		q;
	RdQueue		ready[RD_NQUEUES];
	int			cap;			/* each queue's room */
	int			nready;
	HTAB	   *tails;			/* each task's last event so far (RdTail) */
	Size		bytes;			/* titles and changes claimed */
	bool		may_claim_more; /* while sent (qu_claim_more()) */
	int			nclaims;
	long		more_us;		/* spent claiming and building more */
	int			next_queue;		/* round robin over the queues */
	List	   *failed;			/* events that failed and may be retried */
	int			answered;		/* got an HTTP answer */
	int			unanswered;		/* refused, reset, timed out */
	TimestampTz last_answer;	/* when a request last came back */
	bool		slow_logged;
	uint64		published;
	uint64		retried;
	uint64		ndead;
	int			requests;		/* HTTP requests started */
	double		in_flight_us;	/* requests in flight x microseconds waited */
	TimestampTz stage_end;		/* when the last stage timed ended */
	long		stage_us[RD_NSTAGES];
} RdRound;

extern void rd_init_encoding(void);
extern RdRound *rd_claim(void);
extern void rd_build(RdRound *r);
extern void rd_stage(RdRound *r, RdStage stage);
extern void rd_send(RdRound *r, bool bulk, bool may_claim_more);
extern const char *rd_unanswered(const RdRound *r);
extern void rd_record(RdRound *r);

#endif							/* TASKEVENTS_ROUND_H */
