#!/usr/bin/env bash
# One script for developers and CI: install what the tests need, then lint, type-check and test.
#   bash scripts/test.sh            everything
#   bash scripts/test.sh tests/x    extra args go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
# a real Prometheus scrapes /metrics in tests/observability (Debian ships it as /usr/bin/prometheus)
command -v prometheus >/dev/null || need_apt+=(prometheus)
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)  # a server jar, not a command on PATH
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi
export PATH="$PATH:/usr/sbin:/usr/local/go/bin"

python3 -m pip install -q --disable-pip-version-check -e '.[test,docs]' 2>&1 | grep -v "Running pip as the 'root' user" || true

# Go Micro interop peers (tests skip with a reason only when Go is absent).
if command -v go >/dev/null && [ -x tests/interop/go/build.sh ]; then
  bash tests/interop/go/build.sh >/dev/null
  bash tests/interop/grpcgo/build.sh >/dev/null  # grpc-go's interop client/server, h2spec
fi

# Kafka for tests/broker/test_kafka.py: its jars from Maven Central, once, into ~/.cache/trimicro-kafka
# (~45 MB, a few seconds; bounded). Without java/mvn, or if the fetch fails, those tests skip.
if command -v java >/dev/null && command -v mvn >/dev/null; then
  timeout 300 python3 -m trimicro.testing kafka --fetch >/dev/null || echo "kafka: jars not fetched; kafka tests will skip"
fi

lint_paths=(trimicro tests examples plugins)
[ -d bench ] && lint_paths+=(bench)
echo "== ruff"; python3 -m ruff check "${lint_paths[@]}"
echo "== mypy"; python3 -m mypy
echo "== docs"; NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict -q -d "$(mktemp -d)"
echo "== pytest"; python3 -m pytest -q -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
  echo "== plugins"; python3 -m pytest -q -p no:cacheprovider plugins/trimicro-registry-file/tests
fi
if [ -f bench/run.py ] && [ $# -eq 0 ]; then
  echo "== bench smoke"; python3 -m bench.run --smoke
fi
