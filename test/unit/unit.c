/*-------------------------------------------------------------------------
 * unit.c
 *		Unit tests of the queue's arithmetic (src/cursor.c), built against
 *		that file alone, outside the server: make unitcheck.
 *
 * Each test names what it guards; several are bugs the queue once had.
 * Ends with one line: "N passed, M failed".
 *-------------------------------------------------------------------------
 */
#include "c.h"

#include "cursor.h"

static int	passed = 0;
static int	failed = 0;
static bool test_ok;

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			printf("  %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			test_ok = false; \
		} \
	} while (0)

static void
run(const char *name, void (*fn) (void))
{
	test_ok = true;
	fn();
	if (test_ok)
		passed++;
	else
	{
		failed++;
		printf("FAILED: %s\n", name);
	}
}
#define RUN(fn) run(#fn, fn)

/* Are the ranges exactly these (lo, hi pairs)? */
static bool
ranges_are(const TeRange *r, int n, int want_n, const int64 *want)
{
	if (n != want_n)
		return false;
	for (int i = 0; i < n; i++)
		if (r[i].lo != want[2 * i] || r[i].hi != want[2 * i + 1])
			return false;
	return true;
}
#define RANGES(r, n, ...) \
	ranges_are(r, n, lengthof(((int64[]) {__VA_ARGS__})) / 2, (int64[]) {__VA_ARGS__})

/* A small deterministic generator (xorshift), for the property tests. */
static uint64 rng_state = 88172645463325252ULL;
static int64
rnd(int64 below)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (int64) (rng_state % (uint64) below);
}

/* ---- ranges ------------------------------------------------------------- */

/* A transaction's numbers: a run grows one range; a gap is filled and closes. */
static void
ranges_add_extends_and_fills(void)
{
	TeRange		r[8];
	int			n = 0;

	n = te_ranges_add(r, n, 8, 5);
	n = te_ranges_add(r, n, 8, 6);
	n = te_ranges_add(r, n, 8, 4);
	CHECK(RANGES(r, n, 4, 6));
	n = te_ranges_add(r, n, 8, 8);
	CHECK(RANGES(r, n, 4, 6, 8, 8));
	n = te_ranges_add(r, n, 8, 7);
	CHECK(RANGES(r, n, 4, 8));
	n = te_ranges_add(r, n, 8, 2);
	CHECK(RANGES(r, n, 2, 2, 4, 8));
	n = te_ranges_add(r, n, 8, 6);	/* already there */
	CHECK(RANGES(r, n, 2, 2, 4, 8));
}

/*
 * Once a bug: one range per transaction covered every number between two
 * of its writes, so the rollbacks of others in between stayed holes.
 */
static void
ranges_add_keeps_rollbacks_between_writes_out(void)
{
	TeRange		r[8];
	int			n = 0;

	n = te_ranges_add(r, n, 8, 1);
	n = te_ranges_add(r, n, 8, 1000);
	CHECK(RANGES(r, n, 1, 1, 1000, 1000));
}

/* When full, the two closest neighbours merge: the widest gaps stay out. */
static void
ranges_add_full_merges_closest(void)
{
	TeRange		r[4];
	int			n = 0;

	n = te_ranges_add(r, n, 4, 10);
	n = te_ranges_add(r, n, 4, 100);
	n = te_ranges_add(r, n, 4, 103);
	n = te_ranges_add(r, n, 4, 500);
	n = te_ranges_add(r, n, 4, 900);
	CHECK(RANGES(r, n, 10, 10, 100, 103, 500, 500, 900, 900));
	/* a number inside the merged range once merged */
	n = te_ranges_add(r, n, 4, 501);
	CHECK(RANGES(r, n, 10, 10, 100, 103, 500, 501, 900, 900));
}

