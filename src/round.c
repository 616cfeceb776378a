/*-------------------------------------------------------------------------
 * round.c
 *		One round of the delivery worker, after its claim: the CloudEvents
 *		of the changes claimed, each task's events chained in commit order;
 *		the requests to Dapr, as many in flight as taskevents.concurrency
 *		allows; the outcomes (published, retried after a backoff, or dead
 *		letters) recorded in the queue.  worker.c runs the rounds.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "dapr.h"
#include "durable.h"
#include "round.h"
#include "settings.h"
#include "spiutil.h"
#include "status.h"

/* The last event so far of each task's chain in a round. */
typedef struct RdTail
{
	uint64		key;			/* hash of the task id */
	RdEvent    *tail;
} RdTail;

/* One bulk publish request and the events it carries. */
typedef struct RdBulk
{
	TeRequest	req;
	RdEvent   **events;
	int			n;
} RdBulk;

/* Most entries in one bulk publish request; fewest when there are more. */
#define RD_BULK_MAX 500
#define RD_BULK_MIN 100

/* No answer for this long: the round says it is waiting. */
#define RD_SLOW_MS 10000

/* About how many bytes of titles and changes one round reads at most. */
#define RD_ROUND_BYTES (16 * 1024 * 1024)

/* How many claims of taskevents.batch_size one round makes at most. */
#define RD_MAX_CLAIMS 4

/*
 * Requests of the round got no answer and none has been answered: the
 * sidecar may be away or frozen.  Start nothing more: a frozen daprd keeps
 * what is sent into it and publishes it when thawed, as copies of what the
 * worker sends again; the round ends with the requests in flight.
 */
#define RD_STALLED(r) ((r)->answered == 0 && (r)->unanswered > 0)

/* How to convert the database's text to UTF-8 (rd_init_encoding). */
static FmgrInfo rd_conv;
static bool rd_conv_ok = false;

/* Find how to convert the database's text to UTF-8 (in a transaction). */
void
rd_init_encoding(void)
{
	int			enc = GetDatabaseEncoding();
	Oid			proc;

	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return;
	proc = FindDefaultConversionProc(enc, PG_UTF8);
	if (OidIsValid(proc))
	{
		fmgr_info_cxt(proc, &rd_conv, TopMemoryContext);
		rd_conv_ok = true;
	}
}

/*
 * Text of the database encoding as UTF-8, what is sent: *out and *outlen.
 * Returns why it cannot be, or NULL.  Never raises an ERROR for the text.
 */
static const char *
rd_utf8(const char *s, size_t len, const char **out, size_t *outlen)
{
	int			enc = GetDatabaseEncoding();
	char	   *dst;
	int			done;

	*out = s;
	*outlen = len;
	if (enc == PG_UTF8)
		return NULL;
	if (enc == PG_SQL_ASCII)
		return pg_verify_mbstr(PG_UTF8, s, len, true) ? NULL :
			"the event is not valid UTF-8 (the database encoding is SQL_ASCII)";
	if (!rd_conv_ok)
		return "the database encoding has no conversion to UTF-8";
	dst = MemoryContextAllocHuge(CurrentMemoryContext, len * MAX_CONVERSION_GROWTH + 1);
	done = DatumGetInt32(FunctionCall6(&rd_conv, Int32GetDatum(enc), Int32GetDatum(PG_UTF8),
									   CStringGetDatum(s), CStringGetDatum(dst),
									   Int32GetDatum(len), BoolGetDatum(true)));
	if (done < len)
		return "a character of the event has no equivalent in UTF-8";
	*out = dst;
	*outlen = strlen(dst);
	return NULL;
}

/* One structured log line for an event's outcome. */
static void
rd_log_outcome(int elevel, const char *outcome, const RdEvent *e, int attempt,
			   long status, const char *error)
{
	StringInfoData id;
	const TeChange *c = e->change ? &e->change->c : NULL;

	if (!message_level_is_interesting(elevel))
		return;
	if (elevel >= LOG && !st_log_allowed())
		return;
	initStringInfo(&id);
	te_append_uuid(&id, &e->id);
	ereport(elevel,
			(errmsg("taskevents: outcome=%s event_type=%s topic=%s task_id=%s user_id=%s correlation_id=%s event_id=%s dapr_status=%ld attempt=%d error=\"%s\"",
					outcome, e->type, e->topic, e->task_id,
					c && c->user_id ? c->user_id : "", c ? c->trace_id : "",
					id.data, status, attempt, st_error_text(error))));
	pfree(id.data);
}

