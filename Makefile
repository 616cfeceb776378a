# taskevents: PostgreSQL extension that publishes task changes as CloudEvents
# through a Dapr sidecar.  Built with PGXS: make && make install.

EXTENSION = taskevents
DATA = sql/taskevents--1.0.sql sql/taskevents--1.0--1.1.sql sql/taskevents--1.1--1.2.sql \
	sql/taskevents--1.2--1.3.sql
MODULE_big = taskevents
OBJS = \
	src/taskevents.o \
	src/settings.o \
	src/capture.o \
	src/outbox.o \
	src/cloudevent.o \
	src/shared.o \
	src/horizon.o \
	src/cursor.o \
	src/inflight.o \
	src/url.o \
	src/dapr.o \
	src/spiutil.o \
	src/queue.o \
	src/backfill.o \
	src/status.o \
	src/durable.o \
	src/round.o \
	src/worker.o \
	src/launcher.o

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK = -lcurl

# pg_regress (test/regress/sql, expected/): SQL-visible behaviour, on a
# throw-away instance without the worker (capture only), so the outbox stays
# exactly as the tests wrote it.
REGRESS = install capture events truncate attach privileges preview values
REGRESS_OPTS = --inputdir=$(srcdir)/test/regress --temp-instance=$(CURDIR)/tmp_regress \
	--temp-config=$(srcdir)/test/regress.conf

# Isolation (test/isolation/specs, expected/): races between sessions, each
# interleaving spelled out, on the same kind of instance.
ISOLATION = truncate attach backfill replay
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation --temp-instance=$(CURDIR)/tmp_isolation \
	--temp-config=$(srcdir)/test/regress.conf

# TAP: the worker, faults, restarts and crashes.
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_regress tmp_isolation tmp_check test/unit/unit

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# After PGXS, which empties PROVE_FLAGS: three scripts at a time (they mostly
# wait), each one's time shown.
PROVE_FLAGS = --timer -j3

# Unit tests of the queue's arithmetic: src/cursor.c alone, outside the server.
unitcheck: test/unit/unit.c src/cursor.c src/cursor.h
	$(CC) $(CFLAGS) $(CPPFLAGS) test/unit/unit.c src/cursor.c -L$(pkglibdir) -lpgcommon -lpgport -o test/unit/unit
	test/unit/unit
.PHONY: unitcheck
