/*-------------------------------------------------------------------------
 * fuzz.c
 *		libFuzzer inside a PostgreSQL backend (postgres --single), against
 *		the CloudEvent builder and the value renderers of src/cloudevent.c,
 *		with the server's own type input and output functions.
 *
 * An input is a selector byte, a byte of writer settings, and a payload.
 * The selector names a type, whose input function reads the payload as a
 * value (input it refuses is skipped), or the CloudEvent builder, which
 * takes the payload as the fields of a change.  What must hold:
 *
 *	- no ERROR: the renderers run in the writer's trigger;
 *	- the output is valid UTF-8 and parses as JSON (json_in);
 *	- it holds the value: read back with the type's input function, the
 *	  value has the same text (json and jsonb: the same jsonb); each
 *	  CloudEvent attribute and data field is the change's;
 *	- the writer's DateStyle, IntervalStyle, TimeZone, extra_float_digits
 *	  and bytea_output do not change it.
 *
 * A broken rule aborts, and libFuzzer keeps the input (crash-*).  Leaks are
 * LeakSanitizer's (test/fuzz/run.sh preloads it): each input's memory is a
 * context deleted after it, so what it mallocs and does not free is a leak.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "parser/parse_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cloudevent.h"

PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(te_fuzz);

/* The settings src/settings.c would hold. */
char	   *te_source = "fuzz/source";
char	   *te_topic_task_events = "task-events";
char	   *te_topic_task_updates = "task-updates";
char	   *te_topic_reminders = "reminders";

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*cb) (const uint8_t *data, size_t size));

static const char *const fz_types[] = {
	"text", "varchar", "bpchar", "name", "\"char\"", "int2", "int4", "int8",
	"oid", "numeric", "float4", "float8", "bool", "date", "time", "timetz",
	"timestamp", "timestamptz", "interval", "bytea", "json", "jsonb", "uuid",
	"inet", "macaddr", "money", "point", "bit varying", "tsvector",
	"int4range", "tstzrange", "numeric[]", "float8[]", "text[]",
	"timestamptz[]", "interval[]", "date[]", "bytea[]",
};
#define FZ_NTYPES lengthof(fz_types)

/* Stop with the reason; libFuzzer saves the input that did it. */
static void
fz_fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz: %s: %s\n", what, detail ? detail : "");
	abort();
}

/* Writer settings from one byte; the caller pops them with AtEOXact_GUC. */
static int
fz_writer_settings(uint8 b)
{
	static const char *const date[] = {"ISO, MDY", "SQL, DMY", "Postgres, MDY", "German"};
	static const char *const interval[] = {"postgres", "postgres_verbose", "sql_standard", "iso_8601"};
	static const char *const zone[] = {"UTC", "America/St_Johns", "Asia/Kathmandu", "Pacific/Kiritimati"};
	static const char *const digits[] = {"3", "-15"};
	int			level = NewGUCNestLevel();

#define SET(n, v) (void) set_config_option((n), (v), PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false)
	SET("DateStyle", date[b & 3]);
	SET("IntervalStyle", interval[(b >> 2) & 3]);
	SET("TimeZone", zone[(b >> 4) & 3]);
	SET("extra_float_digits", digits[(b >> 6) & 1]);
	SET("bytea_output", (b & 0x80) ? "escape" : "hex");
#undef SET
	return level;
}

/* The JSON must be valid UTF-8 and parse; returns it as jsonb (or NULL). */
static Jsonb *
fz_check_json(const char *json, bool as_jsonb)
{
	if (!pg_verifymbstr(json, strlen(json), true))
		fz_fail("output is not valid UTF-8", json);
	(void) DirectFunctionCall1(json_in, CStringGetDatum(json));
	return as_jsonb ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json))) : NULL;
}

/* A scalar of a jsonb as text: strings unquoted, others as written. */
static char *
fz_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * An ISO 8601 date or time as PostgreSQL reads it: the sign of a year
 * beyond RFC 3339 dropped, astronomical years before 1 (0000 is 1 BC)
 * written BC.
 */
