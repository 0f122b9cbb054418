#!/usr/bin/env bash
# Build the Go Micro interop binary (tests/interop/go/bin/interop by default).
# Usage: tests/interop/go/build.sh [OUTDIR]
# Needs Go >= 1.24 and the Go module proxy (the machine's default GOPROXY);
# dependencies are pinned by go.mod/go.sum. The generated proto code is
# committed, so protoc is not needed (see proto/regen.sh to regenerate).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cd "$here"
# -mod=readonly: never rewrite go.mod/go.sum during a test build.
"$GO" build -mod=readonly -trimpath -o "$out/interop" .
echo "$out/interop"
