#!/usr/bin/env bash
# sealgate beside Postfix (BENCHMARKS.md, issue 12): for each point
# (message size, concurrency, message count) it runs bench/run.sh (the
# gateway on its default configuration, delivering by MX) and
# bench/postfix.sh (a private Postfix instance, relaying by MX) back to
# back with the same sealgate-load command, ROUNDS times, alternating
# which goes first, and prints every run and then a table of the medians
# with the ratio sealgate ÷ Postfix. Without Postfix (or without root) it
# runs sealgate alone.
#
#   bash bench/compare.sh                     # every point, ROUNDS=3
#   ROUNDS=5 POINTS="10240:50:3000" bash bench/compare.sh
#
# A point is SIZE:C:N. The default N gives each run a few seconds on a
# 2-vCPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
POINTS=${POINTS:-"10240:1:2000 10240:10:3000 10240:50:3000 102400:1:1000 102400:10:1500 1048576:1:150 1048576:10:300"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results="$work/results" # size c product round load acc del p50 p99 cpu mem
: >"$results"

postfix=yes
if ! command -v postfix >/dev/null || [ "$(id -u)" != 0 ]; then
	echo "compare.sh: no Postfix (apt-get install postfix) or not root: sealgate alone" >&2
	postfix=no
fi

# measure PRODUCT SIZE C N ROUND runs one benchmark and appends its
# figures to $results (durations in ms, memory in kB).
measure() {
	local product=$1 size=$2 c=$3 n=$4 round=$5 script=bench/run.sh
	[ "$product" = postfix ] && script=bench/postfix.sh
	if ! N=$n C=$c SIZE=$size bash "$script" >"$work/out" 2>&1; then
		echo "compare.sh: $product SIZE=$size C=$c failed:" >&2
		cat "$work/out" >&2
		return 0
	fi
	cat "$work/out"
	awk -v p="$product" -v s="$size" -v c="$c" -v r="$round" '
		function ms(d) {
			if (d ~ /µs$/) return substr(d, 1, length(d) - 2) / 1000
			if (d ~ /ms$/) return substr(d, 1, length(d) - 2) + 0
			if (d ~ /ns$/) return substr(d, 1, length(d) - 2) / 1e6
			if (d ~ /s$/) return substr(d, 1, length(d) - 1) * 1000
			return "NA"
		}
		/^== / { for (i = 1; i <= NF; i++) if ($i ~ /^load=/) load = substr($i, 6) }
		/^accepted\/s:/ { acc = $2 }
		/^accept latency/ { p50 = ms($4); p99 = ms($6) }
		/delivered\/s:/ { del = $4 }
		/^gateway CPU:/ { cpu = $3 }
		/^gateway peak (RSS|PSS)/ { mem = $(NF - 1) }
		END { print s, c, p, r, load, acc, del, p50, p99, cpu, mem }
	' "$work/out" >>"$results"
}

for point in $POINTS; do
	IFS=: read -r size c n <<<"$point"
	for round in $(seq "$ROUNDS"); do
		order="sealgate postfix"
		[ $((round % 2)) = 0 ] && order="postfix sealgate"
		for product in $order; do
			[ "$product" = postfix ] && [ "$postfix" = no ] && continue
			measure "$product" "$size" "$c" "$n" "$round"
		done
	done
done

echo
echo "== every run: size C product round load1 accepted/s delivered/s p50_ms p99_ms cpu_ms_per_msg mem_kB"
cat "$results"
echo
echo "== medians of $ROUNDS rounds; ratio = sealgate / Postfix; memory: sealgate peak RSS, Postfix peak PSS of its process tree"
awk '
	function median(key,    n, i, j, t, v) {
		n = split(vals[key], v, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
		if (n == 0) return ""
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "–" : sprintf("%.2f", a / b) }
	function num(x, f) { return x == "" ? "–" : sprintf(f, x) }
	{
		pt = $1 " " $2
		if (!(pt in seen)) { seen[pt] = 1; order[++npt] = pt }
		for (f = 5; f <= 11; f++) if ($f != "") vals[pt, $3, f] = vals[pt, $3, f] " " $f
	}
	END {
		print "| size | C | load | accepted/s sealgate · Postfix · ratio | delivered/s sealgate · Postfix · ratio | p50 ms | p99 ms | CPU ms/msg sealgate · Postfix · ratio | memory MB |"
		print "|---|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= npt; i++) {
			pt = order[i]; split(pt, sc, " ")
			for (f = 5; f <= 11; f++) { s[f] = median(pt SUBSEP "sealgate" SUBSEP f); q[f] = median(pt SUBSEP "postfix" SUBSEP f) }
			size = sc[1] >= 1048576 ? (sc[1] / 1048576) " MB" : (sc[1] / 1024) " KB"
			printf "| %s | %s | %s | %s · %s · %s | %s · %s · %s | %s · %s | %s · %s | %s · %s · %s | %s · %s |\n",
				size, sc[2], num(s[5], "%.1f"),
				num(s[6], "%.0f"), num(q[6], "%.0f"), ratio(s[6], q[6]),
				num(s[7], "%.0f"), num(q[7], "%.0f"), ratio(s[7], q[7]),
				num(s[8], "%.2f"), num(q[8], "%.2f"), num(s[9], "%.2f"), num(q[9], "%.2f"),
				num(s[10], "%.2f"), num(q[10], "%.2f"), ratio(s[10], q[10]),
				num(s[11] / 1024, "%.0f"), (q[11] == "" ? "–" : sprintf("%.0f", q[11] / 1024))
		}
	}
' "$results"
