#!/usr/bin/env bash
# Regenerates the checked-in gRPC/protobuf code from kms_appliance/kms/*.proto.
# CI runs it with --check and fails if the checked-in files drift from the protos.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=kms_appliance/kms
gen() {
  local dest=$1
  "$PY" -m grpc_tools.protoc -I "$out" --python_out="$dest" --pyi_out="$dest" \
    --grpc_python_out="$dest" "$out"/v2.proto "$out"/v1beta1.proto
  # grpc_tools emits absolute imports ("import v2_pb2"); make them package-relative.
  sed -i -E 's/^import (v2|v1beta1)_pb2 as /from . import \1_pb2 as /' "$dest"/*_pb2_grpc.py
}
if [[ "${1:-}" == "--check" ]]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  for f in "$tmp"/*; do
    cmp -s "$f" "$out/$(basename "$f")" || { echo "generated file drifted: $out/$(basename "$f") (run scripts/gen-protos.sh)" >&2; exit 1; }
  done
  echo "protos: generated code matches"
else
  gen "$out"
fi
