/*-------------------------------------------------------------------------
 * spiutil.c
 *		Small helpers around SPI for the worker's statements (spiutil.h).
 *
 * Every statement is a saved plan with $n parameters, prepared on first
 * use; errors are ERRORs (the caller's transaction is aborted).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "spiutil.h"

/*
 * A transaction of the worker's own: te_xact_begin() starts it and returns
 * the caller's memory context, te_xact_commit() commits and goes back to
 * it.  CommitTransactionCommand() leaves TopMemoryContext current, where
 * what the caller allocated next would outlive its step.
 */
MemoryContext
te_xact_begin(void)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	return caller;
}

void
te_xact_commit(MemoryContext caller)
{
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
}

/*
 * After an ERROR caught (and reported) by the worker: abort the transaction
 * it left, release what it held, forget the error; as the error paths of
 * bgwriter.c and autovacuum.c do.  Called with interrupts held.
 */
void
te_spi_abort(void)
{
	AbortCurrentTransaction();
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	pgstat_report_wait_end();
	FlushErrorState();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run a statement's saved plan (*plan, prepared and kept on first use)
 * with the active snapshot; an outcome other than expect is an ERROR.
 * Returns SPI_processed.
 */
uint64
te_spi_exec(SPIPlanPtr *plan, const char *sql, int nargs, const Oid *argtypes,
			Datum *args, int expect)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, (Oid *) argtypes);

		if (p == NULL)
			elog(ERROR, "taskevents: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, args, NULL, expect == SPI_OK_SELECT, 0);
	if (rc != expect)
		elog(ERROR, "taskevents: SPI_execute_plan returned %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* A column of a result row. */
Datum
te_spi_get(int row, int attnum, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, attnum, isnull);
}

/* A text column of a result row as a C string, or NULL. */
char *
te_spi_text(int row, int attnum)
{
	bool		isnull;
	Datum		d = te_spi_get(row, attnum, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* An int4 column of a result row, 0 when null. */
int32
te_spi_int4(int row, int attnum)
{
	bool		isnull;
	Datum		d = te_spi_get(row, attnum, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

TeColumn
te_column(Oid type, int capacity)
{
	TeColumn	col = {type, palloc(sizeof(Datum) * capacity), palloc(sizeof(bool) * capacity), 0};

	return col;
}

void
te_column_add(TeColumn *col, Datum value, bool isnull)
{
	col->values[col->n] = value;
	col->nulls[col->n++] = isnull;
}

void
te_column_add_text(TeColumn *col, const char *text)
{
	te_column_add(col, text ? CStringGetTextDatum(text) : (Datum) 0, text == NULL);
}

/* The column's values as a one-dimensional array. */
Datum
te_column_array(const TeColumn *col)
{
	int			dims[1] = {col->n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(col->type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(col->values, col->nulls, 1, dims, lbs, col->type,
											  typlen, typbyval, typalign));
}
