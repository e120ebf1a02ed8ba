#!/usr/bin/env bash
# The send API beside the SMTP listener (BENCHMARKS.md): the same gateway
# on its default configuration, delivering by MX to the load tool's sink,
# takes N messages of SIZE bytes at concurrency C first over SMTP, then
# as raw messages (message/rfc822) POSTed to /api/v1/messages with a send
# key — each run on a fresh data dir. Prints what bench/run.sh prints for
# each.
#
#   bash bench/sendapi.sh             # N=5000 SIZE=10240 C=50
#   RATE=1000000 bash bench/sendapi.sh   # with a per-key limit counted
#   SHARED=1 RATE=1000000 bash bench/sendapi.sh   # in a fleet's shared
#                                      # store (bench/pg.sh's PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
N=${N:-5000}
SIZE=${SIZE:-10240}
C=${C:-50}
smtp_port=2765 admin_port=8765 sink_port=2766 dns_port=2767
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/sealgate" ./cmd/sealgate
go build -o "$work/sealgate-load" ./cmd/sealgate-load
if [ "${SHARED:-}" = 1 ]; then
	. bench/pg.sh
	pg_start
fi

for mode in smtp api; do
	rm -rf "$work/data"
	cat >"$work/bench.yaml" <<YAML
data_dir: $work/data
inbound:
  listen: 127.0.0.1:$smtp_port
admin:
  listen: 127.0.0.1:$admin_port
api:
  messages_per_minute: ${RATE:-0}
outbound:
  dns_resolver: 127.0.0.1:$dns_port
  smtp_port: $sink_port
  allowed_private_networks: [127.0.0.0/8]
YAML
	if [ "${SHARED:-}" = 1 ]; then
		pg_fresh_db "$work/bench.yaml"
	fi
	"$work/sealgate" serve --config "$work/bench.yaml" 2>"$work/server.log" &
	pid=$!
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/$admin_port) 2>/dev/null && break
		sleep 0.1
	done
	sleep 0.5
	target=(-addr 127.0.0.1:$smtp_port)
	if [ "$mode" = api ]; then
		key=$("$work/sealgate" api key create --name bench --scope send --domains sender.test --config "$work/bench.yaml" 2>/dev/null)
		target=(-api "http://127.0.0.1:$admin_port/api/v1/messages" -api-key "$key")
	fi
	echo "== $mode${SHARED:+ SHARED}${RATE:+ RATE=$RATE} C=$C N=$N SIZE=$SIZE load=$(cut -d' ' -f1-3 /proc/loadavg)"
	"$work/sealgate-load" "${target[@]}" -n "$N" -c "$C" -size "$SIZE" \
		-sink 127.0.0.1:$sink_port -pid "$pid" -dns 127.0.0.1:$dns_port
	kill -TERM "$pid"
	wait "$pid" || true
done
