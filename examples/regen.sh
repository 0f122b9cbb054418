#!/usr/bin/env bash
# Regenerate every example's protobuf and trimicro code (needs: pip install -e '.[codegen]').
set -euo pipefail
cd "$(dirname "$0")"
for proto in */proto/*.proto; do
  dir=$(dirname "$proto")
  python3 -m grpc_tools.protoc -I "$dir" --python_out="$dir" --pyi_out="$dir" \
    --trimicro_out=relative_imports:"$dir" "$proto"
done
