#!/usr/bin/env bash
# The mutation check: plants each bug of test/mutants.txt in a clean copy of
# src/, one at a time, builds it and runs the tests listed as expected to
# kill it (the unit tests, pg_regress, isolation and TAP files, the fastest
# first), stopping at the first failure.  A mutant is killed when a test
# fails, survives when all pass.  Prints one line per mutant and the totals; exits 1 when one
# survived or did not build.  On PostgreSQL 15 (the host's), as the test
# command runs it: the servers as the unprivileged user.
#
#   bash test/mutate.sh                 every mutant
#   bash test/mutate.sh ID...           only these
#   bash test/mutate.sh --check         only check that every mutant applies
#
# Refuses to run when a mutant's original text is not found exactly once in
# its file, so the list cannot rot silently as src/ changes.
# shellcheck source=test/setup.sh
source "$(dirname "$0")/setup.sh"

LIST=$TOP/test/mutants.txt

# mutants_tsv: the list as one line per mutant, fields apart by \x1f and
# newlines inside from/to as \x1e.
mutants_tsv() {
    perl -e '
        my (@m, $cur, $key);
        sub flush { push @m, $cur if $cur && %$cur; $cur = {}; $key = undef }
        flush();
        open(my $fh, "<", $ARGV[0]) or die "$ARGV[0]: $!";
        while (my $line = <$fh>) {
            chomp $line;
            next if $line =~ /^#/;
            if ($line eq "") { flush(); next }
            if ($line =~ /^(id|file|what|from|to|tests): ?(.*)$/) { $key = $1; $cur->{$key} = $2; next }
            die "mutants.txt line $.: not a key and nothing to continue\n" unless $key;
            $cur->{$key} .= "\x1e$line";
        }
        flush();
        for my $m (@m) {
            for (qw(id file what from to tests)) { die "mutant " . ($m->{id} // "?") . ": no $_\n" unless defined $m->{$_} }
            print join("\x1f", @$m{qw(id file what from to tests)}), "\n";
        }' "$LIST"
}

# apply ROOT FILE FROM TO: replace FROM (exactly once) in ROOT/FILE.
apply() {
    perl -e '
        my ($path, $from, $to) = @ARGV;
        s/\x1e/\n/g for $from, $to;
        local $/; open(my $fh, "<", $path) or die "$path: $!\n"; my $s = <$fh>; close $fh;
        my $n = () = $s =~ /\Q$from\E/g;
        die "found $n times, not once\n" unless $n == 1;
        $s =~ s/\Q$from\E/$to/;
        open($fh, ">", $path) or die; print $fh $s; close $fh;' "$1/$2" "$3" "$4"
}

mapfile -t MUTANTS < <(mutants_tsv) || exit 1
[ ${#MUTANTS[@]} -gt 0 ] || { echo "no mutants in $LIST"; exit 1; }

# Every mutant must apply to the tree as it is, and ids be unique.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
bad=0
declare -A seen=()
for m in "${MUTANTS[@]}"; do
    IFS=$'\x1f' read -r id file _ from to tests <<<"$m"
    [ -z "${seen[$id]:-}" ] || { echo "mutant $id: listed twice"; bad=1; }
    seen[$id]=1
    mkdir -p "$check/$(dirname "$file")"
    cp "$TOP/$file" "$check/$file" 2>/dev/null || { echo "mutant $id: no file $file"; bad=1; continue; }
    if ! err=$(apply "$check" "$file" "$from" "$to" 2>&1); then
        echo "mutant $id: its original text in $file is $err"
        bad=1
    fi
done
[ $bad = 0 ] || { echo "test/mutants.txt no longer matches src/: refusing to run"; exit 1; }
echo "== ${#MUTANTS[@]} mutants, each applies to src/ as it is"
[ "${1:-}" = "--check" ] && exit 0

ensure_packages
build_and_install
set +e    # a failing build or test is an outcome here, not the end
PRISTINE=$(mktemp -d /tmp/taskevents-src.XXXXXX)
cp -a "$WORK/src" "$PRISTINE/"
cd "$WORK" || exit 1
mkdir -p logs
[ "$(id -u)" = 0 ] && chown "$RUN_AS" logs

wanted=" $* "
killed=0 survived=0 broken=0 total=0
started=$SECONDS
results=()
for m in "${MUTANTS[@]}"; do
    IFS=$'\x1f' read -r id file _ from to tests <<<"$m"
    [ $# -eq 0 ] || [[ $wanted == *" $id "* ]] || continue
    total=$((total + 1))
    t0=$SECONDS
    rm -rf src && cp -a "$PRISTINE/src" . && touch src/*.c
    apply "$WORK" "$file" "$from" "$to" || exit 1
    [ "$(id -u)" = 0 ] && chown -R "$RUN_AS" src
    outcome="survived" by=""
    if ! as_user make -s >"logs/$id.build" 2>&1 || ! make -s install >>"logs/$id.build" 2>&1; then
        outcome="does not build"
    else
        for t in $tests; do
            rm -rf tmp_check tmp_regress tmp_isolation output_iso
            case $t in
            regress:*) as_user make -s installcheck TAP_TESTS= ISOLATION= REGRESS="${t#regress:}" ;;
            isolation:*) as_user make -s installcheck TAP_TESTS= REGRESS= ISOLATION="${t#isolation:}" ;;
            unit) as_user make -s unitcheck ;;
            *) as_user make -s installcheck REGRESS= ISOLATION= PROVE_TESTS="test/$t" ;;
            esac >"logs/$id.$$.log" 2>&1
            rc=$?
            mv "logs/$id.$$.log" "logs/$id.${t//[:\/]/_}.log"
            if [ $rc -ne 0 ]; then
                for f in tmp_check/log/regress_log_* regression.diffs output_iso/regression.diffs; do
                    [ -f "$f" ] && cp "$f" "logs/$id.$(basename "$f")"
                done
                outcome="killed" by=$t
                break
            fi
        done
    fi
    case $outcome in
        killed) killed=$((killed + 1)) ;;
        survived) survived=$((survived + 1)) ;;
        *) broken=$((broken + 1)) ;;
    esac
    line=$(printf '%-36s %-15s %4d s  %s' "$id" "$outcome" $((SECONDS - t0)) "${by:+by $by}")
    echo "$line"
    results+=("$line")
done
# the tree as it was, for whoever looks at the scratch directory
rm -rf src && cp -a "$PRISTINE/src" . && rm -rf "$PRISTINE"

echo "=== mutation check: $total mutants, $killed killed, $survived survived, $broken did not build, $((SECONDS - started)) s"
for r in "${results[@]}"; do
    [[ $r == *" survived "* || $r == *"does not build"* ]] && echo "  $r"
done
if [ $survived -gt 0 ] || [ $broken -gt 0 ]; then
    echo "(the build and each mutant's logs stay in $WORK/logs)"
    exit 1
fi
cd /
as_root rm -rf "$WORK"
