/*-------------------------------------------------------------------------
 * cursor.c
 *		The queue's arithmetic, apart from its SQL (cursor.h).
 *
 * Sequence numbers start at 1 and a range may end at PG_INT64_MAX (a
 * transaction taking a number not known yet holds every number from its
 * first on): bounds are compared as lo - 1 <= hi, never hi + 1 >= lo.
 *
 * The cursor (queue.c says how the worker reads with it): every number up
 * to hi is read but the holes'.  After a claim, a hole's number that was
 * read leaves it, and one that was looked at (every visible change up to
 * "looked" was read) and that no transaction in flight holds never will be
 * seen: it leaves it too.  What was not looked at stays a hole, whole.
 *
 * The queue tables (outbox.h) take runs of numbers in turn; a table may be
 * emptied once the run being written is a later one and every number of
 * its last run is read.
 *-------------------------------------------------------------------------
 */
#include "c.h"

#include "cursor.h"

/*
 * Add seq to r, n ranges in order and apart, at most max (>= 2): extend
 * the range it touches, insert it in order, or first merge the two closest
 * neighbours to make room.  Returns how many ranges there are.
 */
int
te_ranges_add(TeRange *r, int n, int max, int64 seq)
{
	int			i = 0;
	int			best = 0;

	while (i < n && r[i].hi < seq - 1)
		i++;
	if (i < n && r[i].lo - 1 <= seq)
	{
		/* touches or falls in range i */
		r[i].lo = Min(r[i].lo, seq);
		r[i].hi = Max(r[i].hi, seq);
		if (i + 1 < n && r[i + 1].lo - 1 <= r[i].hi)
		{
			r[i].hi = Max(r[i].hi, r[i + 1].hi);
			memmove(&r[i + 1], &r[i + 2], sizeof(TeRange) * (n - i - 2));
			n--;
		}
		return n;
	}
	if (n == max)
	{
		for (int k = 1; k < n - 1; k++)
			if (r[k + 1].lo - r[k].hi < r[best + 1].lo - r[best].hi)
				best = k;
		r[best].hi = r[best + 1].hi;
		memmove(&r[best + 1], &r[best + 2], sizeof(TeRange) * (n - best - 2));
		return te_ranges_add(r, n - 1, max, seq);	/* seq may fall in the merged range now */
	}
	memmove(&r[i + 1], &r[i], sizeof(TeRange) * (n - i));
	r[i].lo = r[i].hi = seq;
	return n + 1;
}

static int
te_range_cmp(const void *a, const void *b)
{
	int64		x = ((const TeRange *) a)->lo;
	int64		y = ((const TeRange *) b)->lo;

	return (x > y) - (x < y);
}

/* Sort ranges and merge those that overlap or touch; returns how many are left. */
int
te_ranges_merge(TeRange *r, int n)
{
	int			k = 0;

	qsort(r, n, sizeof(TeRange), te_range_cmp);
	for (int i = 0; i < n; i++)
	{
		if (k > 0 && r[i].lo - 1 <= r[k - 1].hi)
			r[k - 1].hi = Max(r[k - 1].hi, r[i].hi);
		else
			r[k++] = r[i];
	}
	return k;
}

/*
 * The numbers a transaction holds, into out (room for n, at least 1): those
 * it took and, while it takes a number not known yet, every number from its
 * first on (or from 1).  Returns how many ranges.
 */
int
te_ranges_held(const TeRange *took, int n, bool taking, TeRange *out)
{
	memcpy(out, took, sizeof(TeRange) * n);
	if (!taking)
		return n;
	out[0].lo = n > 0 ? took[0].lo : 1;
	out[0].hi = PG_INT64_MAX;
	return 1;
}

/*
 * How many holes qu_advance() may write (one more than it can).  It cuts
 * the old holes and the gap above hi at the numbers read: at most gaps
 * pieces, in order and apart.  Up to looked, what is left is their overlap
 * with the flight ranges, in order and apart too: each overlap but the
 * last ends a piece or a range, so at most pieces + nflight - 1.  Above
 * looked, at most one piece is cut there, and the others are kept whole.
 */
int
qu_advance_size(const QuCursor *old, int nseqs, int nflight)
{
	int			gaps = old->nholes + 1 + nseqs;

	return gaps + nflight;
}