/* Any numbers, any order: each is covered, the ranges in order and apart, at most max. */
static void
ranges_add_property(void)
{
	for (int round = 0; round < 2000; round++)
	{
		TeRange		r[8];
		int64		seqs[40];
		int			n = 0;
		int			max = 2 + rnd(7);
		int			count = 1 + rnd(40);

		for (int i = 0; i < count; i++)
		{
			seqs[i] = 1 + rnd(100);
			n = te_ranges_add(r, n, max, seqs[i]);
		}
		CHECK(n >= 1 && n <= max);
		for (int i = 0; i < n; i++)
		{
			CHECK(r[i].lo <= r[i].hi);
			CHECK(i == 0 || r[i].lo - 1 > r[i - 1].hi);
		}
		for (int i = 0; i < count; i++)
		{
			bool		covered = false;

			for (int k = 0; k < n; k++)
				covered |= r[k].lo <= seqs[i] && seqs[i] <= r[k].hi;
			CHECK(covered);
		}
		if (!test_ok)
			return;
	}
}

/* Merging: sorted, overlapping and touching ranges made one, a nested one swallowed. */
static void
ranges_merge_overlapping_touching_nested(void)
{
	TeRange		r[] = {{20, 30}, {1, 10}, {3, 4}, {11, 12}, {40, 40}, {5, 6}, {31, 35}};
	int			n = te_ranges_merge(r, lengthof(r));

	CHECK(RANGES(r, n, 1, 12, 20, 35, 40, 40));
}

/*
 * Once a bug: merging a "taking" range (up to PG_INT64_MAX) with a later
 * one overflowed (hi + 1): two overlapping ranges, an inconsistent cursor.
 */
static void
ranges_merge_up_to_int64_max(void)
{
	TeRange		r[] = {{7, 9}, {5, PG_INT64_MAX}, {40, 50}, {PG_INT64_MAX, PG_INT64_MAX}};
	int			n = te_ranges_merge(r, lengthof(r));

	CHECK(RANGES(r, n, 5, PG_INT64_MAX));
}

/* A transaction taking a number not known yet holds every number from its first on. */
static void
ranges_held_while_taking(void)
{
	TeRange		took[] = {{5, 7}, {10, 12}};
	TeRange		out[2];
	int			n;

	n = te_ranges_held(took, 2, false, out);
	CHECK(RANGES(out, n, 5, 7, 10, 12));
	n = te_ranges_held(took, 2, true, out);
	CHECK(RANGES(out, n, 5, PG_INT64_MAX));
	n = te_ranges_held(took, 0, true, out);
	CHECK(RANGES(out, n, 1, PG_INT64_MAX));
	n = te_ranges_held(took, 0, false, out);
	CHECK(n == 0);
}

/* ---- the cursor ---------------------------------------------------------- */

/* qu_advance() into buf, checking the room it asks for. */
static void
advance(const QuCursor *old, const int64 *seqs, int nseqs, int64 looked,
		const TeRange *flight, int nflight, QuCursor *new, TeRange *buf, int room)
{
	CHECK(qu_advance_size(old, nseqs, nflight) <= room);
	new->holes = buf;
	qu_advance(old, seqs, nseqs, looked, flight, nflight, new);
	CHECK(new->nholes <= qu_advance_size(old, nseqs, nflight));
	CHECK(qu_cursor_bad_hole(new) == -1);
}

/* Everything read: no holes.  A number neither read nor in flight was rolled back. */
static void
advance_reads_and_rollbacks(void)
{
	QuCursor	old = {0, NULL, 0};
	QuCursor	new;
	TeRange		buf[64];
	int64		seqs[] = {1, 3};
	TeRange		flight[] = {{2, 2}};

	advance(&old, seqs, 2, 3, NULL, 0, &new, buf, 64);
	CHECK(new.hi == 3 && new.nholes == 0);
	advance(&old, seqs, 2, 3, flight, 1, &new, buf, 64);
	CHECK(new.hi == 3 && RANGES(new.holes, new.nholes, 2, 2));
}

