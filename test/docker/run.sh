#!/usr/bin/env bash
# The Docker image, built from docker/Dockerfile and run, as a user would
# with `docker build` and `docker run`, on a machine with no Docker engine:
# Debian's buildah builds it (`buildah bud --isolation chroot`, no OCI
# runtime needed) and runs commands in it (`buildah run --isolation chroot`,
# which shares the host's network and processes).
#
#   bash test/docker/run.sh [MAJOR...]
#
# MAJOR: by default $TASKEVENTS_IMAGE_MAJORS, else the versions the test
# command runs ($TASKEVENTS_PG_VERSIONS, else 15 17 18) and always the
# Dockerfile's default PG_MAJOR.
#
# For each PostgreSQL major:
#   1. the base.  The official postgres image cannot be pulled here, so the
#      build uses a local stand-in for it (--build-arg PG_IMAGE=...):
#      test/docker/standin.Containerfile on a root file system of the same
#      Debian suite with that suite's postgresql-MAJOR, made from the cached
#      chroot of test/pgversions.sh (bookworm for 15) with the test's own
#      packages purged.  The README says what the stand-in does not cover.
#   2. the build: docker/Dockerfile with the repository as its context and
#      docker/Dockerfile.dockerignore, exactly as a user builds it.
#   3. what the image holds: the extension's files are the source's, no
#      build tools or sources, a size close to its base's.
#   4. a run: the image's entrypoint and command (first start: initdb, the
#      init scripts), PostgreSQL as a non-root user preloading taskevents
#      from the image's settings file, the compose writer's task lifecycle
#      (docker/writer/lifecycle.sh) from a second container of the image,
#      every event delivered to the fake sidecar on the host
#      (test/sidecar/fakedapr), reached through DAPR_HTTP_PORT as in a pod;
#      the exporter's queries (docker/postgres_exporter.yaml) as a
#      pg_monitor member; then the image's stop signal, a clean shutdown.
#
# Images and layers are cached in ${TASKEVENTS_CACHE:-~/.cache/taskevents}/images
# (buildah's storage; --layers, so an unchanged step is not run again).  One
# run at a time (a lock).  Prints "ok"/"FAIL" lines, then "N passed, M failed".
# Needs root (sudo otherwise).  WORK: a tree where test/sidecar/fakedapr is
# built (test/run-tests.sh passes its own); without it one is built here.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	exec sudo --preserve-env=TASKEVENTS_CACHE,TASKEVENTS_IMAGE_MAJORS,TASKEVENTS_PG_VERSIONS,TASKEVENTS_DEBIAN_MIRROR,WORK \
		bash "$0" "$@"
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/setup.sh
source "$here/../setup.sh"
# shellcheck source=test/pgversions.sh
source "$TOP/test/pgversions.sh"
# shellcheck source=test/real/lib.sh
source "$TOP/test/real/lib.sh"

# The majors: the arguments, else TASKEVENTS_IMAGE_MAJORS, else those the
# test command tests (TASKEVENTS_PG_VERSIONS, every supported one by default)
# and always the Dockerfile's default.
dockerfile_default=$(sed -n 's/^ARG PG_MAJOR=\([0-9]*\)$/\1/p' "$TOP/docker/Dockerfile")
# shellcheck disable=SC2086 # one version a word, one a line for sort
read -r -a majors <<<"${*:-${TASKEVENTS_IMAGE_MAJORS:-$(printf '%s\n' ${TASKEVENTS_PG_VERSIONS:-${PGV_SUPPORTED[*]}} \
	$dockerfile_default | sort -nu | xargs)}}"
passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; failed=$((failed + 1)); }
started=$SECONDS

if ! command -v buildah >/dev/null 2>&1; then
	echo "== installing buildah"
	pgv_retry 3 apt-get update -qq
	pgv_retry 3 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi

IMAGES=$TASKEVENTS_CACHE/images
mkdir -p "$IMAGES"
exec {lock_fd}>"$IMAGES/.lock"
flock "$lock_fd"
# buildah's run-time state belongs to this boot (a run directory left by an
# earlier boot would claim layers are still mounted).
boot=$(cat /proc/sys/kernel/random/boot_id)
for d in "$IMAGES"/run-*; do
	[ -d "$d" ] && [ "$d" != "$IMAGES/run-$boot" ] && rm -rf "$d"
