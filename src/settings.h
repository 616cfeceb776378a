/*-------------------------------------------------------------------------
 * settings.h
 *		The taskevents.* configuration parameters.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_SETTINGS_H
#define TASKEVENTS_SETTINGS_H

extern bool te_enabled;
extern bool te_dapr_enabled;
extern char *te_host;
extern int	te_port;
extern char *te_pubsub;
extern char *te_topic_task_events;
extern char *te_topic_task_updates;
extern char *te_topic_reminders;
extern char *te_source;
extern int	te_timeout_ms;
extern int	te_concurrency;
extern int	te_batch_size;
extern int	te_backoff_min_ms;
extern int	te_backoff_max_ms;
extern int	te_max_attempts;
extern int	te_max_age_s;
extern int	te_retention_s;
extern int	te_poll_interval_ms;
extern int	te_max_body_kb;
/* taskevents.bulk */
typedef enum TeBulkMode
{
	TE_BULK_OFF,
	TE_BULK_ON,
	TE_BULK_AUTO				/* when the sidecar says it has the API */
} TeBulkMode;

extern int	te_bulk;
extern int	te_max_databases;
extern char *te_standby_slots;
extern char *te_trace_id;
extern char *te_traceparent;

extern void te_settings_init(void);
extern char *te_api_token(void);

#endif							/* TASKEVENTS_SETTINGS_H */
