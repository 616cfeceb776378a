#!/usr/bin/env bash
# Runs any command against one supported PostgreSQL major version.
#
#   bash test/pgversions.sh VERSION COMMAND [ARG...]
#   bash test/pgversions.sh --list           versions, where each runs, cached chroots
#   bash test/pgversions.sh --prepare [VERSION...]   build the chroots now (all by default)
#   bash test/pgversions.sh --rebuild VERSION        throw VERSION's chroot away and build it again
#
# or, after sourcing test/setup.sh and this file, `run_for_version VERSION
# COMMAND [ARG...]`.  For example `bash test/pgversions.sh 18 bash
# test/run-tests.sh` runs every suite on PostgreSQL 18, and `bash
# test/pgversions.sh 18 bash` gives a shell there.
#
# 15 runs on the host, with Debian 12's packages.  17 and 18 run inside a
# Debian chroot that holds that version's own Debian packages (17 from trixie,
# 18 from forky), made once with debootstrap and cached under
# ${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}/chroots, in a directory named
# after a hash of the suite, the package list (packages_for in
# test/setup.sh) and the way it is made, so a change to any of them builds a
# new one; an unused older one is removed then.
#
# The command runs as root in the current directory, with PG_MAJOR=VERSION
# and TASKEVENTS_PG_RUN=VERSION in its environment (test/setup.sh then
# builds against that version; its as_user runs servers as postgres, whose
# uid in a chroot is the host's when that uid is free there).  Inside a
# chroot it finds, at their host paths: /tmp (so scratch directories made on
# either side are the same), the cache directory (its chroots hidden), the
# checkout, the current directory, /proc, /dev, /sys, the host's
# /etc/hosts and /etc/resolv.conf, the host's JDKs, Maven and Go read-only
# (PGV_LENT below; JAVA_HOME is the host's java) and every path listed in
# TASKEVENTS_CHROOT_BIND (space-separated); TASKEVENTS_CHROOT names the
# chroot.  Network, loopback, hostname and processes are the
# host's: a server started inside is reached from outside and the other way
# round.  The mounts exist only in a private mount namespace of the run, so
# they vanish when it ends, however it ends (exit, error, Ctrl-C, kill -9);
# processes it leaves behind in that namespace are stopped (TERM, then KILL).
# Chroots need root (sudo when not root).
#
# Setting: TASKEVENTS_DEBIAN_MIRROR, the Debian mirror for the chroots
# (default: the one the host's own apt sources use for its release).
set -euo pipefail

PGV_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${TOP:-}" ] || ! declare -F packages_for >/dev/null; then
    # shellcheck source=test/setup.sh
    source "$PGV_HERE/setup.sh"
fi

# The supported major versions, oldest first; the newest is the Docker
# image's default (docker/validate.sh checks that), and the README's table of
# supported versions lists exactly these (checked by test/run-tests.sh).
PGV_SUPPORTED=(15 17 18)

# Bump when the way a chroot is made changes, so every cached one is rebuilt.
PGV_FORMAT=1

# The host's toolchains, lent read-only to the chroots at the same paths
# (those that exist): the JDKs with what their symbolic links point to,
# Maven with its jars, Go.  Inside, JAVA_HOME names the host's java and the
# bin directories come last on PATH; test/setup.sh's ensure_packages does
# not install their packages (HOST_PACKAGES) there.
PGV_LENT=(/usr/lib/jvm /etc/java-*-openjdk /etc/ssl/certs/java
          /usr/share/maven /usr/share/maven-repo /usr/share/java /etc/maven
          /usr/local/go)

TASKEVENTS_CACHE=${TASKEVENTS_CACHE:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/taskevents}
PGV_CHROOTS=$TASKEVENTS_CACHE/chroots

# pgv_suite MAJOR: where MAJOR runs: "host" or the Debian suite of its chroot.
pgv_suite() {
    case $1 in
    15) echo host ;;
    17) echo trixie ;;
    18) echo forky ;;
    *) echo "pgversions: PostgreSQL $1 is not supported (supported: ${PGV_SUPPORTED[*]})" >&2; return 1 ;;
    esac
}

