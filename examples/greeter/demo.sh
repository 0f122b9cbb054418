#!/usr/bin/env bash
# Two processes that find each other through mdns on loopback: the greeter server and a client.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 examples/greeter/server.py &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
python3 examples/greeter/client.py John
