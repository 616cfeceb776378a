/*-------------------------------------------------------------------------
 * cloudevent.c
 *		The events of a captured change and their CloudEvents 1.0 JSON.
 *
 * The worker sends exactly what te_append_cloudevent() writes, and
 * taskevents.preview() shows the same text.  Every string goes through
 * te_append_json_string(); numbers and booleans keep their JSON types.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "cloudevent.h"
#include "settings.h"

/* The events of a change, in publishing order; returns how many. */
int
te_change_events(const TeChange *c, TeEvent *out)
{
	int			n = 0;
	int			e = c->events;
	const char *sync_action = NULL;

#define ADD(s, t, a, tp) \
	do { out[n].slot = (s); out[n].type = (t); out[n].action = (a); out[n].topic = (tp); n++; } while (0)

	if (e & TE_EV_CREATED)
		ADD(TE_SLOT_TASK, "task.created", sync_action = "created", TE_TOPIC_TASK_EVENTS);
	else if (e & TE_EV_DELETED)
		ADD(TE_SLOT_TASK, "task.deleted", sync_action = "deleted", TE_TOPIC_TASK_EVENTS);
	else if (e & TE_EV_UPDATED)
		ADD(TE_SLOT_TASK, "task.updated", sync_action = "updated", TE_TOPIC_TASK_EVENTS);
	else if (e & TE_EV_SNAPSHOT)
		ADD(TE_SLOT_TASK, "task.snapshot", sync_action = "snapshot", TE_TOPIC_TASK_EVENTS);

	if (e & TE_EV_COMPLETED)
		ADD(TE_SLOT_COMPLETION, "task.completed", sync_action = "completed", TE_TOPIC_TASK_EVENTS);
	else if (e & TE_EV_UNCOMPLETED)
		ADD(TE_SLOT_COMPLETION, "task.uncompleted", sync_action = "uncompleted", TE_TOPIC_TASK_EVENTS);

	if (sync_action != NULL)
		ADD(TE_SLOT_SYNC, "sync.task", sync_action, TE_TOPIC_TASK_UPDATES);

	if (e & TE_EV_REM_SCHEDULED)
		ADD(TE_SLOT_REMINDER, "reminder.scheduled", "scheduled", TE_TOPIC_REMINDERS);
	else if (e & TE_EV_REM_RESCHEDULED)
		ADD(TE_SLOT_REMINDER, "reminder.rescheduled", "rescheduled", TE_TOPIC_REMINDERS);
	else if (e & TE_EV_REM_CANCELLED)
		ADD(TE_SLOT_REMINDER, "reminder.cancelled", "cancelled", TE_TOPIC_REMINDERS);
#undef ADD

	return n;
}

/*
 * The id of the event in the given slot: the change's random base id with the
 * slot number folded into its last byte.  Fixed at capture, so every retry
 * sends the same id, and still a version 4 UUID.
 */
void
te_event_id(const TeChange *c, int slot, pg_uuid_t *out)
{
	*out = c->event_id;
	out->data[UUID_LEN - 1] ^= (unsigned char) slot;
}

