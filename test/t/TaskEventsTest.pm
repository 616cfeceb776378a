# Shared helpers of the TAP tests: a PostgreSQL node with taskevents
# preloaded, the fake Dapr sidecar (test/sidecar/fakedapr), and the task
# table of the seed application.
package TaskEventsTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Test2::API qw(test2_add_callback_testing_done);
use Time::HiRes qw(usleep);

our @EXPORT = qw(new_node start_sidecar wait_until wait_drained delivered_events tasks_ddl te_id_ddl load_events
  rebuild_diff session cursor_holes set_delivery rolled_back_inserts);

our $TOP = abs_path(dirname(__FILE__) . '/../..');

# The seed application's task table (test/tasks.sql).
sub tasks_ddl
{
	return PostgreSQL::Test::Utils::slurp_file("$TOP/test/tasks.sql");
}

# te_id(i): the id of task number i, for tests that number their tasks
# 1..n (test/bench/backfill_writer.sql writes tasks by their number).
sub te_id_ddl
{
	return q{CREATE FUNCTION te_id(i int) RETURNS uuid LANGUAGE sql IMMUTABLE
	    AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid $$;
	};
}

# A started node with taskevents preloaded (the settings of the Docker image,
# docker/postgresql.taskevents.conf), pointed at the given sidecar port, with
# short backoffs so retries happen within a test.
sub new_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} // {} });
	$node->append_conf('postgresql.conf', "include '$TOP/docker/postgresql.taskevents.conf'");
	my $conf = "taskevents.port = " . ($opt{port} // 9) . "\n"
	  . "taskevents.backoff_min = '50ms'\n"
	  . "taskevents.backoff_max = '1s'\n"
	  . "taskevents.timeout = '1s'\n"
	  # one event per request, whose answers the tests aim at; 009_bulk
	  # covers bulk and how auto chooses
	  . "taskevents.bulk = off\n"
	  . "taskevents.poll_interval = '200ms'\n"
	  . "log_min_messages = debug1\n"
	  . ($opt{conf} // '');
	$node->append_conf('postgresql.conf', $conf);
	$node->start unless $opt{no_start};
	return $node;
}

# Poll until the code returns true (up to $timeout seconds, default 30).
sub wait_until
{
	my ($what, $code, $timeout) = @_;
	$timeout //= 30;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if $code->();
		usleep(50_000);
	}
	fail("timed out waiting for: $what");
	return 0;
}