# pgv_host_major: the supported version that runs on the host.
pgv_host_major() {
    local v
    for v in "${PGV_SUPPORTED[@]}"; do [ "$(pgv_suite "$v")" = host ] && { echo "$v"; return; }; done
    return 1
}

# pgv_where MAJOR: a few words on where MAJOR runs, for the summaries.
pgv_where() {
    local suite
    suite=$(pgv_suite "$1") || return 1
    if [ "$suite" = host ]; then echo "host, Debian $(. /etc/os-release && echo "$VERSION_CODENAME")"
    else echo "Debian $suite chroot"; fi
}

# pgv_mirror: the Debian mirror the chroots are made from.
pgv_mirror() {
    if [ -n "${TASKEVENTS_DEBIAN_MIRROR:-}" ]; then echo "$TASKEVENTS_DEBIAN_MIRROR"; return; fi
    local codename uri
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
    uri=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER)' |
        awk -v c="$codename" '$2 == c && $3 == "main" && $4 == "Packages" { print $1; exit }')
    if [ -z "$uri" ]; then
        echo "pgversions: no Debian mirror for $codename main in the host's apt sources; set TASKEVENTS_DEBIAN_MIRROR" >&2
        return 1
    fi
    echo "${uri%/}"
}

# pgv_ids: the host's postgres uid:gid ("none" without one), which the
# chroots reuse so that files keep their owner on both sides.
pgv_ids() {
    if id postgres >/dev/null 2>&1; then echo "$(id -u postgres):$(id -g postgres)"; else echo none; fi
}

# pgv_name MAJOR: the chroot's directory name, pg<major>-<suite>-<key>.
pgv_name() {
    local suite key
    suite=$(pgv_suite "$1") || return 1
    key=$(printf 'format=%s suite=%s ids=%s packages=%s\n' "$PGV_FORMAT" "$suite" "$(pgv_ids)" \
        "$(packages_for "$1")" | sha256sum | cut -c1-12)
    echo "pg$1-$suite-$key"
}

# pgv_retry TIMES COMMAND...: COMMAND until it succeeds, pausing longer each time.
pgv_retry() {
    local times=$1 i
    shift
    for ((i = 1; i <= times; i++)); do
        "$@" && return 0
        [ "$i" -lt "$times" ] && { echo "pgversions: attempt $i of $times failed: $*; again in $((i * 10)) s" >&2; sleep $((i * 10)); }
    done
    return 1
}

# pgv_remove DIR: removes a chroot directory, refusing when anything is
# mounted below it in this mount namespace (rm would follow the mount).
pgv_remove() {
    local dir=$1
    [ -e "$dir" ] || return 0
    dir=$(realpath "$dir")
    if awk -v d="$dir/" 'index($5 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo "pgversions: not removing $dir: something is mounted below it" >&2
        return 1
    fi
    as_root rm -rf --one-file-system "$dir"
}

