/*-------------------------------------------------------------------------
 * cursor.h
 *		The queue's arithmetic, apart from its SQL: ranges of sequence
 *		numbers, the cursor over them, and which queue table may be emptied
 *		when.  Pure functions (cursor.c): no SPI, no catalog, no memory
 *		allocation, no ERROR; test/unit/ tests them outside the server.
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_CURSOR_H
#define TASKEVENTS_CURSOR_H

#include "c.h"

/*
 * Changes go into TE_QUEUE_TABLES tables in runs of TE_QUEUE_RUN sequence
 * numbers: seq s lives in table (s / TE_QUEUE_RUN) % TE_QUEUE_TABLES.
 */
#define TE_QUEUE_TABLES		3
#define TE_QUEUE_RUN		32768

/* The queue table that holds sequence number seq. */
#define TE_QUEUE_TABLE_OF(seq)	((int) (((seq) / TE_QUEUE_RUN) % TE_QUEUE_TABLES))

/* A range of sequence numbers, [lo, hi], lo >= 1 (hi may be PG_INT64_MAX). */
typedef struct TeRange
{
	int64		lo;
	int64		hi;
} TeRange;

/*
 * Where the queue has been read up to: every number up to hi is read but
 * the holes', numbers not seen yet (in order, apart, below hi).
 */
typedef struct QuCursor
{
	int64		hi;
	TeRange    *holes;
	int			nholes;
} QuCursor;

/* Ranges: a transaction's numbers in at most max ranges; merging; what a slot covers. */
extern int	te_ranges_add(TeRange *r, int n, int max, int64 seq);
extern int	te_ranges_merge(TeRange *r, int n);
extern int	te_ranges_held(const TeRange *took, int n, bool taking, TeRange *out);

/* The cursor: its next value after a claim, and its checks. */
extern int	qu_advance_size(const QuCursor *old, int nseqs, int nflight);
extern void qu_advance(const QuCursor *old, const int64 *seqs, int nseqs, int64 looked,
					   const TeRange *flight, int nflight, QuCursor *new);
extern int	qu_cursor_bad_hole(const QuCursor *c);
extern bool qu_cursor_equal(const QuCursor *a, const QuCursor *b);

/* Emptying the queue tables. */
extern int64 qu_last_run(int t, int64 last);
extern int64 qu_run_to_empty(int t, int64 last, const QuCursor *c, int64 emptied);
extern bool qu_run_taken_again(int64 run, int64 last);

extern long qu_due_ms(int64 now, int64 due, long poll_ms);

#endif							/* TASKEVENTS_CURSOR_H */
