#!/usr/bin/env bash
# Make sure deploy/k8s can be rendered: tests/test_k8s*.py runs `kubectl kustomize`, or
# `kustomize build` where kubectl is missing. With neither, build kustomize v5 from the
# Go module proxy into ~/.cache/leadstreams/bin (about 2 minutes once, then cached).
#   deploy/k8s/ensure-kustomize.sh     (exit 0: one of them is available)
set -euo pipefail
version="v5.5.0"
bin="${LEADSTREAMS_CACHE:-$HOME/.cache/leadstreams}/bin"
if command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1 || [[ -x "$bin/kustomize" ]]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "ensure-kustomize: neither kubectl nor kustomize nor go is on PATH; install kubectl >= 1.27" \
       "(it renders kustomizations offline) and re-run the tests." >&2
  exit 1
fi
mkdir -p "$bin"
echo "ensure-kustomize: building kustomize $version into $bin (once)" >&2
GOBIN="$bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$version"