done
B=(buildah --root "$IMAGES/storage" --runroot "$IMAGES/run-$boot" --storage-driver overlay)
BR=("${B[@]}" run --isolation chroot)

tmp=$(mktemp -d /tmp/taskevents-image.XXXXXX)
chmod 755 "$tmp"
containers=()
# shellcheck disable=SC2317 # run by the trap below
cleanup() {
	local c
	if [ -n "${server_pid:-}" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
	if [ -n "${SIDECAR_PID:-}" ]; then kill "$SIDECAR_PID" 2>/dev/null || true; fi
	real_stop_all
	for c in "${containers[@]}"; do "${B[@]}" rm "$c" >/dev/null 2>&1 || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# The fake sidecar: WORK's, or built here.
if [ ! -x "${WORK:-/nonexistent}/test/sidecar/fakedapr" ]; then
	WORK=$tmp/work
	mkdir -p "$WORK/test/sidecar"
	cp "$TOP/test/sidecar/fakedapr.c" "$TOP/test/sidecar/Makefile" "$WORK/test/sidecar/"
	make -s -C "$WORK/test/sidecar" >/dev/null
fi

# image_suite MAJOR: the Debian suite whose own postgresql-MAJOR the
# stand-in of MAJOR holds (each major is in one Debian suite only).
image_suite() {
	case $1 in
	15) echo bookworm ;;
	*) pgv_suite "$1" ;;
	esac
}

# The official image's PGDATA for MAJOR (18 moved it).
official_pgdata() {
	if [ "$1" -ge 18 ]; then echo "/var/lib/postgresql/$1/docker"; else echo /var/lib/postgresql/data; fi
}

