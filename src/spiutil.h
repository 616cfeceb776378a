/*-------------------------------------------------------------------------
 * spiutil.h
 *		Small helpers around SPI for the worker's statements: saved plans,
 *		the columns of a result, and arrays built row by row as arguments.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_SPIUTIL_H
#define TASKEVENTS_SPIUTIL_H

#include "executor/spi.h"

extern uint64 te_spi_exec(SPIPlanPtr *plan, const char *sql, int nargs, const Oid *argtypes,
						  Datum *args, int expect);
extern Datum te_spi_get(int row, int attnum, bool *isnull);
extern char *te_spi_text(int row, int attnum);
extern int32 te_spi_int4(int row, int attnum);
extern void te_spi_abort(void);
extern MemoryContext te_xact_begin(void);
extern void te_xact_commit(MemoryContext caller);

/* A column of a statement's array arguments: values added row by row, passed as one array. */
typedef struct TeColumn
{
	Oid			type;
	Datum	   *values;
	bool	   *nulls;
	int			n;
} TeColumn;

extern TeColumn te_column(Oid type, int capacity);
extern void te_column_add(TeColumn *col, Datum value, bool isnull);
extern void te_column_add_text(TeColumn *col, const char *text);
extern Datum te_column_array(const TeColumn *col);

#endif							/* TASKEVENTS_SPIUTIL_H */
