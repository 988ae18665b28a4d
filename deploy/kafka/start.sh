#!/usr/bin/env bash
# Start a single-node KRaft Apache Kafka on free loopback ports.
#   deploy/kafka/start.sh [STATE_DIR]   (default .kafka/ in the repository)
# Idempotent: if the broker of STATE_DIR is running, prints its address again.
# On success prints the bootstrap address (host:port) on stdout and writes it to
# STATE_DIR/bootstrap; the broker log is STATE_DIR/broker.log.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$(mkdir -p "${1:-$here/../../.kafka}" && cd "${1:-$here/../../.kafka}" && pwd)"
timeout_s="${KAFKA_START_TIMEOUT:-120}"

if [[ -f "$state/pid" ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  cat "$state/bootstrap"; exit 0
fi
libs="$("$here/fetch.sh")"

read -r port cport < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)
rm -rf "$state/data"; mkdir -p "$state/data"
cat > "$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$state/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
cat > "$state/log4j2.properties" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
PROPS
# Kafka cluster ids are 16 random bytes, URL-safe base64 without padding. Like Kafka's own
# Uuid.randomUuid, never one starting with "-": the tool's argument parser would take it
# for an option (1 start in 64 failed before).
cid="$(python3 -c 'import base64,uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(cid)')"
java -Xmx256m -cp "$libs/*" kafka.tools.StorageTool format --cluster-id="$cid" \
     -c "$state/server.properties" > "$state/format.log" 2>&1 \
  || { echo "error: formatting Kafka storage failed:" >&2; cat "$state/format.log" >&2; exit 1; }

started=$SECONDS
nohup java -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$state/log4j2.properties" \
  -cp "$libs/*" kafka.Kafka "$state/server.properties" > "$state/broker.log" 2>&1 &
echo $! > "$state/pid"
# The PLAINTEXT listener only accepts connections once the broker is unfenced.
until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
  if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    echo "error: Kafka exited during startup; last log lines:" >&2; tail -30 "$state/broker.log" >&2; exit 1
  fi
  if (( SECONDS - started > timeout_s )); then
    echo "error: Kafka not ready after ${timeout_s}s; see $state/broker.log" >&2
    "$here/stop.sh" "$state" >&2 || true; exit 1
  fi
  sleep 0.3
done
echo "127.0.0.1:$port" > "$state/bootstrap"
echo "Kafka ready at 127.0.0.1:$port after $((SECONDS - started))s (state: $state)" >&2
echo "127.0.0.1:$port"