# Wait until a database's outbox is empty: every change delivered or dead.
sub wait_drained
{
	my ($node, $what, $timeout, $db) = @_;
	return wait_until($what, sub {
		$node->safe_psql($db // 'postgres', 'SELECT count(*) FROM taskevents.outbox') eq '0' }, $timeout);
}

sub start_sidecar
{
	return FakeDapr->start(@_);
}

# The CloudEvents the sidecar accepted, in arrival order, as hashes with the
# parsed event under {event}.  A bulk request counts as its entries, less
# those its answer lists as failed.
sub delivered_events
{
	my ($sidecar) = @_;
	my @ok;
	for my $r (@{ $sidecar->records })
	{
		if ($r->{path} =~ m{/v1\.0/publish/bulk/})
		{
			next unless ref $r->{body} eq 'ARRAY';
			my %failed;
			if ($r->{status} < 200 || $r->{status} > 299)
			{
				next unless ref $r->{response} eq 'HASH' && $r->{response}{failedEntries};
				$failed{ $_->{entryId} } = 1 for @{ $r->{response}{failedEntries} };
			}
			for my $entry (@{ $r->{body} })
			{
				next if $failed{ $entry->{entryId} };
				push @ok, { %$r, body => undef, event => $entry->{event}, entry => $entry,
					content_type => $entry->{contentType} };
			}
			next;
		}
		push @ok, $r if $r->{status} >= 200 && $r->{status} < 300;
	}
	return \@ok;
}

# The events a consumer received, loaded into a new table of the node's
# database for SQL to check: $table (topic, part, pos, ord, event jsonb),
# each partition's events in (pos, ord) order.  kind "fakedapr": the events
# the fake sidecar accepted ($file: its --record file), one partition in
# arrival order, a bulk request's entries in their order less those its
# answer lists as failed; kind "kafka": KafkaTool's records ($file), by
# partition and offset.  Read by the server (COPY): the files must be
# complete, e.g. after wait_drained.
sub load_events
{
	my ($node, $table, $kind, $file) = @_;
	my $rows = $kind eq 'kafka'
	  ? q{SELECT j->>'topic', (j->>'partition')::int, (j->>'offset')::bigint, 0, (j->>'value')::jsonb FROM r}
	  : q{SELECT substring(j->>'path' from '[^/]+$'), 0, (j->>'n')::bigint, 0, j->'body' FROM r
	       WHERE j->>'path' !~ '^/v1\.0/publish/bulk/' AND (j->>'status')::int BETWEEN 200 AND 299
	     UNION ALL
	     SELECT substring(j->>'path' from '[^/]+$'), 0, (j->>'n')::bigint, e.ord::int, e.entry->'event'
	       FROM r CROSS JOIN LATERAL jsonb_array_elements(j->'body') WITH ORDINALITY e(entry, ord)
	      WHERE j->>'path' ~ '^/v1\.0/publish/bulk/' AND jsonb_typeof(j->'body') = 'array'
	        AND ((j->>'status')::int BETWEEN 200 AND 299
	             OR (j->'response' ? 'failedEntries'
	                 AND NOT j->'response'->'failedEntries' @> jsonb_build_array(jsonb_build_object('entryId', e.entry->'entryId'))))};
	# every byte as it is: no quote or delimiter character occurs in JSON text
	$node->safe_psql('postgres', qq{
		SET client_min_messages = warning;
		DROP TABLE IF EXISTS $table;
		CREATE TABLE $table (topic text, part int, pos bigint, ord int, event jsonb);
		CREATE TEMP TABLE lines (line text);
		COPY lines FROM '$file' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02');
		INSERT INTO $table WITH r AS (SELECT line::jsonb AS j FROM lines) $rows;
		ANALYZE $table;});
}

# A consumer's rebuild of the table tasks from the events of load_events()'s
# $table: each partition of task-events read from the first event with the
# trace id $from (a backfill's: "backfill-<id>") on, each task's last task.*
# event applied as it is (task.deleted: the task is gone), compared with the
# table's id, user_id, title and completed.  Returns "N tasks: M missing, S
# stale, E resurrected or extra" (N: the table's) and, when any differ, a few
# of them.
sub rebuild_diff
{
	my ($node, $table, $from) = @_;
	my $cmp = qq{
		WITH ev AS (SELECT part, pos, ord, event FROM $table WHERE topic = 'task-events'),
		start AS (SELECT DISTINCT ON (part) part, pos, ord FROM ev
		           WHERE event->>'traceid' = '$from' ORDER BY part, pos, ord),
		last AS (SELECT DISTINCT ON (ev.event->'data'->>'task_id') ev.event
		           FROM ev JOIN start s ON s.part = ev.part AND (ev.pos, ev.ord) >= (s.pos, s.ord)
		          WHERE ev.event->>'type' LIKE 'task.%'
		          ORDER BY ev.event->'data'->>'task_id', ev.pos DESC, ev.ord DESC),
		rebuilt AS (SELECT (event->'data'->>'task_id')::uuid AS id, (event->'data'->>'user_id')::uuid AS user_id,
		                   event->'data'->>'title' AS title, (event->'data'->>'completed')::boolean AS completed
		              FROM last WHERE event->>'type' <> 'task.deleted'),
		cmp AS (SELECT coalesce(t.id, r.id) AS id, CASE WHEN r.id IS NULL THEN 'missing' WHEN t.id IS NULL THEN 'extra'
		               WHEN (t.user_id, t.title, t.completed) IS DISTINCT FROM (r.user_id, r.title, r.completed) THEN 'stale' END AS what,
		               t AS in_table, r AS rebuilt
		          FROM tasks t FULL JOIN rebuilt r ON r.id = t.id)};
	my $summary = $node->safe_psql('postgres', qq{$cmp
		SELECT count(*) FILTER (WHERE what IS DISTINCT FROM 'extra') || ' tasks: ' || count(*) FILTER (WHERE what = 'missing') || ' missing, '
		       || count(*) FILTER (WHERE what = 'stale') || ' stale, '
		       || count(*) FILTER (WHERE what = 'extra') || ' resurrected or extra' FROM cmp});
	my $examples = $summary =~ /: 0 missing, 0 stale, 0 resurrected/ ? ''
	  : $node->safe_psql('postgres', "$cmp SELECT what, id, in_table, rebuilt FROM cmp WHERE what IS NOT NULL LIMIT 5");
	return ($summary, $examples);
}

# How many numbers the holes of the queue's cursor hold (taskevents.tick).
sub cursor_holes
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT coalesce(sum(h - l + 1), 0) FROM (SELECT hole_lo, hole_hi FROM taskevents.tick ORDER BY id DESC LIMIT 1) t,'
		  . ' unnest(t.hole_lo, t.hole_hi) AS u(l, h)');
}

# count INSERTs into tasks, each rolled back (a subtransaction of one
# committed transaction); with every_kept, each every_kept-th row is kept.
sub rolled_back_inserts
{
	my ($node, $count, $every_kept) = @_;
	my $keep = $every_kept
	  ? "IF i % $every_kept = 0 THEN INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'kept ' || i); END IF;"
	  : '';
	$node->safe_psql('postgres', qq{DO \$\$ BEGIN FOR i IN 1..$count LOOP
		BEGIN
			INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'rolled back ' || i);
			RAISE EXCEPTION 'roll back';
		EXCEPTION WHEN raise_exception THEN NULL;
		END;
		$keep
	END LOOP; END \$\$});
}