/* Add [lo, hi] to holes in order (lo > every hole's hi so far), when not empty. */
static void
qu_hole_add(TeRange *holes, int *n, int64 lo, int64 hi)
{
	if (lo > hi)
		return;
	holes[*n].lo = lo;
	holes[(*n)++].hi = hi;
}

/*
 * Add the gap [lo, hi] to holes in order (lo > every hole's hi so far): up
 * to looked, only as far as it is in flight; above, whole (it was not
 * looked at).
 */
static void
qu_gap_add(TeRange *holes, int *n, int64 lo, int64 hi, int64 looked,
		   const TeRange *flight, int nflight)
{
	for (int i = 0; i < nflight; i++)
		qu_hole_add(holes, n, Max(lo, flight[i].lo), Min(Min(hi, looked), flight[i].hi));
	qu_hole_add(holes, n, Max(lo, looked + 1), hi);
}

/*
 * The cursor after a claim, into new (new->holes with room for
 * qu_advance_size()).  seqs: the numbers read (ascending); looked: every
 * visible change up to this number was read (or is one of seqs); flight:
 * the numbers still held by transactions in flight (in order, apart).  A
 * number up to looked neither read nor in flight never will be seen.
 */
void
qu_advance(const QuCursor *old, const int64 *seqs, int nseqs, int64 looked,
		   const TeRange *flight, int nflight, QuCursor *new)
{
	int			n = 0;
	int			k = 0;

	new->hi = Max(old->hi, looked);

	/* Old holes and the new gap above hi, less what was read and what is not in flight. */
	for (int h = 0; h <= old->nholes; h++)
	{
		int64		lo = h < old->nholes ? old->holes[h].lo : old->hi + 1;
		int64		hi = h < old->nholes ? old->holes[h].hi : new->hi;

		while (k < nseqs && seqs[k] < lo)
			k++;
		for (; k < nseqs && seqs[k] <= hi; k++)
		{
			qu_gap_add(new->holes, &n, lo, seqs[k] - 1, looked, flight, nflight);
			lo = seqs[k] + 1;
		}
		qu_gap_add(new->holes, &n, lo, hi, looked, flight, nflight);
	}
	new->nholes = n;
}

/*
 * The first hole that breaks the cursor's rules (holes in order, apart,
 * from 1 to hi), or -1 when there is none.
 */
int
qu_cursor_bad_hole(const QuCursor *c)
{
	for (int i = 0; i < c->nholes; i++)
	{
		const TeRange *h = &c->holes[i];

		if (h->lo < 1 || h->lo > h->hi || h->hi > c->hi ||
			(i > 0 && h->lo <= c->holes[i - 1].hi))
			return i;
	}
	return -1;
}

bool
qu_cursor_equal(const QuCursor *a, const QuCursor *b)
{
	return a->hi == b->hi && a->nholes == b->nholes &&
		memcmp(a->holes, b->holes, sizeof(TeRange) * a->nholes) == 0;
}

/* The last run of numbers of table t that is over, with last given out: -1 when none. */
int64
qu_last_run(int t, int64 last)
{
	int64		current = (last + 1) / TE_QUEUE_RUN;
	int64		run = current - ((current - t) % TE_QUEUE_TABLES + TE_QUEUE_TABLES) % TE_QUEUE_TABLES;

	return run == current || run < 0 ? -1 : run;
}

/*
 * The run of table t that may be emptied after, with last given out and the
 * cursor c, or -1: its last run that is over, every number of it read (up
 * to the first hole), and not the run it was emptied after already.
 */
int64
qu_run_to_empty(int t, int64 last, const QuCursor *c, int64 emptied)
{
	int64		done = c->nholes > 0 ? c->holes[0].lo - 1 : c->hi;
	int64		run = qu_last_run(t, last);

	if (run < 0 || run == emptied || done < (run + 1) * TE_QUEUE_RUN - 1)
		return -1;
	return run;
}

/* Have writers, with last given out, reached the next run of run's table? */
bool
qu_run_taken_again(int64 run, int64 last)
{
	return (last + 1) / TE_QUEUE_RUN > run + TE_QUEUE_TABLES - 1;
}

/* Milliseconds from now until due (microseconds), at most poll_ms, at least 1 unless due. */
long
qu_due_ms(int64 now, int64 due, long poll_ms)
{
	if (due <= now)
		return 0;
	if (due - now < (int64) poll_ms * 1000)
		return Max((due - now + 999) / 1000, 1);
	return poll_ms;
}
