# shellcheck shell=bash
# Sourced by the README's two commands (test/demo.sh, test/run-tests.sh):
# installs what a fresh Debian 12 machine lacks, and builds and installs
# taskevents from a copy of the tree that an unprivileged user can run.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The PostgreSQL major version to build and test against: 15, the host's own
# (Debian 12), unless test/pgversions.sh runs us for another version inside
# that version's Debian chroot.
PG_MAJOR=${PG_MAJOR:-15}

# packages_for MAJOR: the Debian packages the tests need with PostgreSQL
# MAJOR.  The same list is installed on the host for 15 and into the chroots
# of 17 and 18 (test/pgversions.sh keys its cached chroots on it, so a change
# here rebuilds them); what only the host needs goes in HOST_PACKAGES.
packages_for() {
    echo "postgresql-$1 postgresql-server-dev-$1 libcurl4-openssl-dev" \
         "libipc-run-perl make gcc libc6-dev curl python3 python3-yaml"
}
read -r -a PACKAGES <<<"$(packages_for "$PG_MAJOR")"

# Packages of toolchains (a JDK, Maven, Go) that a suite needs on the host
# only: test/pgversions.sh lends the host's to the chroots of 17 and 18, so
# inside a chroot ensure_packages leaves them, and anything of theirs, out.
# The linters of docker/validate.sh (run on the host only) are here too;
# pip installs its PyPI validators (docker/requirements.txt).
HOST_PACKAGES=(shellcheck yamllint python3-pip)

# Run a command as root (we may already be root).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages that are missing: PACKAGES and HOST_PACKAGES
# on the host; inside a version's chroot, PACKAGES less the toolchains the
# host lends (HOST_PACKAGES, and any openjdk-*, maven or golang-* a suite
# adds to PACKAGES).
ensure_packages() {
    local missing=() p
    local want=("${PACKAGES[@]}")
    if [ -n "${TASKEVENTS_CHROOT:-}" ]; then
        want=()
        for p in "${PACKAGES[@]}"; do
            [[ " ${HOST_PACKAGES[*]} " == *" $p "* || $p == openjdk-* || $p == maven || $p == golang-* ]] || want+=("$p")
        done
    else
        want+=("${HOST_PACKAGES[@]}")
    fi
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The unprivileged user that runs the servers (PostgreSQL refuses root).
RUN_AS=$(if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi)
as_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u "$RUN_AS" -- env PATH="$PATH" "$@"; else "$@"; fi
}

# start_server DIR PORT: a throw-away PostgreSQL in DIR/data run by $RUN_AS,
# on a socket in DIR only, with the Docker image's settings file
# (docker/postgresql.taskevents.conf) and the lines given on standard input.
start_server() {
    local dir=$1 port=$2
    as_user initdb -D "$dir/data" -A trust >/dev/null
    { echo "include '$WORK/docker/postgresql.taskevents.conf'"
      echo "port = $port"
      echo "listen_addresses = ''"
      echo "unix_socket_directories = '$dir'"
      cat; } >> "$dir/data/postgresql.conf"
    as_user pg_ctl -D "$dir/data" -l "$dir/postgresql.log" -w start >/dev/null
}

# start_sidecar DIR [fakedapr options]: the bundled Dapr-compatible sidecar in
# the background (its own process, so that kill stops it); sets SIDECAR_PID,
# DAPR_PORT and CTL_PORT (its control port).
# shellcheck disable=SC2034 # SIDECAR_PID, DAPR_PORT, CTL_PORT: for the caller
start_sidecar() {
    local dir=$1
    shift
    "$WORK/test/sidecar/fakedapr" --port 0 --control-port 0 "$@" > "$dir/sidecar.out" 2>&1 &
    SIDECAR_PID=$!
    for _ in $(seq 50); do grep -q '^port=' "$dir/sidecar.out" && break; sleep 0.1; done
    read -r DAPR_PORT CTL_PORT < <(sed -n 's/^port=\([0-9]*\) control=\([0-9]*\).*/\1 \2/p' "$dir/sidecar.out")
}

# Copy the tree to a scratch directory owned by $RUN_AS, build it, and
# install it into a private copy of PostgreSQL ($WORK/pg, which PostgreSQL's
# relocatable paths make a complete installation): runs side by side never
# overwrite each other's extension, and the system's PostgreSQL is untouched.
# Sets PG_CONFIG and puts that copy's programs first on PATH.
build_and_install() {
    local sys=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
    WORK=$(mktemp -d /tmp/taskevents.XXXXXX)
    tar -C "$TOP" --exclude=.git --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$WORK" -xf -
    echo "== building in $WORK"
    for d in "$($sys --bindir)/.." "$($sys --sharedir)" "$($sys --includedir-server)/../.."; do
        d=$(realpath "$d")
        mkdir -p "$WORK/pg$(dirname "$d")"
        cp -a "$d" "$WORK/pg$d"
    done
    PG_CONFIG="$WORK/pg$($sys --bindir)/pg_config"
    PATH="$("$PG_CONFIG" --bindir):$PATH"
    export PG_CONFIG PATH
    make -s -C "$WORK" >/dev/null
    make -s -C "$WORK" install >/dev/null
    make -s -C "$WORK/test/sidecar" >/dev/null
    [ "$(id -u)" = 0 ] && chown -R "$RUN_AS" "$WORK"
    return 0
}
