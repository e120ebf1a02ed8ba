#!/usr/bin/env bash
# A backlog draining (BENCHMARKS.md): the gateway, on its default
# configuration delivering by MX, accepts N messages while its
# destinations cannot be reached (no DNS answers them), so all N wait in
# the spool; then the destination comes up (the load tool's DNS and
# sink), `sealgate queue retry --all` makes them due at once, and the
# load tool counts the deliveries. It prints the drain's delivery rate
# and the gateway's CPU per delivered message; comparing N=50000 with a
# small backlog (N=1000) shows whether the scheduler's cost per message
# grows with the backlog.
#
#   bash bench/backlog.sh                 # N=50000 SIZE=10240
#   N=1000 bash bench/backlog.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

N=${N:-50000}
SIZE=${SIZE:-10240}
base=${PORT_BASE:-2760}
smtp_port=$base admin_port=$((base + 1)) sink_port=$((base + 2)) dns_port=$((base + 3))
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/sealgate" ./cmd/sealgate
go build -o "$work/sealgate-load" ./cmd/sealgate-load
cat >"$work/bench.yaml" <<YAML
data_dir: $work/data
log: {level: warn}
inbound:
  listen: 127.0.0.1:$smtp_port
admin:
  listen: 127.0.0.1:$admin_port
  pprof: ${PPROF:-false}
outbound:
  dns_resolver: 127.0.0.1:$dns_port
  smtp_port: $sink_port
  allowed_private_networks: [127.0.0.0/8]
YAML
"$work/sealgate" serve --config "$work/bench.yaml" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$smtp_port) 2>/dev/null && break
	sleep 0.1
done
echo "== backlog N=$N SIZE=$SIZE load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "-- intake, destinations unreachable"
"$work/sealgate-load" -addr 127.0.0.1:$smtp_port -n "$N" -c 50 -size "$SIZE" -pid "$pid" | grep -E "accepted/s|sent|CPU"
sleep 5 # the first attempts fail and defer
echo "-- drain"
"$work/sealgate-load" -drain "$N" -sink 127.0.0.1:$sink_port -dns 127.0.0.1:$dns_port -pid "$pid" -wait 15m &
load=$!
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$sink_port) 2>/dev/null && break
	sleep 0.1
done
# Resident memory while it drains: anonymous (the heap) and file-backed
# (the spool's memory map, which the kernel can drop), sampled.
(
	peak_anon=0 peak_file=0
	while kill -0 "$load" 2>/dev/null; do
		read -r anon file < <(awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a, f}' /proc/$pid/status)
		[ "$anon" -gt "$peak_anon" ] && peak_anon=$anon
		[ "$file" -gt "$peak_file" ] && peak_file=$file
		sleep 0.5
	done
	echo "drain peak RssAnon: $peak_anon kB, RssFile: $peak_file kB (sampled every 0.5 s)"
) &
sampler=$!
"$work/sealgate" queue retry --all --config "$work/bench.yaml"
if [ "${PPROF:-false}" = true ]; then
	curl -s -H "Authorization: Bearer $(cat "$work/data/admin.token")" \
		"127.0.0.1:$admin_port/debug/pprof/profile?seconds=${PROFILE_SECONDS:-10}" >"${PROFILE_OUT:-/tmp/backlog.pprof}"
fi
wait "$load"
wait "$sampler"
kill -TERM "$pid"
wait "$pid" || true