/* The topic setting for an event's topic. */
const char *
te_topic_name(TeTopic topic)
{
	switch (topic)
	{
		case TE_TOPIC_TASK_EVENTS:
			return te_topic_task_events;
		case TE_TOPIC_TASK_UPDATES:
			return te_topic_task_updates;
		case TE_TOPIC_REMINDERS:
			return te_topic_reminders;
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * Append a JSON string: the text in quotes, with '"', backslash and control
 * characters escaped as escape_json() does it ("\n", "\u0001", ...).  Runs
 * of characters that need nothing are copied whole: ids and titles mostly
 * are.
 */
void
te_append_json_string(StringInfo buf, const char *s)
{
	appendStringInfoChar(buf, '"');
	for (;;)
	{
		const char *p = s;

		while ((unsigned char) *p >= 0x20 && *p != '"' && *p != '\\')
			p++;
		appendBinaryStringInfo(buf, s, p - s);
		if (*p == '\0')
			break;
		switch (*p)
		{
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			default:
				appendStringInfo(buf, "\\u%04x", (unsigned char) *p);
				break;
		}
		s = p + 1;
	}
	appendStringInfoChar(buf, '"');
}

/* Append a UUID in its canonical lower-case form. */
void
te_append_uuid(StringInfo buf, const pg_uuid_t *uuid)
{
	static const char hex[] = "0123456789abcdef";

	enlargeStringInfo(buf, 36);
	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf->data[buf->len++] = '-';
		buf->data[buf->len++] = hex[uuid->data[i] >> 4];
		buf->data[buf->len++] = hex[uuid->data[i] & 0x0F];
	}
	buf->data[buf->len] = '\0';
}

/*
 * Append a timestamptz as RFC 3339 in UTC with microseconds and 'Z'.  Years
 * RFC 3339 cannot hold are written as ISO 8601 writes them (astronomical
 * numbering with a sign: "-0043-03-15...", "+10000-01-01..."), and the
 * infinities as "infinity" and "-infinity".
 */
void
te_append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
	{
		appendStringInfoString(buf, ts < 0 ? "-infinity" : "infinity");
		return;
	}
	if (tm.tm_year < 0)
		appendStringInfo(buf, "-%04d", -tm.tm_year);
	else
		appendStringInfo(buf, tm.tm_year > 9999 ? "+%d" : "%04d", tm.tm_year);
	appendStringInfo(buf, "-%02d-%02dT%02d:%02d:%02d.%06dZ",
					 tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Is the text a JSON number (RFC 8259: -?int frac? exp?)? */
bool
te_is_json_number(const char *s)
{
	const char *p = s;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (isdigit((unsigned char) *p))
			p++;
	else
		return false;
	if (*p == '.')
	{
		if (!isdigit((unsigned char) *++p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	return *p == '\0';
}

/* Does the type render as a JSON number? */
bool
te_type_is_number(Oid typid)
{
	switch (getBaseType(typid))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return true;
		default:
			return false;
	}
}

/*
 * A value's output text under fixed settings: what the writing session set
 * must not change it (DateStyle, IntervalStyle and TimeZone for dates and
 * times inside arrays, ranges and rows; extra_float_digits, which at 0 or
 * below rounds floats; bytea_output).  The settings return at the end.
 */
static char *
ce_output_pinned(Datum value, Oid typid)
{
	static const char *const pin[][2] = {
		{"DateStyle", "ISO, YMD"},
		{"IntervalStyle", "iso_8601"},
		{"TimeZone", "UTC"},
		{"extra_float_digits", "1"},
		{"bytea_output", "hex"},
	};
	int			level = NewGUCNestLevel();
	Oid			outfunc;
	bool		isvarlena;
	char	   *s;

	for (int i = 0; i < lengthof(pin); i++)
		(void) set_config_option(pin[i][0], pin[i][1], PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	getTypeOutputInfo(typid, &outfunc, &isvarlena);
	s = OidOutputFunctionCall(outfunc, value);
	AtEOXact_GUC(true, level);
	return s;
}

/* A value's text form (fast paths for the usual id and title types). */
char *
te_datum_text(Datum value, Oid typid)
{
	Oid			outfunc;
	bool		isvarlena;

	switch (typid)
	{
		case TEXTOID:
		case VARCHAROID:
			return TextDatumGetCString(value);
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
		case BPCHAROID:
			getTypeOutputInfo(typid, &outfunc, &isvarlena);
			return OidOutputFunctionCall(outfunc, value);
		case UUIDOID:
			{
				StringInfoData s;

				/* exactly the 36 characters, not StringInfo's usual 1 kB */
				s.data = palloc(37);
				s.len = 0;
				s.maxlen = 37;
				te_append_uuid(&s, DatumGetUUIDP(value));
				return s.data;
			}
		default:
			return ce_output_pinned(value, typid);
	}
}

/*
 * Append a value as JSON, keeping its JSON type: booleans and finite numbers
 * bare, json as is, timestamps in RFC 3339, intervals in ISO 8601 and bytea
 * in hex (whatever the writer's IntervalStyle and bytea_output), everything
 * else a JSON string of its text.
 */
void
te_append_json_value(StringInfo buf, Datum value, Oid typid, bool isnull)
{
	Oid			base = getBaseType(typid);

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	switch (base)
	{
		case BOOLOID:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		case JSONOID:
			{
				text	   *t = DatumGetTextPP(value);

				appendBinaryStringInfo(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				return;
			}
		case JSONBOID:
			(void) JsonbToCString(buf, &DatumGetJsonbP(value)->root, 0);
			return;
		case TIMESTAMPTZOID:
			appendStringInfoChar(buf, '"');
			te_append_timestamp(buf, DatumGetTimestampTz(value));
			appendStringInfoChar(buf, '"');
			return;
		case TIMESTAMPOID:
			{
				char		tmp[MAXDATELEN + 1];
				struct pg_tm tm;
				fsec_t		fsec;
				Timestamp	ts = DatumGetTimestamp(value);

				if (TIMESTAMP_NOT_FINITE(ts))
					EncodeSpecialTimestamp(ts, tmp);
				else if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) == 0)
					EncodeDateTime(&tm, fsec, false, 0, NULL, USE_XSD_DATES, tmp);
				else
					ereport(ERROR,
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("timestamp out of range")));
				te_append_json_string(buf, tmp);
				return;
			}
		case INTERVALOID:
			{
				char		tmp[MAXDATELEN + 1];
				struct pg_itm itm;

				interval2itm(*DatumGetIntervalP(value), &itm);
				EncodeInterval(&itm, INTSTYLE_ISO_8601, tmp);
				te_append_json_string(buf, tmp);
				return;
			}
		case BYTEAOID:
			{
				bytea	   *b = DatumGetByteaPP(value);
				const unsigned char *p = (const unsigned char *) VARDATA_ANY(b);
				static const char hex[] = "0123456789abcdef";

				appendStringInfoString(buf, "\"\\\\x");
				for (int i = 0; i < VARSIZE_ANY_EXHDR(b); i++)
				{
					appendStringInfoChar(buf, hex[p[i] >> 4]);
					appendStringInfoChar(buf, hex[p[i] & 0x0F]);
				}
				appendStringInfoChar(buf, '"');
				return;
			}
		case DATEOID:
			{
				char		tmp[MAXDATELEN + 1];
				struct pg_tm tm;
				DateADT		d = DatumGetDateADT(value);

				if (DATE_NOT_FINITE(d))
					EncodeSpecialDate(d, tmp);
				else
				{
					j2date(d + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
					EncodeDateOnly(&tm, USE_XSD_DATES, tmp);
				}
				te_append_json_string(buf, tmp);
				return;
			}
		default:
			{
				char	   *s = te_datum_text(value, typid);

				/* NaN and Infinity are not JSON numbers: quote them. */
				if (te_type_is_number(base) && te_is_json_number(s))
					appendStringInfoString(buf, s);
				else
					te_append_json_string(buf, s);
				pfree(s);
				return;
			}
	}
}

/*
 * Append an id of the change: a JSON number when its column is numeric and
 * the value is one (NaN and Infinity are not), else a JSON string.
 */
static void
ce_append_id(StringInfo buf, const char *id, bool is_number)
{
	if (id == NULL)
		appendStringInfoString(buf, "null");
	else if (is_number && te_is_json_number(id))
		appendStringInfoString(buf, id);
	else
		te_append_json_string(buf, id);
}

/* Why an event of the change cannot be sent, or NULL when it can be. */
const char *
te_event_unsendable(const TeChange *c, const TeEvent *ev)
{
	if (c->events & TE_F_NO_TASK_ID)
		return "the task id is null";
	if ((c->events & TE_F_TOO_BIG) && ev->slot == TE_SLOT_TASK)
		return "the change's old and new values were over 64 MB when captured; its changes were not kept";
	return NULL;
}

/*
 * Append the structured-mode CloudEvent of one event of a change, in the
 * server encoding.  Attribute and data field order is fixed (docs/events.md).
 */
void
te_append_cloudevent(StringInfo buf, const TeChange *c, const TeEvent *ev)
{
	pg_uuid_t	id;
	char		when[64];
	StringInfoData w = {when, 0, sizeof(when), 0};

	te_event_id(c, ev->slot, &id);
	te_append_timestamp(&w, c->changed_at);	/* "time" and data's "timestamp" */

	appendStringInfoString(buf, "{\"specversion\":\"1.0\",\"id\":\"");
	te_append_uuid(buf, &id);
	appendStringInfoString(buf, "\",\"source\":");
	te_append_json_string(buf, te_source);
	appendStringInfo(buf, ",\"type\":\"%s\",\"time\":\"%s\",\"subject\":", ev->type, when);
	te_append_json_string(buf, c->task_id);
	appendStringInfoString(buf, ",\"datacontenttype\":\"application/json\",\"traceid\":");
	te_append_json_string(buf, c->trace_id);
	if (c->traceparent != NULL)
	{
		appendStringInfoString(buf, ",\"traceparent\":");
		te_append_json_string(buf, c->traceparent);
	}

	appendStringInfoString(buf, ",\"data\":{\"task_id\":");
	ce_append_id(buf, c->task_id, (c->events & TE_F_TASK_ID_NUMBER) != 0);
	appendStringInfoString(buf, ",\"user_id\":");
	ce_append_id(buf, c->user_id, (c->events & TE_F_USER_ID_NUMBER) != 0);
	appendStringInfo(buf, ",\"action\":\"%s\"", ev->action);

	if (ev->topic == TE_TOPIC_TASK_EVENTS)
	{
		appendStringInfoString(buf, ",\"title\":");
		if (c->title != NULL)
			te_append_json_string(buf, c->title);
		else
			appendStringInfoString(buf, "null");
		appendStringInfoString(buf, ",\"completed\":");
		appendStringInfoString(buf, c->completed_null ? "null" :
							   c->completed ? "true" : "false");
		appendStringInfoString(buf, ",\"changes\":");
		if (ev->slot == TE_SLOT_TASK && (c->events & TE_EV_UPDATED) && c->changes != NULL)
			appendStringInfoString(buf, c->changes);
		else
			appendStringInfoString(buf, "{}");
	}
	else if (ev->topic == TE_TOPIC_REMINDERS)
	{
		appendStringInfoString(buf, ",\"due_date\":");
		if (c->due_date_null)
			appendStringInfoString(buf, "null");
		else
		{
			appendStringInfoChar(buf, '"');
			te_append_timestamp(buf, c->due_date);
			appendStringInfoChar(buf, '"');
		}
	}

	appendStringInfo(buf, ",\"timestamp\":\"%s\"}}", when);
}
