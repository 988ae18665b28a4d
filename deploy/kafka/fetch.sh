#!/usr/bin/env bash
# Collect the Apache Kafka broker jars from Maven Central into a cache outside the
# clone (idempotent). Prints the cache's libs directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v java >/dev/null || { echo "error: java not found; install a JDK 17+ (e.g. apt-get install openjdk-17-jre-headless)" >&2; exit 3; }
command -v mvn >/dev/null || { echo "error: mvn not found; install Maven (e.g. apt-get install maven)" >&2; exit 3; }
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
cache="${LEADSTREAMS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leadstreams}/kafka-$version"
libs="$cache/libs"
if [[ ! -f "$cache/.complete" ]]; then
  echo "fetching Apache Kafka $version jars from Maven Central into $libs ..." >&2
  tmp="$(mktemp -d "$cache.XXXX" 2>/dev/null || { mkdir -p "$(dirname "$cache")"; mktemp -d "$cache.XXXX"; })"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >&2
  rm -rf "$cache"; mv "$tmp" "$cache"; touch "$cache/.complete"
fi
echo "$libs"
