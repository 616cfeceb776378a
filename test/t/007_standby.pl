# Never on a standby; after promotion the replicated outbox is delivered.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $primary = new_node('primary', port => $dapr->port, init => { allows_streaming => 1 });
$primary->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# Stop the primary's delivery so changes stay queued, then replicate them.
$primary->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();');
sleep 1;
$primary->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'replicated ' || i FROM generate_series(1, 10) i");
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox'), '10', 'the outbox is replicated');
sleep 2;
is($standby->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'taskevents%'}), '0',
	'no taskevents process on the standby');
is(scalar @{ delivered_events($dapr) }, 0, 'nothing delivered from the standby');

$primary->stop;
$standby->promote;
wait_drained($standby, 'promoted standby delivers the replicated outbox');
is(scalar @{ delivered_events($dapr) }, 20, 'all 20 events delivered after promotion');

$standby->stop;
done_testing();
