#!/usr/bin/env bash
# Build otelcol-trimicro, a minimal OpenTelemetry Collector (OTLP/HTTP receiver, debug exporter),
# into tests/observability/otelcol/bin (or OUTDIR) for tests/observability/test_otel_collector.py.
# Usage: tests/observability/otelcol/build.sh [OUTDIR]   (prints OUTDIR)
# go.sum pins every module, fetched from the Go module proxy on the first build (about a minute).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cd "$here"
"$GO" build -mod=readonly -trimpath -o "$out/otelcol-trimicro" .
echo "$out"