# pgv_build MAJOR DIR: makes the chroot of MAJOR in DIR (a fresh path).
pgv_build() {
    local major=$1 dir=$2 suite mirror script log
    suite=$(pgv_suite "$major")
    mirror=$(pgv_mirror)
    log="$dir.log"
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "== installing debootstrap"
        pgv_retry 3 as_root apt-get update -qq
        pgv_retry 3 as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    # A suite newer than the host's debootstrap (forky on Debian 12) is made
    # with the script of sid, which tracks testing as well.
    script=/usr/share/debootstrap/scripts/$suite
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    echo "== making a Debian $suite chroot for PostgreSQL $major in $dir (log: $log)"
    : >"$log"
    # shellcheck disable=SC2317 # called by pgv_retry
    attempt() {
        pgv_remove "$dir" && as_root debootstrap --variant=minbase --include=ca-certificates \
            "$suite" "$dir" "$mirror" "$script" >>"$log" 2>&1
    }
    if ! pgv_retry 3 attempt; then
        tail -n 20 "$log" >&2
        echo "pgversions: debootstrap of $suite failed three times" >&2
        return 1
    fi

    # apt inside: no recommends, retries, and no Valid-Until check (a
    # testing suite's Release file can carry a Valid-Until older than this
    # machine's clock).  No documentation; no daemon started by a postinst;
    # no default cluster made by the postgresql package.
    as_root tee "$dir/etc/apt/apt.conf.d/90taskevents" >/dev/null <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "5";
Acquire::Check-Valid-Until "false";
APT
    # A proxy the host's apt uses, the chroot's apt uses too.
    apt-config dump | grep -iE '^Acquire::[a-z]+::Proxy ' | as_root tee -a "$dir/etc/apt/apt.conf.d/90taskevents" >/dev/null || true
    echo "deb $mirror $suite main" | as_root tee "$dir/etc/apt/sources.list" >/dev/null
    as_root tee "$dir/etc/dpkg/dpkg.cfg.d/90taskevents" >/dev/null <<'DPKG'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
DPKG
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$dir/usr/sbin/policy-rc.d" >/dev/null
    as_root chmod 755 "$dir/usr/sbin/policy-rc.d"
    as_root mkdir -p "$dir/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" | as_root tee "$dir/etc/postgresql-common/createcluster.d/90taskevents.conf" >/dev/null

    # The host's postgres uid and gid, where they are free in the chroot.
    local ids uid gid
    ids=$(pgv_ids)
    if [ "$ids" != none ]; then
        uid=${ids%:*} gid=${ids#*:}
        if as_root chroot "$dir" getent group "$gid" >/dev/null || as_root chroot "$dir" getent passwd "$uid" >/dev/null; then
            echo "pgversions: uid $uid or gid $gid is taken in the $suite chroot; its postgres user gets other ids"
        else
            as_root chroot "$dir" groupadd --system --gid "$gid" postgres
            as_root chroot "$dir" useradd --system --uid "$uid" --gid postgres --home-dir /var/lib/postgresql \
                --no-create-home --shell /bin/bash --comment "PostgreSQL administrator" postgres
        fi
    fi

    echo "== installing into the chroot: $(packages_for "$major")"
    # shellcheck disable=SC2046,SC2016 # $1 expanded (and split) by the chroot's bash
    if ! pgv_retry 3 pgv_enter "$dir" bare / env DEBIAN_FRONTEND=noninteractive bash -c '
            apt-get update -qq && apt-get install -y -qq $1 && apt-get clean' pgv "$(packages_for "$major")" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "pgversions: installing the packages into the $suite chroot failed" >&2
        return 1
    fi
    # shellcheck disable=SC2016 # dpkg-query's own ${Field} placeholders
    as_root chroot "$dir" dpkg-query -W -f '${Package} ${Version}\n' "postgresql-$major" "postgresql-server-dev-$major" \
        libcurl4-openssl-dev gcc libc6 | as_root tee "$dir/.taskevents-packages" >/dev/null
    as_root chroot "$dir" "/usr/lib/postgresql/$major/bin/pg_config" --version >/dev/null
}

# pgv_ensure_chroot MAJOR: builds MAJOR's chroot unless the cache has it;
# sets PGV_ROOT to it and holds a shared lock on it (PGV_LOCK_FD) until this
# shell exits, so that no other run removes it meanwhile.
pgv_ensure_chroot() {
    local major=$1 name lock started
    name=$(pgv_name "$major") || return 1
    PGV_ROOT=$PGV_CHROOTS/$name
    as_root mkdir -p "$PGV_CHROOTS"
    lock=$PGV_CHROOTS/.$name.lock
    as_root touch "$lock"
    [ -n "${PGV_LOCK_FD:-}" ] && exec {PGV_LOCK_FD}>&-
    exec {PGV_LOCK_FD}<"$lock"
    flock -s "$PGV_LOCK_FD"
    [ -e "$PGV_ROOT/.taskevents-ready" ] && return 0

    # Build under an exclusive lock; another run building the same chroot is waited for.
    flock -x "$PGV_LOCK_FD"
    if [ ! -e "$PGV_ROOT/.taskevents-ready" ]; then
        started=$SECONDS
        pgv_remove "$PGV_ROOT" || return 1
        if ! pgv_build "$major" "$PGV_ROOT"; then
            flock -s "$PGV_LOCK_FD"
            return 1
        fi
        as_root touch "$PGV_ROOT/.taskevents-ready"
        echo "== chroot for PostgreSQL $major ready in $((SECONDS - started)) s: $(grep "^postgresql-$major " "$PGV_ROOT/.taskevents-packages")"
        pgv_prune "$major" "$name"
    fi
    flock -s "$PGV_LOCK_FD"
}

# pgv_prune MAJOR KEEP: removes MAJOR's other chroots (another package list
# or format) that no run is using.
pgv_prune() {
    local major=$1 keep=$2 dir name fd
    for dir in "$PGV_CHROOTS"/pg"$major"-*; do
        name=$(basename "$dir")
        if [ ! -d "$dir" ] || [ "$name" = "$keep" ]; then continue; fi
        [[ $name == *.log ]] && continue
        as_root touch "$PGV_CHROOTS/.$name.lock"
        exec {fd}<"$PGV_CHROOTS/.$name.lock"
        if flock -xn "$fd"; then
            echo "== removing the outdated chroot $name"
            pgv_remove "$dir" && as_root rm -f "$dir.log" "$PGV_CHROOTS/.$name.lock"
        fi
        exec {fd}>&-
    done
}

# pgv_enter ROOT bare|full DIR COMMAND...: COMMAND chrooted into ROOT, in DIR,
# in a private mount namespace (see the top of this file; "bare" mounts only
# /proc and /dev, for building the chroot).
pgv_enter() {
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo --preserve-env)
    "${sudo[@]}" unshare --mount --propagation private -- bash "$PGV_HERE/pgversions.sh" --in-namespace "$@"
}

