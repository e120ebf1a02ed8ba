package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// PostgreSQL starts a throwaway PostgreSQL server for the test (Debian's
// postgresql package: initdb and pg_ctl from /usr/lib/postgresql), on a
// Unix socket in its own directory and no TCP port, and returns the DSN
// of its "postgres" database. The server is stopped and its files
// removed when the test ends. Without PostgreSQL the test is skipped,
// or fails when CI is set (.ci/run installs it).
//
// As root, the server runs as the postgres user (initdb refuses root).
func PostgreSQL(t testing.TB) string {
	t.Helper()
	return PostgreSQLServer(t).DSN
}

// PG is a throwaway PostgreSQL server.
type PG struct {
	DSN  string
	stop func()
}

// Stop stops the server now (a database lost under a running node); the
// test's cleanup removes its files.
func (p *PG) Stop() { p.stop() }

// PostgreSQLServer is PostgreSQL, with the server's handle.
func PostgreSQLServer(t testing.TB) *PG {
	t.Helper()
	bin := postgresBin()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL (initdb, pg_ctl) missing in CI; .ci/run installs the postgresql package")
		}
		t.Skip("PostgreSQL not installed (apt-get install postgresql); skipped")
	}
	dir, err := os.MkdirTemp("", "sealgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var runAs []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := append(append([]string{}, runAs...), filepath.Join(bin, name))
		cmd = append(cmd, args...)
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			logFile, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("%s: %v\n%s\n%s", name, err, out, logFile)
		}
	}
	run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100", dir)
	run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
	stop := func() {
		cmd := append(append([]string{}, runAs...), filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
		exec.Command(cmd[0], cmd[1:]...).Run()
	}
	t.Cleanup(stop)
	return &PG{DSN: fmt.Sprintf("host=%s user=postgres dbname=postgres sslmode=disable connect_timeout=%d", dir, int((10 * time.Second).Seconds())), stop: stop}
}

// postgresBin is the newest installed PostgreSQL's bin directory, "" if
// none.
func postgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a > b
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return ""
}
