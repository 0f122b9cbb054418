#!/usr/bin/env bash
# Regenerate greeter.pb.go and greeter.pb.micro.go (only needed after editing greeter.proto).
# Needs /usr/bin/protoc (3.21+) and the Go module proxy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
GOBIN="$gobin" "$GO" install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6
# protoc-gen-micro lives inside the go-micro.dev/v5 module; build it through our go.mod
# ("go install ...@version" fails because the proxy refuses the module's version list).
(cd "$here/.." && "$GO" build -o "$gobin/protoc-gen-micro" go-micro.dev/v5/cmd/protoc-gen-micro)
cd "$here"
PATH="$gobin:$PATH" protoc --proto_path=. \
  --go_out=. --go_opt=paths=source_relative \
  --micro_out=. --micro_opt=paths=source_relative greeter.proto
