# Helpers of the real-pipeline tests: Apache Kafka (KRaft on loopback, one
# node or a cluster), a real daprd with the pubsub.kafka component of docker/,
# a consumer that reads the three topics with the official CloudEvents SDK
# (test/real/kafka/KafkaTool.java), and the checks of what that consumer saw
# against what the extension sent.
#
# test/real/run.sh sets REAL_DAPRD (the daprd binary) and REAL_KAFKA_CP (the
# classpath of the broker and of KafkaTool).
package RealPipeline;

use strict;
use warnings;

use Exporter 'import';
use Cwd qw(abs_path);
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Test2::API qw(test2_add_callback_testing_done);
use Time::HiRes qw(usleep time);
use lib dirname(abs_path(__FILE__)) . '/../../t';
use TaskEventsTest;

our @EXPORT = qw(start_kafka start_daprd start_consumer start_subscriber real_node lifecycle_sql
  sent_events check_records wait_records writer writer_start daprd_answers APP_ID @TOPICS);

our $TOP = abs_path(dirname(__FILE__) . '/../../..');
our @TOPICS = qw(task-events task-updates reminders);
use constant APP_ID => 'taskevents-db';
use constant PARTITIONS => 3;

my $DAPRD = $ENV{REAL_DAPRD} // die "REAL_DAPRD is not set (run test/real/run.sh)";
my $CP = $ENV{REAL_KAFKA_CP} // die "REAL_KAFKA_CP is not set (run test/real/run.sh)";
my $JAVA = $ENV{JAVA} // 'java';
my $count = 0;
my @sdk_files;    # every consumer's records, for the SDKs' checks (below)

# A fresh directory under tmp_check (which every test file of a run shares),
# named after the test file: kept after the run, with the logs.
sub _dir
{
	my ($what) = @_;
	$count++;
	my $test = basename($0, '.pl');
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/${test}_${what}_$count";
	make_path($dir);
	return $dir;
}

