#!/usr/bin/env bash
# Start a single-node KRaft Apache Kafka on loopback ports.
#   deploy/kafka/start.sh [--secured] [--fresh] [--keep] [STATE_DIR]   (default .kafka/ in the repository)
# Idempotent: if the broker of STATE_DIR is running, prints its address again.
# A STATE_DIR started before keeps its port and its topics: the ports of its previous
# start are reused when they are all free (a client or worker left running finds the
# broker where it was), and so is its data. --fresh wipes the data (topics, offsets)
# first, still on the same ports when free. If a previous port is taken by now, the
# broker starts fresh on new ports (said on stderr); with --keep (restart.sh) that is
# an error instead.
# On success prints the PLAINTEXT bootstrap address (host:port) on stdout (scripts read
# it: nothing else goes there), writes it to STATE_DIR/bootstrap (the leadstreams
# commands read .kafka/bootstrap when given no address) and prints
# `export LEADSTREAMS_BOOTSTRAP=...` on stderr; the broker log is STATE_DIR/broker.log.
# --secured (or KAFKA_SECURED=1): the same broker JVM also gets TLS/SASL listeners
# (SASL_SSL with mutual TLS, SASL_SSL without client certificate, SSL with mutual TLS,
# SASL_PLAINTEXT), a throwaway CA and certificates, SCRAM/PLAIN users with random
# passwords; clients find everything in STATE_DIR/secured.env and
# STATE_DIR/client-*.properties (see secured.sh). The PLAINTEXT listener is unchanged.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secured="${KAFKA_SECURED:-0}"
case "$secured" in 0|1) ;; *) echo "error: KAFKA_SECURED must be 0 or 1" >&2; exit 2 ;; esac
fresh=0; keep=0
while [[ ${1:-} == --* ]]; do
  case "$1" in
    --secured) secured=1 ;;
    --fresh) fresh=1 ;;
    --keep) keep=1 ;;  # restart.sh: the same ports and data, or fail
    *) echo "error: unknown option $1 (start.sh [--secured] [--fresh] [--keep] [STATE_DIR])" >&2; exit 2 ;;
  esac
  shift
done
state="$(mkdir -p "${1:-$here/../../.kafka}" && cd "${1:-$here/../../.kafka}" && pwd)"
timeout_s="${KAFKA_START_TIMEOUT:-120}"
hint() { echo "export LEADSTREAMS_BOOTSTRAP=$1" >&2; }

