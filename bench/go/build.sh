#!/usr/bin/env bash
# Build the Go Micro benchmark binary (bench/go/bin/gobench, gitignored).
# Usage: bench/go/build.sh [OUTDIR]
# Needs Go >= 1.24; dependencies are pinned by go.mod/go.sum (the same Go Micro v5.30.0
# requirements as tests/interop/go, whose generated Greeter proto code this module reuses).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cd "$here"
"$GO" build -mod=readonly -trimpath -o "$out/gobench" .
echo "$out/gobench"