/* Queue an event that is free to go. */
static void
rd_push(RdRound *r, RdEvent *e)
{
	RdQueue    *q = &r->ready[e->change ? (int) e->ev.topic : RD_RESENT_QUEUE];

	q->items[q->tail++] = e;
	r->nready++;
}

/* Dead-letter an event, with its number of attempts and last outcome. */
static void
rd_dead(RdRound *r, RdEvent *e, int attempts, long status, const char *error)
{
	QuDead	   *d = palloc0(sizeof(QuDead));

	d->id = e->id;
	d->change = e->change;
	d->type = e->type;
	d->topic = e->topic;
	d->body = e->body;
	d->attempts = attempts;
	d->status = (int) status;
	d->error = st_error_text(error);
	r->q.dead = lappend(r->q.dead, d);
	r->ndead++;
	rd_log_outcome(WARNING, "dead_letter", e, attempts, status, error);
}

/* Dead-letter an event that was never sent; its chain goes on. */
static void
rd_dead_unsent(RdRound *r, RdEvent *e, const char *why)
{
	rd_dead(r, e, e->change->attempts + 1, 0, why);
	e->change->done |= 1 << e->ev.slot;
	e->change->attempts = 0;
	e->change->dirty = true;
}

/*
 * Fill in an event's request: body and partition key in UTF-8.  Returns why
 * it cannot be sent, or NULL.
 */
static const char *
rd_prepare(RdEvent *e)
{
	const char *why;
	size_t		len;

	why = rd_utf8(e->body, strlen(e->body), &e->req.body, &e->req.body_len);
	if (why == NULL)
		why = rd_utf8(e->task_id, strlen(e->task_id), &e->req.partition_key, &len);
	if (why == NULL && e->req.body_len > (size_t) te_max_body_kb * 1024)
		why = psprintf("event of %zu bytes is over taskevents.max_body_size (%d kB)",
					   e->req.body_len, te_max_body_kb);
	e->req.topic = e->topic;
	e->req.owner = e;
	return why;
}

/* A new event of a change (slot k of its events). */
static RdEvent *
rd_event(QuChange *ch, const TeEvent *ev)
{
	RdEvent    *e = palloc0(sizeof(RdEvent));

	e->change = ch;
	e->ev = *ev;
	te_event_id(&ch->c, ev->slot, &e->id);
	e->type = ev->type;
	e->topic = te_topic_name(ev->topic);
	e->task_id = ch->c.task_id;
	return e;
}

/*
 * Chain an event behind the last one of its task (key) in the round, or
 * queue it when its task has none in flight, failed or waiting (a task's
 * chain ends when its last event is settled: rd_chain_next()).
 */
static void
rd_chain(RdRound *r, uint64 key, RdEvent *e)
{
	bool		found;
	RdTail	   *ent = hash_search(r->tails, &key, HASH_ENTER, &found);

	e->key = key;
	if (found)
		ent->tail->next = e;
	else
		rd_push(r, e);
	ent->tail = e;
}

/*
 * Build the events of one change that are still to go and chain them behind
 * its task's; an event that cannot be built or sent is dead-lettered.
 */
static void
rd_build_change(RdRound *r, QuChange *ch)
{
	TeEvent		evs[TE_MAX_EVENTS];
	int			nev = te_change_events(&ch->c, evs);
	uint64		key = hash_bytes_extended((const unsigned char *) ch->c.task_id,
										  strlen(ch->c.task_id), 0);

	for (int k = 0; k < nev; k++)
	{
		RdEvent    *e;
		StringInfoData body;
		const char *why = te_event_unsendable(&ch->c, &evs[k]);

		if (ch->done & (1 << evs[k].slot))
			continue;
		e = rd_event(ch, &evs[k]);
		if (why == NULL)
		{
			initStringInfo(&body);
			te_append_cloudevent(&body, &ch->c, &evs[k]);
			e->body = body.data;
			why = rd_prepare(e);
		}
		if (why != NULL)
			rd_dead_unsent(r, e, why);
		else
			rd_chain(r, key, e);
	}
}

