#!/usr/bin/env bash
# Regenerate every example's protobuf and trimicro code (needs grpcio-tools: pip install '.[codegen]').
# The plugin run is this checkout's trimicro.codegen (python3 -m trimicro.codegen), not whatever
# protoc-gen-trimicro is installed on PATH.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd .. && pwd)
plugin_dir=$(mktemp -d)
trap 'rm -rf "$plugin_dir"' EXIT
printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m trimicro.codegen "$@"\n' "$repo" \
  >"$plugin_dir/protoc-gen-trimicro"
chmod +x "$plugin_dir/protoc-gen-trimicro"
for proto in */proto/*.proto; do
  dir=$(dirname "$proto")
  python3 -m grpc_tools.protoc -I "$dir" --python_out="$dir" --pyi_out="$dir" \
    --plugin=protoc-gen-trimicro="$plugin_dir/protoc-gen-trimicro" \
    --trimicro_out=relative_imports:"$dir" "$proto"
done
