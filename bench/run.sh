#!/usr/bin/env bash
# Load benchmark behind BENCHMARKS.md: builds sealgate and sealgate-load,
# runs a gateway on loopback on its default configuration, delivering by
# MX: the load tool answers DNS (every domain's MX is its counting sink)
# and the gateway asks it (outbound.dns_resolver, outbound.smtp_port, and
# allowed_private_networks so that a loopback MX may be used). It sends N
# messages of SIZE bytes at each concurrency. The spool fsyncs as in
# production. It prints accepted/s, delivered/s, the accept latency, the
# gateway's CPU per message and its peak RSS. MODE=smarthost relays
# through outbound.smarthost instead.
#
#   bash bench/run.sh            # N=5000 SIZE=10240 C="1 10 50"
#   N=2000 C="10" bash bench/run.sh
#   MODE=smarthost bash bench/run.sh
#   PORT_BASE=3700 bash bench/run.sh   # ports 3700-3703, not 2725 etc.
#   SHARED=1 bash bench/run.sh         # with a fleet's shared store: a
#                                      # throwaway PostgreSQL (Debian's
#                                      # postgresql) on a Unix socket
#
# The ports are fixed (PORT_BASE moves them all): two runs on one machine
# at once must use different bases, or one measures the other's gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

N=${N:-5000}
SIZE=${SIZE:-10240}
CS=${C:-"1 10 50"}
MODE=${MODE:-mx}
if [ -n "${PORT_BASE:-}" ]; then
	smtp_port=$PORT_BASE admin_port=$((PORT_BASE + 1)) sink_port=$((PORT_BASE + 2)) dns_port=$((PORT_BASE + 3))
else
	smtp_port=2725 admin_port=8725 sink_port=2726 dns_port=2753
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/sealgate" ./cmd/sealgate
go build -o "$work/sealgate-load" ./cmd/sealgate-load

if [ "${SHARED:-}" = 1 ]; then
	. bench/pg.sh
	pg_start
fi

for c in $CS; do
	for p in $smtp_port $sink_port; do
		if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
			echo "port $p is in use (another benchmark?); set PORT_BASE" >&2
			exit 1
		fi
	done
	rm -rf "$work/data"
	cat >"$work/bench.yaml" <<YAML
data_dir: $work/data
inbound:
  listen: 127.0.0.1:$smtp_port
admin:
  listen: 127.0.0.1:$admin_port
YAML
	if [ "${SHARED:-}" = 1 ]; then
		pg_fresh_db "$work/bench.yaml"
	fi
	sinkflags=()
	if [ "${DKIM_TLS:-}" = 1 ]; then
		[ -f "$work/dkim.pem" ] || "$work/sealgate" dkim keygen --domain sender.test --selector bench --out "$work/dkim.pem" >/dev/null
		printf 'dkim:\n  keys:\n    - {domain: sender.test, selector: bench, key_file: %s}\n' "$work/dkim.pem" >>"$work/bench.yaml"
		sinkflags=(-sink-tls)
	fi
	if [ "$MODE" = smarthost ]; then
		printf 'outbound:\n  smarthost: {address: 127.0.0.1:%s, tls: none}\n  max_per_destination: 50\n' "$sink_port" >>"$work/bench.yaml"
		dns=()
	else
		printf 'outbound:\n  dns_resolver: 127.0.0.1:%s\n  smtp_port: %s\n  allowed_private_networks: [127.0.0.0/8]\n' "$dns_port" "$sink_port" >>"$work/bench.yaml"
		[ "${DKIM_TLS:-}" = 1 ] && printf '  tls_policy: {default: encrypt}\n' >>"$work/bench.yaml"
		dns=(-dns 127.0.0.1:$dns_port)
	fi
	"$work/sealgate" serve --config "$work/bench.yaml" 2>"$work/server.log" &
	pid=$!
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/$smtp_port) 2>/dev/null && break
		sleep 0.1
	done
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "the gateway did not start:" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	echo "== MODE=$MODE${DKIM_TLS:+ DKIM_TLS}${SHARED:+ SHARED} C=$c N=$N SIZE=$SIZE load=$(cut -d' ' -f1-3 /proc/loadavg)"
	"$work/sealgate-load" -addr 127.0.0.1:$smtp_port -n "$N" -c "$c" -size "$SIZE" \
		-sink 127.0.0.1:$sink_port -pid "$pid" "${dns[@]}" "${sinkflags[@]}"
	kill -TERM "$pid"
	wait "$pid" || true
done
