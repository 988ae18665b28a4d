#!/usr/bin/env bash
# Stop the broker started by start.sh with the same STATE_DIR (SIGTERM = clean
# shutdown; SIGKILL after 30 s). Idempotent. The state (ports, topics) stays for the
# next start.sh of STATE_DIR; `make kafka-clean` (or start.sh --fresh) wipes it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${1:-$here/../../.kafka}"
[[ -f "$state/pid" ]] || exit 0
pid="$(cat "$state/pid")"
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "Kafka did not stop in 30s; killing" >&2; kill -KILL "$pid"; }
fi
rm -f "$state/pid" "$state/bootstrap"
echo "Kafka stopped" >&2
