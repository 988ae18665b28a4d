#!/usr/bin/env bash
# Restart the broker of STATE_DIR on the same ports and data (for fault-injection
# runs): SIGTERM, wait, start again from the existing server.properties (start.sh
# --keep: an error, not a fresh broker, if a port is taken or the data is gone). A
# secured broker keeps its listeners, certificates and SCRAM users (they are in the
# metadata log). Prints the bootstrap address on stdout, like start.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$(cd "${1:?usage: restart.sh STATE_DIR}" && pwd)"
[[ -f "$state/server.properties" ]] || { echo "error: no broker state in $state" >&2; exit 1; }
"$here/stop.sh" "$state"
"$here/start.sh" --keep "$state"
