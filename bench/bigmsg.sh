#!/usr/bin/env bash
# Memory under big messages (BENCHMARKS.md): C concurrent messages of
# SIZE bytes through a gateway on its default limits (max_message_bytes
# 50 MB, max_bytes_in_flight 256 MiB), relayed to the load tool's sink.
# Prints the gateway's peak RSS and how many 4xx refusals the byte
# budget caused (the load tool retries them, as an MTA would).
#
#   bash bench/bigmsg.sh                 # C=20 SIZE=25000000
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
C=${C:-20}
SIZE=${SIZE:-25000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/sealgate" ./cmd/sealgate
go build -o "$work/sealgate-load" ./cmd/sealgate-load
cat >"$work/bench.yaml" <<YAML
data_dir: $work/data
log: {level: warn}
inbound:
  listen: 127.0.0.1:2745
admin:
  listen: 127.0.0.1:8745
outbound:
  smarthost: {address: 127.0.0.1:2746, tls: none}
YAML
"$work/sealgate" serve --config "$work/bench.yaml" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/2745) 2>/dev/null && break
	sleep 0.1
done
echo "== C=$C SIZE=$SIZE"
"$work/sealgate-load" -addr 127.0.0.1:2745 -n "$C" -c "$C" -per-conn 1 -size "$SIZE" \
	-sink 127.0.0.1:2746 -pid "$pid" -wait 5m
kill -TERM "$pid"
wait "$pid" || true