# image_exists NAME
image_exists() { "${B[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# make_rootfs MAJOR: prints the name of the stand-in's root file system
# image: Debian SUITE with its postgresql-MAJOR, from the cached chroot
# (pgv_ensure_chroot; 15, which the tests run on the host, gets a bookworm
# chroot made the same way), the test's packages removed, and apt set up as
# in Debian's own container images (the suite, its -updates and -security,
# no package caches kept), everything upgraded from there, as the official
# image is current when pulled.
make_rootfs() {
	local major=$1 suite name recipe tag ctr mnt mirror security test_pkgs=()
	suite=$(image_suite "$major")
	if [ "$major" = 15 ]; then
		# pgversions.sh runs 15 on the host; here it needs a chroot of its own.
		eval "$(declare -f pgv_suite | sed '1s/pgv_suite/pgv_suite_tests/')"
		pgv_suite() { if [ "$1" = 15 ]; then echo bookworm; else pgv_suite_tests "$1"; fi; }
	fi
	pgv_ensure_chroot "$major" >&2 || return 1
	name=$(basename "$PGV_ROOT")
	recipe=$(declare -f make_rootfs | sha256sum | cut -c1-12)
	tag=localhost/taskevents-test/rootfs:$name-$recipe
	if image_exists "$tag"; then
		echo "$tag"
		return 0
	fi
	echo "== making the stand-in's root file system from $PGV_ROOT" >&2
	mirror=$(pgv_mirror) || return 1
	security=""
	[[ $mirror == */debian ]] && security=${mirror%/debian}/debian-security
	for p in $(packages_for "$major"); do [ "$p" = "postgresql-$major" ] || test_pkgs+=("$p"); done
	ctr=$("${B[@]}" from scratch)
	mnt=$("${B[@]}" mount "$ctr")
	# (A run of the tests may be making mount points in the chroot meanwhile.)
	tar -C "$PGV_ROOT" --one-file-system --warning=no-file-changed \
		--exclude=./.taskevents-ready --exclude=./.taskevents-packages -cf - . | tar -C "$mnt" -xf -
	{
		echo "deb $mirror $suite main"
		echo "deb $mirror $suite-updates main"
		[ -n "$security" ] && echo "deb $security $suite-security main"
	} >"$mnt/etc/apt/sources.list"
	cat >"$mnt/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
	if ! "${BR[@]}" "$ctr" -- env DEBIAN_FRONTEND=noninteractive bash -euxc '
			apt-mark auto "$@" >/dev/null
			apt-get update -qq
			apt-get upgrade -y -qq
			apt-get autoremove --purge -y -qq -o APT::AutoRemove::RecommendsImportant=false \
				-o APT::AutoRemove::SuggestsImportant=false
			test -x "/usr/lib/postgresql/'"$major"'/bin/postgres"
			rm -rf /var/lib/apt/lists/*' rootfs "${test_pkgs[@]}" >"$tmp/rootfs-$major.log" 2>&1; then
		tail -n 20 "$tmp/rootfs-$major.log" >&2
		"${B[@]}" rm "$ctr" >/dev/null
		return 1
	fi
	"${B[@]}" umount "$ctr" >/dev/null
	"${B[@]}" commit -q --rm "$ctr" "$tag" >/dev/null
	# Older root file systems of this major go.
	"${B[@]}" images --noheading --format '{{.Name}}:{{.Tag}}' | grep "^localhost/taskevents-test/rootfs:pg$major-" |
		grep -vxF "$tag" | xargs -r "${B[@]}" rmi >/dev/null 2>&1 || true
	echo "$tag"
}

# psql in the client container, as the compose writer connects.
cli_env=()
cli_psql() { "${BR[@]}" "${cli_env[@]}" "$cli" -- psql -X -Atq -v ON_ERROR_STOP=1 "$@"; }

# server_pids: the postmaster (from its pid file) and its children.
server_pids() {
	local pm p
	pm=$(head -n 1 "$db_mnt$pgdata/postmaster.pid" 2>/dev/null) || return 0
	[ -d "/proc/$pm" ] || return 0
	echo "$pm"
	for p in /proc/[0-9]*; do
		[ "$(awk '/^PPid:/ { print $2 }' "$p/status" 2>/dev/null)" = "$pm" ] && echo "${p#/proc/}"
	done
	return 0
}

# test_major MAJOR: build, inspect and run the image of MAJOR.
test_major() {
	local major=$1 t0 rootfs base image suite size base_size f bad
	suite=$(image_suite "$major")
	pgdata=$(official_pgdata "$major")
	echo "== PostgreSQL $major: stand-in base (Debian $suite)"
	t0=$SECONDS
	if ! rootfs=$(make_rootfs "$major"); then
		fail "PostgreSQL $major: the stand-in's root file system"
		return
	fi
	base=localhost/taskevents-test/postgres-standin:$major-$suite
	if "${B[@]}" bud --isolation chroot --layers -q -f test/docker/standin.Containerfile \
		--build-arg ROOTFS="$rootfs" --build-arg PG_MAJOR="$major" --build-arg PGDATA="$pgdata" \
		-t "$base" "$TOP" >"$tmp/standin-$major.log" 2>&1; then
		pass "PostgreSQL $major: stand-in base $base built ($((SECONDS - t0)) s)"
	else
		tail -n 30 "$tmp/standin-$major.log"
		fail "PostgreSQL $major: the stand-in base (test/docker/standin.Containerfile)"
		return
	fi

	echo "== PostgreSQL $major: buildah bud -f docker/Dockerfile --build-arg PG_MAJOR=$major --build-arg PG_IMAGE=$base"
	t0=$SECONDS
	# The build stage is built and named first (the same layers the whole
	# build then uses): a named image keeps its layers out of the cache's
	# upkeep (unused_layers).
	image=localhost/taskevents/postgres:$major
	local build_args=(--isolation chroot --layers -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore
		--build-arg PG_MAJOR="$major" --build-arg PG_IMAGE="$base")
	if "${B[@]}" bud "${build_args[@]}" --target build -t "localhost/taskevents-test/build-stage:$major" "$TOP" \
		>"$tmp/build-$major.log" 2>&1 &&
		"${B[@]}" bud "${build_args[@]}" -t "$image" "$TOP" >>"$tmp/build-$major.log" 2>&1; then
		pass "PostgreSQL $major: docker/Dockerfile builds, with its own checks ($((SECONDS - t0)) s)"
	else
		tail -n 40 "$tmp/build-$major.log"
		fail "PostgreSQL $major: docker/Dockerfile builds"
		return
	fi

	# --- what the image holds -------------------------------------------------
	local img_ctr img_mnt base_ctr base_mnt
	img_ctr=$("${B[@]}" from -q "$image")
	containers+=("$img_ctr")
	img_mnt=$("${B[@]}" mount "$img_ctr")
	base_ctr=$("${B[@]}" from -q "$base")
	containers+=("$base_ctr")
	base_mnt=$("${B[@]}" mount "$base_ctr")

	local ext=$img_mnt/usr/share/postgresql/$major/extension lib=$img_mnt/usr/lib/postgresql/$major/lib
	bad=()
	for f in taskevents.control sql/taskevents--*.sql; do
		cmp -s "$TOP/$f" "$ext/${f#sql/}" || bad+=("${f#sql/}")
	done
	for f in "$ext"/taskevents*; do
		f=$(basename "$f")
		[ "$f" = taskevents.control ] || [ -e "$TOP/sql/$f" ] || bad+=("$f (not in sql/)")
	done
	if [ ${#bad[@]} -eq 0 ] && [ -f "$lib/taskevents.so" ]; then
		pass "PostgreSQL $major: the image's taskevents.control and SQL scripts are the source's, taskevents.so is there"
	else
		fail "PostgreSQL $major: the image's extension files differ from the source: ${bad[*]} $([ -f "$lib/taskevents.so" ] || echo "no taskevents.so")"
	fi

	# Build tools, headers or sources: none in the image, and the packages
	# it adds to its base are runtime libraries only (Debian's postgresql-common
	# itself depends on postgresql-common-dev, scripts only, in the base).
	local added
	added=$(comm -13 <(dpkg-query --admindir="$base_mnt/var/lib/dpkg" -W -f '${Package}\n' | sort) \
		<(dpkg-query --admindir="$img_mnt/var/lib/dpkg" -W -f '${Package}\n' | sort) | xargs)
	bad=()
	for f in /src /out /usr/bin/gcc /usr/bin/cc /usr/bin/make /usr/bin/clang /usr/bin/ld \
		"/usr/include/postgresql/$major/server" /usr/include/curl; do
		[ -e "$img_mnt$f" ] || [ -L "$img_mnt$f" ] && bad+=("$f")
	done
	for f in $added; do
		[[ $f =~ ^(build-essential|gcc.*|g\+\+.*|cpp.*|clang.*|llvm.*|make|binutils.*|.*-dev|.*-dev-.*)$ ]] && bad+=("$f")
	done
	if [ ${#bad[@]} -eq 0 ]; then
		pass "PostgreSQL $major: no build tools, headers or sources in the image (multi-stage); packages added to the base: ${added:-none}"
	else
		fail "PostgreSQL $major: build leftovers in the image: ${bad[*]}"
	fi

	size=$("${B[@]}" images --noheading --format '{{.Size}}' "$image")
	base_size=$("${B[@]}" images --noheading --format '{{.Size}}' "$base")
	local delta
	delta=$(( $(du -sxk "$img_mnt" | cut -f1) - $(du -sxk "$base_mnt" | cut -f1) ))
	echo "image size: $image $size, its base $base_size; taskevents adds $delta KiB on disk"
	if [ "$delta" -lt $((20 * 1024)) ]; then
		pass "PostgreSQL $major: the image is its base plus $delta KiB (under 20 MiB)"
	else
		fail "PostgreSQL $major: the image is its base plus $delta KiB (20 MiB at most)"
	fi
	"${B[@]}" umount "$base_ctr" >/dev/null

	# --- a run ------------------------------------------------------------------
	local port entrypoint cmd log out state task_id
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	mapfile -t entrypoint < <("${B[@]}" inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}}{{"\n"}}{{end}}' "$image")
	mapfile -t cmd < <("${B[@]}" inspect --type image --format '{{range .OCIv1.Config.Cmd}}{{.}}{{"\n"}}{{end}}' "$image")
	: >"$tmp/received-$major.jsonl"
	mkdir "$tmp/sidecar-$major"
	DAPR_PORT=""
	start_sidecar "$tmp/sidecar-$major" --record "$tmp/received-$major.jsonl"
	[ -n "${DAPR_PORT:-}" ] || { fail "PostgreSQL $major: the fake sidecar starts"; return; }

	db=$("${B[@]}" from -q "$image")
	containers+=("$db")
	db_mnt=$("${B[@]}" mount "$db")
	cli=$("${B[@]}" from -q "$image")
	containers+=("$cli")
	cli_env=(--env PGHOST=127.0.0.1 --env PGPORT="$port" --env PGUSER=postgres --env PGDATABASE=tasks
		--env PGPASSWORD=taskevents-test)
	log=$tmp/server-$major.log
	echo "== PostgreSQL $major: buildah run $image ${entrypoint[*]} ${cmd[*]} -c listen_addresses=127.0.0.1 (port $port, the sidecar at $DAPR_PORT)"
	"${BR[@]}" --env POSTGRES_PASSWORD=taskevents-test --env POSTGRES_DB=tasks \
		--env PGPORT="$port" --env DAPR_HTTP_PORT="$DAPR_PORT" \
		"$db" -- "${entrypoint[@]}" "${cmd[@]}" -c listen_addresses=127.0.0.1 >"$log" 2>&1 &
	server_pid=$!
	local ready=""
	for _ in $(seq 120); do
		kill -0 "$server_pid" 2>/dev/null || break
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
			"${BR[@]}" "${cli_env[@]}" "$cli" -- pg_isready -q -t 10 >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.5
	done
	if [ -n "$ready" ] && grep -q "running /docker-entrypoint-initdb.d/10-taskevents.sql" "$log"; then
		pass "PostgreSQL $major: the image's entrypoint makes the database, runs initdb/10-taskevents.sql and starts PostgreSQL"
	else
		tail -n 30 "$log"
		fail "PostgreSQL $major: the image starts (entrypoint, init scripts, PostgreSQL)"
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
		kill "$SIDECAR_PID" 2>/dev/null || true
		SIDECAR_PID=""
		return
	fi

	# PostgreSQL, and every process of it, runs as the image's postgres user.
	local pids uids names
	mapfile -t pids < <(server_pids)
	uids=$(for p in "${pids[@]}"; do awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$p/status"; done | tr ' ' '\n' | sort -u | xargs)
	names=$(for u in $uids; do awk -F: -v u="$u" '$3 == u { print $1 }' "$img_mnt/etc/passwd"; done | xargs)
	if [ ${#pids[@]} -ge 3 ] && [ -n "$uids" ] && [[ " $uids " != *" 0 "* ]] && [ "$names" = postgres ]; then
		pass "PostgreSQL $major: the server's ${#pids[@]} processes run as $names (uid $uids), not root"
	else
		fail "PostgreSQL $major: the server runs as non-root: pids ${pids[*]}, uids '$uids', users '$names'"
	fi

	local want_version
	want_version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$TOP/taskevents.control")
	if out=$(cli_psql -F ' ' -c "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'taskevents'),
			taskevents._library_version(), current_setting('server_version_num')::int / 10000" 2>&1) &&
		[ "$out" = "$want_version $want_version $major" ]; then
		pass "PostgreSQL $major: extension and library version $want_version, as taskevents.control says"
	else
		fail "PostgreSQL $major: versions (extension, library, server): '$out', want '$want_version $want_version $major'"
	fi

	local rc=0
	out=$(cli_psql -F '|' -c "SELECT setting, sourcefile FROM pg_settings WHERE name = 'shared_preload_libraries'
		UNION ALL SELECT worker_state, NULL FROM taskevents.status" 2>&1) || rc=$?
	state=$(sed -n 2p <<<"$out")
	if [ "$rc" = 0 ] && [ "$(sed -n 1p <<<"$out")" = "taskevents|/etc/postgresql/taskevents/postgresql.taskevents.conf" ] &&
		[ -n "$state" ] && [[ $state != "not delivering"* ]]; then
		pass "PostgreSQL $major: taskevents preloaded from the image's postgresql.taskevents.conf; worker: ${state%|}"
	else
		fail "PostgreSQL $major: preload from the image's settings file, a worker delivering: exit $rc, '$(tr '\n' ' ' <<<"$out")'"
	fi

	# The compose writer, in a second container of the image.
	if writer 30; then
		pass "PostgreSQL $major: docker/writer/lifecycle.sh as tasks_app: every event delivered, no dead letters"
	else
		echo "$out" | tail -n 20
		fail "PostgreSQL $major: docker/writer/lifecycle.sh"
	fi

	# The exporter's queries (docker/postgres_exporter.yaml) as a member of
	# pg_monitor, which is all the exporter's role needs.
	local queries q rows
	bad=()
	queries=$(python3 -c '
import sys, yaml
for spec in yaml.safe_load(open(sys.argv[1])).values():
    print(spec["query"].strip().rstrip(";").replace("\n", " "))' "$TOP/docker/postgres_exporter.yaml" 2>&1) ||
		bad+=("docker/postgres_exporter.yaml: $queries")
	out=$(cli_psql -c "CREATE ROLE exporter LOGIN IN ROLE pg_monitor" 2>&1) || bad+=("CREATE ROLE: $out")
	while IFS= read -r q; do
		[ -n "$q" ] || continue
		rows=$(cli_psql -U exporter -c "SELECT count(*) FROM ($q) q" 2>&1) && [ "$rows" -ge 1 ] 2>/dev/null ||
			bad+=("${q:0:60}...: $rows")
	done <<<"$queries"
	if [ ${#bad[@]} -eq 0 ] && [ -n "$queries" ]; then
		pass "PostgreSQL $major: docker/postgres_exporter.yaml's $(grep -c . <<<"$queries") queries return rows to a pg_monitor member"
	else
		fail "PostgreSQL $major: the exporter's queries: ${bad[*]}"
	fi

	# What the sidecar received: the lifecycle's eleven events, in order per
	# topic, as taskevents sends them (in bulk, the default with a sidecar
	# that has the API, or one per request).
	if out=$(python3 "$here/lifecycle.py" sidecar "$tmp/received-$major.jsonl" "$task_id" 2>&1); then
		pass "PostgreSQL $major: the fake sidecar on the host received the lifecycle: $out (per topic in order, partition key, the trace id, CloudEvents envelope)"
	else
		fail "PostgreSQL $major: what the sidecar received: $out"
	fi

	# The real daprd and Apache Kafka (test/real/lib.sh), for the
	# Dockerfile's default major: the lifecycle again, read back from Kafka.
	[ "$major" = "$dockerfile_default" ] && image_real "$major"

	# docker stop: the image's stop signal, then a clean shutdown.
	local signal pm
	signal=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.StopSignal}}' "$image")
	pm=$(head -n 1 "$db_mnt$pgdata/postmaster.pid" 2>/dev/null || true)
	[ -n "$pm" ] && kill -s "${signal#SIG}" "$pm" 2>/dev/null
	local stopped=""
	rc=0
	for _ in $(seq 60); do
		kill -0 "$server_pid" 2>/dev/null || { stopped=1; break; }
		sleep 0.5
	done
	[ -n "$stopped" ] && { wait "$server_pid" || rc=$?; }
	if [ -n "$stopped" ] && [ "$rc" = 0 ] && grep -q "database system is shut down" "$log" &&
		[ -z "$(server_pids)" ] && ! grep -E "PANIC|server process .* was terminated|TRAP:" "$log"; then
		pass "PostgreSQL $major: $signal (the image's STOPSIGNAL) shuts it down cleanly"
	else
		tail -n 20 "$log"
		fail "PostgreSQL $major: stop with $signal: exited ${stopped:+$rc}${stopped:-no}"
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	server_pid=""
	kill "$SIDECAR_PID" 2>/dev/null || true
	SIDECAR_PID=""
	for c in "$db" "$cli" "$img_ctr" "$base_ctr"; do "${B[@]}" rm "$c" >/dev/null 2>&1 || true; done
	containers=()
}

# The events of docker/writer/lifecycle.sh's task, per topic in order.
export LIFECYCLE_EVENTS='{"task-events": ["task.created", "task.updated", "task.updated", "task.completed", "task.deleted"],
  "task-updates": ["sync.task", "sync.task", "sync.task", "sync.task", "sync.task"], "reminders": ["reminder.scheduled"]}'

# writer SECONDS: docker/writer/lifecycle.sh from the second container, waiting
# up to SECONDS for delivery; its output in out, its task in task_id.
writer() {
	out=$("${BR[@]}" "${cli_env[@]}" --env WAIT_SECONDS="$1" -v "$TOP/docker/writer:/writer:ro" \
		"$cli" -- bash /writer/lifecycle.sh 2>&1) || return 1
	task_id=$(sed -n 's/^task \([0-9a-f-]*\) (user .*/\1/p' <<<"$out" | head -n 1)
	grep -q "writer: every event delivered" <<<"$out"
}

# image_real MAJOR: with the image's server running, a real daprd (its
# component docker/components/pubsub-kafka.yaml) and one Kafka node on the
# host; the server pointed at daprd, the writer's lifecycle once more, and
# its eleven events read back from Kafka in order per topic, keyed by task.
image_real() {
	local major=$1 dir=$tmp/real out task_id
	if ! { PACKAGES=(openjdk-17-jdk-headless maven) && ensure_packages && real_prepare "$dir" &&
		real_start_kafka "$dir/kafka" && real_start_daprd "$dir/daprd" && real_start_consumer "$dir/consumer"; } >"$dir.log" 2>&1; then
		tail -n 20 "$dir.log"
		fail "PostgreSQL $major: the real daprd and Kafka start"
		return
	fi
	out=$(cli_psql -c "ALTER SYSTEM SET taskevents.port = $DAPRD_PORT" -c "SELECT pg_reload_conf()" 2>&1) ||
		{ fail "PostgreSQL $major: point the image at daprd: $out"; return; }
	if ! writer 60; then
		echo "$out" | tail -n 20
		fail "PostgreSQL $major: docker/writer/lifecycle.sh through daprd"
		return
	fi
	if out=$(python3 "$here/lifecycle.py" kafka "$dir/consumer/records.jsonl" "$task_id" 2>&1); then
		pass "PostgreSQL $major: through the real daprd $DAPR_VERSION to Kafka $KAFKA_VERSION: $out (per topic in order, keyed by task, one partition, the trace id, CloudEvents SDK)"
	else
		fail "PostgreSQL $major: what Kafka holds: $out"
	fi
	real_stop_all
}

# unused_layers SECONDS: the images without a name or a child, made more
# than SECONDS ago.
unused_layers() {
	"${B[@]}" images --all --noheading --no-trunc --filter dangling=true --format '{{.ID}} {{.CreatedAtRaw}}' |
		python3 -c '
import datetime, sys
now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
for line in sys.stdin:
    iid, created = line.split(" ", 1)
    made = datetime.datetime.fromisoformat(created.strip().split(" +")[0].split(".")[0])
    if (now - made).total_seconds() > float(sys.argv[1]):
        print(iid)' "$1"
}

# main: every major, the cache's upkeep, the count line.
main() {
	local major
	cd "$TOP"
	for major in "${majors[@]}"; do
		test_major "$major"
	done

	# Layers no image uses any more (an earlier source's build), older than an
	# hour: the cache keeps what the current sources need. Removing one can
	# leave its parent unused, hence the rounds.
	local ids id removed
	for _ in $(seq 100); do
		mapfile -t ids < <(unused_layers 3600)
		removed=0
		for id in "${ids[@]}"; do
			"${B[@]}" rmi "$id" >/dev/null 2>&1 && removed=$((removed + 1))
		done
		[ "$removed" -gt 0 ] || break
	done

	echo "image suite: $((SECONDS - started)) s; cache $(du -sh "$IMAGES" 2>/dev/null | cut -f1) in $IMAGES"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

# The whole file is read before anything runs: an edit meanwhile changes nothing.
main
exit
