package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/queue"
)

// testConfig is a config with its data dir in a temporary directory and
// the admin listener at adminListen ("" = off).
func testConfig(t *testing.T, adminListen string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf("data_dir: %q\nadmin:\n  listen: %q\n", t.TempDir(), adminListen)
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yaml, err)
	}
	return cfg
}

// spoolOf opens the spool cfg names, as a server would.
func spoolOf(t *testing.T, cfg *config.Config) *queue.Store {
	t.Helper()
	s, err := queue.Open(queue.Options{Path: cfg.SpoolDBFile(), KeyFile: cfg.SpoolKeyFile()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenQueueOps(t *testing.T) {
	t.Run("no spool", func(t *testing.T) {
		cfg := testConfig(t, "127.0.0.1:8025")
		ops, where, _, err := OpenQueueOps(cfg)
		if err == nil {
			t.Fatalf("OpenQueueOps without a spool = %T at %q; want an error", ops, where)
		}
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), cfg.SpoolDBFile()) {
			t.Errorf("OpenQueueOps without a spool: %v; want not-exist naming %s", err, cfg.SpoolDBFile())
		}
	})

	t.Run("spool not held", func(t *testing.T) {
		cfg := testConfig(t, "127.0.0.1:8025")
		s := spoolOf(t, cfg)
		id := enqueue(t, s, "alice@org.test", "bob@dest.test")
		s.Close()

		ops, where, closeOps, err := OpenQueueOps(cfg)
		if err != nil {
			t.Fatalf("OpenQueueOps: %v", err)
		}
		if want := "spool " + cfg.SpoolDBFile(); where != want {
			t.Errorf("where = %q, want %q", where, want)
		}
		if _, ok := ops.(*queue.Store); !ok {
			t.Errorf("ops is %T, want the spool itself", ops)
		}
		if msgs, err := ops.List(); err != nil || len(msgs) != 1 || msgs[0].ID != id {
			t.Errorf("List = %+v, %v; want %s", msgs, err, id)
		}
		if err := closeOps(); err != nil {
			t.Errorf("close: %v", err)
		}
		// close released the spool: a server could start now.
		spoolOf(t, cfg).Close()
	})

	// bbolt's flock is per open file description, so a second Open in
	// this process is refused just as a second process would be.
	t.Run("spool held by a server", func(t *testing.T) {
		cfg := testConfig(t, "")
		s := spoolOf(t, cfg)
		defer s.Close()
		id := enqueue(t, s, "alice@org.test", "bob@dest.test")
		token, err := LoadOrCreateToken(cfg.AdminTokenFile())
		if err != nil {
			t.Fatal(err)
		}
		srv := serve(t, Options{Store: s, Token: token}, false)
		addr := srv.Listener.Addr().String()
		cfg.Admin.Listen = addr

		ops, where, closeOps, err := OpenQueueOps(cfg)
		if err != nil {
			t.Fatalf("OpenQueueOps: %v", err)
		}
		defer closeOps()
		if want := "server at " + addr; where != want {
			t.Errorf("where = %q, want %q", where, want)
		}
		if _, ok := ops.(*AdminClient); !ok {
			t.Errorf("ops is %T, want the admin client", ops)
		}
		if msgs, err := ops.List(); err != nil || len(msgs) != 1 || msgs[0].ID != id {
			t.Errorf("List through the server = %+v, %v; want %s", msgs, err, id)
		}
	})

	t.Run("spool held, admin listener off", func(t *testing.T) {
		cfg := testConfig(t, "")
		s := spoolOf(t, cfg)
		defer s.Close()

		ops, where, _, err := OpenQueueOps(cfg)
		if err == nil || !strings.Contains(err.Error(), "admin.listen is off") {
			t.Errorf("OpenQueueOps = %T at %q, %v; want an error naming admin.listen", ops, where, err)
		}
	})
}