/* Dead-letter whatever of a change is not settled: its events could not be built. */
static void
rd_build_failed(RdRound *r, QuChange *ch, const char *why)
{
	TeEvent		evs[TE_MAX_EVENTS];
	int			nev = te_change_events(&ch->c, evs);

	for (int k = 0; k < nev; k++)
		if (!(ch->done & (1 << evs[k].slot)))
			rd_dead_unsent(r, rd_event(ch, &evs[k]), why);
}

/*
 * A re-queued dead letter, sent as it was stored: per task one at a time,
 * in the order the claim read them (capture order), chained like a task's
 * events.
 */
static void
rd_build_resend(RdRound *r, QuResend *d)
{
	RdEvent    *e = palloc0(sizeof(RdEvent));
	const char *why;

	e->resend = d;
	e->id = d->id;
	e->type = d->type;
	e->topic = d->topic;
	e->task_id = d->task_id;
	e->body = (char *) d->body;
	e->attempt = d->attempts + 1;
	why = rd_prepare(e);
	if (why != NULL)
	{
		d->published = false;
		d->error = why;
		return;
	}
	/* a key of their own: re-sent dead letters wait only behind each other */
	rd_chain(r, hash_bytes_extended((const unsigned char *) d->task_id, strlen(d->task_id), 1), e);
}

/* Room in each queue for n more events (the queues' items are never reused). */
static void
rd_reserve(RdRound *r, int n)
{
	r->cap += n;
	for (int q = 0; q < RD_NQUEUES; q++)
		r->ready[q].items = r->ready[q].items == NULL ? palloc(sizeof(RdEvent *) * r->cap) :
			repalloc(r->ready[q].items, sizeof(RdEvent *) * r->cap);
}

/*
 * Build every event of a claim: changes in sequence order, each task's
 * events chained in that order.  A change whose events cannot be built (an
 * error, say out of memory) becomes dead letters; the others go on.  No
 * transaction is open (the claim committed), so building holds no lock, pin
 * or buffer an error could leave behind, and what it allocated is the
 * round's memory: catching its error needs no abort.
 */
static void
rd_build_claim(RdRound *r, QuRound *claim)
{
	MemoryContext cxt = CurrentMemoryContext;

	Assert(!IsTransactionState());

	rd_reserve(r, claim->nchanges * TE_MAX_EVENTS + 1);
	for (int i = 0; i < claim->nchanges; i++)
	{
		QuChange   *ch = &claim->changes[i];
		TeEvent		evs[TE_MAX_EVENTS];
		int			nev = te_change_events(&ch->c, evs);

		r->bytes += ch->bytes;
		for (int k = 0; k < nev; k++)
			ch->slots |= 1 << evs[k].slot;
		if (ch->blocked)
			continue;
		PG_TRY();
		{
			rd_build_change(r, ch);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			rd_build_failed(r, ch, psprintf("the event could not be built: %s", edata->message));
		}
		PG_END_TRY();
	}
}

