# A throwaway PostgreSQL (Debian's postgresql) on a Unix socket, for the
# benchmarks' SHARED=1 runs: a fleet's shared store. Sourced by run.sh
# and sendapi.sh, which call pg_start once (it sets the EXIT trap that
# stops the server and removes $work) and pg_fresh_db before each run
# (it appends the store to the config file given).

pg_start() {
	pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
	pgdir=$(mktemp -d /tmp/sealgate-bench-pg-XXXXXX)
	as=()
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$pgdir"
		as=(runuser -u postgres --)
	fi
	"${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
	# The database's own durability as a production one would have it.
	"${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
		-o "-c listen_addresses='' -c unix_socket_directories=$pgdir" start >/dev/null
	trap 'kill $(jobs -p) 2>/dev/null || true; "${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$work" "$pgdir"' EXIT
}

# pg_fresh_db CONFIG: an empty database "bench", named in CONFIG.
pg_fresh_db() {
	"${as[@]}" "$pgbin/psql" -h "$pgdir" -U postgres -q -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" postgres
	printf 'store:\n  postgres:\n    dsn: "host=%s user=postgres dbname=bench"\n' "$pgdir" >>"$1"
}