/* A hole closes when read, and when what held it ended; a "taking" range keeps it. */
static void
advance_closes_holes(void)
{
	TeRange		old_holes[] = {{4, 6}};
	QuCursor	old = {10, old_holes, 1};
	QuCursor	new;
	TeRange		buf[64];
	int64		seqs[] = {5};
	TeRange		taking[] = {{6, PG_INT64_MAX}};
	TeRange		all[] = {{1, PG_INT64_MAX}};

	advance(&old, seqs, 1, 10, NULL, 0, &new, buf, 64);
	CHECK(new.hi == 10 && new.nholes == 0);
	advance(&old, seqs, 1, 10, taking, 1, &new, buf, 64);
	CHECK(new.hi == 10 && RANGES(new.holes, new.nholes, 6, 6));
	advance(&old, seqs, 1, 12, all, 1, &new, buf, 64);
	CHECK(new.hi == 12 && RANGES(new.holes, new.nholes, 4, 4, 6, 6, 11, 12));
}

/* A claim cut short: what was not looked at stays a hole, whole; hi does not move back. */
static void
advance_cut_short(void)
{
	TeRange		old_holes[] = {{2, 3}, {6, 8}};
	QuCursor	old = {10, old_holes, 2};
	QuCursor	new;
	TeRange		buf[64];
	int64		seqs[] = {2};
	int64		above[] = {11, 12};

	advance(&old, seqs, 1, 2, NULL, 0, &new, buf, 64);
	CHECK(new.hi == 10 && RANGES(new.holes, new.nholes, 3, 3, 6, 8));
	/* cut short above hi: the rest above is not a hole, it is above hi */
	old.nholes = 0;
	advance(&old, above, 2, 12, NULL, 0, &new, buf, 64);
	CHECK(new.hi == 12 && new.nholes == 0);
}

/* The most holes a claim can leave: every piece of every gap cut by the flight ranges. */
static void
advance_most_holes(void)
{
	TeRange		old_holes[] = {{2, 3}, {5, 6}};
	QuCursor	old = {10, old_holes, 2};
	QuCursor	new;
	TeRange		buf[64];
	TeRange		flight[] = {{3, 5}, {6, 11}, {12, PG_INT64_MAX}};

	advance(&old, NULL, 0, 12, flight, 3, &new, buf, 64);
	CHECK(new.hi == 12 && RANGES(new.holes, new.nholes, 3, 3, 5, 5, 6, 6, 11, 11, 12, 12));
}

/*
 * Any cursor, any claim, against the rule itself: after a claim a number
 * up to the new hi is a hole when it was one (or above the old hi), was
 * not read, and either was not looked at or is still in flight.
 */