/* Build every event of the round's first claim, and its re-sent dead letters. */
void
rd_build(RdRound *r)
{
	HASHCTL		hctl = {0};

	hctl.keysize = sizeof(uint64);
	hctl.entrysize = sizeof(RdTail);
	hctl.hcxt = CurrentMemoryContext;
	r->tails = hash_create("taskevents chains", Max(r->q.nchanges, 16), &hctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	r->nclaims = 1;
	rd_build_claim(r, &r->q);
	rd_reserve(r, r->q.nresends);
	for (int i = 0; i < r->q.nresends; i++)
		rd_build_resend(r, &r->q.resends[i]);
}

/* The backoff before attempt n+1: doubling from backoff_min, capped, with jitter. */
static long
rd_backoff_ms(int attempts)
{
	double		ms = te_backoff_min_ms;

	for (int i = 1; i < attempts && ms < te_backoff_max_ms; i++)
		ms *= 2;
	if (ms > te_backoff_max_ms)
		ms = te_backoff_max_ms;
	return (long) (ms * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

/*
 * An event is settled: the next of its task's chain is free to go, or, the
 * last one so far, the chain ends; a claim made while the round is sent
 * then queues the task's next event at once.
 */
static void
rd_chain_next(RdRound *r, RdEvent *e)
{
	if (e->next != NULL)
		rd_push(r, e->next);
	else
		(void) hash_search(r->tails, &e->key, HASH_REMOVE, NULL);
}

/* An event of a change is settled (published or dead-lettered): mark it, go on with its chain. */
static void
rd_settled(RdRound *r, RdEvent *e)
{
	e->change->done |= 1 << e->ev.slot;
	e->change->attempts = 0;
	e->change->dirty = true;
	rd_chain_next(r, e);
}

/* A dead letter of an event that was sent. */
static void
rd_dead_sent(RdRound *r, RdEvent *e)
{
	rd_dead(r, e, e->attempt, e->req.status, e->req.error);
	rd_settled(r, e);
}

/*
 * A published event of a change is of no more use (its change says it is
 * done; a dead letter would have kept its body): its memory goes back to
 * the round, for what it claims next.
 */
static void
rd_free_published(RdEvent *e)
{
	if (e->req.body != e->body)
		pfree((char *) e->req.body);
	pfree(e->body);
	pfree(e);
}

/* Handle one finished request. */
static void
rd_finished(RdRound *r, RdEvent *e)
{
	if (e->req.status > 0)
		r->answered++;
	else if (e->req.outcome != TE_OUTCOME_OK)
		r->unanswered++;
	if (e->resend != NULL)
	{
		QuResend   *d = e->resend;

		rd_chain_next(r, e);	/* the task's next re-sent dead letter */
		d->published = e->req.outcome == TE_OUTCOME_OK;
		d->status = e->req.status;
		d->error = st_error_text(e->req.error);
		if (d->published)
			r->published++;
		else
			rd_log_outcome(WARNING, "dead_letter", e, e->attempt, d->status, e->req.error);
		return;
	}
	e->attempt = e->change->attempts + 1;
	switch (e->req.outcome)
	{
		case TE_OUTCOME_OK:
			r->published++;
			rd_log_outcome(DEBUG2, "published", e, e->attempt, e->req.status, "");
			rd_settled(r, e);
			rd_free_published(e);
			break;
		case TE_OUTCOME_PERMANENT:
			rd_dead_sent(r, e);
			break;
		case TE_OUTCOME_RETRY:
			r->failed = lappend(r->failed, e);
			break;
	}
}

/* With taskevents.dapr_enabled = off: log the event and count it done. */
static void
rd_skip(RdEvent *e)
{
	e->req.outcome = TE_OUTCOME_OK;
	ereport(DEBUG1,
			(errmsg("taskevents: dapr_enabled=off event_type=%s topic=%s task_id=%s event=%s",
					e->type, e->topic, e->task_id, e->body)));
}

/* Send one event on its own (or settle it at once: dapr_enabled off). */
static void
rd_start_one(RdRound *r, RdEvent *e)
{
	if (!te_dapr_enabled)
		rd_skip(e);
	else
	{
		r->requests++;
		te_dapr_start(&e->req);
		if (e->req.handle != NULL)
			return;
	}
	rd_finished(r, e);
}

/* A bulk request is back: each entry's outcome, then as for single events. */
static void
rd_bulk_finished(RdRound *r, RdBulk *b)
{
	for (int i = 0; i < b->n; i++)
	{
		RdEvent    *e = b->events[i];

		e->req.status = b->req.status;
		e->req.outcome = b->req.outcome;
		strlcpy(e->req.error, b->req.error, sizeof(e->req.error));
		if (b->req.partial)
		{
			StringInfoData id;

			initStringInfo(&id);
			te_append_uuid(&id, &e->id);
			e->req.outcome = te_dapr_entry_outcome(&b->req, id.data, e->req.error);
			if (e->req.outcome == TE_OUTCOME_OK)
				e->req.error[0] = '\0';
		}
		rd_finished(r, e);
	}
	te_dapr_release(&b->req);
	pfree((char *) b->req.body);
	pfree(b->events);
	pfree(b);
}

/*
 * Send the head of a topic's queue with Dapr's bulk publish: up to
 * RD_BULK_MAX entries within taskevents.max_body_size, each with the task id
 * as its partitionKey.  The queue holds at most one event per task, so a
 * task's events never share a request and per-task order holds.
 *
 * The events ready are shared out over the requests that may still start,
 * so that as many are in flight as taskevents.concurrency allows: the first
 * events of 4,000 tasks go as 16 requests of 250, not as 8 of 500 with the
 * other 8 waiting for those tasks' next events.  Below RD_BULK_MIN entries
 * more requests cost daprd more than they gain.
 */
static void
rd_start_bulk(RdRound *r, RdQueue *q)
{
	RdBulk	   *b = palloc0(sizeof(RdBulk));
	StringInfoData body;
	size_t		limit = (size_t) te_max_body_kb * 1024;
	size_t		size = 2;
	int			slots = Max(te_concurrency - te_dapr_in_flight(), 1);
	int			max = Min(Max((r->nready + slots - 1) / slots, RD_BULK_MIN), RD_BULK_MAX);

	/* the body's size at once: growing it by doubling copies it over and over */
	for (int i = q->head; i < q->tail && i - q->head < max && size < limit; i++)
		size += q->items[i]->req.body_len + strlen(q->items[i]->req.partition_key) + 160;
	b->events = palloc(sizeof(RdEvent *) * max);
	initStringInfo(&body);
	enlargeStringInfo(&body, Min(size, limit));
	appendStringInfoChar(&body, '[');
	while (q->head < q->tail && b->n < max)
	{
		RdEvent    *e = q->items[q->head];

		if (b->n > 0 && body.len + e->req.body_len + strlen(e->req.partition_key) + 160 > limit)
			break;
		q->head++;
		r->nready--;
		if (b->n > 0)
			appendStringInfoChar(&body, ',');
		appendStringInfoString(&body, "{\"entryId\":\"");
		te_append_uuid(&body, &e->id);
		appendStringInfoString(&body, "\",\"event\":");
		appendBinaryStringInfo(&body, e->req.body, e->req.body_len);
		appendStringInfoString(&body, ",\"contentType\":\"application/cloudevents+json\",\"metadata\":{\"partitionKey\":");
		te_append_json_string(&body, e->req.partition_key);
		appendStringInfoString(&body, "}}");
		b->events[b->n++] = e;
	}
	appendStringInfoChar(&body, ']');

	b->req.body = body.data;
	b->req.body_len = body.len;
	b->req.topic = b->events[0]->topic;
	b->req.bulk = true;
	b->req.owner = b;
	r->requests++;
	te_dapr_start(&b->req);
	if (b->req.handle == NULL)
		rd_bulk_finished(r, b);
}

/*
 * Requests in flight and none back for a while: daprd is slow (its Kafka
 * producer retrying, say).  Waiting is right, as what it publishes late
 * would be published twice if sent again; say so once a round.
 */
static void
rd_note_slow(RdRound *r)
{
	char		msg[TE_DAPR_ERROR_LEN];

	if (r->slow_logged || te_dapr_in_flight() == 0 ||
		!TimestampDifferenceExceeds(r->last_answer, GetCurrentTimestamp(), RD_SLOW_MS))
		return;
	r->slow_logged = true;
	snprintf(msg, sizeof(msg),
			 "the Dapr sidecar at %s has not answered %d requests for %d s; waiting for its answers up to taskevents.timeout",
			 te_dapr_endpoint(), te_dapr_in_flight(), RD_SLOW_MS / 1000);
	st_set_error(msg);
	ereport(LOG, (errmsg("taskevents: %s", msg),
				  errdetail("A request given up may still be published; its events would then be published twice.")));
}

/* How long the send may wait for answers: until a silence is due to be noted. */
static int
rd_wait_ms(const RdRound *r)
{
	if (r->slow_logged)
		return te_timeout_ms;	/* curl's own timeouts end it sooner */
	return (int) TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												 TimestampTzPlusMilliseconds(r->last_answer, RD_SLOW_MS));
}

/* A stage of the round has ended: note how long it took. */
void
rd_stage(RdRound *r, RdStage stage)
{
	TimestampTz now = GetCurrentTimestamp();

	r->stage_us[stage] = now - r->stage_end;
	r->stage_end = now;
}

/* Where a round's time went (DEBUG1): what taskevents.status cannot say. */
static void
rd_log(RdRound *r)
{
	double		send_us = Max(r->stage_us[RD_SEND], 1);

	int			nchanges = r->q.nresends;

	for (QuRound *claim = &r->q; claim != NULL; claim = claim->next)
		nchanges += claim->nchanges;
	ereport(DEBUG1,
			(errmsg_internal("taskevents: round of %d changes in %d claims, %d requests: claim %.1f ms, build %.1f ms, durable %.1f ms, send %.1f ms (%.1f requests in flight on average; %.1f ms of it claiming and building more), record %.1f ms",
							 nchanges, r->nclaims, r->requests,
							 r->stage_us[RD_CLAIM] / 1000.0, r->stage_us[RD_BUILD] / 1000.0,
							 r->stage_us[RD_DURABLE] / 1000.0, send_us / 1000.0,
							 r->in_flight_us / send_us, r->more_us / 1000.0,
							 r->stage_us[RD_RECORD] / 1000.0)));
}

/*
 * Claim more while the round is sent, when it was cut short (more is
 * waiting), every event it has ready is on its way and a request could
 * start: the next changes are claimed, built and made durable while daprd
 * answers those in flight, so that daprd and Kafka do not wait between
 * rounds.  The round stays one: one cursor, one record, and a task's new
 * events chained behind its events in flight or failed.  Not once anything
 * failed (the round ends and backs off), nor past RD_MAX_CLAIMS or
 * RD_ROUND_BYTES, nor with a reload waiting.  A claim that fails ends the
 * claiming, not the round: what was sent is recorded.  True when it claimed.
 */
static bool
rd_claim_more(RdRound *r)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start;
	QuRound    *more;
	volatile bool claimed = false;

	if (!r->may_claim_more || !r->q.more || r->nclaims >= RD_MAX_CLAIMS ||
		r->bytes >= RD_ROUND_BYTES || r->failed != NIL || r->unanswered > 0 ||
		r->nready > 0 || te_dapr_in_flight() >= te_concurrency || ConfigReloadPending)
		return false;
	start = GetCurrentTimestamp();
	more = palloc(sizeof(QuRound));
	PG_TRY();
	{
		if (!qu_claim_more(&r->q, more, te_batch_size, RD_ROUND_BYTES - r->bytes))
			st_exit_absent();
		claimed = true;
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		te_spi_abort();
		RESUME_INTERRUPTS();
		r->may_claim_more = false;
		ereport(LOG, (errmsg("taskevents: could not claim more while sending; the round ends with what it claimed")));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	if (!claimed)
		return false;
	r->nclaims++;
	rd_build_claim(r, more);
	(void) du_flush_wal();		/* nothing is sent before its commit is durable */
	r->more_us += GetCurrentTimestamp() - start;
	return true;
}

/* Start what is ready, as many requests as may be in flight. */
static void
rd_start_ready(RdRound *r, bool bulk)
{
	while (r->nready > 0 && te_dapr_in_flight() < te_concurrency && !RD_STALLED(r))
	{
		int			qi = r->next_queue;
		RdQueue    *q;

		while (r->ready[qi].head == r->ready[qi].tail)
			qi = (qi + 1) % RD_NQUEUES;
		r->next_queue = (qi + 1) % RD_NQUEUES;
		q = &r->ready[qi];
		if (bulk && qi != RD_RESENT_QUEUE)
			rd_start_bulk(r, q);
		else
		{
			r->nready--;
			rd_start_one(r, q->items[q->head++]);
		}
	}
}

/*
 * Run the requests of a round to completion, checking for interrupts;
 * may_claim_more: the round may claim more meanwhile (rd_claim_more()).
 */
void
rd_send(RdRound *r, bool bulk, bool may_claim_more)
{
	TeRequest  *done[64];

	r->last_answer = GetCurrentTimestamp();
	r->may_claim_more = may_claim_more;
	for (;;)
	{
		int			n;
		int			in_flight;
		TimestampTz waited;
		TimestampTz now;

		do
			rd_start_ready(r, bulk);
		while (rd_claim_more(r));
		if ((r->nready == 0 || RD_STALLED(r)) && te_dapr_in_flight() == 0)
			break;
		in_flight = te_dapr_in_flight();
		if (in_flight == 0)
			continue;			/* each settled at once (dapr_enabled off, say) */
		waited = GetCurrentTimestamp();
		n = te_dapr_wait(done, lengthof(done), rd_wait_ms(r));
		now = GetCurrentTimestamp();
		r->in_flight_us += (double) in_flight * (now - waited);
		if (n > 0)
			r->last_answer = now;
		else
			rd_note_slow(r);
		for (int i = 0; i < n; i++)
		{
			if (done[i]->bulk)
				rd_bulk_finished(r, (RdBulk *) done[i]->owner);
			else
				rd_finished(r, (RdEvent *) done[i]->owner);
		}
		st_check_alive();
	}
	rd_stage(r, RD_SEND);
}

/* Failures of the round that may heal: back off, or dead-letter when too old or tried too often. */
static void
rd_apply_failures(RdRound *r)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, r->failed)
	{
		RdEvent    *e = lfirst(lc);
		QuChange   *ch = e->change;

		ch->attempts = e->attempt;
		ch->dirty = true;
		ch->failed = true;
		ch->last_status = e->req.status;
		ch->last_error = st_error_text(e->req.error);
		if ((te_max_attempts > 0 && e->attempt >= te_max_attempts) ||
			(te_max_age_s > 0 && now - ch->c.changed_at > (int64) te_max_age_s * USECS_PER_SEC))
		{
			/* dead: the change's next event is due at once */
			rd_dead_sent(r, e);
			ch->next_attempt_at = now;
			continue;
		}
		ch->next_attempt_at = TimestampTzPlusMilliseconds(now, rd_backoff_ms(e->attempt));
		r->retried++;
		rd_log_outcome(LOG, "retry", e, e->attempt, e->req.status, e->req.error);
	}
}

