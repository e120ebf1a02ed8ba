#!/usr/bin/env bash
# The Postfix side of the load benchmark (BENCHMARKS.md): the same
# sealgate-load command as bench/run.sh, against a private Postfix
# instance that relays by MX to the load tool's counting sink, asking the
# load tool's DNS. Needs root and an installed Postfix (apt-get install
# postfix); it never installs Postfix, never changes the system
# instance's files or talks to it, and leaves nothing running.
#
# The instance lives in a temporary directory: its own main.cf and
# master.cf (postfix -c DIR), queue_directory, data_directory and log
# file. Postfix's defaults are kept except for:
#   - where it lives and logs (queue_directory, data_directory,
#     maillog_file), its name (myhostname) and address (smtpd on
#     127.0.0.1:2825 only, inet_interfaces 127.0.0.1, IPv4);
#   - mynetworks 127.0.0.0/8, so the load tool may relay;
#   - smtp_tcp_port: MX hosts are reached on the sink's port, not 25
#     (sealgate's outbound.smtp_port in bench/run.sh);
#   - master.cf is the packaged one (Debian's master.cf.dist, else the
#     system master.cf) with every service unchrooted (the
#     upstream default; Debian chroots them) except the SMTP client,
#     which is chrooted into the private queue directory: there it reads
#     QUEUE/etc/resolv.conf, which names the load tool's DNS. The glibc
#     resolver only asks port 53, so the DNS and the sink listen on
#     127.0.0.3 (the sink must not be on an address of Postfix's own, or
#     Postfix refuses the MX as a mail loop).
# Nothing else is tuned: concurrency 20 per destination, connection
# cache on demand, in_flow_delay 1s, queue files fsynced, no TLS (the
# sink offers none, as for sealgate).
#
# DKIM_TLS=1 adds what bench/run.sh adds for sealgate: every message
# DKIM-signed by OpenDKIM (apt-get install opendkim opendkim-tools; an
# RSA-2048 key for sender.test, as a milter) and TLS required out
# (smtp_tls_security_level = encrypt; the sink offers STARTTLS).
#
#   bash bench/postfix.sh            # N=5000 SIZE=10240 C="1 10 50"
#   N=2000 C="10" SIZE=102400 bash bench/postfix.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

N=${N:-5000}
SIZE=${SIZE:-10240}
CS=${C:-"1 10 50"}
LISTEN=127.0.0.1:2825
SINK_IP=127.0.0.3
SINK_PORT=2826

if ! command -v postfix >/dev/null; then
	echo "postfix.sh: Postfix is not installed (apt-get install postfix); skipped" >&2
	exit 3
fi
if [ "$(id -u)" != 0 ]; then
	echo "postfix.sh: starting a Postfix instance needs root; skipped" >&2
	exit 3
fi

work=$(mktemp -d)
chmod 755 "$work" # the postfix user walks into the queue below it
pf="$work/postfix"
master=""

# stop_postfix stops the instance, waiting at most 10 s for the master
# to go before it kills what is left of the tree by pid.
stop_postfix() {
	[ -n "$master" ] || return 0
	local tree
	tree=$(descendants "$master" || true)
	timeout 20 postfix -c "$pf/etc" stop >>"$work/postfix-cmd.log" 2>&1 || true
	for _ in $(seq 50); do
		kill -0 "$master" 2>/dev/null || break
		sleep 0.2
	done
	for p in $master $tree; do
		kill -KILL "$p" 2>/dev/null || true
	done
	master=""
}

descendants() {
	local p
	for p in $(ps -o pid= --ppid "$1"); do
		echo "$p"
		descendants "$p"
	done
}

cleanup() {
	stop_postfix
	[ -n "${dkimpid:-}" ] && kill "$dkimpid" 2>/dev/null
	true
	kill $(jobs -p) 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/sealgate-load" ./cmd/sealgate-load

# configure writes a fresh instance into $pf.
configure() {
	rm -rf "$pf"
	mkdir -p "$pf/etc" "$pf/queue/etc" "$pf/data"
	chown postfix: "$pf/data"
	local dist=/usr/share/postfix/master.cf.dist
	[ -f "$dist" ] || dist="$(postconf -dh config_directory)/master.cf"
	cp "$dist" "$pf/etc/master.cf"
	cat >"$pf/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
myhostname = postfix.bench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_tcp_port = $SINK_PORT
CF
	if [ "${DKIM_TLS:-}" = 1 ]; then
		cat >>"$pf/etc/main.cf" <<CF
smtpd_milters = inet:127.0.0.1:8891
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail
smtp_tls_security_level = encrypt
CF
	fi
	postconf -c "$pf/etc" -MX smtp/inet
	postconf -c "$pf/etc" -M "$LISTEN/inet=$LISTEN inet n - n - - smtpd"
	postconf -c "$pf/etc" -F '*/*/chroot = n' 'smtp/unix/chroot = y'
	echo "nameserver $SINK_IP" >"$pf/queue/etc/resolv.conf"
}

dkimpid=""
sinkflags=()
if [ "${DKIM_TLS:-}" = 1 ]; then
	if ! command -v opendkim >/dev/null; then
		echo "postfix.sh: DKIM_TLS needs OpenDKIM (apt-get install opendkim opendkim-tools); skipped" >&2
		exit 3
	fi
	mkdir -p "$work/dkim"
	opendkim-genkey -b 2048 -d sender.test -s bench -D "$work/dkim"
	cat >"$work/dkim/opendkim.conf" <<CONF
Syslog no
Mode s
Socket inet:8891@127.0.0.1
Domain sender.test
Selector bench
KeyFile $work/dkim/bench.private
InternalHosts 127.0.0.0/8
Canonicalization relaxed/simple
RequireSafeKeys false
PidFile $work/dkim/opendkim.pid
CONF
	opendkim -x "$work/dkim/opendkim.conf" -f >"$work/dkim/log" 2>&1 &
	dkimpid=$!
	for _ in $(seq 50); do
		(exec 3<>/dev/tcp/127.0.0.1/8891) 2>/dev/null && break
		sleep 0.1
	done
	sinkflags=(-sink-tls)
fi

for c in $CS; do
	configure
	if ! timeout 30 postfix -c "$pf/etc" start >>"$work/postfix-cmd.log" 2>&1; then
		cat "$work/postfix-cmd.log" "$pf/maillog" >&2 2>/dev/null || true
		exit 1
	fi
	master=$(tr -d ' ' <"$pf/queue/pid/master.pid")
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${LISTEN%:*}/${LISTEN#*:}") 2>/dev/null && break
		sleep 0.1
	done
	echo "== POSTFIX $(postconf -dh mail_version)${DKIM_TLS:+ + OpenDKIM, TLS encrypt} C=$c N=$N SIZE=$SIZE load=$(cut -d' ' -f1-3 /proc/loadavg)"
	"$work/sealgate-load" -addr "$LISTEN" -n "$N" -c "$c" -size "$SIZE" \
		-sink "$SINK_IP:$SINK_PORT" -dns "$SINK_IP:53" -pid "$master" -tree "${sinkflags[@]}"
	stop_postfix
done