if [[ -f "$state/pid" ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  if (( secured )) && [[ ! -f "$state/secured.env" ]]; then
    echo "error: the broker of $state runs without the secured listeners; stop it first" >&2; exit 1
  fi
  echo "Kafka already running at $(cat "$state/bootstrap") (state: $state)" >&2; hint "$(cat "$state/bootstrap")"
  cat "$state/bootstrap"; exit 0
fi

# The previous start's ports (PLAINTEXT first, CONTROLLER last, the secured ones between),
# from its server.properties; reused when all are still free.
previous=()
was_secured=0; [[ -f "$state/secured.env" ]] && was_secured=1
if [[ -f "$state/server.properties" ]]; then
  mapfile -t previous < <(sed -n 's/^listeners=//p' "$state/server.properties" | grep -oE ':[0-9]+' | tr -d :)
fi
keep_ports=0
if (( ${#previous[@]} )) && (( was_secured == secured || keep )); then
  # Free = bindable with SO_REUSEADDR, as the broker binds (connections of the previous
  # run left in TIME_WAIT do not count).
  if python3 - "${previous[@]}" <<'PY'
import socket, sys
for port in sys.argv[1:]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", int(port)))
        except OSError:
            sys.exit(1)
PY
  then keep_ports=1
  elif (( keep )); then
    echo "error: a port of the broker of $state (${previous[*]}) is taken by another process" >&2; exit 1
  else
    echo "note: a port of the previous broker of $state (${previous[*]}) is taken: starting fresh on new ports" >&2
  fi
elif (( ${#previous[@]} )); then
  echo "note: the previous broker of $state was $( ((was_secured)) || echo "not ")secured: starting fresh" >&2
fi
if (( keep )) && ! (( keep_ports )); then echo "error: no broker state in $state" >&2; exit 1; fi
if (( keep )); then secured=$was_secured; fi
reuse=0
(( keep_ports && (keep || !fresh) )) && [[ -f "$state/data/meta.properties" ]] && reuse=1
if (( keep )) && ! (( reuse )); then echo "error: no broker data in $state" >&2; exit 1; fi
libs="$("$here/fetch.sh")"

if (( reuse )); then
  port="${previous[0]}"
else
  if (( keep_ports )); then
    ports=("${previous[@]}")  # the same order as the listeners: PLAINTEXT, secured..., CONTROLLER
    port="${ports[0]}"; cport="${ports[-1]}"
    read -r p_sasl_ssl p_nocert p_ssl p_sasl_plain <<< "${ports[*]:1:${#ports[@]}-2}" || true
  else
    read -r port cport p_sasl_ssl p_nocert p_ssl p_sasl_plain < <(python3 - $((secured ? 6 : 2)) <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)
  fi
# -- a fresh broker: configuration written, storage formatted (up to "not reused") -----
rm -rf "$state/data" "$state/tls" "$state/secured.env" "$state/server-secured.properties" \
       "$state/scram-args" "$state"/client-*.properties
: > "$state/broker.log"  # (a reused broker appends to its log)
mkdir -p "$state/data"
listeners="PLAINTEXT://127.0.0.1:$port"
protocols="PLAINTEXT:PLAINTEXT"
scram_args=()
if (( secured )); then
  "$here/secured.sh" "$state" "$p_sasl_ssl" "$p_nocert" "$p_ssl" "$p_sasl_plain"
  listeners+=",SASL_SSL://127.0.0.1:$p_sasl_ssl,SASL_SSL_NOCERT://127.0.0.1:$p_nocert"
  listeners+=",SSL://127.0.0.1:$p_ssl,SASL_PLAINTEXT://127.0.0.1:$p_sasl_plain"
  protocols+=",SASL_SSL:SASL_SSL,SASL_SSL_NOCERT:SASL_SSL,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
  mapfile -d '' scram_args < "$state/scram-args"
fi
cat > "$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$protocols
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
if (( secured )); then
  cat "$state/server-secured.properties" >> "$state/server.properties"; chmod 600 "$state/server.properties"
fi
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
     -c "$state/server.properties" "${scram_args[@]}" > "$state/format.log" 2>&1 \
  || { echo "error: formatting Kafka storage failed:" >&2; cat "$state/format.log" >&2; exit 1; }

fi  # (not reused)

started=$SECONDS
nohup java -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$state/log4j2.properties" \
  -cp "$libs/*" kafka.Kafka "$state/server.properties" >> "$state/broker.log" 2>&1 &
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
# The secured listeners open together with PLAINTEXT; check one end to end (TLS with the
# client certificate + SCRAM-SHA-512 with the user created at format time).
if (( secured )) && ! python3 "$here/scram_check.py" "$state" $((timeout_s - (SECONDS - started))) \
                                "$(cat "$state/pid")"; then
  tail -30 "$state/broker.log" >&2; "$here/stop.sh" "$state" >&2 || true; exit 1
fi
echo "127.0.0.1:$port" > "$state/bootstrap"
what="fresh"; (( reuse )) && what="topics kept from its previous start; --fresh or make kafka-clean wipes them"
echo "Kafka ready at 127.0.0.1:$port$( ((secured)) && echo " (+ secured listeners, $state/secured.env)") after $((SECONDS - started))s (state: $state, $what)" >&2
hint "127.0.0.1:$port"
echo "127.0.0.1:$port"