static char *
fz_iso(char *s)
{
	char	   *end;
	long		year;

	if (strncmp(s, "0000-", 5) == 0)
		return psprintf("0001%s BC", s + 4);
	if ((s[0] != '+' && s[0] != '-') || !isdigit((unsigned char) s[1]))
		return s;
	year = strtol(s + 1, &end, 10);
	if (end - s < 5 || *end != '-')
		return s;				/* a number, not a year */
	return s[0] == '+' ? s + 1 : psprintf("%04ld%s BC", year + 1, end);
}

/* Is the type rendered in a form of taskevents' own (or as a number)? */
static bool
fz_rendered_own(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
		case INTERVALOID:
		case BYTEAOID:
		case DATEOID:
			return true;
		default:
			return te_type_is_number(typid);
	}
}

/* Read a value; false when the input function refuses it. */
static bool
fz_input(Oid typinput, char *text, Oid typioparam, Datum *value)
{
	bool		ok = true;

	PG_TRY();
	{
		*value = OidInputFunctionCall(typinput, text, typioparam, -1);
	}
	PG_CATCH();
	{
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* One value of a type: its JSON under two sets of settings, read back. */
static int
fz_value(const char *type, uint8 settings, const char *text)
{
	Oid			typid,
				typinput,
				typioparam;
	int32		typmod;
	Datum		value;
	StringInfoData a,
				b;
	int			level;
	JsonbValue	v;
	char	   *back;

	parseTypeString(type, &typid, &typmod, false);
	getTypeInputInfo(typid, &typinput, &typioparam);

	/*
	 * Input the writer's settings refuse is not ours to test.  (No
	 * subtransaction: these input functions hold no resources, and a
	 * million subtransactions in one transaction would use memory.)
	 */
	level = fz_writer_settings(settings);
	if (!fz_input(typinput, (char *) text, typioparam, &value))
	{
		AtEOXact_GUC(true, level);
		return -1;
	}

	initStringInfo(&a);
	te_append_json_value(&a, value, typid, false);
	AtEOXact_GUC(true, level);
	level = fz_writer_settings((uint8) ~settings);
	initStringInfo(&b);
	te_append_json_value(&b, value, typid, false);
	AtEOXact_GUC(true, level);
	if (strcmp(a.data, b.data) != 0)
		fz_fail("the writer's settings change the JSON", psprintf("%s | %s", a.data, b.data));

	if (typid == JSONOID || typid == JSONBOID)
	{
		/* the same jsonb (json with lone surrogates has none: skip) */
		Jsonb	   *in;

		fz_check_json(a.data, false);
		PG_TRY();
		{
			in = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		}
		PG_CATCH();
		{
			FlushErrorState();
			return 0;
		}
		PG_END_TRY();
		if (!DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(in),
											  JsonbPGetDatum(fz_check_json(a.data, true)))))
			fz_fail("json differs", a.data);
		return 0;
	}

	if (!JsonbExtractScalar(&fz_check_json(a.data, true)->root, &v) ||
		(back = fz_scalar_text(&v)) == NULL)
		fz_fail("not a JSON string, number or boolean", a.data);
	if (v.type == jbvNumeric)
		back = a.data;			/* as written: jsonb's numeric has no -0 */
	/*
	 * Values of the types rendered as their text: the JSON string is that
	 * text (PostgreSQL cannot read all of it back: timetz "09:00-130").
	 * The others are read back as a consumer would, in ISO and UTC.
	 */
	if (!fz_rendered_own(typid))
	{
		if (strcmp(back, te_datum_text(value, typid)) != 0)
			fz_fail("the JSON string is not the value's text", a.data);
		return 0;
	}
	level = fz_writer_settings(0);
	if (typid == DATEOID || typid == TIMESTAMPOID || typid == TIMESTAMPTZOID)
		back = fz_iso(back);
	if (!fz_input(typinput, back, typioparam, &value))
		fz_fail("cannot read the value back", a.data);
	AtEOXact_GUC(true, level);
	b.len = 0;
	te_append_json_value(&b, value, typid, false);
	if (strcmp(a.data, b.data) != 0)
		fz_fail("read back, the value differs", psprintf("%s | %s", a.data, b.data));
	return 0;
}

