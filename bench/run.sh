#!/usr/bin/env bash
# Load benchmark behind BENCHMARKS.md: builds sealgate and sealgate-load,
# runs a gateway on loopback that relays everything to the load tool's
# counting sink (outbound.smarthost), and sends N messages of SIZE bytes at
# each concurrency. The spool fsyncs as in production.
#
#   bash bench/run.sh            # N=5000 SIZE=10240 C="1 10 50"
#   N=2000 C="10" bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

N=${N:-5000}
SIZE=${SIZE:-10240}
CS=${C:-"1 10 50"}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/sealgate" ./cmd/sealgate
go build -o "$work/sealgate-load" ./cmd/sealgate-load

for c in $CS; do
	rm -rf "$work/data"
	cat >"$work/bench.yaml" <<YAML
data_dir: $work/data
log: {level: warn}
inbound:
  listen: 127.0.0.1:2725
  max_connections_per_ip: 1000
admin:
  listen: 127.0.0.1:8725
outbound:
  smarthost: {address: 127.0.0.1:2726, tls: none}
  max_per_destination: 50
YAML
	"$work/sealgate" serve --config "$work/bench.yaml" 2>"$work/server.log" &
	pid=$!
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/2725) 2>/dev/null && break
		sleep 0.1
	done
	echo "== C=$c N=$N SIZE=$SIZE"
	"$work/sealgate-load" -addr 127.0.0.1:2725 -n "$N" -c "$c" -size "$SIZE" \
		-sink 127.0.0.1:2726 -pid "$pid"
	kill -TERM "$pid"
	wait "$pid" || true
done