static void
advance_property(void)
{
	for (int round = 0; round < 20000; round++)
	{
		bool		hole[64] = {0};
		bool		read[64] = {0};
		bool		fl[64] = {0};
		TeRange		old_holes[32];
		TeRange		flight[32];
		TeRange		buf[256];
		int64		seqs[64];
		int			nold = 0,
					nseqs = 0,
					nflight = 0;
		QuCursor	old,
					new;
		int64		last,
					looked;

		old.hi = rnd(30);
		for (int x = 1; x <= old.hi; x++)
			if ((hole[x] = rnd(3) == 0))
			{
				if (nold > 0 && old_holes[nold - 1].hi == x - 1 && rnd(2))
					old_holes[nold - 1].hi = x;
				else
					old_holes[nold++] = (TeRange) {x, x};
			}
		old.holes = old_holes;
		old.nholes = nold;
		last = old.hi + rnd(30);
		looked = rnd(last + 1);
		for (int x = 1; x <= looked; x++)
			if ((hole[x] || x > old.hi) && (read[x] = rnd(2) == 0))
				seqs[nseqs++] = x;
		for (int x = 1; x < 63; x++)
			if ((fl[x] = rnd(4) == 0))
			{
				if (nflight > 0 && flight[nflight - 1].hi >= x - 2)
					flight[nflight - 1].hi = x;
				else
					flight[nflight++] = (TeRange) {x, x};
			}
		for (int i = 0; i < nflight; i++)	/* what the ranges hold, gaps of one merged */
			for (int64 x = flight[i].lo; x <= flight[i].hi; x++)
				fl[x] = true;
		if (nflight > 0 && rnd(4) == 0)
			flight[nflight - 1].hi = PG_INT64_MAX;	/* a transaction taking a number */

		advance(&old, seqs, nseqs, looked, flight, nflight, &new, buf, 256);
		CHECK(new.hi == Max(old.hi, looked));
		for (int x = 1; x < 63; x++)
		{
			bool		in_new = false;
			bool		in_flight = fl[x] || (nflight > 0 && flight[nflight - 1].hi == PG_INT64_MAX &&
											  x >= flight[nflight - 1].lo);
			bool		want = x <= new.hi && (hole[x] || x > old.hi) && !read[x] &&
				(x > looked || in_flight);

			for (int i = 0; i < new.nholes; i++)
				in_new |= new.holes[i].lo <= x && x <= new.holes[i].hi;
			CHECK(in_new == want);
		}
		if (!test_ok)
		{
			printf("  round %d: old hi " INT64_FORMAT ", looked " INT64_FORMAT "\n",
					round, old.hi, looked);
			return;
		}
	}
}

/* The checks before a cursor is written: in order, apart, from 1 up to hi. */
static void
cursor_bad_hole(void)
{
	TeRange		h[] = {{2, 3}, {5, 9}};
	QuCursor	c = {9, h, 2};

	CHECK(qu_cursor_bad_hole(&c) == -1);
	c.hi = 8;
	CHECK(qu_cursor_bad_hole(&c) == 1);		/* above hi */
	c.hi = 9;
	h[1].lo = 3;
	CHECK(qu_cursor_bad_hole(&c) == 1);		/* overlaps */
	h[1] = (TeRange) {1, 1};
	CHECK(qu_cursor_bad_hole(&c) == 1);		/* out of order */
	h[1] = (TeRange) {7, 6};
	CHECK(qu_cursor_bad_hole(&c) == 1);		/* empty */
	h[0] = (TeRange) {0, 1};
	CHECK(qu_cursor_bad_hole(&c) == 0);		/* below 1 */
}

static void
cursor_equal(void)
{
	TeRange		a_h[] = {{2, 3}, {5, 6}};
	TeRange		b_h[] = {{2, 3}, {5, 7}};
	QuCursor	a = {9, a_h, 2};
	QuCursor	b = {9, b_h, 2};

	CHECK(!qu_cursor_equal(&a, &b));
	b_h[1].hi = 6;
	CHECK(qu_cursor_equal(&a, &b));
	b.nholes = 1;
	CHECK(!qu_cursor_equal(&a, &b));
	b.nholes = 2;
	b.hi = 10;
	CHECK(!qu_cursor_equal(&a, &b));
}

/* ---- emptying the queue tables ------------------------------------------- */

/* Table t's last run that is over: the runs go round the tables in turn. */
static void
last_run_goes_round(void)
{
	const int64 R = TE_QUEUE_RUN;

	for (int t = 0; t < TE_QUEUE_TABLES; t++)
		CHECK(qu_last_run(t, 0) == -1);
	CHECK(qu_last_run(0, R - 2) == -1);	/* run 0 not over: R - 1 is still to come */
	CHECK(qu_last_run(0, R - 1) == 0);
	CHECK(qu_last_run(1, R - 1) == -1);
	CHECK(qu_last_run(0, 5 * R - 1) == 3);
	CHECK(qu_last_run(1, 5 * R - 1) == 4);
	CHECK(qu_last_run(2, 5 * R - 1) == -1);	/* run 5 is table 2's, being written */
	CHECK(qu_last_run(2, 5 * R - 2) == 2);
	for (int64 last = 0; last < 7 * R; last += R / 4)
		for (int t = 0; t < TE_QUEUE_TABLES; t++)
		{
			int64		run = qu_last_run(t, last);

			CHECK(run == -1 || (run % TE_QUEUE_TABLES == t && (run + 1) * R - 1 <= last &&
								(run + TE_QUEUE_TABLES + 1) * R - 1 > last));
		}
}