/* A field of a CloudEvent (or of its data) as text; NULL when absent/null. */
static char *
fz_field(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(c, key, strlen(key), &v) == NULL || v.type == jbvNull)
		return NULL;
	return fz_scalar_text(&v);
}

static void
fz_expect(JsonbContainer *c, const char *key, const char *want, const char *event)
{
	char	   *got = fz_field(c, key);

	if (want == NULL ? got != NULL : got == NULL || strcmp(got, want) != 0)
		fz_fail(psprintf("\"%s\" is not the change's", key), event);
}

/* Text as numeric_out and the integer types write it (or NaN, Infinity). */
static bool
fz_number_text(const char *s)
{
	if (strcmp(s, "NaN") == 0 || strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0)
		return true;
	return strspn(s, "-.0123456789") == strlen(s) && te_is_json_number(s);
}

/* A timestamp of the event, read back (infinities as PostgreSQL writes them). */
static void
fz_expect_time(JsonbContainer *c, const char *key, TimestampTz want, const char *event)
{
	char	   *got = fz_field(c, key);

	if (got == NULL)
		fz_fail(psprintf("no \"%s\"", key), event);
	if (IS_VALID_TIMESTAMP(want) &&
		DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(fz_iso(got)),
												ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(-1))) != want)
		fz_fail(psprintf("\"%s\" is not the change's", key), event);
}

/* Bytes as a writer's text: valid in the database encoding, no NUL; or NULL. */
static char *
fz_text(const uint8_t *data, size_t size)
{
	return pg_verifymbstr((const char *) data, size, true) ? pnstrdup((const char *) data, size) : NULL;
}

/*
 * A change from the payload: two bytes of event bits and flags, two
 * timestamps of 8 bytes, then task id, user id, title, trace id and
 * traceparent separated by 0x01 (an empty user id, title or traceparent is
 * null).
 */
static int
fz_cloudevent(const uint8_t *data, size_t size)
{
	TeChange	c = {0};
	TeEvent		ev[TE_MAX_EVENTS];
	char	   *f[5] = {"", "", "", "", ""};
	char	   *rest;
	int			n;

	if (size < 18)
		return -1;
	c.events = (data[0] | data[1] << 8) & ~(TE_F_NO_TASK_ID | TE_F_TOO_BIG);
	memcpy(&c.changed_at, data + 2, 8);
	memcpy(&c.due_date, data + 10, 8);
	if ((rest = fz_text(data + 18, size - 18)) == NULL)
		return -1;
	for (int i = 0; i < 5 && rest; i++)
	{
		f[i] = rest;
		if ((rest = strchr(rest, '\x01')) != NULL)
			*rest++ = '\0';
	}
	c.task_id = f[0];
	c.user_id = *f[1] ? f[1] : NULL;
	c.title = *f[2] ? f[2] : NULL;
	c.completed_null = c.title == NULL;
	c.completed = (data[1] & 0x80) != 0;
	c.due_date_null = c.user_id == NULL;
	c.trace_id = f[3];
	c.traceparent = *f[4] ? f[4] : NULL;
	c.changes = "{\"title\":{\"old\":null,\"new\":\"x\"}}";
	/* an id is flagged a number only as capture does: the text of a number */
	if (!fz_number_text(c.task_id))
		c.events &= ~TE_F_TASK_ID_NUMBER;
	if (c.user_id == NULL || !fz_number_text(c.user_id))
		c.events &= ~TE_F_USER_ID_NUMBER;
	memcpy(c.event_id.data, data + 2, 16);

	n = te_change_events(&c, ev);
	for (int i = 0; i < n; i++)
	{
		StringInfoData buf;
		JsonbContainer *root;
		JsonbValue	d;
		pg_uuid_t	id;

		initStringInfo(&buf);
		te_append_cloudevent(&buf, &c, &ev[i]);
		root = &fz_check_json(buf.data, true)->root;
		te_event_id(&c, ev[i].slot, &id);
		fz_expect(root, "id", DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&id))), buf.data);
		fz_expect(root, "type", ev[i].type, buf.data);
		fz_expect(root, "source", te_source, buf.data);
		fz_expect(root, "subject", c.task_id, buf.data);
		fz_expect(root, "traceid", c.trace_id, buf.data);
		fz_expect(root, "traceparent", c.traceparent, buf.data);
		fz_expect_time(root, "time", c.changed_at, buf.data);
		if (getKeyJsonValueFromContainer(root, "data", 4, &d) == NULL || d.type != jbvBinary)
			fz_fail("no data", buf.data);
		fz_expect_time(d.val.binary.data, "timestamp", c.changed_at, buf.data);
		if (!(c.events & TE_F_TASK_ID_NUMBER) || !te_is_json_number(c.task_id))
			fz_expect(d.val.binary.data, "task_id", c.task_id, buf.data);
		if (!(c.events & TE_F_USER_ID_NUMBER) || c.user_id == NULL || !te_is_json_number(c.user_id))
			fz_expect(d.val.binary.data, "user_id", c.user_id, buf.data);
		fz_expect(d.val.binary.data, "action", ev[i].action, buf.data);
		if (ev[i].topic == TE_TOPIC_TASK_EVENTS)
		{
			fz_expect(d.val.binary.data, "title", c.title, buf.data);
			fz_expect(d.val.binary.data, "completed",
					  c.completed_null ? NULL : c.completed ? "true" : "false", buf.data);
		}
		if (ev[i].topic == TE_TOPIC_REMINDERS && !c.due_date_null)
			fz_expect_time(d.val.binary.data, "due_date", c.due_date, buf.data);
	}
	return 0;
}

