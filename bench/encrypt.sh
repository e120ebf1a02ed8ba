#!/usr/bin/env bash
# Memory of encryption under big messages (BENCHMARKS.md): one `[secure]`
# message of SIZE bytes to a recipient with an OpenPGP key (KIND=pgp, a
# Curve25519 key made by gpg) or an S/MIME certificate (KIND=smime, an
# RSA-2048 certificate made by openssl), imported with `sealgate keys
# import` before the message is sent; a gateway on its
# default limits delivers it by MX to the load tool's sink (the load tool
# answers DNS). Prints the gateway's peak RSS and checks in its log that
# the message left encrypted.
#
#   bash bench/encrypt.sh                     # KIND=pgp SIZE=25000000
#   KIND=smime SIZE=1000000 bash bench/encrypt.sh
#   PPROF=1 bash bench/encrypt.sh             # admin.pprof on; heap profile in $PROFILE
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
KIND=${KIND:-pgp}
SIZE=${SIZE:-25000000}
PPROF=${PPROF:-}
pprof=false
[ -n "$PPROF" ] && pprof=true
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; gpgconf --homedir "$work/gpg" --kill gpg-agent 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/sealgate" ./cmd/sealgate
go build -o "$work/sealgate-load" ./cmd/sealgate-load
cat >"$work/bench.yaml" <<YAML
data_dir: $work/data
log: {level: info}
inbound:
  listen: 127.0.0.1:2765
admin:
  listen: 127.0.0.1:8765
  pprof: $pprof
outbound:
  dns_resolver: 127.0.0.1:2767
  smtp_port: 2766
  allowed_private_networks: [127.0.0.0/8]
keys:
  discovery: {wkd: false, openpgpkey: false}
YAML
case $KIND in
pgp)
	mkdir -m 700 "$work/gpg"
	gpg --homedir "$work/gpg" --batch --passphrase '' --quick-gen-key "Bob <bob@dest.test>" ed25519 default never >/dev/null 2>&1
	fpr=$(gpg --homedir "$work/gpg" --with-colons --list-keys 2>/dev/null | awk -F: '$1=="fpr"{print $10; exit}')
	gpg --homedir "$work/gpg" --batch --passphrase '' --quick-add-key "$fpr" cv25519 encr never >/dev/null 2>&1
	gpg --homedir "$work/gpg" --armor --export >"$work/bob.asc" 2>/dev/null
	key="$work/bob.asc"
	;;
smime)
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Bob/emailAddress=bob@dest.test" \
		-addext "subjectAltName=email:bob@dest.test" -addext "keyUsage=critical,keyEncipherment,digitalSignature" \
		-addext "extendedKeyUsage=emailProtection" -addext "basicConstraints=critical,CA:FALSE" -keyout "$work/bob.key" -out "$work/bob.pem" 2>/dev/null
	key="$work/bob.pem"
	;;
*) echo "KIND must be pgp or smime" >&2; exit 2 ;;
esac
"$work/sealgate" serve --config "$work/bench.yaml" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/2765) 2>/dev/null && break
	sleep 0.1
done
# Through the admin listener of the running server (a data dir that has
# never been served has no spool to import into).
"$work/sealgate" keys import --config "$work/bench.yaml" "$key" >/dev/null
echo "== KIND=$KIND SIZE=$SIZE load=$(cut -d' ' -f1-3 /proc/loadavg)"
"$work/sealgate-load" -addr 127.0.0.1:2765 -n 1 -c 1 -size "$SIZE" -subject "[secure] big" -rcpt bob@dest.test \
	-sink 127.0.0.1:2766 -dns 127.0.0.1:2767 -pid "$pid" -wait 5m
if [ -n "$PPROF" ]; then
	PROFILE=${PROFILE:-/tmp/sealgate-encrypt-heap.pb.gz}
	curl -s -H "Authorization: Bearer $(cat "$work/data/admin.token")" -o "$PROFILE" http://127.0.0.1:8765/debug/pprof/heap
	echo "heap profile: $PROFILE"
fi
if ! grep -q "message encrypted with" "$work/server.log"; then
	echo "the message did not leave encrypted:" >&2
	grep -E "level=(WARN|ERROR)|skipped" "$work/server.log" >&2 || true
	exit 1
fi
grep -o 'message encrypted with [^ ]*' "$work/server.log" | head -1
kill -TERM "$pid"
wait "$pid" || true
