#!/usr/bin/env bash
# Make sure the system Chromium and its chromedriver are installed: tests/browser drives the web
# console in a real headless browser through Selenium pointed at these two binaries (Selenium
# never downloads a browser or driver here), and those tests fail (never skip) without them.
# Debian's `chromium` and `chromium-driver` packages provide /usr/bin/chromium and
# /usr/bin/chromedriver of the same version.
#   deploy/console/ensure-chromium.sh     (exit 0: both available)
set -euo pipefail

BROWSER=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

have_tools() { [[ -x "$BROWSER" && -x "$DRIVER" ]]; }

if have_tools; then
  exit 0
fi

fail() {
  echo "ensure-chromium: $*" >&2
  echo "ensure-chromium: install Debian's chromium and chromium-driver packages" \
       "(apt-get install chromium chromium-driver) so that $BROWSER and $DRIVER exist," \
       "then re-run the tests." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$BROWSER or $DRIVER is missing and apt-get is not available."

# sudo only when needed: CI containers often run as root without sudo installed.
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  fail "$BROWSER or $DRIVER is missing; installing them needs root, and sudo is not available."
fi

install() {
  "${as_root[@]+"${as_root[@]}"}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends chromium chromium-driver
}

echo "ensure-chromium: installing Debian's chromium and chromium-driver packages" >&2
# The package lists are refreshed only when the install fails with the ones at hand (stale
# or never fetched): an update is slow and most machines need none.
if ! install; then
  echo "ensure-chromium: the install failed; refreshing the package lists and trying again" >&2
  "${as_root[@]+"${as_root[@]}"}" apt-get update || fail "apt-get update failed."
  install || fail "apt-get install chromium chromium-driver failed."
fi

have_tools || fail "the packages are installed but $BROWSER or $DRIVER is still missing."
echo "ensure-chromium: $("$BROWSER" --version 2>/dev/null | head -n 1); $("$DRIVER" --version | head -n 1)" >&2
