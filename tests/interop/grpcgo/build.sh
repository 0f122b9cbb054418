#!/usr/bin/env bash
# Build the stock gRPC/HTTP/2 test peers into tests/interop/grpcgo/bin (or OUTDIR):
#   client, server  grpc-go's interop client and server (google.golang.org/grpc/interop/...)
#   h2spec          the HTTP/2 conformance tester (github.com/summerwind/h2spec)
#   grpcurl         the gRPC command line client that reads schemas by server reflection
# Usage: tests/interop/grpcgo/build.sh [OUTDIR]   (prints OUTDIR)
# Nothing is vendored: go.mod lists them as tools (Go >= 1.24) and go.sum pins every module,
# fetched from the Go module proxy into the module cache on the first build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cd "$here"
"$GO" build -mod=readonly -trimpath -o "$out/" \
  google.golang.org/grpc/interop/client \
  google.golang.org/grpc/interop/server \
  github.com/summerwind/h2spec/cmd/h2spec \
  github.com/fullstorydev/grpcurl/cmd/grpcurl
echo "$out"
