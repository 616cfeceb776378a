/*-------------------------------------------------------------------------
 * dapr.h
 *		The Dapr sidecar client: many publish requests in flight over
 *		kept-alive connections (libcurl multi), and the readiness probe.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_DAPR_H
#define TASKEVENTS_DAPR_H

typedef enum TeOutcome
{
	TE_OUTCOME_OK,				/* 2xx: published */
	TE_OUTCOME_RETRY,			/* try again later */
	TE_OUTCOME_PERMANENT		/* dead letter at once */
} TeOutcome;

#define TE_DAPR_ERROR_LEN 256

/* One HTTP request; the caller owns it until te_dapr_wait() returns it. */
typedef struct TeRequest
{
	/* input */
	const char *topic;
	const char *partition_key;
	const char *body;
	size_t		body_len;
	bool		probe;			/* the readiness probe, GET /v1.0/healthz/outbound */
	bool		quick;			/* a question about the sidecar: given up after 2 s */
	bool		bulk;			/* body is a bulk publish request for topic */
	void	   *owner;			/* for the caller */

	/* output */
	TeOutcome	outcome;
	long		status;			/* HTTP status, 0 without an HTTP answer */
	char		error[TE_DAPR_ERROR_LEN];	/* why it failed, "" when OK: UTF-8 */
	bool		partial;		/* bulk: some entries failed, see te_dapr_entry_outcome() */

	/* private */
	void	   *handle;
	char	   *resp;			/* the answer's body (malloc'd), kept for bulk */
	size_t		resp_len;
	size_t		resp_cap;
} TeRequest;

extern void te_dapr_configure(void);
extern void te_dapr_start(TeRequest *req);
extern int	te_dapr_wait(TeRequest **done, int max_done, int timeout_ms);
extern void te_dapr_wake(void);
extern int	te_dapr_in_flight(void);
extern void te_dapr_abort_all(void);
extern const char *te_dapr_endpoint(void);
extern TeOutcome te_dapr_classify(long status, const char *body, char *error);
extern TeOutcome te_dapr_entry_outcome(const TeRequest *req, const char *entry_id, char *error);
extern void te_dapr_release(TeRequest *req);

#endif							/* TASKEVENTS_DAPR_H */