# Inside the private mount namespace (run by pgv_enter): mounts, runs the
# command in the chroot, and stops what it leaves behind.
pgv_in_namespace() {
    local root=$1 mode=$2 dir=$3
    shift 3
    local bound=()

    # pgv_bind PATH [rw|ro] [over]: PATH mounted at the same path inside
    # the chroot, unless it is already reachable through an earlier bind.
    # Only with "over" may it hide what the chroot itself has there.
    pgv_bind() {
        local src=$1 b
        [ -e "$src" ] || return 0
        src=$(realpath "$src")
        for b in "${bound[@]}"; do [[ $src == "$b" || $src == "$b"/* ]] && return 0; done
        if [ "${3:-}" != over ] && { [ -f "$root$src" ] || [ -n "$(ls -A "$root$src" 2>/dev/null)" ]; }; then
            echo "pgversions: $src would hide the chroot's own $src; not mounted" >&2
            return 0
        fi
        if [ -L "$root$src" ]; then
            echo "pgversions: $src is a symbolic link in the chroot; not mounted" >&2
            return 0
        fi
        if [ -d "$src" ]; then mkdir -p "$root$src"; else mkdir -p "$(dirname "$root$src")"; touch "$root$src"; fi
        mount --bind "$src" "$root$src"
        [ "${2:-rw}" = ro ] && mount -o remount,bind,ro "$root$src"
        bound+=("$src")
    }

    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    pgv_bind /etc/resolv.conf ro over
    pgv_bind /etc/hosts ro over
    if [ "$mode" = full ]; then
        mount --rbind /sys "$root/sys"
        pgv_bind /tmp rw over
        if [ -d "$TASKEVENTS_CACHE" ]; then
            pgv_bind "$TASKEVENTS_CACHE"
            # The chroots stay out of sight inside (an rm -rf of the cache
            # from inside would otherwise reach the running chroot).
            [ -d "$root$(realpath "$TASKEVENTS_CACHE")/chroots" ] &&
                mount -t tmpfs -o ro,size=16k,mode=755 pgv-hidden "$root$(realpath "$TASKEVENTS_CACHE")/chroots"
        fi
        pgv_bind "$TOP"
        pgv_bind "$dir"
        local p
        for p in "${PGV_LENT[@]}"; do pgv_bind "$p" ro; done
        for p in ${TASKEVENTS_CHROOT_BIND:-}; do pgv_bind "$p"; done
        local b reachable=""
        for b in "${bound[@]}"; do [[ $(realpath "$dir") == "$b" || $(realpath "$dir") == "$b"/* ]] && reachable=1; done
        if [ -z "$reachable" ]; then
            echo "pgversions: the current directory $dir cannot be mounted into the chroot; run from elsewhere" >&2
            return 2
        fi
    fi

    # The environment: the caller's, less what points into the host's
    # programs; a locale the chroot lacks becomes C.UTF-8.
    local envs=() kv name java_home="" locales
    locales=$(chroot "$root" locale -a 2>/dev/null | tr '[:upper:]' '[:lower:]' | tr -d '-')
    while IFS= read -r -d '' kv; do
        name=${kv%%=*}
        case $name in
        PATH | LD_LIBRARY_PATH | LD_PRELOAD | PG_CONFIG | PERL5LIB | PYTHONPATH | PYTHONHOME | VIRTUAL_ENV | \
            JAVA_HOME | PWD | OLDPWD | SHLVL | _ | BASH_ENV | ENV | *%%*) continue ;;
        LANG | LANGUAGE | LC_*)
            local val=${kv#*=} norm
            norm=$(tr '[:upper:]' '[:lower:]' <<<"$val" | tr -d '-')
            if [ -n "$val" ] && [ "$name" != LANGUAGE ] && ! grep -qxF "$norm" <<<"$locales"; then
                kv="$name=C.UTF-8"
            fi ;;
        esac
        envs+=("$kv")
    done < <(env -0)
    if [ "$mode" = full ]; then
        if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
            java_home=$(realpath "$JAVA_HOME")
        elif command -v java >/dev/null 2>&1; then
            java_home=$(dirname "$(dirname "$(realpath "$(command -v java)")")")
        fi
        [ -n "$java_home" ] && [ -x "$root$java_home/bin/java" ] || java_home=""
    fi
    local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    [ -n "$java_home" ] && { envs+=("JAVA_HOME=$java_home"); path="$path:$java_home/bin"; }
    if [ "$mode" = full ]; then
        for p in /usr/share/maven/bin /usr/local/go/bin; do [ -d "$root$p" ] && path="$path:$p"; done
    fi
    envs+=("PATH=$path" "TASKEVENTS_CHROOT=$(basename "$root")")

    # The command as a child, so that this shell can clean up after it
    # (with the caller's standard input, and Ctrl-C reaching it as usual).
    ( trap - INT QUIT
      # shellcheck disable=SC2016 # expanded by the chroot's bash
      exec chroot "$root" /usr/bin/env -i "${envs[@]}" /bin/bash -c 'cd "$1" && shift && exec "$@"' pgv "$dir" "$@"
    ) <&0 &
    local child=$! rc=0
    trap 'pgv_stop_leftovers; trap - INT; kill -INT $$' INT
    trap 'pgv_stop_leftovers; trap - TERM; kill -TERM $$' TERM
    trap 'pgv_stop_leftovers; trap - HUP; kill -HUP $$' HUP
    wait "$child" || rc=$?
    trap - INT TERM HUP
    pgv_stop_leftovers
    return "$rc"
}

# The processes of this mount namespace other than this shell: what the
# command left running (servers, sidecars).
pgv_namespace_pids() {
    local p pid
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] && continue
        [ "$p/ns/mnt" -ef /proc/$$/ns/mnt ] && echo "$pid"
    done
    return 0
}

# Stops what the command left behind in this mount namespace: TERM, then
# KILL for what is still there 10 s later.
pgv_stop_leftovers() {
    local pids sig i
    for sig in TERM KILL; do
        mapfile -t pids < <(pgv_namespace_pids)
        [ ${#pids[@]} -eq 0 ] && return 0
        echo "pgversions: sending $sig to what the run left behind:$(for p in "${pids[@]}"; do
            echo -n " [$p] "; { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-60 | tr -d '\n'; done)" >&2
        kill -"$sig" "${pids[@]}" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [ -z "$(pgv_namespace_pids)" ] && return 0
            sleep 0.1
        done
    done
}

# run_for_version MAJOR COMMAND...: COMMAND for PostgreSQL MAJOR (see the top
# of this file); its exit status.
# shellcheck disable=SC2030,SC2031 # each branch exports in its own subshell
run_for_version() {
    local major=$1 suite
    shift
    suite=$(pgv_suite "$major") || return 1
    if [ "$suite" = host ]; then
        (export PG_MAJOR="$major" TASKEVENTS_PG_RUN="$major"; "$@")
        return
    fi
    ( pgv_ensure_chroot "$major" || exit 1
      export PG_MAJOR="$major" TASKEVENTS_PG_RUN="$major" TASKEVENTS_CACHE
      pgv_enter "$PGV_ROOT" full "$PWD" "$@" )
}

# pgv_check_readme: the README's table of supported versions (under "###
# Supported PostgreSQL versions") lists exactly PGV_SUPPORTED, what the test
# command runs.
pgv_check_readme() {
    local listed
    listed=$(awk '/^### Supported PostgreSQL versions/ { on = 1; next }
                  on && /^#/ { exit }
                  on && /^\| *[0-9]+ *\|/ { gsub(/[| ]/, "", $2); print $2 }' FS='|' OFS='|' "$TOP/README.md" | xargs)
    if [ "$listed" != "${PGV_SUPPORTED[*]}" ]; then
        echo "pgversions: README.md's supported versions ($listed) differ from what the tests run (${PGV_SUPPORTED[*]})" >&2
        return 1
    fi
}

# pgv_list: the supported versions, where each runs, and the state of its chroot.
pgv_list() {
    local v suite name
    for v in "${PGV_SUPPORTED[@]}"; do
        suite=$(pgv_suite "$v")
        if [ "$suite" = host ]; then
            echo "$v  $(pgv_where "$v"): $(/usr/lib/postgresql/"$v"/bin/pg_config --version 2>/dev/null || echo "not installed yet")"
        else
            name=$(pgv_name "$v")
            if [ -e "$PGV_CHROOTS/$name/.taskevents-ready" ]; then
                echo "$v  $(pgv_where "$v"): $PGV_CHROOTS/$name, $(grep "^postgresql-$v " "$PGV_CHROOTS/$name/.taskevents-packages")"
            else
                echo "$v  $(pgv_where "$v"): not built yet ($PGV_CHROOTS/$name)"
            fi
        fi
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case ${1:-} in
    --in-namespace)
        shift
        pgv_in_namespace "$@"
        ;;
    --list)
        pgv_list
        ;;
    --prepare)
        shift
        for v in "${@:-${PGV_SUPPORTED[@]}}"; do
            [ "$(pgv_suite "$v")" = host ] || (pgv_ensure_chroot "$v")
        done
        ;;
    --rebuild)
        [ $# -eq 2 ] || { echo "usage: $0 --rebuild VERSION" >&2; exit 2; }
        [ "$(pgv_suite "$2")" != host ] || { echo "PostgreSQL $2 runs on the host: nothing to rebuild" >&2; exit 2; }
        name=$(pgv_name "$2")
        as_root mkdir -p "$PGV_CHROOTS"
        as_root touch "$PGV_CHROOTS/.$name.lock"
        exec {fd}<"$PGV_CHROOTS/.$name.lock"
        flock -x "$fd"
        pgv_remove "$PGV_CHROOTS/$name"
        exec {fd}>&-
        pgv_ensure_chroot "$2"
        ;;
    "" | -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        ;;
    *)
        run_for_version "$@"
        ;;
    esac
    # Never read on: an edit of this file while it runs must not change what runs.
    exit
fi
