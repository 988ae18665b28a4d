#!/usr/bin/env bash
# Run a command with a fresh local broker: starts Kafka in a temporary state
# directory, exports LEADSTREAMS_BOOTSTRAP, runs "$@", always stops the broker,
# and exits with the command's status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$(mktemp -d "${TMPDIR:-/tmp}/leadstreams-kafka.XXXXXX")"
cleanup() { "$here/stop.sh" "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
LEADSTREAMS_BOOTSTRAP="$("$here/start.sh" "$state")"
LEADSTREAMS_KAFKA_STATE="$state"  # for restart.sh in fault-injection runs
export LEADSTREAMS_BOOTSTRAP LEADSTREAMS_KAFKA_STATE
set +e
"$@"
status=$?
set -e
exit $status
