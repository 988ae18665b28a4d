#!/usr/bin/env bash
# Make sure promtool and prometheus are on PATH: tests/test_deploy_prometheus.py runs promtool on
# the config and rules, and tests/integration/test_prometheus_rules_on_kafka.py runs a real
# prometheus; both fail (never skip) without them. Debian's `prometheus` package ships
# both binaries, so install it when either is missing.
#   deploy/prometheus/ensure-promtool.sh     (exit 0: both available)
set -euo pipefail

have_tools() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }

if have_tools; then
  exit 0
fi

fail() {
  echo "ensure-promtool: $*" >&2
  echo "ensure-promtool: install Prometheus (https://prometheus.io/download/) and put its" \
       "promtool and prometheus binaries on PATH, then re-run the tests." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "promtool/prometheus not on PATH and apt-get is not available."

# sudo only when needed: CI containers often run as root without sudo installed.
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  fail "promtool/prometheus not on PATH; installing them needs root, and sudo is not available."
fi

echo "ensure-promtool: installing Debian's prometheus package (provides promtool)" >&2
"${as_root[@]+"${as_root[@]}"}" apt-get update \
  || fail "apt-get update failed."
# The package would start a prometheus service where systemd runs; on a dev machine
# stop it with `systemctl disable --now prometheus` if it is unwanted.
"${as_root[@]+"${as_root[@]}"}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends prometheus \
  || fail "apt-get install prometheus failed."

have_tools || fail "the prometheus package is installed but promtool/prometheus are still not on PATH."
echo "ensure-promtool: $(promtool --version 2>&1 | head -n 1)" >&2
