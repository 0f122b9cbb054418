#!/usr/bin/env bash
# Runs inside `unshare -n -m --fork` (a private network AND mount namespace of the test): builds N
# host namespaces joined by veth pairs to a bridge, addresses 10.77.0.x/24 that exist only in here,
# no default route, then runs the Python scenario driver. Exit 77: the environment cannot do this.
set -eu
N=${N:-5}
mount --make-rprivate / 2>/dev/null || true
mkdir -p /run/netns && mount -t tmpfs gossip-netns /run/netns || exit 77
ip link set lo up
ip link add br0 type bridge || exit 77
ip link set br0 up
for i in $(seq 1 "$N"); do
  ip netns add "h$i" || exit 77
  ip link add "veth$i" type veth peer name eth0 netns "h$i"
  ip link set "veth$i" master br0 up
  ip -n "h$i" link set lo up
  ip -n "h$i" addr add "10.77.0.$i/24" dev eth0
  ip -n "h$i" link set eth0 up
done
exec python3 "$(dirname "$0")/_gossip_netns_driver.py" "$N"