# Turn delivery on or off (taskevents.enabled) and wait for the worker to follow.
sub set_delivery
{
	my ($node, $on) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.enabled = $on; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres',
		"SELECT worker_state " . ($on eq 'on' ? '<>' : '=') . " 'disabled' FROM taskevents.status")
	  or die 'the worker did not follow taskevents.enabled';
}

# The consumer's contract: every event a test delivers is checked against
# schema/ (test/contract/validate.py) when the test is done, one test per
# file of events.  kind: "fakedapr" (a --record file: every publish request,
# answered or not) or "kafka" (test/real/kafka/KafkaTool.java's records).
my @contract_files;
test2_add_callback_testing_done(sub {
	for my $f (@contract_files)
	{
		my ($kind, $file) = @$f;
		next unless -e $file;
		my $out = '';
		my $ok = IPC::Run::run([ 'python3', "$TOP/test/contract/validate.py", "--$kind", $file ],
			'>', \$out, '2>&1');
		my ($n) = $out =~ /: (\d+) events, /;
		ok($ok, "every CloudEvent in $kind records " . ($file =~ s{.*/}{}r)
			  . " matches schema/ (" . ($n // '?') . " events)")
		  or diag($out);
	}
});

sub validate_at_end
{
	my ($kind, $file) = @_;
	push @contract_files, [ $kind, $file ];
}

# A psql session kept open, to interleave statements of several sessions.
sub session
{
	return Session->new(@_);
}

package Session;

use strict;
use warnings;
use IPC::Run;

my $marker = 0;

sub new
{
	my ($class, $node, $db) = @_;
	my $self = bless { in => '', out => '', err => '' }, $class;
	$self->{h} = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($db // 'postgres') ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err});
	return $self;
}

# Send statements without waiting for them (they may block).
sub send
{
	my ($self, $sql) = @_;
	$marker++;
	$self->{wait} = "__done_$marker";
	$self->{out} = '';
	$self->{in} .= "$sql\n\\echo $self->{wait}\n";
	$self->{h}->pump_nb;
}

# Wait for what was sent to finish; its output (errors die).
sub result
{
	my ($self) = @_;
	$self->{h}->pump until $self->{out} =~ /\Q$self->{wait}\E\n/;
	die "session error: $self->{err}" if $self->{err} =~ /ERROR/;
	(my $out = $self->{out}) =~ s/\Q$self->{wait}\E\n//;
	chomp $out;
	return $out;
}

sub query
{
	my ($self, $sql) = @_;
	$self->send($sql);
	return $self->result;
}

sub close
{
	my ($self) = @_;
	$self->{in} .= "\\q\n";
	$self->{h}->finish;
}

package FakeDapr;

use strict;
use warnings;
use JSON::PP;
use HTTP::Tiny;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;

my $count = 0;
my @started;

# Stop every sidecar when the test ends (DESTROY is not reliable at exit).
END { $_->stop for @started }

# Start test/sidecar/fakedapr; options: port, token, pubsub, max_body, bind.
sub start
{
	my ($class, %opt) = @_;
	my $self = bless { opt => \%opt }, $class;
	$count++;
	$self->{record} = "$PostgreSQL::Test::Utils::tmp_check/fakedapr_$$" . "_$count.jsonl";
	unlink $self->{record};
	TaskEventsTest::validate_at_end('fakedapr', $self->{record});
	$self->_launch($opt{port} // 0);
	push @started, $self;
	return $self;
}

sub _launch
{
	my ($self, $port) = @_;
	my %opt = %{ $self->{opt} };
	my @cmd = ("$TaskEventsTest::TOP/test/sidecar/fakedapr", '--port', $port,
		'--control-port', 0, '--record', $self->{record});
	push @cmd, '--token', $opt{token} if defined $opt{token};
	push @cmd, '--pubsub', $opt{pubsub} if defined $opt{pubsub};
	push @cmd, '--max-body', $opt{max_body} if defined $opt{max_body};
	push @cmd, '--bind', $opt{bind} if defined $opt{bind};
	my ($out, $err) = ('', '');
	$self->{out} = \$out;
	$self->{h} = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);
	my $deadline = time + 10;
	until ($self->{port})
	{
		die "fakedapr did not start: $err" if time > $deadline;
		$self->{h}->pump_nb;
		($self->{port}, $self->{control}) = ($1, $2) if $out =~ /port=(\d+) control=(\d+)/;
		usleep(20_000);
	}
}

sub port { $_[0]{port} }
sub record_file { $_[0]{record} }

# Stop the process, and start it again on the same port (a sidecar restart).
sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	$self->{h}->signal('TERM');
	$self->{h}->finish;
	delete $self->{h};
}

# Freeze the whole process (nothing answers, not even readiness), and thaw it.
sub freeze { $_[0]{h}->signal('STOP') }
sub thaw { $_[0]{h}->signal('CONT') }

sub restart
{
	my ($self) = @_;
	$self->stop;
	$self->_launch($self->{port});
}

# Set the behaviour: mode(mode => 'fail', status => 500, code => '...', count => 3).
sub mode
{
	my ($self, %kv) = @_;
	# mode= first: it resets the other keys
	my $body = join('&', map { "$_=$kv{$_}" } sort { ($b eq 'mode') <=> ($a eq 'mode') || $a cmp $b } keys %kv);
	my $r = HTTP::Tiny->new(timeout => 5)
	  ->post("http://127.0.0.1:$self->{control}/mode", { content => $body });
	die "fakedapr /mode failed: $r->{status} $r->{content}" unless $r->{success};
}

sub stats
{
	my ($self) = @_;
	my $r = HTTP::Tiny->new(timeout => 5)->get("http://127.0.0.1:$self->{control}/stats");
	die "fakedapr /stats failed: $r->{status}" unless $r->{success};
	return decode_json($r->{content});
}

# Every publish request received, in order: {path, query, content_type, token, status, body}.
sub records
{
	my ($self) = @_;
	my @r;
	open(my $fh, '<', $self->{record}) or return [];
	while (my $line = <$fh>)
	{
		next unless $line =~ /\n\z/;    # a line still being written
		my $rec = decode_json($line);
		$rec->{event} = ref $rec->{body} ? $rec->{body} : eval { decode_json($rec->{body}) };
		push @r, $rec;
	}
	close $fh;
	return \@r;
}

sub DESTROY { $_[0]->stop }

1;