# A started node with taskevents preloaded (TaskEventsTest::new_node), sending
# to the given daprd with the product's defaults for the request timeout and
# bulk publish (TaskEventsTest's are for the fake sidecar), and keeping
# delivered changes so that sent_events() can render every event captured.
sub real_node
{
	my ($name, $daprd, %opt) = @_;
	return new_node($name, port => $daprd->port,
		conf => "taskevents.timeout = '5min'\ntaskevents.bulk = auto\ntaskevents.retention = '1h'\n" . ($opt{conf} // ''),
		%{ $opt{node} // {} });
}

# ---------------------------------------------------------------- processes

# Start a program in the background with its output in a log file; returns a
# RealProc.  Every one still running is killed when the test ends.
my @procs;
END { local $?; $_->kill_now for @procs }

sub spawn
{
	my ($log, $env, @cmd) = @_;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT);
		$ENV{$_} = $env->{$_} for keys %$env;
		exec(@cmd) or POSIX::_exit(127);
	}
	my $p = bless { pid => $pid, cmd => [@cmd], log => $log }, 'RealProc';
	push @procs, $p;
	return $p;
}

package RealProc;

use POSIX ();
use Time::HiRes qw(usleep time);

sub pid { $_[0]{pid} }

# Still running?
sub alive
{
	my ($self) = @_;
	return 0 unless $self->{pid};
	my $r = waitpid($self->{pid}, POSIX::WNOHANG());
	if ($r == $self->{pid})
	{
		$self->{status} = $?;
		delete $self->{pid};
		return 0;
	}
	return 1;
}

sub signal
{
	my ($self, $sig) = @_;
	kill($sig, $self->{pid}) if $self->{pid};
}

# SIGTERM, and wait (up to $timeout s, then SIGKILL) until it exited.
sub stop
{
	my ($self, $timeout) = @_;
	return unless $self->alive;
	$self->signal('CONT');
	$self->signal('TERM');
	my $deadline = time + ($timeout // 60);
	while ($self->alive)
	{
		if (time > $deadline)
		{
			$self->signal('KILL');
			$deadline = time + 60;
		}
		usleep(20_000);
	}
}

# SIGKILL, and reap it.
sub kill_now
{
	my ($self) = @_;
	return unless $self->alive;
	$self->signal('KILL');
	usleep(10_000) while $self->alive;
}

package RealPipeline;

# ---------------------------------------------------------------- Kafka

# Kafka in KRaft mode (test/real/kafka/server.properties) on loopback: one
# node, or with brokers => N a cluster of N nodes, each broker and controller
# with ports and a data directory of its own, all in one controller quorum;
# then the three topics, PARTITIONS partitions each, with replicas => R
# replicas (1 by default) and min_insync => M (min.insync.replicas).  Returns
# a RealKafka: bootstrap lists every node; broker($id) is one node, to be
# stopped, killed and started on its own.
sub start_kafka
{
	my (%opt) = @_;
	my $n = $opt{brokers} // 1;
	my $self = bless { dir => _dir('kafka'), replicas => $opt{replicas} // 1,
		min_insync => $opt{min_insync} }, 'RealKafka';
	my @nodes = map {
		bless { id => $_, dir => $n == 1 ? $self->{dir} : "$self->{dir}/node$_",
			port => PostgreSQL::Test::Cluster::get_free_port(),
			controller => PostgreSQL::Test::Cluster::get_free_port(),
			# a cluster's JVMs get less memory: the machine runs three
			heap => $n == 1 ? [ '-Xms256m', '-Xmx512m' ] : ['-Xmx256m'] }, 'RealKafkaNode';
	} 1 .. $n;
	my $voters = join(',', map { "$_->{id}\@127.0.0.1:$_->{controller}" } @nodes);
	my $template = slurp_file("$TOP/test/real/kafka/server.properties");
	for my $node (@nodes)
	{
		my $d = $node->{dir};
		make_path($d);
		my %fill = (NODE => $node->{id}, VOTERS => $voters, PORT => $node->{port},
			CONTROLLER => $node->{controller}, DIR => $d);
		(my $props = $template) =~ s/\@(NODE|VOTERS|PORT|CONTROLLER|DIR)\@/$fill{$1}/g;
		open(my $fh, '>', "$d/server.properties") or die;
		print $fh $props;
		close $fh;
		system($JAVA, '-cp', $CP, 'kafka.tools.StorageTool', 'format',
			'-t', 't6oWfGI7RnWWt1uvelZjDw', '-c', "$d/server.properties") == 0
		  or die "formatting Kafka's storage failed";
	}
	$self->{nodes} = \@nodes;
	$self->start;
	$self->wait_ready;
	return $self;
}

package RealKafka;

use Time::HiRes qw(usleep time);

sub bootstrap { join(',', map { "127.0.0.1:$_->{port}" } @{ $_[0]{nodes} }) }
sub broker { $_[0]{nodes}[ $_[1] - 1 ] }

# Start every node (again: same ports, same data).
sub start { $_->start for @{ $_[0]{nodes} } }

# Create the topics if they are not there, and wait until Kafka takes
# requests: every partition of the topics has a leader and all its replicas
# in sync (so a node started again has caught up).
sub wait_ready
{
	my ($self) = @_;
	my $spec = join(':', RealPipeline::PARTITIONS, $self->{replicas}, $self->{min_insync} // ());
	system($JAVA, '-cp', $CP, 'KafkaTool', 'topics', $self->bootstrap, $spec, @TOPICS) == 0
	  or die "Kafka is not ready (logs: $self->{dir})";
}

# Each partition of a topic: { partition => [leader's node id (-1: none), [in-sync node ids]] }.
sub partitions
{
	my ($self, $topic) = @_;
	open(my $fh, '-|', $JAVA, '-cp', $CP, 'KafkaTool', 'describe', $self->bootstrap, $topic) or die;
	my %p;
	while (<$fh>)
	{
		chomp;
		my (undef, $part, $leader, $isr) = split / /;
		$p{$part} = [ $leader, [ split /,/, $isr // '' ] ];
	}
	close($fh) or die "KafkaTool describe $topic failed";
	return \%p;
}

# Stop every node (controlled shutdown), and wait until each has exited.
sub stop { $_->stop for reverse @{ $_[0]{nodes} } }
# SIGKILL every node: no controlled shutdown.
sub kill { $_->kill for @{ $_[0]{nodes} } }

package RealKafkaNode;

sub id { $_[0]{id} }

# Start the node (again: same ports, same data).
sub start
{
	my ($self) = @_;
	$self->{proc} = RealPipeline::spawn("$self->{dir}/kafka.log", {},
		$JAVA, @{ $self->{heap} }, '-XX:+UseG1GC', '-Djava.awt.headless=true',
		'-Dtaskevents.loglevel=INFO', '-cp', $CP, 'kafka.Kafka', "$self->{dir}/server.properties");
}

# SIGTERM (controlled shutdown: its partitions' leadership moves first), and
# wait until it has exited.
sub stop { $_[0]{proc}->stop(120) }

# SIGKILL: gone at once, the controller notices when its session expires.
sub kill { $_[0]{proc}->kill_now }

package RealPipeline;

# ---------------------------------------------------------------- daprd

# daprd as users run it beside PostgreSQL (docker/compose.yaml): --app-id,
# --resources-path with docker/'s pubsub-kafka component pointed at the local
# broker, --config with docker/'s Configuration, the HTTP API on loopback,
# DAPR_API_TOKEN when a token is given.  Standalone, with nothing the pubsub
# does not need: no metrics server, no placement or scheduler, name resolution
# that sends nothing (Kubernetes DNS names instead of mDNS announcements).
# Options: kafka (required), token, component => 0 (start without it),
# metadata => [[name, value], ...] added to the component, api_logging,
# log_level (debug also logs the Kafka client's, sarama's, retries);
# for a consumer's sidecar: app_id, app_port, component_yaml (instead of
# docker/'s), resources => [files copied beside the component].
sub start_daprd
{
	my (%opt) = @_;
	my $self = bless { dir => _dir('daprd'), opt => \%opt }, 'RealDaprd';
	$self->{$_} = PostgreSQL::Test::Cluster::get_free_port() for qw(port grpc internal);
	make_path("$self->{dir}/components");

	my $config = PostgreSQL::Test::Utils::slurp_file("$TOP/docker/components/config.yaml");
	die "docker/components/config.yaml: spec is not its last section"
	  unless $config =~ /^spec:\n(?:(?:  .*|#.*|)\n)*\z/m;
	open(my $fh, '>', "$self->{dir}/config.yaml") or die;
	print $fh $config, "  nameResolution:\n    component: kubernetes\n";
	close $fh;

	$self->write_component(@{ $opt{metadata} // [] }) unless defined $opt{component} && !$opt{component};
	for my $f (@{ $opt{resources} // [] })
	{
		open(my $out, '>', "$self->{dir}/components/" . basename($f)) or die;
		print $out slurp_file($f);
		close $out;
	}
	$self->start;
	return $self;
}

package RealDaprd;

use HTTP::Tiny;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

sub port { $_[0]{port} }
sub log { $_[0]{dir} . '/daprd.log' }
sub component_file { $_[0]{dir} . '/components/pubsub-kafka.yaml' }

# Write the component (docker/components/pubsub-kafka.yaml, brokers set to
# the local broker, extra metadata appended); a running daprd hot-reloads it.
sub write_component
{
	my ($self, @metadata) = @_;
	my $file = $self->{opt}{component_yaml} // "$RealPipeline::TOP/docker/components/pubsub-kafka.yaml";
	my $yaml = slurp_file($file);
	my $brokers = $self->{opt}{kafka}->bootstrap;
	$yaml =~ s/^(\s+value: )"kafka:9092"$/$1"$brokers"/m
	  or die "$file: no brokers value \"kafka:9092\"";
	$yaml .= "    - name: $_->[0]\n      value: \"$_->[1]\"\n" for @metadata;
	my $tmp = "$self->{dir}/pubsub-kafka.yaml.tmp";
	open(my $fh, '>', $tmp) or die;
	print $fh $yaml;
	close $fh;
	rename($tmp, $self->component_file) or die "rename: $!";
}

sub remove_component { unlink($_[0]->component_file) }

# Start daprd (again, on the same ports) and wait until its HTTP API answers
# /v1.0/healthz (components loaded).
sub start
{
	my ($self) = @_;
	my %opt = %{ $self->{opt} };
	my @cmd = ($DAPRD, '--app-id', $opt{app_id} // RealPipeline::APP_ID,
		'--resources-path', "$self->{dir}/components",
		'--config', "$self->{dir}/config.yaml",
		'--dapr-http-port', $self->{port},
		'--dapr-grpc-port', $self->{grpc},
		'--dapr-internal-grpc-port', $self->{internal},
		'--dapr-listen-addresses', '127.0.0.1',
		'--dapr-internal-grpc-listen-address', '127.0.0.1',
		'--enable-metrics=false', '--metrics-listen-address', '127.0.0.1',
		'--max-body-size', '4Mi',
		'--log-level', $opt{log_level} // 'info');
	push @cmd, '--enable-api-logging' if $opt{api_logging} // 1;
	push @cmd, '--app-port', $opt{app_port}, '--app-protocol', 'http' if $opt{app_port};
	$self->{proc} = RealPipeline::spawn($self->log, { DAPR_API_TOKEN => $opt{token} // '' }, @cmd);
	my $deadline = time + 60;
	my $http = HTTP::Tiny->new(timeout => 2);
	until ($http->get("http://127.0.0.1:$self->{port}/v1.0/healthz")->{status} == 204)
	{
		die "daprd exited while starting (log: " . $self->log . ")" unless $self->{proc}->alive;
		die "daprd not healthy after 60 s (log: " . $self->log . ")" if time > $deadline;
		usleep(50_000);
	}
}

sub stop { $_[0]{proc}->stop(30) }
sub kill { $_[0]{proc}->kill_now }
sub freeze { $_[0]{proc}->signal('STOP') }
sub thaw { $_[0]{proc}->signal('CONT') }
sub restart { $_[0]->stop; $_[0]->start }

package RealPipeline;

# ---------------------------------------------------------------- consumer

# KafkaTool consume: every record of the three topics, from the beginning.
sub start_consumer
{
	my ($kafka) = @_;
	my $self = bless { dir => _dir('consumer') }, 'RealConsumer';
	$self->{file} = "$self->{dir}/records.jsonl";
	TaskEventsTest::validate_at_end('kafka', $self->{file});
	push @sdk_files, $self->{file};
	$self->{proc} = spawn("$self->{dir}/consumer.log", {},
		$JAVA, '-Xmx256m', '-cp', $CP, 'KafkaTool', 'consume', $kafka->bootstrap, $self->{file}, @TOPICS);
	my $deadline = time + 60;
	until (-s "$self->{dir}/consumer.log"
		&& slurp_file("$self->{dir}/consumer.log") =~ /^consuming \d+ partitions/m)
	{
		die "the consumer did not start: " . slurp_file("$self->{dir}/consumer.log")
		  if !$self->{proc}->alive || time > $deadline;
		usleep(50_000);
	}
	return $self;
}

# The consumer's contract, item "other SDKs": when the test is done, every
# record each consumer read is read again with the official CloudEvents SDKs
# for Python, JavaScript and Go (test/contract/sdk_*; Java's is KafkaTool's
# own), each of which must see the event as the record holds it: one test
# per SDK and consumer.
test2_add_callback_testing_done(sub {
	my $c = "$TOP/test/contract";
	for my $file (@sdk_files)
	{
		next unless -s $file;
		for my $sdk ([ python => 'python3', "$c/sdk_python.py", $file ],
			[ javascript => 'node', "$c/sdk_js.mjs", "$c/node_modules", $file ],
			[ go => "$c/bin/sdk-go", $file ])
		{
			my ($lang, @cmd) = @$sdk;
			my $out = '';
			my $ok = eval { IPC::Run::run(\@cmd, '>', \$out, '2>&1') };
			$out .= $@ if $@;
			my ($n) = $out =~ /: (\d+) records, /;
			ok($ok, "the CloudEvents SDK for $lang reads every record of " . basename(dirname($file))
				  . " as sent (" . ($n // '?') . " records)")
			  or diag($out);
		}
	}
});

# A consumer team's Dapr app (test/real/subscriber/app.py) behind a second
# daprd of its own, with the declarative subscriptions and the component of
# test/real/subscriber/ (routing on the CloudEvent type).  Every event it
# receives is checked against schema/ when the test is done.
sub start_subscriber
{
	my ($kafka) = @_;
	my $self = bless { dir => _dir('subscriber') }, 'RealSubscriber';
	$self->{file} = "$self->{dir}/deliveries.jsonl";
	TaskEventsTest::validate_at_end('subscriber', $self->{file});
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	$self->{app} = spawn("$self->{dir}/app.log", {}, 'python3', "$TOP/test/real/subscriber/app.py",
		$port, $self->{file});
	my $deadline = time + 30;
	until (-s "$self->{dir}/app.log" && slurp_file("$self->{dir}/app.log") =~ /^listening/m)
	{
		die "the subscriber app did not start: " . slurp_file("$self->{dir}/app.log")
		  if !$self->{app}->alive || time > $deadline;
		usleep(50_000);
	}
	$self->{daprd} = start_daprd(kafka => $kafka, app_id => 'taskevents-consumer', app_port => $port,
		component_yaml => "$TOP/test/real/subscriber/pubsub-kafka.yaml",
		resources => ["$TOP/test/real/subscriber/subscription.yaml"]);
	return $self;
}

package RealSubscriber;

use JSON::PP;

sub daprd { $_[0]{daprd} }

# Every delivery so far, in arrival order: {route, content_type, status, event}.
sub deliveries
{
	my ($self) = @_;
	my @d;
	open(my $fh, '<', $self->{file}) or return [];
	while (my $line = <$fh>)
	{
		last unless $line =~ /\n\z/;
		my $r = decode_json($line);
		$r->{event} = eval { JSON::PP->new->utf8(0)->decode($r->{body}) };
		push @d, $r;
	}
	close $fh;
	return \@d;
}

sub stop { $_[0]{daprd}->stop; $_[0]{app}->stop(10) }

package RealConsumer;

use JSON::PP;

# The file of its records (one JSON line per record).
sub file { $_[0]{file} }

# Every record read so far, in the order read, each with its value parsed
# (value_json) and, when the SDK read it, the event's data parsed (ce_data).
# Lines are parsed once: each call reads only what was added since the last.
sub records
{
	my ($self) = @_;
	$self->{records} //= [];
	$self->{pos} //= 0;
	open(my $fh, '<', $self->{file}) or return $self->{records};
	seek($fh, $self->{pos}, 0);
	while (my $line = <$fh>)
	{
		last unless $line =~ /\n\z/;    # a line still being written
		$self->{pos} += length($line);
		my $r = decode_json($line);
		$r->{value_json} = eval { JSON::PP->new->utf8(0)->decode($r->{value}) };
		$r->{ce_data} = eval { JSON::PP->new->utf8(0)->decode($r->{ce}{data}) } if $r->{ce};
		push @{ $self->{records} }, $r;
	}
	close $fh;
	return $self->{records};
}

sub stop { $_[0]{proc}->stop(30) }

package RealPipeline;

# ---------------------------------------------------------------- workload

# SQL for the whole life of each task: every event type of SPEC §2, reminders
# included, with a writer's correlation id and W3C trace context on some
# transactions.  One statement per transaction, so commit order is statement
# order.  Tasks interleave: task 1's step 1, task 2's step 1, ...
sub lifecycle_sql
{
	my ($tag, $n) = @_;
	my @steps = (
		sub {
			my ($id, $i) = @_;
			return "BEGIN; SET LOCAL taskevents.trace_id = '$tag-request-$i';"
			  . " SET LOCAL taskevents.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';"
			  . " INSERT INTO tasks (id, user_id, title, due_date) VALUES ('$id', gen_random_uuid(),"
			  . " E'$tag task $i: \"quoted\" \\\\ back\\\\slash, <html> & 🥛', '2030-01-01 09:00Z'); COMMIT;";
		},
		sub { "UPDATE tasks SET title = '$tag task $_[1], renamed' WHERE id = '$_[0]';" },
		sub { "UPDATE tasks SET due_date = '2030-01-02 09:00Z' WHERE id = '$_[0]';" },
		sub { "UPDATE tasks SET completed = true WHERE id = '$_[0]';" },
		sub { "UPDATE tasks SET completed = false, due_date = NULL WHERE id = '$_[0]';" },
		sub { "UPDATE tasks SET updated_at = now() WHERE id = '$_[0]';" },
		sub { "UPDATE tasks SET due_date = '2030-02-01 09:00Z' WHERE id = '$_[0]';" },
		sub { "DELETE FROM tasks WHERE id = '$_[0]';" });
	my @ids = map { task_id($tag, $_) } 1 .. $n;
	my $sql = '';
	for my $step (@steps)
	{
		$sql .= $step->($ids[$_ - 1], $_) . "\n" for 1 .. $n;
	}
	return $sql;
}

# Events per task of lifecycle_sql: created, sync, scheduled; updated, sync;
# updated, sync, rescheduled; completed, sync; updated, uncompleted, sync,
# cancelled; (nothing); updated, sync, scheduled; deleted, sync.
use constant LIFECYCLE_EVENTS => 19;

# A task id that says which test and which task it is.
sub task_id
{
	my ($tag, $i) = @_;
	my $h = unpack('H*', $tag);
	return sprintf('%08s-0000-4000-8000-%012d', substr($h . '00000000', 0, 8), $i);
}

# Run the SQL as a writer while something is wrong downstream: each
# statement must finish within statement_timeout (5 s), which it cannot if
# capture waited for delivery.  Returns how long the whole batch took.
sub writer
{
	my ($node, $sql) = @_;
	my $t0 = time;
	$node->safe_psql('postgres', "SET statement_timeout = '5s';\n$sql");
	return time - $t0;
}

# The same, in the background (psql -f): returns a RealWriter whose finish()
# waits, fails the test if a statement failed, and returns the time taken.
sub writer_start
{
	my ($node, $sql) = @_;
	my $file = _dir('writer') . '/writer.sql';
	open(my $fh, '>', $file) or die;
	print $fh "SET statement_timeout = '5s';\n$sql";
	close $fh;
	my $self = bless { t0 => time, out => '', err => '' }, 'RealWriter';
	$self->{h} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', $file ],
		'>', \$self->{out}, '2>', \$self->{err});
	return $self;
}

package RealWriter;

use Test::More;
use Time::HiRes qw(time);

sub finish
{
	my ($self, $what) = @_;
	my $ok = $self->{h}->finish;
	my $took = time - $self->{t0};
	ok($ok, "$what: every write committed, each within statement_timeout")
	  or diag($self->{err});
	return $took;
}

package RealPipeline;

# ---------------------------------------------------------------- checks

# Every event the extension has sent or will send, in capture order, as
# {seq, type, topic, event (the JSON text), json (parsed)}: delivered changes
# (kept by taskevents.retention) and queued ones, rendered by the extension's
# own event builder.
sub sent_events
{
	my ($node) = @_;
	my $cols = $node->safe_psql('postgres', q{
		SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
		 WHERE attrelid = 'taskevents.outbox'::regclass AND attnum > 0 AND NOT attisdropped});
	my $rows = $node->safe_psql('postgres', qq{
		SELECT o.seq, e.type, e.topic, e.event
		  FROM (SELECT $cols FROM taskevents.delivered UNION ALL SELECT $cols FROM taskevents.outbox) o
		       CROSS JOIN LATERAL taskevents._cloudevents(o::taskevents.outbox, 0)
		         WITH ORDINALITY AS e(event_id, type, topic, delivered, event, n)
		 ORDER BY o.seq, e.n});
	my @ev;
	for my $line (split /\n/, $rows)
	{
		my ($seq, $type, $topic, $event) = split /\|/, $line, 4;
		push @ev, { seq => $seq, type => $type, topic => $topic, event => $event,
			json => decode_json($event) };
	}
	return \@ev;
}

# Wait until the consumer has read every one of the events (by id).
sub wait_records
{
	my ($consumer, $events, $what, $timeout) = @_;
	my %want = map { $_->{json}{id} => 1 } @$events;
	return wait_until($what, sub {
		my %seen = map { ($_->{ce} ? $_->{ce}{id} : '') => 1 } @{ $consumer->records };
		!grep { !$seen{$_} } keys %want;
	}, $timeout // 60);
}

# The attributes daprd adds to a structured CloudEvent it publishes
# (components-contrib pubsub.FromCloudEvent): the topic and the pubsub name,
# and tracestate (empty when the request had none).
our %DAPR_ADDS = map { $_ => 1 } qw(topic pubsubname tracestate);

# Normalise an RFC 3339 UTC time for comparison (the SDK prints fractions
# without trailing zeros).
sub _instant
{
	my ($t) = @_;
	return $t unless defined $t;
	$t =~ s/(\.\d*?)0+Z$/$1Z/;
	$t =~ s/\.Z$/Z/;
	return $t;
}

# Compare what the consumer read with what the extension sent (SPEC §2, §4):
#   - every event is in Kafka, on its topic, and nothing else is;
#   - the SDK reads every record, with our id, type, source, subject, time,
#     specversion, datacontenttype, traceid, traceparent (exactly when set)
#     and data unchanged; the value holds exactly our attributes plus what
#     daprd adds;
#   - the record key is the task id; all records of a task on a topic sit on
#     one partition, in commit order (first copy of each id);
#   - copies of one id (at-least-once re-sends) are identical.
# Returns the number of duplicate records; duplicates fail unless allowed.
sub check_records
{
	my ($consumer, $events, $what, %opt) = @_;
	my $records = $consumer->records;
	my (%first, %copies, @problems);
	my %expected = map { $_->{json}{id} => $_ } @$events;

	for my $r (@$records)
	{
		if (!$r->{ce})
		{
			push @problems, "record $r->{topic}/$r->{partition}/$r->{offset}: the CloudEvents SDK cannot read it: "
			  . ($r->{ce_error} // '?');
			next;
		}
		my $id = $r->{ce}{id};
		my $e = $expected{$id};
		if (!$e)
		{
			push @problems, "record $r->{topic}/$r->{partition}/$r->{offset}: id $id was never sent";
			next;
		}
		push @{ $copies{$id} }, $r;
		$first{$id} //= $r;
	}
	for my $e (@$events)
	{
		my $ej = $e->{json};
		my $id = $ej->{id};
		my $rs = $copies{$id};
		if (!$rs)
		{
			push @problems, "$e->{type} $id (task $ej->{subject}) is not in Kafka";
			next;
		}
		for my $r (@$rs)
		{
			my $where = "$e->{type} $id at $r->{topic}/$r->{partition}/$r->{offset}";
			my $ce = $r->{ce};
			push @problems, "$where: topic $r->{topic}, expected $e->{topic}" if $r->{topic} ne $e->{topic};
			push @problems, "$where: key " . ($r->{key} // 'null') . ", expected the task id $ej->{subject}"
			  if ($r->{key} // '') ne $ej->{subject};
			for my $a (qw(specversion id type source subject datacontenttype))
			{
				push @problems, "$where: SDK $a " . ($ce->{$a} // 'null') . ", sent $ej->{$a}"
				  if ($ce->{$a} // '') ne $ej->{$a};
			}
			push @problems, "$where: SDK time $ce->{time}, sent $ej->{time}"
			  if _instant($ce->{time}) ne _instant($ej->{time});
			for my $x (qw(traceid traceparent))
			{
				my ($got, $sent) = ($ce->{extensions}{$x}, $ej->{$x});
				push @problems, "$where: SDK extension $x " . ($got // 'absent') . ", sent " . ($sent // 'none')
				  if ($got // "\0") ne ($sent // "\0");
			}
			push @problems, "$where: SDK data differs from the data sent"
			  unless _same($r->{ce_data}, $ej->{data});
			my $v = $r->{value_json} // {};
			for my $k (sort keys %$ej)
			{
				push @problems, "$where: value's $k differs from the event's" unless _same($v->{$k}, $ej->{$k});
			}
			for my $k (sort keys %$v)
			{
				next if exists $ej->{$k};
				if (!$DAPR_ADDS{$k})
				{
					push @problems, "$where: value has an attribute nobody sent: $k";
				}
			}
			push @problems, "$where: topic attribute $v->{topic}" if ($v->{topic} // '') ne $e->{topic};
			push @problems, "$where: pubsubname attribute " . ($v->{pubsubname} // 'absent')
			  if ($v->{pubsubname} // '') ne 'pubsub-kafka';
		}
	}

	# per task and topic: one partition, commit order
	my %lane;
	for my $e (@$events)
	{
		my $r = $first{ $e->{json}{id} } or next;
		push @{ $lane{"$e->{topic} $e->{json}{subject}"} }, [ $e, $r ];
	}
	for my $k (sort keys %lane)
	{
		my @l = @{ $lane{$k} };
		my %parts = map { $_->[1]{partition} => 1 } @l;
		push @problems, "$k: records on partitions " . join(',', sort keys %parts) if keys %parts > 1;
		for my $i (1 .. $#l)
		{
			push @problems, "$k: $l[$i][0]{type} (capture $l[$i][0]{seq}) at offset $l[$i][1]{offset}"
			  . " before $l[$i-1][0]{type} (capture $l[$i-1][0]{seq}) at offset $l[$i-1][1]{offset}"
			  if $l[$i][1]{offset} < $l[$i - 1][1]{offset};
		}
	}

	my $dups = 0;
	$dups += @{ $copies{$_} } - 1 for keys %copies;
	push @problems, "$dups duplicate records" if $dups && !$opt{duplicates_allowed};

	my $n = scalar @$events;
	if (@problems)
	{
		diag("$what: " . scalar(@problems) . " problems; the first ones:");
		diag("  $_") for grep { defined } @problems[ 0 .. 19 ];
	}
	ok(!@problems, "$what: all $n events in Kafka as sent, keyed by task, in per-task order"
		  . ($dups ? " ($dups duplicates)" : ''));
	return $dups;
}

# Deep equality of decoded JSON (numbers compared as numbers, booleans as booleans).
sub _same
{
	my ($a, $b) = @_;
	return !defined $b if !defined $a;
	return 0 if !defined $b;
	if (JSON::PP::is_bool($a) || JSON::PP::is_bool($b))
	{
		return JSON::PP::is_bool($a) && JSON::PP::is_bool($b) && (!!$a == !!$b);
	}
	if (ref $a eq 'HASH')
	{
		return 0 unless ref $b eq 'HASH' && keys %$a == keys %$b;
		for (keys %$a) { return 0 unless exists $b->{$_} && _same($a->{$_}, $b->{$_}) }
		return 1;
	}
	if (ref $a eq 'ARRAY')
	{
		return 0 unless ref $b eq 'ARRAY' && @$a == @$b;
		for (0 .. $#$a) { return 0 unless _same($a->[$_], $b->[$_]) }
		return 1;
	}
	return 0 if ref $b;
	return "$a" eq "$b";
}

# What daprd answered to publish requests, from its API log
# (--enable-api-logging): a list of [status, duration in ms, method and path],
# from the given line of the log on.
sub daprd_answers
{
	my ($daprd, $from_line) = @_;
	my @a;
	my @lines = split /\n/, slurp_file($daprd->log);
	for my $l (@lines[ ($from_line // 0) .. $#lines ])
	{
		push @a, [ $1, $2, $3 ]
		  if $l =~ /msg="HTTP API Called".* code=(\d+) duration=(\d+) .*method="(POST [^"]+)"/;
	}
	return \@a;
}

# How many lines daprd's log has now (for daprd_answers).
sub RealDaprd::log_lines
{
	my ($self) = @_;
	return scalar(() = slurp_file($self->log) =~ /\n/g);
}

1;