/* One input, in a memory context of its own; an ERROR is a failure. */
static int
fz_one(const uint8_t *data, size_t size)
{
	MemoryContext fz_cxt,
				old;
	int			result;

	if (size < 2)
		return -1;
	fz_cxt = AllocSetContextCreate(TopMemoryContext, "fuzz input", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(fz_cxt);
	PG_TRY();
	{
		if (data[0] % (FZ_NTYPES + 1) == FZ_NTYPES)
			result = fz_cloudevent(data + 1, size - 1);
		else
		{
			char	   *text = fz_text(data + 2, size - 2);

			result = text == NULL ? -1 :
				fz_value(fz_types[data[0] % (FZ_NTYPES + 1)], data[1], text);
		}
	}
	PG_CATCH();
	{
		EmitErrorReport();
		fz_fail("an ERROR", NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(fz_cxt);
	return result;
}

/*
 * What the inputs left in the backend's long-lived memory, less the cache of
 * time zones that PostgreSQL's own input functions fill with every zone
 * name they are given ("2024-01-01 10:00 EST5EDT4,M3.2.0").
 */
static Size fz_memory_before;

static Size
fz_memory(void)
{
	Size		total = MemoryContextMemAllocated(TopMemoryContext, true);

	for (MemoryContext c = TopMemoryContext->firstchild; c != NULL; c = c->nextchild)
		if (c->ident != NULL && strcmp(c->ident, "Timezones") == 0)
			total -= MemoryContextMemAllocated(c, true);
	return total;
}

static void
fz_report_memory(void)
{
	fprintf(stderr, "fuzz: long-lived memory %zu -> %zu bytes\n", fz_memory_before, fz_memory());
}

/* te_fuzz(libFuzzer's arguments): runs libFuzzer; returns what it returns. */
Datum
te_fuzz(PG_FUNCTION_ARGS)
{
	ArrayType  *args = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	int			n;
	char	  **argv;

	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
	argv = palloc0(sizeof(char *) * (n + 1));
	for (int i = 0; i < n; i++)
		argv[i] = TextDatumGetCString(elems[i]);
	fz_memory_before = fz_memory();
	atexit(fz_report_memory);	/* libFuzzer ends with exit() */
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&n, &argv, fz_one));
}
