#!/usr/bin/env bash
# docker-entrypoint.sh of the test's stand-in for the official postgres image
# (test/docker/standin.Containerfile), written for taskevents' tests from the
# official image's documented behaviour: the part of it that docker/Dockerfile
# and docker/compose.yaml rely on, nothing more.
#
#   - `postgres ...` (or only options): as root, make $PGDATA (mode 0700) and
#     hand it to the postgres user, then run again as that user (gosu);
#   - a $PGDATA without PG_VERSION: initdb as $POSTGRES_USER (default
#     postgres) with $POSTGRES_PASSWORD (required), password authentication
#     (scram-sha-256) for every TCP connection, a temporary server on the
#     Unix socket only, CREATE DATABASE $POSTGRES_DB unless it is "postgres",
#     then /docker-entrypoint-initdb.d/*: *.sql through psql with
#     ON_ERROR_STOP in $POSTGRES_DB, *.sh run (executable) or sourced, in
#     name order; the temporary server stops;
#   - then exec the command.
#
# Not here (README, "What the image test covers"): POSTGRES_*_FILE secrets,
# POSTGRES_INITDB_ARGS and POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD,
# *.sql.gz/.xz/.zst init files, nss_wrapper for arbitrary user ids, the 18
# image's check for a volume at the old /var/lib/postgresql/data.
set -Eeuo pipefail

if [ "${1:0:1}" = - ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$PGDATA"
		chmod 00700 "$PGDATA"
		chown -R postgres:postgres "$PGDATA"
		exec gosu postgres "${BASH_SOURCE[0]}" "$@"
	fi

	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		: "${POSTGRES_USER:=postgres}"
		: "${POSTGRES_DB:=$POSTGRES_USER}"
		if [ -z "${POSTGRES_PASSWORD:-}" ]; then
			echo "stand-in entrypoint: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
			exit 1
		fi
		initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
		printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
		PGUSER=$POSTGRES_USER PGPASSWORD=$POSTGRES_PASSWORD \
			pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
		psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password)
		if [ "$POSTGRES_DB" != postgres ]; then
			"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
		fi
		for f in /docker-entrypoint-initdb.d/*; do
			case $f in
			*.sh)
				if [ -x "$f" ]; then
					echo "stand-in entrypoint: running $f"
					"$f"
				else
					echo "stand-in entrypoint: sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)
				echo "stand-in entrypoint: running $f"
				"${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"
				;;
			*) echo "stand-in entrypoint: ignoring $f" ;;
			esac
		done
		pg_ctl -D "$PGDATA" -m fast -w stop
		echo "stand-in entrypoint: PostgreSQL init process complete; ready for start up."
	fi
fi

exec "$@"
