#!/usr/bin/env bash
# Restart the broker of STATE_DIR on the same ports and data (for fault-injection
# runs): SIGTERM, wait, start again from the existing server.properties. A secured
# broker keeps its listeners, certificates and SCRAM users (they are in the metadata log).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$(cd "${1:?usage: restart.sh STATE_DIR}" && pwd)"
timeout_s="${KAFKA_START_TIMEOUT:-120}"
[[ -f "$state/server.properties" ]] || { echo "error: no broker state in $state" >&2; exit 1; }
bootstrap="$(cat "$state/bootstrap")"
"$here/stop.sh" "$state"
libs="$("$here/fetch.sh")"
port="${bootstrap##*:}"
started=$SECONDS
nohup java -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$state/log4j2.properties" \
  -cp "$libs/*" kafka.Kafka "$state/server.properties" >> "$state/broker.log" 2>&1 &
echo $! > "$state/pid"
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
  kill -0 "$(cat "$state/pid")" 2>/dev/null || { echo "error: Kafka exited on restart" >&2; tail -30 "$state/broker.log" >&2; exit 1; }
  (( SECONDS - started > timeout_s )) && { echo "error: Kafka not back after ${timeout_s}s" >&2; exit 1; }
  sleep 0.3
done
if [[ -f "$state/secured.env" ]] && ! python3 "$here/scram_check.py" "$state" \
        $((timeout_s - (SECONDS - started))) "$(cat "$state/pid")"; then
  echo "error: the secured listeners did not come back" >&2; exit 1
fi
echo "$bootstrap" > "$state/bootstrap"
echo "Kafka restarted at $bootstrap after $((SECONDS - started))s" >&2
