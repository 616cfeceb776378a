# shellcheck shell=bash
# Sourced by test/real/run.sh, test/demo.sh --kafka and test/bench.sh: the
# real Dapr sidecar and Apache Kafka, built or fetched once into a cache and
# reused.
#
#   real_prepare DEST   makes sure the cache holds daprd and the Kafka jars,
#                       then puts them under DEST (hard links when it can)
#                       where the unprivileged user running the servers can
#                       read them; sets REAL_DAPRD and REAL_KAFKA_CP.
#
# Cache: ${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}, one root for the Go
# module and build caches, the daprd binary, the Maven repository and the
# jars.  TASKEVENTS_DAPRD=/path/to/daprd uses that daprd (for example the one
# `dapr init` installs) and skips the build.

REAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The pinned releases.  daprd 1.18.3 does not build from the Go module proxy
# (three of its modules are not served there), so 1.18.2 is the newest 1.18.x
# that does.  Kafka's version is in test/real/kafka/pom.xml.
DAPR_VERSION=1.18.2
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REAL_DIR/kafka/pom.xml")
REAL_CACHE=${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}

# Say something with a timestamp, on standard error.
real_say() {
    echo "== $(date +%H:%M:%S) $*" >&2
}

# Run "$@" holding the cache's lock, so that runs side by side build once.
real_locked() {
    mkdir -p "$REAL_CACHE"
    (
        flock 9
        "$@"
    ) 9>"$REAL_CACHE/.lock"
}

