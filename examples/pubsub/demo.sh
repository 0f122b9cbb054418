#!/usr/bin/env bash
# Three subscriber processes (two in queue "q", one broadcast) and a publisher, meeting through mdns on
# loopback and talking over the http broker. Expected: the broadcast one prints every event, the two
# queue members split them.
set -euo pipefail
cd "$(dirname "$0")/../.."
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true' EXIT
python3 examples/pubsub/subscriber.py & pids+=($!)
python3 examples/pubsub/subscriber.py --queue q & pids+=($!)
python3 examples/pubsub/subscriber.py --queue q & pids+=($!)
sleep 2  # let the subscribers start and announce themselves over mdns
python3 examples/pubsub/publisher.py --count "${COUNT:-6}" --interval 0.2
sleep 1