/*
 * A table is emptied only once every number of its last run is read: the
 * cursor's hi past it is not enough while a hole lies below (once a
 * mutant, each guarded by 025_emptying too).
 */
static void
run_to_empty_needs_every_number_read(void)
{
	const int64 R = TE_QUEUE_RUN;
	TeRange		h[] = {{R - 5, R - 5}};
	QuCursor	c = {R + 10, h, 1};

	CHECK(qu_run_to_empty(0, R + 10, &c, -1) == -1);	/* hole in run 0 */
	h[0] = (TeRange) {R + 3, R + 3};
	CHECK(qu_run_to_empty(0, R + 10, &c, -1) == 0);	/* hole in run 1 */
	CHECK(qu_run_to_empty(0, R + 10, &c, 0) == -1);	/* emptied after run 0 already */
	CHECK(qu_run_to_empty(1, R + 10, &c, -1) == -1);	/* run 1 not over */
	c.nholes = 0;
	c.hi = R - 2;
	CHECK(qu_run_to_empty(0, R + 10, &c, -1) == -1);	/* R - 1 not read */
	c.hi = R - 1;
	CHECK(qu_run_to_empty(0, R + 10, &c, -1) == 0);
	h[0] = (TeRange) {R, R};
	c.hi = R + 10;
	c.nholes = 1;
	CHECK(qu_run_to_empty(0, R + 10, &c, -1) == 0);	/* first hole just past it */
}

/* Under the lock: a writer given a number of the table's next run stops the TRUNCATE. */
static void
run_taken_again_at_next_turn(void)
{
	const int64 R = TE_QUEUE_RUN;

	CHECK(!qu_run_taken_again(0, 3 * R - 2));
	CHECK(qu_run_taken_again(0, 3 * R - 1));	/* the next number is run 3's: table 0 */
	CHECK(qu_run_taken_again(0, 3 * R));
	CHECK(!qu_run_taken_again(1, 3 * R));
}

/* ---- retry timing -------------------------------------------------------- */

static void
due_ms_rounds_up_and_caps(void)
{
	CHECK(qu_due_ms(1000000, 1000000, 500) == 0);
	CHECK(qu_due_ms(1000000, 999999, 500) == 0);
	CHECK(qu_due_ms(1000000, 1000001, 500) == 1);
	CHECK(qu_due_ms(1000000, 1001500, 500) == 2);
	CHECK(qu_due_ms(1000000, 1499999, 500) == 500);
	CHECK(qu_due_ms(1000000, 1500000, 500) == 500);
	CHECK(qu_due_ms(1000000, PG_INT64_MAX, 500) == 500);
}

int
main(void)
{
	RUN(ranges_add_extends_and_fills);
	RUN(ranges_add_keeps_rollbacks_between_writes_out);
	RUN(ranges_add_full_merges_closest);
	RUN(ranges_add_property);
	RUN(ranges_merge_overlapping_touching_nested);
	RUN(ranges_merge_up_to_int64_max);
	RUN(ranges_held_while_taking);
	RUN(advance_reads_and_rollbacks);
	RUN(advance_closes_holes);
	RUN(advance_cut_short);
	RUN(advance_most_holes);
	RUN(advance_property);
	RUN(cursor_bad_hole);
	RUN(cursor_equal);
	RUN(last_run_goes_round);
	RUN(run_to_empty_needs_every_number_read);
	RUN(run_taken_again_at_next_turn);
	RUN(due_ms_rounds_up_and_caps);
	printf("%d passed, %d failed\n", passed, failed);
	return failed > 0;
}