/* Count the round's outcomes in the worker's slot; note its last error. */
static void
rd_count(RdRound *r)
{
	st_count(r->published, r->retried, r->ndead, r->answered > 0);
	if (r->failed != NIL)
		st_set_error(((RdEvent *) llast(r->failed))->req.error);
	else if (r->q.dead != NIL)
		st_set_error(((QuDead *) llast(r->q.dead))->error);
}

/* A new round: what the queue has for it (exits when the extension is gone). */
RdRound *
rd_claim(void)
{
	RdRound    *r = palloc0(sizeof(RdRound));

	r->stage_end = GetCurrentTimestamp();
	if (!qu_claim(&r->q, te_batch_size, RD_ROUND_BYTES))
		st_exit_absent();
	rd_stage(r, RD_CLAIM);
	return r;
}

/*
 * Every request of the round went unanswered (refused, reset, timed out)?
 * Then the first one's error, else NULL.
 */
const char *
rd_unanswered(const RdRound *r)
{
	if (r->failed == NIL || r->answered > 0)
		return NULL;
	return ((RdEvent *) linitial(r->failed))->req.error;
}

/*
 * Record the round's outcomes (exits when the extension is gone): what
 * failed backs off or becomes a dead letter, the cursor moves on.
 */
void
rd_record(RdRound *r)
{
	rd_apply_failures(r);
	if (!qu_record(&r->q))
		st_exit_absent();
	if (r->q.nchanges == 0 && r->q.nresends == 0)
		return;
	rd_count(r);
	rd_stage(r, RD_RECORD);
	rd_log(r);
}
