#!/usr/bin/env bash
# validate.sh: the deployment files (docker/) and the repository's scripts,
# checked by maintained validators, then by docker/invariants.py for what no
# validator knows (one settings file, versions and names in step).
#
#   bash docker/validate.sh
#
#   yamllint (Debian)           every YAML file, with .yamllint.yaml
#   check-jsonschema (PyPI)     compose.yaml against the compose specification's
#                               schema, which it ships (vendor.compose-spec)
#   kubernetes-validate (PyPI)  k8s/*.yaml, --strict, against the Kubernetes
#                               API's schemas, which it ships
#   check-jsonschema            every Dapr resource (Component, Configuration,
#                               Subscription: no validator ships their schema)
#                               against docker/dapr.schema.json, ours
#   ShellCheck (Debian)         every shell script
#
# The PyPI tools (docker/requirements.txt) are installed once into
# ${TASKEVENTS_CACHE:-~/.cache/taskevents}/lint-<hash>, the Debian ones as
# test/setup.sh's HOST_PACKAGES.  Each check prints "ok", "FAIL" or
# "skip" and one line; the last line is "N passed, M failed".
#
# What the image does when built and run is test/docker/run.sh's; the compose
# file's containers started together and a cluster are neither's: on a
# machine with Docker, docker compose -f docker/compose.yaml up --build
# --exit-code-from writer does that.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/setup.sh
source "$here/../test/setup.sh"
cd "$TOP"
passed=0
failed=0

pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; failed=$((failed + 1)); }

# check TITLE COMMAND...: one validator's run, its output shown when it fails.
check() {
	local title=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$title"
	else
		echo "$out"
		fail "$title"
	fi
}

# The tools: Debian's (HOST_PACKAGES), installed if missing, and PyPI's in
# the cache.
PACKAGES=()
ensure_packages
# (keyed on the list and the Python: rpds-py, a dependency, is built per version)
lib=${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}/lint-$({ cat "$here/requirements.txt"; python3 -V; } | sha256sum | cut -c1-12)
mkdir -p "$(dirname "$lib")"
(
	flock 9
	if [ ! -f "$lib/.complete" ]; then
		echo "== installing $(grep -v '^#' "$here/requirements.txt" | xargs) into $lib"
		rm -rf "$lib"
		python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
			--target "$lib" -r "$here/requirements.txt" >&2
		touch "$lib/.complete"
	fi
) 9>"$lib.lock"
pytool() { PYTHONPATH=$lib python3 -m "$@"; }

# The files, found (not listed) so that a new one is checked too.
prune=(-path ./pg -o -path ./real -o -name .git -o -name node_modules -o -name pylib -o -name tmp_check)
mapfile -t yamls < <(find . \( "${prune[@]}" \) -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -print | sort)
mapfile -t k8s < <(grep -L '^apiVersion: dapr.io/' docker/k8s/*.yaml | grep -v helm-values)
mapfile -t dapr < <(grep -l '^apiVersion: dapr.io/' "${yamls[@]}")
mapfile -t scripts < <(find . \( "${prune[@]}" \) -prune -o -type f -print |
	while read -r f; do
		case ${f##*/} in
		*.sh) echo "$f" ;;
		*.*) ;;
		*) head -c 64 "$f" | grep -qE '^#!.*\b(ba)?sh\b' && echo "$f" ;;
		esac
	done | sort)

check "yamllint --strict: ${#yamls[@]} YAML files" yamllint --strict -c .yamllint.yaml "${yamls[@]}"
check "check-jsonschema: docker/compose.yaml against the compose specification" \
	pytool check_jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml
check "kubernetes-validate --strict: ${k8s[*]#docker/}" \
	pytool kubernetes_validate --strict --quiet "${k8s[@]}"

# check-jsonschema reads one document a file: a file of several is split.
split=$(mktemp -d)
trap 'rm -rf "$split"' EXIT
for f in "${dapr[@]}"; do
	csplit -s -z -b '%02d.yaml' -f "$split/$(echo "${f#./}" | tr / _)." "$f" '/^---$/' '{*}'
done
docs=("$split"/*)
check "check-jsonschema: ${#docs[@]} Dapr resources in ${#dapr[@]} files against docker/dapr.schema.json" \
	pytool check_jsonschema --schemafile docker/dapr.schema.json "${docs[@]}"
check "shellcheck: ${#scripts[@]} scripts" shellcheck -x "${scripts[@]}"

# Our own invariants, one line each.
while read -r status desc; do
	case $status in
	ok) pass "$desc" ;;
	FAIL) fail "$desc" ;;
	skip) printf 'skip %s\n' "$desc" ;;
	done) finished=1 ;;
	*) echo "$status $desc" ;;
	esac
done < <(PYTHONPATH=$lib python3 docker/invariants.py "$here" 2>&1 || true)
[ -n "${finished:-}" ] || fail "docker/invariants.py ran to the end"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