# daprd as Dapr's own Makefile builds it (go build -tags stablecomponents,
# CGO_ENABLED=0, version in the ldflags, -s -w), inside the released module
# so that its go.mod, replace directives and go.sum apply unchanged.
real_build_daprd() {
    local out="$REAL_CACHE/daprd/$DAPR_VERSION/daprd"
    [ -x "$out" ] && return 0
    command -v go >/dev/null || { echo "go is needed to build daprd (or set TASKEVENTS_DAPRD)" >&2; return 1; }
    real_say "building daprd $DAPR_VERSION (first time only: several minutes)"
    local start=$SECONDS dir
    export GOPATH="$REAL_CACHE/go" GOMODCACHE="$REAL_CACHE/go/pkg/mod" GOCACHE="$REAL_CACHE/go-build"
    export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOTOOLCHAIN=local
    dir=$(go mod download -json "github.com/dapr/dapr@v$DAPR_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -d "$dir" ] || { echo "could not download github.com/dapr/dapr@v$DAPR_VERSION" >&2; return 1; }
    mkdir -p "$(dirname "$out")"
    if ! (cd "$dir" && go build -tags=stablecomponents \
        -ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION -X github.com/dapr/kit/logger.DaprVersion=$DAPR_VERSION" \
        -o "$out.tmp" ./cmd/daprd) > "$out.log" 2>&1; then
        tail -n 40 "$out.log" >&2
        return 1
    fi
    mv "$out.tmp" "$out"
    real_say "daprd $DAPR_VERSION built in $((SECONDS - start)) s"
}

# real_jars DIR SRC WHAT: the jars of the Maven project DIR/pom.xml (mvn
# dependency:copy-dependencies through the cache's Maven repository, into
# $JARS_HOME/lib) and DIR/SRC compiled against them ($JARS_CLASSES), under
# the cache's folder $JARS_HOME; again only when the pom or SRC change.
real_jars() {
    local sum classes
    sum=$(cat "$1/pom.xml" "$1/$2" | sha256sum | cut -c1-12)
    classes="$JARS_HOME/classes-$sum"
    if [ ! -f "$JARS_HOME/lib/.complete-$sum" ]; then
        real_say "fetching $3 with Maven (first time only)"
        rm -rf "${JARS_HOME:?}/lib"
        mvn -q -B -f "$1/pom.xml" -Dmaven.repo.local="$REAL_CACHE/m2" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$JARS_HOME/lib" || return 1
        touch "$JARS_HOME/lib/.complete-$sum"
    fi
    if [ ! -d "$classes" ]; then
        rm -rf "$classes.tmp"
        mkdir -p "$classes.tmp"
        javac -nowarn -d "$classes.tmp" -cp "$JARS_HOME/lib/*" "$1/$2" || return 1
        cp "$REAL_DIR/kafka/log4j2.properties" "$classes.tmp/"
        mv "$classes.tmp" "$classes"
    fi
    JARS_CLASSES=$classes
}

# The broker's and the consumer tool's jars and the consumer tool compiled
# against them.
real_fetch_kafka() {
    JARS_HOME="$REAL_CACHE/kafka/$KAFKA_VERSION"
    real_jars "$REAL_DIR/kafka" KafkaTool.java "Apache Kafka $KAFKA_VERSION and the CloudEvents SDK" || return 1
    REAL_KAFKA_HOME=$JARS_HOME
    REAL_KAFKA_CLASSES=$JARS_CLASSES
}

# Link (or copy) a file or directory tree to DEST.
real_place() {
    rm -rf "$2"
    mkdir -p "$(dirname "$2")"
    cp -al "$1" "$2" 2>/dev/null || { rm -rf "$2"; cp -a "$1" "$2"; }
}

# See the header.
real_prepare() {
    local dest=$1
    if [ -n "${TASKEVENTS_DAPRD:-}" ]; then
        [ -x "$TASKEVENTS_DAPRD" ] || { echo "TASKEVENTS_DAPRD=$TASKEVENTS_DAPRD is not an executable" >&2; return 1; }
        real_place "$TASKEVENTS_DAPRD" "$dest/bin/daprd"
    else
        real_locked real_build_daprd || return 1
        real_place "$REAL_CACHE/daprd/$DAPR_VERSION/daprd" "$dest/bin/daprd"
    fi
    real_locked real_fetch_kafka || return 1
    real_fetch_kafka    # sets the variables in this shell (cached: no work)
    real_place "$REAL_KAFKA_HOME/lib" "$dest/kafka/lib"
    real_place "$REAL_KAFKA_CLASSES" "$dest/kafka/classes"
    REAL_DAPRD="$dest/bin/daprd"
    REAL_KAFKA_CP="$dest/kafka/lib/*:$dest/kafka/classes"
    export REAL_DAPRD REAL_KAFKA_CP
    real_say "daprd: $("$REAL_DAPRD" --version 2>/dev/null | tail -n 1); Kafka $KAFKA_VERSION on $(java -version 2>&1 | head -n 1)"
}

# --- the pipeline, for the demo and the benchmarks (the tests have their own
# in test/real/t/RealPipeline.pm, which also stops, freezes and restarts it)

REAL_TOPICS=(task-events task-updates reminders)

# A free TCP port on loopback.
real_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# real_start_kafka DIR: a single Kafka node (test/real/kafka/server.properties)
# in DIR on loopback, with the three topics, 3 partitions each.  Sets
# KAFKA_PID and KAFKA_BOOTSTRAP.
real_start_kafka() {
    local dir=$1 port controller
    port=$(real_free_port)
    controller=$(real_free_port)
    mkdir -p "$dir"
    sed "s|@NODE@|1|g; s|@VOTERS@|1@127.0.0.1:$controller|g; s|@PORT@|$port|g; s|@CONTROLLER@|$controller|g; s|@DIR@|$dir|g" \
        "$REAL_DIR/kafka/server.properties" > "$dir/server.properties"
    java -cp "$REAL_KAFKA_CP" kafka.tools.StorageTool format -t t6oWfGI7RnWWt1uvelZjDw \
        -c "$dir/server.properties" > "$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; return 1; }
    java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true -Dtaskevents.loglevel=INFO \
        -cp "$REAL_KAFKA_CP" kafka.Kafka "$dir/server.properties" > "$dir/kafka.log" 2>&1 &
    KAFKA_PID=$!
    KAFKA_BOOTSTRAP=127.0.0.1:$port
    java -cp "$REAL_KAFKA_CP" KafkaTool topics "$KAFKA_BOOTSTRAP" 3 "${REAL_TOPICS[@]}" > "$dir/topics.log" 2>&1 ||
        { cat "$dir/topics.log" >&2; return 1; }
}

# real_daprd DIR APP_ID COMPONENT [daprd options]: daprd as users run it
# beside PostgreSQL, with the pub/sub component COMPONENT pointed at the
# local broker (in DIR/components, beside what is already there) and
# docker/components/config.yaml (plus name resolution that sends nothing),
# its APIs on loopback, no metrics server.  Sets REAL_DAPRD_PID and
# REAL_DAPRD_PORT once it answers /v1.0/healthz.
real_daprd() {
    local dir=$1 app=$2 component=$3
    shift 3
    REAL_DAPRD_PID='' REAL_DAPRD_PORT=''
    mkdir -p "$dir/components"
    grep -q '^\s*value: "kafka:9092"$' "$component" ||
        { echo "$component: no brokers value \"kafka:9092\"" >&2; return 1; }
    sed "s|^\(\s*value: \)\"kafka:9092\"$|\1\"$KAFKA_BOOTSTRAP\"|" "$component" > "$dir/components/pubsub-kafka.yaml"
    { cat "$REAL_DIR/../../docker/components/config.yaml"; printf '  nameResolution:\n    component: kubernetes\n'; } > "$dir/config.yaml"
    REAL_DAPRD_PORT=$(real_free_port)
    "$REAL_DAPRD" --app-id "$app" --resources-path "$dir/components" --config "$dir/config.yaml" \
        --dapr-http-port "$REAL_DAPRD_PORT" --dapr-grpc-port "$(real_free_port)" \
        --dapr-internal-grpc-port "$(real_free_port)" --dapr-listen-addresses 127.0.0.1 \
        --dapr-internal-grpc-listen-address 127.0.0.1 --enable-metrics=false \
        --metrics-listen-address 127.0.0.1 --log-level info "$@" > "$dir/daprd.log" 2>&1 &
    REAL_DAPRD_PID=$!
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$REAL_DAPRD_PORT/v1.0/healthz")" = 204 ] && return 0
        kill -0 "$REAL_DAPRD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/daprd.log" >&2
    return 1
}

# real_start_daprd DIR [daprd options]: the daprd taskevents publishes to
# (app id taskevents-db, docker/components/pubsub-kafka.yaml, daprd's
# default body limit).  Sets DAPRD_PID and DAPRD_PORT once it answers.
real_start_daprd() {
    local dir=$1 ok=0
    shift
    real_daprd "$dir" taskevents-db "$REAL_DIR/../../docker/components/pubsub-kafka.yaml" --max-body-size 4Mi "$@" || ok=$?
    # shellcheck disable=SC2034  # DAPRD_PORT: for the tests and benchmarks that source this file
    DAPRD_PID=$REAL_DAPRD_PID DAPRD_PORT=$REAL_DAPRD_PORT
    return $ok
}

# real_start_consumer DIR: KafkaTool consume of the three topics into
# DIR/records.jsonl (one JSON line per record).  Sets CONSUMER_PID.
real_start_consumer() {
    local dir=$1
    mkdir -p "$dir"
    : > "$dir/records.jsonl"
    java -Xmx256m -cp "$REAL_KAFKA_CP" KafkaTool consume "$KAFKA_BOOTSTRAP" "$dir/records.jsonl" \
        "${REAL_TOPICS[@]}" > "$dir/consumer.log" 2>&1 &
    CONSUMER_PID=$!
    for _ in $(seq 600); do
        grep -q '^consuming' "$dir/consumer.log" && return 0
        kill -0 "$CONSUMER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/consumer.log" >&2
    return 1
}

# real_start_subscriber DIR: a consumer team's Dapr app
# (test/real/subscriber/app.py, deliveries into DIR/deliveries.jsonl) behind
# a second daprd (app id taskevents-consumer) with that directory's
# subscriptions and pub/sub component.  Sets SUBSCRIBER_PID and
# SUBDAPRD_PID once daprd answers /v1.0/healthz.
real_start_subscriber() {
    local dir=$1 sub app_port ok=0
    sub="$REAL_DIR/subscriber"
    mkdir -p "$dir/components"
    app_port=$(real_free_port)
    : > "$dir/deliveries.jsonl"
    python3 "$sub/app.py" "$app_port" "$dir/deliveries.jsonl" > "$dir/app.log" 2>&1 &
    SUBSCRIBER_PID=$!
    cp "$sub/subscription.yaml" "$dir/components/"
    real_daprd "$dir" taskevents-consumer "$sub/pubsub-kafka.yaml" --app-port "$app_port" --app-protocol http || ok=$?
    SUBDAPRD_PID=$REAL_DAPRD_PID
    return $ok
}

# Stop what real_start_* started (each by its process id), consumers first.
real_stop_all() {
    local pid
    for pid in ${CONSUMER_PID:-} ${SUBDAPRD_PID:-} ${SUBSCRIBER_PID:-} ${DAPRD_PID:-} ${KAFKA_PID:-}; do
        { kill "$pid" && wait "$pid"; } 2>/dev/null || true
    done
    CONSUMER_PID='' SUBDAPRD_PID='' SUBSCRIBER_PID='' DAPRD_PID='' KAFKA_PID=
    return 0
}
